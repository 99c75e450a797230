#!/usr/bin/env bash
# Restart-time benchmark: how long a member holding N keys takes from exec to serving
# (/readyz 200 with its applied index caught up), after SIGTERM and after SIGKILL.
#
#   bench/restart.sh [N=100000] [VALUE_BYTES=256]
#
# Starts its own 3-member cluster on 127.0.0.1 (ports 28379..28384) in a temp dir, fills N keys
# through the leader with 8 parallel keep-alive curl streams, then restarts a follower three
# times per signal and prints the median. Needs build/ (scripts/build.sh). Bounded: every wait
# has a deadline; the cluster is killed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
VBYTES=${2:-256}
BIN=$PWD/build/server/ballastd
DIR=$(mktemp -d /tmp/ballast-bench-restart.XXXXXX)
CLUSTER=1=127.0.0.1:28380,2=127.0.0.1:28382,3=127.0.0.1:28384
pids=()
trap '{ kill -9 "${pids[@]}"; wait; } 2>/dev/null; rm -rf "$DIR"' EXIT

start_member() { # id
  local i=$1 c=$((28377 + 2 * $1))
  "$BIN" --id "$i" --data-dir "$DIR/m$i" --listen-client "127.0.0.1:$c" \
    --listen-peer "127.0.0.1:$((c + 1))" --initial-cluster "$CLUSTER" >>"$DIR/m$i.log" 2>&1 &
  pids[$i]=$!
}
ms() { date +%s%3N; }
wait_ready() { # port deadline_s -> prints ms waited
  local t0 deadline
  t0=$(ms); deadline=$((t0 + $2 * 1000))
  until curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; do
    [ "$(ms)" -lt "$deadline" ] || { echo "timeout waiting for :$1" >&2; return 1; }
    sleep 0.005
  done
  echo $(( $(ms) - t0 ))
}

for i in 1 2 3; do start_member "$i"; done
for p in 28379 28381 28383; do wait_ready "$p" 20 >/dev/null; done
leader=$(curl -fsS http://127.0.0.1:28379/v1/status | grep -o '"leader":[0-9]*' | cut -d: -f2)
lport=$((28377 + 2 * leader))
follower=$(( leader % 3 + 1 )); fport=$((28377 + 2 * follower))

value=$(head -c "$VBYTES" /dev/zero | tr '\0' 'v')
printf '%s' "$value" >"$DIR/value"
t0=$(ms)
fillers=()
for s in $(seq 0 7); do
  awk -v s="$s" -v n="$N" -v p="$lport" 'BEGIN { for (i = s; i < n; i += 8)
    printf "url = \"http://127.0.0.1:%d/v1/kv/key-%08d\"\nupload-file = \"'"$DIR"'/value\"\noutput = \"/dev/null\"\n", p, i }' \
    >"$DIR/urls.$s"
  curl -sS -K "$DIR/urls.$s" &
  fillers+=($!)
done
wait "${fillers[@]}"
fill_ms=$(( $(ms) - t0 ))
rev=$(curl -fsS "http://127.0.0.1:$lport/v1/status" | grep -o '"revision":[0-9]*' | head -1 | cut -d: -f2)
[ "$rev" -ge "$N" ] || { echo "fill incomplete: revision $rev < $N" >&2; exit 1; }
sleep 1
db=$(curl -fsS "http://127.0.0.1:$fport/v1/status" | grep -o '"db_bytes":[0-9]*' | cut -d: -f2)

measure() { # signal -> sets MEDIAN (no subshell: start_member must update pids[])
  local out=() t
  for _ in 1 2 3; do
    kill "-$1" "${pids[$follower]}"; wait "${pids[$follower]}" 2>/dev/null || true
    start_member "$follower"
    t=$(wait_ready "$fport" 60)
    out+=("$t")
  done
  MEDIAN=$(printf '%s\n' "${out[@]}" | sort -n | sed -n 2p)
}
measure TERM; term_ms=$MEDIAN
measure KILL; kill_ms=$MEDIAN
count=$(curl -fsS "http://127.0.0.1:$fport/v1/kv/key-?prefix&count&consistency=serializable" |
  grep -o '"count":[0-9]*' | cut -d: -f2)
[ "$count" -eq "$N" ] || { echo "restarted member has $count keys, expected $N" >&2; exit 1; }
echo "restart benchmark: keys=$N value_bytes=$VBYTES fill_ms=$fill_ms db_bytes=$db" \
  "restart_after_sigterm_median_ms=$term_ms restart_after_sigkill_median_ms=$kill_ms"

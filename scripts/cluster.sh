#!/usr/bin/env bash
# Start, stop or inspect a local 3-member Ballast cluster on 127.0.0.1.
#   scripts/cluster.sh start   members 1..3: client ports 8379/8381/8383, peer 8380/8382/8384
#   scripts/cluster.sh stop    SIGTERM every member (leader hands off first)
#   scripts/cluster.sh status  ballastctl status over all three
# Data and logs live in .cluster/ (member-N/ and member-N.log).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/server/ballastd
CTL=build/client/ballastctl
DIR=.cluster
ENDPOINTS=127.0.0.1:8379,127.0.0.1:8381,127.0.0.1:8383
CLUSTER=1=127.0.0.1:8380,2=127.0.0.1:8382,3=127.0.0.1:8384

start() {
  mkdir -p "$DIR"
  for i in 1 2 3; do
    if [ -f "$DIR/member-$i.pid" ] && kill -0 "$(cat "$DIR/member-$i.pid")" 2>/dev/null; then
      echo "member-$i already running (pid $(cat "$DIR/member-$i.pid"))"; continue
    fi
    cport=$((8377 + 2 * i)); pport=$((cport + 1))
    nohup "$BIN" --id "$i" --name "member-$i" --data-dir "$DIR/member-$i" \
      --listen-client "127.0.0.1:$cport" --listen-peer "127.0.0.1:$pport" \
      --initial-cluster "$CLUSTER" >>"$DIR/member-$i.log" 2>&1 </dev/null &
    echo $! >"$DIR/member-$i.pid"
  done
  # Wait (bounded) until every member knows the leader and has published its address.
  for _ in $(seq 1 100); do
    if "$CTL" --endpoints "$ENDPOINTS" status >/dev/null 2>&1 &&
       [ "$(curl -fsS http://127.0.0.1:8379/v1/members 2>/dev/null | grep -o '"client_url":"1' | wc -l)" -eq 3 ]; then
      "$CTL" --endpoints "$ENDPOINTS" status
      cat <<EOT

Cluster is up. Try:
  curl -sS -X PUT --data-binary hello http://127.0.0.1:8381/v1/kv/greeting
  curl -sS 'http://127.0.0.1:8383/v1/kv/greeting?raw'; echo
  export BALLAST_ENDPOINTS=$ENDPOINTS
  $CTL put greeting hello && $CTL get greeting && $CTL status
Stop it with: scripts/cluster.sh stop   (logs: $DIR/member-N.log)
EOT
      return 0
    fi
    sleep 0.1
  done
  echo "cluster did not come up within 10 s; see $DIR/member-*.log" >&2
  tail -n 20 "$DIR"/member-*.log >&2
  return 1
}

stop() {
  for i in 1 2 3; do
    f="$DIR/member-$i.pid"
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) "$CTL" --endpoints "$ENDPOINTS" status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

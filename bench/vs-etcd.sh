#!/usr/bin/env bash
# Side by side: ballast against etcd 3.4 on this machine, every workload of bench/load.
#
#   bench/vs-etcd.sh [SECONDS=10] [more bench/load flags...]
#
# Runs build/bench/load --vs-etcd (ballastd from build/server/ballastd, etcd from $PATH or $ETCD)
# for put at 1, 16 and 128 connections, then get, getser, mixed, txn and watch at 16 connections,
# SECONDS measured per run after the default 2 s warmup. Each workload starts a fresh 3-member
# cluster per system under /var/tmp (a real disk: fsync latency matters) and removes it after.
# The full reports go to bench-vs-etcd-DATE.txt in the current directory; the side-by-side tables
# and the machine-readable "load:" lines are printed at the end. Extra flags (e.g. --value-size
# 1024, --keys 1000000, --pipeline 4) are passed to every run. Needs build/ (scripts/build.sh)
# and etcd 3.4 (Debian etcd-server). Bounded: each run is bounded by bench/load itself.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
shift || true
LOAD=${LOAD:-$PWD/build/bench/load}
BALLASTD=${BALLASTD:-$PWD/build/server/ballastd}
OUT=$PWD/bench-vs-etcd-$(date +%Y%m%d-%H%M%S).txt
[ -x "$LOAD" ] || { echo "vs-etcd: no $LOAD (build first: make -C build)" >&2; exit 2; }
[ -x "$BALLASTD" ] || { echo "vs-etcd: no $BALLASTD" >&2; exit 2; }
command -v "${ETCD:-etcd}" >/dev/null || { echo "vs-etcd: no etcd (apt-get install etcd-server)" >&2; exit 2; }

run() {
    "$LOAD" --vs-etcd --ballastd "$BALLASTD" --seconds "$SECS" "$@" | tee -a "$OUT"
}
run --workload put --conns 1,16,128 "$@"
for w in get getser mixed txn watch; do
    run --workload "$w" --conns 16 "$@"
done
echo
echo "=== summary (full reports in $OUT)"
awk '/^=== /{t=1} /^$/{t=0} t' "$OUT"
grep '^load:' "$OUT"

#!/usr/bin/env bash
# The long nemesis profile (not part of `make check`): 5 members, 30 minutes, every fault kind
# (kill -9, SIGSTOP, clock jumps and drift, a full disk, a wiped data dir, remove and rejoin,
# leadership transfer, isolation, majority/minority and bridge partitions, packet loss,
# delay, in-server crash points), then the linearizability, lost-write, convergence and watch
# checks of tests/integration/test_nemesis.c. Needs root (nftables, a tmpfs in a private mount
# namespace) like the short profile.
#
#   scripts/nemesis-long.sh                 # 5 members, 1800 s, all faults
#   NEMESIS_RUN_S=600 NEMESIS_MEMBERS=3 scripts/nemesis-long.sh
#   NEMESIS_SEED=1234 scripts/nemesis-long.sh   # replay a schedule
#   NEMESIS_FAULTS=kill,split,disk scripts/nemesis-long.sh
#
# Prints the run's summary line ("nemesis: profile=long members=5 ... violations=0 lost=0 ...")
# last; the whole output is in build/nemesis-long.log. Exits non-zero when a check failed.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh || exit 1
scripts/build.sh || exit 1
make -C build -j2 tests/integration/test-nemesis server/ballastd client/ballastctl >/dev/null ||
  exit 1

export NEMESIS_PROFILE=long
export NEMESIS_MEMBERS=${NEMESIS_MEMBERS:-5}
export NEMESIS_RUN_S=${NEMESIS_RUN_S:-1800}
export BALLASTD=$PWD/build/server/ballastd BALLASTCTL=$PWD/build/client/ballastctl
export CK_RUN_CASE=nemesis_all_faults

echo "nemesis-long: $NEMESIS_MEMBERS members, $NEMESIS_RUN_S s, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
build/tests/integration/test-nemesis >build/nemesis-long.log 2>&1
status=$?
grep -E '^nemesis: (faults injected|member-|watcher)' build/nemesis-long.log
tail -n 3 build/nemesis-long.log | grep -E 'Checks|:F:|:E:'
grep -E '^nemesis: profile=' build/nemesis-long.log || echo "nemesis-long: no summary line (see build/nemesis-long.log)"
exit $status

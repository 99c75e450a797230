#!/usr/bin/env bash
# Quick start, step 2: install what is missing, build, and run the whole test suite:
#   1. make check in build/ (unit tests + 3-member integration tests with real ballastd processes)
#   2. the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)
#   3. clang-format and cppcheck
#   4. make distcheck (tarball builds, installs and passes its unit tests)
# Prints one summary line "checks: N passed, N failed" at the end; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh || exit 1
start=$(date +%s)
status=0

step() { echo "== $*"; }
summarize() { # sum Check's "Checks: N, Failures: F, Errors: E" over the logs of a build dir
  cat "$1"/tests/*/*.log 2>/dev/null | grep -ho 'Checks: [0-9]*, Failures: [0-9]*, Errors: [0-9]*' |
    awk '{c+=$2; f+=$4; e+=$6} END {printf "%d %d\n", c-f-e, f+e}'
}

step "build"
scripts/build.sh || exit 1

step "make check (unit + integration)"
if ! make -C build -j2 check >build/check.out 2>&1; then
  status=1
  cat build/check.out
  cat build/test-suite.log 2>/dev/null | tail -n 200
else
  grep -E '^(PASS|FAIL|ERROR|SKIP|XFAIL|XPASS):|^# ' build/check.out
fi
grep -h METRIC build/tests/integration/*.log 2>/dev/null || true

step "unit tests under ASan+UBSan"
mkdir -p build-asan
( cd build-asan && { [ -f Makefile ] || ../configure --quiet --enable-sanitize --disable-integration-tests; } &&
  make -j2 >/dev/null && make -j2 check >check.out 2>&1 ) || { status=1; cat build-asan/check.out build-asan/test-suite.log 2>/dev/null | tail -n 200; }
grep -E '^# (TOTAL|PASS|FAIL|ERROR)' build-asan/check.out 2>/dev/null

step "clang-format"
make -C build -s format-check || status=1
step "cppcheck"
make -C build -s cppcheck || status=1

step "make distcheck"
make -C build -s distcheck >build/distcheck.out 2>&1 || { status=1; tail -n 80 build/distcheck.out; }
grep -E 'archives ready|ballast-.*tar.gz' build/distcheck.out | head -3

read -r p1 f1 < <(summarize build)
read -r p2 f2 < <(summarize build-asan)
echo "== done in $(( $(date +%s) - start ))s"
[ "$status" -eq 0 ] || f1=$((f1 + (f1 + f2 == 0 ? 1 : 0)))
echo "checks: $((p1 + p2)) passed, $((f1 + f2)) failed"
exit "$status"

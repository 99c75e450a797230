#!/usr/bin/env bash
# Build Ballast in ./build (out of tree). Extra arguments go to configure.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x configure ] && [ configure -nt configure.ac ] && [ configure -nt Makefile.am ] || autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure --quiet "$@"
make -j"$(nproc)" >/dev/null

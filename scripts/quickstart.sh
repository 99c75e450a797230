#!/usr/bin/env bash
# Quick start, step 1: install what is missing, build, start a local 3-member cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
scripts/cluster.sh start

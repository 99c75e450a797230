#!/usr/bin/env bash
# Install what Ballast needs to build and test, from Debian 12 packages only.
# Idempotent and quiet when everything is already there.
set -euo pipefail

PACKAGES=(
  build-essential autoconf automake libtool pkg-config
  libraft-dev libuv1-dev liblmdb-dev libmsgpack-dev libjansson-dev libhttp-parser-dev
  check clang-format cppcheck valgrind curl nftables iproute2 faketime
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

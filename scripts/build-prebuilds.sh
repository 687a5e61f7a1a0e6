#!/usr/bin/env bash
# Rebuild the committed prebuilds of the SEEK_DATA addon (native/seek.c):
# prebuilds/linux-x64 and prebuilds/linux-arm64, loaded by node-gyp-build, so
# `npm ci` needs no compiler on these platforms. Node-API, so one build serves
# every Node version ferry supports.
#
#   bash scripts/build-prebuilds.sh
#
# Needs an x86-64 Debian host with build-essential, python3, Node's headers
# (/usr/include/node) and, for arm64, gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross. Run it after changing native/seek.c or binding.gyp
# and commit prebuilds/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ $(uname -m) == x86_64 ]] || { echo "build-prebuilds.sh: run on x86-64 (arm64 is cross-compiled)" >&2; exit 1; }
command -v aarch64-linux-gnu-gcc >/dev/null \
  || { echo "build-prebuilds.sh: missing aarch64-linux-gnu-gcc (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross)" >&2; exit 1; }

rm -rf prebuilds
# arm64 first: prebuildify builds in build/, and the host build must be the
# one left there (node-gyp-build prefers build/Release over prebuilds/).
# gyp links with $(CXX) unless LINK is set; the addon is plain C.
CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-gcc LINK=aarch64-linux-gnu-gcc \
  npx prebuildify --napi --strip --arch arm64 --strip-bin aarch64-linux-gnu-strip
npx prebuildify --napi --strip
file prebuilds/*/*.node

#!/usr/bin/env bash
# Installs what the build, the tests and the benchmarks need and that a fresh machine may lack (Debian packages, npm packages).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have gcc || need+=(gcc)
# gcc only recommends the C library headers; test helpers compiled at test time (tests/harness/*.c) include them.
[ -f /usr/include/stdio.h ] && [ -f /usr/include/linux/if_packet.h ] || need+=(libc6-dev)
have ld || need+=(binutils)
have make || need+=(make)
have xz || need+=(xz-utils)
have ncat || need+=(ncat)
have qemu-system-x86_64 || need+=(qemu-system-x86)
have mkfs.ext4 || need+=(e2fsprogs)
have ip || need+=(iproute2)
have ping || need+=(iputils-ping)
have socat || need+=(socat)
if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "install-deps: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

#!/usr/bin/env bash
# Fetches Debian's linux-image-6.1.0-56-amd64 and extracts the ELF vmlinux (PVH entry) from its bzImage; cached in build/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=linux-image-6.1.0-56-amd64
OUT=build/debian
if [ -s "$OUT/vmlinux" ] && [ -s "$OUT/bzImage" ]; then exit 0; fi
mkdir -p "$OUT/tmp"
command -v xz >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xz-utils >/dev/null; }
cd "$OUT/tmp"
if ! ls ${PKG}_*.deb >/dev/null 2>&1; then
  apt-get download "$PKG" >/dev/null 2>&1 || { apt-get update -qq && apt-get download "$PKG" >/dev/null 2>&1; }
fi
dpkg-deb -x ${PKG}_*.deb root
cp root/boot/vmlinuz-6.1.0-56-amd64 ../bzImage
# The bzImage carries the kernel XZ-compressed: find the stream's magic and decompress it to the ELF vmlinux.
off=$(grep -abo $'\xfd7zXZ\x00' ../bzImage | head -1 | cut -d: -f1)
tail -c +$((off + 1)) ../bzImage | xz -dc > ../vmlinux 2>/dev/null || true
head -c 4 ../vmlinux | grep -q $'\x7fELF' || { echo "could not extract vmlinux from $PKG" >&2; exit 1; }
cd .. && rm -rf tmp

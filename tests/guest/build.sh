#!/bin/sh
# build.sh: builds build/guest/tsvirt-test-guest.elf from tests/guest/, skipping the build when it is up to date.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

src=tests/guest
out_dir=build/guest
out=$out_dir/tsvirt-test-guest.elf

# Up to date when no source (including this script) is newer than the ELF.
if [ -f "$out" ] && [ -z "$(find "$src" -type f -newer "$out" | head -n 1)" ]; then
	exit 0
fi

mkdir -p "$out_dir"
# A private directory and a final rename, so concurrent builds never see a half-written ELF.
tmp=$(mktemp -d "$out_dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

CFLAGS="-ffreestanding -nostdlib -fno-pic -mno-red-zone -mno-sse -mno-mmx -mgeneral-regs-only -O2 \
-fno-stack-protector -fno-asynchronous-unwind-tables -fno-tree-loop-distribute-patterns \
-fno-builtin -mcmodel=small -march=x86-64 -std=gnu11 -Wall -Wextra -Werror"

gcc $CFLAGS -c "$src/head.S" -o "$tmp/head.o"
gcc $CFLAGS -c "$src/irq.S" -o "$tmp/irq.o"
for f in main hw lib pci virtio blk net; do
	gcc $CFLAGS -c "$src/$f.c" -o "$tmp/$f.o"
done
ld -nostdlib -static -z max-page-size=0x1000 -z noexecstack --no-warn-rwx-segments \
	-T "$src/linker.ld" -o "$tmp/guest.elf" \
	"$tmp/head.o" "$tmp/main.o" "$tmp/hw.o" "$tmp/lib.o" "$tmp/pci.o" "$tmp/virtio.o" "$tmp/blk.o" \
	"$tmp/net.o" "$tmp/irq.o"
mv -f "$tmp/guest.elf" "$out"

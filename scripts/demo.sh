#!/usr/bin/env bash
# make demo: boots the bundled test guest on tsvirt with two vCPUs, shows its console for a few seconds, then powers it off.
set -euo pipefail
cd "$(dirname "$0")/.."
GUEST=build/guest/tsvirt-test-guest.elf
SOCK=$(mktemp -u /tmp/tsvirt-demo.XXXXXX.sock)
echo "== tsvirt -machine q35 -kernel $GUEST -m 256 -smp 2 -serial stdio -qmp unix:$SOCK,server,nowait"
( sleep 3; printf 'echo hello from make demo\r'; sleep 1; printf 'poweroff\r' ) | \
  timeout 60 node dist/machine/main.js -machine q35 -kernel "$GUEST" -append "console=ttyS0" -m 256 -smp 2 \
    -serial stdio -qmp "unix:$SOCK,server,nowait" -name demo
echo "== guest powered off; tsvirt exited with $?"

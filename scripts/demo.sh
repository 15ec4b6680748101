#!/usr/bin/env bash
# make demo: boots the bundled test guest on tsvirt, shows its console, live-migrates it to a second tsvirt over a
# unix socket while it dirties memory, checks its memory on the destination, then powers it off.
set -euo pipefail
cd "$(dirname "$0")/.."
GUEST=build/guest/tsvirt-test-guest.elf
DIR=$(mktemp -d /tmp/tsvirt-demo.XXXXXX)
SRC_PID=""; DST_PID=""
cleanup() { [ -n "$SRC_PID" ] && kill "$SRC_PID" 2>/dev/null || true; [ -n "$DST_PID" ] && kill "$DST_PID" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
qmp() { printf '%s\n' "$2" | ncat -U "$1" 2>/dev/null | tail -n 1; }
ARGS=(-machine q35 -kernel "$GUEST" -m 512 -smp 2)

echo "== source: tsvirt ${ARGS[*]} -append 'console=ttyS0 dirty_mib=64 dirty_rate=0' -qmp unix:$DIR/src.sock,server,nowait"
node dist/machine/main.js "${ARGS[@]}" -append "console=ttyS0 dirty_mib=64 dirty_rate=0" -serial "file:$DIR/src.console" \
  -qmp "unix:$DIR/src.sock,server,nowait" -name demo-src & SRC_PID=$!
echo "== destination: the same command line plus -incoming unix:$DIR/migrate.sock"
mkfifo "$DIR/dst.in"
node dist/machine/main.js "${ARGS[@]}" -append "console=ttyS0" -serial stdio -qmp "unix:$DIR/dst.sock,server,nowait" \
  -incoming "unix:$DIR/migrate.sock" -name demo-dst < <(cat "$DIR/dst.in") > "$DIR/dst.console" & DST_PID=$!
exec 3> "$DIR/dst.in"
sleep 2
echo "== source console so far:"; sed 's/^/   | /' "$DIR/src.console" | head -n 14
echo "== QMP (source): {\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:$DIR/migrate.sock\"}}"
qmp "$DIR/src.sock" "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:$DIR/migrate.sock\"}}"
sleep 1.5
echo "== QMP (source): {\"execute\":\"query-migrate\"}"
qmp "$DIR/src.sock" '{"execute":"query-migrate"}'
echo "== QMP (source): query-status -> $(qmp "$DIR/src.sock" '{"execute":"query-status"}')"
echo "== QMP (destination): query-status -> $(qmp "$DIR/dst.sock" '{"execute":"query-status"}')"
echo "== last heartbeat on the source:"; grep 'HB seq' "$DIR/src.console" | tail -n 1 | sed 's/^/   | /'
echo "== the guest continues on the destination:"; grep 'HB seq' "$DIR/dst.console" | head -n 3 | sed 's/^/   | /'
printf 'check\r' >&3; sleep 1.5
grep -m1 'CHECK' "$DIR/dst.console" | sed 's/^/   | memory self-check on the destination: /'
printf 'poweroff\r' >&3
wait "$DST_PID" && echo "== the guest powered off on the destination; tsvirt exited 0" ; DST_PID=""
qmp "$DIR/src.sock" '{"execute":"quit"}' > /dev/null; wait "$SRC_PID" || true; SRC_PID=""

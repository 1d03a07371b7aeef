#!/usr/bin/env bash
# diskfull_test.sh AMBER_STORE ORACLE_CHECK
#
# A real full disk: an instance on a 64 MiB ext4 filesystem (loop device)
# is served under load until the filesystem is full.  Commits must then
# fail cleanly (AMS_ENOSPC, the workload goes on asking), SIGTERM must still
# shut the store down cleanly (the engine's space reserve pays for the last
# checkpoint), nothing acknowledged may be lost (oracle), every page must
# verify, and once space is freed the store must commit again.
set -uo pipefail
store=$1
oracle_check=$2

if [ "$(id -u)" != 0 ]; then
	if [ "${CI:-}" = true ]; then echo "FAIL: needs root for a loop filesystem"; exit 1; fi
	echo "SKIP: needs root for a loop filesystem"; exit 77
fi

work=$(mktemp -d /tmp/amber-diskfull.XXXXXX)
mnt=$work/mnt
loop=""
pid=""
cleanup() {
	[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
	mountpoint -q "$mnt" && umount "$mnt"
	[ -n "$loop" ] && losetup -d "$loop" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- serve stderr:"; tail -20 "$work"/serve*.err 2>/dev/null; exit 1; }

truncate -s 64M "$work/fs.img"
mkfs.ext4 -q -F "$work/fs.img" || fail "mkfs.ext4"
loop=$(losetup -f --show "$work/fs.img") || fail "no free loop device"
mkdir -p "$mnt"
mount "$loop" "$mnt" || fail "mount"
# some space to free later
dd if=/dev/zero of="$mnt/filler" bs=1M count=6 status=none conv=fsync

"$store" create "$mnt/inst" >/dev/null || fail "create"
"$store" serve "$mnt/inst" --load 0 --threads 4 --oracle "$work/oracle" --quiet 2>"$work/serve1.err" &
pid=$!
for _ in $(seq 1 120); do
	grep -qi "no space" "$work/serve1.err" && break
	kill -0 "$pid" 2>/dev/null || fail "serve died before the disk was full"
	sleep 0.5
done
grep -qi "no space" "$work/serve1.err" || fail "the filesystem never filled up"
echo "disk full reached: $(df -h --output=avail "$mnt" | tail -1) left; commits now fail cleanly"
sleep 2
kill -0 "$pid" 2>/dev/null || fail "serve died on a full disk"
acked1=$(grep -c '^ack ' "$work/oracle")
kill -TERM "$pid"
wait "$pid"; rc=$?; pid=""
[ "$rc" = 0 ] || fail "serve exited $rc after SIGTERM on a full disk (clean shutdown expected)"
hdr=$("$store" header "$mnt/inst/priv1.edb" 2>&1)
grep -q "Clean Shutdown" <<<"$hdr" || { echo "$hdr" | head -30; fail "not a clean shutdown"; }

"$store" dump "$mnt/inst" >"$work/dump1" || fail "dump after disk full"
"$oracle_check" "$work/oracle" "$work/dump1" || fail "oracle after disk full"
for db in "$mnt"/inst/*.edb; do
	"$store" check "$db" >/dev/null || fail "check $db"
done

# free space: the store commits again
rm -f "$mnt/filler"
"$store" serve "$mnt/inst" --load 200 --threads 2 --oracle "$work/oracle" --quiet 2>"$work/serve2.err" &
pid=$!
sleep 3
kill -TERM "$pid"
wait "$pid"; rc=$?; pid=""
acked2=$(grep -c '^ack ' "$work/oracle")
[ "$acked2" -gt "$acked1" ] || fail "no commit after space was freed ($acked1 -> $acked2)"
"$store" dump "$mnt/inst" >"$work/dump2" || fail "dump after freeing space"
"$oracle_check" "$work/oracle" "$work/dump2" || fail "oracle after freeing space"
echo "PASS: full disk failed commits cleanly; $acked1 acknowledged before, $acked2 after freeing space; nothing lost"

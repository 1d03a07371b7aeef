#!/usr/bin/env bash
# nospace_test.sh BINDIR
#
# A shadow set that runs out of disk space, with amber-store serve under
# load as the registered writer:
#   1. the shadow storage is full: the store lives on a tmpfs (copy
#      provider, whose copy goes to the same filesystem) with less room left
#      than the store takes.  `amber create shadow --persistent` fails with
#      exit 3 (retryable: VSS's out-of-resources class; room may be made by
#      deleting shadows) and says that the disk is full; the writer was
#      thawed (the store commits again within the hold deadline + 1 s);
#      nothing is leaked: no shadow listed, nothing left in the shadow
#      storage directory; with room again the next set works.
#   2. amberd's state directory is full (a tmpfs filled up after amberd
#      started): the registry records a shadow before the provider makes it,
#      so the set fails there (exit 3, naming the full disk: docs/protocol.md
#      puts a full disk in the retryable out-of-resources class, as at the
#      commit) with nothing made; the store commits on; with room again the
#      next set works and is listed, also after amberd restarts.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=daemon_lib.sh
. "$here/daemon_lib.sh"

d_init "${1:?usage: nospace_test.sh BINDIR}"
# d_cleanup unmounts everything under $DW
mkdir "$DW/fs" "$DW/state" || fail "mkdir"
mount -t tmpfs -o size=128m tmpfs "$DW/fs" || fail "mount tmpfs (volume)"
mount -t tmpfs -o size=4m tmpfs "$DW/state" || fail "mount tmpfs (state)"
VOL=$DW/fs/vol
mkdir "$VOL" || fail "mkdir $VOL"
d_store_under_load 200
d_wait_acks "$ORACLE" 300 30000 >/dev/null || fail "serve is not committing"

# create_fails WHAT: `amber create shadow` exits 3 naming the full disk;
# the store commits again within the hold deadline + 1 s (a requirement:
# its first new commit, timed from the failed set's answer) and goes on
# committing (20 more: only slack, the volume is nearly full and serve
# backs off on ENOSPC); nothing is listed or left in the shadow storage
create_fails() {
	local what=$1 acks rc
	"$AMBER" create shadow "$VOL" --persistent >"$DW/c.out" 2>"$DW/c.err"
	rc=$?
	[ "$rc" = 3 ] || fail "create shadow with the $what: exit $rc, not 3: $(cat "$DW/c.err")"
	has -i "no space left" <"$DW/c.err" || fail "$what: the error does not say the disk is full: $(cat "$DW/c.err")"
	acks=$(d_acks "$ORACLE")
	d_wait_acks "$ORACLE" "$acks" $((HOLD_MS + 1000)) >/dev/null ||
		fail "$what: the store does not commit again within the hold deadline + 1 s (writes still held?)"
	d_wait_acks "$ORACLE" $((acks + 20)) 20000 >/dev/null ||
		fail "$what: the store does not go on committing (20 commits in 20 s)"
	[ -z "$(d_shadow_ids)" ] || fail "$what: a shadow is listed: $(d_shadow_ids)"
	[ -z "$(d_shadow_dirs "$DW/fs")" ] ||
		fail "$what: left in the shadow storage: $(ls -a "$DW/fs/.amber-shadows")"
}

# create_works: with room again a set works and is listed; the id in $id
create_works() {
	id=$("$AMBER" create shadow "$VOL" --persistent 2>"$DW/c.err") ||
		fail "create shadow with room again: $(cat "$DW/c.err")"
	d_shadow_ids | has "$id" || fail "the new shadow $id is not listed"
}

# --- 1. the shadow storage is full
store_kb=$(du -sk "$SG" | cut -f1)
avail_kb=$(df -k --output=avail "$DW/fs" | tail -1)
fill_kb=$(( avail_kb - store_kb / 2 ))
[ "$fill_kb" -gt 0 ] || fail "cannot make the volume too small (avail $avail_kb KiB, store $store_kb KiB)"
fallocate -l "${fill_kb}k" "$DW/fs/filler" || fail "fallocate"
create_fails "shadow storage full"
ok "shadow storage full ($(( store_kb / 2 )) KiB free for a $store_kb KiB store): exit 3 ($(tail -1 "$DW/c.err")); writer thawed, nothing leaked"
rm "$DW/fs/filler"
create_works
"$AMBER" delete shadows --all >/dev/null 2>"$DW/d.err" || fail "delete shadows: $(cat "$DW/d.err")"
ok "with room again: shadow $id made, listed and deleted"

# --- 2. amberd's state directory is full
fallocate -l 64m "$DW/state/filler" 2>/dev/null
dd if=/dev/zero of="$DW/state/filler2" bs=4k 2>/dev/null
df -k --output=avail "$DW/state" | tail -1 | has '^ *0$' || fail "the state tmpfs is not full"
create_fails "state directory full"
ok "state directory full: exit 3 ($(tail -1 "$DW/c.err")); nothing made or leaked, the store commits on"
rm -f "$DW/state/filler" "$DW/state/filler2"
create_works
# the registry survives a restart of amberd with it
d_stop_amberd
d_start_amberd
d_shadow_ids | has "$id" || fail "shadow $id is not listed after amberd restarted"
ok "with room again: shadow $id made, and still listed after amberd restarted"

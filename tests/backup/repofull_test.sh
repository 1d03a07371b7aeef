#!/usr/bin/env bash
# repofull_test.sh BINDIR
#
# A repository whose filesystem fills up during a full backup, with
# amber-store serve under load on a btrfs volume (btrfs provider); the
# repository is a tmpfs of a fixed size, smaller than the store:
#   - the backup fails with exit 1 and says that the disk is full;
#   - it is not listed as verified; the writer was told it failed, so its
#     header records no backup and no log is truncated; the store goes on
#     committing;
#   - the same for a full backup by --method stream (the client's page
#     writes fail);
#   - once there is space again, --prune-incomplete and --prune-failed
#     remove the failed folders and the next full backup succeeds and is recorded.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../daemon/daemon_lib.sh
. "$here/../daemon/daemon_lib.sh"

d_init "${1:?usage: repofull_test.sh BINDIR}"
d_volume btrfs
d_store_under_load 200

logs() { ls "$SG" | grep '^E00[0-9A-F]\{8\}\.log$' | sort; }
hdr_full() { "$STORE" header "$SG/priv1.edb" | grep -A2 "^Previous Full Backup:" | grep "Mark:"; }

# the repository's filesystem: 128 KiB, half of one of the store's 256 KiB
# log files, and a full backup copies at least one (the current log) besides
# the databases.  Not half of the whole directory, as it was: the archived
# logs below the checkpoint are not copied, and right after a checkpoint
# they can be most of it, so that the backup fitted now and then.
# d_cleanup unmounts everything under $DW.
size_kb=$(du -sk "$SG" | cut -f1)
small_kb=128
mkdir "$DW/repofs" || fail "mkdir"
mount -t tmpfs -o size=${small_kb}k tmpfs "$DW/repofs" || fail "mount tmpfs"
REPO=$DW/repofs/repo

oldest=$(logs | head -1)
acks=$(d_acks "$ORACLE")
"$AMBER" backup full --repo "$REPO" --quiet >"$DW/b.out" 2>"$DW/b.err"
rc=$?
[ "$rc" = 1 ] || fail "a full backup into a full filesystem: exit $rc, not 1: $(cat "$DW/b.err")"
has -i "no space left" <"$DW/b.err" || fail "the error does not say the disk is full: $(cat "$DW/b.err")"
has "no writer recorded it or truncated a log" <"$DW/b.err" ||
	fail "the error does not say what the failed backup left: $(cat "$DW/b.err")"
ok "a full backup into a $small_kb KiB repository (store: $size_kb KiB) fails with exit 1: $(tr '\n' ' ' <"$DW/b.err")"

# left_nothing N WHAT: the repository lists N backups, none verified or
# complete; the header records no full; no log was truncated; the store
# commits on (100 more acknowledged transactions since $acks)
left_nothing() {
	"$AMBER" backups --repo "$REPO" --json >"$DW/l.json" 2>"$DW/l.err" ||
		fail "amber backups on the full repository: $(cat "$DW/l.err")"
	jq -e --argjson n "$1" 'length == $n and all(.[]; .verified == false and .status != "complete")' \
		"$DW/l.json" >/dev/null || fail "$2 is listed wrongly: $(cat "$DW/l.json")"
	hdr_full | has "none" || fail "$2 was recorded in the header: $(hdr_full)"
	[ "$(logs | head -1)" = "$oldest" ] || fail "$2 truncated logs ($oldest -> $(logs | head -1))"
	d_wait_acks "$ORACLE" $(( acks + 100 )) 30000 >/dev/null || fail "the store stopped committing after $2"
}
left_nothing 1 "the failed backup"
ok "the failed backup: listed unverified ($(jq -r '.[0].status' "$DW/l.json")), not recorded, nothing truncated; the store commits on"

# the same by --method stream: the pages arrive through serve's socket and
# the client's write of them fails.  The filesystem gets room for the
# backup's document and half of the databases, so that it is the pages'
# write that fails (at 128 KiB the document's own write did)
db_kb=$(du -skc "$SG"/*.edb | tail -1 | cut -f1)
mount -o remount,size=$(( db_kb / 2 + 256 ))k "$DW/repofs" || fail "remount tmpfs"
acks=$(d_acks "$ORACLE")
"$AMBER" backup full --method stream --repo "$REPO" --quiet >"$DW/s.out" 2>"$DW/s.err"
rc=$?
[ "$rc" = 1 ] || fail "a streamed full backup into a full filesystem: exit $rc, not 1: $(cat "$DW/s.err")"
has -i "no space left" <"$DW/s.err" || fail "the streamed backup's error does not say the disk is full: $(cat "$DW/s.err")"
has "write of pages" <"$DW/s.err" || fail "the streamed backup did not fail on its pages: $(cat "$DW/s.err")"
left_nothing 2 "the failed streamed backup"
ok "a streamed full backup into it fails the same way (exit 1, unverified, not recorded, nothing truncated): $(tr '\n' ' ' <"$DW/s.err")"

# space again
mount -o remount,size=1g "$DW/repofs" || fail "remount tmpfs"
# (the snapshot backup stopped while copying: incomplete; the streamed one
# got as far as its failure report: failed)
has "prune-failed" <"$DW/s.err" || fail "the streamed backup's error does not say how to remove it: $(cat "$DW/s.err")"
"$AMBER" backups --repo "$REPO" --prune-incomplete --prune-failed >/dev/null 2>"$DW/p.err" ||
	fail "--prune-incomplete --prune-failed: $(cat "$DW/p.err")"
"$AMBER" backups --repo "$REPO" --json | jq -e 'length == 0' >/dev/null ||
	fail "--prune-incomplete --prune-failed left a failed backup"
"$AMBER" backup full --repo "$REPO" --quiet >"$DW/b.out" 2>"$DW/b.err" ||
	fail "the full backup once there is space: $(cat "$DW/b.err")"
id=$(tail -1 "$DW/b.out")
"$AMBER" backups --repo "$REPO" --json | jq -e --arg id "$id" \
	'length == 1 and .[0].id == $id and .[0].verified == true' >/dev/null ||
	fail "the new full is not listed verified"
hdr_full | has -v "none" || fail "the new full is not recorded in the header"
# (the writer deletes the logs right after its answer to BackupComplete)
oldest_past() { [[ "$(logs | head -1)" > "$1" ]]; }
d_wait_for 10000 oldest_past "$oldest" || fail "the new full truncated nothing"
ok "with space again: pruned, the next full $id is verified, recorded and truncates"

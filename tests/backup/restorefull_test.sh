#!/usr/bin/env bash
# restorefull_test.sh BINDIR
#
# An in-place restore onto a filesystem without room for it.  The store
# lives on a tmpfs (copy provider), is backed up under load, then crashes
# (SIGKILL); a filler file leaves less free space than the databases need:
#   - the offline restore fails with exit 1 and says that the disk is full;
#   - the instance is exactly as the crash left it (every file's SHA-256
#     unchanged, nothing added: no half-laid copy, no restore.env, no log
#     folder);
#   - once the filler is gone the same restore succeeds, and the result
#     passes `amber-store check` and the oracle with every acknowledged
#     transaction present.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../daemon/daemon_lib.sh
. "$here/../daemon/daemon_lib.sh"

d_init "${1:?usage: restorefull_test.sh BINDIR}"
# d_cleanup unmounts everything under $DW
mkdir "$DW/fs" || fail "mkdir"
mount -t tmpfs -o size=256m tmpfs "$DW/fs" || fail "mount tmpfs"
VOL=$DW/fs/vol
mkdir "$VOL" || fail "mkdir $VOL"
REPO=$DW/repo
d_store_under_load 300
d_wait_acks "$ORACLE" 400 30000 >/dev/null || fail "serve is not committing"

"$AMBER" backup full --repo "$REPO" --quiet >"$DW/b.out" 2>"$DW/b.err" ||
	fail "backup full: $(cat "$DW/b.err")"
FULL=$(tail -1 "$DW/b.out")
d_wait_acks "$ORACLE" $(( $(d_acks "$ORACLE") + 200 )) 30000 >/dev/null || fail "no more commits"
kill -9 "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null
d_wait_gone() { # until amberd no longer lists the writer
	local i
	for i in $(seq 100); do
		"$AMBER" list writers 2>/dev/null | has "Writer name: 'amber-store'" || return 0
		sleep 0.05
	done
	return 1
}
d_wait_gone || fail "amberd still lists the killed writer"

# what the crash left
state() { (cd "$SG" && find . -type f -print0 | sort -z | xargs -0 sha256sum) }
state >"$DW/before" || fail "sha256sum"
db_kb=$(du -ck "$SG"/*.edb | tail -1 | cut -f1)
avail_kb=$(df -k --output=avail "$DW/fs" | tail -1)
fill_kb=$(( avail_kb - db_kb / 2 ))
[ "$fill_kb" -gt 0 ] || fail "cannot make the filesystem too small (avail $avail_kb KiB, databases $db_kb KiB)"
fallocate -l "${fill_kb}k" "$DW/fs/filler" || fail "fallocate filler"

"$AMBER" restore --repo "$REPO" latest --offline --quiet >"$DW/r.out" 2>"$DW/r.err"
rc=$?
[ "$rc" = 1 ] || fail "restore onto a full filesystem: exit $rc, not 1: $(cat "$DW/r.err")"
has -i "no space left" <"$DW/r.err" || fail "the error does not say the disk is full: $(cat "$DW/r.err")"
has "nothing in .* was replaced" <"$DW/r.err" || fail "the error does not say the instance is unchanged: $(cat "$DW/r.err")"
has -i "missing or damaged" <"$DW/r.err" && fail "a full target is blamed on the backup: $(cat "$DW/r.err")"
state >"$DW/after" || fail "sha256sum"
diff "$DW/before" "$DW/after" >"$DW/diff" ||
	fail "the failed restore changed the instance: $(cat "$DW/diff")"
ok "restore with $(( db_kb / 2 )) KiB free for $db_kb KiB of databases: exit 1 ($(tail -1 "$DW/r.err")); the instance is unchanged"

rm "$DW/fs/filler"
"$AMBER" restore --repo "$REPO" latest --offline --quiet >"$DW/r.out" 2>"$DW/r.err" ||
	fail "restore with space again: $(cat "$DW/r.err")"
for db in "$SG"/*.edb; do
	"$STORE" check "$db" >"$DW/check.out" 2>&1 || fail "check $db: $(tail -5 "$DW/check.out")"
done
"$STORE" dump "$SG" >"$DW/dump" 2>"$DW/dump.err" || fail "dump: $(cat "$DW/dump.err")"
"$OCHECK" "$ORACLE" "$DW/dump" >"$DW/ocheck" 2>&1 || fail "oracle: $(tail -5 "$DW/ocheck")"
ok "with space again the restore of $FULL (rolled forward) passes check; oracle: $(tail -1 "$DW/ocheck")"

#!/usr/bin/env bash
# generic_test.sh BINDIR
#
# A writer with the generic verifier "none" (src/backup/filesplug.c): its
# files are copied whole from the shadow, hashed, read back to verify, and
# restored.  amber-test-writer is such a writer (component `data`: every
# file below its --dir, recursive).  On a btrfs loop filesystem (btrfs
# provider):
#   - incremental without a full: refused, a full backup is needed
#   - full: every regular file copied (symbolic links and FIFOs skipped and
#     counted), verified, backup-complete tells the writer data:ok
#   - files changed, added and removed; incremental: all files again
#   - restore --to of latest and of the full: each backup's state exactly
#   - online restore in place: pre-restore, files back, post-restore
#   - --method stream: the generic writer is refused, named
#   - a copy damaged in the repository: verify fails naming it (exit 1); a
#     restore of it writes nothing (all or none)
#   - a hostile document (a root that is not a file-set directory): refused
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../daemon/daemon_lib.sh
. "$here/../daemon/daemon_lib.sh"

d_init "${1:?usage: generic_test.sh BINDIR}"
d_volume btrfs
REPO=$MNT/repo
DATA=$VOL/data
d_start_amberd

backup() { # backup TYPE [ARGS] -> sets BRC and BID
	"$AMBER" backup "$@" --repo "$REPO" >"$DW/b.out" 2>"$DW/b.err"
	BRC=$?
	BID=$(tail -1 "$DW/b.out")
}
# tree DIR: "<sha256>  <path>" of every regular file below DIR, sorted
tree() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum); }

mkdir -p "$DATA/sub/deep"
echo "first version" >"$DATA/a.txt"
head -c 3145728 /dev/urandom >"$DATA/sub/b.bin"   # 3 MiB: the chunked copy path
echo "deep" >"$DATA/sub/deep/c"
ln -s a.txt "$DATA/link"
mkfifo "$DATA/fifo"
"$TWRITER" --socket "$AMBER_SOCKET" --name files-writer --dir "$DATA" >>"$DW/tw.log" 2>&1 &
TW_PID=$!
D_PIDS+=("$TW_PID")
d_wait_writer files-writer 10 || fail "the test writer did not register"

# --- incremental first: refused
backup incremental --writer files-writer
[ "$BRC" = 2 ] && has "full backup is needed" <"$DW/b.err" ||
	fail "incremental without a full: exit $BRC: $(cat "$DW/b.err")"
ok "incremental without a full: refused (exit 2, a full backup is needed)"

# --- full
backup full
[ "$BRC" = 0 ] || fail "backup full: exit $BRC: $(cat "$DW/b.err")"
FULL=$BID
doc=$REPO/backups/$FULL/backup.json
[ "$(jq '[.files[] | select(.writer == "files-writer")] | length' "$doc")" = 3 ] ||
	fail "full: not 3 files: $(jq -c '[.files[].target]' "$doc")"
jq -e '.verified == true and (.writers[0].components[0] | .success == true and .skipped == 2
	and .files == 3)' "$doc" >/dev/null || fail "full: document: $(jq -c '.writers[0].components' "$doc")"
[ "$(jq -r '.files[] | select(.target == "sub/b.bin") | .root' "$doc")" = "$DATA" ] ||
	fail "full: root of sub/b.bin: $(jq -c '.files' "$doc")"
"$AMBER" backups --repo "$REPO" --json | jq -e --arg id "$FULL" \
	'.[] | select(.id == $id) | .verified == true and .type == "full"' >/dev/null ||
	fail "amber backups does not list $FULL as a verified full"
for i in $(seq 50); do
	has "event backup-complete .*components=data:ok" <"$DW/tw.log" && break
	sleep 0.1
done
has "event backup-complete .*type=full .*components=data:ok" <"$DW/tw.log" ||
	fail "the writer was not told data:ok: $(grep backup-complete "$DW/tw.log")"
tree "$DATA" >"$DW/state-full"
[ "$(wc -l <"$DW/state-full")" = 3 ] || fail "the tree of the data: $(cat "$DW/state-full")"
ok "full $FULL: 3 files copied and verified, link and fifo skipped (2), writer told data:ok"

# --- changes, then an incremental (all files again)
echo "second version" >"$DATA/a.txt"
rm "$DATA/sub/deep/c"
echo "new" >"$DATA/new.txt"
tree "$DATA" >"$DW/state-incr"
backup incremental
[ "$BRC" = 0 ] || fail "backup incremental: exit $BRC: $(cat "$DW/b.err")"
INCR=$BID
idoc=$REPO/backups/$INCR/backup.json
[ "$(jq -r '.parent' "$idoc")" = "$FULL" ] || fail "incremental: parent $(jq -r .parent "$idoc")"
[ "$(jq -c '[.files[].target] | sort' "$idoc")" = '["a.txt","new.txt","sub/b.bin"]' ] ||
	fail "incremental: files $(jq -c '[.files[].target]' "$idoc")"
ok "incremental $INCR: every file again (3), parent $FULL"

# --- restores to another place: each backup's state exactly
"$AMBER" restore --repo "$REPO" latest --to "$DW/r-latest" >/dev/null 2>"$DW/r.err" ||
	fail "restore latest --to: $(cat "$DW/r.err")"
diff "$DW/state-incr" <(tree "$DW/r-latest$DATA") >/dev/null ||
	fail "restore latest: $(diff "$DW/state-incr" <(tree "$DW/r-latest$DATA"))"
"$AMBER" restore --repo "$REPO" "$FULL" --to "$DW/r-full" >/dev/null 2>"$DW/r.err" ||
	fail "restore full --to: $(cat "$DW/r.err")"
diff "$DW/state-full" <(tree "$DW/r-full$DATA") >/dev/null ||
	fail "restore of the full: $(diff "$DW/state-full" <(tree "$DW/r-full$DATA"))"
[ "$(cat "$DATA/a.txt")" = "second version" ] || fail "restore --to touched the original"
ok "restore --to: latest and the full each give their backup's files exactly; the original untouched"

# --- online restore in place
echo "damaged" >"$DATA/a.txt"
rm "$DATA/sub/b.bin"
"$AMBER" restore --repo "$REPO" latest >/dev/null 2>"$DW/r.err" ||
	fail "online restore: $(cat "$DW/r.err")"
diff "$DW/state-incr" <(tree "$DATA") >/dev/null || fail "online restore: $(diff "$DW/state-incr" <(tree "$DATA"))"
has "event pre-restore .*components=data" <"$DW/tw.log" || fail "no pre-restore: $(tail -5 "$DW/tw.log")"
has "event post-restore .*components=data:ok" <"$DW/tw.log" || fail "no post-restore data:ok: $(tail -5 "$DW/tw.log")"
[ -z "$(find "$DATA" -name '*.amber-restore')" ] || fail "restore left temporary files"
ok "online restore in place: pre-restore, files back as backed up, post-restore data:ok"

# --- streaming: not for a generic writer
backup full --method stream --writer files-writer
[ "$BRC" = 2 ] && has "files-writer cannot be streamed" <"$DW/b.err" ||
	fail "stream of a generic writer: exit $BRC: $(cat "$DW/b.err")"
ok "--method stream with a generic writer: refused by name (exit 2)"

# --- a damaged copy: verify fails, a restore writes nothing
rel=$(jq -r '.files[] | select(.target == "sub/b.bin") | .path' "$idoc")
printf 'X' | dd of="$REPO/backups/$INCR/$rel" bs=1 seek=1000 conv=notrunc status=none
"$AMBER" verify --repo "$REPO" "$INCR" >/dev/null 2>"$DW/v.err"
vrc=$?
[ "$vrc" = 1 ] && has "$rel" <"$DW/v.err" || fail "verify of a damaged copy: exit $vrc: $(cat "$DW/v.err")"
"$AMBER" restore --repo "$REPO" "$INCR" --to "$DW/r-bad" >/dev/null 2>"$DW/r.err" &&
	fail "a damaged backup was restored"
[ -z "$(find "$DW/r-bad" -type f 2>/dev/null)" ] ||
	fail "a failed restore left files: $(find "$DW/r-bad" -type f)"
ok "a damaged copy: verify exit 1 naming $rel; restore fails and leaves no file"

# --- a hostile document: a root that is no file-set directory
id=20991231T235959Z-000001
cp -a "$REPO/backups/$FULL" "$REPO/backups/$id"
jq --arg id "$id" '.id = $id | (.files[] | select(.target == "a.txt") | .root) = "/tmp"' \
	"$REPO/backups/$FULL/backup.json" >"$REPO/backups/$id/backup.json"
"$AMBER" restore --repo "$REPO" "$id" >/dev/null 2>"$DW/h.err"
hrc=$?
[ "$hrc" = 2 ] && has "is not a file-set directory of the writer: refused" <"$DW/h.err" ||
	fail "hostile root: exit $hrc: $(cat "$DW/h.err")"
[ ! -e /tmp/a.txt.amber-restore ] && ! grep -qs "first version" /tmp/a.txt ||
	fail "hostile root: wrote into /tmp"
rm -rf "${REPO:?}/backups/$id"
ok "a document whose file root is not a file-set directory: refused (exit 2)"
echo "PASS"

#!/usr/bin/env bash
# rules_test.sh BINDIR
#
# The integrity and retention rules of design.md section 4 and the failure
# cases of issue 4, on an xfs loop filesystem (reflink provider), with
# amber-store serve under load:
#   - incremental/differential without a full: refused, "full backup is needed"
#   - a writer that does not support a type is told so by name
#   - copy and differential truncate nothing; copy leaves the header alone;
#     full and incremental record themselves
#   - a log truncation that fails after the answer to BackupComplete (an
#     immutable log): logged by serve, the backup verified, nothing deleted;
#     the next full deletes the logs
#   - a second backup of the same repository at once: busy (exit 3)
#   - a page damaged before the backup: verification fails (exit 1), the
#     backup is not verified, no log is removed, the previous verified
#     backup stays the one `latest` restores
#   - a log missing in the middle of a chain: restore exit 1 naming the
#     generation and the backup that restores without it
#   - hostile backup documents (.., absolute paths, symlinks): refused
#   - backups killed (SIGKILL) at random moments: never verified, nothing
#     truncated by them, the next backup succeeds, --prune-incomplete
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../daemon/daemon_lib.sh
. "$here/../daemon/daemon_lib.sh"

d_init "${1:?usage: rules_test.sh BINDIR}"
d_volume xfs
REPO=$MNT/repo
d_store_under_load 200

logs() { ls "$SG" | grep '^E00[0-9A-F]\{8\}\.log$' | sort; }
more_load() { d_wait_acks "$ORACLE" $(( $(d_acks "$ORACLE") + ${1:-100} )) 30000 >/dev/null || fail "no more commits"; }
hdr_mark() { # hdr_mark KIND -> the Mark line of "Previous KIND Backup"
	"$STORE" header "$SG/priv1.edb" | grep -A2 "^Previous $1 Backup:" | grep "Mark:"
}
backup() { # backup TYPE [ARGS] -> sets BRC and BID
	"$AMBER" backup "$@" --repo "$REPO" >"$DW/b.out" 2>"$DW/b.err"
	BRC=$?
	BID=$(tail -1 "$DW/b.out")
}

# --- no full yet
for t in incremental differential; do
	backup "$t"
	[ "$BRC" = 2 ] || fail "$t without a full: exit $BRC, not 2: $(cat "$DW/b.err")"
	has "full backup is needed" <"$DW/b.err" || fail "$t without a full: $(cat "$DW/b.err")"
done
ok "incremental and differential without a full backup are refused (exit 2, a full backup is needed)"

# --- a writer that does not support the type, named
"$TWRITER" --socket "$AMBER_SOCKET" --name limited-writer --types full,copy >>"$DW/tw.log" 2>&1 &
D_PIDS+=($!)
TW_PID=$!
d_wait_writer limited-writer 10 || fail "the test writer did not register"
backup differential --writer limited-writer
[ "$BRC" = 2 ] && has "writer limited-writer does not support differential backups" <"$DW/b.err" ||
	fail "unsupported type: exit $BRC: $(cat "$DW/b.err")"
kill "$TW_PID"; wait "$TW_PID" 2>/dev/null
ok "a writer that does not support a type is told so by name"

# the writer deletes logs right after its answer to BackupComplete, so a
# truncation is waited for, and "none" means none within 2 s
oldest_past() { [[ "$(logs | head -1)" > "$1" ]]; }

# --- copy: header and logs untouched
before=$(logs | head -1)
backup copy
[ "$BRC" = 0 ] || fail "backup copy: exit $BRC: $(cat "$DW/b.err")"
COPY=$BID
hdr_mark Full | has "none" || fail "copy touched the header: $(hdr_mark Full)"
d_wait_for 2000 oldest_past "$before" && fail "copy truncated logs"
ok "copy $COPY: verified, header untouched, nothing truncated"

# --- full records and truncates
more_load 200
backup full
[ "$BRC" = 0 ] || fail "backup full: exit $BRC: $(cat "$DW/b.err")"
FULL=$BID
hdr_mark Full | has -v "none" || fail "full not recorded in the header"
d_wait_for 10000 oldest_past "$before" || fail "full truncated nothing ($before)"
after_full=$(logs | head -1)
ok "full $FULL recorded in the header; logs truncated ($before -> $after_full)"

# --- differential: recorded, nothing truncated
more_load 200
backup differential
[ "$BRC" = 0 ] || fail "backup differential: exit $BRC: $(cat "$DW/b.err")"
hdr_mark Differential | has -v "none" || fail "differential not recorded"
d_wait_for 2000 oldest_past "$after_full" && fail "differential truncated logs"
ok "differential $BID recorded; nothing truncated"

# --- a truncation that fails after the answer (the oldest log immutable:
# its unlink fails with EPERM): the backup stays verified, serve logs the
# failure, no log is deleted (oldest first); the next full deletes them
more_load 200
oldest=$(logs | head -1)
chattr +i "$SG/$oldest" || fail "chattr +i $oldest"
backup full
# the truncation runs after the answer: wait for it before the log is mutable again
d_wait_for 10000 grep -q "log truncation after backup-complete failed" "$DW/serve.log"
logged=$?
chattr -i "$SG/$oldest"
[ "$BRC" = 0 ] || fail "full with an immutable log: exit $BRC: $(cat "$DW/b.err")"
[ "$logged" = 0 ] || fail "serve did not log the failed truncation: $(tail -5 "$DW/serve.log")"
[ "$(logs | head -1)" = "$oldest" ] || fail "a log was deleted past the one that failed"
"$AMBER" backups --repo "$REPO" --json | jq -e --arg id "$BID" \
	'.[] | select(.id == $id) | .verified == true' >/dev/null ||
	fail "the full with a failed truncation is not verified"
more_load 100
backup full
[ "$BRC" = 0 ] || fail "the full after a failed truncation: exit $BRC: $(cat "$DW/b.err")"
d_wait_for 10000 oldest_past "$oldest" || fail "the next full did not delete the logs ($oldest)"
ok "a failed truncation after the answer: logged, the backup verified, no log lost; the next full deletes them"

# --- busy: a second backup while one runs (amberd stalls the first after
# prepare-snapshot, before any writes are held, so that the stall can be
# long enough for two more CLIs on a slow machine without the hold deadline
# failing the first backup).  The first backup takes the repository lock
# before it asks amberd for anything: once amberd logs the stall, it holds it.
d_stop_amberd
mark=$(wc -l <"$DW/amberd.log")
AMBERD_ENV="AMBERD_TEST_STALL=prepare-snapshot:8000" d_start_amberd
d_wait_writer amber-store 10 || fail "serve did not register again"
"$AMBER" backup copy --repo "$REPO" >"$DW/first.out" 2>&1 &
FIRST=$!
D_PIDS+=("$FIRST")
stalled() { tail -n +"$((mark + 1))" "$DW/amberd.log" | has "test hook: stalling 8000 ms after prepare-snapshot"; }
d_wait_for 20000 stalled || fail "the first backup never reached amberd's stall: $(cat "$DW/first.out")"
backup copy
[ "$BRC" = 3 ] || fail "a second backup of the repository: exit $BRC, not 3: $(cat "$DW/b.err")"
"$AMBER" restore --repo "$REPO" latest --to "$DW/busy" >/dev/null 2>"$DW/r.err"
rc=$?
[ "$rc" = 3 ] || fail "a restore while a backup runs: exit $rc, not 3: $(cat "$DW/r.err")"
wait "$FIRST" || fail "the first backup failed: $(cat "$DW/first.out")"
d_stop_amberd
d_start_amberd
d_wait_writer amber-store 10 || fail "serve did not register again"
ok "a second backup, or a restore, while a backup runs is busy (exit 3)"

# --- killed backups: never verified, nothing truncated, next one works
for round in 1 2 3 4 5; do
	more_load 50
	oldest=$(logs | head -1)
	"$AMBER" backup full --repo "$REPO" --quiet >/dev/null 2>&1 &
	KPID=$!
	sleep "0.$(( RANDOM % 9 + 1 ))"
	kill -9 "$KPID" 2>/dev/null
	wait "$KPID" 2>/dev/null
	"$AMBER" backups --repo "$REPO" --json >"$DW/l.json" || fail "amber backups"
	# any backup that is not complete is not verified
	jq -e 'all(.[]; .status == "complete" or .verified == false)' "$DW/l.json" >/dev/null ||
		fail "a killed backup is listed verified: $(cat "$DW/l.json")"
	killed_ok=$(jq -r 'last | .status' "$DW/l.json")
	if [ "$killed_ok" != complete ]; then
		[ "$(logs | head -1)" = "$oldest" ] || fail "round $round: a killed backup truncated logs"
	fi
done
"$AMBER" backups --repo "$REPO" --prune-incomplete >/dev/null 2>"$DW/prune.err" || fail "prune: $(cat "$DW/prune.err")"
"$AMBER" backups --repo "$REPO" --json | jq -e 'all(.[]; .status != "incomplete")' >/dev/null ||
	fail "--prune-incomplete left an incomplete backup"
more_load 100
backup full
[ "$BRC" = 0 ] || fail "the backup after the killed ones failed: $(cat "$DW/b.err")"
FULL=$BID
ok "5 backups killed at random moments: none verified, none truncated; pruned; the next full $FULL works"

# --- incremental on top, for the chain tests
more_load 200
backup incremental
[ "$BRC" = 0 ] || fail "backup incremental: exit $BRC: $(cat "$DW/b.err")"
INC=$BID

# --- a page damaged before the backup.  serve stops cleanly (a crash's
# recovery could rewrite the page from the log) and comes back without a
# load (a flush of the page before the shadow would repair it: the damage
# must be in what the backup copies)
kill -TERM "$SERVE_PID"
wait "$SERVE_PID" || fail "serve did not stop cleanly"
size=$(stat -c %s "$SG/priv1.edb")
pg=$(( size / 8192 / 2 ))
cp "$SG/priv1.edb" "$DW/priv1.good"
printf 'damage-damage-damage' | dd of="$SG/priv1.edb" bs=1 seek=$((pg * 8192 + 200)) conv=notrunc status=none
d_start_serve "$SG" - "$ORACLE.2"
oldest=$(logs | head -1)
backup full
[ "$BRC" = 1 ] || fail "a backup of a damaged database: exit $BRC, not 1: $(cat "$DW/b.err")"
has "page $pg" <"$DW/b.err" || fail "the failure does not name page $pg: $(cat "$DW/b.err")"
has "listed as failed (no writer recorded it or truncated a log); .*--prune-failed" <"$DW/b.err" ||
	fail "the failure does not say what it left: $(cat "$DW/b.err")"
BAD=$(jq -r 'last | .id' <("$AMBER" backups --repo "$REPO" --json))
"$AMBER" backups --repo "$REPO" --json | jq -e --arg id "$BAD" '.[] | select(.id == $id and .verified == false and .status == "failed")' >/dev/null ||
	fail "the failed backup is not listed failed and unverified"
[ "$(logs | head -1)" = "$oldest" ] || fail "a failed backup truncated logs"
hdr_mark Full >"$DW/mark.after"
LATEST=$("$AMBER" backups --repo "$REPO" --json | jq -r '[.[] | select(.verified)] | last | .id')
[ "$LATEST" = "$INC" ] || fail "the newest verified backup is $LATEST, not $INC"
kill -9 "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null
"$AMBER" restore --repo "$REPO" latest --to "$DW/alt" --no-roll-forward >/dev/null 2>"$DW/r.err" ||
	fail "restore of the previous verified chain: $(cat "$DW/r.err")"
"$STORE" check "$DW/alt/priv1.edb" >/dev/null 2>&1 || fail "the alternate restore fails check"
ok "damaged page $pg: backup fails (exit 1, names the page), not verified, nothing truncated; $INC still restores"
# the failed backup stays until asked for; --prune-failed removes it and only it
n_before=$("$AMBER" backups --repo "$REPO" --json | jq length)
"$AMBER" backups --repo "$REPO" --prune-incomplete --json >"$DW/l.json" 2>/dev/null || fail "prune-incomplete"
jq -e --arg id "$BAD" 'any(.[]; .id == $id)' "$DW/l.json" >/dev/null ||
	fail "--prune-incomplete removed the failed backup $BAD"
"$AMBER" backups --repo "$REPO" --prune-failed --json >"$DW/l.json" 2>"$DW/p.err" ||
	fail "--prune-failed: $(cat "$DW/p.err")"
has "removed failed backup $BAD" <"$DW/p.err" || fail "--prune-failed did not say so: $(cat "$DW/p.err")"
jq -e --arg id "$BAD" --argjson n "$n_before" 'length == $n - 1 and all(.[]; .id != $id and .status != "failed")' \
	"$DW/l.json" >/dev/null || fail "--prune-failed left: $(cat "$DW/l.json")"
[ ! -e "$REPO/backups/$BAD" ] || fail "the failed backup's folder is still there"
ok "the failed backup $BAD is kept by --prune-incomplete, removed (and only it) by --prune-failed"

# --- a log missing in the middle of the chain
INCDIR=$REPO/backups/$INC
victim=$(jq -r '[.files[] | select(.role == "log")] | .[1].path' "$INCDIR/backup.json")
gen=$(basename "$victim" .log); gen=${gen#E00}
mv "$INCDIR/$victim" "$DW/victim.log"
"$AMBER" restore --repo "$REPO" "$INC" --to "$DW/alt2" >/dev/null 2>"$DW/r.err"
rc=$?
[ "$rc" = 1 ] || fail "restore with a missing log: exit $rc, not 1: $(cat "$DW/r.err")"
has "generation $((16#$gen))" <"$DW/r.err" || fail "the error does not name generation $((16#$gen)): $(cat "$DW/r.err")"
has "backup $FULL restores without it" <"$DW/r.err" || fail "no hint at $FULL: $(cat "$DW/r.err")"
mv "$DW/victim.log" "$INCDIR/$victim"
ok "a missing log in the chain: exit 1, names generation $((16#$gen)) and backup $FULL"

# --- restore options checked before anything is done
"$AMBER" restore --repo "$REPO" latest --until yesterday >/dev/null 2>"$DW/r.err"
rc=$?
[ "$rc" = 2 ] && has "not a UTC time" <"$DW/r.err" || fail "--until yesterday: exit $rc: $(cat "$DW/r.err")"
for opt in --no-roll-forward "--until 2026-01-01T00:00:00Z"; do
	# shellcheck disable=SC2086
	"$AMBER" restore --repo "$REPO" latest $opt >/dev/null 2>"$DW/r.err"
	rc=$?
	[ "$rc" = 2 ] && has "need --to" <"$DW/r.err" || fail "in place $opt: exit $rc: $(cat "$DW/r.err")"
done
ok "--until that is not a time, and in-place --no-roll-forward/--until: refused (exit 2), nothing touched"

# --- a backup damaged in the repository: verify fails and it is no longer trusted
ddir=$REPO/backups/$INC
lf=$(jq -r '[.files[] | select(.role == "log")] | last | .path' "$ddir/backup.json")
printf 'X' | dd of="$ddir/$lf" bs=1 seek=5000 conv=notrunc status=none
"$AMBER" verify --repo "$REPO" "$INC" >/dev/null 2>"$DW/v.err"
rc=$?
[ "$rc" = 1 ] && has "SHA-256" <"$DW/v.err" || fail "verify of a changed file: exit $rc: $(cat "$DW/v.err")"
"$AMBER" backups --repo "$REPO" --json | jq -e --arg id "$INC" '.[] | select(.id == $id and .verified == false)' >/dev/null ||
	fail "a backup that failed verify is still listed verified"
LATEST=$("$AMBER" backups --repo "$REPO" --json | jq -r '[.[] | select(.verified)] | last | .id')
[ "$LATEST" = "$FULL" ] || fail "after the failed verify, the newest verified backup is $LATEST, not $FULL"
"$AMBER" verify --repo "$REPO" "$FULL" >/dev/null 2>"$DW/v.err" || fail "verify of the full: $(cat "$DW/v.err")"
ok "a byte changed in the repository: verify fails (exit 1), the backup is no longer verified, latest is $FULL"

# --- an online restore whose requestor dies between pre- and post-restore
cp "$DW/priv1.good" "$SG/priv1.edb"
d_start_serve "$SG" 100 "$ORACLE.3"
d_wait_acks "$ORACLE.3" 20 20000 >/dev/null || fail "serve does not commit"
AMBER_TEST_STALL_RESTORE_MS=5000 "$AMBER" restore --repo "$REPO" latest >"$DW/r.out" 2>"$DW/r.err" &
RPID=$!
d_wait_for 20000 grep -qs "dismounted" "$DW/r.err" ||
	fail "the restore did not reach pre-restore: $(cat "$DW/r.err")"
kill -9 "$RPID"; wait "$RPID" 2>/dev/null
d_wait_for 20000 grep -q "restore abandoned without post-restore: the instance is open again" "$DW/serve.log" ||
	fail "serve did not reopen its instance: $(tail -5 "$DW/serve.log")"
d_wait_acks "$ORACLE.3" $(( $(d_acks "$ORACLE.3") + 20 )) 20000 >/dev/null || fail "serve does not commit after the abandoned restore"
ok "restore killed between pre- and post-restore: serve reopened its instance and commits"

# --- hostile documents
hostile() { # hostile NAME JQ-FILTER [setup]
	local id=20991231T235959Z-0000${1} d
	d=$REPO/backups/$id
	cp -a "$REPO/backups/$FULL" "$d"
	jq --arg id "$id" "$2 | .id = \$id" "$REPO/backups/$FULL/backup.json" >"$d/backup.json"
	"$AMBER" restore --repo "$REPO" "$id" --to "$DW/hostile$1" >/dev/null 2>"$DW/h.err"
	local rc=$?
	[ "$rc" != 0 ] || fail "hostile document $1 was restored"
	[ -e /tmp/amber-escape ] && fail "hostile document $1 wrote outside its target"
	rm -rf "$d"
	echo "$rc $(tr "\n" " " <"$DW/h.err")"
}
r=$(hostile 01 '.files[0].path = "data/../../../../tmp/amber-escape"'); has "\.\." <<<"$r" || fail "'..' path: $r"
r=$(hostile 02 '.files[0].path = "/etc/passwd"'); has "absolute" <<<"$r" || fail "absolute path: $r"
r=$(hostile 03 '.files[0].target = "../../../tmp/amber-escape"'); has "\.\." <<<"$r" || fail "'..' target: $r"
r=$(hostile 04 '(.files[] | select(.role == "database") | .target) = "amber-escape.edb"') ; has "refused" <<<"$r" || fail "foreign database name: $r"
# a symlink planted in the repository
id=20991231T235959Z-000005
cp -a "$REPO/backups/$FULL" "$REPO/backups/$id"
jq --arg id "$id" '.id = $id' "$REPO/backups/$FULL/backup.json" >"$REPO/backups/$id/backup.json"
dbpath=$(jq -r '[.files[] | select(.role == "database")][0].path' "$REPO/backups/$id/backup.json")
rm "$REPO/backups/$id/$dbpath"
ln -s /etc/passwd "$REPO/backups/$id/$dbpath"
"$AMBER" restore --repo "$REPO" "$id" --to "$DW/hostile05" >/dev/null 2>"$DW/h.err" && fail "a symlinked file was restored"
has "symbolic link" <"$DW/h.err" || fail "symlink: $(cat "$DW/h.err")"
rm -rf "$REPO/backups/$id"
ok "hostile documents (.. path, absolute path, .. target, foreign name, symlink) refused"
exit 0

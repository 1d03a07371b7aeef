#!/usr/bin/env bash
# seed_test.sh BINDIR btrfs|xfs
#
# amber script (issue 5) with amberd and amber-store serve under load on a
# real loop filesystem:
#   1. seed 004's offline-backup.dsh with Linux paths: persistent set,
#      writer verify {ID}, begin backup, add volume ... alias, create,
#      expose, exec (the copy and a check, like the seed's robocopy and
#      eseutil /k), end backup, delete shadows exposed.  The copy is
#      consistent (oracle, every transaction acknowledged before create),
#      end backup truncated the logs and recorded the backup in the
#      header, the exposed shadow is gone;
#   2. seed 002's sequence (SET verbose on, Writer Exclude of writers this
#      host does not have, Writer Verify, expose, End backup, copy the
#      exposed shadow afterwards, then unexpose and Delete Shadows All);
#   3. a failing exec: exit 1 naming the line, nothing truncated or
#      recorded, nothing left exposed, the writer not frozen; the same
#      with a volatile set leaves no shadow at all;
#   4. SIGTERM while an exec'd command runs: the same clean stop; SIGKILL:
#      amberd aborts the set; the other commands run against amberd;
#   5. --generate backup --repo: the printed script runs unchanged and
#      makes a verified full backup in the repository; -l LOG logs it;
#   6. begin restore / exec amber restore / end restore with serve running.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../daemon/daemon_lib.sh
. "$here/../daemon/daemon_lib.sh"

d_init "${1:?usage: seed_test.sh BINDIR btrfs|xfs}"
fs=${2:?}

d_volume "$fs"
d_store_under_load 300
ID=$("$AMBER" list writers --json | jq -r '.[] | select(.name == "amber-store") | .instance')
[[ $ID =~ ^[0-9a-f-]{36}$ ]] || fail "no amber-store instance id: $ID"

oldest() { ls "$SG" | grep '^E00[0-9A-F]\{8\}\.log$' | sort | head -1; }
# the header's record of the last full backup: its log range and time (the
# time alone has one-second steps)
full_mark() { "$STORE" header "$SG/priv1.edb" | grep -A2 "^Previous Full Backup:" | grep -E "Log Gen|Mark:" | tr -s ' \n' ' '; }
more_load() { d_wait_acks "$ORACLE" $(( $(d_acks "$ORACLE") + ${1:-200} )) 30000 >/dev/null || fail "no more commits"; }
not_frozen() {
	# the writer is Stable and the store commits again
	"$AMBER" list writers | has "State: \[1\] Stable" || fail "$1: the writer is not stable: $("$AMBER" list writers)"
	d_wait_acks "$ORACLE" "$(d_acks "$ORACLE")" 5000 >/dev/null || fail "$1: the store does not commit"
}
mounted() { awk -v m="$1" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts; }
# cut: everything acknowledged before this point must be in a copy
cut_now() { stat -c %s "$ORACLE"; }
check_copy() { # DIR CUT WHAT
	local db
	for db in "$1"/*.edb; do
		"$STORE" check "$db" >/dev/null 2>&1 || fail "$3: $db fails check"
	done
	"$STORE" dump "$1" >"$DW/dump" 2>"$DW/dump.err" || fail "$3: dump: $(cat "$DW/dump.err")"
	"$OCHECK" --acks-before "$2" "$ORACLE" "$DW/dump" >"$DW/ocheck" 2>&1 ||
		fail "$3: oracle: $(tail -5 "$DW/ocheck")"
}

# The seed's offline-backup.cmd: copy from the exposed shadow, then check
# every database of the copy (robocopy + eseutil /k).  It also notes the
# variables amber script gave it.
cat >"$DW/offline-backup.sh" <<'EOF'
#!/bin/sh
set -e
src=$1 dst=$2
env | grep -E '^(shadow_c|shadow_c_PATH|shadow_c_VOLUME|AMBER_SHADOW_SET_ID|AMBER_METADATA|AMBER_BACKUP_TYPE)=' | sort >"$dst.env"
cp -a "$src" "$dst"
for db in "$dst"/*.edb; do
	"$STORE" check "$db" >/dev/null
done
EOF
chmod +x "$DW/offline-backup.sh"
export STORE

# ---------------------------------------------------------------- 1: seed 004
more_load
before=$(oldest)
mark0=$(full_mark)
G=$DW/g
cat >"$DW/offline-backup.dsh" <<EOF
# set verbose on
set context persistent
writer verify {$ID}
begin backup
add volume $VOL alias shadow_c
create
expose %shadow_c% $G
exec $DW/offline-backup.sh $G/store $DW/copy4
end backup
delete shadows exposed $G
exit
EOF
cut=$(cut_now)
"$AMBER" script "$DW/offline-backup.dsh" >"$DW/s4.out" 2>"$DW/s4.err" ||
	fail "seed 004 script: exit $?: $(cat "$DW/s4.err") $(cat "$DW/s4.out")"
check_copy "$DW/copy4" "$cut" "seed 004 copy"
ok "seed 004: the exec'd copy passes check; oracle: $(tail -1 "$DW/ocheck")"
for v in shadow_c shadow_c_PATH shadow_c_VOLUME AMBER_SHADOW_SET_ID AMBER_METADATA; do
	grep -q "^$v=." "$DW/copy4.env" || fail "exec had no \$$v: $(cat "$DW/copy4.env")"
done
grep -q "^AMBER_BACKUP_TYPE=full$" "$DW/copy4.env" || fail "AMBER_BACKUP_TYPE is not full"
grep -q "^shadow_c_VOLUME=$VOL$" "$DW/copy4.env" || fail "shadow_c_VOLUME is not $VOL"
ok "exec saw its aliases: $(tr '\n' ' ' <"$DW/copy4.env" | cut -c1-200)"
mark1=$(full_mark)
[ "$mark1" != "$mark0" ] || fail "end backup did not record the backup in the header ($mark1)"
# (the writer deletes the logs right after its answer to BackupComplete)
oldest_past() { [[ "$(oldest)" > "$1" ]]; }
d_wait_for 10000 oldest_past "$before" || fail "end backup truncated no log (oldest $before, then $(oldest))"
after=$(oldest)
ok "end backup recorded the full backup ($mark1) and truncated logs: $before -> $after"
mounted "$G" && fail "$G is still mounted after delete shadows exposed"
[ -z "$(d_shadow_ids)" ] || fail "shadows left after delete shadows exposed: $(d_shadow_ids)"
[ -z "$(d_shadow_dirs "$MNT")" ] || fail "shadow data left: $(d_shadow_dirs "$MNT")"
not_frozen "seed 004"
ok "the exposed shadow is gone after delete shadows exposed; the writer is stable"

# ---------------------------------------------------------------- 2: seed 002
more_load
before=$(oldest)
mark0=$(full_mark)
S=$DW/S
cat >"$DW/seed002.txt" <<EOF
SET verbose on

SET context persistent

# Exclude other writers on Exchange Server
# Can be retrieved using VSSADMIN List Writers (here: amber list writers)
Writer Exclude {d61d61c8-d73a-4eee-8cdd-f6f9786b7124}
Writer Exclude {e8132975-6f93-4464-a53e-1050253ae220}

# Exchange writer is required (here: amber-store)
Writer Verify {$ID}

# Take the actual snapshot
begin backup
add volume $VOL alias VSS_Backup_F
create
expose %VSS_Backup_F% $S
End backup
# the set's names stay valid after end backup
list shadows set %AMBER_SHADOW_SET_ID%
EOF
cut=$(cut_now)
"$AMBER" script "$DW/seed002.txt" -l "$DW/seed002.log" >"$DW/s2.out" 2>"$DW/s2.err" ||
	fail "seed 002 script: exit $?: $(cat "$DW/s2.err")"
has "is not registered: nothing to exclude" <"$DW/s2.out" || fail "verbose did not say the unknown writers were ignored: $(cat "$DW/s2.out")"
has -- "-> end backup" <"$DW/seed002.log" || fail "-l did not log the commands: $(cat "$DW/seed002.log")"
has "Backup complete" <"$DW/seed002.log" || fail "-l did not log the results"
has "Exposed at: $S" <"$DW/s2.out" || fail "list shadows set %AMBER_SHADOW_SET_ID% after End backup: $(cat "$DW/s2.out")"
mounted "$S" || fail "the shadow is not exposed at $S after the script"
d_wait_for 10000 oldest_past "$before" || fail "End backup truncated no log (oldest $before, then $(oldest))"
after=$(oldest)
[ "$(full_mark)" != "$mark0" ] || fail "End backup did not record the backup"
cp -a "$S/store" "$DW/copy2" || fail "copying from the exposed shadow"
check_copy "$DW/copy2" "$cut" "seed 002 copy"
ok "seed 002: End backup truncated ($before -> $after); the copy from $S passes; oracle: $(tail -1 "$DW/ocheck")"
printf 'unexpose %s\nDelete Shadows All\n' "$S" | "$AMBER" script - >"$DW/s2b.out" 2>&1 ||
	fail "unexpose + Delete Shadows All: $(cat "$DW/s2b.out")"
mounted "$S" && fail "$S still mounted after unexpose"
[ -z "$(d_shadow_ids)" ] || fail "shadows left after Delete Shadows All"
not_frozen "seed 002"
ok "unexpose and Delete Shadows All leave nothing"

# ---------------------------------------------------------- 3: a failing exec
more_load
before=$(oldest)
mark0=$(full_mark)
cat >"$DW/fail.dsh" <<EOF
set context persistent
writer verify amber-store
begin backup
add volume $VOL alias v
create
expose %v% $DW/fx
exec sh -c "exit 3"
end backup
EOF
"$AMBER" script "$DW/fail.dsh" >"$DW/f.out" 2>"$DW/f.err"
rc=$?
[ $rc = 1 ] || fail "a failing exec gave exit $rc, not 1: $(cat "$DW/f.err")"
has "fail.dsh:7: exec sh: exit status 3" <"$DW/f.err" || fail "the error does not name line 7: $(cat "$DW/f.err")"
mounted "$DW/fx" && fail "the failed script left $DW/fx exposed"
[ "$(full_mark)" = "$mark0" ] || fail "a failed script recorded a backup"
more_load 100
[ "$(oldest)" = "$before" ] || fail "a failed script truncated logs ($before -> $(oldest))"
not_frozen "failing exec"
kept=$(d_shadow_ids)
[ -n "$kept" ] || fail "the persistent shadow was not kept"
has "was kept; delete it" <"$DW/f.err" || fail "no word on the kept persistent set"
"$AMBER" delete shadows --all >/dev/null || fail "delete shadows --all"
ok "failing exec: exit 1 at line 7, nothing truncated or recorded, nothing exposed, writer stable"

sed -e 's/^set context persistent$/set context volatile/' -e '/^expose/d' "$DW/fail.dsh" >"$DW/failv.dsh"
"$AMBER" script "$DW/failv.dsh" >"$DW/fv.out" 2>"$DW/fv.err"
rc=$?
[ $rc = 1 ] || fail "volatile failing exec: exit $rc"
d_no_shadows || fail "a volatile shadow was left: $(d_shadow_ids)"
[ -z "$(d_shadow_dirs "$MNT")" ] || fail "volatile shadow data left: $(d_shadow_dirs "$MNT")"
ok "failing exec in a volatile set leaves no shadow"

# ------------------------------------------------------- 4: SIGTERM in exec
before=$(oldest)
cat >"$DW/term.dsh" <<EOF
set context persistent
begin backup
add volume $VOL alias v
create
expose %v% $DW/tx
exec sh -c "touch $DW/in-exec; sleep 30"
end backup
EOF
"$AMBER" script "$DW/term.dsh" >"$DW/t.out" 2>"$DW/t.err" &
sp=$!
for _ in $(seq 200); do [ -e "$DW/in-exec" ] && break; sleep 0.05; done
[ -e "$DW/in-exec" ] || fail "the exec'd command did not start: $(cat "$DW/t.err")"
kill -TERM "$sp"
wait "$sp"
rc=$?
[ $rc = 1 ] || fail "SIGTERM: exit $rc, not 1: $(cat "$DW/t.err")"
has "killed by signal 15" <"$DW/t.err" || fail "SIGTERM did not reach the exec'd command: $(cat "$DW/t.err")"
mounted "$DW/tx" && fail "SIGTERM left $DW/tx exposed"
[ "$(oldest)" = "$before" ] || fail "a stopped script truncated logs"
not_frozen "SIGTERM"
"$AMBER" delete shadows --all >/dev/null || fail "delete shadows --all"
ok "SIGTERM during exec: the command got it, exit 1, nothing exposed or truncated"

# ------------------------------------------------------- 4b: SIGKILL in exec
# amber script cannot clean up after SIGKILL: amberd aborts the set when
# the connection drops and deletes its volatile shadows
before=$(oldest)
sed -e 's/^set context persistent$/set context volatile/' -e '/^expose/d' \
	-e "s|in-exec; sleep 30|in-exec2; exec sleep 31|" "$DW/term.dsh" >"$DW/kill.dsh"
"$AMBER" script "$DW/kill.dsh" >"$DW/k.out" 2>"$DW/k.err" &
sp=$!
for _ in $(seq 200); do [ -e "$DW/in-exec2" ] && break; sleep 0.05; done
[ -e "$DW/in-exec2" ] || fail "the exec'd command did not start: $(cat "$DW/k.err")"
[ -n "$(d_shadow_ids)" ] || fail "no volatile shadow while the script runs"
kill -KILL "$sp"
wait "$sp" 2>/dev/null
pkill -f "sleep 31"
for _ in $(seq 100); do [ -z "$(d_shadow_ids)" ] && break; sleep 0.05; done
[ -z "$(d_shadow_ids)" ] || fail "a SIGKILLed script left its volatile shadow: $(d_shadow_ids)"
[ -z "$(d_shadow_dirs "$MNT")" ] || fail "a SIGKILLed script left shadow data: $(d_shadow_dirs "$MNT")"
[ "$(oldest)" = "$before" ] || fail "a SIGKILLed script truncated logs"
not_frozen "SIGKILL"
ok "SIGKILL during exec: amberd aborted the set, the volatile shadow is gone, nothing truncated"

# ------------------------------------------- 4c: the other commands, for real
cat >"$DW/misc.dsh" <<EOF
set verbose on
set context persistent
set option differential noautorecover
set metadata $DW/set.json
list writers status
list providers
add volume $VOL alias a
create
list shadows id %a%
delete shadows id %a%
reset
load metadata $DW/set.json
set context persistent
add volume $VOL alias b
create
list shadows set %AMBER_SHADOW_SET_ID%
delete shadows set %AMBER_SHADOW_SET_ID%
reset
set context persistent
add volume $VOL
create
delete shadows oldest $VOL
EOF
"$AMBER" script "$DW/misc.dsh" >"$DW/m.out" 2>"$DW/m.err" || fail "misc script: exit $?: $(cat "$DW/m.err")"
has "amber-store .* Stable" <"$DW/m.out" || fail "list writers status: $(cat "$DW/m.out")"
has "Provider name: 'reflink'" <"$DW/m.out" || fail "list providers"
[ "$(grep -c '^1 shadow copy deleted' "$DW/m.out")" = 3 ] || fail "delete shadows id/set/oldest did not delete one each: $(cat "$DW/m.out")"
has "Metadata of shadow copy set .* loaded" <"$DW/m.out" || fail "load metadata"
jq -e '.format == "amber-script-metadata" and .version == 1 and .backup_type == "copy" and (.aliases.a | length) == 36 and (.snapshot_set.shadows | length) == 1' \
	"$DW/set.json" >/dev/null || fail "set metadata wrote: $(head -c 600 "$DW/set.json")"
# amberd's answer names the writers that took part: serve, the only one
jq -e '.snapshot_set.writers == [.writer_list.writers[] | select(.metadata.name == "amber-store") | .metadata.instance]' \
	"$DW/set.json" >/dev/null || fail "snapshot-set writers: $(jq -c '.snapshot_set.writers' "$DW/set.json")"
[ -z "$(d_shadow_ids)" ] || fail "shadows left: $(d_shadow_ids)"
not_frozen "misc"
ok "set option/metadata, list writers status/providers/shadows id|set, delete shadows id|set|oldest, load metadata, reset: all ran"

# ----------------------------------------------------- 5: --generate backup
REPO=$MNT/repo
"$AMBER" script --generate backup --repo "$REPO" >"$DW/gen.dsh" 2>"$DW/gen.err" ||
	fail "--generate: $(cat "$DW/gen.err")"
has "writer verify {$ID}" <"$DW/gen.dsh" || fail "the generated script does not verify the writer: $(cat "$DW/gen.dsh")"
has "add volume $VOL\(/store\)\? alias" <"$DW/gen.dsh" || fail "the generated script does not add $VOL (btrfs) or $SG (xfs): $(cat "$DW/gen.dsh")"
more_load
before=$(oldest)
cut=$(cut_now)
"$AMBER" script "$DW/gen.dsh" -l "$DW/gen.log" >"$DW/g.out" 2>"$DW/g.err" ||
	fail "the generated script: exit $?: $(cat "$DW/g.err") --- $(cat "$DW/gen.dsh")"
has "full backup .* verified" <"$DW/gen.log" || fail "-l did not log the exec'd command's output: $(cat "$DW/gen.log")"
"$AMBER" backups --repo "$REPO" --json >"$DW/list.json" || fail "amber backups"
jq -e '.[] | select(.type == "full" and .verified == true and .status == "complete")' "$DW/list.json" >/dev/null ||
	fail "no verified full backup in the repository: $(cat "$DW/list.json")"
d_wait_for 10000 oldest_past "$before" || fail "the generated script's end backup truncated nothing (oldest $before, then $(oldest))"
after=$(oldest)
d_no_shadows || fail "the generated script left shadows: $(d_shadow_ids)"
not_frozen "generated"
BK=$(jq -r '.[-1].id' "$DW/list.json")
# serve keeps committing: its 256 KiB logs roll ~50 times a second while
# restore --to copies them for the roll-forward
"$AMBER" restore --repo "$REPO" "$BK" --to "$DW/restored" >/dev/null 2>"$DW/r.err" ||
	fail "restore of the script's backup: $(cat "$DW/r.err")"
check_copy "$DW/restored" "$cut" "restore of the generated script's backup"
ok "--generate: the script ran unchanged; backup $BK verified, logs truncated ($before -> $after), restores; oracle: $(tail -1 "$DW/ocheck")"
# ------------------------------------------------ 6: begin restore / end restore
# diskshadow's restore: PreRestore (serve dismounts), the files laid down by
# an exec'd command, PostRestore (serve runs hard recovery, mounts again)
d_wait_acks "$ORACLE" $(( $(d_acks "$ORACLE") + 100 )) 30000 >/dev/null || fail "no more commits"
cat >"$DW/restore.dsh" <<EOF
writer verify amber-store
begin restore
exec $AMBER restore --repo $REPO $BK --offline --no-recover --quiet
end restore
EOF
"$AMBER" script "$DW/restore.dsh" >"$DW/rs.out" 2>"$DW/rs.err" ||
	fail "restore script: exit $?: $(cat "$DW/rs.err") $(cat "$DW/rs.out")"
has "Restore complete" <"$DW/rs.out" || fail "no end restore: $(cat "$DW/rs.out")"
kill -0 "$SERVE_PID" || fail "serve died in the scripted restore"
grep -q '^status=ended' "$SG/restore.env" || fail "serve did not recover: $(cat "$SG/restore.env")"
d_wait_acks "$ORACLE" $(( $(d_acks "$ORACLE") + 50 )) 20000 >/dev/null ||
	fail "serve does not commit after end restore"
kill -9 "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null
"$STORE" check "$SG/priv1.edb" >"$DW/check.out" 2>&1 || fail "the restored database fails check"
"$STORE" dump "$SG" >"$DW/dump" 2>"$DW/dump.err" || fail "dump: $(cat "$DW/dump.err")"
"$OCHECK" "$ORACLE" "$DW/dump" >"$DW/ocheck" 2>&1 || fail "oracle after the scripted restore: $(tail -5 "$DW/ocheck")"
ok "begin restore / exec amber restore --offline --no-recover / end restore: serve recovered and mounted again; oracle: $(tail -1 "$DW/ocheck")"
echo PASS

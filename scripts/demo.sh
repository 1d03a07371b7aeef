#!/usr/bin/env bash
# demo.sh - a guided tour of what amber can do so far (`make demo`).
#
# It creates a store instance in a temporary directory, runs a mail-delivery
# workload against it, kills the process mid-flight with SIGKILL (a crash),
# recovers the instance, verifies every database page, and proves with the
# workload's oracle that no acknowledged transaction was lost and no partial
# one appeared.  Part two starts amberd, runs the store as a writer under
# load, takes a persistent application-consistent shadow, exposes it
# read-only, copies the store out of it and proves with the oracle that the
# copy holds every transaction acknowledged before the request.  As root
# the volume is a subvolume of a loop btrfs filesystem; without root it is
# a plain directory (reflink or copy provider, an amberd serving only the
# user who started it), and the shadow/expose steps are skipped (exposing
# mounts).  Everything happens inside the temporary directory, which is
# removed at the end (filesystems unmounted, loop devices detached).
#
# Part three (the same store, still under load) is the backup story:
# `amber backup full` into a repository, more load, `amber backup
# incremental`, the same full backup as a generated `amber script`,
# `amber backups`; then the store is killed (SIGKILL) and a
# database page is damaged; `amber-store check` reports it; `amber restore
# latest` lays the backup chain down and rolls forward through the store's
# own logs; the check passes and the oracle finds every acknowledged
# transaction, also those committed after the last backup.
#
# Environment: AMBER_BUILD_DIR (default: <repo>/build), DEMO_LOAD (commits
# per second, default 200), DEMO_SECONDS (how long the load runs, default 3).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${AMBER_BUILD_DIR:-$repo/build}
load=${DEMO_LOAD:-200}
seconds=${DEMO_SECONDS:-3}

store=$build/src/store/tool/amber-store
oracle_check=$build/tests/tools/amber-oracle-check
amberd=$build/src/daemon/amberd
amber=$build/src/cli/amber

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
say() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
note() { printf '   %s\n' "$*"; }
# Show a command, run it, indent its output; returns the command's status.
run() {
	printf '   $ %s\n' "$*"
	"$@" 2>&1 | sed 's/^/   | /'
	return "${PIPESTATUS[0]}"
}
die() {
	printf '\ndemo: FAILED: %s\n' "$*" >&2
	exit 1
}

for tool in "$store" "$oracle_check" "$amberd" "$amber"; do
	[ -x "$tool" ] || die "$tool is missing: build first (make build)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/amber-demo.XXXXXX")
serve_pid=
amberd_pid=
loopdev=
cleanup() {
	local p m
	for p in "$serve_pid" "$amberd_pid"; do
		if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
			kill -KILL "$p" 2>/dev/null || true
			wait "$p" 2>/dev/null || true
		fi
	done
	while read -r m; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done < <(awk -v d="$work" 'index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r)
	[ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
	rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inst=$work/instance
oracle=$work/oracle.txt
dump=$work/dump.txt

say "1. Create a store instance"
note "An instance is one directory: a log stream (E00.log), a checkpoint"
note "(E00.chk) and databases (*.edb) made of checksummed pages."
run "$store" create "$inst" || die "amber-store create failed"
run ls -l "$inst"

say "2. Run a workload: $load transactions per second for $seconds seconds"
note "amber-store serve delivers 'mail' (mailboxes as tables, messages of 1 to"
note "64 KiB, some deletions).  For every transaction it writes 'begin' to the"
note "oracle file before committing and 'ack' once the commit is durable."
printf '   $ %s serve %s --load %s --oracle %s &\n' "$store" "$inst" "$load" "$oracle"
"$store" serve "$inst" --load "$load" --oracle "$oracle" >"$work/serve.log" 2>&1 &
serve_pid=$!
sleep "$seconds"
if ! kill -0 "$serve_pid" 2>/dev/null; then
	wait "$serve_pid" && rc=0 || rc=$?
	serve_pid=
	sed 's/^/   | /' "$work/serve.log" >&2
	die "amber-store serve stopped by itself (exit $rc) before the crash"
fi

say "3. Crash: SIGKILL the running instance"
note "No shutdown, no flush: whatever was in flight is cut off, as in a power"
note "loss of the process."
printf '   $ kill -KILL %s\n' "$serve_pid"
# (braces: keep bash's own "Killed" job notice out of the narration)
{ kill -KILL "$serve_pid" && wait "$serve_pid"; } 2>/dev/null || true
serve_pid=
[ -f "$oracle" ] || die "the workload wrote no oracle file ($oracle)"
begun=$(grep -c '^begin ' "$oracle" || true)
acked=$(grep -c '^ack ' "$oracle" || true)
note "transactions begun: $begun, acknowledged as committed: $acked," \
	"in flight at the crash: $((begun - acked))"
[ "$acked" -gt 0 ] || die "the workload acknowledged no transaction in $seconds seconds"

say "4. Recover the instance (replay the log from the checkpoint)"
run "$store" recover "$inst" || die "amber-store recover failed"

say "5. Verify the checksum of every page of every database"
note "A single flipped bit would be corrected and reported; any other damage"
note "makes the check fail."
found=0
for db in "$inst"/*.edb; do
	[ -e "$db" ] || continue
	found=1
	run "$store" check "$db" || die "amber-store check reported $db damaged"
done
[ "$found" -eq 1 ] || die "no database (*.edb) in $inst"

say "6. Show a database header"
note "State (clean after recovery), signatures, Log Required / Log Committed"
note "and backup information, like eseutil /mh."
dbs=("$inst"/*.edb)
run "$store" header "${dbs[0]}" || die "amber-store header failed on ${dbs[0]}"

say "7. Prove nothing acknowledged was lost and nothing half-applied"
note "dump lists every live record; the oracle checker compares it with what"
note "the workload began and acknowledged before the crash."
printf '   $ %s dump %s > %s\n' "$store" "$inst" "$dump"
"$store" dump "$inst" >"$dump" || die "amber-store dump failed"
note "live records: $(wc -l <"$dump")"
run "$oracle_check" "$oracle" "$dump" ||
	die "the recovered instance does not match the oracle"

say "Part one complete: crash, recovery, page verification and oracle check passed."

rootful=1
if [ "$(id -u)" != 0 ] || ! command -v mkfs.btrfs >/dev/null; then
	rootful=0
fi

say "8. Start amberd and a store that takes part as a writer"
export AMBER_SOCKET=$work/amberd.sock
if [ $rootful = 1 ]; then
	note "A loop btrfs filesystem holds the volume (a subvolume) and its shadows."
	truncate -s 2G "$work/btrfs.img"
	mkfs.btrfs -q "$work/btrfs.img" >/dev/null || die "mkfs.btrfs failed"
	loopdev=$(losetup -f --show "$work/btrfs.img") || die "no free loop device"
	mkdir "$work/mnt" && mount "$loopdev" "$work/mnt" || die "mount failed"
	btrfs -q subvolume create "$work/mnt/mail" || die "btrfs subvolume create failed"
	vol=$work/mnt/mail
	printf '[amberd]\nhold_ms = 2000\njournald = no\n' >"$work/amberd.conf"
else
	note "Not root (or no mkfs.btrfs): no loop btrfs filesystem.  The volume is a"
	note "plain directory, shadowed by the reflink provider where its filesystem"
	note "clones files (xfs, btrfs), else by the copy provider (which holds the"
	note "store's writes while it copies).  This amberd, started by you, serves"
	note "you only; its shadows go to a directory of yours (shadow_dir)."
	vol=$work/mail
	mkdir "$vol"
	printf '[amberd]\nhold_ms = 5000\njournald = no\nshadow_dir = %s\n' "$work/shadows" \
		>"$work/amberd.conf"
fi
printf '   $ amberd --foreground --socket %s --state-dir %s &\n' "$AMBER_SOCKET" "$work/state"
"$amberd" --foreground --config "$work/amberd.conf" --socket "$AMBER_SOCKET" \
	--state-dir "$work/state" >"$work/amberd.log" 2>&1 &
amberd_pid=$!
run "$store" create "$vol/store" || die "amber-store create failed"
oracle2=$work/oracle2.txt
printf '   $ amber-store serve %s --load %s --oracle %s &\n' "$vol/store" "$load" "$oracle2"
"$store" serve "$vol/store" --load "$load" --oracle "$oracle2" >"$work/serve2.log" 2>&1 &
serve_pid=$!
for _ in $(seq 100); do
	"$amber" list writers 2>/dev/null | grep -q "Writer name: 'amber-store'" && break
	sleep 0.1
done
run "$amber" list writers || die "amber list writers failed"
sleep 1

if [ $rootful = 1 ]; then
say "9. Take a persistent shadow while the store commits"
note "amberd asks the writer to roll its log and freeze, snapshots the"
note "subvolume (btrfs provider), thaws, and checks that writes were held."
cut=$(stat -c %s "$oracle2")
printf '   $ amber create shadow %s --persistent\n' "$vol"
id=$("$amber" create shadow "$vol" --persistent 2>"$work/create.err") ||
	die "amber create shadow failed: $(cat "$work/create.err")"
note "shadow id: $id"
run "$amber" list shadows || die "amber list shadows failed"
note "$(grep -o 'writes were held for [0-9]* ms' "$work/amberd.log" | tail -1)"

say "10. Expose it read-only and copy the store out"
run "$amber" expose "$id" "$work/exposed" || die "amber expose failed"
run cp -a "$work/exposed/store" "$work/copy" || die "copy out of the shadow failed"
run "$amber" unexpose "$work/exposed" || die "amber unexpose failed"

say "11. The copy recovers and holds every transaction acknowledged before the request"
"$store" dump "$work/copy" >"$work/dump2.txt" || die "amber-store dump of the copy failed"
run "$oracle_check" --acks-before "$cut" "$oracle2" "$work/dump2.txt" ||
	die "the shadow does not match the oracle"
run "$amber" delete shadows --all || die "amber delete shadows failed"
else
	say "9-11. (skipped without root: exposing a shadow mounts it)"
fi

backups=$work/repo
since=$("$amber" events | awk 'END { print $2 + 0 }')
say "12. A full backup into a repository, while the store commits"
note "amber backup takes a shadow set the same way, copies the store's files"
note "out of it into the repository with a SHA-256 of each, then checks every"
note "page of every database and every log.  Only a verified backup is"
note "reported to the writer as complete (BackupComplete)."
run "$amber" backup full --repo "$backups" || die "amber backup full failed"

say "13. More load, then an incremental backup"
note "An incremental holds only the logs written since the last backup."
sleep "$seconds"
run "$amber" backup incremental --repo "$backups" || die "amber backup incremental failed"

say "14. The same backup as a diskshadow-style script"
note "amber script --generate backup prints a script for the writers and volumes"
note "registered now (as the seeds' PowerShell built its DSH file); amber script"
note "runs it unchanged.  Its exec'd step copies and verifies; only if that"
note "succeeds does end backup let the store record it and truncate its logs."
printf '   $ %s script --generate backup --repo %s > %s\n' "$amber" "$backups" "$work/nightly.dsh"
"$amber" script --generate backup --repo "$backups" >"$work/nightly.dsh" ||
	die "amber script --generate failed"
grep -v '^#' "$work/nightly.dsh" | grep -v '^$' | sed 's/^/   | /'
run "$amber" script "$work/nightly.dsh" || die "the generated backup script failed"

say "15. The repository"
run "$amber" backups --repo "$backups" || die "amber backups failed"

say "16. Disaster: the store is killed, then a database page is damaged"
sleep 1
printf '   $ kill -KILL %s\n' "$serve_pid"
{ kill -KILL "$serve_pid" && wait "$serve_pid"; } 2>/dev/null || true
serve_pid=
acked2=$(grep -c '^ack ' "$oracle2" || true)
note "transactions acknowledged by the store: $acked2; some of them came after"
note "the incremental backup and exist only in the store's own logs."
db=$vol/store/priv1.edb
pg=$(( $(stat -c %s "$db") / 8192 / 2 ))
printf '   $ printf garbage... | dd of=%s bs=1 seek=%s conv=notrunc\n' "$db" $((pg * 8192 + 100))
printf 'garbage-garbage-garbage-garbage' |
	dd of="$db" bs=1 seek=$((pg * 8192 + 100)) conv=notrunc status=none || die "dd failed"
if run "$store" check "$db"; then
	die "amber-store check did not notice the damaged page $pg"
fi
note "(exit status 1: page $pg is damaged beyond what its ECC can correct)"

say "17. Restore the latest backup"
note "amber restore checks every file of the newest verified chain (here the"
note "script's full backup) against its manifest, lays the databases down and"
note "runs hard recovery: it replays the backup's logs, then rolls forward"
note "through the store's own newer logs."
run "$amber" restore --repo "$backups" latest || die "amber restore failed"

say "18. The restored database passes the check"
run "$store" check "$db" || die "the restored database fails amber-store check"

say "19. Every acknowledged transaction is there, up to the crash"
printf '   $ %s dump %s > %s\n' "$store" "$vol/store" "$work/dump3.txt"
"$store" dump "$vol/store" >"$work/dump3.txt" || die "amber-store dump failed"
run "$oracle_check" "$oracle2" "$work/dump3.txt" ||
	die "the restored store does not match the oracle"
note "amberd's events since the full backup was asked for (the main ones):"
printf '   $ amber events --since %s\n' "$since"
"$amber" events --since "$since" 2>&1 |
	grep -E 'session-opened|thaw-done|backup-complete|writer-lost' |
	sed -E 's/ (session|set|shadow|writer|volume|component)=[^ ]*//g; s/^/   | /' || true

say "Demo complete: crash recovery, a shadow under load, and a verified backup restored without losing an acknowledged transaction."

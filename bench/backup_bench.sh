#!/usr/bin/env bash
# backup_bench.sh - what a verified amber backup costs (issue 4, "Measure"):
# `amber backup full` against `cp` and `restic backup` of the same store
# instance, side by side in one run; an incremental after ~1 % of the data
# changed against the full; restore to a mountable database and the rate of
# log replay (roll-forward); then the full and the incremental once more by
# --method stream (no shadow: serve sends the pages).  Needs root (loop filesystems); prints a
# Markdown section for bench/RESULTS.md on stdout, progress on stderr.
#
# usage: bench/backup_bench.sh [--build DIR] [--dir WORKROOT] [--fill-mb MB]
#                              [--change-mb MB] [--replay-mb MB] [--rate R]
#                              [--rounds N] [--settle S] [--loop-buffered]
#                              [--nocow]
#
#   --build DIR     build tree (default build-backupbench next to bench/)
#   --dir WORKROOT  where the loop images go (default /var/tmp/amber-backupbench;
#                   a sparse image of 8G and one of 12G written in full
#                   first, ~27 GB written for MB=1024 and 3 rounds)
#   --fill-mb MB    size of the store's databases (default 1024)
#   --change-mb MB  log written between the full and the incremental (default 10)
#   --replay-mb MB  log written after the incremental, replayed by the in-place
#                   restore's roll-forward (default 256)
#   --rate R        commits/s of the light load during the timed runs (default 20)
#   --rounds N      rounds of cp, read floor, copy floor, restic and full, and
#                   incrementals (default 3); each time reported is the median
#                   of its rounds; the cp and restic ratios and those to the
#                   floors are the median of the rounds' ratios, the
#                   incremental's is its median over the full's
#   --settle S      seconds of quiet before each timed run (default 40): on
#                   the bench VM a full backup started right after 1 GiB had
#                   been written took a median 3.35 s, 15 s later 2.52 s
#                   (6 runs each, bench/ANALYSIS.md, "Session 15"); 15 s after
#                   restic 1.72 / 1.80 s, 45 s after it 1.32 / 1.50 s (session
#                   18): the VM's disk stays slow for tens of seconds after
#                   a large write although the guest shows no I/O left
#   --loop-buffered the loop devices in buffered mode (losetup's default)
#                   instead of --direct-io=on; see "Loop devices" below
#   --nocow         the instance made with `amber-store create --nocow`
#                   (btrfs NOCOW files, overwritten in place: unfragmented
#                   databases; bench/ANALYSIS.md, "Full backup", session 16)
#
# Setup: the source is a btrfs loop filesystem (the instance in a subvolume,
# so amberd uses its btrfs provider), the destination an xfs loop
# filesystem: every copy really moves bytes from one filesystem to another.
# The instance (1 MiB log files, two databases) is filled to MB MiB of
# databases by its own workload (`amber-store serve --load 0 --oracle`:
# random, incompressible values of 1-64 KiB, so restic's compression and
# deduplication gain nothing a real mail store would not give them), then
# shut down cleanly; the fill's logs below the checkpoint generation are
# deleted, as the log truncation after an earlier full backup would have
# done, so that the directory holds what a full backup takes (databases,
# checkpoint, the logs from the checkpoint on) and
# cp/restic copy nothing amber leaves out.  amberd runs;
# `amber-store serve --load R --threads 2 --steady --oracle` runs as the
# registered writer `amber-store` throughout the timed runs (light load).
# --steady: every transaction deletes as many messages as it delivers, so
# the databases keep their size and every round's cp, floors, restic and
# full copy the same store.  Until session 24 the load only delivered (one
# transaction in five deleted one or two messages): the store grew ~0.6-1
# MB/s, ~190 MB a round, so the full, last in each round, copied more than
# that round's cp and restic (7 % more in session 23's last round: 1698 MB
# against 1581 and 1584), and 20-55 % more than the copy floor wrote (the
# instance's size at set-up, 1093 MB, in every round).
#
# Loop devices: by default both are set up with --direct-io=on, so that a
# block read or written by the filesystem on top is one read or write of
# the image file with O_DIRECT, as on a disk.  In buffered mode every byte
# also passes through the page cache of the image file (ext4 below): each
# block is cached twice, written back twice, and on the fragmented
# databases the cold read of the 1 GiB alone took 2.1 s on the bench VM
# (0.6 s direct), more than restic / 4, so no backup that reads every byte
# could meet the 4 x restic goal in that mode.  --loop-buffered keeps it
# measurable.
#
# Timed, in this order, each after SETTLE seconds of quiet (the writes of
# the run before still slow the VM's disk for a while; not the incrementals,
# whose wait for the log is quiet enough) and `sync; echo 3
# >/proc/sys/vm/drop_caches`,
# and ending with `sync -f` of the filesystem the command writes to (every
# copy is on disk when the clock stops).  Then, untimed, `sync` of every
# filesystem: its seconds are reported beside each run.  That global sync
# is not the backup's: the store under load dirties the source btrfs all
# the time, so every `sync` commits a btrfs transaction for it (the "idle"
# row measures one with nothing else running), and after an amber backup
# it also waits for amberd's deletion of the shadow, which amberd makes
# durable itself after the backup has ended (docs/protocol.md).  Before
# session 15 the clock stopped after that global sync:
#   idle            nothing (`true`): the global sync with only the load
# then ROUNDS rounds (--rounds) of the next five, one after the other.
# cp, the floors and restic are given FILES, listed after the settle: the
# files of SRC/vol/store that a full backup would take at that moment (the
# databases, the checkpoint, the archived logs from the checkpoint
# generation on, the current log), so that all copy the same bytes.
# Until session 24 cp and restic were given the whole directory, which also
# held the archived logs below the checkpoint that the load leaves between
# two fulls (a full neither needs nor copies them; its truncation deletes
# them): 3-115 MiB more than the full took in session 24's first run.
#   cp              cp FILES DST/cp
#   read floor      FILES read into /dev/null, four at a time: no backup
#                   that reads every byte can be faster
#   copy floor      the same reads while two `dd oflag=direct bs=4M` write
#                   as many bytes to DST (then sync): the disk moving every
#                   byte in and out at once, as any full copy must (source
#                   and destination share the VM's one disk); no backup that
#                   reads and writes every byte can be faster
#   restic          restic backup FILES into a fresh repository on DST
#                   (restic init before, untimed; the password from a file)
#   amber full      amber backup full --repo DST/repo  (shadow, copy with
#                   SHA-256, every page and log verified, backup recorded)
#   incremental     amber backup incremental, once CHANGE MiB of log were
#                   written since the last backup's shadow (~1 % of 1 GiB);
#                   ROUNDS times, each the parent of the next
#   incremental, precopy off
#                   the same after the next CHANGE MiB with AMBER_PRECOPY=0:
#                   every archived log copied from the shadow after it is
#                   made, none from the live directory while it is made
#   amber verify    amber verify --repo DST/repo FULL  (re-read and re-check)
#   restore --to    amber restore --repo DST/repo latest --to SRC/restored:
#                   the chain (the last full and every incremental after
#                   it) re-checked, laid down, hard
#                   recovery replays the chain's logs (nothing to roll
#                   forward: --to rolls forward only logs found in the
#                   target).  The target is on the source's btrfs, not on
#                   the repository's xfs: there amber would clone the files
#                   (FICLONE) instead of copying their bytes.
# then the restored copy is checked (`amber-store check`) and compared with the
# oracle (every transaction acknowledged before the last incremental was asked for).
#
# Replay rate: serve is restarted unthrottled until REPLAY MiB more log are
# written, then SIGKILLed (a crash).  `amber restore --repo DST/repo latest
# --offline --no-recover` lays the chain down in the original place (timed),
# then `amber-store hard-recover` (timed, caches dropped) replays the chain's
# logs and rolls forward through every log of the instance after them.  The
# log replayed is the LSN span from the chain's first generation to the end
# of the instance's current log (`amber-store logs`).  Every open also reads
# every database page (index rebuild); `amber-store recover` of the recovered,
# clean instance (caches dropped, no replay) measures that, and the replay
# rate is given both over the whole hard recovery and with that open
# subtracted.  The result passes `amber-store check` and the oracle (every
# acknowledged transaction present).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build="$root/build-backupbench"
workroot=/var/tmp/amber-backupbench
fill_mb=1024
change_mb=10
replay_mb=256
rate=20
rounds=3
settle=40
loopopts=--direct-io=on
nocow=
cmdline="bench/backup_bench.sh $*"
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--dir) workroot=$2; shift 2 ;;
	--fill-mb) fill_mb=$2; shift 2 ;;
	--change-mb) change_mb=$2; shift 2 ;;
	--replay-mb) replay_mb=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	--loop-buffered) loopopts=; shift ;;
	--nocow) nocow=--nocow; shift ;;
	--rounds) rounds=$2; shift 2 ;;
	--settle) settle=$2; shift 2 ;;
	*) sed -n '9,39p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "backup_bench.sh: needs root (loop filesystems)" >&2; exit 2; }
case $rounds in '' | *[!0-9]* | 0) echo "backup_bench.sh: --rounds wants a positive number" >&2; exit 2 ;; esac
case $settle in '' | *[!0-9]*) echo "backup_bench.sh: --settle wants a number of seconds" >&2; exit 2 ;; esac
command -v restic >/dev/null || { echo "backup_bench.sh: restic is not installed" >&2; exit 2; }
log() { echo "backup_bench.sh: $*" >&2; }

log "building (Release) in $build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target amberd amber amber-store \
	amber-thaw-guard amber-oracle-check >/dev/null
AMBERD=$build/src/daemon/amberd
AMBER=$build/src/cli/amber
STORE=$build/src/store/tool/amber-store
OCHECK=$build/tests/tools/amber-oracle-check

# ---- processes and filesystems, always taken down (fs_lib's trap ends
# what we started, listed in FS_PIDS, then unmounts and detaches)
# shellcheck disable=SC1091 # tests/providers/fs_lib.sh
. "$root/tests/providers/fs_lib.sh"
export FS_LOOP_OPTS=$loopopts
fs_begin "$workroot"
W=$FS_WORK
# the raw outputs of the last run are kept here; everything under $W goes
out=$workroot/last-run
rm -rf "$out"
mkdir -p "$out"

FS_SIZE=8G fs_mount btrfs
SRC=$FS_MNT
# the destination's image written with zeros first (FS_PREALLOC): on a sparse
# image, every write to a region never written before also allocates blocks
# of the image file on the VM's ext4 (bench/ANALYSIS.md, "Full backup",
# session 24), which a repository that keeps its backups pays in every
# round while cp and restic, deleted after each round, reuse the space
FS_PREALLOC=1 FS_SIZE=12G fs_mount xfs
DST=$FS_MNT
btrfs -q subvolume create "$SRC/vol"
SG=$SRC/vol/store
REPO=$DST/repo
ORACLE=$W/oracle
export AMBER_SOCKET=$W/amberd.sock
export RESTIC_PASSWORD_FILE=$W/restic.pw
export RESTIC_CACHE_DIR=$DST/restic-cache
echo "backup-bench-password" >"$RESTIC_PASSWORD_FILE"

# ---- helpers
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# timed NAME FS CMD...: settle, run $PREP if set (untimed), drop caches, run CMD (output to $out/NAME.out/.err),
# then `sync -f FS` (the filesystem CMD writes to): seconds in $out/NAME.t
# and in $T.  Then `sync` of everything, untimed for T: its seconds in
# $out/NAME.tsync and in $TS
timed() {
	local name=$1 fs=$2 t0 t1 t2
	shift 2
	sleep "$settle"
	[ -z "${PREP:-}" ] || $PREP
	drop_caches
	t0=$EPOCHREALTIME
	"$@" >"$out/$name.out" 2>"$out/$name.err" || {
		log "$name failed (exit $?): $(tail -3 "$out/$name.err")"
		exit 1
	}
	sync -f "$fs"
	t1=$EPOCHREALTIME
	sync
	t2=$EPOCHREALTIME
	T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
	TS=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.3f", b - a }')
	echo "$T" >"$out/$name.t"
	echo "$TS" >"$out/$name.tsync"
	log "$name: $T s (then sync $TS s)"
}
# the median of the numbers on stdin ("-" when there are none)
median() {
	sort -g | awk '{ a[NR] = $1 }
		END { if (!NR) { print "-"; exit }
		      printf "%.3f\n", NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# the files EXT of run NAME: NAME.EXT, or those of its rounds NAME-1.EXT ...
runfiles() {
	local r
	if [ -f "$out/$1.$2" ]; then echo "$out/$1.$2"; return; fi
	for r in $(seq "$rounds"); do [ -f "$out/$1-$r.$2" ] && echo "$out/$1-$r.$2"; done
}
tf() { runfiles "$1" t | xargs cat | median; }      # a run's seconds (median)
tsf() { runfiles "$1" tsync | xargs cat | median; } # the global sync after it
# each round's seconds of NAME, "a / b / c" ("-" for a single run)
each() {
	[ -f "$out/$1.t" ] && { echo "-"; return; }
	runfiles "$1" t | xargs cat | paste -sd/ | sed 's|/| / |g'
}
# the median over the rounds of NAME-r / DEN-r (two decimals)
rmed() {
	local r
	for r in $(seq "$rounds"); do
		awk -v a="$(cat "$out/$1-$r.t")" -v b="$(cat "$out/$2-$r.t")" \
			'BEGIN { if (b > 0) print a / b }'
	done | median | awk '{ printf "%.2f", $1 }'
}
# timed without the settle: for the incrementals, whose wait for CHANGE MiB
# of log (~15 s at the default rate) is the quiet; a settle on top would let
# the load write more log than CHANGE MiB before the backup
timed_now() {
	local settle=0
	timed "$@"
}
# the instance's checkpoint generation (hex, from E00.chk)
ck_gen() {
	local g
	g=$("$STORE" checkpoint "$SG/E00.chk" | sed -n 's/.*Checkpoint: (gen 0x\([0-9A-Fa-f]*\).*/\1/p')
	[ -n "$g" ] || { log "cannot read the checkpoint generation"; exit 1; }
	echo "$g"
}
# the highest archived log generation in DIR (from the file names; decimal)
hi_gen() {
	local h
	h=$(ls "$1" | sed -n 's/^E00\([0-9A-F]\{8\}\)\.log$/\1/p' | sort | tail -1)
	echo $((16#${h:-0}))
}
# wait_log MB [BASE]: until serve has written MB MiB (1 MiB generations) of
# log since generation BASE (default: the current one)
wait_log() {
	local g0=${2:-$(hi_gen "$SG")} _
	for _ in $(seq 3000); do
		[ "$(hi_gen "$SG")" -ge $((g0 + $1)) ] && return 0
		kill -0 "$SERVE" 2>/dev/null || { log "serve died: $(tail -3 "$out/serve.log")"; exit 1; }
		sleep 0.2
	done
	log "serve did not write $1 MiB of log in 600 s"
	exit 1
}
# `amber-store logs DIR`: the START LSN of the first generation listed, the
# END LSN of the last (the current log E00.log comes last)
lsn_first() { "$STORE" logs "$1" | awk '$1 ~ /^E00.*\.log$/ { print $6; exit }'; }
lsn_last() { "$STORE" logs "$1" | awk '$1 ~ /^E00.*\.log$/ { e = $8 } END { print e }'; }
# the folder of a backup's files in the repository
bdata() { local d; for d in "$REPO/backups/$1/data"/*/; do echo "${d%/}"; return; done; }
start_serve() { # RATE THREADS [ARGS...]
	local load=$1 threads=$2
	shift 2
	"$STORE" serve "$SG" --load "$load" --threads "$threads" --oracle "$ORACLE" --quiet "$@" \
		>>"$out/serve.log" 2>&1 &
	SERVE=$!
	FS_PIDS+=("$SERVE")
	local _
	for _ in $(seq 200); do
		"$AMBER" list writers 2>/dev/null | grep -q "Writer name: 'amber-store'" && return 0
		sleep 0.05
	done
	log "serve did not register with amberd"
	exit 1
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
# backups --json: FIELD of backup ID
bfield() { jq -r --arg id "$1" ".[] | select(.id == \$id) | .$2" "$out/backups.json"; }
# the last log generation of backup ID (backups.json read anew)
gen_high() {
	"$AMBER" backups --repo "$REPO" --json >"$out/backups.json"
	jq -r --arg id "$1" '.[] | select(.id == $id) | .log_range[0].gen_high' "$out/backups.json"
}
# incrementals NAME HIGH [ARGS...]: ROUNDS `amber backup incremental ARGS`,
# the first after CHANGE MiB of log since generation HIGH, each next one
# after CHANGE MiB more, each the parent of the next; timed as NAME-1 ...;
# their IDs in IDS, the last one's last generation in HIGH
incrementals() {
	local name=$1 r id
	HIGH=$2
	shift 2
	IDS=()
	for r in $(seq "$rounds"); do
		log "waiting for $change_mb MiB of log since the last backup (load $rate/s)"
		wait_log "$change_mb" "$HIGH"
		timed_now "$name-$r" "$DST" "$AMBER" backup incremental "$@" --repo "$REPO"
		id=$(tail -1 "$out/$name-$r.out")
		IDS+=("$id")
		HIGH=$(gen_high "$id")
	done
}
# an oracle check of DIR: every acknowledged transaction present
oracle_check() { # DIR NAME [--acks-before N]
	local dir=$1 name=$2
	shift 2
	"$STORE" dump "$dir" >"$out/$name.dump"
	"$OCHECK" "$@" "$ORACLE" "$out/$name.dump" >"$out/$name.ocheck" 2>&1 ||
		{ log "$name: oracle check failed: $(tail -5 "$out/$name.ocheck")"; exit 1; }
	tail -1 "$out/$name.ocheck"
}

# ---- the instance, filled by the workload itself (random, incompressible
# values; amber-bench-fill's values are windows of one 68 KiB buffer, which
# restic's deduplication and compression would shrink to a fraction)
log "creating a store on btrfs and filling its databases to $fill_mb MiB (serve --load 0)"
"$STORE" create "$SG" $nocow >/dev/null
"$STORE" serve "$SG" --load 0 --threads 4 --oracle "$ORACLE" --no-writer --quiet \
	>>"$out/serve.log" 2>&1 &
SERVE=$!
FS_PIDS+=("$SERVE")
t0=$EPOCHREALTIME
while [ "$(stat -c %s "$SG"/*.edb | awk '{ s += $1 } END { print int(s / 1048576) }')" -lt "$fill_mb" ]; do
	kill -0 "$SERVE" 2>/dev/null || { log "serve died: $(tail -3 "$out/serve.log")"; exit 1; }
	sleep 0.5
done
kill -TERM "$SERVE"
wait "$SERVE" || { log "serve did not stop cleanly"; exit 1; }
log "filled in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"
ckgen=$(ck_gen)
n=0
for f in "$SG"/E00[0-9A-F]*.log; do
	g=${f##*/E00}
	g=${g%.log}
	if [ $((16#$g)) -lt $((16#$ckgen)) ]; then rm "$f"; n=$((n + 1)); fi
done
log "deleted the fill's $n log generations below the checkpoint generation 0x$ckgen"
sync

printf '[amberd]\nhold_ms = 10000\njournald = no\n' >"$W/amberd.conf"
"$AMBERD" --foreground --socket "$AMBER_SOCKET" --state-dir "$W/amberd.state" \
	--config "$W/amberd.conf" >"$out/amberd.log" 2>&1 &
FS_PIDS+=("$!")
for _ in $(seq 100); do
	"$AMBER" list providers >/dev/null 2>&1 && break
	sleep 0.05
done
start_serve "$rate" 2 --steady
sleep 3
src_bytes=$(du -sb "$SG" | cut -f1)
db_bytes=$(stat -c %s "$SG"/*.edb | awk '{ s += $1 } END { print s }')
ls -l "$SG" >"$out/instance.ls"
db_extents=$(filefrag "$SG"/*.edb | awk '{ n += $(NF - 2) } END { print n }')
log "instance: $(mib "$src_bytes") MiB ($(ls "$SG" | wc -l) files), databases $(mib "$db_bytes") MiB"

# ---- (a) cp, restic, then the full backup of the same files
# fullset (a PREP for timed): FILES, the files a full backup would take
# now: the databases, the checkpoint, the archived logs from the checkpoint
# generation on and the current log; FILES_BYTES their size.  Left out:
# the archived logs below the checkpoint, which the load leaves behind
# between two fulls and which a full neither needs nor copies (its
# truncation deletes them), the prepared next log and the small files.
fullset() {
	local ck f g
	ck=$(ck_gen)
	FILES=("$SG"/*.edb "$SG/E00.chk" "$SG/E00.log")
	for f in "$SG"/E00[0-9A-F]*.log; do
		g=${f##*/E00}
		g=${g%.log}
		[ $((16#$g)) -lt $((16#$ck)) ] || FILES+=("$f")
	done
	FILES_BYTES=$(stat -c %s "${FILES[@]}" | awk '{ s += $1 } END { print s }')
	echo "$FILES_BYTES" >"$out/$1.bytes"
}
# the bytes of the instance directory's files (the writer may be deleting
# the logs a full truncated while this runs: a vanished file is left out)
dirsize() { { find "$SG" -type f -printf '%s\n' 2>/dev/null || true; } | awk '{ s += $1 } END { print s + 0 }'; }
cp_files() { mkdir "$DST/cp" && cp -- "${FILES[@]}" "$DST/cp/"; }
load_a=$(cut -d' ' -f1-3 /proc/loadavg)
# the global sync with nothing of ours running: the load's own commit
timed idle "$DST" true
# the floor of any backup that reads every byte: the same files read
# cold and thrown away, four at a time (as amber reads them)
# (a file that vanished between find and cat is left out: the store under
# load renames its prepared log file E00tmp.log, as for restic below)
rawread() {
	printf '%s\0' "${FILES[@]}" | xargs -0 -P4 -n1 cat >/dev/null 2>"$W/rawread.stderr" ||
		! grep -v 'No such file or directory' "$W/rawread.stderr" | grep -q .
}
# the same reads while as many bytes are written to the destination, in
# two direct-I/O streams (as amber writes its two databases)
copyfloor() {
	local mib=$(((FILES_BYTES + 1048575) / 1048576)) i rc=0 pids=()
	for i in 1 2; do
		dd if=/dev/zero of="$DST/floor.$i" bs=4M count=$(((mib / 2 + 3) / 4)) \
			oflag=direct status=none &
		pids+=("$!")
	done
	rawread || rc=1
	wait "${pids[@]}" || rc=1 # not a bare wait: serve and amberd are children too
	return $rc
}
# restic exits 3 when a file vanished between its scan and its read (the
# store under load renames its prepared log file E00tmp.log): the snapshot
# is made without that file, which amber leaves out too; anything else fails
restic_backup() {
	local rc=0
	restic -r "$DST/restic" backup --quiet "${FILES[@]}" 2>"$W/restic.stderr" || rc=$?
	cat "$W/restic.stderr" >&2
	if [ $rc = 3 ] && ! grep -v -e 'no such file or directory' \
		-e '^Warning: at least one source file could not be read' "$W/restic.stderr" |
		grep -q .; then
		rc=0
	fi
	return $rc
}
# ROUNDS rounds, each the five runs one after the other, so that each
# round's ratios compare runs made within two minutes of each other; a new
# restic repository (and cache) each round, the last one kept for its size
for r in $(seq "$rounds"); do
	log "round $r of $rounds"
	rm -rf "$DST/cp" "$DST/restic" "$RESTIC_CACHE_DIR"
	dirsize >"$out/size-$r.start"
	PREP="fullset cp-$r" timed "cp-$r" "$DST" cp_files
	PREP="fullset rawread-$r" timed "rawread-$r" "$DST" rawread
	PREP="fullset copyfloor-$r" timed "copyfloor-$r" "$DST" copyfloor
	rm -f "$DST"/floor.*
	restic -r "$DST/restic" init >"$out/restic-init.out" 2>&1
	PREP="fullset restic-$r" timed "restic-$r" "$DST" restic_backup
	timed "full-$r" "$DST" "$AMBER" backup full --repo "$REPO"
	dirsize >"$out/size-$r.end"
done
t_cp=$(tf cp)
t_raw=$(tf rawread)
t_copyfloor=$(tf copyfloor)
t_restic=$(tf restic)
t_full=$(tf full)
FULL=$(tail -1 "$out/full-$rounds.out")
cp_bytes=$(du -sb "$DST/cp" | cut -f1)
restic_bytes=$(du -sb "$DST/restic" | cut -f1)
restic_stats=$(restic -r "$DST/restic" stats --mode raw-data 2>/dev/null | grep -i 'total size' | sed 's/^ *//' || true)
full_high=$(gen_high "$FULL")
# what each round copied: the files given to cp, the floors and restic
# (fullset), what the full copied, and the whole instance directory before
# the round's cp and after its full
sizes=
for r in $(seq "$rounds"); do
	fid=$(tail -1 "$out/full-$r.out")
	sizes+="${sizes:+; }round $r: $(for n in cp rawread copyfloor restic; do mib "$(cat "$out/$n-$r.bytes")"; echo -n ' / '; done)$(mib "$(bfield "$fid" size)") (the directory $(mib "$(cat "$out/size-$r.start")") → $(mib "$(cat "$out/size-$r.end")"))"
done

# ---- (b) incremental after CHANGE MiB of log since the full's shadow
# ROUNDS incrementals, each after CHANGE MiB more log, each the parent of
# the next
incrementals inc "$full_high"
INCS=("${IDS[@]}")
INC=${IDS[-1]}
inc_high=$HIGH
t_inc=$(tf inc)
inc_pre=$(jq -r '.writers[0].store.logs_read_before_snapshot' "$REPO/backups/$INC/backup.json")
inc_nlogs=$(jq -r '[.files[] | select(.role == "log")] | length' "$REPO/backups/$INC/backup.json")
# the same once more after the next CHANGE MiB, with the archived logs all
# copied from the shadow (AMBER_PRECOPY=0; docs/repository.md, "Archived
# logs read while the shadow is made): what the precopy saves
log "waiting for $change_mb MiB of log since the last incremental"
wait_log "$change_mb" "$inc_high"
inc_cut=$(stat -c %s "$ORACLE")
export AMBER_PRECOPY=0
timed_now inc0 "$DST" "$AMBER" backup incremental --repo "$REPO"
unset AMBER_PRECOPY
t_inc0=$T
INC0=$(tail -1 "$out/inc0.out")
timed verify "$DST" "$AMBER" verify --repo "$REPO" "$FULL"
t_verify=$T
"$AMBER" backups --repo "$REPO" --json >"$out/backups.json"
"$AMBER" backups --repo "$REPO" >"$out/backups.txt"
full_size=$(bfield "$FULL" size)
inc_size=$(bfield "$INC" size)
inc0_size=$(bfield "$INC0" size)
lrange() { jq -r --arg id "$1" '.[] | select(.id == $id) | .log_range |
	map("\(.prefix) \(.gen_low)-\(.gen_high)") | join(", ")' "$out/backups.json"; }
full_range=$(lrange "$FULL")
inc_range=$(lrange "$INC")
inc0_range=$(lrange "$INC0")

cp "$REPO/events.log" "$out/repo-events.log" # the backups' stage times (ms)

# ---- (c1) restore --to: time to a mountable database
timed restore_to "$SRC" "$AMBER" restore --repo "$REPO" latest --to "$SRC/restored"
t_restore_to=$T
for db in "$SRC"/restored/*.edb; do
	"$STORE" check "$db" >"$out/restored-check.$(basename "$db").out" 2>&1 ||
		{ log "the restored $db fails check"; exit 1; }
done
# the chain's log: from the full's first generation to the end of the
# incremental's copy of its last one
chain_lsn0=$(lsn_first "$(bdata "$FULL")")
low_gen=$(ls "$(bdata "$FULL")" | sed -n 's/^E00\([0-9A-F]\{8\}\)\.log$/\1/p' | sort | head -1)
low_gen=$((16#$low_gen))
chain_lsn1=$(lsn_last "$(bdata "$INC0")")
to_replayed=$((chain_lsn1 - chain_lsn0))
to_oracle=$(oracle_check "$SRC/restored" restored --acks-before "$inc_cut")
log "restore --to: check passed; oracle: $to_oracle"

# ---- (c2) replay: more log, a crash, restore in place, roll forward
kill -TERM "$SERVE"
wait "$SERVE" || { log "serve did not stop cleanly"; exit 1; }
start_serve 0 4
log "writing $replay_mb MiB of log unthrottled"
wait_log "$replay_mb"
kill -KILL "$SERVE"
wait "$SERVE" 2>/dev/null || true
lsn1=$(lsn_last "$SG")
replayed=$((lsn1 - chain_lsn0))
gens=$(( $(hi_gen "$SG") + 1 - low_gen ))
timed laydown "$SRC" "$AMBER" restore --repo "$REPO" latest --offline --no-recover
t_laydown=$T
env=$SG/restore.env
timed hard "$SRC" "$STORE" hard-recover "$SG"
t_hard=$T
grep -q '^status=ended' "$env" || { log "hard recovery did not end: $(cat "$env")"; exit 1; }
timed open "$SRC" "$STORE" recover "$SG"
t_open=$T
for db in "$SG"/*.edb; do
	"$STORE" check "$db" >"$out/inplace-check.$(basename "$db").out" 2>&1 ||
		{ log "the recovered $db fails check"; exit 1; }
done
inplace_oracle=$(oracle_check "$SG" inplace)
log "in-place restore: check passed; oracle: $inplace_oracle"
acked=$(grep -c '^ack ' "$ORACLE" || true)

# ---- (d) the same full and incremental by --method stream (docs/stream.md):
# no shadow and no freeze; serve reads every page through the engine,
# verifies it and sends it, rolls the log and sends the logs.  Serve back
# under the light load on the instance restored in place; ROUNDS fulls
# (only the last is the parent of what follows), then ROUNDS incrementals,
# each after CHANGE MiB more log.  Unlike (a), not interleaved with cp and
# restic: the ratios below compare medians of the same run
start_serve "$rate" 2 --steady
for r in $(seq "$rounds"); do
	timed "sfull-$r" "$DST" "$AMBER" backup full --method stream --repo "$REPO"
done
t_sfull=$(tf sfull)
SFULL=$(tail -1 "$out/sfull-$rounds.out")
incrementals sinc "$(gen_high "$SFULL")" --method stream
SINCS=("${IDS[@]}")
SINC=${IDS[-1]}
t_sinc=$(tf sinc)
sfull_size=$(bfield "$SFULL" size)
sinc_size=$(bfield "$SINC" size)
cp "$REPO/events.log" "$out/repo-events.log" # and the stream backups' stage times
kill -TERM "$SERVE"
wait "$SERVE" || { log "serve did not stop cleanly"; exit 1; }

# ---- the report
head_rev() { # the commit measured, read from .git without running git
	local g=$root/.git c h
	# a git worktree: .git is a file naming its own git dir, whose
	# commondir holds the branches
	[ -f "$g" ] && g=$(sed -n 's/^gitdir: //p' "$g")
	c=$g
	[ -f "$g/commondir" ] && c=$(cd "$g" && cd "$(cat commondir)" && pwd)
	h=$(cat "$g/HEAD" 2>/dev/null) || { echo '?'; return; }
	case $h in
	ref:*)
		h=${h#ref: }
		if [ -f "$c/$h" ]; then h=$(cat "$c/$h")
		else h=$(awk -v r="$h" '$2 == r { print $1 }' "$c/packed-refs" 2>/dev/null)
		fi ;;
	esac
	echo "${h:0:7}"
}
verdict() { awk -v v="$1" -v lim="$2" -v op="$3" \
	'BEGIN { ok = op == "le" ? v <= lim : v >= lim; print ok ? "MET" : "NOT MET" }'; }
r_cp=$(rmed full cp)
r_restic=$(rmed restic full)
r_inc=$(awk -v a="$t_inc" -v b="$t_full" 'BEGIN { printf "%.1f", 100 * a / b }')
rate_all=$(awk -v b="$replayed" -v t="$t_hard" 'BEGIN { printf "%.0f", b / 1048576 / t }')
rate_net=$(awk -v b="$replayed" -v t="$t_hard" -v o="$t_open" \
	'BEGIN { if (t > o) printf "%.0f", b / 1048576 / (t - o); else print "-" }')
rev=$(head_rev)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
memg=$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
{
	echo "## Backup, verify and restore (issue 4)"
	echo
	echo "Generated by \`bench/backup_bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $rev,"
	echo "Release build: \`$cmdline\`. Machine: $(nproc) × $cpu, $memg GiB, $(uname -sr);"
	echo "$(restic version | cut -d' ' -f1-2); a shared VM (other jobs may use the CPUs and the disk;"
	echo "load average at the start of the timed runs: $load_a). Source: a btrfs loop filesystem,"
	echo "destination: an xfs loop filesystem, on files in \`$workroot\` (the source's sparse, the destination's written with zeros before mkfs)"
	echo "($(findmnt -no FSTYPE -T "$workroot") on $(findmnt -no SOURCE -T "$workroot")), the loop devices"
	echo "$([ -n "$loopopts" ] && echo "in direct-I/O mode (\`losetup --direct-io=on\`: the closer model of a disk)" ||
		echo "in buffered mode (every block also cached by the image's filesystem)")."
	echo
	echo "The instance: $(mib "$src_bytes") MiB in $(wc -l <"$out/instance.ls" | awk '{ print $1 - 1 }') files"
	echo "(databases $(mib "$db_bytes") MiB in $db_extents extents$([ -n "$nocow" ] && echo ", btrfs NOCOW files: \`amber-store create --nocow\`"),"
	echo "filled by \`amber-store serve --load 0\`: random values of"
	echo "1-64 KiB; 1 MiB log files; the fill's logs below the checkpoint deleted, as a previous"
	echo "full backup's truncation would),"
	echo "amberd running, \`amber-store serve --load $rate --threads 2 --steady\` the registered writer"
	echo "during the timed runs (every transaction deletes as many messages as it delivers, so the"
	echo "rounds copy the same store). cp, the floors and restic were given FILES, the files a full"
	echo "backup would take at that moment, listed after the settle: the databases, the checkpoint,"
	echo "the archived logs from the checkpoint generation on and the current log (not the archived"
	echo "logs below the checkpoint that the load leaves between two fulls, which a full neither"
	echo "needs nor copies). MiB given to cp / the read floor / the copy floor / restic, then what"
	echo "the full copied: $sizes."
	echo "Each timed run starts after $settle s of quiet (the incrementals after their"
	echo "wait for the log instead) with \`sync; echo 3 >/proc/sys/vm/drop_caches\`"
	echo "and ends with \`sync -f\` of the filesystem the command writes to (DST, or the source for"
	echo "the restores); wall clock. cp, the floors, restic and the full ran in $rounds rounds (the five"
	echo "one after the other in each), the incremental $rounds times: \"seconds\" is the median of"
	echo "\"each round\"; a ratio of the full to cp, restic or a floor below is the median of the rounds'"
	echo "ratios, the incremental's is its median over the full's; every other row is one run."
	echo "\"then sync\" (a median likewise): the untimed \`sync\` of every filesystem"
	echo "right after, mostly a btrfs commit of the live store's writes (the idle row) and, after"
	echo "an amber backup, amberd's deletion of the shadow (until session 15 the clock ran to its end)."
	echo
	echo "| what | command | seconds | each round | then sync | size written |"
	echo "|:--|:--|--:|--:|--:|--:|"
	echo "| idle | nothing (\`true\`): the store's load only | $(tf idle) | - | $(tsf idle) | - |"
	echo "| cp | \`cp FILES DST/cp\` | $t_cp | $(each cp) | $(tsf cp) | $(mib "$cp_bytes") MiB |"
	echo "| read floor | the same files read cold into /dev/null, four at a time (\`xargs -P4 cat\`) | $t_raw | $(each rawread) | $(tsf rawread) | - |"
	echo "| copy floor | the same reads while two \`dd oflag=direct bs=4M\` write as many bytes to DST | $t_copyfloor | $(each copyfloor) | $(tsf copyfloor) | $(mib "$(cat "$out/copyfloor-$rounds.bytes")") MiB (zeros, deleted) |"
	echo "| restic | \`restic backup FILES\` (fresh repository, $(restic version | cut -d' ' -f2)) | $t_restic | $(each restic) | $(tsf restic) | $(mib "$restic_bytes") MiB |"
	echo "| amber full | \`amber backup full --repo R\` (shadow, copy + SHA-256, every page and log verified) | $t_full | $(each full) | $(tsf full) | $(mib "$full_size") MiB |"
	echo "| amber incremental | \`amber backup incremental --repo R\` after $change_mb MiB of log ($inc_pre of its $inc_nlogs logs copied from the live directory while the shadow was made) | $t_inc | $(each inc) | $(tsf inc) | $(mib "$inc_size") MiB |"
	echo "| amber incremental, precopy off | \`AMBER_PRECOPY=0 amber backup incremental --repo R\` after the next $change_mb MiB (every log copied from the shadow) | $t_inc0 | $(each inc0) | $(tsf inc0) | $(mib "$inc0_size") MiB |"
	echo "| amber verify | \`amber verify --repo R FULL\` (re-read, SHA-256, pages, logs) | $t_verify | $(each verify) | $(tsf verify) | - |"
	echo "| restore --to | \`amber restore --repo R latest --to DIR\` (DIR on the source btrfs; the full + the incrementals, hard recovery) | $t_restore_to | $(each restore_to) | $(tsf restore_to) | - |"
	echo "| in-place lay-down | \`amber restore --repo R latest --offline --no-recover\` (after the crash) | $t_laydown | $(each laydown) | $(tsf laydown) | - |"
	echo "| hard recovery | \`amber-store hard-recover INSTANCE\` (chain + roll-forward) | $t_hard | $(each hard) | $(tsf hard) | - |"
	echo "| clean open | \`amber-store recover INSTANCE\` afterwards (no replay) | $t_open | $(each open) | $(tsf open) | - |"
	echo "| amber full, stream | \`amber backup full --method stream --repo R\` (no shadow: every page read and verified by serve, sent, hashed; then the logs), after the restore | $t_sfull | $(each sfull) | $(tsf sfull) | $(mib "$sfull_size") MiB |"
	echo "| amber incremental, stream | \`amber backup incremental --method stream --repo R\` after $change_mb MiB of log (no shadow: the log rolled and its new generations sent) | $t_sinc | $(each sinc) | $(tsf sinc) | $(mib "$sinc_size") MiB |"
	echo
	echo "| goal | result | numbers |"
	echo "|:--|:--|:--|"
	echo "| full backup ≤ 1.5 × cp | **$(verdict "$r_cp" 1.5 le)** | amber/cp = $r_cp (medians $t_full s vs $t_cp s) |"
	echo "| full backup ≥ 4 × faster than restic | **$(verdict "$r_restic" 4 ge)** | restic/amber = $r_restic (medians $t_restic s vs $t_full s); restic / 4 = $(div "$t_restic" 4) s against a read floor of $t_raw s and a copy floor of $t_copyfloor s (restic/read floor = $(rmed restic rawread), restic/copy floor = $(rmed restic copyfloor); amber/copy floor = $(rmed full copyfloor)) |"
	echo "| incremental (~1 % changed) < 5 % of the full | **$(verdict "$r_inc" 5 le)** | incremental/full = $r_inc % (medians $t_inc s vs $t_full s); with the precopy off $(awk -v a="$t_inc0" -v b="$t_full" 'BEGIN { printf "%.1f", 100 * a / b }') % ($t_inc0 s); with each clock stopped after the global sync instead (as before session 15) $(awk -v a="$t_inc" -v b="$t_full" -v c="$(tsf inc)" -v d="$(tsf full)" 'BEGIN { printf "%.1f", 100 * (a + c) / (b + d) }') % |"
	echo "| the same by \`--method stream\` (medians of this run, not interleaved with cp and restic) | reported | restic/stream full = $(div "$t_restic" "$t_sfull"), stream full/cp = $(div "$t_sfull" "$t_cp"); stream incremental/stream full = $(awk -v a="$t_sinc" -v b="$t_sfull" 'BEGIN { printf "%.1f", 100 * a / b }') %, stream incremental/snapshot full = $(awk -v a="$t_sinc" -v b="$t_full" 'BEGIN { printf "%.1f", 100 * a / b }') % |"
	echo "| restore to a mountable database (no numeric goal) | reported | restore --to $t_restore_to s, $(mib "$to_replayed") MiB of log replayed; in place: lay-down $t_laydown s + hard recovery $t_hard s |"
	echo "| replay rate (no numeric goal) | reported | $(mib "$replayed") MiB of log in $gens generations: $rate_all MiB/s over the whole hard recovery, $rate_net MiB/s without the database open ($t_open s) |"
	echo
	echo "Backups: the last full \`$FULL\` (logs $full_range), $rounds incrementals after it, each the parent of the"
	echo "next (\`${INCS[*]}\`; the last: logs $inc_range), then \`$INC0\` (logs $inc0_range, precopy off). The restore --to copy of that chain passes \`amber-store check\` and the oracle for every"
	echo "transaction acknowledged before the last incremental was asked for ($to_oracle). The"
	echo "in-place restore: serve restarted unthrottled until $replay_mb MiB more log were written,"
	echo "then SIGKILLed; the chain laid down over the instance, hard recovery replayed the"
	echo "chain's logs and rolled forward through the instance's own newer logs"
	echo "($(mib "$replayed") MiB = LSN span from generation $low_gen to the end of the current log);"
	echo "the result passes \`amber-store check\` and the oracle with all $acked acknowledged"
	echo "transactions present ($inplace_oracle). restic: ${restic_stats:-stats not read}."
	echo "By stream, after the restore: the last full \`$SFULL\`, then \`${SINCS[*]}\`, each the parent of the next."
} | tee "$out/section.md"
log "done; raw files in $out"

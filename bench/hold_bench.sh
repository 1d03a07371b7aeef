#!/usr/bin/env bash
# hold_bench.sh - how long a snapshot holds a committing application
# (issue 3, "Measure"): amberd's btrfs and reflink providers against what an
# administrator's script gets, side by side in one run.  Needs root (loop
# filesystems); prints a Markdown section for bench/RESULTS.md on stdout,
# progress on stderr.
#
# usage: bench/hold_bench.sh [--build DIR] [--dir WORKROOT] [--snapshots N]
#                            [--fill-mb MB] [--rate R] [--threads T] [--btrfs-only]
#                            [--presync yes|no] [--loop-direct-io] [--volatile]
#
#   --build DIR     build tree (default build-holdbench next to bench/)
#   --dir WORKROOT  where the loop images go (default /var/tmp/amber-holdbench;
#                   sparse images of 20G; up to ~10 GB are written)
#   --snapshots N   snapshots per variant (default 50)
#   --fill-mb MB    size of the store's first database (default 1024)
#   --rate R        commits/s asked of `amber-store serve --load` (default 2000)
#   --threads T     workload threads (default 16: with fewer, commit latency
#                   caps the rate below 2000/s on a loop device)
#   --btrfs-only    only the two btrfs variants (a quicker look)
#   --presync B     amberd's presync setting (default yes: syncfs before Freeze)
#   --loop-direct-io  loop devices with --direct-io=on: the loop device then
#                   writes to its image file with O_DIRECT and a flush is an
#                   fsync of the image (metadata) instead of a write-back of
#                   everything the image has dirty in the page cache, which is
#                   closer to a real disk
#   --volatile      amber's shadows volatile (deleted when `amber create
#                   shadow` ends, while the load goes on) instead of
#                   persistent and deleted at the end of the variant, as the
#                   admin script's snapshots are
#
# The four variants, each on the same store (VOL/store: 64 MiB log files,
# first database filled to MB MiB) under the same load, one after the other:
#
#   amber btrfs     btrfs loop fs, VOL a subvolume; serve is a registered
#                   writer; N x `amber create shadow VOL --provider btrfs`
#   admin btrfs     serve --no-writer; N x the admin script below with
#                   `btrfs subvolume snapshot -r VOL SNAP`
#   amber reflink   xfs loop fs, VOL a directory; `--provider reflink`
#   admin reflink   the admin script with `cp -a --reflink=always VOL/store SNAP`
#
# snapshots spaced ~0.3 s apart, all deleted at the end of their variant.
#
# The admin script.  The snapshot is on the volume's own filesystem (that is
# what makes btrfs snapshots and reflinks cheap), so fsfreeze cannot bracket
# it: `btrfs subvolume snapshot` and `cp --reflink` both need to write to the
# frozen filesystem and block until it is thawed (this script checks that
# on both filesystems before measuring and prints what it saw).  The other
# order, `fsfreeze -f; fsfreeze -u; snapshot`, freezes nothing that the
# snapshot sees: it is not a consistent snapshot, so it is not measured.  What
# works, and what fsfreeze-hook and snapper pre/post scripts do, is to hold
# the application itself:
#
#   kill -STOP $serve; sync -f VOL; <snapshot>; kill -CONT $serve
#
# (sync -f as such scripts do; the snapshot and FICLONE flush the files they
# copy anyway).  A stopped process is consistent for a store that is
# crash-safe, which amber-store is.
#
# What is measured, all on CLOCK_MONOTONIC (serve's --latency-log; the script
# times each snapshot with `amber-bench-hold-analyse now`): for each snapshot
# the window W from just before it was asked for (`amber create shadow` /
# kill -STOP) to just after it was done, and
#   hold   the issue's "from the first commit held to the last released":
#          amber: serve's "hold" mark (ams_freeze() stopped admission)
#          to its "thaw" mark (ams_thaw() returned); admin: the window, that
#          is kill -STOP to kill -CONT
#   lat    the longest commit latency among commits overlapping W: the
#          worst the application saw of the snapshot, held or slowed
#   stall  the longest time in which no commit completed, overlapping W
# see bench/hold_analyse.c for the exact definitions.  For amber also
# amberd's hold (event 1009 "writes were held for N ms": Freeze sent to
# Thaw answered, round trips included).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build="$root/build-holdbench"
workroot=/var/tmp/amber-holdbench
nsnap=50
fill_mb=1024
rate=2000
threads=16
btrfs_only=0
presync=yes
loopopts=
persist=--persistent
persist_txt="persistent, deleted at the end of the variant as the admin script's snapshots are"
gap=0.3     # seconds between snapshots
warmup=3    # seconds of load before the first snapshot
cmdline="bench/hold_bench.sh $*"
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--dir) workroot=$2; shift 2 ;;
	--snapshots) nsnap=$2; shift 2 ;;
	--fill-mb) fill_mb=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--btrfs-only) btrfs_only=1; shift ;;
	--presync) presync=$2; shift 2 ;;
	--loop-direct-io) loopopts=--direct-io=on; shift ;;
	--volatile) persist=; persist_txt="volatile, each deleted when its command ends"; shift ;;
	*) sed -n '8,30p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "hold_bench.sh: needs root (loop filesystems)" >&2; exit 2; }
log() { echo "hold_bench.sh: $*" >&2; }

log "building (Release) in $build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target amberd amber amber-store amber-bench-fill \
	amber-thaw-guard amber-bench-hold-analyse >/dev/null
AMBERD=$build/src/daemon/amberd
AMBER=$build/src/cli/amber
STORE=$build/src/store/tool/amber-store
FILL=$build/bench/amber-bench-fill
ANALYSE=$build/bench/amber-bench-hold-analyse
now() { "$ANALYSE" now; }

# ---- processes and filesystems, always taken down (fs_lib's trap ends
# what we started, listed in FS_PIDS, then thaws, unmounts and detaches)
# shellcheck disable=SC1091 # tests/providers/fs_lib.sh
. "$root/tests/providers/fs_lib.sh"
fs_begin "$workroot"
export FS_LOOP_OPTS=$loopopts
W=$FS_WORK
# the raw files of the last run (latency logs, windows, per-snapshot details)
# are kept here; everything else under $W goes at exit
out=$workroot/last-run
rm -rf "$out"
mkdir -p "$out"
# stop PID: SIGTERM and wait (serve writes its latency log then)
stop() {
	kill -TERM "$1"
	wait "$1" || { log "process $1 exited with status $?"; return 1; }
}

# ---- the filesystems and the stores
# sparse: the workload writes ~40 KB per commit, and the snapshots of a
# variant pin what it overwrites until they are deleted at its end
FS_SIZE=20G fs_mount btrfs
BTRFS=$FS_MNT
mnts=("$BTRFS")
btrfs subvolume create "$BTRFS/vol" >/dev/null
mkdir "$BTRFS/admin-snaps"
if [ "$btrfs_only" = 0 ]; then
	FS_SIZE=20G fs_mount xfs
	XFS=$FS_MNT
	mkdir "$XFS/vol" "$XFS/admin-snaps"
	mnts+=("$XFS")
fi
for m in "${mnts[@]}"; do
	log "creating and filling a $fill_mb MiB store on $(findmnt -no FSTYPE "$m")"
	"$STORE" create "$m/vol/store" --log-size 64M >/dev/null
	"$FILL" "$m/vol/store" "$fill_mb" >&2
done
sync

# ---- can fsfreeze bracket a snapshot on the same filesystem?
# frozen MNT CMD...: freeze MNT, run CMD, and say whether it was still blocked
# after 1 s, and when it finished after the thaw
frozen() {
	local mnt=$1 pid t0 t1 state
	shift
	fsfreeze -f "$mnt"
	"$@" >/dev/null 2>&1 &
	pid=$!
	sleep 1
	state=$(kill -0 "$pid" 2>/dev/null && echo "still blocked after 1 s" || echo "finished within 1 s")
	t0=$(now)
	fsfreeze -u "$mnt"
	wait "$pid" || true
	t1=$(now)
	echo "$state; returned $(( (t1 - t0) / 1000000 )) ms after the thaw"
}
freeze_btrfs=$(frozen "$BTRFS" btrfs subvolume snapshot -r "$BTRFS/vol" "$BTRFS/admin-snaps/frozen-test")
freeze_xfs="not measured (--btrfs-only)"
if [ "$btrfs_only" = 0 ]; then
	freeze_xfs=$(frozen "$XFS" cp -a --reflink=always "$XFS/vol/store" "$XFS/admin-snaps/frozen-test")
	rm -rf "$XFS/admin-snaps/frozen-test"
fi
btrfs subvolume delete "$BTRFS/admin-snaps/frozen-test" >/dev/null 2>&1 || true
log "btrfs subvolume snapshot on frozen btrfs: $freeze_btrfs"
log "cp --reflink on frozen xfs: $freeze_xfs"

# ---- one variant
# variant NAME MNT amber|admin PROVIDER: writes $out/NAME.{lat,win,held}
variant() {
	local name=$1 mnt=$2 how=$3 prov=$4 vol=$2/vol sock=$W/$1.sock serve amberd i t0 t1
	log "$name: $nsnap snapshots under --load $rate ($(cut -d' ' -f1-3 /proc/loadavg))"
	: >"$out/$name.win"
	: >"$out/$name.held"
	if [ "$how" = amber ]; then
		printf '[amberd]\nhold_ms = 10000\njournald = no\npresync = %s\n' "$presync" \
			>"$W/$name.conf"
		"$AMBERD" --foreground --socket "$sock" --state-dir "$W/$name.state" \
			--config "$W/$name.conf" >"$out/$name.amberd.log" 2>&1 &
		amberd=$!
		FS_PIDS+=("$amberd")
		for i in $(seq 100); do
			"$AMBER" --socket "$sock" list providers >/dev/null 2>&1 && break
			sleep 0.05
		done
		"$STORE" serve "$vol/store" --load "$rate" --threads "$threads" --socket "$sock" \
			--latency-log "$out/$name.lat" --quiet >"$out/$name.serve.log" 2>&1 &
		serve=$!
		FS_PIDS+=("$serve")
		for i in $(seq 200); do
			"$AMBER" --socket "$sock" list writers 2>/dev/null |
				grep -q "Writer name: 'amber-store'" && break
			[ "$i" = 200 ] && { log "$name: serve did not register"; exit 1; }
			sleep 0.05
		done
	else
		"$STORE" serve "$vol/store" --load "$rate" --threads "$threads" --no-writer \
			--latency-log "$out/$name.lat" --quiet >"$out/$name.serve.log" 2>&1 &
		serve=$!
		FS_PIDS+=("$serve")
	fi
	sleep "$warmup"
	for i in $(seq "$nsnap"); do
		if [ "$how" = amber ]; then
			t0=$(now)
			# shellcheck disable=SC2086 # $persist: one word or none
			"$AMBER" --socket "$sock" create shadow "$vol" --provider "$prov" $persist \
				>/dev/null 2>>"$out/$name.create.log"
			t1=$(now)
		else
			t0=$(now)
			kill -STOP "$serve"
			sync -f "$vol"
			if [ "$prov" = btrfs ]; then
				btrfs subvolume snapshot -r "$vol" "$mnt/admin-snaps/$i" >/dev/null
			else
				cp -a --reflink=always "$vol/store" "$mnt/admin-snaps/$i"
			fi
			kill -CONT "$serve"
			t1=$(now)
		fi
		echo "$t0 $t1" >>"$out/$name.win"
		sleep "$gap"
	done
	sleep 1
	stop "$serve"
	if [ "$how" = amber ]; then
		"$AMBER" --socket "$sock" events --json |
			grep '"code": *1009' | grep -o 'held for [0-9]* ms' | grep -o '[0-9]\+' \
			>"$out/$name.held" || true
		"$AMBER" --socket "$sock" delete shadows --all >/dev/null 2>&1
		stop "$amberd"
	elif [ "$prov" = btrfs ]; then
		btrfs subvolume delete "$mnt"/admin-snaps/* >/dev/null
	else
		rm -rf "${mnt:?}"/admin-snaps/*
	fi
	# let btrfs clean the deleted snapshots before the next variant runs
	[ "$prov" = btrfs ] && btrfs subvolume sync "$mnt" >/dev/null
	sync
}

variant amber-btrfs "$BTRFS" amber btrfs
variant admin-btrfs "$BTRFS" admin btrfs
if [ "$btrfs_only" = 0 ]; then
	variant amber-reflink "$XFS" amber reflink
	variant admin-reflink "$XFS" admin reflink
fi
provs=(btrfs)
[ "$btrfs_only" = 0 ] && provs+=(reflink)

# ---- the report
row() { # NAME LABEL: the table row; the "# key=value" line goes to $out/NAME.kv
	local held=()
	[ -s "$out/$1.held" ] && held=(--held "$out/$1.held")
	case $1 in admin-*) held=(--hold-is-window 1) ;; esac
	"$ANALYSE" --label "$2" "${held[@]}" --detail "$out/$1.detail" \
		"$out/$1.lat" "$out/$1.win" >"$out/$1.row"
	grep -v '^#' "$out/$1.row"
	grep '^#' "$out/$1.row" | sed 's/^# //' >"$out/$1.kv"
}
kv() { tr ' ' '\n' <"$out/$1.kv" | sed -n "s/^$2=//p"; }
ratio() { awk -v a="$(kv "$1" "$3")" -v b="$(kv "$2" "$3")" \
	'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
verdict() { awk -v m="$(kv "$1" hold_med)" -v x="$(kv "$1" hold_max)" \
	'BEGIN { printf "%s (median %.1f ms, worst %.1f ms)", (m < 10 && x < 50) ? "MET" : "NOT MET", m, x }'; }

# the commit measured, read from .git without running git
head_rev() {
	local g=$root/.git h
	h=$(cat "$g/HEAD" 2>/dev/null) || { echo '?'; return; }
	case $h in
	ref:*)
		h=${h#ref: }
		if [ -f "$g/$h" ]; then h=$(cat "$g/$h")
		else h=$(awk -v r="$h" '$2 == r { print $1 }' "$g/packed-refs" 2>/dev/null)
		fi ;;
	esac
	echo "${h:0:7}"
}
rev=$(head_rev)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
{
	echo "## Hold: amberd shadows under load (issue 3)"
	echo
	echo "Generated by \`bench/hold_bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $rev,"
	echo "Release build: \`$cmdline\`. Machine: $(nproc) × $cpu, $(uname -sr); a shared VM"
	echo "(other jobs may use the CPUs and the disk), loop filesystems on sparse files in"
	echo "\`$workroot\` ($(findmnt -no FSTYPE -T "$workroot") on $(findmnt -no SOURCE -T "$workroot"))${loopopts:+, loop devices $loopopts}."
	echo
	echo "Each variant: the same store (64 MiB log files, first database filled to"
	echo "$fill_mb MiB) under \`amber-store serve --load $rate --threads $threads --latency-log\`,"
	echo "$warmup s of load, then $nsnap snapshots ~$gap s apart. amber: \`amber create shadow VOL${persist:+ $persist}\`"
	echo "($persist_txt; serve is the registered writer \`amber-store\`, which holds its commits"
	echo "from Freeze to Thaw; amberd's presync = $presync). admin: the script holds serve (\`serve --no-writer\`) with"
	echo "\`kill -STOP; sync -f VOL; btrfs subvolume snapshot -r VOL SNAP\` (or \`cp -a"
	echo "--reflink=always VOL/store SNAP\` on xfs) \`; kill -CONT\`. Times in ms:"
	echo
	echo "- **hold** (the issue's \"from the first commit held to the last released\"): amber:"
	echo "  from serve's \"hold\" mark (the moment ams_freeze() stopped admitting commits,"
	echo "  ams_info.frozen_since_us) to its \"thaw\" mark (ams_thaw() returned); admin script: kill -STOP"
	echo "  to kill -CONT (the window). Median / worst over the snapshots."
	echo "- **worst commit in window**: per snapshot, the longest latency of a commit"
	echo "  overlapping the snapshot (from just before it was asked for to just after it was"
	echo "  done): the worst the application saw, held or slowed by the snapshot's I/O."
	echo "- **stall**: per snapshot, the longest time in which no commit completed."
	echo "- **amberd held**: amberd's event 1009 \"writes were held for N ms\" (Freeze sent to"
	echo "  Thaw answered, ms resolution)."
	echo "- **worst commit**, **p99 elsewhere**: over the whole measured run, and for the"
	echo "  commits that overlap no snapshot (the latency without snapshots)."
	echo
	echo "| variant | snapshots | hold median / worst | worst commit in window median / worst | stall median / worst | amberd held median / max | worst commit | p99 elsewhere | commits/s |"
	echo "|:--|--:|--:|--:|--:|--:|--:|--:|--:|"
	row amber-btrfs "amber, btrfs provider"
	row admin-btrfs "admin script, btrfs snapshot"
	if [ "$btrfs_only" = 0 ]; then
		row amber-reflink "amber, reflink provider (xfs)"
		row admin-reflink "admin script, cp --reflink (xfs)"
	fi
	echo
	if [ "$btrfs_only" = 0 ]; then
		echo "Goal (median hold < 10 ms, worst < 50 ms): amber btrfs **$(verdict amber-btrfs)**;"
		echo "amber reflink **$(verdict amber-reflink)**."
	else
		echo "Goal (median hold < 10 ms, worst < 50 ms): amber btrfs **$(verdict amber-btrfs)**."
	fi
	echo
	echo "| amber / admin script | hold median | hold worst | worst commit in window median | worst commit in window worst | stall median | worst commit |"
	echo "|:--|--:|--:|--:|--:|--:|--:|"
	for p in "${provs[@]}"; do
		echo "| $p | $(ratio amber-$p admin-$p hold_med) | $(ratio amber-$p admin-$p hold_max) |" \
			"$(ratio amber-$p admin-$p lat_med) | $(ratio amber-$p admin-$p lat_max) |" \
			"$(ratio amber-$p admin-$p stall_med) | $(ratio amber-$p admin-$p worst) |"
	done
	echo
	echo "Why the admin script does not use fsfreeze: the snapshot goes to the volume's own"
	echo "filesystem, and on a frozen filesystem it blocks until the thaw. Measured before"
	echo "the run on the idle filesystems, with \`fsfreeze -f MNT\` then the command:"
	echo "\`btrfs subvolume snapshot\`: $freeze_btrfs; \`cp --reflink\` (xfs): $freeze_xfs."
	echo "\`fsfreeze -f; fsfreeze -u; snapshot\` holds nothing the snapshot sees, so it"
	echo "is not a consistent snapshot and is not measured."
} | tee "$out/section.md"
for n in amber-btrfs admin-btrfs amber-reflink admin-reflink; do
	[ -e "$out/$n.lat" ] || continue
	if grep -qi 'fail\|error' "$out/$n.serve.log" "$out/$n.create.log" 2>/dev/null; then
		log "$n: messages from serve or amber create:"
		grep -hi 'fail\|error' "$out/$n.serve.log" "$out/$n.create.log" 2>/dev/null | head -5 >&2
	fi
done
log "done; raw files in $out"

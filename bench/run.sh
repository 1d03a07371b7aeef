#!/usr/bin/env bash
# run.sh - build (Release) and run amber's store benchmarks, write
# bench/RESULTS.md.
#
# usage: bench/run.sh [--dir DATADIR] [--build DIR] [--quick] [--out FILE]
#
#   --dir DATADIR  where the benchmarks put their files (default /var/tmp);
#                  it must be on the disk to measure (not a tmpfs)
#   --build DIR    build tree (default build-bench next to bench/)
#   --quick        short runs (a smoke test, not for RESULTS.md)
#   --out FILE     where to write the report (default bench/RESULTS.md)
#
# Runs as any user; as root it also measures with the page cache dropped
# (echo 3 > /proc/sys/vm/drop_caches), otherwise that part is skipped with a
# note.  The whole run takes about 5 minutes.
#
# hold_bench.sh: the snapshot hold benchmark of issue 3 (amberd against an
# admin script), run separately as root; see its header and the section
# "Hold: amberd shadows under load (issue 3)" of RESULTS.md, which this
# script does not write (re-append it after regenerating RESULTS.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build="$root/build-bench"
datadir=/var/tmp
quick=0
out="$here/RESULTS.md"
while [ $# -gt 0 ]; do
	case "$1" in
	--dir) datadir=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	--quick) quick=1; shift ;;
	--out) out=$2; shift 2 ;;
	*) echo "usage: $0 [--dir DATADIR] [--build DIR] [--quick] [--out FILE]" >&2; exit 2 ;;
	esac
done
mkdir -p "$datadir"
datadir=$(cd "$datadir" && pwd)
# the check database and its logs take ~2.2 GB, the replay instance and its
# copy ~0.7 GB
need_mb=$([ $quick -eq 1 ] && echo 600 || echo 4000)
avail_mb=$(df --output=avail -B1M "$datadir" | tail -1)
if [ "$avail_mb" -lt "$need_mb" ]; then
	echo "run.sh: only $avail_mb MB free in $datadir, need $need_mb MB" >&2
	exit 1
fi

# ---- build
echo "run.sh: building (Release) in $build" >&2
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target amber-bench-commit amber-bench-fill \
	amber-bench-replay >/dev/null
# amber-store belongs to the tool; check_bench.sh waits for it if it does not build yet
cmake --build "$build" -j"$(nproc)" --target amber-store >/dev/null 2>&1 ||
	echo "run.sh: amber-store does not build yet; check_bench.sh will wait for it" >&2

if [ $quick -eq 1 ]; then
	commit_args=(--duration 1 --rounds 1 --baseline)
	check_mb=128
	replay_mb=64
else
	commit_args=(--duration 2 --rounds 3 --baseline)
	commit16_args=(--duration 2 --rounds 3 --log-size $((16 << 20)))
	check_mb=1024
	replay_mb=300
fi
is_root=0
[ "$(id -u)" -eq 0 ] && [ -w /proc/sys/vm/drop_caches ] && is_root=1

# ---- machine
fstype=$(findmnt -no FSTYPE -T "$datadir" 2>/dev/null || stat -f -c %T "$datadir")
fsdev=$(findmnt -no SOURCE -T "$datadir" 2>/dev/null || echo "?")
fsopts=$(findmnt -no OPTIONS -T "$datadir" 2>/dev/null || echo "?")
journal="?"
if [ "$fstype" = ext4 ]; then
	devname=$(basename "$fsdev")
	if ls -d "/proc/fs/jbd2/$devname"-* >/dev/null 2>&1; then journal="with a journal"
	elif [ -d /proc/fs/jbd2 ]; then journal="no journal"
	fi
fi
devbase=$(basename "$fsdev")
rota=$(cat "/sys/block/$devbase/queue/rotational" 2>/dev/null || echo "?")
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
sqlite_ver=$(pkg-config --modversion sqlite3 2>/dev/null || echo "?")
load() { cut -d' ' -f1-3 /proc/loadavg; }

rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
# uncommitted changes to the code being measured (the library, the tool)
dirty=$(git -C "$root" status --porcelain -- src include 2>/dev/null | awk '{print $2}' |
	tr '\n' ' ' | sed 's/ $//')
[ -n "$dirty" ] && dirty=" plus uncommitted changes to: $dirty"

tmpd=$(mktemp -d)
trap 'rm -rf "$tmpd"' EXIT
# failed NAME RC: report a part that failed, with its messages, and stop
failed() {
	echo "run.sh: $1 failed (exit status $2$([ "$2" -gt 128 ] && echo ", signal $(($2 - 128))"))" >&2
	cat "$tmpd/$1.err" >&2
	exit 1
}

# ---- 1. commits
echo "run.sh: commit benchmark ($(load))" >&2
load_commit=$(load)
"$build/bench/amber-bench-commit" --dir "$datadir" "${commit_args[@]}" --markdown \
	>"$tmpd/commit.md" 2>"$tmpd/commit.err" || failed commit $?
cat "$tmpd/commit.md" >&2
# the same with 16 MiB log files: how much the log rolls cost (diagnostic)
if [ $quick -eq 0 ]; then
	echo "run.sh: commit benchmark, 16 MiB log files ($(load))" >&2
	"$build/bench/amber-bench-commit" --dir "$datadir" "${commit16_args[@]}" --markdown \
		>"$tmpd/commit16.md" 2>"$tmpd/commit16.err" || failed commit16 $?
	cat "$tmpd/commit16.md" >&2
fi

# ---- 2. check
echo "run.sh: check benchmark ($(load))" >&2
load_check=$(load)
"$here/check_bench.sh" --build "$build" --dir "$datadir" --size-mb "$check_mb" --markdown \
	>"$tmpd/check.md" 2>"$tmpd/check.err" || failed check $?
cat "$tmpd/check.md" >&2

# ---- 3. replay
echo "run.sh: replay benchmark ($(load))" >&2
load_replay=$(load)
cold=()
[ $is_root -eq 1 ] && cold=(--cold)
"$build/bench/amber-bench-replay" --dir "$datadir" --mb "$replay_mb" "${cold[@]}" --markdown \
	>"$tmpd/replay.md" 2>"$tmpd/replay.err" || failed replay $?
cat "$tmpd/replay.md" >&2

# ---- verdicts
# commit table columns: | threads | value | amber/s | sqlite/s | ratio | ...
verdict_commit() { # threads goal: "VERDICT|numbers", a verdict per value size
	awk -F'|' -v t="$1" -v g="$2" '
		$2 + 0 == t && $3 + 0 > 0 {
			r = $5 + 0 > 0 ? ($4 + 0) / ($5 + 0) : 0; n++
			sep = n > 1 ? "; " : ""
			v = v sprintf("%s%s for %d B", sep, r >= g ? "MET" : "NOT MET", $3 + 0)
			s = s sprintf("%s%d B: %.3f× (%d vs %d commits/s)", sep, $3 + 0, r, $4 + 0, $5 + 0)
		}
		END { printf "%s|%s\n", n ? v : "not measured", s }' "$tmpd/commit.md"
}
v1=$(verdict_commit 1 1)
v16=$(verdict_commit 16 3)
# check table: | warm ... | cat | check | **ratio** |
ck_warm=$(awk -F'|' '/^\| warm/ { gsub(/[* ]/, "", $5); print $5 }' "$tmpd/check.md")
ck_cold=$(awk -F'|' '/^\| cold \(/ { gsub(/[* ]/, "", $5); print $5 }' "$tmpd/check.md")
ck_verdict() { awk -v r="$1" 'BEGIN { if (r == "" || r == "-") print "not measured"; else if (r + 0 <= 1.3) print "MET"; else print "NOT MET" }'; }
mbs() { awk -F'|' -v pat="$1" '$0 ~ pat { v = $3; gsub(/[* ]/, "", v); sub(/.*=/, "", v); sub(/MB\/s/, "", v); print v }' "$tmpd/replay.md"; }
rp_warm=$(mbs 'log in page cache')
rp_cold=$(mbs 'caches dropped [|]')
rp_raw=$(mbs 'raw sequential write')

{
	echo "# amber store benchmarks"
	echo
	echo "Generated by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')$([ $quick -eq 1 ] && echo ' (--quick: smoke test only)')."
	echo "Commit $rev$dirty, Release build."
	echo
	echo "## Machine"
	echo
	echo "| | |"
	echo "|:--|:--|"
	echo "| CPU | $(nproc) × $cpu |"
	echo "| memory | $mem |"
	echo "| kernel | $(uname -sr) |"
	echo "| data directory | \`$datadir\`: $fstype on $fsdev ($journal; rotational=$rota), mounted $fsopts |"
	echo "| SQLite | $sqlite_ver |"
	echo "| load average at start of each part (1/5/15 min) | commits $load_commit; check $load_check; replay $load_replay |"
	echo
	echo "The machine may be shared (other jobs using the CPUs and the same disk): the"
	echo "commit rates move by 20-30 % from one run to the next. Each ratio comes from"
	echo "runs of the two engines alternated within the same minute, which keeps it"
	echo "steadier than the rates themselves; treat ratios near a goal's threshold as"
	echo "undecided."
	echo
	echo "## Summary against the goals"
	echo
	echo "| goal | result | numbers |"
	echo "|:--|:--|:--|"
	echo "| durable commits, 1 committer: amber ≥ SQLite | **${v1%%|*}** | ${v1#*|} |"
	echo "| durable commits, 16 committers: amber ≥ 3 × SQLite | **${v16%%|*}** | ${v16#*|} |"
	echo "| \`check\` of a 1 GiB database within 1.3 × \`cat\`, page cache warm | **$(ck_verdict "$ck_warm")** | check/cat = ${ck_warm:-?} |"
	echo "| \`check\` within 1.3 × \`cat\`, caches dropped | **$(ck_verdict "$ck_cold")** | check/cat = ${ck_cold:-not run} |"
	echo "| recovery replay rate (no numeric goal) | reported | ${rp_warm:-?} MB/s warm, ${rp_cold:-not run (needs root)} MB/s cold; raw sequential write ${rp_raw:-?} MB/s |"
	echo
	echo "## 1. Durable commits per second"
	echo
	echo "\`amber-bench-commit --dir $datadir ${commit_args[*]}\`: for each value size and"
	echo "number of threads, a fresh amber instance (defaults: 8 KiB pages, 1 MiB log"
	echo "files, checkpoint every 8 MiB of log) and a fresh SQLite database (WAL,"
	echo "synchronous=FULL, one connection per thread, busy_timeout 600 s) in the"
	echo "same directory. One insert of a new key per transaction; amber:"
	echo "ams_txn_put + ams_txn_commit, SQLite: BEGIN IMMEDIATE; INSERT; COMMIT."
	echo "Each engine runs $( [ $quick -eq 1 ] && echo '1 × 1 s' || echo '3 × 2 s') per configuration, the engines"
	echo "alternating, rates averaged. \"amber flushes\" is the total over the rounds,"
	echo "\"commits/flush\" amber's average group size (ams_info commits / flushes)."
	echo "Latency is per transaction (begin to durable), the rounds' percentiles averaged."
	echo
	cat "$tmpd/commit.md"
	if [ -s "$tmpd/commit16.md" ]; then
		echo
		echo "### 1b. The same with 16 MiB amber log files (diagnostic, not a goal)"
		echo
		echo "Same run, \`--log-size 16777216\`: a log roll (new generation, see"
		echo "src/store/instance.c log_roll_io) happens 16 times less often."
		echo
		cat "$tmpd/commit16.md"
	fi
	echo
	echo "## 2. \`amber-store check\` against \`cat\`"
	echo
	echo "\`check_bench.sh --size-mb $check_mb\`: the database is filled through the API by"
	echo "\`amber-bench-fill\` (half the records 100..2000 bytes, half 8..64 KiB, so data and"
	echo "overflow pages both), shut down cleanly, then \`cat FILE > /dev/null\` and"
	echo "\`amber-store check FILE\` are timed (wall clock, process start included)."
	echo
	cat "$tmpd/check.md"
	echo
	echo "## 3. Recovery replay"
	echo
	echo "\`amber-bench-replay --mb $replay_mb ${cold[*]}\`: an instance opened with a"
	echo "checkpoint depth larger than the run, ~$replay_mb MiB of log committed in"
	echo "transactions of 32 KiB values, then ams_abandon() (a crash), then ams_open()"
	echo "timed: it replays every log byte from the checkpoint (then scans the databases"
	echo "to rebuild the index, as every open does). MB = 10^6 bytes of log stream"
	echo "(ams_info.lsn_durable at the crash)."
	echo
	grep -h '^#' "$tmpd/replay.err" | sed 's/^# /Fill: /' || true
	echo
	cat "$tmpd/replay.md"
	if [ $is_root -eq 0 ]; then
		echo
		echo "Not root: the cold-cache measurements were skipped."
	fi
	echo
	echo "## Analysis"
	echo
	echo "What limits the numbers above, and what was changed because of them, is"
	echo "written by hand in [ANALYSIS.md](ANALYSIS.md) (this file is regenerated)."
} >"$out"
echo "run.sh: wrote $out" >&2

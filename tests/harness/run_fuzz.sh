#!/bin/sh
# run_fuzz.sh NAME FUZZER SEEDS WORKDIR SECONDS DICT
#
# A CTest fuzz test (proto/fuzz, script/fuzz): put the seed corpus in
# WORKDIR/seeds (SEEDS is a directory of the source tree, copied and never
# written, or a program that writes the seeds into the directory it is
# given), then run the libFuzzer target for SECONDS.  New inputs are kept
# in WORKDIR/corpus across runs; a crash, leak, sanitizer report or broken
# invariant leaves its input in WORKDIR/artifacts/ and fails the test.  The
# libFuzzer log is WORKDIR/fuzz.log; the final statistics are printed.
set -u
name=$1
fuzzer=$2
seeds=$3
work=$4
secs=$5
dict=$6

rm -rf "$work/seeds" "$work/artifacts"
mkdir -p "$work/seeds" "$work/corpus" "$work/artifacts" || exit 1
if [ -d "$seeds" ]; then
	cp "$seeds"/* "$work/seeds/" || exit 1
else
	"$seeds" "$work/seeds" || exit 1
fi

log="$work/fuzz.log"
"$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
	-dict="$dict" -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
	"$work/corpus" "$work/seeds" >"$log" 2>&1
status=$?

stats='number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb'
grep -E "INFO: seed corpus|^#[0-9]+[[:space:]]+(INITED|DONE)|^Done [0-9]+ runs|^stat::($stats)" \
	"$log"
if [ "$status" -ne 0 ]; then
	tail -n 80 "$log"
	echo "$name: $(basename "$fuzzer") exited with status $status; inputs in $work/artifacts/:"
	ls -l "$work/artifacts/"
fi
exit "$status"

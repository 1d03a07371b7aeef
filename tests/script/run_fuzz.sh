#!/bin/sh
# run_fuzz.sh FUZZER CORPUS WORKDIR SECONDS DICT
#
# The CTest test script/fuzz: copy the seed scripts of CORPUS (a directory
# of the source tree, never written) to WORKDIR/seeds, then run the
# libFuzzer target for SECONDS.  New inputs are kept in WORKDIR/corpus
# across runs; a crash, leak, sanitizer report or broken invariant leaves
# its input in WORKDIR/artifacts/ and fails the test.  The libFuzzer log is
# WORKDIR/fuzz.log; the final statistics are printed.
set -u
fuzzer=$1
seeds=$2
work=$3
secs=$4
dict=$5

rm -rf "$work/seeds" "$work/artifacts"
mkdir -p "$work/seeds" "$work/corpus" "$work/artifacts" || exit 1
cp "$seeds"/* "$work/seeds/" || exit 1

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
	echo "script/fuzz: fuzz_script exited with status $status; inputs in $work/artifacts/:"
	ls -l "$work/artifacts/"
fi
exit "$status"

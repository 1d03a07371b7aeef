#!/usr/bin/env bash
# check_bench.sh - `amber-store check` throughput on a ~1 GiB database against
# `cat FILE > /dev/null` of the same file.
#
# usage: bench/check_bench.sh [--build DIR] [--dir DATADIR] [--size-mb N]
#                             [--markdown] [--keep]
#
#   --build DIR    build tree holding bench/amber-bench-fill and
#                  src/store/tool/amber-store (default: build-bench)
#   --dir DATADIR  where the instance is made (default /var/tmp); it must be
#                  on the disk to measure
#   --size-mb N    database size to aim for (default 1024)
#   --markdown     print the results as a Markdown table
#   --keep         keep the instance (it is reused by a later run with
#                  the same --dir and --size-mb)
#
# Times are the best of 3 with the file in the page cache (both commands),
# then one run each with the caches dropped before it (root only: echo 3 >
# /proc/sys/vm/drop_caches; skipped with a note otherwise).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build="$root/build-bench"
datadir=/var/tmp
size_mb=1024
markdown=0
keep=0
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$(cd "$2" && pwd); shift 2 ;;
	--dir) datadir=$2; shift 2 ;;
	--size-mb) size_mb=$2; shift 2 ;;
	--markdown) markdown=1; shift ;;
	--keep) keep=1; shift ;;
	*) echo "usage: $0 [--build DIR] [--dir DATADIR] [--size-mb N] [--markdown] [--keep]" >&2
	   exit 2 ;;
	esac
done

tool="$build/src/store/tool/amber-store"
fill="$build/bench/amber-bench-fill"
[ -x "$fill" ] || { echo "check_bench: $fill is not built" >&2; exit 1; }

# amber-store is another engineer's target: wait (up to 10 min) for it
waited=0
while ! { [ -x "$tool" ] && "$tool" check --help >/dev/null 2>&1; }; do
	if [ $waited -ge 600 ]; then
		echo "check_bench: $tool (with 'check') did not appear within 10 minutes" >&2
		exit 1
	fi
	[ $waited -eq 0 ] && echo "check_bench: waiting for $tool ..." >&2
	cmake --build "$build" --target amber-store >/dev/null 2>&1 || true
	[ -x "$tool" ] && "$tool" check --help >/dev/null 2>&1 && break
	sleep 20
	waited=$((waited + 20))
done

inst="$datadir/amber-bench-check.$size_mb"
if [ ! -f "$inst/.filled" ]; then
	rm -rf "$inst"
	if ! "$tool" create "$inst" --log-size 64M --db priv1.edb >/dev/null 2>&1; then
		echo "check_bench: 'amber-store create' failed; the loader creates the instance" >&2
		rm -rf "$inst"
	fi
	echo "check_bench: filling $inst to ~$size_mb MiB ..." >&2
	t0=$(date +%s.%N)
	out=$("$fill" "$inst" "$size_mb")
	echo "$out" >&2
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "check_bench: filled in %.1f s\n", b - a }' >&2
	echo "${out%% *}" > "$inst/.filled"
fi
db=$(cat "$inst/.filled")
bytes=$(stat -c %s "$db")

now() { date +%s.%N; }
# run CMD...; prints the elapsed seconds
timeit() {
	local t0 t1
	t0=$(now)
	"$@" >/dev/null
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}
min() { printf '%s\n' "$@" | sort -g | head -1; }
can_drop=0
if [ "$(id -u)" -eq 0 ] && [ -w /proc/sys/vm/drop_caches ]; then
	can_drop=1
fi
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

catf() { cat "$db"; }
check() { "$tool" check "$db"; }

# warm: read once so the file is in the page cache, then best of 3
cat "$db" >/dev/null
check >/dev/null || { echo "check_bench: amber-store check failed on $db" >&2; "$tool" check "$db" | tail -5 >&2; exit 1; }
c=() k=()
for _ in 1 2 3; do
	c+=("$(timeit catf)")
	k+=("$(timeit check)")
done
cat_warm=$(min "${c[@]}")
chk_warm=$(min "${k[@]}")

cat_cold=- chk_cold=-
if [ $can_drop -eq 1 ]; then
	drop
	cat_cold=$(timeit catf)
	drop
	chk_cold=$(timeit check)
fi

[ $keep -eq 1 ] || rm -rf "$inst"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.2f", a / b }'; }
rate() { awk -v t="$1" -v n="$bytes" 'BEGIN { if (t == "-") print "-"; else printf "%.0f", n / 1048576 / t }'; }
mib=$(awk -v n="$bytes" 'BEGIN { printf "%.0f", n / 1048576 }')
r_warm=$(ratio "$chk_warm" "$cat_warm")
r_cold=$(ratio "$chk_cold" "$cat_cold")

if [ $markdown -eq 1 ]; then
	echo "Database: $mib MiB ($bytes bytes), 8 KiB pages."
	echo
	echo "| page cache | cat FILE > /dev/null | amber-store check FILE | check / cat |"
	echo "|:--|--:|--:|--:|"
	echo "| warm (best of 3) | ${cat_warm} s ($(rate "$cat_warm") MiB/s) | ${chk_warm} s ($(rate "$chk_warm") MiB/s) | **${r_warm}** |"
	if [ $can_drop -eq 1 ]; then
		echo "| cold (caches dropped, 1 run) | ${cat_cold} s ($(rate "$cat_cold") MiB/s) | ${chk_cold} s ($(rate "$chk_cold") MiB/s) | **${r_cold}** |"
	else
		echo "| cold | not run: dropping the caches needs root | | |"
	fi
else
	echo "database $db: $mib MiB"
	printf '%-28s %10s %10s %8s\n' "" "cat s" "check s" "ratio"
	printf '%-28s %10s %10s %8s\n' "warm (best of 3)" "$cat_warm" "$chk_warm" "$r_warm"
	if [ $can_drop -eq 1 ]; then
		printf '%-28s %10s %10s %8s\n' "cold (caches dropped)" "$cat_cold" "$chk_cold" "$r_cold"
	else
		echo "cold: skipped (dropping the caches needs root)"
	fi
fi

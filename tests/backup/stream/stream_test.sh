#!/usr/bin/env bash
# stream_test.sh CASE AMBER-STORE AMBER-ORACLE-CHECK STREAM-FETCH-TOOL
#
# The streaming (online) backup of seed 003 end to end: `amber-store serve`
# runs an instance (usually under the oracle workload), stream_fetch_tool
# streams a backup from it through DIR/.amber-stream.sock (docs/stream.md),
# and the result is proved:
#
#   full         a full backup taken under load is laid down as a restore
#                (restore.env with roll_forward=no), hard-recovered, checked
#                (amber-store check) and compared with the oracle
#                (amber-oracle-check --acks-before: everything acknowledged
#                before the stream began is there, nothing is half-applied);
#                the header records the streamed full backup and the logs
#                below its range are deleted, those in it are kept
#   damaged      several bytes of one page flipped while serve was down: the
#                stream fails naming the database and the page, nothing is
#                recorded, no log is deleted, no file is left in the target
#   killed       a client SIGKILLed in the middle: nothing recorded, nothing
#                deleted, and serve serves the next stream
#   busy         a second client while one streams gets "busy" (exit 3)
#   incremental  an incremental before any full is refused; full, then
#                differential (logs only, from the full's end, deletes
#                nothing), then incremental (the same start, truncates);
#                full + differential and full + incremental each restored as
#                a chain and checked against the oracle
#
# Environment: STREAM_KEEP=1 keeps the temporary directory; TMPDIR.
# Exit 0 passed, 1 failed (the directory is kept), 2 bad usage.
set -u

CASE=${1:-}
STORE=${2:-}
CHECK=${3:-}
FETCH=${4:-}
if [ -z "$CASE" ] || [ ! -x "$STORE" ] || [ ! -x "$CHECK" ] || [ ! -x "$FETCH" ]; then
	echo "usage: stream_test.sh CASE AMBER-STORE AMBER-ORACLE-CHECK STREAM-FETCH-TOOL" >&2
	exit 2
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/amber-stream.XXXXXX") || exit 1
D=$T/inst
O=$T/oracle
serve_pid=
keep=1

cleanup() {
	if [ -n "$serve_pid" ]; then
		kill -9 "$serve_pid" 2>/dev/null
		wait "$serve_pid" 2>/dev/null
	fi
	if [ "$keep" = 1 ]; then
		echo "stream test: kept $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT

fail() {
	echo "stream test $CASE: FAILED: $*"
	for f in "$T"/*.err "$T"/serve.out; do
		[ -s "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }
	done
	exit 1
}

note() {
	echo "stream test $CASE: $*"
}

# run a command with a time limit
limited() {
	timeout -k 5 240 "$@"
}

create() {
	limited "$STORE" create "$D" "$@" >"$T/create.out" 2>&1 || fail "amber-store create $*"
	: >"$O"
}

# serve_start [serve options...]: start serve on $D and wait for its socket
serve_start() {
	"$STORE" serve "$D" --no-writer "$@" >>"$T/serve.out" 2>&1 &
	serve_pid=$!
	for ((i = 0; i < 300; i++)); do
		[ -S "$D/.amber-stream.sock" ] && return 0
		kill -0 "$serve_pid" 2>/dev/null || fail "serve exited at start"
		sleep 0.1
	done
	fail "serve did not create $D/.amber-stream.sock"
}

serve_stop() {
	kill -TERM "$serve_pid"
	wait "$serve_pid"
	local rc=$?
	serve_pid=
	[ "$rc" -eq 0 ] || fail "serve exited with $rc"
	[ ! -e "$D/.amber-stream.sock" ] || fail "serve left its socket behind"
}

# wait_acks N: until the oracle holds N acknowledgements
wait_acks() {
	for ((i = 0; i < 600; i++)); do
		[ "$(grep -c '^ack ' "$O")" -ge "$1" ] && return 0
		sleep 0.1
	done
	fail "the workload acknowledged fewer than $1 transactions in 60 s"
}

# log generation numbers (decimal) of the archived logs in directory $1
log_gens() {
	local f
	for f in "$1"/E00????????.log; do
		[ -e "$f" ] || continue
		f=${f##*/E00}
		echo $((16#${f%.log}))
	done | sort -n
}

# the checkpoint generation (decimal)
ckpt_gen() {
	"$STORE" checkpoint "$D/E00.chk" |
		sed -n 's/.*Checkpoint: (gen 0x[0-9A-Fa-f]* (\([0-9]*\)).*/\1/p'
}

# wait until an archived log lies below the checkpoint (a full backup then
# has something to delete)
wait_ckpt_moved() {
	for ((i = 0; i < 600; i++)); do
		local oldest ck
		oldest=$(log_gens "$D" | head -n 1)
		ck=$(ckpt_gen)
		[ -n "$oldest" ] && [ -n "$ck" ] && [ "$oldest" -lt "$ck" ] && return 0
		sleep 0.1
	done
	fail "the checkpoint did not move in 60 s"
}

# hdr DB SECTION KEY: a field of a backup record of the header (--json)
hdr() {
	"$STORE" header "$D/$1" --json |
		awk -v sec="\"$2\":" -v key="\"$3\":" \
			'$1 == sec { f = 1 } f && $1 == key { gsub(/[",]/, "", $2); print $2; exit }'
}

# info FILE KEY: a value printed by stream_fetch_tool
info() {
	sed -n "s/^$2=//p" "$1" | head -n 1
}

# fetch NAME [options...]: stream into $T/NAME; output in $T/NAME.info/.err
fetch() {
	local name=$1
	shift
	mkdir -p "$T/$name"
	limited "$FETCH" "$@" "$D" "$T/$name" >"$T/$name.info" 2>"$T/$name.err"
}

# restore_check NAME ACKS_BEFORE DBDIR LOGDIR... : lay down the databases of
# DBDIR and the logs of every LOGDIR as a restore, hard-recover it without
# roll-forward, check every database, compare with the oracle
restore_check() {
	local name=$1 acks=$2 dbdir=$3
	shift 3
	local R=$T/$name
	mkdir -p "$R/logs" || fail "mkdir $R"
	cp "$dbdir"/*.edb "$R/" || fail "copying the databases"
	local d
	for d in "$@"; do
		cp "$d"/E00????????.log "$R/logs/" || fail "copying the logs of $d"
	done
	local gens lo hi n
	gens=$(log_gens "$R/logs")
	lo=$(echo "$gens" | head -n 1)
	hi=$(echo "$gens" | tail -n 1)
	n=$(echo "$gens" | wc -l)
	[ "$n" -eq $((hi - lo + 1)) ] || fail "$name: the logs are not contiguous: $gens"
	{
		echo "amber-restore-env 1"
		echo "instance_dir=$R"
		echo "backup_log_dir=$R/logs"
		echo "prefix=E00"
		printf 'gen_low=0x%08X\n' "$lo"
		printf 'gen_high=0x%08X\n' "$hi"
		echo "roll_forward=no"
		for d in "$R"/*.edb; do
			echo "database=${d##*/}"
		done
	} >"$R/restore.env"
	limited "$STORE" hard-recover "$R" >"$T/$name-recover.out" 2>"$T/$name-recover.err" ||
		fail "$name: amber-store hard-recover failed"
	for d in "$R"/*.edb; do
		limited "$STORE" check "$d" >"$T/$name-check.out" 2>"$T/$name-check.err" ||
			fail "$name: amber-store check $d failed"
	done
	limited "$STORE" dump "$R" >"$T/$name.dump" 2>"$T/$name-dump.err" ||
		fail "$name: amber-store dump failed"
	limited "$CHECK" --acks-before "$acks" "$O" "$T/$name.dump" >"$T/$name-oracle.out" \
		2>"$T/$name-oracle.err" ||
		fail "$name: amber-oracle-check: $(tail -n 5 "$T/$name-oracle.out")"
	note "$name: $(tail -n 1 "$T/$name-oracle.out")"
}

# ------------------------------------------------------------------ cases

case_full() {
	create --log-size 256K
	serve_start --load 200 --oracle "$O" --quiet
	wait_acks 400
	wait_ckpt_moved
	local acks
	acks=$(stat -c %s "$O")
	fetch full || fail "the full stream failed: $(cat "$T/full.err")"
	local lo hi
	lo=$(($(info "$T/full.info" gen_low)))
	hi=$(($(info "$T/full.info" gen_high)))
	note "streamed $(info "$T/full.info" pages) pages, logs $lo-$hi"
	[ "$(info "$T/full.info" ndb)" = 2 ] || fail "expected 2 databases"
	local db
	for db in priv1.edb pub1.edb; do
		[ -f "$T/full/$db" ] || fail "$db not received"
		[ "$(hdr "$db" previous_full_backup gen_low)" = "$lo" ] &&
			[ "$(hdr "$db" previous_full_backup gen_high)" = "$hi" ] &&
			[ "$(hdr "$db" previous_full_backup kind)" = streaming ] ||
			fail "$db: the header does not record the streamed full backup $lo-$hi"
	done
	# truncated below the range, the range itself kept
	local oldest
	oldest=$(log_gens "$D" | head -n 1)
	[ "$oldest" = "$lo" ] || fail "oldest log after the backup is $oldest, expected $lo"
	serve_stop
	restore_check restore "$acks" "$T/full" "$T/full"
}

# flip 16 bytes of page $2 of database $1 (each byte inverted)
damage_page() {
	local file=$D/$1 page=$2 off bytes b esc=
	off=$((page * 8192 + 200))
	bytes=$(od -An -tu1 -j "$off" -N 16 "$file")
	for b in $bytes; do
		esc+=$(printf '\\%03o' $((255 - b)))
	done
	printf "$esc" | dd of="$file" bs=1 seek="$off" conv=notrunc status=none ||
		fail "dd into $file"
}

# flip bit 0 of byte 300 of page $2 of database $1
flip_bit() {
	local file=$D/$1 off b
	off=$(($2 * 8192 + 300))
	b=$(od -An -tu1 -j "$off" -N 1 "$file")
	printf "$(printf '\\%03o' $((b ^ 1)))" |
		dd of="$file" bs=1 seek="$off" conv=notrunc status=none ||
		fail "dd into $file"
}

case_damaged() {
	create --log-size 256K
	serve_start --load 100 --oracle "$O" --quiet
	wait_acks 50
	serve_stop

	# one flipped bit is corrected, counted and reported; the copy is good
	flip_bit pub1.edb 3
	serve_start --quiet
	fetch corrected --type copy ||
		fail "a stream with a correctable page failed: $(cat "$T/corrected.err")"
	[ "$(info "$T/corrected.info" corrected)" -ge 1 ] ||
		fail "the corrected single-bit error was not reported"
	note "single-bit error: corrected=$(info "$T/corrected.info" corrected)"
	"$STORE" check "$T/corrected/pub1.edb" >"$T/check-corrected.out" 2>&1 ||
		fail "the streamed copy of a corrected page does not verify"
	serve_stop

	local before after
	before=$(log_gens "$D" | tr '\n' ' ')
	damage_page priv1.edb 5
	"$STORE" check "$D/priv1.edb" >"$T/check-damaged.out" 2>&1 &&
		fail "amber-store check does not see the damage"
	serve_start --quiet
	fetch damaged && fail "a stream with a damaged page succeeded"
	local rc=$?
	[ "$rc" -eq 1 ] || fail "expected exit 1 for a damaged page, got $rc"
	grep -q 'priv1.edb' "$T/damaged.err" && grep -q 'page 5\b' "$T/damaged.err" ||
		fail "the message does not name the database and the page: $(cat "$T/damaged.err")"
	note "refused: $(head -n 1 "$T/damaged.err")"
	[ "$(hdr priv1.edb previous_full_backup gen_high)" = 0 ] ||
		fail "a failed stream recorded a backup"
	serve_stop
	after=$(log_gens "$D" | tr '\n' ' ')
	# serve start rolls the log (new generations), but none may be gone
	local g
	for g in $before; do
		[[ " $after " == *" $g "* ]] || fail "log generation $g was deleted"
	done
	[ -z "$(ls -A "$T/damaged")" ] || fail "files left in the target: $(ls -A "$T/damaged")"
}

case_killed() {
	create --log-size 256K
	serve_start --load 50 --oracle "$O" --quiet
	wait_acks 50
	wait_ckpt_moved
	local before
	before=$(log_gens "$D" | head -n 1)
	fetch killed --kill-after 300000
	local rc=$?
	[ "$rc" -eq 137 ] || fail "the client was not killed (exit $rc)"
	[ "$(hdr priv1.edb previous_full_backup gen_high)" = 0 ] ||
		fail "a killed stream recorded a backup"
	[ "$(log_gens "$D" | head -n 1)" = "$before" ] || fail "logs were deleted after the kill"
	# the next stream is served (serve may take a moment to see the kill)
	for ((i = 0; i < 50; i++)); do
		fetch next
		rc=$?
		[ "$rc" -ne 3 ] && break
		sleep 0.2
	done
	[ "$rc" -eq 0 ] || fail "the stream after the kill failed ($rc): $(cat "$T/next.err")"
	[ "$(hdr priv1.edb previous_full_backup gen_low)" = "$(($(info "$T/next.info" gen_low)))" ] ||
		fail "the stream after the kill is not recorded"
	serve_stop
}

case_busy() {
	create --log-size 256K
	serve_start --load 50 --oracle "$O" --quiet
	wait_acks 20
	fetch first --hold "$T/hold" &
	local first=$!
	for ((i = 0; i < 300; i++)); do
		[ -e "$T/hold" ] && break
		sleep 0.1
	done
	[ -e "$T/hold" ] || fail "the first client did not start"
	fetch second
	local rc=$?
	[ "$rc" -eq 3 ] || fail "the second client got exit $rc, not 3 (busy)"
	grep -q busy "$T/second.err" || fail "no busy message: $(cat "$T/second.err")"
	note "second client: $(head -n 1 "$T/second.err")"
	rm -f "$T/hold"
	wait "$first" || fail "the first client failed: $(cat "$T/first.err")"
	[ "$(hdr pub1.edb previous_full_backup gen_low)" = "$(($(info "$T/first.info" gen_low)))" ] ||
		fail "the first stream is not recorded"
	serve_stop
}

case_incremental() {
	create --log-size 256K
	serve_start --load 100 --oracle "$O" --quiet
	wait_acks 50
	fetch inc-early --type incremental
	[ $? -eq 1 ] && grep -q 'full backup' "$T/inc-early.err" ||
		fail "an incremental without a full backup was not refused: $(cat "$T/inc-early.err")"
	fetch full || fail "the full stream failed: $(cat "$T/full.err")"
	local fhi
	fhi=$(($(info "$T/full.info" gen_high)))

	# differential: the logs since the full backup; deletes nothing
	wait_acks 150
	local dacks oldest
	dacks=$(stat -c %s "$O")
	oldest=$(log_gens "$D" | head -n 1)
	fetch diff --type differential || fail "the differential stream failed: $(cat "$T/diff.err")"
	local dlo dhi
	dlo=$(($(info "$T/diff.info" gen_low)))
	dhi=$(($(info "$T/diff.info" gen_high)))
	[ "$dlo" -eq $((fhi + 1)) ] || fail "the differential starts at $dlo, the full ended at $fhi"
	[ "$(hdr priv1.edb previous_differential_backup gen_high)" = "$dhi" ] ||
		fail "the differential is not recorded"
	[ "$(log_gens "$D" | head -n 1)" = "$oldest" ] || fail "a differential deleted logs"

	# incremental: the logs since the full (no incremental yet); truncates
	wait_acks 250
	local acks
	acks=$(stat -c %s "$O")
	fetch inc --type incremental || fail "the incremental stream failed: $(cat "$T/inc.err")"
	local ilo ihi
	ilo=$(($(info "$T/inc.info" gen_low)))
	ihi=$(($(info "$T/inc.info" gen_high)))
	[ "$ilo" -eq $((fhi + 1)) ] || fail "the incremental starts at $ilo, the full ended at $fhi"
	[ -z "$(ls "$T/inc" "$T/diff" | grep '\.edb$')" ] ||
		fail "a logs-only stream carried databases"
	[ "$(hdr priv1.edb previous_incremental_backup gen_high)" = "$ihi" ] ||
		fail "the incremental is not recorded"
	note "full to $fhi, differential $dlo-$dhi, incremental $ilo-$ihi"
	serve_stop
	restore_check diff-chain "$dacks" "$T/full" "$T/full" "$T/diff"
	restore_check inc-chain "$acks" "$T/full" "$T/full" "$T/inc"
}

case "$CASE" in
full | damaged | killed | busy | incremental) "case_$CASE" ;;
*)
	echo "stream_test.sh: unknown case $CASE" >&2
	exit 2
	;;
esac
note "passed"
[ "${STREAM_KEEP:-0}" = 1 ] || keep=0
exit 0

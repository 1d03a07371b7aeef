# shellcheck shell=bash
# daemon_lib.sh - sourced by the amberd integration tests: start amberd,
# amber-store serve and test writers on real filesystems, and always take
# them down again (SIGKILL to every process started, unexpose mounts),
# whatever way the script ends.  The filesystems themselves come from
# tests/providers/with_fs.sh, which runs the test script.
#
#   d_init BINDIR              tools from the build tree; work dir $DW
#   d_start_amberd [KEY=VAL]   amberd with a fresh config ($DW/amberd.conf);
#                              $HOLD_MS, $EVENT_MS; extra [amberd] keys given
#                              as arguments; env AMBERD_ENV for the process
#   d_stop_amberd              SIGTERM and wait
#   d_start_serve DIR RATE ORACLE [ARGS]  amber-store serve, waits until it
#                              is registered with amberd; RATE - for no load
#   d_wait_writer NAME [SEC]   until `amber list writers` shows NAME
#   d_acks ORACLE              number of acknowledged transactions
#   d_wait_acks ORACLE N MS    until more than N acks exist; prints the ms
#                              waited; fails after MS
#   d_wait_for MS CMD...       until CMD succeeds (0) or MS passed (1)
#   d_event_seq                the seq of the newest event in amberd's log
#   d_event_time CODE SINCE    amberd's time (ms) of the first event CODE
#                              with seq > SINCE; empty when there is none
#   has [OPTS] PATTERN         grep -q for pipelines, without SIGPIPE races
#   fail MSG / ok MSG          report

DW=""
D_PIDS=()
AMBERD_PID=""
SERVE_PID=""

# has [GREP-OPTIONS] PATTERN: grep -q on standard input, reading all of it
# first (a bare `cmd | grep -q` under pipefail fails when grep's early exit
# kills cmd with SIGPIPE)
has() {
	local in
	in=$(cat)
	grep -q "$@" <<<"$in"
}

fail() {
	echo "FAIL: $*"
	[ -n "$DW" ] && [ -f "$DW/amberd.log" ] && { echo "--- amberd.log (tail)"; tail -25 "$DW/amberd.log"; }
	exit 1
}
ok() { echo "ok   $*"; }

d_cleanup() {
	local rc=$? p m
	for p in "${D_PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	for p in "${D_PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	if [ -n "$DW" ]; then
		while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m"
		done < <(awk -v d="$DW" 'index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r)
		# keep the logs of a failed run for a look; a passing run leaves nothing
		if [ "$rc" = 0 ]; then
			rm -rf --one-file-system "$DW"
		else
			echo "logs kept in $DW"
		fi
	fi
	exit "$rc"
}

d_init() {
	BIN=$1
	AMBERD=$BIN/src/daemon/amberd
	AMBER=$BIN/src/cli/amber
	STORE=$BIN/src/store/tool/amber-store
	TWRITER=$BIN/tests/daemon/amber-test-writer
	TREQ=$BIN/tests/daemon/amber-test-requestor
	OCHECK=$BIN/tests/tools/amber-oracle-check
	for t in "$AMBERD" "$AMBER" "$STORE" "$TWRITER" "$TREQ" "$OCHECK"; do
		[ -x "$t" ] || { echo "FAIL: $t not built"; exit 1; }
	done
	DW=$(mktemp -d "${TMPDIR:-/tmp}/amber-daemon-test.XXXXXX") || exit 1
	export AMBER_SOCKET=$DW/amberd.sock
	HOLD_MS=${HOLD_MS:-2000}
	EVENT_MS=${EVENT_MS:-5000}
	trap d_cleanup EXIT
	trap 'exit 130' INT TERM HUP
}

# d_volume btrfs|xfs: MNT is the test filesystem (with_fs.sh), VOL=$MNT/vol
# a volume on it: a btrfs subvolume, or a plain directory (a tree for the
# reflink provider) on xfs
d_volume() {
	case $1 in
	btrfs) MNT=${AMB_TEST_BTRFS:?} ;;
	xfs) MNT=${AMB_TEST_XFS:?} ;;
	*) fail "unknown filesystem $1" ;;
	esac
	VOL=$MNT/vol
	if [ "$1" = btrfs ]; then
		btrfs -q subvolume create "$VOL" || fail "btrfs subvolume create"
	else
		mkdir "$VOL" || fail "mkdir $VOL"
	fi
}

# d_store_under_load RATE: SG=$VOL/store, a store with small logs (256 KiB,
# so that the load fills several generations between backups); amberd;
# serve under RATE transactions/s writing ORACLE=$DW/oracle; back once it
# has committed 50
d_store_under_load() {
	SG=$VOL/store
	ORACLE=$DW/oracle
	"$STORE" create "$SG" --log-size 256K >/dev/null || fail "amber-store create"
	d_start_amberd
	d_start_serve "$SG" "$1" "$ORACLE"
	d_wait_acks "$ORACLE" 50 20000 >/dev/null || fail "serve is not committing"
}

d_start_amberd() {
	{
		echo "[amberd]"
		echo "hold_ms = $HOLD_MS"
		echo "event_timeout_ms = $EVENT_MS"
		echo "journald = no"
		for kv in "$@"; do echo "$kv"; done
	} >"$DW/amberd.conf"
	env ${AMBERD_ENV:-} "$AMBERD" --foreground --config "$DW/amberd.conf" \
		--socket "$AMBER_SOCKET" --state-dir "$DW/state" >>"$DW/amberd.log" 2>&1 &
	AMBERD_PID=$!
	D_PIDS+=("$AMBERD_PID")
	local end=$(($(date +%s%3N) + 20000))
	while [ "$(date +%s%3N)" -lt "$end" ]; do
		[ -S "$AMBER_SOCKET" ] && "$AMBER" list providers >/dev/null 2>&1 && return 0
		kill -0 "$AMBERD_PID" 2>/dev/null || fail "amberd did not start"
		sleep 0.05
	done
	fail "amberd did not answer within 20 s"
}

d_stop_amberd() {
	kill -TERM "$AMBERD_PID" 2>/dev/null
	wait "$AMBERD_PID" 2>/dev/null
	AMBERD_PID=""
}

d_wait_writer() {
	local name=$1 sec=${2:-10} i out
	for i in $(seq $((sec * 20))); do
		out=$("$AMBER" list writers 2>/dev/null)
		if grep -q "Writer name: '$name'" <<<"$out"; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

d_start_serve() {
	local dir=$1 rate=$2 oracle=$3 load
	shift 3
	load=(--load "$rate")
	[ "$rate" = - ] && load=()
	"$STORE" serve "$dir" "${load[@]}" --oracle "$oracle" --threads 4 \
		--socket "$AMBER_SOCKET" "$@" >>"$DW/serve.log" 2>&1 &
	SERVE_PID=$!
	D_PIDS+=("$SERVE_PID")
	if [ -n "$AMBERD_PID" ]; then
		d_wait_writer amber-store 10 || fail "amber-store serve did not register"
	fi
}

d_acks() {
	grep -c '^ack ' "$1" 2>/dev/null || true
}

# d_wait_acks ORACLE N MS: wait until the oracle has more than N acks
d_wait_acks() {
	local oracle=$1 n=$2 ms=$3 t0 now
	t0=$(date +%s%3N)
	while :; do
		now=$(date +%s%3N)
		if [ "$(d_acks "$oracle")" -gt "$n" ]; then
			echo $((now - t0))
			return 0
		fi
		[ $((now - t0)) -gt "$ms" ] && return 1
		sleep 0.02
	done
}

# d_wait_for MS CMD [ARGS...]: run CMD every 20 ms until it succeeds (0) or
# MS milliseconds have passed (1; CMD is tried once more at the end)
d_wait_for() {
	local ms=$1 end
	shift
	end=$(($(date +%s%3N) + ms))
	while [ "$(date +%s%3N)" -lt "$end" ]; do
		"$@" && return 0
		sleep 0.02
	done
	"$@"
}

# amberd's event log (STATE/events.log, one JSON line per event) as
# "SEQ TIME CODE" lines; torn or foreign lines are skipped
d_event_fields() {
	awk '{
		s = t = c = ""
		if (match($0, /"seq":[0-9]+/)) s = substr($0, RSTART + 6, RLENGTH - 6)
		if (match($0, /"time":[0-9]+/)) t = substr($0, RSTART + 7, RLENGTH - 7)
		if (match($0, /"code":[0-9]+/)) c = substr($0, RSTART + 7, RLENGTH - 7)
		if (s != "" && t != "" && c != "") print s, t, c
	}' "$DW/state/events.log" 2>/dev/null
}

d_event_seq() {
	d_event_fields | awk '$1 > m { m = $1 } END { print m + 0 }'
}

# d_event_time CODE SINCE: the time (ms since the epoch, amberd's clock) of
# the first event CODE whose seq is above SINCE
d_event_time() {
	d_event_fields | awk -v c="$1" -v s="$2" '$3 == c && $1 > s { print $2; exit }'
}

# the shadows listed by amberd (ids, one per line)
d_shadow_ids() {
	"$AMBER" list shadows --json | grep -o '"id": *"[0-9a-f-]*"' | grep -o '[0-9a-f-]\{36\}' || true
}

# d_no_shadows [MS]: no shadow listed, within MS ms (default 10000).
# amberd answers session-close first and deletes the set's volatile
# shadows after it (docs/protocol.md), so a requestor that has just
# returned may still see them listed for a moment.
d_no_shadows() {
	d_wait_for "${1:-10000}" d__no_shadow_listed
}
d__no_shadow_listed() { [ -z "$(d_shadow_ids)" ]; }

# directories present in the shadow storage directory of mount point $1
d_shadow_dirs() {
	ls "$1/.amber-shadows" 2>/dev/null | grep -v '\.amber-shadow$' || true
}

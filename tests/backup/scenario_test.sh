#!/usr/bin/env bash
# scenario_test.sh BINDIR btrfs|xfs offline|online|stream
#
# The seeds' story (issue 4): amber-store serve under load; a full backup;
# more load; an incremental; more load; then
#   offline: serve is SIGKILLed, a database page is damaged, and
#            `amber restore latest` (no writer running) lays the chain
#            down and runs hard recovery with roll-forward;
#   online:  the database is damaged under the running serve, and the
#            restore goes through pre-restore (serve dismounts), files,
#            post-restore (serve recovers and mounts again);
#   stream:  the same as offline, with both backups made with
#            --method stream (no shadow copy).
# Proven: the backups are listed verified with their parents and log
# ranges; full and incremental record themselves in the header and
# truncate logs; the restored database passes `amber-store check`; the
# oracle accepts it with every acknowledged transaction present.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../daemon/daemon_lib.sh
. "$here/../daemon/daemon_lib.sh"

d_init "${1:?usage: scenario_test.sh BINDIR btrfs|xfs offline|online|stream}"
fs=${2:?}
mode=${3:?}
METHOD=()
[ "$mode" = stream ] && METHOD=(--method stream)

d_volume "$fs"
REPO=$MNT/repo
d_store_under_load 300

gens() { ls "$SG" | grep -c '^E00[0-9A-F]\{8\}\.log$' || true; }
oldest() { ls "$SG" | grep '^E00[0-9A-F]\{8\}\.log$' | sort | head -1; }

# --- full
n=$(d_acks "$ORACLE")
"$AMBER" backup full --repo "$REPO" "${METHOD[@]}" >"$DW/full.out" 2>"$DW/full.err" ||
	fail "backup full: exit $?: $(cat "$DW/full.err")"
FULL=$(tail -1 "$DW/full.out")
[[ $FULL =~ ^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$ ]] || fail "backup full printed '$FULL', not an id"
"$AMBER" backups --repo "$REPO" --json >"$DW/list.json" || fail "amber backups"
jq -e --arg id "$FULL" '.[] | select(.id == $id and .verified == true and .type == "full" and .status == "complete")' \
	"$DW/list.json" >/dev/null || fail "the full backup is not listed verified: $(cat "$DW/list.json")"
"$STORE" header "$SG/priv1.edb" >"$DW/hdr1" || fail "amber-store header"
grep -A2 "^Previous Full Backup:" "$DW/hdr1" | grep "Mark:" | has -v "none" ||
	fail "the full backup is not recorded in the header: $(cat "$DW/hdr1")"
ok "full backup $FULL verified and recorded in the header (acks before: $n)"

# --- more load, incremental
d_wait_acks "$ORACLE" $(( $(d_acks "$ORACLE") + 300 )) 30000 >/dev/null || fail "no more commits"
# a generation archived after the full's last one, so that the incremental
# has archived logs to copy while the shadow is made (job.h, PRECOPY)
full_high=$(jq -r --arg id "$FULL" '.[] | select(.id == $id) | .log_range[0].gen_high' "$DW/list.json")
for _ in $(seq 300); do
	h=$(ls "$SG" | sed -n 's/^E00\([0-9A-F]\{8\}\)\.log$/\1/p' | sort | tail -1)
	[ $((16#${h:-0})) -gt "$full_high" ] && break
	sleep 0.1
done
before_inc=$(oldest)
"$AMBER" backup incremental --repo "$REPO" "${METHOD[@]}" >"$DW/inc.out" 2>"$DW/inc.err" ||
	fail "backup incremental: exit $?: $(cat "$DW/inc.err")"
INC=$(tail -1 "$DW/inc.out")
"$AMBER" backups --repo "$REPO" --json >"$DW/list.json" || fail "amber backups"
jq -e --arg id "$INC" --arg p "$FULL" '.[] | select(.id == $id and .verified == true and .type == "incremental" and .parent == $p)' \
	"$DW/list.json" >/dev/null || fail "the incremental is not listed verified with parent $FULL: $(cat "$DW/list.json")"
# (the writer deletes the logs right after its answer to BackupComplete)
oldest_past() { [[ "$(oldest)" > "$1" ]]; }
d_wait_for 10000 oldest_past "$before_inc" ||
	fail "the incremental truncated no log (oldest $before_inc, then $(oldest))"
after_inc=$(oldest)
[[ "$after_inc" > "$before_inc" ]] || fail "the incremental truncated no log (oldest $before_inc, then $after_inc)"
"$AMBER" verify --repo "$REPO" "$INC" >/dev/null 2>"$DW/verify.err" || fail "amber verify: $(cat "$DW/verify.err")"
ok "incremental $INC verified (parent $FULL); logs truncated: oldest $before_inc -> $after_inc"
# the archived logs read from the live directory while the shadow was
# made: taken on btrfs (a snapshot keeps the files' inodes and times);
# never on xfs (the reflink provider's clones are other inodes, so the
# precopy does not start): every log comes from the shadow
if [ "$mode" != stream ]; then
	doc=$REPO/backups/$INC/backup.json
	npre=$(jq '[.files[] | select(.read_before_snapshot == true)] | length' "$doc")
	nlog=$(jq '[.files[] | select(.role == "log")] | length' "$doc")
	if [ "$fs" = btrfs ]; then
		[ "$npre" -ge 1 ] && [ "$npre" -lt "$nlog" ] ||
			fail "btrfs: $npre of $nlog logs read before the snapshot (want at least 1, not the current log)"
	else
		[ "$npre" = 0 ] || fail "xfs: $npre logs taken from the live directory, not from the shadow"
	fi
	jq -e --argjson n "$npre" '.writers[0].store.logs_read_before_snapshot == $n' "$doc" >/dev/null ||
		fail "logs_read_before_snapshot is not $npre: $(jq -c .writers[0].store "$doc")"
	ok "$npre of $nlog logs of the incremental read from the live directory while the shadow was made"
fi

# --- more load, then the disaster
d_wait_acks "$ORACLE" $(( $(d_acks "$ORACLE") + 300 )) 30000 >/dev/null || fail "no more commits"
# damage: scribble over a page in the middle of the database (not one bit:
# damage), $pg its number; check must find it.  Run in this shell, not in
# $(...), so that its fail ends the test.  Under a running serve (online),
# serve is stopped (SIGSTOP) from the damage until check has seen it: a
# checkpoint could otherwise write the page again in between.
damage() {
	local size pages rc
	[ "$mode" = online ] && kill -STOP "$SERVE_PID"
	size=$(stat -c %s "$SG/priv1.edb")
	pages=$((size / 8192))
	pg=$((pages / 2))
	printf 'garbage-garbage-garbage-garbage' | dd of="$SG/priv1.edb" bs=1 seek=$((pg * 8192 + 100)) conv=notrunc status=none
	"$STORE" check "$SG/priv1.edb" >/dev/null 2>&1
	rc=$?
	[ "$mode" = online ] && kill -CONT "$SERVE_PID"
	[ $rc != 0 ] || fail "the damage was not detected by check"
}
if [ "$mode" = online ]; then
	damage
	# the restore sends pre-restore: serve stops its load and closes the instance
	"$AMBER" restore --repo "$REPO" latest >"$DW/restore.out" 2>"$DW/restore.err" ||
		fail "online restore: exit $?: $(cat "$DW/restore.err")"
	has "dismounted" <"$DW/restore.err" || fail "the restore did not go through the writer: $(cat "$DW/restore.err")"
	kill -0 "$SERVE_PID" || fail "serve died in the online restore"
	# the serve mounted again and resumed its load
	d_wait_acks "$ORACLE" $(( $(d_acks "$ORACLE") + 50 )) 20000 >/dev/null ||
		fail "serve does not commit after the online restore"
	kill -9 "$SERVE_PID"
	wait "$SERVE_PID" 2>/dev/null
else
	kill -9 "$SERVE_PID"
	wait "$SERVE_PID" 2>/dev/null
	damage
	"$AMBER" restore --repo "$REPO" latest >"$DW/restore.out" 2>"$DW/restore.err" ||
		fail "restore: exit $?: $(cat "$DW/restore.err")"
fi
ok "page $pg damaged; restore latest ($mode): $(tr '\n' ' ' <"$DW/restore.err")"

"$STORE" check "$SG/priv1.edb" >"$DW/check.out" 2>&1 || fail "the restored database fails check: $(tail -3 "$DW/check.out")"
"$STORE" dump "$SG" >"$DW/dump" 2>"$DW/dump.err" || fail "dump: $(cat "$DW/dump.err")"
"$OCHECK" "$ORACLE" "$DW/dump" >"$DW/ocheck" 2>&1 || fail "oracle: $(tail -5 "$DW/ocheck")"
ok "restored database passes check; oracle: $(tail -1 "$DW/ocheck")"
[ -d "$SG"/amber-restore-* ] 2>/dev/null && fail "the restore left its log folder behind"
grep -q '^status=ended' "$SG/restore.env" || fail "restore.env does not say ended: $(cat "$SG/restore.env")"
ok "restore.env records the end of recovery"
exit 0

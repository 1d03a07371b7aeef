#!/usr/bin/env bash
# until_test.sh BINDIR
#
# Point-in-time restore (issue 4): a full backup under load, then
# `amber restore --to DIR --until T` rolls forward through the instance's
# newer logs and stops before the first transaction committed after T:
#   - every transaction acknowledged before T is in the restored copy
#     (amber-oracle-check --acks-before the oracle's length just before T);
#   - transactions acknowledged well after T are not (the same check with
#     the oracle's length 1.5 s after T fails);
#   - without --until the same restore has them all.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../daemon/daemon_lib.sh
. "$here/../daemon/daemon_lib.sh"

d_init "${1:?usage: until_test.sh BINDIR}"
d_volume xfs
REPO=$MNT/repo
d_store_under_load 200
cut0=$(stat -c %s "$ORACLE")
"$AMBER" backup full --repo "$REPO" --quiet >"$DW/full.out" 2>"$DW/full.err" ||
	fail "backup full: $(cat "$DW/full.err")"
FULL=$(tail -1 "$DW/full.out")
d_wait_acks "$ORACLE" $(( $(d_acks "$ORACLE") + 200 )) 30000 >/dev/null || fail "no more commits"

cut1=$(stat -c %s "$ORACLE")
T=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
sleep 1.5
cut2=$(stat -c %s "$ORACLE")
d_wait_acks "$ORACLE" $(( $(d_acks "$ORACLE") + 100 )) 30000 >/dev/null || fail "no more commits"
kill -9 "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null
# acks between cut1 and cut2: committed after T
n_late=$(tail -c +$((cut1 + 1)) "$ORACLE" | head -c $((cut2 - cut1)) | grep -c '^ack ')
[ "$n_late" -gt 20 ] || fail "too few transactions between T and T+1.5s ($n_late) to tell"

"$AMBER" restore --repo "$REPO" "$FULL" --to "$DW/until" --until "$T" --quiet >/dev/null 2>"$DW/u.err" ||
	fail "restore --until $T: exit $?: $(cat "$DW/u.err")"
grep -q "^until=$T" "$DW/until/restore.env" 2>/dev/null ||
	grep -q "^until=" "$DW/until/restore.env" || fail "restore.env has no until: $(cat "$DW/until/restore.env")"
"$STORE" check "$DW/until/priv1.edb" >/dev/null 2>&1 || fail "the point-in-time copy fails check"
"$STORE" dump "$DW/until" >"$DW/dump.u" 2>"$DW/dump.err" || fail "dump: $(cat "$DW/dump.err")"
"$OCHECK" --acks-before "$cut1" "$ORACLE" "$DW/dump.u" >"$DW/o1" 2>&1 ||
	fail "a transaction acknowledged before T is missing: $(tail -5 "$DW/o1")"
"$OCHECK" --acks-before "$cut2" "$ORACLE" "$DW/dump.u" >"$DW/o2" 2>&1 &&
	fail "the copy has every transaction up to T+1.5s: --until did not stop the replay ($(tail -1 "$DW/o2"))"
has "not fully present\|missing\|absent" <"$DW/o2" || fail "the later check failed for another reason: $(tail -5 "$DW/o2")"
ok "restore --until $T: every ack before T present ($(tail -1 "$DW/o1")); the $n_late acked in the 1.5 s after T are not all there"

# a torn log left in DIR by an earlier, interrupted restore is replaced
mkdir "$DW/all"
newest=$(ls "$SG" | grep '^E00[0-9A-F]\{8\}\.log$' | sort | tail -1)
head -c 5000 "$SG/$newest" >"$DW/all/$newest"
"$AMBER" restore --repo "$REPO" "$FULL" --to "$DW/all" --quiet >/dev/null 2>"$DW/a.err" ||
	fail "restore without --until: $(cat "$DW/a.err")"
"$STORE" dump "$DW/all" >"$DW/dump.a" 2>"$DW/dump.err" || fail "dump: $(cat "$DW/dump.err")"
"$OCHECK" "$ORACLE" "$DW/dump.a" >"$DW/o3" 2>&1 || fail "full roll-forward: $(tail -5 "$DW/o3")"
ok "without --until the same restore rolls forward to the end (over a torn $newest left in DIR): $(tail -1 "$DW/o3")"

# a generation missing between the backup and the current log: the
# roll-forward stops, naming it
gap=$(ls "$SG" | grep '^E00[0-9A-F]\{8\}\.log$' | sort | tail -1)
mv "$SG/$gap" "$DW/$gap.away"
if "$AMBER" restore --repo "$REPO" "$FULL" --to "$DW/gap" --quiet >/dev/null 2>"$DW/g.err"; then
	fail "restore --to over a missing $gap succeeded"
fi
grep -q "${gap%.log}.*is missing\|$gap) is missing" "$DW/g.err" ||
	fail "restore --to over a missing $gap: $(cat "$DW/g.err")"
mv "$DW/$gap.away" "$SG/$gap"
ok "a generation missing between the backup and the current log stops restore --to: $(head -c 160 "$DW/g.err")"

# the original instance is gone: --to restores what the backup holds
mv "$SG" "$MNT/gone"
"$AMBER" restore --repo "$REPO" "$FULL" --to "$DW/nologs" --quiet >/dev/null 2>"$DW/n.err" ||
	fail "restore --to with the original gone: $(cat "$DW/n.err")"
"$STORE" dump "$DW/nologs" >"$DW/dump.n" 2>"$DW/dump.err" || fail "dump: $(cat "$DW/dump.err")"
"$OCHECK" --acks-before "$cut0" "$ORACLE" "$DW/dump.n" >"$DW/o4" 2>&1 ||
	fail "with the original gone, an ack from before the backup is missing: $(tail -5 "$DW/o4")"
ok "with the original instance gone, restore --to gives the backup's state: $(tail -1 "$DW/o4")"
echo PASS

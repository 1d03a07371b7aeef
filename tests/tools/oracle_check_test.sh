#!/usr/bin/env bash
# oracle_check_test.sh AMBER-ORACLE-CHECK
#
# Unit test of the oracle checker: handcrafted oracle/dump pairs and the
# exit code each must give (0 consistent, 1 violation, 2 malformed input).
set -u

CHECK=${1:?usage: oracle_check_test.sh PATH-TO-amber-oracle-check}
T=$(mktemp -d "${TMPDIR:-/tmp}/oracle-check-test.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

H1=$(printf 1 | sha256sum | cut -d' ' -f1)
H2=$(printf 2 | sha256sum | cut -d' ' -f1)
H3=$(printf 3 | sha256sum | cut -d' ' -f1)
H4=$(printf 4 | sha256sum | cut -d' ' -f1)
H5=$(printf 5 | sha256sum | cut -d' ' -f1)
TAB=$'\t'

pass=0
fail=0

# expect NAME EXIT [PATTERN]: run the checker on $T/oracle and $T/dump,
# compare the exit code and (if given) grep its output for PATTERN.
expect() {
	local name=$1 want=$2 pattern=${3:-}
	local out rc
	out=$("$CHECK" ${ACKS_BEFORE:+--acks-before "$ACKS_BEFORE"} "$T/oracle" "$T/dump" 2>&1)
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		echo "FAIL $name: exit $rc, expected $want"
		echo "$out" | sed 's/^/    /'
		fail=$((fail + 1))
		return
	fi
	if [ -n "$pattern" ] && ! grep -q -- "$pattern" <<<"$out"; then
		echo "FAIL $name: output lacks '$pattern'"
		echo "$out" | sed 's/^/    /'
		fail=$((fail + 1))
		return
	fi
	echo "ok   $name (exit $rc)"
	pass=$((pass + 1))
}

# dump lines from "table key hash" arguments
dump() {
	: >"$T/dump"
	while [ $# -gt 0 ]; do
		printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$T/dump"
		shift 3
	done
}

# --- a consistent history -------------------------------------------------
# 1: acked, 2: acked, 3: unacked and present, 4: unacked and absent,
# 5: acked, deletes k1 (acked by 1), 6: unacked, puts k6 and deletes k2: present
base_oracle() {
	cat >"$T/oracle" <<EOF
begin 1 put:mbox000:k1:$H1 put:mbox001:k2:$H2
ack 1
begin 2 put:mbox000:k3:$H3
ack 2
begin 3 put:mbox002:k4:$H4
begin 4 put:mbox002:k5:$H5
begin 5 put:mbox000:k7:$H1 del:mbox000:k1
ack 5
begin 6 put:mbox003:k6:$H2 del:mbox001:k2
EOF
}
base_dump() {
	dump mbox000 k3 "$H3" mbox000 k7 "$H1" mbox002 k4 "$H4" mbox003 k6 "$H2"
}
base_oracle
base_dump
expect consistent 0 "acked 3, unacked-present 2, unacked-absent 1, records 4"

# same, but 3 and 6 absent too: still consistent
dump mbox000 k3 "$H3" mbox000 k7 "$H1" mbox001 k2 "$H2"
expect consistent-unacked-absent 0 "unacked-present 0, unacked-absent 3"

# an empty dump with an oracle holding no acknowledged transaction
printf 'begin 9 put:a:b:%s\n' "$H1" >"$T/oracle"
: >"$T/dump"
expect nothing-acked-empty-dump 0 "acked 0, unacked-present 0, unacked-absent 1, records 0"

# --- violations -----------------------------------------------------------
base_oracle
dump mbox000 k7 "$H1" mbox002 k4 "$H4" mbox003 k6 "$H2"
expect missing-acked 1 "seq 2 acknowledged but put mbox000:k3 is missing"

# acked delete not applied: k1 still there
base_oracle
dump mbox000 k1 "$H1" mbox000 k3 "$H3" mbox000 k7 "$H1" mbox002 k4 "$H4" mbox003 k6 "$H2"
expect acked-delete-not-applied 1 "seq 5 acknowledged but del mbox000:k1 did not happen"

# seq 1 half there (k1 lost although nothing deleted it before 5): here 5 is
# present so k1's absence is explained; instead lose k2 while 6 is absent
base_oracle
dump mbox000 k3 "$H3" mbox000 k7 "$H1"
expect half-applied-delete 1 "seq 6 half-applied"

base_oracle
cat >>"$T/oracle" <<EOF
begin 7 put:mbox004:a:$H1 put:mbox005:b:$H2
EOF
base_dump
printf 'mbox004\ta\t%s\n' "$H1" >>"$T/dump"
expect half-applied-puts 1 "seq 7 half-applied"

base_oracle
base_dump
printf 'mbox009\tzz\t%s\n' "$H1" >>"$T/dump"
expect extra-record 1 "record mbox009:zz in dump was never put"

base_oracle
dump mbox000 k3 "$H4" mbox000 k7 "$H1" mbox002 k4 "$H4" mbox003 k6 "$H2"
expect wrong-hash 1 "hash mismatch for mbox000:k3"

base_oracle
dump mbox000 k7 "$H1" mbox000 k3 "$H3" mbox002 k4 "$H4" mbox003 k6 "$H2"
expect dump-unsorted 1 "out of order"

base_oracle
dump mbox000 k3 "$H3" mbox000 k3 "$H3" mbox000 k7 "$H1" mbox002 k4 "$H4" mbox003 k6 "$H2"
expect dump-duplicate 1 "repeats"

# --- torn last line -------------------------------------------------------
# "ack 4" torn to "ack 4" of "ack 45": must not count as an ack of 4
base_oracle
printf 'ack 4' >>"$T/oracle"
base_dump
expect torn-ack 0 "torn last line ignored"

base_oracle
printf 'begin 8 put:mbox000:k8:%s' "${H1:0:20}" >>"$T/oracle"
base_dump
expect torn-begin 0 "unacked-absent 1"

# --- escapes in the dump --------------------------------------------------
printf 'begin 1 put:t:a\\b:%s\nack 1\n' "$H1" >"$T/oracle"
printf 't\ta\\x5cb\t%s\n' "$H1" >"$T/dump"
expect escaped-key 0 "records 1"

# --- malformed input ------------------------------------------------------
base_oracle
echo "bogus 3" >>"$T/oracle"
base_dump
expect malformed-keyword 2 "line 10"

base_oracle
echo "begin 11 put:mbox000:kx:nothex" >>"$T/oracle"
expect malformed-hash 2 "line 10"

base_oracle
echo "begin 1 put:mbox000:kx:$H1" >>"$T/oracle"
expect duplicate-seq 2 "seq 1 begun again"

base_oracle
echo "ack 99" >>"$T/oracle"
expect ack-without-begin 2 "ack 99 without an earlier begin"

base_oracle
echo "begin 12 put:mbox000:k3:$H1" >>"$T/oracle"
expect key-put-twice 2 "put again"

base_oracle
echo "begin 12 put:mbox000:k9:$H1 del:mbox002:k4" >>"$T/oracle"
expect delete-of-unacked 2 "before its put"

base_oracle
echo "begin 12 put:mbox000:k9:$H1 del:mbox000:k1" >>"$T/oracle"
expect deleted-twice 2 "deleted again"

base_oracle
printf 'begin 12\n' >>"$T/oracle"
expect begin-without-ops 2 "without operations"

base_oracle
printf 'mbox000 k3 %s\n' "$H3" >"$T/dump"
expect malformed-dump 2 "line 1"

rm -f "$T/dump"
expect missing-dump 2

# --- --acks-before: a shadow taken when the oracle had N bytes --------------
# txn 7 is acknowledged after the cut: absent is fine, partial is not;
# txn 1 was acknowledged before the cut and must still be present
base_oracle
base_dump
cut=$(stat -c %s "$T/oracle")
printf 'begin 7 put:mbox004:k8:%s put:mbox004:k9:%s\nack 7\n' "$H1" "$H2" >>"$T/oracle"
ACKS_BEFORE=$cut expect acks-before-later-ack-absent 0 "consistent"
expect later-ack-required-without-option 1 "seq 7 acknowledged but"
printf 'mbox004\tk8\t%s\n' "$H1" >>"$T/dump"
ACKS_BEFORE=$cut expect acks-before-later-ack-partial 1 "half-applied"
base_dump
grep -v "^mbox000${TAB}k3" "$T/dump" >"$T/dump2" && mv "$T/dump2" "$T/dump"
ACKS_BEFORE=$cut expect acks-before-early-ack-missing 1 "seq 2 acknowledged but"
ACKS_BEFORE=x expect acks-before-bad-value 2 "bad --acks-before"
# txn 7 (after the cut) puts k8 and k9, txn 8 deletes k8: a shadow with
# neither is consistent, one with both is too, k9 without k8's put is not
base_oracle
base_dump
cut=$(stat -c %s "$T/oracle")
printf 'begin 7 put:mbox004:k8:%s put:mbox004:k9:%s\nack 7\nbegin 8 del:mbox004:k8\nack 8\n' \
	"$H1" "$H2" >>"$T/oracle"
ACKS_BEFORE=$cut expect acks-before-put-then-del-neither 0 "consistent"
printf 'mbox004\tk9\t%s\n' "$H2" >>"$T/dump"
ACKS_BEFORE=$cut expect acks-before-put-then-del-both 0 "consistent"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# security_test.sh BINDIR - run by with_fs.sh on xfs (AMB_TEST_XFS), as root.
#
# Issue 3 / design.md section 8: the socket is not world-writable; a user
# outside the backup group cannot create, delete or expose shadows, nor
# register a writer claiming files it does not own; members of the backup
# group can.  Users are made with setpriv(1) (uid 65534 with chosen groups),
# so no account is added to the machine: amberd takes the peer's groups
# from the kernel (SO_PEERGROUPS), not from /etc/group.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=daemon_lib.sh
. "$here/daemon_lib.sh"

d_init "${1:?usage: security_test.sh BINDIR}"
command -v setpriv >/dev/null || fail "setpriv (util-linux) is needed"
MNT=${AMB_TEST_XFS:?}
VOL=$MNT/vol
mkdir -p "$VOL/rootdata" "$VOL/userdata"
chown 65534 "$VOL/userdata"
chmod 755 "$DW" "$(dirname "$MNT")" "$MNT" "$VOL"  # traversable for uid 65534
SOCK_GID=4242
BACKUP_GID=4243
d_start_amberd "socket_group = $SOCK_GID" "backup_group = $BACKUP_GID"

# socket: 0660, group SOCK_GID, never world-writable
perm=$(stat -c '%a %g' "$AMBER_SOCKET")
[ "$perm" = "660 $SOCK_GID" ] || fail "socket mode/group is '$perm', expected '660 $SOCK_GID'"
ok "socket is mode 0660, group $SOCK_GID"

as_outsider() { setpriv --reuid 65534 --regid 65534 --clear-groups "$@"; }
as_member() { setpriv --reuid 65534 --regid 65534 --groups "$SOCK_GID" "$@"; }
as_operator() { setpriv --reuid 65534 --regid 65534 --groups "$SOCK_GID,$BACKUP_GID" "$@"; }

out=$(as_outsider "$AMBER" list writers 2>&1)
rc=$?
[ $rc = 1 ] || fail "a user outside the socket group: exit $rc: $out"
grep -qi "permission denied" <<<"$out" || fail "outsider: no 'permission denied': $out"
ok "a user outside the socket group cannot connect"

# a socket-group member outside the backup group: listings yes, changes no
as_member "$AMBER" list writers >/dev/null || fail "a member cannot list writers"
as_member "$AMBER" list shadows >/dev/null || fail "a member cannot list shadows"
id=$("$AMBER" create shadow "$VOL" --persistent) || fail "root cannot create a shadow"
for cmd in "create shadow $VOL" "delete shadows --all" "delete shadows --shadow $id" \
	"expose $id $DW/exp" "unexpose $DW/exp"; do
	# shellcheck disable=SC2086
	out=$(as_member "$AMBER" $cmd 2>&1)
	rc=$?
	[ $rc = 1 ] || fail "non-operator '$cmd': exit $rc, expected 1: $out"
	grep -q "permission denied" <<<"$out" || fail "non-operator '$cmd': $out"
done
d_shadow_ids | has "$id" || fail "a refused delete deleted the shadow"
[ -e "$DW/exp" ] && fail "a refused expose created the mount point"
grep -q 'event 4003 ' "$DW/amberd.log" || fail "event 4003 (client denied) not logged"
ok "a user outside the backup group cannot create, delete or expose shadows (event 4003)"

# a backup operator can
mkdir -p "$DW/exp"
as_operator "$AMBER" expose "$id" "$DW/exp" || fail "an operator cannot expose"
as_operator "$AMBER" unexpose "$DW/exp" || fail "an operator cannot unexpose"
as_operator "$AMBER" delete shadows --shadow "$id" >/dev/null || fail "an operator cannot delete"
ok "a backup-group member can expose, unexpose and delete"

# writers: only files their uid owns
# (setpriv runs directly, not through the shell function, so that $! is
# the writer itself and the cleanup's SIGKILL reaches it)
setpriv --reuid 65534 --regid 65534 --groups "$SOCK_GID" "$TWRITER" --socket "$AMBER_SOCKET" \
	--name thief --dir "$VOL/rootdata" >"$DW/thief.out" 2>"$DW/thief.err" &
thief=$!
D_PIDS+=("$thief")
d_wait_for 20000 grep -q 'event 2009 ' "$DW/amberd.log" || fail "event 2009 (writer not owner) not logged"
"$AMBER" list writers | has "'thief'" && fail "a writer claiming root's files was registered"
setpriv --reuid 65534 --regid 65534 --groups "$SOCK_GID" "$TWRITER" --socket "$AMBER_SOCKET" \
	--name owner --dir "$VOL/userdata" >"$DW/owner.out" 2>"$DW/owner.err" &
D_PIDS+=("$!")
d_wait_writer owner 10 || fail "a writer declaring its own files was refused: $(cat "$DW/owner.err")"
ok "a writer may declare only files its uid owns (event 2009 otherwise)"

# a writer speaks only for its own files: of the files its freeze reply
# lists as unchanged (which reflink would then not look at again), amberd
# keeps those inside the writer's file sets and ignores the others
echo own >"$VOL/rootdata/own"
"$TWRITER" --socket "$AMBER_SOCKET" --name claim-writer --dir "$VOL/rootdata" \
	--unchanged "$VOL/rootdata/own" --unchanged "$VOL/userdata/other" >>"$DW/claim.log" 2>&1 &
D_PIDS+=($!)
d_wait_writer claim-writer 10 || fail "claim-writer did not register"
"$AMBER" create shadow "$VOL" --provider reflink >/dev/null 2>"$DW/claim.err" ||
	fail "create shadow with claim-writer: $(cat "$DW/claim.err")"
has "listed $VOL/userdata/other as unchanged: not in its file sets, ignored" <"$DW/amberd.log" ||
	fail "a claim outside the writer's file sets was not ignored: $(tail -5 "$DW/amberd.log")"
"$AMBER" events --json | has "claim-writer holds writes (1 of its files unchanged" ||
	fail "the writer's own unchanged file was not kept: $("$AMBER" events | grep claim-writer)"
ok "a writer's unchanged files outside its file sets are ignored (its own are kept)"

# an amberd run by an ordinary user (no root, no backup group) serves that
# user: what it does for it, the user could do without it
d_stop_amberd
mkdir -p "$DW/user" "$VOL/userdata/vol"
chown 65534 "$DW/user"
USOCK=$DW/user/amberd.sock
# the user cannot write at the filesystem's root: its shadows go to a
# directory of its own (an absolute shadow_dir), with the copy provider
printf '[amberd]\njournald = no\nbackup_group = %s\nshadow_dir = %s\n' "$BACKUP_GID" \
	"$DW/user/shadows" >"$DW/user/amberd.conf"
setpriv --reuid 65534 --regid 65534 --clear-groups "$AMBERD" --foreground \
	--config "$DW/user/amberd.conf" --socket "$USOCK" --state-dir "$DW/user/state" \
	>"$DW/user/amberd.log" 2>&1 &
upid=$!
D_PIDS+=("$upid")
# (the socket file exists from bind(), before listen(): wait until its user
# can talk to it, as d_start_amberd does)
user_amberd_up() { AMBER_SOCKET=$USOCK as_outsider "$AMBER" list providers >/dev/null 2>&1; }
d_wait_for 20000 user_amberd_up || fail "the user's amberd did not answer: $(tail -5 "$DW/user/amberd.log")"
echo data >"$VOL/userdata/vol/file"
chown -R 65534:65534 "$VOL/userdata/vol"
out=$(AMBER_SOCKET=$USOCK as_outsider "$AMBER" create shadow "$VOL/userdata/vol" \
	--provider copy --persistent 2>"$DW/user/create.err") ||
	fail "a user's own amberd refused it: $(cat "$DW/user/create.err")"
[ "$(cat "$DW/user/shadows/$out/file" 2>&1)" = data ] ||
	fail "the shadow is not in the configured shadow_dir: $(ls -R "$DW/user" 2>&1)"
AMBER_SOCKET=$USOCK as_outsider "$AMBER" list shadows | has "$out" ||
	fail "the shadow made through the user's own amberd is not listed"
AMBER_SOCKET=$USOCK as_outsider "$AMBER" delete shadows --all >/dev/null ||
	fail "a user's own amberd refused to delete its shadow"
# another ordinary user is refused by it (socket mode 0660: not even a connection)
out=$(AMBER_SOCKET=$USOCK setpriv --reuid 4244 --regid 4244 --clear-groups "$AMBER" \
	create shadow "$VOL/userdata/vol" 2>&1)
rc=$?
[ $rc = 1 ] || fail "another user through a user's amberd: exit $rc: $out"
grep -qi "permission denied" <<<"$out" || fail "another user: no 'permission denied': $out"
kill -TERM "$upid"
wait "$upid" 2>/dev/null
ok "an amberd run by an ordinary user serves that user, and only it"

echo "PASS"

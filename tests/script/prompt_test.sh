#!/usr/bin/env bash
# prompt_test.sh BINDIR
#
# amber script with no FILE on a terminal: the prompt.  script(1) gives it a
# pseudo-terminal.  Shown: commands run as typed; a bad command is an error
# that does not end the session; the up arrow recalls the last line
# (libedit history); exit leaves with status 0; standard input that is not
# a terminal is read as a script instead.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../daemon/daemon_lib.sh
. "$here/../daemon/daemon_lib.sh"

d_init "${1:?usage: prompt_test.sh BINDIR}"
command -v script >/dev/null || fail "script(1) from util-linux is needed"
d_start_amberd

{
	sleep 0.5
	printf 'list providers\n'
	sleep 0.3
	printf 'frobnicate\n'
	sleep 0.3
	printf 'end backup\n'
	sleep 0.3
	printf '\033[A\033[A\033[A\n' # three lines up: list providers again
	sleep 0.3
	printf 'exit\n'
} | timeout 20 script -qec "$AMBER script" /dev/null >"$DW/tty.out" 2>&1
rc=$?
tr -d '\r' <"$DW/tty.out" >"$DW/tty.txt"
[ $rc = 0 ] || fail "the prompt exited $rc: $(cat "$DW/tty.txt")"
has "AMBER> " <"$DW/tty.txt" || fail "no prompt: $(cat "$DW/tty.txt")"
has "unknown command 'frobnicate'" <"$DW/tty.txt" || fail "no error for a bad command"
has "end backup without begin backup" <"$DW/tty.txt" || fail "no error for end backup"
n=$(grep -c "Provider name: 'btrfs'" "$DW/tty.txt")
[ "$n" = 2 ] || fail "list providers ran $n times, not twice (history): $(cat "$DW/tty.txt")"
ok "the prompt runs commands, survives bad ones, recalls history, exits 0"

# libedit is loaded only when the prompt starts (script.c editor_open).
# Hidden (bind-mounted over with an empty file, in a mount namespace of
# this test's own), the prompt still runs commands, without history.
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
	ledit=$(readlink -f /lib/x86_64-linux-gnu/libedit.so.2 2>/dev/null || true)
	[ -f "$ledit" ] || fail "libedit.so.2 not found; the prompt test above should have failed"
	: >"$DW/empty.so"
	{
		sleep 0.5
		printf 'list providers\n'
		sleep 0.3
		printf 'exit\n'
	} | timeout 20 unshare -m sh -c "mount --bind '$DW/empty.so' '$ledit' &&
		script -qec '$AMBER script' /dev/null" >"$DW/tty2.out" 2>&1
	rc=$?
	tr -d '\r' <"$DW/tty2.out" >"$DW/tty2.txt"
	[ $rc = 0 ] || fail "the prompt without libedit exited $rc: $(cat "$DW/tty2.txt")"
	has "libedit.so.2 could not be loaded" <"$DW/tty2.txt" || fail "no note that libedit is missing: $(cat "$DW/tty2.txt")"
	has "Provider name: 'btrfs'" <"$DW/tty2.txt" || fail "the prompt without libedit ran nothing: $(cat "$DW/tty2.txt")"
	ok "without libedit the prompt runs commands (no line editing)"
	# and amber's other commands do not load it
	if ldd "$AMBER" | grep -q libedit; then fail "amber is linked against libedit"; fi
	ok "amber is not linked against libedit (loaded by the prompt only)"
elif [ "${CI:-}" = true ]; then
	fail "the libedit-less prompt check needs root and unshare"
fi

printf 'list providers\n' | "$AMBER" script >"$DW/pipe.out" 2>&1 || fail "script from a pipe: $(cat "$DW/pipe.out")"
has -- "-> list providers" <"$DW/pipe.out" || fail "a pipe was not read as a script: $(cat "$DW/pipe.out")"
ok "standard input that is not a terminal is read as a script"
echo PASS

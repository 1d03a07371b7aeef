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

printf 'list providers\n' | "$AMBER" script >"$DW/pipe.out" 2>&1 || fail "script from a pipe: $(cat "$DW/pipe.out")"
has -- "-> list providers" <"$DW/pipe.out" || fail "a pipe was not read as a script: $(cat "$DW/pipe.out")"
ok "standard input that is not a terminal is read as a script"
echo PASS

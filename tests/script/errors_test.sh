#!/usr/bin/env bash
# errors_test.sh BINDIR
#
# amber script's and amber backup --metadata's error paths that need no
# loop filesystem: each gives a clear message and the documented exit
# status, and leaves nothing behind (amberd lists no shadow, no session).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../daemon/daemon_lib.sh
. "$here/../daemon/daemon_lib.sh"

d_init "${1:?usage: errors_test.sh BINDIR}"
d_start_amberd

# expect STATUS PHRASE CMD...: CMD exits STATUS and says PHRASE on stderr
expect() {
	local want=$1 phrase=$2 rc
	shift 2
	"$@" >"$DW/e.out" 2>"$DW/e.err"
	rc=$?
	[ "$rc" = "$want" ] || fail "$*: exit $rc, not $want: $(cat "$DW/e.err")"
	has -- "$phrase" <"$DW/e.err" || fail "$*: no '$phrase' in: $(cat "$DW/e.err")"
}
script_text() { # script_text TEXT STATUS PHRASE
	printf '%s\n' "$1" >"$DW/s.dsh"
	expect "$2" "$3" "$AMBER" script "$DW/s.dsh"
}

expect 2 "No such file" "$AMBER" script "$DW/missing.dsh"
printf 'list providers\n' >"$DW/ok.dsh"
expect 2 "-l $DW/no/such/dir/log" "$AMBER" script "$DW/ok.dsh" -l "$DW/no/such/dir/log"
AMBER_SOCKET=$DW/nobody.sock expect 3 "cannot reach amberd" "$AMBER" script "$DW/ok.dsh"
ok "a missing script, an unwritable -l LOG: exit 2; amberd unreachable: exit 3"

printf 'not json' >"$DW/bad.json"
script_text "load metadata $DW/bad.json" 2 "s.dsh:1: load metadata $DW/bad.json"
printf '{"format": "something-else", "version": 1}' >"$DW/other.json"
script_text "load metadata $DW/other.json" 2 "not an amber script metadata document"
printf '{"format": "amber-script-metadata", "version": 1, "writer_list": {"kind": "ok", "id": 1}}' >"$DW/badwl.json"
script_text "load metadata $DW/badwl.json" 2 "s.dsh:1: load metadata $DW/badwl.json: \"writer_list\""
script_text "list providers
writer verify no-such-writer" 2 "s.dsh:2: writer no-such-writer is not registered"
has -- "-> list providers" <"$DW/e.out" || fail "the line before the failing one did not run"
script_text "add volume $DW/no/such/volume
create" 2 "s.dsh:1: $DW/no/such/volume"
script_text "begin backup
add volume $DW alias v
create
exec true
end backup
bogus" 2 "s.dsh:6: unknown command 'bogus'"
has -- "->" <"$DW/e.out" && fail "a malformed script ran lines: $(cat "$DW/e.out")"
[ -z "$(d_shadow_ids)" ] || fail "shadows left: $(d_shadow_ids)"
ok "bad metadata documents, an unregistered writer, a missing volume: exit 2 at their line; a malformed line: nothing run"

REPO=$DW/repo
expect 2 "--metadata $DW/bad.json" "$AMBER" backup full --repo "$REPO" --metadata "$DW/bad.json"
expect 2 "not an amber script metadata document" \
	"$AMBER" backup full --repo "$REPO" --metadata "$DW/other.json"
printf '{"format": "amber-script-metadata", "version": 1, "backup_type": "copy"}' >"$DW/copy.json"
expect 2 "is for a copy backup" "$AMBER" backup full --repo "$REPO" --metadata "$DW/copy.json"
printf '{"format": "amber-script-metadata", "version": 1, "backup_type": "full"}' >"$DW/nowl.json"
expect 2 '"writer_list"' "$AMBER" backup full --repo "$REPO" --metadata "$DW/nowl.json"
printf '{"format": "amber-script-metadata", "version": 1, "backup_type": "full", "writer_list": {"kind": "ok", "id": 1}}' >"$DW/wrongkind.json"
expect 2 "not a writer-list" "$AMBER" backup full --repo "$REPO" --metadata "$DW/wrongkind.json"
[ -z "$(ls "$REPO/backups" 2>/dev/null)" ] || fail "a refused backup left a folder: $(ls "$REPO/backups")"
ok "amber backup --metadata: unreadable, foreign, wrong type, missing or wrong messages: exit 2, no backup folder"
echo PASS

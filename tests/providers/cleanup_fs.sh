#!/usr/bin/env bash
# cleanup_fs.sh ROOT - the CTest cleanup fixture of the provider tests: takes
# down whatever a test killed by a timeout left under ROOT (thaw, unmount,
# detach loop devices, remove).  Nothing to do is success.  AMBER_TEST_FSROOT
# replaces ROOT, as in with_fs.sh.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=fs_lib.sh
. "$here/fs_lib.sh"

root=${AMBER_TEST_FSROOT:-${1:?usage: cleanup_fs.sh ROOT}}
[ "$(id -u)" = 0 ] || exit 0
[ -d "$root" ] || exit 0
bad=0
for d in "$root"/run.*; do
	[ -d "$d" ] || continue
	echo "cleanup: leftover $d"
	fs_clean_dir "$d" || bad=1
done
exit $bad

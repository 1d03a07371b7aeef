#!/usr/bin/env bash
# with_fs.sh ROOT "TYPE..." COMMAND [ARG...]
#
# Runs COMMAND with fresh filesystems of the given types (btrfs, xfs,
# tmpfs) mounted under ROOT/run.XXXXXX, their mount points in
# AMB_TEST_BTRFS, AMB_TEST_XFS, AMB_TEST_TMPFS.  Everything is unmounted and
# detached afterwards, also when COMMAND fails or the script is interrupted.
# AMBER_TEST_FSROOT, when set, replaces ROOT (the sparse images are only
# partly written, but mkfs needs some real space there; /dev/shm works).
# Exit: COMMAND's status; 77 skipped (not root; a failure when CI=true);
# 1 setup or cleanup failed; 2 usage.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=fs_lib.sh
. "$here/fs_lib.sh"

if [ $# -lt 3 ]; then
	echo "usage: with_fs.sh ROOT \"TYPE...\" COMMAND [ARG...]" >&2
	exit 2
fi
root=${AMBER_TEST_FSROOT:-$1}
types=$2
shift 2

fs_need_root
fs_begin "$root"
for t in $types; do
	fs_mount "$t"
	case $t in
	btrfs) export AMB_TEST_BTRFS=$FS_MNT ;;
	xfs) export AMB_TEST_XFS=$FS_MNT ;;
	tmpfs) export AMB_TEST_TMPFS=$FS_MNT ;;
	esac
done
"$@"

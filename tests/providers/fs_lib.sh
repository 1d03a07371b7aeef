# shellcheck shell=bash
# fs_lib.sh - sourced by the provider test scripts: loop filesystems that
# are always taken down again (thawed, unmounted, loop devices detached),
# whatever way the script ends.
#
#   fs_need_root           exit 77 (skip) unless root; a failure when CI=true
#   fs_begin ROOT          a fresh work directory ROOT/run.XXXXXX; installs the
#                          EXIT trap that cleans it up
#   fs_mount TYPE          btrfs (300 MiB), xfs (320 MiB: mkfs.xfs wants 300),
#                          or $FS_SIZE when set (sparse: only what is written
#                          takes space; with FS_PREALLOC=1 the image is
#                          written with zeros first, so that no write of the
#                          filesystem on top allocates blocks of the image:
#                          the closer model of a disk, for the benchmarks)
#                          on a sparse file and a loop device, or tmpfs;
#                          mount point in $FS_MNT
#   fs_clean_dir DIR       what the trap does for one work directory (also
#                          used by cleanup_fs.sh for runs killed by timeout)

FS_WORK=""
FS_MNT=""

fs_skip() {
	if [ "${CI:-}" = true ]; then
		echo "FAIL: $* (a skipped test is a failure when CI=true)"
		exit 1
	fi
	echo "SKIP: $*"
	exit 77
}

fs_need_root() {
	[ "$(id -u)" = 0 ] || fs_skip "needs root for loop filesystems"
}

# unmount everything at or below DIR, deepest first, thawing first (a
# frozen filesystem cannot be unmounted cleanly)
fs_umount_under() {
	local dir=$1 m bad=0
	while read -r m; do
		fsfreeze -u "$m" 2>/dev/null
		if ! umount "$m" 2>/dev/null; then
			sleep 0.2
			umount "$m" 2>/dev/null || umount -l "$m" || bad=1
		fi
	done < <(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' \
			/proc/self/mounts | sort -r)
	return $bad
}

fs_clean_dir() {
	local dir=$1 img l bad=0
	[ -d "$dir" ] || return 0
	fs_umount_under "$dir" || bad=1
	for img in "$dir"/*.img; do
		[ -e "$img" ] || continue
		for l in $(losetup -n -O NAME -j "$img" 2>/dev/null); do
			losetup -d "$l" || bad=1
		done
	done
	if [ $bad = 0 ]; then
		rm -rf --one-file-system "$dir"
	else
		echo "cleanup: could not take down everything under $dir" >&2
	fi
	return $bad
}

# FS_PIDS: processes the caller started on the filesystems; the trap ends
# them first (SIGCONT for a stopped one, then SIGKILL) so nothing holds a
# mount when it is taken down.
FS_PIDS=()
fs_cleanup_trap() {
	local rc=$? p
	for p in "${FS_PIDS[@]}"; do
		kill -CONT "$p" 2>/dev/null || true
		kill -KILL "$p" 2>/dev/null || true
	done
	for p in "${FS_PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [ -n "$FS_WORK" ]; then
		if ! fs_clean_dir "$FS_WORK"; then
			[ "$rc" = 0 ] && rc=1
		fi
	fi
	exit "$rc"
}

fs_begin() {
	mkdir -p "$1" || exit 1
	FS_WORK=$(mktemp -d "$1/run.XXXXXX") || exit 1
	trap fs_cleanup_trap EXIT
	trap 'exit 130' INT TERM HUP
}

fs_mount() {
	local type=$1 dir="$FS_WORK/$1" img="$FS_WORK/$1.img" size loop
	mkdir -p "$dir"
	case $type in
	tmpfs)
		mount -t tmpfs -o size=256m,mode=0755 amber-test "$dir" ||
			{ echo "FAIL: mount tmpfs"; exit 1; }
		;;
	btrfs | xfs)
		command -v "mkfs.$type" >/dev/null || fs_skip "mkfs.$type not installed"
		grep -qw "$type" /proc/filesystems || modprobe "$type" 2>/dev/null
		grep -qw "$type" /proc/filesystems || fs_skip "the kernel has no $type"
		size=${FS_SIZE:-300M}
		[ "$type" = xfs ] && [ -z "${FS_SIZE:-}" ] && size=320M
		truncate -s "$size" "$img" || exit 1
		if [ "${FS_PREALLOC:-}" = 1 ]; then
			dd if=/dev/zero of="$img" bs=16M count=$(($(stat -c %s "$img") / 16777216)) \
				oflag=direct conv=notrunc status=none || { echo "FAIL: writing $img"; exit 1; }
		fi
		"mkfs.$type" -q -f "$img" >/dev/null || { echo "FAIL: mkfs.$type"; exit 1; }
		# FS_LOOP_OPTS: extra losetup options (bench/hold_bench.sh --loop-direct-io)
		# shellcheck disable=SC2086
		loop=$(losetup -f --show ${FS_LOOP_OPTS:-} "$img") ||
			{ echo "FAIL: no free loop device"; exit 1; }
		mount "$loop" "$dir" || { echo "FAIL: mount $type"; exit 1; }
		;;
	*)
		echo "fs_mount: unknown type $type" >&2
		exit 2
		;;
	esac
	# shellcheck disable=SC2034 # read by the scripts that source this file
	FS_MNT=$dir
}

/*
 * btrfs.c - the btrfs provider: a read-only snapshot of a subvolume.
 *
 * The snapshot ioctl first writes back the subvolume's dirty data, then
 * commits a btrfs transaction that holds the new snapshot: the shadow is
 * one instant of the whole subvolume, and durable when commit returns.
 * Nested subvolumes are not part of a snapshot (they appear as empty
 * directories).  It must not run on a frozen filesystem (the ioctl needs
 * write access), so needs_fsfreeze is false.
 */
#include <btrfsutil.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "common/vfs.h"
#include "providers/provider_internal.h"

/* libbtrfsutil reports its own code and leaves errno from the failing
 * call; turn both into -errno and a message */
static int bu_err(enum btrfs_util_error e, const char *what, const char *path)
{
	int rc = errno ? -errno : -EIO;
	if (e == BTRFS_UTIL_ERROR_NO_MEMORY)
		rc = -ENOMEM;
	return amb_prov_err(rc, "btrfs: %s %s: %s (%s)", what, path, btrfs_util_strerror(e),
			    strerror(-rc));
}

static int bt_supports(const char *volume)
{
	int fd = open(volume, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return amb_prov_err(-errno, "btrfs: %s: %s", volume, strerror(errno));
	int rc = amb_prov_is_btrfs(fd);
	if (rc < 0) {
		amb_prov_err(rc, "btrfs: %s: statfs: %s", volume, strerror(-rc));
		goto out_close_fd;
	}
	if (rc == 0) {
		rc = amb_prov_err(-EOPNOTSUPP, "btrfs: %s is not on a btrfs filesystem", volume);
		goto out_close_fd;
	}
	errno = 0;
	enum btrfs_util_error e = btrfs_util_is_subvolume_fd(fd);
	if (e == BTRFS_UTIL_ERROR_NOT_SUBVOLUME)
		rc = amb_prov_err(-EOPNOTSUPP, "btrfs: %s is not a btrfs subvolume", volume);
	else if (e != BTRFS_UTIL_OK)
		rc = bu_err(e, "cannot examine", volume);
	else
		rc = 0;
out_close_fd:
	close(fd);
	return rc;
}

static int bt_check_shadow(const char *volume, const char *shadow, const char *parent)
{
	return amb_prov_check_beside("btrfs", volume, shadow, parent, 0,
	                             "a snapshot stays on its filesystem");
}

static int bt_commit(const char *volume, const char *shadow)
{
	errno = 0;
	enum btrfs_util_error e = btrfs_util_create_snapshot(
		volume, shadow, BTRFS_UTIL_CREATE_SNAPSHOT_READ_ONLY, NULL, NULL);
	if (e != BTRFS_UTIL_OK)
		return bu_err(e, "cannot snapshot", volume);
	return 0;
}

static int bt_remove(const char *shadow)
{
	errno = 0;
	enum btrfs_util_error e = btrfs_util_is_subvolume(shadow);
	if (e == BTRFS_UTIL_ERROR_NOT_SUBVOLUME || e == BTRFS_UTIL_ERROR_NOT_BTRFS)
		return amb_prov_err(-EINVAL,
				    "btrfs: %s is not a btrfs snapshot: not deleted", shadow);
	if (e != BTRFS_UTIL_OK)
		return bu_err(e, "cannot examine", shadow);
	errno = 0;
	e = btrfs_util_delete_subvolume(shadow, 0);
	if (e != BTRFS_UTIL_OK)
		return bu_err(e, "cannot delete", shadow);
	/* the deletion is only in the running transaction: commit it, so the
	 * snapshot cannot come back after a crash once its record is gone */
	char parent[PATH_MAX];
	amb_path_dir(shadow, parent, sizeof(parent));
	errno = 0;
	e = btrfs_util_sync(*parent ? parent : "/");
	if (e != BTRFS_UTIL_OK)
		return bu_err(e, "cannot commit the deletion of", shadow);
	return 0;
}

static const struct amb_provider_ops btrfs_ops = {
	.supports = bt_supports,
	.check_shadow = bt_check_shadow,
	.prepare = NULL,
	.commit = bt_commit,
	.remove = bt_remove,
};

const amb_provider amb_provider_btrfs = {
	.name = "btrfs",
	.description = "read-only btrfs snapshot of a subvolume (atomic, no data copied)",
	.needs_fsfreeze = false,
	.can_fsfreeze = false,
	.holds_writes_during_copy = false,
	.persistent_capable = true,
	.atomic = true,
	.shadow_same_fs = true,
	.read_only_shadow = true,
	.ops = &btrfs_ops,
};

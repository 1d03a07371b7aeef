/*
 * tree_providers.c - the reflink and copy providers: a directory tree
 * cloned (FICLONE) or copied file by file into a shadow directory (the walk
 * is in tree.c).
 *
 * Each file is captured on its own: a file no writer holds may change
 * between the capture of two files, so only writers that are frozen are
 * consistent across files (docs/providers.md).  The reflink shadow shares
 * its data blocks with the volume (copy on write); the copy shadow is
 * independent of it and may live on another filesystem.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/vfs.h"
#include "providers/provider_internal.h"

/* the shadow's parent must not be the volume itself: the shadow would
 * become part of the tree it copies (a directory below it is fine: it is
 * left out of the copy) */
static int check_parent(const char *prov, const char *volume, const char *parent)
{
	struct stat v, p;
	if (stat(volume, &v) != 0)
		return amb_prov_err(-errno, "%s: %s: %s", prov, volume, strerror(errno));
	if (stat(parent, &p) != 0)
		return amb_prov_err(-errno, "%s: %s: %s", prov, parent, strerror(errno));
	if (v.st_dev == p.st_dev && v.st_ino == p.st_ino)
		return amb_prov_err(-EINVAL,
				    "%s: the shadow cannot be directly in the volume %s; "
				    "use a directory for shadows (it is left out of the copy)",
				    prov, volume);
	return 0;
}

/* the empty shadow directory, durably (outside the hold) */
static int make_root(const char *prov, const char *shadow)
{
	if (mkdir(shadow, 0700) != 0)
		return amb_prov_err(-errno, "%s: %s: mkdir: %s", prov, shadow, strerror(errno));
	char parent[PATH_MAX];
	amb_path_dir(shadow, parent, sizeof(parent));
	int rc = amb_vfs_posix()->sync_dir(amb_vfs_posix(), parent);
	if (rc) {
		rmdir(shadow);
		return amb_prov_err(rc, "%s: %s: fsync: %s", prov, parent, strerror(-rc));
	}
	return 0;
}

/* ---- reflink ---- */

static int rl_supports(const char *volume)
{
	int rc;
	int a = open(volume, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (a < 0) {
		rc = -errno;
		if (rc == -EOPNOTSUPP || rc == -EISDIR)
			return amb_prov_err(-EOPNOTSUPP,
					    "reflink: %s: cannot probe for FICLONE "
					    "(no O_TMPFILE on this filesystem)",
					    volume);
		return amb_prov_err(rc, "reflink: %s: cannot probe for FICLONE: %s", volume,
				    strerror(-rc));
	}
	int b = open(volume, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (b < 0) {
		rc = amb_prov_err(-errno, "reflink: %s: cannot probe for FICLONE: %s", volume,
				  strerror(errno));
		goto out_close_a;
	}
	if (write(a, "x", 1) != 1) {
		rc = amb_prov_err(-errno, "reflink: %s: cannot probe for FICLONE: %s", volume,
				  strerror(errno));
		goto out_close_b;
	}
	rc = 0;
	if (ioctl(b, FICLONE, a) != 0) {
		int e = errno;
		if (e == EOPNOTSUPP || e == EXDEV || e == EINVAL || e == ENOTTY)
			rc = amb_prov_err(-EOPNOTSUPP,
					  "reflink: %s: the filesystem cannot clone files "
					  "(FICLONE: %s)",
					  volume, strerror(e));
		else
			rc = amb_prov_err(-e, "reflink: %s: FICLONE probe failed: %s", volume,
					  strerror(e));
	}
out_close_b:
	close(b);
out_close_a:
	close(a);
	return rc;
}

static int rl_check_shadow(const char *volume, const char *shadow, const char *parent)
{
	int rc = check_parent("reflink", volume, parent);
	if (rc)
		return rc;
	return amb_prov_check_beside("reflink", volume, shadow, parent, 1,
	                             "FICLONE works only within one mount");
}

static int rl_prepare(const char *volume, const char *shadow)
{
	(void)volume;
	return make_root("reflink", shadow);
}

/* the clone before the freeze, then brought up to date with what changed
 * while it was made (a large fragmented file takes a while to clone), and
 * again for the files that keep changing (amb_tree_refresh_converge);
 * commit brings it up to date once more in the hold */
static int rl_precommit(const char *volume, const char *shadow)
{
	int rc = amb_tree_copy("reflink", volume, shadow, true);
	return rc ? rc : amb_tree_refresh_converge("reflink", volume, shadow, NULL);
}

static int rl_commit(const char *volume, const char *shadow)
{
	return amb_tree_refresh("reflink", volume, shadow, NULL);
}

/* the files the writers left unchanged since prepare-snapshot are the
 * same as their clones, which precommit made after it */
static int rl_commit_unchanged(const char *volume, const char *shadow, const char *const *rel,
                               size_t n)
{
	return amb_tree_refresh_unchanged("reflink", volume, shadow, NULL, rel, n);
}

static int rl_sync(const char *shadow)
{
	return amb_tree_sync("reflink", shadow);
}

static int rl_remove(const char *shadow)
{
	return amb_tree_remove("reflink", shadow);
}

static const struct amb_provider_ops reflink_ops = {
	.supports = rl_supports,
	.check_shadow = rl_check_shadow,
	.prepare = rl_prepare,
	.precommit = rl_precommit,
	.commit = rl_commit,
	.commit_unchanged = rl_commit_unchanged,
	.sync = rl_sync,
	.remove = rl_remove,
};

const amb_provider amb_provider_reflink = {
	.name = "reflink",
	.description = "directory tree cloned file by file with FICLONE (xfs, btrfs; "
		       "no data copied)",
	.needs_fsfreeze = false,
	.can_fsfreeze = false,
	.holds_writes_during_copy = false,
	.persistent_capable = true,
	.atomic = false,
	.shadow_same_fs = true,
	.read_only_shadow = false,
	.ops = &reflink_ops,
};

/* ---- copy ---- */

static int cp_supports(const char *volume)
{
	(void)volume; /* any directory (checked by the caller) */
	return 0;
}

static int cp_check_shadow(const char *volume, const char *shadow, const char *parent)
{
	(void)shadow;
	return check_parent("copy", volume, parent);
}

static int cp_prepare(const char *volume, const char *shadow)
{
	(void)volume;
	return make_root("copy", shadow);
}

static int cp_commit(const char *volume, const char *shadow)
{
	return amb_tree_copy("copy", volume, shadow, false);
}

static int cp_sync(const char *shadow)
{
	return amb_tree_sync("copy", shadow);
}

static int cp_remove(const char *shadow)
{
	return amb_tree_remove("copy", shadow);
}

static const struct amb_provider_ops copy_ops = {
	.supports = cp_supports,
	.check_shadow = cp_check_shadow,
	.prepare = cp_prepare,
	.commit = cp_commit,
	.sync = cp_sync,
	.remove = cp_remove,
};

const amb_provider amb_provider_copy = {
	.name = "copy",
	.description = "plain copy of a directory tree (any filesystem); holds writes for "
		       "as long as the copy takes",
	.needs_fsfreeze = false,
	.can_fsfreeze = true,
	.holds_writes_during_copy = true,
	.persistent_capable = true,
	.atomic = false,
	.shadow_same_fs = false,
	.read_only_shadow = false,
	.ops = &copy_ops,
};

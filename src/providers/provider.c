/*
 * provider.c - the provider registry, automatic choice, the checks common to
 * all providers and the sidecar (format: provider.h).
 */
#include "providers/provider_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "common/durable.h"
#include "common/vfs.h"

#define SIDECAR_SUFFIX ".amber-shadow"
#define SIDECAR_MAX 8192

static _Thread_local char errbuf[1024] = "no error";

int amb_prov_err(int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	return rc;
}

const char *amb_provider_errmsg(void)
{
	return errbuf;
}

static const amb_provider *const providers[] = {
	&amb_provider_btrfs,
	&amb_provider_reflink,
	&amb_provider_copy,
};

size_t amb_provider_count(void)
{
	return sizeof(providers) / sizeof(providers[0]);
}

const amb_provider *amb_provider_at(size_t i)
{
	return i < amb_provider_count() ? providers[i] : NULL;
}

const amb_provider *amb_provider_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < amb_provider_count(); i++)
		if (strcmp(providers[i]->name, name) == 0)
			return providers[i];
	return NULL;
}

/* ---- filesystem identity ---- */

int amb_prov_is_btrfs(int fd)
{
	struct statfs sf;
	if (fstatfs(fd, &sf) != 0)
		return -errno;
	return sf.f_type == BTRFS_SUPER_MAGIC;
}

int amb_prov_same_fs(int fd_a, int fd_b)
{
	struct statfs sa, sb;
	if (fstatfs(fd_a, &sa) != 0 || fstatfs(fd_b, &sb) != 0)
		return -errno;
	if (sa.f_type != sb.f_type)
		return 0;
	if (sa.f_type == BTRFS_SUPER_MAGIC) {
		struct btrfs_ioctl_fs_info_args ia, ib;
		memset(&ia, 0, sizeof(ia));
		memset(&ib, 0, sizeof(ib));
		if (ioctl(fd_a, BTRFS_IOC_FS_INFO, &ia) != 0 ||
		    ioctl(fd_b, BTRFS_IOC_FS_INFO, &ib) != 0)
			return -errno;
		return memcmp(ia.fsid, ib.fsid, sizeof(ia.fsid)) == 0;
	}
	struct stat a, b;
	if (fstat(fd_a, &a) != 0 || fstat(fd_b, &b) != 0)
		return -errno;
	return a.st_dev == b.st_dev;
}

int amb_prov_same_mount(int fd_a, int fd_b)
{
	struct statx a, b;
	if (statx(fd_a, "", AT_EMPTY_PATH, STATX_MNT_ID, &a) != 0 ||
	    statx(fd_b, "", AT_EMPTY_PATH, STATX_MNT_ID, &b) != 0)
		return -errno;
	if (!(a.stx_mask & STATX_MNT_ID) || !(b.stx_mask & STATX_MNT_ID))
		return -EOPNOTSUPP;
	return a.stx_mnt_id == b.stx_mnt_id;
}

/* ---- argument checks ---- */

/* An absolute path without newline, copied to buf without trailing
 * slashes ("/" stays "/"). */
static int norm_path(const char *what, const char *path, char *buf, size_t bufsize)
{
	if (!path || !*path)
		return amb_prov_err(-EINVAL, "%s path missing", what);
	if (path[0] != '/')
		return amb_prov_err(-EINVAL, "%s: %s path must be absolute", path, what);
	if (strchr(path, '\n'))
		return amb_prov_err(-EINVAL, "%s path contains a newline", what);
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n + sizeof(SIDECAR_SUFFIX) > bufsize)
		return amb_prov_err(-ENAMETOOLONG, "%s: %s path too long", path, what);
	memcpy(buf, path, n);
	buf[n] = '\0';
	return 0;
}

/* volume: absolute, an existing directory */
static int check_volume(const char *prov, const char *volume, char *buf, size_t bufsize)
{
	int rc = norm_path("volume", volume, buf, bufsize);
	if (rc)
		return rc;
	struct stat st;
	if (stat(buf, &st) != 0) {
		rc = -errno;
		if (rc == -ENOENT)
			return amb_prov_err(rc, "%s: %s: no such volume", prov, buf);
		return amb_prov_err(rc, "%s: %s: %s", prov, buf, strerror(-rc));
	}
	if (!S_ISDIR(st.st_mode))
		return amb_prov_err(-ENOTDIR, "%s: %s is not a directory", prov, buf);
	return 0;
}

static void sidecar_path(const char *shadow, char *buf, size_t bufsize)
{
	snprintf(buf, bufsize, "%s%s", shadow, SIDECAR_SUFFIX);
}

static void parent_of(const char *path, char *buf, size_t bufsize)
{
	amb_path_dir(path, buf, bufsize);
	if (!*buf)
		snprintf(buf, bufsize, "/");
}

/* ---- public wrappers ---- */

int amb_provider_supports(const amb_provider *p, const char *volume)
{
	char vol[PATH_MAX];
	if (!p)
		return amb_prov_err(-EINVAL, "no provider given");
	int rc = check_volume(p->name, volume, vol, sizeof(vol));
	if (rc)
		return rc;
	return p->ops->supports(vol);
}

int amb_provider_choose(const char *volume, const char *name, const amb_provider **out)
{
	char vol[PATH_MAX];
	if (!out)
		return amb_prov_err(-EINVAL, "no result pointer given");
	*out = NULL;
	if (name) {
		const amb_provider *p = amb_provider_find(name);
		if (!p)
			return amb_prov_err(-EINVAL,
					    "unknown provider %s (known: btrfs, reflink, copy)",
					    name);
		int rc = amb_provider_supports(p, volume);
		if (rc)
			return rc;
		*out = p;
		return 0;
	}
	int rc = check_volume("provider", volume, vol, sizeof(vol));
	if (rc)
		return rc;
	/* the last one (copy) serves any directory; a probe that fails for
	 * another reason (a read-only volume cannot take a reflink probe)
	 * only means the next provider is tried */
	for (size_t i = 0; i < amb_provider_count(); i++) {
		rc = providers[i]->ops->supports(vol);
		if (rc == 0) {
			*out = providers[i];
			return 0;
		}
	}
	return rc;
}

/* prepare, the sidecar left unsettled when the provider allows it
 * (*unsettled then true; NULL: never) */
static int prepare(const amb_provider *p, const char *volume, const char *shadow,
                   bool *unsettled)
{
	char vol[PATH_MAX], sh[PATH_MAX], parent[PATH_MAX], side[PATH_MAX + 32];
	struct stat st;
	if (!p)
		return amb_prov_err(-EINVAL, "no provider given");
	int rc = check_volume(p->name, volume, vol, sizeof(vol));
	if (rc)
		return rc;
	rc = norm_path("shadow", shadow, sh, sizeof(sh));
	if (rc)
		return rc;
	if (strcmp(sh, "/") == 0)
		return amb_prov_err(-EINVAL, "%s: shadow cannot be /", p->name);
	if (lstat(sh, &st) == 0)
		return amb_prov_err(-EEXIST, "%s: shadow %s already exists", p->name, sh);
	if (errno != ENOENT)
		return amb_prov_err(-errno, "%s: %s: %s", p->name, sh, strerror(errno));
	sidecar_path(sh, side, sizeof(side));
	if (lstat(side, &st) == 0)
		return amb_prov_err(-EEXIST, "%s: %s already exists (an older shadow's record)",
				    p->name, side);
	parent_of(sh, parent, sizeof(parent));
	if (stat(parent, &st) != 0) {
		rc = -errno;
		return amb_prov_err(rc, "%s: shadow directory %s: %s", p->name, parent,
				    strerror(-rc));
	}
	if (!S_ISDIR(st.st_mode))
		return amb_prov_err(-ENOTDIR, "%s: %s is not a directory", p->name, parent);

	rc = p->ops->supports(vol);
	if (rc)
		return rc;
	rc = p->ops->check_shadow(vol, sh, parent);
	if (rc)
		return rc;

	char doc[PATH_MAX + 128];
	int len = snprintf(doc, sizeof(doc),
			   "amber-shadow 1\nprovider %s\nvolume %s\nstate prepared\n", p->name,
			   vol);
	/* unsettled only where nothing of the shadow exists before the
	 * commit and a syncfs of the volume reaches the sidecar: a crash
	 * before it is settled leaves at most a damaged sidecar with no
	 * shadow, which amb_provider_remove() deletes */
	bool defer = unsettled && p->shadow_same_fs && !p->ops->prepare && !p->ops->precommit;
	rc = defer ? amb_durable_write_unsettled(amb_vfs_posix(), side, doc, (size_t)len)
	           : amb_durable_write(amb_vfs_posix(), side, doc, (size_t)len);
	if (rc)
		return amb_prov_err(rc, "%s: %s: cannot write: %s", p->name, side, strerror(-rc));
	if (unsettled)
		*unsettled = defer;
	if (p->ops->prepare) {
		rc = p->ops->prepare(vol, sh);
		if (rc) {
			/* keep the message of the failure, not of the cleanup */
			char keep[sizeof(errbuf)];
			snprintf(keep, sizeof(keep), "%s", errbuf);
			amb_durable_unlink(amb_vfs_posix(), side);
			amb_prov_err(rc, "%s", keep);
		}
	}
	return rc;
}

int amb_provider_prepare(const amb_provider *p, const char *volume, const char *shadow)
{
	return prepare(p, volume, shadow, NULL);
}

int amb_provider_prepare_unsettled(const amb_provider *p, const char *volume, const char *shadow,
                                   bool *unsettled)
{
	if (!unsettled)
		return amb_prov_err(-EINVAL, "no result pointer given");
	*unsettled = false;
	return prepare(p, volume, shadow, unsettled);
}

int amb_provider_settle(const char *shadow)
{
	char sh[PATH_MAX], side[PATH_MAX + 32];
	int rc = norm_path("shadow", shadow, sh, sizeof(sh));
	if (rc)
		return rc;
	sidecar_path(sh, side, sizeof(side));
	rc = amb_durable_settle(amb_vfs_posix(), side);
	if (rc)
		return amb_prov_err(rc, "%s: cannot make it durable: %s", side, strerror(-rc));
	return 0;
}

int amb_provider_presync(const char *volume)
{
	if (!volume)
		return amb_prov_err(-EINVAL, "no volume given");
	int fd = open(volume, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		return amb_prov_err(rc, "%s: %s", volume, strerror(-rc));
	}
	int rc = syncfs(fd) == 0 ? 0 : -errno;
	close(fd);
	if (rc)
		return amb_prov_err(rc, "%s: syncfs: %s", volume, strerror(-rc));
	return 0;
}

/* The checks that precommit and commit share: a provider, a volume and a
 * prepared shadow (its sidecar exists); the normalised paths into vol, sh. */
static int check_prepared(const amb_provider *p, const char *volume, const char *shadow,
			  char vol[PATH_MAX], char sh[PATH_MAX])
{
	char side[PATH_MAX + 32];
	struct stat st;
	if (!p)
		return amb_prov_err(-EINVAL, "no provider given");
	int rc = check_volume(p->name, volume, vol, PATH_MAX);
	if (rc)
		return rc;
	rc = norm_path("shadow", shadow, sh, PATH_MAX);
	if (rc)
		return rc;
	sidecar_path(sh, side, sizeof(side));
	if (lstat(side, &st) != 0)
		return amb_prov_err(-EINVAL, "%s: %s was not prepared (no %s)", p->name, sh, side);
	return 0;
}

int amb_provider_precommit(const amb_provider *p, const char *volume, const char *shadow)
{
	char vol[PATH_MAX], sh[PATH_MAX];
	if (p && !p->ops->precommit)
		return 0;
	int rc = check_prepared(p, volume, shadow, vol, sh);
	return rc ? rc : p->ops->precommit(vol, sh);
}

int amb_provider_commit(const amb_provider *p, const char *volume, const char *shadow)
{
	char vol[PATH_MAX], sh[PATH_MAX];
	int rc = check_prepared(p, volume, shadow, vol, sh);
	return rc ? rc : p->ops->commit(vol, sh);
}

int amb_provider_commit_unchanged(const amb_provider *p, const char *volume, const char *shadow,
                                  const char *const *unchanged, size_t n)
{
	char vol[PATH_MAX], sh[PATH_MAX];
	int rc = check_prepared(p, volume, shadow, vol, sh);
	if (rc)
		return rc;
	if (!p->ops->commit_unchanged || !n || !unchanged)
		return p->ops->commit(vol, sh);
	/* the paths inside vol, relative to it */
	const char **rel = calloc(n, sizeof(*rel));
	if (!rel)
		return amb_prov_err(-ENOMEM, "%s: out of memory", p->name);
	size_t nr = 0, l = strlen(vol);
	for (size_t i = 0; i < n; i++) {
		const char *u = unchanged[i];
		if (!u)
			continue;
		if (l == 1 && u[0] == '/' && u[1])
			rel[nr++] = u + 1;
		else if (strncmp(u, vol, l) == 0 && u[l] == '/' && u[l + 1])
			rel[nr++] = u + l + 1;
	}
	rc = p->ops->commit_unchanged(vol, sh, rel, nr);
	free(rel);
	return rc;
}

/* ---- sidecar ---- */

static int read_small(const char *path, char *buf, size_t bufsize, size_t *len)
{
	amb_vfs *v = amb_vfs_posix();
	int fd = v->open(v, path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	ssize_t n = v->pread(v, fd, buf, bufsize - 1, 0);
	v->close(v, fd);
	if (n < 0)
		return (int)n;
	buf[n] = '\0';
	*len = (size_t)n;
	return 0;
}

/* "key value\n" at *pos; value into val */
static int take_line(const char **pos, const char *key, char *val, size_t valsize)
{
	size_t kl = strlen(key);
	const char *s = *pos;
	if (strncmp(s, key, kl) != 0 || s[kl] != ' ')
		return -1;
	s += kl + 1;
	const char *nl = strchr(s, '\n');
	if (!nl || (size_t)(nl - s) >= valsize)
		return -1;
	memcpy(val, s, (size_t)(nl - s));
	val[nl - s] = '\0';
	*pos = nl + 1;
	return 0;
}

static int sidecar_load(const char *side, amb_shadow_info *out)
{
	char *buf = malloc(SIDECAR_MAX);
	if (!buf)
		return amb_prov_err(-ENOMEM, "%s: out of memory", side);
	size_t len;
	int rc = read_small(side, buf, SIDECAR_MAX, &len);
	if (rc) {
		amb_prov_err(rc, "%s: cannot read: %s", side, strerror(-rc));
		goto out_free_buf;
	}
	char version[16], prov[32], state[32];
	const char *pos = buf;
	if (take_line(&pos, "amber-shadow", version, sizeof(version)) != 0 ||
	    strcmp(version, "1") != 0 || take_line(&pos, "provider", prov, sizeof(prov)) != 0 ||
	    take_line(&pos, "volume", out->volume, sizeof(out->volume)) != 0 ||
	    take_line(&pos, "state", state, sizeof(state)) != 0 || *pos != '\0') {
		rc = amb_prov_err(-EINVAL, "%s: damaged shadow record", side);
		goto out_free_buf;
	}
	out->provider = amb_provider_find(prov);
	if (!out->provider) {
		rc = amb_prov_err(-EINVAL, "%s: unknown provider %s", side, prov);
		goto out_free_buf;
	}
	if (strcmp(state, "prepared") == 0) {
		out->state = AMB_SHADOW_PREPARED;
	} else if (strcmp(state, "committed") == 0) {
		out->state = AMB_SHADOW_COMMITTED;
	} else {
		rc = amb_prov_err(-EINVAL, "%s: unknown state %s", side, state);
		goto out_free_buf;
	}
out_free_buf:
	free(buf);
	return rc;
}

int amb_provider_shadow_info(const char *shadow, amb_shadow_info *out)
{
	char sh[PATH_MAX], side[PATH_MAX + 32];
	if (!out)
		return amb_prov_err(-EINVAL, "no result pointer given");
	int rc = norm_path("shadow", shadow, sh, sizeof(sh));
	if (rc)
		return rc;
	sidecar_path(sh, side, sizeof(side));
	return sidecar_load(side, out);
}

int amb_provider_post_commit(const amb_provider *p, const char *shadow)
{
	char sh[PATH_MAX], side[PATH_MAX + 32];
	struct stat st;
	if (!p)
		return amb_prov_err(-EINVAL, "no provider given");
	int rc = norm_path("shadow", shadow, sh, sizeof(sh));
	if (rc)
		return rc;
	sidecar_path(sh, side, sizeof(side));
	amb_shadow_info info;
	rc = sidecar_load(side, &info);
	if (rc)
		return rc;
	if (info.provider != p)
		return amb_prov_err(-EINVAL, "%s: %s is a %s shadow", p->name, sh,
				    info.provider->name);
	if (lstat(sh, &st) != 0)
		return amb_prov_err(-ENOENT, "%s: shadow %s does not exist (commit not run?)",
				    p->name, sh);
	/* the shadow durable first (reflink, copy: commit fsynced nothing, so
	 * that the hold did not wait for it), then the record that says so */
	if (p->ops->sync && (rc = p->ops->sync(sh)) != 0)
		return rc;
	char doc[PATH_MAX + 128];
	int len = snprintf(doc, sizeof(doc),
			   "amber-shadow 1\nprovider %s\nvolume %s\nstate committed\n", p->name,
			   info.volume);
	rc = amb_durable_write(amb_vfs_posix(), side, doc, (size_t)len);
	if (rc)
		return amb_prov_err(rc, "%s: %s: cannot write: %s", p->name, side, strerror(-rc));
	return 0;
}

int amb_provider_remove(const char *shadow)
{
	char sh[PATH_MAX], side[PATH_MAX + 32];
	struct stat st, sst;
	int rc = norm_path("shadow", shadow, sh, sizeof(sh));
	if (rc)
		return rc;
	sidecar_path(sh, side, sizeof(side));
	int have_shadow = lstat(sh, &st) == 0;
	if (!have_shadow && errno != ENOENT)
		return amb_prov_err(-errno, "%s: %s", sh, strerror(errno));
	if (lstat(side, &sst) != 0) {
		if (errno != ENOENT)
			return amb_prov_err(-errno, "%s: %s", side, strerror(errno));
		if (have_shadow)
			return amb_prov_err(-EINVAL,
					    "%s is not an amber shadow (no %s): not deleted", sh,
					    side);
		return amb_prov_err(-ENOENT, "%s: no such shadow", sh);
	}
	amb_shadow_info info;
	rc = sidecar_load(side, &info);
	if (rc == -EINVAL && !have_shadow) {
		/* a crash before an unsettled sidecar was settled (empty or
		 * partial); nothing was made from it */
		rc = amb_durable_unlink(amb_vfs_posix(), side);
		if (rc && rc != -ENOENT)
			return amb_prov_err(rc, "%s: cannot remove: %s", side, strerror(-rc));
		return 0;
	}
	if (rc)
		return rc;
	if (have_shadow) {
		rc = info.provider->ops->remove(sh);
		if (rc)
			return rc;
	}
	rc = amb_durable_unlink(amb_vfs_posix(), side);
	if (rc && rc != -ENOENT)
		return amb_prov_err(rc, "%s: cannot remove: %s", side, strerror(-rc));
	return 0;
}

int amb_provider_can_fsfreeze(const amb_provider *p, const char *volume, const char *shadow)
{
	char vol[PATH_MAX], sh[PATH_MAX], parent[PATH_MAX];
	if (!p)
		return amb_prov_err(-EINVAL, "no provider given");
	if (!p->can_fsfreeze)
		return 0;
	int rc = check_volume(p->name, volume, vol, sizeof(vol));
	if (rc)
		return rc;
	rc = norm_path("shadow", shadow, sh, sizeof(sh));
	if (rc)
		return rc;
	parent_of(sh, parent, sizeof(parent));
	int fa = open(vol, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fa < 0)
		return amb_prov_err(-errno, "%s: %s: %s", p->name, vol, strerror(errno));
	int fb = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fb < 0) {
		rc = amb_prov_err(-errno, "%s: %s: %s", p->name, parent, strerror(errno));
		goto out_close_fa;
	}
	rc = amb_prov_same_fs(fa, fb);
	if (rc < 0)
		amb_prov_err(rc, "%s: cannot compare filesystems of %s and %s: %s", p->name, vol,
			     parent, strerror(-rc));
	else
		rc = !rc;
	close(fb);
out_close_fa:
	close(fa);
	return rc;
}

int amb_prov_check_beside(const char *prov, const char *volume, const char *shadow,
                          const char *parent, int same_mount, const char *why)
{
	int rc;
	int fv = open(volume, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fv < 0)
		return amb_prov_err(-errno, "%s: %s: %s", prov, volume, strerror(errno));
	int fp = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fp < 0) {
		rc = amb_prov_err(-errno, "%s: %s: %s", prov, parent, strerror(errno));
		goto out_close_fv;
	}
	rc = same_mount ? amb_prov_same_mount(fv, fp) : amb_prov_same_fs(fv, fp);
	if (rc < 0)
		amb_prov_err(rc, "%s: cannot compare the %s of %s and %s: %s", prov,
			     same_mount ? "mounts" : "filesystems", volume, parent, strerror(-rc));
	else if (rc == 0)
		rc = amb_prov_err(-EXDEV, "%s: shadow %s is not on the %s of %s (%s)", prov, shadow,
				  same_mount ? "mount" : "btrfs filesystem", volume, why);
	else
		rc = 0;
	close(fp);
out_close_fv:
	close(fv);
	return rc;
}

bool amb_prov_is_mount_root_at(int dirfd, const char *name)
{
	struct statx sx;
	if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW, 0, &sx) != 0)
		return false;
	return (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	       (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

int amb_provider_mount_point(const char *path, char *out, size_t size)
{
	if (!path || !out || path[0] != '/' || strlen(path) >= size)
		return amb_prov_err(-EINVAL, "mount point: bad path");
	snprintf(out, size, "%s", path);
	for (;;) {
		if (strcmp(out, "/") == 0 || amb_prov_is_mount_root_at(AT_FDCWD, out))
			return 0;
		struct statx sx;
		if (statx(AT_FDCWD, out, AT_SYMLINK_NOFOLLOW, 0, &sx) != 0)
			return amb_prov_err(-errno, "%s: %s", out, strerror(errno));
		char *slash = strrchr(out, '/');
		if (slash == out)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
}

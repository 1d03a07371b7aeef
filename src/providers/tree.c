/*
 * tree.c - copy or clone a directory tree, and delete one (the reflink and
 * copy providers; see provider_internal.h).
 *
 * The walk works on directory descriptors (openat and friends), so path
 * length never limits it and a renamed parent cannot redirect it.  It keeps
 * two descriptors open per directory level.  It stays on the volume's
 * filesystem: a directory on another device, or the root of a mount, is
 * copied as an empty directory with the metadata of the original, the way
 * btrfs shows nested subvolumes in a snapshot.  The same goes for the
 * shadow's own parent directory when it lies inside the volume (otherwise
 * every shadow would contain all older ones).
 *
 * Metadata order for each object: data, owner (chown clears set-id bits
 * and file capabilities), extended attributes, mode, times (last, since the
 * other steps change them).  A directory gets its metadata after its
 * children, so a read-only directory can still be filled and its times are
 * final.  Symlinks, fifos and device nodes keep no extended attributes.
 *
 * Durability: the walk fsyncs nothing.  It runs while the writers hold
 * their writes, and once a file is cloned or copied its content in the
 * shadow no longer depends on the volume; so the shadow is made durable
 * afterwards, after the thaw, by amb_tree_sync() (one syncfs of the
 * shadow's filesystem), which amb_provider_post_commit() calls before it
 * records the shadow as committed.  A crash before that leaves the shadow
 * "prepared", and it is deleted.
 *
 * Hard links: a non-directory with more than one link is looked up by
 * (device, inode) in a hash table of those already copied and linked to
 * the first copy.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/vfs.h"
#include "providers/provider_internal.h"

#define COPY_BUF_SIZE (1u << 20)
#define COPY_CHUNK ((size_t)1 << 30)

struct hl_ent {
	dev_t dev;
	ino_t ino;
	char *rel; /* path of the first copy, relative to the shadow root */
};

struct tree_ctx {
	const char *prov;
	const char *root; /* volume (copy) or shadow (remove), for messages */
	bool clone;
	dev_t rootdev;
	dev_t skip_dev[2];
	ino_t skip_ino[2];
	int nskip;
	int droot; /* shadow root directory */
	char *rel; /* current path relative to root, "" at the root */
	size_t rel_len, rel_cap;
	struct hl_ent *hl;
	size_t hl_n, hl_cap;
	unsigned char *buf; /* read/write fallback, allocated when needed */
	bool no_cfr; /* copy_file_range refused once: use read/write */
	amb_refresh_stats rs; /* amb_tree_refresh */
	const char *const *unchanged; /* amb_tree_refresh_unchanged: rel paths */
	size_t n_unchanged;
	/* amb_tree_refresh_converge: the files whose data a pass changed
	 * (hot), and the files a later pass looks at (only, when only_mode) */
	char **hot;
	size_t n_hot, cap_hot;
	bool only_mode;
	char *const *only;
	size_t n_only;
};

/* ---- path for messages and hard links ---- */

static int rel_push(struct tree_ctx *c, const char *name, size_t *old)
{
	size_t nl = strlen(name);
	size_t need = c->rel_len + 1 + nl + 1;
	if (need > c->rel_cap) {
		size_t cap = c->rel_cap ? c->rel_cap : 256;
		while (cap < need)
			cap *= 2;
		char *r = realloc(c->rel, cap);
		if (!r)
			return amb_prov_err(-ENOMEM, "%s: out of memory", c->prov);
		c->rel = r;
		c->rel_cap = cap;
	}
	*old = c->rel_len;
	if (c->rel_len)
		c->rel[c->rel_len++] = '/';
	memcpy(c->rel + c->rel_len, name, nl + 1);
	c->rel_len += nl;
	return 0;
}

static void rel_pop(struct tree_ctx *c, size_t old)
{
	c->rel_len = old;
	if (c->rel)
		c->rel[old] = '\0';
}

/* What a walk does with one entry of a directory: sdir is the volume's
 * directory (-1 when none), ddir the shadow's. */
typedef int (*entry_fn)(struct tree_ctx *c, int sdir, int ddir, const char *name);

/* op on name, with name on the relative path (messages, hard links) */
static int at_name(struct tree_ctx *c, int sdir, int ddir, const char *name, entry_fn op)
{
	size_t old = 0;
	int rc = rel_push(c, name, &old);
	if (rc)
		return rc;
	rc = op(c, sdir, ddir, name);
	rel_pop(c, old);
	return rc;
}

static const char *rel(const struct tree_ctx *c)
{
	return c->rel ? c->rel : "";
}

/* message "<prov>: <root>/<rel>: <what>: <strerror>", returns rc */
static int terr(const struct tree_ctx *c, int rc, const char *what)
{
	return amb_prov_err(rc, "%s: %s%s%s: %s: %s", c->prov, c->root, c->rel_len ? "/" : "",
			    rel(c), what, strerror(-rc));
}

/* ---- hard link table (open addressing, power-of-two size) ---- */

static size_t hl_hash(dev_t dev, ino_t ino)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ull ^ (uint64_t)dev;
	return (size_t)(h ^ (h >> 29));
}

static struct hl_ent *hl_find(struct tree_ctx *c, dev_t dev, ino_t ino)
{
	if (!c->hl_cap)
		return NULL;
	for (size_t i = hl_hash(dev, ino) & (c->hl_cap - 1);; i = (i + 1) & (c->hl_cap - 1)) {
		if (!c->hl[i].rel)
			return NULL;
		if (c->hl[i].dev == dev && c->hl[i].ino == ino)
			return &c->hl[i];
	}
}

static int hl_add(struct tree_ctx *c, dev_t dev, ino_t ino)
{
	if ((c->hl_n + 1) * 2 > c->hl_cap) {
		size_t cap = c->hl_cap ? c->hl_cap * 2 : 64;
		struct hl_ent *t = calloc(cap, sizeof(*t));
		if (!t)
			return amb_prov_err(-ENOMEM, "%s: out of memory", c->prov);
		for (size_t j = 0; j < c->hl_cap; j++) {
			if (!c->hl[j].rel)
				continue;
			size_t i = hl_hash(c->hl[j].dev, c->hl[j].ino) & (cap - 1);
			while (t[i].rel)
				i = (i + 1) & (cap - 1);
			t[i] = c->hl[j];
		}
		free(c->hl);
		c->hl = t;
		c->hl_cap = cap;
	}
	char *r = strdup(rel(c));
	if (!r)
		return amb_prov_err(-ENOMEM, "%s: out of memory", c->prov);
	size_t i = hl_hash(dev, ino) & (c->hl_cap - 1);
	while (c->hl[i].rel)
		i = (i + 1) & (c->hl_cap - 1);
	c->hl[i].dev = dev;
	c->hl[i].ino = ino;
	c->hl[i].rel = r;
	c->hl_n++;
	return 0;
}

/* ---- directory listing ---- */

struct names {
	char **v;
	size_t n;
};

static void names_free(struct names *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	ns->v = NULL;
	ns->n = 0;
}

/* every name in dirfd but "." and ".." (the listing is taken whole, so the
 * walk below keeps no directory stream open) */
static int list_dir(struct tree_ctx *c, int dirfd, struct names *ns)
{
	int rc = 0;
	size_t cap = 0;
	ns->v = NULL;
	ns->n = 0;
	int fd = dup(dirfd);
	if (fd < 0)
		return terr(c, -errno, "dup");
	DIR *d = fdopendir(fd);
	if (!d) {
		rc = terr(c, -errno, "opendir");
		close(fd);
		return rc;
	}
	rewinddir(d);
	for (;;) {
		errno = 0;
		struct dirent *de = readdir(d);
		if (!de) {
			if (errno)
				rc = terr(c, -errno, "readdir");
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (ns->n == cap) {
			size_t ncap = cap ? cap * 2 : 32;
			char **v = realloc(ns->v, ncap * sizeof(*v));
			if (!v) {
				rc = amb_prov_err(-ENOMEM, "%s: out of memory", c->prov);
				break;
			}
			ns->v = v;
			cap = ncap;
		}
		ns->v[ns->n] = strdup(de->d_name);
		if (!ns->v[ns->n]) {
			rc = amb_prov_err(-ENOMEM, "%s: out of memory", c->prov);
			break;
		}
		ns->n++;
	}
	closedir(d);
	if (rc)
		names_free(ns);
	return rc;
}

/* ---- metadata ---- */

static int copy_xattrs(struct tree_ctx *c, int sfd, int dfd)
{
	int rc = 0;
	char *list = NULL, *val = NULL;
	size_t vcap = 0;
	ssize_t n = flistxattr(sfd, NULL, 0);
	if (n < 0) {
		if (errno == ENOTSUP)
			return 0;
		return terr(c, -errno, "cannot list extended attributes");
	}
	if (n == 0)
		return 0;
	/* the list may grow between the two calls: retry a few times */
	for (int tries = 0;; tries++) {
		list = malloc((size_t)n);
		if (!list)
			return amb_prov_err(-ENOMEM, "%s: out of memory", c->prov);
		ssize_t m = flistxattr(sfd, list, (size_t)n);
		if (m >= 0) {
			n = m;
			break;
		}
		free(list);
		list = NULL;
		if (errno != ERANGE || tries == 3)
			return terr(c, -errno, "cannot list extended attributes");
		n = flistxattr(sfd, NULL, 0);
		if (n <= 0)
			return n < 0 ? terr(c, -errno, "cannot list extended attributes") : 0;
	}
	for (char *name = list; name < list + n; name += strlen(name) + 1) {
		ssize_t vl = fgetxattr(sfd, name, NULL, 0);
		if (vl < 0) {
			if (errno == ENODATA)
				continue; /* removed meanwhile */
			rc = terr(c, -errno, name);
			goto out_free;
		}
		if ((size_t)vl + 1 > vcap) {
			free(val);
			vcap = (size_t)vl + 1;
			val = malloc(vcap);
			if (!val) {
				rc = amb_prov_err(-ENOMEM, "%s: out of memory", c->prov);
				goto out_free;
			}
		}
		vl = fgetxattr(sfd, name, val, vcap);
		if (vl < 0) {
			if (errno == ENODATA)
				continue;
			rc = terr(c, -errno, name);
			goto out_free;
		}
		if (fsetxattr(dfd, name, val, (size_t)vl, 0) != 0) {
			char what[300];
			snprintf(what, sizeof(what), "cannot keep extended attribute %s", name);
			rc = terr(c, -errno, what);
			goto out_free;
		}
	}
out_free:
	free(val);
	free(list);
	return rc;
}

/* regular files and directories (both open) */
static int meta_fd(struct tree_ctx *c, int sfd, int dfd, const struct stat *st)
{
	if (fchown(dfd, st->st_uid, st->st_gid) != 0)
		return terr(c, -errno, "cannot keep owner");
	int rc = copy_xattrs(c, sfd, dfd);
	if (rc)
		return rc;
	if (fchmod(dfd, st->st_mode & 07777) != 0)
		return terr(c, -errno, "cannot keep mode");
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	if (futimens(dfd, ts) != 0)
		return terr(c, -errno, "cannot keep times");
	return 0;
}

/* symlinks, fifos, sockets, device nodes (not opened) */
static int meta_at(struct tree_ctx *c, int ddir, const char *name, const struct stat *st)
{
	if (fchownat(ddir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) != 0)
		return terr(c, -errno, "cannot keep owner");
	if (!S_ISLNK(st->st_mode) && fchmodat(ddir, name, st->st_mode & 07777, 0) != 0)
		return terr(c, -errno, "cannot keep mode");
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	if (utimensat(ddir, name, ts, AT_SYMLINK_NOFOLLOW) != 0)
		return terr(c, -errno, "cannot keep times");
	return 0;
}

/* ---- file data ---- */

static int copy_range_rw(struct tree_ctx *c, int sfd, int dfd, off_t off, off_t end)
{
	if (!c->buf) {
		c->buf = amb_io_alloc(COPY_BUF_SIZE);
		if (!c->buf)
			return amb_prov_err(-ENOMEM, "%s: out of memory", c->prov);
	}
	while (off < end) {
		size_t want = (size_t)(end - off) < COPY_BUF_SIZE ? (size_t)(end - off)
								  : COPY_BUF_SIZE;
		ssize_t n = pread(sfd, c->buf, want, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return terr(c, -errno, "read");
		}
		if (n == 0)
			break; /* shrank meanwhile */
		for (ssize_t done = 0; done < n;) {
			ssize_t w = pwrite(dfd, c->buf + done, (size_t)(n - done), off + done);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return terr(c, -errno, "write");
			}
			done += w;
		}
		off += n;
	}
	return 0;
}

/* copy [off, end) of sfd to the same offsets of dfd */
static int copy_range(struct tree_ctx *c, int sfd, int dfd, off_t off, off_t end)
{
	while (!c->no_cfr && off < end) {
		loff_t in = off, out = off;
		size_t len = (size_t)(end - off) < COPY_CHUNK ? (size_t)(end - off) : COPY_CHUNK;
		ssize_t n = copy_file_range(sfd, &in, dfd, &out, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
			    errno == EOPNOTSUPP) {
				c->no_cfr = true;
				break;
			}
			return terr(c, -errno, "copy_file_range");
		}
		if (n == 0)
			return 0; /* shrank meanwhile */
		off += n;
	}
	return copy_range_rw(c, sfd, dfd, off, end);
}

/* copy the data, keeping holes */
static int copy_data(struct tree_ctx *c, int sfd, int dfd)
{
	off_t off = 0;
	for (;;) {
		off_t data = lseek(sfd, off, SEEK_DATA);
		if (data < 0) {
			if (errno == ENXIO)
				break; /* no data after off */
			/* no hole support: everything to the end is data */
			data = off;
			off_t end = lseek(sfd, 0, SEEK_END);
			if (end < 0)
				return terr(c, -errno, "lseek");
			int rc = copy_range(c, sfd, dfd, data, end);
			if (rc)
				return rc;
			off = end;
			break;
		}
		off_t hole = lseek(sfd, data, SEEK_HOLE);
		if (hole < 0)
			return terr(c, -errno, "lseek");
		int rc = copy_range(c, sfd, dfd, data, hole);
		if (rc)
			return rc;
		off = hole;
	}
	/* a trailing hole: the size, not the data, says where the file ends */
	struct stat st;
	if (fstat(sfd, &st) != 0)
		return terr(c, -errno, "fstat");
	if (st.st_size > off && ftruncate(dfd, st.st_size) != 0)
		return terr(c, -errno, "ftruncate");
	return 0;
}

/* ---- the walk ---- */

static int copy_dir(struct tree_ctx *c, int sdir, int ddir);

static bool skipped(const struct tree_ctx *c, const struct stat *st)
{
	for (int i = 0; i < c->nskip; i++)
		if (st->st_dev == c->skip_dev[i] && st->st_ino == c->skip_ino[i])
			return true;
	return false;
}

/* Open the volume's regular file name (lstat'ed as lst) for reading, its
 * stat in *st: a descriptor, -ENOENT when it vanished during the walk (no
 * message: it is left out), or another -errno (message set; -ESTALE when it
 * was replaced by another between the lstat and the open). */
static int open_regular(struct tree_ctx *c, int sdir, const char *name, const struct stat *lst,
			struct stat *st)
{
	int sfd = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOATIME);
	if (sfd < 0 && errno == EPERM) /* O_NOATIME needs ownership */
		sfd = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (sfd < 0)
		return errno == ENOENT ? -ENOENT : terr(c, -errno, "cannot open");
	int rc = 0;
	if (fstat(sfd, st) != 0)
		rc = terr(c, -errno, "fstat");
	else if (!S_ISREG(st->st_mode) || st->st_ino != lst->st_ino)
		rc = terr(c, -ESTALE, "replaced during the copy");
	if (rc) {
		close(sfd);
		return rc;
	}
	return sfd;
}

static int copy_file(struct tree_ctx *c, int sdir, int ddir, const char *name,
		     const struct stat *lst)
{
	int rc;
	struct stat st;
	int sfd = open_regular(c, sdir, name, lst, &st);
	if (sfd < 0)
		return sfd == -ENOENT ? 0 : sfd;
	int dfd = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (dfd < 0) {
		rc = terr(c, -errno, "cannot create the copy");
		goto out_close_sfd;
	}
	if (c->clone) {
		if (ioctl(dfd, FICLONE, sfd) != 0) {
			int e = errno;
			if (e == EOPNOTSUPP || e == EXDEV || e == EINVAL)
				rc = amb_prov_err(-EOPNOTSUPP,
						  "%s: %s/%s: the filesystem refuses to clone it "
						  "(FICLONE: %s)",
						  c->prov, c->root, rel(c), strerror(e));
			else
				rc = terr(c, -e, "cannot clone (FICLONE)");
			goto out_close_dfd;
		}
	} else {
		rc = copy_data(c, sfd, dfd);
		if (rc)
			goto out_close_dfd;
	}
	rc = meta_fd(c, sfd, dfd, &st);
out_close_dfd:
	if (close(dfd) != 0 && rc == 0)
		rc = terr(c, -errno, "close");
out_close_sfd:
	close(sfd);
	return rc;
}

static int copy_special(struct tree_ctx *c, int sdir, int ddir, const char *name,
			const struct stat *st)
{
	if (S_ISLNK(st->st_mode)) {
		size_t cap = (size_t)st->st_size + 2;
		if (cap < 64)
			cap = 64;
		for (;;) {
			char *t = malloc(cap);
			if (!t)
				return amb_prov_err(-ENOMEM, "%s: out of memory", c->prov);
			ssize_t n = readlinkat(sdir, name, t, cap);
			if (n < 0) {
				int e = errno;
				free(t);
				if (e == ENOENT)
					return 0;
				return terr(c, -e, "readlink");
			}
			if ((size_t)n >= cap) { /* grew meanwhile */
				free(t);
				cap *= 2;
				continue;
			}
			t[n] = '\0';
			int r = symlinkat(t, ddir, name);
			free(t);
			if (r != 0)
				return terr(c, -errno, "cannot create the symlink");
			break;
		}
	} else if (mknodat(ddir, name, (st->st_mode & S_IFMT) | 0600, st->st_rdev) != 0) {
		return terr(c, -errno, "cannot create the node");
	}
	return meta_at(c, ddir, name, st);
}

/* a directory that is not walked: empty, with the original's metadata */
static int copy_dir_placeholder(struct tree_ctx *c, int sdir, int ddir, const char *name,
			 const struct stat *st)
{
	if (mkdirat(ddir, name, 0700) != 0)
		return terr(c, -errno, "mkdir");
	if (fchownat(ddir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) != 0)
		return terr(c, -errno, "cannot keep owner");
	if (fchmodat(ddir, name, st->st_mode & 07777, 0) != 0)
		return terr(c, -errno, "cannot keep mode");
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	if (utimensat(ddir, name, ts, AT_SYMLINK_NOFOLLOW) != 0)
		return terr(c, -errno, "cannot keep times");
	(void)sdir;
	return 0;
}

static int copy_subdir(struct tree_ctx *c, int sdir, int ddir, const char *name,
		       const struct stat *lst)
{
	int rc;
	if (lst->st_dev != c->rootdev || skipped(c, lst) || amb_prov_is_mount_root_at(sdir, name))
		return copy_dir_placeholder(c, sdir, ddir, name, lst);
	int sfd = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd < 0) {
		if (errno == ENOENT)
			return 0;
		return terr(c, -errno, "cannot open");
	}
	struct stat st;
	if (fstat(sfd, &st) != 0) {
		rc = terr(c, -errno, "fstat");
		goto out_close_sfd;
	}
	if (mkdirat(ddir, name, 0700) != 0) {
		rc = terr(c, -errno, "mkdir");
		goto out_close_sfd;
	}
	int dfd = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		rc = terr(c, -errno, "cannot open the copy");
		goto out_close_sfd;
	}
	rc = copy_dir(c, sfd, dfd);
	if (rc)
		goto out_close_dfd;
	rc = meta_fd(c, sfd, dfd, &st);
out_close_dfd:
	close(dfd);
out_close_sfd:
	close(sfd);
	return rc;
}

static int copy_entry(struct tree_ctx *c, int sdir, int ddir, const char *name)
{
	struct stat st;
	if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno == ENOENT)
			return 0;
		return terr(c, -errno, "stat");
	}
	if (S_ISDIR(st.st_mode))
		return copy_subdir(c, sdir, ddir, name, &st);
	if (st.st_nlink > 1) {
		struct hl_ent *h = hl_find(c, st.st_dev, st.st_ino);
		if (h) {
			/* ENOENT: the first name vanished during the walk (then
			 * so did its copy); this one is left out too */
			if (linkat(c->droot, h->rel, ddir, name, 0) != 0 && errno != ENOENT)
				return terr(c, -errno, "cannot link");
			return 0;
		}
	}
	int rc;
	if (S_ISREG(st.st_mode)) {
		if (st.st_dev != c->rootdev) {
			/* a file mount: an empty stand-in, like a directory mount */
			int fd = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (fd < 0)
				return terr(c, -errno, "cannot create");
			close(fd);
			rc = meta_at(c, ddir, name, &st);
		} else {
			rc = copy_file(c, sdir, ddir, name, &st);
		}
	} else {
		rc = copy_special(c, sdir, ddir, name, &st);
	}
	if (rc == 0 && st.st_nlink > 1)
		rc = hl_add(c, st.st_dev, st.st_ino);
	return rc;
}

static int copy_dir(struct tree_ctx *c, int sdir, int ddir)
{
	struct names ns;
	int rc = list_dir(c, sdir, &ns);
	if (rc)
		return rc;
	for (size_t i = 0; i < ns.n && rc == 0; i++)
		rc = at_name(c, sdir, ddir, ns.v[i], copy_entry);
	names_free(&ns);
	return rc;
}

static void ctx_free(struct tree_ctx *c)
{
	for (size_t i = 0; i < c->n_hot; i++)
		free(c->hot[i]);
	free(c->hot);
	for (size_t i = 0; i < c->hl_cap; i++)
		free(c->hl[i].rel);
	free(c->hl);
	free(c->rel);
	free(c->buf);
}

/*
 * The start of a walk from volume into shadow (amb_tree_copy, the refresh):
 * c set up, the volume opened (returned, its stat in *st) and c->droot the
 * shadow, both left out of the walk with the shadow's parent.  A
 * descriptor, or -errno with nothing open.
 */
static int walk_begin(struct tree_ctx *c, const char *prov, const char *volume,
		      const char *shadow, bool clone, struct stat *st)
{
	memset(c, 0, sizeof(*c));
	c->prov = prov;
	c->root = volume;
	c->clone = clone;
	c->droot = -1;
	int sfd = open(volume, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sfd < 0)
		return amb_prov_err(-errno, "%s: %s: %s", prov, volume, strerror(errno));
	struct stat dst;
	int rc = 0;
	if (fstat(sfd, st) != 0)
		rc = amb_prov_err(-errno, "%s: %s: %s", prov, volume, strerror(errno));
	if (!rc) {
		c->rootdev = st->st_dev;
		c->droot = open(shadow, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (c->droot < 0)
			rc = amb_prov_err(-errno, "%s: shadow %s: %s", prov, shadow, strerror(errno));
	}
	if (!rc && fstat(c->droot, &dst) != 0)
		rc = amb_prov_err(-errno, "%s: %s: %s", prov, shadow, strerror(errno));
	if (rc) {
		if (c->droot >= 0)
			close(c->droot);
		close(sfd);
		return rc;
	}
	c->skip_dev[c->nskip] = dst.st_dev;
	c->skip_ino[c->nskip++] = dst.st_ino;
	char parent[PATH_MAX];
	struct stat pst;
	amb_path_dir(shadow, parent, sizeof(parent));
	if (stat(parent, &pst) == 0) {
		c->skip_dev[c->nskip] = pst.st_dev;
		c->skip_ino[c->nskip++] = pst.st_ino;
	}
	return sfd;
}

int amb_tree_copy(const char *prov, const char *volume, const char *shadow, bool clone)
{
	int rc;
	struct tree_ctx c;
	struct stat st;
	int sfd = walk_begin(&c, prov, volume, shadow, clone, &st);
	if (sfd < 0)
		return sfd;
	/* commit after a failed commit would mix two copies */
	struct names ns;
	rc = list_dir(&c, c.droot, &ns);
	if (rc)
		goto out_close_droot;
	size_t n = ns.n;
	names_free(&ns);
	if (n) {
		rc = amb_prov_err(-EINVAL, "%s: shadow %s is not empty (commit already ran?)",
				  prov, shadow);
		goto out_close_droot;
	}

	rc = copy_dir(&c, sfd, c.droot);
	if (rc)
		goto out_close_droot;
	rc = meta_fd(&c, sfd, c.droot, &st);
out_close_droot:
	close(c.droot);
	close(sfd);
	ctx_free(&c);
	return rc;
}

int amb_tree_sync(const char *prov, const char *shadow)
{
	int fd = open(shadow, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return amb_prov_err(-errno, "%s: shadow %s: %s", prov, shadow, strerror(errno));
	int rc = syncfs(fd) == 0 ? 0 : -errno;
	close(fd);
	if (rc)
		return amb_prov_err(rc, "%s: shadow %s: syncfs: %s", prov, shadow, strerror(-rc));
	return 0;
}

/* ---- removal ---- */

static int rm_dir(struct tree_ctx *c, int dfd);

/* Delete name (any type) from the shadow directory dfd, a directory with
 * everything below it; never into another filesystem mounted there (one
 * whose device is not c->rootdev).  sdir is not used. */
static int rm_entry(struct tree_ctx *c, int sdir, int dfd, const char *name)
{
	(void)sdir;
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : terr(c, -errno, "stat");
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) == 0 || errno == ENOENT ? 0 : terr(c, -errno, "unlink");
	if (st.st_dev != c->rootdev || amb_prov_is_mount_root_at(dfd, name))
		return terr(c, -EBUSY, "a filesystem is mounted here; not deleted");
	/* a copied read-only directory must become writable to be emptied
	 * (matters when not root) */
	fchmodat(dfd, name, 0700, 0);
	int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sub < 0)
		return terr(c, -errno, "cannot open");
	int rc = rm_dir(c, sub);
	close(sub);
	if (rc == 0 && unlinkat(dfd, name, AT_REMOVEDIR) != 0)
		rc = terr(c, -errno, "rmdir");
	return rc;
}

static int rm_dir(struct tree_ctx *c, int dfd)
{
	struct names ns;
	int rc = list_dir(c, dfd, &ns);
	if (rc)
		return rc;
	for (size_t i = 0; i < ns.n && rc == 0; i++)
		rc = at_name(c, -1, dfd, ns.v[i], rm_entry);
	names_free(&ns);
	return rc;
}

int amb_tree_remove(const char *prov, const char *path)
{
	int rc;
	struct tree_ctx c;
	memset(&c, 0, sizeof(c));
	c.prov = prov;
	c.root = path;
	struct stat st;
	if (lstat(path, &st) != 0)
		return amb_prov_err(-errno, "%s: %s: %s", prov, path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return amb_prov_err(-EINVAL, "%s: %s is not a shadow directory: not deleted", prov,
				    path);
	if (amb_prov_is_mount_root_at(AT_FDCWD, path))
		return amb_prov_err(-EBUSY, "%s: %s is a mount point (exposed?): not deleted",
				    prov, path);
	c.rootdev = st.st_dev;
	chmod(path, 0700);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return amb_prov_err(-errno, "%s: %s: %s", prov, path, strerror(errno));
	rc = rm_dir(&c, fd);
	close(fd);
	if (rc)
		goto out_free;
	if (rmdir(path) != 0) {
		rc = amb_prov_err(-errno, "%s: %s: rmdir: %s", prov, path, strerror(errno));
		goto out_free;
	}
	char parent[PATH_MAX];
	amb_path_dir(path, parent, sizeof(parent));
	rc = amb_vfs_posix()->sync_dir(amb_vfs_posix(), parent);
	if (rc)
		amb_prov_err(rc, "%s: %s: fsync: %s", prov, parent, strerror(-rc));
out_free:
	ctx_free(&c);
	return rc;
}

/* ---- refresh: a clone made before the hold, brought up to date in it ---- */

/*
 * The reflink provider clones the whole tree before the writers freeze
 * (amb_tree_copy), and, while they are frozen, only brings that clone up to
 * date (amb_tree_refresh): a file written since has new extents where it
 * changed (every write to an extent it shares with the clone is copy on
 * write), so FIEMAP of the file and of its clone differ exactly there, and
 * only those ranges are cloned again (FICLONERANGE; holes are punched).
 * Everything else is compared by name: an entry missing from the clone is
 * cloned or copied as amb_tree_copy would, an entry no longer in the volume
 * is deleted, an entry whose type changed, a file with several links, or a
 * directory the walk does not enter is deleted and copied again.  Metadata
 * (owner, extended attributes, mode, times) is set again on every regular
 * file and directory.  Any doubt about a file (FIEMAP refused, flags that do
 * not give a physical address) clones it whole.  With an empty shadow the
 * refresh is a full clone.
 */

#define FM_BATCH 256
#define FM_DOUBT (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_ENCODED | \
		  FIEMAP_EXTENT_DATA_ENCRYPTED | FIEMAP_EXTENT_NOT_ALIGNED | \
		  FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_DATA_TAIL)

struct fext {
	uint64_t l, p, len;
	uint32_t fl;
};

/* Every extent of fd below end; 0, -errno, or 1 when an extent gives no
 * usable physical address (the caller then clones the file whole). */
static int fm_get(int fd, uint64_t end, bool sync, struct fext **out, size_t *n)
{
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	struct fiemap *fm = malloc(sizeof(*fm) + FM_BATCH * sizeof(struct fiemap_extent));
	if (!fm)
		return -ENOMEM;
	uint64_t start = 0;
	int rc = 0;
	while (start < end) {
		memset(fm, 0, sizeof(*fm));
		fm->fm_start = start;
		fm->fm_length = end - start;
		fm->fm_flags = sync ? FIEMAP_FLAG_SYNC : 0;
		fm->fm_extent_count = FM_BATCH;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) {
			rc = -errno;
			break;
		}
		if (fm->fm_mapped_extents == 0)
			break;
		bool last = false;
		for (uint32_t i = 0; i < fm->fm_mapped_extents; i++) {
			struct fiemap_extent *e = &fm->fm_extents[i];
			if (e->fe_flags & FM_DOUBT) {
				rc = 1;
				goto out;
			}
			if (*n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct fext *v = realloc(*out, nc * sizeof(*v));
				if (!v) {
					rc = -ENOMEM;
					goto out;
				}
				*out = v;
				cap = nc;
			}
			(*out)[(*n)++] = (struct fext){e->fe_logical, e->fe_physical, e->fe_length,
						       e->fe_flags & FIEMAP_EXTENT_UNWRITTEN};
			last |= (e->fe_flags & FIEMAP_EXTENT_LAST) != 0;
			start = e->fe_logical + e->fe_length;
		}
		if (last)
			break;
	}
out:
	free(fm);
	if (rc) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

/* the extent of v (sorted, from *i on) that maps x, or NULL (a hole);
 * *next gets where the answer changes */
static const struct fext *fm_at(const struct fext *v, size_t n, size_t *i, uint64_t x,
				uint64_t *next)
{
	while (*i < n && v[*i].l + v[*i].len <= x)
		(*i)++;
	if (*i < n && v[*i].l <= x) {
		*next = v[*i].l + v[*i].len;
		return &v[*i];
	}
	*next = *i < n ? v[*i].l : UINT64_MAX;
	return NULL;
}

struct rng {
	uint64_t a, b;
	bool hole; /* the volume's file has no data there */
};

/* The ranges below size where src and its clone dst differ: 0, -errno, or
 * 1 (clone whole).  src is synced by FIEMAP (writers are held). */
static int fm_diff(int src, int dst, uint64_t size, struct rng **out, size_t *n)
{
	struct fext *s = NULL, *d = NULL;
	size_t ns = 0, nd = 0, cap = 0;
	*out = NULL;
	*n = 0;
	int rc = fm_get(src, size, true, &s, &ns);
	if (!rc)
		rc = fm_get(dst, size, false, &d, &nd);
	size_t is = 0, id = 0;
	for (uint64_t x = 0; !rc && x < size;) {
		uint64_t ns_, nd_;
		const struct fext *es = fm_at(s, ns, &is, x, &ns_);
		const struct fext *ed = fm_at(d, nd, &id, x, &nd_);
		uint64_t y = ns_ < nd_ ? ns_ : nd_;
		if (y > size)
			y = size;
		bool same = (!es && !ed) ||
			    (es && ed && es->fl == ed->fl &&
			     es->p + (x - es->l) == ed->p + (x - ed->l));
		if (!same) {
			bool hole = es == NULL;
			if (*n && (*out)[*n - 1].b == x && (*out)[*n - 1].hole == hole) {
				(*out)[*n - 1].b = y;
			} else {
				if (*n == cap) {
					size_t nc = cap ? cap * 2 : 16;
					struct rng *v = realloc(*out, nc * sizeof(*v));
					if (!v) {
						rc = -ENOMEM;
						break;
					}
					*out = v;
					cap = nc;
				}
				(*out)[(*n)++] = (struct rng){x, y, hole};
			}
		}
		x = y;
	}
	free(s);
	free(d);
	if (rc) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return rc;
}

/* dfd made a whole clone of sfd again */
static int reclone_whole(struct tree_ctx *c, int sfd, int dfd)
{
	c->rs.whole_files++;
	if (ftruncate(dfd, 0) != 0)
		return terr(c, -errno, "ftruncate");
	if (ioctl(dfd, FICLONE, sfd) != 0) {
		int e = errno;
		if (e == EOPNOTSUPP || e == EXDEV || e == EINVAL)
			return amb_prov_err(-EOPNOTSUPP,
					    "%s: %s/%s: the filesystem refuses to clone it (FICLONE: %s)",
					    c->prov, c->root, rel(c), strerror(e));
		return terr(c, -e, "cannot clone (FICLONE)");
	}
	return 0;
}

/* dfd (the earlier clone of the file) brought up to date with sfd */
static int refresh_data(struct tree_ctx *c, int sfd, int dfd, const struct stat *st)
{
	struct stat dst;
	if (fstat(dfd, &dst) != 0)
		return terr(c, -errno, "fstat");
	uint64_t size = (uint64_t)st->st_size;
	if ((uint64_t)dst.st_size > size && ftruncate(dfd, st->st_size) != 0)
		return terr(c, -errno, "ftruncate");
	struct rng *r = NULL;
	size_t n = 0;
	int rc = fm_diff(sfd, dfd, size, &r, &n);
	if (rc)
		return rc < 0 && rc != -EOPNOTSUPP && rc != -ENOTTY ? terr(c, rc, "FIEMAP") :
		       reclone_whole(c, sfd, dfd);
	uint64_t bs = st->st_blksize > 0 ? (uint64_t)st->st_blksize : 4096;
	/* holes first: a clone of an aligned block below brings back whatever
	 * the volume has there */
	for (size_t i = 0; i < n && !rc; i++)
		if (r[i].hole) {
			c->rs.holes++;
			if (fallocate(dfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				      (off_t)r[i].a, (off_t)(r[i].b - r[i].a)) != 0)
				rc = 1;
		}
	for (size_t i = 0; i < n && !rc; i++) {
		if (r[i].hole)
			continue;
		uint64_t a = r[i].a / bs * bs, b = (r[i].b + bs - 1) / bs * bs;
		struct file_clone_range cr = {
			.src_fd = sfd,
			.src_offset = a,
			.src_length = b >= size ? 0 : b - a, /* 0: to the end of the file */
			.dest_offset = a,
		};
		c->rs.ranges++;
		c->rs.range_bytes += (b >= size ? size : b) - a;
		if (ioctl(dfd, FICLONERANGE, &cr) != 0)
			rc = 1;
	}
	free(r);
	if (rc)
		return reclone_whole(c, sfd, dfd); /* any doubt: the whole file */
	/* a hole at the end: the size, not the data, says where the file ends
	 * (only when it differs: truncating to the same size may still zero,
	 * and so unshare, the last block) */
	if (fstat(dfd, &dst) != 0)
		return terr(c, -errno, "fstat");
	if ((uint64_t)dst.st_size != size && ftruncate(dfd, st->st_size) != 0)
		return terr(c, -errno, "ftruncate");
	return 0;
}

/* extended attributes of dfd that the volume's file no longer has go */
static int drop_xattrs(struct tree_ctx *c, int sfd, int dfd)
{
	ssize_t n = flistxattr(dfd, NULL, 0);
	if (n <= 0)
		return n < 0 && errno != ENOTSUP ? terr(c, -errno, "cannot list extended attributes") :
		       0;
	char *list = malloc((size_t)n);
	if (!list)
		return amb_prov_err(-ENOMEM, "%s: out of memory", c->prov);
	int rc = 0;
	n = flistxattr(dfd, list, (size_t)n); /* nothing else changes the clone */
	if (n < 0)
		rc = terr(c, -errno, "cannot list extended attributes");
	for (char *name = list; !rc && n > 0 && name < list + n; name += strlen(name) + 1)
		if (fgetxattr(sfd, name, NULL, 0) < 0 && errno == ENODATA &&
		    fremovexattr(dfd, name) != 0)
			rc = terr(c, -errno, "cannot remove an extended attribute");
	free(list);
	return rc;
}

static int refresh_rm(struct tree_ctx *c, int ddir, const char *name);

/* the current file's path noted as hot (its data changed since the pass
 * before) */
static int hot_add(struct tree_ctx *c)
{
	if (c->n_hot == c->cap_hot) {
		size_t nc = c->cap_hot ? c->cap_hot * 2 : 16;
		char **v = realloc(c->hot, nc * sizeof(*v));
		if (!v)
			return amb_prov_err(-ENOMEM, "%s: out of memory", c->prov);
		c->hot = v;
		c->cap_hot = nc;
	}
	char *s = strdup(rel(c));
	if (!s)
		return amb_prov_err(-ENOMEM, "%s: out of memory", c->prov);
	c->hot[c->n_hot++] = s;
	return 0;
}

static int refresh_file(struct tree_ctx *c, int sdir, int ddir, const char *name,
			const struct stat *lst)
{
	int rc;
	struct stat st;
	int sfd = open_regular(c, sdir, name, lst, &st);
	if (sfd < 0)
		return sfd == -ENOENT ? refresh_rm(c, ddir, name) : sfd;
	int dfd = openat(ddir, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		rc = terr(c, -errno, "cannot open the clone");
		goto out_close_sfd;
	}
	/* a file its writer left unchanged since the clone was made keeps
	 * the clone's data (a size that differs says otherwise: refreshed) */
	bool same = false;
	for (size_t i = 0; i < c->n_unchanged && !same; i++)
		same = strcmp(c->unchanged[i], rel(c)) == 0;
	struct stat dst;
	if (same && fstat(dfd, &dst) == 0 && dst.st_size == st.st_size) {
		c->rs.unchanged++;
		rc = 0;
	} else {
		amb_refresh_stats before = c->rs;
		rc = refresh_data(c, sfd, dfd, &st);
		/* (not a file cloned whole: that is done for any doubt, as for
		 * a small file btrfs keeps inline, every time) */
		if (!rc && (c->rs.ranges != before.ranges || c->rs.holes != before.holes))
			rc = hot_add(c);
	}
	if (!rc)
		rc = drop_xattrs(c, sfd, dfd);
	if (!rc)
		rc = meta_fd(c, sfd, dfd, &st);
	if (close(dfd) != 0 && rc == 0)
		rc = terr(c, -errno, "close");
out_close_sfd:
	close(sfd);
	return rc;
}

/* delete name (any type) from the shadow directory ddir (rm_entry, on the
 * shadow's filesystem) */
static int refresh_rm(struct tree_ctx *c, int ddir, const char *name)
{
	struct stat st;
	if (fstat(ddir, &st) != 0)
		return terr(c, -errno, "fstat");
	dev_t keep = c->rootdev;
	c->rootdev = st.st_dev;
	int rc = rm_entry(c, -1, ddir, name);
	c->rootdev = keep;
	return rc;
}

/* In a pass over only the files the pass before changed
 * (amb_tree_refresh_converge), is the current entry one to leave alone?
 * Directories are walked; every entry else is left to the next full
 * refresh, unless it is one of those files. */
static bool only_skips(struct tree_ctx *c, const struct stat *st)
{
	if (!c->only_mode || (st && S_ISDIR(st->st_mode)))
		return false;
	for (size_t i = 0; st && i < c->n_only; i++)
		if (strcmp(c->only[i], rel(c)) == 0)
			return false;
	return true;
}

/* an entry of the clone that the volume no longer has */
static int refresh_gone(struct tree_ctx *c, int sdir, int ddir, const char *name)
{
	(void)sdir;
	if (only_skips(c, NULL))
		return 0;
	c->rs.removed++;
	return refresh_rm(c, ddir, name);
}

static int refresh_dir(struct tree_ctx *c, int sdir, int ddir);

static int refresh_entry(struct tree_ctx *c, int sdir, int ddir, const char *name)
{
	struct stat st, dt;
	if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno == ENOENT && only_skips(c, NULL))
			return 0;
		return errno == ENOENT ? refresh_rm(c, ddir, name) : terr(c, -errno, "stat");
	}
	if (only_skips(c, &st))
		return 0;
	if (fstatat(ddir, name, &dt, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno != ENOENT)
			return terr(c, -errno, "stat");
		c->rs.copied++;
		return copy_entry(c, sdir, ddir, name); /* new since */
	}
	/* in place only when neither has other links: a clone inode shared by
	 * two names must not take the content of one of them */
	if (S_ISREG(st.st_mode) && S_ISREG(dt.st_mode) && st.st_nlink == 1 && dt.st_nlink == 1 &&
	    st.st_dev == c->rootdev)
		return refresh_file(c, sdir, ddir, name, &st);
	if (S_ISDIR(st.st_mode) && S_ISDIR(dt.st_mode) && st.st_dev == c->rootdev &&
	    !skipped(c, &st) && !amb_prov_is_mount_root_at(sdir, name)) {
		int sfd = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sfd < 0)
			return errno == ENOENT ? refresh_rm(c, ddir, name) : terr(c, -errno, "cannot open");
		int dfd = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		int rc = dfd < 0 ? terr(c, -errno, "cannot open the clone") : 0;
		struct stat sst;
		if (!rc && fstat(sfd, &sst) != 0)
			rc = terr(c, -errno, "fstat");
		if (!rc)
			rc = refresh_dir(c, sfd, dfd);
		if (!rc)
			rc = drop_xattrs(c, sfd, dfd);
		if (!rc)
			rc = meta_fd(c, sfd, dfd, &sst);
		if (dfd >= 0)
			close(dfd);
		close(sfd);
		return rc;
	}
	/* anything else: copied again as amb_tree_copy would */
	c->rs.copied++;
	int rc = refresh_rm(c, ddir, name);
	return rc ? rc : copy_entry(c, sdir, ddir, name);
}

static int names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int refresh_dir(struct tree_ctx *c, int sdir, int ddir)
{
	struct names ns, nd;
	int rc = list_dir(c, sdir, &ns);
	if (rc)
		return rc;
	rc = list_dir(c, ddir, &nd);
	if (rc) {
		names_free(&ns);
		return rc;
	}
	/* gone from the volume: gone from the clone (names in ns are few
	 * enough per directory for a sorted search) */
	if (ns.n)
		qsort(ns.v, ns.n, sizeof(*ns.v), names_cmp);
	for (size_t i = 0; i < nd.n && rc == 0; i++) {
		if (!ns.n || !bsearch(&nd.v[i], ns.v, ns.n, sizeof(*ns.v), names_cmp))
			rc = at_name(c, sdir, ddir, nd.v[i], refresh_gone);
	}
	for (size_t i = 0; i < ns.n && rc == 0; i++)
		rc = at_name(c, sdir, ddir, ns.v[i], refresh_entry);
	names_free(&ns);
	names_free(&nd);
	return rc;
}

int amb_tree_refresh(const char *prov, const char *volume, const char *shadow,
                     amb_refresh_stats *stats)
{
	return amb_tree_refresh_unchanged(prov, volume, shadow, stats, NULL, 0);
}

/*
 * Before the hold: passes until the clone has caught up.  A refresh of a
 * volume whose writers go on writing leaves the clone behind by what they
 * wrote while the pass ran, and a pass over large fragmented files (the
 * FIEMAP of a 2 GiB database: ~70 ms) lets a log file move on by megabytes,
 * which the refresh in the hold would then clone again.  So after a full
 * pass, up to AMB_CONVERGE_PASSES passes look only at the files whose data
 * the pass before changed, until one changes nothing: the commit's refresh
 * then finds only what was written since the last of them.
 */
#define AMB_CONVERGE_PASSES 3

int amb_tree_refresh_converge(const char *prov, const char *volume, const char *shadow,
                              amb_refresh_stats *stats)
{
	char **only = NULL;
	size_t n_only = 0;
	int rc = 0;
	if (stats)
		memset(stats, 0, sizeof(*stats));
	for (int pass = 0; pass <= AMB_CONVERGE_PASSES && !rc; pass++) {
		struct tree_ctx c;
		struct stat st;
		int sfd = walk_begin(&c, prov, volume, shadow, true, &st);
		if (sfd < 0) {
			rc = sfd;
			break;
		}
		c.only_mode = pass > 0;
		if (stats)
			stats->passes++;
		c.only = only;
		c.n_only = n_only;
		rc = refresh_dir(&c, sfd, c.droot);
		if (!rc && pass == 0)
			rc = meta_fd(&c, sfd, c.droot, &st);
		if (stats) {
			stats->ranges += c.rs.ranges;
			stats->range_bytes += c.rs.range_bytes;
			stats->holes += c.rs.holes;
			stats->whole_files += c.rs.whole_files;
			stats->copied += c.rs.copied;
			stats->removed += c.rs.removed;
		}
		for (size_t i = 0; i < n_only; i++)
			free(only[i]);
		free(only);
		/* the next pass: the files this one changed */
		only = c.hot;
		n_only = c.n_hot;
		c.hot = NULL;
		c.n_hot = c.cap_hot = 0;
		close(c.droot);
		close(sfd);
		ctx_free(&c);
		if (!n_only)
			break;
	}
	for (size_t i = 0; i < n_only; i++)
		free(only[i]);
	free(only);
	return rc;
}

int amb_tree_refresh_unchanged(const char *prov, const char *volume, const char *shadow,
                               amb_refresh_stats *stats, const char *const *rel, size_t n)
{
	int rc;
	struct tree_ctx c;
	struct stat st;
	int sfd = walk_begin(&c, prov, volume, shadow, true, &st);
	if (sfd < 0)
		return sfd;
	c.unchanged = rel;
	c.n_unchanged = rel ? n : 0;
	rc = refresh_dir(&c, sfd, c.droot);
	if (!rc)
		rc = meta_fd(&c, sfd, c.droot, &st);
	if (stats)
		*stats = c.rs;
	close(c.droot);
	close(sfd);
	ctx_free(&c);
	return rc;
}

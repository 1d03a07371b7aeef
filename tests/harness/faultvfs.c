/*
 * faultvfs.c - fault injecting, trace recording amb_vfs (see faultvfs.h).
 *
 * RECORDING.  The live side keeps a namespace (relative name -> inode
 * number) that mirrors the traced directory, and a descriptor -> inode map.
 * Each successful mutating call appends one tr_ent to the trace:
 *
 *   TR_BASE      a file that existed before we saw it: name, inode, content
 *                (durable at once)
 *   TR_CREATE    open(O_CREAT) made a new file: name, inode (directory op)
 *   TR_WRITE     inode, offset, data                          (data op)
 *   TR_TRUNCATE  inode, new length (also open(O_TRUNC))       (data op)
 *   TR_ALLOCATE  inode, offset, length                        (data op)
 *   TR_RENAME    inode, from, to                              (directory op)
 *   TR_UNLINK    inode, name                                  (directory op)
 *   TR_SYNC      inode (name kept for reports)                (sync point)
 *   TR_SYNC_DIR  directory (relative, "" = root)              (sync point)
 *   TR_MARK      text
 *
 * REPLAY.  rp_* state is the durable state after a prefix [0, pos) of the
 * trace: per inode its synced content plus the list of data ops issued
 * since its last sync; the durable namespace plus the list of directory
 * ops not yet made durable by a sync_dir.  faultvfs_materialise() advances
 * pos to the wanted sync point (restarting from 0 if it lies behind) and
 * builds the image from durable + a variant-chosen subset of the pending
 * operations, without changing the replay state.
 */
#ifndef _GNU_SOURCE /* the build defines it */
#define _GNU_SOURCE
#endif
#include "faultvfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECTOR 512u

enum tr_type {
	TR_BASE = 1,
	TR_CREATE,
	TR_WRITE,
	TR_TRUNCATE,
	TR_ALLOCATE,
	TR_RENAME,
	TR_UNLINK,
	TR_SYNC,
	TR_SYNC_DIR,
	TR_MARK,
};

typedef struct tr_ent {
	int type;
	uint32_t ino;
	uint64_t off;
	uint64_t len;
	char *name;    /* relative name / directory / marker text */
	char *name2;   /* rename target */
	uint8_t *data; /* write data / base content (len bytes) */
} tr_ent;

typedef struct ns_ent {
	char *name;
	uint32_t ino;
} ns_ent;

typedef struct nspace {
	ns_ent *e;
	size_t n, cap;
} nspace;

typedef struct rp_file {
	uint8_t *buf;
	size_t len, cap;
	size_t *pend; /* trace indices of data ops since the last sync */
	size_t npend, cappend;
} rp_file;

typedef struct undo {
	char *path;
	uint64_t off;
	uint64_t old_size; /* file size before the write */
	uint8_t *old;      /* bytes it overwrote (within old_size) */
	size_t nold;
} undo;

struct faultvfs {
	amb_vfs vfs; /* first: the table handed to the engine */
	amb_vfs *base;
	int flags;
	pthread_mutex_t mu;

	/* fault injection */
	uint64_t count[FV_NKINDS];
	uint64_t after[FV_NKINDS];
	int f_active;
	enum fv_kind f_kind;
	uint64_t f_nth;
	int f_err;
	int f_persist;
	char *f_filter;
	uint64_t f_fired;
	char f_desc[512];
	char f_path[4096];

	/* FV_LOSSY_SYNC: what each write since the last sync overwrote */
	struct undo *undo;
	size_t nundo, capundo;
	uint64_t undone_writes;

	/* descriptors */
	uint32_t *fdino; /* inode + 0 (0 = untracked) */
	char **fdpath;
	size_t nfd;

	/* recording */
	char *root;      /* as given */
	char *root_real; /* realpath at trace start */
	int tracing;
	nspace live;
	uint32_t next_ino;
	tr_ent *tr;
	size_t ntr, captr;
	size_t *syncpos; /* trace index of each sync point */
	size_t nsync, capsync;
	size_t bytes;

	/* replay */
	size_t rp_pos;
	rp_file *rp_files;
	size_t rp_nfiles;
	nspace rp_ns;
	size_t *rp_dirops;
	size_t rp_ndirops, rp_capdirops;
	fv_image_stats stats;
};

/* ------------------------------------------------------------------------ */
/* small utilities                                                          */

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) {
		fprintf(stderr, "faultvfs: out of memory\n");
		abort();
	}
	return q;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");
	if (!d) {
		fprintf(stderr, "faultvfs: out of memory\n");
		abort();
	}
	return d;
}

#define GROW(arr, n, cap)                                                         \
	do {                                                                      \
		if ((n) >= (cap)) {                                               \
			(cap) = (cap) ? (cap) * 2 : 16;                            \
			(arr) = xrealloc((arr), (cap) * sizeof(*(arr)));           \
		}                                                                 \
	} while (0)

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static const char *kind_names[FV_NKINDS] = {
	[FV_WRITE] = "write",     [FV_SYNC] = "sync",         [FV_ALLOCATE] = "allocate",
	[FV_OPEN_CREATE] = "open-create", [FV_RENAME] = "rename", [FV_SYNC_DIR] = "sync_dir",
	[FV_TRUNCATE] = "truncate", [FV_UNLINK] = "unlink",   [FV_READ] = "read",
	[FV_OPEN] = "open",
};

const char *faultvfs_kind_name(enum fv_kind kind)
{
	return (unsigned)kind < FV_NKINDS ? kind_names[kind] : "?";
}

static void dir_of(const char *rel, char *buf, size_t size)
{
	const char *s = strrchr(rel, '/');
	size_t n = s ? (size_t)(s - rel) : 0;
	if (n >= size)
		n = size - 1;
	memcpy(buf, rel, n);
	buf[n] = '\0';
}

/* Strip "./" components and duplicate slashes; remove a trailing slash. */
static void norm_rel(char *s)
{
	char *r = s, *w = s;
	while (*r) {
		while (*r == '/')
			r++;
		if (r[0] == '.' && (r[1] == '/' || r[1] == '\0')) {
			r += 1;
			continue;
		}
		if (!*r)
			break;
		if (w != s)
			*w++ = '/';
		while (*r && *r != '/')
			*w++ = *r++;
	}
	*w = '\0';
}

/* Relative name of @p path below the root into buf, or NULL if outside. */
static const char *rel_of(faultvfs *fv, const char *path, char *buf, size_t size)
{
	char abs[PATH_MAX * 2];
	if (!fv->root || !path)
		return NULL;
	if (path[0] != '/') {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof(cwd)))
			return NULL;
		snprintf(abs, sizeof(abs), "%s/%s", cwd, path);
	} else {
		snprintf(abs, sizeof(abs), "%s", path);
	}
	const char *roots[2] = {fv->root, fv->root_real};
	for (int i = 0; i < 2; i++) {
		const char *r = roots[i];
		if (!r)
			continue;
		size_t rl = strlen(r);
		while (rl > 1 && r[rl - 1] == '/')
			rl--;
		if (strncmp(abs, r, rl) == 0 && (abs[rl] == '/' || abs[rl] == '\0')) {
			snprintf(buf, size, "%s", abs + rl);
			norm_rel(buf);
			if (strstr(buf, "..") == NULL)
				return buf;
		}
	}
	/* last resort: resolve the directory part */
	if (fv->root_real) {
		char d[PATH_MAX * 2], rd[PATH_MAX];
		amb_path_dir(abs, d, sizeof(d));
		const char *slash = strrchr(abs, '/');
		if (realpath(d, rd)) {
			size_t rl = strlen(fv->root_real);
			if (strncmp(rd, fv->root_real, rl) == 0 && (rd[rl] == '/' || rd[rl] == '\0')) {
				if (snprintf(buf, size, "%s/%s", rd + rl, slash ? slash + 1 : abs) >=
				    (int)size)
					return NULL;
				norm_rel(buf);
				return buf;
			}
		}
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* namespaces                                                               */

static ns_ent *ns_find(nspace *ns, const char *name)
{
	for (size_t i = 0; i < ns->n; i++)
		if (strcmp(ns->e[i].name, name) == 0)
			return &ns->e[i];
	return NULL;
}

static void ns_set(nspace *ns, const char *name, uint32_t ino)
{
	ns_ent *e = ns_find(ns, name);
	if (e) {
		e->ino = ino;
		return;
	}
	GROW(ns->e, ns->n, ns->cap);
	ns->e[ns->n].name = xstrdup(name);
	ns->e[ns->n].ino = ino;
	ns->n++;
}

static void ns_del(nspace *ns, const char *name)
{
	ns_ent *e = ns_find(ns, name);
	if (!e)
		return;
	free(e->name);
	*e = ns->e[--ns->n];
}

static void ns_clear(nspace *ns)
{
	for (size_t i = 0; i < ns->n; i++)
		free(ns->e[i].name);
	ns->n = 0;
}

static void ns_copy(nspace *dst, const nspace *src)
{
	ns_clear(dst);
	for (size_t i = 0; i < src->n; i++)
		ns_set(dst, src->e[i].name, src->e[i].ino);
}

/* ------------------------------------------------------------------------ */
/* recording                                                                */

static tr_ent *tr_add(faultvfs *fv, int type)
{
	GROW(fv->tr, fv->ntr, fv->captr);
	tr_ent *e = &fv->tr[fv->ntr++];
	memset(e, 0, sizeof(*e));
	e->type = type;
	if (type == TR_SYNC || type == TR_SYNC_DIR) {
		GROW(fv->syncpos, fv->nsync, fv->capsync);
		fv->syncpos[fv->nsync++] = fv->ntr - 1;
	}
	return e;
}

static const char *ino_name(faultvfs *fv, uint32_t ino)
{
	for (size_t i = 0; i < fv->live.n; i++)
		if (fv->live.e[i].ino == ino)
			return fv->live.e[i].name;
	return "(unlinked)";
}

/* Read a whole regular file (plain POSIX: the harness's own I/O). */
static int slurp(const char *path, uint8_t **data, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EISDIR;
	}
	size_t n = (size_t)st.st_size, done = 0;
	uint8_t *buf = xrealloc(NULL, n);
	while (done < n) {
		ssize_t r = pread(fd, buf + done, n - done, (off_t)done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		done += (size_t)r;
	}
	close(fd);
	*data = buf;
	*len = done;
	return 0;
}

/* The inode of rel in the live namespace; a file we have not met yet that
 * exists on disk is recorded as a durable baseline.  0 if none. */
static uint32_t live_ino(faultvfs *fv, const char *path, const char *rel)
{
	ns_ent *e = ns_find(&fv->live, rel);
	if (e)
		return e->ino;
	uint8_t *data = NULL;
	size_t len = 0;
	if (slurp(path, &data, &len) != 0)
		return 0;
	uint32_t ino = ++fv->next_ino;
	tr_ent *t = tr_add(fv, TR_BASE);
	t->ino = ino;
	t->name = xstrdup(rel);
	t->data = data;
	t->len = len;
	fv->bytes += len;
	ns_set(&fv->live, rel, ino);
	return ino;
}

static void scan_dir(faultvfs *fv, const char *abs, const char *rel)
{
	DIR *d = opendir(abs);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char a[PATH_MAX], r[PATH_MAX];
		snprintf(a, sizeof(a), "%s/%s", abs, de->d_name);
		if (*rel)
			snprintf(r, sizeof(r), "%s/%s", rel, de->d_name);
		else
			snprintf(r, sizeof(r), "%s", de->d_name);
		struct stat st;
		if (lstat(a, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			scan_dir(fv, a, r);
		else if (S_ISREG(st.st_mode))
			live_ino(fv, a, r);
	}
	closedir(d);
}

static void fd_set_info(faultvfs *fv, int fd, uint32_t ino, const char *path)
{
	if (fd < 0)
		return;
	if ((size_t)fd >= fv->nfd) {
		size_t n = (size_t)fd + 64;
		fv->fdino = xrealloc(fv->fdino, n * sizeof(*fv->fdino));
		fv->fdpath = xrealloc(fv->fdpath, n * sizeof(*fv->fdpath));
		for (size_t i = fv->nfd; i < n; i++) {
			fv->fdino[i] = 0;
			fv->fdpath[i] = NULL;
		}
		fv->nfd = n;
	}
	fv->fdino[fd] = ino;
	free(fv->fdpath[fd]);
	fv->fdpath[fd] = path ? xstrdup(path) : NULL;
}

static uint32_t fd_ino(faultvfs *fv, int fd)
{
	return fd >= 0 && (size_t)fd < fv->nfd ? fv->fdino[fd] : 0;
}

static const char *fd_path(faultvfs *fv, int fd)
{
	return fd >= 0 && (size_t)fd < fv->nfd && fv->fdpath[fd] ? fv->fdpath[fd] : "";
}

/* ------------------------------------------------------------------------ */
/* fault injection                                                          */

/* Count a call; returns 0 to go on or -errno to fail it (caller holds mu). */
static int fault_check(faultvfs *fv, enum fv_kind kind, const char *path)
{
	if (fv->f_filter && (!path || !strstr(path, fv->f_filter)))
		return 0;
	uint64_t n = ++fv->count[kind];
	if (!fv->f_active || fv->f_kind != kind)
		return 0;
	if (n == fv->f_nth || (fv->f_persist && n > fv->f_nth)) {
		if (fv->f_fired++ == 0) {
			const char *b = path ? strrchr(path, '/') : NULL;
			snprintf(fv->f_path, sizeof(fv->f_path), "%s", path ? path : "");
			snprintf(fv->f_desc, sizeof(fv->f_desc), "%s of %s (call %llu): %s",
			         kind_names[kind], b ? b + 1 : (path ? path : "?"),
			         (unsigned long long)n, strerror(fv->f_err));
		}
		return -fv->f_err;
	}
	return 0;
}

static void count_success(faultvfs *fv, enum fv_kind kind, const char *path)
{
	if (fv->f_filter && (!path || !strstr(path, fv->f_filter)))
		return;
	if (fv->f_fired)
		fv->after[kind]++;
}

/* ------------------------------------------------------------------------ */
/* FV_LOSSY_SYNC                                                            */

static void undo_record(faultvfs *fv, int fd, size_t n, off_t off)
{
	off_t size = 0;
	if (fv->base->size(fv->base, fd, &size) != 0)
		return;
	GROW(fv->undo, fv->nundo, fv->capundo);
	undo *u = &fv->undo[fv->nundo++];
	u->path = xstrdup(fd_path(fv, fd));
	u->off = (uint64_t)off;
	u->old_size = (uint64_t)size;
	u->nold = 0;
	u->old = NULL;
	if (off < size) {
		size_t m = (size_t)(size - off) < n ? (size_t)(size - off) : n;
		u->old = xrealloc(NULL, m);
		ssize_t g = fv->base->pread(fv->base, fd, u->old, m, off);
		u->nold = g > 0 ? (size_t)g : 0;
	}
}

static void undo_drop(faultvfs *fv, const char *path)
{
	size_t w = 0;
	for (size_t i = 0; i < fv->nundo; i++) {
		if (strcmp(fv->undo[i].path, path) == 0) {
			free(fv->undo[i].path);
			free(fv->undo[i].old);
		} else {
			fv->undo[w++] = fv->undo[i];
		}
	}
	fv->nundo = w;
}

/* The writes to fd's file since its last sync never reach the disk. */
static void undo_apply(faultvfs *fv, int fd)
{
	const char *path = fd_path(fv, fd);
	uint64_t size = UINT64_MAX;
	for (size_t i = fv->nundo; i-- > 0;) {
		undo *u = &fv->undo[i];
		if (strcmp(u->path, path) != 0)
			continue;
		if (u->nold)
			fv->base->pwrite(fv->base, fd, u->old, u->nold, (off_t)u->off);
		size = u->old_size;
		fv->undone_writes++;
	}
	if (size != UINT64_MAX) {
		off_t cur = 0;
		if (fv->base->size(fv->base, fd, &cur) == 0 && (uint64_t)cur > size)
			fv->base->truncate(fv->base, fd, (off_t)size);
	}
	undo_drop(fv, path);
}

uint64_t faultvfs_undone_writes(faultvfs *fv)
{
	pthread_mutex_lock(&fv->mu);
	uint64_t n = fv->undone_writes;
	pthread_mutex_unlock(&fv->mu);
	return n;
}

/* ------------------------------------------------------------------------ */
/* the vfs                                                                  */

static faultvfs *FV(amb_vfs *v)
{
	return (faultvfs *)v->ctx;
}

static int fv_open(amb_vfs *v, const char *path, int flags, int mode)
{
	faultvfs *fv = FV(v);
	enum fv_kind kind = (flags & O_CREAT) ? FV_OPEN_CREATE : FV_OPEN;
	char rb[PATH_MAX];
	pthread_mutex_lock(&fv->mu);
	int r = fault_check(fv, kind, path);
	if (r) {
		pthread_mutex_unlock(&fv->mu);
		return r;
	}
	const char *rel = fv->tracing ? rel_of(fv, path, rb, sizeof(rb)) : NULL;
	uint32_t ino = 0;
	if (rel && *rel)
		ino = live_ino(fv, path, rel);
	int fd = fv->base->open(fv->base, path, flags, mode);
	if (fd >= 0) {
		count_success(fv, kind, path);
		if (rel && *rel) {
			struct stat st;
			int isreg = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
			if (!isreg) {
				ino = 0;
			} else if (!ino) {
				/* a new file (O_CREAT) */
				ino = ++fv->next_ino;
				tr_ent *t = tr_add(fv, TR_CREATE);
				t->ino = ino;
				t->name = xstrdup(rel);
				ns_set(&fv->live, rel, ino);
			} else if ((flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY) {
				tr_ent *t = tr_add(fv, TR_TRUNCATE);
				t->ino = ino;
				t->len = 0;
			}
		}
		fd_set_info(fv, fd, ino, path);
	}
	pthread_mutex_unlock(&fv->mu);
	return fd;
}

static int fv_close(amb_vfs *v, int fd)
{
	faultvfs *fv = FV(v);
	pthread_mutex_lock(&fv->mu);
	if (fd >= 0 && (size_t)fd < fv->nfd) {
		fv->fdino[fd] = 0;
		free(fv->fdpath[fd]);
		fv->fdpath[fd] = NULL;
	}
	int r = fv->base->close(fv->base, fd);
	pthread_mutex_unlock(&fv->mu);
	return r;
}

static ssize_t fv_pread(amb_vfs *v, int fd, void *buf, size_t n, off_t off)
{
	faultvfs *fv = FV(v);
	pthread_mutex_lock(&fv->mu);
	int r = fault_check(fv, FV_READ, fd_path(fv, fd));
	pthread_mutex_unlock(&fv->mu);
	if (r)
		return r;
	/* reads need no ordering with the trace */
	return fv->base->pread(fv->base, fd, buf, n, off);
}

static ssize_t fv_pwrite(amb_vfs *v, int fd, const void *buf, size_t n, off_t off)
{
	faultvfs *fv = FV(v);
	pthread_mutex_lock(&fv->mu);
	ssize_t r = fault_check(fv, FV_WRITE, fd_path(fv, fd));
	if (r == 0) {
		if (fv->flags & FV_LOSSY_SYNC)
			undo_record(fv, fd, n, off);
		r = fv->base->pwrite(fv->base, fd, buf, n, off);
		uint32_t ino = fd_ino(fv, fd);
		if (r >= 0) {
			count_success(fv, FV_WRITE, fd_path(fv, fd));
			if (fv->tracing && ino) {
				tr_ent *t = tr_add(fv, TR_WRITE);
				t->ino = ino;
				t->off = (uint64_t)off;
				t->len = (uint64_t)r;
				t->data = xrealloc(NULL, (size_t)r);
				memcpy(t->data, buf, (size_t)r);
				fv->bytes += (size_t)r;
			}
		}
	}
	pthread_mutex_unlock(&fv->mu);
	return r;
}

static int fv_sync(amb_vfs *v, int fd, int datasync)
{
	faultvfs *fv = FV(v);
	pthread_mutex_lock(&fv->mu);
	int r = fault_check(fv, FV_SYNC, fd_path(fv, fd));
	if (r != 0 && (fv->flags & FV_LOSSY_SYNC))
		undo_apply(fv, fd);
	if (r == 0) {
		r = fv->base->sync(fv->base, fd, datasync);
		if (r == 0 && (fv->flags & FV_LOSSY_SYNC))
			undo_drop(fv, fd_path(fv, fd));
		uint32_t ino = fd_ino(fv, fd);
		if (r == 0) {
			count_success(fv, FV_SYNC, fd_path(fv, fd));
			if (fv->tracing && ino) {
				tr_ent *t = tr_add(fv, TR_SYNC);
				t->ino = ino;
				t->name = xstrdup(ino_name(fv, ino));
			}
		}
	}
	pthread_mutex_unlock(&fv->mu);
	return r;
}

static int fv_truncate(amb_vfs *v, int fd, off_t len)
{
	faultvfs *fv = FV(v);
	pthread_mutex_lock(&fv->mu);
	int r = fault_check(fv, FV_TRUNCATE, fd_path(fv, fd));
	if (r == 0) {
		r = fv->base->truncate(fv->base, fd, len);
		uint32_t ino = fd_ino(fv, fd);
		if (r == 0) {
			count_success(fv, FV_TRUNCATE, fd_path(fv, fd));
			if (fv->tracing && ino) {
				tr_ent *t = tr_add(fv, TR_TRUNCATE);
				t->ino = ino;
				t->len = (uint64_t)len;
			}
		}
	}
	pthread_mutex_unlock(&fv->mu);
	return r;
}

static int fv_allocate(amb_vfs *v, int fd, off_t off, off_t len)
{
	faultvfs *fv = FV(v);
	pthread_mutex_lock(&fv->mu);
	int r = fault_check(fv, FV_ALLOCATE, fd_path(fv, fd));
	if (r == 0) {
		r = fv->base->allocate(fv->base, fd, off, len);
		uint32_t ino = fd_ino(fv, fd);
		if (r == 0) {
			count_success(fv, FV_ALLOCATE, fd_path(fv, fd));
			if (fv->tracing && ino) {
				tr_ent *t = tr_add(fv, TR_ALLOCATE);
				t->ino = ino;
				t->off = (uint64_t)off;
				t->len = (uint64_t)len;
			}
		}
	}
	pthread_mutex_unlock(&fv->mu);
	return r;
}

static int fv_size(amb_vfs *v, int fd, off_t *size)
{
	faultvfs *fv = FV(v);
	return fv->base->size(fv->base, fd, size);
}

static int fv_rename(amb_vfs *v, const char *from, const char *to)
{
	faultvfs *fv = FV(v);
	char rb1[PATH_MAX], rb2[PATH_MAX];
	pthread_mutex_lock(&fv->mu);
	int r = fault_check(fv, FV_RENAME, to);
	if (r == 0) {
		const char *rf = fv->tracing ? rel_of(fv, from, rb1, sizeof(rb1)) : NULL;
		const char *rt = fv->tracing ? rel_of(fv, to, rb2, sizeof(rb2)) : NULL;
		uint32_t ino = rf && *rf ? live_ino(fv, from, rf) : 0;
		if (rt && *rt)
			live_ino(fv, to, rt); /* the file it replaces, if unseen */
		r = fv->base->rename(fv->base, from, to);
		if (r == 0) {
			count_success(fv, FV_RENAME, to);
			/* descriptors follow the file: their path is its new name */
			for (size_t i = 0; i < fv->nfd; i++)
				if (fv->fdpath[i] && strcmp(fv->fdpath[i], from) == 0) {
					free(fv->fdpath[i]);
					fv->fdpath[i] = xstrdup(to);
				}
			for (size_t i = 0; i < fv->nundo; i++)
				if (strcmp(fv->undo[i].path, from) == 0) {
					free(fv->undo[i].path);
					fv->undo[i].path = xstrdup(to);
				}
			if (ino && rt && *rt) {
				tr_ent *t = tr_add(fv, TR_RENAME);
				t->ino = ino;
				t->name = xstrdup(rf);
				t->name2 = xstrdup(rt);
				ns_del(&fv->live, rf);
				ns_set(&fv->live, rt, ino);
			} else if (ino) {
				/* moved out of the traced tree: gone */
				tr_ent *t = tr_add(fv, TR_UNLINK);
				t->ino = ino;
				t->name = xstrdup(rf);
				ns_del(&fv->live, rf);
			} else if (rt && *rt) {
				ns_del(&fv->live, rt);
				live_ino(fv, to, rt); /* moved in from outside */
			}
		}
	}
	pthread_mutex_unlock(&fv->mu);
	return r;
}

static int fv_unlink(amb_vfs *v, const char *path)
{
	faultvfs *fv = FV(v);
	char rb[PATH_MAX];
	pthread_mutex_lock(&fv->mu);
	int r = fault_check(fv, FV_UNLINK, path);
	if (r == 0) {
		const char *rel = fv->tracing ? rel_of(fv, path, rb, sizeof(rb)) : NULL;
		uint32_t ino = rel && *rel ? live_ino(fv, path, rel) : 0;
		r = fv->base->unlink(fv->base, path);
		if (r == 0) {
			count_success(fv, FV_UNLINK, path);
			if (ino) {
				tr_ent *t = tr_add(fv, TR_UNLINK);
				t->ino = ino;
				t->name = xstrdup(rel);
				ns_del(&fv->live, rel);
			}
		}
	}
	pthread_mutex_unlock(&fv->mu);
	return r;
}

static int fv_sync_dir(amb_vfs *v, const char *dir)
{
	faultvfs *fv = FV(v);
	char rb[PATH_MAX];
	pthread_mutex_lock(&fv->mu);
	int r = fault_check(fv, FV_SYNC_DIR, dir);
	if (r == 0) {
		r = fv->base->sync_dir(fv->base, dir);
		if (r == 0) {
			count_success(fv, FV_SYNC_DIR, dir);
			const char *rel = fv->tracing ? rel_of(fv, dir, rb, sizeof(rb)) : NULL;
			if (rel) {
				tr_ent *t = tr_add(fv, TR_SYNC_DIR);
				t->name = xstrdup(rel);
			}
		}
	}
	pthread_mutex_unlock(&fv->mu);
	return r;
}

/* ------------------------------------------------------------------------ */
/* public: setup and faults                                                 */

faultvfs *faultvfs_new(const char *root, amb_vfs *base, int flags)
{
	faultvfs *fv = calloc(1, sizeof(*fv));
	if (!fv)
		return NULL;
	fv->base = base ? base : amb_vfs_posix();
	fv->flags = flags;
	pthread_mutex_init(&fv->mu, NULL);
	if (root) {
		fv->root = xstrdup(root);
		size_t l = strlen(fv->root);
		while (l > 1 && fv->root[l - 1] == '/')
			fv->root[--l] = '\0';
	}
	fv->vfs = (amb_vfs){
		.open = fv_open,
		.close = fv_close,
		.pread = fv_pread,
		.pwrite = fv_pwrite,
		.sync = fv_sync,
		.truncate = fv_truncate,
		.allocate = fv_allocate,
		.size = fv_size,
		.rename = fv_rename,
		.unlink = fv_unlink,
		.sync_dir = fv_sync_dir,
		.ctx = fv,
	};
	return fv;
}

static void undo_drop_all(faultvfs *fv)
{
	for (size_t i = 0; i < fv->nundo; i++) {
		free(fv->undo[i].path);
		free(fv->undo[i].old);
	}
	fv->nundo = 0;
}

static void rp_reset(faultvfs *fv)
{
	for (size_t i = 0; i < fv->rp_nfiles; i++) {
		free(fv->rp_files[i].buf);
		free(fv->rp_files[i].pend);
	}
	free(fv->rp_files);
	fv->rp_files = NULL;
	fv->rp_nfiles = 0;
	ns_clear(&fv->rp_ns);
	fv->rp_ndirops = 0;
	fv->rp_pos = 0;
}

void faultvfs_free(faultvfs *fv)
{
	if (!fv)
		return;
	rp_reset(fv);
	free(fv->rp_ns.e);
	free(fv->rp_dirops);
	for (size_t i = 0; i < fv->ntr; i++) {
		free(fv->tr[i].name);
		free(fv->tr[i].name2);
		free(fv->tr[i].data);
	}
	free(fv->tr);
	free(fv->syncpos);
	ns_clear(&fv->live);
	free(fv->live.e);
	for (size_t i = 0; i < fv->nfd; i++)
		free(fv->fdpath[i]);
	free(fv->fdpath);
	free(fv->fdino);
	undo_drop_all(fv);
	free(fv->undo);
	free(fv->f_filter);
	free(fv->root);
	free(fv->root_real);
	pthread_mutex_destroy(&fv->mu);
	free(fv);
}

amb_vfs *faultvfs_vfs(faultvfs *fv)
{
	return &fv->vfs;
}

void faultvfs_fail(faultvfs *fv, enum fv_kind kind, uint64_t nth, int err, int persistent)
{
	pthread_mutex_lock(&fv->mu);
	fv->f_active = 1;
	fv->f_kind = kind;
	fv->f_nth = nth;
	fv->f_err = err;
	fv->f_persist = persistent;
	fv->f_fired = 0;
	fv->f_desc[0] = '\0';
	fv->f_path[0] = '\0';
	memset(fv->after, 0, sizeof(fv->after));
	pthread_mutex_unlock(&fv->mu);
}

void faultvfs_fail_filter(faultvfs *fv, const char *substr)
{
	pthread_mutex_lock(&fv->mu);
	free(fv->f_filter);
	fv->f_filter = substr ? xstrdup(substr) : NULL;
	pthread_mutex_unlock(&fv->mu);
}

void faultvfs_clear(faultvfs *fv)
{
	pthread_mutex_lock(&fv->mu);
	fv->f_active = 0;
	pthread_mutex_unlock(&fv->mu);
}

uint64_t faultvfs_count(faultvfs *fv, enum fv_kind kind)
{
	pthread_mutex_lock(&fv->mu);
	uint64_t n = (unsigned)kind < FV_NKINDS ? fv->count[kind] : 0;
	pthread_mutex_unlock(&fv->mu);
	return n;
}

void faultvfs_reset_counts(faultvfs *fv)
{
	pthread_mutex_lock(&fv->mu);
	memset(fv->count, 0, sizeof(fv->count));
	memset(fv->after, 0, sizeof(fv->after));
	pthread_mutex_unlock(&fv->mu);
}

uint64_t faultvfs_fired(faultvfs *fv)
{
	pthread_mutex_lock(&fv->mu);
	uint64_t n = fv->f_fired;
	pthread_mutex_unlock(&fv->mu);
	return n;
}

const char *faultvfs_fired_desc(faultvfs *fv)
{
	return fv->f_desc;
}

const char *faultvfs_fired_path(faultvfs *fv)
{
	return fv->f_path;
}

uint64_t faultvfs_count_after_fault(faultvfs *fv, enum fv_kind kind)
{
	pthread_mutex_lock(&fv->mu);
	uint64_t n = (unsigned)kind < FV_NKINDS ? fv->after[kind] : 0;
	pthread_mutex_unlock(&fv->mu);
	return n;
}

/* ------------------------------------------------------------------------ */
/* public: trace                                                            */

int faultvfs_trace_start(faultvfs *fv)
{
	if (!fv->root)
		return -EINVAL;
	pthread_mutex_lock(&fv->mu);
	char rp[PATH_MAX];
	if (realpath(fv->root, rp)) {
		free(fv->root_real);
		fv->root_real = xstrdup(rp);
	}
	fv->tracing = 1;
	scan_dir(fv, fv->root, "");
	pthread_mutex_unlock(&fv->mu);
	return 0;
}

void faultvfs_trace_stop(faultvfs *fv)
{
	pthread_mutex_lock(&fv->mu);
	fv->tracing = 0;
	pthread_mutex_unlock(&fv->mu);
}

size_t faultvfs_mark(faultvfs *fv, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&fv->mu);
	size_t n = fv->nsync;
	if (fv->tracing) {
		tr_ent *t = tr_add(fv, TR_MARK);
		t->name = xstrdup(buf);
	}
	pthread_mutex_unlock(&fv->mu);
	return n;
}

size_t faultvfs_nsyncs(faultvfs *fv)
{
	pthread_mutex_lock(&fv->mu);
	size_t n = fv->nsync;
	pthread_mutex_unlock(&fv->mu);
	return n;
}

size_t faultvfs_trace_len(faultvfs *fv)
{
	pthread_mutex_lock(&fv->mu);
	size_t n = fv->ntr;
	pthread_mutex_unlock(&fv->mu);
	return n;
}

size_t faultvfs_trace_bytes(faultvfs *fv)
{
	pthread_mutex_lock(&fv->mu);
	size_t n = fv->bytes;
	pthread_mutex_unlock(&fv->mu);
	return n;
}

static void ent_desc(const tr_ent *t, char *buf, size_t size)
{
	switch (t->type) {
	case TR_BASE:
		snprintf(buf, size, "base %s #%u (%llu bytes)", t->name, t->ino,
		         (unsigned long long)t->len);
		break;
	case TR_CREATE:
		snprintf(buf, size, "create %s #%u", t->name, t->ino);
		break;
	case TR_WRITE:
		snprintf(buf, size, "write #%u off %llu len %llu", t->ino,
		         (unsigned long long)t->off, (unsigned long long)t->len);
		break;
	case TR_TRUNCATE:
		snprintf(buf, size, "truncate #%u to %llu", t->ino, (unsigned long long)t->len);
		break;
	case TR_ALLOCATE:
		snprintf(buf, size, "allocate #%u off %llu len %llu", t->ino,
		         (unsigned long long)t->off, (unsigned long long)t->len);
		break;
	case TR_RENAME:
		snprintf(buf, size, "rename #%u %s -> %s", t->ino, t->name, t->name2);
		break;
	case TR_UNLINK:
		snprintf(buf, size, "unlink #%u %s", t->ino, t->name);
		break;
	case TR_SYNC:
		snprintf(buf, size, "sync %s #%u", t->name, t->ino);
		break;
	case TR_SYNC_DIR:
		snprintf(buf, size, "sync_dir '%s'", t->name);
		break;
	case TR_MARK:
		snprintf(buf, size, "mark \"%s\"", t->name);
		break;
	default:
		snprintf(buf, size, "?");
	}
}

void faultvfs_sync_desc(faultvfs *fv, size_t k, char *buf, size_t size)
{
	pthread_mutex_lock(&fv->mu);
	if (k >= fv->nsync)
		snprintf(buf, size, "end of trace");
	else
		ent_desc(&fv->tr[fv->syncpos[k]], buf, size);
	pthread_mutex_unlock(&fv->mu);
}

void faultvfs_dump(faultvfs *fv, size_t k, int before, int after)
{
	pthread_mutex_lock(&fv->mu);
	size_t at = k < fv->nsync ? fv->syncpos[k] : fv->ntr;
	size_t lo = at > (size_t)before ? at - (size_t)before : 0;
	size_t hi = at + (size_t)after < fv->ntr ? at + (size_t)after : fv->ntr;
	for (size_t i = lo; i < hi; i++) {
		char d[PATH_MAX + 100];
		ent_desc(&fv->tr[i], d, sizeof(d));
		fprintf(stderr, "%s %6zu %s\n", i == at ? "=>" : "  ", i, d);
	}
	pthread_mutex_unlock(&fv->mu);
}

/* ------------------------------------------------------------------------ */
/* replay and images                                                        */

static void buf_reserve(uint8_t **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return;
	size_t c = *cap ? *cap : 4096;
	while (c < need)
		c *= 2;
	*p = xrealloc(*p, c);
	*cap = c;
}

/* Write [off, off+n) of data into the file buffer, zero-filling a gap. */
static void put_bytes(uint8_t **p, size_t *len, size_t *cap, uint64_t off, const uint8_t *data,
                      size_t n)
{
	size_t end = (size_t)off + n;
	if (n == 0)
		return; /* nothing written (and *p may still be NULL) */
	buf_reserve(p, cap, end);
	if ((size_t)off > *len)
		memset(*p + *len, 0, (size_t)off - *len);
	memcpy(*p + off, data, n);
	if (end > *len)
		*len = end;
}

static void set_len(uint8_t **p, size_t *len, size_t *cap, size_t nl)
{
	buf_reserve(p, cap, nl);
	if (nl > *len)
		memset(*p + *len, 0, nl - *len);
	*len = nl;
}

static rp_file *rp_file_get(faultvfs *fv, uint32_t ino)
{
	if (ino >= fv->rp_nfiles) {
		size_t n = (size_t)ino + 16;
		fv->rp_files = xrealloc(fv->rp_files, n * sizeof(*fv->rp_files));
		memset(fv->rp_files + fv->rp_nfiles, 0, (n - fv->rp_nfiles) * sizeof(*fv->rp_files));
		fv->rp_nfiles = n;
	}
	return &fv->rp_files[ino];
}

/* Apply data op t completely to (p, len). */
static void apply_full(const tr_ent *t, uint8_t **p, size_t *len, size_t *cap)
{
	switch (t->type) {
	case TR_WRITE:
		put_bytes(p, len, cap, t->off, t->data, (size_t)t->len);
		break;
	case TR_TRUNCATE:
		set_len(p, len, cap, (size_t)t->len);
		break;
	case TR_ALLOCATE:
		/* FALLOC_FL_KEEP_SIZE (vfs.h): reserves blocks, the size and the
		 * content do not change.  Recorded for the trace only. */
		break;
	}
}

/* Apply namespace op t to ns. */
static void ns_apply(nspace *ns, const tr_ent *t)
{
	ns_ent *e;
	switch (t->type) {
	case TR_CREATE:
		ns_set(ns, t->name, t->ino);
		break;
	case TR_RENAME:
		e = ns_find(ns, t->name);
		if (e && e->ino == t->ino)
			ns_del(ns, t->name);
		ns_set(ns, t->name2, t->ino);
		break;
	case TR_UNLINK:
		e = ns_find(ns, t->name);
		if (e && e->ino == t->ino)
			ns_del(ns, t->name);
		break;
	}
}

static int dirop_touches(const tr_ent *t, const char *dir)
{
	char d[PATH_MAX];
	dir_of(t->name, d, sizeof(d));
	if (strcmp(d, dir) == 0)
		return 1;
	if (t->name2) {
		dir_of(t->name2, d, sizeof(d));
		if (strcmp(d, dir) == 0)
			return 1;
	}
	return 0;
}

static void rp_step(faultvfs *fv, size_t i)
{
	const tr_ent *t = &fv->tr[i];
	rp_file *f;
	switch (t->type) {
	case TR_BASE:
		f = rp_file_get(fv, t->ino);
		f->len = 0;
		put_bytes(&f->buf, &f->len, &f->cap, 0, t->data, (size_t)t->len);
		ns_set(&fv->rp_ns, t->name, t->ino);
		break;
	case TR_CREATE:
		f = rp_file_get(fv, t->ino);
		f->len = 0;
		/* fall through */
	case TR_RENAME:
	case TR_UNLINK:
		if (fv->flags & FV_IMMEDIATE_DIROPS) {
			ns_apply(&fv->rp_ns, t);
		} else {
			GROW(fv->rp_dirops, fv->rp_ndirops, fv->rp_capdirops);
			fv->rp_dirops[fv->rp_ndirops++] = i;
		}
		break;
	case TR_WRITE:
	case TR_TRUNCATE:
	case TR_ALLOCATE:
		f = rp_file_get(fv, t->ino);
		GROW(f->pend, f->npend, f->cappend);
		f->pend[f->npend++] = i;
		break;
	case TR_SYNC:
		f = rp_file_get(fv, t->ino);
		for (size_t j = 0; j < f->npend; j++)
			apply_full(&fv->tr[f->pend[j]], &f->buf, &f->len, &f->cap);
		f->npend = 0;
		break;
	case TR_SYNC_DIR: {
		size_t w = 0;
		for (size_t j = 0; j < fv->rp_ndirops; j++) {
			const tr_ent *d = &fv->tr[fv->rp_dirops[j]];
			if (dirop_touches(d, t->name))
				ns_apply(&fv->rp_ns, d);
			else
				fv->rp_dirops[w++] = fv->rp_dirops[j];
		}
		fv->rp_ndirops = w;
		break;
	}
	default:
		break;
	}
}

static int mkdirs(const char *path)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s", path);
	for (char *p = tmp + 1; *p; p++) {
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
				return -errno;
			*p = '/';
		}
	}
	if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int write_file(const char *path, const uint8_t *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	size_t done = 0;
	while (done < len) {
		ssize_t r = write(fd, data + done, len - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? -errno : -EIO;
			close(fd);
			return e;
		}
		done += (size_t)r;
	}
	return close(fd) < 0 ? -errno : 0;
}

/* Apply a pending write sector by sector for the RANDOM/GARBAGE variants. */
static void apply_write_random(faultvfs *fv, const tr_ent *t, uint8_t **p, size_t *len,
                               size_t *cap, uint64_t *rng, size_t *sector_no, size_t garbage_at)
{
	int mode = (int)(splitmix(rng) % 10); /* 0-3 whole, 4-5 dropped, 6-9 torn */
	int torn = mode >= 6, any = 0, all = 1;
	uint64_t off = t->off, end = t->off + t->len;
	while (off < end) {
		uint64_t se = (off / SECTOR + 1) * SECTOR;
		if (se > end)
			se = end;
		size_t n = (size_t)(se - off);
		size_t idx = (*sector_no)++;
		int apply = mode <= 3 || (torn && (splitmix(rng) & 1));
		if (idx == garbage_at) {
			uint8_t g[SECTOR];
			memcpy(g, t->data + (off - t->off), n);
			for (size_t i = n / 2; i < n; i++)
				g[i] = (uint8_t)splitmix(rng);
			put_bytes(p, len, cap, off, g, n);
			fv->stats.garbage_sectors++;
			any = 1;
		} else if (apply) {
			put_bytes(p, len, cap, off, t->data + (off - t->off), n);
			any = 1;
		} else {
			all = 0;
		}
		off = se;
	}
	if (any)
		fv->stats.applied_writes++;
	if (any && !all)
		fv->stats.torn_writes++;
}

static size_t sectors_of(const tr_ent *t)
{
	if (t->len == 0)
		return 0;
	return (size_t)((t->off + t->len - 1) / SECTOR - t->off / SECTOR + 1);
}

static int dir_empty_or_make(const char *dst)
{
	int r = mkdirs(dst);
	if (r)
		return r;
	DIR *d = opendir(dst);
	if (!d)
		return -errno;
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n ? -ENOTEMPTY : 0;
}

int faultvfs_materialise(faultvfs *fv, size_t k, enum fv_crash variant, uint64_t seed,
                         const char *dstdir)
{
	pthread_mutex_lock(&fv->mu);
	int rc = 0;
	if (k > fv->nsync) {
		rc = -EINVAL;
		goto out;
	}
	size_t stop = k < fv->nsync ? fv->syncpos[k] : fv->ntr;
	if (fv->rp_pos > stop)
		rp_reset(fv);
	while (fv->rp_pos < stop)
		rp_step(fv, fv->rp_pos++);

	rc = dir_empty_or_make(dstdir);
	if (rc)
		goto out;

	memset(&fv->stats, 0, sizeof(fv->stats));
	uint64_t rng = seed * 0x2545f4914f6cdd1dull + k * 0x9e3779b97f4a7c15ull + 1;
	int random = variant == FV_CRASH_RANDOM || variant == FV_CRASH_GARBAGE;

	/* namespace: durable + a prefix of the pending directory ops */
	nspace ns = {0};
	ns_copy(&ns, &fv->rp_ns);
	size_t np = fv->rp_ndirops, take;
	if (variant == FV_CRASH_ALL)
		take = np;
	else if (variant == FV_CRASH_NONE)
		take = 0;
	else
		take = (size_t)(splitmix(&rng) % (np + 1));
	for (size_t j = 0; j < take; j++)
		ns_apply(&ns, &fv->tr[fv->rp_dirops[j]]);
	fv->stats.pending_dirops = np;
	fv->stats.applied_dirops = take;

	/* sort the names so that the random choices do not depend on the
	 * order of the namespace array */
	for (size_t i = 1; i < ns.n; i++)
		for (size_t j = i; j > 0 && strcmp(ns.e[j - 1].name, ns.e[j].name) > 0; j--) {
			ns_ent tmp = ns.e[j];
			ns.e[j] = ns.e[j - 1];
			ns.e[j - 1] = tmp;
		}

	/* the garbage sector: one among all pending sectors of visible files */
	size_t garbage_at = SIZE_MAX, sector_no = 0;
	if (variant == FV_CRASH_GARBAGE) {
		size_t total = 0;
		for (size_t i = 0; i < ns.n; i++) {
			rp_file *f = rp_file_get(fv, ns.e[i].ino);
			for (size_t j = 0; j < f->npend; j++)
				if (fv->tr[f->pend[j]].type == TR_WRITE)
					total += sectors_of(&fv->tr[f->pend[j]]);
		}
		if (total)
			garbage_at = (size_t)(splitmix(&rng) % total);
	}

	uint8_t *p = NULL;
	size_t cap = 0;
	for (size_t i = 0; i < ns.n && rc == 0; i++) {
		rp_file *f = rp_file_get(fv, ns.e[i].ino);
		size_t len = 0;
		set_len(&p, &len, &cap, 0);
		if (f->len)
			put_bytes(&p, &len, &cap, 0, f->buf, f->len);
		for (size_t j = 0; j < f->npend; j++) {
			const tr_ent *t = &fv->tr[f->pend[j]];
			if (t->type == TR_WRITE)
				fv->stats.pending_writes++;
			if (variant == FV_CRASH_ALL) {
				apply_full(t, &p, &len, &cap);
				if (t->type == TR_WRITE)
					fv->stats.applied_writes++;
			} else if (random) {
				if (t->type == TR_WRITE)
					apply_write_random(fv, t, &p, &len, &cap, &rng, &sector_no,
					                   garbage_at);
				else if (splitmix(&rng) & 1)
					apply_full(t, &p, &len, &cap);
			}
		}
		char path[PATH_MAX * 2], dir[PATH_MAX * 2];
		snprintf(path, sizeof(path), "%s/%s", dstdir, ns.e[i].name);
		amb_path_dir(path, dir, sizeof(dir));
		rc = mkdirs(dir);
		if (rc == 0)
			rc = write_file(path, p, len);
		fv->stats.files++;
	}
	free(p);
	ns_clear(&ns);
	free(ns.e);
out:
	pthread_mutex_unlock(&fv->mu);
	return rc;
}

void faultvfs_image_stats(faultvfs *fv, fv_image_stats *out)
{
	pthread_mutex_lock(&fv->mu);
	*out = fv->stats;
	pthread_mutex_unlock(&fv->mu);
}

/* ------------------------------------------------------------------------ */
/* helpers                                                                  */

int faultvfs_rmtree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 ? -errno : 0;
	DIR *d = opendir(path);
	if (!d)
		return -errno;
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char sub[PATH_MAX];
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		int r = faultvfs_rmtree(sub);
		if (r && !rc)
			rc = r;
	}
	closedir(d);
	if (rmdir(path) < 0 && !rc)
		rc = -errno;
	return rc;
}

char *faultvfs_tmpdir(const char *tag)
{
	const char *base = getenv("AMBER_TEST_TMPDIR");
	struct stat st;
	if (!base || !*base) {
		if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
			base = "/dev/shm";
		else if ((base = getenv("TMPDIR")) == NULL || !*base)
			base = "/tmp";
	}
	char tmpl[PATH_MAX];
	snprintf(tmpl, sizeof(tmpl), "%s/%s.XXXXXX", base, tag ? tag : "amber");
	if (!mkdtemp(tmpl))
		return NULL;
	return xstrdup(tmpl);
}

/* ------------------------------------------------------------------------ */
/* the oracle                                                               */

enum { TX_BEGUN = 0, TX_ACKED, TX_REFUSED };
enum { ST_UNKNOWN = 0, ST_APPLIED, ST_ABSENT };

typedef struct ok_key {
	char *table;
	unsigned char *key;
	size_t klen;
	uint64_t vhash;
	size_t vlen;
	int put_tx, del_tx;
	int claimed;
	size_t next; /* hash chain (index + 1) */
	/* observation */
	int obs;
	uint64_t obs_hash;
	size_t obs_vlen;
} ok_key;

typedef struct ok_tx {
	int state;
	size_t point;
	size_t *keys; /* keys it puts */
	size_t nkeys, capkeys;
	int ndel;
} ok_tx;

struct fv_oracle {
	pthread_mutex_t mu;
	ok_tx *tx;
	size_t ntx, captx;
	ok_key *keys;
	size_t nkeys, capkeys;
	size_t *buckets; /* index + 1 */
	size_t nbuckets;
	size_t *deletable; /* acked keys not deleted / claimed */
	size_t ndel, capdel;
	size_t nacked;
};

#include <xxhash.h>

#include "amber/store.h"

static uint64_t key_hash(const char *table, const void *key, size_t klen)
{
	return XXH3_64bits_withSeed(key, klen, XXH3_64bits(table, strlen(table)));
}

static size_t key_find(fv_oracle *o, const char *table, const void *key, size_t klen)
{
	if (!o->nbuckets)
		return SIZE_MAX;
	size_t b = key_hash(table, key, klen) & (o->nbuckets - 1);
	for (size_t i = o->buckets[b]; i; i = o->keys[i - 1].next) {
		ok_key *k = &o->keys[i - 1];
		if (k->klen == klen && memcmp(k->key, key, klen) == 0 && strcmp(k->table, table) == 0)
			return i - 1;
	}
	return SIZE_MAX;
}

static void key_rehash(fv_oracle *o)
{
	size_t nb = o->nbuckets ? o->nbuckets * 2 : 1024;
	free(o->buckets);
	o->buckets = calloc(nb, sizeof(*o->buckets));
	if (!o->buckets)
		abort();
	o->nbuckets = nb;
	for (size_t i = 0; i < o->nkeys; i++) {
		ok_key *k = &o->keys[i];
		size_t b = key_hash(k->table, k->key, k->klen) & (nb - 1);
		k->next = o->buckets[b];
		o->buckets[b] = i + 1;
	}
}

fv_oracle *fv_oracle_new(void)
{
	fv_oracle *o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	pthread_mutex_init(&o->mu, NULL);
	return o;
}

void fv_oracle_free(fv_oracle *o)
{
	if (!o)
		return;
	for (size_t i = 0; i < o->ntx; i++)
		free(o->tx[i].keys);
	for (size_t i = 0; i < o->nkeys; i++) {
		free(o->keys[i].table);
		free(o->keys[i].key);
	}
	free(o->tx);
	free(o->keys);
	free(o->buckets);
	free(o->deletable);
	pthread_mutex_destroy(&o->mu);
	free(o);
}

int fv_oracle_begin(fv_oracle *o)
{
	pthread_mutex_lock(&o->mu);
	GROW(o->tx, o->ntx, o->captx);
	memset(&o->tx[o->ntx], 0, sizeof(o->tx[0]));
	int id = (int)o->ntx++;
	pthread_mutex_unlock(&o->mu);
	return id;
}

int fv_oracle_put(fv_oracle *o, int tx, const char *table, const void *key, size_t klen,
                  const void *val, size_t vlen)
{
	uint64_t vh = XXH3_64bits(val, vlen);
	pthread_mutex_lock(&o->mu);
	int rc = -1;
	if (tx < 0 || (size_t)tx >= o->ntx || key_find(o, table, key, klen) != SIZE_MAX)
		goto out;
	if (o->nkeys * 2 >= o->nbuckets)
		key_rehash(o);
	GROW(o->keys, o->nkeys, o->capkeys);
	ok_key *k = &o->keys[o->nkeys];
	memset(k, 0, sizeof(*k));
	k->table = xstrdup(table);
	k->key = xrealloc(NULL, klen);
	memcpy(k->key, key, klen);
	k->klen = klen;
	k->vhash = vh;
	k->vlen = vlen;
	k->put_tx = tx;
	k->del_tx = -1;
	size_t b = key_hash(table, key, klen) & (o->nbuckets - 1);
	k->next = o->buckets[b];
	o->buckets[b] = o->nkeys + 1;
	ok_tx *t = &o->tx[tx];
	GROW(t->keys, t->nkeys, t->capkeys);
	t->keys[t->nkeys++] = o->nkeys;
	o->nkeys++;
	rc = 0;
out:
	pthread_mutex_unlock(&o->mu);
	return rc;
}

int fv_oracle_del(fv_oracle *o, int tx, const char *table, const void *key, size_t klen)
{
	pthread_mutex_lock(&o->mu);
	int rc = -1;
	size_t i = key_find(o, table, key, klen);
	if (tx >= 0 && (size_t)tx < o->ntx && i != SIZE_MAX && o->keys[i].del_tx < 0 &&
	    o->tx[o->keys[i].put_tx].state == TX_ACKED && o->keys[i].put_tx != tx) {
		o->keys[i].del_tx = tx;
		o->keys[i].claimed = 1;
		o->tx[tx].ndel++;
		rc = 0;
	}
	pthread_mutex_unlock(&o->mu);
	return rc;
}

void fv_oracle_ack(fv_oracle *o, int tx, size_t point)
{
	pthread_mutex_lock(&o->mu);
	ok_tx *t = &o->tx[tx];
	t->state = TX_ACKED;
	t->point = point;
	o->nacked++;
	for (size_t j = 0; j < t->nkeys; j++) {
		GROW(o->deletable, o->ndel, o->capdel);
		o->deletable[o->ndel++] = t->keys[j];
	}
	pthread_mutex_unlock(&o->mu);
}

void fv_oracle_refused(fv_oracle *o, int tx)
{
	pthread_mutex_lock(&o->mu);
	o->tx[tx].state = TX_REFUSED;
	pthread_mutex_unlock(&o->mu);
}

int fv_oracle_pick_deletable(fv_oracle *o, uint64_t rnd, char *table, void *key, size_t *klen)
{
	pthread_mutex_lock(&o->mu);
	int rc = -1;
	while (o->ndel) {
		size_t j = (size_t)(rnd % o->ndel);
		size_t ki = o->deletable[j];
		o->deletable[j] = o->deletable[--o->ndel];
		ok_key *k = &o->keys[ki];
		if (k->claimed || k->del_tx >= 0)
			continue;
		k->claimed = 1;
		snprintf(table, FV_TABLE_BUF, "%s", k->table);
		memcpy(key, k->key, k->klen);
		*klen = k->klen;
		rc = 0;
		break;
	}
	pthread_mutex_unlock(&o->mu);
	return rc;
}

size_t fv_oracle_ntxns(fv_oracle *o)
{
	pthread_mutex_lock(&o->mu);
	size_t n = o->ntx;
	pthread_mutex_unlock(&o->mu);
	return n;
}

size_t fv_oracle_nacked(fv_oracle *o)
{
	pthread_mutex_lock(&o->mu);
	size_t n = o->nacked;
	pthread_mutex_unlock(&o->mu);
	return n;
}

typedef struct ok_obs {
	fv_oracle *o;
	size_t records;
	size_t unexpected;
	char first_unexpected[200];
	XXH3_state_t *fp;
} ok_obs;

static int observe_fn(void *arg, const char *table, const void *key, size_t klen,
                      const void *val, size_t vlen)
{
	ok_obs *ob = arg;
	if (table[0] == '$')
		return 0;
	ob->records++;
	uint64_t vh = XXH3_64bits(val, vlen);
	XXH3_64bits_update(ob->fp, table, strlen(table) + 1);
	XXH3_64bits_update(ob->fp, &klen, sizeof(klen));
	XXH3_64bits_update(ob->fp, key, klen);
	XXH3_64bits_update(ob->fp, &vh, sizeof(vh));
	size_t i = key_find(ob->o, table, key, klen);
	if (i == SIZE_MAX) {
		if (ob->unexpected++ == 0)
			snprintf(ob->first_unexpected, sizeof(ob->first_unexpected),
			         "unexpected record %s/%.*s (%zu bytes)", table,
			         (int)(klen > 64 ? 64 : klen), (const char *)key, vlen);
		return 0;
	}
	ok_key *k = &ob->o->keys[i];
	k->obs = 1;
	k->obs_hash = vh;
	k->obs_vlen = vlen;
	return 0;
}

typedef struct ok_solver {
	fv_oracle *o;
	int *st;
	int conflict;
	char *msg;
	size_t msgsize;
} ok_solver;

static const char *tx_state_desc(const fv_oracle *o, int tx, size_t point, char *buf,
                                 size_t size)
{
	const ok_tx *t = &o->tx[tx];
	if (t->state == TX_ACKED)
		snprintf(buf, size, "acked at point %zu%s", t->point,
		         t->point <= point ? ", required" : ", not yet required");
	else if (t->state == TX_REFUSED)
		snprintf(buf, size, "refused");
	else
		snprintf(buf, size, "begun, not acked");
	return buf;
}

static void sv_set(ok_solver *s, int tx, int val, const ok_key *k, const char *why,
                   size_t point, int *changed)
{
	if (s->st[tx] == val)
		return;
	if (s->st[tx] == ST_UNKNOWN) {
		s->st[tx] = val;
		*changed = 1;
		return;
	}
	if (!s->conflict && s->msg) {
		char d[64];
		snprintf(s->msg, s->msgsize,
		         "txn %d (%s; %zu puts, %d deletes) is %s, but %s %s/%.*s %s", tx,
		         tx_state_desc(s->o, tx, point, d, sizeof(d)), s->o->tx[tx].nkeys,
		         s->o->tx[tx].ndel, s->st[tx] == ST_APPLIED ? "applied" : "absent",
		         "key", k ? k->table : "-", k ? (int)(k->klen > 64 ? 64 : k->klen) : 1,
		         k ? (const char *)k->key : "-", why);
	}
	s->conflict = 1;
}

/* Propagate the constraints until nothing changes.  Returns 0 or -1. */
static int sv_fix(ok_solver *s, size_t point)
{
	fv_oracle *o = s->o;
	int changed = 1;
	while (changed && !s->conflict) {
		changed = 0;
		for (size_t i = 0; i < o->nkeys && !s->conflict; i++) {
			ok_key *k = &o->keys[i];
			int P = k->put_tx, D = k->del_tx;
			if (k->obs) {
				sv_set(s, P, ST_APPLIED, k, "is present", point, &changed);
				if (D >= 0)
					sv_set(s, D, ST_ABSENT, k, "(which it deletes) is present", point,
					       &changed);
			} else {
				if (D < 0 || s->st[D] == ST_ABSENT)
					sv_set(s, P, ST_ABSENT, k, "(which it puts) is missing", point,
					       &changed);
				if (D >= 0 && s->st[P] == ST_APPLIED)
					sv_set(s, D, ST_APPLIED, k,
					       "(which it deletes) is missing though its put is applied",
					       point, &changed);
			}
			if (D >= 0 && s->st[D] == ST_APPLIED)
				sv_set(s, P, ST_APPLIED, k,
				       "was deleted by a later applied txn (log order)", point,
				       &changed);
			if (D >= 0 && s->st[P] == ST_ABSENT)
				sv_set(s, D, ST_ABSENT, k,
				       "was put by an absent txn acked before this one began", point,
				       &changed);
		}
	}
	return s->conflict ? -1 : 0;
}

int fv_oracle_check(fv_oracle *o, struct ams_instance *inst, size_t point, fv_check *res,
                    char *msg, size_t msgsize)
{
	pthread_mutex_lock(&o->mu);
	fv_check r;
	memset(&r, 0, sizeof(r));
	if (msg && msgsize)
		msg[0] = '\0';
	for (size_t i = 0; i < o->nkeys; i++)
		o->keys[i].obs = 0;
	ok_obs ob = {.o = o};
	ob.fp = XXH3_createState();
	XXH3_64bits_reset(ob.fp);
	int rc = ams_foreach(inst, observe_fn, &ob);
	r.records = ob.records;
	r.fingerprint = XXH3_64bits_digest(ob.fp) ^ ob.records;
	XXH3_freeState(ob.fp);
	if (rc != 0) {
		pthread_mutex_unlock(&o->mu);
		if (msg)
			snprintf(msg, msgsize, "ams_foreach: %s (%s)", ams_strerror(rc), ams_errmsg());
		if (res)
			*res = r;
		return rc;
	}
	int bad = 0;
	if (ob.unexpected) {
		snprintf(msg, msgsize, "%s (%zu unexpected records)", ob.first_unexpected,
		         ob.unexpected);
		bad = 1;
	}
	for (size_t i = 0; i < o->nkeys && !bad; i++) {
		ok_key *k = &o->keys[i];
		if (k->obs && (k->obs_hash != k->vhash || k->obs_vlen != k->vlen)) {
			snprintf(msg, msgsize, "key %s/%.*s has a wrong value (%zu bytes, want %zu)",
			         k->table, (int)(k->klen > 64 ? 64 : k->klen), (const char *)k->key,
			         k->obs_vlen, k->vlen);
			bad = 1;
		}
	}
	int *st = calloc(o->ntx ? o->ntx : 1, sizeof(int));
	int *save = calloc(o->ntx ? o->ntx : 1, sizeof(int));
	ok_solver s = {.o = o, .st = st, .msg = bad ? NULL : msg, .msgsize = msgsize};
	int dummy = 0;
	for (size_t t = 0; t < o->ntx && !bad; t++) {
		if (o->tx[t].state == TX_ACKED && o->tx[t].point <= point) {
			st[t] = ST_APPLIED;
			r.required++;
		} else if (o->tx[t].state == TX_REFUSED) {
			st[t] = ST_ABSENT;
		}
	}
	(void)dummy;
	if (!bad && sv_fix(&s, point) != 0)
		bad = 1;
	/* transactions nothing tells apart: try absent, else applied */
	for (size_t t = 0; t < o->ntx && !bad; t++) {
		if (st[t] != ST_UNKNOWN)
			continue;
		memcpy(save, st, o->ntx * sizeof(int));
		st[t] = ST_ABSENT;
		s.msg = NULL;
		if (sv_fix(&s, point) == 0)
			continue;
		memcpy(st, save, o->ntx * sizeof(int));
		s.conflict = 0;
		s.msg = msg;
		st[t] = ST_APPLIED;
		if (sv_fix(&s, point) != 0)
			bad = 1;
	}
	/* final verification of the whole content against the assignment */
	for (size_t i = 0; i < o->nkeys && !bad; i++) {
		ok_key *k = &o->keys[i];
		int want = st[k->put_tx] == ST_APPLIED && !(k->del_tx >= 0 && st[k->del_tx] == ST_APPLIED);
		if (want != k->obs) {
			snprintf(msg, msgsize, "key %s/%.*s is %s but the outcome says %s", k->table,
			         (int)(k->klen > 64 ? 64 : k->klen), (const char *)k->key,
			         k->obs ? "present" : "missing", want ? "present" : "missing");
			bad = 1;
		}
	}
	for (size_t t = 0; t < o->ntx; t++) {
		if (st[t] == ST_APPLIED)
			r.applied++;
		else
			r.absent++;
	}
	free(st);
	free(save);
	pthread_mutex_unlock(&o->mu);
	if (res)
		*res = r;
	return bad ? 1 : 0;
}

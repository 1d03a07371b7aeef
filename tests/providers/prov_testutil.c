/*
 * prov_testutil.c - see prov_testutil.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
// cmocka needs the headers above
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "prov_testutil.h"

#define MiB (1024u * 1024u)

const char *tu_path(const char *fmt, ...)
{
	static char bufs[16][PATH_MAX];
	static unsigned next;
	char *b = bufs[next++ % 16];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b, PATH_MAX, fmt, ap);
	va_end(ap);
	return b;
}

bool tu_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* ---- deterministic contents ---- */

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void tu_gen(unsigned char *buf, uint64_t off, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t o = off + i;
		buf[i] = (unsigned char)(mix(seed * 0x100000001b3ull ^ (o >> 3)) >> ((o & 7) * 8));
	}
}

void tu_write_gen(const char *path, size_t size, uint64_t seed)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		fail_msg("%s: open: %s", path, strerror(errno));
	unsigned char *buf = malloc(MiB);
	assert_non_null(buf);
	for (size_t off = 0; off < size;) {
		size_t n = size - off < MiB ? size - off : MiB;
		tu_gen(buf, off, n, seed);
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
			fail_msg("%s: write: %s", path, strerror(errno));
		off += n;
	}
	free(buf);
	close(fd);
}

bool tu_file_is_gen(const char *path, size_t size, uint64_t seed)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	struct stat st;
	bool ok = fstat(fd, &st) == 0 && (size_t)st.st_size == size;
	unsigned char *buf = malloc(MiB), *want = malloc(MiB);
	assert_non_null(buf);
	assert_non_null(want);
	for (size_t off = 0; ok && off < size;) {
		size_t n = size - off < MiB ? size - off : MiB;
		if (pread(fd, buf, n, (off_t)off) != (ssize_t)n) {
			ok = false;
			break;
		}
		tu_gen(want, off, n, seed);
		ok = memcmp(buf, want, n) == 0;
		off += n;
	}
	free(buf);
	free(want);
	close(fd);
	return ok;
}

/* ---- the sample tree ---- */

enum { T_DIR, T_FILE, T_SPARSE, T_LINK, T_HARD, T_FIFO, T_CHR, T_SOCK };

struct ent {
	const char *path;
	int type;
	mode_t mode;
	size_t size;
	const char *target;
	bool root_only;
};

static const struct ent tree[] = {
	{ "d1", T_DIR, 0750, 0, NULL, false },
	{ "d1/d2", T_DIR, 0700, 0, NULL, false },
	{ "d1/d2/deep", T_FILE, 0600, 10000, NULL, false },
	{ "ro", T_DIR, 0555, 0, NULL, false },
	{ "ro/inside", T_FILE, 0444, 77, NULL, false },
	{ "empty", T_FILE, 0644, 0, NULL, false },
	{ "small", T_FILE, 0640, 5, NULL, false },
	{ "f4k", T_FILE, 0644, 4096, NULL, false },
	{ "big", T_FILE, 0644, 8 * MiB + 123, NULL, false },
	{ "suid", T_FILE, 04755, 300, NULL, false },
	{ "sparse", T_SPARSE, 0600, 16 * MiB, NULL, false },
	{ "link", T_LINK, 0777, 0, "d1/d2/deep", false },
	{ "dangling", T_LINK, 0777, 0, "nowhere/at/all", false },
	{ "hl1", T_FILE, 0644, 3000, NULL, false },
	{ "d1/hl2", T_HARD, 0644, 3000, "hl1", false },
	{ "fifo", T_FIFO, 0620, 0, NULL, false },
	{ "owned", T_FILE, 0600, 123, NULL, true },
	{ "null", T_CHR, 0666, 0, NULL, true },
	{ "sock", T_SOCK, 0755, 0, NULL, true },
};
#define NTREE (sizeof(tree) / sizeof(tree[0]))
#define OWNED_UID 1234
#define OWNED_GID 5678
#define SPARSE_AT (1 * MiB)

static struct timespec ent_mtime(size_t i)
{
	struct timespec t = { 1000000000 + (time_t)i * 1000, (long)(i + 1) * 1111 };
	return t;
}

static struct timespec ent_atime(size_t i)
{
	struct timespec t = { 999000000 + (time_t)i, (long)(i + 1) * 7 };
	return t;
}

static void make_sparse(const char *p, uint64_t seed)
{
	unsigned char buf[4096];
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	tu_gen(buf, 0, sizeof(buf), seed);
	assert_int_equal(pwrite(fd, buf, sizeof(buf), SPARSE_AT), sizeof(buf));
	assert_int_equal(pwrite(fd, buf, 100, 16 * MiB - 100), 100);
	close(fd);
}

static bool sparse_ok(const char *p, uint64_t seed)
{
	unsigned char want[4096];
	tu_gen(want, 0, sizeof(want), seed);
	int fd = open(p, O_RDONLY);
	if (fd < 0)
		return false;
	unsigned char *buf = malloc(16 * MiB);
	assert_non_null(buf);
	bool ok = pread(fd, buf, 16 * MiB, 0) == 16 * MiB;
	for (size_t i = 0; ok && i < 16 * MiB; i++) {
		unsigned char w = 0;
		if (i >= SPARSE_AT && i < SPARSE_AT + 4096)
			w = want[i - SPARSE_AT];
		else if (i >= 16 * MiB - 100)
			w = want[i - (16 * MiB - 100)];
		ok = buf[i] == w;
	}
	free(buf);
	close(fd);
	return ok;
}

void tu_make_tree(const char *dir, tu_tree *out)
{
	out->root = geteuid() == 0;
	out->xattr_user = false;
	out->xattr_trusted = false;
	for (size_t i = 0; i < NTREE; i++) {
		const struct ent *e = &tree[i];
		const char *p = tu_path("%s/%s", dir, e->path);
		uint64_t seed = i + 1;
		if (e->root_only && !out->root)
			continue;
		switch (e->type) {
		case T_DIR:
			assert_int_equal(mkdir(p, 0700), 0);
			break;
		case T_FILE:
			tu_write_gen(p, e->size, seed);
			break;
		case T_SPARSE:
			make_sparse(p, seed);
			break;
		case T_LINK:
			assert_int_equal(symlink(e->target, p), 0);
			break;
		case T_HARD:
			assert_int_equal(link(tu_path("%s/%s", dir, e->target), p), 0);
			break;
		case T_FIFO:
			assert_int_equal(mkfifo(p, 0600), 0);
			break;
		case T_CHR:
			assert_int_equal(mknod(p, S_IFCHR | 0600, makedev(1, 3)), 0);
			break;
		case T_SOCK:
			assert_int_equal(mknod(p, S_IFSOCK | 0600, 0), 0);
			break;
		}
		if (strcmp(e->path, "owned") == 0)
			assert_int_equal(lchown(p, OWNED_UID, OWNED_GID), 0);
	}
	const char *small = tu_path("%s/small", dir);
	if (setxattr(small, "user.amber", "value-small", 11, 0) == 0) {
		const char *d1 = tu_path("%s/d1", dir);
		assert_int_equal(setxattr(d1, "user.amber", "value-d1", 8, 0), 0);
		out->xattr_user = true;
	}
	if (out->root && setxattr(small, "trusted.amber", "t", 1, 0) == 0)
		out->xattr_trusted = true;
	/* modes and times last (creating children changes the parents) */
	for (size_t i = NTREE; i-- > 0;) {
		const struct ent *e = &tree[i];
		if (e->root_only && !out->root)
			continue;
		const char *p = tu_path("%s/%s", dir, e->path);
		if (e->type != T_LINK && e->type != T_HARD)
			assert_int_equal(chmod(p, e->mode), 0);
		if (e->type != T_HARD) {
			struct timespec ts[2] = { ent_atime(i), ent_mtime(i) };
			assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
		}
	}
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static bool xattr_is(const char *p, const char *name, const char *val)
{
	char buf[256];
	ssize_t n = lgetxattr(p, name, buf, sizeof(buf));
	return n == (ssize_t)strlen(val) && memcmp(buf, val, (size_t)n) == 0;
}

void tu_check_tree(const char *dir, const tu_tree *t)
{
	for (size_t i = 0; i < NTREE; i++) {
		const struct ent *e = &tree[i];
		if (e->root_only && !t->root)
			continue;
		const char *p = tu_path("%s/%s", dir, e->path);
		struct stat st;
		if (lstat(p, &st) != 0)
			fail_msg("%s: missing (%s)", p, strerror(errno));
		uint64_t seed = i + 1;
		mode_t type = 0;
		switch (e->type) {
		case T_DIR: type = S_IFDIR; break;
		case T_FILE: case T_SPARSE: case T_HARD: type = S_IFREG; break;
		case T_LINK: type = S_IFLNK; break;
		case T_FIFO: type = S_IFIFO; break;
		case T_CHR: type = S_IFCHR; break;
		case T_SOCK: type = S_IFSOCK; break;
		}
		if ((st.st_mode & S_IFMT) != type)
			fail_msg("%s: type %o, want %o", p, st.st_mode & S_IFMT, type);
		if (e->type != T_LINK && (st.st_mode & 07777) != e->mode)
			fail_msg("%s: mode %o, want %o", p, st.st_mode & 07777, e->mode);
		uid_t uid = strcmp(e->path, "owned") == 0 ? OWNED_UID : geteuid();
		if (st.st_uid != uid)
			fail_msg("%s: owner %u, want %u", p, st.st_uid, uid);
		if (strcmp(e->path, "owned") == 0 && st.st_gid != OWNED_GID)
			fail_msg("%s: group %u, want %u", p, st.st_gid, OWNED_GID);
		if (e->type != T_HARD) {
			struct timespec m = ent_mtime(i);
			if (st.st_mtim.tv_sec != m.tv_sec || st.st_mtim.tv_nsec != m.tv_nsec)
				fail_msg("%s: mtime %lld.%09ld, want %lld.%09ld", p,
					 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
					 (long long)m.tv_sec, m.tv_nsec);
		}
		if (e->type == T_FIFO || e->type == T_CHR || e->type == T_SOCK) {
			struct timespec a = ent_atime(i);
			if (st.st_atim.tv_sec != a.tv_sec || st.st_atim.tv_nsec != a.tv_nsec)
				fail_msg("%s: atime %lld, want %lld", p,
					 (long long)st.st_atim.tv_sec, (long long)a.tv_sec);
		}
		switch (e->type) {
		case T_FILE:
			if (!tu_file_is_gen(p, e->size, seed))
				fail_msg("%s: content differs", p);
			break;
		case T_SPARSE:
			assert_int_equal(st.st_size, e->size);
			if (!sparse_ok(p, seed))
				fail_msg("%s: sparse content differs", p);
			break;
		case T_LINK: {
			char buf[PATH_MAX];
			ssize_t n = readlink(p, buf, sizeof(buf) - 1);
			assert_true(n > 0);
			buf[n] = '\0';
			assert_string_equal(buf, e->target);
			break;
		}
		case T_HARD: {
			struct stat tst;
			assert_int_equal(lstat(tu_path("%s/%s", dir, e->target), &tst), 0);
			if (tst.st_ino != st.st_ino)
				fail_msg("%s: not a hard link of %s", p, e->target);
			assert_int_equal(st.st_nlink, 2);
			break;
		}
		case T_CHR:
			assert_int_equal(major(st.st_rdev), 1);
			assert_int_equal(minor(st.st_rdev), 3);
			break;
		case T_DIR: {
			/* no entries beyond the table's */
			int want = 0;
			size_t l = strlen(e->path);
			for (size_t j = 0; j < NTREE; j++)
				if ((!tree[j].root_only || t->root) &&
				    strncmp(tree[j].path, e->path, l) == 0 &&
				    tree[j].path[l] == '/' && !strchr(tree[j].path + l + 1, '/'))
					want++;
			assert_int_equal(count_entries(p), want);
			break;
		}
		default:
			break;
		}
	}
	if (t->xattr_user) {
		assert_true(xattr_is(tu_path("%s/small", dir), "user.amber", "value-small"));
		assert_true(xattr_is(tu_path("%s/d1", dir), "user.amber", "value-d1"));
	}
	if (t->xattr_trusted)
		assert_true(xattr_is(tu_path("%s/small", dir), "trusted.amber", "t"));
}

void tu_mutate_tree(const char *dir)
{
	unsigned char z[4096];
	memset(z, 'Z', sizeof(z));
	int fd = open(tu_path("%s/big", dir), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, z, sizeof(z), 0), sizeof(z));
	assert_int_equal(pwrite(fd, z, sizeof(z), 8 * MiB + 123), sizeof(z));
	close(fd);
	fd = open(tu_path("%s/sparse", dir), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, z, sizeof(z), SPARSE_AT), sizeof(z));
	close(fd);
	assert_int_equal(truncate(tu_path("%s/small", dir), 1), 0);
	assert_int_equal(unlink(tu_path("%s/d1/d2/deep", dir)), 0);
	assert_int_equal(chmod(tu_path("%s/empty", dir), 0600), 0);
	assert_int_equal(rename(tu_path("%s/hl1", dir), tu_path("%s/hl1.moved", dir)), 0);
	fd = open(tu_path("%s/d1/hl2", dir), O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, z, 10, 0), 10);
	close(fd);
	assert_int_equal(chmod(tu_path("%s/ro", dir), 0755), 0);
	assert_int_equal(symlink("x", tu_path("%s/ro/new", dir)), 0);
	removexattr(tu_path("%s/small", dir), "user.amber");
}

/* ---- comparing two trees ---- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **sorted_names(const char *dir, size_t *n)
{
	DIR *d = opendir(dir);
	if (!d)
		fail_msg("%s: opendir: %s", dir, strerror(errno));
	char **v = NULL;
	size_t cap = 0;
	*n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			v = realloc(v, cap * sizeof(*v));
			assert_non_null(v);
		}
		v[(*n)++] = strdup(de->d_name);
	}
	closedir(d);
	if (*n)
		qsort(v, *n, sizeof(*v), name_cmp);
	return v;
}

static void cmp_files(const char *a, const char *b)
{
	int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
	assert_true(fa >= 0 && fb >= 0);
	unsigned char *ba = malloc(MiB), *bb = malloc(MiB);
	assert_non_null(ba);
	assert_non_null(bb);
	for (off_t off = 0;; off += MiB) {
		ssize_t na = pread(fa, ba, MiB, off), nb = pread(fb, bb, MiB, off);
		if (na != nb || memcmp(ba, bb, (size_t)(na > 0 ? na : 0)) != 0)
			fail_msg("%s and %s differ near offset %lld", a, b, (long long)off);
		if (na <= 0)
			break;
	}
	free(ba);
	free(bb);
	close(fa);
	close(fb);
}

static void cmp_xattrs(const char *a, const char *b)
{
	char la[4096], lb[4096];
	ssize_t na = llistxattr(a, la, sizeof(la)), nb = llistxattr(b, lb, sizeof(lb));
	if (na < 0 || nb < 0)
		return; /* not supported: nothing to compare */
	/* compare the user.* and trusted.* ones (security.* may be set by an
	 * LSM on creation) */
	for (int side = 0; side < 2; side++) {
		const char *l = side ? lb : la;
		ssize_t n = side ? nb : na;
		for (const char *x = l; x < l + n; x += strlen(x) + 1) {
			if (strncmp(x, "user.", 5) && strncmp(x, "trusted.", 8))
				continue;
			char va[256], vb[256];
			ssize_t sa = lgetxattr(a, x, va, sizeof(va));
			ssize_t sb = lgetxattr(b, x, vb, sizeof(vb));
			if (sa != sb || (sa > 0 && memcmp(va, vb, (size_t)sa) != 0))
				fail_msg("%s / %s: xattr %s differs", a, b, x);
		}
	}
}

static void cmp_tree(const char *a, const char *b, const char *skip, bool top)
{
	struct stat sa, sb;
	if (lstat(a, &sa) != 0 || lstat(b, &sb) != 0)
		fail_msg("%s or %s missing", a, b);
	if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT))
		fail_msg("%s: type differs", b);
	if (!S_ISLNK(sa.st_mode) && (sa.st_mode & 07777) != (sb.st_mode & 07777))
		fail_msg("%s: mode %o, source %o", b, sb.st_mode & 07777, sa.st_mode & 07777);
	if (sa.st_uid != sb.st_uid || sa.st_gid != sb.st_gid)
		fail_msg("%s: owner differs", b);
	if (sa.st_mtim.tv_sec != sb.st_mtim.tv_sec || sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec)
		fail_msg("%s: mtime differs", b);
	if (!S_ISDIR(sa.st_mode) && sa.st_nlink != sb.st_nlink)
		fail_msg("%s: %lu links, source %lu", b, (unsigned long)sb.st_nlink,
			 (unsigned long)sa.st_nlink);
	if (S_ISREG(sa.st_mode)) {
		assert_int_equal(sa.st_size, sb.st_size);
		cmp_files(a, b);
	} else if (S_ISLNK(sa.st_mode)) {
		char ta[PATH_MAX], tb[PATH_MAX];
		ssize_t na = readlink(a, ta, sizeof(ta)), nb = readlink(b, tb, sizeof(tb));
		assert_true(na > 0 && na == nb && memcmp(ta, tb, (size_t)na) == 0);
	} else if (S_ISCHR(sa.st_mode) || S_ISBLK(sa.st_mode)) {
		assert_true(sa.st_rdev == sb.st_rdev);
	}
	if (S_ISREG(sa.st_mode) || S_ISDIR(sa.st_mode))
		cmp_xattrs(a, b);
	if (!S_ISDIR(sa.st_mode))
		return;
	size_t na, nb;
	char **va = sorted_names(a, &na), **vb = sorted_names(b, &nb);
	if (na != nb)
		fail_msg("%s: %zu entries, source %s has %zu", b, nb, a, na);
	for (size_t i = 0; i < na; i++) {
		if (strcmp(va[i], vb[i]) != 0)
			fail_msg("%s: entry %s, source has %s", b, vb[i], va[i]);
		const char *pa = tu_path("%s/%s", a, va[i]);
		const char *pb = tu_path("%s/%s", b, vb[i]);
		char *ca = strdup(pa), *cb = strdup(pb);
		if (top && skip && strcmp(va[i], skip) == 0) {
			struct stat st;
			assert_int_equal(lstat(cb, &st), 0);
			assert_true(S_ISDIR(st.st_mode));
			assert_int_equal(count_entries(cb), 0);
		} else {
			cmp_tree(ca, cb, skip, false);
		}
		free(ca);
		free(cb);
	}
	for (size_t i = 0; i < na; i++)
		free(va[i]);
	for (size_t i = 0; i < nb; i++)
		free(vb[i]);
	free(va);
	free(vb);
}

void tu_compare_trees(const char *a, const char *b, const char *skip)
{
	char *ca = strdup(a), *cb = strdup(b);
	cmp_tree(ca, cb, skip, true);
	free(ca);
	free(cb);
}

bool tu_extents_shared(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	size_t sz = sizeof(struct fiemap) + 64 * sizeof(struct fiemap_extent);
	struct fiemap *fm = calloc(1, sz);
	assert_non_null(fm);
	bool ok = true;
	unsigned seen = 0;
	uint64_t start = 0;
	for (;;) {
		memset(fm, 0, sz);
		fm->fm_start = start;
		fm->fm_length = ~0ull - start;
		fm->fm_flags = FIEMAP_FLAG_SYNC;
		fm->fm_extent_count = 64;
		if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) {
			ok = false;
			break;
		}
		if (fm->fm_mapped_extents == 0)
			break;
		bool last = false;
		for (unsigned i = 0; i < fm->fm_mapped_extents; i++) {
			struct fiemap_extent *x = &fm->fm_extents[i];
			seen++;
			if (!(x->fe_flags & FIEMAP_EXTENT_SHARED))
				ok = false;
			if (x->fe_flags & FIEMAP_EXTENT_LAST)
				last = true;
			start = x->fe_logical + x->fe_length;
		}
		if (last)
			break;
	}
	free(fm);
	close(fd);
	return ok && seen > 0;
}

static void rm_rf(const char *path, dev_t dev, bool top)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return;
	if (!top && st.st_dev != dev)
		fail_msg("%s: another filesystem inside a tree being removed", path);
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) != 0 && errno != ENOENT)
			fail_msg("%s: unlink: %s", path, strerror(errno));
		return;
	}
	chmod(path, 0700);
	size_t n;
	char **v = sorted_names(path, &n);
	for (size_t i = 0; i < n; i++) {
		char *c = strdup(tu_path("%s/%s", path, v[i]));
		rm_rf(c, st.st_dev, false);
		free(c);
		free(v[i]);
	}
	free(v);
	if (rmdir(path) != 0)
		fail_msg("%s: rmdir: %s", path, strerror(errno));
}

void tu_rm_rf(const char *path)
{
	char *c = strdup(path);
	rm_rf(c, 0, true);
	free(c);
}

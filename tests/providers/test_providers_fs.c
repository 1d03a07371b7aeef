/*
 * test_providers_fs.c GROUP - the providers on real filesystems (root).
 *
 * with_fs.sh creates the filesystems and passes their mount points in
 * AMB_TEST_BTRFS, AMB_TEST_XFS and AMB_TEST_TMPFS (fresh for every run).
 * GROUP is one of:
 *   btrfs    snapshot of a subvolume while files are written: held files
 *            equal their state at the snapshot point, a file nobody holds
 *            is a clean prefix; the snapshot is read-only; delete; errors;
 *            a sidecar left unsettled is on disk after the presync
 *   reflink  clone on xfs and btrfs equals the source, shares every data
 *            extent, and does not follow later source changes; FICLONE
 *            refused (tmpfs, a btrfs nodatacow file); shadow on another
 *            filesystem or mount
 *   copy     tmpfs to tmpfs, xfs to tmpfs, tmpfs to xfs; mounts inside the
 *            volume are not crossed, remove refuses to cross them
 *   choose   automatic choice and overrides on each filesystem
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
// cmocka needs the headers above
#include <cmocka.h>

#include <btrfsutil.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prov_testutil.h"
#include "providers/provider.h"
#include "providers/provider_internal.h"

static const char *B, *X, *T; /* btrfs, xfs, tmpfs mount points */

static const amb_provider *P_BTRFS, *P_REFLINK, *P_COPY;

#define assert_msg_has(s) \
	do { \
		if (!strstr(amb_provider_errmsg(), (s))) \
			fail_msg("message \"%s\" lacks \"%s\"", amb_provider_errmsg(), (s)); \
	} while (0)

#define assert_ok(expr) \
	do { \
		int rc_ = (expr); \
		if (rc_ != 0) \
			fail_msg("%s: %d: %s", #expr, rc_, amb_provider_errmsg()); \
	} while (0)

static char *dup_path(const char *p)
{
	char *s = strdup(p);
	assert_non_null(s);
	return s;
}

static void mkdir_p(const char *p)
{
	if (mkdir(p, 0755) != 0 && errno != EEXIST)
		fail_msg("%s: mkdir: %s", p, strerror(errno));
}

static void make_subvol(const char *p)
{
	enum btrfs_util_error e = btrfs_util_create_subvolume(p, 0, NULL, NULL);
	if (e != BTRFS_UTIL_OK)
		fail_msg("%s: create subvolume: %s", p, btrfs_util_strerror(e));
}

/* ---- btrfs ---- */

#define REC 4096
#define NHELD 3
#define MAXREC 4096

struct writers {
	const char *dir;
	pthread_mutex_t hold; /* the "writer freeze": held during commit */
	atomic_bool stop;
	atomic_ulong held_recs, free_recs;
	atomic_int err;
};

static void *held_writer(void *arg)
{
	struct writers *w = arg;
	int fd[NHELD];
	unsigned char buf[REC];
	for (int i = 0; i < NHELD; i++) {
		fd[i] = open(tu_path("%s/held%d", w->dir, i), O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd[i] < 0)
			w->err = errno;
	}
	for (uint64_t r = 0; !w->stop && !w->err && r < MAXREC; r++) {
		pthread_mutex_lock(&w->hold);
		for (int i = 0; i < NHELD; i++) {
			tu_gen(buf, r * REC, REC, 100 + (uint64_t)i);
			if (pwrite(fd[i], buf, REC, (off_t)(r * REC)) != REC)
				w->err = errno;
		}
		pthread_mutex_unlock(&w->hold);
		/* an engine flushes now and then; it also keeps this writer
		 * busy for the whole test instead of finishing at once */
		if (r % 4 == 3)
			for (int i = 0; i < NHELD; i++)
				fdatasync(fd[i]);
		w->held_recs++;
	}
	for (int i = 0; i < NHELD; i++)
		close(fd[i]);
	return NULL;
}

/* a file no writer owns: appended during the snapshot, never held */
static void *free_writer(void *arg)
{
	struct writers *w = arg;
	unsigned char buf[REC];
	int fd = open(tu_path("%s/free", w->dir), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		w->err = errno;
	for (uint64_t r = 0; !w->stop && !w->err && r < MAXREC; r++) {
		tu_gen(buf, r * REC, REC, 200);
		if (pwrite(fd, buf, REC, (off_t)(r * REC)) != REC)
			w->err = errno;
		if (r % 4 == 3)
			fdatasync(fd);
		w->free_recs++;
	}
	close(fd);
	return NULL;
}

static void test_btrfs_snapshot_under_writes(void **state)
{
	(void)state;
	char *vol = dup_path(tu_path("%s/vol", B));
	char *snaps = dup_path(tu_path("%s/snaps", B));
	char *s1 = dup_path(tu_path("%s/s1", snaps));
	make_subvol(vol);
	mkdir_p(snaps);
	tu_write_gen(tu_path("%s/static", vol), 100000, 7);

	struct writers w;
	memset(&w, 0, sizeof(w));
	w.dir = vol;
	pthread_mutex_init(&w.hold, NULL);
	pthread_t th, tf;
	assert_int_equal(pthread_create(&th, NULL, held_writer, &w), 0);
	assert_int_equal(pthread_create(&tf, NULL, free_writer, &w), 0);
	/* wait until both are under way (no timing: counters) */
	while ((w.held_recs < 16 || w.free_recs < 16) && !w.err)
		sched_yield();

	assert_ok(amb_provider_prepare(P_BTRFS, vol, s1));
	/* freeze the writer, note its state, commit, thaw */
	pthread_mutex_lock(&w.hold);
	off_t at[NHELD];
	for (int i = 0; i < NHELD; i++) {
		struct stat st;
		assert_int_equal(stat(tu_path("%s/held%d", vol, i), &st), 0);
		at[i] = st.st_size;
	}
	int rc = amb_provider_commit(P_BTRFS, vol, s1);
	pthread_mutex_unlock(&w.hold);
	if (rc)
		fail_msg("commit: %s", amb_provider_errmsg());
	unsigned long after = w.held_recs;
	unsigned long free_at = w.free_recs;
	/* let the writers go on a little, then stop them */
	while (w.held_recs < after + 8 && w.held_recs < MAXREC && !w.err)
		sched_yield();
	w.stop = true;
	pthread_join(th, NULL);
	pthread_join(tf, NULL);
	assert_int_equal(w.err, 0);
	assert_ok(amb_provider_post_commit(P_BTRFS, s1));

	/* held files: exactly their state at the snapshot point */
	for (int i = 0; i < NHELD; i++) {
		const char *p = tu_path("%s/held%d", s1, i);
		struct stat st;
		assert_int_equal(stat(p, &st), 0);
		if (st.st_size != at[i])
			fail_msg("%s: %lld bytes, %lld at the snapshot point", p,
				 (long long)st.st_size, (long long)at[i]);
		assert_true(tu_file_is_gen(p, (size_t)at[i], 100 + (uint64_t)i));
		struct stat src;
		assert_int_equal(stat(tu_path("%s/held%d", vol, i), &src), 0);
		if (at[i] < (off_t)MAXREC * REC)
			assert_true(src.st_size > at[i]); /* the source went on */
	}
	/* the free file: some prefix of what was written, no torn record */
	struct stat st;
	const char *fp = tu_path("%s/free", s1);
	assert_int_equal(stat(fp, &st), 0);
	assert_int_equal(st.st_size % REC, 0);
	assert_true(tu_file_is_gen(fp, (size_t)st.st_size, 200));
	print_message("held writer: %lu records at the snapshot point, %lu at the end; "
		      "free writer: %lu records around the snapshot, %lld in it, %lu at the end\n",
		      after, (unsigned long)w.held_recs, free_at,
		      (long long)(st.st_size / REC), (unsigned long)w.free_recs);
	assert_true(tu_file_is_gen(tu_path("%s/static", s1), 100000, 7));

	/* read-only */
	bool ro = false;
	assert_int_equal(btrfs_util_get_subvolume_read_only(s1, &ro), BTRFS_UTIL_OK);
	assert_true(ro);
	int fd = open(tu_path("%s/new", s1), O_WRONLY | O_CREAT, 0644);
	assert_int_equal(fd, -1);
	assert_int_equal(errno, EROFS);
	assert_int_equal(unlink(tu_path("%s/static", s1)), -1);
	assert_int_equal(errno, EROFS);

	amb_shadow_info info;
	assert_ok(amb_provider_shadow_info(s1, &info));
	assert_ptr_equal(info.provider, P_BTRFS);
	assert_int_equal(info.state, AMB_SHADOW_COMMITTED);
	assert_string_equal(info.volume, vol);

	/* delete */
	assert_ok(amb_provider_remove(s1));
	assert_false(tu_exists(s1));
	assert_false(tu_exists(tu_path("%s.amber-shadow", s1)));
	assert_int_equal(amb_provider_remove(s1), -ENOENT);
	free(vol);
	free(snaps);
	free(s1);
}

static void test_btrfs_nested_and_remove(void **state)
{
	(void)state;
	char *vol = dup_path(tu_path("%s/vol2", B));
	char *inner = dup_path(tu_path("%s/.snaps", vol));
	char *s1 = dup_path(tu_path("%s/a", inner));
	char *s2 = dup_path(tu_path("%s/b", inner));
	make_subvol(vol);
	mkdir_p(inner);
	tu_write_gen(tu_path("%s/f", vol), 5000, 9);
	/* a snapshot inside the subvolume it snapshots is fine for btrfs */
	assert_ok(amb_provider_prepare(P_BTRFS, vol, s1));
	assert_ok(amb_provider_commit(P_BTRFS, vol, s1));
	assert_ok(amb_provider_prepare(P_BTRFS, vol, s2));
	assert_ok(amb_provider_commit(P_BTRFS, vol, s2));
	/* the nested snapshot is an empty directory in the next one */
	assert_true(tu_exists(tu_path("%s/.snaps/a", s2)));
	assert_false(tu_exists(tu_path("%s/.snaps/a/f", s2)));
	assert_true(tu_file_is_gen(tu_path("%s/f", s2), 5000, 9));
	assert_ok(amb_provider_remove(s2));
	assert_ok(amb_provider_remove(s1));

	/* prepared, never committed: only the record goes */
	assert_ok(amb_provider_prepare(P_BTRFS, vol, s1));
	assert_false(tu_exists(s1));
	assert_ok(amb_provider_remove(s1));
	assert_false(tu_exists(tu_path("%s.amber-shadow", s1)));

	/* a subvolume amber did not make is never deleted */
	char *other = dup_path(tu_path("%s/notmine", B));
	make_subvol(other);
	assert_int_equal(amb_provider_remove(other), -EINVAL);
	assert_msg_has("not an amber shadow");
	assert_int_equal(btrfs_util_is_subvolume(other), BTRFS_UTIL_OK);
	free(other);
	free(vol);
	free(inner);
	free(s1);
	free(s2);
}

static void test_btrfs_errors(void **state)
{
	(void)state;
	char *vol = dup_path(tu_path("%s/vol3", B));
	make_subvol(vol);
	char *plain = dup_path(tu_path("%s/plain", vol));
	mkdir_p(plain);
	assert_int_equal(amb_provider_supports(P_BTRFS, plain), -EOPNOTSUPP);
	assert_msg_has("is not a btrfs subvolume");
	assert_msg_has(plain);
	char *xdir = dup_path(tu_path("%s/bt-x", X));
	mkdir_p(xdir);
	assert_int_equal(amb_provider_supports(P_BTRFS, xdir), -EOPNOTSUPP);
	assert_msg_has("is not on a btrfs filesystem");
	assert_int_equal(amb_provider_supports(P_BTRFS, tu_path("%s/missing", B)), -ENOENT);
	tu_write_gen(tu_path("%s/file", vol), 10, 1);
	assert_int_equal(amb_provider_supports(P_BTRFS, tu_path("%s/file", vol)), -ENOTDIR);

	/* the snapshot must stay on its filesystem */
	assert_int_equal(amb_provider_prepare(P_BTRFS, vol, tu_path("%s/s", xdir)), -EXDEV);
	assert_msg_has("is not on the btrfs filesystem");
	assert_false(tu_exists(tu_path("%s/s.amber-shadow", xdir)));
	/* the shadow exists */
	assert_int_equal(amb_provider_prepare(P_BTRFS, vol, plain), -EEXIST);
	assert_int_equal(amb_provider_prepare(P_BTRFS, plain, tu_path("%s/s", B)), -EOPNOTSUPP);
	free(vol);
	free(plain);
	free(xdir);
}

static void mnt_source(const char *mnt, char *dev, size_t n);

/*
 * What a power cut now would leave of file rel (relative to B) on the
 * btrfs at B: a copy of B's loop image as it is on disk (what btrfs wrote,
 * not what is only in memory) is mounted apart (btrfs gives a cloned single
 * device a temporary fsid), the file read, and the copy taken down again.
 * The copy and its mount point are next to B's image, where with_fs.sh's
 * cleanup takes them down if the test dies.  Returns the bytes read into
 * buf, or -1 when the file is not there.
 */
static ssize_t btrfs_on_disk(const char *rel, char *buf, size_t n)
{
	char dev[512];
	mnt_source(B, dev, sizeof(dev));
	const char *out = dup_path(tu_path("/tmp/amber-ondisk.%d", (int)getpid()));
	int rc = system(tu_path(
		"back=$(losetup -n -O BACK-FILE '%s') && img=\"${back%%/*}/cut-%d.img\" && "
		"mnt=\"${back%%/*}/cut-%d.mnt\" && cp --sparse=always \"$back\" \"$img\" && "
		"mkdir -p \"$mnt\" && l=$(losetup -f --show \"$img\") || exit 3; rc=0; "
		"if mount \"$l\" \"$mnt\"; then "
		"  if [ -e \"$mnt/%s\" ]; then cat \"$mnt/%s\" >'%s' || rc=3; else rc=1; fi; "
		"  umount \"$mnt\" || rc=3; "
		"else rc=3; fi; losetup -d \"$l\"; rm -f \"$img\"; rmdir \"$mnt\"; exit $rc",
		dev, (int)getpid(), (int)getpid(), rel, rel, out));
	ssize_t got = -1;
	if (rc == 0) {
		int fd = open(out, O_RDONLY);
		assert_true(fd >= 0);
		got = read(fd, buf, n);
		close(fd);
	}
	unlink(out);
	free((void *)out);
	if (rc != 0 && !(WIFEXITED(rc) && WEXITSTATUS(rc) == 1))
		fail_msg("cannot read %s from a copy of %s's image (status %d)", rel, B, rc);
	return got;
}

/*
 * amberd prepares a btrfs shadow with its sidecar unsettled and lets the
 * presync's syncfs of the volume make it durable (two fsyncs fewer on the
 * way to the freeze).  Shown on the disk itself: a copy of the loop image
 * taken after the presync holds the whole sidecar.  (The copy taken before
 * usually lacks it; only printed: btrfs's own periodic commit may write it
 * first.)  Without a presync, amb_provider_settle does it (the same check).
 * reflink and copy make their shadow in prepare or precommit, so they never
 * leave it unsettled.
 */
static void test_btrfs_sidecar_settled_by_presync(void **state)
{
	(void)state;
	char *vol = dup_path(tu_path("%s/vol4", B));
	char *snaps = dup_path(tu_path("%s/snaps4", B));
	char *s1 = dup_path(tu_path("%s/u1", snaps));
	make_subvol(vol);
	mkdir_p(snaps);
	tu_write_gen(tu_path("%s/f", vol), 5000, 3);
	int fd = open(B, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(syncfs(fd), 0); /* the directories on disk */
	close(fd);

	bool unsettled = false;
	assert_ok(amb_provider_prepare_unsettled(P_BTRFS, vol, s1, &unsettled));
	assert_true(unsettled);
	char want[8192], got[8192];
	fd = open(tu_path("%s.amber-shadow", s1), O_RDONLY);
	assert_true(fd >= 0);
	ssize_t wl = read(fd, want, sizeof(want));
	close(fd);
	assert_true(wl > 20);
	assert_non_null(memmem(want, (size_t)wl, "state prepared\n", 15));
	ssize_t before = btrfs_on_disk("snaps4/u1.amber-shadow", got, sizeof(got));
	print_message("sidecar on disk before the presync: %s\n",
	              before < 0 ? "missing" : before == wl && !memcmp(got, want, (size_t)wl) ?
	                                       "whole (a periodic commit wrote it)" : "partial");

	assert_ok(amb_provider_presync(vol));
	ssize_t after = btrfs_on_disk("snaps4/u1.amber-shadow", got, sizeof(got));
	if (after != wl || memcmp(got, want, (size_t)wl) != 0)
		fail_msg("after the presync the sidecar on disk is %s", after < 0 ? "missing" : "not whole");

	/* the rest of the life of the shadow as usual */
	assert_ok(amb_provider_commit(P_BTRFS, vol, s1));
	assert_true(tu_file_is_gen(tu_path("%s/f", s1), 5000, 3));
	assert_ok(amb_provider_remove(s1));
	assert_false(tu_exists(tu_path("%s.amber-shadow", s1)));

	/* the other providers never leave it unsettled */
	char *rv = dup_path(tu_path("%s/rl4", B));
	mkdir_p(rv);
	unsettled = true;
	assert_ok(amb_provider_prepare_unsettled(P_REFLINK, rv, tu_path("%s/r1", snaps), &unsettled));
	assert_false(unsettled);
	assert_ok(amb_provider_remove(tu_path("%s/r1", snaps)));
	/* without a presync (amberd's presync off or failed) amb_provider_settle
	 * makes it durable: the copy of the disk holds it whole */
	assert_ok(amb_provider_prepare_unsettled(P_BTRFS, vol, s1, &unsettled));
	assert_true(unsettled);
	assert_ok(amb_provider_settle(s1));
	after = btrfs_on_disk("snaps4/u1.amber-shadow", got, sizeof(got));
	if (after != wl || memcmp(got, want, (size_t)wl) != 0)
		fail_msg("after the settle the sidecar on disk is %s", after < 0 ? "missing" : "not whole");
	assert_ok(amb_provider_settle(s1)); /* again: harmless */
	assert_ok(amb_provider_remove(s1));
	free(rv);
	free(vol);
	free(snaps);
	free(s1);
}

/* ---- reflink ---- */

static void reflink_on(const char *fs)
{
	char *vol = dup_path(tu_path("%s/rl/vol", fs));
	char *store = dup_path(tu_path("%s/rl/shadows", fs));
	char *sh = dup_path(tu_path("%s/r1", store));
	mkdir_p(tu_path("%s/rl", fs));
	mkdir_p(vol);
	mkdir_p(store);
	tu_tree t;
	tu_make_tree(vol, &t);
	assert_true(t.root && t.xattr_user && t.xattr_trusted);
	assert_ok(amb_provider_supports(P_REFLINK, vol));
	assert_ok(amb_provider_prepare(P_REFLINK, vol, sh));
	assert_ok(amb_provider_commit(P_REFLINK, vol, sh));
	assert_ok(amb_provider_post_commit(P_REFLINK, sh));
	tu_compare_trees(vol, sh, NULL);
	tu_check_tree(sh, &t);
	/* no data copied: every extent of the clone is shared */
	if (!tu_extents_shared(tu_path("%s/big", sh)))
		fail_msg("%s/big: extents not shared with the source", sh);
	assert_true(tu_extents_shared(tu_path("%s/d1/d2/deep", sh)));
	/* later changes of the source stay out of the clone */
	tu_mutate_tree(vol);
	tu_check_tree(sh, &t);
	assert_ok(amb_provider_remove(sh));
	assert_false(tu_exists(sh));
	free(vol);
	free(store);
	free(sh);
}

static void test_reflink_xfs(void **state)
{
	(void)state;
	reflink_on(X);
}

static void test_reflink_btrfs(void **state)
{
	(void)state;
	reflink_on(B);
}

/*
 * reflink in two phases: precommit clones the tree before the hold, commit
 * (amb_tree_refresh) brings the clone up to date in it.  Every kind of
 * change between the two (tu_mutate_tree: overwrites, data in a hole, a
 * truncation, an unlink, a chmod, a renamed hard link, a new symlink in a
 * read-only directory, a removed xattr; and here: a punched hole, an
 * append, a new file and directory, a removed directory, a file replaced
 * by a directory, one of two hard-linked names replaced by a new file) is
 * in the shadow afterwards, which equals the volume.
 * Then one 4 KiB overwrite and an append to the 8 MiB file: the refresh
 * clones those ranges again, not the file.  A refresh with nothing
 * changed clones no range.  (Every refresh copies symlinks, special files
 * and hard-linked files again, and btrfs keeps small files inline, which
 * FIEMAP gives no address for, so those are cloned whole every time: the
 * counts below are compared with a refresh that had nothing to do.)
 */
static void two_phase_on(const char *fs)
{
	char *vol = dup_path(tu_path("%s/rl2/vol", fs));
	char *store = dup_path(tu_path("%s/rl2/shadows", fs));
	char *sh = dup_path(tu_path("%s/r1", store));
	mkdir_p(tu_path("%s/rl2", fs));
	mkdir_p(vol);
	mkdir_p(store);
	tu_tree t;
	tu_make_tree(vol, &t);
	/* two names of one file: after the precommit one of them becomes a
	 * file of its own; the clone's shared inode must not mix the two */
	tu_write_gen(tu_path("%s/pa", vol), 20000, 11);
	assert_int_equal(link(tu_path("%s/pa", vol), tu_path("%s/pb", vol)), 0);
	assert_ok(amb_provider_prepare(P_REFLINK, vol, sh));
	assert_ok(amb_provider_precommit(P_REFLINK, vol, sh));
	tu_compare_trees(vol, sh, NULL);

	assert_int_equal(unlink(tu_path("%s/pa", vol)), 0);
	tu_write_gen(tu_path("%s/pa", vol), 30000, 12);
	tu_mutate_tree(vol);
	int fd = open(tu_path("%s/big", vol), O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4 * 1048576,
	                           65536), 0);
	unsigned char z[5000];
	memset(z, 'A', sizeof(z));
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(pwrite(fd, z, sizeof(z), st.st_size), (ssize_t)sizeof(z));
	close(fd);
	tu_write_gen(tu_path("%s/new-file", vol), 70000, 99);
	mkdir_p(tu_path("%s/new-dir", vol));
	tu_write_gen(tu_path("%s/new-dir/inner", vol), 5000, 98);
	tu_rm_rf(tu_path("%s/d1/d2", vol));
	assert_int_equal(unlink(tu_path("%s/small", vol)), 0);
	mkdir_p(tu_path("%s/small", vol));

	amb_refresh_stats rs;
	memset(&rs, 0, sizeof(rs));
	assert_ok(amb_tree_refresh("reflink", vol, sh, &rs));
	tu_compare_trees(vol, sh, NULL);
	assert_true(rs.holes >= 1);   /* the hole punched in big */
	assert_true(rs.copied >= 3);  /* new-file, new-dir, small (now a directory) */
	assert_true(rs.removed >= 1); /* d1/d2 */
	amb_refresh_stats base;
	memset(&base, 0, sizeof(base));
	assert_ok(amb_tree_refresh("reflink", vol, sh, &base));
	assert_true(base.ranges == 0 && base.holes == 0 && base.removed == 0);

	/* big: an overwrite and an append are cloned again, not 8 MiB */
	fd = open(tu_path("%s/big", vol), O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, z, 4096, 2 * 1048576), 4096);
	assert_int_equal(write(fd, z, 100), 100);
	close(fd);
	memset(&rs, 0, sizeof(rs));
	assert_ok(amb_tree_refresh("reflink", vol, sh, &rs));
	tu_compare_trees(vol, sh, NULL);
	if (rs.ranges < 1 || rs.range_bytes > 128 * 1024 || rs.copied != base.copied ||
	    rs.whole_files != base.whole_files || rs.removed)
		fail_msg("refresh: %u whole files, %llu ranges (%llu bytes), %llu holes, %u copied, "
		         "%u removed", rs.whole_files, (unsigned long long)rs.ranges,
		         (unsigned long long)rs.range_bytes, (unsigned long long)rs.holes, rs.copied,
		         rs.removed);
	assert_true(tu_extents_shared(tu_path("%s/big", sh)));

	/* the precommit's passes: the full one clones the changed range of
	 * big again, one more over big alone finds nothing left; with nothing
	 * changed one pass is all */
	fd = open(tu_path("%s/big", vol), O_WRONLY);
	assert_true(fd >= 0 && pwrite(fd, z, 4096, 5 * 1048576) == 4096);
	close(fd);
	memset(&rs, 0, sizeof(rs));
	assert_ok(amb_tree_refresh_converge("reflink", vol, sh, &rs));
	tu_compare_trees(vol, sh, NULL);
	if (rs.passes != 2 || rs.ranges != 1)
		fail_msg("converge after one overwrite: %u passes, %llu ranges", rs.passes,
		         (unsigned long long)rs.ranges);
	memset(&rs, 0, sizeof(rs));
	assert_ok(amb_tree_refresh_converge("reflink", vol, sh, &rs));
	assert_int_equal(rs.passes, 1);
	assert_true(rs.ranges == 0 && rs.holes == 0);

	/* up to date: a refresh (here the provider's commit) clones nothing */
	memset(&rs, 0, sizeof(rs));
	assert_ok(amb_provider_commit(P_REFLINK, vol, sh));
	assert_ok(amb_tree_refresh("reflink", vol, sh, &rs));
	assert_true(rs.ranges == 0 && rs.holes == 0 && rs.removed == 0 &&
	            rs.copied == base.copied && rs.whole_files == base.whole_files);

	/* files their writer says it left unchanged keep the clone's data (the
	 * provider trusts the writer, as it does with holding writes): big,
	 * overwritten in place and listed, keeps its old bytes in the shadow;
	 * pa, listed but longer now, is refreshed anyway; a path outside the
	 * volume is ignored; a commit without the list brings big up to date */
	unsigned char b[4096], old[4096], got[4096];
	memset(b, 'B', sizeof(b));
	fd = open(tu_path("%s/big", sh), O_RDONLY);
	assert_true(fd >= 0 && pread(fd, old, sizeof(old), 3 * 1048576) == (ssize_t)sizeof(old));
	close(fd);
	assert_true(memcmp(old, b, sizeof(b)) != 0);
	fd = open(tu_path("%s/big", vol), O_WRONLY);
	assert_true(fd >= 0 && pwrite(fd, b, sizeof(b), 3 * 1048576) == (ssize_t)sizeof(b));
	close(fd);
	fd = open(tu_path("%s/pa", vol), O_WRONLY | O_APPEND);
	assert_true(fd >= 0 && write(fd, "0123456789", 10) == 10);
	close(fd);
	const char *const rel_unch[] = {"big", "pa"};
	memset(&rs, 0, sizeof(rs));
	assert_ok(amb_tree_refresh_unchanged("reflink", vol, sh, &rs, rel_unch, 2));
	assert_int_equal(rs.unchanged, 1);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "cmp -s '%s/pa' '%s/pa'", vol, sh);
	assert_int_equal(system(cmd), 0);
	char *big_abs = dup_path(tu_path("%s/big", vol));
	const char *const abs_unch[] = {big_abs, "/elsewhere/big"};
	assert_ok(amb_provider_commit_unchanged(P_REFLINK, vol, sh, abs_unch, 2));
	fd = open(tu_path("%s/big", sh), O_RDONLY);
	assert_true(fd >= 0 && pread(fd, got, sizeof(got), 3 * 1048576) == (ssize_t)sizeof(got));
	close(fd);
	assert_memory_equal(got, old, sizeof(old));
	assert_ok(amb_provider_commit(P_REFLINK, vol, sh));
	free(big_abs);

	assert_ok(amb_provider_post_commit(P_REFLINK, sh));
	tu_compare_trees(vol, sh, NULL);
	assert_ok(amb_provider_remove(sh));
	free(vol);
	free(store);
	free(sh);
}

static void test_reflink_two_phase_xfs(void **state)
{
	(void)state;
	two_phase_on(X);
}

static void test_reflink_two_phase_btrfs(void **state)
{
	(void)state;
	two_phase_on(B);
}

static void test_reflink_refused(void **state)
{
	(void)state;
	/* tmpfs cannot clone */
	char *tv = dup_path(tu_path("%s/rl-t", T));
	mkdir_p(tv);
	assert_int_equal(amb_provider_supports(P_REFLINK, tv), -EOPNOTSUPP);
	assert_msg_has("cannot clone files (FICLONE");
	assert_msg_has(tv);
	assert_int_equal(amb_provider_prepare(P_REFLINK, tv, tu_path("%s/s", T)), -EOPNOTSUPP);
	assert_false(tu_exists(tu_path("%s/s.amber-shadow", T)));

	/* shadow on another filesystem */
	char *xv = dup_path(tu_path("%s/rl-x", X));
	mkdir_p(xv);
	assert_int_equal(amb_provider_prepare(P_REFLINK, xv, tu_path("%s/s", B)), -EXDEV);
	assert_msg_has("is not on the mount of");
	/* same filesystem, other mount: FICLONE refuses that too */
	char *other = dup_path(tu_path("%s/rl-other", X));
	char *bind = dup_path(tu_path("%s/rl-bind", T));
	mkdir_p(other);
	mkdir_p(bind);
	assert_int_equal(mount(other, bind, NULL, MS_BIND, NULL), 0);
	int rc = amb_provider_prepare(P_REFLINK, xv, tu_path("%s/s", bind));
	assert_int_equal(umount2(bind, 0), 0);
	assert_int_equal(rc, -EXDEV);

	/* btrfs will not clone a nodatacow file into a datacow one: the commit
	 * fails cleanly, naming the file, and the partial shadow goes */
	char *bv = dup_path(tu_path("%s/rl-nocow", B));
	mkdir_p(bv);
	tu_write_gen(tu_path("%s/a", bv), 5000, 1);
	const char *nc = tu_path("%s/nocow", bv);
	int fd = open(nc, O_RDWR | O_CREAT, 0644);
	assert_true(fd >= 0);
	int flags = 0;
	assert_int_equal(ioctl(fd, FS_IOC_GETFLAGS, &flags), 0);
	flags |= FS_NOCOW_FL;
	assert_int_equal(ioctl(fd, FS_IOC_SETFLAGS, &flags), 0);
	unsigned char buf[8192];
	tu_gen(buf, 0, sizeof(buf), 3);
	assert_int_equal(pwrite(fd, buf, sizeof(buf), 0), sizeof(buf));
	fsync(fd);
	close(fd);
	char *sh = dup_path(tu_path("%s/nocow-shadow", B));
	assert_ok(amb_provider_prepare(P_REFLINK, bv, sh));
	assert_int_equal(amb_provider_commit(P_REFLINK, bv, sh), -EOPNOTSUPP);
	assert_msg_has("nocow");
	assert_msg_has("FICLONE");
	amb_shadow_info info;
	assert_ok(amb_provider_shadow_info(sh, &info));
	assert_int_equal(info.state, AMB_SHADOW_PREPARED);
	assert_ok(amb_provider_remove(sh));
	assert_false(tu_exists(sh));
	free(tv);
	free(xv);
	free(other);
	free(bind);
	free(bv);
	free(sh);
}

/* ---- copy ---- */

static void copy_between(const char *from_fs, const char *to_fs, const char *tag)
{
	char *vol = dup_path(tu_path("%s/cp-%s/vol", from_fs, tag));
	char *store = dup_path(tu_path("%s/cp-%s-shadows", to_fs, tag));
	char *sh = dup_path(tu_path("%s/c1", store));
	mkdir_p(tu_path("%s/cp-%s", from_fs, tag));
	mkdir_p(vol);
	mkdir_p(store);
	tu_tree t;
	tu_make_tree(vol, &t);
	assert_ok(amb_provider_prepare(P_COPY, vol, sh));
	assert_ok(amb_provider_commit(P_COPY, vol, sh));
	assert_ok(amb_provider_post_commit(P_COPY, sh));
	tu_compare_trees(vol, sh, NULL);
	tu_check_tree(sh, &t);
	struct stat st;
	assert_int_equal(stat(tu_path("%s/sparse", sh), &st), 0);
	assert_true(st.st_blocks * 512 < 1024 * 1024); /* holes kept */
	tu_mutate_tree(vol);
	tu_check_tree(sh, &t);
	int expect = strcmp(from_fs, to_fs) != 0;
	assert_int_equal(amb_provider_can_fsfreeze(P_COPY, vol, sh), expect);
	assert_int_equal(amb_provider_can_fsfreeze(P_REFLINK, vol, sh), 0);
	assert_ok(amb_provider_remove(sh));
	assert_false(tu_exists(sh));
	free(vol);
	free(store);
	free(sh);
}

static void test_copy_tmpfs(void **state)
{
	(void)state;
	copy_between(T, T, "tt");
}

static void test_copy_xfs_to_tmpfs(void **state)
{
	(void)state;
	copy_between(X, T, "xt");
}

static void test_copy_tmpfs_to_xfs(void **state)
{
	(void)state;
	copy_between(T, X, "tx");
}

static void test_copy_mounts(void **state)
{
	(void)state;
	char *vol = dup_path(tu_path("%s/cpm", X));
	char *mnt = dup_path(tu_path("%s/mnt", vol));
	char *sh = dup_path(tu_path("%s/cpm-shadow", X));
	mkdir_p(vol);
	mkdir_p(mnt);
	tu_write_gen(tu_path("%s/top", vol), 1000, 5);
	assert_int_equal(mount("amber-inner", mnt, "tmpfs", 0, "size=1m"), 0);
	tu_write_gen(tu_path("%s/inner", mnt), 1000, 6);
	int rc = amb_provider_prepare(P_COPY, vol, sh);
	if (rc == 0)
		rc = amb_provider_commit(P_COPY, vol, sh);
	assert_int_equal(umount2(mnt, 0), 0);
	if (rc)
		fail_msg("copy: %s", amb_provider_errmsg());
	/* the mount point is there, its filesystem is not */
	assert_true(tu_exists(tu_path("%s/mnt", sh)));
	assert_false(tu_exists(tu_path("%s/mnt/inner", sh)));
	assert_true(tu_file_is_gen(tu_path("%s/top", sh), 1000, 5));

	/* remove does not go into a filesystem mounted inside the shadow */
	assert_int_equal(mount("amber-inner", tu_path("%s/mnt", sh), "tmpfs", 0, "size=1m"), 0);
	tu_write_gen(tu_path("%s/mnt/keep", sh), 10, 1);
	rc = amb_provider_remove(sh);
	bool kept = tu_exists(tu_path("%s/mnt/keep", sh));
	assert_int_equal(umount2(tu_path("%s/mnt", sh), 0), 0);
	assert_int_equal(rc, -EBUSY);
	assert_true(kept);
	assert_ok(amb_provider_remove(sh));
	assert_false(tu_exists(sh));
	free(vol);
	free(mnt);
	free(sh);
}

/* ---- choose ---- */

static void expect_choice(const char *vol, const char *name, const amb_provider *want)
{
	const amb_provider *p = NULL;
	int rc = amb_provider_choose(vol, name, &p);
	if (rc)
		fail_msg("choose %s %s: %s", vol, name ? name : "(auto)", amb_provider_errmsg());
	if (p != want)
		fail_msg("choose %s %s: %s, want %s", vol, name ? name : "(auto)", p->name,
			 want->name);
}

static void test_choose(void **state)
{
	(void)state;
	char *sub = dup_path(tu_path("%s/sub", B));
	make_subvol(sub);
	char *plain = dup_path(tu_path("%s/plain", sub));
	mkdir_p(plain);
	char *xd = dup_path(tu_path("%s/dir", X));
	mkdir_p(xd);
	char *td = dup_path(tu_path("%s/dir", T));
	mkdir_p(td);

	expect_choice(sub, NULL, P_BTRFS);
	expect_choice(B, NULL, P_BTRFS); /* the top-level subvolume */
	expect_choice(plain, NULL, P_REFLINK);
	expect_choice(xd, NULL, P_REFLINK);
	expect_choice(X, NULL, P_REFLINK);
	expect_choice(td, NULL, P_COPY);
	expect_choice(T, NULL, P_COPY);
	/* overrides */
	expect_choice(xd, "copy", P_COPY);
	expect_choice(sub, "reflink", P_REFLINK);
	expect_choice(sub, "copy", P_COPY);
	const amb_provider *p = P_COPY;
	assert_int_equal(amb_provider_choose(xd, "btrfs", &p), -EOPNOTSUPP);
	assert_null(p);
	assert_msg_has("is not on a btrfs filesystem");
	assert_int_equal(amb_provider_choose(plain, "btrfs", &p), -EOPNOTSUPP);
	assert_msg_has("is not a btrfs subvolume");
	assert_int_equal(amb_provider_choose(td, "reflink", &p), -EOPNOTSUPP);
	assert_msg_has("FICLONE");
	assert_int_equal(amb_provider_choose(tu_path("%s/none", X), NULL, &p), -ENOENT);
	tu_write_gen(tu_path("%s/file", xd), 1, 1);
	assert_int_equal(amb_provider_choose(tu_path("%s/file", xd), NULL, &p), -ENOTDIR);
	assert_int_equal(amb_provider_choose(xd, "lvm", &p), -EINVAL);

	/* the chosen provider for the mount root of btrfs really works */
	char *top = dup_path(tu_path("%s/snap-top", sub));
	tu_write_gen(tu_path("%s/rootfile", B), 3000, 4);
	assert_ok(amb_provider_prepare(P_BTRFS, B, top));
	assert_ok(amb_provider_commit(P_BTRFS, B, top));
	assert_true(tu_file_is_gen(tu_path("%s/rootfile", top), 3000, 4));
	assert_true(tu_exists(tu_path("%s/sub", top)));   /* nested subvolume: */
	assert_false(tu_exists(tu_path("%s/sub/plain", top))); /* empty */
	assert_ok(amb_provider_remove(top));
	free(top);
	free(sub);
	free(plain);
	free(xd);
	free(td);
}

static const char *need_env(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v) {
		fprintf(stderr, "%s not set: run this under with_fs.sh\n", name);
		exit(1);
	}
	return v;
}

/* ---- durability after post_commit (xfs: a shutdown drops what is not on disk) ---- */

#define DUR_FILES 4
#define DUR_SIZE (1u << 20)

static void dur_fill(unsigned char *buf, size_t n, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (unsigned char)x;
	}
}

/* The device mounted at mnt (findmnt). */
static void mnt_source(const char *mnt, char *dev, size_t n)
{
	FILE *p = popen(tu_path("findmnt -no SOURCE '%s'", mnt), "r");
	assert_non_null(p);
	assert_non_null(fgets(dev, (int)n, p));
	pclose(p);
	dev[strcspn(dev, "\n")] = 0;
	assert_true(dev[0] == '/');
}

/*
 * commit fsyncs nothing (it runs while writers are held); post_commit makes
 * the shadow durable.  Shown with `xfs_io -x -c shutdown` (no log flush:
 * what is only in memory is lost, as in a power cut): after post_commit
 * returned, the shut-down, remounted xfs still has every shadow file whole.
 * The volume's files are synced before the commit, so only the shadow's
 * durability is in question.  copy, from tmpfs: the data itself is written
 * back by post_commit (delayed allocation: without the sync the files come
 * back empty); reflink, within xfs: the clones' extent maps.
 */
static void test_durable_after_post_commit(void **state)
{
	(void)state;
	/* copy last: the reflink volume's syncfs below would write its data */
	const amb_provider *provs[2] = {P_REFLINK, P_COPY};
	unsigned char *buf = malloc(DUR_SIZE), *got = malloc(DUR_SIZE);
	assert_non_null(buf);
	assert_non_null(got);
	char *shadows[2];
	for (int p = 0; p < 2; p++) {
		/* copy from tmpfs, so that the shadow's data are written, not
		 * remapped (copy_file_range within one xfs may share extents) */
		const char *vfs = provs[p] == P_COPY ? T : X;
		char *vol = dup_path(tu_path("%s/dur-%s/vol", vfs, provs[p]->name));
		mkdir_p(tu_path("%s/dur-%s", vfs, provs[p]->name));
		mkdir_p(tu_path("%s/dur-%s", X, provs[p]->name));
		mkdir_p(vol);
		for (int f = 0; f < DUR_FILES; f++) {
			dur_fill(buf, DUR_SIZE, (unsigned)(p * 100 + f));
			int fd = open(tu_path("%s/f%d", vol, f), O_WRONLY | O_CREAT | O_TRUNC, 0644);
			assert_true(fd >= 0);
			assert_int_equal(write(fd, buf, DUR_SIZE), (ssize_t)DUR_SIZE);
			assert_int_equal(fsync(fd), 0);
			close(fd);
		}
		int dfd = open(vol, O_RDONLY | O_DIRECTORY);
		assert_int_equal(syncfs(dfd), 0);
		close(dfd);
		shadows[p] = dup_path(tu_path("%s/dur-%s/s1", X, provs[p]->name));
		assert_ok(amb_provider_prepare(provs[p], vol, shadows[p]));
		assert_ok(amb_provider_commit(provs[p], vol, shadows[p]));
		assert_ok(amb_provider_post_commit(provs[p], shadows[p]));
		free(vol);
	}
	char dev[512];
	mnt_source(X, dev, sizeof(dev));
	assert_int_equal(system(tu_path("xfs_io -x -c shutdown '%s'", X)), 0);
	assert_int_equal(system(tu_path("umount '%s' && mount '%s' '%s'", X, dev, X)), 0);
	for (int p = 0; p < 2; p++) {
		amb_shadow_info info;
		assert_ok(amb_provider_shadow_info(shadows[p], &info));
		assert_int_equal(info.state, AMB_SHADOW_COMMITTED);
		for (int f = 0; f < DUR_FILES; f++) {
			dur_fill(buf, DUR_SIZE, (unsigned)(p * 100 + f));
			int fd = open(tu_path("%s/f%d", shadows[p], f), O_RDONLY);
			if (fd < 0)
				fail_msg("%s: %s/f%d lost by the shutdown: %s", provs[p]->name,
				         shadows[p], f, strerror(errno));
			ssize_t n = read(fd, got, DUR_SIZE);
			close(fd);
			if (n != (ssize_t)DUR_SIZE || memcmp(buf, got, DUR_SIZE) != 0)
				fail_msg("%s: %s/f%d: %zd bytes after the shutdown, content %s",
				         provs[p]->name, shadows[p], f, n,
				         n == (ssize_t)DUR_SIZE ? "differs" : "short");
		}
		free(shadows[p]);
	}
	free(buf);
	free(got);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test_providers_fs btrfs|reflink|copy|choose|durable\n");
		return 2;
	}
	P_BTRFS = amb_provider_find("btrfs");
	P_REFLINK = amb_provider_find("reflink");
	P_COPY = amb_provider_find("copy");
	const char *g = argv[1];
	if (strcmp(g, "btrfs") == 0) {
		B = need_env("AMB_TEST_BTRFS");
		X = need_env("AMB_TEST_XFS");
		const struct CMUnitTest tests[] = {
			cmocka_unit_test(test_btrfs_snapshot_under_writes),
			cmocka_unit_test(test_btrfs_nested_and_remove),
			cmocka_unit_test(test_btrfs_errors),
			cmocka_unit_test(test_btrfs_sidecar_settled_by_presync),
		};
		return cmocka_run_group_tests_name("btrfs", tests, NULL, NULL);
	}
	if (strcmp(g, "reflink") == 0) {
		B = need_env("AMB_TEST_BTRFS");
		X = need_env("AMB_TEST_XFS");
		T = need_env("AMB_TEST_TMPFS");
		const struct CMUnitTest tests[] = {
			cmocka_unit_test(test_reflink_xfs),
			cmocka_unit_test(test_reflink_btrfs),
			cmocka_unit_test(test_reflink_two_phase_xfs),
			cmocka_unit_test(test_reflink_two_phase_btrfs),
			cmocka_unit_test(test_reflink_refused),
		};
		return cmocka_run_group_tests_name("reflink", tests, NULL, NULL);
	}
	if (strcmp(g, "copy") == 0) {
		X = need_env("AMB_TEST_XFS");
		T = need_env("AMB_TEST_TMPFS");
		const struct CMUnitTest tests[] = {
			cmocka_unit_test(test_copy_tmpfs),
			cmocka_unit_test(test_copy_xfs_to_tmpfs),
			cmocka_unit_test(test_copy_tmpfs_to_xfs),
			cmocka_unit_test(test_copy_mounts),
		};
		return cmocka_run_group_tests_name("copy", tests, NULL, NULL);
	}
	if (strcmp(g, "choose") == 0) {
		B = need_env("AMB_TEST_BTRFS");
		X = need_env("AMB_TEST_XFS");
		T = need_env("AMB_TEST_TMPFS");
		const struct CMUnitTest tests[] = {
			cmocka_unit_test(test_choose),
		};
		return cmocka_run_group_tests_name("choose", tests, NULL, NULL);
	}
	if (strcmp(g, "durable") == 0) {
		X = need_env("AMB_TEST_XFS");
		T = need_env("AMB_TEST_TMPFS");
		const struct CMUnitTest tests[] = {
			cmocka_unit_test(test_durable_after_post_commit),
		};
		return cmocka_run_group_tests_name("durable", tests, NULL, NULL);
	}
	fprintf(stderr, "test_providers_fs: unknown group %s\n", g);
	return 2;
}

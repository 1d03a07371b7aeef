/*
 * test_engine.c - libamberstore at the API level: transactions, reads,
 * reopen, large values, concurrent committers (group commit), log roll,
 * freeze/thaw with its deadline, backup recording and truncation, and the
 * streaming backup reader followed by hard recovery.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "amber/store.h"
#include "common/checksum.h"
#include "common/vfs.h"
#include "store/dbfile.h"
#include "store/format.h"
#include "store/log.h"
#include "store/restoreenv.h"

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/amber-engine-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd);
}

static void mkinst(const char *sub, uint64_t log_size, int ndb, char *out)
{
	static const char *dbs[] = {"priv1.edb", "pub1.edb", "third.edb"};
	snprintf(out, 512, "%s/%s", tmpdir, sub);
	ams_create_opts o = {.log_size = log_size, .databases = dbs, .ndatabases = ndb};
	int rc = ams_create(out, &o);
	if (rc)
		fail_msg("create: %s", ams_errmsg());
}

static void open_ok(const char *dir, const ams_open_opts *o, ams_instance **in)
{
	int rc = ams_open(dir, o, in);
	if (rc)
		fail_msg("open %s: %s", dir, ams_errmsg());
}

static void fill(unsigned char *v, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		v[i] = (unsigned char)((i * 31 + seed * 17 + (i >> 8)) & 0xff);
}

static void put1(ams_instance *in, const char *t, const char *k, size_t vlen, unsigned seed)
{
	unsigned char *v = malloc(vlen ? vlen : 1);
	fill(v, vlen, seed);
	ams_txn *x;
	assert_int_equal(ams_txn_begin(in, &x), 0);
	assert_int_equal(ams_txn_put(x, t, k, strlen(k), v, vlen), 0);
	int rc = ams_txn_commit(x);
	if (rc)
		fail_msg("commit: %s", ams_errmsg());
	free(v);
}

static void expect(ams_instance *in, const char *t, const char *k, size_t vlen, unsigned seed)
{
	void *v;
	size_t n;
	int rc = ams_get(in, t, k, strlen(k), &v, &n);
	if (rc)
		fail_msg("get %s:%s: %s", t, k, ams_errmsg());
	assert_int_equal(n, vlen);
	unsigned char *e = malloc(vlen ? vlen : 1);
	fill(e, vlen, seed);
	assert_memory_equal(v, e, vlen);
	free(e);
	free(v);
}

static void expect_absent(ams_instance *in, const char *t, const char *k)
{
	void *v = NULL;
	size_t n;
	int rc = ams_get(in, t, k, strlen(k), &v, &n);
	free(v);
	if (rc != AMS_ENOTFOUND)
		fail_msg("get %s:%s: expected not found, got %s", t, k, rc ? ams_strerror(rc) : "a value");
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Wait up to 20 s for a checkpoint beyond n (checkpoints are made by a
 * background thread); its count. */
static uint64_t wait_ckpt(ams_instance *in, uint64_t n)
{
	ams_info info;
	for (int i = 0; i < 2000; i++) {
		ams_info_get(in, &info);
		if (info.checkpoints > n)
			break;
		usleep(10000);
	}
	return info.checkpoints;
}

/* *counter once it has not changed for 300 ms (at most about 10 s): what a
 * background thread had under way has ended */
static int settle(int *counter)
{
	int p = __atomic_load_n(counter, __ATOMIC_SEQ_CST);
	for (int i = 0; i < 34; i++) {
		usleep(300000);
		int q = __atomic_load_n(counter, __ATOMIC_SEQ_CST);
		if (q == p)
			break;
		p = q;
	}
	return p;
}

/* Wait up to ms for *counter to pass n; its value. */
static int wait_above(int *counter, int n, unsigned ms)
{
	uint64_t end = mono_ms() + ms;
	int v;
	while ((v = __atomic_load_n(counter, __ATOMIC_SEQ_CST)) <= n && mono_ms() < end)
		usleep(10000);
	return v;
}

static void test_basic(void **state)
{
	(void)state;
	char dir[512];
	mkinst("basic", 0, 2, dir);
	ams_instance *in;
	open_ok(dir, NULL, &in);
	ams_info info;
	assert_int_equal(ams_info_get(in, &info), 0);
	assert_int_equal(info.ndatabases, 2);
	assert_int_equal(info.page_size, 8192);

	/* tables in both databases, small and long values, empty value */
	ams_txn *x;
	assert_int_equal(ams_txn_begin(in, &x), 0);
	assert_int_equal(ams_txn_create_table(x, "pub", 1), 0);
	assert_int_equal(ams_txn_commit(x), 0);
	put1(in, "mbox", "small", 100, 1);
	put1(in, "mbox", "empty", 0, 2);
	put1(in, "mbox", "big", 1u << 20, 3);
	put1(in, "pub", "p1", 70000, 4);
	expect(in, "mbox", "small", 100, 1);
	expect(in, "mbox", "empty", 0, 2);
	expect(in, "mbox", "big", 1u << 20, 3);
	expect(in, "pub", "p1", 70000, 4);

	/* replace, delete, missing delete fails and changes nothing */
	put1(in, "mbox", "small", 5000, 5);
	expect(in, "mbox", "small", 5000, 5);
	assert_int_equal(ams_txn_begin(in, &x), 0);
	assert_int_equal(ams_txn_del(x, "mbox", "big", 3), 0);
	assert_int_equal(ams_txn_del(x, "mbox", "nope", 4), 0);
	assert_int_equal(ams_txn_commit(x), AMS_ENOTFOUND);
	expect(in, "mbox", "big", 1u << 20, 3);
	assert_int_equal(ams_txn_begin(in, &x), 0);
	assert_int_equal(ams_txn_del(x, "mbox", "big", 3), 0);
	assert_int_equal(ams_txn_commit(x), 0);
	void *v;
	size_t n;
	assert_int_equal(ams_get(in, "mbox", "big", 3, &v, &n), AMS_ENOTFOUND);

	/* bad arguments */
	assert_int_equal(ams_txn_begin(in, &x), 0);
	assert_int_equal(ams_txn_put(x, "$sys", "k", 1, "v", 1), AMS_EINVAL);
	assert_int_equal(ams_txn_put(x, "", "k", 1, "v", 1), AMS_EINVAL);
	assert_int_equal(ams_txn_put(x, "t", "", 0, "v", 1), AMS_EINVAL);
	assert_int_equal(ams_txn_create_table(x, "t", 7), AMS_EINVAL);
	/* a table that exists in another database */
	assert_int_equal(ams_txn_create_table(x, "pub", 0), 0);
	assert_int_equal(ams_txn_commit(x), AMS_EEXIST);

	/* a second open of the same instance is refused */
	ams_instance *in2;
	assert_int_equal(ams_open(dir, NULL, &in2), AMS_ELOCKED);

	assert_int_equal(ams_close(in), 0);

	/* clean shutdown: header says so */
	char path[600];
	snprintf(path, sizeof(path), "%s/priv1.edb", dir);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	unsigned char pg[8192];
	assert_int_equal(fread(pg, 1, sizeof(pg), f), sizeof(pg));
	fclose(f);
	amb_dbhdr h;
	memcpy(&h, pg + 32, sizeof(h));
	assert_int_equal(h.state, AMB_DBSTATE_CLEAN);
	assert_int_equal(h.gen_min_required, 0);
	assert_int_equal(h.gen_max_required, 0);

	/* reopen: everything is still there */
	open_ok(dir, NULL, &in);
	expect(in, "mbox", "small", 5000, 5);
	expect(in, "mbox", "empty", 0, 2);
	expect(in, "pub", "p1", 70000, 4);
	assert_int_equal(ams_get(in, "mbox", "big", 3, &v, &n), AMS_ENOTFOUND);
	assert_int_equal(ams_close(in), 0);
}

struct worker {
	ams_instance *in;
	int id, n;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char key[64];
	unsigned char val[3000];
	for (int i = 0; i < w->n; i++) {
		snprintf(key, sizeof(key), "w%d-%d", w->id, i);
		fill(val, sizeof(val), (unsigned)(w->id * 100000 + i));
		ams_txn *x;
		if (ams_txn_begin(w->in, &x) || ams_txn_put(x, "mt", key, strlen(key), val, 500 + (size_t)(i % 2500)) ||
		    ams_txn_commit(x))
			return (void *)1;
	}
	return NULL;
}

static void test_concurrent_and_crash(void **state)
{
	(void)state;
	char dir[512];
	mkinst("conc", 65536, 1, dir);
	ams_instance *in;
	ams_open_opts oo = {.checkpoint_depth = 256 * 1024};
	open_ok(dir, &oo, &in);
	enum { T = 8, N = 150 };
	pthread_t th[T];
	struct worker w[T];
	for (int i = 0; i < T; i++) {
		w[i] = (struct worker){in, i, N};
		pthread_create(&th[i], NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < T; i++) {
		void *r;
		pthread_join(th[i], &r);
		assert_null(r);
	}
	ams_info info;
	ams_info_get(in, &info);
	assert_int_equal(info.commits, T * N);
	/* group commit: fewer flushes than commits */
	assert_true(info.flushes < info.commits);
	assert_true(info.gen_current > 3);
	/* the checkpointer is a background thread: it may still be at its
	 * first checkpoint when the last commit returns */
	assert_true(wait_ckpt(in, 0) > 0);
	/* crash: no clean shutdown */
	ams_abandon(in);
	open_ok(dir, &oo, &in);
	char key[64];
	unsigned char val[3000];
	for (int t = 0; t < T; t++)
		for (int i = 0; i < N; i++) {
			snprintf(key, sizeof(key), "w%d-%d", t, i);
			void *v;
			size_t n;
			int rc = ams_get(in, "mt", key, strlen(key), &v, &n);
			if (rc)
				fail_msg("%s after crash: %s", key, ams_errmsg());
			fill(val, sizeof(val), (unsigned)(t * 100000 + i));
			assert_int_equal(n, 500 + (size_t)(i % 2500));
			assert_memory_equal(v, val, n);
			free(v);
		}
	assert_int_equal(ams_close(in), 0);
}

static void test_freeze(void **state)
{
	(void)state;
	char dir[512];
	mkinst("freeze", 0, 1, dir);
	ams_instance *in;
	open_ok(dir, NULL, &in);
	put1(in, "t", "a", 10, 1);
	/* held and thawed in time */
	assert_int_equal(ams_freeze(in, 5000), 0);
	assert_int_equal(ams_freeze(in, 5000), AMS_EBUSY);
	expect(in, "t", "a", 10, 1); /* reads go on */
	ams_info info;
	ams_info_get(in, &info);
	assert_int_equal(info.frozen, 1);
	assert_true(info.frozen_since_us > 0);
	assert_int_equal(ams_thaw(in), 0);
	ams_info_get(in, &info);
	assert_int_equal(info.frozen_since_us, 0);
	assert_int_equal(ams_thaw(in), AMS_EINVAL);
	/* the deadline thaws by itself: a commit started while frozen completes
	 * after the deadline, and thaw reports that writes were released */
	assert_int_equal(ams_freeze(in, 300), 0);
	put1(in, "t", "b", 10, 2);
	ams_info_get(in, &info);
	assert_int_equal(info.frozen, 0);
	assert_int_equal(ams_thaw(in), AMS_ETIMEDOUT);
	expect(in, "t", "b", 10, 2);
	assert_int_equal(ams_close(in), 0);
}

/* A vfs whose fdatasyncs of the current log block while sb.block is set,
 * and the fsync of the next log file's preparation while sb.block_tmp is
 * (test_freeze_during_fsync). */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int block;     /* syncs wait while set */
	int waiting;   /* syncs waiting now */
	int block_tmp; /* the fsync of a prepared next log file waits while set */
	int waiting_tmp;
	int done;      /* the test is past the point the watchdog guards */
	int watchdog;  /* the watchdog had to release the syncs */
} sb = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0};

/* Does fd's path end in name?  The current log file (/E00.log): its syncs
 * are the flushes' fdatasyncs (not the checkpointer's or a header's); the
 * next log file being prepared (/E00tmp.log): its fsync (not fdatasync, as
 * a roll's header write has) is the flusher thread's preparation. */
static int sb_is(int fd, const char *name)
{
	char link[64], target[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return 0;
	target[n] = '\0';
	size_t l = strlen(target);
	return l >= strlen(name) && strcmp(target + l - strlen(name), name) == 0;
}

/* Set on sb_committer's threads: sb.block holds only the current log's
 * syncs that a committer makes (its group flush), not the checkpointer's
 * (the header refresh after a roll syncs the new log's header first). */
static _Thread_local int sb_committer_thread;

static int sb_sync(amb_vfs *v, int fd, int datasync)
{
	(void)v;
	pthread_mutex_lock(&sb.mu);
	if (sb.block_tmp && !datasync && sb_is(fd, "/E00tmp.log")) {
		sb.waiting_tmp++;
		pthread_cond_broadcast(&sb.cond);
		while (sb.block_tmp)
			pthread_cond_wait(&sb.cond, &sb.mu);
		sb.waiting_tmp--;
	}
	if (sb.block && sb_committer_thread && sb_is(fd, "/E00.log")) {
		sb.waiting++;
		pthread_cond_broadcast(&sb.cond);
		while (sb.block)
			pthread_cond_wait(&sb.cond, &sb.mu);
		sb.waiting--;
	}
	pthread_mutex_unlock(&sb.mu);
	return amb_vfs_posix()->sync(amb_vfs_posix(), fd, datasync);
}

static void *sb_watchdog(void *arg)
{
	(void)arg;
	/* if ams_freeze() waited for the blocked fsync it would never return:
	 * after 20 s the watchdog releases it, and the test then fails on
	 * sb.watchdog instead of hanging */
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 20;
	pthread_mutex_lock(&sb.mu);
	while (!sb.done)
		if (pthread_cond_timedwait(&sb.cond, &sb.mu, &ts)) {
			sb.watchdog = 1;
			sb.block = sb.block_tmp = 0;
			pthread_cond_broadcast(&sb.cond);
			break;
		}
	pthread_mutex_unlock(&sb.mu);
	return NULL;
}

typedef struct {
	ams_instance *in;
	int rc;
	const char *key;
	unsigned seed;
	size_t vlen; /* sb_committer's value: vlen bytes (0: 100) */
	int done;    /* set (atomically) when sb_committer returns */
} sb_commit;

static void *sb_roller(void *arg)
{
	sb_commit *c = arg;
	c->rc = ams_log_roll(c->in, NULL);
	return NULL;
}

static void *sb_committer(void *arg)
{
	sb_commit *c = arg;
	sb_committer_thread = 1;
	size_t n = c->vlen ? c->vlen : 100;
	unsigned char *v = malloc(n);
	fill(v, n, c->seed);
	ams_txn *x;
	c->rc = v ? ams_txn_begin(c->in, &x) : AMS_ENOMEM;
	if (!c->rc)
		c->rc = ams_txn_put(x, "t", c->key, strlen(c->key), v, n);
	if (!c->rc)
		c->rc = ams_txn_commit(x);
	free(v);
	__atomic_store_n(&c->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/*
 * The freeze holds writes, not fsyncs: a commit whose records are written
 * and whose fdatasync is still running does not delay ams_freeze(); its
 * records are in the files a snapshot taken during the freeze copies (here
 * cp -a while frozen), the commit is acknowledged when the fsync returns,
 * and the copy, recovered, holds it.  A second commit applied while that
 * fdatasync runs waits in the log buffer: the freeze writes nothing, so
 * that commit is held like a later one: not acknowledged during the
 * freeze (even once the first fsync has returned), not in the copy (which
 * recovers without it), acknowledged after the thaw.  Meanwhile the
 * flusher thread is kept in the fsync of the next log file's preparation
 * (after a roll).  The old freeze, which wrote the buffer itself, put the
 * second commit in the copy and acknowledged it while frozen.
 */
static void test_freeze_during_fsync(void **state)
{
	(void)state;
	char dir[512], snap[600], cmd[1400];
	mkinst("fzsync", 0, 1, dir);
	amb_vfs vfs = *amb_vfs_posix();
	vfs.sync = sb_sync;
	ams_open_opts oo = {.vfs = &vfs};
	ams_instance *in;
	open_ok(dir, &oo, &in);
	put1(in, "t", "a", 10, 1);
	/* a roll returns once the next log file is prepared: the roll below
	 * then finds it ready, and only the preparation after it blocks */
	assert_int_equal(ams_log_roll(in, NULL), 0);

	pthread_mutex_lock(&sb.mu);
	sb.block_tmp = 1;
	sb.done = sb.watchdog = 0;
	pthread_mutex_unlock(&sb.mu);
	pthread_t wd, ct, rt;
	assert_int_equal(pthread_create(&wd, NULL, sb_watchdog, NULL), 0);
	/* a roll; the flusher thread then prepares the next log file and
	 * stays in its fsync */
	sb_commit roll = {.in = in, .rc = -1};
	assert_int_equal(pthread_create(&rt, NULL, sb_roller, &roll), 0);
	pthread_mutex_lock(&sb.mu);
	while (sb.waiting_tmp == 0 && !sb.watchdog)
		pthread_cond_wait(&sb.cond, &sb.mu);
	sb.block = 1;
	pthread_mutex_unlock(&sb.mu);
	sb_commit c = {.in = in, .rc = -1, .key = "late", .seed = 7};
	assert_int_equal(pthread_create(&ct, NULL, sb_committer, &c), 0);
	/* the commit's flush has written its records and waits in fdatasync */
	pthread_mutex_lock(&sb.mu);
	while (sb.waiting == 0 && !sb.watchdog)
		pthread_cond_wait(&sb.cond, &sb.mu);
	pthread_mutex_unlock(&sb.mu);
	ams_info info;
	/* a second commit, applied while that fdatasync runs: its record
	 * waits in the log buffer (committers lead the next flush only after
	 * the fdatasync) */
	ams_info_get(in, &info);
	uint64_t applied1 = info.lsn_applied;
	pthread_t ct2;
	sb_commit c2 = {.in = in, .rc = -1, .key = "later", .seed = 8};
	assert_int_equal(pthread_create(&ct2, NULL, sb_committer, &c2), 0);
	for (int i = 0; i < 60000; i++) {
		ams_info_get(in, &info);
		if (info.lsn_applied > applied1)
			break;
		usleep(1000);
	}
	assert_true(info.lsn_applied > applied1);

	assert_int_equal(ams_freeze(in, 60000), 0);
	pthread_mutex_lock(&sb.mu);
	int waiting = sb.waiting, waiting_tmp = sb.waiting_tmp, wdog = sb.watchdog;
	pthread_mutex_unlock(&sb.mu);
	if (wdog || waiting == 0 || waiting_tmp == 0)
		fail_msg("ams_freeze() waited for an fsync in progress (watchdog %d, log syncs "
		         "still blocked %d, preparation syncs %d)", wdog, waiting, waiting_tmp);
	ams_info_get(in, &info);
	assert_true(info.lsn_durable < info.lsn_applied); /* the commit is not durable yet */
	/* a snapshot while frozen and while the fsync is still blocked */
	snprintf(snap, sizeof(snap), "%s-snap", dir);
	snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", dir, snap);
	assert_int_equal(system(cmd), 0);

	/* the fsync returns: the commit is acknowledged, while still frozen */
	pthread_mutex_lock(&sb.mu);
	sb.block = sb.block_tmp = 0;
	sb.done = 1;
	pthread_cond_broadcast(&sb.cond);
	pthread_mutex_unlock(&sb.mu);
	assert_int_equal(pthread_join(ct, NULL), 0);
	assert_int_equal(pthread_join(rt, NULL), 0);
	assert_int_equal(pthread_join(wd, NULL), 0);
	assert_int_equal(roll.rc, 0);
	if (c.rc)
		fail_msg("the commit in fsync during the freeze failed: %s", ams_strerror(c.rc));
	/* the second stays held while frozen (200 ms is ample for a flush
	 * that nothing holds: the syncs are unblocked) */
	usleep(200000);
	if (__atomic_load_n(&c2.done, __ATOMIC_SEQ_CST))
		fail_msg("the commit in the log buffer at the freeze was acknowledged while frozen "
		         "(rc %d)", c2.rc);
	ams_info_get(in, &info);
	assert_int_equal(info.frozen, 1);
	assert_int_equal(ams_thaw(in), 0); /* nothing was written while frozen */
	assert_int_equal(pthread_join(ct2, NULL), 0);
	if (c2.rc)
		fail_msg("the commit held by the freeze failed after the thaw: %s", ams_strerror(c2.rc));
	expect(in, "t", "late", 100, 7);
	expect(in, "t", "later", 100, 8);
	assert_int_equal(ams_close(in), 0);

	/* the copy taken during the freeze recovers with the first commit,
	 * not the held one */
	open_ok(snap, NULL, &in);
	expect(in, "t", "a", 10, 1);
	expect(in, "t", "late", 100, 7);
	expect_absent(in, "t", "later");
	assert_int_equal(ams_close(in), 0);
}

/* Page writes to database files (past the two header pages), counted by a
 * vfs (test_quiesce). */
static int qc_pages;
static ssize_t qc_pwrite(amb_vfs *v, int fd, const void *buf, size_t n, off_t off)
{
	(void)v;
	if (off >= 2 * 8192 && sb_is(fd, ".edb"))
		__atomic_add_fetch(&qc_pages, 1, __ATOMIC_SEQ_CST);
	return amb_vfs_posix()->pwrite(amb_vfs_posix(), fd, buf, n, off);
}

/* A new one-database instance SUB (log files of LOG_SIZE, 0: the default)
 * opened through a vfs that counts its page writes in qc_pages, with a
 * 64 KiB checkpoint depth (the quiet tests). */
static ams_instance *open_counted(const char *sub, uint64_t log_size, char *dir)
{
	static amb_vfs vfs; /* the instance keeps a pointer to it */
	vfs = *amb_vfs_posix();
	vfs.pwrite = qc_pwrite;
	mkinst(sub, log_size, 1, dir);
	ams_open_opts oo = {.vfs = &vfs, .checkpoint_depth = 64 * 1024};
	ams_instance *in;
	open_ok(dir, &oo, &in);
	return in;
}

/*
 * ams_quiesce() keeps checkpoint page writes back while commits go on; a
 * thaw ends it, and so does its deadline, with nobody calling anything.
 */
static void test_quiesce(void **state)
{
	(void)state;
	char dir[512], key[32];
	ams_instance *in = open_counted("quiesce", 0, dir);
	int k = 0;
	/* commits until a checkpoint has written pages */
	ams_info info;
	ams_info_get(in, &info);
	uint64_t c0 = info.checkpoints;
	for (; k < 40; k++) {
		snprintf(key, sizeof(key), "k%d", k);
		put1(in, "t", key, 4000, (unsigned)k);
	}
	assert_true(wait_ckpt(in, c0) > c0);
	assert_true(__atomic_load_n(&qc_pages, __ATOMIC_SEQ_CST) > 0);

	/* quiesced: commits worth several checkpoints, no page written */
	assert_int_equal(ams_quiesce(in, 60000), 0);
	int p0 = settle(&qc_pages); /* a batch already started ends */
	for (; k < 120; k++) {
		snprintf(key, sizeof(key), "k%d", k);
		put1(in, "t", key, 4000, (unsigned)k);
	}
	usleep(300000);
	assert_int_equal(__atomic_load_n(&qc_pages, __ATOMIC_SEQ_CST), p0);
	/* a thaw (not frozen: AMS_EINVAL) ends the quiet: pages are written */
	assert_int_equal(ams_thaw(in), AMS_EINVAL);
	assert_true(wait_above(&qc_pages, p0, 20000) > p0);

	/* the deadline ends it with nobody calling anything.  No page may be
	 * written before the deadline: checked only while the quiet surely
	 * lasts, timed from before ams_quiesce() (which sets the deadline on
	 * entry and may then wait up to 1 s for a busy checkpointer) */
	enum { QUIET_MS = 6000 };
	settle(&qc_pages);
	uint64_t tq = mono_ms();
	assert_int_equal(ams_quiesce(in, QUIET_MS), 0);
	p0 = settle(&qc_pages);
	for (; k < 160; k++) {
		snprintf(key, sizeof(key), "k%d", k);
		put1(in, "t", key, 4000, (unsigned)k);
	}
	int p1 = __atomic_load_n(&qc_pages, __ATOMIC_SEQ_CST);
	if (mono_ms() - tq < QUIET_MS)
		assert_int_equal(p1, p0);
	else
		print_message("test_quiesce: the commits outlasted the %d ms quiet; "
			      "its page check skipped\n", (int)QUIET_MS);
	assert_true(wait_above(&qc_pages, p0, QUIET_MS + 20000) > p0);
	for (int i = 0; i < k; i += 37) {
		snprintf(key, sizeof(key), "k%d", i);
		expect(in, "t", key, 4000, (unsigned)i);
	}
	assert_int_equal(ams_close(in), 0);
}

/* Commits keys k<*k>.. k<to - 1> of 4000 bytes into table "t"; fails the
 * test if they did not fill at least @p gens new log generations. */
static void put_upto(ams_instance *in, int *k, int to, uint32_t gens)
{
	char key[32];
	ams_info info;
	assert_int_equal(ams_info_get(in, &info), 0);
	uint32_t g0 = info.gen_current;
	for (; *k < to; (*k)++) {
		snprintf(key, sizeof(key), "k%d", *k);
		put1(in, "t", key, 4000, (unsigned)*k);
	}
	assert_int_equal(ams_info_get(in, &info), 0);
	if (info.gen_current < g0 + gens)
		fail_msg("the commits filled generations %u to %u only", g0, info.gen_current);
}

/*
 * ams_thaw_quiet(): the quiet goes on after the thaw.  Commits worth several
 * checkpoints and several log generations go through meanwhile: each new
 * generation's file is prepared for the commit that needs it, although
 * the quiet holds back a preparation that only a roll asked for (were it
 * held, the commits would wait for the quiet's 60 s deadline, which would
 * then let the pages through).  No database page is written until
 * ams_quiesce(in, 0) ends the quiet; a shorter deadline ends it with nobody
 * calling anything; and a thaw does not keep it once the checkpointer has
 * waited for quiets for over 5 s.
 */
static void test_thaw_quiet(void **state)
{
	(void)state;
	char dir[512], key[32];
	ams_instance *in = open_counted("thaw-quiet", 64 * 1024, dir);
	int k = 0;

	assert_int_equal(ams_quiesce(in, 60000), 0);
	assert_int_equal(ams_freeze(in, 10000), 0);
	assert_int_equal(ams_thaw_quiet(in, 60000), 0);
	int p0 = settle(&qc_pages);
	put_upto(in, &k, 120, 3);
	usleep(300000);
	assert_int_equal(__atomic_load_n(&qc_pages, __ATOMIC_SEQ_CST), p0);
	assert_int_equal(ams_quiesce(in, 0), 0);
	assert_true(wait_above(&qc_pages, p0, 20000) > p0);

	/* the deadline ends it */
	assert_int_equal(ams_quiesce(in, 60000), 0);
	assert_int_equal(ams_freeze(in, 10000), 0);
	assert_int_equal(ams_thaw_quiet(in, 1500), 0);
	p0 = settle(&qc_pages);
	put_upto(in, &k, 160, 0);
	assert_true(wait_above(&qc_pages, p0, 20000) > p0);

	/* a checkpointer kept waiting for over 5 s (shadows one after the other,
	 * none followed by backup-complete): the next thaw ends the quiet.  The
	 * commits before it cross generations in a quiet before any thaw, too */
	assert_int_equal(ams_quiesce(in, 60000), 0);
	p0 = settle(&qc_pages);
	put_upto(in, &k, 240, 3);
	usleep(5500000);
	assert_int_equal(__atomic_load_n(&qc_pages, __ATOMIC_SEQ_CST), p0);
	assert_int_equal(ams_freeze(in, 10000), 0);
	assert_int_equal(ams_thaw_quiet(in, 60000), 0);
	assert_true(wait_above(&qc_pages, p0, 20000) > p0);
	for (int i = 0; i < k; i += 13) {
		snprintf(key, sizeof(key), "k%d", i);
		expect(in, "t", key, 4000, (unsigned)i);
	}
	assert_int_equal(ams_close(in), 0);
}

/* Header writes to database files (the first two pages), counted by a vfs
 * (test_unchanged_files). */
static int uc_hdr;
static ssize_t uc_pwrite(amb_vfs *v, int fd, const void *buf, size_t n, off_t off)
{
	(void)v;
	if (off < 2 * 8192 && sb_is(fd, ".edb"))
		__atomic_add_fetch(&uc_hdr, 1, __ATOMIC_SEQ_CST);
	return amb_vfs_posix()->pwrite(amb_vfs_posix(), fd, buf, n, off);
}

/* How many of paths[0..n) are database files (*.edb); every other one
 * must be an existing archived log of a generation below gen. */
static size_t n_edb(const char **paths, size_t n, uint32_t gen)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (strlen(paths[i]) > 4 && !strcmp(paths[i] + strlen(paths[i]) - 4, ".edb")) {
			k++;
			continue;
		}
		const char *b = strrchr(paths[i], '/');
		uint32_t g = amb_log_parse_name(b ? b + 1 : paths[i], "E00");
		struct stat st;
		if (!g || g >= gen || stat(paths[i], &st) != 0)
			fail_msg("%s: not an archived log below generation %u", paths[i], gen);
	}
	return k;
}

/* Wait until path exists, at most ms milliseconds; whether it does. */
static bool wait_file(const char *path, int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		if (access(path, F_OK) == 0)
			return true;
		usleep(10000);
	}
	return access(path, F_OK) == 0;
}

/*
 * ams_unchanged_files(): while frozen after ams_quiesce(), the databases
 * nothing wrote since, then the archived logs older than the generation
 * current at the quiesce (or made current by an ams_log_roll() during the
 * quiet); none when not frozen or not quiesced.  A header
 * refresh waits for the quiet to end; once the quiet's deadline has let
 * it write, the databases are not listed.
 */
static void test_unchanged_files(void **state)
{
	(void)state;
	char dir[512];
	mkinst("unchanged", 0, 2, dir);
	amb_vfs vfs = *amb_vfs_posix();
	vfs.pwrite = uc_pwrite;
	ams_open_opts oo = {.vfs = &vfs};
	ams_instance *in;
	open_ok(dir, &oo, &in);
	put1(in, "t", "a", 100, 1);
	const char *paths[8];
	/* neither frozen nor quiesced, then frozen without a quiesce: none */
	assert_int_equal(ams_unchanged_files(in, paths, 8), 0);
	assert_int_equal(ams_freeze(in, 60000), 0);
	assert_int_equal(ams_unchanged_files(in, paths, 8), 0);
	assert_int_equal(ams_thaw(in), 0);

	/* quiesced (after the header refresh a roll asks for), then frozen:
	 * both databases.  ams_quiesce() lets the refresh finish, for at most
	 * 1 s: when it returned sooner, it did not give up, and both databases
	 * must be listed; a refresh slower than that (a loaded machine) may
	 * leave them out, as the engine documents (src/store/instance.c), but
	 * nothing else than a database or an archived log is ever listed */
	uint32_t gen;
	assert_int_equal(ams_log_roll(in, &gen), 0);
	uint64_t tq = mono_ms();
	assert_int_equal(ams_quiesce(in, 60000), 0);
	bool waited_out = mono_ms() - tq >= 1000;
	put1(in, "t", "b", 100, 2); /* a commit writes the log, not a database */
	assert_int_equal(ams_freeze(in, 60000), 0);
	size_t n = ams_unchanged_files(in, paths, 8);
	char want[600];
	char real[PATH_MAX];
	if (!waited_out) {
		assert_true(n >= 3); /* priv1.edb, pub1.edb, generation gen - 1's log first */
		assert_int_equal(n_edb(paths, n, gen), 2);
		snprintf(want, sizeof(want), "%s/priv1.edb", dir);
		assert_non_null(realpath(want, real));
		assert_string_equal(paths[0], real);
		snprintf(want, sizeof(want), "%s/E00%08X.log", dir, gen - 1);
		assert_non_null(realpath(want, real));
		assert_string_equal(paths[2], real);
	} else {
		print_message("test_unchanged_files: the header refresh outlasted ams_quiesce()'s "
			      "1 s; only the bounds checked\n");
		assert_true(n >= 1);
		assert_true(n_edb(paths, n, gen) <= 2);
	}
	assert_int_equal(ams_unchanged_files(in, paths, 1), 1); /* at most max */
	assert_int_equal(ams_thaw(in), 0);
	/* the thaw ended the quiet: frozen again, none */
	assert_int_equal(ams_freeze(in, 60000), 0);
	assert_int_equal(ams_unchanged_files(in, paths, 8), 0);
	assert_int_equal(ams_thaw(in), 0);

	/* a roll while quiesced (a writer's prepare-snapshot quiesces, then
	 * rolls): the header refresh it asks for waits for the thaw, so both
	 * databases stay unchanged, and so does the preparation of the next
	 * log file: the roll returns without it (before the quiet, the roll
	 * waited for it).  The generation the roll archived is final and
	 * listed.  After the thaw the headers are written and the next log
	 * file prepared.  (First, whatever header write is still under way
	 * ends.) */
	char tmpl[600];
	snprintf(tmpl, sizeof(tmpl), "%s/E00tmp.log", dir);
	settle(&uc_hdr);
	assert_int_equal(ams_quiesce(in, 60000), 0);
	int h0 = __atomic_load_n(&uc_hdr, __ATOMIC_SEQ_CST);
	uint32_t gen2;
	assert_int_equal(ams_log_roll(in, &gen2), 0);
	assert_int_equal(access(tmpl, F_OK), -1); /* the roll took it; none made since */
	usleep(300000);
	assert_int_equal(__atomic_load_n(&uc_hdr, __ATOMIC_SEQ_CST), h0);
	assert_int_equal(access(tmpl, F_OK), -1);
	assert_int_equal(ams_freeze(in, 60000), 0);
	n = ams_unchanged_files(in, paths, 8);
	assert_true(n >= 3);
	assert_int_equal(n_edb(paths, n, gen2), 2);
	snprintf(want, sizeof(want), "%s/E00%08X.log", dir, gen2 - 1);
	assert_non_null(realpath(want, real));
	assert_string_equal(paths[2], real);
	assert_int_equal(ams_thaw(in), 0);
	/* all of it: two databases, two header copies each; then nothing
	 * more is under way for the quiet below */
	assert_true(wait_above(&uc_hdr, h0 + 3, 20000) >= h0 + 4);
	assert_true(wait_file(tmpl, 20000));
	settle(&uc_hdr);

	/* a quiet whose deadline passed: the refresh it held back writes the
	 * headers, the next log file is prepared (nobody called anything),
	 * and a freeze then lists neither database */
	assert_int_equal(ams_quiesce(in, 300), 0);
	h0 = __atomic_load_n(&uc_hdr, __ATOMIC_SEQ_CST);
	assert_int_equal(ams_log_roll(in, NULL), 0);
	/* two databases, each header written as two copies (one pwrite each):
	 * wait for all four, not only the first database's two (that raced) */
	assert_true(wait_above(&uc_hdr, h0 + 3, 20000) >= h0 + 4);
	assert_true(wait_file(tmpl, 20000));
	assert_int_equal(ams_freeze(in, 60000), 0);
	n = ams_unchanged_files(in, paths, 8);
	assert_int_equal(n_edb(paths, n, UINT32_MAX), 0);
	assert_true(n >= 1); /* the archived logs still */
	assert_int_equal(ams_thaw(in), 0);
	expect(in, "t", "b", 100, 2);
	assert_int_equal(ams_close(in), 0);
}

/* A vfs whose renames wait while rw_block is set
 * (test_freeze_waits_for_roll). */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int block, waiting;
} rw = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static int rw_rename(amb_vfs *v, const char *from, const char *to)
{
	(void)v;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 20; /* never hang the suite */
	pthread_mutex_lock(&rw.mu);
	rw.waiting++;
	pthread_cond_broadcast(&rw.cond);
	while (rw.block && pthread_cond_timedwait(&rw.cond, &rw.mu, &ts) == 0)
		;
	rw.waiting--;
	pthread_mutex_unlock(&rw.mu);
	return amb_vfs_posix()->rename(amb_vfs_posix(), from, to);
}

typedef struct {
	ams_instance *in;
	int rc;
} rw_arg;

static void *rw_freezer(void *arg)
{
	rw_arg *a = arg;
	a->rc = ams_freeze(a->in, 600000);
	return NULL;
}

/*
 * A freeze set up while a log roll is in progress (its first rename held
 * here) waits for the roll before it holds commits: a commit started
 * meanwhile is admitted and applied, and the freeze is done only after the
 * roll, so the roll's work is not part of the hold.
 */
static void test_freeze_waits_for_roll(void **state)
{
	(void)state;
	char dir[512];
	mkinst("rollwait", 0, 1, dir);
	amb_vfs vfs = *amb_vfs_posix();
	vfs.rename = rw_rename;
	/* no checkpoint in the test (its checkpoint file's rename would be
	 * held too): only the roll's */
	ams_open_opts oo = {.vfs = &vfs, .checkpoint_depth = 1ull << 40};
	ams_instance *in;
	open_ok(dir, &oo, &in);
	put1(in, "t", "a", 100, 1);
	assert_int_equal(ams_log_roll(in, NULL), 0); /* the next file is prepared */

	pthread_mutex_lock(&rw.mu);
	rw.block = 1;
	pthread_mutex_unlock(&rw.mu);
	pthread_t rt, ft, ct;
	sb_commit roll = {.in = in, .rc = -1};
	assert_int_equal(pthread_create(&rt, NULL, sb_roller, &roll), 0);
	pthread_mutex_lock(&rw.mu);
	while (rw.waiting == 0)
		pthread_cond_wait(&rw.cond, &rw.mu);
	pthread_mutex_unlock(&rw.mu);
	/* the roll waits in its first rename; a freeze is asked for */
	rw_arg fa = {in, -1}; /* a long hold: a slow (sanitizer) run must not reach it */
	assert_int_equal(pthread_create(&ft, NULL, rw_freezer, &fa), 0);
	usleep(100000);
	ams_info info;
	ams_info_get(in, &info);
	assert_int_equal(info.frozen, 0);
	uint64_t applied = info.lsn_applied;
	sb_commit c = {.in = in, .rc = -1, .key = "during", .seed = 3};
	assert_int_equal(pthread_create(&ct, NULL, sb_committer, &c), 0);
	for (int i = 0; i < 2000; i++) {
		ams_info_get(in, &info);
		if (info.lsn_applied > applied)
			break;
		usleep(1000);
	}
	if (info.lsn_applied <= applied)
		fail_msg("a commit was not admitted while the freeze waited for a roll");
	assert_int_equal(info.frozen, 0);

	pthread_mutex_lock(&rw.mu);
	rw.block = 0;
	pthread_cond_broadcast(&rw.cond);
	pthread_mutex_unlock(&rw.mu);
	assert_int_equal(pthread_join(rt, NULL), 0);
	assert_int_equal(pthread_join(ft, NULL), 0);
	assert_int_equal(roll.rc, 0);
	assert_int_equal(fa.rc, 0);
	ams_info_get(in, &info);
	assert_int_equal(info.frozen, 1);
	assert_int_equal(ams_thaw(in), 0);
	assert_int_equal(pthread_join(ct, NULL), 0);
	assert_int_equal(c.rc, 0);
	expect(in, "t", "during", 100, 3);
	assert_int_equal(ams_close(in), 0);
}

/* A vfs whose space reservations in database files wait while ap.block
 * is set (test_freeze_skips_applying). */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int block, waiting, watchdog;
} ap = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};

static int ap_allocate(amb_vfs *v, int fd, off_t off, off_t len)
{
	(void)v;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 20; /* never hang the suite: the test then fails on ap.watchdog */
	pthread_mutex_lock(&ap.mu);
	if (ap.block && sb_is(fd, ".edb")) {
		ap.waiting++;
		pthread_cond_broadcast(&ap.cond);
		while (ap.block)
			if (pthread_cond_timedwait(&ap.cond, &ap.mu, &ts)) {
				ap.watchdog = 1;
				ap.block = 0;
			}
		ap.waiting--;
	}
	pthread_mutex_unlock(&ap.mu);
	return amb_vfs_posix()->allocate(amb_vfs_posix(), fd, off, len);
}

/*
 * A commit admitted before a freeze but still applying (here: held in the
 * space reservation of a database extension, as a slow extension, page read
 * or page fault would hold it) does not delay ams_freeze(): the freeze
 * returns while it is held.  Released, the commit forms its record but is
 * not acknowledged while frozen (its flush waits at the gate); a copy taken
 * then recovers without it and with everything before it; after the thaw
 * it is acknowledged, and ams_thaw() reports that writes were held.
 */
static void test_freeze_skips_applying(void **state)
{
	(void)state;
	char dir[512], snap[600], cmd[1400];
	mkinst("applying", 0, 1, dir);
	amb_vfs vfs = *amb_vfs_posix();
	vfs.allocate = ap_allocate;
	ams_open_opts oo = {.vfs = &vfs};
	ams_instance *in;
	open_ok(dir, &oo, &in);
	put1(in, "t", "a", 100, 1);

	pthread_mutex_lock(&ap.mu);
	ap.block = 1;
	ap.watchdog = 0;
	pthread_mutex_unlock(&ap.mu);
	pthread_t ct;
	/* 1 MiB: more pages than a new database has free, so it extends it */
	sb_commit c = {.in = in, .rc = -1, .key = "big", .seed = 9, .vlen = 1u << 20};
	assert_int_equal(pthread_create(&ct, NULL, sb_committer, &c), 0);
	pthread_mutex_lock(&ap.mu);
	while (ap.waiting == 0 && !ap.watchdog)
		pthread_cond_wait(&ap.cond, &ap.mu);
	pthread_mutex_unlock(&ap.mu);
	ams_info info;
	ams_info_get(in, &info);
	uint64_t applied = info.lsn_applied;

	assert_int_equal(ams_freeze(in, 600000), 0);
	pthread_mutex_lock(&ap.mu);
	int waiting = ap.waiting, wdog = ap.watchdog;
	ap.block = 0; /* the commit goes on applying */
	pthread_cond_broadcast(&ap.cond);
	pthread_mutex_unlock(&ap.mu);
	if (wdog || waiting == 0)
		fail_msg("ams_freeze() waited for a commit still applying (watchdog %d, "
		         "reservations still held %d)", wdog, waiting);
	/* its record is formed; its flush waits for the thaw */
	for (int i = 0; i < 60000; i++) {
		ams_info_get(in, &info);
		if (info.lsn_applied > applied)
			break;
		usleep(1000);
	}
	if (info.lsn_applied <= applied)
		fail_msg("the commit held in its reservation did not form its record");
	usleep(100000); /* were it flushed while frozen, it would return now */
	assert_int_equal(__atomic_load_n(&c.done, __ATOMIC_SEQ_CST), 0);
	assert_true(info.lsn_durable < info.lsn_applied);
	snprintf(snap, sizeof(snap), "%s-snap", dir);
	snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", dir, snap);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(__atomic_load_n(&c.done, __ATOMIC_SEQ_CST), 0);

	assert_int_equal(ams_thaw(in), 0); /* held throughout */
	assert_int_equal(pthread_join(ct, NULL), 0);
	if (c.rc)
		fail_msg("the commit applying at the freeze failed: %s", ams_strerror(c.rc));
	expect(in, "t", "big", 1u << 20, 9);
	assert_int_equal(ams_close(in), 0);

	/* the copy taken while frozen: consistent, without the held commit */
	open_ok(snap, NULL, &in);
	expect(in, "t", "a", 100, 1);
	void *v = NULL;
	size_t n = 0;
	assert_int_equal(ams_get(in, "t", "big", 3, &v, &n), AMS_ENOTFOUND);
	free(v);
	assert_int_equal(ams_close(in), 0);
}

/* A vfs whose space reservations fail with ENOSPC above rs_limit bytes
 * (0: no limit), counting the refusals (test_reserve_on_full_disk). */
static off_t rs_limit;
static int rs_refused;

static int rs_allocate(amb_vfs *v, int fd, off_t off, off_t len)
{
	(void)v;
	if (rs_limit && len > rs_limit) {
		rs_refused++;
		return -ENOSPC;
	}
	return amb_vfs_posix()->allocate(amb_vfs_posix(), fd, off, len);
}

/*
 * A database reserves file space 1/16 of its size ahead of the pages it
 * adds (at most 2 MiB at a time).  When the disk has no room for the step
 * ahead, the reservation falls back to what the extension needs and the
 * commit succeeds; when not even that fits, the commit fails with
 * AMS_ENOSPC, the instance stays usable and nothing committed is lost.
 */
static void test_reserve_on_full_disk(void **state)
{
	(void)state;
	char dir[512], key[32];
	mkinst("reserve", 0, 1, dir);
	amb_vfs vfs = *amb_vfs_posix();
	vfs.allocate = rs_allocate;
	rs_limit = 0;
	rs_refused = 0;
	ams_open_opts oo = {.vfs = &vfs};
	ams_instance *in;
	open_ok(dir, &oo, &in);
	ams_info info;
	ams_info_get(in, &info);
	/* a database of more than 16 x 2 MiB: the step ahead is larger than
	 * the 2 MiB an extension adds */
	int n = 0;
	for (; n < 40; n++) {
		snprintf(key, sizeof(key), "k%d", n);
		put1(in, "t", key, 1u << 20, (unsigned)n);
	}
	/* room for one extension only: the reservation ahead is refused, the
	 * one the extension needs is not */
	rs_limit = (off_t)(2u << 20);
	for (int i = 0; i < 40 && !rs_refused; i++, n++) {
		snprintf(key, sizeof(key), "k%d", n);
		put1(in, "t", key, 256u << 10, (unsigned)n);
	}
	if (!rs_refused)
		fail_msg("no reservation ahead was asked for in 40 commits of 256 KiB");
	/* no room at all: a commit that needs more space fails cleanly */
	rs_limit = 1;
	int rc = 0;
	for (int i = 0; i < 200 && !rc; i++) {
		unsigned char *v = malloc(1u << 20);
		fill(v, 1u << 20, 7);
		ams_txn *x;
		assert_int_equal(ams_txn_begin(in, &x), 0);
		snprintf(key, sizeof(key), "full%d", i);
		assert_int_equal(ams_txn_put(x, "t", key, strlen(key), v, 1u << 20), 0);
		rc = ams_txn_commit(x);
		free(v);
	}
	assert_int_equal(rc, AMS_ENOSPC);
	ams_info_get(in, &info);
	assert_int_equal(info.failed, 0);
	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		expect(in, "t", key, i < 40 ? 1u << 20 : 256u << 10, (unsigned)i);
	}
	rs_limit = 0; /* space again: commits go on */
	put1(in, "t", "after", 1u << 20, 5);
	assert_int_equal(ams_close(in), 0);
	open_ok(dir, NULL, &in);
	expect(in, "t", "after", 1u << 20, 5);
	expect(in, "t", "k0", 1u << 20, 0);
	assert_int_equal(ams_close(in), 0);
}

static int count_logs(const char *dir, uint32_t *oldest)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	*oldest = UINT32_MAX;
	while ((e = readdir(d))) {
		uint32_t g = amb_log_parse_name(e->d_name, "E00");
		if (g) {
			n++;
			if (g < *oldest)
				*oldest = g;
		}
	}
	closedir(d);
	return n;
}

static void test_roll_and_truncate(void **state)
{
	(void)state;
	char dir[512];
	mkinst("trunc", 65536, 1, dir);
	ams_instance *in;
	ams_open_opts oo = {.checkpoint_depth = 128 * 1024};
	open_ok(dir, &oo, &in);
	for (int i = 0; i < 40; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		put1(in, "t", k, 20000, (unsigned)i);
	}
	uint32_t g1, g2;
	assert_int_equal(ams_log_roll(in, &g1), 0);
	assert_int_equal(ams_log_roll(in, &g2), 0);
	assert_int_equal(g2, g1 + 1);
	uint32_t oldest;
	int before = count_logs(dir, &oldest);
	assert_true(before > 5);
	/* copy and differential truncate nothing */
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_COPY, oldest, g2 - 1, 1, 0), 0);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_DIFFERENTIAL, oldest, g2 - 1, 1, 0), 0);
	uint32_t o2;
	assert_int_equal(count_logs(dir, &o2), before);
	/* a streamed range reaching the current generation is refused; a
	 * snapshot's may end at the current generation but not after it */
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL | AMS_BACKUP_STREAMED, oldest, g2,
	                                     1, 0), AMS_EINVAL);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL, oldest, g2 + 1, 1, 0), AMS_EINVAL);
	assert_int_equal(count_logs(dir, &o2), before);
	/* full: truncates below its first generation, never at/after the checkpoint */
	ams_info info;
	ams_info_get(in, &info);
	uint32_t low = g2 - 3;
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL, low, g2 - 1, 2, 0), 0);
	count_logs(dir, &o2);
	uint32_t expect_oldest = low < info.gen_checkpoint ? low : info.gen_checkpoint;
	assert_int_equal(o2, expect_oldest);
	assert_int_equal(ams_close(in), 0);
	/* the header records the full and the differential was cleared by it */
	char path[600];
	snprintf(path, sizeof(path), "%s/priv1.edb", dir);
	FILE *f = fopen(path, "rb");
	unsigned char pg[8192];
	assert_int_equal(fread(pg, 1, sizeof(pg), f), sizeof(pg));
	fclose(f);
	amb_dbhdr h;
	memcpy(&h, pg + 32, sizeof(h));
	assert_int_equal(h.full_prev.gen_low, low);
	assert_int_equal(h.full_prev.gen_high, g2 - 1);
	assert_int_equal(h.diff_prev.time, 0);
	assert_int_equal(h.copy_prev.time, 0);
	/* still opens and recovers fine after truncation */
	open_ok(dir, &oo, &in);
	expect(in, "t", "k39", 20000, 39);
	assert_int_equal(ams_close(in), 0);
}

struct loader {
	ams_instance *in;
	volatile int stop;
	int n;
};

static void *loader_main(void *arg)
{
	struct loader *l = arg;
	while (!l->stop) {
		char k[32];
		snprintf(k, sizeof(k), "L%d", l->n);
		put1(l->in, "load", k, 1000 + (size_t)(l->n % 30000), (unsigned)l->n);
		l->n++;
	}
	return NULL;
}

static void test_stream_backup(void **state)
{
	(void)state;
	char dir[512], bdir[600], ldir[700];
	mkinst("stream", 65536, 2, dir);
	ams_instance *in;
	ams_open_opts oo = {.checkpoint_depth = 128 * 1024};
	open_ok(dir, &oo, &in);
	for (int i = 0; i < 30; i++) {
		char k[16];
		snprintf(k, sizeof(k), "s%d", i);
		put1(in, "t", k, 9000, (unsigned)i);
	}
	/* stream while a writer keeps committing */
	struct loader l = {in, 0, 0};
	pthread_t th;
	pthread_create(&th, NULL, loader_main, &l);
	ams_stream *s;
	assert_int_equal(ams_stream_begin(in, AMS_BACKUP_FULL, &s), 0);
	assert_int_equal(ams_freeze(in, 1000), AMS_EBUSY);
	snprintf(bdir, sizeof(bdir), "%s/backup", tmpdir);
	mkdir(bdir, 0755);
	snprintf(ldir, sizeof(ldir), "%s/logs", bdir);
	mkdir(ldir, 0755);
	FILE *out[2];
	for (int d = 0; d < 2; d++) {
		char p[800];
		snprintf(p, sizeof(p), "%s/%s", bdir, d ? "pub1.edb" : "priv1.edb");
		out[d] = fopen(p, "wb");
	}
	unsigned char pg[8192];
	int db, rc;
	uint32_t pgno;
	int pages = 0;
	while ((rc = ams_stream_next(s, &db, &pgno, pg)) == 1) {
		assert_int_equal(amb_ck_check(pg, 8192, pgno), AMB_CK_OK);
		fseek(out[db], (long)pgno * 8192, SEEK_SET);
		fwrite(pg, 1, 8192, out[db]);
		pages++;
	}
	assert_int_equal(rc, AMS_EINVAL); /* header pages need the logs first */
	l.stop = 1;
	pthread_join(th, NULL);
	int acked = l.n;
	uint32_t lo, hi;
	assert_int_equal(ams_stream_logs(s, &lo, &hi), 0);
	while ((rc = ams_stream_next(s, &db, &pgno, pg)) == 1) {
		fseek(out[db], (long)pgno * 8192, SEEK_SET);
		fwrite(pg, 1, 8192, out[db]);
	}
	assert_int_equal(rc, 0);
	fclose(out[0]);
	fclose(out[1]);
	for (uint32_t g = lo; g <= hi; g++) {
		char a[800], b[900], cmd[2000];
		amb_log_path(a, sizeof(a), dir, "E00", g);
		amb_log_path(b, sizeof(b), ldir, "E00", g);
		snprintf(cmd, sizeof(cmd), "cp %s %s", a, b);
		assert_int_equal(system(cmd), 0);
	}
	ams_stream_end(s);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL | AMS_BACKUP_STREAMED, lo, hi, 5, 0), 0);
	assert_int_equal(ams_close(in), 0);

	/* the copy cannot be mounted as is */
	ams_instance *bin;
	assert_int_equal(ams_open(bdir, NULL, &bin), AMS_EBACKUPDB);
	/* hard recovery without roll-forward from the copied logs */
	amb_restore_env env;
	memset(&env, 0, sizeof(env));
	env.version = 1;
	snprintf(env.instance_dir, sizeof(env.instance_dir), "%s", bdir);
	snprintf(env.backup_log_dir, sizeof(env.backup_log_dir), "%s", ldir);
	snprintf(env.prefix, sizeof(env.prefix), "E00");
	env.gen_low = lo;
	env.gen_high = hi;
	env.roll_forward = 0;
	env.ndatabases = 2;
	snprintf(env.databases[0], sizeof(env.databases[0]), "priv1.edb");
	snprintf(env.databases[1], sizeof(env.databases[1]), "pub1.edb");
	char envp[800];
	snprintf(envp, sizeof(envp), "%s/restore.env", bdir);
	assert_int_equal(amb_restore_env_store(envp, &env), 0);
	rc = ams_hard_recover(envp, NULL);
	if (rc)
		fail_msg("hard recovery: %s", ams_errmsg());
	open_ok(bdir, NULL, &bin);
	for (int i = 0; i < 30; i++) {
		char k[16];
		snprintf(k, sizeof(k), "s%d", i);
		expect(bin, "t", k, 9000, (unsigned)i);
	}
	for (int i = 0; i < acked; i++) {
		char k[32];
		snprintf(k, sizeof(k), "L%d", i);
		expect(bin, "load", k, 1000 + (size_t)(i % 30000), (unsigned)i);
	}
	assert_int_equal(ams_close(bin), 0);
	assert_true(pages > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_and_crash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_freeze, setup, teardown),
		cmocka_unit_test_setup_teardown(test_freeze_during_fsync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quiesce, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thaw_quiet, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unchanged_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_freeze_waits_for_roll, setup, teardown),
		cmocka_unit_test_setup_teardown(test_freeze_skips_applying, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reserve_on_full_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roll_and_truncate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_backup, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

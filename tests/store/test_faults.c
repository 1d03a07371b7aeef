/*
 * test_faults.c - I/O errors injected at every call (SQLite ioerr.test
 * style): ENOSPC and EIO on write, sync and allocate, then on the calls
 * that create, rename and sync directories, and inside ams_create().
 *
 * For each kind K and errno E: one run without a fault counts the calls
 * of K that ams_open + a short workload + ams_close make; then for every N
 * a fresh instance runs the same workload with the Nth call of K failing
 * with E (once, and for some N persistently from N on).  Every run checks:
 *
 *  R1 clean codes: every call returns 0 or a documented AMS_* code, and
 *     none fails when no fault was injected;
 *  R2 sticky failure: once a commit returned AMS_EIO/AMS_EFAILED (or
 *     ams_info() reports failed), every later commit returns AMS_EFAILED;
 *  R3 no silent I/O error: after an injected sync failure, or a write
 *     failure with EIO, on a database or a log generation in use, the
 *     instance ends up failed and ams_close() does not return success;
 *     the faultvfs runs with FV_LOSSY_SYNC (a failed fsync loses the
 *     file's unsynced writes), so an engine that retried fsync and carried
 *     on would lose acknowledged data and trip R5;
 *  R4 ENOSPC on allocate refuses at most the commit(s) that hit it with
 *     AMS_ENOSPC, never fails the instance, and (non-persistent) every
 *     later commit succeeds; persistent ENOSPC on allocate: once the fault
 *     is removed the instance commits again without a reopen;
 *  R5 durability: the instance, abandoned or closed, opens again with the
 *     plain vfs, every acknowledged transaction is fully present, every
 *     transaction refused with AMS_ENOSPC is absent, every other one is
 *     fully present or fully absent, nothing else exists;
 *  R6 the reopened instance commits and closes normally.
 *
 * And four cases by hand: a log that cannot be deleted by the truncation
 * after a backup (test_faults_truncation_unlink), the same with the
 * truncation deferred to ams_truncate_pending()
 * (test_faults_truncation_deferred), and a backup recorded in the first
 * header copy alone, under power loss at every sync point
 * (test_faults_backup_first_copy), whose second copy then cannot be
 * written (test_faults_settle_failure).
 *
 * ams_create() has no vfs option: the test links with
 * -Wl,--wrap=amb_vfs_posix to make the fault layer the default vfs while
 * ams_create() runs.
 *
 * A run that does not finish within 30 s (a commit that never returns) is
 * reported as a hang with its case, and the program exits.
 *
 * Environment: AMBER_FAULTS_STRIDE (test every Nth call only, default 1),
 * AMBER_FAULTS_NTH (only that N),
 * AMBER_FAULTS_ONLY (cmocka test name pattern, e.g. "*sync*"),
 * AMBER_FAULTS_VERBOSE=1, AMBER_FAULTS_HANG_WAIT=1 (on a hang, wait for a
 * debugger instead of exiting), AMBER_TEST_TMPDIR.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "amber/store.h"
#include "common/vfs.h"
#include "faultvfs.h"
#include "store/dbfile.h"

amb_vfs *__real_amb_vfs_posix(void);
amb_vfs *__wrap_amb_vfs_posix(void);
static amb_vfs *_Atomic g_default_vfs;
amb_vfs *__wrap_amb_vfs_posix(void)
{
	amb_vfs *v = atomic_load(&g_default_vfs);
	return v ? v : __real_amb_vfs_posix();
}

#define LOG_SIZE (64 * 1024)
#define CKPT_DEPTH (128 * 1024)
#define NTX 16 /* transactions per run (allocate: more, see loop_kind) */
static int g_ntx = NTX;
#define MAX_REPORT 12
/* page images a put adds to a commit's log record bound (instance.c:
 * validate()), and how many fit in two 64 KiB generations */
#define IMAGES(vlen) (((vlen) + 8155) / 8156 + 2)
#define MAX_IMAGES 12

static const char *const DBS[] = {"priv1.edb", "priv2.edb"};
static const char *const TABLES[] = {"mbox0", "mbox1", "mbox2", "mbox3"};

static char *g_tmp;

/* The watchdog: a run that does not finish in WATCHDOG_S seconds is a hang
 * (a commit that never returns); say which case it was and stop. */
#define WATCHDOG_S 30
static char g_case[512];

static void on_alarm(int sig)
{
	(void)sig;
	static const char pre[] = "\nHANG: this run did not finish in 30 s: ";
	ssize_t r = write(2, pre, sizeof(pre) - 1);
	r = write(2, g_case, strlen(g_case));
	r = write(2, "\n", 1);
	(void)r;
	if (getenv("AMBER_FAULTS_HANG_WAIT")) /* leave it for a debugger */
		for (;;)
			pause();
	_exit(3);
}
static long g_stride = 1;
static int g_verbose;

static uint64_t mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *errno_name(int e)
{
	return e == ENOSPC ? "ENOSPC" : e == EIO ? "EIO" : "errno";
}

/* A fault case; kind < 0: none. */
typedef struct fcase {
	int kind;
	uint64_t nth;
	int err;
	int persist;
} fcase;

typedef struct tally {
	size_t runs, violations, fired, open_failed, commits_ok, commits_enospc, commits_eio,
	       commits_efailed, closes_failed, reopens, commits_eio_refused;
	uint64_t undone;
} tally;

static void violation(tally *t, const fcase *fc, faultvfs *fv, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void violation(tally *t, const fcase *fc, faultvfs *fv, const char *fmt, ...)
{
	t->violations++;
	if (t->violations > MAX_REPORT)
		return;
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (fc->kind >= 0)
		fprintf(stderr, "VIOLATION [%s #%" PRIu64 " %s%s; fired: %s]: %s\n",
		        faultvfs_kind_name((enum fv_kind)fc->kind), fc->nth, errno_name(fc->err),
		        fc->persist ? " persistent" : "", fv ? faultvfs_fired_desc(fv) : "", buf);
	else
		fprintf(stderr, "VIOLATION [no fault]: %s\n", buf);
}

static int is_ams(int rc, int a, int b, int c)
{
	return rc == a || rc == b || rc == c;
}

static void fresh_dir(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", g_tmp, name);
	faultvfs_rmtree(buf);
	if (mkdir(buf, 0755) != 0)
		fail_msg("mkdir %s: %s", buf, strerror(errno));
}

static void create_plain(const char *dir)
{
	ams_create_opts co = {.log_size = LOG_SIZE, .databases = DBS, .ndatabases = 2};
	int rc = ams_create(dir, &co);
	if (rc)
		fail_msg("ams_create: %s (%s)", ams_strerror(rc), ams_errmsg());
}

/* One transaction: 1-3 puts (100 B .. 40 KiB, 1 in 8 of 46000 B: the most
 * a 64 KiB log allows) and
 * deletes of acknowledged keys.  Returns the commit's code (or begin's). */
static int one_txn(ams_instance *in, fv_oracle *o, uint64_t *rng, int *keyno, int *txout,
                   int tables)
{
	static unsigned char val[46000];
	int tx = fv_oracle_begin(o);
	*txout = tx;
	ams_txn *t;
	int rc = ams_txn_begin(in, &t);
	if (rc) {
		fv_oracle_refused(o, tx);
		return rc;
	}
	if (tables) {
		for (int i = 0; i < 4; i++)
			ams_txn_create_table(t, TABLES[i], i / 2);
	}
	int nops = 1 + (int)(mix(rng) % 3);
	size_t txbytes = tables ? 9 : 1; /* creating a table: 2 images */
	for (int i = 0; i < nops; i++) {
		char table[FV_TABLE_BUF], key[1024];
		size_t klen;
		uint64_t r = mix(rng);
		if (r % 10 < 3 && fv_oracle_pick_deletable(o, mix(rng), table, key, &klen) == 0) {
			fv_oracle_del(o, tx, table, key, klen);
			txbytes += 2;
			assert_int_equal(ams_txn_del(t, table, key, klen), 0);
			continue;
		}
		snprintf(table, sizeof(table), "%s", TABLES[mix(rng) % 4]);
		klen = (size_t)snprintf(key, sizeof(key), "f%06d", (*keyno)++);
		size_t vlen = mix(rng) % 8 == 0 ? sizeof(val) : 100 + (size_t)(mix(rng) % 40860);
		/* the record's upper bound must fit in two log generations
		 * (~120 KiB with 64 KiB logs): about 14 page images */
		if (txbytes + IMAGES(vlen) > MAX_IMAGES)
			vlen = 100 + (size_t)(mix(rng) % 2000);
		if (txbytes + IMAGES(vlen) > MAX_IMAGES)
			break;
		txbytes += IMAGES(vlen);
		uint64_t s = (uint64_t)*keyno * 0x1234567ull;
		for (size_t j = 0; j < vlen; j++)
			val[j] = (unsigned char)(j % 8 == 0 ? mix(&s) : (uint64_t)val[j - 1] + 1);
		fv_oracle_put(o, tx, table, key, klen, val, vlen);
		assert_int_equal(ams_txn_put(t, table, key, klen, val, vlen), 0);
	}
	return ams_txn_commit(t);
}

static int instance_failed(ams_instance *in)
{
	ams_info info;
	if (ams_info_get(in, &info) != 0)
		return -1;
	return info.failed;
}

/* Injected failures that must fail the instance (R3): a failed sync, or a
 * write failing with EIO, of a database or of a log generation in use
 * (<prefix>.log, <prefix>XXXXXXXX.log).  Failures on files the engine can
 * throw away and make again (<prefix>tmp.log before it becomes current,
 * the checkpoint's .tmp, amber.reserve) need not: R5 still checks that
 * nothing was lost. */
static int must_fail_instance(const fcase *fc, const char *path)
{
	if (!(fc->kind == FV_SYNC || (fc->kind == FV_WRITE && fc->err == EIO)))
		return 0;
	const char *b = strrchr(path, '/');
	b = b ? b + 1 : path;
	size_t n = strlen(b);
	if (n > 4 && strcmp(b + n - 4, ".edb") == 0)
		return 1;
	return n > 4 && strcmp(b + n - 4, ".log") == 0 && strstr(b, "tmp.log") == NULL;
}

/*
 * One run: fresh instance (created with the plain vfs), ams_open through
 * the fault layer, NTX transactions, ams_close (or ams_abandon when
 * @p abandon), reopen with the plain vfs and check.  @p counts (may be NULL)
 * receives the call counts of the fault layer.
 */
static void run_case(const fcase *fc, int abandon, tally *ty, uint64_t *counts)
{
	char dir[4096];
	fresh_dir(dir, sizeof(dir), "run");
	create_plain(dir);
	ty->runs++;
	if (fc->kind >= 0)
		snprintf(g_case, sizeof(g_case), "fault %s #%" PRIu64 " %s%s (%s)",
		         faultvfs_kind_name((enum fv_kind)fc->kind), fc->nth, errno_name(fc->err),
		         fc->persist ? " persistent" : "", abandon ? "abandon" : "close");
	else
		snprintf(g_case, sizeof(g_case), "no fault");
	alarm(WATCHDOG_S);

	faultvfs *fv = faultvfs_new(NULL, __real_amb_vfs_posix(), FV_LOSSY_SYNC);
	assert_non_null(fv);
	if (fc->kind >= 0)
		faultvfs_fail(fv, (enum fv_kind)fc->kind, fc->nth, fc->err, fc->persist);
	fv_oracle *o = fv_oracle_new();
	uint64_t rng = 42;
	int keyno = 0;
	int alloc_enospc = fc->kind == FV_ALLOCATE && fc->err == ENOSPC;

	ams_open_opts oo = {.checkpoint_depth = CKPT_DEPTH, .vfs = faultvfs_vfs(fv)};
	ams_instance *in = NULL;
	int rc = ams_open(dir, &oo, &in);
	if (rc) {
		ty->open_failed++;
		if (!faultvfs_fired(fv))
			violation(ty, fc, fv, "ams_open failed without a fault: %s (%s)",
			          ams_strerror(rc), ams_errmsg());
		else if (!is_ams(rc, AMS_EIO, AMS_ENOSPC, AMS_EFAILED))
			violation(ty, fc, fv, "ams_open returned %s (%s)", ams_strerror(rc),
			          ams_errmsg());
		else if (alloc_enospc && rc != AMS_ENOSPC)
			violation(ty, fc, fv, "ENOSPC on allocate: ams_open returned %s (%s)",
			          ams_strerror(rc), ams_errmsg());
		goto reopen;
	}

	int failed_seen = 0;     /* a commit returned EIO/EFAILED or info says failed */
	int enospc_seen = 0;     /* commits refused with ENOSPC */
	int tables_acked = 0;    /* the tables exist: later commits need not create them */
	for (int i = 0; i < g_ntx; i++) {
		uint64_t fired_before = faultvfs_fired(fv);
		if (!failed_seen && instance_failed(in) == 1)
			failed_seen = 1;
		int tx;
		rc = one_txn(in, o, &rng, &keyno, &tx, !tables_acked);
		char what[64];
		snprintf(what, sizeof(what), "commit %d", i);
		if (rc == 0) {
			ty->commits_ok++;
			tables_acked = 1;
			fv_oracle_ack(o, tx, 0);
			if (failed_seen)
				violation(ty, fc, fv, "%s succeeded after the instance failed", what);
			continue;
		}
		if (!is_ams(rc, AMS_ENOSPC, AMS_EIO, AMS_EFAILED)) {
			violation(ty, fc, fv, "%s returned %s (%s)", what, ams_strerror(rc),
			          ams_errmsg());
			failed_seen = 1;
			continue;
		}
		if (!faultvfs_fired(fv)) {
			violation(ty, fc, fv, "%s failed without a fault: %s (%s)", what,
			          ams_strerror(rc), ams_errmsg());
		}
		if (rc == AMS_ENOSPC) {
			ty->commits_enospc++;
			enospc_seen++;
			/* "nothing applied, the instance goes on" */
			fv_oracle_refused(o, tx);
			if (failed_seen)
				violation(ty, fc, fv, "%s returned AMS_ENOSPC after the instance failed",
				          what);
			if (alloc_enospc && !fc->persist && enospc_seen > 1)
				violation(ty, fc, fv, "more than one commit refused by one ENOSPC");
			continue;
		}
		if (rc == AMS_EIO && !failed_seen && instance_failed(in) == 0) {
			/* The engine refused the commit before anything was applied
			 * (e.g. the space reservation failed with EIO) and goes on.
			 * store.h documents AMS_EIO from a commit as "outcome unknown,
			 * the instance refuses further writes"; accept the gentler
			 * behaviour, but then the transaction must be absent. */
			ty->commits_eio_refused++;
			fv_oracle_refused(o, tx);
			continue;
		}
		if (rc == AMS_EIO)
			ty->commits_eio++;
		else
			ty->commits_efailed++;
		if (alloc_enospc)
			violation(ty, fc, fv, "ENOSPC on allocate: %s returned %s (%s)", what,
			          ams_strerror(rc), ams_errmsg());
		if (failed_seen && rc != AMS_EFAILED)
			violation(ty, fc, fv, "%s after the failure returned %s, not AMS_EFAILED", what,
			          ams_strerror(rc));
		if (rc == AMS_EFAILED && !failed_seen && !fired_before && !faultvfs_fired(fv))
			violation(ty, fc, fv, "%s returned AMS_EFAILED without any failure", what);
		failed_seen = 1;
	}
	/* non-persistent ENOSPC on allocate: the instance keeps working */
	if (alloc_enospc && !fc->persist && !failed_seen) {
		int tx;
		rc = one_txn(in, o, &rng, &keyno, &tx, !tables_acked);
		if (rc == 0)
			fv_oracle_ack(o, tx, 0);
		else {
			fv_oracle_refused(o, tx);
			violation(ty, fc, fv, "commit after an ENOSPC on allocate failed: %s (%s)",
			          ams_strerror(rc), ams_errmsg());
		}
	}
	if (alloc_enospc && fc->persist && !failed_seen) {
		/* space comes back: no reopen needed */
		faultvfs_clear(fv);
		int tx;
		rc = one_txn(in, o, &rng, &keyno, &tx, !tables_acked);
		if (rc == 0)
			fv_oracle_ack(o, tx, 0);
		else {
			fv_oracle_refused(o, tx);
			violation(ty, fc, fv,
			          "commit after a persistent ENOSPC on allocate was lifted failed: "
			          "%s (%s)",
			          ams_strerror(rc), ams_errmsg());
		}
	}
	if (faultvfs_fired(fv))
		ty->fired++;
	/* R3: an injected sync failure (or EIO on write) must fail the instance;
	 * a background thread may take a moment to notice (up to 5 s: a loaded
	 * machine, ASan) */
	int fl = instance_failed(in);
	if (faultvfs_fired(fv) && must_fail_instance(fc, faultvfs_fired_path(fv))) {
		for (int i = 0; i < 500 && fl == 0; i++) {
			usleep(10000);
			fl = instance_failed(in);
		}
		if (fl == 0)
			violation(ty, fc, fv,
			          "an injected %s failure (%s) did not fail the instance "
			          "(%zu later syncs succeeded)",
			          faultvfs_kind_name((enum fv_kind)fc->kind), errno_name(fc->err),
			          (size_t)faultvfs_count_after_fault(fv, FV_SYNC));
	}
	if (alloc_enospc && fl == 1)
		violation(ty, fc, fv, "ENOSPC on allocate failed the instance");
	if (abandon) {
		ams_abandon(in);
	} else {
		uint64_t fired0 = faultvfs_fired(fv);
		rc = ams_close(in);
		if (rc) {
			ty->closes_failed++;
			if (!is_ams(rc, AMS_EIO, AMS_EFAILED, AMS_ENOSPC))
				violation(ty, fc, fv, "ams_close returned %s (%s)", ams_strerror(rc),
				          ams_errmsg());
			if (!faultvfs_fired(fv))
				violation(ty, fc, fv, "ams_close failed without a fault: %s (%s)",
				          ams_strerror(rc), ams_errmsg());
		} else {
			if (fl == 1 || failed_seen)
				violation(ty, fc, fv, "ams_close succeeded on a failed instance");
			/* (a failure on a file the engine rewrites whole, like the
			 * checkpoint's .tmp, may be retried: only databases and logs) */
			if (faultvfs_fired(fv) > fired0 &&
			    must_fail_instance(fc, faultvfs_fired_path(fv)))
				violation(ty, fc, fv, "ams_close succeeded though an injected %s failed in it",
				          faultvfs_kind_name((enum fv_kind)fc->kind));
		}
	}

reopen:
	ty->undone += faultvfs_undone_writes(fv);
	if (counts)
		for (int k = 0; k < FV_NKINDS; k++)
			counts[k] = faultvfs_count(fv, (enum fv_kind)k);
	faultvfs_free(fv);

	/* R5: reopen with the plain vfs and check against the oracle */
	ty->reopens++;
	ams_open_opts po = {.checkpoint_depth = CKPT_DEPTH};
	rc = ams_open(dir, &po, &in);
	if (rc) {
		violation(ty, fc, NULL, "reopen with the plain vfs failed: %s (%s)", ams_strerror(rc),
		          ams_errmsg());
		fv_oracle_free(o);
		alarm(0);
		return;
	}
	char msg[1024];
	fv_check r;
	rc = fv_oracle_check(o, in, 0, &r, msg, sizeof(msg));
	if (rc)
		violation(ty, fc, NULL, "after reopen: %s", msg);
	/* R6: usable */
	int tx;
	rc = one_txn(in, o, &rng, &keyno, &tx, 1);
	if (rc)
		violation(ty, fc, NULL, "commit after reopen failed: %s (%s)", ams_strerror(rc),
		          ams_errmsg());
	rc = ams_close(in);
	if (rc)
		violation(ty, fc, NULL, "close after reopen failed: %s (%s)", ams_strerror(rc),
		          ams_errmsg());
	alarm(0);
	if (g_verbose && fc->kind >= 0)
		printf("  %s #%" PRIu64 " %s%s: %s; %zu records after reopen\n",
		       faultvfs_kind_name((enum fv_kind)fc->kind), fc->nth, errno_name(fc->err),
		       fc->persist ? " persistent" : "", "done", r.records);
	fv_oracle_free(o);
}

static void report(const char *name, const tally *t, double secs)
{
	printf("%s: %zu runs, %zu with the fault fired, %zu opens failed, commits: %zu ok "
	       "%zu ENOSPC %zu EIO (+%zu EIO refusing only that commit) %zu EFAILED, %zu closes "
	       "failed, %" PRIu64 " writes lost to failed syncs, %zu violations; %.2f s\n",
	       name, t->runs, t->fired, t->open_failed, t->commits_ok, t->commits_enospc,
	       t->commits_eio, t->commits_eio_refused, t->commits_efailed, t->closes_failed,
	       t->undone, t->violations, secs);
	fflush(stdout);
}

/* Count the calls of every kind in a run without a fault. */
static void baseline(uint64_t *counts)
{
	fcase none = {.kind = -1};
	tally t = {0};
	run_case(&none, 0, &t, counts);
	if (t.violations)
		fail_msg("the workload fails without any fault");
}

static void loop_kind(enum fv_kind kind, const int *errs, int nerr, int persist_every,
                      const char *name)
{
	double t0 = now_s();
	uint64_t counts[FV_NKINDS];
	baseline(counts);
	uint64_t n = counts[kind];
	printf("%s: %" PRIu64 " %s calls in the workload\n", name, n, faultvfs_kind_name(kind));
	tally t = {0};
	const char *only = getenv("AMBER_FAULTS_NTH");
	uint64_t only_nth = only ? strtoull(only, NULL, 0) : 0;
	for (int e = 0; e < nerr; e++) {
		for (uint64_t i = 1; i <= n + 1; i += (uint64_t)g_stride) {
			if (only_nth && i != only_nth)
				continue;
			fcase fc = {.kind = kind, .nth = i, .err = errs[e]};
			run_case(&fc, (int)(i % 3 == 0), &t, NULL);
			if (persist_every && i % (uint64_t)persist_every == 1) {
				fc.persist = 1;
				run_case(&fc, 0, &t, NULL);
			}
		}
	}
	report(name, &t, now_s() - t0);
	if (t.violations)
		fail_msg("%s: %zu violations (see above)", name, t.violations);
}

static const int BOTH[] = {ENOSPC, EIO};

static void test_faults_write(void **state)
{
	(void)state;
	loop_kind(FV_WRITE, BOTH, 2, 4, "faults/write");
}

static void test_faults_sync(void **state)
{
	(void)state;
	loop_kind(FV_SYNC, BOTH, 2, 3, "faults/sync");
}

static void test_faults_allocate(void **state)
{
	(void)state;
	/* databases grow by reservations of 64+ pages: a longer workload */
	g_ntx = 64;
	loop_kind(FV_ALLOCATE, BOTH, 2, 2, "faults/allocate");
	g_ntx = NTX;
}

static void test_faults_dirops(void **state)
{
	(void)state;
	static const int eio[] = {EIO};
	loop_kind(FV_OPEN_CREATE, BOTH, 2, 0, "faults/open-create");
	loop_kind(FV_RENAME, eio, 1, 0, "faults/rename");
	loop_kind(FV_SYNC_DIR, eio, 1, 2, "faults/sync_dir");
	loop_kind(FV_TRUNCATE, eio, 1, 0, "faults/truncate");
}

/* Persistent ENOSPC on allocate from the first commit on: every commit
 * that needs space is refused with AMS_ENOSPC, the instance never fails,
 * and once space is back it commits again without a reopen. */
static void test_faults_allocate_enospc_persistent(void **state)
{
	(void)state;
	char dir[4096];
	fresh_dir(dir, sizeof(dir), "full");
	create_plain(dir);
	faultvfs *fv = faultvfs_new(NULL, __real_amb_vfs_posix(), 0);
	ams_open_opts oo = {.checkpoint_depth = CKPT_DEPTH, .vfs = faultvfs_vfs(fv)};
	ams_instance *in;
	int rc = ams_open(dir, &oo, &in);
	if (rc)
		fail_msg("ams_open: %s (%s)", ams_strerror(rc), ams_errmsg());
	fv_oracle *o = fv_oracle_new();
	uint64_t rng = 7;
	int keyno = 0, tx;
	assert_int_equal(one_txn(in, o, &rng, &keyno, &tx, 1), 0);
	fv_oracle_ack(o, tx, 0);
	faultvfs_reset_counts(fv);
	faultvfs_fail(fv, FV_ALLOCATE, 1, ENOSPC, 1);
	int ok = 0, refused = 0;
	for (int i = 0; i < 400 && refused < 5; i++) {
		rc = one_txn(in, o, &rng, &keyno, &tx, 0);
		if (rc == 0) {
			ok++;
			fv_oracle_ack(o, tx, 0);
		} else if (rc == AMS_ENOSPC) {
			refused++;
			fv_oracle_refused(o, tx);
		} else {
			fail_msg("commit %d under persistent ENOSPC on allocate: %s (%s)", i,
			         ams_strerror(rc), ams_errmsg());
		}
	}
	printf("faults/allocate-full: %d commits ok, %d refused with AMS_ENOSPC, %" PRIu64
	       " allocate calls failed\n",
	       ok, refused, faultvfs_fired(fv));
	assert_int_equal(instance_failed(in), 0);
	if (refused == 0)
		fail_msg("no commit needed to reserve space: the test does not test anything");
	faultvfs_clear(fv);
	for (int i = 0; i < 8; i++) {
		rc = one_txn(in, o, &rng, &keyno, &tx, 0);
		if (rc)
			fail_msg("commit %d after the space came back: %s (%s)", i, ams_strerror(rc),
			         ams_errmsg());
		fv_oracle_ack(o, tx, 0);
	}
	rc = ams_close(in);
	if (rc)
		fail_msg("ams_close: %s (%s)", ams_strerror(rc), ams_errmsg());
	faultvfs_free(fv);
	ams_open_opts po = {0};
	rc = ams_open(dir, &po, &in);
	if (rc)
		fail_msg("reopen: %s (%s)", ams_strerror(rc), ams_errmsg());
	char msg[1024];
	fv_check r;
	rc = fv_oracle_check(o, in, 0, &r, msg, sizeof(msg));
	if (rc)
		fail_msg("after reopen: %s", msg);
	assert_int_equal(ams_close(in), 0);
	fv_oracle_free(o);
}

/* A full disk (every write fails with ENOSPC from now on) when a commit
 * needs more log than is left: the commit must return (AMS_ENOSPC, or
 * AMS_EIO / AMS_EFAILED), not wait forever.  The log position at which the
 * disk fills is varied with 0..24 small commits first; the big commit's
 * record needs more than one generation.  Then space comes back. */
static void test_faults_full_disk_big_commit(void **state)
{
	(void)state;
	tally t = {0};
	for (int pre = 0; pre < 25; pre++) {
		char dir[4096];
		fresh_dir(dir, sizeof(dir), "fulldisk");
		create_plain(dir);
		faultvfs *fv = faultvfs_new(NULL, __real_amb_vfs_posix(), 0);
		ams_open_opts oo = {.checkpoint_depth = CKPT_DEPTH, .vfs = faultvfs_vfs(fv)};
		ams_instance *in;
		int rc = ams_open(dir, &oo, &in);
		if (rc)
			fail_msg("ams_open: %s (%s)", ams_strerror(rc), ams_errmsg());
		fv_oracle *o = fv_oracle_new();
		int keyno = 0, tx;
		fcase fc = {.kind = FV_WRITE, .nth = 1, .err = ENOSPC, .persist = 1};
		snprintf(g_case, sizeof(g_case),
		         "full disk (persistent ENOSPC on every write) before a commit needing two "
		         "log generations, after %d small commits",
		         pre);
		alarm(WATCHDOG_S);
		static unsigned char val[46000];
		for (int i = 0; i <= pre; i++) {
			ams_txn *x;
			assert_int_equal(ams_txn_begin(in, &x), 0);
			if (i == 0)
				for (int j = 0; j < 4; j++)
					ams_txn_create_table(x, TABLES[j], j / 2);
			char key[32];
			int kl = snprintf(key, sizeof(key), "s%04d", keyno++);
			tx = fv_oracle_begin(o);
			memset(val, 'a' + i % 26, 3000);
			fv_oracle_put(o, tx, TABLES[0], key, (size_t)kl, val, 3000);
			assert_int_equal(ams_txn_put(x, TABLES[0], key, (size_t)kl, val, 3000), 0);
			rc = ams_txn_commit(x);
			if (rc)
				fail_msg("small commit %d: %s (%s)", i, ams_strerror(rc), ams_errmsg());
			fv_oracle_ack(o, tx, 0);
		}
		faultvfs_reset_counts(fv);
		faultvfs_fail(fv, FV_WRITE, 1, ENOSPC, 1);
		ams_txn *x;
		tx = fv_oracle_begin(o);
		rc = ams_txn_begin(in, &x);
		if (rc == 0) {
			memset(val, 'B', sizeof(val));
			fv_oracle_put(o, tx, TABLES[1], "big", 3, val, sizeof(val));
			assert_int_equal(ams_txn_put(x, TABLES[1], "big", 3, val, sizeof(val)), 0);
			rc = ams_txn_commit(x); /* the watchdog catches a hang here */
		}
		if (rc == 0) {
			fv_oracle_ack(o, tx, 0);
		} else if (rc == AMS_ENOSPC) {
			fv_oracle_refused(o, tx);
		} else if (rc != AMS_EIO && rc != AMS_EFAILED) {
			violation(&t, &fc, fv, "big commit on a full disk returned %s (%s)",
			          ams_strerror(rc), ams_errmsg());
		}
		faultvfs_clear(fv);
		if (instance_failed(in) == 0) {
			/* space is back: commits work again */
			ams_txn *y;
			int ty2 = fv_oracle_begin(o);
			rc = ams_txn_begin(in, &y);
			if (rc == 0) {
				fv_oracle_put(o, ty2, TABLES[2], "after", 5, "x", 1);
				ams_txn_put(y, TABLES[2], "after", 5, "x", 1);
				rc = ams_txn_commit(y);
			}
			if (rc == 0)
				fv_oracle_ack(o, ty2, 0);
			else if (!(rc == AMS_EFAILED && strstr(ams_errmsg(), strerror(ENOSPC))))
				/* (a background write that met the full disk, a database
				 * header refresh, may fail the instance after the check
				 * above: a failure from the full disk is allowed) */
				violation(&t, &fc, fv, "commit after the space came back: %s (%s)",
				          ams_strerror(rc), ams_errmsg());
		}
		ams_abandon(in);
		alarm(0);
		faultvfs_free(fv);
		ams_open_opts po = {0};
		rc = ams_open(dir, &po, &in);
		if (rc) {
			violation(&t, &fc, NULL, "reopen: %s (%s)", ams_strerror(rc), ams_errmsg());
		} else {
			char msg[1024];
			fv_check r;
			if (fv_oracle_check(o, in, 0, &r, msg, sizeof(msg)) != 0)
				violation(&t, &fc, NULL, "after reopen: %s", msg);
			ams_close(in);
		}
		fv_oracle_free(o);
		t.runs++;
	}
	printf("faults/full-disk: %zu runs, %zu violations\n", t.runs, t.violations);
	if (t.violations)
		fail_msg("faults/full-disk: %zu violations (see above)", t.violations);
}

/* A log that cannot be deleted during the truncation after a backup: the
 * error is reported, the generations before it are gone, the instance's
 * oldest generation is that log (it is still on disk), and the next
 * backup's truncation deletes it. */
/* A fresh instance NAME (its directory into dir) opened through a fault
 * layer (*fv), committed to until its checkpoint is at least four
 * generations past the oldest log, so that a truncation has several to
 * delete; *info is the instance's state then. */
static ams_instance *open_past_oldest(const char *name, char *dir, size_t dirlen, faultvfs **fv,
                                      ams_info *info, int traced)
{
	fresh_dir(dir, dirlen, name);
	create_plain(dir);
	*fv = faultvfs_new(traced ? dir : NULL, __real_amb_vfs_posix(), 0);
	assert_non_null(*fv);
	if (traced) /* before the files are opened: every write of theirs is traced */
		assert_int_equal(faultvfs_trace_start(*fv), 0);
	ams_open_opts oo = {.checkpoint_depth = CKPT_DEPTH, .vfs = faultvfs_vfs(*fv)};
	ams_instance *in;
	int rc = ams_open(dir, &oo, &in);
	if (rc)
		fail_msg("ams_open: %s (%s)", ams_strerror(rc), ams_errmsg());
	static unsigned char val[20000];
	memset(val, 'v', sizeof(val));
	for (int i = 0; i < 400; i++) {
		ams_txn *x;
		assert_int_equal(ams_txn_begin(in, &x), 0);
		if (i == 0)
			for (int j = 0; j < 4; j++)
				assert_int_equal(ams_txn_create_table(x, TABLES[j], j / 2), 0);
		char key[32];
		int kl = snprintf(key, sizeof(key), "k%04d", i);
		assert_int_equal(ams_txn_put(x, TABLES[i % 4], key, (size_t)kl, val, sizeof(val)), 0);
		rc = ams_txn_commit(x);
		if (rc)
			fail_msg("commit %d: %s (%s)", i, ams_strerror(rc), ams_errmsg());
		assert_int_equal(ams_info_get(in, info), 0);
		if (info->gen_checkpoint >= info->gen_oldest + 4)
			break;
	}
	assert_true(info->gen_checkpoint >= info->gen_oldest + 4);
	return in;
}

static void test_faults_truncation_unlink(void **state)
{
	(void)state;
	char dir[4096];
	faultvfs *fv;
	ams_info info;
	ams_instance *in = open_past_oldest("truncate-unlink", dir, sizeof(dir), &fv, &info, 0);
	int rc;
	uint32_t oldest = info.gen_oldest, ckpt = info.gen_checkpoint;
	char second[4200];
	snprintf(second, sizeof(second), "%s/E00%08X.log", dir, oldest + 1);
	assert_int_equal(access(second, F_OK), 0);

	faultvfs_reset_counts(fv);
	faultvfs_fail(fv, FV_UNLINK, 2, EIO, 0);
	rc = ams_backup_complete(in, AMS_BACKUP_FULL, ckpt, info.gen_current, 1, 0);
	assert_int_equal(rc, AMS_EIO);
	assert_non_null(strstr(ams_errmsg(), "cannot delete"));
	assert_int_equal(faultvfs_fired(fv), 1);
	faultvfs_clear(fv);
	assert_int_equal(ams_info_get(in, &info), 0);
	assert_false(info.failed);
	assert_int_equal(info.gen_oldest, oldest + 1); /* the log that stayed */
	assert_int_equal(access(second, F_OK), 0);
	/* the next backup deletes it */
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL, ckpt, info.gen_current, 2, 0), 0);
	assert_int_equal(ams_info_get(in, &info), 0);
	assert_int_equal(info.gen_oldest, ckpt);
	assert_int_equal(access(second, F_OK), -1);
	assert_int_equal(ams_close(in), 0);
	faultvfs_free(fv);
}

/* A backup recorded with AMS_BACKUP_DEFER_TRUNCATE (a writer answers
 * BackupComplete before deleting): the headers are recorded, no log is
 * deleted until ams_truncate_pending(); that call keeps every log while a
 * streaming backup runs, stops at a log it cannot delete (the truncation
 * stays pending) and finishes on the next call. */
static void test_faults_truncation_deferred(void **state)
{
	(void)state;
	char dir[4096];
	faultvfs *fv;
	ams_info info;
	ams_instance *in = open_past_oldest("truncate-deferred", dir, sizeof(dir), &fv, &info, 0);
	int rc;
	uint32_t oldest = info.gen_oldest, ckpt = info.gen_checkpoint, first, end;
	char path0[4200], path1[4200];
	snprintf(path0, sizeof(path0), "%s/E00%08X.log", dir, oldest);
	snprintf(path1, sizeof(path1), "%s/E00%08X.log", dir, oldest + 1);

	/* nothing pending yet: nothing to do */
	assert_int_equal(ams_truncate_pending(in, &first, &end), 0);
	assert_int_equal(first, end);

	/* recorded, nothing deleted */
	rc = ams_backup_complete(in, AMS_BACKUP_FULL | AMS_BACKUP_DEFER_TRUNCATE, ckpt,
	                         info.gen_current, 1, 0);
	assert_int_equal(rc, 0);
	assert_int_equal(ams_info_get(in, &info), 0);
	assert_int_equal(info.gen_oldest, oldest);
	assert_int_equal(access(path0, F_OK), 0);
	/* the full is in the headers: a differential finds its start there */
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_DIFFERENTIAL, 0, info.gen_current, 2, 0),
	                 0);

	/* a streaming backup keeps every log: the truncation waits */
	ams_stream *st;
	assert_int_equal(ams_stream_begin(in, AMS_BACKUP_COPY, &st), 0);
	assert_int_equal(ams_truncate_pending(in, &first, &end), 0);
	assert_int_equal(first, end);
	assert_int_equal(access(path0, F_OK), 0);
	ams_stream_end(st);

	/* the second unlink fails: the first log is gone, the rest stay */
	faultvfs_reset_counts(fv);
	faultvfs_fail(fv, FV_UNLINK, 2, EIO, 0);
	rc = ams_truncate_pending(in, &first, &end);
	assert_int_equal(rc, AMS_EIO);
	assert_non_null(strstr(ams_errmsg(), "cannot delete"));
	assert_int_equal(faultvfs_fired(fv), 1);
	faultvfs_clear(fv);
	assert_int_equal(first, oldest);
	assert_int_equal(end, oldest + 1);
	assert_int_equal(access(path0, F_OK), -1);
	assert_int_equal(access(path1, F_OK), 0);
	assert_int_equal(ams_info_get(in, &info), 0);
	assert_false(info.failed);
	assert_int_equal(info.gen_oldest, oldest + 1);

	/* still pending: the next call finishes it, the one after has nothing */
	assert_int_equal(ams_truncate_pending(in, &first, &end), 0);
	assert_int_equal(first, oldest + 1);
	assert_int_equal(end, ckpt);
	assert_int_equal(access(path1, F_OK), -1);
	assert_int_equal(ams_truncate_pending(in, &first, &end), 0);
	assert_int_equal(first, end);
	assert_int_equal(ams_info_get(in, &info), 0);
	assert_int_equal(info.gen_oldest, ckpt);
	assert_int_equal(ams_close(in), 0);
	faultvfs_free(fv);
}

/* The header in force in database file PATH of an image (amb_dbhdr_load:
 * the valid copy with the higher seq); fails the test if there is none. */
static amb_dbhdr image_header(const char *path)
{
	amb_vfs *v = __real_amb_vfs_posix();
	int fd = v->open(v, path, O_RDONLY, 0);
	if (fd < 0)
		fail_msg("%s: cannot open: %s", path, strerror(-fd));
	amb_dbhdr h;
	int st, rc = amb_dbhdr_load(v, fd, path, &h, &st);
	v->close(v, fd);
	if (rc)
		fail_msg("%s: no header in force: %s (%s)", path, ams_strerror(rc), ams_errmsg());
	return h;
}

/* A backup recorded with AMS_BACKUP_DEFER_TRUNCATE writes copy 0 of each
 * database header and leaves copy 1 to ams_backup_settle() (or
 * ams_truncate_pending(), or the next header write): a power loss at every
 * sync point from the call on, under every crash variant (torn and
 * half-garbage sectors too), leaves headers that hold every backup whose
 * ams_backup_complete() had returned.  The second backup's header write
 * comes while copy 1 of the first is still pending: it must write that
 * copy 1 before its own copy 0, or a torn copy 0 would leave only a copy 1
 * from before the first backup (the mutation of headers_store_via that
 * skips the pending copy fails here, as does one that returns before copy
 * 0's fdatasync). */
static void test_faults_backup_first_copy(void **state)
{
	(void)state;
	char dir[4096];
	faultvfs *fv;
	ams_info info;
	ams_instance *in = open_past_oldest("backup-first-copy", dir, sizeof(dir), &fv, &info, 1);
	uint32_t ckpt = info.gen_checkpoint, cur = info.gen_current;
	size_t before = faultvfs_mark(fv, "full backup to record");
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL | AMS_BACKUP_DEFER_TRUNCATE, ckpt,
	                                     cur, 7, 0),
	                 0);
	size_t full = faultvfs_mark(fv, "full backup recorded");
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_DIFFERENTIAL | AMS_BACKUP_DEFER_TRUNCATE,
	                                     0, cur, 8, 0),
	                 0);
	size_t diff = faultvfs_mark(fv, "differential recorded");
	assert_int_equal(ams_backup_settle(in), 0);
	assert_int_equal(ams_backup_settle(in), 0); /* nothing left: nothing to do */
	faultvfs_mark(fv, "settled");
	faultvfs_trace_stop(fv);
	if (!(diff > full && full > before))
		fail_msg("sync points: before %zu, full %zu, diff %zu", before, full, diff);

	static const enum fv_crash variants[] = {FV_CRASH_NONE, FV_CRASH_ALL, FV_CRASH_RANDOM,
	                                         FV_CRASH_RANDOM, FV_CRASH_GARBAGE,
	                                         FV_CRASH_GARBAGE};
	size_t n = faultvfs_nsyncs(fv), images = 0;
	char img[4200], path[4300];
	for (size_t k = before; k <= n; k++) {
		for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
			snprintf(img, sizeof(img), "%s-image", dir);
			faultvfs_rmtree(img);
			assert_int_equal(faultvfs_materialise(fv, k, variants[i], 1000 * k + i, img), 0);
			for (int d = 0; d < 2; d++) {
				snprintf(path, sizeof(path), "%s/%s", img, DBS[d]);
				amb_dbhdr h = image_header(path);
				int has_full = h.full_prev.time == 7000000u && h.full_prev.gen_low == ckpt &&
				               h.full_prev.gen_high == cur;
				int has_diff = h.diff_prev.time == 8000000u;
				char desc[128];
				faultvfs_sync_desc(fv, k, desc, sizeof(desc));
				if (k >= full && !has_full)
					fail_msg("power loss before sync point %zu (%s), variant %zu: %s has "
					         "lost the full backup recorded before it (seq %" PRIu64 ")",
					         k, desc, i, DBS[d], (uint64_t)h.seq);
				if (k >= diff && !has_diff)
					fail_msg("power loss before sync point %zu (%s), variant %zu: %s has "
					         "lost the differential recorded before it", k, desc, i, DBS[d]);
				if (k < full && has_diff)
					fail_msg("sync point %zu: a differential recorded before its call", k);
			}
			images++;
		}
	}
	faultvfs_rmtree(img);
	printf("backup-first-copy: %zu sync points, %zu images checked\n", n - before + 1, images);

	/* and the instance's own files hold it in force */
	for (int d = 0; d < 2; d++) {
		snprintf(path, sizeof(path), "%s/%s", dir, DBS[d]);
		assert_true(image_header(path).diff_prev.time == 8000000u);
	}
	assert_int_equal(ams_close(in), 0);
	faultvfs_free(fv);
}

/* The second header copies cannot be written after a backup recorded with
 * AMS_BACKUP_DEFER_TRUNCATE (an fdatasync fails): ams_truncate_pending()
 * returns AMS_EIO, fails the instance and deletes no log; the header in
 * force on disk (copy 0) still holds the backup. */
static void test_faults_settle_failure(void **state)
{
	(void)state;
	char dir[4096], path[4200];
	faultvfs *fv;
	ams_info info;
	ams_instance *in = open_past_oldest("settle-failure", dir, sizeof(dir), &fv, &info, 0);
	uint32_t oldest = info.gen_oldest, ckpt = info.gen_checkpoint, first, end;
	/* no checkpoint or header refresh of its own meanwhile: only the
	 * settle syncs the database files */
	assert_int_equal(ams_quiesce(in, 60000), 0);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL | AMS_BACKUP_DEFER_TRUNCATE, ckpt,
	                                     info.gen_current, 9, 0),
	                 0);
	faultvfs_fail_filter(fv, DBS[1]);
	faultvfs_reset_counts(fv);
	faultvfs_fail(fv, FV_SYNC, 1, EIO, 0);
	int rc = ams_truncate_pending(in, &first, &end);
	assert_int_equal(rc, AMS_EIO);
	assert_non_null(strstr(ams_errmsg(), "header copy 1"));
	assert_int_equal(faultvfs_fired(fv), 1);
	faultvfs_clear(fv);
	faultvfs_fail_filter(fv, NULL);
	assert_int_equal(first, end);
	assert_int_equal(ams_info_get(in, &info), 0);
	assert_true(info.failed);
	snprintf(path, sizeof(path), "%s/E00%08X.log", dir, oldest);
	assert_int_equal(access(path, F_OK), 0);
	for (int d = 0; d < 2; d++) {
		snprintf(path, sizeof(path), "%s/%s", dir, DBS[d]);
		assert_true(image_header(path).full_prev.time == 9000000u);
	}
	assert_int_not_equal(ams_close(in), 0);
	faultvfs_free(fv);
}

/* ams_create() under every fault: fails cleanly, and what it leaves can be
 * either opened (an empty instance) or created again. */
static void test_faults_create(void **state)
{
	(void)state;
	double t0 = now_s();
	static const enum fv_kind kinds[] = {FV_WRITE, FV_SYNC, FV_ALLOCATE, FV_OPEN_CREATE,
	                                     FV_RENAME, FV_SYNC_DIR, FV_TRUNCATE};
	ams_create_opts co = {.log_size = LOG_SIZE, .databases = DBS, .ndatabases = 2};
	char dir[4096];
	uint64_t counts[FV_NKINDS];
	{
		fresh_dir(dir, sizeof(dir), "create");
		faultvfs *fv = faultvfs_new(NULL, __real_amb_vfs_posix(), 0);
		atomic_store(&g_default_vfs, faultvfs_vfs(fv));
		int rc = ams_create(dir, &co);
		atomic_store(&g_default_vfs, NULL);
		if (rc)
			fail_msg("ams_create: %s (%s)", ams_strerror(rc), ams_errmsg());
		for (int k = 0; k < FV_NKINDS; k++)
			counts[k] = faultvfs_count(fv, (enum fv_kind)k);
		faultvfs_free(fv);
	}
	uint64_t total = 0;
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++)
		total += counts[kinds[ki]];
	if (total == 0) {
		printf("faults/create: ams_create makes no call through amb_vfs_posix(); skipped\n");
		skip();
	}
	tally t = {0};
	for (size_t ki = 0; ki < sizeof(kinds) / sizeof(kinds[0]); ki++) {
		enum fv_kind kind = kinds[ki];
		for (int e = 0; e < 2; e++) {
			for (uint64_t i = 1; i <= counts[kind]; i++) {
				fcase fc = {.kind = (int)kind, .nth = i, .err = BOTH[e]};
				fresh_dir(dir, sizeof(dir), "create");
				faultvfs *fv = faultvfs_new(NULL, __real_amb_vfs_posix(), 0);
				faultvfs_fail(fv, kind, i, BOTH[e], 0);
				atomic_store(&g_default_vfs, faultvfs_vfs(fv));
				int rc = ams_create(dir, &co);
				atomic_store(&g_default_vfs, NULL);
				t.runs++;
				int fired = faultvfs_fired(fv) > 0;
				t.fired += (size_t)fired;
				if (rc == 0 && fired && kind != FV_ALLOCATE)
					violation(&t, &fc, fv, "ams_create succeeded though a %s failed",
					          faultvfs_kind_name(kind));
				if (rc != 0 && !is_ams(rc, AMS_EIO, AMS_ENOSPC, AMS_EIO))
					violation(&t, &fc, fv, "ams_create returned %s (%s)",
					          ams_strerror(rc), ams_errmsg());
				if (rc != 0 && !fired)
					violation(&t, &fc, fv, "ams_create failed without a fault: %s",
					          ams_strerror(rc));
				/* an fsync that fails is an I/O error whatever its errno */
				if (rc != 0 && BOTH[e] == ENOSPC && rc != AMS_ENOSPC && kind != FV_SYNC &&
				    kind != FV_SYNC_DIR)
					violation(&t, &fc, fv, "ENOSPC reported as %s", ams_strerror(rc));
				/* what is left: an instance that opens, or nothing that
				 * stops a new ams_create */
				ams_instance *in;
				ams_open_opts po = {0};
				int orc = ams_open(dir, &po, &in);
				if (orc == 0) {
					fv_oracle *o = fv_oracle_new();
					char msg[512];
					fv_check r;
					if (fv_oracle_check(o, in, 0, &r, msg, sizeof(msg)) != 0)
						violation(&t, &fc, fv, "after a failed create: %s", msg);
					fv_oracle_free(o);
					if (ams_close(in) != 0)
						violation(&t, &fc, fv, "close after a failed create failed");
				} else if (rc == 0) {
					violation(&t, &fc, fv, "ams_create succeeded but ams_open fails: %s (%s)",
					          ams_strerror(orc), ams_errmsg());
				} else {
					int crc = ams_create(dir, &co);
					if (crc != 0)
						violation(&t, &fc, fv,
						          "after ams_create failed with %s, the directory neither "
						          "opens (%s: %s) nor can be created again (%s: %s)",
						          ams_strerror(rc), ams_strerror(orc), "see above",
						          ams_strerror(crc), ams_errmsg());
				}
				faultvfs_free(fv);
			}
		}
	}
	printf("faults/create: calls in ams_create: write %" PRIu64 " sync %" PRIu64
	       " allocate %" PRIu64 " open-create %" PRIu64 " rename %" PRIu64
	       " sync_dir %" PRIu64 " truncate %" PRIu64 "\n",
	       counts[FV_WRITE], counts[FV_SYNC], counts[FV_ALLOCATE], counts[FV_OPEN_CREATE],
	       counts[FV_RENAME], counts[FV_SYNC_DIR], counts[FV_TRUNCATE]);
	report("faults/create", &t, now_s() - t0);
	if (t.violations)
		fail_msg("faults/create: %zu violations (see above)", t.violations);
}

static int setup(void **state)
{
	(void)state;
	g_tmp = faultvfs_tmpdir("amber-faults");
	const char *s = getenv("AMBER_FAULTS_STRIDE");
	if (s && atol(s) > 0)
		g_stride = atol(s);
	s = getenv("AMBER_FAULTS_VERBOSE");
	g_verbose = s && *s == '1';
	signal(SIGALRM, on_alarm);
	return g_tmp ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (g_tmp) {
		faultvfs_rmtree(g_tmp);
		free(g_tmp);
	}
	return 0;
}

int main(void)
{
	const char *only = getenv("AMBER_FAULTS_ONLY");
	if (only && *only)
		cmocka_set_test_filter(only);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_faults_create),
		cmocka_unit_test(test_faults_write),
		cmocka_unit_test(test_faults_sync),
		cmocka_unit_test(test_faults_allocate),
		cmocka_unit_test(test_faults_allocate_enospc_persistent),
		cmocka_unit_test(test_faults_dirops),
		cmocka_unit_test(test_faults_truncation_unlink),
		cmocka_unit_test(test_faults_truncation_deferred),
		cmocka_unit_test(test_faults_backup_first_copy),
		cmocka_unit_test(test_faults_settle_failure),
		/* last: a hang here ends the program (watchdog) */
		cmocka_unit_test(test_faults_full_disk_big_commit),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

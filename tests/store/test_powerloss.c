/*
 * test_powerloss.c - power loss at every sync point (SQLite test6.c style).
 *
 * A workload runs in-process through the recording faultvfs:
 *
 *   ams_create (recorded too: the test wraps amb_vfs_posix(), see below)
 *   ams_open, 2 threads committing transactions, ams_abandon (a crash with
 *   everything in the page cache), ams_open again (recovery, recorded),
 *   a full backup recorded (ams_backup_complete: the headers, then the
 *   logs below the checkpoint truncated), 3 threads committing, ams_close.
 *
 * Transactions put fresh keys (values 100 B .. 40 KiB, some 46000 B) into
 * four tables spread over two databases and delete keys acknowledged
 * earlier (the engine limits a value to about twice the log size, so the
 * "big" values are 46000 bytes, the most a 64 KiB log allows, and always
 * span two generations).  Right after each commit returns the test puts a
 * marker in the trace, so for every sync point k the oracle knows which
 * transactions had been acknowledged before it.  The log is 64 KiB (generations roll often)
 * and the checkpoint depth 128 KiB (checkpoints write pages often).
 *
 * Then, for EVERY sync point k of the trace and several crash variants
 * (nothing unsynced, everything, random subsets with torn sectors, one with
 * a half-garbage sector; see faultvfs.h), the image a power loss just
 * before sync k could leave is written to a directory and opened with the
 * plain POSIX vfs (recovery runs).  The content must be a correct outcome
 * (fv_oracle_check): every transaction acknowledged before k fully present,
 * every other begun one fully present or fully absent, nothing else.  The
 * instance is then abandoned and opened again: same content (a crash right
 * after recovery is harmless), and the log stream left behind must be one
 * unbroken chain (amb_logdir_check(), what backups and hard recovery
 * read).  For every NEST-th image the first recovery is itself recorded
 * and a power loss at each of ITS sync points is checked as well (a crash
 * during recovery is harmless): the content must be the same as the
 * uninterrupted recovery's.
 *
 * Before "ams_create returned" an image may not be an instance at all: the
 * open must then fail with an error (or find an empty instance), and a new
 * ams_create in that directory must work.
 *
 * Environment: AMBER_PL_SEED (workload and variant seed), AMBER_PL_TXNS
 * (transactions per phase, default 36), AMBER_PL_NEST (default 8, 0 = no
 * nested recovery crashes), AMBER_PL_VERBOSE=1, AMBER_PL_DUMP=k (print
 * the trace around sync point k), AMBER_PL_LOGCHAIN=0 (skip the log chain
 * check), AMBER_TEST_TMPDIR.
 * A failing image is kept (its directory is printed) together with the
 * trace around its sync point.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "amber/store.h"
#include "common/vfs.h"
#include "faultvfs.h"
#include "store/inspect.h"

/*
 * ams_create() has no vfs option, so the test links with
 * -Wl,--wrap=amb_vfs_posix: while g_default_vfs is set, the engine's
 * default vfs is the recording layer.  The layer itself wraps the real one.
 */
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
#define MAX_FAIL 6       /* failures shown in full (image kept, trace) */
#define MAX_FAIL_RUN 400 /* stop checking after this many */
#define MAX_CLASSES 32
#define BIG_VALUE 46000
/* page images a put adds to a commit's log record bound (instance.c:
 * validate()), and how many fit in two 64 KiB generations */
#define IMAGES(vlen) (((vlen) + 8155) / 8156 + 2)
#define MAX_IMAGES 12

static const char *const DBS[] = {"priv1.edb", "priv2.edb"};
static const char *const TABLES[] = {"mbox0", "mbox1", "mbox2", "mbox3"};

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

static long env_long(const char *name, long def)
{
	const char *s = getenv(name);
	return s && *s ? strtol(s, NULL, 0) : def;
}

/* ------------------------------------------------------------------------ */
/* the workload                                                             */

typedef struct workload {
	ams_instance *inst;
	faultvfs *fv;
	fv_oracle *o;
	atomic_int next;  /* transactions started in this phase */
	int target;
	atomic_int keyno; /* key counter (keys are never reused) */
	atomic_int errors;
	char errmsg[256];
	pthread_mutex_t mu;
} workload;

typedef struct worker_arg {
	workload *w;
	uint64_t seed;
} worker_arg;

static size_t value_len(uint64_t *rng)
{
	unsigned r = (unsigned)(mix(rng) % 100);
	if (r < 60)
		return 100 + (size_t)(mix(rng) % 3996);
	if (r < 94)
		return 4096 + (size_t)(mix(rng) % (40960 - 4096));
	/* the largest value a record can carry is about 2 x log size - the
	 * fixed overhead (instance.c: max_value()); 46000 bytes with 64 KiB
	 * logs, so such a record always spans two generations */
	return BIG_VALUE;
}

static void fill_value(unsigned char *buf, size_t len, uint64_t seed)
{
	uint64_t s = seed;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t x = mix(&s);
		size_t n = len - i < 8 ? len - i : 8;
		memcpy(buf + i, &x, n);
	}
}

static void wl_error(workload *w, const char *what, int rc)
{
	pthread_mutex_lock(&w->mu);
	if (atomic_fetch_add(&w->errors, 1) == 0)
		snprintf(w->errmsg, sizeof(w->errmsg), "%s: %s (%s)", what, ams_strerror(rc),
		         ams_errmsg());
	pthread_mutex_unlock(&w->mu);
}

static void *worker(void *arg)
{
	worker_arg *a = arg;
	workload *w = a->w;
	uint64_t rng = a->seed;
	unsigned char *val = malloc(BIG_VALUE);
	if (!val)
		return NULL;
	while (atomic_fetch_add(&w->next, 1) < w->target) {
		int tx = fv_oracle_begin(w->o);
		ams_txn *t;
		int rc = ams_txn_begin(w->inst, &t);
		if (rc) {
			fv_oracle_refused(w->o, tx);
			wl_error(w, "ams_txn_begin", rc);
			break;
		}
		int nops = 1 + (int)(mix(&rng) % 3);
		size_t txbytes = 1;
		for (int i = 0; i < nops && rc == 0; i++) {
			char table[FV_TABLE_BUF];
			char key[1024];
			size_t klen;
			if (mix(&rng) % 10 < 3 &&
			    fv_oracle_pick_deletable(w->o, mix(&rng), table, key, &klen) == 0) {
				fv_oracle_del(w->o, tx, table, key, klen);
				txbytes += 2;
				rc = ams_txn_del(t, table, key, klen);
				continue;
			}
			int kn = atomic_fetch_add(&w->keyno, 1);
			snprintf(table, sizeof(table), "%s", TABLES[mix(&rng) % 4]);
			klen = (size_t)snprintf(key, sizeof(key), "k%07d", kn);
			size_t vlen = value_len(&rng);
			/* the record's upper bound must fit in two log generations
			 * (~120 KiB with 64 KiB logs): about 14 page images */
			if (txbytes + IMAGES(vlen) > MAX_IMAGES)
				vlen = 100 + (size_t)(mix(&rng) % 2000);
			if (txbytes + IMAGES(vlen) > MAX_IMAGES)
				break;
			txbytes += IMAGES(vlen);
			fill_value(val, vlen, (uint64_t)kn * 7919u + 17);
			fv_oracle_put(w->o, tx, table, key, klen, val, vlen);
			rc = ams_txn_put(t, table, key, klen, val, vlen);
		}
		if (rc) {
			ams_txn_abort(t);
			fv_oracle_refused(w->o, tx);
			wl_error(w, "ams_txn_put/del", rc);
			break;
		}
		rc = ams_txn_commit(t);
		if (rc == 0) {
			size_t pt = faultvfs_mark(w->fv, "ack %d", tx);
			fv_oracle_ack(w->o, tx, pt);
		} else {
			wl_error(w, "ams_txn_commit", rc);
			break;
		}
	}
	free(val);
	return NULL;
}

static void run_phase(workload *w, int nthreads, int ntx, uint64_t seed)
{
	pthread_t th[8];
	worker_arg args[8];
	atomic_store(&w->next, 0);
	w->target = ntx;
	for (int i = 0; i < nthreads; i++) {
		args[i].w = w;
		args[i].seed = seed * 31 + (uint64_t)i * 1000003u + 1;
		assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	if (atomic_load(&w->errors))
		fail_msg("workload: %s", w->errmsg);
}

/* ------------------------------------------------------------------------ */
/* checking images                                                          */

typedef struct checker {
	faultvfs *fv;
	fv_oracle *o;
	const char *tmp;
	size_t created_pt; /* sync points before ams_create returned */
	uint64_t seed;
	long nest;
	int verbose;
	int logchain;
	/* counts */
	size_t images, skipped_same, opens, pre_create_refused, nested_images;
	size_t failures;
	char ctx[256]; /* for nested images: which image's recovery */
	/* failures grouped by kind and message with the numbers taken out */
	struct {
		char key[160];
		char example[700];
		size_t n;
	} cls[MAX_CLASSES];
	size_t ncls;
} checker;

static void classify(checker *c, const char *what, const char *detail, const char *example)
{
	char key[160];
	size_t n = (size_t)snprintf(key, sizeof(key), "%s: ", what);
	int run = 0; /* inside a number (decimal or hex) */
	for (const char *p = detail; *p && n < sizeof(key) - 1; p++) {
		if ((*p >= '0' && *p <= '9') || (run && *p >= 'A' && *p <= 'F')) {
			run = 1;
			continue;
		}
		run = 0;
		if (*p == '/') { /* drop paths */
			while (*p && *p != ' ' && *p != ':')
				p++;
			if (!*p)
				break;
		}
		key[n++] = *p;
	}
	key[n] = '\0';
	for (size_t i = 0; i < c->ncls; i++)
		if (strcmp(c->cls[i].key, key) == 0) {
			c->cls[i].n++;
			return;
		}
	if (c->ncls == MAX_CLASSES)
		return;
	snprintf(c->cls[c->ncls].key, sizeof(c->cls[0].key), "%s", key);
	snprintf(c->cls[c->ncls].example, sizeof(c->cls[0].example), "%s", example);
	c->cls[c->ncls++].n = 1;
}

static const char *variant_name(enum fv_crash v)
{
	switch (v) {
	case FV_CRASH_NONE:
		return "none";
	case FV_CRASH_ALL:
		return "all";
	case FV_CRASH_RANDOM:
		return "random";
	case FV_CRASH_GARBAGE:
		return "garbage";
	}
	return "?";
}

static void keep_failure(checker *c, faultvfs *fv, size_t k, enum fv_crash v, uint64_t seed,
                         const char *what, const char *detail)
{
	c->failures++;
	char desc[512], ex[700];
	faultvfs_sync_desc(fv, k, desc, sizeof(desc));
	snprintf(ex, sizeof(ex), "%ssync point %zu (%s), variant %s seed %" PRIu64, c->ctx, k, desc,
	         variant_name(v), seed);
	classify(c, what, detail, ex);
	if (c->failures > MAX_FAIL)
		return;
	fprintf(stderr, "\nFAIL %s at %s:\n  %s\n", what, ex, detail);
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/fail%zu-%s-k%zu", c->tmp, c->failures, what, k);
	faultvfs_rmtree(dir);
	if (faultvfs_materialise(fv, k, v, seed, dir) == 0)
		fprintf(stderr, "  image kept in %s (before recovery)\n", dir);
	fprintf(stderr, "  trace around the sync point:\n");
	faultvfs_dump(fv, k, 12, 3);
}

/* Open @p dir with the plain vfs, check it against the oracle at point
 * @p k; returns 0 and the fingerprint, -1 on failure (reported), 1 if the
 * image is (acceptably) not an instance. */
static int open_check(checker *c, faultvfs *fv, size_t k, enum fv_crash v, uint64_t seed,
                      const char *dir, size_t point, int pre_create, amb_vfs *vfs,
                      ams_instance **keep, uint64_t *fp)
{
	ams_open_opts oo = {.vfs = vfs};
	ams_instance *in = NULL;
	char msg[1024];
	int rc = ams_open(dir, &oo, &in);
	c->opens++;
	if (rc != 0) {
		if (pre_create && rc < -31000 && rc > -31100) {
			c->pre_create_refused++;
			return 1;
		}
		snprintf(msg, sizeof(msg), "ams_open: %s: %s", ams_strerror(rc), ams_errmsg());
		keep_failure(c, fv, k, v, seed, "open", msg);
		return -1;
	}
	fv_check r;
	rc = fv_oracle_check(c->o, in, pre_create ? 0 : point, &r, msg, sizeof(msg));
	if (rc == 0 && pre_create && r.records) {
		snprintf(msg, sizeof(msg), "%zu records before ams_create returned", r.records);
		rc = 1;
	}
	if (rc != 0) {
		keep_failure(c, fv, k, v, seed, "content", msg);
		ams_abandon(in);
		return -1;
	}
	*fp = r.fingerprint;
	if (keep) {
		*keep = in;
	} else {
		rc = ams_close(in);
		if (rc != 0) {
			snprintf(msg, sizeof(msg), "ams_close: %s: %s", ams_strerror(rc), ams_errmsg());
			keep_failure(c, fv, k, v, seed, "close", msg);
			return -1;
		}
	}
	return 0;
}

/* A power loss at each sync point of the recovery recorded in fv2 (of the
 * image of sync point k of the main trace): the content must be fp. */
static void check_nested(checker *c, faultvfs *fv2, size_t k, enum fv_crash v, uint64_t seed,
                         uint64_t fp)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/nested", c->tmp);
	size_t n = faultvfs_nsyncs(fv2);
	char d[200];
	faultvfs_sync_desc(c->fv, k, d, sizeof(d));
	snprintf(c->ctx, sizeof(c->ctx),
	         "[recovery of the image of sync point %zu (%s), variant %s seed %" PRIu64
	         "; trace: AMBER_PL_SEED=%" PRIu64 "] ",
	         k, d, variant_name(v), seed, c->seed);
	for (size_t k2 = 0; k2 <= n; k2++) {
		enum fv_crash vs[2] = {FV_CRASH_NONE, FV_CRASH_RANDOM};
		for (int i = 0; i < 2; i++) {
			faultvfs_rmtree(dir);
			uint64_t s2 = seed * 131 + k2;
			if (faultvfs_materialise(fv2, k2, vs[i], s2, dir) != 0)
				fail_msg("materialise nested image");
			c->nested_images++;
			uint64_t fp2 = 0;
			if (open_check(c, fv2, k2, vs[i], s2, dir, k, 0, NULL, NULL, &fp2) == 0 &&
			    fp2 != fp) {
				char msg[256];
				snprintf(msg, sizeof(msg),
				         "crash during the recovery of the image of sync point %zu (%s) "
				         "changed the recovered content",
				         k, variant_name(v));
				keep_failure(c, fv2, k2, vs[i], s2, "nested-recovery", msg);
			}
		}
	}
	c->ctx[0] = '\0';
}

static void check_image(checker *c, size_t k, enum fv_crash v, uint64_t seed, int nested)
{
	char img[4096];
	snprintf(img, sizeof(img), "%s/img", c->tmp);
	faultvfs_rmtree(img);
	int rc = faultvfs_materialise(c->fv, k, v, seed, img);
	if (rc)
		fail_msg("materialise k=%zu: %s", k, strerror(-rc));
	int pre = k < c->created_pt;
	c->images++;

	/* first recovery, itself recorded when the nested check is due */
	faultvfs *fv2 = NULL;
	if (nested && !pre) {
		fv2 = faultvfs_new(img, __real_amb_vfs_posix(), 0);
		faultvfs_trace_start(fv2);
	}
	ams_instance *in = NULL;
	uint64_t fp1 = 0, fp2 = 0;
	rc = open_check(c, c->fv, k, v, seed, img, k, pre, fv2 ? faultvfs_vfs(fv2) : NULL, &in,
	                &fp1);
	if (rc != 0) {
		faultvfs_free(fv2);
		if (rc == 1) {
			/* a crash during ams_create left no instance: creating it
			 * again must work (or the directory is stuck) */
			ams_create_opts co = {.log_size = LOG_SIZE, .databases = DBS, .ndatabases = 2};
			int crc = ams_create(img, &co);
			if (crc != 0) {
				char msg[1024];
				snprintf(msg, sizeof(msg),
				         "a crash during ams_create left a directory that neither opens "
				         "nor can be created again: ams_create: %s: %s",
				         ams_strerror(crc), ams_errmsg());
				keep_failure(c, c->fv, k, v, seed, "create-retry", msg);
			}
		}
		return;
	}
	ams_abandon(in);
	if (fv2)
		faultvfs_trace_stop(fv2);

	/* a crash right after recovery: open again, same content */
	rc = open_check(c, c->fv, k, v, seed, img, k, pre, NULL, NULL, &fp2);
	if (rc == 0 && fp2 != fp1)
		keep_failure(c, c->fv, k, v, seed, "second-recovery",
		             "reopening after a recovery that was abandoned changed the content");
	/* the log stream the recoveries left must be one unbroken chain (what
	 * backups and hard recovery read): `amber-store check LOGDIR --all` */
	if (rc == 0 && !pre && c->logchain) {
		amb_logdir_report rep;
		int lrc = amb_logdir_check(__real_amb_vfs_posix(), img, "E00", 0, &rep, NULL);
		if (lrc != 0) {
			char msg[1024];
			snprintf(msg, sizeof(msg), "log stream after recovery: %s: %s", ams_strerror(lrc),
			         ams_errmsg());
			keep_failure(c, c->fv, k, v, seed, "log-chain", msg);
		}
	}
	if (fv2) {
		if (rc == 0)
			check_nested(c, fv2, k, v, seed, fp1);
		faultvfs_free(fv2);
	}
}

/* ------------------------------------------------------------------------ */

static void test_powerloss_every_sync_point(void **state)
{
	(void)state;
	uint64_t seed = (uint64_t)env_long("AMBER_PL_SEED", (long)(time(NULL) & 0xffffff));
	int ntx = (int)env_long("AMBER_PL_TXNS", 36);
	long nest = env_long("AMBER_PL_NEST", 8);
	int verbose = (int)env_long("AMBER_PL_VERBOSE", 0);
	printf("powerloss: seed %" PRIu64 " (AMBER_PL_SEED), %d transactions per phase\n", seed,
	       ntx);

	char *tmp = faultvfs_tmpdir("amber-powerloss");
	assert_non_null(tmp);
	char inst_dir[4096];
	snprintf(inst_dir, sizeof(inst_dir), "%s/inst", tmp);
	assert_int_equal(mkdir(inst_dir, 0755), 0);

	faultvfs *fv = faultvfs_new(inst_dir, __real_amb_vfs_posix(), 0);
	assert_non_null(fv);
	assert_int_equal(faultvfs_trace_start(fv), 0);
	fv_oracle *o = fv_oracle_new();
	assert_non_null(o);

	/* ---- record ---- */
	double t0 = now_s();
	ams_create_opts co = {.log_size = LOG_SIZE, .databases = DBS, .ndatabases = 2};
	atomic_store(&g_default_vfs, faultvfs_vfs(fv));
	int rc = ams_create(inst_dir, &co);
	atomic_store(&g_default_vfs, NULL);
	if (rc)
		fail_msg("ams_create: %s (%s)", ams_strerror(rc), ams_errmsg());
	size_t created_pt = faultvfs_mark(fv, "created");

	ams_open_opts oo = {.checkpoint_depth = CKPT_DEPTH, .vfs = faultvfs_vfs(fv)};
	ams_instance *inst;
	rc = ams_open(inst_dir, &oo, &inst);
	if (rc)
		fail_msg("ams_open: %s (%s)", ams_strerror(rc), ams_errmsg());
	faultvfs_mark(fv, "opened");

	/* the tables: two per database */
	int tx = fv_oracle_begin(o);
	ams_txn *t;
	assert_int_equal(ams_txn_begin(inst, &t), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(ams_txn_create_table(t, TABLES[i], i / 2), 0);
	rc = ams_txn_commit(t);
	if (rc)
		fail_msg("commit of the tables: %s (%s)", ams_strerror(rc), ams_errmsg());
	fv_oracle_ack(o, tx, faultvfs_mark(fv, "ack %d (tables)", tx));

	workload w = {.inst = inst, .fv = fv, .o = o};
	pthread_mutex_init(&w.mu, NULL);
	run_phase(&w, 2, ntx, seed);
	ams_abandon(inst);
	faultvfs_mark(fv, "abandoned");

	rc = ams_open(inst_dir, &oo, &inst);
	if (rc)
		fail_msg("ams_open after abandon: %s (%s)", ams_strerror(rc), ams_errmsg());
	faultvfs_mark(fv, "reopened");
	w.inst = inst;
	/* a verified full backup recorded (both headers, fdatasynced) and the
	 * logs below its first generation truncated without a directory fsync
	 * (backup.c, truncate_below): the phase's own directory fsyncs make the
	 * unlinks durable later, so the images in between have any prefix of
	 * them undone; each must still open to the right content with an
	 * unbroken log chain */
	ams_info bi;
	assert_int_equal(ams_info_get(inst, &bi), 0);
	uint32_t oldest_before = bi.gen_oldest;
	rc = ams_backup_complete(inst, AMS_BACKUP_FULL, bi.gen_checkpoint, bi.gen_current,
	                         (uint64_t)time(NULL), 0);
	if (rc)
		fail_msg("ams_backup_complete: %s (%s)", ams_strerror(rc), ams_errmsg());
	faultvfs_mark(fv, "full backup recorded, logs truncated");
	assert_int_equal(ams_info_get(inst, &bi), 0);
	printf("powerloss: a full backup truncated generations %u..%u\n", oldest_before,
	       bi.gen_oldest - 1);
	assert_true(bi.gen_oldest > oldest_before + 1); /* several generations went */
	run_phase(&w, 3, ntx, seed + 1);
	ams_info info;
	if (ams_info_get(inst, &info) == 0)
		printf("powerloss: phase 2: %" PRIu64 " commits in %" PRIu64 " flushes, %" PRIu64
		       " checkpoints, log generations %u..%u\n",
		       info.commits, info.flushes, info.checkpoints, info.gen_checkpoint,
		       info.gen_current);
	rc = ams_close(inst);
	if (rc)
		fail_msg("ams_close: %s (%s)", ams_strerror(rc), ams_errmsg());
	faultvfs_mark(fv, "closed");
	faultvfs_trace_stop(fv);
	double t1 = now_s();
	size_t nsyncs = faultvfs_nsyncs(fv);
	printf("powerloss: recorded %zu operations, %zu sync points, %.1f MiB written, "
	       "%zu transactions (%zu acked) in %.2f s\n",
	       faultvfs_trace_len(fv), nsyncs, (double)faultvfs_trace_bytes(fv) / 1048576.0,
	       fv_oracle_ntxns(o), fv_oracle_nacked(o), t1 - t0);

	long dump = env_long("AMBER_PL_DUMP", -1);
	if (dump >= 0)
		faultvfs_dump(fv, (size_t)dump, 60, 10);

	/* ---- check every sync point ---- */
	checker c = {.fv = fv, .o = o, .tmp = tmp, .created_pt = created_pt, .nest = nest,
	             .verbose = verbose, .seed = seed,
	             .logchain = (int)env_long("AMBER_PL_LOGCHAIN", 1)};
	const struct {
		enum fv_crash v;
		uint64_t salt;
	} variants[] = {
		{FV_CRASH_NONE, 0},    {FV_CRASH_ALL, 0},     {FV_CRASH_RANDOM, 1},
		{FV_CRASH_RANDOM, 2},  {FV_CRASH_GARBAGE, 3},
	};
	size_t nv = sizeof(variants) / sizeof(variants[0]);
	size_t nested_done = 0;
	for (size_t k = 0; k <= nsyncs && c.failures < MAX_FAIL_RUN; k++) {
		for (size_t i = 0; i < nv && c.failures < MAX_FAIL_RUN; i++) {
			uint64_t s = seed * 1000 + variants[i].salt;
			if (i > 0) {
				/* with nothing pending every variant is the "none" image */
				fv_image_stats st;
				faultvfs_image_stats(fv, &st);
				if (st.pending_writes == 0 && st.pending_dirops == 0) {
					c.skipped_same++;
					continue;
				}
			}
			int nested = nest > 0 && variants[i].v == FV_CRASH_RANDOM &&
			             variants[i].salt == 1 && k % (size_t)nest == 0;
			nested_done += (size_t)nested;
			check_image(&c, k, variants[i].v, s, nested);
			if (verbose) {
				fv_image_stats st;
				faultvfs_image_stats(fv, &st);
				char d[256];
				faultvfs_sync_desc(fv, k, d, sizeof(d));
				printf("  k=%zu %-8s %-40s files %zu writes %zu/%zu torn %zu dirops "
				       "%zu/%zu\n",
				       k, variant_name(variants[i].v), d, st.files, st.applied_writes,
				       st.pending_writes, st.torn_writes, st.applied_dirops,
				       st.pending_dirops);
			}
		}
	}
	double t2 = now_s();
	printf("powerloss: checked %zu images at %zu sync points (+%zu identical variants "
	       "skipped), %zu crash-during-recovery images from %zu recoveries, %zu opens, "
	       "%zu pre-create images refused by ams_open; %.2f s\n",
	       c.images, nsyncs + 1, c.skipped_same, c.nested_images, nested_done, c.opens,
	       c.pre_create_refused, t2 - t1);

	fv_oracle_free(o);
	faultvfs_free(fv);
	pthread_mutex_destroy(&w.mu);
	if (c.failures) {
		fprintf(stderr, "\npowerloss: %zu failures in %zu classes; kept %s\n", c.failures,
		        c.ncls, tmp);
		for (size_t i = 0; i < c.ncls; i++)
			fprintf(stderr, "  %5zu x %s\n          e.g. %s\n", c.cls[i].n, c.cls[i].key,
			        c.cls[i].example);
		free(tmp);
		fail_msg("%zu power-loss images recovered wrongly (seed %" PRIu64 ")", c.failures,
		         seed);
	}
	faultvfs_rmtree(tmp);
	free(tmp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_powerloss_every_sync_point),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * commit_bench.c - durable commits per second: libamberstore against SQLite
 * (WAL, synchronous=FULL) doing the same inserts on the same disk.
 *
 * For each value size and each number of concurrent committers, runs for a
 * fixed time:
 *   amber:  a fresh instance; one ams_txn_put of a fresh key per
 *           transaction, then ams_txn_commit (durable on return);
 *   sqlite: a fresh database file; one connection per thread;
 *           BEGIN IMMEDIATE; INSERT INTO t(k,v) VALUES(?,?); COMMIT;
 * and prints commits/s, the ratio, amber's log flushes (commits/flushes =
 * average group size) and the p50/p99 commit latency of both.
 *
 * usage: amber-bench-commit [--dir DIR] [--duration SEC] [--threads 1,4,16]
 *                           [--sizes 1024,4096] [--log-size BYTES]
 *                           [--page-size BYTES]
 *                           [--rounds N] [--baseline] [--markdown]
 *                           [--only amber|sqlite]
 * DIR (default /var/tmp) must be on the disk to measure; both engines' files
 * go there and are removed afterwards.  With --rounds N each configuration
 * runs N times per engine, alternating amber and SQLite, and the rates are
 * averaged (each engine then ran N x SEC seconds).  --log-size sets amber's
 * log file size (default: the engine's, 1 MiB), --page-size its page size
 * (default 8192).  --baseline adds the disk's
 * own rate: a loop of pwrite + fdatasync of 4, 12 and 20 KiB.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "amber/store.h"

#define MAX_LIST 16

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "amber-bench-commit: %s: %s\n", what, msg);
	exit(1);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

static void rm_rf(const char *path)
{
	nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------ latencies */

typedef struct lat {
	double *v;
	size_t n, cap;
} lat;

static void lat_add(lat *l, double x)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 4096;
		l->v = realloc(l->v, l->cap * sizeof(double));
		if (!l->v)
			die("latencies", "out of memory");
	}
	l->v[l->n++] = x;
}

static int dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Merge the threads' samples; give p50 and p99 in microseconds. */
static void lat_pct(lat *ls, int n, double *p50, double *p99)
{
	lat all = {0};
	for (int i = 0; i < n; i++)
		for (size_t k = 0; k < ls[i].n; k++)
			lat_add(&all, ls[i].v[k]);
	*p50 = *p99 = 0;
	if (all.n) {
		qsort(all.v, all.n, sizeof(double), dcmp);
		*p50 = all.v[(size_t)((double)(all.n - 1) * 0.50)] * 1e6;
		*p99 = all.v[(size_t)((double)(all.n - 1) * 0.99)] * 1e6;
	}
	free(all.v);
}

/* ------------------------------------------------------------ workers */

typedef struct run {
	int nthreads;
	size_t vsize;
	double duration;
	atomic_int ready;
	atomic_int go;
	atomic_int stop;
	/* amber */
	ams_instance *inst;
	/* sqlite */
	const char *dbpath;
} run;

typedef struct worker {
	run *r;
	int id;
	uint64_t commits;
	lat l;
	int err;
	char errmsg[256];
} worker;

static void fill_value(unsigned char *v, size_t n, int id)
{
	/* not all zeros, not trivially compressible */
	uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(id + 1);
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		v[i] = (unsigned char)x;
	}
}

static void start_gate(run *r)
{
	atomic_fetch_add(&r->ready, 1);
	while (!atomic_load(&r->go))
		sched_yield();
}

static void *amber_worker(void *arg)
{
	worker *w = arg;
	run *r = w->r;
	unsigned char *val = malloc(r->vsize);
	if (!val)
		die("amber", "out of memory");
	fill_value(val, r->vsize, w->id);
	char key[32];
	start_gate(r);
	while (!atomic_load(&r->stop)) {
		int klen = snprintf(key, sizeof(key), "k%03d-%012" PRIu64, w->id, w->commits);
		double t0 = now_s();
		ams_txn *t;
		int rc = ams_txn_begin(r->inst, &t);
		if (!rc)
			rc = ams_txn_put(t, "t", key, (size_t)klen, val, r->vsize);
		if (!rc)
			rc = ams_txn_commit(t);
		else
			ams_txn_abort(t);
		if (rc) {
			w->err = rc;
			snprintf(w->errmsg, sizeof(w->errmsg), "%s: %s", ams_strerror(rc),
			         ams_errmsg());
			atomic_store(&r->stop, 1);
			break;
		}
		lat_add(&w->l, now_s() - t0);
		w->commits++;
	}
	free(val);
	return NULL;
}

static int sq_exec(sqlite3 *db, const char *sql, char *err, size_t errsz)
{
	char *m = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &m);
	if (rc != SQLITE_OK) {
		snprintf(err, errsz, "%s: %s", sql, m ? m : sqlite3_errstr(rc));
		sqlite3_free(m);
	}
	return rc;
}

static sqlite3 *sq_open(const char *path, char *err, size_t errsz)
{
	sqlite3 *db;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	                                   SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, errsz, "open %s: %s", path, sqlite3_errmsg(db));
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 600000);
	if (sq_exec(db, "PRAGMA journal_mode=WAL", err, errsz) ||
	    sq_exec(db, "PRAGMA synchronous=FULL", err, errsz)) {
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

static void *sqlite_worker(void *arg)
{
	worker *w = arg;
	run *r = w->r;
	unsigned char *val = malloc(r->vsize);
	if (!val)
		die("sqlite", "out of memory");
	fill_value(val, r->vsize, w->id);
	sqlite3 *db = sq_open(r->dbpath, w->errmsg, sizeof(w->errmsg));
	sqlite3_stmt *beg = NULL, *ins = NULL, *com = NULL;
	if (!db ||
	    sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &beg, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO t(k,v) VALUES(?,?)", -1, &ins, NULL) !=
	        SQLITE_OK ||
	    sqlite3_prepare_v2(db, "COMMIT", -1, &com, NULL) != SQLITE_OK) {
		if (db)
			snprintf(w->errmsg, sizeof(w->errmsg), "prepare: %s", sqlite3_errmsg(db));
		w->err = 1;
		atomic_store(&r->stop, 1);
		start_gate(r);
		goto out;
	}
	char key[32];
	start_gate(r);
	while (!atomic_load(&r->stop)) {
		int klen = snprintf(key, sizeof(key), "k%03d-%012" PRIu64, w->id, w->commits);
		double t0 = now_s();
		int rc = sqlite3_step(beg);
		sqlite3_reset(beg);
		if (rc == SQLITE_DONE) {
			sqlite3_bind_text(ins, 1, key, klen, SQLITE_STATIC);
			sqlite3_bind_blob(ins, 2, val, (int)r->vsize, SQLITE_STATIC);
			rc = sqlite3_step(ins);
			sqlite3_reset(ins);
			if (rc == SQLITE_DONE) {
				rc = sqlite3_step(com);
				sqlite3_reset(com);
			} else {
				sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			}
		}
		if (rc != SQLITE_DONE) {
			w->err = rc;
			snprintf(w->errmsg, sizeof(w->errmsg), "%s", sqlite3_errmsg(db));
			atomic_store(&r->stop, 1);
			break;
		}
		lat_add(&w->l, now_s() - t0);
		w->commits++;
	}
out:
	sqlite3_finalize(beg);
	sqlite3_finalize(ins);
	sqlite3_finalize(com);
	sqlite3_close(db);
	free(val);
	return NULL;
}

/* One configuration. */
typedef struct cfg {
	const char *dir;
	int nthreads;
	size_t vsize;
	double duration;
	uint64_t log_size;  /* amber's log files, 0: default */
	uint32_t page_size; /* amber's pages, 0: default */
} cfg;

typedef struct result {
	double rate, p50, p99;
	uint64_t commits, flushes;
} result;

/* Start the workers, let them run for r->duration, collect. */
static int drive(run *r, void *(*fn)(void *), result *res, uint64_t *total)
{
	worker *w = calloc((size_t)r->nthreads, sizeof(worker));
	pthread_t *th = calloc((size_t)r->nthreads, sizeof(pthread_t));
	lat *ls = calloc((size_t)r->nthreads, sizeof(lat));
	if (!w || !th || !ls)
		die("drive", "out of memory");
	atomic_store(&r->ready, 0);
	atomic_store(&r->go, 0);
	atomic_store(&r->stop, 0);
	for (int i = 0; i < r->nthreads; i++) {
		w[i].r = r;
		w[i].id = i;
		if (pthread_create(&th[i], NULL, fn, &w[i]))
			die("drive", "pthread_create failed");
	}
	while (atomic_load(&r->ready) < r->nthreads)
		usleep(1000);
	double t0 = now_s();
	atomic_store(&r->go, 1);
	while (!atomic_load(&r->stop) && now_s() - t0 < r->duration)
		usleep(10000);
	atomic_store(&r->stop, 1);
	*total = 0;
	int err = 0;
	for (int i = 0; i < r->nthreads; i++) {
		pthread_join(th[i], NULL);
		*total += w[i].commits;
		if (w[i].err && !err) {
			err = 1;
			fprintf(stderr, "amber-bench-commit: worker %d: %s\n", i, w[i].errmsg);
		}
		ls[i] = w[i].l;
	}
	double el = now_s() - t0;
	res->rate = (double)*total / el;
	res->commits = *total;
	lat_pct(ls, r->nthreads, &res->p50, &res->p99);
	for (int i = 0; i < r->nthreads; i++)
		free(ls[i].v);
	free(ls);
	free(w);
	free(th);
	return err;
}

static int bench_amber(const cfg *c, result *res)
{
	const char *base = c->dir;
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/amber-bench-commit.%d", base, (int)getpid());
	rm_rf(dir);
	ams_create_opts co = {0};
	co.log_size = c->log_size;
	co.page_size = c->page_size;
	int rc = ams_create(dir, &co);
	if (rc)
		die("ams_create", ams_errmsg());
	run r = {0};
	r.nthreads = c->nthreads;
	r.vsize = c->vsize;
	r.duration = c->duration;
	rc = ams_open(dir, NULL, &r.inst);
	if (rc)
		die("ams_open", ams_errmsg());
	uint64_t total;
	int err = drive(&r, amber_worker, res, &total);
	ams_info info;
	if (ams_info_get(r.inst, &info) == 0) {
		res->flushes = info.flushes;
		res->commits = info.commits;
	}
	rc = ams_close(r.inst);
	if (rc)
		die("ams_close", ams_errmsg());
	rm_rf(dir);
	return err;
}

static int bench_sqlite(const cfg *c, result *res)
{
	const char *base = c->dir;
	char path[4096], side[4200];
	snprintf(path, sizeof(path), "%s/amber-bench-commit.%d.sqlite", base, (int)getpid());
	unlink(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
	char err[256];
	sqlite3 *db = sq_open(path, err, sizeof(err));
	if (!db)
		die("sqlite", err);
	if (sq_exec(db, "CREATE TABLE t(k TEXT PRIMARY KEY, v BLOB)", err, sizeof(err)))
		die("sqlite", err);
	run r = {0};
	r.nthreads = c->nthreads;
	r.vsize = c->vsize;
	r.duration = c->duration;
	r.dbpath = path;
	uint64_t total;
	int e = drive(&r, sqlite_worker, res, &total);
	res->flushes = 0;
	sqlite3_close(db);
	unlink(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
	return e;
}

/* Average of the rounds (latency percentiles: mean of the rounds'). */
static void result_add(result *acc, const result *r, int rounds)
{
	acc->rate += r->rate / rounds;
	acc->p50 += r->p50 / rounds;
	acc->p99 += r->p99 / rounds;
	acc->commits += r->commits;
	acc->flushes += r->flushes;
}

/*
 * The disk's own rate: one thread, pwrite of n bytes at increasing offsets
 * of a preallocated (written, synced) file, fdatasync after each.  What a
 * log writer doing one write + one fdatasync per commit cannot beat.
 */
static double raw_sync_rate(const char *base, size_t n, double dur, double *p50)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/amber-bench-commit.%d.raw", base, (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die(path, strerror(errno));
	const size_t fsize = 64u << 20;
	unsigned char *buf = calloc(1, 1u << 20);
	if (!buf)
		die("raw", "out of memory");
	for (size_t off = 0; off < fsize; off += 1u << 20)
		if (pwrite(fd, buf, 1u << 20, (off_t)off) != 1 << 20)
			die(path, strerror(errno));
	if (fsync(fd) < 0)
		die(path, strerror(errno));
	fill_value(buf, n, 7);
	lat l = {0};
	uint64_t count = 0;
	off_t off = 0;
	double t0 = now_s(), t;
	while ((t = now_s()) - t0 < dur) {
		if (off + (off_t)n > (off_t)fsize)
			off = 0;
		if (pwrite(fd, buf, n, off) != (ssize_t)n || fdatasync(fd) < 0)
			die(path, strerror(errno));
		off += (off_t)((n + 4095) & ~(size_t)4095);
		lat_add(&l, now_s() - t);
		count++;
	}
	double el = now_s() - t0;
	double p99;
	lat_pct(&l, 1, p50, &p99);
	free(l.v);
	free(buf);
	close(fd);
	unlink(path);
	return (double)count / el;
}

static void print_row(const cfg *c, const result *a, const result *s, int markdown)
{
	double ratio = s->rate > 0 ? a->rate / s->rate : 0;
	double grp = a->flushes ? (double)a->commits / (double)a->flushes : 0;
	if (markdown)
		printf("| %d | %zu | %.0f | %.0f | %.2f | %" PRIu64 " | %.1f | %.0f | %.0f | %.0f "
		       "| %.0f |\n",
		       c->nthreads, c->vsize, a->rate, s->rate, ratio, a->flushes, grp, a->p50,
		       a->p99, s->p50, s->p99);
	else
		printf("%7d %6zu %12.0f %12.0f %7.2f %9" PRIu64 " %7.1f %9.0f %9.0f %9.0f %9.0f\n",
		       c->nthreads, c->vsize, a->rate, s->rate, ratio, a->flushes, grp, a->p50,
		       a->p99, s->p50, s->p99);
	fflush(stdout);
}

static void print_baseline(const char *dir, double dur, int markdown)
{
	/* the log bytes amber writes per 1-put commit: whole 4 KiB segments
	 * holding the page images (8 KiB pages: a 1 KiB value takes 3
	 * segments; a 4 KiB value, with its overflow page, 5) */
	static const size_t bsz[] = {4096, 12288, 20480};
	if (markdown)
		printf("\nDisk baseline (one thread, pwrite + fdatasync per iteration on a "
		       "preallocated file, %.1f s each):", dur);
	else
		printf("# disk baseline, pwrite + fdatasync loop:");
	for (size_t i = 0; i < sizeof(bsz) / sizeof(bsz[0]); i++) {
		double p50;
		double r = raw_sync_rate(dir, bsz[i], dur, &p50);
		printf("%s %zu KiB: %.0f/s (p50 %.0f µs)", i ? ";" : "", bsz[i] / 1024, r, p50);
	}
	printf("\n");
}

static int parse_list(const char *s, long *out)
{
	int n = 0;
	char *end;
	while (*s && n < MAX_LIST) {
		long v = strtol(s, &end, 10);
		if (end == s || v <= 0)
			return -1;
		if (*end == 'K' || *end == 'k') {
			v *= 1024;
			end++;
		}
		out[n++] = v;
		s = end;
		if (*s == ',')
			s++;
		else if (*s)
			return -1;
	}
	return n;
}

static void usage(void)
{
	fprintf(stderr, "usage: amber-bench-commit [--dir DIR] [--duration SEC]\n"
	                "                          [--threads 1,4,16] [--sizes 1024,4096]\n"
	                "                          [--log-size BYTES] [--page-size BYTES]\n"
	                "                          [--rounds N] [--baseline] [--markdown]\n"
	                "                          [--only amber|sqlite]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *dir = "/var/tmp";
	double dur = 5;
	long threads[MAX_LIST] = {1, 4, 16}, sizes[MAX_LIST] = {1024, 4096};
	int nthreads = 3, nsizes = 2, markdown = 0, do_amber = 1, do_sqlite = 1;
	int rounds = 1, baseline = 0;
	uint64_t log_size = 0;
	uint32_t page_size = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--markdown")) {
			markdown = 1;
		} else if (!strcmp(a, "--baseline")) {
			baseline = 1;
		} else if (!v) {
			usage();
		} else if (!strcmp(a, "--dir")) {
			dir = v, i++;
		} else if (!strcmp(a, "--duration")) {
			dur = atof(v), i++;
		} else if (!strcmp(a, "--threads")) {
			if ((nthreads = parse_list(v, threads)) <= 0)
				usage();
			i++;
		} else if (!strcmp(a, "--sizes")) {
			if ((nsizes = parse_list(v, sizes)) <= 0)
				usage();
			i++;
		} else if (!strcmp(a, "--rounds")) {
			rounds = atoi(v), i++;
		} else if (!strcmp(a, "--page-size")) {
			page_size = (uint32_t)strtoul(v, NULL, 0), i++;
		} else if (!strcmp(a, "--log-size")) {
			log_size = strtoull(v, NULL, 0), i++;
		} else if (!strcmp(a, "--only")) {
			do_amber = !strcmp(v, "amber");
			do_sqlite = !strcmp(v, "sqlite");
			i++;
		} else {
			usage();
		}
	}
	if (dur <= 0 || rounds < 1)
		usage();

	fprintf(stderr, "# dir %s, %d x %.1f s per engine and configuration, sqlite %s, "
	        "amber log size %" PRIu64 "%s, page size %" PRIu32 "%s\n", dir, rounds, dur,
	        sqlite3_libversion(), log_size, log_size ? "" : " (engine default)", page_size,
	        page_size ? "" : " (engine default)");
	if (markdown) {
		printf("| threads | value | amber commits/s | sqlite commits/s | amber/sqlite | "
		       "amber flushes | commits/flush | amber p50 µs | amber p99 µs | "
		       "sqlite p50 µs | sqlite p99 µs |\n");
		printf("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
	} else {
		printf("%7s %6s %12s %12s %7s %9s %7s %9s %9s %9s %9s\n", "threads", "value",
		       "amber/s", "sqlite/s", "ratio", "flushes", "grp", "a.p50us", "a.p99us",
		       "s.p50us", "s.p99us");
	}
	fflush(stdout);
	int err = 0;
	for (int si = 0; si < nsizes; si++) {
		for (int ti = 0; ti < nthreads; ti++) {
			cfg c = {dir,      (int)threads[ti], (size_t)sizes[si],
			         dur,      log_size,         page_size};
			/* alternate the engines round by round so that a change in
			 * the disk's or the machine's load hits both alike */
			result a = {0}, s = {0};
			for (int round = 0; round < rounds; round++) {
				result ra = {0}, rs = {0};
				if (do_amber)
					err |= bench_amber(&c, &ra);
				if (do_sqlite)
					err |= bench_sqlite(&c, &rs);
				result_add(&a, &ra, rounds);
				result_add(&s, &rs, rounds);
			}
			print_row(&c, &a, &s, markdown);
		}
	}
	if (baseline)
		print_baseline(dir, dur, markdown);
	return err ? 1 : 0;
}

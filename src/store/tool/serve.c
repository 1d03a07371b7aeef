/*
 * serve.c - `amber-store serve DIR [--load RATE] [--oracle FILE]
 *            [--threads N] [--duration SEC] [--seed N] [--quiet]
 *            [--socket PATH] [--no-writer] [--max-hold-ms N]
 *            [--latency-log FILE] [--no-stream] [--steady]`
 *
 * Opens the instance (recovering it if needed) and holds it open until
 * SIGTERM / SIGINT (or --duration), then shuts it down cleanly.  With --load
 * it runs a mail-delivery workload: mailboxes are tables "mbox000".."mbox063"
 * spread over the instance's databases, messages are values of 1 to 64 KiB,
 * every key is fresh, about one transaction in five also deletes one or two
 * messages whose delivery was acknowledged before it began.  With --steady
 * every transaction deletes as many acknowledged messages as it delivers
 * (as long as that many are left to delete): a mail store at steady state,
 * whose databases stop growing once their free pages are reused, so that a
 * benchmark's copies made minutes apart copy the same amount
 * (bench/backup_bench.sh).  Only as long as the engine takes every
 * transaction: the messages a refused one chose to delete (log files too
 * small for its record) are never chosen again, as the oracle allows one
 * delete per key.
 *
 * Unless --no-writer, the instance also takes part in backups as the amber
 * writer `amber-store` (serve_writer.c): the writer connects to amberd at
 * --socket (default $AMBER_SOCKET, else /run/amber/amberd.sock) and keeps
 * retrying in the background while amberd is not there; serving goes on
 * the same either way.
 *
 * Online restore (serve_writer.c): the writer's pre-restore closes the
 * instance through serve_inst (si_dismount: the workload's threads finish
 * the transactions they are in and are joined, a streaming backup gives the
 * instance back, then ams_close), and post-restore opens it again after
 * hard recovery (si_mount), resuming the same workload (same keys, delete
 * pool and seq) only when the restore rolled forward to the end.  serve
 * keeps running, and stays registered with amberd, while the instance is
 * closed; shutting down then has nothing to close.
 *
 * The oracle (design.md section 7): for every transaction, before the commit
 * is requested, one write(2) of
 *     begin <seq> <op> [<op> ...]\n
 * and after the commit returned success
 *     ack <seq>\n
 * op = put:<table>:<key>:<sha256 hex> | del:<table>:<key>.  seq continues
 * from the largest seq already in the file.  A line left torn by a killed
 * writer (no final '\n') is cut off when serve starts, so that the next line
 * does not glue onto it.
 *
 * The latency log (--latency-log FILE, for the freeze/hold benchmark): FILE
 * is truncated at start and written as text, one record per line, times in
 * nanoseconds of CLOCK_MONOTONIC (comparable within one boot):
 *     <start_ns> <end_ns>\n   one per successful commit: the call to and
 *                             the return from ams_txn_commit()
 *     hold <ns>\n             ams_freeze() stopped admitting commits (its
 *                             ams_info.frozen_since_us): from here commits
 *                             are held (the "first commit held")
 *     freeze <ns>\n           the writer's ams_freeze() returned
 *     thaw <ns>\n             the writer's ams_thaw() returned
 * freeze/thaw lines are appended when they happen; commit lines are kept in
 * per-thread memory (chunks of LAT_CHUNK entries, at most LAT_MAX_ENTRIES
 * in all, later commits are counted but not kept) and written when serve
 * shuts down, so lines are not in time order: sort by the first number.  A
 * killed serve leaves only the freeze/thaw lines.
 *
 * Unless --no-stream, serve also answers streaming (online) backups on
 * DIR/.amber-stream.sock (serve_stream.c, docs/stream.md).
 *
 * The workload is kept apart (wl_* functions) from the instance handling;
 * the writer is in serve_writer.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "amber/proto.h"
#include "amber/store.h"
#include "store/tool/serve_stream.h"
#include "store/tool/serve_writer.h"
#include "store/tool/tool.h"

#define WL_TABLES 64
#define WL_MAX_PUTS 4
#define WL_MAX_DELS 2 /* per transaction, without --steady */
#define WL_MIN_VALUE 1024
#define WL_MAX_VALUE 65536
#define WL_POOL_MAX (1u << 18) /* acknowledged keys kept as delete candidates */
#define WL_KEY_MAX 48
#define STATUS_EVERY_SEC 5
#define LAT_CHUNK 65536u           /* latency entries per allocation (1 MiB) */
#define LAT_MAX_ENTRIES (16u << 20) /* kept in all threads together (256 MiB) */

/* ---------------------------------------------------------------- PRNG */

/* xoshiro256** (public domain, Blackman & Vigna) */
typedef struct rng {
	uint64_t s[4];
} rng;

static uint64_t rotl64(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl64(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl64(s[3], 45);
	return result;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

/* uniform in [0, n) (n > 0; the tiny modulo bias does not matter here) */
static uint64_t rng_below(rng *r, uint64_t n)
{
	return rng_next(r) % n;
}

static void rng_fill(rng *r, unsigned char *buf, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v = rng_next(r);
		memcpy(buf + i, &v, 8);
	}
	if (i < len) {
		uint64_t v = rng_next(r);
		memcpy(buf + i, &v, len - i);
	}
}

static uint64_t random_u64(void)
{
	uint64_t v;
	if (getrandom(&v, sizeof(v), 0) == (ssize_t)sizeof(v))
		return v;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^
	       ((uint64_t)getpid() << 40);
}

/* ---------------------------------------------------------------- time */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
	struct timespec ts;
	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

/* ---------------------------------------------------------------- oracle */

/* Largest seq of a "begin" line in the oracle file at @p fd (opened O_RDWR).
 * A torn final line is cut off.  Returns 0 or -1 (message printed). */
static int oracle_scan(int fd, const char *path, uint64_t *max_seq)
{
	*max_seq = 0;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		fprintf(stderr, "amber-store serve: %s: %s\n", path, strerror(errno));
		return -1;
	}
	char buf[65536];
	char line[64]; /* only the start of a line matters */
	size_t llen = 0;
	off_t pos = 0, last_nl_end = 0;
	uint64_t lineno = 0;
	for (;;) {
		ssize_t n = pread(fd, buf, sizeof(buf), pos);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "amber-store serve: read %s: %s\n", path, strerror(errno));
			return -1;
		}
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (llen < sizeof(line) - 1)
					line[llen++] = buf[i];
				continue;
			}
			line[llen] = '\0';
			lineno++;
			if (strncmp(line, "begin ", 6) == 0) {
				char *end;
				errno = 0;
				uint64_t s = strtoull(line + 6, &end, 10);
				if (errno == 0 && end != line + 6 && s > *max_seq)
					*max_seq = s;
			}
			llen = 0;
			last_nl_end = pos + i + 1;
		}
		pos += n;
	}
	if (last_nl_end < pos) {
		fprintf(stderr,
		        "amber-store serve: %s: cutting off a torn last line (%lld bytes after line %" PRIu64
		        ")\n",
		        path, (long long)(pos - last_nl_end), lineno);
		if (ftruncate(fd, last_nl_end) != 0) {
			fprintf(stderr, "amber-store serve: truncate %s: %s\n", path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* One write(2) of the whole line (O_APPEND: lines of concurrent threads do
 * not interleave).  Returns 0 or -1. */
static int oracle_write(int fd, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, s, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* ---------------------------------------------------------------- workload */

typedef struct wl_key {
	uint8_t table;
	char key[WL_KEY_MAX];
} wl_key;

/* What cmd_serve's options ask of the workload. */
typedef struct wl_opts {
	double rate;        /* --load: transactions per second in total; 0 = unthrottled */
	int nthreads;       /* --threads */
	int oracle_fd;      /* --oracle, opened; -1 without */
	uint64_t seed;      /* --seed, or random */
	uint64_t first_seq; /* after the oracle's largest seq */
	bool latency;       /* --latency-log: keep every commit's latency */
	bool steady;        /* --steady: delete as many messages as are delivered */
} wl_opts;

typedef struct workload {
	ams_instance *inst;
	int ndatabases;
	size_t txn_budget; /* value bytes per transaction, so that a
	                    * transaction fits small log files */
	wl_opts o;
	uint64_t run_id;

	atomic_bool stop;
	atomic_bool fatal; /* the instance failed: exit 1 */
	atomic_uint_fast64_t next_seq;
	atomic_bool table_ready[WL_TABLES];

	/* acknowledged keys not yet deleted: delete candidates */
	pthread_mutex_t pool_lock;
	wl_key *pool;
	size_t pool_n;

	/* counters */
	atomic_uint_fast64_t commits, failures, puts, dels, bytes;

	/* latency log (see the top comment): on when o.latency */
	atomic_uint_fast64_t lat_reserved; /* entries of the chunks allocated */
	atomic_uint_fast64_t lat_dropped;  /* commits not kept (cap or memory) */

	pthread_t *threads;
	struct wl_thread *targs;
	int nalloc;   /* entries of targs */
	int nstarted; /* threads running (to join) */
	bool lock_init;
} workload;

/* Latency entries of one thread: a list of chunks, filled in order. */
typedef struct lat_chunk {
	struct lat_chunk *next;
	uint32_t n;
	uint64_t t[2 * LAT_CHUNK]; /* start, end, start, end, ... */
} lat_chunk;

typedef struct wl_thread {
	workload *wl;
	int idx;
	rng r;
	uint64_t counter;
	unsigned char *val;
	char *line;
	size_t line_cap;
	lat_chunk *lat_head, *lat_tail;
} wl_thread;

/* A new chunk if the cap allows (NULL otherwise or without memory). */
static lat_chunk *lat_chunk_new(workload *wl)
{
	uint64_t had = atomic_fetch_add(&wl->lat_reserved, LAT_CHUNK);
	if (had + LAT_CHUNK > LAT_MAX_ENTRIES) {
		atomic_fetch_sub(&wl->lat_reserved, LAT_CHUNK);
		return NULL;
	}
	lat_chunk *c = malloc(sizeof(*c));
	if (!c) {
		atomic_fetch_sub(&wl->lat_reserved, LAT_CHUNK);
		return NULL;
	}
	c->next = NULL;
	c->n = 0;
	return c;
}

static void lat_record(wl_thread *th, uint64_t start, uint64_t end)
{
	lat_chunk *c = th->lat_tail;
	if (!c || c->n == LAT_CHUNK) {
		lat_chunk *nc = lat_chunk_new(th->wl);
		if (!nc) {
			atomic_fetch_add(&th->wl->lat_dropped, 1);
			return;
		}
		if (c)
			c->next = nc;
		else
			th->lat_head = nc;
		th->lat_tail = c = nc;
	}
	c->t[2 * c->n] = start;
	c->t[2 * c->n + 1] = end;
	c->n++;
}

static void lat_free(wl_thread *th)
{
	lat_chunk *c = th->lat_head;
	while (c) {
		lat_chunk *next = c->next;
		free(c);
		c = next;
	}
	th->lat_head = th->lat_tail = NULL;
}

static void table_name(char *buf, size_t size, int t)
{
	snprintf(buf, size, "mbox%03d", t);
}

static void pool_add(workload *wl, const wl_key *k)
{
	pthread_mutex_lock(&wl->pool_lock);
	if (wl->pool_n < WL_POOL_MAX)
		wl->pool[wl->pool_n++] = *k;
	pthread_mutex_unlock(&wl->pool_lock);
}

/* Take a random acknowledged key out of the pool (each is deleted at most
 * once: it never goes back).  Returns false if the pool is empty. */
static bool pool_take(workload *wl, rng *r, wl_key *out)
{
	bool ok = false;
	pthread_mutex_lock(&wl->pool_lock);
	if (wl->pool_n > 0) {
		size_t i = (size_t)rng_below(r, wl->pool_n);
		*out = wl->pool[i];
		wl->pool[i] = wl->pool[--wl->pool_n];
		ok = true;
	}
	pthread_mutex_unlock(&wl->pool_lock);
	return ok;
}

static int line_append(wl_thread *th, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int line_append(wl_thread *th, size_t *len, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(th->line + *len, th->line_cap - *len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -1;
		if ((size_t)n < th->line_cap - *len) {
			*len += (size_t)n;
			return 0;
		}
		size_t cap = th->line_cap * 2 + (size_t)n;
		char *p = realloc(th->line, cap);
		if (!p)
			return -1;
		th->line = p;
		th->line_cap = cap;
	}
}

static void sha256_hex(const void *data, size_t len, char hex[65])
{
	unsigned char md[SHA256_DIGEST_SIZE];
	struct sha256_ctx c;
	sha256_init(&c);
	sha256_update(&c, len, data);
	sha256_digest(&c, sizeof(md), md);
	static const char digits[] = "0123456789abcdef";
	for (unsigned i = 0; i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[64] = '\0';
}

static size_t value_size(rng *r)
{
	/* roughly log-uniform over [1 KiB, 64 KiB): as many messages of 1-2 KiB
	 * as of 32-64 KiB */
	size_t base = (size_t)WL_MIN_VALUE << rng_below(r, 6);
	return base + (size_t)rng_below(r, base);
}

/* One transaction.  Returns 0 (committed or a non-fatal failure), -1 fatal
 * (instance failed or the oracle cannot be written). */
static int wl_one_txn(wl_thread *th)
{
	workload *wl = th->wl;
	rng *r = &th->r;
	char tname[16];
	wl_key puts[WL_MAX_PUTS], dels[WL_MAX_PUTS > WL_MAX_DELS ? WL_MAX_PUTS : WL_MAX_DELS];
	int ntables_new[WL_MAX_PUTS];
	int nput = 1 + (int)rng_below(r, WL_MAX_PUTS), ndel = 0, nnew = 0;
	uint64_t seq = atomic_fetch_add(&wl->next_seq, 1);
	size_t len = 0;
	ams_txn *txn = NULL;

	/* the values' sizes first: small log files cut the number of puts,
	 * and --steady deletes as many messages as are really delivered */
	size_t vlens[WL_MAX_PUTS], budget_used = 0;
	for (int i = 0; i < nput; i++) {
		if (i > 0 && wl->txn_budget - budget_used < WL_MIN_VALUE) {
			nput = i; /* small log files: fewer puts */
			break;
		}
		vlens[i] = value_size(r);
		if (vlens[i] > wl->txn_budget - budget_used)
			vlens[i] = wl->txn_budget - budget_used;
		budget_used += vlens[i];
	}

	int want = 0;
	if (wl->o.steady)
		want = nput;
	else if (rng_below(r, 5) == 0)
		want = 1 + (int)rng_below(r, WL_MAX_DELS);
	while (ndel < want && pool_take(wl, r, &dels[ndel]))
		ndel++;

	int rc = ams_txn_begin(wl->inst, &txn);
	if (rc != AMS_OK) {
		fprintf(stderr, "amber-store serve: begin transaction: %s: %s\n", ams_strerror(rc),
		        ams_errmsg());
		return rc == AMS_EFAILED || rc == AMS_EIO ? -1 : 0;
	}
	if (line_append(th, &len, "begin %" PRIu64, seq) != 0)
		goto nomem;

	for (int i = 0; i < nput; i++) {
		wl_key *k = &puts[i];
		k->table = (uint8_t)rng_below(r, WL_TABLES);
		snprintf(k->key, sizeof(k->key), "%016" PRIx64 "-%02d-%08" PRIu64, wl->run_id, th->idx,
		         th->counter++);
		table_name(tname, sizeof(tname), k->table);
		if (!atomic_load(&wl->table_ready[k->table])) {
			rc = ams_txn_create_table(txn, tname, k->table % wl->ndatabases);
			if (rc != AMS_OK)
				goto txn_error;
			ntables_new[nnew++] = k->table;
		}
		size_t vlen = vlens[i];
		rng_fill(r, th->val, vlen);
		char hex[65];
		sha256_hex(th->val, vlen, hex);
		rc = ams_txn_put(txn, tname, k->key, strlen(k->key), th->val, vlen);
		if (rc != AMS_OK)
			goto txn_error;
		if (line_append(th, &len, " put:%s:%s:%s", tname, k->key, hex) != 0)
			goto nomem;
		atomic_fetch_add(&wl->bytes, vlen);
	}
	for (int i = 0; i < ndel; i++) {
		table_name(tname, sizeof(tname), dels[i].table);
		rc = ams_txn_del(txn, tname, dels[i].key, strlen(dels[i].key));
		if (rc != AMS_OK)
			goto txn_error;
		if (line_append(th, &len, " del:%s:%s", tname, dels[i].key) != 0)
			goto nomem;
	}
	if (line_append(th, &len, "\n") != 0)
		goto nomem;

	if (wl->o.oracle_fd >= 0 && oracle_write(wl->o.oracle_fd, th->line, len) != 0) {
		fprintf(stderr, "amber-store serve: writing the oracle: %s\n", strerror(errno));
		ams_txn_abort(txn);
		return -1;
	}

	uint64_t t_commit = wl->o.latency ? now_ns() : 0;
	rc = ams_txn_commit(txn);
	txn = NULL;
	if (wl->o.latency && rc == AMS_OK)
		lat_record(th, t_commit, now_ns());
	if (rc != AMS_OK) {
		atomic_fetch_add(&wl->failures, 1);
		fprintf(stderr, "amber-store serve: commit of seq %" PRIu64 " failed: %s: %s\n", seq,
		        ams_strerror(rc), ams_errmsg());
		if (rc == AMS_EFAILED || rc == AMS_EIO)
			return -1;
		if (rc == AMS_EEXIST) {
			/* a mailbox exists in another database than ours (made by
			 * someone else): use it where it is from now on */
			for (int i = 0; i < nnew; i++)
				atomic_store(&wl->table_ready[ntables_new[i]], true);
		}
		return 0;
	}

	if (wl->o.oracle_fd >= 0) {
		len = 0;
		if (line_append(th, &len, "ack %" PRIu64 "\n", seq) != 0 ||
		    oracle_write(wl->o.oracle_fd, th->line, len) != 0) {
			fprintf(stderr, "amber-store serve: writing the oracle: %s\n", strerror(errno));
			return -1;
		}
	}
	for (int i = 0; i < nnew; i++)
		atomic_store(&wl->table_ready[ntables_new[i]], true);
	for (int i = 0; i < nput; i++)
		pool_add(wl, &puts[i]);
	atomic_fetch_add(&wl->commits, 1);
	atomic_fetch_add(&wl->puts, (uint64_t)nput);
	atomic_fetch_add(&wl->dels, (uint64_t)ndel);
	return 0;

txn_error:
	fprintf(stderr, "amber-store serve: building seq %" PRIu64 ": %s: %s\n", seq,
	        ams_strerror(rc), ams_errmsg());
	ams_txn_abort(txn);
	atomic_fetch_add(&wl->failures, 1);
	return rc == AMS_EFAILED || rc == AMS_EIO ? -1 : 0;
nomem:
	fprintf(stderr, "amber-store serve: out of memory\n");
	ams_txn_abort(txn);
	return -1;
}

/* sleep until @p t, waking every 100 ms to see whether the workload stops */
static void wl_sleep_until(workload *wl, double t)
{
	for (;;) {
		double now = now_sec();
		if (now >= t || atomic_load(&wl->stop))
			return;
		sleep_until(t - now > 0.1 ? now + 0.1 : t);
	}
}

static void *wl_thread_main(void *arg)
{
	wl_thread *th = arg;
	workload *wl = th->wl;
	double per_thread = wl->o.rate > 0 ? wl->o.rate / wl->o.nthreads : 0;
	double next = now_sec(), backoff = 0;
	if (wl->o.rate > 0) /* stagger the threads: no burst at the start */
		next += th->idx / wl->o.rate;

	while (!atomic_load(&wl->stop)) {
		if (per_thread > 0) {
			wl_sleep_until(wl, next);
			next += 1.0 / per_thread;
			double t = now_sec();
			if (next < t - 1.0) /* fell far behind: do not burst */
				next = t;
			if (atomic_load(&wl->stop))
				break;
		}
		uint64_t failures = atomic_load(&wl->failures);
		if (wl_one_txn(th) != 0) {
			atomic_store(&wl->fatal, true);
			atomic_store(&wl->stop, true);
			break;
		}
		if (atomic_load(&wl->failures) != failures) {
			/* failing without the instance being failed (no space, a
			 * refused transaction): back off instead of spinning */
			backoff = backoff > 0 ? backoff * 2 : 0.01;
			if (backoff > 1.0)
				backoff = 1.0;
			wl_sleep_until(wl, now_sec() + backoff);
		} else {
			backoff = 0;
		}
	}
	return NULL;
}

/* Stop the threads: each finishes the transaction it is in (its commit
 * returns, acknowledged or failed, and the oracle line is written), then
 * they are joined.  Everything else (keys, the delete pool, seq, counters)
 * is kept, so wl_spawn() can resume the same workload. */
static void wl_stop(workload *wl)
{
	atomic_store(&wl->stop, true);
	for (int i = 0; i < wl->nstarted; i++)
		pthread_join(wl->threads[i], NULL);
	wl->nstarted = 0;
}

/* Start (or resume after wl_stop()) the threads on wl->inst.  0 or -1. */
static int wl_spawn(workload *wl)
{
	atomic_store(&wl->stop, false);
	for (int i = 0; i < wl->nalloc; i++) {
		int e = pthread_create(&wl->threads[i], NULL, wl_thread_main, &wl->targs[i]);
		if (e != 0) {
			fprintf(stderr, "amber-store serve: pthread_create: %s\n", strerror(e));
			wl_stop(wl);
			return -1;
		}
		wl->nstarted = i + 1;
	}
	return 0;
}

static int wl_start(workload *wl, ams_instance *inst, const wl_opts *o)
{
	ams_info info;
	int rc = ams_info_get(inst, &info);
	if (rc != AMS_OK) {
		fprintf(stderr, "amber-store serve: %s: %s\n", ams_strerror(rc), ams_errmsg());
		return -1;
	}
	memset(wl, 0, sizeof(*wl));
	wl->inst = inst;
	wl->ndatabases = info.ndatabases > 0 ? info.ndatabases : 1;
	/* the engine refuses a transaction whose log record would not fit in
	 * two log files: keep well below one (no limit with the default 1 MiB) */
	wl->txn_budget = info.log_size ? (size_t)(info.log_size / 2) : (size_t)-1;
	if (wl->txn_budget < WL_MIN_VALUE)
		wl->txn_budget = WL_MIN_VALUE;
	wl->o = *o;
	/* keys stay unique across restarts, even with the same --seed */
	wl->run_id = random_u64();
	atomic_init(&wl->next_seq, o->first_seq);
	pthread_mutex_init(&wl->pool_lock, NULL);
	wl->lock_init = true;
	wl->pool = malloc(sizeof(wl_key) * WL_POOL_MAX);
	wl->threads = calloc((size_t)o->nthreads, sizeof(pthread_t));
	wl->targs = calloc((size_t)o->nthreads, sizeof(wl_thread));
	if (!wl->pool || !wl->threads || !wl->targs) {
		fprintf(stderr, "amber-store serve: out of memory\n");
		return -1;
	}
	wl->nalloc = o->nthreads;
	for (int i = 0; i < o->nthreads; i++) {
		wl_thread *th = &wl->targs[i];
		th->wl = wl;
		th->idx = i;
		rng_seed(&th->r, o->seed ^ ((uint64_t)(i + 1) * 0xd1b54a32d192ed03ULL));
		th->val = malloc(WL_MAX_VALUE);
		th->line_cap = 1024;
		th->line = malloc(th->line_cap);
		if (!th->val || !th->line) {
			fprintf(stderr, "amber-store serve: out of memory\n");
			return -1;
		}
		/* the first chunk before the clock starts: the hot path only
		 * allocates every LAT_CHUNK commits */
		if (o->latency && !(th->lat_head = th->lat_tail = lat_chunk_new(wl))) {
			fprintf(stderr, "amber-store serve: out of memory for the latency log\n");
			return -1;
		}
	}
	return wl_spawn(wl);
}


static void wl_free(workload *wl)
{
	if (wl->targs) {
		for (int i = 0; i < wl->nalloc; i++) {
			free(wl->targs[i].val);
			free(wl->targs[i].line);
			lat_free(&wl->targs[i]);
		}
	}
	free(wl->targs);
	free(wl->pool);
	free(wl->threads);
	if (wl->lock_init)
		pthread_mutex_destroy(&wl->pool_lock);
	memset(wl, 0, sizeof(*wl));
}

/* Append every kept commit as "<start_ns> <end_ns>\n" to @p fd (after
 * wl_stop()).  Returns 0 or -1 (message printed). */
static int wl_latency_write(workload *wl, int fd, const char *path)
{
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap);
	if (!buf) {
		fprintf(stderr, "amber-store serve: %s: out of memory\n", path);
		return -1;
	}
	int rc = 0;
	for (int i = 0; i < wl->nalloc && rc == 0; i++) {
		for (lat_chunk *c = wl->targs[i].lat_head; c && rc == 0; c = c->next) {
			for (uint32_t j = 0; j < c->n; j++) {
				if (cap - len < 64) {
					if (oracle_write(fd, buf, len) != 0) {
						rc = -1;
						break;
					}
					len = 0;
				}
				len += (size_t)snprintf(buf + len, cap - len,
				                        "%" PRIu64 " %" PRIu64 "\n", c->t[2 * j],
				                        c->t[2 * j + 1]);
			}
		}
	}
	if (rc == 0 && len > 0 && oracle_write(fd, buf, len) != 0)
		rc = -1;
	if (rc != 0)
		fprintf(stderr, "amber-store serve: writing %s: %s\n", path, strerror(errno));
	free(buf);
	uint64_t dropped = atomic_load(&wl->lat_dropped);
	if (dropped)
		fprintf(stderr,
		        "amber-store serve: %s: %" PRIu64 " commits not logged (the log keeps at "
		        "most %u)\n",
		        path, dropped, LAT_MAX_ENTRIES);
	return rc;
}

/* ---------------------------------------------------------------- instance */

/*
 * The open instance and the workload that uses it, shared by the main
 * thread (status lines, shutdown) and libamber's writer thread (the host
 * calls below, for an online restore).  mu guards inst and running, and is
 * held while either changes: the main thread never uses an instance that a
 * restore is closing.  Lock order: mu, then the engine's own locks.
 */
typedef struct serve_inst {
	pthread_mutex_t mu;
	const char *dir;
	ams_instance *inst; /* NULL while closed for a restore */
	workload *wl;
	bool load;          /* serve runs a workload (--load) */
	bool running;       /* its threads run on inst */
	bool quiet;
} serve_inst;

/* serve_host.dismount: stop the workload, then close the instance. */
static int si_dismount(void *arg, char *msg, size_t size)
{
	serve_inst *si = arg;
	int ret = 0;
	pthread_mutex_lock(&si->mu);
	if (si->running) {
		wl_stop(si->wl);
		si->running = false;
	}
	/* a streaming backup gives the instance back (and fails, retryable) */
	serve_instance_detach();
	if (si->inst) {
		int rc = ams_close(si->inst);
		si->inst = NULL;
		if (rc != AMS_OK) {
			snprintf(msg, size, "close: %s: %s", ams_strerror(rc), ams_errmsg());
			ret = -1;
		}
	}
	pthread_mutex_unlock(&si->mu);
	if (!si->quiet)
		fprintf(stderr, "amber-store serve: %s closed for a restore%s%s%s\n", si->dir,
		        si->load ? " (workload stopped)" : "", ret ? ": " : "", ret ? msg : "");
	return ret;
}

/* serve_host.mount: open the instance again, resume the workload if asked. */
static ams_instance *si_mount(void *arg, bool resume_load, char *msg, size_t size)
{
	serve_inst *si = arg;
	ams_instance *in = NULL;
	const char *note = "";
	pthread_mutex_lock(&si->mu);
	if (si->inst) {
		in = si->inst; /* already open */
		goto out;
	}
	int rc = ams_open(si->dir, NULL, &in);
	if (rc != AMS_OK) {
		snprintf(msg, size, "cannot open %s: %s: %s", si->dir, ams_strerror(rc), ams_errmsg());
		in = NULL;
		goto out;
	}
	si->inst = in;
	serve_instance_attach(in);
	if (!si->load)
		goto out;
	if (atomic_load(&si->wl->fatal)) {
		note = "workload not resumed: it stopped after a fatal error";
	} else if (!resume_load) {
		note = "workload not resumed: the restore did not roll forward to the end (roll_forward=no "
		       "or until set), so the store no longer holds what the workload knows; serving "
		       "without load";
	} else {
		si->wl->inst = in;
		if (wl_spawn(si->wl) == 0) {
			si->running = true;
			note = "workload resumed";
		} else {
			note = "workload not resumed: cannot start its threads";
		}
	}
	snprintf(msg, size, "%s", note);
out:
	pthread_mutex_unlock(&si->mu);
	if (in && !si->quiet)
		fprintf(stderr, "amber-store serve: %s open again%s%s\n", si->dir, note[0] ? "; " : "",
		        note);
	return in;
}

/* ---------------------------------------------------------------- command */

static void usage(void)
{
	fprintf(stderr, "usage: amber-store serve DIR [--load RATE] [--oracle FILE] [--threads N]\n"
	                "                         [--duration SEC] [--seed N] [--quiet]\n"
	                "                         [--socket PATH] [--no-writer] [--max-hold-ms N]\n"
	                "                         [--latency-log FILE] [--no-stream] [--steady]\n");
}

static int parse_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || v > 1e12)
		return -1;
	*out = v;
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (*s == '-' || *s == '\0')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		return -1;
	*out = v;
	return 0;
}

int cmd_serve(int argc, char **argv)
{
	const char *dir = NULL, *oracle = NULL, *socket = NULL, *latency_log = NULL;
	double rate = -1, duration = 0;
	uint64_t seed = 0, nthreads = 4, max_hold_ms = SERVE_WRITER_MAX_HOLD_MS;
	bool have_seed = false, quiet = false, no_writer = false, no_stream = false, steady = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--load") == 0 && v) {
			if (parse_double(v, &rate) != 0)
				goto bad_value;
			i++;
		} else if (strcmp(a, "--oracle") == 0 && v) {
			oracle = v;
			i++;
		} else if (strcmp(a, "--threads") == 0 && v) {
			if (parse_u64(v, &nthreads) != 0 || nthreads < 1 || nthreads > 256)
				goto bad_value;
			i++;
		} else if (strcmp(a, "--duration") == 0 && v) {
			if (parse_double(v, &duration) != 0)
				goto bad_value;
			i++;
		} else if (strcmp(a, "--seed") == 0 && v) {
			if (parse_u64(v, &seed) != 0)
				goto bad_value;
			have_seed = true;
			i++;
		} else if (strcmp(a, "--socket") == 0 && v) {
			if (*v == '\0')
				goto bad_value;
			socket = v;
			i++;
		} else if (strcmp(a, "--no-writer") == 0) {
			no_writer = true;
		} else if (strcmp(a, "--no-stream") == 0) {
			no_stream = true;
		} else if (strcmp(a, "--steady") == 0) {
			steady = true;
		} else if (strcmp(a, "--max-hold-ms") == 0 && v) {
			if (parse_u64(v, &max_hold_ms) != 0 || max_hold_ms < 1 ||
			    max_hold_ms > AMB_MAX_HOLD_MS)
				goto bad_value;
			i++;
		} else if (strcmp(a, "--latency-log") == 0 && v) {
			latency_log = v;
			i++;
		} else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
			quiet = true;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage();
			return EXIT_OK;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "amber-store serve: unknown option or missing value: %s\n", a);
			usage();
			return EXIT_USAGE;
		} else if (!dir) {
			dir = a;
		} else {
			fprintf(stderr, "amber-store serve: unexpected argument: %s\n", a);
			usage();
			return EXIT_USAGE;
		}
		continue;
	bad_value:
		fprintf(stderr, "amber-store serve: bad value for %s: %s\n", a, v);
		return EXIT_USAGE;
	}
	if (!dir) {
		usage();
		return EXIT_USAGE;
	}
	if (oracle && rate < 0)
		fprintf(stderr, "amber-store serve: --oracle without --load: nothing will be written\n");
	if (steady && rate < 0)
		fprintf(stderr, "amber-store serve: --steady without --load: nothing will be deleted\n");
	if (!have_seed)
		seed = random_u64();

	/* Signals are taken synchronously by the main thread; every other
	 * thread (ours, the engine's and libamber's) inherits the blocked mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	int status = EXIT_OK;
	int oracle_fd = -1, lat_fd = -1;
	uint64_t max_seq = 0;
	if (oracle && rate >= 0) {
		oracle_fd = open(oracle, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (oracle_fd < 0) {
			fprintf(stderr, "amber-store serve: %s: %s\n", oracle, strerror(errno));
			return EXIT_FAIL;
		}
		if (oracle_scan(oracle_fd, oracle, &max_seq) != 0) {
			status = EXIT_FAIL;
			goto out_close_fds;
		}
	}
	if (latency_log) {
		lat_fd = open(latency_log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
		if (lat_fd < 0) {
			fprintf(stderr, "amber-store serve: %s: %s\n", latency_log, strerror(errno));
			status = EXIT_FAIL;
			goto out_close_fds;
		}
	}

	workload wl;
	memset(&wl, 0, sizeof(wl));
	serve_inst si;
	memset(&si, 0, sizeof(si));
	pthread_mutex_init(&si.mu, NULL);
	si.dir = dir;
	si.wl = &wl;
	si.load = rate >= 0;
	si.quiet = quiet;
	int rc = ams_open(dir, NULL, &si.inst);
	if (rc != AMS_OK) {
		fprintf(stderr, "amber-store serve: cannot open %s: %s: %s\n", dir, ams_strerror(rc),
		        ams_errmsg());
		status = tool_exit_code(rc) == EXIT_RETRY ? EXIT_RETRY : EXIT_FAIL;
		goto out_destroy;
	}
	serve_instance_set(si.inst);

	bool started = false; /* the workload was set up (wl_free, latency log) */
	serve_writer *sw = NULL;
	serve_stream *ss = NULL;
	double start = now_sec(), last = start;
	uint64_t last_commits = 0;
	if (rate >= 0) {
		/* before the writer starts: nothing can close the instance yet */
		pthread_mutex_lock(&si.mu);
		wl_opts wlo = {
			.rate = rate,
			.nthreads = (int)nthreads,
			.oracle_fd = oracle_fd,
			.seed = seed,
			.first_seq = max_seq + 1,
			.latency = lat_fd >= 0,
			.steady = steady,
		};
		int wrc = wl_start(&wl, si.inst, &wlo);
		started = true;
		si.running = wrc == 0;
		pthread_mutex_unlock(&si.mu);
		if (wrc != 0) {
			status = EXIT_FAIL;
			goto out_stop;
		}
	}
	if (!no_writer) {
		serve_host host = {
			.arg = &si,
			.dismount = si_dismount,
			.mount = si_mount,
		};
		serve_writer_opts wo = {
			.socket = socket,
			.max_hold_ms = (uint32_t)max_hold_ms,
			.quiet = quiet,
			.latency_fd = lat_fd,
			.host = &host,
		};
		status = serve_writer_start(si.inst, dir, &wo, &sw);
		if (status != EXIT_OK)
			goto out_stop;
	}
	if (!no_stream) {
		status = serve_stream_start(dir, quiet, &ss);
		if (status != EXIT_OK)
			goto out_stop;
	}
	if (rate >= 0 && !quiet)
		fprintf(stderr,
		        "amber-store serve: %s open; load %g txn/s%s, %d threads, seed %" PRIu64
		        ", first seq %" PRIu64 "\n",
		        dir, rate, rate == 0 ? " (unthrottled)" : "", (int)nthreads, seed, max_seq + 1);
	else if (!quiet)
		fprintf(stderr, "amber-store serve: %s open; waiting for SIGTERM\n", dir);

	for (;;) {
		struct timespec tick = {0, 200 * 1000 * 1000};
		int sig = sigtimedwait(&sigs, NULL, &tick);
		if (sig > 0) {
			if (!quiet)
				fprintf(stderr, "amber-store serve: %s: shutting down\n", strsignal(sig));
			break;
		}
		if (started && atomic_load(&wl.fatal)) {
			fprintf(stderr, "amber-store serve: workload stopped after a fatal error\n");
			status = EXIT_FAIL;
			break;
		}
		double t = now_sec();
		if (duration > 0 && t - start >= duration)
			break;
		if (!quiet && started && t - last >= STATUS_EVERY_SEC) {
			uint64_t c = atomic_load(&wl.commits);
			ams_info info;
			memset(&info, 0, sizeof(info));
			pthread_mutex_lock(&si.mu);
			bool open = si.inst != NULL, running = si.running;
			if (open)
				ams_info_get(si.inst, &info);
			pthread_mutex_unlock(&si.mu);
			if (!open)
				fprintf(stderr, "amber-store serve: closed for a restore\n");
			else
				fprintf(stderr,
				        "amber-store serve: %.0f commits/s, %" PRIu64 " commits, %" PRIu64
				        " failed, %" PRIu64 " puts, %" PRIu64 " dels, %.1f MiB; group %.2f, "
				        "log gen %" PRIu32 " (checkpoint %" PRIu32 ")%s%s\n",
				        (double)(c - last_commits) / (t - last), c,
				        (uint64_t)atomic_load(&wl.failures), (uint64_t)atomic_load(&wl.puts),
				        (uint64_t)atomic_load(&wl.dels),
				        (double)atomic_load(&wl.bytes) / 1048576.0,
				        info.flushes ? (double)info.commits / (double)info.flushes : 0.0,
				        info.gen_current, info.gen_checkpoint,
				        info.frozen ? "; frozen for a backup" : "",
				        running ? "" : "; no load");
			last = t;
			last_commits = c;
		}
	}

out_stop:
	/* the writer first: it thaws a frozen instance, so that workload
	 * threads waiting in a commit can finish, and once it is stopped no
	 * restore can close or open the instance any more */
	serve_writer_stop(sw);
	sw = NULL;
	serve_stream_stop(ss);
	ss = NULL;
	pthread_mutex_lock(&si.mu);
	if (si.running)
		wl_stop(&wl);
	si.running = false;
	pthread_mutex_unlock(&si.mu);
	if (started && atomic_load(&wl.fatal))
		status = EXIT_FAIL;
	if (started && lat_fd >= 0 && wl_latency_write(&wl, lat_fd, latency_log) != 0)
		status = EXIT_FAIL;
	serve_instance_set(NULL);
	if (si.inst) {
		rc = ams_close(si.inst);
		si.inst = NULL;
		if (rc != AMS_OK) {
			fprintf(stderr, "amber-store serve: close: %s: %s\n", ams_strerror(rc),
			        ams_errmsg());
			status = EXIT_FAIL;
		}
	} else if (!quiet) {
		fprintf(stderr, "amber-store serve: %s was closed for a restore that did not finish: "
		        "nothing to close\n", dir);
	}
	if (started && !quiet)
		fprintf(stderr,
		        "amber-store serve: stopped: %" PRIu64 " commits, %" PRIu64 " failed in %.1f s\n",
		        (uint64_t)atomic_load(&wl.commits), (uint64_t)atomic_load(&wl.failures),
		        now_sec() - start);
	wl_free(&wl);
out_destroy:
	pthread_mutex_destroy(&si.mu);
out_close_fds:
	if (lat_fd >= 0 && close(lat_fd) != 0) {
		fprintf(stderr, "amber-store serve: closing %s: %s\n", latency_log, strerror(errno));
		status = EXIT_FAIL;
	}
	if (oracle_fd >= 0 && close(oracle_fd) != 0) {
		fprintf(stderr, "amber-store serve: closing the oracle: %s\n", strerror(errno));
		status = EXIT_FAIL;
	}
	return status;
}

/*
 * inspect.c - offline verification of database files and log directories
 * (see inspect.h).
 *
 * Speed of amb_db_check(): verifying an intact page costs one XXH3 pass,
 * about as much as the kernel's copy of the page out of the page cache.
 * So two threads each read and verify every other chunk of the file in
 * their own cache-sized buffer; the copies and the hashing overlap and the
 * check runs at about the speed of reading the file.  Nothing is allocated
 * and no system call is made per page.
 */
#include "store/inspect.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/checksum.h"
#include "common/parallel.h"
#include "store/dbfile.h"
#include "store/err.h"

/* The hash of checksum.h (it uses libxxhash's vector dispatch). */
static inline uint64_t page_hash(const unsigned char *p, uint32_t ps, uint64_t pgno)
{
	return amb_ck_hash(p, ps, pgno);
}

static uint16_t rd16(const unsigned char *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

static uint32_t rd32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint64_t rd64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* ---- one page ------------------------------------------------------------------ */

/* Check the cells of a verified data page; 0 or -1 with why set. */
static int data_layout(const unsigned char *pg, uint32_t ps, uint32_t ncells, char *why,
                       size_t wsz)
{
	uint32_t used = rd16(pg + sizeof(amb_blk));
	if (AMB_DATA_HDR + used > ps) {
		snprintf(why, wsz, "data page: its cells claim %u bytes, more than the page holds",
		         used);
		return -1;
	}
	if ((uint64_t)ncells * 12 > used) {
		snprintf(why, wsz, "data page: %u cells cannot fit in %u bytes", ncells, used);
		return -1;
	}
	uint32_t off = AMB_DATA_HDR, total = 0;
	for (uint32_t i = 0; i < ncells; i++) {
		if (off + 10 > AMB_DATA_HDR + used) {
			snprintf(why, wsz, "data page: cell %u of %u starts past the used area", i,
			         ncells);
			return -1;
		}
		const unsigned char *c = pg + off;
		uint32_t len = rd16(c), flags = c[2], tlen = c[3], klen = rd16(c + 4);
		uint32_t vlen = rd32(c + 6);
		int lng = (flags & AMB_CELL_LONG) != 0;
		if (flags & ~(uint32_t)AMB_CELL_LONG) {
			snprintf(why, wsz, "data page: cell %u has unknown flags 0x%02x", i, flags);
			return -1;
		}
		if (tlen < 1 || tlen > AMB_MAX_TABLE || klen < 1 || klen > AMB_MAX_KEY ||
		    vlen > AMB_MAX_VALUE) {
			snprintf(why, wsz,
			         "data page: cell %u has impossible lengths (table %u, key %u, value %u)",
			         i, tlen, klen, vlen);
			return -1;
		}
		uint64_t expect = (lng ? 18u : 10u) + tlen + klen + (lng ? 0u : (uint64_t)vlen);
		if (len != expect) {
			snprintf(why, wsz, "data page: cell %u is %u bytes but its contents need %llu", i,
			         len, (unsigned long long)expect);
			return -1;
		}
		if (off + len > AMB_DATA_HDR + used) {
			snprintf(why, wsz, "data page: cell %u runs past the used area", i);
			return -1;
		}
		if (lng) {
			uint32_t first = rd32(c + 10), count = rd32(c + 14);
			/* an empty long value (a long key made the cell long) has no chain */
			int empty_ok = vlen == 0 && first == 0 && count == 0;
			if (!empty_ok && (first < 2 || count == 0 ||
			                  (uint64_t)count * (ps - AMB_OVF_HDR) < vlen)) {
				snprintf(why, wsz,
				         "data page: cell %u has a bad overflow chain (first page %u, %u "
				         "pages for %u bytes)",
				         i, first, count, vlen);
				return -1;
			}
		}
		off += len;
		total += len;
	}
	if (total != used) {
		snprintf(why, wsz, "data page: its %u cells take %u bytes but the page says %u", ncells,
		         total, used);
		return -1;
	}
	return 0;
}

static int all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Why did the checksum of p fail?  scratch: page_size bytes. */
static void diagnose(const unsigned char *p, uint32_t ps, uint32_t pgno, unsigned char *scratch,
                     char *why, size_t wsz)
{
	if (all_zero(p, ps)) {
		snprintf(why, wsz, "page is all zero (never written)");
		return;
	}
	uint32_t no = rd32(p + 12);
	if (no != pgno) {
		memcpy(scratch, p, ps);
		if (amb_ck_verify(scratch, ps, no, NULL) != AMB_CK_DAMAGED) {
			snprintf(why, wsz, "page %u holds page %u (written at the wrong place)", pgno, no);
			return;
		}
	}
	snprintf(why, wsz, "checksum mismatch (damage beyond a single bit)");
}

/*
 * The check of one page.  p is not modified; when the page needed a
 * correction the corrected copy is in scratch.
 */
static int check_page(const unsigned char *p, uint32_t ps, uint32_t pgno, int hash_ok,
                      unsigned char *scratch, uint16_t *type, uint64_t *bit, char *why,
                      size_t wsz)
{
	const unsigned char *pg = p;
	int res = AMB_CK_OK;
	if (!hash_ok) {
		uint64_t b = 0;
		memcpy(scratch, p, ps);
		if (amb_ck_verify(scratch, ps, pgno, &b) == AMB_CK_DAMAGED) {
			diagnose(p, ps, pgno, scratch, why, wsz);
			return AMB_CK_DAMAGED;
		}
		res = AMB_CK_CORRECTED;
		*bit = b;
		pg = scratch;
	}
	uint32_t no = rd32(pg + 12), aux = rd32(pg + 28);
	uint16_t t = rd16(pg + 24);
	if (no != pgno) {
		snprintf(why, wsz, "page carries page number %u", no);
		return AMB_CK_DAMAGED;
	}
	if (pgno < 2 && t != AMB_BT_DBHDR) {
		snprintf(why, wsz, "header copy %u has page type %u", pgno, t);
		return AMB_CK_DAMAGED;
	}
	switch (t) {
	case AMB_BT_DBHDR:
		if (pgno >= 2) {
			snprintf(why, wsz, "a header page in the middle of the file");
			return AMB_CK_DAMAGED;
		}
		if (rd32(pg + sizeof(amb_blk)) != AMB_DB_MAGIC ||
		    rd32(pg + sizeof(amb_blk) + 8) != ps) {
			snprintf(why, wsz, "header copy %u has a bad magic or page size", pgno);
			return AMB_CK_DAMAGED;
		}
		break;
	case AMB_BT_FREE:
		break;
	case AMB_BT_DATA:
		if (data_layout(pg, ps, aux, why, wsz) < 0)
			return AMB_CK_DAMAGED;
		break;
	case AMB_BT_OVERFLOW: {
		uint32_t len = rd32(pg + sizeof(amb_blk));
		if (len > ps - AMB_OVF_HDR) {
			snprintf(why, wsz, "overflow page holds %u bytes, more than fit", len);
			return AMB_CK_DAMAGED;
		}
		if (aux == 1 || aux == pgno) {
			snprintf(why, wsz, "overflow page links to page %u", aux);
			return AMB_CK_DAMAGED;
		}
		break;
	}
	default:
		snprintf(why, wsz, "unknown page type %u", t);
		return AMB_CK_DAMAGED;
	}
	*type = t;
	return res;
}

int amb_page_check(const void *page, uint32_t page_size, uint32_t pgno, void *scratch,
                   uint16_t *type, uint64_t *bit, char *why, size_t why_size)
{
	uint16_t t = 0;
	uint64_t b = 0;
	char w[256] = "";
	int hok = page_hash(page, page_size, pgno) == rd64(page);
	int r = check_page(page, page_size, pgno, hok, scratch, &t, &b, w, sizeof(w));
	if (type)
		*type = t;
	if (bit)
		*bit = r == AMB_CK_CORRECTED ? b : 0;
	if (why && why_size)
		snprintf(why, why_size, "%s", r == AMB_CK_DAMAGED ? w : "");
	return r;
}

/* ---- chunks ------------------------------------------------------------------- */

/*
 * The file is cut into chunks of CHUNK bytes.  Two threads verify them:
 * this one takes the even chunks, a helper the odd ones.  Each reads its
 * chunk into its own buffer, small enough to stay in its core's cache, and
 * verifies it there, so no page crosses between cores and the copy out of
 * the page cache and the hashing overlap.  What is not simply intact (a
 * corrected or damaged page) is recorded in the chunk's result, and this
 * thread reports the results strictly in chunk order, so the callback sees
 * pages in order and always runs on the caller's thread.
 */
#define CHUNK (512u * 1024u) /* a multiple of every page size */
#define CHUNK_MAX_PAGES (CHUNK / 4096u + 1)
#define NSLOT 2              /* helper results in flight */

typedef struct page_exc {
	uint32_t pgno;
	int result; /* AMB_CK_CORRECTED or AMB_CK_DAMAGED */
	uint64_t bit;
	char why[200];
} page_exc;

typedef struct chunk_res {
	int state;    /* helper slots: 0 free, 1 ready */
	size_t len;   /* bytes read (short: end of file) */
	int err;      /* -errno of the read */
	uint64_t ok, corrected, damaged, header, free_pages, data, overflow;
	unsigned nexc;
	page_exc exc[CHUNK_MAX_PAGES];
} chunk_res;

typedef struct checker {
	amb_vfs *v;
	int fd;
	uint64_t size;   /* bytes to verify */
	uint32_t ps;
	/* helper thread */
	int threaded;
	int stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	chunk_res *slot[NSLOT];
} checker;

static size_t chunk_want(const checker *ck, uint64_t k)
{
	uint64_t off = k * CHUNK;
	if (off >= ck->size)
		return 0;
	return ck->size - off < CHUNK ? (size_t)(ck->size - off) : CHUNK;
}

static void add_exc(chunk_res *r, uint64_t pgno, int result, uint64_t bit, const char *why)
{
	if (result == AMB_CK_DAMAGED)
		r->damaged++;
	else
		r->corrected++;
	if (r->nexc >= CHUNK_MAX_PAGES)
		return; /* cannot happen: one entry per page at most */
	page_exc *e = &r->exc[r->nexc++];
	e->pgno = (uint32_t)pgno;
	e->result = result;
	e->bit = bit;
	snprintf(e->why, sizeof(e->why), "%s", why);
}

static void count_type(chunk_res *r, uint16_t t)
{
	switch (t) {
	case AMB_BT_DBHDR: r->header++; break;
	case AMB_BT_FREE: r->free_pages++; break;
	case AMB_BT_DATA: r->data++; break;
	case AMB_BT_OVERFLOW: r->overflow++; break;
	default: break;
	}
}

/* Read chunk k into buf and verify its pages into r. */
static void do_chunk(checker *ck, uint64_t k, unsigned char *buf, unsigned char *scratch,
                     chunk_res *r)
{
	const uint32_t ps = ck->ps;
	size_t want = chunk_want(ck, k);
	r->len = 0;
	r->err = 0;
	r->ok = r->corrected = r->damaged = 0;
	r->header = r->free_pages = r->data = r->overflow = 0;
	r->nexc = 0;
	ssize_t n = ck->v->pread(ck->v, ck->fd, buf, want, (off_t)(k * CHUNK));
	if (n < 0) {
		r->err = (int)n;
		return;
	}
	r->len = (size_t)n;
	size_t whole = r->len / ps * ps;
	uint64_t pgno = k * CHUNK / ps;
	char why[256];
	for (size_t off = 0; off < whole; off += ps, pgno++) {
		const unsigned char *p = buf + off;
		int hok = page_hash(p, ps, pgno) == rd64(p);
		/* the common case inline: an intact free page */
		if (hok && rd32(p + 12) == pgno && rd16(p + 24) == AMB_BT_FREE && pgno >= 2) {
			r->free_pages++;
			r->ok++;
			continue;
		}
		uint16_t t = 0;
		uint64_t bit = 0;
		why[0] = '\0';
		int res = check_page(p, ps, (uint32_t)pgno, hok, scratch, &t, &bit, why, sizeof(why));
		if (res == AMB_CK_OK) {
			r->ok++;
			count_type(r, t);
			continue;
		}
		if (res == AMB_CK_CORRECTED) {
			count_type(r, t);
			snprintf(why, sizeof(why), "bit %llu was corrupted and has been corrected",
			         (unsigned long long)bit);
		}
		add_exc(r, pgno, res, res == AMB_CK_CORRECTED ? bit : 0, why);
	}
	if (r->len > whole) {
		snprintf(why, sizeof(why), "page is truncated (the file ends %zu bytes into it)",
		         r->len - whole);
		add_exc(r, pgno, AMB_CK_DAMAGED, 0, why);
	}
}

static void *helper_main(void *arg)
{
	checker *ck = arg;
	unsigned char *buf = amb_io_alloc(CHUNK + ck->ps);
	unsigned char *scratch = buf ? buf + CHUNK : NULL;
	for (uint64_t k = 1;; k += 2) {
		size_t want = chunk_want(ck, k);
		if (want == 0)
			break;
		chunk_res *r = ck->slot[(k / 2) % NSLOT];
		pthread_mutex_lock(&ck->mu);
		while (r->state && !ck->stop)
			pthread_cond_wait(&ck->cv, &ck->mu);
		int stop = ck->stop;
		pthread_mutex_unlock(&ck->mu);
		if (stop)
			break;
		if (buf) {
			do_chunk(ck, k, buf, scratch, r);
		} else {
			r->len = 0;
			r->err = -ENOMEM;
		}
		pthread_mutex_lock(&ck->mu);
		r->state = 1;
		pthread_cond_broadcast(&ck->cv);
		pthread_mutex_unlock(&ck->mu);
		if (r->err || r->len < want)
			break;
	}
	free(buf);
	return NULL;
}

/* ---- database check ------------------------------------------------------------ */

static const uint32_t page_sizes[] = {4096, 8192, 32768};

/* Both header copies are damaged: find the page size from pages 2 and 3. */
static uint32_t guess_page_size(amb_vfs *v, int fd, unsigned char *buf, unsigned char *scratch)
{
	for (size_t i = 0; i < sizeof(page_sizes) / sizeof(page_sizes[0]); i++) {
		uint32_t ps = page_sizes[i];
		for (uint32_t pg = 2; pg < 4; pg++) {
			ssize_t n = v->pread(v, fd, buf, ps, (off_t)pg * ps);
			if (n != (ssize_t)ps)
				continue;
			memcpy(scratch, buf, ps);
			if (amb_ck_verify(scratch, ps, pg, NULL) != AMB_CK_DAMAGED)
				return ps;
		}
	}
	return 0;
}

typedef struct dbcheck {
	amb_db_check_report *rep;
	amb_page_cb on_page;
	void *arg;
	char first_why[256];
} dbcheck;

static void note_page(dbcheck *c, uint32_t pgno, int result, const char *why, uint64_t bit)
{
	if (result == AMB_CK_DAMAGED) {
		c->rep->damaged++;
		if (c->rep->first_damaged == UINT64_MAX) {
			c->rep->first_damaged = pgno;
			snprintf(c->first_why, sizeof(c->first_why), "%s", why);
		}
	} else {
		c->rep->corrected++;
	}
	if (c->on_page)
		c->on_page(c->arg, pgno, result, why, bit);
}

/* Fold a chunk's result into the report, calling back in page order. */
static void report_chunk(dbcheck *c, const chunk_res *r, uint32_t ps)
{
	amb_db_check_report *rep = c->rep;
	rep->pages += (r->len + ps - 1) / ps;
	rep->ok += r->ok;
	rep->header_pages += r->header;
	rep->free_pages += r->free_pages;
	rep->data_pages += r->data;
	rep->overflow_pages += r->overflow;
	for (unsigned i = 0; i < r->nexc; i++)
		note_page(c, r->exc[i].pgno, r->exc[i].result, r->exc[i].why, r->exc[i].bit);
}

static int checker_start(checker *ck)
{
	for (int i = 0; i < NSLOT; i++) {
		ck->slot[i] = calloc(1, sizeof(chunk_res));
		if (!ck->slot[i])
			return -1;
	}
	if (chunk_want(ck, 1) == 0)
		return 0; /* one chunk: no helper needed */
	pthread_mutex_init(&ck->mu, NULL);
	pthread_cond_init(&ck->cv, NULL);
	ck->threaded = pthread_create(&ck->th, NULL, helper_main, ck) == 0;
	if (!ck->threaded) {
		pthread_mutex_destroy(&ck->mu);
		pthread_cond_destroy(&ck->cv);
	}
	return 0;
}

static void checker_stop(checker *ck)
{
	if (ck->threaded) {
		pthread_mutex_lock(&ck->mu);
		ck->stop = 1;
		pthread_cond_broadcast(&ck->cv);
		pthread_mutex_unlock(&ck->mu);
		pthread_join(ck->th, NULL);
		pthread_mutex_destroy(&ck->mu);
		pthread_cond_destroy(&ck->cv);
		ck->threaded = 0;
	}
	for (int i = 0; i < NSLOT; i++) {
		free(ck->slot[i]);
		ck->slot[i] = NULL;
	}
}

int amb_db_check(amb_vfs *v, const char *path, amb_db_check_report *rep, amb_page_cb on_page,
                 void *arg)
{
	dbcheck c = {.rep = rep, .on_page = on_page, .arg = arg};
	memset(rep, 0, sizeof(*rep));
	rep->first_damaged = UINT64_MAX;

	int fd = v->open(v, path, O_RDONLY, 0);
	if (fd < 0) {
		if (fd == -ENOENT)
			return amb_err(AMS_ENOTFOUND, "%s: no such file", path);
		return amb_err(AMS_EIO, "%s: cannot open: %s", path, strerror(-fd));
	}
	off_t fsize = 0;
	int r = v->size(v, fd, &fsize);
	if (r < 0) {
		v->close(v, fd);
		return amb_err(AMS_EIO, "%s: cannot stat: %s", path, strerror(-r));
	}
	rep->file_size = (uint64_t)fsize;

	checker ck = {.v = v, .fd = fd, .size = rep->file_size};
	unsigned char *buf = NULL;
	chunk_res *mine = NULL;
	int rc = amb_dbhdr_load(v, fd, path, &rep->hdr, &rep->hdr_status);
	if (rc == 0) {
		rep->hdr_ok = 1;
		rep->page_size = rep->hdr.page_size;
	} else if (rc == AMS_ECORRUPT) {
		unsigned char *tmp = amb_io_alloc(2 * 32768);
		if (!tmp) {
			rc = amb_err(AMS_ENOMEM, "%s: out of memory", path);
			goto out;
		}
		rep->page_size = guess_page_size(v, fd, tmp + 32768, tmp);
		free(tmp);
		if (!rep->page_size) {
			rep->pages = 2;
			note_page(&c, 0, AMB_CK_DAMAGED, "header copy 0 is damaged", 0);
			note_page(&c, 1, AMB_CK_DAMAGED, "header copy 1 is damaged", 0);
			rc = amb_err(AMS_ECORRUPT,
			             "%s: both database header copies are damaged and no page verifies "
			             "under any page size",
			             path);
			goto out;
		}
	} else {
		goto out;
	}
	rc = 0;

	ck.ps = rep->page_size;
	buf = amb_io_alloc(CHUNK + ck.ps);
	mine = malloc(sizeof(*mine));
	if (!buf || !mine || checker_start(&ck) < 0) {
		rc = amb_err(AMS_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	for (uint64_t k = 0;; k++) {
		size_t want = chunk_want(&ck, k);
		if (want == 0)
			break;
		chunk_res *res;
		if (ck.threaded && (k & 1)) {
			res = ck.slot[(k / 2) % NSLOT];
			pthread_mutex_lock(&ck.mu);
			while (!res->state)
				pthread_cond_wait(&ck.cv, &ck.mu);
			pthread_mutex_unlock(&ck.mu);
		} else {
			res = mine;
			do_chunk(&ck, k, buf, buf + CHUNK, res);
		}
		int err = res->err;
		size_t len = res->len;
		if (!err)
			report_chunk(&c, res, ck.ps);
		if (res != mine) {
			pthread_mutex_lock(&ck.mu);
			res->state = 0;
			pthread_cond_broadcast(&ck.cv);
			pthread_mutex_unlock(&ck.mu);
		}
		if (err) {
			rc = amb_err(err == -ENOMEM ? AMS_ENOMEM : AMS_EIO,
			             "%s: read error at page %llu: %s", path,
			             (unsigned long long)(k * CHUNK / ck.ps), strerror(-err));
			break;
		}
		if (len < want)
			break; /* the file shrank while we read it */
	}

	if (rc == 0 && rep->hdr_ok && rep->hdr.page_count > rep->pages) {
		/* a partial last page was reported already */
		rep->missing_pages = rep->hdr.page_count - rep->pages;
		/* A clean database has every page it counts; a dirty one may lag
		 * behind its header until recovery replays the extension. */
		if (rep->hdr.state == AMB_DBSTATE_CLEAN || rep->hdr.state == AMB_DBSTATE_JUST_CREATED) {
			char why[200];
			snprintf(why, sizeof(why),
			         "missing: the file ends before page %llu but the header counts %u pages",
			         (unsigned long long)rep->pages, rep->hdr.page_count);
			note_page(&c, (uint32_t)rep->pages, AMB_CK_DAMAGED, why, 0);
		}
	}
	if (rc == 0 && rep->damaged) {
		rc = amb_err(AMS_ECORRUPT, "%s: %llu damaged page%s (first: page %llu: %s)", path,
		             (unsigned long long)rep->damaged, rep->damaged == 1 ? "" : "s",
		             (unsigned long long)rep->first_damaged, c.first_why);
	}
out:
	checker_stop(&ck);
	free(mine);
	free(buf);
	v->close(v, fd);
	return rc;
}

/* ---- log directories ------------------------------------------------------------ */

static int entry_cmp(const void *a, const void *b)
{
	const amb_logdir_entry *x = a, *y = b;
	if (x->gen != y->gen)
		return x->gen < y->gen ? -1 : 1;
	if (x->current != y->current)
		return x->current - y->current;
	return strcmp(x->name, y->name);
}

/* Scan one listed log (amb_logdir_list). */
static void scan_entry(amb_vfs *v, const char *dir, amb_logdir_entry *e)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, e->name) >= (int)sizeof(path)) {
		e->rc = AMS_EINVAL;
		snprintf(e->err, sizeof(e->err), "%s/%s: path too long", dir, e->name);
		return;
	}
	e->rc = amb_log_scan(v, path, &e->scan);
	if (e->rc == 0 && !e->scan.hdr_ok) {
		e->rc = AMS_ECORRUPT;
		snprintf(e->err, sizeof(e->err), "%.200s: the log header is damaged", path);
	} else if (e->rc) {
		snprintf(e->err, sizeof(e->err), "%s", ams_errmsg()); /* per thread (err.c) */
	}
	if (e->current && e->rc == 0)
		e->gen = e->scan.hdr.gen;
}

/* How many logs amb_logdir_list() scans at once.  A scan reads the whole
 * file and checks every segment: ~1 ms per 1 MiB log from the page cache
 * on the bench VM, most of it the copy into the buffer, so a backup's
 * verification of a few dozen logs is shorter on several cores. */
#define SCAN_PARALLEL 4

typedef struct scan_ctx {
	amb_vfs *v;
	const char *dir;
	amb_logdir_entry *list;
} scan_ctx;

static void scan_one(void *arg, size_t i)
{
	scan_ctx *c = arg;
	scan_entry(c->v, c->dir, &c->list[i]);
}

int amb_logdir_list(amb_vfs *v, const char *dir, const char *prefix, uint32_t from_gen,
                    amb_logdir_entry **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	char cur[32];
	snprintf(cur, sizeof(cur), "%s.log", prefix);
	DIR *d = opendir(dir);
	if (!d) {
		if (errno == ENOENT)
			return amb_err(AMS_ENOTFOUND, "%s: no such directory", dir);
		return amb_err(AMS_EIO, "%s: cannot list: %s", dir, strerror(errno));
	}
	amb_logdir_entry *list = NULL;
	size_t cnt = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		int current = strcmp(de->d_name, cur) == 0;
		uint32_t gen = 0;
		if (!current) {
			gen = amb_log_parse_name(de->d_name, prefix);
			if (gen == 0 || gen < from_gen)
				continue;
		}
		if (strlen(de->d_name) >= sizeof(list->name))
			continue;
		if (cnt == cap) {
			size_t nc = cap ? cap * 2 : 16;
			amb_logdir_entry *nl = realloc(list, nc * sizeof(*nl));
			if (!nl) {
				rc = amb_err(AMS_ENOMEM, "%s: out of memory", dir);
				break;
			}
			list = nl;
			cap = nc;
		}
		amb_logdir_entry *e = &list[cnt++];
		memset(e, 0, sizeof(*e));
		snprintf(e->name, sizeof(e->name), "%s", de->d_name);
		e->gen = gen;
		e->current = current;
	}
	closedir(d);
	if (rc) {
		free(list);
		return rc;
	}
	scan_ctx sc = {.v = v, .dir = dir, .list = list};
	amb_par_run(cnt, SCAN_PARALLEL, scan_one, &sc);
	if (cnt > 1)
		qsort(list, cnt, sizeof(*list), entry_cmp);
	*out = list;
	*n = cnt;
	return 0;
}

typedef struct logcheck {
	amb_logdir_report *rep;
	const amb_logdir_cb *cb;
	int rc;
	char first[1024];
} logcheck;

static void problem(logcheck *c, uint32_t gen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* rc 0 = a note, else an error with that code. */
static void problem(logcheck *c, uint32_t gen, int rc, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (rc) {
		c->rep->errors++;
		if (!c->rc) {
			c->rc = rc;
			snprintf(c->first, sizeof(c->first), "%s", msg);
		}
	} else {
		c->rep->warnings++;
	}
	if (c->cb && c->cb->on_problem)
		c->cb->on_problem(c->cb->arg, gen, rc != 0, msg);
}

/* The segment at which a scan's valid run stops. */
static uint32_t end_segment(const amb_logscan *s)
{
	return s->first_bad ? s->first_bad : s->valid_segs + 1;
}

int amb_logdir_check(amb_vfs *v, const char *dir, const char *prefix, uint32_t from_gen,
                     amb_logdir_report *rep, const amb_logdir_cb *cb)
{
	logcheck c = {.rep = rep, .cb = cb};
	memset(rep, 0, sizeof(*rep));
	amb_logdir_entry *list;
	size_t n;
	int rc = amb_logdir_list(v, dir, prefix, from_gen, &list, &n);
	if (rc)
		return rc;

	/* the current log whose generation is unknown stands apart */
	size_t first = 0;
	for (size_t i = 0; i < n; i++) {
		if (list[i].current)
			rep->has_current = 1;
		if (list[i].gen == 0) {
			if (cb && cb->on_log)
				cb->on_log(cb->arg, &list[i]);
			rep->nlogs++;
			problem(&c, 0, list[i].rc ? list[i].rc : AMS_ECORRUPT, "%s", list[i].err);
			first = i + 1;
		}
	}
	if (first == n) {
		if (from_gen)
			problem(&c, from_gen, AMS_ELOGMISSING,
			        "log generation 0x%08X (%s%08X.log), where the checkpoint starts, is "
			        "missing from %s",
			        from_gen, prefix, from_gen, dir);
		else if (n == 0)
			problem(&c, 0, AMS_ENOTFOUND, "%s: no log files %s*.log", dir, prefix);
		goto done;
	}
	if (from_gen && list[first].gen != from_gen)
		problem(&c, from_gen, AMS_ELOGMISSING,
		        "log generation 0x%08X (%s%08X.log), where the checkpoint starts, is missing",
		        from_gen, prefix, from_gen);

	rep->gen_first = list[first].gen;
	rep->gen_last = list[n - 1].gen;
	const amb_logdir_entry *sig_from = NULL;
	for (size_t i = first; i < n; i++) {
		const amb_logdir_entry *e = &list[i];
		const amb_logdir_entry *p = i > first ? &list[i - 1] : NULL;
		const amb_logscan *s = &e->scan;
		int usable = e->rc == 0;
		if (cb && cb->on_log)
			cb->on_log(cb->arg, e);
		rep->nlogs++;
		if (usable) {
			rep->bytes += ((uint64_t)s->nsegs + 1) * AMB_SEG_SIZE;
			rep->corrected += s->corrected;
		}

		/* position in the sequence */
		if (p && e->gen == p->gen) {
			problem(&c, e->gen, AMS_ECORRUPT, "log generation 0x%08X appears twice: %s and %s",
			        e->gen, p->name, e->name);
		} else if (p && e->gen != p->gen + 1) {
			uint32_t lo = p->gen + 1, hi = e->gen - 1;
			if (hi - lo < 8) {
				for (uint32_t g = lo; g <= hi; g++)
					problem(&c, g, AMS_ELOGMISSING,
					        "log generation 0x%08X (%s%08X.log) is missing", g, prefix, g);
			} else {
				problem(&c, lo, AMS_ELOGMISSING,
				        "log generations 0x%08X to 0x%08X (%s%08X.log to %s%08X.log, %u files) "
				        "are missing",
				        lo, hi, prefix, lo, prefix, hi, hi - lo + 1);
			}
		}
		if (e->current && i != n - 1)
			problem(&c, e->gen, AMS_ECORRUPT,
			        "the current log %s is generation 0x%08X but %s is newer", e->name, e->gen,
			        list[n - 1].name);

		if (!usable) {
			problem(&c, e->gen, e->rc, "%s", e->err);
			continue;
		}
		if (!e->current && s->hdr.gen != e->gen)
			problem(&c, e->gen, AMS_ECORRUPT,
			        "%s holds log generation 0x%08X, not the 0x%08X its name says", e->name,
			        s->hdr.gen, e->gen);
		if (s->damaged) {
			char why[160];
			problem(&c, e->gen, AMS_ECORRUPT, "log generation 0x%08X (%s) is %s", e->gen,
			        e->name, amb_logscan_damage(s, why, sizeof(why)));
		}
		if (!sig_from) {
			sig_from = e;
		} else if (!amb_sig_eq(&s->hdr.sign_log, &sig_from->scan.hdr.sign_log)) {
			problem(&c, e->gen, AMS_EBADSIG,
			        "log generation 0x%08X (%s) belongs to another log stream: its log "
			        "signature differs from that of %s",
			        e->gen, e->name, sig_from->name);
		}

		/* the link with the previous generation */
		if (p && p->rc == 0 && e->gen == p->gen + 1) {
			const amb_logscan *ps = &p->scan;
			if (s->hdr.prev_create_time != ps->hdr.create_time) {
				char a[64], b[64];
				amb_time_format(s->hdr.prev_create_time, a, sizeof(a));
				amb_time_format(ps->hdr.create_time, b, sizeof(b));
				problem(&c, e->gen, AMS_ECORRUPT,
				        "log generation 0x%08X (%s) does not follow %s: it names a previous "
				        "generation created %s, but %s was created %s",
				        e->gen, e->name, p->name, a, p->name, b);
			}
			if (ps->end_lsn < s->hdr.start_lsn && ps->damaged) {
				/* already reported as damaged in the middle */
			} else if (ps->end_lsn < s->hdr.start_lsn) {
				problem(&c, p->gen, AMS_ECORRUPT,
				        "log generation 0x%08X (%s) is damaged: its valid data ends at segment "
				        "%u (LSN %llu) but generation 0x%08X starts at LSN %llu",
				        p->gen, p->name, end_segment(ps), (unsigned long long)ps->end_lsn,
				        e->gen, (unsigned long long)s->hdr.start_lsn);
			} else if (ps->end_lsn > s->hdr.start_lsn) {
				/* recovery after a crash restarts the stream where the last
				 * complete record ended; replay ignores what lies past it */
				problem(&c, p->gen, 0,
				        "log generation 0x%08X (%s) holds data past LSN %llu where generation "
				        "0x%08X starts (the rest of a flush cut by a crash, superseded; nothing "
				        "committed is lost)",
				        p->gen, p->name, (unsigned long long)s->hdr.start_lsn, e->gen);
			} else if (ps->first_bad && !ps->damaged) {
				problem(&c, p->gen, 0,
				        "log generation 0x%08X (%s) ends in a torn write at segment %u (a flush "
				        "cut by a crash and never acknowledged; nothing committed is lost)",
				        p->gen, p->name, ps->first_bad);
			}
		}
		if (i == n - 1 && s->first_bad && !s->damaged) {
			rep->torn_tail = 1;
			problem(&c, e->gen, 0,
			        "log generation 0x%08X (%s) ends in a torn write at segment %u (normal "
			        "after a crash: that flush was never acknowledged)",
			        e->gen, e->name, s->first_bad);
		}
	}
done:
	free(list);
	if (c.rc)
		return amb_err(c.rc, "%s", c.first);
	return 0;
}

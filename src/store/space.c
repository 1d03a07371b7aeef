/*
 * space.c - what the engine keeps in memory about its databases: the page
 * cache (pages changed since the last checkpoint), the key index of every
 * table, free pages, and the cell layout of data pages (format.h).
 *
 * The key index is not stored on disk: amb_space_scan() rebuilds it when
 * the instance opens by reading every page once (which also verifies every
 * checksum).  That keeps the on-disk structure trivial (a heap of cells and
 * overflow chains) and recovery purely physical (page images).
 *
 * Callers hold ams_instance.rw (see instance.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "common/array.h"
#include "common/checksum.h"
#include "store/dbfile.h"
#include "store/err.h"
#include "store/instance.h"

/* ---- page cache ---- */

static size_t pg_slot(uint32_t pgno, size_t cap)
{
	return (size_t)(pgno * 2654435761u) & (cap - 1);
}

amb_page *amb_cache_get(amb_db *db, uint32_t pgno)
{
	if (!db->cache)
		return NULL;
	for (amb_page *p = db->cache[pg_slot(pgno, db->ccap)]; p; p = p->next)
		if (p->pgno == pgno)
			return p;
	return NULL;
}

static int cache_grow(amb_db *db)
{
	size_t ncap = db->ccap ? db->ccap * 2 : 1024;
	amb_page **n = calloc(ncap, sizeof(*n));
	if (!n)
		return AMS_ENOMEM;
	for (size_t i = 0; i < db->ccap; i++) {
		amb_page *p = db->cache[i];
		while (p) {
			amb_page *next = p->next;
			size_t s = pg_slot(p->pgno, ncap);
			p->next = n[s];
			n[s] = p;
			p = next;
		}
	}
	free(db->cache);
	db->cache = n;
	db->ccap = ncap;
	return 0;
}

amb_page *amb_cache_add(amb_db *db, uint32_t pgno, unsigned char *buf)
{
	if ((db->ccount + 1) * 4 > db->ccap * 3 && cache_grow(db))
		return NULL;
	amb_page *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->pgno = pgno;
	p->buf = buf;
	size_t s = pg_slot(pgno, db->ccap);
	p->next = db->cache[s];
	db->cache[s] = p;
	db->ccount++;
	return p;
}

void amb_cache_remove(amb_db *db, uint32_t pgno)
{
	if (!db->cache)
		return;
	amb_page **pp = &db->cache[pg_slot(pgno, db->ccap)];
	for (; *pp; pp = &(*pp)->next) {
		if ((*pp)->pgno == pgno) {
			amb_page *p = *pp;
			*pp = p->next;
			free(p->before);
			free(p->buf);
			free(p);
			db->ccount--;
			return;
		}
	}
}

void amb_cache_free_all(amb_db *db)
{
	for (size_t i = 0; i < db->ccap; i++) {
		amb_page *p = db->cache[i];
		while (p) {
			amb_page *next = p->next;
			free(p->before);
			free(p->buf);
			free(p);
			p = next;
		}
	}
	free(db->cache);
	db->cache = NULL;
	db->ccap = db->ccount = 0;
}

int amb_page_verify(ams_instance *in, amb_db *db, uint32_t pgno, void *buf)
{
	uint64_t bit = 0;
	amb_ck_result r = amb_ck_verify(buf, in->page_size, pgno, &bit);
	if (r == AMB_CK_DAMAGED) {
		__atomic_add_fetch(&in->n_damaged, 1, __ATOMIC_RELAXED);
		return amb_err(AMS_ECORRUPT, "%s: page %u failed verification (checksum mismatch)",
		               db->name, pgno);
	}
	amb_blk b;
	amb_blk_get(buf, &b);
	if (b.no != pgno) {
		__atomic_add_fetch(&in->n_damaged, 1, __ATOMIC_RELAXED);
		return amb_err(AMS_ECORRUPT, "%s: page %u holds page %u (written at the wrong place)",
		               db->name, pgno, b.no);
	}
	if (r == AMB_CK_CORRECTED)
		__atomic_add_fetch(&in->n_corrected, 1, __ATOMIC_RELAXED);
	return 0;
}

int amb_page_read(ams_instance *in, amb_db *db, uint32_t pgno, void *buf, uint64_t *lsn)
{
	amb_page *p = amb_cache_get(db, pgno);
	if (p) {
		memcpy(buf, p->buf, in->page_size);
		if (p->unsealed)
			amb_ck_seal(buf, in->page_size, pgno); /* a private copy */
		if (lsn)
			*lsn = p->lsn;
		return 0;
	}
	if (lsn)
		*lsn = 0;
	if (pgno < 2 || pgno >= db->npages)
		return amb_err(AMS_ECORRUPT, "%s: reference to page %u outside the database", db->name,
		               pgno);
	ssize_t n = in->vfs->pread(in->vfs, db->fd, buf, in->page_size, (off_t)pgno * in->page_size);
	if (n < 0)
		return amb_err(AMS_EIO, "%s: reading page %u: %s", db->name, pgno, strerror((int)-n));
	if ((size_t)n != in->page_size)
		return amb_err(AMS_ECORRUPT, "%s: page %u is beyond the end of the file", db->name, pgno);
	return amb_page_verify(in, db, pgno, buf);
}

/* ---- tables and keys ---- */

uint64_t amb_key_hash(const void *key, size_t klen)
{
	return XXH3_64bits(key, klen);
}

amb_table *amb_table_find(ams_instance *in, const char *name)
{
	for (size_t i = 0; i < in->ntables; i++)
		if (strcmp(in->tables[i]->name, name) == 0)
			return in->tables[i];
	return NULL;
}

amb_table *amb_table_add(ams_instance *in, const char *name, int db)
{
	if (amb_grow((void **)&in->tables, &in->captables, in->ntables + 1, sizeof(*in->tables), 16))
		return NULL;
	amb_table *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->db = db;
	in->tables[in->ntables++] = t;
	return t;
}

amb_kent *amb_key_find(amb_table *t, const void *key, size_t klen)
{
	if (!t->cap)
		return NULL;
	uint64_t h = amb_key_hash(key, klen);
	for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
		amb_kent *e = t->slots[i];
		if (!e)
			return NULL;
		if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
			return e;
	}
}

static void key_insert_slot(amb_kent **slots, size_t cap, amb_kent *e)
{
	size_t i = e->hash & (cap - 1);
	while (slots[i])
		i = (i + 1) & (cap - 1);
	slots[i] = e;
}

int amb_key_set(amb_table *t, const void *key, size_t klen, uint32_t pgno)
{
	amb_kent *e = amb_key_find(t, key, klen);
	if (e) {
		e->pgno = pgno;
		return 0;
	}
	if ((t->count + 1) * 4 > t->cap * 3) {
		size_t nc = t->cap ? t->cap * 2 : 64;
		amb_kent **n = calloc(nc, sizeof(*n));
		if (!n)
			return AMS_ENOMEM;
		for (size_t i = 0; i < t->cap; i++)
			if (t->slots[i])
				key_insert_slot(n, nc, t->slots[i]);
		free(t->slots);
		t->slots = n;
		t->cap = nc;
	}
	e = malloc(sizeof(*e) + klen);
	if (!e)
		return AMS_ENOMEM;
	e->hash = amb_key_hash(key, klen);
	e->pgno = pgno;
	e->klen = (uint16_t)klen;
	memcpy(e->key, key, klen);
	key_insert_slot(t->slots, t->cap, e);
	t->count++;
	return 0;
}

void amb_key_del(amb_table *t, const void *key, size_t klen)
{
	if (!t->cap)
		return;
	uint64_t h = amb_key_hash(key, klen);
	size_t i = h & (t->cap - 1);
	for (;; i = (i + 1) & (t->cap - 1)) {
		amb_kent *e = t->slots[i];
		if (!e)
			return;
		if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
			break;
	}
	free(t->slots[i]);
	t->slots[i] = NULL;
	t->count--;
	/* re-insert the rest of the probe run (backward-shift by re-insertion) */
	for (size_t j = (i + 1) & (t->cap - 1); t->slots[j]; j = (j + 1) & (t->cap - 1)) {
		amb_kent *e = t->slots[j];
		t->slots[j] = NULL;
		key_insert_slot(t->slots, t->cap, e);
	}
}

void amb_tables_free(ams_instance *in)
{
	for (size_t i = 0; i < in->ntables; i++) {
		amb_table *t = in->tables[i];
		for (size_t j = 0; j < t->cap; j++)
			free(t->slots[j]);
		free(t->slots);
		free(t);
	}
	free(in->tables);
	in->tables = NULL;
	in->ntables = in->captables = 0;
}

int amb_push_u32(uint32_t **arr, size_t *n, size_t *cap, uint32_t v)
{
	if (amb_grow((void **)arr, cap, *n + 1, sizeof(**arr), 64))
		return AMS_ENOMEM;
	(*arr)[(*n)++] = v;
	return 0;
}

/* ---- cells ---- */

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

int amb_cells_walk(const unsigned char *page, uint32_t page_size,
                   int (*fn)(void *arg, const amb_cell *c), void *arg)
{
	amb_blk b;
	amb_blk_get(page, &b);
	unsigned used = rd16(page + 32);
	if (AMB_DATA_HDR + used > page_size)
		return AMS_ECORRUPT;
	unsigned off = AMB_DATA_HDR, end = AMB_DATA_HDR + used;
	for (uint32_t i = 0; i < b.aux; i++) {
		amb_cell c;
		if (off + 10 > end)
			return AMS_ECORRUPT;
		c.off = off;
		c.len = rd16(page + off);
		c.flags = page[off + 2];
		c.tlen = page[off + 3];
		c.klen = rd16(page + off + 4);
		c.vlen = rd32(page + off + 6);
		unsigned hdr = (c.flags & AMB_CELL_LONG) ? 18 : 10;
		if (c.tlen == 0 || c.tlen > AMB_MAX_TABLE || c.klen == 0 || c.klen > AMB_MAX_KEY ||
		    c.vlen > AMB_MAX_VALUE || (c.flags & ~AMB_CELL_LONG) || c.len < hdr ||
		    off + c.len > end)
			return AMS_ECORRUPT;
		unsigned need = hdr + c.tlen + c.klen + ((c.flags & AMB_CELL_LONG) ? 0 : c.vlen);
		if (need != c.len)
			return AMS_ECORRUPT;
		if (c.flags & AMB_CELL_LONG) {
			c.first = rd32(page + off + 10);
			c.npages = rd32(page + off + 14);
			c.val = NULL;
		} else {
			c.first = c.npages = 0;
			c.val = page + off + hdr + c.tlen + c.klen;
		}
		c.table = (const char *)page + off + hdr;
		c.key = page + off + hdr + c.tlen;
		int rc = fn(arg, &c);
		if (rc)
			return rc;
		off += c.len;
	}
	if (off != end)
		return AMS_ECORRUPT;
	return 0;
}

struct find_arg {
	const char *table;
	size_t tlen;
	const void *key;
	size_t klen;
	amb_cell *out;
};

static int find_cb(void *arg, const amb_cell *c)
{
	struct find_arg *a = arg;
	if (c->tlen == a->tlen && c->klen == a->klen && memcmp(c->table, a->table, a->tlen) == 0 &&
	    memcmp(c->key, a->key, a->klen) == 0) {
		*a->out = *c;
		return 1;
	}
	return 0;
}

int amb_cell_find(const unsigned char *page, uint32_t page_size, const char *table,
                  const void *key, size_t klen, amb_cell *out)
{
	struct find_arg a = {table, strlen(table), key, klen, out};
	int rc = amb_cells_walk(page, page_size, find_cb, &a);
	if (rc == 1)
		return 0;
	if (rc == 0)
		return AMS_ENOTFOUND;
	return rc;
}

int amb_value_read(ams_instance *in, amb_db *db, const amb_cell *c, void **val, size_t *vlen,
                   uint64_t *maxlsn)
{
	unsigned char *out = malloc(c->vlen ? c->vlen : 1);
	if (!out)
		return amb_err(AMS_ENOMEM, "out of memory reading a %u-byte value", c->vlen);
	if (!(c->flags & AMB_CELL_LONG)) {
		memcpy(out, c->val, c->vlen);
		*val = out;
		*vlen = c->vlen;
		return 0;
	}
	unsigned char *pg = amb_io_alloc(in->page_size);
	if (!pg) {
		free(out);
		return amb_err(AMS_ENOMEM, "out of memory");
	}
	uint32_t pgno = c->first, done = 0, n = 0;
	int rc = 0;
	while (done < c->vlen) {
		uint64_t lsn = 0;
		if (pgno == 0 || ++n > c->npages) {
			rc = amb_err(AMS_ECORRUPT, "%s: overflow chain of a value is broken", db->name);
			break;
		}
		rc = amb_page_read(in, db, pgno, pg, &lsn);
		if (rc)
			break;
		if (lsn > *maxlsn)
			*maxlsn = lsn;
		amb_blk b;
		amb_blk_get(pg, &b);
		uint32_t len = rd32(pg + 32);
		if (b.type != AMB_BT_OVERFLOW || len > in->page_size - AMB_OVF_HDR ||
		    len > c->vlen - done) {
			rc = amb_err(AMS_ECORRUPT, "%s: page %u is not the overflow page expected", db->name,
			             pgno);
			break;
		}
		memcpy(out + done, pg + AMB_OVF_HDR, len);
		done += len;
		pgno = b.aux;
	}
	free(pg);
	if (rc) {
		free(out);
		return rc;
	}
	*val = out;
	*vlen = c->vlen;
	return 0;
}

/* ---- scan at open ---- */

struct scan_arg {
	ams_instance *in;
	int dbidx;
	uint32_t pgno;
	int rc;
};

static int scan_cell(void *arg, const amb_cell *c)
{
	struct scan_arg *a = arg;
	char name[AMB_MAX_TABLE + 1];
	memcpy(name, c->table, c->tlen);
	name[c->tlen] = '\0';
	amb_table *t = amb_table_find(a->in, name);
	if (!t) {
		t = amb_table_add(a->in, name, a->dbidx);
		if (!t)
			return AMS_ENOMEM;
	}
	if (amb_key_set(t, c->key, c->klen, a->pgno))
		return AMS_ENOMEM;
	/* the catalog names the database of every table */
	if (strcmp(name, "$tables") == 0 && !(c->flags & AMB_CELL_LONG) && c->vlen == 4 &&
	    c->klen <= AMB_MAX_TABLE) {
		char tn[AMB_MAX_TABLE + 1];
		memcpy(tn, c->key, c->klen);
		tn[c->klen] = '\0';
		uint32_t dbi = rd32(c->val);
		amb_table *tt = amb_table_find(a->in, tn);
		if (!tt)
			tt = amb_table_add(a->in, tn, (int)dbi);
		if (!tt)
			return AMS_ENOMEM;
		tt->db = (int)dbi;
	}
	return 0;
}

#define SCAN_CHUNK (4u << 20)

int amb_space_scan(ams_instance *in)
{
	uint32_t P = in->page_size;
	unsigned char *buf = amb_io_alloc(SCAN_CHUNK);
	if (!buf)
		return amb_err(AMS_ENOMEM, "out of memory");
	for (int d = 0; d < in->ndb; d++) {
		amb_db *db = &in->db[d];
		uint32_t per = SCAN_CHUNK / P;
		for (uint32_t first = 2; first < db->npages; first += per) {
			uint32_t cnt = db->npages - first < per ? db->npages - first : per;
			ssize_t n = in->vfs->pread(in->vfs, db->fd, buf, (size_t)cnt * P, (off_t)first * P);
			if (n < 0) {
				free(buf);
				return amb_err(AMS_EIO, "%s: read failed: %s", db->name, strerror((int)-n));
			}
			uint32_t got = (uint32_t)((size_t)n / P);
			for (uint32_t k = 0; k < cnt; k++) {
				uint32_t pgno = first + k;
				unsigned char *pg = buf + (size_t)k * P;
				if (k >= got || amb_page_verify(in, db, pgno, pg)) {
					/* unreadable: keep it out of every list; reads of its
					 * records fail, `check` names it */
					continue;
				}
				amb_blk b;
				amb_blk_get(pg, &b);
				if (b.stamp > db->stamp)
					db->stamp = b.stamp;
				if (b.type == AMB_BT_FREE) {
					if (amb_push_u32(&db->freel, &db->nfree, &db->capfree, pgno))
						goto nomem;
				} else if (b.type == AMB_BT_DATA) {
					struct scan_arg a = {in, d, pgno, 0};
					int rc = amb_cells_walk(pg, P, scan_cell, &a);
					if (rc == AMS_ENOMEM)
						goto nomem;
					if (rc) {
						__atomic_add_fetch(&in->n_damaged, 1, __ATOMIC_RELAXED);
						continue;
					}
					if (P - AMB_DATA_HDR - rd16(pg + 32) >= P / 2 &&
					    amb_push_u32(&db->roomy, &db->nroomy, &db->caproomy, pgno))
						goto nomem;
				}
			}
		}
		/* allocate low pages first: the free stack pops from the end */
		for (size_t i = 0, j = db->nfree; i < j / 2; i++) {
			uint32_t t = db->freel[i];
			db->freel[i] = db->freel[j - 1 - i];
			db->freel[j - 1 - i] = t;
		}
	}
	free(buf);
	return 0;
nomem:
	free(buf);
	return amb_err(AMS_ENOMEM, "out of memory building the index");
}

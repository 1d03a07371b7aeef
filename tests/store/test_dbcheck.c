/*
 * test_dbcheck.c - offline verification (store/inspect.c): amb_db_check()
 * on database files built by hand, and amb_logdir_check() on log streams
 * built by hand (format.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "amber/store.h"
#include "common/checksum.h"
#include "common/vfs.h"
#include "store/dbfile.h"
#include "store/format.h"
#include "store/inspect.h"
#include "store/log.h"

#define PS 8192u
#define NPAGES 8u

static char tmpdir[256];
static char dbpath[300];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/amber-test-dbcheck-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(dbpath, sizeof(dbpath), "%s/priv1.edb", tmpdir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void wr16(unsigned char *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static void wr32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/* Append a cell to a data page under construction; returns the new used. */
static uint16_t add_cell(unsigned char *pg, uint16_t used, const char *table, const char *key,
                         const char *val, int lng, uint32_t first, uint32_t count, uint32_t vlen)
{
	unsigned char *c = pg + AMB_DATA_HDR + used;
	size_t tl = strlen(table), kl = strlen(key);
	size_t hdr = lng ? 18 : 10;
	size_t vl = lng ? 0 : strlen(val);
	size_t len = hdr + tl + kl + vl;
	wr16(c, (uint16_t)len);
	c[2] = lng ? AMB_CELL_LONG : 0;
	c[3] = (unsigned char)tl;
	wr16(c + 4, (uint16_t)kl);
	wr32(c + 6, lng ? vlen : (uint32_t)vl);
	if (lng) {
		wr32(c + 10, first);
		wr32(c + 14, count);
	}
	memcpy(c + hdr, table, tl);
	memcpy(c + hdr + tl, key, kl);
	if (vl)
		memcpy(c + hdr + tl + kl, val, vl);
	return (uint16_t)(used + len);
}

/* Page 5: a data page with three cells, one of them long (value in page 6). */
static void make_data_page(unsigned char *pg, uint32_t pgno)
{
	memset(pg, 0, PS);
	uint16_t used = 0;
	used = add_cell(pg, used, "$tables", "mbox000", "1234", 0, 0, 0, 0);
	used = add_cell(pg, used, "mbox000", "msg-1", "hello world", 0, 0, 0, 0);
	used = add_cell(pg, used, "mbox000", "msg-2", NULL, 1, 6, 1, 5000);
	wr16(pg + 32, used);
	amb_blk b = {.no = pgno, .stamp = 40, .type = AMB_BT_DATA, .aux = 3};
	amb_blk_put(pg, &b);
	amb_ck_seal(pg, PS, pgno);
}

static void make_overflow_page(unsigned char *pg, uint32_t pgno)
{
	memset(pg, 0, PS);
	wr32(pg + 32, 5000);
	memset(pg + AMB_OVF_HDR, 'v', 5000);
	amb_blk b = {.no = pgno, .stamp = 40, .type = AMB_BT_OVERFLOW, .aux = 0};
	amb_blk_put(pg, &b);
	amb_ck_seal(pg, PS, pgno);
}

/* priv1.edb: header pages, free pages 2,3,4,7, data page 5, overflow 6. */
static void make_db(void)
{
	amb_vfs *v = amb_vfs_posix();
	int fd = v->open(v, dbpath, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	unsigned char *pg = malloc(PS);
	assert_non_null(pg);
	for (uint32_t n = 2; n < NPAGES; n++) {
		if (n == 5)
			make_data_page(pg, n);
		else if (n == 6)
			make_overflow_page(pg, n);
		else
			amb_page_format_free(pg, PS, n, 3);
		assert_int_equal(v->pwrite(v, fd, pg, PS, (off_t)n * PS), (ssize_t)PS);
	}
	free(pg);
	amb_dbhdr h;
	memset(&h, 0, sizeof(h));
	h.magic = AMB_DB_MAGIC;
	h.version = AMB_FORMAT_VERSION;
	h.page_size = PS;
	amb_sig_new(&h.sign_db);
	amb_sig_new(&h.sign_log);
	h.state = AMB_DBSTATE_CLEAN;
	h.page_count = NPAGES;
	h.last_stamp = 40;
	assert_int_equal(amb_dbhdr_store(v, fd, dbpath, &h), 0);
	v->close(v, fd);
}

typedef struct seen {
	int n;
	uint32_t pgno[32];
	int result[32];
	uint64_t bit[32];
	char why[32][256];
} seen;

static void on_page(void *arg, uint32_t pgno, int result, const char *why, uint64_t bit)
{
	seen *s = arg;
	assert_true(s->n < 32);
	s->pgno[s->n] = pgno;
	s->result[s->n] = result;
	s->bit[s->n] = bit;
	snprintf(s->why[s->n], sizeof(s->why[0]), "%s", why);
	s->n++;
}

static void flip(const char *path, off_t byte, int bit)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	unsigned char c;
	assert_int_equal(pread(fd, &c, 1, byte), 1);
	c ^= (unsigned char)(1u << bit);
	assert_int_equal(pwrite(fd, &c, 1, byte), 1);
	close(fd);
}

static void read_page(const char *path, uint32_t pgno, unsigned char *buf)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, PS, (off_t)pgno * PS), (ssize_t)PS);
	close(fd);
}

static void write_page(const char *path, uint32_t pgno, const unsigned char *buf)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, PS, (off_t)pgno * PS), (ssize_t)PS);
	close(fd);
}

static int run_check(amb_db_check_report *rep, seen *s)
{
	memset(s, 0, sizeof(*s));
	return amb_db_check(amb_vfs_posix(), dbpath, rep, on_page, s);
}

static void test_clean(void **state)
{
	(void)state;
	make_db();
	amb_db_check_report rep;
	seen s;
	assert_int_equal(run_check(&rep, &s), 0);
	assert_int_equal(s.n, 0);
	assert_true(rep.hdr_ok);
	assert_int_equal(rep.page_size, PS);
	assert_int_equal(rep.pages, NPAGES);
	assert_int_equal(rep.ok, NPAGES);
	assert_int_equal(rep.corrected, 0);
	assert_int_equal(rep.damaged, 0);
	assert_int_equal(rep.header_pages, 2);
	assert_int_equal(rep.free_pages, 4);
	assert_int_equal(rep.data_pages, 1);
	assert_int_equal(rep.overflow_pages, 1);
	assert_int_equal(rep.first_damaged, UINT64_MAX);
	assert_int_equal(rep.missing_pages, 0);
	/* no callback is fine too */
	assert_int_equal(amb_db_check(amb_vfs_posix(), dbpath, &rep, NULL, NULL), 0);
}

static void test_one_bit_corrected(void **state)
{
	(void)state;
	make_db();
	/* byte 3004 bit 0 of page 5 = bit 24032 of the page */
	flip(dbpath, 5 * PS + 3004, 0);
	amb_db_check_report rep;
	seen s;
	assert_int_equal(run_check(&rep, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.pgno[0], 5);
	assert_int_equal(s.result[0], AMB_CK_CORRECTED);
	assert_int_equal(s.bit[0], 24032);
	assert_non_null(strstr(s.why[0], "bit 24032 was corrupted and has been corrected"));
	assert_int_equal(rep.corrected, 1);
	assert_int_equal(rep.damaged, 0);
	assert_int_equal(rep.ok, NPAGES - 1);
	assert_int_equal(rep.data_pages, 1); /* still classified */

	/* the check never writes: the bit is still flipped */
	unsigned char pg[PS];
	read_page(dbpath, 5, pg);
	assert_int_equal(amb_ck_check(pg, PS, 5), AMB_CK_CORRECTED);

	/* a flipped bit in a free page and in a header copy too */
	flip(dbpath, 3 * PS + 40, 7);
	flip(dbpath, 1 * PS + 100, 2);
	assert_int_equal(run_check(&rep, &s), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.pgno[0], 1);
	assert_int_equal(s.bit[0], 802);
	assert_int_equal(s.pgno[1], 3);
	assert_int_equal(s.bit[1], 327);
	assert_int_equal(s.pgno[2], 5);
	assert_int_equal(rep.corrected, 3);
}

static void test_two_bits_damaged(void **state)
{
	(void)state;
	make_db();
	flip(dbpath, 5 * PS + 3004, 0);
	flip(dbpath, 5 * PS + 5000, 3);
	amb_db_check_report rep;
	seen s;
	assert_int_equal(run_check(&rep, &s), AMS_ECORRUPT);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.pgno[0], 5);
	assert_int_equal(s.result[0], AMB_CK_DAMAGED);
	assert_int_equal(rep.damaged, 1);
	assert_int_equal(rep.first_damaged, 5);
	assert_int_equal(rep.ok, NPAGES - 1);
	assert_non_null(strstr(ams_errmsg(), "page 5"));
	assert_non_null(strstr(ams_errmsg(), "priv1.edb"));

	/* two bits whose indices differ in one bit only (looks like an ECC flip) */
	make_db();
	flip(dbpath, 4 * PS + 1000, 0);
	flip(dbpath, 4 * PS + 1000, 1);
	assert_int_equal(run_check(&rep, &s), AMS_ECORRUPT);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.pgno[0], 4);
	assert_int_equal(s.result[0], AMB_CK_DAMAGED);
}

static void test_wrong_place(void **state)
{
	(void)state;
	make_db();
	unsigned char pg[PS];
	read_page(dbpath, 4, pg);
	write_page(dbpath, 7, pg); /* page 4's image at page 7 */
	amb_db_check_report rep;
	seen s;
	assert_int_equal(run_check(&rep, &s), AMS_ECORRUPT);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.pgno[0], 7);
	assert_int_equal(s.result[0], AMB_CK_DAMAGED);
	assert_non_null(strstr(s.why[0], "page 7 holds page 4"));

	/* a page sealed for its place but carrying another number */
	make_db();
	amb_page_format_free(pg, PS, 3, 1);
	amb_blk b;
	amb_blk_get(pg, &b);
	b.no = 9;
	amb_blk_put(pg, &b);
	amb_ck_seal(pg, PS, 3);
	write_page(dbpath, 3, pg);
	assert_int_equal(run_check(&rep, &s), AMS_ECORRUPT);
	assert_int_equal(s.pgno[0], 3);
	assert_non_null(strstr(s.why[0], "page number 9"));
}

static void test_truncated(void **state)
{
	(void)state;
	make_db();
	assert_int_equal(truncate(dbpath, 7 * PS + 100), 0);
	amb_db_check_report rep;
	seen s;
	assert_int_equal(run_check(&rep, &s), AMS_ECORRUPT);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.pgno[0], 7);
	assert_non_null(strstr(s.why[0], "truncated"));
	assert_int_equal(rep.pages, 8);
	assert_int_equal(rep.ok, 7);

	/* cut at a page boundary: the clean header counts pages that are gone */
	assert_int_equal(truncate(dbpath, 6 * PS), 0);
	assert_int_equal(run_check(&rep, &s), AMS_ECORRUPT);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.pgno[0], 6);
	assert_non_null(strstr(s.why[0], "missing"));
	assert_int_equal(rep.missing_pages, 2);

	/* cut inside the header: not a database any more */
	assert_int_equal(truncate(dbpath, 1000), 0);
	assert_int_equal(run_check(&rep, &s), AMS_ENOTDB);
	assert_int_equal(truncate(dbpath, 0), 0);
	assert_int_equal(run_check(&rep, &s), AMS_ENOTDB);
}

static void test_zero_and_bad_layout(void **state)
{
	(void)state;
	make_db();
	unsigned char pg[PS];
	memset(pg, 0, PS);
	write_page(dbpath, 2, pg);
	/* data page whose cell count does not match its cells, sealed */
	make_data_page(pg, 5);
	amb_blk b;
	amb_blk_get(pg, &b);
	b.aux = 4;
	amb_blk_put(pg, &b);
	amb_ck_seal(pg, PS, 5);
	write_page(dbpath, 5, pg);
	/* unknown type at page 7 */
	amb_page_format_free(pg, PS, 7, 1);
	amb_blk_get(pg, &b);
	b.type = 42;
	amb_blk_put(pg, &b);
	amb_ck_seal(pg, PS, 7);
	write_page(dbpath, 7, pg);

	amb_db_check_report rep;
	seen s;
	assert_int_equal(run_check(&rep, &s), AMS_ECORRUPT);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.pgno[0], 2);
	assert_non_null(strstr(s.why[0], "all zero"));
	assert_int_equal(s.pgno[1], 5);
	assert_non_null(strstr(s.why[1], "cell"));
	assert_int_equal(s.pgno[2], 7);
	assert_non_null(strstr(s.why[2], "type 42"));
	assert_int_equal(rep.damaged, 3);
	assert_int_equal(rep.first_damaged, 2);
}

static void test_cell_checks(void **state)
{
	(void)state;
	unsigned char pg[PS], scratch[PS];
	char why[256];
	uint16_t type;
	uint64_t bit;
	make_data_page(pg, 5);
	assert_int_equal(amb_page_check(pg, PS, 5, scratch, &type, &bit, why, sizeof(why)),
	                 AMB_CK_OK);
	assert_int_equal(type, AMB_BT_DATA);

	/* each corruption of the layout, sealed so only the layout check sees it */
	struct {
		size_t off;
		unsigned char val;
		const char *what;
	} muts[] = {
		{AMB_DATA_HDR + 0, 0x7F, "cell"},    /* first cell length */
		{AMB_DATA_HDR + 2, 0x04, "flags"},   /* unknown flag */
		{AMB_DATA_HDR + 3, 0, "lengths"},    /* empty table name */
		{AMB_DATA_HDR + 3, 65, "lengths"},   /* table name too long */
		{32, 0xFF, "cells"},                 /* used */
		{33, 0x7F, "claim"},                 /* used beyond the page */
	};
	for (size_t i = 0; i < sizeof(muts) / sizeof(muts[0]); i++) {
		make_data_page(pg, 5);
		pg[muts[i].off] = muts[i].val;
		amb_ck_seal(pg, PS, 5);
		int r = amb_page_check(pg, PS, 5, scratch, &type, &bit, why, sizeof(why));
		if (r != AMB_CK_DAMAGED || !strstr(why, muts[i].what))
			fail_msg("mutation %zu: result %d, why '%s'", i, r, why);
	}
	/* a long cell with an impossible overflow chain */
	memset(pg, 0, PS);
	uint16_t used = add_cell(pg, 0, "t", "k", NULL, 1, 6, 1, 100000);
	wr16(pg + 32, used);
	amb_blk b = {.no = 5, .type = AMB_BT_DATA, .aux = 1};
	amb_blk_put(pg, &b);
	amb_ck_seal(pg, PS, 5);
	assert_int_equal(amb_page_check(pg, PS, 5, scratch, &type, &bit, why, sizeof(why)),
	                 AMB_CK_DAMAGED);
	assert_non_null(strstr(why, "overflow"));
	/* a long cell with an empty value has no chain: fine */
	memset(pg, 0, PS);
	used = add_cell(pg, 0, "t", "k", NULL, 1, 0, 0, 0);
	wr16(pg + 32, used);
	amb_blk_put(pg, &b);
	amb_ck_seal(pg, PS, 5);
	assert_int_equal(amb_page_check(pg, PS, 5, scratch, &type, &bit, why, sizeof(why)),
	                 AMB_CK_OK);
	/* overflow page: too much data, self link */
	make_overflow_page(pg, 6);
	wr32(pg + 32, PS);
	amb_ck_seal(pg, PS, 6);
	assert_int_equal(amb_page_check(pg, PS, 6, scratch, &type, &bit, why, sizeof(why)),
	                 AMB_CK_DAMAGED);
	make_overflow_page(pg, 6);
	amb_blk_get(pg, &b);
	b.aux = 6;
	amb_blk_put(pg, &b);
	amb_ck_seal(pg, PS, 6);
	assert_int_equal(amb_page_check(pg, PS, 6, scratch, &type, &bit, why, sizeof(why)),
	                 AMB_CK_DAMAGED);
	/* a header page where a data page belongs, and a free page at page 0 */
	amb_page_format_free(pg, PS, 0, 1);
	assert_int_equal(amb_page_check(pg, PS, 0, scratch, &type, &bit, why, sizeof(why)),
	                 AMB_CK_DAMAGED);
	/* amb_page_check does not modify the page, even when correcting */
	make_data_page(pg, 5);
	pg[100] ^= 0x10;
	unsigned char copy[PS];
	memcpy(copy, pg, PS);
	assert_int_equal(amb_page_check(pg, PS, 5, scratch, &type, &bit, why, sizeof(why)),
	                 AMB_CK_CORRECTED);
	assert_int_equal(bit, 804);
	assert_memory_equal(pg, copy, PS);
}

static void test_headers_damaged(void **state)
{
	(void)state;
	make_db();
	for (int i = 0; i < 8; i++) {
		flip(dbpath, 200 + i, 1);
		flip(dbpath, PS + 300 + i, 1);
	}
	amb_db_check_report rep;
	seen s;
	assert_int_equal(run_check(&rep, &s), AMS_ECORRUPT);
	assert_false(rep.hdr_ok);
	assert_int_equal(rep.page_size, PS); /* guessed from the other pages */
	assert_int_equal(rep.pages, NPAGES);
	assert_int_equal(rep.damaged, 2);
	assert_int_equal(s.pgno[0], 0);
	assert_int_equal(s.pgno[1], 1);
	assert_int_equal(rep.ok, NPAGES - 2);

	/* one copy damaged: check fails on it, but knows everything */
	make_db();
	for (int i = 0; i < 8; i++)
		flip(dbpath, 200 + i, 1);
	assert_int_equal(run_check(&rep, &s), AMS_ECORRUPT);
	assert_true(rep.hdr_ok);
	assert_int_equal(rep.damaged, 1);
	assert_int_equal(s.pgno[0], 0);
}

static void test_not_db(void **state)
{
	(void)state;
	amb_db_check_report rep;
	seen s;
	FILE *f = fopen(dbpath, "w");
	assert_non_null(f);
	for (int i = 0; i < 5000; i++)
		fputs("not a database at all\n", f);
	fclose(f);
	assert_int_equal(run_check(&rep, &s), AMS_ENOTDB);
	unlink(dbpath);
	assert_int_equal(run_check(&rep, &s), AMS_ENOTFOUND);
}

static void test_many_pages(void **state)
{
	(void)state;
	/* several chunks of the reader, with damage in the second chunk */
	amb_vfs *v = amb_vfs_posix();
	const uint32_t n = 600; /* 600 * 8 KiB = 4.7 chunks of 1 MiB */
	int fd = v->open(v, dbpath, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	unsigned char *buf = malloc((size_t)n * PS);
	assert_non_null(buf);
	for (uint32_t p = 2; p < n; p++)
		amb_page_format_free(buf + (size_t)p * PS, PS, p, p);
	assert_int_equal(v->pwrite(v, fd, buf + 2 * PS, (size_t)(n - 2) * PS, 2 * PS),
	                 (ssize_t)((n - 2) * PS));
	free(buf);
	amb_dbhdr h;
	memset(&h, 0, sizeof(h));
	h.magic = AMB_DB_MAGIC;
	h.version = AMB_FORMAT_VERSION;
	h.page_size = PS;
	h.state = AMB_DBSTATE_DIRTY;
	h.page_count = n + 10; /* a dirty header may count more: not damage */
	assert_int_equal(amb_dbhdr_store(v, fd, dbpath, &h), 0);
	v->close(v, fd);
	/* damage spread over chunks verified by both threads */
	flip(dbpath, (off_t)10 * PS + 100, 0);   /* corrected */
	flip(dbpath, (off_t)70 * PS + 64, 0);    /* damaged */
	flip(dbpath, (off_t)70 * PS + 65, 0);
	flip(dbpath, (off_t)130 * PS + 64, 0);   /* damaged */
	flip(dbpath, (off_t)130 * PS + 66, 0);
	flip(dbpath, (off_t)200 * PS + 64, 0);   /* damaged */
	flip(dbpath, (off_t)200 * PS + 65, 0);
	flip(dbpath, (off_t)599 * PS + 4000, 4); /* corrected */
	amb_db_check_report rep;
	seen s;
	assert_int_equal(run_check(&rep, &s), AMS_ECORRUPT);
	assert_int_equal(rep.pages, n);
	assert_int_equal(rep.damaged, 3);
	assert_int_equal(rep.corrected, 2);
	assert_int_equal(rep.ok, n - 5);
	assert_int_equal(rep.free_pages, n - 2 - 3); /* damaged pages are not counted */
	assert_int_equal(rep.missing_pages, 10);
	assert_int_equal(rep.first_damaged, 70);
	static const uint32_t want[] = {10, 70, 130, 200, 599};
	assert_int_equal(s.n, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(s.pgno[i], want[i]);
	assert_int_equal(s.bit[0], 800);
	assert_int_equal(s.bit[4], 32004);
	/* a larger file, checked twice: the result does not depend on timing */
	amb_db_check_report rep2;
	assert_int_equal(amb_db_check(amb_vfs_posix(), dbpath, &rep2, NULL, NULL), AMS_ECORRUPT);
	assert_int_equal(rep2.damaged, 3);
	assert_int_equal(rep2.corrected, 2);
}

/* ---- log directories ----------------------------------------------------------- */

#define LOG_SEGS 16u /* data segments per file */
#define USED 100u

typedef struct loginfo {
	uint32_t gen;
	uint64_t start_lsn;
	uint64_t create;
	uint64_t prev_create;
	uint32_t valid; /* data segments written */
	amb_sig sig;
} loginfo;

static void seal_seg(unsigned char *seg, uint32_t gen, uint32_t i, uint64_t lsn)
{
	memset(seg, 0, AMB_SEG_SIZE);
	amb_blk b = {.no = i, .stamp = lsn, .type = AMB_BT_LOGSEG, .aux = gen};
	amb_blk_put(seg, &b);
	wr32(seg + 32, i); /* a flush of one segment */
	wr16(seg + 36, 1);
	wr16(seg + 38, USED);
	wr32(seg + 40, 0);
	memset(seg + AMB_SEG_HDR, (int)(i & 0xFF), USED);
	amb_ck_seal(seg, AMB_SEG_SIZE, amb_seg_seed(gen, i));
}

static void write_log(const char *name, const loginfo *li)
{
	size_t size = (size_t)(LOG_SEGS + 1) * AMB_SEG_SIZE;
	unsigned char *f = calloc(1, size);
	assert_non_null(f);
	amb_loghdr h;
	memset(&h, 0, sizeof(h));
	h.magic = AMB_LOG_MAGIC;
	h.version = AMB_FORMAT_VERSION;
	h.gen = li->gen;
	h.seg_size = AMB_SEG_SIZE;
	h.file_size = size;
	h.sign_log = li->sig;
	h.create_time = li->create;
	h.prev_create_time = li->prev_create;
	h.start_lsn = li->start_lsn;
	h.page_size = PS;
	h.ndbs = 1;
	snprintf(h.prefix, sizeof(h.prefix), "E00");
	amb_blk b = {.no = 0, .type = AMB_BT_LOGHDR};
	amb_blk_put(f, &b);
	memcpy(f + 32, &h, sizeof(h));
	amb_ck_seal(f, AMB_SEG_SIZE, 0);
	for (uint32_t i = 1; i <= li->valid; i++)
		seal_seg(f + (size_t)i * AMB_SEG_SIZE, li->gen, i,
		         li->start_lsn + (uint64_t)(i - 1) * USED);
	char path[400];
	snprintf(path, sizeof(path), "%s/logs/%s", tmpdir, name);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(f, 1, size, fp), size);
	fclose(fp);
	free(f);
}

static amb_sig stream_sig;

/* Generations 1..4: 1-3 archived (closed, 10 segments each), 4 current. */
static void make_logs(loginfo li[4])
{
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s/logs' && mkdir '%s/logs'", tmpdir, tmpdir);
	assert_int_equal(system(cmd), 0);
	amb_sig_new(&stream_sig);
	uint64_t lsn = 0, prev = 0;
	for (uint32_t g = 1; g <= 4; g++) {
		loginfo *l = &li[g - 1];
		l->gen = g;
		l->start_lsn = lsn;
		l->create = 1795341600000000ull + g * 1000000ull;
		l->prev_create = prev;
		l->valid = g < 4 ? 10 : 3;
		l->sig = stream_sig;
		lsn += (uint64_t)l->valid * USED;
		prev = l->create;
	}
	for (int i = 0; i < 4; i++) {
		char name[32];
		if (i < 3)
			snprintf(name, sizeof(name), "E00%08X.log", li[i].gen);
		else
			snprintf(name, sizeof(name), "E00.log");
		write_log(name, &li[i]);
	}
}

typedef struct problems {
	int n, errors;
	char msg[16][512];
	int seen_logs;
} problems;

static void on_problem(void *arg, uint32_t gen, int error, const char *msg)
{
	problems *p = arg;
	(void)gen;
	if (p->n < 16)
		snprintf(p->msg[p->n], sizeof(p->msg[0]), "%s", msg);
	p->n++;
	p->errors += error;
}

static void on_log(void *arg, const amb_logdir_entry *e)
{
	problems *p = arg;
	(void)e;
	p->seen_logs++;
}

static int check_logs(uint32_t from, amb_logdir_report *rep, problems *p)
{
	char dir[400];
	snprintf(dir, sizeof(dir), "%s/logs", tmpdir);
	memset(p, 0, sizeof(*p));
	amb_logdir_cb cb = {.on_log = on_log, .on_problem = on_problem, .arg = p};
	return amb_logdir_check(amb_vfs_posix(), dir, "E00", from, rep, &cb);
}

static int any_msg(const problems *p, const char *what)
{
	for (int i = 0; i < p->n && i < 16; i++)
		if (strstr(p->msg[i], what))
			return 1;
	return 0;
}

static void log_path(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/logs/%s", tmpdir, name);
}

static void test_logs_intact(void **state)
{
	(void)state;
	loginfo li[4];
	make_logs(li);
	/* a tmp log and unrelated files are ignored */
	char path[400];
	log_path(path, sizeof(path), "E00tmp.log");
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("junk", f);
	fclose(f);
	log_path(path, sizeof(path), "E01000001.log");
	f = fopen(path, "w");
	assert_non_null(f);
	fclose(f);

	amb_logdir_report rep;
	problems p;
	assert_int_equal(check_logs(0, &rep, &p), 0);
	assert_int_equal(p.n, 0);
	assert_int_equal(rep.nlogs, 4);
	assert_int_equal(p.seen_logs, 4);
	assert_int_equal(rep.gen_first, 1);
	assert_int_equal(rep.gen_last, 4);
	assert_true(rep.has_current);
	assert_int_equal(rep.errors, 0);
	assert_int_equal(rep.torn_tail, 0);

	/* from the checkpoint generation */
	assert_int_equal(check_logs(3, &rep, &p), 0);
	assert_int_equal(rep.nlogs, 2);
	assert_int_equal(rep.gen_first, 3);

	/* a backup's log directory: archived logs only */
	log_path(path, sizeof(path), "E00.log");
	unlink(path);
	assert_int_equal(check_logs(0, &rep, &p), 0);
	assert_false(rep.has_current);
	assert_int_equal(rep.nlogs, 3);

	/* the list helper */
	amb_logdir_entry *list;
	size_t n;
	char dir[400];
	snprintf(dir, sizeof(dir), "%s/logs", tmpdir);
	assert_int_equal(amb_logdir_list(amb_vfs_posix(), dir, "E00", 2, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(list[0].gen, 2);
	assert_string_equal(list[1].name, "E0000000003.log");
	assert_int_equal(list[1].scan.valid_segs, 10);
	free(list);
}

/* amb_logdir_list() scans several logs at once: each entry keeps its own
 * result and message (the messages are per thread, err.c), whichever
 * thread scanned it. */
static void test_logs_list_errors(void **state)
{
	(void)state;
	loginfo li[4];
	make_logs(li);
	char path[400];
	log_path(path, sizeof(path), "E0000000002.log");
	assert_int_equal(truncate(path, 100), 0);
	log_path(path, sizeof(path), "E0000000003.log");
	int fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	static unsigned char junk[4096];
	memset(junk, 0xA5, sizeof(junk));
	assert_int_equal(pwrite(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
	close(fd);
	amb_logdir_entry *list;
	size_t n;
	char dir[400];
	snprintf(dir, sizeof(dir), "%s/logs", tmpdir);
	assert_int_equal(amb_logdir_list(amb_vfs_posix(), dir, "E00", 0, &list, &n), 0);
	assert_int_equal(n, 4);
	assert_int_equal(list[0].rc, 0);
	assert_int_equal(list[0].gen, 1);
	assert_int_equal(list[1].rc, AMS_ENOTDB);
	assert_non_null(strstr(list[1].err, "E0000000002.log: too short"));
	assert_int_not_equal(list[2].rc, 0);
	assert_non_null(strstr(list[2].err, "E0000000003.log"));
	assert_null(strstr(list[2].err, "too short"));
	/* the current log, generation 4 read from its header */
	assert_int_equal(list[3].rc, 0);
	assert_int_equal(list[3].gen, 4);
	assert_true(list[3].current);
	free(list);
}

static void test_logs_missing(void **state)
{
	(void)state;
	loginfo li[4];
	make_logs(li);
	char path[400];
	log_path(path, sizeof(path), "E0000000002.log");
	assert_int_equal(unlink(path), 0);
	amb_logdir_report rep;
	problems p;
	assert_int_equal(check_logs(0, &rep, &p), AMS_ELOGMISSING);
	assert_true(any_msg(&p, "log generation 0x00000002 (E0000000002.log) is missing"));
	assert_non_null(strstr(ams_errmsg(), "0x00000002"));
	/* from generation 3 the gap does not matter */
	assert_int_equal(check_logs(3, &rep, &p), 0);
	/* but the checkpoint's own generation must be there */
	assert_int_equal(check_logs(2, &rep, &p), AMS_ELOGMISSING);
	assert_true(any_msg(&p, "0x00000002"));
	/* nothing at all */
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "rm -f '%s'/logs/*", tmpdir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(check_logs(0, &rep, &p), AMS_ENOTFOUND);
	assert_int_equal(check_logs(7, &rep, &p), AMS_ELOGMISSING);
}

static void test_logs_signature_and_sequence(void **state)
{
	(void)state;
	loginfo li[4];
	make_logs(li);
	loginfo other = li[1];
	amb_sig_new(&other.sig);
	write_log("E0000000002.log", &other);
	amb_logdir_report rep;
	problems p;
	assert_int_equal(check_logs(0, &rep, &p), AMS_EBADSIG);
	assert_true(any_msg(&p, "another log stream"));

	make_logs(li);
	loginfo wrong = li[2];
	wrong.prev_create = 12345;
	write_log("E0000000003.log", &wrong);
	assert_int_equal(check_logs(0, &rep, &p), AMS_ECORRUPT);
	assert_true(any_msg(&p, "does not follow"));

	/* a file renamed to the wrong generation */
	make_logs(li);
	char a[400], b[400];
	log_path(a, sizeof(a), "E0000000003.log");
	log_path(b, sizeof(b), "E0000000005.log");
	assert_int_equal(rename(a, b), 0);
	assert_int_not_equal(check_logs(0, &rep, &p), 0);
	assert_true(any_msg(&p, "holds log generation 0x00000003"));
	assert_true(any_msg(&p, "current log"));
}

static void test_logs_damage(void **state)
{
	(void)state;
	loginfo li[4];
	make_logs(li);
	/* damage the last valid segment (10) of closed generation 2 */
	char path[400];
	log_path(path, sizeof(path), "E0000000002.log");
	flip(path, 10 * AMB_SEG_SIZE + 60, 0);
	flip(path, 10 * AMB_SEG_SIZE + 61, 0);
	amb_logdir_report rep;
	problems p;
	assert_int_equal(check_logs(0, &rep, &p), AMS_ECORRUPT);
	assert_true(any_msg(&p, "log generation 0x00000002 (E0000000002.log) is damaged"));
	assert_true(any_msg(&p, "segment 10"));

	/* damage in the middle: valid data follows */
	make_logs(li);
	flip(path, 4 * AMB_SEG_SIZE + 60, 0);
	flip(path, 4 * AMB_SEG_SIZE + 70, 0);
	assert_int_equal(check_logs(0, &rep, &p), AMS_ECORRUPT);
	assert_true(any_msg(&p, "damaged at segment 4"));

	/* a single bit anywhere is corrected and fine */
	make_logs(li);
	flip(path, 4 * AMB_SEG_SIZE + 60, 0);
	assert_int_equal(check_logs(0, &rep, &p), 0);
	assert_int_equal(rep.corrected, 1);

	/* a torn tail in the current log is fine */
	make_logs(li);
	log_path(path, sizeof(path), "E00.log");
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	unsigned char junk[AMB_SEG_SIZE];
	memset(junk, 0x77, sizeof(junk));
	assert_int_equal(pwrite(fd, junk, sizeof(junk), 4 * AMB_SEG_SIZE), (ssize_t)sizeof(junk));
	close(fd);
	assert_int_equal(check_logs(0, &rep, &p), 0);
	assert_int_equal(rep.torn_tail, 1);
	assert_int_equal(rep.errors, 0);
	assert_int_equal(rep.warnings, 1);

	/* a torn tail in a closed log whose data still reaches the next start:
	 * only a note */
	make_logs(li);
	log_path(path, sizeof(path), "E0000000001.log");
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, junk, sizeof(junk), 11 * AMB_SEG_SIZE), (ssize_t)sizeof(junk));
	close(fd);
	assert_int_equal(check_logs(0, &rep, &p), 0);
	assert_int_equal(rep.warnings, 1);
	assert_true(any_msg(&p, "torn write"));

	/* an unreadable log (not a log at all) in the middle */
	make_logs(li);
	log_path(path, sizeof(path), "E0000000002.log");
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("garbage", f);
	fclose(f);
	assert_int_not_equal(check_logs(0, &rep, &p), 0);
	assert_true(p.errors >= 1);
	assert_false(any_msg(&p, "is missing"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean),
		cmocka_unit_test(test_one_bit_corrected),
		cmocka_unit_test(test_two_bits_damaged),
		cmocka_unit_test(test_wrong_place),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_zero_and_bad_layout),
		cmocka_unit_test(test_cell_checks),
		cmocka_unit_test(test_headers_damaged),
		cmocka_unit_test(test_not_db),
		cmocka_unit_test(test_many_pages),
		cmocka_unit_test(test_logs_intact),
		cmocka_unit_test(test_logs_list_errors),
		cmocka_unit_test(test_logs_missing),
		cmocka_unit_test(test_logs_signature_and_sequence),
		cmocka_unit_test(test_logs_damage),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * test_dbfile.c - database header copies, checkpoint copies, free pages,
 * signatures and time formatting (store/dbfile.c).
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

#include "common/checksum.h"
#include "common/vfs.h"
#include "store/dbfile.h"
#include "store/err.h"
#include "store/format.h"

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/amber-test-dbfile-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
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

static void path_of(char *buf, size_t size, const char *name)
{
	snprintf(buf, size, "%s/%s", tmpdir, name);
}

static void sample_hdr(amb_dbhdr *h, uint32_t ps)
{
	memset(h, 0, sizeof(*h));
	h->magic = AMB_DB_MAGIC;
	h->version = AMB_FORMAT_VERSION;
	h->page_size = ps;
	h->dbidx = 1;
	amb_sig_new(&h->sign_db);
	amb_sig_new(&h->sign_log);
	h->state = AMB_DBSTATE_CLEAN;
	h->gen_min_required = 0x1A;
	h->gen_max_required = 0x1C;
	h->gen_max_committed = 0x1C;
	h->last_stamp = 12345;
	h->page_count = 8;
	h->full_prev.gen_low = 3;
	h->full_prev.gen_high = 5;
	h->full_prev.time = 1700000000000000ull;
	h->full_prev.kind = 2;
	snprintf(h->name, sizeof(h->name), "priv1.edb");
	snprintf(h->prefix, sizeof(h->prefix), "E00");
}

/* A database file of npages: header pages from h, then free pages. */
static int make_db(const char *path, amb_dbhdr *h, uint32_t npages)
{
	amb_vfs *v = amb_vfs_posix();
	int fd = v->open(v, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	unsigned char *page = malloc(h->page_size);
	assert_non_null(page);
	for (uint32_t pg = 2; pg < npages; pg++) {
		amb_page_format_free(page, h->page_size, pg, 7);
		assert_int_equal(v->pwrite(v, fd, page, h->page_size, (off_t)pg * h->page_size),
		                 (ssize_t)h->page_size);
	}
	free(page);
	assert_int_equal(amb_dbhdr_store(v, fd, path, h), 0);
	return fd;
}

static void flip_bit(int fd, off_t byte, int bit)
{
	unsigned char c;
	assert_int_equal(pread(fd, &c, 1, byte), 1);
	c ^= (unsigned char)(1u << bit);
	assert_int_equal(pwrite(fd, &c, 1, byte), 1);
}

static void smash(int fd, off_t off, size_t n)
{
	unsigned char buf[64];
	assert_true(n <= sizeof(buf));
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)(0xA5 ^ i);
	assert_int_equal(pwrite(fd, buf, n, off), (ssize_t)n);
}

static void test_header_roundtrip(void **state)
{
	(void)state;
	static const uint32_t sizes[] = {4096, 8192, 32768};
	for (size_t i = 0; i < 3; i++) {
		char path[300];
		path_of(path, sizeof(path), "rt.edb");
		amb_dbhdr h, got;
		sample_hdr(&h, sizes[i]);
		int fd = make_db(path, &h, 4);
		assert_int_equal(h.seq, 1); /* store increments */
		int st = -1;
		assert_int_equal(amb_dbhdr_load(amb_vfs_posix(), fd, path, &got, &st), 0);
		assert_int_equal(st, 0);
		assert_memory_equal(&got, &h, sizeof(h));
		close(fd);
	}
}

static void test_header_copy0_damaged(void **state)
{
	(void)state;
	char path[300];
	path_of(path, sizeof(path), "c0.edb");
	amb_dbhdr h, got;
	sample_hdr(&h, 8192);
	int fd = make_db(path, &h, 4);
	smash(fd, 100, 16); /* two+ bits in copy 0 */
	int st = 0;
	assert_int_equal(amb_dbhdr_load(amb_vfs_posix(), fd, path, &got, &st), 0);
	assert_true(st & AMB_HDR_COPY0_BAD);
	assert_false(st & AMB_HDR_COPY1_BAD);
	assert_int_equal(got.seq, h.seq);
	assert_int_equal(got.gen_max_required, 0x1C);

	/* copy 1 bad instead */
	assert_int_equal(amb_dbhdr_store(amb_vfs_posix(), fd, path, &h), 0);
	smash(fd, 8192 + 200, 16);
	assert_int_equal(amb_dbhdr_load(amb_vfs_posix(), fd, path, &got, &st), 0);
	assert_true(st & AMB_HDR_COPY1_BAD);
	assert_false(st & AMB_HDR_COPY0_BAD);
	assert_int_equal(got.seq, h.seq);
	close(fd);
}

static void test_header_both_damaged(void **state)
{
	(void)state;
	char path[300];
	path_of(path, sizeof(path), "both.edb");
	amb_dbhdr h, got;
	sample_hdr(&h, 8192);
	int fd = make_db(path, &h, 4);
	smash(fd, 300, 8);
	smash(fd, 8192 + 300, 8);
	int st = 0;
	assert_int_equal(amb_dbhdr_load(amb_vfs_posix(), fd, path, &got, &st), AMS_ECORRUPT);
	assert_true((st & (AMB_HDR_COPY0_BAD | AMB_HDR_COPY1_BAD)) ==
	            (AMB_HDR_COPY0_BAD | AMB_HDR_COPY1_BAD));
	assert_non_null(strstr(ams_errmsg(), "both.edb"));
	close(fd);
}

static void test_header_single_bit_corrected(void **state)
{
	(void)state;
	char path[300];
	path_of(path, sizeof(path), "bit.edb");
	amb_dbhdr h, got;
	sample_hdr(&h, 4096);
	int fd = make_db(path, &h, 4);
	/* the page_size field of copy 0, and a bit of the hash of copy 1 */
	flip_bit(fd, 32 + offsetof(amb_dbhdr, page_size), 1);
	flip_bit(fd, 4096 + 3, 5);
	int st = 0;
	assert_int_equal(amb_dbhdr_load(amb_vfs_posix(), fd, path, &got, &st), 0);
	assert_true(st & AMB_HDR_CORRECTED);
	assert_false(st & (AMB_HDR_COPY0_BAD | AMB_HDR_COPY1_BAD));
	assert_memory_equal(&got, &h, sizeof(h));
	close(fd);
}

static void test_header_higher_seq_wins(void **state)
{
	(void)state;
	char path[300];
	path_of(path, sizeof(path), "seq.edb");
	amb_dbhdr h, got;
	sample_hdr(&h, 8192);
	int fd = make_db(path, &h, 4);
	/* as if a crash hit between the two copies: copy 0 new, copy 1 old */
	amb_dbhdr newer = h;
	newer.seq = h.seq + 1;
	newer.state = AMB_DBSTATE_DIRTY;
	unsigned char page[8192];
	amb_dbhdr_to_page(&newer, page, 0);
	assert_int_equal(pwrite(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
	int st = 0;
	assert_int_equal(amb_dbhdr_load(amb_vfs_posix(), fd, path, &got, &st), 0);
	assert_true(st & AMB_HDR_COPIES_DIFFER);
	assert_int_equal(got.seq, newer.seq);
	assert_int_equal(got.state, AMB_DBSTATE_DIRTY);

	/* and the other way round: copy 1 newer */
	newer.seq += 5;
	newer.state = AMB_DBSTATE_CLEAN;
	amb_dbhdr_to_page(&newer, page, 1);
	assert_int_equal(pwrite(fd, page, sizeof(page), 8192), (ssize_t)sizeof(page));
	assert_int_equal(amb_dbhdr_load(amb_vfs_posix(), fd, path, &got, &st), 0);
	assert_int_equal(got.seq, newer.seq);
	assert_int_equal(got.state, AMB_DBSTATE_CLEAN);

	/* a copy written at the wrong place does not verify */
	amb_dbhdr_to_page(&newer, page, 0);
	assert_int_equal(pwrite(fd, page, sizeof(page), 8192), (ssize_t)sizeof(page));
	assert_int_equal(amb_dbhdr_load(amb_vfs_posix(), fd, path, &got, &st), 0);
	assert_true(st & AMB_HDR_COPY1_BAD);
	close(fd);
}

static void test_header_version(void **state)
{
	(void)state;
	char path[300];
	path_of(path, sizeof(path), "ver.edb");
	amb_dbhdr h, got;
	sample_hdr(&h, 8192);
	h.version = 99;
	int fd = make_db(path, &h, 2);
	assert_int_equal(amb_dbhdr_load(amb_vfs_posix(), fd, path, &got, NULL), AMS_EVERSION);
	close(fd);
}

static int load_file(const char *path)
{
	amb_vfs *v = amb_vfs_posix();
	int fd = v->open(v, path, O_RDONLY, 0);
	assert_true(fd >= 0);
	amb_dbhdr got;
	int st;
	int rc = amb_dbhdr_load(v, fd, path, &got, &st);
	close(fd);
	return rc;
}

static void write_file(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	fclose(f);
}

static void test_not_a_database(void **state)
{
	(void)state;
	char path[300];
	path_of(path, sizeof(path), "x.edb");

	write_file(path, "", 0);
	assert_int_equal(load_file(path), AMS_ENOTDB);

	const char *text = "this is a text file, not a database\n";
	write_file(path, text, strlen(text));
	assert_int_equal(load_file(path), AMS_ENOTDB);

	/* a long text file */
	char *big = malloc(100000);
	assert_non_null(big);
	for (size_t i = 0; i < 100000; i++)
		big[i] = "lorem ipsum dolor sit amet\n"[i % 27];
	write_file(path, big, 100000);
	assert_int_equal(load_file(path), AMS_ENOTDB);

	/* random garbage of many sizes */
	srand(42);
	for (int round = 0; round < 50; round++) {
		size_t n = (size_t)(rand() % 70000);
		for (size_t i = 0; i < n; i++)
			big[i] = (char)rand();
		write_file(path, big, n);
		assert_int_equal(load_file(path), AMS_ENOTDB);
	}
	/* all zeros */
	memset(big, 0, 100000);
	write_file(path, big, 100000);
	assert_int_equal(load_file(path), AMS_ENOTDB);
	free(big);

	/* a database truncated inside its first page */
	amb_dbhdr h;
	sample_hdr(&h, 8192);
	int fd = make_db(path, &h, 2);
	assert_int_equal(ftruncate(fd, 3000), 0);
	close(fd);
	assert_int_equal(load_file(path), AMS_ENOTDB);
}

static void test_header_truncated_copy1(void **state)
{
	(void)state;
	char path[300];
	path_of(path, sizeof(path), "short.edb");
	amb_dbhdr h, got;
	sample_hdr(&h, 8192);
	int fd = make_db(path, &h, 2);
	assert_int_equal(ftruncate(fd, 8192 + 100), 0); /* copy 1 cut short */
	int st = 0;
	assert_int_equal(amb_dbhdr_load(amb_vfs_posix(), fd, path, &got, &st), 0);
	assert_true(st & AMB_HDR_COPY1_BAD);
	close(fd);
}

static void test_free_page(void **state)
{
	(void)state;
	static const uint32_t sizes[] = {4096, 8192, 32768};
	for (size_t i = 0; i < 3; i++) {
		uint32_t ps = sizes[i];
		unsigned char *p = malloc(ps);
		assert_non_null(p);
		memset(p, 0xEE, ps);
		amb_page_format_free(p, ps, 77, 999);
		assert_int_equal(amb_ck_check(p, ps, 77), AMB_CK_OK);
		assert_int_equal(amb_ck_check(p, ps, 78), AMB_CK_DAMAGED);
		amb_blk b;
		amb_blk_get(p, &b);
		assert_int_equal(b.no, 77);
		assert_int_equal(b.stamp, 999);
		assert_int_equal(b.type, AMB_BT_FREE);
		assert_int_equal(b.aux, 0);
		for (uint32_t k = 32; k < ps; k++)
			assert_int_equal(p[k], 0);
		/* blk put/get round trip, hash untouched */
		amb_blk in = {.no = 5, .stamp = 6, .type = AMB_BT_DATA, .flags = 7, .aux = 8};
		uint64_t hash;
		memcpy(&hash, p, 8);
		amb_blk_put(p, &in);
		amb_blk_get(p, &b);
		assert_int_equal(b.hash, hash);
		assert_int_equal(b.no, 5);
		assert_int_equal(b.stamp, 6);
		assert_int_equal(b.type, AMB_BT_DATA);
		assert_int_equal(b.flags, 7);
		assert_int_equal(b.aux, 8);
		free(p);
	}
	assert_true(amb_page_size_ok(4096));
	assert_true(amb_page_size_ok(8192));
	assert_true(amb_page_size_ok(32768));
	assert_false(amb_page_size_ok(16384));
	assert_false(amb_page_size_ok(0));
}

static void sample_chk(amb_chk *c)
{
	memset(c, 0, sizeof(*c));
	c->magic = AMB_CHK_MAGIC;
	c->version = AMB_FORMAT_VERSION;
	amb_sig_new(&c->sign_log);
	c->lsn = 123456789;
	c->gen = 0x1A;
	c->time = amb_now_us();
	c->full_backup.gen_low = 1;
	c->full_backup.gen_high = 2;
	snprintf(c->prefix, sizeof(c->prefix), "E00");
}

static void test_checkpoint(void **state)
{
	(void)state;
	amb_vfs *v = amb_vfs_posix();
	char path[300];
	path_of(path, sizeof(path), "E00.chk");
	amb_chk c, got;
	uint64_t seq = 0;
	int st = -1;

	assert_int_equal(amb_chk_load(v, path, &got, &seq, &st), AMS_ENOTFOUND);

	sample_chk(&c);
	assert_int_equal(amb_chk_store(v, path, &c, 41), 0);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, AMB_CHK_FILE_SIZE);
	assert_int_equal(amb_chk_load(v, path, &got, &seq, &st), 0);
	assert_int_equal(st, 0);
	assert_int_equal(seq, 41);
	assert_memory_equal(&got, &c, sizeof(c));

	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	/* single bit: corrected */
	flip_bit(fd, 32 + 20, 3);
	assert_int_equal(amb_chk_load(v, path, &got, &seq, &st), 0);
	assert_true(st & AMB_HDR_CORRECTED);
	assert_memory_equal(&got, &c, sizeof(c));
	/* copy 0 smashed: copy 1 used */
	smash(fd, 40, 16);
	assert_int_equal(amb_chk_load(v, path, &got, &seq, &st), 0);
	assert_true(st & AMB_HDR_COPY0_BAD);
	assert_memory_equal(&got, &c, sizeof(c));
	/* both smashed */
	smash(fd, 4096 + 40, 16);
	assert_int_equal(amb_chk_load(v, path, &got, &seq, &st), AMS_ECORRUPT);
	close(fd);

	/* the higher update count wins when the copies differ */
	unsigned char buf[AMB_CHK_FILE_SIZE];
	assert_int_equal(amb_chk_store(v, path, &c, 10), 0);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	amb_chk c2 = c;
	c2.gen = 0x1B;
	char p2[300];
	path_of(p2, sizeof(p2), "other.chk");
	assert_int_equal(amb_chk_store(v, p2, &c2, 11), 0);
	int fd2 = open(p2, O_RDONLY);
	assert_true(fd2 >= 0);
	unsigned char b2[AMB_CHK_FILE_SIZE];
	assert_int_equal(pread(fd2, b2, sizeof(b2), 0), (ssize_t)sizeof(b2));
	close(fd2);
	memcpy(buf + 4096, b2 + 4096, 4096); /* copy 1 newer */
	assert_int_equal(pwrite(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(amb_chk_load(v, path, &got, &seq, &st), 0);
	assert_int_equal(seq, 11);
	assert_int_equal(got.gen, 0x1B);
	assert_true(st & AMB_HDR_COPIES_DIFFER);
	close(fd);

	/* not a checkpoint */
	write_file(path, "hello\n", 6);
	assert_int_equal(amb_chk_load(v, path, &got, &seq, &st), AMS_ENOTDB);
	write_file(path, "", 0);
	assert_int_equal(amb_chk_load(v, path, &got, &seq, &st), AMS_ENOTDB);
	memset(buf, 0x5A, sizeof(buf));
	write_file(path, buf, sizeof(buf));
	assert_int_equal(amb_chk_load(v, path, &got, &seq, &st), AMS_ENOTDB);
}

static void test_sig_and_time(void **state)
{
	(void)state;
	amb_sig a, b;
	amb_sig_new(&a);
	amb_sig_new(&b);
	assert_true(amb_sig_eq(&a, &a));
	assert_false(amb_sig_eq(&a, &b));
	assert_true(a.time > 1600000000000000ull);
	char host[256];
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	assert_int_equal(strncmp(a.host, host, sizeof(a.host) - 1), 0);

	char buf[200];
	amb_time_format(0, buf, sizeof(buf));
	assert_string_equal(buf, "none");
	amb_time_format(1795341600123456ull, buf, sizeof(buf)); /* 2026-11-22 10:00:00.123456 */
	assert_string_equal(buf, "2026-11-22 10:00:00.123456");
	amb_time_format(UINT64_MAX, buf, sizeof(buf));
	assert_non_null(strstr(buf, "invalid"));

	a.time = 1795341600123456ull;
	memset(a.random, 0xab, sizeof(a.random));
	memset(a.host, 0, sizeof(a.host));
	memcpy(a.host, "mailhost", 8);
	amb_sig_format(&a, buf, sizeof(buf));
	assert_string_equal(buf, "Create time: 2026-11-22 10:00:00.123 Rand: "
	                         "abababababababababababababababab Computer: mailhost");
	/* a host field without NUL and with control bytes still prints safely */
	memset(a.host, 'x', sizeof(a.host));
	a.host[3] = '\n';
	amb_sig_format(&a, buf, sizeof(buf));
	assert_null(strchr(buf, '\n'));
	char small[8];
	amb_sig_format(&a, small, sizeof(small));
	assert_int_equal(strlen(small), 7);
	uint64_t t1 = amb_now_us(), t2 = amb_now_us();
	assert_true(t2 >= t1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_roundtrip),
		cmocka_unit_test(test_header_copy0_damaged),
		cmocka_unit_test(test_header_both_damaged),
		cmocka_unit_test(test_header_single_bit_corrected),
		cmocka_unit_test(test_header_higher_seq_wins),
		cmocka_unit_test(test_header_version),
		cmocka_unit_test(test_not_a_database),
		cmocka_unit_test(test_header_truncated_copy1),
		cmocka_unit_test(test_free_page),
		cmocka_unit_test(test_checkpoint),
		cmocka_unit_test(test_sig_and_time),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

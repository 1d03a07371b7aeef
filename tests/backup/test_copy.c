/*
 * test_copy.c - the copy pipeline (src/backup/repo.c: bk_copy_fd,
 * bk_copy_fd_hooks, bk_hash_fd) and the check of database pages on the
 * bytes being copied (src/backup/job.c: bk_pagecheck_chunk): the copy is
 * exact and its SHA-256 is of the bytes written, whatever the size; the
 * check sees every chunk once, in order; a damaged page anywhere in a
 * large file is caught; read and write errors of the pipeline's threads
 * come back as clean error codes.  bk_add_files (job.c), which copies
 * several files at once: every file exact, the document in the order
 * asked whatever copy ends first, the first failure in that order
 * reported and no file after a failure recorded.  The precopy
 * (bk_precopy_*): what it takes and what it leaves to the shadow's copy,
 * and its fsyncs, made on its own threads or by the match.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
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
#include <openssl/evp.h>

#include "backup/job.h"
#include "backup/repo.h"
#include "common/checksum.h"
#include "store/dbfile.h"

#define SEED 0x5eed0c0fu

/* Every fsync of the code under test (-Wl,--wrap=fsync): counted by
 * whether the test's own thread or another made it. */
int __real_fsync(int fd);
int __wrap_fsync(int fd);
static pthread_t caller;
static atomic_int fsyncs_caller, fsyncs_other;

/* a path whose next fsync fails with EIO (once), "" for none */
static char fail_once[PATH_MAX];
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;

int __wrap_fsync(int fd)
{
	atomic_fetch_add(pthread_equal(pthread_self(), caller) ? &fsyncs_caller : &fsyncs_other, 1);
	char l[64], path[PATH_MAX];
	snprintf(l, sizeof(l), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(l, path, sizeof(path) - 1);
	bool fail = false;
	if (n > 0) {
		path[n] = '\0';
		pthread_mutex_lock(&fail_mu);
		if (fail_once[0] && !strcmp(path, fail_once)) {
			fail_once[0] = '\0';
			fail = true;
		}
		pthread_mutex_unlock(&fail_mu);
	}
	if (fail) {
		errno = EIO;
		return -1;
	}
	return __real_fsync(fd);
}

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	caller = pthread_self();
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/amber-test-copy.XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* xorshift64: repeatable content */
static void fill(unsigned char *b, size_t n, uint64_t seed)
{
	uint64_t x = seed | 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (unsigned char)x;
	}
}

static void sha_hex(const unsigned char *b, size_t n, char hex[65])
{
	unsigned char md[32];
	unsigned int len = 0;
	EVP_Digest(b, n, md, &len, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void write_file(const char *path, const unsigned char *b, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	size_t done = 0;
	while (done < n) {
		ssize_t w = write(fd, b + done, n - done);
		assert_true(w > 0);
		done += (size_t)w;
	}
	close(fd);
}

/* What the check hook saw: offsets in order, every byte once. */
typedef struct seen {
	uint64_t next_off;
	uint64_t chunks;
	int out_of_order;
	EVP_MD_CTX *ctx;
	uint64_t progress;
} seen;

static void on_chunk(void *arg, const unsigned char *buf, size_t len, uint64_t off)
{
	seen *s = arg;
	if (off != s->next_off || (len != BK_COPY_CHUNK && len == 0))
		s->out_of_order = 1;
	s->next_off = off + len;
	s->chunks++;
	EVP_DigestUpdate(s->ctx, buf, len);
}

static void on_progress(void *arg, uint64_t bytes)
{
	((seen *)arg)->progress += bytes;
}

/* Copy files of sizes around the chunk size through the pipeline; the
 * largest is more than twice the pipeline's ring of chunk slots (8), so
 * every slot is reused. */
#define SIZES_MAX (19 * BK_COPY_CHUNK + 12345)
static void test_copy_sizes(void **state)
{
	(void)state;
	const size_t sizes[] = {0, 1, 4095, BK_COPY_CHUNK - 1, BK_COPY_CHUNK, BK_COPY_CHUNK + 1,
	                        2 * BK_COPY_CHUNK, 7 * BK_COPY_CHUNK + 12345, SIZES_MAX};
	unsigned char *data = malloc(SIZES_MAX);
	unsigned char *back = malloc(SIZES_MAX);
	assert_non_null(data);
	assert_non_null(back);
	fill(data, SIZES_MAX, SEED);
	char src[128], dst[128];
	snprintf(src, sizeof(src), "%s/src", tmpdir);
	snprintf(dst, sizeof(dst), "%s/dst", tmpdir);
	for (size_t i = 0; i < 2 * sizeof(sizes) / sizeof(sizes[0]); i++) {
		/* each size through the page cache, then with O_DIRECT */
		bool uncached = i >= sizeof(sizes) / sizeof(sizes[0]);
		size_t n = sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];
		write_file(src, data, n);
		unlink(dst);
		int in = open(src, O_RDONLY);
		int out = open(dst, O_RDWR | O_CREAT | O_EXCL, 0600);
		assert_true(in >= 0 && out >= 0);
		seen s = {.ctx = EVP_MD_CTX_new()};
		assert_non_null(s.ctx);
		EVP_DigestInit_ex(s.ctx, EVP_sha256(), NULL);
		bk_copy_hooks h = {.progress = on_progress, .progress_arg = &s, .check = on_chunk,
		                   .check_arg = &s, .uncached = uncached};
		uint64_t bytes = 99;
		char hex[65], want[65], hook_hex[65];
		int rc = bk_copy_fd_hooks(in, out, &bytes, hex, &h);
		close(in);
		assert_int_equal(rc, 0);
		sha_hex(data, n, want);
		if (strcmp(hex, want) != 0)
			fail_msg("size %zu%s (seed 0x%x): SHA-256 %s, want %s", n,
			         uncached ? " O_DIRECT" : "", SEED, hex, want);
		assert_int_equal(bytes, n);
		assert_int_equal(s.progress, n);
		assert_false(s.out_of_order);
		assert_int_equal(s.next_off, n);
		assert_int_equal(s.chunks, (n + BK_COPY_CHUNK - 1) / BK_COPY_CHUNK);
		unsigned char md[32];
		unsigned int mdlen = 0;
		EVP_DigestFinal_ex(s.ctx, md, &mdlen);
		EVP_MD_CTX_free(s.ctx);
		for (int k = 0; k < 32; k++)
			snprintf(hook_hex + 2 * k, 3, "%02x", md[k]);
		assert_string_equal(hook_hex, want); /* the hook saw exactly the bytes */
		/* the copy holds exactly the bytes */
		struct stat st;
		assert_int_equal(fstat(out, &st), 0);
		assert_int_equal((uint64_t)st.st_size, n);
		assert_int_equal(pread(out, back, n, 0), (ssize_t)n);
		assert_memory_equal(back, data, n);
		/* hash only: the same digest */
		char hex2[65];
		uint64_t b2 = 0;
		assert_int_equal(bk_hash_fd(out, &b2, hex2, NULL, NULL), 0);
		assert_string_equal(hex2, want);
		assert_int_equal(b2, n);
		close(out);
	}
	free(data);
	free(back);
}

/* A read error (src is a directory) and write errors (ENOSPC from
 * /dev/full, a dst open read-only) end the copy with that error, and
 * hooks.dst_failed says which side it was (restore tells a full target
 * from a damaged backup by it). */
static void test_copy_errors(void **state)
{
	(void)state;
	char src[128], dst[128];
	snprintf(src, sizeof(src), "%s/big", tmpdir);
	size_t n = 3 * BK_COPY_CHUNK + 100;
	unsigned char *data = malloc(n);
	assert_non_null(data);
	fill(data, n, SEED + 1);
	write_file(src, data, n);
	free(data);
	char hex[65];
	uint64_t bytes = 0;

	/* read error in a reader thread */
	int dir = open(tmpdir, O_RDONLY | O_DIRECTORY);
	snprintf(dst, sizeof(dst), "%s/out1", tmpdir);
	int out = open(dst, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(dir >= 0 && out >= 0);
	assert_int_equal(bk_copy_fd(dir, out, &bytes, hex, NULL, NULL), -EISDIR);
	bool side = false;
	bk_copy_hooks hs = {.dst_failed = &side};
	assert_int_equal(bk_copy_fd_hooks(dir, out, &bytes, hex, &hs), -EISDIR);
	assert_false(side);
	assert_int_equal(bk_hash_fd(dir, &bytes, hex, NULL, NULL), -EISDIR);
	close(dir);
	close(out);

	/* write error in the writer thread: a full disk */
	int in = open(src, O_RDONLY);
	int full = open("/dev/full", O_RDWR);
	assert_true(in >= 0);
	if (full >= 0) {
		assert_int_equal(bk_copy_fd(in, full, &bytes, hex, NULL, NULL), -ENOSPC);
		side = false;
		bk_copy_hooks h = {.uncached = true, .dst_failed = &side};
		assert_int_equal(bk_copy_fd_hooks(in, full, &bytes, hex, &h), -ENOSPC);
		assert_true(side); /* the pipeline's writer thread */
		/* a file under one chunk: the serial loop */
		char small[128];
		snprintf(small, sizeof(small), "%s/small", tmpdir);
		write_file(small, (const unsigned char *)"0123456789", 10);
		int sfd = open(small, O_RDONLY);
		assert_true(sfd >= 0);
		side = false;
		assert_int_equal(bk_copy_fd_hooks(sfd, full, &bytes, hex, &h), -ENOSPC);
		assert_true(side);
		close(sfd);
		close(full);
	}
	/* a destination that cannot be written */
	int ro = open(src, O_RDONLY);
	assert_true(ro >= 0);
	assert_int_equal(bk_copy_fd(in, ro, &bytes, hex, NULL, NULL), -EBADF);
	side = false;
	assert_int_equal(bk_copy_fd_hooks(in, ro, &bytes, hex, &hs), -EBADF);
	assert_true(side);
	close(ro);
	close(in);
}

/* A file of n free pages numbered from 0 with pages 0 and 1 as valid
 * header copies. */
static unsigned char *make_db(uint32_t ps, uint32_t n)
{
	unsigned char *b = calloc(n, ps);
	assert_non_null(b);
	amb_dbhdr h;
	memset(&h, 0, sizeof(h));
	h.magic = AMB_DB_MAGIC;
	h.version = 1;
	h.page_size = ps;
	h.page_count = n;
	h.state = AMB_DBSTATE_CLEAN;
	amb_dbhdr_to_page(&h, b, 0);
	amb_dbhdr_to_page(&h, b + ps, 1);
	for (uint32_t p = 2; p < n; p++)
		amb_page_format_free(b + (size_t)p * ps, ps, p, 1);
	return b;
}

/* Pages checked while a large database is copied: intact, one flipped bit
 * (corrected, counted), damage in a late chunk (found, named), a cut
 * last page. */
static void test_pagecheck(void **state)
{
	(void)state;
	const uint32_t ps = 8192;
	const uint32_t n = 4 * (BK_COPY_CHUNK / ps) + 37; /* five chunks */
	unsigned char *db = make_db(ps, n);
	char src[128], dst[128];
	snprintf(src, sizeof(src), "%s/db.edb", tmpdir);
	snprintf(dst, sizeof(dst), "%s/db.copy", tmpdir);
	const uint32_t bad_page = 3 * (BK_COPY_CHUNK / ps) + 5;
	for (int round = 0; round < 4; round++) {
		size_t len = (size_t)n * ps;
		if (round == 1)
			db[(size_t)bad_page * ps + 100] ^= 0x10;            /* one bit */
		if (round == 2)
			memset(db + (size_t)bad_page * ps + 200, 0xab, 16); /* beyond ECC */
		if (round == 3)
			len -= 1000;                                         /* cut */
		write_file(src, db, len);
		unlink(dst);
		int in = open(src, O_RDONLY);
		int out = open(dst, O_RDWR | O_CREAT | O_EXCL, 0600);
		assert_true(in >= 0 && out >= 0);
		unsigned char scratch[8192];
		bk_pagecheck pc = {.page_size = ps, .first_damaged = UINT64_MAX, .scratch = scratch};
		bk_copy_hooks h = {.check = bk_pagecheck_chunk, .check_arg = &pc,
		                   .uncached = round & 1};
		char hex[65];
		uint64_t bytes = 0;
		assert_int_equal(bk_copy_fd_hooks(in, out, &bytes, hex, &h), 0);
		close(in);
		close(out);
		assert_int_equal(bytes, len);
		assert_int_equal(pc.pages, n);
		/* the copy hashed and checked again in one read (a streamed
		 * backup's files): the same hash, the same verdict, and the verdict
		 * as the verifier finds it in j->checked */
		unsigned char scratch2[8192];
		bk_pagecheck pc2 = {.page_size = ps, .first_damaged = UINT64_MAX, .scratch = scratch2};
		bk_copy_hooks h2 = {.check = bk_pagecheck_chunk, .check_arg = &pc2};
		char hex2[65];
		uint64_t bytes2 = 0;
		int cfd = open(dst, O_RDONLY);
		assert_true(cfd >= 0);
		assert_int_equal(bk_hash_fd_hooks(cfd, &bytes2, hex2, &h2), 0);
		close(cfd);
		assert_int_equal(bytes2, len);
		assert_string_equal(hex2, hex);
		assert_int_equal(pc2.pages, pc.pages);
		assert_int_equal(pc2.damaged, pc.damaged);
		assert_int_equal(pc2.corrected, pc.corrected);
		assert_int_equal(pc2.first_damaged, pc.first_damaged);
		bk_job j;
		memset(&j, 0, sizeof(j));
		assert_int_equal(bk_checked_put(&j, "data/w/db.edb", &pc2), 0);
		json_t *ck = json_object_get(j.checked, "data/w/db.edb");
		assert_non_null(ck);
		assert_int_equal(json_integer_value(json_object_get(ck, "pages")), n);
		assert_int_equal(json_integer_value(json_object_get(ck, "damaged")), pc2.damaged);
		assert_int_equal(json_integer_value(json_object_get(ck, "corrected")), pc2.corrected);
		assert_int_equal(json_integer_value(json_object_get(ck, "first_damaged")),
		                 pc2.damaged ? bad_page : 0);
		json_decref(j.checked);
		switch (round) {
		case 0:
			assert_int_equal(pc.damaged, 0);
			assert_int_equal(pc.corrected, 0);
			break;
		case 1:
			assert_int_equal(pc.damaged, 0);
			assert_int_equal(pc.corrected, 1);
			break;
		case 2:
			assert_int_equal(pc.damaged, 1);
			assert_int_equal(pc.first_damaged, bad_page);
			assert_non_null(strstr(pc.first_why, "checksum"));
			db[(size_t)bad_page * ps + 100] ^= 0x10;
			break;
		case 3:
			/* the damage of round 2 is still there, then the cut page */
			assert_int_equal(pc.damaged, 2);
			assert_int_equal(pc.first_damaged, bad_page);
			break;
		}
	}
	free(db);
}

/* A repository with one backup folder, as bk_run_backup makes it. */
static void job_open(bk_job *j, bk_repo *repo, const char *id)
{
	char path[128], err[512];
	snprintf(path, sizeof(path), "%s/repo", tmpdir);
	assert_int_equal(bk_repo_open(path, true, repo, err, sizeof(err)), 0);
	bk_job_init(j, repo, stderr, true);
	snprintf(j->id, sizeof(j->id), "%s", id);
	assert_int_equal(bk_dir_create(repo, j->id, err, sizeof(err)), 0);
	j->bdirfd = bk_dir_open(repo, j->id, err, sizeof(err));
	assert_true(j->bdirfd >= 0);
	j->doc = json_pack("{s:[]}", "files");
	assert_non_null(j->doc);
}

static void job_close(bk_job *j, bk_repo *repo)
{
	json_decref(j->doc);
	json_decref(j->checked);
	close(j->bdirfd);
	bk_repo_close(repo);
}

/* Many files of mixed sizes (more than BK_ADD_FILES_PARALLEL, small ones
 * and ones of several chunks, an empty one, a database checked while
 * copied) into one backup; then a batch with two missing sources. */
static void test_add_files(void **state)
{
	(void)state;
	enum { NF = 11 };
	const size_t sizes[NF] = {1 << 20, 0, 3 * BK_COPY_CHUNK + 777, 4096, 1 << 20, 12345,
	                          BK_COPY_CHUNK, 1, 2 * BK_COPY_CHUNK - 1, 65536, 0};
	unsigned char *data = malloc(4 * BK_COPY_CHUNK);
	unsigned char *back = malloc(4 * BK_COPY_CHUNK);
	assert_non_null(data);
	assert_non_null(back);
	char src[NF + 1][128], name[NF + 1][32], want[NF][65];
	bk_file_req reqs[NF + 1];
	for (int i = 0; i < NF; i++) {
		fill(data, sizes[i], SEED + 100 + (uint64_t)i);
		snprintf(name[i], sizeof(name[i]), "f%02d", i);
		snprintf(src[i], sizeof(src[i]), "%s/%s", tmpdir, name[i]);
		write_file(src[i], data, sizes[i]);
		sha_hex(data, sizes[i], want[i]);
		reqs[i] = (bk_file_req){.component = "", .role = "log", .src_path = src[i], .store_name = name[i], .target = name[i]};
	}
	/* and a database: its pages checked on the bytes copied */
	const uint32_t ps = 8192, np = 2 * (BK_COPY_CHUNK / ps) + 3;
	unsigned char *db = make_db(ps, np);
	snprintf(name[NF], sizeof(name[NF]), "db.edb");
	snprintf(src[NF], sizeof(src[NF]), "%s/db.edb", tmpdir);
	write_file(src[NF], db, (size_t)np * ps);
	free(db);
	reqs[NF] = (bk_file_req){.component = "db", .role = "database", .src_path = src[NF], .store_name = name[NF], .target = name[NF], .page_size = ps};

	bk_repo repo;
	bk_job j;
	job_open(&j, &repo, "20261122T000000Z-000001");
	char err[1024] = "";
	int rc = bk_add_files(&j, "w.00000000", "w", reqs, NF + 1, err, sizeof(err));
	if (rc)
		fail_msg("bk_add_files: %s", err);
	json_t *files = json_object_get(j.doc, "files");
	assert_int_equal(json_array_size(files), NF + 1);
	for (int i = 0; i <= NF; i++) {
		json_t *f = json_array_get(files, (size_t)i);
		char rel[128];
		snprintf(rel, sizeof(rel), "data/w.00000000/%s", name[i]);
		assert_string_equal(json_string_value(json_object_get(f, "path")), rel);
		assert_string_equal(json_string_value(json_object_get(f, "source")), src[i]);
		if (i == NF) {
			assert_string_equal(json_string_value(json_object_get(f, "role")), "database");
			json_t *ck = json_object_get(j.checked, rel);
			assert_non_null(ck);
			assert_int_equal(json_integer_value(json_object_get(ck, "pages")), np);
			assert_int_equal(json_integer_value(json_object_get(ck, "damaged")), 0);
			continue;
		}
		assert_int_equal(json_integer_value(json_object_get(f, "size")), sizes[i]);
		assert_string_equal(json_string_value(json_object_get(f, "sha256")), want[i]);
		/* the copy holds exactly the bytes */
		int fd = bk_openat_beneath(j.bdirfd, rel, O_RDONLY, 0);
		assert_true(fd >= 0);
		assert_int_equal(pread(fd, back, 4 * BK_COPY_CHUNK, 0), (ssize_t)sizes[i]);
		close(fd);
		fill(data, sizes[i], SEED + 100 + (uint64_t)i);
		assert_memory_equal(back, data, sizes[i]);
	}
	job_close(&j, &repo);

	/* two sources missing (the 4th and the 9th): the error names the 4th,
	 * and nothing is recorded */
	job_open(&j, &repo, "20261122T000000Z-000002");
	char gone3[160], gone8[160];
	snprintf(gone3, sizeof(gone3), "%s/gone-3", tmpdir);
	snprintf(gone8, sizeof(gone8), "%s/gone-8", tmpdir);
	reqs[3].src_path = gone3;
	reqs[8].src_path = gone8;
	err[0] = '\0';
	assert_int_equal(bk_add_files(&j, "w.00000000", "w", reqs, NF, err, sizeof(err)), 1);
	if (!strstr(err, gone3) || !strstr(err, "No such file"))
		fail_msg("error names the wrong file: %s", err);
	assert_int_equal(json_array_size(json_object_get(j.doc, "files")), 0);
	job_close(&j, &repo);
	free(data);
	free(back);
}

/*
 * The precopy (job.h, PRECOPY): five files copied in the background, then
 * matched against "shadow" paths: the same file (a hard link: same inode,
 * times and size) is taken; a byte-identical copy (another inode), a file
 * written after the precopy read it, a file the precopy could not read
 * and a name never precopied are not.  bk_precopy_discard() removes the
 * unmatched copies, so that bk_add_files() copies them from the shadow
 * (no EEXIST), and the document marks only the matched ones as read
 * before the snapshot, with the live path as their source.  A precopied
 * file that bk_precopy_match() cannot make durable (here: gone from the
 * backup before the match) is not matched and is copied from the shadow.
 * Run twice: with bk_precopy_sync_start() (the fsyncs on its threads,
 * none on the caller's during the matches) and without (the match
 * fsyncs the one file it takes).
 */
static void precopy_case(bool sync_first, const char *id)
{
	enum { NF = 6 };
	unsigned char *data = malloc(1 << 20);
	assert_non_null(data);
	char live[NF][128], shadow[NF][128], name[NF][32], want[NF][65];
	char ldir[128], sdir[128];
	snprintf(ldir, sizeof(ldir), "%s/live-%s", tmpdir, id);
	snprintf(sdir, sizeof(sdir), "%s/shadow-%s", tmpdir, id);
	assert_int_equal(mkdir(ldir, 0755), 0);
	assert_int_equal(mkdir(sdir, 0755), 0);
	bk_file_req pre[NF], reqs[NF];
	for (int i = 0; i < NF; i++) {
		fill(data, 1 << 20, SEED + 500 + (uint64_t)i);
		snprintf(name[i], sizeof(name[i]), "E000000000%d.log", i + 1);
		snprintf(live[i], sizeof(live[i]), "%s/%s", ldir, name[i]);
		snprintf(shadow[i], sizeof(shadow[i]), "%s/%s", sdir, name[i]);
		if (i != 3) /* the 4th cannot be read by the precopy */
			write_file(live[i], data, 1 << 20);
		sha_hex(data, 1 << 20, want[i]);
	}
	/* the 5th is not precopied */
	int npre = 0;
	for (int i = 0; i < NF; i++)
		if (i != 4)
			pre[npre++] = (bk_file_req){.src_path = live[i], .store_name = name[i]};
	/* the shadow's 1st, 3rd and 6th are the live files (hard links made
	 * now: a link changes the inode's change time) */
	assert_int_equal(link(live[0], shadow[0]), 0);
	assert_int_equal(link(live[2], shadow[2]), 0);
	assert_int_equal(link(live[5], shadow[5]), 0);
	bk_repo repo;
	bk_job j;
	job_open(&j, &repo, id);
	bk_precopy *p = NULL;
	assert_int_equal(bk_precopy_start(&j, "w.00000000", pre, (size_t)npre, &p), 0);
	assert_non_null(p);
	bk_precopy_stop(p, true);
	/* the shadow: 2nd a copy of the same bytes; 3rd written to after the
	 * precopy read it; 4th and 5th made now */
	fill(data, 1 << 20, SEED + 501);
	write_file(shadow[1], data, 1 << 20);
	usleep(20000); /* a later modification time, whatever its granularity */
	int fd = open(live[2], O_WRONLY);
	assert_true(fd >= 0);
	fill(data, 1 << 20, SEED + 502);
	assert_int_equal(pwrite(fd, data, 1, 0), 1); /* the same byte again */
	close(fd);
	for (int i = 3; i < 5; i++) {
		fill(data, 1 << 20, SEED + 500 + (uint64_t)i);
		write_file(shadow[i], data, 1 << 20);
	}
	/* the 6th lost from the backup before its match: the match's fsync
	 * cannot make it durable */
	char lost[PATH_MAX];
	snprintf(lost, sizeof(lost), "%s/backups/%s/data/w.00000000/%s", repo.root, j.id, name[5]);
	assert_int_equal(unlink(lost), 0);
	atomic_store(&fsyncs_caller, 0);
	atomic_store(&fsyncs_other, 0);
	if (sync_first)
		bk_precopy_sync_start(p);
	const bk_precopied *m[NF];
	for (int i = 0; i < NF; i++) {
		m[i] = bk_precopy_match(p, name[i], shadow[i]);
		reqs[i] = (bk_file_req){.component = "", .role = "log", .src_path = shadow[i],
		                        .store_name = name[i], .target = name[i], .pre = m[i]};
	}
	/* the 1st, 2nd and 3rd were copied whole and are still in the backup:
	 * synced on the threads; without them only the match of the 1st syncs */
	assert_int_equal(atomic_load(&fsyncs_caller), sync_first ? 0 : 1);
	assert_int_equal(atomic_load(&fsyncs_other), sync_first ? 3 : 0);
	assert_non_null(m[0]);
	assert_null(m[1]);
	assert_null(m[2]);
	assert_null(m[3]);
	assert_null(m[4]);
	assert_null(m[5]);
	assert_null(bk_precopy_match(p, name[0], shadow[0])); /* taken once */
	assert_int_equal(m[0]->bytes, 1 << 20);
	assert_string_equal(m[0]->hex, want[0]);
	assert_int_equal(bk_precopy_discard(p), 1);
	/* the unmatched copies are gone from the backup, the matched one kept */
	char rel[128];
	for (int i = 0; i < NF; i++) {
		snprintf(rel, sizeof(rel), "data/w.00000000/%s", name[i]);
		int f = bk_openat_beneath(j.bdirfd, rel, O_RDONLY, 0);
		if (i == 0)
			assert_true(f >= 0);
		else
			assert_int_equal(f, -ENOENT);
		if (f >= 0)
			close(f);
	}
	char err[1024] = "";
	int rc = bk_add_files(&j, "w.00000000", "w", reqs, NF, err, sizeof(err));
	if (rc)
		fail_msg("bk_add_files: %s", err);
	bk_precopy_free(p);
	json_t *files = json_object_get(j.doc, "files");
	assert_int_equal(json_array_size(files), NF);
	for (int i = 0; i < NF; i++) {
		json_t *f = json_array_get(files, (size_t)i);
		assert_string_equal(json_string_value(json_object_get(f, "source")),
		                    i == 0 ? live[0] : shadow[i]);
		assert_int_equal(json_is_true(json_object_get(f, "read_before_snapshot")), i == 0);
		assert_string_equal(json_string_value(json_object_get(f, "sha256")), want[i]);
	}
	job_close(&j, &repo);
	free(data);
}

static void test_precopy(void **state)
{
	(void)state;
	precopy_case(false, "20261122T000000Z-000003");
}

static void test_precopy_sync(void **state)
{
	(void)state;
	precopy_case(true, "20261122T000000Z-000004");
}

/*
 * A precopied file whose fsync fails (EIO, injected once) on
 * bk_precopy_sync_start()'s threads is not matched, although the shadow's
 * file is the same file, and bk_precopy_discard() removes it; the same
 * file is matched when its fsync succeeds.
 */
static void test_precopy_sync_eio(void **state)
{
	(void)state;
	unsigned char *data = malloc(1 << 20);
	assert_non_null(data);
	fill(data, 1 << 20, SEED + 600);
	char ldir[128], sdir[128], live[160], shadow[160];
	snprintf(ldir, sizeof(ldir), "%s/live-eio", tmpdir);
	snprintf(sdir, sizeof(sdir), "%s/shadow-eio", tmpdir);
	assert_int_equal(mkdir(ldir, 0755), 0);
	assert_int_equal(mkdir(sdir, 0755), 0);
	snprintf(live, sizeof(live), "%s/E0000000001.log", ldir);
	snprintf(shadow, sizeof(shadow), "%s/E0000000001.log", sdir);
	write_file(live, data, 1 << 20);
	assert_int_equal(link(live, shadow), 0);
	bk_file_req pre = {.src_path = live, .store_name = "E0000000001.log"};
	static const char *const ids[] = {"20261122T000000Z-000005", "20261122T000000Z-000006"};
	for (int fail = 1; fail >= 0; fail--) {
		bk_repo repo;
		bk_job j;
		job_open(&j, &repo, ids[fail]);
		bk_precopy *p = NULL;
		assert_int_equal(bk_precopy_start(&j, "w.00000000", &pre, 1, &p), 0);
		bk_precopy_stop(p, true);
		char copy[PATH_MAX];
		snprintf(copy, sizeof(copy), "%s/backups/%s/data/w.00000000/E0000000001.log",
		         repo.root, j.id);
		pthread_mutex_lock(&fail_mu);
		snprintf(fail_once, sizeof(fail_once), "%s", fail ? copy : "");
		pthread_mutex_unlock(&fail_mu);
		bk_precopy_sync_start(p);
		const bk_precopied *m = bk_precopy_match(p, "E0000000001.log", shadow);
		assert_true(fail ? m == NULL : m != NULL);
		assert_int_equal(fail_once[0], '\0'); /* the injected failure was met */
		assert_int_equal(bk_precopy_discard(p), fail ? 0 : 1);
		struct stat st;
		assert_int_equal(stat(copy, &st) == 0, !fail);
		bk_precopy_free(p);
		job_close(&j, &repo);
	}
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copy_sizes),
		cmocka_unit_test(test_copy_errors),
		cmocka_unit_test(test_pagecheck),
		cmocka_unit_test(test_add_files),
		cmocka_unit_test(test_precopy),
		cmocka_unit_test(test_precopy_sync),
		cmocka_unit_test(test_precopy_sync_eio),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

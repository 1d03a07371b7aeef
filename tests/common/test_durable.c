/*
 * test_durable.c - the durable-write helper (src/common/durable.h) against
 * power loss at every sync point and against failing calls.
 *
 * The writes go through the recording faultvfs (tests/harness/faultvfs.h);
 * for every sync point k and every crash variant the disk image a power
 * loss just before k could leave is rebuilt and read back:
 *
 *   - amb_durable_write: PATH holds the old or the new content whole,
 *     never a mixture, and the new one once the call returned;
 *   - amb_durable_write_unsettled: makes no sync at all, so the file may be
 *     missing, empty or partial until amb_durable_settle() returned; from
 *     then on it is there whole in every image.
 *
 * And an injected failure of each call leaves PATH as it was and no
 * PATH.tmp behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/durable.h"
#include "common/vfs.h"
#include "faultvfs.h"

typedef struct fx {
	char *dir;  /* traced directory */
	char *imgs; /* where images are materialised */
	faultvfs *fv;
	amb_vfs *v;
	char path[4096];
} fx;

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->dir = faultvfs_tmpdir("durable");
	f->imgs = faultvfs_tmpdir("durable-img");
	assert_non_null(f->dir);
	assert_non_null(f->imgs);
	f->fv = faultvfs_new(f->dir, NULL, 0);
	assert_non_null(f->fv);
	f->v = faultvfs_vfs(f->fv);
	snprintf(f->path, sizeof(f->path), "%s/record", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	faultvfs_free(f->fv);
	faultvfs_rmtree(f->dir);
	faultvfs_rmtree(f->imgs);
	free(f->dir);
	free(f->imgs);
	free(f);
	return 0;
}

/* A content of n bytes that differs from every other seed's at each sector. */
static char *content(size_t n, int seed)
{
	char *b = malloc(n);
	assert_non_null(b);
	for (size_t i = 0; i < n; i++)
		b[i] = (char)('a' + (int)((i / 7 + (size_t)seed * 5) % 26));
	return b;
}

/* The file name in image directory img into *buf (malloc'd; NULL and -1
 * when it does not exist); returns its size. */
static ssize_t read_img(const char *img, const char *name, char **buf)
{
	char p[4200];
	snprintf(p, sizeof(p), "%s/%s", img, name);
	*buf = NULL;
	int fd = open(p, O_RDONLY);
	if (fd < 0) {
		assert_int_equal(errno, ENOENT);
		return -1;
	}
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	*buf = malloc((size_t)st.st_size + 1);
	assert_non_null(*buf);
	assert_int_equal(pread(fd, *buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	return st.st_size;
}

static const enum fv_crash VARIANTS[] = {FV_CRASH_NONE, FV_CRASH_ALL, FV_CRASH_RANDOM,
                                         FV_CRASH_GARBAGE};

/* Image k, variant v, seed into a fresh directory; returns its path. */
static const char *image(fx *f, size_t k, enum fv_crash v, uint64_t seed)
{
	static char img[4200];
	snprintf(img, sizeof(img), "%s/k%zu-v%d-s%llu", f->imgs, k, (int)v,
	         (unsigned long long)seed);
	assert_int_equal(faultvfs_materialise(f->fv, k, v, seed, img), 0);
	return img;
}

static void test_write_old_or_new_at_every_sync_point(void **state)
{
	fx *f = *state;
	const size_t n_old = 3000, n_new = 5000; /* several sectors each */
	char *a = content(n_old, 1), *b = content(n_new, 2);
	assert_int_equal(faultvfs_trace_start(f->fv), 0);
	assert_int_equal(amb_durable_write(f->v, f->path, a, n_old), 0);
	size_t after_a = faultvfs_mark(f->fv, "first written");
	assert_int_equal(amb_durable_write(f->v, f->path, b, n_new), 0);
	size_t after_b = faultvfs_mark(f->fv, "second written");
	size_t n = faultvfs_nsyncs(f->fv);
	/* each call: fsync of the temporary file, fsync of the directory */
	assert_int_equal(n, 4);
	assert_true(after_a == 2 && after_b == 4);
	int seen_old = 0, seen_new = 0, seen_none = 0;
	for (size_t k = 0; k <= n; k++) {
		for (size_t vi = 0; vi < sizeof(VARIANTS) / sizeof(VARIANTS[0]); vi++) {
			for (uint64_t seed = 1; seed <= (VARIANTS[vi] >= FV_CRASH_RANDOM ? 8u : 1u);
			     seed++) {
				char *got;
				ssize_t len = read_img(image(f, k, VARIANTS[vi], seed), "record", &got);
				if (len < 0) {
					/* only before the first call returned */
					assert_true(k < after_a);
					seen_none++;
				} else if ((size_t)len == n_old && memcmp(got, a, n_old) == 0) {
					assert_true(k < after_b); /* never after the second returned */
					seen_old++;
				} else {
					assert_int_equal((size_t)len, n_new);
					assert_memory_equal(got, b, n_new);
					assert_true(k >= after_a); /* never before the first one */
					seen_new++;
				}
				free(got);
			}
		}
	}
	/* the images did cover all three outcomes */
	assert_true(seen_none > 0 && seen_old > 0 && seen_new > 0);
	free(a);
	free(b);
}

static void test_unsettled_then_settle(void **state)
{
	fx *f = *state;
	const size_t len = 2500;
	char *a = content(len, 3);
	assert_int_equal(faultvfs_trace_start(f->fv), 0);
	faultvfs_reset_counts(f->fv);
	assert_int_equal(amb_durable_write_unsettled(f->v, f->path, a, len), 0);
	/* no sync of any kind: that is the point of it */
	assert_int_equal(faultvfs_count(f->fv, FV_SYNC), 0);
	assert_int_equal(faultvfs_count(f->fv, FV_SYNC_DIR), 0);
	assert_int_equal(faultvfs_nsyncs(f->fv), 0);
	/* readable at once, and renamed into place (no temporary file left) */
	char *got;
	assert_int_equal(read_img(f->dir, "record", &got), (ssize_t)len);
	assert_memory_equal(got, a, len);
	free(got);
	assert_int_equal(read_img(f->dir, "record.tmp", &got), -1);
	/* a power loss now: with nothing unsynced applied, it is gone */
	assert_int_equal(read_img(image(f, 0, FV_CRASH_NONE, 0), "record", &got), -1);

	assert_int_equal(amb_durable_settle(f->v, f->path), 0);
	size_t settled = faultvfs_mark(f->fv, "settled");
	size_t n = faultvfs_nsyncs(f->fv);
	assert_int_equal(n, 2); /* the file, then its directory */
	assert_int_equal(settled, n);
	int whole = 0, missing_or_partial = 0;
	for (size_t k = 0; k <= n; k++) {
		for (size_t vi = 0; vi < sizeof(VARIANTS) / sizeof(VARIANTS[0]); vi++) {
			for (uint64_t seed = 1; seed <= (VARIANTS[vi] >= FV_CRASH_RANDOM ? 8u : 1u);
			     seed++) {
				ssize_t l = read_img(image(f, k, VARIANTS[vi], seed), "record", &got);
				int ok = l == (ssize_t)len && memcmp(got, a, len) == 0;
				if (k >= settled)
					assert_true(ok); /* settled: there whole, whatever the crash */
				whole += ok;
				missing_or_partial += !ok;
				free(got);
			}
		}
	}
	/* before the settle some images lack it: unsettled is really unsettled */
	assert_true(missing_or_partial > 0);
	assert_true(whole > 0);
	free(a);
}

/* Each call of amb_durable_write_unsettled failing: PATH as it was (the old
 * content), no temporary file. */
static void test_unsettled_failures_leave_path_alone(void **state)
{
	fx *f = *state;
	const char *old = "old content\n", *new = "new content, longer\n";
	const enum fv_kind kinds[] = {FV_OPEN_CREATE, FV_WRITE, FV_RENAME};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		faultvfs_clear(f->fv);
		assert_int_equal(amb_durable_write(f->v, f->path, old, strlen(old)), 0);
		faultvfs_reset_counts(f->fv);
		faultvfs_fail(f->fv, kinds[i], 1, EIO, 0);
		assert_int_equal(amb_durable_write_unsettled(f->v, f->path, new, strlen(new)), -EIO);
		assert_int_equal(faultvfs_fired(f->fv), 1);
		char *got;
		assert_int_equal(read_img(f->dir, "record", &got), (ssize_t)strlen(old));
		assert_memory_equal(got, old, strlen(old));
		free(got);
		assert_int_equal(read_img(f->dir, "record.tmp", &got), -1);
	}
}

/* amb_durable_settle passes on the failure of either sync, and of a
 * missing file. */
static void test_settle_failures(void **state)
{
	fx *f = *state;
	assert_int_equal(amb_durable_write_unsettled(f->v, f->path, "x\n", 2), 0);
	faultvfs_reset_counts(f->fv);
	faultvfs_fail(f->fv, FV_SYNC, 1, EIO, 0);
	assert_int_equal(amb_durable_settle(f->v, f->path), -EIO);
	assert_int_equal(faultvfs_count(f->fv, FV_SYNC_DIR), 0); /* stops at the first */
	faultvfs_clear(f->fv);
	faultvfs_reset_counts(f->fv);
	faultvfs_fail(f->fv, FV_SYNC_DIR, 1, ENOSPC, 0);
	assert_int_equal(amb_durable_settle(f->v, f->path), -ENOSPC);
	faultvfs_clear(f->fv);
	assert_int_equal(amb_durable_settle(f->v, f->path), 0);
	char missing[4200];
	snprintf(missing, sizeof(missing), "%s/none", f->dir);
	assert_int_equal(amb_durable_settle(f->v, missing), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_old_or_new_at_every_sync_point, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_unsettled_then_settle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsettled_failures_leave_path_alone, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_settle_failures, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

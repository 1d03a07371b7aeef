/*
 * test_vfs.c - unit tests of the small helpers of src/common/vfs.{h,c}.
 *
 * What must hold (vfs.h):
 *   - amb_io_alloc() returns memory aligned to 4096 bytes for every size
 *     (0 included), usable for its whole length and released by free();
 *     a pread through amb_vfs_posix() into it returns the file's bytes;
 *   - amb_path_dir() gives the directory part of a path, "." without one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vfs.h"

static void test_io_alloc_aligned(void **state)
{
	(void)state;
	static const size_t sizes[] = {0, 1, 16, 4095, 4096, 4097, 8192, 32768, 4u << 20};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		/* several at once: malloc's neighbours would be 16 bytes apart */
		unsigned char *p[4];
		for (int k = 0; k < 4; k++) {
			p[k] = amb_io_alloc(sizes[i]);
			assert_non_null(p[k]);
			assert_int_equal((uintptr_t)p[k] % 4096, 0);
			memset(p[k], 0xa5, sizes[i]);
		}
		for (int k = 0; k < 4; k++)
			free(p[k]);
	}
}

static void test_io_alloc_pread(void **state)
{
	(void)state;
	char path[] = "/tmp/amber-test-vfs-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	unsigned char src[3 * 4096];
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (unsigned char)(i * 7 + 3);
	assert_int_equal(write(fd, src, sizeof(src)), (ssize_t)sizeof(src));
	amb_vfs *v = amb_vfs_posix();
	unsigned char *buf = amb_io_alloc(sizeof(src));
	assert_non_null(buf);
	assert_int_equal(v->pread(v, fd, buf, sizeof(src), 0), (ssize_t)sizeof(src));
	assert_memory_equal(buf, src, sizeof(src));
	/* short at the end of the file */
	assert_int_equal(v->pread(v, fd, buf, sizeof(src), 4096), (ssize_t)(2 * 4096));
	assert_memory_equal(buf, src + 4096, 2 * 4096);
	free(buf);
	close(fd);
}

static void test_path_dir(void **state)
{
	(void)state;
	char b[64];
	amb_path_dir("/a/b/E00.log", b, sizeof(b));
	assert_string_equal(b, "/a/b");
	amb_path_dir("E00.log", b, sizeof(b));
	assert_string_equal(b, ".");
	amb_path_dir("/E00.log", b, sizeof(b));
	assert_string_equal(b, "/");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_io_alloc_aligned),
		cmocka_unit_test(test_io_alloc_pread),
		cmocka_unit_test(test_path_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

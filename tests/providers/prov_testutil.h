/*
 * prov_testutil.h - helpers of the provider tests: a sample tree built from
 * a fixed table (every file type the providers handle), checks of a shadow
 * against that table and against its source, deterministic file contents.
 * Helpers fail the running cmocka test on any error.
 */
#ifndef AMBER_TESTS_PROV_TESTUTIL_H
#define AMBER_TESTS_PROV_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* byte o of the stream with this seed */
void tu_gen(unsigned char *buf, uint64_t off, size_t len, uint64_t seed);

/* write/verify: whole file == stream(seed)[0..size) */
void tu_write_gen(const char *path, size_t size, uint64_t seed);
bool tu_file_is_gen(const char *path, size_t size, uint64_t seed);

/* what tu_make_tree could build (xattrs and root-only entries depend on
 * the filesystem and the user) */
typedef struct tu_tree {
	bool root;         /* chown'd file, device node, socket */
	bool xattr_user;   /* user.* xattrs were set */
	bool xattr_trusted;/* trusted.* xattrs were set */
} tu_tree;

/* build the sample tree in the existing empty directory dir */
void tu_make_tree(const char *dir, tu_tree *out);

/* the tree at dir matches the table (types, modes, owners, sizes,
 * contents, targets, times, hard links, xattrs) */
void tu_check_tree(const char *dir, const tu_tree *t);

/* change the sample tree at dir in every way (data, size, names, modes) */
void tu_mutate_tree(const char *dir);

/* the two trees are equal (as tu_check_tree compares); a top-level entry
 * named skip (or NULL) is only checked to be an empty directory in b */
void tu_compare_trees(const char *a, const char *b, const char *skip);

/* every data extent of path is shared (FIEMAP_EXTENT_SHARED) and there is
 * at least one */
bool tu_extents_shared(const char *path);

/* rm -rf that works as non-root on read-only directories */
void tu_rm_rf(const char *path);

/* path exists (lstat) */
bool tu_exists(const char *path);

/* snprintf into a static rotating buffer */
const char *tu_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

/*
 * test_provider_api.c - the provider interface without special
 * filesystems or privileges: the registry, automatic choice and its
 * errors, the copy provider end to end on a temporary directory, the
 * sidecar rules (prepare leaves nothing on failure, remove only deletes
 * amber shadows, remove is idempotent), and fsfreeze's argument checks.
 * The btrfs, reflink and FIFREEZE paths need root and loop filesystems:
 * test_providers_fs.c and freeze_test.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
// cmocka needs the headers above
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prov_testutil.h"
#include "providers/fsfreeze.h"
#include "providers/provider.h"

static char base[PATH_MAX];
static char vol[PATH_MAX];
static char shadows[PATH_MAX];

static int setup(void **state)
{
	(void)state;
	const char *tmp = getenv("TMPDIR");
	snprintf(base, sizeof(base), "%s/amber-prov-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(base))
		return -1;
	snprintf(vol, sizeof(vol), "%s/vol", base);
	snprintf(shadows, sizeof(shadows), "%s/shadows", base);
	if (mkdir(vol, 0755) != 0 || mkdir(shadows, 0755) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_rm_rf(base);
	return 0;
}

#define assert_msg_has(s) \
	do { \
		if (!strstr(amb_provider_errmsg(), (s))) \
			fail_msg("message \"%s\" lacks \"%s\"", amb_provider_errmsg(), (s)); \
	} while (0)

static void test_registry(void **state)
{
	(void)state;
	assert_int_equal(amb_provider_count(), 3);
	assert_string_equal(amb_provider_at(0)->name, "btrfs");
	assert_string_equal(amb_provider_at(1)->name, "reflink");
	assert_string_equal(amb_provider_at(2)->name, "copy");
	assert_null(amb_provider_at(3));
	assert_null(amb_provider_find("zfs"));
	assert_null(amb_provider_find(NULL));
	const amb_provider *b = amb_provider_find("btrfs");
	const amb_provider *r = amb_provider_find("reflink");
	const amb_provider *c = amb_provider_find("copy");
	assert_true(b->atomic && b->read_only_shadow && b->shadow_same_fs);
	assert_false(b->holds_writes_during_copy || b->needs_fsfreeze || b->can_fsfreeze);
	assert_true(r->shadow_same_fs && !r->atomic && !r->holds_writes_during_copy);
	assert_true(c->holds_writes_during_copy && c->can_fsfreeze && !c->shadow_same_fs);
	for (size_t i = 0; i < 3; i++) {
		assert_true(amb_provider_at(i)->persistent_capable);
		assert_non_null(amb_provider_at(i)->description);
	}
	assert_non_null(strstr(c->description, "holds writes"));
}

static void test_choose_errors(void **state)
{
	(void)state;
	const amb_provider *p = (const amb_provider *)1;
	assert_int_equal(amb_provider_choose(vol, NULL, NULL), -EINVAL);
	assert_int_equal(amb_provider_choose(NULL, NULL, &p), -EINVAL);
	assert_null(p);
	assert_int_equal(amb_provider_choose("relative/dir", NULL, &p), -EINVAL);
	assert_msg_has("must be absolute");
	const char *missing = tu_path("%s/missing", base);
	assert_int_equal(amb_provider_choose(missing, NULL, &p), -ENOENT);
	assert_msg_has(missing);
	assert_msg_has("no such volume");
	const char *file = tu_path("%s/file", base);
	tu_write_gen(file, 10, 1);
	assert_int_equal(amb_provider_choose(file, NULL, &p), -ENOTDIR);
	assert_msg_has("is not a directory");
	assert_int_equal(amb_provider_choose(file, "copy", &p), -ENOTDIR);
	assert_int_equal(amb_provider_choose(vol, "zfs", &p), -EINVAL);
	assert_msg_has("unknown provider zfs");
	/* automatic choice always finds one for a directory */
	assert_int_equal(amb_provider_choose(vol, NULL, &p), 0);
	assert_non_null(p);
	assert_int_equal(amb_provider_choose(vol, "copy", &p), 0);
	assert_ptr_equal(p, amb_provider_find("copy"));
	/* btrfs on a directory that is not a subvolume (whatever /tmp is) */
	assert_int_equal(amb_provider_choose(vol, "btrfs", &p), -EOPNOTSUPP);
	assert_null(p);
	assert_msg_has("btrfs: ");
	assert_msg_has(vol);
	assert_int_equal(amb_provider_supports(NULL, vol), -EINVAL);
	assert_int_equal(amb_provider_supports(amb_provider_find("copy"), missing), -ENOENT);
}

static void test_copy_end_to_end(void **state)
{
	(void)state;
	const amb_provider *cp = amb_provider_find("copy");
	tu_tree t;
	tu_make_tree(vol, &t);
	tu_check_tree(vol, &t);
	const char *sh = tu_path("%s/c1", shadows);
	char shadow[PATH_MAX];
	snprintf(shadow, sizeof(shadow), "%s", sh);

	assert_int_equal(amb_provider_prepare(cp, vol, shadow), 0);
	amb_shadow_info info;
	assert_int_equal(amb_provider_shadow_info(shadow, &info), 0);
	assert_ptr_equal(info.provider, cp);
	assert_int_equal(info.state, AMB_SHADOW_PREPARED);
	assert_string_equal(info.volume, vol);

	assert_int_equal(amb_provider_commit(cp, vol, shadow), 0);
	tu_compare_trees(vol, shadow, NULL);
	tu_check_tree(shadow, &t);
	/* a second commit into the same shadow would mix two copies */
	assert_int_equal(amb_provider_commit(cp, vol, shadow), -EINVAL);
	assert_msg_has("not empty");

	assert_int_equal(amb_provider_post_commit(cp, shadow), 0);
	assert_int_equal(amb_provider_shadow_info(shadow, &info), 0);
	assert_int_equal(info.state, AMB_SHADOW_COMMITTED);
	assert_int_equal(amb_provider_post_commit(amb_provider_find("reflink"), shadow), -EINVAL);

	/* holes stay holes */
	struct stat st;
	assert_int_equal(stat(tu_path("%s/sparse", shadow), &st), 0);
	assert_true(st.st_blocks * 512 < 1024 * 1024);

	/* the source changes, the shadow does not */
	tu_mutate_tree(vol);
	tu_check_tree(shadow, &t);

	assert_int_equal(amb_provider_remove(shadow), 0);
	assert_false(tu_exists(shadow));
	assert_false(tu_exists(tu_path("%s.amber-shadow", shadow)));
	assert_int_equal(amb_provider_remove(shadow), -ENOENT);
}

/* A copy shadow is made in prepare (its directory), so its sidecar is never
 * left unsettled; a damaged sidecar keeps its shadow from being deleted,
 * and without a shadow (a crash before an unsettled sidecar reached the
 * disk) it is removed. */
static void test_unsettled_and_damaged_sidecar(void **state)
{
	(void)state;
	const amb_provider *cp = amb_provider_find("copy");
	char sh[PATH_MAX], side[PATH_MAX + 32];
	snprintf(sh, sizeof(sh), "%s", tu_path("%s/u1", shadows));
	snprintf(side, sizeof(side), "%s.amber-shadow", sh);
	bool unsettled = true;
	assert_int_equal(amb_provider_prepare_unsettled(cp, vol, sh, NULL), -EINVAL);
	assert_int_equal(amb_provider_prepare_unsettled(cp, vol, sh, &unsettled), 0);
	assert_false(unsettled);
	assert_true(tu_exists(sh));
	assert_int_equal(amb_provider_settle(sh), 0); /* harmless when settled */

	/* damaged (as a crash could leave an unsettled one): the shadow exists,
	 * so nothing is deleted */
	assert_int_equal(truncate(side, 0), 0);
	amb_shadow_info info;
	assert_int_equal(amb_provider_shadow_info(sh, &info), -EINVAL);
	assert_msg_has("damaged shadow record");
	assert_int_equal(amb_provider_remove(sh), -EINVAL);
	assert_true(tu_exists(sh));
	assert_true(tu_exists(side));
	/* no shadow: the damaged sidecar is removed */
	assert_int_equal(rmdir(sh), 0);
	assert_int_equal(amb_provider_remove(sh), 0);
	assert_false(tu_exists(side));
	assert_int_equal(amb_provider_remove(sh), -ENOENT);
	/* half a record, no shadow: removed too */
	int fd = open(side, O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "amber-shadow 1\nprov", 20), 20);
	close(fd);
	assert_int_equal(amb_provider_remove(sh), 0);
	assert_false(tu_exists(side));
	assert_int_equal(amb_provider_settle(sh), -ENOENT);
	assert_int_equal(amb_provider_settle("relative"), -EINVAL);
}

static void test_prepare_errors(void **state)
{
	(void)state;
	const amb_provider *cp = amb_provider_find("copy");
	tu_write_gen(tu_path("%s/a", vol), 100, 2);
	assert_int_equal(amb_provider_prepare(NULL, vol, "/x"), -EINVAL);
	assert_int_equal(amb_provider_prepare(cp, vol, NULL), -EINVAL);
	assert_int_equal(amb_provider_prepare(cp, vol, "rel"), -EINVAL);
	assert_int_equal(amb_provider_prepare(cp, vol, "/"), -EINVAL);
	assert_int_equal(amb_provider_prepare(cp, vol, tu_path("%s/a\nb", shadows)), -EINVAL);
	assert_msg_has("newline");
	/* the shadow exists */
	assert_int_equal(amb_provider_prepare(cp, vol, shadows), -EEXIST);
	assert_msg_has("already exists");
	/* its parent is missing / not a directory */
	assert_int_equal(amb_provider_prepare(cp, vol, tu_path("%s/no/s", base)), -ENOENT);
	assert_int_equal(amb_provider_prepare(cp, vol, tu_path("%s/a/s", vol)), -ENOTDIR);
	/* directly inside the volume */
	assert_int_equal(amb_provider_prepare(cp, vol, tu_path("%s/s", vol)), -EINVAL);
	assert_msg_has("directly in the volume");
	assert_false(tu_exists(tu_path("%s/s.amber-shadow", vol)));
	/* btrfs refuses a plain directory and leaves nothing behind */
	const char *s = tu_path("%s/b1", shadows);
	assert_int_equal(amb_provider_prepare(amb_provider_find("btrfs"), vol, s), -EOPNOTSUPP);
	assert_false(tu_exists(s));
	assert_false(tu_exists(tu_path("%s.amber-shadow", s)));
	/* a stale record blocks the name */
	const char *s2 = tu_path("%s/s2", shadows);
	int fd = open(tu_path("%s.amber-shadow", s2), O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(amb_provider_prepare(cp, vol, s2), -EEXIST);
	/* and it is damaged */
	amb_shadow_info info;
	assert_int_equal(amb_provider_shadow_info(s2, &info), -EINVAL);
	assert_msg_has("damaged");
	/* commit without prepare */
	assert_int_equal(amb_provider_commit(cp, vol, tu_path("%s/s3", shadows)), -EINVAL);
	assert_msg_has("was not prepared");
	assert_int_equal(amb_provider_post_commit(cp, tu_path("%s/s3", shadows)), -ENOENT);
}

static void test_remove_rules(void **state)
{
	(void)state;
	const amb_provider *cp = amb_provider_find("copy");
	/* a directory without a record is not ours: never deleted */
	const char *mine = tu_path("%s/precious", shadows);
	assert_int_equal(mkdir(mine, 0755), 0);
	tu_write_gen(tu_path("%s/data", mine), 10, 3);
	assert_int_equal(amb_provider_remove(mine), -EINVAL);
	assert_msg_has("not an amber shadow");
	assert_true(tu_exists(tu_path("%s/data", mine)));
	assert_int_equal(amb_provider_remove("relative"), -EINVAL);
	assert_int_equal(amb_provider_remove(tu_path("%s/none", shadows)), -ENOENT);

	/* prepared but never committed */
	tu_write_gen(tu_path("%s/f", vol), 1000, 4);
	const char *s = tu_path("%s/p1", shadows);
	char sh[PATH_MAX];
	snprintf(sh, sizeof(sh), "%s", s);
	assert_int_equal(amb_provider_prepare(cp, vol, sh), 0);
	assert_true(tu_exists(sh));
	assert_int_equal(amb_provider_remove(sh), 0);
	assert_false(tu_exists(sh));

	/* a crash after the shadow went but before its record did */
	assert_int_equal(amb_provider_prepare(cp, vol, sh), 0);
	assert_int_equal(amb_provider_commit(cp, vol, sh), 0);
	tu_rm_rf(sh);
	assert_int_equal(amb_provider_remove(sh), 0);
	assert_false(tu_exists(tu_path("%s.amber-shadow", sh)));

	/* trailing slashes name the same shadow */
	assert_int_equal(amb_provider_prepare(cp, vol, tu_path("%s//", sh)), 0);
	assert_true(tu_exists(tu_path("%s.amber-shadow", sh)));
	assert_int_equal(amb_provider_remove(tu_path("%s/", sh)), 0);
	assert_false(tu_exists(sh));
}

static void test_shadow_store_inside_volume(void **state)
{
	(void)state;
	const amb_provider *cp = amb_provider_find("copy");
	tu_tree t;
	tu_make_tree(vol, &t);
	const char *store = tu_path("%s/.shadows", vol);
	char st[PATH_MAX], s1[PATH_MAX], s2[PATH_MAX];
	snprintf(st, sizeof(st), "%s", store);
	assert_int_equal(mkdir(st, 0700), 0);
	snprintf(s1, sizeof(s1), "%s/s1", st);
	snprintf(s2, sizeof(s2), "%s/s2", st);
	assert_int_equal(amb_provider_prepare(cp, vol, s1), 0);
	assert_int_equal(amb_provider_commit(cp, vol, s1), 0);
	assert_int_equal(amb_provider_post_commit(cp, s1), 0);
	tu_check_tree(s1, &t);
	assert_int_equal(amb_provider_prepare(cp, vol, s2), 0);
	assert_int_equal(amb_provider_commit(cp, vol, s2), 0);
	/* the store is an empty directory in each shadow: no shadow of a
	 * shadow */
	tu_compare_trees(s1, s2, ".shadows");
	assert_false(tu_exists(tu_path("%s/.shadows/s1", s2)));
	assert_int_equal(amb_provider_remove(s2), 0);
	assert_int_equal(amb_provider_remove(s1), 0);
}

static void test_can_fsfreeze(void **state)
{
	(void)state;
	const char *s = tu_path("%s/x", shadows);
	/* same filesystem: a freeze would block the copy's own writes */
	assert_int_equal(amb_provider_can_fsfreeze(amb_provider_find("copy"), vol, s), 0);
	assert_int_equal(amb_provider_can_fsfreeze(amb_provider_find("reflink"), vol, s), 0);
	assert_int_equal(amb_provider_can_fsfreeze(amb_provider_find("btrfs"), vol, s), 0);
	assert_int_equal(amb_provider_can_fsfreeze(NULL, vol, s), -EINVAL);
}

static void test_fsfreeze_args(void **state)
{
	(void)state;
	amb_freeze *h = (amb_freeze *)1;
	assert_int_equal(amb_fsfreeze(vol, 1000, NULL), -EINVAL);
	assert_int_equal(amb_fsfreeze(NULL, 1000, &h), -EINVAL);
	assert_null(h);
	assert_int_equal(amb_fsfreeze(vol, 0, &h), -EINVAL);
	assert_msg_has("out of range");
	assert_int_equal(amb_fsfreeze(vol, AMB_FREEZE_MAX_MS + 1, &h), -EINVAL);
	assert_int_equal(amb_fsfreeze(tu_path("%s/missing", base), 1000, &h), -ENOENT);
	assert_int_equal(amb_fsthaw(NULL), 0);
	assert_int_equal(amb_freeze_guard_pid(NULL), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_registry),
		cmocka_unit_test_setup_teardown(test_choose_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_end_to_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsettled_and_damaged_sidecar, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prepare_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shadow_store_inside_volume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_can_fsfreeze, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fsfreeze_args, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

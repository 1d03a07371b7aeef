/*
 * test_repo.c - the repository code (src/backup/repo.c, chain.c) against
 * bad and hostile input: ids, relative paths, backup documents,
 * manifests, chains.
 */
#include <errno.h>
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

#include "backup/chain.h"
#include "backup/job.h"
#include "backup/repo.h"

/*
 * -Wl,--wrap=fsync,--wrap=fdatasync (CMakeLists.txt): the paths synced, in
 * order, so that a test can check which names a step makes durable; and a
 * sync of fail_sync's path fails with EIO (a failure a test cannot cause
 * for real).
 */
#define MAX_SYNCED 64
static char synced[MAX_SYNCED][768];
static int nsynced;
static char fail_sync[768];
int __real_fsync(int fd);
int __real_fdatasync(int fd);
int __wrap_fsync(int fd);
int __wrap_fdatasync(int fd);

/* Note fd's path; false (errno EIO) if its sync is to fail. */
static bool note_sync(int fd)
{
	char l[64], path[768];
	snprintf(l, sizeof(l), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(l, path, sizeof(path) - 1);
	if (n < 0)
		return true;
	path[n] = '\0';
	if (nsynced < MAX_SYNCED)
		memcpy(synced[nsynced++], path, (size_t)n + 1);
	if (fail_sync[0] && !strcmp(path, fail_sync)) {
		errno = EIO;
		return false;
	}
	return true;
}

int __wrap_fsync(int fd)
{
	return note_sync(fd) ? __real_fsync(fd) : -1;
}

int __wrap_fdatasync(int fd)
{
	return note_sync(fd) ? __real_fdatasync(fd) : -1;
}

/* Was path synced since nsynced was last reset? */
static bool was_synced(const char *path)
{
	for (int i = 0; i < nsynced; i++)
		if (!strcmp(synced[i], path))
			return true;
	return false;
}

static void test_ids(void **state)
{
	(void)state;
	char id[BK_ID_BUF];
	bk_new_id(id);
	assert_true(bk_id_ok(id));
	/* ids sort by start time, also within one second */
	for (int i = 0; i < 5; i++) {
		char next[BK_ID_BUF];
		usleep(2000);
		bk_new_id(next);
		assert_true(bk_id_ok(next));
		assert_true(strcmp(id, next) < 0);
		memcpy(id, next, sizeof(id));
	}
	assert_true(bk_id_ok("20261122T100000Z-0a1b2c"));
	assert_false(bk_id_ok("20261122T100000Z-0A1B2C"));   /* upper-case hex */
	assert_false(bk_id_ok("20261122X100000Z-0a1b2c"));
	assert_false(bk_id_ok("20261122T100000Z-0a1b2"));    /* short */
	assert_false(bk_id_ok("../../etc/passwd-00000000"));
	assert_false(bk_id_ok(""));
	assert_false(bk_id_ok(NULL));
}

static void test_relpath(void **state)
{
	(void)state;
	char err[256];
	assert_true(bk_relpath_ok("data/amber-store.1234/priv1.edb", err, sizeof(err)));
	const char *bad[] = {"", "/etc/passwd", "data/../x", "data/a/../../x", "data//x", "data/./x",
	                     "x/data/y", "data/a\nb", "data/..", "data/a/", "datax/y"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_false(bk_relpath_ok(bad[i], err, sizeof(err)));
		assert_true(err[0] != '\0');
	}
	assert_true(bk_name_ok("priv1.edb"));
	assert_false(bk_name_ok(".."));
	assert_false(bk_name_ok("a/b"));
	assert_false(bk_name_ok(""));
}

static json_t *good_doc(const char *id)
{
	return json_pack("{s:s, s:i, s:s, s:s, s:s, s:b, s:n, s:[{s:s, s:s, s:s, s:s, s:I, s:s}],"
	                 " s:[{s:s, s:s, s:{s:s, s:[s]}}]}",
	                 "format", "amber-backup", "version", 1, "id", id, "type", "full",
	                 "status", "complete", "verified", 1, "parent",
	                 "files", "writer", "amber-store", "path", "data/w.1/priv1.edb", "target",
	                 "priv1.edb", "role", "database", "size", (json_int_t)8192, "sha256", "x",
	                 "writers", "name", "amber-store", "dir", "/srv/sg1", "store", "prefix", "E00",
	                 "databases", "priv1.edb");
}

static void test_doc_check(void **state)
{
	(void)state;
	const char *id = "20261122T100000Z-0a1b2c";
	char err[1024];
	json_t *d = good_doc(id);
	assert_non_null(d);
	assert_int_equal(bk_doc_check(d, id, err, sizeof(err)), 0);
	/* the id must match the folder */
	assert_int_equal(bk_doc_check(d, "20261122T100000Z-ffffff", err, sizeof(err)), 2);

	/* hostile fields, one at a time */
	const char *paths[] = {"data/../../etc/passwd", "/etc/passwd", "data/a/../../b"};
	for (size_t i = 0; i < 3; i++) {
		json_t *c = json_deep_copy(d);
		json_object_set_new(json_array_get(json_object_get(c, "files"), 0), "path",
		                    json_string(paths[i]));
		assert_int_equal(bk_doc_check(c, id, err, sizeof(err)), 2);
		assert_non_null(strstr(err, "files[0].path"));
		json_decref(c);
	}
	const char *targets[] = {"../x.edb", "/etc/x.edb", "a/../../x"};
	for (size_t i = 0; i < 3; i++) {
		json_t *c = json_deep_copy(d);
		json_object_set_new(json_array_get(json_object_get(c, "files"), 0), "target",
		                    json_string(targets[i]));
		assert_int_equal(bk_doc_check(c, id, err, sizeof(err)), 2);
		assert_non_null(strstr(err, "files[0].target"));
		json_decref(c);
	}
	const char *dirs[] = {"relative/dir", "/srv/../etc", "/srv/sg1/.."};
	for (size_t i = 0; i < 3; i++) {
		json_t *c = json_deep_copy(d);
		json_object_set_new(json_array_get(json_object_get(c, "writers"), 0), "dir",
		                    json_string(dirs[i]));
		assert_int_equal(bk_doc_check(c, id, err, sizeof(err)), 2);
		json_decref(c);
	}
	json_t *c = json_deep_copy(d);
	json_object_set_new(c, "type", json_string("everything"));
	assert_int_equal(bk_doc_check(c, id, err, sizeof(err)), 2);
	json_object_set_new(c, "type", json_string("full"));
	json_object_set_new(c, "verified", json_string("yes"));
	assert_int_equal(bk_doc_check(c, id, err, sizeof(err)), 2);
	json_object_set_new(c, "verified", json_true());
	json_object_set_new(c, "parent", json_string("../../x"));
	assert_int_equal(bk_doc_check(c, id, err, sizeof(err)), 2);
	json_decref(c);
	assert_int_equal(bk_doc_check(json_array_get(json_object_get(d, "files"), 0), id, err,
	                              sizeof(err)), 2);
	json_decref(d);
}

/* a repository in a fresh directory */
static char tmpdir[] = "/tmp/amber-test-repo.XXXXXX";

/* The repository lists one backup, unreadable, which is never the latest. */
static void assert_only_unreadable(bk_repo *r)
{
	char err[1024];
	json_t *list;
	assert_int_equal(bk_list(r, &list, err, sizeof(err)), 0);
	assert_int_equal(json_array_size(list), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "status")),
	                    "unreadable");
	assert_null(bk_latest(list));
	json_decref(list);
}

static void test_repo_and_manifest(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(tmpdir));
	char root[600], err[1024];
	snprintf(root, sizeof(root), "%s/repo", tmpdir);
	bk_repo r;
	/* not a repository, and not created without create */
	assert_int_equal(bk_repo_open(root, false, &r, err, sizeof(err)), 2);
	bk_repo_close(&r);
	assert_int_equal(bk_repo_open(root, true, &r, err, sizeof(err)), 0);
	assert_int_equal(bk_repo_lock(&r, false, err, sizeof(err)), 0);
	bk_repo r2;
	assert_int_equal(bk_repo_open(root, false, &r2, err, sizeof(err)), 0);
	assert_int_equal(bk_repo_lock(&r2, false, err, sizeof(err)), 3); /* busy */
	bk_repo_close(&r2);

	const char *id = "20261122T100000Z-0a1b2c";
	assert_int_equal(bk_dir_create(&r, id, err, sizeof(err)), 0);
	json_t *d = good_doc(id);
	json_object_set_new(json_array_get(json_object_get(d, "files"), 0), "sha256",
	                    json_string("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	assert_int_equal(bk_doc_save(&r, id, d, err, sizeof(err)), 0);
	assert_int_equal(bk_manifest_save(&r, id, d, err, sizeof(err)), 0);
	json_t *m;
	assert_int_equal(bk_manifest_load(&r, id, &m, err, sizeof(err)), 0);
	assert_int_equal(json_object_size(m), 1);
	json_decref(m);
	json_t *back;
	assert_int_equal(bk_doc_load(&r, id, &back, err, sizeof(err)), 0);
	json_decref(back);

	/* malformed manifests: each refused with the line */
	const char *bad[] = {
		"0123  data/x\n",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  /etc/passwd\n",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  data/x",
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  data/x\n"
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  data/x\n",
	};
	char mpath[700];
	snprintf(mpath, sizeof(mpath), "%s/backups/%s/manifest.sha256", root, id);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		FILE *f = fopen(mpath, "w");
		assert_non_null(f);
		fputs(bad[i], f);
		fclose(f);
		assert_int_equal(bk_manifest_load(&r, id, &m, err, sizeof(err)), 2);
		assert_non_null(strstr(err, ":1") ? strstr(err, ":1") : strstr(err, ":2"));
	}
	/* a damaged document is listed as unreadable, not trusted */
	char dpath[700];
	snprintf(dpath, sizeof(dpath), "%s/backups/%s/backup.json", root, id);
	FILE *f = fopen(dpath, "w");
	fputs("{\"format\": \"amber-backup\", ", f);
	fclose(f);
	assert_only_unreadable(&r);
	assert_int_equal(bk_dir_remove(&r, id, err, sizeof(err)), 0);
	json_decref(d);
	bk_repo_close(&r);
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	assert_int_equal(system(cmd), 0);
}

/*
 * A new backup's folder and first document cost no fsync; bk_sync_dirs()
 * makes the names durable (the writer's folder, data/, the backup's and its
 * own name in REPO/backups) before the verdict; a folder whose first
 * document a power loss took away is listed as unreadable, which nothing
 * trusts and --prune-incomplete removes.
 */
static void test_folder_durability(void **state)
{
	(void)state;
	char tmp[] = "/tmp/amber-test-repo.XXXXXX";
	assert_non_null(mkdtemp(tmp));
	char root[600], err[1024], p[900];
	snprintf(root, sizeof(root), "%s/repo", tmp);
	bk_repo r;
	assert_int_equal(bk_repo_open(root, true, &r, err, sizeof(err)), 0);
	const char *id = "20261122T100000Z-0a1b2c";
	json_t *d = json_pack("{s:s, s:i, s:s, s:s, s:s, s:b, s:n, s:[], s:[{s:s, s:s}]}", "format",
	                      "amber-backup", "version", 1, "id", id, "type", "full", "status",
	                      "incomplete", "verified", 0, "parent", "files", "writers", "name",
	                      "amber-store", "instance", "0a1b2c3d4e5f");
	assert_non_null(d);

	nsynced = 0;
	assert_int_equal(bk_dir_create(&r, id, err, sizeof(err)), 0);
	assert_int_equal(bk_doc_create(&r, id, d, err, sizeof(err)), 0);
	assert_int_equal(nsynced, 0);
	json_t *back;
	assert_int_equal(bk_doc_load(&r, id, &back, err, sizeof(err)), 0);
	assert_string_equal(bk_str(back, "status"), "incomplete");
	json_decref(back);

	bk_job j;
	bk_job_init(&j, &r, stderr, true);
	snprintf(j.id, sizeof(j.id), "%s", id);
	j.bdirfd = bk_dir_open(&r, id, err, sizeof(err));
	assert_true(j.bdirfd >= 0);
	j.doc = d;
	snprintf(p, sizeof(p), "%s/backups/%s/data/amber-store.0a1b2c3d", r.root, id);
	assert_int_equal(mkdir(p, 0750), 0);
	nsynced = 0;
	assert_int_equal(bk_sync_dirs(&j, err, sizeof(err)), 0);
	assert_true(was_synced(p));
	snprintf(p, sizeof(p), "%s/backups/%s/data", r.root, id);
	assert_true(was_synced(p));
	snprintf(p, sizeof(p), "%s/backups/%s", r.root, id);
	assert_true(was_synced(p));
	snprintf(p, sizeof(p), "%s/backups", r.root);
	assert_true(was_synced(p));
	/* that fsync failing fails the step, naming the backup's folders */
	snprintf(fail_sync, sizeof(fail_sync), "%s", p);
	assert_int_equal(bk_sync_dirs(&j, err, sizeof(err)), 1);
	fail_sync[0] = '\0';
	assert_non_null(strstr(err, "fsync of its folders"));
	assert_non_null(strstr(err, strerror(EIO)));
	assert_non_null(strstr(err, id));

	/* the verdict: its file and the folder that names it */
	nsynced = 0;
	json_object_set_new(d, "status", json_string("failed"));
	assert_int_equal(bk_doc_save(&r, id, d, err, sizeof(err)), 0);
	snprintf(p, sizeof(p), "%s/backups/%s", r.root, id);
	assert_true(was_synced(p));
	assert_true(nsynced >= 2);

	/* the first document lost to a power loss: unreadable, untrusted */
	snprintf(p, sizeof(p), "%s/backups/%s/backup.json", r.root, id);
	assert_int_equal(unlink(p), 0);
	assert_only_unreadable(&r);
	/* a first document that cannot be written: the step fails, naming it */
	snprintf(p, sizeof(p), "%s/backups/%s/backup.json.tmp", r.root, id);
	assert_int_equal(mkdir(p, 0750), 0);
	assert_int_equal(bk_doc_create(&r, id, d, err, sizeof(err)), 1);
	assert_non_null(strstr(err, "backup.json: cannot write"));
	assert_int_equal(rmdir(p), 0);
	assert_only_unreadable(&r);

	close(j.bdirfd);
	json_decref(d);
	bk_repo_close(&r);
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	assert_int_equal(system(cmd), 0);
}

static json_t *mini(const char *id, const char *type, const char *parent, int verified)
{
	return json_pack("{s:s, s:s, s:s, s:b, s:s*}", "id", id, "type", type, "status", "complete",
	                 "verified", verified, "parent", parent);
}

static void test_chain(void **state)
{
	(void)state;
	json_t *list = json_array();
	json_array_append_new(list, mini("20261122T100000Z-000001", "full", NULL, 1));
	json_array_append_new(list, mini("20261122T110000Z-000002", "incremental", "20261122T100000Z-000001", 1));
	json_array_append_new(list, mini("20261122T120000Z-000003", "incremental", "20261122T110000Z-000002", 1));
	json_array_append_new(list, mini("20261122T130000Z-000004", "differential", "20261122T100000Z-000001", 1));
	json_t *chain[BK_MAX_CHAIN];
	char err[512];
	assert_int_equal(bk_chain(list, json_array_get(list, 2), chain, err, sizeof(err)), 3);
	assert_ptr_equal(chain[0], json_array_get(list, 0));
	assert_ptr_equal(chain[2], json_array_get(list, 2));
	assert_int_equal(bk_chain(list, json_array_get(list, 3), chain, err, sizeof(err)), 2);
	assert_ptr_equal(bk_latest(list), json_array_get(list, 3));
	/* an unverified link breaks the chain; latest falls back */
	json_object_set_new(json_array_get(list, 1), "verified", json_false());
	assert_int_equal(bk_chain(list, json_array_get(list, 2), chain, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "not verified"));
	json_object_set_new(json_array_get(list, 3), "status", json_string("failed"));
	assert_ptr_equal(bk_latest(list), json_array_get(list, 0));
	/* a missing parent and a loop */
	json_array_append_new(list, mini("20261122T140000Z-000005", "incremental", "20261122T150000Z-000006", 1));
	json_array_append_new(list, mini("20261122T150000Z-000006", "incremental", "20261122T140000Z-000005", 1));
	assert_int_equal(bk_chain(list, json_array_get(list, 5), chain, err, sizeof(err)), 0);
	json_array_append_new(list, mini("20261122T160000Z-000007", "incremental", "20261122T000000Z-000000", 1));
	assert_int_equal(bk_chain(list, json_array_get(list, 6), chain, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "not in the repository"));
	json_decref(list);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_relpath),
		cmocka_unit_test(test_doc_check),
		cmocka_unit_test(test_repo_and_manifest),
		cmocka_unit_test(test_folder_durability),
		cmocka_unit_test(test_chain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_cli_json.c - unit tests of src/cli/jsonout.c: the --json form.
 *
 * What must hold:
 *   - each object carries the wire fields under their wire names, in a
 *     fixed order, with optional fields left out when unset, plus
 *     state_name for writers and name for events;
 *   - cli_json_print() writes compact or indented JSON and a newline, and
 *     reports a failed build (NULL) as -ENOMEM.
 * The expected texts are compared byte for byte (compact encoding), so a
 * renamed or reordered field shows up here.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output.h"

/* want is written with ' for " (none of the values has a '). */
static void expect_json(json_t *j, const char *want_q)
{
	char want[2048];
	assert_true(strlen(want_q) < sizeof(want));
	for (size_t k = 0;; k++) {
		want[k] = want_q[k] == '\'' ? '"' : want_q[k];
		if (!want_q[k])
			break;
	}
	assert_non_null(j);
	char *s = json_dumps(j, JSON_COMPACT);
	assert_non_null(s);
	if (strcmp(s, want) != 0)
		fail_msg("got:  %s\nwant: %s", s, want);
	free(s);
	json_decref(j);
}

#define U1 "6f1c29a4-0d3e-4c1b-9a57-2b8e3f4d5c6a"
#define U2 "5c8e0d1a-0000-4000-8000-000000000001"
#define U3 "0b7f4e52-0000-4000-8000-000000000001"

static void test_writer(void **state)
{
	(void)state;
	amb_fileset files = { .path = "/srv/mail", .pattern = "*.edb" };
	amb_fileset logs[2] = { { .path = "/srv/mail/logs", .pattern = "E00*.log" },
		                { .path = "/srv/mail/x", .pattern = "*", .recursive = true } };
	amb_component comps[2] = {
		{ .name = "priv1", .type = AMB_COMP_DATABASE, .selectable = true, .files = &files,
		  .n_files = 1, .logs = logs, .n_logs = 2, .checkpoint = "/srv/mail/E00.chk" },
		{ .name = "pub1", .type = AMB_COMP_FILEGROUP, .files = &files, .n_files = 1 },
	};
	amb_writer_info w = {
		.metadata = { .name = "amber-store", .instance = U1,
			      .backup_types = AMB_BACKUP_BIT(AMB_BACKUP_FULL) |
			                      AMB_BACKUP_BIT(AMB_BACKUP_DIFFERENTIAL),
			      .verifier = "amber-store",
			      .restore_method = AMB_RESTORE_STOP_RESTORE_START,
			      .max_hold_ms = 5000, .components = comps, .n_components = 2 },
		.state = AMB_WS_STABLE, .pid = 1234, .uid = 0,
	};
	expect_json(cli_json_writer(&w),
	            "{'name':'amber-store','instance':'" U1 "',"
	            "'backup_types':['full','differential'],'verifier':'amber-store',"
	            "'restore_method':'stop-restore-start','max_hold_ms':5000,"
	            "'components':[{'name':'priv1','type':'database','selectable':true,"
	            "'files':[{'path':'/srv/mail','pattern':'*.edb','recursive':false}],"
	            "'logs':[{'path':'/srv/mail/logs','pattern':'E00*.log',"
	            "'recursive':false},{'path':'/srv/mail/x','pattern':'*',"
	            "'recursive':true}],'checkpoint':'/srv/mail/E00.chk'},"
	            "{'name':'pub1','type':'filegroup','selectable':false,"
	            "'files':[{'path':'/srv/mail','pattern':'*.edb','recursive':false}]}],"
	            "'state':1,'state_name':'stable','pid':1234,'uid':0}");

	amb_failure fail = { .cls = AMB_FAIL_TIMEOUT, .message = "freeze not answered" };
	w.metadata.instance_name = "E00 at /srv/mail";
	w.metadata.n_components = 0;
	w.metadata.excludes = &files;
	w.metadata.n_excludes = 1;
	w.state = AMB_WS_FAILED_AT_FREEZE;
	w.last_error = &fail;
	w.uid = 4294967294u;
	expect_json(cli_json_writer(&w),
	            "{'name':'amber-store','instance':'" U1 "',"
	            "'instance_name':'E00 at /srv/mail',"
	            "'backup_types':['full','differential'],'verifier':'amber-store',"
	            "'restore_method':'stop-restore-start','max_hold_ms':5000,"
	            "'components':[],"
	            "'excludes':[{'path':'/srv/mail','pattern':'*.edb','recursive':false}],"
	            "'state':9,'state_name':'failed-at-freeze',"
	            "'last_error':{'class':'timeout','message':'freeze not answered'},"
	            "'pid':1234,'uid':4294967294}");
	fail.message = NULL;
	json_t *j = cli_json_writer(&w);
	assert_non_null(j);
	json_t *le = json_object_get(j, "last_error");
	assert_int_equal(json_object_size(le), 1);
	assert_string_equal(json_string_value(json_object_get(le, "class")), "timeout");
	json_decref(j);
}

static void test_shadow_set(void **state)
{
	(void)state;
	amb_shadow sh[2] = {
		{ .id = U3, .set = U2, .volume = "/srv/mail", .path = "/srv/.s/1",
		  .provider = "btrfs", .persistent = true, .writers = true,
		  .created_ms = 1710406801250, .exposed = "/mnt/x" },
		{ .id = U1, .set = U2, .volume = "/srv/data", .path = "/srv/.s/2",
		  .provider = "copy", .created_ms = 9007199254740991u },
	};
	expect_json(cli_json_shadow(&sh[0]),
	            "{'id':'" U3 "','set':'" U2 "','volume':'/srv/mail',"
	            "'path':'/srv/.s/1','provider':'btrfs','persistent':true,"
	            "'writers':true,'created':1710406801250,'exposed':'/mnt/x'}");
	amb_snapshot_set set = { .set = U2, .shadows = sh, .n_shadows = 2 };
	expect_json(cli_json_snapshot_set(&set),
	            "{'set':'" U2 "','shadows':["
	            "{'id':'" U3 "','set':'" U2 "','volume':'/srv/mail',"
	            "'path':'/srv/.s/1','provider':'btrfs','persistent':true,"
	            "'writers':true,'created':1710406801250,'exposed':'/mnt/x'},"
	            "{'id':'" U1 "','set':'" U2 "','volume':'/srv/data',"
	            "'path':'/srv/.s/2','provider':'copy','persistent':false,"
	            "'writers':false,'created':9007199254740991}]}");
	amb_snapshot_set empty = { .set = U2 };
	expect_json(cli_json_snapshot_set(&empty), "{'set':'" U2 "','shadows':[]}");
}

static void test_provider_storage(void **state)
{
	(void)state;
	amb_provider_info p = { .name = "copy", .description = "plain copy",
		                .holds_writes = true };
	expect_json(cli_json_provider(&p),
	            "{'name':'copy','description':'plain copy','holds_writes':true}");
	amb_provider_info p2 = { .name = "btrfs" };
	expect_json(cli_json_provider(&p2), "{'name':'btrfs','holds_writes':false}");
	amb_storage_info s = { .volume = "/srv/mail", .used = 1299227648, .limit = 0 };
	expect_json(cli_json_storage(&s),
	            "{'volume':'/srv/mail','used':1299227648,'limit':0}");
}

static void test_event(void **state)
{
	(void)state;
	amb_event e = { .seq = 42, .time_ms = 1710406801250, .code = AMB_EV_SHADOW_CREATED,
		        .severity = AMB_SEV_INFO, .message = "created" };
	expect_json(cli_json_event(&e),
	            "{'seq':42,'time':1710406801250,'code':3001,'name':'shadow-created',"
	            "'severity':'info','message':'created'}");
	amb_event all = { .seq = 7, .time_ms = 1, .code = 5555, .severity = AMB_SEV_ERROR,
		          .message = "m \"q\" \xc3\xa9", .session = U1, .set = U2, .shadow = U3,
		          .writer = "w", .component = "c", .volume = "/v",
		          .cls = AMB_FAIL_INCONSISTENT };
	expect_json(cli_json_event(&all),
	            "{'seq':7,'time':1,'code':5555,'severity':'error',"
	            "'message':'m \\\"q\\\" \xc3\xa9','session':'" U1 "','set':'" U2
	            "','shadow':'" U3 "','writer':'w','component':'c',"
	            "'volume':'/v','class':'inconsistent-snapshot'}");
}

static void test_print(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	assert_int_equal(cli_json_print(f, json_pack("{s:i}", "a", 1), false), 0);
	assert_int_equal(cli_json_print(f, json_pack("[{s:i}]", "a", 1), true), 0);
	assert_int_equal(cli_json_print(f, NULL, true), -ENOMEM);
	fclose(f);
	assert_string_equal(buf, "{\"a\":1}\n[\n  {\n    \"a\": 1\n  }\n]\n");
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writer),
		cmocka_unit_test(test_shadow_set),
		cmocka_unit_test(test_provider_storage),
		cmocka_unit_test(test_event),
		cmocka_unit_test(test_print),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

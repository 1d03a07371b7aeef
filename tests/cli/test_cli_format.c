/*
 * test_cli_format.c - unit tests of src/cli/format.c: the text form of
 * sizes, times, states and listings.
 *
 * What must hold:
 *   - sizes have three significant digits in binary units and never show
 *     "1024 KiB"; times are local ISO 8601 with the zone as +hh:mm;
 *   - every writer state 0..15 has its VSS-like name, anything else is
 *     "Unknown";
 *   - the listings read exactly like the examples in the manual pages
 *     (vssadmin's layout), shadows grouped by set in order of first
 *     appearance even when the sets are interleaved.
 * Time zones are fixed POSIX TZ strings, so no tzdata is needed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/output.h"

static void set_tz(const char *tz)
{
	setenv("TZ", tz, 1);
	tzset();
}

/* Print with fn into memory and compare. */
#define EXPECT_PRINT(want, call)                                                           \
	do {                                                                               \
		char *buf_ = NULL;                                                         \
		size_t len_ = 0;                                                           \
		FILE *f = open_memstream(&buf_, &len_);                                    \
		assert_non_null(f);                                                        \
		call;                                                                      \
		fclose(f);                                                                 \
		if (strcmp(buf_, want) != 0)                                               \
			fail_msg("got:\n%s\nwant:\n%s", buf_, want);                       \
		free(buf_);                                                                \
	} while (0)

static void test_size(void **state)
{
	(void)state;
	static const struct {
		uint64_t bytes;
		const char *want;
	} cases[] = {
		{ 0, "0 B" },
		{ 1, "1 B" },
		{ 1023, "1023 B" },
		{ 1024, "1.00 KiB" },
		{ 1536, "1.50 KiB" },
		{ 10234, "9.99 KiB" },
		{ 10235, "10.0 KiB" },          /* 9.9951 would print as "10.00" */
		{ 102348, "99.9 KiB" },
		{ 102349, "100 KiB" },          /* 99.95 would print as "100.0" */
		{ 1047552, "1023 KiB" },
		{ 1048063, "1023 KiB" },        /* 1023.499 */
		{ 1048064, "1.00 MiB" },        /* 1023.5 would print as "1024" */
		{ 1048576, "1.00 MiB" },
		{ 1299227648, "1.21 GiB" },
		{ UINT64_C(132499741081), "123 GiB" },
		{ UINT64_C(1) << 40, "1.00 TiB" },
		{ UINT64_C(1) << 50, "1.00 PiB" },
		{ UINT64_C(1) << 60, "1.00 EiB" },
		{ UINT64_MAX, "16.0 EiB" },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		char buf[CLI_FMT_BUF];
		cli_fmt_size(cases[k].bytes, buf, sizeof(buf));
		if (strcmp(buf, cases[k].want) != 0)
			fail_msg("%llu bytes: '%s', want '%s'", (unsigned long long)cases[k].bytes,
			         buf, cases[k].want);
	}
}

static void test_time(void **state)
{
	(void)state;
	char buf[CLI_FMT_BUF];
	set_tz("UTC0");
	assert_string_equal(cli_fmt_time(0, true, buf, sizeof(buf)),
	                    "1970-01-01T00:00:00.000+00:00");
	assert_string_equal(cli_fmt_time(1710406801250, true, buf, sizeof(buf)),
	                    "2024-03-14T09:00:01.250+00:00");
	assert_string_equal(cli_fmt_time(1710406801005, false, buf, sizeof(buf)),
	                    "2024-03-14T09:00:01+00:00");
	set_tz("CET-1");
	assert_string_equal(cli_fmt_time(1710406801005, true, buf, sizeof(buf)),
	                    "2024-03-14T10:00:01.005+01:00");
	set_tz("NST+3:30");
	assert_string_equal(cli_fmt_time(1710406801999, true, buf, sizeof(buf)),
	                    "2024-03-14T05:30:01.999-03:30");
	set_tz("UTC0");
}

static void test_names(void **state)
{
	(void)state;
	char buf[CLI_FMT_BUF];
	static const char *const states[] = {
		"Unknown", "Stable", "Waiting for freeze", "Waiting for thaw",
		"Waiting for post-snapshot", "Waiting for backup complete", "Failed at identify",
		"Failed at prepare backup", "Failed at prepare snapshot", "Failed at freeze",
		"Failed at thaw", "Failed at post-snapshot", "Failed at backup complete",
		"Failed at pre-restore", "Failed at post-restore", "Failed at backup shutdown",
	};
	_Static_assert(sizeof(states) / sizeof(states[0]) == AMB_WS_COUNT, "one name a state");
	for (int s = 0; s < AMB_WS_COUNT; s++)
		assert_string_equal(cli_writer_state_text((amb_writer_state)s), states[s]);
	assert_string_equal(cli_writer_state_text(AMB_WS_COUNT), "Unknown");
	assert_string_equal(cli_writer_state_text((amb_writer_state)-1), "Unknown");

	assert_string_equal(cli_fail_class_text(AMB_FAIL_TIMEOUT), "Timeout");
	assert_string_equal(cli_fail_class_text(AMB_FAIL_RETRYABLE), "Retryable error");
	assert_string_equal(cli_fail_class_text(AMB_FAIL_NONRETRYABLE), "Non-retryable error");
	assert_string_equal(cli_fail_class_text(AMB_FAIL_INCONSISTENT), "Inconsistent snapshot");
	assert_string_equal(cli_fail_class_text(AMB_FAIL_OUT_OF_RESOURCES), "Out of resources");
	assert_string_equal(cli_fail_class_text(AMB_FAIL_NONE), "Unknown error");

	unsigned all = AMB_BACKUP_BIT(AMB_BACKUP_FULL) | AMB_BACKUP_BIT(AMB_BACKUP_COPY) |
	               AMB_BACKUP_BIT(AMB_BACKUP_INCREMENTAL) |
	               AMB_BACKUP_BIT(AMB_BACKUP_DIFFERENTIAL);
	assert_string_equal(cli_fmt_backup_types(all, buf, sizeof(buf)),
	                    "full, copy, incremental, differential");
	unsigned two = AMB_BACKUP_BIT(AMB_BACKUP_DIFFERENTIAL) | AMB_BACKUP_BIT(AMB_BACKUP_FULL);
	assert_string_equal(cli_fmt_backup_types(two, buf, sizeof(buf)), "full, differential");
	assert_string_equal(cli_fmt_backup_types(0, buf, sizeof(buf)), "none");
	assert_string_equal(cli_severity_name(AMB_SEV_WARNING), "warning");
	assert_string_equal(cli_comp_type_name(AMB_COMP_FILEGROUP), "filegroup");
}

static amb_fileset fs = { .path = "/srv/mail", .pattern = "*.edb" };

static void make_writer(amb_writer_info *w, amb_component comps[2])
{
	memset(w, 0, sizeof(*w));
	memset(comps, 0, 2 * sizeof(*comps));
	snprintf(comps[0].name, sizeof(comps[0].name), "priv1");
	comps[0].type = AMB_COMP_DATABASE;
	comps[0].files = &fs;
	comps[0].n_files = 1;
	snprintf(comps[1].name, sizeof(comps[1].name), "pub1");
	comps[1].type = AMB_COMP_DATABASE;
	comps[1].files = &fs;
	comps[1].n_files = 1;
	snprintf(w->metadata.name, sizeof(w->metadata.name), "amber-store");
	snprintf(w->metadata.instance, sizeof(w->metadata.instance),
	         "6f1c29a4-0d3e-4c1b-9a57-2b8e3f4d5c6a");
	w->metadata.backup_types = AMB_BACKUP_BIT(AMB_BACKUP_FULL) |
	                           AMB_BACKUP_BIT(AMB_BACKUP_COPY) |
	                           AMB_BACKUP_BIT(AMB_BACKUP_INCREMENTAL) |
	                           AMB_BACKUP_BIT(AMB_BACKUP_DIFFERENTIAL);
	snprintf(w->metadata.verifier, sizeof(w->metadata.verifier), "amber-store");
	w->metadata.restore_method = AMB_RESTORE_STOP_RESTORE_START;
	w->metadata.max_hold_ms = 10000;
	w->metadata.components = comps;
	w->metadata.n_components = 2;
	w->state = AMB_WS_STABLE;
	w->pid = 1234;
	w->uid = 0;
}

static void test_writer(void **state)
{
	(void)state;
	amb_writer_info w;
	amb_component comps[2];
	make_writer(&w, comps);
	w.metadata.instance_name = "E00 at /srv/mail";
	EXPECT_PRINT("Writer name: 'amber-store'\n"
	             "   Writer Instance Id: {6f1c29a4-0d3e-4c1b-9a57-2b8e3f4d5c6a}\n"
	             "   Instance name: E00 at /srv/mail\n"
	             "   State: [1] Stable\n"
	             "   Last error: No error\n"
	             "   Process: pid 1234, uid 0\n"
	             "   Backup types: full, copy, incremental, differential\n"
	             "   Components: priv1 (database), pub1 (database)\n",
	             cli_print_writer(f, &w));

	amb_failure fail = { .cls = AMB_FAIL_TIMEOUT, .message = "freeze not answered in 60 s" };
	w.metadata.instance_name = NULL;
	w.metadata.n_components = 0;
	w.metadata.backup_types = AMB_BACKUP_BIT(AMB_BACKUP_COPY);
	w.state = AMB_WS_FAILED_AT_FREEZE;
	w.last_error = &fail;
	w.uid = 1000;
	EXPECT_PRINT("Writer name: 'amber-store'\n"
	             "   Writer Instance Id: {6f1c29a4-0d3e-4c1b-9a57-2b8e3f4d5c6a}\n"
	             "   State: [9] Failed at freeze\n"
	             "   Last error: Timeout: freeze not answered in 60 s\n"
	             "   Process: pid 1234, uid 1000\n"
	             "   Backup types: copy\n"
	             "   Components: none\n",
	             cli_print_writer(f, &w));
	fail.message = NULL;
	fail.cls = AMB_FAIL_OUT_OF_RESOURCES;
	EXPECT_PRINT("Writer name: 'amber-store'\n"
	             "   Writer Instance Id: {6f1c29a4-0d3e-4c1b-9a57-2b8e3f4d5c6a}\n"
	             "   State: [9] Failed at freeze\n"
	             "   Last error: Out of resources\n"
	             "   Process: pid 1234, uid 1000\n"
	             "   Backup types: copy\n"
	             "   Components: none\n",
	             cli_print_writer(f, &w));
}

static void test_provider_storage(void **state)
{
	(void)state;
	amb_provider_info p = { .name = "copy", .description = "plain copy",
		                .holds_writes = true };
	EXPECT_PRINT("Provider name: 'copy'\n"
	             "   Description: plain copy\n"
	             "   Holds writes for the whole copy: yes\n",
	             cli_print_provider(f, &p));
	amb_provider_info p2 = { .name = "btrfs" };
	EXPECT_PRINT("Provider name: 'btrfs'\n"
	             "   Holds writes for the whole copy: no\n",
	             cli_print_provider(f, &p2));

	amb_storage_info s = { .volume = "/srv/mail", .used = 1299227648, .limit = 0 };
	EXPECT_PRINT("Shadow Copy Storage association\n"
	             "   For volume: /srv/mail\n"
	             "   Used Shadow Copy Storage space: 1.21 GiB (1299227648 bytes)\n"
	             "   Maximum Shadow Copy Storage space: UNBOUNDED\n",
	             cli_print_storage(f, &s));
	s.used = 0;
	s.limit = UINT64_C(10) << 30;
	EXPECT_PRINT("Shadow Copy Storage association\n"
	             "   For volume: /srv/mail\n"
	             "   Used Shadow Copy Storage space: 0 B (0 bytes)\n"
	             "   Maximum Shadow Copy Storage space: 10.0 GiB (10737418240 bytes)\n",
	             cli_print_storage(f, &s));
}

#define SET1 "5c8e0d1a-0000-4000-8000-000000000001"
#define SET2 "5c8e0d1a-0000-4000-8000-000000000002"
#define SH(n) "0b7f4e52-0000-4000-8000-00000000000" #n

static void test_shadows(void **state)
{
	(void)state;
	set_tz("CET-1");
	amb_shadow sh[3] = {
		{ .id = SH(1), .set = SET1, .volume = "/srv/mail", .path = "/srv/.s/1",
		  .provider = "btrfs", .persistent = true, .writers = true,
		  .created_ms = 1710406801300, .exposed = "/mnt/mail" },
		{ .id = SH(2), .set = SET2, .volume = "/srv/data", .path = "/srv/.s/2",
		  .provider = "copy", .created_ms = 1710406900000 },
		{ .id = SH(3), .set = SET1, .volume = "/srv/logs", .path = "/srv/.s/3",
		  .provider = "reflink", .persistent = true, .writers = true,
		  .created_ms = 1710406801000 },
	};
	const amb_shadow *list[3] = { &sh[0], &sh[1], &sh[2] };
	EXPECT_PRINT("Contents of shadow copy set ID: {" SET1 "}\n"
	             "   Contained 2 shadow copies at creation time: 2024-03-14T10:00:01+01:00\n"
	             "      Shadow Copy ID: {" SH(1) "}\n"
	             "         Original Volume: /srv/mail\n"
	             "         Shadow Copy Volume: /srv/.s/1\n"
	             "         Provider: 'btrfs'\n"
	             "         Type: persistent, with writers\n"
	             "         Exposed at: /mnt/mail\n"
	             "      Shadow Copy ID: {" SH(3) "}\n"
	             "         Original Volume: /srv/logs\n"
	             "         Shadow Copy Volume: /srv/.s/3\n"
	             "         Provider: 'reflink'\n"
	             "         Type: persistent, with writers\n"
	             "\n"
	             "Contents of shadow copy set ID: {" SET2 "}\n"
	             "   Contained 1 shadow copies at creation time: 2024-03-14T10:01:40+01:00\n"
	             "      Shadow Copy ID: {" SH(2) "}\n"
	             "         Original Volume: /srv/data\n"
	             "         Shadow Copy Volume: /srv/.s/2\n"
	             "         Provider: 'copy'\n"
	             "         Type: volatile, without writers\n",
	             assert_int_equal(cli_print_shadows(f, list, 3), 0));
	EXPECT_PRINT("", assert_int_equal(cli_print_shadows(f, list, 0), 0));
	set_tz("UTC0");
}

static void test_event(void **state)
{
	(void)state;
	set_tz("UTC0");
	amb_event e = { .seq = 42, .time_ms = 1710406801250, .code = AMB_EV_SHADOW_CREATED,
		        .severity = AMB_SEV_INFO, .message = "shadow of /srv/mail created",
		        .set = SET1, .volume = "/srv/mail" };
	EXPECT_PRINT("2024-03-14T09:00:01.250+00:00  42  3001  info     shadow-created  "
	             "shadow of /srv/mail created set=" SET1 " volume=/srv/mail\n",
	             cli_print_event(f, &e));
	amb_event all = { .seq = 7, .time_ms = 0, .code = AMB_EV_WRITER_TIMEOUT,
		          .severity = AMB_SEV_ERROR, .message = "m", .session = SET2, .set = SET1,
		          .shadow = SH(1), .writer = "amber-store", .component = "priv1",
		          .volume = "/v", .cls = AMB_FAIL_TIMEOUT };
	EXPECT_PRINT("1970-01-01T00:00:00.000+00:00  7  2006  error    writer-timeout  m "
	             "session=" SET2 " set=" SET1 " shadow=" SH(1) " writer=amber-store "
	             "component=priv1 volume=/v class=timeout\n",
	             cli_print_event(f, &all));
	amb_event unknown = { .seq = 8, .time_ms = 0, .code = 5555, .severity = AMB_SEV_WARNING,
		              .message = "new" };
	EXPECT_PRINT("1970-01-01T00:00:00.000+00:00  8  5555  warning  -  new\n",
	             cli_print_event(f, &unknown));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_writer),
		cmocka_unit_test(test_provider_storage),
		cmocka_unit_test(test_shadows),
		cmocka_unit_test(test_event),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

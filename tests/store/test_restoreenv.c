/*
 * test_restoreenv.c - restore.env parsing and writing (store/restoreenv.c,
 * format in docs/restore-env.md): round trip, every malformed form, and a
 * fuzz loop that must never crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "amber/store.h"
#include "store/restoreenv.h"

static char tmpdir[256];
static char envpath[300];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/amber-test-renv-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	snprintf(envpath, sizeof(envpath), "%s/restore.env", tmpdir);
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

static void write_raw(const void *data, size_t n)
{
	FILE *f = fopen(envpath, "wb");
	assert_non_null(f);
	if (n)
		assert_int_equal(fwrite(data, 1, n, f), n);
	fclose(f);
}

static void write_text(const char *s)
{
	write_raw(s, strlen(s));
}

static const char valid[] = "# a comment\n"
                            "\n"
                            "amber-restore-env 1\n"
                            "instance_dir=/srv/mail/sg1\n"
                            "backup_log_dir=/srv/mail/sg1/restore-logs\n"
                            "prefix=E00\n"
                            "gen_low=0x0000001A\n"
                            "gen_high=28\n"
                            "roll_forward=no\n"
                            "until=2026-11-22T10:00:00.25Z\n"
                            "database=priv1.edb\n"
                            "database=pub1.edb\n"
                            "backup_id=full-1 # not a comment\n"
                            "status=ended\n"
                            "error=-31009\n"
                            "error_msg=log generation 0x1B is missing = bad\n"
                            "recover_time=1795341600000000\n";

static amb_restore_env *new_env(void)
{
	amb_restore_env *e = calloc(1, sizeof(*e));
	assert_non_null(e);
	return e;
}

static void test_parse_valid(void **state)
{
	(void)state;
	amb_restore_env *e = new_env();
	write_text(valid);
	assert_int_equal(amb_restore_env_load(envpath, e), 0);
	assert_int_equal(e->version, 1);
	assert_string_equal(e->instance_dir, "/srv/mail/sg1");
	assert_string_equal(e->backup_log_dir, "/srv/mail/sg1/restore-logs");
	assert_string_equal(e->prefix, "E00");
	assert_int_equal(e->gen_low, 0x1A);
	assert_int_equal(e->gen_high, 28);
	assert_int_equal(e->roll_forward, 0);
	assert_int_equal(e->until_us, 1795341600250000ull);
	assert_int_equal(e->ndatabases, 2);
	assert_string_equal(e->databases[0], "priv1.edb");
	assert_string_equal(e->databases[1], "pub1.edb");
	assert_string_equal(e->backup_id, "full-1 # not a comment");
	assert_int_equal(e->status, AMB_RECOVER_ENDED);
	assert_int_equal(e->error, -31009);
	assert_string_equal(e->error_msg, "log generation 0x1B is missing = bad");
	assert_int_equal(e->recover_time_us, 1795341600000000ull);
	free(e);
}

static void test_defaults_relative_crlf(void **state)
{
	(void)state;
	amb_restore_env *e = new_env();
	write_text("amber-restore-env   1\r\n"
	           "  instance_dir = inst  \r\n"
	           "\tbackup_log_dir=/abs/logs\r\n"
	           "prefix=E01\r\n"
	           "gen_low=1\r\n"
	           "gen_high=0x1\r\n"
	           "database=a.edb\r\n"
	           "  # indented comment\r\n");
	assert_int_equal(amb_restore_env_load(envpath, e), 0);
	char want[400];
	snprintf(want, sizeof(want), "%s/inst", tmpdir);
	assert_string_equal(e->instance_dir, want);
	assert_string_equal(e->backup_log_dir, "/abs/logs");
	assert_int_equal(e->roll_forward, 1);
	assert_int_equal(e->until_us, 0);
	assert_int_equal(e->status, AMB_RECOVER_NOT_STARTED);
	assert_int_equal(e->error, 0);
	assert_string_equal(e->backup_id, "");
	assert_int_equal(e->recover_time_us, 0);
	/* no final newline is fine too */
	write_text("amber-restore-env 1\ninstance_dir=/i\nbackup_log_dir=/l\nprefix=E00\n"
	           "gen_low=1\ngen_high=2\ndatabase=x.edb");
	assert_int_equal(amb_restore_env_load(envpath, e), 0);
	assert_string_equal(e->databases[0], "x.edb");
	free(e);
}

static void test_roundtrip(void **state)
{
	(void)state;
	amb_restore_env *e = new_env(), *g = new_env();
	e->version = 1;
	snprintf(e->instance_dir, sizeof(e->instance_dir), "/srv/mail/sg 1/é");
	snprintf(e->backup_log_dir, sizeof(e->backup_log_dir), "/tmp/x=y#z");
	snprintf(e->prefix, sizeof(e->prefix), "E02");
	e->gen_low = 0x10;
	e->gen_high = 0xFFFFFFFE;
	e->roll_forward = 1;
	e->until_us = 1795341600000001ull;
	e->ndatabases = AMB_MAX_DBS;
	for (int i = 0; i < AMB_MAX_DBS; i++)
		snprintf(e->databases[i], sizeof(e->databases[i]), "db%02d.edb", i);
	snprintf(e->backup_id, sizeof(e->backup_id), "id-42");
	e->status = AMB_RECOVER_FAILED;
	e->error = AMS_ELOGMISSING;
	snprintf(e->error_msg, sizeof(e->error_msg), "a message");
	e->recover_time_us = 1234567;
	assert_int_equal(amb_restore_env_store(envpath, e), 0);
	assert_int_equal(access(envpath, F_OK), 0);
	char tmp[400];
	snprintf(tmp, sizeof(tmp), "%s.tmp", envpath);
	assert_int_not_equal(access(tmp, F_OK), 0);
	assert_int_equal(amb_restore_env_load(envpath, g), 0);
	assert_memory_equal(e, g, sizeof(*e));

	/* every status and no until */
	for (int s = 0; s < 4; s++) {
		e->status = (amb_recover_status)s;
		e->until_us = 0;
		e->roll_forward = s & 1;
		assert_int_equal(amb_restore_env_store(envpath, e), 0);
		assert_int_equal(amb_restore_env_load(envpath, g), 0);
		assert_memory_equal(e, g, sizeof(*e));
	}

	/* control characters in the message are written as spaces */
	snprintf(e->error_msg, sizeof(e->error_msg), "line one\nline two\t ");
	assert_int_equal(amb_restore_env_store(envpath, e), 0);
	assert_int_equal(amb_restore_env_load(envpath, g), 0);
	assert_string_equal(g->error_msg, "line one line two");

	/* values that cannot be written are refused, nothing written */
	snprintf(e->instance_dir, sizeof(e->instance_dir), "/a\nb");
	assert_int_equal(amb_restore_env_store(envpath, e), AMS_EINVAL);
	snprintf(e->instance_dir, sizeof(e->instance_dir), "/ok");
	snprintf(e->databases[0], sizeof(e->databases[0]), "../evil.edb");
	assert_int_equal(amb_restore_env_store(envpath, e), AMS_EINVAL);
	free(e);
	free(g);
}

/* A valid file with one line replaced (or added) */
static void expect_bad(const char *content, int line, const char *what)
{
	amb_restore_env *e = new_env();
	write_text(content);
	int rc = amb_restore_env_load(envpath, e);
	if (rc != AMS_EINVAL)
		fail_msg("expected AMS_EINVAL for <<%s>>, got %d (%s)", content, rc, ams_errmsg());
	char want[400];
	snprintf(want, sizeof(want), "%s:%d: ", envpath, line);
	if (strncmp(ams_errmsg(), want, strlen(want)) != 0)
		fail_msg("message '%s' does not start with '%s'", ams_errmsg(), want);
	if (what && !strstr(ams_errmsg(), what))
		fail_msg("message '%s' does not mention '%s'", ams_errmsg(), what);
	free(e);
}

#define HEAD "amber-restore-env 1\n"
#define BASE                                                                                   \
	"instance_dir=/i\nbackup_log_dir=/l\nprefix=E00\ngen_low=1\ngen_high=2\ndatabase=a.edb\n"

static void test_malformed(void **state)
{
	(void)state;
	/* sanity: HEAD BASE is valid */
	amb_restore_env *e = new_env();
	write_text(HEAD BASE);
	assert_int_equal(amb_restore_env_load(envpath, e), 0);
	free(e);

	expect_bad("", 1, "empty");
	expect_bad("# only a comment\n\n", 2, "empty");
	expect_bad("hello world\n" BASE, 1, "restore.env");
	expect_bad("amber-restore-env 2\n" BASE, 1, "version");
	expect_bad("amber-restore-env\n" BASE, 1, NULL);
	expect_bad("amber-restore-env x\n" BASE, 1, NULL);
	expect_bad(HEAD BASE "colour=blue\n", 8, "unknown key 'colour'");
	expect_bad(HEAD BASE "just some words\n", 8, "key=value");
	expect_bad(HEAD BASE "=value\n", 8, "empty key");
	expect_bad(HEAD BASE "prefix=E01\n", 8, "duplicate key 'prefix'");
	expect_bad(HEAD BASE "gen_low=1\n", 8, "duplicate");
	expect_bad(HEAD BASE "status=ended\nstatus=failed\n", 9, "duplicate");
	expect_bad(HEAD BASE "database=a.edb\n", 8, "twice");
	/* missing required keys: reported at the last line */
	expect_bad(HEAD "backup_log_dir=/l\nprefix=E00\ngen_low=1\ngen_high=2\ndatabase=a.edb\n", 6,
	           "instance_dir");
	expect_bad(HEAD "instance_dir=/i\nprefix=E00\ngen_low=1\ngen_high=2\ndatabase=a.edb\n", 6,
	           "backup_log_dir");
	expect_bad(HEAD "instance_dir=/i\nbackup_log_dir=/l\ngen_low=1\ngen_high=2\ndatabase=a.edb\n",
	           6, "prefix");
	expect_bad(HEAD "instance_dir=/i\nbackup_log_dir=/l\nprefix=E00\ngen_high=2\ndatabase=a.edb\n",
	           6, "gen_low");
	expect_bad(HEAD "instance_dir=/i\nbackup_log_dir=/l\nprefix=E00\ngen_low=1\ndatabase=a.edb\n",
	           6, "gen_high");
	expect_bad(HEAD "instance_dir=/i\nbackup_log_dir=/l\nprefix=E00\ngen_low=1\ngen_high=2\n", 6,
	           "database");
	expect_bad(HEAD, 1, "instance_dir");
	/* numbers */
	const char *badnums[] = {"", "abc", "0x", "0xG1", "-1", "+1", "0", "1 2", "0xFFFFFFFF",
	                         "4294967296", "99999999999999999999999", "1.5", "0x1A h"};
	for (size_t i = 0; i < sizeof(badnums) / sizeof(badnums[0]); i++) {
		char buf[512];
		snprintf(buf, sizeof(buf),
		         HEAD "instance_dir=/i\nbackup_log_dir=/l\nprefix=E00\ngen_low=%s\n"
		              "gen_high=2\ndatabase=a.edb\n",
		         badnums[i]);
		expect_bad(buf, 5, "gen_low");
	}
	expect_bad(HEAD "instance_dir=/i\nbackup_log_dir=/l\nprefix=E00\ngen_low=0x10\n"
	                "gen_high=0xF\ndatabase=a.edb\n",
	           6, "above");
	expect_bad(HEAD BASE "error=12x\n", 8, "error");
	expect_bad(HEAD BASE "error=99999999999\n", 8, "error");
	expect_bad(HEAD BASE "recover_time=-5\n", 8, "recover_time");
	expect_bad(HEAD BASE "recover_time=18446744073709551616\n", 8, "recover_time");
	/* words */
	expect_bad(HEAD BASE "roll_forward=maybe\n", 8, "roll_forward");
	expect_bad(HEAD BASE "status=done\n", 8, "status");
	/* times */
	const char *badtimes[] = {"yesterday", "2026-11-22 10:00:00Z", "2026-11-22T10:00:00",
	                          "2026-11-22T10:00:00+01:00", "2026-13-22T10:00:00Z",
	                          "2026-02-29T10:00:00Z", "2026-11-31T10:00:00Z",
	                          "2026-11-22T24:00:00Z", "2026-11-22T10:60:00Z",
	                          "2026-11-22T10:00:00.Z", "2026-11-22T10:00:00.1234567Z",
	                          "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "2026-1-22T10:00:00Z"};
	for (size_t i = 0; i < sizeof(badtimes) / sizeof(badtimes[0]); i++) {
		char buf[512];
		snprintf(buf, sizeof(buf), HEAD BASE "until=%s\n", badtimes[i]);
		expect_bad(buf, 8, "until");
	}
	/* a leap day that exists */
	e = new_env();
	write_text(HEAD BASE "until=2028-02-29T00:00:00z\n");
	assert_int_equal(amb_restore_env_load(envpath, e), 0);
	free(e);
	/* prefix */
	expect_bad(HEAD "instance_dir=/i\nbackup_log_dir=/l\nprefix=E0\ngen_low=1\ngen_high=2\n"
	                "database=a.edb\n",
	           4, "prefix");
	expect_bad(HEAD "instance_dir=/i\nbackup_log_dir=/l\nprefix=E000\ngen_low=1\ngen_high=2\n"
	                "database=a.edb\n",
	           4, "prefix");
	expect_bad(HEAD "instance_dir=/i\nbackup_log_dir=/l\nprefix=E/0\ngen_low=1\ngen_high=2\n"
	                "database=a.edb\n",
	           4, "prefix");
	/* database names */
	expect_bad(HEAD BASE "database=../x.edb\n", 8, "..");
	expect_bad(HEAD BASE "database=sub/x.edb\n", 8, "'/'");
	expect_bad(HEAD BASE "database=/etc/x.edb\n", 8, "'/'");
	expect_bad(HEAD BASE "database=x..edb\n", 8, "..");
	expect_bad(HEAD BASE "database=x.txt\n", 8, ".edb");
	expect_bad(HEAD BASE "database=\n", 8, "empty");
	{
		char buf[2048], name[100];
		memset(name, 'n', 70);
		memcpy(name + 70, ".edb", 5);
		snprintf(buf, sizeof(buf), HEAD BASE "database=%s\n", name);
		expect_bad(buf, 8, "too long");
		/* 17 databases */
		size_t n = (size_t)snprintf(buf, sizeof(buf), HEAD BASE);
		for (int i = 0; i < 16; i++)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "database=d%d.edb\n", i);
		expect_bad(buf, 23, "more than 16");
	}
	/* empty and over-long values */
	expect_bad(HEAD "instance_dir=\nbackup_log_dir=/l\nprefix=E00\ngen_low=1\ngen_high=2\n"
	                "database=a.edb\n",
	           2, "empty");
	{
		char *big = malloc(20000);
		assert_non_null(big);
		size_t n = (size_t)snprintf(big, 20000, HEAD BASE "backup_id=");
		memset(big + n, 'b', 200);
		snprintf(big + n + 200, 20000 - n - 200, "\n");
		expect_bad(big, 8, "too long");
		n = (size_t)snprintf(big, 20000, HEAD BASE "error_msg=");
		memset(big + n, 'm', 600);
		snprintf(big + n + 600, 20000 - n - 600, "\n");
		expect_bad(big, 8, "too long");
		n = (size_t)snprintf(big, 20000, HEAD "backup_log_dir=/");
		memset(big + n, 'p', 5000);
		snprintf(big + n + 5000, 20000 - n - 5000, "\n");
		expect_bad(big, 2, "too long");
		n = (size_t)snprintf(big, 20000, HEAD BASE "error_msg=");
		memset(big + n, 'm', 10000);
		snprintf(big + n + 10000, 20000 - n - 10000, "\n");
		expect_bad(big, 8, "line too long");
		free(big);
	}
	/* NUL bytes, control characters, binary */
	{
		char buf[256];
		size_t n = (size_t)snprintf(buf, sizeof(buf), HEAD BASE "backup_id=a");
		buf[n++] = '\0';
		buf[n++] = 'b';
		buf[n++] = '\n';
		amb_restore_env *x = new_env();
		write_raw(buf, n);
		assert_int_equal(amb_restore_env_load(envpath, x), AMS_EINVAL);
		assert_non_null(strstr(ams_errmsg(), ":8: NUL"));
		free(x);
	}
	expect_bad(HEAD BASE "backup_id=\x01\x02\n", 8, "control");
	expect_bad(HEAD BASE "backup_id=\xff\xfe\n", 8, "UTF-8");
	expect_bad(HEAD BASE "backup_id=\xc3\n", 8, "UTF-8");     /* truncated sequence */
	expect_bad(HEAD BASE "backup_id=\xc0\xaf\n", 8, "UTF-8"); /* overlong */
	expect_bad(HEAD BASE "backup_id=\xed\xa0\x80\n", 8, "UTF-8"); /* surrogate */
	expect_bad("\x7f" "ELF\x02\x01\x01", 1, NULL);
	{
		amb_restore_env *x = new_env();
		write_raw("\0\0\0\0", 4);
		assert_int_equal(amb_restore_env_load(envpath, x), AMS_EINVAL);
		free(x);
	}

	/* missing file */
	e = new_env();
	char nope[400];
	snprintf(nope, sizeof(nope), "%s/nope.env", tmpdir);
	assert_int_equal(amb_restore_env_load(nope, e), AMS_ENOTFOUND);
	/* a directory */
	assert_int_not_equal(amb_restore_env_load(tmpdir, e), 0);
	free(e);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

static void test_fuzz(void **state)
{
	(void)state;
	amb_restore_env *e = new_env();
	const size_t vlen = sizeof(valid) - 1;
	unsigned char *buf = malloc(20000);
	assert_non_null(buf);
	int ok = 0, bad = 0;
	static const char *pieces[] = {"\n", "=", "#", "database=", "gen_low=", "0x", "..", "/",
	                               "\r\n", " ", "\t", "\xc3\xa9", "amber-restore-env 1\n",
	                               "until=", "Z", "prefix=", "\0"};
	for (int it = 0; it < 4000; it++) {
		size_t n;
		int mode = (int)(rnd() % 4);
		if (mode == 0) {
			/* pure random bytes */
			n = rnd() % 3000;
			for (size_t i = 0; i < n; i++)
				buf[i] = (unsigned char)rnd();
		} else {
			memcpy(buf, valid, vlen);
			n = vlen;
			int muts = 1 + (int)(rnd() % 6);
			for (int m = 0; m < muts; m++) {
				int kind = (int)(rnd() % 5);
				size_t pos = n ? rnd() % n : 0;
				if (kind == 0 && n) { /* flip a byte */
					buf[pos] ^= (unsigned char)(1u << (rnd() % 8));
				} else if (kind == 1 && n) { /* delete a range */
					size_t len = rnd() % 16;
					if (pos + len > n)
						len = n - pos;
					memmove(buf + pos, buf + pos + len, n - pos - len);
					n -= len;
				} else if (kind == 2) { /* insert a piece */
					const char *p = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
					size_t len = strlen(p) ? strlen(p) : 1;
					if (n + len < 19000) {
						memmove(buf + pos + len, buf + pos, n - pos);
						memcpy(buf + pos, p, len);
						n += len;
					}
				} else if (kind == 3) { /* duplicate a chunk */
					size_t len = rnd() % 64;
					if (pos + len > n)
						len = n - pos;
					if (n + len < 19000) {
						memmove(buf + pos + len, buf + pos, n - pos);
						n += len;
					}
				} else if (n) { /* truncate */
					n = pos;
				}
			}
		}
		write_raw(buf, n);
		int rc = amb_restore_env_load(envpath, e);
		assert_true(rc == 0 || rc == AMS_EINVAL);
		if (rc == 0 && ++ok <= 40) {
			/* whatever loads must store and load back the same (each store
			 * fsyncs: a sample is enough) */
			amb_restore_env *g = new_env();
			char p2[400];
			snprintf(p2, sizeof(p2), "%s/copy.env", tmpdir);
			if (amb_restore_env_store(p2, e) != 0)
				fail_msg("store of a loaded file failed: %s", ams_errmsg());
			assert_int_equal(amb_restore_env_load(p2, g), 0);
			assert_int_equal(g->gen_low, e->gen_low);
			assert_int_equal(g->gen_high, e->gen_high);
			assert_int_equal(g->ndatabases, e->ndatabases);
			assert_int_equal(g->until_us, e->until_us);
			assert_string_equal(g->instance_dir, e->instance_dir);
			free(g);
		} else if (rc != 0) {
			bad++;
			const char *msg = ams_errmsg();
			assert_int_equal(strncmp(msg, envpath, strlen(envpath)), 0);
			assert_true(msg[strlen(envpath)] == ':');
		}
	}
	/* the loop must have exercised both outcomes */
	assert_true(ok > 10);
	assert_true(bad > 1000);
	free(buf);
	free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_defaults_relative_crlf),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_fuzz),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

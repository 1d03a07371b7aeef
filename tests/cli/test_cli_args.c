/*
 * test_cli_args.c - unit tests of src/cli/args.c and of the commands'
 * argument parsers (no amberd involved).
 *
 * What must hold:
 *   - the parser mixes options and positional arguments, takes
 *     "--opt VALUE", "--opt=VALUE", "-qv" clusters and "-lVALUE", stops at
 *     "--", treats "-" as positional, and names the offending option in
 *     its errors; the global options are taken anywhere;
 *   - numbers, ids and paths typed by the user come out as the protocol
 *     wants them (canonical lower-case uuid, absolute normalized path) or
 *     are refused with exit 2;
 *   - each command accepts exactly its documented forms.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli_testutil.h"

#define UUID_A "0b7f4e52-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
#define UUID_A_UP "{0B7F4E52-1C2D-4E3F-8A9B-0C1D2E3F4A5B}"

enum { K_FLAG = 1, K_VAL, K_Q, K_L };

static const cli_opt opts[] = {
	{ "flag", 'f', false, K_FLAG },
	{ "val", 0, true, K_VAL },
	{ "quiet", 'q', false, K_Q },
	{ "log", 'l', true, K_L },
};

/* Parse words into a string like "flag val=x pos=y q l=z" for comparison. */
static int parse_to_string(cap *c, int n, char **words, char *buf, size_t len)
{
	cli_parser p;
	cli_parser_init(&p, &c->ctx, n, words, opts, sizeof(opts) / sizeof(opts[0]));
	size_t used = 0;
	buf[0] = '\0';
	int k;
	while ((k = cli_next(&p)) != CLI_ARG_END) {
		const char *name = k == K_FLAG ? "flag" : k == K_VAL ? "val" : k == K_Q ? "q"
		                 : k == K_L ? "l" : k == CLI_ARG_POS ? "pos" : "ERR";
		if (k == CLI_ARG_ERR) {
			snprintf(buf, len, "ERR %s", p.err);
			return -1;
		}
		int w = snprintf(buf + used, len - used, "%s%s%s%s", used ? " " : "", name,
		                 p.value ? "=" : "", p.value ? p.value : "");
		used += (size_t)w;
	}
	return 0;
}

static void expect_parse(const char *want, int n, ...)
{
	char *words[16];
	va_list ap;
	va_start(ap, n);
	for (int k = 0; k < n; k++)
		words[k] = va_arg(ap, char *);
	va_end(ap);
	cap c;
	cap_open(&c);
	char buf[512];
	parse_to_string(&c, n, words, buf, sizeof(buf));
	cap_close(&c);
	if (strcmp(buf, want) != 0)
		fail_msg("parsed '%s', want '%s'", buf, want);
	cap_free(&c);
}

static void test_parser(void **state)
{
	(void)state;
	expect_parse("", 0);
	expect_parse("pos=a flag pos=b", 3, "a", "--flag", "b");
	expect_parse("val=x val=y", 3, "--val", "x", "--val=y");
	expect_parse("val=--flag", 2, "--val", "--flag");     /* a value may look like one */
	expect_parse("flag q", 1, "-fq");
	expect_parse("q l=file", 1, "-qlfile");
	expect_parse("l=file q", 3, "-l", "file", "-q");
	expect_parse("pos=- flag pos=--flag pos=-q", 5, "-", "-f", "--", "--flag", "-q");
	expect_parse("ERR unknown option '--bogus'", 1, "--bogus");
	expect_parse("ERR unknown option '-x'", 1, "-qx");
	expect_parse("ERR option '--val' needs a value", 1, "--val");
	expect_parse("ERR option '--val' needs a value", 1, "--val=");
	expect_parse("ERR option '-l' needs a value", 1, "-l");
	expect_parse("ERR option '--flag' takes no value", 1, "--flag=1");
	expect_parse("ERR unknown option '--fla'", 1, "--fla");   /* no abbreviations */
}

static void test_parser_globals(void **state)
{
	(void)state;
	cap c;
	cap_open(&c);
	char *words[] = { "a", "--socket", "/s1", "--json", "b", "-qh", "--version" };
	char buf[256];
	assert_int_equal(parse_to_string(&c, 7, words, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "pos=a pos=b q");
	assert_string_equal(c.ctx.socket, "/s1");
	assert_true(c.ctx.json);
	assert_true(c.ctx.help);
	assert_true(c.ctx.version);
	char *w2[] = { "--socket=/s2" };
	assert_int_equal(parse_to_string(&c, 1, w2, buf, sizeof(buf)), 0);
	assert_string_equal(c.ctx.socket, "/s2");
	char *w3[] = { "--socket" };
	assert_int_equal(parse_to_string(&c, 1, w3, buf, sizeof(buf)), -1);
	assert_string_equal(buf, "ERR option '--socket' needs a value");
	cap_free(&c);
}

static void test_u64(void **state)
{
	(void)state;
	uint64_t v = 7;
	assert_int_equal(cli_parse_u64("0", 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(cli_parse_u64("10", 10, &v), 0);
	assert_int_equal(v, 10);
	assert_int_equal(cli_parse_u64("11", 10, &v), -EINVAL);
	assert_int_equal(cli_parse_u64("9007199254740991", AMB_MAX_ID, &v), 0);
	assert_true(v == AMB_MAX_ID);
	assert_int_equal(cli_parse_u64("9007199254740992", AMB_MAX_ID, &v), -EINVAL);
	assert_int_equal(cli_parse_u64("18446744073709551615", UINT64_MAX, &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(cli_parse_u64("18446744073709551616", UINT64_MAX, &v), -EINVAL);
	assert_int_equal(cli_parse_u64("99999999999999999999", UINT64_MAX, &v), -EINVAL);
	const char *bad[] = { "", "-1", "+1", "1a", " 1", "1 ", "0x10", "1e3", "1.0" };
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		if (cli_parse_u64(bad[k], UINT64_MAX, &v) != -EINVAL)
			fail_msg("'%s' was accepted", bad[k]);
}

static void test_uuid(void **state)
{
	(void)state;
	amb_uuid u;
	assert_int_equal(cli_parse_uuid(UUID_A, u), 0);
	assert_string_equal(u, UUID_A);
	assert_int_equal(cli_parse_uuid(UUID_A_UP, u), 0);
	assert_string_equal(u, UUID_A);
	assert_int_equal(cli_parse_uuid("{" UUID_A "}", u), 0);
	assert_string_equal(u, UUID_A);
	const char *bad[] = {
		"", "x", "{" UUID_A, UUID_A "}", "{{" UUID_A "}}", UUID_A "0",
		"0b7f4e52-1c2d-4e3f-8a9b-0c1d2e3f4a5", "0b7f4e521c2d-4e3f-8a9b-0c1d2e3f4a5b0",
		"0b7f4e52-1c2d-4e3f-8a9b-0c1d2e3f4a5g", "0b7f4e52_1c2d-4e3f-8a9b-0c1d2e3f4a5b",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		if (cli_parse_uuid(bad[k], u) != -EINVAL)
			fail_msg("'%s' was accepted", bad[k]);
}

static void test_path_normalize(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
		{ "/", "/" }, { "//", "/" }, { "/a", "/a" }, { "/a/", "/a" },
		{ "//a//b//", "/a/b" },
		{ "/./a/./b/.", "/a/b" }, { "/a/../b", "/b" }, { "/a/b/../../c", "/c" },
		{ "/..", "/" }, { "/../../a", "/a" }, { "/a/..", "/" }, { "/a/b/..", "/a" },
		{ "/a/.../b", "/a/.../b" }, { "/a/..b/.c", "/a/..b/.c" },
		{ "/a/b/c/../../..", "/" },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		char buf[64];
		snprintf(buf, sizeof(buf), "%s", cases[k][0]);
		assert_int_equal(cli_path_normalize(buf), 0);
		if (strcmp(buf, cases[k][1]) != 0)
			fail_msg("'%s' -> '%s', want '%s'", cases[k][0], buf, cases[k][1]);
	}
	char rel[] = "a/b";
	assert_int_equal(cli_path_normalize(rel), -EINVAL);
}

static void test_path_abs(void **state)
{
	(void)state;
	char *dir = scratch_new();
	char p[4096], want[4096], err[CLI_ERR_BUF];
	char *out;
	snprintf(p, sizeof(p), "%s/real", dir);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/link", dir);
	assert_int_equal(symlink("real", p), 0);

	/* existing, through a symbolic link and with junk */
	snprintf(p, sizeof(p), "%s//link/./", dir);
	assert_int_equal(cli_path_abs(p, true, &out, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/real", dir);
	assert_string_equal(out, want);
	free(out);

	/* missing, with an existing parent reached through the link */
	snprintf(p, sizeof(p), "%s/link/new/", dir);
	assert_int_equal(cli_path_abs(p, false, &out, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/real/new", dir);
	assert_string_equal(out, want);
	free(out);

	/* missing parent too: lexical */
	snprintf(p, sizeof(p), "%s/none/x/../y", dir);
	assert_int_equal(cli_path_abs(p, false, &out, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/none/y", dir);
	assert_string_equal(out, want);
	free(out);

	/* relative, against the current directory */
	char *cwd = getcwd(NULL, 0);
	assert_non_null(cwd);
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(cli_path_abs("link", true, &out, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/real", dir);
	assert_string_equal(out, want);
	free(out);
	assert_int_equal(cli_path_abs("./missing", false, &out, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/missing", dir);
	assert_string_equal(out, want);
	free(out);
	assert_int_equal(chdir(cwd), 0);
	free(cwd);

	/* must exist */
	snprintf(p, sizeof(p), "%s/missing", dir);
	assert_int_equal(cli_path_abs(p, true, &out, err, sizeof(err)), -ENOENT);
	assert_null(out);
	assert_non_null(strstr(err, "No such file or directory"));
	assert_non_null(strstr(err, p));

	/* what the protocol refuses: a control character */
	snprintf(p, sizeof(p), "%s/new\nline", dir);
	assert_int_equal(cli_path_abs(p, false, &out, err, sizeof(err)), -EINVAL);
	assert_null(out);
	assert_int_equal(cli_path_abs("", false, &out, err, sizeof(err)), -EINVAL);
	scratch_free(dir);
}

static void test_exit_codes(void **state)
{
	(void)state;
	assert_int_equal(cli_exit_code(0), 0);
	assert_int_equal(cli_exit_code(AMB_EXIT_FAILED), 1);
	assert_int_equal(cli_exit_code(AMB_EXIT_BAD_INPUT), 2);
	assert_int_equal(cli_exit_code(AMB_EXIT_RETRYABLE), 3);
	assert_int_equal(cli_exit_code(-EINVAL), 2);
	assert_int_equal(cli_exit_code(-ECONNREFUSED), 1);
	assert_int_equal(cli_exit_code(-ENOENT), 1);
	assert_int_equal(cli_exit_code(-EPROTO), 1);
	assert_int_equal(cli_exit_code(-ECONNRESET), 1);
}

/* ------------------------------------------------ the commands' parsers */

/* PARSE(fn, &opts, words...): run a command's parser with captured
 * output; its error text is left in last_err. */
static char last_err[1024];
static cap pc;

static void parse_begin(void)
{
	cap_open(&pc);
}

static int parse_end(int rc)
{
	cap_close(&pc);
	snprintf(last_err, sizeof(last_err), "%s", pc.err ? pc.err : "");
	cap_free(&pc);
	return rc;
}

#define WORDS(...) ((char *[]){ __VA_ARGS__ })
#define NWORDS(...) ((int)(sizeof(WORDS(__VA_ARGS__)) / sizeof(char *)))
#define PARSE(fn, o, ...) \
	(parse_begin(), parse_end(fn(&pc.ctx, NWORDS(__VA_ARGS__), WORDS(__VA_ARGS__), o)))


static void test_create_args(void **state)
{
	(void)state;
	char *dir = scratch_new();
	char a[4096], b[4096], link[4096];
	snprintf(a, sizeof(a), "%s/a", dir);
	snprintf(b, sizeof(b), "%s/b", dir);
	snprintf(link, sizeof(link), "%s/link-to-a", dir);
	assert_int_equal(mkdir(a, 0700), 0);
	assert_int_equal(mkdir(b, 0700), 0);
	assert_int_equal(symlink(a, link), 0);

	cli_create_opts o;
	assert_int_equal(PARSE(cli_parse_create_shadow, &o, link, "--persistent", b, "-q",
	                       "--provider", "btrfs"), 0);
	assert_int_equal(o.n_volumes, 2);
	assert_string_equal(o.volumes[0], a);
	assert_string_equal(o.volumes[1], b);
	assert_true(o.persistent);
	assert_false(o.no_writers);
	assert_true(o.quiet);
	assert_string_equal(o.provider, "btrfs");
	cli_create_opts_free(&o);

	assert_int_equal(PARSE(cli_parse_create_shadow, &o, "--no-writers", a), 0);
	assert_true(o.no_writers);
	assert_false(o.persistent);
	assert_string_equal(o.provider, "");
	cli_create_opts_free(&o);

	/* the same volume twice, once through the link */
	assert_int_equal(PARSE(cli_parse_create_shadow, &o, a, link), CLI_EXIT_USAGE);
	assert_non_null(strstr(last_err, "given twice"));
	assert_int_equal(o.n_volumes, 0);
	assert_int_equal(PARSE(cli_parse_create_shadow, &o, "--persistent"), CLI_EXIT_USAGE);
	assert_non_null(strstr(last_err, "no VOLUME given"));
	assert_int_equal(PARSE(cli_parse_create_shadow, &o, a, "--provider", "bad name"),
	                 CLI_EXIT_USAGE);
	assert_int_equal(PARSE(cli_parse_create_shadow, &o, a, "--persist"), CLI_EXIT_USAGE);
	snprintf(b, sizeof(b), "%s/missing", dir);
	assert_int_equal(PARSE(cli_parse_create_shadow, &o, a, b), CLI_EXIT_USAGE);
	assert_non_null(strstr(last_err, "No such file or directory"));
	scratch_free(dir);
}

static void test_delete_args(void **state)
{
	(void)state;
	cli_delete_opts o;
	assert_int_equal(PARSE(cli_parse_delete_shadows, &o, "--all"), 0);
	assert_true(o.sel.all);
	cli_delete_opts_free(&o);
	assert_int_equal(PARSE(cli_parse_delete_shadows, &o, "--shadow", UUID_A_UP, "-q"), 0);
	assert_string_equal(o.sel.shadow, UUID_A);
	assert_true(o.quiet);
	assert_false(o.sel.all);
	cli_delete_opts_free(&o);
	assert_int_equal(PARSE(cli_parse_delete_shadows, &o, "--set=" UUID_A), 0);
	assert_string_equal(o.sel.set, UUID_A);
	assert_string_equal(o.sel.shadow, "");
	cli_delete_opts_free(&o);
	assert_int_equal(PARSE(cli_parse_delete_shadows, &o, "--oldest", "/no/such//vol/"), 0);
	assert_string_equal(o.sel.oldest, "/no/such/vol");
	cli_delete_opts_free(&o);
	assert_int_equal(PARSE(cli_parse_delete_shadows, &o, "--exposed", "/no/mnt/../x"), 0);
	assert_string_equal(o.sel.exposed, "/no/x");
	cli_delete_opts_free(&o);

	assert_int_equal(PARSE(cli_parse_delete_shadows, &o, "-q"), CLI_EXIT_USAGE);
	assert_non_null(strstr(last_err, "say what to delete"));
	assert_int_equal(PARSE(cli_parse_delete_shadows, &o, "--all", "--set", UUID_A),
	                 CLI_EXIT_USAGE);
	assert_non_null(strstr(last_err, "give only one of"));
	assert_int_equal(PARSE(cli_parse_delete_shadows, &o, "--all", "--all"), CLI_EXIT_USAGE);
	assert_int_equal(PARSE(cli_parse_delete_shadows, &o, "--shadow", "nope"), CLI_EXIT_USAGE);
	assert_non_null(strstr(last_err, "not a shadow copy ID"));
	assert_int_equal(PARSE(cli_parse_delete_shadows, &o, "--all", "extra"), CLI_EXIT_USAGE);
	assert_int_equal(PARSE(cli_parse_delete_shadows, &o, "--yes"), CLI_EXIT_USAGE);
}

static void test_expose_args(void **state)
{
	(void)state;
	cli_expose_opts o;
	assert_int_equal(PARSE(cli_parse_expose, &o, UUID_A_UP, "/mnt//snap/"), 0);
	assert_string_equal(o.shadow, UUID_A);
	assert_string_equal(o.path, "/mnt/snap");
	cli_expose_opts_free(&o);
	assert_int_equal(PARSE(cli_parse_unexpose, &o, "-q", "/mnt/./snap"), 0);
	assert_string_equal(o.path, "/mnt/snap");
	assert_true(o.quiet);
	cli_expose_opts_free(&o);

	assert_int_equal(PARSE(cli_parse_expose, &o, UUID_A), CLI_EXIT_USAGE);
	assert_non_null(strstr(last_err, "no PATH given"));
	assert_int_equal(PARSE(cli_parse_expose, &o, "x", "/mnt"), CLI_EXIT_USAGE);
	assert_int_equal(PARSE(cli_parse_expose, &o, UUID_A, "/a", "/b"), CLI_EXIT_USAGE);
	assert_int_equal(PARSE(cli_parse_unexpose, &o, "/a", "/b"), CLI_EXIT_USAGE);
	assert_non_null(strstr(last_err, "unexpected argument '/b'"));
}

static void test_events_args(void **state)
{
	(void)state;
	cli_events_opts o;
	assert_int_equal(PARSE(cli_parse_events, &o, "--json"), 0);
	assert_false(o.follow);
	assert_false(o.has_since);
	assert_int_equal(o.limit, 0);
	assert_int_equal(PARSE(cli_parse_events, &o, "-f", "--since", "0", "-n", "5"), 0);
	assert_true(o.follow);
	assert_true(o.has_since);
	assert_int_equal(o.since, 0);
	assert_int_equal(o.limit, 5);
	assert_int_equal(PARSE(cli_parse_events, &o, "--since=42", "--follow"), 0);
	assert_int_equal(o.since, 42);
	assert_int_equal(PARSE(cli_parse_events, &o, "--limit", "0"), CLI_EXIT_USAGE);
	assert_int_equal(PARSE(cli_parse_events, &o, "--since", "-1"), CLI_EXIT_USAGE);
	assert_int_equal(PARSE(cli_parse_events, &o, "--since", "9007199254740992"),
	                 CLI_EXIT_USAGE);
	assert_int_equal(PARSE(cli_parse_events, &o, "all"), CLI_EXIT_USAGE);
}

static void test_list_args(void **state)
{
	(void)state;
	cli_list_shadows_opts o;
	assert_int_equal(PARSE(cli_parse_list_shadows, &o, "--set", UUID_A_UP, "--volume",
	                       "/srv//mail/"), 0);
	assert_string_equal(o.set, UUID_A);
	assert_string_equal(o.volume, "/srv/mail");
	cli_list_shadows_opts_free(&o);
	assert_int_equal(PARSE(cli_parse_list_shadows, &o, "--json"), 0);
	assert_string_equal(o.set, "");
	assert_null(o.volume);
	assert_int_equal(PARSE(cli_parse_list_shadows, &o, "--set", "1"), CLI_EXIT_USAGE);
	assert_int_equal(PARSE(cli_parse_list_shadows, &o, "x"), CLI_EXIT_USAGE);

	cap c;
	cap_open(&c);
	char *w[] = { "--json", "--socket", "/x" };
	assert_int_equal(cli_parse_no_args(&c.ctx, 3, w), 0);
	assert_true(c.ctx.json);
	char *w2[] = { "extra" };
	assert_int_equal(cli_parse_no_args(&c.ctx, 1, w2), CLI_EXIT_USAGE);
	cap_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parser),
		cmocka_unit_test(test_parser_globals),
		cmocka_unit_test(test_u64),
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_path_normalize),
		cmocka_unit_test(test_path_abs),
		cmocka_unit_test(test_exit_codes),
		cmocka_unit_test(test_create_args),
		cmocka_unit_test(test_delete_args),
		cmocka_unit_test(test_expose_args),
		cmocka_unit_test(test_events_args),
		cmocka_unit_test(test_list_args),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

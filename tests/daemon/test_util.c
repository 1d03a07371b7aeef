/*
 * test_util.c - amberd's util.c: every message amberd sends must pass its
 * own protocol's text rule, whatever bytes a file name brought in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "amber/proto.h"
#include "daemon/amberd.h"

amberd D; /* util.c's resp_* use no state; the symbol is main.c's otherwise */

static void clean(const char *in, size_t max, const char *want)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", in);
	amberd_clean_text(buf, max);
	assert_string_equal(buf, want);
}

static void test_clean_text(void **st)
{
	(void)st;
	clean("plain text", 100, "plain text");
	clean("tab\there\nnl\x7f", 100, "tab?here?nl?");
	clean("caf\xc3\xa9", 100, "caf\xc3\xa9");              /* valid 2-byte */
	clean("\xe2\x82\xac euro", 100, "\xe2\x82\xac euro");   /* valid 3-byte */
	clean("\xf0\x9f\x98\x80", 100, "\xf0\x9f\x98\x80");     /* valid 4-byte */
	clean("bad\xff\xfe!", 100, "bad?" "?!");                   /* invalid bytes */
	clean("c1\xc2\x85x", 100, "c1?x");                      /* U+0085 (C1) */
	clean("over\xc0\xafx", 100, "over??x");                 /* overlong '/' */
	clean("\xe0\x80\xaf", 100, "?");                        /* overlong 3-byte */
	clean("sur\xed\xa0\x80", 100, "sur?");                  /* surrogate */
	clean("cut\xe2\x82", 100, "cut??");                     /* truncated sequence */
	clean("abc\xc3\xa9", 4, "abc");                         /* no split character */
	clean("", 100, "-");
	/* the result always passes the encoder's text rule */
	char buf[64];
	snprintf(buf, sizeof(buf), "x\x01\xc2\x9f\xff\xf4\x90\x80\x80y");
	amberd_clean_text(buf, AMB_TEXT_MAX);
	amb_msg m;
	memset(&m, 0, sizeof(m));
	m.kind = AMB_MSG_ERROR;
	m.id = 1;
	m.u.error.exit = AMB_EXIT_FAILED;
	m.u.error.message = buf;
	char err[128];
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), 0);
}

static void test_path_within(void **st)
{
	(void)st;
	assert_true(amberd_path_within("/srv/mail", "/srv"));
	assert_true(amberd_path_within("/srv", "/srv"));
	assert_true(amberd_path_within("/srv", "/"));
	assert_false(amberd_path_within("/srvx", "/srv"));
	assert_false(amberd_path_within("/sr", "/srv"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean_text),
		cmocka_unit_test(test_path_within),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

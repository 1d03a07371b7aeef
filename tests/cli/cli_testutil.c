/*
 * cli_testutil.c - see cli_testutil.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_testutil.h"

void cap_open(cap *c)
{
	memset(c, 0, sizeof(*c));
	c->ctx.out = open_memstream(&c->out, &c->out_len);
	c->ctx.err = open_memstream(&c->err, &c->err_len);
	assert_non_null(c->ctx.out);
	assert_non_null(c->ctx.err);
}

void cap_close(cap *c)
{
	if (c->ctx.out)
		fclose(c->ctx.out);
	if (c->ctx.err)
		fclose(c->ctx.err);
	c->ctx.out = NULL;
	c->ctx.err = NULL;
}

void cap_free(cap *c)
{
	cap_close(c);
	free(c->out);
	free(c->err);
	memset(c, 0, sizeof(*c));
}

int cap_runv(cap *c, int n, const char *const *words)
{
	char **argv = calloc((size_t)n + 2, sizeof(*argv));
	assert_non_null(argv);
	argv[0] = strdup("amber");
	for (int k = 0; k < n; k++)
		argv[k + 1] = strdup(words[k]);
	cap_open(c);
	int rc = cli_main(&c->ctx, n + 1, argv);
	cap_close(c);
	for (int k = 0; k <= n; k++)
		free(argv[k]);
	free(argv);
	return rc;
}

int cap_run(cap *c, ...)
{
	const char *words[64];
	int n = 0;
	va_list ap;
	va_start(ap, c);
	const char *w;
	while ((w = va_arg(ap, const char *)) != NULL) {
		assert_true(n < 64);
		words[n++] = w;
	}
	va_end(ap);
	return cap_runv(c, n, words);
}

char *scratch_new(void)
{
	const char *tmp = getenv("TMPDIR");
	char tmpl[4096];
	snprintf(tmpl, sizeof(tmpl), "%s/amber-cli-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(tmpl));
	char *real = realpath(tmpl, NULL);
	assert_non_null(real);
	return real;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void scratch_free(char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

/*
 * cli_testutil.h - helpers for the tests of the amber tool: run the parser
 * or the whole program with standard output and error captured in memory,
 * and make scratch directories.
 */
#ifndef AMBER_TESTS_CLI_TESTUTIL_H
#define AMBER_TESTS_CLI_TESTUTIL_H

#include <stddef.h>
#include <stdio.h>

#include "cli/cli.h"

/* A ctx whose out and err go to memory; the strings are valid after
 * cap_close() until cap_free(). */
typedef struct cap {
	cli_ctx ctx;
	char *out;
	size_t out_len;
	char *err;
	size_t err_len;
} cap;

void cap_open(cap *c);
void cap_close(cap *c);
void cap_free(cap *c);

/* Run `amber ARGS...` (NULL-terminated) through cli_main() with captured
 * output.  Returns the exit code; c is closed, cap_free() it. */
int cap_run(cap *c, ...);
/* The same with an argv array of n words (without "amber"). */
int cap_runv(cap *c, int n, const char *const *words);

/* A fresh scratch directory under TMPDIR (or /tmp), resolved with
 * realpath; rm -r'd by scratch_free(). */
char *scratch_new(void);
void scratch_free(char *dir);

#endif

/*
 * fuzz_script.c - libFuzzer target for the amber script parser
 * (src/script/parse.c).  Built with clang -fsanitize=fuzzer,address,
 * undefined (tests/script/CMakeLists.txt) and run by the CTest test
 * script/fuzz for a bounded time.
 *
 * Each input is a script, used four ways:
 *   1. sc_parse_text() on the bytes: 0 with every command, or -1 with a
 *      one-line "LINE: message" and nothing to free;
 *   2. the same lines through sc_parse_line() with one parser, as the
 *      interactive prompt feeds them (going on after a refused line): a
 *      refused line leaves the parser and *out untouched, and up to the
 *      first error the two ways must agree on every command, on that
 *      error (same message) and on the warning;
 *   3. every command written back with sc_cmd_text() must parse again, in
 *      a copy of the state it was parsed in, to the same command and the
 *      same next state, and in a fresh parser, where it parses, to the
 *      same command;
 *   4. sc_expand() of the input and of every argument, with a lookup that
 *      knows a few names: a string, or NULL with a message; text without
 *      % comes back unchanged.
 * A violated invariant calls abort(), which libFuzzer reports as a crash.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "script/script.h"
#include "sc_compare.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* room for any line of SC_LINE_MAX bytes written back: each byte at most
 * doubled by an escape, three more bytes per word ("" and a blank) */
static char text1[3 * SC_LINE_MAX], text2[3 * SC_LINE_MAX];

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void parser_clone(const sc_parser *from, sc_parser *to)
{
	check(sc_parser_clone(from, to));
}

/* "LINE: message" on one line: no control character but a tab. */
static void check_err(const char *err, unsigned lineno)
{
	char *end;
	unsigned long l = strtoul(err, &end, 10);
	check(end != err && l == lineno && end[0] == ':' && end[1] == ' ' && end[2]);
	for (const char *s = err; *s; s++)
		check((unsigned char)*s >= 0x20 || *s == '\t');
}

static bool cmd_empty(const sc_cmd *c)
{
	return c->op == SC_NONE && !c->sub && !c->flag && !c->arg[0] && !c->arg[1] &&
	       !c->arg[2] && !c->argv && !c->argc;
}

static const char *lookup(const char *name, void *ctx)
{
	(void)ctx;
	if (strcmp(name, "m") == 0 || strcmp(name, "AMBER_SHADOW_SET_ID") == 0)
		return "0b1c2d3e-4f50-4a6b-8c7d-8e9fa0b1c2d3";
	if (strcmp(name, "m_PATH") == 0)
		return "/run/amber/shadows/m";
	if (strcmp(name, "EMPTY") == 0)
		return "";
	if (strcmp(name, "PCT") == 0)
		return "%m%";
	return NULL;
}

static void check_expand(const char *in)
{
	char err[SC_ERR_MAX] = "";
	char *out = sc_expand(in, lookup, NULL, err, sizeof(err));
	if (!out) {
		check(err[0] != '\0');
		return;
	}
	if (!strchr(in, '%'))
		check(strcmp(out, in) == 0);
	free(out);
}

/* c was parsed from line lineno in state before, which it moved to after. */
static void check_cmd(const sc_parser *before, const sc_parser *after, const sc_cmd *c)
{
	char err[SC_ERR_MAX];
	for (int i = 0; i < 3; i++)
		if (c->arg[i])
			check_expand(c->arg[i]);
	for (size_t i = 0; i < c->argc; i++)
		check_expand(c->argv[i]);
	check(c->op != SC_EXEC || (c->argc > 0 && c->argv[c->argc] == NULL));
	if (c->op == SC_ADD_VOLUME && c->arg[1])
		check(sc_alias_name_ok(c->arg[1]));
	for (int i = 0; i < 3; i++) {
		char id[37], id2[37];
		if (c->arg[i] && sc_uuid_parse(c->arg[i], id))
			check(strlen(id) == 36 && sc_uuid_parse(id, id2) && strcmp(id, id2) == 0);
	}

	sc_cmd_text(c, text1, sizeof(text1));
	size_t len = strlen(text1);
	check(len + 1 < sizeof(text1));  /* never cut */
	if (len > SC_LINE_MAX)
		return;  /* too long to be a line; the parser says so */
	sc_parser q;
	parser_clone(before, &q);
	sc_cmd c2;
	check(sc_parse_line(&q, text1, c->line, &c2, err, sizeof(err)) == 0);
	check(sc_cmd_equal(c, &c2));
	check(sc_parser_same(&q, after));
	sc_cmd_text(&c2, text2, sizeof(text2));
	check(strcmp(text1, text2) == 0);
	sc_cmd_free(&c2);
	sc_parser_free(&q);

	sc_parser_init(&q);
	if (sc_parse_line(&q, text1, c->line, &c2, err, sizeof(err)) == 0) {
		check(sc_cmd_equal(c, &c2));
		sc_cmd_free(&c2);
	} else {
		check_err(err, c->line);
		check(cmd_empty(&c2));
	}
	sc_parser_free(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	sc_script s;
	char terr[SC_ERR_MAX] = "";
	int trc = sc_parse_text(text, size, &s, terr, sizeof(terr));
	check(trc == 0 || trc == -1);
	if (trc)
		check(s.n == 0 && s.cmds == NULL);

	char *line = malloc(size + 1);
	check(line != NULL);
	sc_parser p;
	sc_parser_init(&p);
	size_t i = 0, ci = 0;
	unsigned lineno = 0;
	bool failed = false;  /* sc_parse_text stopped at an earlier line */
	while (i < size) {
		lineno++;
		size_t k = 0;
		bool nul = false;
		while (i < size && text[i] != '\n') {
			nul |= text[i] == '\0';
			line[k++] = text[i++];
		}
		if (i < size)
			i++;
		line[k] = '\0';
		if (nul) {
			/* sc_parse_text stops here (a NUL byte, or a line too long) */
			if (!failed) {
				check(trc == -1);
				check_err(terr, lineno);
				failed = true;
			}
			continue;
		}
		sc_parser raw, before;
		memcpy(&raw, &p, sizeof(raw));
		parser_clone(&p, &before);
		sc_cmd c;
		char err[SC_ERR_MAX] = "";
		if (sc_parse_line(&p, line, lineno, &c, err, sizeof(err)) != 0) {
			check_err(err, lineno);
			check(cmd_empty(&c) && c.line == lineno);
			check(memcmp(&raw, &p, sizeof(raw)) == 0);
			check(failed || (trc == -1 && strcmp(err, terr) == 0));
			failed = true;  /* and go on, as the prompt does */
		} else {
			check(c.line == lineno);
			if (c.op != SC_NONE) {
				check_cmd(&before, &p, &c);
				check(failed || trc != 0 ||
				      (ci < s.n && sc_cmd_equal(&c, &s.cmds[ci])));
				ci++;
			}
			sc_cmd_free(&c);
		}
		sc_parser_free(&before);
	}
	if (!failed) {
		if (p.in_restore) {
			check(trc == -1 && strstr(terr, "begin restore has no end restore"));
			check_err(terr, lineno);
		} else {
			check(trc == 0 && ci == s.n);
			check((p.in_backup && !p.exited) == (s.warn[0] != '\0'));
		}
	}
	sc_parser_free(&p);
	sc_script_free(&s);

	/* the whole input, up to a NUL, as one argument */
	memcpy(line, text, size);
	line[size] = '\0';
	check_expand(line);
	free(line);
	return 0;
}

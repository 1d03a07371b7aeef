/*
 * test_script_parse.c - unit tests of src/script/parse.c, the language of
 * amber script (script.h).
 *
 * What must hold:
 *   - every command's documented forms parse to the right op, sub, flag
 *     and arguments, with the command words in any case;
 *   - every malformed form is refused with "LINE: message" naming the
 *     problem, *out left empty and the parser's state untouched (byte for
 *     byte), so the next good line parses as if the bad one was never
 *     typed;
 *   - sc_parse_text() numbers lines across blank and comment lines, stops
 *     at a NUL byte or a too-long line, warns of a backup left open and
 *     refuses a restore left open;
 *   - sc_cmd_text() writes a line that parses back to the same command and
 *     the same next state (checked for every good line parsed here);
 *   - sc_expand() replaces %NAME% and %%, and refuses what it cannot.
 *
 * Most cases are tables: setup lines that must parse, then the line under
 * test, then (for the bad ones) a good line that must still parse.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "script/script.h"
#include "sc_compare.h"

#define UUID "76fe1ac4-15f7-4bcd-987e-8e1acb462fb7"
#define UUID_UP "{76FE1AC4-15F7-4BCD-987E-8E1ACB462FB7}"
/* a persistent set whose shadow m exists: %m% may be exposed */
#define CREATED "set context persistent\nadd volume /srv/mail alias m\ncreate"
/* a name that is neither an alias nor in the environment */
#define NOENV "AMBER_TEST_SC_NOSUCH"

/* ------------------------------------------------------------ helpers */

static void parser_clone(const sc_parser *from, sc_parser *to)
{
	assert_true(sc_parser_clone(from, to));
}

/* sc_cmd_text(c) parsed in the state c was parsed in (before) must give c
 * again, and the state c led to (after); in a fresh parser, where it
 * parses at all, c again. */
static void check_round_trip(const sc_parser *before, const sc_parser *after, const sc_cmd *c)
{
	static char text[3 * SC_LINE_MAX], text2[3 * SC_LINE_MAX];
	char err[SC_ERR_MAX] = "";
	sc_cmd_text(c, text, sizeof(text));
	sc_parser q;
	parser_clone(before, &q);
	sc_cmd c2;
	if (sc_parse_line(&q, text, c->line, &c2, err, sizeof(err)) != 0)
		fail_msg("'%s' does not parse back: %s", text, err);
	if (!sc_cmd_equal(c, &c2))
		fail_msg("'%s' parses back to another command", text);
	if (!sc_parser_same(&q, after))
		fail_msg("'%s' parses back to another state", text);
	sc_cmd_text(&c2, text2, sizeof(text2));
	assert_string_equal(text, text2);
	sc_cmd_free(&c2);
	sc_parser_free(&q);

	sc_parser_init(&q);
	if (sc_parse_line(&q, text, c->line, &c2, err, sizeof(err)) == 0) {
		if (!sc_cmd_equal(c, &c2))
			fail_msg("'%s' parses to another command in a fresh parser", text);
		sc_cmd_free(&c2);
	}
	sc_parser_free(&q);
}

/* line must parse in p; the command goes to *c (the caller frees it). */
static void parse_ok(sc_parser *p, const char *line, unsigned lineno, sc_cmd *c)
{
	sc_parser before;
	parser_clone(p, &before);
	char err[SC_ERR_MAX] = "";
	if (sc_parse_line(p, line, lineno, c, err, sizeof(err)) != 0)
		fail_msg("'%s' refused: %s", line, err);
	assert_int_equal(c->line, lineno);
	if (c->op != SC_NONE)
		check_round_trip(&before, p, c);
	sc_parser_free(&before);
}

/* Parse lines ('\n'-separated; NULL: none) into p; returns how many. */
static unsigned run_lines(sc_parser *p, const char *lines)
{
	static char buf[SC_LINE_MAX + 1];
	unsigned n = 0;
	for (const char *s = lines; s;) {
		const char *e = strchr(s, '\n');
		size_t l = e ? (size_t)(e - s) : strlen(s);
		assert_true(l <= SC_LINE_MAX);
		memcpy(buf, s, l);
		buf[l] = '\0';
		sc_cmd c;
		parse_ok(p, buf, ++n, &c);
		sc_cmd_free(&c);
		s = e ? e + 1 : NULL;
	}
	return n;
}

/* line must be refused with "LINENO: ...phrase...", nothing out, p as it was. */
static void parse_bad(sc_parser *p, const char *line, unsigned lineno, const char *phrase)
{
	sc_parser raw;
	memcpy(&raw, p, sizeof(raw));
	sc_cmd c;
	memset(&c, 0x5a, sizeof(c));
	char err[SC_ERR_MAX] = "";
	int rc = sc_parse_line(p, line, lineno, &c, err, sizeof(err));
	if (rc != -1) {
		if (rc == 0)
			sc_cmd_free(&c);
		fail_msg("'%s' accepted (rc %d), want an error with '%s'", line, rc, phrase);
	}
	char want[32];
	snprintf(want, sizeof(want), "%u: ", lineno);
	if (strncmp(err, want, strlen(want)) != 0 || !strstr(err + strlen(want), phrase))
		fail_msg("'%s': message '%s', want '%s...%s...'", line, err, want, phrase);
	assert_int_equal(c.op, SC_NONE);
	assert_int_equal(c.line, lineno);
	assert_int_equal(c.sub, 0);
	assert_false(c.flag);
	for (int i = 0; i < 3; i++)
		assert_null(c.arg[i]);
	assert_null(c.argv);
	assert_int_equal(c.argc, 0);
	if (memcmp(&raw, p, sizeof(raw)) != 0)
		fail_msg("'%s' (refused) changed the parser's state", line);
}

typedef struct good_case {
	const char *setup;    /* lines that must parse first, or NULL */
	const char *line;
	sc_op op;
	int sub;
	bool flag;
	const char *a0, *a1, *a2;
} good_case;

static void run_good(const good_case *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		sc_parser p;
		sc_parser_init(&p);
		unsigned ln = run_lines(&p, t[i].setup) + 1;
		sc_cmd c;
		parse_ok(&p, t[i].line, ln, &c);
		if (c.op != t[i].op || c.sub != t[i].sub || c.flag != t[i].flag ||
		    !sc_same_str(c.arg[0], t[i].a0) || !sc_same_str(c.arg[1], t[i].a1) ||
		    !sc_same_str(c.arg[2], t[i].a2) || c.argv || c.argc)
			fail_msg("'%s': op %d sub %d flag %d args '%s' '%s' '%s'", t[i].line,
			         (int)c.op, c.sub, (int)c.flag, c.arg[0] ? c.arg[0] : "(null)",
			         c.arg[1] ? c.arg[1] : "(null)", c.arg[2] ? c.arg[2] : "(null)");
		sc_cmd_free(&c);
		sc_parser_free(&p);
	}
}

typedef struct bad_case {
	const char *setup;    /* lines that must parse first, or NULL */
	const char *line;     /* refused */
	const char *phrase;   /* in the message */
	const char *then;     /* a good line that must parse after it, or NULL */
} bad_case;

static void run_bad(const bad_case *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		sc_parser p;
		sc_parser_init(&p);
		unsigned ln = run_lines(&p, t[i].setup) + 1;
		parse_bad(&p, t[i].line, ln, t[i].phrase);
		if (t[i].then) {
			sc_cmd c;
			parse_ok(&p, t[i].then, ln + 1, &c);
			sc_cmd_free(&c);
		}
		sc_parser_free(&p);
	}
}

#define RUN_GOOD(t) run_good((t), sizeof(t) / sizeof((t)[0]))
#define RUN_BAD(t) run_bad((t), sizeof(t) / sizeof((t)[0]))

/* A string of n copies of ch after prefix and before suffix (malloc'd). */
static char *repeat(const char *prefix, char ch, size_t n, const char *suffix)
{
	size_t lp = strlen(prefix), ls = strlen(suffix);
	char *s = malloc(lp + n + ls + 1);
	assert_non_null(s);
	memcpy(s, prefix, lp);
	memset(s + lp, ch, n);
	memcpy(s + lp + n, suffix, ls + 1);
	return s;
}

static void good_line(const char *line)
{
	sc_parser p;
	sc_parser_init(&p);
	sc_cmd c;
	parse_ok(&p, line, 1, &c);
	sc_cmd_free(&c);
	sc_parser_free(&p);
}

static void bad_line(const char *line, const char *phrase)
{
	sc_parser p;
	sc_parser_init(&p);
	parse_bad(&p, line, 1, phrase);
	sc_parser_free(&p);
}

/* -------------------------------------------------------------- lines */

static void test_blank_and_comments(void **state)
{
	(void)state;
	static const char *const blank[] = { "", " ", "\t \t", "\n", "\r\n", "# a comment",
		                             "   # set context persistent", "#", "\t#x\r\n" };
	for (size_t i = 0; i < sizeof(blank) / sizeof(blank[0]); i++) {
		sc_parser p;
		sc_parser_init(&p);
		sc_cmd c;
		parse_ok(&p, blank[i], 3, &c);
		assert_int_equal(c.op, SC_NONE);
		assert_null(c.arg[0]);
		assert_null(c.argv);
		sc_parser_free(&p);
	}
	static const good_case t[] = {
		{ NULL, "set verbose on # and a comment", SC_SET_VERBOSE, 0, true, NULL, NULL,
		  NULL },
		{ NULL, "  set\tverbose   off\r\n", SC_SET_VERBOSE, 0, false, NULL, NULL, NULL },
		{ NULL, "unexpose /mnt/g#x", SC_UNEXPOSE, 0, false, "/mnt/g#x", NULL, NULL },
		{ NULL, "unexpose \"/mnt/#g\" #", SC_UNEXPOSE, 0, false, "/mnt/#g", NULL, NULL },
		{ NULL, "list providers #", SC_LIST_PROVIDERS, 0, false, NULL, NULL, NULL },
	};
	RUN_GOOD(t);
	/* # starts a comment only where a word starts */
	bad_line("list providers#", "list providers#: expected writers, shadows or providers");
}

/* ---------------------------------------------------------------- set */

static void test_set_good(void **state)
{
	(void)state;
	static const good_case t[] = {
		{ NULL, "set context persistent", SC_SET_CONTEXT, SC_CTX_PERSISTENT, false, NULL,
		  NULL, NULL },
		{ NULL, "set context volatile", SC_SET_CONTEXT, SC_CTX_VOLATILE, false, NULL, NULL,
		  NULL },
		{ NULL, "set context persistent nowriters", SC_SET_CONTEXT, SC_CTX_PERSISTENT, true,
		  NULL, NULL, NULL },
		{ NULL, "SET context persistent", SC_SET_CONTEXT, SC_CTX_PERSISTENT, false, NULL,
		  NULL, NULL },
		{ NULL, "Set Context VOLATILE NoWriters", SC_SET_CONTEXT, SC_CTX_VOLATILE, true,
		  NULL, NULL, NULL },
		{ "set context persistent", "set context volatile", SC_SET_CONTEXT, SC_CTX_VOLATILE,
		  false, NULL, NULL, NULL },
		{ "add volume /srv/a\ncreate\nreset", "set context persistent", SC_SET_CONTEXT,
		  SC_CTX_PERSISTENT, false, NULL, NULL, NULL },
		{ NULL, "set verbose on", SC_SET_VERBOSE, 0, true, NULL, NULL, NULL },
		{ NULL, "set verbose off", SC_SET_VERBOSE, 0, false, NULL, NULL, NULL },
		{ NULL, "SET VERBOSE On", SC_SET_VERBOSE, 0, true, NULL, NULL, NULL },
		{ "add volume /srv/a\ncreate", "set verbose off", SC_SET_VERBOSE, 0, false, NULL,
		  NULL, NULL },
		{ NULL, "set metadata /backup/mail.xml", SC_SET_METADATA, 0, false,
		  "/backup/mail.xml", NULL, NULL },
		{ "begin backup\nadd volume /srv/a", "Set Metadata \"/backup/mail meta.xml\"",
		  SC_SET_METADATA, 0, false, "/backup/mail meta.xml", NULL, NULL },
		{ NULL, "set option differential", SC_SET_OPTION, SC_OPT_DIFFERENTIAL, false, NULL,
		  NULL, NULL },
		{ NULL, "set option plex", SC_SET_OPTION, SC_OPT_PLEX, false, NULL, NULL, NULL },
		{ NULL, "set option noautorecover", SC_SET_OPTION, SC_OPT_NOAUTORECOVER, false,
		  NULL, NULL, NULL },
		{ NULL, "SET OPTION Differential NoAutoRecover", SC_SET_OPTION,
		  SC_OPT_DIFFERENTIAL | SC_OPT_NOAUTORECOVER, false, NULL, NULL, NULL },
		{ NULL, "set option noautorecover plex plex", SC_SET_OPTION,
		  SC_OPT_PLEX | SC_OPT_NOAUTORECOVER, false, NULL, NULL, NULL },
		{ NULL, "set provider btrfs", SC_SET_PROVIDER, 0, false, "btrfs", NULL, NULL },
		{ NULL, "set provider auto", SC_SET_PROVIDER, 0, false, "auto", NULL, NULL },
		{ "add volume /srv/a", "SET PROVIDER Copy", SC_SET_PROVIDER, 0, false, "Copy", NULL,
		  NULL },
	};
	RUN_GOOD(t);
}

static void test_set_bad(void **state)
{
	(void)state;
	static const bad_case t[] = {
		{ NULL, "set", "set what?", "set verbose on" },
		{ NULL, "set color red", "set color: unknown setting", NULL },
		{ NULL, "set context", "usage: set context persistent|volatile", NULL },
		{ NULL, "set context persistent nowriters now", "usage: set context", NULL },
		{ NULL, "set context temporary", "set context temporary: expected persistent or "
		  "volatile", "set context persistent" },
		{ NULL, "set context persistent writers", "expected nowriters", NULL },
		{ NULL, "set context clientaccessible", "no Linux counterpart",
		  "set context persistent" },
		{ "add volume /srv/a", "set context persistent", "set context must come before "
		  "begin backup, add volume and create", "add volume /srv/b" },
		{ "begin backup", "set context persistent", "set context must come before",
		  "add volume /srv/a" },
		{ "begin restore", "set context volatile", "set context must come before",
		  "end restore" },
		{ NULL, "set verbose", "usage: set verbose on|off", NULL },
		{ NULL, "set verbose yes", "usage: set verbose", NULL },
		{ NULL, "set verbose on off", "usage: set verbose", "set verbose off" },
		{ NULL, "set metadata", "usage: set metadata FILE", NULL },
		{ NULL, "set metadata /a /b", "usage: set metadata FILE", NULL },
		{ NULL, "set metadata meta.xml", "metadata file 'meta.xml' is not an absolute path",
		  "set metadata /b/meta.xml" },
		{ NULL, "set metadata c:\\meta.cab", "is a Windows drive: amber takes Linux paths",
		  NULL },
		{ NULL, "set metadata /b/%" NOENV "%.xml", "unknown alias %" NOENV "%", NULL },
		{ "add volume /srv/a\ncreate", "set metadata /b/m.xml", "set metadata must come "
		  "before create", "reset" },
		{ NULL, "set option", "usage: set option [differential|plex] [noautorecover]",
		  NULL },
		{ NULL, "set option bogus", "set option bogus: unknown option", NULL },
		{ NULL, "set option differential plex", "differential and plex exclude each other",
		  "set option plex" },
		{ NULL, "set option PLEX noautorecover DIFFERENTIAL", "exclude each other", NULL },
		{ "add volume /srv/a\ncreate", "set option plex", "set option must come before "
		  "create", "list shadows" },
		{ NULL, "set provider", "usage: set provider NAME|auto", NULL },
		{ NULL, "set provider btrfs copy", "usage: set provider", "set provider btrfs" },
		{ "add volume /srv/a\ncreate", "set provider btrfs",
		  "set provider must come before create", "reset" },
	};
	unsetenv(NOENV);
	RUN_BAD(t);
}

/* ------------------------------------------------------------- writer */

static void test_writer(void **state)
{
	(void)state;
	static const good_case good[] = {
		{ NULL, "writer verify {" UUID "}", SC_WRITER_VERIFY, 0, false, "{" UUID "}", NULL,
		  NULL },
		{ NULL, "writer verify mail", SC_WRITER_VERIFY, 0, false, "mail", NULL, NULL },
		{ NULL, "writer exclude mail/db1", SC_WRITER_EXCLUDE, 0, false, "mail/db1", NULL,
		  NULL },
		{ NULL, "Writer Exclude \"Microsoft Exchange Writer\"", SC_WRITER_EXCLUDE, 0, false,
		  "Microsoft Exchange Writer", NULL, NULL },
		{ NULL, "WRITER VERIFY Mail", SC_WRITER_VERIFY, 0, false, "Mail", NULL, NULL },
		{ "set context persistent\nbegin backup\nadd volume /srv/mail",
		  "writer verify mail", SC_WRITER_VERIFY, 0, false, "mail", NULL, NULL },
	};
	RUN_GOOD(good);
	static const bad_case bad[] = {
		{ NULL, "writer", "usage: writer verify|exclude NAME|{ID}|NAME/COMPONENT", NULL },
		{ NULL, "writer verify", "usage: writer", "writer verify mail" },
		{ NULL, "writer verify mail db", "usage: writer", NULL },
		{ NULL, "writer include mail", "usage: writer", NULL },
		{ NULL, "writer verify /mail",
		  "writer verify '/mail': expected a writer name or id", "writer verify mail" },
		{ NULL, "writer exclude \"\"", "expected a writer name or id", NULL },
		{ "set context persistent nowriters", "writer verify mail", "no writer takes part",
		  "list writers" },
		{ "add volume /srv/a\ncreate", "writer verify mail", "writer verify after create: "
		  "the writers are already chosen", "list shadows" },
		{ "begin backup\nadd volume /srv/a\ncreate", "Writer Exclude mail", "after create",
		  "end backup" },
	};
	RUN_BAD(bad);
	char *name = repeat("writer verify ", 'w', 255, "");
	good_line(name);
	free(name);
	name = repeat("writer verify ", 'w', 256, "");
	bad_line(name, "writer name too long");
	free(name);
}

/* ---------------------------------------------------- backup, restore */

static void test_backup_restore(void **state)
{
	(void)state;
	static const good_case good[] = {
		{ NULL, "begin backup", SC_BEGIN_BACKUP, 0, false, NULL, NULL, NULL },
		{ NULL, "BEGIN BACKUP", SC_BEGIN_BACKUP, 0, false, NULL, NULL, NULL },
		{ "begin backup\nadd volume /srv/a\ncreate", "end backup", SC_END_BACKUP, 0, false,
		  NULL, NULL, NULL },
		{ "begin backup\nadd volume /srv/a\ncreate", "End backup", SC_END_BACKUP, 0, false,
		  NULL, NULL, NULL },
		{ NULL, "begin restore", SC_BEGIN_RESTORE, 0, false, NULL, NULL, NULL },
		{ "begin restore", "end restore", SC_END_RESTORE, 0, false, NULL, NULL, NULL },
		{ "begin restore", "END Restore", SC_END_RESTORE, 0, false, NULL, NULL, NULL },
		{ "begin restore\nend restore", "begin backup", SC_BEGIN_BACKUP, 0, false, NULL,
		  NULL, NULL },
		{ "begin backup\nadd volume /srv/a\ncreate\nend backup\nreset", "begin backup",
		  SC_BEGIN_BACKUP, 0, false, NULL, NULL, NULL },
	};
	RUN_GOOD(good);
	static const bad_case bad[] = {
		{ NULL, "begin", "usage: begin backup|restore", "begin backup" },
		{ NULL, "begin backup now", "usage: begin backup|restore", NULL },
		{ NULL, "begin shadow", "usage: begin", NULL },
		{ NULL, "end", "usage: end backup|restore", NULL },
		{ NULL, "end shadows", "usage: end", NULL },
		{ "begin backup\nadd volume /srv/a\ncreate", "end backup please", "usage: end",
		  "end backup" },
		{ NULL, "end backup", "end backup without begin backup", "begin backup" },
		{ "add volume /srv/a\ncreate", "end backup", "end backup without begin backup",
		  "reset" },
		{ "begin backup", "end backup", "end backup before create: there is no shadow copy "
		  "set", "add volume /srv/a" },
		{ "begin backup\nadd volume /srv/a", "end backup", "end backup before create",
		  "create" },
		{ "begin backup", "begin backup", "begin backup twice (the first is on line 1)",
		  "add volume /srv/a" },
		{ "set context persistent\n\nBegin Backup", "begin backup",
		  "the first is on line 3", NULL },
		{ "add volume /srv/a\ncreate", "begin backup", "begin backup after create: the set "
		  "is already a copy backup", "list shadows" },
		/* after end backup, a new begin backup starts a new set; until
		 * then the ended set's names stay and its volumes cannot grow */
		{ "begin backup\nadd volume /srv/a alias a\ncreate\nend backup",
		  "add volume /srv/b", "add volume after create", "list shadows id %a%" },
		{ "begin restore", "begin backup", "begin backup inside begin restore",
		  "end restore" },
		{ NULL, "end restore", "end restore without begin restore", "begin restore" },
		{ "begin restore\nend restore", "end restore", "end restore without begin restore",
		  NULL },
		{ "begin restore", "begin restore", "begin restore twice", "end restore" },
		{ "begin backup", "begin restore", "begin restore inside a backup",
		  "add volume /srv/a" },
		{ "add volume /srv/a\ncreate", "begin restore", "begin restore inside a backup",
		  "reset" },
	};
	RUN_BAD(bad);
}

/* --------------------------------------------------------- add volume */

/* end backup ends the set: its names stay valid until the next begin
 * backup, which starts a new set (the old alias and volume go). */
static void test_backup_after_end(void **state)
{
	(void)state;
	sc_parser p;
	sc_parser_init(&p);
	unsigned n = run_lines(&p, "set context persistent\nbegin backup\n"
	                           "add volume /srv/a alias a\ncreate\nend backup\n"
	                           "expose %a% /mnt/a\ndelete shadows set %AMBER_SHADOW_SET_ID%\n"
	                           "begin backup");
	assert_true(p.in_backup);
	assert_false(p.created);
	assert_int_equal(p.n_vols, 0);
	assert_int_equal(p.n_aliases, 0);
	assert_true(p.persistent);
	parse_bad(&p, "expose %a% /mnt/a", n + 1, "alias %a%");
	n = run_lines(&p, "add volume /srv/a alias a\ncreate\nexpose %a% /mnt/a\nend backup");
	assert_false(p.in_backup);
	sc_parser_free(&p);
}

static void test_add_volume(void **state)
{
	(void)state;
	static const good_case good[] = {
		{ NULL, "add volume /srv/mail", SC_ADD_VOLUME, 0, false, "/srv/mail", NULL, NULL },
		{ NULL, "add volume /srv/mail/ alias m", SC_ADD_VOLUME, 0, false, "/srv/mail", "m",
		  NULL },
		{ NULL, "add volume /srv/db provider btrfs alias db", SC_ADD_VOLUME, 0, false,
		  "/srv/db", "db", "btrfs" },
		{ NULL, "ADD VOLUME /srv/y ALIAS Y_1 PROVIDER Copy", SC_ADD_VOLUME, 0, false,
		  "/srv/y", "Y_1", "Copy" },
		{ NULL, "Add Volume \"/srv/with blank\" alias _wb", SC_ADD_VOLUME, 0, false,
		  "/srv/with blank", "_wb", NULL },
		{ NULL, "add volume / alias root", SC_ADD_VOLUME, 0, false, "/", "root", NULL },
		{ NULL, "add volume /srv/z//", SC_ADD_VOLUME, 0, false, "/srv/z", NULL, NULL },
		{ NULL, "add volume /srv/a provider alias", SC_ADD_VOLUME, 0, false, "/srv/a", NULL,
		  "alias" },
		{ "add volume /srv/a alias a", "add volume /srv/b alias b", SC_ADD_VOLUME, 0, false,
		  "/srv/b", "b", NULL },
		{ "add volume /srv/a alias a", "add volume /srv/a/b", SC_ADD_VOLUME, 0, false,
		  "/srv/a/b", NULL, NULL },
		{ "begin backup", "add volume /srv/a", SC_ADD_VOLUME, 0, false, "/srv/a", NULL,
		  NULL },
		{ "begin restore\nend restore", "add volume /srv/a", SC_ADD_VOLUME, 0, false,
		  "/srv/a", NULL, NULL },
		{ "add volume /srv/a alias m\ncreate\nreset", "add volume /srv/a alias m",
		  SC_ADD_VOLUME, 0, false, "/srv/a", "m", NULL },
	};
	RUN_GOOD(good);
	static const bad_case bad[] = {
		{ NULL, "add", "usage: add volume PATH [alias NAME] [provider NAME]", NULL },
		{ NULL, "add volume", "usage: add volume PATH", "add volume /srv/a" },
		{ NULL, "add disk /srv/a", "usage: add volume", NULL },
		{ NULL, "add alias m %m%", "add alias: not supported", NULL },
		{ NULL, "add volume srv/mail", "volume 'srv/mail' is not an absolute path",
		  "add volume /srv/mail" },
		{ NULL, "add volume c:", "volume 'c:' is a Windows drive: amber takes Linux paths",
		  "add volume /srv/mail" },
		{ NULL, "add volume C:\\Data alias d", "Linux paths", NULL },
		{ NULL, "add volume /srv/%m%", "add volume '/srv/%m%': the volume must be a plain "
		  "path", NULL },
		{ "add volume /srv/a\ncreate\nreset", "add volume %AMBER_METADATA%",
		  "must be a plain path", NULL },
		{ NULL, "add volume /srv/a alias", "alias needs a value", NULL },
		{ NULL, "add volume /srv/a alias m provider", "provider needs a value", NULL },
		{ NULL, "add volume /srv/a alias 1bad", "alias '1bad': an alias is a letter or _",
		  "add volume /srv/a alias bad1" },
		{ NULL, "add volume /srv/a alias a-b", "alias 'a-b'", NULL },
		{ NULL, "add volume /srv/a alias %m%", "alias '%m%'", NULL },
		{ NULL, "add volume /srv/a alias a alias b", "alias given twice", NULL },
		{ NULL, "add volume /srv/a provider x provider y", "provider given twice", NULL },
		{ NULL, "add volume /srv/a size 10", "add volume /srv/a: unexpected 'size'", NULL },
		{ NULL, "add volume /srv/a alias AMBER_METADATA", "alias AMBER_METADATA: that name "
		  "is reserved", NULL },
		{ NULL, "add volume /srv/a alias amber_shadow_set_id", "that name is reserved",
		  NULL },
		{ "add volume /srv/a alias m", "add volume /srv/b alias M", "alias M is already "
		  "defined", "add volume /srv/b alias n" },
		{ "add volume /srv/a alias m", "add volume /srv/a/ alias n", "volume /srv/a added "
		  "twice", "add volume /srv/b alias n" },
		{ "add volume /srv/a\ncreate", "add volume /srv/b", "add volume after create: this "
		  "set is already taken", "reset" },
		{ "begin backup\nadd volume /srv/a\ncreate\nend backup", "add volume /srv/b",
		  "add volume after create", NULL },
		{ "begin restore", "add volume /srv/a", "add volume inside begin restore",
		  "end restore" },
	};
	RUN_BAD(bad);

	char *line = repeat("add volume /srv/a alias ", 'a', SC_NAME_MAX, "");
	good_line(line);
	free(line);
	line = repeat("add volume /srv/a alias ", 'a', SC_NAME_MAX + 1, "");
	bad_line(line, "an alias is a letter or _");
	free(line);
	line = repeat("add volume /", 'v', 4094, "");
	good_line(line);
	free(line);
	line = repeat("add volume /", 'v', 4095, "");
	bad_line(line, "volume path too long");
	free(line);
}

static void test_too_many_volumes(void **state)
{
	(void)state;
	sc_parser p;
	sc_parser_init(&p);
	char line[64];
	unsigned ln = 0;
	for (int i = 0; i < SC_MAX_ALIASES; i++) {
		snprintf(line, sizeof(line), "add volume /srv/v%d alias v%d", i, i);
		sc_cmd c;
		parse_ok(&p, line, ++ln, &c);
		sc_cmd_free(&c);
	}
	assert_int_equal(p.n_vols, SC_MAX_ALIASES);
	assert_int_equal(p.n_aliases, SC_MAX_ALIASES);
	parse_bad(&p, "add volume /srv/more", ++ln, "too many volumes in one set (at most 64)");
	parse_bad(&p, "add volume /srv/v3", ++ln, "too many volumes");
	sc_cmd c;
	parse_ok(&p, "create", ++ln, &c);
	sc_cmd_free(&c);
	parse_ok(&p, "exec echo %v63% %v0_PATH% %v17_VOLUME%", ++ln, &c);
	sc_cmd_free(&c);
	sc_parser_free(&p);
}

/* ------------------------------------------------------------- create */

static void test_create(void **state)
{
	(void)state;
	static const good_case good[] = {
		{ "add volume /srv/a", "create", SC_CREATE, 0, false, NULL, NULL, NULL },
		{ "add volume /srv/a", "CREATE", SC_CREATE, 0, false, NULL, NULL, NULL },
		{ "begin backup\nadd volume /srv/a", "Create", SC_CREATE, 0, false, NULL, NULL,
		  NULL },
		{ "add volume /srv/a\ncreate\nreset\nadd volume /srv/a", "create", SC_CREATE, 0,
		  false, NULL, NULL, NULL },
	};
	RUN_GOOD(good);
	static const bad_case bad[] = {
		{ "add volume /srv/a", "create now", "usage: create (it takes no arguments)",
		  "create" },
		{ NULL, "create", "create without add volume: nothing to shadow",
		  "add volume /srv/a" },
		{ "begin backup", "create", "create without add volume", "add volume /srv/a" },
		{ "add volume /srv/a\ncreate", "create", "create twice in one set", "reset" },
		{ "begin backup\nadd volume /srv/a\ncreate\nend backup", "create", "create twice",
		  "reset" },
		{ "begin restore", "create", "create inside begin restore", "end restore" },
	};
	RUN_BAD(bad);
}

/* ----------------------------------------------------- expose, unexpose */

static void test_expose(void **state)
{
	(void)state;
	static const good_case good[] = {
		{ CREATED, "expose %m% /mnt/g", SC_EXPOSE, 0, false, "%m%", "/mnt/g", NULL },
		{ CREATED, "EXPOSE %m% \"/mnt/shadow g\"", SC_EXPOSE, 0, false, "%m%",
		  "/mnt/shadow g", NULL },
		{ CREATED, "expose %m% %m_PATH%.ro", SC_EXPOSE, 0, false, "%m%", "%m_PATH%.ro",
		  NULL },
		{ NULL, "expose " UUID " /mnt/g", SC_EXPOSE, 0, false, UUID, "/mnt/g", NULL },
		{ NULL, "Expose " UUID_UP " /mnt/g/", SC_EXPOSE, 0, false, UUID_UP, "/mnt/g/",
		  NULL },
		{ "add volume /srv/mail alias m\ncreate", "expose " UUID " /mnt/g", SC_EXPOSE, 0,
		  false, UUID, "/mnt/g", NULL },
	};
	RUN_GOOD(good);
	static const bad_case bad[] = {
		{ NULL, "expose", "usage: expose %ALIAS%|ID PATH", NULL },
		{ CREATED, "expose %m%", "usage: expose", "expose %m% /mnt/g" },
		{ CREATED, "expose %m% /mnt/g /mnt/h", "usage: expose", NULL },
		{ NULL, "expose not-an-id /mnt/g", "expose 'not-an-id' is not a shadow id",
		  "expose " UUID " /mnt/g" },
		{ NULL, "expose 76fe1ac4-15f7-4bcd-987e-8e1acb462fb /mnt/g", "is not a shadow id",
		  NULL },
		{ NULL, "expose {" UUID " /mnt/g", "is not a shadow id", NULL },
		{ NULL, "expose " UUID "} /mnt/g", "is not a shadow id", NULL },
		{ NULL, "expose (" UUID ") /mnt/g", "is not a shadow id", NULL },
		{ NULL, "expose 76fe1ac4-15f7-4bcd-987e-8e1acb462fbg /mnt/g", "is not a shadow id",
		  NULL },
		{ NULL, "expose 76fe1ac415f7-4bcd-987e-8e1acb462fb7- /mnt/g", "is not a shadow id",
		  NULL },
		{ CREATED, "expose %m% g:", "expose target 'g:' is a Windows drive: amber takes "
		  "Linux paths", "expose %m% /mnt/g" },
		{ CREATED, "expose %m% mnt/g", "expose target 'mnt/g' is not an absolute path",
		  NULL },
		{ CREATED, "expose %" NOENV "% /mnt/g", "unknown alias %" NOENV "% (define it",
		  NULL },
		{ CREATED, "expose %m /mnt/g", "'%m': a % without its closing %", NULL },
		{ CREATED, "expose %m% /mnt/%", "a % without its closing %", NULL },
		{ CREATED, "expose %1m% /mnt/g", "'%1m%': bad %NAME% reference", NULL },
		{ CREATED, "expose %m%% /mnt/g", "without its closing", NULL },
		{ "set context persistent\nadd volume /srv/mail alias m", "expose %m% /mnt/g",
		  "alias %m% names no shadow before create", "create" },
		{ "add volume /srv/mail alias m\ncreate", "expose %m% /mnt/g", "expose %m%: a "
		  "volatile shadow cannot be exposed", "expose " UUID " /mnt/g" },
		{ "set context volatile\nadd volume /srv/mail alias m\ncreate", "Expose %m% /mnt/g",
		  "volatile shadow cannot be exposed", "list shadows" },
		{ "set context persistent\nadd volume /srv/mail alias m\ncreate\nreset\n"
		  "add volume /srv/mail alias m\ncreate", "expose %m% /mnt/g",
		  "volatile shadow cannot be exposed", NULL },
	};
	unsetenv(NOENV);
	RUN_BAD(bad);
}

static void test_unexpose(void **state)
{
	(void)state;
	static const good_case good[] = {
		{ NULL, "unexpose /mnt/g", SC_UNEXPOSE, 0, false, "/mnt/g", NULL, NULL },
		{ NULL, "UNEXPOSE \"/mnt/shadow g\"", SC_UNEXPOSE, 0, false, "/mnt/shadow g", NULL,
		  NULL },
		{ CREATED, "unexpose %m_PATH%", SC_UNEXPOSE, 0, false, "%m_PATH%", NULL, NULL },
	};
	RUN_GOOD(good);
	static const bad_case bad[] = {
		{ NULL, "unexpose", "usage: unexpose PATH", "unexpose /mnt/g" },
		{ NULL, "unexpose /mnt/g /mnt/h", "usage: unexpose PATH", NULL },
		{ NULL, "unexpose g:", "unexpose 'g:' is a Windows drive: amber takes Linux paths",
		  "unexpose /mnt/g" },
		{ NULL, "unexpose mnt/g", "unexpose 'mnt/g' is not an absolute path", NULL },
		{ NULL, "unexpose %" NOENV "%", "unknown alias", NULL },
		{ "add volume /srv/mail alias m", "unexpose %m_PATH%", "alias %m_PATH% names no "
		  "shadow before create", "create" },
	};
	unsetenv(NOENV);
	RUN_BAD(bad);
}

/* --------------------------------------------------------------- exec */

typedef struct exec_case {
	const char *setup;
	const char *line;
	const char *argv[8];  /* NULL-terminated */
} exec_case;

static void test_exec(void **state)
{
	(void)state;
	static const exec_case good[] = {
		{ NULL, "exec /usr/bin/true", { "/usr/bin/true" } },
		{ NULL, "exec cp -a /srv/mail \"/backup/mail copy\"",
		  { "cp", "-a", "/srv/mail", "/backup/mail copy" } },
		{ NULL,
		  "EXEC echo \"say \\\"hi\\\"\" 'single \"q\"' back\\slash \"a\\\\b\" \"c\\d\"",
		  { "echo", "say \"hi\"", "single \"q\"", "back\\slash", "a\\b", "c\\d" } },
		{ NULL, "exec sh -c 'echo \"$HOME\" # not a comment' # a comment",
		  { "sh", "-c", "echo \"$HOME\" # not a comment" } },
		{ NULL, "exec echo pre\"mid dle\"post '' \"\" 'it'\"'\"'s'",
		  { "echo", "premid dlepost", "", "", "it's" } },
		{ NULL, "exec echo a#b 100%% %%x%%", { "echo", "a#b", "100%%", "%%x%%" } },
		{ NULL, "exec echo \"tab\there\" 'single\\'", { "echo", "tab\there", "single\\" } },
		{ NULL, "Exec \"/opt/my tools/offline backup.sh\"",
		  { "/opt/my tools/offline backup.sh" } },
		{ CREATED, "exec robocopy %m_PATH%/db /backup %AMBER_SHADOW_SET_ID% %m%",
		  { "robocopy", "%m_PATH%/db", "/backup", "%AMBER_SHADOW_SET_ID%", "%m%" } },
		{ CREATED, "exec check %AMBER_METADATA% %AMBER_BACKUP_TYPE% %m_VOLUME%",
		  { "check", "%AMBER_METADATA%", "%AMBER_BACKUP_TYPE%", "%m_VOLUME%" } },
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		sc_parser p;
		sc_parser_init(&p);
		unsigned ln = run_lines(&p, good[i].setup) + 1;
		sc_cmd c;
		parse_ok(&p, good[i].line, ln, &c);
		assert_int_equal(c.op, SC_EXEC);
		assert_null(c.arg[0]);
		size_t n = 0;
		while (good[i].argv[n])
			n++;
		if (c.argc != n)
			fail_msg("'%s': %zu words, want %zu", good[i].line, c.argc, n);
		for (size_t k = 0; k < n; k++)
			if (strcmp(c.argv[k], good[i].argv[k]) != 0)
				fail_msg("'%s': word %zu is '%s', want '%s'", good[i].line, k,
				         c.argv[k], good[i].argv[k]);
		assert_null(c.argv[n]);
		sc_cmd_free(&c);
		sc_parser_free(&p);
	}
	static const bad_case bad[] = {
		{ NULL, "exec", "usage: exec COMMAND [ARG]...", "exec true" },
		{ NULL, "EXEC   # only a comment", "usage: exec", NULL },
		{ "set context persistent\nadd volume /srv/mail alias m", "exec echo %m%",
		  "alias %m% names no shadow before create", "create" },
		{ "add volume /srv/mail alias m", "exec echo %m_PATH%", "names no shadow before "
		  "create", NULL },
		{ NULL, "exec echo %AMBER_SHADOW_SET_ID%",
		  "%AMBER_SHADOW_SET_ID% is set by create, "
		  "which has not run yet", NULL },
		{ "add volume /srv/a", "exec echo %AMBER_METADATA%", "is set by create", "create" },
		{ NULL, "exec echo %" NOENV "%", "unknown alias %" NOENV "%", NULL },
		{ NULL, "exec echo 50%", "'50%': a % without its closing % (write %% for a "
		  "literal %)", "exec echo 50%%" },
		{ NULL, "exec echo %%%", "without its closing", NULL },
		{ NULL, "exec echo %1x%", "'%1x%': bad %NAME% reference", NULL },
		{ NULL, "exec echo %a-b%", "bad %NAME% reference", NULL },
		{ NULL, "exec echo \"unterminated", "unterminated double quote", "exec true" },
		{ NULL, "exec echo 'unterminated", "unterminated single quote", NULL },
		{ NULL, "exec echo \"escaped\\\"", "unterminated double quote", NULL },
		{ NULL, "exec echo 'a'\"b", "unterminated double quote", NULL },
	};
	unsetenv(NOENV);
	RUN_BAD(bad);
	char *line = repeat("exec echo %", 'n', SC_NAME_MAX + 1, "%");
	bad_line(line, "bad %NAME% reference");
	free(line);
}

/* ------------------------------------------------------------- delete */

static void test_delete(void **state)
{
	(void)state;
	static const good_case good[] = {
		{ NULL, "delete shadows all", SC_DELETE_SHADOWS, SC_DEL_ALL, false, NULL, NULL,
		  NULL },
		{ NULL, "Delete Shadows All", SC_DELETE_SHADOWS, SC_DEL_ALL, false, NULL, NULL,
		  NULL },
		{ NULL, "delete shadows set " UUID, SC_DELETE_SHADOWS, SC_DEL_SET, false, UUID,
		  NULL, NULL },
		{ NULL, "delete shadows id " UUID_UP, SC_DELETE_SHADOWS, SC_DEL_ID, false, UUID_UP,
		  NULL, NULL },
		{ NULL, "delete shadows exposed /mnt/g", SC_DELETE_SHADOWS, SC_DEL_EXPOSED, false,
		  "/mnt/g", NULL, NULL },
		{ NULL, "DELETE SHADOWS OLDEST /srv/mail", SC_DELETE_SHADOWS, SC_DEL_OLDEST, false,
		  "/srv/mail", NULL, NULL },
		{ CREATED, "delete shadows set %AMBER_SHADOW_SET_ID%", SC_DELETE_SHADOWS,
		  SC_DEL_SET, false, "%AMBER_SHADOW_SET_ID%", NULL, NULL },
		{ CREATED, "delete shadows id %m%", SC_DELETE_SHADOWS, SC_DEL_ID, false, "%m%",
		  NULL, NULL },
		{ CREATED, "delete shadows exposed %m_PATH%", SC_DELETE_SHADOWS, SC_DEL_EXPOSED,
		  false, "%m_PATH%", NULL, NULL },
	};
	RUN_GOOD(good);
	static const bad_case bad[] = {
		{ NULL, "delete", "usage: delete shadows all|set ID|id ID|exposed PATH|oldest PATH",
		  "delete shadows all" },
		{ NULL, "delete shadows", "usage: delete shadows", NULL },
		{ NULL, "delete shadow all", "usage: delete shadows", NULL },
		{ NULL, "delete writers all", "usage: delete shadows", NULL },
		{ NULL, "delete shadows all now", "usage: delete shadows all", NULL },
		{ NULL, "delete shadows set", "usage: delete shadows set ID", NULL },
		{ NULL, "delete shadows id " UUID " " UUID, "usage: delete shadows id ID", NULL },
		{ NULL, "delete shadows set 1234", "delete shadows '1234' is not a shadow id",
		  "delete shadows set " UUID },
		{ NULL, "delete shadows id {" UUID, "is not a shadow id", NULL },
		{ NULL, "delete shadows id %" NOENV "%", "unknown alias", NULL },
		{ NULL, "delete shadows id %m%", "unknown alias %m%", NULL },
		{ NULL, "delete shadows exposed", "usage: delete shadows exposed PATH", NULL },
		{ NULL, "delete shadows exposed g:", "delete shadows 'g:' is a Windows drive: "
		  "amber takes Linux paths", "delete shadows exposed /mnt/g" },
		{ NULL, "delete shadows oldest srv/mail", "'srv/mail' is not an absolute path",
		  NULL },
		{ NULL, "delete shadows oldest /a /b", "usage: delete shadows oldest PATH", NULL },
		{ NULL, "delete shadows volume /srv/mail", "delete shadows volume: expected all, "
		  "set ID, id ID, exposed PATH or oldest PATH", NULL },
	};
	unsetenv(NOENV);
	unsetenv("m");
	RUN_BAD(bad);
}

/* --------------------------------------------------------------- list */

static void test_list(void **state)
{
	(void)state;
	static const good_case good[] = {
		{ NULL, "list writers", SC_LIST_WRITERS, SC_LW_PLAIN, false, NULL, NULL, NULL },
		{ NULL, "list writers metadata", SC_LIST_WRITERS, SC_LW_METADATA, false, NULL, NULL,
		  NULL },
		{ NULL, "list writers status", SC_LIST_WRITERS, SC_LW_STATUS, false, NULL, NULL,
		  NULL },
		{ NULL, "LIST WRITERS DETAILED", SC_LIST_WRITERS, SC_LW_DETAILED, false, NULL, NULL,
		  NULL },
		{ NULL, "list shadows", SC_LIST_SHADOWS, SC_LS_ALL, false, NULL, NULL, NULL },
		{ NULL, "list shadows ALL", SC_LIST_SHADOWS, SC_LS_ALL, false, NULL, NULL, NULL },
		{ NULL, "list shadows set " UUID, SC_LIST_SHADOWS, SC_LS_SET, false, UUID, NULL,
		  NULL },
		{ NULL, "List Shadows ID " UUID_UP, SC_LIST_SHADOWS, SC_LS_ID, false, UUID_UP, NULL,
		  NULL },
		{ CREATED, "list shadows set %AMBER_SHADOW_SET_ID%", SC_LIST_SHADOWS, SC_LS_SET,
		  false, "%AMBER_SHADOW_SET_ID%", NULL, NULL },
		{ NULL, "list providers", SC_LIST_PROVIDERS, 0, false, NULL, NULL, NULL },
		{ "begin restore", "List Providers", SC_LIST_PROVIDERS, 0, false, NULL, NULL,
		  NULL },
	};
	RUN_GOOD(good);
	static const bad_case bad[] = {
		{ NULL, "list", "usage: list writers|shadows|providers", "list providers" },
		{ NULL, "list writers status detailed", "usage: list writers [metadata|status|"
		  "detailed]", NULL },
		{ NULL, "list writers verbose",
		  "list writers verbose: expected metadata, status or "
		  "detailed", NULL },
		{ NULL, "list shadows set", "usage: list shadows [all|set ID|id ID]", NULL },
		{ NULL, "list shadows all " UUID, "usage: list shadows", NULL },
		{ NULL, "list shadows bogus", "usage: list shadows", NULL },
		{ NULL, "list shadows exposed /mnt/g", "usage: list shadows", NULL },
		{ NULL, "list shadows id nope", "list shadows 'nope' is not a shadow id",
		  "list shadows id " UUID },
		{ NULL, "list shadows set %AMBER_SHADOW_SET_ID%", "is set by create", NULL },
		{ NULL, "list providers all", "usage: list providers", NULL },
		{ NULL, "list volumes", "list volumes: expected writers, shadows or providers",
		  NULL },
	};
	RUN_BAD(bad);
}

/* ---------------------------------------------- load, reset and exit */

static void test_load_reset_exit(void **state)
{
	(void)state;
	static const good_case good[] = {
		{ NULL, "load metadata /backup/mail.xml", SC_LOAD_METADATA, 0, false,
		  "/backup/mail.xml", NULL, NULL },
		{ "begin restore", "LOAD METADATA \"/backup/mail meta.xml\"", SC_LOAD_METADATA, 0,
		  false, "/backup/mail meta.xml", NULL, NULL },
		{ "add volume /srv/a", "load metadata /b/m.xml", SC_LOAD_METADATA, 0, false,
		  "/b/m.xml", NULL, NULL },
		{ NULL, "reset", SC_RESET, 0, false, NULL, NULL, NULL },
		{ CREATED, "Reset", SC_RESET, 0, false, NULL, NULL, NULL },
		{ "begin restore", "RESET", SC_RESET, 0, false, NULL, NULL, NULL },
		{ NULL, "exit", SC_EXIT, 0, false, NULL, NULL, NULL },
		{ "begin backup", "EXIT", SC_EXIT, 0, false, NULL, NULL, NULL },
		{ "exit", "list providers", SC_LIST_PROVIDERS, 0, false, NULL, NULL, NULL },
		{ "exit", "exit", SC_EXIT, 0, false, NULL, NULL, NULL },
	};
	RUN_GOOD(good);
	static const bad_case bad[] = {
		{ NULL, "load", "usage: load metadata FILE", NULL },
		{ NULL, "load metadata", "usage: load metadata FILE", NULL },
		{ NULL, "load metadata /a /b", "usage: load metadata FILE", NULL },
		{ NULL, "load writers /backup/w.xml", "usage: load metadata", NULL },
		{ NULL, "load metadata mail.xml",
		  "metadata file 'mail.xml' is not an absolute path",
		  "load metadata /backup/mail.xml" },
		{ NULL, "load metadata D:\\backup\\mail.cab",
		  "is a Windows drive: amber takes Linux "
		  "paths", NULL },
		{ "begin backup", "load metadata /b/m.xml", "load metadata inside a backup (end "
		  "backup or reset first)", "add volume /srv/a" },
		{ "add volume /srv/a\ncreate", "load metadata /b/m.xml", "load metadata inside a "
		  "backup", "reset" },
		{ NULL, "reset now", "usage: reset (it takes no arguments)", "reset" },
		{ NULL, "exit 0", "usage: exit (it takes no arguments)", "exit" },
		{ "exit", "end backup", "end backup without begin backup", NULL },
	};
	RUN_BAD(bad);
}

/* -------------------------------------------------------- unsupported */

static void test_unsupported(void **state)
{
	(void)state;
	static const bad_case bad[] = {
		{ NULL, "import", "import: not supported by amber", "list providers" },
		{ NULL, "mask %m%", "mask: not supported by amber", NULL },
		{ NULL, "BREAK writable", "BREAK: not supported by amber", NULL },
		{ NULL, "revert " UUID_UP, "revert: not supported", NULL },
		{ NULL, "resync", "resync: not supported", NULL },
		{ NULL, "add alias shadow_c %shadow_c%", "add alias: not supported (name the "
		  "shadow with add volume PATH alias NAME)", NULL },
		{ NULL, "set context clientaccessible", "set context clientaccessible: Windows' "
		  "Previous Versions shadows have no Linux counterpart", "set context persistent" },
		{ NULL, "set option transportable", "set option transportable: amber's shadows "
		  "cannot move to another host", "set option differential" },
		{ NULL, "set option differential transportable", "cannot move to another host",
		  NULL },
		{ NULL, "set option rollbackrecover", "never recovered in place", NULL },
		{ NULL, "SET OPTION TxfRecover", "set option TxfRecover: amber's shadows are "
		  "read-only", NULL },
		{ NULL, "frobnicate now", "unknown command 'frobnicate'", NULL },
		{ NULL, "\"\" verbose", "unknown command ''", NULL },
		{ NULL, "\"set verbose on\"", "unknown command 'set verbose on'", NULL },
	};
	RUN_BAD(bad);
}

/* -------------------------------------------- words, quotes and limits */

static void test_words(void **state)
{
	(void)state;
	static const bad_case bad[] = {
		{ NULL, "set verbose\x01" "on", "control character 0x01 in the line",
		  "set verbose on" },
		{ NULL, "exec echo \x7f\x1b", "control character 0x1b", NULL },
		{ NULL, "exec echo \"a\x1b[0mb\"", "control character 0x1b", "exec echo \"a\tb\"" },
		{ NULL, "exec echo 'a\nb'", "control character 0x0a", NULL },
		{ NULL, "exec echo \"a\rb\"", "control character 0x0d", NULL },
		{ NULL, "exec echo \"\x1f", "control character 0x1f", NULL },
		{ NULL, "unexpose \"/mnt/g", "unterminated double quote", "unexpose \"/mnt/g\"" },
		{ NULL, "writer verify 'mail", "unterminated single quote", NULL },
	};
	RUN_BAD(bad);

	/* blanks around and inside the line, a newline in it */
	good_line("exec echo a\tb\rc\nd");

	/* SC_MAX_WORDS words parse, one more does not */
	char *line = malloc(2 * SC_MAX_WORDS + 64);
	assert_non_null(line);
	strcpy(line, "exec");
	for (int i = 1; i < SC_MAX_WORDS; i++)
		strcat(line, " a");
	sc_parser p;
	sc_parser_init(&p);
	sc_cmd c;
	parse_ok(&p, line, 1, &c);
	assert_int_equal(c.argc, SC_MAX_WORDS - 1);
	sc_cmd_free(&c);
	size_t len = strlen(line);
	strcpy(line + len, " a");
	parse_bad(&p, line, 2, "too many words (at most 256 on a line)");
	strcpy(line + len, " # a comment has no words");
	parse_ok(&p, line, 3, &c);
	assert_int_equal(c.argc, SC_MAX_WORDS - 1);
	sc_cmd_free(&c);
	sc_parser_free(&p);
	free(line);

	/* SC_LINE_MAX bytes parse, one more does not */
	line = repeat("exec ", 'x', SC_LINE_MAX - 5, "");
	good_line(line);
	free(line);
	line = repeat("exec ", 'x', SC_LINE_MAX - 4, "");
	bad_line(line, "line longer than 8192 bytes");
	free(line);
	line = repeat("# ", ' ', SC_LINE_MAX, "");
	bad_line(line, "line longer than");
	free(line);
}

/* ---------------------------------------------------------- state */

static void test_state_unchanged(void **state)
{
	(void)state;
	/* a backup where each step is first tried wrong */
	sc_parser p;
	sc_parser_init(&p);
	unsigned ln = 0;
	sc_cmd c;
	parse_bad(&p, "end backup", ++ln, "end backup without begin backup");
	parse_bad(&p, "create", ++ln, "create without add volume");
	parse_ok(&p, "set context persistent", ++ln, &c);
	sc_cmd_free(&c);
	parse_ok(&p, "begin backup", ++ln, &c);
	sc_cmd_free(&c);
	parse_bad(&p, "set context volatile", ++ln, "set context must come before");
	parse_bad(&p, "add volume /srv/a alias 9", ++ln, "alias '9'");
	parse_bad(&p, "end backup", ++ln, "end backup before create");
	parse_ok(&p, "add volume /srv/a alias m", ++ln, &c);
	sc_cmd_free(&c);
	parse_bad(&p, "add volume /srv/b alias m", ++ln, "alias m is already defined");
	parse_bad(&p, "add volume /srv/a alias n", ++ln, "volume /srv/a added twice");
	parse_bad(&p, "expose %m% /mnt/g", ++ln, "names no shadow before create");
	parse_ok(&p, "writer verify mail", ++ln, &c);
	sc_cmd_free(&c);
	parse_ok(&p, "create", ++ln, &c);
	sc_cmd_free(&c);
	parse_bad(&p, "create", ++ln, "create twice");
	parse_bad(&p, "add volume /srv/b", ++ln, "add volume after create");
	parse_bad(&p, "writer verify mail", ++ln, "writer verify after create");
	parse_bad(&p, "begin backup", ++ln, "begin backup twice (the first is on line 4)");
	parse_bad(&p, "load metadata /b/m.xml", ++ln, "load metadata inside a backup");
	parse_ok(&p, "expose %m% /mnt/g", ++ln, &c);
	sc_cmd_free(&c);
	parse_ok(&p, "end backup", ++ln, &c);
	sc_cmd_free(&c);
	parse_bad(&p, "end backup", ++ln, "end backup without begin backup");
	parse_ok(&p, "delete shadows exposed /mnt/g", ++ln, &c);
	sc_cmd_free(&c);
	assert_true(p.persistent);
	assert_true(p.created);
	assert_true(p.backup_ended);
	assert_false(p.in_backup);
	assert_int_equal(p.n_vols, 1);
	assert_string_equal(p.vols[0], "/srv/a");
	assert_int_equal(p.n_aliases, 1);
	assert_string_equal(p.aliases[0], "m");
	sc_parser_free(&p);
}

static void test_reset(void **state)
{
	(void)state;
	sc_parser p;
	sc_parser_init(&p);
	unsigned ln = run_lines(&p, "set context persistent nowriters\nbegin backup\n"
	                        "add volume /srv/a alias a\nadd volume /srv/b alias b\ncreate");
	assert_int_equal(p.n_vols, 2);
	sc_cmd c;
	parse_ok(&p, "reset", ++ln, &c);
	assert_int_equal(c.op, SC_RESET);
	sc_cmd_free(&c);
	assert_false(p.persistent);
	assert_false(p.nowriters);
	assert_false(p.in_backup);
	assert_false(p.created);
	assert_int_equal(p.n_vols, 0);
	assert_int_equal(p.n_aliases, 0);
	/* the same volumes and aliases again, writers again */
	parse_bad(&p, "exec echo %a%", ++ln, "unknown alias %a%");
	ln += run_lines(&p, "writer verify mail\nadd volume /srv/a alias a\n"
	                "add volume /srv/b alias b\ncreate");
	parse_ok(&p, "exec echo %a% %b_PATH%", ++ln, &c);
	sc_cmd_free(&c);
	/* reset keeps exit: later lines are still only checked */
	parse_ok(&p, "exit", ++ln, &c);
	sc_cmd_free(&c);
	parse_ok(&p, "reset", ++ln, &c);
	sc_cmd_free(&c);
	assert_true(p.exited);
	sc_parser_free(&p);
}

/* %NAME% from the environment is accepted (checked again when it runs) */
static void test_env_names(void **state)
{
	(void)state;
	setenv("AMBER_TEST_SC_DIR", "/mnt/x", 1);
	good_line("unexpose %AMBER_TEST_SC_DIR%");
	good_line("exec echo %AMBER_TEST_SC_DIR%");
	good_line("expose %AMBER_TEST_SC_DIR% /mnt/g");
	good_line("set metadata %AMBER_TEST_SC_DIR%/m.xml");
	unsetenv("AMBER_TEST_SC_DIR");
	bad_line("unexpose %AMBER_TEST_SC_DIR%", "unknown alias %AMBER_TEST_SC_DIR%");
	bad_line("exec echo %AMBER_TEST_SC_DIR%", "unknown alias");

	/* the environment does not stand in for create's names or an alias */
	setenv("AMBER_SHADOW_SET_ID", UUID, 1);
	bad_line("exec echo %AMBER_SHADOW_SET_ID%", "is set by create");
	unsetenv("AMBER_SHADOW_SET_ID");
	setenv("sc_env_alias", "/x", 1);
	sc_parser p;
	sc_parser_init(&p);
	run_lines(&p, "add volume /srv/a alias sc_env_alias");
	parse_bad(&p, "exec echo %sc_env_alias%", 2, "names no shadow before create");
	sc_parser_free(&p);
	unsetenv("sc_env_alias");
}

/* --------------------------------------------------------- whole text */

static int parse_text(const char *text, sc_script *s, char *err, size_t n)
{
	err[0] = '\0';
	return sc_parse_text(text, strlen(text), s, err, n);
}

static void text_bad(const char *text, size_t len, const char *want)
{
	sc_script s;
	char err[SC_ERR_MAX] = "";
	memset(&s, 0x5a, sizeof(s));
	if (sc_parse_text(text, len, &s, err, sizeof(err)) != -1)
		fail_msg("script accepted, want '%s'", want);
	if (strncmp(err, want, strlen(want)) != 0)
		fail_msg("message '%s', want '%s...'", err, want);
	assert_null(s.cmds);
	assert_int_equal(s.n, 0);
}

/* a script given as a string literal, which may hold a NUL byte */
#define TEXT_BAD(lit, want) text_bad((lit), sizeof(lit) - 1, (want))

static void test_text_example(void **state)
{
	(void)state;
	static const char text[] =
		"# set verbose on\n"
		"set context persistent\n"
		"writer verify {" UUID "}\n"
		"begin backup\n"
		"add volume /srv/mail alias shadow_c\n"
		"create\n"
		"expose %shadow_c% /mnt/g\n"
		"# exec offline-backup.cmd\n"
		"end backup\n"
		"delete shadows exposed /mnt/g\n"
		"exit\n";
	static const sc_op ops[] = { SC_SET_CONTEXT, SC_WRITER_VERIFY, SC_BEGIN_BACKUP,
		                     SC_ADD_VOLUME, SC_CREATE, SC_EXPOSE, SC_END_BACKUP,
		                     SC_DELETE_SHADOWS, SC_EXIT };
	static const unsigned lines[] = { 2, 3, 4, 5, 6, 7, 9, 10, 11 };
	sc_script s;
	char err[SC_ERR_MAX];
	if (parse_text(text, &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(s.n, 9);
	for (size_t i = 0; i < s.n; i++) {
		assert_int_equal(s.cmds[i].op, ops[i]);
		assert_int_equal(s.cmds[i].line, lines[i]);
	}
	assert_string_equal(s.cmds[1].arg[0], "{" UUID "}");
	assert_string_equal(s.cmds[3].arg[0], "/srv/mail");
	assert_string_equal(s.cmds[3].arg[1], "shadow_c");
	assert_string_equal(s.cmds[5].arg[0], "%shadow_c%");
	assert_int_equal(s.cmds[7].sub, SC_DEL_EXPOSED);
	assert_string_equal(s.warn, "");
	sc_script_free(&s);
	assert_null(s.cmds);

	/* the same with CRLF line ends and no final newline */
	char crlf[sizeof(text) * 2];
	size_t k = 0;
	for (const char *c = text; *c; c++) {
		if (*c == '\n')
			crlf[k++] = '\r';
		crlf[k++] = *c;
	}
	k -= 2;  /* no final newline */
	if (sc_parse_text(crlf, k, &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(s.n, 9);
	assert_int_equal(s.cmds[8].op, SC_EXIT);
	assert_int_equal(s.cmds[8].line, 11);
	sc_script_free(&s);

	/* the diskshadow original: its drive letters are named in the error */
	static const char windows[] = "set context persistent\nwriter verify {" UUID "}\n"
	                              "begin backup\nadd volume c: alias shadow_c\ncreate\n";
	text_bad(windows, strlen(windows), "4: volume 'c:' is a Windows drive: amber takes "
	         "Linux paths");
}

static void test_text_lines(void **state)
{
	(void)state;
	static const char text[] = "# a comment\n\n   \n\t# another\nset context persistent\n"
	                           "\n# x\nbogus command\nlist providers\n";
	text_bad(text, strlen(text), "8: unknown command 'bogus'");
	TEXT_BAD("bogus\n", "1: unknown command");
	TEXT_BAD("\r\n# x\r\n\r\nexpose %m% /mnt/g\r\n", "4: unknown alias %m%");
	TEXT_BAD("\n\nlist shadows\n\nbogus", "5: unknown command");
	TEXT_BAD("list providers\n\n\n\nadd volume rel\n", "5: volume 'rel' is not an "
	         "absolute path");
}

static void test_text_empty(void **state)
{
	(void)state;
	sc_script s;
	char err[SC_ERR_MAX];
	static const char *const empty[] = { "", "\n", "\n\n# nothing\n   \n", "#" };
	for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
		if (parse_text(empty[i], &s, err, sizeof(err)) != 0)
			fail_msg("%s", err);
		assert_int_equal(s.n, 0);
		assert_string_equal(s.warn, "");
		sc_script_free(&s);
	}
	/* len, not a NUL, ends the text */
	if (sc_parse_text("reset\nbogus\n", 6, &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.cmds[0].op, SC_RESET);
	sc_script_free(&s);
	/* many commands */
	char *text = malloc(200 * 16);
	assert_non_null(text);
	text[0] = '\0';
	for (int i = 0; i < 200; i++)
		strcat(text, i % 2 ? "list providers\n" : "\n");
	if (parse_text(text, &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(s.n, 100);
	assert_int_equal(s.cmds[99].line, 200);
	sc_script_free(&s);
	free(text);
}

static void test_text_limits(void **state)
{
	(void)state;
	static const char nul[] = "set verbose on\n# fine\nexec a\0b\nlist providers\n";
	text_bad(nul, sizeof(nul) - 1, "3: a NUL byte: this is not a text file");
	TEXT_BAD("\0", "1: a NUL byte");

	/* line 3 is SC_LINE_MAX bytes, then SC_LINE_MAX + 1, then much longer */
	for (size_t extra = 0; extra < 3; extra++) {
		size_t n = extra == 2 ? 3 * SC_LINE_MAX : SC_LINE_MAX - 5 + extra;
		char *x = repeat("", 'x', n, "");
		size_t len = strlen("reset\n\nexec ") + n + strlen("\nbogus\n");
		char *text = malloc(len + 1);
		assert_non_null(text);
		snprintf(text, len + 1, "reset\n\nexec %s\nbogus\n", x);
		if (extra == 0)
			text_bad(text, len, "4: unknown command 'bogus'");
		else
			text_bad(text, len, "3: line longer than 8192 bytes");
		free(text);
		free(x);
	}
}

static void test_text_state(void **state)
{
	(void)state;
	sc_script s;
	char err[SC_ERR_MAX];

	/* begin backup with no end backup: a warning naming its line */
	if (parse_text("set context persistent\nbegin backup\nadd volume /srv/a\ncreate\n", &s,
	               err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(s.n, 4);
	if (strncmp(s.warn, "2: begin backup has no end backup", 33) != 0)
		fail_msg("warning '%s'", s.warn);
	sc_script_free(&s);
	assert_string_equal(s.warn, "");

	/* begin restore with no end restore: an error on the last line */
	TEXT_BAD("begin restore\nload metadata /b/m.xml\n\n",
	         "3: begin restore has no end restore");
	TEXT_BAD("begin restore", "1: begin restore has no end restore");
	if (parse_text("begin restore\nload metadata /b/m.xml\nend restore\n", &s, err,
	               sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(s.n, 3);
	sc_script_free(&s);

	/* reset: the same volumes and aliases again */
	static const char twice[] = "add volume /srv/a alias m\ncreate\nexec echo %m%\nreset\n"
	                            "add volume /srv/a alias m\ncreate\nexec echo %m%\n";
	if (parse_text(twice, &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(s.n, 7);
	assert_int_equal(s.cmds[4].op, SC_ADD_VOLUME);
	assert_int_equal(s.cmds[4].line, 5);
	sc_script_free(&s);
	static const char noreset[] = "add volume /srv/a alias m\ncreate\n# no reset\n"
	                              "add volume /srv/a alias m\n";
	text_bad(noreset, strlen(noreset), "4: add volume after create");

	/* lines after exit are still checked */
	TEXT_BAD("list shadows\nexit\n\nbogus\n", "4: unknown command 'bogus'");
	TEXT_BAD("exit\nend backup\n", "2: end backup without begin backup");
	TEXT_BAD("exit\nexpose %nosuch_sc% /mnt/g\n", "2: unknown alias");
	if (parse_text("exit\nlist shadows\n", &s, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.cmds[1].op, SC_LIST_SHADOWS);
	sc_script_free(&s);
}

/* ------------------------------------------------------------- expand */

static const char *lookup(const char *name, void *ctx)
{
	(*(int *)ctx)++;
	if (strcmp(name, "m") == 0)
		return UUID;
	if (strcmp(name, "m_PATH") == 0)
		return "/run/amber/m";
	if (strcmp(name, "EMPTY") == 0)
		return "";
	if (strcmp(name, "PCT") == 0)
		return "%m%";
	if (strcmp(name, "LONG") == 0)
		return "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	return NULL;
}

static void expand_ok(const char *in, const char *want, int calls)
{
	int n = 0;
	char err[SC_ERR_MAX] = "";
	char *out = sc_expand(in, lookup, &n, err, sizeof(err));
	if (!out)
		fail_msg("'%s': %s", in, err);
	if (strcmp(out, want) != 0)
		fail_msg("'%s' gave '%s', want '%s'", in, out, want);
	assert_int_equal(n, calls);
	free(out);
}

static void expand_bad(const char *in, const char *want)
{
	int n = 0;
	char err[SC_ERR_MAX] = "";
	char *out = sc_expand(in, lookup, &n, err, sizeof(err));
	if (out) {
		free(out);
		fail_msg("'%s' expanded, want '%s'", in, want);
	}
	if (!strstr(err, want))
		fail_msg("'%s': message '%s', want '%s'", in, err, want);
}

static void test_expand(void **state)
{
	(void)state;
	expand_ok("", "", 0);
	expand_ok("no names here", "no names here", 0);
	expand_ok("%m%", UUID, 1);
	expand_ok("%m_PATH%/db", "/run/amber/m/db", 1);
	expand_ok("a%%b", "a%b", 0);
	expand_ok("%%%%", "%%", 0);
	expand_ok("%%m%%", "%m%", 0);
	expand_ok("100%%", "100%", 0);
	expand_ok("[%EMPTY%]", "[]", 1);
	expand_ok("%PCT%", "%m%", 1);  /* a value is not expanded again */
	expand_ok("%m%%m_PATH%", UUID "/run/amber/m", 2);
	expand_ok("%LONG%%LONG%%LONG%%LONG%x",
	          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	          "x", 4);
	expand_bad("%nosuch%", "%nosuch% is not defined here");
	expand_bad("/a/%m_PATH%/%nope%", "%nope% is not defined here");
	expand_bad("50%", "'50%': bad %NAME% reference");
	expand_bad("%%%", "bad %NAME% reference");
	expand_bad("%m", "bad %NAME% reference");
	char *in = repeat("%", 'n', SC_NAME_MAX + 1, "%");
	expand_bad(in, "bad %NAME% reference");
	free(in);
}

/* ----------------------------------------------------------- cmd text */

static void render(const char *setup, const char *line, const char *want)
{
	sc_parser p;
	sc_parser_init(&p);
	unsigned ln = run_lines(&p, setup) + 1;
	sc_cmd c;
	parse_ok(&p, line, ln, &c);
	char buf[256];
	const char *r = sc_cmd_text(&c, buf, sizeof(buf));
	assert_ptr_equal(r, buf);
	if (strcmp(buf, want) != 0)
		fail_msg("'%s' written as '%s', want '%s'", line, buf, want);
	sc_cmd_free(&c);
	sc_parser_free(&p);
}

static void test_cmd_text(void **state)
{
	(void)state;
	render(NULL, "SET Context PERSISTENT NoWriters", "set context persistent nowriters");
	render(NULL, "set context volatile", "set context volatile");
	render(NULL, "Set Verbose ON", "set verbose on");
	render(NULL, "set option NoAutoRecover Differential", "set option differential "
	       "noautorecover");
	render(NULL, "set provider 'my provider'", "set provider \"my provider\"");
	render(NULL, "Writer Verify {" UUID "}", "writer verify {" UUID "}");
	render(NULL, "writer exclude \"Microsoft Exchange Writer\"",
	       "writer exclude \"Microsoft Exchange Writer\"");
	render(NULL, "BEGIN RESTORE", "begin restore");
	render(NULL, "add volume \"/srv/a b\"/ PROVIDER btrfs ALIAS x",
	       "add volume \"/srv/a b\" alias x provider btrfs");
	render(CREATED, "expose %m% /mnt/g", "expose %m% /mnt/g");
	render(NULL, "exec echo \"say \\\"hi\\\"\" 'single \"q\"' back\\slash '' a#b "
	       "\"t\tb\" 100%%",
	       "exec echo \"say \\\"hi\\\"\" \"single \\\"q\\\"\" \"back\\\\slash\" \"\" \"a#b\" "
	       "\"t\tb\" 100%%");
	render(NULL, "Delete Shadows All", "delete shadows all");
	render(NULL, "delete shadows id " UUID_UP, "delete shadows id " UUID_UP);
	render(NULL, "delete shadows oldest /srv/mail", "delete shadows oldest /srv/mail");
	render(NULL, "list writers", "list writers");
	render(NULL, "list writers STATUS", "list writers status");
	render(NULL, "list shadows", "list shadows all");
	render(NULL, "list shadows set " UUID, "list shadows set " UUID);
	render(NULL, "list providers", "list providers");
	render(NULL, "load metadata /b/m.xml", "load metadata /b/m.xml");
	render(NULL, "RESET", "reset");
	render(NULL, "Exit", "exit");

	/* a short buffer: cut, always terminated */
	sc_parser p;
	sc_parser_init(&p);
	sc_cmd c;
	parse_ok(&p, "add volume \"/srv/a b\" alias x", 1, &c);
	char buf[64];
	memset(buf, 'z', sizeof(buf));
	sc_cmd_text(&c, buf, 8);
	assert_string_equal(buf, "add vol");
	for (size_t n = 1; n < 40; n++) {
		memset(buf, 'z', sizeof(buf));
		sc_cmd_text(&c, buf, n);
		assert_true(strlen(buf) < n);
		assert_int_equal(buf[n], 'z');
		assert_memory_equal(buf, "add volume \"/srv/a b\" alias x", strlen(buf));
	}
	sc_cmd_free(&c);
	parse_ok(&p, "exec echo \"\\\\\\\\\"", 2, &c);
	for (size_t n = 1; n < 20; n++) {
		memset(buf, 'z', sizeof(buf));
		sc_cmd_text(&c, buf, n);
		assert_true(strlen(buf) < n);
		assert_memory_equal(buf, "exec echo \"\\\\\\\\\"", strlen(buf));
	}
	sc_cmd_free(&c);
	parse_ok(&p, "", 3, &c);
	assert_string_equal(sc_cmd_text(&c, buf, sizeof(buf)), "");
	sc_parser_free(&p);
}

/* ------------------------------------------------------------ helpers */

static void test_name_and_uuid(void **state)
{
	(void)state;
	static const char *const names[] = { "m", "_", "_x1", "Shadow_C", "a1_b2" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_true(sc_alias_name_ok(names[i]));
	static const char *const bad[] = { "", "1a", "a-b", "a b", "a%", "%a%", "\xc3\xa9t\xc3\xa9",
		                           "a.b" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_false(sc_alias_name_ok(bad[i]));
	char *n = repeat("", 'a', SC_NAME_MAX, "");
	assert_true(sc_alias_name_ok(n));
	free(n);
	n = repeat("", 'a', SC_NAME_MAX + 1, "");
	assert_false(sc_alias_name_ok(n));
	free(n);

	char out[37];
	assert_true(sc_uuid_parse(UUID, out));
	assert_string_equal(out, UUID);
	memset(out, 'z', sizeof(out));
	assert_true(sc_uuid_parse(UUID_UP, out));
	assert_string_equal(out, UUID);
	assert_true(sc_uuid_parse("{" UUID "}", NULL));
	static const char *const notid[] = {
		"", "{}", UUID "0", "76fe1ac4-15f7-4bcd-987e-8e1acb462fb", "{" UUID, UUID "}",
		"(" UUID ")", "76fe1ac4-15f7-4bcd-987e-8e1acb462fbg", "76fe1ac415f7-4bcd-987e-"
		"8e1acb462fb7-", "76fe1ac4 15f7-4bcd-987e-8e1acb462fb7", "{{" UUID "}}",
		"xx" UUID,
	};
	for (size_t i = 0; i < sizeof(notid) / sizeof(notid[0]); i++) {
		memset(out, 'z', sizeof(out));
		if (sc_uuid_parse(notid[i], out))
			fail_msg("'%s' taken for a uuid", notid[i]);
		assert_int_equal(out[0], 'z');
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_blank_and_comments),
		cmocka_unit_test(test_set_good),
		cmocka_unit_test(test_set_bad),
		cmocka_unit_test(test_writer),
		cmocka_unit_test(test_backup_restore),
		cmocka_unit_test(test_backup_after_end),
		cmocka_unit_test(test_add_volume),
		cmocka_unit_test(test_too_many_volumes),
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_expose),
		cmocka_unit_test(test_unexpose),
		cmocka_unit_test(test_exec),
		cmocka_unit_test(test_delete),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_load_reset_exit),
		cmocka_unit_test(test_unsupported),
		cmocka_unit_test(test_words),
		cmocka_unit_test(test_state_unchanged),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_env_names),
		cmocka_unit_test(test_text_example),
		cmocka_unit_test(test_text_lines),
		cmocka_unit_test(test_text_empty),
		cmocka_unit_test(test_text_limits),
		cmocka_unit_test(test_text_state),
		cmocka_unit_test(test_expand),
		cmocka_unit_test(test_cmd_text),
		cmocka_unit_test(test_name_and_uuid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

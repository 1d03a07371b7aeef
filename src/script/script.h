/*
 * script.h - amber script: the diskshadow-style script language
 * (docs/script.md), parsed.
 *
 * This part only reads text.  It knows nothing of amberd, so the fuzzer
 * (tests/script/fuzz_script.c) and the unit tests can feed it anything;
 * src/cli/script.c runs what it returns.
 *
 * A script is lines.  A line holds one command, or nothing; `#` outside
 * quotes starts a comment that runs to the end of the line.  Words are
 * separated by blanks; "double" or 'single' quotes keep blanks inside one
 * word, and in double quotes \" and \\ stand for " and \.  Command words
 * are case-insensitive (diskshadow's are: `SET context`, `Delete Shadows
 * All`); the other words are kept as written.  `%NAME%` in an argument is
 * expanded when the line runs (sc_expand()), not here.
 *
 * The parser is a state machine over the whole script, so that what can be
 * checked before anything runs is checked: an unknown or malformed command,
 * `end backup` with no `begin backup`, `add volume` after `create`, an
 * alias used before it is defined or before its shadow exists, `expose` of
 * a volatile shadow.  sc_parse_line() takes one line at a time (the
 * interactive prompt); sc_parse_text() takes a whole script and stops at
 * the first error.  Errors are "LINE: message" without the file name,
 * which the caller adds.
 */
#ifndef AMBER_SCRIPT_SCRIPT_H
#define AMBER_SCRIPT_SCRIPT_H

#include <stdbool.h>
#include <stddef.h>

/* Limits: a line, the words of a line, aliases and volumes of one set. */
#define SC_LINE_MAX 8192
#define SC_MAX_WORDS 256
#define SC_MAX_ALIASES 64       /* = AMB_MAX_VOLUMES */
#define SC_NAME_MAX 64          /* an alias name, without the % signs */
#define SC_ERR_MAX 512

typedef enum sc_op {
	SC_NONE = 0,          /* a blank or comment line */
	SC_SET_CONTEXT,       /* sub: SC_CTX_*; flag: nowriters */
	SC_SET_VERBOSE,       /* flag: on */
	SC_SET_METADATA,      /* arg[0]: file */
	SC_SET_OPTION,        /* sub: SC_OPT_* bits that apply */
	SC_SET_PROVIDER,      /* arg[0]: provider name ("auto" = amberd's choice) */
	SC_WRITER_VERIFY,     /* arg[0]: NAME, {ID} or NAME/COMPONENT */
	SC_WRITER_EXCLUDE,    /* arg[0]: as verify */
	SC_BEGIN_BACKUP,
	SC_END_BACKUP,
	SC_BEGIN_RESTORE,
	SC_END_RESTORE,
	SC_ADD_VOLUME,        /* arg[0]: path; arg[1]: alias or NULL; arg[2]: provider or NULL */
	SC_CREATE,
	SC_EXPOSE,            /* arg[0]: %ALIAS% or ID; arg[1]: path */
	SC_UNEXPOSE,          /* arg[0]: path */
	SC_EXEC,              /* argv[0..argc): the command and its arguments */
	SC_DELETE_SHADOWS,    /* sub: SC_DEL_*; arg[0]: ID or path (not for all) */
	SC_LIST_WRITERS,      /* sub: SC_LW_* */
	SC_LIST_SHADOWS,      /* sub: SC_LS_*; arg[0]: ID (set, id) */
	SC_LIST_PROVIDERS,
	SC_LOAD_METADATA,     /* arg[0]: file */
	SC_RESET,
	SC_EXIT,
} sc_op;

enum { SC_CTX_VOLATILE = 0, SC_CTX_PERSISTENT = 1 };
enum { SC_DEL_ALL = 1, SC_DEL_SET, SC_DEL_ID, SC_DEL_EXPOSED, SC_DEL_OLDEST };
enum { SC_LW_PLAIN = 0, SC_LW_METADATA, SC_LW_STATUS, SC_LW_DETAILED };
enum { SC_LS_ALL = 0, SC_LS_SET, SC_LS_ID };
/* `set option` words that apply on Linux */
enum {
	SC_OPT_DIFFERENTIAL = 1 << 0,   /* copy-on-write shadows only (btrfs, reflink) */
	SC_OPT_PLEX = 1 << 1,           /* full copies (the copy provider) */
	SC_OPT_NOAUTORECOVER = 1 << 2,  /* what amber always does */
};

typedef struct sc_cmd {
	sc_op op;
	unsigned line;
	int sub;
	bool flag;
	char *arg[3];         /* owned; NULL when absent */
	char **argv;          /* exec only; owned, NULL-terminated */
	size_t argc;
} sc_cmd;

/* What the parser has seen so far: the static state of the script. */
typedef struct sc_parser {
	bool persistent;      /* the context in force */
	bool nowriters;
	bool in_backup;       /* begin backup .. end backup */
	bool backup_ended;    /* end backup seen since the last reset */
	bool in_restore;
	bool created;         /* create seen since the last reset */
	bool exited;          /* exit seen: later lines are checked, never run */
	unsigned begin_line;  /* the line of the open begin backup */
	size_t n_vols;
	char *vols[SC_MAX_ALIASES];
	size_t n_aliases;
	char aliases[SC_MAX_ALIASES][SC_NAME_MAX + 1];
} sc_parser;

typedef struct sc_script {
	sc_cmd *cmds;         /* only the lines with a command */
	size_t n;
	char warn[SC_ERR_MAX];  /* one warning for the whole script, or "" */
} sc_script;

void sc_parser_init(sc_parser *p);
void sc_parser_free(sc_parser *p);

/*
 * Parse one line (no newline needed; a trailing one is ignored) numbered
 * lineno.  Returns 0 with *out filled (out->op SC_NONE for a blank or
 * comment line), or -1 with "LINE: message" in err and *out empty.  The
 * parser's state moves on only when the line is good.
 */
int sc_parse_line(sc_parser *p, const char *line, unsigned lineno, sc_cmd *out, char *err,
                  size_t errlen);

/*
 * Parse a whole script of len bytes (need not be NUL-terminated).  A NUL
 * byte, a line longer than SC_LINE_MAX or a bad line stops it: -1 with
 * the message in err.  0: *s holds every command.  A script whose
 * `begin backup` has no `end backup` parses, with s->warn saying so.
 */
int sc_parse_text(const char *text, size_t len, sc_script *s, char *err, size_t errlen);

void sc_cmd_free(sc_cmd *c);
void sc_script_free(sc_script *s);

/* The command as a canonical line ("add volume /srv/mail alias m"), for
 * logs and the interactive history; returns buf. */
const char *sc_cmd_text(const sc_cmd *c, char *buf, size_t n);

/*
 * Expand %NAME% in in: lookup(NAME, ctx) gives the value or NULL.  `%%`
 * is a single %.  Returns a malloc'd string, or NULL with err set (an
 * unknown name, a lone %, out of memory).
 */
char *sc_expand(const char *in, const char *(*lookup)(const char *name, void *ctx), void *ctx,
                char *err, size_t errlen);

/* Does name (without %) have the form of an alias: [A-Za-z_][A-Za-z0-9_]*,
 * at most SC_NAME_MAX characters? */
bool sc_alias_name_ok(const char *name);

/* Is s a shadow or set id: a uuid, with or without {braces}?  If so and
 * out is not NULL, the bare lower-case uuid goes to out (37 bytes). */
bool sc_uuid_parse(const char *s, char *out);

#endif

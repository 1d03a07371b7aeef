/*
 * cli.h - amber, the administrator's tool: what the command files share.
 *
 * Layout: main.c only calls cli_main() (dispatch.c), which finds the
 * command in the table of dispatch.c, prints the manual pages of help.c
 * and runs the command.  Every command is `int fn(cli_ctx *, argc, argv)`
 * with argv holding only what follows the command words.  It parses its
 * arguments with cli_parser (args.c), which also takes the global options
 * wherever they appear, connects through conn.c, and prints with the text
 * and JSON helpers of output.h.  Commands print through ctx->out and
 * ctx->err (stdout and stderr in the program; memory streams in tests).
 *
 * Exit codes (design.md section 7), the return value of every command:
 * 0 success; 1 failed; 2 bad usage or bad input; 3 retryable (busy,
 * timeout).  Errors are printed as "amber: <message>".
 */
#ifndef AMBER_CLI_CLI_H
#define AMBER_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "amber/client.h"
#include "amber/proto.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAILED 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_RETRY 3

#define CLI_PROG "amber"

#ifndef AMBER_VERSION
#define AMBER_VERSION "0.1.0"
#endif

/* Room for a message about one argument (a path is up to PATH_MAX). */
#define CLI_ERR_BUF 4400

#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))

struct cli_cmd;

/* What one run of the program shares: the streams and the global options. */
typedef struct cli_ctx {
	FILE *out;                  /* standard output: results */
	FILE *err;                  /* standard error: messages */
	const char *socket;         /* --socket PATH, or NULL */
	bool json;                  /* --json */
	bool help;                  /* -h or --help was given */
	bool version;               /* --version was given */
	const struct cli_cmd *cmd;  /* the command being run, for messages */
} cli_ctx;

/* One command: "list writers" is verb "list", object "writers"; "events"
 * has no object.  Later commands (backup, restore, script) are new rows. */
typedef struct cli_cmd {
	const char *verb;
	const char *object;         /* NULL: the verb alone is the command */
	int (*run)(cli_ctx *ctx, int argc, char **argv);
	const char *synopsis;       /* one line, without "amber " */
	const char *summary;        /* a few words for the command list */
	const char *help;           /* the manual page (help.c) */
} cli_cmd;

/* dispatch.c: the whole program, given argc/argv as main() got them. */
int cli_main(cli_ctx *ctx, int argc, char **argv);
/* The command table, for help.c and the tests. */
extern const cli_cmd cli_cmds[];
extern const size_t cli_n_cmds;
/* The command called verb/object (object NULL for one-word commands). */
const cli_cmd *cli_cmd_find(const char *verb, const char *object);

/* "list writers": the command's name as the user types it. */
const char *cli_cmd_name(const cli_cmd *cmd, char *buf, size_t n);

/* Print "amber: <message>" and a newline to ctx->err. */
void cli_errorf(cli_ctx *ctx, const char *fmt, ...) CLI_PRINTF(2, 3);
/* A usage error: "amber: COMMAND: <reason>", then "try 'amber COMMAND
 * --help'" (without a command: "amber: <reason>", "try 'amber --help'").
 * Returns CLI_EXIT_USAGE so a command can `return cli_usage(ctx, ...)`. */
int cli_usage(cli_ctx *ctx, const char *fmt, ...) CLI_PRINTF(2, 3);

/* ------------------------------------------------------------ args.c */

enum {
	CLI_ARG_END = 0,            /* no more arguments */
	CLI_ARG_POS = -1,           /* a positional argument, in p->value */
	CLI_ARG_ERR = -2,           /* a usage error, described in p->err */
};

/* One command-specific option.  key > 0 is what cli_next() returns. */
typedef struct cli_opt {
	const char *name;           /* long name without "--" */
	char short_name;            /* 0: none */
	bool has_value;
	int key;
} cli_opt;

/*
 * The argument parser: GNU-like.  Options and positional arguments may be
 * mixed; "--name VALUE" and "--name=VALUE" are the same; short options can
 * be clustered ("-qy") and a short option's value can follow it directly
 * ("-lFILE") or as the next argument; "--" ends the options; "-" alone is
 * a positional argument.  Long names must be given in full.  The global
 * options (--socket, --json, -h/--help, --version) are taken wherever they
 * appear and stored in the ctx.
 */
typedef struct cli_parser {
	cli_ctx *ctx;
	int argc;
	char **argv;
	int i;                      /* next argv index */
	const char *cluster;        /* the rest of a "-abc" cluster */
	bool only_pos;              /* after "--" */
	const cli_opt *opts;
	size_t n_opts;
	const char *value;          /* the option's value or the positional */
	char err[320];              /* after CLI_ARG_ERR */
} cli_parser;

void cli_parser_init(cli_parser *p, cli_ctx *ctx, int argc, char **argv, const cli_opt *opts,
                     size_t n_opts);
/* The next option's key, CLI_ARG_POS, CLI_ARG_END or CLI_ARG_ERR. */
int cli_next(cli_parser *p);

/* Try to take a global option at argv[*i] (advancing *i past its value).
 * Returns 1 if it was one, 0 if not, -1 if its value is missing (err). */
int cli_global_opt(cli_ctx *ctx, int argc, char **argv, int *i, char *err, size_t errlen);

/* A decimal number 0..max: digits only, no sign, no overflow.  0 or
 * -EINVAL. */
int cli_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* A shadow, set or writer-instance id as the user may type it: the
 * canonical form, upper or lower case, with or without the braces that the
 * listings print ("{...}").  Writes the canonical lower-case form.  0 or
 * -EINVAL. */
int cli_parse_uuid(const char *s, amb_uuid out);

/* Lexically normalize an absolute path in place: no "//", no "." or ".."
 * component (".." above the root stays at the root), no trailing '/'.
 * Returns 0, or -EINVAL if path is not absolute. */
int cli_path_normalize(char *path);

/*
 * What amberd wants for a path argument: absolute and normalized.  An
 * existing path is resolved with realpath(3), so symbolic links are
 * followed and the result names the real directory.  A missing path (when
 * must_exist is false) is made absolute against the current directory and
 * normalized lexically, with its parent resolved if that exists.  The
 * result is checked with amb_proto_path_ok().  Returns 0 with *out
 * malloc'd, or -errno with a message in err ("PATH: No such file or
 * directory").
 */
int cli_path_abs(const char *in, bool must_exist, char **out, char *err, size_t errlen);

/* ------------------------------------------------------------ conn.c */

/* The exit code for a libamber return code: 0 for 0, the exit class for
 * 1..3, 2 for -EINVAL (a bad argument), 1 for any other -errno. */
int cli_exit_code(int rc);

/* Connect to amberd (ctx->socket, $AMBER_SOCKET or the default) with role.
 * Returns 0 with *out, or the exit code after printing why. */
int cli_connect(cli_ctx *ctx, amb_role role, amb_client **out);

/* Report a failed libamber call on c (rc != 0) and return its exit code:
 * amberd's message for an "error" answer, libamber's for -errno, with a
 * hint when amberd cannot be reached. */
int cli_fail(cli_ctx *ctx, amb_client *c, int rc);

/* Flush ctx->out; a write error (a full disk, a closed pipe) turns
 * exit code rc into 1.  Every command's last word. */
int cli_finish(cli_ctx *ctx, int rc);

#endif

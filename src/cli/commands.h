/*
 * commands.h - amber: the commands, and the parsed form of their
 * arguments.
 *
 * Each command is split into parse (arguments -> an options struct; no
 * amberd involved, so the tests can check it) and run (connect, ask,
 * print).  A parse function returns 0, or the exit code after printing a
 * usage error; the options struct then holds nothing to free.
 */
#ifndef AMBER_CLI_COMMANDS_H
#define AMBER_CLI_COMMANDS_H

#include "cli/cli.h"

/* ------------------------------------------------------------ list.c */

int cmd_list_writers(cli_ctx *ctx, int argc, char **argv);
int cmd_list_providers(cli_ctx *ctx, int argc, char **argv);
int cmd_list_shadows(cli_ctx *ctx, int argc, char **argv);
int cmd_list_shadowstorage(cli_ctx *ctx, int argc, char **argv);

/* list writers/providers/shadowstorage: only the global options. */
int cli_parse_no_args(cli_ctx *ctx, int argc, char **argv);

typedef struct cli_list_shadows_opts {
	amb_uuid set;               /* "" = every set */
	char *volume;               /* NULL = every volume */
} cli_list_shadows_opts;

int cli_parse_list_shadows(cli_ctx *ctx, int argc, char **argv, cli_list_shadows_opts *o);
void cli_list_shadows_opts_free(cli_list_shadows_opts *o);

/* ---------------------------------------------------------- shadow.c */

int cmd_create_shadow(cli_ctx *ctx, int argc, char **argv);
int cmd_delete_shadows(cli_ctx *ctx, int argc, char **argv);
int cmd_expose(cli_ctx *ctx, int argc, char **argv);
int cmd_unexpose(cli_ctx *ctx, int argc, char **argv);

typedef struct cli_create_opts {
	char *volumes[AMB_MAX_VOLUMES]; /* absolute, normalized, distinct */
	size_t n_volumes;
	bool persistent;
	bool no_writers;
	bool quiet;
	char provider[AMB_NAME_BUF];    /* "" = amberd chooses */
} cli_create_opts;

int cli_parse_create_shadow(cli_ctx *ctx, int argc, char **argv, cli_create_opts *o);
void cli_create_opts_free(cli_create_opts *o);

typedef struct cli_delete_opts {
	amb_shadow_delete sel;      /* exactly one selector; oldest/exposed malloc'd */
	bool quiet;
} cli_delete_opts;

int cli_parse_delete_shadows(cli_ctx *ctx, int argc, char **argv, cli_delete_opts *o);
void cli_delete_opts_free(cli_delete_opts *o);

typedef struct cli_expose_opts {
	amb_uuid shadow;            /* expose only */
	char *path;                 /* absolute, normalized */
	bool quiet;
} cli_expose_opts;

int cli_parse_expose(cli_ctx *ctx, int argc, char **argv, cli_expose_opts *o);
int cli_parse_unexpose(cli_ctx *ctx, int argc, char **argv, cli_expose_opts *o);
void cli_expose_opts_free(cli_expose_opts *o);

/* ---------------------------------------------------------- events.c */

int cmd_events(cli_ctx *ctx, int argc, char **argv);

typedef struct cli_events_opts {
	bool follow;
	bool has_since;
	uint64_t since;             /* events with seq > since */
	uint64_t limit;             /* at most this many events; 0 = no limit */
} cli_events_opts;

int cli_parse_events(cli_ctx *ctx, int argc, char **argv, cli_events_opts *o);

/* -------------------------------------------------------- backupcmd.c */

int cmd_backup(cli_ctx *ctx, int argc, char **argv);
int cmd_backups(cli_ctx *ctx, int argc, char **argv);
int cmd_verify(cli_ctx *ctx, int argc, char **argv);
int cmd_restore(cli_ctx *ctx, int argc, char **argv);

/* ----------------------------------------------- script.c, script_gen.c */

int cmd_script(cli_ctx *ctx, int argc, char **argv);
/* amber script --generate backup --repo REPO: print the script. */
int cli_script_generate(cli_ctx *ctx, const char *repo);

#endif

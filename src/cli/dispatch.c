/*
 * dispatch.c - amber: the command table, finding the command in argv,
 * help and version, and the error-reporting helpers every command uses.
 *
 * A command is one or two words ("events", "list writers").  The global
 * options may come before, between or after them; everything after the
 * command words goes to the command, whose parser takes the global options
 * too.  -h/--help anywhere (before "--") shows the page of whatever
 * command was named so far.
 */
#include <stdarg.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/help.h"

/* Later commands (backup, backups, verify, restore, script) are new rows;
 * rows of one verb stay together (help lists them in this order). */
const cli_cmd cli_cmds[] = {
	{ "list", "writers", cmd_list_writers, "list writers",
	  "writers, their state and last error", cli_help_list_writers },
	{ "list", "providers", cmd_list_providers, "list providers",
	  "the providers that make shadow copies", cli_help_list_providers },
	{ "list", "shadows", cmd_list_shadows, "list shadows [--set ID] [--volume P]",
	  "shadow copies, grouped by set", cli_help_list_shadows },
	{ "list", "shadowstorage", cmd_list_shadowstorage, "list shadowstorage",
	  "space used by shadow copies per volume", cli_help_list_shadowstorage },
	{ "create", "shadow", cmd_create_shadow, "create shadow VOLUME...",
	  "make a shadow copy set", cli_help_create_shadow },
	{ "delete", "shadows", cmd_delete_shadows, "delete shadows SELECTOR",
	  "delete shadow copies", cli_help_delete_shadows },
	{ "expose", NULL, cmd_expose, "expose SHADOW PATH",
	  "mount a shadow copy read-only", cli_help_expose },
	{ "unexpose", NULL, cmd_unexpose, "unexpose PATH",
	  "unmount an exposed shadow copy", cli_help_unexpose },
	{ "events", NULL, cmd_events, "events [--follow]",
	  "show or follow amberd's event log", cli_help_events },
	{ "backup", NULL, cmd_backup, "backup TYPE --repo REPO [--writer W[/C]]...",
	  "verified full, copy, incremental or differential backup", cli_help_backup },
	{ "backups", NULL, cmd_backups, "backups --repo REPO [--prune-incomplete] [--prune-failed]",
	  "list the backups of a repository", cli_help_backups },
	{ "verify", NULL, cmd_verify, "verify --repo REPO BACKUP",
	  "re-read a backup and verify every page and log", cli_help_verify },
	{ "restore", NULL, cmd_restore, "restore --repo REPO BACKUP [--to DIR]",
	  "restore a backup chain and recover it", cli_help_restore },
	{ "script", NULL, cmd_script, "script [FILE|-] [-l LOG]",
	  "run a diskshadow-style script", cli_help_script },
};
const size_t cli_n_cmds = sizeof(cli_cmds) / sizeof(cli_cmds[0]);

const cli_cmd *cli_cmd_find(const char *verb, const char *object)
{
	for (size_t k = 0; k < cli_n_cmds; k++) {
		const cli_cmd *c = &cli_cmds[k];
		if (strcmp(c->verb, verb) != 0)
			continue;
		if (!c->object && !object)
			return c;
		if (c->object && object && strcmp(c->object, object) == 0)
			return c;
	}
	return NULL;
}

/* The first row of verb, or NULL if there is no such verb. */
static const cli_cmd *verb_find(const char *verb)
{
	for (size_t k = 0; k < cli_n_cmds; k++)
		if (strcmp(cli_cmds[k].verb, verb) == 0)
			return &cli_cmds[k];
	return NULL;
}

/* How many rows verb has. */
static size_t verb_count(const char *verb)
{
	size_t n = 0;
	for (size_t k = 0; k < cli_n_cmds; k++)
		n += strcmp(cli_cmds[k].verb, verb) == 0;
	return n;
}

/* "writers, providers, shadows or shadowstorage" */
static const char *verb_objects(const char *verb, char *buf, size_t n)
{
	size_t len = 0, total = verb_count(verb), seen = 0;
	buf[0] = '\0';
	for (size_t k = 0; k < cli_n_cmds && len < n; k++) {
		if (strcmp(cli_cmds[k].verb, verb) != 0)
			continue;
		seen++;
		const char *sep = seen == 1 ? "" : seen == total ? " or " : ", ";
		int w = snprintf(buf + len, n - len, "%s%s", sep, cli_cmds[k].object);
		if (w < 0)
			break;
		len += (size_t)w;
	}
	return buf;
}

const char *cli_cmd_name(const cli_cmd *cmd, char *buf, size_t n)
{
	if (cmd->object)
		snprintf(buf, n, "%s %s", cmd->verb, cmd->object);
	else
		snprintf(buf, n, "%s", cmd->verb);
	return buf;
}

void cli_errorf(cli_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	fflush(ctx->out);
	fputs(CLI_PROG ": ", ctx->err);
	va_start(ap, fmt);
	vfprintf(ctx->err, fmt, ap);
	va_end(ap);
	fputc('\n', ctx->err);
}

int cli_usage(cli_ctx *ctx, const char *fmt, ...)
{
	va_list ap;
	char name[64];
	fflush(ctx->out);
	fputs(CLI_PROG ": ", ctx->err);
	if (ctx->cmd)
		fprintf(ctx->err, "%s: ", cli_cmd_name(ctx->cmd, name, sizeof(name)));
	va_start(ap, fmt);
	vfprintf(ctx->err, fmt, ap);
	va_end(ap);
	if (ctx->cmd)
		fprintf(ctx->err, "\ntry '" CLI_PROG " %s --help'\n", name);
	else
		fputs("\ntry '" CLI_PROG " --help'\n", ctx->err);
	return CLI_EXIT_USAGE;
}

int cli_finish(cli_ctx *ctx, int rc)
{
	if (fflush(ctx->out) != 0 || ferror(ctx->out)) {
		/* the message must not go where the write just failed */
		if (ctx->err != ctx->out)
			cli_errorf(ctx, "cannot write the output");
		return CLI_EXIT_FAILED;
	}
	return rc;
}

/* A usage error about a verb's object: the hint names the verb's page. */
static int usage_verb(cli_ctx *ctx, const char *verb, const char *fmt, ...) CLI_PRINTF(3, 4);
static int usage_verb(cli_ctx *ctx, const char *verb, const char *fmt, ...)
{
	va_list ap;
	char objs[256];
	fflush(ctx->out);
	fprintf(ctx->err, CLI_PROG ": %s: ", verb);
	va_start(ap, fmt);
	vfprintf(ctx->err, fmt, ap);
	va_end(ap);
	fprintf(ctx->err, " (%s)\ntry '" CLI_PROG " %s --help'\n",
	        verb_objects(verb, objs, sizeof(objs)), verb);
	return CLI_EXIT_USAGE;
}

/* `amber help [VERB [OBJECT]]` */
static int help_cmd(cli_ctx *ctx, int argc, char **argv)
{
	if (argc == 0) {
		cli_help_overview(ctx->out);
		return cli_finish(ctx, CLI_EXIT_OK);
	}
	if (argc > 2)
		return cli_usage(ctx, "help: too many arguments");
	const cli_cmd *v = verb_find(argv[0]);
	if (!v)
		return cli_usage(ctx, "help: unknown command '%s'", argv[0]);
	const cli_cmd *c = NULL;
	if (argc == 2) {
		c = cli_cmd_find(argv[0], argv[1]);
		if (!c)
			return cli_usage(ctx, "help: unknown command '%s %s'", argv[0], argv[1]);
	} else if (verb_count(argv[0]) == 1) {
		c = v;
	}
	if (c)
		cli_help_cmd(ctx->out, c);
	else
		cli_help_verb(ctx->out, argv[0]);
	return cli_finish(ctx, CLI_EXIT_OK);
}

int cli_main(cli_ctx *ctx, int argc, char **argv)
{
	const cli_cmd *verb = NULL, *cmd = NULL;
	bool help_words = false;       /* "amber help ..." */
	char err[128];
	int i = 1;
	while (i < argc && !cmd) {
		const char *a = argv[i];
		if (a[0] == '-' && a[1] != '\0') {
			int g = cli_global_opt(ctx, argc, argv, &i, err, sizeof(err));
			if (g < 0)
				return cli_usage(ctx, "%s", err);
			if (g == 0) {
				if (verb)
					return usage_verb(ctx, verb->verb, "unknown option '%s' "
					                  "before the object", a);
				return cli_usage(ctx, "unknown option '%s'", a);
			}
			i++;
			continue;
		}
		if (!verb && strcmp(a, "help") == 0) {
			help_words = true;
			i++;
			break;
		}
		if (!verb) {
			verb = verb_find(a);
			if (!verb)
				return cli_usage(ctx, "unknown command '%s'", a);
			if (!verb->object)
				cmd = verb;
		} else {
			cmd = cli_cmd_find(verb->verb, a);
			if (!cmd)
				return usage_verb(ctx, verb->verb, "unknown object '%s'", a);
		}
		i++;
	}
	/* -h/--help and --version among the command's own arguments */
	for (int k = i; cmd && k < argc && strcmp(argv[k], "--") != 0; k++) {
		if (strcmp(argv[k], "-h") == 0 || strcmp(argv[k], "--help") == 0)
			ctx->help = true;
		else if (strcmp(argv[k], "--version") == 0)
			ctx->version = true;
	}
	if (ctx->version) {
		fprintf(ctx->out, CLI_PROG " %s\n", AMBER_VERSION);
		return cli_finish(ctx, CLI_EXIT_OK);
	}
	if (help_words)
		return help_cmd(ctx, argc - i, argv + i);
	if (ctx->help) {
		if (cmd)
			cli_help_cmd(ctx->out, cmd);
		else if (verb && verb_count(verb->verb) == 1)
			cli_help_cmd(ctx->out, verb);
		else if (verb)
			cli_help_verb(ctx->out, verb->verb);
		else
			cli_help_overview(ctx->out);
		return cli_finish(ctx, CLI_EXIT_OK);
	}
	if (!verb) {
		cli_help_short(ctx->err);
		return CLI_EXIT_USAGE;
	}
	if (!cmd)
		return usage_verb(ctx, verb->verb, "missing what to %s", verb->verb);
	ctx->cmd = cmd;
	return cmd->run(ctx, argc - i, argv + i);
}

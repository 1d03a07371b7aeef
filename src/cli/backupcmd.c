/*
 * backupcmd.c - amber backup, backups, verify, restore: argument parsing;
 * the work is in src/backup (backup.h).
 */
#include <stdlib.h>
#include <string.h>

#include "backup/backup.h"
#include "backup/job.h"
#include "store/restoreenv.h"
#include "cli/commands.h"

enum {
	OPT_REPO = 1, OPT_WRITER, OPT_METHOD, OPT_QUIET, OPT_PRUNE, OPT_TO, OPT_NO_ROLL,
	OPT_UNTIL, OPT_NO_RECOVER, OPT_OFFLINE, OPT_METADATA, OPT_PRUNE_FAILED,
};

static int need_repo(cli_ctx *ctx, const char *repo)
{
	if (!repo)
		return cli_usage(ctx, "--repo REPO is required");
	return 0;
}

static int cli_parse_backup(cli_ctx *ctx, int argc, char **argv, bk_backup_opts *o)
{
	static const cli_opt opts[] = {
		{ "repo", 0, true, OPT_REPO },
		{ "writer", 0, true, OPT_WRITER },
		{ "method", 0, true, OPT_METHOD },
		{ "metadata", 0, true, OPT_METADATA },
		{ "quiet", 'q', false, OPT_QUIET },
	};
	memset(o, 0, sizeof(*o));
	o->socket = ctx->socket;
	o->out = ctx->out;
	o->err = ctx->err;
	cli_parser p;
	cli_parser_init(&p, ctx, argc, argv, opts, sizeof(opts) / sizeof(opts[0]));
	int k;
	const char *type = NULL;
	while ((k = cli_next(&p)) != CLI_ARG_END) {
		switch (k) {
		case CLI_ARG_ERR:
			return cli_usage(ctx, "%s", p.err);
		case CLI_ARG_POS:
			if (type)
				return cli_usage(ctx, "unexpected argument '%s'", p.value);
			type = p.value;
			break;
		case OPT_REPO:
			o->repo = p.value;
			break;
		case OPT_WRITER: {
			if (o->n_writers == BK_MAX_SELECT)
				return cli_usage(ctx, "too many --writer options (at most %d)", BK_MAX_SELECT);
			char w[2 * AMB_NAME_BUF + 2];
			snprintf(w, sizeof(w), "%s", p.value);
			char *slash = strchr(w, '/');
			if (slash)
				*slash = '\0';
			if (!amb_proto_name_ok(w) && !amb_proto_uuid_ok(w))
				return cli_usage(ctx, "--writer %s: not a writer name", p.value);
			if (slash && !amb_proto_name_ok(slash + 1))
				return cli_usage(ctx, "--writer %s: not a component name", p.value);
			o->writers[o->n_writers++] = p.value;
			break;
		}
		case OPT_METHOD:
			if (!strcmp(p.value, "snapshot"))
				o->method = BK_METHOD_SNAPSHOT;
			else if (!strcmp(p.value, "stream"))
				o->method = BK_METHOD_STREAM;
			else
				return cli_usage(ctx, "--method %s: snapshot or stream", p.value);
			break;
		case OPT_METADATA:
			o->metadata = p.value;
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		}
	}
	if (ctx->help)
		return 0;
	if (o->metadata && o->method == BK_METHOD_STREAM)
		return cli_usage(ctx, "--metadata copies from a shadow copy set: not with --method "
		                 "stream");
	if (!type)
		return cli_usage(ctx, "no backup type given (full, copy, incremental, differential)");
	o->type = bk_type_parse(type);
	if (!o->type)
		return cli_usage(ctx, "%s: not a backup type (full, copy, incremental, differential)",
		                 type);
	return need_repo(ctx, o->repo);
}

int cmd_backup(cli_ctx *ctx, int argc, char **argv)
{
	bk_backup_opts o;
	int rc = cli_parse_backup(ctx, argc, argv, &o);
	if (rc)
		return rc;
	return bk_run_backup(&o);
}

int cmd_backups(cli_ctx *ctx, int argc, char **argv)
{
	static const cli_opt opts[] = {
		{ "repo", 0, true, OPT_REPO },
		{ "prune-incomplete", 0, false, OPT_PRUNE },
		{ "prune-failed", 0, false, OPT_PRUNE_FAILED },
	};
	bk_list_opts o;
	memset(&o, 0, sizeof(o));
	o.out = ctx->out;
	o.err = ctx->err;
	cli_parser p;
	cli_parser_init(&p, ctx, argc, argv, opts, sizeof(opts) / sizeof(opts[0]));
	int k;
	while ((k = cli_next(&p)) != CLI_ARG_END) {
		switch (k) {
		case CLI_ARG_ERR:
			return cli_usage(ctx, "%s", p.err);
		case CLI_ARG_POS:
			return cli_usage(ctx, "unexpected argument '%s'", p.value);
		case OPT_REPO:
			o.repo = p.value;
			break;
		case OPT_PRUNE:
			o.prune_incomplete = true;
			break;
		case OPT_PRUNE_FAILED:
			o.prune_failed = true;
			break;
		}
	}
	int rc = need_repo(ctx, o.repo);
	if (rc)
		return rc;
	o.json = ctx->json;
	return bk_run_list(&o);
}

int cmd_verify(cli_ctx *ctx, int argc, char **argv)
{
	static const cli_opt opts[] = {
		{ "repo", 0, true, OPT_REPO },
		{ "quiet", 'q', false, OPT_QUIET },
	};
	bk_verify_opts o;
	memset(&o, 0, sizeof(o));
	o.out = ctx->out;
	o.err = ctx->err;
	cli_parser p;
	cli_parser_init(&p, ctx, argc, argv, opts, sizeof(opts) / sizeof(opts[0]));
	int k;
	while ((k = cli_next(&p)) != CLI_ARG_END) {
		switch (k) {
		case CLI_ARG_ERR:
			return cli_usage(ctx, "%s", p.err);
		case CLI_ARG_POS:
			if (o.backup)
				return cli_usage(ctx, "unexpected argument '%s'", p.value);
			o.backup = p.value;
			break;
		case OPT_REPO:
			o.repo = p.value;
			break;
		case OPT_QUIET:
			o.quiet = true;
			break;
		}
	}
	int rc = need_repo(ctx, o.repo);
	if (rc)
		return rc;
	if (!o.backup)
		return cli_usage(ctx, "no BACKUP given (an id or latest)");
	return bk_run_verify(&o);
}

int cmd_restore(cli_ctx *ctx, int argc, char **argv)
{
	static const cli_opt opts[] = {
		{ "repo", 0, true, OPT_REPO },
		{ "to", 0, true, OPT_TO },
		{ "no-roll-forward", 0, false, OPT_NO_ROLL },
		{ "until", 0, true, OPT_UNTIL },
		{ "no-recover", 0, false, OPT_NO_RECOVER },
		{ "offline", 0, false, OPT_OFFLINE },
		{ "quiet", 'q', false, OPT_QUIET },
	};
	bk_restore_opts o;
	memset(&o, 0, sizeof(o));
	o.out = ctx->out;
	o.err = ctx->err;
	o.socket = ctx->socket;
	char *to = NULL;
	cli_parser p;
	cli_parser_init(&p, ctx, argc, argv, opts, sizeof(opts) / sizeof(opts[0]));
	int k, rc = 0;
	while ((k = cli_next(&p)) != CLI_ARG_END) {
		switch (k) {
		case CLI_ARG_ERR:
			rc = cli_usage(ctx, "%s", p.err);
			goto out;
		case CLI_ARG_POS:
			if (o.backup) {
				rc = cli_usage(ctx, "unexpected argument '%s'", p.value);
				goto out;
			}
			o.backup = p.value;
			break;
		case OPT_REPO:
			o.repo = p.value;
			break;
		case OPT_TO: {
			char err[CLI_ERR_BUF];
			free(to);
			to = NULL;
			if (cli_path_abs(p.value, false, &to, err, sizeof(err)) != 0) {
				cli_errorf(ctx, "restore: --to: %s", err);
				rc = CLI_EXIT_USAGE;
				goto out;
			}
			o.to = to;
			break;
		}
		case OPT_NO_ROLL:
			o.no_roll_forward = true;
			break;
		case OPT_UNTIL:
			/* checked here, before anything is read or written */
			if (amb_restore_env_parse_time(p.value, &o.until_us) != 0 || !o.until_us) {
				rc = cli_usage(ctx, "--until %s: not a UTC time like 2026-11-22T10:00:00Z",
				               p.value);
				goto out;
			}
			break;
		case OPT_NO_RECOVER:
			o.no_recover = true;
			break;
		case OPT_OFFLINE:
			o.offline = true;
			break;
		case OPT_QUIET:
			o.quiet = true;
			break;
		}
	}
	if ((rc = need_repo(ctx, o.repo)) != 0)
		goto out;
	if (!o.backup) {
		rc = cli_usage(ctx, "no BACKUP given (an id or latest)");
		goto out;
	}
	rc = bk_run_restore(&o);
out:
	free(to);
	return rc;
}

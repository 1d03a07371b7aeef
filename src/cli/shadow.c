/*
 * shadow.c - amber create shadow, delete shadows, expose, unexpose.
 *
 * These change things, so they connect with the requestor role
 * (protocol.md section 2); amberd checks the peer's credentials.  What a
 * script needs goes to stdout (the ids), what a person wants to read goes
 * to stderr, so `id=$(amber create shadow /srv/mail)` works.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/output.h"

/* ------------------------------------------------------- create shadow */

enum { OPT_PERSISTENT = 1, OPT_NO_WRITERS, OPT_PROVIDER, OPT_QUIET };

void cli_create_opts_free(cli_create_opts *o)
{
	for (size_t k = 0; k < o->n_volumes; k++)
		free(o->volumes[k]);
	memset(o, 0, sizeof(*o));
}

/* Add a volume, resolved; 0 or the exit code after the message. */
static int add_volume(cli_ctx *ctx, cli_create_opts *o, const char *arg)
{
	char err[CLI_ERR_BUF];
	char *vol;
	if (o->n_volumes == AMB_MAX_VOLUMES)
		return cli_usage(ctx, "too many volumes (at most %d in one shadow copy set)",
		                 AMB_MAX_VOLUMES);
	if (cli_path_abs(arg, true, &vol, err, sizeof(err)) != 0) {
		cli_errorf(ctx, "create shadow: %s", err);
		return CLI_EXIT_USAGE;
	}
	for (size_t k = 0; k < o->n_volumes; k++) {
		if (strcmp(o->volumes[k], vol) == 0) {
			cli_errorf(ctx, "create shadow: %s: volume given twice (as %s)", arg, vol);
			free(vol);
			return CLI_EXIT_USAGE;
		}
	}
	o->volumes[o->n_volumes++] = vol;
	return 0;
}

int cli_parse_create_shadow(cli_ctx *ctx, int argc, char **argv, cli_create_opts *o)
{
	static const cli_opt opts[] = {
		{ "persistent", 0, false, OPT_PERSISTENT },
		{ "no-writers", 0, false, OPT_NO_WRITERS },
		{ "provider", 0, true, OPT_PROVIDER },
		{ "quiet", 'q', false, OPT_QUIET },
	};
	memset(o, 0, sizeof(*o));
	cli_parser p;
	cli_parser_init(&p, ctx, argc, argv, opts, sizeof(opts) / sizeof(opts[0]));
	int rc = 0, k;
	/* volumes are resolved after the loop, so "--help" anywhere wins and a
	 * usage error is reported before a missing volume */
	const char **vols = calloc((size_t)argc + 1, sizeof(*vols));
	size_t n_vols = 0;
	if (!vols) {
		cli_errorf(ctx, "out of memory");
		return CLI_EXIT_FAILED;
	}
	while ((k = cli_next(&p)) != CLI_ARG_END) {
		switch (k) {
		case CLI_ARG_ERR:
			rc = cli_usage(ctx, "%s", p.err);
			goto out;
		case CLI_ARG_POS:
			vols[n_vols++] = p.value;
			break;
		case OPT_PERSISTENT:
			o->persistent = true;
			break;
		case OPT_NO_WRITERS:
			o->no_writers = true;
			break;
		case OPT_PROVIDER:
			if (!amb_proto_name_ok(p.value)) {
				rc = cli_usage(ctx, "--provider %s: not a provider name", p.value);
				goto out;
			}
			snprintf(o->provider, sizeof(o->provider), "%s", p.value);
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		}
	}
	if (n_vols == 0) {
		rc = cli_usage(ctx, "no VOLUME given");
		goto out;
	}
	for (size_t v = 0; v < n_vols && rc == 0; v++)
		rc = add_volume(ctx, o, vols[v]);
out:
	free(vols);
	if (rc)
		cli_create_opts_free(o);
	return rc;
}

int cmd_create_shadow(cli_ctx *ctx, int argc, char **argv)
{
	cli_create_opts o;
	int rc = cli_parse_create_shadow(ctx, argc, argv, &o);
	if (rc)
		return rc;
	amb_client *c;
	rc = cli_connect(ctx, AMB_ROLE_REQUESTOR, &c);
	if (rc)
		goto out_opts;
	amb_shadow_create req = {
		.volumes = o.volumes,
		.n_volumes = o.n_volumes,
		.persistent = o.persistent,
		.no_writers = o.no_writers,
	};
	memcpy(req.provider, o.provider, sizeof(req.provider));
	amb_msg m;
	int r = amb_req_shadow_create(c, &req, &m);
	if (r != 0) {
		rc = cli_fail(ctx, c, r);
		goto out_close;
	}
	const amb_snapshot_set *set = &m.u.sset;
	for (size_t k = 0; k < set->n_shadows; k++) {
		const amb_shadow *s = &set->shadows[k];
		if (!o.quiet)
			fprintf(ctx->err, "created shadow %s of %s at %s (provider %s)\n", s->id,
			        s->volume, s->path, s->provider);
		if (!ctx->json)
			fprintf(ctx->out, "%s\n", s->id);
	}
	if (ctx->json && cli_json_print(ctx->out, cli_json_snapshot_set(set), true) == -ENOMEM) {
		cli_errorf(ctx, "out of memory");
		rc = CLI_EXIT_FAILED;
	}
	amb_msg_free(&m);
out_close:
	amb_client_close(c);
out_opts:
	cli_create_opts_free(&o);
	return cli_finish(ctx, rc);
}

/* ------------------------------------------------------ delete shadows */

enum { OPT_ALL = 10, OPT_OLDEST, OPT_SHADOW, OPT_SET, OPT_EXPOSED };

void cli_delete_opts_free(cli_delete_opts *o)
{
	free(o->sel.oldest);
	free(o->sel.exposed);
	memset(o, 0, sizeof(*o));
}

int cli_parse_delete_shadows(cli_ctx *ctx, int argc, char **argv, cli_delete_opts *o)
{
	static const cli_opt opts[] = {
		{ "all", 0, false, OPT_ALL },
		{ "oldest", 0, true, OPT_OLDEST },
		{ "shadow", 0, true, OPT_SHADOW },
		{ "set", 0, true, OPT_SET },
		{ "exposed", 0, true, OPT_EXPOSED },
		{ "quiet", 'q', false, OPT_QUIET },
	};
	memset(o, 0, sizeof(*o));
	cli_parser p;
	cli_parser_init(&p, ctx, argc, argv, opts, sizeof(opts) / sizeof(opts[0]));
	const char *oldest = NULL, *exposed = NULL, *shadow = NULL, *set = NULL;
	int n_sel = 0, k;
	while ((k = cli_next(&p)) != CLI_ARG_END) {
		switch (k) {
		case CLI_ARG_ERR:
			return cli_usage(ctx, "%s", p.err);
		case CLI_ARG_POS:
			return cli_usage(ctx, "unexpected argument '%s'", p.value);
		case OPT_ALL:
			o->sel.all = true;
			n_sel++;
			break;
		case OPT_OLDEST:
			oldest = p.value;
			n_sel++;
			break;
		case OPT_SHADOW:
			shadow = p.value;
			n_sel++;
			break;
		case OPT_SET:
			set = p.value;
			n_sel++;
			break;
		case OPT_EXPOSED:
			exposed = p.value;
			n_sel++;
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		}
	}
	if (n_sel != 1) {
		memset(o, 0, sizeof(*o));
		return cli_usage(ctx, "%s one of --all, --oldest VOLUME, --shadow ID, --set ID or "
		                 "--exposed PATH", n_sel ? "give only" : "say what to delete:");
	}
	if (shadow && cli_parse_uuid(shadow, o->sel.shadow) != 0)
		return cli_usage(ctx, "--shadow %s: not a shadow copy ID", shadow);
	if (set && cli_parse_uuid(set, o->sel.set) != 0)
		return cli_usage(ctx, "--set %s: not a shadow copy set ID", set);
	char err[CLI_ERR_BUF];
	if (oldest && cli_path_abs(oldest, false, &o->sel.oldest, err, sizeof(err)) != 0)
		return cli_usage(ctx, "--oldest %s", err);
	if (exposed && cli_path_abs(exposed, false, &o->sel.exposed, err, sizeof(err)) != 0)
		return cli_usage(ctx, "--exposed %s", err);
	return 0;
}

int cmd_delete_shadows(cli_ctx *ctx, int argc, char **argv)
{
	cli_delete_opts o;
	int rc = cli_parse_delete_shadows(ctx, argc, argv, &o);
	if (rc)
		return rc;
	amb_client *c;
	rc = cli_connect(ctx, AMB_ROLE_REQUESTOR, &c);
	if (rc)
		goto out_opts;
	amb_msg m;
	int r = amb_req_shadow_delete(c, &o.sel, &m);
	if (r != 0) {
		rc = cli_fail(ctx, c, r);
		goto out_close;
	}
	const amb_deleted *d = &m.u.deleted;
	if (ctx->json) {
		json_t *ids = json_array();
		for (size_t k = 0; ids && k < d->n_shadows; k++) {
			if (json_array_append_new(ids, json_string(d->shadows[k])) != 0) {
				json_decref(ids);
				ids = NULL;
			}
		}
		json_t *obj = ids ? json_pack("{s:o}", "deleted", ids) : NULL;
		if (cli_json_print(ctx->out, obj, true) == -ENOMEM) {
			cli_errorf(ctx, "out of memory");
			rc = CLI_EXIT_FAILED;
		}
	} else {
		for (size_t k = 0; k < d->n_shadows; k++)
			fprintf(ctx->out, "%s\n", d->shadows[k]);
	}
	if (!o.quiet)
		fprintf(ctx->err, "deleted %zu shadow cop%s\n", d->n_shadows,
		        d->n_shadows == 1 ? "y" : "ies");
	amb_msg_free(&m);
out_close:
	amb_client_close(c);
out_opts:
	cli_delete_opts_free(&o);
	return cli_finish(ctx, rc);
}

/* --------------------------------------------------- expose, unexpose */

void cli_expose_opts_free(cli_expose_opts *o)
{
	free(o->path);
	memset(o, 0, sizeof(*o));
}

/* expose takes SHADOW PATH (with_shadow), unexpose PATH. */
static int parse_expose(cli_ctx *ctx, int argc, char **argv, cli_expose_opts *o,
                        bool with_shadow)
{
	static const cli_opt opts[] = {
		{ "quiet", 'q', false, OPT_QUIET },
	};
	memset(o, 0, sizeof(*o));
	cli_parser p;
	cli_parser_init(&p, ctx, argc, argv, opts, sizeof(opts) / sizeof(opts[0]));
	const char *pos[2] = { NULL, NULL };
	int n_pos = 0, want = with_shadow ? 2 : 1, k;
	while ((k = cli_next(&p)) != CLI_ARG_END) {
		switch (k) {
		case CLI_ARG_ERR:
			return cli_usage(ctx, "%s", p.err);
		case CLI_ARG_POS:
			if (n_pos == want)
				return cli_usage(ctx, "unexpected argument '%s'", p.value);
			pos[n_pos++] = p.value;
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		}
	}
	if (n_pos < want)
		return cli_usage(ctx, "%s", with_shadow ? (n_pos == 0 ? "no SHADOW and PATH given"
		                                                      : "no PATH given")
		                                        : "no PATH given");
	if (with_shadow && cli_parse_uuid(pos[0], o->shadow) != 0)
		return cli_usage(ctx, "%s: not a shadow copy ID", pos[0]);
	char err[CLI_ERR_BUF];
	if (cli_path_abs(pos[want - 1], false, &o->path, err, sizeof(err)) != 0) {
		cli_errorf(ctx, "%s: %s", with_shadow ? "expose" : "unexpose", err);
		return CLI_EXIT_USAGE;
	}
	return 0;
}

int cli_parse_expose(cli_ctx *ctx, int argc, char **argv, cli_expose_opts *o)
{
	return parse_expose(ctx, argc, argv, o, true);
}

int cli_parse_unexpose(cli_ctx *ctx, int argc, char **argv, cli_expose_opts *o)
{
	return parse_expose(ctx, argc, argv, o, false);
}

static int run_expose(cli_ctx *ctx, int argc, char **argv, bool expose)
{
	cli_expose_opts o;
	int rc = parse_expose(ctx, argc, argv, &o, expose);
	if (rc)
		return rc;
	amb_client *c;
	rc = cli_connect(ctx, AMB_ROLE_REQUESTOR, &c);
	if (rc)
		goto out_opts;
	int r = expose ? amb_req_shadow_expose(c, o.shadow, o.path)
	               : amb_req_shadow_unexpose(c, o.path);
	if (r != 0)
		rc = cli_fail(ctx, c, r);
	else if (!o.quiet && expose)
		fprintf(ctx->err, "exposed shadow %s at %s\n", o.shadow, o.path);
	else if (!o.quiet)
		fprintf(ctx->err, "unexposed %s\n", o.path);
	amb_client_close(c);
out_opts:
	cli_expose_opts_free(&o);
	return cli_finish(ctx, rc);
}

int cmd_expose(cli_ctx *ctx, int argc, char **argv)
{
	return run_expose(ctx, argc, argv, true);
}

int cmd_unexpose(cli_ctx *ctx, int argc, char **argv)
{
	return run_expose(ctx, argc, argv, false);
}

/*
 * list.c - amber list writers|providers|shadows|shadowstorage.
 *
 * Listings connect with the admin role (protocol.md section 2), which may
 * read everything and change nothing but shadows.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/output.h"

int cli_parse_no_args(cli_ctx *ctx, int argc, char **argv)
{
	cli_parser p;
	cli_parser_init(&p, ctx, argc, argv, NULL, 0);
	for (;;) {
		int k = cli_next(&p);
		if (k == CLI_ARG_END)
			return 0;
		if (k == CLI_ARG_ERR)
			return cli_usage(ctx, "%s", p.err);
		return cli_usage(ctx, "unexpected argument '%s'", p.value);
	}
}

/* Print a JSON array built from n items by fn, or the text blocks, blank
 * line separated.  Returns the exit code. */
static int print_listing(cli_ctx *ctx, size_t n, const void *items, size_t size,
                         json_t *(*to_json)(const void *), void (*to_text)(FILE *, const void *),
                         const char *none)
{
	const char *base = items;
	if (ctx->json) {
		json_t *a = json_array();
		for (size_t k = 0; a && k < n; k++) {
			if (json_array_append_new(a, to_json(base + k * size)) != 0) {
				json_decref(a);
				a = NULL;
			}
		}
		if (cli_json_print(ctx->out, a, true) == -ENOMEM) {
			cli_errorf(ctx, "out of memory");
			return CLI_EXIT_FAILED;
		}
		return CLI_EXIT_OK;
	}
	if (n == 0)
		fprintf(ctx->out, "%s\n", none);
	for (size_t k = 0; k < n; k++) {
		if (k > 0)
			fprintf(ctx->out, "\n");
		to_text(ctx->out, base + k * size);
	}
	return CLI_EXIT_OK;
}

/* The three plain listings differ only in the request, where the answer
 * keeps its items, and how one item prints. */
typedef struct plain_listing {
	int (*request)(amb_client *c, amb_msg *out);
	void (*items)(const amb_msg *m, size_t *n, const void **v, size_t *size);
	json_t *(*to_json)(const void *item);
	void (*to_text)(FILE *f, const void *item);
	const char *none;
} plain_listing;

static void writer_items(const amb_msg *m, size_t *n, const void **v, size_t *size)
{
	*n = m->u.writers.n_writers;
	*v = m->u.writers.writers;
	*size = sizeof(amb_writer_info);
}

static void provider_items(const amb_msg *m, size_t *n, const void **v, size_t *size)
{
	*n = m->u.providers.n_providers;
	*v = m->u.providers.providers;
	*size = sizeof(amb_provider_info);
}

static void storage_items(const amb_msg *m, size_t *n, const void **v, size_t *size)
{
	*n = m->u.storage.n_storage;
	*v = m->u.storage.storage;
	*size = sizeof(amb_storage_info);
}

/* Adapters from the typed printers to void pointers. */
static json_t *writer_json(const void *v) { return cli_json_writer(v); }
static void writer_text(FILE *f, const void *v) { cli_print_writer(f, v); }
static json_t *provider_json(const void *v) { return cli_json_provider(v); }
static void provider_text(FILE *f, const void *v) { cli_print_provider(f, v); }
static json_t *storage_json(const void *v) { return cli_json_storage(v); }
static void storage_text(FILE *f, const void *v) { cli_print_storage(f, v); }

static int run_plain_listing(cli_ctx *ctx, int argc, char **argv, const plain_listing *l)
{
	int rc = cli_parse_no_args(ctx, argc, argv);
	if (rc)
		return rc;
	amb_client *c;
	rc = cli_connect(ctx, AMB_ROLE_ADMIN, &c);
	if (rc)
		return rc;
	amb_msg m;
	int r = l->request(c, &m);
	if (r != 0) {
		rc = cli_fail(ctx, c, r);
	} else {
		size_t n, size;
		const void *v;
		l->items(&m, &n, &v, &size);
		rc = print_listing(ctx, n, v, size, l->to_json, l->to_text, l->none);
		amb_msg_free(&m);
	}
	amb_client_close(c);
	return cli_finish(ctx, rc);
}

int cmd_list_writers(cli_ctx *ctx, int argc, char **argv)
{
	static const plain_listing l = {amb_req_list_writers, writer_items, writer_json,
	                                writer_text, "No writers are registered."};
	return run_plain_listing(ctx, argc, argv, &l);
}

int cmd_list_providers(cli_ctx *ctx, int argc, char **argv)
{
	static const plain_listing l = {amb_req_list_providers, provider_items, provider_json,
	                                provider_text, "No providers are available."};
	return run_plain_listing(ctx, argc, argv, &l);
}

int cmd_list_shadowstorage(cli_ctx *ctx, int argc, char **argv)
{
	static const plain_listing l = {amb_req_list_shadowstorage, storage_items, storage_json,
	                                storage_text, "No items found that satisfy the query."};
	return run_plain_listing(ctx, argc, argv, &l);
}

enum { OPT_SET = 1, OPT_VOLUME };

int cli_parse_list_shadows(cli_ctx *ctx, int argc, char **argv, cli_list_shadows_opts *o)
{
	static const cli_opt opts[] = {
		{ "set", 0, true, OPT_SET },
		{ "volume", 0, true, OPT_VOLUME },
	};
	memset(o, 0, sizeof(*o));
	cli_parser p;
	cli_parser_init(&p, ctx, argc, argv, opts, sizeof(opts) / sizeof(opts[0]));
	char err[CLI_ERR_BUF];
	int k;
	while ((k = cli_next(&p)) != CLI_ARG_END) {
		switch (k) {
		case CLI_ARG_ERR:
			cli_list_shadows_opts_free(o);
			return cli_usage(ctx, "%s", p.err);
		case CLI_ARG_POS:
			cli_list_shadows_opts_free(o);
			return cli_usage(ctx, "unexpected argument '%s'", p.value);
		case OPT_SET:
			if (cli_parse_uuid(p.value, o->set) != 0) {
				cli_list_shadows_opts_free(o);
				return cli_usage(ctx, "--set %s: not a shadow copy set ID",
				                 p.value);
			}
			break;
		case OPT_VOLUME:
			free(o->volume);
			if (cli_path_abs(p.value, false, &o->volume, err, sizeof(err)) != 0) {
				cli_list_shadows_opts_free(o);
				return cli_usage(ctx, "--volume %s", err);
			}
			break;
		}
	}
	return 0;
}

void cli_list_shadows_opts_free(cli_list_shadows_opts *o)
{
	free(o->volume);
	memset(o, 0, sizeof(*o));
}

/* All pages of list-shadows.  pages[] keeps the messages alive, since
 * shadows[] points into them. */
typedef struct shadow_pages {
	amb_msg *pages;
	size_t n_pages;
	const amb_shadow **shadows;
	size_t n_shadows;
} shadow_pages;

static void shadow_pages_free(shadow_pages *sp)
{
	for (size_t k = 0; k < sp->n_pages; k++)
		amb_msg_free(&sp->pages[k]);
	free(sp->pages);
	free(sp->shadows);
	memset(sp, 0, sizeof(*sp));
}

/* Fetch every page.  Returns 0 or a libamber code (-ENOMEM included). */
static int shadow_pages_fetch(amb_client *c, const cli_list_shadows_opts *o, shadow_pages *sp)
{
	uint64_t offset = 0;
	for (;;) {
		amb_msg *pages = realloc(sp->pages, (sp->n_pages + 1) * sizeof(*pages));
		if (!pages)
			return -ENOMEM;
		sp->pages = pages;
		amb_msg *m = &sp->pages[sp->n_pages];
		const char *set = o->set[0] ? o->set : NULL;
		int r = amb_req_list_shadows(c, set, o->volume, offset, 0, m);
		if (r != 0)
			return r;
		sp->n_pages++;
		const amb_shadow_list *l = &m->u.shadows;
		if (l->n_shadows == 0)
			return 0;
		const amb_shadow **sh = realloc(sp->shadows,
		                                (sp->n_shadows + l->n_shadows) * sizeof(*sh));
		if (!sh)
			return -ENOMEM;
		sp->shadows = sh;
		for (size_t k = 0; k < l->n_shadows; k++)
			sp->shadows[sp->n_shadows++] = &l->shadows[k];
		offset += l->n_shadows;
		/* total may shrink while we page (a deletion): stop at either end */
		if (offset >= l->total)
			return 0;
	}
}

int cmd_list_shadows(cli_ctx *ctx, int argc, char **argv)
{
	cli_list_shadows_opts o;
	int rc = cli_parse_list_shadows(ctx, argc, argv, &o);
	if (rc)
		return rc;
	amb_client *c;
	rc = cli_connect(ctx, AMB_ROLE_ADMIN, &c);
	if (rc)
		goto out_opts;
	shadow_pages sp = { 0 };
	int r = shadow_pages_fetch(c, &o, &sp);
	if (r == -ENOMEM) {
		cli_errorf(ctx, "out of memory");
		rc = CLI_EXIT_FAILED;
		goto out_pages;
	}
	if (r != 0) {
		rc = cli_fail(ctx, c, r);
		goto out_pages;
	}
	if (ctx->json) {
		json_t *a = json_array();
		for (size_t k = 0; a && k < sp.n_shadows; k++) {
			if (json_array_append_new(a, cli_json_shadow(sp.shadows[k])) != 0) {
				json_decref(a);
				a = NULL;
			}
		}
		r = cli_json_print(ctx->out, a, true);
	} else if (sp.n_shadows == 0) {
		fprintf(ctx->out, "No items found that satisfy the query.\n");
	} else {
		r = cli_print_shadows(ctx->out, sp.shadows, sp.n_shadows);
	}
	if (r == -ENOMEM) {
		cli_errorf(ctx, "out of memory");
		rc = CLI_EXIT_FAILED;
	}
out_pages:
	shadow_pages_free(&sp);
	amb_client_close(c);
out_opts:
	cli_list_shadows_opts_free(&o);
	return cli_finish(ctx, rc);
}

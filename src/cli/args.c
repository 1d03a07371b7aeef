/*
 * args.c - amber: the argument parser, and the checks that turn what the
 * user typed (numbers, ids, paths) into what the protocol accepts.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

int cli_global_opt(cli_ctx *ctx, int argc, char **argv, int *i, char *err, size_t errlen)
{
	const char *a = argv[*i];
	if (strcmp(a, "--json") == 0) {
		ctx->json = true;
		return 1;
	}
	if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
		ctx->help = true;
		return 1;
	}
	if (strcmp(a, "--version") == 0) {
		ctx->version = true;
		return 1;
	}
	if (strncmp(a, "--socket=", 9) == 0) {
		if (a[9] == '\0') {
			snprintf(err, errlen, "option '--socket' needs a value");
			return -1;
		}
		ctx->socket = a + 9;
		return 1;
	}
	if (strcmp(a, "--socket") == 0) {
		if (*i + 1 >= argc || argv[*i + 1][0] == '\0') {
			snprintf(err, errlen, "option '--socket' needs a value");
			return -1;
		}
		ctx->socket = argv[++*i];
		return 1;
	}
	return 0;
}

void cli_parser_init(cli_parser *p, cli_ctx *ctx, int argc, char **argv, const cli_opt *opts,
                     size_t n_opts)
{
	memset(p, 0, sizeof(*p));
	p->ctx = ctx;
	p->argc = argc;
	p->argv = argv;
	p->opts = opts;
	p->n_opts = n_opts;
}

static const cli_opt *find_long(const cli_parser *p, const char *name, size_t len)
{
	for (size_t k = 0; k < p->n_opts; k++)
		if (strlen(p->opts[k].name) == len && strncmp(p->opts[k].name, name, len) == 0)
			return &p->opts[k];
	return NULL;
}

static const cli_opt *find_short(const cli_parser *p, char c)
{
	for (size_t k = 0; k < p->n_opts; k++)
		if (p->opts[k].short_name == c)
			return &p->opts[k];
	return NULL;
}

/* Next character of a "-abc" cluster. */
static int next_short(cli_parser *p)
{
	char c = *p->cluster++;
	if (c == 'h') {
		p->ctx->help = true;
		if (*p->cluster == '\0')
			p->cluster = NULL;
		return cli_next(p);
	}
	const cli_opt *o = find_short(p, c);
	if (!o) {
		snprintf(p->err, sizeof(p->err), "unknown option '-%c'", c);
		return CLI_ARG_ERR;
	}
	if (!o->has_value) {
		if (*p->cluster == '\0')
			p->cluster = NULL;
		return o->key;
	}
	if (*p->cluster != '\0') {
		p->value = p->cluster;
		p->cluster = NULL;
		return o->key;
	}
	p->cluster = NULL;
	if (p->i >= p->argc) {
		snprintf(p->err, sizeof(p->err), "option '-%c' needs a value", c);
		return CLI_ARG_ERR;
	}
	p->value = p->argv[p->i++];
	return o->key;
}

int cli_next(cli_parser *p)
{
	p->value = NULL;
	if (p->cluster)
		return next_short(p);
	for (;;) {
		if (p->i >= p->argc)
			return CLI_ARG_END;
		const char *a = p->argv[p->i];
		if (p->only_pos || a[0] != '-' || a[1] == '\0') {
			p->value = a;
			p->i++;
			return CLI_ARG_POS;
		}
		if (strcmp(a, "--") == 0) {
			p->only_pos = true;
			p->i++;
			continue;
		}
		int g = cli_global_opt(p->ctx, p->argc, p->argv, &p->i, p->err, sizeof(p->err));
		if (g < 0)
			return CLI_ARG_ERR;
		if (g > 0) {
			p->i++;
			continue;
		}
		p->i++;
		if (a[1] != '-') {
			p->cluster = a + 1;
			return next_short(p);
		}
		const char *name = a + 2;
		const char *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		const cli_opt *o = find_long(p, name, len);
		if (!o) {
			snprintf(p->err, sizeof(p->err), "unknown option '--%.*s'",
			         (int)(len > 64 ? 64 : len), name);
			return CLI_ARG_ERR;
		}
		if (!o->has_value) {
			if (eq) {
				snprintf(p->err, sizeof(p->err), "option '--%s' takes no value",
				         o->name);
				return CLI_ARG_ERR;
			}
			return o->key;
		}
		if (eq) {
			p->value = eq + 1;
		} else if (p->i < p->argc) {
			p->value = p->argv[p->i++];
		} else {
			snprintf(p->err, sizeof(p->err), "option '--%s' needs a value", o->name);
			return CLI_ARG_ERR;
		}
		if (p->value[0] == '\0') {
			snprintf(p->err, sizeof(p->err), "option '--%s' needs a value", o->name);
			return CLI_ARG_ERR;
		}
		return o->key;
	}
}

int cli_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	if (!s || !*s)
		return -EINVAL;
	uint64_t v = 0;
	for (const char *c = s; *c; c++) {
		if (*c < '0' || *c > '9')
			return -EINVAL;
		unsigned d = (unsigned)(*c - '0');
		if (v > (max - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int cli_parse_uuid(const char *s, amb_uuid out)
{
	size_t len = strlen(s);
	if (len == AMB_UUID_LEN + 2 && s[0] == '{' && s[len - 1] == '}') {
		s++;
		len -= 2;
	}
	if (len != AMB_UUID_LEN)
		return -EINVAL;
	for (size_t k = 0; k < len; k++)
		out[k] = (char)tolower((unsigned char)s[k]);
	out[len] = '\0';
	return amb_proto_uuid_ok(out) ? 0 : -EINVAL;
}

int cli_path_normalize(char *path)
{
	if (path[0] != '/')
		return -EINVAL;
	/* out never overtakes in: rewrite in place, component by component */
	size_t out = 0;
	const char *in = path;
	while (*in) {
		while (*in == '/')
			in++;
		if (!*in)
			break;
		const char *end = strchr(in, '/');
		size_t len = end ? (size_t)(end - in) : strlen(in);
		if (len == 1 && in[0] == '.') {
			/* nothing */
		} else if (len == 2 && in[0] == '.' && in[1] == '.') {
			/* drop the last component written, with its '/' */
			while (out > 0 && path[out - 1] != '/')
				out--;
			if (out > 0)
				out--;
		} else {
			path[out++] = '/';
			memmove(path + out, in, len);
			out += len;
		}
		in += len;
	}
	if (out == 0)
		path[out++] = '/';
	path[out] = '\0';
	return 0;
}

static int path_check(char *p, char **out, const char *in, char *err, size_t errlen)
{
	if (strlen(p) > AMB_PATH_MAX) {
		snprintf(err, errlen, "%s: path too long (more than %d bytes)", in, AMB_PATH_MAX);
		free(p);
		return -ENAMETOOLONG;
	}
	if (!amb_proto_path_ok(p)) {
		snprintf(err, errlen,
		         "%s: not a path amberd accepts (invalid UTF-8 or control characters)",
		         in);
		free(p);
		return -EINVAL;
	}
	*out = p;
	return 0;
}

int cli_path_abs(const char *in, bool must_exist, char **out, char *err, size_t errlen)
{
	*out = NULL;
	if (!in[0]) {
		snprintf(err, errlen, "empty path");
		return -EINVAL;
	}
	char *real = realpath(in, NULL);
	if (real)
		return path_check(real, out, in, err, errlen);
	int e = errno;
	if (must_exist || e != ENOENT) {
		snprintf(err, errlen, "%s: %s", in, strerror(e));
		return -e;
	}
	/* missing: make it absolute and normalize it by hand */
	size_t need = strlen(in) + 2;
	char *cwd = NULL;
	if (in[0] != '/') {
		cwd = getcwd(NULL, 0);
		if (!cwd) {
			e = errno;
			snprintf(err, errlen, "%s: cannot get the current directory: %s", in,
			         strerror(e));
			return -e;
		}
		need += strlen(cwd);
	}
	char *abs = malloc(need);
	if (!abs) {
		free(cwd);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(abs, need, "%s/%s", cwd ? cwd : "", in);
	free(cwd);
	cli_path_normalize(abs);
	/* resolve the parent when it exists, so /link/new names the real place */
	char *slash = strrchr(abs, '/');
	if (slash && slash != abs) {
		*slash = '\0';
		char *parent = realpath(abs, NULL);
		*slash = '/';
		if (parent) {
			size_t n2 = strlen(parent) + strlen(slash) + 1;
			char *joined = malloc(n2);
			if (!joined) {
				free(parent);
				free(abs);
				snprintf(err, errlen, "out of memory");
				return -ENOMEM;
			}
			const char *head = strcmp(parent, "/") == 0 ? "" : parent;
			snprintf(joined, n2, "%s%s", head, slash);
			free(parent);
			free(abs);
			abs = joined;
		}
	}
	return path_check(abs, out, in, err, errlen);
}

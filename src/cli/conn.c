/*
 * conn.c - amber: connecting to amberd, and turning libamber's return
 * codes into messages and exit codes.
 */
#include <errno.h>
#include <string.h>

#include "cli/cli.h"

int cli_exit_code(int rc)
{
	if (rc == 0)
		return CLI_EXIT_OK;
	if (rc == AMB_EXIT_FAILED || rc == AMB_EXIT_BAD_INPUT || rc == AMB_EXIT_RETRYABLE)
		return rc;
	if (rc == -EINVAL)
		return CLI_EXIT_USAGE;
	return CLI_EXIT_FAILED;
}

/* amberd is not there (or not answering): say where we looked. */
static bool unreachable(int rc)
{
	return rc == -ECONNREFUSED || rc == -ENOENT || rc == -EAGAIN;
}

static void report(cli_ctx *ctx, int rc, const char *msg, amb_fail_class cls)
{
	if (rc > 0) {
		const char *cn = amb_fail_class_name(cls);
		const char *text = msg && *msg ? msg : "amberd refused the request";
		if (cls != AMB_FAIL_NONE && cn)
			cli_errorf(ctx, "%s (%s)", text, cn);
		else
			cli_errorf(ctx, "%s", text);
		return;
	}
	if (msg && *msg)
		cli_errorf(ctx, "%s", msg);
	else
		cli_errorf(ctx, "%s", strerror(-rc));
	if (!unreachable(rc))
		return;
	if (msg && strstr(msg, "amberd running"))   /* libamber asked already */
		cli_errorf(ctx, "for an amberd elsewhere, use --socket PATH or AMBER_SOCKET");
	else
		cli_errorf(ctx, "is amberd running at %s? (see --socket and AMBER_SOCKET)",
		           amb_socket_path(ctx->socket));
}

int cli_connect(cli_ctx *ctx, amb_role role, amb_client **out)
{
	int rc = amb_client_connect(amb_socket_path(ctx->socket), role, CLI_PROG, out);
	if (rc == 0)
		return CLI_EXIT_OK;
	*out = NULL;
	report(ctx, rc, amb_client_last_error(), AMB_FAIL_NONE);
	return cli_exit_code(rc);
}

int cli_fail(cli_ctx *ctx, amb_client *c, int rc)
{
	report(ctx, rc, amb_client_errmsg(c), rc > 0 ? amb_client_errclass(c) : AMB_FAIL_NONE);
	return cli_exit_code(rc);
}

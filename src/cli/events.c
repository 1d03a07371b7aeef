/*
 * events.c - amber events: amberd's event log, listed or followed.
 *
 * The backlog is read with events-list, page by page, each page starting
 * after the last seq printed, until a page comes back short.  --follow
 * then sends events-follow with that seq as "since", so amberd replays
 * whatever was logged in between and nothing is lost or printed twice
 * (a seq not above the last one printed is skipped all the same).
 *
 * Following waits in ppoll(2) on the connection with SIGINT and SIGTERM
 * unblocked only there, so a signal never interrupts libamber in the
 * middle of a frame and is never missed between the check and the wait.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/output.h"

enum { OPT_FOLLOW = 1, OPT_SINCE, OPT_LIMIT };

int cli_parse_events(cli_ctx *ctx, int argc, char **argv, cli_events_opts *o)
{
	static const cli_opt opts[] = {
		{ "follow", 'f', false, OPT_FOLLOW },
		{ "since", 0, true, OPT_SINCE },
		{ "limit", 'n', true, OPT_LIMIT },
	};
	memset(o, 0, sizeof(*o));
	cli_parser p;
	cli_parser_init(&p, ctx, argc, argv, opts, sizeof(opts) / sizeof(opts[0]));
	int k;
	while ((k = cli_next(&p)) != CLI_ARG_END) {
		switch (k) {
		case CLI_ARG_ERR:
			return cli_usage(ctx, "%s", p.err);
		case CLI_ARG_POS:
			return cli_usage(ctx, "unexpected argument '%s'", p.value);
		case OPT_FOLLOW:
			o->follow = true;
			break;
		case OPT_SINCE:
			if (cli_parse_u64(p.value, AMB_MAX_ID, &o->since) != 0)
				return cli_usage(ctx, "--since %s: not an event sequence number",
				                 p.value);
			o->has_since = true;
			break;
		case OPT_LIMIT:
			if (cli_parse_u64(p.value, AMB_MAX_ID, &o->limit) != 0 || o->limit == 0)
				return cli_usage(ctx, "--limit %s: not a number from 1 up",
				                 p.value);
			break;
		}
	}
	return 0;
}

/* Where printing stands: the last seq printed and how many so far. */
typedef struct ev_pos {
	bool have_last;
	uint64_t last;
	uint64_t printed;
} ev_pos;

/* Print e unless it was printed already.  Returns 1 if printed, 0 if
 * skipped, -ENOMEM. */
static int print_event(cli_ctx *ctx, const amb_event *e, ev_pos *pos)
{
	if (pos->have_last && e->seq <= pos->last)
		return 0;
	if (ctx->json) {
		if (cli_json_print(ctx->out, cli_json_event(e), false) == -ENOMEM)
			return -ENOMEM;
	} else {
		cli_print_event(ctx->out, e);
	}
	pos->have_last = true;
	pos->last = e->seq;
	pos->printed++;
	return 1;
}

static bool limit_reached(const cli_events_opts *o, const ev_pos *pos)
{
	return o->limit && pos->printed >= o->limit;
}

/* The backlog through events-list.  Returns 0 or the exit code. */
static int list_backlog(cli_ctx *ctx, amb_client *c, const cli_events_opts *o, ev_pos *pos)
{
	for (;;) {
		uint32_t want = AMB_MAX_EVENTS;
		if (o->limit && o->limit - pos->printed < want)
			want = (uint32_t)(o->limit - pos->printed);
		amb_msg m;
		int r = amb_req_events_list(c, pos->have_last, pos->last, want, &m);
		if (r != 0)
			return cli_fail(ctx, c, r);
		size_t n = m.u.events.n_events, fresh = 0;
		for (size_t k = 0; k < n && r >= 0; k++) {
			r = print_event(ctx, &m.u.events.events[k], pos);
			fresh += r == 1;
		}
		amb_msg_free(&m);
		if (r < 0) {
			cli_errorf(ctx, "out of memory");
			return CLI_EXIT_FAILED;
		}
		/* a short page is the end; a page of nothing new would loop */
		if (n < want || fresh == 0 || limit_reached(o, pos))
			return 0;
	}
}

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

/* Stream events until a signal, the limit or the end of the connection.
 * Returns the exit code. */
static int follow(cli_ctx *ctx, amb_client *c, const cli_events_opts *o, ev_pos *pos)
{
	sigset_t stops, oldmask, waitmask;
	struct sigaction sa = { .sa_handler = on_stop }, old_int, old_term;
	sigemptyset(&stops);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGTERM);
	sigprocmask(SIG_BLOCK, &stops, &oldmask);
	waitmask = oldmask;
	sigdelset(&waitmask, SIGINT);
	sigdelset(&waitmask, SIGTERM);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	stop_signal = 0;

	int rc = CLI_EXIT_OK;
	int r = amb_req_events_follow(c, pos->have_last, pos->last);
	if (r != 0) {
		rc = cli_fail(ctx, c, r);
		goto out_signals;
	}
	while (!stop_signal && !limit_reached(o, pos)) {
		amb_msg ev;
		r = amb_client_next_event(c, 0, &ev);
		if (r == 1) {
			r = ev.kind == AMB_MSG_EVENT ? print_event(ctx, &ev.u.event, pos) : 0;
			amb_msg_free(&ev);
			if (r < 0) {
				cli_errorf(ctx, "out of memory");
				rc = CLI_EXIT_FAILED;
				break;
			}
			if (fflush(ctx->out) != 0) {
				rc = CLI_EXIT_FAILED;   /* cmd_events() says why */
				break;
			}
			continue;
		}
		if (r < 0) {
			const char *msg = amb_client_errmsg(c);
			if (r == -ECONNRESET || r == -EPIPE || !msg || !*msg)
				cli_errorf(ctx, "amberd closed the connection");
			else
				cli_errorf(ctx, "%s", msg);
			rc = CLI_EXIT_FAILED;
			break;
		}
		/* nothing queued: wait for the socket or a signal */
		struct pollfd pfd = { .fd = amb_client_fd(c), .events = POLLIN };
		if (ppoll(&pfd, 1, NULL, &waitmask) < 0 && errno != EINTR) {
			cli_errorf(ctx, "waiting for events: %s", strerror(errno));
			rc = CLI_EXIT_FAILED;
			break;
		}
	}
out_signals:
	/* a signal still pending reaches on_stop(), not the default action */
	sigprocmask(SIG_SETMASK, &oldmask, NULL);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	return rc;
}

int cmd_events(cli_ctx *ctx, int argc, char **argv)
{
	cli_events_opts o;
	int rc = cli_parse_events(ctx, argc, argv, &o);
	if (rc)
		return rc;
	amb_client *c;
	rc = cli_connect(ctx, AMB_ROLE_ADMIN, &c);
	if (rc)
		return rc;
	ev_pos pos = { .have_last = o.has_since, .last = o.since };
	if (!o.follow || o.has_since)
		rc = list_backlog(ctx, c, &o, &pos);
	if (rc == 0 && o.follow && !limit_reached(&o, &pos)) {
		fflush(ctx->out);
		rc = follow(ctx, c, &o, &pos);
	}
	amb_client_close(c);
	return cli_finish(ctx, rc);
}

/*
 * test_cli_main.c - the amber program as a whole (src/cli/dispatch.c and
 * the commands), run through cli_main() against a fake amberd: a thread
 * that speaks the protocol with canned answers over a UNIX socket in a
 * scratch directory.
 *
 * What must hold:
 *   - help, version and usage errors give the documented exit codes and
 *     texts, and every command has a complete manual page;
 *   - amberd's "error" answers become exit codes 1, 2 and 3 with amberd's
 *     message; an unreachable amberd is exit 1 with a hint;
 *   - list shadows fetches every page and groups across pages; events
 *     pages until a short page and respects --limit;
 *   - create shadow prints only the ids on stdout and sends resolved
 *     volumes; delete shadows sends the one selector and prints the ids;
 *   - events --follow streams until amberd closes (exit 1), --limit is
 *     reached (exit 0) or SIGTERM arrives (exit 0).
 * Synchronisation is by the protocol itself (blocking reads), never by
 * sleeping.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli_testutil.h"

/* ------------------------------------------------------------ fake amberd */

typedef struct fake fake;
/* Answer req on fd (write frames with send_msg).  Return 0 to go on
 * reading, 1 to close the connection. */
typedef int (*fake_handler)(fake *f, int fd, const amb_msg *req);

struct fake {
	char *dir;
	char sock[4200];
	int lfd;
	pthread_t th;
	pthread_t main_th;
	fake_handler handler;
	/* recorded: the kinds and a few fields of the requests */
	amb_msg_kind kinds[64];
	amb_role role;
	uint64_t offsets[64];
	uint32_t limits[64];
	bool has_since[64];
	uint64_t sinces[64];
	size_t n_reqs;
	char volumes[4][4096];
	size_t n_volumes;
	amb_shadow_delete del;
	char del_path[4096];
	/* scenario parameters */
	uint64_t n_events;          /* events 1..n_events exist */
	uint64_t n_shadows;         /* shadows in the listing */
	uint32_t page;              /* page size of shadow-list */
};

static void send_msg(int fd, amb_msg *m)
{
	char *json;
	size_t len;
	int rc = amb_msg_encode(m, &json, &len);
	if (rc != 0) {
		char err[256];
		amb_msg_check(m, err, sizeof(err));
		fail_msg("fake amberd: cannot encode: %s", err);
	}
	/* the client may be gone already (it stops at --limit): not an error */
	amb_frame_write(fd, json, len);
	free(json);
}

static void send_kind(int fd, amb_msg_kind kind, uint64_t id)
{
	amb_msg m = { .kind = kind, .id = id };
	send_msg(fd, &m);
}

static void send_error(int fd, uint64_t id, amb_exit_class exit, amb_fail_class cls,
                       const char *message)
{
	amb_msg m = { .kind = AMB_MSG_ERROR, .id = id };
	m.u.error.exit = exit;
	m.u.error.cls = cls;
	m.u.error.message = (char *)message;
	send_msg(fd, &m);
}

static void serve_conn(fake *f, int fd)
{
	for (;;) {
		char *buf;
		size_t len;
		int rc = amb_frame_read(fd, 0, &buf, &len);
		if (rc != 0)    /* AMB_FRAME_EOF, or the client reset the connection */
			return;
		amb_msg req;
		char err[256];
		rc = amb_msg_decode(buf, len, &req, err, sizeof(err));
		free(buf);
		if (rc != 0)
			fail_msg("fake amberd: bad request: %s", err);
		if (req.kind == AMB_MSG_HELLO) {
			f->role = req.u.hello.role;
			amb_msg w = { .kind = AMB_MSG_WELCOME, .id = req.id };
			w.u.welcome.version = 1;
			snprintf(w.u.welcome.server, sizeof(w.u.welcome.server), "amberd");
			snprintf(w.u.welcome.server_version, sizeof(w.u.welcome.server_version),
			         "0.1.0");
			w.u.welcome.max_message = AMB_PROTO_MAX_MSG_DEFAULT;
			w.u.welcome.hold_ms = 10000;
			w.u.welcome.event_timeout_ms = 60000;
			send_msg(fd, &w);
			amb_msg_free(&req);
			continue;
		}
		size_t n = f->n_reqs < 64 ? f->n_reqs++ : 63;
		f->kinds[n] = req.kind;
		if (req.kind == AMB_MSG_LIST_SHADOWS) {
			f->offsets[n] = req.u.lshadows.offset;
			f->limits[n] = req.u.lshadows.limit;
		}
		if (req.kind == AMB_MSG_EVENTS_LIST || req.kind == AMB_MSG_EVENTS_FOLLOW) {
			f->limits[n] = req.u.evreq.limit;
			f->has_since[n] = req.u.evreq.has_since;
			f->sinces[n] = req.u.evreq.since;
		}
		if (req.kind == AMB_MSG_SHADOW_CREATE) {
			f->n_volumes = req.u.create.n_volumes;
			for (size_t k = 0; k < f->n_volumes && k < 4; k++)
				snprintf(f->volumes[k], sizeof(f->volumes[k]), "%s",
				         req.u.create.volumes[k]);
		}
		if (req.kind == AMB_MSG_SHADOW_DELETE) {
			f->del.all = req.u.del.all;
			memcpy(f->del.shadow, req.u.del.shadow, sizeof(f->del.shadow));
			memcpy(f->del.set, req.u.del.set, sizeof(f->del.set));
			snprintf(f->del_path, sizeof(f->del_path), "%s",
			         req.u.del.oldest ? req.u.del.oldest
			                          : req.u.del.exposed ? req.u.del.exposed : "");
		}
		int close_now = f->handler(f, fd, &req);
		amb_msg_free(&req);
		if (close_now)
			return;
	}
}

static void *fake_main(void *arg)
{
	fake *f = arg;
	int fd = accept(f->lfd, NULL, NULL);
	assert_true(fd >= 0);
	serve_conn(f, fd);
	close(fd);
	return NULL;
}

static void fake_start(fake *f, fake_handler h)
{
	memset(f, 0, sizeof(*f));
	f->dir = scratch_new();
	snprintf(f->sock, sizeof(f->sock), "%s/sock", f->dir);
	f->handler = h;
	f->page = 1000;
	f->main_th = pthread_self();
	f->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(f->lfd >= 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	assert_true(strlen(f->sock) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, f->sock, strlen(f->sock) + 1);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->lfd, 4), 0);
}

/* Serve one connection in a thread (call before running the command). */
static void fake_serve(fake *f)
{
	assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
}

static void fake_stop(fake *f)
{
	pthread_join(f->th, NULL);
	close(f->lfd);
	scratch_free(f->dir);
}

/* ------------------------------------------------------------- handlers */

static void make_uuid(char *out, unsigned a, unsigned b)
{
	snprintf(out, AMB_UUID_BUF, "%08x-0000-4000-8000-%012x", a, b);
}

static int h_errors(fake *f, int fd, const amb_msg *req)
{
	(void)f;
	switch (req->kind) {
	case AMB_MSG_LIST_WRITERS:
		send_error(fd, req->id, AMB_EXIT_FAILED, AMB_FAIL_NONE, "permission denied");
		break;
	case AMB_MSG_SHADOW_CREATE:
		send_error(fd, req->id, AMB_EXIT_RETRYABLE, AMB_FAIL_NONE, "busy");
		break;
	case AMB_MSG_SHADOW_DELETE:
		send_error(fd, req->id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE, "no shadow matches x");
		break;
	default:
		send_error(fd, req->id, AMB_EXIT_RETRYABLE, AMB_FAIL_TIMEOUT, "writer timed out");
		break;
	}
	return 0;
}

/* shadow-list: f->n_shadows shadows in sets of 3 interleaved with set 99,
 * at most f->page per answer whatever the limit asked. */
static int h_shadows(fake *f, int fd, const amb_msg *req)
{
	assert_int_equal(req->kind, AMB_MSG_LIST_SHADOWS);
	uint64_t off = req->u.lshadows.offset;
	size_t n = off < f->n_shadows ? (size_t)(f->n_shadows - off) : 0;
	if (n > f->page)
		n = f->page;
	amb_shadow *sh = calloc(n ? n : 1, sizeof(*sh));
	assert_non_null(sh);
	for (size_t k = 0; k < n; k++) {
		unsigned i = (unsigned)(off + k);
		make_uuid(sh[k].id, 0xb0, i);
		make_uuid(sh[k].set, 0x5e, i % 2 ? 99 : i / 3);
		sh[k].volume = "/srv/v";
		sh[k].path = "/srv/.s";
		snprintf(sh[k].provider, sizeof(sh[k].provider), "copy");
		sh[k].created_ms = 1000 * (uint64_t)(i + 1);
	}
	amb_msg m = { .kind = AMB_MSG_SHADOW_LIST, .id = req->id };
	m.u.shadows.total = f->n_shadows;
	m.u.shadows.shadows = sh;
	m.u.shadows.n_shadows = n;
	send_msg(fd, &m);
	free(sh);
	return 0;
}

static void fill_event(amb_event *e, uint64_t seq)
{
	memset(e, 0, sizeof(*e));
	e->seq = seq;
	e->time_ms = seq * 1000;
	e->code = AMB_EV_SHADOW_CREATED;
	e->severity = AMB_SEV_INFO;
	e->message = "m";
}

/* events-list over events 1..n_events; events-follow: ok, the events after
 * since, then two new ones, then close (or wait for the client to close
 * when f->page is 0, after signalling the main thread). */
static int h_events(fake *f, int fd, const amb_msg *req)
{
	if (req->kind == AMB_MSG_EVENTS_LIST) {
		uint64_t from = req->u.evreq.has_since ? req->u.evreq.since + 1 : 1;
		uint32_t lim = req->u.evreq.limit ? req->u.evreq.limit : AMB_MAX_EVENTS;
		size_t n = from <= f->n_events ? (size_t)(f->n_events - from + 1) : 0;
		if (n > lim)
			n = lim;
		amb_event *ev = calloc(n ? n : 1, sizeof(*ev));
		assert_non_null(ev);
		for (size_t k = 0; k < n; k++)
			fill_event(&ev[k], from + k);
		amb_msg m = { .kind = AMB_MSG_EVENT_LIST, .id = req->id };
		m.u.events.events = ev;
		m.u.events.n_events = n;
		send_msg(fd, &m);
		free(ev);
		return 0;
	}
	assert_int_equal(req->kind, AMB_MSG_EVENTS_FOLLOW);
	send_kind(fd, AMB_MSG_OK, req->id);
	uint64_t from = req->u.evreq.has_since ? req->u.evreq.since + 1 : f->n_events + 1;
	for (uint64_t s = from; s <= f->n_events + 2; s++) {
		amb_msg m = { .kind = AMB_MSG_EVENT };
		fill_event(&m.u.event, s);
		send_msg(fd, &m);
	}
	if (f->page != 0)
		return 1;
	/* the client has blocked the signal before it sent events-follow, so
	 * it stays pending until the client waits */
	pthread_kill(f->main_th, SIGTERM);
	return 0;
}

static int h_create_delete(fake *f, int fd, const amb_msg *req)
{
	if (req->kind == AMB_MSG_SHADOW_CREATE) {
		amb_shadow sh[4];
		memset(sh, 0, sizeof(sh));
		amb_msg m = { .kind = AMB_MSG_SNAPSHOT_SET, .id = req->id };
		make_uuid(m.u.sset.set, 0x5e, 1);
		for (size_t k = 0; k < f->n_volumes && k < 4; k++) {
			make_uuid(sh[k].id, 0xb0, (unsigned)k);
			memcpy(sh[k].set, m.u.sset.set, sizeof(sh[k].set));
			sh[k].volume = f->volumes[k];
			sh[k].path = "/srv/.s";
			snprintf(sh[k].provider, sizeof(sh[k].provider), "btrfs");
			sh[k].persistent = req->u.create.persistent;
			sh[k].created_ms = 1;
		}
		m.u.sset.shadows = sh;
		m.u.sset.n_shadows = f->n_volumes;
		send_msg(fd, &m);
		return 0;
	}
	if (req->kind == AMB_MSG_SHADOW_DELETE) {
		amb_uuid ids[2];
		make_uuid(ids[0], 0xd0, 1);
		make_uuid(ids[1], 0xd0, 2);
		amb_msg m = { .kind = AMB_MSG_DELETED, .id = req->id };
		m.u.deleted.shadows = ids;
		m.u.deleted.n_shadows = req->u.del.all ? 2 : 1;
		send_msg(fd, &m);
		return 0;
	}
	send_kind(fd, AMB_MSG_OK, req->id);
	return 0;
}

/* ---------------------------------------------------------------- tests */

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

static void test_help(void **state)
{
	(void)state;
	cap c;
	assert_int_equal(cap_run(&c, NULL), CLI_EXIT_USAGE);
	assert_non_null(strstr(c.err, "usage: amber"));
	assert_string_equal(c.out, "");
	cap_free(&c);

	assert_int_equal(cap_run(&c, "--version", NULL), 0);
	assert_int_equal(strncmp(c.out, "amber ", 6), 0);
	cap_free(&c);
	assert_int_equal(cap_run(&c, "list", "writers", "--version", NULL), 0);
	assert_int_equal(strncmp(c.out, "amber ", 6), 0);
	cap_free(&c);

	assert_int_equal(cap_run(&c, "--help", NULL), 0);
	static const char *const sections[] = {
		"NAME", "SYNOPSIS", "COMMANDS", "GLOBAL OPTIONS", "EXIT STATUS", "ENVIRONMENT",
		"AMBER_SOCKET", "EXAMPLES", "--socket PATH", "--json", "--version",
	};
	for (size_t k = 0; k < sizeof(sections) / sizeof(sections[0]); k++)
		if (!strstr(c.out, sections[k]))
			fail_msg("amber --help lacks %s", sections[k]);
	for (size_t k = 0; k < cli_n_cmds; k++)
		assert_non_null(strstr(c.out, cli_cmds[k].synopsis));
	cap_free(&c);

	/* every page: the same text whichever way it is asked for */
	for (size_t k = 0; k < cli_n_cmds; k++) {
		const cli_cmd *cmd = &cli_cmds[k];
		const char *o = cmd->object ? cmd->object : "--help";
		cap a, b, d;
		assert_int_equal(cap_run(&a, "help", cmd->verb, cmd->object, NULL), 0);
		assert_int_equal(cap_run(&b, cmd->verb, o, "--help", NULL), 0);
		assert_int_equal(cap_run(&d, "-h", cmd->verb, cmd->object, NULL), 0);
		assert_string_equal(a.out, b.out);
		assert_string_equal(a.out, d.out);
		static const char *const need[] = {
			"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES",
			"GLOBAL OPTIONS", "AMBER_SOCKET",
		};
		for (size_t n = 0; n < sizeof(need) / sizeof(need[0]); n++)
			if (!strstr(a.out, need[n]))
				fail_msg("page of %s %s lacks %s", cmd->verb,
				         cmd->object ? cmd->object : "", need[n]);
		/* pages fit in 80 columns */
		for (const char *line = a.out; *line;) {
			const char *end = strchr(line, '\n');
			size_t len = end ? (size_t)(end - line) : strlen(line);
			if (len > 80)
				fail_msg("%s: line longer than 80: %.*s", cmd->verb, (int)len,
				         line);
			line += len + (end != NULL);
		}
		cap_free(&a);
		cap_free(&b);
		cap_free(&d);
	}

	/* a verb with several objects gets a summary, one with a single
	 * object that object's page */
	assert_int_equal(cap_run(&c, "list", "--help", NULL), 0);
	assert_non_null(strstr(c.out, "amber list shadowstorage"));
	cap_free(&c);
	cap o;
	assert_int_equal(cap_run(&c, "help", "create", NULL), 0);
	assert_int_equal(cap_run(&o, "help", "create", "shadow", NULL), 0);
	assert_string_equal(c.out, o.out);
	cap_free(&c);
	cap_free(&o);
	assert_int_equal(cap_run(&c, "help", "bogus", NULL), CLI_EXIT_USAGE);
	cap_free(&c);
	assert_int_equal(cap_run(&c, "help", "list", "bogus", NULL), CLI_EXIT_USAGE);
	cap_free(&c);
}

static void test_usage_errors(void **state)
{
	(void)state;
	cap c;
	assert_int_equal(cap_run(&c, "bogus", NULL), CLI_EXIT_USAGE);
	assert_string_equal(c.err, "amber: unknown command 'bogus'\ntry 'amber --help'\n");
	cap_free(&c);
	assert_int_equal(cap_run(&c, "list", NULL), CLI_EXIT_USAGE);
	assert_string_equal(c.err, "amber: list: missing what to list (writers, providers, "
	                           "shadows or shadowstorage)\ntry 'amber list --help'\n");
	cap_free(&c);
	assert_int_equal(cap_run(&c, "list", "shadow", NULL), CLI_EXIT_USAGE);
	assert_non_null(strstr(c.err, "unknown object 'shadow'"));
	cap_free(&c);
	assert_int_equal(cap_run(&c, "--bogus", "list", "writers", NULL), CLI_EXIT_USAGE);
	cap_free(&c);
	assert_int_equal(cap_run(&c, "list", "writers", "--bogus", NULL), CLI_EXIT_USAGE);
	assert_string_equal(c.err, "amber: list writers: unknown option '--bogus'\n"
	                           "try 'amber list writers --help'\n");
	cap_free(&c);
	assert_int_equal(cap_run(&c, "--socket", NULL), CLI_EXIT_USAGE);
	cap_free(&c);
	assert_int_equal(cap_run(&c, "delete", "shadows", NULL), CLI_EXIT_USAGE);
	assert_string_equal(c.out, "");
	cap_free(&c);
	assert_int_equal(cap_run(&c, "create", "shadow", "--persistent", NULL), CLI_EXIT_USAGE);
	assert_string_equal(c.err, "amber: create shadow: no VOLUME given\n"
	                           "try 'amber create shadow --help'\n");
	cap_free(&c);
}

static void test_unreachable(void **state)
{
	(void)state;
	char *dir = scratch_new();
	char sock[4200];
	snprintf(sock, sizeof(sock), "%s/none.sock", dir);
	cap c;
	assert_int_equal(cap_run(&c, "list", "writers", "--socket", sock, NULL), CLI_EXIT_FAILED);
	assert_string_equal(c.out, "");
	assert_non_null(strstr(c.err, sock));
	assert_non_null(strstr(c.err, "--socket"));
	assert_int_equal(strncmp(c.err, "amber: ", 7), 0);
	cap_free(&c);

	/* AMBER_SOCKET when there is no --socket; --socket wins over it */
	setenv("AMBER_SOCKET", sock, 1);
	assert_int_equal(cap_run(&c, "events", NULL), CLI_EXIT_FAILED);
	assert_non_null(strstr(c.err, sock));
	cap_free(&c);
	assert_int_equal(cap_run(&c, "--socket", "/nonexistent/other", "events", NULL),
	                 CLI_EXIT_FAILED);
	assert_non_null(strstr(c.err, "/nonexistent/other"));
	cap_free(&c);
	unsetenv("AMBER_SOCKET");
	scratch_free(dir);
}

static void test_error_answers(void **state)
{
	(void)state;
	fake f;
	cap c;
	fake_start(&f, h_errors);
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "list", "writers", NULL), 1);
	assert_string_equal(c.err, "amber: permission denied\n");
	assert_int_equal(f.role, AMB_ROLE_ADMIN);
	cap_free(&c);
	fake_stop(&f);

	fake_start(&f, h_errors);
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "create", "shadow", f.dir, "--socket", f.sock, NULL), 3);
	assert_string_equal(c.err, "amber: busy\n");
	assert_string_equal(c.out, "");
	assert_int_equal(f.role, AMB_ROLE_REQUESTOR);
	cap_free(&c);
	fake_stop(&f);

	fake_start(&f, h_errors);
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "delete", "shadows", "--all", "--socket", f.sock, NULL), 2);
	assert_string_equal(c.err, "amber: no shadow matches x\n");
	cap_free(&c);
	fake_stop(&f);

	fake_start(&f, h_errors);
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "list", "providers", NULL), 3);
	assert_string_equal(c.err, "amber: writer timed out (timeout)\n");
	cap_free(&c);
	fake_stop(&f);
}

static void test_list_shadows_pages(void **state)
{
	(void)state;
	fake f;
	cap c;
	fake_start(&f, h_shadows);
	f.n_shadows = 7;
	f.page = 3;
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "list", "shadows", NULL), 0);
	assert_int_equal(f.n_reqs, 3);
	assert_int_equal(f.offsets[0], 0);
	assert_int_equal(f.offsets[1], 3);
	assert_int_equal(f.offsets[2], 6);
	/* shadows 0,2,4,6 are in sets 0,0,1,2; 1,3,5 in set 99, across pages */
	assert_int_equal(count_lines(c.out), 4 * 2 + 7 * 5 + 3);
	const char *s99 = strstr(c.out, "00000063}\n   Contained 3 shadow copies");
	assert_non_null(s99);
	assert_non_null(strstr(c.out, "00000000}\n   Contained 2 shadow copies"));
	assert_string_equal(c.err, "");
	cap_free(&c);
	fake_stop(&f);

	fake_start(&f, h_shadows);
	f.n_shadows = 5;
	f.page = 2;
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "list", "shadows", "--json", NULL), 0);
	json_error_t je;
	json_t *a = json_loads(c.out, 0, &je);
	assert_non_null(a);
	assert_int_equal(json_array_size(a), 5);
	json_decref(a);
	cap_free(&c);
	fake_stop(&f);

	fake_start(&f, h_shadows);
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "list", "shadows", NULL), 0);
	assert_string_equal(c.out, "No items found that satisfy the query.\n");
	assert_int_equal(f.n_reqs, 1);
	cap_free(&c);
	fake_stop(&f);
}

static void test_events_pages(void **state)
{
	(void)state;
	fake f;
	cap c;
	fake_start(&f, h_events);
	f.n_events = 2500;
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "events", NULL), 0);
	assert_int_equal(count_lines(c.out), 2500);
	assert_int_equal(f.n_reqs, 3);
	assert_false(f.has_since[0]);
	assert_true(f.has_since[1]);
	assert_int_equal(f.sinces[1], 1024);
	assert_int_equal(f.sinces[2], 2048);
	cap_free(&c);
	fake_stop(&f);

	fake_start(&f, h_events);
	f.n_events = 2500;
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "events", "--since", "10", "-n",
	                         "1500", "--json", NULL), 0);
	assert_int_equal(count_lines(c.out), 1500);
	assert_int_equal(f.n_reqs, 2);
	assert_int_equal(f.sinces[0], 10);
	assert_int_equal(f.limits[0], 1024);
	assert_int_equal(f.limits[1], 1500 - 1024);
	assert_int_equal(strncmp(c.out, "{\"seq\":11,", 10), 0);
	cap_free(&c);
	fake_stop(&f);
}

static void test_events_follow(void **state)
{
	(void)state;
	fake f;
	cap c;
	/* backlog after --since, then follow from the last one; amberd closes */
	fake_start(&f, h_events);
	f.n_events = 5;
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "events", "--follow", "--since", "3",
	                         NULL), CLI_EXIT_FAILED);
	assert_int_equal(f.n_reqs, 2);
	assert_int_equal(f.kinds[1], AMB_MSG_EVENTS_FOLLOW);
	assert_true(f.has_since[1]);
	assert_int_equal(f.sinces[1], 5);
	assert_int_equal(count_lines(c.out), 4);       /* 4, 5 listed; 6, 7 followed */
	assert_non_null(strstr(c.err, "amberd closed the connection"));
	cap_free(&c);
	fake_stop(&f);

	/* without --since only new events; --limit ends it with 0 */
	fake_start(&f, h_events);
	f.n_events = 5;
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "events", "-f", "-n", "1", NULL), 0);
	assert_int_equal(f.n_reqs, 1);
	assert_false(f.has_since[0]);
	assert_int_equal(count_lines(c.out), 1);
	assert_non_null(strstr(c.out, "  6  3001  "));
	cap_free(&c);
	fake_stop(&f);

	/* SIGTERM ends it with 0 */
	fake_start(&f, h_events);
	f.n_events = 5;
	f.page = 0;
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "events", "-f", "--json", NULL), 0);
	assert_int_equal(count_lines(c.out), 2);
	assert_string_equal(c.err, "");
	cap_free(&c);
	fake_stop(&f);
}

static void test_create_delete(void **state)
{
	(void)state;
	fake f;
	cap c;
	fake_start(&f, h_create_delete);
	char a[4300], link[4300];
	snprintf(a, sizeof(a), "%s/a", f.dir);
	snprintf(link, sizeof(link), "%s/l", f.dir);
	assert_int_equal(mkdir(a, 0700), 0);
	assert_int_equal(symlink("a", link), 0);
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "create", "shadow", link, f.dir,
	                         "--persistent", NULL), 0);
	assert_int_equal(f.n_volumes, 2);
	assert_string_equal(f.volumes[0], a);
	assert_string_equal(f.volumes[1], f.dir);
	assert_string_equal(c.out, "000000b0-0000-4000-8000-000000000000\n"
	                           "000000b0-0000-4000-8000-000000000001\n");
	assert_int_equal(count_lines(c.err), 2);
	assert_non_null(strstr(c.err, "created shadow 000000b0-0000-4000-8000-000000000000 of "));
	assert_non_null(strstr(c.err, " (provider btrfs)\n"));
	cap_free(&c);
	fake_stop(&f);

	fake_start(&f, h_create_delete);
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "create", "shadow", f.dir, "-q",
	                         "--json", NULL), 0);
	assert_string_equal(c.err, "");
	json_error_t je;
	json_t *set = json_loads(c.out, 0, &je);
	assert_non_null(set);
	assert_int_equal(json_array_size(json_object_get(set, "shadows")), 1);
	json_decref(set);
	cap_free(&c);
	fake_stop(&f);

	fake_start(&f, h_create_delete);
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "delete", "shadows", "--all", NULL), 0);
	assert_true(f.del.all);
	assert_string_equal(c.out, "000000d0-0000-4000-8000-000000000001\n"
	                           "000000d0-0000-4000-8000-000000000002\n");
	assert_string_equal(c.err, "deleted 2 shadow copies\n");
	assert_int_equal(f.role, AMB_ROLE_REQUESTOR);
	cap_free(&c);
	fake_stop(&f);

	fake_start(&f, h_create_delete);
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "delete", "shadows", "--set",
	                         "{5C8E0D1A-0000-4000-8000-000000000001}", "--json", NULL), 0);
	assert_false(f.del.all);
	assert_string_equal(f.del.set, "5c8e0d1a-0000-4000-8000-000000000001");
	assert_string_equal(c.out, "{\n  \"deleted\": [\n"
	                           "    \"000000d0-0000-4000-8000-000000000001\"\n  ]\n}\n");
	assert_string_equal(c.err, "deleted 1 shadow copy\n");
	cap_free(&c);
	fake_stop(&f);

	fake_start(&f, h_create_delete);
	fake_serve(&f);
	assert_int_equal(cap_run(&c, "--socket", f.sock, "unexpose", "/mnt//x/", NULL), 0);
	assert_int_equal(f.kinds[0], AMB_MSG_SHADOW_UNEXPOSE);
	assert_string_equal(c.err, "unexposed /mnt/x\n");
	assert_string_equal(c.out, "");
	cap_free(&c);
	fake_stop(&f);
}

int main(void)
{
	/* a closed test socket must not kill the test */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_error_answers),
		cmocka_unit_test(test_list_shadows_pages),
		cmocka_unit_test(test_events_pages),
		cmocka_unit_test(test_events_follow),
		cmocka_unit_test(test_create_delete),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_amberd_protocol.c - a live amberd against malformed and hostile
 * protocol use (issue 3: "malformed and hostile protocol messages,
 * oversize messages, unknown writers").  No root needed: amberd runs as a
 * child on a socket in a temporary directory, with max_message 4096.
 *
 * Each test opens raw connections and checks amberd's answer and whether
 * the connection stays usable, then that amberd still serves a fresh
 * client (it never dies of what a client sends).
 *
 *   argv[1]: the amberd executable
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "amber/client.h"
#include "amber/proto.h"

static const char *amberd_bin;
static char dir[256];
static char sock_path[300];
static pid_t amberd_pid;

static int raw_connect(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	struct timeval tv = {10, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void send_json(int fd, const char *json)
{
	assert_int_equal(amb_frame_write(fd, json, strlen(json)), 0);
}

/* Read one message; returns its kind (AMB_MSG_NONE at EOF). */
static amb_msg_kind recv_msg(int fd, amb_msg *m)
{
	char *buf;
	size_t len;
	memset(m, 0, sizeof(*m));
	int rc = amb_frame_read(fd, 0, &buf, &len);
	if (rc == AMB_FRAME_EOF || rc == -ECONNRESET)
		return AMB_MSG_NONE;
	assert_int_equal(rc, 0);
	char err[256];
	rc = amb_msg_decode(buf, len, m, err, sizeof(err));
	if (rc)
		fail_msg("amberd sent a message its own decoder refuses: %s: %s", err, buf);
	free(buf);
	return m->kind;
}

static void expect_error(int fd, amb_exit_class ex, const char *needle)
{
	amb_msg m;
	assert_int_equal(recv_msg(fd, &m), AMB_MSG_ERROR);
	assert_int_equal(m.u.error.exit, ex);
	if (needle && !strstr(m.u.error.message, needle))
		fail_msg("error '%s' lacks '%s'", m.u.error.message, needle);
	amb_msg_free(&m);
}

static void expect_closed(int fd)
{
	amb_msg m;
	assert_int_equal(recv_msg(fd, &m), AMB_MSG_NONE);
}

static int hello(const char *role)
{
	int fd = raw_connect();
	char j[256];
	snprintf(j, sizeof(j),
		 "{\"kind\":\"hello\",\"id\":1,\"version\":1,\"role\":\"%s\",\"name\":\"t\","
		 "\"pid\":%d}",
		 role, (int)getpid());
	send_json(fd, j);
	amb_msg m;
	assert_int_equal(recv_msg(fd, &m), AMB_MSG_WELCOME);
	assert_int_equal(m.u.welcome.max_message, 4096);
	assert_int_equal(m.u.welcome.hold_ms, 1500);
	amb_msg_free(&m);
	return fd;
}

/* amberd still serves a well-behaved client */
static void still_alive(void)
{
	amb_client *c;
	assert_int_equal(amb_client_connect(sock_path, AMB_ROLE_ADMIN, "t", &c), 0);
	amb_msg m;
	assert_int_equal(amb_req_list_providers(c, &m), 0);
	assert_int_equal(m.u.providers.n_providers, 3);
	amb_msg_free(&m);
	amb_client_close(c);
	assert_int_equal(waitpid(amberd_pid, NULL, WNOHANG), 0);
}

static int setup(void **st)
{
	(void)st;
	snprintf(dir, sizeof(dir), "/tmp/amberd-proto.XXXXXX");
	assert_non_null(mkdtemp(dir));
	char conf[300];
	snprintf(conf, sizeof(conf), "%s/amberd.conf", dir);
	FILE *f = fopen(conf, "w");
	assert_non_null(f);
	fprintf(f, "[amberd]\nhold_ms = 1500\nevent_timeout_ms = 2000\nmax_message = 4096\n"
		   "journald = no\n");
	fclose(f);
	snprintf(sock_path, sizeof(sock_path), "%s/sock", dir);
	char state[300], log[300];
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(log, sizeof(log), "%s/amberd.log", dir);
	amberd_pid = fork();
	assert_true(amberd_pid >= 0);
	if (amberd_pid == 0) {
		int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (lfd >= 0) {
			dup2(lfd, 2);
			dup2(lfd, 1);
		}
		execl(amberd_bin, "amberd", "--foreground", "--config", conf, "--socket", sock_path,
		      "--state-dir", state, (char *)NULL);
		_exit(127);
	}
	/* The socket file exists from bind(), before listen(): a connect then
	 * is refused.  Wait (up to 30 s: a loaded machine, ASan) until a real
	 * connect succeeds; the probe connection is closed without a word. */
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock_path);
	for (int i = 0; i < 1200; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
		close(fd);
		if (rc == 0)
			return 0;
		if (waitpid(amberd_pid, NULL, WNOHANG) == amberd_pid)
			fail_msg("amberd exited at start (see %s)", log);
		usleep(25000);
	}
	fail_msg("amberd did not accept connections within 30 s");
	return -1;
}

static int teardown(void **st)
{
	(void)st;
	kill(amberd_pid, SIGTERM);
	int status;
	waitpid(amberd_pid, &status, 0);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return -1;
	/* amberd stops cleanly on SIGTERM */
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void test_first_message_not_hello(void **st)
{
	(void)st;
	int fd = raw_connect();
	send_json(fd, "{\"kind\":\"list-providers\",\"id\":1}");
	expect_error(fd, AMB_EXIT_BAD_INPUT, "hello");
	expect_closed(fd);
	close(fd);
	still_alive();
}

static void test_version_mismatch(void **st)
{
	(void)st;
	int fd = raw_connect();
	send_json(fd, "{\"kind\":\"hello\",\"id\":1,\"version\":9,\"min_version\":7,"
		      "\"role\":\"admin\",\"name\":\"t\",\"pid\":1}");
	expect_error(fd, AMB_EXIT_BAD_INPUT, "no common protocol version");
	expect_closed(fd);
	close(fd);
	still_alive();
}

static void test_oversize_frame(void **st)
{
	(void)st;
	int fd = hello("admin");
	unsigned char hdr[4] = {0, 0, 0x13, 0x88}; /* 5000 > 4096 */
	assert_int_equal(write(fd, hdr, 4), 4);
	expect_error(fd, AMB_EXIT_BAD_INPUT, "larger than the limit");
	expect_closed(fd);
	close(fd);
	/* before the handshake too */
	fd = raw_connect();
	unsigned char huge[4] = {0xff, 0xff, 0xff, 0xff};
	assert_int_equal(write(fd, huge, 4), 4);
	expect_error(fd, AMB_EXIT_BAD_INPUT, "larger than the limit");
	expect_closed(fd);
	close(fd);
	still_alive();
}

static void test_empty_and_cut_frames(void **st)
{
	(void)st;
	int fd = hello("admin");
	unsigned char zero[4] = {0, 0, 0, 0};
	assert_int_equal(write(fd, zero, 4), 4);
	expect_error(fd, AMB_EXIT_BAD_INPUT, "empty");
	expect_closed(fd);
	close(fd);
	fd = hello("admin");
	unsigned char part[6] = {0, 0, 0, 100, '{', '"'};
	assert_int_equal(write(fd, part, 6), 6);
	shutdown(fd, SHUT_WR);
	expect_error(fd, AMB_EXIT_BAD_INPUT, "cut short");
	close(fd);
	still_alive();
}

static void test_malformed_json_keeps_connection(void **st)
{
	(void)st;
	int fd = hello("admin");
	send_json(fd, "{\"kind\":\"list-providers\",\"id\":2");            /* truncated */
	expect_error(fd, AMB_EXIT_BAD_INPUT, NULL);
	send_json(fd, "{\"kind\":\"list-providers\",\"id\":3,\"evil\":1}"); /* unknown field */
	amb_msg m;
	assert_int_equal(recv_msg(fd, &m), AMB_MSG_ERROR);
	assert_int_equal(m.id, 3);
	assert_non_null(m.u.error.field);
	assert_string_equal(m.u.error.field, "evil");
	amb_msg_free(&m);
	send_json(fd, "{\"kind\":\"bogus\",\"id\":4}");
	expect_error(fd, AMB_EXIT_BAD_INPUT, "unknown message kind");
	send_json(fd, "[1,2,3]");
	expect_error(fd, AMB_EXIT_BAD_INPUT, NULL);
	send_json(fd, "{\"kind\":\"list-providers\",\"id\":5}");
	assert_int_equal(recv_msg(fd, &m), AMB_MSG_PROVIDER_LIST);
	assert_int_equal(m.id, 5);
	amb_msg_free(&m);
	close(fd);
	still_alive();
}

static void test_role_and_permission_rules(void **st)
{
	(void)st;
	int fd = hello("admin");
	send_json(fd, "{\"kind\":\"session-open\",\"id\":2,\"mode\":\"backup\","
		      "\"backup_type\":\"full\"}");
	expect_error(fd, AMB_EXIT_BAD_INPUT, "not allowed for the admin role");
	close(fd);
	fd = hello("writer");
	send_json(fd, "{\"kind\":\"shadow-delete\",\"id\":2,\"all\":true}");
	expect_error(fd, AMB_EXIT_BAD_INPUT, "not a writer request");
	send_json(fd, "{\"kind\":\"reply\",\"id\":7,\"event\":\"freeze\",\"status\":\"ok\"}");
	expect_error(fd, AMB_EXIT_BAD_INPUT, "reply before register");
	close(fd);
	still_alive();
}

static void test_sessions_unknown_things(void **st)
{
	(void)st;
	amb_client *c;
	assert_int_equal(amb_client_connect(sock_path, AMB_ROLE_REQUESTOR, "t", &c), 0);
	amb_session_open o = {.mode = AMB_SESSION_BACKUP, .backup_type = AMB_BACKUP_FULL};
	amb_session_ref ref;
	assert_int_equal(amb_req_session_open(c, &o, &ref), 0);
	/* an unknown writer */
	assert_int_equal(amb_req_select(c, ref.session, "no-such-writer", NULL, AMB_SELECT_VERIFY),
			 AMB_EXIT_BAD_INPUT);
	assert_non_null(strstr(amb_client_errmsg(c), "not registered"));
	/* snapshot before gather */
	amb_msg m;
	assert_int_equal(amb_req_snapshot(c, ref.session, &m), AMB_EXIT_BAD_INPUT);
	assert_non_null(strstr(amb_client_errmsg(c), "before session-gather"));
	/* a session id that is not this connection's */
	assert_int_equal(amb_req_close(c, "01234567-89ab-4cde-8f01-23456789abcd"),
			 AMB_EXIT_BAD_INPUT);
	/* a volume that does not exist */
	assert_int_equal(amb_req_add_volume(c, ref.session, "/nonexistent/volume", NULL),
			 AMB_EXIT_BAD_INPUT);
	/* a second session on the same connection */
	amb_session_ref ref2;
	assert_int_equal(amb_req_session_open(c, &o, &ref2), AMB_EXIT_BAD_INPUT);
	assert_int_equal(amb_req_close(c, ref.session), 0);
	/* unknown shadow */
	amb_shadow_delete d = {0};
	snprintf(d.shadow, sizeof(d.shadow), "01234567-89ab-4cde-8f01-23456789abcd");
	assert_int_equal(amb_req_shadow_delete(c, &d, &m), AMB_EXIT_BAD_INPUT);
	assert_int_equal(amb_req_shadow_unexpose(c, "/not/exposed"), AMB_EXIT_BAD_INPUT);
	amb_client_close(c);
	still_alive();
}

static void test_events_logged(void **st)
{
	(void)st;
	amb_client *c;
	assert_int_equal(amb_client_connect(sock_path, AMB_ROLE_ADMIN, "t", &c), 0);
	amb_msg m;
	assert_int_equal(amb_req_events_list(c, false, 0, 0, &m), 0);
	bool started = false, too_large = false, proto = false, version = false;
	for (size_t i = 0; i < m.u.events.n_events; i++) {
		uint32_t code = m.u.events.events[i].code;
		started |= code == AMB_EV_DAEMON_STARTED;
		too_large |= code == AMB_EV_MESSAGE_TOO_LARGE;
		proto |= code == AMB_EV_PROTOCOL_ERROR;
		version |= code == AMB_EV_VERSION_MISMATCH;
		if (i)
			assert_true(m.u.events.events[i].seq > m.u.events.events[i - 1].seq);
	}
	assert_true(started);
	assert_true(too_large);
	assert_true(proto);
	assert_true(version);
	amb_msg_free(&m);
	amb_client_close(c);
}

/* Many half-open connections that never speak do not stop others. */
static void test_silent_connections(void **st)
{
	(void)st;
	int fds[32];
	for (int i = 0; i < 32; i++)
		fds[i] = raw_connect();
	still_alive();
	for (int i = 0; i < 32; i++)
		close(fds[i]);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: test_amberd_protocol AMBERD\n");
		return 2;
	}
	amberd_bin = argv[1];
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_message_not_hello),
		cmocka_unit_test(test_version_mismatch),
		cmocka_unit_test(test_oversize_frame),
		cmocka_unit_test(test_empty_and_cut_frames),
		cmocka_unit_test(test_malformed_json_keeps_connection),
		cmocka_unit_test(test_role_and_permission_rules),
		cmocka_unit_test(test_sessions_unknown_things),
		cmocka_unit_test(test_silent_connections),
		cmocka_unit_test(test_events_logged),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

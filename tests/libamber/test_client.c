/*
 * test_client.c - unit tests of src/libamber/client.c (client.h) against a
 * fake amberd running a scripted conversation in a thread of the test.
 *
 * What must hold:
 *   - connect sends hello (role, name, our pid) and keeps welcome;
 *   - requests are numbered 1 (hello), 2, 3, ...; answers are matched by
 *     id; the convenience calls send the right fields and check the kind
 *     of the answer (a wrong kind is -EPROTO);
 *   - an "error" answer returns its exit class (1/2/3), with amberd's
 *     message and failure class kept; the connection stays usable; an
 *     id-less error answers the outstanding request;
 *   - events arriving during a call are queued in order and handed out by
 *     amb_client_next_event() before anything read later; a timeout gives
 *     0, amberd closing gives -ECONNRESET, and it stays that way;
 *   - a missing socket or one nobody listens on is -ENOENT/-ECONNREFUSED
 *     with a message naming the path; an "error" answer to hello is its
 *     exit class with the message in amb_client_last_error();
 *   - bad arguments are -EINVAL before anything is sent;
 *   - a response with an unexpected id breaks the connection for good.
 * The server thread never asserts: it records the first thing that went
 * wrong in st->fail, which the main thread checks after joining it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "amber/client.h"
#include "amber/writer.h"
#include "fake_amberd.h"

#define SESSION "11111111-2222-4333-8444-555555555555"
#define SET "66666666-7777-4888-9999-aaaaaaaaaaaa"
#define SHADOW "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff"

typedef struct srv_thread srv_thread;
struct srv_thread {
	fake_srv srv;
	int (*script)(srv_thread *st, int fd);
	pthread_t t;
	char fail[512];
	sem_t go;                 /* lets a script wait for the main thread */
};

#define SRV_CHECK(st, cond)                                                          \
	do {                                                                         \
		if (!(cond)) {                                                       \
			snprintf((st)->fail, sizeof((st)->fail), "%s:%d: %s", __FILE__, \
				 __LINE__, #cond);                                   \
			return -1;                                                   \
		}                                                                    \
	} while (0)

static void *srv_main(void *p)
{
	srv_thread *st = p;
	int fd = fake_accept(&st->srv, FAKE_TIMEOUT_MS);
	if (fd < 0) {
		snprintf(st->fail, sizeof(st->fail), "accept: %s", strerror(-fd));
		return NULL;
	}
	st->script(st, fd);
	close(fd);
	return NULL;
}

static void srv_start(srv_thread *st, int (*script)(srv_thread *, int))
{
	memset(st, 0, sizeof(*st));
	assert_int_equal(fake_listen(&st->srv), 0);
	st->script = script;
	assert_int_equal(sem_init(&st->go, 0, 0), 0);
	assert_int_equal(pthread_create(&st->t, NULL, srv_main, st), 0);
}

static void srv_join(srv_thread *st)
{
	pthread_join(st->t, NULL);
	sem_destroy(&st->go);
	fake_cleanup(&st->srv);
	if (st->fail[0])
		fail_msg("fake amberd: %s", st->fail);
}

/* Receive a request of kind k; returns its id or -1. */
static int64_t srv_expect(srv_thread *st, int fd, amb_msg_kind k, amb_msg *m)
{
	int rc = fake_recv(fd, FAKE_TIMEOUT_MS, m);
	if (rc) {
		snprintf(st->fail, sizeof(st->fail), "expected %s, got rc %d",
			 amb_msg_kind_name(k), rc);
		return -1;
	}
	if (m->kind != k) {
		snprintf(st->fail, sizeof(st->fail), "expected %s, got %s", amb_msg_kind_name(k),
			 amb_msg_kind_name(m->kind));
		amb_msg_free(m);
		return -1;
	}
	return (int64_t)m->id;
}

static int srv_ok(int fd, uint64_t id)
{
	amb_msg ok = { .kind = AMB_MSG_OK, .id = id };
	return fake_send(fd, &ok);
}

static int srv_event(int fd, uint64_t seq)
{
	amb_msg ev = { .kind = AMB_MSG_EVENT };
	ev.u.event.seq = seq;
	ev.u.event.time_ms = 1700000000000 + seq;
	ev.u.event.code = AMB_EV_WRITER_REGISTERED;
	ev.u.event.severity = AMB_SEV_INFO;
	ev.u.event.message = "writer test-writer registered";
	snprintf(ev.u.event.writer, sizeof(ev.u.event.writer), "test-writer");
	return fake_send(fd, &ev);
}

/* wait for the client to close */
static int srv_eof(srv_thread *st, int fd)
{
	amb_msg m;
	int rc = fake_recv(fd, FAKE_TIMEOUT_MS, &m);
	amb_msg_free(&m);
	SRV_CHECK(st, rc == AMB_FRAME_EOF);
	return 0;
}

/* ------------------------------------------------------------------------ */

static int s_welcome_list(srv_thread *st, int fd)
{
	amb_msg h;
	SRV_CHECK(st, fake_welcome(fd, &h) == 0);
	bool hello_ok = h.id == 1 && h.u.hello.role == AMB_ROLE_ADMIN &&
			strcmp(h.u.hello.name, "test-client") == 0 &&
			h.u.hello.pid == (int32_t)getpid() && h.u.hello.version == AMB_PROTO_VERSION;
	amb_msg_free(&h);
	SRV_CHECK(st, hello_ok);
	amb_msg m;
	int64_t id = srv_expect(st, fd, AMB_MSG_LIST_WRITERS, &m);
	SRV_CHECK(st, id == 2);
	amb_msg_free(&m);
	amb_msg wl = { .kind = AMB_MSG_WRITER_LIST, .id = 2 };
	SRV_CHECK(st, fake_send(fd, &wl) == 0);
	return srv_eof(st, fd);
}

static void test_connect_welcome(void **state)
{
	(void)state;
	srv_thread st;
	srv_start(&st, s_welcome_list);
	amb_client *c;
	int rc = amb_client_connect(st.srv.path, AMB_ROLE_ADMIN, "test-client", &c);
	assert_int_equal(rc, 0);
	assert_string_equal(amb_client_last_error(), "");
	const amb_welcome *wl = amb_client_welcome(c);
	assert_int_equal(wl->version, AMB_PROTO_VERSION);
	assert_string_equal(wl->server, "amberd");
	assert_int_equal(wl->max_message, FAKE_MAX_MESSAGE);
	assert_int_equal(wl->hold_ms, 10000);
	assert_true(amb_client_fd(c) >= 0);
	amb_msg out;
	assert_int_equal(amb_req_list_writers(c, &out), 0);
	assert_int_equal(out.kind, AMB_MSG_WRITER_LIST);
	assert_int_equal(out.u.writers.n_writers, 0);
	assert_string_equal(amb_client_errmsg(c), "");
	amb_msg_free(&out);
	amb_client_close(c);
	srv_join(&st);
}

/* ------------------------------------------------------------------------ */

static int s_errors(srv_thread *st, int fd)
{
	SRV_CHECK(st, fake_welcome(fd, NULL) == 0);
	amb_msg m;
	/* 1: session-open refused with "busy" */
	int64_t id = srv_expect(st, fd, AMB_MSG_SESSION_OPEN, &m);
	SRV_CHECK(st, id == 2);
	bool fields = m.u.sopen.mode == AMB_SESSION_BACKUP &&
		      m.u.sopen.backup_type == AMB_BACKUP_FULL && m.u.sopen.persistent;
	amb_msg_free(&m);
	SRV_CHECK(st, fields);
	amb_msg err = { .kind = AMB_MSG_ERROR, .id = 2 };
	err.u.error.exit = AMB_EXIT_RETRYABLE;
	err.u.error.cls = AMB_FAIL_TIMEOUT;
	err.u.error.message = "busy: another shadow set is being created";
	SRV_CHECK(st, fake_send(fd, &err) == 0);
	/* 2: accepted */
	id = srv_expect(st, fd, AMB_MSG_SESSION_OPEN, &m);
	SRV_CHECK(st, id == 3);
	amb_msg_free(&m);
	amb_msg ses = { .kind = AMB_MSG_SESSION, .id = 3 };
	memcpy(ses.u.sref.session, SESSION, AMB_UUID_BUF);
	memcpy(ses.u.sref.set, SET, AMB_UUID_BUF);
	SRV_CHECK(st, fake_send(fd, &ses) == 0);
	/* 3: a wrong kind of answer */
	id = srv_expect(st, fd, AMB_MSG_SESSION_GATHER, &m);
	SRV_CHECK(st, id == 4);
	amb_msg_free(&m);
	SRV_CHECK(st, srv_ok(fd, 4) == 0);
	/* 4: an error without id answers the outstanding request */
	id = srv_expect(st, fd, AMB_MSG_LIST_PROVIDERS, &m);
	SRV_CHECK(st, id == 5);
	amb_msg_free(&m);
	amb_msg err2 = { .kind = AMB_MSG_ERROR };
	err2.u.error.exit = AMB_EXIT_BAD_INPUT;
	err2.u.error.message = "json: end of file expected";
	SRV_CHECK(st, fake_send(fd, &err2) == 0);
	return srv_eof(st, fd);
}

static void test_error_answers(void **state)
{
	(void)state;
	srv_thread st;
	srv_start(&st, s_errors);
	amb_client *c;
	assert_int_equal(amb_client_connect(st.srv.path, AMB_ROLE_REQUESTOR, "test-client", &c), 0);
	amb_session_open so = { .mode = AMB_SESSION_BACKUP, .backup_type = AMB_BACKUP_FULL,
				.persistent = true };
	amb_session_ref ref;
	assert_int_equal(amb_req_session_open(c, &so, &ref), AMB_EXIT_RETRYABLE);
	assert_string_equal(amb_client_errmsg(c), "busy: another shadow set is being created");
	assert_int_equal(amb_client_errclass(c), AMB_FAIL_TIMEOUT);
	assert_string_equal(ref.session, "");

	assert_int_equal(amb_req_session_open(c, &so, &ref), 0);
	assert_string_equal(amb_client_errmsg(c), "");
	assert_int_equal(amb_client_errclass(c), AMB_FAIL_NONE);
	assert_string_equal(ref.session, SESSION);
	assert_string_equal(ref.set, SET);

	amb_msg out;
	assert_int_equal(amb_req_gather(c, SESSION, &out), -EPROTO);
	assert_int_equal(out.kind, AMB_MSG_NONE);
	assert_non_null(strstr(amb_client_errmsg(c), "instead of writer-list"));

	assert_int_equal(amb_req_list_providers(c, &out), AMB_EXIT_BAD_INPUT);
	assert_string_equal(amb_client_errmsg(c), "json: end of file expected");
	assert_int_equal(amb_client_errclass(c), AMB_FAIL_NONE);
	assert_int_equal(out.kind, AMB_MSG_NONE);
	amb_client_close(c);
	srv_join(&st);
}

/* ------------------------------------------------------------------------ */

static int s_events(srv_thread *st, int fd)
{
	SRV_CHECK(st, fake_welcome(fd, NULL) == 0);
	amb_msg m;
	int64_t id = srv_expect(st, fd, AMB_MSG_EVENTS_FOLLOW, &m);
	SRV_CHECK(st, id == 2);
	bool since = m.u.evreq.has_since && m.u.evreq.since == 7;
	amb_msg_free(&m);
	SRV_CHECK(st, since);
	SRV_CHECK(st, srv_event(fd, 8) == 0);
	SRV_CHECK(st, srv_event(fd, 9) == 0);
	SRV_CHECK(st, srv_ok(fd, 2) == 0);
	id = srv_expect(st, fd, AMB_MSG_LIST_PROVIDERS, &m);
	SRV_CHECK(st, id == 3);
	amb_msg_free(&m);
	SRV_CHECK(st, srv_event(fd, 10) == 0);
	amb_provider_info prov = { .name = "btrfs", .holds_writes = false };
	amb_msg pl = { .kind = AMB_MSG_PROVIDER_LIST, .id = 3 };
	pl.u.providers.providers = &prov;
	pl.u.providers.n_providers = 1;
	SRV_CHECK(st, fake_send(fd, &pl) == 0);
	/* the main thread checks that nothing more is there, then lets us go */
	sem_wait(&st->go);
	SRV_CHECK(st, srv_event(fd, 11) == 0);
	return 0;   /* and close */
}

static void test_events_queued(void **state)
{
	(void)state;
	srv_thread st;
	srv_start(&st, s_events);
	amb_client *c;
	assert_int_equal(amb_client_connect(st.srv.path, AMB_ROLE_ADMIN, "test-client", &c), 0);
	assert_int_equal(amb_req_events_follow(c, true, 7), 0);
	amb_msg out;
	assert_int_equal(amb_req_list_providers(c, &out), 0);
	assert_int_equal(out.u.providers.n_providers, 1);
	assert_string_equal(out.u.providers.providers[0].name, "btrfs");
	amb_msg_free(&out);

	amb_msg ev;
	for (uint64_t seq = 8; seq <= 10; seq++) {
		assert_int_equal(amb_client_next_event(c, 0, &ev), 1);
		assert_int_equal(ev.kind, AMB_MSG_EVENT);
		assert_int_equal(ev.u.event.seq, seq);
		assert_string_equal(ev.u.event.writer, "test-writer");
		amb_msg_free(&ev);
	}
	assert_int_equal(amb_client_next_event(c, 0, &ev), 0);
	sem_post(&st.go);
	assert_int_equal(amb_client_next_event(c, -1, &ev), 1);
	assert_int_equal(ev.u.event.seq, 11);
	amb_msg_free(&ev);
	assert_int_equal(amb_client_next_event(c, -1, &ev), -ECONNRESET);
	assert_non_null(strstr(amb_client_errmsg(c), "closed the connection"));
	assert_int_equal(amb_client_next_event(c, -1, &ev), -ECONNRESET);
	assert_int_equal(amb_req_list_writers(c, &out), -ECONNRESET);
	amb_client_close(c);
	srv_join(&st);
}

/* ------------------------------------------------------------------------ */

static void test_connect_missing(void **state)
{
	(void)state;
	fake_srv s;
	assert_int_equal(fake_listen(&s), 0);
	fake_unlisten(&s);
	amb_client *c = (amb_client *)1;
	int rc = amb_client_connect(s.path, AMB_ROLE_ADMIN, "test-client", &c);
	assert_int_equal(rc, -ENOENT);
	assert_null(c);
	char want[512];
	snprintf(want, sizeof(want),
		 "cannot connect to amberd at %s: No such file or directory (is amberd running?)",
		 s.path);
	assert_string_equal(amb_client_last_error(), want);

	/* a socket file nobody listens on */
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s.path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	rc = amb_client_connect(s.path, AMB_ROLE_ADMIN, "test-client", &c);
	assert_int_equal(rc, -ECONNREFUSED);
	assert_non_null(strstr(amb_client_last_error(), s.path));
	assert_non_null(strstr(amb_client_last_error(), "(is amberd running?)"));
	fake_cleanup(&s);

	/* bad name: nothing is tried */
	rc = amb_client_connect(s.path, AMB_ROLE_ADMIN, "bad name", &c);
	assert_int_equal(rc, -EINVAL);
	assert_non_null(strstr(amb_client_last_error(), "client name"));
}

static int s_refuse_hello(srv_thread *st, int fd)
{
	amb_msg h;
	int64_t id = srv_expect(st, fd, AMB_MSG_HELLO, &h);
	SRV_CHECK(st, id == 1);
	amb_msg_free(&h);
	amb_msg err = { .kind = AMB_MSG_ERROR, .id = 1 };
	err.u.error.exit = AMB_EXIT_FAILED;
	err.u.error.message = "permission denied";
	SRV_CHECK(st, fake_send(fd, &err) == 0);
	return 0;
}

static void test_hello_refused(void **state)
{
	(void)state;
	srv_thread st;
	srv_start(&st, s_refuse_hello);
	amb_client *c = (amb_client *)1;
	int rc = amb_client_connect(st.srv.path, AMB_ROLE_REQUESTOR, "test-client", &c);
	assert_int_equal(rc, AMB_EXIT_FAILED);
	assert_null(c);
	assert_string_equal(amb_client_last_error(), "permission denied");
	srv_join(&st);
}

/* ------------------------------------------------------------------------ */

/* A whole backup session: the requests carry what the calls were given. */
static int s_session(srv_thread *st, int fd)
{
	SRV_CHECK(st, fake_welcome(fd, NULL) == 0);
	amb_msg m;
	/* session-close after the refused arguments: nothing was sent before */
	int64_t id = srv_expect(st, fd, AMB_MSG_SESSION_SELECT, &m);
	SRV_CHECK(st, id == 2);
	bool ok = strcmp(m.u.select.session, SESSION) == 0 &&
		  strcmp(m.u.select.writer, "test-writer") == 0 &&
		  strcmp(m.u.select.component, "main") == 0 &&
		  m.u.select.mode == AMB_SELECT_VERIFY;
	amb_msg_free(&m);
	SRV_CHECK(st, ok);
	SRV_CHECK(st, srv_ok(fd, 2) == 0);

	id = srv_expect(st, fd, AMB_MSG_SESSION_ADD_VOLUME, &m);
	ok = strcmp(m.u.addvol.volume, "/srv") == 0 && m.u.addvol.provider[0] == '\0';
	amb_msg_free(&m);
	SRV_CHECK(st, id == 3 && ok);
	SRV_CHECK(st, srv_ok(fd, 3) == 0);

	id = srv_expect(st, fd, AMB_MSG_SESSION_SNAPSHOT, &m);
	ok = strcmp(m.u.sref.session, SESSION) == 0;
	amb_msg_free(&m);
	SRV_CHECK(st, id == 4 && ok);
	amb_shadow sh = { .volume = "/srv", .path = "/run/amber/shadows/1", .provider = "btrfs",
			  .created_ms = 1700000000000 };
	memcpy(sh.id, SHADOW, AMB_UUID_BUF);
	memcpy(sh.set, SET, AMB_UUID_BUF);
	amb_msg ss = { .kind = AMB_MSG_SNAPSHOT_SET, .id = 4 };
	memcpy(ss.u.sset.set, SET, AMB_UUID_BUF);
	ss.u.sset.shadows = &sh;
	ss.u.sset.n_shadows = 1;
	SRV_CHECK(st, fake_send(fd, &ss) == 0);

	id = srv_expect(st, fd, AMB_MSG_SESSION_BACKUP_COMPLETE, &m);
	ok = m.u.results.n_items == 2 && strcmp(m.u.results.items[1].component, "config") == 0 &&
	     m.u.results.items[0].success && !m.u.results.items[1].success;
	amb_msg_free(&m);
	SRV_CHECK(st, id == 5 && ok);
	SRV_CHECK(st, srv_ok(fd, 5) == 0);

	id = srv_expect(st, fd, AMB_MSG_SESSION_CLOSE, &m);
	ok = strcmp(m.u.sref.session, SESSION) == 0;
	amb_msg_free(&m);
	SRV_CHECK(st, id == 6 && ok);
	SRV_CHECK(st, srv_ok(fd, 6) == 0);

	/* a response with an id that was never asked for */
	id = srv_expect(st, fd, AMB_MSG_LIST_SHADOWS, &m);
	ok = strcmp(m.u.lshadows.set, SET) == 0 && m.u.lshadows.volume == NULL &&
	     m.u.lshadows.offset == 5 && m.u.lshadows.limit == 10;
	amb_msg_free(&m);
	SRV_CHECK(st, id == 7 && ok);
	SRV_CHECK(st, srv_ok(fd, 99) == 0);
	return srv_eof(st, fd);
}

static void test_session_calls(void **state)
{
	(void)state;
	srv_thread st;
	srv_start(&st, s_session);
	amb_client *c;
	assert_int_equal(amb_client_connect(st.srv.path, AMB_ROLE_REQUESTOR, "test-client", &c), 0);

	/* refused arguments: -EINVAL, nothing sent, connection still usable */
	assert_int_equal(amb_req_select(c, "not-a-uuid", "test-writer", NULL, AMB_SELECT_VERIFY),
			 -EINVAL);
	assert_non_null(strstr(amb_client_errmsg(c), "session id"));
	assert_int_equal(amb_req_add_volume(c, SESSION, "srv/rel", NULL), -EINVAL);
	assert_non_null(strstr(amb_client_errmsg(c), "volume"));
	assert_int_equal(amb_req_select(c, SESSION, "bad/writer", NULL, AMB_SELECT_VERIFY),
			 -EINVAL);
	assert_int_equal(amb_req_shadow_expose(c, SHADOW, "/mnt/../x"), -EINVAL);
	amb_msg out;
	assert_int_equal(amb_req_snapshot(c, SESSION "0", &out), -EINVAL);

	assert_int_equal(amb_req_select(c, SESSION, "test-writer", "main", AMB_SELECT_VERIFY), 0);
	assert_int_equal(amb_req_add_volume(c, SESSION, "/srv", ""), 0);
	assert_int_equal(amb_req_snapshot(c, SESSION, &out), 0);
	assert_int_equal(out.kind, AMB_MSG_SNAPSHOT_SET);
	assert_string_equal(out.u.sset.set, SET);
	assert_int_equal(out.u.sset.n_shadows, 1);
	assert_string_equal(out.u.sset.shadows[0].path, "/run/amber/shadows/1");
	amb_msg_free(&out);
	amb_comp_result res[2] = {
		{ .writer = "test-writer", .component = "main", .success = true },
		{ .writer = "test-writer", .component = "config", .success = false },
	};
	assert_int_equal(amb_req_backup_complete(c, SESSION, res, 2), 0);
	assert_int_equal(amb_req_close(c, SESSION), 0);

	assert_int_equal(amb_req_list_shadows(c, SET, NULL, 5, 10, &out), -EPROTO);
	assert_int_equal(out.kind, AMB_MSG_NONE);
	assert_non_null(strstr(amb_client_errmsg(c), "id 99"));
	/* broken for good, same answer without a word on the wire */
	assert_int_equal(amb_req_close(c, SESSION), -EPROTO);
	assert_non_null(strstr(amb_client_errmsg(c), "id 99"));
	amb_client_close(c);
	srv_join(&st);
}

/* ------------------------------------------------------------------------ */

static void test_socket_path(void **state)
{
	(void)state;
	unsetenv("AMBER_SOCKET");
	assert_string_equal(amb_socket_path(NULL), AMB_DEFAULT_SOCKET);
	assert_string_equal(amb_socket_path("/tmp/x.sock"), "/tmp/x.sock");
	setenv("AMBER_SOCKET", "", 1);
	assert_string_equal(amb_socket_path(NULL), AMB_DEFAULT_SOCKET);
	setenv("AMBER_SOCKET", "/tmp/env.sock", 1);
	assert_string_equal(amb_socket_path(NULL), "/tmp/env.sock");
	assert_string_equal(amb_socket_path("/tmp/x.sock"), "/tmp/x.sock");
	unsetenv("AMBER_SOCKET");
}

static void test_uuid(void **state)
{
	(void)state;
	amb_uuid a, b;
	assert_int_equal(amb_uuid_generate(a), 0);
	assert_int_equal(amb_uuid_generate(b), 0);
	assert_int_equal(strlen(a), AMB_UUID_LEN);
	assert_true(amb_proto_uuid_ok(a));
	assert_true(amb_proto_uuid_ok(b));
	assert_int_equal(a[14], '4');
	assert_non_null(strchr("89ab", a[19]));
	assert_string_not_equal(a, b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_welcome),
		cmocka_unit_test(test_error_answers),
		cmocka_unit_test(test_events_queued),
		cmocka_unit_test(test_connect_missing),
		cmocka_unit_test(test_hello_refused),
		cmocka_unit_test(test_session_calls),
		cmocka_unit_test(test_socket_path),
		cmocka_unit_test(test_uuid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

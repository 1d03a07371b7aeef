/*
 * test_writer.c - unit tests of src/libamber/writer.c (writer.h).  The test
 * thread plays amberd (fake_amberd.c) and the library's own thread runs the
 * writer, so the conversation is driven step by step from the test.
 *
 * What must hold:
 *   - the writer connects, says hello (role writer) and registers the
 *     metadata it was given; amb_writer_wait_registered() sees it;
 *   - every event calls its callback, in order, with the event's fields,
 *     and gets one reply: ok, failed with the callback's class and
 *     message, held_writes in post-snapshot, metadata (as refreshed by the
 *     identify callback) in identify;
 *   - events that make no sense in the state are answered ok without a
 *     callback (thaw when not frozen);
 *   - the hold ends exactly once per freeze: by thaw, by abort (before the
 *     abort callback), by the deadline (hold_ms after the freeze, no
 *     earlier), by losing amberd, by amb_writer_stop();
 *   - after a self-thaw, post-snapshot of that session says
 *     held_writes=false even when the callback says true;
 *   - amberd restarting on the same path: the writer comes back and
 *     registers again; amberd absent: one log line, and stop still
 *     returns;
 *   - invalid metadata is refused by amb_writer_start with the field named.
 * No sleeps are used to synchronise: the test waits for replies and for
 * callback records with generous upper bounds.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "amber/client.h"
#include "amber/writer.h"
#include "fake_amberd.h"

#define SESSION "11111111-2222-4333-8444-555555555555"
#define SESSION2 "22222222-2222-4333-8444-555555555555"
#define SET "66666666-7777-4888-9999-aaaaaaaaaaaa"

/* ----------------------------------------------------- recording callbacks */

#define MAX_CALLS 64
#define MAX_LOGS 64

typedef struct rec {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	char calls[MAX_CALLS][48];
	int n_calls;
	char logs[MAX_LOGS][512];
	int n_logs;
	/* what the callbacks answer */
	int ret_freeze;
	int ret_backup_complete;
	bool say_held;
	uint32_t new_max_hold;      /* identify: refresh md->max_hold_ms if not 0 */
	/* fields seen */
	char ev_session[AMB_UUID_BUF];
	char ev_set[AMB_UUID_BUF];
	amb_backup_type ev_backup_type;
	uint32_t ev_hold_ms;
	size_t ev_n_volumes;
	char ev_volume0[64];
	size_t ev_n_components;
	char ev_comp0[AMB_NAME_BUF];
	bool ev_comp0_success;
	size_t ev_n_shadows;
	char ev_shadow0[64];
	amb_fail_class ev_cls;
	bool thaw_ev_null;
	/* backup_complete's after_reply: used, released by the test, ran */
	bool use_after;
	bool after_release;
	bool after_ran;
	bool after_was_released;
} rec;

static rec R;

static void rec_init(void)
{
	memset(&R, 0, sizeof(R));
	pthread_mutex_init(&R.mu, NULL);
	pthread_cond_init(&R.cv, NULL);
}

static void rec_call(const char *what, const amb_wevent *ev)
{
	pthread_mutex_lock(&R.mu);
	if (R.n_calls < MAX_CALLS)
		snprintf(R.calls[R.n_calls++], sizeof(R.calls[0]), "%s", what);
	if (ev) {
		snprintf(R.ev_session, sizeof(R.ev_session), "%s", ev->session);
		snprintf(R.ev_set, sizeof(R.ev_set), "%s", ev->set);
		R.ev_backup_type = ev->backup_type;
		R.ev_hold_ms = ev->hold_ms;
		R.ev_n_volumes = ev->n_volumes;
		snprintf(R.ev_volume0, sizeof(R.ev_volume0), "%s",
			 ev->n_volumes ? ev->volumes[0] : "");
		R.ev_n_components = ev->n_components;
		snprintf(R.ev_comp0, sizeof(R.ev_comp0), "%s",
			 ev->n_components ? ev->components[0].name : "");
		R.ev_comp0_success = ev->n_components && ev->components[0].success;
		R.ev_n_shadows = ev->n_shadows;
		snprintf(R.ev_shadow0, sizeof(R.ev_shadow0), "%s",
			 ev->n_shadows ? ev->shadows[0].path : "");
		R.ev_cls = ev->cls;
	}
	pthread_cond_broadcast(&R.cv);
	pthread_mutex_unlock(&R.mu);
}

static int cb_identify(void *arg, const amb_wevent *ev, amb_writer_md *md,
		       amb_writer_result *out)
{
	(void)arg;
	(void)out;
	if (R.new_max_hold)
		md->max_hold_ms = R.new_max_hold;
	rec_call("identify", ev);
	return 0;
}

static int cb_prepare_backup(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	(void)arg;
	(void)out;
	rec_call("prepare-backup", ev);
	return 0;
}

static int cb_prepare_snapshot(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	(void)arg;
	(void)out;
	rec_call("prepare-snapshot", ev);
	return 0;
}

static int cb_freeze(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	(void)arg;
	if (R.ret_freeze)
		snprintf(out->message, sizeof(out->message), "cannot flush");
	rec_call("freeze", ev);
	return R.ret_freeze;
}

static int cb_thaw(void *arg, amb_thaw_reason why, const amb_wevent *ev, amb_writer_result *out)
{
	(void)arg;
	(void)out;
	static const char *names[] = { "?", "event", "abort", "deadline", "disconnect", "stop" };
	char what[48];
	snprintf(what, sizeof(what), "thaw:%s", names[why <= AMB_THAW_STOP ? why : 0]);
	pthread_mutex_lock(&R.mu);
	R.thaw_ev_null = ev == NULL;
	pthread_mutex_unlock(&R.mu);
	rec_call(what, ev);
	return 0;
}

static int cb_post_snapshot(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	(void)arg;
	out->held_writes = R.say_held;
	rec_call("post-snapshot", ev);
	return 0;
}

/* backup_complete's after_reply: waits (at most 5 s) for the test to
 * release it, which the test does only once it has the reply */
static void cb_after(void *arg)
{
	(void)arg;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&R.mu);
	while (!R.after_release &&
	       pthread_cond_timedwait(&R.cv, &R.mu, &until) == 0)
		;
	R.after_was_released = R.after_release;
	R.after_ran = true;
	if (R.n_calls < MAX_CALLS)
		snprintf(R.calls[R.n_calls++], sizeof(R.calls[0]), "after-reply");
	pthread_cond_broadcast(&R.cv);
	pthread_mutex_unlock(&R.mu);
}

static int cb_backup_complete(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	(void)arg;
	if (R.use_after) {
		out->after_reply = cb_after;
		out->after_arg = NULL;
	}
	if (R.ret_backup_complete)
		snprintf(out->message, sizeof(out->message), "log truncation failed: disk full");
	rec_call("backup-complete", ev);
	return R.ret_backup_complete;
}

static int cb_abort(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	(void)arg;
	(void)out;
	rec_call("abort", ev);
	return 0;
}

static int cb_post_restore(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	(void)arg;
	(void)out;
	rec_call("post-restore", ev);
	return 0;
}

static void cb_log(void *arg, const char *line)
{
	(void)arg;
	if (getenv("AMB_TEST_VERBOSE"))
		fprintf(stderr, "writer log: %s\n", line);
	pthread_mutex_lock(&R.mu);
	if (R.n_logs < MAX_LOGS)
		snprintf(R.logs[R.n_logs++], sizeof(R.logs[0]), "%s", line);
	pthread_cond_broadcast(&R.cv);
	pthread_mutex_unlock(&R.mu);
}

/* pre_restore is left NULL: a missing callback succeeds */
static const amb_writer_ops OPS = {
	.identify = cb_identify,
	.prepare_backup = cb_prepare_backup,
	.prepare_snapshot = cb_prepare_snapshot,
	.freeze = cb_freeze,
	.thaw = cb_thaw,
	.post_snapshot = cb_post_snapshot,
	.backup_complete = cb_backup_complete,
	.abort = cb_abort,
	.post_restore = cb_post_restore,
	.log = cb_log,
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until at least n callbacks have been recorded (upper bound only). */
static bool wait_calls(int n, int timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000 + 1;
	pthread_mutex_lock(&R.mu);
	while (R.n_calls < n) {
		if (pthread_cond_timedwait(&R.cv, &R.mu, &until) == ETIMEDOUT)
			break;
	}
	bool ok = R.n_calls >= n;
	pthread_mutex_unlock(&R.mu);
	return ok;
}

static const char *call(int i)
{
	return i < R.n_calls ? R.calls[i] : "(none)";
}

static int count_logs(const char *needle)
{
	pthread_mutex_lock(&R.mu);
	int n = 0;
	for (int i = 0; i < R.n_logs; i++)
		n += strstr(R.logs[i], needle) != NULL;
	pthread_mutex_unlock(&R.mu);
	return n;
}

/* ------------------------------------------------------------ fake amberd */

/* Accept the writer, check hello and register, answer ok.  Returns the
 * connection; *md_out (if not NULL) gets the register message. */
static int serve_register(fake_srv *s, amb_msg *reg_out)
{
	int fd = fake_accept(s, FAKE_TIMEOUT_MS);
	assert_true(fd >= 0);
	amb_msg h;
	assert_int_equal(fake_welcome(fd, &h), 0);
	assert_int_equal(h.u.hello.role, AMB_ROLE_WRITER);
	assert_string_equal(h.u.hello.name, "test-app");
	assert_int_equal(h.u.hello.pid, (int32_t)getpid());
	assert_int_equal(h.id, 1);
	amb_msg_free(&h);
	amb_msg reg;
	assert_int_equal(fake_recv(fd, FAKE_TIMEOUT_MS, &reg), 0);
	assert_int_equal(reg.kind, AMB_MSG_REGISTER);
	assert_int_equal(reg.id, 2);
	amb_msg ok = { .kind = AMB_MSG_OK, .id = reg.id };
	assert_int_equal(fake_send(fd, &ok), 0);
	if (reg_out)
		*reg_out = reg;
	else
		amb_msg_free(&reg);
	return fd;
}

static void start(fake_srv *s, amb_writer **w, int *fd)
{
	rec_init();
	assert_int_equal(fake_listen(s), 0);
	amb_writer_md md;
	fake_md(&md);
	assert_int_equal(amb_writer_start(s->path, "test-app", &md, &OPS, NULL, w), 0);
	*fd = serve_register(s, NULL);
	assert_int_equal(amb_writer_wait_registered(*w, FAKE_TIMEOUT_MS), 1);
}

/* Send an event; returns its id. */
static uint64_t send_ev(int fd, amb_msg *ev)
{
	static uint64_t next_id = 100;
	ev->id = next_id++;
	assert_int_equal(fake_send(fd, ev), 0);
	return ev->id;
}

/* Receive the reply to event id of kind k into *rep. */
static void recv_reply(int fd, uint64_t id, amb_msg_kind k, amb_msg *rep)
{
	assert_int_equal(fake_recv(fd, FAKE_TIMEOUT_MS, rep), 0);
	assert_int_equal(rep->kind, AMB_MSG_REPLY);
	assert_int_equal(rep->id, id);
	assert_int_equal(rep->u.reply.event, k);
}

/* Send a simple event with session (and set) and expect an ok reply. */
static void event_ok(int fd, amb_msg_kind k, const char *session, const char *set,
		     uint32_t hold_ms, amb_msg *rep)
{
	amb_msg ev = { .kind = k };
	snprintf(ev.u.wev.session, sizeof(ev.u.wev.session), "%s", session);
	if (set)
		snprintf(ev.u.wev.set, sizeof(ev.u.wev.set), "%s", set);
	ev.u.wev.hold_ms = hold_ms;
	uint64_t id = send_ev(fd, &ev);
	recv_reply(fd, id, k, rep);
	assert_int_equal(rep->u.reply.status, AMB_REPLY_OK);
}

static void expect_ok(int fd, amb_msg_kind k, const char *session, const char *set,
		      uint32_t hold_ms)
{
	amb_msg rep;
	event_ok(fd, k, session, set, hold_ms, &rep);
	amb_msg_free(&rep);
}

/* After stop: unregister, then end of file. */
static void expect_unregister(int fd)
{
	amb_msg m;
	assert_int_equal(fake_recv(fd, FAKE_TIMEOUT_MS, &m), 0);
	assert_int_equal(m.kind, AMB_MSG_UNREGISTER);
	amb_msg_free(&m);
	assert_int_equal(fake_recv(fd, FAKE_TIMEOUT_MS, &m), AMB_FRAME_EOF);
}

/* ------------------------------------------------------------------ tests */

static void test_register(void **state)
{
	(void)state;
	rec_init();
	fake_srv s;
	assert_int_equal(fake_listen(&s), 0);
	amb_writer_md md;
	fake_md(&md);
	amb_writer *w;
	assert_int_equal(amb_writer_start(s.path, "test-app", &md, &OPS, NULL, &w), 0);
	amb_msg reg;
	int fd = serve_register(&s, &reg);
	assert_int_equal(amb_writer_wait_registered(w, FAKE_TIMEOUT_MS), 1);
	assert_true(amb_writer_registered(w));

	const amb_writer_md *got = &reg.u.reg.metadata;
	assert_string_equal(got->name, "test-writer");
	assert_string_equal(got->instance, md.instance);
	assert_string_equal(got->instance_name, md.instance_name);
	assert_int_equal(got->backup_types, md.backup_types);
	assert_string_equal(got->verifier, "none");
	assert_int_equal(got->restore_method, AMB_RESTORE_IF_CAN_REPLACE);
	assert_int_equal(got->max_hold_ms, 5000);
	assert_int_equal(got->n_components, 2);
	assert_string_equal(got->components[0].name, "main");
	assert_string_equal(got->components[0].files[0].path, "/srv/db");
	assert_string_equal(got->components[0].logs[0].pattern, "*.log");
	assert_true(got->components[0].logs[0].recursive);
	assert_string_equal(got->components[0].checkpoint, "/srv/db/checkpoint");
	assert_false(got->components[1].selectable);
	assert_int_equal(got->n_excludes, 1);
	assert_string_equal(got->excludes[0].pattern, "*.tmp");
	amb_msg_free(&reg);

	char want[256];
	snprintf(want, sizeof(want), "registered with amberd at %s", s.path);
	assert_int_equal(count_logs(want), 1);

	amb_writer_stop(w);
	expect_unregister(fd);
	close(fd);
	fake_cleanup(&s);
}

static void test_full_sequence(void **state)
{
	(void)state;
	fake_srv s;
	amb_writer *w;
	int fd;
	start(&s, &w, &fd);
	R.new_max_hold = 7000;
	R.say_held = true;
	R.ret_backup_complete = AMB_FAIL_RETRYABLE;

	/* identify: the refreshed metadata comes back */
	amb_msg rep;
	event_ok(fd, AMB_MSG_IDENTIFY, SESSION, NULL, 0, &rep);
	assert_non_null(rep.u.reply.metadata);
	assert_int_equal(rep.u.reply.metadata->max_hold_ms, 7000);
	assert_string_equal(rep.u.reply.metadata->components[1].name, "config");
	assert_false(rep.u.reply.has_held_writes);
	amb_msg_free(&rep);
	assert_string_equal(R.ev_session, SESSION);

	/* prepare-backup with components and volumes */
	amb_wcomp comp = { .name = "main" };
	char *vols[] = { "/srv" };
	amb_msg ev = { .kind = AMB_MSG_PREPARE_BACKUP };
	memcpy(ev.u.wev.session, SESSION, AMB_UUID_BUF);
	ev.u.wev.backup_type = AMB_BACKUP_FULL;
	ev.u.wev.components = &comp;
	ev.u.wev.n_components = 1;
	ev.u.wev.volumes = vols;
	ev.u.wev.n_volumes = 1;
	uint64_t id = send_ev(fd, &ev);
	recv_reply(fd, id, AMB_MSG_PREPARE_BACKUP, &rep);
	assert_int_equal(rep.u.reply.status, AMB_REPLY_OK);
	assert_null(rep.u.reply.metadata);
	amb_msg_free(&rep);
	assert_int_equal(R.ev_backup_type, AMB_BACKUP_FULL);
	assert_int_equal(R.ev_n_components, 1);
	assert_string_equal(R.ev_comp0, "main");
	assert_int_equal(R.ev_n_volumes, 1);
	assert_string_equal(R.ev_volume0, "/srv");

	expect_ok(fd, AMB_MSG_PREPARE_SNAPSHOT, SESSION, SET, 0);
	assert_string_equal(R.ev_set, SET);
	expect_ok(fd, AMB_MSG_FREEZE, SESSION, SET, 10000);
	assert_int_equal(R.ev_hold_ms, 10000);
	expect_ok(fd, AMB_MSG_THAW, SESSION, SET, 0);
	assert_false(R.thaw_ev_null);

	/* post-snapshot: held_writes as the callback says */
	amb_shadow_loc loc = { .volume = "/srv", .path = "/run/amber/shadows/1" };
	amb_msg ps = { .kind = AMB_MSG_POST_SNAPSHOT };
	memcpy(ps.u.wev.session, SESSION, AMB_UUID_BUF);
	memcpy(ps.u.wev.set, SET, AMB_UUID_BUF);
	ps.u.wev.shadows = &loc;
	ps.u.wev.n_shadows = 1;
	id = send_ev(fd, &ps);
	recv_reply(fd, id, AMB_MSG_POST_SNAPSHOT, &rep);
	assert_int_equal(rep.u.reply.status, AMB_REPLY_OK);
	assert_true(rep.u.reply.has_held_writes);
	assert_true(rep.u.reply.held_writes);
	amb_msg_free(&rep);
	assert_string_equal(R.ev_shadow0, "/run/amber/shadows/1");

	/* backup-complete: the callback fails, retryable, with a message */
	amb_wcomp done = { .name = "main", .success = true };
	amb_msg bc = { .kind = AMB_MSG_BACKUP_COMPLETE };
	memcpy(bc.u.wev.session, SESSION, AMB_UUID_BUF);
	bc.u.wev.backup_type = AMB_BACKUP_FULL;
	bc.u.wev.components = &done;
	bc.u.wev.n_components = 1;
	id = send_ev(fd, &bc);
	recv_reply(fd, id, AMB_MSG_BACKUP_COMPLETE, &rep);
	assert_int_equal(rep.u.reply.status, AMB_REPLY_FAILED);
	assert_int_equal(rep.u.reply.cls, AMB_FAIL_RETRYABLE);
	assert_string_equal(rep.u.reply.message, "log truncation failed: disk full");
	amb_msg_free(&rep);
	assert_true(R.ev_comp0_success);

	/* abort when not frozen: only the abort callback */
	amb_msg ab = { .kind = AMB_MSG_ABORT };
	memcpy(ab.u.wev.session, SESSION, AMB_UUID_BUF);
	ab.u.wev.cls = AMB_FAIL_TIMEOUT;
	ab.u.wev.message = "requestor gone";
	id = send_ev(fd, &ab);
	recv_reply(fd, id, AMB_MSG_ABORT, &rep);
	assert_int_equal(rep.u.reply.status, AMB_REPLY_OK);
	amb_msg_free(&rep);
	assert_int_equal(R.ev_cls, AMB_FAIL_TIMEOUT);

	/* thaw without freeze: ok, nothing to do, no callback */
	expect_ok(fd, AMB_MSG_THAW, SESSION, SET, 0);

	/* a failed freeze: failed reply, and the thaw that follows is a no-op */
	R.ret_freeze = AMB_FAIL_OUT_OF_RESOURCES;
	amb_msg fz = { .kind = AMB_MSG_FREEZE };
	memcpy(fz.u.wev.session, SESSION2, AMB_UUID_BUF);
	memcpy(fz.u.wev.set, SET, AMB_UUID_BUF);
	fz.u.wev.hold_ms = 10000;
	id = send_ev(fd, &fz);
	recv_reply(fd, id, AMB_MSG_FREEZE, &rep);
	assert_int_equal(rep.u.reply.status, AMB_REPLY_FAILED);
	assert_int_equal(rep.u.reply.cls, AMB_FAIL_OUT_OF_RESOURCES);
	assert_string_equal(rep.u.reply.message, "cannot flush");
	amb_msg_free(&rep);
	expect_ok(fd, AMB_MSG_THAW, SESSION2, SET, 0);

	/* restore: pre_restore has no callback, post_restore has one */
	expect_ok(fd, AMB_MSG_PRE_RESTORE, SESSION2, NULL, 0);
	expect_ok(fd, AMB_MSG_POST_RESTORE, SESSION2, NULL, 0);

	static const char *want[] = {
		"identify", "prepare-backup", "prepare-snapshot", "freeze", "thaw:event",
		"post-snapshot", "backup-complete", "abort", "freeze", "post-restore",
	};
	size_t n = sizeof(want) / sizeof(want[0]);
	assert_int_equal(R.n_calls, (int)n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(call((int)i), want[i]);

	/* the refreshed metadata is what a later identify reports too */
	R.new_max_hold = 0;
	event_ok(fd, AMB_MSG_IDENTIFY, SESSION2, NULL, 0, &rep);
	assert_int_equal(rep.u.reply.metadata->max_hold_ms, 7000);
	amb_msg_free(&rep);

	amb_writer_stop(w);
	expect_unregister(fd);
	close(fd);
	fake_cleanup(&s);
}

/* A callback's after_reply runs once the reply is sent, before the next
 * event is read: the reply arrives while it is still running, and the
 * next event's reply only after it has finished. */
static void test_after_reply(void **state)
{
	(void)state;
	fake_srv s;
	amb_writer *w;
	int fd;
	start(&s, &w, &fd);
	R.use_after = true;

	amb_wcomp done = { .name = "main", .success = true };
	amb_msg bc = { .kind = AMB_MSG_BACKUP_COMPLETE };
	memcpy(bc.u.wev.session, SESSION, AMB_UUID_BUF);
	bc.u.wev.backup_type = AMB_BACKUP_INCREMENTAL;
	bc.u.wev.components = &done;
	bc.u.wev.n_components = 1;
	amb_msg rep;
	uint64_t id = send_ev(fd, &bc);
	recv_reply(fd, id, AMB_MSG_BACKUP_COMPLETE, &rep);
	assert_int_equal(rep.u.reply.status, AMB_REPLY_OK);
	amb_msg_free(&rep);
	/* the reply came while after_reply waits for the release */
	pthread_mutex_lock(&R.mu);
	bool ran_before = R.after_ran;
	R.after_release = true;
	pthread_cond_broadcast(&R.cv);
	pthread_mutex_unlock(&R.mu);
	assert_false(ran_before);

	/* the next event is handled after it */
	R.use_after = false;
	expect_ok(fd, AMB_MSG_THAW, SESSION, SET, 0);
	pthread_mutex_lock(&R.mu);
	assert_true(R.after_ran);
	assert_true(R.after_was_released);
	pthread_mutex_unlock(&R.mu);
	static const char *want[] = { "backup-complete", "after-reply" };
	assert_int_equal(R.n_calls, 2);
	for (size_t i = 0; i < 2; i++)
		assert_string_equal(call((int)i), want[i]);

	amb_writer_stop(w);
	expect_unregister(fd);
	close(fd);
	fake_cleanup(&s);
}

static void test_deadline(void **state)
{
	(void)state;
	fake_srv s;
	amb_writer *w;
	int fd;
	start(&s, &w, &fd);
	R.say_held = true;

	const uint32_t hold = 300;
	int64_t t0 = now_ms();
	expect_ok(fd, AMB_MSG_FREEZE, SESSION, SET, hold);
	assert_true(wait_calls(2, (int)hold + 2000));
	int64_t elapsed = now_ms() - t0;
	assert_string_equal(call(0), "freeze");
	assert_string_equal(call(1), "thaw:deadline");
	assert_true(R.thaw_ev_null);
	/* never before the deadline (the freeze was received after t0) */
	assert_true(elapsed >= hold);

	/* amberd's thaw comes late: ok, and no second thaw */
	expect_ok(fd, AMB_MSG_THAW, SESSION, SET, 0);
	assert_int_equal(count_logs("thawed by itself: hold deadline of 300 ms passed"), 1);
	amb_msg rep;
	event_ok(fd, AMB_MSG_POST_SNAPSHOT, SESSION, SET, 0, &rep);
	assert_true(rep.u.reply.has_held_writes);
	assert_false(rep.u.reply.held_writes);
	amb_msg_free(&rep);
	assert_int_equal(R.n_calls, 3);
	assert_string_equal(call(2), "post-snapshot");

	/* a new session that thaws in time is consistent again */
	expect_ok(fd, AMB_MSG_FREEZE, SESSION2, SET, 10000);
	expect_ok(fd, AMB_MSG_THAW, SESSION2, SET, 0);
	event_ok(fd, AMB_MSG_POST_SNAPSHOT, SESSION2, SET, 0, &rep);
	assert_true(rep.u.reply.held_writes);
	amb_msg_free(&rep);
	assert_string_equal(call(4), "thaw:event");

	amb_writer_stop(w);
	expect_unregister(fd);
	close(fd);
	fake_cleanup(&s);
}

static void test_disconnect_frozen(void **state)
{
	(void)state;
	fake_srv s;
	amb_writer *w;
	int fd;
	start(&s, &w, &fd);
	R.say_held = true;

	expect_ok(fd, AMB_MSG_FREEZE, SESSION, SET, 60000);
	close(fd);
	assert_true(wait_calls(2, FAKE_TIMEOUT_MS));
	assert_string_equal(call(1), "thaw:disconnect");
	assert_true(R.thaw_ev_null);

	/* it comes back and registers again on the same listener */
	amb_msg reg;
	fd = serve_register(&s, &reg);
	assert_string_equal(reg.u.reg.metadata.instance, "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9");
	amb_msg_free(&reg);
	assert_int_equal(amb_writer_wait_registered(w, FAKE_TIMEOUT_MS), 1);
	char want[256];
	snprintf(want, sizeof(want), "lost amberd at %s: ", s.path);
	assert_int_equal(count_logs(want), 1);
	snprintf(want, sizeof(want), "thawed by itself: lost amberd at %s", s.path);
	assert_int_equal(count_logs(want), 1);

	/* the session's post-snapshot can no longer claim held writes */
	amb_msg rep;
	event_ok(fd, AMB_MSG_POST_SNAPSHOT, SESSION, SET, 0, &rep);
	assert_false(rep.u.reply.held_writes);
	amb_msg_free(&rep);
	/* and a thaw finds nothing to do */
	expect_ok(fd, AMB_MSG_THAW, SESSION, SET, 0);
	assert_int_equal(R.n_calls, 3);

	amb_writer_stop(w);
	expect_unregister(fd);
	close(fd);
	fake_cleanup(&s);
}

static void test_server_restart(void **state)
{
	(void)state;
	fake_srv s;
	amb_writer *w;
	int fd;
	start(&s, &w, &fd);

	/* amberd goes away: socket file removed, connection closed */
	fake_unlisten(&s);
	close(fd);
	/* and comes back on the same path */
	assert_int_equal(fake_relisten(&s), 0);
	amb_msg reg;
	fd = serve_register(&s, &reg);
	assert_string_equal(reg.u.reg.metadata.name, "test-writer");
	assert_string_equal(reg.u.reg.metadata.instance, "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9");
	amb_msg_free(&reg);
	assert_int_equal(amb_writer_wait_registered(w, FAKE_TIMEOUT_MS), 1);
	char want[256];
	snprintf(want, sizeof(want), "registered with amberd at %s", s.path);
	assert_int_equal(count_logs(want), 2);
	snprintf(want, sizeof(want), "lost amberd at %s: amberd closed the connection; "
		 "reconnecting", s.path);
	assert_int_equal(count_logs(want), 1);
	/* not frozen: no thaw */
	assert_int_equal(R.n_calls, 0);

	/* it serves events on the new connection */
	expect_ok(fd, AMB_MSG_IDENTIFY, SESSION, NULL, 0);
	assert_string_equal(call(0), "identify");

	amb_writer_stop(w);
	expect_unregister(fd);
	close(fd);
	fake_cleanup(&s);
}

static void test_stop_frozen(void **state)
{
	(void)state;
	fake_srv s;
	amb_writer *w;
	int fd;
	start(&s, &w, &fd);

	expect_ok(fd, AMB_MSG_FREEZE, SESSION, SET, 60000);
	amb_writer_stop(w);
	assert_int_equal(R.n_calls, 2);
	assert_string_equal(call(0), "freeze");
	assert_string_equal(call(1), "thaw:stop");
	assert_true(R.thaw_ev_null);
	expect_unregister(fd);
	close(fd);
	fake_cleanup(&s);
}

static void test_abort_frozen(void **state)
{
	(void)state;
	fake_srv s;
	amb_writer *w;
	int fd;
	start(&s, &w, &fd);

	expect_ok(fd, AMB_MSG_FREEZE, SESSION, SET, 60000);
	amb_msg ab = { .kind = AMB_MSG_ABORT };
	memcpy(ab.u.wev.session, SESSION, AMB_UUID_BUF);
	ab.u.wev.cls = AMB_FAIL_TIMEOUT;
	uint64_t id = send_ev(fd, &ab);
	amb_msg rep;
	recv_reply(fd, id, AMB_MSG_ABORT, &rep);
	assert_int_equal(rep.u.reply.status, AMB_REPLY_OK);
	amb_msg_free(&rep);
	/* abort may come more than once */
	id = send_ev(fd, &ab);
	recv_reply(fd, id, AMB_MSG_ABORT, &rep);
	amb_msg_free(&rep);
	assert_int_equal(R.n_calls, 4);
	assert_string_equal(call(1), "thaw:abort");
	assert_false(R.thaw_ev_null);
	assert_string_equal(call(2), "abort");
	assert_string_equal(call(3), "abort");

	amb_writer_stop(w);
	expect_unregister(fd);
	close(fd);
	fake_cleanup(&s);
}

static void test_no_amberd(void **state)
{
	(void)state;
	rec_init();
	fake_srv s;
	assert_int_equal(fake_listen(&s), 0);
	fake_unlisten(&s);
	amb_writer_md md;
	fake_md(&md);
	amb_writer *w;
	assert_int_equal(amb_writer_start(s.path, "test-app", &md, &OPS, NULL, &w), 0);
	assert_int_equal(amb_writer_wait_registered(w, 0), 0);
	/* let it retry a few times (100 + 200 ms of backoff): one log line */
	poll(NULL, 0, 450);
	char want[256];
	snprintf(want, sizeof(want),
		 "cannot connect to amberd at %s: No such file or directory; retrying", s.path);
	assert_int_equal(count_logs(want), 1);
	assert_int_equal(R.n_logs, 1);
	assert_false(amb_writer_registered(w));
	amb_writer_stop(w);   /* returns although nothing ever answered */
	amb_writer_stop(NULL);
	fake_cleanup(&s);
}

static void test_invalid_metadata(void **state)
{
	(void)state;
	amb_writer_md md;
	amb_writer *w = (amb_writer *)1;
	fake_md(&md);
	snprintf(md.instance, sizeof(md.instance), "not-a-uuid");
	assert_int_equal(amb_writer_start("/tmp/x.sock", "test-app", &md, &OPS, NULL, &w), -EINVAL);
	assert_null(w);
	assert_non_null(strstr(amb_client_last_error(), "metadata.instance"));

	fake_md(&md);
	amb_fileset rel = { .path = "srv/db", .pattern = "*.db" };
	amb_component comp = { .name = "main", .type = AMB_COMP_DATABASE, .files = &rel,
			       .n_files = 1 };
	md.components = &comp;
	md.n_components = 1;
	assert_int_equal(amb_writer_start("/tmp/x.sock", "test-app", &md, &OPS, NULL, &w), -EINVAL);
	assert_non_null(strstr(amb_client_last_error(), "metadata.components[0].files[0].path"));

	fake_md(&md);
	md.backup_types = 0;
	assert_int_equal(amb_writer_start("/tmp/x.sock", "test-app", &md, &OPS, NULL, &w), -EINVAL);
	assert_non_null(strstr(amb_client_last_error(), "backup_types"));

	fake_md(&md);
	assert_int_equal(amb_writer_start("/tmp/x.sock", "bad name", &md, &OPS, NULL, &w), -EINVAL);
	assert_non_null(strstr(amb_client_last_error(), "client name"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register),
		cmocka_unit_test(test_full_sequence),
		cmocka_unit_test(test_after_reply),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_disconnect_frozen),
		cmocka_unit_test(test_server_restart),
		cmocka_unit_test(test_stop_frozen),
		cmocka_unit_test(test_abort_frozen),
		cmocka_unit_test(test_no_amberd),
		cmocka_unit_test(test_invalid_metadata),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

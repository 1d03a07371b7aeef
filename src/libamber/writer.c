/*
 * writer.c - libamber, writer side (writer.h).
 *
 * One thread per writer runs everything: connect, hello (role writer),
 * register, then a poll(2) loop over the socket and a wake eventfd that
 * amb_writer_stop() writes.  Events are handled one at a time, in the
 * order they arrive, each answered by one "reply" before the next frame is
 * read.  The loop's poll timeout is the time left until the hold deadline
 * while frozen, and infinite otherwise.
 *
 * Connection cycle (the thread):
 *
 *   connect ──fail──> log (throttled) ──> wait backoff ──> connect
 *      │                                  (100 ms, doubling to 2 s;
 *      v                                   100 ms again after a
 *   hello ─> welcome (within HELLO_MS)     registration succeeded)
 *      │
 *   register ─> serve events until the connection fails or stop
 *
 * Hold rules (writer.h, CODING.md "Deadlines"):
 *   - a successful freeze callback makes the writer frozen, with the
 *     deadline = receipt of the freeze frame + freeze.hold_ms, on
 *     CLOCK_MONOTONIC;
 *   - thaw (reason EVENT), abort (ABORT, before the abort callback), the
 *     deadline (DEADLINE), a dropped connection (DISCONNECT) and stop
 *     (STOP, before unregister) each end the hold by calling the thaw
 *     callback, exactly once per freeze;
 *   - the deadline is checked before each frame is read, so a thaw that
 *     arrives after the deadline finds the writer already thawed; events
 *     that make no sense in the state (thaw when not frozen) are answered
 *     ok without a callback;
 *   - a self-thaw (DEADLINE, DISCONNECT) remembers the session: a later
 *     post-snapshot of that session is answered held_writes=false whatever
 *     the callback says.  It survives reconnects; the next successful
 *     freeze forgets it.
 *
 * The socket is non-blocking for reads (the incremental frame reader, so a
 * half-sent frame never blocks the deadline) and is switched to blocking
 * with a send timeout (SEND_TIMEOUT_MS) while a reply is written.
 *
 * Locks: mu protects `registered` only (read by other threads); the
 * thread owns every other field after amb_writer_start() returns, and
 * amb_writer_stop() touches them only after joining it.
 */
#include "amber/client.h"
#include "amber/writer.h"
#include "libamber.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000
#define HELLO_MS 5000          /* welcome must come within this */
#define SEND_TIMEOUT_MS 5000   /* a reply that cannot be written by then: lost */

/* wait results besides a negative errno */
enum { W_TIMEOUT = 0, W_MSG = 1, W_STOP = 2 };

struct amb_writer {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char name[AMB_NAME_BUF];
	amb_msg reg;                   /* a decoded "register": owns the metadata */
	amb_writer_ops ops;
	void *arg;
	int wake_fd;
	atomic_bool stop;
	pthread_t thread;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool registered;               /* under mu */

	/* the thread's own state */
	int fd;                        /* -1 when not connected */
	amb_frame_rx rx;
	size_t max;                    /* welcome.max_message */
	uint64_t next_id;
	uint64_t reg_id;
	bool welcomed;
	bool was_registered;           /* in this connection */
	bool frozen;
	int64_t deadline_ns;
	uint32_t hold_ms;
	amb_uuid frozen_session;
	amb_uuid self_thawed_session;  /* "" unless a self-thaw happened */
	char why[AMB_LIB_ERR_MAX];     /* why the connection failed */
	char last_fail[AMB_LIB_ERR_MAX]; /* last connect failure logged */
};

__attribute__((format(printf, 2, 3)))
static void wlog(amb_writer *w, const char *fmt, ...)
{
	if (!w->ops.log)
		return;
	char line[AMB_LIB_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	w->ops.log(w->arg, line);
}

/* Record why the connection failed; returns rc. */
__attribute__((format(printf, 3, 4)))
static int wfail(amb_writer *w, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(w->why, sizeof(w->why), fmt, ap);
	va_end(ap);
	return rc;
}

/* Log a failure to connect or register, but only when it differs from the
 * previous one: amberd being absent for an hour gives one line. */
static void log_conn_fail(amb_writer *w)
{
	if (strcmp(w->why, w->last_fail) == 0)
		return;
	memcpy(w->last_fail, w->why, sizeof(w->last_fail));
	wlog(w, "%s; retrying", w->why);
}

static void set_registered(amb_writer *w, bool v)
{
	pthread_mutex_lock(&w->mu);
	w->registered = v;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Deep-copy metadata by encoding and decoding it: the copy is a decoded
 * "register" that amb_msg_free() releases.  -EINVAL: invalid (err says
 * which field). */
static int md_copy(const amb_writer_md *md, amb_msg *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	amb_msg m = { .kind = AMB_MSG_REGISTER, .id = 1 };
	m.u.reg.metadata = *md;
	char *json;
	size_t len;
	int rc = amb_msg_encode(&m, &json, &len);
	if (rc == -EINVAL) {
		amb_msg_check(&m, err, errlen);
		return rc;
	}
	if (rc) {
		snprintf(err, errlen, "%s", strerror(-rc));
		return rc;
	}
	rc = amb_msg_decode(json, len, out, err, errlen);
	free(json);
	return rc == -EBADMSG ? -EINVAL : rc;
}

/* --------------------------------------------------------------- transport */

/* Wait up to deadline_ns (-1: no deadline) for a whole message.  Returns
 * W_MSG with *out, W_TIMEOUT, W_STOP, or -errno with w->why set. */
static int wait_msg(amb_writer *w, int64_t deadline_ns, amb_msg *out)
{
	memset(out, 0, sizeof(*out));
	for (;;) {
		if (atomic_load(&w->stop))
			return W_STOP;
		int tmo = -1;
		if (deadline_ns >= 0) {
			tmo = amb_lib_ms_until(deadline_ns);
			if (tmo == 0)
				return W_TIMEOUT;
		}
		struct pollfd p[2] = {
			{ .fd = w->fd, .events = POLLIN },
			{ .fd = w->wake_fd, .events = POLLIN },
		};
		int n = poll(p, 2, tmo);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return wfail(w, -errno, "poll: %s", strerror(errno));
		}
		if (p[1].revents && atomic_load(&w->stop))
			return W_STOP;
		if (!p[0].revents)
			continue;
		char *buf;
		size_t len;
		int rc = amb_frame_rx_read(&w->rx, w->fd, &buf, &len);
		if (rc == -EAGAIN)
			continue;
		if (rc == AMB_FRAME_EOF)
			return wfail(w, -ECONNRESET, "amberd closed the connection");
		if (rc == -EMSGSIZE)
			return wfail(w, -EPROTO, "a frame above the %zu-byte limit", w->max);
		if (rc)
			return wfail(w, rc, "%s", strerror(-rc));
		char err[256];
		rc = amb_msg_decode(buf, len, out, err, sizeof(err));
		free(buf);
		if (rc == -ENOMEM)
			return wfail(w, rc, "out of memory");
		if (rc)
			return wfail(w, -EPROTO, "invalid message: %s", err);
		return W_MSG;
	}
}

static int set_blocking(int fd, bool blocking)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -errno;
	fl = blocking ? (fl & ~O_NONBLOCK) : (fl | O_NONBLOCK);
	if (fcntl(fd, F_SETFL, fl) < 0)
		return -errno;
	return 0;
}

/* Send an encoded frame: blocking, bounded by SO_SNDTIMEO. */
static int send_raw(amb_writer *w, const char *json, size_t len)
{
	int rc = set_blocking(w->fd, true);
	if (!rc)
		rc = amb_frame_write(w->fd, json, len);
	if (!rc)
		rc = set_blocking(w->fd, false);
	if (rc == -EAGAIN)
		return wfail(w, rc, "amberd did not read for %d ms", SEND_TIMEOUT_MS);
	if (rc)
		return wfail(w, rc, "%s", strerror(-rc));
	return 0;
}

static int send_msg(amb_writer *w, const amb_msg *m)
{
	char *json;
	size_t len;
	int rc = amb_msg_encode(m, &json, &len);
	if (rc) {
		char err[256] = "";
		if (rc == -EINVAL)
			amb_msg_check(m, err, sizeof(err));
		return wfail(w, rc, "cannot encode %s: %s", amb_msg_kind_name(m->kind),
			     rc == -EINVAL ? err : strerror(-rc));
	}
	rc = send_raw(w, json, len);
	free(json);
	return rc;
}

/* ------------------------------------------------------------------ events */

static amb_fail_class cb_class(int r)
{
	if (r >= AMB_FAIL_RETRYABLE && r <= AMB_FAIL_OUT_OF_RESOURCES)
		return (amb_fail_class)r;
	/* a callback that returns -1 or an errno still failed */
	return AMB_FAIL_NONRETRYABLE;
}

/* End the hold: the thaw callback, exactly once per freeze. */
static int do_thaw(amb_writer *w, amb_thaw_reason why, const amb_wevent *ev,
		   amb_writer_result *res)
{
	w->frozen = false;
	if (why == AMB_THAW_DEADLINE || why == AMB_THAW_DISCONNECT)
		memcpy(w->self_thawed_session, w->frozen_session, sizeof(amb_uuid));
	int r = w->ops.thaw ? w->ops.thaw(w->arg, why, ev, res) : 0;
	switch (why) {
	case AMB_THAW_DEADLINE:
		wlog(w, "thawed by itself: hold deadline of %u ms passed", w->hold_ms);
		break;
	case AMB_THAW_DISCONNECT:
		wlog(w, "thawed by itself: lost amberd at %s", w->path);
		break;
	case AMB_THAW_STOP:
		wlog(w, "thawed by itself: writer stopping");
		break;
	default:
		break;
	}
	if (r && why != AMB_THAW_EVENT && why != AMB_THAW_ABORT)
		wlog(w, "thaw callback failed (class %s)%s%.1024s",
		     amb_fail_class_name(cb_class(r)), res->message[0] ? ": " : "", res->message);
	return r;
}

static void self_thaw(amb_writer *w, amb_thaw_reason why)
{
	amb_writer_result res = { 0 };
	do_thaw(w, why, NULL, &res);
}

/* identify: the callback may refresh the metadata in place.  If it fails
 * or leaves invalid metadata, the previous metadata is put back. */
static int on_identify(amb_writer *w, const amb_wevent *ev, amb_writer_result *res)
{
	amb_msg backup;
	char err[256];
	int rc = md_copy(&w->reg.u.reg.metadata, &backup, err, sizeof(err));
	if (rc) {
		snprintf(res->message, sizeof(res->message), "cannot copy writer metadata: %s", err);
		return AMB_FAIL_OUT_OF_RESOURCES;
	}
	int r = w->ops.identify ? w->ops.identify(w->arg, ev, &w->reg.u.reg.metadata, res) : 0;
	if (!r) {
		amb_msg chk = { .kind = AMB_MSG_REGISTER, .id = 1 };
		chk.u.reg.metadata = w->reg.u.reg.metadata;
		rc = amb_msg_check(&chk, err, sizeof(err));
		if (rc) {
			snprintf(res->message, sizeof(res->message),
				 "identify left invalid writer metadata: %s", err);
			r = rc == -ENOMEM ? AMB_FAIL_OUT_OF_RESOURCES : AMB_FAIL_NONRETRYABLE;
		}
	}
	if (r) {
		amb_msg_free(&w->reg);
		w->reg = backup;
	} else {
		amb_msg_free(&backup);
	}
	return r;
}

static int on_freeze(amb_writer *w, const amb_wevent *ev, int64_t t_recv,
		     amb_writer_result *res)
{
	if (w->frozen) {
		snprintf(res->message, sizeof(res->message),
			 "freeze while already frozen (session %s)", w->frozen_session);
		return AMB_FAIL_NONRETRYABLE;
	}
	int r = w->ops.freeze ? w->ops.freeze(w->arg, ev, res) : 0;
	if (r)
		return r;
	w->frozen = true;
	w->hold_ms = ev->hold_ms;
	w->deadline_ns = t_recv + (int64_t)ev->hold_ms * 1000000;
	memcpy(w->frozen_session, ev->session, sizeof(amb_uuid));
	w->self_thawed_session[0] = '\0';
	return 0;
}

static int on_post_snapshot(amb_writer *w, const amb_wevent *ev, amb_writer_result *res)
{
	int r = w->ops.post_snapshot ? w->ops.post_snapshot(w->arg, ev, res) : 0;
	if (!r && w->self_thawed_session[0] &&
	    strcmp(w->self_thawed_session, ev->session) == 0) {
		if (res->held_writes)
			wlog(w, "post-snapshot of session %s: answering held_writes=false: "
				"writes were released by a self-thaw", ev->session);
		res->held_writes = false;
	}
	return r;
}

static int on_abort(amb_writer *w, const amb_wevent *ev, amb_writer_result *res)
{
	int tr = 0;
	amb_writer_result tres = { 0 };
	if (w->frozen)
		tr = do_thaw(w, AMB_THAW_ABORT, ev, &tres);
	int r = w->ops.abort ? w->ops.abort(w->arg, ev, res) : 0;
	if (!r && tr) {
		*res = tres;
		r = tr;
	}
	return r;
}

/* Call the callback of one event and send the reply. */
static int handle_event(amb_writer *w, const amb_msg *m, int64_t t_recv)
{
	const amb_wevent *ev = &m->u.wev;
	amb_writer_result res;
	memset(&res, 0, sizeof(res));
	const amb_writer_ops *o = &w->ops;
	int r = 0;
	switch (m->kind) {
	case AMB_MSG_IDENTIFY:
		r = on_identify(w, ev, &res);
		break;
	case AMB_MSG_PREPARE_BACKUP:
		r = o->prepare_backup ? o->prepare_backup(w->arg, ev, &res) : 0;
		break;
	case AMB_MSG_PREPARE_SNAPSHOT:
		r = o->prepare_snapshot ? o->prepare_snapshot(w->arg, ev, &res) : 0;
		break;
	case AMB_MSG_FREEZE:
		r = on_freeze(w, ev, t_recv, &res);
		break;
	case AMB_MSG_THAW:
		/* not frozen (never, or already thawed by itself): nothing to do */
		if (w->frozen)
			r = do_thaw(w, AMB_THAW_EVENT, ev, &res);
		break;
	case AMB_MSG_POST_SNAPSHOT:
		r = on_post_snapshot(w, ev, &res);
		break;
	case AMB_MSG_BACKUP_COMPLETE:
		r = o->backup_complete ? o->backup_complete(w->arg, ev, &res) : 0;
		break;
	case AMB_MSG_ABORT:
		r = on_abort(w, ev, &res);
		break;
	case AMB_MSG_PRE_RESTORE:
		r = o->pre_restore ? o->pre_restore(w->arg, ev, &res) : 0;
		break;
	case AMB_MSG_POST_RESTORE:
		r = o->post_restore ? o->post_restore(w->arg, ev, &res) : 0;
		break;
	default:
		return 0;
	}
	res.message[AMB_TEXT_MAX] = '\0';

	amb_msg rep = { .kind = AMB_MSG_REPLY, .id = m->id };
	amb_reply *rp = &rep.u.reply;
	rp->event = m->kind;
	rp->status = r ? AMB_REPLY_FAILED : AMB_REPLY_OK;
	rp->cls = r ? cb_class(r) : AMB_FAIL_NONE;
	rp->message = res.message[0] ? res.message : NULL;
	if (!r && m->kind == AMB_MSG_POST_SNAPSHOT) {
		rp->has_held_writes = true;
		rp->held_writes = res.held_writes;
	}
	if (!r && m->kind == AMB_MSG_IDENTIFY)
		rp->metadata = &w->reg.u.reg.metadata;
	if (!r && m->kind == AMB_MSG_FREEZE && res.n_unchanged) {
		rp->unchanged = (char **)res.unchanged;
		rp->n_unchanged = res.n_unchanged < AMB_MAX_UNCHANGED ? res.n_unchanged :
		                  AMB_MAX_UNCHANGED;
	}

	char *json;
	size_t len;
	int rc = amb_msg_encode(&rep, &json, &len);
	if (rc == -EINVAL && rp->message) {
		/* a callback's message that is not protocol text: drop it */
		wlog(w, "%s: the callback's message is not valid protocol text; not sent",
		     amb_msg_kind_name(m->kind));
		rp->message = NULL;
		rc = amb_msg_encode(&rep, &json, &len);
	}
	if (!rc && len > w->max) {
		free(json);
		snprintf(res.message, sizeof(res.message),
			 "reply of %zu bytes exceeds amberd's message limit of %zu bytes", len,
			 w->max);
		rc = -EMSGSIZE;
	} else if (rc) {
		char err[256] = "";
		amb_msg_check(&rep, err, sizeof(err));
		snprintf(res.message, sizeof(res.message), "cannot encode the reply: %s",
			 rc == -EINVAL ? err : strerror(-rc));
	}
	if (rc) {
		wlog(w, "%s: %s", amb_msg_kind_name(m->kind), res.message);
		memset(rp, 0, sizeof(*rp));
		rp->event = m->kind;
		rp->status = AMB_REPLY_FAILED;
		rp->cls = rc == -ENOMEM ? AMB_FAIL_OUT_OF_RESOURCES : AMB_FAIL_NONRETRYABLE;
		rp->message = res.message;
		rc = send_msg(w, &rep);
	} else {
		rc = send_raw(w, json, len);
		free(json);
	}
	if (res.after_reply)
		res.after_reply(res.after_arg);
	return rc;
}

/* One message in the serving loop.  Returns 0, or -errno to drop the
 * connection (w->why set). */
static int handle_msg(amb_writer *w, const amb_msg *m, int64_t t_recv)
{
	switch (m->kind) {
	case AMB_MSG_OK:
		if (m->id == w->reg_id && !w->was_registered) {
			w->was_registered = true;
			w->last_fail[0] = '\0';
			/* log first: whoever sees the flag finds the line there */
			wlog(w, "registered with amberd at %s", w->path);
			set_registered(w, true);
		}
		return 0;
	case AMB_MSG_ERROR:
		if (m->id == w->reg_id || (m->id == 0 && !w->was_registered))
			return wfail(w, -EACCES, "amberd at %s refused registration: %s", w->path,
				     m->u.error.message);
		wlog(w, "amberd at %s: error: %s", w->path, m->u.error.message);
		return 0;
	case AMB_MSG_IDENTIFY:
	case AMB_MSG_PREPARE_BACKUP:
	case AMB_MSG_PREPARE_SNAPSHOT:
	case AMB_MSG_FREEZE:
	case AMB_MSG_THAW:
	case AMB_MSG_POST_SNAPSHOT:
	case AMB_MSG_BACKUP_COMPLETE:
	case AMB_MSG_ABORT:
	case AMB_MSG_PRE_RESTORE:
	case AMB_MSG_POST_RESTORE:
		return handle_event(w, m, t_recv);
	default:
		wlog(w, "amberd at %s sent an unexpected %s; ignored", w->path,
		     amb_msg_kind_name(m->kind));
		return 0;
	}
}

/* --------------------------------------------------------------- the cycle */

/* hello -> welcome, then register.  Returns 0, W_STOP or -errno. */
static int handshake(amb_writer *w)
{
	amb_msg hello = { .kind = AMB_MSG_HELLO, .id = w->next_id++ };
	hello.u.hello.version = AMB_PROTO_VERSION;
	hello.u.hello.min_version = AMB_PROTO_MIN_VERSION;
	hello.u.hello.role = AMB_ROLE_WRITER;
	memcpy(hello.u.hello.name, w->name, sizeof(w->name));
	hello.u.hello.pid = (int32_t)getpid();
	int rc = send_msg(w, &hello);
	if (rc)
		return rc;
	amb_msg m;
	rc = wait_msg(w, amb_lib_now_ns() + (int64_t)HELLO_MS * 1000000, &m);
	if (rc == W_STOP)
		return rc;
	if (rc == W_TIMEOUT)
		return wfail(w, -ETIMEDOUT, "no welcome from amberd at %s within %d ms", w->path,
			     HELLO_MS);
	if (rc < 0)
		return wfail(w, rc, "no welcome from amberd at %s: %.1024s", w->path, w->why);
	rc = 0;
	if (m.kind == AMB_MSG_ERROR) {
		rc = wfail(w, -EACCES, "amberd at %s refused hello: %s", w->path,
			   m.u.error.message);
	} else if (m.kind != AMB_MSG_WELCOME || m.id != hello.id) {
		rc = wfail(w, -EPROTO, "amberd at %s answered hello with %s", w->path,
			   amb_msg_kind_name(m.kind));
	} else if (m.u.welcome.version < AMB_PROTO_MIN_VERSION ||
		   m.u.welcome.version > AMB_PROTO_VERSION) {
		rc = wfail(w, -EPROTO, "amberd at %s chose protocol version %u, outside %u..%u",
			   w->path, m.u.welcome.version, AMB_PROTO_MIN_VERSION,
			   AMB_PROTO_VERSION);
	} else {
		w->welcomed = true;
		w->max = m.u.welcome.max_message;
	}
	amb_msg_free(&m);
	if (rc)
		return rc;
	/* the reader holds no partial frame between frames: a new limit is safe */
	amb_frame_rx_free(&w->rx);
	rc = amb_frame_rx_init(&w->rx, w->max);
	if (rc)
		return wfail(w, rc, "bad frame limit %zu from amberd at %s", w->max, w->path);

	amb_msg reg = { .kind = AMB_MSG_REGISTER, .id = w->next_id++ };
	reg.u.reg.metadata = w->reg.u.reg.metadata;
	w->reg_id = reg.id;
	return send_msg(w, &reg);
}

/* Serve events until stop (W_STOP) or a failure (-errno). */
static int serve(amb_writer *w)
{
	for (;;) {
		if (w->frozen && amb_lib_ms_until(w->deadline_ns) == 0) {
			self_thaw(w, AMB_THAW_DEADLINE);
			continue;
		}
		amb_msg m;
		int rc = wait_msg(w, w->frozen ? w->deadline_ns : -1, &m);
		if (rc == W_TIMEOUT)
			continue;
		if (rc != W_MSG)
			return rc;
		rc = handle_msg(w, &m, amb_lib_now_ns());
		amb_msg_free(&m);
		if (rc)
			return rc;
	}
}

/* One connection, from connect to close.  Returns W_STOP or -errno. */
static int connection(amb_writer *w)
{
	w->welcomed = false;
	w->was_registered = false;
	w->next_id = 1;
	w->reg_id = 0;
	w->max = AMB_PROTO_MAX_MSG_DEFAULT;
	int rc = amb_frame_rx_init(&w->rx, 0);
	if (rc)
		return wfail(w, rc, "frame reader: %s", strerror(-rc));
	w->fd = amb_lib_connect(w->path, SOCK_NONBLOCK);
	if (w->fd < 0) {
		rc = wfail(w, w->fd, "cannot connect to amberd at %s: %s", w->path,
			   strerror(-w->fd));
		w->fd = -1;
		log_conn_fail(w);
		goto out_free_rx;
	}
	struct timeval tv = { .tv_sec = SEND_TIMEOUT_MS / 1000,
			      .tv_usec = (SEND_TIMEOUT_MS % 1000) * 1000 };
	if (setsockopt(w->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
		rc = wfail(w, -errno, "setsockopt(SO_SNDTIMEO): %s", strerror(errno));
		log_conn_fail(w);
		goto out_close_fd;
	}
	rc = handshake(w);
	if (!rc)
		rc = serve(w);

	if (rc == W_STOP) {
		if (w->frozen)
			self_thaw(w, AMB_THAW_STOP);
		if (w->welcomed) {
			amb_msg unreg = { .kind = AMB_MSG_UNREGISTER, .id = w->next_id++ };
			send_msg(w, &unreg);  /* best effort: we close anyway */
		}
	} else if (w->was_registered) {
		wlog(w, "lost amberd at %s: %s; reconnecting", w->path, w->why);
	} else {
		log_conn_fail(w);
	}
	set_registered(w, false);
	if (rc != W_STOP && w->frozen)
		self_thaw(w, AMB_THAW_DISCONNECT);
out_close_fd:
	close(w->fd);
	w->fd = -1;
out_free_rx:
	amb_frame_rx_free(&w->rx);
	return rc;
}

/* Sleep ms unless stopped.  Returns W_STOP or W_TIMEOUT. */
static int nap(amb_writer *w, int ms)
{
	int64_t deadline = amb_lib_now_ns() + (int64_t)ms * 1000000;
	for (;;) {
		if (atomic_load(&w->stop))
			return W_STOP;
		int tmo = amb_lib_ms_until(deadline);
		if (tmo == 0)
			return W_TIMEOUT;
		struct pollfd p = { .fd = w->wake_fd, .events = POLLIN };
		if (poll(&p, 1, tmo) < 0 && errno != EINTR)
			return W_TIMEOUT;  /* cannot wait: try again at once, stop still works */
	}
}

static void *writer_thread(void *p)
{
	amb_writer *w = p;
	int backoff = BACKOFF_MIN_MS;
	for (;;) {
		int rc = connection(w);
		if (rc == W_STOP)
			break;
		if (w->was_registered)
			backoff = BACKOFF_MIN_MS;
		if (nap(w, backoff) == W_STOP)
			break;
		if (!w->was_registered)
			backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	return NULL;
}

/* ------------------------------------------------------------------ public */

int amb_writer_start(const char *socket, const char *name, const amb_writer_md *md,
		     const amb_writer_ops *ops, void *arg, amb_writer **out)
{
	*out = NULL;
	const char *path = amb_socket_path(socket);
	int rc = amb_lib_path_check(path);
	if (rc)
		return amb_lib_last_error_set(rc == -ENAMETOOLONG ? rc : -EINVAL,
					      "invalid socket path \"%.200s\": %s", path,
					      rc == -EINVAL ? "empty" : "too long");
	if (!name || !amb_proto_name_ok(name))
		return amb_lib_last_error_set(-EINVAL, "invalid client name \"%.64s\"",
					      name ? name : "(null)");
	if (!md)
		return amb_lib_last_error_set(-EINVAL, "no writer metadata");
	amb_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return amb_lib_last_error_set(-ENOMEM, "out of memory");
	w->fd = -1;
	memcpy(w->path, path, strlen(path) + 1);
	memcpy(w->name, name, strlen(name) + 1);
	if (ops)
		w->ops = *ops;
	w->arg = arg;
	atomic_init(&w->stop, false);

	char err[256];
	rc = md_copy(md, &w->reg, err, sizeof(err));
	if (rc) {
		amb_lib_last_error_set(rc, "invalid writer metadata: %s", err);
		goto out_free_w;
	}
	w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->wake_fd < 0) {
		rc = amb_lib_last_error_set(-errno, "eventfd: %s", strerror(errno));
		goto out_free_md;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&w->mu, NULL);
	rc = pthread_create(&w->thread, NULL, writer_thread, w);
	if (rc) {
		rc = amb_lib_last_error_set(-rc, "cannot start the writer thread: %s",
					    strerror(rc));
		goto out_destroy_sync;
	}
	*out = w;
	return 0;
out_destroy_sync:
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	close(w->wake_fd);
out_free_md:
	amb_msg_free(&w->reg);
out_free_w:
	free(w);
	return rc;
}

bool amb_writer_registered(amb_writer *w)
{
	pthread_mutex_lock(&w->mu);
	bool r = w->registered;
	pthread_mutex_unlock(&w->mu);
	return r;
}

int amb_writer_wait_registered(amb_writer *w, int timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	if (timeout_ms > 0) {
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_lock(&w->mu);
	while (!w->registered && timeout_ms != 0) {
		int rc = timeout_ms < 0 ? pthread_cond_wait(&w->cv, &w->mu)
					: pthread_cond_timedwait(&w->cv, &w->mu, &until);
		if (rc == ETIMEDOUT)
			break;
	}
	bool r = w->registered;
	pthread_mutex_unlock(&w->mu);
	return r ? 1 : 0;
}

void amb_writer_stop(amb_writer *w)
{
	if (!w)
		return;
	atomic_store(&w->stop, true);
	uint64_t one = 1;
	while (write(w->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(w->thread, NULL);
	close(w->wake_fd);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	amb_msg_free(&w->reg);
	free(w);
}

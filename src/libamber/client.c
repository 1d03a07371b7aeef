/*
 * client.c - libamber, requestor and administration side (client.h).
 *
 * One blocking UNIX stream socket per client.  A call numbers its request
 * (1 is hello, then 2, 3, ...), writes it as one frame and reads frames
 * until the response carrying that id arrives.  amberd answers requests in
 * order, so the only other thing that can arrive meanwhile is an "event"
 * notification: those are queued, in order, for amb_client_next_event().
 * An "error" without an id is amberd saying it could not read our id; as
 * at most one request is outstanding it is the answer to it.  Anything
 * else (a response with another id, a writer event) is a protocol error.
 *
 * Frames are read with welcome.max_message as the limit.  Transport and
 * protocol failures leave the connection unusable: the code is kept
 * ("broken") and every later call returns it again with the same message.
 */
#include "amber/client.h"
#include "libamber.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct evnode {
	amb_msg m;
	struct evnode *next;
} evnode;

struct amb_client {
	int fd;
	int broken;                   /* 0, or the sticky -errno of a failure */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	amb_welcome welcome;
	size_t max;                   /* frame limit for reads and writes */
	uint64_t next_id;
	char errmsg[AMB_LIB_ERR_MAX];
	amb_fail_class errclass;
	evnode *evq_head;             /* queued "event" notifications */
	evnode *evq_tail;
};

const char *amb_socket_path(const char *opt)
{
	if (opt)
		return opt;
	const char *env = getenv("AMBER_SOCKET");
	if (env && env[0])
		return env;
	return AMB_DEFAULT_SOCKET;
}

__attribute__((format(printf, 3, 4)))
static int cl_err(amb_client *c, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	return rc;
}

/* A failure after which the stream cannot be trusted: keep it sticky. */
__attribute__((format(printf, 3, 4)))
static int cl_broken(amb_client *c, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	c->broken = rc;
	return rc;
}

static void cl_reset_err(amb_client *c)
{
	c->errmsg[0] = '\0';
	c->errclass = AMB_FAIL_NONE;
}

/* Encode and send m.  -EINVAL (bad message, nothing sent) leaves the
 * connection usable; anything else breaks it. */
static int cl_send(amb_client *c, const amb_msg *m)
{
	char *json;
	size_t len;
	int rc = amb_msg_encode(m, &json, &len);
	if (rc == -EINVAL) {
		char why[256];
		amb_msg_check(m, why, sizeof(why));
		return cl_err(c, -EINVAL, "invalid %s request: %s", amb_msg_kind_name(m->kind),
			      why);
	}
	if (rc)
		return cl_err(c, rc, "cannot encode %s request: %s", amb_msg_kind_name(m->kind),
			      strerror(-rc));
	if (len > c->max) {
		rc = cl_err(c, -EINVAL,
			    "%s request of %zu bytes exceeds amberd's message limit of %zu bytes",
			    amb_msg_kind_name(m->kind), len, c->max);
		goto out_free_json;
	}
	rc = amb_frame_write(c->fd, json, len);
	if (rc)
		rc = cl_broken(c, rc, "lost amberd at %s: %s", c->path, strerror(-rc));
out_free_json:
	free(json);
	return rc;
}

/* Read and decode one message (blocking).  Any failure breaks the
 * connection; end of file is -ECONNRESET. */
static int cl_recv(amb_client *c, amb_msg *out)
{
	char *buf;
	size_t len;
	memset(out, 0, sizeof(*out));
	int rc = amb_frame_read(c->fd, c->max, &buf, &len);
	if (rc == AMB_FRAME_EOF)
		return cl_broken(c, -ECONNRESET, "amberd at %s closed the connection", c->path);
	if (rc == -EMSGSIZE)
		return cl_broken(c, -EPROTO, "amberd at %s sent a frame above the %zu-byte limit",
				 c->path, c->max);
	if (rc == -EBADMSG || rc == -EPROTO)
		return cl_broken(c, -EPROTO, "amberd at %s sent a broken frame: %s", c->path,
				 strerror(-rc));
	if (rc)
		return cl_broken(c, rc, "lost amberd at %s: %s", c->path, strerror(-rc));
	char why[256];
	rc = amb_msg_decode(buf, len, out, why, sizeof(why));
	free(buf);
	if (rc == -ENOMEM)
		return cl_broken(c, rc, "out of memory reading from amberd at %s", c->path);
	if (rc)
		return cl_broken(c, -EPROTO, "amberd at %s sent an invalid message: %s", c->path,
				 why);
	return 0;
}

static int cl_queue_event(amb_client *c, amb_msg *m)
{
	evnode *n = malloc(sizeof(*n));
	if (!n) {
		amb_msg_free(m);
		return cl_broken(c, -ENOMEM, "out of memory queueing an event from amberd at %s",
				 c->path);
	}
	n->m = *m;
	n->next = NULL;
	if (c->evq_tail)
		c->evq_tail->next = n;
	else
		c->evq_head = n;
	c->evq_tail = n;
	memset(m, 0, sizeof(*m));
	return 0;
}

/* An "error" answer: keep its message and class, return its exit class. */
static int cl_error_answer(amb_client *c, amb_msg *m)
{
	cl_err(c, (int)m->u.error.exit, "%s", m->u.error.message);
	c->errclass = m->u.error.cls;
	int rc = (int)m->u.error.exit;
	amb_msg_free(m);
	return rc;
}

/* Read until the answer to request id arrives, queueing events. */
static int cl_wait_answer(amb_client *c, uint64_t id, amb_msg *resp)
{
	for (;;) {
		amb_msg m;
		int rc = cl_recv(c, &m);
		if (rc)
			return rc;
		if (m.kind == AMB_MSG_EVENT) {
			rc = cl_queue_event(c, &m);
			if (rc)
				return rc;
			continue;
		}
		if (m.kind == AMB_MSG_ERROR && (m.id == id || m.id == 0))
			return cl_error_answer(c, &m);
		if (m.id != id) {
			rc = cl_broken(c, -EPROTO,
				       "amberd at %s sent %s with id %llu while id %llu was awaited",
				       c->path, amb_msg_kind_name(m.kind),
				       (unsigned long long)m.id, (unsigned long long)id);
			amb_msg_free(&m);
			return rc;
		}
		*resp = m;
		return 0;
	}
}

static void cl_free(amb_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	for (evnode *n = c->evq_head, *next; n; n = next) {
		next = n->next;
		amb_msg_free(&n->m);
		free(n);
	}
	free(c);
}

static int cl_handshake(amb_client *c, amb_role role, const char *name)
{
	amb_msg hello = { .kind = AMB_MSG_HELLO, .id = c->next_id++ };
	hello.u.hello.version = AMB_PROTO_VERSION;
	hello.u.hello.min_version = AMB_PROTO_MIN_VERSION;
	hello.u.hello.role = role;
	snprintf(hello.u.hello.name, sizeof(hello.u.hello.name), "%s", name);
	hello.u.hello.pid = (int32_t)getpid();
	int rc = cl_send(c, &hello);
	if (rc)
		return rc;
	amb_msg m;
	rc = cl_wait_answer(c, hello.id, &m);
	if (rc)
		return rc;
	if (m.kind != AMB_MSG_WELCOME) {
		rc = cl_broken(c, -EPROTO, "amberd at %s answered hello with %s", c->path,
			       amb_msg_kind_name(m.kind));
		goto out_free_msg;
	}
	if (m.u.welcome.version < AMB_PROTO_MIN_VERSION || m.u.welcome.version > AMB_PROTO_VERSION) {
		rc = cl_broken(c, -EPROTO,
			       "amberd at %s chose protocol version %u, outside %u..%u", c->path,
			       m.u.welcome.version, AMB_PROTO_MIN_VERSION, AMB_PROTO_VERSION);
		goto out_free_msg;
	}
	c->welcome = m.u.welcome;
	c->max = m.u.welcome.max_message;
out_free_msg:
	amb_msg_free(&m);
	return rc;
}

int amb_client_connect(const char *socket, amb_role role, const char *name, amb_client **out)
{
	*out = NULL;
	const char *path = amb_socket_path(socket);
	if (!name || !amb_proto_name_ok(name))
		return amb_lib_last_error_set(-EINVAL, "invalid client name \"%.64s\"",
					      name ? name : "(null)");
	if (!amb_role_name(role))
		return amb_lib_last_error_set(-EINVAL, "invalid role %d", (int)role);
	int rc = amb_lib_path_check(path);
	if (rc)
		return amb_lib_last_error_set(rc, "invalid socket path \"%.200s\": %s", path,
					      rc == -EINVAL ? "empty" : "too long");
	amb_client *c = calloc(1, sizeof(*c));
	if (!c)
		return amb_lib_last_error_set(-ENOMEM, "out of memory");
	c->fd = -1;
	c->next_id = 1;
	c->max = AMB_PROTO_MAX_MSG_DEFAULT;
	memcpy(c->path, path, strlen(path) + 1);

	c->fd = amb_lib_connect(path, 0);
	if (c->fd < 0) {
		rc = c->fd;
		c->fd = -1;
		if (rc == -ENOENT || rc == -ECONNREFUSED)
			cl_err(c, rc, "cannot connect to amberd at %s: %s (is amberd running?)", path,
			       strerror(-rc));
		else
			cl_err(c, rc, "cannot connect to amberd at %s: %s", path, strerror(-rc));
		goto out_free_client;
	}
	rc = cl_handshake(c, role, name);
	if (rc)
		goto out_free_client;
	cl_reset_err(c);
	amb_lib_last_error_clear();
	*out = c;
	return 0;
out_free_client:
	amb_lib_last_error_set(rc, "%s", c->errmsg);
	cl_free(c);
	return rc;
}

void amb_client_close(amb_client *c)
{
	if (c)
		cl_free(c);
}

const amb_welcome *amb_client_welcome(const amb_client *c)
{
	return &c->welcome;
}

const char *amb_client_errmsg(const amb_client *c)
{
	return c->errmsg;
}

amb_fail_class amb_client_errclass(const amb_client *c)
{
	return c->errclass;
}

int amb_client_fd(const amb_client *c)
{
	return c->fd;
}

/* The sticky failure of a broken connection, message unchanged. */
static int cl_check_usable(amb_client *c)
{
	if (c->broken)
		return c->broken;
	cl_reset_err(c);
	return 0;
}

int amb_client_call(amb_client *c, amb_msg *req, amb_msg *resp)
{
	memset(resp, 0, sizeof(*resp));
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	if (c->next_id > AMB_MAX_ID)
		return cl_broken(c, -EOVERFLOW, "request ids to amberd at %s exhausted", c->path);
	req->id = c->next_id;
	rc = cl_send(c, req);
	if (rc)
		return rc;
	c->next_id++;
	return cl_wait_answer(c, req->id, resp);
}

/* Send req and expect an answer of kind want.  A wrong kind is -EPROTO. */
static int cl_call_expect(amb_client *c, amb_msg *req, amb_msg_kind want, amb_msg *resp)
{
	int rc = amb_client_call(c, req, resp);
	if (rc)
		return rc;
	if (resp->kind != want) {
		rc = cl_err(c, -EPROTO, "amberd at %s answered %s with %s instead of %s", c->path,
			    amb_msg_kind_name(req->kind), amb_msg_kind_name(resp->kind),
			    amb_msg_kind_name(want));
		amb_msg_free(resp);
	}
	return rc;
}

/* Send req and expect "ok"; nothing to hand back. */
static int cl_call_ok(amb_client *c, amb_msg *req)
{
	amb_msg resp;
	int rc = cl_call_expect(c, req, AMB_MSG_OK, &resp);
	amb_msg_free(&resp);
	return rc;
}

/* Argument checks.  Each returns 0 or -EINVAL with a message naming the
 * argument; they run before anything is copied into a fixed buffer. */
static int arg_uuid(amb_client *c, const char *what, const char *s)
{
	if (!s || !amb_proto_uuid_ok(s))
		return cl_err(c, -EINVAL, "invalid %s \"%.64s\": not a canonical lower-case uuid",
			      what, s ? s : "(null)");
	return 0;
}

static int arg_name(amb_client *c, const char *what, const char *s)
{
	if (!s || !amb_proto_name_ok(s))
		return cl_err(c, -EINVAL, "invalid %s name \"%.80s\"", what, s ? s : "(null)");
	return 0;
}

static int arg_path(amb_client *c, const char *what, const char *s)
{
	if (!s || !amb_proto_path_ok(s))
		return cl_err(c, -EINVAL,
			      "invalid %s \"%.200s\": not an absolute normalized path", what,
			      s ? s : "(null)");
	return 0;
}

static bool present(const char *s)
{
	return s && s[0];
}

/* ---------------------------------------------------------------- sessions */

int amb_req_session_open(amb_client *c, const amb_session_open *opts, amb_session_ref *out)
{
	memset(out, 0, sizeof(*out));
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	amb_msg req = { .kind = AMB_MSG_SESSION_OPEN };
	req.u.sopen = *opts;
	if (memchr(opts->provider, '\0', sizeof(opts->provider)) == NULL ||
	    (opts->provider[0] && !amb_proto_name_ok(opts->provider)))
		return cl_err(c, -EINVAL, "invalid provider name");
	amb_msg resp;
	rc = cl_call_expect(c, &req, AMB_MSG_SESSION, &resp);
	if (rc)
		return rc;
	*out = resp.u.sref;
	amb_msg_free(&resp);
	return 0;
}

/* A request whose only field is the session (gather, snapshot, close). */
static int cl_session_req(amb_client *c, amb_msg_kind kind, const char *session,
			  amb_msg_kind want, amb_msg *out)
{
	memset(out, 0, sizeof(*out));
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	rc = arg_uuid(c, "session id", session);
	if (rc)
		return rc;
	amb_msg req = { .kind = kind };
	memcpy(req.u.sref.session, session, AMB_UUID_BUF);
	return cl_call_expect(c, &req, want, out);
}

int amb_req_gather(amb_client *c, const char *session, amb_msg *writers)
{
	return cl_session_req(c, AMB_MSG_SESSION_GATHER, session, AMB_MSG_WRITER_LIST, writers);
}

int amb_req_select(amb_client *c, const char *session, const char *writer, const char *component,
		   amb_select_mode mode)
{
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	rc = arg_uuid(c, "session id", session);
	if (!rc)
		rc = arg_name(c, "writer", writer);
	if (!rc && present(component))
		rc = arg_name(c, "component", component);
	if (rc)
		return rc;
	amb_msg req = { .kind = AMB_MSG_SESSION_SELECT };
	memcpy(req.u.select.session, session, AMB_UUID_BUF);
	snprintf(req.u.select.writer, sizeof(req.u.select.writer), "%s", writer);
	if (present(component))
		snprintf(req.u.select.component, sizeof(req.u.select.component), "%s", component);
	req.u.select.mode = mode;
	return cl_call_ok(c, &req);
}

int amb_req_add_volume(amb_client *c, const char *session, const char *volume,
		       const char *provider)
{
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	rc = arg_uuid(c, "session id", session);
	if (!rc)
		rc = arg_path(c, "volume", volume);
	if (!rc && present(provider))
		rc = arg_name(c, "provider", provider);
	if (rc)
		return rc;
	amb_msg req = { .kind = AMB_MSG_SESSION_ADD_VOLUME };
	memcpy(req.u.addvol.session, session, AMB_UUID_BUF);
	req.u.addvol.volume = (char *)volume;
	if (present(provider))
		snprintf(req.u.addvol.provider, sizeof(req.u.addvol.provider), "%s", provider);
	return cl_call_ok(c, &req);
}

int amb_req_snapshot(amb_client *c, const char *session, amb_msg *set)
{
	return cl_session_req(c, AMB_MSG_SESSION_SNAPSHOT, session, AMB_MSG_SNAPSHOT_SET, set);
}

/* session-backup-complete, -pre-restore, -post-restore */
static int cl_results_req(amb_client *c, amb_msg_kind kind, const char *session,
			  const amb_comp_result *items, size_t n)
{
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	rc = arg_uuid(c, "session id", session);
	if (rc)
		return rc;
	if (n && !items)
		return cl_err(c, -EINVAL, "%zu results but no array", n);
	amb_msg req = { .kind = kind };
	memcpy(req.u.results.session, session, AMB_UUID_BUF);
	/* the encoder only reads the items */
	req.u.results.items = (amb_comp_result *)items;
	req.u.results.n_items = n;
	return cl_call_ok(c, &req);
}

int amb_req_backup_complete(amb_client *c, const char *session, const amb_comp_result *results,
			    size_t n)
{
	return cl_results_req(c, AMB_MSG_SESSION_BACKUP_COMPLETE, session, results, n);
}

int amb_req_abort(amb_client *c, const char *session, const char *message)
{
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	rc = arg_uuid(c, "session id", session);
	if (rc)
		return rc;
	amb_msg req = { .kind = AMB_MSG_SESSION_ABORT };
	memcpy(req.u.sabort.session, session, AMB_UUID_BUF);
	req.u.sabort.message = present(message) ? (char *)message : NULL;
	return cl_call_ok(c, &req);
}

int amb_req_pre_restore(amb_client *c, const char *session, const amb_comp_result *items,
			size_t n)
{
	return cl_results_req(c, AMB_MSG_SESSION_PRE_RESTORE, session, items, n);
}

int amb_req_post_restore(amb_client *c, const char *session, const amb_comp_result *results,
			 size_t n)
{
	return cl_results_req(c, AMB_MSG_SESSION_POST_RESTORE, session, results, n);
}

int amb_req_close(amb_client *c, const char *session)
{
	amb_msg resp;
	int rc = cl_session_req(c, AMB_MSG_SESSION_CLOSE, session, AMB_MSG_OK, &resp);
	amb_msg_free(&resp);
	return rc;
}

/* ----------------------------------------------------- listings and shadows */

/* A request without fields. */
static int cl_plain_req(amb_client *c, amb_msg_kind kind, amb_msg_kind want, amb_msg *out)
{
	memset(out, 0, sizeof(*out));
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	amb_msg req = { .kind = kind };
	return cl_call_expect(c, &req, want, out);
}

int amb_req_list_writers(amb_client *c, amb_msg *out)
{
	return cl_plain_req(c, AMB_MSG_LIST_WRITERS, AMB_MSG_WRITER_LIST, out);
}

int amb_req_list_providers(amb_client *c, amb_msg *out)
{
	return cl_plain_req(c, AMB_MSG_LIST_PROVIDERS, AMB_MSG_PROVIDER_LIST, out);
}

int amb_req_list_shadows(amb_client *c, const char *set, const char *volume, uint64_t offset,
		     uint32_t limit, amb_msg *out)
{
	memset(out, 0, sizeof(*out));
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	if (present(set))
		rc = arg_uuid(c, "set id", set);
	if (!rc && volume)
		rc = arg_path(c, "volume", volume);
	if (rc)
		return rc;
	amb_msg req = { .kind = AMB_MSG_LIST_SHADOWS };
	if (present(set))
		memcpy(req.u.lshadows.set, set, AMB_UUID_BUF);
	req.u.lshadows.volume = (char *)volume;
	req.u.lshadows.offset = offset;
	req.u.lshadows.limit = limit;
	return cl_call_expect(c, &req, AMB_MSG_SHADOW_LIST, out);
}

int amb_req_list_shadowstorage(amb_client *c, amb_msg *out)
{
	return cl_plain_req(c, AMB_MSG_LIST_SHADOWSTORAGE, AMB_MSG_SHADOWSTORAGE_LIST, out);
}

int amb_req_shadow_create(amb_client *c, const amb_shadow_create *r, amb_msg *out)
{
	memset(out, 0, sizeof(*out));
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	if (r->n_volumes && !r->volumes)
		return cl_err(c, -EINVAL, "%zu volumes but no array", r->n_volumes);
	for (size_t i = 0; i < r->n_volumes && !rc; i++)
		rc = arg_path(c, "volume", r->volumes[i]);
	if (!rc && (memchr(r->provider, '\0', sizeof(r->provider)) == NULL ||
		    (r->provider[0] && !amb_proto_name_ok(r->provider))))
		rc = cl_err(c, -EINVAL, "invalid provider name");
	if (rc)
		return rc;
	amb_msg req = { .kind = AMB_MSG_SHADOW_CREATE };
	req.u.create = *r;
	return cl_call_expect(c, &req, AMB_MSG_SNAPSHOT_SET, out);
}

int amb_req_shadow_delete(amb_client *c, const amb_shadow_delete *sel, amb_msg *out)
{
	memset(out, 0, sizeof(*out));
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	if (sel->oldest)
		rc = arg_path(c, "volume", sel->oldest);
	if (!rc && sel->exposed)
		rc = arg_path(c, "exposed path", sel->exposed);
	if (!rc && memchr(sel->shadow, '\0', sizeof(sel->shadow)) && sel->shadow[0])
		rc = arg_uuid(c, "shadow id", sel->shadow);
	if (!rc && memchr(sel->set, '\0', sizeof(sel->set)) && sel->set[0])
		rc = arg_uuid(c, "set id", sel->set);
	if (rc)
		return rc;
	amb_msg req = { .kind = AMB_MSG_SHADOW_DELETE };
	req.u.del = *sel;
	return cl_call_expect(c, &req, AMB_MSG_DELETED, out);
}

int amb_req_shadow_expose(amb_client *c, const char *shadow, const char *path)
{
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	rc = arg_uuid(c, "shadow id", shadow);
	if (!rc)
		rc = arg_path(c, "expose path", path);
	if (rc)
		return rc;
	amb_msg req = { .kind = AMB_MSG_SHADOW_EXPOSE };
	memcpy(req.u.expose.shadow, shadow, AMB_UUID_BUF);
	req.u.expose.path = (char *)path;
	return cl_call_ok(c, &req);
}

int amb_req_shadow_unexpose(amb_client *c, const char *path)
{
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	rc = arg_path(c, "exposed path", path);
	if (rc)
		return rc;
	amb_msg req = { .kind = AMB_MSG_SHADOW_UNEXPOSE };
	req.u.expose.path = (char *)path;
	return cl_call_ok(c, &req);
}

/* ------------------------------------------------------------------ events */

int amb_req_events_list(amb_client *c, bool has_since, uint64_t since, uint32_t limit,
		    amb_msg *out)
{
	memset(out, 0, sizeof(*out));
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	amb_msg req = { .kind = AMB_MSG_EVENTS_LIST };
	req.u.evreq.has_since = has_since;
	req.u.evreq.since = since;
	req.u.evreq.limit = limit;
	return cl_call_expect(c, &req, AMB_MSG_EVENT_LIST, out);
}

int amb_req_events_follow(amb_client *c, bool has_since, uint64_t since)
{
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	amb_msg req = { .kind = AMB_MSG_EVENTS_FOLLOW };
	req.u.evreq.has_since = has_since;
	req.u.evreq.since = since;
	return cl_call_ok(c, &req);
}

int amb_client_next_event(amb_client *c, int timeout_ms, amb_msg *ev)
{
	memset(ev, 0, sizeof(*ev));
	if (c->evq_head) {
		evnode *n = c->evq_head;
		c->evq_head = n->next;
		if (!c->evq_head)
			c->evq_tail = NULL;
		*ev = n->m;
		free(n);
		return 1;
	}
	int rc = cl_check_usable(c);
	if (rc)
		return rc;
	int64_t deadline = timeout_ms < 0 ? -1 : amb_lib_now_ns() + (int64_t)timeout_ms * 1000000;
	for (;;) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		int n = poll(&p, 1, deadline < 0 ? -1 : amb_lib_ms_until(deadline));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return cl_err(c, -errno, "poll on the connection to amberd at %s: %s",
				      c->path, strerror(errno));
		}
		if (n == 0)
			return 0;
		amb_msg m;
		rc = cl_recv(c, &m);
		if (rc)
			return rc;
		if (m.kind != AMB_MSG_EVENT) {
			rc = cl_broken(c, -EPROTO,
				       "amberd at %s sent %s while no request was outstanding",
				       c->path, amb_msg_kind_name(m.kind));
			amb_msg_free(&m);
			return rc;
		}
		*ev = m;
		return 1;
	}
}

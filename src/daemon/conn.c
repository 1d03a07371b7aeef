/*
 * conn.c - one thread per client connection.
 *
 * The thread reads frames (blocking, with the configured size limit),
 * decodes them with the strict decoder, checks the role and the peer's
 * credentials, and dispatches.  Credentials come from the kernel, never
 * from the client: SO_PEERCRED (pid, uid, gid) and SO_PEERGROUPS
 * (supplementary groups) are read once, when the connection is accepted.
 *
 * Who may do what (design.md section 8, docs/amberd.md "Security"):
 *   - anyone who can open the socket (mode 0660, group socket_group) may
 *     list writers, providers, shadows, storage and events;
 *   - backup sessions, restores, shadow creation, deletion, expose and
 *     unexpose need root or membership of backup_group (event 4003 and
 *     "permission denied" otherwise);
 *   - a writer may only declare paths its own uid owns (writers.c).
 *
 * Frame errors (oversize, empty, cut) leave the stream out of step: the
 * client gets an error and the connection is closed (events 4006, 4004).
 * A frame that is whole but refused by the decoder gets an error naming
 * the field (event 4004) and the connection goes on.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/amberd.h"

typedef struct conn {
	int fd;
	struct ucred cred;
	gid_t groups[256];
	int ngroups;
	amb_role role;
	char name[AMB_NAME_BUF];
	dwriter *w;                  /* writer connections, once registered */
	dsession *session;           /* requestor connections */
} conn;

static int send_msg(conn *c, amb_msg *m)
{
	char *json;
	size_t len;
	int rc = amb_msg_encode(m, &json, &len);
	if (rc == 0 && len > D.cfg.max_message) {
		free(json);
		rc = -EMSGSIZE;
	}
	if (rc != 0) {
		/* the answer itself cannot be sent: say so instead */
		amb_msg e;
		char msg[128];
		snprintf(msg, sizeof(msg), "amberd could not encode its answer (%s)",
			 rc == -EMSGSIZE ? "larger than max_message" : strerror(-rc));
		memset(&e, 0, sizeof(e));
		e.kind = AMB_MSG_ERROR;
		e.id = m->id;
		e.u.error.exit = AMB_EXIT_FAILED;
		e.u.error.message = msg;
		if (amb_msg_encode(&e, &json, &len) != 0)
			return -ENOMEM;
	}
	if (c->w)
		pthread_mutex_lock(&c->w->wmu);
	rc = amb_frame_write(c->fd, json, len);
	if (c->w)
		pthread_mutex_unlock(&c->w->wmu);
	free(json);
	return rc;
}

static void send_error(conn *c, uint64_t id, amb_exit_class ex, const char *field,
		       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void send_error(conn *c, uint64_t id, amb_exit_class ex, const char *field,
		       const char *fmt, ...)
{
	char msg[AMB_TEXT_MAX * 2];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	amberd_clean_text(msg, AMB_TEXT_MAX);
	char fld[AMB_FIELD_MAX + 1];
	amb_msg e;
	memset(&e, 0, sizeof(e));
	e.kind = AMB_MSG_ERROR;
	e.id = id;
	e.u.error.exit = ex;
	e.u.error.message = msg;
	if (field && field[0]) {
		snprintf(fld, sizeof(fld), "%s", field);
		amberd_clean_text(fld, AMB_FIELD_MAX);
		e.u.error.field = fld;
	}
	send_msg(c, &e);
}

static bool role_allows(amb_role role, amb_msg_kind k)
{
	bool list = k == AMB_MSG_LIST_WRITERS || k == AMB_MSG_LIST_PROVIDERS ||
		    k == AMB_MSG_LIST_SHADOWS || k == AMB_MSG_LIST_SHADOWSTORAGE;
	bool shadow = k == AMB_MSG_SHADOW_CREATE || k == AMB_MSG_SHADOW_DELETE ||
		      k == AMB_MSG_SHADOW_EXPOSE || k == AMB_MSG_SHADOW_UNEXPOSE;
	bool events = k == AMB_MSG_EVENTS_LIST || k == AMB_MSG_EVENTS_FOLLOW;
	bool session = k >= AMB_MSG_SESSION_OPEN && k <= AMB_MSG_SESSION_CLOSE &&
		       k != AMB_MSG_SESSION;
	switch (role) {
	case AMB_ROLE_WRITER:
		return k == AMB_MSG_REGISTER || k == AMB_MSG_UNREGISTER || k == AMB_MSG_REPLY ||
		       k == AMB_MSG_LIST_WRITERS;
	case AMB_ROLE_REQUESTOR:
		return list || shadow || events || session;
	case AMB_ROLE_ADMIN:
		return list || shadow || events;
	}
	return false;
}

static bool needs_backup_perm(amb_msg_kind k)
{
	return (k >= AMB_MSG_SESSION_OPEN && k <= AMB_MSG_SESSION_CLOSE) ||
	       k == AMB_MSG_SHADOW_CREATE || k == AMB_MSG_SHADOW_DELETE ||
	       k == AMB_MSG_SHADOW_EXPOSE || k == AMB_MSG_SHADOW_UNEXPOSE;
}

/* Read and decode one message.  Returns 1 with *m, 0 when the peer closed,
 * -1 when the connection must close, 2 when the message was refused (an
 * error was sent; go on). */
static int read_msg(conn *c, amb_msg *m)
{
	char *buf;
	size_t len;
	int rc = amb_frame_read(c->fd, D.cfg.max_message, &buf, &len);
	if (rc == AMB_FRAME_EOF)
		return 0;
	if (rc == -EMSGSIZE) {
		send_error(c, 0, AMB_EXIT_BAD_INPUT, NULL,
			   "message larger than the limit of %u bytes", D.cfg.max_message);
		ev_log(AMB_EV_MESSAGE_TOO_LARGE, AMB_SEV_WARNING, NULL, NULL, NULL, NULL, NULL,
		       AMB_FAIL_NONE, "%s (pid %d, uid %u) sent a frame over the %u byte limit; closed",
		       c->name[0] ? c->name : "a client", (int)c->cred.pid, (unsigned)c->cred.uid,
		       D.cfg.max_message);
		return -1;
	}
	if (rc < 0) {
		if (rc == -EBADMSG || rc == -EPROTO) {
			send_error(c, 0, AMB_EXIT_BAD_INPUT, NULL, "bad frame: %s",
				   rc == -EBADMSG ? "empty message" : "cut short");
			ev_log(AMB_EV_PROTOCOL_ERROR, AMB_SEV_WARNING, NULL, NULL, NULL, NULL, NULL,
			       AMB_FAIL_NONE, "pid %d uid %u: bad frame (%s); closed",
			       (int)c->cred.pid, (unsigned)c->cred.uid, strerror(-rc));
		}
		return -1;
	}
	char err[512];
	rc = amb_msg_decode(buf, len, m, err, sizeof(err));
	free(buf);
	if (rc == 0)
		return 1;
	const char *colon = strstr(err, ": ");
	char field[AMB_FIELD_MAX + 1] = "";
	if (colon && (size_t)(colon - err) < sizeof(field) && strncmp(err, "json", 4) != 0)
		snprintf(field, sizeof(field), "%.*s", (int)(colon - err), err);
	send_error(c, m->id, AMB_EXIT_BAD_INPUT, field, "%s", err);
	ev_log(AMB_EV_PROTOCOL_ERROR, AMB_SEV_WARNING, NULL, NULL, NULL, NULL, NULL, AMB_FAIL_NONE,
	       "%s (pid %d, uid %u) sent a refused message: %s", c->name[0] ? c->name : "a client",
	       (int)c->cred.pid, (unsigned)c->cred.uid, err);
	return rc == -ENOMEM ? -1 : 2;
}

static int handshake(conn *c)
{
	amb_msg m;
	int rc = read_msg(c, &m);
	if (rc != 1)
		return -1;
	if (m.kind != AMB_MSG_HELLO) {
		send_error(c, m.id, AMB_EXIT_BAD_INPUT, "kind", "the first message must be hello");
		amb_msg_free(&m);
		return -1;
	}
	uint32_t cmax = m.u.hello.version;
	uint32_t cmin = m.u.hello.min_version ? m.u.hello.min_version : cmax;
	uint32_t v = cmax < AMB_PROTO_VERSION ? cmax : AMB_PROTO_VERSION;
	if (v < cmin || v < AMB_PROTO_MIN_VERSION) {
		send_error(c, m.id, AMB_EXIT_BAD_INPUT, "version",
			   "no common protocol version: client speaks %u..%u, amberd %u..%u", cmin,
			   cmax, AMB_PROTO_MIN_VERSION, AMB_PROTO_VERSION);
		ev_log(AMB_EV_VERSION_MISMATCH, AMB_SEV_WARNING, NULL, NULL, NULL, NULL, NULL,
		       AMB_FAIL_NONE, "%s (pid %d) speaks protocol %u..%u; amberd %u..%u",
		       m.u.hello.name, (int)c->cred.pid, cmin, cmax, AMB_PROTO_MIN_VERSION,
		       AMB_PROTO_VERSION);
		amb_msg_free(&m);
		return -1;
	}
	c->role = m.u.hello.role;
	snprintf(c->name, sizeof(c->name), "%s", m.u.hello.name);
	amb_msg w;
	memset(&w, 0, sizeof(w));
	w.kind = AMB_MSG_WELCOME;
	w.id = m.id;
	w.u.welcome.version = v;
	snprintf(w.u.welcome.server, sizeof(w.u.welcome.server), "amberd");
	snprintf(w.u.welcome.server_version, sizeof(w.u.welcome.server_version), AMBERD_VERSION);
	w.u.welcome.max_message = D.cfg.max_message;
	w.u.welcome.hold_ms = D.cfg.hold_ms;
	w.u.welcome.event_timeout_ms = D.cfg.event_timeout_ms;
	amb_msg_free(&m);
	return send_msg(c, &w) == 0 ? 0 : -1;
}

static void denied(conn *c, const amb_msg *m)
{
	send_error(c, m->id, AMB_EXIT_FAILED, NULL,
		   "permission denied: %s needs root, amberd's own user or membership of group %s",
		   amb_msg_kind_name(m->kind), D.cfg.backup_group[0] ? D.cfg.backup_group : "root");
	ev_log(AMB_EV_CLIENT_DENIED, AMB_SEV_WARNING, NULL, NULL, NULL, NULL, NULL, AMB_FAIL_NONE,
	       "%s (pid %d, uid %u) was refused %s: not in group %s", c->name, (int)c->cred.pid,
	       (unsigned)c->cred.uid, amb_msg_kind_name(m->kind), D.cfg.backup_group);
}

static void writer_loop(conn *c)
{
	for (;;) {
		amb_msg m;
		int rc = read_msg(c, &m);
		if (rc == 2)
			continue;
		if (rc != 1)
			return;
		if (!role_allows(AMB_ROLE_WRITER, m.kind)) {
			send_error(c, m.id, AMB_EXIT_BAD_INPUT, "kind", "%s is not a writer request",
				   amb_msg_kind_name(m.kind));
			amb_msg_free(&m);
			continue;
		}
		amb_msg resp;
		memset(&resp, 0, sizeof(resp));
		switch (m.kind) {
		case AMB_MSG_REGISTER: {
			if (c->w) {
				send_error(c, m.id, AMB_EXIT_BAD_INPUT, NULL, "already registered");
				break;
			}
			char err[AMB_TEXT_MAX];
			uint64_t id = m.id;
			char name[AMB_NAME_BUF];
			snprintf(name, sizeof(name), "%s", m.u.reg.metadata.name);
			rc = dw_register(c->fd, c->cred.pid, c->cred.uid, &m, &c->w, err, sizeof(err));
			if (rc) {
				if (rc != -EPERM)
					ev_log(AMB_EV_WRITER_REFUSED, AMB_SEV_ERROR, NULL, NULL, NULL, name,
					       NULL, AMB_FAIL_NONE, "writer %s refused: %s", name, err);
				send_error(c, id, rc == -EPERM ? AMB_EXIT_FAILED : AMB_EXIT_BAD_INPUT,
					   NULL, "registration refused: %s", err);
				break;
			}
			resp_ok(&resp, id);
			send_msg(c, &resp);
			break;
		}
		case AMB_MSG_UNREGISTER:
			if (c->w) {
				char name[AMB_NAME_BUF];
				pthread_mutex_lock(&D.mu); /* md changes with identify */
				snprintf(name, sizeof(name), "%s", c->w->md->name);
				c->w->gone = true;
				pthread_cond_broadcast(&D.cv);
				pthread_mutex_unlock(&D.mu);
				ev_log(AMB_EV_WRITER_UNREGISTERED, AMB_SEV_INFO, NULL, NULL, NULL, name,
				       NULL, AMB_FAIL_NONE, "writer %s unregistered", name);
			}
			resp_ok(&resp, m.id);
			send_msg(c, &resp);
			break;
		case AMB_MSG_REPLY:
			if (!c->w) {
				send_error(c, m.id, AMB_EXIT_BAD_INPUT, NULL, "reply before register");
				break;
			}
			dw_reply(c->w, &m);
			break;
		case AMB_MSG_LIST_WRITERS:
			pthread_mutex_lock(&D.mu);
			rc = dw_list(&resp);
			pthread_mutex_unlock(&D.mu);
			resp.id = m.id;
			if (rc)
				send_error(c, m.id, AMB_EXIT_FAILED, NULL, "cannot list writers");
			else
				send_msg(c, &resp);
			break;
		default:
			break;
		}
		amb_msg_free(&resp);
		amb_msg_free(&m);
	}
}

static void client_loop(conn *c)
{
	for (;;) {
		amb_msg m;
		int rc = read_msg(c, &m);
		if (rc == 2)
			continue;
		if (rc != 1)
			return;
		if (!role_allows(c->role, m.kind)) {
			send_error(c, m.id, AMB_EXIT_BAD_INPUT, "kind",
				   "%s is not allowed for the %s role", amb_msg_kind_name(m.kind),
				   amb_role_name(c->role));
			amb_msg_free(&m);
			continue;
		}
		if (needs_backup_perm(m.kind) &&
		    !perm_backup(c->cred.uid, c->cred.gid, c->groups, c->ngroups)) {
			denied(c, &m);
			amb_msg_free(&m);
			continue;
		}
		amb_msg resp;
		memset(&resp, 0, sizeof(resp));
		bool follow = false;
		uint64_t since = 0;
		dsession *closing = NULL;
		switch (m.kind) {
		case AMB_MSG_LIST_WRITERS:
			pthread_mutex_lock(&D.mu);
			rc = dw_list(&resp);
			pthread_mutex_unlock(&D.mu);
			if (rc)
				resp_error(&resp, m.id, AMB_EXIT_FAILED, AMB_FAIL_NONE,
					   "cannot list writers: %s", strerror(-rc));
			resp.id = m.id;
			break;
		case AMB_MSG_LIST_PROVIDERS:
		case AMB_MSG_LIST_SHADOWS:
		case AMB_MSG_LIST_SHADOWSTORAGE:
		case AMB_MSG_SHADOW_DELETE:
		case AMB_MSG_SHADOW_EXPOSE:
		case AMB_MSG_SHADOW_UNEXPOSE:
			shadows_request(&m, &resp);
			break;
		case AMB_MSG_SHADOW_CREATE:
			session_shadow_create(c->fd, &m.u.create, &resp);
			resp.id = m.id;
			break;
		case AMB_MSG_EVENTS_LIST:
		case AMB_MSG_EVENTS_FOLLOW:
			events_request(&m, &resp, &follow, &since);
			break;
		default:
			session_request(c->fd, &c->session, &m, &resp, &closing);
			break;
		}
		rc = send_msg(c, &resp);
		amb_msg_free(&resp);
		amb_msg_free(&m);
		if (closing) {
			session_close_end(closing);
			closing = NULL;
		}
		if (rc != 0)
			return;
		if (follow) {
			events_follow(c->fd, since);
			return;
		}
	}
}

static void *conn_main(void *arg)
{
	conn *c = arg;
	socklen_t len = sizeof(c->cred);
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) != 0) {
		amberd_log("SO_PEERCRED: %s", strerror(errno));
		goto out;
	}
	socklen_t glen = sizeof(c->groups);
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &glen) == 0)
		c->ngroups = (int)(glen / sizeof(gid_t));
	else
		c->ngroups = 0; /* too many groups: only the primary group counts */
	if (handshake(c) != 0)
		goto out;
	if (c->role == AMB_ROLE_WRITER)
		writer_loop(c);
	else
		client_loop(c);
out:
	if (c->w)
		dw_connection_closed(c->w);
	if (c->session)
		session_connection_closed(c->session);
	close(c->fd);
	free(c);
	pthread_mutex_lock(&D.mu);
	D.conns--;
	pthread_cond_broadcast(&D.cv);
	pthread_mutex_unlock(&D.mu);
	return NULL;
}

int conn_start(int fd)
{
	pthread_mutex_lock(&D.mu);
	if (D.conns >= AMBERD_MAX_CONNS || D.stopping) {
		pthread_mutex_unlock(&D.mu);
		close(fd);
		return -EAGAIN;
	}
	D.conns++;
	pthread_mutex_unlock(&D.mu);
	conn *c = calloc(1, sizeof(*c));
	if (c)
		c->fd = fd;
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	int rc = c ? pthread_create(&t, &a, conn_main, c) : ENOMEM;
	pthread_attr_destroy(&a);
	if (rc) {
		free(c);
		close(fd);
		pthread_mutex_lock(&D.mu);
		D.conns--;
		pthread_mutex_unlock(&D.mu);
		return -rc;
	}
	return 0;
}

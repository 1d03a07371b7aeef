/*
 * writers.c - the registered writers and the writer events sent to them.
 *
 * A writer is registered by its connection (hello role writer, then
 * register).  It is known by its metadata's name and instance uuid; a
 * writer that registers again with the same instance (after a reconnect,
 * or after amberd restarted) replaces its old entry.  When its connection
 * closes the writer is unlisted (event 2003) and every session waiting on
 * it sees it as gone.
 *
 * Registration checks (design.md section 8): every path the metadata
 * declares (file sets, logs, checkpoint, excludes) must be owned by the
 * peer's uid (SO_PEERCRED), unless the peer is root.  A path that does not
 * exist is checked through its nearest existing parent.
 *
 * Events: dw_send() writes one writer event and records it in the writer's
 * small table of outstanding events; dw_reply() (called by the writer's
 * connection thread) files the reply there and wakes the waiters on D.cv.
 * A reply whose id or kind matches nothing outstanding is dropped with
 * event 2010 (a late reply after a timeout, or a confused writer).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/amberd.h"

dwriter *dw_find_name(const char *name)
{
	for (dwriter *w = D.writers; w; w = w->next)
		if (!w->gone && strcmp(w->md->name, name) == 0)
			return w;
	return NULL;
}

dwriter *dw_find_instance(const char *instance)
{
	for (dwriter *w = D.writers; w; w = w->next)
		if (!w->gone && strcmp(w->md->instance, instance) == 0)
			return w;
	return NULL;
}

void dw_ref(dwriter *w)
{
	w->refs++;
}

static void dw_free(dwriter *w)
{
	for (int i = 0; i < DW_MAX_PENDING; i++)
		if (w->pend[i].done)
			amb_msg_free(&w->pend[i].reply);
	amb_msg_free(&w->reg);
	amb_msg_free(&w->ident);
	pthread_mutex_destroy(&w->wmu);
	free(w);
}

void dw_unref(dwriter *w)
{
	if (--w->refs > 0)
		return;
	for (dwriter **p = &D.writers; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	dw_free(w);
}

/* Does uid own path (or, if it does not exist, its nearest parent)? */
static int owner_check(const char *path, uid_t uid, char *err, size_t errlen)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s", path);
	for (;;) {
		struct stat st;
		if (lstat(p, &st) == 0) {
			if (st.st_uid != uid) {
				snprintf(err, errlen, "%s is owned by uid %u, not by the writer's uid %u",
					 p, (unsigned)st.st_uid, (unsigned)uid);
				return -EPERM;
			}
			return 0;
		}
		if (errno != ENOENT && errno != ENOTDIR) {
			snprintf(err, errlen, "%s: %s", p, strerror(errno));
			return -errno;
		}
		char *slash = strrchr(p, '/');
		if (!slash || slash == p) {
			snprintf(err, errlen, "%s: no existing parent", path);
			return -ENOENT;
		}
		*slash = '\0';
	}
}

static int md_owner_check(const amb_writer_md *md, uid_t uid, char *err, size_t errlen)
{
	if (uid == 0)
		return 0;
	int rc;
	for (size_t c = 0; c < md->n_components; c++) {
		const amb_component *k = &md->components[c];
		for (size_t i = 0; i < k->n_files; i++)
			if ((rc = owner_check(k->files[i].path, uid, err, errlen)))
				return rc;
		for (size_t i = 0; i < k->n_logs; i++)
			if ((rc = owner_check(k->logs[i].path, uid, err, errlen)))
				return rc;
		if (k->checkpoint && (rc = owner_check(k->checkpoint, uid, err, errlen)))
			return rc;
	}
	for (size_t i = 0; i < md->n_excludes; i++)
		if ((rc = owner_check(md->excludes[i].path, uid, err, errlen)))
			return rc;
	return 0;
}

int dw_register(int fd, pid_t pid, uid_t uid, amb_msg *reg, dwriter **out, char *err,
		size_t errlen)
{
	const amb_writer_md *md = &reg->u.reg.metadata;
	int rc = md_owner_check(md, uid, err, errlen);
	if (rc) {
		ev_log(AMB_EV_WRITER_NOT_OWNER, AMB_SEV_ERROR, NULL, NULL, NULL, md->name, NULL,
		       AMB_FAIL_NONE, "writer %s (pid %d, uid %u) refused: %s", md->name, (int)pid,
		       (unsigned)uid, err);
		return rc;
	}
	dwriter *w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&w->wmu, NULL);
	w->fd = fd;
	w->pid = pid;
	w->uid = uid;
	w->reg = *reg;
	memset(reg, 0, sizeof(*reg));
	w->md = &w->reg.u.reg.metadata;
	w->state = AMB_WS_STABLE;
	w->next_id = 1;
	w->refs = 1; /* the connection's */

	pthread_mutex_lock(&D.mu);
	bool again = false;
	dwriter *old = dw_find_instance(w->md->instance);
	if (old) {
		/* the same instance again: the old connection is stale */
		old->gone = true;
		shutdown(old->fd, SHUT_RDWR); /* its connection thread ends */
		again = true;
	} else {
		/* a second writer with the same name must be another instance */
	}
	w->next = D.writers;
	D.writers = w;
	pthread_cond_broadcast(&D.cv);
	pthread_mutex_unlock(&D.mu);
	ev_log(AMB_EV_WRITER_REGISTERED, AMB_SEV_INFO, NULL, NULL, NULL, w->md->name, NULL,
	       AMB_FAIL_NONE, "writer %s registered%s (instance %s, pid %d, uid %u, %zu components)",
	       w->md->name, again ? " again" : "", w->md->instance, (int)pid, (unsigned)uid,
	       w->md->n_components);
	*out = w;
	return 0;
}

void dw_connection_closed(dwriter *w)
{
	char name[AMB_NAME_BUF];
	pthread_mutex_lock(&D.mu);
	bool was_gone = w->gone;
	w->gone = true;
	snprintf(name, sizeof(name), "%s", w->md->name);
	pthread_cond_broadcast(&D.cv);
	dw_unref(w);
	pthread_mutex_unlock(&D.mu);
	if (!was_gone)
		ev_log(AMB_EV_WRITER_LOST, AMB_SEV_WARNING, NULL, NULL, NULL, name, NULL,
		       AMB_FAIL_NONE, "writer %s disconnected", name);
}

void dw_reply(dwriter *w, amb_msg *reply)
{
	pthread_mutex_lock(&D.mu);
	for (int i = 0; i < DW_MAX_PENDING; i++) {
		dw_pending *p = &w->pend[i];
		if (p->id == reply->id && !p->done) {
			if (p->kind != reply->u.reply.event)
				break;
			p->done = true;
			p->reply = *reply;
			memset(reply, 0, sizeof(*reply));
			pthread_cond_broadcast(&D.cv);
			pthread_mutex_unlock(&D.mu);
			return;
		}
	}
	char name[AMB_NAME_BUF];
	snprintf(name, sizeof(name), "%s", w->md->name);
	pthread_mutex_unlock(&D.mu);
	if (reply->u.reply.event == AMB_MSG_ABORT) {
		/* amberd stops waiting for abort answers after a moment */
		amb_msg_free(reply);
		return;
	}
	ev_log(AMB_EV_WRITER_BAD_REPLY, AMB_SEV_WARNING, NULL, NULL, NULL, name, NULL,
	       AMB_FAIL_NONE, "writer %s: reply %" PRIu64 " to %s matches no outstanding event",
	       name, reply->id, amb_msg_kind_name(reply->u.reply.event) ?
				     amb_msg_kind_name(reply->u.reply.event) : "?");
	amb_msg_free(reply);
}

int64_t dw_send(dwriter *w, amb_msg_kind kind, const amb_wevent *ev)
{
	amb_msg m;
	memset(&m, 0, sizeof(m));
	m.kind = kind;
	m.u.wev = *ev;

	pthread_mutex_lock(&D.mu);
	if (w->gone) {
		pthread_mutex_unlock(&D.mu);
		return -ENOTCONN;
	}
	int slot = -1;
	for (int i = 0; i < DW_MAX_PENDING; i++)
		if (w->pend[i].id == 0) {
			slot = i;
			break;
		}
	if (slot < 0) {
		pthread_mutex_unlock(&D.mu);
		return -EBUSY;
	}
	m.id = w->next_id++;
	w->pend[slot].id = m.id;
	w->pend[slot].kind = kind;
	w->pend[slot].done = false;
	int fd = w->fd;
	pthread_mutex_unlock(&D.mu);

	char *json;
	size_t len;
	int rc = amb_msg_encode(&m, &json, &len);
	if (rc == 0) {
		pthread_mutex_lock(&w->wmu);
		rc = amb_frame_write(fd, json, len);
		pthread_mutex_unlock(&w->wmu);
		free(json);
	}
	if (rc != 0) {
		pthread_mutex_lock(&D.mu);
		dw_forget(w, m.id);
		pthread_mutex_unlock(&D.mu);
		return rc;
	}
	return (int64_t)m.id;
}

void dw_forget(dwriter *w, uint64_t id)
{
	for (int i = 0; i < DW_MAX_PENDING; i++)
		if (w->pend[i].id == id) {
			if (w->pend[i].done)
				amb_msg_free(&w->pend[i].reply);
			memset(&w->pend[i], 0, sizeof(w->pend[i]));
		}
}

int dw_list(amb_msg *out)
{
	size_t n = 0;
	for (dwriter *w = D.writers; w; w = w->next)
		if (!w->gone)
			n++;
	if (n > AMB_MAX_WRITERS)
		n = AMB_MAX_WRITERS;
	amb_msg m;
	memset(&m, 0, sizeof(m));
	m.kind = AMB_MSG_WRITER_LIST;
	m.id = 1;
	amb_writer_info *v = calloc(n ? n : 1, sizeof(*v));
	amb_failure *fails = calloc(n ? n : 1, sizeof(*fails));
	if (!v || !fails) {
		free(v);
		free(fails);
		return -ENOMEM;
	}
	size_t k = 0;
	for (dwriter *w = D.writers; w && k < n; w = w->next) {
		if (w->gone)
			continue;
		v[k].metadata = *w->md; /* shallow: encoded below, then copied */
		v[k].state = w->state;
		if (w->last_cls != AMB_FAIL_NONE) {
			fails[k].cls = w->last_cls;
			fails[k].message = w->last_msg[0] ? w->last_msg : NULL;
			v[k].last_error = &fails[k];
		}
		v[k].pid = w->pid > 0 ? w->pid : 1;
		v[k].uid = w->uid;
		k++;
	}
	m.u.writers.writers = v;
	m.u.writers.n_writers = k;
	char *json;
	size_t len;
	int rc = amb_msg_encode(&m, &json, &len);
	free(v);
	free(fails);
	if (rc)
		return rc;
	rc = amb_msg_decode(json, len, out, NULL, 0);
	free(json);
	return rc;
}

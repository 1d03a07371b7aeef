/*
 * session.c - requestor sessions and the backup sequence (design.md
 * section 3, docs/protocol.md sections 7 and 9, docs/amberd.md).
 *
 * A session belongs to the requestor connection that opened it; all its
 * requests run on that connection's thread, so the session's own fields
 * need no lock.  The writers, the registry and the busy flag are shared
 * and are touched under D.mu.
 *
 * Session states (explicit, checked on every request):
 *
 *   OPEN --gather--> GATHERED --snapshot--> CREATED --backup-complete--> COMPLETED
 *     |                 |          |           |                            |
 *     +-----------------+----------+-----------+---- abort / failure ----> ABORTED
 *   (restore sessions: OPEN/GATHERED --pre-restore--> RESTORING --post-restore--> RESTORED)
 *   close (any state) ends the session; its non-persistent shadows go.
 *
 * The snapshot itself (run_sequence) is a straight line of stages, each
 * sending one writer event to every participant and waiting for the
 * replies with a deadline:
 *
 *   prepare-backup -> prepare-snapshot, meanwhile [plan shadows, provider
 *   prepare] -> [precommit] -> [presync] -> freeze (hold timer starts)
 *   -> [FIFREEZE] -> provider commit
 *   -> [FITHAW] -> thaw (hold ends) -> post-snapshot -> [post_commit]
 *
 * Every wait ends at its deadline (the event timeout, and from freeze to
 * thaw the hold deadline), when a writer's connection drops, when the
 * requestor's connection drops, or when amberd stops; each of those leads
 * to abort_set(), which tells every participant to abort (they thaw), thaws
 * the filesystems and deletes the set's shadows.  Writers thaw themselves
 * at their own deadline anyway (libamber, and the store's ams_freeze
 * timer), so a stuck or killed amberd holds nothing.
 *
 * Only one set is in creation at a time (D.creating): a second one gets a
 * retryable "busy" (event 1003).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amber/writer.h"
#include "daemon/amberd.h"
#include "providers/fsfreeze.h"
#include "providers/provider.h"

enum sstate {
	SS_OPEN = 1,
	SS_GATHERED,
	SS_CREATED,
	SS_COMPLETED,
	SS_RESTORING,
	SS_RESTORED,
	SS_ABORTED,
};

typedef struct ssel {
	char writer[AMB_NAME_BUF];
	char component[AMB_NAME_BUF];
	amb_select_mode mode;
} ssel;

typedef struct svol {
	char path[PATH_MAX];
	char provider[AMB_NAME_BUF];
} svol;

/* One writer taking part in the sequence. */
typedef struct spart {
	dwriter *w;                  /* referenced */
	char name[AMB_NAME_BUF];
	bool verify;                 /* must take part: its failure fails the set */
	bool failed;                 /* dropped out */
	bool frozen;                 /* freeze answered ok */
	int64_t ev_id;               /* outstanding event, 0 = none */
	/* the last reply */
	bool ok;
	bool held;
	amb_fail_class cls;
	char msg[AMB_TEXT_MAX + 1];
	/* freeze answered: the writer's files it says it has not changed since
	 * prepare-snapshot, each inside one of its file sets (unchanged_take) */
	char **unchanged;
	size_t n_unchanged;
} spart;

struct dsession {
	amb_uuid id;
	amb_uuid set;
	amb_session_mode mode;
	amb_backup_type type;
	bool persistent;
	bool no_writers;
	char provider[AMB_NAME_BUF];
	enum sstate state;
	ssel *sels;
	size_t n_sels;
	svol *vols;
	size_t n_vols;
	spart *parts;
	size_t n_parts;
	dshadow *shadows;
	size_t n_shadows;
	int req_fd;                  /* the requestor's socket (-1: none) */
	struct dsession *next;
};

static dsession *sessions;

static const char *state_name(enum sstate st)
{
	switch (st) {
	case SS_OPEN: return "open";
	case SS_GATHERED: return "gathered";
	case SS_CREATED: return "created";
	case SS_COMPLETED: return "completed";
	case SS_RESTORING: return "restoring";
	case SS_RESTORED: return "restored";
	case SS_ABORTED: return "aborted";
	}
	return "?";
}

static amb_writer_state failed_state(amb_msg_kind k)
{
	switch (k) {
	case AMB_MSG_IDENTIFY: return AMB_WS_FAILED_AT_IDENTIFY;
	case AMB_MSG_PREPARE_BACKUP: return AMB_WS_FAILED_AT_PREPARE_BACKUP;
	case AMB_MSG_PREPARE_SNAPSHOT: return AMB_WS_FAILED_AT_PREPARE_SNAPSHOT;
	case AMB_MSG_FREEZE: return AMB_WS_FAILED_AT_FREEZE;
	case AMB_MSG_THAW: return AMB_WS_FAILED_AT_THAW;
	case AMB_MSG_POST_SNAPSHOT: return AMB_WS_FAILED_AT_POST_SNAPSHOT;
	case AMB_MSG_BACKUP_COMPLETE: return AMB_WS_FAILED_AT_BACKUP_COMPLETE;
	case AMB_MSG_PRE_RESTORE: return AMB_WS_FAILED_AT_PRE_RESTORE;
	case AMB_MSG_POST_RESTORE: return AMB_WS_FAILED_AT_POST_RESTORE;
	default: return AMB_WS_UNKNOWN;
	}
}

/* ------------------------------------------------------------ requestor */


/* ----------------------------------------------------------- writer I/O */

enum wait_end { WAIT_DONE, WAIT_REQ_GONE, WAIT_STOPPING };

/* Send kind to every participant still in (not failed).  ev is filled per
 * writer by fill (may be NULL). */
static void unchanged_free(spart *p)
{
	for (size_t k = 0; k < p->n_unchanged; k++)
		free(p->unchanged[k]);
	free(p->unchanged);
	p->unchanged = NULL;
	p->n_unchanged = 0;
}

/* The freeze reply's "unchanged" files that lie inside one of the writer's
 * own file sets (md): a writer speaks only for its own files. */
static void unchanged_take(spart *p, const amb_reply *r, const amb_writer_md *md)
{
	unchanged_free(p);
	if (!r->n_unchanged || !(p->unchanged = calloc(r->n_unchanged, sizeof(char *))))
		return;
	for (size_t k = 0; k < r->n_unchanged; k++) {
		const char *u = r->unchanged[k];
		bool mine = false;
		for (size_t q = 0; md && !mine && q < md->n_components; q++)
			for (size_t f = 0; !mine && f < md->components[q].n_files; f++) {
				const char *fp = md->components[q].files[f].path;
				size_t l = strlen(fp);
				mine = strncmp(u, fp, l) == 0 && (u[l] == '/' || (l == 1 && fp[0] == '/'));
			}
		if (!mine)
			amberd_log("writer %s listed %s as unchanged: not in its file sets, ignored",
			           p->name, u);
		else if ((p->unchanged[p->n_unchanged] = strdup(u)))
			p->n_unchanged++;
	}
}

typedef void (*fill_fn)(dsession *s, spart *p, amb_wevent *ev, void *arg);
static void fill_backup_complete(dsession *s, spart *p, amb_wevent *ev, void *arg);

static void send_all(dsession *s, amb_msg_kind kind, fill_fn fill, void *arg)
{
	for (size_t i = 0; i < s->n_parts; i++) {
		spart *p = &s->parts[i];
		p->ev_id = 0;
		p->ok = false;
		p->held = false;
		p->cls = AMB_FAIL_NONE;
		p->msg[0] = '\0';
		if (p->failed)
			continue;
		amb_wevent ev;
		memset(&ev, 0, sizeof(ev));
		snprintf(ev.session, sizeof(ev.session), "%s", s->id);
		if (kind != AMB_MSG_IDENTIFY && kind != AMB_MSG_PREPARE_BACKUP &&
		    kind != AMB_MSG_BACKUP_COMPLETE && kind != AMB_MSG_PRE_RESTORE &&
		    kind != AMB_MSG_POST_RESTORE)
			snprintf(ev.set, sizeof(ev.set), "%s", s->set);
		if (fill)
			fill(s, p, &ev, arg);
		int64_t id = dw_send(p->w, kind, &ev);
		if (fill == fill_backup_complete)
			free(ev.components);
		if (id < 0) {
			p->ev_id = -1; /* could not send: counts as lost */
			p->cls = AMB_FAIL_RETRYABLE;
			snprintf(p->msg, sizeof(p->msg), "cannot send %s: %s", amb_msg_kind_name(kind),
				 strerror((int)-id));
		} else {
			p->ev_id = id;
		}
	}
}

/*
 * Wait for the replies to the event just sent, until deadline (monotonic
 * ms).  Fills each participant's ok/held/cls/msg; a writer that did not
 * answer gets class timeout, one whose connection dropped class retryable.
 */
static enum wait_end wait_all(dsession *s, amb_msg_kind kind, uint64_t deadline)
{
	enum wait_end end = WAIT_DONE;
	pthread_mutex_lock(&D.mu);
	for (;;) {
		bool pending = false;
		for (size_t i = 0; i < s->n_parts; i++) {
			spart *p = &s->parts[i];
			if (p->failed || p->ev_id <= 0)
				continue;
			dwriter *w = p->w;
			dw_pending *pd = NULL;
			for (int k = 0; k < DW_MAX_PENDING; k++)
				if (w->pend[k].id == (uint64_t)p->ev_id)
					pd = &w->pend[k];
			if (pd && pd->done) {
				amb_reply *r = &pd->reply.u.reply;
				p->ok = r->status == AMB_REPLY_OK;
				p->cls = r->cls;
				p->held = r->has_held_writes && r->held_writes;
				snprintf(p->msg, sizeof(p->msg), "%s", r->message ? r->message : "");
				if (kind == AMB_MSG_FREEZE && p->ok)
					unchanged_take(p, r, w->md);
				if (kind == AMB_MSG_IDENTIFY && p->ok && r->metadata) {
					/* keep the fresh metadata */
					amb_msg_free(&w->ident);
					w->ident = pd->reply;
					memset(&pd->reply, 0, sizeof(pd->reply));
					w->md = w->ident.u.reply.metadata;
				}
				dw_forget(w, (uint64_t)p->ev_id);
				p->ev_id = 0;
				continue;
			}
			if (w->gone || !pd) {
				p->ev_id = -1;
				p->cls = AMB_FAIL_RETRYABLE;
				snprintf(p->msg, sizeof(p->msg), "writer disconnected");
				continue;
			}
			pending = true;
		}
		if (!pending)
			break;
		if (D.stopping) {
			end = WAIT_STOPPING;
			break;
		}
		if (mono_ms() >= deadline)
			break;
		pthread_mutex_unlock(&D.mu);
		bool gone = amberd_peer_gone(s->req_fd);
		pthread_mutex_lock(&D.mu);
		if (gone) {
			end = WAIT_REQ_GONE;
			break;
		}
		uint64_t left = deadline - mono_ms();
		cond_wait_ms(left < 20 ? (unsigned)left + 1 : 20);
	}
	/* whatever is still outstanding timed out */
	for (size_t i = 0; i < s->n_parts; i++) {
		spart *p = &s->parts[i];
		if (p->failed || p->ev_id <= 0)
			continue;
		dw_forget(p->w, (uint64_t)p->ev_id);
		p->ev_id = -2;
		p->cls = AMB_FAIL_TIMEOUT;
		snprintf(p->msg, sizeof(p->msg), "no answer to %s in time", amb_msg_kind_name(kind));
	}
	pthread_mutex_unlock(&D.mu);
	return end;
}

/* After wait_all: record failures (writer state, events).  Returns the
 * number of participants that failed now; *verify_failed says whether one
 * of them was a verify writer. */
static size_t note_failures(dsession *s, amb_msg_kind kind, bool *verify_failed,
			    amb_fail_class *cls, char *why, size_t whylen)
{
	size_t n = 0;
	*verify_failed = false;
	for (size_t i = 0; i < s->n_parts; i++) {
		spart *p = &s->parts[i];
		if (p->failed || p->ok)
			continue;
		if (p->cls == AMB_FAIL_NONE)
			p->cls = AMB_FAIL_NONRETRYABLE;
		n++;
		p->failed = true;
		if (p->verify)
			*verify_failed = true;
		if (n == 1 || p->verify) {
			*cls = p->cls;
			snprintf(why, whylen, "writer %s failed at %s (%s)%s%s", p->name,
				 amb_msg_kind_name(kind), amb_fail_class_name(p->cls),
				 p->msg[0] ? ": " : "", p->msg);
		}
		pthread_mutex_lock(&D.mu);
		p->w->state = failed_state(kind);
		p->w->last_cls = p->cls;
		snprintf(p->w->last_msg, sizeof(p->w->last_msg), "%s",
			 p->msg[0] ? p->msg : amb_fail_class_name(p->cls));
		pthread_mutex_unlock(&D.mu);
		if (p->ev_id == -2)
			ev_log(AMB_EV_WRITER_TIMEOUT, AMB_SEV_ERROR, s->id, s->set, NULL, p->name, NULL,
			       AMB_FAIL_TIMEOUT, "writer %s did not answer %s in time", p->name,
			       amb_msg_kind_name(kind));
		else
			ev_log(AMB_EV_WRITER_FAILED, AMB_SEV_ERROR, s->id, s->set, NULL, p->name, NULL,
			       p->cls, "writer %s failed at %s (%s)%s%s", p->name,
			       amb_msg_kind_name(kind), amb_fail_class_name(p->cls),
			       p->msg[0] ? ": " : "", p->msg);
	}
	return n;
}

static void set_states(dsession *s, amb_writer_state st)
{
	pthread_mutex_lock(&D.mu);
	for (size_t i = 0; i < s->n_parts; i++)
		if (!s->parts[i].failed) {
			s->parts[i].w->state = st;
			if (st == AMB_WS_STABLE || st == AMB_WS_WAITING_FOR_FREEZE) {
				s->parts[i].w->last_cls = AMB_FAIL_NONE;
				s->parts[i].w->last_msg[0] = '\0';
			}
		}
	pthread_mutex_unlock(&D.mu);
}

static void parts_release(dsession *s)
{
	pthread_mutex_lock(&D.mu);
	for (size_t i = 0; i < s->n_parts; i++) {
		dw_unref(s->parts[i].w);
		unchanged_free(&s->parts[i]);
	}
	pthread_mutex_unlock(&D.mu);
	free(s->parts);
	s->parts = NULL;
	s->n_parts = 0;
}

/* ---------------------------------------------------------- participants */


static bool writer_on_volumes(const amb_writer_md *md, const svol *vols, size_t n)
{
	for (size_t c = 0; c < md->n_components; c++) {
		const amb_component *k = &md->components[c];
		for (size_t f = 0; f < k->n_files + k->n_logs; f++) {
			const char *p = f < k->n_files ? k->files[f].path : k->logs[f - k->n_files].path;
			for (size_t v = 0; v < n; v++)
				if (amberd_path_within(p, vols[v].path) || amberd_path_within(vols[v].path, p))
					return true;
		}
	}
	return false;
}

static const ssel *find_sel(const dsession *s, const char *writer)
{
	const ssel *best = NULL;
	for (size_t i = 0; i < s->n_sels; i++)
		if (strcmp(s->sels[i].writer, writer) == 0) {
			if (!s->sels[i].component[0])
				return &s->sels[i];
			best = best ? best : &s->sels[i];
		}
	return best;
}

/* Choose the writers that take part.  Under no lock.  Returns 0 or an
 * exit class with the message in why. */
static int pick_participants(dsession *s, char *why, size_t whylen)
{
	parts_release(s);
	if (s->no_writers)
		return 0;
	bool explicit = false;
	for (size_t i = 0; i < s->n_sels; i++)
		if (s->sels[i].mode != AMB_SELECT_EXCLUDE)
			explicit = true;
	pthread_mutex_lock(&D.mu);
	size_t n = 0;
	for (dwriter *w = D.writers; w; w = w->next)
		n++;
	s->parts = calloc(n ? n : 1, sizeof(*s->parts));
	if (!s->parts) {
		pthread_mutex_unlock(&D.mu);
		snprintf(why, whylen, "out of memory");
		return AMB_EXIT_FAILED;
	}
	for (dwriter *w = D.writers; w; w = w->next) {
		if (w->gone)
			continue;
		const ssel *sel = find_sel(s, w->md->name);
		if (sel && sel->mode == AMB_SELECT_EXCLUDE && !sel->component[0])
			continue;
		bool take;
		if (explicit)
			take = sel && sel->mode != AMB_SELECT_EXCLUDE;
		else
			take = writer_on_volumes(w->md, s->vols, s->n_vols);
		if (!take)
			continue;
		spart *p = &s->parts[s->n_parts++];
		p->w = w;
		dw_ref(w);
		snprintf(p->name, sizeof(p->name), "%s", w->md->name);
		p->verify = sel && sel->mode == AMB_SELECT_VERIFY;
	}
	/* every verify writer must be here */
	for (size_t i = 0; i < s->n_sels; i++) {
		if (s->sels[i].mode != AMB_SELECT_VERIFY)
			continue;
		bool found = false;
		for (size_t k = 0; k < s->n_parts; k++)
			if (strcmp(s->parts[k].name, s->sels[i].writer) == 0)
				found = true;
		if (!found) {
			pthread_mutex_unlock(&D.mu);
			snprintf(why, whylen, "writer %s (writer verify) is not registered",
				 s->sels[i].writer);
			return AMB_EXIT_FAILED;
		}
	}
	pthread_mutex_unlock(&D.mu);
	return 0;
}

/* ------------------------------------------------------------ the fills */

static void fill_volumes(dsession *s, spart *p, amb_wevent *ev, void *arg)
{
	(void)p;
	(void)arg;
	/* one sequence at a time (D.creating): a static array is enough */
	static char *vols[AMB_MAX_VOLUMES];
	for (size_t i = 0; i < s->n_vols; i++)
		vols[i] = s->vols[i].path;
	ev->volumes = vols;
	ev->n_volumes = s->n_vols;
}

static void fill_prepare_backup(dsession *s, spart *p, amb_wevent *ev, void *arg)
{
	ev->backup_type = s->type ? s->type : AMB_BACKUP_COPY;
	fill_volumes(s, p, ev, arg);
}

static void fill_freeze(dsession *s, spart *p, amb_wevent *ev, void *arg)
{
	(void)s;
	(void)p;
	ev->hold_ms = *(unsigned *)arg;
}

static void fill_post_snapshot(dsession *s, spart *p, amb_wevent *ev, void *arg)
{
	(void)p;
	amb_shadow_loc *locs = arg;
	for (size_t i = 0; i < s->n_shadows; i++) {
		locs[i].volume = s->shadows[i].volume;
		locs[i].path = s->shadows[i].path;
	}
	ev->shadows = locs;
	ev->n_shadows = s->n_shadows;
}

static void fill_abort(dsession *s, spart *p, amb_wevent *ev, void *arg)
{
	(void)s;
	(void)p;
	const amb_failure *f = arg;
	ev->cls = f->cls;
	ev->message = f->message;
}

/* ------------------------------------------------------------ abort */

static void remove_shadows(dsession *s, bool only_volatile)
{
	size_t keep = 0;
	for (size_t i = 0; i < s->n_shadows; i++) {
		if (only_volatile && s->shadows[i].persistent && s->shadows[i].ready) {
			s->shadows[keep++] = s->shadows[i];
			continue;
		}
		char err[512];
		if (shadows_delete(s->shadows[i].id, err, sizeof(err)) != 0 && err[0])
			amberd_log("session %s: %s", s->id, err);
	}
	s->n_shadows = keep;
}

/* Tell every participant to abort (they thaw if frozen) and wait briefly
 * for the answers; delete the set's shadows: all of them while the set is
 * being created, only the volatile ones once it exists (a persistent
 * shadow outlives its session). */
static void abort_set(dsession *s, amb_fail_class cls, const char *why, uint32_t code)
{
	bool created = s->state == SS_CREATED || s->state == SS_COMPLETED;
	amb_failure f = {cls, (char *)why};
	for (size_t i = 0; i < s->n_parts; i++)
		s->parts[i].failed = s->parts[i].failed && s->parts[i].w->gone;
	send_all(s, AMB_MSG_ABORT, fill_abort, &f);
	/* The answers change nothing (a writer thaws when abort arrives, or by
	 * its own deadline); wait briefly so that the listing shows them, but
	 * never long for a stuck writer: the requestor is told at once. */
	wait_all(s, AMB_MSG_ABORT, mono_ms() + 100);
	pthread_mutex_lock(&D.mu);
	for (size_t i = 0; i < s->n_parts; i++) {
		dwriter *w = s->parts[i].w;
		if (w->state >= AMB_WS_WAITING_FOR_FREEZE && w->state <= AMB_WS_WAITING_FOR_BACKUP_COMPLETE)
			w->state = AMB_WS_STABLE;
	}
	pthread_mutex_unlock(&D.mu);
	remove_shadows(s, created);
	s->state = SS_ABORTED;
	ev_log(code, code == AMB_EV_SESSION_ABORTED ? AMB_SEV_WARNING : AMB_SEV_ERROR, s->id,
	       s->set, NULL, NULL, NULL, code == AMB_EV_SESSION_ABORTED ? AMB_FAIL_NONE : cls,
	       "shadow set %s aborted: %s", s->set, why);
}

/* ------------------------------------------------------------ the sequence */

static uint64_t ev_deadline(void)
{
	return mono_ms() + D.cfg.event_timeout_ms;
}

static bool take_busy(void)
{
	pthread_mutex_lock(&D.mu);
	bool busy = D.creating;
	D.creating = true;
	pthread_mutex_unlock(&D.mu);
	return !busy;
}

static void drop_busy(void)
{
	pthread_mutex_lock(&D.mu);
	D.creating = false;
	pthread_mutex_unlock(&D.mu);
}

/*
 * Run one stage: send kind, wait until deadline, note failures.  Returns 0
 * to go on, or an exit class with *cls / why set when the set must be
 * aborted (abort_failures: any failure aborts, as for freeze and thaw;
 * otherwise only a verify writer's failure does, and the other failed
 * writers drop out).
 */
static int stage(dsession *s, amb_msg_kind kind, fill_fn fill, void *arg, uint64_t deadline,
		 bool abort_failures, amb_fail_class *cls, char *why, size_t whylen)
{
	send_all(s, kind, fill, arg);
	enum wait_end end = wait_all(s, kind, deadline);
	if (end == WAIT_REQ_GONE) {
		*cls = AMB_FAIL_RETRYABLE;
		snprintf(why, whylen, "the requestor disconnected during %s", amb_msg_kind_name(kind));
		return -1;
	}
	if (end == WAIT_STOPPING) {
		*cls = AMB_FAIL_RETRYABLE;
		snprintf(why, whylen, "amberd is stopping");
		return AMB_EXIT_RETRYABLE;
	}
	bool verify_failed;
	size_t nf = note_failures(s, kind, &verify_failed, cls, why, whylen);
	if (nf && (abort_failures || verify_failed))
		return *cls == AMB_FAIL_NONRETRYABLE ? AMB_EXIT_FAILED : AMB_EXIT_RETRYABLE;
	return 0;
}

typedef struct fsf {
	amb_freeze *h;
	char path[PATH_MAX];
} fsf;

/* The volumes' presync (amb_provider_presync), each logged on failure,
 * then every sidecar settled that the presync did not settle (its volume's
 * presync failed or is off): 0, or the first settle's -errno (message in
 * why). */
static int presync_all(dsession *s, char *why, size_t whylen)
{
	for (size_t i = 0; D.cfg.presync && i < s->n_shadows; i++) {
		if (amb_provider_presync(s->shadows[i].volume) == 0)
			s->shadows[i].unsettled = false; /* its syncfs wrote the sidecar */
		else
			amberd_log("presync of %s: %s", s->shadows[i].volume,
				amb_provider_errmsg());
	}
	for (size_t i = 0; i < s->n_shadows; i++) {
		if (!s->shadows[i].unsettled)
			continue;
		int r = test_fail("settle");
		if (r)
			snprintf(why, whylen, "%s: its sidecar cannot be made durable: %s",
				 s->shadows[i].path, strerror(-r));
		else if ((r = amb_provider_settle(s->shadows[i].path)) != 0)
			snprintf(why, whylen, "%s", amb_provider_errmsg());
		if (r)
			return r;
		s->shadows[i].unsettled = false;
	}
	return 0;
}

/* How a set fails that could not be planned (provider choice, registry
 * record, provider prepare): a volume no provider (or not the one asked
 * for) can serve is the requestor's mistake; out of space (the registry's
 * or the shadow storage's) is retryable, as at the commit: room may be
 * made.  The exit code, the class into *cls. */
static int plan_failure(int r, amb_fail_class *cls)
{
	*cls = r == -ENOSPC || r == -ENOMEM ? AMB_FAIL_OUT_OF_RESOURCES : AMB_FAIL_NONRETRYABLE;
	if (r == -EINVAL || r == -ENOENT || r == -ENOTDIR || r == -EOPNOTSUPP)
		return AMB_EXIT_BAD_INPUT;
	return *cls == AMB_FAIL_OUT_OF_RESOURCES ? AMB_EXIT_RETRYABLE : AMB_EXIT_FAILED;
}

/* The shadows of a set planned (run_sequence), on a thread of their own. */
typedef struct plan_job {
	dsession *s;
	int r;                          /* 0, or the first failure */
	char why[AMB_TEXT_MAX + 1];
} plan_job;

static void *plan_run(void *arg)
{
	plan_job *pj = arg;
	dsession *s = pj->s;
	for (size_t i = 0; i < s->n_vols; i++) {
		const char *prov = s->vols[i].provider[0] ? s->vols[i].provider : s->provider;
		pj->r = shadows_plan(s->vols[i].path, prov, s->set, s->persistent, s->n_parts > 0,
				     &s->shadows[s->n_shadows], pj->why, sizeof(pj->why));
		if (pj->r)
			return NULL;
		s->n_shadows++;
	}
	return NULL;
}

/*
 * The snapshot of s's volumes.  On success s->shadows holds the set and
 * the answer is a snapshot-set; on failure the set is aborted and the
 * answer is an error.  Returns -1 when the requestor is gone (no answer).
 */
static int run_sequence(dsession *s, bool backup, uint64_t req_id, amb_msg *resp)
{
	char why[AMB_TEXT_MAX + 1] = "";
	amb_fail_class cls = AMB_FAIL_NONE;
	int rc = 0;
	uint32_t abort_code = AMB_EV_SESSION_ABORTED_FAILURE;
	fsf *frozen_fs = NULL;
	size_t n_frozen_fs = 0;
	amb_shadow_loc locs[AMB_MAX_VOLUMES];

	if (!take_busy()) {
		ev_log(AMB_EV_SESSION_BUSY, AMB_SEV_WARNING, s->id, s->set, NULL, NULL, NULL,
		       AMB_FAIL_RETRYABLE, "shadow set %s refused: another set is in creation",
		       s->set);
		resp_error(resp, req_id, AMB_EXIT_RETRYABLE, AMB_FAIL_RETRYABLE,
			   "busy: another shadow set is being created; try again");
		return 0;
	}
	if ((rc = pick_participants(s, why, sizeof(why)))) {
		drop_busy();
		resp_error(resp, req_id, (amb_exit_class)rc, AMB_FAIL_NONRETRYABLE, "%s", why);
		return 0;
	}
	set_states(s, AMB_WS_STABLE);

	/* 3. PrepareForBackup */
	if (backup) {
		rc = stage(s, AMB_MSG_PREPARE_BACKUP, fill_prepare_backup, NULL, ev_deadline(), false,
			   &cls, why, sizeof(why));
		if (rc)
			goto fail;
		ev_log(AMB_EV_PREPARE_BACKUP_DONE, AMB_SEV_INFO, s->id, s->set, NULL, NULL, NULL,
		       AMB_FAIL_NONE, "prepare-backup answered by %zu writers", s->n_parts);
		test_stall("prepare-backup");
	}

	/* plan the shadows (provider choice, registry record, provider
	 * prepare: two durable writes each) on a thread of their own while
	 * the writers answer PrepareForSnapshot (a log roll): neither depends
	 * on the other, and one after the other they added up on the
	 * requestor's path.  Nothing is made before both are done.  (Not the
	 * presync: run during the writers' log rolls, it left their renames
	 * and new files to the snapshot's transaction commit, inside the hold:
	 * btrfs median hold 15.5 ms against 10-11 in bench/hold_bench.sh) */
	s->shadows = calloc(s->n_vols, sizeof(*s->shadows));
	if (!s->shadows) {
		cls = AMB_FAIL_OUT_OF_RESOURCES;
		snprintf(why, sizeof(why), "out of memory");
		rc = AMB_EXIT_RETRYABLE;
		goto fail;
	}
	/* a volume no provider (or not the one asked for) can serve is the
	 * requestor's mistake: refused before any writer is told anything */
	for (size_t i = 0; i < s->n_vols; i++) {
		const char *prov = s->vols[i].provider[0] ? s->vols[i].provider : s->provider;
		const amb_provider *p;
		int r = amb_provider_choose(s->vols[i].path, prov && prov[0] ? prov : NULL, &p);
		if (r) {
			snprintf(why, sizeof(why), "%s", amb_provider_errmsg());
			rc = plan_failure(r, &cls);
			goto fail;
		}
	}
	plan_job pj = {.s = s};
	pthread_t plan_tid;
	bool plan_thread = pthread_create(&plan_tid, NULL, plan_run, &pj) == 0;
	if (!plan_thread)
		plan_run(&pj);

	/* 4. PrepareForSnapshot */
	rc = stage(s, AMB_MSG_PREPARE_SNAPSHOT, fill_volumes, NULL, ev_deadline(), false, &cls, why,
		   sizeof(why));
	if (plan_thread)
		pthread_join(plan_tid, NULL);
	if (rc)
		goto fail;
	if (pj.r) {
		snprintf(why, sizeof(why), "%s", pj.why);
		rc = plan_failure(pj.r, &cls);
		goto fail;
	}
	set_states(s, AMB_WS_WAITING_FOR_FREEZE);
	/* what the provider can do before the hold (reflink: the clone,
	 * which the commit then only brings up to date); a failure leaves
	 * the commit more to do */
	for (size_t i = 0; i < s->n_shadows; i++) {
		const amb_provider *p = amb_provider_find(s->shadows[i].provider);
		if (amb_provider_precommit(p, s->shadows[i].volume, s->shadows[i].path) != 0)
			amberd_log("precommit of %s: %s", s->shadows[i].volume,
				amb_provider_errmsg());
	}
	/* then the volumes' dirty data written, outside the hold: the commit
	 * below, made while writes are held, then has less to write.  A
	 * speed-up, and the settling of the sidecars shadows_plan left
	 * unsettled (a btrfs sidecar is on the volume's filesystem, which the
	 * syncfs writes whole: two fsyncs fewer on the way to the freeze).  A
	 * failed presync is logged and the sidecars are fsynced instead; only
	 * a sidecar that cannot be made durable fails the set */
	{
		int r = presync_all(s, why, sizeof(why));
		if (r) {
			rc = plan_failure(r, &cls);
			goto fail;
		}
	}
	ev_log(AMB_EV_SNAPSHOT_STARTED, AMB_SEV_INFO, s->id, s->set, NULL, NULL, NULL, AMB_FAIL_NONE,
	       "creating shadow set %s: %zu volumes, %zu writers", s->set, s->n_vols, s->n_parts);
	test_stall("prepare-snapshot");

	/* 5. Freeze: the hold starts now */
	unsigned hold = D.cfg.hold_ms;
	pthread_mutex_lock(&D.mu);
	for (size_t i = 0; i < s->n_parts; i++)
		if (!s->parts[i].failed && s->parts[i].w->md->max_hold_ms < hold)
			hold = s->parts[i].w->md->max_hold_ms;
	pthread_mutex_unlock(&D.mu);
	uint64_t t_freeze = mono_ms();
	uint64_t hold_deadline = t_freeze + hold;
	uint64_t dl = ev_deadline() < hold_deadline ? ev_deadline() : hold_deadline;
	rc = stage(s, AMB_MSG_FREEZE, fill_freeze, &hold, dl, true, &cls, why, sizeof(why));
	for (size_t i = 0; i < s->n_parts; i++)
		s->parts[i].frozen = !s->parts[i].failed && s->parts[i].ok;
	if (rc) {
		if (cls == AMB_FAIL_TIMEOUT && mono_ms() >= hold_deadline) {
			ev_log(AMB_EV_HOLD_DEADLINE_EXCEEDED, AMB_SEV_ERROR, s->id, s->set, NULL, NULL,
			       NULL, AMB_FAIL_TIMEOUT,
			       "hold deadline of %u ms passed before every writer froze; thawing", hold);
		}
		goto fail;
	}
	for (size_t i = 0; i < s->n_parts; i++)
		if (!s->parts[i].failed)
			ev_log(AMB_EV_WRITER_FROZEN, AMB_SEV_INFO, s->id, s->set, NULL, s->parts[i].name,
			       NULL, AMB_FAIL_NONE, "writer %s holds writes%s%.0zu%s", s->parts[i].name,
			       s->parts[i].n_unchanged ? " (" : "", s->parts[i].n_unchanged,
			       s->parts[i].n_unchanged ? " of its files unchanged since prepare-snapshot)"
			                               : "");
	set_states(s, AMB_WS_WAITING_FOR_THAW);
	ev_log(AMB_EV_FREEZE_DONE, AMB_SEV_INFO, s->id, s->set, NULL, NULL, NULL, AMB_FAIL_NONE,
	       "%zu writers hold writes (hold limit %u ms)", s->n_parts, hold);
	test_stall("freeze");

	/* FIFREEZE where the provider allows and the configuration wants it */
	frozen_fs = calloc(s->n_shadows ? s->n_shadows : 1, sizeof(*frozen_fs));
	for (size_t i = 0; frozen_fs && D.cfg.fsfreeze && i < s->n_shadows; i++) {
		const amb_provider *p = amb_provider_find(s->shadows[i].provider);
		if (!p || !(p->needs_fsfreeze ||
			    amb_provider_can_fsfreeze(p, s->shadows[i].volume, s->shadows[i].path) == 1))
			continue;
		uint64_t now = mono_ms();
		unsigned left = now < hold_deadline ? (unsigned)(hold_deadline - now) : 1;
		fsf *f = &frozen_fs[n_frozen_fs];
		int r = amb_fsfreeze(s->shadows[i].volume, left, &f->h);
		if (r == 0) {
			snprintf(f->path, sizeof(f->path), "%s", s->shadows[i].volume);
			n_frozen_fs++;
			ev_log(AMB_EV_FS_FROZEN, AMB_SEV_INFO, s->id, s->set, NULL, NULL,
			       s->shadows[i].volume, AMB_FAIL_NONE, "froze the filesystem of %s",
			       s->shadows[i].volume);
		} else if (p->needs_fsfreeze) {
			cls = AMB_FAIL_NONRETRYABLE;
			snprintf(why, sizeof(why), "cannot freeze the filesystem of %s: %s",
				 s->shadows[i].volume, amb_provider_errmsg());
			rc = AMB_EXIT_FAILED;
			goto fail;
		}
	}

	/* 6. Commit */
	for (size_t i = 0; i < s->n_shadows; i++) {
		const amb_provider *p = amb_provider_find(s->shadows[i].provider);
		uint64_t t0 = mono_ms();
		/* what the frozen writers said they left unchanged since
		 * prepare-snapshot, for a provider that copied before the freeze */
		const char *unch[AMB_MAX_UNCHANGED];
		size_t nu = 0;
		for (size_t k = 0; k < s->n_parts; k++)
			for (size_t q = 0; s->parts[k].frozen && q < s->parts[k].n_unchanged &&
			                   nu < AMB_MAX_UNCHANGED; q++)
				unch[nu++] = s->parts[k].unchanged[q];
		int r = amb_provider_commit_unchanged(p, s->shadows[i].volume, s->shadows[i].path,
		                                      unch, nu);
		if (r) {
			ev_log(AMB_EV_PROVIDER_FAILED, AMB_SEV_ERROR, s->id, s->set, s->shadows[i].id,
			       NULL, s->shadows[i].volume, AMB_FAIL_NONRETRYABLE,
			       "provider %s could not shadow %s: %s", p->name, s->shadows[i].volume,
			       amb_provider_errmsg());
			cls = r == -ENOSPC ? AMB_FAIL_OUT_OF_RESOURCES : AMB_FAIL_NONRETRYABLE;
			snprintf(why, sizeof(why), "provider %s: %s", p->name, amb_provider_errmsg());
			rc = cls == AMB_FAIL_OUT_OF_RESOURCES ? AMB_EXIT_RETRYABLE : AMB_EXIT_FAILED;
			goto fail;
		}
		if (p->holds_writes_during_copy)
			ev_log(AMB_EV_COPY_PROVIDER_HOLDING, AMB_SEV_WARNING, s->id, s->set,
			       s->shadows[i].id, NULL, s->shadows[i].volume, AMB_FAIL_NONE,
			       "the copy provider held writes for %" PRIu64 " ms while copying %s",
			       mono_ms() - t0, s->shadows[i].volume);
		if (mono_ms() >= hold_deadline) {
			cls = AMB_FAIL_TIMEOUT;
			abort_code = AMB_EV_SESSION_ABORTED_FAILURE;
			ev_log(AMB_EV_HOLD_DEADLINE_EXCEEDED, AMB_SEV_ERROR, s->id, s->set, NULL, NULL,
			       NULL, AMB_FAIL_TIMEOUT,
			       "hold deadline of %u ms passed during the commit of %s; thawing", hold,
			       s->shadows[i].volume);
			snprintf(why, sizeof(why), "the hold deadline of %u ms passed during the commit",
				 hold);
			rc = AMB_EXIT_RETRYABLE;
			goto fail;
		}
	}
	ev_log(AMB_EV_COMMIT_DONE, AMB_SEV_INFO, s->id, s->set, NULL, NULL, NULL, AMB_FAIL_NONE,
	       "point-in-time copy of %zu volumes made", s->n_shadows);
	test_stall("commit");

	/* 7. Thaw */
	bool fs_held = true;
	for (size_t i = 0; i < n_frozen_fs; i++) {
		int r = amb_fsthaw(frozen_fs[i].h);
		frozen_fs[i].h = NULL;
		if (r != 0)
			fs_held = false;
		ev_log(AMB_EV_FS_THAWED, r ? AMB_SEV_ERROR : AMB_SEV_INFO, s->id, s->set, NULL, NULL,
		       frozen_fs[i].path, AMB_FAIL_NONE, "thawed the filesystem of %s%s",
		       frozen_fs[i].path, r ? " (it had been thawed early: writes not held)" : "");
	}
	n_frozen_fs = 0;
	rc = stage(s, AMB_MSG_THAW, NULL, NULL, ev_deadline(), true, &cls, why, sizeof(why));
	uint64_t held_ms = mono_ms() - t_freeze;
	for (size_t i = 0; i < s->n_parts; i++)
		if (s->parts[i].frozen && s->parts[i].ok) {
			s->parts[i].frozen = false;
			ev_log(AMB_EV_WRITER_THAWED, AMB_SEV_INFO, s->id, s->set, NULL, s->parts[i].name,
			       NULL, AMB_FAIL_NONE, "writer %s released writes", s->parts[i].name);
		}
	if (rc)
		goto fail;
	set_states(s, AMB_WS_WAITING_FOR_POST_SNAPSHOT);
	ev_log(AMB_EV_THAW_DONE, AMB_SEV_INFO, s->id, s->set, NULL, NULL, NULL, AMB_FAIL_NONE,
	       "writers and filesystems released; writes were held for %" PRIu64 " ms", held_ms);
	test_stall("thaw");
	if (!fs_held) {
		cls = AMB_FAIL_INCONSISTENT;
		snprintf(why, sizeof(why), "a filesystem was thawed before the commit finished");
		abort_code = AMB_EV_WRITES_NOT_HELD;
		rc = AMB_EXIT_RETRYABLE;
		goto fail;
	}

	/* 8. PostSnapshot */
	rc = stage(s, AMB_MSG_POST_SNAPSHOT, fill_post_snapshot, locs, ev_deadline(), false, &cls,
		   why, sizeof(why));
	if (rc)
		goto fail;
	for (size_t i = 0; i < s->n_parts; i++) {
		spart *p = &s->parts[i];
		if (!p->failed && !p->held) {
			cls = AMB_FAIL_INCONSISTENT;
			snprintf(why, sizeof(why), "writer %s says its writes were not held throughout",
				 p->name);
			abort_code = AMB_EV_WRITES_NOT_HELD;
			rc = AMB_EXIT_RETRYABLE;
			goto fail;
		}
	}
	test_stall("post-snapshot");

	/* the set exists.  A persistent shadow is made durable and recorded
	 * as committed (sidecar, then registry) before the requestor hears of
	 * it.  A volatile one is not: it lives only as long as its session, and
	 * after a crash or a restart amberd deletes it whatever its sidecar and
	 * its record say (shadows_load), so those durable writes (four fsyncs,
	 * on the requestor's path) would protect nothing */
	for (size_t i = 0; i < s->n_shadows; i++) {
		const amb_provider *p = amb_provider_find(s->shadows[i].provider);
		int r = s->persistent ? amb_provider_post_commit(p, s->shadows[i].path) : 0;
		if (r == 0)
			r = shadows_mark_ready(s->shadows[i].id, s->persistent);
		if (r) {
			cls = AMB_FAIL_NONRETRYABLE;
			snprintf(why, sizeof(why), "cannot record shadow %s: %s", s->shadows[i].id,
				 strerror(-r));
			rc = AMB_EXIT_FAILED;
			goto fail;
		}
		s->shadows[i].ready = true;
		ev_log(AMB_EV_SHADOW_CREATED, AMB_SEV_INFO, s->id, s->set, s->shadows[i].id, NULL,
		       s->shadows[i].volume, AMB_FAIL_NONE, "shadow %s of %s created at %s (%s, %s)",
		       s->shadows[i].id, s->shadows[i].volume, s->shadows[i].path,
		       s->shadows[i].provider, s->persistent ? "persistent" : "volatile");
	}
	set_states(s, backup ? AMB_WS_WAITING_FOR_BACKUP_COMPLETE : AMB_WS_STABLE);
	ev_log(AMB_EV_SNAPSHOT_SET_CREATED, AMB_SEV_INFO, s->id, s->set, NULL, NULL, NULL,
	       AMB_FAIL_NONE, "shadow set %s created: %zu shadows, held %" PRIu64 " ms", s->set,
	       s->n_shadows, held_ms);
	free(frozen_fs);
	drop_busy();
	s->state = SS_CREATED;

	/* the answer */
	memset(resp, 0, sizeof(*resp));
	resp->kind = AMB_MSG_SNAPSHOT_SET;
	resp->id = req_id;
	snprintf(resp->u.sset.set, sizeof(resp->u.sset.set), "%s", s->set);
	resp->u.sset.shadows = calloc(s->n_shadows ? s->n_shadows : 1, sizeof(amb_shadow));
	if (resp->u.sset.shadows) {
		for (size_t i = 0; i < s->n_shadows; i++) {
			dshadow cur;
			if (shadows_get(s->shadows[i].id, &cur) == 0)
				shadow_to_wire(&cur, &resp->u.sset.shadows[resp->u.sset.n_shadows++]);
		}
	}
	/* who took part: the requestor needs no rule of its own to know */
	resp->u.sset.writers = calloc(s->n_parts ? s->n_parts : 1, sizeof(amb_uuid));
	if (resp->u.sset.writers) {
		pthread_mutex_lock(&D.mu);
		for (size_t i = 0; i < s->n_parts; i++)
			if (!s->parts[i].failed)
				snprintf(resp->u.sset.writers[resp->u.sset.n_writers++], sizeof(amb_uuid),
					 "%s", s->parts[i].w->md->instance);
		pthread_mutex_unlock(&D.mu);
	}
	return 0;

fail:
	for (size_t i = 0; i < n_frozen_fs; i++)
		if (frozen_fs[i].h) {
			amb_fsthaw(frozen_fs[i].h);
			ev_log(AMB_EV_FS_THAWED, AMB_SEV_INFO, s->id, s->set, NULL, NULL,
			       frozen_fs[i].path, AMB_FAIL_NONE, "thawed the filesystem of %s",
			       frozen_fs[i].path);
		}
	free(frozen_fs);
	bool req_gone = rc == -1;
	if (req_gone) {
		abort_code = AMB_EV_REQUESTOR_LOST;
		ev_log(AMB_EV_REQUESTOR_LOST, AMB_SEV_WARNING, s->id, s->set, NULL, NULL, NULL,
		       AMB_FAIL_NONE, "requestor of session %s disconnected during the snapshot",
		       s->id);
	}
	abort_set(s, cls, why, abort_code == AMB_EV_REQUESTOR_LOST ? AMB_EV_SESSION_ABORTED_FAILURE
								  : abort_code);
	drop_busy();
	if (req_gone)
		return -1;
	resp_error(resp, req_id, (amb_exit_class)(rc > 0 ? rc : AMB_EXIT_FAILED), cls, "%s", why);
	return 0;
}

/* ------------------------------------------------------------ sessions */

static dsession *session_new(void)
{
	dsession *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	if (amb_uuid_generate(s->id) || amb_uuid_generate(s->set)) {
		free(s);
		return NULL;
	}
	s->state = SS_OPEN;
	s->req_fd = -1;
	pthread_mutex_lock(&D.mu);
	s->next = sessions;
	sessions = s;
	pthread_mutex_unlock(&D.mu);
	return s;
}

static void session_free(dsession *s)
{
	pthread_mutex_lock(&D.mu);
	for (dsession **p = &sessions; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	pthread_mutex_unlock(&D.mu);
	parts_release(s);
	free(s->sels);
	free(s->vols);
	free(s->shadows);
	free(s);
}

/* End the session: non-persistent shadows go. */
static void session_end(dsession *s, bool normal)
{
	remove_shadows(s, true);
	if (normal)
		ev_log(AMB_EV_SESSION_CLOSED, AMB_SEV_INFO, s->id, s->set, NULL, NULL, NULL,
		       AMB_FAIL_NONE, "session %s closed (%s)", s->id, state_name(s->state));
	session_free(s);
}

void session_connection_closed(dsession *s)
{
	if (!s)
		return;
	if (s->state != SS_COMPLETED && s->state != SS_ABORTED && s->state != SS_RESTORED) {
		ev_log(AMB_EV_REQUESTOR_LOST, AMB_SEV_WARNING, s->id, s->set, NULL, NULL, NULL,
		       AMB_FAIL_NONE, "requestor of session %s disconnected (%s); aborting the set",
		       s->id, state_name(s->state));
		s->req_fd = -1;
		abort_set(s, AMB_FAIL_RETRYABLE, "the requestor disconnected", AMB_EV_SESSION_ABORTED);
	}
	session_end(s, false);
}

static int add_volume(dsession *s, const char *vol, const char *prov, char *why, size_t whylen)
{
	char real[PATH_MAX];
	if (!realpath(vol, real)) {
		snprintf(why, whylen, "volume %s: %s", vol, strerror(errno));
		return AMB_EXIT_BAD_INPUT;
	}
	if (strcmp(real, vol) != 0) {
		snprintf(why, whylen, "volume %s resolves to %s: give the real path", vol, real);
		return AMB_EXIT_BAD_INPUT;
	}
	struct stat st;
	if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(why, whylen, "volume %s is not a directory", vol);
		return AMB_EXIT_BAD_INPUT;
	}
	if (prov && prov[0] && !amb_provider_find(prov)) {
		snprintf(why, whylen, "unknown provider %s", prov);
		return AMB_EXIT_BAD_INPUT;
	}
	for (size_t i = 0; i < s->n_vols; i++)
		if (strcmp(s->vols[i].path, real) == 0) {
			snprintf(why, whylen, "volume %s is already in the set", vol);
			return AMB_EXIT_BAD_INPUT;
		}
	if (s->n_vols >= AMB_MAX_VOLUMES) {
		snprintf(why, whylen, "a set holds at most %d volumes", AMB_MAX_VOLUMES);
		return AMB_EXIT_BAD_INPUT;
	}
	svol *v = realloc(s->vols, (s->n_vols + 1) * sizeof(*v));
	if (!v) {
		snprintf(why, whylen, "out of memory");
		return AMB_EXIT_FAILED;
	}
	s->vols = v;
	memset(&v[s->n_vols], 0, sizeof(v[0]));
	snprintf(v[s->n_vols].path, sizeof(v[0].path), "%s", real);
	if (prov)
		snprintf(v[s->n_vols].provider, sizeof(v[0].provider), "%s", prov);
	s->n_vols++;
	return 0;
}

static void do_gather(dsession *s, uint64_t id, amb_msg *resp)
{
	/* every registered writer is asked */
	parts_release(s);
	pthread_mutex_lock(&D.mu);
	size_t n = 0;
	for (dwriter *w = D.writers; w; w = w->next)
		n++;
	s->parts = calloc(n ? n : 1, sizeof(*s->parts));
	for (dwriter *w = D.writers; s->parts && w; w = w->next) {
		if (w->gone)
			continue;
		spart *p = &s->parts[s->n_parts++];
		p->w = w;
		dw_ref(w);
		snprintf(p->name, sizeof(p->name), "%s", w->md->name);
	}
	pthread_mutex_unlock(&D.mu);
	char why[AMB_TEXT_MAX + 1];
	amb_fail_class cls;
	int rc = stage(s, AMB_MSG_IDENTIFY, NULL, NULL, ev_deadline(), false, &cls, why, sizeof(why));
	(void)rc; /* a writer that fails identify is listed as failed; gather goes on */
	parts_release(s);
	if (rc == -1)
		return;
	s->state = SS_GATHERED;
	ev_log(AMB_EV_GATHER_DONE, AMB_SEV_INFO, s->id, s->set, NULL, NULL, NULL, AMB_FAIL_NONE,
	       "writer metadata gathered from %zu writers", n);
	pthread_mutex_lock(&D.mu);
	int r = dw_list(resp);
	pthread_mutex_unlock(&D.mu);
	if (r)
		resp_error(resp, id, AMB_EXIT_FAILED, AMB_FAIL_OUT_OF_RESOURCES,
			   "cannot list the writers: %s", strerror(-r));
	else
		resp->id = id;
}

static void fill_backup_complete(dsession *s, spart *p, amb_wevent *ev, void *arg)
{
	const amb_session_results *r = arg;
	ev->backup_type = s->type;
	size_t n = 0;
	for (size_t i = 0; i < r->n_items; i++)
		if (strcmp(r->items[i].writer, p->name) == 0)
			n++;
	if (!n)
		return;
	amb_wcomp *c = calloc(n, sizeof(*c));
	if (!c)
		return;
	n = 0;
	for (size_t i = 0; i < r->n_items; i++)
		if (strcmp(r->items[i].writer, p->name) == 0 && r->items[i].component[0]) {
			snprintf(c[n].name, sizeof(c[n].name), "%s", r->items[i].component);
			c[n].success = r->items[i].success;
			c[n].target = r->items[i].target;
			n++;
		}
	ev->components = c;
	ev->n_components = n;
}

/* Send a restore/complete event to the writers named in r (or to every
 * participant for backup-complete). */
static int restore_stage(dsession *s, amb_msg_kind kind, const amb_session_results *r,
			 char *why, size_t whylen)
{
	if (kind != AMB_MSG_BACKUP_COMPLETE) {
		parts_release(s);
		pthread_mutex_lock(&D.mu);
		s->parts = calloc(r->n_items ? r->n_items : 1, sizeof(*s->parts));
		for (size_t i = 0; s->parts && i < r->n_items; i++) {
			bool dup = false;
			for (size_t k = 0; k < s->n_parts; k++)
				if (strcmp(s->parts[k].name, r->items[i].writer) == 0)
					dup = true;
			if (dup)
				continue;
			dwriter *w = dw_find_name(r->items[i].writer);
			if (!w) {
				pthread_mutex_unlock(&D.mu);
				snprintf(why, whylen, "writer %s is not registered", r->items[i].writer);
				return AMB_EXIT_BAD_INPUT;
			}
			spart *p = &s->parts[s->n_parts++];
			p->w = w;
			dw_ref(w);
			snprintf(p->name, sizeof(p->name), "%s", w->md->name);
		}
		pthread_mutex_unlock(&D.mu);
	}
	amb_fail_class cls;
	int rc = stage(s, kind, fill_backup_complete, (void *)r, ev_deadline(), false, &cls, why,
		       whylen);
	if (rc == -1)
		return -1;
	for (size_t i = 0; i < s->n_parts; i++)
		if (s->parts[i].failed)
			return AMB_EXIT_FAILED;
	return rc;
}

static bool results_ok(const amb_session_results *r, char *why, size_t whylen)
{
	for (size_t i = 0; i < r->n_items; i++)
		if (!r->items[i].success) {
			snprintf(why, whylen, "component %s/%s not successful", r->items[i].writer,
				 r->items[i].component[0] ? r->items[i].component : "*");
			return false;
		}
	return true;
}

void session_close_end(dsession *s)
{
	test_stall("close");
	session_end(s, true);
}

void session_request(int fd, dsession **mine, const amb_msg *req, amb_msg *resp,
                     dsession **closing)
{
	char why[AMB_TEXT_MAX + 1];
	dsession *s = *mine;
	uint64_t id = req->id;

	if (req->kind == AMB_MSG_SESSION_OPEN) {
		if (s) {
			resp_error(resp, id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE,
				   "this connection already has session %s; close it first", s->id);
			return;
		}
		const amb_session_open *o = &req->u.sopen;
		if (o->provider[0] && !amb_provider_find(o->provider)) {
			resp_error(resp, id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE, "unknown provider %s",
				   o->provider);
			return;
		}
		s = session_new();
		if (!s) {
			resp_error(resp, id, AMB_EXIT_RETRYABLE, AMB_FAIL_OUT_OF_RESOURCES,
				   "cannot create a session");
			return;
		}
		s->mode = o->mode;
		s->type = o->backup_type;
		s->persistent = o->persistent;
		s->no_writers = o->no_writers;
		snprintf(s->provider, sizeof(s->provider), "%s", o->provider);
		s->req_fd = fd;
		*mine = s;
		ev_log(AMB_EV_SESSION_OPENED, AMB_SEV_INFO, s->id, s->set, NULL, NULL, NULL,
		       AMB_FAIL_NONE, "%s session %s opened (%s%s%s)",
		       o->mode == AMB_SESSION_BACKUP ? "backup" : "restore", s->id,
		       o->backup_type ? amb_backup_type_name(o->backup_type) : "no type",
		       o->persistent ? ", persistent" : "", o->no_writers ? ", no writers" : "");
		memset(resp, 0, sizeof(*resp));
		resp->kind = AMB_MSG_SESSION;
		resp->id = id;
		snprintf(resp->u.sref.session, sizeof(resp->u.sref.session), "%s", s->id);
		snprintf(resp->u.sref.set, sizeof(resp->u.sref.set), "%s", s->set);
		return;
	}

	/* every other session request names the session */
	const char *sid = req->u.sref.session; /* session is the first member everywhere */
	switch (req->kind) {
	case AMB_MSG_SESSION_SELECT: sid = req->u.select.session; break;
	case AMB_MSG_SESSION_ADD_VOLUME: sid = req->u.addvol.session; break;
	case AMB_MSG_SESSION_BACKUP_COMPLETE:
	case AMB_MSG_SESSION_PRE_RESTORE:
	case AMB_MSG_SESSION_POST_RESTORE: sid = req->u.results.session; break;
	case AMB_MSG_SESSION_ABORT: sid = req->u.sabort.session; break;
	default: break;
	}
	if (!s || strcmp(s->id, sid) != 0) {
		resp_error(resp, id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE,
			   "unknown session %s (sessions belong to the connection that opened them)",
			   sid);
		return;
	}
	s->req_fd = fd;

	switch (req->kind) {
	case AMB_MSG_SESSION_GATHER:
		if (s->state != SS_OPEN && s->state != SS_GATHERED)
			goto bad_state;
		do_gather(s, id, resp);
		return;
	case AMB_MSG_SESSION_SELECT: {
		if (s->state != SS_OPEN && s->state != SS_GATHERED)
			goto bad_state;
		const amb_session_select *q = &req->u.select;
		pthread_mutex_lock(&D.mu);
		dwriter *w = dw_find_name(q->writer);
		bool comp_ok = !q->component[0];
		for (size_t c = 0; w && !comp_ok && c < w->md->n_components; c++)
			if (strcmp(w->md->components[c].name, q->component) == 0)
				comp_ok = true;
		pthread_mutex_unlock(&D.mu);
		if (!w && q->mode != AMB_SELECT_EXCLUDE) {
			resp_error(resp, id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE,
				   "writer %s is not registered", q->writer);
			return;
		}
		if (w && !comp_ok) {
			resp_error(resp, id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE,
				   "writer %s has no component %s", q->writer, q->component);
			return;
		}
		ssel *v = realloc(s->sels, (s->n_sels + 1) * sizeof(*v));
		if (!v) {
			resp_error(resp, id, AMB_EXIT_RETRYABLE, AMB_FAIL_OUT_OF_RESOURCES,
				   "out of memory");
			return;
		}
		s->sels = v;
		memset(&v[s->n_sels], 0, sizeof(*v));
		snprintf(v[s->n_sels].writer, AMB_NAME_BUF, "%s", q->writer);
		snprintf(v[s->n_sels].component, AMB_NAME_BUF, "%s", q->component);
		v[s->n_sels].mode = q->mode;
		s->n_sels++;
		resp_ok(resp, id);
		return;
	}
	case AMB_MSG_SESSION_ADD_VOLUME: {
		if (s->state != SS_OPEN && s->state != SS_GATHERED)
			goto bad_state;
		int rc = add_volume(s, req->u.addvol.volume, req->u.addvol.provider, why, sizeof(why));
		if (rc)
			resp_error(resp, id, (amb_exit_class)rc, AMB_FAIL_NONE, "%s", why);
		else
			resp_ok(resp, id);
		return;
	}
	case AMB_MSG_SESSION_SNAPSHOT:
		if (s->state != SS_GATHERED) {
			if (s->state == SS_OPEN) {
				resp_error(resp, id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE,
					   "session-snapshot before session-gather");
				return;
			}
			goto bad_state;
		}
		if (s->mode != AMB_SESSION_BACKUP)
			goto bad_state;
		if (s->n_vols == 0) {
			resp_error(resp, id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE,
				   "no volume in the set (session-add-volume)");
			return;
		}
		if (run_sequence(s, true, id, resp) < 0) {
			/* the requestor is gone: nothing to answer; the connection
			 * thread ends the session */
			resp_error(resp, id, AMB_EXIT_RETRYABLE, AMB_FAIL_RETRYABLE, "requestor gone");
		}
		return;
	case AMB_MSG_SESSION_BACKUP_COMPLETE: {
		if (s->state != SS_CREATED)
			goto bad_state;
		const amb_session_results *r = &req->u.results;
		/* results may only name participants' components */
		int rc = restore_stage(s, AMB_MSG_BACKUP_COMPLETE, r, why, sizeof(why));
		set_states(s, AMB_WS_STABLE);
		char bad[AMB_TEXT_MAX + 1];
		bool all_ok = results_ok(r, bad, sizeof(bad));
		if (all_ok && rc == 0)
			ev_log(AMB_EV_BACKUP_COMPLETE_OK, AMB_SEV_INFO, s->id, s->set, NULL, NULL, NULL,
			       AMB_FAIL_NONE, "backup complete: every component successful");
		else
			ev_log(AMB_EV_BACKUP_COMPLETE_PARTIAL, AMB_SEV_WARNING, s->id, s->set, NULL,
			       NULL, NULL, AMB_FAIL_NONE, "backup complete: %s",
			       !all_ok ? bad : why);
		s->state = SS_COMPLETED;
		if (rc > 0)
			resp_error(resp, id, (amb_exit_class)rc, AMB_FAIL_NONE, "%s", why);
		else
			resp_ok(resp, id);
		return;
	}
	case AMB_MSG_SESSION_ABORT:
		if (s->state == SS_ABORTED || s->state == SS_COMPLETED || s->state == SS_RESTORED)
			goto bad_state;
		abort_set(s, AMB_FAIL_NONE,
			  req->u.sabort.message ? req->u.sabort.message : "aborted by the requestor",
			  AMB_EV_SESSION_ABORTED);
		resp_ok(resp, id);
		return;
	case AMB_MSG_SESSION_PRE_RESTORE:
	case AMB_MSG_SESSION_POST_RESTORE: {
		bool pre = req->kind == AMB_MSG_SESSION_PRE_RESTORE;
		if (s->mode != AMB_SESSION_RESTORE)
			goto bad_state;
		if (pre ? (s->state != SS_OPEN && s->state != SS_GATHERED) : s->state != SS_RESTORING)
			goto bad_state;
		if (pre)
			ev_log(AMB_EV_RESTORE_STARTED, AMB_SEV_INFO, s->id, NULL, NULL, NULL, NULL,
			       AMB_FAIL_NONE, "restore: pre-restore sent to %zu components",
			       req->u.results.n_items);
		int rc = restore_stage(s, pre ? AMB_MSG_PRE_RESTORE : AMB_MSG_POST_RESTORE,
				       &req->u.results, why, sizeof(why));
		if (rc) {
			ev_log(AMB_EV_RESTORE_FAILED, AMB_SEV_ERROR, s->id, NULL, NULL, NULL, NULL,
			       AMB_FAIL_NONE, "restore failed: %s", why);
			s->state = SS_ABORTED;
			resp_error(resp, id, rc > 0 ? (amb_exit_class)rc : AMB_EXIT_FAILED,
				   AMB_FAIL_NONE, "%s", why);
			return;
		}
		s->state = pre ? SS_RESTORING : SS_RESTORED;
		if (!pre)
			ev_log(AMB_EV_RESTORE_DONE, AMB_SEV_INFO, s->id, NULL, NULL, NULL, NULL,
			       AMB_FAIL_NONE, "restore: post-restore answered successfully");
		resp_ok(resp, id);
		return;
	}
	case AMB_MSG_SESSION_CLOSE:
		*mine = NULL;
		if (s->state == SS_CREATED && s->n_parts) {
			/* closed without backup-complete: the writers go back to stable */
			abort_set(s, AMB_FAIL_NONE, "session closed without backup-complete",
				  AMB_EV_SESSION_ABORTED);
		}
		*closing = s; /* ended by the caller once the answer is sent */
		resp_ok(resp, id);
		return;
	default:
		resp_error(resp, id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE, "not a session request");
		return;
	}
bad_state:
	resp_error(resp, id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE,
		   "%s is not allowed in a %s %s session", amb_msg_kind_name(req->kind),
		   state_name(s->state), s->mode == AMB_SESSION_BACKUP ? "backup" : "restore");
}

void session_shadow_create(int fd, const amb_shadow_create *req, amb_msg *resp)
{
	/* resp->id is set by the caller afterwards */
	char why[AMB_TEXT_MAX + 1];
	dsession *s = session_new();
	if (!s) {
		resp_error(resp, 0, AMB_EXIT_RETRYABLE, AMB_FAIL_OUT_OF_RESOURCES,
			   "cannot create a session");
		return;
	}
	s->mode = AMB_SESSION_BACKUP;
	s->type = 0;
	s->persistent = req->persistent;
	s->no_writers = req->no_writers;
	s->req_fd = fd;
	snprintf(s->provider, sizeof(s->provider), "%s", req->provider);
	if (req->provider[0] && !amb_provider_find(req->provider)) {
		resp_error(resp, 0, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE, "unknown provider %s",
			   req->provider);
		session_free(s);
		return;
	}
	for (size_t i = 0; i < req->n_volumes; i++) {
		int rc = add_volume(s, req->volumes[i], NULL, why, sizeof(why));
		if (rc) {
			resp_error(resp, 0, (amb_exit_class)rc, AMB_FAIL_NONE, "%s", why);
			session_free(s);
			return;
		}
	}
	ev_log(AMB_EV_SESSION_OPENED, AMB_SEV_INFO, s->id, s->set, NULL, NULL, NULL, AMB_FAIL_NONE,
	       "create shadow: session %s (%zu volumes%s%s)", s->id, s->n_vols,
	       s->persistent ? ", persistent" : "", s->no_writers ? ", no writers" : "");
	int r = run_sequence(s, false, 0, resp);
	if (r < 0 || s->state != SS_CREATED) {
		if (r < 0)
			resp_error(resp, 0, AMB_EXIT_RETRYABLE, AMB_FAIL_RETRYABLE, "requestor gone");
		session_free(s);
		return;
	}
	/* The one-shot session ends here but its shadows stay: a volatile
	 * shadow made by shadow-create lives until it is deleted or amberd
	 * stops (docs/amberd.md, "Persistent and volatile shadows"). */
	ev_log(AMB_EV_SESSION_CLOSED, AMB_SEV_INFO, s->id, s->set, NULL, NULL, NULL, AMB_FAIL_NONE,
	       "create shadow: session %s done", s->id);
	session_free(s);
}

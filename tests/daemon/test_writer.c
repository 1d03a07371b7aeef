/*
 * test_writer.c - amber-test-writer: a writer for amberd's tests that can
 * be told to misbehave.
 *
 *   amber-test-writer [--socket PATH] [--name NAME] [--dir DIR]
 *                     [--max-hold-ms N] [--hang-at EVENT]
 *                     [--fail-at EVENT[:CLASS]] [--die-at EVENT] [--not-held]
 *                     [--unchanged PATH]...
 *                     [--types full,copy,incremental,differential]
 *
 * It registers with amberd through libamber (writer.h) with one component,
 * `data` (type filegroup, files {DIR, "*", recursive}), the backup types of
 * --types (default: every type),
 * verifier `none`, restore method `if-can-replace`, a fresh random instance
 * uuid, and max_hold_ms N (default 10000).  Without --dir, DIR is a new
 * directory from mkdtemp(3) under $TMPDIR (default /tmp) holding one small
 * file `data.bin`; it is removed again at exit.  Events are only printed and
 * answered: the writer holds nothing.
 *
 * EVENT is a writer event's wire name: identify, prepare-backup,
 * prepare-snapshot, freeze, thaw, post-snapshot, backup-complete, abort,
 * pre-restore, post-restore.  Each switch may be given for several events.
 *   --hang-at EVENT   that event's callback never returns (it gives up only
 *                     when the program is stopped), so amberd gets no reply
 *   --fail-at EVENT[:CLASS]
 *                     reply failed with CLASS (retryable, non-retryable,
 *                     timeout, inconsistent-snapshot, out-of-resources;
 *                     default retryable), message "test writer: failing at
 *                     EVENT as told"
 *   --die-at EVENT    raise(SIGKILL) on itself when the event arrives (after
 *                     printing its line)
 *   --not-held        reply held_writes=false to post-snapshot
 *   --unchanged PATH  list PATH as unchanged since prepare-snapshot in the
 *                     ok reply to freeze (up to 8; amberd keeps only those
 *                     inside the writer's file sets)
 * The thaw switches apply to the thaw event only, not to libamber's own
 * thaws (deadline, lost connection, stop).
 *
 * Standard output, one line per happening, flushed at once, for scripts:
 *   registered                 (again after a reconnect)
 *   unregistered               the registration was lost
 *                              (both polled every 50 ms: a drop and
 *                              re-registration within 50 ms may not show)
 *   event identify session=S|-
 *   event prepare-backup session=S type=T components=A,B|- volumes=V,W|-
 *   event prepare-snapshot session=S set=X
 *   event freeze session=S set=X hold_ms=N
 *   event thaw session=S set=X
 *   thaw reason=event|abort|deadline|disconnect|stop
 *                              every call of the thaw callback (for abort it
 *                              comes before the "event abort" line)
 *   event post-snapshot session=S set=X shadows=VOL:PATH,...|- held=true|false
 *   event backup-complete session=S type=T components=A:ok,B:failed|-
 *   event abort session=S set=X|- class=C|- message=TEXT|-   (TEXT last)
 *   event pre-restore session=S components=A[:TARGET],...|-
 *   event post-restore session=S components=A:ok,...|-
 * libamber's log lines go to standard error.  Exit: 0 after SIGTERM or
 * SIGINT (amb_writer_stop() first), 2 for bad usage, 1 if it cannot start.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "amber/client.h"
#include "amber/proto.h"
#include "amber/writer.h"

#define TW "amber-test-writer"

enum tw_action { TW_NONE = 0, TW_HANG, TW_FAIL, TW_DIE };

typedef struct tw_state {
	enum tw_action action[AMB_MSG_KIND_COUNT];
	amb_fail_class fail_cls[AMB_MSG_KIND_COUNT];
	bool not_held;
	const char *unchanged[8];
	size_t n_unchanged;
} tw_state;

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cond = PTHREAD_COND_INITIALIZER;
static bool stopping;

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void out(const char *fmt, ...)
{
	pthread_mutex_lock(&out_lock);
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

/* ---------------------------------------------------------------- text */

/* A small growing string for the event lines. */
typedef struct sbuf {
	char s[8192];
	size_t n;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_add(sbuf *b, const char *fmt, ...)
{
	if (b->n >= sizeof(b->s) - 1)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(b->s + b->n, sizeof(b->s) - b->n, fmt, ap);
	va_end(ap);
	if (n > 0)
		b->n += (size_t)n < sizeof(b->s) - b->n ? (size_t)n : sizeof(b->s) - 1 - b->n;
}

static const char *opt_str(const char *s)
{
	return s && *s ? s : "-";
}

static void sb_comps(sbuf *b, const amb_wevent *ev, amb_msg_kind k)
{
	sb_add(b, " components=");
	if (ev->n_components == 0)
		sb_add(b, "-");
	for (size_t i = 0; i < ev->n_components; i++) {
		const amb_wcomp *c = &ev->components[i];
		sb_add(b, "%s%s", i ? "," : "", c->name);
		if (k == AMB_MSG_BACKUP_COMPLETE || k == AMB_MSG_POST_RESTORE)
			sb_add(b, ":%s", c->success ? "ok" : "failed");
		else if (k == AMB_MSG_PRE_RESTORE && c->target)
			sb_add(b, ":%s", c->target);
	}
}

static void sb_volumes(sbuf *b, const amb_wevent *ev)
{
	sb_add(b, " volumes=");
	if (ev->n_volumes == 0)
		sb_add(b, "-");
	for (size_t i = 0; i < ev->n_volumes; i++)
		sb_add(b, "%s%s", i ? "," : "", ev->volumes[i]);
}

static const char *btype(amb_backup_type t)
{
	const char *n = amb_backup_type_name(t);
	return n ? n : "-";
}

/* ---------------------------------------------------------------- events */

/* Print the event's line, then do what the switches say.  Returns the
 * callback's result. */
static int tw_event(tw_state *t, amb_msg_kind k, const amb_wevent *ev, amb_writer_result *res)
{
	sbuf b = {.n = 0};
	sb_add(&b, "event %s session=%s", amb_msg_kind_name(k), opt_str(ev->session));
	switch (k) {
	case AMB_MSG_PREPARE_BACKUP:
		sb_add(&b, " type=%s", btype(ev->backup_type));
		sb_comps(&b, ev, k);
		sb_volumes(&b, ev);
		break;
	case AMB_MSG_PREPARE_SNAPSHOT:
	case AMB_MSG_THAW:
		sb_add(&b, " set=%s", opt_str(ev->set));
		break;
	case AMB_MSG_FREEZE:
		sb_add(&b, " set=%s hold_ms=%u", opt_str(ev->set), (unsigned)ev->hold_ms);
		break;
	case AMB_MSG_POST_SNAPSHOT:
		sb_add(&b, " set=%s shadows=", opt_str(ev->set));
		if (ev->n_shadows == 0)
			sb_add(&b, "-");
		for (size_t i = 0; i < ev->n_shadows; i++)
			sb_add(&b, "%s%s:%s", i ? "," : "", ev->shadows[i].volume,
			       ev->shadows[i].path);
		sb_add(&b, " held=%s", t->not_held ? "false" : "true");
		break;
	case AMB_MSG_BACKUP_COMPLETE:
		sb_add(&b, " type=%s", btype(ev->backup_type));
		sb_comps(&b, ev, k);
		break;
	case AMB_MSG_ABORT: {
		const char *cls = ev->cls ? amb_fail_class_name(ev->cls) : NULL;
		sb_add(&b, " set=%s class=%s message=%s", opt_str(ev->set), opt_str(cls),
		       opt_str(ev->message));
		break;
	}
	case AMB_MSG_PRE_RESTORE:
	case AMB_MSG_POST_RESTORE:
		sb_comps(&b, ev, k);
		break;
	default:
		break;
	}
	out("%s", b.s);

	switch (t->action[k]) {
	case TW_DIE:
		raise(SIGKILL);
		break;
	case TW_HANG:
		/* never answer; give up only so that the program can stop */
		pthread_mutex_lock(&stop_lock);
		while (!stopping)
			pthread_cond_wait(&stop_cond, &stop_lock);
		pthread_mutex_unlock(&stop_lock);
		snprintf(res->message, sizeof(res->message), "test writer: stopped while hanging");
		return AMB_FAIL_RETRYABLE;
	case TW_FAIL:
		snprintf(res->message, sizeof(res->message), "test writer: failing at %s as told",
		         amb_msg_kind_name(k));
		return (int)t->fail_cls[k];
	case TW_NONE:
		break;
	}
	return 0;
}

static int cb_identify(void *arg, const amb_wevent *ev, amb_writer_md *md, amb_writer_result *o)
{
	(void)md;
	return tw_event(arg, AMB_MSG_IDENTIFY, ev, o);
}

static int cb_prepare_backup(void *arg, const amb_wevent *ev, amb_writer_result *o)
{
	return tw_event(arg, AMB_MSG_PREPARE_BACKUP, ev, o);
}

static int cb_prepare_snapshot(void *arg, const amb_wevent *ev, amb_writer_result *o)
{
	return tw_event(arg, AMB_MSG_PREPARE_SNAPSHOT, ev, o);
}

static int cb_freeze(void *arg, const amb_wevent *ev, amb_writer_result *o)
{
	tw_state *t = arg;
	for (size_t i = 0; i < t->n_unchanged; i++)
		o->unchanged[i] = t->unchanged[i];
	o->n_unchanged = t->n_unchanged;
	return tw_event(t, AMB_MSG_FREEZE, ev, o);
}

static const char *reason_name(amb_thaw_reason why)
{
	switch (why) {
	case AMB_THAW_EVENT:
		return "event";
	case AMB_THAW_ABORT:
		return "abort";
	case AMB_THAW_DEADLINE:
		return "deadline";
	case AMB_THAW_DISCONNECT:
		return "disconnect";
	case AMB_THAW_STOP:
		return "stop";
	}
	return "unknown";
}

static int cb_thaw(void *arg, amb_thaw_reason why, const amb_wevent *ev, amb_writer_result *o)
{
	int rc = 0;
	if (why == AMB_THAW_EVENT && ev)
		rc = tw_event(arg, AMB_MSG_THAW, ev, o);
	out("thaw reason=%s", reason_name(why));
	return rc;
}

static int cb_post_snapshot(void *arg, const amb_wevent *ev, amb_writer_result *o)
{
	tw_state *t = arg;
	o->held_writes = !t->not_held;
	return tw_event(t, AMB_MSG_POST_SNAPSHOT, ev, o);
}

static int cb_backup_complete(void *arg, const amb_wevent *ev, amb_writer_result *o)
{
	return tw_event(arg, AMB_MSG_BACKUP_COMPLETE, ev, o);
}

static int cb_abort(void *arg, const amb_wevent *ev, amb_writer_result *o)
{
	return tw_event(arg, AMB_MSG_ABORT, ev, o);
}

static int cb_pre_restore(void *arg, const amb_wevent *ev, amb_writer_result *o)
{
	return tw_event(arg, AMB_MSG_PRE_RESTORE, ev, o);
}

static int cb_post_restore(void *arg, const amb_wevent *ev, amb_writer_result *o)
{
	return tw_event(arg, AMB_MSG_POST_RESTORE, ev, o);
}

static void cb_log(void *arg, const char *line)
{
	(void)arg;
	fprintf(stderr, TW ": %s\n", line);
}

/* ---------------------------------------------------------------- options */

static void usage(void)
{
	fprintf(stderr, "usage: " TW " [--socket PATH] [--name NAME] [--dir DIR] [--max-hold-ms N]\n"
	        "       [--types full,copy,incremental,differential]\n"
	                "       [--hang-at EVENT] [--fail-at EVENT[:CLASS]] [--die-at EVENT]"
	                " [--not-held] [--unchanged PATH]...\n");
}

static amb_msg_kind event_kind(const char *s, size_t len)
{
	for (int k = AMB_MSG_IDENTIFY; k <= AMB_MSG_POST_RESTORE; k++) {
		const char *n = amb_msg_kind_name((amb_msg_kind)k);
		if (n && strlen(n) == len && strncmp(n, s, len) == 0)
			return (amb_msg_kind)k;
	}
	return AMB_MSG_NONE;
}

static amb_fail_class fail_class(const char *s)
{
	for (int c = AMB_FAIL_RETRYABLE; c <= AMB_FAIL_OUT_OF_RESOURCES; c++) {
		const char *n = amb_fail_class_name((amb_fail_class)c);
		if (n && strcmp(n, s) == 0)
			return (amb_fail_class)c;
	}
	return AMB_FAIL_NONE;
}

/* Remove the mkdtemp directory and what we put in it. */
static void remove_tmpdir(const char *dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/data.bin", dir);
	unlink(path);
	if (rmdir(dir) != 0)
		fprintf(stderr, TW ": cannot remove %s: %s\n", dir, strerror(errno));
}

static int make_tmpdir(char dir[PATH_MAX])
{
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	char templ[PATH_MAX];
	snprintf(templ, sizeof(templ), "%s/" TW ".XXXXXX", tmp);
	if (!mkdtemp(templ)) {
		fprintf(stderr, TW ": mkdtemp %s: %s\n", templ, strerror(errno));
		return -1;
	}
	if (!realpath(templ, dir)) {
		fprintf(stderr, TW ": %s: %s\n", templ, strerror(errno));
		rmdir(templ);
		return -1;
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/data.bin", dir);
	FILE *f = fopen(path, "w");
	if (!f || fputs("amber test writer data\n", f) == EOF || fclose(f) != 0) {
		fprintf(stderr, TW ": %s: %s\n", path, strerror(errno));
		remove_tmpdir(dir);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static tw_state t;
	const char *socket = NULL, *name = "test-writer", *dir_opt = NULL;
	unsigned long max_hold = 10000;
	unsigned types = AMB_BACKUP_BIT(AMB_BACKUP_FULL) | AMB_BACKUP_BIT(AMB_BACKUP_COPY) |
	                 AMB_BACKUP_BIT(AMB_BACKUP_INCREMENTAL) |
	                 AMB_BACKUP_BIT(AMB_BACKUP_DIFFERENTIAL);

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--not-held") == 0) {
			t.not_held = true;
			continue;
		}
		if (strcmp(a, "--unchanged") == 0 && v && t.n_unchanged < 8) {
			t.unchanged[t.n_unchanged++] = v;
			i++;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage();
			return 0;
		}
		if (!v) {
			fprintf(stderr, TW ": unknown option or missing value: %s\n", a);
			usage();
			return 2;
		}
		i++;
		if (strcmp(a, "--socket") == 0) {
			socket = v;
		} else if (strcmp(a, "--name") == 0) {
			if (!amb_proto_name_ok(v))
				goto bad_value;
			name = v;
		} else if (strcmp(a, "--dir") == 0) {
			dir_opt = v;
		} else if (strcmp(a, "--types") == 0) {
			/* comma-separated backup types the writer supports */
			types = 0;
			char buf[128];
			snprintf(buf, sizeof(buf), "%s", v);
			for (char *sv, *tok = strtok_r(buf, ",", &sv); tok; tok = strtok_r(NULL, ",", &sv)) {
				unsigned bt = 0;
				for (unsigned k = AMB_BACKUP_FULL; k <= AMB_BACKUP_DIFFERENTIAL; k++)
					if (strcmp(tok, amb_backup_type_name((amb_backup_type)k)) == 0)
						bt = k;
				if (!bt)
					goto bad_value;
				types |= AMB_BACKUP_BIT(bt);
			}
			if (!types)
				goto bad_value;
		} else if (strcmp(a, "--max-hold-ms") == 0) {
			char *end;
			errno = 0;
			max_hold = strtoul(v, &end, 10);
			if (errno || end == v || *end || max_hold < 1 || max_hold > AMB_MAX_HOLD_MS)
				goto bad_value;
		} else if (strcmp(a, "--hang-at") == 0 || strcmp(a, "--die-at") == 0 ||
		           strcmp(a, "--fail-at") == 0) {
			bool fail = strcmp(a, "--fail-at") == 0;
			const char *colon = fail ? strchr(v, ':') : NULL;
			size_t len = colon ? (size_t)(colon - v) : strlen(v);
			amb_msg_kind k = event_kind(v, len);
			if (k == AMB_MSG_NONE)
				goto bad_value;
			if (fail) {
				amb_fail_class c = colon ? fail_class(colon + 1) : AMB_FAIL_RETRYABLE;
				if (c == AMB_FAIL_NONE)
					goto bad_value;
				t.action[k] = TW_FAIL;
				t.fail_cls[k] = c;
			} else {
				t.action[k] = strcmp(a, "--hang-at") == 0 ? TW_HANG : TW_DIE;
			}
		} else {
			fprintf(stderr, TW ": unknown option: %s\n", a);
			usage();
			return 2;
		}
		continue;
	bad_value:
		fprintf(stderr, TW ": bad value for %s: %s\n", a, v);
		return 2;
	}

	/* signals are taken by this thread; libamber's inherits the mask */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	char dir[PATH_MAX];
	bool tmpdir = false;
	if (dir_opt) {
		if (!realpath(dir_opt, dir)) {
			fprintf(stderr, TW ": %s: %s\n", dir_opt, strerror(errno));
			return 1;
		}
	} else {
		if (make_tmpdir(dir) != 0)
			return 1;
		tmpdir = true;
	}

	amb_fileset files = {.path = dir, .pattern = "*", .recursive = true};
	amb_component comp = {
		.name = "data",
		.type = AMB_COMP_FILEGROUP,
		.selectable = true,
		.files = &files,
		.n_files = 1,
	};
	char label[AMB_LABEL_MAX + 1];
	int ln = snprintf(label, sizeof(label), "test writer at %s", dir);
	amb_writer_md md = {
		.instance_name = ln > 0 && (size_t)ln <= AMB_LABEL_MAX ? label : NULL,
		.backup_types = types,
		.verifier = "none",
		.restore_method = AMB_RESTORE_IF_CAN_REPLACE,
		.max_hold_ms = (uint32_t)max_hold,
		.components = &comp,
		.n_components = 1,
	};
	snprintf(md.name, sizeof(md.name), "%s", name);
	int status = 0;
	int rc = amb_uuid_generate(md.instance);
	if (rc != 0) {
		fprintf(stderr, TW ": uuid: %s\n", strerror(-rc));
		status = 1;
		goto out_dir;
	}

	static const amb_writer_ops ops = {
		.identify = cb_identify,
		.prepare_backup = cb_prepare_backup,
		.prepare_snapshot = cb_prepare_snapshot,
		.freeze = cb_freeze,
		.thaw = cb_thaw,
		.post_snapshot = cb_post_snapshot,
		.backup_complete = cb_backup_complete,
		.abort = cb_abort,
		.pre_restore = cb_pre_restore,
		.post_restore = cb_post_restore,
		.log = cb_log,
	};
	amb_writer *w = NULL;
	rc = amb_writer_start(socket, TW, &md, &ops, &t, &w);
	if (rc != 0) {
		fprintf(stderr, TW ": cannot start the writer: %s\n",
		        rc == -EINVAL ? amb_client_last_error() : strerror(-rc));
		status = 1;
		goto out_dir;
	}
	fprintf(stderr, TW ": writer %s (instance %s) for %s via %s\n", md.name, md.instance, dir,
	        amb_socket_path(socket));

	bool was_registered = false;
	for (;;) {
		struct timespec tick = {0, 50 * 1000 * 1000};
		int sig = sigtimedwait(&sigs, NULL, &tick);
		if (sig > 0)
			break;
		bool reg = amb_writer_registered(w);
		if (reg != was_registered)
			out("%s", reg ? "registered" : "unregistered");
		was_registered = reg;
	}

	/* a hanging callback gives up now, so that stop can join */
	pthread_mutex_lock(&stop_lock);
	stopping = true;
	pthread_cond_broadcast(&stop_cond);
	pthread_mutex_unlock(&stop_lock);
	amb_writer_stop(w);
out_dir:
	if (tmpdir)
		remove_tmpdir(dir);
	return status;
}

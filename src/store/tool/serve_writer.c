/*
 * serve_writer.c - `amber-store serve` as an amber writer (see serve_writer.h).
 *
 * Metadata (docs/protocol.md section 5): writer `amber-store`, instance from
 * `amber-writer.id`, instance_name "<prefix> at <DIR>", every backup type,
 * verifier `amber-store`, restore method `stop-restore-start`, max_hold_ms
 * from the options, and one component per database:
 *   name      the database file name without ".edb", type database
 *   files     {DIR, "<name>.edb"}
 *   logs      {DIR, "<prefix>*.log"}
 *   checkpoint DIR/<prefix>.chk
 * DIR is the instance directory made absolute with realpath(3).
 *
 * Events (section 6), all on libamber's thread, one at a time:
 *   prepare-snapshot  ams_quiesce(SW_QUIET_MS), then ams_log_roll(); a
 *                     failed roll ends the quiet and is retryable.  The
 *                     quiet: no checkpoint page writes, no header refresh
 *                     and no preparation of the next log file (unless a
 *                     commit waits for it) until the thaw, so the snapshot made while writes are held has
 *                     no database pages to write back, and neither the
 *                     roll nor the freeze waits for the header refresh and
 *                     the next log file that a roll asks for
 *   freeze            ams_freeze(inst, hold_ms), and the reply lists the
 *                     databases not changed since prepare-snapshot
 *                     (ams_unchanged_files); the engine thaws itself at
 *                     the deadline even if this process's writer thread is
 *                     stuck; busy (a streaming backup) is retryable.  On
 *                     success the session's snapshot range is remembered:
 *                     K = ams_info.gen_checkpoint and C = ams_info.gen_current
 *                     (neither moves while frozen).  The shadow holds the
 *                     logs K..C, C being <prefix>.log, a prefix of what
 *                     generation C holds later (store/backup.c).
 *   thaw (any reason) ams_thaw(); AMS_OK means writes were held throughout;
 *                     the session's range counts as consistent only if so
 *                     and the thaw came from amberd.  A thaw from amberd
 *                     that held is ams_thaw_quiet(SW_AFTER_THAW_MS): the
 *                     quiet goes on while the requestor copies and
 *                     verifies, until backup-complete (or that deadline)
 *   post-snapshot     held_writes = what the last thaw said
 *   abort             drop the session's state (libamber has already
 *                     called thaw); if the instance was closed by a
 *                     pre-restore whose post-restore never came (the
 *                     requestor died), open it again as it is
 *   backup-complete   for the session's remembered K and C (refused, non-
 *                     retryable, for a session this process never froze or
 *                     whose hold was broken):
 *                      - any component of this writer not successful, or
 *                        no component named: record nothing, delete no log,
 *                        answer ok saying so (the requestor asked for no
 *                        truncation);
 *                      - copy: nothing either (copy leaves header and logs);
 *                      - full: ams_backup_complete(FULL, K, C): the first
 *                        copy of each database header before the answer,
 *                        the second copy and the deletion of the logs below
 *                        K (and below the checkpoint) after it
 *                        (AMS_BACKUP_DEFER_TRUNCATE, then
 *                        ams_truncate_pending(): the requestor waits for
 *                        neither; a failure is logged);
 *                      - incremental / differential:
 *                        ams_backup_complete(type, 0, C): the engine derives
 *                        the first generation from the previous backups (the
 *                        chain rule); an incremental deletes the logs below
 *                        C after the answer, as a full does (C itself stays
 *                        whole for the next one and for roll-forward), a
 *                        differential deletes nothing (its second header
 *                        copies: ams_backup_settle() after the answer).
 *                      Every backup-complete ends the quiet the thaw kept.
 *                     A failure of ams_backup_complete (no full backup
 *                     recorded yet, an I/O error) is answered failed, non-
 *                     retryable, with the engine's message.
 *   pre-restore       every component's target, if given, must be the
 *                     instance directory (in-place restore only: failed,
 *                     non-retryable, otherwise); refused (retryable) while
 *                     frozen.  Then the instance is "dismounted" through the
 *                     host (serve.c): the workload stops after its commits
 *                     in flight and the instance is closed (ams_close).  The
 *                     process goes on and stays registered with amberd;
 *                     snapshot events are refused while dismounted.  A
 *                     second pre-restore is answered ok.
 *   post-restore      only while dismounted (otherwise failed, non-
 *                     retryable, unless a component failed: then there is
 *                     nothing to do).  If every component succeeded
 *                     (or none is named: the whole writer), hard recovery
 *                     runs: ams_hard_recover(DIR/restore.env), the file the
 *                     requestor wrote into the instance directory (its
 *                     backup_log_dir names where it put the backup's logs).
 *                     Then the instance is opened again, and the workload
 *                     resumes only if restore.env says roll_forward=yes and
 *                     until=none: then the store holds exactly what it held
 *                     at pre-restore, so the workload's list of keys is
 *                     right; otherwise serve goes on without load and says
 *                     so.  If hard recovery or the open fails, the answer is
 *                     failed, non-retryable, with the engine's message (it
 *                     names a missing generation, for example) and the
 *                     instance stays closed; a later restore session may
 *                     try again (its pre-restore is answered ok at once).
 *                     If a component failed (the restore was
 *                     abandoned), the instance is opened as it is and the
 *                     workload resumes.
 *
 * The state below (frozen, held, sessions, inst) is only touched by the
 * callbacks, which never run concurrently, so it needs no lock.  inst is
 * NULL while dismounted; serve.c guards its own use of the instance with
 * its own lock.
 */
#include "store/tool/serve_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "amber/client.h"
#include "amber/writer.h"
#include "common/durable.h"
#include "common/vfs.h"
#include "store/restoreenv.h"
#include "store/tool/tool.h"

#define SW_PREFIX "amber-store serve: "
#define SW_SESSIONS 16 /* snapshot ranges remembered (oldest dropped first) */

/* What a successful freeze of one session saw. */
typedef struct sw_session {
	amb_uuid id;          /* "" = free slot */
	uint32_t gen_checkpoint; /* K: the first log the shadow's copy needs */
	uint32_t gen_current;    /* C: <prefix>.log in the shadow (a prefix) */
	bool held;            /* thawed by amberd's thaw with writes held throughout */
	uint64_t age;         /* for replacing the oldest */
} sw_session;

struct serve_writer {
	ams_instance *inst;  /* NULL while dismounted for a restore */
	amb_writer *w;
	bool quiet;
	int latency_fd;
	bool have_host;
	serve_host host;

	/* callback state */
	bool frozen;
	bool held;           /* the last thaw said writes were held throughout */
	uint64_t freeze_ns;  /* CLOCK_MONOTONIC when ams_freeze() returned */
	uint32_t hold_ms;    /* of the current freeze */
	sw_session *frozen_ss; /* the session of the current freeze */
	sw_session sessions[SW_SESSIONS];
	uint64_t age;
	bool dismounted;
	bool restore_pending; /* dismounted by pre-restore, no post-restore yet */

	/* metadata storage (amb_writer_start copies it; kept for clarity of
	 * ownership until stop) */
	char dir[PATH_MAX];
	char prefix[8];
	amb_writer_md md;
	amb_component *comps;
	amb_fileset *filesets; /* 2 per component: files, logs */
	char (*patterns)[AMB_PATTERN_MAX + 1];
	char log_pattern[AMB_PATTERN_MAX + 1];
	char checkpoint[PATH_MAX + 16];
	char instance_name[AMB_LABEL_MAX + 1];
};

static uint64_t sw_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sw_log(serve_writer *sw, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sw_log(serve_writer *sw, const char *fmt, ...)
{
	if (sw->quiet)
		return;
	char line[AMB_TEXT_MAX + 256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, SW_PREFIX "%s\n", line);
}

/* "freeze <ns>" / "thaw <ns>" into the latency log: one write(2) of the
 * whole line (the fd is O_APPEND). */
static void sw_latency_mark(serve_writer *sw, const char *what, uint64_t ns)
{
	if (sw->latency_fd < 0)
		return;
	char line[64];
	int n = snprintf(line, sizeof(line), "%s %" PRIu64 "\n", what, ns);
	if (write(sw->latency_fd, line, (size_t)n) != n)
		fprintf(stderr, SW_PREFIX "writing the latency log: %s\n", strerror(errno));
}

/* ------------------------------------------------------------ sessions */

static sw_session *sw_session_find(serve_writer *sw, const char *id)
{
	if (!id[0])
		return NULL;
	for (int i = 0; i < SW_SESSIONS; i++)
		if (strcmp(sw->sessions[i].id, id) == 0)
			return &sw->sessions[i];
	return NULL;
}

/* The slot for @p id: its own, else a free one, else the oldest. */
static sw_session *sw_session_take(serve_writer *sw, const char *id)
{
	sw_session *ss = sw_session_find(sw, id);
	if (!ss) {
		ss = &sw->sessions[0];
		for (int i = 0; i < SW_SESSIONS; i++) {
			sw_session *c = &sw->sessions[i];
			if (!c->id[0]) {
				ss = c;
				break;
			}
			if (c->age < ss->age)
				ss = c;
		}
	}
	memset(ss, 0, sizeof(*ss));
	snprintf(ss->id, sizeof(ss->id), "%s", id);
	ss->age = ++sw->age;
	return ss;
}

static void sw_session_drop(serve_writer *sw, sw_session *ss)
{
	if (sw->frozen_ss == ss)
		sw->frozen_ss = NULL;
	memset(ss, 0, sizeof(*ss));
}

/* ------------------------------------------------------------ callbacks */

static void sw_lib_log(void *arg, const char *line)
{
	serve_writer *sw = arg;
	sw_log(sw, "%s", line);
}

/* How long prepare-snapshot keeps the checkpoint's page writes back at
 * most (the thaw ends it sooner; the engine ends it at this deadline
 * whoever dies): PrepareForSnapshot to Thaw is amberd's presync, its
 * provider's preparation and the hold. */
#define SW_QUIET_MS 30000u
/* How long the quiet goes on after a thaw from amberd at most
 * (ams_thaw_quiet): the requestor copies and verifies the shadow, then
 * sends backup-complete, which ends it (after the answer) whatever it
 * says.  An incremental takes well under it; a large full takes longer,
 * and the checkpoints it held back then run during the rest of its copy. */
#define SW_AFTER_THAW_MS 2000u

#define SW_DISMOUNTED_MSG \
	"the instance is closed for a restore (pre-restore); it opens again at post-restore"

static int sw_prepare_snapshot(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	serve_writer *sw = arg;
	if (!sw->inst) {
		snprintf(out->message, sizeof(out->message), "%s", SW_DISMOUNTED_MSG);
		sw_log(sw, "prepare-snapshot for set %s refused: %s", ev->set, out->message);
		return AMB_FAIL_NONRETRYABLE;
	}
	uint32_t gen = 0;
	/* quiet first: the roll then waits neither for the header refresh nor
	 * for the next log file it asks for (both wait for the thaw) */
	ams_quiesce(sw->inst, SW_QUIET_MS);
	int rc = ams_log_roll(sw->inst, &gen);
	if (rc != AMS_OK) {
		snprintf(out->message, sizeof(out->message), "log roll failed: %s", ams_errmsg());
		ams_quiesce(sw->inst, 0);
		sw_log(sw, "prepare-snapshot for set %s: %s", ev->set, out->message);
		return AMB_FAIL_RETRYABLE;
	}
	sw_log(sw, "prepare-snapshot for set %s: log rolled to generation %" PRIu32, ev->set, gen);
	return 0;
}

static int sw_freeze(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	serve_writer *sw = arg;
	sw->held = false;
	if (!sw->inst) {
		snprintf(out->message, sizeof(out->message), "%s", SW_DISMOUNTED_MSG);
		sw_log(sw, "freeze for set %s refused: %s", ev->set, out->message);
		return AMB_FAIL_NONRETRYABLE;
	}
	int rc = ams_freeze(sw->inst, ev->hold_ms);
	if (rc == AMS_EBUSY) {
		snprintf(out->message, sizeof(out->message), "a streaming backup is running");
		sw_log(sw, "freeze for set %s refused: %s", ev->set, out->message);
		return AMB_FAIL_RETRYABLE;
	}
	if (rc != AMS_OK) {
		snprintf(out->message, sizeof(out->message), "freeze failed: %s", ams_errmsg());
		sw_log(sw, "freeze for set %s: %s", ev->set, out->message);
		return AMB_FAIL_NONRETRYABLE;
	}
	sw->freeze_ns = sw_now_ns();
	sw->hold_ms = ev->hold_ms;
	sw->frozen = true;
	/* the databases nothing wrote since prepare-snapshot (its quiesce):
	 * a provider that copied the volume before the freeze need not look
	 * at them again while writes are held */
	out->n_unchanged = ams_unchanged_files(sw->inst, out->unchanged, AMB_MAX_UNCHANGED);
	/* the range of logs the shadow holds: nothing rolls or checkpoints
	 * while frozen, so this is what the snapshot sees */
	ams_info info;
	memset(&info, 0, sizeof(info));
	rc = ams_info_get(sw->inst, &info);
	/* commits are held from the moment ams_freeze() stopped admitting them */
	if (rc == AMS_OK && info.frozen_since_us)
		sw_latency_mark(sw, "hold", info.frozen_since_us * 1000u);
	sw_latency_mark(sw, "freeze", sw->freeze_ns);
	sw->frozen_ss = NULL;
	if (rc == AMS_OK && ev->session[0]) {
		sw_session *ss = sw_session_take(sw, ev->session);
		ss->gen_checkpoint = info.gen_checkpoint;
		ss->gen_current = info.gen_current;
		sw->frozen_ss = ss;
		sw_log(sw, "frozen for set %s (session %s): the shadow holds log generations "
		       "0x%08" PRIX32 "-0x%08" PRIX32 " (the last one partial)", ev->set, ev->session,
		       info.gen_checkpoint, info.gen_current);
	}
	return 0;
}

static const char *thaw_reason(amb_thaw_reason why)
{
	switch (why) {
	case AMB_THAW_EVENT:
		return "thaw";
	case AMB_THAW_ABORT:
		return "abort";
	case AMB_THAW_DEADLINE:
		return "hold deadline";
	case AMB_THAW_DISCONNECT:
		return "lost amberd";
	case AMB_THAW_STOP:
		return "shutdown";
	}
	return "?";
}

static int sw_thaw(void *arg, amb_thaw_reason why, const amb_wevent *ev, amb_writer_result *out)
{
	serve_writer *sw = arg;
	(void)ev;
	if (!sw->inst) { /* cannot happen: pre-restore refuses while frozen */
		sw->frozen = false;
		sw->frozen_ss = NULL;
		return 0;
	}
	/* a thaw from amberd keeps the quiet until backup-complete; any other
	 * (a deadline, a lost connection) ends it, and so does a hold that
	 * did not last (post-snapshot then fails the set) */
	int rc = why == AMB_THAW_EVENT ? ams_thaw_quiet(sw->inst, SW_AFTER_THAW_MS)
	                               : ams_thaw(sw->inst);
	if (rc != AMS_OK)
		ams_quiesce(sw->inst, 0);
	uint64_t t = sw_now_ns();
	sw->held = rc == AMS_OK;
	sw_latency_mark(sw, "thaw", t);
	double ms = sw->frozen ? (double)(t - sw->freeze_ns) / 1e6 : 0.0;
	sw->frozen = false;
	if (sw->frozen_ss)
		sw->frozen_ss->held = rc == AMS_OK && why == AMB_THAW_EVENT;
	sw->frozen_ss = NULL;
	if (rc == AMS_OK) {
		sw_log(sw, "thawed (%s): held writes for %.1f ms", thaw_reason(why), ms);
	} else if (rc == AMS_ETIMEDOUT) {
		/* the engine released the writes at its own deadline: the
		 * hold lasted about hold_ms, not until now */
		sw_log(sw, "thawed (%s): held writes for %.1f ms, but the engine's %" PRIu32
		       " ms deadline released them before the thaw: not held throughout",
		       thaw_reason(why), ms < sw->hold_ms ? ms : (double)sw->hold_ms, sw->hold_ms);
	} else {
		sw_log(sw, "thaw (%s): %s", thaw_reason(why), ams_errmsg());
	}
	/* writes are flowing again whatever ams_thaw() said: thaw succeeded;
	 * whether they were held throughout is post-snapshot's answer */
	(void)out;
	return 0;
}

static int sw_post_snapshot(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	serve_writer *sw = arg;
	out->held_writes = sw->held;
	if (!sw->held) {
		snprintf(out->message, sizeof(out->message),
		         "writes were not held from freeze to thaw (the freeze deadline passed)");
		sw_log(sw, "post-snapshot for set %s: %s", ev->set, out->message);
		sw_session *ss = sw_session_find(sw, ev->session);
		if (ss)
			ss->held = false;
	}
	sw->held = false;
	return 0;
}

static int sw_abort(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	serve_writer *sw = arg;
	(void)out;
	sw->frozen = false;
	sw->held = false;
	if (sw->inst)
		ams_quiesce(sw->inst, 0); /* an aborted set never thaws */
	sw_session *ss = sw_session_find(sw, ev->session);
	if (ss)
		sw_session_drop(sw, ss);
	const char *cls = ev->cls ? amb_fail_class_name(ev->cls) : NULL;
	sw_log(sw, "abort of session %s%s%s%s%s", ev->session, cls ? ": " : "", cls ? cls : "",
	       ev->message ? ": " : "", ev->message ? ev->message : "");
	if (sw->dismounted && sw->restore_pending) {
		/* the restore ended before its post-restore (its requestor died or
		 * gave up): nothing was recovered, so open the instance as it is
		 * rather than stay closed until someone notices.  After a failed
		 * post-restore the instance stays closed on purpose. */
		char msg[AMB_TEXT_MAX / 2];
		msg[0] = '\0';
		sw->restore_pending = false;
		ams_instance *in = sw->host.mount(sw->host.arg, true, msg, sizeof(msg));
		if (in) {
			sw->inst = in;
			sw->dismounted = false;
			sw_log(sw, "restore abandoned without post-restore: the instance is open again "
			       "as it was%s%s", msg[0] ? "; " : "", msg);
		} else {
			sw_log(sw, "restore abandoned without post-restore, and the instance cannot be "
			       "opened: %s; it stays closed", msg);
		}
	}
	return 0;
}

/* The first component not successful, "" if none is named, NULL if all are. */
static const char *sw_failed_component(const amb_wevent *ev)
{
	if (ev->n_components == 0)
		return "";
	for (size_t i = 0; i < ev->n_components; i++)
		if (!ev->components[i].success)
			return ev->components[i].name;
	return NULL;
}

/* After the answer to backup-complete: the end of the quiet kept after the
 * thaw, then the second header copies and the log truncation the recorded
 * backup allows (ams_truncate_pending), on the serving thread before the
 * next event.  A failure is logged; the logs stay, and the next full or
 * incremental backup deletes them. */
static void sw_truncate(void *arg)
{
	serve_writer *sw = arg;
	uint32_t first, end;
	if (!sw->inst)
		return;
	ams_quiesce(sw->inst, 0); /* the quiet kept after the thaw ends */
	int rc = ams_truncate_pending(sw->inst, &first, &end);
	if (rc != AMS_OK)
		sw_log(sw, "log truncation after backup-complete failed: %s: %s (the logs stay; "
		       "the next full or incremental backup deletes them)", ams_strerror(rc),
		       ams_errmsg());
	if (end > first)
		sw_log(sw, "log truncation after backup-complete: deleted generations 0x%08" PRIX32
		       "-0x%08" PRIX32, first, end - 1);
	else if (rc == AMS_OK)
		sw_log(sw, "log truncation after backup-complete: no log deleted");
}

/* After the answer to a differential's backup-complete: the second header
 * copies (ams_backup_settle; a differential truncates nothing).  A failure
 * is logged; the instance is failed. */
static void sw_settle(void *arg)
{
	serve_writer *sw = arg;
	if (!sw->inst)
		return;
	ams_quiesce(sw->inst, 0); /* the quiet kept after the thaw ends */
	int rc = ams_backup_settle(sw->inst);
	if (rc != AMS_OK)
		sw_log(sw, "writing the second header copies after backup-complete failed: %s: %s",
		       ams_strerror(rc), ams_errmsg());
}

static int sw_backup_complete_do(serve_writer *sw, const amb_wevent *ev,
                                 amb_writer_result *out)
{
	const char *tname = amb_backup_type_name(ev->backup_type);
	tname = tname ? tname : "?";
	sw_session *ss = sw_session_find(sw, ev->session);
	if (!ss) {
		snprintf(out->message, sizeof(out->message),
		         "session %s never froze this instance (amber-store serve was restarted, or "
		         "it took no part in that snapshot): nothing recorded, no log deleted",
		         ev->session);
		sw_log(sw, "backup-complete (%s) refused: %s", tname, out->message);
		return AMB_FAIL_NONRETRYABLE;
	}
	sw_session range = *ss;
	sw_session_drop(sw, ss);

	const char *bad = sw_failed_component(ev);
	if (bad) {
		if (bad[0])
			snprintf(out->message, sizeof(out->message),
			         "component %s was not backed up successfully: nothing recorded, no log "
			         "deleted", bad);
		else
			snprintf(out->message, sizeof(out->message),
			         "no component of this writer was reported successful: nothing recorded, "
			         "no log deleted");
		sw_log(sw, "backup-complete (%s) of session %s: %s", tname, ev->session, out->message);
		return 0;
	}
	int type;
	switch (ev->backup_type) {
	case AMB_BACKUP_FULL:
		type = AMS_BACKUP_FULL;
		break;
	case AMB_BACKUP_INCREMENTAL:
		type = AMS_BACKUP_INCREMENTAL;
		break;
	case AMB_BACKUP_DIFFERENTIAL:
		type = AMS_BACKUP_DIFFERENTIAL;
		break;
	default:
		snprintf(out->message, sizeof(out->message),
		         "%s backup: the header and the logs are left alone", tname);
		sw_log(sw, "backup-complete of session %s: %s", ev->session, out->message);
		return 0;
	}
	if (!sw->inst) {
		snprintf(out->message, sizeof(out->message), "%s: nothing recorded", SW_DISMOUNTED_MSG);
		sw_log(sw, "backup-complete (%s) of session %s refused: %s", tname, ev->session,
		       out->message);
		return AMB_FAIL_NONRETRYABLE;
	}
	if (!range.held) {
		snprintf(out->message, sizeof(out->message),
		         "writes were not held from freeze to thaw in session %s: its shadow may not "
		         "be consistent; nothing recorded, no log deleted", ev->session);
		sw_log(sw, "backup-complete (%s) refused: %s", tname, out->message);
		return AMB_FAIL_NONRETRYABLE;
	}
	uint32_t low = type == AMS_BACKUP_FULL ? range.gen_checkpoint : 0;
	int rc = ams_backup_complete(sw->inst, type | AMS_BACKUP_DEFER_TRUNCATE, low,
	                             range.gen_current, (uint64_t)time(NULL), 0);
	if (rc != AMS_OK) {
		snprintf(out->message, sizeof(out->message), "recording the %s backup failed: %s: %s",
		         tname, ams_strerror(rc), ams_errmsg());
		sw_log(sw, "backup-complete of session %s: %s", ev->session, out->message);
		return AMB_FAIL_NONRETRYABLE;
	}
	char range_txt[96];
	if (low)
		snprintf(range_txt, sizeof(range_txt), "log generations 0x%08" PRIX32 "-0x%08" PRIX32,
		         low, range.gen_current);
	else
		snprintf(range_txt, sizeof(range_txt),
		         "log generations up to 0x%08" PRIX32 " (from the end of the previous backup)",
		         range.gen_current);
	snprintf(out->message, sizeof(out->message), "recorded the %s backup of %s; %s", tname,
	         range_txt, type == AMS_BACKUP_DIFFERENTIAL ? "no log deleted" :
	         "the logs it no longer needs are deleted after this answer");
	sw_log(sw, "backup-complete of session %s: %s", ev->session, out->message);
	out->after_reply = type == AMS_BACKUP_DIFFERENTIAL ? sw_settle : sw_truncate;
	out->after_arg = sw;
	return 0;
}

/* backup-complete ends the quiet kept after the thaw: after the answer
 * when it writes the header (after_reply: sw_truncate, sw_settle), so that
 * neither a checkpoint nor a header refresh comes before that write; at
 * once otherwise. */
static int sw_backup_complete(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	serve_writer *sw = arg;
	int rc = sw_backup_complete_do(sw, ev, out);
	if (!out->after_reply && sw->inst)
		ams_quiesce(sw->inst, 0);
	return rc;
}

/* Is @p path the instance directory (the same inode)? */
static bool sw_is_instance_dir(const serve_writer *sw, const char *path)
{
	struct stat a, b;
	return stat(path, &a) == 0 && stat(sw->dir, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

static int sw_pre_restore(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	serve_writer *sw = arg;
	for (size_t i = 0; i < ev->n_components; i++) {
		const amb_wcomp *c = &ev->components[i];
		if (c->target && c->target[0] && !sw_is_instance_dir(sw, c->target)) {
			snprintf(out->message, sizeof(out->message),
			         "component %s: target %s is not the instance directory %s: amber-store "
			         "restores in place only (for another place, lay the files down there "
			         "and run amber-store hard-recover)", c->name, c->target, sw->dir);
			sw_log(sw, "pre-restore of session %s refused: %s", ev->session, out->message);
			return AMB_FAIL_NONRETRYABLE;
		}
	}
	if (!sw->have_host) {
		snprintf(out->message, sizeof(out->message), "this process cannot close its instance");
		sw_log(sw, "pre-restore of session %s refused: %s", ev->session, out->message);
		return AMB_FAIL_NONRETRYABLE;
	}
	if (sw->dismounted) {
		snprintf(out->message, sizeof(out->message),
		         "the instance is already closed for a restore: lay the files down in %s",
		         sw->dir);
		sw_log(sw, "pre-restore of session %s: %s", ev->session, out->message);
		return 0;
	}
	if (sw->frozen) {
		snprintf(out->message, sizeof(out->message),
		         "the instance is frozen for a snapshot; try again after its thaw");
		sw_log(sw, "pre-restore of session %s refused: %s", ev->session, out->message);
		return AMB_FAIL_RETRYABLE;
	}
	char msg[AMB_TEXT_MAX / 2];
	msg[0] = '\0';
	int rc = sw->host.dismount(sw->host.arg, msg, sizeof(msg));
	/* the instance is gone whatever the close said */
	sw->inst = NULL;
	sw->dismounted = true;
	sw->restore_pending = true;
	/* ranges of snapshots taken before the restore describe another
	 * history: a late backup-complete must not record them */
	for (int i = 0; i < SW_SESSIONS; i++)
		sw_session_drop(sw, &sw->sessions[i]);
	if (rc != 0)
		snprintf(out->message, sizeof(out->message),
		         "instance closed for the restore, after an error (%s): its databases are "
		         "left dirty, the restore replaces them; lay the files down in %s", msg,
		         sw->dir);
	else
		snprintf(out->message, sizeof(out->message),
		         "instance closed for the restore: lay the files down in %s, with %s "
		         "there", sw->dir, SERVE_WRITER_RESTORE_ENV);
	sw_log(sw, "pre-restore of session %s: %s", ev->session, out->message);
	return 0;
}

/* "roll-forward, until none" etc. from restore.env (after hard recovery);
 * *resume: roll_forward=yes and until=none. */
static void sw_env_summary(const char *path, char *buf, size_t size, bool *resume)
{
	*resume = false;
	amb_restore_env *env = calloc(1, sizeof(*env));
	if (!env) {
		snprintf(buf, size, "(restore.env not read again: out of memory)");
		return;
	}
	if (amb_restore_env_load(path, env) != 0) {
		snprintf(buf, size, "(restore.env not read again: %s)", ams_errmsg());
		free(env);
		return;
	}
	*resume = env->roll_forward && env->until_us == 0;
	snprintf(buf, size, "generations 0x%08" PRIX32 "-0x%08" PRIX32 " of backup %s, %s%s",
	         env->gen_low, env->gen_high, env->backup_id[0] ? env->backup_id : "(no id)",
	         env->roll_forward ? "rolled forward" : "no roll-forward",
	         env->until_us ? ", stopped at 'until'" : "");
	free(env);
}

static int sw_post_restore(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	serve_writer *sw = arg;
	const char *bad = sw_failed_component(ev);
	if (bad && !bad[0])
		bad = NULL; /* no component named: the whole writer */
	if (!sw->dismounted) {
		if (bad) {
			snprintf(out->message, sizeof(out->message),
			         "restore not successful (component %s) and the instance was never "
			         "closed: nothing to do", bad);
			sw_log(sw, "post-restore of session %s: %s", ev->session, out->message);
			return 0;
		}
		snprintf(out->message, sizeof(out->message),
		         "post-restore without pre-restore: the instance is open, nothing was "
		         "recovered");
		sw_log(sw, "post-restore of session %s refused: %s", ev->session, out->message);
		return AMB_FAIL_NONRETRYABLE;
	}
	sw->restore_pending = false;
	char msg[AMB_TEXT_MAX / 2];
	msg[0] = '\0';
	if (bad) {
		/* the restore was abandoned: the instance as it is */
		ams_instance *in = sw->host.mount(sw->host.arg, true, msg, sizeof(msg));
		if (!in) {
			snprintf(out->message, sizeof(out->message),
			         "restore abandoned (component %s not successful) but the instance "
			         "cannot be opened: %s; it stays closed", bad, msg);
			sw_log(sw, "post-restore of session %s: %s", ev->session, out->message);
			return AMB_FAIL_NONRETRYABLE;
		}
		sw->inst = in;
		sw->dismounted = false;
		snprintf(out->message, sizeof(out->message),
		         "restore abandoned (component %s not successful): no recovery; the instance "
		         "is open again as it was", bad);
		sw_log(sw, "post-restore of session %s: %s", ev->session, out->message);
		return 0;
	}
	char env[PATH_MAX + 32];
	snprintf(env, sizeof(env), "%s/%s", sw->dir, SERVE_WRITER_RESTORE_ENV);
	sw_log(sw, "post-restore of session %s: hard recovery from %s", ev->session, env);
	int rc = ams_hard_recover(env, NULL);
	if (rc != AMS_OK) {
		snprintf(out->message, sizeof(out->message),
		         "hard recovery failed: %s: %s; the instance stays closed", ams_strerror(rc),
		         ams_errmsg());
		sw_log(sw, "post-restore of session %s: %s", ev->session, out->message);
		return AMB_FAIL_NONRETRYABLE;
	}
	char summary[AMB_TEXT_MAX / 2];
	bool resume;
	sw_env_summary(env, summary, sizeof(summary), &resume);
	ams_instance *in = sw->host.mount(sw->host.arg, resume, msg, sizeof(msg));
	if (!in) {
		snprintf(out->message, sizeof(out->message),
		         "hard recovery ended (%s) but the instance cannot be opened: %s; it stays "
		         "closed", summary, msg);
		sw_log(sw, "post-restore of session %s: %s", ev->session, out->message);
		return AMB_FAIL_NONRETRYABLE;
	}
	sw->inst = in;
	sw->dismounted = false;
	snprintf(out->message, sizeof(out->message), "hard recovery ended (%s); instance open again%s%s",
	         summary, msg[0] ? "; " : "", msg);
	sw_log(sw, "post-restore of session %s: %s", ev->session, out->message);
	return 0;
}

/* ------------------------------------------------------------ identity */

/* Read DIR/amber-writer.id, or create it.  Returns 0 or EXIT_FAIL. */
static int sw_instance_id(const char *dir, amb_uuid id)
{
	amb_vfs *v = amb_vfs_posix();
	char path[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/%s", dir, SERVE_WRITER_ID_FILE);

	int fd = v->open(v, path, O_RDONLY | O_CLOEXEC, 0);
	if (fd == -ENOENT) {
		int rc = amb_uuid_generate(id);
		if (rc != 0) {
			fprintf(stderr, SW_PREFIX "cannot make a writer instance id: %s\n",
			        strerror(-rc));
			return EXIT_FAIL;
		}
		char line[AMB_UUID_BUF + 1];
		snprintf(line, sizeof(line), "%s\n", id);
		rc = amb_durable_write(v, path, line, AMB_UUID_LEN + 1);
		if (rc != 0) {
			fprintf(stderr,
			        SW_PREFIX "%s: cannot create the writer identity: %s "
			        "(--no-writer serves without taking part in backups)\n",
			        path, strerror(-rc));
			return EXIT_FAIL;
		}
		return 0;
	}
	if (fd < 0) {
		fprintf(stderr, SW_PREFIX "%s: %s\n", path, strerror(-fd));
		return EXIT_FAIL;
	}
	char buf[AMB_UUID_LEN + 2];
	ssize_t n = v->pread(v, fd, buf, sizeof(buf), 0);
	v->close(v, fd);
	if (n < 0) {
		fprintf(stderr, SW_PREFIX "%s: read failed: %s\n", path, strerror((int)-n));
		return EXIT_FAIL;
	}
	if (n != AMB_UUID_LEN + 1 || buf[AMB_UUID_LEN] != '\n') {
		fprintf(stderr,
		        SW_PREFIX "%s: damaged: expected one line holding the writer instance uuid "
		        "(%zd bytes found); restore the file or remove it to give the instance "
		        "a new writer identity\n",
		        path, n);
		return EXIT_FAIL;
	}
	buf[AMB_UUID_LEN] = '\0';
	if (!amb_proto_uuid_ok(buf)) {
		fprintf(stderr,
		        SW_PREFIX "%s: damaged: not a uuid (8-4-4-4-12 lower-case hex); restore "
		        "the file or remove it to give the instance a new writer identity\n",
		        path);
		return EXIT_FAIL;
	}
	memcpy(id, buf, AMB_UUID_BUF);
	return 0;
}

/* ------------------------------------------------------------ metadata */

/* "<prefix> at <dir>", shortened from the left of dir to AMB_LABEL_MAX
 * bytes (at a UTF-8 character boundary). */
static void sw_instance_name(serve_writer *sw)
{
	size_t plen = strlen(sw->prefix), dlen = strlen(sw->dir);
	if (plen + 4 + dlen <= AMB_LABEL_MAX) {
		snprintf(sw->instance_name, sizeof(sw->instance_name), "%s at %s", sw->prefix,
		         sw->dir);
		return;
	}
	size_t room = AMB_LABEL_MAX - plen - 7; /* " at ..." */
	const char *tail = sw->dir + dlen - room;
	while ((*tail & 0xc0) == 0x80)
		tail++;
	snprintf(sw->instance_name, sizeof(sw->instance_name), "%s at ...%s", sw->prefix, tail);
}

static int sw_build_md(serve_writer *sw, uint32_t max_hold_ms)
{
	ams_info info;
	int rc = ams_info_get(sw->inst, &info);
	if (rc != AMS_OK) {
		fprintf(stderr, SW_PREFIX "%s: %s\n", ams_strerror(rc), ams_errmsg());
		return EXIT_FAIL;
	}
	int ndb = info.ndatabases;
	if (ndb < 0 || ndb > AMB_MAX_COMPONENTS) {
		fprintf(stderr, SW_PREFIX "%s: %d databases: too many for a writer\n", sw->dir, ndb);
		return EXIT_FAIL;
	}
	snprintf(sw->prefix, sizeof(sw->prefix), "%s", info.prefix);
	snprintf(sw->log_pattern, sizeof(sw->log_pattern), "%s*.log", sw->prefix);
	snprintf(sw->checkpoint, sizeof(sw->checkpoint), "%s/%s.chk", sw->dir, sw->prefix);
	sw_instance_name(sw);

	sw->comps = calloc((size_t)ndb + 1, sizeof(*sw->comps));
	sw->filesets = calloc(2 * (size_t)ndb + 1, sizeof(*sw->filesets));
	sw->patterns = calloc((size_t)ndb + 1, sizeof(*sw->patterns));
	if (!sw->comps || !sw->filesets || !sw->patterns) {
		fprintf(stderr, SW_PREFIX "out of memory\n");
		return EXIT_FAIL;
	}
	for (int i = 0; i < ndb; i++) {
		const char *path = ams_db_path(sw->inst, i);
		const char *base = path ? strrchr(path, '/') : NULL;
		base = base ? base + 1 : path;
		size_t blen = base ? strlen(base) : 0;
		if (blen <= 4 || strcmp(base + blen - 4, ".edb") != 0) {
			fprintf(stderr, SW_PREFIX "database %d: unexpected path %s\n", i,
			        path ? path : "(none)");
			return EXIT_FAIL;
		}
		amb_component *c = &sw->comps[i];
		if (blen - 4 > AMB_NAME_MAX)
			blen = AMB_NAME_MAX + 4; /* cannot happen: names are < 64 bytes */
		memcpy(c->name, base, blen - 4);
		c->name[blen - 4] = '\0';
		if (!amb_proto_name_ok(c->name)) {
			fprintf(stderr,
			        SW_PREFIX "%s: the database name '%s' cannot be a component name "
			        "(letters, digits and . _ - @ + only, starting with a letter or digit); "
			        "rename the database or serve with --no-writer\n",
			        path, c->name);
			return EXIT_USAGE;
		}
		/* the name has no fnmatch(3) special characters: the pattern
		 * matches exactly this database */
		snprintf(sw->patterns[i], sizeof(sw->patterns[i]), "%s", base);
		c->type = AMB_COMP_DATABASE;
		c->selectable = true;
		c->files = &sw->filesets[2 * i];
		c->files->path = sw->dir;
		c->files->pattern = sw->patterns[i];
		c->n_files = 1;
		c->logs = &sw->filesets[2 * i + 1];
		c->logs->path = sw->dir;
		c->logs->pattern = sw->log_pattern;
		c->n_logs = 1;
		c->checkpoint = sw->checkpoint;
	}

	amb_writer_md *md = &sw->md;
	snprintf(md->name, sizeof(md->name), "%s", SERVE_WRITER_NAME);
	md->instance_name = sw->instance_name;
	md->backup_types = AMB_BACKUP_BIT(AMB_BACKUP_FULL) | AMB_BACKUP_BIT(AMB_BACKUP_COPY) |
	                   AMB_BACKUP_BIT(AMB_BACKUP_INCREMENTAL) |
	                   AMB_BACKUP_BIT(AMB_BACKUP_DIFFERENTIAL);
	snprintf(md->verifier, sizeof(md->verifier), "amber-store");
	md->restore_method = AMB_RESTORE_STOP_RESTORE_START;
	md->max_hold_ms = max_hold_ms;
	md->components = sw->comps;
	md->n_components = (size_t)ndb;
	return 0;
}

static void sw_free(serve_writer *sw)
{
	free(sw->comps);
	free(sw->filesets);
	free(sw->patterns);
	free(sw);
}

int serve_writer_start(ams_instance *inst, const char *dir, const serve_writer_opts *o,
                       serve_writer **out)
{
	*out = NULL;
	serve_writer *sw = calloc(1, sizeof(*sw));
	if (!sw) {
		fprintf(stderr, SW_PREFIX "out of memory\n");
		return EXIT_FAIL;
	}
	sw->inst = inst;
	sw->quiet = o->quiet;
	sw->latency_fd = o->latency_fd;
	if (o->host) {
		sw->host = *o->host;
		sw->have_host = true;
	}
	uint32_t max_hold = o->max_hold_ms ? o->max_hold_ms : SERVE_WRITER_MAX_HOLD_MS;

	int status;
	if (!realpath(dir, sw->dir)) {
		fprintf(stderr, SW_PREFIX "%s: %s\n", dir, strerror(errno));
		status = EXIT_FAIL;
		goto out_free;
	}
	status = sw_build_md(sw, max_hold);
	if (status != 0)
		goto out_free;
	status = sw_instance_id(sw->dir, sw->md.instance);
	if (status != 0)
		goto out_free;

	static const amb_writer_ops ops = {
		.prepare_snapshot = sw_prepare_snapshot,
		.freeze = sw_freeze,
		.thaw = sw_thaw,
		.post_snapshot = sw_post_snapshot,
		.backup_complete = sw_backup_complete,
		.abort = sw_abort,
		.pre_restore = sw_pre_restore,
		.post_restore = sw_post_restore,
		.log = sw_lib_log,
	};
	const char *socket = amb_socket_path(o->socket);
	int rc = amb_writer_start(socket, SERVE_WRITER_NAME, &sw->md, &ops, sw, &sw->w);
	if (rc != 0) {
		if (rc == -EINVAL)
			fprintf(stderr, SW_PREFIX "writer metadata refused: %s\n",
			        amb_client_last_error());
		else
			fprintf(stderr, SW_PREFIX "cannot start the writer: %s\n", strerror(-rc));
		status = EXIT_FAIL;
		goto out_free;
	}
	sw_log(sw, "writer %s (instance %s, %zu component%s) will take part in backups through %s",
	       SERVE_WRITER_NAME, sw->md.instance, sw->md.n_components,
	       sw->md.n_components == 1 ? "" : "s", socket);
	*out = sw;
	return 0;

out_free:
	sw_free(sw);
	return status;
}

void serve_writer_stop(serve_writer *sw)
{
	if (!sw)
		return;
	amb_writer_stop(sw->w);
	sw_free(sw);
}

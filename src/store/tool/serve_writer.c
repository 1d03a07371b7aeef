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
 *   prepare-snapshot  ams_log_roll(); a failure is retryable
 *   freeze            ams_freeze(inst, hold_ms): the engine thaws itself at
 *                     the deadline even if this process's writer thread is
 *                     stuck; busy (a streaming backup) is retryable
 *   thaw (any reason) ams_thaw(); AMS_OK means writes were held throughout
 *   post-snapshot     held_writes = what the last thaw said
 *   abort             drop the state (libamber has already called thaw)
 *   backup-complete, pre-restore, post-restore
 *                     answered ok without doing anything yet: recording the
 *                     backup and truncating logs arrive with `amber backup`,
 *                     restore with issue 4
 *
 * The state below (frozen, held, freeze time) is only touched by the
 * callbacks, which never run concurrently, so it needs no lock.
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
#include <time.h>
#include <unistd.h>

#include "amber/client.h"
#include "amber/writer.h"
#include "common/durable.h"
#include "common/vfs.h"
#include "store/tool/tool.h"

#define SW_PREFIX "amber-store serve: "

struct serve_writer {
	ams_instance *inst;
	amb_writer *w;
	bool quiet;
	int latency_fd;

	/* callback state */
	bool frozen;
	bool held;           /* the last thaw said writes were held throughout */
	uint64_t freeze_ns;  /* CLOCK_MONOTONIC when ams_freeze() returned */
	uint32_t hold_ms;    /* of the current freeze */

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

/* ------------------------------------------------------------ callbacks */

static void sw_lib_log(void *arg, const char *line)
{
	serve_writer *sw = arg;
	sw_log(sw, "%s", line);
}

static int sw_prepare_snapshot(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	serve_writer *sw = arg;
	uint32_t gen = 0;
	int rc = ams_log_roll(sw->inst, &gen);
	if (rc != AMS_OK) {
		snprintf(out->message, sizeof(out->message), "log roll failed: %s", ams_errmsg());
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
	sw_latency_mark(sw, "freeze", sw->freeze_ns);
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
	int rc = ams_thaw(sw->inst);
	uint64_t t = sw_now_ns();
	sw->held = rc == AMS_OK;
	sw_latency_mark(sw, "thaw", t);
	double ms = sw->frozen ? (double)(t - sw->freeze_ns) / 1e6 : 0.0;
	sw->frozen = false;
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
	const char *cls = ev->cls ? amb_fail_class_name(ev->cls) : NULL;
	sw_log(sw, "abort of session %s%s%s%s%s", ev->session, cls ? ": " : "", cls ? cls : "",
	       ev->message ? ": " : "", ev->message ? ev->message : "");
	return 0;
}

static int sw_backup_complete(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	serve_writer *sw = arg;
	snprintf(out->message, sizeof(out->message), "backup recording arrives with amber backup");
	sw_log(sw, "backup-complete of session %s: nothing recorded, no log truncated (%s)",
	       ev->session, out->message);
	return 0;
}

static int sw_pre_restore(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	serve_writer *sw = arg;
	snprintf(out->message, sizeof(out->message),
	         "restore is handled by issue 4: amber-store did nothing");
	sw_log(sw, "pre-restore of session %s: %s", ev->session, out->message);
	return 0;
}

static int sw_post_restore(void *arg, const amb_wevent *ev, amb_writer_result *out)
{
	serve_writer *sw = arg;
	snprintf(out->message, sizeof(out->message),
	         "restore is handled by issue 4: amber-store did nothing");
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

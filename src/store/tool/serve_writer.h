/*
 * serve_writer.h - `amber-store serve` as an amber writer (libamber,
 * include/amber/writer.h): the instance takes part in amberd's backup
 * sequence (design.md section 3, docs/protocol.md sections 5, 6 and 9).
 *
 * The writer's identity is the file `amber-writer.id` in the instance
 * directory: one line, the writer instance uuid (36 characters, lower-case
 * 8-4-4-4-12 hex) and '\n'.  The first serve with the writer on creates it
 * (amb_durable_write); later ones read it, so restore can find the writer
 * again.  Anything else in the file is an error that names it.
 */
#ifndef AMBER_STORE_TOOL_SERVE_WRITER_H
#define AMBER_STORE_TOOL_SERVE_WRITER_H

#include <stdbool.h>
#include <stdint.h>

#include "amber/store.h"

#define SERVE_WRITER_NAME "amber-store"
#define SERVE_WRITER_ID_FILE "amber-writer.id"
#define SERVE_WRITER_MAX_HOLD_MS 10000u

#define SERVE_WRITER_RESTORE_ENV "restore.env"

typedef struct serve_writer serve_writer;

/*
 * What serve.c lends the writer for an online restore (pre-restore and
 * post-restore, see serve_writer.c): the writer never closes or opens the
 * instance itself, because serve.c owns the threads that use it.  Both are
 * called on libamber's thread, one at a time.
 */
typedef struct serve_host {
	void *arg;
	/* Stop every thread that uses the instance (the workload's threads
	 * finish the commits in flight, acknowledged or failed, so the oracle
	 * is exact) and ams_close() it.  The instance is gone afterwards
	 * whatever the result.  Returns 0, or -1 with a message in msg when
	 * the close reported an error (the databases then stay dirty). */
	int (*dismount)(void *arg, char *msg, size_t size);
	/* ams_open() the instance again; with resume_load, start the workload
	 * again (if serve runs one and it did not fail).  Returns the instance,
	 * or NULL with a message in msg (the instance stays closed). */
	ams_instance *(*mount)(void *arg, bool resume_load, char *msg, size_t size);
} serve_host;

typedef struct serve_writer_opts {
	const char *socket;    /* amberd's socket; NULL: amb_socket_path(NULL) */
	uint32_t max_hold_ms;  /* 1..AMB_MAX_HOLD_MS; 0: SERVE_WRITER_MAX_HOLD_MS */
	bool quiet;            /* no log lines on stderr */
	int latency_fd;        /* -1, or an O_APPEND fd for "freeze <ns>" / "thaw <ns>" */
	const serve_host *host; /* NULL: pre-restore and post-restore are refused */
} serve_writer_opts;

/*
 * Build the writer metadata of the open instance @p inst in @p dir and start
 * the writer (it connects and keeps reconnecting in the background).
 * Returns 0 and *out, or EXIT_FAIL / EXIT_USAGE (tool.h) after printing a
 * message that names the problem.
 */
int serve_writer_start(ams_instance *inst, const char *dir, const serve_writer_opts *o,
                       serve_writer **out);

/* Stop the writer (thawing the instance if it is frozen) and free it.
 * Call before ams_close() and before stopping what the host lends: no
 * callback runs once it returns.  NULL is fine. */
void serve_writer_stop(serve_writer *sw);

#endif

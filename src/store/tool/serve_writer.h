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

typedef struct serve_writer serve_writer;

typedef struct serve_writer_opts {
	const char *socket;    /* amberd's socket; NULL: amb_socket_path(NULL) */
	uint32_t max_hold_ms;  /* 1..AMB_MAX_HOLD_MS; 0: SERVE_WRITER_MAX_HOLD_MS */
	bool quiet;            /* no log lines on stderr */
	int latency_fd;        /* -1, or an O_APPEND fd for "freeze <ns>" / "thaw <ns>" */
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
 * Call before ams_close().  NULL is fine. */
void serve_writer_stop(serve_writer *sw);

#endif

/*
 * serve_stream.h - `amber-store serve` as the server of the streaming
 * (online, "NTBackup") backup of seed 003: `amber backup --method stream`.
 *
 * serve listens on the UNIX socket DIR/.amber-stream.sock (mode 0600) while
 * it runs.  A client of the same uid or root asks for a full, copy,
 * incremental or differential stream; serve reads every page through the
 * engine (ams_stream_next verifies each one), then the logs that make the
 * copy consistent (ams_stream_logs), sends them, and records the backup
 * (ams_backup_complete) only when the client says it stored everything.
 * The wire protocol is docs/stream.md; the client is src/backup/stream.
 *
 * THE INSTANCE HOLDER.  serve's instance may be closed and reopened while
 * serve runs (a restore: pre-restore closes it, post-restore reopens it),
 * so nothing outside serve.c keeps the ams_instance pointer across such a
 * change.  Users borrow it with serve_instance_get()/serve_instance_put();
 * whoever closes it first calls serve_instance_detach(), which stops new
 * borrows and waits until the borrowers gave it back.  A long borrower (a
 * stream) polls serve_instance_wanted() between page batches and gives up
 * with a retryable error when a detach is waiting.
 *
 * Locks: one mutex inside the holder, never held while calling the engine
 * or waiting on a socket; the listener's own mutex (serve_stream.c) only
 * guards its descriptors and flags.  Neither is taken while holding the
 * other.
 */
#ifndef AMBER_STORE_TOOL_SERVE_STREAM_H
#define AMBER_STORE_TOOL_SERVE_STREAM_H

#include <stdbool.h>

#include "amber/store.h"

/* The socket's name inside the instance directory. */
#define SERVE_STREAM_SOCK_NAME ".amber-stream.sock"

/* ------------------------------------------------------ instance holder */

/* Publish the open instance (after ams_open) or NULL (before ams_close,
 * once every user stopped: serve_stream_stop() first).  Not for restore:
 * use detach/attach there. */
void serve_instance_set(ams_instance *inst);

/* Borrow the instance: NULL while it is closed or a detach is waiting.
 * Every non-NULL result must be given back with serve_instance_put(). */
ams_instance *serve_instance_get(void);
void serve_instance_put(ams_instance *inst);

/* True while a detach waits: a long borrower should put it back soon. */
bool serve_instance_wanted(void);

/* For restore: stop new borrows, wait until every borrower gave the
 * instance back (a stream notices within one page batch, or after the
 * engine's retries of a damaged page), and return it (NULL if none was
 * published).  The caller then closes it, and later publishes the reopened
 * instance with serve_instance_attach() (NULL if reopening failed: streams
 * then answer "retryable" until one is attached). */
ams_instance *serve_instance_detach(void);
void serve_instance_attach(ams_instance *inst);

/* ------------------------------------------------------------ listener */

typedef struct serve_stream serve_stream;

/*
 * Create DIR/.amber-stream.sock (mode 0600; a stale socket left by a killed
 * serve is replaced, anything else at that name, a symlink included, is
 * refused) and start the listener thread.  The instance comes from the
 * holder above, borrowed for each stream.  Returns 0 and *out, or
 * EXIT_FAIL after printing a message that names the problem.
 */
int serve_stream_start(const char *dir, bool quiet, serve_stream **out);

/* Stop the listener: a stream in progress is ended (nothing recorded, no
 * log deleted), the thread joined, the socket removed if it is still
 * ours.  Call before ams_close().  NULL is fine. */
void serve_stream_stop(serve_stream *ss);

/* Wait until no stream is being served (at most timeout_ms); returns true
 * if idle.  For tests, which must not race the end of a stream. */
bool serve_stream_idle_wait(serve_stream *ss, unsigned timeout_ms);

#endif

/*
 * writer.h - libamber, writer side: take part in amberd's backup sequence.
 *
 * An application that holds data (a database, the amber-store engine)
 * starts one amb_writer.  The library runs a thread of its own that
 *
 *   - connects to amberd (amb_socket_path(), client.h), sends hello (role
 *     writer) and register with the application's metadata, and then
 *     answers amberd's events (docs/protocol.md sections 5 and 6) by calling
 *     the application's callbacks, one per event kind;
 *   - when amberd is not there or goes away, keeps trying to connect
 *     (every 100 ms at first, backing off to every 2 s) and registers
 *     again with the same metadata when it is back;
 *   - enforces the hold deadline itself: after a successful freeze it
 *     calls the thaw callback on its own when `hold_ms` (from the freeze
 *     event) has passed without thaw or abort, and at once when the
 *     connection to amberd drops.  A later post-snapshot is then answered
 *     held_writes=false whatever the callback says, so a shadow taken
 *     after the self-thaw is never reported consistent.
 *
 * The callbacks run on the library's thread, one at a time, never
 * concurrently with each other.  Each returns 0 (success) or a failure
 * class (AMB_FAIL_RETRYABLE ...) and may put a message in out->message.
 * A callback left NULL succeeds without doing anything.  Callbacks must
 * not call amb_writer_stop().
 *
 * Deadlines inside the application: a writer that holds writes should also
 * arm its own deadline (amber-store's ams_freeze(inst, hold_ms) does), so
 * that writes are released even if this library's thread is stuck.
 */
#ifndef AMBER_WRITER_H
#define AMBER_WRITER_H

#include <stdbool.h>
#include <stddef.h>

#include "amber/proto.h"

typedef struct amb_writer amb_writer;

/* What a callback fills in. */
typedef struct amb_writer_result {
	char message[AMB_TEXT_MAX + 1];  /* optional text for a failure, "" = none */
	bool held_writes;                /* post_snapshot: writes held throughout */
	/* freeze, optional: files of the writer's file sets that it has not
	 * changed since it answered prepare-snapshot, and will not change
	 * until the thaw.  A provider that copied the volume before the freeze
	 * (reflink) then does not look at them again while writes are held.
	 * Pointers to the callback's own strings, read before it returns. */
	const char *unchanged[AMB_MAX_UNCHANGED];
	size_t n_unchanged;
	/* optional: called on the serving thread once the reply is sent (or
	 * could not be), before the next event is read: work the requestor
	 * need not wait for, such as deleting the logs a backup_complete
	 * allowed to truncate */
	void (*after_reply)(void *after_arg);
	void *after_arg;
} amb_writer_result;

/* Why the thaw callback runs. */
typedef enum amb_thaw_reason {
	AMB_THAW_EVENT = 1,      /* amberd sent thaw (ev is the event) */
	AMB_THAW_ABORT,          /* amberd sent abort while frozen (ev is the abort) */
	AMB_THAW_DEADLINE,       /* hold_ms passed with no thaw (ev NULL) */
	AMB_THAW_DISCONNECT,     /* the connection to amberd dropped (ev NULL) */
	AMB_THAW_STOP,           /* amb_writer_stop() while frozen (ev NULL) */
} amb_thaw_reason;

typedef struct amb_writer_ops {
	/* identify: refresh *md in place if the metadata changed (it starts as
	 * the metadata given to amb_writer_start; the library owns it). */
	int (*identify)(void *arg, const amb_wevent *ev, amb_writer_md *md, amb_writer_result *out);
	int (*prepare_backup)(void *arg, const amb_wevent *ev, amb_writer_result *out);
	int (*prepare_snapshot)(void *arg, const amb_wevent *ev, amb_writer_result *out);
	/* freeze: hold new writes (reads go on), at most ev->hold_ms */
	int (*freeze)(void *arg, const amb_wevent *ev, amb_writer_result *out);
	/* thaw: release the writes.  Called only after a successful freeze,
	 * exactly once per freeze, for any of the reasons above. */
	int (*thaw)(void *arg, amb_thaw_reason why, const amb_wevent *ev, amb_writer_result *out);
	/* post_snapshot: set out->held_writes (default false) */
	int (*post_snapshot)(void *arg, const amb_wevent *ev, amb_writer_result *out);
	int (*backup_complete)(void *arg, const amb_wevent *ev, amb_writer_result *out);
	/* abort: drop the session's state (the thaw callback has already run
	 * if the writer was frozen) */
	int (*abort)(void *arg, const amb_wevent *ev, amb_writer_result *out);
	int (*pre_restore)(void *arg, const amb_wevent *ev, amb_writer_result *out);
	int (*post_restore)(void *arg, const amb_wevent *ev, amb_writer_result *out);
	/* optional: connection news for the application's log ("registered
	 * with amberd at PATH", "lost amberd: ...").  May be NULL. */
	void (*log)(void *arg, const char *line);
} amb_writer_ops;

/*
 * Start a writer: copies *md (which must pass the protocol's checks:
 * -EINVAL otherwise, with the offending field in the message), starts the
 * thread and returns at once; the first connection is attempted in the
 * background.  socket NULL: amb_socket_path(NULL).  name is the client
 * name for hello ("amber-store").
 * Returns 0 and *out, -EINVAL (message via amb_client_last_error()),
 * -ENOMEM, or -errno from pthread_create.
 */
int amb_writer_start(const char *socket, const char *name, const amb_writer_md *md,
                     const amb_writer_ops *ops, void *arg, amb_writer **out);

/* Registered with amberd right now? */
bool amb_writer_registered(amb_writer *w);

/* Wait up to timeout_ms for the writer to be registered: 1 yes, 0 no. */
int amb_writer_wait_registered(amb_writer *w, int timeout_ms);

/*
 * Stop: thaw if frozen (reason AMB_THAW_STOP), send unregister if
 * connected, close, join the thread and free w.  NULL is fine.
 */
void amb_writer_stop(amb_writer *w);

/* Generate a random (version 4) UUID in canonical form into out.
 * Returns 0 or -errno (getrandom). */
int amb_uuid_generate(amb_uuid out);

#endif

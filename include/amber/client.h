/*
 * client.h - libamber, requestor and administration side: talk to amberd.
 *
 * One amb_client is one connection to amberd (docs/protocol.md), opened
 * with a role (requestor or admin) and used by one thread at a time.
 * Every call sends one request and blocks until its answer has arrived;
 * event notifications that arrive in between are queued for
 * amb_client_next_event().
 *
 * Finding amberd (design.md section 7): amb_socket_path(opt) is opt if it
 * is not NULL, else $AMBER_SOCKET if set and not empty, else
 * AMB_DEFAULT_SOCKET.
 *
 * Return codes of every call below that returns int:
 *   0                   success; the answer is in the out parameter
 *   AMB_EXIT_FAILED (1), AMB_EXIT_BAD_INPUT (2), AMB_EXIT_RETRYABLE (3)
 *                       amberd answered "error": the value is its exit
 *                       class, which a tool returns as its exit code;
 *                       amb_client_errmsg() has amberd's message and
 *                       amb_client_errclass() its failure class
 *   -errno              the connection failed (-ECONNREFUSED, -ENOENT: no
 *                       amberd at that socket; -EPIPE, -ECONNRESET: it went
 *                       away; -EPROTO: it sent something the decoder refused;
 *                       -ENOMEM); amb_client_errmsg() says what and where.
 *                       After a -errno other than -EINVAL the connection is
 *                       unusable: close it.
 *   -EINVAL             a bad argument (e.g. an invalid path or uuid); the
 *                       message names it; the connection is still usable
 * Out parameters of type amb_msg receive the whole answer message; release
 * them with amb_msg_free().  On failure they are zeroed (nothing to free).
 */
#ifndef AMBER_CLIENT_H
#define AMBER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "amber/proto.h"

#define AMB_DEFAULT_SOCKET "/run/amber/amberd.sock"

typedef struct amb_client amb_client;

/* The socket path to use (see above).  The result is opt, the environment
 * string or the constant: do not free it. */
const char *amb_socket_path(const char *opt);

/*
 * Connect to amberd at socket (NULL: amb_socket_path(NULL)), send hello
 * with role and name, and wait for welcome.  On success *out is the
 * client.  On failure *out is NULL and the return code is as above (an
 * "error" answer to hello gives its exit class); the message is available
 * from amb_client_last_error() since there is no client to ask.
 */
int amb_client_connect(const char *socket, amb_role role, const char *name, amb_client **out);

/* Close the connection and free the client.  NULL is fine. */
void amb_client_close(amb_client *c);

/* What amberd said in welcome (limits and timers). */
const amb_welcome *amb_client_welcome(const amb_client *c);

/* The message of the last failed call on c ("" after a success). */
const char *amb_client_errmsg(const amb_client *c);
/* The failure class of the last "error" answer (AMB_FAIL_NONE if none). */
amb_fail_class amb_client_errclass(const amb_client *c);
/* The message of the last failed amb_client_connect() in this thread. */
const char *amb_client_last_error(void);

/* The connection's descriptor, for poll(2) in programs that follow events. */
int amb_client_fd(const amb_client *c);

/*
 * Send any request and wait for its answer (the generic form of the calls
 * below).  req->id is set by the library.  On 0, *resp is the answer
 * (never an "error": that gives the positive exit class instead).
 */
int amb_client_call(amb_client *c, amb_msg *req, amb_msg *resp);

/* ---------------------------------------------------------------- sessions */

/* session-open; *out receives the session and set ids. */
int amb_req_session_open(amb_client *c, const amb_session_open *opts, amb_session_ref *out);
/* session-gather; *writers is the "writer-list" answer. */
int amb_req_gather(amb_client *c, const char *session, amb_msg *writers);
/* session-select; component NULL or "" selects the whole writer. */
int amb_req_select(amb_client *c, const char *session, const char *writer, const char *component,
                   amb_select_mode mode);
/* session-add-volume; provider NULL or "" for automatic choice. */
int amb_req_add_volume(amb_client *c, const char *session, const char *volume,
                       const char *provider);
/* session-snapshot; *set is the "snapshot-set" answer. */
int amb_req_snapshot(amb_client *c, const char *session, amb_msg *set);
/* session-backup-complete with per-component results. */
int amb_req_backup_complete(amb_client *c, const char *session, const amb_comp_result *results,
                            size_t n);
/* session-abort; message may be NULL. */
int amb_req_abort(amb_client *c, const char *session, const char *message);
/* session-pre-restore / session-post-restore. */
int amb_req_pre_restore(amb_client *c, const char *session, const amb_comp_result *items,
                        size_t n);
int amb_req_post_restore(amb_client *c, const char *session, const amb_comp_result *results,
                         size_t n);
/* session-close. */
int amb_req_close(amb_client *c, const char *session);

/* ----------------------------------------------------- listings and shadows */

int amb_req_list_writers(amb_client *c, amb_msg *out);        /* "writer-list" */
int amb_req_list_providers(amb_client *c, amb_msg *out);      /* "provider-list" */
/* set, volume: optional filters (NULL); limit 0 = the maximum. */
int amb_req_list_shadows(amb_client *c, const char *set, const char *volume, uint64_t offset,
                     uint32_t limit, amb_msg *out);       /* "shadow-list" */
int amb_req_list_shadowstorage(amb_client *c, amb_msg *out);  /* "shadowstorage-list" */

/* shadow-create: a whole sequence without a backup; *out is "snapshot-set". */
int amb_req_shadow_create(amb_client *c, const amb_shadow_create *req, amb_msg *out);
/* shadow-delete with exactly one selector set in *sel; *out is "deleted". */
int amb_req_shadow_delete(amb_client *c, const amb_shadow_delete *sel, amb_msg *out);
int amb_req_shadow_expose(amb_client *c, const char *shadow, const char *path);
int amb_req_shadow_unexpose(amb_client *c, const char *path);

/* ------------------------------------------------------------------ events */

/* events-list: events with seq > since (has_since false: from the start),
 * at most limit (0 = the maximum); *out is "event-list". */
int amb_req_events_list(amb_client *c, bool has_since, uint64_t since, uint32_t limit,
                    amb_msg *out);
/* events-follow: after 0, amb_client_next_event() returns the events. */
int amb_req_events_follow(amb_client *c, bool has_since, uint64_t since);
/*
 * The next event notification: waits up to timeout_ms (-1: forever).
 * Returns 1 with *ev an "event" message (amb_msg_free it), 0 on timeout,
 * or -errno (-ECONNRESET when amberd closed the connection).
 */
int amb_client_next_event(amb_client *c, int timeout_ms, amb_msg *ev);

#endif

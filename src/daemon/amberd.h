/*
 * amberd.h - the coordinator's internal interfaces (docs/amberd.md).
 *
 * amberd is one process with one thread per connection:
 *
 *   main.c      arguments, configuration, the socket, the accept loop,
 *               signals, start and stop
 *   config.c    the configuration file (inih)
 *   conn.c      one thread per client: handshake, credentials, roles,
 *               permission checks, request dispatch
 *   writers.c   registered writers, sending writer events and waiting for
 *               their replies with deadlines
 *   session.c   requestor sessions and the backup sequence of design.md
 *               section 3 as an explicit state machine
 *   shadows.c   the shadow registry (persistent, durable), providers,
 *               expose/unexpose, delete, shadow-storage limits
 *   events.c    the event log: events.log in the state directory, journald,
 *               followers
 *   util.c      protocol-safe text, path containment, error answers
 *
 * Locking: one mutex, D.mu, guards every shared structure (writers,
 * sessions, the registry, the event ring); D.cv is broadcast on every change
 * that a waiter may be waiting for (a writer reply, a writer gone, a new
 * event, stop).  Nothing blocks on I/O with D.mu held except the registry's
 * durable write (milliseconds) and event appends.  Writes to one writer's
 * socket are serialised by that writer's own wmu (taken without D.mu).
 * Provider calls (snapshot, clone, copy) run without D.mu.
 */
#ifndef AMBER_DAEMON_AMBERD_H
#define AMBER_DAEMON_AMBERD_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "amber/proto.h"

#define AMBERD_VERSION "0.1.0"
#define AMBERD_MAX_CONNS 512
#define AMBERD_EVENT_RING 16384

/* ------------------------------------------------------------ configuration */

typedef struct amberd_limit {
	char *volume;
	uint64_t bytes;              /* 0 = unbounded */
} amberd_limit;

typedef struct amberd_config {
	char socket[4096];
	char state_dir[4096];
	unsigned hold_ms;            /* Freeze-to-Thaw limit (10000) */
	unsigned event_timeout_ms;   /* per writer event (60000) */
	unsigned max_message;        /* frame limit (1 MiB) */
	char socket_group[64];       /* "" = none (root only) */
	char backup_group[64];       /* name or number; "" = root only */
	char shadow_dir_name[256];   /* ".amber-shadows" */
	bool fsfreeze;               /* FIFREEZE where the provider allows it */
	bool presync;                /* syncfs each volume before the freeze */
	bool journald;
	amberd_limit *limits;        /* [shadowstorage] */
	size_t n_limits;
} amberd_config;

void amberd_config_defaults(amberd_config *c);
/* Load FILE into c (missing file: -ENOENT when required, else 0).
 * On a bad line: -EINVAL and a message naming file:line in err. */
int amberd_config_load(amberd_config *c, const char *file, bool required, char *err,
                       size_t errlen);
uint64_t amberd_config_limit(const amberd_config *c, const char *volume);

/* ------------------------------------------------------------------ writers */

#define DW_MAX_PENDING 4

typedef struct dw_pending {
	uint64_t id;                 /* 0 = free slot */
	amb_msg_kind kind;
	bool done;                   /* a reply arrived */
	amb_msg reply;               /* the reply (owned) when done */
} dw_pending;

typedef struct dwriter {
	int fd;
	pthread_mutex_t wmu;         /* serialises writes to fd */
	amb_msg reg;                 /* the register message; owns metadata */
	amb_writer_md *md;           /* &reg.u.reg.metadata, or the identify reply's */
	amb_msg ident;               /* the latest identify reply (owns md when set) */
	pid_t pid;
	uid_t uid;
	amb_writer_state state;
	amb_fail_class last_cls;
	char last_msg[AMB_TEXT_MAX + 1];
	bool gone;                   /* connection closed */
	uint64_t next_id;
	dw_pending pend[DW_MAX_PENDING];
	int refs;                    /* held by the connection and by sessions */
	struct dwriter *next;
} dwriter;

/* Under D.mu. */
dwriter *dw_find_name(const char *name);
dwriter *dw_find_instance(const char *instance);
void dw_ref(dwriter *w);
void dw_unref(dwriter *w);          /* frees when the last reference goes */

/* The connection thread of a writer calls these. */
int dw_register(int fd, pid_t pid, uid_t uid, amb_msg *reg, dwriter **out, char *err,
                size_t errlen);
void dw_connection_closed(dwriter *w);
void dw_reply(dwriter *w, amb_msg *reply);  /* takes ownership of *reply */

/* Send event kind (fields in *ev) to w; returns the event id (> 0) or
 * -errno.  Takes D.mu itself: call without it. */
int64_t dw_send(dwriter *w, amb_msg_kind kind, const amb_wevent *ev);
/* Forget an outstanding event (under D.mu). */
void dw_forget(dwriter *w, uint64_t id);

/* Build a writer-list answer from the registered writers (under D.mu);
 * out owns copies made by encode/decode. */
int dw_list(amb_msg *out);

/* ----------------------------------------------------------------- sessions */

typedef struct dsession dsession;

/* Requests of a requestor connection; fd is the requestor's socket (for
 * noticing that it went away during a long wait).  The answer is written
 * into *resp (kind AMB_MSG_ERROR for failures).  session-close sets
 * *closing to the session instead of ending it: the caller sends the
 * answer, then calls session_close_end(), so the requestor does not wait
 * for the deletion of the set's non-persistent shadows (a btrfs snapshot's
 * deletion waits for a transaction commit). */
void session_request(int fd, dsession **mine, const amb_msg *req, amb_msg *resp,
                     dsession **closing);
/* End a session handed out by session-close: its non-persistent shadows
 * deleted (each still listed until then), "session-closed" logged. */
void session_close_end(dsession *s);
/* The requestor's connection closed: abort and release its session. */
void session_connection_closed(dsession *s);
/* shadow-create: a whole sequence in one request. */
void session_shadow_create(int fd, const amb_shadow_create *req, amb_msg *resp);

/* ------------------------------------------------------------------ shadows */

typedef struct dshadow {
	amb_uuid id;
	amb_uuid set;
	char volume[4096];
	char path[4096];
	char provider[AMB_NAME_BUF];
	bool persistent;
	bool writers;
	bool ready;                  /* false: creation in progress ("creating") */
	uint64_t created_ms;
	uint64_t bytes;              /* allocated size when created */
	char exposed[4096];          /* "" = not exposed */
	bool exposed_mkdir;          /* amberd created the mount point */
	bool unsettled;              /* sidecar not yet durable (in memory only:
	                              * amb_provider_prepare_unsettled) */
} dshadow;

int shadows_load(char *err, size_t errlen);     /* at start; removes leaks */
/* Plan a new shadow of volume: chooses the provider (name may be "") and
 * the path; the record is added as "creating" and written durably; the
 * provider prepares it, its sidecar possibly unsettled (out->unsettled:
 * the caller settles it before the commit, amb_provider_prepare_unsettled). */
int shadows_plan(const char *volume, const char *provider, const char *set, bool persistent,
                 bool writers, dshadow *out, char *err, size_t errlen);
/* The shadow complete: "ready", then the volume's storage limit applied.
 * durable: the registry is rewritten now (persistent shadows); a volatile
 * shadow is marked in memory only, as any restart deletes it whatever its
 * state (shadows_load), and the next registry write records it. */
int shadows_mark_ready(const char *id, bool durable);
/* Delete one shadow (unexpose, provider remove, registry); under no lock. */
int shadows_delete(const char *id, char *err, size_t errlen);
void shadows_request(const amb_msg *req, amb_msg *resp);
int shadows_get(const char *id, dshadow *out);
void shadows_drop_volatile(void);   /* amberd stopping */
void shadow_to_wire(const dshadow *s, amb_shadow *w);

/* ------------------------------------------------------------------- events */

int events_open(char *err, size_t errlen);
/* Log an event; the optional fields may be NULL / "". */
void ev_log(uint32_t code, amb_severity sev, const char *session, const char *set,
            const char *shadow, const char *writer, const char *volume, amb_fail_class cls,
            const char *fmt, ...) __attribute__((format(printf, 9, 10)));
void events_request(const amb_msg *req, amb_msg *resp, bool *follow, uint64_t *since);
/* Stream events with seq > *since to fd until it closes or amberd stops. */
void events_follow(int fd, uint64_t since);
uint64_t events_last_seq(void);

/* conn.c: serve one accepted connection on a thread of its own. */
int conn_start(int fd);

/* -------------------------------------------------------------------- misc */

typedef struct amberd {
	amberd_config cfg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	dwriter *writers;
	bool stopping;
	bool creating;               /* a set is in creation (busy) */
	unsigned conns;
	/* test hook: AMBERD_TEST_STALL=stage:ms */
	char stall_stage[32];
	unsigned stall_ms;
	/* test hook: AMBERD_TEST_FAIL=step */
	char fail_step[32];
} amberd;

extern amberd D;

uint64_t now_ms(void);           /* CLOCK_REALTIME, ms */
uint64_t mono_ms(void);          /* CLOCK_MONOTONIC, ms */
void amberd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cond_wait_ms(unsigned ms);  /* wait on D.cv (D.mu held) at most ms */
void test_stall(const char *stage);
/* test hook AMBERD_TEST_FAIL=STEP: -EIO where STEP is the one named (a
 * step amberd cannot make fail for real under a test: "settle", a btrfs
 * sidecar's fsync), else 0 */
int test_fail(const char *step);
/* Fill resp as an "error" answer (message copied). */
void resp_error(amb_msg *resp, uint64_t id, amb_exit_class ex, amb_fail_class cls,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void resp_ok(amb_msg *resp, uint64_t id);
/* util.c: make s valid protocol text of at most max bytes, in place. */
void amberd_clean_text(char *s, size_t max);
/* Is inner the same path as outer or below it? (both absolute, normalized) */
bool amberd_path_within(const char *inner, const char *outer);
/* Has the peer of socket fd closed or broken the connection? (no wait) */
bool amberd_peer_gone(int fd);
/* Is uid (with groups) allowed to request backups, deletions, exposes?
 * Root, amberd's own uid, and members of backup_group are. */
bool perm_backup(uid_t uid, gid_t gid, const gid_t *groups, int ngroups);

#endif

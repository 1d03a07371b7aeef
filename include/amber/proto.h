/*
 * proto.h - the amberd wire protocol: framing, message structs, strict
 * encode/decode.  Shared by amberd, the libamber writer and requestor APIs
 * and the `amber` tool.  The full specification (every message, every
 * field, the event-ID table) is docs/protocol.md; this comment is the
 * summary that must stay true to it.
 *
 * Transport: one UNIX stream socket per client.  Each message is a frame:
 *
 *   offset 0, 4 bytes  body length L, unsigned big-endian (network order),
 *                      1 <= L <= the receiver's maximum (default
 *                      AMB_PROTO_MAX_MSG_DEFAULT = 1 MiB, configurable up to
 *                      AMB_PROTO_MAX_MSG_LIMIT); a larger L is refused before
 *                      any byte of the body is read, and the connection is
 *                      then unusable (the reader closes it)
 *   offset 4, L bytes  one JSON object, UTF-8, no byte-order mark
 *
 * Every object has "kind" (string).  Requests, responses, writer events and
 * writer replies carry "id" (integer 1..2^53-1): the sender of a request or
 * writer event picks it, the answer echoes it.  An "error" answer may lack
 * "id" when the request's id could not be read.  Notifications ("event")
 * have no "id".  The first message on a connection is "hello" from the
 * client, answered by "welcome" or "error".
 *
 * The decoder is the security boundary: it refuses unknown kinds, unknown
 * fields, duplicate keys, missing required fields, wrong JSON types, reals
 * where integers are expected, out-of-range numbers, over-long strings and
 * arrays, invalid UTF-8, NUL and control characters inside strings, names
 * outside [A-Za-z0-9][A-Za-z0-9._@+-]*, paths that are not absolute and
 * normalized, and JSON nested deeper than AMB_PROTO_MAX_DEPTH.  The error
 * text names the offending field ("metadata.components[2].files[0].path:
 * not absolute").  The encoder runs the same checks on what it produces, so
 * it never sends a message the peer would refuse.
 *
 * Memory: a decoded amb_msg owns every pointer in it; release it with
 * amb_msg_free().  A message built by hand for amb_msg_encode() may point
 * at anything (literals included) and must then not be passed to
 * amb_msg_free().  Strings of bounded small size (names, UUIDs) are inline
 * arrays; an empty inline string means "absent" for optional fields, and a
 * NULL pointer means absent for optional heap strings, arrays and objects.
 */
#ifndef AMBER_PROTO_PROTO_H
#define AMBER_PROTO_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------- */
/* limits                                                                  */

#define AMB_PROTO_VERSION 1                /* the version this code speaks */
#define AMB_PROTO_MIN_VERSION 1            /* the oldest it still accepts */

#define AMB_PROTO_MAX_MSG_DEFAULT (1u << 20)  /* frame body limit, 1 MiB */
#define AMB_PROTO_MAX_MSG_LIMIT (64u << 20)   /* largest configurable limit */
#define AMB_PROTO_MIN_MSG_LIMIT 4096u         /* smallest configurable limit */
#define AMB_PROTO_MAX_DEPTH 12                /* JSON nesting, objects + arrays */

#define AMB_NAME_MAX 64        /* writer, component, client, provider names */
#define AMB_NAME_BUF (AMB_NAME_MAX + 1)
#define AMB_UUID_LEN 36        /* canonical lower-case 8-4-4-4-12 */
#define AMB_UUID_BUF (AMB_UUID_LEN + 1)
#define AMB_PATH_MAX 4095      /* bytes, absolute normalized path */
#define AMB_PATTERN_MAX 255    /* fnmatch(3) pattern without '/' */
#define AMB_TEXT_MAX 1024      /* messages */
#define AMB_FIELD_MAX 256      /* "field" of an error */
#define AMB_LABEL_MAX 256      /* descriptions, instance names */

#define AMB_MAX_ID ((UINT64_C(1) << 53) - 1)   /* ids, seq, times, sizes */
#define AMB_MAX_HOLD_MS 600000u     /* 10 min: any hold/deadline field */
#define AMB_MAX_TIMEOUT_MS 3600000u /* 1 h: event timeout */

#define AMB_MAX_COMPONENTS 256  /* per writer */
#define AMB_MAX_FILESETS 64     /* per files/logs/excludes list */
#define AMB_MAX_VOLUMES 64      /* per shadow set (VSS: 64) */
#define AMB_MAX_UNCHANGED 64    /* paths in a freeze reply's "unchanged" */
#define AMB_MAX_WRITERS 256     /* per writer-list */
#define AMB_MAX_PROVIDERS 32
#define AMB_MAX_SHADOWS 4096    /* per shadow-list / deleted */
#define AMB_MAX_STORAGE 1024    /* per shadowstorage-list */
#define AMB_MAX_RESULTS 1024    /* per component list in a session request */
#define AMB_MAX_EVENTS 1024     /* per event-list */

/* ---------------------------------------------------------------------- */
/* enumerations (wire: lower-case strings; see the *_name() functions)     */

/* 0 is "absent" in every enum that has an optional field. */

typedef enum amb_role {
	AMB_ROLE_WRITER = 1,     /* "writer" */
	AMB_ROLE_REQUESTOR,      /* "requestor" */
	AMB_ROLE_ADMIN,          /* "admin" */
} amb_role;

typedef enum amb_backup_type {
	AMB_BACKUP_FULL = 1,     /* "full" */
	AMB_BACKUP_COPY,         /* "copy" */
	AMB_BACKUP_INCREMENTAL,  /* "incremental" */
	AMB_BACKUP_DIFFERENTIAL, /* "differential" */
} amb_backup_type;
#define AMB_BACKUP_BIT(t) (1u << (t))   /* amb_writer_md.backup_types */

/* amber exit-code classes (design.md section 7): the values are the exit
 * codes a tool returns for them. */
typedef enum amb_exit_class {
	AMB_EXIT_FAILED = 1,     /* "failed" */
	AMB_EXIT_BAD_INPUT = 2,  /* "bad-input" */
	AMB_EXIT_RETRYABLE = 3,  /* "retryable" */
} amb_exit_class;

/* VSS-like failure classes (vss.md 1.6). */
typedef enum amb_fail_class {
	AMB_FAIL_NONE = 0,
	AMB_FAIL_RETRYABLE,          /* "retryable" */
	AMB_FAIL_NONRETRYABLE,       /* "non-retryable" */
	AMB_FAIL_TIMEOUT,            /* "timeout" */
	AMB_FAIL_INCONSISTENT,       /* "inconsistent-snapshot" */
	AMB_FAIL_OUT_OF_RESOURCES,   /* "out-of-resources" */
} amb_fail_class;

/* Writer states: the numbers are VSS_WRITER_STATE's (vss.md 1.5), so
 * `amber list writers` can print "State: [9] Failed at freeze". */
typedef enum amb_writer_state {
	AMB_WS_UNKNOWN = 0,
	AMB_WS_STABLE = 1,
	AMB_WS_WAITING_FOR_FREEZE = 2,
	AMB_WS_WAITING_FOR_THAW = 3,
	AMB_WS_WAITING_FOR_POST_SNAPSHOT = 4,
	AMB_WS_WAITING_FOR_BACKUP_COMPLETE = 5,
	AMB_WS_FAILED_AT_IDENTIFY = 6,
	AMB_WS_FAILED_AT_PREPARE_BACKUP = 7,
	AMB_WS_FAILED_AT_PREPARE_SNAPSHOT = 8,
	AMB_WS_FAILED_AT_FREEZE = 9,
	AMB_WS_FAILED_AT_THAW = 10,
	AMB_WS_FAILED_AT_POST_SNAPSHOT = 11,
	AMB_WS_FAILED_AT_BACKUP_COMPLETE = 12,
	AMB_WS_FAILED_AT_PRE_RESTORE = 13,
	AMB_WS_FAILED_AT_POST_RESTORE = 14,
	AMB_WS_FAILED_AT_BACKUP_SHUTDOWN = 15,
	AMB_WS_COUNT
} amb_writer_state;

typedef enum amb_restore_method {
	AMB_RESTORE_IF_NOT_THERE = 1,       /* "if-not-there" */
	AMB_RESTORE_IF_CAN_REPLACE,         /* "if-can-replace" */
	AMB_RESTORE_STOP_RESTORE_START,     /* "stop-restore-start" */
	AMB_RESTORE_TO_ALTERNATE_LOCATION,  /* "to-alternate-location" */
	AMB_RESTORE_CUSTOM,                 /* "custom" */
} amb_restore_method;

typedef enum amb_comp_type {
	AMB_COMP_DATABASE = 1,   /* "database" */
	AMB_COMP_FILEGROUP,      /* "filegroup" */
} amb_comp_type;

typedef enum amb_select_mode {
	AMB_SELECT_INCLUDE = 1,  /* "include": back up if the writer is there */
	AMB_SELECT_VERIFY,       /* "verify": must take part, else the set fails */
	AMB_SELECT_EXCLUDE,      /* "exclude" */
} amb_select_mode;

typedef enum amb_session_mode {
	AMB_SESSION_BACKUP = 1,  /* "backup" */
	AMB_SESSION_RESTORE,     /* "restore" */
} amb_session_mode;

typedef enum amb_reply_status {
	AMB_REPLY_OK = 1,        /* "ok" */
	AMB_REPLY_FAILED,        /* "failed" */
} amb_reply_status;

typedef enum amb_severity {
	AMB_SEV_INFO = 1,        /* "info" */
	AMB_SEV_WARNING,         /* "warning" */
	AMB_SEV_ERROR,           /* "error" */
} amb_severity;

/* Message kinds.  The wire name is in the comment; the order is the order
 * of docs/protocol.md and carries no meaning on the wire. */
typedef enum amb_msg_kind {
	AMB_MSG_NONE = 0,
	/* connection */
	AMB_MSG_HELLO,               /* "hello"        client -> amberd */
	AMB_MSG_WELCOME,             /* "welcome"      amberd -> client */
	AMB_MSG_OK,                  /* "ok"           generic success answer */
	AMB_MSG_ERROR,               /* "error"        failure answer */
	/* writer -> amberd */
	AMB_MSG_REGISTER,            /* "register" */
	AMB_MSG_UNREGISTER,          /* "unregister" */
	/* amberd -> writer: the writer events (payload amb_wevent) */
	AMB_MSG_IDENTIFY,            /* "identify" */
	AMB_MSG_PREPARE_BACKUP,      /* "prepare-backup" */
	AMB_MSG_PREPARE_SNAPSHOT,    /* "prepare-snapshot" */
	AMB_MSG_FREEZE,              /* "freeze" */
	AMB_MSG_THAW,                /* "thaw" */
	AMB_MSG_POST_SNAPSHOT,       /* "post-snapshot" */
	AMB_MSG_BACKUP_COMPLETE,     /* "backup-complete" */
	AMB_MSG_ABORT,               /* "abort" */
	AMB_MSG_PRE_RESTORE,         /* "pre-restore" */
	AMB_MSG_POST_RESTORE,        /* "post-restore" */
	/* writer -> amberd: the answer to a writer event */
	AMB_MSG_REPLY,               /* "reply" */
	/* requestor -> amberd: sessions */
	AMB_MSG_SESSION_OPEN,        /* "session-open"  -> "session" */
	AMB_MSG_SESSION,             /* "session" */
	AMB_MSG_SESSION_GATHER,      /* "session-gather" -> "writer-list" */
	AMB_MSG_SESSION_SELECT,      /* "session-select" */
	AMB_MSG_SESSION_ADD_VOLUME,  /* "session-add-volume" */
	AMB_MSG_SESSION_SNAPSHOT,    /* "session-snapshot" -> "snapshot-set" */
	AMB_MSG_SESSION_BACKUP_COMPLETE, /* "session-backup-complete" */
	AMB_MSG_SESSION_ABORT,       /* "session-abort" */
	AMB_MSG_SESSION_PRE_RESTORE, /* "session-pre-restore" */
	AMB_MSG_SESSION_POST_RESTORE, /* "session-post-restore" */
	AMB_MSG_SESSION_CLOSE,       /* "session-close" */
	/* requestor/admin -> amberd: listings and shadow administration */
	AMB_MSG_LIST_WRITERS,        /* "list-writers" -> "writer-list" */
	AMB_MSG_WRITER_LIST,         /* "writer-list" */
	AMB_MSG_LIST_PROVIDERS,      /* "list-providers" -> "provider-list" */
	AMB_MSG_PROVIDER_LIST,       /* "provider-list" */
	AMB_MSG_LIST_SHADOWS,        /* "list-shadows" -> "shadow-list" */
	AMB_MSG_SHADOW_LIST,         /* "shadow-list" */
	AMB_MSG_LIST_SHADOWSTORAGE,  /* "list-shadowstorage" -> "shadowstorage-list" */
	AMB_MSG_SHADOWSTORAGE_LIST,  /* "shadowstorage-list" */
	AMB_MSG_SHADOW_CREATE,       /* "shadow-create" -> "snapshot-set" */
	AMB_MSG_SNAPSHOT_SET,        /* "snapshot-set" */
	AMB_MSG_SHADOW_DELETE,       /* "shadow-delete" -> "deleted" */
	AMB_MSG_DELETED,             /* "deleted" */
	AMB_MSG_SHADOW_EXPOSE,       /* "shadow-expose" */
	AMB_MSG_SHADOW_UNEXPOSE,     /* "shadow-unexpose" */
	AMB_MSG_EVENTS_LIST,         /* "events-list" -> "event-list" */
	AMB_MSG_EVENT_LIST,          /* "event-list" */
	AMB_MSG_EVENTS_FOLLOW,       /* "events-follow" -> "ok", then "event"s */
	AMB_MSG_EVENT,               /* "event"        notification, no id */
	AMB_MSG_KIND_COUNT
} amb_msg_kind;

/* Event IDs of amberd's event log (docs/protocol.md, "Event IDs").  They
 * are stable: a number is never reused for another meaning.  The decoder
 * accepts any code in AMB_EV_MIN..AMB_EV_MAX so amberd can add codes
 * without a protocol version change; amb_event_code_name() knows these. */
#define AMB_EV_MIN 1000
#define AMB_EV_MAX 9999
enum amb_event_code {
	/* 1000: sessions and the backup sequence */
	AMB_EV_SESSION_OPENED = 1001,
	AMB_EV_SESSION_CLOSED = 1002,
	AMB_EV_SESSION_BUSY = 1003,
	AMB_EV_GATHER_DONE = 1004,
	AMB_EV_PREPARE_BACKUP_DONE = 1005,
	AMB_EV_SNAPSHOT_STARTED = 1006,
	AMB_EV_FREEZE_DONE = 1007,
	AMB_EV_COMMIT_DONE = 1008,
	AMB_EV_THAW_DONE = 1009,
	AMB_EV_SNAPSHOT_SET_CREATED = 1010,
	AMB_EV_BACKUP_COMPLETE_OK = 1011,
	AMB_EV_BACKUP_COMPLETE_PARTIAL = 1012,
	AMB_EV_SESSION_ABORTED = 1013,
	AMB_EV_SESSION_ABORTED_FAILURE = 1014,
	AMB_EV_HOLD_DEADLINE_EXCEEDED = 1015,
	AMB_EV_REQUESTOR_LOST = 1016,
	AMB_EV_WRITES_NOT_HELD = 1017,
	AMB_EV_RESTORE_STARTED = 1020,
	AMB_EV_RESTORE_DONE = 1021,
	AMB_EV_RESTORE_FAILED = 1022,
	/* 2000: writers */
	AMB_EV_WRITER_REGISTERED = 2001,
	AMB_EV_WRITER_UNREGISTERED = 2002,
	AMB_EV_WRITER_LOST = 2003,
	AMB_EV_WRITER_REFUSED = 2004,
	AMB_EV_WRITER_FAILED = 2005,
	AMB_EV_WRITER_TIMEOUT = 2006,
	AMB_EV_WRITER_FROZEN = 2007,
	AMB_EV_WRITER_THAWED = 2008,
	AMB_EV_WRITER_NOT_OWNER = 2009,
	AMB_EV_WRITER_BAD_REPLY = 2010,
	/* 3000: providers and shadows */
	AMB_EV_SHADOW_CREATED = 3001,
	AMB_EV_SHADOW_DELETED = 3002,
	AMB_EV_SHADOW_EXPOSED = 3003,
	AMB_EV_SHADOW_UNEXPOSED = 3004,
	AMB_EV_STORAGE_LIMIT_DELETED = 3005,
	AMB_EV_PROVIDER_FAILED = 3006,
	AMB_EV_COPY_PROVIDER_HOLDING = 3007,
	AMB_EV_FS_FROZEN = 3008,
	AMB_EV_FS_THAWED = 3009,
	AMB_EV_GUARD_THAWED = 3010,
	AMB_EV_SHADOW_LEAK_REMOVED = 3011,
	AMB_EV_REGISTRY_LOADED = 3012,
	/* 4000: the service, clients and security */
	AMB_EV_DAEMON_STARTED = 4001,
	AMB_EV_DAEMON_STOPPING = 4002,
	AMB_EV_CLIENT_DENIED = 4003,
	AMB_EV_PROTOCOL_ERROR = 4004,
	AMB_EV_VERSION_MISMATCH = 4005,
	AMB_EV_MESSAGE_TOO_LARGE = 4006,
	AMB_EV_CONFIG_LOADED = 4007,
};

/* ---------------------------------------------------------------------- */
/* payload structs                                                         */

typedef char amb_uuid[AMB_UUID_BUF];

/* "hello": the first message of every client. */
typedef struct amb_hello {
	uint32_t version;          /* highest version the client speaks, >= 1 */
	uint32_t min_version;      /* optional (0 = same as version) */
	amb_role role;
	char name[AMB_NAME_BUF];   /* client name, e.g. "amber", "amber-store" */
	int32_t pid;               /* >= 1; amberd trusts SO_PEERCRED, not this */
} amb_hello;

/* "welcome": amberd accepts the client. */
typedef struct amb_welcome {
	uint32_t version;               /* the version both now speak */
	char server[AMB_NAME_BUF];      /* "amberd" */
	char server_version[AMB_NAME_BUF]; /* e.g. "0.1.0" (name characters) */
	uint32_t max_message;           /* amberd's frame body limit in bytes */
	uint32_t hold_ms;               /* amberd's Freeze-to-Thaw limit */
	uint32_t event_timeout_ms;      /* how long a writer has per event */
} amb_welcome;

/* A failure: class and message.  Used by "reply", "abort", last_error. */
typedef struct amb_failure {
	amb_fail_class cls;             /* required where a failure is given */
	char *message;                  /* optional, <= AMB_TEXT_MAX bytes */
} amb_failure;

/* "error": the answer to any request that failed. */
typedef struct amb_error {
	amb_exit_class exit;            /* required */
	amb_fail_class cls;             /* optional (AMB_FAIL_NONE) */
	char *message;                  /* required, 1..AMB_TEXT_MAX bytes */
	char *field;                    /* optional: the offending field */
} amb_error;

/* A file set of the writer metadata: files under path matching pattern. */
typedef struct amb_fileset {
	char *path;                     /* absolute normalized directory */
	char *pattern;                  /* fnmatch(3) pattern, no '/' */
	bool recursive;                 /* also in subdirectories */
} amb_fileset;

typedef struct amb_component {
	char name[AMB_NAME_BUF];        /* unique within the writer */
	amb_comp_type type;
	bool selectable;                /* optional on the wire, default true */
	amb_fileset *files;             /* 1..AMB_MAX_FILESETS */
	size_t n_files;
	amb_fileset *logs;              /* optional, 0..AMB_MAX_FILESETS */
	size_t n_logs;
	char *checkpoint;               /* optional: the checkpoint file */
} amb_component;

/* Writer metadata (the WMD).  Sent in "register" and in the "reply" to
 * "identify", and listed in "writer-list". */
typedef struct amb_writer_md {
	char name[AMB_NAME_BUF];        /* writer name, e.g. "amber-store" */
	amb_uuid instance;              /* writer instance id */
	char *instance_name;            /* optional display label */
	unsigned backup_types;          /* AMB_BACKUP_BIT()s, at least one */
	char verifier[AMB_NAME_BUF];    /* "none", "amber-store", ... */
	amb_restore_method restore_method;
	uint32_t max_hold_ms;           /* 1..AMB_MAX_HOLD_MS */
	amb_component *components;      /* 0..AMB_MAX_COMPONENTS */
	size_t n_components;
	amb_fileset *excludes;          /* optional, 0..AMB_MAX_FILESETS */
	size_t n_excludes;
} amb_writer_md;

/* "register": a writer announces itself and its metadata. */
typedef struct amb_register {
	amb_writer_md metadata;
} amb_register;

/* A component named in a writer event. */
typedef struct amb_wcomp {
	char name[AMB_NAME_BUF];
	bool success;                   /* backup-complete, post-restore */
	char *target;                   /* pre-restore, optional */
} amb_wcomp;

/* Where a volume's shadow can be read (post-snapshot). */
typedef struct amb_shadow_loc {
	char *volume;
	char *path;
} amb_shadow_loc;

/* The writer events identify .. post-restore (amberd -> writer).  Which
 * fields each kind carries is in docs/protocol.md; the others are unset. */
typedef struct amb_wevent {
	amb_uuid session;               /* all; optional for identify */
	amb_uuid set;                   /* prepare-snapshot..post-snapshot; abort opt */
	amb_backup_type backup_type;    /* prepare-backup, backup-complete */
	uint32_t hold_ms;               /* freeze: thaw yourself after this */
	char **volumes;                 /* prepare-backup, prepare-snapshot */
	size_t n_volumes;
	amb_wcomp *components;          /* prepare-backup, backup-complete, */
	size_t n_components;            /* pre-restore, post-restore */
	amb_shadow_loc *shadows;        /* post-snapshot */
	size_t n_shadows;
	amb_fail_class cls;             /* abort: optional reason */
	char *message;                  /* abort: optional reason */
} amb_wevent;

/* "reply": a writer's answer to a writer event. */
typedef struct amb_reply {
	amb_msg_kind event;             /* the event answered (IDENTIFY..) */
	amb_reply_status status;
	amb_fail_class cls;             /* required iff FAILED */
	char *message;                  /* optional */
	bool has_held_writes;           /* required iff post-snapshot + OK */
	bool held_writes;
	char **unchanged;               /* freeze + OK, optional: files of the writer
	                                   it has not changed since it answered
	                                   prepare-snapshot (0..AMB_MAX_UNCHANGED) */
	size_t n_unchanged;
	amb_writer_md *metadata;        /* required iff identify + OK */
} amb_reply;

typedef struct amb_session_open {
	amb_session_mode mode;
	amb_backup_type backup_type;    /* required for backup */
	bool persistent;
	bool no_writers;
	char provider[AMB_NAME_BUF];    /* optional: force a provider */
} amb_session_open;

/* "session" (session+set), and session-gather/-snapshot/-close (session). */
typedef struct amb_session_ref {
	amb_uuid session;
	amb_uuid set;
} amb_session_ref;

typedef struct amb_session_select {
	amb_uuid session;
	char writer[AMB_NAME_BUF];
	char component[AMB_NAME_BUF];   /* optional: empty = whole writer */
	amb_select_mode mode;
} amb_session_select;

typedef struct amb_session_add_volume {
	amb_uuid session;
	char *volume;
	char provider[AMB_NAME_BUF];    /* optional */
} amb_session_add_volume;

/* One component's result or restore target in a session request. */
typedef struct amb_comp_result {
	char writer[AMB_NAME_BUF];
	char component[AMB_NAME_BUF];
	bool success;                   /* backup-complete, post-restore */
	char *target;                   /* pre-restore, optional */
} amb_comp_result;

/* session-backup-complete, session-pre-restore, session-post-restore */
typedef struct amb_session_results {
	amb_uuid session;
	amb_comp_result *items;         /* 0..AMB_MAX_RESULTS */
	size_t n_items;
} amb_session_results;

typedef struct amb_session_abort {
	amb_uuid session;
	char *message;                  /* optional */
} amb_session_abort;

typedef struct amb_writer_info {
	amb_writer_md metadata;
	amb_writer_state state;
	amb_failure *last_error;        /* optional */
	int32_t pid;
	uint32_t uid;
} amb_writer_info;

typedef struct amb_writer_list {
	amb_writer_info *writers;
	size_t n_writers;
} amb_writer_list;

typedef struct amb_provider_info {
	char name[AMB_NAME_BUF];
	char *description;              /* optional */
	bool holds_writes;              /* holds writes for the whole copy */
} amb_provider_info;

typedef struct amb_provider_list {
	amb_provider_info *providers;
	size_t n_providers;
} amb_provider_list;

typedef struct amb_shadow {
	amb_uuid id;
	amb_uuid set;
	char *volume;                   /* the original volume */
	char *path;                     /* where the shadow's data is */
	char provider[AMB_NAME_BUF];
	bool persistent;
	bool writers;                   /* taken with writers taking part */
	uint64_t created_ms;            /* Unix time in ms */
	char *exposed;                  /* optional: exposed at */
} amb_shadow;

typedef struct amb_list_shadows {
	amb_uuid set;                   /* optional filter */
	char *volume;                   /* optional filter */
	uint64_t offset;                /* optional, 0 */
	uint32_t limit;                 /* optional, 0 = up to AMB_MAX_SHADOWS */
} amb_list_shadows;

typedef struct amb_shadow_list {
	uint64_t total;                 /* how many match, over all pages */
	amb_shadow *shadows;
	size_t n_shadows;
} amb_shadow_list;

typedef struct amb_storage_info {
	char *volume;
	uint64_t used;                  /* bytes */
	uint64_t limit;                 /* bytes, 0 = unbounded */
} amb_storage_info;

typedef struct amb_storage_list {
	amb_storage_info *storage;
	size_t n_storage;
} amb_storage_list;

typedef struct amb_shadow_create {
	char **volumes;                 /* 1..AMB_MAX_VOLUMES, distinct */
	size_t n_volumes;
	bool persistent;
	bool no_writers;
	char provider[AMB_NAME_BUF];    /* optional */
} amb_shadow_create;

typedef struct amb_snapshot_set {
	amb_uuid set;
	amb_shadow *shadows;            /* 0..AMB_MAX_VOLUMES */
	size_t n_shadows;
	/* optional (absent from an older amberd): the instance ids of the
	 * writers that took part in the set (gathered, selected, froze, held
	 * their writes and answered post-snapshot), 0..AMB_MAX_WRITERS */
	amb_uuid *writers;
	size_t n_writers;
} amb_snapshot_set;

/* "shadow-delete": exactly one selector. */
typedef struct amb_shadow_delete {
	bool all;
	char *oldest;                   /* volume */
	amb_uuid shadow;
	amb_uuid set;
	char *exposed;                  /* path */
} amb_shadow_delete;

typedef struct amb_deleted {
	amb_uuid *shadows;
	size_t n_shadows;
} amb_deleted;

typedef struct amb_shadow_expose {
	amb_uuid shadow;
	char *path;                     /* shadow-expose and shadow-unexpose */
} amb_shadow_expose;

/* events-list and events-follow */
typedef struct amb_events_req {
	bool has_since;
	uint64_t since;                 /* events with seq > since */
	uint32_t limit;                 /* events-list only; 0 = AMB_MAX_EVENTS */
} amb_events_req;

typedef struct amb_event {
	uint64_t seq;                   /* 1.., increasing, per amberd state dir */
	uint64_t time_ms;               /* Unix time in ms */
	uint32_t code;                  /* AMB_EV_* */
	amb_severity severity;
	char *message;                  /* required */
	amb_uuid session;               /* the rest optional */
	amb_uuid set;
	amb_uuid shadow;
	char writer[AMB_NAME_BUF];
	char component[AMB_NAME_BUF];
	char *volume;
	amb_fail_class cls;
} amb_event;

typedef struct amb_event_list {
	amb_event *events;
	size_t n_events;
} amb_event_list;

typedef struct amb_msg {
	amb_msg_kind kind;
	uint64_t id;                    /* 0 only for "event" and id-less "error" */
	union {
		amb_hello hello;
		amb_welcome welcome;
		amb_error error;
		amb_register reg;           /* register */
		amb_wevent wev;             /* identify .. post-restore */
		amb_reply reply;
		amb_session_open sopen;
		amb_session_ref sref;       /* session, session-gather/-snapshot/-close */
		amb_session_select select;
		amb_session_add_volume addvol;
		amb_session_results results; /* session-backup-complete/-pre/-post-restore */
		amb_session_abort sabort;
		amb_writer_list writers;    /* writer-list */
		amb_provider_list providers; /* provider-list */
		amb_list_shadows lshadows;  /* list-shadows */
		amb_shadow_list shadows;    /* shadow-list */
		amb_storage_list storage;   /* shadowstorage-list */
		amb_shadow_create create;   /* shadow-create */
		amb_snapshot_set sset;      /* snapshot-set */
		amb_shadow_delete del;      /* shadow-delete */
		amb_deleted deleted;
		amb_shadow_expose expose;   /* shadow-expose, shadow-unexpose */
		amb_events_req evreq;       /* events-list, events-follow */
		amb_event_list events;      /* event-list */
		amb_event event;            /* event */
	} u;
} amb_msg;

/* ---------------------------------------------------------------------- */
/* encode / decode                                                         */

/*
 * Decode one frame body into *out (which need not be initialised).
 * Returns 0, or:
 *   -EBADMSG   not valid JSON, or a field is missing, of the wrong type, out
 *              of range, too long, or not allowed; err says which field
 *   -EMSGSIZE  len is 0 or larger than AMB_PROTO_MAX_MSG_LIMIT
 *   -ENOMEM    out of memory
 * On failure *out holds nothing to free, out->kind is AMB_MSG_NONE, and
 * out->id is the message's id if that much could be read (else 0), so the
 * caller can address its "error" answer.  err (may be NULL) receives a
 * lower-case message, "<field>: <problem>" where a field is at fault.
 */
int amb_msg_decode(const char *buf, size_t len, amb_msg *out, char *err, size_t errlen);

/*
 * Encode *m as compact JSON.  *json is malloc'd, NUL-terminated (not
 * counted in *len); free it with free().  The result is checked with the
 * decoder's rules first.  Returns 0, or:
 *   -EINVAL    *m is not a valid message (amb_msg_check() says why)
 *   -ENOMEM    out of memory
 */
int amb_msg_encode(const amb_msg *m, char **json, size_t *len);

/* Check *m against the decoder's rules without keeping the encoding.
 * Returns 0, -EINVAL (err names the field) or -ENOMEM. */
int amb_msg_check(const amb_msg *m, char *err, size_t errlen);

/* Release everything a decoded message owns and zero it.  NULL is fine. */
void amb_msg_free(amb_msg *m);

/* Wire names, or NULL for a value that has none. */
const char *amb_msg_kind_name(amb_msg_kind k);
const char *amb_role_name(amb_role r);
const char *amb_backup_type_name(amb_backup_type t);
const char *amb_exit_class_name(amb_exit_class e);
const char *amb_fail_class_name(amb_fail_class c);
const char *amb_writer_state_name(amb_writer_state s);
const char *amb_restore_method_name(amb_restore_method r);
/* Symbolic name of an event code ("session-opened"), NULL if unknown. */
const char *amb_event_code_name(uint32_t code);

/* Field validators the decoder uses, for code that builds messages from
 * user input (e.g. the `amber` command line): 1 if valid, 0 if not. */
bool amb_proto_name_ok(const char *s);
bool amb_proto_path_ok(const char *s);
bool amb_proto_uuid_ok(const char *s);

/* ---------------------------------------------------------------------- */
/* framing                                                                 */

#define AMB_FRAME_HDR 4      /* bytes of the big-endian length prefix */
#define AMB_FRAME_EOF 1      /* the peer closed the connection between frames */

/*
 * Write one frame (header and body) to a blocking fd, retrying on EINTR
 * and short writes.  Sockets are written with MSG_NOSIGNAL, so a closed
 * peer gives -EPIPE instead of SIGPIPE (other fds: the caller handles
 * SIGPIPE).  Returns 0, or:
 *   -EMSGSIZE  len is 0 or above AMB_PROTO_MAX_MSG_LIMIT (nothing written)
 *   -EAGAIN    the fd is non-blocking and full; part of the frame may have
 *              been written, so the connection must be closed
 *   -errno     from sendmsg/writev (-EPIPE, -ECONNRESET, ...)
 */
int amb_frame_write(int fd, const void *buf, size_t len);

/*
 * Read one frame from a blocking fd, retrying on EINTR and short reads.
 * max is the body limit (1..AMB_PROTO_MAX_MSG_LIMIT, 0 means
 * AMB_PROTO_MAX_MSG_DEFAULT; amberd's configured limit is at least
 * AMB_PROTO_MIN_MSG_LIMIT).  On success *buf is malloc'd with
 * *len body bytes plus a NUL after them; free it with free().  Returns 0,
 * AMB_FRAME_EOF if the peer closed before the first header byte, or:
 *   -EMSGSIZE  the header announces more than max bytes (the body was not
 *              read; the stream is out of step and must be closed)
 *   -EBADMSG   the header announces 0 bytes
 *   -EPROTO    end of file inside a frame
 *   -EINVAL    max out of range
 *   -ENOMEM    out of memory
 *   -EAGAIN    non-blocking fd without a whole frame (use amb_frame_rx)
 *   -errno     from read
 */
int amb_frame_read(int fd, size_t max, char **buf, size_t *len);

/*
 * Incremental reader for non-blocking fds (event-loop programs): call
 * amb_frame_rx_read() whenever the fd is readable.  The body buffer is
 * only allocated once the header is complete and within max, so a client
 * cannot make amberd allocate more than max per connection.
 */
typedef struct amb_frame_rx {
	size_t max;
	unsigned char hdr[AMB_FRAME_HDR];
	size_t hdr_got;
	char *body;
	size_t body_len;
	size_t body_got;
	int failed;          /* the sticky result once the stream has ended */
} amb_frame_rx;

/* Returns 0, or -EINVAL if max is out of range (0 = the default). */
int amb_frame_rx_init(amb_frame_rx *rx, size_t max);
/* Returns 0 with a whole frame in *buf and *len (yours to free; rx is ready
 * for the next frame), -EAGAIN when more bytes are needed, AMB_FRAME_EOF,
 * or the negative codes of amb_frame_read().  Any result other than 0 and
 * -EAGAIN ends the stream and is returned again by every later call. */
int amb_frame_rx_read(amb_frame_rx *rx, int fd, char **buf, size_t *len);
/* Free a partly read frame. */
void amb_frame_rx_free(amb_frame_rx *rx);

#endif

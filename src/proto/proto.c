/*
 * proto.c - encode and decode the amberd wire messages (proto.h,
 * docs/protocol.md).
 *
 * Every message kind is described once, as a table of fields (sdesc /
 * fdesc below): wire key, type, required or optional, range, and where the
 * value lives in the C struct.  One generic walker decodes (json -> struct,
 * with every check), encodes (struct -> json) and frees (struct) from that
 * table, so the three cannot disagree.  Rules that tie fields together
 * ("held_writes is required in a reply to post-snapshot") are the
 * per-struct check hooks.  The encoder decodes its own output before
 * returning it: nothing is sent that the peer's decoder would refuse.
 *
 * Error messages are "<field path>: <problem>", the path built while
 * walking ("metadata.components[2].files[0].path").  Anything taken from
 * the input (an unknown key, a bad kind) is quoted after its non-printable
 * bytes are replaced, so an error text is always printable ASCII and can
 * be sent back in an "error" message or logged as it is.
 */
#include "amber/proto.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* The walker reads and writes every enum field through an int. */
static_assert(sizeof(amb_msg_kind) == sizeof(int), "enum size");
static_assert(sizeof(amb_role) == sizeof(int), "enum size");
static_assert(sizeof(amb_backup_type) == sizeof(int), "enum size");
static_assert(sizeof(amb_exit_class) == sizeof(int), "enum size");
static_assert(sizeof(amb_fail_class) == sizeof(int), "enum size");
static_assert(sizeof(amb_writer_state) == sizeof(int), "enum size");
static_assert(sizeof(amb_restore_method) == sizeof(int), "enum size");
static_assert(sizeof(amb_comp_type) == sizeof(int), "enum size");
static_assert(sizeof(amb_select_mode) == sizeof(int), "enum size");
static_assert(sizeof(amb_session_mode) == sizeof(int), "enum size");
static_assert(sizeof(amb_reply_status) == sizeof(int), "enum size");
static_assert(sizeof(amb_severity) == sizeof(int), "enum size");

/* ---------------------------------------------------------------------- */
/* walk context: error text and the path of the field being walked        */

typedef struct dctx {
	char *err;
	size_t errlen;
	bool failed;
	int rc;                 /* -EBADMSG when decoding, -EINVAL when encoding */
	char path[384];
	size_t plen;
} dctx;

static void ctx_init(dctx *c, char *err, size_t errlen, int rc)
{
	memset(c, 0, sizeof(*c));
	c->err = err;
	c->errlen = errlen;
	c->rc = rc;
	if (err && errlen)
		err[0] = '\0';
}

/* Printable ASCII only: errors may go straight into an "error" message. */
static void sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			*s = '?';
}

__attribute__((format(printf, 2, 3)))
static int cerr(dctx *c, const char *fmt, ...)
{
	if (c->failed)
		return c->rc;
	c->failed = true;
	if (!c->err || !c->errlen)
		return c->rc;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->plen)
		snprintf(c->err, c->errlen, "%s: %s", c->path, msg);
	else
		snprintf(c->err, c->errlen, "%s", msg);
	sanitize(c->err);
	return c->rc;
}

static int cnomem(dctx *c)
{
	if (!c->failed) {
		c->failed = true;
		if (c->err && c->errlen)
			snprintf(c->err, c->errlen, "out of memory");
	}
	return -ENOMEM;
}

/* Quote input for an error message: at most 40 bytes, shown safely. */
static const char *quote(const char *s, char *buf, size_t n)
{
	size_t len = strlen(s);
	snprintf(buf, n, "%.40s%s", s, len > 40 ? "..." : "");
	sanitize(buf);
	return buf;
}

static size_t push_key(dctx *c, const char *key)
{
	size_t old = c->plen;
	if (c->plen < sizeof(c->path) - 1) {
		int n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "%s%s",
				 c->plen ? "." : "", key);
		c->plen += (n > 0) ? (size_t)n : 0;
		if (c->plen > sizeof(c->path) - 1)
			c->plen = sizeof(c->path) - 1;
	}
	return old;
}

static size_t push_index(dctx *c, size_t i)
{
	size_t old = c->plen;
	if (c->plen < sizeof(c->path) - 1) {
		int n = snprintf(c->path + c->plen, sizeof(c->path) - c->plen, "[%zu]", i);
		c->plen += (n > 0) ? (size_t)n : 0;
		if (c->plen > sizeof(c->path) - 1)
			c->plen = sizeof(c->path) - 1;
	}
	return old;
}

static void pop(dctx *c, size_t old)
{
	c->plen = old;
	c->path[old] = '\0';
}

/* ---------------------------------------------------------------------- */
/* value validators                                                        */

/* Length of the valid UTF-8 sequence at s (of n bytes), 0 if invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t len;
	uint32_t cp;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Valid UTF-8 without C0/C1 control characters or DEL: what may be logged
 * or printed on a terminal as it is.  Returns NULL or the problem. */
static const char *text_problem(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		if (u[i] == 0)
			return "contains a NUL byte";
		size_t n = utf8_seq(u + i, len - i);
		if (!n)
			return "invalid UTF-8";
		if (n == 1 && (u[i] < 0x20 || u[i] == 0x7f))
			return "contains a control character";
		if (n == 2 && u[i] == 0xc2 && u[i + 1] < 0xa0)
			return "contains a control character";
		i += n;
	}
	return NULL;
}

static bool is_alnum(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

static const char *name_problem(const char *s, size_t len)
{
	if (len == 0)
		return "must not be empty";
	if (len > AMB_NAME_MAX)
		return "longer than 64 bytes";
	if (!is_alnum(s[0]))
		return "must start with a letter or digit";
	for (size_t i = 1; i < len; i++) {
		char ch = s[i];
		if (!is_alnum(ch) && ch != '.' && ch != '_' && ch != '-' && ch != '@' && ch != '+')
			return "may only contain letters, digits and . _ - @ +";
	}
	return NULL;
}

static const char *uuid_problem(const char *s, size_t len)
{
	if (len != AMB_UUID_LEN)
		return "not a UUID (8-4-4-4-12 lower-case hex)";
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (ch != '-')
				return "not a UUID (8-4-4-4-12 lower-case hex)";
		} else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
			return "not a UUID (8-4-4-4-12 lower-case hex)";
		}
	}
	return NULL;
}

static const char *path_problem(const char *s, size_t len)
{
	if (len == 0)
		return "must not be empty";
	if (len > AMB_PATH_MAX)
		return "longer than 4095 bytes";
	const char *p = text_problem(s, len);
	if (p)
		return p;
	if (s[0] != '/')
		return "not an absolute path";
	if (len == 1)
		return NULL;
	if (s[len - 1] == '/')
		return "not normalized (trailing '/')";
	/* every component between slashes: not empty, not ".", not ".." */
	size_t start = 1;
	for (size_t i = 1; i <= len; i++) {
		if (i < len && s[i] != '/')
			continue;
		size_t clen = i - start;
		if (clen == 0)
			return "not normalized (empty component)";
		if (clen == 1 && s[start] == '.')
			return "not normalized ('.' component)";
		if (clen == 2 && s[start] == '.' && s[start + 1] == '.')
			return "contains a '..' component";
		start = i + 1;
	}
	return NULL;
}

static const char *pattern_problem(const char *s, size_t len)
{
	if (len == 0)
		return "must not be empty";
	if (len > AMB_PATTERN_MAX)
		return "longer than 255 bytes";
	const char *p = text_problem(s, len);
	if (p)
		return p;
	if (memchr(s, '/', len))
		return "must not contain '/'";
	if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
		return "must not be '.' or '..'";
	return NULL;
}

bool amb_proto_name_ok(const char *s)
{
	return s && !name_problem(s, strlen(s));
}

bool amb_proto_path_ok(const char *s)
{
	return s && !path_problem(s, strlen(s));
}

bool amb_proto_uuid_ok(const char *s)
{
	return s && !uuid_problem(s, strlen(s));
}

/* ---------------------------------------------------------------------- */
/* enum tables                                                             */

typedef struct etab {
	const char *const *names;   /* names[value]; NULL: no wire name */
	size_t n;
} etab;

#define ETAB(arr) { arr, sizeof(arr) / sizeof(arr[0]) }

static const char *const kind_names[AMB_MSG_KIND_COUNT] = {
	[AMB_MSG_HELLO] = "hello",
	[AMB_MSG_WELCOME] = "welcome",
	[AMB_MSG_OK] = "ok",
	[AMB_MSG_ERROR] = "error",
	[AMB_MSG_REGISTER] = "register",
	[AMB_MSG_UNREGISTER] = "unregister",
	[AMB_MSG_IDENTIFY] = "identify",
	[AMB_MSG_PREPARE_BACKUP] = "prepare-backup",
	[AMB_MSG_PREPARE_SNAPSHOT] = "prepare-snapshot",
	[AMB_MSG_FREEZE] = "freeze",
	[AMB_MSG_THAW] = "thaw",
	[AMB_MSG_POST_SNAPSHOT] = "post-snapshot",
	[AMB_MSG_BACKUP_COMPLETE] = "backup-complete",
	[AMB_MSG_ABORT] = "abort",
	[AMB_MSG_PRE_RESTORE] = "pre-restore",
	[AMB_MSG_POST_RESTORE] = "post-restore",
	[AMB_MSG_REPLY] = "reply",
	[AMB_MSG_SESSION_OPEN] = "session-open",
	[AMB_MSG_SESSION] = "session",
	[AMB_MSG_SESSION_GATHER] = "session-gather",
	[AMB_MSG_SESSION_SELECT] = "session-select",
	[AMB_MSG_SESSION_ADD_VOLUME] = "session-add-volume",
	[AMB_MSG_SESSION_SNAPSHOT] = "session-snapshot",
	[AMB_MSG_SESSION_BACKUP_COMPLETE] = "session-backup-complete",
	[AMB_MSG_SESSION_ABORT] = "session-abort",
	[AMB_MSG_SESSION_PRE_RESTORE] = "session-pre-restore",
	[AMB_MSG_SESSION_POST_RESTORE] = "session-post-restore",
	[AMB_MSG_SESSION_CLOSE] = "session-close",
	[AMB_MSG_LIST_WRITERS] = "list-writers",
	[AMB_MSG_WRITER_LIST] = "writer-list",
	[AMB_MSG_LIST_PROVIDERS] = "list-providers",
	[AMB_MSG_PROVIDER_LIST] = "provider-list",
	[AMB_MSG_LIST_SHADOWS] = "list-shadows",
	[AMB_MSG_SHADOW_LIST] = "shadow-list",
	[AMB_MSG_LIST_SHADOWSTORAGE] = "list-shadowstorage",
	[AMB_MSG_SHADOWSTORAGE_LIST] = "shadowstorage-list",
	[AMB_MSG_SHADOW_CREATE] = "shadow-create",
	[AMB_MSG_SNAPSHOT_SET] = "snapshot-set",
	[AMB_MSG_SHADOW_DELETE] = "shadow-delete",
	[AMB_MSG_DELETED] = "deleted",
	[AMB_MSG_SHADOW_EXPOSE] = "shadow-expose",
	[AMB_MSG_SHADOW_UNEXPOSE] = "shadow-unexpose",
	[AMB_MSG_EVENTS_LIST] = "events-list",
	[AMB_MSG_EVENT_LIST] = "event-list",
	[AMB_MSG_EVENTS_FOLLOW] = "events-follow",
	[AMB_MSG_EVENT] = "event",
};

/* reply.event: only the writer events have a name here */
static const char *const wevent_names[AMB_MSG_KIND_COUNT] = {
	[AMB_MSG_IDENTIFY] = "identify",
	[AMB_MSG_PREPARE_BACKUP] = "prepare-backup",
	[AMB_MSG_PREPARE_SNAPSHOT] = "prepare-snapshot",
	[AMB_MSG_FREEZE] = "freeze",
	[AMB_MSG_THAW] = "thaw",
	[AMB_MSG_POST_SNAPSHOT] = "post-snapshot",
	[AMB_MSG_BACKUP_COMPLETE] = "backup-complete",
	[AMB_MSG_ABORT] = "abort",
	[AMB_MSG_PRE_RESTORE] = "pre-restore",
	[AMB_MSG_POST_RESTORE] = "post-restore",
};

static const char *const role_names[] = { NULL, "writer", "requestor", "admin" };
static const char *const backup_names[] = { NULL, "full", "copy", "incremental",
					    "differential" };
static const char *const exit_names[] = { NULL, "failed", "bad-input", "retryable" };
static const char *const fail_names[] = { NULL, "retryable", "non-retryable", "timeout",
					  "inconsistent-snapshot", "out-of-resources" };
static const char *const state_names[AMB_WS_COUNT] = {
	"unknown", "stable", "waiting-for-freeze", "waiting-for-thaw",
	"waiting-for-post-snapshot", "waiting-for-backup-complete", "failed-at-identify",
	"failed-at-prepare-backup", "failed-at-prepare-snapshot", "failed-at-freeze",
	"failed-at-thaw", "failed-at-post-snapshot", "failed-at-backup-complete",
	"failed-at-pre-restore", "failed-at-post-restore", "failed-at-backup-shutdown",
};
static const char *const restore_names[] = { NULL, "if-not-there", "if-can-replace",
					     "stop-restore-start", "to-alternate-location",
					     "custom" };
static const char *const comptype_names[] = { NULL, "database", "filegroup" };
static const char *const select_names[] = { NULL, "include", "verify", "exclude" };
static const char *const smode_names[] = { NULL, "backup", "restore" };
static const char *const status_names[] = { NULL, "ok", "failed" };
static const char *const sev_names[] = { NULL, "info", "warning", "error" };

static const etab et_kind = ETAB(kind_names);
static const etab et_wevent = ETAB(wevent_names);
static const etab et_role = ETAB(role_names);
static const etab et_backup = ETAB(backup_names);
static const etab et_exit = ETAB(exit_names);
static const etab et_fail = ETAB(fail_names);
static const etab et_state = ETAB(state_names);
static const etab et_restore = ETAB(restore_names);
static const etab et_comptype = ETAB(comptype_names);
static const etab et_select = ETAB(select_names);
static const etab et_smode = ETAB(smode_names);
static const etab et_status = ETAB(status_names);
static const etab et_sev = ETAB(sev_names);

static const char *ename(const etab *t, long v)
{
	if (v < 0 || (size_t)v >= t->n)
		return NULL;
	return t->names[v];
}

static long elookup(const etab *t, const char *s)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->names[i] && strcmp(t->names[i], s) == 0)
			return (long)i;
	return -1;
}

const char *amb_msg_kind_name(amb_msg_kind k) { return ename(&et_kind, k); }
const char *amb_role_name(amb_role r) { return ename(&et_role, r); }
const char *amb_backup_type_name(amb_backup_type t) { return ename(&et_backup, t); }
const char *amb_exit_class_name(amb_exit_class e) { return ename(&et_exit, e); }
const char *amb_fail_class_name(amb_fail_class c) { return ename(&et_fail, c); }
const char *amb_writer_state_name(amb_writer_state s) { return ename(&et_state, s); }
const char *amb_restore_method_name(amb_restore_method r) { return ename(&et_restore, r); }

static const struct {
	uint32_t code;
	const char *name;
} event_codes[] = {
	{ AMB_EV_SESSION_OPENED, "session-opened" },
	{ AMB_EV_SESSION_CLOSED, "session-closed" },
	{ AMB_EV_SESSION_BUSY, "session-busy" },
	{ AMB_EV_GATHER_DONE, "gather-done" },
	{ AMB_EV_PREPARE_BACKUP_DONE, "prepare-backup-done" },
	{ AMB_EV_SNAPSHOT_STARTED, "snapshot-started" },
	{ AMB_EV_FREEZE_DONE, "freeze-done" },
	{ AMB_EV_COMMIT_DONE, "commit-done" },
	{ AMB_EV_THAW_DONE, "thaw-done" },
	{ AMB_EV_SNAPSHOT_SET_CREATED, "snapshot-set-created" },
	{ AMB_EV_BACKUP_COMPLETE_OK, "backup-complete-ok" },
	{ AMB_EV_BACKUP_COMPLETE_PARTIAL, "backup-complete-partial" },
	{ AMB_EV_SESSION_ABORTED, "session-aborted" },
	{ AMB_EV_SESSION_ABORTED_FAILURE, "session-aborted-failure" },
	{ AMB_EV_HOLD_DEADLINE_EXCEEDED, "hold-deadline-exceeded" },
	{ AMB_EV_REQUESTOR_LOST, "requestor-lost" },
	{ AMB_EV_WRITES_NOT_HELD, "writes-not-held" },
	{ AMB_EV_RESTORE_STARTED, "restore-started" },
	{ AMB_EV_RESTORE_DONE, "restore-done" },
	{ AMB_EV_RESTORE_FAILED, "restore-failed" },
	{ AMB_EV_WRITER_REGISTERED, "writer-registered" },
	{ AMB_EV_WRITER_UNREGISTERED, "writer-unregistered" },
	{ AMB_EV_WRITER_LOST, "writer-lost" },
	{ AMB_EV_WRITER_REFUSED, "writer-refused" },
	{ AMB_EV_WRITER_FAILED, "writer-failed" },
	{ AMB_EV_WRITER_TIMEOUT, "writer-timeout" },
	{ AMB_EV_WRITER_FROZEN, "writer-frozen" },
	{ AMB_EV_WRITER_THAWED, "writer-thawed" },
	{ AMB_EV_WRITER_NOT_OWNER, "writer-not-owner" },
	{ AMB_EV_WRITER_BAD_REPLY, "writer-bad-reply" },
	{ AMB_EV_SHADOW_CREATED, "shadow-created" },
	{ AMB_EV_SHADOW_DELETED, "shadow-deleted" },
	{ AMB_EV_SHADOW_EXPOSED, "shadow-exposed" },
	{ AMB_EV_SHADOW_UNEXPOSED, "shadow-unexposed" },
	{ AMB_EV_STORAGE_LIMIT_DELETED, "storage-limit-deleted" },
	{ AMB_EV_PROVIDER_FAILED, "provider-failed" },
	{ AMB_EV_COPY_PROVIDER_HOLDING, "copy-provider-holding" },
	{ AMB_EV_FS_FROZEN, "fs-frozen" },
	{ AMB_EV_FS_THAWED, "fs-thawed" },
	{ AMB_EV_GUARD_THAWED, "guard-thawed" },
	{ AMB_EV_SHADOW_LEAK_REMOVED, "shadow-leak-removed" },
	{ AMB_EV_REGISTRY_LOADED, "registry-loaded" },
	{ AMB_EV_DAEMON_STARTED, "daemon-started" },
	{ AMB_EV_DAEMON_STOPPING, "daemon-stopping" },
	{ AMB_EV_CLIENT_DENIED, "client-denied" },
	{ AMB_EV_PROTOCOL_ERROR, "protocol-error" },
	{ AMB_EV_VERSION_MISMATCH, "version-mismatch" },
	{ AMB_EV_MESSAGE_TOO_LARGE, "message-too-large" },
	{ AMB_EV_CONFIG_LOADED, "config-loaded" },
};

const char *amb_event_code_name(uint32_t code)
{
	for (size_t i = 0; i < sizeof(event_codes) / sizeof(event_codes[0]); i++)
		if (event_codes[i].code == code)
			return event_codes[i].name;
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* schema                                                                  */

enum ftype {
	T_U32,          /* uint32_t */
	T_U64,          /* uint64_t */
	T_I32,          /* int32_t (min/max still unsigned: only positive values) */
	T_BOOL,         /* bool */
	T_ENUM,         /* int-sized enum, wire: name from etab */
	T_ENUMSET,      /* unsigned bit mask of enum values, wire: array of names */
	T_NAME,         /* char[AMB_NAME_BUF] */
	T_UUID,         /* amb_uuid */
	T_TEXT,         /* char *, text; min/max: byte length */
	T_PATH,         /* char *, absolute normalized path */
	T_PATTERN,      /* char *, file pattern */
	T_OBJ,          /* inline struct */
	T_OBJP,         /* pointer to struct, NULL when absent */
	T_ARR,          /* pointer to array of structs + size_t count at aux */
	T_PATHARR,      /* char ** + size_t count at aux */
	T_UUIDARR,      /* amb_uuid * + size_t count at aux */
};

enum {
	F_REQ = 1,      /* must be present */
	F_HAS = 2,      /* optional; presence in a bool at aux */
	F_UNIQUE = 4,   /* arrays: no two elements with equal F_KEY fields */
	F_KEY = 8,      /* the field identifies an element for F_UNIQUE */
};

typedef struct dctx dctx;
typedef struct sdesc sdesc;

typedef struct fdesc {
	const char *key;
	int type;
	int flags;
	size_t off;
	size_t aux;
	uint64_t min, max;      /* numbers: value; strings: length; arrays: count */
	uint64_t def;           /* optional numbers and bools: value when absent */
	const void *sub;        /* etab for enums, sdesc for objects and arrays */
} fdesc;

struct sdesc {
	size_t size;
	const fdesc *f;
	size_t nf;
	int (*check)(dctx *c, const void *obj);
};

#define NF(a) (sizeof(a) / sizeof(a[0]))
#define SD(st, fields, chk) { sizeof(st), fields, NF(fields), chk }
#define SD0(st) { sizeof(st), NULL, 0, NULL }

#define F_U32(st, k, m, fl, lo, hi) { k, T_U32, fl, offsetof(st, m), 0, lo, hi, 0, NULL }
#define F_U64(st, k, m, fl, lo, hi) { k, T_U64, fl, offsetof(st, m), 0, lo, hi, 0, NULL }
#define F_U64H(st, k, m, hm, lo, hi) \
	{ k, T_U64, F_HAS, offsetof(st, m), offsetof(st, hm), lo, hi, 0, NULL }
#define F_I32(st, k, m, fl, lo, hi) { k, T_I32, fl, offsetof(st, m), 0, lo, hi, 0, NULL }
#define F_BOOL(st, k, m, fl, d) { k, T_BOOL, fl, offsetof(st, m), 0, 0, 1, d, NULL }
#define F_BOOLH(st, k, m, hm) \
	{ k, T_BOOL, F_HAS, offsetof(st, m), offsetof(st, hm), 0, 1, 0, NULL }
#define F_ENUM(st, k, m, fl, t) { k, T_ENUM, fl, offsetof(st, m), 0, 0, 0, 0, &t }
#define F_ENUMSET(st, k, m, fl, t, lo, hi) { k, T_ENUMSET, fl, offsetof(st, m), 0, lo, hi, 0, &t }
#define F_NAME(st, k, m, fl) { k, T_NAME, fl, offsetof(st, m), 0, 1, AMB_NAME_MAX, 0, NULL }
#define F_UUID(st, k, m, fl) \
	{ k, T_UUID, fl, offsetof(st, m), 0, AMB_UUID_LEN, AMB_UUID_LEN, 0, NULL }
#define F_TEXT(st, k, m, fl, lo, hi) { k, T_TEXT, fl, offsetof(st, m), 0, lo, hi, 0, NULL }
#define F_PATH(st, k, m, fl) { k, T_PATH, fl, offsetof(st, m), 0, 1, AMB_PATH_MAX, 0, NULL }
#define F_PATTERN(st, k, m, fl) \
	{ k, T_PATTERN, fl, offsetof(st, m), 0, 1, AMB_PATTERN_MAX, 0, NULL }
#define F_OBJ(st, k, m, fl, sd) { k, T_OBJ, fl, offsetof(st, m), 0, 0, 0, 0, &sd }
#define F_OBJP(st, k, m, fl, sd) { k, T_OBJP, fl, offsetof(st, m), 0, 0, 0, 0, &sd }
#define F_ARR(st, k, m, fl, sd, lo, hi) \
	{ k, T_ARR, fl, offsetof(st, m), offsetof(st, n_##m), lo, hi, 0, &sd }
#define F_PATHARR(st, k, m, fl, lo, hi) \
	{ k, T_PATHARR, fl, offsetof(st, m), offsetof(st, n_##m), lo, hi, 0, NULL }
#define F_UUIDARR(st, k, m, fl, lo, hi) \
	{ k, T_UUIDARR, fl, offsetof(st, m), offsetof(st, n_##m), lo, hi, 0, NULL }

#define RQ F_REQ
#define OP 0

/* --- cross-field checks ---------------------------------------------- */

static int chk_hello(dctx *c, const void *p)
{
	const amb_hello *h = p;
	if (h->min_version && h->min_version > h->version) {
		size_t o = push_key(c, "min_version");
		cerr(c, "greater than version");
		pop(c, o);
		return c->rc;
	}
	return 0;
}

/* The fields of a reply that depend on the event and the status.  The
 * error path is left pointing at the field: the walk stops anyway. */
static int chk_reply(dctx *c, const void *p)
{
	const amb_reply *r = p;
	if (r->status == AMB_REPLY_OK && r->cls != AMB_FAIL_NONE) {
		push_key(c, "class");
		return cerr(c, "not allowed when status is ok");
	}
	if (r->status == AMB_REPLY_FAILED && r->cls == AMB_FAIL_NONE) {
		push_key(c, "class");
		return cerr(c, "missing (required when status is failed)");
	}
	bool want_held = r->status == AMB_REPLY_OK && r->event == AMB_MSG_POST_SNAPSHOT;
	if (want_held != r->has_held_writes) {
		push_key(c, "held_writes");
		return cerr(c, want_held ? "missing (required in an ok reply to post-snapshot)"
					 : "only allowed in an ok reply to post-snapshot");
	}
	if (r->n_unchanged && !(r->status == AMB_REPLY_OK && r->event == AMB_MSG_FREEZE)) {
		push_key(c, "unchanged");
		return cerr(c, "only allowed in an ok reply to freeze");
	}
	bool want_md = r->status == AMB_REPLY_OK && r->event == AMB_MSG_IDENTIFY;
	if (want_md != (r->metadata != NULL)) {
		push_key(c, "metadata");
		return cerr(c, want_md ? "missing (required in an ok reply to identify)"
				       : "only allowed in an ok reply to identify");
	}
	return 0;
}

static int chk_session_open(dctx *c, const void *p)
{
	const amb_session_open *s = p;
	if (s->mode == AMB_SESSION_BACKUP && !s->backup_type) {
		push_key(c, "backup_type");
		return cerr(c, "missing (required for a backup session)");
	}
	return 0;
}

static int chk_shadow_delete(dctx *c, const void *p)
{
	const amb_shadow_delete *d = p;
	int n = (d->all ? 1 : 0) + (d->oldest ? 1 : 0) + (d->shadow[0] ? 1 : 0) +
		(d->set[0] ? 1 : 0) + (d->exposed ? 1 : 0);
	if (n != 1)
		return cerr(c, "exactly one of all, oldest, shadow, set, exposed is required");
	return 0;
}

/* --- structs ---------------------------------------------------------- */

static const fdesc f_hello[] = {
	F_U32(amb_hello, "version", version, RQ, 1, 65535),
	F_U32(amb_hello, "min_version", min_version, OP, 1, 65535),
	F_ENUM(amb_hello, "role", role, RQ, et_role),
	F_NAME(amb_hello, "name", name, RQ),
	F_I32(amb_hello, "pid", pid, RQ, 1, INT32_MAX),
};
static const sdesc sd_hello = SD(amb_hello, f_hello, chk_hello);

static const fdesc f_welcome[] = {
	F_U32(amb_welcome, "version", version, RQ, 1, 65535),
	F_NAME(amb_welcome, "server", server, RQ),
	F_NAME(amb_welcome, "server_version", server_version, RQ),
	F_U32(amb_welcome, "max_message", max_message, RQ, AMB_PROTO_MIN_MSG_LIMIT,
	      AMB_PROTO_MAX_MSG_LIMIT),
	F_U32(amb_welcome, "hold_ms", hold_ms, RQ, 1, AMB_MAX_HOLD_MS),
	F_U32(amb_welcome, "event_timeout_ms", event_timeout_ms, RQ, 1, AMB_MAX_TIMEOUT_MS),
};
static const sdesc sd_welcome = SD(amb_welcome, f_welcome, NULL);

static const sdesc sd_empty = SD0(amb_msg);

static const fdesc f_error[] = {
	F_ENUM(amb_error, "exit", exit, RQ, et_exit),
	F_ENUM(amb_error, "class", cls, OP, et_fail),
	F_TEXT(amb_error, "message", message, RQ, 1, AMB_TEXT_MAX),
	F_TEXT(amb_error, "field", field, OP, 1, AMB_FIELD_MAX),
};
static const sdesc sd_error = SD(amb_error, f_error, NULL);

static const fdesc f_failure[] = {
	F_ENUM(amb_failure, "class", cls, RQ, et_fail),
	F_TEXT(amb_failure, "message", message, OP, 1, AMB_TEXT_MAX),
};
static const sdesc sd_failure = SD(amb_failure, f_failure, NULL);

static const fdesc f_fileset[] = {
	F_PATH(amb_fileset, "path", path, RQ),
	F_PATTERN(amb_fileset, "pattern", pattern, RQ),
	F_BOOL(amb_fileset, "recursive", recursive, OP, 0),
};
static const sdesc sd_fileset = SD(amb_fileset, f_fileset, NULL);

static const fdesc f_component[] = {
	F_NAME(amb_component, "name", name, RQ | F_KEY),
	F_ENUM(amb_component, "type", type, RQ, et_comptype),
	F_BOOL(amb_component, "selectable", selectable, OP, 1),
	F_ARR(amb_component, "files", files, RQ, sd_fileset, 1, AMB_MAX_FILESETS),
	F_ARR(amb_component, "logs", logs, OP, sd_fileset, 0, AMB_MAX_FILESETS),
	F_PATH(amb_component, "checkpoint", checkpoint, OP),
};
static const sdesc sd_component = SD(amb_component, f_component, NULL);

static const fdesc f_writer_md[] = {
	F_NAME(amb_writer_md, "name", name, RQ),
	F_UUID(amb_writer_md, "instance", instance, RQ),
	F_TEXT(amb_writer_md, "instance_name", instance_name, OP, 1, AMB_LABEL_MAX),
	F_ENUMSET(amb_writer_md, "backup_types", backup_types, RQ, et_backup, 1, 4),
	F_NAME(amb_writer_md, "verifier", verifier, RQ),
	F_ENUM(amb_writer_md, "restore_method", restore_method, RQ, et_restore),
	F_U32(amb_writer_md, "max_hold_ms", max_hold_ms, RQ, 1, AMB_MAX_HOLD_MS),
	F_ARR(amb_writer_md, "components", components, RQ | F_UNIQUE, sd_component, 0,
	      AMB_MAX_COMPONENTS),
	F_ARR(amb_writer_md, "excludes", excludes, OP, sd_fileset, 0, AMB_MAX_FILESETS),
};
static const sdesc sd_writer_md = SD(amb_writer_md, f_writer_md, NULL);

static const fdesc f_register[] = {
	F_OBJ(amb_register, "metadata", metadata, RQ, sd_writer_md),
};
static const sdesc sd_register = SD(amb_register, f_register, NULL);

/* writer events: one struct, one field list per kind */
static const fdesc f_wcomp_name[] = {
	F_NAME(amb_wcomp, "name", name, RQ | F_KEY),
};
static const sdesc sd_wcomp_name = SD(amb_wcomp, f_wcomp_name, NULL);
static const fdesc f_wcomp_success[] = {
	F_NAME(amb_wcomp, "name", name, RQ | F_KEY),
	F_BOOL(amb_wcomp, "success", success, RQ, 0),
};
static const sdesc sd_wcomp_success = SD(amb_wcomp, f_wcomp_success, NULL);
static const fdesc f_wcomp_target[] = {
	F_NAME(amb_wcomp, "name", name, RQ | F_KEY),
	F_PATH(amb_wcomp, "target", target, OP),
};
static const sdesc sd_wcomp_target = SD(amb_wcomp, f_wcomp_target, NULL);
static const fdesc f_shadow_loc[] = {
	F_PATH(amb_shadow_loc, "volume", volume, RQ | F_KEY),
	F_PATH(amb_shadow_loc, "path", path, RQ),
};
static const sdesc sd_shadow_loc = SD(amb_shadow_loc, f_shadow_loc, NULL);

#define WSESSION(fl) F_UUID(amb_wevent, "session", session, fl)
#define WSET(fl) F_UUID(amb_wevent, "set", set, fl)
#define WVOLUMES F_PATHARR(amb_wevent, "volumes", volumes, F_UNIQUE, 0, AMB_MAX_VOLUMES)
#define WCOMPS(sd) F_ARR(amb_wevent, "components", components, F_UNIQUE, sd, 0, AMB_MAX_COMPONENTS)

static const fdesc f_identify[] = { WSESSION(OP) };
static const fdesc f_prepare_backup[] = {
	WSESSION(RQ),
	F_ENUM(amb_wevent, "backup_type", backup_type, RQ, et_backup),
	WCOMPS(sd_wcomp_name),
	WVOLUMES,
};
static const fdesc f_prepare_snapshot[] = { WSESSION(RQ), WSET(RQ), WVOLUMES };
static const fdesc f_freeze[] = {
	WSESSION(RQ), WSET(RQ),
	F_U32(amb_wevent, "hold_ms", hold_ms, RQ, 1, AMB_MAX_HOLD_MS),
};
static const fdesc f_thaw[] = { WSESSION(RQ), WSET(RQ) };
static const fdesc f_post_snapshot[] = {
	WSESSION(RQ), WSET(RQ),
	F_ARR(amb_wevent, "shadows", shadows, F_UNIQUE, sd_shadow_loc, 0, AMB_MAX_VOLUMES),
};
static const fdesc f_backup_complete[] = {
	WSESSION(RQ),
	F_ENUM(amb_wevent, "backup_type", backup_type, RQ, et_backup),
	WCOMPS(sd_wcomp_success),
};
static const fdesc f_abort[] = {
	WSESSION(RQ), WSET(OP),
	F_ENUM(amb_wevent, "class", cls, OP, et_fail),
	F_TEXT(amb_wevent, "message", message, OP, 1, AMB_TEXT_MAX),
};
static const fdesc f_pre_restore[] = { WSESSION(RQ), WCOMPS(sd_wcomp_target) };
static const fdesc f_post_restore[] = { WSESSION(RQ), WCOMPS(sd_wcomp_success) };

static const sdesc sd_identify = SD(amb_wevent, f_identify, NULL);
static const sdesc sd_prepare_backup = SD(amb_wevent, f_prepare_backup, NULL);
static const sdesc sd_prepare_snapshot = SD(amb_wevent, f_prepare_snapshot, NULL);
static const sdesc sd_freeze = SD(amb_wevent, f_freeze, NULL);
static const sdesc sd_thaw = SD(amb_wevent, f_thaw, NULL);
static const sdesc sd_post_snapshot = SD(amb_wevent, f_post_snapshot, NULL);
static const sdesc sd_backup_complete = SD(amb_wevent, f_backup_complete, NULL);
static const sdesc sd_abort = SD(amb_wevent, f_abort, NULL);
static const sdesc sd_pre_restore = SD(amb_wevent, f_pre_restore, NULL);
static const sdesc sd_post_restore = SD(amb_wevent, f_post_restore, NULL);

static const fdesc f_reply[] = {
	F_ENUM(amb_reply, "event", event, RQ, et_wevent),
	F_ENUM(amb_reply, "status", status, RQ, et_status),
	F_ENUM(amb_reply, "class", cls, OP, et_fail),
	F_TEXT(amb_reply, "message", message, OP, 1, AMB_TEXT_MAX),
	F_BOOLH(amb_reply, "held_writes", held_writes, has_held_writes),
	F_OBJP(amb_reply, "metadata", metadata, OP, sd_writer_md),
	F_PATHARR(amb_reply, "unchanged", unchanged, F_UNIQUE, 0, AMB_MAX_UNCHANGED),
};
static const sdesc sd_reply = SD(amb_reply, f_reply, chk_reply);

/* requestor */
static const fdesc f_session_open[] = {
	F_ENUM(amb_session_open, "mode", mode, RQ, et_smode),
	F_ENUM(amb_session_open, "backup_type", backup_type, OP, et_backup),
	F_BOOL(amb_session_open, "persistent", persistent, OP, 0),
	F_BOOL(amb_session_open, "no_writers", no_writers, OP, 0),
	F_NAME(amb_session_open, "provider", provider, OP),
};
static const sdesc sd_session_open = SD(amb_session_open, f_session_open, chk_session_open);

static const fdesc f_session[] = {
	F_UUID(amb_session_ref, "session", session, RQ),
	F_UUID(amb_session_ref, "set", set, RQ),
};
static const sdesc sd_session = SD(amb_session_ref, f_session, NULL);
static const fdesc f_session_only[] = {
	F_UUID(amb_session_ref, "session", session, RQ),
};
static const sdesc sd_session_only = SD(amb_session_ref, f_session_only, NULL);

static const fdesc f_session_select[] = {
	F_UUID(amb_session_select, "session", session, RQ),
	F_NAME(amb_session_select, "writer", writer, RQ),
	F_NAME(amb_session_select, "component", component, OP),
	F_ENUM(amb_session_select, "mode", mode, RQ, et_select),
};
static const sdesc sd_session_select = SD(amb_session_select, f_session_select, NULL);

static const fdesc f_session_add_volume[] = {
	F_UUID(amb_session_add_volume, "session", session, RQ),
	F_PATH(amb_session_add_volume, "volume", volume, RQ),
	F_NAME(amb_session_add_volume, "provider", provider, OP),
};
static const sdesc sd_session_add_volume = SD(amb_session_add_volume, f_session_add_volume,
					      NULL);

static const fdesc f_result_success[] = {
	F_NAME(amb_comp_result, "writer", writer, RQ | F_KEY),
	F_NAME(amb_comp_result, "component", component, RQ | F_KEY),
	F_BOOL(amb_comp_result, "success", success, RQ, 0),
};
static const sdesc sd_result_success = SD(amb_comp_result, f_result_success, NULL);
static const fdesc f_result_target[] = {
	F_NAME(amb_comp_result, "writer", writer, RQ | F_KEY),
	F_NAME(amb_comp_result, "component", component, RQ | F_KEY),
	F_PATH(amb_comp_result, "target", target, OP),
};
static const sdesc sd_result_target = SD(amb_comp_result, f_result_target, NULL);

static const fdesc f_session_results[] = {
	F_UUID(amb_session_results, "session", session, RQ),
	F_ARR(amb_session_results, "results", items, RQ | F_UNIQUE, sd_result_success, 0,
	      AMB_MAX_RESULTS),
};
static const sdesc sd_session_results = SD(amb_session_results, f_session_results, NULL);
static const fdesc f_session_restore_targets[] = {
	F_UUID(amb_session_results, "session", session, RQ),
	F_ARR(amb_session_results, "components", items, RQ | F_UNIQUE, sd_result_target, 0,
	      AMB_MAX_RESULTS),
};
static const sdesc sd_session_restore_targets = SD(amb_session_results,
						   f_session_restore_targets, NULL);

static const fdesc f_session_abort[] = {
	F_UUID(amb_session_abort, "session", session, RQ),
	F_TEXT(amb_session_abort, "message", message, OP, 1, AMB_TEXT_MAX),
};
static const sdesc sd_session_abort = SD(amb_session_abort, f_session_abort, NULL);

/* listings */
static const fdesc f_writer_info[] = {
	F_OBJ(amb_writer_info, "metadata", metadata, RQ, sd_writer_md),
	F_ENUM(amb_writer_info, "state", state, RQ, et_state),
	F_OBJP(amb_writer_info, "last_error", last_error, OP, sd_failure),
	F_I32(amb_writer_info, "pid", pid, RQ, 1, INT32_MAX),
	F_U32(amb_writer_info, "uid", uid, RQ, 0, UINT32_MAX - 1),
};
static const sdesc sd_writer_info = SD(amb_writer_info, f_writer_info, NULL);
static const fdesc f_writer_list[] = {
	F_ARR(amb_writer_list, "writers", writers, RQ, sd_writer_info, 0, AMB_MAX_WRITERS),
};
static const sdesc sd_writer_list = SD(amb_writer_list, f_writer_list, NULL);

static const fdesc f_provider_info[] = {
	F_NAME(amb_provider_info, "name", name, RQ | F_KEY),
	F_TEXT(amb_provider_info, "description", description, OP, 1, AMB_LABEL_MAX),
	F_BOOL(amb_provider_info, "holds_writes", holds_writes, RQ, 0),
};
static const sdesc sd_provider_info = SD(amb_provider_info, f_provider_info, NULL);
static const fdesc f_provider_list[] = {
	F_ARR(amb_provider_list, "providers", providers, RQ | F_UNIQUE, sd_provider_info, 0,
	      AMB_MAX_PROVIDERS),
};
static const sdesc sd_provider_list = SD(amb_provider_list, f_provider_list, NULL);

static const fdesc f_shadow[] = {
	F_UUID(amb_shadow, "id", id, RQ),
	F_UUID(amb_shadow, "set", set, RQ),
	F_PATH(amb_shadow, "volume", volume, RQ),
	F_PATH(amb_shadow, "path", path, RQ),
	F_NAME(amb_shadow, "provider", provider, RQ),
	F_BOOL(amb_shadow, "persistent", persistent, RQ, 0),
	F_BOOL(amb_shadow, "writers", writers, RQ, 0),
	F_U64(amb_shadow, "created", created_ms, RQ, 0, AMB_MAX_ID),
	F_PATH(amb_shadow, "exposed", exposed, OP),
};
static const sdesc sd_shadow = SD(amb_shadow, f_shadow, NULL);

static const fdesc f_list_shadows[] = {
	F_UUID(amb_list_shadows, "set", set, OP),
	F_PATH(amb_list_shadows, "volume", volume, OP),
	F_U64(amb_list_shadows, "offset", offset, OP, 0, AMB_MAX_ID),
	F_U32(amb_list_shadows, "limit", limit, OP, 1, AMB_MAX_SHADOWS),
};
static const sdesc sd_list_shadows = SD(amb_list_shadows, f_list_shadows, NULL);
static const fdesc f_shadow_list[] = {
	F_U64(amb_shadow_list, "total", total, RQ, 0, AMB_MAX_ID),
	F_ARR(amb_shadow_list, "shadows", shadows, RQ, sd_shadow, 0, AMB_MAX_SHADOWS),
};
static const sdesc sd_shadow_list = SD(amb_shadow_list, f_shadow_list, NULL);

static const fdesc f_storage_info[] = {
	F_PATH(amb_storage_info, "volume", volume, RQ),
	F_U64(amb_storage_info, "used", used, RQ, 0, AMB_MAX_ID),
	F_U64(amb_storage_info, "limit", limit, RQ, 0, AMB_MAX_ID),
};
static const sdesc sd_storage_info = SD(amb_storage_info, f_storage_info, NULL);
static const fdesc f_storage_list[] = {
	F_ARR(amb_storage_list, "storage", storage, RQ, sd_storage_info, 0, AMB_MAX_STORAGE),
};
static const sdesc sd_storage_list = SD(amb_storage_list, f_storage_list, NULL);

static const fdesc f_shadow_create[] = {
	F_PATHARR(amb_shadow_create, "volumes", volumes, RQ | F_UNIQUE, 1, AMB_MAX_VOLUMES),
	F_BOOL(amb_shadow_create, "persistent", persistent, OP, 0),
	F_BOOL(amb_shadow_create, "no_writers", no_writers, OP, 0),
	F_NAME(amb_shadow_create, "provider", provider, OP),
};
static const sdesc sd_shadow_create = SD(amb_shadow_create, f_shadow_create, NULL);

static const fdesc f_snapshot_set[] = {
	F_UUID(amb_snapshot_set, "set", set, RQ),
	F_ARR(amb_snapshot_set, "shadows", shadows, RQ, sd_shadow, 0, AMB_MAX_VOLUMES),
	F_UUIDARR(amb_snapshot_set, "writers", writers, OP, 0, AMB_MAX_WRITERS),
};
static const sdesc sd_snapshot_set = SD(amb_snapshot_set, f_snapshot_set, NULL);

static const fdesc f_shadow_delete[] = {
	F_BOOL(amb_shadow_delete, "all", all, OP, 0),
	F_PATH(amb_shadow_delete, "oldest", oldest, OP),
	F_UUID(amb_shadow_delete, "shadow", shadow, OP),
	F_UUID(amb_shadow_delete, "set", set, OP),
	F_PATH(amb_shadow_delete, "exposed", exposed, OP),
};
static const sdesc sd_shadow_delete = SD(amb_shadow_delete, f_shadow_delete, chk_shadow_delete);

static const fdesc f_deleted[] = {
	F_UUIDARR(amb_deleted, "shadows", shadows, RQ, 0, AMB_MAX_SHADOWS),
};
static const sdesc sd_deleted = SD(amb_deleted, f_deleted, NULL);

static const fdesc f_shadow_expose[] = {
	F_UUID(amb_shadow_expose, "shadow", shadow, RQ),
	F_PATH(amb_shadow_expose, "path", path, RQ),
};
static const sdesc sd_shadow_expose = SD(amb_shadow_expose, f_shadow_expose, NULL);
static const fdesc f_shadow_unexpose[] = {
	F_PATH(amb_shadow_expose, "path", path, RQ),
};
static const sdesc sd_shadow_unexpose = SD(amb_shadow_expose, f_shadow_unexpose, NULL);

static const fdesc f_events_list[] = {
	F_U64H(amb_events_req, "since", since, has_since, 0, AMB_MAX_ID),
	F_U32(amb_events_req, "limit", limit, OP, 1, AMB_MAX_EVENTS),
};
static const sdesc sd_events_list = SD(amb_events_req, f_events_list, NULL);
static const fdesc f_events_follow[] = {
	F_U64H(amb_events_req, "since", since, has_since, 0, AMB_MAX_ID),
};
static const sdesc sd_events_follow = SD(amb_events_req, f_events_follow, NULL);

static const fdesc f_event[] = {
	F_U64(amb_event, "seq", seq, RQ, 1, AMB_MAX_ID),
	F_U64(amb_event, "time", time_ms, RQ, 0, AMB_MAX_ID),
	F_U32(amb_event, "code", code, RQ, AMB_EV_MIN, AMB_EV_MAX),
	F_ENUM(amb_event, "severity", severity, RQ, et_sev),
	F_TEXT(amb_event, "message", message, RQ, 1, AMB_TEXT_MAX),
	F_UUID(amb_event, "session", session, OP),
	F_UUID(amb_event, "set", set, OP),
	F_UUID(amb_event, "shadow", shadow, OP),
	F_NAME(amb_event, "writer", writer, OP),
	F_NAME(amb_event, "component", component, OP),
	F_PATH(amb_event, "volume", volume, OP),
	F_ENUM(amb_event, "class", cls, OP, et_fail),
};
static const sdesc sd_event = SD(amb_event, f_event, NULL);
static const fdesc f_event_list[] = {
	F_ARR(amb_event_list, "events", events, RQ, sd_event, 0, AMB_MAX_EVENTS),
};
static const sdesc sd_event_list = SD(amb_event_list, f_event_list, NULL);

/* --- message kinds ---------------------------------------------------- */

enum { ID_REQ, ID_OPT, ID_NONE };

typedef struct kdesc {
	int id;
	const sdesc *sd;
} kdesc;

static const kdesc kinds[AMB_MSG_KIND_COUNT] = {
	[AMB_MSG_HELLO] = { ID_REQ, &sd_hello },
	[AMB_MSG_WELCOME] = { ID_REQ, &sd_welcome },
	[AMB_MSG_OK] = { ID_REQ, &sd_empty },
	[AMB_MSG_ERROR] = { ID_OPT, &sd_error },
	[AMB_MSG_REGISTER] = { ID_REQ, &sd_register },
	[AMB_MSG_UNREGISTER] = { ID_REQ, &sd_empty },
	[AMB_MSG_IDENTIFY] = { ID_REQ, &sd_identify },
	[AMB_MSG_PREPARE_BACKUP] = { ID_REQ, &sd_prepare_backup },
	[AMB_MSG_PREPARE_SNAPSHOT] = { ID_REQ, &sd_prepare_snapshot },
	[AMB_MSG_FREEZE] = { ID_REQ, &sd_freeze },
	[AMB_MSG_THAW] = { ID_REQ, &sd_thaw },
	[AMB_MSG_POST_SNAPSHOT] = { ID_REQ, &sd_post_snapshot },
	[AMB_MSG_BACKUP_COMPLETE] = { ID_REQ, &sd_backup_complete },
	[AMB_MSG_ABORT] = { ID_REQ, &sd_abort },
	[AMB_MSG_PRE_RESTORE] = { ID_REQ, &sd_pre_restore },
	[AMB_MSG_POST_RESTORE] = { ID_REQ, &sd_post_restore },
	[AMB_MSG_REPLY] = { ID_REQ, &sd_reply },
	[AMB_MSG_SESSION_OPEN] = { ID_REQ, &sd_session_open },
	[AMB_MSG_SESSION] = { ID_REQ, &sd_session },
	[AMB_MSG_SESSION_GATHER] = { ID_REQ, &sd_session_only },
	[AMB_MSG_SESSION_SELECT] = { ID_REQ, &sd_session_select },
	[AMB_MSG_SESSION_ADD_VOLUME] = { ID_REQ, &sd_session_add_volume },
	[AMB_MSG_SESSION_SNAPSHOT] = { ID_REQ, &sd_session_only },
	[AMB_MSG_SESSION_BACKUP_COMPLETE] = { ID_REQ, &sd_session_results },
	[AMB_MSG_SESSION_ABORT] = { ID_REQ, &sd_session_abort },
	[AMB_MSG_SESSION_PRE_RESTORE] = { ID_REQ, &sd_session_restore_targets },
	[AMB_MSG_SESSION_POST_RESTORE] = { ID_REQ, &sd_session_results },
	[AMB_MSG_SESSION_CLOSE] = { ID_REQ, &sd_session_only },
	[AMB_MSG_LIST_WRITERS] = { ID_REQ, &sd_empty },
	[AMB_MSG_WRITER_LIST] = { ID_REQ, &sd_writer_list },
	[AMB_MSG_LIST_PROVIDERS] = { ID_REQ, &sd_empty },
	[AMB_MSG_PROVIDER_LIST] = { ID_REQ, &sd_provider_list },
	[AMB_MSG_LIST_SHADOWS] = { ID_REQ, &sd_list_shadows },
	[AMB_MSG_SHADOW_LIST] = { ID_REQ, &sd_shadow_list },
	[AMB_MSG_LIST_SHADOWSTORAGE] = { ID_REQ, &sd_empty },
	[AMB_MSG_SHADOWSTORAGE_LIST] = { ID_REQ, &sd_storage_list },
	[AMB_MSG_SHADOW_CREATE] = { ID_REQ, &sd_shadow_create },
	[AMB_MSG_SNAPSHOT_SET] = { ID_REQ, &sd_snapshot_set },
	[AMB_MSG_SHADOW_DELETE] = { ID_REQ, &sd_shadow_delete },
	[AMB_MSG_DELETED] = { ID_REQ, &sd_deleted },
	[AMB_MSG_SHADOW_EXPOSE] = { ID_REQ, &sd_shadow_expose },
	[AMB_MSG_SHADOW_UNEXPOSE] = { ID_REQ, &sd_shadow_unexpose },
	[AMB_MSG_EVENTS_LIST] = { ID_REQ, &sd_events_list },
	[AMB_MSG_EVENT_LIST] = { ID_REQ, &sd_event_list },
	[AMB_MSG_EVENTS_FOLLOW] = { ID_REQ, &sd_events_follow },
	[AMB_MSG_EVENT] = { ID_NONE, &sd_event },
};

/* ---------------------------------------------------------------------- */
/* free                                                                    */

static void free_struct(const sdesc *sd, void *p)
{
	char *base = p;
	for (size_t i = 0; i < sd->nf; i++) {
		const fdesc *f = &sd->f[i];
		void *v = base + f->off;
		switch (f->type) {
		case T_TEXT:
		case T_PATH:
		case T_PATTERN:
			free(*(char **)v);
			*(char **)v = NULL;
			break;
		case T_OBJ:
			free_struct(f->sub, v);
			break;
		case T_OBJP: {
			void *q = *(void **)v;
			if (q) {
				free_struct(f->sub, q);
				free(q);
			}
			*(void **)v = NULL;
			break;
		}
		case T_ARR: {
			const sdesc *esd = f->sub;
			char *arr = *(char **)v;
			size_t *n = (size_t *)(base + f->aux);
			for (size_t j = 0; arr && j < *n; j++)
				free_struct(esd, arr + j * esd->size);
			free(arr);
			*(char **)v = NULL;
			*n = 0;
			break;
		}
		case T_PATHARR: {
			char **arr = *(char ***)v;
			size_t *n = (size_t *)(base + f->aux);
			for (size_t j = 0; arr && j < *n; j++)
				free(arr[j]);
			free(arr);
			*(char ***)v = NULL;
			*n = 0;
			break;
		}
		case T_UUIDARR:
			free(*(amb_uuid **)v);
			*(amb_uuid **)v = NULL;
			*(size_t *)(base + f->aux) = 0;
			break;
		default:
			break;
		}
	}
}

void amb_msg_free(amb_msg *m)
{
	if (!m)
		return;
	if (m->kind > AMB_MSG_NONE && m->kind < AMB_MSG_KIND_COUNT && kinds[m->kind].sd)
		free_struct(kinds[m->kind].sd, &m->u);
	memset(m, 0, sizeof(*m));
}

/* ---------------------------------------------------------------------- */
/* decode                                                                  */

static int dec_struct(dctx *c, json_t *obj, const sdesc *sd, void *out,
		      const char *const *extra);

static int count_err(dctx *c, const fdesc *f)
{
	return cerr(c, "must have %" PRIu64 "..%" PRIu64 " elements", f->min, f->max);
}

static const char *jtype_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "unknown";
}

/* A string value: checked for type, embedded NUL and length range. */
static int dec_str(dctx *c, json_t *v, uint64_t lo, uint64_t hi, const char **s, size_t *len)
{
	if (!json_is_string(v))
		return cerr(c, "must be a string, not %s", jtype_name(v));
	*s = json_string_value(v);
	*len = json_string_length(v);
	if (strlen(*s) != *len)
		return cerr(c, "contains a NUL byte");
	if (*len < lo)
		return lo == 1 ? cerr(c, "must not be empty")
			       : cerr(c, "shorter than %" PRIu64 " bytes", lo);
	if (*len > hi)
		return cerr(c, "longer than %" PRIu64 " bytes", hi);
	return 0;
}

static int dec_uint(dctx *c, json_t *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
	if (!json_is_integer(v))
		return cerr(c, "must be an integer, not %s", jtype_name(v));
	json_int_t x = json_integer_value(v);
	if (x < 0)
		return cerr(c, "must not be negative");
	if ((uint64_t)x < lo || (uint64_t)x > hi)
		return cerr(c, "out of range (%" PRIu64 "..%" PRIu64 ")", lo, hi);
	*out = (uint64_t)x;
	return 0;
}

static int dec_enum(dctx *c, json_t *v, const etab *t, long *out)
{
	const char *s;
	size_t len;
	int rc = dec_str(c, v, 1, 64, &s, &len);
	if (rc)
		return rc;
	long e = elookup(t, s);
	if (e < 0) {
		char q[64];
		return cerr(c, "unknown value \"%s\"", quote(s, q, sizeof(q)));
	}
	*out = e;
	return 0;
}

/* Duplicate check for F_UNIQUE arrays of structs: compare F_KEY fields. */
static bool same_key(const sdesc *sd, const char *a, const char *b)
{
	bool any = false;
	for (size_t i = 0; i < sd->nf; i++) {
		const fdesc *f = &sd->f[i];
		if (!(f->flags & F_KEY))
			continue;
		any = true;
		switch (f->type) {
		case T_NAME:
		case T_UUID:
			if (strcmp(a + f->off, b + f->off) != 0)
				return false;
			break;
		case T_PATH: {
			const char *x = *(char *const *)(a + f->off);
			const char *y = *(char *const *)(b + f->off);
			if (!x || !y || strcmp(x, y) != 0)
				return false;
			break;
		}
		default:
			return false;
		}
	}
	return any;     /* a schema without keys has no duplicates */
}

static int dec_field(dctx *c, json_t *v, const fdesc *f, char *base)
{
	void *dst = base + f->off;
	const char *s;
	size_t len;
	uint64_t u;
	long e;
	int rc;

	switch (f->type) {
	case T_U32:
		if ((rc = dec_uint(c, v, f->min, f->max, &u)))
			return rc;
		*(uint32_t *)dst = (uint32_t)u;
		return 0;
	case T_U64:
		if ((rc = dec_uint(c, v, f->min, f->max, &u)))
			return rc;
		*(uint64_t *)dst = u;
		if (f->flags & F_HAS)
			*(bool *)(base + f->aux) = true;
		return 0;
	case T_I32:
		if ((rc = dec_uint(c, v, f->min, f->max, &u)))
			return rc;
		*(int32_t *)dst = (int32_t)u;
		return 0;
	case T_BOOL:
		if (!json_is_boolean(v))
			return cerr(c, "must be true or false, not %s", jtype_name(v));
		*(bool *)dst = json_is_true(v);
		if (f->flags & F_HAS)
			*(bool *)(base + f->aux) = true;
		return 0;
	case T_ENUM:
		if ((rc = dec_enum(c, v, f->sub, &e)))
			return rc;
		*(int *)dst = (int)e;
		return 0;
	case T_ENUMSET: {
		if (!json_is_array(v))
			return cerr(c, "must be an array, not %s", jtype_name(v));
		size_t n = json_array_size(v);
		if (n < f->min || n > f->max)
			return count_err(c, f);
		unsigned mask = 0;
		for (size_t i = 0; i < n; i++) {
			size_t o = push_index(c, i);
			if ((rc = dec_enum(c, json_array_get(v, i), f->sub, &e)))
				return rc;
			if (mask & (1u << e))
				return cerr(c, "duplicate value");
			mask |= 1u << e;
			pop(c, o);
		}
		*(unsigned *)dst = mask;
		return 0;
	}
	case T_NAME:
	case T_UUID: {
		if ((rc = dec_str(c, v, 0, f->max, &s, &len)))
			return rc;
		const char *p = f->type == T_NAME ? name_problem(s, len) : uuid_problem(s, len);
		if (p)
			return cerr(c, "%s", p);
		memcpy(dst, s, len + 1);
		return 0;
	}
	case T_TEXT:
	case T_PATH:
	case T_PATTERN: {
		if ((rc = dec_str(c, v, f->min, f->max, &s, &len)))
			return rc;
		const char *p = f->type == T_TEXT ? text_problem(s, len)
			      : f->type == T_PATH ? path_problem(s, len)
						  : pattern_problem(s, len);
		if (p)
			return cerr(c, "%s", p);
		char *d = strdup(s);
		if (!d)
			return cnomem(c);
		*(char **)dst = d;
		return 0;
	}
	case T_OBJ:
		return dec_struct(c, v, f->sub, dst, NULL);
	case T_OBJP: {
		const sdesc *sd = f->sub;
		void *q = calloc(1, sd->size);
		if (!q)
			return cnomem(c);
		*(void **)dst = q;
		return dec_struct(c, v, sd, q, NULL);
	}
	case T_ARR:
	case T_PATHARR:
	case T_UUIDARR: {
		if (!json_is_array(v))
			return cerr(c, "must be an array, not %s", jtype_name(v));
		size_t n = json_array_size(v);
		if (n < f->min || n > f->max)
			return count_err(c, f);
		if (n == 0)
			return 0;
		size_t esz = f->type == T_ARR ? ((const sdesc *)f->sub)->size
			   : f->type == T_PATHARR ? sizeof(char *) : sizeof(amb_uuid);
		char *arr = calloc(n, esz);
		if (!arr)
			return cnomem(c);
		*(char **)dst = arr;
		*(size_t *)(base + f->aux) = n;
		for (size_t i = 0; i < n; i++) {
			size_t o = push_index(c, i);
			json_t *ev = json_array_get(v, i);
			char *el = arr + i * esz;
			if (f->type == T_ARR) {
				rc = dec_struct(c, ev, f->sub, el, NULL);
			} else if (f->type == T_PATHARR) {
				fdesc pf = { .type = T_PATH, .min = 1, .max = AMB_PATH_MAX };
				rc = dec_field(c, ev, &pf, el);
			} else {
				fdesc uf = { .type = T_UUID, .min = AMB_UUID_LEN,
					     .max = AMB_UUID_LEN };
				rc = dec_field(c, ev, &uf, el);
			}
			if (rc)
				return rc;
			if (f->flags & F_UNIQUE) {
				for (size_t j = 0; j < i; j++) {
					char *prev = arr + j * esz;
					bool dup = f->type == T_ARR ? same_key(f->sub, prev, el)
						 : f->type == T_PATHARR
						   ? strcmp(*(char **)prev, *(char **)el) == 0
						   : strcmp(prev, el) == 0;
					if (dup)
						return cerr(c, "duplicate of element %zu", j);
				}
			}
			pop(c, o);
		}
		return 0;
	}
	}
	return cerr(c, "internal: unknown field type");
}

static bool in_list(const char *const *list, const char *key)
{
	for (; list && *list; list++)
		if (strcmp(*list, key) == 0)
			return true;
	return false;
}

static int dec_struct(dctx *c, json_t *obj, const sdesc *sd, void *out,
		      const char *const *extra)
{
	if (!json_is_object(obj))
		return cerr(c, "must be an object, not %s", jtype_name(obj));

	/* Unknown fields are refused (docs/protocol.md, "Strictness"). */
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v) {
		bool known = in_list(extra, key);
		for (size_t i = 0; !known && i < sd->nf; i++)
			known = strcmp(sd->f[i].key, key) == 0;
		if (!known) {
			char q[64];
			quote(key, q, sizeof(q));
			size_t o = push_key(c, q);
			int rc = cerr(c, "unknown field");
			pop(c, o);
			return rc;
		}
	}

	char *base = out;
	for (size_t i = 0; i < sd->nf; i++) {
		const fdesc *f = &sd->f[i];
		size_t o = push_key(c, f->key);
		v = json_object_get(obj, f->key);
		int rc = 0;
		if (!v) {
			if (f->flags & F_REQ)
				rc = cerr(c, "missing");
			else if (f->type == T_BOOL && !(f->flags & F_HAS))
				*(bool *)(base + f->off) = f->def != 0;
		} else {
			rc = dec_field(c, v, f, base);
		}
		if (rc)
			return rc;
		pop(c, o);
	}
	if (sd->check)
		return sd->check(c, out);
	return 0;
}

/* Nesting depth of the raw text, counted before the parser builds
 * anything: the schema is at most 8 deep, so [[[[... is refused cheaply. */
static bool depth_ok(const char *buf, size_t len, int maxd)
{
	int d = 0;
	bool in_str = false;
	for (size_t i = 0; i < len; i++) {
		char ch = buf[i];
		if (in_str) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_str = false;
		} else if (ch == '"') {
			in_str = true;
		} else if (ch == '{' || ch == '[') {
			if (++d > maxd)
				return false;
		} else if (ch == '}' || ch == ']') {
			/* a stray closer is a syntax error the parser stops at,
			 * before anything after it is nested */
			if (--d < 0)
				return true;
		}
	}
	return true;
}

static const char *const envelope_keys[] = { "kind", "id", NULL };

/* json -> message; on failure out->id keeps a readable id (see proto.h) */
static int dec_msg(dctx *c, json_t *root, amb_msg *out)
{
	memset(out, 0, sizeof(*out));
	if (!json_is_object(root))
		return cerr(c, "message must be a JSON object, not %s", jtype_name(root));

	uint64_t id = 0;
	json_t *jid = json_object_get(root, "id");
	size_t o = push_key(c, "id");
	if (jid && dec_uint(c, jid, 1, AMB_MAX_ID, &id))
		return c->rc;
	pop(c, o);
	out->id = id;

	o = push_key(c, "kind");
	json_t *jk = json_object_get(root, "kind");
	if (!jk)
		return cerr(c, "missing");
	const char *ks;
	size_t klen;
	if (dec_str(c, jk, 1, 64, &ks, &klen))
		return c->rc;
	long k = elookup(&et_kind, ks);
	if (k <= 0) {
		char q[64];
		return cerr(c, "unknown message kind \"%s\"", quote(ks, q, sizeof(q)));
	}
	pop(c, o);
	const kdesc *kd = &kinds[k];

	o = push_key(c, "id");
	if (kd->id == ID_REQ && !jid)
		return cerr(c, "missing");
	if (kd->id == ID_NONE && jid)
		return cerr(c, "not allowed in %s", ks);
	pop(c, o);

	out->kind = (amb_msg_kind)k;
	int rc = dec_struct(c, root, kd->sd, &out->u, envelope_keys);
	if (rc) {
		amb_msg_free(out);
		out->id = id;
	}
	return rc;
}

int amb_msg_decode(const char *buf, size_t len, amb_msg *out, char *err, size_t errlen)
{
	dctx c;
	ctx_init(&c, err, errlen, -EBADMSG);
	memset(out, 0, sizeof(*out));
	if (!buf || len == 0 || len > AMB_PROTO_MAX_MSG_LIMIT) {
		c.rc = -EMSGSIZE;
		return cerr(&c, "message size %zu not in 1..%u", buf ? len : 0,
			    AMB_PROTO_MAX_MSG_LIMIT);
	}
	if (!depth_ok(buf, len, AMB_PROTO_MAX_DEPTH))
		return cerr(&c, "json: nested deeper than %d levels", AMB_PROTO_MAX_DEPTH);

	json_error_t jerr;
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		/* jansson reports allocation failure only through its text */
		if (strstr(jerr.text, "out of memory"))
			return cnomem(&c);
		return cerr(&c, "json: %s at byte %d", jerr.text, jerr.position);
	}
	int rc = dec_msg(&c, root, out);
	json_decref(root);
	return rc;
}

/* ---------------------------------------------------------------------- */
/* encode                                                                  */

static int enc_struct(dctx *c, const sdesc *sd, const void *in, json_t *obj);

/* Set obj[key] = v, taking the reference; v == NULL means the value could
 * not be built (allocation or invalid UTF-8, told apart by the caller). */
static int put(dctx *c, json_t *obj, const char *key, json_t *v)
{
	if (!v)
		return cnomem(c);
	if (json_object_set_new(obj, key, v))
		return cnomem(c);
	return 0;
}

static int enc_string(dctx *c, const char *s, json_t **out)
{
	const char *p = text_problem(s, strlen(s));
	/* control characters are the validator's to report with the field
	 * name; only bytes json cannot carry stop the encoder here */
	if (p && strcmp(p, "invalid UTF-8") == 0)
		return cerr(c, "invalid UTF-8");
	*out = json_string(s);
	if (!*out)
		return cnomem(c);
	return 0;
}

static bool present(const fdesc *f, const char *base)
{
	const void *v = base + f->off;
	if (f->flags & F_REQ)
		return true;
	if (f->flags & F_HAS)
		return *(const bool *)(base + f->aux);
	switch (f->type) {
	case T_U32: return *(const uint32_t *)v != f->def;
	case T_U64: return *(const uint64_t *)v != f->def;
	case T_I32: return *(const int32_t *)v != (int32_t)f->def;
	case T_BOOL: return *(const bool *)v != (f->def != 0);
	case T_ENUM: return *(const int *)v != 0;
	case T_ENUMSET: return *(const unsigned *)v != 0;
	case T_NAME:
	case T_UUID: return *(const char *)v != '\0';
	case T_TEXT:
	case T_PATH:
	case T_PATTERN:
	case T_OBJP: return *(void *const *)v != NULL;
	case T_OBJ: return true;
	case T_ARR:
	case T_PATHARR:
	case T_UUIDARR: return *(const size_t *)(base + f->aux) != 0;
	}
	return false;
}

static int enc_field(dctx *c, const fdesc *f, const char *base, json_t **out)
{
	const void *v = base + f->off;
	*out = NULL;
	switch (f->type) {
	case T_U32:
		*out = json_integer((json_int_t)*(const uint32_t *)v);
		break;
	case T_U64: {
		uint64_t x = *(const uint64_t *)v;
		if (x > (uint64_t)INT64_MAX)
			return cerr(c, "out of range (0..%" PRIu64 ")", f->max);
		*out = json_integer((json_int_t)x);
		break;
	}
	case T_I32:
		*out = json_integer((json_int_t)*(const int32_t *)v);
		break;
	case T_BOOL:
		*out = json_boolean(*(const bool *)v);
		break;
	case T_ENUM: {
		const char *n = ename(f->sub, *(const int *)v);
		if (!n)
			return cerr(c, "invalid value %d", *(const int *)v);
		*out = json_string(n);
		break;
	}
	case T_ENUMSET: {
		unsigned mask = *(const unsigned *)v;
		const etab *t = f->sub;
		json_t *a = json_array();
		if (!a)
			return cnomem(c);
		for (unsigned b = 0; b < 32; b++) {
			if (!(mask & (1u << b)))
				continue;
			const char *n = ename(t, (long)b);
			if (!n) {
				json_decref(a);
				return cerr(c, "invalid value %u in mask", b);
			}
			if (json_array_append_new(a, json_string(n))) {
				json_decref(a);
				return cnomem(c);
			}
		}
		*out = a;
		return 0;
	}
	case T_NAME:
	case T_UUID: {
		size_t cap = f->type == T_NAME ? AMB_NAME_BUF : AMB_UUID_BUF;
		if (strnlen(v, cap) == cap)
			return cerr(c, "not NUL-terminated");
		return enc_string(c, v, out);
	}
	case T_TEXT:
	case T_PATH:
	case T_PATTERN: {
		const char *s = *(char *const *)v;
		if (!s)
			return 0;   /* required but NULL: the check says "missing" */
		if (strnlen(s, f->max + 1) > f->max)
			return cerr(c, "longer than %" PRIu64 " bytes", f->max);
		return enc_string(c, s, out);
	}
	case T_OBJ:
	case T_OBJP: {
		const void *q = f->type == T_OBJ ? v : *(void *const *)v;
		if (!q)
			return 0;
		json_t *o = json_object();
		if (!o)
			return cnomem(c);
		int rc = enc_struct(c, f->sub, q, o);
		if (rc) {
			json_decref(o);
			return rc;
		}
		*out = o;
		return 0;
	}
	case T_ARR:
	case T_PATHARR:
	case T_UUIDARR: {
		size_t n = *(const size_t *)(base + f->aux);
		const char *arr = *(char *const *)v;
		if (n > f->max)
			return count_err(c, f);
		if (n && !arr)
			return cerr(c, "%zu elements but no array", n);
		size_t esz = f->type == T_ARR ? ((const sdesc *)f->sub)->size
			   : f->type == T_PATHARR ? sizeof(char *) : sizeof(amb_uuid);
		json_t *a = json_array();
		if (!a)
			return cnomem(c);
		for (size_t i = 0; i < n; i++) {
			size_t o = push_index(c, i);
			const char *el = arr + i * esz;
			json_t *ev = NULL;
			int rc;
			if (f->type == T_ARR) {
				ev = json_object();
				rc = ev ? enc_struct(c, f->sub, el, ev) : cnomem(c);
			} else if (f->type == T_PATHARR) {
				const char *s = *(char *const *)el;
				rc = s ? enc_string(c, s, &ev) : cerr(c, "NULL path");
			} else {
				rc = strnlen(el, AMB_UUID_BUF) == AMB_UUID_BUF
				     ? cerr(c, "not NUL-terminated") : enc_string(c, el, &ev);
			}
			if (rc) {
				json_decref(ev);
				json_decref(a);
				return rc;
			}
			/* append_new consumes ev even when it fails */
			if (json_array_append_new(a, ev)) {
				json_decref(a);
				return cnomem(c);
			}
			pop(c, o);
		}
		*out = a;
		return 0;
	}
	}
	if (!*out)
		return cnomem(c);
	return 0;
}

static int enc_struct(dctx *c, const sdesc *sd, const void *in, json_t *obj)
{
	const char *base = in;
	for (size_t i = 0; i < sd->nf; i++) {
		const fdesc *f = &sd->f[i];
		if (!present(f, base))
			continue;
		size_t o = push_key(c, f->key);
		json_t *v = NULL;
		int rc = enc_field(c, f, base, &v);
		if (!rc && v)
			rc = put(c, obj, f->key, v);
		if (rc)
			return rc;
		pop(c, o);
	}
	return 0;
}

/* Build the JSON of *m and check it with the decoder.  *out is a new
 * reference on success. */
static int enc_msg(dctx *c, const amb_msg *m, json_t **out)
{
	*out = NULL;
	if (m->kind <= AMB_MSG_NONE || m->kind >= AMB_MSG_KIND_COUNT) {
		push_key(c, "kind");
		return cerr(c, "invalid message kind %d", (int)m->kind);
	}
	const kdesc *kd = &kinds[m->kind];
	json_t *root = json_object();
	if (!root)
		return cnomem(c);
	int rc = put(c, root, "kind", json_string(kind_names[m->kind]));
	if (!rc && (kd->id == ID_REQ || (kd->id == ID_OPT && m->id))) {
		if (m->id > AMB_MAX_ID) {
			push_key(c, "id");
			rc = cerr(c, "out of range (1..%" PRIu64 ")", AMB_MAX_ID);
		} else {
			rc = put(c, root, "id", json_integer((json_int_t)m->id));
		}
	}
	if (!rc)
		rc = enc_struct(c, kd->sd, &m->u, root);
	if (!rc) {
		/* the decoder's rules are the only rules */
		amb_msg tmp;
		c->plen = 0;
		c->path[0] = '\0';
		rc = dec_msg(c, root, &tmp);
		if (rc == -EBADMSG)
			rc = -EINVAL;
		amb_msg_free(&tmp);
	}
	if (rc) {
		json_decref(root);
		return rc;
	}
	*out = root;
	return 0;
}

int amb_msg_check(const amb_msg *m, char *err, size_t errlen)
{
	dctx c;
	ctx_init(&c, err, errlen, -EINVAL);
	json_t *root;
	int rc = enc_msg(&c, m, &root);
	if (!rc)
		json_decref(root);
	return rc;
}

int amb_msg_encode(const amb_msg *m, char **json, size_t *len)
{
	dctx c;
	ctx_init(&c, NULL, 0, -EINVAL);
	*json = NULL;
	*len = 0;
	json_t *root;
	int rc = enc_msg(&c, m, &root);
	if (rc)
		return rc;
	char *s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!s)
		return -ENOMEM;
	*json = s;
	*len = strlen(s);
	return 0;
}

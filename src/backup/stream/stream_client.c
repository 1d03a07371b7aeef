/*
 * stream_client.c - the client of the streaming backup (stream_client.h).
 *
 * The wire format is docs/stream.md (and the top of
 * src/store/tool/serve_stream.c): frames of a 4-byte big-endian length and
 * a body whose first byte says what it is: '{' JSON control message, 'P'
 * page batch, 'D' file data.  This file trusts nothing it receives: every
 * name, size, page number and count is checked before it touches the
 * destination directory, and every page's checksum is verified again.
 */
#include "backup/stream/stream_client.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "amber/proto.h"
#include "common/checksum.h"

#define FRAME_MAX (8u << 20)      /* the largest frame serve sends */
#define MAX_PGNO (1u << 30)       /* sanity bound on page numbers */
#define MAX_LOG_SIZE (1ull << 32) /* the engine's own bound on a log file */
#define FETCH_END 100             /* take_frame(): stream-end received */

enum conn_state {
	ST_OPEN,      /* stream-started received */
	ST_FETCHED,   /* stream-end received, every file stored */
	ST_BROKEN,    /* fetch failed: only complete(0) / close make sense */
	ST_COMPLETED, /* stream-complete sent */
};

struct amb_stream_conn {
	int fd;
	enum conn_state state;
	char dir[PATH_MAX];
	char type[16];
	char prefix[8];
	uint32_t page_size;
	int ndb;
	char dbnames[16][64];
};

static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static bool type_ok(const char *t)
{
	return t && (strcmp(t, "full") == 0 || strcmp(t, "copy") == 0 ||
	             strcmp(t, "incremental") == 0 || strcmp(t, "differential") == 0);
}

static bool logs_only(const amb_stream_conn *c)
{
	return strcmp(c->type, "incremental") == 0 || strcmp(c->type, "differential") == 0;
}

/* A database file name as restore.env allows it, and safe as a file name:
 * [A-Za-z0-9_-][A-Za-z0-9._-]*.edb, at most 63 bytes, no "..". */
static bool dbname_ok(const char *s)
{
	size_t n = strlen(s);
	if (n < 5 || n > 63 || strcmp(s + n - 4, ".edb") != 0 || s[0] == '.' || strstr(s, ".."))
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		      ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

static bool prefix_ok(const char *s)
{
	if (strlen(s) != 3)
		return false;
	for (int i = 0; i < 3; i++) {
		char ch = s[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		      ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

/* ------------------------------------------------------------ messages */

static int send_json(amb_stream_conn *c, json_t *o)
{
	if (!o)
		return -ENOMEM;
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		return -ENOMEM;
	int rc = amb_frame_write(c->fd, s, strlen(s));
	free(s);
	return rc;
}

/* Read one frame; a connection failure is turned into a message. */
static int recv_frame(amb_stream_conn *c, char **buf, size_t *len, char *err, size_t errlen)
{
	int rc = amb_frame_read(c->fd, FRAME_MAX, buf, len);
	if (rc == 0)
		return 0;
	if (rc == AMB_FRAME_EOF || rc == -EPROTO || rc == -ECONNRESET)
		return set_err(err, errlen, -ECONNRESET,
		               "%s: amber-store serve closed the connection in the middle of the stream",
		               c->dir);
	if (rc == -EAGAIN)
		return set_err(err, errlen, -ETIMEDOUT, "%s: amber-store serve sent nothing for %u s",
		               c->dir, AMB_STREAM_TIMEOUT_MS / 1000);
	if (rc == -EMSGSIZE || rc == -EBADMSG)
		return set_err(err, errlen, AMB_STREAM_FAILED,
		               "%s: protocol error: bad frame length from amber-store serve", c->dir);
	return set_err(err, errlen, rc, "%s: reading from amber-store serve: %s", c->dir,
	               strerror(-rc));
}

/* An {"kind":"error"} message as a return code. */
static int server_error(amb_stream_conn *c, json_t *o, char *err, size_t errlen)
{
	const char *cls = json_string_value(json_object_get(o, "class"));
	const char *msg = json_string_value(json_object_get(o, "message"));
	int rc = AMB_STREAM_FAILED;
	if (cls && strcmp(cls, "retryable") == 0)
		rc = AMB_STREAM_RETRY;
	else if (cls && strcmp(cls, "bad-input") == 0)
		rc = AMB_STREAM_BADINPUT;
	return set_err(err, errlen, rc, "%s: amber-store serve: %s", c->dir,
	               msg ? msg : "error without a message");
}

/* Parse a control frame: the JSON object and its kind, or a failure. */
static int parse_ctrl(amb_stream_conn *c, const char *body, json_t **out, const char **kind,
                      char *err, size_t errlen)
{
	json_error_t je;
	json_t *o = json_loads(body, JSON_REJECT_DUPLICATES, &je);
	*out = NULL;
	*kind = NULL;
	if (!o || !json_is_object(o) || !json_string_value(json_object_get(o, "kind"))) {
		json_decref(o);
		return set_err(err, errlen, AMB_STREAM_FAILED,
		               "%s: protocol error: malformed control message from amber-store serve",
		               c->dir);
	}
	*out = o;
	*kind = json_string_value(json_object_get(o, "kind"));
	return 0;
}

/* An unsigned integer field in [0, max]; -1 if missing or wrong. */
static int get_uint(json_t *o, const char *key, uint64_t max, uint64_t *v)
{
	json_t *j = json_object_get(o, key);
	if (!json_is_integer(j) || json_integer_value(j) < 0 || (uint64_t)json_integer_value(j) > max)
		return -1;
	*v = (uint64_t)json_integer_value(j);
	return 0;
}

/* ---------------------------------------------------------------- open */

static int connect_to(amb_stream_conn *c, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	int dfd = -1;
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
		/* too long for sun_path: reach it through the directory's fd */
		dfd = open(c->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0)
			return set_err(err, errlen, -errno, "%s: %s", c->dir, strerror(errno));
		snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/%s", dfd,
		         AMB_STREAM_SOCK_NAME);
	}
	int rc = 0;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		rc = set_err(err, errlen, -errno, "socket: %s", strerror(errno));
		goto out;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;
		if (e == ENOENT || e == ECONNREFUSED)
			rc = set_err(err, errlen, -e, "no amber-store serve is running for %s", c->dir);
		else
			rc = set_err(err, errlen, -e, "%s: connect: %s", path, strerror(e));
	}
out:
	if (dfd >= 0)
		close(dfd);
	return rc;
}

/* serve must run as root, as us, or as the owner of the instance. */
static int check_peer(amb_stream_conn *c, uid_t dir_owner, char *err, size_t errlen)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
		return set_err(err, errlen, -errno, "%s: SO_PEERCRED: %s", c->dir, strerror(errno));
	if (cr.uid == 0 || cr.uid == geteuid() || cr.uid == dir_owner)
		return 0;
	return set_err(err, errlen, -EPERM,
	               "%s/%s: the server runs as uid %ld, neither root, us, nor the owner of the "
	               "instance directory: refusing it",
	               c->dir, AMB_STREAM_SOCK_NAME, (long)cr.uid);
}

/* Check stream-started and keep what it announces. */
static int take_started(amb_stream_conn *c, json_t *o, char *err, size_t errlen)
{
	uint64_t ver = 0, ps = 0;
	const char *type = json_string_value(json_object_get(o, "type"));
	const char *prefix = json_string_value(json_object_get(o, "prefix"));
	json_t *dbs = json_object_get(o, "databases");
	if (get_uint(o, "version", 1000, &ver) || ver != 1)
		return set_err(err, errlen, AMB_STREAM_FAILED,
		               "%s: amber-store serve speaks another stream protocol version", c->dir);
	if (!type || strcmp(type, c->type) != 0 || !prefix || !prefix_ok(prefix) ||
	    get_uint(o, "page_size", 32768, &ps) || (ps != 4096 && ps != 8192 && ps != 32768) ||
	    !json_is_array(dbs) || json_array_size(dbs) < 1 || json_array_size(dbs) > 16)
		return set_err(err, errlen, AMB_STREAM_FAILED,
		               "%s: protocol error: malformed stream-started from amber-store serve",
		               c->dir);
	snprintf(c->prefix, sizeof(c->prefix), "%s", prefix);
	c->page_size = (uint32_t)ps;
	c->ndb = 0;
	for (size_t i = 0; i < json_array_size(dbs); i++) {
		const char *name = json_string_value(json_array_get(dbs, i));
		if (!name || !dbname_ok(name))
			return set_err(err, errlen, AMB_STREAM_FAILED,
			               "%s: amber-store serve announced a database name that is not "
			               "allowed: refusing it",
			               c->dir);
		for (int d = 0; d < c->ndb; d++)
			if (strcmp(c->dbnames[d], name) == 0)
				return set_err(err, errlen, AMB_STREAM_FAILED,
				               "%s: amber-store serve announced database %s twice", c->dir,
				               name);
		snprintf(c->dbnames[c->ndb], sizeof(c->dbnames[0]), "%s", name);
		c->ndb++;
	}
	return 0;
}

int amb_stream_open(const char *instance_dir, const char *type, amb_stream_conn **out,
                    char *err, size_t errlen)
{
	if (!out)
		return set_err(err, errlen, AMB_STREAM_BADINPUT, "NULL argument");
	*out = NULL;
	if (!instance_dir || !*instance_dir)
		return set_err(err, errlen, AMB_STREAM_BADINPUT, "no instance directory given");
	if (!type_ok(type))
		return set_err(err, errlen, AMB_STREAM_BADINPUT,
		               "backup type must be full, copy, incremental or differential, not %s",
		               type ? type : "(none)");
	amb_stream_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return set_err(err, errlen, -ENOMEM, "out of memory");
	c->fd = -1;
	int rc;
	char path[PATH_MAX + 32];
	if (strlen(instance_dir) >= sizeof(c->dir)) {
		rc = set_err(err, errlen, AMB_STREAM_BADINPUT, "%s: path too long", instance_dir);
		goto out_free;
	}
	snprintf(c->dir, sizeof(c->dir), "%s", instance_dir);
	snprintf(c->type, sizeof(c->type), "%s", type);
	snprintf(path, sizeof(path), "%s/%s", instance_dir, AMB_STREAM_SOCK_NAME);

	struct stat dst, sst;
	if (stat(instance_dir, &dst) != 0) {
		int e = errno;
		rc = set_err(err, errlen, AMB_STREAM_BADINPUT, "%s: %s", instance_dir, strerror(e));
		goto out_free;
	}
	if (!S_ISDIR(dst.st_mode)) {
		rc = set_err(err, errlen, AMB_STREAM_BADINPUT, "%s: not a directory", instance_dir);
		goto out_free;
	}
	if (lstat(path, &sst) != 0) {
		int e = errno;
		if (e == ENOENT)
			rc = set_err(err, errlen, -ENOENT, "no amber-store serve is running for %s",
			             instance_dir);
		else
			rc = set_err(err, errlen, -e, "%s: %s", path, strerror(e));
		goto out_free;
	}
	if (!S_ISSOCK(sst.st_mode)) {
		rc = set_err(err, errlen, -ENOTSOCK, "%s is not a socket%s: refusing it", path,
		             S_ISLNK(sst.st_mode) ? " (a symbolic link)" : "");
		goto out_free;
	}
	rc = connect_to(c, path, err, errlen);
	if (rc)
		goto out_close;
	rc = check_peer(c, dst.st_uid, err, errlen);
	if (rc)
		goto out_close;
	struct timeval tv = {.tv_sec = AMB_STREAM_TIMEOUT_MS / 1000};
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

	int wrc = send_json(c, json_pack("{s:s, s:i, s:s}", "kind", "stream-begin", "version", 1,
	                                 "type", type));
	if (wrc == -ENOMEM) {
		rc = set_err(err, errlen, -ENOMEM, "out of memory");
		goto out_close;
	}
	/* even if the write failed, serve may have answered (and closed):
	 * its answer says more than EPIPE */
	char *body = NULL;
	size_t len = 0;
	rc = recv_frame(c, &body, &len, err, errlen);
	if (rc) {
		if (wrc)
			rc = set_err(err, errlen, wrc, "%s: sending the request to amber-store serve: %s",
			             c->dir, strerror(-wrc));
		goto out_close;
	}
	json_t *o = NULL;
	const char *kind = NULL;
	if (body[0] != '{')
		rc = set_err(err, errlen, AMB_STREAM_FAILED,
		             "%s: protocol error: expected stream-started from amber-store serve",
		             c->dir);
	else
		rc = parse_ctrl(c, body, &o, &kind, err, errlen);
	free(body);
	if (!rc) {
		if (strcmp(kind, "error") == 0)
			rc = server_error(c, o, err, errlen);
		else if (strcmp(kind, "stream-started") == 0)
			rc = take_started(c, o, err, errlen);
		else
			rc = set_err(err, errlen, AMB_STREAM_FAILED,
			             "%s: protocol error: expected stream-started, got %s", c->dir, kind);
	}
	json_decref(o);
	if (rc)
		goto out_close;
	c->state = ST_OPEN;
	*out = c;
	return 0;
out_close:
	if (c->fd >= 0)
		close(c->fd);
out_free:
	free(c);
	return rc;
}

/* --------------------------------------------------------------- fetch */

/* A file being received. */
typedef struct rfile {
	bool open;
	char name[64];
	char tmp[72];
	int fd;
	/* databases */
	unsigned char *seen; /* bitmap of received page numbers */
	size_t seen_bytes;
	uint64_t npages;     /* received */
	uint32_t max_pgno;
	/* logs */
	uint32_t gen;
	uint64_t size, got;
} rfile;

typedef struct fetch {
	amb_stream_conn *c;
	int dfd;
	const char *dest;
	char *err;
	size_t errlen;
	rfile db[16];     /* the databases, open from their "file" to "file-end" */
	rfile log;        /* the log being received */
	char (*done)[64]; /* names stored, removed again on failure */
	size_t ndone, capdone;
	int ndb_started, ndb_done;
	bool any_log;
	uint32_t first_gen, last_gen;
	uint64_t pages, bytes;
} fetch;

static int fail(fetch *ft, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(fetch *ft, int rc, const char *fmt, ...)
{
	if (ft->err && ft->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(ft->err, ft->errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static int proto_fail(fetch *ft, const char *what)
{
	return fail(ft, AMB_STREAM_FAILED, "%s: protocol error from amber-store serve: %s",
	            ft->c->dir, what);
}

/* Forget a file, removing its temporary name. */
static void rfile_drop(fetch *ft, rfile *f)
{
	if (f->open) {
		if (f->fd >= 0)
			close(f->fd);
		unlinkat(ft->dfd, f->tmp, 0);
	}
	free(f->seen);
	memset(f, 0, sizeof(*f));
}

static int rfile_create(fetch *ft, rfile *f, const char *name)
{
	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(f->tmp, sizeof(f->tmp), "%s.part", name);
	f->fd = openat(ft->dfd, f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (f->fd < 0) {
		int e = errno;
		return fail(ft, -e, "%s/%s: %s", ft->dest, f->tmp, strerror(e));
	}
	f->open = true;
	return 0;
}

static int file_begin(fetch *ft, json_t *o)
{
	amb_stream_conn *c = ft->c;
	const char *role = json_string_value(json_object_get(o, "role"));
	const char *name = json_string_value(json_object_get(o, "name"));
	if (!role || !name)
		return proto_fail(ft, "file without role or name");
	if (ft->log.open)
		return proto_fail(ft, "a file starts inside a log file");
	if (strcmp(role, "database") == 0) {
		uint64_t db = 0, ps = 0;
		if (logs_only(c))
			return proto_fail(ft, "a database in a logs-only stream");
		if (ft->any_log)
			return proto_fail(ft, "a database after the logs");
		if (get_uint(o, "db", 15, &db) || (int)db >= c->ndb || strcmp(c->dbnames[db], name) != 0)
			return fail(ft, AMB_STREAM_FAILED,
			            "%s: amber-store serve sent a database name that was not announced: "
			            "refusing it",
			            c->dir);
		if ((int)db != ft->ndb_started)
			return proto_fail(ft, "databases out of order or sent twice");
		if (get_uint(o, "page_size", 32768, &ps) || ps != c->page_size)
			return proto_fail(ft, "page size differs from the announced one");
		int rc = rfile_create(ft, &ft->db[db], name);
		if (rc)
			return rc;
		ft->ndb_started++;
		return 0;
	}
	if (strcmp(role, "log") != 0)
		return proto_fail(ft, "unknown file role");
	uint64_t gen = 0, size = 0;
	char want[32];
	if (!logs_only(c) && ft->ndb_done != c->ndb)
		return proto_fail(ft, "a log before every database was received");
	if (get_uint(o, "gen", 0xFFFFFFFEu, &gen) || gen == 0 ||
	    get_uint(o, "size", MAX_LOG_SIZE, &size) || size == 0 || size % 4096 != 0)
		return proto_fail(ft, "log file without a valid generation or size");
	if (ft->any_log && gen != (uint64_t)ft->last_gen + 1)
		return proto_fail(ft, "log generations out of sequence");
	snprintf(want, sizeof(want), "%s%08X.log", c->prefix, (unsigned)gen);
	if (strcmp(name, want) != 0)
		return fail(ft, AMB_STREAM_FAILED,
		            "%s: amber-store serve sent a log name that is not %s: refusing it", c->dir,
		            want);
	int rc = rfile_create(ft, &ft->log, name);
	if (rc)
		return rc;
	ft->log.gen = (uint32_t)gen;
	ft->log.size = size;
	return 0;
}

/* Room for one more name in ft->done. */
static int done_reserve(fetch *ft)
{
	if (ft->ndone == ft->capdone) {
		size_t n = ft->capdone ? ft->capdone * 2 : 16;
		void *p = realloc(ft->done, n * sizeof(*ft->done));
		if (!p)
			return fail(ft, -ENOMEM, "out of memory");
		ft->done = p;
		ft->capdone = n;
	}
	return 0;
}

/* fsync, close, rename into place, fsync the directory.  On failure the
 * file stays in *f, whose rfile_drop() removes the temporary name. */
static int rfile_store(fetch *ft, rfile *f)
{
	if (done_reserve(ft) != 0)
		return -ENOMEM;
	if (fsync(f->fd) != 0) {
		int e = errno;
		return fail(ft, -e, "%s/%s: fsync: %s", ft->dest, f->tmp, strerror(e));
	}
	int fd = f->fd;
	f->fd = -1;
	if (close(fd) != 0) {
		int e = errno;
		return fail(ft, -e, "%s/%s: close: %s", ft->dest, f->tmp, strerror(e));
	}
	if (renameat(ft->dfd, f->tmp, ft->dfd, f->name) != 0) {
		int e = errno;
		return fail(ft, -e, "%s/%s: rename: %s", ft->dest, f->name, strerror(e));
	}
	snprintf(ft->done[ft->ndone++], sizeof(ft->done[0]), "%s", f->name);
	f->open = false; /* the temporary name is gone */
	if (fsync(ft->dfd) != 0) {
		int e = errno;
		return fail(ft, -e, "%s: fsync of the directory: %s", ft->dest, strerror(e));
	}
	return 0;
}

static int file_end(fetch *ft, json_t *o)
{
	amb_stream_conn *c = ft->c;
	const char *name = json_string_value(json_object_get(o, "name"));
	if (!name)
		return proto_fail(ft, "file-end without a name");
	if (ft->log.open) {
		rfile *f = &ft->log;
		uint64_t size = 0;
		if (strcmp(name, f->name) != 0)
			return proto_fail(ft, "file-end does not match the open log file");
		if (get_uint(o, "size", MAX_LOG_SIZE, &size) || size != f->size || f->got != f->size)
			return fail(ft, AMB_STREAM_FAILED, "%s: %s arrived incomplete", c->dir, f->name);
		int rc = rfile_store(ft, f);
		if (rc)
			return rc;
		if (!ft->any_log)
			ft->first_gen = f->gen;
		ft->any_log = true;
		ft->last_gen = f->gen;
		rfile_drop(ft, f);
		return 0;
	}
	int db = ft->ndb_done;
	if (db >= ft->ndb_started || strcmp(name, ft->db[db].name) != 0)
		return proto_fail(ft, "file-end does not match the next open database");
	rfile *f = &ft->db[db];
	uint64_t pages = 0;
	if (get_uint(o, "pages", MAX_PGNO, &pages) || pages < 2)
		return proto_fail(ft, "file-end without a valid page count");
	/* every page 0..pages-1 exactly once (duplicates were refused) */
	if (f->npages != pages || (uint64_t)f->max_pgno + 1 != pages)
		return fail(ft, AMB_STREAM_FAILED,
		            "%s: %s arrived incomplete: %llu pages received, %llu announced", c->dir,
		            f->name, (unsigned long long)f->npages, (unsigned long long)pages);
	if (ftruncate(f->fd, (off_t)(pages * c->page_size)) != 0) {
		int e = errno;
		return fail(ft, -e, "%s/%s: %s", ft->dest, f->tmp, strerror(e));
	}
	int rc = rfile_store(ft, f);
	if (rc)
		return rc;
	rfile_drop(ft, f);
	ft->ndb_done++;
	return 0;
}

/* Pages first..first+n-1 of f, whose bytes iov holds, in one write. */
static int write_run(fetch *ft, rfile *f, const struct iovec *iov, int n, uint32_t first)
{
	size_t ps = ft->c->page_size;
	ssize_t w = pwritev(f->fd, iov, n, (off_t)first * (off_t)ps);
	if (w != (ssize_t)((size_t)n * ps)) {
		int e = w < 0 ? errno : ENOSPC;
		return fail(ft, -e, "%s/%s: write of pages %u-%u: %s", ft->dest, f->tmp, first,
		            first + (uint32_t)n - 1, strerror(e));
	}
	return 0;
}

/* Pages in a row in a batch go to the file in one write: a batch of 4 MiB
 * is one system call, not 512. */
#define RUN_MAX 512

static int take_pages(fetch *ft, const unsigned char *b, size_t len)
{
	size_t ps = ft->c->page_size;
	if (len < 8)
		return proto_fail(ft, "malformed page batch");
	int db = b[1];
	if (db >= ft->ndb_started || db < ft->ndb_done || ft->log.open)
		return proto_fail(ft, "pages of a database that is not open");
	rfile *f = &ft->db[db];
	uint32_t count;
	memcpy(&count, b + 4, 4);
	count = le32toh(count);
	if (b[2] || b[3] || count == 0 || (len - 8) / (4 + ps) != count || (len - 8) % (4 + ps) != 0)
		return proto_fail(ft, "malformed page batch");
	const unsigned char *p = b + 8;
	struct iovec run[RUN_MAX];
	int nrun = 0, rc;
	uint32_t first = 0;
	for (uint32_t i = 0; i < count; i++, p += 4 + ps) {
		uint32_t pgno;
		memcpy(&pgno, p, 4);
		pgno = le32toh(pgno);
		if (pgno >= MAX_PGNO)
			return proto_fail(ft, "page number out of range");
		size_t byte = pgno / 8;
		if (byte >= f->seen_bytes) {
			size_t n = f->seen_bytes ? f->seen_bytes : 4096;
			while (n <= byte)
				n *= 2;
			unsigned char *sn = realloc(f->seen, n);
			if (!sn)
				return fail(ft, -ENOMEM, "out of memory");
			memset(sn + f->seen_bytes, 0, n - f->seen_bytes);
			f->seen = sn;
			f->seen_bytes = n;
		}
		unsigned char bit = (unsigned char)(1u << (pgno % 8));
		if (f->seen[byte] & bit)
			return fail(ft, AMB_STREAM_FAILED, "%s: %s: page %u arrived twice", ft->c->dir,
			            f->name, pgno);
		/* verified by serve; checked again so a fault on the way shows */
		if (amb_ck_check(p + 4, ps, pgno) != AMB_CK_OK)
			return fail(ft, AMB_STREAM_FAILED,
			            "%s: %s: page %u arrived damaged (checksum mismatch)", ft->c->dir,
			            f->name, pgno);
		f->seen[byte] |= bit;
		if (nrun && (nrun == RUN_MAX || pgno != first + (uint32_t)nrun)) {
			if ((rc = write_run(ft, f, run, nrun, first)) != 0)
				return rc;
			nrun = 0;
		}
		if (!nrun)
			first = pgno;
		run[nrun].iov_base = (void *)(p + 4);
		run[nrun++].iov_len = ps;
		f->npages++;
		if (pgno > f->max_pgno)
			f->max_pgno = pgno;
		ft->pages++;
		ft->bytes += ps;
	}
	return nrun ? write_run(ft, f, run, nrun, first) : 0;
}

static int take_data(fetch *ft, const unsigned char *b, size_t len)
{
	rfile *f = &ft->log;
	if (!f->open)
		return proto_fail(ft, "file data outside a log file");
	if (len <= 16)
		return proto_fail(ft, "empty data frame");
	for (int i = 1; i < 8; i++)
		if (b[i])
			return proto_fail(ft, "malformed data frame");
	uint64_t off;
	memcpy(&off, b + 8, 8);
	off = le64toh(off);
	size_t n = len - 16;
	if (off != f->got || n > f->size - f->got)
		return proto_fail(ft, "file data out of order or beyond the announced size");
	const unsigned char *p = b + 16;
	size_t done = 0;
	while (done < n) {
		ssize_t w = pwrite(f->fd, p + done, n - done, (off_t)(off + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = w < 0 ? errno : ENOSPC;
			return fail(ft, -e, "%s/%s: write: %s", ft->dest, f->tmp, strerror(e));
		}
		done += (size_t)w;
	}
	f->got += n;
	ft->bytes += n;
	return 0;
}

static int stream_end(fetch *ft, json_t *o, amb_stream_info *info)
{
	amb_stream_conn *c = ft->c;
	if (ft->log.open || ft->ndb_done != ft->ndb_started)
		return proto_fail(ft, "stream-end inside a file");
	uint64_t lo = 0, hi = 0, pages = 0, corr = 0, lcorr = 0, bytes = 0, ps = 0;
	const char *prefix = json_string_value(json_object_get(o, "prefix"));
	const char *sig = json_string_value(json_object_get(o, "log_signature"));
	if (get_uint(o, "gen_low", 0xFFFFFFFEu, &lo) || get_uint(o, "gen_high", 0xFFFFFFFEu, &hi) ||
	    get_uint(o, "pages", UINT64_MAX >> 12, &pages) ||
	    get_uint(o, "corrected", UINT64_MAX >> 12, &corr) ||
	    get_uint(o, "log_corrected", UINT64_MAX >> 12, &lcorr) ||
	    get_uint(o, "bytes", UINT64_MAX >> 12, &bytes) || get_uint(o, "page_size", 32768, &ps) ||
	    !prefix || strcmp(prefix, c->prefix) != 0 || ps != c->page_size)
		return proto_fail(ft, "malformed stream-end");
	if (!ft->any_log || lo == 0 || hi < lo || ft->first_gen != lo || ft->last_gen != hi)
		return fail(ft, AMB_STREAM_FAILED,
		            "%s: the logs received (0x%08X-0x%08X) are not the range serve announced "
		            "(0x%08llX-0x%08llX)",
		            c->dir, ft->any_log ? ft->first_gen : 0, ft->any_log ? ft->last_gen : 0,
		            (unsigned long long)lo, (unsigned long long)hi);
	if (!logs_only(c) && ft->ndb_done != c->ndb)
		return fail(ft, AMB_STREAM_FAILED, "%s: %d of %d databases received", c->dir,
		            ft->ndb_done, c->ndb);
	if (pages != ft->pages || bytes != ft->bytes)
		return fail(ft, AMB_STREAM_FAILED,
		            "%s: received %llu pages and %llu bytes, serve sent %llu and %llu", c->dir,
		            (unsigned long long)ft->pages, (unsigned long long)ft->bytes,
		            (unsigned long long)pages, (unsigned long long)bytes);
	if (info) {
		memset(info, 0, sizeof(*info));
		info->gen_low = (uint32_t)lo;
		info->gen_high = (uint32_t)hi;
		info->pages = pages;
		info->corrected = corr + lcorr;
		info->bytes = bytes;
		info->page_size = c->page_size;
		snprintf(info->prefix, sizeof(info->prefix), "%s", c->prefix);
		info->ndb = c->ndb;
		memcpy(info->dbnames, c->dbnames, sizeof(info->dbnames));
		if (sig && strlen(sig) == 32 && strspn(sig, "0123456789abcdef") == 32)
			snprintf(info->log_signature, sizeof(info->log_signature), "%s", sig);
	}
	return 0;
}

/* One frame: 0 go on, FETCH_END, or a failure code. */
static int take_frame(fetch *ft, char *body, size_t len, amb_stream_info *info)
{
	const unsigned char *b = (const unsigned char *)body;
	if (b[0] == 'P')
		return take_pages(ft, b, len);
	if (b[0] == 'D')
		return take_data(ft, b, len);
	if (b[0] != '{')
		return proto_fail(ft, "unknown frame");
	json_t *o;
	const char *kind;
	int rc = parse_ctrl(ft->c, body, &o, &kind, ft->err, ft->errlen);
	if (rc)
		return rc;
	if (strcmp(kind, "file") == 0) {
		rc = file_begin(ft, o);
	} else if (strcmp(kind, "file-end") == 0) {
		rc = file_end(ft, o);
	} else if (strcmp(kind, "stream-end") == 0) {
		rc = stream_end(ft, o, info);
		if (rc == 0)
			rc = FETCH_END;
	} else if (strcmp(kind, "error") == 0) {
		rc = server_error(ft->c, o, ft->err, ft->errlen);
	} else {
		rc = proto_fail(ft, "unexpected message");
	}
	json_decref(o);
	return rc;
}

int amb_stream_fetch(amb_stream_conn *c, const char *dest_dir, amb_stream_info *info,
                     amb_stream_progress cb, void *arg, char *err, size_t errlen)
{
	if (!c || !dest_dir)
		return set_err(err, errlen, AMB_STREAM_BADINPUT, "NULL argument");
	if (c->state != ST_OPEN)
		return set_err(err, errlen, AMB_STREAM_BADINPUT,
		               "amb_stream_fetch: the stream was already fetched or completed");
	fetch ft;
	memset(&ft, 0, sizeof(ft));
	ft.c = c;
	ft.dest = dest_dir;
	ft.err = err;
	ft.errlen = errlen;
	c->state = ST_BROKEN; /* until the end arrives */
	ft.dfd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ft.dfd < 0) {
		int e = errno;
		return set_err(err, errlen, e == ENOENT || e == ENOTDIR ? AMB_STREAM_BADINPUT : -e,
		               "%s: %s", dest_dir, strerror(e));
	}
	int rc;
	for (;;) {
		char *body = NULL;
		size_t len = 0;
		rc = recv_frame(c, &body, &len, err, errlen);
		if (rc)
			break;
		rc = take_frame(&ft, body, len, info);
		free(body);
		if (rc)
			break;
		if (cb)
			cb(arg, ft.bytes);
	}
	if (rc == FETCH_END) {
		rc = 0;
		c->state = ST_FETCHED;
		if (cb)
			cb(arg, ft.bytes);
	} else {
		/* nothing half-done stays behind */
		for (size_t i = 0; i < ft.ndone; i++)
			unlinkat(ft.dfd, ft.done[i], 0);
		if (ft.ndone)
			fsync(ft.dfd);
	}
	for (int d = 0; d < 16; d++)
		rfile_drop(&ft, &ft.db[d]);
	rfile_drop(&ft, &ft.log);
	free(ft.done);
	close(ft.dfd);
	return rc;
}

/* ------------------------------------------------------------ complete */

int amb_stream_complete(amb_stream_conn *c, int success, char *err, size_t errlen)
{
	if (!c)
		return set_err(err, errlen, AMB_STREAM_BADINPUT, "NULL argument");
	if (c->state == ST_COMPLETED)
		return set_err(err, errlen, AMB_STREAM_BADINPUT, "the stream was already completed");
	enum conn_state was = c->state;
	c->state = ST_COMPLETED;
	if (was != ST_FETCHED) {
		/* serve is still sending, or has already ended the stream after an
		 * error: closing the connection is what abandons it (serve records
		 * nothing and deletes no log) */
		if (success)
			return set_err(err, errlen, AMB_STREAM_BADINPUT,
			               "%s: the stream was not received completely: it cannot be "
			               "reported successful (nothing is recorded)",
			               c->dir);
		return 0;
	}
	int rc = send_json(c, json_pack("{s:s, s:b}", "kind", "stream-complete", "success",
	                                success != 0));
	if (rc)
		return set_err(err, errlen, rc == -EPIPE ? -ECONNRESET : rc,
		               "%s: sending stream-complete to amber-store serve: %s", c->dir,
		               strerror(-rc));
	char *body = NULL;
	size_t len = 0;
	rc = recv_frame(c, &body, &len, err, errlen);
	if (rc)
		return rc;
	json_t *o = NULL;
	const char *kind = NULL;
	if (body[0] != '{')
		rc = set_err(err, errlen, AMB_STREAM_FAILED,
		             "%s: protocol error: expected the answer to stream-complete", c->dir);
	else
		rc = parse_ctrl(c, body, &o, &kind, err, errlen);
	free(body);
	if (!rc) {
		if (strcmp(kind, "complete-ok") == 0)
			rc = 0;
		else if (strcmp(kind, "error") == 0)
			rc = server_error(c, o, err, errlen);
		else
			rc = set_err(err, errlen, AMB_STREAM_FAILED,
			             "%s: protocol error: expected complete-ok, got %s", c->dir, kind);
	}
	json_decref(o);
	return rc;
}

void amb_stream_close(amb_stream_conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

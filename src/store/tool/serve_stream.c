/*
 * serve_stream.c - the server side of the streaming backup (see
 * serve_stream.h; the protocol is docs/stream.md, summarised here).
 *
 * Transport: UNIX stream socket DIR/.amber-stream.sock, mode 0600.  Only
 * root and serve's own uid may talk to it (SO_PEERCRED).  Frames as in
 * amber's protocol (include/amber/proto.h): a 4-byte big-endian body length
 * L (1 <= L <= 8 MiB here), then L bytes.  The first body byte tells the
 * kind:
 *   '{'  a JSON object (control message, UTF-8, has "kind")
 *   'P'  page batch:  0 u8 'P' | 1 u8 database index | 2 2 bytes 0 |
 *        4 u32 LE count N |
 *        8 N times { u32 LE pgno | page_size bytes, the page as the engine
 *        verified it (a corrected single-bit error is already repaired) }
 *   'D'  file data:   0 u8 'D' | 1 7 bytes 0 | 8 u64 LE offset in the file |
 *        16 the bytes (at least one)
 *
 * Conversation (one stream per connection, one connection at a time):
 *   C: {"kind":"stream-begin","version":1,"type":"full"}
 *   S: {"kind":"stream-started","version":1,"type":..,"prefix":..,
 *       "page_size":..,"databases":[..]}                  or an error
 *   S: (full and copy only) for every database d in order
 *        {"kind":"file","role":"database","name":"priv1.edb","db":d,
 *         "page_size":8192}; then 'P' frames of any databases, in any
 *         order; then for every database {"kind":"file-end","name":..,
 *         "pages":N}   (every page 0..N-1 of it exactly once)
 *      per log generation gen_low..gen_high:
 *        {"kind":"file","role":"log","name":"E000000001A.log","gen":26,
 *         "size":S}, 'D' frames with offsets 0.., {"kind":"file-end",
 *         "name":..,"size":S}
 *      {"kind":"stream-end","type":..,"gen_low":..,"gen_high":..,"pages":..,
 *       "corrected":..,"log_corrected":..,"bytes":..,"prefix":..,
 *       "page_size":..,"databases":[..],"log_signature":"<32 hex>"}
 *   C: {"kind":"stream-complete","success":true|false}
 *   S: {"kind":"complete-ok","recorded":true|false,"gen_oldest":G} or error
 * An error is {"kind":"error","class":"failed|bad-input|retryable",
 * "code":N,"message":".."}; after it the server ends the stream and closes.
 *
 * Order of work for one stream: borrow the instance, ams_stream_begin(),
 * read pages with ams_stream_next() and send them in batches (no engine
 * lock is held between pages, so a slow client only slows the stream),
 * ams_stream_logs() when the engine asks for it (before the header pages),
 * verify and send every log of the range, wait for stream-complete, then
 * ams_stream_end() and, only on success, ams_backup_complete().  A client
 * that goes away, a damaged page, serve shutting down or a restore wanting
 * the instance all end the stream with nothing recorded and nothing
 * truncated.  Every wait on the socket is a poll() of at most SLICE_MS, so
 * stop and a waiting detach are noticed quickly; a peer that makes no
 * progress for IO_TIMEOUT_MS during the transfer, or sends no
 * stream-complete within COMPLETE_TIMEOUT_MS of stream-end, is dropped, so
 * a stalled client cannot keep freezes refused and logs kept for ever.
 */
#include "store/tool/serve_stream.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/vfs.h"
#include "store/log.h"

#define SS_PREFIX "amber-store serve: "
#define SLICE_MS 200
#define REQ_TIMEOUT_MS 10000u    /* the client's first message */
#define BUSY_TIMEOUT_MS 2000u    /* reading the request of a client told "busy" */
#define IO_TIMEOUT_MS 60000u     /* no progress on the socket: drop the client */
#define WANT_GRACE_MS 10000u     /* a restore waits this long for a frame to finish */
#define COMPLETE_TIMEOUT_MS 600000u /* stream-end to stream-complete: the client may
                                     * verify and catalogue what it received first */
#define CTRL_MAX (64u << 10)     /* largest control message we accept */
#define FRAME_MAX (8u << 20)     /* largest frame we send (docs/stream.md) */
#define BATCH_BYTES (4u << 20)   /* page batch frames */
#define DATA_CHUNK (4u << 20)    /* log data frames */
#define TMPDIR_NAME ".amber-stream.XXXXXX"

/* ================================================================ holder */

static pthread_mutex_t h_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t h_cond = PTHREAD_COND_INITIALIZER;
static ams_instance *h_inst;
static unsigned h_users;
static unsigned h_detaching;

void serve_instance_set(ams_instance *inst)
{
	pthread_mutex_lock(&h_mu);
	h_inst = inst;
	pthread_mutex_unlock(&h_mu);
}

ams_instance *serve_instance_get(void)
{
	pthread_mutex_lock(&h_mu);
	ams_instance *in = h_detaching ? NULL : h_inst;
	if (in)
		h_users++;
	pthread_mutex_unlock(&h_mu);
	return in;
}

void serve_instance_put(ams_instance *inst)
{
	if (!inst)
		return;
	pthread_mutex_lock(&h_mu);
	if (h_users > 0)
		h_users--;
	pthread_cond_broadcast(&h_cond);
	pthread_mutex_unlock(&h_mu);
}

bool serve_instance_wanted(void)
{
	pthread_mutex_lock(&h_mu);
	bool w = h_detaching > 0;
	pthread_mutex_unlock(&h_mu);
	return w;
}

ams_instance *serve_instance_detach(void)
{
	pthread_mutex_lock(&h_mu);
	h_detaching++;
	/* woken by every put; the borrowers poll serve_instance_wanted() */
	while (h_users > 0)
		pthread_cond_wait(&h_cond, &h_mu);
	ams_instance *in = h_inst;
	h_inst = NULL;
	h_detaching--;
	pthread_mutex_unlock(&h_mu);
	return in;
}

void serve_instance_attach(ams_instance *inst)
{
	serve_instance_set(inst);
}

/* ============================================================== listener */

struct serve_stream {
	char dir[PATH_MAX];
	int dirfd;           /* the instance directory (names are relative to it) */
	int lfd;             /* listening socket */
	dev_t sock_dev;      /* the socket file we made, to remove only ours */
	ino_t sock_ino;
	bool quiet;
	atomic_bool stop;

	pthread_t acceptor;
	bool acceptor_started;

	pthread_mutex_t mu;  /* guards the fields below */
	pthread_cond_t idle;
	bool busy;           /* a worker serves a stream */
	bool worker_joinable;
	pthread_t worker;
	int worker_fd;       /* handed to the worker */
};

static void ss_log(serve_stream *ss, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ss_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void ss_log(serve_stream *ss, const char *fmt, ...)
{
	if (ss->quiet)
		return;
	va_list ap;
	va_start(ap, fmt);
	fputs(SS_PREFIX, stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void ss_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(SS_PREFIX, stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A path for bind(2) that reaches NAME inside ss->dirfd: DIR/NAME when it
 * fits sun_path, else through /proc/self/fd.  Returns 0 or -ENAMETOOLONG. */
static int sock_addr(const serve_stream *ss, const char *name, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	int n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s", ss->dir, name);
	if (n > 0 && (size_t)n < sizeof(sa->sun_path))
		return 0;
	n = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", ss->dirfd, name);
	if (n > 0 && (size_t)n < sizeof(sa->sun_path))
		return 0;
	return -ENAMETOOLONG;
}

/* Remove a stale socket at NAME in dirfd; anything else there is refused.
 * Returns 0, or -1 after printing why. */
static int clear_stale(serve_stream *ss, const char *name)
{
	struct stat st;
	if (fstatat(ss->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		if (errno == ENOENT)
			return 0;
		ss_warn("%s/%s: %s", ss->dir, name, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		ss_warn("%s/%s exists and is not a socket (%s): refusing to replace it; remove it "
		        "to enable streaming backups",
		        ss->dir, name, S_ISLNK(st.st_mode) ? "a symbolic link" : "some other file");
		return -1;
	}
	/* serve holds the instance lock, so no other serve of this instance can
	 * be listening there: the socket is a killed serve's leftover */
	if (unlinkat(ss->dirfd, name, 0) != 0 && errno != ENOENT) {
		ss_warn("%s/%s: cannot remove the stale socket: %s", ss->dir, name, strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Make the listening socket without a moment at which another user could
 * connect to it or swap the name: bind inside a fresh private directory
 * (mkdtemp: mode 0700), chmod 0600 there, then rename into place.
 */
static int make_socket(serve_stream *ss)
{
	if (clear_stale(ss, SERVE_STREAM_SOCK_NAME) != 0)
		return -1;
	struct sockaddr_un sa;
	char tmpl[64];
	snprintf(tmpl, sizeof(tmpl), "%s", TMPDIR_NAME);
	char base[PATH_MAX + 32];
	int n = snprintf(base, sizeof(base), "%s/%s", ss->dir, tmpl);
	if (n < 0 || (size_t)n >= sizeof(base)) {
		ss_warn("%s: path too long", ss->dir);
		return -1;
	}
	if (!mkdtemp(base)) {
		ss_warn("%s: cannot make a private directory for the stream socket: %s", ss->dir,
		        strerror(errno));
		return -1;
	}
	const char *tdir = strrchr(base, '/') + 1;
	char rel[96];
	snprintf(rel, sizeof(rel), "%s/%s", tdir, SERVE_STREAM_SOCK_NAME);
	int rc = -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ss_warn("socket: %s", strerror(errno));
		goto out_rmdir;
	}
	if (sock_addr(ss, rel, &sa) != 0) {
		ss_warn("%s: path too long for a UNIX socket", ss->dir);
		goto out_close;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		ss_warn("%s/%s: bind: %s", ss->dir, rel, strerror(errno));
		goto out_close;
	}
	if (fchmodat(ss->dirfd, rel, 0600, 0) != 0) {
		ss_warn("%s/%s: chmod: %s", ss->dir, rel, strerror(errno));
		goto out_unlink;
	}
	if (renameat(ss->dirfd, rel, ss->dirfd, SERVE_STREAM_SOCK_NAME) != 0) {
		ss_warn("%s/%s: rename: %s", ss->dir, SERVE_STREAM_SOCK_NAME, strerror(errno));
		goto out_unlink;
	}
	struct stat st;
	if (fstatat(ss->dirfd, SERVE_STREAM_SOCK_NAME, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !S_ISSOCK(st.st_mode)) {
		ss_warn("%s/%s: vanished after it was made", ss->dir, SERVE_STREAM_SOCK_NAME);
		goto out_close;
	}
	ss->sock_dev = st.st_dev;
	ss->sock_ino = st.st_ino;
	if (listen(fd, 8) != 0) {
		ss_warn("%s/%s: listen: %s", ss->dir, SERVE_STREAM_SOCK_NAME, strerror(errno));
		unlinkat(ss->dirfd, SERVE_STREAM_SOCK_NAME, 0);
		goto out_close;
	}
	ss->lfd = fd;
	fd = -1;
	rc = 0;
	goto out_close;
out_unlink:
	unlinkat(ss->dirfd, rel, 0);
out_close:
	if (fd >= 0)
		close(fd);
out_rmdir:
	unlinkat(ss->dirfd, tdir, AT_REMOVEDIR);
	return rc;
}

/* Remove the socket file if it is still the one we made. */
static void remove_socket(serve_stream *ss)
{
	struct stat st;
	if (fstatat(ss->dirfd, SERVE_STREAM_SOCK_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    st.st_dev == ss->sock_dev && st.st_ino == ss->sock_ino)
		unlinkat(ss->dirfd, SERVE_STREAM_SOCK_NAME, 0);
}

/* ============================================================ socket I/O */

/* One client connection. */
typedef struct sconn {
	serve_stream *ss;
	int fd;
	ams_instance *inst; /* borrowed while a stream runs */
	bool broken;        /* a frame was cut: nothing more may be sent */
} sconn;

/* -ECANCELED when serve stops or a restore wants the instance (checked
 * between frames, so that the client can still be told why). */
static int cancelled(const sconn *c)
{
	if (atomic_load(&c->ss->stop))
		return -ECANCELED;
	if (c->inst && serve_instance_wanted())
		return -ECANCELED;
	return 0;
}

/*
 * Wait for @p ev on the socket until @p deadline (CLOCK_MONOTONIC ms).
 * Inside a frame being sent (@p mid_send) a waiting restore is given
 * WANT_GRACE_MS for the frame to finish, so the stream can stop at the next
 * frame boundary and say why; a client that reads nothing in that time is
 * cut off.  Stopping serve cuts at once.
 */
static int io_wait(const sconn *c, short ev, uint64_t deadline, bool mid_send)
{
	uint64_t wanted_since = 0;
	for (;;) {
		if (atomic_load(&c->ss->stop))
			return -ECANCELED;
		uint64_t now = mono_ms();
		if (c->inst && serve_instance_wanted()) {
			if (!mid_send)
				return -ECANCELED;
			if (!wanted_since)
				wanted_since = now;
			else if (now - wanted_since >= WANT_GRACE_MS)
				return -ECANCELED;
		}
		if (now >= deadline)
			return -ETIMEDOUT;
		uint64_t left = deadline - now;
		struct pollfd p = {.fd = c->fd, .events = ev};
		int n = poll(&p, 1, left > SLICE_MS ? SLICE_MS : (int)left);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			return 0; /* ready, or HUP/ERR: the next call says which */
	}
}

static int send_all(const sconn *c, const void *buf, size_t len, bool mid_send)
{
	const unsigned char *p = buf;
	uint64_t deadline = mono_ms() + IO_TIMEOUT_MS;
	while (len > 0) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			deadline = mono_ms() + IO_TIMEOUT_MS;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			int rc = io_wait(c, POLLOUT, deadline, mid_send);
			if (rc)
				return rc;
			continue;
		}
		return n < 0 ? -errno : -EPIPE;
	}
	return 0;
}

/* Read exactly len bytes.  Returns 0, 1 (end of file before the first
 * byte), -EPROTO (end of file inside), -ETIMEDOUT, -ECANCELED, -errno. */
static int recv_all(const sconn *c, void *buf, size_t len, unsigned timeout_ms)
{
	unsigned char *p = buf;
	size_t got = 0;
	uint64_t deadline = mono_ms() + timeout_ms;
	while (got < len) {
		ssize_t n = recv(c->fd, p + got, len - got, MSG_DONTWAIT);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0)
			return got == 0 ? 1 : -EPROTO;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int rc = io_wait(c, POLLIN, deadline, false);
		if (rc)
			return rc;
	}
	return 0;
}

/* A frame goes whole or the connection is marked broken. */
static int send_frame(sconn *c, const void *body, size_t len)
{
	if (c->broken)
		return -EPIPE;
	if (len == 0 || len > FRAME_MAX)
		return -EMSGSIZE;
	int rc = cancelled(c);
	if (rc)
		return rc;
	uint32_t be = htobe32((uint32_t)len);
	rc = send_all(c, &be, sizeof(be), true);
	if (!rc)
		rc = send_all(c, body, len, true);
	if (rc)
		c->broken = true;
	return rc;
}

/* One frame of at most CTRL_MAX bytes, NUL-terminated in *out (free it).
 * Returns 0, 1 (peer closed between frames) or a negative code. */
static int recv_ctrl(const sconn *c, unsigned timeout_ms, char **out)
{
	*out = NULL;
	uint32_t be;
	int rc = recv_all(c, &be, sizeof(be), timeout_ms);
	if (rc)
		return rc;
	uint32_t len = be32toh(be);
	if (len == 0 || len > CTRL_MAX)
		return -EMSGSIZE;
	char *buf = malloc((size_t)len + 1);
	if (!buf)
		return -ENOMEM;
	rc = recv_all(c, buf, len, timeout_ms);
	if (rc) {
		free(buf);
		return rc == 1 ? -EPROTO : rc;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

/* Send a JSON object and drop the reference. */
static int send_json(sconn *c, json_t *obj)
{
	if (!obj)
		return -ENOMEM;
	char *s = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (!s)
		return -ENOMEM;
	int rc = send_frame(c, s, strlen(s));
	free(s);
	return rc;
}

static void send_error(sconn *c, const char *cls, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void send_error(sconn *c, const char *cls, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* best effort: the client may be gone, which is why we are here */
	send_json(c, json_pack("{s:s, s:s, s:i, s:s}", "kind", "error", "class", cls, "code", code,
	                       "message", msg));
}

static const char *io_text(int rc)
{
	switch (rc) {
	case 1:
	case -EPROTO:
	case -EPIPE:
	case -ECONNRESET:
		return "the client closed the connection";
	case -ETIMEDOUT:
		return "the client timed out";
	case -EMSGSIZE:
		return "the client sent an oversized frame";
	default:
		return strerror(-rc);
	}
}

/* ============================================================ one stream */

static const char *const type_names[] = {NULL, "full", "incremental", "differential", "copy"};

static int type_parse(const char *s)
{
	for (int t = AMS_BACKUP_FULL; t <= AMS_BACKUP_COPY; t++)
		if (strcmp(s, type_names[t]) == 0)
			return t;
	return 0;
}

/* Parse the request: {"kind":"stream-begin","type":T[,"version":1]}.
 * Returns the backup type, or 0 with why[] filled. */
static int parse_request(const char *body, char *why, size_t whylen)
{
	json_error_t je;
	json_t *o = json_loads(body, JSON_REJECT_DUPLICATES, &je);
	int type = 0;
	if (!o || !json_is_object(o)) {
		snprintf(why, whylen, "the request is not a JSON object%s%s", o ? "" : ": ",
		         o ? "" : je.text);
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v) {
		if (strcmp(key, "kind") != 0 && strcmp(key, "type") != 0 &&
		    strcmp(key, "version") != 0) {
			snprintf(why, whylen, "unknown field \"%.64s\" in the request", key);
			goto out;
		}
	}
	const char *kind = json_string_value(json_object_get(o, "kind"));
	if (!kind || strcmp(kind, "stream-begin") != 0) {
		snprintf(why, whylen, "expected a \"stream-begin\" request");
		goto out;
	}
	json_t *ver = json_object_get(o, "version");
	if (ver && (!json_is_integer(ver) || json_integer_value(ver) != 1)) {
		snprintf(why, whylen, "protocol version not supported (this server speaks 1)");
		goto out;
	}
	const char *ts = json_string_value(json_object_get(o, "type"));
	if (!ts || !(type = type_parse(ts)))
		snprintf(why, whylen, "\"type\" must be full, copy, incremental or differential");
out:
	json_decref(o);
	return type;
}

/* The database file names of the instance. */
typedef struct dbnames {
	int n;
	char name[16][64];
} dbnames;

static int get_dbnames(ams_instance *in, int ndb, dbnames *out)
{
	out->n = 0;
	for (int d = 0; d < ndb && d < 16; d++) {
		const char *p = ams_db_path(in, d);
		if (!p)
			return -1;
		const char *b = strrchr(p, '/');
		b = b ? b + 1 : p;
		if (strlen(b) >= sizeof(out->name[0]))
			return -1;
		snprintf(out->name[d], sizeof(out->name[0]), "%s", b);
		out->n++;
	}
	return out->n == ndb ? 0 : -1;
}

static json_t *dbnames_json(const dbnames *dn)
{
	json_t *a = json_array();
	for (int d = 0; a && d < dn->n; d++)
		json_array_append_new(a, json_string(dn->name[d]));
	return a;
}

/* State of one stream. */
typedef struct sjob {
	sconn *c;
	int type;
	ams_stream *s;
	ams_info info;
	dbnames dn;
	uint32_t gen_low, gen_high;
	int logs_done;
	uint64_t pages, bytes, log_corrected;
	char sig_hex[33];
	unsigned char *batch;
	int batch_db;         /* the database of the pages in the batch */
	size_t batch_len;
	uint32_t batch_count;
	uint32_t batch_max;
	/* the first failure, told to the client once the instance is given
	 * back (a restore waiting for it need not wait for the client) */
	bool failed, fail_io;
	const char *fail_cls;
	int fail_code;
	char fail_msg[1024];
	json_t *reply;        /* the answer to stream-complete */
} sjob;

/* Note a failure (logged now, told to the client at the end) and return
 * -1.  io: the socket failed, so the client cannot be told. */
static int job_fail(sjob *j, int io, const char *cls, int code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int job_fail(sjob *j, int io, const char *cls, int code, const char *fmt, ...)
{
	if (j->failed)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->fail_msg, sizeof(j->fail_msg), fmt, ap);
	va_end(ap);
	ss_warn("streaming %s backup failed: %s", type_names[j->type], j->fail_msg);
	j->failed = true;
	j->fail_io = io;
	j->fail_cls = cls;
	j->fail_code = code;
	return -1;
}

/* The socket wait ended without the client: why, as a failure. */
static int job_io_fail(sjob *j, int rc)
{
	if (rc == -ECANCELED) {
		const char *why = atomic_load(&j->c->ss->stop) ? "amber-store serve is shutting down"
		                                                : "the instance is being closed for "
		                                                  "a restore";
		return job_fail(j, 0, "retryable", AMS_EBUSY, "%s: try again later", why);
	}
	return job_fail(j, 1, "failed", 0, "%s", io_text(rc));
}

static int flush_batch(sjob *j)
{
	if (j->batch_count == 0)
		return 0;
	uint32_t le = htole32(j->batch_count);
	j->batch[0] = 'P';
	j->batch[1] = (unsigned char)j->batch_db;
	j->batch[2] = j->batch[3] = 0;
	memcpy(j->batch + 4, &le, 4);
	int rc = send_frame(j->c, j->batch, j->batch_len);
	j->batch_count = 0;
	j->batch_len = 8;
	return rc ? job_io_fail(j, rc) : 0;
}

static int logs_now(sjob *j)
{
	int rc = ams_stream_logs(j->s, &j->gen_low, &j->gen_high);
	if (rc)
		return job_fail(j, 0, rc == AMS_EBUSY ? "retryable" : "failed", rc,
		                "rolling the log: %s", ams_errmsg());
	j->logs_done = 1;
	return 0;
}

/* Every page of every database (full and copy), the logs asked for on the
 * way (the engine wants them before the header pages).  The databases'
 * files are announced first and ended last, so that the pages may come in
 * any order of databases. */
static int stream_pages(sjob *j)
{
	uint64_t count[16] = {0};
	size_t ps = j->info.page_size;
	bool with_pages = j->type == AMS_BACKUP_FULL || j->type == AMS_BACKUP_COPY;
	for (int d = 0; with_pages && d < j->dn.n; d++) {
		int rc = send_json(j->c, json_pack("{s:s, s:s, s:s, s:i, s:I}", "kind", "file", "role",
		                                   "database", "name", j->dn.name[d], "db", d,
		                                   "page_size", (json_int_t)ps));
		if (rc)
			return job_io_fail(j, rc);
	}
	for (;;) {
		int rc = cancelled(j->c);
		if (rc)
			return job_io_fail(j, rc);
		int db;
		uint32_t pgno;
		unsigned char *slot = j->batch + j->batch_len;
		rc = ams_stream_next(j->s, &db, &pgno, slot + 4);
		if (rc == 0)
			break;
		if (rc == AMS_EINVAL && !j->logs_done) {
			if (flush_batch(j) || logs_now(j))
				return -1;
			continue;
		}
		if (rc < 0)
			return job_fail(j, 0, "failed", rc, "%s", ams_errmsg());
		if (!with_pages || db < 0 || db >= j->dn.n)
			return job_fail(j, 0, "failed", AMS_EINVAL, "the engine streamed a page of "
			                "database %d in a %s backup", db, type_names[j->type]);
		if (j->batch_count > 0 && db != j->batch_db) {
			/* a batch holds one database: send the others' pages first,
			 * keeping this page (it sits in the buffer's free slot) */
			unsigned char *keep = malloc(ps);
			if (!keep)
				return job_fail(j, 0, "failed", AMS_ENOMEM, "out of memory");
			memcpy(keep, slot + 4, ps);
			rc = flush_batch(j);
			slot = j->batch + j->batch_len;
			memcpy(slot + 4, keep, ps);
			free(keep);
			if (rc)
				return -1;
		}
		j->batch_db = db;
		uint32_t le = htole32(pgno);
		memcpy(slot, &le, 4);
		j->batch_len += 4 + ps;
		j->batch_count++;
		count[db]++;
		j->pages++;
		j->bytes += ps;
		if (j->batch_count == j->batch_max && flush_batch(j))
			return -1;
	}
	if (flush_batch(j))
		return -1;
	for (int d = 0; with_pages && d < j->dn.n; d++) {
		int rc = send_json(j->c, json_pack("{s:s, s:s, s:I}", "kind", "file-end", "name",
		                                   j->dn.name[d], "pages", (json_int_t)count[d]));
		if (rc)
			return job_io_fail(j, rc);
	}
	return 0;
}

/* Header of generation gen+1 (archived, or the current <prefix>.log). */
static int next_hdr(sjob *j, uint32_t gen, amb_loghdr *h)
{
	const char *dir = j->c->ss->dir;
	char path[PATH_MAX];
	for (int attempt = 0; attempt < 3; attempt++) {
		amb_log_path(path, sizeof(path), dir, j->info.prefix, gen + 1);
		int rc = amb_loghdr_load(amb_vfs_posix(), path, h);
		if (rc != AMS_ENOTFOUND)
			return rc;
		amb_log_path(path, sizeof(path), dir, j->info.prefix, 0);
		rc = amb_loghdr_load(amb_vfs_posix(), path, h);
		if (rc == 0 && h->gen == gen + 1)
			return 0;
		/* rolled in between: look again for the archived name */
	}
	return AMS_ENOTFOUND;
}

/* Verify log generation gen (whole file, against its neighbours) and send
 * it.  prev: the previous generation's header and end, NULL for the first. */
static int send_log(sjob *j, uint32_t gen, amb_logfile *lf, const amb_logfile *prev)
{
	char path[PATH_MAX], name[32];
	amb_log_path(path, sizeof(path), j->c->ss->dir, j->info.prefix, gen);
	snprintf(name, sizeof(name), "%s%08X.log", j->info.prefix, gen);
	int rc = amb_log_load(amb_vfs_posix(), path, lf);
	if (rc)
		return job_fail(j, 0, "failed", rc, "log generation %u: %s", gen, ams_errmsg());
	const amb_logscan *s = &lf->scan;
	if (s->hdr.gen != gen)
		return job_fail(j, 0, "failed", AMS_ECORRUPT, "%s holds generation %u", path, s->hdr.gen);
	if (s->damaged) {
		char why[160];
		return job_fail(j, 0, "failed", AMS_ECORRUPT, "%s: %s", path,
		                amb_logscan_damage(s, why, sizeof(why)));
	}
	if (prev) {
		const amb_logscan *p = &prev->scan;
		if (memcmp(&p->hdr.sign_log, &s->hdr.sign_log, sizeof(amb_sig)) != 0)
			return job_fail(j, 0, "failed", AMS_EBADSIG,
			                "%s: log signature differs from generation %u's", path, gen - 1);
		if (s->hdr.prev_create_time != p->hdr.create_time || s->hdr.start_lsn != p->end_lsn)
			return job_fail(j, 0, "failed", AMS_ECORRUPT,
			                "%s: does not follow generation %u (damaged at segment %u of "
			                "generation %u?)",
			                path, gen - 1, p->first_bad ? p->first_bad : p->valid_segs + 1,
			                gen - 1);
	} else {
		static const char hex[] = "0123456789abcdef";
		for (int i = 0; i < 16; i++) {
			j->sig_hex[2 * i] = hex[s->hdr.sign_log.random[i] >> 4];
			j->sig_hex[2 * i + 1] = hex[s->hdr.sign_log.random[i] & 15];
		}
		j->sig_hex[32] = '\0';
	}
	if (gen == j->gen_high) {
		/* the last one must reach where the next (current) one starts */
		amb_loghdr nh;
		rc = next_hdr(j, gen, &nh);
		if (rc)
			return job_fail(j, 0, "failed", rc, "log generation %u: %s", gen + 1, ams_errmsg());
		if (nh.prev_create_time != s->hdr.create_time || nh.start_lsn != s->end_lsn)
			return job_fail(j, 0, "failed", AMS_ECORRUPT,
			                "%s: damaged at segment %u (generation %u does not follow it)", path,
			                s->first_bad ? s->first_bad : s->valid_segs + 1, gen + 1);
	}
	j->log_corrected += s->corrected;

	rc = send_json(j->c, json_pack("{s:s, s:s, s:s, s:I, s:I}", "kind", "file", "role", "log",
	                               "name", name, "gen", (json_int_t)gen, "size",
	                               (json_int_t)lf->size));
	if (rc)
		return job_io_fail(j, rc);
	for (size_t off = 0; off < lf->size;) {
		rc = cancelled(j->c);
		if (rc)
			return job_io_fail(j, rc);
		size_t n = lf->size - off;
		if (n > DATA_CHUNK)
			n = DATA_CHUNK;
		/* the batch buffer is free now: header + chunk fit in it */
		uint64_t le = htole64((uint64_t)off);
		memset(j->batch, 0, 8);
		j->batch[0] = 'D';
		memcpy(j->batch + 8, &le, 8);
		memcpy(j->batch + 16, lf->buf + off, n);
		rc = send_frame(j->c, j->batch, 16 + n);
		if (rc)
			return job_io_fail(j, rc);
		off += n;
	}
	j->bytes += lf->size;
	rc = send_json(j->c, json_pack("{s:s, s:s, s:I}", "kind", "file-end", "name", name, "size",
	                               (json_int_t)lf->size));
	return rc ? job_io_fail(j, rc) : 0;
}

static int stream_logs(sjob *j)
{
	amb_logfile lf[2];
	memset(lf, 0, sizeof(lf));
	int rc = 0, cur = 0;
	for (uint32_t g = j->gen_low; g <= j->gen_high && !rc; g++) {
		rc = send_log(j, g, &lf[cur], g == j->gen_low ? NULL : &lf[cur ^ 1]);
		amb_log_free(&lf[cur ^ 1]);
		cur ^= 1;
		if (g == UINT32_MAX - 1)
			break;
	}
	amb_log_free(&lf[0]);
	amb_log_free(&lf[1]);
	return rc;
}

/* Wait for {"kind":"stream-complete","success":B}.  Returns 1 success,
 * 0 failure said by the client, -1 no usable answer (logged). */
static int wait_complete(sjob *j)
{
	char *body = NULL;
	int rc = recv_ctrl(j->c, COMPLETE_TIMEOUT_MS, &body);
	if (rc) {
		if (rc == -ECANCELED)
			job_io_fail(j, rc);
		else
			ss_warn("streaming %s backup: no stream-complete from the client (%s): nothing "
			        "recorded",
			        type_names[j->type], io_text(rc));
		return -1;
	}
	json_t *o = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
	free(body);
	const char *kind = json_string_value(json_object_get(o, "kind"));
	json_t *succ = json_object_get(o, "success");
	int res = -1;
	if (o && json_is_object(o) && json_object_size(o) == 2 && kind &&
	    strcmp(kind, "stream-complete") == 0 && json_is_boolean(succ))
		res = json_is_true(succ) ? 1 : 0;
	json_decref(o);
	if (res < 0)
		job_fail(j, 0, "bad-input", AMS_EINVAL,
		         "expected {\"kind\":\"stream-complete\",\"success\":true|false}: "
		         "nothing recorded");
	return res;
}

/* The stream is over (the instance given back): another may begin while
 * the last answer is on its way, so that a client starting its next stream
 * right after that answer is not told "busy". */
static void set_idle(serve_stream *ss)
{
	pthread_mutex_lock(&ss->mu);
	ss->busy = false;
	pthread_cond_broadcast(&ss->idle);
	pthread_mutex_unlock(&ss->mu);
}

/* Serve one connection that passed the credential check.  Every path calls
 * set_idle() once. */
static void serve_one(serve_stream *ss, int fd)
{
	sconn c = {.ss = ss, .fd = fd};
	sjob j;
	memset(&j, 0, sizeof(j));
	j.c = &c;
	j.type = AMS_BACKUP_FULL; /* for messages until the request is read */
	ams_info after;
	memset(&after, 0, sizeof(after));
	char *body = NULL;
	int rc = recv_ctrl(&c, REQ_TIMEOUT_MS, &body);
	if (rc) {
		set_idle(ss);
		if (rc == -EMSGSIZE)
			send_error(&c, "bad-input", -EMSGSIZE, "request too large");
		return;
	}
	char why[256] = "";
	int type = parse_request(body, why, sizeof(why));
	free(body);
	if (!type) {
		set_idle(ss);
		send_error(&c, "bad-input", AMS_EINVAL, "%s", why);
		return;
	}
	j.type = type;

	c.inst = serve_instance_get();
	if (!c.inst) {
		set_idle(ss);
		send_error(&c, "retryable", AMS_EBUSY,
		           "the instance in %s is closed (a restore is in progress): try again later",
		           ss->dir);
		return;
	}
	rc = ams_info_get(c.inst, &j.info);
	if (rc == 0 && get_dbnames(c.inst, j.info.ndatabases, &j.dn) != 0)
		rc = AMS_EINVAL;
	if (rc) {
		job_fail(&j, 0, "failed", rc, "cannot describe the instance: %s", ams_strerror(rc));
		goto out_put;
	}
	uint64_t corrected0 = j.info.pages_corrected;
	size_t ps = j.info.page_size;
	j.batch_max = (uint32_t)((BATCH_BYTES - 8) / (4 + ps));
	size_t cap = 8 + (size_t)j.batch_max * (4 + ps);
	if (cap < 16 + DATA_CHUNK)
		cap = 16 + DATA_CHUNK;
	j.batch = malloc(cap);
	j.batch_len = 8;
	if (!j.batch) {
		job_fail(&j, 0, "failed", AMS_ENOMEM, "out of memory");
		goto out_put;
	}
	rc = ams_stream_begin(c.inst, j.type, &j.s);
	if (rc) {
		const char *msg = ams_errmsg();
		if (rc == AMS_EBUSY)
			job_fail(&j, 0, "retryable", rc,
			         "busy: a snapshot backup (freeze) or another backup of %s is in "
			         "progress: try again later",
			         ss->dir);
		else
			job_fail(&j, 0, "failed", rc, "%s", msg);
		goto out_free;
	}
	ss_log(ss, "streaming %s backup started", type_names[j.type]);
	rc = send_json(&c, json_pack("{s:s, s:i, s:s, s:s, s:I, s:o}", "kind", "stream-started",
	                             "version", 1, "type", type_names[j.type], "prefix",
	                             j.info.prefix, "page_size", (json_int_t)ps, "databases",
	                             dbnames_json(&j.dn)));
	if (rc) {
		job_io_fail(&j, rc);
		goto out_end;
	}
	if (stream_pages(&j))
		goto out_end;
	if (!j.logs_done && logs_now(&j))
		goto out_end;
	if (stream_logs(&j))
		goto out_end;
	uint64_t corrected = 0;
	if (ams_info_get(c.inst, &after) == 0 && after.pages_corrected > corrected0)
		corrected = after.pages_corrected - corrected0;
	rc = send_json(&c, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:o, s:s}",
	                             "kind", "stream-end", "type", type_names[j.type], "gen_low",
	                             (json_int_t)j.gen_low, "gen_high", (json_int_t)j.gen_high,
	                             "pages", (json_int_t)j.pages, "corrected",
	                             (json_int_t)corrected, "log_corrected",
	                             (json_int_t)j.log_corrected, "bytes", (json_int_t)j.bytes,
	                             "prefix", j.info.prefix, "page_size", (json_int_t)ps,
	                             "databases", dbnames_json(&j.dn), "log_signature",
	                             j.sig_hex));
	if (rc) {
		job_io_fail(&j, rc);
		goto out_end;
	}
	if (corrected)
		ss_warn("streaming %s backup: %" PRIu64 " single-bit page error%s corrected while it "
		        "ran",
		        type_names[j.type], corrected, corrected == 1 ? " was" : "s were");
	int ok = wait_complete(&j);
	/* the stream ends first: while it runs the engine truncates nothing */
	ams_stream_end(j.s);
	j.s = NULL;
	if (ok < 0)
		goto out_free;
	if (ok == 0) {
		ss_log(ss, "streaming %s backup: the client reported failure: nothing recorded",
		       type_names[j.type]);
		j.reply = json_pack("{s:s, s:b, s:I}", "kind", "complete-ok", "recorded", 0,
		                    "gen_oldest", (json_int_t)after.gen_oldest);
		goto out_free;
	}
	rc = ams_backup_complete(c.inst, j.type | AMS_BACKUP_STREAMED, j.gen_low, j.gen_high,
	                         (uint64_t)time(NULL), 0);
	if (rc) {
		job_fail(&j, 0, "failed", rc, "recording the backup: %s", ams_errmsg());
		goto out_free;
	}
	ams_info_get(c.inst, &after);
	ss_log(ss,
	       "streaming %s backup complete: %" PRIu64 " pages, logs 0x%08X-0x%08X, oldest log "
	       "now 0x%08X",
	       type_names[j.type], j.pages, j.gen_low, j.gen_high, after.gen_oldest);
	j.reply = json_pack("{s:s, s:b, s:I}", "kind", "complete-ok", "recorded",
	                    j.type != AMS_BACKUP_COPY, "gen_oldest", (json_int_t)after.gen_oldest);
	goto out_free;
out_end:
	ams_stream_end(j.s);
out_free:
	free(j.batch);
out_put:
	/* the instance first: a restore waiting for it must not wait for the
	 * client, nor cut the answer */
	serve_instance_put(c.inst);
	c.inst = NULL;
	set_idle(ss);
	if (j.failed && !j.fail_io)
		send_error(&c, j.fail_cls, j.fail_code, "%s", j.fail_msg);
	if (j.reply && !j.failed)
		send_json(&c, j.reply);
	else
		json_decref(j.reply);
}

/* ============================================================== threads */

static void *worker_main(void *arg)
{
	serve_stream *ss = arg;
	pthread_mutex_lock(&ss->mu);
	int fd = ss->worker_fd;
	pthread_mutex_unlock(&ss->mu);
	/* serve_one() marks the listener idle (exactly once, before its last
	 * answer); after that this thread never takes ss->mu again, so the
	 * acceptor may join it while holding ss->mu */
	serve_one(ss, fd);
	close(fd);
	return NULL;
}

/* root, or serve's own uid */
static int peer_ok(int fd, uid_t *uid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
		return 0;
	*uid = cr.uid;
	return cr.uid == 0 || cr.uid == geteuid();
}

static void handle_client(serve_stream *ss, int fd)
{
	sconn c = {.ss = ss, .fd = fd};
	uid_t uid = (uid_t)-1;
	if (!peer_ok(fd, &uid)) {
		ss_warn("refused a stream connection from uid %ld (only root and uid %ld may)",
		        (long)uid, (long)geteuid());
		send_error(&c, "failed", -EPERM,
		           "permission denied: uid %ld may not stream backups of %s (only root and "
		           "uid %ld)",
		           (long)uid, ss->dir, (long)geteuid());
		close(fd);
		return;
	}
	pthread_mutex_lock(&ss->mu);
	if (ss->busy) {
		pthread_mutex_unlock(&ss->mu);
		/* read the request first, so the answer does not race its write */
		char *body = NULL;
		recv_ctrl(&c, BUSY_TIMEOUT_MS, &body);
		free(body);
		send_error(&c, "retryable", AMS_EBUSY,
		           "busy: another streaming backup of %s is in progress: try again later",
		           ss->dir);
		close(fd);
		return;
	}
	if (ss->worker_joinable) {
		/* the previous worker has finished (busy is false): reap it */
		pthread_join(ss->worker, NULL);
		ss->worker_joinable = false;
	}
	ss->busy = true;
	ss->worker_fd = fd;
	int e = pthread_create(&ss->worker, NULL, worker_main, ss);
	if (e == 0)
		ss->worker_joinable = true;
	else
		ss->busy = false;
	pthread_mutex_unlock(&ss->mu);
	if (e != 0) {
		ss_warn("cannot start a stream thread: %s", strerror(e));
		send_error(&c, "retryable", -e, "serve cannot start a thread: try again later");
		close(fd);
	}
}

static void *acceptor_main(void *arg)
{
	serve_stream *ss = arg;
	while (!atomic_load(&ss->stop)) {
		struct pollfd p = {.fd = ss->lfd, .events = POLLIN};
		int n = poll(&p, 1, SLICE_MS);
		if (n <= 0)
			continue;
		int fd = accept4(ss->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
				ss_warn("accept on %s/%s: %s", ss->dir, SERVE_STREAM_SOCK_NAME,
				        strerror(errno));
				poll(NULL, 0, SLICE_MS); /* e.g. EMFILE: do not spin */
			}
			continue;
		}
		handle_client(ss, fd);
	}
	return NULL;
}

int serve_stream_start(const char *dir, bool quiet, serve_stream **out)
{
	*out = NULL;
	serve_stream *ss = calloc(1, sizeof(*ss));
	if (!ss) {
		ss_warn("out of memory");
		return 1;
	}
	ss->quiet = quiet;
	ss->lfd = -1;
	atomic_init(&ss->stop, false);
	pthread_mutex_init(&ss->mu, NULL);
	pthread_cond_init(&ss->idle, NULL);
	if (strlen(dir) >= sizeof(ss->dir)) {
		ss_warn("%s: path too long", dir);
		goto out_free;
	}
	snprintf(ss->dir, sizeof(ss->dir), "%s", dir);
	ss->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ss->dirfd < 0) {
		ss_warn("%s: %s", dir, strerror(errno));
		goto out_free;
	}
	if (make_socket(ss) != 0)
		goto out_close_dir;
	int e = pthread_create(&ss->acceptor, NULL, acceptor_main, ss);
	if (e != 0) {
		ss_warn("cannot start the stream listener thread: %s", strerror(e));
		goto out_socket;
	}
	ss->acceptor_started = true;
	ss_log(ss, "streaming backups through %s/%s", dir, SERVE_STREAM_SOCK_NAME);
	*out = ss;
	return 0;
out_socket:
	close(ss->lfd);
	remove_socket(ss);
out_close_dir:
	close(ss->dirfd);
out_free:
	pthread_cond_destroy(&ss->idle);
	pthread_mutex_destroy(&ss->mu);
	free(ss);
	return 1;
}

bool serve_stream_idle_wait(serve_stream *ss, unsigned timeout_ms)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&ss->mu);
	int e = 0;
	while (ss->busy && e != ETIMEDOUT)
		e = pthread_cond_timedwait(&ss->idle, &ss->mu, &dl);
	bool idle = !ss->busy;
	pthread_mutex_unlock(&ss->mu);
	return idle;
}

void serve_stream_stop(serve_stream *ss)
{
	if (!ss)
		return;
	atomic_store(&ss->stop, true);
	if (ss->acceptor_started)
		pthread_join(ss->acceptor, NULL);
	/* the acceptor is gone, so nobody else touches the worker fields */
	if (ss->worker_joinable)
		pthread_join(ss->worker, NULL);
	close(ss->lfd);
	remove_socket(ss);
	close(ss->dirfd);
	pthread_cond_destroy(&ss->idle);
	pthread_mutex_destroy(&ss->mu);
	free(ss);
}

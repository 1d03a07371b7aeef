/*
 * events.c - amberd's event log (docs/protocol.md section 10 for the IDs).
 *
 * Every event is
 *   - appended as one line to STATE/events.log: the compact JSON of its
 *     "event" message (docs/protocol.md section 8), newline-terminated,
 *     with one write(2) in O_APPEND mode.  The log is a record, not a
 *     recovery structure, so it is not fsynced per line; a line torn by a
 *     crash is skipped when the file is read again.  When the file passes
 *     16 MiB it is renamed to events.log.1 (replacing the previous one)
 *     and a new one is started.
 *   - kept in memory, the last AMBERD_EVENT_RING events, for events-list
 *     and events-follow; at start the ring is refilled from the file's last
 *     EVENTS_TAIL_BYTES, and
 *     seq continues after the highest seq found, so seq increases across
 *     restarts of amberd on the same state directory.
 *   - sent to the systemd journal (when built with libsystemd and the
 *     configuration says journald = yes) with the fields MESSAGE,
 *     PRIORITY, SYSLOG_IDENTIFIER=amberd, AMBER_EVENT (the number),
 *     AMBER_EVENT_NAME and AMBER_SET/AMBER_WRITER/AMBER_VOLUME when given;
 *     otherwise (or when the journal refuses it) printed on standard error.
 * Messages never contain secrets: they are built from names, paths, ids
 * and numbers only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef AMBERD_HAVE_SYSTEMD
#include <syslog.h>
#include <systemd/sd-journal.h>
#endif

#include "daemon/amberd.h"

#define EVENTS_ROTATE_BYTES (16u << 20)
#define EVENTS_TAIL_BYTES (6 << 20)   /* read at start to refill the ring */

static int ev_fd = -1;
static char ev_path[4200];
static amb_event *ring;           /* AMBERD_EVENT_RING slots, owned strings */
static size_t ring_head;          /* index of the oldest */
static size_t ring_len;
static uint64_t last_seq;

static void ring_put(const amb_event *e)
{
	size_t slot;
	if (ring_len == AMBERD_EVENT_RING) {
		slot = ring_head;
		free(ring[slot].message);
		free(ring[slot].volume);
		ring_head = (ring_head + 1) % AMBERD_EVENT_RING;
	} else {
		slot = (ring_head + ring_len) % AMBERD_EVENT_RING;
		ring_len++;
	}
	ring[slot] = *e;
	ring[slot].message = strdup(e->message ? e->message : "-");
	ring[slot].volume = e->volume ? strdup(e->volume) : NULL;
	if (!ring[slot].message) /* keep the ring valid even without memory */
		ring[slot].message = NULL;
}

int events_open(char *err, size_t errlen)
{
	ring = calloc(AMBERD_EVENT_RING, sizeof(*ring));
	if (!ring) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	snprintf(ev_path, sizeof(ev_path), "%s/events.log", D.cfg.state_dir);
	FILE *f = fopen(ev_path, "re");
	if (f) {
		/* the ring holds the newest events: read only the file's tail
		 * (a full ring is about EVENTS_TAIL_BYTES of lines), starting at
		 * a line boundary */
		struct stat st;
		if (fstat(fileno(f), &st) == 0 && st.st_size > EVENTS_TAIL_BYTES) {
			fseeko(f, st.st_size - EVENTS_TAIL_BYTES, SEEK_SET);
			int ch;
			while ((ch = fgetc(f)) != EOF && ch != '\n')
				;
		}
		char *line = NULL;
		size_t cap = 0;
		ssize_t n;
		while ((n = getline(&line, &cap, f)) > 0) {
			if (line[n - 1] != '\n')
				break; /* torn last line */
			amb_msg m;
			if (amb_msg_decode(line, (size_t)n - 1, &m, NULL, 0) != 0)
				continue;
			if (m.kind == AMB_MSG_EVENT && m.u.event.seq > last_seq) {
				last_seq = m.u.event.seq;
				ring_put(&m.u.event);
			}
			amb_msg_free(&m);
		}
		free(line);
		fclose(f);
	} else if (errno != ENOENT) {
		snprintf(err, errlen, "%s: %s", ev_path, strerror(errno));
		return -errno;
	}
	ev_fd = open(ev_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (ev_fd < 0) {
		snprintf(err, errlen, "%s: %s", ev_path, strerror(errno));
		return -errno;
	}
	return 0;
}


uint64_t events_last_seq(void)
{
	pthread_mutex_lock(&D.mu);
	uint64_t s = last_seq;
	pthread_mutex_unlock(&D.mu);
	return s;
}

static void copy_name(char *dst, const char *src)
{
	if (src && src[0] && amb_proto_name_ok(src))
		snprintf(dst, AMB_NAME_BUF, "%s", src);
}

static void copy_uuid(char *dst, const char *src)
{
	if (src && amb_proto_uuid_ok(src))
		snprintf(dst, AMB_UUID_BUF, "%s", src);
}


static void rotate_if_big(void)
{
	struct stat st;
	if (ev_fd < 0 || fstat(ev_fd, &st) != 0 || st.st_size < EVENTS_ROTATE_BYTES)
		return;
	char old[4300];
	snprintf(old, sizeof(old), "%s.1", ev_path);
	if (rename(ev_path, old) != 0)
		return;
	int fd = open(ev_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd >= 0) {
		close(ev_fd);
		ev_fd = fd;
	}
}

void ev_log(uint32_t code, amb_severity sev, const char *session, const char *set,
	    const char *shadow, const char *writer, const char *volume, amb_fail_class cls,
	    const char *fmt, ...)
{
	char text[AMB_TEXT_MAX * 2];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	amberd_clean_text(text, AMB_TEXT_MAX);

	amb_msg m;
	memset(&m, 0, sizeof(m));
	m.kind = AMB_MSG_EVENT;
	amb_event *e = &m.u.event;
	e->time_ms = now_ms();
	e->code = code;
	e->severity = sev;
	e->message = text;
	copy_uuid(e->session, session);
	copy_uuid(e->set, set);
	copy_uuid(e->shadow, shadow);
	copy_name(e->writer, writer);
	e->volume = (volume && amb_proto_path_ok(volume)) ? (char *)volume : NULL;
	e->cls = cls;

	pthread_mutex_lock(&D.mu);
	e->seq = ++last_seq;
	char *json = NULL;
	size_t len = 0;
	if (amb_msg_encode(&m, &json, &len) == 0) {
		json[len] = '\n';
		if (ev_fd >= 0 && write(ev_fd, json, len + 1) != (ssize_t)(len + 1))
			amberd_log("cannot append to %s: %s", ev_path, strerror(errno));
		free(json);
		rotate_if_big();
	}
	if (ring)
		ring_put(e);
	pthread_cond_broadcast(&D.cv);
	pthread_mutex_unlock(&D.mu);

	const char *name = amb_event_code_name(code);
	bool journaled = false;
#ifdef AMBERD_HAVE_SYSTEMD
	if (D.cfg.journald) {
		int prio = sev == AMB_SEV_ERROR ? LOG_ERR : sev == AMB_SEV_WARNING ? LOG_WARNING
										    : LOG_INFO;
		journaled = sd_journal_send("MESSAGE=%s", text, "PRIORITY=%d", prio,
				"SYSLOG_IDENTIFIER=amberd", "AMBER_EVENT=%u", code,
				"AMBER_EVENT_NAME=%s", name ? name : "unknown",
				"AMBER_SET=%s", e->set[0] ? e->set : "-",
				"AMBER_WRITER=%s", e->writer[0] ? e->writer : "-",
				"AMBER_VOLUME=%s", e->volume ? e->volume : "-", NULL) == 0;
	}
#endif
	/* standard error only when the journal did not take it: under systemd
	 * standard error goes to the journal too, and once is enough */
	if (!journaled)
		amberd_log("event %u %s: %s", code, name ? name : "?", text);
}

/* Copy the ring's events with seq > since (at most limit) into a list
 * owned by the caller.  Under D.mu. */
static int collect(uint64_t since, size_t limit, amb_event **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	amb_event *v = calloc(limit ? limit : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	size_t k = 0;
	for (size_t i = 0; i < ring_len && k < limit; i++) {
		const amb_event *e = &ring[(ring_head + i) % AMBERD_EVENT_RING];
		if (e->seq <= since || !e->message)
			continue;
		v[k] = *e;
		v[k].message = strdup(e->message);
		v[k].volume = e->volume ? strdup(e->volume) : NULL;
		k++;
	}
	*out = v;
	*n = k;
	return 0;
}

void events_request(const amb_msg *req, amb_msg *resp, bool *follow, uint64_t *since)
{
	*follow = false;
	const amb_events_req *r = &req->u.evreq;
	if (req->kind == AMB_MSG_EVENTS_LIST) {
		size_t limit = r->limit ? r->limit : AMB_MAX_EVENTS;
		pthread_mutex_lock(&D.mu);
		amb_event *v;
		size_t n;
		int rc = collect(r->has_since ? r->since : 0, limit, &v, &n);
		pthread_mutex_unlock(&D.mu);
		if (rc) {
			resp_error(resp, req->id, AMB_EXIT_FAILED, AMB_FAIL_OUT_OF_RESOURCES,
				   "out of memory");
			return;
		}
		memset(resp, 0, sizeof(*resp));
		resp->kind = AMB_MSG_EVENT_LIST;
		resp->id = req->id;
		resp->u.events.events = v;
		resp->u.events.n_events = n;
		return;
	}
	/* events-follow: answer ok, then the connection streams */
	*follow = true;
	*since = r->has_since ? r->since : events_last_seq();
	resp_ok(resp, req->id);
}


void events_follow(int fd, uint64_t since)
{
	for (;;) {
		pthread_mutex_lock(&D.mu);
		while (!D.stopping && last_seq <= since) {
			pthread_mutex_unlock(&D.mu);
			if (amberd_peer_gone(fd))
				return;
			pthread_mutex_lock(&D.mu);
			if (last_seq <= since)
				cond_wait_ms(250);
		}
		if (D.stopping) {
			pthread_mutex_unlock(&D.mu);
			return;
		}
		amb_event *v;
		size_t n;
		int rc = collect(since, 256, &v, &n);
		uint64_t top = last_seq;
		pthread_mutex_unlock(&D.mu);
		if (rc)
			return;
		if (n == 0)
			since = top; /* older than the ring: skip ahead */
		for (size_t i = 0; i < n; i++) {
			amb_msg m;
			memset(&m, 0, sizeof(m));
			m.kind = AMB_MSG_EVENT;
			m.u.event = v[i];
			char *json;
			size_t len;
			int wr = -1;
			if (amb_msg_encode(&m, &json, &len) == 0) {
				wr = amb_frame_write(fd, json, len);
				free(json);
			}
			since = v[i].seq;
			if (wr != 0) {
				for (size_t j = 0; j < n; j++) {
					free(v[j].message);
					free(v[j].volume);
				}
				free(v);
				return;
			}
		}
		for (size_t j = 0; j < n; j++) {
			free(v[j].message);
			free(v[j].volume);
		}
		free(v);
	}
}

/*
 * fake_amberd.c - the fake amberd of the libamber tests (fake_amberd.h).
 */
#include "fake_amberd.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int fake_relisten(fake_srv *s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	s->lfd = fd;
	return 0;
}

int fake_listen(fake_srv *s)
{
	memset(s, 0, sizeof(*s));
	s->lfd = -1;
	snprintf(s->dir, sizeof(s->dir), "/tmp/amb-libamber-XXXXXX");
	if (!mkdtemp(s->dir))
		return -errno;
	snprintf(s->path, sizeof(s->path), "%s/amberd.sock", s->dir);
	return fake_relisten(s);
}

void fake_unlisten(fake_srv *s)
{
	if (s->lfd >= 0) {
		close(s->lfd);
		s->lfd = -1;
		unlink(s->path);
	}
}

void fake_cleanup(fake_srv *s)
{
	fake_unlisten(s);
	unlink(s->path);
	rmdir(s->dir);
}

static int wait_in(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	for (;;) {
		int n = poll(&p, 1, timeout_ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		return n == 0 ? -ETIMEDOUT : 0;
	}
}

int fake_accept(fake_srv *s, int timeout_ms)
{
	int rc = wait_in(s->lfd, timeout_ms);
	if (rc)
		return rc;
	int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int fake_send(int fd, const amb_msg *m)
{
	char *json;
	size_t len;
	int rc = amb_msg_encode(m, &json, &len);
	if (rc) {
		char err[256];
		amb_msg_check(m, err, sizeof(err));
		fprintf(stderr, "fake amberd: cannot encode %s: %s\n", amb_msg_kind_name(m->kind),
			err);
		return rc;
	}
	rc = amb_frame_write(fd, json, len);
	free(json);
	return rc;
}

int fake_recv(int fd, int timeout_ms, amb_msg *out)
{
	memset(out, 0, sizeof(*out));
	int rc = wait_in(fd, timeout_ms);
	if (rc)
		return rc;
	char *buf;
	size_t len;
	rc = amb_frame_read(fd, AMB_PROTO_MAX_MSG_LIMIT, &buf, &len);
	if (rc)
		return rc;
	char err[256];
	rc = amb_msg_decode(buf, len, out, err, sizeof(err));
	if (rc)
		fprintf(stderr, "fake amberd: cannot decode %s: %s\n", buf, err);
	free(buf);
	return rc;
}

int fake_welcome(int fd, amb_msg *hello)
{
	amb_msg h;
	int rc = fake_recv(fd, FAKE_TIMEOUT_MS, &h);
	if (rc)
		return rc < 0 ? rc : -ECONNRESET;
	if (h.kind != AMB_MSG_HELLO) {
		amb_msg_free(&h);
		return -EPROTO;
	}
	amb_msg w = { .kind = AMB_MSG_WELCOME, .id = h.id };
	w.u.welcome.version = AMB_PROTO_VERSION;
	snprintf(w.u.welcome.server, sizeof(w.u.welcome.server), "amberd");
	snprintf(w.u.welcome.server_version, sizeof(w.u.welcome.server_version), "0.1.0");
	w.u.welcome.max_message = FAKE_MAX_MESSAGE;
	w.u.welcome.hold_ms = 10000;
	w.u.welcome.event_timeout_ms = 60000;
	rc = fake_send(fd, &w);
	if (hello)
		*hello = h;
	else
		amb_msg_free(&h);
	return rc;
}

static amb_fileset db_files[] = {
	{ .path = "/srv/db", .pattern = "*.db", .recursive = false },
};
static amb_fileset db_logs[] = {
	{ .path = "/srv/db/log", .pattern = "*.log", .recursive = true },
};
static amb_fileset cfg_files[] = {
	{ .path = "/etc/test-writer", .pattern = "*", .recursive = true },
};
static amb_fileset excl[] = {
	{ .path = "/srv/db", .pattern = "*.tmp", .recursive = true },
};
static amb_component comps[] = {
	{ .name = "main", .type = AMB_COMP_DATABASE, .selectable = true, .files = db_files,
	  .n_files = 1, .logs = db_logs, .n_logs = 1, .checkpoint = "/srv/db/checkpoint" },
	{ .name = "config", .type = AMB_COMP_FILEGROUP, .selectable = false,
	  .files = cfg_files, .n_files = 1 },
};

void fake_md(amb_writer_md *md)
{
	memset(md, 0, sizeof(*md));
	snprintf(md->name, sizeof(md->name), "test-writer");
	snprintf(md->instance, sizeof(md->instance), "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9");
	md->instance_name = "test writer at /srv/db";
	md->backup_types = AMB_BACKUP_BIT(AMB_BACKUP_FULL) | AMB_BACKUP_BIT(AMB_BACKUP_COPY);
	snprintf(md->verifier, sizeof(md->verifier), "none");
	md->restore_method = AMB_RESTORE_IF_CAN_REPLACE;
	md->max_hold_ms = 5000;
	md->components = comps;
	md->n_components = 2;
	md->excludes = excl;
	md->n_excludes = 1;
}

/*
 * fsfreeze.c - FIFREEZE watched by a thaw guard (design and wire format in
 * fsfreeze.h).
 */
#include "providers/fsfreeze.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "providers/provider_internal.h"

#define MSG_SIZE 16
/* how long the freezer waits for the guard to start or to answer */
#define GUARD_REPLY_MS 5000

struct amb_freeze {
	pid_t guard;
	int sock;
	int fsfd;
	unsigned deadline_ms;
	int64_t deadline_ns; /* CLOCK_MONOTONIC */
	char *label;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- messages ---- */

static void msg_pack(unsigned char *m, char type, int err, int64_t value)
{
	uint32_t e = (uint32_t)err;
	uint64_t v = (uint64_t)value;
	memset(m, 0, MSG_SIZE);
	m[0] = (unsigned char)type;
	for (int i = 0; i < 4; i++)
		m[4 + i] = (unsigned char)(e >> (8 * i));
	for (int i = 0; i < 8; i++)
		m[8 + i] = (unsigned char)(v >> (8 * i));
}

static void msg_unpack(const unsigned char *m, char *type, int *err, int64_t *value)
{
	uint32_t e = 0;
	uint64_t v = 0;
	for (int i = 0; i < 4; i++)
		e |= (uint32_t)m[4 + i] << (8 * i);
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)m[8 + i] << (8 * i);
	*type = (char)m[0];
	*err = (int)e;
	*value = (int64_t)v;
}

static int msg_send(int sock, char type, int err, int64_t value)
{
	unsigned char m[MSG_SIZE];
	msg_pack(m, type, err, value);
	for (;;) {
		ssize_t n = send(sock, m, sizeof(m), MSG_NOSIGNAL);
		if (n == (ssize_t)sizeof(m))
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 ? -errno : -EIO;
	}
}

/* 1 message received, 0 end of stream, -ETIMEDOUT, -errno */
static int msg_recv(int sock, int timeout_ms, char *type, int *err, int64_t *value)
{
	unsigned char m[MSG_SIZE];
	int64_t end = now_ns() + (int64_t)timeout_ms * 1000000;
	for (;;) {
		int64_t left = end - now_ns();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd pfd = { .fd = sock, .events = POLLIN };
		int r = poll(&pfd, 1, (int)((left + 999999) / 1000000));
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			continue;
		ssize_t n = recv(sock, m, sizeof(m), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return 0;
		if (n != (ssize_t)sizeof(m))
			return -EPROTO;
		msg_unpack(m, type, err, value);
		return 1;
	}
}

/* ---- the guard ---- */

static volatile sig_atomic_t guard_stop;

static void guard_on_signal(int sig)
{
	(void)sig;
	guard_stop = 1;
}

static void say(const char *s)
{
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, s, n);
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

static void guard_log(const char *label, const char *what)
{
	say("amber-thaw-guard: ");
	say(label);
	say(": ");
	say(what);
	say("\n");
}

static int guard_thaw(int fsfd)
{
	if (ioctl(fsfd, FITHAW, 0) != 0)
		return errno;
	return 0;
}

int amb_thaw_guard_run(int sock, int fsfd, const char *label)
{
	enum { IDLE, PENDING, FROZEN } state = IDLE;
	int64_t deadline = 0;
	sigset_t block, empty;

	setsid(); /* already done by amb_fsfreeze; harmless when not needed */
	if (chdir("/") != 0) {
		/* only to not pin a directory; nothing depends on it */
	}
	int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (oom >= 0) {
		if (write(oom, "-1000", 5) != 5) {
			/* best effort: needs CAP_SYS_RESOURCE */
		}
		close(oom);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = guard_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	/* the signals are only delivered inside ppoll, so none is lost
	 * between the check of guard_stop and the wait */
	sigemptyset(&empty);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_SETMASK, &block, NULL);

	if (msg_send(sock, 'R', 0, 0) != 0)
		return 0; /* the freezer is gone before anything was frozen */
	for (;;) {
		struct timespec ts, *tsp = NULL;
		if (state == IDLE && guard_stop)
			return 0;
		if (state == FROZEN) {
			int64_t left = deadline - now_ns();
			if (left <= 0 || guard_stop) {
				int e = guard_thaw(fsfd);
				msg_send(sock, 'X', e, 0);
				guard_log(label, e == 0 ? "freeze deadline passed: thawed"
							: "freeze deadline passed: thaw failed");
				return 0;
			}
			ts.tv_sec = left / 1000000000;
			ts.tv_nsec = left % 1000000000;
			tsp = &ts;
		}
		/* PENDING: the freezer is inside FIFREEZE; nothing can be thawed
		 * before it returns, so wait for "frozen" or its end */
		struct pollfd pfd = { .fd = sock, .events = POLLIN };
		int r = ppoll(&pfd, 1, tsp, &empty);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			continue;
		unsigned char m[MSG_SIZE];
		ssize_t n = r < 0 ? -1 : recv(sock, m, sizeof(m), MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			/* end of stream: the freezer died (or a broken socket).  If
			 * it got as far as FIFREEZE, the ioctl has returned (a
			 * process cannot exit inside it), so one FITHAW suffices;
			 * EINVAL means it was not frozen */
			if (state != IDLE && guard_thaw(fsfd) == 0)
				guard_log(label, "freezer went away: thawed");
			return 0;
		}
		if (n != MSG_SIZE)
			continue;
		char type;
		int err;
		int64_t value;
		msg_unpack(m, &type, &err, &value);
		switch (type) {
		case 'F':
			deadline = value;
			state = PENDING;
			break;
		case 'f':
			state = FROZEN;
			break;
		case 'A':
			return 0;
		case 'T': {
			/* woken by the request and the deadline at once: the
			 * deadline came first */
			bool late = state == FROZEN && now_ns() >= deadline;
			int e = state == IDLE ? 0 : guard_thaw(fsfd);
			msg_send(sock, late ? 'X' : 't', e, 0);
			if (late)
				guard_log(label, "freeze deadline passed: thawed");
			return 0;
		}
		default:
			break;
		}
	}
}

/* ---- the freezer ---- */

const char *amb_thaw_guard_path(void)
{
	const char *e = getenv("AMBER_THAW_GUARD");
	if (e && *e)
		return access(e, X_OK) == 0 ? e : NULL;
#ifdef AMB_THAW_GUARD_INSTALLED
	if (access(AMB_THAW_GUARD_INSTALLED, X_OK) == 0)
		return AMB_THAW_GUARD_INSTALLED;
#endif
#ifdef AMB_THAW_GUARD_BUILD
	if (access(AMB_THAW_GUARD_BUILD, X_OK) == 0)
		return AMB_THAW_GUARD_BUILD;
#endif
	return NULL;
}

pid_t amb_freeze_guard_pid(const amb_freeze *h)
{
	return h ? h->guard : -1;
}

static void reap(pid_t pid)
{
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

static void handle_free(amb_freeze *h)
{
	if (h->sock >= 0)
		close(h->sock);
	if (h->fsfd >= 0)
		close(h->fsfd);
	free(h->label);
	free(h);
}

/* in the forked child: only async-signal-safe calls until exec */
static void guard_child(int sock, int fsfd, const char *path, char *const argv[],
			const char *label)
{
	int s = fcntl(sock, F_DUPFD, 10);
	int f = fcntl(fsfd, F_DUPFD, 10);
	if (s < 0 || f < 0 || dup2(s, 3) != 3 || dup2(f, 4) != 4)
		_exit(127);
	if (close_range(5, ~0u, 0) != 0)
		for (int fd = 5; fd < 1024; fd++)
			close(fd);
	setsid();
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (path)
		execv(path, argv);
	_exit(amb_thaw_guard_run(3, 4, label));
}

int amb_fsfreeze(const char *path, unsigned deadline_ms, amb_freeze **out)
{
	int rc;
	if (!out)
		return amb_prov_err(-EINVAL, "fsfreeze: no result pointer given");
	*out = NULL;
	if (!path || !*path)
		return amb_prov_err(-EINVAL, "fsfreeze: path missing");
	if (deadline_ms == 0 || deadline_ms > AMB_FREEZE_MAX_MS)
		return amb_prov_err(-EINVAL, "fsfreeze: %s: deadline %u ms out of range (1..%u)",
				    path, deadline_ms, AMB_FREEZE_MAX_MS);
	amb_freeze *h = calloc(1, sizeof(*h));
	if (!h)
		return amb_prov_err(-ENOMEM, "fsfreeze: out of memory");
	h->sock = -1;
	h->deadline_ms = deadline_ms;
	h->label = strdup(path);
	if (!h->label) {
		h->fsfd = -1;
		rc = amb_prov_err(-ENOMEM, "fsfreeze: out of memory");
		goto out_free_h;
	}
	h->fsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (h->fsfd < 0) {
		rc = amb_prov_err(-errno, "fsfreeze: %s: %s", path, strerror(errno));
		goto out_free_h;
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		rc = amb_prov_err(-errno, "fsfreeze: %s: socketpair: %s", path, strerror(errno));
		goto out_free_h;
	}
	h->sock = sv[0];

	/* everything the child needs is ready before fork */
	const char *gpath = amb_thaw_guard_path();
	char *argv[] = { (char *)"amber-thaw-guard", (char *)"3", (char *)"4", h->label, NULL };
	h->guard = fork();
	if (h->guard < 0) {
		rc = amb_prov_err(-errno, "fsfreeze: %s: cannot start the thaw guard: %s", path,
				  strerror(errno));
		close(sv[1]);
		goto out_free_h;
	}
	if (h->guard == 0)
		guard_child(sv[1], h->fsfd, gpath, argv, h->label);
	close(sv[1]);

	char type;
	int err;
	int64_t value;
	rc = msg_recv(h->sock, GUARD_REPLY_MS, &type, &err, &value);
	if (rc != 1 || type != 'R') {
		kill(h->guard, SIGKILL);
		reap(h->guard);
		rc = amb_prov_err(-ECHILD, "fsfreeze: %s: the thaw guard %s did not start", path,
				  gpath ? gpath : "(in-process)");
		goto out_free_h;
	}

	h->deadline_ns = now_ns() + (int64_t)deadline_ms * 1000000;
	rc = msg_send(h->sock, 'F', 0, h->deadline_ns);
	if (rc) {
		reap(h->guard);
		rc = amb_prov_err(-ECHILD, "fsfreeze: %s: the thaw guard died before the freeze",
				  path);
		goto out_free_h;
	}
	if (ioctl(h->fsfd, FIFREEZE, 0) != 0) {
		int e = errno;
		msg_send(h->sock, 'A', e, 0);
		reap(h->guard);
		if (e == EBUSY)
			rc = amb_prov_err(-EBUSY, "fsfreeze: %s: the filesystem is already frozen",
					  path);
		else if (e == EOPNOTSUPP)
			rc = amb_prov_err(-EOPNOTSUPP,
					  "fsfreeze: %s: the filesystem cannot be frozen", path);
		else
			rc = amb_prov_err(-e, "fsfreeze: %s: FIFREEZE: %s", path, strerror(e));
		goto out_free_h;
	}
	if (msg_send(h->sock, 'f', 0, 0) != 0) {
		/* the guard died in between: nobody watches, so do not stay
		 * frozen */
		ioctl(h->fsfd, FITHAW, 0);
		reap(h->guard);
		rc = amb_prov_err(-ECHILD, "fsfreeze: %s: the thaw guard died; thawed again",
				  path);
		goto out_free_h;
	}
	*out = h;
	return 0;

out_free_h:
	handle_free(h);
	return rc;
}

static int thawed_by_other(const amb_freeze *h)
{
	return amb_prov_err(-EINVAL,
			    "fsfreeze: %s was thawed by someone else: writes were not held "
			    "throughout",
			    h->label);
}

int amb_fsthaw(amb_freeze *h)
{
	int rc;
	if (!h)
		return 0;
	char type = 0;
	int err = 0;
	int64_t value;
	msg_send(h->sock, 'T', 0, 0); /* may fail: the guard may have left */
	int r = msg_recv(h->sock, GUARD_REPLY_MS, &type, &err, &value);
	if (r == 1 && type == 't') {
		if (err == 0)
			rc = 0;
		else if (err == EINVAL)
			rc = thawed_by_other(h);
		else
			rc = amb_prov_err(-err, "fsfreeze: %s: FITHAW: %s", h->label,
					  strerror(err));
	} else if (r == 1 && type == 'X') {
		rc = amb_prov_err(-ETIMEDOUT,
				  "fsfreeze: %s: the freeze deadline (%u ms) passed; the thaw "
				  "guard thawed it then",
				  h->label, h->deadline_ms);
	} else {
		/* the guard is gone (killed) or hangs: thaw directly */
		if (r != 0)
			kill(h->guard, SIGKILL);
		int e = ioctl(h->fsfd, FITHAW, 0) == 0 ? 0 : errno;
		if (e == EINVAL)
			rc = thawed_by_other(h);
		else if (e)
			rc = amb_prov_err(-e, "fsfreeze: %s: FITHAW: %s", h->label, strerror(e));
		else if (now_ns() > h->deadline_ns)
			rc = amb_prov_err(-ETIMEDOUT,
					  "fsfreeze: %s: thawed after the deadline (%u ms): the "
					  "thaw guard had died",
					  h->label, h->deadline_ms);
		else
			rc = 0;
	}
	reap(h->guard);
	handle_free(h);
	return rc;
}

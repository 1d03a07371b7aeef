/*
 * main.c - amberd: the coordination service (design.md sections 1, 3, 7).
 *
 *   amberd [--socket PATH] [--state-dir DIR] [--config FILE] [--foreground]
 *
 * Start: read the configuration (default /etc/amber/amberd.conf, optional
 * unless --config names it), take an exclusive lock on STATE/amberd.lock
 * (one amberd per state directory), open the event log, load the shadow
 * registry (removing shadows of sets that never finished), bind the socket
 * (mode 0660, group socket_group; a stale socket file nobody listens on is
 * replaced, a live one is an error), then accept connections.  Without
 * --foreground amberd detaches once it is ready (the parent exits 0 then,
 * or 1 with the reason); under systemd use --foreground (Type=notify: it
 * sends READY=1).
 *
 * Stop (SIGTERM, SIGINT): stop accepting, let running sequences abort (they
 * see D.stopping in every wait, tell their writers to abort and thaw), delete
 * volatile shadows, log 4002 and exit 0.  SIGHUP is ignored (the
 * configuration is read at start only; restart to change it).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifdef AMBERD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "daemon/amberd.h"

amberd D = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void amberd_log(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	localtime_r(&ts.tv_sec, &tm);
	char t[32];
	strftime(t, sizeof(t), "%H:%M:%S", &tm);
	fprintf(stderr, "amberd %s.%03ld: %s\n", t, ts.tv_nsec / 1000000, buf);
}

void cond_wait_ms(unsigned ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&D.cv, &D.mu, &ts);
}

void test_stall(const char *stage)
{
	if (!D.stall_ms || strcmp(D.stall_stage, stage) != 0)
		return;
	amberd_log("test hook: stalling %u ms after %s", D.stall_ms, stage);
	uint64_t end = mono_ms() + D.stall_ms;
	while (mono_ms() < end) {
		pthread_mutex_lock(&D.mu);
		bool stop = D.stopping;
		pthread_mutex_unlock(&D.mu);
		if (stop)
			return;
		usleep(10000);
	}
}

int test_fail(const char *step)
{
	if (!D.fail_step[0] || strcmp(D.fail_step, step) != 0)
		return 0;
	amberd_log("test hook: failing %s with EIO", step);
	return -EIO;
}




/* A group given by name or number; -1 when there is none. */
static long group_id(const char *g)
{
	if (!g[0])
		return -1;
	char *end;
	long n = strtol(g, &end, 10);
	if (!*end && n >= 0)
		return n;
	struct group *gr = getgrnam(g);
	return gr ? (long)gr->gr_gid : -1;
}

bool perm_backup(uid_t uid, gid_t gid, const gid_t *groups, int ngroups)
{
	/* root, and the user amberd itself runs as: a private amberd started
	 * by a user (make demo without root) can do nothing its user could
	 * not do without it */
	if (uid == 0 || uid == geteuid())
		return true;
	long bg = group_id(D.cfg.backup_group);
	if (bg < 0)
		return false;
	if ((long)gid == bg)
		return true;
	for (int i = 0; i < ngroups; i++)
		if ((long)groups[i] == bg)
			return true;
	return false;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: amberd [--socket PATH] [--state-dir DIR] [--config FILE] [--foreground]\n"
		"\n"
		"The amber coordination service: writers register with it, requestors run\n"
		"the backup sequence through it, and it keeps the registry of shadows and the\n"
		"event log.  See amberd(8) / docs/amberd.md.\n"
		"\n"
		"  --socket PATH     listen here (default: the configuration's socket,\n"
		"                    else /run/amber/amberd.sock)\n"
		"  --state-dir DIR   shadow registry, event log and lock (default\n"
		"                    /var/lib/amber)\n"
		"  --config FILE     configuration file (default /etc/amber/amberd.conf,\n"
		"                    read if present)\n"
		"  --foreground      do not detach; log to standard error\n"
		"  -h, --help        this text;  --version  the version\n"
		"\n"
		"Exit status: 0 stopped cleanly, 1 could not start (the message says why),\n"
		"2 bad usage or a bad configuration file.\n");
}

static int mkdirs(const char *path, mode_t mode)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s", path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) != 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(p, mode) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int bind_socket(char *err, size_t errlen)
{
	const char *path = D.cfg.socket;
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(a.sun_path)) {
		snprintf(err, errlen, "socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdirs(dir, 0755);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	/* a live amberd answers; a stale file does not */
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
		close(fd);
		snprintf(err, errlen, "another amberd is listening on %s", path);
		return -EADDRINUSE;
	}
	close(fd);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
	umask(old);
	if (rc != 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot bind %s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	long g = group_id(D.cfg.socket_group);
	if (g >= 0) {
		if (chown(path, (uid_t)-1, (gid_t)g) != 0 || chmod(path, 0660) != 0)
			amberd_log("cannot give %s to group %s: %s", path, D.cfg.socket_group,
				   strerror(errno));
	} else if (D.cfg.socket_group[0]) {
		amberd_log("socket group %s does not exist: only root can connect to %s",
			   D.cfg.socket_group, path);
	}
	if (listen(fd, 64) != 0) {
		rc = -errno;
		snprintf(err, errlen, "listen on %s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	return fd;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"state-dir", required_argument, NULL, 'd'},
		{"config", required_argument, NULL, 'c'},
		{"foreground", no_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *sock = NULL, *state = NULL, *config = NULL;
	bool fg = false;
	int o;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 's': sock = optarg; break;
		case 'd': state = optarg; break;
		case 'c': config = optarg; break;
		case 'f': fg = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("amberd %s\n", AMBERD_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "amberd: unexpected argument: %s\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	char err[1024];
	amberd_config_defaults(&D.cfg);
	if (amberd_config_load(&D.cfg, config ? config : "/etc/amber/amberd.conf", config != NULL,
			       err, sizeof(err)) != 0) {
		fprintf(stderr, "amberd: %s\n", err);
		return 2;
	}
	if (sock) {
		if (sock[0] != '/' || strlen(sock) >= sizeof(D.cfg.socket)) {
			fprintf(stderr, "amberd: --socket needs an absolute path\n");
			return 2;
		}
		snprintf(D.cfg.socket, sizeof(D.cfg.socket), "%s", sock);
	}
	if (state) {
		char real[4096];
		if (mkdirs(state, 0700) != 0 || !realpath(state, real)) {
			fprintf(stderr, "amberd: state directory %s: %s\n", state, strerror(errno));
			return 1;
		}
		snprintf(D.cfg.state_dir, sizeof(D.cfg.state_dir), "%s", real);
	}
	const char *stall = getenv("AMBERD_TEST_STALL");
	if (stall && *stall) {
		const char *colon = strchr(stall, ':');
		if (colon && (size_t)(colon - stall) < sizeof(D.stall_stage)) {
			snprintf(D.stall_stage, sizeof(D.stall_stage), "%.*s", (int)(colon - stall),
				 stall);
			D.stall_ms = (unsigned)strtoul(colon + 1, NULL, 10);
		}
	}
	const char *failstep = getenv("AMBERD_TEST_FAIL");
	if (failstep && *failstep)
		snprintf(D.fail_step, sizeof(D.fail_step), "%s", failstep);

	int ready_pipe[2] = {-1, -1};
	if (!fg) {
		if (pipe2(ready_pipe, O_CLOEXEC) != 0) {
			perror("amberd: pipe");
			return 1;
		}
		pid_t pid = fork();
		if (pid < 0) {
			perror("amberd: fork");
			return 1;
		}
		if (pid > 0) {
			close(ready_pipe[1]);
			char b = 0;
			ssize_t r = read(ready_pipe[0], &b, 1);
			return r == 1 && b == 'R' ? 0 : 1;
		}
		close(ready_pipe[0]);
		setsid();
	}

	if (mkdirs(D.cfg.state_dir, 0700) != 0) {
		fprintf(stderr, "amberd: state directory %s: %s\n", D.cfg.state_dir, strerror(errno));
		return 1;
	}
	char lock[4200];
	snprintf(lock, sizeof(lock), "%s/amberd.lock", D.cfg.state_dir);
	int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) != 0) {
		fprintf(stderr, "amberd: %s: %s\n", lock,
			errno == EWOULDBLOCK ? "another amberd uses this state directory"
					     : strerror(errno));
		return 1;
	}

	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);

	if (events_open(err, sizeof(err)) != 0) {
		fprintf(stderr, "amberd: %s\n", err);
		return 1;
	}
	if (shadows_load(err, sizeof(err)) != 0) {
		fprintf(stderr, "amberd: %s\n", err);
		return 1;
	}
	int lsock = bind_socket(err, sizeof(err));
	if (lsock < 0) {
		fprintf(stderr, "amberd: %s\n", err);
		return 1;
	}
	ev_log(AMB_EV_DAEMON_STARTED, AMB_SEV_INFO, NULL, NULL, NULL, NULL, NULL, AMB_FAIL_NONE,
	       "amberd %s started (socket %s, state %s, hold %u ms, event timeout %u ms)",
	       AMBERD_VERSION, D.cfg.socket, D.cfg.state_dir, D.cfg.hold_ms,
	       D.cfg.event_timeout_ms);
	if (config)
		ev_log(AMB_EV_CONFIG_LOADED, AMB_SEV_INFO, NULL, NULL, NULL, NULL, NULL,
		       AMB_FAIL_NONE, "configuration loaded from %s", config);
#ifdef AMBERD_HAVE_SYSTEMD
	sd_notify(0, "READY=1");
#endif
	if (!fg) {
		int nfd = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (nfd >= 0) {
			dup2(nfd, 0);
			dup2(nfd, 1);
			dup2(nfd, 2);
			close(nfd);
		}
		if (write(ready_pipe[1], "R", 1) != 1)
			return 1;
		close(ready_pipe[1]);
	}

	for (;;) {
		struct pollfd p[2] = {{.fd = lsock, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGHUP)
				break;
		}
		if (p[0].revents & POLLIN) {
			int fd = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				conn_start(fd);
		}
	}

	ev_log(AMB_EV_DAEMON_STOPPING, AMB_SEV_INFO, NULL, NULL, NULL, NULL, NULL, AMB_FAIL_NONE,
	       "amberd is stopping");
	close(lsock);
	unlink(D.cfg.socket);
	pthread_mutex_lock(&D.mu);
	D.stopping = true;
	pthread_cond_broadcast(&D.cv);
	/* sequences in progress abort (their waits see D.stopping) */
	uint64_t until = mono_ms() + 5000;
	while (D.creating && mono_ms() < until)
		cond_wait_ms(50);
	/* close every writer connection: writers thaw at once */
	for (dwriter *w = D.writers; w; w = w->next)
		shutdown(w->fd, SHUT_RDWR);
	pthread_mutex_unlock(&D.mu);
	shadows_drop_volatile();
	/* connection threads may still be finishing: leave the event log and
	 * the configuration to the process exit */
	return 0;
}

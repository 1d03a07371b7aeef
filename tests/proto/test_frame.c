/*
 * test_frame.c - unit tests of src/proto/frame.c: the 4-byte big-endian
 * length + JSON body framing of the amberd protocol, over socketpairs and
 * pipes.
 *
 * What must hold:
 *   - frames arrive whole and in order, back to back, small and at the
 *     size limit, and the body is NUL-terminated for the caller;
 *   - an oversize frame is refused from its header alone: the body bytes
 *     are still unread in the socket afterwards (FIONREAD);
 *   - a zero-length frame, EOF inside a header and EOF inside a body are
 *     errors; EOF between frames is AMB_FRAME_EOF;
 *   - the incremental reader assembles a frame fed one byte at a time on a
 *     non-blocking socket, and its errors are sticky;
 *   - reads and writes survive a storm of signals without SA_RESTART
 *     (EINTR) and short transfers; a write to a closed peer is -EPIPE, not
 *     SIGPIPE (SIGPIPE keeps its default action, so it would kill us);
 *   - every sample message goes encode -> frame -> unframe -> decode and
 *     comes back byte-identical.
 * Threads are synchronised by the data itself (blocking reads), never by
 * sleeping.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "amber/proto.h"
#include "samples.h"

static void sp(int fds[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
}

static void put_hdr(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

static void test_roundtrip_small(void **state)
{
	(void)state;
	int fds[2];
	sp(fds);
	const char *msg = "{\"kind\":\"ok\",\"id\":1}";
	assert_int_equal(amb_frame_write(fds[0], msg, strlen(msg)), 0);
	/* the bytes on the wire: big-endian length, then the body */
	unsigned char raw[64];
	assert_int_equal(recv(fds[1], raw, sizeof(raw), MSG_PEEK), 4 + strlen(msg));
	assert_int_equal(raw[0], 0);
	assert_int_equal(raw[1], 0);
	assert_int_equal(raw[2], 0);
	assert_int_equal(raw[3], strlen(msg));
	char *buf;
	size_t len;
	assert_int_equal(amb_frame_read(fds[1], 0, &buf, &len), 0);
	assert_int_equal(len, strlen(msg));
	assert_memory_equal(buf, msg, len);
	assert_int_equal(buf[len], '\0');
	free(buf);
	close(fds[0]);
	assert_int_equal(amb_frame_read(fds[1], 0, &buf, &len), AMB_FRAME_EOF);
	assert_null(buf);
	assert_int_equal(len, 0);
	close(fds[1]);
}

static void test_back_to_back(void **state)
{
	(void)state;
	int fds[2];
	sp(fds);
	/* three frames in one write(2): the reader must not over-read */
	unsigned char wire[64];
	size_t n = 0;
	const char *bodies[] = { "{}", "[1]", "{\"a\":2}" };
	for (int i = 0; i < 3; i++) {
		put_hdr(wire + n, (uint32_t)strlen(bodies[i]));
		memcpy(wire + n + 4, bodies[i], strlen(bodies[i]));
		n += 4 + strlen(bodies[i]);
	}
	write_all(fds[0], wire, n);
	close(fds[0]);
	for (int i = 0; i < 3; i++) {
		char *buf;
		size_t len;
		assert_int_equal(amb_frame_read(fds[1], 4096, &buf, &len), 0);
		assert_int_equal(len, strlen(bodies[i]));
		assert_memory_equal(buf, bodies[i], len);
		free(buf);
	}
	char *buf;
	size_t len;
	assert_int_equal(amb_frame_read(fds[1], 4096, &buf, &len), AMB_FRAME_EOF);
	close(fds[1]);
}

typedef struct wjob {
	int fd;
	const char *buf;
	size_t len;
	int rc;
	size_t chunk;       /* 0: amb_frame_write; else raw header+body in chunks */
} wjob;

static void *writer_thread(void *arg)
{
	wjob *j = arg;
	if (!j->chunk) {
		j->rc = amb_frame_write(j->fd, j->buf, j->len);
		return NULL;
	}
	unsigned char hdr[4];
	put_hdr(hdr, (uint32_t)j->len);
	write_all(j->fd, hdr, 1);
	write_all(j->fd, hdr + 1, 3);
	for (size_t off = 0; off < j->len; off += j->chunk) {
		size_t n = j->len - off < j->chunk ? j->len - off : j->chunk;
		write_all(j->fd, j->buf + off, n);
	}
	j->rc = 0;
	return NULL;
}

static void test_at_the_limit(void **state)
{
	(void)state;
	int fds[2];
	sp(fds);
	size_t big = AMB_PROTO_MAX_MSG_DEFAULT;
	char *src = malloc(big);
	for (size_t i = 0; i < big; i++)
		src[i] = (char)('a' + i % 26);
	/* exactly the limit passes, in one write and in odd-sized pieces */
	for (int round = 0; round < 2; round++) {
		wjob j = { fds[0], src, big, -1, round ? 4093 : 0 };
		pthread_t t;
		assert_int_equal(pthread_create(&t, NULL, writer_thread, &j), 0);
		char *buf;
		size_t len;
		assert_int_equal(amb_frame_read(fds[1], 0, &buf, &len), 0);
		pthread_join(t, NULL);
		assert_int_equal(j.rc, 0);
		assert_int_equal(len, big);
		assert_memory_equal(buf, src, big);
		free(buf);
	}
	free(src);
	close(fds[0]);
	close(fds[1]);
}

static void test_oversize_refused_from_header(void **state)
{
	(void)state;
	int fds[2];
	sp(fds);
	unsigned char wire[4 + 100];
	put_hdr(wire, 5000);
	memset(wire + 4, 'x', 100);
	write_all(fds[0], wire, sizeof(wire));
	char *buf;
	size_t len;
	assert_int_equal(amb_frame_read(fds[1], 4096, &buf, &len), -EMSGSIZE);
	assert_null(buf);
	/* only the header was consumed */
	int pending = -1;
	assert_int_equal(ioctl(fds[1], FIONREAD, &pending), 0);
	assert_int_equal(pending, 100);
	close(fds[0]);
	close(fds[1]);

	/* the largest header value, against the default limit */
	sp(fds);
	put_hdr(wire, UINT32_MAX);
	write_all(fds[0], wire, 4);
	assert_int_equal(amb_frame_read(fds[1], 0, &buf, &len), -EMSGSIZE);
	/* default limit + 1 */
	put_hdr(wire, AMB_PROTO_MAX_MSG_DEFAULT + 1);
	write_all(fds[0], wire, 4);
	assert_int_equal(amb_frame_read(fds[1], 0, &buf, &len), -EMSGSIZE);
	/* zero length */
	put_hdr(wire, 0);
	write_all(fds[0], wire, 4);
	assert_int_equal(amb_frame_read(fds[1], 0, &buf, &len), -EBADMSG);
	close(fds[0]);
	close(fds[1]);

	/* limits of the API itself */
	assert_int_equal(amb_frame_read(0, AMB_PROTO_MAX_MSG_LIMIT + 1u, &buf, &len), -EINVAL);
	amb_frame_rx rx;
	assert_int_equal(amb_frame_rx_init(&rx, AMB_PROTO_MAX_MSG_LIMIT + 1u), -EINVAL);
	assert_int_equal(amb_frame_write(1, "x", 0), -EMSGSIZE);
	assert_int_equal(amb_frame_write(1, NULL, 5), -EMSGSIZE);
	assert_int_equal(amb_frame_write(1, "x", (size_t)AMB_PROTO_MAX_MSG_LIMIT + 1), -EMSGSIZE);
}

static void test_eof_mid_frame(void **state)
{
	(void)state;
	char *buf;
	size_t len;
	int fds[2];
	unsigned char wire[32];

	/* inside the header */
	for (int got = 1; got < 4; got++) {
		sp(fds);
		put_hdr(wire, 10);
		write_all(fds[0], wire, (size_t)got);
		close(fds[0]);
		assert_int_equal(amb_frame_read(fds[1], 0, &buf, &len), -EPROTO);
		assert_null(buf);
		close(fds[1]);
	}
	/* inside the body, at every position */
	for (int got = 0; got < 10; got++) {
		sp(fds);
		put_hdr(wire, 10);
		memset(wire + 4, '{', 10);
		write_all(fds[0], wire, 4 + (size_t)got);
		close(fds[0]);
		assert_int_equal(amb_frame_read(fds[1], 0, &buf, &len), -EPROTO);
		assert_null(buf);
		close(fds[1]);
	}
}

static void test_incremental_nonblocking(void **state)
{
	(void)state;
	int fds[2];
	sp(fds);
	assert_int_equal(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
	char *buf;
	size_t len;
	/* nothing there: the blocking helper says so and keeps nothing */
	assert_int_equal(amb_frame_read(fds[1], 0, &buf, &len), -EAGAIN);

	amb_frame_rx rx;
	assert_int_equal(amb_frame_rx_init(&rx, 4096), 0);
	const char *bodies[] = { "{\"kind\":\"ok\",\"id\":1}", "{\"kind\":\"ok\",\"id\":2}" };
	for (int f = 0; f < 2; f++) {
		unsigned char wire[64];
		size_t n = strlen(bodies[f]);
		put_hdr(wire, (uint32_t)n);
		memcpy(wire + 4, bodies[f], n);
		for (size_t i = 0; i < n + 4; i++) {
			assert_int_equal(amb_frame_rx_read(&rx, fds[1], &buf, &len), -EAGAIN);
			write_all(fds[0], wire + i, 1);
		}
		assert_int_equal(amb_frame_rx_read(&rx, fds[1], &buf, &len), 0);
		assert_int_equal(len, n);
		assert_memory_equal(buf, bodies[f], n);
		free(buf);
	}
	/* an oversize header ends the stream for good, even if good frames follow */
	unsigned char wire[8];
	put_hdr(wire, 4097);
	write_all(fds[0], wire, 4);
	assert_int_equal(amb_frame_rx_read(&rx, fds[1], &buf, &len), -EMSGSIZE);
	put_hdr(wire, 2);
	memcpy(wire + 4, "{}", 2);
	write_all(fds[0], wire, 6);
	assert_int_equal(amb_frame_rx_read(&rx, fds[1], &buf, &len), -EMSGSIZE);
	assert_null(buf);
	amb_frame_rx_free(&rx);
	close(fds[0]);
	close(fds[1]);

	/* a partly read frame is released by amb_frame_rx_free (ASan checks) */
	sp(fds);
	assert_int_equal(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(amb_frame_rx_init(&rx, 0), 0);
	put_hdr(wire, 100);
	write_all(fds[0], wire, 4);
	write_all(fds[0], "{\"a\"", 4);
	assert_int_equal(amb_frame_rx_read(&rx, fds[1], &buf, &len), -EAGAIN);
	assert_non_null(rx.body);
	assert_int_equal(rx.body_got, 4);
	amb_frame_rx_free(&rx);
	assert_null(rx.body);
	close(fds[0]);
	close(fds[1]);
}

static void test_write_errors(void **state)
{
	(void)state;
	/* SIGPIPE keeps its default action: if the write raised it, we'd die */
	signal(SIGPIPE, SIG_DFL);
	int fds[2];
	sp(fds);
	close(fds[1]);
	assert_int_equal(amb_frame_write(fds[0], "{}", 2), -EPIPE);
	close(fds[0]);

	/* a pipe is not a socket: the writev fallback */
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(amb_frame_write(p[1], "{\"x\":1}", 7), 0);
	close(p[1]);
	char *buf;
	size_t len;
	assert_int_equal(amb_frame_read(p[0], 0, &buf, &len), 0);
	assert_int_equal(len, 7);
	assert_memory_equal(buf, "{\"x\":1}", 7);
	free(buf);
	assert_int_equal(amb_frame_read(p[0], 0, &buf, &len), AMB_FRAME_EOF);
	close(p[0]);

	/* a full non-blocking socket */
	sp(fds);
	assert_int_equal(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
	size_t big = 4u << 20;
	char *src = calloc(1, big);
	assert_int_equal(amb_frame_write(fds[0], src, big), -EAGAIN);
	free(src);
	close(fds[0]);
	close(fds[1]);
	assert_int_equal(amb_frame_write(fds[0], "{}", 2), -EBADF);
}

/* ---------------------------------------------------------------------- */
/* EINTR                                                                   */

static atomic_int sig_count;

static void on_sig(int sig)
{
	(void)sig;
	atomic_fetch_add(&sig_count, 1);
}

typedef struct rjob {
	int fd;
	char *buf;
	size_t len;
	int rc;
	atomic_int done;
} rjob;

static void *reader_thread(void *arg)
{
	rjob *j = arg;
	j->rc = amb_frame_read(j->fd, AMB_PROTO_MAX_MSG_LIMIT, &j->buf, &j->len);
	atomic_store(&j->done, 1);
	return NULL;
}

static void test_eintr(void **state)
{
	(void)state;
	struct sigaction sa, old;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sig;
	sa.sa_flags = 0;     /* no SA_RESTART: interrupted calls fail with EINTR */
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);

	int fds[2];
	sp(fds);
	size_t big = 4u << 20;  /* far more than the socket buffer */
	char *src = malloc(big);
	for (size_t i = 0; i < big; i++)
		src[i] = (char)(i * 7);

	/* reader blocked in read(2), signalled over and over */
	rjob r = { fds[1], NULL, 0, -1, 0 };
	pthread_t rt;
	assert_int_equal(pthread_create(&rt, NULL, reader_thread, &r), 0);
	atomic_store(&sig_count, 0);
	while (atomic_load(&sig_count) < 200) {
		pthread_kill(rt, SIGUSR1);
		sched_yield();
	}
	/* then a writer that blocks on the full socket, signalled too */
	wjob w = { fds[0], src, big, -1, 0 };
	pthread_t wt;
	assert_int_equal(pthread_create(&wt, NULL, writer_thread, &w), 0);
	while (!atomic_load(&r.done)) {
		pthread_kill(wt, SIGUSR1);
		pthread_kill(rt, SIGUSR1);
		sched_yield();
	}
	pthread_join(wt, NULL);
	pthread_join(rt, NULL);
	assert_int_equal(w.rc, 0);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.len, big);
	assert_memory_equal(r.buf, src, big);
	print_message("signals delivered during the transfer: %d\n", atomic_load(&sig_count));
	free(r.buf);
	free(src);
	close(fds[0]);
	close(fds[1]);
	sigaction(SIGUSR1, &old, NULL);
}

/* ---------------------------------------------------------------------- */
/* messages over frames                                                    */

typedef struct sjob {
	int fd;
	int rc;
} sjob;

static void *send_samples(void *arg)
{
	sjob *j = arg;
	j->rc = 0;
	for (size_t i = 0; i < amb_n_samples && !j->rc; i++) {
		amb_msg m;
		char err[256];
		j->rc = amb_msg_decode(amb_samples[i].json, strlen(amb_samples[i].json), &m, err,
				       sizeof(err));
		if (j->rc)
			break;
		char *js;
		size_t l;
		j->rc = amb_msg_encode(&m, &js, &l);
		amb_msg_free(&m);
		if (!j->rc)
			j->rc = amb_frame_write(j->fd, js, l);
		free(js);
	}
	close(j->fd);
	return NULL;
}

static void test_messages_over_frames(void **state)
{
	(void)state;
	int fds[2];
	sp(fds);
	sjob j = { fds[0], -1 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, send_samples, &j), 0);
	size_t got = 0;
	for (;;) {
		char *buf;
		size_t len;
		int rc = amb_frame_read(fds[1], 0, &buf, &len);
		if (rc == AMB_FRAME_EOF)
			break;
		assert_int_equal(rc, 0);
		amb_msg m;
		char err[256];
		assert_int_equal(amb_msg_decode(buf, len, &m, err, sizeof(err)), 0);
		char *js;
		size_t l;
		assert_int_equal(amb_msg_encode(&m, &js, &l), 0);
		assert_int_equal(l, len);
		assert_memory_equal(js, buf, l);
		if (amb_samples[got].canonical)
			assert_string_equal(buf, amb_samples[got].json);
		free(js);
		free(buf);
		amb_msg_free(&m);
		got++;
	}
	pthread_join(t, NULL);
	assert_int_equal(j.rc, 0);
	assert_int_equal(got, amb_n_samples);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_small),
		cmocka_unit_test(test_back_to_back),
		cmocka_unit_test(test_at_the_limit),
		cmocka_unit_test(test_oversize_refused_from_header),
		cmocka_unit_test(test_eof_mid_frame),
		cmocka_unit_test(test_incremental_nonblocking),
		cmocka_unit_test(test_write_errors),
		cmocka_unit_test(test_eintr),
		cmocka_unit_test(test_messages_over_frames),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

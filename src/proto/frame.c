/*
 * frame.c - the frame layer of the amberd protocol (proto.h):
 *
 *   offset 0  4 bytes  body length L, unsigned big-endian, 1 <= L <= max
 *   offset 4  L bytes  body (one JSON object)
 *
 * The length is checked against the reader's limit as soon as the four
 * header bytes are in, before anything is allocated or read for the body:
 * an oversize frame costs the reader four bytes.  After -EMSGSIZE the
 * stream is out of step (the body is still in the socket), so the caller
 * answers with an error if it can and closes the connection.
 */
#include "amber/proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
	       (uint32_t)p[3];
}

/* sendmsg with MSG_NOSIGNAL on sockets, writev on anything else. */
static ssize_t out_vec(int fd, struct iovec *iov, int iovcnt, bool *is_sock)
{
	if (*is_sock) {
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n >= 0 || errno != ENOTSOCK)
			return n;
		*is_sock = false;
	}
	return writev(fd, iov, iovcnt);
}

int amb_frame_write(int fd, const void *buf, size_t len)
{
	if (len == 0 || len > AMB_PROTO_MAX_MSG_LIMIT || !buf)
		return -EMSGSIZE;
	unsigned char hdr[AMB_FRAME_HDR];
	put_be32(hdr, (uint32_t)len);

	struct iovec iov[2] = {
		{ .iov_base = hdr, .iov_len = sizeof(hdr) },
		{ .iov_base = (void *)buf, .iov_len = len },
	};
	struct iovec *v = iov;
	int cnt = 2;
	bool is_sock = true;
	while (cnt > 0) {
		ssize_t n = out_vec(fd, v, cnt, &is_sock);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
		}
		size_t done = (size_t)n;
		while (cnt > 0 && done >= v->iov_len) {
			done -= v->iov_len;
			v++;
			cnt--;
		}
		if (cnt > 0) {
			v->iov_base = (char *)v->iov_base + done;
			v->iov_len -= done;
		}
	}
	return 0;
}

int amb_frame_rx_init(amb_frame_rx *rx, size_t max)
{
	memset(rx, 0, sizeof(*rx));
	if (max == 0)
		max = AMB_PROTO_MAX_MSG_DEFAULT;
	if (max > AMB_PROTO_MAX_MSG_LIMIT)
		return -EINVAL;
	rx->max = max;
	return 0;
}

void amb_frame_rx_free(amb_frame_rx *rx)
{
	free(rx->body);
	rx->body = NULL;
	rx->hdr_got = 0;
	rx->body_len = 0;
	rx->body_got = 0;
}

/* Every result but a frame or -EAGAIN ends the stream: the reader no
 * longer knows where the next frame starts.  Later calls repeat it. */
static int fail(amb_frame_rx *rx, int rc)
{
	if (rc == -EAGAIN)
		return rc;
	free(rx->body);
	rx->body = NULL;
	rx->failed = rc;
	return rc;
}

/* One read(2), EINTR retried.  Returns bytes (> 0), 0 at EOF, -errno. */
static ssize_t in(int fd, void *p, size_t n)
{
	for (;;) {
		ssize_t r = read(fd, p, n);
		if (r >= 0)
			return r;
		if (errno != EINTR)
			return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	}
}

int amb_frame_rx_read(amb_frame_rx *rx, int fd, char **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	if (rx->failed)
		return rx->failed;
	if (rx->max == 0 || rx->max > AMB_PROTO_MAX_MSG_LIMIT)
		return -EINVAL;

	while (rx->hdr_got < AMB_FRAME_HDR) {
		ssize_t n = in(fd, rx->hdr + rx->hdr_got, AMB_FRAME_HDR - rx->hdr_got);
		if (n < 0)
			return fail(rx, (int)n);
		if (n == 0)
			return fail(rx, rx->hdr_got == 0 ? AMB_FRAME_EOF : -EPROTO);
		rx->hdr_got += (size_t)n;
		if (rx->hdr_got < AMB_FRAME_HDR)
			continue;
		uint32_t l = get_be32(rx->hdr);
		if (l == 0)
			return fail(rx, -EBADMSG);
		if (l > rx->max)
			return fail(rx, -EMSGSIZE);
		/* +1: a NUL after the body, for the convenience of callers */
		rx->body = malloc((size_t)l + 1);
		if (!rx->body)
			return fail(rx, -ENOMEM);
		rx->body_len = l;
		rx->body_got = 0;
	}

	while (rx->body_got < rx->body_len) {
		ssize_t n = in(fd, rx->body + rx->body_got, rx->body_len - rx->body_got);
		if (n < 0)
			return fail(rx, (int)n);
		if (n == 0)
			return fail(rx, -EPROTO);
		rx->body_got += (size_t)n;
	}

	rx->body[rx->body_len] = '\0';
	*buf = rx->body;
	*len = rx->body_len;
	rx->body = NULL;
	rx->hdr_got = 0;
	rx->body_len = 0;
	rx->body_got = 0;
	return 0;
}

int amb_frame_read(int fd, size_t max, char **buf, size_t *len)
{
	amb_frame_rx rx;
	*buf = NULL;
	*len = 0;
	int rc = amb_frame_rx_init(&rx, max);
	if (rc)
		return rc;
	rc = amb_frame_rx_read(&rx, fd, buf, len);
	amb_frame_rx_free(&rx);
	return rc;
}

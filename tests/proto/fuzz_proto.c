/*
 * fuzz_proto.c - libFuzzer target for the amberd protocol decoder and
 * frame reader (src/proto).  Built with clang -fsanitize=fuzzer,address,
 * undefined (tests/proto/CMakeLists.txt) and run by the CTest test
 * proto/fuzz for a bounded time.
 *
 * Each input is used twice:
 *   1. as one frame body: amb_msg_decode() must either refuse it (with a
 *      printable error and nothing to free) or accept it, and then the
 *      message must encode, decode again and encode to the same bytes;
 *   2. as a byte stream through a non-blocking pipe: amb_frame_rx_read()
 *      splits it into frames (limit 4096, so oversize headers are common)
 *      and each frame goes through the decoder too.
 * A violated invariant calls abort(), which libFuzzer reports as a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "amber/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_decode(const char *buf, size_t len)
{
	amb_msg m;
	char err[256];
	int rc = amb_msg_decode(buf, len, &m, err, sizeof(err));
	if (rc) {
		if ((rc != -EBADMSG && rc != -EMSGSIZE && rc != -ENOMEM) ||
		    m.kind != AMB_MSG_NONE || !err[0])
			abort();
		for (const char *p = err; *p; p++)
			if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
				abort();
		return;
	}
	char *j1, *j2;
	size_t l1, l2;
	if (amb_msg_encode(&m, &j1, &l1))
		abort();
	amb_msg m2;
	if (amb_msg_decode(j1, l1, &m2, err, sizeof(err)))
		abort();
	if (amb_msg_encode(&m2, &j2, &l2))
		abort();
	if (l1 != l2 || memcmp(j1, j2, l1) != 0 || m2.kind != m.kind || m2.id != m.id)
		abort();
	free(j1);
	free(j2);
	amb_msg_free(&m2);
	amb_msg_free(&m);
}

static void check_frames(const uint8_t *data, size_t size)
{
	int p[2];
	if (size > 60000 || pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
		return;
	size_t off = 0;
	while (off < size) {
		ssize_t n = write(p[1], data + off, size - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(p[1]);
	amb_frame_rx rx;
	if (amb_frame_rx_init(&rx, 4096))
		abort();
	for (;;) {
		char *buf;
		size_t len;
		int rc = amb_frame_rx_read(&rx, p[0], &buf, &len);
		if (rc != 0) {
			if (rc != AMB_FRAME_EOF && rc != -EPROTO && rc != -EMSGSIZE &&
			    rc != -EBADMSG && rc != -EAGAIN)
				abort();
			if (buf)
				abort();
			break;
		}
		if (!buf || len == 0 || len > 4096 || buf[len] != '\0')
			abort();
		check_decode(buf, len);
		free(buf);
	}
	amb_frame_rx_free(&rx);
	close(p[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 0)
		check_decode((const char *)data, size);
	check_frames(data, size);
	return 0;
}

/*
 * uuid.c - amb_uuid_generate() (writer.h) and the helpers of libamber.h
 * that are not specific to the client or the writer.
 *
 * A version-4 UUID is 16 random bytes from getrandom(2) with the version
 * nibble (byte 6, high half) set to 4 and the variant bits (byte 8, top
 * two) set to 10, printed in the canonical lower-case 8-4-4-4-12 form.
 */
#include "amber/client.h"
#include "amber/writer.h"
#include "libamber.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char last_error[AMB_LIB_ERR_MAX];

int amb_lib_last_error_set(int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	return rc;
}

void amb_lib_last_error_clear(void)
{
	last_error[0] = '\0';
}

const char *amb_client_last_error(void)
{
	return last_error;
}

int amb_lib_path_check(const char *path)
{
	struct sockaddr_un sa;
	size_t n = strlen(path);
	if (n == 0)
		return -EINVAL;
	if (n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	return 0;
}

int amb_lib_connect(const char *path, int extra_flags)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int rc = amb_lib_path_check(path);
	if (rc)
		return rc;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | extra_flags, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		/* an interrupted blocking connect goes on in the background */
		if (errno == EINTR)
			continue;
		if (errno == EISCONN)
			break;
		rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int64_t amb_lib_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int amb_lib_ms_until(int64_t deadline_ns)
{
	int64_t left = deadline_ns - amb_lib_now_ns();
	if (left <= 0)
		return 0;
	int64_t ms = (left + 999999) / 1000000;
	return ms > INT_MAX ? INT_MAX : (int)ms;
}

int amb_uuid_generate(amb_uuid out)
{
	unsigned char b[16];
	size_t got = 0;
	while (got < sizeof(b)) {
		ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	static const char hex[] = "0123456789abcdef";
	char *p = out;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[b[i] >> 4];
		*p++ = hex[b[i] & 15];
	}
	*p = '\0';
	return 0;
}

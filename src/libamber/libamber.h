/*
 * libamber.h - private helpers shared by client.c, writer.c and uuid.c.
 *
 * The per-thread "last error" buffer behind amb_client_last_error() is
 * filled by amb_client_connect() and amb_writer_start(), which have no
 * object to keep a message in when they fail.
 */
#ifndef AMBER_LIBAMBER_LIBAMBER_H
#define AMBER_LIBAMBER_LIBAMBER_H

#include <stdint.h>

/* Room for our own words, a socket path (<= 107 bytes) and one protocol
 * message text (<= AMB_TEXT_MAX bytes). */
#define AMB_LIB_ERR_MAX 1600

/* Set this thread's last error; returns rc so callers can `return` it. */
int amb_lib_last_error_set(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void amb_lib_last_error_clear(void);

/* Socket path length check: 0, or -EINVAL (empty) / -ENAMETOOLONG (does
 * not fit sun_path). */
int amb_lib_path_check(const char *path);

/*
 * Create a UNIX stream socket (SOCK_CLOEXEC plus extra_flags, e.g.
 * SOCK_NONBLOCK) and connect it to path.  Returns the descriptor or
 * -errno (-ENOENT, -ECONNREFUSED, -EAGAIN when a non-blocking connect
 * finds the backlog full, -ENAMETOOLONG).
 */
int amb_lib_connect(const char *path, int extra_flags);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t amb_lib_now_ns(void);

/* Milliseconds from now until deadline_ns, rounded up so that a poll(2)
 * that times out has really reached the deadline; 0 if it has passed. */
int amb_lib_ms_until(int64_t deadline_ns);

#endif

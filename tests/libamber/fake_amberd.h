/*
 * fake_amberd.h - a tiny stand-in for amberd in the libamber tests: a
 * listening UNIX socket in a mkdtemp(3) directory and helpers that speak
 * the protocol with amb_frame_* and amb_msg_*.  The helpers return codes
 * instead of asserting so that server threads can use them (cmocka's
 * asserts belong to the main thread).
 */
#ifndef AMBER_TESTS_FAKE_AMBERD_H
#define AMBER_TESTS_FAKE_AMBERD_H

#include <stdbool.h>

#include "amber/proto.h"

#define FAKE_MAX_MESSAGE 65536u
#define FAKE_TIMEOUT_MS 5000   /* generous: nothing here should take long */

typedef struct fake_srv {
	char dir[64];
	char path[128];        /* dir/amberd.sock */
	int lfd;               /* listening socket, -1 when not listening */
} fake_srv;

/* mkdtemp a directory and listen on dir/amberd.sock.  0 or -errno. */
int fake_listen(fake_srv *s);
/* Close the listening socket and unlink it (the directory stays). */
void fake_unlisten(fake_srv *s);
/* Listen again on the same path.  0 or -errno. */
int fake_relisten(fake_srv *s);
/* Unlisten and remove the directory. */
void fake_cleanup(fake_srv *s);

/* Accept one connection within timeout_ms: the fd or -errno (-ETIMEDOUT). */
int fake_accept(fake_srv *s, int timeout_ms);
/* Encode and send.  0 or -errno. */
int fake_send(int fd, const amb_msg *m);
/* Receive one message within timeout_ms: 0, AMB_FRAME_EOF, -ETIMEDOUT,
 * -EBADMSG (not decodable) or -errno. */
int fake_recv(int fd, int timeout_ms, amb_msg *out);
/* Receive hello (kept in *hello if not NULL) and answer welcome with
 * FAKE_MAX_MESSAGE, hold 10000 ms and event timeout 60000 ms. */
int fake_welcome(int fd, amb_msg *hello);

/* The metadata the writer tests register (two components, an exclude). */
void fake_md(amb_writer_md *md);

#endif

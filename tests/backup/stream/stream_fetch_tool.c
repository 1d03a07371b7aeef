/*
 * stream_fetch_tool.c - stream one backup from `amber-store serve` into a
 * directory, for the shell tests (stream_test.sh).
 *
 *   stream_fetch_tool [--type full|copy|incremental|differential]
 *                     [--kill-after BYTES] [--hold FILE] [--fail]
 *                     INSTANCE_DIR DEST_DIR
 *
 * --kill-after BYTES  SIGKILL ourselves once BYTES of file data arrived (a
 *                     client dying in the middle of a stream)
 * --hold FILE         after the first frame, create FILE and wait (up to
 *                     120 s) until someone removes it (keeps the stream busy)
 * --fail              tell serve the backup failed (nothing is recorded)
 *
 * On success prints what arrived as key=value lines (gen_low=0x0000001A,
 * gen_high, pages, corrected, bytes, page_size, prefix, ndb, db=NAME per
 * database, log_signature).  Exit: the amb_stream_* code (0, 1 failed,
 * 2 bad input, 3 retryable), 1 for connection failures (negative codes);
 * the message goes to stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backup/stream/stream_client.h"

typedef struct opts {
	uint64_t kill_after;
	bool kill;
	const char *hold;
	bool held;
} opts;

static void progress(void *arg, uint64_t done)
{
	opts *o = arg;
	if (o->kill && done >= o->kill_after)
		raise(SIGKILL);
	if (o->hold && !o->held) {
		o->held = true;
		FILE *f = fopen(o->hold, "w");
		if (!f) {
			fprintf(stderr, "stream_fetch_tool: %s: %s\n", o->hold, strerror(errno));
			exit(2);
		}
		fclose(f);
		for (int i = 0; i < 120 * 50 && access(o->hold, F_OK) == 0; i++) {
			struct timespec ts = {0, 20 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
}

static int usage(void)
{
	fprintf(stderr, "usage: stream_fetch_tool [--type T] [--kill-after BYTES] [--hold FILE] "
	                "[--fail] INSTANCE_DIR DEST_DIR\n");
	return 2;
}

static int exit_of(int rc)
{
	return rc < 0 ? 1 : rc;
}

int main(int argc, char **argv)
{
	const char *type = "full", *dir = NULL, *dest = NULL;
	bool fail = false;
	opts o = {0};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--type") == 0 && i + 1 < argc) {
			type = argv[++i];
		} else if (strcmp(a, "--kill-after") == 0 && i + 1 < argc) {
			o.kill = true;
			o.kill_after = strtoull(argv[++i], NULL, 10);
		} else if (strcmp(a, "--hold") == 0 && i + 1 < argc) {
			o.hold = argv[++i];
		} else if (strcmp(a, "--fail") == 0) {
			fail = true;
		} else if (a[0] == '-') {
			return usage();
		} else if (!dir) {
			dir = a;
		} else if (!dest) {
			dest = a;
		} else {
			return usage();
		}
	}
	if (!dir || !dest)
		return usage();

	char err[1024] = "";
	amb_stream_conn *c = NULL;
	int rc = amb_stream_open(dir, type, &c, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "stream_fetch_tool: open: %s (rc %d)\n", err, rc);
		return exit_of(rc);
	}
	amb_stream_info info;
	rc = amb_stream_fetch(c, dest, &info, progress, &o, err, sizeof(err));
	if (rc)
		fprintf(stderr, "stream_fetch_tool: fetch: %s (rc %d)\n", err, rc);
	int crc = amb_stream_complete(c, rc == 0 && !fail, err, sizeof(err));
	if (crc)
		fprintf(stderr, "stream_fetch_tool: complete: %s (rc %d)\n", err, crc);
	amb_stream_close(c);
	if (rc)
		return exit_of(rc);
	if (crc)
		return exit_of(crc);
	printf("gen_low=0x%08" PRIX32 "\ngen_high=0x%08" PRIX32 "\npages=%" PRIu64
	       "\ncorrected=%" PRIu64 "\nbytes=%" PRIu64 "\npage_size=%" PRIu32
	       "\nprefix=%s\nndb=%d\n",
	       info.gen_low, info.gen_high, info.pages, info.corrected, info.bytes, info.page_size,
	       info.prefix, info.ndb);
	for (int d = 0; d < info.ndb; d++)
		printf("db=%s\n", info.dbnames[d]);
	printf("log_signature=%s\n", info.log_signature);
	return 0;
}

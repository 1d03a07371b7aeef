/*
 * fill_db.c - amber-bench-fill: fill an instance's first database to about
 * SIZE_MB MiB through the API, then shut it down cleanly.
 *
 * usage: amber-bench-fill DIR SIZE_MB
 *
 * If DIR holds no instance one is created (64 MiB log files).  Values are a
 * mix: about half the records small (100..2000 bytes, inline in data pages),
 * half large (8..64 KiB, in overflow pages), so a check of the file meets
 * every page type.  Prints the database path and its size.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "amber/store.h"

static uint64_t rng = 0x243F6A8885A308D3ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void die(const char *what)
{
	fprintf(stderr, "amber-bench-fill: %s: %s\n", what, ams_errmsg());
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: amber-bench-fill DIR SIZE_MB\n");
		return 2;
	}
	const char *dir = argv[1];
	uint64_t target = strtoull(argv[2], NULL, 10) << 20;
	if (!target) {
		fprintf(stderr, "amber-bench-fill: bad size '%s'\n", argv[2]);
		return 2;
	}
	ams_instance *in;
	ams_open_opts oo = {0};
	oo.checkpoint_depth = 256u << 20;
	int rc = ams_open(dir, &oo, &in);
	if (rc == AMS_ENOTFOUND || rc == AMS_ENOTDB) {
		ams_create_opts co = {0};
		co.log_size = 64u << 20;
		if (ams_create(dir, &co))
			die("ams_create");
		rc = ams_open(dir, &oo, &in);
	}
	if (rc)
		die("ams_open");
	const char *path = ams_db_path(in, 0);

	enum { MAXV = 64 * 1024 };
	/* a transaction's record must fit two log files */
	ams_info info;
	if (ams_info_get(in, &info))
		die("ams_info_get");
	size_t txn_bytes = info.log_size / 2 < (4u << 20) ? (size_t)info.log_size / 2 : (4u << 20);
	unsigned char *val = malloc(MAXV + 4096);
	if (!val) {
		fprintf(stderr, "amber-bench-fill: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < MAXV + 4096; i++)
		val[i] = (unsigned char)next_rand();

	/* the file grows by whole extensions; stop when the payload plus the
	 * per-page overhead reaches the target */
	uint64_t est = 0, nrec = 0, bytes = 0;
	while (est < target) {
		ams_txn *t;
		if (ams_txn_begin(in, &t))
			die("ams_txn_begin");
		size_t in_txn = 0;
		while (in_txn + MAXV < txn_bytes || in_txn == 0) {
			size_t vlen;
			if (next_rand() & 1)
				vlen = 100 + next_rand() % 1901;
			else
				vlen = 8192 + next_rand() % (MAXV - 8192 + 1);
			char key[32];
			int klen = snprintf(key, sizeof(key), "rec%012" PRIu64, nrec++);
			if (ams_txn_put(t, next_rand() % 4 ? "mail" : "meta", key, (size_t)klen,
			                val + next_rand() % 4096, vlen))
				die("ams_txn_put");
			in_txn += vlen;
			bytes += vlen;
			/* large values take whole overflow pages of 8156 bytes of data
			 * (8 KiB pages), small ones share data pages */
			if (vlen >= 8192)
				est += (vlen + 8155) / 8156 * 8192;
			else
				est += vlen + 48;
		}
		if (ams_txn_commit(t))
			die("ams_txn_commit");
	}
	char pathcopy[4096];
	snprintf(pathcopy, sizeof(pathcopy), "%s", path);
	if (ams_close(in))
		die("ams_close");
	struct stat st;
	if (stat(pathcopy, &st) < 0) {
		perror(pathcopy);
		return 1;
	}
	printf("%s %" PRIu64 " records, %" PRIu64 " value bytes, file %lld bytes\n", pathcopy,
	       nrec, bytes, (long long)st.st_size);
	return 0;
}

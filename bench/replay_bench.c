/*
 * replay_bench.c - amber-bench-replay: how fast soft recovery replays the
 * log, against the raw sequential write rate of the same disk.
 *
 *  1. create an instance, open it with a checkpoint depth larger than the
 *     run (no checkpoint after the one at open), commit --mb MiB of log in
 *     transactions of 32 KiB values;
 *  2. ams_abandon() (a crash: nothing written after the last commit);
 *  3. time ams_open(), which replays the whole log from the checkpoint,
 *     with the log in the page cache ("warm") and, as root with --cold, on
 *     a copy of the crashed instance after dropping the caches;
 *  4. time a second ams_open() of the now clean instance (open without
 *     replay) to separate the replay from the fixed cost of an open;
 *  5. time a C loop writing the same number of bytes (1 MiB pwrites, then
 *     one fsync) to a file on the same disk: the raw sequential write rate.
 *
 * usage: amber-bench-replay [--dir DIR] [--mb 300] [--value 32768]
 *                           [--log-size BYTES] [--cold] [--markdown]
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "amber/store.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
	fprintf(stderr, "amber-bench-replay: %s: %s\n", what, ams_errmsg());
	exit(1);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

static void rm_rf(const char *path)
{
	nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int drop_caches(void)
{
	sync();
	FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
	if (!f)
		return -1;
	int ok = fputs("3\n", f) >= 0;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static uint64_t dir_bytes;
static int du_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (flag == FTW_F)
		dir_bytes += (uint64_t)sb->st_size;
	return 0;
}

/* Raw sequential write of n bytes: 1 MiB pwrites, one fsync.  MB/s. */
static double raw_write(const char *dir, uint64_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/amber-bench-replay.raw.%d", dir, (int)getpid());
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror(path);
		exit(1);
	}
	size_t chunk = 1u << 20;
	unsigned char *buf = malloc(chunk);
	if (!buf)
		exit(1);
	for (size_t i = 0; i < chunk; i++)
		buf[i] = (unsigned char)(i * 131 + 7);
	double t0 = now_s();
	for (uint64_t off = 0; off < n; off += chunk) {
		if (pwrite(fd, buf, chunk, (off_t)off) != (ssize_t)chunk) {
			perror("pwrite");
			exit(1);
		}
	}
	if (fsync(fd) < 0) {
		perror("fsync");
		exit(1);
	}
	double el = now_s() - t0;
	close(fd);
	unlink(path);
	free(buf);
	return (double)n / 1e6 / el;
}

typedef struct opened {
	double secs;
	ams_info info;
} opened;

static void timed_open(const char *dir, opened *o)
{
	ams_instance *in;
	ams_open_opts oo = {0};
	oo.checkpoint_depth = 1ull << 40;
	double t0 = now_s();
	if (ams_open(dir, &oo, &in))
		die("ams_open (timed)");
	o->secs = now_s() - t0;
	if (ams_info_get(in, &o->info))
		die("ams_info_get");
	if (ams_close(in))
		die("ams_close");
}

int main(int argc, char **argv)
{
	const char *base = "/var/tmp";
	uint64_t mb = 300, log_size = 0;
	size_t vsize = 32768;
	int cold = 0, markdown = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--cold")) {
			cold = 1;
		} else if (!strcmp(a, "--markdown")) {
			markdown = 1;
		} else if (v && !strcmp(a, "--dir")) {
			base = v, i++;
		} else if (v && !strcmp(a, "--mb")) {
			mb = strtoull(v, NULL, 10), i++;
		} else if (v && !strcmp(a, "--value")) {
			vsize = strtoul(v, NULL, 10), i++;
		} else if (v && !strcmp(a, "--log-size")) {
			log_size = strtoull(v, NULL, 0), i++;
		} else {
			fprintf(stderr, "usage: amber-bench-replay [--dir DIR] [--mb 300] "
			                "[--value 32768]\n"
			                "                          [--log-size BYTES] [--cold] "
			                "[--markdown]\n");
			return 2;
		}
	}
	if (cold && geteuid() != 0) {
		fprintf(stderr, "amber-bench-replay: --cold needs root (drop_caches); "
		                "skipping it\n");
		cold = 0;
	}
	char dir[4096], copy[4200];
	snprintf(dir, sizeof(dir), "%s/amber-bench-replay.%d", base, (int)getpid());
	snprintf(copy, sizeof(copy), "%s.copy", dir);
	rm_rf(dir);
	rm_rf(copy);

	/* 1. fill the log */
	ams_create_opts co = {0};
	co.log_size = log_size;
	if (ams_create(dir, &co))
		die("ams_create");
	ams_instance *in;
	ams_open_opts oo = {0};
	oo.checkpoint_depth = 1ull << 40;
	if (ams_open(dir, &oo, &in))
		die("ams_open");
	ams_info info0, info1;
	if (ams_info_get(in, &info0))
		die("ams_info_get");
	size_t per_txn = info0.log_size / 2 / (vsize + 4096 + 512);
	if (per_txn < 1)
		per_txn = 1;
	if (per_txn > 8)
		per_txn = 8;
	unsigned char *val = malloc(vsize);
	if (!val)
		return 1;
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < vsize; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		val[i] = (unsigned char)x;
	}
	uint64_t target = mb << 20, nrec = 0, ntxn = 0;
	double tf = now_s();
	for (;;) {
		if (ams_info_get(in, &info1))
			die("ams_info_get");
		if (info1.lsn_durable - info0.lsn_durable >= target)
			break;
		ams_txn *t;
		if (ams_txn_begin(in, &t))
			die("ams_txn_begin");
		for (size_t k = 0; k < per_txn; k++) {
			char key[32];
			int klen = snprintf(key, sizeof(key), "m%012" PRIu64, nrec++);
			val[0] = (unsigned char)nrec;
			if (ams_txn_put(t, "mail", key, (size_t)klen, val, vsize))
				die("ams_txn_put");
		}
		if (ams_txn_commit(t))
			die("ams_txn_commit");
		ntxn++;
	}
	double fill_s = now_s() - tf;
	uint64_t log_bytes = info1.lsn_durable - info0.lsn_durable;
	uint32_t gens = info1.gen_current - info1.gen_checkpoint + 1;
	/* 2. crash */
	ams_abandon(in);
	dir_bytes = 0;
	nftw(dir, du_cb, 16, FTW_PHYS);
	fprintf(stderr, "# filled %.1f MB of log (%" PRIu64 " txns, %" PRIu64 " records of %zu B, "
	        "%u generations of %" PRIu64 " B) in %.1f s; instance dir %.1f MB\n",
	        (double)log_bytes / 1e6, ntxn, nrec, vsize, gens, info1.log_size, fill_s,
	        (double)dir_bytes / 1e6);
	if (cold) {
		char cmd[9000];
		snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", dir, copy);
		if (system(cmd) != 0) {
			fprintf(stderr, "amber-bench-replay: %s failed\n", cmd);
			return 1;
		}
	}
	sync();

	/* 3. replay, warm */
	opened w, clean, c = {0};
	timed_open(dir, &w);
	/* 4. open without replay */
	timed_open(dir, &clean);
	/* 3b. replay, cold */
	if (cold) {
		rm_rf(dir);
		if (rename(copy, dir) < 0) {
			perror("rename");
			return 1;
		}
		if (drop_caches()) {
			perror("drop_caches");
			return 1;
		}
		timed_open(dir, &c);
	}
	rm_rf(dir);
	/* 5. raw sequential writes of the same amount */
	double raw = raw_write(base, (log_bytes + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1));

	double mbl = (double)log_bytes / 1e6;
	double rw = mbl / w.secs, rwx = mbl / (w.secs - clean.secs);
	double rc = cold ? mbl / c.secs : 0;
	if (markdown) {
		printf("| measure | value |\n|:--|--:|\n");
		printf("| log replayed | %.1f MB in %u generations of %.0f KiB (%" PRIu64
		       " transactions, %zu-byte values) |\n",
		       mbl, gens, (double)info1.log_size / 1024, ntxn, vsize);
		printf("| ams_open with replay, log in page cache | %.2f s = **%.0f MB/s** |\n",
		       w.secs, rw);
		printf("| ams_open of the clean instance afterwards (no replay) | %.2f s |\n",
		       clean.secs);
		printf("| replay alone (difference) | %.0f MB/s |\n", rwx);
		if (cold)
			printf("| ams_open with replay, caches dropped "
			       "| %.2f s = **%.0f MB/s** |\n", c.secs, rc);
		else
			printf("| ams_open with replay, caches dropped | not run: needs root |\n");
		printf("| raw sequential write of as many bytes (1 MiB pwrites, fsync) "
		       "| **%.0f MB/s** |\n", raw);
		printf("| replay (warm) / raw write | %.2f |\n", rw / raw);
	} else {
		printf("log replayed            %.1f MB (%u generations)\n", mbl, gens);
		printf("open+replay warm        %.2f s  %.0f MB/s\n", w.secs, rw);
		printf("open clean (no replay)  %.2f s\n", clean.secs);
		printf("replay alone            %.0f MB/s\n", rwx);
		if (cold)
			printf("open+replay cold        %.2f s  %.0f MB/s\n", c.secs, rc);
		printf("raw sequential write    %.0f MB/s\n", raw);
		printf("ratio replay/raw        %.2f\n", rw / raw);
	}
	free(val);
	return 0;
}

/*
 * test_stream_server.c - the streaming backup in one process: the listener
 * of src/store/tool/serve_stream.c on a real instance, and the client of
 * src/backup/stream.  Covers: a full stream proved by hard recovery of the
 * copy, what full/copy/incremental record and truncate, busy (a second
 * client, a freeze), a restore taking the instance away before and during a
 * stream, abandoned streams recording nothing, the socket file rules, and
 * a fake server whose names the client must refuse.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "amber/proto.h"
#include "amber/store.h"
#include "backup/stream/stream_client.h"
#include "common/vfs.h"
#include "store/dbfile.h"
#include "store/format.h"
#include "store/log.h"
#include "store/restoreenv.h"
#include "store/tool/serve_stream.h"

#define VLEN 20000

typedef struct fx {
	char tmp[128];
	char dir[256];  /* the instance */
	char dest[256]; /* where backups go */
	ams_instance *in;
	serve_stream *ss;
	int nkeys;
} fx;

static const char *const dbs2[] = {"priv1.edb", "pub1.edb"};

static void fill(unsigned char *v, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		v[i] = (unsigned char)((i * 31 + seed * 17 + (i >> 8)) & 0xff);
}

/* Commit keys k<from>..k<to-1> of VLEN bytes, into table t0 (database 0)
 * and t1 (database 1) alternately. */
static void put_keys(ams_instance *in, int from, int to)
{
	unsigned char *v = malloc(VLEN);
	assert_non_null(v);
	for (int i = from; i < to; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		fill(v, VLEN, (unsigned)i);
		ams_txn *x;
		assert_int_equal(ams_txn_begin(in, &x), 0);
		if (i < 2)
			assert_int_equal(ams_txn_create_table(x, i ? "t1" : "t0", i), 0);
		assert_int_equal(ams_txn_put(x, i % 2 ? "t1" : "t0", k, strlen(k), v, VLEN), 0);
		int rc = ams_txn_commit(x);
		if (rc)
			fail_msg("commit: %s", ams_errmsg());
	}
	free(v);
}

static void expect_keys(ams_instance *in, int n)
{
	unsigned char *want = malloc(VLEN);
	assert_non_null(want);
	for (int i = 0; i < n; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		void *val = NULL;
		size_t vlen = 0;
		int rc = ams_get(in, i % 2 ? "t1" : "t0", k, strlen(k), &val, &vlen);
		if (rc)
			fail_msg("key %s: %s", k, ams_errmsg());
		fill(want, VLEN, (unsigned)i);
		assert_int_equal(vlen, VLEN);
		assert_memory_equal(val, want, VLEN);
		free(val);
	}
	free(want);
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	snprintf(f->tmp, sizeof(f->tmp), "/tmp/amber-stream-XXXXXX");
	assert_non_null(mkdtemp(f->tmp));
	snprintf(f->dir, sizeof(f->dir), "%s/inst", f->tmp);
	snprintf(f->dest, sizeof(f->dest), "%s/dest", f->tmp);
	assert_int_equal(mkdir(f->dest, 0700), 0);
	ams_create_opts co = {.log_size = 65536, .databases = dbs2, .ndatabases = 2};
	if (ams_create(f->dir, &co))
		fail_msg("create: %s", ams_errmsg());
	/* a small checkpoint depth: the checkpoint moves, so old logs pile up
	 * that a full backup may delete */
	ams_open_opts oo = {.checkpoint_depth = 64 * 1024};
	if (ams_open(f->dir, &oo, &f->in))
		fail_msg("open: %s", ams_errmsg());
	f->nkeys = 40;
	put_keys(f->in, 0, f->nkeys);
	serve_instance_set(f->in);
	assert_int_equal(serve_stream_start(f->dir, true, &f->ss), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;
	serve_stream_stop(f->ss);
	serve_instance_set(NULL);
	if (f->in)
		assert_int_equal(ams_close(f->in), 0);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->tmp);
	int rc = system(cmd);
	free(f);
	return rc;
}

static void hdr_of(const fx *f, const char *db, amb_dbhdr *h)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/%s", f->dir, db);
	amb_vfs *v = amb_vfs_posix();
	int fd = v->open(v, path, O_RDONLY, 0);
	assert_true(fd >= 0);
	int st = 0;
	assert_int_equal(amb_dbhdr_load(v, fd, path, h, &st), 0);
	v->close(v, fd);
}

static bool log_exists(const char *dir, uint32_t gen)
{
	char path[400];
	amb_log_path(path, sizeof(path), dir, "E00", gen);
	return access(path, F_OK) == 0;
}

static int count_suffix(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	struct dirent *de;
	size_t sl = strlen(suffix);
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l >= sl && strcmp(de->d_name + l - sl, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* Open, fetch into f->dest, complete with @p success. */
static void stream_ok(fx *f, const char *type, amb_stream_info *info, int success)
{
	char err[512] = "";
	amb_stream_conn *c = NULL;
	int rc = amb_stream_open(f->dir, type, &c, err, sizeof(err));
	if (rc)
		fail_msg("open %s: %d: %s", type, rc, err);
	rc = amb_stream_fetch(c, f->dest, info, NULL, NULL, err, sizeof(err));
	if (rc)
		fail_msg("fetch %s: %d: %s", type, rc, err);
	rc = amb_stream_complete(c, success, err, sizeof(err));
	if (rc)
		fail_msg("complete %s: %d: %s", type, rc, err);
	amb_stream_close(c);
}

/* ------------------------------------------------------------- full */

static void progress_count(void *arg, uint64_t done)
{
	uint64_t *last = arg;
	assert_true(done >= *last);
	*last = done;
}

static void test_full_roundtrip(void **state)
{
	fx *f = *state;
	ams_info before;
	assert_int_equal(ams_info_get(f->in, &before), 0);
	assert_true(before.gen_oldest < before.gen_checkpoint); /* something to truncate */

	char err[512] = "";
	amb_stream_conn *c = NULL;
	assert_int_equal(amb_stream_open(f->dir, "full", &c, err, sizeof(err)), 0);
	amb_stream_info info;
	uint64_t last = 0;
	int rc = amb_stream_fetch(c, f->dest, &info, progress_count, &last, err, sizeof(err));
	if (rc)
		fail_msg("fetch: %d: %s", rc, err);
	assert_int_equal(last, info.bytes);
	assert_int_equal(info.ndb, 2);
	assert_string_equal(info.dbnames[0], "priv1.edb");
	assert_string_equal(info.dbnames[1], "pub1.edb");
	assert_string_equal(info.prefix, "E00");
	assert_int_equal(info.page_size, 8192);
	/* from the checkpoint when the stream began (it may have moved since
	 * `before`: checkpoints run in the background) */
	assert_true(info.gen_low >= before.gen_checkpoint);
	assert_true(info.gen_low > before.gen_oldest);
	assert_true(info.gen_high >= info.gen_low);
	assert_int_equal(info.corrected, 0);
	assert_int_equal(strlen(info.log_signature), 32);
	/* every page of both databases and every log arrived, nothing else */
	uint64_t sum = 0;
	for (int d = 0; d < 2; d++) {
		char p[400];
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", f->dest, info.dbnames[d]);
		assert_int_equal(stat(p, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
		sum += (uint64_t)st.st_size;
	}
	assert_int_equal(sum, info.pages * info.page_size);
	for (uint32_t g = info.gen_low; g <= info.gen_high; g++) {
		struct stat st;
		char p[400];
		amb_log_path(p, sizeof(p), f->dest, "E00", g);
		assert_int_equal(stat(p, &st), 0);
		sum += (uint64_t)st.st_size;
	}
	assert_int_equal(sum, info.bytes);
	assert_int_equal(count_suffix(f->dest, ".part"), 0);
	assert_int_equal(count_suffix(f->dest, ".log"), (int)(info.gen_high - info.gen_low + 1));
	/* the logs stay until the client said it stored everything */
	assert_true(log_exists(f->dir, before.gen_oldest));

	assert_int_equal(amb_stream_complete(c, 1, err, sizeof(err)), 0);
	amb_stream_close(c);

	/* recorded as a streamed full backup, logs below the range deleted */
	amb_dbhdr h;
	for (int d = 0; d < 2; d++) {
		hdr_of(f, dbs2[d], &h);
		assert_int_equal(h.full_prev.gen_low, info.gen_low);
		assert_int_equal(h.full_prev.gen_high, info.gen_high);
		assert_int_equal(h.full_prev.kind, 1);
	}
	ams_info after;
	assert_int_equal(ams_info_get(f->in, &after), 0);
	assert_int_equal(after.gen_oldest, info.gen_low);
	assert_false(log_exists(f->dir, info.gen_low - 1));
	assert_true(log_exists(f->dir, info.gen_low));

	/* the copy is a backup copy: it needs hard recovery */
	ams_instance *bin = NULL;
	assert_int_equal(ams_open(f->dest, NULL, &bin), AMS_EBACKUPDB);
	char logs[400];
	snprintf(logs, sizeof(logs), "%s/logs", f->dest);
	assert_int_equal(mkdir(logs, 0700), 0);
	for (uint32_t g = info.gen_low; g <= info.gen_high; g++) {
		char a[400], b[400];
		amb_log_path(a, sizeof(a), f->dest, "E00", g);
		amb_log_path(b, sizeof(b), logs, "E00", g);
		assert_int_equal(rename(a, b), 0);
	}
	amb_restore_env env;
	memset(&env, 0, sizeof(env));
	env.version = 1;
	snprintf(env.instance_dir, sizeof(env.instance_dir), "%s", f->dest);
	snprintf(env.backup_log_dir, sizeof(env.backup_log_dir), "%s", logs);
	snprintf(env.prefix, sizeof(env.prefix), "%s", info.prefix);
	env.gen_low = info.gen_low;
	env.gen_high = info.gen_high;
	env.roll_forward = 0;
	env.ndatabases = info.ndb;
	for (int d = 0; d < info.ndb; d++)
		snprintf(env.databases[d], sizeof(env.databases[d]), "%s", info.dbnames[d]);
	char envp[400];
	snprintf(envp, sizeof(envp), "%s/restore.env", f->dest);
	assert_int_equal(amb_restore_env_store(envp, &env), 0);
	rc = ams_hard_recover(envp, NULL);
	if (rc)
		fail_msg("hard recovery: %s", ams_errmsg());
	if (ams_open(f->dest, NULL, &bin))
		fail_msg("open the recovered copy: %s", ams_errmsg());
	expect_keys(bin, f->nkeys);
	assert_int_equal(ams_close(bin), 0);
}

static void test_copy_records_nothing(void **state)
{
	fx *f = *state;
	ams_info before, after;
	assert_int_equal(ams_info_get(f->in, &before), 0);
	amb_stream_info info;
	stream_ok(f, "copy", &info, 1);
	assert_int_equal(info.ndb, 2);
	assert_int_equal(count_suffix(f->dest, ".edb"), 2);
	amb_dbhdr h;
	hdr_of(f, "priv1.edb", &h);
	assert_int_equal(h.full_prev.time, 0);
	assert_int_equal(h.copy_prev.time, 0);
	assert_int_equal(ams_info_get(f->in, &after), 0);
	assert_int_equal(after.gen_oldest, before.gen_oldest);
}

static void test_incremental(void **state)
{
	fx *f = *state;
	char err[512] = "";
	amb_stream_conn *c = NULL;
	/* no full backup yet: refused, naming why */
	assert_int_equal(amb_stream_open(f->dir, "incremental", &c, err, sizeof(err)),
	                 AMB_STREAM_FAILED);
	assert_null(c);
	assert_non_null(strstr(err, "full backup"));

	amb_stream_info full, inc;
	stream_ok(f, "full", &full, 1);
	put_keys(f->in, f->nkeys, f->nkeys + 10);
	char sub[300];
	snprintf(sub, sizeof(sub), "%s/inc", f->dest);
	assert_int_equal(mkdir(sub, 0700), 0);
	snprintf(f->dest, sizeof(f->dest), "%s", sub);
	stream_ok(f, "incremental", &inc, 1);
	assert_int_equal(count_suffix(sub, ".edb"), 0); /* logs only */
	assert_int_equal(inc.pages, 0);
	assert_int_equal(inc.gen_low, full.gen_high + 1);
	assert_true(inc.gen_high >= inc.gen_low);
	assert_int_equal(count_suffix(sub, ".log"), (int)(inc.gen_high - inc.gen_low + 1));
	amb_dbhdr h;
	hdr_of(f, "pub1.edb", &h);
	assert_int_equal(h.inc_prev.gen_low, inc.gen_low);
	assert_int_equal(h.inc_prev.gen_high, inc.gen_high);
	assert_int_equal(h.full_prev.gen_high, full.gen_high);
}

/* ------------------------------------------------------------- busy */

static void test_busy_second_client(void **state)
{
	fx *f = *state;
	char err[512] = "";
	amb_stream_conn *a = NULL, *b = NULL, *c = NULL;
	assert_int_equal(amb_stream_open(f->dir, "full", &a, err, sizeof(err)), 0);
	assert_int_equal(amb_stream_open(f->dir, "full", &b, err, sizeof(err)), AMB_STREAM_RETRY);
	assert_null(b);
	assert_non_null(strstr(err, "busy"));
	/* a client that leaves without a word frees the server */
	amb_stream_close(a);
	assert_true(serve_stream_idle_wait(f->ss, 30000));
	assert_int_equal(amb_stream_open(f->dir, "copy", &c, err, sizeof(err)), 0);
	amb_stream_close(c);
}

static void test_busy_freeze(void **state)
{
	fx *f = *state;
	char err[512] = "";
	amb_stream_conn *c = NULL;
	assert_int_equal(ams_freeze(f->in, 30000), 0);
	assert_int_equal(amb_stream_open(f->dir, "full", &c, err, sizeof(err)), AMB_STREAM_RETRY);
	assert_non_null(strstr(err, "freeze"));
	assert_int_equal(ams_thaw(f->in), 0);
	assert_true(serve_stream_idle_wait(f->ss, 30000));
	assert_int_equal(amb_stream_open(f->dir, "full", &c, err, sizeof(err)), 0);
	amb_stream_close(c);
}

/* ---------------------------------------------------------- restore */

typedef struct detacher {
	ams_instance *in;
	atomic_bool done;
} detacher;

static void *detach_main(void *arg)
{
	detacher *d = arg;
	d->in = serve_instance_detach();
	atomic_store(&d->done, true);
	return NULL;
}

static void test_restore_detach(void **state)
{
	fx *f = *state;
	char err[512] = "";
	amb_stream_conn *c = NULL;

	/* closed for a restore: retryable */
	ams_instance *in = serve_instance_detach();
	assert_ptr_equal(in, f->in);
	assert_int_equal(amb_stream_open(f->dir, "full", &c, err, sizeof(err)), AMB_STREAM_RETRY);
	assert_non_null(strstr(err, "restore"));
	serve_instance_attach(in);

	/* a restore arriving during a stream takes the instance back (the
	 * detach returns once the stream let go); the stream fails retryable
	 * and records nothing */
	assert_int_equal(amb_stream_open(f->dir, "full", &c, err, sizeof(err)), 0);
	pthread_t th;
	detacher dt = {.in = NULL};
	atomic_init(&dt.done, false);
	assert_int_equal(pthread_create(&th, NULL, detach_main, &dt), 0);
	while (!serve_instance_wanted() && !atomic_load(&dt.done))
		sched_yield();
	amb_stream_info info;
	int rc = amb_stream_fetch(c, f->dest, &info, NULL, NULL, err, sizeof(err));
	assert_int_equal(pthread_join(th, NULL), 0);
	in = dt.in;
	assert_ptr_equal(in, f->in);
	if (rc != AMB_STREAM_RETRY)
		fail_msg("fetch during a restore: %d: %s", rc, err);
	assert_non_null(strstr(err, "restore"));
	assert_int_equal(count_suffix(f->dest, ".edb"), 0); /* nothing left behind */
	assert_int_equal(count_suffix(f->dest, ".part"), 0);
	assert_int_equal(amb_stream_complete(c, 1, err, sizeof(err)), AMB_STREAM_BADINPUT);
	amb_stream_close(c);
	serve_instance_attach(in);
	assert_true(serve_stream_idle_wait(f->ss, 30000));
	stream_ok(f, "copy", &info, 1);
}

/* A stream fetched whole but never completed records nothing. */
static void test_abandoned(void **state)
{
	fx *f = *state;
	ams_info before, after;
	assert_int_equal(ams_info_get(f->in, &before), 0);
	char err[512] = "";
	amb_stream_conn *c = NULL;
	assert_int_equal(amb_stream_open(f->dir, "full", &c, err, sizeof(err)), 0);
	amb_stream_info info;
	assert_int_equal(amb_stream_fetch(c, f->dest, &info, NULL, NULL, err, sizeof(err)), 0);
	/* fetch twice: out of order */
	assert_int_equal(amb_stream_fetch(c, f->dest, &info, NULL, NULL, err, sizeof(err)),
	                 AMB_STREAM_BADINPUT);
	amb_stream_close(c);
	assert_true(serve_stream_idle_wait(f->ss, 30000));
	amb_dbhdr h;
	hdr_of(f, "priv1.edb", &h);
	assert_int_equal(h.full_prev.time, 0);
	assert_int_equal(ams_info_get(f->in, &after), 0);
	assert_int_equal(after.gen_oldest, before.gen_oldest);
	assert_true(log_exists(f->dir, before.gen_oldest));

	/* the client says it failed: acknowledged, nothing recorded */
	stream_ok(f, "full", &info, 0);
	hdr_of(f, "priv1.edb", &h);
	assert_int_equal(h.full_prev.time, 0);
	assert_true(log_exists(f->dir, before.gen_oldest));
}

/* ------------------------------------------------------ socket file */

static void test_socket_file(void **state)
{
	fx *f = *state;
	char sock[400], err[512] = "";
	struct stat st;
	snprintf(sock, sizeof(sock), "%s/%s", f->dir, SERVE_STREAM_SOCK_NAME);
	assert_int_equal(lstat(sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	/* removed at stop: no serve, no socket */
	serve_stream_stop(f->ss);
	f->ss = NULL;
	assert_int_equal(lstat(sock, &st), -1);
	amb_stream_conn *c = NULL;
	int rc = amb_stream_open(f->dir, "full", &c, err, sizeof(err));
	assert_int_equal(rc, -ENOENT);
	assert_non_null(strstr(err, "no amber-store serve is running for"));

	/* a stale socket (a killed serve's) is replaced */
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_int_equal(amb_stream_open(f->dir, "full", &c, err, sizeof(err)), -ECONNREFUSED);
	assert_non_null(strstr(err, "no amber-store serve is running for"));
	assert_int_equal(serve_stream_start(f->dir, true, &f->ss), 0);
	assert_int_equal(amb_stream_open(f->dir, "full", &c, err, sizeof(err)), 0);
	amb_stream_close(c);
	serve_stream_stop(f->ss);
	f->ss = NULL;

	/* a symlink at the name is never followed, by either side */
	char target[400];
	snprintf(target, sizeof(target), "%s/elsewhere", f->tmp);
	assert_int_equal(symlink(target, sock), 0);
	assert_int_equal(serve_stream_start(f->dir, true, &f->ss), 1);
	assert_null(f->ss);
	assert_int_equal(lstat(sock, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(access(target, F_OK), -1);
	rc = amb_stream_open(f->dir, "full", &c, err, sizeof(err));
	assert_int_equal(rc, -ENOTSOCK);
	assert_non_null(strstr(err, "symbolic link"));
	assert_int_equal(unlink(sock), 0);
	assert_int_equal(serve_stream_start(f->dir, true, &f->ss), 0);
}

static void test_bad_args(void **state)
{
	fx *f = *state;
	char err[512] = "";
	amb_stream_conn *c = NULL;
	assert_int_equal(amb_stream_open(f->dir, "weekly", &c, err, sizeof(err)),
	                 AMB_STREAM_BADINPUT);
	assert_non_null(strstr(err, "weekly"));
	assert_int_equal(amb_stream_open(NULL, "full", &c, err, sizeof(err)), AMB_STREAM_BADINPUT);
	/* a destination that does not exist */
	assert_int_equal(amb_stream_open(f->dir, "full", &c, err, sizeof(err)), 0);
	char missing[300];
	snprintf(missing, sizeof(missing), "%s/missing", f->tmp);
	amb_stream_info info;
	assert_int_equal(amb_stream_fetch(c, missing, &info, NULL, NULL, err, sizeof(err)),
	                 AMB_STREAM_BADINPUT);
	assert_int_equal(amb_stream_complete(c, 1, err, sizeof(err)), AMB_STREAM_BADINPUT);
	assert_int_equal(amb_stream_complete(c, 0, err, sizeof(err)), AMB_STREAM_BADINPUT);
	amb_stream_close(c);
	assert_true(serve_stream_idle_wait(f->ss, 30000));
	amb_dbhdr h;
	hdr_of(f, "priv1.edb", &h);
	assert_int_equal(h.full_prev.time, 0);
}

/* ------------------------------------------------------ fake server */

typedef struct fake {
	char dir[300];
	int lfd;
	const char *const *frames; /* JSON bodies sent after the request */
	bool hangup;               /* close right after them */
	pthread_t th;
} fake;

static void *fake_main(void *arg)
{
	fake *fk = arg;
	int fd = accept(fk->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	char *buf = NULL;
	size_t len = 0;
	if (amb_frame_read(fd, 0, &buf, &len) == 0) {
		free(buf);
		for (const char *const *p = fk->frames; *p; p++)
			if (amb_frame_write(fd, *p, strlen(*p)) != 0)
				break;
		/* until the client hangs up */
		while (!fk->hangup && amb_frame_read(fd, 0, &buf, &len) == 0)
			free(buf);
	}
	close(fd);
	return NULL;
}

static void fake_start(fake *fk, const char *dir, const char *const *frames, bool hangup)
{
	snprintf(fk->dir, sizeof(fk->dir), "%s", dir);
	fk->hangup = hangup;
	mkdir(dir, 0700);
	fk->frames = frames;
	fk->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fk->lfd >= 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir, AMB_STREAM_SOCK_NAME);
	unlink(sa.sun_path);
	assert_int_equal(bind(fk->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fk->lfd, 1), 0);
	assert_int_equal(pthread_create(&fk->th, NULL, fake_main, fk), 0);
}

static void fake_stop(fake *fk)
{
	pthread_join(fk->th, NULL);
	close(fk->lfd);
}

/* Stream from a fake server: returns the first failing code (open or
 * fetch) with err filled. */
static int fake_stream(fx *f, const char *const *frames, bool hangup, const char *type,
                       char *err, size_t errlen)
{
	char dir[300];
	snprintf(dir, sizeof(dir), "%s/fake", f->tmp);
	fake fk;
	fake_start(&fk, dir, frames, hangup);
	amb_stream_conn *c = NULL;
	int rc = amb_stream_open(dir, type, &c, err, errlen);
	if (rc == 0) {
		amb_stream_info info;
		rc = amb_stream_fetch(c, f->dest, &info, NULL, NULL, err, errlen);
		amb_stream_close(c);
	}
	fake_stop(&fk);
	return rc;
}

static void test_client_refuses_names(void **state)
{
	fx *f = *state;
	char err[512] = "";
	static const char *const bad_announce[] = {
		"{\"kind\":\"stream-started\",\"version\":1,\"type\":\"full\",\"prefix\":\"E00\","
		"\"page_size\":8192,\"databases\":[\"../evil.edb\"]}",
		NULL};
	assert_int_equal(fake_stream(f, bad_announce, false, "full", err, sizeof(err)),
	                 AMB_STREAM_FAILED);
	assert_non_null(strstr(err, "not allowed"));

	static const char *const unannounced[] = {
		"{\"kind\":\"stream-started\",\"version\":1,\"type\":\"full\",\"prefix\":\"E00\","
		"\"page_size\":8192,\"databases\":[\"a.edb\"]}",
		"{\"kind\":\"file\",\"role\":\"database\",\"name\":\"../a.edb\",\"db\":0,"
		"\"page_size\":8192}",
		NULL};
	int frc = fake_stream(f, unannounced, false, "full", err, sizeof(err));
	if (frc != AMB_STREAM_FAILED)
		fail_msg("unannounced: %d: %s", frc, err);
	assert_non_null(strstr(err, "not announced"));

	static const char *const bad_log[] = {
		"{\"kind\":\"stream-started\",\"version\":1,\"type\":\"incremental\",\"prefix\":"
		"\"E00\",\"page_size\":8192,\"databases\":[\"a.edb\"]}",
		"{\"kind\":\"file\",\"role\":\"log\",\"name\":\"../E0000000001.log\",\"gen\":1,"
		"\"size\":4096}",
		NULL};
	assert_int_equal(fake_stream(f, bad_log, false, "incremental", err, sizeof(err)),
	                 AMB_STREAM_FAILED);
	assert_non_null(strstr(err, "refusing"));

	/* a server that sends a database in a logs-only stream, or stops in
	 * the middle, leaves nothing behind */
	static const char *const db_in_inc[] = {
		"{\"kind\":\"stream-started\",\"version\":1,\"type\":\"incremental\",\"prefix\":"
		"\"E00\",\"page_size\":8192,\"databases\":[\"a.edb\"]}",
		"{\"kind\":\"file\",\"role\":\"database\",\"name\":\"a.edb\",\"db\":0,"
		"\"page_size\":8192}",
		NULL};
	assert_int_equal(fake_stream(f, db_in_inc, false, "incremental", err, sizeof(err)),
	                 AMB_STREAM_FAILED);
	static const char *const cut[] = {
		"{\"kind\":\"stream-started\",\"version\":1,\"type\":\"full\",\"prefix\":\"E00\","
		"\"page_size\":8192,\"databases\":[\"a.edb\"]}",
		"{\"kind\":\"file\",\"role\":\"database\",\"name\":\"a.edb\",\"db\":0,"
		"\"page_size\":8192}",
		NULL};
	assert_int_equal(fake_stream(f, cut, true, "full", err, sizeof(err)), -ECONNRESET);
	assert_non_null(strstr(err, "closed the connection"));
	char parent[300];
	snprintf(parent, sizeof(parent), "%s/a.edb", f->tmp);
	assert_int_equal(access(parent, F_OK), -1);
	assert_int_equal(count_suffix(f->dest, ".edb"), 0);
	assert_int_equal(count_suffix(f->dest, ".part"), 0);
	assert_int_equal(count_suffix(f->dest, ".log"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_records_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incremental, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_second_client, setup, teardown),
		cmocka_unit_test_setup_teardown(test_busy_freeze, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_detach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abandoned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_client_refuses_names, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_snapbackup.c - snapshot (shadow copy) backups, whose last log
 * generation is a prefix of the live one (src/store/backup.c, "STREAMED AND
 * SNAPSHOT BACKUPS"; docs/restore-env.md, "Which copy of a generation is
 * read"):
 *   - ams_backup_complete() accepts gen_high == the current generation for
 *     a snapshot, refuses it for a streamed backup, refuses anything later;
 *   - a full truncates below its gen_low, a snapshot incremental below its
 *     gen_high (kept whole), a streamed one below gen_high + 1;
 *   - gen_low = 0 derives the start of an incremental / differential from
 *     the header (chain rule), and is refused without a full backup;
 *   - hard recovery of a backup whose last generation is a prefix (even one
 *     cut inside a transaction's record): with roll-forward every committed
 *     transaction comes back (the instance's longer copy of that generation
 *     is read), without it exactly the transactions complete in the copy.
 * Results are checked like the workload oracle: every expected record with
 * its exact value, and nothing else (ams_foreach).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "amber/store.h"
#include "common/vfs.h"
#include "store/dbfile.h"
#include "store/format.h"
#include "store/log.h"
#include "store/restoreenv.h"

#define PATHSZ 1024

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/amber-snapbk-XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd);
}

static const char *dbnames[] = {"priv1.edb", "pub1.edb"};

static void mkinst(const char *sub, uint64_t log_size, char *out)
{
	snprintf(out, PATHSZ, "%s/%s", tmpdir, sub);
	ams_create_opts o = {.log_size = log_size, .databases = dbnames, .ndatabases = 2};
	if (ams_create(out, &o))
		fail_msg("create %s: %s", out, ams_errmsg());
}

static void open_ok(const char *dir, const ams_open_opts *o, ams_instance **in)
{
	if (ams_open(dir, o, in))
		fail_msg("open %s: %s", dir, ams_errmsg());
}

static void fill(unsigned char *v, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		v[i] = (unsigned char)((i * 31 + seed * 17 + (i >> 8)) & 0xff);
}

static void copy_file(const char *src, const char *dst)
{
	FILE *in = fopen(src, "rb");
	if (!in)
		fail_msg("%s: %s", src, strerror(errno));
	FILE *out = fopen(dst, "wb");
	if (!out) {
		fclose(in);
		fail_msg("%s: %s", dst, strerror(errno));
	}
	static unsigned char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		assert_int_equal(fwrite(buf, 1, n, out), n);
	assert_int_equal(ferror(in), 0);
	fclose(in);
	assert_int_equal(fclose(out), 0);
}

/* every regular file of src into dst (made) */
static void copy_dir_files(const char *src, const char *dst)
{
	assert_int_equal(mkdir(dst, 0755), 0);
	DIR *d = opendir(src);
	assert_non_null(d);
	struct dirent *e;
	while ((e = readdir(d))) {
		char a[PATHSZ + 300], b[PATHSZ + 300];
		snprintf(a, sizeof(a), "%s/%s", src, e->d_name);
		snprintf(b, sizeof(b), "%s/%s", dst, e->d_name);
		struct stat st;
		if (stat(a, &st) == 0 && S_ISREG(st.st_mode))
			copy_file(a, b);
	}
	closedir(d);
}

static int log_exists(const char *dir, uint32_t g)
{
	char p[PATHSZ + 64];
	amb_log_path(p, sizeof(p), dir, "E00", g);
	return access(p, F_OK) == 0;
}

static uint32_t oldest_log(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *e;
	uint32_t oldest = UINT32_MAX;
	while ((e = readdir(d))) {
		uint32_t g = amb_log_parse_name(e->d_name, "E00");
		if (g && g < oldest)
			oldest = g;
	}
	closedir(d);
	return oldest;
}

/* the header of database 0 as it is on disk now (the instance may be open) */
static void read_hdr(const char *dir, amb_dbhdr *h)
{
	char p[PATHSZ + 64];
	snprintf(p, sizeof(p), "%s/%s", dir, dbnames[0]);
	amb_vfs *v = amb_vfs_posix();
	int fd = v->open(v, p, O_RDONLY, 0);
	assert_true(fd >= 0);
	int rc = amb_dbhdr_load(v, fd, p, h, NULL);
	v->close(v, fd);
	if (rc)
		fail_msg("%s: %s", p, ams_errmsg());
}

static ams_info info_of(ams_instance *in)
{
	ams_info info;
	assert_int_equal(ams_info_get(in, &info), 0);
	return info;
}

/* ------------------------------------------------------------ model */

typedef struct mrec {
	char table[8];
	char key[16];
	size_t vlen;
	unsigned seed;
	int txn;
	int seen;
} mrec;

typedef struct model {
	mrec r[400];
	int n;
	int ntxn;
} model;

/* One transaction of nput puts (alternately into db 0 and db 1); the last
 * put is @p big bytes if big is not 0.  Returns its number. */
static int commit_txn(ams_instance *in, model *m, int nput, size_t big)
{
	ams_txn *x;
	assert_int_equal(ams_txn_begin(in, &x), 0);
	int txn = m->ntxn++;
	for (int i = 0; i < nput; i++) {
		assert_true(m->n < (int)(sizeof(m->r) / sizeof(m->r[0])));
		mrec *r = &m->r[m->n];
		snprintf(r->table, sizeof(r->table), "%s", i % 2 ? "pub" : "mbox");
		snprintf(r->key, sizeof(r->key), "k%05d", m->n);
		r->vlen = big && i == nput - 1 ? big : 500 + (size_t)(m->n * 37 % 3000);
		r->seed = (unsigned)m->n;
		r->txn = txn;
		unsigned char *v = malloc(r->vlen);
		assert_non_null(v);
		fill(v, r->vlen, r->seed);
		int rc = ams_txn_put(x, r->table, r->key, strlen(r->key), v, r->vlen);
		free(v);
		assert_int_equal(rc, 0);
		m->n++;
	}
	int rc = ams_txn_commit(x);
	if (rc)
		fail_msg("commit of txn %d: %s", txn, ams_errmsg());
	return txn;
}

static void commit_many(ams_instance *in, model *m, int ntxn)
{
	for (int i = 0; i < ntxn; i++)
		commit_txn(in, m, 2, 0);
}

typedef struct vctx {
	model *m;
	int limit;
	int count;
	char why[256];
} vctx;

static int verify_cb(void *arg, const char *table, const void *key, size_t klen, const void *val,
                     size_t vlen)
{
	vctx *c = arg;
	for (int i = 0; i < c->m->n; i++) {
		mrec *r = &c->m->r[i];
		if (strcmp(r->table, table) != 0 || strlen(r->key) != klen ||
		    memcmp(r->key, key, klen) != 0)
			continue;
		if (r->txn >= c->limit) {
			snprintf(c->why, sizeof(c->why), "%s:%s of txn %d is present (expected up to txn "
			         "%d only)", r->table, r->key, r->txn, c->limit - 1);
			return 1;
		}
		unsigned char *e = malloc(r->vlen);
		fill(e, r->vlen, r->seed);
		int same = vlen == r->vlen && memcmp(e, val, vlen) == 0;
		free(e);
		if (!same) {
			snprintf(c->why, sizeof(c->why), "%s:%s has the wrong value", r->table, r->key);
			return 1;
		}
		r->seen = 1;
		c->count++;
		return 0;
	}
	snprintf(c->why, sizeof(c->why), "unknown record %s:%.*s", table, (int)klen,
	         (const char *)key);
	return 1;
}

/* Exactly the transactions below @p limit, every record with its value. */
static void verify(ams_instance *in, model *m, int limit)
{
	vctx c = {m, limit, 0, ""};
	for (int i = 0; i < m->n; i++)
		m->r[i].seen = 0;
	int rc = ams_foreach(in, verify_cb, &c);
	if (rc)
		fail_msg("foreach: %d: %s", rc, c.why[0] ? c.why : ams_errmsg());
	for (int i = 0; i < m->n; i++) {
		mrec *r = &m->r[i];
		if (r->txn < limit && !r->seen)
			fail_msg("%s:%s of txn %d is missing", r->table, r->key, r->txn);
		if (r->txn < limit) {
			void *v;
			size_t n;
			assert_int_equal(ams_get(in, r->table, r->key, strlen(r->key), &v, &n), 0);
			assert_int_equal(n, r->vlen);
			free(v);
		}
	}
}

/* ------------------------------------------------------------ snapshot */

typedef struct snap {
	uint32_t K, C; /* checkpoint and current generation at the freeze */
} snap;

/*
 * What the writer and the requestor do for a shadow backup: roll the log
 * (prepare-snapshot), freeze, note K and C, copy (if bdir) the databases
 * and logs K..C (C from <prefix>.log, as E00<C>.log) into bdir and
 * bdir/logs, thaw.
 */
static snap snapshot(ams_instance *in, const char *dir, const char *bdir)
{
	uint32_t g;
	assert_int_equal(ams_log_roll(in, &g), 0);
	assert_int_equal(ams_freeze(in, 60000), 0);
	ams_info info = info_of(in);
	snap s = {info.gen_checkpoint, info.gen_current};
	assert_int_equal(s.C, g);
	if (bdir) {
		char a[PATHSZ + 64], b[PATHSZ + 64], logs[PATHSZ + 16];
		assert_int_equal(mkdir(bdir, 0755), 0);
		snprintf(logs, sizeof(logs), "%s/logs", bdir);
		assert_int_equal(mkdir(logs, 0755), 0);
		for (int d = 0; d < 2; d++) {
			snprintf(a, sizeof(a), "%s/%s", dir, dbnames[d]);
			snprintf(b, sizeof(b), "%s/%s", bdir, dbnames[d]);
			copy_file(a, b);
		}
		for (uint32_t k = s.K; k <= s.C; k++) {
			amb_log_path(a, sizeof(a), dir, "E00", k < s.C ? k : 0);
			amb_log_path(b, sizeof(b), logs, "E00", k);
			copy_file(a, b);
		}
	}
	assert_int_equal(ams_thaw(in), 0);
	return s;
}

/* Lay the backup in bdir down into the instance directory idir (closed)
 * and run hard recovery. */
static void restore(const char *bdir, const char *idir, snap s, int roll_forward)
{
	char a[PATHSZ + 64], b[PATHSZ + 64], logs[PATHSZ + 32], blogs[PATHSZ + 16];
	for (int d = 0; d < 2; d++) {
		snprintf(a, sizeof(a), "%s/%s", bdir, dbnames[d]);
		snprintf(b, sizeof(b), "%s/%s", idir, dbnames[d]);
		copy_file(a, b);
	}
	snprintf(blogs, sizeof(blogs), "%s/logs", bdir);
	snprintf(logs, sizeof(logs), "%s/restore-logs", idir);
	assert_int_equal(mkdir(logs, 0755), 0);
	for (uint32_t k = s.K; k <= s.C; k++) {
		amb_log_path(a, sizeof(a), blogs, "E00", k);
		amb_log_path(b, sizeof(b), logs, "E00", k);
		copy_file(a, b);
	}
	amb_restore_env *env = calloc(1, sizeof(*env));
	assert_non_null(env);
	env->version = 1;
	snprintf(env->instance_dir, sizeof(env->instance_dir), "%s", idir);
	snprintf(env->backup_log_dir, sizeof(env->backup_log_dir), "%s", logs);
	snprintf(env->prefix, sizeof(env->prefix), "E00");
	env->gen_low = s.K;
	env->gen_high = s.C;
	env->roll_forward = roll_forward;
	env->ndatabases = 2;
	for (int d = 0; d < 2; d++)
		snprintf(env->databases[d], sizeof(env->databases[d]), "%s", dbnames[d]);
	char envp[PATHSZ + 16];
	snprintf(envp, sizeof(envp), "%s/restore.env", idir);
	assert_int_equal(amb_restore_env_store(envp, env), 0);
	int rc = ams_hard_recover(envp, NULL);
	if (rc) {
		free(env);
		fail_msg("hard recovery of %s (roll_forward=%d): %s", idir, roll_forward, ams_errmsg());
	}
	assert_int_equal(amb_restore_env_load(envp, env), 0);
	assert_int_equal(env->status, AMB_RECOVER_ENDED);
	assert_int_equal(env->error, 0);
	free(env);
}

/* ------------------------------------------------------------ tests */

/* commit until the checkpoint generation is above g (so truncation is
 * limited by the backup, not by the checkpoint) */
static void advance_checkpoint(ams_instance *in, model *m, uint32_t g)
{
	for (int i = 0; i < 400 && info_of(in).gen_checkpoint <= g; i++)
		commit_txn(in, m, 1, 20000);
	assert_true(info_of(in).gen_checkpoint > g);
}

static void test_full_then_incremental_truncation(void **state)
{
	(void)state;
	char dir[PATHSZ];
	mkinst("chain", 65536, dir);
	ams_instance *in;
	ams_open_opts oo = {.checkpoint_depth = 128 * 1024};
	open_ok(dir, &oo, &in);
	model *m = calloc(1, sizeof(*m));
	assert_non_null(m);
	for (int i = 0; i < 30; i++)
		commit_txn(in, m, 1, 20000);

	/* snapshot full: K1..C1, C1 a prefix */
	snap f = snapshot(in, dir, NULL);
	assert_true(f.K > oldest_log(dir)); /* there is something to truncate */
	advance_checkpoint(in, m, f.C + 1);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL, f.K, f.C, 100, 0), 0);
	assert_int_equal(oldest_log(dir), f.K);
	amb_dbhdr h;
	read_hdr(dir, &h);
	assert_int_equal(h.full_prev.gen_low, f.K);
	assert_int_equal(h.full_prev.gen_high, f.C);
	assert_int_equal(h.full_prev.kind, 2);

	/* snapshot incremental, range derived: starts at C1 (the whole version
	 * of the full's partial last generation), truncates below C2 only */
	snap i1 = snapshot(in, dir, NULL);
	advance_checkpoint(in, m, i1.C + 1);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_INCREMENTAL, 0, i1.C, 200, 0), 0);
	read_hdr(dir, &h);
	assert_int_equal(h.inc_prev.gen_low, f.C);
	assert_int_equal(h.inc_prev.gen_high, i1.C);
	assert_int_equal(h.inc_prev.kind, 2);
	assert_int_equal(oldest_log(dir), i1.C);
	assert_true(log_exists(dir, i1.C));
	assert_false(log_exists(dir, i1.C - 1));
	/* the kept generation is whole: closed, and followed by the next */
	amb_loghdr lh;
	char p[PATHSZ + 64];
	amb_log_path(p, sizeof(p), dir, "E00", i1.C);
	assert_int_equal(amb_loghdr_load(amb_vfs_posix(), p, &lh), 0);
	assert_int_equal(lh.gen, i1.C);
	assert_true(info_of(in).gen_current > i1.C);

	/* a streamed incremental follows the snapshot chain at C2 too, and
	 * (its gen_high complete) truncates below gen_high + 1 */
	ams_stream *s;
	assert_int_equal(ams_stream_begin(in, AMS_BACKUP_INCREMENTAL, &s), 0);
	uint32_t lo, hi;
	assert_int_equal(ams_stream_logs(s, &lo, &hi), 0);
	ams_stream_end(s);
	assert_int_equal(lo, i1.C);
	advance_checkpoint(in, m, hi + 2);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_INCREMENTAL | AMS_BACKUP_STREAMED, lo, hi,
	                                     300, 0), 0);
	read_hdr(dir, &h);
	assert_int_equal(h.inc_prev.kind, 1);
	assert_int_equal(h.inc_prev.gen_high, hi);
	assert_int_equal(oldest_log(dir), hi + 1);

	/* the next snapshot incremental starts after the streamed one */
	snap i2 = snapshot(in, dir, NULL);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_INCREMENTAL, 0, i2.C, 400, 0), 0);
	read_hdr(dir, &h);
	assert_int_equal(h.inc_prev.gen_low, hi + 1);
	assert_int_equal(h.inc_prev.gen_high, i2.C);
	/* nothing at or after the checkpoint went: everything still reads */
	assert_int_equal(ams_close(in), 0);
	open_ok(dir, &oo, &in);
	verify(in, m, m->ntxn);
	assert_int_equal(ams_close(in), 0);
	free(m);
}

static void test_gen_high_current_accepted(void **state)
{
	(void)state;
	char dir[PATHSZ];
	mkinst("current", 0, dir);
	ams_instance *in;
	open_ok(dir, NULL, &in);
	model *m = calloc(1, sizeof(*m));
	assert_non_null(m);
	commit_many(in, m, 5);
	snap f = snapshot(in, dir, NULL);
	commit_many(in, m, 3); /* into C, which stays current */
	assert_int_equal(info_of(in).gen_current, f.C);
	/* a streamed backup cannot end at the current generation, nothing can
	 * end after it */
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL | AMS_BACKUP_STREAMED, f.K, f.C, 1,
	                                     0), AMS_EINVAL);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL, f.K, f.C + 1, 1, 0), AMS_EINVAL);
	amb_dbhdr h;
	read_hdr(dir, &h);
	assert_int_equal(h.full_prev.time, 0);
	/* a snapshot may */
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL, f.K, f.C, 7, 0), 0);
	read_hdr(dir, &h);
	assert_int_equal(h.full_prev.gen_high, f.C);
	assert_int_equal(h.full_prev.time, 7000000u);
	assert_true(log_exists(dir, 0));
	/* an incremental ending at the current generation too */
	snap i = snapshot(in, dir, NULL);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_INCREMENTAL, 0, i.C, 8, 0), 0);
	read_hdr(dir, &h);
	assert_int_equal(h.inc_prev.gen_low, f.C);
	assert_int_equal(h.inc_prev.gen_high, i.C);
	/* nothing from the checkpoint generation on was deleted */
	for (uint32_t k = info_of(in).gen_checkpoint; k < i.C; k++)
		assert_true(log_exists(dir, k));
	verify(in, m, m->ntxn);
	assert_int_equal(ams_close(in), 0);
	free(m);
}

static void test_derive_low(void **state)
{
	(void)state;
	char dir[PATHSZ];
	mkinst("derive", 0, dir);
	ams_instance *in;
	open_ok(dir, NULL, &in);
	model *m = calloc(1, sizeof(*m));
	assert_non_null(m);
	commit_many(in, m, 3);
	uint32_t cur;
	assert_int_equal(ams_log_roll(in, &cur), 0);
	assert_int_equal(ams_log_roll(in, &cur), 0);

	/* no full backup: nothing to derive from */
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_INCREMENTAL, 0, cur, 1, 0), AMS_EINVAL);
	assert_non_null(strstr(ams_errmsg(), "a full backup is needed"));
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_DIFFERENTIAL, 0, cur, 1, 0), AMS_EINVAL);
	assert_non_null(strstr(ams_errmsg(), "a full backup is needed"));
	/* a full needs its range */
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL, 0, cur, 1, 0), AMS_EINVAL);
	ams_stream *s;
	assert_int_equal(ams_stream_begin(in, AMS_BACKUP_INCREMENTAL, &s), AMS_ENOTFOUND);
	amb_dbhdr h;
	read_hdr(dir, &h);
	assert_int_equal(h.full_prev.time, 0);
	assert_int_equal(h.inc_prev.time, 0);
	assert_int_equal(h.diff_prev.time, 0);

	/* after a streamed full (gen_high complete): start at gen_high + 1 */
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL | AMS_BACKUP_STREAMED, 1, cur - 1,
	                                     2, 0), 0);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_DIFFERENTIAL, 0, cur, 3, 0), 0);
	read_hdr(dir, &h);
	assert_int_equal(h.diff_prev.gen_low, cur);
	assert_int_equal(h.diff_prev.gen_high, cur);
	assert_int_equal(h.diff_prev.kind, 2);

	/* after a snapshot full: start at its gen_high */
	snap f = snapshot(in, dir, NULL);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_FULL, f.K, f.C, 4, 0), 0);
	read_hdr(dir, &h);
	assert_int_equal(h.diff_prev.time, 0); /* a full clears the chain */
	snap d1 = snapshot(in, dir, NULL);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_DIFFERENTIAL, 0, d1.C, 5, 0), 0);
	read_hdr(dir, &h);
	assert_int_equal(h.diff_prev.gen_low, f.C);
	assert_int_equal(h.diff_prev.gen_high, d1.C);
	snap i1 = snapshot(in, dir, NULL);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_INCREMENTAL, 0, i1.C, 6, 0), 0);
	read_hdr(dir, &h);
	assert_int_equal(h.inc_prev.gen_low, f.C); /* a differential is not in the chain */
	snap i2 = snapshot(in, dir, NULL);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_INCREMENTAL, 0, i2.C, 7, 0), 0);
	read_hdr(dir, &h);
	assert_int_equal(h.inc_prev.gen_low, i1.C);
	assert_int_equal(h.inc_prev.gen_high, i2.C);
	/* a differential still starts from the full */
	snap d2 = snapshot(in, dir, NULL);
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_DIFFERENTIAL, 0, d2.C, 8, 0), 0);
	read_hdr(dir, &h);
	assert_int_equal(h.diff_prev.gen_low, f.C);
	assert_int_equal(h.diff_prev.gen_high, d2.C);
	/* a derived start after the given end is refused, nothing recorded */
	assert_int_equal(ams_backup_complete(in, AMS_BACKUP_INCREMENTAL, 0, i2.C - 1, 9, 0),
	                 AMS_EINVAL);
	read_hdr(dir, &h);
	assert_int_equal(h.inc_prev.gen_high, i2.C);
	assert_int_equal(ams_close(in), 0);
	free(m);
}

/*
 * A full snapshot backup whose copy of its last generation C is a prefix
 * cut in the middle of a transaction's log record; the live instance then
 * goes on into later generations.  Restored with roll-forward: every
 * committed transaction.  Without: exactly those whose record is complete
 * in the copy.
 */
static void test_restore_partial_last_gen(void **state)
{
	(void)state;
	char dir[PATHSZ], bdir[PATHSZ], r1[PATHSZ], r2[PATHSZ];
	mkinst("live", 0, dir);
	snprintf(bdir, sizeof(bdir), "%s/backup", tmpdir);
	snprintf(r1, sizeof(r1), "%s/rf", tmpdir);
	snprintf(r2, sizeof(r2), "%s/norf", tmpdir);
	ams_instance *in;
	open_ok(dir, NULL, &in);
	model *m = calloc(1, sizeof(*m));
	assert_non_null(m);
	ams_txn *x;
	assert_int_equal(ams_txn_begin(in, &x), 0);
	assert_int_equal(ams_txn_create_table(x, "pub", 1), 0);
	assert_int_equal(ams_txn_commit(x), 0);
	commit_many(in, m, 20);
	snap s = snapshot(in, dir, bdir);
	commit_many(in, m, 5); /* in C, after the snapshot */

	/* the live C before and after a big transaction T and a small U */
	char live[PATHSZ + 64], before[PATHSZ + 64], after[PATHSZ + 64], cut[PATHSZ + 64];
	amb_log_path(live, sizeof(live), dir, "E00", 0);
	snprintf(before, sizeof(before), "%s/before.log", tmpdir);
	snprintf(after, sizeof(after), "%s/after.log", tmpdir);
	copy_file(live, before);
	int limit = m->ntxn; /* T and later are not complete in the cut copy */
	commit_txn(in, m, 3, 150000);
	commit_many(in, m, 1);
	assert_int_equal(info_of(in).gen_current, s.C);
	copy_file(live, after);
	amb_vfs *v = amb_vfs_posix();
	amb_logscan sb, sa;
	assert_int_equal(amb_log_scan(v, before, &sb), 0);
	assert_int_equal(amb_log_scan(v, after, &sa), 0);
	/* T's record starts in segment sb.valid_segs + 1 (a flush starts a
	 * segment) and spans more than 30 segments: keep 8 of them */
	uint32_t keep = sb.valid_segs + 1 + 8;
	assert_true(sa.valid_segs > keep + 20);
	{
		FILE *f = fopen(after, "r+b");
		assert_non_null(f);
		assert_int_equal(fseek(f, 0, SEEK_END), 0);
		long size = ftell(f);
		static unsigned char zero[AMB_SEG_SIZE];
		for (long off = (long)keep * AMB_SEG_SIZE; off < size; off += AMB_SEG_SIZE) {
			assert_int_equal(fseek(f, off, SEEK_SET), 0);
			assert_int_equal(fwrite(zero, 1, sizeof(zero), f), sizeof(zero));
		}
		assert_int_equal(fclose(f), 0);
	}
	amb_logscan sc;
	assert_int_equal(amb_log_scan(v, after, &sc), 0);
	assert_int_equal(sc.valid_segs, keep - 1);
	assert_int_equal(sc.damaged, 0);
	char blogs[PATHSZ + 16];
	snprintf(blogs, sizeof(blogs), "%s/logs", bdir);
	amb_log_path(cut, sizeof(cut), blogs, "E00", s.C);
	copy_file(after, cut);

	/* the instance goes on: C is archived, two more generations */
	uint32_t g;
	assert_int_equal(ams_log_roll(in, &g), 0);
	commit_many(in, m, 4);
	assert_int_equal(ams_log_roll(in, &g), 0);
	commit_many(in, m, 4);
	assert_int_equal(g, s.C + 2);
	assert_int_equal(ams_close(in), 0);
	assert_true(log_exists(dir, s.C));

	/* with roll-forward, in a copy of the instance directory */
	copy_dir_files(dir, r1);
	restore(bdir, r1, s, 1);
	open_ok(r1, NULL, &in);
	verify(in, m, m->ntxn);
	assert_int_equal(ams_close(in), 0);

	/* without: exactly the transactions complete in the copy of C */
	copy_dir_files(dir, r2);
	restore(bdir, r2, s, 0);
	open_ok(r2, NULL, &in);
	verify(in, m, limit);
	assert_int_equal(ams_close(in), 0);
	/* it stays so after a restart */
	open_ok(r2, NULL, &in);
	verify(in, m, limit);
	assert_int_equal(ams_close(in), 0);
	free(m);
}

/* The backup's last generation is still the instance's <prefix>.log at
 * restore time: roll-forward reads it and then ends there. */
static void test_restore_current_log(void **state)
{
	(void)state;
	char dir[PATHSZ], bdir[PATHSZ];
	mkinst("cur", 0, dir);
	snprintf(bdir, sizeof(bdir), "%s/backup", tmpdir);
	ams_instance *in;
	open_ok(dir, NULL, &in);
	model *m = calloc(1, sizeof(*m));
	assert_non_null(m);
	commit_many(in, m, 10);
	snap s = snapshot(in, dir, bdir);
	int at_snapshot = m->ntxn;
	commit_many(in, m, 10);
	assert_int_equal(info_of(in).gen_current, s.C);
	assert_int_equal(ams_close(in), 0);

	restore(bdir, dir, s, 1);
	open_ok(dir, NULL, &in);
	verify(in, m, m->ntxn);
	assert_true(at_snapshot < m->ntxn);
	/* and the instance goes on from there */
	commit_many(in, m, 2);
	assert_int_equal(ams_close(in), 0);
	open_ok(dir, NULL, &in);
	verify(in, m, m->ntxn);
	assert_int_equal(ams_close(in), 0);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full_then_incremental_truncation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gen_high_current_accepted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_derive_low, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_partial_last_gen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_current_log, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * instance.c - an open store instance: create, open (with soft recovery),
 * transactions with group commit, the flusher and checkpointer threads, the
 * freeze gate, reads, and clean shutdown.  Structures and locking are
 * described in instance.h, the on-disk format in format.h.
 *
 * COMMIT (ams_txn_commit)
 *   1. admission (mu): wait while frozen; reserve log segments for the
 *      record's upper bound, so the flusher can never run out of prepared
 *      log space for an admitted record (a full disk fails the commit here,
 *      cleanly, with AMS_ENOSPC);
 *   2. validate (rw write lock): deleted keys exist, overflow chains of
 *      replaced/deleted values are readable, database space is reserved with
 *      fallocate(KEEP_SIZE) -- any failure here changes nothing;
 *   3. apply (rw): change cached pages and the index, build one TXN record
 *      (a page's first change after a checkpoint began: its whole image,
 *      zero tail left out; later changes: byte-range deltas; FREE / EXTEND
 *      entries), append it to the log buffer (mu);
 *   4. wait (mu) until it is durable, leading the flush if nobody is
 *      flushing (flush_cycle): one thread takes the whole buffer, waits up
 *      to 200 us for the commits already applying, writes the records as
 *      fresh 4 KiB segments (a flush never rewrites a segment holding
 *      acknowledged data), fdatasync, advances lsn_durable.  Everyone whose
 *      record was in the buffer returns: that is the group commit.  The
 *      write phase (flushing) and the fdatasync (syncing) are apart: a
 *      committer leads the next flush once both are over; flushes publish
 *      lsn_durable in their order (sync_seq, sync_pub).
 *
 * LOG ROLL: when the current generation is full (or a roll is requested)
 * the flushing thread switches to the prepared <prefix>tmp.log:
 *   fdatasync the current file if its own header is not yet known durable,
 *   and wait for any other sync of it still running (a failed one fails
 *   the instance, and the roll stops): an archived generation is durable
 *   whole;
 *   write tmp's header (gen+1, start LSN), no fdatasync;
 *   rename <prefix>.log -> <prefix>XXXXXXXX.log; rename tmp -> <prefix>.log;
 *   no directory fsync.
 * Nothing on the commit path waits for a sync of its own: the first flush
 * into the new generation fdatasyncs the file, header and records at once,
 * before any of them is acknowledged; the renames become durable with the
 * next directory fsync, which comes before the next roll (the preparation
 * of the next tmp creates it and fsyncs the directory) and with every
 * checkpoint file and truncation.  So a crash leaves at most the last
 * roll undone in part, and open finishes it (fix_interrupted_roll):
 *   - no <prefix>.log, tmp complete: the second rename is done;
 *   - <prefix>.log still the old generation, tmp holding the next one with
 *     a valid header (its records may have been acknowledged: their
 *     fdatasync made the header durable too): both renames are done;
 *   - tmp without a valid header: nothing in it was acknowledged; it goes
 *     (or, when it was already renamed, see the next case);
 *   - <prefix>.log without a valid header, the newest archived generation
 *     N before it: the header never reached the disk, so nothing in the
 *     file was acknowledged; it is written again as generation N+1
 *     starting where N ends, and the file's records are read as usual.
 * The flusher thread then prepares the next tmp (zero-filled, synced, the
 * directory synced) in the background.
 *
 * CHECKPOINTER: when depth bytes of log were written since the last
 * checkpoint it notes the LSN, starts a new image epoch, copies the dirty
 * pages in small batches (rw), waits until the log is durable past them,
 * writes the pages, fdatasyncs the databases, writes <prefix>.chk (durable)
 * and the headers' Log Required range.  A full disk makes it wait and retry
 * (nothing is lost: the log holds every change).  After each roll it also
 * refreshes the headers' Log Required upper bound.

 * FREEZE: ams_freeze() waits for a preparation of the next log file in
 * progress and for a log roll in progress (commits are admitted meanwhile:
 * neither counts in the hold), stops admission and any new gated section,
 * waits until no gated write is in progress, then holds every later write
 * in amb_gate_enter() until ams_thaw() or the deadline.  It waits for
 * writes, never for an fsync: the flush's fdatasync, the checkpoint's
 * database fdatasyncs and the syncs of the checkpoint file and headers run
 * outside the gate (a snapshot sees written data, synced or not; the
 * commits of a flush whose fdatasync ends during the freeze are
 * acknowledged then).  Nor does it write anything itself: records still in
 * the log buffer (and those of commits still applying) stay there, are
 * neither in the snapshot nor acknowledged before the thaw, and reach the
 * log file after it.  The file then ends where the last flush that passed
 * the gate ended, a record boundary, which a crash could leave too.  So the
 * snapshot has no freshly written log data of the freeze to write back
 * while it holds the application (btrfs waits for a subvolume's data in
 * flight inside its snapshot ioctl).  Gated sections are short (a flush's
 * write phase, a batch of page writes, one write at a time through in->gvfs
 * for the checkpoint file and the headers), so the freeze waits for little.
 * A log roll (header of the new generation, renames, and the old
 * generation's sync when its header was not synced yet) is one gated
 * section with that sync.
 * ams_quiesce() before a freeze keeps checkpoint page writes, header
 * refreshes and the next log file's preparation back until the thaw (or
 * its deadline; ams_thaw_quiet() lets it go on after the thaw, until the
 * writer's BackupComplete), so that a snapshot's own write-back of the
 * databases, inside the hold, finds nothing to write, and
 * ams_unchanged_files() can tell a provider which databases it need not
 * look at again.  A preparation that a commit waits for (the current log
 * file is full: prep_urgent) is not held: commits never wait for a quiet.  A roll
 * asked for during the quiet (ams_log_roll, a writer's prepare-snapshot)
 * therefore waits neither for the header refresh nor for the next log
 * file; it still waits for a preparation already under way.
 */
#include "store/instance.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "common/array.h"
#include "common/checksum.h"
#include "common/durable.h"
#include "common/parallel.h"
#include "store/dbfile.h"
#include "store/err.h"
#include "store/log.h"

#define DEFAULT_LOG_SIZE (1u << 20)
#define DEFAULT_CKPT_DEPTH (8u << 20)
/* ams_thaw_quiet() keeps the quiet only while the checkpointer thread has
 * waited for quiets (one after the other) less than this */
#define QUIET_PARK_MAX_US 5000000u
#define CKPT_GATE_PAGES 32  /* checkpoint page writes per pass of the freeze gate */

/* ---------------------------------------------------------------- utils */

uint64_t amb_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void abs_deadline(struct timespec *ts, uint64_t mono_us)
{
	ts->tv_sec = (time_t)(mono_us / 1000000u);
	ts->tv_nsec = (long)(mono_us % 1000000u) * 1000;
}

static void wr32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static void wr64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t rd32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static uint32_t segs_for(size_t len)
{
	return (uint32_t)((len + AMB_SEG_PAYLOAD - 1) / AMB_SEG_PAYLOAD) + 1;
}

/* ------------------------------------------------------- failure, gate */

/* Wake the background threads (mu held). */
static void wake_bg(ams_instance *in)
{
	pthread_cond_broadcast(&in->bg_cond);
}

/*
 * Wake (mu held) the threads waiting for durability that lsn_durable now
 * satisfies, and, when no flush writes or syncs, one waiter whose record is
 * still in the log buffer, to lead the next flush (wait_durable_locked); on
 * failure all of them.  A waiter sleeps on a condition variable of its own,
 * so a group commit wakes its committers and the next leader, not every
 * committer of the next group too (which went back to sleep: with 16
 * committers on 2 CPUs, about half of each wakeup's threads).  Leading
 * becomes possible only when syncing drops to 0 (in flush_finish, which
 * calls this), so no leader is lost.
 */
static void dur_wake(ams_instance *in)
{
	int lead = !in->flushing && !in->syncing;
	for (amb_durwait *w = in->durwait; w; w = w->next) {
		if (in->failed || w->lsn <= in->lsn_durable) {
			pthread_cond_signal(&w->cv);
		} else if (lead && in->lsn_written < w->lsn) {
			pthread_cond_signal(&w->cv);
			lead = 0;
		}
	}
}

void amb_fail_locked(ams_instance *in, int rc, const char *msg)
{
	if (!in->failed) {
		in->failed = 1;
		in->fail_rc = rc;
		snprintf(in->failmsg, sizeof(in->failmsg), "%s", msg);
	}
	pthread_cond_broadcast(&in->cond);
	dur_wake(in);
	pthread_cond_broadcast(&in->bg_cond);
}

static int is_frozen(ams_instance *in)
{
	return in->frozen && amb_mono_us() < in->freeze_deadline;
}

int amb_quiet_locked(ams_instance *in)
{
	return in->quiet_until && amb_mono_us() < in->quiet_until;
}

/* Wait (mu held) until not frozen; the deadline thaws by itself. */
static void wait_thawed_locked(ams_instance *in)
{
	while (is_frozen(in)) {
		struct timespec ts;
		abs_deadline(&ts, in->freeze_deadline);
		pthread_cond_timedwait(&in->cond, &in->mu, &ts);
	}
}

/* Enter a gated section (every write to a log, database, checkpoint or
 * header file): wait while a freeze is being set up, so that ams_freeze()
 * only waits for the sections already running, never for one that starts
 * after it, then while frozen (until the thaw or the deadline).  Sections
 * never nest: a thread inside one that entered another would wait for a
 * freeze that waits for it. */
void amb_gate_enter(ams_instance *in)
{
	pthread_mutex_lock(&in->mu);
	while (in->freezing && !in->failed)
		pthread_cond_wait(&in->cond, &in->mu);
	wait_thawed_locked(in);
	in->io_active++;
	pthread_mutex_unlock(&in->mu);
}

/* Wait while the instance is quiesced (ams_quiesce), at most until its
 * deadline; a stop or a failure ends the wait. */
static void wait_quiet(ams_instance *in)
{
	pthread_mutex_lock(&in->mu);
	while (!in->stop && !in->failed && in->quiet_until && amb_mono_us() < in->quiet_until) {
		if (!in->ckpt_parked) {
			in->ckpt_parked = 1; /* ams_quiesce() waits for no more */
			in->parked_since = amb_mono_us();
			pthread_cond_broadcast(&in->cond);
		}
		struct timespec ts;
		abs_deadline(&ts, in->quiet_until);
		pthread_cond_timedwait(&in->cond, &in->mu, &ts);
	}
	in->ckpt_parked = 0;
	pthread_mutex_unlock(&in->mu);
}

void amb_gate_exit(ams_instance *in)
{
	pthread_mutex_lock(&in->mu);
	in->io_active--;
	in->write_ops++;
	if (in->freezing)
		pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->mu);
}

/*
 * The counting vfs (in->cvfs, which in->vfs points to): everything passes
 * to the vfs the instance was opened with; a pwrite or truncate of a
 * database file is counted when it starts (mut_start) and when it ends
 * (mut_end), so that ams_unchanged_files() can say which database files
 * nothing changed since ams_quiesce().  allocate is not counted: it
 * reserves space without changing the size (FALLOC_FL_KEEP_SIZE, vfs.h),
 * so the bytes a reader sees stay the same (commits reserve space in the
 * databases while the checkpoint is quiesced).
 */
static ams_instance *cv_in(amb_vfs *v) { return v->ctx; }

/* the database whose file fd is, or -1 */
static int cv_db(ams_instance *in, int fd)
{
	for (int d = 0; fd >= 0 && d < in->ndb; d++)
		if (in->db[d].fd == fd)
			return d;
	return -1;
}

static void cv_begin(ams_instance *in, int d)
{
	if (d >= 0)
		__atomic_add_fetch(&in->mut_start[d], 1, __ATOMIC_SEQ_CST);
}

static void cv_end(ams_instance *in, int d)
{
	if (d >= 0)
		__atomic_add_fetch(&in->mut_end[d], 1, __ATOMIC_SEQ_CST);
}

static int cv_open(amb_vfs *v, const char *path, int flags, int mode)
{
	return cv_in(v)->base_vfs->open(cv_in(v)->base_vfs, path, flags, mode);
}

static int cv_close(amb_vfs *v, int fd)
{
	return cv_in(v)->base_vfs->close(cv_in(v)->base_vfs, fd);
}

static ssize_t cv_pread(amb_vfs *v, int fd, void *buf, size_t n, off_t off)
{
	return cv_in(v)->base_vfs->pread(cv_in(v)->base_vfs, fd, buf, n, off);
}

static ssize_t cv_pwrite(amb_vfs *v, int fd, const void *buf, size_t n, off_t off)
{
	ams_instance *in = cv_in(v);
	int d = cv_db(in, fd);
	cv_begin(in, d);
	ssize_t r = in->base_vfs->pwrite(in->base_vfs, fd, buf, n, off);
	cv_end(in, d);
	return r;
}

static int cv_sync(amb_vfs *v, int fd, int datasync)
{
	return cv_in(v)->base_vfs->sync(cv_in(v)->base_vfs, fd, datasync);
}

static int cv_truncate(amb_vfs *v, int fd, off_t len)
{
	ams_instance *in = cv_in(v);
	int d = cv_db(in, fd);
	cv_begin(in, d);
	int r = in->base_vfs->truncate(in->base_vfs, fd, len);
	cv_end(in, d);
	return r;
}

static int cv_allocate(amb_vfs *v, int fd, off_t off, off_t len)
{
	return cv_in(v)->base_vfs->allocate(cv_in(v)->base_vfs, fd, off, len);
}

static int cv_size(amb_vfs *v, int fd, off_t *size)
{
	return cv_in(v)->base_vfs->size(cv_in(v)->base_vfs, fd, size);
}

static int cv_rename(amb_vfs *v, const char *from, const char *to)
{
	return cv_in(v)->base_vfs->rename(cv_in(v)->base_vfs, from, to);
}

static int cv_unlink(amb_vfs *v, const char *path)
{
	return cv_in(v)->base_vfs->unlink(cv_in(v)->base_vfs, path);
}

static int cv_sync_dir(amb_vfs *v, const char *dir)
{
	return cv_in(v)->base_vfs->sync_dir(cv_in(v)->base_vfs, dir);
}

static void cvfs_init(ams_instance *in)
{
	in->cvfs = (amb_vfs){
		.ctx = in,
		.open = cv_open,
		.close = cv_close,
		.pread = cv_pread,
		.pwrite = cv_pwrite,
		.sync = cv_sync,
		.truncate = cv_truncate,
		.allocate = cv_allocate,
		.size = cv_size,
		.rename = cv_rename,
		.unlink = cv_unlink,
		.sync_dir = cv_sync_dir,
	};
}

/*
 * The gated vfs (in->gvfs): every operation that changes a file passes the
 * background gate by itself; reads and syncs pass through.  A freeze then
 * waits for at most one such write, never for an fsync: a snapshot sees
 * what was written, synced or not (the btrfs snapshot, FICLONE and a plain
 * read all see the page cache).  A section written through it may be cut
 * by a freeze between two writes (the header copy 0 new and copy 1 old,
 * the checkpoint file's tmp written but not renamed): each such state is
 * one a crash can leave, and recovery handles it.
 */
static ams_instance *gv_in(amb_vfs *v) { return v->ctx; }

static int gv_open(amb_vfs *v, const char *path, int flags, int mode)
{
	ams_instance *in = gv_in(v);
	if (!(flags & (O_CREAT | O_TRUNC)))
		return in->vfs->open(in->vfs, path, flags, mode);
	amb_gate_enter(in);
	int r = in->vfs->open(in->vfs, path, flags, mode);
	amb_gate_exit(in);
	return r;
}

static int gv_close(amb_vfs *v, int fd)
{
	ams_instance *in = gv_in(v);
	return in->vfs->close(in->vfs, fd);
}

static ssize_t gv_pread(amb_vfs *v, int fd, void *buf, size_t n, off_t off)
{
	ams_instance *in = gv_in(v);
	return in->vfs->pread(in->vfs, fd, buf, n, off);
}

static ssize_t gv_pwrite(amb_vfs *v, int fd, const void *buf, size_t n, off_t off)
{
	ams_instance *in = gv_in(v);
	amb_gate_enter(in);
	ssize_t r = in->vfs->pwrite(in->vfs, fd, buf, n, off);
	amb_gate_exit(in);
	return r;
}

static int gv_sync(amb_vfs *v, int fd, int datasync)
{
	ams_instance *in = gv_in(v);
	return in->vfs->sync(in->vfs, fd, datasync);
}

static int gv_truncate(amb_vfs *v, int fd, off_t len)
{
	ams_instance *in = gv_in(v);
	amb_gate_enter(in);
	int r = in->vfs->truncate(in->vfs, fd, len);
	amb_gate_exit(in);
	return r;
}

static int gv_allocate(amb_vfs *v, int fd, off_t off, off_t len)
{
	ams_instance *in = gv_in(v);
	amb_gate_enter(in);
	int r = in->vfs->allocate(in->vfs, fd, off, len);
	amb_gate_exit(in);
	return r;
}

static int gv_size(amb_vfs *v, int fd, off_t *size)
{
	ams_instance *in = gv_in(v);
	return in->vfs->size(in->vfs, fd, size);
}

static int gv_rename(amb_vfs *v, const char *from, const char *to)
{
	ams_instance *in = gv_in(v);
	amb_gate_enter(in);
	int r = in->vfs->rename(in->vfs, from, to);
	amb_gate_exit(in);
	return r;
}

static int gv_unlink(amb_vfs *v, const char *path)
{
	ams_instance *in = gv_in(v);
	amb_gate_enter(in);
	int r = in->vfs->unlink(in->vfs, path);
	amb_gate_exit(in);
	return r;
}

static int gv_sync_dir(amb_vfs *v, const char *dir)
{
	ams_instance *in = gv_in(v);
	return in->vfs->sync_dir(in->vfs, dir);
}

static void gvfs_init(ams_instance *in)
{
	in->gvfs = (amb_vfs){
		.open = gv_open,
		.close = gv_close,
		.pread = gv_pread,
		.pwrite = gv_pwrite,
		.sync = gv_sync,
		.truncate = gv_truncate,
		.allocate = gv_allocate,
		.size = gv_size,
		.rename = gv_rename,
		.unlink = gv_unlink,
		.sync_dir = gv_sync_dir,
		.ctx = in,
	};
}

/* The headers of every database, through v (in->vfs, or in->gvfs when the
 * caller is not inside a gated section).  Lock order: hdr_mu, then the
 * gate (in->gvfs); never the other way round, or a freeze being set up
 * could wait for a gated section that waits for hdr_mu held by a thread
 * that waits at the gate. */
enum { HDR_BOTH, HDR_FIRST, HDR_FINISH };

/* headers_store_via's databases: one mode for all, a result per database */
typedef struct hdr_batch {
	ams_instance *in;
	amb_vfs *v;
	int mode;
	int rc[AMB_MAX_DBS];
	char msg[AMB_MAX_DBS][512];
} hdr_batch;

/* One database: first the copy 1 an earlier HDR_FIRST left (hdr_half),
 * then what mode asks.  hdr_half_pending is read here and changed only by
 * headers_store_via after every job has ended, all under hdr_mu. */
static void hdr_store_one(void *arg, size_t d)
{
	hdr_batch *b = arg;
	ams_instance *in = b->in;
	amb_db *db = &in->db[d];
	int rc = 0;
	if (in->hdr_half_pending)
		rc = amb_dbhdr_store_copy(b->v, db->fd, db->path, &in->hdr_half[d], 1);
	if (!rc && b->mode == HDR_BOTH) {
		rc = amb_dbhdr_store(b->v, db->fd, db->path, &db->hdr);
	} else if (!rc && b->mode == HDR_FIRST) {
		db->hdr.seq++;
		rc = amb_dbhdr_store_copy(b->v, db->fd, db->path, &db->hdr, 0);
		in->hdr_half[d] = db->hdr;
	}
	b->rc[d] = rc;
	if (rc)
		snprintf(b->msg[d], sizeof(b->msg[d]), "%s", ams_errmsg());
}

/* Each database's copies are written one after the other, each
 * fdatasynced (dbfile.c); the databases are independent, so they are
 * stored at once, one per thread (amb_par_run: the caller's is one of
 * them): a backup's record or a checkpoint waits for two fdatasyncs (one
 * with HDR_FIRST), not two per database.  A thread that cannot be started
 * leaves its database to the others. */
static int headers_store_via(ams_instance *in, amb_vfs *v, int mode)
{
	if (mode == HDR_FINISH && !in->hdr_half_pending)
		return 0;
	hdr_batch b = {.in = in, .v = v, .mode = mode};
	amb_par_run((size_t)in->ndb, in->ndb, hdr_store_one, &b);
	int rc = 0;
	for (int d = 0; d < in->ndb && !rc; d++)
		if (b.rc[d])
			rc = amb_err(b.rc[d], "%s", b.msg[d]);
	/* on failure the pending copy 1 stays pending: whoever writes next
	 * writes it first (the instance is failed by the caller anyway) */
	if (!rc)
		in->hdr_half_pending = mode == HDR_FIRST;
	return rc;
}

int amb_headers_store(ams_instance *in)
{
	return headers_store_via(in, in->vfs, HDR_BOTH);
}

int amb_headers_store_gated(ams_instance *in)
{
	return headers_store_via(in, &in->gvfs, HDR_BOTH);
}

int amb_headers_store_first(ams_instance *in)
{
	return headers_store_via(in, &in->gvfs, HDR_FIRST);
}

int amb_headers_finish(ams_instance *in)
{
	return headers_store_via(in, &in->gvfs, HDR_FINISH);
}

/* --------------------------------------------------------- log writing */

/* Create <prefix>tmp.log zero-filled and synced; returns its open descriptor
 * or an AMS code.  Zeros: later fdatasyncs then never need block allocation.
 * gate: the caller entered the gate for this preparation alone (not a
 * flush's gated section): the creation and the zeros are written inside
 * it, then it is left and the syncs run outside. */
static int prepare_tmp(ams_instance *in, int gate)
{
	amb_vfs *v = in->vfs;
	char path[PATH_MAX];
	amb_log_path(path, sizeof(path), in->dir, in->prefix, UINT32_MAX);
	int fd = v->open(v, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		if (gate)
			amb_gate_exit(in);
		return amb_err(amb_errno_code(fd), "%s: cannot create: %s", path, strerror(-fd));
	}
	static const unsigned char zero[65536];
	int rc = 0;
	for (uint64_t off = 0; off < in->log_size && !rc; off += sizeof(zero)) {
		size_t n = in->log_size - off < sizeof(zero) ? (size_t)(in->log_size - off) : sizeof(zero);
		ssize_t w = v->pwrite(v, fd, zero, n, (off_t)off);
		if (w < 0)
			rc = (int)w;
	}
	if (gate)
		amb_gate_exit(in);
	pthread_mutex_lock(&in->mu);
	in->prep_syncing = 1; /* a freeze need not wait for the rest */
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->mu);
	if (!rc)
		rc = v->sync(v, fd, 0);
	if (!rc)
		rc = v->sync_dir(v, in->dir);
	if (rc) {
		v->close(v, fd);
		if (gate)
			amb_gate_enter(in);
		v->unlink(v, path);
		if (gate)
			amb_gate_exit(in);
		return amb_err(amb_errno_code(rc), "%s: cannot prepare the next log file: %s", path,
		               strerror(-rc));
	}
	return fd;
}

/*
 * Make sure the next log file is ready (tmp_fd >= 0).  Only one thread
 * prepares it at a time (prep_busy); a roll that finds it missing waits for
 * a preparation in progress or does it itself.  Returns 0 or an AMS code.
 */
static int ensure_tmp(ams_instance *in, int gate)
{
	/* gate: the background gate is passed before the preparation counts
	 * as started (prep_busy), so a freeze being set up never waits for a
	 * preparation that starts after it, and a roll during the set-up
	 * (which needs the file, inside its own gated section) never waits for
	 * one that is held at the gate */
	if (gate)
		amb_gate_enter(in);
	pthread_mutex_lock(&in->mu);
	while (in->prep_busy)
		pthread_cond_wait(&in->cond, &in->mu);
	in->prep_req = 0; /* done, or started here */
	if (in->tmp_fd >= 0) {
		pthread_cond_broadcast(&in->cond);
		pthread_mutex_unlock(&in->mu);
		if (gate)
			amb_gate_exit(in);
		return 0;
	}
	in->prep_busy = 1;
	pthread_mutex_unlock(&in->mu);
	int fd = prepare_tmp(in, gate);
	pthread_mutex_lock(&in->mu);
	in->prep_busy = 0;
	in->prep_syncing = 0;
	in->prep_urgent = 0;
	in->tmp_err = fd < 0 ? fd : 0;
	if (fd >= 0)
		in->tmp_fd = fd;
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->mu);
	return fd < 0 ? fd : 0;
}

/*
 * SPACE RESERVE.  amber.reserve (log size + 64 KiB of written zeros) is
 * disk space kept for the engine's own needs when the filesystem is full:
 * opening (a new log generation, a checkpoint file) and shutting down (the
 * checkpoint file).  Commits never spend it: they fail with AMS_ENOSPC
 * instead.  It is made again once space allows (at open and checkpoints).
 */
static void reserve_path(ams_instance *in, char *buf, size_t size)
{
	snprintf(buf, size, "%s/amber.reserve", in->dir);
}

static int reserve_make(ams_instance *in)
{
	amb_vfs *v = in->vfs;
	char path[PATH_MAX];
	reserve_path(in, path, sizeof(path));
	if (access(path, F_OK) == 0)
		return 0;
	char tmp[PATH_MAX + 8];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = v->open(v, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return fd;
	static const unsigned char zero[65536];
	uint64_t size = in->log_size + 65536;
	int rc = 0;
	for (uint64_t off = 0; off < size && !rc; off += sizeof(zero)) {
		ssize_t w = v->pwrite(v, fd, zero, sizeof(zero), (off_t)off);
		if (w < 0)
			rc = (int)w;
	}
	if (!rc)
		rc = v->sync(v, fd, 0);
	v->close(v, fd);
	if (!rc)
		rc = v->rename(v, tmp, path);
	if (!rc)
		rc = v->sync_dir(v, in->dir);
	if (rc)
		v->unlink(v, tmp);
	else
		in->reserve_used = 0;
	return rc;
}

/* Free the reserve; 1 if that freed space. */
static int reserve_spend(ams_instance *in)
{
	char path[PATH_MAX];
	reserve_path(in, path, sizeof(path));
	if (amb_durable_unlink(in->vfs, path) != 0)
		return 0;
	in->reserve_used = 1;
	return 1;
}

static int genmap_push(ams_instance *in, uint32_t gen, uint64_t lsn)
{
	if (amb_grow((void **)&in->genmap, &in->capgenmap, in->ngenmap + 1, sizeof(*in->genmap), 16))
		return AMS_ENOMEM;
	in->genmap[in->ngenmap].gen = gen;
	in->genmap[in->ngenmap].start_lsn = lsn;
	in->ngenmap++;
	return 0;
}

/* Generation holding LSN (the newest that starts at or before it). */
static uint32_t gen_of_lsn(ams_instance *in, uint64_t lsn)
{
	uint32_t g = in->genmap[0].gen;
	for (size_t i = 0; i < in->ngenmap; i++)
		if (in->genmap[i].start_lsn <= lsn)
			g = in->genmap[i].gen;
	return g;
}

static void loghdr_fill(ams_instance *in, amb_loghdr *h, uint32_t gen, uint64_t start_lsn,
                        uint64_t prev_create)
{
	memset(h, 0, sizeof(*h));
	h->magic = AMB_LOG_MAGIC;
	h->version = AMB_FORMAT_VERSION;
	h->gen = gen;
	h->seg_size = AMB_SEG_SIZE;
	h->file_size = in->log_size;
	h->sign_log = in->sign_log;
	h->create_time = amb_now_us();
	h->prev_create_time = prev_create;
	h->start_lsn = start_lsn;
	h->page_size = in->page_size;
	h->ndbs = (uint32_t)in->ndb;
	snprintf(h->prefix, sizeof(h->prefix), "%s", in->prefix);
	for (int d = 0; d < in->ndb; d++)
		h->sign_db[d] = in->db[d].hdr.sign_db;
}

/* Write a log header into block 0 of fd, without a sync; 0 or -errno. */
static int pwrite_loghdr(amb_vfs *v, int fd, const amb_loghdr *h)
{
	unsigned char seg[AMB_SEG_SIZE];
	memset(seg, 0, sizeof(seg));
	amb_blk b = {0};
	b.no = 0;
	b.type = AMB_BT_LOGHDR;
	b.aux = h->gen;
	amb_blk_put(seg, &b);
	memcpy(seg + 32, h, sizeof(*h));
	amb_ck_seal(seg, AMB_SEG_SIZE, 0);
	ssize_t w = v->pwrite(v, fd, seg, sizeof(seg), 0);
	return w < 0 ? (int)w : 0;
}

/* ... and fdatasync it. */
static int write_loghdr(amb_vfs *v, int fd, const amb_loghdr *h)
{
	int rc = pwrite_loghdr(v, fd, h);
	return rc ? rc : v->sync(v, fd, 1);
}

/* An fdatasync of generation gen's file succeeded: its header is durable
 * (mu held). */
static void hdr_synced_locked(ams_instance *in, uint32_t gen)
{
	if (gen > in->hdr_synced_gen)
		in->hdr_synced_gen = gen;
}

/* ... the same, mu not held. */
static void note_hdr_synced(ams_instance *in, uint32_t gen)
{
	pthread_mutex_lock(&in->mu);
	hdr_synced_locked(in, gen);
	pthread_mutex_unlock(&in->mu);
}

/* Make the current generation's header durable unless a sync of its file
 * already did (see LOG ROLL above): before the generation is archived,
 * before a truncation and at shutdown.  0 or an AMS code. */
int amb_loghdr_durable(ams_instance *in)
{
	pthread_mutex_lock(&in->mu);
	int fd = in->log_fd;
	uint32_t gen = in->gen;
	int need = fd >= 0 && in->hdr_synced_gen < gen;
	if (need)
		in->hdr_syncing++; /* a roll does not close fd meanwhile */
	pthread_mutex_unlock(&in->mu);
	if (!need)
		return 0;
	int s = in->vfs->sync(in->vfs, fd, 1);
	int rc = s ? amb_err(AMS_EIO, "fdatasync of log generation %u failed: %s", gen,
	                     strerror(-s)) : 0;
	pthread_mutex_lock(&in->mu);
	in->hdr_syncing--;
	if (!s)
		hdr_synced_locked(in, gen);
	if (s) /* never retried: the instance refuses further writes */
		amb_fail_locked(in, rc, ams_errmsg());
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->mu);
	return rc;
}

/*
 * Close the current generation and make the prepared tmp the new current
 * one, starting at start_lsn.  Called by the flusher (or by open/close
 * before the threads run), inside the gate.
 */
static int log_roll_io(ams_instance *in, uint64_t start_lsn)
{
	amb_vfs *v = in->vfs;
	char cur[PATH_MAX], arch[PATH_MAX], tmp[PATH_MAX];
	int rc;
	if ((rc = ensure_tmp(in, 0)) != 0) /* inside the gate */
		return rc;
	/* the generation about to be archived is durable whole: its records
	 * are (the caller synced them), its header too, or synced here */
	if ((rc = amb_loghdr_durable(in)) != 0)
		return rc;
	/* and no other sync of it is still running: an earlier flush's
	 * fdatasync or the checkpointer's header sync.  One that fails may
	 * have lost the file's unsynced writes (the kernel drops them on some
	 * systems) after ours succeeded; it fails the instance, and that must
	 * be known before the file is archived as complete */
	pthread_mutex_lock(&in->mu);
	while ((in->syncing || in->hdr_syncing) && !in->failed)
		pthread_cond_wait(&in->cond, &in->mu);
	int failed = in->failed;
	pthread_mutex_unlock(&in->mu);
	if (failed)
		return AMS_EFAILED;
	amb_loghdr h;
	loghdr_fill(in, &h, in->gen + 1, start_lsn, in->gen_create_time);
	rc = pwrite_loghdr(v, in->tmp_fd, &h);
	if (rc)
		return amb_err(amb_errno_code(rc), "writing the header of log generation %u: %s",
		               in->gen + 1, strerror(-rc));
	amb_log_path(cur, sizeof(cur), in->dir, in->prefix, 0);
	amb_log_path(arch, sizeof(arch), in->dir, in->prefix, in->gen);
	amb_log_path(tmp, sizeof(tmp), in->dir, in->prefix, UINT32_MAX);
	if (in->log_fd >= 0 && (rc = v->rename(v, cur, arch)) != 0)
		return amb_err(AMS_EIO, "renaming %s to %s: %s", cur, arch, strerror(-rc));
	if ((rc = v->rename(v, tmp, cur)) != 0)
		return amb_err(AMS_EIO, "renaming %s to %s: %s", tmp, cur, strerror(-rc));
	pthread_mutex_lock(&in->mu);
	/* an earlier flush may still fdatasync the old file (flush_cycle),
	 * or a truncation its header (loghdr_durable) */
	while (in->syncing || in->hdr_syncing)
		pthread_cond_wait(&in->cond, &in->mu);
	if (in->log_fd >= 0)
		v->close(v, in->log_fd);
	in->log_fd = in->tmp_fd;
	in->tmp_fd = -1;
	in->prep_req = 1; /* the next one, in the background (flusher thread) */
	in->gen = h.gen;
	in->gen_create_time = h.create_time;
	in->next_seg = 1;
	rc = genmap_push(in, h.gen, start_lsn);
	pthread_mutex_unlock(&in->mu);
	if (rc)
		return amb_err(rc, "out of memory");
	/* a failure preparing the next one is not fatal: admission then sees
	 * no prepared log and fails commits with AMS_ENOSPC */
	pthread_mutex_lock(&in->mu);
	wake_bg(in);
	pthread_mutex_unlock(&in->mu);
	return 0;
}

/* Write data (whole records, starting at lsn) as fresh segments.  A chunk
 * that fills the generation is synced before the roll to the next one; the
 * last chunk is not: *unsynced is set, and the caller syncs in->log_fd
 * outside the gate (a freeze waits for the writes only). */
static int log_write(ams_instance *in, const unsigned char *data, size_t len, uint64_t lsn,
                     int *unsynced)
{
	amb_vfs *v = in->vfs;
	size_t pos = 0, next_rec = 0;
	unsigned char *wbuf = NULL;
	size_t wcap = 0;
	int rc = 0;
	while (pos < len) {
		if (in->next_seg > in->nsegs) {
			rc = log_roll_io(in, lsn + pos);
			if (rc)
				break;
		}
		uint32_t avail = in->nsegs + 1 - in->next_seg;
		size_t want = (len - pos + AMB_SEG_PAYLOAD - 1) / AMB_SEG_PAYLOAD;
		uint32_t n = want < avail ? (uint32_t)want : avail;
		size_t bytes = (size_t)n * AMB_SEG_SIZE;
		if (bytes > wcap) {
			free(wbuf);
			wbuf = amb_io_alloc(bytes);
			wcap = bytes;
			if (!wbuf) {
				rc = amb_err(AMS_ENOMEM, "out of memory writing the log");
				break;
			}
		}
		memset(wbuf, 0, bytes);
		uint32_t first = in->next_seg;
		for (uint32_t s = 0; s < n; s++) {
			unsigned char *seg = wbuf + (size_t)s * AMB_SEG_SIZE;
			size_t chunk = len - pos < AMB_SEG_PAYLOAD ? len - pos : AMB_SEG_PAYLOAD;
			memcpy(seg + AMB_SEG_HDR, data + pos, chunk);
			while (next_rec < pos)
				next_rec += rd32(data + next_rec);
			uint32_t fr = next_rec < pos + chunk ? (uint32_t)(next_rec - pos) : AMB_SEG_NO_REC;
			amb_blk b = {0};
			b.no = first + s;
			b.stamp = lsn + pos;
			b.type = AMB_BT_LOGSEG;
			b.aux = in->gen;
			amb_blk_put(seg, &b);
			wr32(seg + 32, first);
			wr16(seg + 36, (uint16_t)n);
			wr16(seg + 38, (uint16_t)chunk);
			wr32(seg + 40, fr);
			amb_ck_seal(seg, AMB_SEG_SIZE, amb_seg_seed(in->gen, first + s));
			pos += chunk;
		}
		ssize_t w = v->pwrite(v, in->log_fd, wbuf, bytes, (off_t)first * AMB_SEG_SIZE);
		if (w < 0) {
			rc = amb_err(amb_errno_code((int)w), "writing log generation %u: %s", in->gen,
			             strerror((int)-w));
			break;
		}
		*unsynced = 1;
		if (pos < len) {
			int s = v->sync(v, in->log_fd, 1);
			if (s) {
				rc = amb_err(AMS_EIO, "fdatasync of log generation %u failed: %s", in->gen,
				             strerror(-s));
				break;
			}
			*unsynced = 0;
			note_hdr_synced(in, in->gen);
		}
		pthread_mutex_lock(&in->mu);
		in->next_seg = first + n;
		pthread_mutex_unlock(&in->mu);
	}
	free(wbuf);
	return rc;
}

/* One flush between its write phase (flush_write) and its fdatasync and
 * publication (flush_finish), which may run on another thread. */
typedef struct flush_job {
	ams_instance *in;
	uint64_t lsn;         /* where its records start */
	size_t len;           /* their bytes */
	uint32_t segs;        /* the log segments reserved for them */
	uint32_t gen_before;  /* the generation when the flush began */
	int want_roll;        /* a roll asked for (ticket) is done by it */
	uint64_t ticket;
	int rolls;            /* counted in in->rolling during the write phase */
	/* set at the end of the write phase */
	int rc, unsynced, fd;
	uint32_t gen_now;
	uint64_t sq;          /* its place in the publication order */
} flush_job;

/*
 * The write phase of a flush (mu held on entry and on return; in->flushing
 * must be 0): take the buffer, write its records (and roll if asked).
 * With gather, commits already admitted are given a moment (at most
 * 200 µs) to append their records, so that one fdatasync serves them all.  Afterwards the
 * flush counts as syncing; flush_finish() must follow.
 */
static void flush_write(ams_instance *in, flush_job *f, int gather)
{
	in->flushing = 1;
	if (gather && in->lbuf_len && in->appliers) {
		/* only the commits applying now: later ones join the next flush */
		uint64_t target = in->n_appended + (uint64_t)in->appliers;
		struct timespec ts;
		abs_deadline(&ts, amb_mono_us() + 200);
		while (in->n_appended < target && in->appliers && !in->failed)
			if (pthread_cond_timedwait(&in->cond, &in->mu, &ts))
				break;
	}
	/* take the buffer; committers go on filling the spare one */
	unsigned char *data = in->lbuf;
	size_t len = in->lbuf_len, cap = in->lbuf_cap;
	uint64_t lsn = in->lsn_written;
	*f = (flush_job){.in = in, .lsn = lsn, .len = len, .segs = in->lbuf_segs,
	                 .gen_before = in->gen, .want_roll = in->roll_req != in->roll_done,
	                 .ticket = in->roll_req};
	in->lbuf = in->spare;
	in->lbuf_cap = in->spare_cap;
	in->spare = NULL;
	in->spare_cap = 0;
	in->lbuf_len = 0;
	in->lbuf_segs = 0;
	in->lsn_written = lsn + len;
	/* this flush rolls the log (asked to, or its records do not fit in the
	 * current generation): a freeze being set up waits for the roll before
	 * it holds commits (ams_freeze), not inside the hold */
	f->rolls = f->want_roll || in->next_seg > in->nsegs ||
	           f->segs > in->nsegs + 1 - in->next_seg;
	in->rolling += f->rolls;
	pthread_mutex_unlock(&in->mu);

	int rc = 0, unsynced = 0;
	amb_gate_enter(in);
	if (len)
		rc = log_write(in, data, len, lsn, &unsynced);
	if (!rc && f->want_roll && unsynced) {
		/* the generation's records must be durable before it is archived */
		int s = in->vfs->sync(in->vfs, in->log_fd, 1);
		if (s)
			rc = amb_err(AMS_EIO, "fdatasync of log generation %u failed: %s", in->gen,
			             strerror(-s));
		else
			note_hdr_synced(in, in->gen);
		unsynced = 0;
	}
	if (!rc && f->want_roll) {
		rc = log_roll_io(in, lsn + len);
		if (rc == AMS_ENOSPC && !len) {
			/* no space for a new generation: the roll fails, nothing lost;
			 * the prepared file (if any) is suspect and goes */
			char tmp[PATH_MAX];
			amb_log_path(tmp, sizeof(tmp), in->dir, in->prefix, UINT32_MAX);
			pthread_mutex_lock(&in->mu);
			if (in->tmp_fd >= 0) {
				in->vfs->close(in->vfs, in->tmp_fd);
				in->tmp_fd = -1;
				in->vfs->unlink(in->vfs, tmp);
			}
			in->tmp_err = rc;
			in->roll_done = f->ticket;
			pthread_mutex_unlock(&in->mu);
			rc = 0;
			f->want_roll = 0;
		}
	}
	amb_gate_exit(in);
	f->rc = rc;
	f->unsynced = unsynced;

	/* the write phase is over.  Committers lead the next flush only once
	 * this fdatasync is done (syncing == 0: the records that arrive
	 * meanwhile make the next group).  log_fd cannot be closed under the
	 * fdatasync: a roll waits for syncing == 0. */
	pthread_mutex_lock(&in->mu);
	if (f->rolls) {
		in->rolling--;
		pthread_cond_broadcast(&in->cond);
	}
	in->spare = data;
	in->spare_cap = cap;
	f->fd = in->log_fd;
	f->gen_now = in->gen;
	f->sq = ++in->sync_seq;
	in->syncing++;
	in->flushing = 0;
	/* committers are not woken here: they lead only once syncing is 0,
	 * and the publication in flush_finish() wakes them */
}

/* The rest of a flush after flush_write(): its fdatasync (mu released
 * meanwhile) and the publication of what is durable, in flush order (mu
 * held on entry and on return).  Returns 0 or the AMS code that failed
 * the instance. */
static int flush_finish(flush_job *f)
{
	ams_instance *in = f->in;
	int rc = f->rc;
	pthread_mutex_unlock(&in->mu);
	if (!rc && f->unsynced) {
		int s = in->vfs->sync(in->vfs, f->fd, 1);
		if (s)
			rc = amb_err(AMS_EIO, "fdatasync of log generation %u failed: %s", f->gen_now,
			             strerror(-s));
	}

	/* publish in flush order: a later flush's fdatasync covers this one's
	 * records (same file, written before it; a roll syncs the old file
	 * first), but its success must not acknowledge them before this
	 * fdatasync has said whether they are durable */
	pthread_mutex_lock(&in->mu);
	while (in->sync_pub + 1 != f->sq && !in->failed)
		pthread_cond_wait(&in->cond, &in->mu);
	in->syncing--;
	in->sync_pub = f->sq;
	/* the sync made f->fd's header durable too (written before any record) */
	if (!rc && f->unsynced)
		hdr_synced_locked(in, f->gen_now);
	pthread_cond_broadcast(&in->cond);
	if (rc) {
		amb_fail_locked(in, rc, ams_errmsg());
		return rc;
	}
	if (in->failed)
		return AMS_EFAILED;
	if (f->gen_now != f->gen_before)
		in->hdr_req = 1;
	if (f->lsn + f->len > in->lsn_durable)
		in->lsn_durable = f->lsn + f->len;
	in->reserved_segs -= f->segs;
	if (f->len)
		in->n_flushes++;
	if (f->want_roll)
		in->roll_done = f->ticket;
	if (in->lsn_durable - in->ckpt_lsn >= in->ckpt_depth)
		in->ckpt_req = 1;
	dur_wake(in);
	pthread_cond_broadcast(&in->cond);
	if (in->ckpt_req || in->hdr_req || in->prep_req || in->roll_req != in->roll_done || in->stop)
		wake_bg(in);
	return 0;
}

/*
 * One flush (mu held on entry and on return; in->flushing must be 0).  The
 * calling thread leads: a committer waiting for its own record, or the
 * flusher thread for a roll request.  Returns 0 or the AMS code that
 * failed the instance.
 */
static int flush_cycle(ams_instance *in)
{
	flush_job f;
	flush_write(in, &f, 1);
	return flush_finish(&f);
}

/* Wait (mu held) until lsn is durable, leading a flush whenever no flush
 * writes or syncs and the record is not yet written (that is the group
 * commit); asleep meanwhile on a condition variable of its own (dur_wake).
 * Whether lsn is durable (0: the instance failed). */
static int wait_durable_locked(ams_instance *in, uint64_t lsn)
{
	amb_durwait w = {.lsn = lsn};
	int listed = 0;
	while (in->lsn_durable < lsn && !in->failed) {
		if (!in->flushing && !in->syncing && in->lsn_written < lsn) {
			flush_cycle(in);
			continue;
		}
		if (!listed) {
			pthread_cond_init(&w.cv, NULL);
			w.next = in->durwait;
			in->durwait = &w;
			listed = 1;
		}
		pthread_cond_wait(&w.cv, &in->mu);
	}
	if (listed) {
		amb_durwait **pp = &in->durwait;
		while (*pp != &w)
			pp = &(*pp)->next;
		*pp = w.next;
		pthread_cond_destroy(&w.cv);
	}
	return in->lsn_durable >= lsn;
}

/*
 * The flusher thread: rolls on request, prepares the next log file in the
 * background, and flushes records nobody is waiting for (committers
 * normally lead their own flush).
 */
static void *flusher_main(void *arg)
{
	ams_instance *in = arg;
	pthread_mutex_lock(&in->mu);
	for (;;) {
		int roll = in->roll_req != in->roll_done;
		/* no preparation starts while a freeze is set up or held, nor
		 * while quiesced (the thaw, the quiet's end or its deadline wakes
		 * this thread): it would write and sync a whole log file between
		 * a snapshot's prepare and its freeze, or inside the hold */
		int prep_wanted = in->prep_req && in->tmp_fd < 0 && !in->prep_busy;
		int quiet = amb_quiet_locked(in) && !in->prep_urgent;
		int prep = prep_wanted && !in->freezing && !is_frozen(in) && !quiet;
		if (in->failed || (in->stop && !in->lbuf_len && !roll && !in->flushing))
			break;
		if (!in->flushing && (roll || (in->stop && in->lbuf_len))) {
			flush_cycle(in);
			continue;
		}
		if (prep) {
			/* prep_req stays set until ensure_tmp() counts the
			 * preparation as started (prep_busy): ams_log_roll()
			 * waits for either */
			pthread_mutex_unlock(&in->mu);
			ensure_tmp(in, 1);
			pthread_mutex_lock(&in->mu);
			continue;
		}
		if (prep_wanted && quiet) {
			struct timespec ts;
			abs_deadline(&ts, in->quiet_until);
			pthread_cond_timedwait(&in->bg_cond, &in->mu, &ts);
			continue;
		}
		pthread_cond_wait(&in->bg_cond, &in->mu);
	}
	pthread_mutex_unlock(&in->mu);
	return NULL;
}

/* ---------------------------------------------------------- checkpoint */

typedef struct ckpt_page {
	int db;
	uint32_t pgno;
	unsigned char *buf;
} ckpt_page;

static int ckpt_cmp(const void *a, const void *b)
{
	const ckpt_page *x = a, *y = b;
	if (x->db != y->db)
		return x->db - y->db;
	return x->pgno < y->pgno ? -1 : x->pgno > y->pgno;
}

/* A checkpoint that could not finish: its pages stay dirty for the next. */
static void redirty(ams_instance *in, const ckpt_page *pages, size_t n)
{
	pthread_rwlock_wrlock(&in->rw);
	for (size_t i = 0; i < n; i++) {
		amb_page *p = amb_cache_get(&in->db[pages[i].db], pages[i].pgno);
		if (p)
			p->dirty = 1;
	}
	pthread_rwlock_unlock(&in->rw);
}

/*
 * One checkpoint.  final: called by close with the threads stopped (writes
 * everything, no copying needed but the same path is used).
 */
static int checkpoint(ams_instance *in)
{
	amb_vfs *v = in->vfs;
	uint32_t P = in->page_size;
	ckpt_page *pages = NULL;
	size_t n = 0, cap = 0;
	uint32_t npages[AMB_MAX_DBS];
	uint64_t stamps[AMB_MAX_DBS];
	int rc = 0;

	/* 1a. note the LSN, start a new image epoch, list the dirty pages */
	pthread_rwlock_wrlock(&in->rw);
	pthread_mutex_lock(&in->mu);
	uint64_t lsn = in->lsn_end;
	pthread_mutex_unlock(&in->mu);
	/* replay will start at lsn: every page changed after it must be logged
	 * whole once more before any delta (format.h) */
	in->fpi_epoch++;
	for (int d = 0; d < in->ndb && !rc; d++) {
		amb_db *db = &in->db[d];
		npages[d] = db->npages;
		stamps[d] = db->stamp;
		for (size_t i = 0; i < db->ccap && !rc; i++)
			for (amb_page *p = db->cache[i]; p && !rc; p = p->next) {
				if (!p->dirty)
					continue;
				if (amb_grow((void **)&pages, &cap, n + 1, sizeof(*pages), 256))
					rc = AMS_ENOMEM;
				else
					pages[n++] = (ckpt_page){d, p->pgno, NULL};
			}
	}
	pthread_rwlock_unlock(&in->rw);

	/* 1b. copy them in small batches, so commits wait only briefly.  A
	 * page changed meanwhile is copied in its newer version, which is
	 * fine: the checkpoint promises everything before lsn, and the pages
	 * are written only once the log is durable past their newest change */
	uint64_t need = lsn;
	for (size_t i = 0; i < n && !rc; i += 64) {
		pthread_rwlock_wrlock(&in->rw);
		for (size_t j = i; j < n && j < i + 64; j++) {
			amb_page *p = amb_cache_get(&in->db[pages[j].db], pages[j].pgno);
			pages[j].buf = p ? amb_io_alloc(P) : NULL;
			if (!pages[j].buf) {
				rc = AMS_ENOMEM; /* only the checkpointer removes pages */
				break;
			}
			if (p->unsealed) {
				amb_ck_seal(p->buf, P, p->pgno);
				p->unsealed = 0;
			}
			memcpy(pages[j].buf, p->buf, P);
			p->dirty = 0;
			if (p->lsn > need)
				need = p->lsn;
		}
		pthread_rwlock_unlock(&in->rw);
	}
	if (rc) {
		/* put back what was taken: nothing has been written */
		redirty(in, pages, n);
		amb_err(rc, "out of memory during a checkpoint");
		goto out;
	}
	if (n)
		qsort(pages, n, sizeof(*pages), ckpt_cmp);

	/* 2. write-ahead rule: the log must be durable past every copied page */
	pthread_mutex_lock(&in->mu);
	wait_durable_locked(in, need);
	int failed = in->failed;
	uint32_t gen = gen_of_lsn(in, lsn), cur = in->gen;
	pthread_mutex_unlock(&in->mu);
	if (failed) {
		rc = AMS_EFAILED;
		goto out;
	}

	/* 3. pages, then fdatasync every database written to.  The pages pass
	 * the gate in batches of CKPT_GATE_PAGES, so a freeze waits for one
	 * batch at most; the fdatasyncs change no data and run outside it.
	 * No batch starts while quiesced (ams_quiesce). */
	int wrote[AMB_MAX_DBS] = {0};
	for (size_t i = 0; i < n && !rc; i++) {
		if (i % CKPT_GATE_PAGES == 0) {
			wait_quiet(in);
			amb_gate_enter(in);
		}
		amb_db *db = &in->db[pages[i].db];
		ssize_t w = v->pwrite(v, db->fd, pages[i].buf, P, (off_t)pages[i].pgno * P);
		if (w < 0)
			rc = amb_err(amb_errno_code((int)w), "%s: writing page %u: %s", db->name,
			             pages[i].pgno, strerror((int)-w));
		wrote[pages[i].db] = 1;
		if (rc || i + 1 == n || (i + 1) % CKPT_GATE_PAGES == 0)
			amb_gate_exit(in);
	}
	if (rc == AMS_ENOSPC && !in->stop) {
		/* nothing is lost (the pages are cached and logged): try later */
		redirty(in, pages, n);
		rc = 0;
		goto out;
	}
	for (int d = 0; d < in->ndb && !rc; d++) {
		if (!wrote[d])
			continue;
		int s = v->sync(v, in->db[d].fd, 1);
		if (s)
			rc = amb_err(AMS_EIO, "%s: fdatasync failed: %s", in->db[d].name, strerror(-s));
	}
	if (rc)
		goto out;

	/* 4. the checkpoint file, then the headers' Log Required, through the
	 * gated vfs: each write passes the gate, the fsyncs do not hold a
	 * freeze (a freeze between them leaves a state a crash can leave).
	 * Both name generation cur: its own header durable first (see
	 * refresh_headers) */
	if ((rc = amb_loghdr_durable(in)) != 0)
		goto out;
	amb_vfs *gv = &in->gvfs;
	amb_chk chk;
	memset(&chk, 0, sizeof(chk));
	chk.magic = AMB_CHK_MAGIC;
	chk.version = AMB_FORMAT_VERSION;
	chk.sign_log = in->sign_log;
	chk.lsn = lsn;
	chk.gen = gen;
	chk.time = amb_now_us();
	chk.full_backup = in->db[0].hdr.full_prev;
	chk.inc_backup = in->db[0].hdr.inc_prev;
	snprintf(chk.prefix, sizeof(chk.prefix), "%s", in->prefix);
	char chkpath[PATH_MAX];
	snprintf(chkpath, sizeof(chkpath), "%s/%s.chk", in->dir, in->prefix);
	pthread_mutex_lock(&in->hdr_mu);
	rc = amb_chk_store(gv, chkpath, &chk, ++in->ckpt_seq);
	if (rc == AMS_ENOSPC && in->stop && reserve_spend(in))
		rc = amb_chk_store(gv, chkpath, &chk, ++in->ckpt_seq); /* shutting down */
	if (rc == AMS_ENOSPC && !in->stop) {
		/* a full disk: the checkpoint waits, nothing is lost (the log has it all) */
		pthread_mutex_unlock(&in->hdr_mu);
		redirty(in, pages, n);
		rc = 0;
		goto out;
	}
	if (rc) {
		amb_err(AMS_EIO, "%s: writing the checkpoint failed", chkpath);
	} else {
		for (int d = 0; d < in->ndb; d++) {
			amb_dbhdr *h = &in->db[d].hdr;
			h->state = AMB_DBSTATE_DIRTY;
			h->gen_min_required = gen;
			h->gen_max_required = cur;
			h->gen_max_committed = cur;
			h->last_stamp = stamps[d];
			h->page_count = npages[d];
		}
		rc = amb_headers_store_gated(in);
	}
	pthread_mutex_unlock(&in->hdr_mu);
	if (rc)
		goto out;

	/* 5. pages written and not changed since may leave the cache */
	pthread_rwlock_wrlock(&in->rw);
	for (size_t i = 0; i < n; i++) {
		amb_db *db = &in->db[pages[i].db];
		amb_page *p = amb_cache_get(db, pages[i].pgno);
		if (p && !p->dirty)
			amb_cache_remove(db, pages[i].pgno);
	}
	pthread_rwlock_unlock(&in->rw);
	if (in->reserve_used && !in->stop)
		reserve_make(in);
	pthread_mutex_lock(&in->mu);
	in->ckpt_lsn = lsn;
	in->ckpt_gen = gen;
	in->n_ckpts++;
	/* forget generations before the checkpoint's */
	size_t keep = 0;
	while (keep + 1 < in->ngenmap && in->genmap[keep + 1].start_lsn <= lsn)
		keep++;
	memmove(in->genmap, in->genmap + keep, (in->ngenmap - keep) * sizeof(*in->genmap));
	in->ngenmap -= keep;
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->mu);
out:
	for (size_t i = 0; i < n; i++)
		free(pages[i].buf);
	free(pages);
	return rc;
}

/* After a roll: the headers' Log Required upper bound follows the log. */
static int refresh_headers(ams_instance *in)
{
	pthread_mutex_lock(&in->mu);
	uint32_t cur = in->gen;
	pthread_mutex_unlock(&in->mu);
	/* a header naming generation cur needs cur's own header durable: a
	 * crash may leave its renames undone, and open finishes them only
	 * from a header on disk (fix_interrupted_roll) */
	int rc = amb_loghdr_durable(in);
	if (rc)
		return rc;
	pthread_mutex_lock(&in->hdr_mu);
	for (int d = 0; d < in->ndb; d++) {
		in->db[d].hdr.gen_max_required = cur;
		in->db[d].hdr.gen_max_committed = cur;
	}
	rc = amb_headers_store_gated(in);
	pthread_mutex_unlock(&in->hdr_mu);
	return rc;
}

static void *ckpter_main(void *arg)
{
	ams_instance *in = arg;
	pthread_mutex_lock(&in->mu);
	for (;;) {
		while (!in->stop && !in->failed && !in->ckpt_req && !in->hdr_req)
			pthread_cond_wait(&in->bg_cond, &in->mu);
		if (in->stop || in->failed)
			break;
		int full = in->ckpt_req;
		in->ckpt_req = 0;
		in->hdr_req = 0;
		in->hdr_busy = !full;
		in->ckpt_busy = full;
		pthread_mutex_unlock(&in->mu);
		/* a header refresh waits for the quiet to end too: it would change
		 * every database file, which ams_unchanged_files() could then not
		 * list; the log holds what it records meanwhile */
		if (!full)
			wait_quiet(in);
		int rc = full ? checkpoint(in) : refresh_headers(in);
		pthread_mutex_lock(&in->mu);
		in->hdr_busy = in->ckpt_busy = 0;
		if (full)
			in->ckpt_done++;
		if (rc && rc != AMS_EFAILED)
			amb_fail_locked(in, rc, ams_errmsg());
		pthread_cond_broadcast(&in->cond);
	}
	pthread_mutex_unlock(&in->mu);
	return NULL;
}

/* --------------------------------------------------------- transactions */

enum { OP_PUT = 1, OP_DEL = 2, OP_CREATE = 3 };

typedef struct txop {
	int kind;
	int db; /* OP_CREATE */
	char table[AMB_MAX_TABLE + 1];
	unsigned char *key;
	size_t klen;
	unsigned char *val;
	size_t vlen;
	/* filled by validation: the old record of the key (DEL, replacing PUT) */
	int has_old;
	uint32_t old_page;
	uint32_t *chain; /* overflow pages of the old value */
	uint32_t nchain;
} txop;

struct ams_txn {
	ams_instance *in;
	txop *ops;
	size_t n, cap;
};

static int name_ok(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > AMB_MAX_TABLE || t[0] == '$')
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e)
			return 0;
	return 1;
}

int ams_txn_begin(ams_instance *in, ams_txn **out)
{
	pthread_mutex_lock(&in->mu);
	int failed = in->failed;
	pthread_mutex_unlock(&in->mu);
	if (failed)
		return amb_err(AMS_EFAILED, "instance failed earlier: %s", in->failmsg);
	ams_txn *t = calloc(1, sizeof(*t));
	if (!t)
		return amb_err(AMS_ENOMEM, "out of memory");
	t->in = in;
	*out = t;
	return 0;
}

static txop *txn_add(ams_txn *t)
{
	if (amb_grow((void **)&t->ops, &t->cap, t->n + 1, sizeof(*t->ops), 8))
		return NULL;
	txop *op = &t->ops[t->n++];
	memset(op, 0, sizeof(*op));
	return op;
}

/*
 * Largest value a record of this instance's log can carry: admission needs
 * the record's upper bound (validate()) in at most two generations (a fresh
 * one and the prepared next one).  About 2 x log size: 1 MiB logs carry
 * values up to about 1.9 MiB.
 */
static size_t max_value_for(size_t P, uint32_t nsegs, int ndb)
{
	size_t cap = (size_t)(2 * nsegs - 1) * AMB_SEG_PAYLOAD;
	size_t fixed = AMB_REC_HDR + 24 + 8 * (AMB_ENT_HDR + P + 16) + (size_t)ndb * 16;
	if (cap <= fixed)
		return 0;
	size_t pages = (cap - fixed) / (AMB_ENT_HDR + P + 16);
	size_t v = pages * (P - AMB_OVF_HDR);
	return v < AMB_MAX_VALUE ? v : AMB_MAX_VALUE;
}

static size_t max_value(ams_instance *in)
{
	return max_value_for(in->page_size, in->nsegs, in->ndb);
}

static int txn_op(ams_txn *t, int kind, const char *table, const void *key, size_t klen,
                  const void *val, size_t vlen, int db)
{
	if (!t || !table || !name_ok(table))
		return amb_err(AMS_EINVAL, "table name must be 1..%d printable characters, not "
		               "starting with '$'", AMB_MAX_TABLE);
	if (kind != OP_CREATE && (!key || klen == 0 || klen > AMB_MAX_KEY))
		return amb_err(AMS_EINVAL, "key must be 1..%d bytes", AMB_MAX_KEY);
	if (kind == OP_PUT && vlen > max_value(t->in))
		return amb_err(AMS_EINVAL, "value of %zu bytes is larger than the %zu this instance's "
		               "log size allows", vlen, max_value(t->in));
	if (kind == OP_PUT && vlen && !val)
		return amb_err(AMS_EINVAL, "value is NULL");
	if (kind == OP_CREATE && (db < 0 || db >= t->in->ndb))
		return amb_err(AMS_EINVAL, "database index %d out of range (instance has %d)", db,
		               t->in->ndb);
	txop *op = txn_add(t);
	if (!op)
		return amb_err(AMS_ENOMEM, "out of memory");
	op->kind = kind;
	op->db = db;
	snprintf(op->table, sizeof(op->table), "%s", table);
	if (kind != OP_CREATE) {
		op->key = malloc(klen);
		if (!op->key) {
			t->n--;
			return amb_err(AMS_ENOMEM, "out of memory");
		}
		memcpy(op->key, key, klen);
		op->klen = klen;
	}
	if (kind == OP_PUT) {
		op->val = malloc(vlen ? vlen : 1);
		if (!op->val) {
			free(op->key);
			t->n--;
			return amb_err(AMS_ENOMEM, "out of memory");
		}
		if (vlen)
			memcpy(op->val, val, vlen);
		op->vlen = vlen;
	}
	return 0;
}

int ams_txn_put(ams_txn *t, const char *table, const void *key, size_t klen, const void *val,
                size_t vlen)
{
	return txn_op(t, OP_PUT, table, key, klen, val, vlen, 0);
}

int ams_txn_del(ams_txn *t, const char *table, const void *key, size_t klen)
{
	return txn_op(t, OP_DEL, table, key, klen, NULL, 0, 0);
}

int ams_txn_create_table(ams_txn *t, const char *table, int dbidx)
{
	return txn_op(t, OP_CREATE, table, "", 0, NULL, 0, dbidx);
}

void ams_txn_abort(ams_txn *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->ops[i].key);
		free(t->ops[i].val);
		free(t->ops[i].chain);
	}
	free(t->ops);
	free(t);
}

/* ---- apply ---- */

typedef struct touched {
	int db;
	amb_page *p;
} touched;

typedef struct apply_ctx {
	ams_instance *in;
	unsigned char *rec;
	size_t len, cap;
	uint32_t nent;
	touched *t;
	size_t nt, ct;
	uint32_t *freed[AMB_MAX_DBS];
	size_t nfreed[AMB_MAX_DBS], cfreed[AMB_MAX_DBS];
	int oom;
} apply_ctx;

static unsigned char *rec_reserve(apply_ctx *c, size_t n)
{
	if (amb_grow((void **)&c->rec, &c->cap, c->len + n, 1, 65536)) {
		c->oom = 1;
		return NULL;
	}
	unsigned char *p = c->rec + c->len;
	c->len += n;
	return p;
}

static void ent_hdr(unsigned char *e, int kind, int db, uint32_t pgno)
{
	e[0] = (unsigned char)kind;
	e[1] = (unsigned char)db;
	e[2] = e[3] = 0;
	wr32(e + 4, pgno);
}

/* Page of db in the cache, loaded if needed; fresh: content irrelevant. */
static amb_page *touch(apply_ctx *c, int d, uint32_t pgno, int fresh)
{
	ams_instance *in = c->in;
	amb_db *db = &in->db[d];
	amb_page *p = amb_cache_get(db, pgno);
	if (!p) {
		unsigned char *buf = amb_io_alloc(in->page_size);
		if (!buf) {
			c->oom = 1;
			return NULL;
		}
		if (fresh) {
			memset(buf, 0, in->page_size);
		} else if (amb_page_read(in, db, pgno, buf, NULL)) {
			free(buf);
			return NULL;
		}
		p = amb_cache_add(db, pgno, buf);
		if (!p) {
			free(buf);
			c->oom = 1;
			return NULL;
		}
	}
	if (!p->touched) {
		if (amb_grow((void **)&c->t, &c->ct, c->nt + 1, sizeof(*c->t), 32)) {
			c->oom = 1;
			return NULL;
		}
		c->t[c->nt].db = d;
		c->t[c->nt].p = p;
		c->nt++;
		p->touched = 1;
		if (!fresh && p->fpi_epoch == in->fpi_epoch) {
			p->before = amb_io_alloc(in->page_size);
			if (p->before)
				memcpy(p->before, p->buf, in->page_size);
		}
	}
	p->dirty = 1;
	return p;
}

static uint32_t page_free_bytes(ams_instance *in, const unsigned char *pg)
{
	return in->page_size - AMB_DATA_HDR - rd16(pg + 32);
}

static void format_data_page(ams_instance *in, unsigned char *pg, uint32_t pgno)
{
	memset(pg, 0, in->page_size);
	amb_blk b = {0};
	b.no = pgno;
	b.type = AMB_BT_DATA;
	amb_blk_put(pg, &b);
}

static uint32_t alloc_page(apply_ctx *c, int d)
{
	amb_db *db = &c->in->db[d];
	if (db->nfree == 0)
		return 0; /* validation reserved enough: cannot happen */
	return db->freel[--db->nfree];
}

/* A data page of db d with room for need bytes of cell. */
static amb_page *find_room(apply_ctx *c, int d, uint32_t need)
{
	ams_instance *in = c->in;
	amb_db *db = &in->db[d];
	amb_blk b;
	if (db->fill) {
		amb_page *p = touch(c, d, db->fill, 0);
		if (p) {
			amb_blk_get(p->buf, &b);
			if (b.type == AMB_BT_DATA && page_free_bytes(in, p->buf) >= need)
				return p;
		}
		db->fill = 0;
	}
	while (db->nroomy) {
		uint32_t pgno = db->roomy[--db->nroomy];
		amb_page *p = amb_cache_get(db, pgno);
		if (!p) {
			/* only look at it if it is worth a read */
			p = touch(c, d, pgno, 0);
		} else {
			p = touch(c, d, pgno, 0);
		}
		if (!p)
			continue;
		amb_blk_get(p->buf, &b);
		if (b.type == AMB_BT_DATA && page_free_bytes(in, p->buf) >= need) {
			db->fill = pgno;
			return p;
		}
	}
	uint32_t pgno = alloc_page(c, d);
	if (!pgno)
		return NULL;
	amb_page *p = touch(c, d, pgno, 1);
	if (!p)
		return NULL;
	format_data_page(in, p->buf, pgno);
	db->fill = pgno;
	return p;
}

static void cell_append(unsigned char *pg, const unsigned char *cell, unsigned len)
{
	amb_blk b;
	amb_blk_get(pg, &b);
	unsigned used = rd16(pg + 32);
	memcpy(pg + AMB_DATA_HDR + used, cell, len);
	wr16(pg + 32, (uint16_t)(used + len));
	b.aux++;
	amb_blk_put(pg, &b);
}

static void cell_remove(ams_instance *in, unsigned char *pg, unsigned off, unsigned len)
{
	amb_blk b;
	amb_blk_get(pg, &b);
	unsigned used = rd16(pg + 32);
	unsigned end = AMB_DATA_HDR + used;
	memmove(pg + off, pg + off + len, end - off - len);
	memset(pg + end - len, 0, len);
	wr16(pg + 32, (uint16_t)(used - len));
	b.aux--;
	amb_blk_put(pg, &b);
	(void)in;
}

static void free_later(apply_ctx *c, int d, uint32_t pgno)
{
	if (amb_push_u32(&c->freed[d], &c->nfreed[d], &c->cfreed[d], pgno))
		c->oom = 1;
}

/* Remove the record of (table,key) whose head is on page old (validated). */
static void remove_record(apply_ctx *c, amb_table *t, txop *op)
{
	ams_instance *in = c->in;
	amb_page *p = touch(c, t->db, op->old_page, 0);
	if (!p)
		return; /* validated readable: only OOM gets here */
	amb_cell cell;
	if (amb_cell_find(p->buf, in->page_size, t->name, op->key, op->klen, &cell))
		return;
	for (uint32_t i = 0; i < op->nchain; i++)
		free_later(c, t->db, op->chain[i]);
	cell_remove(in, p->buf, cell.off, cell.len);
	amb_key_del(t, op->key, op->klen);
	amb_db *db = &in->db[t->db];
	if (page_free_bytes(in, p->buf) >= in->page_size / 2 && p->pgno != db->fill &&
	    (db->nroomy == 0 || db->roomy[db->nroomy - 1] != p->pgno) &&
	    amb_push_u32(&db->roomy, &db->nroomy, &db->caproomy, p->pgno))
		c->oom = 1;
}

/* Largest inline cell: a value that fits a page with any table and key
 * stays in the data page (fewer pages, smaller log records). */
static unsigned inline_max(ams_instance *in)
{
	return in->page_size - AMB_DATA_HDR - 18 - AMB_MAX_TABLE - AMB_MAX_KEY;
}

static void insert_record(apply_ctx *c, amb_table *t, const char *table, const unsigned char *key,
                          size_t klen, const unsigned char *val, size_t vlen)
{
	ams_instance *in = c->in;
	int d = t->db;
	size_t tlen = strlen(table);
	/* a cell holds at most inline_max() bytes */
	unsigned char *cell = malloc(in->page_size);
	unsigned hdr;
	if (!cell) {
		c->oom = 1;
		return;
	}
	size_t cl_inline = 10 + tlen + klen + vlen;
	int is_long = cl_inline > inline_max(in);
	if (!is_long) {
		hdr = 10;
	} else {
		hdr = 18;
		/* overflow chain, written back to front so each knows its next */
		size_t per = in->page_size - AMB_OVF_HDR;
		uint32_t np = (uint32_t)((vlen + per - 1) / per);
		uint32_t *pg = malloc(np * sizeof(*pg));
		if (!pg) {
			free(cell);
			c->oom = 1;
			return;
		}
		for (uint32_t i = 0; i < np; i++)
			pg[i] = alloc_page(c, d);
		for (uint32_t i = 0; i < np; i++) {
			amb_page *p = pg[i] ? touch(c, d, pg[i], 1) : NULL;
			if (!p) {
				free(pg);
				free(cell);
				c->oom = 1;
				return;
			}
			size_t off = (size_t)i * per;
			size_t n = vlen - off < per ? vlen - off : per;
			memset(p->buf, 0, in->page_size);
			amb_blk b = {0};
			b.no = pg[i];
			b.type = AMB_BT_OVERFLOW;
			b.aux = i + 1 < np ? pg[i + 1] : 0;
			amb_blk_put(p->buf, &b);
			wr32(p->buf + 32, (uint32_t)n);
			memcpy(p->buf + AMB_OVF_HDR, val + off, n);
		}
		wr32(cell + 10, np ? pg[0] : 0);
		wr32(cell + 14, np);
		free(pg);
	}
	unsigned len = (unsigned)(hdr + tlen + klen + (is_long ? 0 : vlen));
	wr16(cell, (uint16_t)len);
	cell[2] = is_long ? AMB_CELL_LONG : 0;
	cell[3] = (unsigned char)tlen;
	wr16(cell + 4, (uint16_t)klen);
	wr32(cell + 6, (uint32_t)vlen);
	memcpy(cell + hdr, table, tlen);
	memcpy(cell + hdr + tlen, key, klen);
	if (!is_long && vlen)
		memcpy(cell + hdr + tlen + klen, val, vlen);
	amb_page *p = find_room(c, d, len);
	if (!p) {
		free(cell);
		c->oom = 1;
		return;
	}
	cell_append(p->buf, cell, len);
	free(cell);
	if (amb_key_set(t, key, klen, p->pgno))
		c->oom = 1;
}

/* Add the catalog entry of a new table (records in database 0). */
static amb_table *create_table(apply_ctx *c, const char *name, int d)
{
	ams_instance *in = c->in;
	amb_table *t = amb_table_add(in, name, d);
	if (!t) {
		c->oom = 1;
		return NULL;
	}
	amb_table *cat = amb_table_find(in, "$tables");
	if (!cat)
		cat = amb_table_add(in, "$tables", 0);
	if (!cat) {
		c->oom = 1;
		return NULL;
	}
	unsigned char v[4];
	wr32(v, (uint32_t)d);
	insert_record(c, cat, "$tables", (const unsigned char *)name, strlen(name), v, 4);
	return t;
}

/* Read the overflow chain of the record (table,key) at page pgno. */
static int read_chain(ams_instance *in, amb_db *db, uint32_t pgno, const char *table, txop *op)
{
	unsigned char *pg = amb_io_alloc(in->page_size);
	if (!pg)
		return amb_err(AMS_ENOMEM, "out of memory");
	amb_cell cell;
	int rc = amb_page_read(in, db, pgno, pg, NULL);
	if (!rc) {
		rc = amb_cell_find(pg, in->page_size, table, op->key, op->klen, &cell);
		if (rc == AMS_ENOTFOUND)
			rc = amb_err(AMS_ECORRUPT, "%s: page %u does not hold the record the index "
			             "points to", db->name, pgno);
	}
	if (!rc && (cell.flags & AMB_CELL_LONG)) {
		op->chain = malloc((cell.npages ? cell.npages : 1) * sizeof(uint32_t));
		if (!op->chain)
			rc = amb_err(AMS_ENOMEM, "out of memory");
		uint32_t next = cell.first;
		for (uint32_t i = 0; !rc && i < cell.npages; i++) {
			if (next < 2 || next >= db->npages) {
				rc = amb_err(AMS_ECORRUPT, "%s: overflow chain from page %u is broken",
				             db->name, pgno);
				break;
			}
			op->chain[op->nchain++] = next;
			rc = amb_page_read(in, db, next, pg, NULL);
			if (rc)
				break;
			amb_blk b;
			amb_blk_get(pg, &b);
			if (b.type != AMB_BT_OVERFLOW) {
				rc = amb_err(AMS_ECORRUPT, "%s: page %u should be an overflow page",
				             db->name, next);
				break;
			}
			next = b.aux;
		}
	}
	op->has_old = !rc;
	op->old_page = pgno;
	free(pg);
	return rc;
}

/* Table that op addresses after the earlier ops of this transaction. */
static int op_table_db(ams_instance *in, ams_txn *t, size_t upto, const char *table, int *created)
{
	amb_table *tb = amb_table_find(in, table);
	if (tb) {
		*created = 0;
		return tb->db;
	}
	for (size_t i = 0; i < upto; i++)
		if (t->ops[i].kind == OP_CREATE && strcmp(t->ops[i].table, table) == 0) {
			*created = 1;
			return t->ops[i].db;
		}
	*created = 1;
	return -1;
}

/* Does key exist just before op i (index, then earlier ops)? */
static int key_exists_before(ams_instance *in, ams_txn *t, size_t i, uint32_t *page)
{
	txop *op = &t->ops[i];
	int exists = 0;
	amb_table *tb = amb_table_find(in, op->table);
	amb_kent *e = tb ? amb_key_find(tb, op->key, op->klen) : NULL;
	if (e) {
		exists = 1;
		*page = e->pgno;
	}
	for (size_t j = 0; j < i; j++) {
		txop *o = &t->ops[j];
		if (o->kind == OP_CREATE || strcmp(o->table, op->table) || o->klen != op->klen ||
		    memcmp(o->key, op->key, op->klen))
			continue;
		exists = o->kind == OP_PUT ? 2 : 0; /* 2: put by this transaction */
	}
	return exists;
}

typedef struct plan {
	uint32_t pages[AMB_MAX_DBS]; /* new pages needed, upper bound */
	size_t rec_bound;
} plan;

static int validate(ams_instance *in, ams_txn *t, plan *pl)
{
	uint32_t P = in->page_size;
	size_t per = P - AMB_OVF_HDR;
	size_t nimg = 1, nfree = 0;
	memset(pl, 0, sizeof(*pl));
	for (size_t i = 0; i < t->n; i++) {
		txop *op = &t->ops[i];
		int created;
		int d = op_table_db(in, t, i, op->table, &created);
		if (op->kind == OP_CREATE) {
			if (d >= 0 && d != op->db)
				return amb_err(AMS_EEXIST, "table %s already exists in database %d",
				               op->table, d);
			if (d < 0) {
				pl->pages[0] += 1;
				nimg += 2;
			}
			continue;
		}
		if (d < 0) {
			d = 0; /* created implicitly in database 0 */
			pl->pages[0] += 1;
			nimg += 2;
		}
		uint32_t page = 0;
		int ex = key_exists_before(in, t, i, &page);
		if (op->kind == OP_DEL && !ex)
			return amb_err(AMS_ENOTFOUND, "delete of %s:%.*s: no such key", op->table,
			               (int)(op->klen > 64 ? 64 : op->klen), (const char *)op->key);
		if (ex == 1 && !created) {
			int rc = read_chain(in, &in->db[d], page, op->table, op);
			if (rc)
				return rc;
			nimg += 1;
			nfree += op->nchain;
		} else if (ex == 2) {
			/* replacing a record put earlier in this transaction: its
			 * pages are not known yet; bound them by that put's size */
			for (size_t j = 0; j < i; j++)
				if (t->ops[j].kind == OP_PUT && !strcmp(t->ops[j].table, op->table) &&
				    t->ops[j].klen == op->klen &&
				    !memcmp(t->ops[j].key, op->key, op->klen))
					nfree += t->ops[j].vlen / per + 2;
		}
		if (op->kind == OP_PUT) {
			uint32_t np = (uint32_t)((op->vlen + per - 1) / per) + 1;
			pl->pages[d] += np;
			nimg += np + 1;
		}
	}
	pl->rec_bound = AMB_REC_HDR + 24 + nimg * (AMB_ENT_HDR + P) + (nfree + nimg) * 16 +
	                (size_t)in->ndb * 16;
	return 0;
}

/* At most this many bytes of free pages are added to a database at once
 * (at least 64 pages, at most the reservation step below): extend_db()
 * formats each of them in memory while the commit holds the write lock, so
 * every commit waits for it (at ~15 µs a page under load, the 1/16 of a
 * 1 GiB database that was added at once took 150-240 ms). */
#define EXTEND_STEP_BYTES (2u << 20)

/*
 * Reserve database space for pl (fallocate KEEP_SIZE); nothing changes on
 * failure.  ext[d] gets the pages database d must grow by: what pl needs
 * beyond its free pages, at least a step of EXTEND_STEP_BYTES.  File space
 * is reserved further ahead, 1/16 of the database (at least 64 pages) at a
 * time, so that the file grows in few large extents; on a full disk only
 * what this extension needs.
 */
static int reserve_space(ams_instance *in, plan *pl, uint32_t ext[AMB_MAX_DBS])
{
	uint32_t P = in->page_size;
	for (int d = 0; d < in->ndb; d++) {
		amb_db *db = &in->db[d];
		ext[d] = 0;
		if (pl->pages[d] <= db->nfree)
			continue;
		uint32_t need = pl->pages[d] - (uint32_t)db->nfree;
		uint32_t ahead = db->npages / 16 > 64 ? db->npages / 16 : 64;
		uint32_t step = EXTEND_STEP_BYTES / P > 64 ? EXTEND_STEP_BYTES / P : 64;
		if (step > ahead)
			step = ahead;
		if (need < step)
			need = step;
		if (ahead < need)
			ahead = need;
		if ((uint64_t)db->npages + ahead >= UINT32_MAX / 2)
			return amb_err(AMS_ENOSPC, "%s: database is at its maximum size", db->name);
		uint64_t end = (uint64_t)(db->npages + need) * P;
		if (end > db->reserved_end) {
			uint64_t from = db->reserved_end > (uint64_t)db->npages * P ? db->reserved_end
			                                                            : (uint64_t)db->npages * P;
			uint64_t to = (uint64_t)(db->npages + ahead) * P;
			int rc = in->vfs->allocate(in->vfs, db->fd, (off_t)from, (off_t)(to - from));
			if (rc == -ENOSPC && to > end) {
				/* no room for the step ahead: this extension only */
				to = end;
				rc = in->vfs->allocate(in->vfs, db->fd, (off_t)from, (off_t)(to - from));
			}
			if (rc && rc != -EOPNOTSUPP)
				return amb_err(amb_errno_code(rc), "%s: cannot reserve %llu bytes: %s", db->name,
				               (unsigned long long)(to - from), strerror(-rc));
			db->reserved_end = to;
		}
		ext[d] = need;
	}
	return 0;
}

/* Grow database d by n free pages (logged as EXTEND). */
static void extend_db(apply_ctx *c, int d, uint32_t n)
{
	ams_instance *in = c->in;
	amb_db *db = &in->db[d];
	uint32_t from = db->npages, to = db->npages + n;
	unsigned char *e = rec_reserve(c, AMB_ENT_HDR + 4);
	if (!e)
		return;
	ent_hdr(e, AMB_ENT_EXTEND, d, from);
	wr32(e + AMB_ENT_HDR, to);
	c->nent++;
	db->npages = to;
	for (uint32_t pg = to; pg-- > from;) {
		unsigned char *buf = amb_io_alloc(in->page_size);
		amb_page *p = buf ? amb_cache_add(db, pg, buf) : NULL;
		if (!p) {
			free(buf);
			c->oom = 1;
			return;
		}
		amb_page_format_free(buf, in->page_size, pg, db->stamp);
		p->dirty = 1;
		p->fpi_epoch = in->fpi_epoch; /* the EXTEND entry determines it */
		if (amb_push_u32(&db->freel, &db->nfree, &db->capfree, pg))
			c->oom = 1;
	}
}

static void apply_ops(apply_ctx *c, ams_txn *t, const uint32_t ext[AMB_MAX_DBS])
{
	ams_instance *in = c->in;
	for (int d = 0; d < in->ndb; d++)
		if (ext[d])
			extend_db(c, d, ext[d]);
	for (size_t i = 0; i < t->n && !c->oom; i++) {
		txop *op = &t->ops[i];
		amb_table *tb = amb_table_find(in, op->table);
		if (op->kind == OP_CREATE) {
			if (!tb)
				create_table(c, op->table, op->db);
			continue;
		}
		if (!tb)
			tb = create_table(c, op->table, 0);
		if (!tb)
			return;
		if (op->has_old) {
			remove_record(c, tb, op);
		} else if (amb_key_find(tb, op->key, op->klen)) {
			/* put earlier in this transaction: find its cell now */
			amb_kent *e = amb_key_find(tb, op->key, op->klen);
			amb_page *p = touch(c, tb->db, e->pgno, 0);
			amb_cell cell;
			if (p && !amb_cell_find(p->buf, in->page_size, tb->name, op->key, op->klen, &cell)) {
				uint32_t next = cell.first;
				for (uint32_t k = 0; (cell.flags & AMB_CELL_LONG) && k < cell.npages; k++) {
					amb_page *q = amb_cache_get(&in->db[tb->db], next);
					free_later(c, tb->db, next);
					if (!q)
						break;
					amb_blk b;
					amb_blk_get(q->buf, &b);
					next = b.aux;
				}
				cell_remove(in, p->buf, cell.off, cell.len);
				amb_key_del(tb, op->key, op->klen);
			}
		}
		if (op->kind == OP_PUT)
			insert_record(c, tb, op->table, op->key, op->klen, op->val, op->vlen);
	}
}

/* Length of the page without its trailing zero bytes (multiple of 8). */
static uint32_t trimmed_len(const unsigned char *pg, uint32_t P)
{
	uint32_t n = P;
	while (n > 32) {
		uint64_t w;
		memcpy(&w, pg + n - 8, 8);
		if (w)
			break;
		n -= 8;
	}
	return n;
}

/* Put the whole page as an IMAGE entry (zero tail left out). */
static void emit_image(apply_ctx *c, int d, amb_page *p)
{
	uint32_t n = trimmed_len(p->buf, c->in->page_size);
	unsigned char *e = rec_reserve(c, AMB_ENT_HDR + 4 + n);
	if (!e)
		return;
	ent_hdr(e, AMB_ENT_IMAGE, d, p->pgno);
	wr32(e + AMB_ENT_HDR, n);
	memcpy(e + AMB_ENT_HDR + 4, p->buf, n);
	p->fpi_epoch = c->in->fpi_epoch;
}

/*
 * Log the change of p since p->before as a DELTA entry: the byte ranges of
 * [12, P) that differ (runs closer than 16 bytes are merged).  Returns 0
 * (and logs nothing) when the (zero-trimmed) image would not be larger.
 */
static int emit_delta(apply_ctx *c, int d, amb_page *p, uint64_t stamp_before,
                      uint64_t stamp_after)
{
	uint32_t P = c->in->page_size;
	const unsigned char *a = p->before, *b = p->buf;
	/* a delta must be smaller than the image it replaces */
	size_t limit = trimmed_len(p->buf, P) + 4;
	uint16_t off[512], len[512];
	uint32_t n = 0;
	size_t bytes = 0;
	/* the block header fields after the ECC always change (stamp) */
	off[n] = 12;
	len[n] = 20;
	bytes += 4 + 20;
	n++;
	uint32_t i = 32;
	while (i < P) {
		if (memcmp(a + i, b + i, 8) == 0) {
			i += 8;
			continue;
		}
		uint32_t start = i, end = i + 8, gap = 0;
		for (i += 8; i < P; i += 8) {
			if (memcmp(a + i, b + i, 8) != 0) {
				end = i + 8;
				gap = 0;
			} else if (++gap > 2) {
				break;
			}
		}
		if (n == 512)
			return 0;
		off[n] = (uint16_t)start;
		len[n] = (uint16_t)(end - start);
		bytes += 4 + (end - start);
		n++;
		i = end;
		if (bytes + 20 >= limit)
			return 0;
	}
	if (bytes + 20 >= limit)
		return 0;
	unsigned char *e = rec_reserve(c, AMB_ENT_HDR + 20 + bytes);
	if (!e)
		return 0;
	ent_hdr(e, AMB_ENT_DELTA, d, p->pgno);
	e += AMB_ENT_HDR;
	wr64(e, stamp_before);
	wr64(e + 8, stamp_after);
	wr32(e + 16, n);
	e += 20;
	for (uint32_t k = 0; k < n; k++) {
		wr16(e, off[k]);
		wr16(e + 2, len[k]);
		memcpy(e + 4, b + off[k], len[k]);
		e += 4 + len[k];
	}
	return 1;
}

/* Seal the touched pages and put their images (or FREE entries) into the
 * record; returns 0 or sets c->oom. */
static void emit_images(apply_ctx *c)
{
	ams_instance *in = c->in;
	uint64_t stamp[AMB_MAX_DBS] = {0};
	for (int d = 0; d < in->ndb; d++) {
		int any = c->nfreed[d] > 0;
		for (size_t i = 0; i < c->nt && !any; i++)
			any = c->t[i].db == d;
		if (any)
			stamp[d] = ++in->db[d].stamp;
	}
	/* freed overflow pages first: a freed page is never also touched */
	for (int d = 0; d < in->ndb; d++) {
		amb_db *db = &in->db[d];
		for (size_t i = 0; i < c->nfreed[d]; i++) {
			uint32_t pgno = c->freed[d][i];
			amb_page *p = amb_cache_get(db, pgno);
			if (p && p->touched) {
				p->touched = 0; /* it is freed: no image */
				free(p->before);
				p->before = NULL;
				for (size_t k = 0; k < c->nt; k++)
					if (c->t[k].p == p)
						c->t[k].p = NULL;
			}
			if (!p) {
				unsigned char *buf = amb_io_alloc(in->page_size);
				p = buf ? amb_cache_add(db, pgno, buf) : NULL;
				if (!p) {
					free(buf);
					c->oom = 1;
					return;
				}
			}
			amb_page_format_free(p->buf, in->page_size, pgno, stamp[d]);
			p->dirty = 1;
			p->unsealed = 0;
			p->fpi_epoch = in->fpi_epoch;
			unsigned char *e = rec_reserve(c, AMB_ENT_HDR + 8);
			if (!e)
				return;
			ent_hdr(e, AMB_ENT_FREE, d, pgno);
			wr64(e + AMB_ENT_HDR, stamp[d]);
			c->nent++;
		}
	}
	for (size_t i = 0; i < c->nt; i++) {
		amb_page *p = c->t[i].p;
		int d = c->t[i].db;
		if (!p)
			continue;
		amb_db *db = &in->db[d];
		amb_blk b;
		amb_blk_get(p->buf, &b);
		if (b.type == AMB_BT_DATA && b.aux == 0) {
			/* emptied data page: becomes free */
			free(p->before);
			p->before = NULL;
			p->fpi_epoch = in->fpi_epoch;
			p->unsealed = 0;
			amb_page_format_free(p->buf, in->page_size, p->pgno, stamp[d]);
			if (db->fill == p->pgno)
				db->fill = 0;
			free_later(c, d, p->pgno);
			unsigned char *e = rec_reserve(c, AMB_ENT_HDR + 8);
			if (!e)
				return;
			ent_hdr(e, AMB_ENT_FREE, d, p->pgno);
			wr64(e + AMB_ENT_HDR, stamp[d]);
			c->nent++;
			continue;
		}
		uint64_t stamp_before = b.stamp;
		b.stamp = stamp[d];
		amb_blk_put(p->buf, &b);
		int logged = 0;
		if (p->before) {
			logged = emit_delta(c, d, p, stamp_before, stamp[d]);
			free(p->before);
			p->before = NULL;
		}
		if (logged) {
			p->unsealed = 1; /* sealed when written or read out */
		} else {
			amb_ck_seal(p->buf, in->page_size, p->pgno);
			p->unsealed = 0;
			emit_image(c, d, p);
		}
		c->nent++;
	}
}

/*
 * Reserve log segments for a record of at most `need` segments (mu held).
 * When the current generation and the prepared next one cannot hold it,
 * ask for a preparation or a roll and wait for its outcome; if that
 * outcome is "no space", fail with AMS_ENOSPC: nothing was applied.
 */
static int admit(ams_instance *in, uint32_t need)
{
	int asked_prep = 0;
	uint64_t roll_ticket = 0;
	uint32_t roll_gen = 0;
	for (;;) {
		if (in->failed)
			return amb_err(AMS_EFAILED, "instance failed earlier: %s", in->failmsg);
		if (!in->freezing && !is_frozen(in)) {
			uint32_t avail = (in->nsegs + 1 - in->next_seg) + (in->tmp_fd >= 0 ? in->nsegs : 0);
			if (in->reserved_segs + need <= avail) {
				in->reserved_segs += need;
				in->appliers++;
				return 0;
			}
			if (in->tmp_fd < 0) {
				if (!in->prep_urgent) {
					/* a preparation a roll asked for may wait for the
					 * quiet's end; not once a commit needs it */
					in->prep_urgent = 1;
					wake_bg(in);
				}
				if (!in->prep_busy && !in->prep_req) {
					/* one attempt per commit: the first commit after space
					 * came back succeeds */
					if (asked_prep && in->tmp_err)
						return amb_err(AMS_ENOSPC, "no space for the next log file: %s",
						               ams_strerror(in->tmp_err ? in->tmp_err : AMS_ENOSPC));
					in->prep_req = 1;
					asked_prep = 1;
					wake_bg(in);
				}
			} else if (in->reserved_segs == 0 && in->next_seg > 1) {
				/* a big record: start it in a fresh generation */
				if (roll_ticket && in->roll_done >= roll_ticket && in->gen == roll_gen)
					return amb_err(AMS_ENOSPC, "no space to start a new log generation");
				if (!roll_ticket || in->roll_done >= roll_ticket) {
					/* (again, if others filled the fresh generation first) */
					roll_ticket = ++in->roll_req;
					roll_gen = in->gen;
					wake_bg(in);
				}
			}
		}
		if (is_frozen(in))
			wait_thawed_locked(in);
		else
			pthread_cond_wait(&in->cond, &in->mu);
	}
}

static void apply_ctx_free(apply_ctx *c)
{
	free(c->rec);
	free(c->t);
	for (int d = 0; d < AMB_MAX_DBS; d++)
		free(c->freed[d]);
}

int ams_txn_commit(ams_txn *t)
{
	if (!t)
		return amb_err(AMS_EINVAL, "no transaction");
	ams_instance *in = t->in;
	int rc;
	plan pl;
	uint32_t ext[AMB_MAX_DBS];
	apply_ctx c;
	memset(&c, 0, sizeof(c));
	c.in = in;

	/* the bound needs the index: compute it under the read lock first */
	pthread_rwlock_rdlock(&in->rw);
	rc = validate(in, t, &pl);
	pthread_rwlock_unlock(&in->rw);
	if (rc)
		goto out;
	uint32_t need = segs_for(pl.rec_bound);
	if (need > 2 * in->nsegs) {
		rc = amb_err(AMS_EINVAL, "transaction too large: its log record may need %zu bytes, "
		             "the log holds %zu in two generations; split it or use larger log files",
		             pl.rec_bound, (size_t)2 * in->nsegs * AMB_SEG_PAYLOAD);
		goto out;
	}

	pthread_mutex_lock(&in->mu);
	rc = admit(in, need);
	pthread_mutex_unlock(&in->mu);
	if (rc)
		goto out;

	pthread_rwlock_wrlock(&in->rw);
	/* validate again: the index may have changed while we waited */
	for (size_t i = 0; i < t->n; i++) {
		free(t->ops[i].chain);
		t->ops[i].chain = NULL;
		t->ops[i].nchain = 0;
		t->ops[i].has_old = 0;
	}
	rc = validate(in, t, &pl);
	if (!rc && segs_for(pl.rec_bound) > need)
		rc = amb_err(AMS_EINVAL, "transaction grew while waiting; retry it");
	if (!rc)
		rc = reserve_space(in, &pl, ext);
	if (rc) {
		pthread_rwlock_unlock(&in->rw);
		pthread_mutex_lock(&in->mu);
		in->reserved_segs -= need;
		in->appliers--;
		pthread_cond_broadcast(&in->cond);
		pthread_mutex_unlock(&in->mu);
		goto out;
	}
	unsigned char *h = rec_reserve(&c, AMB_REC_HDR + 24);
	(void)h;
	apply_ops(&c, t, ext);
	if (!c.oom)
		emit_images(&c);
	for (size_t i = 0; i < c.nt; i++)
		if (c.t[i].p) {
			c.t[i].p->touched = 0;
			free(c.t[i].p->before);
			c.t[i].p->before = NULL;
		}
	if (c.oom) {
		/* memory ran out halfway: the cache no longer matches the log */
		pthread_rwlock_unlock(&in->rw);
		pthread_mutex_lock(&in->mu);
		amb_fail_locked(in, AMS_ENOMEM, "out of memory while applying a transaction");
		in->reserved_segs -= need;
		in->appliers--;
		pthread_mutex_unlock(&in->mu);
		rc = amb_err(AMS_EFAILED, "out of memory while applying a transaction");
		goto out;
	}
	for (int d = 0; d < in->ndb; d++)
		for (size_t i = 0; i < c.nfreed[d]; i++)
			if (amb_push_u32(&in->db[d].freel, &in->db[d].nfree, &in->db[d].capfree, c.freed[d][i]))
				c.oom = 1; /* a leaked free page, not an inconsistency */

	pthread_mutex_lock(&in->mu);
	uint64_t lsn = in->lsn_end;
	uint64_t seq = ++in->txn_seq;
	wr32(c.rec, (uint32_t)c.len);
	wr32(c.rec + 4, AMB_REC_TXN);
	wr64(c.rec + AMB_REC_HDR, seq);
	wr64(c.rec + AMB_REC_HDR + 8, amb_now_us());
	wr32(c.rec + AMB_REC_HDR + 16, c.nent);
	wr32(c.rec + AMB_REC_HDR + 20, 0);
	wr64(c.rec + 8, XXH3_64bits_withSeed(c.rec + AMB_REC_HDR, c.len - AMB_REC_HDR, lsn));
	if (amb_grow((void **)&in->lbuf, &in->lbuf_cap, in->lbuf_len + c.len, 1, 1u << 20)) {
		amb_fail_locked(in, AMS_ENOMEM, "out of memory in the log buffer");
		in->reserved_segs -= need;
		in->appliers--;
		pthread_mutex_unlock(&in->mu);
		pthread_rwlock_unlock(&in->rw);
		rc = amb_err(AMS_EFAILED, "out of memory in the log buffer");
		goto out;
	}
	memcpy(in->lbuf + in->lbuf_len, c.rec, c.len);
	in->lbuf_len += c.len;
	uint32_t actual = segs_for(c.len);
	in->lbuf_segs += actual;
	in->reserved_segs -= need - actual;
	in->lsn_end = lsn + c.len;
	uint64_t my_end = in->lsn_end;
	for (size_t i = 0; i < c.nt; i++)
		if (c.t[i].p)
			c.t[i].p->lsn = my_end;
	for (int d = 0; d < in->ndb; d++)
		for (size_t i = 0; i < c.nfreed[d]; i++) {
			amb_page *p = amb_cache_get(&in->db[d], c.freed[d][i]);
			if (p)
				p->lsn = my_end;
		}
	in->appliers--;
	in->n_appended++;
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->mu);
	pthread_rwlock_unlock(&in->rw);

	/* wait for the group flush, leading it if nobody is flushing */
	pthread_mutex_lock(&in->mu);
	if (!wait_durable_locked(in, my_end))
		rc = amb_err(AMS_EFAILED, "commit not durable: %s", in->failmsg);
	else
		in->n_commits++;
	pthread_mutex_unlock(&in->mu);
out:
	apply_ctx_free(&c);
	ams_txn_abort(t);
	return rc;
}

/* -------------------------------------------------------------- reads */

/* Wait until lsn is durable (a reader met a change still being flushed). */
static int wait_durable(ams_instance *in, uint64_t lsn)
{
	if (!lsn)
		return 0;
	pthread_mutex_lock(&in->mu);
	int ok = wait_durable_locked(in, lsn);
	pthread_mutex_unlock(&in->mu);
	return ok ? 0 : amb_err(AMS_EFAILED, "data not durable: %s", in->failmsg);
}

static int get_locked(ams_instance *in, amb_table *t, const void *key, size_t klen, void **val,
                      size_t *vlen, uint64_t *maxlsn)
{
	amb_kent *e = amb_key_find(t, key, klen);
	if (!e)
		return AMS_ENOTFOUND;
	amb_db *db = &in->db[t->db];
	unsigned char *pg = amb_io_alloc(in->page_size);
	if (!pg)
		return amb_err(AMS_ENOMEM, "out of memory");
	uint64_t lsn = 0;
	int rc = amb_page_read(in, db, e->pgno, pg, &lsn);
	if (lsn > *maxlsn)
		*maxlsn = lsn;
	amb_cell cell;
	if (!rc) {
		rc = amb_cell_find(pg, in->page_size, t->name, key, klen, &cell);
		if (rc == AMS_ENOTFOUND)
			rc = amb_err(AMS_ECORRUPT, "%s: page %u lost a record", db->name, e->pgno);
	}
	if (!rc)
		rc = amb_value_read(in, db, &cell, val, vlen, maxlsn);
	free(pg);
	return rc;
}

int ams_get(ams_instance *in, const char *table, const void *key, size_t klen, void **val,
            size_t *vlen)
{
	if (!in || !table || !key || !val || !vlen)
		return amb_err(AMS_EINVAL, "NULL argument");
	pthread_rwlock_rdlock(&in->rw);
	amb_table *t = table[0] == '$' ? NULL : amb_table_find(in, table);
	uint64_t maxlsn = 0;
	int rc = t ? get_locked(in, t, key, klen, val, vlen, &maxlsn) : AMS_ENOTFOUND;
	pthread_rwlock_unlock(&in->rw);
	if (rc == AMS_ENOTFOUND)
		return amb_err(rc, "%s: no such key", table);
	if (!rc && (rc = wait_durable(in, maxlsn)) != 0)
		free(*val);
	return rc;
}

typedef struct kref {
	const unsigned char *key;
	size_t klen;
} kref;

static int kref_cmp(const void *a, const void *b)
{
	const kref *x = a, *y = b;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(x->key, y->key, n);
	if (c)
		return c;
	return x->klen < y->klen ? -1 : x->klen > y->klen;
}

static int table_cmp(const void *a, const void *b)
{
	const amb_table *x = *(amb_table *const *)a, *y = *(amb_table *const *)b;
	return strcmp(x->name, y->name);
}

int ams_foreach(ams_instance *in, ams_foreach_fn fn, void *arg)
{
	if (!in || !fn)
		return amb_err(AMS_EINVAL, "NULL argument");
	pthread_rwlock_rdlock(&in->rw);
	int rc = 0;
	uint64_t maxlsn = 0;
	amb_table **ts = malloc((in->ntables ? in->ntables : 1) * sizeof(*ts));
	if (!ts) {
		pthread_rwlock_unlock(&in->rw);
		return amb_err(AMS_ENOMEM, "out of memory");
	}
	if (in->ntables) {
		memcpy(ts, in->tables, in->ntables * sizeof(*ts));
		qsort(ts, in->ntables, sizeof(*ts), table_cmp);
	}
	/* wait for durability of everything first, so the callback sees only
	 * committed data: the log end now bounds every page LSN */
	pthread_mutex_lock(&in->mu);
	maxlsn = in->lsn_end;
	pthread_mutex_unlock(&in->mu);
	rc = wait_durable(in, maxlsn);
	for (size_t i = 0; i < in->ntables && !rc; i++) {
		amb_table *t = ts[i];
		if (t->name[0] == '$' || t->count == 0)
			continue;
		kref *ks = malloc(t->count * sizeof(*ks));
		if (!ks) {
			rc = amb_err(AMS_ENOMEM, "out of memory");
			break;
		}
		size_t n = 0;
		for (size_t j = 0; j < t->cap; j++)
			if (t->slots[j]) {
				ks[n].key = t->slots[j]->key;
				ks[n].klen = t->slots[j]->klen;
				n++;
			}
		qsort(ks, n, sizeof(*ks), kref_cmp);
		for (size_t j = 0; j < n && !rc; j++) {
			void *v = NULL;
			size_t vl = 0;
			uint64_t l = 0;
			rc = get_locked(in, t, ks[j].key, ks[j].klen, &v, &vl, &l);
			if (rc == AMS_ENOTFOUND)
				rc = amb_err(AMS_ECORRUPT, "%s: indexed key vanished", t->name);
			if (!rc)
				rc = fn(arg, t->name, ks[j].key, ks[j].klen, v, vl);
			free(v);
		}
		free(ks);
	}
	free(ts);
	pthread_rwlock_unlock(&in->rw);
	return rc;
}

int ams_info_get(ams_instance *in, ams_info *info)
{
	if (!in || !info)
		return amb_err(AMS_EINVAL, "NULL argument");
	memset(info, 0, sizeof(*info));
	pthread_mutex_lock(&in->mu);
	snprintf(info->prefix, sizeof(info->prefix), "%s", in->prefix);
	info->page_size = in->page_size;
	info->log_size = in->log_size;
	info->ndatabases = in->ndb;
	info->gen_current = in->gen;
	info->gen_checkpoint = in->ckpt_gen;
	info->gen_oldest = in->gen_oldest;
	info->lsn_durable = in->lsn_durable;
	info->lsn_applied = in->lsn_end;
	info->commits = in->n_commits;
	info->flushes = in->n_flushes;
	info->checkpoints = in->n_ckpts;
	info->pages_damaged = in->n_damaged;
	info->pages_corrected = in->n_corrected;
	info->frozen = is_frozen(in);
	info->frozen_since_us = info->frozen ? in->freeze_t0 : 0;
	info->failed = in->failed;
	pthread_mutex_unlock(&in->mu);
	return 0;
}

const char *ams_db_path(ams_instance *in, int dbidx)
{
	if (!in || dbidx < 0 || dbidx >= in->ndb)
		return NULL;
	return in->db[dbidx].path;
}

/* -------------------------------------------------------------- freeze */

int ams_quiesce(ams_instance *in, unsigned timeout_ms)
{
	if (!in)
		return amb_err(AMS_EINVAL, "NULL instance");
	pthread_mutex_lock(&in->mu);
	uint64_t now = amb_mono_us();
	in->quiet_until = timeout_ms ? now + (uint64_t)timeout_ms * 1000u : 0;
	if (!timeout_ms)
		wake_bg(in); /* a log file preparation may have waited for the quiet's end */
	/* what the checkpointer thread is doing is let through first, at most
	 * 1 s: a header refresh asked for by a roll just before (prepare-
	 * snapshot rolls, then quiesces), or a checkpoint's last page batch and
	 * its checkpoint file and headers.  A checkpoint that waits for the
	 * quiet to end (ckpt_parked) writes nothing more until then.  Only an
	 * economy: a database written after the counts below is not listed by
	 * ams_unchanged_files() */
	uint64_t limit = now + 1000000u;
	while (timeout_ms && !in->ckpt_parked && (in->hdr_req || in->hdr_busy || in->ckpt_busy) &&
	       !in->failed && !in->stop && amb_mono_us() < limit) {
		struct timespec ts;
		abs_deadline(&ts, limit);
		pthread_cond_timedwait(&in->cond, &in->mu, &ts);
	}
	in->quiet_gen = in->gen;
	/* the database files' change counts now: read the ends first, so a
	 * change in progress (started, not ended) can only make a file look
	 * changed, never the other way round */
	for (int d = 0; d < in->ndb; d++) {
		uint64_t e = __atomic_load_n(&in->mut_end[d], __ATOMIC_SEQ_CST);
		uint64_t s = __atomic_load_n(&in->mut_start[d], __ATOMIC_SEQ_CST);
		in->quiet_mark[d] = s;
		in->quiet_clean[d] = timeout_ms && s == e;
	}
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->mu);
	return AMS_OK;
}

size_t ams_unchanged_files(ams_instance *in, const char **paths, size_t max)
{
	size_t n = 0;
	if (!in || !paths)
		return 0;
	pthread_mutex_lock(&in->mu);
	/* only while frozen after a quiesce: no change can start until the
	 * thaw, so what is unchanged now stays so while writes are held */
	if (max > AMB_MAX_DBS + 1024)
		max = AMB_MAX_DBS + 1024;
	if (is_frozen(in) && in->quiet_until && max > in->unch_cap) {
		char(*b)[PATH_MAX] = realloc(in->unch_path, max * sizeof(*b));
		if (b) {
			in->unch_path = b;
			in->unch_cap = max;
		}
	}
	if (max > in->unch_cap)
		max = in->unch_cap;
	if (is_frozen(in) && in->quiet_until) {
		for (int d = 0; d < in->ndb && n < max; d++) {
			uint64_t s = __atomic_load_n(&in->mut_start[d], __ATOMIC_SEQ_CST);
			uint64_t e = __atomic_load_n(&in->mut_end[d], __ATOMIC_SEQ_CST);
			if (!in->quiet_clean[d] || s != in->quiet_mark[d] || e != s)
				continue;
			snprintf(in->unch_path[n], sizeof(in->unch_path[n]), "%s/%s", in->dir,
			         in->db[d].name);
			paths[n] = in->unch_path[n];
			n++;
		}
		/* archived log generations older than the current one at the
		 * quiesce: never written again once archived (a truncation only
		 * deletes them), the newest first */
		for (uint32_t g = in->quiet_gen; g > 1 && g - 1 >= in->gen_oldest && n < max; g--) {
			amb_log_path(in->unch_path[n], sizeof(in->unch_path[n]), in->dir, in->prefix,
			             g - 1);
			paths[n] = in->unch_path[n];
			n++;
		}
	}
	pthread_mutex_unlock(&in->mu);
	return n;
}

int ams_freeze(ams_instance *in, unsigned timeout_ms)
{
	pthread_mutex_lock(&in->mu);
	if (in->failed) {
		pthread_mutex_unlock(&in->mu);
		return amb_err(AMS_EFAILED, "instance failed earlier: %s", in->failmsg);
	}
	if (in->freezing || is_frozen(in) || in->stream_active) {
		pthread_mutex_unlock(&in->mu);
		return amb_err(AMS_EBUSY, "a freeze or a streaming backup is already in progress");
	}
	/* a preparation of the next log file writing its zeros is waited for
	 * before commits are held (it is one gated section: zeros for a whole
	 * file); not its fsyncs, which come after the gate.  So is a log roll
	 * in progress (the old generation's fdatasync, the new one's header
	 * and fdatasync, two renames and a directory fsync: one gated
	 * section); commits are admitted meanwhile */
	while (((in->prep_busy && !in->prep_syncing) || in->rolling) && !in->failed)
		pthread_cond_wait(&in->cond, &in->mu);
	uint64_t t0 = amb_mono_us();
	in->freezing = 1; /* no gated section starts from here on */
	in->freeze_t0 = t0;
	/* no write in progress: the gated sections running now end (a flush's
	 * write phase, a page batch, one header write); the next ones wait in
	 * amb_gate_enter().  Nothing else is waited for or written: records
	 * in the log buffer, or taken by a flush that has not passed the gate,
	 * and commits still applying (a database extension can make that tens
	 * of ms) are held like any later commit, neither in the snapshot nor
	 * acknowledged before the thaw.  A flush's fdatasync (outside the gate)
	 * may go on while frozen; its committers are acknowledged then. */
	while (!in->failed && in->io_active)
		pthread_cond_wait(&in->cond, &in->mu);
	in->freezing = 0;
	if (in->failed) {
		pthread_cond_broadcast(&in->cond);
		pthread_mutex_unlock(&in->mu);
		return amb_err(AMS_EFAILED, "instance failed while freezing: %s", in->failmsg);
	}
	in->frozen = 1;
	in->freeze_deadline = t0 + (uint64_t)timeout_ms * 1000u;
	in->freeze_writes = in->write_ops;
	/* background writers waiting for the set-up now wait for the thaw
	 * (with the deadline) in wait_thawed_locked() */
	pthread_cond_broadcast(&in->cond);
	pthread_mutex_unlock(&in->mu);
	return 0;
}

int ams_thaw(ams_instance *in)
{
	return ams_thaw_quiet(in, 0);
}

int ams_thaw_quiet(ams_instance *in, unsigned quiet_ms)
{
	if (!in)
		return amb_err(AMS_EINVAL, "NULL instance");
	pthread_mutex_lock(&in->mu);
	/* shadows made one after the other with no backup-complete between
	 * them must not keep the checkpointer waiting for ever: once it has
	 * waited QUIET_PARK_MAX_US, a thaw ends the quiet */
	int starved = in->ckpt_parked && amb_mono_us() - in->parked_since > QUIET_PARK_MAX_US;
	if (in->quiet_until && quiet_ms && !starved) {
		/* the snapshot is made, its copy not yet: the quiet goes on for
		 * at most quiet_ms */
		in->quiet_until = amb_mono_us() + (uint64_t)quiet_ms * 1000u;
		pthread_cond_broadcast(&in->cond); /* waiters take the new deadline */
	} else if (in->quiet_until) {
		/* the snapshot is made (or given up): checkpoints and the next
		 * log file's preparation go on */
		in->quiet_until = 0;
		pthread_cond_broadcast(&in->cond);
		wake_bg(in);
	}
	if (!in->frozen) {
		pthread_mutex_unlock(&in->mu);
		return amb_err(AMS_EINVAL, "not frozen");
	}
	int held = amb_mono_us() < in->freeze_deadline && in->write_ops == in->freeze_writes;
	in->frozen = 0;
	pthread_cond_broadcast(&in->cond);
	wake_bg(in); /* a log file preparation may have waited for the thaw */
	pthread_mutex_unlock(&in->mu);
	return held ? 0 : amb_err(AMS_ETIMEDOUT, "the freeze deadline passed before the thaw: "
	                          "writes were released");
}

/* ------------------------------------------------------- create / open */

static int check_prefix(const char *p)
{
	if (strlen(p) != 3)
		return 0;
	for (int i = 0; i < 3; i++)
		if (!((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z') ||
		      (p[i] >= '0' && p[i] <= '9')))
			return 0;
	return 1;
}

static int dbname_ok(const char *n)
{
	size_t l = strlen(n);
	if (l < 5 || l >= 64 || strcmp(n + l - 4, ".edb") != 0 || strchr(n, '/') || n[0] == '.')
		return 0;
	return 1;
}

/* ams_create_opts.nocow: only on btrfs.  Checked on dir, or on its parent
 * while dir does not exist yet, so that a refusal creates nothing. */
static int nocow_supported(const char *dir)
{
	char parent[PATH_MAX];
	const char *at = dir;
	struct statfs sf;
	if (access(dir, F_OK) != 0) {
		amb_path_dir(dir, parent, sizeof(parent));
		at = parent[0] ? parent : ".";
	}
	if (statfs(at, &sf) != 0)
		return amb_err(amb_errno_code(-errno), "%s: %s", at, strerror(errno));
	if (sf.f_type != BTRFS_SUPER_MAGIC)
		return amb_err(AMS_EINVAL, "%s: nocow is for btrfs (a copy-on-write filesystem); "
		               "this filesystem overwrites in place already", dir);
	return 0;
}

/* The NOCOW attribute on dir, inherited by the files made in it afterwards
 * (bench/ANALYSIS.md, "Full backup", session 16). */
static int nocow_set(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return amb_err(amb_errno_code(-errno), "%s: %s", dir, strerror(errno));
	int flags = 0, rc = 0;
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0 ||
	    (flags |= FS_NOCOW_FL, ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0))
		rc = amb_err(amb_errno_code(-errno), "%s: cannot set the NOCOW attribute: %s", dir,
		             strerror(errno));
	close(fd);
	return rc;
}

int ams_create(const char *dir, const ams_create_opts *o)
{
	ams_create_opts def = {0};
	if (!o)
		o = &def;
	const char *prefix = o->prefix ? o->prefix : "E00";
	uint32_t P = o->page_size ? o->page_size : 8192;
	uint64_t L = o->log_size ? o->log_size : DEFAULT_LOG_SIZE;
	static const char *const defdb[] = {"priv1.edb"};
	const char *const *dbs = o->ndatabases ? o->databases : defdb;
	int ndb = o->ndatabases ? o->ndatabases : 1;
	amb_vfs *v = amb_vfs_posix();

	if (!dir || !*dir)
		return amb_err(AMS_EINVAL, "no directory given");
	if (!check_prefix(prefix))
		return amb_err(AMS_EINVAL, "log prefix must be 3 letters or digits, not '%s'", prefix);
	if (!amb_page_size_ok(P))
		return amb_err(AMS_EINVAL, "page size must be 4096, 8192 or 32768, not %u", P);
	if (L % AMB_SEG_SIZE || L < 65536 || L > (1ull << 30))
		return amb_err(AMS_EINVAL, "log size must be a multiple of 4 KiB between 64 KiB and "
		               "1 GiB, not %llu", (unsigned long long)L);
	if (ndb < 1 || ndb > AMB_MAX_DBS || !dbs)
		return amb_err(AMS_EINVAL, "an instance has 1 to %d databases", AMB_MAX_DBS);
	if (max_value_for(P, (uint32_t)(L / AMB_SEG_SIZE) - 1, ndb) < 16384)
		return amb_err(AMS_EINVAL, "log files of %llu bytes are too small for %u-byte pages: "
		               "a transaction's page images must fit in two log files (use at least "
		               "%u KiB)", (unsigned long long)L, P, P * 12 / 1024 + 64);
	for (int i = 0; i < ndb; i++) {
		if (!dbs[i] || !dbname_ok(dbs[i]))
			return amb_err(AMS_EINVAL, "database name '%s' must end in .edb and have no '/'",
			               dbs[i] ? dbs[i] : "(null)");
		for (int j = 0; j < i; j++)
			if (!strcmp(dbs[i], dbs[j]))
				return amb_err(AMS_EINVAL, "database %s named twice", dbs[i]);
	}
	int nrc;
	if (o->nocow && (nrc = nocow_supported(dir)) != 0)
		return nrc;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return amb_err(amb_errno_code(-errno), "%s: cannot create directory: %s", dir,
		               strerror(errno));
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s.chk", dir, prefix);
	if (access(path, F_OK) == 0)
		return amb_err(AMS_EEXIST, "%s already holds an instance (%s exists)", dir, path);
	amb_log_path(path, sizeof(path), dir, prefix, 0);
	if (access(path, F_OK) == 0)
		return amb_err(AMS_EEXIST, "%s already holds an instance (%s exists)", dir, path);
	uint32_t oldest, newest;
	amb_log_scan_archived(dir, prefix, &oldest, &newest);
	if (newest)
		return amb_err(AMS_EEXIST, "%s already holds log files of an instance (%s%08X.log)",
		               dir, prefix, newest);
	/* a database file left by an interrupted create (no checkpoint, no log,
	 * an empty or unreadable header) may be made again; anything else is
	 * somebody's data */
	for (int i = 0; i < ndb; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, dbs[i]);
		int fd = v->open(v, path, O_RDONLY, 0);
		if (fd < 0)
			continue;
		amb_dbhdr h;
		int lr = amb_dbhdr_load(v, fd, path, &h, NULL);
		v->close(v, fd);
		if (lr == 0 && (h.state != AMB_DBSTATE_CLEAN || h.page_count > 2))
			return amb_err(AMS_EEXIST, "%s already exists and holds a database", path);
		if (lr != 0 && lr != AMS_ENOTDB && lr != AMS_ECORRUPT)
			return lr;
		if (lr == AMS_ENOTDB) {
			off_t sz = 0;
			struct stat st;
			if (stat(path, &st) == 0)
				sz = st.st_size;
			if (sz > (off_t)(2 * 32768))
				return amb_err(AMS_EEXIST, "%s already exists and is not an amber database", path);
		}
	}
	/* no instance here: the attribute now, before any file is made */
	if (o->nocow && (nrc = nocow_set(dir)) != 0)
		return nrc;

	amb_sig sign_log;
	amb_sig_new(&sign_log);
	uint64_t now = amb_now_us();
	amb_loghdr lh;
	memset(&lh, 0, sizeof(lh));
	int rc = 0;
	unsigned char *page = amb_io_alloc(P);
	if (!page)
		return amb_err(AMS_ENOMEM, "out of memory");
	memset(page, 0, P);
	for (int i = 0; i < ndb && !rc; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, dbs[i]);
		int fd = v->open(v, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fd < 0) {
			rc = amb_err(amb_errno_code(fd), "%s: cannot create: %s", path, strerror(-fd));
			break;
		}
		amb_dbhdr h;
		memset(&h, 0, sizeof(h));
		h.magic = AMB_DB_MAGIC;
		h.version = AMB_FORMAT_VERSION;
		h.page_size = P;
		h.dbidx = (uint32_t)i;
		amb_sig_new(&h.sign_db);
		h.sign_log = sign_log;
		h.state = AMB_DBSTATE_CLEAN;
		h.consistent.gen = 1;
		h.consistent_time = now;
		h.page_count = 2;
		snprintf(h.name, sizeof(h.name), "%s", dbs[i]);
		snprintf(h.prefix, sizeof(h.prefix), "%s", prefix);
		rc = amb_dbhdr_store(v, fd, path, &h);
		if (!rc) {
			int s = v->sync(v, fd, 0);
			if (s)
				rc = amb_err(AMS_EIO, "%s: fsync failed: %s", path, strerror(-s));
		}
		v->close(v, fd);
		lh.sign_db[i] = h.sign_db;
	}
	free(page);
	if (rc)
		return rc;
	/* generation 1 */
	lh.magic = AMB_LOG_MAGIC;
	lh.version = AMB_FORMAT_VERSION;
	lh.gen = 1;
	lh.seg_size = AMB_SEG_SIZE;
	lh.file_size = L;
	lh.sign_log = sign_log;
	lh.create_time = now;
	lh.page_size = P;
	lh.ndbs = (uint32_t)ndb;
	snprintf(lh.prefix, sizeof(lh.prefix), "%s", prefix);
	char tmp[PATH_MAX];
	amb_log_path(tmp, sizeof(tmp), dir, prefix, UINT32_MAX);
	int fd = v->open(v, tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return amb_err(amb_errno_code(fd), "%s: cannot create: %s", tmp, strerror(-fd));
	static const unsigned char zero[65536];
	for (uint64_t off = 0; off < L && !rc; off += sizeof(zero)) {
		size_t n = L - off < sizeof(zero) ? (size_t)(L - off) : sizeof(zero);
		ssize_t w = v->pwrite(v, fd, zero, n, (off_t)off);
		if (w < 0)
			rc = amb_err(amb_errno_code((int)w), "%s: %s", tmp, strerror((int)-w));
	}
	if (!rc) {
		int w = write_loghdr(v, fd, &lh);
		if (!w)
			w = v->sync(v, fd, 0);
		if (w)
			rc = amb_err(amb_errno_code(w), "%s: %s", tmp, strerror(-w));
	}
	v->close(v, fd);
	amb_log_path(path, sizeof(path), dir, prefix, 0);
	if (!rc) {
		int w = v->rename(v, tmp, path);
		if (!w)
			w = v->sync_dir(v, dir);
		if (w)
			rc = amb_err(amb_errno_code(w), "%s: %s", path, strerror(-w));
	}
	if (rc) {
		v->unlink(v, tmp);
		return rc;
	}
	amb_chk chk;
	memset(&chk, 0, sizeof(chk));
	chk.magic = AMB_CHK_MAGIC;
	chk.version = AMB_FORMAT_VERSION;
	chk.sign_log = sign_log;
	chk.gen = 1;
	chk.lsn = 0;
	chk.time = now;
	snprintf(chk.prefix, sizeof(chk.prefix), "%s", prefix);
	snprintf(path, sizeof(path), "%s/%s.chk", dir, prefix);
	return amb_chk_store(v, path, &chk, 1);
}

static int find_prefix(const char *dir, char *out)
{
	DIR *d = opendir(dir);
	if (!d)
		return amb_err(errno == ENOENT ? AMS_ENOTFOUND : AMS_EIO, "%s: %s", dir, strerror(errno));
	struct dirent *e;
	int found = 0;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l == 7 && (!strcmp(e->d_name + 3, ".chk") || !strcmp(e->d_name + 3, ".log"))) {
			memcpy(out, e->d_name, 3);
			out[3] = '\0';
			if (check_prefix(out)) {
				found = 1;
				break;
			}
		}
	}
	closedir(d);
	if (!found)
		strcpy(out, "E00");
	return 0;
}

static int db_idx_cmp(const void *a, const void *b)
{
	const amb_db *x = a, *y = b;
	return (int)x->hdr.dbidx - (int)y->hdr.dbidx;
}

/* Open every *.edb of the directory and load its header. */
static int open_dbs(ams_instance *in)
{
	DIR *d = opendir(in->dir);
	if (!d)
		return amb_err(AMS_EIO, "%s: %s", in->dir, strerror(errno));
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) && !rc) {
		size_t l = strlen(e->d_name);
		if (l < 5 || strcmp(e->d_name + l - 4, ".edb") || l >= 64)
			continue;
		if (in->ndb == AMB_MAX_DBS) {
			rc = amb_err(AMS_EINVAL, "%s: more than %d databases", in->dir, AMB_MAX_DBS);
			break;
		}
		amb_db *db = &in->db[in->ndb];
		memset(db, 0, sizeof(*db));
		snprintf(db->name, sizeof(db->name), "%s", e->d_name);
		char dbpath[PATH_MAX];
		snprintf(dbpath, sizeof(dbpath), "%s/%s", in->dir, e->d_name);
		memcpy(db->path, dbpath, sizeof(dbpath));
		db->fd = in->vfs->open(in->vfs, db->path, O_RDWR, 0);
		if (db->fd < 0) {
			rc = amb_err(amb_errno_code(db->fd), "%s: cannot open: %s", db->path,
			             strerror(-db->fd));
			break;
		}
		in->ndb++;
		rc = amb_dbhdr_load(in->vfs, db->fd, db->path, &db->hdr, NULL);
	}
	closedir(d);
	if (rc)
		return rc;
	if (in->ndb == 0)
		return amb_err(AMS_ENOTFOUND, "%s: no databases (*.edb) found", in->dir);
	qsort(in->db, (size_t)in->ndb, sizeof(in->db[0]), db_idx_cmp);
	in->page_size = in->db[0].hdr.page_size;
	in->sign_log = in->db[0].hdr.sign_log;
	for (int i = 0; i < in->ndb; i++) {
		amb_dbhdr *h = &in->db[i].hdr;
		if ((int)h->dbidx != i)
			return amb_err(AMS_ECORRUPT, "%s: database number %u, expected %d (is a database "
			               "missing or foreign?)", in->db[i].name, h->dbidx, i);
		if (h->page_size != in->page_size)
			return amb_err(AMS_ECORRUPT, "%s: page size %u differs from %s's %u",
			               in->db[i].name, h->page_size, in->db[0].name, in->page_size);
		if (!amb_sig_eq(&h->sign_log, &in->sign_log))
			return amb_err(AMS_EBADSIG, "%s does not belong to the same log stream as %s",
			               in->db[i].name, in->db[0].name);
		if (h->full_cur.time)
			return amb_err(AMS_EBACKUPDB, "%s is a restored backup copy: run hard recovery "
			               "(amber-store hard-recover) before mounting it", in->db[i].name);
	}
	return 0;
}

/*
 * A crash before a roll's renames and its new header were durable (LOG
 * ROLL at the top of this file): finish the roll.  A tmp log that is not
 * the next generation is discarded; nothing in it was acknowledged.
 */
static int fix_interrupted_roll(ams_instance *in)
{
	amb_vfs *v = in->vfs;
	char cur[PATH_MAX], tmp[PATH_MAX], arch[PATH_MAX];
	amb_log_path(cur, sizeof(cur), in->dir, in->prefix, 0);
	amb_log_path(tmp, sizeof(tmp), in->dir, in->prefix, UINT32_MAX);
	if (access(tmp, F_OK) != 0)
		return 0;
	uint32_t oldest, newest;
	amb_log_scan_archived(in->dir, in->prefix, &oldest, &newest);
	amb_loghdr h, ch;
	int tmp_ok = amb_loghdr_load(v, tmp, &h) == 0 && amb_sig_eq(&h.sign_log, &in->sign_log);
	int rc;
	if (access(cur, F_OK) != 0) {
		/* between the renames: the second one is done.  Without a
		 * valid header the file is still the next generation (a roll
		 * renames only its prepared file); fix_unsynced_header()
		 * writes the header */
		if (newest && (!tmp_ok || h.gen == newest + 1)) {
			if ((rc = amb_durable_rename(v, tmp, cur)) != 0)
				return amb_err(AMS_EIO, "renaming %s to %s: %s", tmp, cur, strerror(-rc));
			return 0;
		}
	} else if (tmp_ok && amb_loghdr_load(v, cur, &ch) == 0 && h.gen == ch.gen + 1 &&
	           h.prev_create_time == ch.create_time && ch.gen > newest) {
		/* neither rename reached the disk, the new header did (so its
		 * records may have been acknowledged): both renames */
		amb_log_path(arch, sizeof(arch), in->dir, in->prefix, ch.gen);
		if ((rc = v->rename(v, cur, arch)) != 0)
			return amb_err(AMS_EIO, "renaming %s to %s: %s", cur, arch, strerror(-rc));
		if ((rc = amb_durable_rename(v, tmp, cur)) != 0)
			return amb_err(AMS_EIO, "renaming %s to %s: %s", tmp, cur, strerror(-rc));
		return 0;
	}
	v->unlink(v, tmp);
	return 0;
}

/*
 * The current log file's header never reached the disk (a crash after a
 * roll's renames, before the first sync of the new file: LOG ROLL at the
 * top of this file), so nothing in the file was acknowledged: write the
 * header again (amb_log_unsynced_header decides, and what); its records,
 * if any reached the disk, are then read as usual.  Any other unreadable
 * current log is left for recover_local() to report.
 */
static int fix_unsynced_header(ams_instance *in)
{
	amb_vfs *v = in->vfs;
	amb_loghdr nh;
	if (!amb_log_unsynced_header(v, in->dir, in->prefix, &in->sign_log, &nh))
		return 0;
	char cur[PATH_MAX];
	amb_log_path(cur, sizeof(cur), in->dir, in->prefix, 0);
	int fd = v->open(v, cur, O_RDWR, 0);
	if (fd < 0)
		return amb_err(amb_errno_code(fd), "%s: cannot open: %s", cur, strerror(-fd));
	int rc = write_loghdr(v, fd, &nh);
	v->close(v, fd);
	if (rc)
		return amb_err(amb_errno_code(rc), "%s: cannot write its header again: %s", cur,
		               strerror(-rc));
	return 0;
}

static int lock_instance(ams_instance *in)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/amber.lock", in->dir);
	in->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (in->lockfd < 0)
		return amb_err(AMS_EIO, "%s: %s", path, strerror(errno));
	if (flock(in->lockfd, LOCK_EX | LOCK_NB) < 0)
		return amb_err(errno == EWOULDBLOCK ? AMS_ELOCKED : AMS_EIO,
		               "%s: instance is open in another process", in->dir);
	return 0;
}

static void instance_free(ams_instance *in)
{
	if (!in)
		return;
	free(in->unch_path);
	for (int d = 0; d < in->ndb; d++) {
		amb_db *db = &in->db[d];
		if (db->fd > 0)
			in->vfs->close(in->vfs, db->fd);
		amb_cache_free_all(db);
		free(db->freel);
		free(db->roomy);
	}
	if (in->log_fd >= 0)
		in->vfs->close(in->vfs, in->log_fd);
	if (in->tmp_fd >= 0)
		in->vfs->close(in->vfs, in->tmp_fd);
	amb_tables_free(in);
	free(in->lbuf);
	free(in->spare);
	free(in->genmap);
	if (in->lockfd >= 0)
		close(in->lockfd);
	pthread_rwlock_destroy(&in->rw);
	pthread_mutex_destroy(&in->mu);
	pthread_mutex_destroy(&in->hdr_mu);
	pthread_cond_destroy(&in->cond);
	pthread_cond_destroy(&in->bg_cond);
	free(in);
}

static ams_instance *instance_new(const char *dir, const ams_open_opts *o)
{
	ams_instance *in = calloc(1, sizeof(*in));
	if (!in)
		return NULL;
	if (!realpath(dir, in->dir))
		snprintf(in->dir, sizeof(in->dir), "%s", dir);
	in->base_vfs = o && o->vfs ? o->vfs : amb_vfs_posix();
	cvfs_init(in);
	in->vfs = &in->cvfs;
	gvfs_init(in);
	in->ckpt_depth = o && o->checkpoint_depth ? o->checkpoint_depth : DEFAULT_CKPT_DEPTH;
	in->log_fd = in->tmp_fd = in->lockfd = -1;
	in->fpi_epoch = 1;
	pthread_rwlock_init(&in->rw, NULL);
	pthread_mutex_init(&in->mu, NULL);
	pthread_mutex_init(&in->hdr_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&in->cond, &ca);
	pthread_cond_init(&in->bg_cond, &ca);
	pthread_condattr_destroy(&ca);
	return in;
}

/*
 * Bring the databases up to date from the log (soft recovery) and find where
 * the stream ends.  On return: in->gen = current generation (its header
 * read), *end_lsn = after the last complete record.
 */
static int recover_local(ams_instance *in, uint64_t *end_lsn)
{
	amb_vfs *v = in->vfs;
	char cur[PATH_MAX], chkpath[PATH_MAX];
	amb_log_path(cur, sizeof(cur), in->dir, in->prefix, 0);
	snprintf(chkpath, sizeof(chkpath), "%s/%s.chk", in->dir, in->prefix);
	int dirty = 0;
	uint32_t max_required = 0, min_required = UINT32_MAX;
	for (int d = 0; d < in->ndb; d++) {
		amb_dbhdr *h = &in->db[d].hdr;
		if (h->state == AMB_DBSTATE_DIRTY) {
			dirty = 1;
			if (h->gen_max_required > max_required)
				max_required = h->gen_max_required;
			if (h->gen_min_required < min_required)
				min_required = h->gen_min_required;
		}
	}
	amb_loghdr lh;
	int rc = amb_loghdr_load(v, cur, &lh);
	if (rc == AMS_ENOTFOUND) {
		if (dirty)
			return amb_err(AMS_ELOGMISSING, "the current log file %s is missing and the "
			               "databases need recovery (Log Required %u-%u)", cur, min_required,
			               max_required);
		/* clean databases without logs: a new stream continues after them */
		uint64_t lsn = 0;
		uint32_t gen = 0;
		for (int d = 0; d < in->ndb; d++) {
			if (in->db[d].hdr.consistent_lsn > lsn)
				lsn = in->db[d].hdr.consistent_lsn;
			if (in->db[d].hdr.consistent.gen > gen)
				gen = in->db[d].hdr.consistent.gen;
		}
		uint32_t oldest, newest;
		amb_log_scan_archived(in->dir, in->prefix, &oldest, &newest);
		if (newest > gen)
			gen = newest;
		in->gen = gen; /* log_roll_io makes gen+1 and opens it */
		in->log_fd = -1;
		in->log_size = in->log_size ? in->log_size : DEFAULT_LOG_SIZE;
		in->nsegs = (uint32_t)(in->log_size / AMB_SEG_SIZE) - 1;
		*end_lsn = lsn;
		return 1; /* tells the caller no current log exists */
	}
	if (rc)
		return rc;
	if (!amb_sig_eq(&lh.sign_log, &in->sign_log))
		return amb_err(AMS_EBADSIG, "%s belongs to another log stream than the databases", cur);
	in->gen = lh.gen;
	in->gen_create_time = lh.create_time;
	in->log_size = lh.file_size;
	in->nsegs = (uint32_t)(in->log_size / AMB_SEG_SIZE) - 1;
	if (max_required > lh.gen)
		return amb_err(AMS_ELOGMISSING, "the databases need log generations up to %u "
		               "(0x%08X) but the newest log is generation %u", max_required,
		               max_required, lh.gen);

	amb_chk chk;
	int have_chk = amb_chk_load(v, chkpath, &chk, &in->ckpt_seq, NULL) == 0;
	if (have_chk && !amb_sig_eq(&chk.sign_log, &in->sign_log))
		return amb_err(AMS_EBADSIG, "%s belongs to another log stream than the databases", chkpath);

	amb_replay rp;
	memset(&rp, 0, sizeof(rp));
	rp.vfs = v;
	rp.page_size = in->page_size;
	rp.ndb = in->ndb;
	for (int d = 0; d < in->ndb; d++) {
		rp.fds[d] = in->db[d].fd;
		rp.dbnames[d] = in->db[d].name;
	}
	rp.sign_log = in->sign_log;
	rp.roll_forward = 1;
	if (!dirty) {
		/* nothing to redo: the new generation starts after everything */
		amb_logscan sc;
		uint64_t lsn = sc.end_lsn = 0;
		if (amb_log_scan(v, cur, &sc) == 0)
			lsn = sc.end_lsn;
		for (int d = 0; d < in->ndb; d++)
			if (in->db[d].hdr.consistent_lsn > lsn)
				lsn = in->db[d].hdr.consistent_lsn;
		*end_lsn = lsn;
		in->log_fd = v->open(v, cur, O_RDWR, 0);
		if (in->log_fd < 0)
			return amb_err(AMS_EIO, "%s: cannot open: %s", cur, strerror(-in->log_fd));
		return 0;
	}
	if (have_chk) {
		rp.start_gen = chk.gen;
		rp.start_lsn = chk.lsn;
	} else {
		rp.start_gen = min_required;
		rp.start_lsn = UINT64_MAX;
	}
	amb_logsrc src = {NULL, 0, 0, in->dir, in->prefix};
	rc = amb_replay_run(&rp, &src);
	if (rc)
		return rc;
	if (!rp.have_current)
		return amb_err(AMS_ELOGMISSING, "recovery did not reach the current log %s", cur);
	for (int d = 0; d < in->ndb; d++) {
		if (rp.max_stamp[d] > in->db[d].stamp)
			in->db[d].stamp = rp.max_stamp[d];
		int s = v->sync(v, in->db[d].fd, 1);
		if (s)
			return amb_err(AMS_EIO, "%s: fdatasync failed: %s", in->db[d].name, strerror(-s));
	}
	*end_lsn = rp.end_lsn;
	/* open the current log so the roll can archive it */
	in->log_fd = v->open(v, cur, O_RDWR, 0);
	if (in->log_fd < 0)
		return amb_err(AMS_EIO, "%s: cannot open: %s", cur, strerror(-in->log_fd));
	return 0;
}

static int start_threads(ams_instance *in)
{
	if (pthread_create(&in->flusher, NULL, flusher_main, in))
		return amb_err(AMS_ENOMEM, "cannot start the log flusher thread");
	if (pthread_create(&in->ckpter, NULL, ckpter_main, in)) {
		pthread_mutex_lock(&in->mu);
		in->stop = 1;
		wake_bg(in);
		pthread_mutex_unlock(&in->mu);
		pthread_join(in->flusher, NULL);
		return amb_err(AMS_ENOMEM, "cannot start the checkpointer thread");
	}
	in->threads_started = 1;
	return 0;
}

static void stop_threads(ams_instance *in)
{
	if (!in->threads_started)
		return;
	pthread_mutex_lock(&in->mu);
	in->stop = 1;
	pthread_cond_broadcast(&in->cond);
	wake_bg(in);
	/* a committer's flush may still be syncing: it uses the instance
	 * until it has published */
	while (in->syncing)
		pthread_cond_wait(&in->cond, &in->mu);
	pthread_mutex_unlock(&in->mu);
	pthread_join(in->flusher, NULL);
	pthread_join(in->ckpter, NULL);
	in->threads_started = 0;
}

int ams_open(const char *dir, const ams_open_opts *o, ams_instance **out)
{
	if (!dir || !out)
		return amb_err(AMS_EINVAL, "NULL argument");
	*out = NULL;
	ams_instance *in = instance_new(dir, o);
	if (!in)
		return amb_err(AMS_ENOMEM, "out of memory");
	int rc;
	struct stat st;
	if (stat(in->dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		rc = amb_err(AMS_ENOTFOUND, "%s: no such instance directory", dir);
		goto fail;
	}
	if (o && o->prefix) {
		if (!check_prefix(o->prefix)) {
			rc = amb_err(AMS_EINVAL, "bad log prefix '%s'", o->prefix);
			goto fail;
		}
		snprintf(in->prefix, sizeof(in->prefix), "%s", o->prefix);
	} else if ((rc = find_prefix(in->dir, in->prefix)) != 0) {
		goto fail;
	}
	if ((rc = lock_instance(in)) || (rc = open_dbs(in)) || (rc = fix_interrupted_roll(in)) ||
	    (rc = fix_unsynced_header(in)))
		goto fail;
	uint64_t end_lsn = 0;
	rc = recover_local(in, &end_lsn);
	if (rc < 0)
		goto fail;
	for (int d = 0; d < in->ndb; d++) {
		amb_db *db = &in->db[d];
		off_t size;
		int s = in->vfs->size(in->vfs, db->fd, &size);
		if (s) {
			rc = amb_err(AMS_EIO, "%s: %s", db->name, strerror(-s));
			goto fail;
		}
		db->npages = (uint32_t)(size / in->page_size);
		if (db->npages < 2)
			db->npages = 2;
		db->reserved_end = (uint64_t)db->npages * in->page_size;
		if (db->hdr.last_stamp > db->stamp)
			db->stamp = db->hdr.last_stamp;
	}
	/* a new generation for this run, then a checkpoint at its start */
	in->lsn_end = in->lsn_written = in->lsn_durable = end_lsn;
	rc = log_roll_io(in, end_lsn);
	if (rc == AMS_ENOSPC && reserve_spend(in))
		rc = log_roll_io(in, end_lsn);
	if (!rc)
		rc = amb_loghdr_durable(in); /* the checkpoint and headers below name it */
	if (rc)
		goto fail;
	in->ckpt_lsn = end_lsn;
	in->ckpt_gen = in->gen;
	{
		amb_chk chk;
		memset(&chk, 0, sizeof(chk));
		chk.magic = AMB_CHK_MAGIC;
		chk.version = AMB_FORMAT_VERSION;
		chk.sign_log = in->sign_log;
		chk.lsn = end_lsn;
		chk.gen = in->gen;
		chk.time = amb_now_us();
		chk.full_backup = in->db[0].hdr.full_prev;
		chk.inc_backup = in->db[0].hdr.inc_prev;
		snprintf(chk.prefix, sizeof(chk.prefix), "%s", in->prefix);
		char chkpath[PATH_MAX];
		snprintf(chkpath, sizeof(chkpath), "%s/%s.chk", in->dir, in->prefix);
		rc = amb_chk_store(in->vfs, chkpath, &chk, ++in->ckpt_seq);
		if (rc == AMS_ENOSPC && reserve_spend(in))
			rc = amb_chk_store(in->vfs, chkpath, &chk, ++in->ckpt_seq);
		if (rc) {
			rc = amb_err(rc == AMS_ENOSPC ? AMS_ENOSPC : AMS_EIO,
			             "%s: cannot write the checkpoint", chkpath);
			goto fail;
		}
	}
	uint64_t now = amb_now_us();
	for (int d = 0; d < in->ndb; d++) {
		amb_dbhdr *h = &in->db[d].hdr;
		h->state = AMB_DBSTATE_DIRTY;
		h->gen_min_required = in->gen;
		h->gen_max_required = in->gen;
		h->gen_max_committed = in->gen;
		h->attach_time = now;
		h->page_count = in->db[d].npages;
		h->last_stamp = in->db[d].stamp;
	}
	if ((rc = amb_headers_store(in)) != 0)
		goto fail;
	if ((rc = amb_space_scan(in)) != 0)
		goto fail;
	reserve_make(in); /* best effort: a full disk may not allow it yet */
	uint32_t newest;
	amb_log_scan_archived(in->dir, in->prefix, &in->gen_oldest, &newest);
	if (!in->gen_oldest)
		in->gen_oldest = in->gen;
	if ((rc = start_threads(in)) != 0)
		goto fail;
	*out = in;
	return 0;
fail:
	instance_free(in);
	return rc;
}

void ams_abandon(ams_instance *in)
{
	if (!in)
		return;
	stop_threads(in);
	instance_free(in);
}

int ams_close(ams_instance *in)
{
	if (!in)
		return amb_err(AMS_EINVAL, "NULL instance");
	/* everything committed is flushed; the threads end */
	pthread_mutex_lock(&in->mu);
	while (!in->failed && (in->appliers || in->lsn_durable < in->lsn_end || in->lbuf_len ||
	                       in->flushing)) {
		if (!in->flushing && !in->appliers && in->lbuf_len)
			flush_cycle(in);
		else
			pthread_cond_wait(&in->cond, &in->mu);
	}
	pthread_mutex_unlock(&in->mu);
	stop_threads(in);
	int rc = 0;
	if (in->failed) {
		rc = amb_err(AMS_EFAILED, "instance failed earlier: %s (the databases stay dirty; the "
		             "next open recovers them)", in->failmsg);
		goto out;
	}
	rc = checkpoint(in);
	if (rc)
		goto out;
	amb_gate_enter(in);
	uint64_t now = amb_now_us();
	for (int d = 0; d < in->ndb; d++) {
		amb_dbhdr *h = &in->db[d].hdr;
		h->state = AMB_DBSTATE_CLEAN;
		h->gen_min_required = h->gen_max_required = 0;
		h->gen_max_committed = in->gen;
		h->consistent.gen = in->gen;
		h->consistent.seg = (uint16_t)in->next_seg;
		h->consistent.off = 0;
		h->consistent_lsn = in->lsn_end;
		h->consistent_time = now;
		h->detach_time = now;
		h->last_stamp = in->db[d].stamp;
		h->page_count = in->db[d].npages;
	}
	int s = 0;
	for (int d = 0; d < in->ndb && !s; d++)
		s = in->vfs->sync(in->vfs, in->db[d].fd, 1);
	if (s)
		rc = amb_err(AMS_EIO, "fdatasync failed at shutdown: %s", strerror(-s));
	else
		rc = amb_headers_store(in);
	amb_gate_exit(in);
out:
	instance_free(in);
	return rc;
}

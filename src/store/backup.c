/*
 * backup.c - what the engine does for backups: roll the log on request,
 * record a verified backup in the headers and truncate logs, and the
 * streaming (online) backup reader of seed 003.
 *
 * TRUNCATION RULE (design.md section 4): after a verified full backup, logs
 * below its first generation (the checkpoint generation when it began) are
 * no longer needed by anyone: the backup holds them and recovery of the live
 * databases starts at or after the checkpoint.  After a verified incremental
 * the logs before its last generation are in the backup chain.  Never is a
 * log at or above the current checkpoint generation removed, nor anything
 * while a streaming backup runs.
 *
 * STREAMED AND SNAPSHOT BACKUPS (the kind recorded in amb_bkinfo.kind).  A
 * streamed backup (kind 1, AMS_BACKUP_STREAMED) ends with ams_stream_logs(),
 * which rolls the log: its last generation gen_high is complete.  A
 * snapshot backup (kind 2) copies the logs from the checkpoint generation K
 * to the generation C that was current (`<prefix>.log`) at the snapshot,
 * which it names `<prefix><C>.log`; that copy is a PREFIX of what
 * generation C holds once it is closed.  So for a snapshot backup:
 *   - gen_high may be the current generation (only gen_high > current is
 *     refused; a streamed backup's gen_high must be below the current one);
 *   - an incremental truncates below gen_high, not gen_high + 1: the
 *     complete version of gen_high stays for the next incremental and for
 *     roll-forward;
 *   - the next backup of the chain starts AT gen_high, so that it copies
 *     the complete version; after a streamed backup it starts at
 *     gen_high + 1.
 * CHAIN RULE (chain_low): an incremental starts after the previous full or
 * incremental (the newer one: a full clears inc_prev), a differential after
 * the previous full; "after" is gen_high for kind 2 and gen_high + 1 for
 * kind 1.  ams_backup_complete() derives gen_low this way when it is given
 * gen_low = 0 for an incremental or differential, and ams_stream_begin()
 * uses the same rule for a streamed one.  Without a recorded full backup
 * neither can start: a full backup is needed first.
 *
 * STREAMING: ams_stream_begin() notes the checkpoint generation (the first
 * log the copy needs), then ams_stream_next() hands out every page of every
 * database read through the engine: the cached version if the page is
 * dirty (newer than disk), else the disk version, verified, retried 16
 * times ((i+1)*100 ms apart) before damage is reported.  Pages may change
 * while the copy runs; that is fine because every change since the noted
 * checkpoint is in the logs that ams_stream_logs() hands over after a roll,
 * and replaying them (hard recovery) brings every page to the same point.
 * The header pages come last, marked as a backup copy ("Current Full
 * Backup" = the log range), so the copy cannot be mounted without hard
 * recovery.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/checksum.h"
#include "common/durable.h"
#include "store/dbfile.h"
#include "store/err.h"
#include "store/instance.h"
#include "store/log.h"

int ams_log_roll(ams_instance *in, uint32_t *new_gen)
{
	if (!in)
		return amb_err(AMS_EINVAL, "NULL instance");
	pthread_mutex_lock(&in->mu);
	if (in->failed) {
		pthread_mutex_unlock(&in->mu);
		return amb_err(AMS_EFAILED, "instance failed earlier: %s", in->failmsg);
	}
	uint64_t ticket = ++in->roll_req;
	uint32_t before = in->gen;
	pthread_cond_broadcast(&in->bg_cond);
	while (in->roll_done < ticket && !in->failed)
		pthread_cond_wait(&in->cond, &in->mu);
	int rc = 0;
	if (in->failed)
		rc = amb_err(AMS_EFAILED, "instance failed: %s", in->failmsg);
	else if (in->gen == before)
		rc = amb_err(AMS_ENOSPC, "cannot start a new log generation: no space for the log file");
	/* Return once the next log file is prepared too (zero-filled and
	 * synced by the flusher): a freeze that follows a roll, as in a
	 * shadow's prepare-snapshot then freeze, then does not have to wait
	 * for that preparation while it holds the application's writes.  A
	 * failed preparation (a full disk) ends the wait; the next roll
	 * retries it.  Nor is it waited for once a freeze has begun: the
	 * preparation waits for the thaw then, and the roll would wait with it
	 * (a freeze asked for by another thread just after the roll ended and
	 * before the flusher took up the preparation: test_engine's
	 * test_freeze_waits_for_roll hung on that until the thaw).  Nor while
	 * quiesced (ams_quiesce() before the roll): a preparation that has not
	 * started waits for the quiet's end, after the snapshot, and neither
	 * the roll nor the freeze waits for it; one already running is waited
	 * for as without the quiet. */
	while (!rc && !in->failed && !in->stop && !in->freezing && !in->frozen && in->tmp_fd < 0 &&
	       (in->prep_busy || (in->prep_req && !amb_quiet_locked(in))))
		pthread_cond_wait(&in->cond, &in->mu);
	/* the generations archived by this roll are final: while quiesced they
	 * count as unchanged (ams_unchanged_files) like the older ones */
	if (!rc && amb_quiet_locked(in))
		in->quiet_gen = in->gen;
	if (new_gen)
		*new_gen = in->gen;
	pthread_mutex_unlock(&in->mu);
	return rc;
}

/*
 * Delete archived generations below `below` (gated), oldest first, without
 * a directory fsync: a truncation need not survive a crash.  The headers
 * that record the backup are durable before the first unlink, so a crash
 * can only bring back some of the deleted generations, never lose one that
 * is still needed; file systems journal the unlinks in order, so what comes
 * back is the newest of them, and the generations on disk stay one unbroken
 * run (open takes the oldest it finds; the next truncation deletes them
 * again; test_powerloss crashes at every sync point around a truncation).
 * The next directory fsync of the instance (a log roll) makes them durable
 * anyway.  Saves a btrfs directory fsync (~5 ms on the bench VM) on the way
 * to the writer's answer to BackupComplete.
 */
static int truncate_below(ams_instance *in, uint32_t below)
{
	char path[PATH_MAX];
	int rc = 0;
	pthread_mutex_lock(&in->mu);
	uint32_t from = in->gen_oldest, cur = in->gen;
	pthread_mutex_unlock(&in->mu);
	/* deleting the generation before the current one: the current one's
	 * header durable first.  After a crash, open rebuilds a header that
	 * never reached the disk from that generation (instance.c, LOG ROLL) */
	if (from && from < below && below >= cur && (rc = amb_loghdr_durable(in)) != 0)
		return rc;
	amb_gate_enter(in);
	uint32_t g;
	for (g = from; g && g < below; g++) {
		amb_log_path(path, sizeof(path), in->dir, in->prefix, g);
		int r = in->vfs->unlink(in->vfs, path);
		if (r && r != -ENOENT) {
			/* g stays: the oldest generation on disk */
			rc = amb_err(AMS_EIO, "%s: cannot delete: %s", path, strerror(-r));
			break;
		}
	}
	amb_gate_exit(in);
	pthread_mutex_lock(&in->mu);
	if (g > in->gen_oldest)
		in->gen_oldest = g;
	pthread_mutex_unlock(&in->mu);
	return rc;
}

/* Where an incremental or differential that follows the backups recorded
 * in @p h starts (CHAIN RULE above).  0, or AMS_ENOTFOUND without a full. */
static int chain_low(const amb_dbhdr *h, int type, uint32_t *low)
{
	if (!h->full_prev.time)
		return AMS_ENOTFOUND;
	const amb_bkinfo *prev = &h->full_prev;
	if (type == AMS_BACKUP_INCREMENTAL && h->inc_prev.time)
		prev = &h->inc_prev; /* a full clears inc_prev: this one is newer */
	*low = prev->kind == 1 ? prev->gen_high + 1 : prev->gen_high;
	return 0;
}

static const char *type_name(int type)
{
	switch (type) {
	case AMS_BACKUP_FULL:
		return "full";
	case AMS_BACKUP_INCREMENTAL:
		return "incremental";
	case AMS_BACKUP_DIFFERENTIAL:
		return "differential";
	default:
		return "copy";
	}
}

/* A header write that failed fails the instance, as any failed write of a
 * database does; returns rc. */
static int header_failed(ams_instance *in, int rc)
{
	pthread_mutex_lock(&in->mu);
	amb_fail_locked(in, rc, ams_errmsg());
	pthread_mutex_unlock(&in->mu);
	return rc;
}

int ams_backup_complete(ams_instance *in, int type, uint32_t gen_low, uint32_t gen_high,
                        uint64_t time_sec, uint32_t keep_from)
{
	if (!in)
		return amb_err(AMS_EINVAL, "NULL instance");
	int streamed = (type & AMS_BACKUP_STREAMED) != 0;
	int defer = (type & AMS_BACKUP_DEFER_TRUNCATE) != 0;
	uint32_t kind = streamed ? 1 : 2;
	type &= ~(AMS_BACKUP_STREAMED | AMS_BACKUP_DEFER_TRUNCATE);
	if (type < AMS_BACKUP_FULL || type > AMS_BACKUP_COPY)
		return amb_err(AMS_EINVAL, "unknown backup type %d", type);
	int derive = gen_low == 0 &&
	             (type == AMS_BACKUP_INCREMENTAL || type == AMS_BACKUP_DIFFERENTIAL);
	if (gen_high == 0 || (gen_low == 0 && !derive) || (gen_low && gen_high < gen_low))
		return amb_err(AMS_EINVAL, "bad log range %u-%u", gen_low, gen_high);
	if (type == AMS_BACKUP_COPY)
		return 0; /* a copy backup leaves header and logs alone */
	pthread_mutex_lock(&in->mu);
	int failed = in->failed, streaming = in->stream_active;
	uint32_t ckpt = in->ckpt_gen, cur = in->gen;
	pthread_mutex_unlock(&in->mu);
	if (failed)
		return amb_err(AMS_EFAILED, "instance failed earlier: %s", in->failmsg);
	if (streamed && gen_high >= cur)
		return amb_err(AMS_EINVAL, "streamed backup range %u-%u reaches the current generation "
		               "%u: roll the log before recording a backup", gen_low, gen_high, cur);
	if (!streamed && gen_high > cur)
		return amb_err(AMS_EINVAL, "backup range %u-%u goes past the current generation %u",
		               gen_low, gen_high, cur);
	if (derive) {
		pthread_mutex_lock(&in->hdr_mu);
		int r = chain_low(&in->db[0].hdr, type, &gen_low);
		pthread_mutex_unlock(&in->hdr_mu);
		if (r)
			return amb_err(AMS_EINVAL, "no full backup is recorded in the database header: "
			               "a full backup is needed before an %s backup", type_name(type));
		if (gen_low > gen_high)
			return amb_err(AMS_EINVAL, "%s backup: it starts at generation %u (after the "
			               "previous backup) but its last generation is %u", type_name(type),
			               gen_low, gen_high);
	}
	amb_bkinfo bk = {gen_low, gen_high, time_sec * 1000000u, kind, 0};

	/* the header update passes the freeze gate like any write, one write
	 * at a time (amb_headers_store_gated: hdr_mu first, then the gate) */
	pthread_mutex_lock(&in->hdr_mu);
	for (int d = 0; d < in->ndb; d++) {
		amb_dbhdr *h = &in->db[d].hdr;
		if (type == AMS_BACKUP_FULL) {
			h->full_prev = bk;
			memset(&h->inc_prev, 0, sizeof(h->inc_prev));
			memset(&h->diff_prev, 0, sizeof(h->diff_prev));
			memset(&h->snap_cur, 0, sizeof(h->snap_cur));
		} else if (type == AMS_BACKUP_INCREMENTAL) {
			h->inc_prev = bk;
		} else {
			h->diff_prev = bk;
		}
	}
	int rc = defer ? amb_headers_store_first(in) : amb_headers_store_gated(in);
	pthread_mutex_unlock(&in->hdr_mu);
	if (rc)
		return header_failed(in, rc);
	if (type == AMS_BACKUP_DIFFERENTIAL || streaming)
		return 0;
	/* a snapshot's gen_high is a prefix: keep the complete version */
	uint32_t below = type == AMS_BACKUP_FULL ? gen_low : streamed ? gen_high + 1 : gen_high;
	if (below > ckpt)
		below = ckpt;
	if (keep_from && below > keep_from)
		below = keep_from;
	if (defer) {
		pthread_mutex_lock(&in->mu);
		if (below > in->trunc_below)
			in->trunc_below = below;
		pthread_mutex_unlock(&in->mu);
		return 0;
	}
	rc = truncate_below(in, below);
	/* what an earlier deferred truncation left is done too (below is at
	 * least as high: the checkpoint only moves forward) */
	pthread_mutex_lock(&in->mu);
	if (!rc && in->trunc_below <= in->gen_oldest)
		in->trunc_below = 0;
	pthread_mutex_unlock(&in->mu);
	return rc;
}

int ams_backup_settle(ams_instance *in)
{
	if (!in)
		return amb_err(AMS_EINVAL, "NULL instance");
	pthread_mutex_lock(&in->hdr_mu);
	int rc = amb_headers_finish(in);
	pthread_mutex_unlock(&in->hdr_mu);
	return rc ? header_failed(in, rc) : 0;
}

int ams_truncate_pending(ams_instance *in, uint32_t *first, uint32_t *end)
{
	if (first)
		*first = 0;
	if (end)
		*end = 0;
	if (!in)
		return amb_err(AMS_EINVAL, "NULL instance");
	/* both copies of the headers recording the backup before any unlink */
	int rc = ams_backup_settle(in);
	if (rc)
		return rc;
	pthread_mutex_lock(&in->mu);
	uint32_t below = in->trunc_below, from = in->gen_oldest;
	int skip = in->stream_active || in->failed;
	pthread_mutex_unlock(&in->mu);
	if (first)
		*first = from;
	if (end)
		*end = from;
	if (!below || skip)
		return AMS_OK;
	rc = truncate_below(in, below);
	pthread_mutex_lock(&in->mu);
	if (end)
		*end = in->gen_oldest;
	if (!rc && in->trunc_below == below)
		in->trunc_below = 0;
	pthread_mutex_unlock(&in->mu);
	return rc;
}

/* ------------------------------------------------------------ stream */

struct ams_stream {
	ams_instance *in;
	int type;
	uint32_t gen_low, gen_high;
	int logs_done;
	int db;
	uint32_t pgno;
	uint32_t npages[AMB_MAX_DBS];
	amb_dbhdr hdr[AMB_MAX_DBS];
	int hdr_db;   /* database whose header pages come next */
	int hdr_step; /* 0: page 0 next, 1: page 1 next */
	uint64_t started;
};

int ams_stream_begin(ams_instance *in, int type, ams_stream **out)
{
	if (!in || !out)
		return amb_err(AMS_EINVAL, "NULL argument");
	if (type < AMS_BACKUP_FULL || type > AMS_BACKUP_COPY)
		return amb_err(AMS_EINVAL, "unknown backup type %d", type);
	/* busy at once while frozen: the checkpointer may hold hdr_mu while it
	 * waits at the freeze gate (instance.c, headers_store_via) */
	pthread_mutex_lock(&in->mu);
	int busy = in->stream_active || in->frozen || in->freezing;
	pthread_mutex_unlock(&in->mu);
	if (busy)
		return amb_err(AMS_EBUSY, "another backup or a freeze is in progress");
	ams_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return amb_err(AMS_ENOMEM, "out of memory");
	pthread_rwlock_rdlock(&in->rw);
	pthread_mutex_lock(&in->hdr_mu);
	pthread_mutex_lock(&in->mu);
	int rc = 0;
	if (in->failed)
		rc = amb_err(AMS_EFAILED, "instance failed earlier: %s", in->failmsg);
	else if (in->stream_active || in->frozen || in->freezing)
		rc = amb_err(AMS_EBUSY, "another backup or a freeze is in progress");
	if (!rc) {
		in->stream_active = 1;
		s->in = in;
		s->type = type;
		s->gen_low = in->ckpt_gen;
		s->started = amb_now_us();
		for (int d = 0; d < in->ndb; d++) {
			s->npages[d] = in->db[d].npages;
			s->hdr[d] = in->db[d].hdr;
		}
		s->pgno = 2;
	}
	pthread_mutex_unlock(&in->mu);
	pthread_mutex_unlock(&in->hdr_mu);
	pthread_rwlock_unlock(&in->rw);
	if (rc) {
		free(s);
		return rc;
	}
	if (type == AMS_BACKUP_INCREMENTAL || type == AMS_BACKUP_DIFFERENTIAL) {
		/* logs only: from after the previous backup of the chain */
		if (chain_low(&s->hdr[0], type, &s->gen_low)) {
			ams_stream_end(s);
			return amb_err(AMS_ENOTFOUND, "no full backup is recorded in the database header: "
			               "a full backup is needed first");
		}
		s->db = in->ndb; /* no pages */
		s->hdr_db = in->ndb;
		char path[PATH_MAX];
		amb_log_path(path, sizeof(path), in->dir, in->prefix, s->gen_low);
		pthread_mutex_lock(&in->mu);
		uint32_t oldest = in->gen_oldest;
		pthread_mutex_unlock(&in->mu);
		if (s->gen_low < oldest) {
			uint32_t g = s->gen_low;
			ams_stream_end(s);
			return amb_err(AMS_ELOGMISSING, "log generation %u needed since the last backup was "
			               "already truncated: a full backup is needed", g);
		}
	}
	*out = s;
	return 0;
}

static void hdr_as_backup(ams_stream *s, int d, amb_dbhdr *h)
{
	*h = s->hdr[d];
	h->state = AMB_DBSTATE_DIRTY;
	h->gen_min_required = s->gen_low;
	h->gen_max_required = s->gen_high;
	h->gen_max_committed = s->gen_high;
	h->page_count = s->npages[d];
	h->full_cur.gen_low = s->gen_low;
	h->full_cur.gen_high = s->gen_high;
	h->full_cur.time = s->started;
	h->full_cur.kind = 1;
}

int ams_stream_next(ams_stream *s, int *dbidx, uint32_t *pgno, void *buf)
{
	ams_instance *in = s->in;
	while (s->db < in->ndb) {
		amb_db *db = &in->db[s->db];
		if (s->pgno >= s->npages[s->db]) {
			s->db++;
			s->pgno = 2;
			continue;
		}
		uint32_t p = s->pgno++;
		int rc = 0;
		for (int attempt = 0; attempt <= 16; attempt++) {
			pthread_rwlock_rdlock(&in->rw);
			rc = amb_page_read(in, db, p, buf, NULL);
			pthread_rwlock_unlock(&in->rw);
			if (rc != AMS_ECORRUPT && rc != AMS_EIO)
				break;
			if (attempt < 16)
				usleep((useconds_t)(attempt + 1) * 100000u);
		}
		if (rc) {
			/* copy first: ams_errmsg() is the buffer amb_err() writes */
			char why[512];
			snprintf(why, sizeof(why), "%s", ams_errmsg());
			return amb_err(rc, "streaming backup: %s", why);
		}
		*dbidx = s->db;
		*pgno = p;
		return 1;
	}
	/* The header pages only once every data page of every database was
	 * read: the roll of ams_stream_logs() then follows the last page read,
	 * so the logs cover every change any copied page holds.  (Rolling
	 * after the first database would let the pages of the next ones hold
	 * transactions the logs do not: a half-applied restore.) */
	if (s->hdr_db < in->ndb) {
		if (!s->logs_done)
			return amb_err(AMS_EINVAL, "call ams_stream_logs() before reading the header "
			               "pages");
		amb_dbhdr h;
		hdr_as_backup(s, s->hdr_db, &h);
		amb_dbhdr_to_page(&h, buf, (uint32_t)s->hdr_step);
		/* the page is exactly page_size long: to_page fills it */
		*dbidx = s->hdr_db;
		*pgno = (uint32_t)s->hdr_step;
		if (++s->hdr_step == 2) {
			s->hdr_step = 0;
			s->hdr_db++;
		}
		return 1;
	}
	return 0;
}

int ams_stream_logs(ams_stream *s, uint32_t *gen_low, uint32_t *gen_high)
{
	if (!s->logs_done) {
		uint32_t g;
		int rc = ams_log_roll(s->in, &g);
		if (rc)
			return rc;
		s->gen_high = g - 1;
		s->logs_done = 1;
		if (s->gen_high < s->gen_low)
			return amb_err(AMS_EINVAL, "no log generation to copy");
	}
	*gen_low = s->gen_low;
	*gen_high = s->gen_high;
	return 0;
}

void ams_stream_end(ams_stream *s)
{
	if (!s)
		return;
	if (s->in) {
		pthread_mutex_lock(&s->in->mu);
		s->in->stream_active = 0;
		pthread_cond_broadcast(&s->in->cond);
		pthread_mutex_unlock(&s->in->mu);
	}
	free(s);
}

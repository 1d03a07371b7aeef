/*
 * instance.h - the engine's private structures, shared by instance.c
 * (open/close, transactions, group commit, checkpoints, freeze), space.c
 * (page cache, free space, the key index, cells), recovery.c (replay) and
 * backup.c (log roll, streaming backup, truncation).
 *
 * LOCKING
 *   rw   (rwlock)  the key index, the page cache, free space, table list.
 *                  Commits apply under the write lock, readers take the
 *                  read lock.  Never held while waiting for a log flush.
 *   mu   (mutex)   the log buffer, LSNs, flush/roll/checkpoint requests,
 *                  freeze state, counters.  Order: rw before mu.
 *   cond           broadcast on every change a committer, reader or freeze
 *                  may wait for (durability, thaw, space, drained writes).
 *   durwait        the threads waiting for lsn_durable (committers,
 *                  readers, the checkpointer), each on a condition variable
 *                  of its own: a flush wakes those it made durable and, when
 *                  the log is free, one waiter to lead the next flush; a
 *                  failure wakes them all (dur_wake in instance.c).
 *   bg_cond        signalled when the background threads have work (roll,
 *                  log preparation, checkpoint, header refresh, stop);
 *                  kept apart so commits do not wake them for nothing.
 *   hdr_mu         the in-memory database headers and their writes
 *                  (checkpointer, header refresh, ams_backup_complete).
 *
 * One thread at a time writes the log (the one that set `flushing`: a
 * committer leading a group flush, or the flusher thread for rolls); the
 * checkpointer thread is the only one that writes database pages while the
 * instance is open.  Every write passes the freeze gate (gate_enter/exit).
 *
 * WRITE-AHEAD RULE: a page is written to its database only after the log
 * record holding its latest image is durable (page->lsn <= lsn_durable).
 */
#ifndef AMBER_STORE_INSTANCE_H
#define AMBER_STORE_INSTANCE_H

#include <limits.h>
#include <pthread.h>
#include <stdint.h>

#include "amber/store.h"
#include "common/vfs.h"
#include "store/format.h"

/* A page held in memory: changed since the last checkpoint, or being
 * written by it.  Clean pages are not cached (the OS page cache is). */
typedef struct amb_page {
	uint32_t pgno;
	uint8_t dirty;   /* changed since the checkpointer last copied it */
	uint8_t touched; /* changed by the transaction being applied */
	uint8_t unsealed; /* hash/ECC not yet computed (changed, logged as a
	                     delta); sealed before it is written or handed out */
	uint64_t lsn;    /* end LSN of the record with its latest image */
	uint64_t fpi_epoch; /* checkpoint epoch in which its whole content was
	                       last logged (0: never): later changes in the same
	                       epoch may be logged as deltas */
	unsigned char *before; /* content before the transaction being applied
	                          (only when it may be logged as a delta) */
	unsigned char *buf;
	struct amb_page *next; /* hash chain */
} amb_page;

/* A key of a table: where its record's cell lives. */
typedef struct amb_kent {
	uint64_t hash;
	uint32_t pgno;
	uint16_t klen;
	unsigned char key[];
} amb_kent;

typedef struct amb_table {
	char name[AMB_MAX_TABLE + 1];
	int db;
	amb_kent **slots; /* open addressing, power-of-two capacity */
	size_t cap, count;
} amb_table;

typedef struct amb_db {
	char name[64];
	char path[PATH_MAX];
	int fd;
	amb_dbhdr hdr;         /* last header written / read */
	uint32_t npages;       /* pages including not-yet-written extension */
	uint64_t reserved_end; /* bytes reserved with allocate (KEEP_SIZE) */
	uint64_t stamp;        /* modification stamp counter */
	uint32_t *freel;       /* free pages (stack) */
	size_t nfree, capfree;
	uint32_t fill;         /* data page inline inserts go to (0: none) */
	uint32_t *roomy;       /* data pages with at least half free */
	size_t nroomy, caproomy;
	amb_page **cache;      /* pgno -> page */
	size_t ccap, ccount;
} amb_db;

/* A (generation, start LSN) pair, for mapping LSNs to generations. */
typedef struct amb_genmap {
	uint32_t gen;
	uint64_t start_lsn;
} amb_genmap;

struct ams_instance {
	char dir[PATH_MAX];
	char prefix[8];
	amb_vfs *vfs;          /* &cvfs over the vfs the instance was opened with */
	/* counts the changes (pwrite, truncate, allocate) made to each database
	 * file, started and ended, for ams_unchanged_files() */
	amb_vfs cvfs;
	amb_vfs *base_vfs;
	uint64_t mut_start[AMB_MAX_DBS], mut_end[AMB_MAX_DBS]; /* atomic */
	uint64_t quiet_mark[AMB_MAX_DBS]; /* mut_start at ams_quiesce() */
	unsigned char quiet_clean[AMB_MAX_DBS]; /* ... and none in progress then */
	uint32_t quiet_gen;       /* the current log generation at ams_quiesce() */
	char (*unch_path)[PATH_MAX]; /* ams_unchanged_files()'s strings, or NULL */
	size_t unch_cap;
	/* vfs with each write (pwrite, creating open, truncate, allocate, rename,
	 * unlink) passing the background freeze gate on its own, and syncs
	 * outside it: for background sections whose syncs a freeze need not
	 * wait for (checkpoint file, headers) */
	amb_vfs gvfs;
	uint32_t page_size;
	uint64_t log_size;
	uint32_t nsegs;        /* data segments per log file */
	uint64_t ckpt_depth;
	amb_sig sign_log;
	int lockfd;

	int ndb;
	amb_db db[AMB_MAX_DBS];

	amb_table **tables;
	size_t ntables, captables;

	pthread_rwlock_t rw;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	pthread_cond_t bg_cond;  /* the flusher and checkpointer threads wait here */
	struct amb_durwait *durwait; /* threads waiting for lsn_durable (mu) */
	pthread_mutex_t hdr_mu;
	/* amb_headers_store_first() wrote copy 0 of every database's header
	 * and left copy 1 to the next header write (hdr_mu): hdr_half holds
	 * what copy 1 must receive, whatever db[].hdr has become since */
	int hdr_half_pending;
	amb_dbhdr hdr_half[AMB_MAX_DBS];

	/* log buffer: records appended, not yet taken by the flusher */
	unsigned char *lbuf;
	size_t lbuf_len, lbuf_cap;
	uint32_t lbuf_segs;    /* segments promised to the records in lbuf */
	uint64_t lsn_end;      /* LSN after the last appended record */
	uint64_t lsn_written;  /* LSN after the last byte handed to the flusher */
	uint64_t lsn_durable;  /* LSN up to which the log is fsynced */
	uint32_t reserved_segs;/* promised to records in lbuf, in flight, or being applied */

	/* current log file: owned by the flusher */
	int log_fd;
	uint32_t gen;
	uint32_t next_seg;     /* next free data segment of the current file */
	uint64_t gen_create_time;
	uint32_t hdr_synced_gen; /* newest generation whose header is known
	                          * durable (a roll writes it without a sync:
	                          * loghdr_durable in instance.c) */
	int hdr_syncing;         /* loghdr_durable() syncs log_fd (mu) */
	int tmp_fd;            /* prepared next log, -1 if none */
	int tmp_err;           /* last error preparing it (0, AMS_ENOSPC ...) */
	uint32_t gen_oldest;
	uint32_t trunc_below;  /* a recorded backup's truncation not yet done
	                        * (AMS_BACKUP_DEFER_TRUNCATE), 0 = none (mu) */
	amb_genmap *genmap;    /* generations since the checkpoint */
	size_t ngenmap, capgenmap;

	/* flushing: one thread at a time is in a flush's write phase
	 * (flush_cycle); the fdatasyncs of earlier flushes may still run
	 * (syncing), and flushes publish lsn_durable in order (sync_seq
	 * numbers them, sync_pub is the last published) */
	int flushing;
	int syncing;
	uint64_t sync_seq, sync_pub;
	unsigned char *spare;  /* the other log buffer */
	size_t spare_cap;
	/* requests to the flusher thread */
	uint64_t roll_req, roll_done; /* tickets */
	int prep_req;
	int prep_busy;         /* someone is preparing <prefix>tmp.log */
	int prep_syncing;      /* ... and its zeros are written: only syncs left */

	/* checkpoint */
	uint64_t ckpt_lsn;
	uint32_t ckpt_gen;
	uint64_t ckpt_seq;
	uint64_t fpi_epoch;    /* bumped when a checkpoint notes its LSN */
	int ckpt_req;
	int hdr_req;           /* a roll happened: refresh Log Required */
	uint64_t ckpt_done;

	/* freeze gate */
	int freezing, frozen;
	uint64_t freeze_deadline; /* CLOCK_MONOTONIC µs */
	uint64_t freeze_writes;   /* write_ops when frozen */
	uint64_t freeze_t0;       /* CLOCK_MONOTONIC µs: admission stopped */
	int rolling;              /* flushes in their write phase that roll the log */
	int hdr_busy;             /* the checkpointer thread refreshes headers */
	int ckpt_busy;            /* ... runs a checkpoint */
	int ckpt_parked;          /* ... which waits for the quiet to end */
	uint64_t parked_since;    /* CLOCK_MONOTONIC µs: since when */
	uint64_t quiet_until;     /* CLOCK_MONOTONIC µs: no checkpoint page
	                             writes start before (ams_quiesce); 0 none */
	int prep_urgent;          /* a commit waits for the next log file:
	                             its preparation is not held by a quiet */
	int appliers;             /* commits between admission and append */
	uint64_t n_appended;      /* records appended to the log buffer */
	int io_active;            /* gated writes in progress */
	uint64_t write_ops;       /* gated writes completed */
	int stream_active;

	int failed;               /* sticky: an I/O error made writes unsafe */
	int fail_rc;
	char failmsg[512];

	int stop;
	pthread_t flusher, ckpter;
	int threads_started;
	int reserve_used;         /* amber.reserve was spent to shut down / open */

	uint64_t txn_seq;
	uint64_t n_commits, n_flushes, n_ckpts, n_damaged, n_corrected;
};

/* ---- space.c: page cache, free space, index, cells ---- */

amb_page *amb_cache_get(amb_db *db, uint32_t pgno);
amb_page *amb_cache_add(amb_db *db, uint32_t pgno, unsigned char *buf);
void amb_cache_remove(amb_db *db, uint32_t pgno);
void amb_cache_free_all(amb_db *db);

/* Read page pgno (cache first, else disk, verified; single-bit errors are
 * corrected in the returned copy).  buf gets page_size bytes.  *lsn (may be
 * NULL) gets the cached page's LSN or 0.  Caller holds rw. */
int amb_page_read(ams_instance *in, amb_db *db, uint32_t pgno, void *buf, uint64_t *lsn);

/* Verify a page read from disk: checksum (correcting), number. */
int amb_page_verify(ams_instance *in, amb_db *db, uint32_t pgno, void *buf);

amb_table *amb_table_find(ams_instance *in, const char *name);
amb_table *amb_table_add(ams_instance *in, const char *name, int db);
amb_kent *amb_key_find(amb_table *t, const void *key, size_t klen);
int amb_key_set(amb_table *t, const void *key, size_t klen, uint32_t pgno);
void amb_key_del(amb_table *t, const void *key, size_t klen);
void amb_tables_free(ams_instance *in);

int amb_push_u32(uint32_t **arr, size_t *n, size_t *cap, uint32_t v);

/* Rebuild the index and free space of every database by scanning pages. */
int amb_space_scan(ams_instance *in);

/* Cell accessors. */
typedef struct amb_cell {
	unsigned off;  /* offset in the page */
	unsigned len;
	unsigned flags;
	const char *table;
	unsigned tlen;
	const unsigned char *key;
	unsigned klen;
	uint32_t vlen;
	uint32_t first, npages; /* LONG only */
	const unsigned char *val; /* inline only */
} amb_cell;

/* Parse the cells of a data page; calls fn for each; returns AMS_ECORRUPT
 * if the layout is insane. */
int amb_cells_walk(const unsigned char *page, uint32_t page_size,
                   int (*fn)(void *arg, const amb_cell *c), void *arg);

/* Find the cell of (table,key) in a data page.  0 or AMS_ENOTFOUND. */
int amb_cell_find(const unsigned char *page, uint32_t page_size, const char *table,
                  const void *key, size_t klen, amb_cell *out);

/* Read a whole value given its head cell (follows overflow pages). */
int amb_value_read(ams_instance *in, amb_db *db, const amb_cell *c, void **val, size_t *vlen,
                   uint64_t *maxlsn);

uint64_t amb_key_hash(const void *key, size_t klen);

/* A thread waiting until lsn_durable reaches lsn (instance.c, dur_wake). */
typedef struct amb_durwait {
	uint64_t lsn;
	pthread_cond_t cv;
	struct amb_durwait *next;
} amb_durwait;

/* ---- instance.c ---- */

/* Mark the instance failed (sticky) and wake everyone.  Caller holds mu. */
void amb_fail_locked(ams_instance *in, int rc, const char *msg);

/* Freeze gate around every engine write. */
void amb_gate_enter(ams_instance *in);
void amb_gate_exit(ams_instance *in);

uint64_t amb_mono_us(void);

/* Make the current log generation's header durable if no sync of its
 * file has yet (a roll writes it without one).  0 or an AMS code. */
int amb_loghdr_durable(ams_instance *in);

/* Quiesced by ams_quiesce() and its deadline not passed.  Caller holds mu. */
int amb_quiet_locked(ams_instance *in);

/* Write every database header (state etc. already set in db[i].hdr). */
int amb_headers_store(ams_instance *in);
/* The same, each write passing the background freeze gate on its own and
 * the syncs outside it (in->gvfs).  Call with hdr_mu held and outside any
 * gated section. */
int amb_headers_store_gated(ams_instance *in);
/* Like amb_headers_store_gated(), but only copy 0 of each header: the new
 * headers are in force and durable when it returns (amb_dbhdr_load takes
 * the newer copy), and copy 1 is written by the next header write of any
 * kind, first of all (amb_headers_finish, or any amb_headers_store*), so
 * that copy 0 is never rewritten before copy 1 holds the header in force.
 * Call with hdr_mu held and outside any gated section. */
int amb_headers_store_first(ams_instance *in);
/* Write the copy 1 that amb_headers_store_first() left, if any (gated).
 * Call with hdr_mu held and outside any gated section.  0 or an AMS code. */
int amb_headers_finish(ams_instance *in);

/* ---- recovery.c ---- */

/* Where replay reads generations from. */
typedef struct amb_logsrc {
	const char *dir1;     /* generations [gen1_low, gen1_high] (0/0: none) */
	uint32_t gen1_low, gen1_high;
	const char *dir2;     /* generations after those, including <prefix>.log */
	const char *prefix;
} amb_logsrc;

typedef struct amb_replay {
	/* in */
	amb_vfs *vfs;
	uint32_t page_size;
	int ndb;
	int fds[AMB_MAX_DBS];
	const char *dbnames[AMB_MAX_DBS];
	amb_sig sign_log;
	uint32_t start_gen;   /* first generation to read */
	uint64_t start_lsn;   /* first record (UINT64_MAX: the first record that
	                         starts in start_gen) */
	uint64_t until_us;    /* 0: no limit */
	int roll_forward;     /* read dir2 after dir1's range */
	/* out */
	uint32_t end_gen;     /* last generation read */
	uint64_t end_lsn;     /* after the last complete record */
	uint64_t end_create_time; /* create time of end_gen */
	uint64_t max_stamp[AMB_MAX_DBS];
	uint32_t npages[AMB_MAX_DBS];
	uint64_t records, bytes;
	int have_current;     /* dir2's <prefix>.log was read */
	int stopped_until;    /* stopped at until_us */
} amb_replay;

/* Replay the log stream onto the databases (pwrite, no fsync). */
int amb_replay_run(amb_replay *rp, const amb_logsrc *src);

#endif

/**
 * @file store.h
 * @brief libamberstore: an embeddable transactional key-value engine laid out
 * like the Exchange store (ESE), so that amber's backup rules can be shown on
 * a real engine.
 *
 * An **instance** (Exchange: storage group) is one directory holding
 *
 *  - one log stream: `<prefix>.log` (the current generation) and
 *    `<prefix><8 hex digits>.log` (older generations), fixed-size files of
 *    checksummed 4 KiB segments; `<prefix>tmp.log` is the next one, made
 *    ready in advance;
 *  - one checkpoint file `<prefix>.chk`: where recovery starts;
 *  - 1..n databases `NAME.edb`: pages with checksums, a header kept twice.
 *
 * Data model: named tables of key -> value records.  A table lives in one
 * database (chosen when it is created).  Keys are 1..1024 bytes, table names
 * 1..64 printable bytes not starting with '$', values up to about twice the
 * log file size (about 1.9 MiB with the default 1 MiB logs; a transaction's
 * log record must fit in two generations, and ams_txn_put() names the
 * limit when a value exceeds it).
 *
 * Transactions collect puts and deletes and apply them atomically at commit.
 * ams_txn_commit() returns only once the transaction is durable (its log
 * records are fsynced).  Any number of threads may commit at once: their
 * records are flushed together (group commit).  Readers (ams_get,
 * ams_foreach) see exactly the committed transactions: a reader that meets a
 * change whose commit is still being flushed waits for the flush.
 *
 * Crash safety: every change is logged (as whole page images) before any
 * database page is written; on open the engine replays the log from the
 * checkpoint, so every committed transaction survives and no partial one
 * appears.  Recovery itself is idempotent.  An I/O error while writing or
 * syncing the log or databases puts the instance into a failed state in
 * which every later write returns #AMS_EFAILED; it never retries an fsync.
 *
 * Errors: every function returns 0 or a negative code from the list below
 * (never errno).  The calling thread's last error message, naming the file,
 * page or generation involved, is available from ams_errmsg().
 *
 * @section caveats Caveats
 *  - One process opens an instance at a time (an flock on `<prefix>.chk`'s
 *    directory lock file `amber.lock` enforces it: #AMS_ELOCKED).
 *  - Values are kept whole in memory while a transaction is open.
 *  - The format is little-endian only.
 */
#ifndef AMBER_STORE_H
#define AMBER_STORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** @name Return codes
 * Negative, below -31000 so they cannot be mistaken for -errno values. @{ */
#define AMS_OK 0
#define AMS_EINVAL (-31001)    /**< bad argument (name, size, state) */
#define AMS_ENOMEM (-31002)    /**< out of memory */
#define AMS_EIO (-31003)       /**< an I/O call failed; see ams_errmsg() */
#define AMS_ENOSPC (-31004)    /**< no space: the commit was refused, nothing changed */
#define AMS_EFAILED (-31005)   /**< instance failed earlier (I/O error); reopen it */
#define AMS_ECORRUPT (-31006)  /**< damaged page, log segment or header */
#define AMS_ENOTFOUND (-31007) /**< no such key / table / file */
#define AMS_EBADSIG (-31008)   /**< log or database belongs to another instance */
#define AMS_ELOGMISSING (-31009) /**< a log generation recovery needs is missing */
#define AMS_ENOTDB (-31010)    /**< not an amber database / log / checkpoint */
#define AMS_ELOCKED (-31011)   /**< instance is open in another process */
#define AMS_ETIMEDOUT (-31012) /**< freeze deadline passed before thaw */
#define AMS_EBUSY (-31013)     /**< a freeze or backup is already in progress */
#define AMS_EBACKUPDB (-31014) /**< database is a backup copy: use hard recovery */
#define AMS_EVERSION (-31015)  /**< format version not supported */
#define AMS_EEXIST (-31016)    /**< instance or table already exists */
/** @} */

/** Text for a return code (static string). */
const char *ams_strerror(int rc);

/** The calling thread's most recent error message (never NULL). */
const char *ams_errmsg(void);

typedef struct ams_instance ams_instance;
typedef struct ams_txn ams_txn;

/** Options for ams_create(); zero fields take the defaults. */
typedef struct ams_create_opts {
	const char *prefix;           /**< 3 characters, default "E00" */
	uint32_t page_size;           /**< 4096, 8192 (default) or 32768 */
	uint64_t log_size;            /**< bytes, multiple of 4096, >= 64 KiB; default 1 MiB */
	const char *const *databases; /**< file names (no directory), each ending ".edb" */
	int ndatabases;               /**< 1..16; default 1 database "priv1.edb" */
	int nocow;                    /**< btrfs only: @p dir gets the NOCOW attribute
	                               *   (chattr +C) before any file is made in it, so
	                               *   that pages and log sectors are overwritten in
	                               *   place; #AMS_EINVAL on other filesystems, before
	                               *   anything is created */
} ams_create_opts;

/**
 * Create a new, empty instance in directory @p dir (created if missing; it
 * must not already hold an instance).  The databases are created clean.
 * @return #AMS_OK, #AMS_EINVAL, #AMS_EEXIST, #AMS_EIO, #AMS_ENOSPC
 */
int ams_create(const char *dir, const ams_create_opts *opts);

/** Options for ams_open(); zero fields take the defaults. */
typedef struct ams_open_opts {
	const char *prefix;        /**< default: found from the `*.chk` / `*.log` files, else "E00" */
	uint64_t checkpoint_depth; /**< bytes of log between checkpoints, default 8 MiB */
	struct amb_vfs *vfs;       /**< I/O layer (tests); default POSIX */
} ams_open_opts;

/**
 * Open (mount) the instance in @p dir.  If the databases were not shut down
 * cleanly the log is replayed from the checkpoint first (soft recovery).
 * A new log generation is started on every open.
 * @return #AMS_OK; #AMS_ENOTDB, #AMS_EVERSION, #AMS_ECORRUPT (a header or a
 *   log in the needed range is damaged: the message names it),
 *   #AMS_ELOGMISSING (the message names the generation), #AMS_EBADSIG,
 *   #AMS_EBACKUPDB, #AMS_ELOCKED, #AMS_EIO, #AMS_ENOSPC, #AMS_ENOMEM
 */
int ams_open(const char *dir, const ams_open_opts *opts, ams_instance **out);

/**
 * Shut down cleanly: flush the log, write every dirty page, mark the
 * databases "clean shutdown" with Log Required 0-0, and free @p inst.
 * On error the instance is still freed and the databases stay dirty (the
 * next open recovers them).
 * @return #AMS_OK, #AMS_EIO, #AMS_EFAILED
 */
int ams_close(ams_instance *inst);

/**
 * Free @p inst without any further write, as if the process died here
 * (tests use it to simulate a crash inside one process).
 */
void ams_abandon(ams_instance *inst);

/** @name Transactions @{ */

/** Start a transaction.  @return #AMS_OK, #AMS_ENOMEM, #AMS_EFAILED */
int ams_txn_begin(ams_instance *inst, ams_txn **out);

/**
 * Insert or replace @p key in @p table (the table is created in database 0
 * if it does not exist).  The value is copied.
 * @return #AMS_OK, #AMS_EINVAL, #AMS_ENOMEM
 */
int ams_txn_put(ams_txn *txn, const char *table, const void *key, size_t klen,
                const void *val, size_t vlen);

/**
 * Delete @p key from @p table.  Whether it exists is checked at commit.
 * @return #AMS_OK, #AMS_EINVAL, #AMS_ENOMEM
 */
int ams_txn_del(ams_txn *txn, const char *table, const void *key, size_t klen);

/**
 * Create @p table in database @p dbidx (0-based).  Creating a table that
 * exists in the same database is not an error.
 * @return #AMS_OK, #AMS_EINVAL, #AMS_ENOMEM
 */
int ams_txn_create_table(ams_txn *txn, const char *table, int dbidx);

/**
 * Commit: apply every operation atomically and return once durable.
 * The transaction is freed whatever the result.  While the instance is
 * frozen the commit waits for the thaw.
 * @return #AMS_OK; #AMS_ENOTFOUND (a deleted key does not exist: nothing
 *   applied); #AMS_EEXIST (table exists in another database); #AMS_EINVAL
 *   (the transaction cannot fit in two log generations); #AMS_ENOSPC or
 *   #AMS_EIO while reserving log or database space (nothing applied, the
 *   instance goes on); #AMS_ECORRUPT (a page the transaction must change is
 *   damaged: nothing applied); #AMS_EFAILED (the log could not be made
 *   durable: the outcome is unknown until the next open, and the instance
 *   refuses further writes)
 */
int ams_txn_commit(ams_txn *txn);

/** Discard a transaction. */
void ams_txn_abort(ams_txn *txn);

/** @} */

/**
 * Read a committed value.  @p *val is malloc'd (free it); an empty value
 * gives a non-NULL pointer and *vlen 0.
 * @return #AMS_OK, #AMS_ENOTFOUND, #AMS_ECORRUPT, #AMS_EIO, #AMS_ENOMEM
 */
int ams_get(ams_instance *inst, const char *table, const void *key, size_t klen,
            void **val, size_t *vlen);

/** Callback of ams_foreach(); return non-zero to stop (that value is returned). */
typedef int (*ams_foreach_fn)(void *arg, const char *table, const void *key, size_t klen,
                              const void *val, size_t vlen);

/**
 * Call @p fn for every record, tables in bytewise name order, keys in
 * bytewise order within a table.  Sees a consistent committed state.
 * @return #AMS_OK, the callback's non-zero value, #AMS_ECORRUPT, #AMS_EIO
 */
int ams_foreach(ams_instance *inst, ams_foreach_fn fn, void *arg);

/** What ams_info() reports. */
typedef struct ams_info {
	char prefix[8];
	uint32_t page_size;
	uint64_t log_size;
	int ndatabases;
	uint32_t gen_current;    /**< generation of `<prefix>.log` */
	uint32_t gen_checkpoint; /**< generation recovery would start from */
	uint32_t gen_oldest;     /**< oldest log generation on disk */
	uint64_t lsn_durable;    /**< bytes of log stream made durable */
	uint64_t lsn_applied;    /**< bytes of log stream of the transactions
	                              applied (committed or waiting to be durable) */
	uint64_t commits;        /**< transactions committed since open */
	uint64_t flushes;        /**< log flushes (commits/flushes = group size) */
	uint64_t checkpoints;
	uint64_t pages_damaged;  /**< uncorrectable pages met since open */
	uint64_t pages_corrected;/**< single-bit errors corrected since open */
	int frozen;              /**< 1 while frozen */
	uint64_t frozen_since_us;/**< while frozen: CLOCK_MONOTONIC µs at which
	                              ams_freeze() stopped admitting commits */
	int failed;              /**< 1 after a fatal I/O error */
} ams_info;

int ams_info_get(ams_instance *inst, ams_info *info);

/** Absolute path of database @p dbidx (static storage of the instance). */
const char *ams_db_path(ams_instance *inst, int dbidx);

/** @name Backup support @{ */

/** Backup types, as recorded in the database header. */
enum ams_backup_type {
	AMS_BACKUP_FULL = 1,         /**< databases + logs; truncates */
	AMS_BACKUP_INCREMENTAL = 2,  /**< logs since last full/incremental; truncates */
	AMS_BACKUP_DIFFERENTIAL = 3, /**< logs since last full; no truncation */
	AMS_BACKUP_COPY = 4,         /**< like full, touches neither header nor logs */
};
/** OR into the type of ams_backup_complete(): the backup was streamed
 * (recorded as kind 1), otherwise it was a snapshot (kind 2). */
#define AMS_BACKUP_STREAMED 0x100
/** OR into the type of ams_backup_complete(): record the backup in the
 * headers but leave what need not precede a writer's answer to
 * BackupComplete to ams_backup_settle() or ams_truncate_pending():
 *  - the record is durable when ams_backup_complete() returns, but only in
 *    the first of each database header's two copies (one fdatasync per
 *    database, not two); the newer copy is the one in force after a
 *    crash.  The second copy is written by ams_backup_settle(),
 *    ams_truncate_pending(), or else the instance's next header write of
 *    any kind, before anything else it writes;
 *  - the log truncation the backup allows is left to ams_truncate_pending().
 *    If that is never called, the next truncating backup deletes those logs
 *    as well. */
#define AMS_BACKUP_DEFER_TRUNCATE 0x200

/**
 * Close the current log generation and start a new one.  *new_gen (may be
 * NULL) receives the new current generation; everything committed before
 * the call is in generations < *new_gen.  It returns once the file for the
 * generation after that is prepared as well, so that an ams_freeze() right
 * after it does not wait for that preparation.  While quiesced
 * (ams_quiesce() before the roll, as a writer's prepare-snapshot does) that
 * preparation, unless already under way, waits for the quiet's end instead:
 * neither the roll nor the freeze waits for it, and the generations the
 * roll archived count as unchanged (ams_unchanged_files()).
 * @return #AMS_OK, #AMS_EIO, #AMS_EFAILED, #AMS_ENOSPC
 */
int ams_log_roll(ams_instance *inst, uint32_t *new_gen);

/**
 * Quiesce: no checkpoint starts writing database pages, no header refresh
 * starts, and no preparation of the next log file (its zeros and syncs)
 * starts unless a commit waits for it, for at most @p timeout_ms, or until
 * ams_thaw() or ams_quiesce(inst, 0); what the checkpointer thread is
 * writing is let finish first (at most 1 s).  A snapshot prepared meanwhile (after
 * its volumes were synced) then has no database pages to write back while
 * writes are held.  Commits go on: the log holds every change, and only the
 * checkpoint waits.  The engine ends the quiet by itself at the timeout,
 * whoever dies.
 * @return #AMS_OK, #AMS_EINVAL (NULL instance)
 */
int ams_quiesce(ams_instance *inst, unsigned timeout_ms);

/**
 * While frozen after an ams_quiesce(): the absolute paths of the files that
 * nothing changed since that call, at most @p max of them, into @p paths
 * (strings of the instance, valid until the next call or ams_close()): the
 * database files that no write or truncation has started to change since
 * (a space reservation changes no byte), then the archived log files of the
 * generations before the one current at the quiesce (or at the end of an
 * ams_log_roll() called during the quiet), newest first.  Nothing changes
 * them until the thaw.  A provider that copied the volume after the
 * quiesce (and that roll) need not look at them again while writes are
 * held.
 * @return how many (0 when not frozen, or not quiesced)
 */
size_t ams_unchanged_files(ams_instance *inst, const char **paths, size_t max);

/**
 * Freeze: once a log roll in progress, and the zeros of a preparation of
 * the next log file in progress, are written (commits are admitted
 * meanwhile), stop admitting commits, let the writes already in progress
 * end, then hold new commits and all writes to the database, log,
 * checkpoint and header files.  Nothing is written for the freeze: a
 * commit whose record was not yet written to the log file (still in the
 * log buffer, or still being applied) is held like a later one (not in
 * the snapshot, not acknowledged before the thaw), so a snapshot taken
 * while frozen has no fresh log data to write back.  Reads go on (a read
 * of a record such a commit changed waits for it, as a read waits for any
 * commit not yet durable).  It waits for writes in progress, not for
 * fsyncs: a snapshot of the files sees what was written, and a commit whose
 * fsync was running is acknowledged when it returns, during the freeze.
 * The engine thaws itself @p timeout_ms after the freeze began even if
 * ams_thaw() is never called.
 * @return #AMS_OK, #AMS_EBUSY (already frozen / backup running), #AMS_EFAILED
 */
int ams_freeze(ams_instance *inst, unsigned timeout_ms);

/**
 * Thaw (and end an ams_quiesce()).  @return #AMS_OK if writes were held
 *   from ams_freeze() until now,
 *   #AMS_ETIMEDOUT if the deadline thawed the instance first (a snapshot
 *   taken in between may not be consistent), #AMS_EINVAL if not frozen.
 */
int ams_thaw(ams_instance *inst);

/**
 * ams_thaw(), except that the quiet of an earlier ams_quiesce() goes on for
 * at most @p quiet_ms more (0: it ends, as with ams_thaw()), or until
 * ams_quiesce(inst, 0): a writer whose snapshot is still being copied and
 * verified keeps the checkpoint's page writes, the header refresh and the
 * preparation of the next log file off the disk until BackupComplete, so
 * that they neither slow the copy nor delay the header write recording the
 * backup.  Writes are released as by ams_thaw(); commits go on, and one
 * that needs the next log file has it prepared at once (as during any
 * quiet).  The engine ends
 * the quiet by itself at the deadline, whoever dies; and a thaw ends it
 * anyway once the checkpointer has waited 5 s for quiets one after the
 * other (shadows made back to back, none followed by BackupComplete).
 * @return as ams_thaw()
 */
int ams_thaw_quiet(ams_instance *inst, unsigned quiet_ms);

/**
 * Record a verified backup in every database header and, for full and
 * incremental backups, delete log generations that neither recovery nor the
 * backup chain needs.
 *
 * @p type is an ams_backup_type, ORed with #AMS_BACKUP_STREAMED for a
 * streamed backup (its last generation is complete: ams_stream_logs()
 * rolled the log).  Without it the backup is a snapshot (shadow copy): it
 * copied the logs from the checkpoint generation up to the generation that
 * was current at the snapshot, whose copy is only a prefix of what that
 * generation holds later.  So:
 *  - @p gen_high must be below the current generation for a streamed
 *    backup; a snapshot's may equal it (only a later one is refused);
 *  - deleted are the generations below min(X, the checkpoint generation,
 *    @p keep_from), where X is @p gen_low for a full, @p gen_high + 1 for a
 *    streamed incremental and @p gen_high for a snapshot incremental (whose
 *    last generation must stay whole for the next incremental and for
 *    roll-forward).  Pass keep_from = 0 for no extra limit;
 *  - @p gen_low = 0 asks, for an INCREMENTAL or DIFFERENTIAL, to derive the
 *    first generation from the header (the chain rule): an incremental
 *    starts at the gen_high of the previous full or incremental (the newer
 *    one) if that was a snapshot and at its gen_high + 1 if it was
 *    streamed; a differential starts from the previous full in the same
 *    way.  ams_stream_begin() uses the same rule.
 * COPY changes nothing; DIFFERENTIAL records itself and deletes nothing;
 * nothing is deleted while a streaming backup runs.
 * @return #AMS_OK; #AMS_EINVAL (unknown type, bad range, gen_high past the
 *   current generation, gen_low = 0 for a full or copy, or gen_low = 0 and
 *   no full backup is recorded: the message says a full backup is needed),
 *   #AMS_EIO, #AMS_EFAILED
 */
int ams_backup_complete(ams_instance *inst, int type, uint32_t gen_low, uint32_t gen_high,
                        uint64_t time_sec, uint32_t keep_from);

/**
 * The second header copies left by ams_backup_complete() with
 * #AMS_BACKUP_DEFER_TRUNCATE: written and fdatasynced (nothing to do when
 * none is left).  A failure fails the instance, as any failed header write
 * does.
 * @return #AMS_OK; #AMS_EIO; #AMS_EINVAL
 */
int ams_backup_settle(ams_instance *inst);

/**
 * What ams_backup_complete() with #AMS_BACKUP_DEFER_TRUNCATE left: first
 * the second header copies (ams_backup_settle()), then the truncation:
 * delete the archived logs below the newest
 * such backup's limit, oldest first (as ams_backup_complete() would have).
 * Nothing to do, or a streaming backup running (it keeps every log; the
 * truncation stays pending): #AMS_OK with nothing deleted.  *first and
 * *end (may be NULL) receive the generations deleted, [*first, *end)
 * (equal when none).
 * @return #AMS_OK; #AMS_EIO (the header copies could not be written: the
 *   instance is failed and nothing is deleted; or a log could not be
 *   deleted: it and the newer ones stay, and the truncation stays pending);
 *   #AMS_EINVAL
 */
int ams_truncate_pending(ams_instance *inst, uint32_t *first, uint32_t *end);

/** Streaming (online) backup reader: the NTBackup path. */
typedef struct ams_stream ams_stream;

/**
 * Begin a streaming backup of every database.  While it runs, logs are not
 * truncated and a freeze is refused (#AMS_EBUSY).  An incremental or
 * differential stream copies only logs, starting where the chain rule of
 * ams_backup_complete() says.
 * @return #AMS_OK, #AMS_EINVAL, #AMS_EBUSY, #AMS_ENOMEM, #AMS_EFAILED,
 *   #AMS_ENOTFOUND (incremental/differential without a recorded full
 *   backup), #AMS_ELOGMISSING (a log it needs was already deleted)
 */
int ams_stream_begin(ams_instance *inst, int type, ams_stream **out);

/**
 * Read the next page through the engine, verified (single-bit errors are
 * corrected in the copy and counted; the page is retried 16 times before
 * damage is reported).  Data pages come first, database by database, then
 * for each database its two header pages (pgno 0 and 1) marked as a backup
 * copy whose Log Required range is completed by ams_stream_logs().
 * Call ams_stream_logs() before the header pages can be returned.
 * @p buf must hold page_size bytes.
 * @return 1 (a page), 0 (end), #AMS_ECORRUPT (message names database and
 *   page), #AMS_EIO
 */
int ams_stream_next(ams_stream *s, int *dbidx, uint32_t *pgno, void *buf);

/**
 * Roll the log and give the generations [*gen_low, *gen_high] that make
 * the streamed copy consistent (for an incremental/differential stream: the
 * logs since the previous backup).  Their files are `<prefix>%08X.log` in
 * the instance directory and are kept until ams_stream_end().
 */
int ams_stream_logs(ams_stream *s, uint32_t *gen_low, uint32_t *gen_high);

/** End the stream (frees it). */
void ams_stream_end(ams_stream *s);

/** @} */

/** @name Recovery @{ */

/**
 * Soft recovery of a closed instance: replay the log and leave every
 * database in clean shutdown.  Same errors as ams_open().
 */
int ams_recover(const char *dir, const ams_open_opts *opts);

/**
 * Hard recovery after a restore: read @p restore_env (see
 * docs/restore-env.md), replay the backup's logs, then (unless the file says
 * `roll_forward=no`) every newer log of the instance in unbroken sequence,
 * stopping before the first transaction after `until` if set; leave the
 * databases clean and record the outcome in restore.env.
 * @return #AMS_OK, #AMS_EINVAL (restore.env malformed: message names the
 *   line), #AMS_ELOGMISSING, #AMS_ECORRUPT, #AMS_EBADSIG, #AMS_EIO
 */
int ams_hard_recover(const char *restore_env, const ams_open_opts *opts);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* AMBER_STORE_H */

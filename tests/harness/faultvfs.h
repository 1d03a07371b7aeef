/*
 * faultvfs.h - a test amb_vfs that injects I/O errors and records every
 * mutating operation so that the disk states a power loss could leave
 * behind can be rebuilt (in the spirit of SQLite's src/test6.c crash VFS
 * and its sqlite3_io_error_pending countdown).
 *
 * It wraps another amb_vfs (normally amb_vfs_posix()) and forwards every
 * call to it.  All calls are serialised by one mutex that is held across
 * the forwarded call and its recording, so the recorded order is the order
 * in which the operations really happened, even with several engine
 * threads.
 *
 * 1. FAULT INJECTION
 *
 *    Every call is counted by kind (FV_WRITE, FV_SYNC, ...).  A test first
 *    runs a workload with no fault to learn how many calls of a kind it
 *    makes, then loops N over 1..count with faultvfs_fail(fv, kind, N, err,
 *    persistent): the Nth call of that kind (counted from the last
 *    faultvfs_reset_counts()) fails with -err without reaching the disk,
 *    and, when persistent, every later call of that kind fails too.
 *    faultvfs_fail_filter() restricts faults to paths containing a string.
 *
 * 2. TRACE RECORDING AND POWER-LOSS IMAGES
 *
 *    Once faultvfs_trace_start() is called, every successful mutating
 *    operation on a file below the root directory is appended to an
 *    in-memory trace: file creation, open with O_TRUNC, pwrite (with a copy
 *    of its data), truncate, allocate, rename, unlink, sync of a file,
 *    sync_dir, plus the test's own markers (faultvfs_mark()).  Files are
 *    tracked as inodes (descriptor -> inode, name -> inode), so writes
 *    through a descriptor follow the file across renames.
 *
 *    Sync point k (0-based) is the k-th sync or sync_dir in the trace;
 *    sync point nsyncs means "after the last recorded operation".
 *    faultvfs_materialise() writes into an empty directory the disk state a
 *    power loss just before sync point k could leave:
 *
 *    File data: each file holds its content as of its last completed sync
 *      (sync and datasync are treated alike), plus, in trace order, each
 *      data operation issued since then (write, truncate, the truncation of
 *      open(O_TRUNC)) applied or not according to the variant.  allocate
 *      reserves space without changing the size (vfs.h: KEEP_SIZE), so it
 *      changes nothing in an image.  Writes are split into 512-byte sectors (absolute file
 *      offsets); a torn write applies some sectors and not others.  A write
 *      that lands beyond the end of the file extends it (the gap reads as
 *      zeros) if any of its sectors past the end is applied.
 *
 *    Directory operations (create, rename, unlink) follow POSIX strictly:
 *      an operation becomes durable only when its directory is synced with
 *      sync_dir (a file fsync does NOT make its name durable).  At the
 *      crash a PREFIX of the not-yet-durable directory operations is
 *      applied (all, none, or a random length, per the variant): file
 *      systems journal metadata operations in order, so an image in which
 *      a later rename survives but an earlier create does not cannot
 *      happen, and modelling it would only produce false alarms.  Strict
 *      POSIX is chosen over "immediately durable" because that is the
 *      contract the engine's durable-write helper (durable.h) is written
 *      against, and ext4/xfs without a directory fsync really can lose a
 *      fresh name.  FV_IMMEDIATE_DIROPS switches to the lenient model
 *      (every directory operation durable at once), to tell "forgot a
 *      directory fsync" apart from other bugs.
 *
 *    Variants:
 *      FV_CRASH_NONE    no unsynced operation applied (the classic "drop
 *                       everything since the last fsync");
 *      FV_CRASH_ALL     every operation applied (the process died, the
 *                       kernel wrote everything);
 *      FV_CRASH_RANDOM  a seeded random mix: each unsynced write is applied
 *                       whole, dropped whole, or torn per sector; each
 *                       truncate applied or not; a random prefix
 *                       of the pending directory operations;
 *      FV_CRASH_GARBAGE like FV_CRASH_RANDOM, and in addition one of the
 *                       unsynced sectors is half written: its first 256
 *                       bytes new data, the rest random garbage.
 *
 *    Files that already exist when tracing starts (and files first met
 *    later that were created outside the vfs) are taken as durable with
 *    the content they have when first seen.
 */
#ifndef AMBER_TESTS_FAULTVFS_H
#define AMBER_TESTS_FAULTVFS_H

#include <stddef.h>
#include <stdint.h>

#include "common/vfs.h"

typedef struct faultvfs faultvfs;

/* Kinds of calls, for counting and fault injection. */
enum fv_kind {
	FV_WRITE = 0,       /* pwrite */
	FV_SYNC,            /* sync of a file (fsync or fdatasync) */
	FV_ALLOCATE,        /* allocate (space reservation) */
	FV_OPEN_CREATE,     /* open with O_CREAT */
	FV_RENAME,          /* rename */
	FV_SYNC_DIR,        /* sync_dir */
	FV_TRUNCATE,        /* truncate */
	FV_UNLINK,          /* unlink */
	FV_READ,            /* pread */
	FV_OPEN,            /* open without O_CREAT */
	FV_NKINDS
};

/* Name of a kind ("write", "sync", ...). */
const char *faultvfs_kind_name(enum fv_kind kind);

/* Crash variants of faultvfs_materialise(). */
enum fv_crash {
	FV_CRASH_NONE = 0,
	FV_CRASH_ALL,
	FV_CRASH_RANDOM,
	FV_CRASH_GARBAGE,
};

/* Flags of faultvfs_new(). */
#define FV_IMMEDIATE_DIROPS 0x1 /* directory operations durable at once */
/*
 * An injected sync failure also undoes, on the real file, every write made
 * to that file (by path) since its last successful sync: the data never
 * reached the disk.  This is what Linux does after a writeback error (the
 * error is reported once, the pages are marked clean, and a retried fsync
 * returns 0: "fsyncgate"), seen after the page cache was dropped.  An engine
 * that retries fsync and carries on then visibly loses acknowledged data.
 * Costs one pread per pwrite.
 */
#define FV_LOSSY_SYNC 0x2

/*
 * New layer over @p base (NULL: amb_vfs_posix()).  Files below directory
 * @p root (NULL: none) are traced once faultvfs_trace_start() is called.
 * Returns NULL on allocation failure.
 */
faultvfs *faultvfs_new(const char *root, amb_vfs *base, int flags);
void faultvfs_free(faultvfs *fv);

/* The table to pass as ams_open_opts.vfs. */
amb_vfs *faultvfs_vfs(faultvfs *fv);

/* --- fault injection --------------------------------------------------- */

/*
 * Fail the @p nth (1-based) call of @p kind counted from the last
 * faultvfs_reset_counts() with -@p err (ENOSPC, EIO, ...); when
 * @p persistent, every later call of that kind fails too.  Replaces any
 * earlier fault.  The failed call does not reach the disk.
 */
void faultvfs_fail(faultvfs *fv, enum fv_kind kind, uint64_t nth, int err, int persistent);

/* Only count and fail calls whose path contains @p substr (NULL: any
 * path).  Calls on descriptors use the file's current name.  Calls that do not
 * match are not counted. */
void faultvfs_fail_filter(faultvfs *fv, const char *substr);

/* Remove the fault (counts are kept). */
void faultvfs_clear(faultvfs *fv);

/* Calls of @p kind since the last reset (failed ones included). */
uint64_t faultvfs_count(faultvfs *fv, enum fv_kind kind);
void faultvfs_reset_counts(faultvfs *fv);

/* Number of calls failed by injection since faultvfs_fail(). */
uint64_t faultvfs_fired(faultvfs *fv);

/* Description of the first injected failure since faultvfs_fail() ("sync
 * of priv1.edb (call 7): Input/output error"), "" if none fired. */
const char *faultvfs_fired_desc(faultvfs *fv);

/* Path of the file of the first injected failure ("" if none).  Paths of
 * descriptors follow renames made through the layer. */
const char *faultvfs_fired_path(faultvfs *fv);

/* Calls of @p kind that SUCCEEDED after the first injected failure (to
 * check, e.g., that no fsync is retried after a failed one). */
uint64_t faultvfs_count_after_fault(faultvfs *fv, enum fv_kind kind);

/* FV_LOSSY_SYNC: writes undone by injected sync failures so far. */
uint64_t faultvfs_undone_writes(faultvfs *fv);

/* --- trace recording --------------------------------------------------- */

/* Start recording (snapshots every file under root as durable). */
int faultvfs_trace_start(faultvfs *fv);
/* Stop recording (the trace is kept). */
void faultvfs_trace_stop(faultvfs *fv);

/*
 * Append a marker to the trace; returns the number of sync points recorded
 * before it: the marker precedes sync point k iff the returned value is
 * <= k.  So a commit marked right after it returned must be present in
 * every image of a sync point k >= that value.
 */
size_t faultvfs_mark(faultvfs *fv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sync points recorded so far. */
size_t faultvfs_nsyncs(faultvfs *fv);
/* Operations recorded so far (markers included). */
size_t faultvfs_trace_len(faultvfs *fv);
/* Bytes of write data held by the trace. */
size_t faultvfs_trace_bytes(faultvfs *fv);

/* "sync priv1.edb", "sync_dir ." ... for sync point k (for reports). */
void faultvfs_sync_desc(faultvfs *fv, size_t k, char *buf, size_t size);

/* Print the trace around sync point k (for debugging a failure). */
void faultvfs_dump(faultvfs *fv, size_t k, int before, int after);

/*
 * Write into @p dstdir (created if missing; it must be empty) the disk
 * state a power loss just before sync point @p k (0..nsyncs) could leave,
 * for @p variant and @p seed (ignored by NONE and ALL).  Returns 0 or
 * -errno.  Calls for increasing k are cheap (the replay state is kept).
 */
int faultvfs_materialise(faultvfs *fv, size_t k, enum fv_crash variant, uint64_t seed,
                         const char *dstdir);

/* Statistics of the last faultvfs_materialise(): unsynced writes, torn
 * ones, pending directory operations and how many were applied. */
typedef struct fv_image_stats {
	size_t files;
	size_t pending_writes, applied_writes, torn_writes, garbage_sectors;
	size_t pending_dirops, applied_dirops;
} fv_image_stats;
void faultvfs_image_stats(faultvfs *fv, fv_image_stats *out);

/* --- helpers for tests ------------------------------------------------- */

/* rm -rf @p path (no error if missing).  Returns 0 or -errno. */
int faultvfs_rmtree(const char *path);

/* A fresh directory for test files: $AMBER_TEST_TMPDIR, else /dev/shm if
 * usable, else $TMPDIR, else /tmp; "<base>/<tag>.XXXXXX".  Returns a
 * malloc'd path or NULL. */
char *faultvfs_tmpdir(const char *tag);

/* --- the oracle ---------------------------------------------------------
 *
 * The in-memory version of the oracle of the design (section 7): which
 * transactions were begun, which were acknowledged and when, and what they
 * put and deleted.  Keys are put at most once, and deleted at most once, by
 * a transaction that began after the put was acknowledged.
 * fv_oracle_check() reads an instance with ams_foreach() and decides
 * whether what it holds is a correct outcome:
 *   - every transaction acknowledged at a point <= @p point is fully
 *     present;
 *   - every transaction refused ("nothing applied") is absent;
 *   - every other begun transaction is fully present or fully absent;
 *   - nothing else exists (tables starting with '$' are ignored).
 * All functions are thread safe.
 */

struct ams_instance;
typedef struct fv_oracle fv_oracle;

fv_oracle *fv_oracle_new(void);
void fv_oracle_free(fv_oracle *o);

/* A new transaction (returns its number, from 0). */
int fv_oracle_begin(fv_oracle *o);
/* Record a put of a fresh key (-1 if the key was put before). */
int fv_oracle_put(fv_oracle *o, int tx, const char *table, const void *key, size_t klen,
                  const void *val, size_t vlen);
/* Record a delete (-1 unless the key's put is acknowledged and the key was
 * not deleted yet). */
int fv_oracle_del(fv_oracle *o, int tx, const char *table, const void *key, size_t klen);
/* The commit returned success; @p point: see fv_oracle_check(). */
void fv_oracle_ack(fv_oracle *o, int tx, size_t point);
/* The commit reported that nothing was applied (or was never requested). */
void fv_oracle_refused(fv_oracle *o, int tx);
/* Choose (pseudo-randomly from @p rnd) an acknowledged key nobody deleted
 * or chose yet, and reserve it for deletion.  Returns 0, or -1 if none.
 * @p table needs FV_TABLE_BUF bytes, @p key 1024. */
#define FV_TABLE_BUF 65
int fv_oracle_pick_deletable(fv_oracle *o, uint64_t rnd, char *table, void *key, size_t *klen);
size_t fv_oracle_ntxns(fv_oracle *o);
size_t fv_oracle_nacked(fv_oracle *o);

typedef struct fv_check {
	size_t records;     /* records read */
	size_t required;    /* transactions that had to be present */
	size_t applied;     /* transactions found applied */
	size_t absent;      /* transactions found absent */
	uint64_t fingerprint; /* of the whole content, to compare two reads */
} fv_check;

/*
 * Read @p inst and check it.  Returns 0 if the content is a correct
 * outcome, 1 if not (@p msg says why: the transaction, its state, the key),
 * or an AMS_* code from ams_foreach().
 */
int fv_oracle_check(fv_oracle *o, struct ams_instance *inst, size_t point, fv_check *res,
                    char *msg, size_t msgsize);

#endif

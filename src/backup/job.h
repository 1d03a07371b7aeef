/*
 * job.h - what the backup, verify and restore code share: the job being
 * run, progress on a terminal, the requestor's event log, and the writer
 * plug-ins.
 *
 * A writer plug-in is amber's knowledge of one verifier name from the
 * writer metadata ("amber-store", storeplug.c; "none" is the generic one,
 * filesplug.c: files copied and hashed, no deeper check).  A writer declares its verifier and its
 * restore method at registration, so the backup document says which
 * plug-in verifies and recovers its files even when the writer is gone
 * (offline restore).
 */
#ifndef AMBER_BACKUP_JOB_H
#define AMBER_BACKUP_JOB_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "amber/proto.h"
#include "backup/repo.h"

/* Requestor event IDs (docs/protocol.md "Event IDs", 5000: backups).
 * Stable: a number is never reused for another meaning. */
enum bk_event_code {
	BK_EV_BACKUP_STARTED = 5001,
	BK_EV_BACKUP_SNAPSHOT = 5002,
	BK_EV_BACKUP_COPIED = 5003,
	BK_EV_BACKUP_VERIFIED = 5004,
	BK_EV_BACKUP_VERIFY_FAILED = 5005,
	BK_EV_BACKUP_RECORDED = 5006,
	BK_EV_BACKUP_FAILED = 5007,
	BK_EV_BACKUP_REFUSED = 5008,
	BK_EV_VERIFY_STARTED = 5010,
	BK_EV_VERIFY_OK = 5011,
	BK_EV_VERIFY_FAILED = 5012,
	BK_EV_RESTORE_STARTED = 5020,
	BK_EV_RESTORE_LAID = 5021,
	BK_EV_RESTORE_RECOVERED = 5022,
	BK_EV_RESTORE_FAILED = 5023,
	BK_EV_PRUNED = 5030,
};

/* Progress on a terminal: "label: 1.2 GiB of 3.4 GiB, 310 MiB/s, 7 s left". */
typedef struct bk_progress {
	bool on;               /* stderr is a terminal and not --quiet */
	const char *label;
	uint64_t total, done;
	uint64_t t0_ms, last_ms;
} bk_progress;

void bk_progress_begin(bk_progress *p, bool on, const char *label, uint64_t total);
void bk_progress_add(void *p, uint64_t bytes);   /* a bk_progress_fn */
void bk_progress_end(bk_progress *p);

typedef struct bk_job {
	bk_repo *repo;
	char id[BK_ID_BUF];
	int bdirfd;            /* REPO/backups/ID, or -1 */
	json_t *doc;           /* the backup document being built or read */
	FILE *err;             /* messages for people */
	bool quiet;
	bk_progress prog;
	json_t *checked;       /* path -> bk_pagecheck results of the databases whose
	                          pages were checked while copied (bk_add_files), or
	                          NULL; not part of the document */
} bk_job;

/*
 * The check of a database's pages on the bytes being copied into the
 * backup (a bk_check_fn): every whole page as amb_db_check() checks it
 * (amb_page_check: hash and ECC, page number, type, layout), a partial
 * last page is damage.  Results go to j->checked under the file's path.
 */
typedef struct bk_pagecheck {
	uint32_t page_size;
	uint64_t pages, damaged, corrected;
	uint64_t first_damaged;    /* UINT64_MAX: none */
	char first_why[256];
	unsigned char *scratch;    /* page_size bytes */
} bk_pagecheck;

void bk_pagecheck_chunk(void *pc, const unsigned char *buf, size_t len, uint64_t off);
/* Record pc's results in j->checked under rel (the file's path in the
 * backup): the verifier then takes them instead of reading the database
 * again (storeplug.c, copied_db_check).  0, or -ENOMEM. */
int bk_checked_put(bk_job *j, const char *rel, const bk_pagecheck *pc);

/* A job on repo with nothing open yet (bdirfd -1). */
void bk_job_init(bk_job *j, bk_repo *repo, FILE *err, bool quiet);

/* "1.5 GiB" */
void bk_human(uint64_t bytes, char *out, size_t n);

/* A writer's folder inside a backup's data/: "<name>.<first 8 hex digits
 * of its instance>" (wdoc is the writer's entry of the document). */
void bk_writer_folder(json_t *wdoc, char *out, size_t n);

/* One line into REPO/events.log and, unless quiet, nothing else. */
void bk_event(bk_job *j, int code, const char *severity, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* "amber: ..." on j->err. */
void bk_msg(bk_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A file bk_precopy copied into the backup before the shadow was made:
 * bk_add_files() records it (source: where it was read) instead of
 * copying the request's src_path. */
typedef struct bk_precopied {
	uint64_t bytes;
	char hex[65];
	const char *source;
} bk_precopied;

/* One file for bk_add_files(): the file at src_path is copied into the
 * backup as data/<writer_dir>/<store_name>.  page_size not 0: it is an
 * amber-store database whose pages are checked on the bytes copied
 * (bk_pagecheck; the results in j->checked).  pre not NULL: the file is
 * already in the backup (bk_precopy_match()). */
typedef struct bk_file_req {
	const char *component;   /* NULL or "" for none */
	const char *role;        /* "database", "checkpoint", "log", ... */
	const char *src_path;
	const char *store_name;
	const char *target;
	uint32_t page_size;
	const char *root;        /* NULL, or the file-set directory that target
	                            is below (the generic plug-in) */
	const bk_precopied *pre;
} bk_file_req;

/* How many files bk_add_files() copies at once.  A backup of many small
 * files (an incremental's logs) waits mostly on each file's read from a
 * cold disk and its fsync; several in flight overlap those waits. */
#define BK_ADD_FILES_PARALLEL 4

/*
 * Copy the n files of reqs into the backup, up to BK_ADD_FILES_PARALLEL at
 * a time, and append {"writer","component","role","path","target",
 * "source","size","sha256"} for each to doc.files in the order of reqs,
 * whichever copy ends first.  Once a copy fails no further one starts;
 * the error reported is the one of the first failed file in reqs' order.
 * 0, or 1 with err set (files already copied stay in the folder, which is
 * incomplete until the backup is recorded).
 */
int bk_add_files(bk_job *j, const char *writer_dir, const char *writer,
                 const bk_file_req *reqs, size_t n, char *err, size_t errlen);

/*
 * PRECOPY: files that their writer never writes again once they exist (an
 * amber-store's archived logs) may be copied into the backup from the live
 * volume while amberd makes the shadow, instead of from the shadow after
 * it.  bk_precopy_start() starts copying them in the background
 * (BK_ADD_FILES_PARALLEL at a time, hashed as bk_add_files() does; the
 * fstat of each source is kept; each copy's writeback is started, its
 * fsync waits until the shadow is made).  Once the shadow is made,
 * bk_precopy_stop() lets no further copy start and waits for those in
 * progress, and bk_precopy_sync_start() fsyncs the copies, several at
 * once.  bk_precopy_match() then accepts (once fsynced) a precopied
 * file only when the shadow's file is the same file, untouched: same inode
 * number, size, modification and change times (a btrfs snapshot keeps
 * inode numbers; with another provider nothing matches and every file is
 * copied from the shadow).  bk_precopy_discard() deletes from the backup what was copied
 * but not matched (the copy from the shadow then takes its place).  A
 * precopy that fails only leaves its file to the copy from the shadow.
 * Precopied files are verified like any other file of the backup.
 */
typedef struct bk_precopy bk_precopy;

/* reqs' src_path are live files, store_name their names in the backup;
 * only those two fields are used (and copied).  0 or -errno (nothing
 * started). */
int bk_precopy_start(bk_job *j, const char *writer_dir, const bk_file_req *reqs, size_t n,
                     bk_precopy **out);
/* finish: wait until every file was copied, not only those in progress */
void bk_precopy_stop(bk_precopy *p, bool finish);
/* After bk_precopy_stop(): start fsyncing every file copied whole, several
 * at once on threads of its own, while the caller reads the shadow; the
 * first bk_precopy_match() waits for them.  Without it (or when no thread
 * starts) bk_precopy_match() fsyncs the file it matches. */
void bk_precopy_sync_start(bk_precopy *p);
/* The precopied file that is stored as store_name, when shadow_path is the
 * same untouched file; NULL otherwise.  After bk_precopy_stop(). */
const bk_precopied *bk_precopy_match(bk_precopy *p, const char *store_name,
                                     const char *shadow_path);
/* Delete the precopied files not matched; how many were matched. */
size_t bk_precopy_discard(bk_precopy *p);
/* Stop (if not yet), then free; the files stay. */
void bk_precopy_free(bk_precopy *p);

/* Check one file of the backup against the manifest: listed, a regular
 * file inside the backup, and with hash its SHA-256 and size re-read (else
 * only the size from fstat).  0 ok, 1 mismatch/missing (err says which). */
int bk_check_file(bk_job *j, json_t *manifest, json_t *file, bool hash, char *err,
                  size_t errlen);

/* bk_check_file() for every file of j->doc (the manifest lists exactly
 * those files); the first problem in err.  0 or 1. */
int bk_verify_files(bk_job *j, bool hash, char *err, size_t errlen);

/* fsync the backup's folders (each writer's, data/, the backup's own, and
 * REPO/backups), so the names of the copied files and of the backup's
 * folder are durable before the manifest that lists them is written and
 * before the verdict.  0, or 1 with err set. */
int bk_sync_dirs(bk_job *j, char *err, size_t errlen);

/* Backup types by name. */
amb_backup_type bk_type_parse(const char *s);

/* ---- the generic plug-in, verifier "none" (filesplug.c) ---------------- */

/* The distinct file-set directories of md's components (comp: only that
 * one; NULL or "": all), at most max of them: where the shadow must reach.
 * 0, or 1 with err set. */
int bk_files_roots(const amb_writer_md *md, const char *comp, char (*roots)[PATH_MAX],
                   size_t max, size_t *n, char *err, size_t errlen);

/* Where an original path appears in the shadow set (ctx), or NULL. */
typedef const char *(*bk_map_fn)(void *ctx, const char *path, char *out, size_t n);

/*
 * Snapshot backup of a generic writer: every regular file of the selected
 * components' file sets, as map finds them in the shadow, copied and
 * hashed; fills wdoc ("roots", "components").  0, or 1 with err set.
 */
int bk_files_backup(bk_job *j, json_t *wdoc, const amb_writer_md *md, const char *comp,
                    bk_map_fn map, void *ctx, char *err, size_t errlen);

/* Verify a generic writer's copies in the backup (read back, SHA-256
 * against the manifest); sets "success" and "message" of each component in
 * wdoc.  0 when all passed, 1 (err names the first problem). */
int bk_files_verify(bk_job *j, json_t *wdoc, char *err, size_t errlen);

/* ---- the amber-store plug-in (storeplug.c) ----------------------------- */

/* Where an amber-store writer keeps its instance, from its metadata. */
typedef struct bk_store_loc {
	char dir[4096];
	char prefix[8];
	int ndb;
	char dbs[16][64];      /* "<component>.edb" */
	char comps[16][AMB_NAME_BUF];
} bk_store_loc;

int bk_store_loc_from_md(const amb_writer_md *md, bk_store_loc *loc, char *err, size_t errlen);

/*
 * Snapshot backup of one amber-store writer: shadow_dir is where its
 * instance directory appears in the shadow.  Decides the log range from
 * the shadow (checkpoint generation .. the current log's generation) or,
 * for incremental/differential, from parent's range, copies the files and
 * fills wdoc ("store" object, "components" list).  Returns 0, 1 (failed),
 * 2 (refused: a full backup is needed; err says why).
 */
int bk_store_backup_snapshot(bk_job *j, json_t *wdoc, const bk_store_loc *loc,
                             const char *shadow_dir, amb_backup_type type, json_t *parent_w,
                             bk_precopy *pre, char *err, size_t errlen);
/*
 * The precopy (PRECOPY above) of an incremental or differential: the
 * archived log generations of the live instance directory from the
 * parent's range on, started before the shadow is asked for.  pre: from
 * bk_store_precopy_start(), or NULL.  0 or -errno (nothing started; the
 * backup copies everything from the shadow).
 */
int bk_store_precopy_start(bk_job *j, json_t *wdoc, const bk_store_loc *loc,
                           amb_backup_type type, json_t *parent_w, bk_precopy **out);

/* Streaming backup of one amber-store writer through its serve process
 * (src/backup/stream).  The same results as above; *conn is left open for
 * bk_store_stream_complete(). */
int bk_store_backup_stream(bk_job *j, json_t *wdoc, const bk_store_loc *loc, amb_backup_type type,
                           json_t *parent_w, void **conn, char *err, size_t errlen);
int bk_store_stream_complete(void *conn, bool success, char *err, size_t errlen);

/*
 * Verify the writer's copy in the backup: every page of every database,
 * every log of the range (checksums and sequence).  A database whose pages
 * were checked while it was copied (j->checked) is not read again: its
 * results are taken, and of the copy only the header copies are read (for
 * the page count).  `amber verify` has no such results and reads it all.  Sets "success",
 * "pages", "corrected", "message" of each component in wdoc.  Returns 0
 * when all passed, 1 when any failed (err names the first problem).
 */
int bk_store_verify(bk_job *j, json_t *wdoc, char *err, size_t errlen);

#endif

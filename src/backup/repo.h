/*
 * repo.h - the backup repository, version 1 (docs/repository.md is the
 * format; this comment is the summary that must stay true to it).
 *
 *   REPO/amber-repo.json            {"format":"amber-repository","version":1,
 *                                    "id":UUID,"created":RFC3339}
 *   REPO/lock                       flock(2): one backup, prune or restore
 *                                    at a time (the others get busy)
 *   REPO/events.log                 the requestor's event log (JSON lines)
 *   REPO/backups/ID/backup.json     the backup document (JSON, below)
 *   REPO/backups/ID/manifest.sha256 "<sha256 hex>  <path>\n" per file, the
 *                                    format of sha256sum(1), sorted by path
 *   REPO/backups/ID/data/...        the files, at the document's "path"
 *
 * ID is "YYYYMMDDTHHMMSSZ-mmmrrr" (UTC start time; mmm its milliseconds and
 * rrr random, in lower-case hex), so names sort by start time.  Every file the repository writes goes through the
 * durable-write helper or is fsynced before its directory is; backup.json
 * is written first with status "incomplete" and rewritten whole at each
 * change of state, so a killed backup leaves a folder that says
 * "incomplete" and that nothing trusts (`amber backups --prune-incomplete`
 * removes it).
 *
 * Nothing read from a repository is trusted: bk_doc_check() refuses a
 * document whose paths are absolute, contain "..", empty or "." parts,
 * control characters, or leave data/; files are opened with openat2(2)
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS below the backup folder, so a
 * symlink planted in a repository cannot redirect a read or a restore.
 */
#ifndef AMBER_BACKUP_REPO_H
#define AMBER_BACKUP_REPO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BK_ID_LEN 23                  /* 20261122T100000Z-abcdef */
#define BK_ID_BUF (BK_ID_LEN + 1)
#define BK_ERR 1024                   /* size of error buffers */

typedef struct bk_repo {
	char root[4096];
	int dirfd;       /* REPO */
	int lockfd;      /* REPO/lock, flocked when locked */
	char id[64];
} bk_repo;

/*
 * Open REPO.  With create, make it (and its parents' last component) if it
 * does not exist; an existing directory that is not empty and has no
 * amber-repo.json is refused.  Returns 0, 1 (failed; err says why) or 2
 * (bad input: not a repository, unknown version).
 */
int bk_repo_open(const char *path, bool create, bk_repo *r, char *err, size_t errlen);
void bk_repo_close(bk_repo *r);

/* Take the repository lock: exclusive; wait or not.  0, 3 (busy, when not
 * waiting), 1. */
int bk_repo_lock(bk_repo *r, bool wait, char *err, size_t errlen);

/* A new backup id for "now". */
void bk_new_id(char out[BK_ID_BUF]);
bool bk_id_ok(const char *id);

/* Create REPO/backups/ID and ID/data, without an fsync (bk_sync_dirs()
 * makes the names durable); 0 or 1. */
int bk_dir_create(bk_repo *r, const char *id, char *err, size_t errlen);
/* Open REPO/backups/ID as a directory fd (O_PATH not used: readable). */
int bk_dir_open(bk_repo *r, const char *id, char *err, size_t errlen);

/* Write a new backup's first document ("incomplete") as
 * REPO/backups/ID/backup.json: temp and rename, no fsync.  A power loss may
 * take it away or leave it damaged; the folder is then listed as
 * unreadable, which nothing trusts either.  The verdict's bk_doc_save()
 * replaces it durably before anything depends on the backup. */
int bk_doc_create(bk_repo *r, const char *id, json_t *doc, char *err, size_t errlen);
/* Write the document durably as REPO/backups/ID/backup.json. */
int bk_doc_save(bk_repo *r, const char *id, json_t *doc, char *err, size_t errlen);
/* Load and check one document; *doc is yours (json_decref). 0, 1, 2. */
int bk_doc_load(bk_repo *r, const char *id, json_t **doc, char *err, size_t errlen);
/* Check a document against the format (hostile input).  0 or 2. */
int bk_doc_check(json_t *doc, const char *id, char *err, size_t errlen);

/* Every backup of the repository, sorted by id (oldest first); documents
 * that do not load are returned as {"id":ID,"status":"unreadable",
 * "error":MSG}.  *out is a JSON array (json_decref). */
int bk_list(bk_repo *r, json_t **out, char *err, size_t errlen);
/* The ids of every backup folder, sorted (oldest first), without loading
 * their documents: *ids is an array of *n strings (bk_ids_free). */
int bk_list_ids(bk_repo *r, char ***ids, size_t *n, char *err, size_t errlen);
void bk_ids_free(char **ids, size_t n);

/* Find a document in a list by id. */
json_t *bk_list_find(json_t *list, const char *id);

/* Remove REPO/backups/ID entirely (durable: the directory is fsynced). */
int bk_dir_remove(bk_repo *r, const char *id, char *err, size_t errlen);

/* Is path a safe relative path below data/ ("data/a/b")?  err says why not. */
bool bk_relpath_ok(const char *path, char *err, size_t errlen);
/* Is name a safe single file name (no '/', not "." or "..")? */
bool bk_name_ok(const char *name);

/* Open a file below dirfd with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS.
 * Returns an fd or -errno. */
int bk_openat_beneath(int dirfd, const char *rel, int flags, int mode);
/* mkdir -p of rel below dirfd, refusing symlinks; 0 or -errno. */
int bk_mkdirs_beneath(int dirfd, const char *rel);

/* The string member k of object o, "" when absent or not a string. */
const char *bk_str(json_t *o, const char *k);

/* "2026-11-22T10:00:00Z" for a Unix time in seconds. */
void bk_time_str(uint64_t sec, char *out, size_t n);
uint64_t bk_now_ms(void);

/* ---- the manifest ------------------------------------------------------- */

/* Write ID/manifest.sha256 from the document's "files" (each has "path" and
 * "sha256"), sorted by path, durably. */
int bk_manifest_save(bk_repo *r, const char *id, json_t *doc, char *err, size_t errlen);
/* Load ID/manifest.sha256 into an object path -> hex. 0, 1, 2. */
int bk_manifest_load(bk_repo *r, const char *id, json_t **out, char *err, size_t errlen);

/* ---- copying and hashing ---------------------------------------------- */

typedef void (*bk_progress_fn)(void *arg, uint64_t bytes);

/* Called with every chunk of a copy or hash, in file order, from one
 * thread (the caller's): buf holds exactly the len bytes at offset off
 * that are hashed and written.  Every chunk but the last is
 * BK_COPY_CHUNK bytes (a multiple of every page size). */
typedef void (*bk_check_fn)(void *arg, const unsigned char *buf, size_t len, uint64_t off);

#define BK_COPY_CHUNK (4u << 20)

typedef struct bk_copy_hooks {
	bk_progress_fn progress;   /* bytes done, or NULL */
	void *progress_arg;
	bk_check_fn check;         /* a verifier of the bytes copied, or NULL */
	void *check_arg;
	bool uncached;             /* copy with O_DIRECT where the filesystems allow
	                              it, not through the page cache: for a backup,
	                              whose source and copy are not read again soon.
	                              A file under BK_COPY_CHUNK bytes still goes
	                              through the cache (a log, which the verifier
	                              reads again at once) */
	bool *dst_failed;          /* set when the error returned is dst's (a write
	                              or the fsync: no space, EIO of the target),
	                              not src's; or NULL */
	bool no_fsync;             /* dst's writeback is only started
	                              (sync_file_range), not waited for: the caller
	                              fsyncs it later (bk_precopy_match) */
} bk_copy_hooks;

/*
 * Copy src (an open fd) to dst (a new file, open for writing) and compute
 * the SHA-256 of what was copied: FICLONE when both are on one filesystem
 * that can (the hash then reads the clone once), else one pass that reads,
 * hashes and writes, with the read, the hash and the write overlapping in
 * threads (repo.c, "The copy pipeline").  dst must be open for reading and
 * writing; it is fsynced.  hex receives 64 hex digits and a NUL; hex NULL:
 * no hash (a reflinked file is then not read at all).  Returns 0 or -errno
 * (the first read or write error; ENOMEM).
 */
int bk_copy_fd(int src, int dst, uint64_t *bytes, char hex[65], bk_progress_fn fn, void *arg);
/* bk_copy_fd() that also hands every chunk to h->check (a reflinked file
 * is then read once for it, even without hex). */
int bk_copy_fd_hooks(int src, int dst, uint64_t *bytes, char hex[65], const bk_copy_hooks *h);
/* SHA-256 of an open file from offset 0.  0 or -errno. */
int bk_hash_fd(int fd, uint64_t *bytes, char hex[65], bk_progress_fn fn, void *arg);
/* The same with hooks: h->check sees every byte hashed (h->uncached,
 * no_fsync and dst_failed are not used).  0 or -errno. */
int bk_hash_fd_hooks(int fd, uint64_t *bytes, char hex[65], const bk_copy_hooks *h);

#endif

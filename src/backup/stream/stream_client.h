/**
 * @file stream_client.h
 * @brief The client of the streaming (online, "NTBackup") backup: what
 * `amber backup --method stream` uses to back up a running
 * `amber-store serve` without a snapshot (seed 003).
 *
 * The instance keeps running.  Its serve process reads every database page
 * through the engine, verifying each one as it goes (a single-bit error is
 * corrected and counted, any other damage fails the backup naming the
 * database and the page), then rolls the log and sends the generations that
 * make the copy consistent.  Only when the client says that it stored
 * everything does serve record the backup in the database headers and, for
 * full and incremental backups, delete the logs no backup needs any more.
 * The protocol is docs/stream.md.
 *
 * A backup is one connection, used in this order:
 *
 * @code
 *	amb_stream_conn *c;
 *	amb_stream_info info;
 *	char err[512];
 *	int rc = amb_stream_open("/srv/mail/sg1", "full", &c, err, sizeof(err));
 *	if (rc == 0) {
 *		rc = amb_stream_fetch(c, "/backup/new", &info, NULL, NULL, err, sizeof(err));
 *		int rc2 = amb_stream_complete(c, rc == 0, err, sizeof(err));
 *		if (rc == 0)
 *			rc = rc2;
 *		amb_stream_close(c);
 *	}
 * @endcode
 *
 * What lands in the destination directory: `<db>.edb` for every database
 * (full and copy backups only; incremental and differential streams carry
 * logs only), marked as backup copies (they cannot be mounted before hard
 * recovery), and `<prefix>XXXXXXXX.log` for the generations
 * info.gen_low..info.gen_high.  A restore puts the databases in the
 * instance directory and the logs in a log directory named by restore.env
 * (docs/restore-env.md).
 *
 * @section rc Return codes
 * Every function that can fail returns 0, or:
 *  - #AMB_STREAM_FAILED (1): the backup failed for the reason in @p err
 *    (a damaged page or log, a protocol violation, a refused name, serve
 *    refusing our uid);
 *  - #AMB_STREAM_BADINPUT (2): bad arguments, or functions called out of
 *    order;
 *  - #AMB_STREAM_RETRY (3): retryable: another stream or a snapshot
 *    backup (freeze) is running, serve is shutting down, or the instance is
 *    closed for a restore;
 *  - a negative errno when the connection failed: -ENOENT or
 *    -ECONNREFUSED ("no amber-store serve is running for DIR"),
 *    -ENOTSOCK (the socket path is not a socket: a symlink is never
 *    followed), -EPERM (serve runs as a uid that is neither root, ours,
 *    nor the instance directory's owner),
 *    -ETIMEDOUT (serve sent nothing for #AMB_STREAM_TIMEOUT_MS),
 *    -ECONNRESET (serve closed the connection in the middle), or an errno
 *    of a local file operation in the destination directory.
 * The positive codes are the exit codes of design.md section 7.
 * @p err (may be NULL) always receives a message on failure.
 *
 * @section sec Security
 * The socket is `DIR/.amber-stream.sock`, mode 0600; serve accepts root
 * and its own uid only.  The client refuses a path that is not a socket
 * and a server of another uid (see above).  Every name the server sends is
 * checked before any file is created: a database must be one of those
 * announced at the start, a log must be exactly `<prefix>XXXXXXXX.log` of
 * the next generation; names never hold '/' or "..".  Files are created
 * with O_NOFOLLOW, mode 0600.
 *
 * @section caveats Caveats
 *  - One connection is one backup; open another for the next.
 *  - Not thread-safe per connection; different connections are independent.
 *  - Existing files of the same names in the destination are replaced.
 */
#ifndef AMBER_BACKUP_STREAM_CLIENT_H
#define AMBER_BACKUP_STREAM_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** @name Positive return codes (exit-code classes) @{ */
#define AMB_STREAM_FAILED 1   /**< failed; the message names why */
#define AMB_STREAM_BADINPUT 2 /**< bad arguments or call order */
#define AMB_STREAM_RETRY 3    /**< retryable (busy) */
/** @} */

/** The socket's name inside the instance directory. */
#define AMB_STREAM_SOCK_NAME ".amber-stream.sock"
/** Longest silence of serve before the client gives up (ms). */
#define AMB_STREAM_TIMEOUT_MS 120000u

typedef struct amb_stream_conn amb_stream_conn;

/** What a fetched stream held (filled by amb_stream_fetch()). */
typedef struct amb_stream_info {
	uint32_t gen_low, gen_high; /**< log generations received */
	uint64_t pages;             /**< database pages received, all databases */
	uint64_t corrected;         /**< single-bit errors serve corrected while
	                                 streaming (pages and log segments) */
	uint64_t bytes;             /**< bytes of file data received */
	uint32_t page_size;
	char prefix[8];             /**< log prefix, e.g. "E00" */
	int ndb;                    /**< databases of the instance */
	char dbnames[16][64];       /**< their file names, e.g. "priv1.edb" */
	char log_signature[33];     /**< random part of the log signature, hex */
} amb_stream_info;

/** Progress callback: file bytes received so far (called per frame). */
typedef void (*amb_stream_progress)(void *arg, uint64_t bytes_done);

/**
 * Connect to the serve of @p instance_dir and begin a stream.
 * @param instance_dir the instance directory serve runs
 * @param type "full", "copy", "incremental" or "differential"
 * @param[out] out the connection, to be closed with amb_stream_close()
 * @return 0; #AMB_STREAM_BADINPUT (bad type or directory);
 *   #AMB_STREAM_RETRY (busy: another stream, a freeze, a restore, or serve
 *   is stopping); #AMB_STREAM_FAILED (serve refused: e.g. an incremental
 *   without a full backup recorded, a needed log already deleted, or our
 *   uid; or a malformed answer); -ENOENT/-ECONNREFUSED (no serve running),
 *   -ENOTSOCK, -EPERM, -ETIMEDOUT, -ECONNRESET, -ENOMEM, other -errno
 */
int amb_stream_open(const char *instance_dir, const char *type, amb_stream_conn **out,
                    char *err, size_t errlen);

/**
 * Receive the whole stream into @p dest_dir (which must exist).  Each file
 * is written to `<name>.part`, fsynced, renamed to its name, and the
 * directory fsynced.  Every page is checked again on arrival (its checksum
 * and number), every file's size against what serve announced, and the log
 * range against the files received.  On failure, the files this call
 * created are removed.
 * @param[out] info (may be NULL) what was received
 * @param cb (may be NULL) progress callback, @p arg passed to it
 * @return 0; #AMB_STREAM_FAILED (a damaged page or log: the message names
 *   the database and page or the log; a bad name or protocol violation);
 *   #AMB_STREAM_RETRY (serve stopped or a restore needs the instance);
 *   #AMB_STREAM_BADINPUT (called twice, or after amb_stream_complete());
 *   -ECONNRESET, -ETIMEDOUT, or -errno of a file operation in @p dest_dir
 */
int amb_stream_fetch(amb_stream_conn *c, const char *dest_dir, amb_stream_info *info,
                     amb_stream_progress cb, void *arg, char *err, size_t errlen);

/**
 * Tell serve whether the backup was stored.  With @p success non-zero
 * (allowed only after amb_stream_fetch() returned 0) serve records the
 * backup in the database headers and, for full and incremental backups,
 * deletes the logs no longer needed; with 0 it records nothing.  Call it
 * after the files are safely stored (serve keeps every log until then) and
 * within 10 minutes of the fetch: serve gives up waiting after that, and
 * records nothing.
 * If the fetch did not finish, nothing is sent (serve is still sending or
 * has already given up); the stream is abandoned when the connection
 * closes, and nothing is recorded either way.  Call it at most once.
 * @return 0 (recorded, or the failure acknowledged or abandoned);
 *   #AMB_STREAM_BADINPUT (success claimed without a complete fetch, or a
 *   second call); #AMB_STREAM_FAILED (serve could not record it);
 *   #AMB_STREAM_RETRY (a restore took the instance before it was
 *   recorded); -ECONNRESET, -ETIMEDOUT, other -errno
 */
int amb_stream_complete(amb_stream_conn *c, int success, char *err, size_t errlen);

/** Close the connection and free @p c (NULL is fine).  Closing before
 * amb_stream_complete() abandons the stream: nothing is recorded and no log
 * is deleted. */
void amb_stream_close(amb_stream_conn *c);

#ifdef __cplusplus
}
#endif

#endif /* AMBER_BACKUP_STREAM_CLIENT_H */

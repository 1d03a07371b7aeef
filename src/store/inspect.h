/*
 * inspect.h - offline verification of database files and log directories
 * (the work behind `amber-store check`, `logs`; eseutil /k and /ml).
 *
 * Nothing here writes: single-bit errors are corrected in memory only, to
 * tell the admin which bit was wrong.  All reads go through the amb_vfs.
 */
#ifndef AMBER_STORE_INSPECT_H
#define AMBER_STORE_INSPECT_H

#include <stddef.h>
#include <stdint.h>

#include "common/vfs.h"
#include "store/format.h"
#include "store/log.h"

/* ---- database files ---------------------------------------------------- */

typedef struct amb_db_check_report {
	amb_dbhdr hdr;          /* the header in force (valid when hdr_ok) */
	int hdr_ok;             /* 1: amb_dbhdr_load() succeeded */
	int hdr_status;         /* AMB_HDR_* bits from amb_dbhdr_load() */
	uint32_t page_size;     /* from the header, or guessed from the pages
	                           when both header copies are damaged (0: unknown) */
	uint64_t file_size;     /* bytes */
	uint64_t pages;         /* pages examined, a trailing partial page included */
	uint64_t ok;            /* intact pages */
	uint64_t corrected;     /* pages with one flipped bit (corrected in memory) */
	uint64_t damaged;       /* pages that failed: checksum, page number, type,
	                           cell layout, truncation */
	uint64_t header_pages;  /* good pages by type (corrected ones included) */
	uint64_t free_pages;
	uint64_t data_pages;
	uint64_t overflow_pages;
	uint64_t first_damaged; /* page number of the first damaged page, or UINT64_MAX */
	uint64_t missing_pages; /* pages the header counts beyond the end of the file */
} amb_db_check_report;

/*
 * Called for every page that is not simply intact, in page order:
 * result AMB_CK_CORRECTED (bit = absolute bit offset in the page, byte*8 +
 * bit, LSB first) or AMB_CK_DAMAGED (bit = 0); why says what is wrong
 * ("checksum mismatch", "page 123 holds page 456", ...), without the page
 * number.
 */
typedef void (*amb_page_cb)(void *arg, uint32_t pgno, int result, const char *why,
                            uint64_t bit);

/*
 * Verify every page of the database file at path: both header copies, then
 * every page, each checked for its checksum (one XXH3 pass when intact),
 * its page number, its type, and for data and overflow pages the layout
 * of their contents.  A trailing partial page is damage.  The file is
 * read in large chunks, alternately by the caller's thread and a helper
 * thread that verify them in parallel, and is never written; on_page is
 * always called on the caller's thread, in page order.
 *
 * Returns 0 when every page is intact or corrected; AMS_ECORRUPT when any
 * page is damaged (rep says how many; the message names the first);
 * AMS_ENOTDB, AMS_EVERSION (header), AMS_ENOTFOUND, AMS_EIO, AMS_ENOMEM.
 * rep is filled in as far as the check got in every case.  on_page may be
 * NULL.
 */
int amb_db_check(amb_vfs *v, const char *path, amb_db_check_report *rep, amb_page_cb on_page,
                 void *arg);

/*
 * Check one page (size page_size) as amb_db_check() does, without modifying
 * it: returns AMB_CK_OK, AMB_CK_CORRECTED (*bit set) or AMB_CK_DAMAGED with
 * a reason in why (size why_size).  *type receives the page's type when
 * not damaged.  scratch must hold page_size bytes.  For the engine and
 * tests.
 */
int amb_page_check(const void *page, uint32_t page_size, uint32_t pgno, void *scratch,
                   uint16_t *type, uint64_t *bit, char *why, size_t why_size);

/* ---- log directories ------------------------------------------------------ */

/* One log file of a directory, as listed and scanned. */
typedef struct amb_logdir_entry {
	char name[64];    /* file name inside the directory */
	uint32_t gen;     /* generation (from the name; the current log's from its
	                     header, 0 if that is unreadable) */
	int current;      /* 1: <prefix>.log */
	int rc;           /* amb_log_scan() result; scan is valid when 0 */
	char err[256];    /* its message when rc != 0 */
	amb_logscan scan;
} amb_logdir_entry;

/*
 * List the log files of dir: <prefix>XXXXXXXX.log and <prefix>.log
 * (<prefix>tmp.log is skipped), skipping generations below from_gen (0 =
 * all), scan each with amb_log_scan() (several at once, on threads of
 * its own: v must allow calls from any thread), and sort by generation
 * (the current log last among equals).  *out is malloc'd (free it); *n may be
 * 0.  Returns 0, AMS_ENOTFOUND (no such directory), AMS_EIO, AMS_ENOMEM;
 * a log that fails to scan is an entry with rc set, not an error.
 */
int amb_logdir_list(amb_vfs *v, const char *dir, const char *prefix, uint32_t from_gen,
                    amb_logdir_entry **out, size_t *n);

/* What amb_logdir_check() found. */
typedef struct amb_logdir_report {
	uint32_t nlogs;      /* log files examined */
	uint32_t gen_first;  /* lowest and highest generation examined */
	uint32_t gen_last;
	int has_current;     /* <prefix>.log is present */
	uint64_t bytes;      /* bytes of log read */
	uint32_t corrected;  /* segments with a corrected single-bit error */
	uint32_t errors;     /* problems reported through on_problem */
	uint32_t warnings;   /* harmless findings reported through on_problem */
	int torn_tail;       /* the last generation ends in a torn (unacknowledged) write */
} amb_logdir_report;

typedef struct amb_logdir_cb {
	/* each log, in generation order, after it has been scanned; may be NULL */
	void (*on_log)(void *arg, const amb_logdir_entry *e);
	/* each problem (error = 1) or note (error = 0); gen 0 = not tied to one */
	void (*on_problem)(void *arg, uint32_t gen, int error, const char *msg);
	void *arg;
} amb_logdir_cb;

/*
 * Verify a log stream in dir: every log from from_gen (0 = all) is scanned,
 * and the sequence is checked: generations contiguous (a missing one is
 * named), one log signature, each header's prev_create_time equal to the
 * previous generation's create_time, each closed generation's valid data
 * ending exactly at the next generation's start_lsn, no damage in the
 * middle of any log, and the current log the newest generation.  A torn
 * tail is fine in the last generation, and in a closed one whose valid data
 * still reaches the next generation's start (the flush that was cut never
 * committed); the latter is reported as a note.  With from_gen, that
 * generation must be present.
 *
 * Returns 0 when the stream is intact; otherwise the code of the first
 * error (AMS_ELOGMISSING, AMS_EBADSIG, AMS_ECORRUPT, AMS_ENOTDB, AMS_EIO,
 * AMS_ENOTFOUND when there are no logs at all) with ams_errmsg() set to
 * its message.  cb may be NULL.
 */
int amb_logdir_check(amb_vfs *v, const char *dir, const char *prefix, uint32_t from_gen,
                     amb_logdir_report *rep, const amb_logdir_cb *cb);

#endif

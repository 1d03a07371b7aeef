/*
 * dbfile.h - database file primitives: header copies, page formatting and
 * verification.  Used by the engine (instance.c, recovery.c) and by the
 * offline tools (inspect.c: `amber-store check|header`).  The format is in
 * format.h.
 */
#ifndef AMBER_STORE_DBFILE_H
#define AMBER_STORE_DBFILE_H

#include <stdint.h>

#include "common/vfs.h"
#include "store/format.h"

/* Copy status bits from amb_dbhdr_load(). */
#define AMB_HDR_COPY0_BAD 0x1      /* page 0 damaged (or unreadable) */
#define AMB_HDR_COPY1_BAD 0x2      /* page 1 damaged (or unreadable) */
#define AMB_HDR_CORRECTED 0x4      /* a single-bit error was corrected */
#define AMB_HDR_COPIES_DIFFER 0x8  /* both valid, different seq (crash while updating) */

/*
 * Read and verify both header copies of an open database file.  The page
 * size is taken from the header itself (and must be 4096, 8192 or 32768).
 * Returns 0 with *out = the valid copy with the higher seq; AMS_ENOTDB if
 * neither copy looks like an amber database header (wrong magic/type in
 * both); AMS_ECORRUPT if both copies are damaged; AMS_EVERSION;
 * AMS_EIO.  *status (may be NULL) receives AMB_HDR_* bits.  Sets
 * ams_errmsg() on error.
 */
int amb_dbhdr_load(amb_vfs *v, int fd, const char *path, amb_dbhdr *out, int *status);

/*
 * Write the header: increments hdr->seq, then writes page 0, fdatasync,
 * page 1, fdatasync.  Returns 0 or AMS_EIO (message set).
 */
int amb_dbhdr_store(amb_vfs *v, int fd, const char *path, amb_dbhdr *hdr);

/*
 * Write one header copy (no = 0: page 0, 1: page 1) of hdr as it is (seq
 * not incremented), then fdatasync.  amb_dbhdr_store() is seq++, copy 0,
 * copy 1.  A caller that returns after copy 0 alone has the new header in
 * force (amb_dbhdr_load() takes the valid copy with the higher seq) but
 * write copy 1 before it writes copy 0 again: otherwise a torn write of
 * copy 0 would leave only copy 1's older header, not the one in force.
 * Returns 0, AMS_EINVAL, AMS_ENOMEM or AMS_EIO (message set).
 */
int amb_dbhdr_store_copy(amb_vfs *v, int fd, const char *path, const amb_dbhdr *hdr,
                         uint32_t no);

/* Build a sealed header page (pgno 0 or 1) from hdr into page. */
void amb_dbhdr_to_page(const amb_dbhdr *hdr, void *page, uint32_t pgno);

/* Build a sealed free page. */
void amb_page_format_free(void *page, uint32_t page_size, uint32_t pgno, uint64_t stamp);

/* Read the 32-byte block header of a block (no verification). */
void amb_blk_get(const void *blk, amb_blk *out);
/* Write the block header fields no/stamp/type/flags/aux (hash/ecc untouched). */
void amb_blk_put(void *blk, const amb_blk *in);

/* Page size is valid for a database. */
int amb_page_size_ok(uint32_t page_size);

/*
 * Read the checkpoint file (both copies; the valid one with the higher
 * update count wins).  AMS_ENOTFOUND if missing, AMS_ENOTDB if not a
 * checkpoint, AMS_ECORRUPT if both copies are damaged.
 */
int amb_chk_load(amb_vfs *v, const char *path, amb_chk *out, uint64_t *seq, int *status);

/* Write the checkpoint file durably (amb_durable_write), seq = update count. */
int amb_chk_store(amb_vfs *v, const char *path, const amb_chk *chk, uint64_t seq);

/* Current time in µs since the epoch. */
uint64_t amb_now_us(void);

/* Fill a new signature (random bytes, time, host name). */
void amb_sig_new(amb_sig *sig);
int amb_sig_eq(const amb_sig *a, const amb_sig *b);
/* "Create time: 2026-11-22 10:00:00.123 Rand: 0123abcd... Computer: host" */
void amb_sig_format(const amb_sig *sig, char *buf, size_t size);
/* "2026-11-22 10:00:00.123456" (UTC) or "none" for 0 */
void amb_time_format(uint64_t us, char *buf, size_t size);

#endif

/*
 * log.h - log files: naming, headers, and verification of a whole file.
 * The format is in format.h; the writer lives in instance.c, the replay in
 * recovery.c.
 */
#ifndef AMBER_STORE_LOG_H
#define AMBER_STORE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/vfs.h"
#include "store/format.h"

/* "<dir>/<prefix>XXXXXXXX.log" (gen > 0), "<dir>/<prefix>.log" (gen 0),
 * "<dir>/<prefix>tmp.log" (gen UINT32_MAX). */
void amb_log_path(char *buf, size_t size, const char *dir, const char *prefix, uint32_t gen);

/* Parse an archived log file name "<prefix>XXXXXXXX.log"; returns the
 * generation or 0 if the name is not one. */
uint32_t amb_log_parse_name(const char *name, const char *prefix);

/* Result of amb_log_scan(). */
typedef struct amb_logscan {
	amb_loghdr hdr;
	int hdr_ok;            /* header segment valid (possibly corrected) */
	uint32_t nsegs;        /* data segments the file can hold */
	uint32_t valid_segs;   /* data segments in the unbroken valid run from 1 */
	uint64_t end_lsn;      /* stream offset just after the valid run */
	uint32_t first_bad;    /* first segment after the run that is neither
	                          valid nor all zero (0: none) */
	int damaged;           /* 1: valid data of a LATER flush follows first_bad,
	                          i.e. damage in the middle, not a torn tail */
	uint32_t corrected;    /* single-bit errors corrected (in memory) */
	uint32_t bad_segs;     /* segments that failed verification */
	int wrong_size;        /* 1: the file's size is not the hdr.file_size it
	                          was made with (log files are written whole
	                          before they are used, so no crash leaves one
	                          short: it was truncated); damaged is set too */
	uint64_t size;         /* the file's size in bytes */
} amb_logscan;

/*
 * Read and verify a whole log file.  Returns 0 (then *out describes it),
 * AMS_ENOTDB (segment 0 is not a log header), AMS_ECORRUPT (header damaged
 * beyond repair), AMS_EIO.  A torn tail is not an error here: callers
 * decide from out->first_bad/out->damaged and the next generation's
 * start_lsn.  Sets ams_errmsg() on error.
 */
int amb_log_scan(amb_vfs *v, const char *path, amb_logscan *out);

/*
 * What is wrong with a scanned file whose s->damaged is set, for messages:
 * "truncated: the file has N bytes, its header says M" or "damaged at
 * segment N: valid data of a later flush follows the damage".  Returns buf.
 */
const char *amb_logscan_damage(const amb_logscan *s, char *buf, size_t size);

/* Read only the header segment (verified). */
int amb_loghdr_load(amb_vfs *v, const char *path, amb_loghdr *out);

/* The oldest and newest archived generation named <prefix>XXXXXXXX.log in
 * dir (0 and 0 when there is none or dir cannot be read). */
void amb_log_scan_archived(const char *dir, const char *prefix, uint32_t *oldest,
                           uint32_t *newest);

/*
 * The current log <dir>/<prefix>.log has no readable header but is a log
 * whose header never reached the disk: a crash came after a roll's renames
 * and before the first sync of the new file (instance.c, LOG ROLL), so
 * nothing in it was acknowledged.  That is assumed when the file has the
 * size of the newest archived generation N, and N is undamaged and of the
 * stream sign_log (NULL: any).  Then *out is the header to write again:
 * N's, as generation N+1 starting where N's data ends, created now.
 * Returns 1 (*out filled) or 0 (the header is readable, or the file is not
 * such a log: the caller reports it as it is).
 */
int amb_log_unsynced_header(amb_vfs *v, const char *dir, const char *prefix,
                            const amb_sig *sign_log, amb_loghdr *out);



/* A whole log file in memory, verified (single-bit errors corrected in the
 * buffer).  Used by replay. */
typedef struct amb_logfile {
	amb_logscan scan;
	unsigned char *buf;
	size_t size;
} amb_logfile;

int amb_log_load(amb_vfs *v, const char *path, amb_logfile *lf);
void amb_log_free(amb_logfile *lf);

/* Segment fields. */
static inline unsigned char *amb_seg(const amb_logfile *lf, uint32_t i)
{
	return lf->buf + (size_t)i * AMB_SEG_SIZE;
}
uint16_t amb_seg_used(const unsigned char *seg);
uint32_t amb_seg_first_rec(const unsigned char *seg);
uint64_t amb_seg_lsn(const unsigned char *seg);

/* Checksum seed of data segment seg of generation gen. */
static inline uint64_t amb_seg_seed(uint32_t gen, uint32_t seg)
{
	return ((uint64_t)gen << 32) | seg;
}
#endif

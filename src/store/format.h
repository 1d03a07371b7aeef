/*
 * format.h - the store's on-disk format (version 1).
 *
 * All integers are little-endian.  Every fixed-size block (database page,
 * log segment, checkpoint copy) starts with the 32-byte block header below;
 * its first 12 bytes are the hash + ECC of common/checksum.h, which detects
 * any damage and corrects any single flipped bit.
 *
 * BLOCK HEADER (amb_blk, 32 bytes)
 *   0  u64 hash     XXH3-64 of bytes [8, size) seeded with the block number
 *   8  u32 ecc      SEC-DED over bytes [12, size)
 *   12 u32 no       block number: page number in a database, segment number
 *                   in a log, copy number (0/1) in the checkpoint file
 *   16 u64 stamp    database page: modification stamp (per-database counter
 *                   bumped by every transaction that changes the database;
 *                   the "dbtime"); log segment: stream offset (LSN) of the
 *                   segment's first payload byte; checkpoint: update count
 *   24 u16 type     AMB_BT_* below
 *   26 u16 flags
 *   28 u32 aux      type-specific (data page: cell count; overflow page: next
 *                   overflow page or 0; log segment: see below)
 *
 * DATABASE FILE (NAME.edb), page size P (4096, 8192 or 32768)
 *   The file is an array of pages; page N is at byte N*P.  Pages 0 and 1 hold
 *   the database header (two copies, amb_dbhdr after the block header).
 *   Every other page is a free page (AMB_BT_FREE, body all zero), a data page
 *   (AMB_BT_DATA) or an overflow page (AMB_BT_OVERFLOW).  Every page,
 *   free ones included, carries a valid checksum, so a check can verify the
 *   whole file.
 *
 *   Header copies are written one at a time, each followed by fdatasync, and
 *   carry an update count (amb_dbhdr.seq); a reader takes the valid copy with
 *   the higher count, so a crash while writing one copy loses nothing.  A
 *   writer may return once copy 0 is synced (a backup's record, see
 *   amb_dbhdr_store_copy()) if copy 1 is written before copy 0 is written
 *   again: a copy is rewritten only while the other holds the header in
 *   force.
 *
 *   DATA PAGE body (from byte 32): u16 used (bytes of cells), u16 reserved,
 *   then `aux` cells packed from byte 36.  A cell:
 *     0  u16 len      total cell length
 *     2  u8  flags    AMB_CELL_LONG: the value lives in overflow pages
 *     3  u8  tlen     table name length (1..64)
 *     4  u16 klen     key length (1..1024)
 *     6  u32 vlen     value length
 *     10 [LONG: u32 first overflow page, u32 overflow page count]
 *     then table name, key, and (not LONG) the value.
 *   Tables whose name starts with '$' are the engine's own: "$tables" maps a
 *   table name (key) to its database index (value, u32).
 *
 *   OVERFLOW PAGE: aux = next overflow page of the value (0 = last); body:
 *   u32 length of the data in this page, then the data from byte 36.
 *
 * LOG FILES (<prefix>.log current, <prefix>XXXXXXXX.log archived, 8 hex
 * digits of the generation; <prefix>tmp.log prepared next), fixed size L.
 *   The file is L/4096 segments of 4096 bytes.  Segment 0 is the log header
 *   (AMB_BT_LOGHDR, amb_loghdr after the block header).  Segments 1.. are
 *   data segments (AMB_BT_LOGSEG):
 *     block header: no = segment number, stamp = LSN of the first payload
 *       byte, aux = generation
 *     32 u32 flush_first  segment number of the first segment written by the
 *                         same flush (one flush = one write + one fdatasync)
 *     36 u16 flush_count  number of segments in that flush
 *     38 u16 used         payload bytes used (0..AMB_SEG_PAYLOAD)
 *     40 u32 first_rec    payload offset of the first record that starts in
 *                         this segment, 0xFFFFFFFF if none does (lets a
 *                         reader start at any segment, e.g. at the first
 *                         generation of a backup)
 *     44 u32 reserved
 *     48 payload
 *   Every flush starts a new segment, so a segment that holds acknowledged
 *   data is never rewritten: a torn write can only damage the flush that
 *   was in progress, which nobody was told had committed.
 *   A log file is written whole (L bytes of zeros) and synced as
 *   <prefix>tmp.log before it is used, so its size is always the header's
 *   file_size: a file of another size was truncated (or extended) after the
 *   fact and is damaged, never a torn tail.  The roll that takes it into use
 *   writes its header and renames it without a sync of its own; the first
 *   flush into it syncs header and records together, before anything in it
 *   is acknowledged, and a generation is synced whole before it is archived.
 *   So only the current <prefix>.log can lack a readable header after a
 *   crash, and then nothing in it was acknowledged (open writes the header
 *   again: instance.c, LOG ROLL).
 *
 *   The payload bytes of consecutive segments, across generations, form one
 *   stream of records, addressed by LSN (the stream offset).  Each
 *   generation's header records the LSN at which it starts; so generation g
 *   must end exactly where generation g+1 starts, and a shorter valid run in
 *   a closed generation is damage, reported with the generation's number.
 *
 *   RECORD: u32 len (whole record), u32 type, u64 hash (XXH3-64 of the bytes
 *   after the hash field, seed = the record's LSN), then the body:
 *     AMB_REC_TXN: u64 txn sequence, u64 time (µs since the epoch), u32 n,
 *       u32 reserved, then n entries:
 *         u8 kind, u8 db, u16 reserved, u32 pgno, then
 *         IMAGE:  u32 n, then the first n bytes of the whole page (sealed);
 *                 the other P - n bytes are zero (free space is kept zeroed,
 *                 so images of pages with room are short)
 *         FREE:   u64 stamp: write a free page
 *         EXTEND: u32 new page count: the database grows to that many pages,
 *                 the new pages free
 *         DELTA:  u64 stamp before, u64 stamp after, u32 range count, then
 *                 ranges {u16 offset, u16 length, bytes}: the page's bytes
 *                 [12, P) that changed; the hash and ECC are recomputed
 *
 *   FULL PAGE IMAGES AND REPLAY.  The first change of a page after a
 *   checkpoint began is logged as an IMAGE (or FREE/EXTEND, which also
 *   determine the whole page); later changes in the same checkpoint
 *   interval may be DELTAs.  Replay compares stamps, as ESE compares dbtime:
 *   an IMAGE or FREE is written unless the page on disk is valid and at
 *   least as new; a DELTA is applied only to a page whose stamp equals its
 *   "stamp before", skipped if the page already has "stamp after" or newer,
 *   and reported as a lost write if the page is valid but older.  A DELTA
 *   for a torn (invalid) page is skipped and that page must be rewritten by
 *   a later IMAGE/FREE of the replay; if none comes, recovery fails naming
 *   the page.  Because of the first-image rule, replay from a checkpoint
 *   always meets an image before any delta of a page written since, and
 *   replay from any earlier point skips what the page already holds.
 *     AMB_REC_ROLL: empty; written as the last record of a generation that
 *       was closed on request (informational).
 *
 * CHECKPOINT FILE (<prefix>.chk): 8192 bytes, two identical 4096-byte
 *   copies (block numbers 0 and 1, type AMB_BT_CHK, amb_chk after the block
 *   header), written whole through the durable-write helper.
 */
#ifndef AMBER_STORE_FORMAT_H
#define AMBER_STORE_FORMAT_H

#include <assert.h>
#include <stdint.h>

#define AMB_FORMAT_VERSION 1

#define AMB_BT_DBHDR 1
#define AMB_BT_FREE 2
#define AMB_BT_DATA 3
#define AMB_BT_OVERFLOW 4
#define AMB_BT_LOGHDR 5
#define AMB_BT_LOGSEG 6
#define AMB_BT_CHK 7

#define AMB_SEG_SIZE 4096u
#define AMB_SEG_HDR 48u
#define AMB_SEG_PAYLOAD (AMB_SEG_SIZE - AMB_SEG_HDR)
#define AMB_SEG_NO_REC 0xFFFFFFFFu

#define AMB_DB_MAGIC 0x42444d41u  /* "AMDB" */
#define AMB_LOG_MAGIC 0x474c4d41u /* "AMLG" */
#define AMB_CHK_MAGIC 0x4b434d41u /* "AMCK" */

#define AMB_CELL_LONG 0x01
#define AMB_DATA_HDR 36u /* first cell offset in a data page */
#define AMB_OVF_HDR 36u  /* first data byte in an overflow page */

#define AMB_REC_TXN 1
#define AMB_REC_ROLL 2
#define AMB_REC_HDR 16u

#define AMB_ENT_IMAGE 1
#define AMB_ENT_FREE 2
#define AMB_ENT_EXTEND 3
#define AMB_ENT_DELTA 4
#define AMB_ENT_HDR 8u

#define AMB_MAX_TABLE 64
#define AMB_MAX_KEY 1024
#define AMB_MAX_VALUE (16u * 1024 * 1024)
#define AMB_MAX_DBS 16

/* Database states (the values of ESE's JET_dbstate). */
#define AMB_DBSTATE_JUST_CREATED 1
#define AMB_DBSTATE_DIRTY 2
#define AMB_DBSTATE_CLEAN 3

/* Block header.  Accessed through memcpy: blocks are plain byte arrays. */
typedef struct amb_blk {
	uint64_t hash;
	uint32_t ecc;
	uint32_t no;
	uint64_t stamp;
	uint16_t type;
	uint16_t flags;
	uint32_t aux;
} amb_blk;
static_assert(sizeof(amb_blk) == 32, "block header is 32 bytes");

/* A signature: who made a database or a log stream, and when. */
typedef struct amb_sig {
	uint8_t random[16]; /* random bytes from getrandom(2) */
	uint64_t time;      /* creation time, µs since the epoch */
	char host[24];      /* creating host name, NUL padded */
} amb_sig;
static_assert(sizeof(amb_sig) == 48, "signature is 48 bytes");

/* A log position, printed (gen,seg,off) like ESE's lgpos. */
typedef struct amb_lgpos {
	uint32_t gen;
	uint16_t seg;
	uint16_t off;
} amb_lgpos;

/* One backup record of the header ("Previous Full Backup" ...). */
typedef struct amb_bkinfo {
	uint32_t gen_low;  /* first log generation of the backup */
	uint32_t gen_high; /* last log generation of the backup */
	uint64_t time;     /* µs since the epoch; 0 = no such backup */
	uint32_t kind;     /* 1 streaming, 2 snapshot */
	uint32_t reserved;
} amb_bkinfo;
static_assert(sizeof(amb_bkinfo) == 24, "bkinfo is 24 bytes");

/* Database header (follows the block header in pages 0 and 1). */
typedef struct amb_dbhdr {
	uint32_t magic;
	uint32_t version;
	uint32_t page_size;
	uint32_t dbidx;         /* index of this database in its instance */
	uint64_t seq;           /* update count: the valid copy with the higher wins */
	amb_sig sign_db;        /* this database */
	amb_sig sign_log;       /* the log stream it belongs to */
	uint32_t state;         /* AMB_DBSTATE_* */
	uint32_t gen_min_required;
	uint32_t gen_max_required;
	uint32_t gen_max_committed;
	amb_lgpos consistent;   /* log position of the last clean shutdown */
	uint64_t consistent_time;
	uint64_t attach_time;
	uint64_t detach_time;
	uint64_t last_stamp;    /* highest page stamp written */
	uint32_t page_count;    /* pages in the file, header pages included */
	uint32_t reserved0;
	uint64_t consistent_lsn; /* log stream offset of `consistent` */
	amb_bkinfo full_prev;   /* Previous Full Backup */
	amb_bkinfo inc_prev;    /* Previous Incremental Backup */
	amb_bkinfo diff_prev;   /* Previous Differential Backup */
	amb_bkinfo copy_prev;   /* Previous Copy Backup (never written: copy
	                         * backups leave the header alone) */
	amb_bkinfo full_cur;    /* Current Full Backup: set only in a backup copy */
	amb_bkinfo snap_cur;    /* Current Shadow copy backup */
	uint64_t ecc_fixed_count;
	uint64_t ecc_fixed_time;
	uint64_t bad_checksum_count;
	uint64_t bad_checksum_time;
	uint64_t repair_count;
	char name[64];          /* file name of the database */
	char prefix[8];         /* log prefix of its instance */
} amb_dbhdr;

/* Log header (follows the block header in segment 0). */
typedef struct amb_loghdr {
	uint32_t magic;
	uint32_t version;
	uint32_t gen;
	uint32_t seg_size;
	uint64_t file_size;
	amb_sig sign_log;
	uint64_t create_time;      /* µs since the epoch */
	uint64_t prev_create_time; /* create_time of generation gen-1 (0: none) */
	uint64_t start_lsn;        /* stream offset where this generation starts */
	uint32_t page_size;        /* of the instance's databases */
	uint32_t ndbs;
	char prefix[8];
	amb_sig sign_db[AMB_MAX_DBS]; /* databases attached when it was made */
} amb_loghdr;

/* Checkpoint (follows the block header in each copy). */
typedef struct amb_chk {
	uint32_t magic;
	uint32_t version;
	amb_sig sign_log;
	uint64_t lsn;       /* replay starts at this stream offset ... */
	uint32_t gen;       /* ... which lies in this generation */
	uint32_t reserved;
	uint64_t time;      /* when it was written */
	amb_bkinfo full_backup; /* last full backup (as in ESE's checkpoint) */
	amb_bkinfo inc_backup;
	char prefix[8];
} amb_chk;

static_assert(32 + sizeof(amb_dbhdr) <= 4096, "header fits the smallest page");
static_assert(32 + sizeof(amb_loghdr) <= AMB_SEG_SIZE, "log header fits a segment");
static_assert(32 + sizeof(amb_chk) <= 4096, "checkpoint fits");

#define AMB_CHK_FILE_SIZE 8192u

#endif

/*
 * recovery.c - log replay: soft recovery (at open, after a crash) and hard
 * recovery (after a restore, driven by restore.env).
 *
 * The log holds, for every committed transaction, the change of every page
 * it touched: a whole image the first time a page changes after a
 * checkpoint began, byte-range deltas after that (format.h).  Replay
 * compares page stamps the way ESE compares dbtime: it writes an image
 * unless the disk already holds that version or a newer one, applies a
 * delta only to the exact version it was made from, and skips what the
 * page already holds.  So replay from the checkpoint (or from any earlier
 * point) yields exactly the committed state, replay is idempotent, a crash
 * during recovery is harmless (the checkpoint only moves once the replayed
 * pages are fsynced), a transaction whose record did not reach the disk
 * whole is simply absent, and a page write that was lost (a valid page
 * older than the log expects) is reported, never papered over.
 *
 * Generation rules checked here (each failure names the generation):
 *   - every generation from the start to the end must be present
 *     (AMS_ELOGMISSING);
 *   - every log's signature must be the databases' (AMS_EBADSIG);
 *   - generation g+1 must say it follows g: prev_create_time = g's
 *     create_time (AMS_ECORRUPT: "not contiguous");
 *   - the valid data of a closed generation must reach the start LSN of the
 *     next (AMS_ECORRUPT: damaged at segment N); data past it is the rest
 *     of a flush cut by a crash, which the next generation superseded (after
 *     a crash, recovery starts the new generation where the last complete
 *     record ended, which may lie inside an earlier generation);
 *   - in the last generation valid data may end early (a torn tail: the
 *     flush that was in progress), but not if data of a later flush follows
 *     a bad segment (AMS_ECORRUPT: damage in the middle).
 *
 * Hard recovery reads generations gen_low..gen_high from the backup's log
 * directory and, with roll-forward, the later ones from the instance.  The
 * one exception is gen_high: a snapshot backup's copy of it is a prefix, so
 * with roll-forward the instance's copy is read when it is the same file
 * (instance_copy(); docs/restore-env.md, "Which copy of a generation is
 * read").  Without roll-forward the backup's copy is read, and its valid
 * data simply ends early, like a torn tail: a record cut off there is not
 * replayed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "common/array.h"
#include "common/checksum.h"
#include "common/durable.h"
#include "store/dbfile.h"
#include "store/err.h"
#include "store/instance.h"
#include "store/log.h"
#include "store/restoreenv.h"

#define MAX_RECORD (512u << 20)

typedef struct pgref {
	int db;
	uint32_t pgno;
	uint64_t lsn; /* record that found it torn */
} pgref;

typedef struct parser {
	amb_replay *rp;
	unsigned char *cur;  /* the page as it is on disk now */
	unsigned char *img;  /* an image entry made whole */
	pgref *torn;         /* pages a delta found torn: an image must follow */
	size_t ntorn, ctorn;
	unsigned char *buf;
	size_t have, need, cap;
	uint64_t rec_lsn; /* LSN of the record being assembled */
	uint32_t gen;     /* generation being read (for messages) */
	unsigned char *zero;
	int stop;
} parser;

static uint32_t rd32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int write_page(parser *ps, int db, uint32_t pgno, const void *pg)
{
	amb_replay *rp = ps->rp;
	if (pgno + 1 > rp->npages[db])
		rp->npages[db] = pgno + 1;
	/* the page is whole now: no longer waiting for an image */
	for (size_t i = 0; i < ps->ntorn; i++)
		if (ps->torn[i].db == db && ps->torn[i].pgno == pgno) {
			ps->torn[i] = ps->torn[--ps->ntorn];
			break;
		}
	ssize_t w = rp->vfs->pwrite(rp->vfs, rp->fds[db], pg, rp->page_size, (off_t)pgno * rp->page_size);
	if (w < 0)
		return amb_err(amb_errno_code((int)w), "%s: writing page %u during recovery: %s",
		               rp->dbnames[db], pgno, strerror((int)-w));
	return 0;
}

/* Read the page as it is now into ps->cur; 1 if it is a valid page of that
 * number (then *stamp is its stamp), 0 if torn, never written or beyond
 * the end of the file, <0 on an I/O error. */
static int read_cur(parser *ps, int db, uint32_t pgno, uint64_t *stamp)
{
	amb_replay *rp = ps->rp;
	ssize_t n = rp->vfs->pread(rp->vfs, rp->fds[db], ps->cur, rp->page_size,
	                           (off_t)pgno * rp->page_size);
	if (n < 0)
		return amb_err(AMS_EIO, "%s: reading page %u during recovery: %s", rp->dbnames[db],
		               pgno, strerror((int)-n));
	if ((size_t)n < rp->page_size || amb_ck_verify(ps->cur, rp->page_size, pgno, NULL) == AMB_CK_DAMAGED)
		return 0;
	amb_blk b;
	amb_blk_get(ps->cur, &b);
	if (b.no != pgno)
		return 0;
	*stamp = b.stamp;
	return 1;
}

static int mark_torn(parser *ps, int db, uint32_t pgno)
{
	for (size_t i = 0; i < ps->ntorn; i++)
		if (ps->torn[i].db == db && ps->torn[i].pgno == pgno)
			return 0;
	if (amb_grow((void **)&ps->torn, &ps->ctorn, ps->ntorn + 1, sizeof(*ps->torn), 64))
		return amb_err(AMS_ENOMEM, "out of memory during recovery");
	ps->torn[ps->ntorn].db = db;
	ps->torn[ps->ntorn].pgno = pgno;
	ps->torn[ps->ntorn].lsn = ps->rec_lsn;
	ps->ntorn++;
	return 0;
}

/* A whole page (IMAGE, FREE) with this stamp: write it unless the disk
 * already holds this version or a newer one. */
static int put_whole(parser *ps, int db, uint32_t pgno, const void *pg, uint64_t stamp)
{
	uint64_t cur;
	int v = read_cur(ps, db, pgno, &cur);
	if (v < 0)
		return v;
	if (v == 1 && cur >= stamp) {
		if (pgno + 1 > ps->rp->npages[db])
			ps->rp->npages[db] = pgno + 1;
		return 0;
	}
	return write_page(ps, db, pgno, pg);
}

static int apply_delta(parser *ps, int db, uint32_t pgno, const unsigned char *e, size_t elen)
{
	amb_replay *rp = ps->rp;
	uint32_t P = rp->page_size;
	if (elen < 20)
		return -1;
	uint64_t before = rd64(e), after = rd64(e + 8);
	uint32_t n = rd32(e + 16);
	uint64_t cur;
	int v = read_cur(ps, db, pgno, &cur);
	if (v < 0)
		return v;
	if (v == 0)
		return mark_torn(ps, db, pgno); /* an image later in the log must fix it */
	if (cur >= after)
		return 0; /* already there */
	if (cur != before)
		return amb_err(AMS_ECORRUPT, "%s: page %u has stamp %llu but the log record at LSN %llu "
		               "(generation %u) changes stamp %llu: a page write was lost",
		               rp->dbnames[db], pgno, (unsigned long long)cur,
		               (unsigned long long)ps->rec_lsn, ps->gen, (unsigned long long)before);
	size_t off = 20;
	for (uint32_t k = 0; k < n; k++) {
		if (off + 4 > elen)
			return -1;
		uint16_t o, l;
		memcpy(&o, e + off, 2);
		memcpy(&l, e + off + 2, 2);
		if (o < 12 || (uint32_t)o + l > P || off + 4 + l > elen)
			return -1;
		memcpy(ps->cur + o, e + off + 4, l);
		off += 4 + (size_t)l;
	}
	if (off != elen)
		return -1;
	amb_ck_seal(ps->cur, P, pgno);
	if (after > rp->max_stamp[db])
		rp->max_stamp[db] = after;
	return write_page(ps, db, pgno, ps->cur);
}

static size_t delta_len(const unsigned char *e, size_t avail)
{
	if (avail < 20)
		return 0;
	uint32_t n = rd32(e + 16);
	size_t off = 20;
	for (uint32_t k = 0; k < n; k++) {
		if (off + 4 > avail)
			return 0;
		uint16_t l;
		memcpy(&l, e + off + 2, 2);
		off += 4 + (size_t)l;
		if (off > avail)
			return 0;
	}
	return off;
}

static int apply_txn(parser *ps, const unsigned char *r, size_t len)
{
	amb_replay *rp = ps->rp;
	uint32_t P = rp->page_size;
	if (len < AMB_REC_HDR + 24)
		goto bad;
	uint64_t t = rd64(r + AMB_REC_HDR + 8);
	if (rp->until_us && t > rp->until_us) {
		ps->stop = 1;
		rp->stopped_until = 1;
		return 0;
	}
	uint32_t n = rd32(r + AMB_REC_HDR + 16);
	size_t off = AMB_REC_HDR + 24;
	for (uint32_t i = 0; i < n; i++) {
		if (off + AMB_ENT_HDR > len)
			goto bad;
		int kind = r[off], db = r[off + 1];
		uint32_t pgno = rd32(r + off + 4);
		off += AMB_ENT_HDR;
		if (db >= rp->ndb)
			return amb_err(AMS_ECORRUPT, "log record at LSN %llu (generation %u) refers to "
			               "database %d, the instance has %d", (unsigned long long)ps->rec_lsn,
			               ps->gen, db, rp->ndb);
		int rc = 0;
		if (kind == AMB_ENT_IMAGE) {
			if (off + 4 > len || pgno < 2)
				goto bad;
			uint32_t il = rd32(r + off);
			if (il < 32 || il > P || off + 4 + il > len)
				goto bad;
			memcpy(ps->img, r + off + 4, il);
			memset(ps->img + il, 0, P - il);
			if (amb_ck_check(ps->img, P, pgno) != AMB_CK_OK)
				return amb_err(AMS_ECORRUPT, "page image %u in the log record at LSN %llu "
				               "(generation %u) fails its checksum", pgno,
				               (unsigned long long)ps->rec_lsn, ps->gen);
			amb_blk b;
			amb_blk_get(ps->img, &b);
			if (b.stamp > rp->max_stamp[db])
				rp->max_stamp[db] = b.stamp;
			rc = put_whole(ps, db, pgno, ps->img, b.stamp);
			off += 4 + il;
		} else if (kind == AMB_ENT_FREE) {
			if (off + 8 > len || pgno < 2)
				goto bad;
			uint64_t stamp = rd64(r + off);
			if (stamp > rp->max_stamp[db])
				rp->max_stamp[db] = stamp;
			amb_page_format_free(ps->zero, P, pgno, stamp);
			rc = put_whole(ps, db, pgno, ps->zero, stamp);
			off += 8;
		} else if (kind == AMB_ENT_EXTEND) {
			if (off + 4 > len)
				goto bad;
			uint32_t to = rd32(r + off);
			if (to < pgno || to - pgno > (1u << 24) || pgno < 2)
				goto bad;
			for (uint32_t pg = pgno; pg < to && !rc; pg++) {
				uint64_t cur;
				int v = read_cur(ps, db, pg, &cur);
				if (v < 0)
					rc = v;
				else if (v == 1 && pg + 1 > rp->npages[db])
					rp->npages[db] = pg + 1;
				else if (v == 0) {
					amb_page_format_free(ps->zero, P, pg, 0);
					rc = write_page(ps, db, pg, ps->zero);
				}
			}
			off += 4;
		} else if (kind == AMB_ENT_DELTA) {
			size_t el = delta_len(r + off, len - off);
			if (!el || pgno < 2)
				goto bad;
			rc = apply_delta(ps, db, pgno, r + off, el);
			if (rc == -1)
				goto bad;
			off += el;
		} else {
			goto bad;
		}
		if (rc)
			return rc;
	}
	if (off != len)
		goto bad;
	rp->records++;
	return 0;
bad:
	return amb_err(AMS_ECORRUPT, "log record at LSN %llu (generation %u) is malformed",
	               (unsigned long long)ps->rec_lsn, ps->gen);
}

/* Feed stream bytes starting at lsn (== ps->rec_lsn + ps->have). */
static int feed(parser *ps, const unsigned char *p, size_t n)
{
	while (n && !ps->stop) {
		size_t want = ps->have < AMB_REC_HDR ? AMB_REC_HDR - ps->have : ps->need - ps->have;
		size_t take = n < want ? n : want;
		if (amb_grow((void **)&ps->buf, &ps->cap, ps->have + take, 1, 65536))
			return amb_err(AMS_ENOMEM, "out of memory during recovery");
		memcpy(ps->buf + ps->have, p, take);
		ps->have += take;
		p += take;
		n -= take;
		if (ps->have == AMB_REC_HDR) {
			ps->need = rd32(ps->buf);
			uint32_t type = rd32(ps->buf + 4);
			if (ps->need < AMB_REC_HDR || ps->need > MAX_RECORD ||
			    (type != AMB_REC_TXN && type != AMB_REC_ROLL))
				return amb_err(AMS_ECORRUPT, "log record at LSN %llu (generation %u) has a "
				               "bad header", (unsigned long long)ps->rec_lsn, ps->gen);
		}
		if (ps->have >= AMB_REC_HDR && ps->have == ps->need) {
			if (XXH3_64bits_withSeed(ps->buf + AMB_REC_HDR, ps->need - AMB_REC_HDR, ps->rec_lsn) !=
			    rd64(ps->buf + 8))
				return amb_err(AMS_ECORRUPT, "log record at LSN %llu (generation %u) fails "
				               "its checksum", (unsigned long long)ps->rec_lsn, ps->gen);
			if (rd32(ps->buf + 4) == AMB_REC_TXN) {
				int rc = apply_txn(ps, ps->buf, ps->need);
				if (rc)
					return rc;
				if (ps->stop)
					return 0;
			}
			ps->rp->bytes += ps->need;
			ps->rec_lsn += ps->need;
			ps->rp->end_lsn = ps->rec_lsn;
			ps->have = ps->need = 0;
		}
	}
	return 0;
}

/*
 * The backup's last generation gen1_high may be a prefix: a snapshot backup
 * copies the generation that was current at the snapshot (backup.c).  With
 * roll-forward, when the instance directory still holds that generation
 * (archived, or as <prefix>.log) and its header says it is the same file
 * (same log signature and create_time as the backup's copy), read the
 * instance's copy: it is the same log, as long or longer.  Without that the
 * generations after it would not join on (the backup's copy ends early).
 * Returns 1 and sets path (and *is_current) if the instance's copy is to be
 * read, 0 to keep the backup's copy.
 */
static int instance_copy(const amb_logsrc *src, uint32_t g, const char *bpath, char *path,
                         size_t size, int *is_current, amb_vfs *v)
{
	amb_loghdr bh, h;
	if (amb_loghdr_load(v, bpath, &bh) != 0)
		return 0; /* the backup's copy is read and its error reported */
	char p[PATH_MAX];
	for (int cur = 0; cur <= 1; cur++) {
		amb_log_path(p, sizeof(p), src->dir2, src->prefix, cur ? 0 : g);
		if (amb_loghdr_load(v, p, &h) != 0 || h.gen != g || h.create_time != bh.create_time ||
		    !amb_sig_eq(&h.sign_log, &bh.sign_log))
			continue;
		snprintf(path, size, "%s", p);
		*is_current = cur;
		return 1;
	}
	return 0;
}

/* Path of generation g: 1 found (path set, *is_current), 0 not found. */
static int find_gen(const amb_logsrc *src, int roll_forward, uint32_t g, char *path, size_t size,
                    int *is_current, amb_vfs *v)
{
	*is_current = 0;
	if (src->dir1 && g >= src->gen1_low && g <= src->gen1_high) {
		amb_log_path(path, size, src->dir1, src->prefix, g);
		if (access(path, F_OK) != 0)
			return 0;
		if (roll_forward && g == src->gen1_high && src->dir2) {
			char bpath[PATH_MAX];
			snprintf(bpath, sizeof(bpath), "%s", path);
			instance_copy(src, g, bpath, path, size, is_current, v);
		}
		return 1;
	}
	if (src->dir1 && !roll_forward)
		return 0;
	if (!src->dir2)
		return 0;
	amb_log_path(path, size, src->dir2, src->prefix, g);
	if (access(path, F_OK) == 0)
		return 1;
	amb_log_path(path, size, src->dir2, src->prefix, 0);
	amb_loghdr h;
	if (amb_loghdr_load(v, path, &h) == 0 && h.gen == g) {
		*is_current = 1;
		return 1;
	}
	return 0;
}

/* Is there any generation newer than g in dir2 (for gap messages)? */
static uint32_t newer_exists(const amb_logsrc *src, uint32_t g, amb_vfs *v)
{
	if (!src->dir2)
		return 0;
	uint32_t best = 0;
	DIR *d = opendir(src->dir2);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			uint32_t x = amb_log_parse_name(e->d_name, src->prefix);
			if (x > g && (!best || x < best))
				best = x;
		}
		closedir(d);
	}
	char path[PATH_MAX];
	amb_log_path(path, sizeof(path), src->dir2, src->prefix, 0);
	amb_loghdr h;
	if (amb_loghdr_load(v, path, &h) == 0 && h.gen > g && (!best || h.gen < best))
		best = h.gen;
	return best;
}

/* 0 if the log header at path is of rp's log stream, else AMS_EBADSIG
 * with the message that names a log of another instance. */
static int check_sign(const amb_replay *rp, const amb_loghdr *h, const char *path)
{
	if (amb_sig_eq(&h->sign_log, &rp->sign_log))
		return 0;
	return amb_err(AMS_EBADSIG, "%s: log signature does not match the databases' "
	               "(the log belongs to another instance)", path);
}

int amb_replay_run(amb_replay *rp, const amb_logsrc *src)
{
	amb_vfs *v = rp->vfs;
	parser ps;
	memset(&ps, 0, sizeof(ps));
	ps.rp = rp;
	ps.zero = amb_io_alloc(rp->page_size);
	ps.cur = amb_io_alloc(rp->page_size);
	ps.img = amb_io_alloc(rp->page_size);
	if (!ps.zero || !ps.cur || !ps.img) {
		free(ps.zero);
		free(ps.cur);
		free(ps.img);
		return amb_err(AMS_ENOMEM, "out of memory");
	}
	int rc = 0;
	uint32_t g = rp->start_gen;
	uint64_t prev_create = 0;
	int started = 0;
	amb_logfile lf;
	memset(&lf, 0, sizeof(lf));
	char path[PATH_MAX], npath[PATH_MAX];
	int is_cur = 0;
	rp->end_lsn = rp->start_lsn == UINT64_MAX ? 0 : rp->start_lsn;

	if (!find_gen(src, rp->roll_forward, g, path, sizeof(path), &is_cur, v)) {
		rc = amb_err(AMS_ELOGMISSING, "log generation %u (0x%08X) is missing: recovery must "
		             "start there (%s)", g, g, path);
		goto out;
	}
	for (;;) {
		rc = amb_log_load(v, path, &lf);
		if (rc)
			goto out;
		amb_logscan *s = &lf.scan;
		ps.gen = g;
		/* the signature first: a log of another instance is named as
		 * such, whatever generation it happens to hold */
		if ((rc = check_sign(rp, &s->hdr, path)) != 0)
			goto out;
		if (s->hdr.gen != g) {
			rc = amb_err(AMS_ECORRUPT, "%s holds log generation %u, expected %u", path, s->hdr.gen, g);
			goto out;
		}
		if (s->hdr.page_size != rp->page_size) {
			rc = amb_err(AMS_EBADSIG, "%s: log is for %u-byte pages, the databases have %u",
			             path, s->hdr.page_size, rp->page_size);
			goto out;
		}
		if (started && s->hdr.prev_create_time != prev_create) {
			rc = amb_err(AMS_ECORRUPT, "%s: log generation %u does not follow generation %u "
			             "(not contiguous)", path, g, g - 1);
			goto out;
		}
		if (started && s->hdr.start_lsn != rp->end_lsn + ps.have) {
			if (ps.have && s->hdr.start_lsn == ps.rec_lsn) {
				/* the stream was cut by a crash inside this record and
				 * recovery restarted it here: the partial record is void */
				ps.have = ps.need = 0;
			} else {
				rc = amb_err(AMS_ECORRUPT, "%s: log generation %u starts at LSN %llu, "
				             "generation %u ended at %llu", path, g,
				             (unsigned long long)s->hdr.start_lsn, g - 1,
				             (unsigned long long)(rp->end_lsn + ps.have));
				goto out;
			}
		}
		/* where does this generation's data end? */
		uint32_t ng = g + 1;
		int n_is_cur = 0;
		int have_next = !is_cur && find_gen(src, rp->roll_forward, ng, npath, sizeof(npath),
		                                    &n_is_cur, v);
		uint64_t gen_end = s->end_lsn;
		amb_loghdr nh;
		if (have_next) {
			if ((rc = amb_loghdr_load(v, npath, &nh)) != 0)
				goto out;
			/* the next generation's start ends this one: only if it is
			 * really the next one of this stream (a foreign or misplaced
			 * file is named as such, not as damage of this one) */
			if ((rc = check_sign(rp, &nh, npath)) != 0)
				goto out;
			if (nh.prev_create_time != s->hdr.create_time) {
				rc = amb_err(AMS_ECORRUPT, "%s: log generation %u does not follow generation %u "
				             "(not contiguous)", npath, ng, g);
				goto out;
			}
			if (nh.start_lsn > s->end_lsn) {
				rc = amb_err(AMS_ECORRUPT, "log generation %u (%s) is damaged at segment %u: its "
				             "data ends at LSN %llu but generation %u starts at %llu", g, path,
				             s->first_bad ? s->first_bad : s->valid_segs + 1,
				             (unsigned long long)s->end_lsn, ng,
				             (unsigned long long)nh.start_lsn);
				goto out;
			}
			gen_end = nh.start_lsn;
		} else if (s->damaged) {
			char why[160];
			rc = amb_err(AMS_ECORRUPT, "log generation %u (%s) is %s", g, path,
			             amb_logscan_damage(s, why, sizeof(why)));
			goto out;
		}
		/* feed the payload */
		uint64_t from = s->hdr.start_lsn;
		if (!started) {
			if (rp->start_lsn == UINT64_MAX) {
				from = UINT64_MAX;
				for (uint32_t i = 1; i <= s->valid_segs; i++) {
					unsigned char *seg = amb_seg(&lf, i);
					if (amb_seg_first_rec(seg) != AMB_SEG_NO_REC) {
						from = amb_seg_lsn(seg) + amb_seg_first_rec(seg);
						break;
					}
				}
				if (from == UINT64_MAX)
					from = gen_end; /* no record starts here */
			} else {
				from = rp->start_lsn;
				if (from < s->hdr.start_lsn || from > gen_end) {
					rc = amb_err(AMS_ECORRUPT, "the checkpoint (LSN %llu) is outside log "
					             "generation %u (LSN %llu-%llu)", (unsigned long long)from, g,
					             (unsigned long long)s->hdr.start_lsn,
					             (unsigned long long)gen_end);
					goto out;
				}
			}
			ps.rec_lsn = from;
			rp->end_lsn = from;
			started = 1;
		}
		for (uint32_t i = 1; i <= s->valid_segs && !ps.stop; i++) {
			unsigned char *seg = amb_seg(&lf, i);
			uint64_t a = amb_seg_lsn(seg), b = a + amb_seg_used(seg);
			if (b <= from || a >= gen_end)
				continue;
			uint64_t lo = a > from ? a : from, hi = b < gen_end ? b : gen_end;
			rc = feed(&ps, seg + AMB_SEG_HDR + (lo - a), (size_t)(hi - lo));
			if (rc)
				goto out;
		}
		rp->end_gen = g;
		rp->end_create_time = s->hdr.create_time;
		if (is_cur)
			rp->have_current = 1;
		prev_create = s->hdr.create_time;
		amb_log_free(&lf);
		if (ps.stop || is_cur)
			break;
		if (!have_next) {
			/* the end of the stream we may read; a gap before newer logs is
			 * an error, never a silent stop */
			uint32_t nx = (!src->dir1 || rp->roll_forward) ? newer_exists(src, g, v) : 0;
			if (nx) {
				rc = amb_err(AMS_ELOGMISSING, "log generation %u (0x%08X) is missing: "
				             "generations %u..%u cannot be replayed past it", ng, ng, g, nx);
				goto out;
			}
			break;
		}
		g = ng;
		is_cur = n_is_cur;
		memcpy(path, npath, sizeof(path));
	}
	/* a record cut off at the end of the last generation: a torn tail */
	if (!rc && ps.ntorn)
		rc = amb_err(AMS_ECORRUPT, "%s: page %u is damaged and the log holds no image of it "
		             "after LSN %llu: it cannot be recovered", rp->dbnames[ps.torn[0].db],
		             ps.torn[0].pgno, (unsigned long long)ps.torn[0].lsn);
out:
	amb_log_free(&lf);
	free(ps.buf);
	free(ps.zero);
	free(ps.cur);
	free(ps.img);
	free(ps.torn);
	return rc;
}

int ams_recover(const char *dir, const ams_open_opts *opts)
{
	ams_instance *in;
	int rc = ams_open(dir, opts, &in);
	if (rc)
		return rc;
	return ams_close(in);
}

int ams_hard_recover(const char *env_path, const ams_open_opts *opts)
{
	amb_vfs *v = opts && opts->vfs ? opts->vfs : amb_vfs_posix();
	amb_restore_env *env = calloc(1, sizeof(*env));
	if (!env)
		return amb_err(AMS_ENOMEM, "out of memory");
	int rc = amb_restore_env_load(env_path, env);
	if (rc) {
		free(env);
		return rc;
	}
	int fds[AMB_MAX_DBS];
	amb_dbhdr hdr[AMB_MAX_DBS];
	char paths[AMB_MAX_DBS][PATH_MAX];
	int n = 0;
	amb_replay rp;
	memset(&rp, 0, sizeof(rp));
	char msg[512];

	env->status = AMB_RECOVER_STARTED;
	if ((rc = amb_restore_env_store(env_path, env)) != 0)
		goto out;
	for (n = 0; n < env->ndatabases; n++) {
		snprintf(paths[n], sizeof(paths[n]), "%s/%s", env->instance_dir, env->databases[n]);
		fds[n] = v->open(v, paths[n], O_RDWR, 0);
		if (fds[n] < 0) {
			rc = amb_err(fds[n] == -ENOENT ? AMS_ENOTFOUND : AMS_EIO, "%s: cannot open: %s",
			             paths[n], strerror(-fds[n]));
			goto out;
		}
		if ((rc = amb_dbhdr_load(v, fds[n], paths[n], &hdr[n], NULL)) != 0) {
			v->close(v, fds[n]);
			goto out;
		}
	}
	/* databases in header order */
	for (int i = 0; i < n; i++) {
		if ((int)hdr[i].dbidx >= n) {
			rc = amb_err(AMS_EINVAL, "%s is database %u of its instance but restore.env lists "
			             "only %d databases", paths[i], hdr[i].dbidx, n);
			goto out;
		}
		if (!amb_sig_eq(&hdr[i].sign_log, &hdr[0].sign_log) || hdr[i].page_size != hdr[0].page_size) {
			rc = amb_err(AMS_EBADSIG, "%s and %s do not belong to the same instance", paths[i],
			             paths[0]);
			goto out;
		}
		if (hdr[i].state == AMB_DBSTATE_CLEAN && !hdr[i].full_cur.time) {
			rc = amb_err(AMS_EINVAL, "%s is neither a backup copy nor in dirty shutdown: "
			             "nothing to recover", paths[i]);
			goto out;
		}
	}
	rp.vfs = v;
	rp.page_size = hdr[0].page_size;
	rp.ndb = n;
	for (int i = 0; i < n; i++) {
		int k = (int)hdr[i].dbidx;
		rp.fds[k] = fds[i];
		rp.dbnames[k] = env->databases[i];
	}
	rp.sign_log = hdr[0].sign_log;
	rp.start_gen = env->gen_low;
	rp.start_lsn = UINT64_MAX;
	rp.until_us = env->until_us;
	rp.roll_forward = env->roll_forward;
	amb_logsrc src = {env->backup_log_dir, env->gen_low, env->gen_high, env->instance_dir,
	                  env->prefix};
	rc = amb_replay_run(&rp, &src);
	if (rc)
		goto out;
	if (rp.end_gen < env->gen_high && !rp.stopped_until) {
		rc = amb_err(AMS_ELOGMISSING, "log generation %u (0x%08X) of the backup is missing",
		             rp.end_gen + 1, rp.end_gen + 1);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		int s = v->sync(v, fds[i], 1);
		if (s) {
			rc = amb_err(AMS_EIO, "%s: fdatasync failed: %s", paths[i], strerror(-s));
			goto out;
		}
	}
	uint64_t now = amb_now_us();
	for (int i = 0; i < n; i++) {
		amb_dbhdr *h = &hdr[i];
		int k = (int)h->dbidx;
		memset(&h->full_cur, 0, sizeof(h->full_cur));
		h->state = AMB_DBSTATE_CLEAN;
		h->gen_min_required = h->gen_max_required = 0;
		h->gen_max_committed = rp.end_gen;
		h->consistent.gen = rp.end_gen;
		h->consistent.seg = 0;
		h->consistent.off = 0;
		h->consistent_lsn = rp.end_lsn;
		h->consistent_time = now;
		if (rp.max_stamp[k] > h->last_stamp)
			h->last_stamp = rp.max_stamp[k];
		if (rp.npages[k] > h->page_count)
			h->page_count = rp.npages[k];
		if ((rc = amb_dbhdr_store(v, fds[i], paths[i], h)) != 0)
			goto out;
	}
	/* a checkpoint left from before the restore would point into logs
	 * that no longer describe these databases */
	char chk[PATH_MAX];
	snprintf(chk, sizeof(chk), "%s/%s.chk", env->instance_dir, env->prefix);
	if (!rp.have_current)
		amb_durable_unlink(v, chk);
out:
	for (int i = 0; i < n; i++)
		v->close(v, fds[i]);
	snprintf(msg, sizeof(msg), "%s", rc ? ams_errmsg() : "");
	env->status = rc ? AMB_RECOVER_FAILED : AMB_RECOVER_ENDED;
	env->error = rc;
	snprintf(env->error_msg, sizeof(env->error_msg), "%s", msg);
	env->recover_time_us = amb_now_us();
	if (amb_restore_env_store(env_path, env) && !rc)
		rc = AMS_EIO;
	if (rc)
		amb_err(rc, "%s", msg);
	free(env);
	return rc;
}

/*
 * log.c - log file names and whole-file verification.
 *
 * The log format is in format.h.  A log file is verified segment by
 * segment: the header segment first (its checksum seed is 0), then the data
 * segments in order (seed: generation << 32 | segment number).  A data
 * segment is part of the "valid run" if it verifies (single-bit errors are
 * corrected), names its own segment number and generation, and starts at
 * the LSN where the previous one ended.  The run ends at the first segment
 * that is all zero (never written) or fails; if a segment written by a
 * LATER flush verifies after that point, the failure cannot be a torn tail
 * and the file is reported damaged.
 */
#include "store/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/checksum.h"
#include "store/dbfile.h"
#include "store/err.h"

void amb_log_path(char *buf, size_t size, const char *dir, const char *prefix, uint32_t gen)
{
	if (gen == 0)
		snprintf(buf, size, "%s/%s.log", dir, prefix);
	else if (gen == UINT32_MAX)
		snprintf(buf, size, "%s/%stmp.log", dir, prefix);
	else
		snprintf(buf, size, "%s/%s%08X.log", dir, prefix, gen);
}

uint32_t amb_log_parse_name(const char *name, const char *prefix)
{
	size_t pl = strlen(prefix);
	if (strncmp(name, prefix, pl) != 0 || strlen(name) != pl + 12 ||
	    strcmp(name + pl + 8, ".log") != 0)
		return 0;
	uint32_t g = 0;
	for (size_t i = pl; i < pl + 8; i++) {
		char c = name[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return 0;
		g = g * 16 + d;
	}
	return g;
}

uint16_t amb_seg_used(const unsigned char *seg)
{
	uint16_t v;
	memcpy(&v, seg + 38, 2);
	return v;
}

uint32_t amb_seg_first_rec(const unsigned char *seg)
{
	uint32_t v;
	memcpy(&v, seg + 40, 4);
	return v;
}

uint64_t amb_seg_lsn(const unsigned char *seg)
{
	uint64_t v;
	memcpy(&v, seg + 16, 8);
	return v;
}

static int all_zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Is segment i a structurally valid data segment of gen (after verify)? */
static int seg_ok(unsigned char *seg, uint32_t gen, uint32_t i, uint32_t nsegs, uint32_t *corrected)
{
	amb_ck_result r = amb_ck_verify(seg, AMB_SEG_SIZE, amb_seg_seed(gen, i), NULL);
	if (r == AMB_CK_DAMAGED)
		return 0;
	amb_blk b;
	amb_blk_get(seg, &b);
	uint32_t ff;
	uint16_t fc;
	memcpy(&ff, seg + 32, 4);
	memcpy(&fc, seg + 36, 2);
	if (b.type != AMB_BT_LOGSEG || b.no != i || b.aux != gen || amb_seg_used(seg) > AMB_SEG_PAYLOAD ||
	    ff == 0 || ff > i || fc == 0 || (uint64_t)ff + fc <= i || (uint64_t)ff + fc > (uint64_t)nsegs + 1)
		return 0;
	uint32_t fr = amb_seg_first_rec(seg);
	if (fr != AMB_SEG_NO_REC && fr >= amb_seg_used(seg))
		return 0;
	if (r == AMB_CK_CORRECTED)
		(*corrected)++;
	return 1;
}

static int load_header(unsigned char *seg0, const char *path, amb_loghdr *h, uint32_t *corrected)
{
	amb_blk b;
	amb_blk_get(seg0, &b);
	uint32_t magic;
	memcpy(&magic, seg0 + 32, 4);
	amb_ck_result r = amb_ck_verify(seg0, AMB_SEG_SIZE, 0, NULL);
	if (r == AMB_CK_DAMAGED) {
		if (magic != AMB_LOG_MAGIC || b.type != AMB_BT_LOGHDR)
			return amb_err(AMS_ENOTDB, "%s: not an amber log file", path);
		return amb_err(AMS_ECORRUPT, "%s: log header is damaged", path);
	}
	if (r == AMB_CK_CORRECTED)
		(*corrected)++;
	amb_blk_get(seg0, &b);
	memcpy(h, seg0 + 32, sizeof(*h));
	if (h->magic != AMB_LOG_MAGIC || b.type != AMB_BT_LOGHDR)
		return amb_err(AMS_ENOTDB, "%s: not an amber log file", path);
	if (h->version != AMB_FORMAT_VERSION)
		return amb_err(AMS_EVERSION, "%s: log format version %u is not supported", path,
		               h->version);
	if (h->seg_size != AMB_SEG_SIZE || h->gen == 0 || h->gen == UINT32_MAX || h->ndbs > AMB_MAX_DBS)
		return amb_err(AMS_ECORRUPT, "%s: log header has impossible values", path);
	h->prefix[sizeof(h->prefix) - 1] = '\0';
	return 0;
}

int amb_log_load(amb_vfs *v, const char *path, amb_logfile *lf)
{
	memset(lf, 0, sizeof(*lf));
	int fd = v->open(v, path, O_RDONLY, 0);
	if (fd < 0)
		return amb_err(fd == -ENOENT ? AMS_ENOTFOUND : AMS_EIO, "%s: cannot open: %s", path,
		               strerror(-fd));
	off_t size;
	int rc = v->size(v, fd, &size);
	if (rc < 0) {
		v->close(v, fd);
		return amb_err(AMS_EIO, "%s: %s", path, strerror(-rc));
	}
	if (size < (off_t)AMB_SEG_SIZE) {
		v->close(v, fd);
		return amb_err(AMS_ENOTDB, "%s: too short to be a log file (%lld bytes)", path,
		               (long long)size);
	}
	if (size > (off_t)1 << 32) {
		v->close(v, fd);
		return amb_err(AMS_ENOTDB, "%s: too large to be a log file", path);
	}
	lf->size = (size_t)size;
	lf->buf = amb_io_alloc(lf->size + AMB_SEG_SIZE);
	if (!lf->buf) {
		v->close(v, fd);
		return amb_err(AMS_ENOMEM, "%s: out of memory", path);
	}
	ssize_t n = v->pread(v, fd, lf->buf, lf->size, 0);
	v->close(v, fd);
	if (n < 0 || (size_t)n != lf->size) {
		amb_log_free(lf);
		return amb_err(AMS_EIO, "%s: read failed", path);
	}
	amb_logscan *s = &lf->scan;
	rc = load_header(lf->buf, path, &s->hdr, &s->corrected);
	if (rc) {
		amb_log_free(lf);
		return rc;
	}
	s->hdr_ok = 1;
	uint32_t gen = s->hdr.gen;
	uint32_t nsegs = (uint32_t)(lf->size / AMB_SEG_SIZE) - 1;
	s->nsegs = nsegs;
	uint64_t lsn = s->hdr.start_lsn;
	uint32_t i = 1, last_ff = 0, last_fc = 0;
	for (; i <= nsegs; i++) {
		unsigned char *seg = amb_seg(lf, i);
		if (!seg_ok(seg, gen, i, nsegs, &s->corrected) || amb_seg_lsn(seg) != lsn)
			break;
		memcpy(&last_ff, seg + 32, 4);
		uint16_t fc;
		memcpy(&fc, seg + 36, 2);
		last_fc = fc;
		lsn += amb_seg_used(seg);
		s->valid_segs++;
	}
	s->end_lsn = lsn;
	if (i <= nsegs) {
		unsigned char *seg = amb_seg(lf, i);
		int zero = all_zero(seg, AMB_SEG_SIZE);
		if (!zero) {
			s->first_bad = i;
			s->bad_segs++;
		}
		/* the flush the run stopped in */
		uint32_t torn_first = (last_fc && i < last_ff + last_fc) ? last_ff : i;
		for (uint32_t j = i + 1; j <= nsegs; j++) {
			unsigned char *sj = amb_seg(lf, j);
			if (all_zero(sj, AMB_SEG_SIZE))
				continue;
			uint32_t dummy = 0;
			unsigned char tmp[AMB_SEG_SIZE];
			memcpy(tmp, sj, AMB_SEG_SIZE);
			if (!seg_ok(tmp, gen, j, nsegs, &dummy)) {
				s->bad_segs++;
				if (!s->first_bad)
					s->first_bad = j;
				continue;
			}
			uint32_t ff;
			memcpy(&ff, tmp + 32, 4);
			if (ff > torn_first) {
				s->damaged = 1;
				if (!s->first_bad)
					s->first_bad = i;
			}
		}
	}
	if (lf->size % AMB_SEG_SIZE) {
		s->bad_segs++;
		if (!s->first_bad)
			s->first_bad = nsegs + 1;
	}
	/* a log file is written whole (zeros, then its header) and synced
	 * before it is used, so a crash never leaves one of another size:
	 * a short one lost its end, and its "torn tail" is damage */
	s->size = lf->size;
	if (s->hdr.file_size != lf->size) {
		s->wrong_size = 1;
		s->damaged = 1;
		if (!s->first_bad)
			s->first_bad = s->valid_segs + 1;
	}
	return 0;
}

const char *amb_logscan_damage(const amb_logscan *s, char *buf, size_t size)
{
	if (s->wrong_size)
		snprintf(buf, size, "%s: the file has %llu bytes, its header says %llu",
		         s->size < s->hdr.file_size ? "truncated" : "wrong size",
		         (unsigned long long)s->size, (unsigned long long)s->hdr.file_size);
	else
		snprintf(buf, size, "damaged at segment %u: valid data of a later flush follows the "
		         "damage", s->first_bad);
	return buf;
}

void amb_log_free(amb_logfile *lf)
{
	free(lf->buf);
	lf->buf = NULL;
}

int amb_log_scan(amb_vfs *v, const char *path, amb_logscan *out)
{
	amb_logfile lf;
	int rc = amb_log_load(v, path, &lf);
	if (rc)
		return rc;
	*out = lf.scan;
	amb_log_free(&lf);
	return 0;
}

int amb_loghdr_load(amb_vfs *v, const char *path, amb_loghdr *out)
{
	int fd = v->open(v, path, O_RDONLY, 0);
	if (fd < 0)
		return amb_err(fd == -ENOENT ? AMS_ENOTFOUND : AMS_EIO, "%s: cannot open: %s", path,
		               strerror(-fd));
	unsigned char seg[AMB_SEG_SIZE];
	ssize_t n = v->pread(v, fd, seg, sizeof(seg), 0);
	v->close(v, fd);
	if (n < 0)
		return amb_err(AMS_EIO, "%s: read failed", path);
	if ((size_t)n < sizeof(seg))
		return amb_err(AMS_ENOTDB, "%s: too short to be a log file", path);
	uint32_t corrected = 0;
	return load_header(seg, path, out, &corrected);
}

void amb_log_scan_archived(const char *dir, const char *prefix, uint32_t *oldest,
                           uint32_t *newest)
{
	*oldest = *newest = 0;
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		uint32_t g = amb_log_parse_name(e->d_name, prefix);
		if (!g)
			continue;
		if (!*oldest || g < *oldest)
			*oldest = g;
		if (g > *newest)
			*newest = g;
	}
	closedir(d);
}

int amb_log_unsynced_header(amb_vfs *v, const char *dir, const char *prefix,
                            const amb_sig *sign_log, amb_loghdr *out)
{
	char cur[PATH_MAX], arch[PATH_MAX];
	amb_log_path(cur, sizeof(cur), dir, prefix, 0);
	amb_loghdr h;
	int rc = amb_loghdr_load(v, cur, &h);
	if (rc != AMS_ENOTDB && rc != AMS_ECORRUPT)
		return 0;
	uint32_t oldest, newest;
	amb_log_scan_archived(dir, prefix, &oldest, &newest);
	if (!newest || newest == UINT32_MAX - 1)
		return 0;
	amb_log_path(arch, sizeof(arch), dir, prefix, newest);
	amb_logscan prev;
	if (amb_log_scan(v, arch, &prev) != 0 || prev.damaged || prev.hdr.gen != newest ||
	    (sign_log && !amb_sig_eq(&prev.hdr.sign_log, sign_log)))
		return 0;
	int fd = v->open(v, cur, O_RDONLY, 0);
	if (fd < 0)
		return 0;
	off_t size = 0;
	rc = v->size(v, fd, &size);
	v->close(v, fd);
	if (rc != 0 || (uint64_t)size != prev.hdr.file_size)
		return 0;
	*out = prev.hdr;
	out->gen = newest + 1;
	out->prev_create_time = prev.hdr.create_time;
	out->create_time = amb_now_us();
	if (out->create_time <= prev.hdr.create_time)
		out->create_time = prev.hdr.create_time + 1;
	out->start_lsn = prev.end_lsn;
	return 1;
}

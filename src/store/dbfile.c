/*
 * dbfile.c - database file primitives: header copies, free pages, the
 * checkpoint file, signatures and time stamps (see dbfile.h; the on-disk
 * format is in format.h).
 */
#include "store/dbfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "common/checksum.h"
#include "common/durable.h"
#include "store/err.h"

/* ---- block header ------------------------------------------------------ */

void amb_blk_get(const void *blk, amb_blk *out)
{
	const unsigned char *p = blk;
	memcpy(&out->hash, p + 0, 8);
	memcpy(&out->ecc, p + 8, 4);
	memcpy(&out->no, p + 12, 4);
	memcpy(&out->stamp, p + 16, 8);
	memcpy(&out->type, p + 24, 2);
	memcpy(&out->flags, p + 26, 2);
	memcpy(&out->aux, p + 28, 4);
}

void amb_blk_put(void *blk, const amb_blk *in)
{
	unsigned char *p = blk;
	memcpy(p + 12, &in->no, 4);
	memcpy(p + 16, &in->stamp, 8);
	memcpy(p + 24, &in->type, 2);
	memcpy(p + 26, &in->flags, 2);
	memcpy(p + 28, &in->aux, 4);
}

int amb_page_size_ok(uint32_t page_size)
{
	return page_size == 4096 || page_size == 8192 || page_size == 32768;
}

static uint32_t rd32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static uint16_t rd16(const unsigned char *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

/* ---- pages --------------------------------------------------------------- */

void amb_dbhdr_to_page(const amb_dbhdr *hdr, void *page, uint32_t pgno)
{
	amb_blk b = {
		.no = pgno,
		.stamp = hdr->seq,
		.type = AMB_BT_DBHDR,
	};
	memset(page, 0, hdr->page_size);
	amb_blk_put(page, &b);
	memcpy((unsigned char *)page + sizeof(amb_blk), hdr, sizeof(*hdr));
	amb_ck_seal(page, hdr->page_size, pgno);
}

void amb_page_format_free(void *page, uint32_t page_size, uint32_t pgno, uint64_t stamp)
{
	amb_blk b = {
		.no = pgno,
		.stamp = stamp,
		.type = AMB_BT_FREE,
	};
	memset(page, 0, page_size);
	amb_blk_put(page, &b);
	amb_ck_seal(page, page_size, pgno);
}

/* ---- database header ---------------------------------------------------- */

/* One header copy as found on disk. */
typedef struct hdr_copy {
	int valid;     /* checksum good (maybe corrected), type/no/magic/size right */
	int corrected;
	amb_dbhdr hdr;
} hdr_copy;

/*
 * Examine copy `no` (0 or 1) assuming page size ps.  buf holds the first
 * `have` bytes of the file; scratch holds ps bytes.
 */
static void hdr_try(const unsigned char *buf, size_t have, uint32_t ps, uint32_t no,
                    unsigned char *scratch, hdr_copy *c)
{
	memset(c, 0, sizeof(*c));
	size_t off = (size_t)no * ps;
	if (off + ps > have)
		return;
	memcpy(scratch, buf + off, ps);
	amb_ck_result r = amb_ck_verify(scratch, ps, no, NULL);
	if (r == AMB_CK_DAMAGED)
		return;
	amb_blk b;
	amb_blk_get(scratch, &b);
	if (b.type != AMB_BT_DBHDR || b.no != no)
		return;
	memcpy(&c->hdr, scratch + sizeof(amb_blk), sizeof(c->hdr));
	if (c->hdr.magic != AMB_DB_MAGIC || c->hdr.page_size != ps)
		return;
	c->valid = 1;
	c->corrected = r == AMB_CK_CORRECTED;
}

/* Does the block at p (at least 40 bytes) look like a header copy at all? */
static int hdr_lookalike(const unsigned char *p, size_t avail, uint32_t no)
{
	if (avail < sizeof(amb_blk) + 8)
		return 0;
	if (rd32(p + sizeof(amb_blk)) == AMB_DB_MAGIC)
		return 1;
	return rd16(p + 24) == AMB_BT_DBHDR && rd32(p + 12) == no;
}

static const uint32_t page_sizes[] = {4096, 8192, 32768};

int amb_dbhdr_load(amb_vfs *v, int fd, const char *path, amb_dbhdr *out, int *status)
{
	const size_t want = 2 * 32768;
	unsigned char *buf = amb_io_alloc(want + 32768);
	if (!buf)
		return amb_err(AMS_ENOMEM, "%s: out of memory reading the header", path);
	unsigned char *scratch = buf + want;
	int rc = 0;

	if (status)
		*status = 0;
	ssize_t n = v->pread(v, fd, buf, want, 0);
	if (n < 0) {
		rc = amb_err(AMS_EIO, "%s: cannot read the database header: %s", path,
		             strerror((int)-n));
		goto out;
	}
	size_t have = (size_t)n;
	if (have < 4096) {
		rc = amb_err(AMS_ENOTDB,
		             "%s: not an amber database (file is %zu bytes, too short for a header)",
		             path, have);
		goto out;
	}

	/*
	 * The page size is in the header, which may be the damaged part: try
	 * every allowed size.  A copy verifies only with its real page size
	 * (the hash covers the whole page), so the first size under which a
	 * copy is valid is the right one.
	 */
	hdr_copy c[2];
	uint32_t ps = 0;
	for (size_t i = 0; i < sizeof(page_sizes) / sizeof(page_sizes[0]); i++) {
		hdr_try(buf, have, page_sizes[i], 0, scratch, &c[0]);
		hdr_try(buf, have, page_sizes[i], 1, scratch, &c[1]);
		if (c[0].valid || c[1].valid) {
			ps = page_sizes[i];
			break;
		}
	}
	if (!ps) {
		/* Neither copy is valid under any page size. */
		int looks = hdr_lookalike(buf, have, 0);
		for (size_t i = 0; i < sizeof(page_sizes) / sizeof(page_sizes[0]) && !looks; i++)
			if (page_sizes[i] < have)
				looks = hdr_lookalike(buf + page_sizes[i], have - page_sizes[i], 1);
		if (status)
			*status = AMB_HDR_COPY0_BAD | AMB_HDR_COPY1_BAD;
		if (looks)
			rc = amb_err(AMS_ECORRUPT,
			             "%s: both database header copies (pages 0 and 1) are damaged",
			             path);
		else
			rc = amb_err(AMS_ENOTDB, "%s: not an amber database (no database header)",
			             path);
		goto out;
	}

	int st = 0;
	if (!c[0].valid)
		st |= AMB_HDR_COPY0_BAD;
	if (!c[1].valid)
		st |= AMB_HDR_COPY1_BAD;
	if (c[0].corrected || c[1].corrected)
		st |= AMB_HDR_CORRECTED;
	int pick;
	if (c[0].valid && c[1].valid) {
		if (c[0].hdr.seq != c[1].hdr.seq)
			st |= AMB_HDR_COPIES_DIFFER;
		pick = c[1].hdr.seq > c[0].hdr.seq ? 1 : 0;
	} else {
		pick = c[0].valid ? 0 : 1;
	}
	if (status)
		*status = st;
	if (c[pick].hdr.version != AMB_FORMAT_VERSION) {
		rc = amb_err(AMS_EVERSION,
		             "%s: database format version %u is not supported (this build reads %u)",
		             path, c[pick].hdr.version, AMB_FORMAT_VERSION);
		goto out;
	}
	*out = c[pick].hdr;
out:
	free(buf);
	return rc;
}

int amb_dbhdr_store_copy(amb_vfs *v, int fd, const char *path, const amb_dbhdr *hdr,
                         uint32_t no)
{
	if (!amb_page_size_ok(hdr->page_size))
		return amb_err(AMS_EINVAL, "%s: bad page size %u in the header to write", path,
		               hdr->page_size);
	if (no > 1)
		return amb_err(AMS_EINVAL, "%s: no header copy %u", path, no);
	unsigned char *page = amb_io_alloc(hdr->page_size);
	if (!page)
		return amb_err(AMS_ENOMEM, "%s: out of memory writing the header", path);
	int rc = 0;
	amb_dbhdr_to_page(hdr, page, no);
	ssize_t w = v->pwrite(v, fd, page, hdr->page_size, (off_t)no * hdr->page_size);
	if (w < 0) {
		rc = amb_err(amb_errno_code((int)w), "%s: cannot write header copy %u (page %u): %s",
		             path, no, no, strerror((int)-w));
	} else {
		int r = v->sync(v, fd, 1);
		if (r < 0)
			rc = amb_err(AMS_EIO, "%s: fdatasync after header copy %u failed: %s", path, no,
			             strerror(-r));
	}
	free(page);
	return rc;
}

int amb_dbhdr_store(amb_vfs *v, int fd, const char *path, amb_dbhdr *hdr)
{
	if (!amb_page_size_ok(hdr->page_size))
		return amb_err(AMS_EINVAL, "%s: bad page size %u in the header to write", path,
		               hdr->page_size);
	hdr->seq++;
	int rc = amb_dbhdr_store_copy(v, fd, path, hdr, 0);
	if (!rc)
		rc = amb_dbhdr_store_copy(v, fd, path, hdr, 1);
	return rc;
}

/* ---- checkpoint file -------------------------------------------------------- */

#define CHK_COPY 4096u

int amb_chk_load(amb_vfs *v, const char *path, amb_chk *out, uint64_t *seq, int *status)
{
	unsigned char buf[AMB_CHK_FILE_SIZE];
	if (status)
		*status = 0;
	int fd = v->open(v, path, O_RDONLY, 0);
	if (fd < 0) {
		if (fd == -ENOENT)
			return amb_err(AMS_ENOTFOUND, "%s: no checkpoint file", path);
		return amb_err(AMS_EIO, "%s: cannot open the checkpoint: %s", path, strerror(-fd));
	}
	ssize_t n = v->pread(v, fd, buf, sizeof(buf), 0);
	v->close(v, fd);
	if (n < 0)
		return amb_err(AMS_EIO, "%s: cannot read the checkpoint: %s", path,
		               strerror((int)-n));

	struct {
		int valid, corrected, looks;
		uint64_t seq;
		amb_chk chk;
	} c[2];
	memset(c, 0, sizeof(c));
	for (uint32_t no = 0; no < 2; no++) {
		size_t off = (size_t)no * CHK_COPY;
		if ((size_t)n < off + CHK_COPY) {
			if ((size_t)n >= off + sizeof(amb_blk) + 4)
				c[no].looks = rd32(buf + off + sizeof(amb_blk)) == AMB_CHK_MAGIC;
			continue;
		}
		unsigned char *p = buf + off;
		c[no].looks = rd32(p + sizeof(amb_blk)) == AMB_CHK_MAGIC ||
		              (rd16(p + 24) == AMB_BT_CHK && rd32(p + 12) == no);
		amb_ck_result r = amb_ck_verify(p, CHK_COPY, no, NULL);
		if (r == AMB_CK_DAMAGED)
			continue;
		amb_blk b;
		amb_blk_get(p, &b);
		memcpy(&c[no].chk, p + sizeof(amb_blk), sizeof(amb_chk));
		if (b.type != AMB_BT_CHK || b.no != no || c[no].chk.magic != AMB_CHK_MAGIC)
			continue;
		c[no].valid = 1;
		c[no].looks = 1;
		c[no].corrected = r == AMB_CK_CORRECTED;
		c[no].seq = b.stamp;
	}

	int st = 0;
	if (!c[0].valid)
		st |= AMB_HDR_COPY0_BAD;
	if (!c[1].valid)
		st |= AMB_HDR_COPY1_BAD;
	if (c[0].corrected || c[1].corrected)
		st |= AMB_HDR_CORRECTED;
	if (status)
		*status = st;
	if (!c[0].valid && !c[1].valid) {
		if (c[0].looks || c[1].looks)
			return amb_err(AMS_ECORRUPT, "%s: both checkpoint copies are damaged", path);
		return amb_err(AMS_ENOTDB, "%s: not an amber checkpoint file", path);
	}
	int pick;
	if (c[0].valid && c[1].valid) {
		if (c[0].seq != c[1].seq)
			st |= AMB_HDR_COPIES_DIFFER;
		pick = c[1].seq > c[0].seq ? 1 : 0;
	} else {
		pick = c[0].valid ? 0 : 1;
	}
	if (status)
		*status = st;
	if (c[pick].chk.version != AMB_FORMAT_VERSION)
		return amb_err(AMS_EVERSION,
		               "%s: checkpoint format version %u is not supported (this build reads %u)",
		               path, c[pick].chk.version, AMB_FORMAT_VERSION);
	*out = c[pick].chk;
	if (seq)
		*seq = c[pick].seq;
	return 0;
}

int amb_chk_store(amb_vfs *v, const char *path, const amb_chk *chk, uint64_t seq)
{
	unsigned char buf[AMB_CHK_FILE_SIZE];
	memset(buf, 0, sizeof(buf));
	for (uint32_t no = 0; no < 2; no++) {
		unsigned char *p = buf + (size_t)no * CHK_COPY;
		amb_blk b = {
			.no = no,
			.stamp = seq,
			.type = AMB_BT_CHK,
		};
		amb_blk_put(p, &b);
		memcpy(p + sizeof(amb_blk), chk, sizeof(*chk));
		amb_ck_seal(p, CHK_COPY, no);
	}
	int r = amb_durable_write(v, path, buf, sizeof(buf));
	if (r < 0)
		return amb_err(amb_errno_code(r) == AMS_ENOSPC ? AMS_ENOSPC : AMS_EIO,
		               "%s: cannot write the checkpoint: %s", path, strerror(-r));
	return 0;
}

/* ---- signatures and times -------------------------------------------------- */

uint64_t amb_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void amb_sig_new(amb_sig *sig)
{
	memset(sig, 0, sizeof(*sig));
	size_t got = 0;
	while (got < sizeof(sig->random)) {
		ssize_t r = getrandom(sig->random + got, sizeof(sig->random) - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		got += (size_t)r;
	}
	sig->time = amb_now_us();
	if (got < sizeof(sig->random)) {
		/* getrandom(2) unavailable: mix what we have (never happens on
		 * supported kernels, but a signature must still differ). */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t x = sig->time ^ ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^
		             (uintptr_t)sig;
		for (size_t i = got; i < sizeof(sig->random); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			sig->random[i] = (uint8_t)x;
		}
	}
	char host[256];
	if (gethostname(host, sizeof(host)) != 0)
		host[0] = '\0';
	host[sizeof(host) - 1] = '\0';
	size_t hl = strnlen(host, sizeof(sig->host) - 1);
	memcpy(sig->host, host, hl);
}

int amb_sig_eq(const amb_sig *a, const amb_sig *b)
{
	return memcmp(a->random, b->random, sizeof(a->random)) == 0 && a->time == b->time &&
	       memcmp(a->host, b->host, sizeof(a->host)) == 0;
}

/* "YYYY-MM-DD HH:MM:SS" of a time in µs into buf, and the µs remainder. */
static int fmt_secs(uint64_t us, char *buf, size_t size, unsigned *frac)
{
	time_t secs = (time_t)(us / 1000000u);
	struct tm tm;
	*frac = (unsigned)(us % 1000000u);
	if (us / 1000000u > (uint64_t)253402300799u || !gmtime_r(&secs, &tm)) /* past 9999 */
		return -1;
	snprintf(buf, size, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
	         tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	return 0;
}

void amb_time_format(uint64_t us, char *buf, size_t size)
{
	char s[64];
	unsigned frac;
	if (size == 0)
		return;
	if (us == 0) {
		snprintf(buf, size, "none");
		return;
	}
	if (fmt_secs(us, s, sizeof(s), &frac) < 0) {
		snprintf(buf, size, "invalid time (%llu us)", (unsigned long long)us);
		return;
	}
	snprintf(buf, size, "%s.%06u", s, frac);
}

void amb_sig_format(const amb_sig *sig, char *buf, size_t size)
{
	char t[64], rnd[2 * sizeof(sig->random) + 1], host[sizeof(sig->host) + 1];
	unsigned frac;
	if (size == 0)
		return;
	if (sig->time == 0)
		snprintf(t, sizeof(t), "none");
	else if (fmt_secs(sig->time, t, sizeof(t), &frac) == 0)
		snprintf(t + strlen(t), sizeof(t) - strlen(t), ".%03u", frac / 1000u);
	else
		snprintf(t, sizeof(t), "invalid (%llu us)", (unsigned long long)sig->time);
	for (size_t i = 0; i < sizeof(sig->random); i++)
		snprintf(rnd + 2 * i, 3, "%02x", sig->random[i]);
	size_t hl = 0;
	for (; hl < sizeof(sig->host) && sig->host[hl]; hl++) {
		unsigned char ch = (unsigned char)sig->host[hl];
		host[hl] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
	}
	host[hl] = '\0';
	snprintf(buf, size, "Create time: %s Rand: %s Computer: %s", t, rnd, host);
}

/*
 * oracle_check.c - amber-oracle-check [--acks-before BYTES] ORACLE DUMP
 *
 * Proves the rule of design.md section 7 against the oracle written by
 * `amber-store serve --load RATE --oracle FILE` and the output of
 * `amber-store dump DIR`:
 *
 *   every acknowledged transaction is fully present, every other begun
 *   transaction is either fully present or fully absent, and nothing else
 *   exists.
 *
 * Oracle lines:  begin <seq> <op> [<op> ...]   |   ack <seq>
 *                op = put:<table>:<key>:<sha256 hex> | del:<table>:<key>
 * Dump lines:    <table>\t<key>\t<sha256 hex>   (\xHH escapes decoded)
 *
 * The workload's own promises are checked as input validity (exit 2): seqs
 * are unique, an ack follows its begin, a key is put at most once, a delete
 * names a key whose put was acknowledged earlier in the file, and each key
 * is deleted at most once.  Hence a key put by a transaction that was not
 * acknowledged is never deleted by anyone.
 *
 * An operation is "applied" when:
 *   put K:H  K is in the dump (with hash H, else a hash mismatch is
 *            reported), or K is absent and some transaction deletes K (the
 *            put was acknowledged, the delete explains the absence);
 *   del K    K is absent from the dump.
 * A transaction is present when all its operations are applied, absent when
 * none is.  Violations: an acknowledged transaction not fully present, any
 * transaction partly applied, a dump record no transaction put, a record
 * whose hash differs from its put, a dump out of order.
 *
 * With --acks-before BYTES (a shadow or backup taken while the oracle was
 * BYTES long) only acks that start before that offset must be present; a
 * transaction acknowledged later may be present or absent, never partial.
 *
 * A torn last oracle line (no final '\n': the writer was killed in write(2))
 * is ignored.  Exit 0 consistent, 1 violations, 2 bad usage / malformed input.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SHOWN 100

/* ---------------------------------------------------------------- helpers */

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) {
		fprintf(stderr, "amber-oracle-check: out of memory\n");
		exit(2);
	}
	return q;
}

static char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "amber-oracle-check: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	size_t cap = 1 << 20, n = 0;
	char *buf = xrealloc(NULL, cap);
	for (;;) {
		if (n == cap) {
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "amber-oracle-check: read %s: %s\n", path, strerror(errno));
			exit(2);
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	*len = n;
	return buf;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* 64 lowercase hex digits -> 32 bytes */
static bool parse_hash(const char *s, size_t n, unsigned char out[32])
{
	if (n != 64)
		return false;
	for (size_t i = 0; i < 32; i++) {
		int hi = hexval((unsigned char)s[2 * i]), lo = hexval((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return true;
}

static void hash_hex(const unsigned char h[32], char out[65])
{
	static const char d[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = d[h[i] >> 4];
		out[2 * i + 1] = d[h[i] & 15];
	}
	out[64] = '\0';
}

static bool parse_seq(const char *s, size_t n, uint64_t *out)
{
	if (n == 0 || n > 20)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* oracle names: printable ASCII, no ':' and no white space */
static bool valid_name(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f || c == ':')
			return false;
	}
	return true;
}

/* ---------------------------------------------------------------- keys */

typedef struct keyrec {
	char *tk; /* table bytes then key bytes */
	uint32_t tlen, klen;
	int64_t put_txn; /* -1: never put */
	int64_t del_txn; /* -1: never deleted */
	unsigned char put_hash[32];
	bool in_dump;
	unsigned char dump_hash[32];
} keyrec;

static keyrec *keys;
static size_t nkeys, keys_cap;
static int64_t *kmap; /* open addressing: index into keys, -1 empty */
static size_t kmap_cap;

static uint64_t key_hash(const char *t, size_t tlen, const char *k, size_t klen)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < tlen; i++)
		h = (h ^ (unsigned char)t[i]) * 1099511628211ULL;
	h = (h ^ 0x100) * 1099511628211ULL;
	for (size_t i = 0; i < klen; i++)
		h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
	return h ^ (h >> 29);
}

static void kmap_grow(void)
{
	size_t ncap = kmap_cap ? kmap_cap * 2 : 1 << 16;
	int64_t *m = xrealloc(NULL, ncap * sizeof(*m));
	for (size_t i = 0; i < ncap; i++)
		m[i] = -1;
	for (size_t i = 0; i < nkeys; i++) {
		keyrec *r = &keys[i];
		size_t h = key_hash(r->tk, r->tlen, r->tk + r->tlen, r->klen) & (ncap - 1);
		while (m[h] >= 0)
			h = (h + 1) & (ncap - 1);
		m[h] = (int64_t)i;
	}
	free(kmap);
	kmap = m;
	kmap_cap = ncap;
}

/* Find (table, key); create it if @p create.  Returns index or -1. */
static int64_t key_find(const char *t, size_t tlen, const char *k, size_t klen, bool create)
{
	if ((nkeys + 1) * 2 > kmap_cap)
		kmap_grow();
	size_t h = key_hash(t, tlen, k, klen) & (kmap_cap - 1);
	while (kmap[h] >= 0) {
		keyrec *r = &keys[kmap[h]];
		if (r->tlen == tlen && r->klen == klen && memcmp(r->tk, t, tlen) == 0 &&
		    memcmp(r->tk + tlen, k, klen) == 0)
			return kmap[h];
		h = (h + 1) & (kmap_cap - 1);
	}
	if (!create)
		return -1;
	if (nkeys == keys_cap) {
		keys_cap = keys_cap ? keys_cap * 2 : 1 << 15;
		keys = xrealloc(keys, keys_cap * sizeof(*keys));
	}
	keyrec *r = &keys[nkeys];
	memset(r, 0, sizeof(*r));
	r->tk = xrealloc(NULL, tlen + klen);
	memcpy(r->tk, t, tlen);
	memcpy(r->tk + tlen, k, klen);
	r->tlen = (uint32_t)tlen;
	r->klen = (uint32_t)klen;
	r->put_txn = -1;
	r->del_txn = -1;
	kmap[h] = (int64_t)nkeys;
	return (int64_t)nkeys++;
}

/* print table:key (escaping what is not printable) */
static void print_key(FILE *f, const keyrec *r)
{
	for (uint32_t i = 0; i < r->tlen + r->klen; i++) {
		if (i == r->tlen)
			putc(':', f);
		unsigned char c = (unsigned char)r->tk[i];
		if (c > ' ' && c < 0x7f)
			putc(c, f);
		else
			fprintf(f, "\\x%02x", c);
	}
}

/* ---------------------------------------------------------------- txns */

enum { OP_PUT = 1, OP_DEL = 2 };

typedef struct op {
	uint8_t kind;
	uint64_t key;
} op;

typedef struct txn {
	uint64_t seq;
	uint64_t line;
	size_t first_op, nops;
	bool acked;
	bool required;   /* acked before the --acks-before offset */
} txn;

static txn *txns;
static size_t ntxns, txns_cap;
static op *ops;
static size_t nops, ops_cap;
static int64_t *smap; /* seq -> txn index */
static size_t smap_cap;

static size_t seq_slot(uint64_t seq, size_t cap)
{
	uint64_t h = seq * 0x9e3779b97f4a7c15ULL;
	return (size_t)(h ^ (h >> 32)) & (cap - 1);
}

static void smap_grow(void)
{
	size_t ncap = smap_cap ? smap_cap * 2 : 1 << 16;
	int64_t *m = xrealloc(NULL, ncap * sizeof(*m));
	for (size_t i = 0; i < ncap; i++)
		m[i] = -1;
	for (size_t i = 0; i < ntxns; i++) {
		size_t h = seq_slot(txns[i].seq, ncap);
		while (m[h] >= 0)
			h = (h + 1) & (ncap - 1);
		m[h] = (int64_t)i;
	}
	free(smap);
	smap = m;
	smap_cap = ncap;
}

static int64_t seq_find(uint64_t seq)
{
	if (!smap_cap)
		return -1;
	size_t h = seq_slot(seq, smap_cap);
	while (smap[h] >= 0) {
		if (txns[smap[h]].seq == seq)
			return smap[h];
		h = (h + 1) & (smap_cap - 1);
	}
	return -1;
}

static void seq_insert(uint64_t seq, size_t idx)
{
	if ((ntxns + 1) * 2 > smap_cap)
		smap_grow();
	size_t h = seq_slot(seq, smap_cap);
	while (smap[h] >= 0)
		h = (h + 1) & (smap_cap - 1);
	smap[h] = (int64_t)idx;
}

/* ---------------------------------------------------------------- oracle */

static const char *oracle_path;

__attribute__((format(printf, 2, 3), noreturn)) static void oracle_bad(uint64_t line,
                                                                       const char *fmt, ...);

static void oracle_bad(uint64_t line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "amber-oracle-check: %s line %" PRIu64 ": ", oracle_path, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* next token of [*p, end) separated by spaces/tabs; false at the end */
static bool next_token(const char **p, const char *end, const char **tok, size_t *len)
{
	const char *s = *p;
	while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
		s++;
	if (s == end)
		return false;
	const char *e = s;
	while (e < end && *e != ' ' && *e != '\t' && *e != '\r')
		e++;
	*tok = s;
	*len = (size_t)(e - s);
	*p = e;
	return true;
}

static void parse_op(uint64_t lineno, size_t ti, const char *s, size_t n)
{
	const char *end = s + n;
	const char *f[4];
	size_t fl[4];
	int nf = 0;
	const char *p = s;
	while (nf < 4) {
		const char *c = memchr(p, ':', (size_t)(end - p));
		f[nf] = p;
		if (!c) {
			fl[nf++] = (size_t)(end - p);
			p = end;
			break;
		}
		fl[nf++] = (size_t)(c - p);
		p = c + 1;
	}
	if (p != end)
		oracle_bad(lineno, "bad operation '%.*s': too many fields", (int)n, s);

	uint8_t kind;
	if (nf == 4 && fl[0] == 3 && memcmp(f[0], "put", 3) == 0)
		kind = OP_PUT;
	else if (nf == 3 && fl[0] == 3 && memcmp(f[0], "del", 3) == 0)
		kind = OP_DEL;
	else
		oracle_bad(lineno, "bad operation '%.*s'", (int)n, s);
	if (!valid_name(f[1], fl[1]) || !valid_name(f[2], fl[2]))
		oracle_bad(lineno, "bad table or key in '%.*s'", (int)n, s);
	unsigned char h[32];
	if (kind == OP_PUT && !parse_hash(f[3], fl[3], h))
		oracle_bad(lineno, "bad sha256 in '%.*s' (64 lowercase hex digits expected)", (int)n,
		           s);

	int64_t ki = key_find(f[1], fl[1], f[2], fl[2], true);
	keyrec *k = &keys[ki];
	if (kind == OP_PUT) {
		if (k->put_txn >= 0)
			oracle_bad(lineno, "key %.*s:%.*s put again (first put by seq %" PRIu64 ")",
			           (int)fl[1], f[1], (int)fl[2], f[2], txns[k->put_txn].seq);
		k->put_txn = (int64_t)ti;
		memcpy(k->put_hash, h, 32);
	} else {
		if (k->put_txn < 0)
			oracle_bad(lineno, "del of %.*s:%.*s, which was never put", (int)fl[1], f[1],
			           (int)fl[2], f[2]);
		if (!txns[k->put_txn].acked)
			oracle_bad(lineno,
			           "del of %.*s:%.*s before its put (seq %" PRIu64 ") was acknowledged",
			           (int)fl[1], f[1], (int)fl[2], f[2], txns[k->put_txn].seq);
		if (k->del_txn >= 0)
			oracle_bad(lineno, "key %.*s:%.*s deleted again (first by seq %" PRIu64 ")",
			           (int)fl[1], f[1], (int)fl[2], f[2], txns[k->del_txn].seq);
		k->del_txn = (int64_t)ti;
	}
	if (nops == ops_cap) {
		ops_cap = ops_cap ? ops_cap * 2 : 1 << 16;
		ops = xrealloc(ops, ops_cap * sizeof(*ops));
	}
	ops[nops].kind = kind;
	ops[nops].key = (uint64_t)ki;
	nops++;
}

/* --acks-before BYTES: only acks that start before this offset must be
 * present (a shadow or backup taken when the oracle had BYTES bytes); later
 * acks make a transaction optional, like an unacknowledged one. */
static uint64_t acks_before = UINT64_MAX;

static void parse_oracle(const char *buf, size_t len, uint64_t *torn)
{
	uint64_t lineno = 0;
	const char *p = buf, *end = buf + len;
	*torn = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		lineno++;
		if (!nl) { /* torn last line: the writer died inside write(2) */
			*torn = (uint64_t)(end - p);
			break;
		}
		const char *q = p, *tok;
		size_t tl;
		if (!next_token(&q, nl, &tok, &tl))
			oracle_bad(lineno, "empty line");
		if (tl == 5 && memcmp(tok, "begin", 5) == 0) {
			uint64_t seq;
			if (!next_token(&q, nl, &tok, &tl) || !parse_seq(tok, tl, &seq))
				oracle_bad(lineno, "begin without a valid seq");
			int64_t prev = seq_find(seq);
			if (prev >= 0)
				oracle_bad(lineno, "seq %" PRIu64 " begun again (first on line %" PRIu64 ")",
				           seq, txns[prev].line);
			if (ntxns == txns_cap) {
				txns_cap = txns_cap ? txns_cap * 2 : 1 << 15;
				txns = xrealloc(txns, txns_cap * sizeof(*txns));
			}
			size_t ti = ntxns;
			txns[ti].seq = seq;
			txns[ti].line = lineno;
			txns[ti].first_op = nops;
			txns[ti].acked = false;
			txns[ti].required = false;
			while (next_token(&q, nl, &tok, &tl))
				parse_op(lineno, ti, tok, tl);
			txns[ti].nops = nops - txns[ti].first_op;
			if (txns[ti].nops == 0)
				oracle_bad(lineno, "begin %" PRIu64 " without operations", seq);
			seq_insert(seq, ti);
			ntxns++;
		} else if (tl == 3 && memcmp(tok, "ack", 3) == 0) {
			uint64_t seq;
			if (!next_token(&q, nl, &tok, &tl) || !parse_seq(tok, tl, &seq))
				oracle_bad(lineno, "ack without a valid seq");
			if (next_token(&q, nl, &tok, &tl))
				oracle_bad(lineno, "trailing text after ack %" PRIu64, seq);
			int64_t ti = seq_find(seq);
			if (ti < 0)
				oracle_bad(lineno, "ack %" PRIu64 " without an earlier begin", seq);
			if (txns[ti].acked)
				oracle_bad(lineno, "seq %" PRIu64 " acknowledged twice", seq);
			txns[ti].acked = true;
			txns[ti].required = (uint64_t)(p - buf) < acks_before;
		} else {
			oracle_bad(lineno, "expected 'begin' or 'ack', found '%.*s'", (int)tl, tok);
		}
		p = nl + 1;
	}
}

/* ---------------------------------------------------------------- dump */

static uint64_t violations;

__attribute__((format(printf, 1, 2))) static bool violation(const char *fmt, ...);

/* Count a violation; returns true if it should be printed (the caller
 * prints it, starting with this function's output). */
static bool violation(const char *fmt, ...)
{
	violations++;
	if (violations > MAX_SHOWN)
		return false;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	return true;
}

/* decode \xHH escapes of field [s, s+n) into out; false if malformed */
static bool decode_field(const char *s, size_t n, char *out, size_t *outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\') {
			if (i + 3 >= n)
				return false;
			if (s[i + 1] != 'x')
				return false;
			int hi = hexval((unsigned char)s[i + 2]), lo = hexval((unsigned char)s[i + 3]);
			if (hi < 0 || lo < 0)
				return false;
			out[o++] = (char)(hi << 4 | lo);
			i += 3;
		} else {
			out[o++] = s[i];
		}
	}
	*outlen = o;
	return true;
}

static int bytecmp(const void *a, size_t alen, const void *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static uint64_t parse_dump(const char *path, const char *buf, size_t len)
{
	uint64_t lineno = 0, records = 0;
	const char *p = buf, *end = buf + len;
	char *prev = NULL, *cur = NULL;
	size_t prev_tl = 0, prev_kl = 0, cap = 0;
	bool have_prev = false;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		lineno++;
		const char *t1 = memchr(p, '\t', (size_t)(le - p));
		const char *t2 = t1 ? memchr(t1 + 1, '\t', (size_t)(le - t1 - 1)) : NULL;
		if (!t1 || !t2 || memchr(t2 + 1, '\t', (size_t)(le - t2 - 1))) {
			fprintf(stderr, "amber-oracle-check: %s line %" PRIu64
			                ": expected <table>\\t<key>\\t<sha256>\n",
			        path, lineno);
			exit(2);
		}
		size_t need = (size_t)(le - p);
		if (need > cap) {
			cap = need * 2;
			prev = xrealloc(prev, cap);
			cur = xrealloc(cur, cap);
		}
		size_t tl, kl;
		unsigned char h[32];
		if (!decode_field(p, (size_t)(t1 - p), cur, &tl) ||
		    !decode_field(t1 + 1, (size_t)(t2 - t1 - 1), cur + tl, &kl) || tl == 0 ||
		    kl == 0 || !parse_hash(t2 + 1, (size_t)(le - t2 - 1), h)) {
			fprintf(stderr, "amber-oracle-check: %s line %" PRIu64 ": malformed record\n", path,
			        lineno);
			exit(2);
		}
		records++;

		if (have_prev) {
			int c = bytecmp(prev, prev_tl, cur, tl);
			if (c == 0)
				c = bytecmp(prev + prev_tl, prev_kl, cur + tl, kl);
			if (c >= 0)
				violation("dump line %" PRIu64 ": record %.*s:%.*s %s\n", lineno, (int)tl, cur,
				          (int)kl, cur + tl,
				          c == 0 ? "repeats the previous one"
				                 : "is out of order (dump not sorted bytewise)");
		}
		memcpy(prev, cur, tl + kl);
		prev_tl = tl;
		prev_kl = kl;
		have_prev = true;

		int64_t ki = key_find(cur, tl, cur + tl, kl, false);
		if (ki < 0 || keys[ki].put_txn < 0) {
			if (ki < 0)
				ki = key_find(cur, tl, cur + tl, kl, true);
			if (violation("record "))
				print_key(stdout, &keys[ki]), fputs(" in dump was never put\n", stdout);
			keys[ki].in_dump = true;
			memcpy(keys[ki].dump_hash, h, 32);
		} else {
			keyrec *k = &keys[ki];
			if (!k->in_dump) {
				k->in_dump = true;
				memcpy(k->dump_hash, h, 32);
				if (memcmp(h, k->put_hash, 32) != 0 && violation("hash mismatch for ")) {
					char a[65], b[65];
					hash_hex(h, a);
					hash_hex(k->put_hash, b);
					print_key(stdout, k);
					printf(": dump has %s, seq %" PRIu64 " put %s\n", a, txns[k->put_txn].seq,
					       b);
				}
			}
		}
		p = nl ? nl + 1 : end;
	}
	free(prev);
	free(cur);
	return records;
}

/* ---------------------------------------------------------------- verdict */

/* Whether an operation is applied in the dump: 1 yes, 0 no, 2 either
 * (cannot be told apart).  A key that is put and later deleted and is
 * absent from the dump is explained by "put and delete both applied", and,
 * when the put's transaction is optional (acknowledged after the
 * --acks-before cut), equally by "neither applied". */
static int op_applied(const op *o)
{
	const keyrec *k = &keys[o->key];
	bool put_required = k->put_txn >= 0 && txns[k->put_txn].required;
	if (k->in_dump)
		return o->kind == OP_PUT;
	if (o->kind == OP_DEL)
		return put_required ? 1 : 2;
	/* put, key absent: a delete removed it, or (optional put) neither ran */
	if (k->del_txn < 0)
		return 0;
	return put_required ? 1 : 2;
}

static void print_op(FILE *f, const op *o)
{
	const keyrec *k = &keys[o->key];
	fputs(o->kind == OP_PUT ? "put " : "del ", f);
	print_key(f, k);
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--acks-before") == 0) {
		char *end;
		errno = 0;
		acks_before = strtoull(argv[2], &end, 10);
		if (errno || *end || end == argv[2]) {
			fprintf(stderr, "amber-oracle-check: bad --acks-before: %s\n", argv[2]);
			return 2;
		}
		argv += 2;
		argc -= 2;
	}
	if (argc != 3) {
		fprintf(stderr, "usage: amber-oracle-check [--acks-before BYTES] ORACLE DUMP\n"
		                "  --acks-before BYTES  only acks that begin before this byte offset\n"
		                "                       must be present (a shadow taken when the\n"
		                "                       oracle was BYTES long)\n"
		                "  exit 0 consistent, 1 violations found, 2 bad usage or input\n");
		return 2;
	}
	oracle_path = argv[1];
	size_t olen, dlen;
	char *obuf = read_file(argv[1], &olen);
	char *dbuf = read_file(argv[2], &dlen);
	uint64_t torn;
	parse_oracle(obuf, olen, &torn);
	if (torn)
		fprintf(stderr, "amber-oracle-check: %s: ignoring a torn last line (%" PRIu64 " bytes)\n",
		        argv[1], torn);
	uint64_t records = parse_dump(argv[2], dbuf, dlen);

	uint64_t acked = 0, unacked_present = 0, unacked_absent = 0;
	for (size_t i = 0; i < ntxns; i++) {
		const txn *t = &txns[i];
		size_t applied = 0, either = 0;
		for (size_t j = 0; j < t->nops; j++) {
			int a = op_applied(&ops[t->first_op + j]);
			applied += a == 1;
			either += a == 2;
		}
		if (t->required) {
			acked++;
			if (applied + either == t->nops)
				continue;
			for (size_t j = 0; j < t->nops; j++) {
				const op *o = &ops[t->first_op + j];
				if (op_applied(o) != 0)
					continue;
				if (violation("seq %" PRIu64 " acknowledged but ", t->seq)) {
					print_op(stdout, o);
					fputs(o->kind == OP_PUT ? " is missing" : " did not happen (key still present)",
					      stdout);
					printf(" (oracle line %" PRIu64 ")\n", t->line);
				}
			}
			continue;
		}
		if (applied + either == t->nops && applied > 0) {
			unacked_present++;
		} else if (applied == 0) {
			unacked_absent++;
		} else if (violation("seq %" PRIu64 " half-applied (not acknowledged, oracle line %" PRIu64
		                     "): ",
		                     t->seq, t->line)) {
			for (int pass = 0; pass < 2; pass++) {
				fputs(pass == 0 ? "applied:" : "; not applied:", stdout);
				for (size_t j = 0; j < t->nops; j++) {
					const op *o = &ops[t->first_op + j];
					if ((op_applied(o) != 0) != (pass == 0))
						continue;
					putc(' ', stdout);
					print_op(stdout, o);
				}
			}
			putc('\n', stdout);
		}
	}

	if (violations > MAX_SHOWN)
		printf("... and %" PRIu64 " more violations\n", violations - MAX_SHOWN);
	printf("%s: acked %" PRIu64 ", unacked-present %" PRIu64 ", unacked-absent %" PRIu64
	       ", records %" PRIu64 "%s",
	       violations ? "INCONSISTENT" : "consistent", acked, unacked_present, unacked_absent,
	       records, torn ? ", torn last line ignored" : "");
	if (violations)
		printf(", violations %" PRIu64, violations);
	putc('\n', stdout);
	fflush(stdout);

	for (size_t i = 0; i < nkeys; i++)
		free(keys[i].tk);
	free(keys);
	free(kmap);
	free(txns);
	free(ops);
	free(smap);
	free(obuf);
	free(dbuf);
	return violations ? 1 : 0;
}

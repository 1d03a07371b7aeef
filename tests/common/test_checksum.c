/*
 * test_checksum.c - unit tests of src/common/checksum.{h,c}: the block hash
 * and the SEC-DED code that corrects any single flipped bit.
 *
 * What must hold (design.md section 4 and 6, checksum.h):
 *   - every single-bit error anywhere in a block, the hash and ECC fields
 *     included, is corrected: amb_ck_verify() says AMB_CK_CORRECTED, reports
 *     the flipped bit's absolute offset, and the block is byte-identical to
 *     the sealed one afterwards;
 *   - any other damage is AMB_CK_DAMAGED and the block is left exactly as it
 *     was handed in (never "corrected" into a third, wrong block);
 *   - a block verified under the wrong block number is AMB_CK_DAMAGED;
 *   - amb_ck_check() never writes to its input;
 *   - amb_ck_ecc() computes exactly the code documented in checksum.h
 *     (checked against a bit-by-bit reference implementation).
 *
 * All random content comes from one fixed-seed PRNG, so every run tests the
 * same blocks and a failure is repeatable.
 *
 * Cost: an exhaustive pass flips, verifies and compares once per bit; that
 * is about three passes over the block per bit, i.e. quadratic in the block
 * size.  4 KiB (32768 bits) and 8 KiB (65536 bits) pages are tested at
 * every bit position in every build.  A 32 KiB page has 262144 bit
 * positions: all of them take about 3 s in a normal build but about 13 s
 * under ASan+UBSan, so the sanitizer build (AMB_CK_TEST_STRIDED below)
 * tests every bit of the first 512-byte sector (the hash and ECC fields and
 * the rest of the block header included), every bit of the last sector, and
 * a strided subset of the rest (stride 61, a prime, so every bit-in-byte
 * and word-in-chunk position and every chunk is hit); the normal build
 * tests all 262144.  The index-sum bits 12..23 that only large blocks
 * exercise are also covered by the 2 MiB edge test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/checksum.h"

/* Under ASan the 32 KiB exhaustive pass is too slow: use the subset. */
#if defined(__SANITIZE_ADDRESS__)
#define AMB_CK_TEST_STRIDED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AMB_CK_TEST_STRIDED 1
#endif
#endif

/* ---------------------------------------------------------------------- */
/* helpers                                                                 */

/* splitmix64: tiny, good enough, and the same sequence on every machine */
typedef struct rng {
	uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
	uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t rng_below(rng *r, uint64_t n)
{
	return rng_next(r) % n;
}

static void rng_fill(rng *r, void *buf, size_t n)
{
	unsigned char *p = buf;
	while (n >= 8) {
		uint64_t v = rng_next(r);
		memcpy(p, &v, 8);
		p += 8;
		n -= 8;
	}
	if (n) {
		uint64_t v = rng_next(r);
		memcpy(p, &v, n);
	}
}

#define SEED 0x616d626572ull /* "amber" */

static void flip(void *blk, uint64_t bit)
{
	((unsigned char *)blk)[bit / 8] ^= (unsigned char)(1u << (bit % 8));
}

static size_t hamming(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	size_t d = 0;
	for (size_t i = 0; i < n; i++)
		d += (size_t)__builtin_popcount((unsigned)(x[i] ^ y[i]));
	return d;
}

/* A sealed block of random content. */
static unsigned char *new_block(rng *r, size_t size, uint64_t blkno)
{
	unsigned char *b = malloc(size);
	assert_non_null(b);
	rng_fill(r, b, size);
	amb_ck_seal(b, size, blkno);
	return b;
}

static uint32_t stored_ecc(const unsigned char *b)
{
	uint32_t e;
	memcpy(&e, b + AMB_CK_ECC_OFF, 4);
	return e;
}

static uint64_t stored_hash(const unsigned char *b)
{
	uint64_t h;
	memcpy(&h, b + AMB_CK_HASH_OFF, 8);
	return h;
}

/*
 * The ECC exactly as checksum.h documents it, one bit at a time: XOR of the
 * absolute bit offsets (byte*8 + bit, LSB first) of every set bit in
 * [12, size), and their parity in bit 31.
 */
static uint32_t ref_ecc(const unsigned char *b, size_t size)
{
	uint32_t sum = 0, par = 0;
	for (size_t i = AMB_CK_BODY_OFF; i < size; i++) {
		unsigned byte = b[i];
		while (byte) {
			unsigned k = (unsigned)__builtin_ctz(byte);
			sum ^= (uint32_t)(i * 8 + k);
			par ^= 1;
			byte &= byte - 1;
		}
	}
	return (sum & 0x00FFFFFFu) | (par << 31);
}

/*
 * Damage that is not a single bit: verify must say DAMAGED and leave the
 * damaged block exactly as it was; check must agree.  `what` names the case
 * in the failure message.
 */
static void expect_damaged(unsigned char *blk, size_t size, uint64_t blkno, const char *what)
{
	unsigned char *before = malloc(size);
	assert_non_null(before);
	memcpy(before, blk, size);

	uint64_t bit = 0xDEADull;
	amb_ck_result r = amb_ck_verify(blk, size, blkno, &bit);
	if (r != AMB_CK_DAMAGED)
		fail_msg("%s (size %zu): verify returned %d, want DAMAGED (bit %llu)", what, size,
		         (int)r, (unsigned long long)bit);
	if (memcmp(blk, before, size) != 0)
		fail_msg("%s (size %zu): verify modified a block it called damaged", what, size);
	if (bit != 0xDEADull)
		fail_msg("%s (size %zu): verify wrote *bit on DAMAGED", what, size);
	r = amb_ck_check(blk, size, blkno);
	if (r != AMB_CK_DAMAGED)
		fail_msg("%s (size %zu): check returned %d, want DAMAGED", what, size, (int)r);
	if (memcmp(blk, before, size) != 0)
		fail_msg("%s (size %zu): check modified its input", what, size);
	free(before);
}

/* Flip one bit of a sealed block and expect it corrected back exactly. */
static void expect_corrected(unsigned char *blk, const unsigned char *orig, size_t size,
                             uint64_t blkno, uint64_t pos)
{
	uint64_t bit = UINT64_MAX;
	flip(blk, pos);
	amb_ck_result r = amb_ck_verify(blk, size, blkno, &bit);
	if (r != AMB_CK_CORRECTED)
		fail_msg("size %zu: flipped bit %llu: verify returned %d, want CORRECTED", size,
		         (unsigned long long)pos, (int)r);
	if (bit != pos)
		fail_msg("size %zu: flipped bit %llu: verify reported bit %llu", size,
		         (unsigned long long)pos, (unsigned long long)bit);
	if (memcmp(blk, orig, size) != 0)
		fail_msg("size %zu: flipped bit %llu: block not restored byte-identical", size,
		         (unsigned long long)pos);
}

static const size_t page_sizes[] = {4096, 8192, 32768};
#define NPAGE_SIZES (sizeof(page_sizes) / sizeof(page_sizes[0]))

/* ---------------------------------------------------------------------- */
/* seal / verify round trip                                                */

static void test_seal_roundtrip(void **state)
{
	(void)state;
	rng r = {SEED ^ 1};
	static const size_t sizes[] = {512, 1024, 4096, 8192, 32768, 65536};
	static const uint64_t fixed_blknos[] = {0, 1, 2, 0xFFFFFFFFull, UINT64_MAX};

	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		size_t size = sizes[s];
		unsigned char *b = malloc(size);
		unsigned char *copy = malloc(size);
		assert_non_null(b);
		assert_non_null(copy);
		for (int n = 0; n < 40; n++) {
			uint64_t blkno = n < 5 ? fixed_blknos[n] : rng_next(&r);
			if (n == 5)
				memset(b, 0, size); /* an all-zero body (a fresh free page) */
			else if (n == 6)
				memset(b, 0xFF, size);
			else
				rng_fill(&r, b, size);
			amb_ck_seal(b, size, blkno);

			/* the fields hold what the format says */
			assert_int_equal(stored_hash(b), amb_ck_hash(b, size, blkno));
			assert_int_equal(stored_ecc(b), amb_ck_ecc(b, size));
			assert_int_equal(stored_ecc(b), ref_ecc(b, size));
			assert_int_equal(stored_ecc(b) & 0x7F000000u, 0);

			memcpy(copy, b, size);
			uint64_t bit = 12345;
			assert_int_equal(amb_ck_verify(b, size, blkno, &bit), AMB_CK_OK);
			assert_int_equal(bit, 12345); /* untouched on OK */
			assert_int_equal(amb_ck_verify(b, size, blkno, NULL), AMB_CK_OK);
			assert_int_equal(amb_ck_check(b, size, blkno), AMB_CK_OK);
			assert_memory_equal(b, copy, size);

			/* sealing again is idempotent */
			amb_ck_seal(b, size, blkno);
			assert_memory_equal(b, copy, size);
		}
		free(copy);
		free(b);
	}
}

/* The ECC matches the bit-by-bit definition for sparse blocks too (a few
 * set bits at chosen places exercise each index bit on its own). */
static void test_ecc_reference_sparse(void **state)
{
	(void)state;
	rng r = {SEED ^ 2};
	const size_t size = 32768;
	unsigned char *b = calloc(1, size);
	assert_non_null(b);

	/* each power-of-two offset from bit 96 up */
	for (uint64_t pos = 128; pos < size * 8; pos <<= 1) {
		memset(b, 0, size);
		flip(b, pos);
		assert_int_equal(amb_ck_ecc(b, size), ref_ecc(b, size));
		assert_int_equal(amb_ck_ecc(b, size), (uint32_t)pos | 0x80000000u);
	}
	/* the hash and ECC fields are not covered */
	memset(b, 0, size);
	memset(b, 0xFF, AMB_CK_BODY_OFF);
	assert_int_equal(amb_ck_ecc(b, size), 0);
	/* a handful of random bits */
	for (int n = 0; n < 200; n++) {
		memset(b, 0, size);
		int k = 1 + (int)rng_below(&r, 9);
		for (int j = 0; j < k; j++)
			flip(b, rng_below(&r, size * 8));
		assert_int_equal(amb_ck_ecc(b, size), ref_ecc(b, size));
	}
	free(b);
}

/* ---------------------------------------------------------------------- */
/* every single-bit error is corrected                                     */

static void single_bit_all(size_t size, uint64_t blkno, uint64_t seed)
{
	rng r = {seed};
	unsigned char *orig = new_block(&r, size, blkno);
	unsigned char *b = malloc(size);
	assert_non_null(b);
	memcpy(b, orig, size);
	for (uint64_t pos = 0; pos < (uint64_t)size * 8; pos++)
		expect_corrected(b, orig, size, blkno, pos);
	free(b);
	free(orig);
}

static void test_single_bit_4k(void **state)
{
	(void)state;
	single_bit_all(4096, 7, SEED ^ 0x4000);
}

static void test_single_bit_8k(void **state)
{
	(void)state;
	single_bit_all(8192, 0x123456789ull, SEED ^ 0x8000);
}

/* 32 KiB: every bit in a normal build; under ASan the first and last
 * sectors in full and a strided subset between (see the top comment). */
static void test_single_bit_32k(void **state)
{
	(void)state;
#ifndef AMB_CK_TEST_STRIDED
	single_bit_all(32768, 42, SEED ^ 0x20000);
#else
	const size_t size = 32768;
	const uint64_t nbits = (uint64_t)size * 8;
	rng r = {SEED ^ 0x20000};
	unsigned char *orig = new_block(&r, size, 42);
	unsigned char *b = malloc(size);
	assert_non_null(b);
	memcpy(b, orig, size);

	uint64_t tested = 0;
	for (uint64_t pos = 0; pos < 512 * 8; pos++, tested++)
		expect_corrected(b, orig, size, 42, pos);
	for (uint64_t pos = 512 * 8; pos < nbits - 512 * 8; pos += 61, tested++)
		expect_corrected(b, orig, size, 42, pos);
	for (uint64_t pos = nbits - 512 * 8; pos < nbits; pos++, tested++)
		expect_corrected(b, orig, size, 42, pos);
	assert_true(tested > 10000);
	free(b);
	free(orig);
#endif
}

/* Block-size extremes: all bits of a 512-byte block; the largest block
 * (2 MiB, where the top of the 24-bit index sum is reached) at its edges. */
static void test_single_bit_edges(void **state)
{
	(void)state;
	single_bit_all(512, 3, SEED ^ 0x200);

	const size_t size = AMB_CK_MAX_BLOCK;
	const uint64_t nbits = (uint64_t)size * 8;
	rng r = {SEED ^ 0x200000};
	unsigned char *orig = new_block(&r, size, 99);
	unsigned char *b = malloc(size);
	assert_non_null(b);
	memcpy(b, orig, size);
	assert_int_equal(stored_ecc(orig), ref_ecc(orig, size));

	/* hash, ECC, first body bit, every index bit alone, the last bit */
	for (uint64_t pos = 0; pos < 8 * AMB_CK_BODY_OFF + 8; pos++)
		expect_corrected(b, orig, size, 99, pos);
	for (uint64_t pos = 128; pos < nbits; pos <<= 1)
		expect_corrected(b, orig, size, 99, pos);
	expect_corrected(b, orig, size, 99, nbits - 1);
	expect_corrected(b, orig, size, 99, nbits - 2);
	for (int n = 0; n < 24; n++)
		expect_corrected(b, orig, size, 99, rng_below(&r, nbits));
	free(b);
	free(orig);
}

/* ---------------------------------------------------------------------- */
/* any other damage is detected and left alone                             */

/* Flip k distinct random bits of a copy of orig (positions in [lo, hi)). */
static void flip_random_bits(rng *r, unsigned char *b, uint64_t lo, uint64_t hi, int k)
{
	uint64_t done[16];
	assert_true(k <= 16 && hi - lo >= (uint64_t)k);
	for (int j = 0; j < k;) {
		uint64_t pos = lo + rng_below(r, hi - lo);
		int dup = 0;
		for (int i = 0; i < j; i++)
			dup |= done[i] == pos;
		if (dup)
			continue;
		done[j++] = pos;
		flip(b, pos);
	}
}

static void test_multi_bit_random(void **state)
{
	(void)state;
	rng r = {SEED ^ 3};
	static const int ks[] = {2, 3, 8};
	char what[64];

	for (size_t s = 0; s < NPAGE_SIZES; s++) {
		size_t size = page_sizes[s];
		uint64_t nbits = (uint64_t)size * 8;
		uint64_t blkno = rng_next(&r);
		unsigned char *orig = new_block(&r, size, blkno);
		unsigned char *b = malloc(size);
		assert_non_null(b);
		for (size_t ki = 0; ki < sizeof(ks) / sizeof(ks[0]); ki++) {
			for (int n = 0; n < 300; n++) {
				memcpy(b, orig, size);
				flip_random_bits(&r, b, 0, nbits, ks[ki]);
				snprintf(what, sizeof(what), "%d random bits, trial %d", ks[ki], n);
				expect_damaged(b, size, blkno, what);
			}
		}
		free(b);
		free(orig);
	}
}

/* Two or three flips placed in each pair of regions (hash field, ECC
 * field, body), since each region takes a different path in verify. */
static void test_multi_bit_regions(void **state)
{
	(void)state;
	rng r = {SEED ^ 4};
	const uint64_t hash_lo = 0, hash_hi = 64, ecc_lo = 64, ecc_hi = 96;
	char what[64];

	for (size_t s = 0; s < NPAGE_SIZES; s++) {
		size_t size = page_sizes[s];
		uint64_t nbits = (uint64_t)size * 8;
		unsigned char *orig = new_block(&r, size, s + 10);
		unsigned char *b = malloc(size);
		assert_non_null(b);
		for (int n = 0; n < 100; n++) {
			struct {
				uint64_t lo, hi;
				int k;
				const char *name;
			} cases[] = {
				{hash_lo, hash_hi, 2, "2 bits in hash"},
				{hash_lo, hash_hi, 3, "3 bits in hash"},
				{ecc_lo, ecc_hi, 2, "2 bits in ecc"},
				{ecc_lo, ecc_hi, 3, "3 bits in ecc"},
				{ecc_hi, nbits, 2, "2 bits in body"},
				{ecc_hi, nbits, 3, "3 bits in body"},
			};
			for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
				memcpy(b, orig, size);
				flip_random_bits(&r, b, cases[c].lo, cases[c].hi, cases[c].k);
				snprintf(what, sizeof(what), "%s, trial %d", cases[c].name, n);
				expect_damaged(b, size, s + 10, what);
			}
			/* one flip in each of two regions */
			const uint64_t los[3] = {hash_lo, ecc_lo, ecc_hi};
			const uint64_t his[3] = {hash_hi, ecc_hi, nbits};
			for (int i = 0; i < 3; i++)
				for (int j = i + 1; j < 3; j++) {
					memcpy(b, orig, size);
					flip(b, los[i] + rng_below(&r, his[i] - los[i]));
					flip(b, los[j] + rng_below(&r, his[j] - los[j]));
					snprintf(what, sizeof(what), "1 bit in regions %d and %d, trial %d",
					         i, j, n);
					expect_damaged(b, size, s + 10, what);
				}
			/* three flips whose index sum points at a real body bit: the
			 * corrector tries that bit, must see the hash still fail and
			 * undo its attempt */
			memcpy(b, orig, size);
			uint64_t a = 200 + rng_below(&r, nbits - 200);
			uint64_t c = 200 + rng_below(&r, nbits - 200);
			uint64_t target = 200 + rng_below(&r, nbits - 200);
			uint64_t d = a ^ c ^ target; /* flipping a, c, d: sum = target */
			if (d >= 96 && d < nbits && a != c && a != d && c != d && target != a &&
			    target != c && target != d) {
				flip(b, a);
				flip(b, c);
				flip(b, d);
				expect_damaged(b, size, s + 10, "3 bits aimed at a 4th");
			}
		}
		free(b);
		free(orig);
	}
}

/* Whole sectors zeroed, byte runs overwritten, torn writes of two versions. */
static void test_overwrites(void **state)
{
	(void)state;
	rng r = {SEED ^ 5};
	char what[96];
	static const unsigned char patterns[] = {0x00, 0xFF, 0xA5, 0x5A};

	for (size_t s = 0; s < NPAGE_SIZES; s++) {
		size_t size = page_sizes[s];
		uint64_t blkno = 1000 + s;
		unsigned char *orig = new_block(&r, size, blkno);
		unsigned char *b = malloc(size);
		assert_non_null(b);

		/* each 512-byte sector zeroed in turn */
		for (size_t sec = 0; sec < size / 512; sec++) {
			memcpy(b, orig, size);
			memset(b + sec * 512, 0, 512);
			snprintf(what, sizeof(what), "sector %zu zeroed", sec);
			expect_damaged(b, size, blkno, what);
		}
		/* the whole block zeroed or filled (a never-written or wiped block) */
		for (size_t pi = 0; pi < sizeof(patterns); pi++) {
			memset(b, patterns[pi], size);
			snprintf(what, sizeof(what), "whole block 0x%02x", patterns[pi]);
			expect_damaged(b, size, blkno, what);
		}
		/* byte runs of 2..64 bytes overwritten by a pattern anywhere */
		for (int n = 0; n < 400; n++) {
			size_t len = 2 + (size_t)rng_below(&r, 63);
			size_t off = (size_t)rng_below(&r, size - len + 1);
			unsigned char pat = patterns[rng_below(&r, sizeof(patterns))];
			memcpy(b, orig, size);
			memset(b + off, pat, len);
			size_t dist = hamming(b, orig, size);
			if (dist < 2)
				continue; /* 0: no damage; 1: correctable (tested above) */
			snprintf(what, sizeof(what), "%zu bytes of 0x%02x at %zu", len, pat, off);
			expect_damaged(b, size, blkno, what);
		}
		/* torn write: the first k sectors of a newer version of the same
		 * block over the rest of the old one */
		unsigned char *newer = new_block(&r, size, blkno);
		for (size_t k = 1; k < size / 512; k++) {
			memcpy(b, orig, size);
			memcpy(b, newer, k * 512);
			snprintf(what, sizeof(what), "torn write, %zu new sectors", k);
			expect_damaged(b, size, blkno, what);
			memcpy(b, newer, size);
			memcpy(b, orig, k * 512);
			snprintf(what, sizeof(what), "torn write, %zu old sectors", k);
			expect_damaged(b, size, blkno, what);
		}
		free(newer);
		free(b);
		free(orig);
	}
}

/* ---------------------------------------------------------------------- */
/* block numbers                                                           */

static void test_wrong_blkno(void **state)
{
	(void)state;
	rng r = {SEED ^ 6};
	char what[96];

	for (size_t s = 0; s < NPAGE_SIZES; s++) {
		size_t size = page_sizes[s];
		for (int n = 0; n < 50; n++) {
			uint64_t blkno = n == 0 ? 0 : rng_next(&r);
			unsigned char *orig = new_block(&r, size, blkno);
			unsigned char *b = malloc(size);
			assert_non_null(b);
			const uint64_t wrong[] = {blkno + 1, blkno - 1, blkno ^ 1, blkno ^ (1ull << 32),
			                          blkno ^ (1ull << 63), ~blkno, rng_next(&r)};
			for (size_t w = 0; w < sizeof(wrong) / sizeof(wrong[0]); w++) {
				if (wrong[w] == blkno)
					continue;
				memcpy(b, orig, size);
				snprintf(what, sizeof(what), "block %llu read as %llu",
				         (unsigned long long)blkno, (unsigned long long)wrong[w]);
				expect_damaged(b, size, wrong[w], what);
				/* a single flipped bit does not make a misplaced block
				 * acceptable either */
				flip(b, rng_below(&r, (uint64_t)size * 8));
				expect_damaged(b, size, wrong[w], what);
			}
			/* and under its own number it is still fine */
			assert_int_equal(amb_ck_verify(orig, size, blkno, NULL), AMB_CK_OK);
			free(b);
			free(orig);
		}
	}
}

/* ---------------------------------------------------------------------- */
/* amb_ck_check() is read-only                                             */

/* The block lives in read-only mapped memory: any store into it would
 * fault, so passing means amb_ck_check() never wrote, not merely that it
 * wrote the same bytes back. */
static void test_check_read_only(void **state)
{
	(void)state;
	rng r = {SEED ^ 7};
	long pg = sysconf(_SC_PAGESIZE);
	assert_true(pg > 0);

	for (size_t s = 0; s < NPAGE_SIZES; s++) {
		size_t size = page_sizes[s];
		size_t maplen = (size + (size_t)pg - 1) / (size_t)pg * (size_t)pg;
		unsigned char *orig = new_block(&r, size, 5);
		struct {
			int kind; /* 0 intact, 1 one bit, 2 two bits, 3 wrong blkno */
			amb_ck_result want;
		} cases[] = {
			{0, AMB_CK_OK}, {1, AMB_CK_CORRECTED}, {2, AMB_CK_DAMAGED}, {3, AMB_CK_DAMAGED},
		};
		for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
			for (int n = 0; n < 20; n++) {
				unsigned char *m = mmap(NULL, maplen, PROT_READ | PROT_WRITE,
				                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
				assert_true(m != MAP_FAILED);
				memcpy(m, orig, size);
				uint64_t blkno = 5;
				if (cases[c].kind == 1) {
					flip(m, rng_below(&r, (uint64_t)size * 8));
				} else if (cases[c].kind == 2) {
					flip_random_bits(&r, m, 0, (uint64_t)size * 8, 2);
				} else if (cases[c].kind == 3) {
					blkno = 6;
				}
				unsigned char *before = malloc(size);
				assert_non_null(before);
				memcpy(before, m, size);
				assert_int_equal(mprotect(m, maplen, PROT_READ), 0);

				assert_int_equal(amb_ck_check(m, size, blkno), cases[c].want);
				assert_memory_equal(m, before, size);

				free(before);
				assert_int_equal(munmap(m, maplen), 0);
			}
		}
		free(orig);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seal_roundtrip),
		cmocka_unit_test(test_ecc_reference_sparse),
		cmocka_unit_test(test_single_bit_4k),
		cmocka_unit_test(test_single_bit_8k),
		cmocka_unit_test(test_single_bit_32k),
		cmocka_unit_test(test_single_bit_edges),
		cmocka_unit_test(test_multi_bit_random),
		cmocka_unit_test(test_multi_bit_regions),
		cmocka_unit_test(test_overwrites),
		cmocka_unit_test(test_wrong_blkno),
		cmocka_unit_test(test_check_read_only),
	};
	return cmocka_run_group_tests_name("common/checksum", tests, NULL, NULL);
}

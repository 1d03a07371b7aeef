/*
 * checksum.c - block hash + SEC-DED ECC; the format is described in
 * checksum.h.
 *
 * Computing the ECC quickly.  Number the bits of the block absolutely:
 * bit b of little-endian 64-bit word w has index 64*w + b.  The ECC covers
 * words 1..n-1 with the low half of word 1 (the ECC field itself, bytes
 * 8..11) masked out; word 0 (the hash) is not covered.  Bit k of the index
 * sum is the parity of the number of set bits whose index has bit k set:
 *
 *   k < 6:  those bits sit at fixed positions inside every word, so it is
 *           the parity of popcount(X & M_k), X being the XOR of all words;
 *   k >= 6: those are the bits of the word number w, so it is the parity of
 *           the XOR of all words whose number has bit k-6 set.
 *
 * We walk the block in chunks of 64 words: acc[t] collects word t of every
 * chunk (for k < 12 that is enough: bit k of w for k-6 < 6 is bit k-6 of t),
 * and the XOR of each whole chunk c feeds the bits of c (k >= 12).  Only
 * parities are wanted, and the parity of a XOR of words is the XOR of their
 * parities: so bits 6..11 come from one parity bit per acc[t] (a 64-bit
 * mask, then the same six masks as bits 0..5), and bits 12..23 from the
 * XOR of the numbers of the chunks whose XOR has odd parity.  The loop over
 * the block vectorises; the whole costs about one XOR pass (0.5 us for 4 KiB
 * here, from 1.4 us when each bit of k >= 6 was a loop over 64 words).
 */
#include "common/checksum.h"

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
/* libxxhash's run-time dispatch picks AVX2/AVX-512 where the CPU has them
 * (about twice the baseline SSE2 speed); the value is the same either way. */
#if defined(__x86_64__) && defined(__has_include)
#if __has_include(<xxh_x86dispatch.h>)
#include <xxh_x86dispatch.h>
#define HAVE_XXH_DISPATCH 1
#endif
#endif

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "amber's on-disk formats are little-endian; port the loads first"
#endif

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint32_t load32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline unsigned parity64(uint64_t v)
{
	return (unsigned)__builtin_parityll(v);
}

uint64_t amb_ck_hash(const void *blk, size_t size, uint64_t blkno)
{
	const unsigned char *p = blk;
#ifdef HAVE_XXH_DISPATCH
	return XXH3_64bits_withSeed_dispatch(p + AMB_CK_ECC_OFF, size - AMB_CK_ECC_OFF, blkno);
#else
	return XXH3_64bits_withSeed(p + AMB_CK_ECC_OFF, size - AMB_CK_ECC_OFF, blkno);
#endif
}

/* Chunks are 64 words = 512 bytes; blocks are multiples of 512 bytes. */
#define CHUNK_WORDS 64

uint32_t amb_ck_ecc(const void *blk, size_t size)
{
	const unsigned char *p = blk;
	size_t nchunks = size / (CHUNK_WORDS * 8);
	uint64_t acc[CHUNK_WORDS];
	uint32_t cidx = 0; /* XOR of the numbers of the chunks of odd parity */

	/* chunk 0: the hash is not covered, nor the ECC field; it adds nothing
	 * to cidx (its number is 0) */
	memset(acc, 0, sizeof(acc));
	if (nchunks) {
		for (int t = 2; t < CHUNK_WORDS; t++)
			acc[t] = load64(p + 8 * t);
		acc[1] = load64(p + 8) & 0xFFFFFFFF00000000ull;
	}
	for (size_t c = 1; c < nchunks; c++) {
		const unsigned char *q = p + c * CHUNK_WORDS * 8;
		uint64_t x = 0;
		for (int t = 0; t < CHUNK_WORDS; t++) {
			uint64_t w = load64(q + 8 * t);
			acc[t] ^= w;
			x ^= w;
		}
		cidx ^= parity64(x) ? (uint32_t)c : 0;
	}

	/* the parity of a XOR of words is the XOR of their parities: one bit
	 * per word position t of acc, and bits 6..11 of the index are the
	 * parities of the positions t with bit k-6 set */
	uint64_t x = 0, pt = 0;
	for (int t = 0; t < CHUNK_WORDS; t++) {
		x ^= acc[t];
		pt |= (uint64_t)parity64(acc[t]) << t;
	}
	static const uint64_t m[6] = {
		0xAAAAAAAAAAAAAAAAull, 0xCCCCCCCCCCCCCCCCull, 0xF0F0F0F0F0F0F0F0ull,
		0xFF00FF00FF00FF00ull, 0xFFFF0000FFFF0000ull, 0xFFFFFFFF00000000ull,
	};
	uint32_t ecc = 0;
	/* index bits 0..5: the bit position inside the word */
	for (int k = 0; k < 6; k++)
		ecc |= (uint32_t)parity64(x & m[k]) << k;
	/* index bits 6..11: the word position inside the chunk */
	for (int k = 0; k < 6; k++)
		ecc |= (uint32_t)parity64(pt & m[k]) << (6 + k);
	/* index bits 12..23: the chunk number */
	ecc |= (cidx & 0xFFFu) << 12;
	ecc |= (uint32_t)parity64(x) << 31;
	return ecc;
}

void amb_ck_seal(void *blk, size_t size, uint64_t blkno)
{
	unsigned char *p = blk;
	uint32_t ecc = amb_ck_ecc(blk, size);
	memcpy(p + AMB_CK_ECC_OFF, &ecc, 4);
	uint64_t h = amb_ck_hash(blk, size, blkno);
	memcpy(p + AMB_CK_HASH_OFF, &h, 8);
}

amb_ck_result amb_ck_verify(void *blk, size_t size, uint64_t blkno, uint64_t *bit)
{
	unsigned char *p = blk;
	uint64_t stored = load64(p + AMB_CK_HASH_OFF);
	uint64_t h = amb_ck_hash(blk, size, blkno);

	if (h == stored)
		return AMB_CK_OK;

	uint32_t stored_ecc = load32(p + AMB_CK_ECC_OFF);
	uint32_t ecc = amb_ck_ecc(blk, size);
	uint32_t d = ecc ^ stored_ecc;

	if (d == 0) {
		/* Body and ECC field agree: only the hash field can be off. */
		uint64_t hd = h ^ stored;
		if (__builtin_popcountll(hd) != 1)
			return AMB_CK_DAMAGED;
		memcpy(p + AMB_CK_HASH_OFF, &h, 8);
		if (bit)
			*bit = (uint64_t)__builtin_ctzll(hd);
		return AMB_CK_CORRECTED;
	}
	if (__builtin_popcount(d) == 1) {
		/* One bit of the stored ECC field flipped; the hash covers it. */
		uint32_t fixed = stored_ecc ^ d;
		memcpy(p + AMB_CK_ECC_OFF, &fixed, 4);
		if (amb_ck_hash(blk, size, blkno) == stored) {
			if (bit)
				*bit = 64 + (uint64_t)__builtin_ctz(d);
			return AMB_CK_CORRECTED;
		}
		memcpy(p + AMB_CK_ECC_OFF, &stored_ecc, 4);
		return AMB_CK_DAMAGED;
	}
	if ((d & 0x80000000u) && (d & 0x7F000000u) == 0) {
		/* Odd number of flips; a single one sits at the index sum. */
		uint64_t i = d & 0x00FFFFFFu;
		if (i < 8 * AMB_CK_BODY_OFF || i >= (uint64_t)size * 8)
			return AMB_CK_DAMAGED;
		p[i / 8] ^= (unsigned char)(1u << (i % 8));
		if (amb_ck_hash(blk, size, blkno) == stored) {
			if (bit)
				*bit = i;
			return AMB_CK_CORRECTED;
		}
		p[i / 8] ^= (unsigned char)(1u << (i % 8));
	}
	return AMB_CK_DAMAGED;
}

amb_ck_result amb_ck_check(const void *blk, size_t size, uint64_t blkno)
{
	if (amb_ck_hash(blk, size, blkno) == load64((const unsigned char *)blk))
		return AMB_CK_OK;
	void *copy = malloc(size);
	if (!copy)
		return AMB_CK_DAMAGED;
	memcpy(copy, blk, size);
	amb_ck_result r = amb_ck_verify(copy, size, blkno, NULL);
	free(copy);
	return r;
}

/*
 * checksum.h - page checksums with single-bit error correction.
 *
 * Every fixed-size block amber writes (database pages, log segments,
 * checkpoint copies) starts with the same 12 bytes:
 *
 *   offset 0   u64  hash   XXH3-64 of bytes [8, size), seeded with the
 *                          block's number, so a block written at the wrong
 *                          place fails verification
 *   offset 8   u32  ecc    SEC-DED code over the bits of bytes [12, size):
 *                          bits 0..23  XOR of the indices of all set bits
 *                                      (index = absolute bit offset in the
 *                                      block, byte*8 + bit, least
 *                                      significant bit first; so the first
 *                                      covered bit has index 96)
 *                          bit  31     parity of all those bits
 *                          bits 24..30 zero
 *
 * The hash detects damage (any change is missed with probability 2^-64);
 * the ECC locates a single flipped bit so it can be corrected:
 *
 *   - a flip in [12, size) changes the parity and makes the stored and
 *     computed index sums differ by exactly that bit's index; flipping it
 *     back must make the hash match again, otherwise the damage is reported
 *     as uncorrectable;
 *   - a flip in the hash field leaves the ECC matching and the recomputed
 *     hash differs from the stored one in exactly one bit;
 *   - a flip in the ECC field leaves the hash matching (the hash covers the
 *     ECC) and the stored ECC differs from the computed one in one bit.
 *
 * So every single-bit error anywhere in the block is corrected, and any
 * other damage is detected.  Verification of an intact block costs one
 * hash; the ECC is only computed when writing or when the hash fails.
 *
 * Blocks may be 512 bytes to 2 MiB (the 24-bit index limits the size) and
 * must be a multiple of 512 bytes (the ECC is computed in 512-byte chunks).
 */
#ifndef AMBER_COMMON_CHECKSUM_H
#define AMBER_COMMON_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#define AMB_CK_HASH_OFF 0
#define AMB_CK_ECC_OFF 8
#define AMB_CK_BODY_OFF 12 /* first byte covered by the ECC */
#define AMB_CK_MAX_BLOCK (2u * 1024 * 1024)

/* Result of amb_ck_verify(). */
typedef enum amb_ck_result {
	AMB_CK_OK = 0,        /* block intact */
	AMB_CK_CORRECTED = 1, /* one bit was wrong and has been flipped back */
	AMB_CK_DAMAGED = 2,   /* damage that cannot be corrected */
} amb_ck_result;

/* Compute the ECC of bytes [12, size) of blk. */
uint32_t amb_ck_ecc(const void *blk, size_t size);

/* Compute the hash of bytes [8, size) of blk, seeded with blkno. */
uint64_t amb_ck_hash(const void *blk, size_t size, uint64_t blkno);

/* Fill in the hash and ECC fields of blk (the rest must be final). */
void amb_ck_seal(void *blk, size_t size, uint64_t blkno);

/*
 * Verify blk.  On AMB_CK_CORRECTED the block has been repaired in place and
 * *bit (if not NULL) receives the absolute bit offset (byte*8 + bit, LSB
 * first) of the flipped bit.  Never reads outside [blk, blk+size).
 */
amb_ck_result amb_ck_verify(void *blk, size_t size, uint64_t blkno, uint64_t *bit);

/* Verify without repairing (blk is not modified). */
amb_ck_result amb_ck_check(const void *blk, size_t size, uint64_t blkno);

#endif

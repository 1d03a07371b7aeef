/*
 * samples.h - valid messages of every kind, in canonical form (what
 * amb_msg_encode() produces: compact, keys in schema order, optional fields
 * only when set).  Used by the unit tests, the mutation loop and the
 * fuzzer's seed corpus.
 */
#ifndef AMBER_TESTS_PROTO_SAMPLES_H
#define AMBER_TESTS_PROTO_SAMPLES_H

#include <stddef.h>

typedef struct amb_sample {
	const char *json;
	int canonical;      /* 1: amb_msg_encode(decode(json)) == json */
} amb_sample;

extern const amb_sample amb_samples[];
extern const size_t amb_n_samples;

#endif

/*
 * proto_seeds.c - write the fuzzer's seed corpus: every sample message
 * (samples.c) in its canonical encoding, as a bare body (msg-NNN) and as a
 * framed stream of it and the next sample (frames-NNN).
 *
 * usage: proto_seeds DIR        exit 0, or 1 with a message
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amber/proto.h"
#include "samples.h"

static int put_file(const char *dir, const char *name, size_t i, const void *buf, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s-%03zu", dir, name, i);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "proto_seeds: %s: %s\n", path, strerror(errno));
		return 1;
	}
	return 0;
}

static char *encode_sample(size_t i, size_t *len)
{
	amb_msg m;
	char err[256];
	char *j;
	if (amb_msg_decode(amb_samples[i].json, strlen(amb_samples[i].json), &m, err,
			   sizeof(err))) {
		fprintf(stderr, "proto_seeds: sample %zu: %s\n", i, err);
		exit(1);
	}
	if (amb_msg_encode(&m, &j, len)) {
		fprintf(stderr, "proto_seeds: sample %zu does not encode\n", i);
		exit(1);
	}
	amb_msg_free(&m);
	return j;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: proto_seeds DIR\n");
		return 2;
	}
	int rc = 0;
	for (size_t i = 0; i < amb_n_samples && !rc; i++) {
		size_t l1, l2;
		char *a = encode_sample(i, &l1);
		char *b = encode_sample((i + 1) % amb_n_samples, &l2);
		rc |= put_file(argv[1], "msg", i, a, l1);
		unsigned char *fr = malloc(8 + l1 + l2);
		if (!fr)
			return 1;
		fr[0] = (unsigned char)(l1 >> 24);
		fr[1] = (unsigned char)(l1 >> 16);
		fr[2] = (unsigned char)(l1 >> 8);
		fr[3] = (unsigned char)l1;
		memcpy(fr + 4, a, l1);
		fr[4 + l1] = (unsigned char)(l2 >> 24);
		fr[5 + l1] = (unsigned char)(l2 >> 16);
		fr[6 + l1] = (unsigned char)(l2 >> 8);
		fr[7 + l1] = (unsigned char)l2;
		memcpy(fr + 8 + l1, b, l2);
		rc |= put_file(argv[1], "frames", i, fr, 8 + l1 + l2);
		free(fr);
		free(a);
		free(b);
	}
	if (!rc)
		printf("proto_seeds: %zu messages, %zu frame streams in %s\n", amb_n_samples,
		       amb_n_samples, argv[1]);
	return rc;
}

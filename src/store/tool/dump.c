/*
 * dump.c - `amber-store dump DIR`: every live record, for comparisons.
 *
 * Opens the instance as the engine would (recovering it if needed), prints
 *     <table>\t<key>\t<sha256 of the value, lowercase hex>\n
 * per record in the engine's order (tables bytewise, then keys bytewise),
 * checking that order as it goes, then shuts the instance down cleanly.
 *
 * Bytes of a table name or key outside '!'..'~' and the backslash are
 * written as \xHH (lowercase hex), so a field never holds white space; the
 * keys of the oracle workload (printable, no white space) come out as is.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/sha2.h>

#include "amber/store.h"
#include "store/tool/tool.h"

#define DUMP_ORDER (-1) /* callback result: records out of order */
#define DUMP_NOMEM (-3)

typedef struct dump_state {
	FILE *out;
	char *prev_table;
	unsigned char *prev_key;
	size_t prev_klen, prev_kcap;
	uint64_t records;
	bool have_prev;
} dump_state;

static void put_escaped(FILE *out, const unsigned char *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		if (c > ' ' && c < 0x7f && c != '\\') {
			putc(c, out);
		} else {
			putc('\\', out);
			putc('x', out);
			putc(digits[c >> 4], out);
			putc(digits[c & 15], out);
		}
	}
}

/* bytewise comparison of (a, alen) and (b, blen): shorter prefix first */
static int bytecmp(const void *a, size_t alen, const void *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int dump_record(void *arg, const char *table, const void *key, size_t klen, const void *val,
                       size_t vlen)
{
	dump_state *st = arg;

	if (st->have_prev) {
		int c = strcmp(st->prev_table, table); /* strcmp compares as unsigned char */
		if (c == 0)
			c = bytecmp(st->prev_key, st->prev_klen, key, klen);
		if (c >= 0) {
			fflush(st->out);
			fprintf(stderr, "amber-store dump: engine returned records out of order after %" PRIu64
			                " records: ",
			        st->records);
			put_escaped(stderr, (const unsigned char *)table, strlen(table));
			fputc(':', stderr);
			put_escaped(stderr, key, klen);
			fprintf(stderr, " %s ", c == 0 ? "repeats" : "comes after");
			put_escaped(stderr, (const unsigned char *)st->prev_table, strlen(st->prev_table));
			fputc(':', stderr);
			put_escaped(stderr, st->prev_key, st->prev_klen);
			fputc('\n', stderr);
			return DUMP_ORDER;
		}
	}
	if (!st->have_prev || strcmp(st->prev_table, table) != 0) {
		char *t = strdup(table);
		if (!t)
			return DUMP_NOMEM;
		free(st->prev_table);
		st->prev_table = t;
	}
	if (klen > st->prev_kcap) {
		unsigned char *k = realloc(st->prev_key, klen);
		if (!k)
			return DUMP_NOMEM;
		st->prev_key = k;
		st->prev_kcap = klen;
	}
	if (klen)
		memcpy(st->prev_key, key, klen);
	st->prev_klen = klen;
	st->have_prev = true;

	unsigned char md[SHA256_DIGEST_SIZE];
	struct sha256_ctx c;
	sha256_init(&c);
	sha256_update(&c, vlen, val);
	sha256_digest(&c, sizeof(md), md);

	static const char digits[] = "0123456789abcdef";
	char hex[65];
	for (unsigned i = 0; i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[64] = '\0';

	put_escaped(st->out, (const unsigned char *)table, strlen(table));
	putc('\t', st->out);
	put_escaped(st->out, key, klen);
	putc('\t', st->out);
	fputs(hex, st->out);
	putc('\n', st->out);
	st->records++;
	return 0;
}

int cmd_dump(int argc, char **argv)
{
	const char *dir = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fprintf(stderr, "usage: amber-store dump DIR\n");
			return EXIT_OK;
		}
		if (argv[i][0] == '-' || dir) {
			fprintf(stderr, "amber-store dump: unexpected argument: %s\n", argv[i]);
			fprintf(stderr, "usage: amber-store dump DIR\n");
			return EXIT_USAGE;
		}
		dir = argv[i];
	}
	if (!dir) {
		fprintf(stderr, "usage: amber-store dump DIR\n");
		return EXIT_USAGE;
	}

	ams_instance *inst = NULL;
	int rc = ams_open(dir, NULL, &inst);
	if (rc != AMS_OK) {
		fprintf(stderr, "amber-store dump: cannot open %s: %s: %s\n", dir, ams_strerror(rc),
		        ams_errmsg());
		return tool_exit_code(rc);
	}

	dump_state st;
	memset(&st, 0, sizeof(st));
	st.out = stdout;
	int status = EXIT_OK;
	rc = ams_foreach(inst, dump_record, &st);
	if (rc == DUMP_ORDER) {
		status = EXIT_FAIL; /* message printed */
	} else if (rc == DUMP_NOMEM) {
		fprintf(stderr, "amber-store dump: out of memory\n");
		status = EXIT_FAIL;
	} else if (rc != AMS_OK) {
		fflush(stdout);
		fprintf(stderr, "amber-store dump: reading %s failed after %" PRIu64 " records: %s: %s\n",
		        dir, st.records, ams_strerror(rc), ams_errmsg());
		status = EXIT_FAIL;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "amber-store dump: writing the output: %s\n", strerror(errno));
		status = EXIT_FAIL;
	}

	rc = ams_close(inst);
	if (rc != AMS_OK) {
		fprintf(stderr, "amber-store dump: close %s: %s: %s\n", dir, ams_strerror(rc),
		        ams_errmsg());
		status = EXIT_FAIL;
	}
	free(st.prev_table);
	free(st.prev_key);
	return status;
}

/*
 * inspect_cmds.c - amber-store create, check, header, checkpoint, logs,
 * recover and hard-recover (the eseutil /k /mh /mk /ml /r /cc analogs).
 * The manual pages are in main.c; the verification work in
 * store/inspect.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "amber/store.h"
#include "common/checksum.h"
#include "common/vfs.h"
#include "store/dbfile.h"
#include "store/err.h"
#include "store/format.h"
#include "store/inspect.h"
#include "store/log.h"
#include "store/restoreenv.h"
#include "store/tool/tool.h"

/* ---- common helpers ---------------------------------------------------------- */

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int usage_err(const char *cmd, const char *synopsis, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Bad usage: say what, show the synopsis, exit 2. */
static int usage_err(const char *cmd, const char *synopsis, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "amber-store %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: amber-store %s\nTry 'amber-store %s --help' for more.\n",
	        synopsis, cmd);
	return EXIT_USAGE;
}

/* An engine error: "amber-store: <message>", exit code from rc. */
static int fail(int rc)
{
	fprintf(stderr, "amber-store: %s\n", ams_errmsg());
	return tool_exit_code(rc);
}

/* eseutil's last line. */
static void finish_line(int rc, double secs)
{
	if (rc == 0)
		printf("\nOperation completed successfully in %.3f seconds.\n", secs);
	else
		printf("\nOperation terminated with error %d (%s) after %.3f seconds.\n", rc,
		       ams_strerror(rc), secs);
}

static void fmt_bytes(uint64_t n, char *buf, size_t size)
{
	if (n >= (uint64_t)1 << 30)
		snprintf(buf, size, "%.2f GiB", (double)n / (double)(1u << 30));
	else if (n >= (uint64_t)1 << 20)
		snprintf(buf, size, "%.1f MiB", (double)n / (double)(1u << 20));
	else if (n >= 1024)
		snprintf(buf, size, "%.1f KiB", (double)n / 1024.0);
	else
		snprintf(buf, size, "%llu bytes", (unsigned long long)n);
}

/* "123", "64K", "1M", "2G" (binary multiples; a trailing B or iB is fine). */
static int parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	unsigned shift = 0;
	switch (*p) {
	case 'k': case 'K': shift = 10; p++; break;
	case 'm': case 'M': shift = 20; p++; break;
	case 'g': case 'G': shift = 30; p++; break;
	default: break;
	}
	if (shift && (*p == 'i' || *p == 'I') && (p[1] == 'b' || p[1] == 'B'))
		p += 2;
	else if (shift && (*p == 'b' || *p == 'B'))
		p++;
	if (*p)
		return -1;
	if (shift && v > (UINT64_MAX >> shift))
		return -1;
	*out = v << shift;
	return 0;
}

static int has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);
	return n >= m && strcmp(s + n - m, suf) == 0;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s && s[1] ? s + 1 : path;
}

static const char *state_name(uint32_t st)
{
	switch (st) {
	case AMB_DBSTATE_JUST_CREATED: return "Just Created";
	case AMB_DBSTATE_DIRTY: return "Dirty Shutdown";
	case AMB_DBSTATE_CLEAN: return "Clean Shutdown";
	default: return "Unknown";
	}
}

static const char *bk_kind(uint32_t kind)
{
	switch (kind) {
	case 0: return "";
	case 1: return "streaming";
	case 2: return "snapshot";
	default: return "unknown";
	}
}

/* A fixed-size, maybe unterminated, char field as printable text. */
static void field_str(const char *f, size_t n, char *out, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; i < n && f[i] && o + 1 < size; i++) {
		unsigned char c = (unsigned char)f[i];
		out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[o] = '\0';
}

static void sig_hex(const amb_sig *s, char *out, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; i < sizeof(s->random) && o + 3 <= size; i++, o += 2)
		snprintf(out + o, 3, "%02x", s->random[i]);
	out[o < size ? o : size - 1] = '\0';
}

/* ---- a small JSON writer ------------------------------------------------------ */

typedef struct js {
	FILE *f;
	int depth;
	int first[32];
} js;

/* Length of the valid UTF-8 sequence at p (NUL terminated), 0 if invalid. */
static size_t utf8_seq(const unsigned char *p)
{
	size_t n;
	unsigned cp;
	if (p[0] >= 0xC2 && p[0] <= 0xDF) {
		n = 2;
		cp = p[0] & 0x1Fu;
	} else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
		n = 3;
		cp = p[0] & 0x0Fu;
	} else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
		n = 4;
		cp = p[0] & 0x07u;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0; /* also stops at the NUL */
		cp = (cp << 6) | (p[i] & 0x3Fu);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
	    (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

static void js_str(js *j, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	fputc('"', j->f);
	for (; *p; p++) {
		unsigned c = *p;
		if (c == '"' || c == '\\')
			fprintf(j->f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", j->f);
		else if (c == '\t')
			fputs("\\t", j->f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(j->f, "\\u%04x", c);
		else if (c >= 0x80) {
			size_t n = utf8_seq(p);
			if (n == 0) {
				fputc('?', j->f); /* never emit broken UTF-8 */
			} else {
				fwrite(p, 1, n, j->f);
				p += n - 1;
			}
		} else
			fputc((int)c, j->f);
	}
	fputc('"', j->f);
}

static void js_sep(js *j, const char *key)
{
	if (j->depth > 0) {
		if (!j->first[j->depth])
			fputc(',', j->f);
		fputc('\n', j->f);
		for (int i = 0; i < j->depth; i++)
			fputs("  ", j->f);
	}
	j->first[j->depth] = 0;
	if (key) {
		js_str(j, key);
		fputs(": ", j->f);
	}
}

static void js_open(js *j, const char *key, char c)
{
	js_sep(j, key);
	fputc(c, j->f);
	if (j->depth < 31)
		j->depth++;
	j->first[j->depth] = 1;
}

static void js_close(js *j, char c)
{
	int empty = j->first[j->depth];
	j->depth--;
	if (!empty) {
		fputc('\n', j->f);
		for (int i = 0; i < j->depth; i++)
			fputs("  ", j->f);
	}
	fputc(c, j->f);
	if (j->depth == 0)
		fputc('\n', j->f);
}

static void js_kstr(js *j, const char *key, const char *v)
{
	js_sep(j, key);
	js_str(j, v);
}

static void js_ku64(js *j, const char *key, uint64_t v)
{
	js_sep(j, key);
	fprintf(j->f, "%llu", (unsigned long long)v);
}

static void js_kbool(js *j, const char *key, int v)
{
	js_sep(j, key);
	fputs(v ? "true" : "false", j->f);
}

static void js_ktime(js *j, const char *key, uint64_t us)
{
	char k[80], t[64];
	snprintf(k, sizeof(k), "%s_us", key);
	js_ku64(j, k, us);
	amb_time_format(us, t, sizeof(t));
	js_kstr(j, key, us ? t : "");
}

static void js_sig(js *j, const char *key, const amb_sig *s)
{
	char hex[40], host[32], t[64];
	sig_hex(s, hex, sizeof(hex));
	field_str(s->host, sizeof(s->host), host, sizeof(host));
	amb_time_format(s->time, t, sizeof(t));
	js_open(j, key, '{');
	js_kstr(j, "random", hex);
	js_ku64(j, "time_us", s->time);
	js_kstr(j, "time", s->time ? t : "");
	js_kstr(j, "host", host);
	js_close(j, '}');
}

static void js_bk(js *j, const char *key, const amb_bkinfo *b)
{
	js_open(j, key, '{');
	js_ku64(j, "gen_low", b->gen_low);
	js_ku64(j, "gen_high", b->gen_high);
	js_ktime(j, "mark", b->time);
	js_ku64(j, "kind_code", b->kind);
	js_kstr(j, "kind", bk_kind(b->kind));
	js_close(j, '}');
}

/* ---- create ----------------------------------------------------------------- */

#define SYN_CREATE \
	"create DIR [--prefix E00] [--page-size 8192] [--log-size 1M] [--db NAME.edb]... [--nocow]"

int cmd_create(int argc, char **argv)
{
	const char *dir = NULL, *prefix = "E00";
	const char *dbs[AMB_MAX_DBS];
	int ndbs = 0;
	uint64_t page_size = 8192, log_size = 1u << 20;
	int nocow = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--nocow") == 0) {
			nocow = 1;
		} else if (strcmp(a, "--prefix") == 0 && v) {
			if (strlen(v) != 3)
				return usage_err("create", SYN_CREATE,
				                 "the prefix must be 3 characters, not '%s'", v);
			prefix = v;
			i++;
		} else if (strcmp(a, "--page-size") == 0 && v) {
			if (parse_size(v, &page_size) < 0 || !amb_page_size_ok((uint32_t)page_size) ||
			    page_size > UINT32_MAX)
				return usage_err("create", SYN_CREATE,
				                 "page size must be 4096, 8192 or 32768, not '%s'", v);
			i++;
		} else if (strcmp(a, "--log-size") == 0 && v) {
			if (parse_size(v, &log_size) < 0 || log_size < 65536 || log_size % 4096)
				return usage_err("create", SYN_CREATE,
				                 "log size must be a multiple of 4K and at least 64K, not '%s'",
				                 v);
			i++;
		} else if (strcmp(a, "--db") == 0 && v) {
			if (ndbs == AMB_MAX_DBS)
				return usage_err("create", SYN_CREATE, "at most %d databases", AMB_MAX_DBS);
			if (strchr(v, '/') || !has_suffix(v, ".edb") || strlen(v) <= 4 ||
			    strlen(v) >= 64)
				return usage_err("create", SYN_CREATE,
				                 "a database is a file name ending in .edb (no '/'), not '%s'",
				                 v);
			for (int k = 0; k < ndbs; k++)
				if (strcmp(dbs[k], v) == 0)
					return usage_err("create", SYN_CREATE, "database '%s' given twice", v);
			dbs[ndbs++] = v;
			i++;
		} else if (a[0] == '-' && a[1]) {
			return usage_err("create", SYN_CREATE, "unknown option or missing value: %s", a);
		} else if (!dir) {
			dir = a;
		} else {
			return usage_err("create", SYN_CREATE, "unexpected argument: %s", a);
		}
	}
	if (!dir)
		return usage_err("create", SYN_CREATE, "no directory given");
	if (ndbs == 0) {
		dbs[ndbs++] = "priv1.edb";
		dbs[ndbs++] = "pub1.edb";
	}
	ams_create_opts o = {
		.prefix = prefix,
		.page_size = (uint32_t)page_size,
		.log_size = log_size,
		.databases = dbs,
		.ndatabases = ndbs,
		.nocow = nocow,
	};
	double t0 = mono_now();
	int rc = ams_create(dir, &o);
	if (rc) {
		/* an existing instance is bad input, not a failure */
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
		return rc == AMS_EEXIST ? EXIT_USAGE : tool_exit_code(rc);
	}
	char ls[32];
	fmt_bytes(log_size, ls, sizeof(ls));
	printf("Created instance %s\n", dir);
	printf("  log prefix %s, page size %llu, log files of %s\n", prefix,
	       (unsigned long long)page_size, ls);
	printf("  databases:");
	for (int k = 0; k < ndbs; k++)
		printf(" %s", dbs[k]);
	printf("\n");
	finish_line(0, mono_now() - t0);
	return EXIT_OK;
}

/* ---- check -------------------------------------------------------------------- */

#define SYN_CHECK "check (FILE.edb | LOGDIR [--prefix E00] [--all] | FILE.log | FILE.chk)"

typedef struct check_ctx {
	int quiet;
	uint64_t printed;
} check_ctx;

static void on_db_page(void *arg, uint32_t pgno, int result, const char *why, uint64_t bit)
{
	check_ctx *c = arg;
	(void)bit;
	c->printed++;
	if (result == AMB_CK_CORRECTED)
		printf("page %u: %s\n", pgno, why);
	else
		printf("page %u: DAMAGED: %s\n", pgno, why);
	fflush(stdout);
}

static int check_db(const char *path, int quiet)
{
	check_ctx c = {.quiet = quiet};
	amb_db_check_report rep;
	if (!quiet)
		printf("Checking database %s\n\n", path);
	double t0 = mono_now();
	int rc = amb_db_check(amb_vfs_posix(), path, &rep, on_db_page, &c);
	double secs = mono_now() - t0;
	if (rc == AMS_ENOTDB || rc == AMS_EVERSION || rc == AMS_ENOTFOUND ||
	    (rc && rc != AMS_ECORRUPT && !rep.pages)) {
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
		finish_line(rc, secs);
		return rc == AMS_ENOTFOUND ? EXIT_USAGE : tool_exit_code(rc);
	}
	if (rc && rc != AMS_ECORRUPT)
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
	if (!quiet) {
		char sz[32];
		fmt_bytes(rep.file_size, sz, sizeof(sz));
		if (c.printed)
			printf("\n");
		if (rep.hdr_ok)
			printf("Database:  %s, page size %u, state %s\n", base_name(path), rep.page_size,
			       state_name(rep.hdr.state));
		else
			printf("Database:  %s, page size %u (guessed: both header copies are damaged)\n",
			       base_name(path), rep.page_size);
		printf("Pages:     %llu checked (%s): %llu ok, %llu corrected, %llu damaged\n",
		       (unsigned long long)rep.pages, sz, (unsigned long long)rep.ok,
		       (unsigned long long)rep.corrected, (unsigned long long)rep.damaged);
		printf("By type:   %llu header, %llu free, %llu data, %llu overflow\n",
		       (unsigned long long)rep.header_pages, (unsigned long long)rep.free_pages,
		       (unsigned long long)rep.data_pages, (unsigned long long)rep.overflow_pages);
		if (rep.hdr_ok && (rep.hdr_status & AMB_HDR_COPIES_DIFFER))
			printf("Note:      the two header copies hold different updates (a header "
			       "write was interrupted, or is still under way); the newer one is in "
			       "force\n");
		if (rep.missing_pages && rep.hdr.state == AMB_DBSTATE_DIRTY)
			printf("Note:      the header counts %u pages, %llu more than the file holds; "
			       "recovery extends the file\n",
			       rep.hdr.page_count, (unsigned long long)rep.missing_pages);
		double mib = (double)rep.file_size / (1024.0 * 1024.0);
		double s = secs > 1e-6 ? secs : 1e-6;
		printf("Speed:     %.1f MiB in %.3f s: %.1f MiB/s, %.0f pages/s\n", mib, secs, mib / s,
		       (double)rep.pages / s);
		if (rep.corrected)
			printf("\n%llu single-bit error%s corrected in memory only; the file is "
			       "unchanged.\n",
			       (unsigned long long)rep.corrected, rep.corrected == 1 ? " was" : "s were");
	}
	if (rc == AMS_ECORRUPT) {
		printf("\n%llu damaged page%s: the database is NOT intact.\n",
		       (unsigned long long)rep.damaged, rep.damaged == 1 ? "" : "s");
		fflush(stdout);
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
	}
	finish_line(rc, secs);
	return rc ? EXIT_FAIL : EXIT_OK;
}

static const char *copy_status(int bad)
{
	return bad ? "DAMAGED" : "ok";
}

static int check_chk(const char *path)
{
	double t0 = mono_now();
	amb_chk chk;
	uint64_t seq = 0;
	int st = 0;
	printf("Checking checkpoint %s\n\n", path);
	int rc = amb_chk_load(amb_vfs_posix(), path, &chk, &seq, &st);
	if (rc && rc != AMS_ECORRUPT) {
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
		finish_line(rc, mono_now() - t0);
		return rc == AMS_ENOTFOUND ? EXIT_USAGE : tool_exit_code(rc);
	}
	printf("copy 0: %s\ncopy 1: %s\n", copy_status(st & AMB_HDR_COPY0_BAD),
	       copy_status(st & AMB_HDR_COPY1_BAD));
	if (st & AMB_HDR_CORRECTED)
		printf("a single-bit error was corrected in memory; the file is unchanged\n");
	if (rc == 0)
		printf("checkpoint: generation 0x%08X (%u), LSN %llu, update %llu\n", chk.gen, chk.gen,
		       (unsigned long long)chk.lsn, (unsigned long long)seq);
	else
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
	/* one bad copy is damage too: the next write fixes it, but a check
	 * reports what is on disk */
	if (rc == 0 && (st & (AMB_HDR_COPY0_BAD | AMB_HDR_COPY1_BAD)))
		rc = amb_err(AMS_ECORRUPT, "%s: one checkpoint copy is damaged", path);
	finish_line(rc, mono_now() - t0);
	return rc ? EXIT_FAIL : EXIT_OK;
}

static const char *scan_status(const amb_logscan *s, char *buf, size_t size)
{
	if (s->wrong_size)
		snprintf(buf, size, "DAMAGED (%s)", s->size < s->hdr.file_size ? "truncated" : "wrong size");
	else if (s->damaged)
		snprintf(buf, size, "DAMAGED at segment %u", s->first_bad);
	else if (s->first_bad)
		snprintf(buf, size, "torn tail at segment %u", s->first_bad);
	else
		snprintf(buf, size, "ok");
	return buf;
}

static int check_one_log(const char *path)
{
	double t0 = mono_now();
	amb_logscan s;
	printf("Checking log file %s\n\n", path);
	int rc = amb_log_scan(amb_vfs_posix(), path, &s);
	if (rc) {
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
		finish_line(rc, mono_now() - t0);
		return tool_exit_code(rc);
	}
	char st[64];
	printf("generation 0x%08X (%u): %u of %u segments valid, LSN %llu to %llu: %s\n",
	       s.hdr.gen, s.hdr.gen, s.valid_segs, s.nsegs, (unsigned long long)s.hdr.start_lsn,
	       (unsigned long long)s.end_lsn, scan_status(&s, st, sizeof(st)));
	if (s.corrected)
		printf("%u single-bit error%s corrected in memory; the file is unchanged\n",
		       s.corrected, s.corrected == 1 ? " was" : "s were");
	if (s.damaged) {
		char why[160];
		rc = amb_err(AMS_ECORRUPT, "%s: %s", path, amb_logscan_damage(&s, why, sizeof(why)));
	}
	double secs = mono_now() - t0;
	if (!rc && s.first_bad)
		printf("a torn tail is what a crash during a flush leaves; nothing acknowledged "
		       "was in it\n");
	if (rc)
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
	finish_line(rc, secs);
	return rc ? EXIT_FAIL : EXIT_OK;
}

/* The prefix of the instance in dir: its only <prefix>.chk, else <prefix>.log. */
static void detect_prefix(const char *dir, char *out, size_t size)
{
	snprintf(out, size, "E00");
	DIR *d = opendir(dir);
	if (!d)
		return;
	char chk[8] = "", cur[8] = "";
	int nchk = 0, ncur = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t n = strlen(de->d_name);
		if (n == 7 && has_suffix(de->d_name, ".chk")) {
			nchk++;
			memcpy(chk, de->d_name, 3);
			chk[3] = '\0';
		} else if (n == 7 && has_suffix(de->d_name, ".log")) {
			ncur++;
			memcpy(cur, de->d_name, 3);
			cur[3] = '\0';
		}
	}
	closedir(d);
	if (nchk == 1)
		snprintf(out, size, "%s", chk);
	else if (ncur == 1)
		snprintf(out, size, "%s", cur);
	else if (nchk == 0 && ncur == 0) {
		/* a backup's log directory holds only archived logs */
		d = opendir(dir);
		if (!d)
			return;
		while ((de = readdir(d)) != NULL) {
			size_t n = strlen(de->d_name);
			if (n == 15 && has_suffix(de->d_name, ".log")) {
				char p[4];
				memcpy(p, de->d_name, 3);
				p[3] = '\0';
				if (amb_log_parse_name(de->d_name, p)) {
					snprintf(out, size, "%s", p);
					break;
				}
			}
		}
		closedir(d);
	}
}

typedef struct logcheck_ctx {
	int quiet;
} logcheck_ctx;

static void on_check_log(void *arg, const amb_logdir_entry *e)
{
	logcheck_ctx *c = arg;
	if (c->quiet)
		return;
	char st[64];
	if (e->rc)
		printf("  %-16s  unreadable\n", e->name);
	else
		printf("  %-16s  generation 0x%08X (%u)  %u/%u segments  %s\n", e->name, e->gen, e->gen,
		       e->scan.valid_segs, e->scan.nsegs, scan_status(&e->scan, st, sizeof(st)));
	fflush(stdout);
}

static void on_check_problem(void *arg, uint32_t gen, int error, const char *msg)
{
	(void)arg;
	(void)gen;
	printf("  %s: %s\n", error ? "ERROR" : "note", msg);
	fflush(stdout);
}

static int check_logdir(const char *dir, const char *prefix_opt, int all, int quiet)
{
	char prefix[8];
	if (prefix_opt)
		snprintf(prefix, sizeof(prefix), "%s", prefix_opt);
	else
		detect_prefix(dir, prefix, sizeof(prefix));
	double t0 = mono_now();
	int chk_rc = 0;
	uint32_t from = 0;
	char chkpath[PATH_MAX];
	snprintf(chkpath, sizeof(chkpath), "%s/%s.chk", dir, prefix);
	if (!quiet)
		printf("Checking log stream %s/%s*.log\n\n", dir, prefix);
	amb_chk chk;
	uint64_t seq;
	int st = 0;
	int r = amb_chk_load(amb_vfs_posix(), chkpath, &chk, &seq, &st);
	if (r == 0) {
		if (st & (AMB_HDR_COPY0_BAD | AMB_HDR_COPY1_BAD)) {
			printf("  ERROR: %s: checkpoint copy %d is damaged\n", base_name(chkpath),
			       st & AMB_HDR_COPY0_BAD ? 0 : 1);
			chk_rc = AMS_ECORRUPT;
		}
		if (!all) {
			from = chk.gen;
			if (!quiet)
				printf("  checkpoint %s: generation 0x%08X; checking the logs from there on "
				       "(--all for every log)\n",
				       base_name(chkpath), chk.gen);
		}
	} else if (r == AMS_ENOTFOUND) {
		if (!quiet)
			printf("  no checkpoint %s: checking every log\n", base_name(chkpath));
	} else {
		printf("  ERROR: %s\n", ams_errmsg());
		if (!quiet)
			printf("  checking every log\n");
		chk_rc = r;
	}

	logcheck_ctx c = {.quiet = quiet};
	amb_logdir_cb cb = {.on_log = on_check_log, .on_problem = on_check_problem, .arg = &c};
	amb_logdir_report rep;
	int rc = amb_logdir_check(amb_vfs_posix(), dir, prefix, from, &rep, &cb);
	double secs = mono_now() - t0;
	char emsg[1024]; /* the notes below read headers, which may set another */
	snprintf(emsg, sizeof(emsg), "%s", ams_errmsg());
	if (rc == AMS_ENOTFOUND && rep.nlogs == 0 && rep.errors <= 1) {
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
		finish_line(rc, secs);
		return EXIT_USAGE;
	}
	if (!quiet) {
		double mib = (double)rep.bytes / (1024.0 * 1024.0);
		double s = secs > 1e-6 ? secs : 1e-6;
		printf("\nLogs:      %u checked", rep.nlogs);
		if (rep.nlogs)
			printf(" (generations 0x%08X to 0x%08X)", rep.gen_first, rep.gen_last);
		printf(", %u error%s, %u note%s\n", rep.errors, rep.errors == 1 ? "" : "s",
		       rep.warnings, rep.warnings == 1 ? "" : "s");
		/* a crash before a roll's renames reached the disk leaves the
		 * next generation, header written, as <prefix>tmp.log: without a
		 * <prefix>.log (between the renames) or beside the old one */
		char tp[PATH_MAX];
		amb_loghdr th;
		snprintf(tp, sizeof(tp), "%s/%stmp.log", dir, prefix);
		int tmp_next = rep.nlogs && amb_loghdr_load(amb_vfs_posix(), tp, &th) == 0 &&
		               th.gen == rep.gen_last + 1;
		if (tmp_next)
			printf("Note:      %s: a log roll was interrupted by a crash (%stmp.log holds "
			       "generation 0x%08X); opening the instance completes it\n",
			       rep.has_current ? "the current log is the old generation"
			                       : "no current log",
			       prefix, th.gen);
		else if (!rep.has_current)
			printf("Note:      no current log %s.log (fine for a backup's log directory)\n",
			       prefix);
		amb_loghdr nh;
		if (amb_log_unsynced_header(amb_vfs_posix(), dir, prefix, NULL, &nh))
			printf("Note:      %s.log has no readable header: if the instance crashed, the crash "
			       "came right after a log roll, before the new file's first sync, so nothing "
			       "in it was acknowledged; opening the instance writes its header again, as "
			       "generation 0x%08X\n",
			       prefix, nh.gen);
		if (rep.corrected)
			printf("Note:      %u single-bit error%s corrected in memory; the files are "
			       "unchanged\n",
			       rep.corrected, rep.corrected == 1 ? " was" : "s were");
		printf("Speed:     %.1f MiB in %.3f s: %.1f MiB/s\n", mib, secs, mib / s);
	}
	if (!rc && chk_rc)
		rc = chk_rc;
	if (rc)
		fprintf(stderr, "amber-store: %s\n", rc == chk_rc ? "the checkpoint is damaged"
		                                                  : emsg);
	finish_line(rc, secs);
	return rc ? EXIT_FAIL : EXIT_OK;
}

int cmd_check(int argc, char **argv)
{
	const char *target = NULL, *prefix = NULL;
	int all = 0, quiet = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--prefix") == 0 && i + 1 < argc) {
			prefix = argv[++i];
			if (strlen(prefix) != 3)
				return usage_err("check", SYN_CHECK, "the prefix must be 3 characters");
		} else if (strcmp(a, "--all") == 0) {
			all = 1;
		} else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
			quiet = 1;
		} else if (a[0] == '-' && a[1]) {
			return usage_err("check", SYN_CHECK, "unknown option or missing value: %s", a);
		} else if (!target) {
			target = a;
		} else {
			return usage_err("check", SYN_CHECK, "unexpected argument: %s", a);
		}
	}
	if (!target)
		return usage_err("check", SYN_CHECK, "nothing to check");
	struct stat sb;
	if (stat(target, &sb) != 0) {
		fprintf(stderr, "amber-store: %s: %s\n", target, strerror(errno));
		return EXIT_USAGE;
	}
	if (S_ISDIR(sb.st_mode))
		return check_logdir(target, prefix, all, quiet);
	if (prefix || all)
		return usage_err("check", SYN_CHECK, "--prefix and --all go with a log directory");
	if (has_suffix(target, ".log"))
		return check_one_log(target);
	if (has_suffix(target, ".chk"))
		return check_chk(target);
	return check_db(target, quiet);
}

/* ---- header --------------------------------------------------------------------- */

#define SYN_HEADER "header FILE.edb [--json]"

typedef struct copy_info {
	int result;    /* AMB_CK_* */
	uint64_t bit;  /* corrected bit */
	uint64_t seq;  /* update count of the copy */
	char why[160];
} copy_info;

/* Verify header copy no (page size ps) on its own, for the display. */
static void header_copy(int fd, uint32_t ps, uint32_t no, copy_info *ci)
{
	amb_vfs *v = amb_vfs_posix();
	memset(ci, 0, sizeof(*ci));
	unsigned char *page = amb_io_alloc(ps), *scratch = amb_io_alloc(ps);
	if (!page || !scratch) {
		ci->result = AMB_CK_DAMAGED;
		snprintf(ci->why, sizeof(ci->why), "out of memory");
		goto out;
	}
	ssize_t n = v->pread(v, fd, page, ps, (off_t)no * ps);
	if (n != (ssize_t)ps) {
		ci->result = AMB_CK_DAMAGED;
		snprintf(ci->why, sizeof(ci->why), n < 0 ? "unreadable" : "missing (file too short)");
		goto out;
	}
	uint16_t type;
	ci->result = amb_page_check(page, ps, no, scratch, &type, &ci->bit, ci->why,
	                            sizeof(ci->why));
	if (ci->result != AMB_CK_DAMAGED) {
		const unsigned char *good = ci->result == AMB_CK_CORRECTED ? scratch : page;
		memcpy(&ci->seq, good + sizeof(amb_blk) + offsetof(amb_dbhdr, seq), 8);
	}
out:
	free(page);
	free(scratch);
}

static void copy_text(const copy_info *ci, char *buf, size_t size)
{
	if (ci->result == AMB_CK_OK)
		snprintf(buf, size, "ok, update %llu", (unsigned long long)ci->seq);
	else if (ci->result == AMB_CK_CORRECTED)
		snprintf(buf, size, "ok after correcting bit %llu, update %llu",
		         (unsigned long long)ci->bit, (unsigned long long)ci->seq);
	else
		snprintf(buf, size, "DAMAGED (%s)", ci->why);
}

static void print_gen_range(const char *label, uint32_t lo, uint32_t hi)
{
	printf("%25s: %u-%u (0x%X-0x%X)\n", label, lo, hi, lo, hi);
}

static void print_bk(const char *title, const amb_bkinfo *b)
{
	char t[64];
	amb_time_format(b->time, t, sizeof(t));
	printf("\n%s:\n", title);
	printf("%25s: %u-%u (0x%X-0x%X)\n", "Log Gen", b->gen_low, b->gen_high, b->gen_low,
	       b->gen_high);
	printf("%25s: %s\n", "Mark", t);
	if (b->time)
		printf("%25s: %s\n", "Kind", bk_kind(b->kind));
}

static void print_lgpos(const char *label, const amb_lgpos *p, uint64_t us)
{
	char t[64];
	amb_time_format(us, t, sizeof(t));
	printf("%25s: (0x%X,%u,%u)  %s\n", label, p->gen, p->seg, p->off, t);
}

static void print_counter(const char *label, uint64_t n, uint64_t us)
{
	char t[64];
	amb_time_format(us, t, sizeof(t));
	printf("%25s: %llu (last: %s)\n", label, (unsigned long long)n, t);
}

static void header_json(const char *path, const amb_dbhdr *h, int st, const copy_info ci[2])
{
	js j = {.f = stdout};
	char name[80], prefix[16], buf[200];
	field_str(h->name, sizeof(h->name), name, sizeof(name));
	field_str(h->prefix, sizeof(h->prefix), prefix, sizeof(prefix));
	js_open(&j, NULL, '{');
	js_kstr(&j, "file", path);
	js_kstr(&j, "file_type", "database");
	js_open(&j, "copies", '[');
	for (int i = 0; i < 2; i++) {
		js_open(&j, NULL, '{');
		js_ku64(&j, "page", (uint64_t)i);
		js_kstr(&j, "status", ci[i].result == AMB_CK_OK          ? "ok"
		                      : ci[i].result == AMB_CK_CORRECTED ? "corrected"
		                                                         : "damaged");
		if (ci[i].result == AMB_CK_CORRECTED)
			js_ku64(&j, "corrected_bit", ci[i].bit);
		if (ci[i].result == AMB_CK_DAMAGED)
			js_kstr(&j, "reason", ci[i].why);
		else
			js_ku64(&j, "update", ci[i].seq);
		js_close(&j, '}');
	}
	js_close(&j, ']');
	js_kbool(&j, "copies_differ", (st & AMB_HDR_COPIES_DIFFER) != 0);
	snprintf(buf, sizeof(buf), "0x%08x", h->magic);
	js_kstr(&j, "magic", buf);
	js_ku64(&j, "version", h->version);
	js_ku64(&j, "update", h->seq);
	js_ku64(&j, "page_size", h->page_size);
	js_ku64(&j, "dbid", h->dbidx);
	js_kstr(&j, "name", name);
	js_kstr(&j, "log_prefix", prefix);
	js_sig(&j, "db_signature", &h->sign_db);
	js_sig(&j, "log_signature", &h->sign_log);
	js_ku64(&j, "dbtime", h->last_stamp);
	js_ku64(&j, "state_code", h->state);
	js_kstr(&j, "state", state_name(h->state));
	js_kbool(&j, "backup_copy", h->full_cur.time != 0);
	js_ku64(&j, "log_required_min", h->gen_min_required);
	js_ku64(&j, "log_required_max", h->gen_max_required);
	js_ku64(&j, "log_committed", h->gen_max_committed);
	js_open(&j, "last_consistent", '{');
	js_ku64(&j, "gen", h->consistent.gen);
	js_ku64(&j, "seg", h->consistent.seg);
	js_ku64(&j, "off", h->consistent.off);
	js_ku64(&j, "lsn", h->consistent_lsn);
	js_ktime(&j, "time", h->consistent_time);
	js_close(&j, '}');
	js_ktime(&j, "last_attach", h->attach_time);
	js_ktime(&j, "last_detach", h->detach_time);
	js_ku64(&j, "page_count", h->page_count);
	js_bk(&j, "previous_full_backup", &h->full_prev);
	js_bk(&j, "previous_incremental_backup", &h->inc_prev);
	js_bk(&j, "previous_differential_backup", &h->diff_prev);
	js_bk(&j, "previous_copy_backup", &h->copy_prev);
	js_bk(&j, "current_full_backup", &h->full_cur);
	js_bk(&j, "current_shadow_copy_backup", &h->snap_cur);
	js_ku64(&j, "ecc_fix_success_count", h->ecc_fixed_count);
	js_ktime(&j, "ecc_fix_success_last", h->ecc_fixed_time);
	js_ku64(&j, "bad_checksum_count", h->bad_checksum_count);
	js_ktime(&j, "bad_checksum_last", h->bad_checksum_time);
	js_ku64(&j, "repair_count", h->repair_count);
	js_close(&j, '}');
}

int cmd_header(int argc, char **argv)
{
	const char *path = NULL;
	int json = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (argv[i][0] == '-' && argv[i][1])
			return usage_err("header", SYN_HEADER, "unknown option: %s", argv[i]);
		else if (!path)
			path = argv[i];
		else
			return usage_err("header", SYN_HEADER, "unexpected argument: %s", argv[i]);
	}
	if (!path)
		return usage_err("header", SYN_HEADER, "no database file given");
	amb_vfs *v = amb_vfs_posix();
	int fd = v->open(v, path, O_RDONLY, 0);
	if (fd < 0) {
		fprintf(stderr, "amber-store: %s: %s\n", path, strerror(-fd));
		return EXIT_USAGE;
	}
	double t0 = mono_now();
	amb_dbhdr h;
	int st = 0;
	int rc = amb_dbhdr_load(v, fd, path, &h, &st);
	if (rc) {
		v->close(v, fd);
		return fail(rc);
	}
	copy_info ci[2];
	header_copy(fd, h.page_size, 0, &ci[0]);
	header_copy(fd, h.page_size, 1, &ci[1]);
	v->close(v, fd);
	if (json) {
		header_json(path, &h, st, ci);
		return EXIT_OK;
	}

	char buf[256], name[80], prefix[16];
	field_str(h.name, sizeof(h.name), name, sizeof(name));
	field_str(h.prefix, sizeof(h.prefix), prefix, sizeof(prefix));
	printf("Database: %s\n\n", path);
	printf("%25s: Database\n", "File Type");
	copy_text(&ci[0], buf, sizeof(buf));
	printf("%25s: copy 0 (page 0): %s\n", "Checksum", buf);
	copy_text(&ci[1], buf, sizeof(buf));
	printf("%25s  copy 1 (page 1): %s\n", "", buf);
	if (st & AMB_HDR_COPIES_DIFFER)
		printf("%25s  (the copies differ: a header write was interrupted, or is still "
		       "under way; the newer is in force)\n",
		       "");
	printf("%25s: 0x%08x\n", "Format ulMagic", h.magic);
	printf("%25s: %u\n", "Format ulVersion", h.version);
	printf("%25s: %llu\n", "Header Update Count", (unsigned long long)h.seq);
	amb_sig_format(&h.sign_db, buf, sizeof(buf));
	printf("%25s: %s\n", "DB Signature", buf);
	printf("%25s: %u\n", "cbDbPage", h.page_size);
	printf("%25s: %llu (0x%llx)\n", "dbtime", (unsigned long long)h.last_stamp,
	       (unsigned long long)h.last_stamp);
	if (h.state >= AMB_DBSTATE_JUST_CREATED && h.state <= AMB_DBSTATE_CLEAN)
		printf("%25s: %s\n", "State", state_name(h.state));
	else
		printf("%25s: Unknown (%u)\n", "State", h.state);
	if (h.full_cur.time)
		printf("%25s  (a backup copy: it must be recovered with hard-recover)\n", "");
	print_gen_range("Log Required", h.gen_min_required, h.gen_max_required);
	printf("%25s: %u (0x%X)\n", "Log Committed", h.gen_max_committed, h.gen_max_committed);
	amb_sig_format(&h.sign_log, buf, sizeof(buf));
	printf("%25s: %s\n", "Log Signature", buf);
	printf("%25s: %s\n", "Log Prefix", prefix);
	print_lgpos("Last Consistent", &h.consistent, h.consistent_time);
	amb_time_format(h.attach_time, buf, sizeof(buf));
	printf("%25s: %s\n", "Last Attach", buf);
	amb_time_format(h.detach_time, buf, sizeof(buf));
	printf("%25s: %s\n", "Last Detach", buf);
	printf("%25s: %u\n", "Dbid", h.dbidx);
	printf("%25s: %s\n", "Database Name", name);
	char sz[32];
	fmt_bytes((uint64_t)h.page_count * h.page_size, sz, sizeof(sz));
	printf("%25s: %u (%s)\n", "Page Count", h.page_count, sz);
	print_counter("ECC Fix Success Count", h.ecc_fixed_count, h.ecc_fixed_time);
	print_counter("Bad Checksum Error Count", h.bad_checksum_count, h.bad_checksum_time);
	printf("%25s: %llu\n", "Repair Count", (unsigned long long)h.repair_count);

	print_bk("Previous Full Backup", &h.full_prev);
	print_bk("Previous Incremental Backup", &h.inc_prev);
	print_bk("Previous Differential Backup", &h.diff_prev);
	print_bk("Previous Copy Backup", &h.copy_prev);
	print_bk("Current Full Backup", &h.full_cur);
	print_bk("Current Shadow copy backup", &h.snap_cur);
	finish_line(0, mono_now() - t0);
	if (st & (AMB_HDR_COPY0_BAD | AMB_HDR_COPY1_BAD))
		fprintf(stderr, "amber-store: %s: header copy %d is damaged; the other is in force\n",
		        path, st & AMB_HDR_COPY0_BAD ? 0 : 1);
	return EXIT_OK;
}

/* ---- checkpoint ----------------------------------------------------------------- */

#define SYN_CHECKPOINT "checkpoint FILE.chk [--json]"

/* Per-copy status of a checkpoint file, for the display. */
static void chk_copies(const char *path, copy_info ci[2])
{
	amb_vfs *v = amb_vfs_posix();
	unsigned char buf[AMB_CHK_FILE_SIZE];
	memset(ci, 0, 2 * sizeof(*ci));
	ssize_t n = -1;
	int fd = v->open(v, path, O_RDONLY, 0);
	if (fd >= 0) {
		n = v->pread(v, fd, buf, sizeof(buf), 0);
		v->close(v, fd);
	}
	for (uint32_t no = 0; no < 2; no++) {
		if (n < (ssize_t)((no + 1) * 4096)) {
			ci[no].result = AMB_CK_DAMAGED;
			snprintf(ci[no].why, sizeof(ci[no].why), "missing (file too short)");
			continue;
		}
		unsigned char *p = buf + no * 4096;
		uint64_t bit = 0;
		ci[no].result = amb_ck_verify(p, 4096, no, &bit);
		amb_blk b;
		amb_blk_get(p, &b);
		uint32_t magic;
		memcpy(&magic, p + sizeof(amb_blk), 4);
		if (ci[no].result == AMB_CK_DAMAGED) {
			snprintf(ci[no].why, sizeof(ci[no].why), "checksum mismatch");
		} else if (b.type != AMB_BT_CHK || b.no != no || magic != AMB_CHK_MAGIC) {
			ci[no].result = AMB_CK_DAMAGED;
			snprintf(ci[no].why, sizeof(ci[no].why), "not a checkpoint copy");
		} else {
			ci[no].bit = bit;
			ci[no].seq = b.stamp;
		}
	}
}

int cmd_checkpoint(int argc, char **argv)
{
	const char *path = NULL;
	int json = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = 1;
		else if (argv[i][0] == '-' && argv[i][1])
			return usage_err("checkpoint", SYN_CHECKPOINT, "unknown option: %s", argv[i]);
		else if (!path)
			path = argv[i];
		else
			return usage_err("checkpoint", SYN_CHECKPOINT, "unexpected argument: %s",
			                 argv[i]);
	}
	if (!path)
		return usage_err("checkpoint", SYN_CHECKPOINT, "no checkpoint file given");
	double t0 = mono_now();
	amb_chk c;
	uint64_t seq = 0;
	int st = 0;
	int rc = amb_chk_load(amb_vfs_posix(), path, &c, &seq, &st);
	if (rc) {
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
		return rc == AMS_ENOTFOUND ? EXIT_USAGE : tool_exit_code(rc);
	}
	copy_info ci[2];
	chk_copies(path, ci);
	char prefix[16], first_log[64], buf[256];
	field_str(c.prefix, sizeof(c.prefix), prefix, sizeof(prefix));
	snprintf(first_log, sizeof(first_log), "%s%08X.log", prefix, c.gen);
	{
		/* the generation may still be the current log <prefix>.log */
		char dir[PATH_MAX], lp[PATH_MAX + 80];
		struct stat sb;
		amb_path_dir(path, dir, sizeof(dir));
		snprintf(lp, sizeof(lp), "%s/%s", dir, first_log);
		if (stat(lp, &sb) != 0) {
			amb_loghdr lh;
			snprintf(lp, sizeof(lp), "%s/%s.log", dir, prefix);
			if (amb_loghdr_load(amb_vfs_posix(), lp, &lh) == 0 && lh.gen == c.gen)
				snprintf(first_log, sizeof(first_log), "%s.log", prefix);
		}
	}

	if (json) {
		js j = {.f = stdout};
		js_open(&j, NULL, '{');
		js_kstr(&j, "file", path);
		js_kstr(&j, "file_type", "checkpoint");
		js_open(&j, "copies", '[');
		for (int i = 0; i < 2; i++) {
			js_open(&j, NULL, '{');
			js_kstr(&j, "status", ci[i].result == AMB_CK_OK          ? "ok"
			                      : ci[i].result == AMB_CK_CORRECTED ? "corrected"
			                                                         : "damaged");
			if (ci[i].result != AMB_CK_DAMAGED)
				js_ku64(&j, "update", ci[i].seq);
			else
				js_kstr(&j, "reason", ci[i].why);
			js_close(&j, '}');
		}
		js_close(&j, ']');
		js_ku64(&j, "version", c.version);
		js_ku64(&j, "update", seq);
		js_ku64(&j, "gen", c.gen);
		js_ku64(&j, "lsn", c.lsn);
		js_kstr(&j, "first_log", first_log);
		js_kstr(&j, "log_prefix", prefix);
		js_sig(&j, "log_signature", &c.sign_log);
		js_ktime(&j, "written", c.time);
		js_bk(&j, "last_full_backup", &c.full_backup);
		js_bk(&j, "last_incremental_backup", &c.inc_backup);
		js_close(&j, '}');
		return EXIT_OK;
	}

	printf("Checkpoint file: %s\n\n", path);
	printf("%25s: Checkpoint\n", "File Type");
	copy_text(&ci[0], buf, sizeof(buf));
	printf("%25s: copy 0: %s\n", "Checksum", buf);
	copy_text(&ci[1], buf, sizeof(buf));
	printf("%25s  copy 1: %s\n", "", buf);
	printf("%25s: %u\n", "Format ulVersion", c.version);
	printf("%25s: %llu\n", "Update Count", (unsigned long long)seq);
	printf("%25s: (gen 0x%X (%u), lsn %llu)\n", "Checkpoint", c.gen, c.gen,
	       (unsigned long long)c.lsn);
	printf("%25s: %s\n", "First Log Needed", first_log);
	amb_sig_format(&c.sign_log, buf, sizeof(buf));
	printf("%25s: %s\n", "Signature", buf);
	printf("%25s: %s\n", "Log Prefix", prefix);
	amb_time_format(c.time, buf, sizeof(buf));
	printf("%25s: %s\n", "Written", buf);
	print_bk("Last Full Backup", &c.full_backup);
	print_bk("Last Incremental Backup", &c.inc_backup);
	finish_line(0, mono_now() - t0);
	if (st & (AMB_HDR_COPY0_BAD | AMB_HDR_COPY1_BAD))
		fprintf(stderr, "amber-store: %s: checkpoint copy %d is damaged; the other is in force\n",
		        path, st & AMB_HDR_COPY0_BAD ? 0 : 1);
	return EXIT_OK;
}

/* ---- logs --------------------------------------------------------------------------- */

#define SYN_LOGS "logs LOGDIR [--prefix E00] [--json]"

typedef struct logs_ctx {
	amb_logdir_entry *e;
	size_t n, cap;
	struct problem {
		uint32_t gen;
		int error;
		char msg[512];
	} *p;
	size_t np, pcap;
	int oom;
} logs_ctx;

static void on_logs_log(void *arg, const amb_logdir_entry *e)
{
	logs_ctx *c = arg;
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 32;
		amb_logdir_entry *ne = realloc(c->e, nc * sizeof(*ne));
		if (!ne) {
			c->oom = 1;
			return;
		}
		c->e = ne;
		c->cap = nc;
	}
	c->e[c->n++] = *e;
}

static void on_logs_problem(void *arg, uint32_t gen, int error, const char *msg)
{
	logs_ctx *c = arg;
	if (c->np == c->pcap) {
		size_t nc = c->pcap ? c->pcap * 2 : 16;
		struct problem *np = realloc(c->p, nc * sizeof(*np));
		if (!np) {
			c->oom = 1;
			return;
		}
		c->p = np;
		c->pcap = nc;
	}
	c->p[c->np].gen = gen;
	c->p[c->np].error = error;
	snprintf(c->p[c->np].msg, sizeof(c->p[c->np].msg), "%s", msg);
	c->np++;
}

/* Status of entry i, knowing the next generation. */
static void log_status(const logs_ctx *c, size_t i, char *buf, size_t size)
{
	const amb_logdir_entry *e = &c->e[i];
	if (e->rc) {
		snprintf(buf, size, "DAMAGED (%s)", e->rc == AMS_ENOTDB ? "not a log" : "header");
		return;
	}
	const amb_logscan *s = &e->scan;
	if (s->damaged) {
		scan_status(s, buf, size);
		return;
	}
	if (i + 1 < c->n) {
		const amb_logdir_entry *nx = &c->e[i + 1];
		if (nx->rc == 0 && nx->gen == e->gen + 1 && s->end_lsn < nx->scan.hdr.start_lsn) {
			snprintf(buf, size, "DAMAGED at segment %u",
			         s->first_bad ? s->first_bad : s->valid_segs + 1);
			return;
		}
	}
	if (s->first_bad)
		snprintf(buf, size, "torn tail at segment %u", s->first_bad);
	else
		snprintf(buf, size, "ok");
}

/*
 * The arguments of a command that takes one directory: DIR [--prefix P]
 * [--json] (json == NULL: no --json).  Fills *dir and prefix (given or
 * detected).  Returns -1 to go on, else the exit code to return.
 */
static int dir_args(const char *cmd, const char *syn, const char *what, int argc, char **argv,
                    int *json, const char **dir, char prefix[8])
{
	const char *prefix_opt = NULL;
	*dir = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (json && strcmp(a, "--json") == 0) {
			*json = 1;
		} else if (strcmp(a, "--prefix") == 0 && i + 1 < argc) {
			prefix_opt = argv[++i];
			if (strlen(prefix_opt) != 3)
				return usage_err(cmd, syn, "the prefix must be 3 characters");
		} else if (a[0] == '-' && a[1]) {
			return usage_err(cmd, syn, "unknown option or missing value: %s", a);
		} else if (!*dir) {
			*dir = a;
		} else {
			return usage_err(cmd, syn, "unexpected argument: %s", a);
		}
	}
	if (!*dir)
		return usage_err(cmd, syn, "no %s given", what);
	struct stat sb;
	if (stat(*dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "amber-store: %s: not a directory\n", *dir);
		return EXIT_USAGE;
	}
	if (prefix_opt)
		snprintf(prefix, 8, "%s", prefix_opt);
	else
		detect_prefix(*dir, prefix, 8);
	return -1;
}

int cmd_logs(int argc, char **argv)
{
	const char *dir;
	char prefix[8];
	int json = 0;
	int rc = dir_args("logs", SYN_LOGS, "log directory", argc, argv, &json, &dir, prefix);
	if (rc >= 0)
		return rc;

	double t0 = mono_now();
	logs_ctx c = {0};
	amb_logdir_cb cb = {.on_log = on_logs_log, .on_problem = on_logs_problem, .arg = &c};
	amb_logdir_report rep;
	rc = amb_logdir_check(amb_vfs_posix(), dir, prefix, 0, &rep, &cb);
	double secs = mono_now() - t0;
	if (c.oom) {
		free(c.e);
		free(c.p);
		fprintf(stderr, "amber-store: out of memory\n");
		return EXIT_FAIL;
	}
	if (rc == AMS_ENOTFOUND && c.n == 0) {
		free(c.e);
		free(c.p);
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
		return EXIT_USAGE;
	}

	/* distinct log signatures */
	const amb_sig *sigs[8];
	size_t nsig = 0;
	for (size_t i = 0; i < c.n; i++) {
		if (c.e[i].rc)
			continue;
		size_t k;
		for (k = 0; k < nsig; k++)
			if (amb_sig_eq(sigs[k], &c.e[i].scan.hdr.sign_log))
				break;
		if (k == nsig && nsig < 8)
			sigs[nsig++] = &c.e[i].scan.hdr.sign_log;
	}

	if (json) {
		js j = {.f = stdout};
		char st[96], hex[40];
		js_open(&j, NULL, '{');
		js_kstr(&j, "dir", dir);
		js_kstr(&j, "prefix", prefix);
		js_open(&j, "logs", '[');
		for (size_t i = 0; i < c.n; i++) {
			const amb_logdir_entry *e = &c.e[i];
			js_open(&j, NULL, '{');
			js_kstr(&j, "file", e->name);
			js_ku64(&j, "generation", e->gen);
			snprintf(hex, sizeof(hex), "0x%08X", e->gen);
			js_kstr(&j, "generation_hex", hex);
			js_kbool(&j, "current", e->current);
			log_status(&c, i, st, sizeof(st));
			js_kstr(&j, "status", st);
			if (e->rc) {
				js_kstr(&j, "error", e->err);
			} else {
				const amb_logscan *s = &e->scan;
				js_ktime(&j, "created", s->hdr.create_time);
				js_ktime(&j, "previous_created", s->hdr.prev_create_time);
				js_ku64(&j, "start_lsn", s->hdr.start_lsn);
				js_ku64(&j, "end_lsn", s->end_lsn);
				js_ku64(&j, "segments", s->nsegs);
				js_ku64(&j, "valid_segments", s->valid_segs);
				js_ku64(&j, "first_bad_segment", s->first_bad);
				js_ku64(&j, "corrected_segments", s->corrected);
				sig_hex(&s->hdr.sign_log, hex, sizeof(hex));
				js_kstr(&j, "log_signature", hex);
			}
			js_close(&j, '}');
		}
		js_close(&j, ']');
		js_open(&j, "problems", '[');
		for (size_t i = 0; i < c.np; i++) {
			js_open(&j, NULL, '{');
			js_ku64(&j, "generation", c.p[i].gen);
			js_kbool(&j, "error", c.p[i].error);
			js_kstr(&j, "message", c.p[i].msg);
			js_close(&j, '}');
		}
		js_close(&j, ']');
		if (nsig)
			js_sig(&j, "log_signature", sigs[0]);
		js_kbool(&j, "ok", rc == 0);
		js_close(&j, '}');
	} else {
		printf("Log files %s/%s*.log\n\n", dir, prefix);
		printf("%-16s %-17s %-26s %12s %9s %12s %-8s %s\n", "FILE", "GENERATION", "CREATED",
		       "START LSN", "SEGMENTS", "END LSN", "SIG", "STATUS");
		for (size_t i = 0; i < c.n; i++) {
			const amb_logdir_entry *e = &c.e[i];
			char st[96], gen[32], t[64], segs[32], hex[40];
			log_status(&c, i, st, sizeof(st));
			snprintf(gen, sizeof(gen), "0x%08X (%u)", e->gen, e->gen);
			if (e->rc) {
				printf("%-16s %-17s %-26s %12s %9s %12s %-8s %s\n", e->name,
				       e->gen ? gen : "?", "?", "?", "?", "?", "?", st);
				continue;
			}
			const amb_logscan *s = &e->scan;
			amb_time_format(s->hdr.create_time, t, sizeof(t));
			snprintf(segs, sizeof(segs), "%u/%u", s->valid_segs, s->nsegs);
			sig_hex(&s->hdr.sign_log, hex, sizeof(hex));
			hex[8] = '\0';
			printf("%-16s %-17s %-26s %12llu %9s %12llu %-8s %s\n", e->name, gen, t,
			       (unsigned long long)s->hdr.start_lsn, segs, (unsigned long long)s->end_lsn,
			       hex, st);
		}
		printf("\n");
		size_t readable = 0;
		for (size_t i = 0; i < c.n; i++)
			readable += c.e[i].rc == 0;
		if (nsig == 1) {
			char buf[256];
			amb_sig_format(sigs[0], buf, sizeof(buf));
			printf("Log signature (all %zu readable logs): %s\n", readable, buf);
		} else if (nsig > 1) {
			printf("Log signatures: %zu different ones: the directory mixes log streams\n",
			       nsig);
			for (size_t k = 0; k < nsig; k++) {
				char buf[256];
				amb_sig_format(sigs[k], buf, sizeof(buf));
				printf("  %s\n", buf);
			}
		}
		for (size_t i = 0; i < c.np; i++)
			printf("%s: %s\n", c.p[i].error ? "ERROR" : "note", c.p[i].msg);
		finish_line(rc, secs);
	}
	free(c.e);
	free(c.p);
	if (rc)
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
	return rc ? EXIT_FAIL : EXIT_OK;
}

/* ---- recover ------------------------------------------------------------------------ */

#define SYN_RECOVER "recover DIR [--prefix E00]"

/* Print the state of every database file in dir. */
static void print_db_states(const char *dir, const char *when)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	amb_vfs *v = amb_vfs_posix();
	struct dirent *de;
	printf("%s:\n", when);
	while ((de = readdir(d)) != NULL) {
		if (!has_suffix(de->d_name, ".edb"))
			continue;
		char path[PATH_MAX];
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
			continue;
		int fd = v->open(v, path, O_RDONLY, 0);
		if (fd < 0)
			continue;
		amb_dbhdr h;
		int rc = amb_dbhdr_load(v, fd, path, &h, NULL);
		v->close(v, fd);
		if (rc) {
			printf("  %-20s %s\n", de->d_name, ams_errmsg());
			continue;
		}
		printf("  %-20s %-15s Log Required %u-%u (0x%X-0x%X)%s\n", de->d_name,
		       state_name(h.state), h.gen_min_required, h.gen_max_required, h.gen_min_required,
		       h.gen_max_required, h.full_cur.time ? "  (backup copy)" : "");
	}
	closedir(d);
}

int cmd_recover(int argc, char **argv)
{
	const char *dir;
	char pfx[8];
	int rc = dir_args("recover", SYN_RECOVER, "instance directory", argc, argv, NULL, &dir, pfx);
	if (rc >= 0)
		return rc;

	printf("Soft recovery of %s (log prefix %s)\n\n", dir, pfx);
	char chkpath[PATH_MAX];
	snprintf(chkpath, sizeof(chkpath), "%s/%s.chk", dir, pfx);
	amb_chk chk;
	if (amb_chk_load(amb_vfs_posix(), chkpath, &chk, NULL, NULL) == 0)
		printf("Checkpoint: generation 0x%08X (%u), LSN %llu: replay starts at %s%08X.log\n\n",
		       chk.gen, chk.gen, (unsigned long long)chk.lsn, pfx, chk.gen);
	else
		printf("Checkpoint: %s\n\n", ams_errmsg());
	print_db_states(dir, "Before");

	ams_open_opts o = {.prefix = pfx};
	double t0 = mono_now();
	rc = ams_recover(dir, &o);
	double secs = mono_now() - t0;
	printf("\n");
	if (rc) {
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
		printf("Recovery failed: %s\n", ams_errmsg());
		finish_line(rc, secs);
		return tool_exit_code(rc);
	}
	print_db_states(dir, "After");
	finish_line(0, secs);
	return EXIT_OK;
}

/* ---- hard-recover ------------------------------------------------------------------ */

#define SYN_HARD "hard-recover DIR | hard-recover PATH/restore.env"

static const char *env_status(amb_recover_status s)
{
	switch (s) {
	case AMB_RECOVER_NOT_STARTED: return "not started";
	case AMB_RECOVER_STARTED: return "started (interrupted)";
	case AMB_RECOVER_ENDED: return "ended";
	case AMB_RECOVER_FAILED: return "failed";
	default: return "unknown";
	}
}

int cmd_hard_recover(int argc, char **argv)
{
	const char *arg = NULL;
	for (int i = 1; i < argc; i++) {
		if (argv[i][0] == '-' && argv[i][1])
			return usage_err("hard-recover", SYN_HARD, "unknown option: %s", argv[i]);
		if (arg)
			return usage_err("hard-recover", SYN_HARD, "unexpected argument: %s", argv[i]);
		arg = argv[i];
	}
	if (!arg)
		return usage_err("hard-recover", SYN_HARD, "no directory given");
	char path[PATH_MAX];
	struct stat sb;
	if (stat(arg, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		if (snprintf(path, sizeof(path), "%s/restore.env", arg) >= (int)sizeof(path))
			return usage_err("hard-recover", SYN_HARD, "path too long");
	} else {
		snprintf(path, sizeof(path), "%s", arg);
	}

	amb_restore_env *env = malloc(sizeof(*env));
	if (!env) {
		fprintf(stderr, "amber-store: out of memory\n");
		return EXIT_FAIL;
	}
	int rc = amb_restore_env_load(path, env);
	if (rc) {
		fprintf(stderr, "amber-store: %s\n", ams_errmsg());
		free(env);
		return rc == AMS_ENOTFOUND ? EXIT_USAGE : tool_exit_code(rc);
	}
	char until[64];
	amb_time_format(env->until_us, until, sizeof(until));
	printf("Hard recovery from %s\n\n", path);
	printf("%20s: %s\n", "Instance", env->instance_dir);
	printf("%20s: %s, %s%08X.log to %s%08X.log (generations %u-%u)\n", "Backup logs",
	       env->backup_log_dir, env->prefix, env->gen_low, env->prefix, env->gen_high,
	       env->gen_low, env->gen_high);
	printf("%20s: %s\n", "Roll forward", env->roll_forward ? "yes" : "no");
	printf("%20s: %s%s\n", "Until", until, env->until_us ? " UTC" : "");
	printf("%20s:", "Databases");
	for (int i = 0; i < env->ndatabases; i++)
		printf(" %s", env->databases[i]);
	printf("\n");
	if (env->backup_id[0])
		printf("%20s: %s\n", "Backup", env->backup_id);
	if (env->status != AMB_RECOVER_NOT_STARTED)
		printf("%20s: %s\n", "Previous attempt", env_status(env->status));
	printf("\n");

	double t0 = mono_now();
	rc = ams_hard_recover(path, NULL);
	double secs = mono_now() - t0;
	char msg[1024];
	snprintf(msg, sizeof(msg), "%s", ams_errmsg());

	/* what the engine recorded */
	if (amb_restore_env_load(path, env) == 0) {
		char t[64];
		amb_time_format(env->recover_time_us, t, sizeof(t));
		printf("%20s: %s\n", "Recover Status", env_status(env->status));
		printf("%20s: %d (%s)\n", "Recover Error", env->error, ams_strerror(env->error));
		if (env->error_msg[0])
			printf("%20s: %s\n", "Message", env->error_msg);
		printf("%20s: %s\n", "Recover Time", t);
	}
	char inst[PATH_MAX];
	snprintf(inst, sizeof(inst), "%s", env->instance_dir);
	free(env);
	if (rc) {
		fprintf(stderr, "amber-store: %s\n", msg);
		finish_line(rc, secs);
		return tool_exit_code(rc);
	}
	printf("\n");
	print_db_states(inst, "Databases");
	finish_line(0, secs);
	return EXIT_OK;
}

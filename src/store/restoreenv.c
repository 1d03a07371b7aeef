/*
 * restoreenv.c - read and write restore.env (format: docs/restore-env.md).
 *
 * The parser must survive any input: the file is read whole (bounded), then
 * walked line by line with explicit lengths; nothing relies on NUL
 * termination of the input.
 */
#include "store/restoreenv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/durable.h"
#include "common/vfs.h"
#include "store/err.h"

#define ENV_MAX_FILE (1024u * 1024u)
#define ENV_MAX_LINE 8192u
#define ENV_MAGIC "amber-restore-env"
#define ENV_VERSION 1

/* Required keys and the once-only keys, as bits. */
enum {
	K_INSTANCE_DIR,
	K_BACKUP_LOG_DIR,
	K_PREFIX,
	K_GEN_LOW,
	K_GEN_HIGH,
	K_ROLL_FORWARD,
	K_UNTIL,
	K_DATABASE,
	K_BACKUP_ID,
	K_STATUS,
	K_ERROR,
	K_ERROR_MSG,
	K_RECOVER_TIME,
	K_COUNT
};

static const char *const key_names[K_COUNT] = {
	[K_INSTANCE_DIR] = "instance_dir",
	[K_BACKUP_LOG_DIR] = "backup_log_dir",
	[K_PREFIX] = "prefix",
	[K_GEN_LOW] = "gen_low",
	[K_GEN_HIGH] = "gen_high",
	[K_ROLL_FORWARD] = "roll_forward",
	[K_UNTIL] = "until",
	[K_DATABASE] = "database",
	[K_BACKUP_ID] = "backup_id",
	[K_STATUS] = "status",
	[K_ERROR] = "error",
	[K_ERROR_MSG] = "error_msg",
	[K_RECOVER_TIME] = "recover_time",
};

static const char *const status_names[] = {
	[AMB_RECOVER_NOT_STARTED] = "not-started",
	[AMB_RECOVER_STARTED] = "started",
	[AMB_RECOVER_ENDED] = "ended",
	[AMB_RECOVER_FAILED] = "failed",
};

/* ---- small helpers -------------------------------------------------------- */

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Length of a valid UTF-8 sequence at s (n bytes available), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned min;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	unsigned cp = c & (0x7Fu >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3Fu);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

/* Parse a whole string as an unsigned decimal, or hex with 0x when hex_ok. */
static int parse_u64(const char *s, int hex_ok, uint64_t *out)
{
	int base = 10;
	if (hex_ok && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return -1;
	uint64_t v = 0;
	for (; *s; s++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return -1;
		if (v > (UINT64_MAX - d) / (uint64_t)base)
			return -1;
		v = v * (uint64_t)base + d;
	}
	*out = v;
	return 0;
}

static int parse_int(const char *s, int *out)
{
	int neg = 0;
	uint64_t v;
	if (*s == '-') {
		neg = 1;
		s++;
	}
	if (parse_u64(s, 0, &v) < 0)
		return -1;
	if (neg ? v > (uint64_t)INT_MAX + 1 : v > (uint64_t)INT_MAX)
		return -1;
	*out = neg ? (int)(-(int64_t)v) : (int)v;
	return 0;
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char *s, int n, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* RFC 3339 UTC: YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z -> µs since the epoch. */
int amb_restore_env_parse_time(const char *s, uint64_t *out)
{
	unsigned y, mo, d, h, mi, se, frac = 0;
	if (strlen(s) < 20)
		return -1;
	if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
	    digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) ||
	    s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &se))
		return -1;
	const char *p = s + 19;
	if (*p == '.') {
		int n = 0;
		p++;
		while (p[n] >= '0' && p[n] <= '9')
			n++;
		if (n < 1 || n > 6 || digits(p, n, &frac))
			return -1;
		for (int i = n; i < 6; i++)
			frac *= 10;
		p += n;
	}
	if ((*p != 'Z' && *p != 'z') || p[1] != '\0')
		return -1;
	static const unsigned mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
	    se > 59)
		return -1;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo == 2 && d == 29 && !leap)
		return -1;
	int64_t days = days_from_civil(y, mo, d);
	uint64_t secs = (uint64_t)days * 86400u + h * 3600u + mi * 60u + se;
	*out = secs * 1000000u + frac;
	return 0;
}

static void format_time(uint64_t us, char *buf, size_t size)
{
	time_t secs = (time_t)(us / 1000000u);
	unsigned frac = (unsigned)(us % 1000000u);
	struct tm tm;
	if (!gmtime_r(&secs, &tm)) {
		snprintf(buf, size, "none");
		return;
	}
	int n = snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
	                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (n < 0 || (size_t)n >= size)
		return;
	if (frac)
		snprintf(buf + n, size - (size_t)n, ".%06uZ", frac);
	else
		snprintf(buf + n, size - (size_t)n, "Z");
}

static int prefix_ok(const char *s)
{
	if (strlen(s) != 3)
		return 0;
	for (int i = 0; i < 3; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* NULL if fine, else what is wrong with the database name. */
static const char *dbname_problem(const char *s)
{
	size_t n = strlen(s);
	if (n == 0)
		return "is empty";
	if (n >= sizeof(((amb_restore_env *)0)->databases[0]))
		return "is too long (at most 63 bytes)";
	if (strchr(s, '/'))
		return "contains '/'";
	if (strstr(s, ".."))
		return "contains '..'";
	if (n <= 4 || strcmp(s + n - 4, ".edb") != 0)
		return "does not end in .edb";
	return NULL;
}

/* ---- loading ---------------------------------------------------------------- */

typedef struct parser {
	const char *path;
	char dir[PATH_MAX]; /* directory of path, for relative paths */
	unsigned line;
	unsigned key_line[K_COUNT];
	amb_restore_env env;
} parser;

/* Printable excerpt of s for messages (input is already known to be text). */
#define SHOW(s) (int)(strlen(s) > 64 ? 64 : strlen(s)), (s)

static int perr(parser *p, unsigned line, const char *what)
{
	return amb_err(AMS_EINVAL, "%s:%u: %s", p->path, line, what);
}

static int set_path(parser *p, char *dst, const char *val, const char *key)
{
	if (!*val)
		return amb_err(AMS_EINVAL, "%s:%u: %s is empty", p->path, p->line, key);
	int n;
	if (val[0] == '/' || strcmp(p->dir, ".") == 0)
		n = snprintf(dst, PATH_MAX, "%s", val);
	else if (strcmp(val, ".") == 0)
		n = snprintf(dst, PATH_MAX, "%s", p->dir);
	else
		n = snprintf(dst, PATH_MAX, "%s/%s", p->dir, val);
	if (n < 0 || n >= PATH_MAX)
		return amb_err(AMS_EINVAL, "%s:%u: %s is too long (at most %d bytes)", p->path, p->line,
		               key, PATH_MAX - 1);
	return 0;
}

static int set_text(parser *p, char *dst, size_t size, const char *val, const char *key)
{
	size_t n = strlen(val);
	if (n >= size)
		return amb_err(AMS_EINVAL, "%s:%u: %s is too long (at most %zu bytes)", p->path,
		               p->line, key, size - 1);
	memcpy(dst, val, n + 1);
	return 0;
}

static int set_gen(parser *p, uint32_t *dst, const char *val, const char *key)
{
	uint64_t g;
	if (parse_u64(val, 1, &g) < 0 || g == 0 || g >= UINT32_MAX)
		return amb_err(AMS_EINVAL,
		               "%s:%u: %s '%.*s' is not a log generation (0x1 to 0xFFFFFFFE, hex "
		               "with 0x or decimal)",
		               p->path, p->line, key, SHOW(val));
	*dst = (uint32_t)g;
	return 0;
}

static int handle_kv(parser *p, const char *key, const char *val)
{
	int k;
	for (k = 0; k < K_COUNT; k++)
		if (strcmp(key, key_names[k]) == 0)
			break;
	if (k == K_COUNT)
		return amb_err(AMS_EINVAL, "%s:%u: unknown key '%.*s'", p->path, p->line, SHOW(key));
	if (k != K_DATABASE && p->key_line[k])
		return amb_err(AMS_EINVAL, "%s:%u: duplicate key '%s' (first on line %u)", p->path,
		               p->line, key, p->key_line[k]);
	p->key_line[k] = p->line;

	amb_restore_env *e = &p->env;
	switch (k) {
	case K_INSTANCE_DIR:
		return set_path(p, e->instance_dir, val, key);
	case K_BACKUP_LOG_DIR:
		return set_path(p, e->backup_log_dir, val, key);
	case K_PREFIX:
		if (!prefix_ok(val))
			return amb_err(AMS_EINVAL,
			               "%s:%u: prefix '%.*s' is not 3 characters from A-Z a-z 0-9 _ -",
			               p->path, p->line, SHOW(val));
		memcpy(e->prefix, val, 4);
		return 0;
	case K_GEN_LOW:
		return set_gen(p, &e->gen_low, val, key);
	case K_GEN_HIGH:
		return set_gen(p, &e->gen_high, val, key);
	case K_ROLL_FORWARD:
		if (strcmp(val, "yes") == 0)
			e->roll_forward = 1;
		else if (strcmp(val, "no") == 0)
			e->roll_forward = 0;
		else
			return amb_err(AMS_EINVAL, "%s:%u: roll_forward must be yes or no, not '%.*s'",
			               p->path, p->line, SHOW(val));
		return 0;
	case K_UNTIL:
		if (strcmp(val, "none") == 0) {
			e->until_us = 0;
			return 0;
		}
		if (amb_restore_env_parse_time(val, &e->until_us) < 0 || e->until_us == 0)
			return amb_err(AMS_EINVAL,
			               "%s:%u: until '%.*s' is not a UTC time like "
			               "2026-11-22T10:00:00Z (or none)",
			               p->path, p->line, SHOW(val));
		return 0;
	case K_DATABASE: {
		const char *why = dbname_problem(val);
		if (why)
			return amb_err(AMS_EINVAL, "%s:%u: database name '%.*s' %s", p->path, p->line,
			               SHOW(val), why);
		if (e->ndatabases >= AMB_MAX_DBS)
			return amb_err(AMS_EINVAL, "%s:%u: more than %d databases", p->path, p->line,
			               AMB_MAX_DBS);
		for (int i = 0; i < e->ndatabases; i++)
			if (strcmp(e->databases[i], val) == 0)
				return amb_err(AMS_EINVAL, "%s:%u: database '%s' is listed twice", p->path,
				               p->line, val);
		memcpy(e->databases[e->ndatabases++], val, strlen(val) + 1);
		return 0;
	}
	case K_BACKUP_ID:
		return set_text(p, e->backup_id, sizeof(e->backup_id), val, key);
	case K_STATUS:
		for (int s = 0; s < 4; s++)
			if (strcmp(val, status_names[s]) == 0) {
				e->status = (amb_recover_status)s;
				return 0;
			}
		return amb_err(AMS_EINVAL,
		               "%s:%u: status must be not-started, started, ended or failed, not '%.*s'",
		               p->path, p->line, SHOW(val));
	case K_ERROR:
		if (parse_int(val, &e->error) < 0)
			return amb_err(AMS_EINVAL, "%s:%u: error '%.*s' is not a decimal integer",
			               p->path, p->line, SHOW(val));
		return 0;
	case K_ERROR_MSG:
		return set_text(p, e->error_msg, sizeof(e->error_msg), val, key);
	case K_RECOVER_TIME:
		if (parse_u64(val, 0, &e->recover_time_us) < 0)
			return amb_err(AMS_EINVAL,
			               "%s:%u: recover_time '%.*s' is not a decimal number of microseconds",
			               p->path, p->line, SHOW(val));
		return 0;
	}
	return 0;
}

/*
 * Check one raw line (len bytes, no '\n') for forbidden bytes.  Returns 0
 * or an error.
 */
static int check_bytes(parser *p, const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len;) {
		unsigned c = s[i];
		if (c == 0)
			return perr(p, p->line, "NUL byte in the line (not a text file)");
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return amb_err(AMS_EINVAL,
			               "%s:%u: control character 0x%02x in the line (not a text file)",
			               p->path, p->line, c);
		size_t n = utf8_len(s + i, len - i);
		if (n == 0)
			return perr(p, p->line, "invalid UTF-8 (not a text file)");
		i += n;
	}
	return 0;
}

static int parse(parser *p, const char *data, size_t size)
{
	char line[ENV_MAX_LINE + 1];
	int seen_magic = 0;
	size_t pos = 0;

	p->line = 0;
	if (size == 0)
		return perr(p, 1, "empty file");
	while (pos < size) {
		const char *nl = memchr(data + pos, '\n', size - pos);
		size_t len = nl ? (size_t)(nl - (data + pos)) : size - pos;
		const char *raw = data + pos;
		pos += len + (nl ? 1 : 0);
		p->line++;
		if (len > 0 && raw[len - 1] == '\r')
			len--;
		if (len > ENV_MAX_LINE)
			return amb_err(AMS_EINVAL, "%s:%u: line too long (%zu bytes, at most %u)", p->path,
			               p->line, len, ENV_MAX_LINE);
		int rc = check_bytes(p, (const unsigned char *)raw, len);
		if (rc)
			return rc;
		/* trim blanks at both ends */
		while (len > 0 && is_blank(raw[0])) {
			raw++;
			len--;
		}
		while (len > 0 && is_blank(raw[len - 1]))
			len--;
		if (len == 0 || raw[0] == '#')
			continue;
		memcpy(line, raw, len);
		line[len] = '\0';

		if (!seen_magic) {
			if (strncmp(line, ENV_MAGIC, strlen(ENV_MAGIC)) != 0)
				return perr(p, p->line,
				            "not a restore.env file (the first line must be '" ENV_MAGIC
				            " 1')");
			const char *v = line + strlen(ENV_MAGIC);
			if (!is_blank(*v))
				return perr(p, p->line, "expected '" ENV_MAGIC " 1'");
			while (is_blank(*v))
				v++;
			uint64_t ver;
			if (parse_u64(v, 0, &ver) < 0)
				return perr(p, p->line, "bad format version (expected '" ENV_MAGIC " 1')");
			if (ver != ENV_VERSION)
				return amb_err(AMS_EINVAL, "%s:%u: unsupported restore.env version %llu (this "
				               "build reads version %d)",
				               p->path, p->line, (unsigned long long)ver, ENV_VERSION);
			seen_magic = 1;
			p->env.version = ENV_VERSION;
			continue;
		}

		char *eq = strchr(line, '=');
		if (!eq)
			return amb_err(AMS_EINVAL, "%s:%u: expected key=value, got '%.*s'", p->path,
			               p->line, SHOW(line));
		char *kend = eq;
		while (kend > line && is_blank(kend[-1]))
			kend--;
		*kend = '\0';
		char *val = eq + 1;
		while (is_blank(*val))
			val++;
		if (line[0] == '\0')
			return perr(p, p->line, "empty key before '='");
		rc = handle_kv(p, line, val);
		if (rc)
			return rc;
	}
	unsigned last = p->line ? p->line : 1;
	if (!seen_magic)
		return perr(p, last, "empty file (no '" ENV_MAGIC " 1' line)");

	static const int required[] = {K_INSTANCE_DIR, K_BACKUP_LOG_DIR, K_PREFIX, K_GEN_LOW,
	                               K_GEN_HIGH, K_DATABASE};
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (!p->key_line[required[i]])
			return amb_err(AMS_EINVAL, "%s:%u: missing required key '%s'", p->path, last,
			               key_names[required[i]]);
	if (p->env.gen_low > p->env.gen_high) {
		unsigned l = p->key_line[K_GEN_LOW] > p->key_line[K_GEN_HIGH] ? p->key_line[K_GEN_LOW]
		                                                              : p->key_line[K_GEN_HIGH];
		return amb_err(AMS_EINVAL, "%s:%u: gen_low 0x%08X is above gen_high 0x%08X", p->path, l,
		               p->env.gen_low, p->env.gen_high);
	}
	return 0;
}

int amb_restore_env_load(const char *path, amb_restore_env *env)
{
	amb_vfs *v = amb_vfs_posix();
	int fd = v->open(v, path, O_RDONLY, 0);
	if (fd < 0) {
		if (fd == -ENOENT)
			return amb_err(AMS_ENOTFOUND, "%s: no such file", path);
		return amb_err(amb_errno_code(fd) == AMS_ENOMEM ? AMS_ENOMEM : AMS_EIO,
		               "%s: cannot open: %s", path, strerror(-fd));
	}
	off_t size = 0;
	int r = v->size(v, fd, &size);
	if (r < 0) {
		v->close(v, fd);
		return amb_err(AMS_EIO, "%s: cannot stat: %s", path, strerror(-r));
	}
	if (size > (off_t)ENV_MAX_FILE) {
		v->close(v, fd);
		return amb_err(AMS_EINVAL, "%s:1: file too large (%lld bytes, at most %u)", path,
		               (long long)size, ENV_MAX_FILE);
	}
	/* read one byte more than the limit to notice a file that grew */
	char *data = malloc(ENV_MAX_FILE + 1);
	parser *p = calloc(1, sizeof(*p));
	if (!data || !p) {
		free(data);
		free(p);
		v->close(v, fd);
		return amb_err(AMS_ENOMEM, "%s: out of memory", path);
	}
	ssize_t n = v->pread(v, fd, data, ENV_MAX_FILE + 1, 0);
	v->close(v, fd);
	int rc;
	if (n < 0) {
		rc = amb_err(AMS_EIO, "%s: cannot read: %s", path, strerror((int)-n));
	} else if ((size_t)n > ENV_MAX_FILE) {
		rc = amb_err(AMS_EINVAL, "%s:1: file too large (at most %u bytes)", path, ENV_MAX_FILE);
	} else {
		p->path = path;
		amb_path_dir(path, p->dir, sizeof(p->dir));
		p->env.roll_forward = 1;
		p->env.status = AMB_RECOVER_NOT_STARTED;
		rc = parse(p, data, (size_t)n);
		if (rc == 0)
			*env = p->env;
	}
	free(data);
	free(p);
	return rc;
}

/* ---- storing ---------------------------------------------------------------- */

/* Can s be written as a value and read back unchanged? */
static int value_ok(const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	if (n >= max)
		return 0;
	if (n > 0 && (is_blank(s[0]) || is_blank(s[n - 1])))
		return 0;
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
		size_t l = utf8_len((const unsigned char *)s + i, n - i);
		if (!l)
			return 0;
		i += l;
	}
	return 1;
}

/* Copy s into out (size bytes) so that it reads back: control bytes and
 * invalid UTF-8 become spaces or '?', blanks at the ends are dropped. */
static void sanitize(const char *s, size_t max, char *out, size_t size)
{
	size_t n = strnlen(s, max), o = 0;
	for (size_t i = 0; i < n && o + 1 < size;) {
		unsigned char c = (unsigned char)s[i];
		size_t l = utf8_len((const unsigned char *)s + i, n - i);
		if (c < 0x20 || c == 0x7f) {
			out[o++] = ' ';
			i++;
		} else if (!l) {
			out[o++] = '?';
			i++;
		} else {
			if (o + l >= size)
				break;
			memcpy(out + o, s + i, l);
			o += l;
			i += l;
		}
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
	size_t lead = 0;
	while (out[lead] == ' ')
		lead++;
	memmove(out, out + lead, o - lead + 1);
}

int amb_restore_env_store(const char *path, const amb_restore_env *env)
{
	if (!value_ok(env->instance_dir, sizeof(env->instance_dir)) || !env->instance_dir[0] ||
	    !value_ok(env->backup_log_dir, sizeof(env->backup_log_dir)) ||
	    !env->backup_log_dir[0])
		return amb_err(AMS_EINVAL, "%s: a directory path cannot be written to restore.env",
		               path);
	if (strnlen(env->prefix, sizeof(env->prefix)) >= sizeof(env->prefix) ||
	    !prefix_ok(env->prefix))
		return amb_err(AMS_EINVAL, "%s: bad log prefix for restore.env", path);
	if (env->ndatabases < 1 || env->ndatabases > AMB_MAX_DBS)
		return amb_err(AMS_EINVAL, "%s: restore.env needs 1 to %d databases", path,
		               AMB_MAX_DBS);
	for (int i = 0; i < env->ndatabases; i++)
		if (strnlen(env->databases[i], sizeof(env->databases[i])) >=
		        sizeof(env->databases[i]) ||
		    dbname_problem(env->databases[i]) || !value_ok(env->databases[i], 64))
			return amb_err(AMS_EINVAL, "%s: database name %d cannot be written", path, i);
	if (env->gen_low == 0 || env->gen_low > env->gen_high || env->gen_high == UINT32_MAX)
		return amb_err(AMS_EINVAL, "%s: bad log generation range 0x%08X-0x%08X", path,
		               env->gen_low, env->gen_high);
	if ((unsigned)env->status > AMB_RECOVER_FAILED)
		return amb_err(AMS_EINVAL, "%s: bad recovery status %d", path, (int)env->status);

	size_t cap = 3 * PATH_MAX + 2048 + AMB_MAX_DBS * 80;
	char *buf = malloc(cap);
	if (!buf)
		return amb_err(AMS_ENOMEM, "%s: out of memory", path);
	char until[64], id[sizeof(env->backup_id)], msg[sizeof(env->error_msg)];
	if (env->until_us)
		format_time(env->until_us, until, sizeof(until));
	else
		snprintf(until, sizeof(until), "none");
	sanitize(env->backup_id, sizeof(env->backup_id), id, sizeof(id));
	sanitize(env->error_msg, sizeof(env->error_msg), msg, sizeof(msg));

	size_t n = 0;
#define OUT(...) n += (size_t)snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__)
	OUT("# restore.env - what a restore laid down and how to recover it.\n"
	    "# Format: docs/restore-env.md.  Read and updated by amber-store hard-recover.\n");
	OUT("%s %d\n", ENV_MAGIC, ENV_VERSION);
	OUT("instance_dir=%s\n", env->instance_dir);
	OUT("backup_log_dir=%s\n", env->backup_log_dir);
	OUT("prefix=%s\n", env->prefix);
	OUT("gen_low=0x%08X\n", env->gen_low);
	OUT("gen_high=0x%08X\n", env->gen_high);
	OUT("roll_forward=%s\n", env->roll_forward ? "yes" : "no");
	OUT("until=%s\n", until);
	for (int i = 0; i < env->ndatabases; i++)
		OUT("database=%s\n", env->databases[i]);
	OUT("backup_id=%s\n", id);
	OUT("status=%s\n", status_names[env->status]);
	OUT("error=%d\n", env->error);
	OUT("error_msg=%s\n", msg);
	OUT("recover_time=%llu\n", (unsigned long long)env->recover_time_us);
#undef OUT
	int rc = 0;
	if (n >= cap) {
		rc = amb_err(AMS_EINVAL, "%s: restore.env content too long", path);
	} else {
		int r = amb_durable_write(amb_vfs_posix(), path, buf, n);
		if (r < 0)
			rc = amb_err(AMS_EIO, "%s: cannot write: %s", path, strerror(-r));
	}
	free(buf);
	return rc;
}

/*
 * config.c - amberd's configuration file (inih).  The keys and their
 * defaults are documented in docs/amberd.md and in the example file
 * dist/amberd.conf; this is the one place that reads them.
 *
 *   [amberd]
 *   socket = /run/amber/amberd.sock
 *   state_dir = /var/lib/amber
 *   hold_ms = 10000              Freeze-to-Thaw limit, 1..600000
 *   event_timeout_ms = 60000     time a writer has per event, 1..3600000
 *   max_message = 1048576        frame limit, 4096..67108864
 *   socket_group = amber         group that may connect (mode 0660)
 *   backup_group = backup        group that may request backups, deletes
 *   shadow_dir = .amber-shadows  per-filesystem shadow directory name
 *   fsfreeze = yes               FIFREEZE where the provider allows it
 *   presync = yes                syncfs each volume before the writers freeze
 *   journald = yes               also send events to the journal
 *
 *   [shadowstorage]
 *   /srv/mail = 20G              limit per volume (K, M, G, T; 0 = none)
 *
 * Command-line options (--socket, --state-dir) override the file.
 */
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amber/proto.h"
#include "daemon/amberd.h"

void amberd_config_defaults(amberd_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->socket, sizeof(c->socket), "/run/amber/amberd.sock");
	snprintf(c->state_dir, sizeof(c->state_dir), "/var/lib/amber");
	c->hold_ms = 10000;
	c->event_timeout_ms = 60000;
	c->max_message = AMB_PROTO_MAX_MSG_DEFAULT;
	snprintf(c->socket_group, sizeof(c->socket_group), "amber");
	snprintf(c->backup_group, sizeof(c->backup_group), "backup");
	snprintf(c->shadow_dir_name, sizeof(c->shadow_dir_name), ".amber-shadows");
	c->fsfreeze = true;
	c->presync = true;
	c->journald = true;
}

static int parse_uint(const char *v, unsigned long long lo, unsigned long long hi,
		      unsigned long long *out)
{
	char *end;
	if (!*v || *v == '-')
		return -1;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || *end || x < lo || x > hi)
		return -1;
	*out = x;
	return 0;
}

/* "20G", "512M", "0", "unbounded" */
static int parse_size(const char *v, uint64_t *out)
{
	if (strcmp(v, "unbounded") == 0 || strcmp(v, "none") == 0) {
		*out = 0;
		return 0;
	}
	char *end;
	if (!*v || *v == '-')
		return -1;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || end == v)
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case '\0': break;
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	case 'T': case 't': shift = 40; end++; break;
	default: return -1;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end || (shift && x > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)x << shift;
	return 0;
}

/* shadow_dir: a name (made at the root of each volume's filesystem), or an
 * absolute directory (every volume's shadows there) whose components are
 * neither empty, "." nor "..". */
static bool shadow_dir_ok(const char *v)
{
	if (v[0] != '/')
		return v[0] && !strchr(v, '/') && strcmp(v, ".") && strcmp(v, "..");
	if (!v[1])
		return false; /* not "/" itself */
	for (const char *p = v + 1;;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		if (!e)
			return true;
		p = e + 1;
	}
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "1"))
		*out = true;
	else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "0"))
		*out = false;
	else
		return -1;
	return 0;
}

typedef struct cfg_ctx {
	amberd_config *c;
	char *err;
	size_t errlen;
} cfg_ctx;

static int set_str(char *dst, size_t size, const char *v)
{
	if (strlen(v) >= size)
		return -1;
	snprintf(dst, size, "%s", v);
	return 0;
}

static int on_line(void *user, const char *section, const char *name, const char *value)
{
	cfg_ctx *x = user;
	amberd_config *c = x->c;
	unsigned long long u;
	const char *why = "bad value";
	if (strcmp(section, "amberd") == 0) {
		if (!strcmp(name, "socket")) {
			if (value[0] != '/' || set_str(c->socket, sizeof(c->socket), value))
				goto bad;
		} else if (!strcmp(name, "state_dir")) {
			if (value[0] != '/' || set_str(c->state_dir, sizeof(c->state_dir), value))
				goto bad;
		} else if (!strcmp(name, "hold_ms")) {
			if (parse_uint(value, 1, AMB_MAX_HOLD_MS, &u))
				goto bad;
			c->hold_ms = (unsigned)u;
		} else if (!strcmp(name, "event_timeout_ms")) {
			if (parse_uint(value, 1, AMB_MAX_TIMEOUT_MS, &u))
				goto bad;
			c->event_timeout_ms = (unsigned)u;
		} else if (!strcmp(name, "max_message")) {
			if (parse_uint(value, AMB_PROTO_MIN_MSG_LIMIT, AMB_PROTO_MAX_MSG_LIMIT, &u))
				goto bad;
			c->max_message = (unsigned)u;
		} else if (!strcmp(name, "socket_group")) {
			if (set_str(c->socket_group, sizeof(c->socket_group), value))
				goto bad;
		} else if (!strcmp(name, "backup_group")) {
			if (set_str(c->backup_group, sizeof(c->backup_group), value))
				goto bad;
		} else if (!strcmp(name, "shadow_dir")) {
			if (!shadow_dir_ok(value) ||
			    set_str(c->shadow_dir_name, sizeof(c->shadow_dir_name), value))
				goto bad;
		} else if (!strcmp(name, "fsfreeze")) {
			if (parse_bool(value, &c->fsfreeze))
				goto bad;
		} else if (!strcmp(name, "presync")) {
			if (parse_bool(value, &c->presync))
				goto bad;
		} else if (!strcmp(name, "journald")) {
			if (parse_bool(value, &c->journald))
				goto bad;
		} else {
			why = "unknown key";
			goto bad;
		}
		return 1;
	}
	if (strcmp(section, "shadowstorage") == 0) {
		uint64_t bytes;
		if (!amb_proto_path_ok(name)) {
			why = "not an absolute normalized path";
			goto bad;
		}
		if (parse_size(value, &bytes))
			goto bad;
		amberd_limit *l = realloc(c->limits, (c->n_limits + 1) * sizeof(*l));
		if (!l)
			return 0;
		c->limits = l;
		l[c->n_limits].volume = strdup(name);
		l[c->n_limits].bytes = bytes;
		if (!l[c->n_limits].volume)
			return 0;
		c->n_limits++;
		return 1;
	}
	snprintf(x->err, x->errlen, "unknown section [%s]", section);
	return 0;
bad:
	snprintf(x->err, x->errlen, "%s: %s = %s", why, name, value);
	return 0;
}

int amberd_config_load(amberd_config *c, const char *file, bool required, char *err,
		       size_t errlen)
{
	FILE *f = fopen(file, "re");
	if (!f) {
		int e = errno;
		if (e == ENOENT && !required)
			return 0;
		snprintf(err, errlen, "%s: %s", file, strerror(e));
		return -e;
	}
	cfg_ctx x = {c, err, errlen};
	err[0] = '\0';
	int rc = ini_parse_file(f, on_line, &x);
	fclose(f);
	if (rc != 0) {
		/* inih returns the number of the first bad line */
		char what[512];
		snprintf(what, sizeof(what), "%s", err[0] ? err : "syntax error");
		snprintf(err, errlen, "%s:%d: %s", file, rc, what);
		return -EINVAL;
	}
	return 0;
}

uint64_t amberd_config_limit(const amberd_config *c, const char *volume)
{
	for (size_t i = 0; i < c->n_limits; i++)
		if (strcmp(c->limits[i].volume, volume) == 0)
			return c->limits[i].bytes;
	return 0;
}


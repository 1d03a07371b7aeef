/*
 * util.c - small helpers shared by amberd's files: protocol-safe text,
 * path containment, noticing a peer that went away, error answers.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/amberd.h"

/*
 * Make s valid protocol text (docs/protocol.md section 3) in place: at most
 * max bytes, valid UTF-8 (no overlong forms, surrogates or code points
 * above U+10FFFF), no C0, DEL or C1 control; every offending byte becomes
 * '?'.  Messages quote paths and provider errors, which may hold any
 * bytes a file name can.  An empty result becomes "-".
 */
void amberd_clean_text(char *s, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	char *o = s;
	while (*p && (size_t)(o - s) < max) {
		unsigned c = *p;
		size_t len = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
			   : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
		uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
		bool formed = len > 0; /* lead and continuation bytes in place */
		for (size_t k = 1; formed && k < len; k++) {
			if ((p[k] & 0xC0) != 0x80)
				formed = false;
			else
				cp = (cp << 6) | (p[k] & 0x3F);
		}
		bool ok = formed && !((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
				      (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF);
		if (!ok || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
			/* one '?' per character, or per stray byte */
			*o++ = '?';
			p += formed ? len : 1;
			continue;
		}
		if ((size_t)(o - s) + len > max)
			break;
		memmove(o, p, len);
		o += len;
		p += len;
	}
	*o = '\0';
	if (!s[0] && max >= 1)
		snprintf(s, max + 1, "-");
}

bool amberd_path_within(const char *inner, const char *outer)
{
	size_t n = strlen(outer);
	if (strcmp(outer, "/") == 0)
		return true;
	return strncmp(inner, outer, n) == 0 && (inner[n] == '\0' || inner[n] == '/');
}

bool amberd_peer_gone(int fd)
{
	if (fd < 0)
		return false;
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};
	if (poll(&p, 1, 0) <= 0)
		return false;
	return (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) != 0;
}

void resp_error(amb_msg *resp, uint64_t id, amb_exit_class ex, amb_fail_class cls,
		const char *fmt, ...)
{
	char msg[AMB_TEXT_MAX * 2];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	amberd_clean_text(msg, AMB_TEXT_MAX);
	amb_msg_free(resp);
	resp->kind = AMB_MSG_ERROR;
	resp->id = id;
	resp->u.error.exit = ex;
	resp->u.error.cls = cls;
	resp->u.error.message = strdup(msg);
}

void resp_ok(amb_msg *resp, uint64_t id)
{
	memset(resp, 0, sizeof(*resp));
	resp->kind = AMB_MSG_OK;
	resp->id = id;
}

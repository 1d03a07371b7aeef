/*
 * chain.c - backup chains (chain.h).
 */
#include "backup/chain.h"

#include <stdio.h>
#include <string.h>

#include "backup/repo.h"

int bk_doc_usable(json_t *doc)
{
	return doc && strcmp(bk_str(doc, "status"), "complete") == 0 &&
	       json_is_true(json_object_get(doc, "verified"));
}

size_t bk_chain(json_t *list, json_t *doc, json_t **chain, char *err, size_t errlen)
{
	json_t *rev[BK_MAX_CHAIN];
	size_t n = 0;
	json_t *cur = doc;
	while (cur) {
		if (n == BK_MAX_CHAIN) {
			snprintf(err, errlen, "backup %s: chain longer than %d backups (or a loop)",
			         bk_str(doc, "id"), BK_MAX_CHAIN);
			return 0;
		}
		if (!bk_doc_usable(cur)) {
			snprintf(err, errlen, "backup %s is %s%s: it cannot be restored%s%s",
			         bk_str(cur, "id"), bk_str(cur, "status"),
			         json_is_true(json_object_get(cur, "verified")) ? "" : " and not verified",
			         cur == doc ? "" : " (it is in the chain of ", cur == doc ? "" : bk_str(doc, "id"));
			if (cur != doc)
				strncat(err, ")", errlen - strlen(err) - 1);
			return 0;
		}
		rev[n++] = cur;
		const char *type = bk_str(cur, "type");
		if (!strcmp(type, "full") || !strcmp(type, "copy"))
			break;
		const char *pid = json_string_value(json_object_get(cur, "parent"));
		json_t *p = pid ? bk_list_find(list, pid) : NULL;
		if (!p) {
			snprintf(err, errlen, "backup %s: its parent %s is not in the repository", bk_str(cur, "id"),
			         pid ? pid : "(none)");
			return 0;
		}
		/* a differential's parent is a full; an incremental's a full or incremental */
		if (!strcmp(type, "differential") && strcmp(bk_str(p, "type"), "full")) {
			snprintf(err, errlen, "backup %s: differential whose parent %s is not a full backup",
			         bk_str(cur, "id"), pid);
			return 0;
		}
		cur = p;
	}
	for (size_t i = 0; i < n; i++)
		chain[i] = rev[n - 1 - i];
	return n;
}

json_t *bk_resolve(json_t *list, const char *spec, const char *root, int *rc, char *err,
                   size_t errlen)
{
	json_t *d;
	*rc = 0;
	if (!strcmp(spec, "latest")) {
		if (!(d = bk_latest(list))) {
			snprintf(err, errlen, "%s has no verified backup", root);
			*rc = 1;
			return NULL;
		}
	} else if (!bk_id_ok(spec)) {
		snprintf(err, errlen, "%s: not a backup id (YYYYMMDDTHHMMSSZ-xxxxxx) or latest", spec);
		*rc = 2;
		return NULL;
	} else if (!(d = bk_list_find(list, spec))) {
		snprintf(err, errlen, "%s: no such backup in %s", spec, root);
		*rc = 2;
		return NULL;
	}
	if (!strcmp(bk_str(d, "status"), "unreadable")) {
		/* its document is damaged: bk_list() put the reason in "error" */
		snprintf(err, errlen, "%s", bk_str(d, "error"));
		*rc = 1;
		return NULL;
	}
	return d;
}

json_t *bk_latest(json_t *list)
{
	json_t *chain[BK_MAX_CHAIN];
	char err[512];
	for (size_t i = json_array_size(list); i-- > 0;) {
		json_t *d = json_array_get(list, i);
		if (bk_doc_usable(d) && bk_chain(list, d, chain, err, sizeof(err)))
			return d;
	}
	return NULL;
}

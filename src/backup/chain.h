/*
 * chain.h - backup chains: which backups a restore needs (a full, then
 * its incrementals in order, or a full and one differential), and which
 * backup `latest` means.
 */
#ifndef AMBER_BACKUP_CHAIN_H
#define AMBER_BACKUP_CHAIN_H

#include <jansson.h>
#include <stddef.h>

#define BK_MAX_CHAIN 256

/* A backup counts when its status is "complete" and it is verified. */
int bk_doc_usable(json_t *doc);

/*
 * The chain of the backup doc in list (bk_list()): chain[0] is the full
 * (or copy) and chain[n-1] is doc.  Returns n >= 1, or 0 with err set (a
 * parent missing, unusable, or a loop).
 */
size_t bk_chain(json_t *list, json_t *doc, json_t **chain, char *err, size_t errlen);

/* The newest backup whose whole chain is usable, or NULL. */
json_t *bk_latest(json_t *list);

/*
 * What the user named on the command line: a backup id, or "latest" (the
 * newest usable chain).  Returns the document in list, or NULL with *rc
 * the exit code (2: not an id, no such backup; 1: nothing verified, an
 * unreadable document) and err set.  root names the repository in
 * messages.
 */
json_t *bk_resolve(json_t *list, const char *spec, const char *root, int *rc, char *err,
                   size_t errlen);

#endif

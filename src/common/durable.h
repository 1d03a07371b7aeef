/*
 * durable.h - the one durable-write helper.
 *
 * Any file that must survive a crash whole (checkpoint files, registries,
 * manifests, backup documents, restore.env) is written with
 * amb_durable_write(): write PATH.tmp, fsync it, rename it over PATH, fsync
 * the directory.  After a crash PATH holds either the old or the new content,
 * never a mixture, and once the call returns the new content is on disk.
 *
 * In-place page writes of the store are the exception: they are protected by
 * the write-ahead log (a page is written only after the log records that can
 * rebuild it are durable) and the database header by its two copies.
 */
#ifndef AMBER_COMMON_DURABLE_H
#define AMBER_COMMON_DURABLE_H

#include <stddef.h>

#include "common/vfs.h"

/* Returns 0 or -errno; on failure PATH is untouched and PATH.tmp removed. */
int amb_durable_write(amb_vfs *v, const char *path, const void *data, size_t len);

/*
 * The first half of amb_durable_write(), for a new file that may be
 * missing, empty or partial after a crash until it is settled: write
 * PATH.tmp and rename it over PATH, without fsync.  Before anything depends
 * on PATH surviving a crash, the caller settles it: amb_durable_settle(), or
 * a syncfs(2) of PATH's filesystem started after this returned (it writes
 * every dirty file and directory entry of the filesystem, and waits).  Only
 * for files whose damage before that point is handled where they are read
 * (the provider sidecar, providers/provider.h).  Returns 0 or -errno; on
 * failure PATH is untouched and PATH.tmp removed.
 */
int amb_durable_write_unsettled(amb_vfs *v, const char *path, const void *data, size_t len);

/* What amb_durable_write_unsettled() left out: fsync of PATH, then of its
 * directory.  Returns 0 or -errno. */
int amb_durable_settle(amb_vfs *v, const char *path);

/* rename(2) then fsync of the target's directory (and the source's, if
 * different).  Returns 0 or -errno. */
int amb_durable_rename(amb_vfs *v, const char *from, const char *to);

/* unlink(2) then fsync of the directory.  -ENOENT is returned as is. */
int amb_durable_unlink(amb_vfs *v, const char *path);

#endif

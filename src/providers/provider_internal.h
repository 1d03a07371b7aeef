/*
 * provider_internal.h - what the providers share inside amber_providers.
 *
 * The public wrappers in provider.c check the arguments common to all
 * providers (absolute paths without newlines, volume a directory, shadow
 * free, sidecar handling) and then call the operations below, which only do
 * what is specific to one provider.
 *
 * File I/O: the sidecar goes through the vfs seam (amb_durable_write).  The
 * copies themselves use openat/FICLONE/copy_file_range/xattr calls that the
 * seam does not have; their durability is shown on real filesystems by the
 * tests in tests/providers, not by the power-loss harness.
 */
#ifndef AMBER_PROVIDERS_PROVIDER_INTERNAL_H
#define AMBER_PROVIDERS_PROVIDER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "providers/provider.h"

struct amb_provider_ops {
	/* volume: absolute, exists, is a directory (checked by the caller) */
	int (*supports)(const char *volume);
	/* shadow: absolute, normalised (no trailing slash), does not exist;
	 * parent: its parent directory, which exists.  Called before the
	 * sidecar is written: only checks. */
	int (*check_shadow)(const char *volume, const char *shadow, const char *parent);
	/* after the sidecar is written: create what must exist before commit */
	int (*prepare)(const char *volume, const char *shadow);
	/* optional, before the writers freeze: work commit then need not
	 * redo (reflink: clone the tree; commit only brings it up to date) */
	int (*precommit)(const char *volume, const char *shadow);
	int (*commit)(const char *volume, const char *shadow);
	/* optional: commit, with the files (relative to volume) that the
	 * writers left unchanged since prepare-snapshot */
	int (*commit_unchanged)(const char *volume, const char *shadow, const char *const *rel,
	                        size_t n);
	/* optional, after commit (and the thaw): make the shadow durable */
	int (*sync)(const char *shadow);
	/* shadow exists (lstat succeeded); delete it durably */
	int (*remove)(const char *shadow);
};

extern const amb_provider amb_provider_btrfs;
extern const amb_provider amb_provider_reflink;
extern const amb_provider amb_provider_copy;

/* Set the thread's message; returns rc (see CODING.md "Return codes"). */
int amb_prov_err(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Same filesystem (superblock)?  btrfs subvolumes have their own st_dev,
 * so two btrfs paths are compared by filesystem UUID.  1 yes, 0 no, or
 * -errno (no message). */
int amb_prov_same_fs(int fd_a, int fd_b);

/* Same mount (statx STATX_MNT_ID)?  FICLONE needs it.  1, 0 or -errno. */
int amb_prov_same_mount(int fd_a, int fd_b);

/*
 * The shadow's parent directory must be on the same filesystem as the
 * volume (same_mount 0) or on the same mount (same_mount 1).  prov names
 * the provider in messages, why says why it matters.  0 or -errno.
 */
int amb_prov_check_beside(const char *prov, const char *volume, const char *shadow,
                          const char *parent, int same_mount, const char *why);

/* Is the filesystem of fd btrfs?  1, 0 or -errno. */
int amb_prov_is_btrfs(int fd);
/* Is name (relative to dirfd, not followed) the root of a mount?  (A bind
 * mount of the same filesystem has the same st_dev, so st_dev alone does
 * not tell.) */
bool amb_prov_is_mount_root_at(int dirfd, const char *name);

/*
 * The tree walker behind reflink and copy (tree.c).  Copies the tree at
 * volume into the existing empty directory shadow.  clone: FICLONE every
 * regular file (error when refused), else copy the bytes.  The shadow's
 * parent directory is left out where it occurs inside the volume.  prov
 * names the provider in messages.
 */
int amb_tree_copy(const char *prov, const char *volume, const char *shadow, bool clone);

/* Bring a clone of volume made earlier by amb_tree_copy(clone) into shadow
 * up to date with the volume: only what changed since is cloned again
 * (tree.c, "refresh").  With an empty shadow it is a full clone.  0 or
 * -errno. */
typedef struct amb_refresh_stats {
	uint64_t ranges;       /* ranges cloned again (FICLONERANGE) */
	uint64_t range_bytes;  /* their bytes */
	uint64_t holes;        /* ranges punched */
	unsigned whole_files;  /* files cloned whole again (any doubt) */
	unsigned copied;       /* entries new or replaced since: copied */
	unsigned removed;      /* entries no longer in the volume: deleted */
	unsigned unchanged;    /* files left as cloned: their writer said unchanged */
	unsigned passes;       /* amb_tree_refresh_converge: passes made */
} amb_refresh_stats;

int amb_tree_refresh(const char *prov, const char *volume, const char *shadow,
                     amb_refresh_stats *stats);
/* amb_tree_refresh(), leaving the data of the regular files at the paths
 * rel[0..n) (relative to volume) as cloned when their size is the same:
 * their writers said nothing changed them since the clone was made. */
int amb_tree_refresh_unchanged(const char *prov, const char *volume, const char *shadow,
                               amb_refresh_stats *stats, const char *const *rel, size_t n);
/* amb_tree_refresh(), then (before the hold) up to three passes over only
 * the regular files whose data the pass before cloned again in ranges or
 * punched, until one changes nothing: the clone catches up with files its writers keep writing (a
 * log), so that the refresh in the hold has only the last moments to
 * clone again.  *stats (may be NULL) sums the passes. */
int amb_tree_refresh_converge(const char *prov, const char *volume, const char *shadow,
                              amb_refresh_stats *stats);

/* Make a shadow written by amb_tree_copy() durable: syncfs(2) of its
 * filesystem (amb_tree_copy fsyncs nothing, see tree.c).  0 or -errno. */
int amb_tree_sync(const char *prov, const char *shadow);

/* Delete the tree at path (a directory) and fsync its parent.  Refuses
 * (-EBUSY) to cross into another filesystem. */
int amb_tree_remove(const char *prov, const char *path);

#endif

/*
 * provider.h - the provider interface: make the point-in-time copy of a volume.
 *
 * A provider turns a *volume* into a *shadow* (design.md sections 1-3,
 * vss.md section 5).  amber has three:
 *
 *   btrfs    a read-only btrfs snapshot of a subvolume (libbtrfsutil).
 *   reflink  the files of a directory tree cloned with FICLONE into a shadow
 *            directory on the same mount (xfs, btrfs): no data is copied.
 *   copy     a plain copy of a directory tree (copy_file_range, read/write
 *            fallback), on any filesystem.  It holds writes for as long as
 *            the copy takes.
 *
 * A volume is a directory given by absolute path: a mount point, a btrfs
 * subvolume, or (reflink and copy) any directory tree.  A shadow is the
 * absolute path where the copy goes; it must not exist yet, its parent must.
 *
 * Call sequence for one volume (the coordinator, amberd, drives it):
 *
 *   amb_provider_choose()       pick the provider (or take the one requested)
 *   amb_provider_prepare()      before the writers freeze: checks, bookkeeping
 *   amb_provider_presync()      after precommit, before the writers freeze:
 *                               write the volume's dirty data (optional;
 *                               makes the commit shorter)
 *   amb_provider_precommit()    before the freeze: the work the commit need
 *                               not redo (reflink: clone the tree; optional;
 *                               makes the commit shorter)
 *   amb_provider_commit()       while the writers are frozen: the copy itself
 *                               (btrfs: durable on return; reflink, copy: not
 *                               synced, so the hold does not wait for it)
 *   amb_provider_post_commit()  after the thaw: makes the shadow durable and
 *                               records it as complete
 *   amb_provider_remove()       delete the shadow (any state, any provider)
 *
 * Bookkeeping: prepare writes a sidecar file SHADOW.amber-shadow (next to
 * the shadow, never inside it) with amb_durable_write() (or unsettled, made
 * durable by the presync: amb_provider_prepare_unsettled).  It names the
 * provider, the volume and the state ("prepared", then "committed" after
 * post_commit).  amb_provider_remove() deletes only paths that have a
 * sidecar, so a wrong path can never make it delete user data, and after a
 * crash every shadow a provider started is found again next to its sidecar:
 * state "prepared" means the commit may not have finished (delete it),
 * "committed" means the shadow is complete and durable.  Sidecar format
 * (text, one "key value" per line, in this order):
 *
 *   amber-shadow 1
 *   provider <btrfs|reflink|copy>
 *   volume <absolute path of the volume>
 *   state <prepared|committed>
 *
 * Paths may not contain a newline (prepare refuses them).
 *
 * Return codes: every function that can fail returns 0 or a negative errno
 * (the convention of src/common), never sets errno for the caller, and on
 * failure leaves a message for amb_provider_errmsg() (per thread, lower case,
 * naming the provider and the path, e.g. "btrfs: /mnt/x is not a btrfs
 * subvolume").  The codes with a fixed meaning:
 *
 *   -EINVAL      bad argument: NULL or relative path, unknown provider name,
 *                path with a newline, shadow in a place the provider cannot
 *                use, a path that is not an amber shadow
 *   -ENOENT      the volume, the shadow's parent or the shadow is missing
 *   -ENOTDIR     the volume (or the shadow's parent) is not a directory
 *   -EOPNOTSUPP  the provider cannot serve this volume (not a btrfs
 *                subvolume, FICLONE not supported there)
 *   -EXDEV       the shadow is not on the volume's filesystem (btrfs) or
 *                mount (reflink)
 *   -EEXIST      the shadow or its sidecar already exists
 *   -ENOMEM      out of memory
 *
 * Anything else is the -errno of the failing system call (-ENOSPC, -EIO,
 * -EROFS, -EPERM, ...) with a message naming the file.
 *
 * Threads: the providers keep no global state apart from the per-thread
 * message; calls for different shadows may run in parallel.
 */
#ifndef AMBER_PROVIDERS_PROVIDER_H
#define AMBER_PROVIDERS_PROVIDER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct amb_provider amb_provider;
struct amb_provider_ops;

/*
 * A provider and its properties (constant; the three providers are static
 * objects, never freed).  What each property means for the guarantees:
 * docs/providers.md.
 */
struct amb_provider {
	/* "btrfs", "reflink" or "copy" */
	const char *name;
	/* one line for `amber list providers` */
	const char *description;
	/* The coordinator must FIFREEZE the volume's filesystem around commit
	 * (amb_fsfreeze in fsfreeze.h).  False for all three: btrfs and
	 * reflink write the shadow on the volume's own filesystem, which a
	 * freeze would block (and a btrfs snapshot is atomic by itself). */
	bool needs_fsfreeze;
	/* The coordinator may FIFREEZE the volume's filesystem around commit
	 * when amb_provider_can_fsfreeze() says the shadow is elsewhere; that
	 * makes files no writer owns point-in-time too, at the price of
	 * holding every write on that filesystem for the whole copy. */
	bool can_fsfreeze;
	/* commit takes time proportional to the data (copy): writers stay
	 * frozen that long, which the listing and an event must say */
	bool holds_writes_during_copy;
	/* the shadow can outlive the requestor and amberd (all three: the
	 * shadow is an ordinary on-disk object) */
	bool persistent_capable;
	/* the whole volume is captured at one instant, files no writer owns
	 * included (btrfs); otherwise each file is captured on its own */
	bool atomic;
	/* the shadow must be on the volume's filesystem (btrfs) or mount
	 * (reflink) */
	bool shadow_same_fs;
	/* the shadow itself is read-only (btrfs); the others are read-only
	 * only as exposed (a read-only mount) */
	bool read_only_shadow;
	/* private: the operations (provider_internal.h) */
	const struct amb_provider_ops *ops;
};

/* Shadow states recorded in the sidecar. */
enum amb_shadow_state {
	AMB_SHADOW_PREPARED = 1, /* prepare done; commit may be incomplete */
	AMB_SHADOW_COMMITTED = 2, /* post_commit done: complete and durable */
};

/* What a shadow's sidecar says (amb_provider_shadow_info). */
typedef struct amb_shadow_info {
	const amb_provider *provider;
	enum amb_shadow_state state;
	char volume[PATH_MAX];
} amb_shadow_info;

/*
 * The per-thread message of the last failure ("no error" when none).  Valid
 * until the thread's next provider or fsfreeze call.
 */
const char *amb_provider_errmsg(void);

/* Number of providers, and the provider at index i (0 <= i < count), in
 * the order automatic choice tries them: btrfs, reflink, copy. */
size_t amb_provider_count(void);
const amb_provider *amb_provider_at(size_t i);

/* The provider called name, or NULL (no message) when there is none. */
const amb_provider *amb_provider_find(const char *name);

/*
 * Can p serve volume?  A probe: btrfs checks for a subvolume, reflink
 * clones a one-byte unnamed temporary file (O_TMPFILE) inside the volume,
 * copy only checks for a directory.
 *
 * Returns 0 when it can;
 *   -EINVAL      p or volume NULL, volume not absolute
 *   -ENOENT      volume missing
 *   -ENOTDIR     volume not a directory
 *   -EOPNOTSUPP  p cannot serve it (message says why)
 *   -errno       the probe failed otherwise (-EROFS, -EACCES, -EIO ...)
 */
int amb_provider_supports(const amb_provider *p, const char *volume);

/*
 * Choose the provider for volume.  With name NULL (automatic): btrfs for a
 * btrfs subvolume (or the mount point of one), reflink for a directory on a
 * filesystem where FICLONE works, else copy.  With a name: that provider if
 * it can serve the volume, else its error (the caller's override is never
 * silently replaced).
 *
 * Returns 0 and sets *out;
 *   -EINVAL      out or volume NULL, volume not absolute, unknown name
 *   -ENOENT      volume missing
 *   -ENOTDIR     volume not a directory
 *   -EOPNOTSUPP  the requested provider cannot serve the volume
 *   -errno       of the requested provider's probe
 */
int amb_provider_choose(const char *volume, const char *name, const amb_provider **out);

/*
 * Get ready to shadow volume at shadow; run it before the writers freeze.
 * Checks that p serves volume, that shadow does not exist and its parent
 * does, and that the provider can write there (btrfs: same btrfs
 * filesystem; reflink: same mount; reflink and copy: the shadow's parent is
 * not the volume directory itself).  Then writes the sidecar (state
 * "prepared") and, for reflink and copy, creates the empty shadow directory
 * (mode 0700 until commit).  On failure nothing is left behind.
 *
 * reflink and copy leave the shadow's parent directory out of the copy when
 * it lies inside the volume (it appears as an empty directory, like the
 * nested subvolumes of a btrfs snapshot), so a shadow storage directory
 * inside the volume is fine.
 *
 * Returns 0;
 *   -EINVAL      NULL or relative path, newline in a path, shadow is "/",
 *                shadow's parent is the volume itself (reflink, copy)
 *   -ENOENT      volume or shadow's parent missing
 *   -ENOTDIR     volume or shadow's parent not a directory
 *   -EOPNOTSUPP  p cannot serve volume
 *   -EXDEV       shadow on another filesystem (btrfs) or mount (reflink)
 *   -EEXIST      shadow or SHADOW.amber-shadow exists
 *   -ENAMETOOLONG a path is too long
 *   -errno       writing the sidecar or creating the directory failed
 */
int amb_provider_prepare(const amb_provider *p, const char *volume, const char *shadow);

/*
 * amb_provider_prepare() with the sidecar's two fsyncs left for later where
 * p allows it: the shadow is on the volume's filesystem and nothing of it
 * exists before the commit (no prepare or precommit step: btrfs).
 * *unsettled then says true, and until the sidecar is settled a crash may
 * leave it missing, empty or partial (amb_provider_remove() deletes a
 * damaged sidecar that has no shadow).  The caller settles it before the
 * commit: amb_provider_presync() of the volume returning 0 after this
 * returned does (its syncfs writes the sidecar too: same filesystem), else
 * amb_provider_settle().  Otherwise (*unsettled false) the same as
 * amb_provider_prepare().  amberd uses it so that the presync it runs anyway
 * replaces the sidecar's fsync and directory fsync (bench/ANALYSIS.md,
 * "Incremental backup", session 16).
 *
 * Returns as amb_provider_prepare(); -EINVAL also for a NULL unsettled.
 */
int amb_provider_prepare_unsettled(const amb_provider *p, const char *volume, const char *shadow,
                                   bool *unsettled);

/*
 * Settle the sidecar of shadow that amb_provider_prepare_unsettled() left
 * unsettled: fsync it and its directory (amb_durable_settle).  Returns 0 or
 * a negative errno (message set; -ENOENT: no sidecar).
 */
int amb_provider_settle(const char *shadow);

/*
 * Make the point-in-time copy of volume at shadow.  Called while the
 * writers are frozen, after a successful prepare with the same arguments.
 * btrfs: one read-only snapshot (the snapshot ioctl commits a btrfs
 * transaction, so it is durable on return).  reflink and copy: the tree,
 * staying on the volume's filesystem (mount points and nested subvolumes
 * below the volume appear as empty directories), keeping file types, modes,
 * owners, times, extended attributes of files and directories, symlinks,
 * hard links, fifos and device nodes.  Nothing is fsynced here (the writers
 * are held while this runs, and the copy no longer depends on the volume):
 * amb_provider_post_commit() makes the shadow durable.  Files that vanish
 * during the walk are left out.
 *
 * On failure the partial shadow stays, with its sidecar in state
 * "prepared"; amb_provider_remove() deletes it.
 *
 * Returns 0;
 *   -EINVAL      NULL or relative path, not prepared (no sidecar), shadow
 *                directory not empty (reflink, copy)
 *   -EOPNOTSUPP  reflink: a file could not be cloned (FICLONE refused; the
 *                message names the file)
 *   -ESTALE      reflink, copy: a file was replaced by another between its
 *                lstat and its open (a writer nobody holds)
 *   -ENOENT      volume missing
 *   -ENOSPC, -EIO, -EPERM, ... as the system calls return them
 */
int amb_provider_commit(const amb_provider *p, const char *volume, const char *shadow);

/*
 * amb_provider_commit() told which files the frozen writers have not
 * changed since they answered prepare-snapshot (absolute paths; those not
 * in volume are ignored).  reflink, whose precommit cloned the tree after
 * that, does not look at them again (they are the same as their clones);
 * btrfs and copy ignore the list.  Writers are trusted with this as they
 * are with holding their writes; amberd passes only paths inside the
 * writer's own file sets.
 */
int amb_provider_commit_unchanged(const amb_provider *p, const char *volume, const char *shadow,
                                  const char *const *unchanged, size_t n);

/*
 * Before the writers freeze, after prepare: what commit, which runs while
 * they are frozen, then need not do.  reflink clones the whole tree here
 * (amb_tree_copy) and brings that clone up to date with what changed
 * while it was made, passing again over the files that keep changing
 * (amb_tree_refresh_converge); its commit only clones again what changed
 * since
 * (amb_tree_refresh: FIEMAP of each file against its clone, FICLONERANGE
 * of the ranges that differ; entries added, removed or replaced since are
 * copied or deleted).  btrfs and copy: nothing.  A failure leaves a partial
 * clone, which commit completes; the caller may go on.  Returns 0 or a
 * negative errno (message set).
 */
int amb_provider_precommit(const amb_provider *p, const char *volume, const char *shadow);

/*
 * Write the dirty data of volume's filesystem (syncfs(2)), before the
 * writers freeze.  Every provider's commit writes what is dirty in the
 * volume first (a btrfs snapshot flushes the subvolume and commits a
 * transaction, FICLONE writes back the file, a copy reads the page cache),
 * and it runs while writes are held: done here, outside the hold, that
 * work leaves the commit less to do.  Nothing depends on it for
 * correctness.  Returns 0 or a negative errno (message set).
 */
int amb_provider_presync(const char *volume);

/*
 * Make the shadow durable and record it as complete: reflink and copy
 * syncfs the shadow's filesystem (commit synced nothing; btrfs: the
 * snapshot is durable already), then the sidecar is rewritten (state
 * "committed") with amb_durable_write.  Call it after the thaw.
 *
 * Returns 0;
 *   -EINVAL      NULL or relative path, sidecar damaged or of another
 *                provider
 *   -ENOENT      no sidecar (not prepared) or no shadow (commit not run)
 *   -errno       the durable write failed
 */
int amb_provider_post_commit(const amb_provider *p, const char *shadow);

/*
 * Read the sidecar of shadow into *out.
 *
 * Returns 0;
 *   -EINVAL      NULL or relative path, sidecar damaged (message says how)
 *   -ENOENT      no sidecar
 *   -errno       reading failed
 */
int amb_provider_shadow_info(const char *shadow, amb_shadow_info *out);

/*
 * Delete shadow, in whatever state it is (prepared, partly committed,
 * committed), with the provider its sidecar names: btrfs deletes the
 * snapshot and commits the btrfs transaction, reflink and copy delete the
 * tree (refusing to cross into a filesystem mounted inside it, e.g. an
 * exposed shadow); then the sidecar is removed with amb_durable_unlink.
 * Idempotent after a crash: a sidecar without a shadow is simply removed,
 * and so is a damaged one without a shadow (a crash before an unsettled
 * sidecar was settled: see amb_provider_prepare_unsettled).
 *
 * Returns 0;
 *   -EINVAL      NULL or relative path; shadow exists but has no sidecar
 *                (not an amber shadow: nothing is deleted); shadow exists
 *                and its sidecar is damaged (nothing is deleted)
 *   -ENOENT      neither shadow nor sidecar exists
 *   -EBUSY       a filesystem is mounted inside the shadow
 *   -errno       deleting failed (the sidecar stays, so it can be retried)
 */
int amb_provider_remove(const char *shadow);

/*
 * May the coordinator FIFREEZE the volume's filesystem while p commits
 * volume to shadow?  Only when p->can_fsfreeze (copy) and the shadow's
 * parent is on another filesystem (a frozen filesystem blocks the copy's
 * own writes).
 *
 * Returns 1 (yes), 0 (no), or -errno when a path cannot be examined.
 */
int amb_provider_can_fsfreeze(const amb_provider *p, const char *volume, const char *shadow);

/*
 * The mount point that holds path (absolute): path itself or its nearest
 * parent that is the root of a mount (statx STATX_ATTR_MOUNT_ROOT).  The
 * result is where a provider's shadow directory for a volume can go.
 * Returns 0, -EINVAL (NULL, relative, too long for out) or -errno of statx.
 */
int amb_provider_mount_point(const char *path, char *out, size_t size);

#endif

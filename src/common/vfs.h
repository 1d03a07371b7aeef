/*
 * vfs.h - the file I/O seam.
 *
 * Every read, write, sync, rename and unlink that amber's engine performs on
 * its files goes through an amb_vfs.  Production code uses amb_vfs_posix();
 * tests substitute a layer that records every operation (to build the disk
 * images a power loss could leave behind) or fails a chosen operation with a
 * chosen errno (ENOSPC, EIO).  Keeping all I/O behind one table is what makes
 * those tests possible; do not call the POSIX functions directly from the
 * engine.
 *
 * Conventions: every function returns 0 (or a byte count / descriptor) on
 * success and a negative errno on failure; errno itself is not used.  Short
 * reads and writes are completed inside pread/pwrite (a return smaller than
 * the request means end of file on reads and never happens on writes).
 */
#ifndef AMBER_COMMON_VFS_H
#define AMBER_COMMON_VFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct amb_vfs amb_vfs;

struct amb_vfs {
	/* open(2) flags; returns a descriptor or -errno */
	int (*open)(amb_vfs *v, const char *path, int flags, int mode);
	int (*close)(amb_vfs *v, int fd);
	/* full read at off; returns bytes read (short only at end of file) */
	ssize_t (*pread)(amb_vfs *v, int fd, void *buf, size_t n, off_t off);
	/* full write at off; returns n or -errno */
	ssize_t (*pwrite)(amb_vfs *v, int fd, const void *buf, size_t n, off_t off);
	/* fdatasync when datasync != 0, else fsync */
	int (*sync)(amb_vfs *v, int fd, int datasync);
	int (*truncate)(amb_vfs *v, int fd, off_t len);
	/* reserve space without changing the file size (fallocate(2) with
	 * FALLOC_FL_KEEP_SIZE); -EOPNOTSUPP means the filesystem cannot, and
	 * callers then go on without a reservation */
	int (*allocate)(amb_vfs *v, int fd, off_t off, off_t len);
	int (*size)(amb_vfs *v, int fd, off_t *size);
	int (*rename)(amb_vfs *v, const char *from, const char *to);
	int (*unlink)(amb_vfs *v, const char *path);
	/* open the directory, fsync it, close it */
	int (*sync_dir)(amb_vfs *v, const char *dir);
	void *ctx; /* for wrapping layers */
};

/* The plain POSIX implementation (a static singleton; never freed). */
amb_vfs *amb_vfs_posix(void);

/*
 * Memory for I/O buffers and page images: n bytes aligned to 4096 (free
 * with free(); NULL when out of memory).  Use it for every buffer that a
 * pread(2) fills and for page-sized images that are copied into and out of
 * each other.  Two reasons: O_DIRECT needs the alignment, and on AMD Zen CPUs
 * a copy whose destination lies 1 to 31 bytes past its source modulo 4096
 * (4 KiB aliasing) runs about 25 times slower: the kernel's copy from the
 * page cache into a read buffer (its source is page-aligned, and malloc's
 * 16-byte alignment puts the destination 16 bytes on), and glibc's memcpy of
 * 2 to 64 KiB between two malloc'd page images.  Measured on the 2-vCPU AMD
 * EPYC machine (bench/ANALYSIS.md, "Aligned buffers"): 1 GiB read warm in
 * 512 KiB preads, 0.67 s into malloc'd memory, 0.08 s into aligned memory.
 */
void *amb_io_alloc(size_t n);

/* Directory part of path into buf ("." when path has no slash). */
void amb_path_dir(const char *path, char *buf, size_t bufsize);

#endif

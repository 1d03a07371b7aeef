/*
 * vfs.c - the POSIX implementation of the I/O seam (see vfs.h).
 */
#ifndef _GNU_SOURCE /* the build defines it (-D_GNU_SOURCE) */
#define _GNU_SOURCE
#endif
#include "common/vfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>

static int px_open(amb_vfs *v, const char *path, int flags, int mode)
{
	(void)v;
	int fd;
	do
		fd = open(path, flags | O_CLOEXEC, (mode_t)mode);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

static int px_close(amb_vfs *v, int fd)
{
	(void)v;
	/* close(2) must not be retried on EINTR on Linux */
	return close(fd) < 0 && errno != EINTR ? -errno : 0;
}

static ssize_t px_pread(amb_vfs *v, int fd, void *buf, size_t n, off_t off)
{
	(void)v;
	size_t done = 0;
	while (done < n) {
		ssize_t r = pread(fd, (char *)buf + done, n - done, off + (off_t)done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

static ssize_t px_pwrite(amb_vfs *v, int fd, const void *buf, size_t n, off_t off)
{
	(void)v;
	size_t done = 0;
	while (done < n) {
		ssize_t r = pwrite(fd, (const char *)buf + done, n - done, off + (off_t)done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

static int px_sync(amb_vfs *v, int fd, int datasync)
{
	(void)v;
	int r = datasync ? fdatasync(fd) : fsync(fd);
	return r < 0 ? -errno : 0;
}

static int px_truncate(amb_vfs *v, int fd, off_t len)
{
	(void)v;
	return ftruncate(fd, len) < 0 ? -errno : 0;
}

static int px_allocate(amb_vfs *v, int fd, off_t off, off_t len)
{
	(void)v;
	int r;
	do
		r = fallocate(fd, FALLOC_FL_KEEP_SIZE, off, len);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

static int px_size(amb_vfs *v, int fd, off_t *size)
{
	(void)v;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	*size = st.st_size;
	return 0;
}

static int px_rename(amb_vfs *v, const char *from, const char *to)
{
	(void)v;
	return rename(from, to) < 0 ? -errno : 0;
}

static int px_unlink(amb_vfs *v, const char *path)
{
	(void)v;
	return unlink(path) < 0 ? -errno : 0;
}

static int px_sync_dir(amb_vfs *v, const char *dir)
{
	(void)v;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static amb_vfs posix_vfs = {
	.open = px_open,
	.close = px_close,
	.pread = px_pread,
	.pwrite = px_pwrite,
	.sync = px_sync,
	.truncate = px_truncate,
	.allocate = px_allocate,
	.size = px_size,
	.rename = px_rename,
	.unlink = px_unlink,
	.sync_dir = px_sync_dir,
	.ctx = NULL,
};

amb_vfs *amb_vfs_posix(void)
{
	return &posix_vfs;
}

void amb_path_dir(const char *path, char *buf, size_t bufsize)
{
	const char *slash = strrchr(path, '/');
	if (!slash) {
		snprintf(buf, bufsize, ".");
		return;
	}
	size_t n = (size_t)(slash - path);
	if (n == 0)
		n = 1; /* "/file" -> "/" */
	if (n >= bufsize)
		n = bufsize - 1;
	memcpy(buf, path, n);
	buf[n] = '\0';
}

void *amb_io_alloc(size_t n)
{
	void *p = NULL;
	return posix_memalign(&p, 4096, n ? n : 1) ? NULL : p;
}

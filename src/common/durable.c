/*
 * durable.c - write temp, fsync, rename, fsync dir (see durable.h).
 */
#include "common/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

/* PATH.tmp written (fsynced if sync), closed, renamed over PATH */
static int write_rename(amb_vfs *v, const char *path, const void *data, size_t len, int sync)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	int fd = v->open(v, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return fd;
	int r = 0;
	ssize_t w = v->pwrite(v, fd, data, len, 0);
	if (w < 0)
		r = (int)w;
	if (r == 0 && sync)
		r = v->sync(v, fd, 0);
	int rc = v->close(v, fd);
	if (r == 0)
		r = rc;
	if (r == 0)
		r = v->rename(v, tmp, path);
	if (r != 0)
		v->unlink(v, tmp);
	return r;
}

int amb_durable_write(amb_vfs *v, const char *path, const void *data, size_t len)
{
	char dir[PATH_MAX];
	int r = write_rename(v, path, data, len, 1);
	if (r)
		return r;
	amb_path_dir(path, dir, sizeof(dir));
	return v->sync_dir(v, dir);
}

int amb_durable_write_unsettled(amb_vfs *v, const char *path, const void *data, size_t len)
{
	return write_rename(v, path, data, len, 0);
}

int amb_durable_settle(amb_vfs *v, const char *path)
{
	char dir[PATH_MAX];
	int fd = v->open(v, path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	int r = v->sync(v, fd, 0);
	int rc = v->close(v, fd);
	if (r == 0)
		r = rc;
	if (r)
		return r;
	amb_path_dir(path, dir, sizeof(dir));
	return v->sync_dir(v, dir);
}

int amb_durable_rename(amb_vfs *v, const char *from, const char *to)
{
	char d1[PATH_MAX], d2[PATH_MAX];
	int r = v->rename(v, from, to);
	if (r)
		return r;
	amb_path_dir(to, d1, sizeof(d1));
	amb_path_dir(from, d2, sizeof(d2));
	r = v->sync_dir(v, d1);
	if (r == 0 && strcmp(d1, d2) != 0)
		r = v->sync_dir(v, d2);
	return r;
}

int amb_durable_unlink(amb_vfs *v, const char *path)
{
	char dir[PATH_MAX];
	int r = v->unlink(v, path);
	if (r)
		return r;
	amb_path_dir(path, dir, sizeof(dir));
	return v->sync_dir(v, dir);
}

/*
 * repo.c - the backup repository (repo.h, docs/repository.md).
 */
#include "backup/repo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/durable.h"
#include "common/vfs.h"

#define REPO_FILE "amber-repo.json"
#define REPO_VERSION 1
#define COPY_CHUNK BK_COPY_CHUNK

uint64_t bk_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void bk_time_str(uint64_t sec, char *out, size_t n)
{
	time_t t = (time_t)sec;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void bk_new_id(char out[BK_ID_BUF])
{
	/* the milliseconds come first among the six hex digits, so that ids
	 * sort by start time even within one second: "latest" and the parent
	 * of an incremental are found in id order */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct tm tm;
	gmtime_r(&now.tv_sec, &tm);
	unsigned char rnd[2] = {0, 0};
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		rnd[0] = (unsigned char)getpid();
		rnd[1] = (unsigned char)(getpid() >> 8);
	}
	char ts[32];
	strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(out, BK_ID_BUF, "%s-%03lx%03x", ts, now.tv_nsec / 1000000,
	         ((unsigned)rnd[0] << 4 | rnd[1] >> 4) & 0xfffu);
}

bool bk_id_ok(const char *id)
{
	/* YYYYMMDDTHHMMSSZ-xxxxxx */
	if (!id || strlen(id) != BK_ID_LEN)
		return false;
	for (size_t i = 0; i < BK_ID_LEN; i++) {
		char c = id[i];
		bool ok;
		if (i == 8)
			ok = c == 'T';
		else if (i == 15)
			ok = c == 'Z';
		else if (i == 16)
			ok = c == '-';
		else if (i > 16)
			ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
		else
			ok = c >= '0' && c <= '9';
		if (!ok)
			return false;
	}
	return true;
}

bool bk_name_ok(const char *name)
{
	if (!name || !*name || strlen(name) > 255 || strchr(name, '/') || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0)
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

bool bk_relpath_ok(const char *path, char *err, size_t errlen)
{
	if (!path || !*path) {
		snprintf(err, errlen, "empty path");
		return false;
	}
	if (strlen(path) > 4000) {
		snprintf(err, errlen, "path too long");
		return false;
	}
	if (path[0] == '/') {
		snprintf(err, errlen, "%s: absolute path", path);
		return false;
	}
	if (path[strlen(path) - 1] == '/') {
		snprintf(err, errlen, "%s: empty last component", path);
		return false;
	}
	if (strncmp(path, "data/", 5) != 0) {
		snprintf(err, errlen, "%s: not below data/", path);
		return false;
	}
	const char *p = path;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
			snprintf(err, errlen, "%s: empty, '.' or '..' component", path);
			return false;
		}
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c < 0x20 || c == 0x7f) {
				snprintf(err, errlen, "path with a control character");
				return false;
			}
		}
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

int bk_openat_beneath(int dirfd, const char *rel, int flags, int mode)
{
	struct open_how how;
	memset(&how, 0, sizeof(how));
	how.flags = (uint64_t)(flags | O_CLOEXEC);
	how.mode = (flags & O_CREAT) ? (uint64_t)mode : 0;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
	long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
	if (fd < 0)
		return -errno;
	return (int)fd;
}

int bk_mkdirs_beneath(int dirfd, const char *rel)
{
	char buf[4096];
	if (snprintf(buf, sizeof(buf), "%s", rel) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf;; p++) {
		if (*p == '/' || *p == '\0') {
			char save = *p;
			*p = '\0';
			if (buf[0]) {
				int fd = bk_openat_beneath(dirfd, buf, O_RDONLY | O_DIRECTORY, 0);
				if (fd == -ENOENT) {
					/* the parent was resolved safely just before */
					if (mkdirat(dirfd, buf, 0750) != 0 && errno != EEXIST)
						return -errno;
					fd = bk_openat_beneath(dirfd, buf, O_RDONLY | O_DIRECTORY, 0);
				}
				if (fd < 0)
					return fd;
				close(fd);
			}
			*p = save;
			if (!save)
				break;
		}
	}
	return 0;
}

/* ------------------------------------------------------------- open */

static int write_json_mode(const char *path, json_t *j, bool settle)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!s)
		return -ENOMEM;
	size_t n = strlen(s);
	char *t = realloc(s, n + 2);
	if (!t) {
		free(s);
		return -ENOMEM;
	}
	t[n] = '\n';
	t[n + 1] = '\0';
	int rc = settle ? amb_durable_write(amb_vfs_posix(), path, t, n + 1) :
	                  amb_durable_write_unsettled(amb_vfs_posix(), path, t, n + 1);
	free(t);
	return rc;
}

static int write_json_at(const char *path, json_t *j)
{
	return write_json_mode(path, j, true);
}

int bk_repo_open(const char *path, bool create, bk_repo *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->dirfd = r->lockfd = -1;
	if (!path || !*path) {
		snprintf(err, errlen, "no repository given (--repo REPO)");
		return 2;
	}
	if (create && mkdir(path, 0750) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: cannot create the repository: %s", path, strerror(errno));
		return 1;
	}
	if (!realpath(path, r->root)) {
		snprintf(err, errlen, "%s: %s", path,
		         errno == ENOENT ? "no such repository (a backup creates it)" : strerror(errno));
		return errno == ENOENT ? 2 : 1;
	}
	r->dirfd = open(r->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r->dirfd < 0) {
		snprintf(err, errlen, "%s: %s", r->root, strerror(errno));
		return 1;
	}
	char file[4200];
	snprintf(file, sizeof(file), "%s/%s", r->root, REPO_FILE);
	json_error_t je;
	json_t *j = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		struct stat st;
		if (stat(file, &st) == 0) {
			snprintf(err, errlen, "%s: damaged: %s (line %d)", file, je.text, je.line);
			return 2;
		}
		if (!create) {
			snprintf(err, errlen, "%s is not an amber repository (no %s)", r->root, REPO_FILE);
			return 2;
		}
		DIR *d = opendir(r->root);
		int entries = 0;
		struct dirent *e;
		while (d && (e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				entries++;
		if (d)
			closedir(d);
		if (entries) {
			snprintf(err, errlen, "%s is not empty and not an amber repository: refusing to "
			         "use it", r->root);
			return 2;
		}
		unsigned char u[16];
		if (getrandom(u, sizeof(u), 0) != (ssize_t)sizeof(u))
			memset(u, 0x5a, sizeof(u));
		char ids[40];
		snprintf(ids, sizeof(ids), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		         u[0], u[1], u[2], u[3], u[4], u[5], (u[6] & 0x0f) | 0x40, u[7],
		         (u[8] & 0x3f) | 0x80, u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
		char now[32];
		bk_time_str(bk_now_ms() / 1000, now, sizeof(now));
		j = json_pack("{s:s, s:i, s:s, s:s}", "format", "amber-repository", "version",
		              REPO_VERSION, "id", ids, "created", now);
		char backups[4200];
		snprintf(backups, sizeof(backups), "%s/backups", r->root);
		int rc = mkdir(backups, 0750) == 0 || errno == EEXIST ? 0 : -errno;
		if (!rc)
			rc = j ? write_json_at(file, j) : -ENOMEM;
		if (rc) {
			json_decref(j);
			snprintf(err, errlen, "%s: cannot create the repository: %s", r->root, strerror(-rc));
			return 1;
		}
	}
	const char *fmt = json_string_value(json_object_get(j, "format"));
	json_t *ver = json_object_get(j, "version");
	const char *id = json_string_value(json_object_get(j, "id"));
	if (!fmt || strcmp(fmt, "amber-repository") != 0 || !json_is_integer(ver) || !id) {
		snprintf(err, errlen, "%s: not an amber repository description", file);
		json_decref(j);
		return 2;
	}
	if (json_integer_value(ver) != REPO_VERSION) {
		snprintf(err, errlen, "%s: repository version %lld; this amber reads version %d", file,
		         (long long)json_integer_value(ver), REPO_VERSION);
		json_decref(j);
		return 2;
	}
	snprintf(r->id, sizeof(r->id), "%s", id);
	json_decref(j);
	char backups[4200];
	snprintf(backups, sizeof(backups), "%s/backups", r->root);
	if (mkdir(backups, 0750) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", backups, strerror(errno));
		return 1;
	}
	return 0;
}

void bk_repo_close(bk_repo *r)
{
	if (r->lockfd >= 0)
		close(r->lockfd);
	if (r->dirfd >= 0)
		close(r->dirfd);
	r->lockfd = r->dirfd = -1;
}

int bk_repo_lock(bk_repo *r, bool wait, char *err, size_t errlen)
{
	if (r->lockfd < 0) {
		r->lockfd = openat(r->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
		if (r->lockfd < 0) {
			snprintf(err, errlen, "%s/lock: %s", r->root, strerror(errno));
			return 1;
		}
	}
	if (flock(r->lockfd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
		if (errno == EWOULDBLOCK) {
			snprintf(err, errlen, "%s: another backup, restore or prune is using the "
			         "repository; try again when it is done", r->root);
			return 3;
		}
		snprintf(err, errlen, "%s/lock: %s", r->root, strerror(errno));
		return 1;
	}
	return 0;
}

/* ---------------------------------------------------------- folders */

int bk_dir_create(bk_repo *r, const char *id, char *err, size_t errlen)
{
	char rel[128];
	snprintf(rel, sizeof(rel), "backups/%s", id);
	if (mkdirat(r->dirfd, rel, 0750) != 0) {
		snprintf(err, errlen, "%s/%s: %s", r->root, rel, strerror(errno));
		return 1;
	}
	snprintf(rel, sizeof(rel), "backups/%s/data", id);
	if (mkdirat(r->dirfd, rel, 0750) != 0) {
		snprintf(err, errlen, "%s/%s: %s", r->root, rel, strerror(errno));
		return 1;
	}
	/* no fsync of backups/ here: bk_sync_dirs() makes the folder's name
	 * durable with the rest before the verdict (docs/repository.md) */
	return 0;
}

int bk_dir_open(bk_repo *r, const char *id, char *err, size_t errlen)
{
	if (!bk_id_ok(id)) {
		snprintf(err, errlen, "%s: not a backup id (YYYYMMDDTHHMMSSZ-xxxxxx)", id);
		return -EINVAL;
	}
	char rel[128];
	snprintf(rel, sizeof(rel), "backups/%s", id);
	int fd = bk_openat_beneath(r->dirfd, rel, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		snprintf(err, errlen, "%s/%s: %s", r->root, rel,
		         fd == -ENOENT ? "no such backup" : strerror(-fd));
	return fd;
}

static int doc_write(bk_repo *r, const char *id, json_t *doc, bool settle, char *err,
                     size_t errlen)
{
	char path[4300];
	snprintf(path, sizeof(path), "%s/backups/%s/backup.json", r->root, id);
	int rc = write_json_mode(path, doc, settle);
	if (rc) {
		snprintf(err, errlen, "%s: cannot write: %s", path, strerror(-rc));
		return 1;
	}
	return 0;
}

int bk_doc_create(bk_repo *r, const char *id, json_t *doc, char *err, size_t errlen)
{
	return doc_write(r, id, doc, false, err, errlen);
}

int bk_doc_save(bk_repo *r, const char *id, json_t *doc, char *err, size_t errlen)
{
	return doc_write(r, id, doc, true, err, errlen);
}

/* Read a small file below dirfd into a NUL-terminated buffer. */
static int read_small(int dirfd, const char *rel, size_t max, char **out, size_t *len)
{
	int fd = bk_openat_beneath(dirfd, rel, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		int e = !S_ISREG(st.st_mode) ? -EINVAL : -EFBIG;
		close(fd);
		return e;
	}
	char *b = malloc((size_t)st.st_size + 1);
	if (!b) {
		close(fd);
		return -ENOMEM;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	b[got] = '\0';
	*out = b;
	*len = got;
	return 0;
}

const char *bk_str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

int bk_doc_check(json_t *doc, const char *id, char *err, size_t errlen)
{
	char why[512];
	if (!json_is_object(doc)) {
		snprintf(err, errlen, "backup %s: the document is not a JSON object", id);
		return 2;
	}
	const char *fmt = bk_str(doc, "format");
	if (!fmt || strcmp(fmt, "amber-backup") != 0 ||
	    json_integer_value(json_object_get(doc, "version")) != 1) {
		snprintf(err, errlen, "backup %s: not an amber backup document of version 1", id);
		return 2;
	}
	const char *did = bk_str(doc, "id");
	if (!did || strcmp(did, id) != 0) {
		snprintf(err, errlen, "backup %s: the document names another backup (%s)", id,
		         did ? did : "none");
		return 2;
	}
	const char *type = bk_str(doc, "type"), *status = bk_str(doc, "status");
	if (!type || (strcmp(type, "full") && strcmp(type, "copy") && strcmp(type, "incremental") &&
	              strcmp(type, "differential"))) {
		snprintf(err, errlen, "backup %s: unknown backup type", id);
		return 2;
	}
	if (!status || (strcmp(status, "incomplete") && strcmp(status, "complete") &&
	                strcmp(status, "failed"))) {
		snprintf(err, errlen, "backup %s: unknown status", id);
		return 2;
	}
	if (!json_is_boolean(json_object_get(doc, "verified"))) {
		snprintf(err, errlen, "backup %s: \"verified\" is not true or false", id);
		return 2;
	}
	json_t *parent = json_object_get(doc, "parent");
	if (parent && !json_is_null(parent) && !bk_id_ok(json_string_value(parent))) {
		snprintf(err, errlen, "backup %s: \"parent\" is not a backup id", id);
		return 2;
	}
	json_t *files = json_object_get(doc, "files");
	if (!json_is_array(files)) {
		snprintf(err, errlen, "backup %s: no \"files\" list", id);
		return 2;
	}
	size_t i;
	json_t *f;
	json_array_foreach(files, i, f) {
		const char *path = bk_str(f, "path"), *target = bk_str(f, "target");
		const char *writer = bk_str(f, "writer");
		if (!bk_relpath_ok(path, why, sizeof(why))) {
			snprintf(err, errlen, "backup %s: files[%zu].path: %s", id, i, why);
			return 2;
		}
		/* the target is relative to the writer's restore directory: the
		 * same rules as a data path, without the data/ prefix */
		char tmp[4200];
		if (!*target || snprintf(tmp, sizeof(tmp), "data/%s", target) >= (int)sizeof(tmp) ||
		    !bk_relpath_ok(tmp, why, sizeof(why))) {
			snprintf(err, errlen, "backup %s: files[%zu].target: %s", id, i,
			         *target ? why + (strncmp(why, "data/", 5) == 0 ? 5 : 0) : "missing");
			return 2;
		}
		if (!writer || !bk_name_ok(writer)) {
			snprintf(err, errlen, "backup %s: files[%zu].writer: missing or not a name", id, i);
			return 2;
		}
		if (!json_is_integer(json_object_get(f, "size")) ||
		    json_integer_value(json_object_get(f, "size")) < 0) {
			snprintf(err, errlen, "backup %s: files[%zu].size: not a size", id, i);
			return 2;
		}
	}
	json_t *writers = json_object_get(doc, "writers");
	if (!json_is_array(writers)) {
		snprintf(err, errlen, "backup %s: no \"writers\" list", id);
		return 2;
	}
	json_t *w;
	json_array_foreach(writers, i, w) {
		const char *name = bk_str(w, "name"), *dir = bk_str(w, "dir");
		if (!name || !bk_name_ok(name)) {
			snprintf(err, errlen, "backup %s: writers[%zu].name: missing or not a name", id, i);
			return 2;
		}
		if (*dir && (dir[0] != '/' || strstr(dir, "/../") || strstr(dir, "/./") ||
		            (strlen(dir) >= 3 && strcmp(dir + strlen(dir) - 3, "/..") == 0))) {
			snprintf(err, errlen, "backup %s: writers[%zu].dir: not an absolute normalized "
			         "path", id, i);
			return 2;
		}
		json_t *st = json_object_get(w, "store");
		if (st) {
			json_t *dbs = json_object_get(st, "databases");
			size_t k;
			json_t *d;
			json_array_foreach(dbs, k, d) {
				const char *dn = json_string_value(d);
				if (!dn || !bk_name_ok(dn)) {
					snprintf(err, errlen, "backup %s: writers[%zu].store.databases[%zu]: not a "
					         "file name", id, i, k);
					return 2;
				}
			}
			const char *px = bk_str(st, "prefix");
			if (!px || strlen(px) != 3 || !bk_name_ok(px)) {
				snprintf(err, errlen, "backup %s: writers[%zu].store.prefix: not a log prefix",
				         id, i);
				return 2;
			}
		}
	}
	return 0;
}

int bk_doc_load(bk_repo *r, const char *id, json_t **doc, char *err, size_t errlen)
{
	*doc = NULL;
	if (!bk_id_ok(id)) {
		snprintf(err, errlen, "%s: not a backup id (YYYYMMDDTHHMMSSZ-xxxxxx)", id);
		return 2;
	}
	char rel[128];
	snprintf(rel, sizeof(rel), "backups/%s/backup.json", id);
	char *buf;
	size_t len;
	int rc = read_small(r->dirfd, rel, 64u << 20, &buf, &len);
	if (rc) {
		snprintf(err, errlen, "%s/%s: %s", r->root, rel,
		         rc == -ENOENT ? "missing (an interrupted backup)" :
		         rc == -ELOOP || rc == -EXDEV ? "a symbolic link: refused" : strerror(-rc));
		return rc == -ENOENT ? 1 : 2;
	}
	json_error_t je;
	json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	free(buf);
	if (!j) {
		snprintf(err, errlen, "%s/%s: damaged: %s (line %d)", r->root, rel, je.text, je.line);
		return 2;
	}
	rc = bk_doc_check(j, id, err, errlen);
	if (rc) {
		json_decref(j);
		return rc;
	}
	*doc = j;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int bk_list_ids(bk_repo *r, char ***ids, size_t *n_out, char *err, size_t errlen)
{
	*ids = NULL;
	*n_out = 0;
	int fd = bk_openat_beneath(r->dirfd, "backups", O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0) {
		snprintf(err, errlen, "%s/backups: %s", r->root, strerror(-fd));
		return 1;
	}
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		snprintf(err, errlen, "%s/backups: %s", r->root, strerror(errno));
		return 1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d))) {
		if (!bk_id_ok(e->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			char **t = realloc(names, cap * sizeof(*t));
			if (!t) {
				rc = 1;
				break;
			}
			names = t;
		}
		if (!(names[n] = strdup(e->d_name))) {
			rc = 1;
			break;
		}
		n++;
	}
	closedir(d);
	if (rc) {
		bk_ids_free(names, n);
		snprintf(err, errlen, "out of memory listing %s/backups", r->root);
		return 1;
	}
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	*ids = names;
	*n_out = n;
	return 0;
}

void bk_ids_free(char **ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

int bk_list(bk_repo *r, json_t **out, char *err, size_t errlen)
{
	*out = NULL;
	char **names;
	size_t n;
	if (bk_list_ids(r, &names, &n, err, errlen))
		return 1;
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		json_t *doc;
		char why[BK_ERR];
		if (bk_doc_load(r, names[i], &doc, why, sizeof(why)) != 0)
			doc = json_pack("{s:s, s:s, s:b, s:s}", "id", names[i], "status", "unreadable",
			                "verified", 0, "error", why);
		if (doc)
			json_array_append_new(arr, doc);
	}
	bk_ids_free(names, n);
	if (!arr)
		snprintf(err, errlen, "out of memory");
	*out = arr;
	return arr ? 0 : 1;
}

json_t *bk_list_find(json_t *list, const char *id)
{
	size_t i;
	json_t *d;
	json_array_foreach(list, i, d) {
		const char *x = bk_str(d, "id");
		if (x && strcmp(x, id) == 0)
			return d;
	}
	return NULL;
}

/* rm -r below dirfd without following symlinks. */
static int remove_tree(int pfd, const char *name)
{
	int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOTDIR || errno == ELOOP)
			return unlinkat(pfd, name, 0) == 0 ? 0 : -errno;
		return errno == ENOENT ? 0 : -errno;
	}
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) && !rc) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (e->d_type == DT_DIR)
			rc = remove_tree(dirfd(d), e->d_name);
		else if (unlinkat(dirfd(d), e->d_name, 0) != 0)
			rc = -errno;
	}
	closedir(d);
	if (!rc && unlinkat(pfd, name, AT_REMOVEDIR) != 0)
		rc = -errno;
	return rc;
}

int bk_dir_remove(bk_repo *r, const char *id, char *err, size_t errlen)
{
	if (!bk_id_ok(id)) {
		snprintf(err, errlen, "%s: not a backup id", id);
		return 2;
	}
	int bfd = bk_openat_beneath(r->dirfd, "backups", O_RDONLY | O_DIRECTORY, 0);
	if (bfd < 0) {
		snprintf(err, errlen, "%s/backups: %s", r->root, strerror(-bfd));
		return 1;
	}
	int rc = remove_tree(bfd, id);
	if (!rc)
		fsync(bfd);
	close(bfd);
	if (rc) {
		snprintf(err, errlen, "%s/backups/%s: cannot remove: %s", r->root, id, strerror(-rc));
		return 1;
	}
	return 0;
}

/* --------------------------------------------------------- manifest */

static int cmp_json_path(const void *a, const void *b)
{
	return strcmp(bk_str(*(json_t *const *)a, "path"), bk_str(*(json_t *const *)b, "path"));
}

int bk_manifest_save(bk_repo *r, const char *id, json_t *doc, char *err, size_t errlen)
{
	json_t *files = json_object_get(doc, "files");
	size_t n = json_array_size(files);
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	size_t cap = 64 + n * 160, len = 0;
	char *buf = malloc(cap);
	if (!v || !buf) {
		free(v);
		free(buf);
		snprintf(err, errlen, "out of memory");
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(files, i);
	qsort(v, n, sizeof(*v), cmp_json_path);
	for (size_t i = 0; i < n; i++) {
		const char *p = bk_str(v[i], "path"), *h = bk_str(v[i], "sha256");
		size_t need = strlen(p) + 70;
		if (len + need >= cap) {
			cap = (len + need) * 2;
			char *t = realloc(buf, cap);
			if (!t) {
				free(v);
				free(buf);
				snprintf(err, errlen, "out of memory");
				return 1;
			}
			buf = t;
		}
		len += (size_t)snprintf(buf + len, cap - len, "%s  %s\n", h ? h : "", p);
	}
	free(v);
	char path[4300];
	snprintf(path, sizeof(path), "%s/backups/%s/manifest.sha256", r->root, id);
	int rc = amb_durable_write(amb_vfs_posix(), path, buf, len);
	free(buf);
	if (rc) {
		snprintf(err, errlen, "%s: cannot write: %s", path, strerror(-rc));
		return 1;
	}
	return 0;
}

int bk_manifest_load(bk_repo *r, const char *id, json_t **out, char *err, size_t errlen)
{
	*out = NULL;
	char rel[128];
	snprintf(rel, sizeof(rel), "backups/%s/manifest.sha256", id);
	char *buf;
	size_t len;
	int rc = read_small(r->dirfd, rel, 256u << 20, &buf, &len);
	if (rc) {
		snprintf(err, errlen, "%s/%s: %s", r->root, rel,
		         rc == -ENOENT ? "missing" : strerror(-rc));
		return 1;
	}
	json_t *m = json_object();
	char *line = buf;
	int lineno = 0;
	rc = 0;
	while (*line) {
		lineno++;
		char *nl = strchr(line, '\n');
		if (!nl) {
			snprintf(err, errlen, "%s/%s:%d: the last line is cut short", r->root, rel, lineno);
			rc = 2;
			break;
		}
		*nl = '\0';
		char why[512];
		bool hex_ok = strlen(line) > 66 && line[64] == ' ' && line[65] == ' ';
		for (int i = 0; hex_ok && i < 64; i++)
			hex_ok = (line[i] >= '0' && line[i] <= '9') || (line[i] >= 'a' && line[i] <= 'f');
		if (!hex_ok || !bk_relpath_ok(line + 66, why, sizeof(why)) ||
		    json_object_get(m, line + 66)) {
			snprintf(err, errlen, "%s/%s:%d: malformed line%s", r->root, rel, lineno,
			         hex_ok && json_object_get(m, line + 66) ? " (path listed twice)" : "");
			rc = 2;
			break;
		}
		line[64] = '\0';
		json_object_set_new(m, line + 66, json_string(line));
		line = nl + 1;
	}
	free(buf);
	if (rc) {
		json_decref(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* ---------------------------------------------------------- copying */

static void to_hex(const unsigned char *d, char hex[65])
{
	static const char x[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		hex[2 * i] = x[d[i] >> 4];
		hex[2 * i + 1] = x[d[i] & 15];
	}
	hex[64] = '\0';
}

/*
 * The copy pipeline.  One thread per stage, so that on a machine with few
 * CPUs the costs of a copy overlap instead of adding up: the read (waiting
 * for the disk, then the kernel's copy into the buffer), the SHA-256 (and
 * the caller's page check) of the bytes, and the write.  In the profile of
 * the serial loop on the 2-vCPU bench VM (bench/ANALYSIS.md) SHA-256 took
 * about half of the copy's CPU time and the kernel's copies most of the
 * rest, all on one thread.
 *
 *   readers (PIPE_READERS threads)  claim chunk k in order, pread it into
 *                                   slot k % PIPE_SLOTS (four readers keep
 *                                   four reads in flight on a cold disk)
 *   the caller's thread             SHA-256 + check of chunk k, progress,
 *                                   strictly in file order
 *   the writer (one thread)         pwrite of chunk k at its offset, the
 *                                   early writeback every 64 MiB
 *
 * A slot goes FREE -> READING -> READ -> HASHED -> FREE, and only the
 * caller's thread moves it from READ, so what is written is exactly what
 * was hashed and checked.  The first error of any stage (a read or write
 * error, ENOSPC) is kept in err and stops every stage; the caller joins
 * the threads and returns it.  A short read ends the file: the chunks
 * after it are neither hashed nor written.  When a thread cannot be
 * started, and for a file of less than one chunk, the copy runs serially
 * on the caller's thread (serial_loop).
 *
 * With hooks->uncached (a backup) src and dst are read and written with
 * O_DIRECT where their filesystems allow it: the kernel then moves each
 * byte once per side (device to buffer, buffer to device) instead of
 * through a page cache, which on the bench VM cut amber's system time for
 * a 1 GiB backup from 1.0-1.3 s to 0.25-0.45 s, and a backup does not fill
 * the page cache with data nobody reads again.  Each file is still
 * fsynced.
 */
/* Four reads in flight per file: a fragmented file (the bench's databases
 * lie in ~8,600 extents each) reads faster the more of it is requested at
 * once.  Cold O_DIRECT reads of 4 MiB chunks of the two bench databases on
 * the AMD bench VM: 1.63-1.81 s with two ranges of each file in flight,
 * 1.46-1.62 s with four, 1.19-1.31 s with eight; `cat` 1.20-1.25 s
 * (bench/ANALYSIS.md, "Session 15").  A copy holds PIPE_SLOTS chunks,
 * 32 MiB, and bk_add_files runs up to BK_ADD_FILES_PARALLEL copies. */
#define PIPE_SLOTS 8
#define PIPE_READERS 4

enum { SLOT_FREE, SLOT_READING, SLOT_READ, SLOT_HASHED };

typedef struct pipe_slot {
	unsigned char *buf;
	size_t len;
	uint64_t k;
	int state;
} pipe_slot;

typedef struct copy_pipe {
	int src, dst;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pipe_slot slot[PIPE_SLOTS];
	uint64_t next_read;   /* the next chunk a reader claims */
	uint64_t nwrite;      /* chunks handed to the writer, once hashing ended */
	bool hash_done;       /* nwrite is final */
	bool eof;             /* a reader got a short read */
	int err;              /* the first -errno of any stage, 0 */
	bool err_dst;         /* ... and it was the writer's */
} copy_pipe;

static void pipe_fail(copy_pipe *p, int err)
{
	if (!p->err)
		p->err = err;
	pthread_cond_broadcast(&p->cv);
}

/* Switch fd to O_DIRECT; its old flags, or -1 when the filesystem does
 * not allow it (the copy then goes through the page cache). */
static int direct_on(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_DIRECT) || fcntl(fd, F_SETFL, fl | O_DIRECT) != 0)
		return -1;
	return fl;
}

/* pread until len bytes or the end of the file; bytes read or -errno.  A
 * direct read the filesystem refuses (EINVAL: alignment, or no O_DIRECT
 * support after all; also the read after a short last block) is retried
 * through the page cache. */
static ssize_t read_full(int fd, unsigned char *buf, size_t len, uint64_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EINVAL && (fcntl(fd, F_GETFL) & O_DIRECT) &&
		    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT) == 0)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* pwrite all of buf at off; 0 or -errno.  With O_DIRECT, the aligned
 * part goes direct and an unaligned tail (the end of the file) through the
 * page cache; a direct write the filesystem refuses (EINVAL) is retried
 * through the page cache. */
static int write_full(int fd, const unsigned char *buf, size_t len, uint64_t off)
{
	for (size_t done = 0; done < len;) {
		size_t want = len - done;
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0 && (fl & O_DIRECT) && ((off + done) % 4096 || want % 4096)) {
			if (want >= 4096 && (off + done) % 4096 == 0)
				want -= want % 4096;
			else if (fcntl(fd, F_SETFL, fl & ~O_DIRECT) != 0)
				return -errno;
		}
		ssize_t w = pwrite(fd, buf + done, want, (off_t)(off + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EINVAL && (fcntl(fd, F_GETFL) & O_DIRECT) &&
		    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT) == 0)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		done += (size_t)w;
	}
	return 0;
}

/* writeback of dst starts early, so the final fsync does not wait for
 * everything at once */
static void early_writeback(int dst, uint64_t off, size_t n)
{
	if (off % (64u << 20) < n)
		sync_file_range(dst, 0, (off_t)off, SYNC_FILE_RANGE_WRITE);
}

static void *pipe_reader(void *arg)
{
	copy_pipe *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		pipe_slot *s = &p->slot[p->next_read % PIPE_SLOTS];
		while (!p->err && !p->eof && s->state != SLOT_FREE) {
			pthread_cond_wait(&p->cv, &p->mu);
			s = &p->slot[p->next_read % PIPE_SLOTS];
		}
		if (p->err || p->eof)
			break;
		uint64_t k = p->next_read++;
		s->state = SLOT_READING;
		s->k = k;
		pthread_mutex_unlock(&p->mu);
		ssize_t n = read_full(p->src, s->buf, COPY_CHUNK, k * COPY_CHUNK);
		pthread_mutex_lock(&p->mu);
		if (n < 0) {
			pipe_fail(p, (int)n);
			break;
		}
		s->len = (size_t)n;
		s->state = SLOT_READ;
		if (s->len < COPY_CHUNK)
			p->eof = true;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void *pipe_writer(void *arg)
{
	copy_pipe *p = arg;
	for (uint64_t k = 0;; k++) {
		pipe_slot *s = &p->slot[k % PIPE_SLOTS];
		pthread_mutex_lock(&p->mu);
		while (!p->err && !(s->state == SLOT_HASHED && s->k == k) &&
		       !(p->hash_done && k >= p->nwrite))
			pthread_cond_wait(&p->cv, &p->mu);
		bool go = !p->err && s->state == SLOT_HASHED && s->k == k;
		pthread_mutex_unlock(&p->mu);
		if (!go)
			break;
		int rc = write_full(p->dst, s->buf, s->len, k * COPY_CHUNK);
		if (!rc)
			early_writeback(p->dst, k * COPY_CHUNK + s->len, s->len);
		pthread_mutex_lock(&p->mu);
		if (rc) {
			if (!p->err)
				p->err_dst = true;
			pipe_fail(p, rc);
			pthread_mutex_unlock(&p->mu);
			break;
		}
		s->state = SLOT_FREE;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
	return NULL;
}

/* One chunk's hash, check and progress, on the caller's thread. */
static void consume(struct sha256_ctx *ctx, const unsigned char *buf, size_t n, uint64_t off,
                    const bk_copy_hooks *h)
{
	if (ctx)
		sha256_update(ctx, n, buf);
	if (h && h->check)
		h->check(h->check_arg, buf, n, off);
	if (h && h->progress)
		h->progress(h->progress_arg, (uint64_t)n);
}

/* The serial loop (no threads): read, hash and check, write. */
static int serial_loop(int src, int dst, struct sha256_ctx *ctx, unsigned char *buf, uint64_t *len,
                       const bk_copy_hooks *h)
{
	uint64_t off = 0;
	for (;;) {
		ssize_t n = read_full(src, buf, COPY_CHUNK, off);
		if (n < 0)
			return (int)n;
		if (n == 0)
			break;
		consume(ctx, buf, (size_t)n, off, h);
		if (dst >= 0) {
			int rc = write_full(dst, buf, (size_t)n, off);
			if (rc) {
				if (h && h->dst_failed)
					*h->dst_failed = true;
				return rc;
			}
			early_writeback(dst, off + (uint64_t)n, (size_t)n);
		}
		off += (uint64_t)n;
		if ((size_t)n < COPY_CHUNK)
			break;
	}
	*len = off;
	return 0;
}

/* The caller's stage of the pipeline; 0 or the first error of any stage. */
static int pipe_hash(copy_pipe *p, struct sha256_ctx *ctx, uint64_t *len, const bk_copy_hooks *h)
{
	uint64_t off = 0, k;
	for (k = 0;; k++) {
		pipe_slot *s = &p->slot[k % PIPE_SLOTS];
		pthread_mutex_lock(&p->mu);
		while (!p->err && !(s->state == SLOT_READ && s->k == k))
			pthread_cond_wait(&p->cv, &p->mu);
		int err = p->err;
		pthread_mutex_unlock(&p->mu);
		if (err)
			break;
		size_t n = s->len;
		if (n)
			consume(ctx, s->buf, n, off, h);
		off += n;
		pthread_mutex_lock(&p->mu);
		s->state = n && p->dst >= 0 ? SLOT_HASHED : SLOT_FREE;
		if (n < COPY_CHUNK) {
			p->hash_done = true;
			p->nwrite = n ? k + 1 : k;
		}
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
		if (n < COPY_CHUNK)
			break;
	}
	*len = off;
	pthread_mutex_lock(&p->mu);
	if (!p->hash_done) {
		p->hash_done = true;
		p->nwrite = k;
	}
	pthread_cond_broadcast(&p->cv);
	int err = p->err;
	pthread_mutex_unlock(&p->mu);
	return err;
}

/* Run the pipeline; -EAGAIN when no thread could be started (nothing was
 * read yet: the caller runs the serial loop). */
static int pipe_run(int src, int dst, struct sha256_ctx *ctx, unsigned char *bufs, uint64_t *len,
                    const bk_copy_hooks *h)
{
	copy_pipe *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->src = src;
	p->dst = dst;
	for (int i = 0; i < PIPE_SLOTS; i++)
		p->slot[i].buf = bufs + (size_t)i * COPY_CHUNK;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	pthread_t rd[PIPE_READERS], wr;
	int nrd = 0;
	bool have_wr = false;
	int rc = 0;
	if (dst >= 0) {
		have_wr = pthread_create(&wr, NULL, pipe_writer, p) == 0;
		if (!have_wr)
			rc = -EAGAIN;
	}
	while (!rc && nrd < PIPE_READERS && pthread_create(&rd[nrd], NULL, pipe_reader, p) == 0)
		nrd++;
	if (!rc && nrd == 0)
		rc = -EAGAIN;
	if (rc) {
		/* stop what did start before it touched anything */
		pthread_mutex_lock(&p->mu);
		pipe_fail(p, rc);
		pthread_mutex_unlock(&p->mu);
	} else {
		rc = pipe_hash(p, ctx, len, h);
	}
	pthread_mutex_lock(&p->mu);
	if (rc)
		pipe_fail(p, rc);
	p->eof = true; /* the readers stop claiming chunks */
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < nrd; i++)
		pthread_join(rd[i], NULL);
	if (have_wr)
		pthread_join(wr, NULL);
	if (!rc)
		rc = p->err;
	if (rc && rc == p->err && p->err_dst && h && h->dst_failed)
		*h->dst_failed = true;
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
	return rc;
}

/*
 * Read src from offset 0, hash every byte (unless hex is NULL), hand every
 * chunk to the check hook, and write it to dst at the same offset unless
 * dst is -1 (hash only).
 */
static int hash_loop(int src, int dst, uint64_t *bytes, char hex[65], const bk_copy_hooks *h)
{
	struct sha256_ctx sha, *ctx = hex ? &sha : NULL;
	if (ctx)
		sha256_init(ctx);
	/* a file of less than one chunk is one read, one hash and one write:
	 * the pipeline's threads would overlap nothing (and bk_add_files()
	 * copies several such files at once instead) */
	struct stat st;
	bool small = fstat(src, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < COPY_CHUNK;
	/* aligned for O_DIRECT (a multiple of any logical block size) */
	unsigned char *bufs = amb_io_alloc((small ? 1 : (size_t)PIPE_SLOTS) * COPY_CHUNK);
	int rc = 0, src_fl = -1, dst_fl = -1;
	uint64_t len = 0;
	if (!bufs) {
		rc = -ENOMEM;
		goto out;
	}
	posix_fadvise(src, 0, 0, POSIX_FADV_SEQUENTIAL);
	/* a small file goes through the page cache: the verifier reads a
	 * backup's logs again right away, and there is little to keep out */
	if (h && h->uncached && dst >= 0 && !small) {
		src_fl = direct_on(src);
		dst_fl = direct_on(dst);
	}
	rc = small ? -EAGAIN : pipe_run(src, dst, ctx, bufs, &len, h);
	if (rc == -EAGAIN)
		rc = serial_loop(src, dst, ctx, bufs, &len, h);
	if (rc)
		goto out;
	if (ctx) {
		unsigned char md[SHA256_DIGEST_SIZE];
		sha256_digest(ctx, sizeof(md), md);
		to_hex(md, hex);
	}
	if (bytes)
		*bytes = len;
out:
	if (src_fl >= 0)
		fcntl(src, F_SETFL, src_fl);
	if (dst_fl >= 0)
		fcntl(dst, F_SETFL, dst_fl);
	free(bufs);
	return rc;
}

int bk_hash_fd(int fd, uint64_t *bytes, char hex[65], bk_progress_fn fn, void *arg)
{
	bk_copy_hooks h = {.progress = fn, .progress_arg = arg};
	return bk_hash_fd_hooks(fd, bytes, hex, &h);
}

int bk_hash_fd_hooks(int fd, uint64_t *bytes, char hex[65], const bk_copy_hooks *h)
{
	/* only what a read needs: no O_DIRECT, no write to fail */
	bk_copy_hooks c = {.progress = h->progress, .progress_arg = h->progress_arg,
	                   .check = h->check, .check_arg = h->check_arg};
	return hash_loop(fd, -1, bytes, hex, &c);
}

int bk_copy_fd(int src, int dst, uint64_t *bytes, char hex[65], bk_progress_fn fn, void *arg)
{
	bk_copy_hooks h = {.progress = fn, .progress_arg = arg};
	return bk_copy_fd_hooks(src, dst, bytes, hex, &h);
}

int bk_copy_fd_hooks(int src, int dst, uint64_t *bytes, char hex[65], const bk_copy_hooks *h)
{
	/* a reflink moves no data; the hash (and the check) then reads the
	 * clone once.  Otherwise one pass reads, hashes, checks and writes
	 * (the hash is of the bytes written). */
	int rc;
	struct stat st;
	if (ioctl(dst, FICLONE, src) == 0) {
		if (hex || (h && h->check)) {
			rc = hash_loop(dst, -1, bytes, hex, h);
		} else {
			/* no hash wanted: nothing to read */
			rc = fstat(dst, &st) == 0 ? 0 : -errno;
			if (!rc && bytes)
				*bytes = (uint64_t)st.st_size;
			if (!rc && h && h->progress)
				h->progress(h->progress_arg, (uint64_t)st.st_size);
		}
	} else {
		rc = hash_loop(src, dst, bytes, hex, h);
	}
	if (!rc && h && h->no_fsync) {
		sync_file_range(dst, 0, 0, SYNC_FILE_RANGE_WRITE);
	} else if (!rc && fsync(dst) != 0) {
		rc = -errno;
		if (h && h->dst_failed)
			*h->dst_failed = true;
	}
	return rc;
}

/*
 * job.c - progress, the requestor's event log, and adding and checking
 * the files of a backup (job.h).
 */
#include "backup/job.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/checksum.h"
#include "store/inspect.h"

void bk_progress_begin(bk_progress *p, bool on, const char *label, uint64_t total)
{
	p->on = on;
	p->label = label;
	p->total = total;
	p->done = 0;
	p->t0_ms = p->last_ms = bk_now_ms();
}

void bk_job_init(bk_job *j, bk_repo *repo, FILE *err, bool quiet)
{
	memset(j, 0, sizeof(*j));
	j->repo = repo;
	j->err = err;
	j->quiet = quiet;
	j->bdirfd = -1;
}

void bk_human(uint64_t b, char *out, size_t n)
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)b;
	int k = 0;
	while (v >= 1024 && k < 4) {
		v /= 1024;
		k++;
	}
	snprintf(out, n, k ? "%.1f %s" : "%.0f %s", v, u[k]);
}

void bk_writer_folder(json_t *wdoc, char *out, size_t n)
{
	const char *inst = bk_str(wdoc, "instance");
	snprintf(out, n, "%s.%.8s", bk_str(wdoc, "name"), *inst ? inst : "00000000");
}

static void progress_print(bk_progress *p, bool final)
{
	uint64_t now = bk_now_ms(), el = now - p->t0_ms;
	char a[32], b[32], r[32];
	bk_human(p->done, a, sizeof(a));
	bk_human(p->total, b, sizeof(b));
	double rate = el ? (double)p->done * 1000.0 / (double)el : 0;
	bk_human((uint64_t)rate, r, sizeof(r));
	if (final) {
		fprintf(stderr, "\r\033[K%s: %s in %.1f s, %s/s\n", p->label, a, (double)el / 1000.0, r);
		return;
	}
	if (p->total && rate > 0 && p->done < p->total) {
		double left = (double)(p->total - p->done) / rate;
		fprintf(stderr, "\r\033[K%s: %s of %s, %s/s, %.0f s left", p->label, a, b, r, left + 0.5);
	} else {
		fprintf(stderr, "\r\033[K%s: %s, %s/s", p->label, a, r);
	}
}

void bk_progress_add(void *arg, uint64_t bytes)
{
	bk_progress *p = arg;
	p->done += bytes;
	if (!p->on)
		return;
	uint64_t now = bk_now_ms();
	if (now - p->last_ms >= 200) {
		p->last_ms = now;
		progress_print(p, false);
	}
}

void bk_progress_end(bk_progress *p)
{
	if (p->on)
		progress_print(p, true);
}

void bk_msg(bk_job *j, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("amber: ", j->err);
	vfprintf(j->err, fmt, ap);
	fputc('\n', j->err);
	va_end(ap);
}

void bk_event(bk_job *j, int code, const char *severity, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!j->repo || j->repo->dirfd < 0)
		return;
	uint64_t ms = bk_now_ms();
	char ts[32];
	bk_time_str(ms / 1000, ts, sizeof(ts));
	json_t *e = json_pack("{s:I, s:s, s:i, s:s, s:s, s:s}", "time_ms", (json_int_t)ms, "time", ts,
	                      "code", code, "severity", severity, "backup", j->id, "message", msg);
	char *line = e ? json_dumps(e, JSON_COMPACT) : NULL;
	json_decref(e);
	if (!line)
		return;
	/* one write(2) of the whole line with O_APPEND: lines never interleave */
	int fd = openat(j->repo->dirfd, "events.log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
	                O_NOFOLLOW, 0640);
	if (fd >= 0) {
		size_t n = strlen(line);
		line[n] = '\n';
		if (write(fd, line, n + 1) < 0)
			fprintf(j->err, "amber: %s/events.log: %s\n", j->repo->root, strerror(errno));
		fdatasync(fd);
		close(fd);
	}
	free(line);
}

amb_backup_type bk_type_parse(const char *s)
{
	if (!s)
		return 0;
	if (!strcmp(s, "full"))
		return AMB_BACKUP_FULL;
	if (!strcmp(s, "copy"))
		return AMB_BACKUP_COPY;
	if (!strcmp(s, "incremental"))
		return AMB_BACKUP_INCREMENTAL;
	if (!strcmp(s, "differential"))
		return AMB_BACKUP_DIFFERENTIAL;
	return 0;
}

void bk_pagecheck_chunk(void *arg, const unsigned char *buf, size_t len, uint64_t off)
{
	bk_pagecheck *pc = arg;
	const uint32_t ps = pc->page_size;
	uint64_t pgno = off / ps;
	size_t whole = len / ps * ps;
	char why[256];
	for (size_t o = 0; o < whole; o += ps, pgno++) {
		uint64_t bit = 0;
		why[0] = '\0';
		int r = amb_page_check(buf + o, ps, (uint32_t)pgno, pc->scratch, NULL, &bit, why,
		                       sizeof(why));
		pc->pages++;
		if (r == AMB_CK_CORRECTED) {
			pc->corrected++;
		} else if (r == AMB_CK_DAMAGED) {
			if (!pc->damaged++) {
				pc->first_damaged = pgno;
				snprintf(pc->first_why, sizeof(pc->first_why), "%s", why);
			}
		}
	}
	if (len > whole) {
		/* only the last chunk can end inside a page */
		pc->pages++;
		if (!pc->damaged++) {
			pc->first_damaged = pgno;
			snprintf(pc->first_why, sizeof(pc->first_why),
			         "page is truncated (the file ends %zu bytes into it)", len - whole);
		}
	}
}

int bk_add_file(bk_job *j, const char *writer_dir, const char *writer, const char *component,
                const char *role, const char *src_path, const char *store_name,
                const char *target, uint32_t page_size, char *err, size_t errlen)
{
	char rel[4200], why[512];
	if (snprintf(rel, sizeof(rel), "data/%s/%s", writer_dir, store_name) >= (int)sizeof(rel) ||
	    !bk_relpath_ok(rel, why, sizeof(why))) {
		snprintf(err, errlen, "%s: cannot be stored in a backup: %s", src_path, why);
		return 1;
	}
	char dir[4200];
	snprintf(dir, sizeof(dir), "data/%s", writer_dir);
	int rc = bk_mkdirs_beneath(j->bdirfd, dir);
	if (rc) {
		snprintf(err, errlen, "%s/backups/%s/%s: %s", j->repo->root, j->id, dir, strerror(-rc));
		return 1;
	}
	int src = open(src_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (src < 0) {
		snprintf(err, errlen, "%s: %s", src_path, strerror(errno));
		return 1;
	}
	int dst = bk_openat_beneath(j->bdirfd, rel, O_RDWR | O_CREAT | O_EXCL, 0640);
	if (dst < 0) {
		snprintf(err, errlen, "%s/backups/%s/%s: %s", j->repo->root, j->id, rel, strerror(-dst));
		close(src);
		return 1;
	}
	uint64_t bytes = 0;
	char hex[65];
	bk_copy_hooks hooks = {.progress = bk_progress_add, .progress_arg = &j->prog,
	                       .uncached = true};
	bk_pagecheck pc = {.page_size = page_size, .first_damaged = UINT64_MAX};
	if (page_size) {
		pc.scratch = malloc(page_size);
		if (!pc.scratch) {
			close(src);
			close(dst);
			snprintf(err, errlen, "out of memory");
			return 1;
		}
		hooks.check = bk_pagecheck_chunk;
		hooks.check_arg = &pc;
	}
	rc = bk_copy_fd_hooks(src, dst, &bytes, hex, &hooks);
	close(src);
	close(dst);
	free(pc.scratch);
	if (rc) {
		snprintf(err, errlen, "copying %s into the backup: %s", src_path, strerror(-rc));
		return 1;
	}
	if (page_size) {
		if (!j->checked)
			j->checked = json_object();
		json_t *r = json_pack("{s:I, s:I, s:I, s:I, s:s}", "pages", (json_int_t)pc.pages,
		                      "damaged", (json_int_t)pc.damaged, "corrected",
		                      (json_int_t)pc.corrected, "first_damaged",
		                      (json_int_t)(pc.damaged ? pc.first_damaged : 0), "first_why",
		                      pc.first_why);
		if (!j->checked || !r || json_object_set_new(j->checked, rel, r) != 0) {
			snprintf(err, errlen, "out of memory");
			return 1;
		}
	}
	json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s}", "writer", writer,
	                      "component", component ? component : "", "role", role, "path", rel,
	                      "target", target, "source", src_path, "size", (json_int_t)bytes,
	                      "sha256", hex);
	if (!f) {
		snprintf(err, errlen, "out of memory");
		return 1;
	}
	json_array_append_new(json_object_get(j->doc, "files"), f);
	return 0;
}

int bk_check_file(bk_job *j, json_t *manifest, json_t *file, bool hash, char *err,
                  size_t errlen)
{
	const char *rel = json_string_value(json_object_get(file, "path"));
	const char *want = json_string_value(json_object_get(manifest, rel));
	if (!want) {
		snprintf(err, errlen, "backup %s: %s is not in the manifest", j->id, rel);
		return 1;
	}
	int fd = bk_openat_beneath(j->bdirfd, rel, O_RDONLY, 0);
	if (fd < 0) {
		snprintf(err, errlen, "backup %s: %s: %s", j->id, rel,
		         fd == -ENOENT ? "missing" : fd == -ELOOP || fd == -EXDEV ?
		         "a symbolic link or outside the backup: refused" : strerror(-fd));
		return 1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		snprintf(err, errlen, "backup %s: %s: not a regular file", j->id, rel);
		return 1;
	}
	json_int_t size = json_integer_value(json_object_get(file, "size"));
	if (!hash) {
		close(fd);
		if ((uint64_t)st.st_size != (uint64_t)size) {
			snprintf(err, errlen, "backup %s: %s: %llu bytes, the document says %lld", j->id,
			         rel, (unsigned long long)st.st_size, (long long)size);
			return 1;
		}
		return 0;
	}
	char hex[65];
	uint64_t bytes = 0;
	int rc = bk_hash_fd(fd, &bytes, hex, bk_progress_add, &j->prog);
	close(fd);
	if (rc) {
		snprintf(err, errlen, "backup %s: %s: %s", j->id, rel, strerror(-rc));
		return 1;
	}
	if (strcmp(hex, want) != 0) {
		snprintf(err, errlen, "backup %s: %s: SHA-256 does not match the manifest (the file "
		         "changed after the backup)", j->id, rel);
		return 1;
	}
	if ((uint64_t)size != bytes) {
		snprintf(err, errlen, "backup %s: %s: %llu bytes, the document says %lld", j->id, rel,
		         (unsigned long long)bytes, (long long)size);
		return 1;
	}
	return 0;
}

int bk_verify_files(bk_job *j, bool hash, char *err, size_t errlen)
{
	json_t *man = NULL;
	int rc = bk_manifest_load(j->repo, j->id, &man, err, errlen);
	if (rc)
		return 1;
	json_t *files = json_object_get(j->doc, "files");
	if (json_object_size(man) != json_array_size(files)) {
		snprintf(err, errlen, "backup %s: the manifest lists %zu files, the document %zu", j->id,
		         json_object_size(man), json_array_size(files));
		json_decref(man);
		return 1;
	}
	size_t i;
	json_t *f;
	json_array_foreach(files, i, f) {
		if (bk_check_file(j, man, f, hash, err, errlen)) {
			json_decref(man);
			return 1;
		}
	}
	json_decref(man);
	return 0;
}

/* fsync(2) of a directory below dirfd ("" = dirfd itself); 0 or -errno. */
static int sync_dir_at(int dirfd, const char *rel)
{
	int fd = *rel ? bk_openat_beneath(dirfd, rel, O_RDONLY | O_DIRECTORY, 0) : dup(dirfd);
	if (fd < 0)
		return *rel ? fd : -errno;
	int rc = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

int bk_sync_dirs(bk_job *j, char *err, size_t errlen)
{
	char rel[160];
	int rc = 0;
	size_t i;
	json_t *w;
	json_array_foreach(json_object_get(j->doc, "writers"), i, w) {
		char wdir[128];
		bk_writer_folder(w, wdir, sizeof(wdir));
		snprintf(rel, sizeof(rel), "data/%s", wdir);
		int r = sync_dir_at(j->bdirfd, rel);
		if (r && r != -ENOENT && !rc)
			rc = r;
	}
	snprintf(rel, sizeof(rel), "data");
	if (!rc)
		rc = sync_dir_at(j->bdirfd, rel);
	if (!rc)
		rc = sync_dir_at(j->bdirfd, "");
	if (rc)
		snprintf(err, errlen, "%s/backups/%s: fsync of its folders: %s", j->repo->root, j->id,
		         strerror(-rc));
	return rc ? 1 : 0;
}

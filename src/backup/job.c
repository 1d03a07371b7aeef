/*
 * job.c - progress, the requestor's event log, and adding and checking
 * the files of a backup (job.h).
 */
#include "backup/job.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/checksum.h"
#include "common/parallel.h"
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
	/* one write(2) of the whole line with O_APPEND: lines never interleave.
	 * Not fsynced, like amberd's event log: the record of a backup is its
	 * document (written durably); a line lost in a crash loses no backup */
	int fd = openat(j->repo->dirfd, "events.log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
	                O_NOFOLLOW, 0640);
	if (fd >= 0) {
		size_t n = strlen(line);
		line[n] = '\n';
		if (write(fd, line, n + 1) < 0)
			fprintf(j->err, "amber: %s/events.log: %s\n", j->repo->root, strerror(errno));
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

/* One file of a bk_add_files() batch: where it goes and how it came out. */
typedef struct add_slot {
	const bk_file_req *req;
	char rel[4200];
	uint64_t bytes;
	char hex[65];
	bk_pagecheck pc;
	int rc;              /* 0, or 1 with err set */
	char err[640];
	bool done;           /* add_one() ran (a claimed file) */
	bool created;        /* ... and made the file in the backup */
	struct stat src_st;  /* the source's fstat before the copy */
	bool src_changed;    /* its size or times differed after the copy */
} add_slot;

typedef struct add_batch {
	bk_job *j;
	add_slot *slots;
	size_t n;
	pthread_mutex_t mu;  /* next, failed, and j->prog */
	size_t next;         /* the next file a worker claims */
	bool failed;         /* a file failed: claim no more */
	bool pre;            /* a precopy: a failed file stops nothing */
	bool stop;           /* claim no more (bk_precopy_stop) */
} add_batch;

/* bk_progress_add() from any worker */
static void add_progress(void *arg, uint64_t bytes)
{
	add_batch *b = arg;
	pthread_mutex_lock(&b->mu);
	bk_progress_add(&b->j->prog, bytes);
	pthread_mutex_unlock(&b->mu);
}

/* a and b are the same file with the same contents as far as its inode
 * says: inode number, size, modification and change times (a write changes
 * both times; a btrfs snapshot keeps all four) */
static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void add_one(add_batch *b, add_slot *s)
{
	const bk_file_req *r = s->req;
	int src = open(r->src_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (src < 0) {
		snprintf(s->err, sizeof(s->err), "%s: %s", r->src_path, strerror(errno));
		s->rc = 1;
		return;
	}
	if (fstat(src, &s->src_st) != 0) {
		snprintf(s->err, sizeof(s->err), "%s: %s", r->src_path, strerror(errno));
		close(src);
		s->rc = 1;
		return;
	}
	int dst = bk_openat_beneath(b->j->bdirfd, s->rel, O_RDWR | O_CREAT | O_EXCL, 0640);
	if (dst < 0) {
		snprintf(s->err, sizeof(s->err), "%s/backups/%s/%s: %s", b->j->repo->root, b->j->id,
		         s->rel, strerror(-dst));
		close(src);
		s->rc = 1;
		return;
	}
	s->created = true;
	/* a precopy's file is fsynced after the snapshot (bk_precopy_sync_start):
	 * its flushes then do not queue with those of the sequence (the
	 * writer's log roll, the presync) on the same disk */
	bk_copy_hooks hooks = {.progress = add_progress, .progress_arg = b, .uncached = true,
	                       .no_fsync = b->pre};
	s->pc = (bk_pagecheck){.page_size = r->page_size, .first_damaged = UINT64_MAX};
	int rc = 0;
	if (r->page_size) {
		if (!(s->pc.scratch = amb_io_alloc(r->page_size)))
			rc = -ENOMEM;
		hooks.check = bk_pagecheck_chunk;
		hooks.check_arg = &s->pc;
	}
	if (!rc)
		rc = bk_copy_fd_hooks(src, dst, &s->bytes, s->hex, &hooks);
	/* a precopy's source must not have changed while it was read
	 * (bk_precopy_match compares the shadow's file with src_st) */
	struct stat after;
	if (!rc && b->pre && (fstat(src, &after) != 0 || !same_file(&after, &s->src_st) ||
	                      (uint64_t)after.st_size != s->bytes))
		s->src_changed = true;
	close(src);
	close(dst);
	free(s->pc.scratch);
	s->pc.scratch = NULL;
	if (rc) {
		snprintf(s->err, sizeof(s->err), "copying %s into the backup: %s", r->src_path,
		         strerror(-rc));
		s->rc = 1;
	}
}

static void *add_worker(void *arg)
{
	add_batch *b = arg;
	for (;;) {
		pthread_mutex_lock(&b->mu);
		/* a slot done before any worker started (precopied) is skipped;
		 * no worker writes a slot it has not claimed */
		while (b->next < b->n && b->slots[b->next].done)
			b->next++;
		size_t i = b->failed || b->stop ? b->n : b->next++;
		pthread_mutex_unlock(&b->mu);
		if (i >= b->n)
			return NULL;
		add_one(b, &b->slots[i]);
		b->slots[i].done = true;
		if (b->slots[i].rc && !b->pre) {
			pthread_mutex_lock(&b->mu);
			b->failed = true;
			pthread_mutex_unlock(&b->mu);
		}
	}
}

int bk_checked_put(bk_job *j, const char *rel, const bk_pagecheck *pc)
{
	if (!j->checked)
		j->checked = json_object();
	json_t *c = json_pack("{s:I, s:I, s:I, s:I, s:s}", "pages", (json_int_t)pc->pages,
	                      "damaged", (json_int_t)pc->damaged, "corrected",
	                      (json_int_t)pc->corrected, "first_damaged",
	                      (json_int_t)(pc->damaged ? pc->first_damaged : 0), "first_why",
	                      pc->first_why);
	if (!j->checked) {
		json_decref(c);
		return -ENOMEM;
	}
	/* set_new takes c, and drops it on failure */
	return c && json_object_set_new(j->checked, rel, c) == 0 ? 0 : -ENOMEM;
}

/* The results of a copied file into the document (and j->checked). */
static int add_record(bk_job *j, const char *writer, add_slot *s, char *err, size_t errlen)
{
	const bk_file_req *r = s->req;
	if (r->page_size && bk_checked_put(j, s->rel, &s->pc) != 0) {
		snprintf(err, errlen, "out of memory");
		return 1;
	}
	json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s}", "writer", writer,
	                      "component", r->component ? r->component : "", "role", r->role,
	                      "path", s->rel, "target", r->target, "source",
	                      r->pre ? r->pre->source : r->src_path, "size",
	                      (json_int_t)s->bytes, "sha256", s->hex);
	if (f && r->root)
		json_object_set_new(f, "root", json_string(r->root));
	if (f && r->pre)
		json_object_set_new(f, "read_before_snapshot", json_true());
	if (!f || json_array_append_new(json_object_get(j->doc, "files"), f) != 0) {
		snprintf(err, errlen, "out of memory");
		return 1;
	}
	return 0;
}

int bk_add_files(bk_job *j, const char *writer_dir, const char *writer,
                 const bk_file_req *reqs, size_t n, char *err, size_t errlen)
{
	char dir[4200], why[512];
	if (!n)
		return 0;
	add_slot *slots = calloc(n, sizeof(*slots));
	if (!slots) {
		snprintf(err, errlen, "out of memory");
		return 1;
	}
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		slots[i].req = &reqs[i];
		if (snprintf(slots[i].rel, sizeof(slots[i].rel), "data/%s/%s", writer_dir,
		             reqs[i].store_name) >= (int)sizeof(slots[i].rel) ||
		    !bk_relpath_ok(slots[i].rel, why, sizeof(why))) {
			snprintf(err, errlen, "%s: cannot be stored in a backup: %s", reqs[i].src_path,
			         why);
			rc = 1;
		}
	}
	snprintf(dir, sizeof(dir), "data/%s", writer_dir);
	int mk = rc ? 0 : bk_mkdirs_beneath(j->bdirfd, dir);
	if (mk) {
		snprintf(err, errlen, "%s/backups/%s/%s: %s", j->repo->root, j->id, dir, strerror(-mk));
		rc = 1;
	}
	if (rc) {
		free(slots);
		return rc;
	}

	/* a precopied file is in the backup already: its results are taken
	 * over, and the workers skip it (done) */
	for (size_t i = 0; i < n; i++) {
		if (!reqs[i].pre)
			continue;
		slots[i].bytes = reqs[i].pre->bytes;
		memcpy(slots[i].hex, reqs[i].pre->hex, sizeof(slots[i].hex));
		slots[i].done = true;
	}
	add_batch b = {.j = j, .slots = slots, .n = n};
	pthread_mutex_init(&b.mu, NULL);
	pthread_t th[BK_ADD_FILES_PARALLEL - 1];
	int nth = 0;
	while (nth < BK_ADD_FILES_PARALLEL - 1 && (size_t)nth < n - 1 &&
	       pthread_create(&th[nth], NULL, add_worker, &b) == 0)
		nth++;
	add_worker(&b); /* the caller's thread is one of the workers */
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&b.mu);

	/* the first failure in the order of reqs; else every result in that
	 * order, so the document does not depend on which copy ended first */
	for (size_t i = 0; i < n && !rc; i++) {
		if (slots[i].rc) {
			snprintf(err, errlen, "%s", slots[i].err);
			rc = 1;
		}
	}
	for (size_t i = 0; i < n && !rc; i++)
		rc = add_record(j, writer, &slots[i], err, errlen);
	free(slots);
	return rc;
}

/* ---- precopy (job.h, PRECOPY) */

/* How many precopied files bk_precopy_sync_start() fsyncs at once.  Every
 * fsync ends in a flush of the repository's device (on xfs one is issued
 * even when the log has nothing to force); flushes requested while one is
 * in flight are merged by the block layer into the next, so fsyncs issued
 * together cost about as much as one. */
#define PRECOPY_SYNC_PARALLEL 8
#define SYNC_NOT_TRIED 1

struct bk_precopy {
	add_batch b;
	add_slot *slots;
	bk_file_req *reqs;     /* src_path and store_name owned */
	bk_precopied *res;
	bool *matched;
	size_t n;
	char dir[4200];        /* data/<writer_dir> */
	pthread_t th[BK_ADD_FILES_PARALLEL];
	int nth;
	bool stopped;
	/* bk_precopy_sync_start(): the fsyncs, several at once */
	int *sync_rc;          /* per file: 0 synced, -errno, or SYNC_NOT_TRIED */
	amb_par par;
	bool syncing;          /* par's threads run */
	bool synced;           /* sync_rc holds every result */
};

int bk_precopy_start(bk_job *j, const char *writer_dir, const bk_file_req *reqs, size_t n,
                     bk_precopy **out)
{
	char why[512];
	*out = NULL;
	if (!n)
		return -ENOENT;
	bk_precopy *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->n = n;
	p->slots = calloc(n, sizeof(*p->slots));
	p->reqs = calloc(n, sizeof(*p->reqs));
	p->res = calloc(n, sizeof(*p->res));
	p->matched = calloc(n, sizeof(*p->matched));
	p->sync_rc = calloc(n, sizeof(*p->sync_rc));
	int rc = p->slots && p->reqs && p->res && p->matched && p->sync_rc ? 0 : -ENOMEM;
	for (size_t i = 0; i < n && !rc; i++) {
		char *src = strdup(reqs[i].src_path), *name = strdup(reqs[i].store_name);
		p->reqs[i] = (bk_file_req){.component = "", .role = "log", .src_path = src,
		                           .store_name = name, .target = name};
		p->slots[i].req = &p->reqs[i];
		if (!src || !name)
			rc = -ENOMEM;
		else if (snprintf(p->slots[i].rel, sizeof(p->slots[i].rel), "data/%s/%s", writer_dir,
		                  name) >= (int)sizeof(p->slots[i].rel) ||
		         !bk_relpath_ok(p->slots[i].rel, why, sizeof(why)))
			rc = -EINVAL;
	}
	snprintf(p->dir, sizeof(p->dir), "data/%s", writer_dir);
	if (!rc)
		rc = bk_mkdirs_beneath(j->bdirfd, p->dir);
	if (rc) {
		p->stopped = true;
		bk_precopy_free(p);
		return rc;
	}
	p->b = (add_batch){.j = j, .slots = p->slots, .n = n, .pre = true};
	pthread_mutex_init(&p->b.mu, NULL);
	while (p->nth < BK_ADD_FILES_PARALLEL && (size_t)p->nth < n &&
	       pthread_create(&p->th[p->nth], NULL, add_worker, &p->b) == 0)
		p->nth++;
	if (!p->nth) {
		pthread_mutex_destroy(&p->b.mu);
		p->stopped = true;
		bk_precopy_free(p);
		return -EAGAIN;
	}
	*out = p;
	return 0;
}

void bk_precopy_stop(bk_precopy *p, bool finish)
{
	if (!p || p->stopped)
		return;
	pthread_mutex_lock(&p->b.mu);
	p->b.stop = !finish;
	pthread_mutex_unlock(&p->b.mu);
	for (int i = 0; i < p->nth; i++)
		pthread_join(p->th[i], NULL);
	pthread_mutex_destroy(&p->b.mu);
	p->stopped = true;
}

/* fsync a precopied file (by its path below the backup's folder) */
static int precopy_fsync(bk_precopy *p, size_t i)
{
	int fd = bk_openat_beneath(p->b.j->bdirfd, p->slots[i].rel, O_RDONLY, 0);
	int r = fd < 0 ? fd : fsync(fd) == 0 ? 0 : -errno;
	if (fd >= 0)
		close(fd);
	return r;
}

static void sync_one(void *arg, size_t i)
{
	bk_precopy *p = arg;
	if (p->sync_rc[i] == SYNC_NOT_TRIED)
		p->sync_rc[i] = precopy_fsync(p, i);
}

void bk_precopy_sync_start(bk_precopy *p)
{
	if (!p || !p->stopped || p->syncing || p->synced)
		return;
	/* only the files copied whole from an unchanged source can match */
	size_t pending = 0;
	for (size_t i = 0; i < p->n; i++) {
		add_slot *s = &p->slots[i];
		p->sync_rc[i] = s->done && !s->rc && !s->src_changed ? SYNC_NOT_TRIED : -EAGAIN;
		pending += p->sync_rc[i] == SYNC_NOT_TRIED;
	}
	/* no thread: bk_precopy_match() fsyncs each file itself */
	int want = pending < PRECOPY_SYNC_PARALLEL ? (int)pending : PRECOPY_SYNC_PARALLEL;
	p->syncing = want > 0 && amb_par_start(&p->par, p->n, want, sync_one, p) > 0;
}

/* wait for bk_precopy_sync_start()'s threads */
static void precopy_sync_wait(bk_precopy *p)
{
	if (!p->syncing)
		return;
	amb_par_wait(&p->par);
	p->syncing = false;
	p->synced = true;
}

const bk_precopied *bk_precopy_match(bk_precopy *p, const char *store_name,
                                     const char *shadow_path)
{
	if (!p || !p->stopped)
		return NULL;
	precopy_sync_wait(p);
	for (size_t i = 0; i < p->n; i++) {
		add_slot *s = &p->slots[i];
		if (strcmp(p->reqs[i].store_name, store_name) != 0)
			continue;
		if (!s->done || s->rc || s->src_changed || p->matched[i])
			return NULL;
		/* the same file, untouched since it was read: a btrfs snapshot
		 * keeps inode numbers, sizes and times */
		struct stat st;
		if (stat(shadow_path, &st) != 0 || !S_ISREG(st.st_mode) ||
		    !same_file(&st, &s->src_st) || (uint64_t)st.st_size != s->bytes)
			return NULL;
		/* durable before a document lists it (its copy only started the
		 * writeback); a failed fsync leaves it to the copy from the shadow,
		 * which meets the error again and reports it */
		if ((p->synced ? p->sync_rc[i] : precopy_fsync(p, i)) != 0)
			return NULL;
		p->matched[i] = true;
		p->res[i].bytes = s->bytes;
		memcpy(p->res[i].hex, s->hex, sizeof(p->res[i].hex));
		p->res[i].source = p->reqs[i].src_path;
		return &p->res[i];
	}
	return NULL;
}

size_t bk_precopy_discard(bk_precopy *p)
{
	size_t kept = 0;
	if (!p)
		return 0;
	bk_precopy_stop(p, false);
	precopy_sync_wait(p);
	int dfd = -1;
	for (size_t i = 0; i < p->n; i++) {
		if (p->matched[i]) {
			kept++;
			continue;
		}
		if (!p->slots[i].created)
			continue;
		if (dfd < 0)
			dfd = bk_openat_beneath(p->b.j->bdirfd, p->dir, O_RDONLY | O_DIRECTORY, 0);
		if (dfd >= 0)
			unlinkat(dfd, p->reqs[i].store_name, 0);
		p->slots[i].created = false;
	}
	if (dfd >= 0)
		close(dfd);
	return kept;
}

void bk_precopy_free(bk_precopy *p)
{
	if (!p)
		return;
	bk_precopy_stop(p, false);
	precopy_sync_wait(p);
	for (size_t i = 0; p->reqs && i < p->n; i++) {
		free((char *)p->reqs[i].src_path);
		free((char *)p->reqs[i].store_name);
	}
	free(p->slots);
	free(p->reqs);
	free(p->sync_rc);
	free(p->res);
	free(p->matched);
	free(p);
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
	/* and the folder's own name: bk_dir_create() did not sync it */
	if (!rc)
		rc = sync_dir_at(j->repo->dirfd, "backups");
	if (rc)
		snprintf(err, errlen, "%s/backups/%s: fsync of its folders: %s", j->repo->root, j->id,
		         strerror(-rc));
	return rc ? 1 : 0;
}

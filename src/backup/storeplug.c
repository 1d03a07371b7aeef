/*
 * storeplug.c - the amber-store plug-in: which files of an amber-store
 * instance a backup takes, how they are verified (job.h).
 *
 * LOG RANGES (docs/repository.md, "amber-store"): a snapshot backup holds
 * the logs from the checkpoint generation K of the shadow up to the
 * generation C of the shadow's current log `<prefix>.log`, which is stored
 * as `<prefix><C>.log`.  That last file is a prefix of what generation C
 * holds later ("gen_high_partial": true), so:
 *   - the next incremental starts again at C (the chains overlap by one
 *     generation; a restore lays the newer copy over the older);
 *   - roll-forward reads the instance's own, longer copy of C (the engine
 *     does that when the create times match);
 *   - the writer's truncation keeps C (ams_backup_complete).
 * A streamed backup's range ends with a complete generation (the engine
 * rolls the log first), so the next incremental starts after it.
 * Incremental: the logs since the repository's newest verified full or
 * incremental of the same instance (the parent); differential: since its
 * newest verified full.  Every generation of the range must still be on
 * the server (in the shadow); a missing one means the chain has a gap and
 * a full backup is needed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "amber/store.h"
#include "backup/job.h"
#include "common/checksum.h"
#include "common/vfs.h"
#include "store/dbfile.h"
#include "store/inspect.h"
#include "store/log.h"

int bk_store_loc_from_md(const amb_writer_md *md, bk_store_loc *loc, char *err, size_t errlen)
{
	memset(loc, 0, sizeof(*loc));
	for (size_t i = 0; i < md->n_components; i++) {
		const amb_component *c = &md->components[i];
		if (c->n_files < 1 || !c->checkpoint || loc->ndb == 16) {
			snprintf(err, errlen, "writer %s: component %s does not look like an amber-store "
			         "database (files, checkpoint)", md->name, c->name);
			return 1;
		}
		const char *dir = c->files[0].path;
		if (!loc->dir[0])
			snprintf(loc->dir, sizeof(loc->dir), "%s", dir);
		else if (strcmp(loc->dir, dir) != 0) {
			snprintf(err, errlen, "writer %s: databases in two directories (%s, %s)", md->name,
			         loc->dir, dir);
			return 1;
		}
		const char *b = strrchr(c->checkpoint, '/');
		b = b ? b + 1 : c->checkpoint;
		if (strlen(b) != 7 || strcmp(b + 3, ".chk") != 0) {
			snprintf(err, errlen, "writer %s: checkpoint %s is not <prefix>.chk", md->name,
			         c->checkpoint);
			return 1;
		}
		snprintf(loc->prefix, sizeof(loc->prefix), "%.3s", b);
		if (snprintf(loc->dbs[loc->ndb], sizeof(loc->dbs[0]), "%s", c->files[0].pattern) >= 64 ||
		    !bk_name_ok(loc->dbs[loc->ndb]) || !strstr(loc->dbs[loc->ndb], ".edb")) {
			snprintf(err, errlen, "writer %s: component %s: %s is not a database file name",
			         md->name, c->name, c->files[0].pattern);
			return 1;
		}
		snprintf(loc->comps[loc->ndb], sizeof(loc->comps[0]), "%s", c->name);
		loc->ndb++;
	}
	if (!loc->ndb) {
		snprintf(err, errlen, "writer %s has no databases", md->name);
		return 1;
	}
	return 0;
}

static void sig_hex(const amb_sig *s, char *out, size_t n)
{
	char *p = out;
	for (int i = 0; i < 16 && (size_t)(p - out) + 3 < n; i++)
		p += sprintf(p, "%02x", s->random[i]);
	snprintf(p, n - (size_t)(p - out), "-%llu", (unsigned long long)s->time);
}

static uint32_t jget_u32(json_t *o, const char *k)
{
	return (uint32_t)json_integer_value(json_object_get(o, k));
}

/* Start generation of a backup that follows parent_w ("store" inside). */
static uint32_t after_parent(json_t *parent_store)
{
	uint32_t high = jget_u32(parent_store, "gen_high");
	return json_is_true(json_object_get(parent_store, "gen_high_partial")) ? high : high + 1;
}

static void components_init(json_t *wdoc, const bk_store_loc *loc)
{
	json_t *comps = json_array();
	for (int d = 0; d < loc->ndb; d++)
		json_array_append_new(comps, json_pack("{s:s, s:s, s:b}", "name", loc->comps[d],
		                                       "database", loc->dbs[d], "success", 0));
	json_object_set_new(wdoc, "components", comps);
}

static int cmp_gen(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int bk_store_precopy_start(bk_job *j, json_t *wdoc, const bk_store_loc *loc,
                           amb_backup_type type, json_t *parent_w, bk_precopy **out)
{
	*out = NULL;
	if (type != AMB_BACKUP_INCREMENTAL && type != AMB_BACKUP_DIFFERENTIAL)
		return -EINVAL;
	json_t *ps = json_object_get(parent_w, "store");
	if (!ps)
		return -EINVAL;
	uint32_t low = after_parent(ps);
	/* only a btrfs snapshot keeps the files' inodes and times, which
	 * bk_precopy_match() needs; with another provider every precopied
	 * file would be copied again from the shadow */
	struct statfs sf;
	if (statfs(loc->dir, &sf) != 0)
		return -errno;
	if (sf.f_type != BTRFS_SUPER_MAGIC)
		return -EOPNOTSUPP;
	/* the archived generations from low on now in the live directory;
	 * the current log (<prefix>.log) is not one of them */
	DIR *d = opendir(loc->dir);
	if (!d)
		return -errno;
	size_t n = 0, cap = 0;
	uint32_t *gens = NULL;
	struct dirent *e;
	int rc = 0;
	while ((e = readdir(d)) != NULL) {
		uint32_t g = amb_log_parse_name(e->d_name, loc->prefix);
		if (!g || g < low)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			uint32_t *ng = realloc(gens, cap * sizeof(*gens));
			if (!ng) {
				rc = -ENOMEM;
				break;
			}
			gens = ng;
		}
		gens[n++] = g;
	}
	closedir(d);
	if (!rc && !n)
		rc = -ENOENT;
	/* oldest first, as the copy from the shadow goes */
	if (!rc)
		qsort(gens, n, sizeof(*gens), cmp_gen);
	char (*src)[PATH_MAX + 64] = rc ? NULL : calloc(n, sizeof(*src));
	char (*name)[32] = rc ? NULL : calloc(n, sizeof(*name));
	bk_file_req *reqs = rc ? NULL : calloc(n, sizeof(*reqs));
	if (!rc && (!src || !name || !reqs))
		rc = -ENOMEM;
	for (size_t i = 0; !rc && i < n; i++) {
		snprintf(name[i], sizeof(name[i]), "%s%08X.log", loc->prefix, gens[i]);
		amb_log_path(src[i], sizeof(src[i]), loc->dir, loc->prefix, gens[i]);
		reqs[i] = (bk_file_req){.component = "", .role = "log", .src_path = src[i],
		                        .store_name = name[i], .target = name[i]};
	}
	if (!rc) {
		char wdir[128];
		bk_writer_folder(wdoc, wdir, sizeof(wdir));
		rc = bk_precopy_start(j, wdir, reqs, n, out);
	}
	free(reqs);
	free(name);
	free(src);
	free(gens);
	return rc;
}

int bk_store_backup_snapshot(bk_job *j, json_t *wdoc, const bk_store_loc *loc,
                             const char *shadow_dir, amb_backup_type type, json_t *parent_w,
                             bk_precopy *pre, char *err, size_t errlen)
{
	amb_vfs *v = amb_vfs_posix();
	const char *wname = json_string_value(json_object_get(wdoc, "name"));
	char path[PATH_MAX + 64], wdir[128];
	bk_writer_folder(wdoc, wdir, sizeof(wdir));

	/* the shadow's current log: its generation C ends the range */
	amb_loghdr lh;
	amb_log_path(path, sizeof(path), shadow_dir, loc->prefix, 0);
	if (amb_loghdr_load(v, path, &lh) != 0) {
		snprintf(err, errlen, "%s: cannot read the current log of the shadow: %s", path,
		         ams_errmsg());
		return 1;
	}
	uint32_t high = lh.gen, low;
	/* the databases' headers: signature and page size */
	amb_dbhdr h0;
	memset(&h0, 0, sizeof(h0));
	uint32_t page_size[16];
	for (int d = 0; d < loc->ndb; d++) {
		snprintf(path, sizeof(path), "%s/%s", shadow_dir, loc->dbs[d]);
		int fd = v->open(v, path, O_RDONLY, 0);
		amb_dbhdr h;
		int rc = fd < 0 ? fd : amb_dbhdr_load(v, fd, path, &h, NULL);
		if (fd >= 0)
			v->close(v, fd);
		if (rc) {
			snprintf(err, errlen, "%s: cannot read the database header: %s", path,
			         fd < 0 ? strerror(-fd) : ams_errmsg());
			return 1;
		}
		page_size[d] = h.page_size;
		if (d == 0)
			h0 = h;
		else if (!amb_sig_eq(&h.sign_log, &h0.sign_log)) {
			snprintf(err, errlen, "%s belongs to another instance than %s", path, loc->dbs[0]);
			return 1;
		}
	}
	char sig[64];
	sig_hex(&h0.sign_log, sig, sizeof(sig));
	if (type == AMB_BACKUP_FULL || type == AMB_BACKUP_COPY) {
		amb_chk chk;
		snprintf(path, sizeof(path), "%s/%s.chk", shadow_dir, loc->prefix);
		if (amb_chk_load(v, path, &chk, NULL, NULL) != 0) {
			snprintf(err, errlen, "%s: cannot read the checkpoint of the shadow: %s", path,
			         ams_errmsg());
			return 1;
		}
		low = chk.gen; /* the oldest position any database needs */
	} else {
		json_t *ps = json_object_get(parent_w, "store");
		const char *psig = json_string_value(json_object_get(ps, "log_signature"));
		if (!psig || strcmp(psig, sig) != 0) {
			snprintf(err, errlen, "writer %s: the instance's log signature differs from the "
			         "one of its last full backup in this repository (the instance was "
			         "re-created): a full backup is needed", wname);
			return 2;
		}
		low = after_parent(ps);
		if (low > high) {
			snprintf(err, errlen, "writer %s: the previous backup already holds generation %u",
			         wname, high);
			return 1;
		}
	}
	/* every generation of the range must be in the shadow */
	for (uint32_t g = low; g < high; g++) {
		amb_log_path(path, sizeof(path), shadow_dir, loc->prefix, g);
		if (access(path, F_OK) != 0) {
			snprintf(err, errlen, "writer %s: log generation %u (0x%08X) is no longer on the "
			         "server: the log chain since the last backup has a gap, so a full "
			         "backup is needed", wname, g, g);
			return type == AMB_BACKUP_FULL || type == AMB_BACKUP_COPY ? 1 : 2;
		}
	}
	json_object_set_new(wdoc, "store", json_pack("{s:s, s:s, s:i, s:i, s:i, s:b, s:s, s:s}",
	                    "dir", loc->dir, "prefix", loc->prefix, "page_size", (int)h0.page_size,
	                    "gen_low", (json_int_t)low, "gen_high", (json_int_t)high,
	                    "gen_high_partial", 1, "log_signature", sig, "method", "snapshot"));
	json_t *dbs = json_array();
	for (int d = 0; d < loc->ndb; d++)
		json_array_append_new(dbs, json_string(loc->dbs[d]));
	json_object_set_new(json_object_get(wdoc, "store"), "databases", dbs);
	components_init(wdoc, loc);

	/* the files, in the document's order: databases, checkpoint (full and
	 * copy), then the logs low..high (high is the shadow's current log,
	 * stored under its generation's name); copied together */
	typedef struct fname {
		char src[PATH_MAX + 64];
		char name[32];
	} fname;
	size_t nmax = (size_t)loc->ndb + 1 + (size_t)(high - low) + 1, n = 0;
	fname *names = calloc(nmax, sizeof(*names));
	bk_file_req *reqs = calloc(nmax, sizeof(*reqs));
	if (!names || !reqs) {
		free(names);
		free(reqs);
		snprintf(err, errlen, "out of memory");
		return 1;
	}
	if (type == AMB_BACKUP_FULL || type == AMB_BACKUP_COPY) {
		for (int d = 0; d < loc->ndb; d++, n++) {
			snprintf(names[n].src, sizeof(names[n].src), "%s/%s", shadow_dir, loc->dbs[d]);
			reqs[n] = (bk_file_req){.component = loc->comps[d], .role = "database",
			                        .src_path = names[n].src, .store_name = loc->dbs[d],
			                        .target = loc->dbs[d], .page_size = page_size[d]};
		}
		snprintf(names[n].name, sizeof(names[n].name), "%s.chk", loc->prefix);
		snprintf(names[n].src, sizeof(names[n].src), "%s/%s", shadow_dir, names[n].name);
		reqs[n] = (bk_file_req){.component = "", .role = "checkpoint", .src_path = names[n].src,
		                        .store_name = names[n].name, .target = names[n].name};
		n++;
	}
	for (uint32_t g = low; g <= high; g++, n++) {
		snprintf(names[n].name, sizeof(names[n].name), "%s%08X.log", loc->prefix, g);
		amb_log_path(names[n].src, sizeof(names[n].src), shadow_dir, loc->prefix,
		             g == high ? 0 : g);
		reqs[n] = (bk_file_req){.component = "", .role = "log", .src_path = names[n].src,
		                        .store_name = names[n].name, .target = names[n].name};
		/* an archived generation read from the live directory while the
		 * shadow was made, when the shadow's file is that same file */
		if (g < high)
			reqs[n].pre = bk_precopy_match(pre, names[n].name, names[n].src);
	}
	/* what was precopied but not matched gives way to the shadow's copy */
	size_t kept = bk_precopy_discard(pre);
	json_object_set_new(json_object_get(wdoc, "store"), "logs_read_before_snapshot",
	                    json_integer((json_int_t)kept));
	int rc = bk_add_files(j, wdir, wname, reqs, n, err, errlen);
	free(names);
	free(reqs);
	return rc;
}

/* ------------------------------------------------------------- verify */

typedef struct vctx {
	FILE *err;
	char first[512];
	uint32_t corrected_pages;
} vctx;

static void on_page(void *arg, uint32_t pgno, int result, const char *why, uint64_t bit)
{
	vctx *c = arg;
	(void)bit;
	if (result == AMB_CK_CORRECTED) {
		c->corrected_pages++;
		return;
	}
	if (!c->first[0])
		snprintf(c->first, sizeof(c->first), "page %u: %s", pgno, why);
}

static void on_problem(void *arg, uint32_t gen, int error, const char *msg)
{
	vctx *c = arg;
	(void)gen;
	if (error && !c->first[0])
		snprintf(c->first, sizeof(c->first), "%s", msg);
}

/*
 * The verdict on a database whose pages were checked while it was copied
 * (ck: its entry of j->checked): those results, and of the copy in the
 * repository only its header copies, for the page count (a clean database
 * must hold every page its header counts, as amb_db_check() requires).
 * 0, or AMS_ECORRUPT with first set.
 */
static int copied_db_check(amb_vfs *v, const char *path, json_t *ck, uint64_t *pages,
                           uint64_t *damaged, uint64_t *corrected, char *first, size_t flen)
{
	*pages = (uint64_t)json_integer_value(json_object_get(ck, "pages"));
	*damaged = (uint64_t)json_integer_value(json_object_get(ck, "damaged"));
	*corrected = (uint64_t)json_integer_value(json_object_get(ck, "corrected"));
	if (*damaged)
		snprintf(first, flen, "page %llu: %s",
		         (unsigned long long)json_integer_value(json_object_get(ck, "first_damaged")),
		         json_string_value(json_object_get(ck, "first_why")));
	int fd = v->open(v, path, O_RDONLY, 0);
	amb_dbhdr h;
	int rc = fd < 0 ? AMS_EIO : amb_dbhdr_load(v, fd, path, &h, NULL);
	if (fd >= 0)
		v->close(v, fd);
	if (rc) {
		if (!*damaged)
			snprintf(first, flen, "%s", fd < 0 ? strerror(-fd) : ams_errmsg());
		(*damaged)++;
		return AMS_ECORRUPT;
	}
	if (h.page_count > *pages &&
	    (h.state == AMB_DBSTATE_CLEAN || h.state == AMB_DBSTATE_JUST_CREATED)) {
		if (!*damaged)
			snprintf(first, flen, "page %llu: missing: the file ends before page %llu but "
			         "the header counts %u pages", (unsigned long long)*pages,
			         (unsigned long long)*pages, h.page_count);
		(*damaged)++;
	}
	return *damaged ? AMS_ECORRUPT : 0;
}

int bk_store_verify(bk_job *j, json_t *wdoc, char *err, size_t errlen)
{
	amb_vfs *v = amb_vfs_posix();
	char wdir[128], dir[PATH_MAX];
	bk_writer_folder(wdoc, wdir, sizeof(wdir));
	json_t *st = json_object_get(wdoc, "store");
	const char *prefix = json_string_value(json_object_get(st, "prefix"));
	uint32_t low = jget_u32(st, "gen_low"), high = jget_u32(st, "gen_high");
	/* the verifiers read by path: resolve the folder once, refusing links */
	char rel[256];
	snprintf(rel, sizeof(rel), "data/%s", wdir);
	int fd = bk_openat_beneath(j->bdirfd, rel, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0) {
		snprintf(err, errlen, "backup %s: %s: %s", j->id, rel, strerror(-fd));
		return 1;
	}
	close(fd);
	snprintf(dir, sizeof(dir), "%s/backups/%s/%s", j->repo->root, j->id, rel);
	int failed = 0;
	json_t *comps = json_object_get(wdoc, "components");
	const char *type = json_string_value(json_object_get(j->doc, "type"));
	bool has_dbs = type && (!strcmp(type, "full") || !strcmp(type, "copy"));

	/* the logs first: every component needs them */
	vctx lc;
	memset(&lc, 0, sizeof(lc));
	amb_logdir_report lr;
	amb_logdir_cb cb = {NULL, on_problem, &lc};
	int lrc = amb_logdir_check(v, dir, prefix, low, &lr, &cb);
	char logmsg[600] = "";
	if (lrc == 0 && (lr.gen_first != low || lr.gen_last != high)) {
		snprintf(logmsg, sizeof(logmsg), "logs %u..%u found, the backup needs %u..%u",
		         lr.gen_first, lr.gen_last, low, high);
		lrc = 1;
	} else if (lrc) {
		snprintf(logmsg, sizeof(logmsg), "%s", lc.first[0] ? lc.first : ams_errmsg());
	}
	size_t i;
	json_t *c;
	json_array_foreach(comps, i, c) {
		char msg[800] = "";
		bool ok = lrc == 0;
		uint64_t pages = 0, corrected = 0;
		if (!ok)
			snprintf(msg, sizeof(msg), "logs: %s", logmsg);
		if (ok && has_dbs) {
			const char *db = json_string_value(json_object_get(c, "database"));
			char path[PATH_MAX + 80];
			snprintf(path, sizeof(path), "%s/%s", dir, db);
			vctx dc;
			memset(&dc, 0, sizeof(dc));
			char drel[400];
			snprintf(drel, sizeof(drel), "%s/%s", rel, db);
			json_t *ck = json_object_get(j->checked, drel);
			uint64_t damaged = 0, fsize = 0;
			int rc;
			if (ck) {
				rc = copied_db_check(v, path, ck, &pages, &damaged, &corrected, dc.first,
				                     sizeof(dc.first));
				fsize = pages * jget_u32(st, "page_size");
			} else {
				amb_db_check_report rep;
				rc = amb_db_check(v, path, &rep, on_page, &dc);
				pages = rep.pages;
				corrected = rep.corrected;
				damaged = rep.damaged;
				fsize = rep.file_size;
			}
			if (rc) {
				ok = false;
				snprintf(msg, sizeof(msg), "%s: %llu damaged page%s, first %s", db,
				         (unsigned long long)damaged, damaged == 1 ? "" : "s",
				         dc.first[0] ? dc.first : ams_errmsg());
			} else if (corrected) {
				snprintf(msg, sizeof(msg), "%s: %llu single-bit error%s corrected", db,
				         (unsigned long long)corrected, corrected == 1 ? "" : "s");
			}
			j->prog.done += fsize;
		}
		json_object_set_new(c, "success", json_boolean(ok));
		json_object_set_new(c, "pages", json_integer((json_int_t)pages));
		json_object_set_new(c, "corrected", json_integer((json_int_t)corrected));
		json_object_set_new(c, "message", json_string(msg));
		if (!ok && !failed) {
			snprintf(err, errlen, "writer %s, component %s: %s",
			         json_string_value(json_object_get(wdoc, "name")),
			         json_string_value(json_object_get(c, "name")), msg);
			failed = 1;
		}
	}
	json_object_set_new(st, "log_bytes", json_integer((json_int_t)lr.bytes));
	return failed;
}

/*
 * filesplug.c - the generic plug-in, verifier "none": a writer whose files
 * amber copies whole from the shadow and hashes, without looking inside
 * them (job.h).  amber-test-writer declares it; so would a writer for an
 * application whose files need no deeper check than their hashes.
 *
 * WHAT IS COPIED: every regular file of the selected components' file sets
 * (path, fnmatch(3) pattern on the file name, recursive or not) as it is in
 * the shadow, except files matching one of the writer's excludes.
 * Symbolic links, devices, FIFOs and sockets are never followed nor copied;
 * those whose names match are counted in the component's "skipped".  A
 * file that two file sets match is copied once, for the first.
 *
 * EVERY BACKUP TYPE COPIES EVERY FILE WHOLE: such a writer keeps no log
 * that an incremental could hold instead of its files.  An incremental or
 * differential still needs a verified full of the instance in the
 * repository (design.md section 3), and a restore of a chain lays down
 * each file's newest copy.
 *
 * IN THE DOCUMENT (docs/repository.md, "Generic writers"): the writer's
 * entry has "roots", the file-set directories, and "components"
 * [{name, success, files, bytes, skipped, message}]; each of its files has
 * role "file", "root" (one of "roots") and "target", its path below that
 * root.  The copy is stored as data/<writer folder>/<NNNNNN>-<file name>
 * (the number keeps names unique; the file name is left out when it is not
 * a safe name).
 *
 * VERIFICATION: each copy is read back from the repository and its SHA-256
 * compared with the one taken while it was read from the shadow.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/job.h"

/* Is path dir or below it?  Both absolute and normalized. */
static bool under(const char *path, const char *dir)
{
	size_t l = strlen(dir);
	if (l == 1)
		return true; /* "/" */
	return strncmp(path, dir, l) == 0 && (path[l] == '/' || path[l] == '\0');
}

/* Does one of md's excludes take the file name in directory dir? */
static bool excluded(const amb_writer_md *md, const char *dir, const char *name)
{
	for (size_t i = 0; i < md->n_excludes; i++) {
		const amb_fileset *e = &md->excludes[i];
		if ((strcmp(dir, e->path) == 0 || (e->recursive && under(dir, e->path))) &&
		    fnmatch(e->pattern, name, 0) == 0)
			return true;
	}
	return false;
}

static bool comp_selected(const amb_component *c, const char *comp)
{
	return !comp || !comp[0] || strcmp(c->name, comp) == 0;
}

int bk_files_roots(const amb_writer_md *md, const char *comp, char (*roots)[PATH_MAX], size_t max,
                   size_t *n, char *err, size_t errlen)
{
	*n = 0;
	for (size_t q = 0; q < md->n_components; q++) {
		const amb_component *c = &md->components[q];
		if (!comp_selected(c, comp))
			continue;
		for (size_t f = 0; f < c->n_files; f++) {
			const char *p = c->files[f].path;
			if (!p || p[0] != '/' || strlen(p) >= PATH_MAX) {
				snprintf(err, errlen, "writer %s: component %s: file set path %s is not "
				         "absolute", md->name, c->name, p ? p : "(none)");
				return 1;
			}
			bool dup = false;
			for (size_t k = 0; k < *n; k++)
				dup |= strcmp(roots[k], p) == 0;
			if (dup)
				continue;
			if (*n == max) {
				snprintf(err, errlen, "writer %s: more than %zu file set directories", md->name,
				         max);
				return 1;
			}
			snprintf(roots[(*n)++], PATH_MAX, "%s", p);
		}
	}
	return 0;
}

/* The files found so far: requests for bk_add_files() and the strings
 * they point to. */
typedef struct fwalk {
	bk_job *j;
	const amb_writer_md *md;
	bk_file_req *reqs;
	size_t n, cap;
	json_t *seen;     /* original path -> true */
	uint64_t skipped; /* of the file set being walked */
} fwalk;

static void fwalk_free(fwalk *w)
{
	for (size_t i = 0; i < w->n; i++) {
		free((char *)w->reqs[i].src_path);
		free((char *)w->reqs[i].store_name);
		free((char *)w->reqs[i].target);
	}
	free(w->reqs);
	json_decref(w->seen);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_req(fwalk *w, const char *comp, const char *root, const char *src,
                   const char *rel, const char *name)
{
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		bk_file_req *r = realloc(w->reqs, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		w->reqs = r;
		w->cap = cap;
	}
	char store[300];
	if (bk_name_ok(name) && strlen(name) <= 200)
		snprintf(store, sizeof(store), "%06zu-%s", w->n + 1, name);
	else
		snprintf(store, sizeof(store), "%06zu", w->n + 1);
	bk_file_req *r = &w->reqs[w->n];
	memset(r, 0, sizeof(*r));
	r->component = comp;
	r->role = "file";
	r->root = root;
	r->src_path = strdup(src);
	r->store_name = strdup(store);
	r->target = strdup(rel);
	if (!r->src_path || !r->store_name || !r->target) {
		free((char *)r->src_path);
		free((char *)r->store_name);
		free((char *)r->target);
		return -ENOMEM;
	}
	w->n++;
	return 0;
}

/*
 * The files of file set fs below sdir, its place in the shadow: rel is the
 * directory's path below the root ("" for the root itself), orig its
 * original path.  0, or 1 with err set.
 */
static int walk(fwalk *w, const amb_fileset *fs, const char *comp, const char *sdir,
                const char *orig, const char *rel, int depth, char *err, size_t errlen)
{
	if (depth > 256) {
		snprintf(err, errlen, "%s: directories nested deeper than 256 levels", orig);
		return 1;
	}
	int fd = open(sdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s (in the shadow: %s): %s", orig, sdir, strerror(errno));
		return 1;
	}
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		snprintf(err, errlen, "%s: %s", sdir, strerror(errno));
		return 1;
	}
	/* in name order, so that a document does not depend on readdir's */
	char **names = NULL;
	size_t nn = 0, cap = 0;
	struct dirent *e;
	int rc = 0;
	errno = 0;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (nn == cap) {
			cap = cap ? cap * 2 : 32;
			char **nw = realloc(names, cap * sizeof(*nw));
			if (!nw) {
				rc = -ENOMEM;
				break;
			}
			names = nw;
		}
		if (!(names[nn] = strdup(e->d_name))) {
			rc = -ENOMEM;
			break;
		}
		nn++;
	}
	if (!rc && errno)
		rc = -errno;
	if (rc) {
		snprintf(err, errlen, "%s: %s", sdir, strerror(-rc));
		rc = 1;
		goto out;
	}
	if (nn)
		qsort(names, nn, sizeof(*names), name_cmp);
	for (size_t i = 0; i < nn && !rc; i++) {
		const char *name = names[i];
		char src[PATH_MAX], o[PATH_MAX], r[PATH_MAX];
		if (snprintf(src, sizeof(src), "%s/%s", sdir, name) >= (int)sizeof(src) ||
		    snprintf(o, sizeof(o), "%s%s%s", orig, strcmp(orig, "/") ? "/" : "", name) >=
		            (int)sizeof(o) ||
		    snprintf(r, sizeof(r), "%s%s%s", rel, rel[0] ? "/" : "", name) >= (int)sizeof(r)) {
			snprintf(err, errlen, "%s/%s: path too long", orig, name);
			rc = 1;
			break;
		}
		struct stat st;
		if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			snprintf(err, errlen, "%s: %s", o, strerror(errno));
			rc = 1;
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			if (fs->recursive)
				rc = walk(w, fs, comp, src, o, r, depth + 1, err, errlen);
			continue;
		}
		if (fnmatch(fs->pattern, name, 0) != 0 || excluded(w->md, orig, name))
			continue;
		if (!S_ISREG(st.st_mode)) {
			w->skipped++;
			continue;
		}
		if (json_object_get(w->seen, o))
			continue; /* matched by an earlier file set */
		if (json_object_set_new(w->seen, o, json_true()) != 0 ||
		    add_req(w, comp, fs->path, src, r, name) != 0) {
			snprintf(err, errlen, "out of memory");
			rc = 1;
		}
	}
out:
	for (size_t i = 0; i < nn; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}

int bk_files_backup(bk_job *j, json_t *wdoc, const amb_writer_md *md, const char *comp,
                    bk_map_fn map, void *ctx, char *err, size_t errlen)
{
	fwalk w = {.j = j, .md = md, .seen = json_object()};
	json_t *comps = json_array(), *roots = json_array();
	int rc = 0;
	if (!w.seen || !comps || !roots) {
		snprintf(err, errlen, "out of memory");
		rc = 1;
		goto out;
	}
	for (size_t q = 0; q < md->n_components && !rc; q++) {
		const amb_component *c = &md->components[q];
		if (!comp_selected(c, comp))
			continue;
		size_t first = w.n;
		w.skipped = 0;
		for (size_t f = 0; f < c->n_files && !rc; f++) {
			const amb_fileset *fs = &c->files[f];
			char sp[PATH_MAX];
			if (!map(ctx, fs->path, sp, sizeof(sp))) {
				snprintf(err, errlen, "writer %s: component %s: %s is in no shadow of the set",
				         md->name, c->name, fs->path);
				rc = 1;
				break;
			}
			bool have = false;
			size_t k;
			json_t *r;
			json_array_foreach(roots, k, r)
				have |= strcmp(json_string_value(r), fs->path) == 0;
			if (!have)
				json_array_append_new(roots, json_string(fs->path));
			rc = walk(&w, fs, c->name, sp, fs->path, "", 0, err, errlen);
		}
		if (rc)
			break;
		json_array_append_new(comps, json_pack("{s:s, s:b, s:I, s:I, s:I}", "name", c->name,
		                                       "success", 0, "files", (json_int_t)(w.n - first),
		                                       "bytes", (json_int_t)0, "skipped",
		                                       (json_int_t)w.skipped));
	}
	if (rc)
		goto out;
	char wdir[128];
	bk_writer_folder(wdoc, wdir, sizeof(wdir));
	if ((rc = bk_add_files(j, wdir, md->name, w.reqs, w.n, err, errlen)) != 0)
		goto out;
	/* the bytes of each component, from the files just recorded */
	size_t i, k;
	json_t *f, *cj;
	json_array_foreach(json_object_get(j->doc, "files"), i, f) {
		if (strcmp(bk_str(f, "writer"), md->name))
			continue;
		json_array_foreach(comps, k, cj) {
			if (strcmp(bk_str(cj, "name"), bk_str(f, "component")) == 0) {
				json_int_t b = json_integer_value(json_object_get(cj, "bytes"));
				json_object_set_new(cj, "bytes",
				                    json_integer(b + json_integer_value(json_object_get(f, "size"))));
			}
		}
	}
	json_object_set(wdoc, "roots", roots);
	json_object_set(wdoc, "components", comps);
out:
	json_decref(comps);
	json_decref(roots);
	fwalk_free(&w);
	return rc;
}

int bk_files_verify(bk_job *j, json_t *wdoc, char *err, size_t errlen)
{
	json_t *man = NULL;
	if (bk_manifest_load(j->repo, j->id, &man, err, errlen))
		return 1;
	const char *wname = bk_str(wdoc, "name");
	json_t *comps = json_object_get(wdoc, "components");
	size_t i, k;
	json_t *cj, *f;
	json_array_foreach(comps, k, cj) {
		json_object_set_new(cj, "success", json_true());
		json_object_del(cj, "message");
	}
	int bad = 0;
	json_array_foreach(json_object_get(j->doc, "files"), i, f) {
		if (strcmp(bk_str(f, "writer"), wname))
			continue;
		char e1[BK_ERR];
		if (bk_check_file(j, man, f, true, e1, sizeof(e1)) == 0)
			continue;
		if (!bad)
			snprintf(err, errlen, "writer %s: %s", wname, e1);
		bad = 1;
		json_array_foreach(comps, k, cj) {
			if (strcmp(bk_str(cj, "name"), bk_str(f, "component")) == 0 &&
			    json_is_true(json_object_get(cj, "success"))) {
				json_object_set_new(cj, "success", json_false());
				json_object_set_new(cj, "message", json_string(e1));
			}
		}
	}
	json_decref(man);
	return bad;
}

/*
 * backup.c - `amber backup`: the requestor side of design.md section 3.
 *
 *   1. open (create) the repository and take its lock; a second backup of
 *      the same repository gets "busy" (exit 3)
 *   2. amberd session: open with the type, gather the writers, select
 *      (--writer W[/C] = "verify": it must take part; default: every writer
 *      that supports the type), add the volumes that hold their files
 *   3. the backup folder with backup.json "incomplete" (durable) before
 *      anything is copied
 *   4. snapshot (prepare-snapshot, freeze, commit, thaw, post-snapshot run
 *      inside amberd); copy each writer's files from the shadow, hashing
 *      them into the manifest
 *   5. verify each writer's copy with its plug-in (amber-store: every page,
 *      every log of the range)
 *   6. backup.json "complete" + verified true/false, durable: the backup
 *      counts from here on
 *   7. only then session-backup-complete with per-component success: the
 *      writers record the backup and truncate logs (full, incremental) only
 *      for components that succeeded; an unverified backup sends failure,
 *      so nothing is truncated
 *   8. close the session (non-persistent shadows are released)
 * A killed `amber backup` leaves "incomplete" (never verified), sends no
 * backup-complete (amberd aborts the set when the requestor goes), so
 * nothing is truncated.  The id is printed on the last line of stdout.
 *
 * --method stream skips amberd's snapshot: the writer's serve process
 * streams verified pages and then the logs (src/backup/stream), and is
 * told the outcome directly.
 */
#include "backup/backup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "amber/client.h"
#include "backup/job.h"

#ifndef BTRFS_SUPER_MAGIC
#define BTRFS_SUPER_MAGIC 0x9123683E
#endif

/* A selected writer of this backup. */
typedef struct selw {
	const amb_writer_info *info;
	char comp[AMB_NAME_BUF];   /* "" = whole writer */
	bool named;                /* given with --writer */
	json_t *wdoc;              /* its entry in doc.writers */
	bk_store_loc loc;
	bool is_store;
	bool is_files;             /* verifier "none": the generic plug-in */
	char (*roots)[PATH_MAX];   /* its file-set directories (AMB_MAX_FILESETS) */
	size_t nroots;
	void *stream;              /* an open stream connection */
	bk_precopy *pre;           /* archived logs copied while the shadow is made */
	bool ok;
} selw;

/* Metadata as the JSON of the protocol (through the strict encoder). */
static json_t *md_to_json(const amb_writer_md *md)
{
	amb_msg m;
	memset(&m, 0, sizeof(m));
	m.kind = AMB_MSG_REGISTER;
	m.id = 1;
	m.u.reg.metadata = *md;
	char *s;
	size_t n;
	if (amb_msg_encode(&m, &s, &n) != 0)
		return NULL;
	json_t *j = json_loadb(s, n, 0, NULL);
	free(s);
	json_t *md_j = json_incref(json_object_get(j, "metadata"));
	json_decref(j);
	return md_j;
}

int bk_volume_of(const char *dir, char *out, size_t n)
{
	struct statfs sf;
	if (statfs(dir, &sf) != 0)
		return -errno;
	snprintf(out, n, "%s", dir);
	if ((unsigned long)sf.f_type != (unsigned long)BTRFS_SUPER_MAGIC)
		return 0;
	/* walk up to the subvolume root (inode 256) */
	for (;;) {
		struct stat st;
		if (stat(out, &st) != 0)
			return -errno;
		if (st.st_ino == 256 || strcmp(out, "/") == 0)
			return 0;
		char *slash = strrchr(out, '/');
		if (!slash)
			return 0;
		if (slash == out)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
}

/* Where path appears in the shadow set, or NULL. */
static const char *shadow_path(const amb_snapshot_set *set, const char *path, char *out, size_t n)
{
	const amb_shadow *best = NULL;
	size_t best_len = 0;
	for (size_t i = 0; i < set->n_shadows; i++) {
		const char *v = set->shadows[i].volume;
		size_t l = strlen(v);
		if (strncmp(path, v, l) == 0 && (path[l] == '/' || path[l] == '\0' || l == 1) &&
		    l >= best_len) {
			best = &set->shadows[i];
			best_len = l;
		}
	}
	if (!best)
		return NULL;
	snprintf(out, n, "%s%s", best->path, path + (best_len == 1 ? 0 : best_len));
	return out;
}

/* shadow_path() as a bk_map_fn */
static const char *map_shadow(void *ctx, const char *path, char *out, size_t n)
{
	return shadow_path(ctx, path, out, n);
}

/* Does backup document d qualify as the parent of a backup of writer
 * instance of this type: verified; for incremental a full or incremental,
 * for differential a full; it holds that instance.  Its writer entry to
 * *parent_w. */
static bool parent_ok(json_t *d, const char *instance, amb_backup_type type, json_t **parent_w)
{
	if (!json_is_true(json_object_get(d, "verified")))
		return false;
	const char *t = json_string_value(json_object_get(d, "type"));
	if (!t || !(strcmp(t, "full") == 0 || (type == AMB_BACKUP_INCREMENTAL &&
	                                       strcmp(t, "incremental") == 0)))
		return false;
	size_t k;
	json_t *w;
	json_array_foreach(json_object_get(d, "writers"), k, w) {
		const char *in = json_string_value(json_object_get(w, "instance"));
		if (in && strcmp(in, instance) == 0 &&
		    (json_object_get(w, "store") || json_object_get(w, "roots"))) {
			*parent_w = w;
			return true;
		}
	}
	return false;
}

/* The repository's documents, read newest first and only as far as a
 * parent search needs: a backup's start then does not grow with the
 * number of backups in the repository (each document is parsed and
 * checked: ~0.3 ms). */
typedef struct doc_scan {
	bk_repo *repo;
	char **ids;
	size_t n, next;  /* ids[next - 1] is the next to load */
	json_t *loaded;  /* newest first; they live as long as the scan */
} doc_scan;

/* The newest verified backup usable as parent (parent_ok), or NULL. */
static json_t *find_parent(doc_scan *sc, const char *instance, amb_backup_type type,
                           json_t **parent_w)
{
	*parent_w = NULL;
	size_t i;
	json_t *d;
	json_array_foreach(sc->loaded, i, d)
		if (parent_ok(d, instance, type, parent_w))
			return d;
	while (sc->next > 0) {
		char why[BK_ERR];
		if (bk_doc_load(sc->repo, sc->ids[--sc->next], &d, why, sizeof(why)) != 0)
			continue; /* unreadable: never a parent */
		if (json_array_append_new(sc->loaded, d))
			return NULL;
		if (parent_ok(d, instance, type, parent_w))
			return d;
	}
	return NULL;
}

static int add_selection(selw *sel, size_t *nsel, const amb_writer_info *wi, const char *comp,
                         bool named)
{
	for (size_t i = 0; i < *nsel; i++)
		if (sel[i].info == wi) {
			if (!comp[0] || strcmp(sel[i].comp, comp) != 0)
				sel[i].comp[0] = '\0'; /* whole writer */
			return 0;
		}
	if (*nsel == AMB_MAX_WRITERS)
		return -1;
	memset(&sel[*nsel], 0, sizeof(sel[0]));
	sel[*nsel].info = wi;
	snprintf(sel[*nsel].comp, sizeof(sel[0].comp), "%s", comp);
	sel[*nsel].named = named;
	(*nsel)++;
	return 0;
}

/* One protocol message kept in a script's metadata document. */
static int md_msg(json_t *doc, const char *key, amb_msg_kind kind, amb_msg *out, char *err,
                  size_t errlen)
{
	json_t *j = json_object_get(doc, key);
	char *s = json_is_object(j) ? json_dumps(j, JSON_COMPACT) : NULL;
	char e[256] = "missing";
	int rc = s ? amb_msg_decode(s, strlen(s), out, e, sizeof(e)) : -EINVAL;
	free(s);
	if (rc == 0 && out->kind != kind) {
		amb_msg_free(out);
		rc = -EINVAL;
		snprintf(e, sizeof(e), "not a %s", amb_msg_kind_name(kind));
	}
	if (rc)
		snprintf(err, errlen, "\"%s\": %s", key, e);
	return rc;
}

/*
 * --metadata FILE: the shadow copy set an `amber script` took, as its
 * metadata document says (docs/script.md): the writers it gathered and the
 * set.  The type must be the script's (begin backup: full, else copy).
 */
static int load_script_md(const char *path, amb_backup_type type, json_t **doc, amb_msg *wl,
                          amb_msg *setm, char *err, size_t errlen)
{
	json_error_t je;
	char e[BK_ERR];
	*doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!*doc) {
		snprintf(err, errlen, "--metadata %s: %s", path, je.text);
		return 2;
	}
	const char *fmt = json_string_value(json_object_get(*doc, "format"));
	const char *t = json_string_value(json_object_get(*doc, "backup_type"));
	if (!fmt || strcmp(fmt, "amber-script-metadata") ||
	    json_integer_value(json_object_get(*doc, "version")) != 1 || !t) {
		snprintf(err, errlen, "--metadata %s: not an amber script metadata document "
		         "(version 1)", path);
		return 2;
	}
	if (strcmp(t, amb_backup_type_name(type)) != 0) {
		snprintf(err, errlen, "--metadata %s: the script's shadow copy set is for a %s "
		         "backup (begin backup makes it full), not %s", path, t,
		         amb_backup_type_name(type));
		return 2;
	}
	if (md_msg(*doc, "writer_list", AMB_MSG_WRITER_LIST, wl, e, sizeof(e)) ||
	    md_msg(*doc, "snapshot_set", AMB_MSG_SNAPSHOT_SET, setm, e, sizeof(e))) {
		snprintf(err, errlen, "--metadata %s: %s", path, e);
		return 2;
	}
	return 0;
}

/* Did writer md take part in the script's set?  amberd's snapshot-set
 * answer says (its "writers": the instances that took part).  A document
 * written before amberd said so: the script's selections (writer verify
 * makes the choice explicit, writer exclude leaves out), else: it has files
 * in a shadow of the set. */
static bool script_takes_part(json_t *doc, const amb_snapshot_set *set, const amb_writer_md *md)
{
	if (json_object_get(json_object_get(doc, "snapshot_set"), "writers")) {
		for (size_t i = 0; i < set->n_writers; i++)
			if (strcmp(set->writers[i], md->instance) == 0)
				return true;
		return false;
	}
	bool explicit = false, chosen = false;
	size_t k;
	json_t *sj;
	json_array_foreach(json_object_get(doc, "selections"), k, sj) {
		const char *w = json_string_value(json_object_get(sj, "writer"));
		const char *m = json_string_value(json_object_get(sj, "mode"));
		const char *cp = json_string_value(json_object_get(sj, "component"));
		bool same = w && strcmp(w, md->name) == 0;
		if (m && strcmp(m, "exclude") == 0) {
			if (same && (!cp || !*cp))
				return false;
			continue;
		}
		explicit = true;
		chosen |= same;
	}
	if (explicit)
		return chosen;
	char sp[PATH_MAX];
	for (size_t q = 0; q < md->n_components; q++)
		for (size_t f = 0; f < md->components[q].n_files; f++)
			if (shadow_path(set, md->components[q].files[f].path, sp, sizeof(sp)))
				return true;
	return false;
}

int bk_run_backup(const bk_backup_opts *o)
{
	char err[BK_ERR * 2] = "";
	bk_repo repo;
	bk_job j;
	bk_job_init(&j, &repo, o->err, o->quiet);
	int rc = bk_repo_open(o->repo, true, &repo, err, sizeof(err));
	if (rc) {
		fprintf(o->err, "amber: backup: %s\n", err);
		return rc;
	}
	amb_client *c = NULL;
	amb_msg wl, setm;
	memset(&wl, 0, sizeof(wl));
	memset(&setm, 0, sizeof(setm));
	json_t *mdoc = NULL;
	doc_scan scan = {.repo = &repo, .loaded = json_array()};
	selw *sel = calloc(AMB_MAX_WRITERS, sizeof(*sel));
	size_t nsel = 0;
	amb_session_ref sref;
	memset(&sref, 0, sizeof(sref));
	bool session = false;
	/* the status the document on disk holds */
	enum { DOC_NONE, DOC_INCOMPLETE, DOC_FAILED, DOC_COMPLETE } on_disk = DOC_NONE;
	const char *tname = amb_backup_type_name(o->type);

	if (!sel) {
		rc = 1;
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	if ((rc = bk_repo_lock(&repo, false, err, sizeof(err))) != 0)
		goto out;
	if (!scan.loaded) {
		rc = 1;
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	if ((rc = bk_list_ids(&repo, &scan.ids, &scan.n, err, sizeof(err))) != 0)
		goto out;
	scan.next = scan.n;
	bk_new_id(j.id);

	/* 2: the session and the writers (or the script's set) */
	if (o->metadata) {
		if ((rc = load_script_md(o->metadata, o->type, &mdoc, &wl, &setm, err,
		                         sizeof(err))) != 0)
			goto out;
		goto have_writers;
	}
	rc = amb_client_connect(o->socket, AMB_ROLE_REQUESTOR, "amber-backup", &c);
	if (rc) {
		snprintf(err, sizeof(err), "cannot reach amberd at %s: %s", amb_socket_path(o->socket),
		         amb_client_last_error());
		rc = rc < 0 ? (rc == -ECONNREFUSED || rc == -ENOENT ? 3 : 1) : rc;
		goto out;
	}
	amb_session_open so;
	memset(&so, 0, sizeof(so));
	so.mode = AMB_SESSION_BACKUP;
	so.backup_type = o->type;
	if (o->method == BK_METHOD_STREAM) {
		/* no snapshot: only the writer list is needed */
		rc = amb_req_list_writers(c, &wl);
	} else {
		rc = amb_req_session_open(c, &so, &sref);
		if (!rc) {
			session = true;
			rc = amb_req_gather(c, sref.session, &wl);
		}
	}
	if (rc) {
		snprintf(err, sizeof(err), "amberd: %s", amb_client_errmsg(c));
		rc = rc < 0 ? 1 : rc;
		goto out;
	}
have_writers:;
	const amb_writer_list *wls = &wl.u.writers;
	if (o->n_writers) {
		for (size_t i = 0; i < o->n_writers; i++) {
			char wname[AMB_NAME_BUF * 2 + 2], *comp = "";
			snprintf(wname, sizeof(wname), "%s", o->writers[i]);
			char *slash = strchr(wname, '/');
			if (slash) {
				*slash = '\0';
				comp = slash + 1;
			}
			bool found = false;
			for (size_t k = 0; k < wls->n_writers; k++) {
				const amb_writer_info *wi = &wls->writers[k];
				if (strcmp(wi->metadata.name, wname) != 0 &&
				    strcmp(wi->metadata.instance, wname) != 0)
					continue;
				found = true;
				if (!(wi->metadata.backup_types & AMB_BACKUP_BIT(o->type))) {
					snprintf(err, sizeof(err), "writer %s does not support %s backups",
					         wi->metadata.name, tname);
					rc = 2;
					goto out;
				}
				if (comp[0]) {
					bool have = false;
					for (size_t q = 0; q < wi->metadata.n_components; q++)
						have |= strcmp(wi->metadata.components[q].name, comp) == 0;
					if (!have) {
						snprintf(err, sizeof(err), "writer %s has no component %s",
						         wi->metadata.name, comp);
						rc = 2;
						goto out;
					}
				}
				if (mdoc && !script_takes_part(mdoc, &setm.u.sset, &wi->metadata)) {
					snprintf(err, sizeof(err), "writer %s took no part in the script's "
					         "shadow copy set", wi->metadata.name);
					rc = 2;
					goto out;
				}
				add_selection(sel, &nsel, wi, comp, true);
			}
			if (!found) {
				snprintf(err, sizeof(err), "no writer %s is registered with amberd (see "
				         "`amber list writers`)", wname);
				rc = 2;
				goto out;
			}
		}
	} else {
		for (size_t k = 0; k < wls->n_writers; k++) {
			const amb_writer_info *wi = &wls->writers[k];
			if (mdoc && !script_takes_part(mdoc, &setm.u.sset, &wi->metadata))
				continue;
			if (!(wi->metadata.backup_types & AMB_BACKUP_BIT(o->type))) {
				if (!o->quiet)
					fprintf(o->err, "amber: writer %s does not support %s backups: left out\n",
					        wi->metadata.name, tname);
				continue;
			}
			bool store = !strcmp(wi->metadata.verifier, "amber-store");
			if (!store && strcmp(wi->metadata.verifier, "none")) {
				/* say so rather than take an unverifiable copy */
				if (!o->quiet)
					fprintf(o->err, "amber: writer %s: its verifier \"%s\" is not known to "
					        "this amber: left out\n", wi->metadata.name, wi->metadata.verifier);
				continue;
			}
			if (!store && o->method == BK_METHOD_STREAM) {
				if (!o->quiet)
					fprintf(o->err, "amber: writer %s cannot be streamed (only amber-store "
					        "writers can): left out\n", wi->metadata.name);
				continue;
			}
			add_selection(sel, &nsel, wi, "", false);
		}
	}
	if (!nsel) {
		snprintf(err, sizeof(err), "no registered writer supports %s backups%s", tname,
		         o->method == BK_METHOD_STREAM ? " by streaming" : "");
		rc = 2;
		goto out;
	}
	for (size_t i = 0; i < nsel; i++) {
		selw *s = &sel[i];
		const amb_writer_md *md = &s->info->metadata;
		s->is_store = strcmp(md->verifier, "amber-store") == 0;
		s->is_files = strcmp(md->verifier, "none") == 0;
		if (!s->is_store && !s->is_files) {
			snprintf(err, sizeof(err), "writer %s: verifier \"%s\" is not known to this amber "
			         "(known: amber-store, none)", md->name, md->verifier);
			rc = 2;
			goto out;
		}
		if (s->is_files && o->method == BK_METHOD_STREAM) {
			snprintf(err, sizeof(err), "writer %s cannot be streamed: --method stream is for "
			         "amber-store writers (verifier \"%s\")", md->name, md->verifier);
			rc = 2;
			goto out;
		}
		if (s->is_store && (rc = bk_store_loc_from_md(md, &s->loc, err, sizeof(err))) != 0)
			goto out;
		if (s->is_files && !(s->roots = calloc(AMB_MAX_FILESETS, sizeof(*s->roots)))) {
			snprintf(err, sizeof(err), "out of memory");
			rc = 1;
			goto out;
		}
		if (s->is_files &&
		    (rc = bk_files_roots(md, s->comp, s->roots, AMB_MAX_FILESETS, &s->nroots, err,
		                         sizeof(err))) != 0)
			goto out;
		if (o->method == BK_METHOD_SNAPSHOT && !mdoc) {
			rc = amb_req_select(c, sref.session, md->name, s->comp[0] ? s->comp : NULL,
			                    s->named ? AMB_SELECT_VERIFY : AMB_SELECT_INCLUDE);
			if (rc) {
				snprintf(err, sizeof(err), "amberd: select %s: %s", md->name,
				         amb_client_errmsg(c));
				rc = rc < 0 ? 1 : rc;
				goto out;
			}
		}
	}
	/* the parent of an incremental or differential, per writer */
	json_t *parent_doc = NULL;
	json_t **parent_w = calloc(nsel, sizeof(*parent_w));
	if (!parent_w) {
		rc = 1;
		goto out;
	}
	if (o->type == AMB_BACKUP_INCREMENTAL || o->type == AMB_BACKUP_DIFFERENTIAL) {
		for (size_t i = 0; i < nsel; i++) {
			json_t *pd = find_parent(&scan, sel[i].info->metadata.instance, o->type,
			                         &parent_w[i]);
			if (!pd) {
				snprintf(err, sizeof(err), "writer %s: the repository has no verified full "
				         "backup of this instance to build a%s %s backup on: a full backup "
				         "is needed", sel[i].info->metadata.name,
				         o->type == AMB_BACKUP_INCREMENTAL ? "n" : "", tname);
				rc = 2;
				free(parent_w);
				goto out;
			}
			if (!parent_doc)
				parent_doc = pd;
		}
	}
	/* 3: the folder and the incomplete document */
	if ((rc = bk_dir_create(&repo, j.id, err, sizeof(err))) != 0) {
		free(parent_w);
		goto out;
	}
	j.bdirfd = bk_dir_open(&repo, j.id, err, sizeof(err));
	char now[32];
	bk_time_str(bk_now_ms() / 1000, now, sizeof(now));
	j.doc = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:b, s:s, s:o, s:[], s:[], s:I}",
	                  "format", "amber-backup", "version", 1, "id", j.id, "type", tname,
	                  "method", o->method == BK_METHOD_STREAM ? "stream" : "snapshot",
	                  "status", "incomplete", "verified", 0, "started", now,
	                  "parent", parent_doc ? json_incref(json_object_get(parent_doc, "id")) :
	                  json_null(), "writers", "files", "bytes", (json_int_t)0);
	if (session) {
		json_object_set_new(j.doc, "session", json_string(sref.session));
	} else if (mdoc) {
		json_object_set(j.doc, "session", json_object_get(mdoc, "session"));
		json_object_set_new(j.doc, "script_metadata", json_string(o->metadata));
	}
	for (size_t i = 0; i < nsel; i++) {
		const amb_writer_md *md = &sel[i].info->metadata;
		json_t *w = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o*}", "name", md->name, "instance",
		                      md->instance, "verifier", md->verifier, "restore_method",
		                      amb_restore_method_name(md->restore_method), "dir", sel[i].loc.dir,
		                      "metadata", md_to_json(md));
		if (md->instance_name)
			json_object_set_new(w, "instance_name", json_string(md->instance_name));
		if (sel[i].comp[0])
			json_object_set_new(w, "selected_component", json_string(sel[i].comp));
		json_array_append_new(json_object_get(j.doc, "writers"), w);
		sel[i].wdoc = w;
	}
	if (j.bdirfd < 0 || (rc = bk_doc_create(&repo, j.id, j.doc, err, sizeof(err))) != 0) {
		rc = 1;
		free(parent_w);
		goto out;
	}
	on_disk = DOC_INCOMPLETE;
	bk_event(&j, BK_EV_BACKUP_STARTED, "info", "%s backup %s started (%s, %zu writer%s)", tname,
	         j.id, o->method == BK_METHOD_STREAM ? "stream" : "snapshot", nsel,
	         nsel == 1 ? "" : "s");

	/* 4: the point-in-time copy and the copy into the repository */
	bk_progress_begin(&j.prog, !o->quiet && isatty(2), "backup: copying", 0);
	if (o->method == BK_METHOD_SNAPSHOT) {
		char vols[AMB_MAX_VOLUMES][PATH_MAX];
		if (mdoc)
			goto have_set;
		size_t nv = 0;
		for (size_t i = 0; i < nsel && !rc; i++) {
			/* an amber-store writer's directory, a generic writer's
			 * file-set directories */
			size_t nd = sel[i].is_files ? sel[i].nroots : 1;
			for (size_t q = 0; q < nd; q++) {
				const char *dir = sel[i].is_files ? sel[i].roots[q] : sel[i].loc.dir;
				char v[PATH_MAX];
				int r = bk_volume_of(dir, v, sizeof(v));
				if (r) {
					snprintf(err, sizeof(err), "%s: %s", dir, strerror(-r));
					rc = 1;
					break;
				}
				bool dup = false;
				for (size_t k = 0; k < nv; k++)
					dup |= strcmp(vols[k], v) == 0;
				if (!dup && nv < AMB_MAX_VOLUMES)
					snprintf(vols[nv++], PATH_MAX, "%s", v);
			}
		}
		/* the archived logs an incremental or differential takes are
		 * never written again: copied from the live directory while
		 * amberd makes the shadow (job.h, PRECOPY; AMBER_PRECOPY=0 turns
		 * it off) */
		const char *pe = getenv("AMBER_PRECOPY");
		for (size_t i = 0; i < nsel && !rc && !(pe && !strcmp(pe, "0")); i++)
			if (sel[i].is_store && parent_w[i])
				bk_store_precopy_start(&j, sel[i].wdoc, &sel[i].loc, o->type, parent_w[i],
				                       &sel[i].pre);
		for (size_t k = 0; k < nv && !rc; k++) {
			rc = amb_req_add_volume(c, sref.session, vols[k], NULL);
			if (rc)
				snprintf(err, sizeof(err), "amberd: add volume %s: %s", vols[k],
				         amb_client_errmsg(c));
		}
		if (!rc) {
			rc = amb_req_snapshot(c, sref.session, &setm);
			if (rc)
				snprintf(err, sizeof(err), "amberd: the shadow copy failed: %s",
				         amb_client_errmsg(c));
		}
		for (size_t i = 0; i < nsel; i++) {
			bk_precopy_stop(sel[i].pre, false);
			if (!rc)
				bk_precopy_sync_start(sel[i].pre);
		}
		if (rc) {
			rc = rc < 0 ? 1 : rc;
			free(parent_w);
			goto out;
		}
have_set:
		json_object_set_new(j.doc, "shadow_set", json_string(setm.u.sset.set));
		bk_event(&j, BK_EV_BACKUP_SNAPSHOT, "info", "shadow set %s taken (%zu volume%s)",
		         setm.u.sset.set, setm.u.sset.n_shadows, setm.u.sset.n_shadows == 1 ? "" : "s");
		for (size_t i = 0; i < nsel && !rc; i++) {
			char sp[PATH_MAX];
			if (sel[i].is_files) {
				rc = bk_files_backup(&j, sel[i].wdoc, &sel[i].info->metadata, sel[i].comp,
				                     map_shadow, &setm.u.sset, err, sizeof(err));
				continue;
			}
			if (!shadow_path(&setm.u.sset, sel[i].loc.dir, sp, sizeof(sp))) {
				snprintf(err, sizeof(err), "%s is in no shadow of set %s", sel[i].loc.dir,
				         setm.u.sset.set);
				rc = 1;
				break;
			}
			rc = bk_store_backup_snapshot(&j, sel[i].wdoc, &sel[i].loc, sp, o->type, parent_w[i],
			                              sel[i].pre, err, sizeof(err));
		}
	} else {
		for (size_t i = 0; i < nsel && !rc; i++)
			rc = bk_store_backup_stream(&j, sel[i].wdoc, &sel[i].loc, o->type, parent_w[i],
			                            &sel[i].stream, err, sizeof(err));
	}
	free(parent_w);
	bk_progress_end(&j.prog);
	if (rc) {
		if (rc == 2)
			bk_event(&j, BK_EV_BACKUP_REFUSED, "error", "%s", err);
		goto out;
	}
	uint64_t total = 0;
	size_t fi;
	json_t *f;
	json_array_foreach(json_object_get(j.doc, "files"), fi, f)
		total += (uint64_t)json_integer_value(json_object_get(f, "size"));
	json_object_set_new(j.doc, "bytes", json_integer((json_int_t)total));
	/* the manifest durable before the verdict below names it; the document
	 * is not saved in between: nothing reads the file list of a backup
	 * still incomplete, and the verdict's save, a few ms later, has it */
	if ((rc = bk_sync_dirs(&j, err, sizeof(err))) != 0 ||
	    (rc = bk_manifest_save(&repo, j.id, j.doc, err, sizeof(err))) != 0)
		goto out;
	bk_event(&j, BK_EV_BACKUP_COPIED, "info", "%zu files, %llu bytes copied and hashed",
	         json_array_size(json_object_get(j.doc, "files")), (unsigned long long)total);

	/* 5: verification */
	bool all_ok = true;
	char verr[BK_ERR] = "";
	bk_progress_begin(&j.prog, !o->quiet && isatty(2), "backup: verifying", total);
	for (size_t i = 0; i < nsel; i++) {
		char e1[BK_ERR];
		sel[i].ok = (sel[i].is_files ? bk_files_verify(&j, sel[i].wdoc, e1, sizeof(e1))
		                             : bk_store_verify(&j, sel[i].wdoc, e1, sizeof(e1))) == 0;
		if (!sel[i].ok && all_ok)
			snprintf(verr, sizeof(verr), "%s", e1);
		all_ok &= sel[i].ok;
	}
	bk_progress_end(&j.prog);

	/* 6: the verdict, durable before any writer hears of it */
	bk_time_str(bk_now_ms() / 1000, now, sizeof(now));
	json_object_set_new(j.doc, "finished", json_string(now));
	json_object_set_new(j.doc, "verified", json_boolean(all_ok));
	json_object_set_new(j.doc, "status", json_string(all_ok ? "complete" : "failed"));
	if (!all_ok)
		json_object_set_new(j.doc, "error", json_string(verr));
	if ((rc = bk_doc_save(&repo, j.id, j.doc, err, sizeof(err))) != 0)
		goto out;
	on_disk = all_ok ? DOC_COMPLETE : DOC_FAILED;
	bk_event(&j, all_ok ? BK_EV_BACKUP_VERIFIED : BK_EV_BACKUP_VERIFY_FAILED,
	         all_ok ? "info" : "error", all_ok ? "every page and log verified" :
	         "verification failed: %s", verr);

	/* 7: backup-complete with per-component results */
	amb_comp_result *res = calloc(AMB_MAX_RESULTS, sizeof(*res));
	size_t nres = 0;
	char rerr[BK_ERR] = "";
	int crc = 0;
	for (size_t i = 0; res && i < nsel; i++) {
		size_t k;
		json_t *cj;
		json_array_foreach(json_object_get(sel[i].wdoc, "components"), k, cj) {
			if (nres == AMB_MAX_RESULTS)
				break;
			snprintf(res[nres].writer, sizeof(res[0].writer), "%s", sel[i].info->metadata.name);
			snprintf(res[nres].component, sizeof(res[0].component), "%s",
			         json_string_value(json_object_get(cj, "name")));
			res[nres].success = all_ok && json_is_true(json_object_get(cj, "success"));
			nres++;
		}
		if (o->method == BK_METHOD_STREAM && sel[i].stream) {
			int r = bk_store_stream_complete(sel[i].stream, all_ok && sel[i].ok, rerr,
			                                 sizeof(rerr));
			sel[i].stream = NULL;
			if (r && !crc)
				crc = r;
		}
	}
	if (session && res) {
		crc = amb_req_backup_complete(c, sref.session, res, nres);
		if (crc)
			snprintf(rerr, sizeof(rerr), "%s", amb_client_errmsg(c));
	}
	free(res);
	if (crc) {
		bk_event(&j, BK_EV_BACKUP_FAILED, "warning", "backup-complete: %s", rerr);
		fprintf(o->err, "amber: backup %s: the writers could not record the backup: %s\n",
		        j.id, rerr);
	} else if (all_ok && (session || o->method == BK_METHOD_STREAM)) {
		bk_event(&j, BK_EV_BACKUP_RECORDED, "info", "the writers recorded the backup%s",
		         o->type == AMB_BACKUP_FULL || o->type == AMB_BACKUP_INCREMENTAL ?
		         " and truncated their logs" : "");
	}
	json_object_set_new(j.doc, "recorded", json_boolean(all_ok && !crc && !mdoc));
	bk_doc_save(&repo, j.id, j.doc, err, sizeof(err));
	if (session) {
		amb_req_close(c, sref.session);
		session = false;
	}
	if (!all_ok) {
		snprintf(err, sizeof(err), "backup %s is not valid: %s; nothing was truncated", j.id,
		         verr);
		rc = 1;
		goto out;
	}
	if (!o->quiet)
		fprintf(o->err, "amber: %s backup %s verified: %llu bytes in %zu files%s\n", tname,
		        j.id, (unsigned long long)total,
		        json_array_size(json_object_get(j.doc, "files")),
		        mdoc ? "; the script's end backup tells the writers" : "");
	fprintf(o->out, "%s\n", j.id);
	rc = 0;
out:
	/* no copy may go on past here (they write below j.bdirfd) */
	for (size_t i = 0; sel && i < nsel; i++) {
		bk_precopy_free(sel[i].pre);
		sel[i].pre = NULL;
	}
	if (rc) {
		fprintf(o->err, "amber: backup: %s\n", err);
		if (on_disk == DOC_INCOMPLETE) {
			json_object_set_new(j.doc, "status", json_string("failed"));
			json_object_set_new(j.doc, "error", json_string(err));
			char e2[BK_ERR];
			if (bk_doc_save(&repo, j.id, j.doc, e2, sizeof(e2)) == 0)
				on_disk = DOC_FAILED;
			bk_event(&j, BK_EV_BACKUP_FAILED, "error", "%s", err);
		}
		/* every way here is before the writers were told of a success:
		 * none recorded the backup or truncated a log */
		if (on_disk == DOC_INCOMPLETE || on_disk == DOC_FAILED)
			fprintf(o->err, "amber: backup %s is %s (no writer recorded it or truncated a "
			        "log); 'amber backups --repo %s --prune-%s' removes its folder\n", j.id,
			        on_disk == DOC_FAILED ? "listed as failed" : "left incomplete", o->repo,
			        on_disk == DOC_FAILED ? "failed" : "incomplete");
	}
	for (size_t i = 0; sel && i < nsel; i++)
		if (sel[i].stream) {
			char e2[BK_ERR];
			bk_store_stream_complete(sel[i].stream, false, e2, sizeof(e2));
		}
	if (session) {
		amb_req_abort(c, sref.session, rc ? err : NULL);
		amb_req_close(c, sref.session);
	}
	amb_msg_free(&setm);
	amb_msg_free(&wl);
	if (c)
		amb_client_close(c);
	for (size_t i = 0; sel && i < nsel; i++)
		free(sel[i].roots);
	free(sel);
	json_decref(scan.loaded);
	bk_ids_free(scan.ids, scan.n);
	json_decref(mdoc);
	json_decref(j.doc);
	json_decref(j.checked);
	if (j.bdirfd >= 0)
		close(j.bdirfd);
	bk_repo_close(&repo);
	return rc;
}

/*
 * restore.c - `amber restore` (design.md section 5).
 *
 *   1. the backup (an id or `latest`, the newest backup whose whole chain
 *      is verified) and its chain: the full, then its incrementals in
 *      order, or the full and the differential
 *   2. before anything is written, every file of the chain listed in its
 *      manifest, present and of its size; each file is then read once,
 *      hashed while laid down; a missing or changed log is named by its
 *      generation, with the backup that restores without it
 *   3. per writer, the target: the writer's directory, or --to DIR
 *      (DIR/<writer folder> when the backup holds several writers)
 *   4. online when the writer instance is registered with amberd and the
 *      target is its own directory: pre-restore (it dismounts), files,
 *      post-restore (it runs hard recovery and mounts again); otherwise
 *      offline: files, then hard recovery here (unless --no-recover)
 *   5. files: databases to "<name>.amber-restore", renamed over the
 *      originals only when every file passed (all or none), the chain's logs (a later backup's copy of a
 *      generation over an earlier one) into DIR/amber-restore-<id>/,
 *      restore.env into DIR (docs/restore-env.md); all durable
 * Every file is opened below the target with RESOLVE_BENEATH and no
 * symlinks, and only names an amber-store instance can have are accepted
 * (<db>.edb of the document's databases, <prefix>XXXXXXXX.log): a hostile
 * document cannot make restore write anywhere else.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amber/client.h"
#include "amber/store.h"
#include "backup/backup.h"
#include "backup/chain.h"
#include "backup/job.h"
#include "common/durable.h"
#include "common/vfs.h"
#include "store/log.h"
#include "store/restoreenv.h"

static json_t *writer_in(json_t *doc, const char *instance)
{
	size_t i;
	json_t *w;
	json_array_foreach(json_object_get(doc, "writers"), i, w)
		if (!strcmp(bk_str(w, "instance"), instance))
			return w;
	return NULL;
}

/* Copy a repository file to dirfd/"<name>.amber-restore", checking its
 * hash on the way (the only read of the file in a restore), and rename it
 * to name unless defer (the databases replace the originals only once
 * every file of the chain was laid down).  0 or 1; *dst_err is set when
 * the failure is the target's (no space, a read-only or failing target
 * filesystem), not the backup's. */
static int lay_file(bk_job *j, json_t *man, json_t *f, int dirfd, const char *name, bool defer,
                    bool *dst_err, char *err, size_t errlen)
{
	const char *rel = bk_str(f, "path");
	int src = bk_openat_beneath(j->bdirfd, rel, O_RDONLY, 0);
	if (src < 0) {
		snprintf(err, errlen, "backup %s: %s: %s", j->id, rel, strerror(-src));
		return 1;
	}
	char tmp[300];
	snprintf(tmp, sizeof(tmp), "%s.amber-restore", name);
	unlinkat(dirfd, tmp, 0);
	int dst = bk_openat_beneath(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL, 0640);
	if (dst < 0) {
		close(src);
		snprintf(err, errlen, "%s: %s", tmp, strerror(-dst));
		*dst_err = true;
		return 1;
	}
	char hex[65];
	uint64_t bytes = 0;
	bool wfail = false;
	bk_copy_hooks h = {.progress = bk_progress_add, .progress_arg = &j->prog,
	                   .dst_failed = &wfail};
	int rc = bk_copy_fd_hooks(src, dst, &bytes, hex, &h);
	close(src);
	close(dst);
	const char *want = json_string_value(json_object_get(man, rel));
	if (rc && wfail) {
		/* a write or the fsync of the copy: the target's trouble (no
		 * space, a failing disk), not the backup's */
		unlinkat(dirfd, tmp, 0);
		snprintf(err, errlen, "laying down %s (from backup %s): %s", name, j->id,
		         strerror(-rc));
		*dst_err = true;
		return 1;
	}
	if (rc || !want || strcmp(hex, want) != 0) {
		unlinkat(dirfd, tmp, 0);
		snprintf(err, errlen, "backup %s: %s: %s", j->id, rel,
		         rc ? strerror(-rc) : "changed since the backup (SHA-256 differs from the manifest)");
		return 1;
	}
	if (!defer && renameat(dirfd, tmp, dirfd, name) != 0) {
		snprintf(err, errlen, "%s: %s", name, strerror(errno));
		*dst_err = true;
		return 1;
	}
	return 0;
}

/* j switched to backup doc of the chain (its id, its folder open) and its
 * manifest loaded into *man (NULL on failure).  0, or 1 with err set. */
static int open_backup(bk_job *j, bk_repo *repo, json_t *doc, json_t **man, char *err,
                       size_t errlen)
{
	snprintf(j->id, sizeof(j->id), "%s", bk_str(doc, "id"));
	if (j->bdirfd >= 0)
		close(j->bdirfd);
	j->bdirfd = bk_dir_open(repo, j->id, err, errlen);
	*man = NULL;
	return j->bdirfd < 0 || bk_manifest_load(repo, j->id, man, err, errlen) ? 1 : 0;
}

/* Where --to DIR puts writer w0: DIR itself when the backup holds one
 * writer, else DIR/<writer folder>; made if missing.  0, or 1 with err
 * set. */
static int to_target(const char *to, json_t *w0, size_t nwriters, char *out, size_t n, char *err,
                     size_t errlen)
{
	char wdir[128];
	bk_writer_folder(w0, wdir, sizeof(wdir));
	if (nwriters == 1)
		snprintf(out, n, "%s", to);
	else
		snprintf(out, n, "%s/%s", to, wdir);
	if (mkdir(out, 0750) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", out, strerror(errno));
		return 1;
	}
	return 0;
}

/* remove dirfd/name/ * and the directory (flat: restore's own log folder) */
static void remove_flat(int pfd, const char *name)
{
	int fd = bk_openat_beneath(pfd, name, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
	unlinkat(pfd, name, AT_REMOVEDIR);
	fsync(pfd);
}

/* Is this writer instance registered with amberd now?  1, 0 (no, or no
 * amberd). */
static int writer_running(const char *socket, const char *instance)
{
	amb_client *c;
	if (amb_client_connect(socket, AMB_ROLE_ADMIN, "amber-restore", &c) != 0)
		return 0;
	amb_msg m;
	int found = 0;
	if (amb_req_list_writers(c, &m) == 0) {
		for (size_t i = 0; i < m.u.writers.n_writers; i++)
			found |= !strcmp(m.u.writers.writers[i].metadata.instance, instance);
		amb_msg_free(&m);
	}
	amb_client_close(c);
	return found;
}

/* The message for a missing or damaged file of chain[k]: which log
 * generation, if a log, and the backup that restores without it. */
static void chain_failure(bk_repo *repo, json_t *list, json_t **chain, size_t k, const char *why,
                          char *err, size_t errlen)
{
	char gen[96] = "";
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(chain[k], "files"), i, f) {
		if (strcmp(bk_str(f, "role"), "log") || !strstr(why, bk_str(f, "path")))
			continue;
		const char *t = bk_str(f, "target");
		unsigned long g = strlen(t) == 15 ? strtoul(t + 3, NULL, 16) : 0;
		snprintf(gen, sizeof(gen), "log generation %lu (%s) ", g, t);
	}
	json_t *alt = k > 0 ? chain[k - 1] : NULL;
	for (size_t q = json_array_size(list); !alt && q-- > 0;) {
		/* an older usable backup outside this chain */
		json_t *d = json_array_get(list, q), *c2[BK_MAX_CHAIN];
		char e2[256];
		if (strcmp(bk_str(d, "id"), bk_str(chain[0], "id")) < 0 && bk_doc_usable(d) &&
		    bk_chain(list, d, c2, e2, sizeof(e2)))
			alt = d;
	}
	char hint[200];
	if (alt)
		snprintf(hint, sizeof(hint), "; backup %s restores without it (amber restore --repo "
		         "%s %s), losing what came after it unless roll-forward reaches it",
		         bk_str(alt, "id"), repo->root, bk_str(alt, "id"));
	else
		snprintf(hint, sizeof(hint), "; no earlier backup in this repository restores "
		         "without it");
	snprintf(err, errlen, "%s%s of backup %s is missing or damaged: %s%s", gen,
	         gen[0] ? "" : "a file", bk_str(chain[k], "id"), why, hint);
}

/* Before anything is written: every file of the chain is in its manifest,
 * present, a regular file inside the backup, of the right size.  (The
 * contents are hashed while they are laid down.)  0 or 1. */
static int check_chain(bk_job *j, bk_repo *repo, json_t *list, json_t **chain, size_t n,
                       char *err, size_t errlen)
{
	for (size_t k = 0; k < n; k++) {
		snprintf(j->id, sizeof(j->id), "%s", bk_str(chain[k], "id"));
		j->doc = chain[k];
		if (j->bdirfd >= 0)
			close(j->bdirfd);
		j->bdirfd = bk_dir_open(repo, j->id, err, errlen);
		char why[BK_ERR];
		if (j->bdirfd < 0)
			snprintf(why, sizeof(why), "%s", err);
		else if (bk_verify_files(j, false, why, sizeof(why)) == 0)
			continue;
		chain_failure(repo, list, chain, k, why, err, errlen);
		return 1;
	}
	return 0;
}

/* Copy one file from sdir/name to tfd/name (fsynced by bk_copy_fd; no hash:
 * recovery checks every segment); 0 or -errno. */
static int copy_log(int sdir, int tfd, const char *name)
{
	int in = openat(sdir, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		return -errno;
	int out = openat(tfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (out < 0) {
		int e = -errno;
		close(in);
		return e;
	}
	int rc = bk_copy_fd(in, out, NULL, NULL, NULL, NULL);
	close(in);
	close(out);
	return rc;
}

/*
 * restore --to with roll-forward: the logs newer than the backup are in the
 * original instance directory, which a restore elsewhere must not touch.
 * Copy (read only) its current log first, then every archived generation
 * from the backup's last one up to the current one's, by name, into the
 * target, where hard recovery looks for them.  Copied in that order, a
 * running instance cannot leave a gap: when the current log was generation
 * G, every generation below G was archived, and a roll meanwhile only adds
 * later ones (which this restore leaves out: it rolls forward to the moment
 * it copied the current log, whose end may be torn, which recovery treats
 * like a crash).  A generation missing below G (truncated away) stops the
 * restore with its name.  With no current log (the instance is gone) every
 * archived generation from the backup's last one on is copied.  Every log
 * is copied again from the instance, never taken from the target (a file
 * left there by an earlier, interrupted restore may be torn).
 * Returns the number of logs copied, or -1 with err set.
 */
static int copy_newer_logs(const char *src, int tfd, const char *target, const char *prefix,
                           uint32_t gen_high, char *err, size_t errlen)
{
	int sdir = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sdir < 0) {
		if (errno == ENOENT)
			return 0; /* nothing left on the server to roll forward with */
		snprintf(err, errlen, "%s: %s", src, strerror(errno));
		return -1;
	}
	int n = 0;
	char cur[64], name[80];
	snprintf(cur, sizeof(cur), "%s.log", prefix);
	int r = copy_log(sdir, tfd, cur);
	if (r == -ENOENT) {
		/* no current log: the archived ones are all there is */
		DIR *d = fdopendir(dup(sdir));
		if (!d) {
			snprintf(err, errlen, "%s: %s", src, strerror(errno));
			close(sdir);
			return -1;
		}
		rewinddir(d); /* the dup shares sdir's offset */
		struct dirent *e;
		while (n >= 0 && (e = readdir(d)) != NULL) {
			uint32_t g = amb_log_parse_name(e->d_name, prefix);
			if (g < gen_high || g == 0)
				continue;
			r = copy_log(sdir, tfd, e->d_name);
			if (r == -ENOENT)
				continue;
			if (r) {
				snprintf(err, errlen, "%s/%s: %s", src, e->d_name, strerror(-r));
				n = -1;
			} else {
				n++;
			}
		}
		closedir(d);
	} else if (r) {
		snprintf(err, errlen, "%s/%s: %s", src, cur, strerror(-r));
		n = -1;
	} else {
		n++;
		char path[PATH_MAX + 64];
		snprintf(path, sizeof(path), "%s/%s", target, cur);
		amb_loghdr h;
		if (amb_loghdr_load(amb_vfs_posix(), path, &h) != 0) {
			snprintf(err, errlen, "%s: %s", path, ams_errmsg());
			n = -1;
		}
		for (uint32_t g = gen_high; n >= 0 && g < h.gen; g++) {
			snprintf(name, sizeof(name), "%s%08X.log", prefix, g);
			r = copy_log(sdir, tfd, name);
			if (r == -ENOENT && g == gen_high)
				continue; /* the backup's copy of its last generation serves */
			if (r == -ENOENT) {
				snprintf(err, errlen, "log generation 0x%08X (%s) is missing from %s, "
				         "between the backup's last generation 0x%08X and the current "
				         "0x%08X: the roll-forward cannot pass it (restore with --until "
				         "before it, or --no-roll-forward)", g, name, src, gen_high,
				         h.gen);
				n = -1;
			} else if (r) {
				snprintf(err, errlen, "%s/%s: %s", src, name, strerror(-r));
				n = -1;
			} else {
				n++;
			}
		}
	}
	close(sdir);
	if (n > 0 && fsync(tfd) != 0) {
		snprintf(err, errlen, "fsync of the restore target: %s", strerror(errno));
		n = -1;
	}
	return n;
}

/*
 * An online restore's start: a restore session with amberd, writer w0
 * selected, pre-restore of each of its components (items, at most 16,
 * with target, or none when NULL: the writer's own places).  0, or the exit code with err set (*session says whether
 * a session is open to abort).
 */
static int online_begin(const bk_restore_opts *o, json_t *w0, const char *target, amb_client **c,
                        amb_session_ref *sref, bool *session, amb_comp_result *items,
                        size_t *nitems, char *err, size_t errlen)
{
	const char *wname = bk_str(w0, "name");
	amb_msg wl;
	memset(&wl, 0, sizeof(wl));
	amb_session_open so;
	memset(&so, 0, sizeof(so));
	so.mode = AMB_SESSION_RESTORE;
	int rc = amb_client_connect(o->socket, AMB_ROLE_REQUESTOR, "amber-restore", c);
	if (!rc && !(rc = amb_req_session_open(*c, &so, sref)))
		*session = true;
	if (!rc)
		rc = amb_req_gather(*c, sref->session, &wl);
	amb_msg_free(&wl);
	if (!rc)
		rc = amb_req_select(*c, sref->session, wname, NULL, AMB_SELECT_VERIFY);
	size_t i;
	json_t *cj;
	json_array_foreach(json_object_get(w0, "components"), i, cj) {
		if (*nitems == 16)
			break;
		memset(&items[*nitems], 0, sizeof(items[0]));
		snprintf(items[*nitems].writer, sizeof(items[0].writer), "%s", wname);
		snprintf(items[*nitems].component, sizeof(items[0].component), "%s", bk_str(cj, "name"));
		items[*nitems].target = target && target[0] ? (char *)target : NULL;
		items[*nitems].success = true;
		(*nitems)++;
	}
	if (!rc)
		rc = amb_req_pre_restore(*c, sref->session, items, *nitems);
	if (rc) {
		snprintf(err, errlen, "online restore: writer %s: %s", wname,
		         *c ? amb_client_errmsg(*c) : amb_client_last_error());
		return rc < 0 ? 1 : rc;
	}
	/* test hook: hold here so a test can kill the restore between
	 * pre-restore and post-restore */
	const char *stall = getenv("AMBER_TEST_STALL_RESTORE_MS");
	if (stall && atoi(stall) > 0)
		usleep((useconds_t)atoi(stall) * 1000u);
	return 0;
}

/* Is p an absolute, normalized path (no "." or ".." component, no "//",
 * no trailing '/' but for "/")? */
static bool abs_normal(const char *p)
{
	if (!p || p[0] != '/' || strlen(p) >= PATH_MAX)
		return false;
	if (!p[1])
		return true;
	for (const char *c = p; *c;) {
		const char *e = strchr(c + 1, '/');
		size_t l = e ? (size_t)(e - c - 1) : strlen(c + 1);
		if (l == 0 || (l == 1 && c[1] == '.') || (l == 2 && c[1] == '.' && c[2] == '.'))
			return false;
		if (!e)
			break;
		c = e;
	}
	return true;
}

/* One file laid down by restore_files_writer(), to be renamed into place. */
typedef struct laid_file {
	char *rootdir;   /* where its root is restored */
	char *rel;       /* its path below */
} laid_file;

/* The directory of rel below rootdir, opened beneath it without following
 * symbolic links (made first when make), and rel's last name in name.
 * An fd, or -errno. */
static int open_parent(const char *rootdir, const char *rel, bool make, char *name, size_t nn)
{
	const char *slash = strrchr(rel, '/');
	snprintf(name, nn, "%s", slash ? slash + 1 : rel);
	int rfd = open(rootdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rfd < 0 || !slash)
		return rfd < 0 ? -errno : rfd;
	char parent[PATH_MAX];
	snprintf(parent, sizeof(parent), "%.*s", (int)(slash - rel), rel);
	int m = make ? bk_mkdirs_beneath(rfd, parent) : 0;
	int pfd = m ? m : bk_openat_beneath(rfd, parent, O_RDONLY | O_DIRECTORY, 0);
	close(rfd);
	return pfd;
}

/*
 * Restore a generic writer (verifier "none", filesplug.c).  Every backup
 * of such a writer holds all its files, so the files come from the newest
 * backup of the chain that has the writer: each laid down below its root
 * (or below --to DIR/<root>), first as "<name>.amber-restore", and renamed
 * over the original only once every file was laid down with a matching
 * hash (all or none).  Directories are made as needed, never through a
 * symbolic link; files that are not in the backup are left alone.  A root
 * must be a file-set directory of the writer's saved metadata.  Nothing to
 * recover: online, post-restore tells the writer that its files are back.
 */
static int restore_files_writer(bk_job *j, const bk_restore_opts *o, bk_repo *repo, json_t *list,
                                json_t **chain, size_t n, json_t *w0, size_t nwriters,
                                char *err, size_t errlen)
{
	const char *wname = bk_str(w0, "name"), *instance = bk_str(w0, "instance");
	json_t *known = json_object();
	laid_file *laid = NULL;
	size_t nlaid = 0, i, k, src = 0;
	json_t *cj, *fj;
	int rc = 0;
	if (!known) {
		snprintf(err, errlen, "out of memory");
		rc = 1;
		goto out;
	}
	/* the file-set directories of the saved metadata: a root must be one */
	for (size_t c = 0; c < n; c++) {
		json_t *md = json_object_get(writer_in(chain[c], instance), "metadata");
		json_array_foreach(json_object_get(md, "components"), i, cj)
			json_array_foreach(json_object_get(cj, "files"), k, fj)
				if (json_is_string(json_object_get(fj, "path")))
					json_object_set_new(known, bk_str(fj, "path"), json_true());
	}
	/* the newest backup of the chain with the writer; every file's root
	 * checked before anything is written */
	for (size_t c = 0; c < n; c++)
		if (writer_in(chain[c], instance))
			src = c;
	json_array_foreach(json_object_get(chain[src], "files"), i, fj) {
		if (strcmp(bk_str(fj, "writer"), wname))
			continue;
		const char *root = bk_str(fj, "root");
		if (strcmp(bk_str(fj, "role"), "file") || !abs_normal(root) ||
		    !json_object_get(known, root)) {
			snprintf(err, errlen, "backup %s: %s of writer %s: root \"%s\" is not a "
			         "file-set directory of the writer: refused", bk_str(chain[src], "id"),
			         bk_str(fj, "path"), wname, root);
			rc = 2;
			goto out;
		}
	}
	char base[PATH_MAX] = "";
	if (o->to && (rc = to_target(o->to, w0, nwriters, base, sizeof(base), err, errlen)) != 0)
		goto out;
	bool online = !o->to && !o->offline && writer_running(o->socket, instance);
	amb_client *c = NULL;
	amb_session_ref sref;
	bool session = false;
	amb_comp_result items[16];
	size_t nitems = 0;
	if (online) {
		rc = online_begin(o, w0, NULL, &c, &sref, &session, items, &nitems, err, errlen);
		if (!rc && !o->quiet)
			fprintf(o->err, "amber: writer %s is ready for the restore\n", wname);
	}
	bk_progress_begin(&j->prog, !o->quiet && isatty(2), "restore: laying down files", 0);
	json_t *man = NULL;
	bool dst_err = false;
	if (!rc)
		rc = open_backup(j, repo, chain[src], &man, err, errlen);
	if (!rc) {
		json_array_foreach(json_object_get(chain[src], "files"), i, fj) {
			if (strcmp(bk_str(fj, "writer"), wname))
				continue;
			const char *root = bk_str(fj, "root"), *t = bk_str(fj, "target");
			char rootdir[PATH_MAX * 2], name[256];
			/* the root: in place, made if it is gone; under --to, made
			 * below DIR without following links */
			snprintf(rootdir, sizeof(rootdir), "%s%s", base, base[0] && !root[1] ? "" : root);
			int m = 0;
			if (base[0] && root[1]) {
				int bfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				m = bfd < 0 ? -errno : bk_mkdirs_beneath(bfd, root + 1);
				if (bfd >= 0)
					close(bfd);
			} else if (!base[0] && mkdir(root, 0750) != 0 && errno != EEXIST) {
				m = -errno;
			}
			int pfd = m ? m : open_parent(rootdir, t, true, name, sizeof(name));
			if (pfd < 0) {
				snprintf(err, errlen, "%s/%s: %s", rootdir, t, strerror(-pfd));
				rc = 1;
				break;
			}
			laid_file *nl = realloc(laid, (nlaid + 1) * sizeof(*laid));
			if (!nl) {
				close(pfd);
				snprintf(err, errlen, "out of memory");
				rc = 1;
				break;
			}
			laid = nl;
			rc = lay_file(j, man, fj, pfd, name, true, &dst_err, err, errlen);
			close(pfd);
			if (rc)
				break;
			laid[nlaid].rootdir = strdup(rootdir);
			laid[nlaid].rel = strdup(t);
			if (!laid[nlaid].rootdir || !laid[nlaid].rel) {
				free(laid[nlaid].rootdir);
				free(laid[nlaid].rel);
				snprintf(err, errlen, "out of memory");
				rc = 1;
				break;
			}
			nlaid++;
		}
	}
	json_decref(man);
	if (rc == 1 && !dst_err) {
		char why[BK_ERR];
		snprintf(why, sizeof(why), "%s", err);
		chain_failure(repo, list, chain, src, why, err, errlen);
	}
	bk_progress_end(&j->prog);
	/* all or none: each laid copy renamed over its original (and its
	 * directory synced), or, after a failure, removed.  A rename that
	 * fails here (the target directory gone or read-only meanwhile) stops
	 * the renames and removes the copies not yet renamed; those renamed
	 * stay, which the message says */
	for (size_t q = 0; q < nlaid; q++) {
		char name[256], tname[300];
		int pfd = open_parent(laid[q].rootdir, laid[q].rel, false, name, sizeof(name));
		snprintf(tname, sizeof(tname), "%s.amber-restore", name);
		if (pfd >= 0 && rc)
			unlinkat(pfd, tname, 0);
		else if (pfd < 0 || renameat(pfd, tname, pfd, name) != 0 || fsync(pfd) != 0) {
			snprintf(err, errlen, "%s/%s: %s (%zu of %zu files were restored before it)",
			         laid[q].rootdir, laid[q].rel, strerror(pfd < 0 ? -pfd : errno), q, nlaid);
			rc = 1;
		}
		if (pfd >= 0)
			close(pfd);
	}
	if (!rc) {
		bk_event(j, BK_EV_RESTORE_LAID, "info", "writer %s: %zu files laid down%s%s", wname,
		         nlaid, base[0] ? " in " : " in their places", base);
		if (!o->quiet)
			fprintf(o->err, "amber: writer %s: %zu files restored%s%s\n", wname, nlaid,
			        base[0] ? " in " : " to their places", base);
	}
	if (online && session && nitems) {
		/* the writer hears how it went, whatever happened */
		for (size_t q = 0; q < nitems; q++)
			items[q].success = rc == 0;
		int prc = amb_req_post_restore(c, sref.session, items, nitems);
		if (prc && !rc) {
			snprintf(err, errlen, "writer %s: post-restore: %s", wname, amb_client_errmsg(c));
			rc = prc < 0 ? 1 : prc;
		}
		if (!rc) {
			amb_req_close(c, sref.session);
			session = false;
		}
	}
	if (session) {
		amb_req_abort(c, sref.session, rc ? err : NULL);
		amb_req_close(c, sref.session);
	}
	if (c)
		amb_client_close(c);
out:
	for (size_t q = 0; q < nlaid; q++) {
		free(laid[q].rootdir);
		free(laid[q].rel);
	}
	free(laid);
	json_decref(known);
	return rc;
}

static int restore_writer(bk_job *j, const bk_restore_opts *o, bk_repo *repo, json_t *list,
                          json_t **chain, size_t n, json_t *w0, size_t nwriters, char *err,
                          size_t errlen)
{
	const char *instance = bk_str(w0, "instance");
	const char *wname = bk_str(w0, "name");
	if (!strcmp(bk_str(w0, "verifier"), "none") && json_object_get(w0, "roots"))
		return restore_files_writer(j, o, repo, list, chain, n, w0, nwriters, err, errlen);
	json_t *st0 = json_object_get(w0, "store");
	if (strcmp(bk_str(w0, "verifier"), "amber-store") || !st0) {
		snprintf(err, errlen, "writer %s: verifier \"%s\" is not known to this amber: cannot "
		         "restore it", wname, bk_str(w0, "verifier"));
		return 2;
	}
	const char *prefix = bk_str(st0, "prefix");
	json_t *last_w = writer_in(chain[n - 1], instance);
	json_t *stl = json_object_get(last_w, "store");
	if (!stl) {
		snprintf(err, errlen, "writer %s is not in backup %s", wname, bk_str(chain[n - 1], "id"));
		return 1;
	}
	char target[PATH_MAX];
	if (!o->to && (o->no_roll_forward || o->until_us)) {
		/* the instance's later logs would stay beside the restored
		 * databases, where a later recovery could replay the history that
		 * was meant to be dropped */
		snprintf(err, errlen, "--no-roll-forward and --until need --to DIR: in place, the "
		         "instance's later logs would stay in %s", bk_str(w0, "dir"));
		return 2;
	}
	if (o->to) {
		if (to_target(o->to, w0, nwriters, target, sizeof(target), err, errlen))
			return 1;
	} else {
		snprintf(target, sizeof(target), "%s", bk_str(w0, "dir"));
	}
	int tfd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (tfd < 0) {
		snprintf(err, errlen, "%s: %s", target, strerror(errno));
		return 1;
	}
	bool online = !o->to && !o->offline && writer_running(o->socket, instance);
	amb_client *c = NULL;
	amb_session_ref sref;
	bool session = false;
	int rc = 0;
	amb_comp_result items[16];
	size_t nitems = 0;
	json_t *dbs = json_object_get(st0, "databases");
	if (online) {
		if ((rc = online_begin(o, w0, target, &c, &sref, &session, items, &nitems, err,
		                       errlen)) != 0)
			goto out;
		if (!o->quiet)
			fprintf(o->err, "amber: writer %s dismounted its instance for the restore\n", wname);
	}
	/* the files */
	char logdir[160];
	snprintf(logdir, sizeof(logdir), "amber-restore-%s", bk_str(chain[n - 1], "id"));
	remove_flat(tfd, logdir);
	if (mkdirat(tfd, logdir, 0750) != 0) {
		snprintf(err, errlen, "%s/%s: %s", target, logdir, strerror(errno));
		rc = 1;
		goto done;
	}
	int lfd = bk_openat_beneath(tfd, logdir, O_RDONLY | O_DIRECTORY, 0);
	if (lfd < 0) {
		snprintf(err, errlen, "%s/%s: %s", target, logdir, strerror(-lfd));
		rc = 1;
		goto done;
	}
	bk_progress_begin(&j->prog, !o->quiet && isatty(2), "restore: laying down files", 0);
	bool laid_dbs = false, dst_err = false;
	for (size_t k = 0; k < n && !rc; k++) {
		json_t *man;
		if ((rc = open_backup(j, repo, chain[k], &man, err, errlen)) != 0)
			break;
		size_t i;
		json_t *f;
		json_array_foreach(json_object_get(chain[k], "files"), i, f) {
			if (strcmp(bk_str(f, "writer"), wname))
				continue;
			const char *role = bk_str(f, "role"), *t = bk_str(f, "target");
			if (!strcmp(role, "database")) {
				bool known = false;
				size_t q;
				json_t *d;
				json_array_foreach(dbs, q, d)
					known |= !strcmp(json_string_value(d), t);
				if (!known || !bk_name_ok(t) || strlen(t) < 5 || strcmp(t + strlen(t) - 4, ".edb")) {
					snprintf(err, errlen, "backup %s: database target \"%s\" is not one of the "
					         "instance's databases: refused", j->id, t);
					rc = 2;
					break;
				}
				if ((rc = lay_file(j, man, f, tfd, t, true, &dst_err, err, errlen)) != 0)
					break;
				laid_dbs = true;
			} else if (!strcmp(role, "log")) {
				if (amb_log_parse_name(t, prefix) == 0 || strchr(t, '/')) {
					snprintf(err, errlen, "backup %s: log target \"%s\" is not a log file name "
					         "of prefix %s: refused", j->id, t, prefix);
					rc = 2;
					break;
				}
				if ((rc = lay_file(j, man, f, lfd, t, false, &dst_err, err, errlen)) != 0)
					break;
			}
			/* the checkpoint is not laid down: hard recovery starts from
			 * the backup's first log, and a live checkpoint stays */
		}
		json_decref(man);
		if (rc == 1 && !dst_err) {
			char why[BK_ERR];
			snprintf(why, sizeof(why), "%s", err);
			chain_failure(repo, list, chain, k, why, err, errlen);
		}
	}
	/* the databases replace the originals only now, all or none */
	size_t q, renamed = 0;
	json_t *d;
	json_array_foreach(dbs, q, d) {
		char tmp[300];
		snprintf(tmp, sizeof(tmp), "%s.amber-restore", json_string_value(d));
		if (!rc && laid_dbs) {
			if (renameat(tfd, tmp, tfd, json_string_value(d)) != 0) {
				snprintf(err, errlen, "%s/%s: %s (%zu of the %zu databases were replaced "
				         "before it)", target, json_string_value(d), strerror(errno), renamed,
				         json_array_size(dbs));
				rc = 1;
			} else {
				renamed++;
			}
		}
		if (rc)
			unlinkat(tfd, tmp, 0);
	}
	if (!rc && (fsync(lfd) != 0 || fsync(tfd) != 0)) {
		snprintf(err, errlen, "%s: fsync: %s", target, strerror(errno));
		rc = 1;
	}
	close(lfd);
	bk_progress_end(&j->prog);
	/* a failure before any database was replaced (a full disk, a damaged
	 * file) leaves the target as it was: the chain's logs laid so far go
	 * too.  Once a database was replaced they stay, for its recovery */
	if (rc && !renamed) {
		remove_flat(tfd, logdir);
		if (dst_err) {
			size_t l = strlen(err);
			snprintf(err + l, errlen - l, "; nothing in %s was replaced", target);
		}
	}
	if (rc)
		goto done;
	/* --to with roll-forward: the newer logs, read from the original */
	if (o->to && !o->no_roll_forward && strcmp(target, bk_str(w0, "dir")) != 0) {
		int nl = copy_newer_logs(bk_str(w0, "dir"), tfd, target, prefix,
		                         (uint32_t)json_integer_value(json_object_get(stl, "gen_high")),
		                         err, errlen);
		if (nl < 0) {
			rc = 1;
			goto done;
		}
		bk_event(j, BK_EV_RESTORE_LAID, "info", "writer %s: %d newer log%s copied from %s "
		         "for the roll-forward", wname, nl, nl == 1 ? "" : "s", bk_str(w0, "dir"));
	}
	/* restore.env, through the store's own writer (durable) */
	{
		char envpath[PATH_MAX + 16];
		snprintf(envpath, sizeof(envpath), "%s/restore.env", target);
		amb_restore_env *env = calloc(1, sizeof(*env));
		if (!env) {
			snprintf(err, errlen, "out of memory");
			rc = 1;
			goto done;
		}
		env->version = 1;
		snprintf(env->instance_dir, sizeof(env->instance_dir), "%s", target);
		snprintf(env->backup_log_dir, sizeof(env->backup_log_dir), "%s/%s", target, logdir);
		snprintf(env->prefix, sizeof(env->prefix), "%s", prefix);
		env->gen_low = (uint32_t)json_integer_value(json_object_get(st0, "gen_low"));
		env->gen_high = (uint32_t)json_integer_value(json_object_get(stl, "gen_high"));
		env->roll_forward = !o->no_roll_forward;
		env->until_us = o->until_us;
		json_array_foreach(dbs, q, d) {
			if (env->ndatabases == AMB_MAX_DBS)
				break;
			snprintf(env->databases[env->ndatabases++], sizeof(env->databases[0]), "%s",
			         json_string_value(d));
		}
		snprintf(env->backup_id, sizeof(env->backup_id), "%s", bk_str(chain[n - 1], "id"));
		int r = amb_restore_env_store(envpath, env);
		free(env);
		if (r) {
			snprintf(err, errlen, "%s: cannot write: %s", envpath, ams_errmsg());
			rc = 1;
			goto done;
		}
		bk_event(j, BK_EV_RESTORE_LAID, "info", "writer %s: files of %zu backup%s laid down in %s",
		         wname, n, n == 1 ? "" : "s", target);
		if (online) {
			rc = amb_req_post_restore(c, sref.session, items, nitems);
			if (rc) {
				snprintf(err, errlen, "writer %s: post-restore (hard recovery): %s", wname,
				         amb_client_errmsg(c));
				rc = rc < 0 ? 1 : rc;
				goto out;
			}
			amb_req_close(c, sref.session);
			session = false;
			fprintf(o->err, "amber: writer %s recovered the instance and mounted it again\n",
			        wname);
		} else if (!o->no_recover) {
			r = ams_hard_recover(envpath, NULL);
			if (r) {
				snprintf(err, errlen, "hard recovery of %s failed: %s%s", target, ams_errmsg(),
				         r == AMS_ELOGMISSING && !o->no_roll_forward ?
				         " (--to DIR --no-roll-forward restores up to the end of the backup)" :
				         "");
				rc = 1;
				goto out;
			}
			fprintf(o->err, "amber: %s recovered (hard recovery%s)\n", target,
			        o->no_roll_forward ? " without roll-forward" : ", rolled forward");
		} else {
			fprintf(o->err, "amber: files and restore.env are in %s; recover with: "
			        "amber-store hard-recover %s\n", target, target);
			goto out;
		}
		remove_flat(tfd, logdir);
		bk_event(j, BK_EV_RESTORE_RECOVERED, "info", "writer %s: %s recovered", wname, target);
	}
	goto out;
done:
	if (online && session) {
		/* the files could not be laid down: the writer mounts what it has */
		for (size_t i = 0; i < nitems; i++)
			items[i].success = false;
		amb_req_post_restore(c, sref.session, items, nitems);
	}
out:
	if (session) {
		amb_req_abort(c, sref.session, rc ? err : NULL);
		amb_req_close(c, sref.session);
	}
	if (c)
		amb_client_close(c);
	close(tfd);
	return rc;
}

int bk_run_restore(const bk_restore_opts *o)
{
	char err[BK_ERR * 3];
	bk_repo repo;
	int rc = bk_repo_open(o->repo, false, &repo, err, sizeof(err));
	if (rc) {
		fprintf(o->err, "amber: restore: %s\n", err);
		return rc;
	}
	bk_job j;
	bk_job_init(&j, &repo, o->err, o->quiet);
	json_t *list = NULL, *chain[BK_MAX_CHAIN];
	size_t n = 0;
	if ((rc = bk_repo_lock(&repo, false, err, sizeof(err))) != 0 ||
	    (rc = bk_list(&repo, &list, err, sizeof(err))) != 0)
		goto out;
	json_t *d = bk_resolve(list, o->backup, repo.root, &rc, err, sizeof(err));
	if (!d)
		goto out;
	snprintf(j.id, sizeof(j.id), "%s", bk_str(d, "id"));
	n = bk_chain(list, d, chain, err, sizeof(err));
	if (!n) {
		rc = 1;
		goto out;
	}
	bk_event(&j, BK_EV_RESTORE_STARTED, "info", "restore of %s started (chain of %zu)", j.id, n);
	if (!o->quiet) {
		fprintf(o->err, "amber: restoring %s:", j.id);
		for (size_t k = 0; k < n; k++)
			fprintf(o->err, " %s %s", k ? "+" : "", bk_str(chain[k], "type"));
		fprintf(o->err, "\n");
	}
	bk_progress_begin(&j.prog, !o->quiet && isatty(2), "restore: checking the backup", 0);
	rc = check_chain(&j, &repo, list, chain, n, err, sizeof(err));
	bk_progress_end(&j.prog);
	if (rc)
		goto fail;
	size_t i;
	json_t *w0;
	size_t nw = json_array_size(json_object_get(chain[0], "writers"));
	json_array_foreach(json_object_get(chain[0], "writers"), i, w0) {
		rc = restore_writer(&j, o, &repo, list, chain, n, w0, nw, err, sizeof(err));
		if (rc)
			goto fail;
	}
	snprintf(j.id, sizeof(j.id), "%s", bk_str(d, "id"));
	fprintf(o->out, "restored %s\n", j.id);
	rc = 0;
	goto out;
fail:
	snprintf(j.id, sizeof(j.id), "%s", bk_str(d, "id"));
	bk_event(&j, BK_EV_RESTORE_FAILED, "error", "restore failed: %s", err);
out:
	if (rc)
		fprintf(o->err, "amber: restore: %s\n", err);
	if (j.bdirfd >= 0)
		close(j.bdirfd);
	json_decref(list);
	bk_repo_close(&repo);
	return rc;
}

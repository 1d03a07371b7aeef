/*
 * script.c - amber script: run a diskshadow-style script (docs/script.md).
 *
 * The language is parsed by src/script (script.h), the whole file before
 * any line runs, so a malformed line costs nothing (exit 2).  Then each
 * command runs in order; the first that fails stops the script, and the
 * stop is the same whatever the reason (a failed command, an exec'd
 * command's non-zero exit, SIGINT/SIGTERM/SIGHUP, end of input with a
 * backup still open):
 *
 *   - an open amberd session is aborted and closed: writers that had not
 *     yet heard backup-complete record nothing and truncate nothing, and
 *     amberd deletes the set's volatile shadows;
 *   - what the script exposed is unexposed;
 *   - persistent shadows stay (the administrator asked for them), and the
 *     message says how to delete them.
 * A SIGKILLed `amber script` cannot do this itself: amberd aborts the set
 * when the connection drops, and writers thaw at their own deadline.
 *
 * How commands map to amberd (docs/protocol.md section 7):
 *   writer verify|exclude  checked against list-writers at once, sent as
 *                          session-select at create
 *   create                 session-open (full after `begin backup`, else
 *                          copy), session-gather, -select, -add-volume,
 *                          -snapshot; the metadata document is written
 *   end backup             session-backup-complete (success for every
 *                          component: a failed exec stopped the script
 *                          before), session-close
 *   begin|end restore      session-open restore, session-pre-restore |
 *                          session-post-restore, session-close
 *   expose, unexpose, delete shadows, list ...   the shadow-* and list-*
 *                          requests
 *
 * exec'd commands get %NAME% expanded in their arguments and, in their
 * environment, every alias NAME (the shadow id), NAME_PATH (where its data
 * can be read), NAME_VOLUME (the original), AMBER_SHADOW_SET_ID,
 * AMBER_METADATA (the metadata document) and AMBER_BACKUP_TYPE.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dlfcn.h>
#include <jansson.h>

#include "backup/backup.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "common/durable.h"
#include "script/script.h"

#define MAX_SEL 256

typedef struct sel {
	char writer[AMB_NAME_BUF];    /* resolved name */
	char comp[AMB_NAME_BUF];
	amb_select_mode mode;
} sel;

typedef struct vol {
	char *path;
	char alias[SC_NAME_MAX + 1];
	char provider[AMB_NAME_BUF];
	const amb_shadow *shadow;     /* after create */
} vol;

typedef struct run {
	cli_ctx *ctx;
	const char *file;             /* for messages: "FILE" or "<stdin>" */
	bool interactive;
	bool logging;                 /* -l LOG: exec'd output goes through us */
	amb_client *c;
	bool verbose;
	bool persistent, nowriters;
	unsigned options;
	char provider[AMB_NAME_BUF];
	char *metadata;               /* set metadata, or NULL */
	char *metadata_tmp;           /* the one we made when none was set: */
	int metadata_fd;              /* an unlinked file, as /proc/PID/fd/N */
	sel sels[MAX_SEL];
	size_t nsel;
	vol vols[SC_MAX_ALIASES];
	size_t nvol;
	bool in_backup;
	bool session;                 /* a backup or restore session is open */
	bool restore;                 /* ... and it is a restore session */
	amb_session_ref sref;
	amb_msg wl;                   /* the gathered writers */
	amb_msg setm;                 /* the snapshot set */
	bool created;
	amb_comp_result *rres;        /* restore components */
	size_t nrres;
	char *exposed[64];            /* what this script exposed */
	size_t nexp;
	json_t *loaded;               /* load metadata */
	amb_msg loaded_wl;            /* ... its writer list, decoded when loaded */
	amb_msg known;                /* list-writers, asked once per script */
	char val[PATH_MAX + 64];      /* lookup()'s answer */
} run;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	g_stop = sig;
}

/* "amber: FILE:LINE: message"; returns rc. */
static int failf(run *r, const sc_cmd *c, int rc, const char *fmt, ...) CLI_PRINTF(4, 5);
static int failf(run *r, const sc_cmd *c, int rc, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c)
		cli_errorf(r->ctx, "%s:%u: %s", r->file, c->line, msg);
	else
		cli_errorf(r->ctx, "%s: %s", r->file, msg);
	return rc;
}

/* amberd refused: its message and exit class. */
static int amberd_fail(run *r, const sc_cmd *c, int rc, const char *what)
{
	const char *m = r->c ? amb_client_errmsg(r->c) : NULL;
	return failf(r, c, cli_exit_code(rc), "%s: %s", what,
	             m && *m ? m : rc < 0 ? strerror(-rc) : "amberd refused the request");
}

static int need_conn(run *r, const sc_cmd *c)
{
	if (r->c)
		return 0;
	int rc = amb_client_connect(amb_socket_path(r->ctx->socket), AMB_ROLE_REQUESTOR,
	                            "amber-script", &r->c);
	if (rc == 0)
		return 0;
	r->c = NULL;
	return failf(r, c, rc == -ECONNREFUSED || rc == -ENOENT ? CLI_EXIT_RETRY :
	             cli_exit_code(rc), "cannot reach amberd at %s: %s",
	             amb_socket_path(r->ctx->socket), amb_client_last_error());
}

/* -------------------------------------------------------------- names */

/* The shadow of alias NAME, NAME_PATH or NAME_VOLUME; *what is the suffix. */
static const amb_shadow *shadow_of(const run *r, const char *name, const char **what)
{
	for (size_t i = 0; i < r->nvol; i++) {
		size_t l = strlen(r->vols[i].alias);
		if (!l || strncmp(name, r->vols[i].alias, l) != 0)
			continue;
		const char *rest = name + l;
		if (*rest && strcmp(rest, "_PATH") != 0 && strcmp(rest, "_VOLUME") != 0)
			continue;
		*what = rest;
		return r->vols[i].shadow;
	}
	return NULL;
}

static const char *type_name(const run *r)
{
	return r->in_backup ? "full" : "copy";
}

static const char *lookup(const char *name, void *ctx)
{
	run *r = ctx;
	if (strcmp(name, "AMBER_SHADOW_SET_ID") == 0)
		return r->created ? r->setm.u.sset.set : NULL;
	if (strcmp(name, "AMBER_METADATA") == 0)
		return r->created ? (r->metadata ? r->metadata : r->metadata_tmp) : NULL;
	if (strcmp(name, "AMBER_BACKUP_TYPE") == 0)
		return r->created ? type_name(r) : NULL;
	const char *what = "";
	const amb_shadow *s = shadow_of(r, name, &what);
	if (s)
		return !*what ? s->id : strcmp(what, "_PATH") == 0 ? s->path : s->volume;
	return getenv(name);
}

static char *expand(run *r, const sc_cmd *c, const char *in, int *rc)
{
	char err[SC_ERR_MAX];
	char *v = sc_expand(in, lookup, r, err, sizeof(err));
	if (!v)
		*rc = failf(r, c, CLI_EXIT_USAGE, "%s", err);
	return v;
}

/* An absolute, normalized path from an argument (after expansion). */
static char *path_arg(run *r, const sc_cmd *c, const char *in, bool must_exist, int *rc)
{
	char *e = expand(r, c, in, rc);
	if (!e)
		return NULL;
	if (e[0] != '/') {
		*rc = failf(r, c, CLI_EXIT_USAGE, "'%s' is not an absolute path", e);
		free(e);
		return NULL;
	}
	char err[CLI_ERR_BUF];
	char *p = NULL;
	if (cli_path_abs(e, must_exist, &p, err, sizeof(err)) != 0) {
		*rc = failf(r, c, CLI_EXIT_USAGE, "%s", err);
		free(e);
		return NULL;
	}
	free(e);
	return p;
}

static int id_arg(run *r, const sc_cmd *c, const char *in, amb_uuid out)
{
	int rc = 0;
	char *e = expand(r, c, in, &rc);
	if (!e)
		return rc;
	if (cli_parse_uuid(e, out) != 0)
		rc = failf(r, c, CLI_EXIT_USAGE, "'%s' is not a shadow or set id", e);
	free(e);
	return rc;
}

/* ----------------------------------------------------------- writers */

/* The registered writers: asked of amberd once (and again with refresh,
 * when a name was not found: a writer may have registered since). */
static int known_writers(run *r, const sc_cmd *c, bool refresh, const amb_writer_list **out)
{
	int rc = need_conn(r, c);
	if (rc)
		return rc;
	if (refresh || !r->known.kind) {
		amb_msg_free(&r->known);
		memset(&r->known, 0, sizeof(r->known));
		if ((rc = amb_req_list_writers(r->c, &r->known)) != 0) {
			memset(&r->known, 0, sizeof(r->known));
			return amberd_fail(r, c, rc, "list writers");
		}
	}
	*out = &r->known.u.writers;
	return 0;
}

/* NAME, {ID} or NAME/COMPONENT against the registered writers. */
static int resolve_writer(run *r, const sc_cmd *c, const char *spec, bool must, sel *out,
                          bool *found)
{
	char name[512], comp[AMB_NAME_BUF] = "";
	snprintf(name, sizeof(name), "%s", spec);
	char *slash = strchr(name, '/');
	if (slash) {
		*slash = '\0';
		snprintf(comp, sizeof(comp), "%s", slash + 1);
	}
	/* diskshadow writes {ID}\Component */
	char *bs = strchr(name, '\\');
	if (!slash && bs) {
		*bs = '\0';
		snprintf(comp, sizeof(comp), "%s", bs + 1);
	}
	amb_uuid id = "";
	bool by_id = cli_parse_uuid(name, id) == 0;
	*found = false;
	for (int pass = 0; pass < 2 && !*found; pass++) {
		const amb_writer_list *wl = NULL;
		int rc = known_writers(r, c, pass == 1, &wl);
		if (rc)
			return rc;
		for (size_t k = 0; k < wl->n_writers && !*found; k++) {
			const amb_writer_md *md = &wl->writers[k].metadata;
			if (by_id ? strcmp(md->instance, id) != 0 : strcmp(md->name, name) != 0)
				continue;
			*found = true;
			snprintf(out->writer, sizeof(out->writer), "%s", md->name);
			snprintf(out->comp, sizeof(out->comp), "%s", comp);
			bool have = !comp[0];
			for (size_t q = 0; !have && q < md->n_components; q++)
				have = strcmp(md->components[q].name, comp) == 0;
			if (!have)
				return failf(r, c, CLI_EXIT_USAGE, "writer %s has no component %s",
				             md->name, comp);
		}
	}
	if (!*found && must)
		return failf(r, c, CLI_EXIT_USAGE, "writer %s is not registered with amberd (see "
		             "`list writers`)", spec);
	return 0;
}

static bool excluded(const run *r, const char *writer, const char *comp)
{
	for (size_t i = 0; i < r->nsel; i++)
		if (r->sels[i].mode == AMB_SELECT_EXCLUDE && strcmp(r->sels[i].writer, writer) == 0 &&
		    (!r->sels[i].comp[0] || (comp && strcmp(r->sels[i].comp, comp) == 0)))
			return true;
	return false;
}

/* Results for every component of every gathered writer not excluded
 * (amberd passes each participant its own and ignores the rest). */
static amb_comp_result *all_results(const run *r, bool success, size_t *n)
{
	amb_comp_result *res = calloc(AMB_MAX_RESULTS, sizeof(*res));
	*n = 0;
	if (!res)
		return NULL;
	const amb_writer_list *wl = &r->wl.u.writers;
	for (size_t k = 0; k < wl->n_writers; k++) {
		const amb_writer_md *md = &wl->writers[k].metadata;
		for (size_t q = 0; q < md->n_components && *n < AMB_MAX_RESULTS; q++) {
			if (excluded(r, md->name, md->components[q].name))
				continue;
			bool dup = false;
			for (size_t i = 0; i < *n; i++)
				dup |= strcmp(res[i].writer, md->name) == 0 &&
				       strcmp(res[i].component, md->components[q].name) == 0;
			if (dup)
				continue;
			snprintf(res[*n].writer, sizeof(res[0].writer), "%s", md->name);
			snprintf(res[*n].component, sizeof(res[0].component), "%s",
			         md->components[q].name);
			res[*n].success = success;
			(*n)++;
		}
	}
	return res;
}

/* ---------------------------------------------------------- metadata */

static json_t *msg_json(const amb_msg *m)
{
	char *s;
	size_t n;
	if (amb_msg_encode(m, &s, &n) != 0)
		return NULL;
	json_t *j = json_loadb(s, n, 0, NULL);
	free(s);
	return j;
}

/* The metadata document (docs/script.md): what an exec'd `amber backup
 * --metadata` and a later `load metadata` read.  Written durably. */
static int save_metadata(run *r, const sc_cmd *c)
{
	char now[64];
	time_t t = time(NULL);
	struct tm tm;
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	json_t *sels = json_array(), *aliases = json_object();
	for (size_t i = 0; i < r->nsel; i++)
		json_array_append_new(sels, json_pack("{s:s, s:s, s:s}", "writer", r->sels[i].writer,
		                                      "component", r->sels[i].comp, "mode",
		                                      r->sels[i].mode == AMB_SELECT_EXCLUDE ?
		                                      "exclude" : "verify"));
	for (size_t i = 0; i < r->nvol; i++)
		if (r->vols[i].alias[0] && r->vols[i].shadow)
			json_object_set_new(aliases, r->vols[i].alias,
			                    json_string(r->vols[i].shadow->id));
	json_t *doc = json_pack("{s:s, s:i, s:s, s:s, s:s, s:b, s:s, s:s, s:o, s:o, s:o*, s:o*}",
	                        "format", "amber-script-metadata", "version", 1, "created", now,
	                        "backup_type", type_name(r), "context",
	                        r->persistent ? "persistent" : "volatile", "writers", !r->nowriters,
	                        "session", r->sref.session, "set", r->setm.u.sset.set,
	                        "selections", sels, "aliases", aliases,
	                        "writer_list", msg_json(&r->wl), "snapshot_set", msg_json(&r->setm));
	char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
	json_decref(doc);
	if (!text)
		return failf(r, c, CLI_EXIT_FAILED, "out of memory");
	const char *path = r->metadata;
	int e = 0;
	if (path) {
		e = amb_durable_write(amb_vfs_posix(), path, text, strlen(text));
	} else {
		/* no set metadata: a file with no name, which the kernel removes
		 * when this process ends however it ends (SIGKILL included);
		 * exec'd commands read it as /proc/PID/fd/N */
		const char *tmp = getenv("TMPDIR");
		int fd = open(tmp && *tmp ? tmp : "/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		size_t len = strlen(text), off = 0;
		while (fd >= 0 && off < len) {
			ssize_t w = write(fd, text + off, len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				e = w < 0 ? -errno : -EIO;
				break;
			}
			off += (size_t)w;
		}
		char p[64];
		if (fd < 0) {
			e = -errno;
		} else if (!e) {
			snprintf(p, sizeof(p), "/proc/%d/fd/%d", (int)getpid(), fd);
			r->metadata_tmp = strdup(p);
			r->metadata_fd = fd;
			if (!r->metadata_tmp)
				e = -ENOMEM;
		}
		if (e && fd >= 0)
			close(fd);
		path = r->metadata_tmp ? r->metadata_tmp : "(temporary file)";
	}
	free(text);
	if (e)
		return failf(r, c, CLI_EXIT_FAILED, "metadata %s: %s", path, strerror(-e));
	if (r->verbose)
		fprintf(r->ctx->out, "The metadata document is %s\n", path);
	return 0;
}

/* ---------------------------------------------------------- commands */

static void session_end(run *r, const char *why)
{
	if (!r->session)
		return;
	amb_req_abort(r->c, r->sref.session, why);
	amb_req_close(r->c, r->sref.session);
	r->session = false;
}

/* Forget the set (at the next begin backup, reset, or a stop). */
static void forget_set(run *r)
{
	for (size_t i = 0; i < r->nvol; i++)
		free(r->vols[i].path);
	r->nvol = 0;
	r->nsel = 0;
	r->in_backup = false;
	r->created = false;
	amb_msg_free(&r->wl);
	amb_msg_free(&r->setm);
	memset(&r->wl, 0, sizeof(r->wl));
	memset(&r->setm, 0, sizeof(r->setm));
	free(r->rres);
	r->rres = NULL;
	r->nrres = 0;
	if (r->metadata_tmp) {
		close(r->metadata_fd);
		free(r->metadata_tmp);
		r->metadata_tmp = NULL;
	}
}

static int do_writer(run *r, const sc_cmd *c)
{
	bool exclude = c->op == SC_WRITER_EXCLUDE;
	sel s;
	memset(&s, 0, sizeof(s));
	bool found = false;
	int rc = resolve_writer(r, c, c->arg[0], !exclude, &s, &found);
	if (rc)
		return rc;
	if (!found) {
		if (r->verbose)
			fprintf(r->ctx->out, "Writer %s is not registered: nothing to exclude\n",
			        c->arg[0]);
		return 0;
	}
	if (r->nsel == MAX_SEL)
		return failf(r, c, CLI_EXIT_USAGE, "too many writer commands");
	s.mode = exclude ? AMB_SELECT_EXCLUDE : AMB_SELECT_VERIFY;
	r->sels[r->nsel++] = s;
	if (r->verbose)
		fprintf(r->ctx->out, "Writer %s%s%s will be %s\n", s.writer, s.comp[0] ? "/" : "",
		        s.comp, exclude ? "left out" : "required to take part");
	return 0;
}

static int do_add_volume(run *r, const sc_cmd *c)
{
	int rc = 0;
	char *p = path_arg(r, c, c->arg[0], true, &rc);
	if (!p)
		return rc;
	for (size_t i = 0; i < r->nvol; i++)
		if (strcmp(r->vols[i].path, p) == 0) {
			rc = failf(r, c, CLI_EXIT_USAGE, "volume %s added twice (as %s)", c->arg[0], p);
			free(p);
			return rc;
		}
	vol *v = &r->vols[r->nvol++];
	memset(v, 0, sizeof(*v));
	v->path = p;
	snprintf(v->alias, sizeof(v->alias), "%s", c->arg[1] ? c->arg[1] : "");
	snprintf(v->provider, sizeof(v->provider), "%s", c->arg[2] ? c->arg[2] : "");
	return 0;
}

static int do_create(run *r, const sc_cmd *c)
{
	int rc = need_conn(r, c);
	if (rc)
		return rc;
	amb_session_open so;
	memset(&so, 0, sizeof(so));
	so.mode = AMB_SESSION_BACKUP;
	so.backup_type = r->in_backup ? AMB_BACKUP_FULL : AMB_BACKUP_COPY;
	so.persistent = r->persistent;
	so.no_writers = r->nowriters;
	snprintf(so.provider, sizeof(so.provider), "%s", r->provider);
	if ((rc = amb_req_session_open(r->c, &so, &r->sref)) != 0)
		return amberd_fail(r, c, rc, "create");
	r->session = true;
	r->restore = false;
	if ((rc = amb_req_gather(r->c, r->sref.session, &r->wl)) != 0)
		return amberd_fail(r, c, rc, "create: gathering the writers");
	if (r->verbose) {
		const amb_writer_list *wl = &r->wl.u.writers;
		for (size_t k = 0; k < wl->n_writers; k++)
			fprintf(r->ctx->out, "Writer %s {%s}: %s\n", wl->writers[k].metadata.name,
			        wl->writers[k].metadata.instance,
			        excluded(r, wl->writers[k].metadata.name, NULL) ? "excluded" : "gathered");
	}
	for (size_t i = 0; i < r->nsel; i++) {
		rc = amb_req_select(r->c, r->sref.session, r->sels[i].writer,
		                    r->sels[i].comp[0] ? r->sels[i].comp : NULL, r->sels[i].mode);
		if (rc)
			return amberd_fail(r, c, rc, "create: selecting the writers");
	}
	for (size_t i = 0; i < r->nvol; i++) {
		rc = amb_req_add_volume(r->c, r->sref.session, r->vols[i].path,
		                        r->vols[i].provider[0] ? r->vols[i].provider : NULL);
		if (rc) {
			char what[PATH_MAX + 32];
			snprintf(what, sizeof(what), "add volume %s", r->vols[i].path);
			return amberd_fail(r, c, rc, what);
		}
	}
	if ((rc = amb_req_snapshot(r->c, r->sref.session, &r->setm)) != 0)
		return amberd_fail(r, c, rc, "create: the shadow copy failed");
	r->created = true;
	const amb_snapshot_set *set = &r->setm.u.sset;
	for (size_t i = 0; i < r->nvol; i++)
		for (size_t k = 0; k < set->n_shadows; k++)
			if (strcmp(set->shadows[k].volume, r->vols[i].path) == 0)
				r->vols[i].shadow = &set->shadows[k];
	for (size_t k = 0; k < set->n_shadows; k++) {
		const amb_shadow *s = &set->shadows[k];
		if ((r->options & SC_OPT_DIFFERENTIAL) && strcmp(s->provider, "copy") == 0)
			return failf(r, c, CLI_EXIT_FAILED, "set option differential: the shadow of %s "
			             "was made by the copy provider, which is a full copy", s->volume);
	}
	fprintf(r->ctx->out, "Shadow copy set {%s} created (%s, %s)\n", set->set,
	        so.backup_type == AMB_BACKUP_FULL ? "full backup" : "copy backup",
	        r->persistent ? "persistent" : "volatile");
	for (size_t i = 0; i < r->nvol; i++) {
		const amb_shadow *s = r->vols[i].shadow;
		if (!s)
			continue;
		fprintf(r->ctx->out, "   %s%s%s{%s} %s -> %s (%s)\n", r->vols[i].alias[0] ? "%" : "",
		        r->vols[i].alias, r->vols[i].alias[0] ? "% = " : "", s->id, s->volume, s->path,
		        s->provider);
	}
	return save_metadata(r, c);
}

static int do_end_backup(run *r, const sc_cmd *c)
{
	size_t n;
	amb_comp_result *res = all_results(r, true, &n);
	if (!res)
		return failf(r, c, CLI_EXIT_FAILED, "out of memory");
	int rc = amb_req_backup_complete(r->c, r->sref.session, res, n);
	free(res);
	if (rc)
		return amberd_fail(r, c, rc, "end backup");
	amb_req_close(r->c, r->sref.session);
	r->session = false;
	fprintf(r->ctx->out, "Backup complete: the writers recorded the full backup and "
	        "truncated their logs\n");
	/* the set's names (%ALIAS%, %AMBER_SHADOW_SET_ID%) stay valid until
	 * the next begin backup or reset */
	r->in_backup = false;
	return 0;
}

/* The components of a restore: the loaded metadata's writers, else the
 * writers named with writer verify. */
static int restore_items(run *r, const sc_cmd *c)
{
	r->rres = calloc(AMB_MAX_RESULTS, sizeof(*r->rres));
	r->nrres = 0;
	if (!r->rres)
		return failf(r, c, CLI_EXIT_FAILED, "out of memory");
	const amb_writer_list *l = &r->loaded_wl.u.writers;
	if (!r->loaded) {
		int rc = known_writers(r, c, true, &l);
		if (rc)
			return rc;
	}
	for (size_t k = 0; k < l->n_writers; k++) {
		const amb_writer_md *md = &l->writers[k].metadata;
		bool take = r->loaded != NULL && !excluded(r, md->name, NULL);
		for (size_t i = 0; !take && i < r->nsel; i++)
			take = r->sels[i].mode != AMB_SELECT_EXCLUDE && strcmp(r->sels[i].writer,
			                                                      md->name) == 0;
		for (size_t q = 0; take && q < md->n_components && r->nrres < AMB_MAX_RESULTS; q++) {
			amb_comp_result *it = &r->rres[r->nrres++];
			snprintf(it->writer, sizeof(it->writer), "%s", md->name);
			snprintf(it->component, sizeof(it->component), "%s", md->components[q].name);
			it->success = true;
		}
	}
	if (!r->nrres)
		return failf(r, c, CLI_EXIT_USAGE, "begin restore: no writer to restore (load "
		             "metadata FILE, or writer verify NAME, first)");
	return 0;
}

static int do_begin_restore(run *r, const sc_cmd *c)
{
	int rc = need_conn(r, c);
	if (rc || (rc = restore_items(r, c)) != 0)
		return rc;
	amb_session_open so;
	memset(&so, 0, sizeof(so));
	so.mode = AMB_SESSION_RESTORE;
	if ((rc = amb_req_session_open(r->c, &so, &r->sref)) != 0)
		return amberd_fail(r, c, rc, "begin restore");
	r->session = true;
	r->restore = true;
	if ((rc = amb_req_gather(r->c, r->sref.session, &r->wl)) != 0)
		return amberd_fail(r, c, rc, "begin restore: gathering the writers");
	if ((rc = amb_req_pre_restore(r->c, r->sref.session, r->rres, r->nrres)) != 0)
		return amberd_fail(r, c, rc, "begin restore (pre-restore)");
	fprintf(r->ctx->out, "Restore begun: %zu component%s dismounted for the restore\n",
	        r->nrres, r->nrres == 1 ? "" : "s");
	return 0;
}

static int do_end_restore(run *r, const sc_cmd *c)
{
	int rc = amb_req_post_restore(r->c, r->sref.session, r->rres, r->nrres);
	if (rc)
		return amberd_fail(r, c, rc, "end restore (post-restore)");
	amb_req_close(r->c, r->sref.session);
	r->session = false;
	fprintf(r->ctx->out, "Restore complete: the writers recovered and mounted again\n");
	forget_set(r);
	return 0;
}

static int do_expose(run *r, const sc_cmd *c)
{
	amb_uuid id;
	int rc = id_arg(r, c, c->arg[0], id);
	if (rc)
		return rc;
	char *p = path_arg(r, c, c->arg[1], false, &rc);
	if (!p)
		return rc;
	if ((rc = need_conn(r, c)) != 0 || (rc = amb_req_shadow_expose(r->c, id, p)) != 0) {
		if (r->c)
			rc = amberd_fail(r, c, rc, "expose");
		free(p);
		return rc;
	}
	fprintf(r->ctx->out, "Shadow {%s} exposed at %s\n", id, p);
	if (r->nexp < sizeof(r->exposed) / sizeof(r->exposed[0]))
		r->exposed[r->nexp++] = p;
	else
		free(p);
	return 0;
}

static void forget_exposed(run *r, const char *p)
{
	for (size_t i = 0; i < r->nexp; i++)
		if (strcmp(r->exposed[i], p) == 0) {
			free(r->exposed[i]);
			r->exposed[i] = r->exposed[--r->nexp];
			return;
		}
}

static int do_unexpose(run *r, const sc_cmd *c)
{
	int rc = 0;
	char *p = path_arg(r, c, c->arg[0], false, &rc);
	if (!p)
		return rc;
	if ((rc = need_conn(r, c)) != 0 || (rc = amb_req_shadow_unexpose(r->c, p)) != 0) {
		if (r->c)
			rc = amberd_fail(r, c, rc, "unexpose");
		free(p);
		return rc;
	}
	fprintf(r->ctx->out, "%s unexposed\n", p);
	forget_exposed(r, p);
	free(p);
	return 0;
}

static int do_delete(run *r, const sc_cmd *c)
{
	amb_shadow_delete d;
	memset(&d, 0, sizeof(d));
	int rc = 0;
	switch (c->sub) {
	case SC_DEL_ALL: d.all = true; break;
	case SC_DEL_SET: rc = id_arg(r, c, c->arg[0], d.set); break;
	case SC_DEL_ID: rc = id_arg(r, c, c->arg[0], d.shadow); break;
	case SC_DEL_EXPOSED:
		if (!(d.exposed = path_arg(r, c, c->arg[0], false, &rc)))
			return rc;
		break;
	case SC_DEL_OLDEST:
		if (!(d.oldest = path_arg(r, c, c->arg[0], false, &rc)))
			return rc;
		break;
	}
	amb_msg out;
	memset(&out, 0, sizeof(out));
	if (!rc && !(rc = need_conn(r, c)) && (rc = amb_req_shadow_delete(r->c, &d, &out)) != 0)
		rc = amberd_fail(r, c, rc, "delete shadows");
	if (!rc) {
		size_t n = out.u.deleted.n_shadows;
		fprintf(r->ctx->out, "%zu shadow cop%s deleted\n", n, n == 1 ? "y" : "ies");
		for (size_t i = 0; i < n; i++)
			fprintf(r->ctx->out, "   {%s}\n", out.u.deleted.shadows[i]);
		if (d.exposed)
			forget_exposed(r, d.exposed);
		if (d.all)
			while (r->nexp)
				free(r->exposed[--r->nexp]);
	}
	amb_msg_free(&out);
	free(d.exposed);
	free(d.oldest);
	return rc;
}

static int do_list(run *r, const sc_cmd *c)
{
	int rc = need_conn(r, c);
	if (rc)
		return rc;
	amb_msg m;
	memset(&m, 0, sizeof(m));
	FILE *f = r->ctx->out;
	if (c->op == SC_LIST_PROVIDERS) {
		if ((rc = amb_req_list_providers(r->c, &m)) != 0)
			return amberd_fail(r, c, rc, "list providers");
		for (size_t k = 0; k < m.u.providers.n_providers; k++)
			cli_print_provider(f, &m.u.providers.providers[k]);
	} else if (c->op == SC_LIST_WRITERS) {
		if ((rc = amb_req_list_writers(r->c, &m)) != 0)
			return amberd_fail(r, c, rc, "list writers");
		for (size_t k = 0; k < m.u.writers.n_writers; k++) {
			const amb_writer_info *w = &m.u.writers.writers[k];
			if (c->sub == SC_LW_STATUS) {
				fprintf(f, "%-20s {%s} [%d] %s\n", w->metadata.name, w->metadata.instance,
				        (int)w->state, cli_writer_state_text(w->state));
				continue;
			}
			cli_print_writer(f, w);
			if (c->sub == SC_LW_METADATA || c->sub == SC_LW_DETAILED) {
				json_t *j = cli_json_writer(w);
				cli_json_print(f, j, true);
			}
		}
		if (!m.u.writers.n_writers)
			fprintf(f, "No writers are registered.\n");
	} else {
		amb_uuid set = "", id = "";
		if (c->sub == SC_LS_SET && (rc = id_arg(r, c, c->arg[0], set)) != 0)
			return rc;
		if (c->sub == SC_LS_ID && (rc = id_arg(r, c, c->arg[0], id)) != 0)
			return rc;
		if ((rc = amb_req_list_shadows(r->c, set[0] ? set : NULL, NULL, 0, 0, &m)) != 0)
			return amberd_fail(r, c, rc, "list shadows");
		const amb_shadow **v = calloc(m.u.shadows.n_shadows + 1, sizeof(*v));
		size_t n = 0;
		for (size_t k = 0; v && k < m.u.shadows.n_shadows; k++)
			if (!id[0] || strcmp(m.u.shadows.shadows[k].id, id) == 0)
				v[n++] = &m.u.shadows.shadows[k];
		if (n == 0)
			fprintf(f, "No shadow copies found.\n");
		else if (v)
			cli_print_shadows(f, v, n);
		free(v);
	}
	amb_msg_free(&m);
	return 0;
}

static int do_load_metadata(run *r, const sc_cmd *c)
{
	int rc = 0;
	char *p = path_arg(r, c, c->arg[0], true, &rc);
	if (!p)
		return rc;
	json_error_t je;
	json_t *j = json_load_file(p, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		rc = failf(r, c, CLI_EXIT_USAGE, "load metadata %s: %s (line %d)", p, je.text, je.line);
		free(p);
		return rc;
	}
	const char *fmt = json_string_value(json_object_get(j, "format"));
	if (!fmt || strcmp(fmt, "amber-script-metadata") != 0 ||
	    json_integer_value(json_object_get(j, "version")) != 1 ||
	    !json_is_object(json_object_get(j, "writer_list"))) {
		rc = failf(r, c, CLI_EXIT_USAGE, "load metadata %s: not an amber script metadata "
		           "document (version 1)", p);
		json_decref(j);
		free(p);
		return rc;
	}
	char *wtext = json_dumps(json_object_get(j, "writer_list"), JSON_COMPACT);
	char derr[256] = "out of memory";
	amb_msg wl;
	memset(&wl, 0, sizeof(wl));
	int drc = wtext ? amb_msg_decode(wtext, strlen(wtext), &wl, derr, sizeof(derr)) : -ENOMEM;
	free(wtext);
	if (!drc && wl.kind != AMB_MSG_WRITER_LIST) {
		amb_msg_free(&wl);
		snprintf(derr, sizeof(derr), "not a writer-list");
		drc = -EINVAL;
	}
	if (drc) {
		rc = failf(r, c, CLI_EXIT_USAGE, "load metadata %s: \"writer_list\": %s", p, derr);
		json_decref(j);
		free(p);
		return rc;
	}
	json_decref(r->loaded);
	amb_msg_free(&r->loaded_wl);
	r->loaded = j;
	r->loaded_wl = wl;
	fprintf(r->ctx->out, "Metadata of shadow copy set {%s} loaded from %s\n",
	        json_string_value(json_object_get(j, "set")) ?
	        json_string_value(json_object_get(j, "set")) : "?", p);
	free(p);
	return 0;
}

/* Run COMMAND [ARGS]; a non-zero exit stops the script. */
static int do_exec(run *r, const sc_cmd *c)
{
	int rc = 0;
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 };
	char **argv = calloc(c->argc + 1, sizeof(char *));
	if (!argv)
		return failf(r, c, CLI_EXIT_FAILED, "out of memory");
	for (size_t i = 0; i < c->argc && !rc; i++)
		argv[i] = expand(r, c, c->argv[i], &rc);
	if (rc)
		goto out;
	fflush(r->ctx->out);
	fflush(r->ctx->err);
	fflush(stdout);
	fflush(stderr);
	/* with -l LOG the command's output is copied into the log too */
	if (r->logging && (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0)) {
		rc = failf(r, c, CLI_EXIT_FAILED, "exec %s: pipe: %s", argv[0], strerror(errno));
		goto out;
	}
	pid_t pid = fork();
	if (pid < 0) {
		rc = failf(r, c, CLI_EXIT_FAILED, "exec %s: fork: %s", argv[0], strerror(errno));
		goto out;
	}
	if (pid == 0) {
		for (size_t i = 0; i < r->nvol; i++) {
			const amb_shadow *s = r->vols[i].shadow;
			if (!r->vols[i].alias[0] || !s)
				continue;
			char name[SC_NAME_MAX + 16];
			setenv(r->vols[i].alias, s->id, 1);
			snprintf(name, sizeof(name), "%s_PATH", r->vols[i].alias);
			setenv(name, s->path, 1);
			snprintf(name, sizeof(name), "%s_VOLUME", r->vols[i].alias);
			setenv(name, s->volume, 1);
		}
		if (r->created) {
			setenv("AMBER_SHADOW_SET_ID", r->setm.u.sset.set, 1);
			setenv("AMBER_METADATA", r->metadata ? r->metadata : r->metadata_tmp, 1);
			setenv("AMBER_BACKUP_TYPE", type_name(r), 1);
		}
		if (r->ctx->socket)
			setenv("AMBER_SOCKET", r->ctx->socket, 1);
		if (po[1] >= 0) {
			dup2(po[1], 1);
			dup2(pe[1], 2);
		}
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		execvp(argv[0], argv);
		fprintf(stderr, "amber: %s:%u: exec %s: %s\n", r->file, c->line, argv[0],
		        strerror(errno));
		_exit(127);
	}
	int st = 0;
	bool forwarded = false;
	if (po[0] >= 0) {
		close(po[1]);
		close(pe[1]);
		po[1] = pe[1] = -1;
		struct pollfd pf[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
		int open_fds = 2;
		char buf[4096];
		while (open_fds > 0) {
			if (g_stop && !forwarded) {
				kill(pid, (int)g_stop);
				forwarded = true;
			}
			int n = poll(pf, 2, 200);
			if (n < 0 && errno != EINTR)
				break;
			for (int k = 0; n > 0 && k < 2; k++) {
				if (pf[k].fd < 0 || !pf[k].revents)
					continue;
				ssize_t got = read(pf[k].fd, buf, sizeof(buf));
				if (got > 0) {
					fwrite(buf, 1, (size_t)got, k ? r->ctx->err : r->ctx->out);
				} else if (got == 0 || errno != EINTR) {
					pf[k].fd = -1;
					open_fds--;
				}
			}
		}
		fflush(r->ctx->out);
		fflush(r->ctx->err);
	}
	for (;;) {
		pid_t w = waitpid(pid, &st, 0);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			break;
		if (g_stop && !forwarded) {
			kill(pid, (int)g_stop);
			forwarded = true;
		}
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		if (r->verbose)
			fprintf(r->ctx->out, "exec %s: exit status 0\n", argv[0]);
		goto out;
	}
	if (WIFSIGNALED(st))
		rc = failf(r, c, CLI_EXIT_FAILED, "exec %s: killed by signal %d (%s)", argv[0],
		           WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		rc = failf(r, c, CLI_EXIT_FAILED, "exec %s: exit status %d", argv[0],
		           WEXITSTATUS(st));
out:
	for (int k = 0; k < 2; k++) {
		if (po[k] >= 0)
			close(po[k]);
		if (pe[k] >= 0)
			close(pe[k]);
	}
	for (size_t i = 0; i < c->argc; i++)
		free(argv[i]);
	free(argv);
	return rc;
}

static int do_reset(run *r)
{
	if (r->session) {
		session_end(r, "reset by the script");
		fprintf(r->ctx->out, "The set in progress was aborted%s\n",
		        r->created && !r->persistent ? " and its volatile shadows deleted" : "");
	}
	forget_set(r);
	r->persistent = r->nowriters = false;
	r->options = 0;
	r->provider[0] = '\0';
	free(r->metadata);
	r->metadata = NULL;
	return 0;
}

static int run_cmd(run *r, const sc_cmd *c)
{
	char text[1024];
	if (!r->interactive)
		fprintf(r->ctx->out, "-> %s\n", sc_cmd_text(c, text, sizeof(text)));
	switch (c->op) {
	case SC_NONE: return 0;
	case SC_SET_CONTEXT:
		r->persistent = c->sub == SC_CTX_PERSISTENT;
		r->nowriters = c->flag;
		return 0;
	case SC_SET_VERBOSE: r->verbose = c->flag; return 0;
	case SC_SET_METADATA: {
		int rc = 0;
		char *p = path_arg(r, c, c->arg[0], false, &rc);
		if (!p)
			return rc;
		free(r->metadata);
		r->metadata = p;
		return 0;
	}
	case SC_SET_OPTION:
		r->options = (unsigned)c->sub;
		if ((r->options & SC_OPT_PLEX) && !r->provider[0])
			snprintf(r->provider, sizeof(r->provider), "copy");
		if (r->verbose && (r->options & SC_OPT_NOAUTORECOVER))
			fprintf(r->ctx->out, "noautorecover: amber's shadows are always read-only and "
			        "never recovered in place\n");
		return 0;
	case SC_SET_PROVIDER:
		snprintf(r->provider, sizeof(r->provider), "%s",
		         strcasecmp(c->arg[0], "auto") == 0 ? "" : c->arg[0]);
		return 0;
	case SC_WRITER_VERIFY:
	case SC_WRITER_EXCLUDE: return do_writer(r, c);
	case SC_BEGIN_BACKUP:
		if (r->created) {
			/* the previous set ended with end backup; its writer
			 * selections carry over to this one */
			size_t n = r->nsel;
			sel *keep = malloc(n * sizeof(*keep) + 1);
			if (!keep)
				return failf(r, c, CLI_EXIT_FAILED, "out of memory");
			memcpy(keep, r->sels, n * sizeof(*keep));
			forget_set(r);
			memcpy(r->sels, keep, n * sizeof(*keep));
			r->nsel = n;
			free(keep);
		}
		r->in_backup = true;
		return 0;
	case SC_END_BACKUP: return do_end_backup(r, c);
	case SC_BEGIN_RESTORE: return do_begin_restore(r, c);
	case SC_END_RESTORE: return do_end_restore(r, c);
	case SC_ADD_VOLUME: return do_add_volume(r, c);
	case SC_CREATE: return do_create(r, c);
	case SC_EXPOSE: return do_expose(r, c);
	case SC_UNEXPOSE: return do_unexpose(r, c);
	case SC_EXEC: return do_exec(r, c);
	case SC_DELETE_SHADOWS: return do_delete(r, c);
	case SC_LIST_WRITERS:
	case SC_LIST_SHADOWS:
	case SC_LIST_PROVIDERS: return do_list(r, c);
	case SC_LOAD_METADATA: return do_load_metadata(r, c);
	case SC_RESET: return do_reset(r);
	case SC_EXIT: return 0;
	}
	return 0;
}

/* The end of a script, good or bad (see the top of the file). */
static int finish(run *r, int rc)
{
	if (rc == 0 && r->session && !r->restore && r->created && !r->in_backup) {
		/* a copy backup: complete it (copy records nothing, truncates nothing) */
		size_t n;
		amb_comp_result *res = all_results(r, true, &n);
		if (res && amb_req_backup_complete(r->c, r->sref.session, res, n) == 0) {
			amb_req_close(r->c, r->sref.session);
			r->session = false;
		}
		free(res);
	}
	if (r->session) {
		if (rc == 0)
			cli_errorf(r->ctx, "%s: the script ended inside %s: aborted; nothing was recorded "
			           "or truncated", r->file, r->restore ? "begin restore" : "begin backup");
		session_end(r, rc ? "the script stopped" : "the script ended without end backup");
		if (!rc)
			rc = CLI_EXIT_FAILED;
	}
	if (rc) {
		for (size_t i = 0; i < r->nexp; i++) {
			if (r->c && amb_req_shadow_unexpose(r->c, r->exposed[i]) == 0)
				cli_errorf(r->ctx, "%s: unexposed %s", r->file, r->exposed[i]);
			else
				cli_errorf(r->ctx, "%s: could not unexpose %s", r->file, r->exposed[i]);
		}
		if (r->created && r->persistent)
			cli_errorf(r->ctx, "%s: the persistent shadow copy set {%s} was kept; delete it "
			           "with: amber delete shadows --set %s", r->file, r->setm.u.sset.set,
			           r->setm.u.sset.set);
	}
	while (r->nexp)
		free(r->exposed[--r->nexp]);
	forget_set(r);
	free(r->metadata);
	json_decref(r->loaded);
	amb_msg_free(&r->loaded_wl);
	amb_msg_free(&r->known);
	if (r->c)
		amb_client_close(r->c);
	return rc;
}

/* --------------------------------------------------------------- log */

/* -l LOG: everything printed also goes to the log. */
typedef struct teeio {
	FILE *a, *b;
} teeio;

static ssize_t tee_write(void *cookie, const char *buf, size_t n)
{
	teeio *t = cookie;
	fwrite(buf, 1, n, t->a);
	fflush(t->a);
	fwrite(buf, 1, n, t->b);
	fflush(t->b);
	return (ssize_t)n;
}

static int tee_close(void *cookie)
{
	free(cookie);
	return 0;
}

static FILE *tee_open(FILE *a, FILE *b)
{
	teeio *t = malloc(sizeof(*t));
	if (!t)
		return NULL;
	t->a = a;
	t->b = b;
	cookie_io_functions_t io = { .write = tee_write, .close = tee_close };
	FILE *f = fopencookie(t, "w", io);
	if (!f)
		free(t);
	else
		setvbuf(f, NULL, _IOLBF, 0);
	return f;
}

/* ----------------------------------------------------------- the command */

enum { OPT_LOG = 1, OPT_GENERATE, OPT_REPO };

static int read_all(FILE *f, char **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *b = malloc(cap);
	if (!b)
		return -ENOMEM;
	for (;;) {
		if (n == cap) {
			if (cap >= (size_t)64 << 20) {
				free(b);
				return -EFBIG;
			}
			char *v = realloc(b, cap * 2);
			if (!v) {
				free(b);
				return -ENOMEM;
			}
			b = v;
			cap *= 2;
		}
		size_t k = fread(b + n, 1, cap - n, f);
		n += k;
		if (k == 0) {
			if (ferror(f)) {
				free(b);
				return -EIO;
			}
			break;
		}
	}
	*out = b;
	*len = n;
	return 0;
}

static int run_file(run *r, const char *text, size_t len)
{
	sc_script s;
	char err[SC_ERR_MAX + 64];
	if (sc_parse_text(text, len, &s, err, sizeof(err)) != 0) {
		cli_errorf(r->ctx, "%s:%s", r->file, err);
		cli_errorf(r->ctx, "%s: nothing was run", r->file);
		return CLI_EXIT_USAGE;
	}
	if (s.warn[0])
		cli_errorf(r->ctx, "%s:%s (warning)", r->file, s.warn);
	int rc = 0;
	for (size_t i = 0; i < s.n && !rc; i++) {
		if (g_stop) {
			rc = failf(r, &s.cmds[i], CLI_EXIT_FAILED, "stopped by signal %d before this "
			           "line", (int)g_stop);
			break;
		}
		if (s.cmds[i].op == SC_EXIT) {
			run_cmd(r, &s.cmds[i]);
			break;
		}
		rc = run_cmd(r, &s.cmds[i]);
		if (!rc && g_stop)
			rc = failf(r, &s.cmds[i], CLI_EXIT_FAILED, "stopped by signal %d", (int)g_stop);
	}
	sc_script_free(&s);
	return finish(r, rc);
}

/* The prompt's line editing and history come from libedit, loaded when the
 * prompt starts rather than linked: every other amber command (a backup
 * run from cron, say) then starts without reading libedit and the three
 * libraries it pulls in (~3 ms of a cold start).  Without libedit the
 * prompt still works, with plain line input and no history. */
typedef struct line_editor {
	void *lib;
	char *(*readline)(const char *prompt);
	int (*add_history)(const char *line);
} line_editor;

static void editor_open(line_editor *ed)
{
	memset(ed, 0, sizeof(*ed));
	ed->lib = dlopen("libedit.so.2", RTLD_NOW | RTLD_LOCAL);
	if (!ed->lib)
		return;
	*(void **)&ed->readline = dlsym(ed->lib, "readline");
	*(void **)&ed->add_history = dlsym(ed->lib, "add_history");
	if (!ed->readline || !ed->add_history) {
		dlclose(ed->lib);
		memset(ed, 0, sizeof(*ed));
	}
}

/* One line without its newline, malloc'd (free() it), or NULL at the end
 * of input. */
static char *editor_line(line_editor *ed, FILE *out, const char *prompt)
{
	if (ed->readline)
		return ed->readline(prompt);
	fputs(prompt, out);
	fflush(out);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, stdin);
	if (n < 0) {
		free(line);
		return NULL;
	}
	if (n && line[n - 1] == '\n')
		line[n - 1] = 0;
	return line;
}

static int run_interactive(run *r)
{
	line_editor ed;
	editor_open(&ed);
	sc_parser p;
	sc_parser_init(&p);
	unsigned lineno = 0;
	int last = 0;
	fprintf(r->ctx->out, "amber script: type commands (see amber script --help), "
	        "exit or Ctrl-D to leave.\n");
	if (!ed.lib)
		fprintf(r->ctx->out, "(libedit.so.2 could not be loaded: no line editing or history)\n");
	for (;;) {
		g_stop = 0;
		char *line = editor_line(&ed, r->ctx->out, "AMBER> ");
		if (!line)
			break;
		lineno++;
		if (*line && ed.add_history)
			ed.add_history(line);
		sc_cmd c;
		char err[SC_ERR_MAX];
		if (sc_parse_line(&p, line, lineno, &c, err, sizeof(err)) != 0) {
			cli_errorf(r->ctx, "%s", strchr(err, ' ') ? strchr(err, ' ') + 1 : err);
			free(line);
			last = CLI_EXIT_USAGE;
			continue;
		}
		free(line);
		if (c.op == SC_EXIT) {
			sc_cmd_free(&c);
			break;
		}
		last = run_cmd(r, &c);
		if (last && (r->session || r->created)) {
			/* a failed step ends the set: abort it, as a script would */
			session_end(r, "a command failed at the prompt");
			forget_set(r);
			sc_parser_free(&p);
			sc_parser_init(&p);
			cli_errorf(r->ctx, "the set in progress was aborted; nothing was recorded or "
			           "truncated");
		}
		sc_cmd_free(&c);
	}
	sc_parser_free(&p);
	/* libedit stays loaded: it may have left terminal state and handlers
	 * that expect it until exit */
	return finish(r, last && r->session ? last : 0);
}

int cmd_script(cli_ctx *ctx, int argc, char **argv)
{
	static const cli_opt opts[] = {
		{ "log", 'l', true, OPT_LOG },
		{ "generate", 0, true, OPT_GENERATE },
		{ "repo", 0, true, OPT_REPO },
	};
	cli_parser p;
	cli_parser_init(&p, ctx, argc, argv, opts, sizeof(opts) / sizeof(opts[0]));
	const char *file = NULL, *log = NULL, *gen = NULL, *repo = NULL;
	int k;
	while ((k = cli_next(&p)) != CLI_ARG_END) {
		switch (k) {
		case CLI_ARG_ERR: return cli_usage(ctx, "%s", p.err);
		case CLI_ARG_POS:
			if (file)
				return cli_usage(ctx, "unexpected argument '%s' (one script at a time)",
				                 p.value);
			file = p.value;
			break;
		case OPT_LOG: log = p.value; break;
		case OPT_GENERATE: gen = p.value; break;
		case OPT_REPO: repo = p.value; break;
		}
	}
	if (gen) {
		if (strcmp(gen, "backup") != 0)
			return cli_usage(ctx, "--generate %s: only 'backup' scripts are generated", gen);
		if (!repo)
			return cli_usage(ctx, "--generate backup needs --repo REPO");
		if (file || log)
			return cli_usage(ctx, "--generate prints a script; it takes no FILE or --log");
		return cli_script_generate(ctx, repo);
	}
	if (repo)
		return cli_usage(ctx, "--repo goes with --generate backup");

	run *r = calloc(1, sizeof(*r));
	if (!r) {
		cli_errorf(ctx, "out of memory");
		return CLI_EXIT_FAILED;
	}
	cli_ctx rctx = *ctx;
	r->ctx = &rctx;
	FILE *logf = NULL, *tout = NULL, *terr = NULL;
	int rc = 0;
	if (log) {
		logf = fopen(log, "ae");
		if (!logf) {
			cli_errorf(ctx, "script: -l %s: %s", log, strerror(errno));
			free(r);
			return CLI_EXIT_USAGE;
		}
		tout = tee_open(ctx->out, logf);
		terr = tee_open(ctx->err, logf);
		if (!tout || !terr) {
			cli_errorf(ctx, "out of memory");
			rc = CLI_EXIT_FAILED;
			goto out;
		}
		rctx.out = tout;
		rctx.err = terr;
		r->logging = true;
		char now[64];
		time_t t = time(NULL);
		struct tm tm;
		strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%S%z", localtime_r(&t, &tm));
		fprintf(logf, "# amber script %s, %s, pid %d\n", file ? file : "(prompt)", now,
		        (int)getpid());
		fflush(logf);
	}
	struct sigaction sa, old[3];
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	g_stop = 0;
	sigaction(SIGINT, &sa, &old[0]);
	sigaction(SIGTERM, &sa, &old[1]);
	sigaction(SIGHUP, &sa, &old[2]);

	bool tty = isatty(0);
	if (!file && tty) {
		r->file = "<prompt>";
		r->interactive = true;
		rc = run_interactive(r);
	} else {
		FILE *f = stdin;
		r->file = file && strcmp(file, "-") != 0 ? file : "<stdin>";
		if (file && strcmp(file, "-") != 0) {
			f = fopen(file, "re");
			if (!f) {
				cli_errorf(ctx, "script: %s: %s", file, strerror(errno));
				rc = CLI_EXIT_USAGE;
				goto sigs;
			}
		}
		char *text = NULL;
		size_t len = 0;
		int e = read_all(f, &text, &len);
		if (f != stdin)
			fclose(f);
		if (e) {
			cli_errorf(ctx, "script: %s: %s", r->file, e == -EFBIG ? "larger than 64 MiB" :
			           strerror(-e));
			rc = CLI_EXIT_USAGE;
			goto sigs;
		}
		rc = run_file(r, text, len);
		free(text);
	}
sigs:
	sigaction(SIGINT, &old[0], NULL);
	sigaction(SIGTERM, &old[1], NULL);
	sigaction(SIGHUP, &old[2], NULL);
out:
	if (tout)
		fclose(tout);
	if (terr)
		fclose(terr);
	if (logf)
		fclose(logf);
	free(r);
	return rc;
}

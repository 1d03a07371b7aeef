/*
 * shadows.c - the shadow registry, expose/unexpose, delete, storage limits.
 *
 * Registry file STATE/shadows.json, always replaced whole with
 * amb_durable_write (temp, fsync, rename, fsync dir):
 *
 *   {"version": 1,
 *    "shadows": [ {"id": UUID, "set": UUID, "volume": PATH, "path": PATH,
 *                  "provider": NAME, "persistent": BOOL, "writers": BOOL,
 *                  "state": "creating" | "ready", "created": MS,
 *                  "bytes": N, "exposed": PATH (optional),
 *                  "exposed_mkdir": BOOL (optional)} ... ] }
 *
 * A record is written as "creating" *before* the provider's prepare, so a
 * shadow that amberd started is always in the registry (and next to its
 * provider sidecar) whatever moment amberd dies at.  A persistent shadow's
 * "ready" is written before the requestor hears of it; a volatile one's is
 * set in memory and reaches the file with the next change (a restart
 * deletes it in either state).  At start:
 *   - "creating" records: the set never finished; the shadow is removed
 *     (event 3011);
 *   - volatile ("persistent": false) ready records: their session ended
 *     with the previous amberd; unexposed and removed (event 3011);
 *   - persistent ready records stay; an "exposed" whose mount is gone is
 *     cleared.
 * So after any crash every shadow is either listed or gone.
 *
 * Where shadows go: <mount point of the volume>/<shadow_dir>/<shadow id>
 * (shadow_dir is ".amber-shadows" by default), created 0700.  That is on
 * the volume's filesystem, as the btrfs and reflink providers need.  An
 * absolute shadow_dir holds the shadows of every volume; the btrfs and
 * reflink providers then refuse volumes on other filesystems (their
 * check_shadow), the copy provider takes any.
 *
 * Size and limits: "bytes" is the allocated size of the shadow's tree
 * (st_blocks) when it was made; shared extents (reflink, btrfs) count in
 * full, so it is an upper bound of the space the shadow can come to hold.
 * When [shadowstorage] gives a limit for a volume, the oldest shadows of
 * that volume are deleted (event 3005) until the volume's shadows fit;
 * the newest is never deleted for this.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amber/writer.h"
#include "common/durable.h"
#include "common/vfs.h"
#include "daemon/amberd.h"
#include "providers/provider.h"

static dshadow *reg;
static size_t n_reg;
static char reg_path[4200];

/* ------------------------------------------------------------ the file */

/* Under D.mu. */
static int reg_save(void)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n_reg; i++) {
		const dshadow *s = &reg[i];
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:s, s:I, s:I}", "id", s->id,
				      "set", s->set, "volume", s->volume, "path", s->path,
				      "provider", s->provider, "persistent", s->persistent,
				      "writers", s->writers, "state", s->ready ? "ready" : "creating",
				      "created", (json_int_t)s->created_ms, "bytes",
				      (json_int_t)s->bytes);
		if (o && s->exposed[0]) {
			json_object_set_new(o, "exposed", json_string(s->exposed));
			json_object_set_new(o, "exposed_mkdir", json_boolean(s->exposed_mkdir));
		}
		if (!o || json_array_append_new(arr, o)) {
			json_decref(arr);
			return -ENOMEM;
		}
	}
	json_t *root = arr ? json_pack("{s:i, s:o}", "version", 1, "shadows", arr) : NULL;
	if (!root)
		return -ENOMEM;
	char *text = json_dumps(root, JSON_INDENT(1));
	json_decref(root);
	if (!text)
		return -ENOMEM;
	int rc = amb_durable_write(amb_vfs_posix(), reg_path, text, strlen(text));
	free(text);
	if (rc)
		amberd_log("cannot write %s: %s", reg_path, strerror(-rc));
	return rc;
}

static int str_field(json_t *o, const char *key, char *dst, size_t size, bool path)
{
	const char *v = json_string_value(json_object_get(o, key));
	if (!v || strlen(v) >= size || (path && !amb_proto_path_ok(v)))
		return -1;
	snprintf(dst, size, "%s", v);
	return 0;
}

static int reg_read(char *err, size_t errlen)
{
	json_error_t je;
	json_t *root = json_load_file(reg_path, 0, &je);
	if (!root) {
		if (access(reg_path, F_OK) != 0 && errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: line %d: %s", reg_path, je.line, je.text);
		return -EINVAL;
	}
	json_t *arr = json_object_get(root, "shadows");
	if (json_integer_value(json_object_get(root, "version")) != 1 || !json_is_array(arr)) {
		snprintf(err, errlen, "%s: not an amber shadow registry of version 1", reg_path);
		json_decref(root);
		return -EINVAL;
	}
	size_t n = json_array_size(arr);
	reg = calloc(n ? n : 1, sizeof(*reg));
	if (!reg) {
		json_decref(root);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(arr, i);
		dshadow *s = &reg[n_reg];
		memset(s, 0, sizeof(*s));
		const char *st = json_string_value(json_object_get(o, "state"));
		if (str_field(o, "id", s->id, sizeof(s->id), false) || !amb_proto_uuid_ok(s->id) ||
		    str_field(o, "set", s->set, sizeof(s->set), false) ||
		    str_field(o, "volume", s->volume, sizeof(s->volume), true) ||
		    str_field(o, "path", s->path, sizeof(s->path), true) ||
		    str_field(o, "provider", s->provider, sizeof(s->provider), false) || !st) {
			snprintf(err, errlen, "%s: shadow record %zu is damaged", reg_path, i);
			json_decref(root);
			return -EINVAL;
		}
		s->ready = strcmp(st, "ready") == 0;
		s->persistent = json_is_true(json_object_get(o, "persistent"));
		s->writers = json_is_true(json_object_get(o, "writers"));
		s->created_ms = (uint64_t)json_integer_value(json_object_get(o, "created"));
		s->bytes = (uint64_t)json_integer_value(json_object_get(o, "bytes"));
		if (json_object_get(o, "exposed")) {
			if (str_field(o, "exposed", s->exposed, sizeof(s->exposed), true)) {
				snprintf(err, errlen, "%s: shadow record %zu is damaged", reg_path, i);
				json_decref(root);
				return -EINVAL;
			}
			s->exposed_mkdir = json_is_true(json_object_get(o, "exposed_mkdir"));
		}
		n_reg++;
	}
	json_decref(root);
	return 0;
}

/* ------------------------------------------------------------ helpers */

static ssize_t reg_find(const char *id)
{
	for (size_t i = 0; i < n_reg; i++)
		if (strcmp(reg[i].id, id) == 0)
			return (ssize_t)i;
	return -1;
}

static void reg_remove_at(size_t i)
{
	memmove(&reg[i], &reg[i + 1], (n_reg - i - 1) * sizeof(*reg));
	n_reg--;
}


static bool is_mount_point(const char *path)
{
	char mp[PATH_MAX];
	return amb_provider_mount_point(path, mp, sizeof(mp)) == 0 && strcmp(mp, path) == 0;
}

static uint64_t tree_bytes_acc;
static int tree_bytes_fn(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)p;
	(void)flag;
	(void)ftw;
	tree_bytes_acc += (uint64_t)st->st_blocks * 512u;
	return 0;
}

/* Allocated bytes of a tree (one caller at a time: the registry path is
 * only used by the sequence, which is single). */
static pthread_mutex_t tree_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t tree_bytes(const char *path)
{
	pthread_mutex_lock(&tree_mu);
	tree_bytes_acc = 0;
	nftw(path, tree_bytes_fn, 32, FTW_PHYS | FTW_MOUNT);
	uint64_t r = tree_bytes_acc;
	pthread_mutex_unlock(&tree_mu);
	return r;
}

void shadow_to_wire(const dshadow *s, amb_shadow *w)
{
	memset(w, 0, sizeof(*w));
	snprintf(w->id, sizeof(w->id), "%s", s->id);
	snprintf(w->set, sizeof(w->set), "%s", s->set);
	w->volume = strdup(s->volume);
	w->path = strdup(s->path);
	snprintf(w->provider, sizeof(w->provider), "%s", s->provider);
	w->persistent = s->persistent;
	w->writers = s->writers;
	w->created_ms = s->created_ms;
	w->exposed = s->exposed[0] ? strdup(s->exposed) : NULL;
}

int shadows_get(const char *id, dshadow *out)
{
	pthread_mutex_lock(&D.mu);
	ssize_t i = reg_find(id);
	if (i >= 0)
		*out = reg[i];
	pthread_mutex_unlock(&D.mu);
	return i >= 0 ? 0 : -ENOENT;
}

/* ------------------------------------------------------------ delete */

static int unexpose_one(dshadow *s, char *err, size_t errlen)
{
	if (!s->exposed[0])
		return 0;
	if (umount2(s->exposed, UMOUNT_NOFOLLOW) != 0 && errno != EINVAL && errno != ENOENT) {
		int e = errno;
		snprintf(err, errlen, "cannot unexpose %s: %s", s->exposed, strerror(e));
		return -e;
	}
	if (s->exposed_mkdir)
		rmdir(s->exposed);
	s->exposed[0] = '\0';
	s->exposed_mkdir = false;
	return 0;
}

int shadows_delete(const char *id, char *err, size_t errlen)
{
	err[0] = '\0';
	dshadow s;
	if (shadows_get(id, &s) != 0) {
		snprintf(err, errlen, "no shadow %s", id);
		return -ENOENT;
	}
	char was_exposed[sizeof(s.exposed)];
	snprintf(was_exposed, sizeof(was_exposed), "%s", s.exposed);
	int rc = unexpose_one(&s, err, errlen);
	if (rc)
		return rc;
	if (was_exposed[0]) {
		pthread_mutex_lock(&D.mu);
		ssize_t i = reg_find(id);
		if (i >= 0) {
			reg[i].exposed[0] = '\0';
			reg_save();
		}
		pthread_mutex_unlock(&D.mu);
	}
	rc = amb_provider_remove(s.path);
	if (rc && rc != -ENOENT) {
		snprintf(err, errlen, "cannot delete shadow %s at %s: %s", id, s.path,
			 amb_provider_errmsg());
		ev_log(AMB_EV_PROVIDER_FAILED, AMB_SEV_ERROR, NULL, s.set, s.id, NULL, s.volume,
		       AMB_FAIL_NONRETRYABLE, "%s", err);
		return rc;
	}
	pthread_mutex_lock(&D.mu);
	ssize_t i = reg_find(id);
	if (i >= 0) {
		reg_remove_at((size_t)i);
		rc = reg_save();
	}
	pthread_mutex_unlock(&D.mu);
	if (s.ready)
		ev_log(AMB_EV_SHADOW_DELETED, AMB_SEV_INFO, NULL, s.set, s.id, NULL, s.volume,
		       AMB_FAIL_NONE, "shadow %s of %s deleted", s.id, s.volume);
	return rc;
}


/* ------------------------------------------------------------ start */

int shadows_load(char *err, size_t errlen)
{
	snprintf(reg_path, sizeof(reg_path), "%s/shadows.json", D.cfg.state_dir);
	int rc = reg_read(err, errlen);
	if (rc)
		return rc;
	size_t kept = 0, removed = 0;
	for (size_t i = 0; i < n_reg;) {
		dshadow *s = &reg[i];
		if (s->exposed[0] && !is_mount_point(s->exposed)) {
			s->exposed[0] = '\0';
			s->exposed_mkdir = false;
		}
		if (s->ready && s->persistent) {
			kept++;
			i++;
			continue;
		}
		dshadow copy = *s;
		char e2[512] = "";
		unexpose_one(&copy, e2, sizeof(e2));
		int r = amb_provider_remove(copy.path);
		if (r && r != -ENOENT) {
			amberd_log("cannot remove leftover shadow %s at %s: %s", copy.id, copy.path,
				   amb_provider_errmsg());
			i++;
			continue;
		}
		reg_remove_at(i);
		removed++;
		ev_log(AMB_EV_SHADOW_LEAK_REMOVED, AMB_SEV_WARNING, NULL, copy.set, copy.id, NULL,
		       copy.volume, AMB_FAIL_NONE, "removed %s shadow %s of %s left by a previous amberd",
		       copy.ready ? "volatile" : "unfinished", copy.id, copy.volume);
	}
	pthread_mutex_lock(&D.mu);
	rc = reg_save();
	pthread_mutex_unlock(&D.mu);
	if (rc) {
		snprintf(err, errlen, "cannot write %s: %s", reg_path, strerror(-rc));
		return rc;
	}
	ev_log(AMB_EV_REGISTRY_LOADED, AMB_SEV_INFO, NULL, NULL, NULL, NULL, NULL, AMB_FAIL_NONE,
	       "shadow registry loaded: %zu shadows kept, %zu leftovers removed", kept, removed);
	return 0;
}

/* ------------------------------------------------------------ create */

int shadows_plan(const char *volume, const char *provider, const char *set, bool persistent,
		 bool writers, dshadow *out, char *err, size_t errlen)
{
	const amb_provider *p;
	int rc = amb_provider_choose(volume, provider && provider[0] ? provider : NULL, &p);
	if (rc) {
		snprintf(err, errlen, "%s", amb_provider_errmsg());
		return rc;
	}
	memset(out, 0, sizeof(*out));
	if ((rc = amb_uuid_generate(out->id))) {
		snprintf(err, errlen, "cannot make a shadow id: %s", strerror(-rc));
		return rc;
	}
	/* the directory of the shadows, and its parent (fsynced when the
	 * directory is made): the volume's mount point, unless shadow_dir is
	 * absolute */
	char parent[PATH_MAX], dir[PATH_MAX];
	if (D.cfg.shadow_dir_name[0] == '/') {
		snprintf(dir, sizeof(dir), "%s", D.cfg.shadow_dir_name);
		amb_path_dir(dir, parent, sizeof(parent));
	} else {
		if ((rc = amb_provider_mount_point(volume, parent, sizeof(parent)))) {
			snprintf(err, errlen, "%s: cannot find its mount point", volume);
			return rc;
		}
		snprintf(dir, sizeof(dir), "%s%s%s", strcmp(parent, "/") ? parent : "", "/",
			 D.cfg.shadow_dir_name);
	}
	if (mkdir(dir, 0700) == 0) {
		int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			fsync(fd);
			close(fd);
		}
	} else if (errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "cannot create the shadow directory %s: %s", dir, strerror(errno));
		return rc;
	}
	snprintf(out->volume, sizeof(out->volume), "%s", volume);
	snprintf(out->path, sizeof(out->path), "%s/%s", dir, out->id);
	snprintf(out->set, sizeof(out->set), "%s", set);
	snprintf(out->provider, sizeof(out->provider), "%s", p->name);
	out->persistent = persistent;
	out->writers = writers;
	out->created_ms = now_ms();

	pthread_mutex_lock(&D.mu);
	dshadow *v = realloc(reg, (n_reg + 1) * sizeof(*v));
	if (!v) {
		pthread_mutex_unlock(&D.mu);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	reg = v;
	reg[n_reg++] = *out;
	rc = reg_save();
	if (rc) {
		n_reg--;
		pthread_mutex_unlock(&D.mu);
		snprintf(err, errlen, "cannot record the shadow in %s: %s", reg_path, strerror(-rc));
		return rc;
	}
	pthread_mutex_unlock(&D.mu);

	rc = amb_provider_prepare_unsettled(p, volume, out->path, &out->unsettled);
	if (rc) {
		snprintf(err, errlen, "%s", amb_provider_errmsg());
		pthread_mutex_lock(&D.mu);
		ssize_t i = reg_find(out->id);
		if (i >= 0)
			reg_remove_at((size_t)i);
		reg_save();
		pthread_mutex_unlock(&D.mu);
		return rc;
	}
	return 0;
}

int shadows_mark_ready(const char *id, bool durable)
{
	dshadow s;
	if (shadows_get(id, &s))
		return -ENOENT;
	uint64_t bytes = tree_bytes(s.path);
	pthread_mutex_lock(&D.mu);
	ssize_t i = reg_find(id);
	int rc = -ENOENT;
	if (i >= 0) {
		reg[i].ready = true;
		reg[i].bytes = bytes;
		rc = durable ? reg_save() : 0;
	}
	pthread_mutex_unlock(&D.mu);
	if (rc)
		return rc;

	/* shadow-storage limit of the volume: oldest first, never this one */
	uint64_t limit = amberd_config_limit(&D.cfg, s.volume);
	while (limit) {
		uint64_t used = 0;
		amb_uuid oldest = "";
		uint64_t oldest_ms = UINT64_MAX;
		pthread_mutex_lock(&D.mu);
		for (size_t k = 0; k < n_reg; k++) {
			if (strcmp(reg[k].volume, s.volume) || !reg[k].ready)
				continue;
			used += reg[k].bytes;
			if (strcmp(reg[k].id, id) && reg[k].created_ms < oldest_ms) {
				oldest_ms = reg[k].created_ms;
				snprintf(oldest, sizeof(oldest), "%s", reg[k].id);
			}
		}
		pthread_mutex_unlock(&D.mu);
		if (used <= limit || !oldest[0])
			break;
		char err[512];
		ev_log(AMB_EV_STORAGE_LIMIT_DELETED, AMB_SEV_WARNING, NULL, NULL, oldest, NULL, s.volume,
		       AMB_FAIL_NONE,
		       "shadow storage of %s over its limit (%" PRIu64 " of %" PRIu64
		       " bytes): deleting the oldest shadow %s",
		       s.volume, used, limit, oldest);
		if (shadows_delete(oldest, err, sizeof(err)) != 0) {
			amberd_log("%s", err);
			break;
		}
	}
	return 0;
}

/* ------------------------------------------------------------ requests */

static void list_shadows(const amb_msg *req, amb_msg *resp)
{
	const amb_list_shadows *q = &req->u.lshadows;
	size_t limit = q->limit ? q->limit : AMB_MAX_SHADOWS;
	memset(resp, 0, sizeof(*resp));
	resp->kind = AMB_MSG_SHADOW_LIST;
	resp->id = req->id;
	pthread_mutex_lock(&D.mu);
	resp->u.shadows.shadows = calloc(limit < n_reg ? limit : (n_reg ? n_reg : 1),
					 sizeof(amb_shadow));
	uint64_t total = 0;
	for (size_t i = 0; i < n_reg; i++) {
		const dshadow *s = &reg[i];
		if (!s->ready || (q->set[0] && strcmp(q->set, s->set)) ||
		    (q->volume && strcmp(q->volume, s->volume)))
			continue;
		if (total >= q->offset && resp->u.shadows.n_shadows < limit &&
		    resp->u.shadows.shadows)
			shadow_to_wire(s, &resp->u.shadows.shadows[resp->u.shadows.n_shadows++]);
		total++;
	}
	resp->u.shadows.total = total;
	pthread_mutex_unlock(&D.mu);
}

static void list_storage(const amb_msg *req, amb_msg *resp)
{
	memset(resp, 0, sizeof(*resp));
	resp->kind = AMB_MSG_SHADOWSTORAGE_LIST;
	resp->id = req->id;
	pthread_mutex_lock(&D.mu);
	size_t cap = n_reg + D.cfg.n_limits;
	amb_storage_info *v = calloc(cap ? cap : 1, sizeof(*v));
	size_t n = 0;
	for (size_t i = 0; v && i < D.cfg.n_limits && n < AMB_MAX_STORAGE; i++) {
		v[n].volume = strdup(D.cfg.limits[i].volume);
		v[n].limit = D.cfg.limits[i].bytes;
		n++;
	}
	for (size_t i = 0; v && i < n_reg; i++) {
		if (!reg[i].ready)
			continue;
		size_t k;
		for (k = 0; k < n; k++)
			if (strcmp(v[k].volume, reg[i].volume) == 0)
				break;
		if (k == n) {
			if (n >= AMB_MAX_STORAGE)
				continue;
			v[n].volume = strdup(reg[i].volume);
			v[n].limit = 0;
			n++;
		}
		v[k].used += reg[i].bytes;
	}
	pthread_mutex_unlock(&D.mu);
	resp->u.storage.storage = v;
	resp->u.storage.n_storage = n;
}

static void list_providers(const amb_msg *req, amb_msg *resp)
{
	memset(resp, 0, sizeof(*resp));
	resp->kind = AMB_MSG_PROVIDER_LIST;
	resp->id = req->id;
	size_t n = amb_provider_count();
	amb_provider_info *v = calloc(n, sizeof(*v));
	for (size_t i = 0; v && i < n; i++) {
		const amb_provider *p = amb_provider_at(i);
		snprintf(v[i].name, sizeof(v[i].name), "%s", p->name);
		v[i].description = strdup(p->description);
		v[i].holds_writes = p->holds_writes_during_copy;
	}
	resp->u.providers.providers = v;
	resp->u.providers.n_providers = v ? n : 0;
}

static void do_delete(const amb_msg *req, amb_msg *resp)
{
	const amb_shadow_delete *q = &req->u.del;
	amb_uuid *ids = NULL;
	size_t n = 0;
	pthread_mutex_lock(&D.mu);
	ids = calloc(n_reg ? n_reg : 1, sizeof(*ids));
	uint64_t oldest_ms = UINT64_MAX;
	for (size_t i = 0; ids && i < n_reg; i++) {
		const dshadow *s = &reg[i];
		if (!s->ready)
			continue;
		if (q->all || (q->shadow[0] && !strcmp(q->shadow, s->id)) ||
		    (q->set[0] && !strcmp(q->set, s->set)) ||
		    (q->exposed && !strcmp(q->exposed, s->exposed))) {
			snprintf(ids[n++], sizeof(ids[0]), "%s", s->id);
		} else if (q->oldest && !strcmp(q->oldest, s->volume) && s->created_ms < oldest_ms) {
			oldest_ms = s->created_ms;
			snprintf(ids[0], sizeof(ids[0]), "%s", s->id);
			n = 1;
		}
	}
	pthread_mutex_unlock(&D.mu);
	if (!ids) {
		resp_error(resp, req->id, AMB_EXIT_RETRYABLE, AMB_FAIL_OUT_OF_RESOURCES,
			   "out of memory");
		return;
	}
	if (n == 0 && !q->all) {
		free(ids);
		resp_error(resp, req->id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE, "no shadow matches %s%s",
			   q->shadow[0] ? q->shadow : q->set[0] ? q->set : q->exposed ? q->exposed
									: q->oldest,
			   q->oldest ? " (no shadow of that volume)" : "");
		return;
	}
	size_t done = 0;
	char err[1024] = "";
	for (size_t i = 0; i < n; i++) {
		char e[1024];
		if (shadows_delete(ids[i], e, sizeof(e)) == 0) {
			if (done != i)
				memcpy(ids[done], ids[i], sizeof(ids[0]));
			done++;
		} else
			snprintf(err, sizeof(err), "%s", e);
	}
	if (err[0] && done == 0) {
		free(ids);
		resp_error(resp, req->id, AMB_EXIT_FAILED, AMB_FAIL_NONE, "%s", err);
		return;
	}
	memset(resp, 0, sizeof(*resp));
	resp->kind = AMB_MSG_DELETED;
	resp->id = req->id;
	resp->u.deleted.shadows = ids;
	resp->u.deleted.n_shadows = done;
}

static void do_expose(const amb_msg *req, amb_msg *resp)
{
	const char *id = req->u.expose.shadow, *path = req->u.expose.path;
	dshadow s;
	if (shadows_get(id, &s) != 0 || !s.ready) {
		resp_error(resp, req->id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE, "no shadow %s", id);
		return;
	}
	if (s.exposed[0]) {
		resp_error(resp, req->id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE,
			   "shadow %s is already exposed at %s", id, s.exposed);
		return;
	}
	pthread_mutex_lock(&D.mu);
	bool taken = false;
	for (size_t i = 0; i < n_reg; i++)
		if (!strcmp(reg[i].exposed, path) || amberd_path_within(path, reg[i].path))
			taken = true;
	pthread_mutex_unlock(&D.mu);
	if (taken) {
		resp_error(resp, req->id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE,
			   "%s is already used by a shadow", path);
		return;
	}
	bool made = false;
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			resp_error(resp, req->id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE,
				   "%s is not a directory", path);
			return;
		}
		DIR *d = opendir(path);
		struct dirent *e;
		bool empty = true;
		while (d && (e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				empty = false;
		if (d)
			closedir(d);
		if (!empty || is_mount_point(path)) {
			resp_error(resp, req->id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE,
				   "%s must be an empty directory that is not a mount point", path);
			return;
		}
	} else if (errno == ENOENT) {
		if (mkdir(path, 0755) != 0) {
			resp_error(resp, req->id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE,
				   "cannot create %s: %s", path, strerror(errno));
			return;
		}
		made = true;
	} else {
		resp_error(resp, req->id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE, "%s: %s", path,
			   strerror(errno));
		return;
	}
	if (mount(s.path, path, NULL, MS_BIND, NULL) != 0 ||
	    mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
		  NULL) != 0) {
		int e = errno;
		umount2(path, MNT_DETACH);
		if (made)
			rmdir(path);
		resp_error(resp, req->id, AMB_EXIT_FAILED, AMB_FAIL_NONE, "cannot expose %s at %s: %s",
			   id, path, strerror(e));
		return;
	}
	pthread_mutex_lock(&D.mu);
	ssize_t i = reg_find(id);
	int rc = -ENOENT;
	if (i >= 0) {
		snprintf(reg[i].exposed, sizeof(reg[i].exposed), "%s", path);
		reg[i].exposed_mkdir = made;
		rc = reg_save();
	}
	pthread_mutex_unlock(&D.mu);
	if (rc) {
		umount2(path, MNT_DETACH);
		if (made)
			rmdir(path);
		resp_error(resp, req->id, AMB_EXIT_FAILED, AMB_FAIL_NONE,
			   "cannot record the exposure: %s", strerror(-rc));
		return;
	}
	ev_log(AMB_EV_SHADOW_EXPOSED, AMB_SEV_INFO, NULL, s.set, s.id, NULL, s.volume, AMB_FAIL_NONE,
	       "shadow %s of %s exposed read-only at %s", s.id, s.volume, path);
	resp_ok(resp, req->id);
}

static void do_unexpose(const amb_msg *req, amb_msg *resp)
{
	const char *path = req->u.expose.path;
	dshadow s;
	bool found = false;
	pthread_mutex_lock(&D.mu);
	for (size_t i = 0; i < n_reg; i++)
		if (!strcmp(reg[i].exposed, path)) {
			s = reg[i];
			found = true;
		}
	pthread_mutex_unlock(&D.mu);
	if (!found) {
		resp_error(resp, req->id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE,
			   "no shadow is exposed at %s", path);
		return;
	}
	char err[512];
	int rc = unexpose_one(&s, err, sizeof(err));
	if (rc) {
		resp_error(resp, req->id, rc == -EBUSY ? AMB_EXIT_RETRYABLE : AMB_EXIT_FAILED,
			   rc == -EBUSY ? AMB_FAIL_RETRYABLE : AMB_FAIL_NONE, "%s", err);
		return;
	}
	pthread_mutex_lock(&D.mu);
	ssize_t i = reg_find(s.id);
	if (i >= 0) {
		reg[i].exposed[0] = '\0';
		reg[i].exposed_mkdir = false;
		reg_save();
	}
	pthread_mutex_unlock(&D.mu);
	ev_log(AMB_EV_SHADOW_UNEXPOSED, AMB_SEV_INFO, NULL, s.set, s.id, NULL, s.volume,
	       AMB_FAIL_NONE, "shadow %s unexposed from %s", s.id, path);
	resp_ok(resp, req->id);
}

void shadows_request(const amb_msg *req, amb_msg *resp)
{
	switch (req->kind) {
	case AMB_MSG_LIST_SHADOWS: list_shadows(req, resp); return;
	case AMB_MSG_LIST_SHADOWSTORAGE: list_storage(req, resp); return;
	case AMB_MSG_LIST_PROVIDERS: list_providers(req, resp); return;
	case AMB_MSG_SHADOW_DELETE: do_delete(req, resp); return;
	case AMB_MSG_SHADOW_EXPOSE: do_expose(req, resp); return;
	case AMB_MSG_SHADOW_UNEXPOSE: do_unexpose(req, resp); return;
	default:
		resp_error(resp, req->id, AMB_EXIT_BAD_INPUT, AMB_FAIL_NONE, "not a shadow request");
	}
}

/* Delete every volatile shadow (amberd stopping). */
void shadows_drop_volatile(void)
{
	for (;;) {
		amb_uuid id = "";
		pthread_mutex_lock(&D.mu);
		for (size_t i = 0; i < n_reg; i++)
			if (!reg[i].persistent && reg[i].ready) {
				snprintf(id, sizeof(id), "%s", reg[i].id);
				break;
			}
		pthread_mutex_unlock(&D.mu);
		char err[512];
		if (!id[0] || shadows_delete(id, err, sizeof(err)) != 0)
			return;
	}
}

/*
 * jsonout.c - amber: the --json form of listings and events.
 *
 * Objects are built with jansson.  Every builder returns NULL when any
 * allocation failed, never a half-built object.  Field names are the wire
 * names (docs/protocol.md section 8); the additions are writers'
 * "state_name" (the wire name of the state number) and events' "name"
 * (the symbolic event name, protocol.md section 10).
 */
#include <errno.h>

#include "cli/output.h"

/* Build helpers that remember a failure, so builders check once at the end.
 * set() steals v (NULL marks the failure). */
typedef struct jb {
	json_t *obj;
	bool failed;
} jb;

static void jb_init(jb *b)
{
	b->obj = json_object();
	b->failed = b->obj == NULL;
}

static void set(jb *b, const char *key, json_t *v)
{
	if (!b->obj) {
		json_decref(v);
		b->failed = true;
	} else if (!v || json_object_set_new(b->obj, key, v) != 0) {
		b->failed = true;   /* json_object_set_new() dropped v */
	}
}

static void set_str(jb *b, const char *key, const char *s)
{
	set(b, key, json_string(s));
}

static void set_uint(jb *b, const char *key, uint64_t v)
{
	/* everything on the wire is at most 2^53-1, which json_int_t holds */
	set(b, key, json_integer((json_int_t)v));
}

static json_t *jb_done(jb *b)
{
	if (b->failed) {
		json_decref(b->obj);
		return NULL;
	}
	return b->obj;
}

static json_t *json_fileset(const amb_fileset *fs)
{
	jb b;
	jb_init(&b);
	set_str(&b, "path", fs->path);
	set_str(&b, "pattern", fs->pattern);
	set(&b, "recursive", json_boolean(fs->recursive));
	return jb_done(&b);
}

static json_t *json_filesets(const amb_fileset *fs, size_t n)
{
	json_t *a = json_array();
	if (!a)
		return NULL;
	for (size_t k = 0; k < n; k++) {
		if (json_array_append_new(a, json_fileset(&fs[k])) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *json_component(const amb_component *c)
{
	jb b;
	jb_init(&b);
	set_str(&b, "name", c->name);
	set_str(&b, "type", cli_comp_type_name(c->type));
	set(&b, "selectable", json_boolean(c->selectable));
	set(&b, "files", json_filesets(c->files, c->n_files));
	if (c->logs)
		set(&b, "logs", json_filesets(c->logs, c->n_logs));
	if (c->checkpoint)
		set_str(&b, "checkpoint", c->checkpoint);
	return jb_done(&b);
}

json_t *cli_json_writer(const amb_writer_info *w)
{
	const amb_writer_md *md = &w->metadata;
	jb b;
	jb_init(&b);
	set_str(&b, "name", md->name);
	set_str(&b, "instance", md->instance);
	if (md->instance_name)
		set_str(&b, "instance_name", md->instance_name);
	json_t *types = json_array();
	for (int t = AMB_BACKUP_FULL; types && t <= AMB_BACKUP_DIFFERENTIAL; t++) {
		if ((md->backup_types & AMB_BACKUP_BIT(t)) &&
		    json_array_append_new(types, json_string(amb_backup_type_name(t))) != 0) {
			json_decref(types);
			types = NULL;
		}
	}
	set(&b, "backup_types", types);
	set_str(&b, "verifier", md->verifier);
	const char *rm = amb_restore_method_name(md->restore_method);
	set_str(&b, "restore_method", rm ? rm : "unknown");
	set_uint(&b, "max_hold_ms", md->max_hold_ms);
	json_t *comps = json_array();
	for (size_t k = 0; comps && k < md->n_components; k++) {
		if (json_array_append_new(comps, json_component(&md->components[k])) != 0) {
			json_decref(comps);
			comps = NULL;
		}
	}
	set(&b, "components", comps);
	if (md->excludes)
		set(&b, "excludes", json_filesets(md->excludes, md->n_excludes));
	set_uint(&b, "state", (uint64_t)w->state);
	const char *sn = amb_writer_state_name(w->state);
	set_str(&b, "state_name", sn ? sn : "unknown");
	if (w->last_error) {
		jb e;
		jb_init(&e);
		const char *cn = amb_fail_class_name(w->last_error->cls);
		set_str(&e, "class", cn ? cn : "unknown");
		if (w->last_error->message)
			set_str(&e, "message", w->last_error->message);
		set(&b, "last_error", jb_done(&e));
	}
	set(&b, "pid", json_integer(w->pid));
	set_uint(&b, "uid", w->uid);
	return jb_done(&b);
}

json_t *cli_json_provider(const amb_provider_info *p)
{
	jb b;
	jb_init(&b);
	set_str(&b, "name", p->name);
	if (p->description)
		set_str(&b, "description", p->description);
	set(&b, "holds_writes", json_boolean(p->holds_writes));
	return jb_done(&b);
}

json_t *cli_json_storage(const amb_storage_info *s)
{
	jb b;
	jb_init(&b);
	set_str(&b, "volume", s->volume);
	set_uint(&b, "used", s->used);
	set_uint(&b, "limit", s->limit);
	return jb_done(&b);
}

json_t *cli_json_shadow(const amb_shadow *s)
{
	jb b;
	jb_init(&b);
	set_str(&b, "id", s->id);
	set_str(&b, "set", s->set);
	set_str(&b, "volume", s->volume);
	set_str(&b, "path", s->path);
	set_str(&b, "provider", s->provider);
	set(&b, "persistent", json_boolean(s->persistent));
	set(&b, "writers", json_boolean(s->writers));
	set_uint(&b, "created", s->created_ms);
	if (s->exposed)
		set_str(&b, "exposed", s->exposed);
	return jb_done(&b);
}

json_t *cli_json_snapshot_set(const amb_snapshot_set *ss)
{
	jb b;
	jb_init(&b);
	set_str(&b, "set", ss->set);
	json_t *a = json_array();
	for (size_t k = 0; a && k < ss->n_shadows; k++) {
		if (json_array_append_new(a, cli_json_shadow(&ss->shadows[k])) != 0) {
			json_decref(a);
			a = NULL;
		}
	}
	set(&b, "shadows", a);
	return jb_done(&b);
}

json_t *cli_json_event(const amb_event *e)
{
	jb b;
	jb_init(&b);
	set_uint(&b, "seq", e->seq);
	set_uint(&b, "time", e->time_ms);
	set_uint(&b, "code", e->code);
	const char *name = amb_event_code_name(e->code);
	if (name)
		set_str(&b, "name", name);
	set_str(&b, "severity", cli_severity_name(e->severity));
	set_str(&b, "message", e->message);
	if (e->session[0])
		set_str(&b, "session", e->session);
	if (e->set[0])
		set_str(&b, "set", e->set);
	if (e->shadow[0])
		set_str(&b, "shadow", e->shadow);
	if (e->writer[0])
		set_str(&b, "writer", e->writer);
	if (e->component[0])
		set_str(&b, "component", e->component);
	if (e->volume)
		set_str(&b, "volume", e->volume);
	if (e->cls != AMB_FAIL_NONE) {
		const char *cn = amb_fail_class_name(e->cls);
		set_str(&b, "class", cn ? cn : "unknown");
	}
	return jb_done(&b);
}

int cli_json_print(FILE *f, json_t *j, bool pretty)
{
	if (!j)
		return -ENOMEM;
	size_t flags = pretty ? JSON_INDENT(2) : JSON_COMPACT;
	int rc = json_dumpf(j, f, flags);
	json_decref(j);
	if (rc != 0 || fputc('\n', f) == EOF)
		return -EIO;
	return 0;
}

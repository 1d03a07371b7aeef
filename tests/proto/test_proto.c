/*
 * test_proto.c - unit tests of src/proto/proto.{h,c}: the typed message
 * codec of the amberd wire protocol (docs/protocol.md).
 *
 * What must hold:
 *   - every sample (samples.c: every message kind, full and minimal forms)
 *     decodes, re-encodes to exactly its canonical text, and decoding is
 *     idempotent for the non-canonical ones;
 *   - decoded structs hold what the JSON said (spot checks per kind family);
 *   - for every field of every sample, systematically: a wrong JSON type,
 *     an empty/over-long/control-character string, a negative or too large
 *     integer, an over-long array, an unknown field next to it, and (where
 *     required) its absence are all refused with an error that starts with
 *     that field's path ("metadata.components[1].files[0].path: ...");
 *   - hand-picked semantic cases: bad names, paths with "..", "//", "/./"
 *     or a trailing '/', UUIDs, enum values, cross-field rules, id rules,
 *     duplicates, deep nesting, NUL, invalid UTF-8, truncation, trailing
 *     bytes, non-object messages;
 *   - the encoder refuses what the decoder would refuse, naming the field;
 *   - a deterministic mutation loop (fixed seed, printed on failure) over
 *     the samples never crashes, never leaks (ASan build), and everything
 *     it decodes re-encodes canonically.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "amber/proto.h"
#include "samples.h"

#define UUID_A "5f0c2e9a-8d41-4b6e-a7c3-19e2f0d4b581"
#define UUID_B "c3a1f8e2-6b0d-4d9c-8e57-a2b4c6d8e0f1"

/* ---------------------------------------------------------------------- */
/* helpers                                                                 */

static int decode_str(const char *json, amb_msg *m, char *err, size_t errlen)
{
	return amb_msg_decode(json, strlen(json), m, err, errlen);
}

static bool printable_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* Decoding must fail, leave nothing behind, and say something sane. */
static void expect_fail(const char *json, size_t len, const char *want, const char *why)
{
	amb_msg m;
	char err[512];
	int rc = amb_msg_decode(json, len, &m, err, sizeof(err));
	if (rc == 0) {
		print_error("accepted (%s): %.300s\n", why, json);
		amb_msg_free(&m);
		fail();
	}
	if (rc != -EBADMSG && rc != -EMSGSIZE) {
		print_error("rc %d (%s): %.300s\n", rc, why, json);
		fail();
	}
	assert_int_equal(m.kind, AMB_MSG_NONE);
	if (!err[0] || !printable_ascii(err)) {
		print_error("bad error text (%s): \"%s\"\n", why, err);
		fail();
	}
	if (want && !strstr(err, want)) {
		print_error("error \"%s\" lacks \"%s\" (%s): %.300s\n", err, want, why, json);
		fail();
	}
}

static void expect_fail_str(const char *json, const char *want)
{
	expect_fail(json, strlen(json), want, "table");
}

static void expect_ok_str(const char *json)
{
	amb_msg m;
	char err[512];
	int rc = decode_str(json, &m, err, sizeof(err));
	if (rc) {
		print_error("refused: %s\n  %s\n", err, json);
		fail();
	}
	amb_msg_free(&m);
}

/* encode(m) must be what decode accepts, and encode(decode(encode(m))) the
 * same bytes again */
static void check_reencode(const amb_msg *m, const char *origin)
{
	char *j1, *j2;
	size_t l1, l2;
	char err[512];
	int rc = amb_msg_encode(m, &j1, &l1);
	if (rc) {
		amb_msg_check(m, err, sizeof(err));
		print_error("re-encode failed %d (%s) for %.300s\n", rc, err, origin);
		fail();
	}
	amb_msg m2;
	rc = amb_msg_decode(j1, l1, &m2, err, sizeof(err));
	if (rc) {
		print_error("own encoding refused: %s\n  %s\n", err, j1);
		fail();
	}
	assert_int_equal(amb_msg_encode(&m2, &j2, &l2), 0);
	assert_int_equal(l1, l2);
	assert_memory_equal(j1, j2, l1);
	amb_msg_free(&m2);
	free(j1);
	free(j2);
}

/* ---------------------------------------------------------------------- */
/* round trip                                                              */

static void test_samples_roundtrip(void **state)
{
	(void)state;
	bool seen[AMB_MSG_KIND_COUNT] = { false };
	for (size_t i = 0; i < amb_n_samples; i++) {
		const amb_sample *s = &amb_samples[i];
		amb_msg m;
		char err[512];
		int rc = decode_str(s->json, &m, err, sizeof(err));
		if (rc) {
			print_error("sample %zu refused: %s\n  %s\n", i, err, s->json);
			fail();
		}
		seen[m.kind] = true;
		char *j;
		size_t l;
		assert_int_equal(amb_msg_encode(&m, &j, &l), 0);
		assert_int_equal(strlen(j), l);
		if (s->canonical && strcmp(j, s->json) != 0) {
			print_error("sample %zu not canonical:\n  in:  %s\n  out: "
			            "%s\n", i, s->json, j);
			fail();
		}
		free(j);
		check_reencode(&m, s->json);
		amb_msg_free(&m);
		assert_int_equal(m.kind, AMB_MSG_NONE);
	}
	/* every kind has at least one sample */
	for (int k = AMB_MSG_NONE + 1; k < AMB_MSG_KIND_COUNT; k++) {
		if (!seen[k]) {
			print_error("no sample of kind %s\n", amb_msg_kind_name(k));
			fail();
		}
	}
}

static amb_msg decode_ok(const char *json)
{
	amb_msg m;
	char err[512];
	if (decode_str(json, &m, err, sizeof(err))) {
		print_error("refused: %s\n", err);
		fail();
	}
	return m;
}

static const char *sample_of(const char *prefix)
{
	for (size_t i = 0; i < amb_n_samples; i++)
		if (strncmp(amb_samples[i].json, prefix, strlen(prefix)) == 0)
			return amb_samples[i].json;
	fail_msg("no sample starts with %s", prefix);
	return NULL;
}

static void test_decoded_fields(void **state)
{
	(void)state;
	amb_msg m = decode_ok(sample_of("{\"kind\":\"register\",\"id\":2,"
	                                "\"metadata\":{\"name\":\"amber-store\""));
	assert_int_equal(m.kind, AMB_MSG_REGISTER);
	assert_int_equal(m.id, 2);
	const amb_writer_md *md = &m.u.reg.metadata;
	assert_string_equal(md->name, "amber-store");
	assert_string_equal(md->instance, "0b7e5a52-1c7d-4f5e-9a3b-2d6c8e1f4a90");
	assert_string_equal(md->instance_name, "E00 at /srv/mail");
	assert_int_equal(md->backup_types, AMB_BACKUP_BIT(AMB_BACKUP_FULL) |
			 AMB_BACKUP_BIT(AMB_BACKUP_COPY) | AMB_BACKUP_BIT(AMB_BACKUP_INCREMENTAL) |
			 AMB_BACKUP_BIT(AMB_BACKUP_DIFFERENTIAL));
	assert_string_equal(md->verifier, "amber-store");
	assert_int_equal(md->restore_method, AMB_RESTORE_STOP_RESTORE_START);
	assert_int_equal(md->max_hold_ms, 5000);
	assert_int_equal(md->n_components, 2);
	assert_string_equal(md->components[0].name, "db1");
	assert_int_equal(md->components[0].type, AMB_COMP_DATABASE);
	assert_true(md->components[0].selectable);         /* the default */
	assert_int_equal(md->components[0].n_files, 1);
	assert_string_equal(md->components[0].files[0].path, "/srv/mail");
	assert_string_equal(md->components[0].files[0].pattern, "db1.edb");
	assert_false(md->components[0].files[0].recursive);
	assert_int_equal(md->components[0].n_logs, 1);
	assert_string_equal(md->components[0].logs[0].pattern, "E00*.log");
	assert_string_equal(md->components[0].checkpoint, "/srv/mail/E00.chk");
	assert_false(md->components[1].selectable);
	assert_true(md->components[1].files[0].recursive);
	assert_null(md->components[1].checkpoint);
	assert_int_equal(md->components[1].n_logs, 0);
	assert_null(md->components[1].logs);
	assert_int_equal(md->n_excludes, 1);
	amb_msg_free(&m);

	m = decode_ok(sample_of("{\"kind\":\"freeze\""));
	assert_int_equal(m.u.wev.hold_ms, 10000);
	assert_string_equal(m.u.wev.session, UUID_A);
	assert_string_equal(m.u.wev.set, UUID_B);
	amb_msg_free(&m);

	m = decode_ok(sample_of("{\"kind\":\"backup-complete\""));
	assert_int_equal(m.u.wev.backup_type, AMB_BACKUP_INCREMENTAL);
	assert_int_equal(m.u.wev.n_components, 2);
	assert_true(m.u.wev.components[0].success);
	assert_false(m.u.wev.components[1].success);
	assert_string_equal(m.u.wev.components[1].name, "attachments");
	amb_msg_free(&m);

	m = decode_ok(sample_of("{\"kind\":\"reply\",\"id\":15,\"event\":\"post-snapshot\","
	                        "\"status\":\"ok\",\"held_writes\":false"));
	assert_int_equal(m.u.reply.event, AMB_MSG_POST_SNAPSHOT);
	assert_int_equal(m.u.reply.status, AMB_REPLY_OK);
	assert_true(m.u.reply.has_held_writes);
	assert_false(m.u.reply.held_writes);
	amb_msg_free(&m);

	m = decode_ok(sample_of("{\"kind\":\"reply\",\"id\":14,\"event\":\"freeze\""));
	assert_int_equal(m.u.reply.n_unchanged, 2);
	assert_string_equal(m.u.reply.unchanged[1], "/srv/mail/sg1/pub1.edb");
	amb_msg_free(&m);

	m = decode_ok(sample_of("{\"kind\":\"reply\",\"id\":13,\"event\":\"freeze\","
	                        "\"status\":\"failed\""));
	assert_int_equal(m.u.reply.cls, AMB_FAIL_RETRYABLE);
	assert_string_equal(m.u.reply.message, "log roll failed: disk full");
	amb_msg_free(&m);

	m = decode_ok(sample_of("{\"kind\":\"error\",\"exit\""));
	assert_int_equal(m.id, 0);
	assert_int_equal(m.u.error.exit, AMB_EXIT_BAD_INPUT);
	assert_int_equal(m.u.error.cls, AMB_FAIL_NONE);
	amb_msg_free(&m);

	m = decode_ok(sample_of("{\"kind\":\"writer-list\",\"id\":30,\"writers\":[{"));
	assert_int_equal(m.u.writers.n_writers, 2);
	assert_int_equal(m.u.writers.writers[0].state, AMB_WS_FAILED_AT_FREEZE);
	assert_int_equal(m.u.writers.writers[0].state, 9);    /* VSS's number */
	assert_int_equal(m.u.writers.writers[0].last_error->cls, AMB_FAIL_TIMEOUT);
	assert_null(m.u.writers.writers[1].last_error);
	assert_int_equal(m.u.writers.writers[1].uid, 0);
	amb_msg_free(&m);

	m = decode_ok(sample_of("{\"kind\":\"events-list\",\"id\":38,\"since\":0"));
	assert_true(m.u.evreq.has_since);
	assert_int_equal(m.u.evreq.since, 0);
	assert_int_equal(m.u.evreq.limit, 100);
	amb_msg_free(&m);
	m = decode_ok("{\"kind\":\"events-follow\",\"id\":39}");
	assert_false(m.u.evreq.has_since);
	amb_msg_free(&m);

	m = decode_ok(sample_of("{\"kind\":\"event\",\"seq\":42"));
	assert_int_equal(m.id, 0);
	assert_int_equal(m.u.event.seq, 42);
	assert_int_equal(m.u.event.time_ms, UINT64_C(1767225600123));
	assert_int_equal(m.u.event.code, AMB_EV_WRITER_TIMEOUT);
	assert_int_equal(m.u.event.severity, AMB_SEV_ERROR);
	assert_int_equal(m.u.event.cls, AMB_FAIL_TIMEOUT);
	assert_string_equal(m.u.event.volume, "/srv");
	amb_msg_free(&m);

	m = decode_ok(sample_of("{\"kind\":\"shadow-delete\",\"id\":35,\"all\":false"));
	assert_false(m.u.del.all);
	assert_string_equal(m.u.del.set, UUID_B);
	assert_null(m.u.del.oldest);
	amb_msg_free(&m);

	m = decode_ok(sample_of("{\"kind\":\"shadow-create\",\"id\":34,\"volumes\":[\"/srv\""));
	assert_int_equal(m.u.create.n_volumes, 2);
	assert_string_equal(m.u.create.volumes[1], "/var/lib/pg");
	assert_true(m.u.create.persistent);
	assert_string_equal(m.u.create.provider, "reflink");
	amb_msg_free(&m);

	m = decode_ok(sample_of("{\"kind\":\"deleted\""));
	assert_int_equal(m.u.deleted.n_shadows, 2);
	assert_string_equal(m.u.deleted.shadows[0], "9d8c7b6a-5f4e-4d3c-b2a1-0f9e8d7c6b5a");
	amb_msg_free(&m);

	/* amb_msg_free twice and on NULL is harmless */
	amb_msg_free(&m);
	amb_msg_free(NULL);
}

/* ---------------------------------------------------------------------- */
/* systematic per-field malformations                                      */

/* the k-th node (pre-order, root excluded) of a JSON tree */
typedef struct loc {
	json_t *parent;
	const char *key;        /* object member, or NULL for an array element */
	size_t index;
	json_t *val;
	char path[512];
} loc;

static bool find_kth(json_t *node, const char *path, size_t *k, loc *out)
{
	if (json_is_object(node)) {
		const char *key;
		json_t *v;
		json_object_foreach(node, key, v) {
			char p[512];
			snprintf(p, sizeof(p), "%s%s%s", path, path[0] ? "." : "", key);
			if ((*k)-- == 0) {
				*out = (loc){ node, key, 0, v, "" };
				snprintf(out->path, sizeof(out->path), "%s", p);
				return true;
			}
			if (find_kth(v, p, k, out))
				return true;
		}
	} else if (json_is_array(node)) {
		for (size_t i = 0; i < json_array_size(node); i++) {
			char p[512];
			snprintf(p, sizeof(p), "%s[%zu]", path, i);
			json_t *v = json_array_get(node, i);
			if ((*k)-- == 0) {
				*out = (loc){ node, NULL, i, v, "" };
				snprintf(out->path, sizeof(out->path), "%s", p);
				return true;
			}
			if (find_kth(v, p, k, out))
				return true;
		}
	}
	return false;
}

static void replace_at(loc *l, json_t *nv)
{
	if (l->key)
		assert_int_equal(json_object_set_new(l->parent, l->key, nv), 0);
	else
		assert_int_equal(json_array_set_new(l->parent, l->index, nv), 0);
}

typedef enum { MUT_DELETE, MUT_TYPE, MUT_EMPTY_STR, MUT_LONG_STR, MUT_CTRL_STR, MUT_NEG,
	       MUT_BIG, MUT_LONG_ARR, MUT_UNKNOWN_FIELD, MUT_COUNT } mut_kind;

static const char *const mut_names[] = { "delete", "wrong type", "empty string",
					 "long string", "control char", "negative",
					 "too big", "long array", "unknown field" };

/* Apply mutation `mk` (with variant `var`) at the k-th node of a fresh copy
 * of root and check the result.  Returns false when k is past the end. */
static bool mutate_and_check(json_t *root, size_t k, mut_kind mk, int var, const char *orig,
			     int *applied)
{
	json_t *copy = json_deep_copy(root);
	assert_non_null(copy);
	loc l;
	size_t kk = k;
	if (!find_kth(copy, "", &kk, &l)) {
		json_decref(copy);
		return false;
	}
	json_t *v = l.val;
	bool must_fail = true;
	char want[600];
	snprintf(want, sizeof(want), "%s: ", l.path);
	const char *alt = NULL;     /* a second acceptable error text */

	switch (mk) {
	case MUT_DELETE:
		if (!l.key)
			goto skip;
		json_object_del(l.parent, l.key);
		must_fail = false;      /* optional fields may go; if refused, say why */
		snprintf(want, sizeof(want), "%s", l.path);
		alt = "exactly one of";
		break;
	case MUT_TYPE: {
		json_t *cands[] = { json_null(), json_true(), json_integer(0), json_real(1.5),
				    json_string("x"), json_array(), json_object() };
		json_t *nv = cands[var];
		for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++)
			if ((int)i != var)
				json_decref(cands[i]);
		bool same = json_typeof(nv) == json_typeof(v) ||
			    (json_is_boolean(nv) && json_is_boolean(v));
		if (same) {
			json_decref(nv);
			goto skip;
		}
		replace_at(&l, nv);
		break;
	}
	case MUT_EMPTY_STR:
		if (!json_is_string(v))
			goto skip;
		replace_at(&l, json_string(""));
		break;
	case MUT_LONG_STR: {
		if (!json_is_string(v))
			goto skip;
		char *s = malloc(5001);
		memset(s, 'a', 5000);
		s[5000] = '\0';
		replace_at(&l, json_string(s));
		free(s);
		break;
	}
	case MUT_CTRL_STR: {
		if (!json_is_string(v))
			goto skip;
		static const char *const ctl[] = { "a\001b", "a\nb", "a\x7f", "a\xc2\x85" };
		char s[512];
		snprintf(s, sizeof(s), "%s%s", json_string_value(v), ctl[var % 4]);
		replace_at(&l, json_string(s));
		break;
	}
	case MUT_NEG:
		if (!json_is_integer(v))
			goto skip;
		replace_at(&l, json_integer(-1 - var));
		break;
	case MUT_BIG:
		if (!json_is_integer(v))
			goto skip;
		replace_at(&l, json_integer((json_int_t)(UINT64_C(1) << 53) + var));
		break;
	case MUT_LONG_ARR: {
		if (!json_is_array(v))
			goto skip;
		json_t *a = json_array();
		json_t *el = json_array_size(v) ? json_array_get(v, 0) : NULL;
		for (int i = 0; i < 5000; i++)
			json_array_append_new(a, el ? json_incref(el) : json_string("x"));
		replace_at(&l, a);
		break;
	}
	case MUT_UNKNOWN_FIELD:
		if (!json_is_object(v))
			goto skip;
		json_object_set_new(v, "zz_unknown", json_integer(1));
		snprintf(want, sizeof(want), "%s.zz_unknown: unknown field", l.path);
		break;
	default:
		goto skip;
	}

	char *txt = json_dumps(copy, JSON_COMPACT);
	assert_non_null(txt);
	amb_msg m;
	char err[512];
	int rc = amb_msg_decode(txt, strlen(txt), &m, err, sizeof(err));
	(*applied)++;
	if (rc == 0) {
		if (must_fail) {
			print_error("%s at %s accepted\n  sample: %s\n  mutated: %.400s\n",
				    mut_names[mk], l.path, orig, txt);
			fail();
		}
		check_reencode(&m, txt);
		amb_msg_free(&m);
	} else {
		assert_int_equal(m.kind, AMB_MSG_NONE);
		assert_true(printable_ascii(err));
		bool good = mk == MUT_DELETE ? (strstr(err, want) || strstr(err, alt))
					     : strncmp(err, want, strlen(want)) == 0;
		if (!good) {
			print_error("%s at %s: error \"%s\" does not start with \"%s\"\n"
				    "  mutated: %.400s\n", mut_names[mk], l.path, err, want, txt);
			fail();
		}
	}
	free(txt);
skip:
	json_decref(copy);
	return true;
}

static void test_every_field_malformed(void **state)
{
	(void)state;
	int applied = 0;
	for (size_t i = 0; i < amb_n_samples; i++) {
		json_error_t je;
		json_t *root = json_loads(amb_samples[i].json, 0, &je);
		assert_non_null(root);
		for (size_t k = 0;; k++) {
			bool more = true;
			for (int mk = 0; mk < MUT_COUNT && more; mk++) {
				int vars = mk == MUT_TYPE ? 7 : mk == MUT_CTRL_STR ? 4 : 1;
				for (int var = 0; var < vars && more; var++)
					more = mutate_and_check(root, k, mk, var,
								amb_samples[i].json, &applied);
			}
			if (!more)
				break;
		}
		/* an unknown field at the top level */
		json_object_set_new(root, "zz_unknown", json_true());
		char *txt = json_dumps(root, JSON_COMPACT);
		expect_fail(txt, strlen(txt), "zz_unknown: unknown field", "top-level unknown");
		free(txt);
		json_decref(root);
	}
	print_message("per-field malformations checked: %d\n", applied);
	assert_true(applied > 5000);
}

/* ---------------------------------------------------------------------- */
/* hand-picked malformed messages                                          */

#define MD_OK(extra) \
	"{\"kind\":\"register\",\"id\":1,\"metadata\":{\"name\":\"w\"," \
	"\"instance\":\"" UUID_A "\"," \
	"\"backup_types\":[\"full\"],\"verifier\":\"none\",\"restore_method\":\"custom\"," \
	"\"max_hold_ms\":100,\"components\":[" extra "]}}"
#define COMP_PATH(p) \
	"{\"name\":\"c\",\"type\":\"database\",\"files\":[{\"path\":\"" p "\",\"pattern\":\"*\"}]}"
#define COMP_PATTERN(p) \
	"{\"name\":\"c\",\"type\":\"database\",\"files\":[{\"path\":\"/d\"," \
	"\"pattern\":\"" p "\"}]}"

static void test_paths(void **state)
{
	(void)state;
	static const struct {
		const char *path;
		const char *err;    /* NULL: valid */
	} cases[] = {
		{ "/", NULL },
		{ "/srv", NULL },
		{ "/srv/mail/E00.chk", NULL },
		{ "/a/..b/b..", NULL },
		{ "/a/.hidden/...", NULL },
		{ "/d\xc3\xbcr/\xe2\x82\xac", NULL },
		{ "srv", "not an absolute path" },
		{ "./srv", "not an absolute path" },
		{ "/srv/", "trailing" },
		{ "//srv", "empty component" },
		{ "/srv//mail", "empty component" },
		{ "/./srv", "'.' component" },
		{ "/srv/.", "'.' component" },
		{ "/..", "'..'" },
		{ "/srv/../etc", "'..'" },
		{ "/srv/..", "'..'" },
		{ "/srv\\u0001x", "control character" },
		{ "/srv\\nx", "control character" },
		{ "/srv\\u007f", "control character" },
		{ "/srv\\u0085", "control character" },
		{ "", "must not be empty" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char json[1024];
		snprintf(json, sizeof(json), MD_OK(COMP_PATH("%s")), cases[i].path);
		if (!cases[i].err) {
			expect_ok_str(json);
		} else {
			amb_msg m;
			char err[512];
			assert_int_equal(decode_str(json, &m, err, sizeof(err)), -EBADMSG);
			if (strncmp(err, "metadata.components[0].files[0].path: ", 38) != 0 ||
			    !strstr(err, cases[i].err)) {
				print_error("path \"%s\": error \"%s\", wanted "
				            "\"%s\"\n", cases[i].path,
					    err, cases[i].err);
				fail();
			}
		}
	}
	/* length: 4095 bytes is the most */
	char *big = malloc(8192);
	char *p = malloc(4097);
	p[0] = '/';
	memset(p + 1, 'x', 4094);
	p[4095] = '\0';
	snprintf(big, 8192, MD_OK(COMP_PATH("%s")), p);
	expect_ok_str(big);
	p[4095] = 'x';
	p[4096] = '\0';
	snprintf(big, 8192, MD_OK(COMP_PATH("%s")), p);
	expect_fail_str(big, "metadata.components[0].files[0].path: longer than 4095 bytes");
	free(p);
	free(big);

	/* the public validators agree */
	assert_true(amb_proto_path_ok("/"));
	assert_true(amb_proto_path_ok("/a/b"));
	assert_false(amb_proto_path_ok("/a/../b"));
	assert_false(amb_proto_path_ok("a"));
	assert_false(amb_proto_path_ok("/a\xff"));
	assert_false(amb_proto_path_ok("/a\xc0\xaf"));       /* overlong '/' */
	assert_false(amb_proto_path_ok("/a\xed\xa0\x80"));   /* surrogate */
	assert_false(amb_proto_path_ok(NULL));
}

static void test_patterns_names_uuids(void **state)
{
	(void)state;
	expect_ok_str(MD_OK(COMP_PATTERN("*.edb")));
	expect_ok_str(MD_OK(COMP_PATTERN("E00[0-9A-F]*.log")));
	expect_fail_str(MD_OK(COMP_PATTERN("a/b")),
			"metadata.components[0].files[0].pattern: must not contain '/'");
	expect_fail_str(MD_OK(COMP_PATTERN("..")),
			"metadata.components[0].files[0].pattern: must not be '.' or '..'");
	expect_fail_str(MD_OK(COMP_PATTERN(".")), "pattern: must not be '.' or '..'");
	expect_fail_str(MD_OK(COMP_PATTERN("a\\tb")), "pattern: contains a control character");

	/* names */
	static const struct {
		const char *name;
		bool ok;
	} names[] = {
		{ "amber-store", true }, { "pg_16.main", true }, { "a@b+c", true }, { "0", true },
		{ "-x", false }, { ".x", false }, { "_x", false }, { "a b", false },
		{ "a/b", false }, { "a:b", false }, { "\\u00e4", false }, { "a\\u0000b", false },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char json[512];
		snprintf(json, sizeof(json),
			 "{\"kind\":\"hello\",\"id\":1,\"version\":1,\"role\":\"admin\","
			 "\"name\":\"%s\",\"pid\":1}", names[i].name);
		if (names[i].ok)
			expect_ok_str(json);
		else
			expect_fail_str(json, strstr(names[i].name, "u0000") ? "json:" : "name: ");
	}
	char json[512];
	snprintf(json, sizeof(json), "{\"kind\":\"hello\",\"id\":1,\"version\":1,"
	                             "\"role\":\"admin\","
		 "\"name\":\"%s\",\"pid\":1}",
		 "a123456789b123456789c123456789d123456789e123456789f123456789g123");
	expect_ok_str(json);    /* 64 bytes */
	snprintf(json, sizeof(json), "{\"kind\":\"hello\",\"id\":1,\"version\":1,"
	                             "\"role\":\"admin\","
		 "\"name\":\"%s\",\"pid\":1}",
		 "a123456789b123456789c123456789d123456789e123456789f123456789g1234");
	expect_fail_str(json, "name: longer than 64 bytes");
	assert_true(amb_proto_name_ok("amber-store"));
	assert_false(amb_proto_name_ok(""));
	assert_false(amb_proto_name_ok("a b"));

	/* UUIDs */
	expect_fail_str("{\"kind\":\"session-gather\",\"id\":1,"
	                "\"session\":\"5F0C2E9A-8D41-4B6E-A7C3-19E2F0D4B581\"}",
			"session: not a UUID");
	expect_fail_str("{\"kind\":\"session-gather\",\"id\":1,"
	                "\"session\":\"5f0c2e9a8d414b6ea7c319e2f0d4b581\"}",
			"session: not a UUID");
	expect_fail_str("{\"kind\":\"session-gather\",\"id\":1,"
	                "\"session\":\"5f0c2e9a-8d41-4b6e-a7c3-19e2f0d4b58g\"}",
			"session: not a UUID");
	expect_fail_str("{\"kind\":\"session-gather\",\"id\":1,"
	                "\"session\":\"5f0c2e9a-8d41-4b6e-a7c3-19e2f0d4b5811\"}",
			"session: ");
	assert_true(amb_proto_uuid_ok(UUID_A));
	assert_false(amb_proto_uuid_ok("x"));
}

static void test_semantic_rules(void **state)
{
	(void)state;
	/* enums */
	expect_fail_str("{\"kind\":\"hello\",\"id\":1,\"version\":1,\"role\":\"root\","
	                "\"name\":\"a\",\"pid\":1}",
			"role: unknown value \"root\"");
	expect_fail_str("{\"kind\":\"hello\",\"id\":1,\"version\":1,\"role\":\"Writer\","
	                "\"name\":\"a\",\"pid\":1}",
			"role: unknown value");
	expect_fail_str("{\"kind\":\"reply\",\"id\":1,\"event\":\"hello\",\"status\":\"ok\"}",
			"event: unknown value \"hello\"");
	/* numbers */
	expect_fail_str("{\"kind\":\"hello\",\"id\":1,\"version\":0,\"role\":\"admin\","
	                "\"name\":\"a\",\"pid\":1}",
			"version: out of range (1..65535)");
	expect_fail_str("{\"kind\":\"hello\",\"id\":1,\"version\":1,\"role\":\"admin\","
	                "\"name\":\"a\",\"pid\":0}",
			"pid: out of range");
	expect_fail_str("{\"kind\":\"hello\",\"id\":1,\"version\":1,\"role\":\"admin\","
	                "\"name\":\"a\",\"pid\":2147483648}",
			"pid: out of range");
	expect_fail_str("{\"kind\":\"hello\",\"id\":1,\"version\":2,\"min_version\":3,"
	                "\"role\":\"admin\","
			"\"name\":\"a\",\"pid\":1}", "min_version: greater than version");
	expect_fail_str("{\"kind\":\"hello\",\"id\":1,\"version\":1.0,\"role\":\"admin\","
	                "\"name\":\"a\",\"pid\":1}",
			"version: must be an integer, not a real number");
	expect_fail_str("{\"kind\":\"hello\",\"id\":1,\"version\":1e0,\"role\":\"admin\","
	                "\"name\":\"a\",\"pid\":1}",
			"version: must be an integer");
	expect_fail_str("{\"kind\":\"hello\",\"id\":1,\"version\":\"1\",\"role\":\"admin\","
	                "\"name\":\"a\",\"pid\":1}",
			"version: must be an integer, not a string");
	expect_fail_str("{\"kind\":\"hello\",\"id\":1,\"version\":99999999999999999999,"
	                "\"role\":\"admin\","
			"\"name\":\"a\",\"pid\":1}", "json:");
	expect_fail_str("{\"kind\":\"freeze\",\"id\":1,\"session\":\"" UUID_A "\","
	                "\"set\":\"" UUID_B "\","
			"\"hold_ms\":0}", "hold_ms: out of range (1..600000)");
	expect_fail_str("{\"kind\":\"freeze\",\"id\":1,\"session\":\"" UUID_A "\","
	                "\"set\":\"" UUID_B "\","
			"\"hold_ms\":600001}", "hold_ms: out of range");
	expect_fail_str("{\"kind\":\"freeze\",\"id\":1,\"session\":\"" UUID_A "\","
	                "\"set\":\"" UUID_B "\"}",
			"hold_ms: missing");
	expect_fail_str("{\"kind\":\"welcome\",\"id\":1,\"version\":1,\"server\":\"amberd\","
	                "\"server_version\":\"1\","
			"\"max_message\":100,\"hold_ms\":1,"
			"\"event_timeout_ms\":1}", "max_message: out of range");
	expect_fail_str("{\"kind\":\"event\",\"seq\":1,\"time\":0,\"code\":999,"
	                "\"severity\":\"info\",\"message\":\"m\"}",
			"code: out of range (1000..9999)");
	expect_fail_str("{\"kind\":\"event\",\"seq\":0,\"time\":0,\"code\":1001,"
	                "\"severity\":\"info\",\"message\":\"m\"}",
			"seq: out of range");
	expect_fail_str("{\"kind\":\"list-shadows\",\"id\":1,\"limit\":0}", "limit: out of range "
	                "(1..4096)");
	/* reply rules */
	expect_fail_str("{\"kind\":\"reply\",\"id\":1,\"event\":\"post-snapshot\","
	                "\"status\":\"ok\"}",
			"held_writes: missing (required in an ok reply to post-snapshot)");
	expect_fail_str("{\"kind\":\"reply\",\"id\":1,\"event\":\"freeze\",\"status\":\"ok\","
	                "\"held_writes\":true}",
			"held_writes: only allowed in an ok reply to post-snapshot");
	expect_fail_str("{\"kind\":\"reply\",\"id\":1,\"event\":\"post-snapshot\","
	                "\"status\":\"failed\","
			"\"class\":\"timeout\",\"held_writes\":false}", "held_writes: only "
			"allowed");
	expect_fail_str("{\"kind\":\"reply\",\"id\":1,\"event\":\"identify\",\"status\":\"ok\"}",
			"metadata: missing (required in an ok reply to identify)");
	expect_fail_str("{\"kind\":\"reply\",\"id\":1,\"event\":\"thaw\",\"status\":\"ok\","
	                "\"unchanged\":[\"/a/b\"]}",
			"unchanged: only allowed in an ok reply to freeze");
	expect_fail_str("{\"kind\":\"reply\",\"id\":1,\"event\":\"freeze\",\"status\":\"failed\","
	                "\"class\":\"timeout\",\"unchanged\":[\"/a/b\"]}",
			"unchanged: only allowed in an ok reply to freeze");
	expect_fail_str("{\"kind\":\"reply\",\"id\":1,\"event\":\"freeze\",\"status\":\"ok\","
	                "\"unchanged\":[\"a/b\"]}",
			"unchanged[0]");
	expect_fail_str("{\"kind\":\"reply\",\"id\":1,\"event\":\"freeze\",\"status\":\"ok\","
	                "\"unchanged\":[\"/a/b\",\"/a/b\"]}",
			"unchanged[1]");
	expect_fail_str("{\"kind\":\"reply\",\"id\":1,\"event\":\"freeze\",\"status\":\"failed\"}",
			"class: missing (required when status is failed)");
	expect_fail_str("{\"kind\":\"reply\",\"id\":1,\"event\":\"freeze\",\"status\":\"ok\","
	                "\"class\":\"timeout\"}",
			"class: not allowed when status is ok");
	expect_fail_str("{\"kind\":\"reply\",\"id\":1,\"event\":\"thaw\",\"status\":\"ok\","
	                "\"metadata\":{}}",
			"metadata.name: missing");
	/* session-open */
	expect_fail_str("{\"kind\":\"session-open\",\"id\":1,\"mode\":\"backup\"}",
			"backup_type: missing (required for a backup session)");
	expect_ok_str("{\"kind\":\"session-open\",\"id\":1,\"mode\":\"restore\","
	              "\"backup_type\":\"full\"}");
	/* shadow-delete: exactly one selector */
	expect_fail_str("{\"kind\":\"shadow-delete\",\"id\":1}", "exactly one of");
	expect_fail_str("{\"kind\":\"shadow-delete\",\"id\":1,\"all\":false}", "exactly one of");
	expect_fail_str("{\"kind\":\"shadow-delete\",\"id\":1,\"all\":true,"
	                "\"oldest\":\"/srv\"}", "exactly one of");
	expect_fail_str("{\"kind\":\"shadow-delete\",\"id\":1,\"shadow\":\"" UUID_A "\","
	                "\"set\":\"" UUID_B "\"}",
			"exactly one of");
	/* duplicates */
	expect_fail_str("{\"kind\":\"shadow-create\",\"id\":1,\"volumes\":[\"/a\",\"/b\",\"/a\"]}",
			"volumes[2]: duplicate of element 0");
	expect_fail_str("{\"kind\":\"shadow-create\",\"id\":1,\"volumes\":[]}", "volumes: must "
	                "have 1..64 elements");
	expect_fail_str(MD_OK(COMP_PATH("/a") "," COMP_PATH("/b")), "metadata.components[1]: "
	                                "duplicate of element 0");
	expect_fail_str("{\"kind\":\"register\",\"id\":1,\"metadata\":{\"name\":\"w\","
	                "\"instance\":\"" UUID_A "\","
			"\"backup_types\":[\"full\",\"full\"],\"verifier\":\"none\","
			"\"restore_method\":\"custom\","
			"\"max_hold_ms\":100,\"components\":[]}}", "metadata.backup_types[1]: "
			"duplicate value");
	expect_fail_str("{\"kind\":\"register\",\"id\":1,\"metadata\":{\"name\":\"w\","
	                "\"instance\":\"" UUID_A "\","
			"\"backup_types\":[],\"verifier\":\"none\",\"restore_method\":\"custom\","
			"\"max_hold_ms\":100,\"components\":[]}}", "metadata.backup_types: must "
			"have 1..4 elements");
	expect_fail_str("{\"kind\":\"session-backup-complete\",\"id\":1,"
	                "\"session\":\"" UUID_A "\",\"results\":["
			"{\"writer\":\"w\",\"component\":\"c\",\"success\":true},"
			"{\"writer\":\"w\",\"component\":\"c\","
			"\"success\":false}]}", "results[1]: duplicate");
	expect_ok_str("{\"kind\":\"session-backup-complete\",\"id\":1,\"session\":\"" UUID_A "\","
	              "\"results\":["
		      "{\"writer\":\"w\",\"component\":\"c\",\"success\":true},"
		      "{\"writer\":\"v\",\"component\":\"c\",\"success\":false}]}");
	expect_fail_str("{\"kind\":\"deleted\",\"id\":1,\"shadows\":[\"" UUID_A "\",7]}",
			"shadows[1]: must be a string, not an integer");
	/* text */
	expect_fail_str("{\"kind\":\"error\",\"exit\":\"failed\",\"message\":\"\"}", "message: "
	                "must not be empty");
	expect_fail_str("{\"kind\":\"error\",\"exit\":\"failed\",\"message\":\"a\\u001bb\"}",
			"message: contains a control character");
	expect_fail_str("{\"kind\":\"error\",\"exit\":\"failed\",\"message\":\"x\","
	                "\"class\":null}",
			"class: must be a string, not null");
}

static void test_envelope(void **state)
{
	(void)state;
	expect_fail_str("{\"id\":1}", "kind: missing");
	expect_fail_str("{\"kind\":\"bogus\",\"id\":1}", "kind: unknown message kind \"bogus\"");
	expect_fail_str("{\"kind\":\"\",\"id\":1}", "kind: must not be empty");
	expect_fail_str("{\"kind\":7,\"id\":1}", "kind: must be a string, not an integer");
	expect_fail_str("{\"kind\":\"OK\",\"id\":1}", "kind: unknown message kind \"OK\"");
	expect_fail_str("{\"kind\":\"ok\"}", "id: missing");
	expect_fail_str("{\"kind\":\"ok\",\"id\":0}", "id: out of range (1..9007199254740991)");
	expect_fail_str("{\"kind\":\"ok\",\"id\":-5}", "id: must not be negative");
	expect_fail_str("{\"kind\":\"ok\",\"id\":9007199254740992}", "id: out of range");
	expect_fail_str("{\"kind\":\"ok\",\"id\":\"1\"}", "id: must be an integer, not a string");
	expect_fail_str("{\"kind\":\"ok\",\"id\":1.5}", "id: must be an integer, not a real "
	                "number");
	expect_fail_str("{\"kind\":\"event\",\"id\":1,\"seq\":1,\"time\":0,\"code\":4001,"
	                "\"severity\":\"info\","
			"\"message\":\"m\"}", "id: not allowed in event");
	expect_fail_str("{\"kind\":\"ok\",\"id\":1,\"extra\":true}", "extra: unknown field");
	expect_fail_str("{\"kind\":\"ok\",\"id\":1,\"id\":2}", "json: duplicate object key");
	expect_fail_str("{\"kind\":\"ok\",\"kind\":\"ok\",\"id\":1}", "json: duplicate object "
	                "key");
	/* a quoted unknown key is made printable */
	expect_fail_str("{\"kind\":\"ok\",\"id\":1,\"\\u001b[31m\":1}", "?[31m: unknown field");
	/* the id survives a failed decode, for the error answer */
	amb_msg m;
	char err[256];
	assert_int_equal(decode_str("{\"kind\":\"freeze\","
	                            "\"id\":77}", &m, err, sizeof(err)), -EBADMSG);
	assert_int_equal(m.id, 77);
	assert_int_equal(m.kind, AMB_MSG_NONE);
	assert_string_equal(err, "session: missing");
	assert_int_equal(decode_str("{\"kind\":\"bogus\","
	                            "\"id\":78}", &m, err, sizeof(err)), -EBADMSG);
	assert_int_equal(m.id, 78);
	assert_int_equal(decode_str("{\"kind\":\"ok\","
	                            "\"id\":-1}", &m, err, sizeof(err)), -EBADMSG);
	assert_int_equal(m.id, 0);
	/* err may be NULL or tiny */
	assert_int_equal(decode_str("{\"kind\":\"ok\"}", &m, NULL, 0), -EBADMSG);
	char tiny[4];
	assert_int_equal(decode_str("{\"kind\":\"ok\"}", &m, tiny, sizeof(tiny)), -EBADMSG);
	assert_string_equal(tiny, "id:");
}

static void test_json_level(void **state)
{
	(void)state;
	/* not an object */
	expect_fail_str("[]", "message must be a JSON object, not an array");
	expect_fail_str("1", "json:");
	expect_fail_str("\"ok\"", "json:");
	expect_fail_str("null", "json:");
	expect_fail_str("", NULL);
	expect_fail(NULL, 0, "message size", "NULL");
	expect_fail("{}", 0, "message size", "zero length");
	expect_fail("{}", AMB_PROTO_MAX_MSG_LIMIT + 1u, "message size", "oversize");
	/* trailing bytes, BOM, comments, single quotes */
	expect_fail_str("{\"kind\":\"ok\",\"id\":1}x", "json:");
	expect_fail_str("{\"kind\":\"ok\",\"id\":1}{}", "json:");
	expect_fail_str("\xef\xbb\xbf{\"kind\":\"ok\",\"id\":1}", "json:");
	expect_fail_str("{\"kind\":\"ok\",\"id\":1 /* c */}", "json:");
	expect_fail_str("{'kind':'ok','id':1}", "json:");
	expect_fail_str("{\"kind\":\"ok\",\"id\":01}", "json:");
	expect_fail_str("{\"kind\":\"ok\",\"id\":NaN}", "json:");
	/* NUL: escaped, and raw inside and after the text */
	expect_fail_str("{\"kind\":\"error\",\"exit\":\"failed\","
	                "\"message\":\"a\\u0000b\"}", "json:");
	expect_fail("{\"kind\":\"ok\",\"id\":1}\0", 21, "json:", "raw NUL after");
	expect_fail("{\"kind\":\"o\0k\",\"id\":1}", 21, "json:", "raw NUL inside");
	/* invalid UTF-8, overlong, surrogates */
	expect_fail_str("{\"kind\":\"error\",\"exit\":\"failed\",\"message\":\"\xff\"}", "json:");
	expect_fail_str("{\"kind\":\"error\",\"exit\":\"failed\","
	                "\"message\":\"\xc0\xaf\"}", "json:");
	expect_fail_str("{\"kind\":\"error\",\"exit\":\"failed\","
	                "\"message\":\"\xed\xa0\x80\"}", "json:");
	expect_fail_str("{\"kind\":\"error\",\"exit\":\"failed\","
	                "\"message\":\"\\ud800\"}", "json:");
	expect_fail_str("{\"kind\":\"error\",\"exit\":\"failed\","
	                "\"message\":\"\xe2\x82\"}", "json:");
	/* a valid surrogate pair and non-ASCII text are fine */
	expect_ok_str("{\"kind\":\"error\",\"exit\":\"failed\",\"message\":\"\\ud83d\\ude00 "
	              "\xc3\xa4\"}");

	/* deep nesting, inside a field and at the top */
	char *deep = malloc(600000);
	size_t n = 0;
	n += (size_t)sprintf(deep + n, "{\"kind\":\"ok\",\"id\":1,\"x\":");
	for (int i = 0; i < 100000; i++)
		deep[n++] = '[';
	for (int i = 0; i < 100000; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	deep[n] = '\0';
	expect_fail_str(deep, "json: nested deeper than 12 levels");
	n = 0;
	for (int i = 0; i < 100000; i++)
		n += (size_t)sprintf(deep + n, "{\"a\":");
	expect_fail_str(deep, "json: nested deeper");
	free(deep);
	/* 12 levels is the limit: the parser is reached, the schema refuses */
	expect_fail_str("{\"kind\":\"ok\",\"id\":1,\"x\":[[[[[[[[[[[]]]]]]]]]]]}", "x: unknown "
	                "field");
	expect_fail_str("{\"kind\":\"ok\",\"id\":1,\"x\":[[[[[[[[[[[[]]]]]]]]]]]]}", "json: "
	                "nested deeper");
	/* brackets inside strings do not count */
	expect_ok_str("{\"kind\":\"error\",\"exit\":\"failed\","
	              "\"message\":\"[[[[[[[[[[[[[[[[[[[[[[\\\"{{{{{{{{{{{{{{{\"}");

	/* every proper prefix of every sample is refused */
	for (size_t i = 0; i < amb_n_samples; i++) {
		const char *s = amb_samples[i].json;
		size_t len = strlen(s);
		for (size_t l = 1; l < len; l++) {
			/* the hand-written sample with trailing white space parses
			 * once the closing brace is in */
			if (l + 1 == len && s[len - 1] == '\n')
				continue;
			expect_fail(s, l, "json:", "truncated");
		}
	}
}

/* ---------------------------------------------------------------------- */
/* encoder                                                                 */

static void test_encode_from_struct(void **state)
{
	(void)state;
	amb_msg m;
	memset(&m, 0, sizeof(m));
	m.kind = AMB_MSG_FREEZE;
	m.id = 13;
	strcpy(m.u.wev.session, UUID_A);
	strcpy(m.u.wev.set, UUID_B);
	m.u.wev.hold_ms = 2500;
	char *vols[] = { (char *)"/ignored" };     /* freeze carries no volumes */
	m.u.wev.volumes = vols;
	m.u.wev.n_volumes = 1;
	char *j;
	size_t l;
	assert_int_equal(amb_msg_encode(&m, &j, &l), 0);
	assert_string_equal(j, "{\"kind\":\"freeze\",\"id\":13,\"session\":\"" UUID_A "\","
	                       "\"set\":\""
			    UUID_B "\",\"hold_ms\":2500}");
	free(j);

	/* a writer's identify reply with metadata built by hand */
	amb_fileset fs = { (char *)"/srv/db", (char *)"*.edb", true };
	amb_component comp = { .name = "db", .type = AMB_COMP_DATABASE, .selectable = true,
			       .files = &fs, .n_files = 1, .checkpoint = (char *)"/srv/db/E00.ch"
			                                                         "k" };
	amb_writer_md md = { .name = "amber-store", .instance = UUID_A,
			     .backup_types = AMB_BACKUP_BIT(AMB_BACKUP_FULL) |
					     AMB_BACKUP_BIT(AMB_BACKUP_COPY),
			     .verifier = "amber-store", .restore_method = AMB_RESTORE_CUSTOM,
			     .max_hold_ms = 1000, .components = &comp, .n_components = 1 };
	memset(&m, 0, sizeof(m));
	m.kind = AMB_MSG_REPLY;
	m.id = 10;
	m.u.reply.event = AMB_MSG_IDENTIFY;
	m.u.reply.status = AMB_REPLY_OK;
	m.u.reply.metadata = &md;
	assert_int_equal(amb_msg_encode(&m, &j, &l), 0);
	assert_string_equal(j, "{\"kind\":\"reply\",\"id\":10,\"event\":\"identify\","
	                       "\"status\":\"ok\","
			    "\"metadata\":{\"name\":\"amber-store\",\"instance\":\"" UUID_A "\","
			    "\"backup_types\":[\"full\",\"copy\"],\"verifier\":\"amber-store\","
			    "\"restore_method\":\"custom\",\"max_hold_ms\":1000,\"components\":[{"
			    "\"name\":\"db\",\"type\":\"database\","
			    "\"files\":[{\"path\":\"/srv/db\","
			    "\"pattern\":\"*.edb\",\"recursive\":true}],"
			    "\"checkpoint\":\"/srv/db/E00.chk\"}]}}");
	amb_msg back;
	char err[512];
	assert_int_equal(amb_msg_decode(j, l, &back, err, sizeof(err)), 0);
	assert_string_equal(back.u.reply.metadata->components[0].files[0].path, "/srv/db");
	amb_msg_free(&back);
	free(j);

	/* the encoder refuses, naming the field */
	fs.path = (char *)"/srv/../etc";
	assert_int_equal(amb_msg_encode(&m, &j, &l), -EINVAL);
	assert_null(j);
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "metadata.components[0].files[0].path: contains a '..' "
	                         "component");
	fs.path = (char *)"/srv/db";
	strcpy(md.name, "amber store");
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "metadata.name: may only contain letters, digits and . _ - @ +");
	strcpy(md.name, "amber-store");
	md.backup_types = 0;
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "metadata.backup_types: must have 1..4 elements");
	md.backup_types = 1u << 9;
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "metadata.backup_types: invalid value 9 in mask");
	md.backup_types = AMB_BACKUP_BIT(AMB_BACKUP_FULL);
	md.restore_method = 42;
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "metadata.restore_method: invalid value 42");
	md.restore_method = AMB_RESTORE_CUSTOM;
	comp.n_files = 2;
	comp.files = NULL;
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "metadata.components[0].files: 2 elements but no array");
	comp.files = &fs;
	comp.n_files = 1;
	fs.pattern = (char *)"\xff";
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "metadata.components[0].files[0].pattern: invalid UTF-8");
	fs.pattern = (char *)"*.edb";
	m.u.reply.metadata = NULL;
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "metadata: missing (required in an ok reply to identify)");
	m.u.reply.metadata = &md;
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), 0);
	m.id = 0;
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "id: out of range (1..9007199254740991)");
	m.id = AMB_MAX_ID + 1;
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	m.id = 1;
	m.kind = AMB_MSG_KIND_COUNT;
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	m.kind = AMB_MSG_NONE;
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);

	/* required heap string missing; inline name not terminated */
	memset(&m, 0, sizeof(m));
	m.kind = AMB_MSG_ERROR;
	m.u.error.exit = AMB_EXIT_RETRYABLE;
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "message: missing");
	m.u.error.message = (char *)"busy: another shadow set is being created";
	m.u.error.cls = AMB_FAIL_RETRYABLE;
	assert_int_equal(amb_msg_encode(&m, &j, &l), 0);
	assert_string_equal(j, "{\"kind\":\"error\",\"exit\":\"retryable\","
	                       "\"class\":\"retryable\","
			    "\"message\":\"busy: another shadow set is being created\"}");
	free(j);
	memset(&m, 0, sizeof(m));
	m.kind = AMB_MSG_HELLO;
	m.id = 1;
	m.u.hello.version = AMB_PROTO_VERSION;
	m.u.hello.role = AMB_ROLE_REQUESTOR;
	m.u.hello.pid = 1;
	memset(m.u.hello.name, 'a', sizeof(m.u.hello.name));
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "name: not NUL-terminated");
	/* too many elements is refused before anything is built */
	memset(&m, 0, sizeof(m));
	m.kind = AMB_MSG_SHADOW_CREATE;
	m.id = 1;
	m.u.create.n_volumes = AMB_MAX_VOLUMES + 1;
	m.u.create.volumes = vols;
	assert_int_equal(amb_msg_check(&m, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "volumes: must have 1..64 elements");
	/* the event kind never carries an id, whatever the struct says */
	memset(&m, 0, sizeof(m));
	m.kind = AMB_MSG_EVENT;
	m.id = 5;
	m.u.event.seq = 1;
	m.u.event.code = AMB_EV_DAEMON_STARTED;
	m.u.event.severity = AMB_SEV_INFO;
	m.u.event.message = (char *)"amberd started";
	assert_int_equal(amb_msg_encode(&m, &j, &l), 0);
	assert_string_equal(j, "{\"kind\":\"event\",\"seq\":1,\"time\":0,\"code\":4001,"
			    "\"severity\":\"info\",\"message\":\"amberd started\"}");
	free(j);
}

static void test_names_and_event_codes(void **state)
{
	(void)state;
	assert_string_equal(amb_msg_kind_name(AMB_MSG_SESSION_BACKUP_COMPLETE), "session-backup-co"
	                                                                        "mplete");
	assert_null(amb_msg_kind_name(AMB_MSG_NONE));
	assert_null(amb_msg_kind_name(AMB_MSG_KIND_COUNT));
	assert_string_equal(amb_writer_state_name(AMB_WS_WAITING_FOR_BACKUP_COMPLETE),
			    "waiting-for-backup-complete");
	assert_string_equal(amb_writer_state_name(AMB_WS_FAILED_AT_BACKUP_SHUTDOWN),
			    "failed-at-backup-shutdown");
	assert_int_equal(AMB_WS_FAILED_AT_BACKUP_SHUTDOWN, 15);
	assert_null(amb_writer_state_name(AMB_WS_COUNT));
	assert_string_equal(amb_fail_class_name(AMB_FAIL_INCONSISTENT), "inconsistent-snapshot");
	assert_string_equal(amb_exit_class_name(AMB_EXIT_BAD_INPUT), "bad-input");
	assert_int_equal(AMB_EXIT_RETRYABLE, 3);
	assert_string_equal(amb_role_name(AMB_ROLE_ADMIN), "admin");
	assert_string_equal(amb_backup_type_name(AMB_BACKUP_DIFFERENTIAL), "differential");
	assert_string_equal(amb_restore_method_name(AMB_RESTORE_TO_ALTERNATE_LOCATION),
			    "to-alternate-location");
	/* every kind has a distinct name */
	for (int a = 1; a < AMB_MSG_KIND_COUNT; a++) {
		assert_non_null(amb_msg_kind_name(a));
		for (int b = 1; b < a; b++)
			assert_string_not_equal(amb_msg_kind_name(a), amb_msg_kind_name(b));
	}
	/* event codes: named, distinct names, in their series */
	int named = 0;
	for (uint32_t c = AMB_EV_MIN; c <= AMB_EV_MAX; c++) {
		const char *n = amb_event_code_name(c);
		if (!n)
			continue;
		named++;
		assert_true(c / 1000 >= 1 && c / 1000 <= 4);
		for (uint32_t d = AMB_EV_MIN; d < c; d++) {
			const char *o = amb_event_code_name(d);
			if (o)
				assert_string_not_equal(n, o);
		}
	}
	assert_int_equal(named, 49);
	assert_string_equal(amb_event_code_name(AMB_EV_HOLD_DEADLINE_EXCEEDED), "hold-deadline-exc"
	                                                                        "eeded");
	assert_null(amb_event_code_name(1999));
}

/* ---------------------------------------------------------------------- */
/* mutation loop                                                           */

typedef struct rng {
	uint64_t s;
} rng;

static uint64_t rnext(rng *r)
{
	uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static size_t rbelow(rng *r, size_t n)
{
	return n ? (size_t)(rnext(r) % n) : 0;
}

#define MUT_BUF 65536

static const char *const tokens[] = {
	"null", "true", "false", "-1", "0", "1e999", "1.5", "9223372036854775808",
	"9007199254740992", "\\u0000", "\\ud800", "\\\"", "\"\"", "[", "]", "{", "}", ",", ":",
	"\"..\"", "\"/../\"", "\"//\"", "\"kind\"", "\"id\"", "\"event\"", "\xff", "\xc0\x80",
	"\"zz\":1,", "[[[[[[[[[[[[[[", "\x01",
};
static const unsigned char interesting[] = { '"', '\\', '{', '}', '[', ']', ',', ':', '0', '9',
					     '-', 'e', '.', ' ', '/', 0, 0x7f, 0x80, 0xff };

static size_t mutate(rng *r, char *buf, size_t len)
{
	int rounds = 1 + (int)rbelow(r, 4);
	for (int i = 0; i < rounds; i++) {
		size_t pos = rbelow(r, len + 1);
		switch (rbelow(r, 8)) {
		case 0: /* flip a bit */
			if (len)
				buf[rbelow(r, len)] ^= (char)(1u << rbelow(r, 8));
			break;
		case 1: /* random byte */
			if (len)
				buf[rbelow(r, len)] = (char)rnext(r);
			break;
		case 2: /* interesting byte */
			if (len)
				buf[rbelow(r, len)] =
					(char)interesting[rbelow(r, sizeof(interesting))];
			break;
		case 3: { /* delete a range */
			size_t n = 1 + rbelow(r, 16);
			if (pos + n > len)
				n = len - pos;
			memmove(buf + pos, buf + pos + n, len - pos - n);
			len -= n;
			break;
		}
		case 4: { /* insert a token */
			const char *t = tokens[rbelow(r, sizeof(tokens) / sizeof(tokens[0]))];
			size_t n = strlen(t);
			if (len + n >= MUT_BUF)
				break;
			memmove(buf + pos + n, buf + pos, len - pos);
			memcpy(buf + pos, t, n);
			len += n;
			break;
		}
		case 5: { /* duplicate a range */
			size_t n = 1 + rbelow(r, 64);
			if (pos + n > len)
				n = len - pos;
			if (len + n >= MUT_BUF)
				break;
			memmove(buf + pos + n, buf + pos, len - pos);
			len += n;
			break;
		}
		case 6: /* truncate */
			len = pos;
			break;
		case 7: { /* splice in a piece of another sample */
			const char *o = amb_samples[rbelow(r, amb_n_samples)].json;
			size_t ol = strlen(o);
			size_t from = rbelow(r, ol);
			size_t n = 1 + rbelow(r, ol - from);
			size_t cut = rbelow(r, len - pos + 1);
			if (len - cut + n >= MUT_BUF)
				break;
			memmove(buf + pos + n, buf + pos + cut, len - pos - cut);
			memcpy(buf + pos, o + from, n);
			len = len - cut + n;
			break;
		}
		}
	}
	return len;
}

static void test_mutation_loop(void **state)
{
	(void)state;
	const uint64_t seed = 0x616d626572ULL;   /* "amber" */
	const int iters = 4000;
	rng r = { seed };
	char *buf = malloc(MUT_BUF);
	assert_non_null(buf);
	int accepted = 0, refused = 0;
	for (int it = 0; it < iters; it++) {
		const char *s = amb_samples[rbelow(&r, amb_n_samples)].json;
		size_t len = strlen(s);
		memcpy(buf, s, len);
		len = mutate(&r, buf, len);
		amb_msg m;
		char err[512];
		int rc = amb_msg_decode(buf, len, &m, err, sizeof(err));
		if (rc == 0) {
			accepted++;
			check_reencode(&m, "mutant");
			amb_msg_free(&m);
		} else {
			refused++;
			if ((rc != -EBADMSG && rc != -EMSGSIZE) || m.kind != AMB_MSG_NONE ||
			    !err[0] || !printable_ascii(err)) {
				print_error("seed %#llx iteration %d: rc %d, error \"%s\"\n",
					    (unsigned long long)seed, it, rc, err);
				fail();
			}
		}
	}
	free(buf);
	print_message("mutation loop (seed %#llx): %d iterations, %d accepted, %d refused\n",
		      (unsigned long long)seed, iters, accepted, refused);
	assert_int_equal(accepted + refused, iters);
	assert_true(accepted > 0);
	assert_true(refused > iters / 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_samples_roundtrip),
		cmocka_unit_test(test_decoded_fields),
		cmocka_unit_test(test_every_field_malformed),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_patterns_names_uuids),
		cmocka_unit_test(test_semantic_rules),
		cmocka_unit_test(test_envelope),
		cmocka_unit_test(test_json_level),
		cmocka_unit_test(test_encode_from_struct),
		cmocka_unit_test(test_names_and_event_codes),
		cmocka_unit_test(test_mutation_loop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * verify.c - `amber backups` (the listing, --prune-incomplete) and
 * `amber verify` (re-read every file against the manifest, run the
 * writers' verifiers again).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backup/backup.h"
#include "backup/chain.h"
#include "backup/job.h"

/* "amber-store(E00 3..7)" style summaries of a document. */
static void writers_str(json_t *d, char *out, size_t n, char *range, size_t rn)
{
	out[0] = range[0] = '\0';
	size_t i;
	json_t *w;
	json_array_foreach(json_object_get(d, "writers"), i, w) {
		size_t l = strlen(out);
		snprintf(out + l, n - l, "%s%s", i ? "," : "", bk_str(w, "name"));
		json_t *st = json_object_get(w, "store");
		if (st) {
			l = strlen(range);
			snprintf(range + l, rn - l, "%s%s %08" PRIX64 "-%08" PRIX64, l ? "," : "",
			         bk_str(st, "prefix"), (uint64_t)json_integer_value(json_object_get(st, "gen_low")),
			         (uint64_t)json_integer_value(json_object_get(st, "gen_high")));
		}
	}
}


int bk_run_list(const bk_list_opts *o)
{
	char err[BK_ERR];
	bk_repo repo;
	int rc = bk_repo_open(o->repo, false, &repo, err, sizeof(err));
	if (rc) {
		fprintf(o->err, "amber: backups: %s\n", err);
		return rc;
	}
	json_t *list = NULL;
	bool prune = o->prune_incomplete || o->prune_failed;
	if (prune) {
		rc = bk_repo_lock(&repo, false, err, sizeof(err));
		if (rc)
			goto out;
	}
	if ((rc = bk_list(&repo, &list, err, sizeof(err))) != 0)
		goto out;
	if (prune) {
		/* what is removed is what nothing may restore or build on: an
		 * incomplete or unreadable folder, and (asked for separately,
		 * since it may be kept as evidence) a failed backup */
		bk_job j;
		bk_job_init(&j, &repo, o->err, false);
		size_t i = 0, pruned = 0;
		while (i < json_array_size(list)) {
			json_t *d = json_array_get(list, i);
			const char *st = bk_str(d, "status");
			if ((o->prune_incomplete && (!strcmp(st, "incomplete") || !strcmp(st, "unreadable"))) ||
			    (o->prune_failed && !strcmp(st, "failed"))) {
				snprintf(j.id, sizeof(j.id), "%s", bk_str(d, "id"));
				if ((rc = bk_dir_remove(&repo, j.id, err, sizeof(err))) != 0)
					goto out;
				bk_event(&j, BK_EV_PRUNED, "info", "%s backup %s removed", st, j.id);
				fprintf(o->err, "amber: removed %s backup %s\n", st, j.id);
				json_array_remove(list, i);
				pruned++;
				continue;
			}
			i++;
		}
		if (!pruned)
			fprintf(o->err, "amber: no %s backups\n",
			        o->prune_incomplete && o->prune_failed ? "incomplete or failed" :
			        o->prune_failed ? "failed" : "incomplete");
	}
	if (o->json) {
		json_t *arr = json_array();
		size_t i;
		json_t *d;
		json_array_foreach(list, i, d) {
			json_t *ws = json_array(), *ranges = json_array();
			size_t k;
			json_t *w;
			json_array_foreach(json_object_get(d, "writers"), k, w) {
				json_array_append_new(ws, json_string(bk_str(w, "name")));
				json_t *st = json_object_get(w, "store");
				if (st)
					json_array_append_new(ranges, json_pack("{s:s, s:s, s:O, s:O}", "writer",
					    bk_str(w, "name"), "prefix", bk_str(st, "prefix"), "gen_low",
					    json_object_get(st, "gen_low"), "gen_high", json_object_get(st, "gen_high")));
			}
			json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:o, s:O, s:b, s:s}",
			    "id", bk_str(d, "id"), "type", bk_str(d, "type"), "method", bk_str(d, "method"),
			    "time", bk_str(d, "started"), "writers", ws,
			    "size", (json_int_t)json_integer_value(json_object_get(d, "bytes")),
			    "log_range", ranges, "parent", json_object_get(d, "parent") ?
			    json_object_get(d, "parent") : json_null(),
			    "verified", json_is_true(json_object_get(d, "verified")),
			    "status", bk_str(d, "status"));
			if (e && json_object_get(d, "error"))
				json_object_set(e, "error", json_object_get(d, "error"));
			json_array_append_new(arr, e);
		}
		char *s = json_dumps(arr, JSON_INDENT(2));
		fprintf(o->out, "%s\n", s ? s : "[]");
		free(s);
		json_decref(arr);
	} else {
		fprintf(o->out, "%-24s %-12s %-20s %-14s %9s %-20s %-24s %-8s %s\n", "ID", "TYPE", "TIME",
		        "WRITERS", "SIZE", "LOG RANGE", "PARENT", "VERIFIED", "STATUS");
		size_t i;
		json_t *d;
		json_array_foreach(list, i, d) {
			char ws[256], range[256], sz[32];
			writers_str(d, ws, sizeof(ws), range, sizeof(range));
			bk_human((uint64_t)json_integer_value(json_object_get(d, "bytes")), sz, sizeof(sz));
			const char *p = json_string_value(json_object_get(d, "parent"));
			fprintf(o->out, "%-24s %-12s %-20s %-14s %9s %-20s %-24s %-8s %s\n", bk_str(d, "id"),
			        bk_str(d, "type"), bk_str(d, "started"), ws[0] ? ws : "-", sz,
			        range[0] ? range : "-", p ? p : "-",
			        json_is_true(json_object_get(d, "verified")) ? "true" : "false",
			        bk_str(d, "status"));
		}
		if (!json_array_size(list))
			fprintf(o->err, "amber: %s has no backups\n", repo.root);
	}
	rc = 0;
out:
	if (rc)
		fprintf(o->err, "amber: backups: %s\n", err);
	json_decref(list);
	bk_repo_close(&repo);
	return rc;
}

int bk_run_verify(const bk_verify_opts *o)
{
	char err[BK_ERR * 2];
	bk_repo repo;
	int rc = bk_repo_open(o->repo, false, &repo, err, sizeof(err));
	if (rc) {
		fprintf(o->err, "amber: verify: %s\n", err);
		return rc;
	}
	bk_job j;
	bk_job_init(&j, &repo, o->err, o->quiet);
	json_t *list = NULL;
	if ((rc = bk_list(&repo, &list, err, sizeof(err))) != 0)
		goto out;
	json_t *d = bk_resolve(list, o->backup, repo.root, &rc, err, sizeof(err));
	if (!d)
		goto out;
	snprintf(j.id, sizeof(j.id), "%s", bk_str(d, "id"));
	j.doc = json_incref(d);
	if ((j.bdirfd = bk_dir_open(&repo, j.id, err, sizeof(err))) < 0) {
		rc = 1;
		goto out;
	}
	bk_event(&j, BK_EV_VERIFY_STARTED, "info", "verify of %s started", j.id);
	uint64_t total = (uint64_t)json_integer_value(json_object_get(d, "bytes"));
	bk_progress_begin(&j.prog, !o->quiet && isatty(2), "verify: reading", total);
	int bad = strcmp(bk_str(d, "status"), "incomplete") == 0;
	if (bad)
		snprintf(err, sizeof(err), "backup %s is incomplete (interrupted): nothing in it is "
		         "trusted", j.id);
	if (!bad)
		bad = bk_verify_files(&j, true, err, sizeof(err));
	bk_progress_end(&j.prog);
	size_t i;
	json_t *w;
	bk_progress_begin(&j.prog, !o->quiet && isatty(2), "verify: checking pages", total);
	json_array_foreach(json_object_get(d, "writers"), i, w) {
		if (bad)
			break;
		json_t *wc;
		if (!strcmp(bk_str(w, "verifier"), "none") && json_object_get(w, "roots")) {
			/* a generic writer: its files were re-read and hashed above */
			continue;
		}
		if (strcmp(bk_str(w, "verifier"), "amber-store") || !json_object_get(w, "store")) {
			snprintf(err, sizeof(err), "writer %s: verifier \"%s\" is not known to this amber",
			         bk_str(w, "name"), bk_str(w, "verifier"));
			bad = 1;
			break;
		}
		/* verify a copy of the writer entry: a re-verification does not
		 * rewrite the per-component results of the backup */
		wc = json_deep_copy(w);
		bad = bk_store_verify(&j, wc, err, sizeof(err)) != 0;
		json_decref(wc);
	}
	bk_progress_end(&j.prog);
	char now[32];
	bk_time_str(bk_now_ms() / 1000, now, sizeof(now));
	json_object_set_new(d, "last_verify", json_pack("{s:s, s:b, s:s}", "time", now, "ok", !bad,
	                                                "error", bad ? err : ""));
	if (bad && json_is_true(json_object_get(d, "verified"))) {
		/* a backup that no longer verifies is not trusted any more */
		json_object_set_new(d, "verified", json_false());
	}
	if (strcmp(bk_str(d, "status"), "incomplete") != 0) {
		char e2[BK_ERR];
		if (bk_doc_save(&repo, j.id, d, e2, sizeof(e2)))
			fprintf(o->err, "amber: verify: %s\n", e2);
	}
	bk_event(&j, bad ? BK_EV_VERIFY_FAILED : BK_EV_VERIFY_OK, bad ? "error" : "info",
	         bad ? "verify failed: %s" : "verified: %s", bad ? err : "every file, page and log");
	if (bad) {
		rc = 1;
		goto out;
	}
	fprintf(o->out, "backup %s verified: %zu files, every page and log intact\n", j.id,
	        json_array_size(json_object_get(d, "files")));
	rc = 0;
out:
	if (rc)
		fprintf(o->err, "amber: verify: %s\n", err);
	json_decref(j.doc);
	json_decref(list);
	if (j.bdirfd >= 0)
		close(j.bdirfd);
	bk_repo_close(&repo);
	return rc;
}

/*
 * streamplug.c - the amber-store plug-in's streaming backup (--method
 * stream, seed 003): no shadow copy; the writer's serve process reads
 * every page through the engine, verified, then rolls the log and sends
 * the generations that make the copy consistent (src/backup/stream,
 * docs/stream.md).  The files land in the backup's writer folder; the
 * backup document gets the same "store" and "files" entries as a snapshot
 * backup (gen_high_partial false: a streamed range ends with a complete
 * generation).  Each file that arrived is read once, hashed for the
 * manifest and, for a database, every page checked on the same buffer
 * (results in j->checked, as a snapshot copy's); amber's verifier takes
 * those, and only after it does bk_store_stream_complete() tell serve to
 * record the backup and truncate.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/job.h"
#include "backup/stream/stream_client.h"
#include "common/vfs.h"

static void progress(void *arg, uint64_t bytes_done)
{
	bk_progress *p = arg;
	if (bytes_done > p->done)
		bk_progress_add(p, bytes_done - p->done);
}

int bk_store_backup_stream(bk_job *j, json_t *wdoc, const bk_store_loc *loc, amb_backup_type type,
                           json_t *parent_w, void **conn, char *err, size_t errlen)
{
	*conn = NULL;
	const char *wname = json_string_value(json_object_get(wdoc, "name"));
	char wdir[128], rel[160], dest[PATH_MAX];
	bk_writer_folder(wdoc, wdir, sizeof(wdir));
	snprintf(rel, sizeof(rel), "data/%s", wdir);
	int rc = bk_mkdirs_beneath(j->bdirfd, rel);
	if (rc) {
		snprintf(err, errlen, "%s: %s", rel, strerror(-rc));
		return 1;
	}
	snprintf(dest, sizeof(dest), "%s/backups/%s/%s", j->repo->root, j->id, rel);
	amb_stream_conn *c = NULL;
	char e[512];
	rc = amb_stream_open(loc->dir, amb_backup_type_name(type), &c, e, sizeof(e));
	if (rc) {
		snprintf(err, errlen, "writer %s: streaming backup: %s", wname, e);
		return rc < 0 ? (rc == -ENOENT || rc == -ECONNREFUSED ? 3 : 1) : rc;
	}
	amb_stream_info info;
	memset(&info, 0, sizeof(info));
	rc = amb_stream_fetch(c, dest, &info, progress, &j->prog, e, sizeof(e));
	if (rc) {
		snprintf(err, errlen, "writer %s: streaming backup: %s", wname, e);
		amb_stream_close(c);
		return rc < 0 ? 1 : rc;
	}
	/* the chain: an incremental's range must start where its parent's
	 * ended (serve derives it from the header the same way) */
	if (parent_w) {
		json_t *ps = json_object_get(parent_w, "store");
		uint32_t high = (uint32_t)json_integer_value(json_object_get(ps, "gen_high"));
		uint32_t want = json_is_true(json_object_get(ps, "gen_high_partial")) ? high : high + 1;
		if (info.gen_low != want) {
			snprintf(err, errlen, "writer %s: the stream starts at log generation %u but the "
			         "last backup in this repository ends at %u: the header records a backup "
			         "this repository does not hold, so a full backup is needed", wname,
			         info.gen_low, high);
			amb_stream_close(c);
			return 2;
		}
	}
	json_t *st = json_pack("{s:s, s:s, s:i, s:I, s:I, s:b, s:s, s:s, s:I, s:I}", "dir", loc->dir,
	                       "prefix", info.prefix, "page_size", (int)info.page_size, "gen_low",
	                       (json_int_t)info.gen_low, "gen_high", (json_int_t)info.gen_high,
	                       "gen_high_partial", 0, "log_signature", info.log_signature, "method",
	                       "stream", "stream_pages", (json_int_t)info.pages, "stream_corrected",
	                       (json_int_t)info.corrected);
	json_t *dbs = json_array(), *comps = json_array();
	for (int d = 0; d < info.ndb; d++)
		json_array_append_new(dbs, json_string(info.dbnames[d]));
	json_object_set_new(st, "databases", dbs);
	json_object_set_new(wdoc, "store", st);
	for (int d = 0; d < loc->ndb; d++)
		json_array_append_new(comps, json_pack("{s:s, s:s, s:b}", "name", loc->comps[d],
		                                       "database", loc->dbs[d], "success", 0));
	json_object_set_new(wdoc, "components", comps);

	/* hash what arrived and list it like a snapshot backup's files */
	bool full = type == AMB_BACKUP_FULL || type == AMB_BACKUP_COPY;
	int nfiles = (full ? info.ndb : 0) + (int)(info.gen_high - info.gen_low + 1);
	for (int k = 0; k < nfiles; k++) {
		char name[80], frel[300];
		const char *role, *comp = "";
		if (full && k < info.ndb) {
			snprintf(name, sizeof(name), "%s", info.dbnames[k]);
			role = "database";
			for (int d = 0; d < loc->ndb; d++)
				if (!strcmp(loc->dbs[d], name))
					comp = loc->comps[d];
		} else {
			uint32_t g = info.gen_low + (uint32_t)(k - (full ? info.ndb : 0));
			snprintf(name, sizeof(name), "%s%08X.log", info.prefix, g);
			role = "log";
		}
		snprintf(frel, sizeof(frel), "%s/%s", rel, name);
		int fd = bk_openat_beneath(j->bdirfd, frel, O_RDONLY, 0);
		if (fd < 0) {
			snprintf(err, errlen, "writer %s: the stream did not deliver %s: %s", wname, name,
			         strerror(-fd));
			amb_stream_close(c);
			return 1;
		}
		char hex[65], src[PATH_MAX + 80];
		uint64_t bytes = 0;
		/* a database's pages are checked on the same read (as a snapshot
		 * backup's are while copied), so the verifier need not read it again */
		bool db = !strcmp(role, "database");
		bk_pagecheck pc = {.page_size = info.page_size, .first_damaged = UINT64_MAX};
		bk_copy_hooks h = {.check = db ? bk_pagecheck_chunk : NULL, .check_arg = &pc};
		rc = 0;
		if (db && !(pc.scratch = amb_io_alloc(info.page_size)))
			rc = -ENOMEM;
		if (!rc)
			rc = bk_hash_fd_hooks(fd, &bytes, hex, &h);
		close(fd);
		free(pc.scratch);
		if (!rc && db)
			rc = bk_checked_put(j, frel, &pc);
		if (rc) {
			snprintf(err, errlen, "%s: %s", frel, strerror(-rc));
			amb_stream_close(c);
			return 1;
		}
		snprintf(src, sizeof(src), "stream:%s/%s", loc->dir, name);
		json_array_append_new(json_object_get(j->doc, "files"),
		    json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s}", "writer", wname, "component",
		              comp, "role", role, "path", frel, "target", name, "source", src, "size",
		              (json_int_t)bytes, "sha256", hex));
	}
	*conn = c;
	return 0;
}

int bk_store_stream_complete(void *conn, bool success, char *err, size_t errlen)
{
	if (!conn)
		return 0;
	amb_stream_conn *c = conn;
	int rc = amb_stream_complete(c, success, err, errlen);
	amb_stream_close(c);
	return rc;
}

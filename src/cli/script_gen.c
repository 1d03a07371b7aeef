/*
 * script_gen.c - amber script --generate backup --repo REPO: print a backup
 * script for the writers registered now.
 *
 * This is the PowerShell of seed 004 (MBS-online-backup.ps1), which finds
 * the storage groups and their volumes and writes a DSH file around them.
 * Here amberd already knows the writers and their files: each writer that
 * `amber backup` can verify (a full-backup writer with a known verifier)
 * is required with `writer verify {ID}`, each volume that holds its files
 * is added with an alias, and the exec'd step is `amber backup full
 * --metadata %AMBER_METADATA%`, which copies from the shadows into REPO and
 * verifies every page and log.  Only if it succeeds does `end backup` let
 * the writers record the backup and truncate their logs.  The script runs
 * unchanged with `amber script FILE`.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backup/backup.h"
#include "cli/commands.h"

#define GEN_MAX_VOLS 64

/* A word as the script language reads it: quoted when it must be. */
static void put_word(FILE *f, const char *w)
{
	if (*w && !strpbrk(w, " \t\"'#\\%")) {
		fputs(w, f);
		return;
	}
	fputc('"', f);
	for (; *w; w++) {
		if (*w == '"' || *w == '\\')
			fputc('\\', f);
		if (*w == '%')
			fputc('%', f);
		fputc(*w, f);
	}
	fputc('"', f);
}

static int add_vol(char vols[][PATH_MAX], size_t *n, const char *dir)
{
	char v[PATH_MAX];
	int rc = bk_volume_of(dir, v, sizeof(v));
	if (rc)
		return rc;
	for (size_t i = 0; i < *n; i++)
		if (strcmp(vols[i], v) == 0)
			return 0;
	if (*n == GEN_MAX_VOLS)
		return -E2BIG;
	snprintf(vols[(*n)++], PATH_MAX, "%s", v);
	return 0;
}

int cli_script_generate(cli_ctx *ctx, const char *repo_arg)
{
	char err[CLI_ERR_BUF];
	char *repo = NULL;
	if (cli_path_abs(repo_arg, false, &repo, err, sizeof(err)) != 0)
		return cli_usage(ctx, "--repo %s", err);
	amb_client *c;
	int rc = cli_connect(ctx, AMB_ROLE_ADMIN, &c);
	if (rc) {
		free(repo);
		return rc;
	}
	amb_msg wl;
	memset(&wl, 0, sizeof(wl));
	if ((rc = amb_req_list_writers(c, &wl)) != 0) {
		rc = cli_fail(ctx, c, rc);
		amb_client_close(c);
		free(repo);
		return rc;
	}
	amb_client_close(c);
	char (*vols)[PATH_MAX] = calloc(GEN_MAX_VOLS, PATH_MAX);
	size_t nv = 0, nuse = 0;
	const amb_writer_list *l = &wl.u.writers;
	bool *use = calloc(l->n_writers + 1, sizeof(bool));
	if (!vols || !use) {
		cli_errorf(ctx, "out of memory");
		rc = CLI_EXIT_FAILED;
		goto out;
	}
	for (size_t k = 0; k < l->n_writers; k++) {
		const amb_writer_md *md = &l->writers[k].metadata;
		if (!(md->backup_types & AMB_BACKUP_BIT(AMB_BACKUP_FULL)) ||
		    (strcmp(md->verifier, "amber-store") != 0 && strcmp(md->verifier, "none") != 0))
			continue;
		for (size_t q = 0; q < md->n_components; q++) {
			const amb_component *cp = &md->components[q];
			for (size_t f = 0; f < cp->n_files + cp->n_logs; f++) {
				const char *p = f < cp->n_files ? cp->files[f].path :
				                cp->logs[f - cp->n_files].path;
				int e = add_vol(vols, &nv, p);
				if (e) {
					cli_errorf(ctx, "writer %s: %s: %s", md->name, p, strerror(-e));
					rc = CLI_EXIT_FAILED;
					goto out;
				}
			}
		}
		use[k] = true;
		nuse++;
	}
	if (!nuse) {
		cli_errorf(ctx, "script --generate: no registered writer can be backed up by amber "
		           "backup (it needs full backups and a known verifier; see amber list "
		           "writers)");
		rc = CLI_EXIT_USAGE;
		goto out;
	}
	char host[256] = "localhost", now[64];
	gethostname(host, sizeof(host) - 1);
	time_t t = time(NULL);
	struct tm tm;
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	FILE *f = ctx->out;
	fprintf(f, "# amber backup script, made by `amber script --generate backup` on %s\n", host);
	fprintf(f, "# at %s for the writers registered then.  Run it unchanged with\n", now);
	fprintf(f, "#     amber script FILE [-l LOG]\n");
	fprintf(f, "# It takes a volatile shadow copy set of the volumes below, copies it into\n");
	fprintf(f, "# the repository and verifies every page and log; only then does\n");
	fprintf(f, "# `end backup` let the writers record the backup and truncate their logs.\n");
	fprintf(f, "\nset context volatile\n");
	fprintf(f, "# set verbose on\n\n");
	for (size_t k = 0; k < l->n_writers; k++) {
		const amb_writer_md *md = &l->writers[k].metadata;
		if (!use[k]) {
			/* writer verify below makes the selection explicit: the
			 * others take no part without an exclude */
			fprintf(f, "# writer %s {%s} takes no part: %s\n", md->name, md->instance,
			        !(md->backup_types & AMB_BACKUP_BIT(AMB_BACKUP_FULL)) ?
			        "it does not take full backups" : "amber backup cannot verify it");
			continue;
		}
		fprintf(f, "# %s%s%s%s\n", md->name, md->instance_name ? " \"" : "",
		        md->instance_name ? md->instance_name : "", md->instance_name ? "\"" : "");
		fprintf(f, "writer verify {%s}\n", md->instance);
	}
	fprintf(f, "\nbegin backup\n");
	for (size_t i = 0; i < nv; i++) {
		fprintf(f, "add volume ");
		put_word(f, vols[i]);
		fprintf(f, " alias volume_%zu\n", i + 1);
	}
	fprintf(f, "create\n\n");
	fprintf(f, "# the copy: a non-zero exit stops the script here, before end backup,\n");
	fprintf(f, "# so nothing is recorded or truncated\n");
	char self[PATH_MAX];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl > 0)
		self[sl] = '\0';
	else
		snprintf(self, sizeof(self), "amber");
	fprintf(f, "exec ");
	put_word(f, self);
	fprintf(f, " backup full --repo ");
	put_word(f, repo);
	fprintf(f, " --metadata %%AMBER_METADATA%%\n");
	fprintf(f, "end backup\n");
	fprintf(f, "exit\n");
	rc = CLI_EXIT_OK;
out:
	free(vols);
	free(use);
	amb_msg_free(&wl);
	free(repo);
	return rc;
}

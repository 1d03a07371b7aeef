/*
 * test_requestor.c - amber-test-requestor: one backup session through
 * libamber's requestor API, for amberd's tests (until `amber backup` exists).
 *
 *   amber-test-requestor [--socket PATH] [--type full|copy|incremental|
 *                        differential] [--persistent] [--verify WRITER]
 *                        [--drop-after gather|snapshot] VOLUME...
 *
 * session-open, session-gather, session-select (verify) for each --verify,
 * session-add-volume for each VOLUME, session-snapshot, then
 * session-backup-complete with every component of every writer that took
 * part marked successful, then session-close.  --drop-after STAGE exits
 * (status 0) right after that stage without closing: the connection drops.
 * Prints "set ID" and "shadow ID PATH" lines on standard output.  Exit: 0,
 * or amberd's exit class (1, 2, 3), or 1 when amberd cannot be reached.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amber/client.h"

static int fail(amb_client *c, const char *what, int rc)
{
	fprintf(stderr, "amber-test-requestor: %s: %s\n", what,
		c ? amb_client_errmsg(c) : amb_client_last_error());
	return rc > 0 ? rc : 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"type", required_argument, NULL, 't'},
		{"persistent", no_argument, NULL, 'p'},
		{"verify", required_argument, NULL, 'v'},
		{"drop-after", required_argument, NULL, 'd'},
		{NULL, 0, NULL, 0},
	};
	const char *sock = NULL, *drop = "";
	const char *verify[16];
	int n_verify = 0;
	amb_session_open o = {.mode = AMB_SESSION_BACKUP, .backup_type = AMB_BACKUP_FULL};
	int k;
	while ((k = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (k) {
		case 's': sock = optarg; break;
		case 'p': o.persistent = true; break;
		case 'd': drop = optarg; break;
		case 'v':
			if (n_verify < 16)
				verify[n_verify++] = optarg;
			break;
		case 't':
			o.backup_type = !strcmp(optarg, "full") ? AMB_BACKUP_FULL
				      : !strcmp(optarg, "copy") ? AMB_BACKUP_COPY
				      : !strcmp(optarg, "incremental") ? AMB_BACKUP_INCREMENTAL
				      : !strcmp(optarg, "differential") ? AMB_BACKUP_DIFFERENTIAL : 0;
			if (!o.backup_type)
				return 2;
			break;
		default: return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: amber-test-requestor [options] VOLUME...\n");
		return 2;
	}
	amb_client *c;
	int rc = amb_client_connect(sock, AMB_ROLE_REQUESTOR, "amber-test-requestor", &c);
	if (rc)
		return fail(NULL, "connect", rc);
	const char *what = "";
	amb_msg writers, set;
	memset(&writers, 0, sizeof(writers));
	memset(&set, 0, sizeof(set));
	amb_comp_result *res = NULL;
	amb_session_ref ref;
	if ((rc = amb_req_session_open(c, &o, &ref))) {
		what = "session-open";
		goto out;
	}
	printf("set %s\n", ref.set);
	fflush(stdout);
	if ((rc = amb_req_gather(c, ref.session, &writers))) {
		what = "session-gather";
		goto out;
	}
	if (!strcmp(drop, "gather"))
		goto out;
	for (int i = 0; i < n_verify && !rc; i++)
		if ((rc = amb_req_select(c, ref.session, verify[i], NULL, AMB_SELECT_VERIFY)))
			what = "session-select";
	for (int i = optind; i < argc && !rc; i++)
		if ((rc = amb_req_add_volume(c, ref.session, argv[i], NULL)))
			what = "session-add-volume";
	if (rc)
		goto out;
	if ((rc = amb_req_snapshot(c, ref.session, &set))) {
		what = "session-snapshot";
		goto out;
	}
	for (size_t i = 0; i < set.u.sset.n_shadows; i++)
		printf("shadow %s %s\n", set.u.sset.shadows[i].id, set.u.sset.shadows[i].path);
	fflush(stdout);
	if (!strcmp(drop, "snapshot"))
		goto out;
	/* every component of every gathered writer: successful */
	size_t n = 0;
	for (size_t w = 0; w < writers.u.writers.n_writers; w++)
		n += writers.u.writers.writers[w].metadata.n_components;
	res = calloc(n ? n : 1, sizeof(*res));
	n = 0;
	for (size_t w = 0; res && w < writers.u.writers.n_writers; w++) {
		const amb_writer_md *md = &writers.u.writers.writers[w].metadata;
		for (size_t i = 0; i < md->n_components; i++, n++) {
			snprintf(res[n].writer, sizeof(res[n].writer), "%s", md->name);
			snprintf(res[n].component, sizeof(res[n].component), "%s",
				 md->components[i].name);
			res[n].success = true;
		}
	}
	if ((rc = amb_req_backup_complete(c, ref.session, res, n))) {
		what = "session-backup-complete";
		goto out;
	}
	if ((rc = amb_req_close(c, ref.session)))
		what = "session-close";
out:
	if (rc)
		rc = fail(c, what, rc);
	free(res);
	amb_msg_free(&set);
	amb_msg_free(&writers);
	amb_client_close(c);
	return rc;
}

/*
 * streamplug.c - the amber-store plug-in's streaming backup (--method
 * stream): NOT FINISHED YET, replaced once src/backup/stream lands.
 */
#include <stdio.h>

#include "backup/job.h"

int bk_store_backup_stream(bk_job *j, json_t *wdoc, const bk_store_loc *loc, amb_backup_type type,
                           json_t *parent_w, void **conn, char *err, size_t errlen)
{
	(void)j, (void)wdoc, (void)loc, (void)type, (void)parent_w;
	*conn = NULL;
	snprintf(err, errlen, "--method stream is not available in this build yet");
	return 2;
}

int bk_store_stream_complete(void *conn, bool success, char *err, size_t errlen)
{
	(void)conn, (void)success, (void)err, (void)errlen;
	return 0;
}

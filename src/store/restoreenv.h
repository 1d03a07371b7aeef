/*
 * restoreenv.h - restore.env: what a restore laid down and how to recover
 * it (the analog of ESE's restore.env, read by `amber-store hard-recover`).
 * The text format is documented in docs/restore-env.md.
 */
#ifndef AMBER_STORE_RESTOREENV_H
#define AMBER_STORE_RESTOREENV_H

#include <limits.h>
#include <stdint.h>

#include "store/format.h"

typedef enum amb_recover_status {
	AMB_RECOVER_NOT_STARTED = 0,
	AMB_RECOVER_STARTED = 1,
	AMB_RECOVER_ENDED = 2,
	AMB_RECOVER_FAILED = 3,
} amb_recover_status;

typedef struct amb_restore_env {
	int version;                 /* format version, 1 */
	char instance_dir[PATH_MAX]; /* target instance: databases, logs, checkpoint */
	char backup_log_dir[PATH_MAX]; /* where the backup's logs were laid down */
	char prefix[8];              /* log prefix, e.g. E00 */
	uint32_t gen_low, gen_high;  /* log generations in backup_log_dir */
	int roll_forward;            /* 1: replay newer logs of the instance too */
	uint64_t until_us;           /* 0 = no limit; else stop before the first
	                                transaction committed after this time */
	int ndatabases;
	char databases[AMB_MAX_DBS][64]; /* file names inside instance_dir */
	char backup_id[128];         /* informational */
	amb_recover_status status;
	int error;                   /* last recovery result (AMS_* code) */
	char error_msg[512];
	uint64_t recover_time_us;
} amb_restore_env;

/*
 * Parse path.  Returns 0, AMS_ENOTFOUND, AMS_EIO, or AMS_EINVAL with
 * ams_errmsg() naming the file and line ("restore.env:7: unknown key
 * 'foo'"); never crashes on any input.
 */
int amb_restore_env_load(const char *path, amb_restore_env *env);

/* The `until` syntax: RFC 3339 UTC, YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z, to µs
 * since the epoch.  0, or -1 when s is not such a time. */
int amb_restore_env_parse_time(const char *s, uint64_t *out);

/* Write env to path through the durable-write helper.  0 or AMS_EIO. */
int amb_restore_env_store(const char *path, const amb_restore_env *env);

#endif

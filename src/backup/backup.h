/*
 * backup.h - amber's backup application: backup, backups, verify, restore
 * (design.md sections 3-5; docs/repository.md).  The `amber` command-line
 * parsers in src/cli fill these option structs and call the run functions;
 * each returns the tool's exit code (0 ok, 1 failed, 2 bad usage or input,
 * 3 retryable) after printing its messages on o->err.
 */
#ifndef AMBER_BACKUP_BACKUP_H
#define AMBER_BACKUP_BACKUP_H

#include <stdbool.h>
#include <stdio.h>

#include "amber/proto.h"

#define BK_MAX_SELECT 64

typedef enum bk_method {
	BK_METHOD_SNAPSHOT = 0,    /* a shadow set through amberd (default) */
	BK_METHOD_STREAM,          /* the writer streams its pages (seed 003) */
} bk_method;

typedef struct bk_backup_opts {
	const char *socket;        /* amberd, NULL = default */
	const char *repo;
	amb_backup_type type;
	bk_method method;
	const char *writers[BK_MAX_SELECT];    /* "W" or "W/COMPONENT" */
	size_t n_writers;
	/* copy from the shadow copy set an `amber script` took (its metadata
	 * document) instead of taking one; BackupComplete is then the
	 * script's `end backup` */
	const char *metadata;
	bool quiet;                /* no progress */
	FILE *out, *err;
} bk_backup_opts;

int bk_run_backup(const bk_backup_opts *o);

/* The volume to shadow for a directory: its btrfs subvolume, else the
 * directory itself (a tree for the reflink and copy providers).  0 or
 * -errno. */
int bk_volume_of(const char *dir, char *out, size_t n);

typedef struct bk_list_opts {
	const char *repo;
	bool json;
	bool prune_incomplete;  /* remove incomplete and unreadable backups first */
	bool prune_failed;      /* ... and failed ones (never restorable) */
	FILE *out, *err;
} bk_list_opts;

int bk_run_list(const bk_list_opts *o);

typedef struct bk_verify_opts {
	const char *repo;
	const char *backup;        /* id or "latest" */
	bool quiet;
	FILE *out, *err;
} bk_verify_opts;

int bk_run_verify(const bk_verify_opts *o);

typedef struct bk_restore_opts {
	const char *socket;
	const char *repo;
	const char *backup;        /* id or "latest" */
	const char *to;            /* alternate location, NULL = original */
	bool no_roll_forward;
	bool no_recover;
	uint64_t until_us;         /* stop before this time (µs since 1970), 0 = none */
	bool offline;              /* do not use a running writer even if there is one */
	bool quiet;
	FILE *out, *err;
} bk_restore_opts;

int bk_run_restore(const bk_restore_opts *o);

#endif

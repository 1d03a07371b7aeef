/*
 * output.h - amber: how results are shown, as text (format.c) and as
 * JSON (jsonout.c).
 *
 * Text is for people and reads like vssadmin's.  JSON is for scripts: one
 * document per listing (an array, indented), one compact object per line
 * for `amber events`.  The JSON objects carry the wire fields of
 * docs/protocol.md section 8 under the same names; optional fields that
 * are not set are left out, as on the wire.  Strings from amberd passed
 * the protocol's text rules (no control characters), so they go to a
 * terminal unchanged.
 */
#ifndef AMBER_CLI_OUTPUT_H
#define AMBER_CLI_OUTPUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "amber/proto.h"

/* ---------------------------------------------------------- format.c */

/* Big enough for every cli_fmt_* result. */
#define CLI_FMT_BUF 64

/* "0 B", "512 B", "1.50 KiB", "12.3 MiB", "123 GiB": three significant
 * digits in binary units.  Returns buf. */
const char *cli_fmt_size(uint64_t bytes, char *buf, size_t n);

/* Unix time in ms as local time, ISO 8601: "2024-03-14T10:00:00.123+01:00"
 * (with_ms) or "2024-03-14T10:00:00+01:00".  Returns buf. */
const char *cli_fmt_time(uint64_t ms, bool with_ms, char *buf, size_t n);

/* "full, copy, incremental, differential" from AMB_BACKUP_BIT()s ("none"
 * if there are none).  Returns buf. */
const char *cli_fmt_backup_types(unsigned bits, char *buf, size_t n);

/* "Stable", "Waiting for freeze", "Failed at freeze" ("Unknown" for
 * numbers outside the table). */
const char *cli_writer_state_text(amb_writer_state s);
/* "Retryable error", "Timeout", ... ("Unknown error" for none). */
const char *cli_fail_class_text(amb_fail_class c);

/* Wire names the protocol library does not export: "database",
 * "filegroup"; "info", "warning", "error" ("unknown" otherwise). */
const char *cli_comp_type_name(amb_comp_type t);
const char *cli_severity_name(amb_severity s);

/* The vssadmin-like blocks of `amber list ...`. */
void cli_print_writer(FILE *f, const amb_writer_info *w);
void cli_print_provider(FILE *f, const amb_provider_info *p);
void cli_print_storage(FILE *f, const amb_storage_info *s);
/* Shadows grouped by set (first appearance order), each set with its
 * shadow count and creation time.  Returns 0 or -ENOMEM. */
int cli_print_shadows(FILE *f, const amb_shadow *const *shadows, size_t n);
/* One line of `amber events`. */
void cli_print_event(FILE *f, const amb_event *e);

/* --------------------------------------------------------- jsonout.c */

/* Each returns a new reference, or NULL when out of memory. */
json_t *cli_json_writer(const amb_writer_info *w);
json_t *cli_json_provider(const amb_provider_info *p);
json_t *cli_json_storage(const amb_storage_info *s);
json_t *cli_json_shadow(const amb_shadow *s);
json_t *cli_json_snapshot_set(const amb_snapshot_set *set);
json_t *cli_json_event(const amb_event *e);

/* Print j and a newline to f, indented (pretty) or compact, and drop the
 * reference.  j NULL (a failed build) gives -ENOMEM.  Returns 0, -ENOMEM,
 * or -EIO on a write error. */
int cli_json_print(FILE *f, json_t *j, bool pretty);

#endif

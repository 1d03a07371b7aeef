/*
 * format.c - amber: the text form of listings and events (vssadmin-like).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/output.h"

const char *cli_fmt_size(uint64_t bytes, char *buf, size_t n)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	if (bytes < 1024) {
		snprintf(buf, n, "%" PRIu64 " B", bytes);
		return buf;
	}
	size_t u = 0;
	double v = (double)bytes;
	while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
	}
	/* three significant digits; 1023.7 KiB rounds to "1024", so go up */
	int prec = v < 9.995 ? 2 : v < 99.95 ? 1 : 0;
	if (prec == 0 && v >= 1023.5 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024.0;
		u++;
		prec = 2;
	}
	snprintf(buf, n, "%.*f %s", prec, v, units[u]);
	return buf;
}

const char *cli_fmt_time(uint64_t ms, bool with_ms, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char date[48], zone[8];
	if (!localtime_r(&t, &tm) ||
	    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0 ||
	    strftime(zone, sizeof(zone), "%z", &tm) != 5) {
		snprintf(buf, n, "@%" PRIu64 "ms", ms);
		return buf;
	}
	/* %z is +hhmm; ISO 8601's extended form is +hh:mm */
	if (with_ms)
		snprintf(buf, n, "%s.%03u%.3s:%.2s", date, (unsigned)(ms % 1000), zone, zone + 3);
	else
		snprintf(buf, n, "%s%.3s:%.2s", date, zone, zone + 3);
	return buf;
}

const char *cli_fmt_backup_types(unsigned bits, char *buf, size_t n)
{
	static const amb_backup_type order[] = { AMB_BACKUP_FULL, AMB_BACKUP_COPY,
		                                 AMB_BACKUP_INCREMENTAL,
		                                 AMB_BACKUP_DIFFERENTIAL };
	size_t len = 0;
	buf[0] = '\0';
	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
		if (!(bits & AMB_BACKUP_BIT(order[k])))
			continue;
		int w = snprintf(buf + len, n - len, "%s%s", len ? ", " : "",
		                 amb_backup_type_name(order[k]));
		if (w < 0 || (size_t)w >= n - len)
			break;
		len += (size_t)w;
	}
	if (len == 0)
		snprintf(buf, n, "none");
	return buf;
}

const char *cli_writer_state_text(amb_writer_state s)
{
	static const char *const names[AMB_WS_COUNT] = {
		[AMB_WS_UNKNOWN] = "Unknown",
		[AMB_WS_STABLE] = "Stable",
		[AMB_WS_WAITING_FOR_FREEZE] = "Waiting for freeze",
		[AMB_WS_WAITING_FOR_THAW] = "Waiting for thaw",
		[AMB_WS_WAITING_FOR_POST_SNAPSHOT] = "Waiting for post-snapshot",
		[AMB_WS_WAITING_FOR_BACKUP_COMPLETE] = "Waiting for backup complete",
		[AMB_WS_FAILED_AT_IDENTIFY] = "Failed at identify",
		[AMB_WS_FAILED_AT_PREPARE_BACKUP] = "Failed at prepare backup",
		[AMB_WS_FAILED_AT_PREPARE_SNAPSHOT] = "Failed at prepare snapshot",
		[AMB_WS_FAILED_AT_FREEZE] = "Failed at freeze",
		[AMB_WS_FAILED_AT_THAW] = "Failed at thaw",
		[AMB_WS_FAILED_AT_POST_SNAPSHOT] = "Failed at post-snapshot",
		[AMB_WS_FAILED_AT_BACKUP_COMPLETE] = "Failed at backup complete",
		[AMB_WS_FAILED_AT_PRE_RESTORE] = "Failed at pre-restore",
		[AMB_WS_FAILED_AT_POST_RESTORE] = "Failed at post-restore",
		[AMB_WS_FAILED_AT_BACKUP_SHUTDOWN] = "Failed at backup shutdown",
	};
	if ((unsigned)s >= AMB_WS_COUNT)
		return "Unknown";
	return names[s];
}

const char *cli_fail_class_text(amb_fail_class c)
{
	switch (c) {
	case AMB_FAIL_RETRYABLE:
		return "Retryable error";
	case AMB_FAIL_NONRETRYABLE:
		return "Non-retryable error";
	case AMB_FAIL_TIMEOUT:
		return "Timeout";
	case AMB_FAIL_INCONSISTENT:
		return "Inconsistent snapshot";
	case AMB_FAIL_OUT_OF_RESOURCES:
		return "Out of resources";
	case AMB_FAIL_NONE:
		break;
	}
	return "Unknown error";
}

const char *cli_comp_type_name(amb_comp_type t)
{
	switch (t) {
	case AMB_COMP_DATABASE:
		return "database";
	case AMB_COMP_FILEGROUP:
		return "filegroup";
	}
	return "unknown";
}

const char *cli_severity_name(amb_severity s)
{
	switch (s) {
	case AMB_SEV_INFO:
		return "info";
	case AMB_SEV_WARNING:
		return "warning";
	case AMB_SEV_ERROR:
		return "error";
	}
	return "unknown";
}

void cli_print_writer(FILE *f, const amb_writer_info *w)
{
	const amb_writer_md *md = &w->metadata;
	char buf[CLI_FMT_BUF];
	fprintf(f, "Writer name: '%s'\n", md->name);
	fprintf(f, "   Writer Instance Id: {%s}\n", md->instance);
	if (md->instance_name)
		fprintf(f, "   Instance name: %s\n", md->instance_name);
	fprintf(f, "   State: [%d] %s\n", (int)w->state, cli_writer_state_text(w->state));
	if (!w->last_error)
		fprintf(f, "   Last error: No error\n");
	else if (w->last_error->message)
		fprintf(f, "   Last error: %s: %s\n", cli_fail_class_text(w->last_error->cls),
		        w->last_error->message);
	else
		fprintf(f, "   Last error: %s\n", cli_fail_class_text(w->last_error->cls));
	fprintf(f, "   Process: pid %" PRId32 ", uid %" PRIu32 "\n", w->pid, w->uid);
	fprintf(f, "   Backup types: %s\n",
	        cli_fmt_backup_types(md->backup_types, buf, sizeof(buf)));
	fprintf(f, "   Components:");
	if (md->n_components == 0)
		fprintf(f, " none");
	for (size_t k = 0; k < md->n_components; k++)
		fprintf(f, "%s %s (%s)", k ? "," : "", md->components[k].name,
		        cli_comp_type_name(md->components[k].type));
	fprintf(f, "\n");
}

void cli_print_provider(FILE *f, const amb_provider_info *p)
{
	fprintf(f, "Provider name: '%s'\n", p->name);
	if (p->description)
		fprintf(f, "   Description: %s\n", p->description);
	fprintf(f, "   Holds writes for the whole copy: %s\n", p->holds_writes ? "yes" : "no");
}

void cli_print_storage(FILE *f, const amb_storage_info *s)
{
	char buf[CLI_FMT_BUF];
	fprintf(f, "Shadow Copy Storage association\n");
	fprintf(f, "   For volume: %s\n", s->volume);
	fprintf(f, "   Used Shadow Copy Storage space: %s (%" PRIu64 " bytes)\n",
	        cli_fmt_size(s->used, buf, sizeof(buf)), s->used);
	if (s->limit == 0)
		fprintf(f, "   Maximum Shadow Copy Storage space: UNBOUNDED\n");
	else
		fprintf(f, "   Maximum Shadow Copy Storage space: %s (%" PRIu64 " bytes)\n",
		        cli_fmt_size(s->limit, buf, sizeof(buf)), s->limit);
}

int cli_print_shadows(FILE *f, const amb_shadow *const *shadows, size_t n)
{
	/* group by set in order of first appearance: mark what is printed */
	bool *done = calloc(n ? n : 1, sizeof(*done));
	if (!done)
		return -ENOMEM;
	char when[CLI_FMT_BUF];
	for (size_t a = 0; a < n; a++) {
		if (done[a])
			continue;
		const char *set = shadows[a]->set;
		size_t count = 0;
		uint64_t created = UINT64_MAX;
		for (size_t b = a; b < n; b++) {
			if (strcmp(shadows[b]->set, set) != 0)
				continue;
			count++;
			if (shadows[b]->created_ms < created)
				created = shadows[b]->created_ms;
		}
		if (a > 0)
			fprintf(f, "\n");
		fprintf(f, "Contents of shadow copy set ID: {%s}\n", set);
		/* "1 shadow copies" is what vssadmin says; scripts grep for it */
		fprintf(f, "   Contained %zu shadow copies at creation time: %s\n", count,
		        cli_fmt_time(created, false, when, sizeof(when)));
		for (size_t b = a; b < n; b++) {
			const amb_shadow *s = shadows[b];
			if (strcmp(s->set, set) != 0)
				continue;
			done[b] = true;
			fprintf(f, "      Shadow Copy ID: {%s}\n", s->id);
			fprintf(f, "         Original Volume: %s\n", s->volume);
			fprintf(f, "         Shadow Copy Volume: %s\n", s->path);
			fprintf(f, "         Provider: '%s'\n", s->provider);
			fprintf(f, "         Type: %s, %s writers\n",
			        s->persistent ? "persistent" : "volatile",
			        s->writers ? "with" : "without");
			if (s->exposed)
				fprintf(f, "         Exposed at: %s\n", s->exposed);
		}
	}
	free(done);
	return 0;
}

void cli_print_event(FILE *f, const amb_event *e)
{
	char when[CLI_FMT_BUF];
	const char *name = amb_event_code_name(e->code);
	fprintf(f, "%s  %" PRIu64 "  %" PRIu32 "  %-7s  %s  %s",
	        cli_fmt_time(e->time_ms, true, when, sizeof(when)), e->seq, e->code,
	        cli_severity_name(e->severity), name ? name : "-", e->message);
	if (e->session[0])
		fprintf(f, " session=%s", e->session);
	if (e->set[0])
		fprintf(f, " set=%s", e->set);
	if (e->shadow[0])
		fprintf(f, " shadow=%s", e->shadow);
	if (e->writer[0])
		fprintf(f, " writer=%s", e->writer);
	if (e->component[0])
		fprintf(f, " component=%s", e->component);
	if (e->volume)
		fprintf(f, " volume=%s", e->volume);
	if (e->cls != AMB_FAIL_NONE)
		fprintf(f, " class=%s", amb_fail_class_name(e->cls));
	fprintf(f, "\n");
}

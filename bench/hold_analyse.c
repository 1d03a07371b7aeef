/*
 * hold_analyse.c - amber-bench-hold-analyse: what a workload saw of 50
 * snapshots, from `amber-store serve --latency-log` (bench/hold_bench.sh).
 *
 * usage: amber-bench-hold-analyse now
 *        amber-bench-hold-analyse --label NAME [--held FILE] [--detail FILE]
 *                                 [--hold-is-window 1] LATENCY_LOG WINDOWS
 *
 * `now` prints CLOCK_MONOTONIC in nanoseconds: the clock of the latency log,
 * so that the script can time its snapshot windows on the same clock.
 *
 * Inputs (all times CLOCK_MONOTONIC ns):
 *   LATENCY_LOG  serve's log: "<start> <end>" per commit, "hold <ns>",
 *                "freeze <ns>" and "thaw <ns>" per hold of the amber writer
 *                (src/store/tool/serve.c, top comment); any order
 *   WINDOWS      one line "<t0> <t1>" per snapshot: t0 just before the
 *                snapshot was asked for (`amber create shadow`, or the
 *                admin script's kill -STOP), t1 just after it was done
 *   --held FILE  amberd's own hold per snapshot, in ms, one per line (event
 *                1009 "writes were held for N ms")
 *   --hold-is-window 1  the admin script: the process is stopped for the
 *                whole window, so the hold is t1 - t0
 *
 * Per snapshot window W = [t0, t1]:
 *   hold   the definition, "from the first commit held to the last
 *          released": amber: from serve's "hold" mark (the moment
 *          ams_freeze() stopped admitting commits) to its
 *          "thaw" mark (ams_thaw() returned: every held commit released);
 *          admin script: t1 - t0 (kill -STOP to kill -CONT, plus the start
 *          of the clock-reading process on each side, ~1 ms)
 *   lat    the longest latency of a commit that overlaps W (start < t1 and
 *          end > t0): the worst a transaction of the workload waited while
 *          the snapshot was made, whatever the cause (held, or slowed by
 *          the snapshot's I/O)
 *   stall  the longest interval in which no commit completed, among those
 *          overlapping W: catches a hold that no commit was in flight for
 *          (a thread stopped between two transactions)
 * Over the run, from the first t0 to the last t1: commits per second, the
 * worst commit latency, and the p99 of the commits overlapping no window
 * (the latency without snapshots, for comparison).
 *
 * Output: one Markdown table row (columns in the order of the header that
 * hold_bench.sh prints), then a line "# key=value ..." for the script.
 * --detail FILE writes one line per snapshot: t0 hold_ms lat_ms stall_ms.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct commit {
	uint64_t start, end;
} commit;

typedef struct vec {
	void *p;
	size_t n, cap, size;
} vec;

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "amber-bench-hold-analyse: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void *vec_push(vec *v)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 1024;
		v->p = realloc(v->p, v->cap * v->size);
		if (!v->p)
			die("%s", "out of memory");
	}
	return (char *)v->p + v->n++ * v->size;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* median and maximum of n values (sorts them); "-" when n == 0 */
static void med_max(double *v, size_t n, char *out, size_t outsz)
{
	if (n == 0) {
		snprintf(out, outsz, "-");
		return;
	}
	qsort(v, n, sizeof(*v), cmp_double);
	double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	snprintf(out, outsz, "%.1f / %.1f", med, v[n - 1]);
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "now") == 0) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		printf("%" PRIu64 "\n", (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
		return 0;
	}
	const char *label = "?", *held_path = NULL, *detail_path = NULL;
	int hold_is_window = 0;
	int i = 1;
	for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--label") == 0)
			label = argv[i + 1];
		else if (strcmp(argv[i], "--held") == 0)
			held_path = argv[i + 1];
		else if (strcmp(argv[i], "--detail") == 0)
			detail_path = argv[i + 1];
		else if (strcmp(argv[i], "--hold-is-window") == 0)
			hold_is_window = atoi(argv[i + 1]);
		else
			die("unknown option %s", argv[i]);
	}
	if (argc - i != 2) {
		fprintf(stderr, "usage: amber-bench-hold-analyse now\n"
		                "       amber-bench-hold-analyse --label NAME [--held FILE] "
		                "[--detail FILE] [--hold-is-window 1] LATENCY_LOG WINDOWS\n");
		return 2;
	}

	/* the latency log */
	vec commits = {.size = sizeof(commit)}, freezes = {.size = sizeof(uint64_t)},
	    thaws = {.size = sizeof(uint64_t)}, wins = {.size = sizeof(commit)};
	FILE *f = fopen(argv[i], "r");
	if (!f)
		die("cannot open %s", argv[i]);
	char line[256];
	while (fgets(line, sizeof(line), f)) {
		uint64_t a, b;
		if (sscanf(line, "hold %" SCNu64, &a) == 1)
			*(uint64_t *)vec_push(&freezes) = a;
		else if (sscanf(line, "freeze %" SCNu64, &a) == 1)
			continue; /* ams_freeze() returned: inside the hold */
		else if (sscanf(line, "thaw %" SCNu64, &a) == 1)
			*(uint64_t *)vec_push(&thaws) = a;
		else if (sscanf(line, "%" SCNu64 " %" SCNu64, &a, &b) == 2)
			*(commit *)vec_push(&commits) = (commit){a, b};
		else
			die("bad line in the latency log: %.80s", line);
	}
	fclose(f);
	f = fopen(argv[i + 1], "r");
	if (!f)
		die("cannot open %s", argv[i + 1]);
	while (fgets(line, sizeof(line), f)) {
		uint64_t a, b;
		if (sscanf(line, "%" SCNu64 " %" SCNu64, &a, &b) != 2 || b < a)
			die("bad line in the windows file: %.80s", line);
		*(commit *)vec_push(&wins) = (commit){a, b};
	}
	fclose(f);
	commit *c = commits.p, *w = wins.p;
	size_t nc = commits.n, nw = wins.n;
	if (nc == 0 || nw == 0)
		die("%s", "no commits or no snapshot windows");

	/* commit ends in time order, for the stalls */
	uint64_t *ends = malloc(nc * sizeof(*ends));
	double *hold = calloc(nw, sizeof(double)), *stall = calloc(nw, sizeof(double));
	double *wlat = calloc(nw, sizeof(double)), *lat = malloc(nc * sizeof(double));
	if (!ends || !hold || !stall || !wlat || !lat)
		die("%s", "out of memory");
	for (size_t k = 0; k < nc; k++)
		ends[k] = c[k].end;
	qsort(ends, nc, sizeof(*ends), cmp_u64);
	qsort(freezes.p, freezes.n, sizeof(uint64_t), cmp_u64);
	qsort(thaws.p, thaws.n, sizeof(uint64_t), cmp_u64);

	uint64_t run0 = w[0].start, run1 = w[nw - 1].end;
	for (size_t j = 0; j < nw; j++)
		hold[j] = -1; /* no hold found in the window */
	for (size_t j = 0; j < nw; j++) {
		uint64_t t0 = w[j].start, t1 = w[j].end;
		run0 = t0 < run0 ? t0 : run0;
		run1 = t1 > run1 ? t1 : run1;
		for (size_t k = 0; k < nc; k++)
			if (c[k].start < t1 && c[k].end > t0 && ms(c[k].end - c[k].start) > wlat[j])
				wlat[j] = ms(c[k].end - c[k].start);
		for (size_t k = 1; k < nc; k++)
			if (ends[k - 1] < t1 && ends[k] > t0 && ms(ends[k] - ends[k - 1]) > stall[j])
				stall[j] = ms(ends[k] - ends[k - 1]);
		if (hold_is_window) {
			hold[j] = ms(t1 - t0);
			continue;
		}
		/* the writer's hold -> thaw inside this window */
		const uint64_t *fz = freezes.p, *th = thaws.p;
		for (size_t k = 0; k < freezes.n; k++) {
			if (fz[k] < t0 || fz[k] > t1)
				continue;
			for (size_t m = 0; m < thaws.n; m++)
				if (th[m] >= fz[k]) {
					hold[j] = ms(th[m] - fz[k]);
					break;
				}
			break;
		}
	}
	/* the holds found, for the statistics (hv; hold stays per window) */
	double *hv = malloc(nw * sizeof(double));
	size_t nhold = 0;
	if (!hv)
		die("%s", "out of memory");
	for (size_t j = 0; j < nw; j++)
		if (hold[j] >= 0)
			hv[nhold++] = hold[j];
	if (nhold != nw)
		fprintf(stderr, "amber-bench-hold-analyse: %s: %zu of %zu snapshots have a hold\n",
		        label, nhold, nw);

	/* over the run: rate, worst latency, p99 without snapshots */
	size_t nrun = 0, nfree = 0;
	double worst = 0;
	for (size_t k = 0; k < nc; k++) {
		if (c[k].end < run0 || c[k].start > run1)
			continue;
		if (c[k].end <= run1)
			nrun++;
		double l = ms(c[k].end - c[k].start);
		worst = l > worst ? l : worst;
		int in_window = 0;
		for (size_t j = 0; j < nw && !in_window; j++)
			in_window = c[k].start < w[j].end && c[k].end > w[j].start;
		if (!in_window)
			lat[nfree++] = l;
	}
	qsort(lat, nfree, sizeof(*lat), cmp_double);
	double p99 = nfree ? lat[(size_t)((double)(nfree - 1) * 0.99)] : 0;
	double rate = (double)nrun / ((double)(run1 - run0) / 1e9);

	double held[4096];
	size_t nheld = 0;
	if (held_path) {
		f = fopen(held_path, "r");
		if (!f)
			die("cannot open %s", held_path);
		while (nheld < sizeof(held) / sizeof(held[0]) && fscanf(f, "%lf", &held[nheld]) == 1)
			nheld++;
		fclose(f);
	}

	if (detail_path) {
		f = fopen(detail_path, "w");
		if (!f)
			die("cannot write %s", detail_path);
		fprintf(f, "# t0_ns hold_ms lat_ms stall_ms\n");
		for (size_t j = 0; j < nw; j++)
			fprintf(f, "%" PRIu64 " %.3f %.3f %.3f\n", w[j].start, hold[j],
			        wlat[j], stall[j]);
		fclose(f);
	}

	char s_hold[64], s_lat[64], s_stall[64], s_held[64];
	double hold_med = median(hv, nhold), hold_max = nhold ? hv[nhold - 1] : 0;
	double lat_med = median(wlat, nw), lat_max = wlat[nw - 1];
	double stall_med = median(stall, nw), stall_max = stall[nw - 1];
	med_max(hv, nhold, s_hold, sizeof(s_hold));
	med_max(wlat, nw, s_lat, sizeof(s_lat));
	med_max(stall, nw, s_stall, sizeof(s_stall));
	med_max(held, nheld, s_held, sizeof(s_held));
	printf("| %s | %zu | **%s** | %s | %s | %s | %.1f | %.1f | %.0f |\n", label, nw, s_hold,
	       s_lat, s_stall, s_held, worst, p99, rate);
	printf("# hold_med=%.3f hold_max=%.3f lat_med=%.3f lat_max=%.3f stall_med=%.3f "
	       "stall_max=%.3f worst=%.3f rate=%.1f nhold=%zu\n",
	       hold_med, hold_max, lat_med, lat_max, stall_med, stall_max, worst, rate, nhold);
	free(ends);
	free(hold);
	free(stall);
	free(wlat);
	free(hv);
	free(lat);
	free(commits.p);
	free(freezes.p);
	free(thaws.p);
	free(wins.p);
	return 0;
}

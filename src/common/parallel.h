/*
 * parallel.h - one function over the indexes 0..n-1, on a few threads.
 *
 * Several parts do independent work per item where each item waits on the
 * kernel or a core: a scan per log file (amb_logdir_list), an fsync per
 * precopied file (bk_precopy_sync_start), a database's header copies
 * (instance.c, headers_store_via).  The workers claim the next index
 * under a mutex until none is left, so a slow item holds up one worker, not
 * the rest.
 *
 * amb_par_run() uses the caller's thread as one of the workers and returns
 * once fn has run for every index.  amb_par_start() starts the workers only,
 * so that the caller goes on meanwhile; amb_par_wait() joins them.  A thread
 * that cannot be started only means fewer workers: amb_par_run() then does
 * the rest on the caller's thread, and amb_par_start() returns how many
 * started (0: none, nothing will run, the caller does the work itself).
 *
 * fn(arg, i) is called exactly once per index, from any of the threads, in
 * no particular order; what it writes for index i only it writes.
 */
#ifndef AMBER_COMMON_PARALLEL_H
#define AMBER_COMMON_PARALLEL_H

#include <pthread.h>
#include <stddef.h>

/* at most this many threads per amb_par */
#define AMB_PAR_MAX 16

typedef void (*amb_par_fn)(void *arg, size_t i);

typedef struct amb_par {
	amb_par_fn fn;
	void *arg;
	size_t n;
	pthread_mutex_t mu; /* next */
	size_t next;
	pthread_t th[AMB_PAR_MAX];
	int nth;            /* threads started and not yet joined */
} amb_par;

/* Run fn for 0..n-1 on up to nthreads threads, the caller's among them
 * (nthreads <= 1: all on the caller's thread); returns when all are done. */
void amb_par_run(size_t n, int nthreads, amb_par_fn fn, void *arg);

/* Start up to nthreads threads (never more than n) that run fn for 0..n-1;
 * returns how many started.  With 0 nothing runs and p needs no
 * amb_par_wait(); otherwise p must stay in place until amb_par_wait(). */
int amb_par_start(amb_par *p, size_t n, int nthreads, amb_par_fn fn, void *arg);

/* Wait for the threads of amb_par_start() (nothing when none runs). */
void amb_par_wait(amb_par *p);

#endif

/*
 * test_parallel.c - unit tests of src/common/parallel.{h,c}.
 *
 * What must hold (parallel.h):
 *   - fn runs exactly once for every index 0..n-1, whatever n and the number
 *     of threads asked (0, 1, more than n, more than AMB_PAR_MAX);
 *   - amb_par_run() returns only when every index is done, and with one
 *     thread asked runs them all on the caller's thread, in order;
 *   - amb_par_start() never starts more threads than indexes nor than
 *     AMB_PAR_MAX, runs nothing when it returns 0 (n = 0), and lets the
 *     caller go on while the workers run: fn may block until the caller
 *     releases it after amb_par_start() returned;
 *   - several threads do run at once (fn waits until two of them meet).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "common/parallel.h"

#define N_MAX 5000

typedef struct counts {
	atomic_int hits[N_MAX];
	size_t order[N_MAX]; /* the indexes in the order run (one thread only) */
	atomic_size_t ran;
	pthread_t caller;
	atomic_int off_caller;   /* calls made on another thread */
	/* gate: fn waits until open (amb_par_start lets the caller go on) */
	atomic_bool gated, open;
	/* meet: fn waits until two calls are in fn at once */
	atomic_bool meet;
	atomic_int inside, max_inside;
} counts;

static void sleep_ms(long ms)
{
	struct timespec t = {0, ms * 1000000L};
	nanosleep(&t, NULL);
}

static void count(void *arg, size_t i)
{
	counts *c = arg;
	int now = atomic_fetch_add(&c->inside, 1) + 1;
	int m = atomic_load(&c->max_inside);
	while (now > m && !atomic_compare_exchange_weak(&c->max_inside, &m, now))
		;
	if (!pthread_equal(pthread_self(), c->caller))
		atomic_fetch_add(&c->off_caller, 1);
	while (atomic_load(&c->gated) && !atomic_load(&c->open))
		sleep_ms(1);
	/* wait (at most ~2 s) for a second call to be inside at once */
	for (int k = 0; atomic_load(&c->meet) && atomic_load(&c->max_inside) < 2 && k < 2000; k++)
		sleep_ms(1);
	atomic_fetch_add(&c->hits[i], 1);
	size_t r = atomic_fetch_add(&c->ran, 1);
	if (r < N_MAX)
		c->order[r] = i;
	atomic_fetch_sub(&c->inside, 1);
}

static counts *fresh(void)
{
	counts *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->caller = pthread_self();
	return c;
}

static void assert_once_each(const counts *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		assert_int_equal(atomic_load(&c->hits[i]), 1);
	for (size_t i = n; i < N_MAX; i++)
		assert_int_equal(atomic_load(&c->hits[i]), 0);
	assert_int_equal(atomic_load(&c->ran), n);
}

static void test_run_counts(void **state)
{
	(void)state;
	static const size_t ns[] = {0, 1, 2, 7, 100, N_MAX};
	static const int ts[] = {0, 1, 3, 8, AMB_PAR_MAX + 5};
	for (size_t a = 0; a < sizeof(ns) / sizeof(ns[0]); a++) {
		for (size_t b = 0; b < sizeof(ts) / sizeof(ts[0]); b++) {
			counts *c = fresh();
			amb_par_run(ns[a], ts[b], count, c);
			assert_once_each(c, ns[a]);
			/* one worker (or none asked): the caller's thread, in order */
			if (ts[b] <= 1) {
				assert_int_equal(atomic_load(&c->off_caller), 0);
				for (size_t i = 0; i < ns[a]; i++)
					assert_int_equal(c->order[i], i);
			}
			assert_true(atomic_load(&c->max_inside) <= (ts[b] < 1 ? 1 : ts[b]));
			free(c);
		}
	}
}

static void test_run_parallel(void **state)
{
	(void)state;
	counts *c = fresh();
	atomic_store(&c->meet, true);
	amb_par_run(4, 4, count, c);
	assert_once_each(c, 4);
	assert_true(atomic_load(&c->max_inside) >= 2);
	assert_true(atomic_load(&c->off_caller) >= 1);
	free(c);
}

static void test_start_wait(void **state)
{
	(void)state;
	/* nothing to do: no thread, nothing run, wait is harmless */
	counts *c = fresh();
	amb_par p;
	assert_int_equal(amb_par_start(&p, 0, 4, count, c), 0);
	amb_par_wait(&p);
	assert_int_equal(atomic_load(&c->ran), 0);
	free(c);

	/* the workers wait at the gate until the caller, back from
	 * amb_par_start(), opens it: the caller was not held up */
	c = fresh();
	atomic_store(&c->gated, true);
	int started = amb_par_start(&p, 50, 4, count, c);
	assert_int_equal(started, 4);
	sleep_ms(20);
	assert_int_equal(atomic_load(&c->ran), 0);
	atomic_store(&c->open, true);
	amb_par_wait(&p);
	assert_once_each(c, 50);
	assert_int_equal(atomic_load(&c->off_caller), 50); /* none on the caller */
	amb_par_wait(&p);                                   /* again: nothing */
	free(c);

	/* never more threads than indexes, nor than AMB_PAR_MAX */
	c = fresh();
	assert_int_equal(amb_par_start(&p, 3, 8, count, c), 3);
	amb_par_wait(&p);
	assert_once_each(c, 3);
	free(c);
	c = fresh();
	assert_int_equal(amb_par_start(&p, 100, AMB_PAR_MAX * 2, count, c), AMB_PAR_MAX);
	amb_par_wait(&p);
	assert_once_each(c, 100);
	free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_run_counts),
		cmocka_unit_test(test_run_parallel),
		cmocka_unit_test(test_start_wait),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

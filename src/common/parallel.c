/*
 * parallel.c - one function over the indexes 0..n-1 (see parallel.h).
 */
#include "common/parallel.h"

static void *worker(void *arg)
{
	amb_par *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		size_t i = p->next < p->n ? p->next++ : p->n;
		pthread_mutex_unlock(&p->mu);
		if (i >= p->n)
			return NULL;
		p->fn(p->arg, i);
	}
}

static void init(amb_par *p, size_t n, amb_par_fn fn, void *arg)
{
	p->fn = fn;
	p->arg = arg;
	p->n = n;
	p->next = 0;
	p->nth = 0;
	pthread_mutex_init(&p->mu, NULL);
}

/* want threads, but no more than there are indexes for (limit) nor than
 * AMB_PAR_MAX */
static int how_many(int want, size_t limit)
{
	if (want <= 0)
		return 0;
	if ((size_t)want > limit)
		want = (int)limit;
	return want > AMB_PAR_MAX ? AMB_PAR_MAX : want;
}

static void spawn(amb_par *p, int want)
{
	while (p->nth < want && pthread_create(&p->th[p->nth], NULL, worker, p) == 0)
		p->nth++;
}

static void join(amb_par *p)
{
	for (int i = 0; i < p->nth; i++)
		pthread_join(p->th[i], NULL);
	p->nth = 0;
	pthread_mutex_destroy(&p->mu);
}

void amb_par_run(size_t n, int nthreads, amb_par_fn fn, void *arg)
{
	amb_par p;
	init(&p, n, fn, arg);
	/* the caller is one of the workers: the others take the indexes
	 * beyond the first */
	spawn(&p, how_many(nthreads - 1, n > 0 ? n - 1 : 0));
	worker(&p);
	join(&p);
}

int amb_par_start(amb_par *p, size_t n, int nthreads, amb_par_fn fn, void *arg)
{
	init(p, n, fn, arg);
	spawn(p, how_many(nthreads, n));
	if (!p->nth)
		pthread_mutex_destroy(&p->mu);
	return p->nth;
}

void amb_par_wait(amb_par *p)
{
	if (p->nth)
		join(p);
}

/*
 * array.h - growing a malloc'd array.
 *
 *   if (amb_grow((void **)&arr, &cap, n + 1, sizeof(*arr), 16))
 *           return AMS_ENOMEM;
 *   arr[n++] = x;
 *
 * Makes room for at least `need` elements, doubling the capacity (starting
 * at `first`).  Returns 0, or -1 when out of memory (the array is then
 * unchanged).
 */
#ifndef AMBER_COMMON_ARRAY_H
#define AMBER_COMMON_ARRAY_H

#include <stdlib.h>

static inline int amb_grow(void **arr, size_t *cap, size_t need, size_t elem, size_t first)
{
	if (need <= *cap)
		return 0;
	size_t nc = *cap ? *cap : first;
	while (nc < need)
		nc *= 2;
	void *n = realloc(*arr, nc * elem);
	if (!n)
		return -1;
	*arr = n;
	*cap = nc;
	return 0;
}

#endif

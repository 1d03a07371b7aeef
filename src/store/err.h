/*
 * err.h - error reporting inside libamberstore.
 *
 * Functions return AMS_* codes (include/amber/store.h).  Where a failure is
 * first detected, call amb_err() with a message that names the file, page or
 * generation; it is kept per thread and returned by ams_errmsg().  Messages
 * are lower case, without a final period.
 */
#ifndef AMBER_STORE_ERR_H
#define AMBER_STORE_ERR_H

#include "amber/store.h"

/* Set the thread's error message; returns rc so callers can
 * `return amb_err(AMS_ECORRUPT, "...", ...)`. */
int amb_err(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Map a negative errno from the vfs to an AMS code (ENOSPC/EDQUOT ->
 * AMS_ENOSPC, ENOMEM -> AMS_ENOMEM, ENOENT -> AMS_ENOTFOUND, else AMS_EIO). */
int amb_errno_code(int neg_errno);

#endif

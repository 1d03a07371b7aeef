/*
 * err.c - per-thread error messages and code names (see err.h).
 */
#include "store/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

static _Thread_local char errbuf[1024] = "no error";

int amb_err(int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	return rc;
}

const char *ams_errmsg(void)
{
	return errbuf;
}

int amb_errno_code(int neg_errno)
{
	switch (-neg_errno) {
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return AMS_ENOSPC;
	case ENOMEM:
		return AMS_ENOMEM;
	case ENOENT:
		return AMS_ENOTFOUND;
	default:
		return AMS_EIO;
	}
}

const char *ams_strerror(int rc)
{
	switch (rc) {
	case AMS_OK: return "success";
	case AMS_EINVAL: return "invalid argument";
	case AMS_ENOMEM: return "out of memory";
	case AMS_EIO: return "I/O error";
	case AMS_ENOSPC: return "no space left on device";
	case AMS_EFAILED: return "instance failed after an I/O error; reopen it";
	case AMS_ECORRUPT: return "damaged data";
	case AMS_ENOTFOUND: return "not found";
	case AMS_EBADSIG: return "signature mismatch: file belongs to another instance";
	case AMS_ELOGMISSING: return "required log generation missing";
	case AMS_ENOTDB: return "not an amber file";
	case AMS_ELOCKED: return "instance is in use by another process";
	case AMS_ETIMEDOUT: return "freeze deadline passed before thaw";
	case AMS_EBUSY: return "busy: a freeze or backup is in progress";
	case AMS_EBACKUPDB: return "database is a backup copy: run hard recovery";
	case AMS_EVERSION: return "unsupported format version";
	case AMS_EEXIST: return "already exists";
	default: return "unknown error";
	}
}

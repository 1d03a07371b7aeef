/*
 * thaw_guard.c - amber-thaw-guard SOCKFD FSFD LABEL: the process that thaws
 * a frozen filesystem when its freezer dies or its deadline passes.
 * amb_fsfreeze() starts it; nobody else should (fsfreeze.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "providers/fsfreeze.h"

static int parse_fd(const char *s)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < 0 || v > 1 << 20)
		return -1;
	return (int)v;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: amber-thaw-guard SOCKFD FSFD LABEL "
				"(started by amb_fsfreeze, not by hand)\n");
		return 2;
	}
	int sock = parse_fd(argv[1]);
	int fsfd = parse_fd(argv[2]);
	if (sock < 0 || fsfd < 0) {
		fprintf(stderr, "amber-thaw-guard: bad descriptor numbers\n");
		return 2;
	}
	return amb_thaw_guard_run(sock, fsfd, argv[3]);
}

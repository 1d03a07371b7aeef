/*
 * freeze_tool.c - amber-prov-freeze-tool, the freezer that freeze_test.sh
 * kills, starves and watches:
 *
 *   hold PATH DEADLINE_MS          freeze, print "frozen GUARDPID", then wait
 *                                  forever (to be killed)
 *   thaw-after PATH DEADLINE_MS MS freeze, print "frozen GUARDPID", sleep MS,
 *                                  thaw, print "thaw RC MESSAGE"
 *   try PATH DEADLINE_MS           freeze and thaw at once
 *
 * Exit: 0 ok; 3 thaw said -ETIMEDOUT; 4 thaw said -EINVAL; 1 other
 * failure (message on stdout); 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "providers/fsfreeze.h"
#include "providers/provider.h"

static int thaw_exit(amb_freeze *h)
{
	int rc = amb_fsthaw(h);
	printf("thaw %d %s\n", rc, rc ? amb_provider_errmsg() : "ok");
	fflush(stdout);
	if (rc == 0)
		return 0;
	if (rc == -ETIMEDOUT)
		return 3;
	if (rc == -EINVAL)
		return 4;
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: amber-prov-freeze-tool hold|thaw-after|try PATH "
				"DEADLINE_MS [MS]\n");
		return 2;
	}
	const char *cmd = argv[1];
	unsigned deadline = (unsigned)strtoul(argv[3], NULL, 10);
	amb_freeze *h;
	int rc = amb_fsfreeze(argv[2], deadline, &h);
	if (rc) {
		printf("error %d %s\n", rc, amb_provider_errmsg());
		return 1;
	}
	printf("frozen %d\n", (int)amb_freeze_guard_pid(h));
	fflush(stdout);
	if (strcmp(cmd, "hold") == 0) {
		for (;;)
			pause();
	}
	if (strcmp(cmd, "thaw-after") == 0 && argc == 5) {
		long ms = strtol(argv[4], NULL, 10);
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
		return thaw_exit(h);
	}
	if (strcmp(cmd, "try") == 0)
		return thaw_exit(h);
	amb_fsthaw(h);
	return 2;
}

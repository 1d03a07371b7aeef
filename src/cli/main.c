/*
 * main.c - amber, the administrator's tool (design.md section 7): the
 * whole program is cli_main() in dispatch.c, so that tests can run it.
 */
#include <stdio.h>

#include "cli/cli.h"

int main(int argc, char **argv)
{
	cli_ctx ctx = { .out = stdout, .err = stderr };
	return cli_main(&ctx, argc, argv);
}

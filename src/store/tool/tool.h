/*
 * tool.h - amber-store: shared pieces of the subcommands.
 *
 * Exit codes (design.md section 7): 0 success; 1 the checked thing is
 * damaged or the operation failed; 2 bad usage or bad input; 3 retryable.
 */
#ifndef AMBER_STORE_TOOL_H
#define AMBER_STORE_TOOL_H

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_RETRY 3

/* Map an AMS_* code to an exit code. */
int tool_exit_code(int ams_rc);

/* Subcommands: argv[0] is the subcommand name. */
int cmd_create(int argc, char **argv);
int cmd_serve(int argc, char **argv);   /* serve.c */
int cmd_check(int argc, char **argv);
int cmd_header(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_recover(int argc, char **argv);
int cmd_hard_recover(int argc, char **argv);
int cmd_dump(int argc, char **argv);    /* dump.c */

#endif

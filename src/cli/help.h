/*
 * help.h - amber: the manual pages (help.c).
 */
#ifndef AMBER_CLI_HELP_H
#define AMBER_CLI_HELP_H

#include <stdio.h>

#include "cli/cli.h"

/* The pages the command table points at. */
extern const char cli_help_list_writers[];
extern const char cli_help_list_providers[];
extern const char cli_help_list_shadows[];
extern const char cli_help_list_shadowstorage[];
extern const char cli_help_create_shadow[];
extern const char cli_help_delete_shadows[];
extern const char cli_help_expose[];
extern const char cli_help_unexpose[];
extern const char cli_help_events[];
extern const char cli_help_backup[];
extern const char cli_help_backups[];
extern const char cli_help_verify[];
extern const char cli_help_restore[];
extern const char cli_help_script[];

/* `amber --help`: the whole tool, with the command list from the table. */
void cli_help_overview(FILE *f);
/* `amber` alone: the synopsis and where to read on (for stderr). */
void cli_help_short(FILE *f);
/* `amber COMMAND --help`: the command's page and the global part. */
void cli_help_cmd(FILE *f, const cli_cmd *cmd);
/* `amber list --help`: a verb with several objects. */
void cli_help_verb(FILE *f, const char *verb);

#endif

/*
 * sc_compare.c - see sc_compare.h.
 */
#include "sc_compare.h"

#include <stdlib.h>
#include <string.h>

bool sc_parser_clone(const sc_parser *from, sc_parser *to)
{
	*to = *from;
	for (size_t i = 0; i < from->n_vols; i++) {
		to->vols[i] = strdup(from->vols[i]);
		if (!to->vols[i]) {
			to->n_vols = i;
			sc_parser_free(to);
			return false;
		}
	}
	return true;
}

bool sc_same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

bool sc_cmd_equal(const sc_cmd *a, const sc_cmd *b)
{
	if (a->op != b->op || a->line != b->line || a->sub != b->sub || a->flag != b->flag ||
	    a->argc != b->argc || !a->argv != !b->argv)
		return false;
	for (int i = 0; i < 3; i++)
		if (!sc_same_str(a->arg[i], b->arg[i]))
			return false;
	for (size_t i = 0; a->argv && i <= a->argc; i++)
		if (!sc_same_str(a->argv[i], b->argv[i]))
			return false;
	return true;
}

bool sc_parser_same(const sc_parser *a, const sc_parser *b)
{
	if (a->persistent != b->persistent || a->nowriters != b->nowriters ||
	    a->in_backup != b->in_backup || a->backup_ended != b->backup_ended ||
	    a->in_restore != b->in_restore || a->created != b->created ||
	    a->exited != b->exited || a->begin_line != b->begin_line ||
	    a->n_vols != b->n_vols || a->n_aliases != b->n_aliases)
		return false;
	for (size_t i = 0; i < a->n_vols; i++)
		if (strcmp(a->vols[i], b->vols[i]) != 0)
			return false;
	for (size_t i = 0; i < a->n_aliases; i++)
		if (strcmp(a->aliases[i], b->aliases[i]) != 0)
			return false;
	return true;
}

/*
 * sc_compare.h - what the parser's unit test and its fuzzer both need:
 * comparing commands and parser states, and copying a parser state.
 */
#ifndef AMBER_TESTS_SCRIPT_SC_COMPARE_H
#define AMBER_TESTS_SCRIPT_SC_COMPARE_H

#include <stdbool.h>

#include "script/script.h"

/* A deep copy of from (its volume strings duplicated); false if out of
 * memory (to is then freed and empty). */
bool sc_parser_clone(const sc_parser *from, sc_parser *to);
/* Both NULL, or equal strings. */
bool sc_same_str(const char *a, const char *b);
/* Same op, line, sub, flag, arguments and exec argv. */
bool sc_cmd_equal(const sc_cmd *a, const sc_cmd *b);
/* Same state: flags, begin line, volumes and aliases. */
bool sc_parser_same(const sc_parser *a, const sc_parser *b);

#endif

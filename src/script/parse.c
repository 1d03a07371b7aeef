/*
 * parse.c - amber script: words, commands and the checks that can be made
 * before anything runs (script.h, docs/script.md).
 *
 * Grammar (command words case-insensitive; W = one word):
 *
 *   set context persistent|volatile [nowriters]
 *   set verbose on|off
 *   set metadata FILE
 *   set option [differential|plex] [noautorecover]   (others: an error)
 *   set provider NAME|auto                            (amber's own)
 *   writer verify|exclude NAME|{ID}|NAME/COMPONENT
 *   begin backup | end backup | begin restore | end restore
 *   add volume PATH [alias NAME] [provider NAME]
 *   create
 *   expose %ALIAS%|ID PATH
 *   unexpose PATH
 *   exec COMMAND [ARG]...
 *   delete shadows all | set ID | id ID | exposed PATH | oldest PATH
 *   list writers [metadata|status|detailed]
 *   list shadows [all | set ID | id ID]
 *   list providers
 *   load metadata FILE
 *   reset
 *   exit
 *
 * PATH arguments must be absolute Linux paths after expansion; one that
 * holds a %NAME% is checked when it runs.
 */
#include "script/script.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The names every script may use once its set is created (script.h of
 * the runner exports them to exec'd commands). */
static const char *const builtins[] = { "AMBER_SHADOW_SET_ID", "AMBER_METADATA",
	                                "AMBER_BACKUP_TYPE" };

typedef struct words {
	char *w[SC_MAX_WORDS];
	bool quoted[SC_MAX_WORDS];
	size_t n;
} words;

static void words_free(words *ws)
{
	for (size_t i = 0; i < ws->n; i++)
		free(ws->w[i]);
	ws->n = 0;
}

static int fail(char *err, size_t n, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t n, unsigned line, const char *fmt, ...)
{
	char msg[SC_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, n, "%u: %s", line, msg);
	return -1;
}

/* Split a line into words.  Returns 0 or -1 with the message. */
static int split(const char *line, unsigned lineno, words *ws, char *err, size_t errlen)
{
	size_t len = strlen(line);
	ws->n = 0;
	const char *s = line, *end = line + len;
	while (s < end) {
		while (s < end && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
			s++;
		if (s == end || *s == '#')
			break;
		if (ws->n == SC_MAX_WORDS) {
			words_free(ws);
			return fail(err, errlen, lineno, "too many words (at most %d on a line)",
			            SC_MAX_WORDS);
		}
		char *w = malloc((size_t)(end - s) + 1);
		if (!w) {
			words_free(ws);
			return fail(err, errlen, lineno, "out of memory");
		}
		size_t k = 0;
		bool quoted = false;
		while (s < end && !(*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) {
			if (*s == '"' || *s == '\'') {
				char q = *s++;
				quoted = true;
				while (s < end && *s != q) {
					if (q == '"' && *s == '\\' && s + 1 < end && (s[1] == '"' || s[1] == '\\'))
						s++;
					/* quotes keep blanks, not control characters: sc_cmd_text()
					 * could not write them back, and verbose echoes them */
					if ((unsigned char)*s < 0x20 && *s != '\t')
						break;
					w[k++] = *s++;
				}
				if (s == end) {
					free(w);
					words_free(ws);
					return fail(err, errlen, lineno, "unterminated %s quote",
					            q == '"' ? "double" : "single");
				}
				if (*s == q) {
					s++;
					continue;
				}
				/* else a control character, refused below */
			}
			if ((unsigned char)*s < 0x20 && *s != '\t') {
				free(w);
				words_free(ws);
				return fail(err, errlen, lineno, "control character 0x%02x in the line",
				            (unsigned)(unsigned char)*s);
			}
			w[k++] = *s++;
		}
		w[k] = '\0';
		ws->quoted[ws->n] = quoted;
		ws->w[ws->n++] = w;
	}
	return 0;
}

static bool is(const char *w, const char *kw)
{
	return strcasecmp(w, kw) == 0;
}

bool sc_alias_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > SC_NAME_MAX || !(isalpha((unsigned char)name[0]) || name[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)name[i]) || name[i] == '_'))
			return false;
	return true;
}

bool sc_uuid_parse(const char *s, char *out)
{
	size_t n = strlen(s);
	if (n == 38 && s[0] == '{' && s[37] == '}') {
		s++;
		n = 36;
	}
	if (n != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	if (out) {
		for (size_t i = 0; i < 36; i++)
			out[i] = (char)tolower((unsigned char)s[i]);
		out[36] = '\0';
	}
	return true;
}

/* Does w name a %NAME% (not only %% escapes)? */
static bool has_ref(const char *w)
{
	for (const char *s = strchr(w, '%'); s; s = strchr(s, '%')) {
		if (s[1] != '%')
			return true;
		s += 2;
	}
	return false;
}

/* Is name one of the script's own %NAME%s known at this point? */
static bool known_name(const sc_parser *p, const char *name, char *why, size_t n)
{
	for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
		if (strcmp(name, builtins[i]) == 0) {
			if (!p->created)
				snprintf(why, n, "%%%s%% is set by create, which has not run yet", name);
			return p->created;
		}
	for (size_t i = 0; i < p->n_aliases; i++) {
		size_t l = strlen(p->aliases[i]);
		if (strncmp(name, p->aliases[i], l) == 0 &&
		    (name[l] == '\0' || strcmp(name + l, "_PATH") == 0 ||
		     strcmp(name + l, "_VOLUME") == 0)) {
			if (!p->created)
				snprintf(why, n, "alias %%%s%% names no shadow before create", name);
			return p->created;
		}
	}
	if (getenv(name))
		return true;
	snprintf(why, n, "unknown alias %%%s%% (define it with `add volume PATH alias %s`)", name,
	         name);
	return false;
}

/* Check every %NAME% of w against what the script defines. */
static int check_refs(const sc_parser *p, const char *w, unsigned line, char *err, size_t n)
{
	const char *s = w;
	while ((s = strchr(s, '%')) != NULL) {
		if (s[1] == '%') {
			s += 2;
			continue;
		}
		const char *e = strchr(s + 1, '%');
		if (!e)
			return fail(err, n, line, "'%s': a %% without its closing %% (write %%%% for "
			            "a literal %%)", w);
		char name[SC_NAME_MAX + 2];
		size_t l = (size_t)(e - s - 1);
		if (l == 0 || l > SC_NAME_MAX)
			return fail(err, n, line, "'%s': bad %%NAME%% reference", w);
		memcpy(name, s + 1, l);
		name[l] = '\0';
		if (!sc_alias_name_ok(name))
			return fail(err, n, line, "'%s': bad %%NAME%% reference", w);
		char why[SC_ERR_MAX];
		if (!known_name(p, name, why, sizeof(why)))
			return fail(err, n, line, "%s", why);
		s = e + 1;
	}
	return 0;
}

/* A PATH argument: absolute, or holding a %NAME% checked later. */
static int check_path(const sc_parser *p, const char *w, const char *what, unsigned line,
                      char *err, size_t n)
{
	if (has_ref(w))
		return check_refs(p, w, line, err, n);
	if (w[0] == '/')
		return 0;
	if (isalpha((unsigned char)w[0]) && w[1] == ':')
		return fail(err, n, line, "%s '%s' is a Windows drive: amber takes Linux paths "
		            "(for example /srv/mail, or /mnt/shadow for a drive letter)", what, w);
	return fail(err, n, line, "%s '%s' is not an absolute path", what, w);
}

/* An ID argument: a uuid, {uuid}, or a %NAME%. */
static int check_id(const sc_parser *p, const char *w, const char *what, unsigned line,
                    char *err, size_t n)
{
	if (has_ref(w))
		return check_refs(p, w, line, err, n);
	if (sc_uuid_parse(w, NULL))
		return 0;
	return fail(err, n, line, "%s '%s' is not a shadow id (a uuid such as "
	            "0b1c2d3e-4f50-4a6b-8c7d-8e9fa0b1c2d3) or a %%ALIAS%%", what, w);
}

static void strip_slashes(char *s)
{
	size_t l = strlen(s);
	while (l > 1 && s[l - 1] == '/')
		s[--l] = '\0';
}

void sc_parser_init(sc_parser *p)
{
	memset(p, 0, sizeof(*p));
}

static void parser_reset_set(sc_parser *p)
{
	for (size_t i = 0; i < p->n_vols; i++)
		free(p->vols[i]);
	p->n_vols = 0;
	p->n_aliases = 0;
	p->created = false;
	p->in_backup = false;
	p->backup_ended = false;
	p->in_restore = false;
}

void sc_parser_free(sc_parser *p)
{
	parser_reset_set(p);
}

void sc_cmd_free(sc_cmd *c)
{
	for (int i = 0; i < 3; i++)
		free(c->arg[i]);
	for (size_t i = 0; c->argv && i < c->argc; i++)
		free(c->argv[i]);
	free(c->argv);
	memset(c, 0, sizeof(*c));
}

#define NEED(cond, ...)                                                            \
	do {                                                                        \
		if (!(cond)) {                                                      \
			rc = fail(err, errlen, lineno, __VA_ARGS__);                \
			goto out;                                                   \
		}                                                                   \
	} while (0)

static bool needs_arg0(sc_op op)
{
	switch (op) {
	case SC_SET_METADATA: case SC_SET_PROVIDER: case SC_WRITER_VERIFY:
	case SC_WRITER_EXCLUDE: case SC_ADD_VOLUME: case SC_EXPOSE: case SC_UNEXPOSE:
	case SC_LOAD_METADATA:
		return true;
	default:
		return false;
	}
}

/* "set" and "set context" etc. may not change once the set is being built. */
static bool set_started(const sc_parser *p)
{
	return p->in_backup || p->created || p->in_restore || p->n_vols > 0;
}

int sc_parse_line(sc_parser *p, const char *line, unsigned lineno, sc_cmd *out, char *err,
                  size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->line = lineno;
	if (strlen(line) > SC_LINE_MAX)
		return fail(err, errlen, lineno, "line longer than %d bytes", SC_LINE_MAX);
	words ws;
	int rc = split(line, lineno, &ws, err, errlen);
	if (rc)
		return rc;
	if (ws.n == 0)
		return 0;
	char **w = ws.w;
	size_t n = ws.n;
	const char *c0 = w[0];
	/* new state, committed only on success */
	sc_parser np = *p;
	char *newvol = NULL;
	bool want_alias = false;

	if (is(c0, "set")) {
		NEED(n >= 2, "set what? (context, verbose, metadata, option or provider)");
		if (is(w[1], "context")) {
			NEED(n >= 3 && n <= 4, "usage: set context persistent|volatile [nowriters]");
			NEED(!set_started(p), "set context must come before begin backup, add volume "
			     "and create (or after reset)");
			out->op = SC_SET_CONTEXT;
			if (is(w[2], "persistent"))
				out->sub = SC_CTX_PERSISTENT;
			else if (is(w[2], "volatile"))
				out->sub = SC_CTX_VOLATILE;
			else if (is(w[2], "clientaccessible"))
				NEED(0, "set context clientaccessible: Windows' Previous Versions shadows "
				     "have no Linux counterpart; use persistent");
			else
				NEED(0, "set context %s: expected persistent or volatile", w[2]);
			if (n == 4) {
				NEED(is(w[3], "nowriters"), "set context %s %s: expected nowriters", w[2],
				     w[3]);
				out->flag = true;
			}
			np.persistent = out->sub == SC_CTX_PERSISTENT;
			np.nowriters = out->flag;
		} else if (is(w[1], "verbose")) {
			NEED(n == 3 && (is(w[2], "on") || is(w[2], "off")), "usage: set verbose on|off");
			out->op = SC_SET_VERBOSE;
			out->flag = is(w[2], "on");
		} else if (is(w[1], "metadata")) {
			NEED(n == 3, "usage: set metadata FILE");
			NEED(!p->created, "set metadata must come before create");
			if ((rc = check_path(p, w[2], "metadata file", lineno, err, errlen)) != 0)
				goto out;
			out->op = SC_SET_METADATA;
			out->arg[0] = strdup(w[2]);
		} else if (is(w[1], "option")) {
			NEED(n >= 3, "usage: set option [differential|plex] [noautorecover]");
			NEED(!p->created, "set option must come before create");
			out->op = SC_SET_OPTION;
			for (size_t i = 2; i < n; i++) {
				if (is(w[i], "differential"))
					out->sub |= SC_OPT_DIFFERENTIAL;
				else if (is(w[i], "plex"))
					out->sub |= SC_OPT_PLEX;
				else if (is(w[i], "noautorecover"))
					out->sub |= SC_OPT_NOAUTORECOVER;
				else if (is(w[i], "transportable"))
					NEED(0, "set option transportable: amber's shadows cannot move to "
					     "another host (copy the exposed shadow instead)");
				else if (is(w[i], "rollbackrecover") || is(w[i], "txfrecover"))
					NEED(0, "set option %s: amber's shadows are read-only and never "
					     "recovered in place (amber recovers the copy at restore)", w[i]);
				else
					NEED(0, "set option %s: unknown option (differential, plex, "
					     "noautorecover)", w[i]);
			}
			NEED(!((out->sub & SC_OPT_DIFFERENTIAL) && (out->sub & SC_OPT_PLEX)),
			     "set option: differential and plex exclude each other");
		} else if (is(w[1], "provider")) {
			NEED(n == 3 && w[2][0], "usage: set provider NAME|auto");
			NEED(!p->created, "set provider must come before create");
			out->op = SC_SET_PROVIDER;
			out->arg[0] = strdup(w[2]);
		} else {
			NEED(0, "set %s: unknown setting (context, verbose, metadata, option, provider)",
			     w[1]);
		}
	} else if (is(c0, "writer")) {
		NEED(n == 3 && (is(w[1], "verify") || is(w[1], "exclude")),
		     "usage: writer verify|exclude NAME|{ID}|NAME/COMPONENT");
		NEED(!p->created, "writer %s after create: the writers are already chosen "
		     "(reset first)", w[1]);
		NEED(!p->nowriters, "writer %s with set context ... nowriters: no writer takes part",
		     w[1]);
		NEED(strlen(w[2]) < 256, "writer name too long");
		NEED(w[2][0] && w[2][0] != '/', "writer %s '%s': expected a writer name or id", w[1],
		     w[2]);
		out->op = is(w[1], "verify") ? SC_WRITER_VERIFY : SC_WRITER_EXCLUDE;
		out->arg[0] = strdup(w[2]);
	} else if (is(c0, "begin") || is(c0, "end")) {
		bool begin = is(c0, "begin");
		NEED(n == 2 && (is(w[1], "backup") || is(w[1], "restore")),
		     "usage: %s backup|restore", begin ? "begin" : "end");
		bool backup = is(w[1], "backup");
		if (begin && backup) {
			NEED(!p->in_backup, "begin backup twice (the first is on line %u)", p->begin_line);
			NEED(!p->in_restore, "begin backup inside begin restore ... end restore");
			/* after end backup a new set begins; before, create made a
			 * copy backup of this one */
			NEED(!p->created || p->backup_ended, "begin backup after create: the set is "
			     "already a copy backup (reset first)");
			out->op = SC_BEGIN_BACKUP;
			np.in_backup = true;
			np.begin_line = lineno;
		} else if (backup) {
			NEED(p->in_backup, "end backup without begin backup");
			NEED(p->created, "end backup before create: there is no shadow copy set to "
			     "complete");
			out->op = SC_END_BACKUP;
			np.in_backup = false;
			np.backup_ended = true;
		} else if (begin) {
			NEED(!p->in_restore, "begin restore twice");
			NEED(!p->in_backup && !p->created, "begin restore inside a backup (end backup "
			     "or reset first)");
			out->op = SC_BEGIN_RESTORE;
			np.in_restore = true;
		} else {
			NEED(p->in_restore, "end restore without begin restore");
			out->op = SC_END_RESTORE;
			np.in_restore = false;
		}
	} else if (is(c0, "add")) {
		NEED(!(n >= 2 && is(w[1], "alias")), "add alias: not supported (name the shadow "
		     "with add volume PATH alias NAME)");
		NEED(n >= 2 && is(w[1], "volume"), "usage: add volume PATH [alias NAME] "
		     "[provider NAME]");
		NEED(n >= 3, "usage: add volume PATH [alias NAME] [provider NAME]");
		NEED(!p->created, "add volume after create: this set is already taken (reset "
		     "first, or end backup and begin another)");
		NEED(!p->in_restore, "add volume inside begin restore ... end restore");
		NEED(!has_ref(w[2]), "add volume '%s': the volume must be a plain path", w[2]);
		if ((rc = check_path(p, w[2], "volume", lineno, err, errlen)) != 0)
			goto out;
		NEED(strlen(w[2]) < 4096, "volume path too long");
		out->op = SC_ADD_VOLUME;
		out->arg[0] = strdup(w[2]);
		if (out->arg[0])
			strip_slashes(out->arg[0]);
		for (size_t i = 3; i < n; i += 2) {
			NEED(i + 1 < n, "add volume %s %s: %s needs a value", w[2], w[i], w[i]);
			if (is(w[i], "alias")) {
				NEED(!out->arg[1], "add volume: alias given twice");
				NEED(sc_alias_name_ok(w[i + 1]), "alias '%s': an alias is a letter or _ "
				     "followed by letters, digits or _ (at most %d)", w[i + 1], SC_NAME_MAX);
				for (size_t a = 0; a < p->n_aliases; a++)
					NEED(strcasecmp(p->aliases[a], w[i + 1]) != 0, "alias %s is already "
					     "defined", w[i + 1]);
				for (size_t b = 0; b < sizeof(builtins) / sizeof(builtins[0]); b++)
					NEED(strcasecmp(builtins[b], w[i + 1]) != 0, "alias %s: that name is "
					     "reserved", w[i + 1]);
				out->arg[1] = strdup(w[i + 1]);
				want_alias = true;
			} else if (is(w[i], "provider")) {
				NEED(!out->arg[2], "add volume: provider given twice");
				out->arg[2] = strdup(w[i + 1]);
			} else {
				NEED(0, "add volume %s: unexpected '%s' (alias NAME, provider NAME)", w[2],
				     w[i]);
			}
		}
		NEED(p->n_vols < SC_MAX_ALIASES, "too many volumes in one set (at most %d)",
		     SC_MAX_ALIASES);
		for (size_t v = 0; out->arg[0] && v < p->n_vols; v++)
			NEED(strcmp(p->vols[v], out->arg[0]) != 0, "volume %s added twice", out->arg[0]);
		newvol = out->arg[0] ? strdup(out->arg[0]) : NULL;
		NEED(newvol, "out of memory");
		np.vols[np.n_vols++] = newvol;
		if (out->arg[1])
			snprintf(np.aliases[np.n_aliases++], SC_NAME_MAX + 1, "%s", out->arg[1]);
	} else if (is(c0, "create")) {
		NEED(n == 1, "usage: create (it takes no arguments)");
		NEED(!p->created, "create twice in one set (reset, or end backup, first)");
		NEED(!p->in_restore, "create inside begin restore ... end restore");
		NEED(p->n_vols > 0, "create without add volume: nothing to shadow");
		out->op = SC_CREATE;
		np.created = true;
	} else if (is(c0, "expose")) {
		NEED(n == 3, "usage: expose %%ALIAS%%|ID PATH");
		if ((rc = check_id(p, w[1], "expose", lineno, err, errlen)) != 0 ||
		    (rc = check_path(p, w[2], "expose target", lineno, err, errlen)) != 0)
			goto out;
		/* an alias of this set while the context is volatile */
		if (w[1][0] == '%' && !p->persistent) {
			for (size_t a = 0; a < p->n_aliases; a++) {
				size_t l = strlen(p->aliases[a]);
				NEED(!(strncmp(w[1] + 1, p->aliases[a], l) == 0 && w[1][l + 1] == '%' &&
				       w[1][l + 2] == '\0'), "expose %s: a volatile shadow cannot be "
				     "exposed (set context persistent before create)", w[1]);
			}
		}
		out->op = SC_EXPOSE;
		out->arg[0] = strdup(w[1]);
		out->arg[1] = strdup(w[2]);
	} else if (is(c0, "unexpose")) {
		NEED(n == 2, "usage: unexpose PATH");
		if ((rc = check_path(p, w[1], "unexpose", lineno, err, errlen)) != 0)
			goto out;
		out->op = SC_UNEXPOSE;
		out->arg[0] = strdup(w[1]);
	} else if (is(c0, "exec")) {
		NEED(n >= 2, "usage: exec COMMAND [ARG]...");
		for (size_t i = 1; i < n; i++)
			if ((rc = check_refs(p, w[i], lineno, err, errlen)) != 0)
				goto out;
		out->op = SC_EXEC;
		out->argv = calloc(n, sizeof(char *));
		NEED(out->argv, "out of memory");
		for (size_t i = 1; i < n; i++) {
			out->argv[i - 1] = w[i];
			w[i] = NULL;
			out->argc++;
		}
	} else if (is(c0, "delete")) {
		NEED(n >= 3 && is(w[1], "shadows"), "usage: delete shadows all|set ID|id ID|"
		     "exposed PATH|oldest PATH");
		out->op = SC_DELETE_SHADOWS;
		if (is(w[2], "all")) {
			NEED(n == 3, "usage: delete shadows all");
			out->sub = SC_DEL_ALL;
		} else if (is(w[2], "set") || is(w[2], "id")) {
			NEED(n == 4, "usage: delete shadows %s ID", w[2]);
			if ((rc = check_id(p, w[3], "delete shadows", lineno, err, errlen)) != 0)
				goto out;
			out->sub = is(w[2], "set") ? SC_DEL_SET : SC_DEL_ID;
			out->arg[0] = strdup(w[3]);
		} else if (is(w[2], "exposed") || is(w[2], "oldest")) {
			NEED(n == 4, "usage: delete shadows %s PATH", w[2]);
			if ((rc = check_path(p, w[3], "delete shadows", lineno, err, errlen)) != 0)
				goto out;
			out->sub = is(w[2], "exposed") ? SC_DEL_EXPOSED : SC_DEL_OLDEST;
			out->arg[0] = strdup(w[3]);
		} else {
			NEED(0, "delete shadows %s: expected all, set ID, id ID, exposed PATH or "
			     "oldest PATH", w[2]);
		}
	} else if (is(c0, "list")) {
		NEED(n >= 2, "usage: list writers|shadows|providers");
		if (is(w[1], "writers")) {
			NEED(n <= 3, "usage: list writers [metadata|status|detailed]");
			out->op = SC_LIST_WRITERS;
			if (n == 3) {
				if (is(w[2], "metadata"))
					out->sub = SC_LW_METADATA;
				else if (is(w[2], "status"))
					out->sub = SC_LW_STATUS;
				else if (is(w[2], "detailed"))
					out->sub = SC_LW_DETAILED;
				else
					NEED(0, "list writers %s: expected metadata, status or detailed", w[2]);
			}
		} else if (is(w[1], "shadows")) {
			out->op = SC_LIST_SHADOWS;
			if (n == 2 || (n == 3 && is(w[2], "all"))) {
				out->sub = SC_LS_ALL;
			} else {
				NEED(n == 4 && (is(w[2], "set") || is(w[2], "id")),
				     "usage: list shadows [all|set ID|id ID]");
				if ((rc = check_id(p, w[3], "list shadows", lineno, err, errlen)) != 0)
					goto out;
				out->sub = is(w[2], "set") ? SC_LS_SET : SC_LS_ID;
				out->arg[0] = strdup(w[3]);
			}
		} else if (is(w[1], "providers")) {
			NEED(n == 2, "usage: list providers");
			out->op = SC_LIST_PROVIDERS;
		} else {
			NEED(0, "list %s: expected writers, shadows or providers", w[1]);
		}
	} else if (is(c0, "load")) {
		NEED(n == 3 && is(w[1], "metadata"), "usage: load metadata FILE");
		NEED(!p->in_backup && !p->created, "load metadata inside a backup (end backup or "
		     "reset first)");
		if ((rc = check_path(p, w[2], "metadata file", lineno, err, errlen)) != 0)
			goto out;
		out->op = SC_LOAD_METADATA;
		out->arg[0] = strdup(w[2]);
	} else if (is(c0, "reset")) {
		NEED(n == 1, "usage: reset (it takes no arguments)");
		out->op = SC_RESET;
	} else if (is(c0, "exit")) {
		NEED(n == 1, "usage: exit (it takes no arguments)");
		out->op = SC_EXIT;
		np.exited = true;
	} else if (is(c0, "import") || is(c0, "mask") || is(c0, "break") || is(c0, "revert") ||
	           is(c0, "resync")) {
		NEED(0, "%s: not supported by amber (transportable and hardware shadows, and "
		     "reverting a volume, have no Linux counterpart here)", c0);
	} else {
		NEED(0, "unknown command '%s' (see amber script --help)", c0);
	}
	/* every strdup above must have worked */
	NEED(!needs_arg0(out->op) || out->arg[0], "out of memory");
	NEED(!(out->op == SC_ADD_VOLUME && want_alias && !out->arg[1]), "out of memory");
	NEED(!(out->op == SC_EXPOSE && !out->arg[1]), "out of memory");
	NEED(!(((out->op == SC_DELETE_SHADOWS && out->sub != SC_DEL_ALL) ||
	        (out->op == SC_LIST_SHADOWS && out->sub != SC_LS_ALL)) && !out->arg[0]),
	     "out of memory");
	if (out->op == SC_RESET) {
		bool ex = p->exited;
		parser_reset_set(p);
		sc_parser_init(p);
		p->exited = ex;
	} else if (out->op == SC_BEGIN_BACKUP && p->backup_ended) {
		/* the ended set's names go; context and options stay */
		parser_reset_set(p);
		p->in_backup = true;
		p->begin_line = lineno;
	} else {
		*p = np;
	}
	newvol = NULL;
	rc = 0;
out:
	if (rc) {
		free(newvol);
		sc_cmd_free(out);
		out->line = lineno;
	}
	words_free(&ws);
	return rc;
}

int sc_parse_text(const char *text, size_t len, sc_script *s, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	sc_parser p;
	sc_parser_init(&p);
	char *line = malloc(SC_LINE_MAX + 2);
	size_t cap = 0;
	int rc = 0;
	unsigned lineno = 0;
	if (!line) {
		snprintf(err, errlen, "0: out of memory");
		return -1;
	}
	size_t i = 0;
	while (i < len) {
		lineno++;
		size_t k = 0;
		while (i < len && text[i] != '\n') {
			if (text[i] == '\0') {
				rc = fail(err, errlen, lineno, "a NUL byte: this is not a text file");
				goto out;
			}
			if (k > SC_LINE_MAX) {
				rc = fail(err, errlen, lineno, "line longer than %d bytes", SC_LINE_MAX);
				goto out;
			}
			line[k++] = text[i++];
		}
		if (i < len)
			i++; /* the newline */
		line[k] = '\0';
		sc_cmd c;
		if ((rc = sc_parse_line(&p, line, lineno, &c, err, errlen)) != 0)
			goto out;
		if (c.op == SC_NONE)
			continue;
		if (s->n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			sc_cmd *v = realloc(s->cmds, nc * sizeof(*v));
			if (!v) {
				sc_cmd_free(&c);
				rc = fail(err, errlen, lineno, "out of memory");
				goto out;
			}
			s->cmds = v;
			cap = nc;
		}
		s->cmds[s->n++] = c;
	}
	if (p.in_backup && !p.exited)
		snprintf(s->warn, sizeof(s->warn), "%u: begin backup has no end backup: the "
		         "backup will not be recorded and no log will be truncated", p.begin_line);
	if (p.in_restore)
		rc = fail(err, errlen, lineno, "begin restore has no end restore: the writers would "
		          "stay dismounted");
out:
	free(line);
	sc_parser_free(&p);
	if (rc)
		sc_script_free(s);
	return rc;
}

void sc_script_free(sc_script *s)
{
	for (size_t i = 0; i < s->n; i++)
		sc_cmd_free(&s->cmds[i]);
	free(s->cmds);
	memset(s, 0, sizeof(*s));
}

char *sc_expand(const char *in, const char *(*lookup)(const char *name, void *ctx), void *ctx,
                char *err, size_t errlen)
{
	size_t cap = strlen(in) + 1, n = 0;
	char *out = malloc(cap);
	if (!out) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (const char *s = in; *s;) {
		const char *add = s;
		size_t addn = 1;
		if (*s == '%') {
			if (s[1] == '%') {
				s += 2;
			} else {
				const char *e = strchr(s + 1, '%');
				char name[SC_NAME_MAX + 1];
				size_t l = e ? (size_t)(e - s - 1) : 0;
				if (!e || l == 0 || l > SC_NAME_MAX) {
					snprintf(err, errlen, "'%s': bad %%NAME%% reference", in);
					free(out);
					return NULL;
				}
				memcpy(name, s + 1, l);
				name[l] = '\0';
				add = lookup(name, ctx);
				if (!add) {
					snprintf(err, errlen, "%%%s%% is not defined here", name);
					free(out);
					return NULL;
				}
				addn = strlen(add);
				s = e + 1;
			}
		} else {
			s++;
		}
		if (n + addn + 1 > cap) {
			size_t nc = (n + addn + 1) * 2;
			char *v = realloc(out, nc);
			if (!v) {
				free(out);
				snprintf(err, errlen, "out of memory");
				return NULL;
			}
			out = v;
			cap = nc;
		}
		memcpy(out + n, add, addn);
		n += addn;
	}
	out[n] = '\0';
	return out;
}

/* Quote a word for sc_cmd_text when it needs it. */
static void put_word(char *buf, size_t n, size_t *at, const char *w)
{
	bool q = !*w || strpbrk(w, " \t\"'#\\") != NULL;
	size_t k = *at;
	if (k && k < n)
		buf[k++] = ' ';
	if (q && k < n)
		buf[k++] = '"';
	for (; *w && k < n; w++) {
		if (q && (*w == '"' || *w == '\\') && k + 1 < n)
			buf[k++] = '\\';
		buf[k++] = *w;
	}
	if (q && k < n)
		buf[k++] = '"';
	if (k >= n)
		k = n - 1;
	buf[k] = '\0';
	*at = k;
}

const char *sc_cmd_text(const sc_cmd *c, char *buf, size_t n)
{
	size_t at = 0;
	buf[0] = '\0';
	static const char *const lw[] = { "", "metadata", "status", "detailed" };
	static const char *const del[] = { "", "all", "set", "id", "exposed", "oldest" };
	static const char *const ls[] = { "all", "set", "id" };
#define W(x) put_word(buf, n, &at, (x))
	switch (c->op) {
	case SC_NONE: break;
	case SC_SET_CONTEXT:
		W("set"); W("context"); W(c->sub == SC_CTX_PERSISTENT ? "persistent" : "volatile");
		if (c->flag)
			W("nowriters");
		break;
	case SC_SET_VERBOSE: W("set"); W("verbose"); W(c->flag ? "on" : "off"); break;
	case SC_SET_METADATA: W("set"); W("metadata"); W(c->arg[0]); break;
	case SC_SET_OPTION:
		W("set"); W("option");
		if (c->sub & SC_OPT_DIFFERENTIAL) W("differential");
		if (c->sub & SC_OPT_PLEX) W("plex");
		if (c->sub & SC_OPT_NOAUTORECOVER) W("noautorecover");
		break;
	case SC_SET_PROVIDER: W("set"); W("provider"); W(c->arg[0]); break;
	case SC_WRITER_VERIFY: W("writer"); W("verify"); W(c->arg[0]); break;
	case SC_WRITER_EXCLUDE: W("writer"); W("exclude"); W(c->arg[0]); break;
	case SC_BEGIN_BACKUP: W("begin"); W("backup"); break;
	case SC_END_BACKUP: W("end"); W("backup"); break;
	case SC_BEGIN_RESTORE: W("begin"); W("restore"); break;
	case SC_END_RESTORE: W("end"); W("restore"); break;
	case SC_ADD_VOLUME:
		W("add"); W("volume"); W(c->arg[0]);
		if (c->arg[1]) { W("alias"); W(c->arg[1]); }
		if (c->arg[2]) { W("provider"); W(c->arg[2]); }
		break;
	case SC_CREATE: W("create"); break;
	case SC_EXPOSE: W("expose"); W(c->arg[0]); W(c->arg[1]); break;
	case SC_UNEXPOSE: W("unexpose"); W(c->arg[0]); break;
	case SC_EXEC:
		W("exec");
		for (size_t i = 0; i < c->argc; i++)
			W(c->argv[i]);
		break;
	case SC_DELETE_SHADOWS:
		W("delete"); W("shadows"); W(del[c->sub]);
		if (c->arg[0]) W(c->arg[0]);
		break;
	case SC_LIST_WRITERS: W("list"); W("writers"); if (c->sub) W(lw[c->sub]); break;
	case SC_LIST_SHADOWS: W("list"); W("shadows"); W(ls[c->sub]); if (c->arg[0]) W(c->arg[0]); break;
	case SC_LIST_PROVIDERS: W("list"); W("providers"); break;
	case SC_LOAD_METADATA: W("load"); W("metadata"); W(c->arg[0]); break;
	case SC_RESET: W("reset"); break;
	case SC_EXIT: W("exit"); break;
	}
#undef W
	return buf;
}

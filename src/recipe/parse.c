/* The recipe file parser: lines, sections and keys.
 *
 * inih splits "key = value" lines; everything it cannot tell us (line numbers: Debian builds it
 * without INI_HANDLER_LINENO; untruncated section names: it keeps 50 bytes; sections without keys)
 * comes from our own reader, which hands inih one whole line at a time and classifies that line
 * exactly the way inih is about to. So when the handler runs, ctx->lineno is its line. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "recipe-int.h"

int recipe_perr(struct parse_ctx *c, int line, const char *fmt, ...)
{
	if (c->failed)
		return -1;
	char msg[1536];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	c->failed = true;
	if (line > 0)
		return pyti_err_usage(c->err, "%s:%d: %s", c->src, line, msg);
	return pyti_err_usage(c->err, "%s: %s", c->src, msg);
}

static void strv_push(char ***v, size_t *n, const char *s)
{
	*v = xrealloc(*v, (*n + 1) * sizeof **v);
	(*v)[(*n)++] = xstrdup(s);
}

static bool valid_task_name(const char *s)
{
	if (!*s || strlen(s) > 64 || s[0] == '.' || s[0] == '-')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
			return false;
	return true;
}

static bool valid_env_key(const char *s, size_t n)
{
	if (!n || isdigit((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

/* ---- sections, from the reader ---- */

static struct recipe_task *cur_task(struct parse_ctx *c)
{
	return &c->r->tasks[c->r->n_tasks - 1];
}

static void begin_section(struct parse_ctx *c, const char *name, size_t n)
{
	free(c->sec_name);
	c->sec_name = xasprintf("%.*s", (int)n, name);
	c->keys_seen = 0;
	c->cur_key = 0;
	/* trim spaces inside the brackets: "[ task: test ]" */
	char *s = c->sec_name, *e = s + strlen(s);
	while (*s == ' ' || *s == '\t')
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	memmove(c->sec_name, s, strlen(s) + 1);
	s = c->sec_name;

	if (strcmp(s, "recipe") == 0) {
		if (c->recipe_line) {
			recipe_perr(c, c->lineno, "duplicate section [recipe] (first at line %d)", c->recipe_line);
			return;
		}
		c->recipe_line = c->lineno;
		c->sec = SEC_RECIPE;
		return;
	}
	if (strncmp(s, "task:", 5) == 0) {
		const char *tn = s + 5;
		while (*tn == ' ' || *tn == '\t')
			tn++;
		if (!valid_task_name(tn)) {
			recipe_perr(c, c->lineno, "bad task name '%s' in [%s] (letters, digits, '.', '_', '-'; at most 64)",
			     tn, s);
			return;
		}
		const struct recipe_task *dup = recipe_find_task(c->r, tn);
		if (dup) {
			recipe_perr(c, c->lineno, "duplicate task '%s' (first defined at line %d)", tn, dup->line);
			return;
		}
		if (c->r->n_tasks >= RECIPE_MAX_TASKS) {
			recipe_perr(c, c->lineno, "too many tasks (at most %d)", RECIPE_MAX_TASKS);
			return;
		}
		if (c->r->n_tasks == c->cap_tasks) {
			c->cap_tasks = c->cap_tasks ? 2 * c->cap_tasks : 8;
			c->r->tasks = xrealloc(c->r->tasks, c->cap_tasks * sizeof *c->r->tasks);
			c->needs_line = xrealloc(c->needs_line, c->cap_tasks * sizeof *c->needs_line);
		}
		struct recipe_task *t = &c->r->tasks[c->r->n_tasks];
		memset(t, 0, sizeof *t);
		c->needs_line[c->r->n_tasks] = 0;
		c->r->n_tasks++;
		t->name = xstrdup(tn);
		t->line = c->lineno;
		t->output_limit = RECIPE_DEFAULT_OUTPUT_LIMIT;
		c->sec = SEC_TASK;
		return;
	}
	recipe_perr(c, c->lineno, "unknown section [%s] (expected [recipe] or [task:NAME])", s);
}

/* fgets-like: exactly one line per call, so that line numbers are ours to count. */
char *recipe_ini_reader(char *str, int num, void *stream)
{
	struct parse_ctx *c = stream;
	if (c->failed || c->pos >= c->len)
		return NULL;
	const char *p = c->data + c->pos;
	size_t rest = c->len - c->pos;
	const char *nl = memchr(p, '\n', rest);
	size_t n = nl ? (size_t)(nl - p) + 1 : rest;
	c->lineno++;
	if (memchr(p, '\0', n)) {
		recipe_perr(c, c->lineno, "NUL byte in recipe");
		return NULL;
	}
	/* A recipe is UTF-8 text: say so here, with the line, rather than let a bad byte in a name
	 * or command surface after the fetch as a JSON error (job.json, results are UTF-8). */
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq((const unsigned char *)p + i, n - i);
		if (!k) {
			recipe_perr(c, c->lineno, "invalid UTF-8 (byte 0x%02x at column %zu); a recipe is UTF-8 text",
			     (unsigned char)p[i], i + 1);
			return NULL;
		}
		i += k;
	}
	if (n + 1 > (size_t)num || n > RECIPE_MAX_LINE - 3) {
		recipe_perr(c, c->lineno, "line too long (more than %d bytes)", RECIPE_MAX_LINE - 3);
		return NULL;
	}
	memcpy(str, p, n);
	str[n] = '\0';
	c->pos += n;

	/* classify as inih will (ini.c: lskip(rstrip(line)), comment, continuation, section, key) */
	const char *s = str;
	if (c->lineno == 1 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB &&
	    (unsigned char)s[2] == 0xBF)
		s += 3;
	const char *line0 = s;
	while (*s && isspace((unsigned char)*s))
		s++;
	size_t len = strlen(s);
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	if (!len || *s == ';' || *s == '#') {
		c->kind = LK_BLANK;
	} else if (c->have_prev_key && s > line0) {
		c->kind = LK_CONT;
	} else if (*s == '[') {
		const char *e = memchr(s, ']', len);
		if (!e) {
			recipe_perr(c, c->lineno, "section header without ']'");
			return NULL;
		}
		c->kind = LK_SECTION;
		c->have_prev_key = false;
		begin_section(c, s + 1, (size_t)(e - s - 1));
		if (c->failed)
			return NULL;
	} else {
		const char *e = s;
		while (e < s + len && *e != '=' && *e != ':')
			e++;
		if (e == s + len) {
			recipe_perr(c, c->lineno, "expected 'key = value', '[section]' or a comment");
			return NULL;
		}
		const char *ke = e;
		while (ke > s && isspace((unsigned char)ke[-1]))
			ke--;
		if (ke == s) {
			recipe_perr(c, c->lineno, "empty key");
			return NULL;
		}
		c->kind = LK_KEY;
		c->have_prev_key = true;
	}
	return str;
}

/* ---- keys, from inih's handler ---- */

static void split_list(struct parse_ctx *c, const char *v, char ***out, size_t *n, bool spaces)
{
	/* Separators: ',' (outside [...] so "pkg[a,b]" stays one), and whitespace for `needs`. */
	size_t i = 0, len = strlen(v);
	while (i < len) {
		while (i < len && (v[i] == ',' || isspace((unsigned char)v[i])))
			i++;
		size_t st = i;
		int depth = 0;
		while (i < len) {
			if (v[i] == '[')
				depth++;
			else if (v[i] == ']' && depth)
				depth--;
			else if (!depth && (v[i] == ',' || (spaces && isspace((unsigned char)v[i]))))
				break;
			i++;
		}
		size_t e = i;
		while (e > st && isspace((unsigned char)v[e - 1]))
			e--;
		if (e == st)
			continue;
		if (*n >= RECIPE_MAX_LIST) {
			recipe_perr(c, c->lineno, "too many entries");
			return;
		}
		_cleanup_free_ char *item = xasprintf("%.*s", (int)(e - st), v + st);
		bool dup = false;
		for (size_t k = 0; k < *n; k++)
			dup |= strcmp((*out)[k], item) == 0;
		if (!dup)
			strv_push(out, n, item);
	}
}

static void check_placeholders(struct parse_ctx *c, const char *key, const char *v)
{
	struct pyti_err e = {0};
	if (recipe_check_placeholders(v, &e) < 0)
		recipe_perr(c, c->lineno, "%s in '%s' of [%s]", e.msg, key, c->sec_name);
}

static void set_str(struct parse_ctx *c, char **dst, const char *v, const char *sep)
{
	if (c->kind == LK_CONT && *dst) {
		char *n = xasprintf("%s%s%s", *dst, sep, v);
		free(*dst);
		*dst = n;
	} else {
		free(*dst);
		*dst = xstrdup(v);
	}
}

static void add_env(struct parse_ctx *c, struct recipe_task *t, const char *v)
{
	const char *eq = strchr(v, '=');
	if (!eq || !valid_env_key(v, (size_t)(eq - v))) {
		recipe_perr(c, c->lineno, "bad value for 'env' in [%s]: expected KEY=VALUE, got '%s'", c->sec_name, v);
		return;
	}
	size_t kl = (size_t)(eq - v);
	for (size_t i = 0; i < t->n_env; i++)
		if (strncmp(t->env[i], v, kl) == 0 && t->env[i][kl] == '=') {
			recipe_perr(c, c->lineno, "duplicate env variable '%.*s' in [%s]", (int)kl, v, c->sec_name);
			return;
		}
	if (t->n_env >= RECIPE_MAX_LIST) {
		recipe_perr(c, c->lineno, "too many env entries in [%s]", c->sec_name);
		return;
	}
	check_placeholders(c, "env", eq + 1);
	strv_push(&t->env, &t->n_env, v);
}

static void task_key(struct parse_ctx *c, unsigned bit, const char *key, const char *v)
{
	struct recipe_task *t = cur_task(c);
	uint64_t *num = NULL;
	bool bytes = false;
	switch (bit) {
	case K_RUN:
		if (!*v && c->kind == LK_KEY) {
			recipe_perr(c, c->lineno, "empty 'run' in [%s]", c->sec_name);
			return;
		}
		check_placeholders(c, key, v);
		set_str(c, &t->run, v, "\n");
		return;
	case K_DESCRIPTION:
		set_str(c, &t->description, v, " ");
		return;
	case K_NEEDS:
		if (c->kind == LK_KEY)
			c->needs_line[c->r->n_tasks - 1] = c->lineno;
		split_list(c, v, &t->needs, &t->n_needs, true);
		return;
	case K_ENV:
		if (*v || c->kind == LK_CONT)
			add_env(c, t, v);
		return;
	case K_CWD:
		if (v[0] != '/' && v[0] != '{') {
			recipe_perr(c, c->lineno, "bad value for 'cwd' in [%s]: '%s' is not an absolute path", c->sec_name, v);
			return;
		}
		check_placeholders(c, key, v);
		set_str(c, &t->cwd, v, "");
		return;
	case K_JUNIT: {
		const char *p = v;
		if (strncmp(p, "/io/", 4) == 0)
			p += 4;
		if (!path_is_safe_rel(p) || strncmp(p, "out/", 4) != 0 || !p[4]) {
			recipe_perr(c, c->lineno,
			     "bad value for 'junit' in [%s]: '%s' is not a path under /io/out (e.g. out/junit-%s.xml)",
			     c->sec_name, v, t->name);
			return;
		}
		set_str(c, &t->junit, p, "");
		return;
	}
	case K_TIMEOUT: num = &t->timeout; break;
	case K_NOOUT: num = &t->no_output_timeout; break;
	case K_MEMORY: num = &t->memory; bytes = true; break;
	case K_OUTLIMIT: num = &t->output_limit; bytes = true; break;
	case K_PIDS: num = &t->pids; break;
	default: return;
	}
	int r;
	if (bit == K_PIDS) {
		/* a count: no unit suffixes */
		char *end;
		errno = 0;
		unsigned long long x = strtoull(v, &end, 10);
		r = (!isdigit((unsigned char)v[0]) || *end || errno || x > INT64_MAX) ? -1 : 0;
		if (!r)
			*num = x;
	} else {
		r = bytes ? recipe_parse_bytes(v, num) : recipe_parse_duration(v, num);
	}
	if (r < 0)
		recipe_perr(c, c->lineno, "bad value for '%s' in [%s]: '%s' (expected %s)", key, c->sec_name, v,
		     bit == K_PIDS ? "a count" : bytes ? "bytes, e.g. 512M or 2G" : "seconds, e.g. 300, 5m or 1h");
}

static const struct {
	const char *name;
	unsigned bit;
	bool task;         /* valid in [task:NAME] (else [recipe]) */
	bool multiline;    /* continuation lines allowed */
} keys[] = {
	{"name", K_NAME, false, false},          {"description", K_DESCRIPTION, false, true},
	{"requires", K_REQUIRES, false, true},   {"description", K_DESCRIPTION, true, true},
	{"run", K_RUN, true, true},              {"needs", K_NEEDS, true, true},
	{"cwd", K_CWD, true, false},             {"timeout", K_TIMEOUT, true, false},
	{"no_output_timeout", K_NOOUT, true, false}, {"memory", K_MEMORY, true, false},
	{"pids", K_PIDS, true, false},           {"output_limit", K_OUTLIMIT, true, false},
	{"env", K_ENV, true, true},              {"junit", K_JUNIT, true, false},
	{"tmpfs", K_TMPFS, false, false},        {"io_limit", K_IOLIMIT, false, false},
	{"test_from", K_TESTFROM, false, false},
};

int recipe_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	(void)section; /* inih truncates it; ours is c->sec_name */
	struct parse_ctx *c = user;
	if (c->failed)
		return 0;
	if (c->sec == SEC_NONE) {
		recipe_perr(c, c->lineno, "key '%s' outside a section (start with [recipe] or [task:NAME])", name);
		return 0;
	}
	bool in_task = c->sec == SEC_TASK;
	unsigned bit = 0;
	bool multi = false;
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (keys[i].task == in_task && strcmp(keys[i].name, name) == 0) {
			bit = keys[i].bit;
			multi = keys[i].multiline;
		}
	if (!bit) {
		recipe_perr(c, c->lineno, "unknown key '%s' in [%s]", name, c->sec_name);
		return 0;
	}
	if (c->kind == LK_CONT) {
		if (!multi) {
			recipe_perr(c, c->lineno, "'%s' in [%s] takes a single line (indented line continues it)", name,
			     c->sec_name);
			return 0;
		}
	} else {
		if ((c->keys_seen & bit) && bit != K_ENV) {
			recipe_perr(c, c->lineno, "duplicate key '%s' in [%s]", name, c->sec_name);
			return 0;
		}
		c->keys_seen |= bit;
	}
	if (in_task) {
		task_key(c, bit, name, value);
	} else if (bit == K_NAME) {
		if (!*value) {
			recipe_perr(c, c->lineno, "empty 'name' in [recipe]");
			return 0;
		}
		set_str(c, &c->r->name, value, "");
	} else if (bit == K_DESCRIPTION) {
		set_str(c, &c->r->description, value, " ");
	} else if (bit == K_REQUIRES) {
		split_list(c, value, &c->r->requires, &c->r->n_requires, false);
	} else if (bit == K_IOLIMIT) {
		if (recipe_parse_bytes(value, &c->r->io_limit) < 0 || c->r->io_limit < RECIPE_MIN_TMPFS)
			recipe_perr(c, c->lineno, "bad value for 'io_limit' in [recipe]: '%s' (expected bytes of at least "
					   "16M, e.g. 512M or 8G)", value);
	} else if (bit == K_TESTFROM) {
		/* where runtests.py runs the tests: against the install (a copy of the source without the
		 * installed modules) or in the unpacked source itself, as a checkout would */
		if (strcmp(value, "installed") == 0 || strcmp(value, "source") == 0)
			c->r->test_from_source = strcmp(value, "source") == 0;
		else
			recipe_perr(c, c->lineno, "bad value for 'test_from' in [recipe]: '%s' (expected installed or source)",
			     value);
	} else if (bit == K_TMPFS) {
		/* a floor so that the sandbox's own /run and a venv's first files still fit */
		if (recipe_parse_bytes(value, &c->r->tmpfs) < 0 || c->r->tmpfs < RECIPE_MIN_TMPFS)
			recipe_perr(c, c->lineno, "bad value for 'tmpfs' in [recipe]: '%s' (expected bytes of at least 16M, "
					   "e.g. 512M or 2G)", value);
	}
	return c->failed ? 0 : 1;
}

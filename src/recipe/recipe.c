/* Recipe parsing and validation.
 *
 * inih splits "key = value" lines; everything it cannot tell us (line numbers: Debian builds it
 * without INI_HANDLER_LINENO; untruncated section names: it keeps 50 bytes; sections without keys)
 * comes from our own reader, which hands inih one whole line at a time and classifies that line
 * exactly the way inih is about to. So when the handler runs, ctx->lineno is its line. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "recipe.h"

#define RECIPE_MAX_LINE 65536       /* longest line we accept */
#define RECIPE_MAX_SIZE (1u << 20)  /* largest recipe file */
#define RECIPE_MAX_TASKS 256
#define RECIPE_MAX_LIST 1024        /* needs/requires/env entries per task */

enum line_kind { LK_BLANK, LK_SECTION, LK_KEY, LK_CONT };
enum sec_kind { SEC_NONE, SEC_RECIPE, SEC_TASK };

/* Keys, with the bit used to catch duplicates inside one section. */
enum {
	K_NAME = 1u << 0, K_DESCRIPTION = 1u << 1, K_REQUIRES = 1u << 2, K_RUN = 1u << 3,
	K_NEEDS = 1u << 4, K_CWD = 1u << 5, K_TIMEOUT = 1u << 6, K_NOOUT = 1u << 7,
	K_MEMORY = 1u << 8, K_PIDS = 1u << 9, K_OUTLIMIT = 1u << 10, K_ENV = 1u << 11,
	K_JUNIT = 1u << 12, K_TMPFS = 1u << 13, K_IOLIMIT = 1u << 14, K_TESTFROM = 1u << 15,
};

struct parse_ctx {
	const char *src;
	const char *data;
	size_t len, pos;
	int lineno;
	enum line_kind kind;
	bool have_prev_key; /* mirrors inih's prev_name: continuation lines are possible */

	enum sec_kind sec;
	char *sec_name; /* full "[...]" text, for messages */
	unsigned keys_seen;
	unsigned cur_key; /* key bit of the last key line, for continuations */

	struct recipe *r;
	size_t cap_tasks;
	int *needs_line; /* per task: line of its needs key */
	int recipe_line;

	struct pyti_err *err;
	bool failed;
};

static int perr(struct parse_ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(struct parse_ctx *c, int line, const char *fmt, ...)
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

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void strv_push(char ***v, size_t *n, const char *s)
{
	*v = xrealloc(*v, (*n + 1) * sizeof **v);
	(*v)[(*n)++] = xstrdup(s);
}

static void task_clear(struct recipe_task *t)
{
	free(t->name);
	free(t->description);
	free(t->run);
	strv_free(t->needs, t->n_needs);
	free(t->cwd);
	strv_free(t->env, t->n_env);
	free(t->junit);
}

void recipe_free(struct recipe *r)
{
	if (!r)
		return;
	free(r->name);
	free(r->description);
	free(r->source);
	strv_free(r->requires, r->n_requires);
	for (size_t i = 0; i < r->n_tasks; i++)
		task_clear(&r->tasks[i]);
	free(r->tasks);
	free(r);
}

const struct recipe_task *recipe_find_task(const struct recipe *r, const char *name)
{
	for (size_t i = 0; r && i < r->n_tasks; i++)
		if (strcmp(r->tasks[i].name, name) == 0)
			return &r->tasks[i];
	return NULL;
}

/* ---- value parsers ---- */

static int parse_u64_suffix(const char *s, uint64_t *out, bool bytes)
{
	if (!s)
		return -1;
	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s))
		return -1;
	uint64_t v = 0;
	while (isdigit((unsigned char)*s)) {
		unsigned d = (unsigned)(*s++ - '0');
		if (v > ((uint64_t)INT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	while (isspace((unsigned char)*s))
		s++;
	uint64_t mul = 1;
	char u = (char)tolower((unsigned char)*s);
	if (bytes) {
		const char *units = "kmgt";
		const char *p = u ? strchr(units, u) : NULL;
		if (u == 'b' && !s[1]) {
			s++;
		} else if (p) {
			for (const char *q = units; q <= p; q++)
				mul *= 1024;
			s++;
			if (tolower((unsigned char)s[0]) == 'i' && tolower((unsigned char)s[1]) == 'b')
				s += 2;
			else if (tolower((unsigned char)s[0]) == 'b')
				s++;
		}
	} else {
		switch (u) {
		case 's': mul = 1; s++; break;
		case 'm': mul = 60; s++; break;
		case 'h': mul = 3600; s++; break;
		case 'd': mul = 86400; s++; break;
		default: break;
		}
	}
	while (isspace((unsigned char)*s))
		s++;
	if (*s)
		return -1;
	if (v && mul > (uint64_t)INT64_MAX / v)
		return -1;
	*out = v * mul;
	return 0;
}

int recipe_parse_duration(const char *s, uint64_t *out) { return parse_u64_suffix(s, out, false); }
int recipe_parse_bytes(const char *s, uint64_t *out) { return parse_u64_suffix(s, out, true); }

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
			perr(c, c->lineno, "duplicate section [recipe] (first at line %d)", c->recipe_line);
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
			perr(c, c->lineno, "bad task name '%s' in [%s] (letters, digits, '.', '_', '-'; at most 64)",
			     tn, s);
			return;
		}
		const struct recipe_task *dup = recipe_find_task(c->r, tn);
		if (dup) {
			perr(c, c->lineno, "duplicate task '%s' (first defined at line %d)", tn, dup->line);
			return;
		}
		if (c->r->n_tasks >= RECIPE_MAX_TASKS) {
			perr(c, c->lineno, "too many tasks (at most %d)", RECIPE_MAX_TASKS);
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
	perr(c, c->lineno, "unknown section [%s] (expected [recipe] or [task:NAME])", s);
}

/* fgets-like: exactly one line per call, so that line numbers are ours to count. */
static char *ctx_reader(char *str, int num, void *stream)
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
		perr(c, c->lineno, "NUL byte in recipe");
		return NULL;
	}
	/* A recipe is UTF-8 text: say so here, with the line, rather than let a bad byte in a name
	 * or command surface after the fetch as a JSON error (job.json, results are UTF-8). */
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq((const unsigned char *)p + i, n - i);
		if (!k) {
			perr(c, c->lineno, "invalid UTF-8 (byte 0x%02x at column %zu); a recipe is UTF-8 text",
			     (unsigned char)p[i], i + 1);
			return NULL;
		}
		i += k;
	}
	if (n + 1 > (size_t)num || n > RECIPE_MAX_LINE - 3) {
		perr(c, c->lineno, "line too long (more than %d bytes)", RECIPE_MAX_LINE - 3);
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
			perr(c, c->lineno, "section header without ']'");
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
			perr(c, c->lineno, "expected 'key = value', '[section]' or a comment");
			return NULL;
		}
		const char *ke = e;
		while (ke > s && isspace((unsigned char)ke[-1]))
			ke--;
		if (ke == s) {
			perr(c, c->lineno, "empty key");
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
			perr(c, c->lineno, "too many entries");
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
		perr(c, c->lineno, "%s in '%s' of [%s]", e.msg, key, c->sec_name);
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
		perr(c, c->lineno, "bad value for 'env' in [%s]: expected KEY=VALUE, got '%s'", c->sec_name, v);
		return;
	}
	size_t kl = (size_t)(eq - v);
	for (size_t i = 0; i < t->n_env; i++)
		if (strncmp(t->env[i], v, kl) == 0 && t->env[i][kl] == '=') {
			perr(c, c->lineno, "duplicate env variable '%.*s' in [%s]", (int)kl, v, c->sec_name);
			return;
		}
	if (t->n_env >= RECIPE_MAX_LIST) {
		perr(c, c->lineno, "too many env entries in [%s]", c->sec_name);
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
			perr(c, c->lineno, "empty 'run' in [%s]", c->sec_name);
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
			perr(c, c->lineno, "bad value for 'cwd' in [%s]: '%s' is not an absolute path", c->sec_name, v);
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
			perr(c, c->lineno,
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
		perr(c, c->lineno, "bad value for '%s' in [%s]: '%s' (expected %s)", key, c->sec_name, v,
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

static int ini_handler_cb(void *user, const char *section, const char *name, const char *value)
{
	(void)section; /* inih truncates it; ours is c->sec_name */
	struct parse_ctx *c = user;
	if (c->failed)
		return 0;
	if (c->sec == SEC_NONE) {
		perr(c, c->lineno, "key '%s' outside a section (start with [recipe] or [task:NAME])", name);
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
		perr(c, c->lineno, "unknown key '%s' in [%s]", name, c->sec_name);
		return 0;
	}
	if (c->kind == LK_CONT) {
		if (!multi) {
			perr(c, c->lineno, "'%s' in [%s] takes a single line (indented line continues it)", name,
			     c->sec_name);
			return 0;
		}
	} else {
		if ((c->keys_seen & bit) && bit != K_ENV) {
			perr(c, c->lineno, "duplicate key '%s' in [%s]", name, c->sec_name);
			return 0;
		}
		c->keys_seen |= bit;
	}
	if (in_task) {
		task_key(c, bit, name, value);
	} else if (bit == K_NAME) {
		if (!*value) {
			perr(c, c->lineno, "empty 'name' in [recipe]");
			return 0;
		}
		set_str(c, &c->r->name, value, "");
	} else if (bit == K_DESCRIPTION) {
		set_str(c, &c->r->description, value, " ");
	} else if (bit == K_REQUIRES) {
		split_list(c, value, &c->r->requires, &c->r->n_requires, false);
	} else if (bit == K_IOLIMIT) {
		if (recipe_parse_bytes(value, &c->r->io_limit) < 0 || c->r->io_limit < RECIPE_MIN_TMPFS)
			perr(c, c->lineno, "bad value for 'io_limit' in [recipe]: '%s' (expected bytes of at least "
					   "16M, e.g. 512M or 8G)", value);
	} else if (bit == K_TESTFROM) {
		/* where runtests.py runs the tests: against the install (a copy of the source without the
		 * installed modules) or in the unpacked source itself, as a checkout would */
		if (strcmp(value, "installed") == 0 || strcmp(value, "source") == 0)
			c->r->test_from_source = strcmp(value, "source") == 0;
		else
			perr(c, c->lineno, "bad value for 'test_from' in [recipe]: '%s' (expected installed or source)",
			     value);
	} else if (bit == K_TMPFS) {
		/* a floor so that the sandbox's own /run and a venv's first files still fit */
		if (recipe_parse_bytes(value, &c->r->tmpfs) < 0 || c->r->tmpfs < RECIPE_MIN_TMPFS)
			perr(c, c->lineno, "bad value for 'tmpfs' in [recipe]: '%s' (expected bytes of at least 16M, "
					   "e.g. 512M or 2G)", value);
	}
	return c->failed ? 0 : 1;
}

/* ---- validation: needs, cycles, order ---- */

static int task_index(const struct recipe *r, const char *name)
{
	for (size_t i = 0; i < r->n_tasks; i++)
		if (strcmp(r->tasks[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Task indices of every need, so that ordering is not quadratic in string compares. */
struct need_idx {
	size_t *v;
	size_t n;
};

static void need_idx_free(struct need_idx *ni, size_t n)
{
	for (size_t i = 0; ni && i < n; i++)
		free(ni[i].v);
	free(ni);
}

static int order_tasks(struct parse_ctx *c, struct need_idx *ni)
{
	struct recipe *r = c->r;
	size_t n = r->n_tasks;
	/* Kahn's algorithm; the lowest file index among ready tasks goes first. */
	_cleanup_free_ bool *placed = xcalloc(n, sizeof *placed);
	_cleanup_free_ size_t *order = xcalloc(n, sizeof *order);
	size_t done = 0;
	while (done < n) {
		size_t pick = n;
		for (size_t i = 0; i < n && pick == n; i++) {
			if (placed[i])
				continue;
			bool ready = true;
			for (size_t k = 0; k < ni[i].n && ready; k++)
				ready = placed[ni[i].v[k]];
			if (ready)
				pick = i;
		}
		if (pick == n)
			break;
		placed[pick] = true;
		order[done++] = pick;
	}
	if (done < n) {
		/* Every unplaced task waits for an unplaced one: walk until a task repeats. */
		_cleanup_free_ size_t *seen_at = xcalloc(n, sizeof *seen_at); /* position+1 in path */
		_cleanup_free_ size_t *path = xcalloc(n + 1, sizeof *path);
		size_t cur = 0, len = 0;
		while (placed[cur])
			cur++;
		while (!seen_at[cur]) {
			seen_at[cur] = ++len;
			path[len - 1] = cur;
			for (size_t k = 0; k < ni[cur].n; k++)
				if (!placed[ni[cur].v[k]]) {
					cur = ni[cur].v[k];
					break;
				}
		}
		/* path[seen_at[cur]-1 .. len-1] is the cycle, each needing the next */
		_cleanup_buf_ struct buf b = BUF_INIT(1024);
		for (size_t i = seen_at[cur] - 1; i < len; i++)
			buf_printf(&b, "%s -> ", r->tasks[path[i]].name);
		buf_puts(&b, r->tasks[cur].name);
		return perr(c, r->tasks[cur].line, "dependency cycle: %s%s", b.data, b.truncated ? "..." : "");
	}
	struct recipe_task *sorted = xcalloc(n, sizeof *sorted);
	for (size_t i = 0; i < n; i++)
		sorted[i] = r->tasks[order[i]];
	free(r->tasks);
	r->tasks = sorted;
	return 0;
}

static int validate_and_order(struct parse_ctx *c)
{
	struct recipe *r = c->r;
	size_t n = r->n_tasks;
	if (!n)
		return perr(c, 0, "empty recipe: no [task:NAME] section");
	struct need_idx *ni = xcalloc(n, sizeof *ni);
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct recipe_task *t = &r->tasks[i];
		if (!t->run) {
			rc = perr(c, t->line, "[task:%s] has no 'run'", t->name);
			break;
		}
		ni[i].v = xcalloc(t->n_needs + 1, sizeof *ni[i].v);
		for (size_t k = 0; k < t->n_needs; k++) {
			int x = task_index(r, t->needs[k]);
			if (x < 0) {
				rc = perr(c, c->needs_line[i] ? c->needs_line[i] : t->line,
					  "[task:%s] needs unknown task '%s'", t->name, t->needs[k]);
				break;
			}
			ni[i].v[ni[i].n++] = (size_t)x;
		}
		if (!t->cwd)
			t->cwd = xstrdup(RECIPE_DEFAULT_CWD);
	}
	if (rc == 0)
		rc = order_tasks(c, ni);
	need_idx_free(ni, n);
	return rc;
}

static char *default_name(const char *src)
{
	const char *b = strrchr(src, '/');
	b = b ? b + 1 : src;
	size_t n = strlen(b);
	if (n > 4 && strcmp(b + n - 4, ".ini") == 0)
		n -= 4;
	return xasprintf("%.*s", (int)n, b);
}

/* The run-time switches Debian's inih has in place of compile-time options, as a table so that
 * they can be saved, set and put back in one loop each. */
static bool *const ini_bool_opts[] = {&ini_use_stack,	    &ini_allow_realloc,	  &ini_allow_inline_comments,
				      &ini_allow_multiline, &ini_allow_no_value, &ini_allow_bom,
				      &ini_stop_on_first_error};
static int *const ini_int_opts[] = {&ini_max_line, &ini_initial_alloc};
struct ini_globals {
	bool b[ARRAY_SIZE(ini_bool_opts)];
	int i[ARRAY_SIZE(ini_int_opts)];
};

static void ini_globals_swap(struct ini_globals *g)
{
	for (size_t k = 0; k < ARRAY_SIZE(ini_bool_opts); k++) {
		bool t = *ini_bool_opts[k];
		*ini_bool_opts[k] = g->b[k];
		g->b[k] = t;
	}
	for (size_t k = 0; k < ARRAY_SIZE(ini_int_opts); k++) {
		int t = *ini_int_opts[k];
		*ini_int_opts[k] = g->i[k];
		g->i[k] = t;
	}
}

int recipe_load_buffer(const char *source_name, const char *data, size_t len, struct recipe **out,
		       struct pyti_err *err)
{
	if (len > RECIPE_MAX_SIZE)
		return pyti_err_usage(err, "%s: recipe larger than %u bytes", source_name, RECIPE_MAX_SIZE);
	struct parse_ctx c = {.src = source_name, .data = data, .len = len, .err = err};
	c.r = xcalloc(1, sizeof *c.r);
	c.r->tmpfs = RECIPE_DEFAULT_TMPFS;
	c.r->io_limit = RECIPE_DEFAULT_IO_LIMIT;
	c.r->source = xstrdup(source_name);

	/* Debian's inih makes its compile-time options run-time globals. Set what recipes need for
	 * this parse — whole lines up to our limit, no inline comments (';' is shell syntax),
	 * multi-line values — and put back what other users of inih (fetch's pip.conf) expect. */
	struct ini_globals g = {
		/* use_stack, allow_realloc, inline_comments, multiline, no_value, bom, stop_on_first_error */
		.b = {false, false, false, true, false, true, true},
		/* max_line, initial_alloc */
		.i = {RECIPE_MAX_LINE, RECIPE_MAX_LINE},
	};
	ini_globals_swap(&g); /* ours in, theirs saved in g */
	int rc = ini_parse_stream(ctx_reader, &c, ini_handler_cb, &c);
	ini_globals_swap(&g); /* theirs back */
	if (!c.failed && rc == -2)
		pyti_err_set(err, ENOMEM, "%s: out of memory", source_name), c.failed = true;
	else if (!c.failed && rc > 0)
		perr(&c, rc, "syntax error");
	if (!c.failed)
		validate_and_order(&c);
	if (!c.failed && !c.r->name)
		c.r->name = default_name(source_name);
	free(c.sec_name);
	free(c.needs_line);
	if (c.failed) {
		recipe_free(c.r);
		return -1;
	}
	*out = c.r;
	return 0;
}

/* The user names the file, but it may be anything: a FIFO would block open() and read() for
 * ever, a tty would become our controlling terminal, /dev/zero would never end. So: open without
 * blocking or a ctty, accept a regular file only, and read at most RECIPE_MAX_SIZE + 1 bytes. */
static int read_recipe_file(const char *path, struct buf *b, struct pyti_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return pyti_err_usage(err, "recipe %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0)
		return pyti_err_usage(err, "recipe %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return pyti_err_usage(err, "recipe %s: not a regular file", path);
	if (st.st_size > (off_t)RECIPE_MAX_SIZE)
		return pyti_err_usage(err, "%s: recipe larger than %u bytes", path, RECIPE_MAX_SIZE);
	char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pyti_err_usage(err, "recipe %s: read: %s", path, strerror(errno));
		if (n == 0)
			break;
		if (buf_append(b, chunk, (size_t)n) < 0) /* it grew since fstat */
			return pyti_err_usage(err, "%s: recipe larger than %u bytes", path, RECIPE_MAX_SIZE);
	}
	buf_append(b, "", 0);
	return 0;
}

int recipe_load_file(const char *path, struct recipe **out, struct pyti_err *err)
{
	_cleanup_buf_ struct buf b = BUF_INIT(RECIPE_MAX_SIZE);
	if (read_recipe_file(path, &b, err) < 0)
		return -1;
	return recipe_load_buffer(path, b.data, b.len, out, err);
}

/* Recipes: the model (free, find a task, value parsers) and loading one from a buffer or a file.
 * The parser itself is parse.c, the validation and task order order.c (shared: recipe-int.h). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "recipe-int.h"

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
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
	int rc = ini_parse_stream(recipe_ini_reader, &c, recipe_ini_handler, &c);
	ini_globals_swap(&g); /* theirs back */
	if (!c.failed && rc == -2)
		pyti_err_set(err, ENOMEM, "%s: out of memory", source_name), c.failed = true;
	else if (!c.failed && rc > 0)
		recipe_perr(&c, rc, "syntax error");
	if (!c.failed)
		recipe_validate_and_order(&c);
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

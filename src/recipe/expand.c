/* Placeholder expansion and the job.json "tasks" array (docs/contracts.md). Values that come from
 * a package's metadata are validated so that they are inert in a shell command. */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "recipe.h"

static const char *const placeholder_names[] = {"dist", "name", "version", "requirement", "module",
						"test_requirements", "posargs"};

static bool is_ident_char(char ch, bool first)
{
	return ch == '_' || isalpha((unsigned char)ch) || (!first && isdigit((unsigned char)ch));
}


static bool valid_pep508_name(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 200 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

static bool valid_version(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 200)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr(".+!_-", s[i]))
			return false;
	return true;
}

static bool valid_module(const char *s)
{
	bool first = true;
	if (!*s || strlen(s) > 200)
		return false;
	for (; *s; s++) {
		if (*s == '.' && !first && s[1]) {
			first = true;
			continue;
		}
		if (!is_ident_char(*s, first))
			return false;
		first = false;
	}
	return true;
}

/* Free text from the user (a dist spec, a requirement): anything printable but a single quote, so
 * that recipes may put it in '...'. */
static bool valid_quotable(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s == '\'' || (unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* An absolute path of [A-Za-z0-9/._-] only: safe unquoted in a shell command. */
static bool valid_path(const char *s)
{
	if (s[0] != '/' || strlen(s) > 255)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("/._-", *s))
			return false;
	return true;
}

static int expand_var(const char *var, const struct recipe_vars *v, struct buf *out, struct pyti_err *err)
{
	if (strcmp(var, "dist") == 0) {
		if (!v->dist || !valid_quotable(v->dist))
			return pyti_err_set(err, 0, "{dist}: %s", v->dist ? "contains a quote or control character" : "not known");
		return buf_puts(out, v->dist) < 0 ? pyti_err_set(err, E2BIG, "expansion too long") : 0;
	}
	if (strcmp(var, "name") == 0 || strcmp(var, "requirement") == 0) {
		if (strcmp(var, "requirement") == 0 && v->requirement) {
			if (!valid_quotable(v->requirement))
				return pyti_err_set(err, 0, "{requirement}: contains a quote or control character");
			buf_puts(out, v->requirement);
		} else {
			if (!v->name || !valid_pep508_name(v->name))
				return pyti_err_set(err, 0, "{%s}: %s '%s'", var, v->name ? "invalid project name" : "project name not known",
						    v->name ? v->name : "");
			buf_puts(out, v->name);
			if (strcmp(var, "requirement") == 0) {
				for (size_t i = 0; i < v->n_extras; i++) {
					if (!valid_pep508_name(v->extras[i]))
						return pyti_err_set(err, 0, "{requirement}: invalid extra name '%s'", v->extras[i]);
					buf_puts(out, i ? "," : "[");
					buf_puts(out, v->extras[i]);
				}
				if (v->n_extras)
					buf_puts(out, "]");
				if (v->version) {
					if (!valid_version(v->version))
						return pyti_err_set(err, 0, "{requirement}: invalid version '%s'", v->version);
					buf_printf(out, "==%s", v->version);
				}
			}
		}
		return out->truncated ? pyti_err_set(err, E2BIG, "expansion too long") : 0;
	}
	if (strcmp(var, "version") == 0) {
		if (!v->version || !valid_version(v->version))
			return pyti_err_set(err, 0, "{version}: %s '%s'", v->version ? "invalid version" : "version not known",
					    v->version ? v->version : "");
		buf_puts(out, v->version);
		return out->truncated ? pyti_err_set(err, E2BIG, "expansion too long") : 0;
	}
	if (strcmp(var, "module") == 0) {
		if (!v->n_modules)
			return pyti_err_set(err, 0, "{module}: no importable top-level module known for this distribution");
		for (size_t i = 0; i < v->n_modules; i++) {
			if (!valid_module(v->modules[i]))
				return pyti_err_set(err, 0, "{module}: '%s' is not a Python module name", v->modules[i]);
			if (i)
				buf_puts(out, ", ");
			buf_puts(out, v->modules[i]);
		}
		return out->truncated ? pyti_err_set(err, E2BIG, "expansion too long") : 0;
	}
	if (strcmp(var, "test_requirements") == 0) {
		if (!v->test_requirements)
			return 0;
		if (!valid_path(v->test_requirements))
			return pyti_err_set(err, 0, "{test_requirements}: '%s' is not a plain absolute path",
					    v->test_requirements);
		buf_printf(out, "-r %s", v->test_requirements);
		return out->truncated ? pyti_err_set(err, E2BIG, "expansion too long") : 0;
	}
	if (strcmp(var, "posargs") == 0) {
		/* the user's own words, for the user's own sandbox: quoted, so each stays one argument */
		for (size_t i = 0; i < v->n_posargs; i++) {
			buf_puts(out, i ? " '" : "'");
			for (const char *c = v->posargs[i]; *c; c++)
				buf_puts(out, *c == '\'' ? "'\\''" : (char[2]){*c, 0});
			buf_puts(out, "'");
		}
		return out->truncated ? pyti_err_set(err, E2BIG, "expansion too long") : 0;
	}
	return pyti_err_usage(err, "unknown placeholder {%s}", var);
}

static int expand(const char *tmpl, const struct recipe_vars *vars, struct buf *out, struct pyti_err *err)
{
	for (const char *p = tmpl; *p;) {
		if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
			buf_append(out, p, 1);
			p += 2;
			continue;
		}
		if (p[0] == '$' && p[1] == '{') {
			buf_append(out, p, 2);
			p += 2;
			continue;
		}
		if (p[0] == '{' && is_ident_char(p[1], true)) {
			const char *e = p + 1;
			while (is_ident_char(*e, false))
				e++;
			/* {posargs:DEFAULT}: DEFAULT (up to the next '}') when the user gave no arguments */
			if (*e == ':' && e - p - 1 == 7 && strncmp(p + 1, "posargs", 7) == 0 && strchr(e, '}')) {
				const char *end = strchr(e, '}');
				if (vars && vars->n_posargs) {
					if (expand_var("posargs", vars, out, err) < 0)
						return -1;
				} else {
					buf_append(out, e + 1, (size_t)(end - e - 1));
				}
				p = end + 1;
				continue;
			}
			if (*e == '}') {
				char var[64];
				size_t n = (size_t)(e - p - 1);
				if (n >= sizeof var)
					return pyti_err_usage(err, "unknown placeholder {%.32s...}", p + 1);
				memcpy(var, p + 1, n);
				var[n] = '\0';
				bool known = false;
				for (size_t i = 0; i < ARRAY_SIZE(placeholder_names); i++)
					known |= strcmp(var, placeholder_names[i]) == 0;
				if (!known) {
					char names[160] = "";
					for (size_t i = 0; i < ARRAY_SIZE(placeholder_names); i++) {
						size_t l = strlen(names);
						snprintf(names + l, sizeof names - l, "%s{%s}", i ? " " : "",
							 placeholder_names[i]);
					}
					return pyti_err_usage(err,
							      "unknown placeholder {%s} (known: %s; write {{ for a literal brace)",
							      var, names);
				}
				if (vars && expand_var(var, vars, out, err) < 0)
					return -1;
				p = e + 1;
				continue;
			}
		}
		buf_append(out, p, 1);
		p++;
	}
	if (out->truncated)
		return pyti_err_set(err, E2BIG, "expansion too long");
	if (!out->data)
		buf_append(out, "", 0);
	return 0;
}

int recipe_check_placeholders(const char *tmpl, struct pyti_err *err)
{
	_cleanup_buf_ struct buf b = BUF_INIT(1u << 20);
	return expand(tmpl, NULL, &b, err);
}

int recipe_expand(const char *tmpl, const struct recipe_vars *vars, char **out, struct pyti_err *err)
{
	static const struct recipe_vars none = {0};
	_cleanup_buf_ struct buf b = BUF_INIT(1u << 20);
	if (expand(tmpl, vars ? vars : &none, &b, err) < 0)
		return -1;
	*out = buf_steal(&b);
	return 0;
}

json_t *recipe_to_job_tasks(const struct recipe *r, const struct recipe_vars *vars, struct pyti_err *err)
{
	_cleanup_json_ json_t *arr = json_array();
	for (size_t i = 0; i < r->n_tasks; i++) {
		const struct recipe_task *t = &r->tasks[i];
		_cleanup_free_ char *run = NULL, *cwd = NULL;
		if (recipe_expand(t->run, vars, &run, err) < 0 || recipe_expand(t->cwd, vars, &cwd, err) < 0) {
			pyti_err_prefix(err, "%s: [task:%s]", r->source, t->name);
			return NULL;
		}
		json_t *needs = json_array(), *env = json_object();
		json_t *o = json_pack("{s:s, s:s, s:o, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:o}", "name", t->name,
				      "run", run, "needs", needs, "cwd", cwd, "env", env, "timeout",
				      (json_int_t)t->timeout, "no_output_timeout", (json_int_t)t->no_output_timeout,
				      "memory", (json_int_t)t->memory, "pids", (json_int_t)t->pids, "output_limit",
				      (json_int_t)t->output_limit, "junit",
				      t->junit ? json_string(t->junit) : json_null());
		if (!o) {
			pyti_err_set(err, 0, "%s: [task:%s]: cannot build JSON (invalid UTF-8?)", r->source, t->name);
			return NULL;
		}
		json_array_append_new(arr, o);
		for (size_t k = 0; k < t->n_needs; k++)
			json_array_append_new(needs, json_string(t->needs[k]));
		for (size_t k = 0; k < t->n_env; k++) {
			const char *eq = strchr(t->env[k], '=');
			_cleanup_free_ char *key = xasprintf("%.*s", (int)(eq - t->env[k]), t->env[k]);
			_cleanup_free_ char *val = NULL;
			if (recipe_expand(eq + 1, vars, &val, err) < 0) {
				pyti_err_prefix(err, "%s: [task:%s] env %s", r->source, t->name, key);
				return NULL;
			}
			json_t *js = json_string(val);
			if (!js) {
				pyti_err_set(err, 0, "%s: [task:%s] env %s: not UTF-8", r->source, t->name, key);
				return NULL;
			}
			json_object_set_new(env, key, js);
		}
	}
	return steal_pointer(&arr);
}

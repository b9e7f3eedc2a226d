/* The test command a project declares in tox.ini's [testenv] (issue 10, point 3), read on the host
 * as untrusted text: nothing of tox is executed, only its `commands` are looked at, and only a
 * pytest or unittest command is taken (with its arguments; {posargs} kept as a marker the guest's
 * runner fills in). Bounded: the file, each line, the number and size of arguments. */
#include <ctype.h>
#include <string.h>

#include "recipe.h"

#define TOX_MAX_SIZE (1u << 20)
#define TOX_MAX_ARGS 256
#define TOX_MAX_ARG 4096
#define TOX_MAX_LINE 65536 /* one command, continuation lines joined */

/* Shell-like words of one command line (tox splits with shlex): quotes and backslashes; NULL when
 * over the bounds or a quote is not closed. */
static json_t *split_words(const char *s, size_t n)
{
	json_t *words = json_array();
	size_t i = 0;
	while (i < n) {
		while (i < n && isspace((unsigned char)s[i]))
			i++;
		if (i >= n)
			break;
		if (s[i] == '#')
			break;
		_cleanup_buf_ struct buf w = BUF_INIT(TOX_MAX_ARG);
		char q = 0;
		int brace = 0; /* tox's {posargs:-k x} is one word */
		while (i < n && (q || brace || !isspace((unsigned char)s[i]))) {
			char ch = s[i++];
			if (!q && (ch == '{' || brace)) {
				/* inside {...} everything is literal: {posargs:DEFAULT} is split again later */
				brace += ch == '{' ? 1 : ch == '}' ? -1 : 0;
				buf_append(&w, &ch, 1);
			} else if (q) {
				if (ch == q)
					q = 0;
				else if (ch == '\\' && q == '"' && i < n)
					buf_append(&w, &s[i++], 1);
				else
					buf_append(&w, &ch, 1);
			} else if (ch == '\'' || ch == '"') {
				q = ch;
			} else if (ch == '\\' && i < n) {
				buf_append(&w, &s[i++], 1);
			} else {
				buf_append(&w, &ch, 1);
			}
		}
		buf_append(&w, "", 0);
		json_t *js = w.truncated ? NULL : json_string(w.data);
		if (q || brace || !js || json_array_size(words) >= TOX_MAX_ARGS) {
			json_decref(js);
			json_decref(words);
			return NULL;
		}
		json_array_append_new(words, js);
	}
	return words;
}

static bool word_is(const json_t *w, size_t i, const char *const *names)
{
	const char *s = json_string_value(json_array_get(w, i));
	if (!s)
		return false;
	const char *base = strrchr(s, '/');
	base = base ? base + 1 : s;
	for (; *names; names++)
		if (strcmp(s, *names) == 0 || strcmp(base, *names) == 0)
			return true;
	return false;
}

/* Which runner a command runs and where its own arguments start; NULL when it is not a test
 * command of pytest or unittest. */
static const char *classify(const json_t *w, size_t *args_at)
{
	static const char *const pythons[] = {"python", "python3", "{envpython}", "{envbindir}/python", NULL};
	static const char *const pytests[] = {"pytest", "py.test", "{envbindir}/pytest", NULL};
	static const char *const coverage[] = {"coverage", "{envbindir}/coverage", NULL};
	static const char *const m[] = {"-m", NULL};
	static const char *const run[] = {"run", NULL};
	static const char *const mod_pytest[] = {"pytest", "py.test", NULL};
	static const char *const mod_unittest[] = {"unittest", NULL};
	size_t i = 0;
	/* "coverage run [opts] -m pytest": coverage's own options are dropped (pytest-cov measures) */
	if (word_is(w, 0, coverage) && word_is(w, 1, run)) {
		for (i = 2; i < json_array_size(w) && !word_is(w, i, m); i++)
			;
		if (i >= json_array_size(w))
			return NULL;
		i++;
	} else if (word_is(w, 0, pytests)) {
		*args_at = 1;
		return "pytest";
	} else if (word_is(w, 0, pythons)) {
		/* python [-X opts…] -m MODULE */
		for (i = 1; i < json_array_size(w) && !word_is(w, i, m); i++) {
			const char *s = json_string_value(json_array_get(w, i));
			if (s[0] != '-')
				return NULL;
		}
		if (i >= json_array_size(w))
			return NULL;
		i++;
	} else {
		return NULL;
	}
	*args_at = i + 1;
	if (word_is(w, i, mod_pytest))
		return "pytest";
	if (word_is(w, i, mod_unittest))
		return "unittest";
	return NULL;
}

/* A word with {toxinidir} made the project root ("."); NULL (and *why) for any other substitution. */
static json_t *subst_word(const char *a, const char **why)
{
	_cleanup_buf_ struct buf b = BUF_INIT(TOX_MAX_ARG);
	for (const char *p = a; *p;) {
		if (strncmp(p, "{toxinidir}", 11) == 0) {
			buf_puts(&b, ".");
			p += 11;
			continue;
		}
		if (*p == '{') {
			*why = "uses a tox substitution pyti does not make";
			return NULL;
		}
		buf_append(&b, p++, 1);
	}
	buf_append(&b, "", 0);
	json_t *js = b.truncated ? NULL : json_string(*b.data ? b.data : ".");
	if (!js)
		*why = "an argument too long or not UTF-8";
	return js;
}

/* One argument with tox's substitutions: {posargs} and {posargs:DEFAULT} become the marker (and the
 * default words, substituted too), {toxinidir} the project root ("."); any other substitution
 * makes the command unusable (-1, *why set). */
static int sub_arg(const char *a, json_t *args, json_t **posargs_default, const char **why)
{
	if (strncmp(a, "{posargs", 8) == 0 && (a[8] == '}' || a[8] == ':') && a[strlen(a) - 1] == '}') {
		json_array_append_new(args, json_string("{posargs}"));
		if (a[8] == ':' && !*posargs_default) {
			_cleanup_free_ char *d = xasprintf("%.*s", (int)(strlen(a) - 10), a + 9);
			_cleanup_json_ json_t *words = split_words(d, strlen(d));
			if (!words) {
				*why = "has a {posargs:...} default that cannot be split into words";
				return -1;
			}
			json_t *def = json_array(), *w;
			size_t i;
			json_array_foreach(words, i, w) {
				json_t *x = subst_word(json_string_value(w), why);
				if (!x) {
					json_decref(def);
					return -1;
				}
				json_array_append_new(def, x);
			}
			*posargs_default = def;
		}
		return 0;
	}
	json_t *js = subst_word(a, why);
	if (!js)
		return -1;
	json_array_append_new(args, js);
	return 0;
}

/* A command line's plan, or NULL (then *why says why it was passed over, or stays NULL for a
 * command that is not a test command at all). */
static json_t *plan_of(const char *line, size_t n, int lineno, const char **why)
{
	while (n && isspace((unsigned char)*line))
		line++, n--;
	if (n && *line == '-') /* tox: "- cmd" ignores cmd's exit status */
		line++, n--;
	_cleanup_json_ json_t *w = split_words(line, n);
	if (!w) {
		*why = "cannot be split into words (a quote not closed, too many or too long)";
		return NULL;
	}
	size_t at = 0;
	const char *runner = classify(w, &at);
	if (!runner)
		return NULL;
	_cleanup_json_ json_t *args = json_array();
	json_t *def = NULL;
	for (size_t i = at; i < json_array_size(w); i++)
		if (sub_arg(json_string_value(json_array_get(w, i)), args, &def, why) < 0) {
			json_decref(def);
			return NULL;
		}
	json_t *cmd = pj_string_lossy(line, n);
	return json_pack("{s:s, s:O, s:o, s:o, s:i}", "runner", runner, "args", args, "posargs_default",
			 def ? def : json_null(), "command", cmd, "line", lineno);
}

json_t *recipe_tox_plan(const char *data, size_t len, json_t **notes)
{
	*notes = json_array();
	if (len > TOX_MAX_SIZE) {
		json_array_append_new(*notes, json_string("tox.ini larger than 1 MiB: not read"));
		return NULL;
	}
	bool in_testenv = false, in_commands = false;
	int lineno = 0, first_line = 0;
	_cleanup_buf_ struct buf pending = BUF_INIT(TOX_MAX_LINE); /* a command continued with '\\' */
	const char *p = data, *end = data + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *line = p;
		p += n + 1;
		lineno++;
		if (n && line[n - 1] == '\r')
			n--;
		if (memchr(line, '\0', n))
			break;
		size_t lead = 0;
		while (lead < n && (line[lead] == ' ' || line[lead] == '\t'))
			lead++;
		if (lead == n || line[lead] == '#' || line[lead] == ';')
			continue;
		if (lead == 0 && line[0] == '[') {
			const char *close = memchr(line, ']', n);
			size_t sl = close ? (size_t)(close - line - 1) : 0;
			in_testenv = close && sl == 7 && strncmp(line + 1, "testenv", 7) == 0;
			in_commands = false;
			pending.len = 0;
			continue;
		}
		if (!in_testenv)
			continue;
		const char *cmdtext;
		size_t cmdlen;
		if (lead == 0) {
			/* "key = value": only commands is of interest */
			const char *eq = memchr(line, '=', n);
			size_t kl = eq ? (size_t)(eq - line) : 0;
			while (kl && isspace((unsigned char)line[kl - 1]))
				kl--;
			in_commands = eq && kl == 8 && strncmp(line, "commands", 8) == 0;
			pending.len = 0;
			if (!in_commands)
				continue;
			cmdtext = eq + 1;
			cmdlen = n - (size_t)(eq + 1 - line);
		} else {
			if (!in_commands)
				continue;
			cmdtext = line + lead;
			cmdlen = n - lead;
		}
		/* "factor: cmd" applies to some environments only */
		size_t k = 0;
		while (k < cmdlen && isspace((unsigned char)cmdtext[k]))
			k++;
		size_t f = k;
		while (f < cmdlen && (isalnum((unsigned char)cmdtext[f]) || strchr("-_,!.", cmdtext[f])))
			f++;
		if (f > k && f < cmdlen && cmdtext[f] == ':' && f + 1 < cmdlen && isspace((unsigned char)cmdtext[f + 1])) {
			json_array_append_new(*notes, json_sprintf("tox.ini:%d: conditional on a tox factor: passed over", lineno));
			continue;
		}
		if (k == cmdlen && !pending.len)
			continue;
		/* "cmd \" continues on the next line: one command */
		size_t e = cmdlen;
		while (e > k && isspace((unsigned char)cmdtext[e - 1]))
			e--;
		if (!pending.len)
			first_line = lineno;
		if (e > k && cmdtext[e - 1] == '\\') {
			buf_append(&pending, cmdtext + k, e - k - 1);
			buf_append(&pending, " ", 1);
			if (pending.truncated)
				break;
			continue;
		}
		buf_append(&pending, cmdtext + k, cmdlen - k);
		if (pending.truncated)
			break;
		const char *why = NULL;
		json_t *plan = plan_of(pending.data, pending.len, first_line, &why);
		pending.len = 0;
		if (plan)
			return plan;
		if (why)
			json_array_append_new(*notes, json_sprintf("tox.ini:%d: a test command that %s: passed over",
								   first_line, why));
		if (json_array_size(*notes) > 32)
			break;
	}
	return NULL;
}

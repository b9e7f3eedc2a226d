/* The user's pip configuration, made fit for the fetch sandbox.
 *
 * pip inside the sandbox must behave like the user's pip on the host (same index, proxy, CA
 * bundle), but it sees only the guest's file system. So the config files pip would read are
 * merged here in pip's own order of precedence and written into the sandbox as one file, the
 * PIP_* variables are passed through, and every setting that names a host file (cert,
 * client-cert, find-links, file:// index URLs, constraint files) is checked: present paths are
 * bound read-only at the same path, missing ones are dropped with a warning. */
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fetch.h"

extern char **environ;

/* Settings whose value names host files: single path, or a whitespace-separated list. */
static const char *const pc_path_keys[] = {"cert", "client-cert"};
static const char *const pc_list_keys[] = {"find-links", "index-url", "extra-index-url", "constraint",
					   "requirement"};
/* Settings that change what a fetch produces: part of the cache key. Index URLs are not: the
 * same requirement from a mirror is the same distribution (an index's files are immutable per
 * version), and a repeat must work offline (PIP_NO_INDEX, an unreachable index: test_fetch.py's
 * test_fetch_then_cache). Unpinned requirements are re-resolved after PYTI_FETCH_TTL anyway. */
static const char *const pc_key_keys[] = {"pre", "only-binary", "no-binary", "prefer-binary", "use-feature",
					  "use-deprecated", "no-build-isolation", "python-version",
					  "platform", "implementation", "abi"};
/* Non-PIP_ variables pip (requests/urllib3) honours. */
static const char *const pc_extra_env[] = {"http_proxy", "https_proxy", "no_proxy", "all_proxy",
					   "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"};
static const char *const pc_path_env[] = {"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"};

static const char *env_get(char *const *envp, const char *name)
{
	size_t n = strlen(name);
	for (; envp && *envp; envp++)
		if (!strncmp(*envp, name, n) && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, list[i]))
			return true;
	return false;
}

/* pip accepts "find_links" and "find-links" alike. */
static char *norm_key(const char *k)
{
	char *s = xstrdup(k);
	for (char *p = s; *p; p++)
		*p = *p == '_' ? '-' : (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	return s;
}

/* PIP_FIND_LINKS -> find-links */
static char *env_key(const char *name)
{
	char *s = norm_key(name + 4);
	return s;
}

static int pc_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	json_t *file = user;
	json_t *sec = json_object_get(file, section);
	if (!sec) {
		sec = json_object();
		json_object_set_new(file, section, sec);
	}
	_cleanup_free_ char *k = norm_key(name);
	const char *old = pj_str(sec, k, NULL);
	if (old) { /* a continuation line of a multi-line value (find-links = a\n  b) */
		_cleanup_free_ char *v = xasprintf("%s\n%s", old, value ? value : "");
		json_object_set_new(sec, k, json_string(v));
	} else {
		json_object_set_new(sec, k, json_string(value ? value : ""));
	}
	return 1;
}

static void pc_warn(struct fetch_pipconf *pc, char *msg)
{
	pc->warnings = xrealloc(pc->warnings, (pc->nwarnings + 2) * sizeof *pc->warnings);
	pc->warnings[pc->nwarnings++] = msg;
	pc->warnings[pc->nwarnings] = NULL;
}

static void pc_bind(struct fetch_pipconf *pc, const char *path)
{
	for (size_t i = 0; i < pc->nbinds; i++)
		if (!strcmp(pc->ro_binds[i], path))
			return;
	pc->ro_binds = xrealloc(pc->ro_binds, (pc->nbinds + 2) * sizeof *pc->ro_binds);
	pc->ro_binds[pc->nbinds++] = xstrdup(path);
	pc->ro_binds[pc->nbinds] = NULL;
}

/* One path or URL of a setting: returns what to keep (allocated) or NULL to drop it. */
static char *pc_check_item(struct fetch_pipconf *pc, const char *where, const char *item)
{
	const char *path = NULL;
	if (!strncmp(item, "file://", 7)) {
		path = item + 7;
		if (strncmp(path, "localhost/", 10) == 0)
			path += 9;
	} else if (strstr(item, "://")) {
		return xstrdup(item); /* a URL: pip fetches it over the (shared) network */
	} else {
		path = item;
	}
	_cleanup_free_ char *abs = NULL;
	if (path[0] != '/') {
		/* relative to where pyti runs, as pip on the host would read it */
		abs = realpath(path, NULL);
		if (!abs) {
			pc_warn(pc, xasprintf("pip setting %s names '%s', which does not exist; dropped", where, item));
			return NULL;
		}
		path = abs;
		item = abs;
	}
	struct stat st;
	if (stat(path, &st) < 0) {
		pc_warn(pc, xasprintf("pip setting %s names '%s', which does not exist; dropped", where, path));
		return NULL;
	}
	if (!(st.st_mode & S_IROTH) && geteuid() == 0)
		pc_warn(pc, xasprintf("pip setting %s: '%s' is not world-readable and may be unreadable in "
				      "the fetch sandbox",
				      where, path));
	pc_bind(pc, path);
	return xstrdup(item);
}

/* Check a setting's value; returns the value to keep (allocated, maybe "") or NULL to drop it. */
static char *pc_check_value(struct fetch_pipconf *pc, const char *where, const char *key, const char *value)
{
	if (in_list(key, pc_path_keys, ARRAY_SIZE(pc_path_keys)))
		return pc_check_item(pc, where, value);
	if (!in_list(key, pc_list_keys, ARRAY_SIZE(pc_list_keys)))
		return xstrdup(value);
	struct buf b = BUF_INIT(0);
	_cleanup_free_ char *copy = xstrdup(value);
	char *save = NULL;
	int kept = 0;
	for (char *tok = strtok_r(copy, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
		_cleanup_free_ char *k = pc_check_item(pc, where, tok);
		if (!k)
			continue;
		buf_printf(&b, "%s%s", kept++ ? (strchr(value, '\n') ? "\n" : " ") : "", k);
	}
	if (!kept) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

static void pc_key_add(json_t *keyobj, const char *name, const char *value)
{
	json_object_set_new(keyobj, name, json_string(value));
}

int fetch_pipconf_from(const char *const *files, char *const *envp, struct fetch_pipconf *pc,
		       struct pyti_err *err)
{
	memset(pc, 0, sizeof *pc);
	if (!envp)
		envp = environ;
	_cleanup_json_ json_t *merged = json_object();
	for (size_t i = 0; files && files[i]; i++) {
		if (!path_exists(files[i]))
			continue;
		_cleanup_json_ json_t *one = json_object();
		int r = ini_parse(files[i], pc_ini_handler, one);
		if (r != 0) {
			fetch_pipconf_free(pc);
			if (r < 0)
				return pyti_err_usage(err, "cannot read pip configuration %s", files[i]);
			return pyti_err_usage(err, "%s:%d: not a valid pip configuration line", files[i], r);
		}
		const char *sname;
		json_t *sec;
		json_object_foreach(one, sname, sec) {
			json_t *dst = json_object_get(merged, sname);
			if (!dst) {
				dst = json_object();
				json_object_set_new(merged, sname, dst);
			}
			json_object_update(dst, sec);
		}
	}

	json_t *keyobj = json_object();
	struct buf conf = BUF_INIT(0);
	const char *sname;
	json_t *sec;
	json_object_foreach(merged, sname, sec) {
		buf_printf(&conf, "[%s]\n", sname);
		const char *k;
		json_t *v;
		json_object_foreach(sec, k, v) {
			_cleanup_free_ char *where = xasprintf("%s.%s", sname, k);
			_cleanup_free_ char *val = pc_check_value(pc, where, k, json_string_value(v));
			if (!val)
				continue;
			/* continuation lines must be indented */
			buf_printf(&conf, "%s = ", k);
			for (const char *p = val; *p; p++) {
				buf_append(&conf, p, 1);
				if (*p == '\n')
					buf_puts(&conf, "    ");
			}
			buf_puts(&conf, "\n");
			if (in_list(k, pc_key_keys, ARRAY_SIZE(pc_key_keys)))
				pc_key_add(keyobj, where, val);
		}
	}
	pc->conf = buf_steal(&conf);

	pc->env = json_object();
	for (char *const *e = envp; *e; e++) {
		const char *eq = strchr(*e, '=');
		if (!eq)
			continue;
		_cleanup_free_ char *name = xasprintf("%.*s", (int)(eq - *e), *e);
		const char *value = eq + 1;
		if (!strncmp(name, "PIP_", 4) && strlen(name) > 4) {
			if (!strcmp(name, "PIP_CONFIG_FILE"))
				continue; /* replaced by the merged file */
			_cleanup_free_ char *k = env_key(name);
			_cleanup_free_ char *val = pc_check_value(pc, name, k, value);
			if (!val)
				continue;
			json_object_set_new(pc->env, name, json_string(val));
			if (in_list(k, pc_key_keys, ARRAY_SIZE(pc_key_keys)))
				pc_key_add(keyobj, name, val);
		} else if (in_list(name, pc_extra_env, ARRAY_SIZE(pc_extra_env))) {
			json_object_set_new(pc->env, name, json_string(value));
		} else if (in_list(name, pc_path_env, ARRAY_SIZE(pc_path_env))) {
			_cleanup_free_ char *val = pc_check_item(pc, name, value);
			if (val)
				json_object_set_new(pc->env, name, json_string(val));
		}
	}
	pc->key_part = json_dumps(keyobj, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(keyobj);
	if (!pc->ro_binds) {
		pc->ro_binds = xcalloc(1, sizeof *pc->ro_binds);
	}
	if (!pc->warnings)
		pc->warnings = xcalloc(1, sizeof *pc->warnings);
	return 0;
}

int fetch_pipconf_load(char *const *envp, struct fetch_pipconf *pc, struct pyti_err *err)
{
	if (!envp)
		envp = environ;
	const char *home = env_get(envp, "HOME");
	const char *xdg = env_get(envp, "XDG_CONFIG_HOME");
	const char *envfile = env_get(envp, "PIP_CONFIG_FILE");
	_cleanup_free_ char *legacy = home ? xasprintf("%s/.pip/pip.conf", home) : NULL;
	_cleanup_free_ char *user = xdg && *xdg ? xasprintf("%s/pip/pip.conf", xdg)
				    : home     ? xasprintf("%s/.config/pip/pip.conf", home)
					       : NULL;
	/* pip: global < user < PIP_CONFIG_FILE; an existing PIP_CONFIG_FILE replaces the user files;
	 * PIP_CONFIG_FILE=/dev/null means "no configuration files at all". */
	const char *files[6];
	size_t n = 0;
	bool devnull = envfile && !strcmp(envfile, "/dev/null");
	if (!devnull) {
		files[n++] = "/etc/xdg/pip/pip.conf";
		files[n++] = "/etc/pip.conf";
		if (!(envfile && *envfile && path_exists(envfile))) {
			if (legacy)
				files[n++] = legacy;
			if (user)
				files[n++] = user;
		}
		if (envfile && *envfile)
			files[n++] = envfile;
	}
	files[n] = NULL;
	return fetch_pipconf_from(files, envp, pc, err);
}

void fetch_pipconf_free(struct fetch_pipconf *pc)
{
	if (!pc)
		return;
	if (pc->env)
		json_decref(pc->env);
	free(pc->conf);
	for (size_t i = 0; i < pc->nbinds; i++)
		free(pc->ro_binds[i]);
	free(pc->ro_binds);
	free(pc->key_part);
	for (size_t i = 0; i < pc->nwarnings; i++)
		free(pc->warnings[i]);
	free(pc->warnings);
	memset(pc, 0, sizeof *pc);
}

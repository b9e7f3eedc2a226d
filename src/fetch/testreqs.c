/* Test requirements beyond extras: many projects declare what their tests need in pyproject.toml's
 * PEP 735 [dependency-groups] (test, tests, testing) or in a requirements file (requirements-test.txt,
 * requirements-dev.txt …). Reading them takes a TOML parser and pip's requirement parser; the guest's
 * own Python (tomllib, pip's vendored packaging) has both, and running testreqs.py inside the fetch
 * sandbox keeps the parsing of a package's files off the host (fetch.c embeds it). Here: reading
 * back what it printed, which is as untrusted as anything else a sandbox hands out. */
#include <string.h>

#include "fetch-int.h"

char **fetch_parse_requirements(const char *data, size_t size)
{
	size_t n = 0, cap = 8;
	char **v = xcalloc(cap, sizeof *v);
	const char *s = data, *end = data + size;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
		if (fetch_requirement_ok(s, len) && n < FETCH_MAX_REQS) {
			if (n + 2 > cap)
				v = xrealloc(v, (cap *= 2) * sizeof *v);
			v[n++] = xasprintf("%.*s", (int)len, s);
			v[n] = NULL;
		}
		s += len + 1;
	}
	return v;
}

char **fetch_read_requirements(const char *path, struct pyti_err *err)
{
	_cleanup_buf_ struct buf b = BUF_INIT(FETCH_MAX_REQ_FILE);
	if (read_file(path, &b, err) < 0)
		return NULL;
	return fetch_parse_requirements(b.data ? b.data : "", b.len);
}

bool fetch_requirement_ok(const char *s, size_t len)
{
	if (len == 0 || len > 1024 || s[0] == '-' || s[0] == ' ' || s[0] == '#')
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	/* valid UTF-8, as JSON (the cache entry) needs it */
	json_t *j = json_stringn(s, len);
	json_decref(j);
	return j != NULL;
}

void fetch_strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

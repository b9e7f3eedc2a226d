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

/* One text of the record, as JSON: valid UTF-8, at most max bytes (cut at a character). */
static json_t *capped_text(const json_t *v, size_t max)
{
	const char *s = json_string_value(v);
	if (!s)
		return NULL;
	size_t n = strlen(s);
	if (n > max) {
		n = max;
		while (n && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	return pj_string_lossy(s, n);
}

static json_t *entries(const json_t *arr, bool with_reason)
{
	json_t *out = json_array();
	size_t i;
	json_t *e;
	json_array_foreach(arr, i, e) {
		if (json_array_size(out) >= FETCH_MAX_REQS)
			break;
		json_t *req = capped_text(json_object_get(e, "requirement"), 1024);
		json_t *from = capped_text(json_object_get(e, "from"), 256);
		json_t *why = with_reason ? capped_text(json_object_get(e, "reason"), 1024) : NULL;
		if (!req || !from || (with_reason && !why)) {
			json_decref(req);
			json_decref(from);
			json_decref(why);
			continue;
		}
		json_t *o = json_object();
		json_object_set_new(o, "requirement", req);
		json_object_set_new(o, "from", from);
		if (why)
			json_object_set_new(o, "reason", why);
		json_array_append_new(out, o);
	}
	return out;
}

json_t *fetch_testreqs_record(const json_t *in)
{
	json_t *r = json_object();
	json_object_set_new(r, "declared", entries(json_object_get(in, "declared"), false));
	json_t *fetched = json_array();
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(in, "fetched"), i, e) {
		const char *s = json_string_value(e);
		if (s && json_array_size(fetched) < FETCH_MAX_REQS && fetch_requirement_ok(s, strlen(s)))
			json_array_append_new(fetched, json_string(s));
	}
	json_object_set_new(r, "fetched", fetched);
	json_object_set_new(r, "dropped", entries(json_object_get(in, "dropped"), true));
	return r;
}

void fetch_testreqs_warn(const char *dist, const json_t *record)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(record, "dropped"), i, e) {
		if (i >= 20) {
			log_warn("fetch %s: %zu more test requirements dropped (see test_requirements in --json)", dist,
				 json_array_size(json_object_get(record, "dropped")) - i);
			break;
		}
		log_warn("fetch %s: test requirement '%s' (%s) dropped: %s", dist, pj_str(e, "requirement", ""),
			 pj_str(e, "from", ""), pj_str(e, "reason", ""));
	}
}

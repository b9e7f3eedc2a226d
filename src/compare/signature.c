/* compare: the text side — project names, failure signatures, the dependency a build failure names.
 * Everything here reads what a tested package wrote (test ids, messages, output): bounded string
 * scanning, no allocation beyond the result; fuzzed (tests/fuzz/fuzz_compare.c). */
#include <ctype.h>
#include <string.h>

#include "compare-int.h"

/* ---- names ---- */

char *compare_project_name(const char *dist)
{
	if (!dist)
		return xstrdup("");
	const char *base = dist;
	/* a path: its last component (a trailing slash of a directory is not one) */
	size_t n = strlen(dist);
	while (n > 1 && dist[n - 1] == '/')
		n--;
	bool path = memchr(dist, '/', n) != NULL;
	if (path) {
		const char *p = dist + n;
		while (p > dist && p[-1] != '/')
			p--;
		base = p;
		n = (size_t)(dist + n - p);
	}
	static const char *const exts[] = {".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".zip", ".whl", ".tar"};
	bool file = false;
	for (size_t i = 0; i < ARRAY_SIZE(exts); i++) {
		size_t el = strlen(exts[i]);
		if (n > el && strncmp(base + n - el, exts[i], el) == 0) {
			n -= el;
			file = true;
			break;
		}
	}
	if (path || file) {
		/* name-version[-tags]: the name ends before the first "-<digit>" */
		for (size_t i = 0; i + 1 < n; i++)
			if (base[i] == '-' && isdigit((unsigned char)base[i + 1])) {
				n = i;
				break;
			}
	} else {
		/* a requirement: the name ends at a specifier, an extra, a marker or a blank */
		n = strcspn(base, "=<>!~[;@ (\t");
	}
	return pep503_name(base, n);
}

/* ---- signatures ---- */

/* s[0..n) with runs of digits as "N" (addresses "0x…" as "0xN"), at most CMP_SIG_MAX bytes */
void cmp_put_masked(struct buf *b, const char *s, size_t n)
{
	size_t start = b->len;
	for (size_t i = 0; i < n && b->len - start < CMP_SIG_MAX; i++) {
		if (s[i] == '0' && i + 1 < n && s[i + 1] == 'x') {
			buf_puts(b, "0xN");
			i += 2;
			while (i < n && isxdigit((unsigned char)s[i]))
				i++;
			i--;
		} else if (isdigit((unsigned char)s[i])) {
			buf_puts(b, "N");
			while (i + 1 < n && isdigit((unsigned char)s[i + 1]))
				i++;
		} else if (s[i] == '\n' || s[i] == '\r' || s[i] == '\t') {
			buf_puts(b, " ");
		} else {
			buf_append(b, s + i, 1);
		}
	}
}

/* "Type" at the start of s ("ValueError: …", "pkg.errors.Boom", "ValueError"), its length, else 0.
 * A name that is a Python exception by its shape: dotted identifiers, the last one capitalised. */
static size_t exc_type_len(const char *s)
{
	if (!s)
		return 0;
	size_t i = 0, last = 0;
	while (isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.') {
		if (s[i] == '.')
			last = i + 1;
		i++;
	}
	if (i == 0 || !isupper((unsigned char)s[last]) || s[i - 1] == '.')
		return 0;
	if (s[i] != ':' && s[i] != '\0' && s[i] != '\n')
		return 0;
	return i;
}

/* The innermost "path.py:LINE: …" line of a pytest failure text; path normalised so that the same
 * frame of a dependency looks the same from every package (site-packages/…, python3/…). */
static bool innermost_frame(const char *text, struct buf *frame, struct buf *rest)
{
	const char *found = NULL, *found_colon = NULL;
	size_t found_len = 0;
	for (const char *p = text; p && *p;) {
		size_t l = strcspn(p, "\n");
		const char *colon = NULL;
		for (size_t i = 0; i + 4 < l; i++)
			if (p[i] == '.' && p[i + 1] == 'p' && p[i + 2] == 'y' && p[i + 3] == ':' &&
			    isdigit((unsigned char)p[i + 4])) {
				colon = p + i + 3;
				break;
			}
		if (colon && !memchr(p, ' ', (size_t)(colon - p))) {
			const char *q = colon + 1;
			while (q < p + l && isdigit((unsigned char)*q))
				q++;
			if (q < p + l && *q == ':') {
				found = p;
				found_len = l;
				found_colon = colon;
			}
		}
		p += l + (p[l] == '\n');
	}
	if (!found)
		return false;
	/* the scan saw "path.py:DIGITS:" on this line, its colon at found_colon */
	const char *py = found_colon - 3;
	size_t plen = (size_t)(py - found) + 3;
	const char *path = found;
	const char *sp = memmem(found, plen, "site-packages/", 14);
	if (sp) {
		path = sp + 14;
	} else if ((sp = memmem(found, plen, "/python3", 8))) {
		const char *slash = memchr(sp + 1, '/', plen - (size_t)(sp + 1 - found));
		if (slash) {
			buf_puts(frame, "python3");
			path = slash;
		}
	} else if (found[0] == '/') {
		/* an absolute path of the package's own tree (/io/src/pkg-1.0/tests/x.py): its last two parts */
		const char *e = found + plen, *q = e;
		int slashes = 0;
		while (q > found && slashes < 2)
			if (*--q == '/')
				slashes++;
		path = q + (*q == '/');
	}
	const char *lineno = py + 4;
	size_t ll = strspn(lineno, "0123456789");
	buf_append(frame, path, (size_t)(lineno + ll - path));
	const char *r = lineno + ll + 1;
	while (*r == ' ')
		r++;
	buf_append(rest, r, found_len - (size_t)(r - found));
	return true;
}

char *compare_signature(const char *traceback, const char *message, const char *text)
{
	struct buf type = BUF_INIT(256), frame = BUF_INIT(1024), rest = BUF_INIT(1024);
	const char *detail = NULL; /* the message after "Type: " */
	size_t k;
	if ((k = exc_type_len(traceback))) {
		buf_append(&type, traceback, k);
		detail = traceback + k;
	} else if ((k = exc_type_len(message))) {
		buf_append(&type, message, k);
		detail = message + k;
	} else if ((traceback && strncmp(traceback, "assert", 6) == 0) ||
		   (message && strncmp(message, "assert", 6) == 0)) {
		buf_puts(&type, "AssertionError");
		detail = traceback && strncmp(traceback, "assert", 6) == 0 ? traceback : message;
	}
	bool have_frame = text && innermost_frame(text, &frame, &rest);
	/* pytest's long traceback ends "path.py:LINE: Type": the innermost frame's own word wins */
	if (have_frame && (k = exc_type_len(rest.data)) && (!type.len || k == rest.len)) {
		buf_reset(&type);
		buf_append(&type, rest.data, k);
	}
	if (!type.len)
		buf_puts(&type, "Failure");
	if (detail)
		while (*detail == ':' || *detail == ' ')
			detail++;
	if (!detail) /* no type found: the text itself */
		detail = traceback ? traceback : message;

	struct buf b = BUF_INIT(4096);
	buf_append(&b, type.data, type.len);
	/* an import error's cause is its message (the module that is gone), not where it was imported */
	bool import = strstr(type.data, "ImportError") || strstr(type.data, "ModuleNotFoundError");
	if (have_frame && !import) {
		buf_puts(&b, " at ");
		buf_append(&b, frame.data, frame.len);
	} else if (detail && *detail) {
		buf_puts(&b, ": ");
		cmp_put_masked(&b, detail, strcspn(detail, "\n"));
	}
	buf_free(&type);
	buf_free(&frame);
	buf_free(&rest);
	return buf_steal(&b);
}

/* The last line of s that starts with an exception ("ModuleNotFoundError: No module named 'imp'"). */
char *cmp_last_exception_line(const char *s)
{
	const char *best = NULL;
	size_t best_len = 0;
	for (const char *p = s; p && *p;) {
		size_t l = strcspn(p, "\n");
		const char *q = p + strspn(p, " \t");
		if (q[0] == 'E' && (q[1] == ' ' || q[1] == '\t'))
			q += 1 + strspn(q + 1, " \t");
		size_t k = exc_type_len(q);
		if (k && q[k] == ':' && (q + k) < p + l) {
			best = q;
			best_len = l - (size_t)(q - p);
		}
		p += l + (p[l] == '\n');
	}
	return best ? strndup(best, best_len) : NULL;
}

/* ---- broken dependencies: the name a build failure gives ---- */

char *cmp_dep_from_text(const char *s, const char *own)
{
	static const char *const pats[] = {
		"Failed to build ",
		"Failed building wheel for ",
		"Could not build wheels for ",
		"No matching distribution found for ",
		"Could not find a version that satisfies the requirement ",
		"Failed to build installable wheels for some pyproject.toml based projects (",
	};
	for (size_t i = 0; s && i < ARRAY_SIZE(pats); i++) {
		for (const char *p = strstr(s, pats[i]); p; p = strstr(p + 1, pats[i])) {
			const char *n = p + strlen(pats[i]);
			size_t l = strcspn(n, " \t\r\n,;:()=<>!~[");
			if (l == 0 || l > 200)
				continue;
			char *name = pep503_name(n, l);
			if (*name && strcmp(name, own) != 0)
				return name;
			free(name);
		}
	}
	return NULL;
}

/* ---- the wheel set an install resolved ---- */

#define CMP_WHEELS_MAX 10000   /* names in one set */
#define CMP_WHEEL_LINE_MAX 512 /* bytes of one "name-version" word or uv change line */

/* pip: the words of its last "Successfully installed a-1 b-c-2.0" line (line[0..len)) */
static json_t *pip_set(const char *line, size_t len)
{
	json_t *set = json_object();
	for (size_t i = 0; i < len && json_object_size(set) < CMP_WHEELS_MAX;) {
		size_t k = strcspn(line + i, " \r\n");
		if (k > len - i)
			k = len - i;
		/* name-version: versions have no '-', names may */
		const char *w = line + i, *dash = NULL;
		for (size_t j = 0; j < k; j++)
			if (w[j] == '-')
				dash = w + j;
		if (dash && dash > w && (size_t)(dash - w) + 1 < k && k < CMP_WHEEL_LINE_MAX) {
			char *name = pep503_name(w, (size_t)(dash - w));
			if (*name)
				json_object_set_new(set, name, pj_string_lossy(dash + 1, k - (size_t)(dash - w) - 1));
			free(name);
		}
		i += k + 1;
	}
	return set;
}

/* uv: "Installed N package(s) in …" at the start of a line; returns the text after that line */
static const char *uv_after_summary(const char *p)
{
	static const char pfx[] = "Installed ";
	if (strncmp(p, pfx, sizeof pfx - 1) != 0)
		return NULL;
	p += sizeof pfx - 1;
	size_t d = strspn(p, "0123456789");
	if (d == 0 || d > 9 || strncmp(p + d, " package", 8) != 0)
		return NULL;
	const char *nl = strchr(p, '\n');
	return nl ? nl + 1 : p + strlen(p);
}

/* uv: the change lines after its summary, " + name==version", " - name==version" (removed),
 * " ~ name==version" (reinstalled), each perhaps followed by " (from …)"; the first other line ends
 * them. A removal takes out only the version it names, so "- six==1.16.0" and "+ six==1.17.0"
 * leave six 1.17.0 in either order. */
static json_t *uv_set(const char *p)
{
	json_t *set = json_object();
	while (*p == ' ' && (p[1] == '+' || p[1] == '-' || p[1] == '~') && p[2] == ' ') {
		char op = p[1];
		const char *name = p + 3;
		size_t len = strcspn(name, "\n");
		const char *next = name[len] ? name + len + 1 : name + len;
		size_t nl = strcspn(name, "= \t\r\n");
		const char *v = name + nl;
		if (len < CMP_WHEEL_LINE_MAX && nl > 0 && nl < len && strncmp(v, "==", 2) == 0) {
			v += 2;
			size_t vl = strcspn(v, " \t\r\n");
			char *n = pep503_name(name, nl);
			if (vl == 0 || !*n) {
				/* not a change line: skip it */
			} else if (op == '-') {
				const char *have = pj_str(set, n, NULL);
				if (have && strlen(have) == vl && strncmp(have, v, vl) == 0)
					json_object_del(set, n);
			} else if (json_object_size(set) < CMP_WHEELS_MAX) {
				json_object_set_new(set, n, pj_string_lossy(v, vl));
			}
			free(n);
		}
		p = next;
	}
	return set;
}

json_t *cmp_installed(const char *output)
{
	static const char pfx[] = "Successfully installed ";
	if (!output)
		return NULL;
	/* the last of pip's line and uv's summary decides: the install task runs one of them */
	const char *pip = NULL, *uv = NULL;
	for (const char *p = output; *p;) {
		const char *after;
		if (strncmp(p, pfx, sizeof pfx - 1) == 0) {
			pip = p + sizeof pfx - 1;
			uv = NULL;
		} else if ((after = uv_after_summary(p))) {
			uv = after;
			pip = NULL;
		}
		const char *nl = strchr(p, '\n');
		if (!nl)
			break;
		p = nl + 1;
	}
	if (pip)
		return pip_set(pip, strcspn(pip, "\n"));
	return uv ? uv_set(uv) : NULL;
}

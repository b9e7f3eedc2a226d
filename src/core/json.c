/* A thin layer over jansson: file I/O with clear errors, typed getters with defaults, and strings
 * built from untrusted bytes. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "core.h"

json_t *pj_load_file(const char *path, struct pyti_err *err)
{
	json_error_t je;
	json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		pyti_err_set(err, 0, "%s:%d: %s", path, je.line, je.text);
	return j;
}

json_t *pj_loads(const char *s, size_t len, struct pyti_err *err)
{
	json_error_t je;
	json_t *j = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		pyti_err_set(err, 0, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
	return j;
}

int pj_dump_file(const json_t *j, const char *path, struct pyti_err *err)
{
	_cleanup_free_ char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (!s)
		return pyti_err_set(err, ENOMEM, "serialise JSON for %s", path);
	size_t n = strlen(s);
	s[n] = '\n'; /* replace NUL with newline; write n+1 bytes */
	return write_file_atomic(path, s, n + 1, 0644, err);
}

const char *pj_str(const json_t *obj, const char *key, const char *dflt)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_string(v) ? json_string_value(v) : dflt;
}

long long pj_int(const json_t *obj, const char *key, long long dflt)
{
	const json_t *v = json_object_get(obj, key);
	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_real(v)) {
		/* out of range (or NaN) would be undefined behaviour: saturate, as a limit should */
		double d = json_real_value(v);
		if (!(d == d))
			return dflt;
		if (d >= 9.2e18)
			return LLONG_MAX;
		if (d <= -9.2e18)
			return LLONG_MIN;
		return (long long)d;
	}
	return dflt;
}

double pj_num(const json_t *obj, const char *key, double dflt)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_number(v) ? json_number_value(v) : dflt;
}

bool pj_bool(const json_t *obj, const char *key, bool dflt)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* Length of a valid UTF-8 sequence at p (at most n bytes), or 0 if invalid. */
size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t len;
	unsigned min;
	if (c < 0x80)
		return 1;
	else if ((c & 0xe0) == 0xc0)
		len = 2, min = 0x80, c &= 0x1f;
	else if ((c & 0xf0) == 0xe0)
		len = 3, min = 0x800, c &= 0x0f;
	else if ((c & 0xf8) == 0xf0)
		len = 4, min = 0x10000, c &= 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return len;
}

json_t *pj_string_lossy(const char *s, size_t n)
{
	struct buf b = BUF_INIT(0);
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		size_t k = utf8_seq(p + i, n - i);
		if (k == 0 || p[i] == 0) {
			buf_append(&b, "\xef\xbf\xbd", 3); /* U+FFFD */
			i++;
		} else {
			buf_append(&b, p + i, k);
			i += k;
		}
	}
	json_t *j = json_stringn(b.data ? b.data : "", b.len);
	buf_free(&b);
	return j;
}

/* The code point of a valid UTF-8 sequence of k bytes (utf8_seq said so). */
static unsigned utf8_decode(const unsigned char *p, size_t k)
{
	static const unsigned char lead_mask[] = {0, 0x7f, 0x1f, 0x0f, 0x07};
	unsigned c = p[0] & lead_mask[k];
	for (size_t i = 1; i < k; i++)
		c = (c << 6) | (p[i] & 0x3f);
	return c;
}

/* Characters that draw nothing yet change what the reader sees: the bidi embeddings, overrides,
 * isolates and marks ("Trojan Source": U+202E shows "exe.txt" for "txt.exe"), invisible
 * separators and joiners-that-are-not (U+200B, U+2060, U+FEFF), the line and paragraph separators
 * some terminals break lines on, interlinear annotations and tags (invisible text). ZWNJ/ZWJ
 * (U+200C/U+200D) stay: scripts and emoji need them, and they cannot reorder or hide text. */
static bool term_invisible(unsigned cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0xad || cp == 0x61c || cp == 0x180e ||
	       cp == 0x200b || cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
	       (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb) ||
	       (cp >= 0x1d173 && cp <= 0x1d17a) || (cp >= 0xe0000 && cp <= 0xe007f);
}

void term_put_safe(FILE *f, const char *s, size_t n, unsigned flags)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		unsigned c = p[i];
		size_t k = utf8_seq(p + i, n - i);
		if (k == 0) { /* not UTF-8: a lone byte an 8-bit terminal may take for C1 */
			fprintf(f, "\\x%02x", c);
			i++;
		} else if (k > 1) {
			unsigned cp = utf8_decode(p + i, k);
			if (!term_invisible(cp))
				fwrite(p + i, 1, k, f);
			else if (cp <= 0xffff) /* C1 (U+0080..U+009F) included */
				fprintf(f, "\\u%04x", cp);
			else
				fprintf(f, "\\U%08x", cp);
			i += k;
		} else {
			bool keep = (c >= 0x20 && c != 0x7f && !(c == '\\' && (flags & TERM_ESCAPE_BACKSLASH))) ||
				    ((c == '\n' || c == '\t') && (flags & TERM_KEEP_NEWLINES));
			if (keep)
				fputc((int)c, f);
			else
				fprintf(f, "\\x%02x", c);
			i++;
		}
	}
}

char *term_safe_dup(const char *s, unsigned flags)
{
	char *out = NULL;
	size_t n = 0;
	FILE *m = open_memstream(&out, &n);
	if (!m)
		return xstrdup("?");
	term_put_safe(m, s, strlen(s), flags);
	fclose(m);
	return out ? out : xstrdup("");
}

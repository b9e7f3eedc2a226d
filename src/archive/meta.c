/* Reading wheel and sdist metadata straight from the archive: nothing is unpacked, nothing runs. */
#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "archive-int.h"
#include "pyti_archive.h"

#define META_MAX_FILE (16u << 20)  /* METADATA, RECORD, top_level.txt, PKG-INFO */
#define META_MAX_ENTRIES 200000
#define META_MAX_MODULES 4096
#define META_MAX_EXTRAS 256

bool arch_is_identifier(const char *s)
{
	if (!s || !*s || isdigit((unsigned char)*s))
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return false;
	return true;
}

void wheel_meta_free(struct wheel_meta *m)
{
	if (!m)
		return;
	free(m->name);
	free(m->version);
	for (size_t i = 0; i < m->n_extras; i++)
		free(m->extras[i]);
	free(m->extras);
	for (size_t i = 0; i < m->n_modules; i++)
		free(m->modules[i]);
	free(m->modules);
	memset(m, 0, sizeof *m);
}

/* Unique strings in insertion order (extras: file order matters). Small sets only. */
static void strlist_add(char ***v, size_t *n, const char *s, size_t len)
{
	if (*n >= META_MAX_EXTRAS)
		return;
	for (size_t i = 0; i < *n; i++)
		if (strlen((*v)[i]) == len && memcmp((*v)[i], s, len) == 0)
			return;
	*v = xrealloc(*v, (*n + 1) * sizeof **v);
	(*v)[(*n)++] = xasprintf("%.*s", (int)len, s);
}

/* Unique strings kept sorted: a hostile RECORD may have millions of lines, so lookups must not be
 * linear. */
static void strset_add(char ***v, size_t *n, const char *s, size_t len)
{
	char key[256];
	if (len >= sizeof key)
		return;
	memcpy(key, s, len);
	key[len] = '\0';
	size_t lo = 0, hi = *n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp((*v)[mid], key);
		if (c == 0)
			return;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (*n >= META_MAX_MODULES)
		return;
	*v = xrealloc(*v, (*n + 1) * sizeof **v);
	memmove(*v + lo + 1, *v + lo, (*n - lo) * sizeof **v);
	(*v)[lo] = xstrdup(key);
	(*n)++;
}

struct archive *arch_open_read(const char *path, bool tar_too, struct pyti_err *err)
{
	struct archive *a = archive_read_new();
	if (!a) {
		pyti_err_set(err, ENOMEM, "libarchive");
		return NULL;
	}
	archive_read_support_format_zip(a);
	if (tar_too) {
		archive_read_support_filter_gzip(a);
		archive_read_support_filter_bzip2(a);
		archive_read_support_filter_xz(a);
		archive_read_support_filter_lzma(a);
		archive_read_support_filter_zstd(a);
		archive_read_support_format_tar(a);
		archive_read_support_format_gnutar(a);
	}
	if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK) {
		pyti_err_set(err, archive_errno(a) > 0 ? archive_errno(a) : 0, "%s: %s", path,
			     archive_error_string(a) ? archive_error_string(a) : "cannot open archive");
		archive_read_free(a);
		return NULL;
	}
	return a;
}


static int read_member(struct archive *a, const char *apath, const char *name, struct buf *b, struct pyti_err *err)
{
	buf_reset(b);
	char chunk[16384];
	for (;;) {
		la_ssize_t n = archive_read_data(a, chunk, sizeof chunk);
		if (n < 0)
			return pyti_err_set(err, 0, "%s: %s: %s", apath, name,
					    archive_error_string(a) ? archive_error_string(a) : "read error");
		if (n == 0)
			break;
		if (buf_append(b, chunk, (size_t)n) < 0)
			return pyti_err_set(err, EFBIG, "%s: %s is larger than %u bytes", apath, name, META_MAX_FILE);
	}
	if (!b->data)
		buf_append(b, "", 0);
	if (memchr(b->data, '\0', b->len))
		return pyti_err_set(err, 0, "%s: %s contains a NUL byte", apath, name);
	return 0;
}

static const char *skip_dot_slash(const char *p)
{
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	while (*p == '/')
		p++;
	return p;
}

/* RFC 822-style headers of METADATA / PKG-INFO: Name, Version, Provides-Extra. */
static int parse_metadata(const char *apath, const char *what, const char *text, struct wheel_meta *m,
			  struct pyti_err *err)
{
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		if (n && p[n - 1] == '\r')
			n--;
		if (n == 0)
			break; /* the body (long description) follows the first empty line */
		const char *colon = memchr(p, ':', n);
		if (colon && !isspace((unsigned char)p[0])) {
			size_t kl = (size_t)(colon - p);
			const char *v = colon + 1, *e = p + n;
			while (v < e && isspace((unsigned char)*v))
				v++;
			while (e > v && isspace((unsigned char)e[-1]))
				e--;
			size_t vl = (size_t)(e - v);
			if (kl == 4 && strncasecmp(p, "Name", 4) == 0 && !m->name && vl)
				m->name = xasprintf("%.*s", (int)vl, v);
			else if (kl == 7 && strncasecmp(p, "Version", 7) == 0 && !m->version && vl)
				m->version = xasprintf("%.*s", (int)vl, v);
			else if (kl == 14 && strncasecmp(p, "Provides-Extra", 14) == 0 && vl)
				strlist_add(&m->extras, &m->n_extras, v, vl);
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	if (!m->name || !m->version)
		return pyti_err_set(err, 0, "%s: %s has no %s", apath, what, m->name ? "Version" : "Name");
	return 0;
}

/* A top-level importable module implied by one path inside a wheel, if any. */
static void module_from_path(const char *path, char ***v, size_t *n)
{
	path = skip_dot_slash(path);
	const char *slash = strchr(path, '/');
	/* <name>.data/purelib/... and platlib/... are installed into site-packages as they are */
	if (slash && slash - path > 5 && memcmp(slash - 5, ".data", 5) == 0) {
		const char *rest = slash + 1;
		if (strncmp(rest, "purelib/", 8) == 0)
			path = rest + 8;
		else if (strncmp(rest, "platlib/", 8) == 0)
			path = rest + 8;
		else
			return;
		slash = strchr(path, '/');
	}
	char name[256];
	if (slash) {
		size_t len = (size_t)(slash - path);
		if (len == 0 || len >= sizeof name)
			return;
		memcpy(name, path, len);
		name[len] = '\0';
		size_t l = strlen(name);
		if ((l > 10 && strcmp(name + l - 10, ".dist-info") == 0) || (l > 5 && strcmp(name + l - 5, ".data") == 0) ||
		    strcmp(name, "__pycache__") == 0)
			return;
	} else {
		size_t len = strlen(path);
		if (len >= sizeof name)
			return;
		const char *dot;
		if (len > 3 && strcmp(path + len - 3, ".py") == 0)
			len -= 3;
		else if ((len > 3 && strcmp(path + len - 3, ".so") == 0) || (len > 4 && strcmp(path + len - 4, ".pyd") == 0))
			len = (size_t)((dot = strchr(path, '.')) - path); /* foo.cpython-311-x86_64-linux-gnu.so */
		else
			return;
		memcpy(name, path, len);
		name[len] = '\0';
		/* a stray setup.py/conftest.py shipped in a wheel is not the package: importing it runs it */
		if (strcmp(name, "setup") == 0 || strcmp(name, "conftest") == 0 || strcmp(name, "__init__") == 0)
			return;
	}
	if (arch_is_identifier(name))
		strset_add(v, n, name, strlen(name));
}

/* First field of a RECORD (CSV) line; quoted fields may hold commas and "" escapes. */
static void record_modules(const char *text, char ***v, size_t *n)
{
	_cleanup_buf_ struct buf f = BUF_INIT(4096);
	for (const char *p = text; *p;) {
		buf_reset(&f);
		if (*p == '"') {
			p++;
			while (*p && *p != '\n') {
				if (*p == '"' && p[1] == '"') {
					buf_append(&f, "\"", 1);
					p += 2;
				} else if (*p == '"') {
					p++;
					break;
				} else {
					buf_append(&f, p++, 1);
				}
			}
		} else {
			const char *e = p;
			while (*e && *e != ',' && *e != '\n' && *e != '\r')
				e++;
			buf_append(&f, p, (size_t)(e - p));
		}
		if (f.len && !f.truncated)
			module_from_path(f.data, v, n);
		const char *nl = strchr(p, '\n');
		if (!nl)
			break;
		p = nl + 1;
	}
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int wheel_read_meta(const char *wheel_path, struct wheel_meta *out, struct pyti_err *err)
{
	memset(out, 0, sizeof *out);
	_cleanup_archive_ struct archive *a = arch_open_read(wheel_path, false, err);
	if (!a)
		return -1;
	_cleanup_buf_ struct buf metadata = BUF_INIT(META_MAX_FILE), record = BUF_INIT(META_MAX_FILE),
				 top = BUF_INIT(META_MAX_FILE), tmp = BUF_INIT(META_MAX_FILE);
	_cleanup_free_ char *distinfo = NULL;
	bool have_meta = false, have_record = false, have_top = false;
	char **entry_mods = NULL;
	size_t n_entry_mods = 0;
	struct wheel_meta m = {0};
	struct archive_entry *e;
	size_t entries = 0;
	int r, rc = -1;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		if (++entries > META_MAX_ENTRIES) {
			pyti_err_set(err, 0, "%s: more than %d entries", wheel_path, META_MAX_ENTRIES);
			goto out;
		}
		const char *raw = archive_entry_pathname(e);
		if (!raw)
			continue;
		const char *p = skip_dot_slash(raw);
		module_from_path(p, &entry_mods, &n_entry_mods);
		const char *slash = strchr(p, '/');
		if (!slash || slash - p <= 10 || memcmp(slash - 10, ".dist-info", 10) != 0 || strchr(slash + 1, '/'))
			continue;
		const char *file = slash + 1;
		struct buf *dst = strcmp(file, "METADATA") == 0	     ? &metadata
				  : strcmp(file, "RECORD") == 0	     ? &record
				  : strcmp(file, "top_level.txt") == 0 ? &top
								       : NULL;
		if (!dst)
			continue;
		size_t dl = (size_t)(slash - p);
		if (!distinfo) {
			distinfo = xasprintf("%.*s", (int)dl, p);
		} else if (strlen(distinfo) != dl || memcmp(distinfo, p, dl) != 0) {
			pyti_err_set(err, 0, "%s: more than one .dist-info directory ('%s' and '%.*s')", wheel_path,
				     distinfo, (int)dl, p);
			goto out;
		}
		if (read_member(a, wheel_path, p, &tmp, err) < 0)
			goto out;
		buf_reset(dst);
		buf_append(dst, tmp.data, tmp.len);
		if (dst == &metadata)
			have_meta = true;
		else if (dst == &record)
			have_record = true;
		else
			have_top = true;
	}
	if (r != ARCHIVE_EOF) {
		pyti_err_set(err, 0, "%s: %s", wheel_path, archive_error_string(a) ? archive_error_string(a) : "read error");
		goto out;
	}
	if (!have_meta) {
		pyti_err_set(err, 0, "%s: not a wheel: no *.dist-info/METADATA", wheel_path);
		goto out;
	}
	if (parse_metadata(wheel_path, "METADATA", metadata.data, &m, err) < 0)
		goto out;
	if (have_top) {
		for (const char *p = top.data; *p;) {
			const char *nl = strchr(p, '\n');
			size_t n = nl ? (size_t)(nl - p) : strlen(p);
			const char *s = p, *e2 = p + n;
			while (s < e2 && isspace((unsigned char)*s))
				s++;
			while (e2 > s && isspace((unsigned char)e2[-1]))
				e2--;
			const char *sl = memchr(s, '/', (size_t)(e2 - s));
			if (sl)
				e2 = sl;
			char name[256];
			if (e2 > s && (size_t)(e2 - s) < sizeof name) {
				memcpy(name, s, (size_t)(e2 - s));
				name[e2 - s] = '\0';
				if (arch_is_identifier(name))
					strset_add(&m.modules, &m.n_modules, name, strlen(name));
			}
			if (!nl)
				break;
			p = nl + 1;
		}
	} else if (have_record) {
		record_modules(record.data, &m.modules, &m.n_modules);
	} else {
		m.modules = steal_pointer(&entry_mods);
		m.n_modules = n_entry_mods;
		n_entry_mods = 0;
	}
	if (m.n_modules)
		qsort(m.modules, m.n_modules, sizeof *m.modules, cmp_str);
	*out = m;
	memset(&m, 0, sizeof m);
	rc = 0;
out:
	for (size_t i = 0; i < n_entry_mods; i++)
		free(entry_mods[i]);
	free(entry_mods);
	wheel_meta_free(&m);
	return rc;
}

int sdist_read_meta(const char *sdist_path, struct wheel_meta *out, struct pyti_err *err)
{
	memset(out, 0, sizeof *out);
	_cleanup_archive_ struct archive *a = arch_open_read(sdist_path, true, err);
	if (!a)
		return -1;
	_cleanup_buf_ struct buf pkginfo = BUF_INIT(META_MAX_FILE);
	struct archive_entry *e;
	size_t entries = 0;
	int r;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		if (++entries > META_MAX_ENTRIES)
			return pyti_err_set(err, 0, "%s: more than %d entries", sdist_path, META_MAX_ENTRIES);
		const char *raw = archive_entry_pathname(e);
		if (!raw || archive_entry_filetype(e) != AE_IFREG)
			continue;
		const char *p = skip_dot_slash(raw);
		const char *slash = strchr(p, '/');
		if (!slash || slash == p || strcmp(slash + 1, "PKG-INFO") != 0)
			continue;
		if (read_member(a, sdist_path, p, &pkginfo, err) < 0)
			return -1;
		struct wheel_meta m = {0};
		if (parse_metadata(sdist_path, "PKG-INFO", pkginfo.data, &m, err) < 0) {
			wheel_meta_free(&m);
			return -1;
		}
		*out = m;
		return 0;
	}
	if (r != ARCHIVE_EOF)
		return pyti_err_set(err, 0, "%s: %s", sdist_path,
				    archive_error_string(a) ? archive_error_string(a) : "read error");
	return pyti_err_set(err, 0, "%s: no top-level PKG-INFO (not an sdist?)", sdist_path);
}

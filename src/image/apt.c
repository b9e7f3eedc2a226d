/* image: which Debian mirror to build from — the host's own apt configuration, never a name written
 * in pyti. Both source formats: one-line ("deb [opts] URI suite comp…") and deb822 (*.sources). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>

#include "image.h"

#define APT_FILE_MAX (4u << 20)

static const char *const debian_suites[] = {
	"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
	"oldoldstable", "oldstable", "stable", "testing", "unstable",
};

bool image_suite_valid(const char *suite)
{
	return suite && (strcmp(suite, "bookworm") == 0 || strcmp(suite, "trixie") == 0);
}

void image_apt_entries_free(struct image_apt_entry *entries, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(entries[i].uri);
		for (size_t k = 0; k < entries[i].n_suites; k++)
			free(entries[i].suites[k]);
		free(entries[i].suites);
	}
	free(entries);
}

/* Split s on whitespace into words; returns how many, calls fn for each. */
static char *next_word(char **s)
{
	char *p = *s;
	while (*p && isspace((unsigned char)*p))
		p++;
	if (!*p) {
		*s = p;
		return NULL;
	}
	char *w = p;
	while (*p && !isspace((unsigned char)*p))
		p++;
	if (*p)
		*p++ = '\0';
	*s = p;
	return w;
}

static void add_entry(struct image_apt_entry **entries, size_t *n, const char *uri, char *suites,
		      char *components)
{
	struct image_apt_entry e = {.uri = xstrdup(uri)};
	size_t len = strlen(e.uri);
	while (len > 1 && e.uri[len - 1] == '/') /* "…/debian/" and "…/debian" are one mirror */
		e.uri[--len] = '\0';
	char *w;
	while ((w = next_word(&suites))) {
		e.suites = xrealloc(e.suites, (e.n_suites + 1) * sizeof *e.suites);
		e.suites[e.n_suites++] = xstrdup(w);
	}
	while ((w = next_word(&components)))
		if (strcmp(w, "main") == 0)
			e.main = true;
	*entries = xrealloc(*entries, (*n + 1) * sizeof **entries);
	(*entries)[(*n)++] = e;
}

/* One-line format: "deb [ key=value … ] URI suite [component…]"; '#' starts a comment. */
static void parse_one_line(char *text, struct image_apt_entry **entries, size_t *n)
{
	char *save = NULL;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *p = line;
		char *type = next_word(&p);
		if (!type || strcmp(type, "deb") != 0)
			continue;
		while (*p && isspace((unsigned char)*p))
			p++;
		if (*p == '[') {
			char *close = strchr(p, ']');
			if (!close)
				continue;
			p = close + 1;
		}
		char *uri = next_word(&p);
		char *suite = next_word(&p);
		if (!uri || !suite)
			continue;
		add_entry(entries, n, uri, suite, p);
	}
}

/* deb822: stanzas separated by blank lines; "Field: value" with continuation lines starting with
 * white space; lines starting with '#' are comments (also inside a stanza). Field names are
 * case-insensitive. */
struct stanza {
	struct buf types, uris, suites, comps;
	bool disabled;
};

static void stanza_reset(struct stanza *s)
{
	buf_reset(&s->types);
	buf_reset(&s->uris);
	buf_reset(&s->suites);
	buf_reset(&s->comps);
	s->disabled = false;
}

static void stanza_flush(struct stanza *s, struct image_apt_entry **entries, size_t *n)
{
	char *t = s->types.data, *u = s->uris.data;
	bool deb = false;
	char *w;
	while (t && (w = next_word(&t)))
		if (strcmp(w, "deb") == 0)
			deb = true;
	if (deb && !s->disabled && u && s->suites.data) {
		/* Several URIs are mirrors of one another: one entry each. */
		while ((w = next_word(&u))) {
			_cleanup_free_ char *su = xstrdup(s->suites.data);
			_cleanup_free_ char *co = xstrdup(s->comps.data ? s->comps.data : "");
			add_entry(entries, n, w, su, co);
		}
	}
	stanza_reset(s);
}

static void parse_deb822(char *text, struct image_apt_entry **entries, size_t *n)
{
	struct stanza s = {BUF_INIT(0), BUF_INIT(0), BUF_INIT(0), BUF_INIT(0), false};
	struct buf *cur = NULL;
	char *line = text;
	while (line) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		size_t len = strlen(line);
		if (len && line[len - 1] == '\r')
			line[--len] = '\0';
		bool blank = true;
		for (char *p = line; *p; p++)
			if (!isspace((unsigned char)*p))
				blank = false;
		if (line[0] == '#') {
			/* comment: neither ends the stanza nor the current field */
		} else if (blank) {
			stanza_flush(&s, entries, n);
			cur = NULL;
		} else if (isspace((unsigned char)line[0])) {
			if (cur) {
				buf_puts(cur, " ");
				buf_puts(cur, line);
			}
		} else {
			char *colon = strchr(line, ':');
			cur = NULL;
			if (colon) {
				*colon = '\0';
				const char *val = colon + 1;
				if (strcasecmp(line, "Types") == 0)
					cur = &s.types;
				else if (strcasecmp(line, "URIs") == 0)
					cur = &s.uris;
				else if (strcasecmp(line, "Suites") == 0)
					cur = &s.suites;
				else if (strcasecmp(line, "Components") == 0)
					cur = &s.comps;
				else if (strcasecmp(line, "Enabled") == 0) {
					while (isspace((unsigned char)*val))
						val++;
					s.disabled = strncasecmp(val, "no", 2) == 0;
				}
				if (cur) {
					buf_puts(cur, " ");
					buf_puts(cur, val);
				}
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	stanza_flush(&s, entries, n);
	buf_free(&s.types);
	buf_free(&s.uris);
	buf_free(&s.suites);
	buf_free(&s.comps);
}

int image_apt_parse_file(const char *path, struct image_apt_entry **entries, size_t *n,
			 struct pyti_err *err)
{
	_cleanup_buf_ struct buf b = BUF_INIT(APT_FILE_MAX);
	if (read_file(path, &b, err) < 0)
		return -1;
	if (str_has_suffix(path, ".sources"))
		parse_deb822(b.data, entries, n);
	else
		parse_one_line(b.data, entries, n);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool usable_uri(const char *uri)
{
	/* cdrom: and the like cannot be handed to debootstrap */
	return strncmp(uri, "http://", 7) == 0 || strncmp(uri, "https://", 8) == 0 ||
	       strncmp(uri, "ftp://", 6) == 0 || strncmp(uri, "file:/", 6) == 0;
}

static bool is_debian_suite(const char *s)
{
	for (size_t i = 0; i < ARRAY_SIZE(debian_suites); i++)
		if (strcmp(s, debian_suites[i]) == 0)
			return true;
	return false;
}

/* Every entry of the host's apt configuration, in the order apt reads it. */
static int apt_collect(const char *apt_dir, struct image_apt_entry **entries, size_t *n, struct pyti_err *err)
{
	_cleanup_free_ char *main_list = xasprintf("%s/sources.list", apt_dir);
	if (path_exists(main_list) && image_apt_parse_file(main_list, entries, n, err) < 0)
		return -1;

	_cleanup_free_ char *dpath = xasprintf("%s/sources.list.d", apt_dir);
	DIR *d = opendir(dpath);
	if (!d)
		return 0;
	char **names = NULL;
	size_t nn = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (!str_has_suffix(de->d_name, ".list") && !str_has_suffix(de->d_name, ".sources"))
			continue;
		names = xrealloc(names, (nn + 1) * sizeof *names);
		names[nn++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (nn)
		qsort(names, nn, sizeof *names, cmp_str);
	int r = 0;
	for (size_t i = 0; i < nn; i++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", dpath, names[i]);
		if (r == 0 && image_apt_parse_file(p, entries, n, err) < 0)
			r = -1;
		free(names[i]);
	}
	free(names);
	return r;
}

int image_apt_mirror(const char *apt_dir, const char *suite, char **out, struct pyti_err *err)
{
	struct image_apt_entry *entries = NULL;
	size_t n = 0;
	if (apt_collect(apt_dir, &entries, &n, err) < 0) {
		image_apt_entries_free(entries, n);
		return -1;
	}

	const char *exact = NULL, *any = NULL;
	for (size_t i = 0; i < n && !exact; i++) {
		if (!entries[i].main || !usable_uri(entries[i].uri))
			continue;
		for (size_t k = 0; k < entries[i].n_suites; k++) {
			if (strcmp(entries[i].suites[k], suite) == 0) {
				exact = entries[i].uri;
				break;
			}
			if (!any && is_debian_suite(entries[i].suites[k]))
				any = entries[i].uri;
		}
	}
	if (!exact && !any) {
		image_apt_entries_free(entries, n);
		return pyti_err_usage(err,
				      "no Debian archive mirror for '%s' in %s/sources.list or "
				      "%s/sources.list.d/ (no \"deb\" entry with suite %s and component main): "
				      "pass --mirror URL",
				      suite, apt_dir, apt_dir, suite);
	}
	*out = xstrdup(exact ? exact : any);
	image_apt_entries_free(entries, n);
	return 0;
}

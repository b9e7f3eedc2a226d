/* image: what a root file system holds, read from var/lib/dpkg/status — never by executing the
 * guest's programs on the host (they may be for another architecture, and it is not our system). */
#include <errno.h>
#include <string.h>

#include "image.h"

#define DPKG_STATUS_MAX (64u << 20)

void image_pkgs_free(struct image_pkgs *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		free(p->names[i]);
	free(p->names);
	free(p->python);
	*p = (struct image_pkgs){0};
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "2:3.11.2-1+b1" -> "3.11.2": drop the epoch and the Debian revision. */
static char *upstream_version(const char *v)
{
	const char *colon = strchr(v, ':');
	if (colon)
		v = colon + 1;
	char *u = xstrdup(v);
	char *dash = strrchr(u, '-');
	if (dash)
		*dash = '\0';
	return u;
}

struct pkg_stanza {
	char package[256], version[256];
	bool installed;
};

static void stanza_end(struct pkg_stanza *s, struct image_pkgs *out)
{
	if (s->installed && s->package[0] && s->version[0]) {
		out->names = xrealloc(out->names, (out->n + 1) * sizeof *out->names);
		out->names[out->n++] = xasprintf("%s=%s", s->package, s->version);
		if (strcmp(s->package, "python3") == 0) {
			free(out->python);
			out->python = upstream_version(s->version);
		}
	}
	*s = (struct pkg_stanza){0};
}

static void copy_value(char *dst, size_t size, const char *val)
{
	while (*val == ' ' || *val == '\t')
		val++;
	size_t n = strcspn(val, "\r");
	while (n && (val[n - 1] == ' ' || val[n - 1] == '\t'))
		n--;
	if (n >= size)
		n = size - 1;
	memcpy(dst, val, n);
	dst[n] = '\0';
}

int image_dpkg_status(const char *path, struct image_pkgs *out, struct pyti_err *err)
{
	*out = (struct image_pkgs){0};
	_cleanup_buf_ struct buf b = BUF_INIT(DPKG_STATUS_MAX);
	if (read_file(path, &b, err) < 0)
		return -1;
	struct pkg_stanza s = {0};
	char *line = b.data;
	while (line) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (line[0] == '\0' || strcmp(line, "\r") == 0) {
			stanza_end(&s, out);
		} else if (line[0] != ' ' && line[0] != '\t') {
			char *colon = strchr(line, ':');
			if (colon) {
				*colon = '\0';
				const char *val = colon + 1;
				if (strcmp(line, "Package") == 0) {
					copy_value(s.package, sizeof s.package, val);
				} else if (strcmp(line, "Version") == 0) {
					copy_value(s.version, sizeof s.version, val);
				} else if (strcmp(line, "Status") == 0) {
					char st[256];
					copy_value(st, sizeof st, val);
					/* "want flag status": only "… installed" is on disk */
					size_t l = strlen(st);
					s.installed = l >= 10 && strcmp(st + l - 10, " installed") == 0;
				}
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	stanza_end(&s, out);
	if (out->n)
		qsort(out->names, out->n, sizeof *out->names, cmp_str);
	if (out->n == 0) {
		image_pkgs_free(out);
		return pyti_err_set(err, 0, "%s: no installed packages", path);
	}
	return 0;
}

void image_pkgs_hash(const struct image_pkgs *p, const char *suite, char out[65])
{
	struct buf b = BUF_INIT(0);
	buf_printf(&b, "suite=%s\n", suite);
	for (size_t i = 0; i < p->n; i++) {
		buf_puts(&b, p->names[i]);
		buf_puts(&b, "\n");
	}
	sha256_hex(b.data, b.len, out);
	buf_free(&b);
}

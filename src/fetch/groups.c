/* Test dependency groups (PEP 735): many projects declare what their tests need in
 * pyproject.toml's [dependency-groups] (test, tests, testing) instead of an extra. Reading that
 * file takes a TOML parser; the guest's own Python (3.11+: tomllib) has one, and running it
 * inside the fetch sandbox keeps the parsing of a package's files off the host. The script reads
 * pyproject.toml straight from the sdist (no extraction) or the source directory, follows
 * include-group, keeps entries pip accepts as PEP 508 requirements, and prints one a line. */
#include <string.h>

#include "fetch-int.h"

const char fetch_groups_py[] =
	"import os, re, sys, tarfile, zipfile\n"
	"try:\n"
	"    import tomllib\n"
	"except ImportError:\n"
	"    sys.exit(0)  # Python < 3.11: no groups\n"
	"from pip._vendor.packaging.requirements import InvalidRequirement, Requirement\n"
	"WANT = ('test', 'tests', 'testing')\n"
	"MAX = 1 << 20\n"
	"def top(n):\n"
	"    return n.count('/') == 1 and n.endswith('/pyproject.toml')\n"
	"def pyproject(src):\n"
	"    if os.path.isdir(src):\n"
	"        p = os.path.join(src, 'pyproject.toml')\n"
	"        if os.path.isfile(p) and os.path.getsize(p) < MAX:\n"
	"            return open(p, 'rb').read()\n"
	"        return None\n"
	"    if zipfile.is_zipfile(src):\n"
	"        with zipfile.ZipFile(src) as z:\n"
	"            for i in z.infolist():\n"
	"                if top(i.filename) and i.file_size < MAX:\n"
	"                    return z.read(i)\n"
	"        return None\n"
	"    with tarfile.open(src) as t:\n"
	"        for m in t:\n"
	"            if m.isfile() and top(m.name) and m.size < MAX:\n"
	"                return t.extractfile(m).read()\n"
	"    return None\n"
	"def norm(n):\n"
	"    return re.sub(r'[-_.]+', '-', n).lower()\n"
	"def main(src):\n"
	"    data = pyproject(src)\n"
	"    if data is None:\n"
	"        return\n"
	"    groups = tomllib.loads(data.decode('utf-8', 'replace')).get('dependency-groups')\n"
	"    if not isinstance(groups, dict):\n"
	"        return\n"
	"    groups = {norm(k): v for k, v in groups.items() if isinstance(v, list)}\n"
	"    out, seen = [], set()\n"
	"    def expand(name):\n"
	"        if name in seen or len(seen) > 64:\n"
	"            return\n"
	"        seen.add(name)\n"
	"        for item in groups.get(name, []):\n"
	"            if isinstance(item, str):\n"
	"                try:\n"
	"                    r = str(Requirement(item))\n"
	"                except InvalidRequirement:\n"
	"                    print('pyti: skipping %r in [dependency-groups]' % item, file=sys.stderr)\n"
	"                    continue\n"
	"                if r not in out and len(out) < 256:\n"
	"                    out.append(r)\n"
	"            elif isinstance(item, dict) and isinstance(item.get('include-group'), str):\n"
	"                expand(norm(item['include-group']))\n"
	"    for g in WANT:\n"
	"        expand(g)\n"
	"    for r in out:\n"
	"        print(r)\n"
	"main(sys.argv[1])\n";

/* One requirement a line, as the script prints them; NULL-terminated vector. */
char **fetch_read_requirements(const char *path, struct pyti_err *err)
{
	_cleanup_buf_ struct buf b = BUF_INIT(FETCH_MAX_REQ_FILE);
	if (read_file(path, &b, err) < 0)
		return NULL;
	size_t n = 0, cap = 8;
	char **v = xcalloc(cap, sizeof *v);
	const char *s = b.data ? b.data : "";
	const char *end = s + b.len;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t len = nl ? (size_t)(nl - s) : (size_t)(end - s);
		if (fetch_requirement_ok(s, len)) {
			if (n + 2 > cap)
				v = xrealloc(v, (cap *= 2) * sizeof *v);
			v[n++] = xasprintf("%.*s", (int)len, s);
			v[n] = NULL;
		}
		s += len + 1;
	}
	return v;
}

bool fetch_requirement_ok(const char *s, size_t len)
{
	if (len == 0 || len > 1024 || s[0] == '-' || s[0] == ' ' || s[0] == '#')
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

void fetch_strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

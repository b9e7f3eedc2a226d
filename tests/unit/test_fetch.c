/* Unit tests of the fetch module: pip configuration merge and host-path handling, cache keys,
 * directory hashing, the cache's put/get round trip.
 *
 * Also a tiny driver for the integration tests until `pyti run` does it:
 *   test_fetch --fetch STATE_DIR IMAGE_DIR AGENT IO_DIR DIST [REQUIREMENT…]
 * prints the fetch_result as JSON on stdout (or {"error","class"}) and exits 0 or 1. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <sys/stat.h>

#include "fetch-int.h"
#include "sandbox.h"

static char *tmpdir(void)
{
	char *d = xstrdup("/tmp/pyti-fetchtest-XXXXXX");
	assert_non_null(mkdtemp(d));
	return d;
}

static void put(const char *dir, const char *rel, const char *text)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", dir, rel);
	_cleanup_free_ char *parent = xstrdup(p);
	*strrchr(parent, '/') = '\0';
	assert_int_equal(mkdir_p(parent, 0755, NULL), 0);
	assert_int_equal(write_file_atomic(p, text, strlen(text), 0644, NULL), 0);
}

static bool has(char **list, const char *s)
{
	for (; list && *list; list++)
		if (!strcmp(*list, s))
			return true;
	return false;
}

static bool warned(char **list, const char *s)
{
	for (; list && *list; list++)
		if (strstr(*list, s))
			return true;
	return false;
}

static void test_pipconf_merge(void **state)
{
	(void)state;
	_cleanup_free_ char *d = tmpdir();
	_cleanup_free_ char *ca = xasprintf("%s/ca.pem", d);
	_cleanup_free_ char *links = xasprintf("%s/wheels", d);
	put(d, "ca.pem", "cert");
	put(d, "wheels/x.whl", "w");
	_cleanup_free_ char *g = xasprintf("[global]\ntimeout = 10\ncert = %s\nindex_url = https://global.invalid/simple\n"
					   "[install]\nno-compile = yes\n",
					   ca);
	_cleanup_free_ char *u = xasprintf("[global]\ntimeout = 20\nfind-links =\n    %s\n    /nonexistent-pyti-links\n"
					   "    https://links.invalid/\nclient-cert = /nonexistent-pyti.pem\n"
					   "pre = true\n",
					   links);
	put(d, "global.conf", g);
	put(d, "user.conf", u);
	_cleanup_free_ char *gf = xasprintf("%s/global.conf", d), *uf = xasprintf("%s/user.conf", d);
	const char *files[] = {gf, "/nonexistent-pyti.conf", uf, NULL};
	char *envp[] = {"PIP_DEFAULT_TIMEOUT=180", "PIP_FIND_LINKS=/nonexistent-pyti-env", "PIP_CONFIG_FILE=/x",
			"HOME=/root", "https_proxy=http://proxy.invalid:3128", "PIP_CERT=/nonexistent-pyti-ca",
			"PIP_NO_BINARY=:all:", NULL};
	struct fetch_pipconf pc;
	assert_int_equal(fetch_pipconf_from(files, envp, &pc, NULL), 0);
	printf("# conf:\n%s# key: %s\n", pc.conf, pc.key_part);
	/* later files win, sections and other keys survive, '_' is '-' */
	assert_non_null(strstr(pc.conf, "timeout = 20\n"));
	assert_null(strstr(pc.conf, "timeout = 10"));
	assert_non_null(strstr(pc.conf, "index-url = https://global.invalid/simple\n"));
	assert_non_null(strstr(pc.conf, "[install]\nno-compile = yes\n"));
	/* host paths: existing ones bound, missing ones dropped with a warning, URLs kept */
	_cleanup_free_ char *want_cert = xasprintf("cert = %s\n", ca);
	assert_non_null(strstr(pc.conf, want_cert));
	assert_non_null(strstr(pc.conf, links));
	assert_non_null(strstr(pc.conf, "https://links.invalid/"));
	assert_null(strstr(pc.conf, "nonexistent-pyti-links"));
	assert_null(strstr(pc.conf, "client-cert"));
	assert_true(has(pc.ro_binds, ca));
	assert_true(has(pc.ro_binds, links));
	assert_int_equal(pc.nbinds, 2);
	assert_true(warned(pc.warnings, "/nonexistent-pyti-links"));
	assert_true(warned(pc.warnings, "/nonexistent-pyti.pem"));
	assert_true(warned(pc.warnings, "/nonexistent-pyti-env"));
	/* the environment: PIP_* and proxies pass, PIP_CONFIG_FILE is replaced, missing paths dropped */
	assert_string_equal(pj_str(pc.env, "PIP_DEFAULT_TIMEOUT", ""), "180");
	assert_string_equal(pj_str(pc.env, "https_proxy", ""), "http://proxy.invalid:3128");
	assert_null(json_object_get(pc.env, "PIP_CONFIG_FILE"));
	assert_null(json_object_get(pc.env, "PIP_FIND_LINKS"));
	assert_null(json_object_get(pc.env, "PIP_CERT"));
	assert_null(json_object_get(pc.env, "HOME"));
	/* what changes the result is in the key; the index is not */
	assert_non_null(strstr(pc.key_part, "global.pre"));
	assert_non_null(strstr(pc.key_part, "PIP_NO_BINARY"));
	assert_null(strstr(pc.key_part, "index"));
	fetch_pipconf_free(&pc);
	fetch_pipconf_free(&pc); /* idempotent */
	/* a relative path is read from the current directory, as pip would */
	char cwd[4096];
	assert_non_null(getcwd(cwd, sizeof cwd));
	assert_int_equal(chdir(d), 0);
	char *envp2[] = {"PIP_FIND_LINKS=wheels", NULL};
	const char *none[] = {NULL};
	assert_int_equal(fetch_pipconf_from(none, envp2, &pc, NULL), 0);
	assert_int_equal(chdir(cwd), 0);
	assert_string_equal(pj_str(pc.env, "PIP_FIND_LINKS", ""), links);
	assert_true(has(pc.ro_binds, links));
	fetch_pipconf_free(&pc);
	rm_rf(d, NULL);
}

static void test_pipconf_file_urls_and_load(void **state)
{
	(void)state;
	_cleanup_free_ char *d = tmpdir();
	put(d, "idx/simple/index.html", "x");
	_cleanup_free_ char *conf = xasprintf("[global]\nindex-url = file://%s/idx/simple\n"
					      "extra-index-url = file:///nonexistent-pyti/simple https://x.invalid/s\n",
					      d);
	put(d, "pip.conf", conf);
	_cleanup_free_ char *cf = xasprintf("PIP_CONFIG_FILE=%s/pip.conf", d);
	_cleanup_free_ char *home = xasprintf("HOME=%s", d);
	char *envp[] = {cf, home, "XDG_CONFIG_HOME=/nonexistent-pyti-xdg", NULL};
	struct fetch_pipconf pc;
	assert_int_equal(fetch_pipconf_load(envp, &pc, NULL), 0);
	_cleanup_free_ char *idx = xasprintf("%s/idx/simple", d);
	assert_true(has(pc.ro_binds, idx));
	assert_non_null(strstr(pc.conf, "extra-index-url = https://x.invalid/s\n"));
	assert_true(warned(pc.warnings, "/nonexistent-pyti/simple"));
	fetch_pipconf_free(&pc);
	/* PIP_CONFIG_FILE=/dev/null: no files at all */
	char *envp2[] = {"PIP_CONFIG_FILE=/dev/null", home, NULL};
	assert_int_equal(fetch_pipconf_load(envp2, &pc, NULL), 0);
	assert_string_equal(pc.conf, "");
	assert_int_equal(pc.nbinds, 0);
	fetch_pipconf_free(&pc);
	/* a broken file is a usage error naming the line */
	put(d, "bad.conf", "[global]\nthis line has no separator\n");
	_cleanup_free_ char *bf = xasprintf("%s/bad.conf", d);
	const char *files[] = {bf, NULL};
	struct pyti_err err = {0};
	assert_int_equal(fetch_pipconf_from(files, envp2, &pc, &err), -1);
	assert_non_null(strstr(err.msg, "bad.conf:2"));
	rm_rf(d, NULL);
}

static void test_cache_key(void **state)
{
	(void)state;
	const char *ex[] = {"test", NULL}, *ex2[] = {"tests", NULL};
	const char *rq[] = {"pytest", NULL};
	char a[65], b[65];
	fetch_cache_key("req:six", ex, rq, "img1", "{}", a);
	assert_int_equal(strlen(a), 64);
	fetch_cache_key("req:six", ex, rq, "img1", "{}", b);
	assert_string_equal(a, b);
	fetch_cache_key("req:six==1.17.0", ex, rq, "img1", "{}", b);
	assert_string_not_equal(a, b);
	fetch_cache_key("req:six", ex2, rq, "img1", "{}", b);
	assert_string_not_equal(a, b);
	fetch_cache_key("req:six", ex, NULL, "img1", "{}", b);
	assert_string_not_equal(a, b);
	fetch_cache_key("req:six", ex, rq, "img2", "{}", b);
	assert_string_not_equal(a, b);
	fetch_cache_key("req:six", ex, rq, "img1", "{\"global.pre\":\"true\"}", b);
	assert_string_not_equal(a, b);
	/* no ambiguity between list boundaries */
	const char *rq2[] = {"a", "b", NULL}, *rq3[] = {"a,b", NULL};
	fetch_cache_key("req:x", NULL, rq2, "", "", a);
	fetch_cache_key("req:x", NULL, rq3, "", "", b);
	assert_string_not_equal(a, b);
}

/* classify.c: what a failed pip task means, from its output and log alone. */
static void test_classify_pip(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	assert_int_equal(fetch_classify_pip("six", "get its dependencies",
					    "ERROR: No matching distribution found for nosuch\n", NULL, &err), -1);
	assert_int_equal(err.fclass, PYTI_FC_FETCH);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	err = (struct pyti_err){0};
	/* pip says "No matching distribution" for an index it cannot reach too: the log tells */
	assert_int_equal(fetch_classify_pip("six", "get its dependencies", "No matching distribution found for six\n",
					    "Failed to establish a new connection: [Errno 111] Connection refused\n",
					    &err), -1);
	assert_int_equal(err.fclass, PYTI_FC_NETWORK);
	err = (struct pyti_err){0};
	/* the package's own build failing is its result, whatever network words it printed */
	assert_int_equal(fetch_classify_pip("x", "build or download its wheel",
					    "Connection refused\nerror: subprocess-exited-with-error\n",
					    "x.c:1:1: error: expected ';'\n", &err), -1);
	assert_int_equal(err.fclass, PYTI_FC_BUILDFAIL);
	assert_int_equal(err.status, PYTI_EXIT_FAILED);
	assert_non_null(strstr(err.msg, "x.c:1:1: error: expected"));
	err = (struct pyti_err){0};
	assert_int_equal(fetch_classify_pip("x", "get its dependencies", NULL, NULL, &err), -1);
	assert_int_equal(err.fclass, PYTI_FC_FETCH);
	_cleanup_free_ char *t = fetch_tail_lines("a\nb\nc\n \n", 2, 100);
	assert_string_equal(t, "b\nc");
}

static void test_norm_name(void **state)
{
	(void)state;
	const char *cases[][2] = {
		{"six", "six"},
		{"Six==1.17.0", "six"},
		{"zope.interface>=5", "zope-interface"},
		{"Foo_Bar[test]~=1.0", "foo-bar"},
		{"foo_bar-1.0-py3-none-any.whl", "foo-bar"},
		{"/x/y/Foo.Bar-2.0.tar.gz", "foo-bar"},
		{"iniconfig-2.0.0.tar.gz", "iniconfig"},
		{"python-dateutil", "python-dateutil"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *n = fetch_norm_name(cases[i][0]);
		assert_string_equal(n, cases[i][1]);
	}
	assert_true(fetch_name_ok("six-1.0-py3-none-any.whl"));
	assert_false(fetch_name_ok("../x.whl"));
	assert_false(fetch_name_ok(".hidden"));
	assert_false(fetch_name_ok(""));
}

static void test_hash_dir(void **state)
{
	(void)state;
	_cleanup_free_ char *d = tmpdir();
	put(d, "pkg/__init__.py", "x = 1\n");
	put(d, "setup.py", "setup()\n");
	put(d, ".git/HEAD", "ref: refs/heads/main\n");
	put(d, ".git/refs/heads/main", "1111\n");
	char a[65], b[65], c[65];
	assert_int_equal(fetch_hash_dir(d, a, NULL), 0);
	/* litter and the VCS's object store do not count… */
	put(d, "pkg/__pycache__/m.cpython-311.pyc", "junk");
	put(d, "build/lib/pkg/__init__.py", "old");
	put(d, ".git/index", "junk");
	put(d, ".git/objects/ab/cdef", "blob");
	assert_int_equal(fetch_hash_dir(d, b, NULL), 0);
	assert_string_equal(a, b);
	/* …a new tag does (setuptools-scm makes the version from it), and so does a new commit */
	put(d, ".git/refs/tags/v1.0", "1111\n");
	assert_int_equal(fetch_hash_dir(d, c, NULL), 0);
	assert_string_not_equal(a, c);
	put(d, ".git/refs/heads/main", "2222\n");
	assert_int_equal(fetch_hash_dir(d, b, NULL), 0);
	assert_string_not_equal(c, b);
	_cleanup_free_ char *tags = xasprintf("%s/.git/refs/tags", d);
	rm_rf(tags, NULL);
	put(d, ".git/refs/heads/main", "1111\n");
	assert_int_equal(fetch_hash_dir(d, b, NULL), 0);
	assert_string_equal(a, b);
	put(d, "pkg/__init__.py", "x = 2\n");
	assert_int_equal(fetch_hash_dir(d, b, NULL), 0);
	assert_string_not_equal(a, b);
	put(d, "pkg/__init__.py", "x = 1\n");
	assert_int_equal(fetch_hash_dir(d, b, NULL), 0);
	assert_string_equal(a, b);
	_cleanup_free_ char *s = xasprintf("%s/link", d);
	assert_int_equal(symlink("setup.py", s), 0);
	assert_int_equal(fetch_hash_dir(d, b, NULL), 0);
	assert_string_not_equal(a, b);
	rm_rf(d, NULL);
}

static void test_read_requirements(void **state)
{
	(void)state;
	_cleanup_free_ char *d = tmpdir();
	put(d, "g.txt", "pytest>=8\n\n--index-url http://x\nhypothesis ; python_version >= '3'\n# c\nbad\x01x\nlast");
	_cleanup_free_ char *p = xasprintf("%s/g.txt", d);
	char **v = fetch_read_requirements(p, NULL);
	assert_non_null(v);
	assert_string_equal(v[0], "pytest>=8");
	assert_string_equal(v[1], "hypothesis ; python_version >= '3'");
	assert_string_equal(v[2], "last");
	assert_null(v[3]);
	fetch_strv_free(v);
	_cleanup_free_ char *missing = xasprintf("%s/none.txt", d);
	assert_null(fetch_read_requirements(missing, NULL));
	rm_rf(d, NULL);
}

static void test_cache_roundtrip(void **state)
{
	(void)state;
	_cleanup_free_ char *d = tmpdir();
	_cleanup_free_ char *st = xasprintf("%s/state", d), *io = xasprintf("%s/io", d),
			    *wh = xasprintf("%s/built", d);
	put(d, "built/a-1.0-py3-none-any.whl", "AAA");
	put(d, "built/b-2.0-py3-none-any.whl", "BBB");
	put(d, "built/notes.txt", "not a wheel");
	put(d, "a-1.0.tar.gz", "SDIST");
	_cleanup_free_ char *sd = xasprintf("%s/a-1.0.tar.gz", d);
	char key[65];
	fetch_cache_key("req:a", NULL, NULL, "img", "", key);
	struct fetch_result r = {0};
	assert_int_equal(fetch_cache_get(st, key, 0, io, &r, NULL), 0); /* empty cache: miss */
	char *groups[] = {"pytest>=8", "cloudpickle; platform_python_implementation == \"CPython\"",
			  "-r evil.txt", NULL};
	assert_int_equal(fetch_cache_put(st, key, "a", wh, sd, false, "a-1.0-py3-none-any.whl", groups, NULL, NULL), 0);
	struct stat us;
	assert_int_equal(stat(sd, &us), 0); /* the caller's own sdist: copied, untouched */
	assert_int_equal(us.st_nlink, 1);
	assert_int_equal(us.st_mode & 0777, 0644);
	assert_int_equal(fetch_cache_get(st, key, 0, io, &r, NULL), 1);
	assert_string_equal(r.dist_wheel, "a-1.0-py3-none-any.whl");
	/* the test groups' requirements come back, options never */
	assert_non_null(r.test_requires);
	assert_string_equal(r.test_requires[0], groups[0]);
	assert_string_equal(r.test_requires[1], groups[1]);
	assert_null(r.test_requires[2]);
	_cleanup_free_ char *wa = xasprintf("%s/wheels/a-1.0-py3-none-any.whl", io);
	_cleanup_free_ char *wb = xasprintf("%s/wheels/b-2.0-py3-none-any.whl", io);
	_cleanup_free_ char *wn = xasprintf("%s/wheels/notes.txt", io);
	_cleanup_free_ char *sdo = xasprintf("%s/sdist/a-1.0.tar.gz", io);
	assert_true(path_exists(wa) && path_exists(wb) && !path_exists(wn));
	assert_string_equal(r.sdist, sdo);
	_cleanup_free_ char *wantwh = xasprintf("%s/wheels", io);
	assert_string_equal(r.wheelhouse, wantwh);
	/* blobs are content-addressed and read-only */
	char sha[65];
	sha256_hex("AAA", 3, sha);
	_cleanup_free_ char *blob = xasprintf("%s/cache/blobs/%s", st, sha);
	struct stat bs;
	assert_int_equal(stat(blob, &bs), 0);
	assert_int_equal(bs.st_mode & 0777, 0444);
	fetch_result_free(&r);
	/* an entry too old for max_age is a miss; a missing blob is a miss */
	assert_int_equal(fetch_cache_get(st, key, 1e-9, io, &r, NULL), 0);
	unlink(blob);
	assert_int_equal(fetch_cache_get(st, key, 0, io, &r, NULL), 0);
	/* no temporary names left */
	_cleanup_free_ char *cmd = xasprintf("find %s/cache -name '*.tmp.*' | grep -q .", st);
	assert_int_not_equal(system(cmd), 0);
	rm_rf(d, NULL);
}

static void test_bad_requests(void **state)
{
	(void)state;
	struct fetch_result r;
	struct pyti_err err = {0};
	struct fetch_req q = {.dist = "./no/such/dir", .state_dir = "/tmp", .image_dir = "/tmp",
			      .agent_path = "/bin/true", .io_dir = "/tmp"};
	assert_int_equal(fetch_dist(&q, &r, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_non_null(strstr(err.msg, "./no/such/dir"));
	q.dist = "";
	assert_int_equal(fetch_dist(&q, &r, &err), -1);
	q.dist = "--index-url=http://x.invalid/";
	assert_int_equal(fetch_dist(&q, &r, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	const char *bad_req[] = {"pytest", "--pre", NULL};
	q.dist = "six";
	q.requires = bad_req;
	assert_int_equal(fetch_dist(&q, &r, &err), -1);
	assert_non_null(strstr(err.msg, "--pre"));
}

static int driver(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: %s --fetch STATE IMAGE_DIR AGENT IO_DIR DIST [REQ…]\n", argv[0]);
		return 2;
	}
	if (getenv("PYTI_DEBUG"))
		pyti_log_level = PYTI_LOG_DEBUG;
	/* as the CLI does (cli/main.c): the sandbox's settings from the environment, read once here */
	sandbox_set_host(&(struct sandbox_host){.net_helper = getenv("PYTI_SLIRP4NETNS")});
	struct fetch_req q = {.state_dir = argv[2], .image_dir = argv[3], .agent_path = argv[4],
			      .io_dir = argv[5], .dist = argv[6], .timeout_s = 900,
			      .requires = argc > 7 ? (const char *const *)argv + 7 : NULL};
	struct fetch_result r;
	struct pyti_err err = {0};
	json_t *j = json_object();
	int rc = fetch_dist(&q, &r, &err);
	if (rc == 0) {
		json_object_set_new(j, "wheelhouse", json_string(r.wheelhouse));
		json_object_set_new(j, "sdist", r.sdist ? json_string(r.sdist) : json_null());
		json_object_set_new(j, "dist_wheel", json_string(r.dist_wheel));
		json_object_set_new(j, "from_cache", json_boolean(r.from_cache));
		json_object_set_new(j, "wall_s", json_real(r.wall_s));
		fetch_result_free(&r);
	} else {
		json_object_set_new(j, "error", json_string(pyti_err_str(&err)));
		const char *fc = pyti_fclass_name(err.fclass);
		json_object_set_new(j, "class", fc ? json_string(fc) : json_null());
	}
	char *s = json_dumps(j, JSON_INDENT(1));
	printf("%s\n", s);
	free(s);
	json_decref(j);
	return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--fetch"))
		return driver(argc, argv);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipconf_merge),
		cmocka_unit_test(test_pipconf_file_urls_and_load),
		cmocka_unit_test(test_cache_key),
		cmocka_unit_test(test_norm_name),
		cmocka_unit_test(test_classify_pip),
		cmocka_unit_test(test_hash_dir),
		cmocka_unit_test(test_cache_roundtrip),
		cmocka_unit_test(test_read_requirements),
		cmocka_unit_test(test_bad_requests),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

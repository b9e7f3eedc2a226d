/* Unit tests for manager_cap_outputs: what runs/<job>/ keeps of a job's out/ (issue 8, point 5). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "manager.h"

static char tmpdir[] = "/tmp/pyti-keep-XXXXXX";

static void put(const char *rel, size_t bytes)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", tmpdir, rel);
	_cleanup_free_ char *data = xmalloc(bytes + 1);
	memset(data, 'x', bytes);
	struct pyti_err err = {0};
	assert_int_equal(write_file_atomic(p, data, bytes, 0644, &err), 0);
}

static bool there(const char *root, const char *rel)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", root, rel);
	struct stat st;
	return lstat(p, &st) == 0;
}

static void test_cap_order_and_report(void **state)
{
	(void)state;
	_cleanup_free_ char *out = xasprintf("%s/out", tmpdir), *logs = xasprintf("%s/out/logs", tmpdir);
	_cleanup_free_ char *outside = xasprintf("%s/outside", tmpdir);
	assert_int_equal(mkdir(out, 0755), 0);
	assert_int_equal(mkdir(logs, 0755), 0);
	assert_int_equal(mkdir(outside, 0755), 0);
	put("out/results.json", 100);
	put("out/junit-test.xml", 100);
	put("out/logs/test.log", 300);
	put("out/aaa.bin", 400); /* sorts first by name, but comes after results, JUnit and logs */
	put("out/zzz.bin", 50);
	put("outside/victim", 5000);
	/* links are neither followed nor counted: the file beyond stays */
	_cleanup_free_ char *ln = xasprintf("%s/link", out);
	assert_int_equal(symlink(outside, ln), 0);
	_cleanup_json_ json_t *res = json_object();
	struct pyti_err err = {0};
	assert_int_equal(manager_cap_outputs(out, 600, res, &err), 0);
	assert_true(there(out, "results.json") && there(out, "junit-test.xml") && there(out, "logs/test.log"));
	assert_false(there(out, "aaa.bin"));
	assert_true(there(out, "zzz.bin")); /* 100+100+300+50 fits in 600 */
	assert_true(there(out, "link") && there(outside, "victim"));
	json_t *om = json_object_get(res, "omitted_outputs");
	assert_non_null(om);
	assert_int_equal(pj_int(om, "files", -1), 1);
	assert_int_equal(pj_int(om, "bytes", -1), 400);
	json_t *first = json_array_get(json_object_get(om, "first"), 0);
	assert_string_equal(pj_str(first, "file", ""), "aaa.bin");

	/* under the cap: nothing removed, nothing said */
	_cleanup_json_ json_t *res2 = json_object();
	assert_int_equal(manager_cap_outputs(out, 1 << 20, res2, &err), 0);
	assert_null(json_object_get(res2, "omitted_outputs"));
	/* out/ itself a link: refused, not followed */
	_cleanup_free_ char *lout = xasprintf("%s/lout", tmpdir);
	assert_int_equal(symlink(outside, lout), 0);
	assert_int_equal(manager_cap_outputs(lout, 10, NULL, &err), -1);
	assert_true(there(outside, "victim"));
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	return rm_rf(tmpdir, &err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cap_order_and_report),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

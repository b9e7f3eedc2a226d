/* Unit tests for the manager's reports: JUnit counts from hostile XML, table escaping, JUnit output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "manager.h"

static char tmpdir[] = "/tmp/pyti-report-XXXXXX";

static char *write_tmp(const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", tmpdir, name);
	struct pyti_err err = {0};
	assert_int_equal(write_file_atomic(p, text, strlen(text), 0644, &err), 0);
	return p;
}

static void test_junit_counts(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	_cleanup_free_ char *p = write_tmp("j.xml",
		"<?xml version=\"1.0\"?><testsuites><testsuite name=\"pytest\" errors=\"1\" failures=\"2\" "
		"skipped=\"3\" tests=\"216\"><testcase name=\"a\"/></testsuite></testsuites>");
	_cleanup_json_ json_t *c = report_junit_counts(p, &err);
	assert_non_null(c);
	assert_int_equal(pj_int(c, "passed", -1), 210);
	assert_int_equal(pj_int(c, "failed", -1), 2);
	assert_int_equal(pj_int(c, "errors", -1), 1);
	assert_int_equal(pj_int(c, "skipped", -1), 3);
	/* a bare <testsuite> root (older pytest) */
	_cleanup_free_ char *p2 = write_tmp("j2.xml", "<testsuite tests=\"2\" failures=\"1\"/>");
	_cleanup_json_ json_t *c2 = report_junit_counts(p2, &err);
	assert_int_equal(pj_int(c2, "passed", -1), 1);
}

static void test_junit_hostile(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	/* external entities must not be resolved, garbage must be an error, not a crash */
	_cleanup_free_ char *p = write_tmp("x.xml",
		"<?xml version=\"1.0\"?><!DOCTYPE t [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"
		"<testsuite tests=\"1\" failures=\"0\"><x>&e;</x></testsuite>");
	_cleanup_json_ json_t *c = report_junit_counts(p, &err);
	if (c)
		assert_int_equal(pj_int(c, "passed", -1), 1);
	_cleanup_free_ char *g = write_tmp("g.xml", "\x01\x02 not xml <<<");
	assert_null(report_junit_counts(g, &err));
	_cleanup_free_ char *neg = write_tmp("n.xml", "<testsuite tests=\"-5\" failures=\"99\"/>");
	_cleanup_json_ json_t *cn = report_junit_counts(neg, &err);
	assert_int_equal(pj_int(cn, "passed", -1), 0);
}

static json_t *sample(void)
{
	static const char doc[] =
		"{\"job\": \"j1\", \"dist\": \"evil\\u001b[31m==1\", \"image\": \"bookworm (Python 3.11.2)\","
		" \"backend\": \"ns\", \"recipe\": \"default\", \"status\": \"failed\", \"wall_s\": 3.5,"
		" \"tasks\": [{\"task\": \"test\", \"status\": \"failed\", \"exit_code\": 1, \"wall_s\": 1.25,"
		" \"cpu_user_s\": 1.0, \"cpu_sys_s\": 0.25, \"max_rss_kb\": 20480,"
		" \"output\": \"line1\\n\\u001b]0;pwned\\u0007line2 <&> \\u0001\\n\"},"
		" {\"task\": \"after\", \"status\": \"skipped\", \"failure_class\": \"DependsOn\", \"output\": null}]}";
	struct pyti_err err = {0};
	json_t *j = pj_loads(doc, sizeof doc - 1, &err);
	assert_non_null(j);
	return j;
}

static void test_table_escapes(void **state)
{
	(void)state;
	_cleanup_json_ json_t *r = sample();
	char *mem = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&mem, &len);
	report_table(f, r, true);
	fclose(f);
	assert_null(strchr(mem, '\x1b'));
	assert_null(strchr(mem, '\x07'));
	assert_non_null(strstr(mem, "\\x1b"));
	assert_non_null(strstr(mem, "DependsOn"));
	assert_non_null(strstr(mem, "20.0 MiB"));
	assert_non_null(strstr(mem, "exit status 1"));
	free(mem);
}

static void test_junit_write(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	_cleanup_json_ json_t *r = sample();
	_cleanup_free_ char *p = xasprintf("%s/out.xml", tmpdir);
	assert_int_equal(report_junit_write(r, p, &err), 0);
	_cleanup_json_ json_t *c = report_junit_counts(p, &err); /* our own output parses back */
	assert_non_null(c);
	assert_int_equal(pj_int(c, "failed", -1), 1);
	assert_int_equal(pj_int(c, "skipped", -1), 1);
	struct buf b = BUF_INIT(0);
	assert_int_equal(read_file(p, &b, &err), 0);
	assert_non_null(strstr(b.data, "&lt;&amp;&gt;"));
	assert_null(strchr(b.data, '\x01'));
	buf_free(&b);
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
		cmocka_unit_test(test_junit_counts), cmocka_unit_test(test_junit_hostile),
		cmocka_unit_test(test_table_escapes), cmocka_unit_test(test_junit_write),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

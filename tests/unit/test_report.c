/* Unit tests for the manager's reports: JUnit counts from hostile XML, table escaping, JUnit output. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <libxml/parser.h>

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
	/* external entities must not be resolved: were e.xml read in, its suite would count 50 more */
	_cleanup_free_ char *ent = write_tmp("e.xml", "<testsuite tests=\"50\" failures=\"0\"/>");
	_cleanup_free_ char *doc = xasprintf("<?xml version=\"1.0\"?><!DOCTYPE t [<!ENTITY e SYSTEM \"file://%s\">]>"
					     "<testsuites><testsuite tests=\"1\" failures=\"0\"/>&e;</testsuites>",
					     ent);
	_cleanup_free_ char *p = write_tmp("x.xml", doc);
	_cleanup_json_ json_t *c = report_junit_counts(p, &err);
	assert_non_null(c);
	assert_int_equal(pj_int(c, "passed", -1), 1);
	/* garbage must be an error, not a crash */
	_cleanup_free_ char *g = write_tmp("g.xml", "\x01\x02 not xml <<<");
	assert_null(report_junit_counts(g, &err));
	_cleanup_free_ char *neg = write_tmp("n.xml", "<testsuite tests=\"-5\" failures=\"99\"/>");
	_cleanup_json_ json_t *cn = report_junit_counts(neg, &err);
	assert_int_equal(pj_int(cn, "passed", -1), 0);
}

static void test_junit_counts_saturate(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	/* two suites at LONG_MAX: the sums stick at LONG_MAX (UBSan would report a signed overflow) */
	_cleanup_free_ char *p = write_tmp("big.xml",
		"<testsuites><testsuite tests=\"9223372036854775807\" failures=\"9223372036854775807\" "
		"errors=\"9223372036854775807\" skipped=\"9223372036854775807\"/>"
		"<testsuite tests=\"9223372036854775807\" failures=\"9223372036854775807\" "
		"errors=\"9223372036854775807\" skipped=\"99999999999999999999999\"/></testsuites>");
	_cleanup_json_ json_t *c = report_junit_counts(p, &err);
	assert_non_null(c);
	assert_true(pj_int(c, "failed", -1) == LONG_MAX);
	assert_true(pj_int(c, "errors", -1) == LONG_MAX);
	assert_true(pj_int(c, "skipped", -1) == LONG_MAX);
	assert_int_equal(pj_int(c, "passed", -1), 0);
	/* many tests, few failures: passed is the difference, not a wrapped one */
	_cleanup_free_ char *p2 = write_tmp("big2.xml",
		"<testsuites><testsuite tests=\"9223372036854775807\" failures=\"1\"/>"
		"<testsuite tests=\"5\" failures=\"1\" errors=\"1\"/></testsuites>");
	_cleanup_json_ json_t *c2 = report_junit_counts(p2, &err);
	assert_true(pj_int(c2, "passed", -1) == LONG_MAX - 3);
	assert_int_equal(pj_int(c2, "failed", -1), 2);
	/* and the table's failed+errors sum of such counts */
	_cleanup_json_ json_t *r = json_pack("{s:s, s:[{s:s, s:s, s:O}]}", "status", "failed", "tasks", "task",
					     "test", "status", "passed", "tests", c);
	char *mem = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&mem, &len);
	report_table(f, r, false);
	fclose(f);
	assert_non_null(strstr(mem, "0 passed, 9223372036854775807 failed"));
	free(mem);
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

/* A recipe name, failure class and output with bytes XML 1.0 forbids: the file still parses. */
static void test_junit_write_controls(void **state)
{
	(void)state;
	static const char doc[] =
		"{\"dist\": \"d\\u0002\", \"recipe\": \"r\\u001b[31m\\u0007\", \"status\": \"failed\", \"wall_s\": 1,"
		" \"tasks\": [{\"task\": \"t\\u000b\", \"status\": \"failed\", \"failure_class\": \"OOM\\u0001\","
		" \"exit_code\": 1, \"output\": \"x\\u001b\\ufffe\\u202e\\u0000y\"},"
		" {\"task\": \"s\", \"status\": \"skipped\", \"failure_class\": \"Dep\\u0008\", \"output\": \"\"}]}";
	struct pyti_err err = {0};
	_cleanup_json_ json_t *r = json_loadb(doc, sizeof doc - 1, JSON_ALLOW_NUL, NULL);
	assert_non_null(r);
	_cleanup_free_ char *p = xasprintf("%s/ctl.xml", tmpdir);
	assert_int_equal(report_junit_write(r, p, &err), 0);
	struct buf b = BUF_INIT(0);
	assert_int_equal(read_file(p, &b, &err), 0);
	for (size_t i = 0; i < b.len; i++) {
		unsigned char c = (unsigned char)b.data[i];
		assert_true(c >= 0x20 || c == '\n' || c == '\t' || c == '\r');
	}
	assert_null(strstr(b.data, "\xef\xbf\xbe"));     /* U+FFFE */
	assert_non_null(strstr(b.data, "pyti.r\xef\xbf\xbd[31m")); /* recipe, ESC replaced */
	assert_non_null(strstr(b.data, "OOM\xef\xbf\xbd"));
	assert_non_null(strstr(b.data, "\xe2\x80\xae")); /* U+202E is valid XML: kept */
	buf_free(&b);
	/* libxml2 (strict) reads it back */
	xmlDoc *x = xmlReadFile(p, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	assert_non_null(x);
	xmlFreeDoc(x);
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
		cmocka_unit_test(test_junit_counts_saturate), cmocka_unit_test(test_junit_write_controls),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

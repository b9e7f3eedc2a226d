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
	/* external entities must not be resolved (were e.xml read in, its suite would count 50 more):
	 * a JUnit file with a DOCTYPE is refused whole, so none is ever looked at */
	_cleanup_free_ char *ent = write_tmp("e.xml", "<testsuite tests=\"50\" failures=\"0\"/>");
	_cleanup_free_ char *doc = xasprintf("<?xml version=\"1.0\"?><!DOCTYPE t [<!ENTITY e SYSTEM \"file://%s\">]>"
					     "<testsuites><testsuite tests=\"1\" failures=\"0\"/>&e;</testsuites>",
					     ent);
	_cleanup_free_ char *p = write_tmp("x.xml", doc);
	_cleanup_json_ json_t *c = report_junit_counts(p, &err);
	assert_null(c);
	assert_non_null(strstr(err.msg, "DOCTYPE"));
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

/* pytest's outcomes as it writes them: totals from the suite, xfail split out of skipped, the
 * failed and erroring tests listed with id, message and the traceback's "E" line. */
static void test_junit_per_test(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	_cleanup_free_ char *p = write_tmp("pt.xml",
		"<?xml version=\"1.0\" encoding=\"utf-8\"?><testsuites><testsuite name=\"pytest\" errors=\"1\" "
		"failures=\"1\" skipped=\"2\" tests=\"6\">"
		"<testcase classname=\"tests.test_x\" name=\"test_a\" time=\"0.001\"/>"
		"<testcase classname=\"tests.test_x\" name=\"test_b\"/>"
		"<testcase classname=\"tests.test_x\" name=\"test_f\"><failure message=\"assert 1 == 2\">"
		"def test_f():\n&gt;       assert 1 == 2\nE       assert 1 == 2\n\ntests/test_x.py:3: AssertionError"
		"</failure></testcase>"
		"<testcase classname=\"tests.test_x\" name=\"test_e\"><error message=\"failed on setup\">"
		"  \n\n  @pytest.fixture\n</error></testcase>"
		"<testcase classname=\"tests.test_x\" name=\"test_s\"><skipped type=\"pytest.skip\" message=\"no\"/></testcase>"
		"<testcase classname=\"tests.test_x\" name=\"test_x\"><skipped type=\"pytest.xfail\" message=\"bug\"/></testcase>"
		"</testsuite></testsuites>");
	_cleanup_json_ json_t *c = report_junit_counts(p, &err);
	assert_non_null(c);
	assert_int_equal(pj_int(c, "passed", -1), 2);
	assert_int_equal(pj_int(c, "failed", -1), 1);
	assert_int_equal(pj_int(c, "errors", -1), 1);
	assert_int_equal(pj_int(c, "skipped", -1), 1);
	assert_int_equal(pj_int(c, "xfailed", -1), 1);
	assert_int_equal(pj_int(c, "xpassed", -1), 0);
	assert_int_equal(pj_int(c, "total", -1), 6);
	assert_true(json_is_false(json_object_get(c, "no_tests")));
	json_t *fl = json_object_get(c, "failures");
	assert_int_equal(json_array_size(fl), 2);
	json_t *f0 = json_array_get(fl, 0), *f1 = json_array_get(fl, 1);
	assert_string_equal(pj_str(f0, "id", ""), "tests.test_x::test_f");
	assert_string_equal(pj_str(f0, "outcome", ""), "failed");
	assert_string_equal(pj_str(f0, "message", ""), "assert 1 == 2");
	assert_string_equal(pj_str(f0, "traceback", ""), "assert 1 == 2");
	assert_string_equal(pj_str(f1, "outcome", ""), "error");
	assert_string_equal(pj_str(f1, "traceback", ""), "@pytest.fixture"); /* no "E" line: first non-blank */

	/* an empty suite (exit 5, no tests collected) is "no tests" */
	_cleanup_free_ char *e = write_tmp("empty.xml", "<testsuites><testsuite tests=\"0\"/></testsuites>");
	_cleanup_json_ json_t *ce = report_junit_counts(e, &err);
	assert_true(json_is_true(json_object_get(ce, "no_tests")));
	/* no totals at all: the test cases themselves */
	_cleanup_free_ char *n = write_tmp("nototal.xml",
		"<testsuite><testcase name=\"a\"/><testcase name=\"b\"><failure/></testcase></testsuite>");
	_cleanup_json_ json_t *cn = report_junit_counts(n, &err);
	assert_int_equal(pj_int(cn, "passed", -1), 1);
	assert_int_equal(pj_int(cn, "failed", -1), 1);
	assert_int_equal(pj_int(cn, "total", -1), 2);
	/* missing attributes: id "?" and null message/traceback, no crash */
	assert_string_equal(pj_str(json_array_get(json_object_get(cn, "failures"), 0), "id", ""), "b");
	assert_true(json_is_null(json_object_get(json_array_get(json_object_get(cn, "failures"), 0), "message")));
	_cleanup_free_ char *m = write_tmp("noname.xml", "<testsuite><testcase><error/></testcase></testsuite>");
	_cleanup_json_ json_t *cm = report_junit_counts(m, &err);
	assert_string_equal(pj_str(json_array_get(json_object_get(cm, "failures"), 0), "id", ""), "?");
}

/* Hostile JUnit: many failures, huge messages, deep nesting, a DTD, control bytes, a non-JUnit root. */
static void test_junit_per_test_hostile(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	struct buf b = BUF_INIT(0);
	buf_puts(&b, "<testsuite>");
	for (int i = 0; i < 3000; i++) {
		char line[64];
		snprintf(line, sizeof line, "<testcase name=\"t%d\"><failure message=\"", i);
		buf_puts(&b, line);
		for (int k = 0; k < 300; k++)
			buf_puts(&b, "\xe2\x82\xac"); /* 900 bytes: the 1024-byte cap may cut a character */
		buf_puts(&b, "\"/></testcase>");
	}
	buf_puts(&b, "</testsuite>");
	_cleanup_free_ char *p = write_tmp("many.xml", b.data);
	buf_free(&b);
	_cleanup_json_ json_t *c = report_junit_counts(p, &err);
	assert_non_null(c);
	assert_int_equal(pj_int(c, "failed", -1), 3000);
	assert_int_equal(json_array_size(json_object_get(c, "failures")), 1000);
	assert_true(json_is_true(json_object_get(c, "failures_truncated")));
	assert_true(strlen(pj_str(json_array_get(json_object_get(c, "failures"), 0), "message", "")) <= 1024);

	/* a message past the cap is cut, and stays valid UTF-8 (jansson would refuse it otherwise) */
	struct buf h = BUF_INIT(0);
	buf_puts(&h, "<testsuite><testcase name=\"h\"><failure message=\"x");
	for (int k = 0; k < 2000; k++)
		buf_puts(&h, "\xe2\x82\xac");
	buf_puts(&h, "\"/></testcase></testsuite>");
	_cleanup_free_ char *ph = write_tmp("huge.xml", h.data);
	buf_free(&h);
	_cleanup_json_ json_t *ch = report_junit_counts(ph, &err);
	const char *msg = pj_str(json_array_get(json_object_get(ch, "failures"), 0), "message", "");
	assert_true(strlen(msg) <= 1024 + 3);
	assert_true(strlen(msg) > 1000);

	/* 10000 nested suites: refused by the parser or walked only 32 deep, never a stack overflow */
	struct buf d = BUF_INIT(0);
	for (int i = 0; i < 10000; i++)
		buf_puts(&d, "<testsuite>");
	buf_puts(&d, "<testcase name=\"deep\"><failure/></testcase>");
	for (int i = 0; i < 10000; i++)
		buf_puts(&d, "</testsuite>");
	_cleanup_free_ char *pd = write_tmp("deep.xml", d.data);
	buf_free(&d);
	_cleanup_json_ json_t *cd = report_junit_counts(pd, &err);
	if (cd)
		assert_int_equal(pj_int(cd, "failed", -1), 0);
	/* nesting within the cap: every case counts */
	_cleanup_free_ char *ps = write_tmp("nest.xml",
		"<testsuites><testsuite><testsuite><testcase name=\"a\"/><testcase name=\"b\"><error/></testcase>"
		"</testsuite></testsuite></testsuites>");
	_cleanup_json_ json_t *cs = report_junit_counts(ps, &err);
	assert_int_equal(pj_int(cs, "errors", -1), 1);
	assert_int_equal(pj_int(cs, "passed", -1), 1);

	/* an internal-entity bomb: refused for its DOCTYPE, before libxml2 sees it */
	_cleanup_free_ char *pb = write_tmp("bomb.xml",
		"<?xml version=\"1.0\"?><!DOCTYPE t [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">"
		"<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><testsuite tests=\"1\"><testcase name=\"&c;\"><failure "
		"message=\"&c;\"/></testcase></testsuite>");
	assert_null(report_junit_counts(pb, &err));
	assert_non_null(strstr(pyti_err_str(&err), "DOCTYPE"));
	/* a raw control byte is not XML: the file is refused, not half-read */
	_cleanup_free_ char *pc = write_tmp("ctl.xml",
		"<testsuite tests=\"1\"><testcase name=\"a\x1b[2J\"><failure message=\"\x07\"/></testcase></testsuite>");
	assert_null(report_junit_counts(pc, &err));
	/* another root element: nothing counted from inside it */
	_cleanup_free_ char *pr = write_tmp("root.xml",
		"<html><testsuite tests=\"5\" failures=\"5\"><testcase name=\"a\"><failure/></testcase></testsuite></html>");
	_cleanup_json_ json_t *cr = report_junit_counts(pr, &err);
	assert_non_null(cr);
	assert_int_equal(pj_int(cr, "failed", -1), 0);
	assert_true(json_is_true(json_object_get(cr, "no_tests")));
}

/* --junit: a suite per test task read back from the kept JUnit file, one testcase per test; an
 * infrastructure class is an <error>. */
static void test_junit_write_tests(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	_cleanup_free_ char *j = write_tmp("junit-test.xml",
		"<testsuites><testsuite tests=\"3\" failures=\"1\" skipped=\"1\">"
		"<testcase classname=\"t.m\" name=\"a\"/>"
		"<testcase classname=\"t.m\" name=\"b\"><failure message=\"boom &lt;x&gt;\">E   boom</failure></testcase>"
		"<testcase classname=\"t.m\" name=\"c\"><skipped type=\"pytest.xfail\" message=\"bug\"/></testcase>"
		"</testsuite></testsuites>");
	_cleanup_json_ json_t *counts = report_junit_counts(j, &err);
	assert_non_null(counts);
	json_object_set_new(counts, "junit", json_string("out/junit-test.xml"));
	_cleanup_json_ json_t *r = json_pack("{s:s, s:s, s:s, s:[{s:s, s:s, s:n, s:i, s:O}, {s:s, s:s, s:s}]}",
					     "dist", "d==1", "status", "failed", "logs", tmpdir, "tasks", "task",
					     "test", "status", "failed", "failure_class", "exit_code", 1, "tests",
					     counts, "task", "oom", "status", "failed", "failure_class", "OOM");
	assert_non_null(r);
	_cleanup_free_ char *p = xasprintf("%s/w.xml", tmpdir);
	assert_int_equal(report_junit_write(r, p, &err), 0);
	struct buf b = BUF_INIT(0);
	assert_int_equal(read_file(p, &b, &err), 0);
	assert_non_null(strstr(b.data, "<testsuite name=\"d==1:test\" tests=\"3\" failures=\"1\""));
	assert_non_null(strstr(b.data, "<testcase classname=\"t.m\" name=\"b\""));
	assert_non_null(strstr(b.data, "message=\"boom &lt;x&gt;\""));
	assert_non_null(strstr(b.data, "type=\"pytest.xfail\""));
	assert_non_null(strstr(b.data, "<error type=\"OOM\""));
	assert_non_null(strstr(b.data, "<failure type=\"Failed\" message=\"exit status 1\""));
	buf_free(&b);
	/* and the file parses back: 2 task cases + 3 tests (the counts read both suites' cases) */
	_cleanup_json_ json_t *back = report_junit_counts(p, &err);
	assert_non_null(back);
	/* the table says which tests failed */
	char *mem = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&mem, &len);
	report_table(f, r, true);
	fclose(f);
	assert_non_null(strstr(mem, "FAILED t.m::b: boom <x>"));
	assert_non_null(strstr(mem, "1 xfailed"));
	free(mem);
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

/* Every test case (compare's added/removed tests): outcome per case, failures with their text's tail. */
static void test_junit_cases(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	static const char xml[] =
		"<testsuites><testsuite tests=\"5\"><testcase classname=\"t.m\" name=\"ok\"/>"
		"<testcase classname=\"t.m\" name=\"bad\"><failure message=\"assert 0\">def f():\n"
		"t/m.py:3: AssertionError</failure></testcase>"
		"<testcase name=\"err\"><error message=\"boom\"/></testcase>"
		"<testcase classname=\"t.m\" name=\"sk\"><skipped type=\"pytest.skip\"/></testcase>"
		"<testsuite><testcase classname=\"t.n\" name=\"xf\"><skipped type=\"pytest.xfail\"/></testcase></testsuite>"
		"</testsuite></testsuites>";
	_cleanup_json_ json_t *c = report_junit_cases_mem(xml, strlen(xml), "j.xml", &err);
	assert_non_null(c);
	assert_int_equal(json_array_size(c), 5);
	static const char *const want[][2] = {{"t.m::ok", "passed"}, {"t.m::bad", "failed"}, {"err", "error"},
					      {"t.m::sk", "skipped"}, {"t.n::xf", "xfailed"}};
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(pj_str(json_array_get(c, i), "id", ""), want[i][0]);
		assert_string_equal(pj_str(json_array_get(c, i), "outcome", ""), want[i][1]);
	}
	assert_string_equal(pj_str(json_array_get(c, 1), "message", ""), "assert 0");
	assert_non_null(strstr(pj_str(json_array_get(c, 1), "text", ""), "t/m.py:3: AssertionError"));
	assert_null(json_object_get(json_array_get(c, 0), "text"));
	/* the parser's limits hold: a DOCTYPE is refused */
	static const char dtd[] = "<!DOCTYPE x><testsuite/>";
	assert_null(report_junit_cases_mem(dtd, strlen(dtd), "d.xml", &err));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_junit_counts), cmocka_unit_test(test_junit_hostile),
		cmocka_unit_test(test_table_escapes), cmocka_unit_test(test_junit_write),
		cmocka_unit_test(test_junit_counts_saturate), cmocka_unit_test(test_junit_write_controls),
		cmocka_unit_test(test_junit_per_test), cmocka_unit_test(test_junit_per_test_hostile),
		cmocka_unit_test(test_junit_write_tests), cmocka_unit_test(test_junit_cases),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

/* Unit tests for the web UI (issue 12): the escaper and the form reader as pure functions, then the
 * pages on a real SQLite store with recorded jobs (the browser test, tests/integration/test_web.py,
 * drives the same pages through a real master in chromium). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "web.h"

static char *esc(const char *s, size_t n)
{
	struct buf b = BUF_INIT(0);
	web_html_text(&b, s, n);
	return buf_steal(&b);
}

static void test_escape(void **state)
{
	(void)state;
	const char *in = "<script>\"x\"&'y'</script>";
	char *o = esc(in, strlen(in));
	assert_string_equal(o, "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;");
	free(o);
	o = esc("a\x1b[31mb\tc\nd\x7f", 12);
	assert_string_equal(o, "a\xe2\x90\x9b[31mb\tc\nd\xe2\x90\xa1"); /* ESC → U+241B, DEL → U+2421 */
	free(o);
	o = esc("x\xff\xc0\x80y\0z", 7); /* not UTF-8, an overlong form, NUL */
	assert_string_equal(o, "x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdy\xef\xbf\xbdz");
	free(o);
	o = esc("\xe2\x80\xae" "abc \xc2\x9b \xc3\xa9", 12); /* RLO and a C1 control go, é stays */
	assert_string_equal(o, "\xef\xbf\xbd" "abc \xef\xbf\xbd \xc3\xa9");
	free(o);
}

static void test_form(void **state)
{
	(void)state;
	struct web_request rq = {0};
	char *s = NULL;
	const char *in = "token=a%20b+c&x=&flag&e=%C3%A9";
	assert_int_equal(web_parse_form(in, strlen(in), &rq, &s), 0);
	assert_int_equal(rq.n_args, 4);
	assert_string_equal(rq.args[0].key, "token");
	assert_string_equal(rq.args[0].value, "a b c");
	assert_string_equal(rq.args[1].value, "");
	assert_string_equal(rq.args[2].key, "flag");
	assert_string_equal(rq.args[3].value, "\xc3\xa9");
	free(s);
	assert_int_equal(web_parse_form("a=%zz", 5, &rq, &s), -1);
	free(s);
	assert_int_equal(web_parse_form("a=%00", 5, &rq, &s), -1);
	free(s);
	char big[WEB_FORM_LIMIT + 2];
	memset(big, 'a', sizeof big);
	assert_int_equal(web_parse_form(big, sizeof big, &rq, &s), -1);
	free(s);
}

/* ---- pages on a real store ---- */
struct env {
	char dir[64];
	struct store *st;
	char run[STORE_ID_SIZE], job_ok[STORE_ID_SIZE], job_bad[STORE_ID_SIZE];
};

static json_t *results(const char *dist, bool pass)
{
	return json_pack("{s:s, s:s, s:s, s:[{s:s, s:s, s:f, s:i, s:f, s:i, s:{s:i, s:i, s:i, s:i}}]}", "dist", dist,
			 "status", pass ? "passed" : "failed", "recipe", "default", "tasks", "task", "test", "status",
			 pass ? "passed" : "failed", "wall_s", 1.5, "exit_code", pass ? 0 : 1, "cpu_user_s", 1.0,
			 "max_rss_kb", 2048, "tests", "passed", 3, "failed", pass ? 0 : 1, "skipped", 0, "total",
			 pass ? 3 : 4);
}

static int setup(void **state)
{
	struct env *e = xcalloc(1, sizeof *e);
	strcpy(e->dir, "/tmp/pyti-test-web-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	_cleanup_free_ char *url = xasprintf("%s/pyti.db", e->dir);
	struct pyti_err err = {0};
	assert_int_equal(store_open(url, &e->st, &err), 0);
	struct store_run_spec spec = {.origin = "local"};
	assert_int_equal(store_run_new(e->st, &spec, e->run, &err), 0);
	json_t *r1 = results("good==1.0", true), *r2 = results("<b>bad</b>", false);
	struct store_job_record a = {.dist = "good==1.0", .suite = "bookworm", .backend = "ns", .results = r1};
	struct store_job_record b = {.dist = "<b>bad</b>", .suite = "bookworm", .backend = "ns", .results = r2};
	assert_int_equal(store_record_job(e->st, e->run, &a, e->job_ok, &err), 0);
	assert_int_equal(store_record_job(e->st, e->run, &b, e->job_bad, &err), 0);
	json_decref(r1);
	json_decref(r2);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	store_close(e->st);
	_cleanup_free_ char *cmd = xasprintf("rm -rf '%s'", e->dir);
	assert_int_equal(system(cmd), 0);
	free(e);
	return 0;
}

static bool always(void *ctx, const char *tok)
{
	(void)ctx;
	return strcmp(tok, "good-token") == 0;
}

static struct web_response get(struct env *e, const char *method, const char *path, const char *accept)
{
	struct web_request rq = {.method = method, .path = path, .accept = accept, .user_token = always};
	struct web_response out;
	assert_int_equal(web_handle(e->st, &rq, &out), 0);
	return out;
}

static void test_pages(void **state)
{
	struct env *e = *state;
	struct web_response r = get(e, "GET", "/", NULL);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, e->run));
	assert_non_null(strstr(r.body, "2 × 1"));
	web_response_free(&r);

	_cleanup_free_ char *p = xasprintf("/run/%s", e->run);
	r = get(e, "GET", p, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.ctype, "text/html; charset=utf-8");
	assert_non_null(strstr(r.body, e->job_ok));
	assert_null(strstr(r.body, "<b>bad"));	/* the hostile name is text */
	assert_non_null(strstr(r.body, "&lt;b&gt;bad&lt;/b&gt;"));
	assert_non_null(strstr(r.body, "2 of 2 jobs shown"));
	web_response_free(&r);

	r = get(e, "GET", p, "application/json");
	assert_string_equal(r.ctype, "application/json");
	json_t *doc = json_loads(r.body, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(doc, "jobs")), 2);
	json_t *j0 = json_array_get(json_object_get(doc, "jobs"), 0);
	assert_int_equal(pj_int(j0, "tests_passed", -1), 3);
	assert_string_equal(pj_str(json_array_get(json_object_get(doc, "jobs"), 1), "verdict", ""), "test-failed");
	json_decref(doc);
	web_response_free(&r);

	_cleanup_free_ char *jp = xasprintf("/api/job/%s", e->job_bad);
	r = get(e, "GET", jp, NULL);
	assert_int_equal(r.status, 200);
	web_response_free(&r);
	r = get(e, "GET", jp + 4, NULL);
	assert_non_null(strstr(r.body, "id=\"tasks\""));
	web_response_free(&r);

	r = get(e, "GET", "/dist/good", NULL); /* the bare name finds its pinned form */
	assert_non_null(strstr(r.body, e->job_ok));
	web_response_free(&r);
	r = get(e, "GET", "/run/rffffffffffffffff", NULL);
	assert_int_equal(r.status, 404);
	web_response_free(&r);
	r = get(e, "GET", "/nothing", "application/json");
	assert_int_equal(r.status, 404);
	web_response_free(&r);
	r = get(e, "GET", "/static/pyti.js", NULL);
	assert_int_equal(r.status, 200);
	assert_true(r.static_file);
	web_response_free(&r);
}

static void test_rerun(void **state)
{
	struct env *e = *state;
	_cleanup_free_ char *p = xasprintf("/run/%s/rerun", e->run);
	struct web_request rq = {.method = "POST", .path = p, .user_token = always};
	struct web_response out;
	assert_int_equal(web_handle(e->st, &rq, &out), 0);
	assert_int_equal(out.status, 403); /* no token */
	web_response_free(&out);
	rq.args[0] = (struct web_arg){"token", "good-token"};
	rq.n_args = 1;
	rq.origin = "http://evil.example";
	rq.host = "127.0.0.1:8765";
	assert_int_equal(web_handle(e->st, &rq, &out), 0);
	assert_int_equal(out.status, 403); /* another site's form */
	web_response_free(&out);
	rq.origin = "http://127.0.0.1:8765";
	assert_int_equal(web_handle(e->st, &rq, &out), 0);
	assert_int_equal(out.status, 303);
	assert_true(out.queued_work);
	assert_non_null(out.location);
	json_t *st = NULL;
	struct pyti_err err = {0};
	assert_int_equal(store_status(e->st, out.location + 5, &st, &err), 0);
	json_t *jobs = json_object_get(st, "jobs");
	assert_int_equal(json_array_size(jobs), 1); /* only the one that did not pass */
	assert_string_equal(pj_str(json_array_get(jobs, 0), "dist", ""), "<b>bad</b>");
	json_decref(st);
	/* the two as a comparison: the run, the rerun (its job still queued: pending) */
	_cleanup_free_ char *cp = xasprintf("/compare/%s/%s", e->run, out.location + 5);
	web_response_free(&out);
	struct web_response r = get(e, "GET", cp, "application/json");
	assert_int_equal(r.status, 200);
	json_t *cmp = json_loads(r.body, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(cmp, "pairs")), 2);
	json_decref(cmp);
	web_response_free(&r);
	r = get(e, "GET", cp, NULL);
	assert_non_null(strstr(r.body, "id=\"pairs\""));
	assert_null(strstr(r.body, "<b>bad"));
	web_response_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_form),
		cmocka_unit_test_setup_teardown(test_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rerun, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

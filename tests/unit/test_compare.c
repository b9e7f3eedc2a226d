/* Unit tests for src/compare: the verdicts, per-test changes, signatures and reports on plain JSON
 * (the store's shapes), then the same path on a real SQLite store (runs recorded, read back with
 * store_results, compared), and the store's parent link that `pyti rerun` writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "compare-int.h"
#include "store.h"

/* A results.json with one test task: passed/failed, its failing test ids (NULL-terminated). */
static json_t *results(const char *status, const char *const *fails)
{
	json_t *fl = json_array();
	for (size_t i = 0; fails && fails[i]; i++)
		json_array_append_new(fl, json_pack("{s:s, s:s, s:s, s:s}", "id", fails[i], "outcome", "failed",
						    "message", "assert 1 == 2", "traceback", "assert 1 == 2"));
	size_t nf = json_array_size(fl);
	return json_pack("{s:s, s:[{s:s, s:s, s:n, s:f, s:f, s:f, s:i}, {s:s, s:s, s:n, s:f, s:f, s:f, s:i, "
			 "s:{s:i, s:i, s:i, s:b, s:o}}]}",
			 "status", status, "tasks", "task", "install", "status", "passed", "failure_class", "wall_s",
			 2.0, "cpu_user_s", 1.0, "cpu_sys_s", 0.1, "max_rss_kb", 50000, "task", "test", "status",
			 nf ? "failed" : "passed", "failure_class", "wall_s", 3.0, "cpu_user_s", 2.0, "cpu_sys_s", 0.2,
			 "max_rss_kb", 60000, "tests", "passed", 5, "failed", (int)nf, "total", 5 + (int)nf, "no_tests",
			 0, "failures", fl);
}

static json_t *job(const char *id, const char *dist, const char *suite, const char *verdict, json_t *res)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:i, s:s?, s:n, s:o}", "job_id", id, "dist", dist, "suite", suite,
			 "state", "done", "attempt", 1, "verdict", verdict, "failure_class", "results",
			 res ? res : json_null());
}

static json_t *run(const char *id, json_t *jobs)
{
	return json_pack("{s:{s:s}, s:o}", "run", "run_id", id, "jobs", jobs);
}

static const char *const T1[] = {"tests.test_x::test_one", NULL};

static const json_t *pair_of(const json_t *cmp, const char *dist)
{
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(cmp, "pairs"), i, p) {
		if (strcmp(pj_str(p, "dist", ""), dist) == 0)
			return p;
	}
	fail_msg("no pair for %s", dist);
	return NULL;
}

static const char *first_id(const json_t *p, const char *key)
{
	return json_string_value(json_array_get(json_object_get(json_object_get(p, "tests"), key), 0));
}

static void test_verdicts(void **state)
{
	(void)state;
	_cleanup_json_ json_t *a = run(
		"ra", json_pack("[o, o, o, o, o]", job("ja1", "reg==1", "bookworm", "passed", results("passed", NULL)),
				job("ja2", "fix==1", "bookworm", "test-failed", results("failed", T1)),
				job("ja3", "same==1", "bookworm", "passed", results("passed", NULL)),
				job("ja4", "bad==1", "bookworm", "test-failed", results("failed", T1)),
				job("ja5", "gone==1", "bookworm", "passed", results("passed", NULL))));
	_cleanup_json_ json_t *b = run("rb",
				       json_pack("[o, o, o, o, o]",
						 job("jb1", "reg==1", "bookworm", "test-failed", results("failed", T1)),
						 job("jb2", "fix==1", "bookworm", "passed", results("passed", NULL)),
						 job("jb3", "same==1", "bookworm", "passed", results("passed", NULL)),
						 job("jb4", "bad==1", "bookworm", "test-failed", results("failed", T1)),
						 job("jb6", "new==1", "bookworm", "passed", results("passed", NULL))));
	/* what pip installed on each side: the regression's wheel set differs in setuptools and new-dep */
	json_object_set_new(
		json_array_get(
			json_object_get(json_object_get(json_array_get(json_object_get(a, "jobs"), 0), "results"),
					"tasks"),
			0),
		"output", json_string("Collecting …\nSuccessfully installed Reg-1 setuptools-69.0.0 six-1.17.0\n"));
	json_object_set_new(
		json_array_get(
			json_object_get(json_object_get(json_array_get(json_object_get(b, "jobs"), 0), "results"),
					"tasks"),
			0),
		"output", json_string("Successfully installed reg-1 setuptools-80.1.0 six-1.17.0 new_dep-0.1\n"));
	_cleanup_json_ json_t *cmp = compare_runs(a, b, NULL);
	assert_non_null(cmp);
	const json_t *w = json_object_get(pair_of(cmp, "reg==1"), "wheels");
	assert_int_equal(json_array_size(w), 2);
	assert_string_equal(pj_str(json_array_get(w, 0), "name", ""), "new-dep");
	assert_null(pj_str(json_array_get(w, 0), "a", NULL));
	assert_string_equal(pj_str(json_array_get(w, 0), "b", ""), "0.1");
	assert_string_equal(pj_str(json_array_get(w, 1), "name", ""), "setuptools");
	assert_string_equal(pj_str(json_array_get(w, 1), "a", ""), "69.0.0");
	assert_string_equal(pj_str(json_array_get(w, 1), "b", ""), "80.1.0");
	assert_null(json_object_get(pair_of(cmp, "same==1"), "wheels"));
	assert_string_equal(pj_str(cmp, "a", ""), "ra");
	assert_string_equal(pj_str(cmp, "b", ""), "rb");
	const json_t *p = pair_of(cmp, "reg==1");
	assert_string_equal(pj_str(p, "verdict", ""), "regressed");
	assert_string_equal(pj_str(p, "a", ""), "ja1");
	assert_string_equal(pj_str(p, "b", ""), "jb1");
	assert_string_equal(first_id(p, "newly_failing"), "tests.test_x::test_one");
	p = pair_of(cmp, "fix==1");
	assert_string_equal(pj_str(p, "verdict", ""), "fixed");
	assert_string_equal(first_id(p, "newly_passing"), "tests.test_x::test_one");
	assert_string_equal(pj_str(pair_of(cmp, "same==1"), "verdict", ""), "still-passing");
	p = pair_of(cmp, "bad==1");
	assert_string_equal(pj_str(p, "verdict", ""), "still-failing");
	assert_null(first_id(p, "newly_failing"));
	assert_string_equal(pj_str(pair_of(cmp, "gone==1"), "verdict", ""), "gone");
	p = pair_of(cmp, "new==1");
	assert_string_equal(pj_str(p, "verdict", ""), "new");
	assert_true(json_is_null(json_object_get(p, "a")) || !json_object_get(p, "a"));
	const json_t *sum = json_object_get(cmp, "summary");
	assert_int_equal(pj_int(sum, "regressed", -1), 1);
	assert_int_equal(pj_int(sum, "fixed", -1), 1);
	assert_int_equal(pj_int(sum, "flaky", -1), 0);
	assert_int_equal(pj_int(cmp, "regressions", -1), 1);
	/* one group: the regressed test's signature */
	const json_t *g = json_array_get(json_object_get(cmp, "groups"), 0);
	assert_string_equal(pj_str(g, "kind", ""), "test");
	assert_string_equal(pj_str(g, "signature", ""), "AssertionError: assert N == N");
	assert_int_equal(json_array_size(json_object_get(cmp, "groups")), 1);
	assert_null(compare_runs(a, json_object_get(b, "run"), NULL));
}

/* The wheel set an install task's output reports: pip's last "Successfully installed" line, uv's
 * "Installed N packages" and its change lines (a removal takes out only the version it names),
 * whichever comes last; lines that only look like them count for nothing. */
static void test_installed(void **state)
{
	(void)state;
	assert_null(cmp_installed(NULL));
	assert_null(cmp_installed(""));
	assert_null(cmp_installed("Resolved 3 packages in 5ms\n + a==1\n"));		   /* no summary: not uv's */
	assert_null(cmp_installed("x Successfully installed a-1\nInstalled  packages\n")); /* not at a line start */

	_cleanup_json_ json_t *pip = cmp_installed("Successfully installed old-0\nSuccessfully installed "
						   "My_Pkg-1.0 b-c-2.0 -x y-\n");
	assert_int_equal(json_object_size(pip), 2);
	assert_string_equal(pj_str(pip, "my-pkg", ""), "1.0");
	assert_string_equal(pj_str(pip, "b-c", ""), "2.0");

	_cleanup_json_ json_t *uv = cmp_installed(
		"Using Python 3.11.2 environment at: /tmp/pyti-venv\nResolved 5 packages in 4ms\n"
		"Uninstalled 1 package in 1ms\nInstalled 5 packages in 9ms\n"
		" + Pluggy==1.6.0\n + pkg==0.1 (from file:///io/wheels/pkg-0.1-py3-none-any.whl)\n"
		" - six==1.16.0\n + six==1.17.0\n + zipp==3.20\n - zipp==3.19\n ~ iniconfig==2.1.0\n"
		" - gone==1\n +  ==1\n + novers==\n + bad\nwarning: after the list\n + later==9\n");
	assert_int_equal(json_object_size(uv), 5);
	assert_string_equal(pj_str(uv, "pluggy", ""), "1.6.0");
	assert_string_equal(pj_str(uv, "pkg", ""), "0.1");
	assert_string_equal(pj_str(uv, "six", ""), "1.17.0");
	assert_string_equal(pj_str(uv, "zipp", ""), "3.20");
	assert_string_equal(pj_str(uv, "iniconfig", ""), "2.1.0");
	assert_null(json_object_get(uv, "later"));

	/* the later of the two decides */
	_cleanup_json_ json_t *last_uv = cmp_installed(
		"Successfully installed a-1\nInstalled 1 package in 1ms\n + b==2");
	assert_int_equal(json_object_size(last_uv), 1);
	assert_string_equal(pj_str(last_uv, "b", ""), "2");
	_cleanup_json_ json_t *last_pip = cmp_installed(
		"Installed 1 package in 1ms\n + b==2\nSuccessfully installed a-1");
	assert_int_equal(json_object_size(last_pip), 1);
	assert_string_equal(pj_str(last_pip, "a", ""), "1");

	/* an over-long change line is skipped, the next one still read */
	struct buf b = BUF_INIT(4096);
	buf_puts(&b, "Installed 2 packages in 1ms\n + ");
	for (int i = 0; i < 600; i++)
		buf_puts(&b, "x");
	buf_puts(&b, "==1\n + ok==1\n");
	_cleanup_json_ json_t *longl = cmp_installed(b.data);
	buf_free(&b);
	assert_int_equal(json_object_size(longl), 1);
	assert_string_equal(pj_str(longl, "ok", ""), "1");

	/* a pair whose sides used pip (a) and uv (b): the wheel diff reads both */
	_cleanup_json_ json_t *a = run(
		"ra", json_pack("[o]", job("ja1", "reg==1", "bookworm", "passed", results("passed", NULL))));
	_cleanup_json_ json_t *bb = run(
		"rb", json_pack("[o]", job("jb1", "reg==1", "bookworm", "test-failed", results("failed", T1))));
	json_object_set_new(
		json_array_get(
			json_object_get(json_object_get(json_array_get(json_object_get(a, "jobs"), 0), "results"),
					"tasks"),
			0),
		"output", json_string("Successfully installed reg-1 six-1.16.0\n"));
	json_object_set_new(
		json_array_get(
			json_object_get(json_object_get(json_array_get(json_object_get(bb, "jobs"), 0), "results"),
					"tasks"),
			0),
		"output",
		json_string("Resolved 2 packages in 1ms\nInstalled 2 packages in 2ms\n + reg==1\n + six==1.17.0\n"));
	_cleanup_json_ json_t *cmp = compare_runs(a, bb, NULL);
	assert_non_null(cmp);
	const json_t *w = json_object_get(pair_of(cmp, "reg==1"), "wheels");
	assert_int_equal(json_array_size(w), 1);
	assert_string_equal(pj_str(json_array_get(w, 0), "name", ""), "six");
	assert_string_equal(pj_str(json_array_get(w, 0), "a", ""), "1.16.0");
	assert_string_equal(pj_str(json_array_get(w, 0), "b", ""), "1.17.0");
}

static void test_spurious_and_pending(void **state)
{
	(void)state;
	json_t *rb = results("failed", NULL);
	json_t *t = json_array_get(json_object_get(rb, "tasks"), 1);
	json_object_set_new(t, "status", json_string("failed"));
	json_object_set_new(t, "failure_class", json_string("Timeout"));
	json_t *err_oom = json_pack("{s:s, s:s, s:s, s:i}", "status", "error", "failure_class", "OOM", "error",
				    "killed by its memory limit", "exit_status", 3);
	json_t *queued = job("jb3", "q==1", "bookworm", NULL, NULL);
	json_object_set_new(queued, "state", json_string("queued"));
	_cleanup_json_ json_t *a = run(
		"ra", json_pack("[o, o, o]", job("ja1", "t==1", "bookworm", "passed", results("passed", NULL)),
				job("ja2", "m==1", "bookworm", "passed", results("passed", NULL)),
				job("ja3", "q==1", "bookworm", "passed", results("passed", NULL))));
	_cleanup_json_ json_t *b = run("rb", json_pack("[o, o, o]", job("jb1", "t==1", "bookworm", "test-failed", rb),
						       job("jb2", "m==1", "bookworm", "test-failed", err_oom), queued));
	_cleanup_json_ json_t *cmp = compare_runs(a, b, NULL);
	const json_t *p = pair_of(cmp, "t==1");
	assert_string_equal(pj_str(p, "verdict", ""), "spurious");
	assert_string_equal(pj_str(p, "class", ""), "Timeout");
	p = pair_of(cmp, "m==1");
	assert_string_equal(pj_str(p, "verdict", ""), "spurious");
	assert_string_equal(pj_str(p, "class", ""), "OOM");
	assert_string_equal(pj_str(pair_of(cmp, "q==1"), "verdict", ""), "pending");
	assert_int_equal(pj_int(cmp, "regressions", -1), 0);
	assert_string_equal(compare_job_resource_class(json_array_get(json_object_get(b, "jobs"), 1)), "OOM");
	assert_null(compare_job_resource_class(json_array_get(json_object_get(a, "jobs"), 0)));
}

static void test_broken_dependency(void **state)
{
	(void)state;
	json_t *e1 = json_pack(
		"{s:s, s:s, s:s}", "status", "error", "failure_class", "Fetch", "error",
		"pip wheel failed:\n  error: subprocess-exited-with-error\nERROR: Failed building wheel for Numpy_Core\n"
		"Failed to build Numpy_Core\n");
	json_t *e2 = json_pack("{s:s, s:s, s:s}", "status", "error", "failure_class", "Fetch", "error",
			       "ERROR: Could not build wheels for numpy-core, which is required");
	json_t *own = json_pack("{s:s, s:s, s:s}", "status", "error", "failure_class", "Fetch", "error",
				"ERROR: Failed building wheel for mypkg");
	_cleanup_json_ json_t *a = run(
		"ra", json_pack("[o, o, o]", job("ja1", "x==1", "bookworm", "passed", results("passed", NULL)),
				job("ja2", "y==2", "bookworm", "passed", results("passed", NULL)),
				job("ja3", "mypkg==2", "bookworm", "passed", results("passed", NULL))));
	_cleanup_json_ json_t *b = run("rb", json_pack("[o, o, o]", job("jb1", "x==1", "bookworm", "build-failed", e1),
						       job("jb2", "y==2", "bookworm", "build-failed", e2),
						       job("jb3", "mypkg==2", "bookworm", "build-failed", own)));
	_cleanup_json_ json_t *cmp = compare_runs(a, b, NULL);
	const json_t *p = pair_of(cmp, "x==1");
	assert_string_equal(pj_str(p, "verdict", ""), "broken-dependency");
	assert_string_equal(pj_str(p, "dependency", ""), "numpy-core");
	assert_string_equal(pj_str(pair_of(cmp, "y==2"), "dependency", ""), "numpy-core");
	/* its own build failing is a plain regression */
	assert_string_equal(pj_str(pair_of(cmp, "mypkg==2"), "verdict", ""), "regressed");
	const json_t *g = json_array_get(json_object_get(cmp, "groups"), 0);
	assert_string_equal(pj_str(g, "signature", ""), "dependency numpy-core");
	assert_string_equal(pj_str(g, "kind", ""), "broken-dependency");
	assert_int_equal(pj_int(g, "count", 0), 2);
	assert_int_equal(pj_int(cmp, "regressions", -1), 3);
}

static void test_flaky_reruns(void **state)
{
	(void)state;
	json_t *ja = job("ja1", "f==1", "bookworm", "passed", results("passed", NULL));
	json_t *jb = job("jb1", "f==1", "bookworm", "test-failed", results("failed", T1));
	/* confirmation: B once more failing, once passing → flaky; the test passes 1 of 3 */
	json_object_set_new(jb, "reruns",
			    json_pack("[o, o]", job("jb1r1", "f==1", "bookworm", "test-failed", results("failed", T1)),
				      job("jb1r2", "f==1", "bookworm", "passed", results("passed", NULL))));
	json_t *ja2 = job("ja2", "r==1", "bookworm", "passed", results("passed", NULL));
	json_t *jb2 = job("jb2", "r==1", "bookworm", "test-failed", results("failed", T1));
	/* every rerun agrees: the regression is confirmed */
	json_object_set_new(ja2, "reruns",
			    json_pack("[o]", job("ja2r", "r==1", "bookworm", "passed", results("passed", NULL))));
	json_object_set_new(jb2, "reruns",
			    json_pack("[o]", job("jb2r", "r==1", "bookworm", "test-failed", results("failed", T1))));
	_cleanup_json_ json_t *a = run("ra", json_pack("[o, o]", ja, ja2)),
			      *b = run("rb", json_pack("[o, o]", jb, jb2));
	_cleanup_json_ json_t *cmp = compare_runs(a, b, NULL);
	const json_t *p = pair_of(cmp, "f==1");
	assert_string_equal(pj_str(p, "verdict", ""), "flaky");
	const json_t *fl = json_array_get(json_object_get(json_object_get(p, "tests"), "flaky"), 0);
	assert_string_equal(pj_str(fl, "id", ""), "tests.test_x::test_one");
	assert_string_equal(pj_str(fl, "side", ""), "b");
	assert_int_equal(pj_int(fl, "runs", 0), 3);
	assert_int_equal(pj_int(fl, "passed", 0), 1);
	assert_true(pj_num(fl, "pass_rate", 0) > 0.33 && pj_num(fl, "pass_rate", 0) < 0.34);
	assert_null(first_id(p, "newly_failing")); /* a flaky test is not newly failing */
	assert_int_equal(json_array_size(json_object_get(json_object_get(p, "runs"), "b")), 3);
	p = pair_of(cmp, "r==1");
	assert_string_equal(pj_str(p, "verdict", ""), "regressed");
	assert_true(pj_bool(p, "confirmed", false));
	assert_false(pj_bool(pair_of(cmp, "f==1"), "confirmed", true));
	assert_true(compare_wants_confirm(p));
	assert_false(compare_wants_confirm(pair_of(cmp, "f==1")));

	/* a rerun lost to the machine confirms nothing and is not a disagreement */
	json_t *lost = job("jb2r2", "r==1", "bookworm", "test-failed", results("failed", NULL));
	json_object_set_new(lost, "failure_class", json_string("Timeout"));
	json_array_append_new(json_object_get(jb2, "reruns"), lost);
	_cleanup_json_ json_t *cmp2 = compare_runs(a, b, NULL);
	assert_string_equal(pj_str(pair_of(cmp2, "r==1"), "verdict", ""), "regressed");
	assert_false(pj_bool(pair_of(cmp2, "r==1"), "confirmed", true));
	assert_string_equal(json_string_value(json_array_get(
				    json_object_get(json_object_get(pair_of(cmp2, "r==1"), "runs"), "b"), 2)),
			    "Timeout");

	/* the control (A/A) view of B's side: flake rate and known-flaky tests */
	_cleanup_json_ json_t *ctl = compare_control(b);
	const json_t *pk = json_array_get(json_object_get(ctl, "packages"), 0);
	assert_string_equal(pj_str(pk, "dist", ""), "f==1");
	assert_int_equal(pj_int(pk, "runs", 0), 3);
	assert_true(pj_num(pk, "flake_rate", 0) > 0.33);
	assert_int_equal(json_array_size(json_object_get(ctl, "known_flaky")), 1);
	assert_string_equal(pj_str(json_array_get(json_object_get(ctl, "known_flaky"), 0), "dist", ""), "f==1");
}

static void test_cases_added_removed(void **state)
{
	(void)state;
	json_t *ja = job("ja1", "c==1", "bookworm", "test-failed", results("failed", T1));
	json_object_set_new(ja, "cases",
			    json_pack("[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}]", "id", "tests.test_x::test_one", "outcome",
				      "failed", "id", "tests.test_x::old", "outcome", "passed", "id",
				      "tests.test_x::kept", "outcome", "passed"));
	const char *const fb[] = {"tests.test_x::kept", NULL};
	json_t *jb = job("jb1", "c==1", "bookworm", "test-failed", results("failed", fb));
	json_object_set_new(jb, "cases",
			    json_pack("[{s:s, s:s}, {s:s, s:s}, {s:s, s:s, s:s}]", "id", "tests.test_x::test_one",
				      "outcome", "passed", "id", "tests.test_x::new", "outcome", "passed", "id",
				      "tests.test_x::kept", "outcome", "failed", "text",
				      "def test_kept():\n>       json.loads('x')\n\ntests/test_x.py:9: \n"
				      "/usr/lib/python3.11/json/decoder.py:355: in raw_decode\n"
				      "E   json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n"
				      "/usr/lib/python3.11/json/decoder.py:355: JSONDecodeError"));
	_cleanup_json_ json_t *a = run("ra", json_pack("[o]", ja)), *b = run("rb", json_pack("[o]", jb));
	_cleanup_json_ json_t *cmp = compare_runs(a, b, NULL);
	const json_t *p = pair_of(cmp, "c==1");
	assert_string_equal(pj_str(p, "verdict", ""), "still-failing");
	assert_string_equal(first_id(p, "newly_failing"), "tests.test_x::kept");
	assert_string_equal(first_id(p, "newly_passing"), "tests.test_x::test_one");
	assert_string_equal(first_id(p, "added"), "tests.test_x::new");
	assert_string_equal(first_id(p, "removed"), "tests.test_x::old");
	/* a still-failing package's new failure is grouped by its cause (the innermost frame's type) */
	const json_t *g = json_array_get(json_object_get(cmp, "groups"), 0);
	assert_string_equal(pj_str(g, "signature", ""), "JSONDecodeError at python3/json/decoder.py:355");
}

static void test_pairing(void **state)
{
	(void)state;
	/* across images (same dist), and across versions of a local file (same project) */
	_cleanup_json_ json_t *a = run(
		"ra", json_pack("[o, o]", job("ja1", "six", "bookworm", "passed", results("passed", NULL)),
				job("ja2", "/t/my_pkg-0.1.tar.gz", "bookworm", "passed", results("passed", NULL))));
	_cleanup_json_ json_t *b = run(
		"rb", json_pack("[o, o]",
				job("jb2", "/u/My.Pkg-0.2.tar.gz", "bookworm", "test-failed", results("failed", T1)),
				job("jb1", "six", "trixie", "passed", results("passed", NULL))));
	_cleanup_json_ json_t *cmp = compare_runs(a, b, NULL);
	assert_int_equal(json_array_size(json_object_get(cmp, "pairs")), 2);
	const json_t *p = pair_of(cmp, "six");
	assert_string_equal(pj_str(p, "suite_a", ""), "bookworm");
	assert_string_equal(pj_str(p, "suite_b", ""), "trixie");
	assert_string_equal(pj_str(p, "verdict", ""), "still-passing");
	p = pair_of(cmp, "/t/my_pkg-0.1.tar.gz");
	assert_string_equal(pj_str(p, "b", ""), "jb2");
	assert_string_equal(pj_str(p, "dist_b", ""), "/u/My.Pkg-0.2.tar.gz");
	assert_string_equal(pj_str(p, "verdict", ""), "regressed");
}

/* A mass run: thousands of jobs pair by index, not by comparing every job with every other. */
static void test_many_jobs(void **state)
{
	(void)state;
	json_t *ja = json_array(), *jb = json_array();
	const int n = 5000;
	for (int i = 0; i < n; i++) {
		char dist[32], id[32];
		snprintf(dist, sizeof dist, "pkg%d==1.0", i);
		snprintf(id, sizeof id, "ja%d", i);
		json_array_append_new(ja, job(id, dist, "bookworm", "passed", NULL));
		snprintf(dist, sizeof dist, "pkg%d==1.0", n - 1 - i); /* B lists them the other way round */
		snprintf(id, sizeof id, "jb%d", n - 1 - i);
		json_array_append_new(jb, job(id, dist, "trixie", i % 10 ? "passed" : "test-failed", NULL));
	}
	_cleanup_json_ json_t *a = run("ra", ja), *b = run("rb", jb);
	double t0 = now_mono();
	_cleanup_json_ json_t *cmp = compare_runs(a, b, NULL);
	assert_true(now_mono() - t0 < 20); /* generous: ASan; quadratic pairing took minutes */
	assert_int_equal(json_array_size(json_object_get(cmp, "pairs")), n);
	const json_t *p = json_array_get(json_object_get(cmp, "pairs"), 7);
	assert_string_equal(pj_str(p, "a", ""), "ja7");
	assert_string_equal(pj_str(p, "b", ""), "jb7");
	assert_int_equal(pj_int(json_object_get(cmp, "summary"), "regressed", 0), n / 10);
}

static void test_project_name(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
		{"Six==1.17.0", "six"},
		{"zope.interface>=5", "zope-interface"},
		{"requests[socks]; python_version>'3'", "requests"},
		{"/tmp/x/pyti_demo_pkg-0.1.0", "pyti-demo-pkg"},
		{"/tmp/x/pyti_demo_pkg-0.1.0/", "pyti-demo-pkg"},
		{"dist/six-1.17.0-py2.py3-none-any.whl", "six"},
		{"./My__Pkg-2.0.tar.gz", "my-pkg"},
		{"/src/checkout", "checkout"},
		{"", ""},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *n = compare_project_name(cases[i][0]);
		assert_string_equal(n, cases[i][1]);
	}
}

static void test_signature(void **state)
{
	(void)state;
	static const char *const cases[][4] = {
		/* traceback, message, text, signature */
		{"assert 1 == 2", "assert 1 == 2", NULL, "AssertionError: assert N == N"},
		{"ValueError: bad 0x7fff1234 value 42", NULL, NULL, "ValueError: bad 0xN value N"},
		{"ValueError: x", NULL,
		 "tests/test_a.py:12: in test_a\n    f()\n/tmp/venv/lib/python3.11/site-packages/dep/core.py:88: ValueError",
		 "ValueError at dep/core.py:88"},
		{NULL, NULL, "\nE   KeyError: 'k'\n\n/io/src/pkg-1.0/pkg/mod.py:7: KeyError",
		 "KeyError at pkg/mod.py:7"},
		{"ModuleNotFoundError: No module named 'imp'", "collection failure", "tests/test_b.py:1: in <module>\n",
		 "ModuleNotFoundError: No module named 'imp'"},
		{"something odd", NULL, NULL, "Failure: something odd"},
		{NULL, NULL, NULL, "Failure"},
		{"a.b.CustomError", NULL, NULL, "a.b.CustomError"},
		{"lower: not a type", NULL, "x.py:notaline: y", "Failure: lower: not a type"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		_cleanup_free_ char *s = compare_signature(cases[i][0], cases[i][1], cases[i][2]);
		assert_string_equal(s, cases[i][3]);
	}
	/* one cause in a dependency, many packages: one group */
	json_t *jobs_a = json_array(), *jobs_b = json_array();
	for (int i = 0; i < 3; i++) {
		char dist[16], id[8];
		snprintf(dist, sizeof dist, "p%d==1", i);
		snprintf(id, sizeof id, "j%d", i);
		json_array_append_new(jobs_a, job(id, dist, "bookworm", "passed", results("passed", NULL)));
		json_t *jb = job(id, dist, "bookworm", "test-failed", results("failed", T1));
		json_object_set_new(
			jb, "cases",
			json_pack("[{s:s, s:s, s:s, s:s}]", "id", T1[0], "outcome", "failed", "message",
				  "TypeError: unexpected keyword", "text",
				  "x\n.venv/lib/python3.13/site-packages/setuptools/dist.py:301: TypeError"));
		json_array_append_new(jobs_b, jb);
	}
	_cleanup_json_ json_t *a = run("ra", jobs_a), *b = run("rb", jobs_b);
	_cleanup_json_ json_t *cmp = compare_runs(a, b, NULL);
	assert_int_equal(json_array_size(json_object_get(cmp, "groups")), 1);
	const json_t *g = json_array_get(json_object_get(cmp, "groups"), 0);
	assert_string_equal(pj_str(g, "signature", ""), "TypeError at setuptools/dist.py:301");
	assert_int_equal(pj_int(g, "count", 0), 3);
	assert_int_equal(json_array_size(json_object_get(g, "tests")), 3);
}

static void test_slower_and_reports(void **state)
{
	(void)state;
	json_t *rb = results("passed", NULL);
	json_t *t = json_array_get(json_object_get(rb, "tasks"), 1);
	json_object_set_new(t, "wall_s", json_real(9.0));	   /* 3 s → 9 s */
	json_object_set_new(t, "max_rss_kb", json_integer(61000)); /* +1 MB: noise */
	json_t *jb = job("jb1", "s`|x==1", "bookworm", "passed", rb);
	_cleanup_json_ json_t *a = run(
		"ra", json_pack("[o]", job("ja1", "s`|x==1", "bookworm", "passed", results("passed", NULL))));
	_cleanup_json_ json_t *b = run(
		"rb", json_pack("[o, o]", jb, job("jb2", "r==1", "bookworm", "test-failed", results("failed", T1))));
	json_array_append_new(json_object_get(a, "jobs"),
			      job("ja2", "r==1", "bookworm", "passed", results("passed", NULL)));
	_cleanup_json_ json_t *cmp = compare_runs(a, b, NULL);
	const json_t *slower = json_object_get(cmp, "slower");
	assert_int_equal(json_array_size(slower), 1);
	assert_string_equal(pj_str(json_array_get(slower, 0), "metric", ""), "wall_s");
	assert_true(pj_num(json_array_get(slower, 0), "ratio", 0) > 2.9);
	struct compare_opts o = {.slower_ratio = 4};
	_cleanup_json_ json_t *cmp4 = compare_runs(a, b, &o);
	assert_int_equal(json_array_size(json_object_get(cmp4, "slower")), 0);

	char *md = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&md, &len);
	compare_markdown(f, cmp);
	fclose(f);
	assert_non_null(strstr(md, "| regressed | `r==1` |"));
	assert_non_null(strstr(md, "`tests.test_x::test_one`"));
	assert_non_null(strstr(md, "`s'\\|x==1`")); /* a backtick and a pipe cannot break out of the span */
	assert_non_null(strstr(md, "**1 regression**"));
	free(md);
	f = open_memstream(&md, &len);
	compare_table(f, cmp);
	fclose(f);
	assert_non_null(strstr(md, "regressed"));
	assert_non_null(strstr(md, "newly_failing: tests.test_x::test_one"));
	free(md);
}

/* The same path on a real SQLite store: two runs recorded, read back, compared; a rerun run linked. */
static void test_sqlite_store(void **state)
{
	(void)state;
	char dir[] = "/tmp/pyti-compare-XXXXXX";
	assert_non_null(mkdtemp(dir));
	_cleanup_free_ char *url = xasprintf("%s/pyti.db", dir);
	struct pyti_err err = {0};
	struct store *st = NULL;
	assert_int_equal(store_open(url, &st, &err), 0);
	struct store_run_spec spec = {.origin = "local"};
	char ra[STORE_ID_SIZE], rb[STORE_ID_SIZE], rr[STORE_ID_SIZE], j[STORE_ID_SIZE];
	assert_int_equal(store_run_new(st, &spec, ra, &err), 0);
	assert_int_equal(store_run_new(st, &spec, rb, &err), 0);
	_cleanup_json_ json_t *pa = results("passed", NULL), *fb = results("failed", T1);
	struct store_job_record rec = {.dist = "demo==0.1", .suite = "bookworm", .backend = "ns", .results = pa};
	assert_int_equal(store_record_job(st, ra, &rec, j, &err), 0);
	rec.results = fb;
	assert_int_equal(store_record_job(st, rb, &rec, j, &err), 0);
	_cleanup_json_ json_t *a = NULL, *b = NULL;
	assert_int_equal(store_results(st, ra, &a, &err), 0);
	assert_int_equal(store_show(st, rb, &b, &err), 0);
	_cleanup_json_ json_t *cmp = compare_runs(a, b, NULL);
	const json_t *p = pair_of(cmp, "demo==0.1");
	assert_string_equal(pj_str(p, "verdict", ""), "regressed");
	assert_string_equal(pj_str(p, "verdict_b", ""), "test-failed");
	assert_string_equal(first_id(p, "newly_failing"), T1[0]);

	/* the parent link: a run made again from B names it, and B's children are listed */
	struct store_run_spec child = {.origin = "local", .parent = rb};
	assert_int_equal(store_run_new(st, &child, rr, &err), 0);
	struct store_run_spec bad = {.origin = "local", .parent = "jnotarun"};
	assert_true(store_run_new(st, &bad, j, &err) < 0);
	_cleanup_json_ json_t *shown = NULL, *kids = NULL, *none = NULL;
	assert_int_equal(store_status(st, rr, &shown, &err), 0);
	assert_string_equal(pj_str(json_object_get(shown, "run"), "parent", ""), rb);
	struct store_runs_query q = {.parent = rb};
	assert_int_equal(store_runs(st, &q, &kids, &err), 0);
	assert_int_equal(json_array_size(json_object_get(kids, "runs")), 1);
	assert_string_equal(pj_str(json_array_get(json_object_get(kids, "runs"), 0), "run_id", ""), rr);
	q.parent = ra;
	assert_int_equal(store_runs(st, &q, &none, &err), 0);
	assert_int_equal(json_array_size(json_object_get(none, "runs")), 0);
	int v = 0;
	assert_int_equal(store_schema_version(st, &v, &err), 0);
	assert_int_equal(v, 3);
	store_close(st);
	_cleanup_free_ char *wal = xasprintf("%s-wal", url), *shm = xasprintf("%s-shm", url);
	unlink(url);
	unlink(wal);
	unlink(shm);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verdicts),
		cmocka_unit_test(test_installed),
		cmocka_unit_test(test_spurious_and_pending),
		cmocka_unit_test(test_broken_dependency),
		cmocka_unit_test(test_flaky_reruns),
		cmocka_unit_test(test_cases_added_removed),
		cmocka_unit_test(test_pairing),
		cmocka_unit_test(test_many_jobs),
		cmocka_unit_test(test_project_name),
		cmocka_unit_test(test_signature),
		cmocka_unit_test(test_slower_and_reports),
		cmocka_unit_test(test_sqlite_store),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

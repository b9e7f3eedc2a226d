/* Unit tests for sandbox.c: the event-line reader both backends feed their streams through, and the
 * host's judgement of a results.json by what the agent announced (sandbox_verdict_*). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "sandbox.h"

struct got {
	int n;
	char last[64];
};

static void on_event(void *arg, json_t *ev)
{
	struct got *g = arg;
	g->n++;
	snprintf(g->last, sizeof g->last, "%s", pj_str(ev, "event", "?"));
}

static void feed(struct buf *b, size_t max, const char *s, struct got *g)
{
	sandbox_feed_events(b, max, s, strlen(s), false, on_event, g);
}

static void test_split_lines(void **state)
{
	(void)state;
	struct got g = {0};
	struct buf b = BUF_INIT(0);
	feed(&b, 1024, "[ 0.1] noise\r\n@pyti {\"ev", &g);
	assert_int_equal(g.n, 0);
	feed(&b, 1024, "ent\":\"ready\"}\r\n@pyti {\"event\":\"a\"}\n@pyti {\"event\":\"b\"}\nkernel: x @pyti {\"event\":\"c\"}", &g);
	assert_int_equal(g.n, 3); /* ready, a, b */
	assert_string_equal(g.last, "b");
	sandbox_feed_events(&b, 1024, "", 0, true, on_event, &g); /* the last line lacks its newline */
	assert_int_equal(g.n, 4);
	assert_string_equal(g.last, "c");
	assert_int_equal(b.len, 0);
	buf_free(&b);
}

static void test_endless_line_dropped(void **state)
{
	(void)state;
	struct got g = {0};
	struct buf b = BUF_INIT(0);
	char big[3000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	/* a huge line, then two events in the same read: the events survive, the buffer stays small */
	_cleanup_free_ char *chunk = xasprintf("%s\n@pyti {\"event\":\"one\"}\n@pyti {\"event\":\"two\"}\n", big);
	feed(&b, 256, chunk, &g);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.last, "two");
	feed(&b, 256, big, &g);
	assert_true(b.len < 256);
	feed(&b, 256, "\n@pyti {\"event\":\"three\"}\n@pyti [1]\n@pyti {bad\n", &g);
	assert_int_equal(g.n, 3);
	assert_string_equal(g.last, "three");
	buf_free(&b);
}

/* ---- the verdict: a results.json is believed only as far as the agent vouched for it ---- */

static void ev(struct sandbox_verdict *v, const char *js)
{
	json_error_t je;
	json_t *e = json_loads(js, 0, &je);
	assert_non_null(e);
	sandbox_verdict_event(v, e);
	json_decref(e);
}

static void announce(struct sandbox_verdict *v, const char *data, const char *status)
{
	char d[65];
	sha256_hex(data, strlen(data), d);
	_cleanup_free_ char *js = xasprintf("{\"event\":\"results\",\"sha256\":\"%s\",\"status\":\"%s\",\"tasks\":1}", d,
					    status);
	ev(v, js);
}

static const char *const RES_PASSED =
	"{\"status\":\"passed\",\"tasks\":[{\"task\":\"a\",\"status\":\"passed\",\"failure_class\":null},"
	"{\"task\":\"b\",\"status\":\"passed\",\"failure_class\":null}]}\n";
static const char *const RES_PARTIAL =
	"{\"status\":\"running\",\"tasks\":[{\"task\":\"a\",\"status\":\"passed\",\"failure_class\":null}]}\n";

static json_t *job_tasks_ab(void)
{
	return json_pack("[{s:s},{s:s}]", "name", "a", "name", "b");
}

/* An honest agent's stream: job_start, task_end a, partial results, task_end b, final, job_end. */
static void honest(struct sandbox_verdict *v, const char *final_data)
{
	sandbox_verdict_init(v);
	ev(v, "{\"event\":\"job_start\",\"job\":\"j\",\"tasks\":2}");
	ev(v, "{\"event\":\"task_start\",\"task\":\"a\",\"i\":1,\"n\":2}");
	ev(v, "{\"event\":\"task_end\",\"task\":\"a\",\"status\":\"passed\",\"wall_s\":0.1,\"failure_class\":null}");
	announce(v, RES_PARTIAL, "running");
	ev(v, "{\"event\":\"task_end\",\"task\":\"b\",\"status\":\"passed\",\"wall_s\":0.1,\"failure_class\":null}");
	if (final_data)
		announce(v, final_data, "passed");
	ev(v, "{\"event\":\"job_end\",\"status\":\"passed\"}");
}

static int check(const struct sandbox_verdict *v, const char *data, bool final, const json_t *tasks,
		 struct pyti_err *err)
{
	*err = (struct pyti_err){0};
	return sandbox_verdict_check(v, data, strlen(data), final, tasks, err);
}

static void test_verdict_honest(void **state)
{
	(void)state;
	struct sandbox_verdict v;
	struct pyti_err err;
	_cleanup_json_ json_t *jt = job_tasks_ab();
	honest(&v, RES_PASSED);
	assert_int_equal(check(&v, RES_PASSED, true, jt, &err), 0);
	assert_int_equal(check(&v, RES_PASSED, true, NULL, &err), 0);
	sandbox_verdict_free(&v);
}

static void test_verdict_forged_file(void **state)
{
	(void)state;
	struct sandbox_verdict v;
	struct pyti_err err;
	_cleanup_json_ json_t *jt = job_tasks_ab();
	/* the agent announced RES_PASSED; the file holds other bytes (one space more) */
	honest(&v, RES_PASSED);
	static const char forged[] = "{\"status\":\"passed\",\"tasks\":[{\"task\":\"a\",\"status\":\"passed\","
				     "\"failure_class\":null},{\"task\":\"b\",\"status\":\"passed\",\"failure_class\":null}]} \n";
	assert_int_equal(check(&v, forged, true, jt, &err), -1);
	assert_int_equal(err.fclass, PYTI_FC_TAMPERED);
	assert_non_null(strstr(err.msg, "not the file the agent wrote"));
	sandbox_verdict_free(&v);

	/* nothing announced at all (a task wrote out/results.json, the agent never did) */
	sandbox_verdict_init(&v);
	ev(&v, "{\"event\":\"job_end\",\"status\":\"passed\"}");
	assert_int_equal(check(&v, RES_PASSED, true, jt, &err), -1);
	assert_int_equal(err.fclass, PYTI_FC_TAMPERED);
	assert_non_null(strstr(err.msg, "announced none"));
	sandbox_verdict_free(&v);
}

static void test_verdict_early_job_end(void **state)
{
	(void)state;
	struct sandbox_verdict v;
	struct pyti_err err;
	_cleanup_json_ json_t *jt = job_tasks_ab();
	/* a forged job_end while the partial results are still the agent's: not a job's end */
	honest(&v, NULL);
	assert_int_equal(check(&v, RES_PARTIAL, true, jt, &err), -1);
	assert_int_equal(err.fclass, PYTI_FC_TAMPERED);
	/* ... but as partial results after a crash they are the agent's own */
	assert_int_equal(check(&v, RES_PARTIAL, false, NULL, &err), 0);
	sandbox_verdict_free(&v);

	/* no job_end at all */
	sandbox_verdict_init(&v);
	announce(&v, RES_PASSED, "passed");
	assert_int_equal(check(&v, RES_PASSED, true, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "did not report the end"));
	sandbox_verdict_free(&v);
}

static void test_verdict_events_disagree(void **state)
{
	(void)state;
	struct sandbox_verdict v;
	struct pyti_err err;
	_cleanup_json_ json_t *jt = job_tasks_ab();
	/* a results announcement and a file that agree, but task b's end was reported failed */
	sandbox_verdict_init(&v);
	ev(&v, "{\"event\":\"task_end\",\"task\":\"a\",\"status\":\"passed\",\"failure_class\":null}");
	ev(&v, "{\"event\":\"task_end\",\"task\":\"b\",\"status\":\"failed\",\"failure_class\":\"OOM\"}");
	announce(&v, RES_PASSED, "passed");
	ev(&v, "{\"event\":\"job_end\",\"status\":\"passed\"}");
	assert_int_equal(check(&v, RES_PASSED, true, jt, &err), -1);
	assert_int_equal(err.fclass, PYTI_FC_TAMPERED);
	assert_non_null(strstr(err.msg, "task 2"));
	sandbox_verdict_free(&v);

	/* results listing fewer tasks than the job has (the rest never ran) */
	static const char one[] =
		"{\"status\":\"passed\",\"tasks\":[{\"task\":\"a\",\"status\":\"passed\",\"failure_class\":null}]}\n";
	sandbox_verdict_init(&v);
	ev(&v, "{\"event\":\"task_end\",\"task\":\"a\",\"status\":\"passed\",\"failure_class\":null}");
	announce(&v, one, "passed");
	ev(&v, "{\"event\":\"job_end\",\"status\":\"passed\"}");
	assert_int_equal(check(&v, one, true, NULL, &err), 0); /* self-consistent */
	assert_int_equal(check(&v, one, true, jt, &err), -1);  /* but not the job */
	assert_non_null(strstr(err.msg, "the job has 2"));
	sandbox_verdict_free(&v);

	/* task names in another order than the job's */
	static const char ba[] = "{\"status\":\"passed\",\"tasks\":[{\"task\":\"b\",\"status\":\"passed\","
				 "\"failure_class\":null},{\"task\":\"a\",\"status\":\"passed\",\"failure_class\":null}]}\n";
	sandbox_verdict_init(&v);
	ev(&v, "{\"event\":\"task_end\",\"task\":\"b\",\"status\":\"passed\",\"failure_class\":null}");
	ev(&v, "{\"event\":\"task_end\",\"task\":\"a\",\"status\":\"passed\",\"failure_class\":null}");
	announce(&v, ba, "passed");
	ev(&v, "{\"event\":\"job_end\",\"status\":\"passed\"}");
	assert_int_equal(check(&v, ba, true, jt, &err), -1);
	assert_non_null(strstr(err.msg, "not the job's task 1"));
	sandbox_verdict_free(&v);

	/* "passed" over a failed task */
	static const char lie[] = "{\"status\":\"passed\",\"tasks\":[{\"task\":\"a\",\"status\":\"failed\","
				  "\"failure_class\":null}]}\n";
	sandbox_verdict_init(&v);
	ev(&v, "{\"event\":\"task_end\",\"task\":\"a\",\"status\":\"failed\",\"failure_class\":null}");
	announce(&v, lie, "passed");
	ev(&v, "{\"event\":\"job_end\",\"status\":\"passed\"}");
	assert_int_equal(check(&v, lie, true, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "does not follow"));
	sandbox_verdict_free(&v);
}

static void test_verdict_odd_stream(void **state)
{
	(void)state;
	struct sandbox_verdict v;
	struct pyti_err err;
	/* events after job_end, a second job_start, malformed announcements: refused */
	honest(&v, RES_PASSED);
	ev(&v, "{\"event\":\"task_end\",\"task\":\"c\",\"status\":\"passed\",\"failure_class\":null}");
	assert_int_equal(check(&v, RES_PASSED, true, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "after job_end"));
	sandbox_verdict_free(&v);

	sandbox_verdict_init(&v);
	ev(&v, "{\"event\":\"job_start\",\"tasks\":1}");
	ev(&v, "{\"event\":\"job_start\",\"tasks\":1}");
	assert_int_equal(check(&v, RES_PASSED, false, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "second job_start"));
	sandbox_verdict_free(&v);

	sandbox_verdict_init(&v);
	ev(&v, "{\"event\":\"results\",\"sha256\":\"xyz\",\"status\":\"passed\"}");
	assert_int_equal(check(&v, RES_PASSED, false, NULL, &err), -1);
	assert_non_null(strstr(err.msg, "malformed"));
	sandbox_verdict_free(&v);
	sandbox_verdict_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_lines),
		cmocka_unit_test(test_endless_line_dropped),
		cmocka_unit_test(test_verdict_honest),
		cmocka_unit_test(test_verdict_forged_file),
		cmocka_unit_test(test_verdict_early_job_end),
		cmocka_unit_test(test_verdict_events_disagree),
		cmocka_unit_test(test_verdict_odd_stream),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

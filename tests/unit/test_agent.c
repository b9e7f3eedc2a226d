/* Unit tests for the agent's pure logic: job.json validation, needs, environment, result and
 * event JSON. The real binary is driven by tests/integration/test_agent.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "agent.h"

static int parse(const char *text, struct agent_job *job, struct pyti_err *err)
{
	_cleanup_json_ json_t *root = pj_loads(text, strlen(text), err);
	assert_non_null(root);
	return agent_job_parse(root, job, err);
}

static const char *JOB =
	"{\"job\":\"j1\",\"dist\":\"six==1.17.0\",\"recipe\":\"default\",\"backend\":\"ns\","
	"\"image\":\"bookworm\",\"env\":{\"PATH\":\"/venv/bin:/usr/bin\",\"HOME\":\"/tmp/home\",\"A\":\"1\"},"
	"\"tasks\":["
	"{\"name\":\"install\",\"run\":\"true\",\"needs\":[],\"timeout\":300,\"memory\":1073741824,"
	"\"pids\":64,\"output_limit\":1000},"
	"{\"name\":\"import\",\"run\":\"true\",\"needs\":[\"install\"],\"env\":{\"A\":\"2\",\"B\":\"x=y\"}},"
	"{\"name\":\"test\",\"run\":\"true\",\"needs\":[\"install\",\"import\"],\"no_output_timeout\":1.5,"
	"\"cwd\":\"/io/src\",\"junit\":\"out/junit-test.xml\"}]}";

static void test_parse_ok(void **state)
{
	(void)state;
	struct agent_job job;
	struct pyti_err err = {0};
	assert_int_equal(parse(JOB, &job, &err), 0);
	assert_int_equal(job.n_tasks, 3);
	assert_string_equal(job.dist, "six==1.17.0");
	assert_string_equal(job.tasks[0].name, "install");
	assert_true(job.tasks[0].lim.timeout_s == 300);
	assert_int_equal(job.tasks[0].lim.memory_bytes, 1073741824ULL);
	assert_int_equal(job.tasks[0].lim.pids, 64);
	assert_int_equal(job.tasks[0].lim.output_limit, 1000);
	assert_int_equal(job.tasks[1].lim.pids, AGENT_DEFAULT_PIDS);
	assert_int_equal(job.tasks[1].lim.output_limit, AGENT_DEFAULT_OUTPUT_LIMIT);
	assert_int_equal(job.tasks[2].n_needs, 2);
	assert_int_equal(job.tasks[2].need_idx[1], 1);
	assert_true(job.tasks[2].lim.no_output_timeout_s == 1.5);
	assert_string_equal(job.tasks[2].cwd, "/io/src");
	assert_null(job.tasks[0].cwd);
	agent_job_free(&job);
}

static void expect_usage(const char *text, const char *needle)
{
	struct agent_job job;
	struct pyti_err err = {0};
	assert_int_equal(parse(text, &job, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	if (!strstr(err.msg, needle))
		fail_msg("message '%s' lacks '%s'", err.msg, needle);
	agent_job_free(&job);
}

static void test_parse_errors(void **state)
{
	(void)state;
	expect_usage("[]", "not a JSON object");
	expect_usage("{}", "tasks must be a list");
	expect_usage("{\"tasks\":[{\"run\":\"x\"}]}", "invalid name");
	expect_usage("{\"tasks\":[{\"name\":\"../x\",\"run\":\"x\"}]}", "invalid name");
	expect_usage("{\"tasks\":[{\"name\":\"a\"}]}", "missing run");
	expect_usage("{\"tasks\":[{\"name\":\"a\",\"run\":\"x\",\"needs\":[\"b\"]},{\"name\":\"b\",\"run\":\"x\"}]}",
		     "needs unknown task b");
	expect_usage("{\"tasks\":[{\"name\":\"a\",\"run\":\"x\",\"needs\":[\"zz\"]}]}", "unknown task zz");
	expect_usage("{\"tasks\":[{\"name\":\"a\",\"run\":\"x\"},{\"name\":\"a\",\"run\":\"y\"}]}", "twice");
	expect_usage("{\"tasks\":[{\"name\":\"a\",\"run\":\"x\",\"timeout\":-1}]}", "non-negative");
	expect_usage("{\"tasks\":[{\"name\":\"a\",\"run\":\"x\",\"memory\":\"1G\"}]}", "non-negative");
	expect_usage("{\"tasks\":[{\"name\":\"a\",\"run\":\"x\",\"env\":{\"A\":1}}]}", "env");
	expect_usage("{\"env\":[],\"tasks\":[]}", "env");
	expect_usage("{\"dist\":3,\"tasks\":[]}", "strings");
}

static void test_needs(void **state)
{
	(void)state;
	struct agent_job job;
	struct pyti_err err = {0};
	assert_int_equal(parse(JOB, &job, &err), 0);
	enum agent_status st[3] = {AGENT_PASSED, AGENT_PENDING, AGENT_PENDING};
	assert_null(agent_needs_unmet(&job, 0, st));
	assert_null(agent_needs_unmet(&job, 1, st));
	st[1] = AGENT_FAILED;
	assert_string_equal(agent_needs_unmet(&job, 2, st), "import");
	st[0] = AGENT_FAILED;
	assert_string_equal(agent_needs_unmet(&job, 1, st), "install");
	st[0] = AGENT_PASSED;
	st[1] = AGENT_SKIPPED; /* skipped is not passed: the skip propagates */
	assert_string_equal(agent_needs_unmet(&job, 2, st), "import");
	agent_job_free(&job);
}

static void test_envp(void **state)
{
	(void)state;
	struct agent_job job;
	struct pyti_err err = {0};
	assert_int_equal(parse(JOB, &job, &err), 0);
	char **envp = agent_envp(job.env, job.tasks[1].env);
	assert_string_equal(agent_envp_get(envp, "A"), "2");
	assert_string_equal(agent_envp_get(envp, "B"), "x=y");
	assert_string_equal(agent_envp_get(envp, "PATH"), "/venv/bin:/usr/bin");
	assert_string_equal(agent_envp_get(envp, "HOME"), "/tmp/home");
	assert_null(agent_envp_get(envp, "AB"));
	size_t n = 0;
	while (envp[n])
		n++;
	assert_int_equal(n, 4);
	agent_envp_free(envp);
	envp = agent_envp(NULL, NULL);
	assert_string_equal(agent_envp_get(envp, "PATH"), AGENT_DEFAULT_PATH);
	agent_envp_free(envp);
	agent_job_free(&job);
}

static void test_task_result(void **state)
{
	(void)state;
	char out[] = "hello\xff\n";
	struct proc_result res = {.exit_code = -1, .signal = 9, .fclass = PYTI_FC_OOM, .wall_s = 1.23456,
				  .cpu_user_s = 0.5, .max_rss_kb = 1000, .output = out, .output_len = 7,
				  .output_bytes = 7};
	json_t *o = agent_task_result("test", agent_task_status(&res), res.fclass, &res, NULL, 0,
				      "out/logs/test.log");
	assert_string_equal(pj_str(o, "status", ""), "failed");
	assert_string_equal(pj_str(o, "failure_class", ""), "OOM");
	assert_true(json_is_null(json_object_get(o, "exit_code")));
	assert_int_equal(pj_int(o, "signal", 0), 9);
	assert_true(pj_num(o, "wall_s", 0) == 1.235);
	assert_string_equal(pj_str(o, "output", ""), "hello\xef\xbf\xbd\n");
	assert_string_equal(pj_str(o, "started_at", ""), "1970-01-01T00:00:00Z");
	assert_string_equal(pj_str(o, "log", ""), "out/logs/test.log");
	json_decref(o);

	struct proc_result ok = {.exit_code = 0};
	assert_int_equal(agent_task_status(&ok), AGENT_PASSED);
	ok.exit_code = 1;
	assert_int_equal(agent_task_status(&ok), AGENT_FAILED);

	o = agent_task_result("imp", AGENT_SKIPPED, PYTI_FC_DEPENDSON, NULL, "skipped", 0, NULL);
	assert_string_equal(pj_str(o, "status", ""), "skipped");
	assert_string_equal(pj_str(o, "failure_class", ""), "DependsOn");
	assert_true(json_is_null(json_object_get(o, "log")));
	assert_true(json_is_null(json_object_get(o, "failure_class")) == false);
	json_decref(o);

	o = agent_task_result("x", AGENT_PASSED, PYTI_FC_NONE, &(struct proc_result){0}, NULL, 0, NULL);
	assert_true(json_is_null(json_object_get(o, "failure_class")));
	assert_true(json_is_null(json_object_get(o, "signal")));
	assert_int_equal(pj_int(o, "exit_code", -5), 0);
	json_decref(o);
}

static void test_results_and_events(void **state)
{
	(void)state;
	struct agent_job job;
	struct pyti_err err = {0};
	assert_int_equal(parse(JOB, &job, &err), 0);
	_cleanup_json_ json_t *tasks = json_array();
	_cleanup_json_ json_t *r = agent_results(&job, tasks, "passed", 14.2, 1795428000);
	assert_string_equal(pj_str(r, "job", ""), "j1");
	assert_string_equal(pj_str(r, "image", ""), "bookworm");
	assert_string_equal(pj_str(r, "backend", ""), "ns");
	assert_string_equal(pj_str(r, "recipe", ""), "default");
	assert_string_equal(pj_str(r, "started_at", ""), "2026-11-23T10:00:00Z");
	assert_true(json_object_get(r, "tasks") == tasks);
	agent_job_free(&job);

	_cleanup_json_ json_t *ev = json_pack("{s:s, s:s, s:f, s:n}", "event", "task_end", "task", "t\u00e9st",
					      "wall_s", 2.1, "failure_class");
	_cleanup_free_ char *line = agent_event_line(ev);
	assert_string_equal(line,
			    "@pyti {\"event\":\"task_end\",\"task\":\"t\\u00E9st\",\"wall_s\":2.1,\"failure_class\":null}\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_ok),       cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_needs),          cmocka_unit_test(test_envp),
		cmocka_unit_test(test_task_result),    cmocka_unit_test(test_results_and_events),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

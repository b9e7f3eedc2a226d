/* manager_verdict (the one rule a batch, the store and the master sum a job up with) and the
 * recipe's {posargs}: quoted words, {posargs:DEFAULT}. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "manager.h"
#include "recipe.h"

static const char *verdict_of(const char *text)
{
	static char out[32];
	json_t *j = json_loads(text, 0, NULL);
	assert_non_null(j);
	snprintf(out, sizeof out, "%s", manager_verdict(j));
	json_decref(j);
	return out;
}

static void test_verdicts(void **state)
{
	(void)state;
	const char *T_INST = "{\"task\":\"install\",\"status\":\"passed\",\"failure_class\":null}";
	char b[1024];
	snprintf(b, sizeof b,
		 "{\"status\":\"passed\",\"tasks\":[%s,{\"task\":\"test\",\"status\":\"passed\","
		 "\"tests\":{\"passed\":3,\"no_tests\":false}}]}",
		 T_INST);
	assert_string_equal(verdict_of(b), "passed");
	snprintf(b, sizeof b,
		 "{\"status\":\"passed\",\"tasks\":[%s,{\"task\":\"test\",\"status\":\"passed\","
		 "\"tests\":{\"passed\":0,\"no_tests\":true}}]}",
		 T_INST);
	assert_string_equal(verdict_of(b), "no-tests");
	snprintf(b, sizeof b,
		 "{\"status\":\"failed\",\"tasks\":[%s,{\"task\":\"test\",\"status\":\"failed\","
		 "\"tests\":{\"failed\":1}}]}",
		 T_INST);
	assert_string_equal(verdict_of(b), "test-failed");
	/* a test task that failed before writing its JUnit file: by its name */
	snprintf(b, sizeof b, "{\"status\":\"failed\",\"tasks\":[%s,{\"task\":\"tests-py311\",\"status\":\"failed\"}]}",
		 T_INST);
	assert_string_equal(verdict_of(b), "test-failed");
	assert_string_equal(verdict_of("{\"status\":\"failed\",\"tasks\":[{\"task\":\"install\",\"status\":\"failed\"},"
				       "{\"task\":\"test\",\"status\":\"skipped\",\"failure_class\":\"DependsOn\"}]}"),
			    "build-failed");
	assert_string_equal(
		verdict_of("{\"status\":\"failed\",\"tasks\":[{\"task\":\"import\",\"status\":\"failed\"}]}"),
		"build-failed");
	assert_string_equal(verdict_of("{\"status\":\"failed\",\"tasks\":[{\"task\":\"test\",\"status\":\"failed\","
				       "\"failure_class\":\"Infra\"}]}"),
			    "infra");
	/* a custom recipe without test tasks that passed */
	assert_string_equal(verdict_of("{\"status\":\"passed\",\"tasks\":[{\"task\":\"x\",\"status\":\"passed\"}]}"),
			    "passed");
	/* error objects */
	assert_string_equal(verdict_of("{\"status\":\"failed\",\"failure_class\":\"BuildFail\",\"exit_status\":1}"),
			    "build-failed");
	assert_string_equal(verdict_of("{\"status\":\"error\",\"failure_class\":\"Fetch\",\"exit_status\":2}"),
			    "build-failed");
	assert_string_equal(verdict_of("{\"status\":\"error\",\"failure_class\":\"Network\",\"exit_status\":3}"),
			    "infra");
	assert_string_equal(verdict_of("{\"status\":\"error\",\"failure_class\":\"Timeout\",\"exit_status\":3}"),
			    "test-failed");
	assert_string_equal(verdict_of("{\"status\":\"error\",\"failure_class\":null,\"exit_status\":3}"), "infra");
	assert_int_equal(manager_verdict_exit("passed"), 0);
	assert_int_equal(manager_verdict_exit("no-tests"), 0);
	assert_int_equal(manager_verdict_exit("test-failed"), 1);
	assert_int_equal(manager_verdict_exit("build-failed"), 1);
	assert_int_equal(manager_verdict_exit("infra"), 3);
}

static void test_posargs(void **state)
{
	(void)state;
	const char *words[] = {"-k", "a or b", "it's", "$HOME;`x`"};
	struct recipe_vars v = {.posargs = words, .n_posargs = 4};
	char *out = NULL;
	struct pyti_err err = {0};
	assert_int_equal(recipe_expand("pytest {posargs} -q", &v, &out, &err), 0);
	assert_string_equal(out, "pytest '-k' 'a or b' 'it'\\''s' '$HOME;`x`' -q");
	free(out);
	assert_int_equal(recipe_expand("pytest {posargs:tests -x}", &v, &out, &err), 0);
	assert_string_equal(out, "pytest '-k' 'a or b' 'it'\\''s' '$HOME;`x`'");
	free(out);
	struct recipe_vars none = {0};
	assert_int_equal(recipe_expand("pytest {posargs} -q", &none, &out, &err), 0);
	assert_string_equal(out, "pytest  -q");
	free(out);
	assert_int_equal(recipe_expand("pytest {posargs:tests -x}", &none, &out, &err), 0);
	assert_string_equal(out, "pytest tests -x");
	free(out);
	assert_int_equal(recipe_check_placeholders("a {posargs} b {posargs:c}", &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verdicts),
		cmocka_unit_test(test_posargs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

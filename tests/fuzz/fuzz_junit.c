/* libFuzzer: a test task's JUnit file (report_junit_counts, report_junit_write): whatever a hostile
 * package writes there, the counts are never negative, the failure list stays capped with bounded
 * strings, and the --junit file made from it parses back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/pyti-fuzz-junit-XXXXXX";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	if (!init) {
		if (!mkdtemp(dir))
			abort();
		init = true;
	}
	struct pyti_err err = {0};
	_cleanup_free_ char *in = xasprintf("%s/junit-test.xml", dir), *out = xasprintf("%s/out.xml", dir);
	if (write_file_atomic(in, data, size, 0644, &err) < 0)
		abort();
	/* every test case (compare's added/removed tests): bounded ids and texts */
	json_t *cases = report_junit_cases_mem((const char *)data, size, "junit-test.xml", &err);
	size_t ci;
	json_t *cc;
	json_array_foreach(cases, ci, cc) {
		if (!json_is_string(json_object_get(cc, "id")) || strlen(pj_str(cc, "id", "")) > 1024 + 3 ||
		    strlen(pj_str(cc, "text", "")) > 4096 * 3 + 3)
			__builtin_trap();
	}
	json_decref(cases);
	json_t *c = report_junit_counts(in, &err);
	if (!c)
		return 0;
	static const char *const keys[] = {"passed", "failed", "skipped", "errors", "xfailed", "xpassed", "total"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (!json_is_integer(json_object_get(c, keys[i])) || pj_int(c, keys[i], -1) < 0)
			__builtin_trap();
	json_t *fl = json_object_get(c, "failures");
	if (json_array_size(fl) > 1000)
		__builtin_trap();
	size_t i;
	json_t *f;
	json_array_foreach(fl, i, f) {
		if (strlen(pj_str(f, "id", "")) > 1024 + 3 || strlen(pj_str(f, "message", "")) > 1024 + 3 ||
		    strlen(pj_str(f, "traceback", "")) > 1024 + 3)
			__builtin_trap();
	}
	json_object_set_new(c, "junit", json_string("out/junit-test.xml"));
	json_t *r = json_pack("{s:s, s:s, s:s, s:[{s:s, s:s, s:n, s:o}]}", "dist", "d", "status", "failed", "logs",
			      dir, "tasks", "task", "test", "status", "failed", "failure_class", "tests", c);
	if (report_junit_write(r, out, &err) < 0)
		abort();
	json_t *back = report_junit_counts(out, &err);
	if (!back)
		__builtin_trap(); /* our own output must always parse */
	json_decref(back);
	json_decref(r);
	return 0;
}

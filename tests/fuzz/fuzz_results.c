/* libFuzzer: the host's reader of a sandbox's out/results.json, as the manager collects it:
 * pj_load_beneath (capped, no link followed) and report_add_test_counts, which joins it with the
 * job's tasks and reads their JUnit and runtime files beneath the I/O directory; then the table and
 * the --junit file over what came of it. Whatever the file says, this never crashes, a task's test
 * counts are never negative, and pyti's own JUnit file parses back. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "manager.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/pyti-fuzz-results-XXXXXX";
static json_t *job;
static int io_fd = -1, out_fd = -1;

static void setup(void)
{
	if (!mkdtemp(dir))
		abort();
	struct pyti_err err = {0};
	_cleanup_free_ char *out = xasprintf("%s/out", dir), *junit = xasprintf("%s/out/junit-test.xml", dir),
			    *rt = xasprintf("%s/out/runtime-test.json", dir);
	static const char jx[] = "<testsuite tests=\"3\" failures=\"1\"><testcase name=\"a\"/><testcase name=\"b\">"
				 "<failure message=\"m\">tb</failure></testcase><testcase name=\"c\"><skipped/>"
				 "</testcase></testsuite>";
	static const char rj[] = "{\"python\": \"3.11.2\", \"modules\": {\"six\": {\"version\": \"1.17.0\"}}}";
	if (mkdir_p(out, 0755, &err) < 0 || write_file_atomic(junit, jx, sizeof jx - 1, 0644, &err) < 0 ||
	    write_file_atomic(rt, rj, sizeof rj - 1, 0644, &err) < 0)
		abort();
	io_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	out_fd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (io_fd < 0 || out_fd < 0)
		abort();
	job = json_pack("{s:[{s:s, s:n}, {s:s, s:s}, {s:s, s:s}]}", "tasks", "name", "install", "junit", "name",
			"test", "junit", "/io/out/junit-test.xml", "name", "gone", "junit", "out/junit-gone.xml");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!job)
		setup();
	struct pyti_err err = {0};
	_cleanup_free_ char *path = xasprintf("%s/out/results.json", dir);
	if (write_file_atomic(path, data, size, 0644, &err) < 0)
		abort();
	json_t *res = pj_load_beneath(out_fd, "results.json", 64u << 20, &err);
	if (!res)
		return 0;
	report_add_test_counts(res, job, io_fd);
	/* The first task named "test" got its counts from the job's JUnit file: the real ones. */
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(res, "tasks"), i, t) {
		if (!json_is_object(t) || strcmp(pj_str(t, "task", ""), "test") != 0)
			continue;
		json_t *c = json_object_get(t, "tests");
		if (!json_is_object(c) || pj_int(c, "total", -1) != 3 || pj_int(c, "failed", -1) != 1)
			__builtin_trap();
		break;
	}
	FILE *f = fopen("/dev/null", "w");
	if (!f)
		abort();
	report_table(f, res, true);
	fclose(f);
	if (json_is_object(res)) {
		json_object_set_new(res, "logs", json_string(dir));
		_cleanup_free_ char *x = xasprintf("%s/pyti.xml", dir);
		if (report_junit_write(res, x, &err) == 0) {
			json_t *back = report_junit_counts(x, &err);
			if (!back)
				__builtin_trap();
			json_decref(back);
		}
	}
	json_decref(res);
	return 0;
}

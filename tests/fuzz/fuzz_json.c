/* libFuzzer: core's JSON loading of job.json / results.json documents (pj_loads) and the getters
 * the host and agent use on them. */
#include <stdint.h>
#include <string.h>

#include "core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pyti_err err = {0};
	json_t *j = pj_loads((const char *)data, size, &err);
	if (!j)
		return 0;
	(void)pj_str(j, "job", NULL);
	(void)pj_str(j, "dist", "");
	(void)pj_num(j, "wall_s", 0);
	(void)pj_bool(j, "output_truncated", false);
	json_t *tasks = json_object_get(j, "tasks");
	size_t i;
	json_t *t;
	json_array_foreach(tasks, i, t) {
		(void)pj_str(t, "name", NULL);
		(void)pj_str(t, "run", NULL);
		(void)pj_int(t, "timeout", 0);
		(void)pj_int(t, "memory", 0);
		(void)pj_num(t, "cpu_user_s", 0);
		const char *fc = pj_str(t, "failure_class", NULL);
		(void)pyti_fclass_parse(fc);
		const char *out = pj_str(t, "output", NULL);
		if (out) {
			json_t *s = pj_string_lossy(out, strlen(out));
			json_decref(s);
		}
	}
	/* untrusted bytes of the document itself, as the host does with task output */
	json_t *s = pj_string_lossy((const char *)data, size);
	if (!s)
		__builtin_trap();
	json_decref(s);
	char *d = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	free(d);
	json_decref(j);
	return 0;
}

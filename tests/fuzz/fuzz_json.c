/* libFuzzer: core's JSON loading of job.json / results.json documents (pj_loads) and the getters
 * the host and agent use on them. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The terminal sanitiser's promise: its output is valid UTF-8 with no C0 (but \n \t when
 * kept), no DEL, no C1 and none of the bidi controls, whatever came in. */
static void term_check(const char *s, size_t n)
{
	char *out = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&out, &len);
	if (!m)
		return;
	term_put_safe(m, s, n, TERM_KEEP_NEWLINES);
	fclose(m);
	const unsigned char *p = (const unsigned char *)out;
	for (size_t i = 0; i < len;) {
		size_t k = utf8_seq(p + i, len - i);
		if (k == 0 || p[i] == 0x7f || (p[i] < 0x20 && p[i] != '\n' && p[i] != '\t'))
			__builtin_trap();
		if (k == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0) /* C1 */
			__builtin_trap();
		if (k == 3 && p[i] == 0xe2 && p[i + 1] == 0x80 && (p[i + 2] == 0x8e || p[i + 2] == 0x8f ||
								   (p[i + 2] >= 0xaa && p[i + 2] <= 0xae)))
			__builtin_trap(); /* U+200E/F, U+202A..U+202E */
		if (k == 3 && p[i] == 0xe2 && p[i + 1] == 0x81 && p[i + 2] >= 0xa6 && p[i + 2] <= 0xa9)
			__builtin_trap(); /* U+2066..U+2069 */
		i += k;
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	term_check((const char *)data, size); /* every input, JSON or not */
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

/* libFuzzer: the report table (report_table) and the --junit file (report_junit_write) over any
 * results JSON: the strings in it come back from the sandbox, so the table must never carry a byte
 * that drives a terminal (controls but newline and tab, ESC, DEL), and the JUnit file pyti writes must parse back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manager.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[] = "/tmp/pyti-fuzz-report-XXXXXX";

static void table_clean(const json_t *r, bool show_failures)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		abort();
	report_table(f, r, show_failures);
	fclose(f);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
			__builtin_trap();
	}
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	if (!init) {
		if (!mkdtemp(dir))
			abort();
		init = true;
	}
	json_error_t je;
	json_t *r = json_loadb((const char *)data, size, JSON_DECODE_ANY, &je);
	if (!r)
		return 0;
	table_clean(r, false);
	table_clean(r, true);
	if (json_is_object(r)) {
		/* "logs" is the host's own (the kept runs/<job> directory), never the sandbox's */
		json_object_set_new(r, "logs", json_string(dir));
		struct pyti_err err = {0};
		_cleanup_free_ char *out = xasprintf("%s/out.xml", dir);
		if (report_junit_write(r, out, &err) == 0) {
			json_t *back = report_junit_counts(out, &err);
			if (!back)
				__builtin_trap(); /* our own output must always parse */
			json_decref(back);
		}
	}
	json_decref(r);
	return 0;
}

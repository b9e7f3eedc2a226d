/* libFuzzer: reading back the test requirements the fetch sandbox printed (fetch_parse_requirements):
 * whatever a hostile sdist makes testreqs.py print, every line kept is a plain requirement. The same
 * bytes as a failed pip task's output go through fetch_classify_pip. */
#include <stdint.h>
#include <string.h>

#include "fetch-int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char **v = fetch_parse_requirements((const char *)data, size);
	size_t n = 0;
	for (; v[n]; n++) {
		size_t len = strlen(v[n]);
		if (!fetch_requirement_ok(v[n], len) || v[n][0] == '-' || memchr(v[n], '\n', len))
			__builtin_trap();
	}
	if (n > FETCH_MAX_REQS)
		__builtin_trap();
	fetch_strv_free(v);

	/* the same bytes as testreqs.py's record (out/testreqs.json): whatever it holds, the record
	 * kept has only the known fields, capped, and dumps as valid JSON */
	json_t *in = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	json_t *rec = fetch_testreqs_record(in);
	if (json_object_size(rec) != 3 || json_array_size(json_object_get(rec, "dropped")) > FETCH_MAX_REQS)
		__builtin_trap();
	char *dump = json_dumps(rec, JSON_COMPACT);
	if (!dump)
		__builtin_trap();
	free(dump);
	json_decref(rec);
	json_decref(in);

	/* and as a failed pip task's output and log (classify.c): always an error with a class, its
	 * message a capped quote */
	char *text = strndup((const char *)data, size);
	if (!text)
		return 0;
	char *ff = strchr(text, '\f'); /* output, then the log after a form feed */
	if (ff)
		*ff = '\0';
	struct pyti_err err = {0};
	if (fetch_classify_pip("fuzz", "get its dependencies", text, ff ? ff + 1 : NULL, &err) != -1 ||
	    err.fclass == PYTI_FC_NONE)
		__builtin_trap();
	free(text);
	return 0;
}

/* libFuzzer: reading back the test requirements the fetch sandbox printed (fetch_parse_requirements):
 * whatever a hostile sdist makes testreqs.py print, every line kept is a plain requirement. */
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
	return 0;
}

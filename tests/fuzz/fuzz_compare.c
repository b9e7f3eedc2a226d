/* libFuzzer: compare's text side (src/compare/signature.c) on what a tested package writes — a
 * failure's traceback line, message and text (NUL-separated in the input), a distribution name,
 * pip's or uv's install output: the signature is a bounded, NUL-terminated string, names (of the
 * distribution, a broken dependency, an installed wheel) are normalised, wheel versions non-empty. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compare-int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	/* up to three NUL-separated strings: traceback, message, text */
	const char *parts[3] = {NULL, NULL, NULL};
	size_t off = 0;
	for (int i = 0; i < 3 && off <= size; i++) {
		parts[i] = s + off;
		off += strlen(s + off) + 1;
	}
	char *sig = compare_signature(parts[0], parts[1], parts[2]);
	if (!sig || strlen(sig) > size + 64)
		__builtin_trap();
	free(sig);
	char *n = compare_project_name(s);
	for (const char *p = n; *p; p++)
		if (*p == '_' || *p == '.' || (*p >= 'A' && *p <= 'Z'))
			__builtin_trap();
	char *dep = cmp_dep_from_text(s, n);
	if (dep && strcmp(dep, n) == 0)
		__builtin_trap();
	free(dep);
	free(n);
	free(cmp_last_exception_line(parts[2] ? parts[2] : s));
	json_t *set = cmp_installed(s);
	const char *k;
	json_t *v;
	json_object_foreach(set, k, v) {
		const char *ver = json_string_value(v);
		if (!*k || !ver || !*ver || json_object_size(set) > 10000)
			__builtin_trap();
		for (const char *p = k; *p; p++)
			if (*p == '_' || *p == '.' || (*p >= 'A' && *p <= 'Z'))
				__builtin_trap();
	}
	json_decref(set);
	free(s);
	return 0;
}

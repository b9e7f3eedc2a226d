/* libFuzzer: tox.ini's [testenv] commands as pyti reads them on the host (recipe_tox_plan): whatever
 * a hostile project puts in its tox.ini, the plan is a pytest or unittest command with string
 * arguments within the bounds, every note a string, and nothing is ever run. */
#include <stdint.h>
#include <string.h>

#include "recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *notes = NULL;
	json_t *plan = recipe_tox_plan((const char *)data, size, &notes);
	if (!json_is_array(notes) || json_array_size(notes) > 40)
		__builtin_trap();
	if (plan) {
		const char *runner = json_string_value(json_object_get(plan, "runner"));
		json_t *args = json_object_get(plan, "args");
		if (!runner || (strcmp(runner, "pytest") && strcmp(runner, "unittest")) || !json_is_array(args) ||
		    json_array_size(args) > 256)
			__builtin_trap();
		size_t i;
		json_t *a;
		json_array_foreach(args, i, a)
			if (!json_is_string(a) || json_string_length(a) > 4096)
				__builtin_trap();
		char *dump = json_dumps(plan, JSON_COMPACT);
		if (!dump)
			__builtin_trap();
		free(dump);
		json_decref(plan);
	}
	json_decref(notes);
	return 0;
}

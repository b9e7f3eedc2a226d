/* libFuzzer: recipe parsing from memory, then expansion into job.json tasks. */
#include <stdint.h>
#include <string.h>

#include "recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct recipe *r = NULL;
	struct pyti_err err = {0};
	if (recipe_load_buffer("fuzz.ini", (const char *)data, size, &r, &err) < 0) {
		/* every refusal is a usage error that names the source */
		if (err.status != PYTI_EXIT_USAGE || strncmp(err.msg, "fuzz.ini", 8) != 0)
			__builtin_trap();
		return 0;
	}
	/* the order is topological */
	for (size_t i = 0; i < r->n_tasks; i++)
		for (size_t k = 0; k < r->tasks[i].n_needs; k++) {
			const struct recipe_task *d = recipe_find_task(r, r->tasks[i].needs[k]);
			if (!d || d >= &r->tasks[i])
				__builtin_trap();
		}
	const char *extras[] = {"test"};
	const char *mods[] = {"six", "six.moves"};
	const char *posargs[] = {"-k", "it's $x"}; /* {posargs} with and without words */
	struct recipe_vars v = {.dist = "six==1.17.0", .name = "six", .version = "1.17.0", .extras = extras,
				.n_extras = 1, .modules = mods, .n_modules = 2, .posargs = posargs,
				.n_posargs = size & 1 ? 2 : 0};
	json_t *tasks = recipe_to_job_tasks(r, &v, &err);
	/* what loading accepted becomes JSON: invalid UTF-8 must have been refused at parse time,
	 * with file:line, not here after a fetch (an infrastructure error); an expansion may still
	 * fail (too long) */
	if (!tasks && (strstr(err.msg, "JSON") || strstr(err.msg, "UTF-8")))
		__builtin_trap();
	if (tasks) {
		char *s = json_dumps(tasks, JSON_COMPACT);
		free(s);
		json_decref(tasks);
	}
	recipe_free(r);
	return 0;
}

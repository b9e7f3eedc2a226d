/* recipe: INI recipes (docs/design.md §4) -> a validated task DAG -> the "tasks" array of job.json.
 *
 * File format (parsed with inih; every error names "file:line"):
 *
 *   [recipe]
 *   name = default                 ; optional, defaults to the file's base name without .ini
 *   description = ...
 *   requires = pytest, pytest-xdist   ; extra requirements to fetch (comma or newline separated)
 *   tmpfs = 1G                     ; size of each of the sandbox's tmpfs (/tmp, /var/tmp, /dev/shm,
 *                                  ; /run); default 1 GiB, at least 16M
 *   io_limit = 4G                  ; ns: bytes each task may add under /io (a file, or all told);
 *                                  ; default 4 GiB, at least 16M
 *   test_from = installed          ; where the default test runner (runtests.py) runs the tests:
 *                                  ; "installed" (default) a copy of the source without the modules
 *                                  ; the distribution installs, so they import from the venv;
 *                                  ; "source" the unpacked source itself, as in a checkout
 *
 *   [task:NAME]                    ; NAME: letters, digits, '.', '_', '-' (it names out/logs/NAME.log)
 *   run = shell command            ; required; continuation lines (indented) join with "\n"
 *   needs = install, other         ; comma and/or space separated; must name tasks of this recipe
 *   cwd = /io/src                  ; absolute, default /io
 *   timeout = 15m                  ; seconds: 300, 300s, 5m, 1h, 1d; 0 = none (default)
 *   no_output_timeout = 300
 *   memory = 2G                    ; bytes with K/M/G/T suffix (powers of 1024), 0 = none
 *   pids = 256                     ; 0 = the agent's default
 *   output_limit = 16M             ; default 16 MiB
 *   env = KEY=VALUE                ; repeat the key or indent continuation lines for more
 *   junit = out/junit-test.xml     ; written by the task; under /io/out ("/io/" prefix accepted)
 *   description = ...
 *
 * The file is UTF-8 text, a regular file of at most 1 MiB (no NUL): anything else is refused with
 * file:line before a job starts. Lines starting with ';' or '#' are comments. There are no inline comments: ';' inside a value is
 * part of it (shell commands need it).
 *
 * Placeholders, substituted by recipe_to_job_tasks() in run, cwd and env values:
 *   {dist}         the distribution as the user named it ("six==1.17.0", a file name, ...)
 *   {name}         the project name (as in its metadata)
 *   {version}      its version
 *   {requirement}  name[extra1,extra2]==version (pip requirement for exactly this dist + its extras)
 *   {test_requirements}  "-r FILE" naming the test requirements: the recipe's requires and
 *                  the test requirements the dist's source declares (PEP 735 groups
 *                  test/tests/testing, else a test or dev requirements file); empty when none
 *   {module}       the top-level importable modules joined with ", ", so that
 *                  `python -c "import {module}"` imports all of them in one statement
 *   {posargs}      the arguments after `pyti run DIST --`, each one single-quoted for the shell
 *                  (nothing when there are none); {posargs:DEFAULT} puts DEFAULT (recipe text, up to
 *                  the next '}') when there are none, as tox does
 *   {{ and }}      literal braces; "${" is left alone so shell ${VAR} needs no escaping
 * Any other {word} is an error at load time. Substituted values are checked to be shell-inert
 * (PEP 508 names, versions, identifiers), so a hostile package cannot inject shell syntax.
 */
#ifndef PYTI_RECIPE_H
#define PYTI_RECIPE_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#define RECIPE_DEFAULT_CWD "/io"
#define RECIPE_DEFAULT_OUTPUT_LIMIT (16ULL * 1024 * 1024)
#define RECIPE_DEFAULT_TMPFS (1ULL << 30)
#define RECIPE_MIN_TMPFS (16ULL << 20)
#define RECIPE_DEFAULT_IO_LIMIT (4ULL << 30)

struct recipe_task {
	char *name;
	char *description; /* or NULL */
	char *run;         /* with placeholders, unexpanded */
	char **needs;      /* names of tasks of the same recipe */
	size_t n_needs;
	char *cwd;         /* absolute; RECIPE_DEFAULT_CWD when not given */
	uint64_t timeout, no_output_timeout; /* seconds, 0 = none */
	uint64_t memory;                     /* bytes, 0 = none */
	uint64_t pids;                       /* 0 = the agent's default */
	uint64_t output_limit;               /* bytes, RECIPE_DEFAULT_OUTPUT_LIMIT when not given */
	char **env;                          /* "KEY=VALUE", in file order, keys unique */
	size_t n_env;
	char *junit; /* path relative to /io, always under "out/", or NULL */
	int line;    /* line of the [task:NAME] header */
};

struct recipe {
	char *name;
	char *description; /* or NULL */
	char *source;      /* file name used in messages ("recipe.ini", "<builtin:default>") */
	char **requires;   /* extra requirements to fetch, e.g. "pytest" */
	size_t n_requires;
	uint64_t tmpfs; /* bytes each sandbox tmpfs holds; RECIPE_DEFAULT_TMPFS when not given */
	uint64_t io_limit; /* ns: bytes a task may add under /io; RECIPE_DEFAULT_IO_LIMIT when not given */
	bool test_from_source; /* test_from = source: runtests.py runs in /io/src itself */
	/* Tasks in a validated topological order: every task comes after all tasks it needs; among
	 * tasks free to go, file order is kept. */
	struct recipe_task *tasks;
	size_t n_tasks;
};

/* Parse and validate. On error *out is untouched and err holds "file:line: message" with exit
 * status PYTI_EXIT_USAGE. The caller frees *out with recipe_free(). */
int recipe_load_file(const char *path, struct recipe **out, struct pyti_err *err);
/* Same from memory; source_name is used in messages and as the default recipe name. data need not
 * be NUL-terminated; a NUL byte inside is an error. */
int recipe_load_buffer(const char *source_name, const char *data, size_t len, struct recipe **out,
		       struct pyti_err *err);
/* A recipe compiled into pyti ("default"), parsed by the same parser. */
int recipe_builtin(const char *name, struct recipe **out, struct pyti_err *err);
/* NULL-terminated list of the built-in recipe names. */
const char *const *recipe_builtin_names(void);
/* The built-in recipe's INI text (for `pyti recipe show`), or NULL. */
const char *recipe_builtin_text(const char *name);
/* A name containing '/' or ending in ".ini" is a file, anything else a built-in recipe. */
int recipe_load(const char *name_or_path, struct recipe **out, struct pyti_err *err);
void recipe_free(struct recipe *r);
static inline void recipe_freep(struct recipe **r) { recipe_free(*r); }
#define _cleanup_recipe_ _cleanup_(recipe_freep)

const struct recipe_task *recipe_find_task(const struct recipe *r, const char *name);

/* Values for the placeholders. NULL fields expand to an error if the recipe uses them. */
struct recipe_vars {
	const char *dist;
	const char *name;
	const char *version;             /* may be NULL: {requirement} is then just name[extras] */
	const char *const *extras;       /* extras to install with {requirement} */
	size_t n_extras;
	const char *const *modules;      /* top-level importable module names for {module} */
	size_t n_modules;
	const char *requirement;         /* overrides the computed {requirement} when set */
	const char *test_requirements;   /* sandbox path of a requirements file with the recipe's
					  * requires and the source's declared test requirements, or NULL */
	const char *const *posargs;      /* {posargs}: the user's arguments for the test runner */
	size_t n_posargs;
};

/* Only checks that every {placeholder} in tmpl is a known one (what loading does). */
int recipe_check_placeholders(const char *tmpl, struct pyti_err *err);
/* Substitute placeholders in one string (exposed for tests and the CLI). Caller frees *out. */
int recipe_expand(const char *tmpl, const struct recipe_vars *vars, char **out, struct pyti_err *err);

/* The "tasks" array of job.json (docs/contracts.md), in topological order, placeholders expanded:
 * [{"name","run","needs":[],"cwd","env":{},"timeout","no_output_timeout","memory","pids",
 *   "output_limit","junit"}]. Returns a new reference, or NULL with err set. */
json_t *recipe_to_job_tasks(const struct recipe *r, const struct recipe_vars *vars, struct pyti_err *err);

/* The test command tox.ini's [testenv] `commands` declares (data: the file's bytes, untrusted; no
 * substitution but {posargs} and {toxinidir} is made, nothing is run): the first pytest or unittest
 * command, as {"runner": "pytest"|"unittest", "args": [...] ("{posargs}" a marker),
 * "posargs_default": [...]|null, "command", "line"}, or NULL. *notes (a new array, never NULL):
 * the commands passed over and why ("tox.ini:12: ..."). */
json_t *recipe_tox_plan(const char *data, size_t len, json_t **notes);
/* Write io_dir/pyti/runtests.py and io_dir/pyti/plan.json ({"test_from", "modules", "tox",
 * "tox_notes"}) for the default recipe's test task, reading io_dir/src/tox.ini beneath src (no
 * link followed). *plan_out (may be NULL) gets a reference to the plan. */
int recipe_stage_guest_files(const char *io_dir, const struct recipe *r, const struct recipe_vars *v,
			     json_t **plan_out, struct pyti_err *err);

/* "300", "300s", "5m", "1h", "1d" -> seconds. */
int recipe_parse_duration(const char *s, uint64_t *out);
/* "512", "64K", "2G", "1GiB", "16MB" (powers of 1024) -> bytes. */
int recipe_parse_bytes(const char *s, uint64_t *out);

#endif

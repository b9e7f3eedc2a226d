/* The recipes compiled into pyti, parsed by the same parser as a user's (recipe.c). */
#include <string.h>

#include "recipe.h"

static const char builtin_default[] =
	"[recipe]\n"
	"name = default\n"
	"description = install the distribution, import its modules, run its tests the way the project declares\n"
	/* pytest-cov: many projects put --cov in their pytest addopts or use its markers */
	"requires = pytest, pytest-cov\n"
	"\n"
	"[task:install]\n"
	"description = create a clean venv (no Debian site-packages) and install from the job's wheelhouse\n"
	/* Without --system-site-packages the image's Debian packages (pytest 7.2, attrs, packaging…)
	 * cannot shadow what the resolver chose; pip itself stays the image's, pointed at the venv
	 * with --python (pip >= 22.3), so the venv needs no pip of its own. uv, when the image has it
	 * (src/image/uv.c), installs the same set from the same wheelhouse about ten times faster
	 * (bench/install); its own configuration files are not read. PYTI_INSTALLER=pip (pyti run
	 * -e) keeps pip. Either installer gets the same arguments, on one line. */
	"run = /usr/bin/python3 -m venv --without-pip /tmp/pyti-venv &&\n"
	/* continuation lines join with "\n": each line is one shell command line */
	"  if [ -x /usr/local/bin/uv ] && [ \"$PYTI_INSTALLER\" != pip ]; then set -- /usr/local/bin/uv pip install --no-config --no-cache --offline --python /tmp/pyti-venv/bin/python;\n"
	"  else set -- /usr/bin/python3 -m pip --python /tmp/pyti-venv/bin/python install --disable-pip-version-check --no-input; fi &&\n"
	"  \"$@\" --no-index --find-links /io/wheels '{requirement}' {test_requirements}\n"
	"timeout = 10m\n"
	"\n"
	"[task:import]\n"
	"description = import every top-level module of the distribution\n"
	"needs = install\n"
	/* out/runtime-<task>.json is the raw data's proof of what was imported (docs/contracts.md) */
	"run = /tmp/pyti-venv/bin/python -c 'import {module}; import json, sys; json.dump({\"python\": sys.version.split()[0], \"sys_path\": sys.path, \"modules\": {m: getattr(sys.modules.get(m), \"__file__\", None) for m in \"{module}\".split(\", \")} }, open(\"/io/out/runtime-import.json\", \"w\"), default=str)'\n"
	"cwd = /tmp\n"
	"timeout = 5m\n"
	"\n"
	"[task:test]\n"
	"description = run the distribution's own tests against the installed distribution, the way the project "
	"declares: tox.ini [testenv] commands, else pytest with its configuration, else unittest discovery\n"
	"needs = install\n"
	/* runtests.py (src/recipe/runtests.py) reads /io/pyti/plan.json, runs the tests in a copy of
	 * /io/src whose installed modules are taken out (test_from = source: in /io/src), writes
	 * out/junit-test.xml (unittest too) and out/runtime-test.json; arguments after "--" fill
	 * tox's {posargs} */
	"run = /tmp/pyti-venv/bin/python /io/pyti/runtests.py -- {posargs}\n"
	"cwd = /tmp\n"
	"junit = out/junit-test.xml\n"
	"timeout = 900\n"
	"no_output_timeout = 300\n"
	"memory = 2G\n";

static const struct {
	const char *name, *text;
} builtins[] = {{"default", builtin_default}};

static const char *const builtin_names[] = {"default", NULL};

const char *const *recipe_builtin_names(void) { return builtin_names; }

const char *recipe_builtin_text(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(builtins); i++)
		if (strcmp(builtins[i].name, name) == 0)
			return builtins[i].text;
	return NULL;
}

int recipe_builtin(const char *name, struct recipe **out, struct pyti_err *err)
{
	const char *text = recipe_builtin_text(name);
	if (!text)
		return pyti_err_usage(err, "unknown recipe '%s' (built-in: default; or a path to an .ini file)",
				      name);
	_cleanup_free_ char *src = xasprintf("<builtin:%s>", name);
	return recipe_load_buffer(src, text, strlen(text), out, err);
}

int recipe_load(const char *name_or_path, struct recipe **out, struct pyti_err *err)
{
	size_t n = strlen(name_or_path);
	if (strchr(name_or_path, '/') || (n > 4 && strcmp(name_or_path + n - 4, ".ini") == 0))
		return recipe_load_file(name_or_path, out, err);
	return recipe_builtin(name_or_path, out, err);
}

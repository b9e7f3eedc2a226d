/* Unit tests for the recipe module: parsing, every error message, the built-in recipe, DAG order,
 * placeholder expansion and the job.json "tasks" shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include <ini.h>

#include "recipe.h"

static struct recipe *load_ok(const char *text)
{
	struct recipe *r = NULL;
	struct pyti_err err = {0};
	int rc = recipe_load_buffer("recipe.ini", text, strlen(text), &r, &err);
	if (rc != 0)
		fail_msg("unexpected error: %s", err.msg);
	assert_non_null(r);
	return r;
}

static void expect_err(const char *text, const char *msg)
{
	struct recipe *r = NULL;
	struct pyti_err err = {0};
	int rc = recipe_load_buffer("recipe.ini", text, strlen(text), &r, &err);
	if (rc == 0) {
		recipe_free(r);
		fail_msg("expected error '%s', got success", msg);
	}
	assert_null(r);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_string_equal(err.msg, msg);
}

static void test_parse_full(void **state)
{
	(void)state;
	struct recipe *r = load_ok("; a comment\n"
				   "# another\n"
				   "[recipe]\n"
				   "name = mine\n"
				   "description = a recipe\n"
				   "requires = pytest, pytest-xdist[psutil,setproctitle]\n"
				   "  hypothesis\n"
				   "\n"
				   "[task:build]\n"
				   "run = echo a; echo b\n"
				   "  echo c\n"
				   "timeout = 5m\n"
				   "no_output_timeout = 1h\n"
				   "memory = 512M\n"
				   "output_limit = 1K\n"
				   "pids = 64\n"
				   "env = A=1\n"
				   "env = B=x=y\n"
				   "  C=3\n"
				   "cwd = /io/src\n"
				   "junit = /io/out/j.xml\n"
				   "description = builds\n");
	assert_string_equal(r->name, "mine");
	assert_string_equal(r->description, "a recipe");
	assert_string_equal(r->source, "recipe.ini");
	assert_int_equal(r->n_requires, 3);
	assert_string_equal(r->requires[0], "pytest");
	assert_string_equal(r->requires[1], "pytest-xdist[psutil,setproctitle]");
	assert_string_equal(r->requires[2], "hypothesis");
	assert_int_equal(r->n_tasks, 1);
	const struct recipe_task *t = &r->tasks[0];
	assert_string_equal(t->name, "build");
	assert_string_equal(t->run, "echo a; echo b\necho c");
	assert_int_equal(t->timeout, 300);
	assert_int_equal(t->no_output_timeout, 3600);
	assert_int_equal(t->memory, 512ULL << 20);
	assert_int_equal(t->output_limit, 1024);
	assert_int_equal(t->pids, 64);
	assert_int_equal(t->n_env, 3);
	assert_string_equal(t->env[0], "A=1");
	assert_string_equal(t->env[1], "B=x=y");
	assert_string_equal(t->env[2], "C=3");
	assert_string_equal(t->cwd, "/io/src");
	assert_string_equal(t->junit, "out/j.xml");
	assert_string_equal(t->description, "builds");
	assert_int_equal(t->line, 9);
	recipe_free(r);
}

static void test_defaults(void **state)
{
	(void)state;
	struct recipe *r = NULL;
	struct pyti_err err = {0};
	const char *text = "[task:a]\nrun = true\n";
	assert_int_equal(recipe_load_buffer("dir/smoke.ini", text, strlen(text), &r, &err), 0);
	assert_string_equal(r->name, "smoke");
	assert_null(r->description);
	assert_int_equal(r->n_requires, 0);
	assert_string_equal(r->tasks[0].cwd, "/io");
	assert_int_equal(r->tasks[0].timeout, 0);
	assert_int_equal(r->tasks[0].output_limit, RECIPE_DEFAULT_OUTPUT_LIMIT);
	assert_null(r->tasks[0].junit);
	recipe_free(r);
	/* inih's run-time options are put back for its other users (fetch reads pip.conf) */
	assert_true(ini_allow_inline_comments);
	assert_true(ini_use_stack);
	assert_false(ini_stop_on_first_error);
	assert_int_equal(ini_max_line, 200);
}

static void test_values(void **state)
{
	(void)state;
	uint64_t v;
	assert_int_equal(recipe_parse_duration("300", &v), 0), assert_int_equal(v, 300);
	assert_int_equal(recipe_parse_duration("300s", &v), 0), assert_int_equal(v, 300);
	assert_int_equal(recipe_parse_duration("5m", &v), 0), assert_int_equal(v, 300);
	assert_int_equal(recipe_parse_duration("1h", &v), 0), assert_int_equal(v, 3600);
	assert_int_equal(recipe_parse_duration("2d", &v), 0), assert_int_equal(v, 172800);
	assert_int_equal(recipe_parse_duration("0", &v), 0), assert_int_equal(v, 0);
	assert_int_equal(recipe_parse_duration("-1", &v), -1);
	assert_int_equal(recipe_parse_duration("5x", &v), -1);
	assert_int_equal(recipe_parse_duration("", &v), -1);
	assert_int_equal(recipe_parse_duration("1.5h", &v), -1);
	assert_int_equal(recipe_parse_duration("99999999999999999999", &v), -1);
	assert_int_equal(recipe_parse_bytes("2G", &v), 0), assert_int_equal(v, 2ULL << 30);
	assert_int_equal(recipe_parse_bytes("64k", &v), 0), assert_int_equal(v, 64ULL << 10);
	assert_int_equal(recipe_parse_bytes("1GiB", &v), 0), assert_int_equal(v, 1ULL << 30);
	assert_int_equal(recipe_parse_bytes("16MB", &v), 0), assert_int_equal(v, 16ULL << 20);
	assert_int_equal(recipe_parse_bytes("1T", &v), 0), assert_int_equal(v, 1ULL << 40);
	assert_int_equal(recipe_parse_bytes("100", &v), 0), assert_int_equal(v, 100);
	assert_int_equal(recipe_parse_bytes("100b", &v), 0), assert_int_equal(v, 100);
	assert_int_equal(recipe_parse_bytes("10Q", &v), -1);
	assert_int_equal(recipe_parse_bytes("G", &v), -1);
	assert_int_equal(recipe_parse_bytes("99999999999T", &v), -1);
}

static void test_errors(void **state)
{
	(void)state;
	expect_err("[task:test]\nrun = x\ntimout = 5\n", "recipe.ini:3: unknown key 'timout' in [task:test]");
	expect_err("[recipe]\nrun = x\n", "recipe.ini:2: unknown key 'run' in [recipe]");
	expect_err("[tasks:x]\nrun = x\n",
		   "recipe.ini:1: unknown section [tasks:x] (expected [recipe] or [task:NAME])");
	expect_err("[task:a]\nrun = x\ntimeout = soon\n",
		   "recipe.ini:3: bad value for 'timeout' in [task:a]: 'soon' (expected seconds, e.g. 300, 5m or 1h)");
	expect_err("[task:a]\nrun = x\nmemory = lots\n",
		   "recipe.ini:3: bad value for 'memory' in [task:a]: 'lots' (expected bytes, e.g. 512M or 2G)");
	expect_err("[task:a]\nrun = x\npids = 1k\n",
		   "recipe.ini:3: bad value for 'pids' in [task:a]: '1k' (expected a count)");
	expect_err("[task:a]\nrun = x\nenv = NOEQUALS\n",
		   "recipe.ini:3: bad value for 'env' in [task:a]: expected KEY=VALUE, got 'NOEQUALS'");
	expect_err("[task:a]\nrun = x\nenv = A=1\n  A=2\n", "recipe.ini:4: duplicate env variable 'A' in [task:a]");
	expect_err("[task:a]\nrun = x\ncwd = src\n",
		   "recipe.ini:3: bad value for 'cwd' in [task:a]: 'src' is not an absolute path");
	expect_err("[task:a]\nrun = x\njunit = /tmp/j.xml\n",
		   "recipe.ini:3: bad value for 'junit' in [task:a]: '/tmp/j.xml' is not a path under /io/out "
		   "(e.g. out/junit-a.xml)");
	expect_err("[task:a]\nrun = x\njunit = out/../../etc/x\n",
		   "recipe.ini:3: bad value for 'junit' in [task:a]: 'out/../../etc/x' is not a path under /io/out "
		   "(e.g. out/junit-a.xml)");
	expect_err("[task:a]\nrun = x\n\n[task:b]\nrun = y\n[task:a]\nrun = z\n",
		   "recipe.ini:6: duplicate task 'a' (first defined at line 1)");
	expect_err("[task:a]\nrun = x\nrun = y\n", "recipe.ini:3: duplicate key 'run' in [task:a]");
	expect_err("[recipe]\nname = x\n[recipe]\n", "recipe.ini:3: duplicate section [recipe] (first at line 1)");
	expect_err("[recipe]\nname = x\n\n[task:a]\ntimeout = 5\n", "recipe.ini:4: [task:a] has no 'run'");
	expect_err("[task:a]\n", "recipe.ini:1: [task:a] has no 'run'");
	expect_err("[task:a]\nrun = x\nneeds = b\n", "recipe.ini:3: [task:a] needs unknown task 'b'");
	expect_err("[recipe]\nname = x\n", "recipe.ini: empty recipe: no [task:NAME] section");
	expect_err("", "recipe.ini: empty recipe: no [task:NAME] section");
	expect_err("run = x\n", "recipe.ini:1: key 'run' outside a section (start with [recipe] or [task:NAME])");
	expect_err("[task:a]\nrun = x\njust words\n",
		   "recipe.ini:3: expected 'key = value', '[section]' or a comment");
	expect_err("[task:a\nrun = x\n", "recipe.ini:1: section header without ']'");
	expect_err("[task:a b]\nrun = x\n",
		   "recipe.ini:1: bad task name 'a b' in [task:a b] (letters, digits, '.', '_', '-'; at most 64)");
	expect_err("[task:../x]\nrun = x\n",
		   "recipe.ini:1: bad task name '../x' in [task:../x] (letters, digits, '.', '_', '-'; at most 64)");
	expect_err("[task:a]\nrun = x\ntimeout = 5\n  6\n",
		   "recipe.ini:4: 'timeout' in [task:a] takes a single line (indented line continues it)");
	expect_err("[task:a]\nrun = echo {nope}\n",
		   "recipe.ini:2: unknown placeholder {nope} (known: {dist} {name} {version} {requirement} "
		   "{module} {test_requirements} {posargs}; write {{ for a literal brace) in 'run' of [task:a]");
	expect_err("[task:a]\nrun = x\nenv = A={bad}\n",
		   "recipe.ini:3: unknown placeholder {bad} (known: {dist} {name} {version} {requirement} "
		   "{module} {test_requirements} {posargs}; write {{ for a literal brace) in 'env' of [task:a]");
	expect_err("[task:a]\nrun =\n", "recipe.ini:2: empty 'run' in [task:a]");
}

/* [recipe] tmpfs and io_limit: the sandbox's bounds (issue 8, point 5) */
static void test_limit_keys(void **state)
{
	(void)state;
	struct recipe *r = load_ok("[task:a]\nrun = true\n");
	assert_int_equal(r->tmpfs, RECIPE_DEFAULT_TMPFS);
	assert_int_equal(r->io_limit, RECIPE_DEFAULT_IO_LIMIT);
	recipe_free(r);
	r = load_ok("[recipe]\ntmpfs = 256M\nio_limit = 8G\n[task:a]\nrun = true\n");
	assert_int_equal(r->tmpfs, 256ULL << 20);
	assert_int_equal(r->io_limit, 8ULL << 30);
	recipe_free(r);
	expect_err("[recipe]\ntmpfs = 1K\n[task:a]\nrun = x\n",
		   "recipe.ini:2: bad value for 'tmpfs' in [recipe]: '1K' (expected bytes of at least 16M, e.g. 512M or 2G)");
	expect_err("[recipe]\nio_limit = 0\n[task:a]\nrun = x\n",
		   "recipe.ini:2: bad value for 'io_limit' in [recipe]: '0' (expected bytes of at least 16M, e.g. 512M or 8G)");
	expect_err("[task:a]\nrun = x\ntmpfs = 1G\n", "recipe.ini:3: unknown key 'tmpfs' in [task:a]");
	expect_err("[recipe]\ntmpfs = 1G\ntmpfs = 2G\n[task:a]\nrun = x\n",
		   "recipe.ini:3: duplicate key 'tmpfs' in [recipe]");
}

static char *long_run_line(size_t n)
{
	struct buf b = BUF_INIT(0);
	buf_puts(&b, "[task:a]\nrun = ");
	for (size_t i = 0; i < n; i++)
		buf_append(&b, "x", 1);
	buf_puts(&b, "\n");
	return buf_steal(&b);
}

static void test_nul_and_long_lines(void **state)
{
	(void)state;
	struct recipe *r = NULL;
	struct pyti_err err = {0};
	const char text[] = "[task:a]\nrun = a\0b\n";
	assert_int_equal(recipe_load_buffer("recipe.ini", text, sizeof text - 1, &r, &err), -1);
	assert_string_equal(err.msg, "recipe.ini:2: NUL byte in recipe");

	/* a long line within the limit is kept whole (inih's default limit is 200 bytes) */
	size_t n = 20000;
	char *big = long_run_line(n);
	assert_int_equal(recipe_load_buffer("recipe.ini", big, strlen(big), &r, &err), 0);
	assert_int_equal(strlen(r->tasks[0].run), n);
	recipe_free(r);
	free(big);

	n = 70000;
	big = long_run_line(n);
	assert_int_equal(recipe_load_buffer("recipe.ini", big, strlen(big), &r, &err), -1);
	assert_string_equal(err.msg, "recipe.ini:2: line too long (more than 65533 bytes)");
	free(big);

	/* long section names are not truncated (inih keeps 50 bytes of them) */
	const char *lt = "[task:a-very-long-task-name-that-goes-past-fifty-bytes-xyz]\nrun = x\ntimout = 1\n";
	assert_int_equal(recipe_load_buffer("recipe.ini", lt, strlen(lt), &r, &err), -1);
	assert_string_equal(err.msg, "recipe.ini:3: unknown key 'timout' in "
				     "[task:a-very-long-task-name-that-goes-past-fifty-bytes-xyz]");
}

static void test_cycles(void **state)
{
	(void)state;
	expect_err("[task:a]\nrun = x\nneeds = a\n", "recipe.ini:1: dependency cycle: a -> a");
	expect_err("[task:a]\nrun = x\nneeds = b\n[task:b]\nrun = x\nneeds = c\n[task:c]\nrun = x\nneeds = a\n",
		   "recipe.ini:1: dependency cycle: a -> b -> c -> a");
	/* the cycle is reported without the task that merely leads into it */
	expect_err("[task:z]\nrun = x\nneeds = a\n[task:a]\nrun = x\nneeds = b\n[task:b]\nrun = x\nneeds = a\n",
		   "recipe.ini:4: dependency cycle: a -> b -> a");
}

static void test_order(void **state)
{
	(void)state;
	struct recipe *r = load_ok("[task:report]\nrun = r\nneeds = test, lint\n"
				   "[task:test]\nrun = t\nneeds = install\n"
				   "[task:lint]\nrun = l\n"
				   "[task:install]\nrun = i\n"
				   "[task:docs]\nrun = d\nneeds = install,install\n");
	const char *want[] = {"lint", "install", "test", "report", "docs"};
	assert_int_equal(r->n_tasks, 5);
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(r->tasks[i].name, want[i]);
	/* every need comes first */
	for (size_t i = 0; i < r->n_tasks; i++)
		for (size_t k = 0; k < r->tasks[i].n_needs; k++) {
			const struct recipe_task *d = recipe_find_task(r, r->tasks[i].needs[k]);
			assert_non_null(d);
			assert_true(d < &r->tasks[i]);
		}
	assert_int_equal(recipe_find_task(r, "docs")->n_needs, 1); /* duplicates dropped */
	assert_null(recipe_find_task(r, "nope"));
	recipe_free(r);
}

static void test_builtin_default(void **state)
{
	(void)state;
	struct recipe *r = NULL;
	struct pyti_err err = {0};
	assert_int_equal(recipe_builtin("default", &r, &err), 0);
	assert_string_equal(r->name, "default");
	assert_int_equal(r->n_requires, 2);
	assert_string_equal(r->requires[0], "pytest");
	assert_string_equal(r->requires[1], "pytest-cov");
	assert_int_equal(r->n_tasks, 3);
	assert_string_equal(r->tasks[0].name, "install");
	assert_string_equal(r->tasks[1].name, "import");
	assert_string_equal(r->tasks[2].name, "test");
	const struct recipe_task *t = &r->tasks[2];
	/* runtests.py runs the tests where they see the installed distribution (issue 10, point 2) */
	assert_string_equal(t->cwd, "/tmp");
	assert_false(r->test_from_source);
	assert_string_equal(t->junit, "out/junit-test.xml");
	assert_int_equal(t->timeout, 900);
	assert_int_equal(t->no_output_timeout, 300);
	assert_int_equal(t->memory, 2ULL << 30);
	assert_int_equal(t->n_needs, 1);
	assert_string_equal(t->needs[0], "install");
	assert_string_equal(t->run, "/tmp/pyti-venv/bin/python /io/pyti/runtests.py -- {posargs}");
	/* a clean venv: Debian's site-packages must not shadow the wheelhouse (issue 10, point 1) */
	assert_null(strstr(r->tasks[0].run, "--system-site-packages"));
	assert_non_null(strstr(r->tasks[0].run, "/usr/bin/python3 -m venv --without-pip /tmp/pyti-venv"));
	assert_non_null(strstr(r->tasks[0].run, "--no-index --find-links /io/wheels '{requirement}'"));
	/* four shell lines: the venv, the installer (uv when the image has it and PYTI_INSTALLER is not
	 * pip, else pip), then one install command with the same arguments for either */
	assert_string_equal(r->tasks[0].run,
			    "/usr/bin/python3 -m venv --without-pip /tmp/pyti-venv &&\n"
			    "if [ -x /usr/local/bin/uv ] && [ \"$PYTI_INSTALLER\" != pip ]; then set -- /usr/local/bin/uv pip "
			    "install --no-config --no-cache --offline --python /tmp/pyti-venv/bin/python;\n"
			    "else set -- /usr/bin/python3 -m pip --python /tmp/pyti-venv/bin/python install "
			    "--disable-pip-version-check --no-input; fi &&\n"
			    "\"$@\" --no-index --find-links /io/wheels '{requirement}' {test_requirements}");
	recipe_free(r);

	assert_int_equal(recipe_load("default", &r, &err), 0);
	recipe_free(r);
	assert_int_equal(recipe_builtin("nope", &r, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_int_equal(recipe_load("./missing.ini", &r, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_string_equal(recipe_builtin_names()[0], "default");
	assert_null(recipe_builtin_names()[1]);
}

static void test_load_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/pyti-test-recipe-XXXXXX";
	assert_non_null(mkdtemp(dir));
	_cleanup_free_ char *path = xasprintf("%s/recipe.ini", dir);
	const char *text = "[task:test]\nrun = x\ntimout = 5\n";
	struct pyti_err err = {0};
	assert_int_equal(write_file_atomic(path, text, strlen(text), 0644, &err), 0);
	struct recipe *r = NULL;
	assert_int_equal(recipe_load_file(path, &r, &err), -1);
	_cleanup_free_ char *want = xasprintf("%s:3: unknown key 'timout' in [task:test]", path);
	assert_string_equal(err.msg, want);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_int_equal(rm_rf(dir, &err), 0);
}

static void test_invalid_utf8(void **state)
{
	(void)state;
	/* found at parse time with the line, not after the fetch as a JSON error */
	expect_err("[task:t]\nrun = echo \xff\n", "recipe.ini:2: invalid UTF-8 (byte 0xff at column 12); a recipe is UTF-8 text");
	expect_err("[recipe]\nname = caf\xc3\n[task:t]\nrun = x\n",
		   "recipe.ini:2: invalid UTF-8 (byte 0xc3 at column 11); a recipe is UTF-8 text");
	/* an overlong encoding and a UTF-16 surrogate are not UTF-8 either */
	expect_err("[task:t]\nrun = x\n  \xc0\xafy\n", "recipe.ini:3: invalid UTF-8 (byte 0xc0 at column 3); a recipe is UTF-8 text");
	expect_err("[task:t]\nrun = \xed\xa0\x80\n", "recipe.ini:2: invalid UTF-8 (byte 0xed at column 7); a recipe is UTF-8 text");
	/* and a NUL within a value (recipe_load_buffer takes a length) */
	static const char nul[] = "[task:t]\nrun = a\0b\n";
	struct recipe *r = NULL;
	struct pyti_err err = {0};
	assert_int_equal(recipe_load_buffer("recipe.ini", nul, sizeof nul - 1, &r, &err), -1);
	assert_string_equal(err.msg, "recipe.ini:2: NUL byte in recipe");
	/* valid UTF-8 stays fine */
	static const char ok[] = "[task:t]\nrun = echo caf\xc3\xa9 \xe2\x80\xa6\n";
	assert_int_equal(recipe_load_buffer("recipe.ini", ok, sizeof ok - 1, &r, &err), 0);
	assert_string_equal(r->tasks[0].run, "echo caf\xc3\xa9 \xe2\x80\xa6");
	recipe_free(r);
}

static void test_load_not_regular(void **state)
{
	(void)state;
	char dir[] = "/tmp/pyti-test-recipe-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct pyti_err err = {0};
	struct recipe *r = NULL;
	/* a FIFO with no writer: opening it must not block, and it is refused */
	_cleanup_free_ char *fifo = xasprintf("%s/fifo.ini", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(recipe_load_file(fifo, &r, &err), -1);
	_cleanup_free_ char *want = xasprintf("recipe %s: not a regular file", fifo);
	assert_string_equal(err.msg, want);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	/* a directory */
	assert_int_equal(recipe_load_file(dir, &r, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	/* a file over the cap */
	_cleanup_free_ char *big = xasprintf("%s/big.ini", dir);
	FILE *f = fopen(big, "w");
	assert_non_null(f);
	assert_int_equal(fseek(f, (2L << 20), SEEK_SET), 0);
	fputc('\n', f);
	fclose(f);
	assert_int_equal(recipe_load_file(big, &r, &err), -1);
	assert_non_null(strstr(err.msg, "recipe larger than"));
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_null(r);
	assert_int_equal(rm_rf(dir, &err), 0);
}

static void test_expand(void **state)
{
	(void)state;
	const char *extras[] = {"test", "socks"};
	const char *mods[] = {"six", "foo.bar"};
	struct recipe_vars v = {.dist = "six==1.17.0", .name = "six", .version = "1.17.0", .extras = extras,
				.n_extras = 2, .modules = mods, .n_modules = 2};
	struct pyti_err err = {0};
	char *out = NULL;
	assert_int_equal(recipe_expand("pip install '{requirement}' # {dist} {name} {version}", &v, &out, &err), 0);
	assert_string_equal(out, "pip install 'six[test,socks]==1.17.0' # six==1.17.0 six 1.17.0");
	free(out);
	assert_int_equal(recipe_expand("python -c 'import {module}'", &v, &out, &err), 0);
	assert_string_equal(out, "python -c 'import six, foo.bar'");
	free(out);
	/* {test_requirements}: empty without a file, "-r FILE" with one, never a shell word otherwise */
	assert_int_equal(recipe_expand("pip install x {test_requirements}", &v, &out, &err), 0);
	assert_string_equal(out, "pip install x ");
	free(out);
	v.test_requirements = "/io/test-requirements.txt";
	assert_int_equal(recipe_expand("pip install x {test_requirements}", &v, &out, &err), 0);
	assert_string_equal(out, "pip install x -r /io/test-requirements.txt");
	free(out);
	v.test_requirements = "/io/a b;id";
	assert_int_equal(recipe_expand("{test_requirements}", &v, &out, &err), -1);
	v.test_requirements = NULL;
	assert_int_equal(recipe_expand("{{literal}} ${HOME} { x } {a,b} }", &v, &out, &err), 0);
	assert_string_equal(out, "{literal} ${HOME} { x } {a,b} }");
	free(out);

	v.n_extras = 0;
	v.version = NULL;
	assert_int_equal(recipe_expand("{requirement}", &v, &out, &err), 0);
	assert_string_equal(out, "six");
	free(out);
	assert_int_equal(recipe_expand("{version}", &v, &out, &err), -1);

	/* hostile metadata never reaches the shell */
	v.name = "six;rm -rf /";
	assert_int_equal(recipe_expand("{name}", &v, &out, &err), -1);
	assert_string_equal(err.msg, "{name}: invalid project name 'six;rm -rf /'");
	v.name = "six";
	v.version = "1.0$(id)";
	assert_int_equal(recipe_expand("{requirement}", &v, &out, &err), -1);
	const char *bad_mods[] = {"os; import shutil"};
	v.modules = bad_mods;
	v.n_modules = 1;
	assert_int_equal(recipe_expand("{module}", &v, &out, &err), -1);
	v.n_modules = 0;
	assert_int_equal(recipe_expand("{module}", &v, &out, &err), -1);
	assert_string_equal(err.msg, "{module}: no importable top-level module known for this distribution");
	v.dist = "x'y";
	assert_int_equal(recipe_expand("{dist}", &v, &out, &err), -1);
	v.requirement = "six>=1";
	assert_int_equal(recipe_expand("{requirement}", &v, &out, &err), 0);
	assert_string_equal(out, "six>=1");
	free(out);
	assert_int_equal(recipe_expand("{what}", &v, &out, &err), -1);
}

static void test_job_tasks(void **state)
{
	(void)state;
	struct recipe *r = NULL;
	struct pyti_err err = {0};
	assert_int_equal(recipe_builtin("default", &r, &err), 0);
	const char *mods[] = {"six"};
	struct recipe_vars v = {.dist = "six==1.17.0", .name = "six", .version = "1.17.0", .modules = mods,
				.n_modules = 1};
	json_t *tasks = recipe_to_job_tasks(r, &v, &err);
	if (!tasks)
		fail_msg("%s", err.msg);
	assert_true(json_is_array(tasks));
	assert_int_equal(json_array_size(tasks), 3);

	json_t *inst = json_array_get(tasks, 0);
	assert_string_equal(pj_str(inst, "name", ""), "install");
	assert_non_null(strstr(pj_str(inst, "run", ""), "--find-links /io/wheels 'six==1.17.0'"));
	assert_int_equal(json_array_size(json_object_get(inst, "needs")), 0);
	assert_string_equal(pj_str(inst, "cwd", ""), "/io");
	assert_true(json_is_object(json_object_get(inst, "env")));
	assert_int_equal(pj_int(inst, "timeout", -1), 600);
	assert_int_equal(pj_int(inst, "output_limit", -1), 16777216);
	assert_true(json_is_null(json_object_get(inst, "junit")));
	assert_int_equal(json_object_size(inst), 11);

	json_t *imp = json_array_get(tasks, 1);
	/* the import, then the runtime record with the modules' paths ({{ }} of Python's dicts kept) */
	const char *irun = pj_str(imp, "run", "");
	assert_true(strncmp(irun, "/tmp/pyti-venv/bin/python -c 'import six; import json, sys; ", 60) == 0);
	assert_non_null(strstr(irun, "for m in \"six\".split(\", \")} }, open(\"/io/out/runtime-import.json\""));
	assert_string_equal(pj_str(imp, "cwd", ""), "/tmp");

	json_t *test = json_array_get(tasks, 2);
	assert_string_equal(pj_str(test, "name", ""), "test");
	assert_string_equal(json_string_value(json_array_get(json_object_get(test, "needs"), 0)), "install");
	assert_string_equal(pj_str(test, "junit", ""), "out/junit-test.xml");
	assert_int_equal(pj_int(test, "memory", -1), 2LL << 30);
	assert_int_equal(pj_int(test, "no_output_timeout", -1), 300);
	assert_int_equal(pj_int(test, "pids", -1), 0);
	json_decref(tasks);
	recipe_free(r);

	/* env values are expanded, keys kept in order */
	r = load_ok("[task:a]\nrun = echo {name}\nenv = PKG={name}\n  V={version}\ncwd = /io/{name}\n");
	tasks = recipe_to_job_tasks(r, &v, &err);
	assert_non_null(tasks);
	json_t *a = json_array_get(tasks, 0);
	assert_string_equal(pj_str(a, "run", ""), "echo six");
	assert_string_equal(pj_str(a, "cwd", ""), "/io/six");
	assert_string_equal(pj_str(json_object_get(a, "env"), "PKG", ""), "six");
	assert_string_equal(pj_str(json_object_get(a, "env"), "V", ""), "1.17.0");
	json_decref(tasks);

	/* an expansion error names the recipe and task */
	v.name = "bad name";
	assert_null(recipe_to_job_tasks(r, &v, &err));
	assert_string_equal(err.msg, "recipe.ini: [task:a]: {name}: invalid project name 'bad name'");
	recipe_free(r);
}

/* tox.ini's [testenv] commands (recipe_tox_plan): the first pytest or unittest command with its
 * arguments, {posargs} a marker with its default, factor-conditional and other commands passed
 * over with a note, substitutions other than {posargs}/{toxinidir} never guessed at. */
static void test_tox_plan(void **state)
{
	(void)state;
	static const char ini[] = "[tox]\nenvlist = py311\n\n[testenv:lint]\ncommands = pytest --lint\n\n"
				  "[testenv]\ndeps = pytest\ncommands =\n    py311: echo only\n"
				  "    pip install -e .\n    - python -m pytest {posargs:-k 'a b'} {toxinidir}/tests\n";
	json_t *notes = NULL;
	json_t *p = recipe_tox_plan(ini, strlen(ini), &notes);
	assert_non_null(p);
	assert_string_equal(json_string_value(json_object_get(p, "runner")), "pytest");
	assert_int_equal(json_integer_value(json_object_get(p, "line")), 12);
	json_t *args = json_object_get(p, "args");
	assert_int_equal(json_array_size(args), 2);
	assert_string_equal(json_string_value(json_array_get(args, 0)), "{posargs}");
	assert_string_equal(json_string_value(json_array_get(args, 1)), "./tests");
	json_t *def = json_object_get(p, "posargs_default");
	assert_int_equal(json_array_size(def), 2);
	assert_string_equal(json_string_value(json_array_get(def, 1)), "a b");
	assert_int_equal(json_array_size(notes), 1); /* the py311: line */
	json_decref(p);
	json_decref(notes);

	static const char ut[] = "[testenv]\ncommands = coverage run --branch -m unittest discover -s tests\n";
	p = recipe_tox_plan(ut, strlen(ut), &notes);
	assert_string_equal(json_string_value(json_object_get(p, "runner")), "unittest");
	assert_string_equal(json_string_value(json_array_get(json_object_get(p, "args"), 0)), "discover");
	json_decref(p);
	json_decref(notes);

	/* termcolor's "cmd \\" continuation; python-dateutil's {toxinidir} inside a {posargs:} default */
	static const char cont[] = "[testenv]\ncommands =\n    {envpython} -m pytest \\\n      --cov termcolor \\\n"
				   "      {posargs: \"{toxinidir}/tests\" -q}\n";
	p = recipe_tox_plan(cont, strlen(cont), &notes);
	assert_non_null(p);
	assert_int_equal(json_integer_value(json_object_get(p, "line")), 3);
	args = json_object_get(p, "args");
	assert_int_equal(json_array_size(args), 3);
	assert_string_equal(json_string_value(json_array_get(args, 1)), "termcolor");
	def = json_object_get(p, "posargs_default");
	assert_int_equal(json_array_size(def), 2);
	assert_string_equal(json_string_value(json_array_get(def, 0)), "./tests");
	json_decref(p);
	json_decref(notes);

	/* no test command, an unknown substitution, an unclosed quote, no [testenv]: no plan */
	static const char *const none[] = {"[testenv]\ncommands = flake8 src\n",
					   "[testenv]\ncommands = pytest {envsitepackagesdir}/x\n",
					   "[testenv]\ncommands = pytest 'unclosed\n", "[pytest]\naddopts = -q\n", ""};
	for (size_t i = 0; i < sizeof none / sizeof *none; i++) {
		p = recipe_tox_plan(none[i], strlen(none[i]), &notes);
		assert_null(p);
		assert_true(json_is_array(notes));
		json_decref(notes);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_full),    cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_values),        cmocka_unit_test(test_errors),
		cmocka_unit_test(test_nul_and_long_lines), cmocka_unit_test(test_cycles),
		cmocka_unit_test(test_order),         cmocka_unit_test(test_builtin_default),
		cmocka_unit_test(test_load_file),     cmocka_unit_test(test_expand),
		cmocka_unit_test(test_job_tasks),     cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_load_not_regular), cmocka_unit_test(test_limit_keys),
		cmocka_unit_test(test_tox_plan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* What the default recipe's test task finds in the sandbox beside the source: /io/pyti/runtests.py
 * (the runner, src/recipe/runtests.py) and /io/pyti/plan.json — the test command tox.ini declares
 * (read here, on the host, by a parser that executes nothing), the modules the distribution
 * installs, and where to run (the recipe's test_from). */
#include <errno.h>
#include <string.h>

#include "recipe.h"
#include "runtests_py.h" /* runtests_py[]: src/recipe/runtests.py, embedded by the build */

int recipe_stage_guest_files(const char *io_dir, const struct recipe *r, const struct recipe_vars *v,
			     json_t **plan_out, struct pyti_err *err)
{
	_cleanup_free_ char *dir = xasprintf("%s/pyti", io_dir);
	if (mkdir_p(dir, 0755, err) < 0)
		return -1;
	_cleanup_free_ char *py = xasprintf("%s/runtests.py", dir);
	if (write_file_atomic(py, runtests_py, strlen(runtests_py), 0644, err) < 0)
		return -1;
	_cleanup_json_ json_t *plan = json_object();
	json_object_set_new(plan, "test_from", json_string(r->test_from_source ? "source" : "installed"));
	json_t *mods = json_array();
	for (size_t i = 0; i < v->n_modules; i++)
		json_array_append_new(mods, pj_string_lossy(v->modules[i], strlen(v->modules[i])));
	json_object_set_new(plan, "modules", mods);
	/* src/tox.ini was unpacked from the package: read beneath src, no link followed, capped */
	_cleanup_free_ char *src = xasprintf("%s/src", io_dir);
	_cleanup_close_ int sfd = safe_opendir_path(src, NULL);
	_cleanup_buf_ struct buf b = BUF_INIT((1u << 20) + 1);
	struct pyti_err e2 = {0};
	json_t *notes = NULL, *tox = NULL;
	if (sfd >= 0 && safe_read_beneath(sfd, "tox.ini", &b, &e2) == 0 && !b.truncated)
		tox = recipe_tox_plan(b.data ? b.data : "", b.len, &notes);
	else if (b.truncated)
		notes = json_pack("[s]", "tox.ini larger than 1 MiB: not read");
	json_object_set_new(plan, "tox", tox ? tox : json_null());
	json_object_set_new(plan, "tox_notes", notes ? notes : json_array());
	_cleanup_free_ char *pp = xasprintf("%s/plan.json", dir);
	if (pj_dump_file(plan, pp, err) < 0)
		return -1;
	if (plan_out)
		*plan_out = json_incref(plan);
	return 0;
}

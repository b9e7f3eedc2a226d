/* compare: what one job says — its verdict, its outcome for a pair, its tests (failing, passing,
 * every case), its resource class and the dependency that broke its build. */
#include <string.h>

#include "compare-int.h"
#include "store.h"

/* Classes that say "the machine or its limits", not "the package": the pair is spurious. */
static bool resource_class(const char *fc)
{
	static const char *const cls[] = {"OOM", "Timeout", "NoOutput", "NoSpace", "Crash", "Infra", "Network"};
	for (size_t i = 0; fc && i < ARRAY_SIZE(cls); i++)
		if (strcmp(fc, cls[i]) == 0)
			return true;
	return false;
}

/* The job's resource class: the job's, its error form's, or the first task's that has one. */
const char *compare_job_resource_class(const json_t *job)
{
	const json_t *res = json_object_get(job, "results");
	const char *fc = pj_str(job, "failure_class", NULL);
	if (resource_class(fc))
		return fc;
	fc = pj_str(res, "failure_class", NULL);
	if (resource_class(fc))
		return fc;
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(res, "tasks"), i, t) {
		fc = pj_str(t, "failure_class", NULL);
		if (resource_class(fc))
			return fc;
	}
	return NULL;
}


const char *cmp_job_verdict(const json_t *job)
{
	const char *v = pj_str(job, "verdict", NULL);
	if (v)
		return v;
	const char *state = pj_str(job, "state", "done");
	if (strcmp(state, "failed") == 0)
		return "infra";
	if (strcmp(state, "done") != 0)
		return NULL;
	return store_verdict_name(store_verdict_of(json_object_get(job, "results")));
}

enum cmp_outcome cmp_job_outcome(const json_t *job)
{
	const char *state = pj_str(job, "state", "done");
	if (strcmp(state, "done") != 0 && strcmp(state, "failed") != 0)
		return CMP_O_PENDING;
	if (compare_job_resource_class(job))
		return CMP_O_SPURIOUS;
	const char *v = cmp_job_verdict(job);
	if (!v)
		return CMP_O_PENDING;
	if (strcmp(v, "passed") == 0 || strcmp(v, "no-tests") == 0)
		return CMP_O_PASS;
	if (strcmp(v, "infra") == 0)
		return CMP_O_SPURIOUS;
	return CMP_O_FAIL;
}


void cmp_jtests_free(struct cmp_jtests *t)
{
	json_decref(t->fail);
	json_decref(t->all);
}

void cmp_jtests_of(const json_t *job, struct cmp_jtests *t)
{
	t->fail = json_object();
	t->all = NULL;
	t->ran = false;
	size_t i, k;
	json_t *task, *f;
	json_array_foreach(json_object_get(json_object_get(job, "results"), "tasks"), i, task) {
		const json_t *tests = json_object_get(task, "tests");
		if (!json_is_object(tests))
			continue;
		if (pj_int(tests, "total", 0) > 0 || json_array_size(json_object_get(tests, "failures")))
			t->ran = true;
		json_array_foreach(json_object_get(tests, "failures"), k, f) {
			const char *id = pj_str(f, "id", NULL);
			if (id && !json_object_get(t->fail, id))
				json_object_set_new(t->fail, id, json_deep_copy(f));
		}
	}
	const json_t *cases = json_object_get(job, "cases");
	if (!json_is_array(cases))
		return;
	t->all = json_object();
	json_t *c;
	json_array_foreach(cases, i, c) {
		const char *id = pj_str(c, "id", NULL), *oc = pj_str(c, "outcome", "passed");
		if (!id)
			continue;
		t->ran = true;
		const char *prev = pj_str(t->all, id, NULL);
		/* a test id seen twice (parametrised ids cut short): failing wins */
		if (!prev || strcmp(oc, "failed") == 0 || strcmp(oc, "error") == 0)
			json_object_set_new(t->all, id, json_string(oc));
		if (strcmp(oc, "failed") != 0 && strcmp(oc, "error") != 0)
			continue;
		json_t *have = json_object_get(t->fail, id);
		if (!have) {
			have = json_pack("{s:s, s:s, s:o, s:o}", "id", id, "outcome", oc, "message",
					 json_incref(json_object_get(c, "message") ? json_object_get(c, "message")
										   : json_null()),
					 "traceback", json_null());
			json_object_set_new(t->fail, id, have);
		}
		if (json_is_string(json_object_get(c, "text")))
			json_object_set(have, "text", json_object_get(c, "text"));
	}
}

bool cmp_jt_failing(const struct cmp_jtests *t, const char *id)
{
	return json_object_get(t->fail, id) != NULL;
}

/* The test ran in this job and did not fail (when every case is known: present and not failing;
 * otherwise: the job's tests ran and the id is not among its failures). */
bool cmp_jt_not_failing(const struct cmp_jtests *t, const char *id)
{
	if (!t->ran || cmp_jt_failing(t, id))
		return false;
	return t->all ? json_object_get(t->all, id) != NULL : true;
}

bool cmp_jt_passed(const struct cmp_jtests *t, const char *id)
{
	if (!t->ran || cmp_jt_failing(t, id))
		return false;
	if (!t->all)
		return true;
	const char *oc = pj_str(t->all, id, NULL);
	return oc && (strcmp(oc, "passed") == 0 || strcmp(oc, "xfailed") == 0);
}

char *compare_broken_dependency(const json_t *job)
{
	const char *v = cmp_job_verdict(job);
	if (!v || strcmp(v, "build-failed") != 0)
		return NULL;
	_cleanup_free_ char *own = compare_project_name(pj_str(job, "dist", ""));
	const json_t *res = json_object_get(job, "results");
	char *d = cmp_dep_from_text(pj_str(res, "error", NULL), own);
	if (!d)
		d = cmp_dep_from_text(pj_str(job, "error", NULL), own);
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(res, "tasks"), i, t) {
		if (d)
			break;
		if (strcmp(pj_str(t, "status", ""), "failed") == 0)
			d = cmp_dep_from_text(pj_str(t, "output", NULL), own);
	}
	return d;
}

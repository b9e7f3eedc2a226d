/* compare: pairs of jobs of two runs, one verdict each, per-test changes, failure signatures,
 * slower tasks (docs/contracts.md "Compare"). Pure: JSON in, JSON out. */
#include <string.h>

#include "compare-int.h"

#define CMP_GROUP_TESTS_MAX 100 /* test ids listed per group (its count is complete) */

static const char *const verdict_names[CMP_VERDICT_COUNT] = {
	"regressed",	     "fixed", "still-passing", "still-failing", "spurious", "flaky",
	"broken-dependency", "new",   "gone",	       "pending",
};

const char *compare_verdict_name(enum compare_verdict v)
{
	return (unsigned)v < CMP_VERDICT_COUNT ? verdict_names[v] : "?";
}

int compare_verdict_parse(const char *name)
{
	for (int i = 0; name && i < CMP_VERDICT_COUNT; i++)
		if (strcmp(name, verdict_names[i]) == 0)
			return i;
	return -1;
}

/* ---- pairs ---- */

struct side {
	const json_t *jobs;
	bool *used;
	size_t n;
};

static bool same_str(const json_t *x, const json_t *y, const char *key)
{
	const char *a = pj_str(x, key, NULL), *b = pj_str(y, key, NULL);
	return a && b && strcmp(a, b) == 0;
}

static bool same_project(const json_t *x, const json_t *y)
{
	_cleanup_free_ char *a = compare_project_name(pj_str(x, "dist", NULL)),
			    *b = compare_project_name(pj_str(y, "dist", NULL));
	return *a && strcmp(a, b) == 0;
}

/* pass 0: same dist and suite; 1: same dist; 2: same project (versions or files differ) */
static bool pair_match(const json_t *x, const json_t *y, int pass)
{
	switch (pass) {
	case 0:
		return same_str(x, y, "dist") && same_str(x, y, "suite");
	case 1:
		return same_str(x, y, "dist");
	default:
		return same_project(x, y);
	}
}

/* What pair_match compares, as one string (NULL: the job cannot pair in this pass; caller frees). */
static char *pair_key(const json_t *j, int pass)
{
	const char *dist = pj_str(j, "dist", NULL), *suite = pj_str(j, "suite", "");
	if (!dist)
		return NULL;
	switch (pass) {
	case 0:
		return xasprintf("%s\n%s", dist, suite);
	case 1:
		return xstrdup(dist);
	default: {
		char *n = compare_project_name(dist);
		if (!*n) {
			free(n);
			return NULL;
		}
		return n;
	}
	}
}

/* Every run of a side: the job, then its "reruns". */
static size_t side_runs(const json_t *job, const json_t **runs, size_t max)
{
	size_t n = 0;
	if (!job || max == 0)
		return 0;
	runs[n++] = job;
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(job, "reruns"), i, r) {
		if (n < max)
			runs[n++] = r;
	}
	return n;
}

#define RUNS_MAX 64

static bool runs_disagree(const json_t *const *runs, size_t n)
{
	bool pass = false, fail = false;
	for (size_t i = 0; i < n; i++) {
		enum cmp_outcome o = cmp_job_outcome(runs[i]);
		pass |= o == CMP_O_PASS;
		fail |= o == CMP_O_FAIL;
	}
	return pass && fail;
}

static json_t *runs_verdicts(const json_t *const *runs, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		const char *rc = compare_job_resource_class(runs[i]);
		const char *v = cmp_job_verdict(runs[i]);
		json_array_append_new(a, json_string(rc ? rc : v ? v : "pending"));
	}
	return a;
}

/* Tests that both fail and pass among one side's runs. */
static void flaky_tests(const json_t *const *runs, size_t n, const char *side, json_t *out, json_t *seen)
{
	/* only the runs that ended on their own: a task killed by a timeout says nothing of its tests */
	const json_t *kept[RUNS_MAX];
	size_t nk = 0;
	for (size_t i = 0; i < n && nk < RUNS_MAX; i++) {
		enum cmp_outcome o = cmp_job_outcome(runs[i]);
		if (o == CMP_O_PASS || o == CMP_O_FAIL)
			kept[nk++] = runs[i];
	}
	runs = kept;
	n = nk;
	if (n < 2)
		return;
	struct cmp_jtests t[RUNS_MAX];
	for (size_t i = 0; i < n; i++)
		cmp_jtests_of(runs[i], &t[i]);
	json_t *ids = json_object();
	for (size_t i = 0; i < n; i++) {
		const char *id;
		json_t *v;
		json_object_foreach(t[i].fail, id, v)
			json_object_set_new(ids, id, json_true());
	}
	const char *id;
	json_t *v;
	json_object_foreach(ids, id, v) {
		long failed = 0, present = 0;
		for (size_t i = 0; i < n; i++) {
			if (cmp_jt_failing(&t[i], id))
				failed++, present++;
			else if (cmp_jt_not_failing(&t[i], id))
				present++;
		}
		if (failed > 0 && failed < present) {
			json_array_append_new(out,
					      json_pack("{s:s, s:s, s:I, s:I, s:f}", "id", id, "side", side, "runs",
							(json_int_t)present, "passed", (json_int_t)(present - failed),
							"pass_rate", (double)(present - failed) / (double)present));
			json_object_set_new(seen, id, json_true());
		}
	}
	json_decref(ids);
	for (size_t i = 0; i < n; i++)
		cmp_jtests_free(&t[i]);
}

static json_t *sorted_keys(json_t *set)
{
	json_t *a = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(set, k, v)
		json_array_append_new(a, json_string(k));
	/* json objects iterate in hash order: sort for a stable report */
	size_t n = json_array_size(a);
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(json_string_value(json_array_get(a, j - 1)),
						   json_string_value(json_array_get(a, j))) > 0;
		     j--) {
			json_t *x = json_incref(json_array_get(a, j - 1));
			json_array_set(a, j - 1, json_array_get(a, j));
			json_array_set_new(a, j, x);
		}
	return a;
}

/* The per-test part of a pair: newly failing / passing, added / removed, flaky. */
static json_t *pair_tests(const json_t *ja, const json_t *jb, const json_t *const *ra, size_t na,
			  const json_t *const *rb, size_t nb)
{
	json_t *nf = json_object(), *np = json_object(), *add = json_object(), *rem = json_object();
	json_t *flaky = json_array(), *flaky_ids = json_object();
	flaky_tests(ra, na, "a", flaky, flaky_ids);
	flaky_tests(rb, nb, "b", flaky, flaky_ids);
	if (ja && jb) {
		struct cmp_jtests a, b;
		cmp_jtests_of(ja, &a);
		cmp_jtests_of(jb, &b);
		const char *id;
		json_t *v;
		json_object_foreach(b.fail, id, v) {
			if (!json_object_get(flaky_ids, id) && cmp_jt_not_failing(&a, id))
				json_object_set_new(nf, id, json_true());
		}
		json_object_foreach(a.fail, id, v) {
			if (!json_object_get(flaky_ids, id) && cmp_jt_passed(&b, id))
				json_object_set_new(np, id, json_true());
		}
		if (a.all && b.all && a.ran && b.ran) {
			json_object_foreach(b.all, id, v) {
				if (!json_object_get(a.all, id))
					json_object_set_new(add, id, json_true());
			}
			json_object_foreach(a.all, id, v) {
				if (!json_object_get(b.all, id))
					json_object_set_new(rem, id, json_true());
			}
		}
		cmp_jtests_free(&a);
		cmp_jtests_free(&b);
	}
	json_t *out = json_pack("{s:o, s:o, s:o, s:o, s:o}", "newly_failing", sorted_keys(nf), "newly_passing",
				sorted_keys(np), "added", sorted_keys(add), "removed", sorted_keys(rem), "flaky",
				flaky);
	json_decref(nf);
	json_decref(np);
	json_decref(add);
	json_decref(rem);
	json_decref(flaky_ids);
	return out;
}

static enum compare_verdict pair_verdict(const json_t *const *ra, size_t na, const json_t *const *rb, size_t nb,
					 char **dep)
{
	*dep = NULL;
	if (!na)
		return CMP_NEW;
	if (!nb)
		return CMP_GONE;
	enum cmp_outcome a = cmp_job_outcome(ra[0]), b = cmp_job_outcome(rb[0]);
	if (a == CMP_O_PENDING || b == CMP_O_PENDING)
		return CMP_PENDING;
	if (a == CMP_O_SPURIOUS || b == CMP_O_SPURIOUS)
		return CMP_SPURIOUS;
	if (runs_disagree(ra, na) || runs_disagree(rb, nb))
		return CMP_FLAKY;
	if (b == CMP_O_FAIL) {
		*dep = compare_broken_dependency(rb[0]);
		_cleanup_free_ char *adep = a == CMP_O_FAIL ? compare_broken_dependency(ra[0]) : NULL;
		if (*dep && !(adep && strcmp(adep, *dep) == 0))
			return CMP_BROKEN_DEP;
		free(*dep);
		*dep = NULL;
		return a == CMP_O_PASS ? CMP_REGRESSED : CMP_STILL_FAILING;
	}
	return a == CMP_O_PASS ? CMP_STILL_PASSING : CMP_FIXED;
}

/* ---- groups ---- */

static void group_add(json_t *groups, json_t *index, const char *sig, const char *kind, const char *dist,
		      const char *id)
{
	json_t *g = json_object_get(index, sig);
	if (!g) {
		g = json_pack("{s:s, s:s, s:i, s:[], s:[]}", "signature", sig, "kind", kind, "count", 0, "dists",
			      "tests");
		json_array_append_new(groups, g);
		json_object_set(index, sig, g);
	}
	json_t *dists = json_object_get(g, "dists");
	size_t i;
	json_t *d;
	bool have = false;
	json_array_foreach(dists, i, d)
		have |= strcmp(json_string_value(d), dist) == 0;
	if (!have) {
		json_array_append_new(dists, json_string(dist));
		json_object_set_new(g, "count", json_integer((json_int_t)json_array_size(dists)));
	}
	json_t *tests = json_object_get(g, "tests");
	if (id && json_array_size(tests) < CMP_GROUP_TESTS_MAX)
		json_array_append_new(tests, json_pack("{s:s, s:s}", "dist", dist, "id", id));
}

/* The signature of a failed job without a newly failing test: its first failed task and the
 * exception its output ends with, or its error. */
static char *job_signature(const json_t *job)
{
	const json_t *res = json_object_get(job, "results");
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(res, "tasks"), i, t) {
		if (strcmp(pj_str(t, "status", ""), "failed") != 0)
			continue;
		_cleanup_free_ char *exc = cmp_last_exception_line(pj_str(t, "output", NULL));
		struct buf b = BUF_INIT(4096);
		buf_printf(&b, "task %s failed", pj_str(t, "task", "?"));
		if (exc) {
			buf_puts(&b, ": ");
			cmp_put_masked(&b, exc, strlen(exc));
		}
		return buf_steal(&b);
	}
	const char *e = pj_str(res, "error", pj_str(job, "error", NULL));
	struct buf b = BUF_INIT(4096);
	buf_puts(&b, "error");
	if (e) {
		buf_puts(&b, ": ");
		cmp_put_masked(&b, e, strcspn(e, "\n"));
	}
	return buf_steal(&b);
}

static void pair_groups(json_t *groups, json_t *index, const json_t *pair, const json_t *jb)
{
	const char *v = pj_str(pair, "verdict", ""), *dist = pj_str(pair, "dist", "?");
	if (strcmp(v, "broken-dependency") == 0) {
		_cleanup_free_ char *sig = xasprintf("dependency %s", pj_str(pair, "dependency", "?"));
		group_add(groups, index, sig, "broken-dependency", dist, NULL);
		return;
	}
	const json_t *nf = json_object_get(json_object_get(pair, "tests"), "newly_failing");
	/* a package that failed before and fails more now: its new failures have causes too */
	bool still = strcmp(v, "still-failing") == 0 && json_array_size(nf) > 0;
	if (strcmp(v, "regressed") != 0 && !still)
		return;
	if (json_array_size(nf) == 0) {
		_cleanup_free_ char *sig = job_signature(jb);
		group_add(groups, index, sig, "job", dist, NULL);
		return;
	}
	struct cmp_jtests b;
	cmp_jtests_of(jb, &b);
	size_t i;
	json_t *id;
	json_array_foreach(nf, i, id) {
		const json_t *f = json_object_get(b.fail, json_string_value(id));
		_cleanup_free_ char *sig = compare_signature(pj_str(f, "traceback", NULL), pj_str(f, "message", NULL),
							     pj_str(f, "text", NULL));
		group_add(groups, index, sig, "test", dist, json_string_value(id));
	}
	cmp_jtests_free(&b);
}

/* ---- slower ---- */

static const json_t *task_named(const json_t *job, const char *name)
{
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(json_object_get(job, "results"), "tasks"), i, t) {
		if (strcmp(pj_str(t, "task", ""), name) == 0)
			return t;
	}
	return NULL;
}

static double metric(const json_t *t, int m)
{
	switch (m) {
	case 0:
		return pj_num(t, "wall_s", -1);
	case 1:
		if (!json_object_get(t, "cpu_user_s"))
			return -1;
		return pj_num(t, "cpu_user_s", 0) + pj_num(t, "cpu_sys_s", 0);
	default:
		return pj_num(t, "max_rss_kb", -1);
	}
}

static void pair_slower(json_t *out, const char *dist, const json_t *const *ra, size_t na, const json_t *const *rb,
			size_t nb, const struct compare_opts *o)
{
	static const char *const names[] = {"wall_s", "cpu_s", "max_rss_kb"};
	double ratio = o && o->slower_ratio > 0 ? o->slower_ratio : 1.5;
	double min_s = o && o->slower_min_s > 0 ? o->slower_min_s : 1.0;
	size_t i;
	json_t *tb;
	json_array_foreach(json_object_get(json_object_get(rb[0], "results"), "tasks"), i, tb) {
		const char *task = pj_str(tb, "task", NULL);
		if (!task || strcmp(pj_str(tb, "status", ""), "passed") != 0)
			continue;
		for (int m = 0; m < 3; m++) {
			/* noise: A's slowest run against B's fastest */
			double a = -1, b = -1;
			for (size_t k = 0; k < na; k++) {
				const json_t *t = task_named(ra[k], task);
				if (t && strcmp(pj_str(t, "status", ""), "passed") == 0 && metric(t, m) > a)
					a = metric(t, m);
			}
			for (size_t k = 0; k < nb; k++) {
				const json_t *t = task_named(rb[k], task);
				double x = t && strcmp(pj_str(t, "status", ""), "passed") == 0 ? metric(t, m) : -1;
				if (x >= 0 && (b < 0 || x < b))
					b = x;
			}
			double floor = m == 2 ? 16384 : min_s;
			if (a > 0 && b >= 0 && b > a * ratio && b - a >= floor)
				json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:f, s:f, s:f}", "dist", dist,
								     "task", task, "metric", names[m], "a", a, "b", b,
								     "ratio", b / a));
		}
	}
}

/* ---- the comparison ---- */

/* What pip installed on a side (the first task that says so), NULL when no task does. */
static json_t *side_wheels(const json_t *job)
{
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(json_object_get(job, "results"), "tasks"), i, t) {
		json_t *w = cmp_installed(pj_str(t, "output", NULL));
		if (w)
			return w;
	}
	return NULL;
}

/* The resolved wheel sets' differences [{"name", "a", "b"}] (a version null: absent on that side),
 * the first place to look for a regression's cause; NULL when a side's set is not known. */
static json_t *wheel_diff(const json_t *ja, const json_t *jb)
{
	_cleanup_json_ json_t *wa = side_wheels(ja), *wb = side_wheels(jb);
	if (!wa || !wb)
		return NULL;
	json_t *names = json_object();
	const char *k;
	json_t *v;
	json_object_foreach(wa, k, v)
		json_object_set_new(names, k, json_true());
	json_object_foreach(wb, k, v)
		json_object_set_new(names, k, json_true());
	json_t *sorted = sorted_keys(names), *out = json_array();
	json_decref(names);
	size_t i;
	json_array_foreach(sorted, i, v) {
		const char *n = json_string_value(v), *a = pj_str(wa, n, NULL), *b = pj_str(wb, n, NULL);
		if (a && b && strcmp(a, b) == 0)
			continue;
		json_array_append_new(out, json_pack("{s:s, s:s?, s:s?}", "name", n, "a", a, "b", b));
	}
	json_decref(sorted);
	return out;
}

static bool dist_differs_p(const json_t *ja, const json_t *jb)
{
	return ja && jb && !same_str(ja, jb, "dist");
}

static json_t *make_pair(const json_t *ja, const json_t *jb, json_t *groups, json_t *index, json_t *slower,
			 const struct compare_opts *o, int *counts)
{
	const json_t *ra[RUNS_MAX], *rb[RUNS_MAX];
	size_t na = side_runs(ja, ra, RUNS_MAX), nb = side_runs(jb, rb, RUNS_MAX);
	char *dep = NULL;
	enum compare_verdict v = pair_verdict(ra, na, rb, nb, &dep);
	counts[v]++;
	const json_t *any = ja ? ja : jb;
	const char *cls = NULL;
	if (v == CMP_SPURIOUS)
		cls = (ja && compare_job_resource_class(ja)) ? compare_job_resource_class(ja)
							     : compare_job_resource_class(jb);
	const char *va = ja ? cmp_job_verdict(ja) : NULL, *vb = jb ? cmp_job_verdict(jb) : NULL;
	json_t *pair = json_pack(
		"{s:s?, s:s?, s:s?, s:s?, s:s?, s:s, s:s?, s:s?, s:s?, s:s?, s:{s:o, s:o}, s:o}", "dist",
		pj_str(any, "dist", NULL), "a", ja ? pj_str(ja, "job_id", NULL) : NULL, "b",
		jb ? pj_str(jb, "job_id", NULL) : NULL, "suite_a", ja ? pj_str(ja, "suite", NULL) : NULL, "suite_b",
		jb ? pj_str(jb, "suite", NULL) : NULL, "verdict", compare_verdict_name(v), "verdict_a", va, "verdict_b",
		vb, "class", cls, "dependency", dep, "runs", "a", runs_verdicts(ra, na), "b", runs_verdicts(rb, nb),
		"tests", pair_tests(ja, jb, ra, na, rb, nb));
	free(dep);
	if (na > 1 || nb > 1) {
		/* reruns: confirmed when every one ended like its side's original (a rerun lost to the
		 * machine, spurious or pending, confirms nothing, and does not make the pair flaky either) */
		bool same = true;
		for (size_t k = 1; k < na; k++)
			same &= cmp_job_outcome(ra[k]) == cmp_job_outcome(ra[0]);
		for (size_t k = 1; k < nb; k++)
			same &= cmp_job_outcome(rb[k]) == cmp_job_outcome(rb[0]);
		json_object_set_new(pair, "confirmed", json_boolean(same && v != CMP_FLAKY));
	}
	if (dist_differs_p(ja, jb))
		json_object_set_new(pair, "dist_b", json_string(pj_str(jb, "dist", "")));
	if (ja && jb && (v == CMP_REGRESSED || v == CMP_FIXED || v == CMP_BROKEN_DEP || v == CMP_FLAKY)) {
		json_t *wd = wheel_diff(ja, jb);
		if (wd)
			json_object_set_new(pair, "wheels", wd);
	}
	if (jb)
		pair_groups(groups, index, pair, jb);
	if (ja && jb && v != CMP_PENDING && v != CMP_SPURIOUS)
		pair_slower(slower, pj_str(any, "dist", "?"), ra, na, rb, nb, o);
	return pair;
}

static int group_cmp(const void *x, const void *y)
{
	const json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
	long long ca = pj_int(a, "count", 0), cb = pj_int(b, "count", 0);
	if (ca != cb)
		return ca > cb ? -1 : 1;
	return strcmp(pj_str(a, "signature", ""), pj_str(b, "signature", ""));
}

json_t *compare_runs(const json_t *a, const json_t *b, const struct compare_opts *o)
{
	const json_t *ja = json_object_get(a, "jobs"), *jb = json_object_get(b, "jobs");
	if (!json_is_array(ja) || !json_is_array(jb))
		return NULL;
	size_t na = json_array_size(ja), nb = json_array_size(jb);
	_cleanup_free_ bool *ua = calloc(na + 1, sizeof *ua), *ub = calloc(nb + 1, sizeof *ub);
	_cleanup_free_ long *match = calloc(na + 1, sizeof *match); /* A's job → B's index, -1 none */
	if (!ua || !ub || !match)
		return NULL;
	for (size_t i = 0; i < na; i++)
		match[i] = -1;
	/* each pass indexes B's unpaired jobs by its key (a run may have tens of thousands of jobs):
	 * key → [B's indices, in order]; A's jobs in order take the first unpaired one */
	for (int pass = 0; pass < 3; pass++) {
		json_t *idx = json_object();
		for (size_t k = 0; k < nb; k++) {
			if (ub[k])
				continue;
			_cleanup_free_ char *key = pair_key(json_array_get(jb, k), pass);
			if (!key)
				continue;
			json_t *l = json_object_get(idx, key);
			if (!l) {
				l = json_array();
				json_object_set_new(idx, key, l);
			}
			json_array_append_new(l, json_integer((json_int_t)k));
		}
		for (size_t i = 0; i < na; i++) {
			if (ua[i])
				continue;
			_cleanup_free_ char *key = pair_key(json_array_get(ja, i), pass);
			json_t *l = key ? json_object_get(idx, key) : NULL;
			size_t j;
			json_t *kv;
			json_array_foreach(l, j, kv) {
				size_t k = (size_t)json_integer_value(kv);
				if (ub[k])
					continue;
				ua[i] = ub[k] = true;
				match[i] = (long)k;
				break;
			}
		}
		json_decref(idx);
	}
	int counts[CMP_VERDICT_COUNT] = {0};
	json_t *pairs = json_array(), *groups = json_array(), *index = json_object(), *slower = json_array();
	for (size_t i = 0; i < na; i++)
		json_array_append_new(pairs, make_pair(json_array_get(ja, i),
						       match[i] >= 0 ? json_array_get(jb, (size_t)match[i]) : NULL,
						       groups, index, slower, o, counts));
	for (size_t k = 0; k < nb; k++)
		if (!ub[k])
			json_array_append_new(pairs,
					      make_pair(NULL, json_array_get(jb, k), groups, index, slower, o, counts));
	json_decref(index);
	/* biggest groups first */
	size_t ng = json_array_size(groups);
	if (ng > 1) {
		json_t **v = calloc(ng, sizeof *v);
		for (size_t i = 0; v && i < ng; i++)
			v[i] = json_incref(json_array_get(groups, i));
		if (v) {
			qsort(v, ng, sizeof *v, group_cmp);
			json_array_clear(groups);
			for (size_t i = 0; i < ng; i++)
				json_array_append_new(groups, v[i]);
			free(v);
		}
	}
	json_t *summary = json_object();
	for (int v = 0; v < CMP_VERDICT_COUNT; v++)
		json_object_set_new(summary, verdict_names[v], json_integer(counts[v]));
	const json_t *runa = json_object_get(a, "run"), *runb = json_object_get(b, "run");
	return json_pack("{s:s?, s:s?, s:o, s:o, s:o, s:o, s:i}", "a", pj_str(runa, "run_id", NULL), "b",
			 pj_str(runb, "run_id", NULL), "pairs", pairs, "groups", groups, "slower", slower, "summary",
			 summary, "regressions", counts[CMP_REGRESSED] + counts[CMP_BROKEN_DEP]);
}

bool compare_wants_confirm(const json_t *pair)
{
	const char *v = pj_str(pair, "verdict", "");
	return strcmp(v, "regressed") == 0 || strcmp(v, "fixed") == 0;
}

json_t *compare_control(const json_t *run)
{
	const json_t *jobs = json_object_get(run, "jobs");
	size_t n = json_array_size(jobs);
	_cleanup_free_ bool *used = calloc(n + 1, sizeof *used);
	json_t *packages = json_array(), *known = json_array();
	for (size_t i = 0; used && i < n; i++) {
		if (used[i])
			continue;
		const json_t *j = json_array_get(jobs, i);
		/* this job, its reruns, and the run's other jobs of the same dist and suite */
		const json_t *runs[RUNS_MAX];
		size_t nr = side_runs(j, runs, RUNS_MAX);
		for (size_t k = i + 1; k < n; k++)
			if (!used[k] && pair_match(j, json_array_get(jobs, k), 0)) {
				used[k] = true;
				nr += side_runs(json_array_get(jobs, k), runs + nr, RUNS_MAX - nr);
			}
		long pass = 0, fail = 0;
		for (size_t k = 0; k < nr; k++) {
			enum cmp_outcome o = cmp_job_outcome(runs[k]);
			pass += o == CMP_O_PASS;
			fail += o == CMP_O_FAIL;
		}
		long counted = pass + fail;
		json_array_append_new(packages,
				      json_pack("{s:s?, s:s?, s:I, s:I, s:f}", "dist", pj_str(j, "dist", NULL), "suite",
						pj_str(j, "suite", NULL), "runs", (json_int_t)counted, "passed",
						(json_int_t)pass, "flake_rate",
						counted ? (double)(pass < fail ? pass : fail) / (double)counted : 0.0));
		json_t *fl = json_array(), *seen = json_object();
		flaky_tests(runs, nr, "a", fl, seen);
		size_t k;
		json_t *t;
		json_array_foreach(fl, k, t) {
			json_object_del(t, "side");
			json_object_set_new(t, "dist", json_string(pj_str(j, "dist", "")));
			json_array_append(known, t);
		}
		json_decref(fl);
		json_decref(seen);
	}
	return json_pack("{s:o, s:o}", "packages", packages, "known_flaky", known);
}

/* sandbox: the host's verdict on a sandbox's out/results.json, from what the agent said on its own
 * event channel (sandbox.h, struct sandbox_verdict): a file a task forged or changed is refused
 * with class Tampered. Depends on nothing else of the module (the fuzz target links it alone). */
#include <stdarg.h>
#include <string.h>

#include "sandbox.h"

void sandbox_verdict_init(struct sandbox_verdict *v)
{
	*v = (struct sandbox_verdict){.task_ends = json_array()};
}

void sandbox_verdict_free(struct sandbox_verdict *v)
{
	if (!v)
		return;
	if (v->task_ends)
		json_decref(v->task_ends);
	free(v->odd);
	*v = (struct sandbox_verdict){0};
}

static void verdict_odd(struct sandbox_verdict *v, const char *what)
{
	if (!v->odd)
		v->odd = xasprintf("the agent's event channel carried %s", what);
}

static bool verdict_job_status_ok(const char *s, bool running_ok)
{
	return s && (strcmp(s, "passed") == 0 || strcmp(s, "failed") == 0 ||
		     (running_ok && strcmp(s, "running") == 0));
}

static bool verdict_hex64(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return false;
	return true;
}

void sandbox_verdict_event(struct sandbox_verdict *v, const json_t *ev)
{
	const char *e = pj_str(ev, "event", "");
	if (strcmp(e, "ready") == 0 || strcmp(e, "warm") == 0 || strcmp(e, "heartbeat") == 0 ||
	    strcmp(e, "task_start") == 0 || strcmp(e, "error") == 0) {
		if (v->job_end[0] && strcmp(e, "error") != 0)
			verdict_odd(v, "events after job_end");
		return;
	}
	if (v->job_end[0]) {
		verdict_odd(v, "events after job_end");
		return;
	}
	if (strcmp(e, "job_start") == 0) {
		if (++v->job_starts > 1)
			verdict_odd(v, "a second job_start");
	} else if (strcmp(e, "results") == 0) {
		const char *d = pj_str(ev, "sha256", NULL), *st = pj_str(ev, "status", NULL);
		if (!verdict_hex64(d) || !verdict_job_status_ok(st, true)) {
			verdict_odd(v, "a malformed results announcement");
			return;
		}
		snprintf(v->digest, sizeof v->digest, "%s", d);
		snprintf(v->status, sizeof v->status, "%s", st);
	} else if (strcmp(e, "task_end") == 0) {
		json_t *fc = json_object_get(ev, "failure_class");
		json_array_append_new(v->task_ends,
				      json_pack("{s:s, s:s, s:O}", "task", pj_str(ev, "task", ""), "status",
						pj_str(ev, "status", ""), "failure_class", fc ? fc : json_null()));
	} else if (strcmp(e, "job_end") == 0) {
		const char *st = pj_str(ev, "status", NULL);
		if (!verdict_job_status_ok(st, false)) {
			verdict_odd(v, "a malformed job_end");
			snprintf(v->job_end, sizeof v->job_end, "?");
			return;
		}
		snprintf(v->job_end, sizeof v->job_end, "%s", st);
	}
	/* anything else is not ours to judge (the host ignores it too) */
}

static int verdict_refuse(struct pyti_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int verdict_refuse(struct pyti_err *err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return pyti_err_class(err, PYTI_FC_TAMPERED, "%s", msg);
}

int sandbox_verdict_check(const struct sandbox_verdict *v, const char *data, size_t len, bool final,
			  const json_t *job_tasks, struct pyti_err *err)
{
	if (v->odd)
		return verdict_refuse(err, "%s (a task writing to it?)", v->odd);
	if (!v->digest[0])
		return verdict_refuse(err, "out/results.json is there, but the agent announced none: a task wrote it");
	char d[65];
	sha256_hex(data, len, d);
	if (strcmp(d, v->digest) != 0)
		return verdict_refuse(err,
				      "out/results.json is not the file the agent wrote (sha256 %.16s…, the agent "
				      "announced %.16s…): a task replaced or changed it",
				      d, v->digest);
	if (!final)
		return 0;
	if (!v->job_end[0])
		return verdict_refuse(err, "the agent did not report the end of the job");
	if (strcmp(v->status, v->job_end) != 0)
		return verdict_refuse(err, "the job ended (%s) with the agent's results.json of a job still %s",
				      v->job_end, v->status);
	json_error_t je;
	_cleanup_json_ json_t *r = json_loadb(data, len, 0, &je);
	json_t *tasks = json_object_get(r, "tasks");
	if (!json_is_object(r) || !json_is_array(tasks))
		return verdict_refuse(err, "out/results.json is not a results object");
	if (strcmp(pj_str(r, "status", ""), v->job_end) != 0)
		return verdict_refuse(err, "out/results.json's status is not the job_end's (%s)", v->job_end);
	size_t n = json_array_size(tasks), n_ends = json_array_size(v->task_ends);
	if (n != n_ends)
		return verdict_refuse(err, "out/results.json lists %zu tasks; the agent reported the end of %zu", n,
				      n_ends);
	if (job_tasks && n != json_array_size(job_tasks))
		return verdict_refuse(err, "out/results.json lists %zu tasks; the job has %zu", n,
				      json_array_size(job_tasks));
	bool all = true;
	for (size_t i = 0; i < n; i++) {
		const json_t *t = json_array_get(tasks, i), *te = json_array_get(v->task_ends, i);
		const char *name = pj_str(t, "task", ""), *st = pj_str(t, "status", "");
		json_t *fc = json_object_get(t, "failure_class");
		if (strcmp(name, pj_str(te, "task", "")) != 0 || strcmp(st, pj_str(te, "status", "")) != 0 ||
		    !json_equal(fc ? fc : json_null(), json_object_get(te, "failure_class")))
			return verdict_refuse(err, "task %zu of out/results.json is not what the agent reported of it",
					      i + 1);
		if (job_tasks && strcmp(name, pj_str(json_array_get(job_tasks, i), "name", "")) != 0)
			return verdict_refuse(err, "task %zu of out/results.json is not the job's task %zu (%s)", i + 1,
					      i + 1, pj_str(json_array_get(job_tasks, i), "name", "?"));
		if (strcmp(st, "passed") != 0)
			all = false;
	}
	if (strcmp(v->job_end, all ? "passed" : "failed") != 0)
		return verdict_refuse(err, "the job's status (%s) does not follow from its tasks'", v->job_end);
	return 0;
}

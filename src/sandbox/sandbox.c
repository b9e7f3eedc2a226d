/* sandbox: backend dispatch and the host's judgement of the results.json a sandbox leaves (believed
 * only as far as the agent vouched for it). The event-line parser both backends use is events.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>

#include "sandbox-ns.h"
#include "sandbox-vm.h"

/* Far above any honest results.json (64 KiB of output per task, escaped): a task cannot make the
 * host read without end. */
#define SANDBOX_RESULTS_MAX (256u << 20)

static int sandbox_dispatch(const struct sandbox_spec *spec, struct sandbox_result *res, struct pyti_err *err)
{
	const char *b = spec->backend ? spec->backend : "ns";
	if (strcmp(b, "ns") == 0)
		return sandbox_ns_run(spec, res, err);
	if (strcmp(b, "vm") == 0)
		return sandbox_vm_run(spec, res, err);
	return pyti_err_usage(err, "unknown sandbox backend '%s' (ns or vm)", b);
}

struct sandbox_watch {
	const struct sandbox_spec *spec;
	struct sandbox_verdict v;
};

static void sandbox_watch_event(void *arg, json_t *ev)
{
	struct sandbox_watch *w = arg;
	sandbox_verdict_event(&w->v, ev);
	if (w->spec->on_event)
		w->spec->on_event(w->spec->arg, ev);
}

/* io_dir/out/results.json into b, following no link on the way (a task may have made out/ or the
 * file one, to a host file or a FIFO); *out_fd gets the out/ directory when not NULL. */
static int sandbox_read_results(const char *io_dir, struct buf *b, int *out_fd, struct pyti_err *err)
{
	_cleanup_close_ int dfd = open(io_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return pyti_err_set(err, errno, "open %s", io_dir);
	_cleanup_close_ int ofd = openat(dfd, "out", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ofd < 0)
		return pyti_err_set(err, errno, "open %s/out (not a directory of its own)", io_dir);
	_cleanup_close_ int fd = openat(ofd, "results.json", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return pyti_err_set(err, errno, "open out/results.json (not a file of its own)");
	struct stat st;
	if (fstat(fd, &st) < 0)
		return pyti_err_set(err, errno, "stat out/results.json");
	if (!S_ISREG(st.st_mode))
		return pyti_err_set(err, 0, "out/results.json is not a regular file");
	if ((unsigned long long)st.st_size > SANDBOX_RESULTS_MAX)
		return pyti_err_set(err, EFBIG, "out/results.json is larger than %u bytes", SANDBOX_RESULTS_MAX);
	char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pyti_err_set(err, errno, "read out/results.json");
		if (n == 0)
			break;
		if (buf_append(b, chunk, (size_t)n) < 0)
			return pyti_err_set(err, EFBIG, "out/results.json is larger than %u bytes", SANDBOX_RESULTS_MAX);
	}
	if (out_fd)
		*out_fd = pyti_steal_fd(&ofd);
	return 0;
}

/* After the backend: believe out/results.json only as far as the agent vouched for it. */
static int sandbox_judge(const struct sandbox_spec *spec, const struct sandbox_verdict *v, int rc,
			 struct sandbox_result *res, struct pyti_err *err)
{
	_cleanup_buf_ struct buf b = BUF_INIT(SANDBOX_RESULTS_MAX);
	struct pyti_err e2 = {0};
	_cleanup_close_ int ofd = -1;
	int rd = sandbox_read_results(spec->io_dir, &b, &ofd, &e2);
	if (rc < 0) {
		/* A crash or a timeout: out/ stays for what it shows (logs, how far the job got), but a
		 * results.json other than the last one the agent announced is not the agent's. */
		if (rd == 0 && sandbox_verdict_check(v, b.data, b.len, false, NULL, &e2) < 0) {
			renameat(ofd, "results.json", ofd, "results.json.refused");
			log_warn("%s; kept as out/results.json.refused", pyti_err_str(&e2));
		}
		return -1;
	}
	if (rd < 0 || sandbox_verdict_check(v, b.data ? b.data : "", b.len, true, spec->job_tasks, &e2) < 0) {
		/* Kept for whoever looks into it, under a name nothing takes for the agent's. */
		if (rd == 0)
			renameat(ofd, "results.json", ofd, "results.json.refused");
		*err = e2;
		err->fclass = res->fclass = PYTI_FC_TAMPERED;
		return pyti_err_prefix(err, "the job's results cannot be believed");
	}
	return 0;
}

int sandbox_run(const struct sandbox_spec *spec, struct sandbox_result *res, struct pyti_err *err)
{
	*res = (struct sandbox_result){.agent_status = -1};
	struct sandbox_watch w = {.spec = spec};
	sandbox_verdict_init(&w.v);
	struct sandbox_spec s = *spec;
	s.on_event = sandbox_watch_event;
	s.arg = &w;
	int rc = sandbox_dispatch(&s, res, err);
	if (spec->job_tasks && !(rc < 0 && err && err->status == PYTI_EXIT_USAGE))
		rc = sandbox_judge(spec, &w.v, rc, res, err);
	sandbox_verdict_free(&w.v);
	return rc;
}

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

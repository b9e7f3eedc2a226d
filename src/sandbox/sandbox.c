/* sandbox: backend dispatch, and reading the results.json a sandbox leaves to be judged by the
 * verdict (verdict.c: believed only as far as the agent vouched for it). The event-line parser
 * both backends use is events.c. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "sandbox-ns-int.h"
#include "sandbox-vm-int.h"

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
	if (safe_read_fd(fd, "out/results.json", b, err) < 0)
		return -1;
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

void sandbox_env_base(json_t *env, const char *path)
{
	json_object_set_new(env, "PATH", json_string(path ? path : SANDBOX_ENV_PATH));
	json_object_set_new(env, "HOME", json_string(SANDBOX_ENV_HOME));
	json_object_set_new(env, "LANG", json_string(SANDBOX_ENV_LANG));
}

static struct sandbox_host sandbox_host_cfg;

void sandbox_set_host(const struct sandbox_host *h)
{
	sandbox_host_cfg = *h;
}

/* The spec's host settings: its own, else the CLI's, else the defaults. */
static void sandbox_host_fill(struct sandbox_spec *s)
{
	const struct sandbox_host *h = &sandbox_host_cfg;
	if (!s->net_helper)
		s->net_helper = h->net_helper;
	if (!s->vm_memory_mib)
		s->vm_memory_mib = h->vm_memory_mib ? h->vm_memory_mib : 1024;
	if (!s->vm_vcpus)
		s->vm_vcpus = h->vm_vcpus ? h->vm_vcpus : 1;
	if (!(s->vm_hang_s > 0))
		s->vm_hang_s = h->vm_hang_s > 0 ? h->vm_hang_s : 120;
	s->vm_no_standby = s->vm_no_standby || h->vm_no_standby;
}

json_t *sandbox_vm_times_json(const struct sandbox_result *res)
{
	const struct sandbox_vm_times *t = &res->vm;
	if (!t->reset)
		return NULL;
	json_t *j = json_pack("{s:s}", "reset", t->reset);
	const struct {
		const char *key;
		double v;
	} f[] = {{"ready_s", t->ready_s},         {"restore_s", t->restore_s},     {"first_task_s", t->first_task_s},
		 {"warm_boot_s", t->warm_boot_s}, {"warm_save_s", t->warm_save_s}};
	for (size_t i = 0; i < ARRAY_SIZE(f); i++)
		json_object_set_new(j, f[i].key, f[i].v >= 0 ? json_real(f[i].v) : json_null());
	return j;
}

static const struct sandbox_vm_times sandbox_vm_times_none = {NULL, -1, -1, -1, -1, -1};

int sandbox_run(const struct sandbox_spec *spec, struct sandbox_result *res, struct pyti_err *err)
{
	*res = (struct sandbox_result){.agent_status = -1, .vm = sandbox_vm_times_none};
	struct sandbox_watch w = {.spec = spec};
	sandbox_verdict_init(&w.v);
	struct sandbox_spec s = *spec;
	s.on_event = sandbox_watch_event;
	s.arg = &w;
	sandbox_host_fill(&s);
	int rc = sandbox_dispatch(&s, res, err);
	if (spec->job_tasks && !(rc < 0 && err && err->status == PYTI_EXIT_USAGE))
		rc = sandbox_judge(spec, &w.v, rc, res, err);
	sandbox_verdict_free(&w.v);
	return rc;
}

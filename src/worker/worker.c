/* `pyti worker`: hello, then claim jobs (a long poll when idle), run each in a job process of its
 * own, heartbeat their leases, report each task as it ends, upload the kept outputs and finish.
 *
 * One thread, one loop: poll() over the job processes' event pipes with a timeout that is the
 * next thing due (a heartbeat, a claim, a spool retry). Every report and finish goes through the
 * spool (written first, sent in order, removed when accepted), so what the master has not taken
 * survives a master restart and a worker restart alike. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "worker.h"

#define EVENT_LINE_MAX (1u << 20)
/* A claim's long poll while idle. A stopping worker lets one it has in flight answer (the master
 * may be leasing jobs to it at that moment: an aborted claim's jobs would wait out their lease),
 * so this is also how long a SIGTERM to an idle worker may take. */
#define CLAIM_WAIT_S 10
#define CLAIM_BUSY_S 1.0 /* between claims while some slots run jobs (wait_s 0); a freed slot asks at once */
#define ARTEFACT_MAX (64ull << 20)

static volatile sig_atomic_t g_stop;
static volatile int g_abort;	  /* any stop signal: aborts a hello being retried */
static volatile int g_abort_hard; /* a second one: aborts a claim's long poll too */

static int g_chld_pipe[2] = {-1, -1}; /* SIGCHLD wakes the loop's poll (a job that ended) */

static void on_signal(int sig)
{
	(void)sig;
	g_stop++;
	g_abort = 1;
	if (g_stop >= 2)
		g_abort_hard = 1;
}

static void on_sigchld(int sig)
{
	(void)sig;
	int e = errno;
	if (g_chld_pipe[1] >= 0 && write(g_chld_pipe[1], "c", 1) < 0)
		(void)0; /* full: the loop is woken already */
	errno = e;
}

/* PENDING: leased but not started (a master that handed out more than max; heartbeated, started
 * when a slot frees); RUNNING: its job process runs; FINISHING: ended, its finish in the spool. */
enum wjob_state {
	WJ_RUNNING,
	WJ_FINISHING,
	WJ_PENDING
};

#define WORKER_TAIL_MAX 4096 /* bytes of a running task's output sent with a heartbeat */

struct wjob {
	char *job_id, *lease, *dir, *run_id, *dist;
	long long attempt;
	pid_t pid;
	int ev_fd;
	struct buf line;
	enum wjob_state state;
	bool abandon; /* lease lost or cancelled: killed, nothing more is sent */
	double next_hb;
	json_t *progress;
	double t0;
	int hb_failures; /* in a row: the first is a warning, the rest are news only at -v */
};

struct worker {
	const struct worker_opts *o;
	struct wrpc_client *c;
	struct spool *spool;
	char *worker_id;
	char *jobs_dir;
	double lease_s, heartbeat_s;
	struct wjob **jobs;
	size_t n_jobs;
	long started, done;
	struct backoff bo;
	double next_flush, next_claim;
	bool claimed_once;
	bool fatal; /* the master refused our token: stop, with fatal_err */
	struct pyti_err fatal_err;
};

static void wjob_free(struct wjob *j)
{
	if (!j)
		return;
	if (j->ev_fd >= 0)
		close(j->ev_fd);
	buf_free(&j->line);
	if (j->progress)
		json_decref(j->progress);
	if (j->dir) {
		struct pyti_err e = {0};
		rm_rf(j->dir, &e);
	}
	free(j->job_id), free(j->lease), free(j->dir), free(j->run_id), free(j->dist);
	free(j);
}

static struct wjob *find_job(struct worker *w, const char *job_id, long long attempt)
{
	for (size_t i = 0; i < w->n_jobs; i++)
		if (strcmp(w->jobs[i]->job_id, job_id) == 0 && (attempt < 0 || w->jobs[i]->attempt == attempt))
			return w->jobs[i];
	return NULL;
}

static size_t running(const struct worker *w)
{
	size_t n = 0;
	for (size_t i = 0; i < w->n_jobs; i++)
		n += w->jobs[i]->state == WJ_RUNNING || w->jobs[i]->state == WJ_PENDING;
	return n;
}

/* ---- hello ---- */

static int hello(struct worker *w, struct pyti_err *err)
{
	for (;;) {
		_cleanup_json_ json_t *caps = worker_capabilities(w->o->state_dir, w->o->backend, w->o->slots);
		_cleanup_json_ json_t *p = json_pack("{s:s, s:O}", "name", w->o->name, "capabilities", caps);
		_cleanup_json_ json_t *res = NULL;
		wrpc_set_abort_flag(w->c, &g_abort);
		int rc = wrpc_call(w->c, "hello", p, &res, err);
		wrpc_set_abort_flag(w->c, NULL);
		if (rc == 0) {
			const char *id = pj_str(res, "worker_id", NULL);
			if (!id)
				return pyti_err_set(err, 0, "hello: the master's answer has no worker_id");
			free(w->worker_id);
			w->worker_id = xstrdup(id);
			w->lease_s = pj_num(res, "lease_s", 60);
			w->heartbeat_s = w->o->heartbeat_s > 0 ? w->o->heartbeat_s : pj_num(res, "heartbeat_s", 10);
			if (w->heartbeat_s <= 0)
				w->heartbeat_s = 10;
			if (w->heartbeat_s > w->lease_s / 2 && w->lease_s > 0)
				w->heartbeat_s = w->lease_s / 3; /* a lease survives a missed heartbeat or two */
			backoff_reset(&w->bo);
			log_info("worker %s: hello from %s (lease %.0f s, heartbeat %.1f s)", w->worker_id, w->o->name,
				 w->lease_s, w->heartbeat_s);
			return 0;
		}
		if (wrpc_last(w->c)->kind != WRPC_RETRY || g_stop)
			return -1;
		double d = backoff_next(&w->bo, wrpc_last(w->c)->retry_after_s);
		log_warn("%s; retrying in %.1f s", pyti_err_str(err), d);
		usleep((useconds_t)(d * 1e6));
		if (g_stop)
			return -1;
	}
}

/* ---- starting a job ---- */

static int start_job(struct worker *w, const json_t *cj, struct pyti_err *err)
{
	const char *job_id = pj_str(cj, "job_id", NULL), *lease = pj_str(cj, "lease", NULL);
	long long attempt = pj_int(cj, "attempt", 0);
	/* a job id names a directory of ours: the master's word, but checked like any input */
	if (!job_id || !lease || !path_is_safe_rel(job_id) || strchr(job_id, '/') || strlen(job_id) > 64 ||
	    !json_is_object(json_object_get(cj, "config")))
		return pyti_err_set(err, 0, "claim: a job without a usable job_id, lease or config");
	struct wjob *j = xcalloc(1, sizeof *j);
	j->job_id = xstrdup(job_id);
	j->lease = xstrdup(lease);
	j->attempt = attempt;
	j->ev_fd = -1;
	j->pid = -1;
	j->t0 = now_mono();
	j->line = (struct buf)BUF_INIT(EVENT_LINE_MAX);
	const char *run_id = pj_str(cj, "run_id", pj_str(json_object_get(cj, "config"), "run_id", NULL));
	j->run_id = run_id ? xstrdup(run_id) : NULL;
	j->dir = xasprintf("%s/%s.%lld", w->jobs_dir, job_id, attempt);
	rm_rf(j->dir, NULL);
	_cleanup_json_ json_t *claim = json_deep_copy(cj);
	json_object_set_new(claim, "backend", json_string(w->o->backend));
	json_object_set_new(claim, "allow_local", json_boolean(w->o->allow_local));
	_cleanup_free_ char *cp = xasprintf("%s/claim.json", j->dir);
	if (mkdir_p(j->dir, 0700, err) < 0 || pj_dump_file(claim, cp, err) < 0) {
		wjob_free(j);
		return -1;
	}
	j->state = WJ_PENDING;
	j->next_hb = now_mono() + w->heartbeat_s;
	j->dist = xstrdup(pj_str(json_object_get(cj, "config"), "dist", "?"));
	w->jobs = xrealloc(w->jobs, (w->n_jobs + 1) * sizeof *w->jobs);
	w->jobs[w->n_jobs++] = j;
	w->started++;
	return 0;
}

/* Start a pending job's process. */
static int spawn_job(struct worker *w, struct wjob *j, struct pyti_err *err)
{
	int pfd[2] = {-1, -1};
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return pyti_err_set(err, errno, "pipe");
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		pyti_err_set(err, errno, "fork");
		close(pfd[0]), close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		/* the job dies with the worker, even one killed with -9: its lease expires and another
		 * worker runs it, rather than this one running on with nobody to report it */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (pfd[1] == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(pfd[1], 3) < 0)
			_exit(127);
		/* nothing else of the worker's (the spool's lock, the master's connection, other
		 * jobs' pipes) goes with it */
		close_range(4, ~0U, 0);
		/* a terminal's ^C or a service manager's SIGTERM to the whole group is for the worker,
		 * which decides (it lets running jobs end); a job is stopped with SIGKILL. The runner
		 * resets both for what the job starts. */
		signal(SIGTERM, SIG_IGN);
		signal(SIGINT, SIG_IGN);
		signal(SIGPIPE, SIG_DFL);
		char *argv[16];
		int k = 0;
		argv[k++] = (char *)w->o->self_exe;
		argv[k++] = "--state-dir";
		argv[k++] = (char *)w->o->state_dir;
		for (int v = 0; v < w->o->verbose && v < 2; v++)
			argv[k++] = "-v";
		argv[k++] = "worker";
		argv[k++] = "--run-job";
		argv[k++] = j->dir;
		argv[k] = NULL;
		execv(w->o->self_exe, argv);
		_exit(127);
	}
	close(pfd[1]);
	j->pid = pid;
	j->ev_fd = pfd[0];
	j->state = WJ_RUNNING;
	j->t0 = now_mono();
	fcntl(j->ev_fd, F_SETFL, O_NONBLOCK);
	log_info("run %s job %s attempt %lld worker %s: started %s (pid %d)", j->run_id ? j->run_id : "-", j->job_id,
		 j->attempt, w->worker_id, j->dist, (int)pid);
	return 0;
}

static size_t started_jobs(const struct worker *w)
{
	size_t n = 0;
	for (size_t i = 0; i < w->n_jobs; i++)
		n += w->jobs[i]->state == WJ_RUNNING;
	return n;
}

/* Pending jobs get the free slots. */
static void start_pending(struct worker *w)
{
	for (size_t i = 0; i < w->n_jobs; i++) {
		struct wjob *j = w->jobs[i];
		if (j->state != WJ_PENDING || j->abandon)
			continue;
		/* stopping or not: a job leased to us is ours to run (a claim in flight when the
		 * signal came may have brought it) */
		if (started_jobs(w) >= (size_t)w->o->slots)
			return;
		struct pyti_err err = {0};
		if (spawn_job(w, j, &err) < 0) {
			log_warn("job %s: %s", j->job_id, pyti_err_str(&err));
			j->abandon = true; /* its lease expires and it goes to another worker */
		}
	}
}

static bool may_claim(const struct worker *w)
{
	if (g_stop || (w->o->once && w->claimed_once))
		return false;
	if (w->o->max_jobs > 0 && w->started >= w->o->max_jobs)
		return false;
	return running(w) < (size_t)w->o->slots;
}

static int claim(struct worker *w, struct pyti_err *err)
{
	size_t free_slots = (size_t)w->o->slots - running(w);
	if (w->o->max_jobs > 0 && (long)free_slots > w->o->max_jobs - w->started)
		free_slots = (size_t)(w->o->max_jobs - w->started);
	/* nothing else to do while idle: wait at the master; with jobs to look after, ask and return */
	int wait_s = w->n_jobs == 0 ? CLAIM_WAIT_S : 0;
	_cleanup_json_ json_t *p = json_pack("{s:s, s:I, s:i}", "worker_id", w->worker_id, "max",
					     (json_int_t)free_slots, "wait_s", wait_s);
	_cleanup_json_ json_t *res = NULL;
	wrpc_set_abort_flag(w->c, &g_abort_hard);
	int rc = wrpc_call_wait(w->c, "claim", p, wait_s + 5, &res, err);
	wrpc_set_abort_flag(w->c, NULL);
	if (rc < 0) {
		if (g_stop)
			return 0;
		if (wrpc_last(w->c)->kind == WRPC_NOT_FOUND) /* the master no longer knows us */
			return hello(w, err);
		return -1;
	}
	if (w->o->once)
		w->claimed_once = true;
	size_t i;
	json_t *cj;
	json_t *got = json_object_get(res, "jobs");
	if (json_array_size(got) > free_slots)
		log_warn("claim: asked for %zu jobs, the master leased %zu; the rest wait for a slot", free_slots,
			 json_array_size(got));
	json_array_foreach(got, i, cj) {
		if (start_job(w, cj, err) < 0)
			log_warn("%s", pyti_err_str(err)); /* its lease expires and it goes to another worker */
	}
	start_pending(w);
	if (w->o->once && running(w) == 0 && w->n_jobs == 0)
		log_info("--once: no job was waiting");
	return 0;
}

/* ---- the spool, heartbeats ---- */

static void on_spool_done(void *arg, const json_t *entry, enum wrpc_kind kind, const json_t *result)
{
	struct worker *w = arg;
	const char *method = pj_str(entry, "method", ""), *job_id = pj_str(entry, "job_id", "");
	json_t *params = json_object_get(entry, "params");
	struct wjob *j = find_job(w, job_id, pj_int(params, "attempt", -1));
	if (kind == WRPC_STALE && j && !j->abandon) {
		log_info("job %s attempt %lld: lease lost; abandoned", j->job_id, j->attempt);
		j->abandon = true;
		if (j->pid > 0)
			kill(j->pid, SIGKILL);
	}
	if (strcmp(method, "finish") == 0) {
		if (kind == WRPC_OK)
			log_info("run %s job %s attempt %lld worker %s: finished (%s); the master says %s",
				 j && j->run_id ? j->run_id : "-", job_id, pj_int(params, "attempt", 0), w->worker_id,
				 pj_str(params, "status", "?"), pj_str(result, "state", "?"));
		if (j && j->state == WJ_FINISHING)
			j->abandon = true; /* done with it, whatever the answer: reaped below */
	}
}

static void flush(struct worker *w)
{
	if (now_mono() < w->next_flush)
		return;
	struct pyti_err err = {0};
	int rc = spool_flush(w->spool, w->c, on_spool_done, w, &err);
	if (rc < 0) {
		double d = backoff_next(&w->bo, wrpc_last(w->c)->retry_after_s);
		log_warn("%s; %zu requests kept in the spool, retrying in %.1f s", pyti_err_str(&err),
			 spool_count(w->spool), d);
		w->next_flush = now_mono() + d;
		if (wrpc_last(w->c)->kind == WRPC_UNAUTHORIZED) {
			w->fatal = true; /* the token is wrong: nothing this worker sends will be taken */
			w->fatal_err = err;
		}
	} else {
		backoff_reset(&w->bo);
		w->next_flush = 0;
	}
}

static void spool_req(struct worker *w, struct wjob *j, const char *method, json_t *params, json_t *uploads)
{
	_cleanup_json_ json_t *e = json_pack("{s:s, s:s, s:o, s:o}", "method", method, "job_id", j->job_id, "params",
					     params, "uploads", uploads ? uploads : json_array());
	struct pyti_err err = {0};
	if (spool_push(w->spool, e, &err) < 0)
		log_warn("job %s: %s not spooled: %s", j->job_id, method, pyti_err_str(&err));
}

static json_t *lease_params(const struct wjob *j)
{
	return json_pack("{s:s, s:I, s:s}", "job_id", j->job_id, "attempt", (json_int_t)j->attempt, "lease", j->lease);
}

static void heartbeat(struct worker *w, struct wjob *j)
{
	j->next_hb = now_mono() + w->heartbeat_s;
	json_t *p = lease_params(j);
	json_object_set_new(p, "progress",
			    j->progress ? json_incref(j->progress)
					: json_pack("{s:n, s:i, s:i}", "task", "i", 0, "n", 0));
	_cleanup_json_ json_t *pp = p, *res = NULL;
	struct pyti_err err = {0};
	if (wrpc_call(w->c, "heartbeat", pp, &res, &err) < 0) {
		enum wrpc_kind k = wrpc_last(w->c)->kind;
		if (k == WRPC_STALE || k == WRPC_NOT_FOUND) {
			log_info("job %s attempt %lld: lease lost; abandoned", j->job_id, j->attempt);
			j->abandon = true;
			if (j->pid > 0)
				kill(j->pid, SIGKILL);
			spool_drop_job(w->spool, j->job_id);
		} else {
			/* the lease outlasts a few missed heartbeats; retry soon */
			pyti_log(j->hb_failures++ ? PYTI_LOG_DEBUG : PYTI_LOG_WARN, "job %s: %s", j->job_id,
				 pyti_err_str(&err));
			j->next_hb = now_mono() + (w->heartbeat_s < 2 ? w->heartbeat_s : 2);
		}
		return;
	}
	if (j->hb_failures) {
		log_info("job %s: heartbeats taken again after %d failed", j->job_id, j->hb_failures);
		j->hb_failures = 0;
	}
	if (pj_bool(res, "cancel", false) && !j->abandon) {
		log_info("run %s job %s attempt %lld worker %s: cancelled", j->run_id ? j->run_id : "-", j->job_id,
			 j->attempt, w->worker_id);
		j->abandon = true;
		if (j->pid > 0)
			kill(j->pid, SIGKILL);
		spool_drop_job(w->spool, j->job_id);
	}
}

/* ---- a job's events and its end ---- */

static void on_event(struct worker *w, struct wjob *j, const char *line, size_t len)
{
	_cleanup_json_ json_t *l = pj_loads(line, len, NULL);
	const char *phase = pj_str(l, "phase", "");
	json_t *ev = json_object_get(l, "event");
	if (!ev || strcmp(phase, "sandbox") != 0)
		return; /* the fetch sandbox's steps are not the job's tasks */
	const char *e = pj_str(ev, "event", "");
	if (strcmp(e, "task_start") == 0) {
		if (j->progress)
			json_decref(j->progress);
		j->progress = json_pack("{s:O?, s:I, s:I}", "task", json_object_get(ev, "task"), "i",
					(json_int_t)pj_int(ev, "i", 0), "n", (json_int_t)pj_int(ev, "n", 0));
	} else if (strcmp(e, "heartbeat") == 0) {
		/* the running task's last output (the agent's heartbeat): the next heartbeat carries it
		 * to the master, whose web UI shows it; at most WORKER_TAIL_MAX bytes, cut at a character */
		json_t *tail = json_object_get(ev, "tail");
		if (!j->progress || !json_is_string(tail) ||
		    strcmp(pj_str(ev, "task", ""), pj_str(j->progress, "task", "-")) != 0)
			return;
		const char *s = json_string_value(tail);
		size_t n = json_string_length(tail), off = n > WORKER_TAIL_MAX ? n - WORKER_TAIL_MAX : 0;
		while (off < n && ((unsigned char)s[off] & 0xc0) == 0x80)
			off++;
		json_object_set_new(j->progress, "tail", pj_string_lossy(s + off, n - off));
	} else if (strcmp(e, "task_end") == 0) {
		/* The master hears of it at once: a heartbeat now (the progress), and the task's partial
		 * record (what the guest said of it), so a worker or job that dies next leaves it in the
		 * store. The whole record waits for the job's collect step (the host adds test counts
		 * and failures from the JUnit file, and the runtime) and replaces it (docs/rpc.md). */
		j->next_hb = 0;
		json_t *task = json_object_get(ev, "task"), *wall = json_object_get(ev, "wall_s"),
		       *fc = json_object_get(ev, "failure_class");
		const char *st = pj_str(ev, "status", "");
		/* the guest's words: only well-formed ones go on */
		if (j->abandon || !json_is_string(task) || json_string_length(task) == 0 ||
		    json_string_length(task) > 256 ||
		    (strcmp(st, "passed") && strcmp(st, "failed") && strcmp(st, "skipped")) ||
		    (fc && !json_is_null(fc) && (!json_is_string(fc) || pyti_fclass_parse(json_string_value(fc)) < 0)))
			return;
		json_t *r = json_pack("{s:O, s:s, s:O?, s:O?, s:b}", "task", task, "status", st, "wall_s",
				      json_is_number(wall) ? wall : NULL, "failure_class", fc, "partial", 1);
		if (!r)
			return;
		json_t *p = lease_params(j);
		json_object_set(p, "task", task);
		json_object_set_new(p, "result", r);
		spool_req(w, j, "report", p, NULL);
	}
}

static void read_events(struct worker *w, struct wjob *j)
{
	char chunk[65536];
	for (;;) {
		ssize_t n = read(j->ev_fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				close(j->ev_fd);
				j->ev_fd = -1;
			}
			return;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (chunk[i] != '\n') {
				buf_append(&j->line, &chunk[i], 1);
				continue;
			}
			if (!j->line.truncated && j->line.len)
				on_event(w, j, j->line.data, j->line.len);
			buf_reset(&j->line);
			j->line.truncated = false;
		}
	}
}

/* Every regular file under the kept directory root (results.json, logs/, junit files), named by
 * its path below root, read beneath it without following links (the sandbox wrote them). */
static void collect_artefacts(const char *root, const char *rel, int depth, json_t *arts, json_t *ups)
{
	_cleanup_free_ char *d = rel[0] ? xasprintf("%s/%s", root, rel) : xstrdup(root);
	int fd = safe_opendir_path(d, NULL);
	DIR *dir = fd < 0 ? NULL : fdopendir(fd);
	if (!dir) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(dir))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		_cleanup_free_ char *r = rel[0] ? xasprintf("%s/%s", rel, e->d_name) : xstrdup(e->d_name);
		struct stat st;
		if (fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode) && depth < 8) {
			collect_artefacts(root, r, depth + 1, arts, ups);
			continue;
		}
		if (!S_ISREG(st.st_mode) || (unsigned long long)st.st_size > ARTEFACT_MAX || !path_is_safe_rel(r))
			continue;
		_cleanup_close_ int rfd = safe_open_beneath(fd, e->d_name, ARTEFACT_MAX, NULL);
		char sha[65];
		if (rfd < 0 || sha256_fd(rfd, r, sha, NULL) < 0)
			continue;
		json_array_append_new(
			arts, json_pack("{s:s, s:s, s:I}", "name", r, "sha256", sha, "size", (json_int_t)st.st_size));
		json_array_append_new(ups, json_pack("{s:s, s:s, s:s, s:I}", "root", root, "rel", r, "sha256", sha,
						     "size", (json_int_t)st.st_size));
	}
	closedir(dir);
}

static void job_ended(struct worker *w, struct wjob *j, int wstatus)
{
	w->done++;
	if (j->abandon) {
		j->state = WJ_FINISHING;
		return;
	}
	_cleanup_free_ char *op = xasprintf("%s/outcome.json", j->dir);
	struct pyti_err err = {0};
	_cleanup_json_ json_t *oc = pj_load_file(op, &err);
	json_t *results = json_object_get(oc, "results");
	_cleanup_json_ json_t *fallback = NULL;
	if (!results) {
		results = json_object_get(oc, "error");
		if (!results) { /* the job process died before it could say anything */
			char why[128];
			if (WIFSIGNALED(wstatus))
				snprintf(why, sizeof why, "the job process was killed by signal %d", WTERMSIG(wstatus));
			else
				snprintf(why, sizeof why, "the job process exited %d without an outcome",
					 WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
			fallback = json_pack("{s:s, s:s, s:s, s:i}", "status", "error", "failure_class", "Crash",
					     "error", why, "exit_status", PYTI_EXIT_INFRA);
			results = fallback;
		}
	}
	json_t *arts = json_array(), *ups = json_array();
	const char *status = pj_str(results, "status", "error");
	if (strcmp(status, "error") != 0) {
		/* each task's whole record, as soon as it exists (see on_event) */
		size_t i;
		json_t *t;
		json_array_foreach(json_object_get(results, "tasks"), i, t) {
			if (!json_is_string(json_object_get(t, "task")))
				continue;
			json_t *p = lease_params(j);
			json_object_set(p, "task", json_object_get(t, "task"));
			json_object_set(p, "result", t);
			spool_req(w, j, "report", p, NULL);
		}
		const char *logs = pj_str(results, "logs", NULL);
		if (logs)
			collect_artefacts(logs, "", 0, arts, ups);
	}
	json_t *p = lease_params(j);
	json_object_set_new(p, "status", json_string(status));
	json_object_set(p, "failure_class",
			json_object_get(results, "failure_class") ? json_object_get(results, "failure_class")
								  : json_null());
	json_object_set(p, "results", results);
	if (json_is_string(json_object_get(results, "error")))
		json_object_set(p, "error", json_object_get(results, "error"));
	json_object_set_new(p, "artefacts", arts);
	spool_req(w, j, "finish", p, ups);
	j->state = WJ_FINISHING;
	w->next_flush = 0;
	log_info("run %s job %s attempt %lld worker %s: %s in %.1f s", j->run_id ? j->run_id : "-", j->job_id,
		 j->attempt, w->worker_id, status, now_mono() - j->t0);
}

static void reap(struct worker *w)
{
	for (size_t i = 0; i < w->n_jobs; i++) {
		struct wjob *j = w->jobs[i];
		if (j->pid > 0) {
			int st;
			pid_t r = waitpid(j->pid, &st, WNOHANG);
			if (r == j->pid) {
				if (j->ev_fd >= 0)
					read_events(w, j); /* the last lines before it ended */
				j->pid = -1;
				job_ended(w, j, st);
			}
		}
	}
	/* done with: abandoned and reaped, or finished and its finish taken */
	size_t k = 0;
	for (size_t i = 0; i < w->n_jobs; i++) {
		struct wjob *j = w->jobs[i];
		if (j->pid < 0 && j->abandon) {
			wjob_free(j);
			w->next_claim = 0; /* a slot is free: ask for work now, not at the next poll */
		} else {
			w->jobs[k++] = j;
		}
	}
	w->n_jobs = k;
}

static void kill_all(struct worker *w)
{
	for (size_t i = 0; i < w->n_jobs; i++)
		if (w->jobs[i]->pid > 0)
			kill(w->jobs[i]->pid, SIGKILL);
	for (size_t i = 0; i < w->n_jobs; i++)
		if (w->jobs[i]->pid > 0)
			waitpid(w->jobs[i]->pid, NULL, 0);
}

static char *worker_dir(const struct worker_opts *o)
{
	return xasprintf("%s/worker", o->state_dir);
}

int worker_run(const struct worker_opts *o, struct pyti_err *err)
{
	if (o->slots < 1 || o->slots > 1024)
		return pyti_err_usage(err, "--slots must be 1…1024, not %d", o->slots);
	if (!o->name || !*o->name || !path_is_safe_rel(o->name) || strchr(o->name, '/'))
		return pyti_err_usage(err, "worker name '%s': a plain name, please", o->name ? o->name : "");
	struct worker w = {.o = o};
	_cleanup_free_ char *wd = worker_dir(o);
	_cleanup_free_ char *spool_dir = xasprintf("%s/spool/%s", wd, o->name);
	w.jobs_dir = xasprintf("%s/jobs/%s", wd, o->name);
	backoff_init(&w.bo, 0.5, 30, (unsigned)getpid() ^ (unsigned)(now_wall() * 1000));
	int rc = -1;
	w.spool = spool_open(spool_dir, err);
	if (!w.spool)
		goto out;
	/* a killed worker's job directories: their leases expire and the master hands them out again */
	rm_rf(w.jobs_dir, NULL);
	if (mkdir_p(w.jobs_dir, 0700, err) < 0)
		goto out;
	w.c = wrpc_new(o->master, o->token, 60, err);
	if (!w.c)
		goto out;

	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (g_chld_pipe[0] < 0 && pipe2(g_chld_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		pyti_err_set(err, errno, "pipe");
		goto out;
	}
	struct sigaction sc = {.sa_handler = on_sigchld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
	sigemptyset(&sc.sa_mask);
	sigaction(SIGCHLD, &sc, NULL);

	if (spool_count(w.spool))
		log_info("worker: %zu unsent requests in the spool from an earlier run; sending them first",
			 spool_count(w.spool));
	if (hello(&w, err) < 0) {
		if (g_stop) {
			rc = 0;
			pyti_err_clear(err);
		}
		goto out;
	}
	bool stop_logged = false;
	for (;;) {
		if (g_stop >= 2) {
			log_warn("worker: second signal; killing %zu running jobs (the spool keeps what was not sent)",
				 running(&w));
			kill_all(&w);
			break;
		}
		if (g_stop && !stop_logged) {
			log_info("worker: stopping: no more claims; waiting for %zu running jobs", running(&w));
			stop_logged = true;
		}
		if (spool_count(w.spool))
			flush(&w);
		if (w.fatal) {
			kill_all(&w);
			*err = w.fatal_err;
			goto out;
		}
		double now = now_mono();
		for (size_t i = 0; i < w.n_jobs; i++)
			if (!w.jobs[i]->abandon && w.jobs[i]->next_hb <= now)
				heartbeat(&w, w.jobs[i]);
		reap(&w);
		start_pending(&w);
		bool spool_empty = spool_count(w.spool) == 0;
		if (w.n_jobs == 0 && spool_empty &&
		    (g_stop || (o->max_jobs > 0 && w.done >= o->max_jobs) || (o->once && w.claimed_once)))
			break;
		/* stopping, nothing runs, and the master does not take what is left: it waits in the
		 * spool for the next start */
		if (g_stop && running(&w) == 0 && !spool_empty && w.next_flush > now) {
			log_warn("worker: exiting with %zu requests in the spool", spool_count(w.spool));
			break;
		}
		if (may_claim(&w) && now >= w.next_claim && spool_empty) {
			if (claim(&w, err) < 0) {
				if (wrpc_last(w.c)->kind != WRPC_RETRY)
					goto out;
				double d = backoff_next(&w.bo, wrpc_last(w.c)->retry_after_s);
				log_warn("%s; retrying in %.1f s", pyti_err_str(err), d);
				w.next_claim = now_mono() + d;
			} else {
				/* busy: ask again in a while; idle: the long poll did the waiting (a master
				 * that answers at once still is not asked more than once a second) */
				w.next_claim = now_mono() + (w.n_jobs ? CLAIM_BUSY_S : 1.0);
				backoff_reset(&w.bo);
			}
			continue;
		}
		/* wait for the next thing due */
		double next = now + 1.0;
		for (size_t i = 0; i < w.n_jobs; i++)
			if (!w.jobs[i]->abandon && w.jobs[i]->next_hb < next)
				next = w.jobs[i]->next_hb;
		if (may_claim(&w) && w.next_claim < next)
			next = w.next_claim;
		if (!spool_empty && w.next_flush < next)
			next = w.next_flush;
		struct pollfd pfds[1024];
		struct wjob *owners[1024];
		nfds_t n = 0;
		pfds[n] = (struct pollfd){.fd = g_chld_pipe[0], .events = POLLIN};
		owners[n++] = NULL;
		for (size_t i = 0; i < w.n_jobs && n < ARRAY_SIZE(pfds); i++)
			if (w.jobs[i]->ev_fd >= 0) {
				pfds[n] = (struct pollfd){.fd = w.jobs[i]->ev_fd, .events = POLLIN};
				owners[n++] = w.jobs[i];
			}
		int ms = (int)((next - now_mono()) * 1000);
		if (ms < 0)
			ms = 0;
		if (ms > 1000)
			ms = 1000; /* reaping children needs a look now and then */
		if (poll(pfds, n, ms) > 0) {
			char drain[64];
			if (pfds[0].revents)
				while (read(g_chld_pipe[0], drain, sizeof drain) > 0)
					;
			for (nfds_t i = 1; i < n; i++)
				if (pfds[i].revents)
					read_events(&w, owners[i]);
		}
	}
	rc = 0;
	pyti_err_clear(err);
out:
	if (rc < 0 && w.n_jobs)
		kill_all(&w);
	for (size_t i = 0; i < w.n_jobs; i++)
		wjob_free(w.jobs[i]);
	free(w.jobs);
	wrpc_free(w.c);
	spool_close(w.spool);
	free(w.worker_id);
	free(w.jobs_dir);
	return rc;
}

/* pyti run: one job or a batch of them, end to end, with progress on stderr and a report on stdout.
 *
 * Every job runs in a child process of its own (manager_run; the manager code is not known to be
 * thread-safe), which sends its progress and, at its end, its raw data to this process as JSON
 * lines on a pipe. This process only renders, and owns the signals: on SIGINT/SIGTERM it kills the
 * jobs' processes, ends everything they left (it is their subreaper: a sandbox whose manager died
 * is killed by the kernel, PR_SET_PDEATHSIG, and reaped here), keeps what their finished tasks
 * reported (manager_salvage) and exits 130/143. The vm backend's single job runs in this process
 * instead (its domain is named after the pid that runs it). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "fetch.h"
#include "image.h"
#include "manager.h"
#include "recipe.h"

#define RUN_MAX_JOBS 10000
#define RUN_LINE_MAX (512u << 20) /* a job's raw data as one JSON line */

static void run_usage(FILE *f)
{
	fputs("usage: pyti run [OPTIONS] DIST... [-- ARGS...]\n"
	      "       pyti run [OPTIONS] -r FILE [-- ARGS...]\n\n"
	      "Fetch each DIST and its (test) dependencies, run the recipe's tasks in a throwaway sandbox\n"
	      "with no network, and report each task's raw data. DIST is a requirement (six, six==1.17.0),\n"
	      "a local sdist or wheel, or a source directory (., .., ./mypkg). Several DISTs (or -r) make\n"
	      "a batch: the jobs run side by side (--jobs), one line each as it ends, then a summary.\n"
	      "ARGS after -- go to the test runner ({posargs} of the recipe: pytest's -k NAME, -x …).\n\n"
	      "options:\n"
	      "  -b, --backend ns|vm     sandbox backend (default ns: Linux namespaces; vm: libvirt/QEMU)\n"
	      "  -s, --suite SUITE       guest image (default bookworm; see `pyti image list`)\n"
	      "      --recipe FILE|NAME  INI recipe (default: the built-in install/import/test recipe)\n"
	      "  -r, --requirement FILE  test each requirement of FILE (one a line, # comments), as pip -r\n"
	      "  -j, --jobs N            jobs at a time in a batch (default: the number of CPUs)\n"
	      "  -e, --env NAME=VALUE    set a variable for every task (repeatable)\n"
	      "      --refresh           re-resolve and re-download, whatever the fetch cache holds\n"
	      "      --json            print the job's raw data as JSON on stdout (a batch: {\"jobs\",\"summary\"})\n"
	      "      --junit FILE      also write the tasks as JUnit XML (one DIST)\n"
	      "      --keep            keep the job's I/O directory (job.json, wheels, src, out)\n"
	      "      --cold            vm: boot the guest instead of restoring its warm snapshot\n"
	      "      --connect URI     vm: libvirt URI (default qemu:///system)\n"
	      "  -v, --verbose         stream the tasks' output to stderr as it comes\n"
	      "  -q, --quiet           no progress on stderr\n"
	      "  -h, --help            this help\n\n"
	      "Ctrl-C (SIGINT) or SIGTERM ends the jobs' sandboxes, keeps the results of the tasks that\n"
	      "finished in STATE/runs/JOB and exits 130 (143).\n"
	      "exit status: 0 every task passed, 1 a task failed, 2 usage or configuration error,\n"
	      "3 infrastructure error (could not fetch, sandbox could not start). A batch: 0 when every\n"
	      "job passed (or had no tests), 3 when one was an infrastructure error, else 1.\n",
	      f);
}

/* ---- one job ---- */

struct job {
	char *dist;   /* as the manager gets it ("." is "./") */
	char *id;     /* job id, chosen here so that a killed job's directory is known */
	pid_t pid;    /* its process while it runs */
	int fd;       /* read end of its pipe, -1 when none */
	struct buf in; /* bytes of a line not yet complete */
	int efd;      /* read end of its stderr (its messages, relayed above the live lines), -1 when none */
	char eline[4096]; /* a stderr line not yet complete */
	size_t elen;
	json_t *result; /* its raw data or its error object, once it ended */
	int exit_status; /* what a single job's pyti exits with */
	char announced[65]; /* the last "results" digest its sandbox's agent sent */
	double t0, t1;
	bool running, done;
	char phase[16];
	char task[64]; /* the task running now ("" = none) */
	long long task_i, task_n;
	double task_t0, last_hb;
	uint64_t log_off;     /* bytes of the running task's log read */
	char partial[512];    /* its last line not yet ended */
	char last_line[256];  /* its last complete line (the live line) */
};

struct run {
	struct cli_ctx *ctx;
	struct manager_opts mo; /* the common part of every job's */
	struct job *jobs;
	size_t n, next, n_running, n_done;
	unsigned max_jobs;
	bool batch, quiet, verbose, tty;
	const char *junit;
	double t0;
	int live_lines; /* TTY: lines of the live block now on screen */
	int sig;        /* the signal that stops the run, 0 while it goes */
};

/* ---- progress ---- */

static int term_cols(void)
{
	struct winsize ws;
	if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

static void live_clear(struct run *r)
{
	if (r->live_lines > 0)
		fprintf(stderr, "\033[%dA\r\033[J", r->live_lines);
	r->live_lines = 0;
}

/* TTY: one line per running job (its task, elapsed time, last output line), below the messages. */
static void live_draw(struct run *r)
{
	if (!r->tty || r->quiet)
		return;
	live_clear(r);
	int cols = term_cols();
	double now = now_mono();
	for (size_t i = 0; i < r->n; i++) {
		struct job *j = &r->jobs[i];
		if (!j->running)
			continue;
		char line[1024];
		int k;
		if (j->task[0])
			k = snprintf(line, sizeof line, "pyti: [%6.1fs] %s: %s %lld/%lld %.0fs", now - r->t0, j->dist,
				     j->task, j->task_i, j->task_n, now - j->task_t0);
		else
			k = snprintf(line, sizeof line, "pyti: [%6.1fs] %s: %s", now - r->t0, j->dist,
				     j->phase[0] ? j->phase : "starting");
		if (k > 0 && (size_t)k < sizeof line && j->last_line[0])
			snprintf(line + k, sizeof line - (size_t)k, " | %s", j->last_line);
		/* everything shown is escaped already; cut to the terminal's width (bytes: good enough) */
		_cleanup_free_ char *safe = term_safe_dup(line, 0);
		fprintf(stderr, "%.*s\n", cols - 1, safe);
		r->live_lines++;
	}
	fflush(stderr);
}

/* A message line above the live block; msg is escaped here. */
static void say(struct run *r, const struct job *j, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(struct run *r, const struct job *j, const char *fmt, ...)
{
	if (r->quiet)
		return;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	_cleanup_free_ char *safe = term_safe_dup(line, 0);
	live_clear(r);
	if (r->batch && j)
		fprintf(stderr, "pyti: [%6.1fs] %s: %s\n", now_mono() - r->t0, j->dist, safe);
	else
		fprintf(stderr, "pyti: [%6.1fs] %s\n", now_mono() - r->t0, safe);
	live_draw(r);
}

static bool task_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 60 || s[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      strchr("._-", s[i])))
			return false;
	return true;
}

/* The running task's new output, from out/logs/TASK.log of its I/O directory (ns: the sandbox
 * writes it there as it goes; read beneath the directory, no link followed, escaped): -v prints
 * its lines, the live line shows the last one. */
static void tail_log(struct run *r, struct job *j)
{
	if (!j->running || !j->task[0] || (!r->verbose && !r->tty) || r->quiet)
		return;
	_cleanup_free_ char *io = xasprintf("%s/jobs/%s", r->mo.state_dir, j->id);
	_cleanup_free_ char *rel = xasprintf("out/logs/%s.log", j->task);
	_cleanup_close_ int iofd = safe_opendir_path(io, NULL);
	_cleanup_close_ int fd = iofd < 0 ? -1 : safe_open_beneath(iofd, rel, 0, NULL);
	if (fd < 0)
		return;
	char b[16384];
	for (int rounds = 0; rounds < 8; rounds++) {
		ssize_t n = pread(fd, b, sizeof b, (off_t)j->log_off);
		if (n <= 0)
			break;
		j->log_off += (uint64_t)n;
		for (ssize_t i = 0; i < n; i++) {
			size_t pl = strlen(j->partial);
			if (b[i] != '\n') {
				if (pl + 1 < sizeof j->partial) {
					j->partial[pl] = b[i];
					j->partial[pl + 1] = '\0';
				}
				continue;
			}
			if (r->verbose) {
				live_clear(r);
				_cleanup_free_ char *safe = term_safe_dup(j->partial, 0);
				fprintf(stderr, "pyti: %s%s%s| %s\n", r->batch ? j->dist : "", r->batch ? " " : "", j->task,
					safe);
			}
			_cleanup_free_ char *safe = term_safe_dup(j->partial, 0);
			snprintf(j->last_line, sizeof j->last_line, "%s", safe);
			j->partial[0] = '\0';
		}
	}
	if (r->verbose)
		live_draw(r);
}

/* One progress event of a job: phase, and an agent event or NULL (manager_opts.on_progress). */
static void job_event(struct run *r, struct job *j, const char *phase, const json_t *ev)
{
	if (!ev) {
		snprintf(j->phase, sizeof j->phase, "%.*s", (int)strcspn(phase, ":"), phase);
		say(r, j, "%s", phase);
		return;
	}
	/* task names and statuses come from the agent, inside the sandbox: escaped by say() */
	const char *e = pj_str(ev, "event", "");
	const char *task = pj_str(ev, "task", "?"), *status = pj_str(ev, "status", "?");
	if (strcmp(phase, "fetch") == 0) { /* the fetch sandbox's own steps: pip wheel, pip download */
		if (strcmp(e, "task_start") == 0)
			say(r, j, "fetch: %s …", task);
		else if (strcmp(e, "task_end") == 0)
			say(r, j, "fetch: %s %s (%.2fs)", task, status, pj_num(ev, "wall_s", 0));
		return;
	}
	if (strcmp(e, "results") == 0) {
		const char *sha = pj_str(ev, "sha256", "");
		if (strlen(sha) == 64)
			memcpy(j->announced, sha, 65);
	} else if (strcmp(e, "task_start") == 0) {
		snprintf(j->task, sizeof j->task, "%s", task_name_ok(task) ? task : "?");
		j->task_i = pj_int(ev, "i", 0);
		j->task_n = pj_int(ev, "n", 0);
		j->task_t0 = now_mono();
		j->log_off = 0;
		j->partial[0] = j->last_line[0] = '\0';
		say(r, j, "task %lld/%lld %s …", j->task_i, j->task_n, task);
	} else if (strcmp(e, "task_end") == 0) {
		if (strcmp(j->task, task) == 0)
			tail_log(r, j); /* its last lines, before it is gone from the live line */
		const char *fc = pj_str(ev, "failure_class", NULL);
		say(r, j, "task %s %s%s%s (%.2fs)", task, status, fc ? " " : "", fc ? fc : "", pj_num(ev, "wall_s", 0));
		j->task[0] = j->last_line[0] = '\0';
	} else if (strcmp(e, "heartbeat") == 0 && !r->tty && !r->verbose && now_mono() - j->last_hb >= 60) {
		/* plain lines (a log file, CI): a sign of life a minute apart, not every heartbeat */
		j->last_hb = now_mono();
		say(r, j, "task %s still running (%lld bytes of output)", task, pj_int(ev, "output_bytes", 0));
	}
}

/* ---- where a finished job goes ---- */

/* The one place a finished job's results are handled: j->result is its raw data (manager_run's
 * results) or its error object, and the verdict is manager_verdict's. A store records the job
 * here (one call), before the line that says it ended. */
static void run_job_done(struct run *r, struct job *j)
{
	j->done = true;
	j->running = false;
	j->t1 = now_mono();
	r->n_done++;
	const char *verdict = manager_verdict(j->result);
	if (!r->batch)
		return; /* the report says it all */
	json_object_set_new(j->result, "verdict", json_string(verdict));
	if (!json_object_get(j->result, "dist"))
		json_object_set_new(j->result, "dist", json_string(j->dist));
	char tests[160] = "";
	report_tests_summary(tests, sizeof tests, j->result);
	const char *fc = pj_str(j->result, "failure_class", NULL);
	const char *msg = pj_str(j->result, "error", NULL);
	say(r, j, "done (%zu/%zu): %s%s%s%s%s in %.1fs%s%.*s", r->n_done, r->n, verdict, fc ? " " : "", fc ? fc : "",
	    *tests ? ", " : "", tests, j->t1 - j->t0, msg ? ": " : "", msg ? (int)strcspn(msg, "\n") : 0,
	    msg ? msg : "");
	if (json_object_get(j->result, "job_dir"))
		say(r, j, "job directory kept: %s", pj_str(j->result, "job_dir", ""));
}

/* ---- the job's process ---- */

static int write_all(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

static void send_line(int fd, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	if (s) {
		size_t n = strlen(s);
		s[n] = '\n';
		write_all(fd, s, n + 1); /* a reader that is gone: SIGPIPE ends this process, as it should */
		free(s);
	}
}

static void child_progress(void *arg, const char *phase, const json_t *ev)
{
	int fd = *(int *)arg;
	_cleanup_json_ json_t *o = json_pack("{s:s, s:O?}", "p", phase, "e", ev);
	if (o)
		send_line(fd, o);
}

/* The job, in this process: the results as manager_run made them, or the error object. */
static json_t *job_run_here(struct run *r, struct job *j, void (*cb)(void *, const char *, const json_t *),
			    void *arg, int *exit_status)
{
	struct manager_opts mo = r->mo;
	mo.dist = j->dist;
	mo.job_id = j->id;
	mo.on_progress = cb;
	mo.arg = arg;
	struct pyti_err err = {0};
	json_t *res = NULL;
	if (manager_run(&mo, &res, &err) < 0) {
		if (!r->batch) /* one job: this is its error (a batch's are in its lines) */
			cli_print_error(&err);
		*exit_status = err.status ? (int)err.status : PYTI_EXIT_INFRA;
		return cli_error_json(&err);
	}
	*exit_status = strcmp(pj_str(res, "status", ""), "passed") == 0 ? PYTI_EXIT_OK : PYTI_EXIT_FAILED;
	return res;
}

static void job_child(struct run *r, struct job *j, int wfd, pid_t parent)
{
	/* a process group of its own (the terminal's Ctrl-C is the parent's to handle), and gone
	 * with the parent */
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (getppid() != parent)
		_exit(PYTI_EXIT_INFRA);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	int st = 0;
	_cleanup_json_ json_t *res = job_run_here(r, j, child_progress, &wfd, &st);
	_cleanup_json_ json_t *o = json_pack("{s:O, s:i}", "result", res, "exit_status", st);
	send_line(wfd, o);
	fflush(stderr);
	_exit(0);
}

static void in_progress_here(void *arg, const char *phase, const json_t *ev);

struct here_arg {
	struct run *r;
	struct job *j;
};

static void in_progress_here(void *arg, const char *phase, const json_t *ev)
{
	struct here_arg *h = arg;
	job_event(h->r, h->j, phase, ev);
}

/* The job's process's own messages (pyti_log, its error): a line each, escaped where they were
 * made; relayed here so that they never land inside the live lines, and in a batch say whose. */
static void job_relay_line(struct run *r, struct job *j)
{
	j->eline[j->elen] = '\0';
	_cleanup_free_ char *safe = term_safe_dup(j->eline, 0);
	j->elen = 0;
	live_clear(r);
	if (r->batch && strncmp(safe, "pyti: ", 6) == 0)
		fprintf(stderr, "pyti: %s: %s\n", j->dist, safe + 6);
	else
		fprintf(stderr, "%s\n", safe);
	live_draw(r);
}

/* What its stderr has now; at_end: also the last line without its newline, then closed (not
 * waiting for EOF: a detached helper it started may hold the pipe). */
static void job_read_err(struct run *r, struct job *j, bool at_end)
{
	if (j->efd < 0)
		return;
	char b[8192];
	ssize_t n;
	while ((n = read(j->efd, b, sizeof b)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (b[i] == '\n') {
				job_relay_line(r, j);
				continue;
			}
			if (j->elen < sizeof j->eline - 1)
				j->eline[j->elen++] = b[i];
		}
		if (!at_end)
			break;
	}
	if (n == 0 || at_end) {
		if (j->elen)
			job_relay_line(r, j);
		close(j->efd);
		j->efd = -1;
	}
}

static int job_spawn(struct run *r, struct job *j)
{
	int p[2], e[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(e, O_CLOEXEC | O_NONBLOCK) < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		close(e[0]);
		close(e[1]);
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		close(e[0]);
		int fl = fcntl(e[1], F_GETFL);
		fcntl(e[1], F_SETFL, fl & ~O_NONBLOCK);
		dup2(e[1], 2); /* dup2 clears FD_CLOEXEC: what it runs writes here too */
		close(e[1]);
		job_child(r, j, p[1], parent);
	}
	close(p[1]);
	close(e[1]);
	j->pid = pid;
	j->fd = p[0];
	j->efd = e[0];
	j->running = true;
	j->t0 = now_mono();
	r->n_running++;
	return 0;
}

/* One complete line of a job's pipe. */
static void job_line(struct run *r, struct job *j, const char *line, size_t n)
{
	_cleanup_json_ json_t *o = pj_loads(line, n, NULL);
	if (!json_is_object(o))
		return;
	json_t *res = json_object_get(o, "result");
	if (res) {
		json_decref(j->result);
		j->result = json_incref(res);
		j->exit_status = (int)pj_int(o, "exit_status", PYTI_EXIT_INFRA);
		return;
	}
	json_t *ev = json_object_get(o, "e");
	job_event(r, j, pj_str(o, "p", ""), json_is_object(ev) ? ev : NULL);
}

/* Read what the job's process wrote; at its end, reap it and hand the job on. */
static void job_read(struct run *r, struct job *j)
{
	char b[65536];
	ssize_t n = read(j->fd, b, sizeof b);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n > 0) {
		if (buf_append(&j->in, b, (size_t)n) < 0 || j->in.truncated) {
			buf_reset(&j->in); /* a line past RUN_LINE_MAX: dropped (the job ends without results) */
			return;
		}
		size_t start = 0;
		for (size_t i = j->in.len - (size_t)n; i < j->in.len; i++) {
			if (j->in.data[i] != '\n')
				continue;
			job_line(r, j, j->in.data + start, i - start);
			start = i + 1;
		}
		if (start) {
			memmove(j->in.data, j->in.data + start, j->in.len - start);
			j->in.len -= start;
		}
		return;
	}
	close(j->fd);
	j->fd = -1;
	buf_free(&j->in);
	int status = 0;
	while (waitpid(j->pid, &status, 0) < 0 && errno == EINTR)
		;
	j->pid = 0;
	r->n_running--;
	job_read_err(r, j, true);
	if (!j->result) {
		struct pyti_err e = {0};
		pyti_err_class(&e, PYTI_FC_CRASH, "%s: the job's process ended without results (%s %d)", j->dist,
			       WIFSIGNALED(status) ? "signal" : "exit status",
			       WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
		if (!r->batch)
			cli_print_error(&e);
		j->result = cli_error_json(&e);
		j->exit_status = PYTI_EXIT_INFRA;
	}
	run_job_done(r, j);
}

/* After the jobs' processes were killed: end and reap everything they left behind (this process
 * is their subreaper; a sandbox's init dies with its manager, PR_SET_PDEATHSIG, and its pid
 * namespace with it), for at most a few seconds. */
static void reap_orphans(void)
{
	pid_t self = getpid();
	for (int round = 0; round < 250; round++) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD)
			return;
		/* children still alive: reparented orphans (slirp4netns, a task that outlived its
		 * sandbox's manager). Our own descendants, so ending them is ours to do. */
		DIR *d = opendir("/proc");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			if (e->d_name[0] < '1' || e->d_name[0] > '9')
				continue;
			_cleanup_free_ char *p = xasprintf("/proc/%s/stat", e->d_name);
			_cleanup_buf_ struct buf b = BUF_INIT(4096);
			if (read_file(p, &b, NULL) < 0 || !b.data)
				continue;
			const char *rp = strrchr(b.data, ')');
			int ppid = 0;
			char state;
			if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == self)
				kill((pid_t)atoi(e->d_name), SIGKILL);
		}
		if (d)
			closedir(d);
		usleep(20000);
	}
}

/* SIGINT/SIGTERM: stop every running job, keep what its finished tasks reported, say so. */
static void run_interrupt(struct run *r)
{
	const char *name = r->sig == SIGINT ? "SIGINT" : "SIGTERM";
	live_clear(r);
	for (size_t i = 0; i < r->n; i++)
		if (r->jobs[i].running && r->jobs[i].pid > 0)
			kill(r->jobs[i].pid, SIGKILL);
	for (size_t i = 0; i < r->n; i++) {
		struct job *j = &r->jobs[i];
		if (!j->running || j->pid <= 0)
			continue;
		/* what it sent before it died (its announced results digest) */
		while (j->fd >= 0) {
			char b[65536];
			ssize_t n = read(j->fd, b, sizeof b);
			if (n <= 0)
				break;
			buf_append(&j->in, b, (size_t)n);
			size_t start = 0;
			for (size_t k = 0; k < j->in.len; k++)
				if (j->in.data[k] == '\n') {
					job_line(r, j, j->in.data + start, k - start);
					start = k + 1;
				}
			memmove(j->in.data, j->in.data + start, j->in.len - start);
			j->in.len -= start;
		}
		while (waitpid(j->pid, NULL, 0) < 0 && errno == EINTR)
			;
		j->pid = 0;
		job_read_err(r, j, true);
	}
	reap_orphans();
	size_t stopped = 0;
	for (size_t i = 0; i < r->n; i++) {
		struct job *j = &r->jobs[i];
		if (!j->running)
			continue;
		stopped++;
		j->running = false;
		if (j->fd >= 0)
			close(j->fd);
		j->fd = -1;
		struct pyti_err err = {0};
		json_t *partial = NULL;
		if (manager_salvage(r->mo.state_dir, j->id, j->announced[0] ? j->announced : NULL, r->mo.keep, &partial,
				    &err) < 0) {
			_cleanup_free_ char *msg = term_safe_dup(pyti_err_str(&err), 0);
			fprintf(stderr, "pyti: %s: could not keep its results: %s\n", j->dist, msg);
		}
		size_t n_done = 0;
		size_t k;
		json_t *t;
		json_array_foreach(json_object_get(partial, "tasks"), k, t)
			n_done += strcmp(pj_str(t, "status", ""), "passed") == 0 || strcmp(pj_str(t, "status", ""), "failed") == 0;
		_cleanup_free_ char *dist = term_safe_dup(j->dist, 0);
		if (partial)
			fprintf(stderr, "pyti: %s: stopped job %s; its sandbox and processes are ended; the results of its "
					"%zu finished task%s are in %s\n",
				dist, j->id, n_done, n_done == 1 ? "" : "s", pj_str(partial, "logs", "?"));
		else
			fprintf(stderr, "pyti: %s: stopped job %s; its sandbox and processes are ended; no task had "
					"finished\n",
				dist, j->id);
		if (r->mo.keep)
			fprintf(stderr, "pyti: %s: job directory kept: %s/jobs/%s\n", dist, r->mo.state_dir, j->id);
		struct pyti_err e = {0};
		pyti_err_set(&e, 0, "interrupted by %s", name);
		json_decref(j->result);
		j->result = cli_error_json(&e);
		json_object_set_new(j->result, "exit_status", json_integer(128 + r->sig));
		if (partial)
			json_object_set_new(j->result, "partial", partial);
	}
	/* the fetch sandboxes' scratch directories of the jobs stopped while fetching (no live owner) */
	_cleanup_free_ char *tmp = xasprintf("%s/tmp", r->mo.state_dir);
	owner_sweep(tmp);
	fprintf(stderr, "pyti: interrupted by %s: %zu running job%s stopped%s; exit status %d\n", name, stopped,
		stopped == 1 ? "" : "s", r->mo.keep ? "" : ", their job directories removed", 128 + r->sig);
}

/* ---- the batch ---- */

static void print_json(const json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
}

static const char *const verdicts[] = {"passed", "test-failed", "build-failed", "no-tests", "infra"};

static int batch_report(struct run *r)
{
	json_t *summary = json_object();
	for (size_t i = 0; i < ARRAY_SIZE(verdicts); i++)
		json_object_set_new(summary, verdicts[i], json_integer(0));
	int rc = PYTI_EXIT_OK;
	for (size_t i = 0; i < r->n; i++) {
		const json_t *res = r->jobs[i].result;
		if (!res)
			continue;
		const char *v = pj_str(res, "verdict", manager_verdict(res));
		json_object_set_new(summary, v, json_integer(pj_int(summary, v, 0) + 1));
		int e = manager_verdict_exit(v);
		if (e == PYTI_EXIT_INFRA || (e == PYTI_EXIT_FAILED && rc == PYTI_EXIT_OK))
			rc = e;
	}
	if (r->ctx->json) {
		json_t *jobs = json_array();
		for (size_t i = 0; i < r->n; i++)
			if (r->jobs[i].result)
				json_array_append(jobs, r->jobs[i].result);
		_cleanup_json_ json_t *o = json_pack("{s:o, s:O, s:f}", "jobs", jobs, "summary", summary, "wall_s",
						     now_mono() - r->t0);
		if (r->sig)
			json_object_set_new(o, "interrupted", json_string(r->sig == SIGINT ? "SIGINT" : "SIGTERM"));
		print_json(o);
	} else {
		printf("%-32s %-13s %-44s %8s  %s\n", "DIST", "VERDICT", "TESTS", "TIME", "LOGS");
		for (size_t i = 0; i < r->n; i++) {
			struct job *j = &r->jobs[i];
			if (!j->result)
				continue;
			char tests[160] = "";
			report_tests_summary(tests, sizeof tests, j->result);
			const char *fc = pj_str(j->result, "failure_class", NULL);
			if (!*tests && fc)
				snprintf(tests, sizeof tests, "error (%s)", fc);
			_cleanup_free_ char *dist = term_safe_dup(j->dist, 0), *t = term_safe_dup(tests, 0),
					    *logs = term_safe_dup(pj_str(j->result, "logs", "-"), 0);
			printf("%-32.64s %-13s %-44s %7.1fs  %s\n", dist, pj_str(j->result, "verdict", "?"), t,
			       j->t1 > j->t0 ? j->t1 - j->t0 : 0, logs);
		}
		printf("\nsummary:");
		bool first = true;
		for (size_t i = 0; i < ARRAY_SIZE(verdicts); i++) {
			long long c = pj_int(summary, verdicts[i], 0);
			if (c) {
				printf("%s %lld %s", first ? "" : ",", c, verdicts[i]);
				first = false;
			}
		}
		printf("%s (%zu job%s in %.1fs)\n", first ? " nothing ran" : "", r->n_done, r->n_done == 1 ? "" : "s",
		       now_mono() - r->t0);
	}
	json_decref(summary);
	fflush(stdout);
	return rc;
}

/* Run every job, r->max_jobs at a time; returns when all ended or a signal came. */
static void run_loop(struct run *r)
{
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGTERM);
	_cleanup_close_ int sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
	double last_tick = 0;
	while (r->n_done < r->n) {
		while (r->n_running < r->max_jobs && r->next < r->n) {
			struct job *j = &r->jobs[r->next++];
			if (job_spawn(r, j) < 0) {
				struct pyti_err e = {0};
				pyti_err_set(&e, errno, "%s: cannot start its process", j->dist);
				j->result = cli_error_json(&e);
				j->exit_status = PYTI_EXIT_INFRA;
				run_job_done(r, j);
			}
		}
		if (r->n_done >= r->n)
			break;
		struct pollfd pfd[513]; /* max_jobs <= 256, two pipes each */
		struct job *who[513];
		bool is_err[513];
		nfds_t np = 0;
		pfd[np] = (struct pollfd){.fd = sfd, .events = POLLIN};
		who[np++] = NULL;
		for (size_t i = 0; i < r->n; i++) {
			if (r->jobs[i].running && r->jobs[i].efd >= 0) {
				pfd[np] = (struct pollfd){.fd = r->jobs[i].efd, .events = POLLIN};
				is_err[np] = true;
				who[np++] = &r->jobs[i];
			}
			if (r->jobs[i].running && r->jobs[i].fd >= 0) {
				pfd[np] = (struct pollfd){.fd = r->jobs[i].fd, .events = POLLIN};
				is_err[np] = false;
				who[np++] = &r->jobs[i];
			}
		}
		int pr = poll(pfd, np, (r->tty || r->verbose) ? 250 : 1000);
		if (pr < 0 && errno != EINTR)
			break;
		if (pfd[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
				r->sig = (int)si.ssi_signo;
				return;
			}
		}
		for (nfds_t i = 1; i < np; i++) {
			if (!pfd[i].revents || !who[i]->running)
				continue;
			if (is_err[i])
				job_read_err(r, who[i], false);
			else if (who[i]->fd == pfd[i].fd)
				job_read(r, who[i]);
		}
		double now = now_mono();
		if (now - last_tick >= 0.25) {
			last_tick = now;
			for (size_t i = 0; i < r->n; i++)
				tail_log(r, &r->jobs[i]);
			live_draw(r);
		}
	}
	live_clear(r);
}

/* ---- arguments ---- */

/* -r FILE: one requirement a line, as pip reads it: blank lines and # comments skipped, and
 * "-r OTHER" (--requirement) includes OTHER, relative to the including file's directory. */
static int read_requirements(const char *path, int depth, char ***out, size_t *n, struct pyti_err *err)
{
	if (depth > 8)
		return pyti_err_usage(err, "%s: requirement files include each other too deeply", path);
	_cleanup_buf_ struct buf b = BUF_INIT(16u << 20);
	if (read_file(path, &b, err) < 0) {
		pyti_err_prefix(err, "-r %s", path);
		err->status = PYTI_EXIT_USAGE; /* the user's file */
		return -1;
	}
	int lineno = 0;
	char *line = b.data, *next;
	for (; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		char *hash = strchr(line, '#');
		if (hash && (hash == line || hash[-1] == ' ' || hash[-1] == '\t'))
			*hash = '\0';
		while (*line == ' ' || *line == '\t')
			line++;
		size_t l = strlen(line);
		while (l && (line[l - 1] == ' ' || line[l - 1] == '\t' || line[l - 1] == '\r'))
			line[--l] = '\0';
		if (!l)
			continue;
		const char *inc = NULL;
		if (strncmp(line, "-r ", 3) == 0)
			inc = line + 3;
		else if (strncmp(line, "--requirement ", 14) == 0)
			inc = line + 14;
		else if (strncmp(line, "--requirement=", 14) == 0)
			inc = line + 14;
		if (inc) {
			while (*inc == ' ' || *inc == '\t')
				inc++;
			const char *slash = strrchr(path, '/');
			_cleanup_free_ char *p = inc[0] == '/' || !slash ? xstrdup(inc)
								  : xasprintf("%.*s/%s", (int)(slash - path), path, inc);
			if (read_requirements(p, depth + 1, out, n, err) < 0)
				return pyti_err_prefix(err, "%s:%d", path, lineno);
			continue;
		}
		if (line[0] == '-')
			return pyti_err_usage(err, "%s:%d: '%s': pip options are not taken here (one requirement a line)",
					      path, lineno, line);
		if (*n >= RUN_MAX_JOBS)
			return pyti_err_usage(err, "%s:%d: more than %d requirements", path, lineno, RUN_MAX_JOBS);
		*out = xrealloc(*out, (*n + 2) * sizeof **out);
		(*out)[(*n)++] = xstrdup(line);
		(*out)[*n] = NULL;
	}
	return 0;
}

/* "." and ".." are directories (pip's "Directory '.' is not installable" is not what a user means);
 * a bare name that is also a directory here is the index's project, and pyti says so. */
static char *resolve_dist(const char *d, bool quiet)
{
	if (strcmp(d, ".") == 0 || strcmp(d, "..") == 0)
		return xasprintf("%s/", d);
	struct stat st;
	if (!quiet && !strchr(d, '/') && !fetch_dist_is_local(d, &st) && stat(d, &st) == 0 && S_ISDIR(st.st_mode)) {
		_cleanup_free_ char *s = term_safe_dup(d, 0);
		fprintf(stderr,
			"pyti: note: '%s' is taken as a requirement (the package index's project); to test the "
			"directory of that name here, run `pyti run ./%s`\n",
			s, s);
	}
	return xstrdup(d);
}

/* --junit FILE is checked before any work: a file that can be written, in a directory that is one. */
static int check_output_path(const char *opt, const char *path)
{
	struct stat st;
	if (!*path)
		return cli_usage("run: %s: an empty file name", opt);
	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return cli_usage("run: %s %s: is a directory", opt, path);
		if (access(path, W_OK) < 0)
			return cli_usage("run: %s %s: cannot write it: %s", opt, path, strerror(errno));
		return 0;
	}
	if (errno != ENOENT)
		return cli_usage("run: %s %s: %s", opt, path, strerror(errno));
	_cleanup_free_ char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
	if (stat(d, &st) < 0 || !S_ISDIR(st.st_mode))
		return cli_usage("run: %s %s: no directory %s", opt, path, d);
	if (access(d, W_OK | X_OK) < 0)
		return cli_usage("run: %s %s: cannot write in %s: %s", opt, path, d, strerror(errno));
	return 0;
}

static bool env_name_ok(const char *s, size_t n)
{
	if (!n || n > 255 || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_'))
			return false;
	return true;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

int cmd_run(struct cli_ctx *ctx, int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_JUNIT, OPT_KEEP, OPT_COLD, OPT_CONNECT, OPT_RECIPE, OPT_REFRESH };
	static const struct option opts[] = {
		{"backend", required_argument, NULL, 'b'},  {"suite", required_argument, NULL, 's'},
		{"recipe", required_argument, NULL, OPT_RECIPE}, {"requirement", required_argument, NULL, 'r'},
		{"jobs", required_argument, NULL, 'j'},     {"env", required_argument, NULL, 'e'},
		{"refresh", no_argument, NULL, OPT_REFRESH}, {"json", no_argument, NULL, OPT_JSON},
		{"junit", required_argument, NULL, OPT_JUNIT}, {"keep", no_argument, NULL, OPT_KEEP},
		{"cold", no_argument, NULL, OPT_COLD},      {"connect", required_argument, NULL, OPT_CONNECT},
		{"verbose", no_argument, NULL, 'v'},        {"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},           {0},
	};
	struct run r = {.ctx = ctx, .t0 = now_mono(), .tty = ctx->tty, .verbose = ctx->verbose > 0};
	r.mo = (struct manager_opts){.state_dir = ctx->state_dir, .suite = "bookworm", .backend = "ns"};
	_cleanup_free_ char **reqfiles = NULL, **envs = NULL;
	size_t n_reqfiles = 0, n_envs = 0;
	const char *jobs_arg = NULL;

	/* ARGS after the first "--" are the test runner's, untouched by getopt */
	int nargs = argc;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--") == 0) {
			nargs = i;
			break;
		}
	int c;
	while ((c = cli_getopt("run", nargs, argv, "b:s:r:j:e:vqh", opts)) != -1) {
		switch (c) {
		case 'b':
			r.mo.backend = optarg;
			break;
		case 's':
			r.mo.suite = optarg;
			break;
		case OPT_RECIPE:
			r.mo.recipe_path = optarg;
			break;
		case 'r':
			reqfiles = xrealloc(reqfiles, (n_reqfiles + 1) * sizeof *reqfiles);
			reqfiles[n_reqfiles++] = optarg;
			break;
		case 'j':
			jobs_arg = optarg;
			break;
		case 'e': {
			const char *eq = strchr(optarg, '=');
			if (!eq || !env_name_ok(optarg, (size_t)(eq - optarg)))
				return cli_usage("run: --env '%s': NAME=VALUE, NAME of letters, digits and '_'", optarg);
			_cleanup_json_ json_t *utf8 = json_string(eq + 1);
			if (!utf8)
				return cli_usage("run: --env %.*s: the value is not UTF-8", (int)(eq - optarg), optarg);
			envs = xrealloc(envs, (n_envs + 2) * sizeof *envs);
			envs[n_envs++] = optarg;
			envs[n_envs] = NULL;
			break;
		}
		case OPT_REFRESH:
			r.mo.refresh = true;
			break;
		case OPT_JSON:
			ctx->json = true;
			break;
		case OPT_JUNIT:
			r.junit = optarg;
			break;
		case OPT_KEEP:
			r.mo.keep = true;
			break;
		case OPT_COLD:
			r.mo.cold = true;
			break;
		case OPT_CONNECT:
			r.mo.vm_uri = optarg;
			break;
		case 'v':
			r.verbose = true;
			break;
		case 'q':
			r.quiet = true;
			break;
		case 'h':
			run_usage(stdout);
			return 0;
		default:
			return PYTI_EXIT_USAGE;
		}
	}
	if (nargs < argc) {
		r.mo.posargs = (const char *const *)argv + nargs + 1;
		r.mo.n_posargs = (size_t)(argc - nargs - 1);
	}
	r.mo.env = (const char *const *)envs;

	/* every usage error comes before any work */
	if (strcmp(r.mo.backend, "ns") != 0 && strcmp(r.mo.backend, "vm") != 0) {
		const char *b[] = {"ns", "vm"};
		const char *near = cli_nearest(r.mo.backend, b, 2);
		return cli_usage("run: unknown backend '%s' (%s%s%sns or vm)", r.mo.backend, near ? "did you mean '" : "",
				 near ? near : "", near ? "'? " : "");
	}
	if (!image_suite_valid(r.mo.suite)) {
		const char *s[] = {"bookworm", "trixie"};
		const char *near = cli_nearest(r.mo.suite, s, 2);
		return cli_usage("run: pyti cannot build a '%s' image (%s%s%ssuites: bookworm, trixie)", r.mo.suite,
				 near ? "did you mean '" : "", near ? near : "", near ? "'? " : "");
	}
	r.max_jobs = 0;
	if (jobs_arg) {
		char *end;
		long v = strtol(jobs_arg, &end, 10);
		if (*end || v < 1 || v > 256)
			return cli_usage("run: --jobs '%s': a number from 1 to 256", jobs_arg);
		r.max_jobs = (unsigned)v;
	} else {
		long nc = sysconf(_SC_NPROCESSORS_ONLN);
		r.max_jobs = nc > 0 && nc < 256 ? (unsigned)nc : 1;
	}
	const char *jm = getenv("PYTI_JOB_MAX_S");
	if (jm && *jm) {
		char *end;
		r.mo.job_max_s = strtod(jm, &end);
		if (*end || !(r.mo.job_max_s > 0) || r.mo.job_max_s > 1e9)
			return cli_usage("PYTI_JOB_MAX_S must be a number of seconds above 0, not '%s'", jm);
	}
	char **dists = NULL;
	size_t n_dists = 0;
	for (int i = optind; i < nargs; i++) {
		if (n_dists >= RUN_MAX_JOBS)
			break;
		dists = xrealloc(dists, (n_dists + 2) * sizeof *dists);
		dists[n_dists++] = resolve_dist(argv[i], r.quiet);
		dists[n_dists] = NULL;
	}
	struct pyti_err err = {0};
	for (size_t i = 0; i < n_reqfiles; i++) {
		if (read_requirements(reqfiles[i], 0, &dists, &n_dists, &err) < 0) {
			strv_free(dists);
			return cli_fail(&err);
		}
	}
	if (!n_dists) {
		strv_free(dists);
		if (n_reqfiles)
			return cli_usage("run: no requirement in %s", reqfiles[0]);
		return cli_usage("run: a distribution is needed: `pyti run DIST` (try 'pyti run --help')");
	}
	r.batch = n_dists > 1;
	if (r.junit && r.batch) {
		strv_free(dists);
		return cli_usage("run: --junit FILE takes one distribution (a batch's jobs keep their JUnit files in "
				 "STATE/runs/JOB/)");
	}
	if (r.junit && check_output_path("--junit", r.junit) != 0) {
		strv_free(dists);
		return PYTI_EXIT_USAGE;
	}
	/* the recipe and the image once, before any job: a bad one is exit 2 at once, with file:line */
	{
		_cleanup_recipe_ struct recipe *rec = NULL;
		_cleanup_(image_info_free) struct image_info img = {0};
		if (recipe_load(r.mo.recipe_path ? r.mo.recipe_path : "default", &rec, &err) < 0 ||
		    image_find(r.mo.state_dir, r.mo.suite, &img, &err) < 0) {
			strv_free(dists);
			return cli_fail(&err);
		}
	}
	_cleanup_free_ char *agent = cli_find_helper("pyti-agent");
	r.mo.agent_path = agent;
	if (r.verbose)
		pyti_log_level = pyti_log_level < PYTI_LOG_INFO ? PYTI_LOG_INFO : pyti_log_level;

	r.n = n_dists;
	r.jobs = xcalloc(n_dists, sizeof *r.jobs);
	for (size_t i = 0; i < n_dists; i++) {
		r.jobs[i].dist = dists[i];
		r.jobs[i].id = manager_new_job_id();
		r.jobs[i].fd = -1;
		r.jobs[i].efd = -1;
		buf_init(&r.jobs[i].in, RUN_LINE_MAX);
	}
	free(dists);
	if (r.max_jobs > r.n)
		r.max_jobs = (unsigned)r.n;

	if (!r.batch && strcmp(r.mo.backend, "vm") == 0) {
		/* here: the vm backend names its domain after this process (and cleans up after it) */
		struct job *j = &r.jobs[0];
		struct here_arg h = {&r, j};
		j->running = true;
		j->t0 = now_mono();
		j->result = job_run_here(&r, j, in_progress_here, &h, &j->exit_status);
		run_job_done(&r, j);
	} else {
		sigset_t ss;
		sigemptyset(&ss);
		sigaddset(&ss, SIGINT);
		sigaddset(&ss, SIGTERM);
		sigprocmask(SIG_BLOCK, &ss, NULL);
		signal(SIGPIPE, SIG_IGN);
		/* orphans of the jobs (a sandbox whose manager died) come here to be ended and reaped */
		prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
		run_loop(&r);
		if (r.sig)
			run_interrupt(&r);
	}

	int rc;
	if (r.batch) {
		rc = batch_report(&r);
	} else {
		struct job *j = &r.jobs[0];
		rc = j->exit_status;
		json_t *res = j->result;
		bool is_err = !res || strcmp(pj_str(res, "status", ""), "error") == 0;
		if (!is_err && r.junit && report_junit_write(res, r.junit, &err) < 0) {
			rc = cli_fail(&err);
		} else if (ctx->json) {
			if (res)
				print_json(res);
		} else if (!is_err) {
			json_object_set_new(res, "command_s", json_real(now_mono() - r.t0));
			report_table(stdout, res, true);
			json_object_del(res, "command_s");
		}
		if (!is_err && json_object_get(res, "job_dir")) {
			_cleanup_free_ char *d = term_safe_dup(pj_str(res, "job_dir", ""), 0);
			fprintf(stderr, "pyti: job directory kept: %s\n", d);
		}
		fflush(stdout);
	}
	if (r.sig)
		rc = 128 + r.sig;
	for (size_t i = 0; i < r.n; i++) {
		free(r.jobs[i].dist);
		free(r.jobs[i].id);
		json_decref(r.jobs[i].result);
		buf_free(&r.jobs[i].in);
		if (r.jobs[i].fd >= 0)
			close(r.jobs[i].fd);
		if (r.jobs[i].efd >= 0)
			close(r.jobs[i].efd);
	}
	free(r.jobs);
	return rc;
}

/* pyti run's jobs, each in a child process of its own running manager_run, which sends its
 * progress and, at its end, its raw data as JSON lines on a pipe (its stderr is relayed line by
 * line). This process renders and owns the signals (see run_interrupt). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run.h"

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
json_t *run_job_here(struct run *r, struct job *j, void (*cb)(void *, const char *, const json_t *), void *arg,
		     int *exit_status)
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
	_cleanup_json_ json_t *res = run_job_here(r, j, child_progress, &wfd, &st);
	_cleanup_json_ json_t *o = json_pack("{s:O, s:i}", "result", res, "exit_status", st);
	send_line(wfd, o);
	fflush(stderr);
	_exit(0);
}

void run_in_progress_here(void *arg, const char *phase, const json_t *ev)
{
	struct here_arg *h = arg;
	run_job_event(h->r, h->j, phase, ev);
}

/* The job's process's own messages (pyti_log, its error): a line each, escaped where they were
 * made; relayed here so that they never land inside the live lines, and in a batch say whose. */
static void job_relay_line(struct run *r, struct job *j)
{
	j->eline[j->elen] = '\0';
	_cleanup_free_ char *safe = term_safe_dup(j->eline, 0);
	j->elen = 0;
	run_live_clear(r);
	if (r->batch && strncmp(safe, "pyti: ", 6) == 0)
		fprintf(stderr, "pyti: %s: %s\n", j->dist, safe + 6);
	else
		fprintf(stderr, "%s\n", safe);
	run_live_draw(r);
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
	run_job_event(r, j, pj_str(o, "p", ""), json_is_object(ev) ? ev : NULL);
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
void run_interrupt(struct run *r)
{
	const char *name = r->sig == SIGINT ? "SIGINT" : "SIGTERM";
	run_live_clear(r);
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
			n_done += strcmp(pj_str(t, "status", ""), "passed") == 0 ||
				  strcmp(pj_str(t, "status", ""), "failed") == 0;
		_cleanup_free_ char *dist = term_safe_dup(j->dist, 0);
		if (partial)
			fprintf(stderr,
				"pyti: %s: stopped job %s; its sandbox and processes are ended; the results of its "
				"%zu finished task%s are in %s\n",
				dist, j->id, n_done, n_done == 1 ? "" : "s", pj_str(partial, "logs", "?"));
		else
			fprintf(stderr,
				"pyti: %s: stopped job %s; its sandbox and processes are ended; no task had "
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

void run_loop(struct run *r)
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
				run_tail_log(r, &r->jobs[i]);
			run_live_draw(r);
		}
	}
	run_live_clear(r);
}

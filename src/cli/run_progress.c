/* pyti run's progress on stderr: plain lines with the elapsed time, and on a terminal one live
 * line per running job below them (its task, elapsed time, last output line), redrawn in place.
 * Everything shown that came from a sandbox is escaped here. */
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

static int term_cols(void)
{
	struct winsize ws;
	if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

void run_live_clear(struct run *r)
{
	if (r->live_lines > 0)
		fprintf(stderr, "\033[%dA\r\033[J", r->live_lines);
	r->live_lines = 0;
}

/* TTY: one line per running job (its task, elapsed time, last output line), below the messages. */
void run_live_draw(struct run *r)
{
	if (!r->tty || r->quiet)
		return;
	run_live_clear(r);
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
void run_say(struct run *r, const struct job *j, const char *fmt, ...)
{
	if (r->quiet)
		return;
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	_cleanup_free_ char *safe = term_safe_dup(line, 0);
	run_live_clear(r);
	if (r->batch && j)
		fprintf(stderr, "pyti: [%6.1fs] %s: %s\n", now_mono() - r->t0, j->dist, safe);
	else
		fprintf(stderr, "pyti: [%6.1fs] %s\n", now_mono() - r->t0, safe);
	run_live_draw(r);
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
void run_tail_log(struct run *r, struct job *j)
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
				run_live_clear(r);
				_cleanup_free_ char *safe = term_safe_dup(j->partial, 0);
				fprintf(stderr, "pyti: %s%s%s| %s\n", r->batch ? j->dist : "", r->batch ? " " : "",
					j->task, safe);
			}
			_cleanup_free_ char *safe = term_safe_dup(j->partial, 0);
			snprintf(j->last_line, sizeof j->last_line, "%s", safe);
			j->partial[0] = '\0';
		}
	}
	if (r->verbose)
		run_live_draw(r);
}

/* One progress event of a job: phase, and an agent event or NULL (manager_opts.on_progress). */
void run_job_event(struct run *r, struct job *j, const char *phase, const json_t *ev)
{
	if (!ev) {
		snprintf(j->phase, sizeof j->phase, "%.*s", (int)strcspn(phase, ":"), phase);
		run_say(r, j, "%s", phase);
		return;
	}
	/* task names and statuses come from the agent, inside the sandbox: escaped by run_say() */
	const char *e = pj_str(ev, "event", "");
	const char *task = pj_str(ev, "task", "?"), *status = pj_str(ev, "status", "?");
	if (strcmp(phase, "fetch") == 0) { /* the fetch sandbox's own steps: pip wheel, pip download */
		if (strcmp(e, "task_start") == 0)
			run_say(r, j, "fetch: %s …", task);
		else if (strcmp(e, "task_end") == 0)
			run_say(r, j, "fetch: %s %s (%.2fs)", task, status, pj_num(ev, "wall_s", 0));
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
		run_say(r, j, "task %lld/%lld %s …", j->task_i, j->task_n, task);
	} else if (strcmp(e, "task_end") == 0) {
		if (strcmp(j->task, task) == 0)
			run_tail_log(r, j); /* its last lines, before it is gone from the live line */
		const char *fc = pj_str(ev, "failure_class", NULL);
		run_say(r, j, "task %s %s%s%s (%.2fs)", task, status, fc ? " " : "", fc ? fc : "",
			pj_num(ev, "wall_s", 0));
		j->task[0] = j->last_line[0] = '\0';
	} else if (strcmp(e, "heartbeat") == 0 && !r->tty && !r->verbose && now_mono() - j->last_hb >= 60) {
		/* plain lines (a log file, CI): a sign of life a minute apart, not every heartbeat */
		j->last_hb = now_mono();
		run_say(r, j, "task %s still running (%lld bytes of output)", task, pj_int(ev, "output_bytes", 0));
	}
}

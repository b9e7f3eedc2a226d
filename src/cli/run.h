/* pyti run's parts (internal to the cli): the jobs' processes (run_jobs.c), their progress on
 * stderr (run_progress.c), the command and its report (cmd_run.c). */
#ifndef PYTI_CLI_RUN_H
#define PYTI_CLI_RUN_H

#include "cli.h"
#include "manager.h"

#define RUN_MAX_JOBS 10000
#define RUN_LINE_MAX (512u << 20) /* a job's raw data as one JSON line */

struct job {
	char *dist;	  /* as the manager gets it ("." is "./") */
	char *id;	  /* job id, chosen here so that a killed job's directory is known */
	pid_t pid;	  /* its process while it runs */
	int fd;		  /* read end of its pipe, -1 when none */
	struct buf in;	  /* bytes of a line not yet complete */
	int efd;	  /* read end of its stderr (its messages, relayed above the live lines), -1 when none */
	char eline[4096]; /* a stderr line not yet complete */
	size_t elen;
	json_t *result;	    /* its raw data or its error object, once it ended */
	int exit_status;    /* what a single job's pyti exits with */
	char announced[65]; /* the last "results" digest its sandbox's agent sent */
	double t0, t1;
	bool running, done;
	char phase[16];
	char task[64]; /* the task running now ("" = none) */
	long long task_i, task_n;
	double task_t0, last_hb;
	uint64_t log_off;    /* bytes of the running task's log read */
	char partial[512];   /* its last line not yet ended */
	char last_line[256]; /* its last complete line (the live line) */
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
	int sig;	/* the signal that stops the run, 0 while it goes */
};

struct here_arg {
	struct run *r;
	struct job *j;
};

/* run_progress.c: the TTY's live lines (one per running job) and the message lines above them. */
void run_live_clear(struct run *r);
void run_live_draw(struct run *r);
/* A message line (escaped here), with the elapsed time and in a batch the job's DIST. */
void run_say(struct run *r, const struct job *j, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* -v and the live line: the running task's new output, from its log in the job's I/O directory. */
void run_tail_log(struct run *r, struct job *j);
/* One progress event of a job (manager_opts.on_progress: phase, an agent event or NULL). */
void run_job_event(struct run *r, struct job *j, const char *phase, const json_t *ev);

/* run_jobs.c */
/* The job in this process: its raw data, or its error object (then also printed for one job). */
json_t *run_job_here(struct run *r, struct job *j, void (*cb)(void *, const char *, const json_t *), void *arg,
		     int *exit_status);
void run_in_progress_here(void *arg, const char *phase, const json_t *ev); /* arg: struct here_arg */
/* Every job, r->max_jobs at a time, each in a child process; returns when all ended or r->sig came. */
void run_loop(struct run *r);
/* After r->sig: stop the running jobs, end what they left, keep their finished tasks, say so. */
void run_interrupt(struct run *r);

/* cmd_run.c: the one place a finished job is handled (see there). */
void run_job_done(struct run *r, struct job *j);

#endif

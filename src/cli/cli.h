/* cli: `pyti <command>`. Each command lives in cmd_<name>.c and is the only place that prints
 * errors for its work. Internal header of the cli module. */
#ifndef PYTI_CLI_H
#define PYTI_CLI_H

#include <getopt.h>

#include "core.h"

struct cli_ctx {
	const char *state_dir; /* resolved: --state-dir, $PYTI_STATE_DIR, $XDG_CACHE_HOME/pyti, ~/.cache/pyti */
	bool json;             /* --json where a command supports it */
	bool tty;              /* stderr is a terminal: show progress */
	int verbose;
	const char *store_url; /* --store URL (global option), or NULL: $PYTI_STORE, then STATE/pyti.db */
};

/* Set by main when the command line has --json (before a "--"): every error, usage errors
 * included, then also prints its error object on stdout (docs/contracts.md). */
extern bool cli_json_errors;

/* Print "pyti: error (CLASS): …" on stderr (escaped), nothing else. */
void cli_print_error(const struct pyti_err *err);
/* Print "pyti: error: …" (and with --json its object on stdout) and return the exit status the error asks for. */
int cli_fail(const struct pyti_err *err);
/* Print a usage error ("pyti: MESSAGE") and return PYTI_EXIT_USAGE. */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A JSON document on stdout as every --json prints it (indented, keys in order, a newline). */
void cli_print_json(const json_t *j);
/* s (NULL: "-") escaped for the terminal, padded to width: text from a sandbox, the store or a master. */
void cli_put_safe(const char *s, int width);
/* The error object of --json: {"status":"error","failure_class","error","exit_status"}. */
json_t *cli_error_json(const struct pyti_err *err);
/* The candidate nearest to word (edit distance at most 2, and less than its length), or NULL. */
const char *cli_nearest(const char *word, const char *const *cands, size_t n);
/* getopt_long for a command, with pyti's usage errors: returns an option, -1 at the end, or '?'
 * after printing "pyti: CMD: unknown option '--x' (did you mean '--y'?)" or "… needs a value"
 * (the caller returns PYTI_EXIT_USAGE). */
int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts, const struct option *longopts);
/* Path of a helper program shipped with pyti (e.g. "pyti-agent"): $PYTI_<NAME> env override,
 * then beside the pyti binary in a build tree, then the installed libexec dir. Caller frees. */
char *cli_find_helper(const char *name);
/* $PYTI_JOB_MAX_S, the wall-clock limit of a job whose tasks have no timeout, into *out (unset or
 * empty: left alone). 0, or PYTI_EXIT_USAGE after saying it is not a number of seconds above 0. */
int cli_job_max_s(double *out);

int cmd_run(struct cli_ctx *ctx, int argc, char **argv);
int cmd_runs(struct cli_ctx *ctx, int argc, char **argv);
int cmd_show(struct cli_ctx *ctx, int argc, char **argv);
int cmd_store(struct cli_ctx *ctx, int argc, char **argv);
int cmd_compare(struct cli_ctx *ctx, int argc, char **argv);
int cmd_rerun(struct cli_ctx *ctx, int argc, char **argv);

/* record.c: the local store (docs/contracts.md "Store"). The store's URL: opt, else --store, else
 * $PYTI_STORE, else STATE/pyti.db (caller frees); "off" turns recording off. */
struct store;
struct manager_opts;
char *cli_store_url(const struct cli_ctx *ctx, const char *opt);
int cli_store_open(const struct cli_ctx *ctx, const char *opt, struct store **out, struct pyti_err *err);
/* Record one job of this invocation's run (made on first use) as soon as its results are known:
 * results as manager_run gave them, or job_err when it failed — or, with job_err NULL, results may
 * be the error object (`pyti run --json`'s {"status": "error", …}); a "verdict" in results is kept.
 * A usage error is not a job and is not recorded. A store failure is a warning (once),
 * never the run's failure. Thread-safe; a forked child opens its own connection. */
void cli_record_job(struct cli_ctx *ctx, const struct manager_opts *mo, const json_t *results,
		    const struct pyti_err *job_err);
/* Make the run now (a batch: before forking workers, so that all jobs land in one run); -1 when
 * the store is off or failed (already warned). */
int cli_record_begin(struct cli_ctx *ctx, const struct manager_opts *mo);
const char *cli_record_run_id(void); /* NULL before the run exists */

int cmd_cache(struct cli_ctx *ctx, int argc, char **argv);
int cmd_image(struct cli_ctx *ctx, int argc, char **argv);
int cmd_disk(struct cli_ctx *ctx, int argc, char **argv);
int cmd_vm(struct cli_ctx *ctx, int argc, char **argv);
int cmd_worker(struct cli_ctx *ctx, int argc, char **argv);
int cmd_submit(struct cli_ctx *ctx, int argc, char **argv);
int cmd_status(struct cli_ctx *ctx, int argc, char **argv);
int cmd_results(struct cli_ctx *ctx, int argc, char **argv);
int cmd_cancel(struct cli_ctx *ctx, int argc, char **argv);
int cmd_master(struct cli_ctx *ctx, int argc, char **argv);

#endif

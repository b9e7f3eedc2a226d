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

int cmd_run(struct cli_ctx *ctx, int argc, char **argv);
int cmd_cache(struct cli_ctx *ctx, int argc, char **argv);
int cmd_image(struct cli_ctx *ctx, int argc, char **argv);
int cmd_disk(struct cli_ctx *ctx, int argc, char **argv);
int cmd_vm(struct cli_ctx *ctx, int argc, char **argv);

#endif

/* cli: `pyti <command>`. Each command lives in cmd_<name>.c and is the only place that prints
 * errors for its work. Internal header of the cli module. */
#ifndef PYTI_CLI_H
#define PYTI_CLI_H

#include "core.h"

struct cli_ctx {
	const char *state_dir; /* resolved: --state-dir, $PYTI_STATE_DIR, $XDG_CACHE_HOME/pyti, ~/.cache/pyti */
	bool json;             /* --json where a command supports it */
	bool tty;              /* stderr is a terminal: show progress */
	int verbose;
};

/* Print "pyti: error: …" and return the exit status the error asks for. */
int cli_fail(const struct pyti_err *err);
/* Print a usage error and return PYTI_EXIT_USAGE. */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Path of a helper program shipped with pyti (e.g. "pyti-agent"): $PYTI_<NAME> env override,
 * then beside the pyti binary in a build tree, then the installed libexec dir. Caller frees. */
char *cli_find_helper(const char *name);

int cmd_run(struct cli_ctx *ctx, int argc, char **argv);
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

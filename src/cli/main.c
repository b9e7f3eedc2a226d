/* pyti entry point: global options, then dispatch to a command. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sandbox.h"

#ifndef PYTI_VERSION
#define PYTI_VERSION "0.0"
#endif
#ifndef PYTI_LIBEXECDIR
#define PYTI_LIBEXECDIR "/usr/local/libexec/pyti"
#endif

static const struct {
	const char *name;
	int (*fn)(struct cli_ctx *, int, char **);
	const char *help;
} commands[] = {
	{"run", cmd_run, "run a recipe for a distribution in a sandbox and report raw data"},
	{"image", cmd_image, "build, list and remove guest images"},
	{"disk", cmd_disk, "DiskHandler: read and write ext4 images without mounting them"},
	{"vm", cmd_vm, "VManager: define, start, stop, snapshot, roll back libvirt domains"},
	{"worker", cmd_worker, "take jobs from a master and run each as `pyti run` does"},
	{"submit", cmd_submit, "queue a run of many distributions on a master"},
	{"status", cmd_status, "a run's jobs: state, attempt, verdict"},
	{"results", cmd_results, "a run's results (--json, --junit FILE)"},
	{"cancel", cmd_cancel, "cancel a run or a job"},
	{"master", cmd_master, "serve the JSON-RPC API: workers claim jobs and report, users submit runs"},
	{"runs", cmd_runs, "list the runs in the store (STATE/pyti.db or --store URL)"},
	{"show", cmd_show, "read a run or a job back from the store"},
	{"store", cmd_store, "store copy SRC DST: merge one store's history into another"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: pyti [--state-dir DIR] [--store URL] [-v] [--version] COMMAND [ARGS]\n\n"
		   "Python Testing Infrastructure: run a Python distribution's install, import and test\n"
		   "tasks in a throwaway sandbox with no network, and record raw data for each task.\n\n"
		   "commands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n`pyti COMMAND --help` describes a command. Exit status: 0 all passed, 1 a task failed,\n"
		   "2 usage or configuration error, 3 infrastructure error.\n");
}

/* Every error reaches the user here, and many quote what a sandbox wrote (pip's output, the
 * agent's messages, file names of a package): the one place to escape them for the terminal. */
int cli_fail(const struct pyti_err *err)
{
	const char *fc = pyti_fclass_name(err->fclass);
	_cleanup_free_ char *msg = term_safe_dup(pyti_err_str(err), TERM_KEEP_NEWLINES);
	if (fc)
		fprintf(stderr, "pyti: error (%s): %s\n", fc, msg);
	else
		fprintf(stderr, "pyti: error: %s\n", msg);
	return err->status ? (int)err->status : PYTI_EXIT_INFRA;
}

int cli_usage(const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	_cleanup_free_ char *msg = term_safe_dup(line, TERM_KEEP_NEWLINES);
	fprintf(stderr, "pyti: %s\n", msg);
	return PYTI_EXIT_USAGE;
}

char *cli_find_helper(const char *name)
{
	char env[128] = "PYTI_";
	size_t k = strlen(env);
	for (const char *p = name; *p && k < sizeof env - 1; p++)
		env[k++] = (*p == '-') ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	env[k] = '\0';
	const char *e = getenv(env);
	if (e && *e)
		return xstrdup(e);

	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			/* build tree: build/src/cli/pyti -> build/src/<module>/<name> */
			const char *short_name = strncmp(name, "pyti-", 5) == 0 ? name + 5 : name;
			char *c = xasprintf("%s/../%s/%s", self, short_name, name);
			if (access(c, X_OK) == 0)
				return c;
			free(c);
			c = xasprintf("%s/%s", self, name);
			if (access(c, X_OK) == 0)
				return c;
			free(c);
		}
	}
	return xasprintf("%s/%s", PYTI_LIBEXECDIR, name);
}

static char *default_state_dir(void)
{
	const char *e = getenv("PYTI_STATE_DIR");
	if (e && *e)
		return xstrdup(e);
	e = getenv("XDG_CACHE_HOME");
	if (e && *e)
		return xasprintf("%s/pyti", e);
	e = getenv("HOME");
	return xasprintf("%s/.cache/pyti", e && *e ? e : "/tmp");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"state-dir", required_argument, NULL, 's'},
		{"store", required_argument, NULL, 'S'},
		{"verbose", no_argument, NULL, 'v'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	_cleanup_free_ char *state = NULL;
	struct cli_ctx ctx = {.tty = isatty(2)};
	int c;
	/* '+': stop at the first non-option so that command options are the command's own. */
	while ((c = getopt_long(argc, argv, "+vh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			free(state);
			state = xstrdup(optarg);
			break;
		case 'S':
			ctx.store_url = optarg;
			break;
		case 'v':
			ctx.verbose++;
			break;
		case 'V':
			printf("pyti %s\n", PYTI_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return PYTI_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return PYTI_EXIT_USAGE;
	}
	pyti_log_level = PYTI_LOG_WARN + ctx.verbose;
	if (!state)
		state = default_state_dir();
	if (state[0] != '/') {
		/* absolute: libvirtd opens the VM backend's disks from its own working directory */
		_cleanup_free_ char *cwd = getcwd(NULL, 0);
		if (!cwd) {
			fprintf(stderr, "pyti: error: cannot resolve the state directory '%s': %s\n", state, strerror(errno));
			return PYTI_EXIT_INFRA;
		}
		char *abs = xasprintf("%s/%s", cwd, state);
		free(state);
		state = abs;
	}
	ctx.state_dir = state;

	const char *name = argv[optind];
	/* not a user command: the vm backend's standby helper, started by pyti itself */
	if (strcmp(name, "__vm-standby") == 0 && argc - optind == 3)
		return sandbox_vm_standby_helper(argv[optind + 1], argv[optind + 2]);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(commands[i].name, name) == 0) {
			int sub_argc = argc - optind;
			char **sub_argv = argv + optind;
			/* Commands parse with getopt from their own argv[0]. 0, not 1: a full re-initialisation,
			 * so that main's "+" (stop at the first non-option) mode does not stay and options
			 * may follow the command's operands ("pyti run six --json"). */
			optind = 0;
			return commands[i].fn(&ctx, sub_argc, sub_argv);
		}
	}
	if (strcmp(name, "help") == 0) {
		usage(stdout);
		return 0;
	}
	return cli_usage("unknown command '%s' (try 'pyti --help')", name);
}

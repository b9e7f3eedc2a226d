/* pyti entry point: global options, then dispatch to a command. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fetch.h"
#include "sandbox.h"
#include "vm.h"

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
	{"run", cmd_run, "run a recipe for one or more distributions in a sandbox and report raw data"},
	{"cache", cmd_cache, "show and clean the fetch cache (downloaded wheels and sdists)"},
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
	{"compare", cmd_compare, "compare two runs: regressed, fixed, flaky, spurious … per job and per test"},
	{"rerun", cmd_rerun, "run a run's failed, spurious or flaky jobs again as a new run"},
};

bool cli_json_errors;

static void usage(FILE *f)
{
	fprintf(f, "usage: pyti [--state-dir DIR] [--store URL] [-v] [-V|--version] COMMAND [ARGS]\n\n"
		   "Python Testing Infrastructure: run a Python distribution's install, import and test\n"
		   "tasks in a throwaway sandbox with no network, and record raw data for each task.\n\n"
		   "commands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "  %-8s %s\n", "help", "`pyti help COMMAND` describes a command");
	fprintf(f,
		"\noptions:\n"
		"  --state-dir DIR  images, cache, runs (default $PYTI_STATE_DIR, $XDG_CACHE_HOME/pyti, ~/.cache/pyti)\n"
		"  -v, --verbose    more messages on stderr (-vv: debug)\n"
		"  --json           JSON on stdout, errors included (as the command's --json)\n"
		"  -V, --version    print the version\n"
		"  -h, --help       this help\n");
	fprintf(f, "\n`pyti COMMAND --help` describes a command. Exit status: 0 all passed, 1 a task failed,\n"
		   "2 usage or configuration error, 3 infrastructure error.\n");
}

/* Every error reaches the user here, and many quote what a sandbox wrote (pip's output, the
 * agent's messages, file names of a package): the one place to escape them for the terminal. */
json_t *cli_error_json(const struct pyti_err *err)
{
	const char *fc = pyti_fclass_name(err->fclass);
	/* lossy: the message may quote sandbox bytes that are not UTF-8 (json_pack would fail) */
	const char *msg = pyti_err_str(err);
	/* a distribution that failed to build is the package's result (exit 1), not an error of pyti's */
	return json_pack("{s:s, s:o, s:o, s:i}", "status", err->status == PYTI_EXIT_FAILED ? "failed" : "error",
			 "failure_class", fc ? json_string(fc) : json_null(),
			 "error", pj_string_lossy(msg, strlen(msg)), "exit_status",
			 err->status ? (int)err->status : PYTI_EXIT_INFRA);
}

void cli_print_json(const json_t *j)
{
	json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
}

void cli_put_safe(const char *s, int width)
{
	_cleanup_free_ char *t = term_safe_dup(s ? s : "-", 0);
	printf("%-*s", width, t);
}

static void print_error_json(const struct pyti_err *err)
{
	_cleanup_json_ json_t *e = cli_error_json(err);
	cli_print_json(e);
	fflush(stdout);
}

/* Every error reaches the user here, and many quote what a sandbox wrote (pip's output, the
 * agent's messages, file names of a package): the one place to escape them for the terminal. */
void cli_print_error(const struct pyti_err *err)
{
	const char *fc = pyti_fclass_name(err->fclass);
	_cleanup_free_ char *msg = term_safe_dup(pyti_err_str(err), TERM_KEEP_NEWLINES);
	if (fc)
		fprintf(stderr, "pyti: error (%s): %s\n", fc, msg);
	else
		fprintf(stderr, "pyti: error: %s\n", msg);
}

int cli_fail(const struct pyti_err *err)
{
	if (cli_json_errors) /* machine-readable on failure too (docs/contracts.md) */
		print_error_json(err);
	cli_print_error(err);
	return err->status ? (int)err->status : PYTI_EXIT_INFRA;
}

int cli_usage(const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (cli_json_errors) {
		struct pyti_err e = {0};
		pyti_err_usage(&e, "%s", line);
		print_error_json(&e);
	}
	_cleanup_free_ char *msg = term_safe_dup(line, TERM_KEEP_NEWLINES);
	fprintf(stderr, "pyti: %s\n", msg);
	return PYTI_EXIT_USAGE;
}

/* Optimal string alignment distance (Levenshtein with transpositions), capped. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t n = strlen(a), m = strlen(b);
	if (n > 64 || m > 64)
		return 99;
	size_t d[65][65];
	for (size_t i = 0; i <= n; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= m; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= n; i++) {
		for (size_t j = 1; j <= m; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			size_t v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	}
	return d[n][m];
}

const char *cli_nearest(const char *word, const char *const *cands, size_t n)
{
	const char *best = NULL;
	size_t bd = 3, len = strlen(word);
	for (size_t i = 0; i < n; i++) {
		if (!cands[i])
			continue;
		size_t dd = edit_distance(word, cands[i]);
		/* a prefix of a longer name ("--jso" for "--json") is near too */
		if (dd > 2 && len >= 3 && strncmp(cands[i], word, len) == 0)
			dd = 2;
		if (dd < bd && dd < len) {
			bd = dd;
			best = cands[i];
		}
	}
	return best;
}

int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts, const struct option *longopts)
{
	char so[128];
	/* ':' first: a missing value is told apart from an unknown option; errors are ours */
	bool mode = shortopts[0] == '+' || shortopts[0] == '-'; /* the mode character comes first */
	snprintf(so, sizeof so, "%.*s:%s", mode ? 1 : 0, shortopts, shortopts + (mode ? 1 : 0));
	opterr = 0;
	int c = getopt_long(argc, argv, so, longopts, NULL);
	if (c != '?' && c != ':')
		return c;
	char bad[128];
	const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "";
	if (optopt && !(arg[0] == '-' && arg[1] == '-'))
		snprintf(bad, sizeof bad, "-%c", optopt);
	else
		snprintf(bad, sizeof bad, "%.*s", (int)strcspn(arg, "="), arg);
	char pre[64], hint[80];
	snprintf(pre, sizeof pre, "%s%s", cmd, *cmd ? ": " : "");
	snprintf(hint, sizeof hint, "pyti %s%s--help", cmd, *cmd ? " " : "");
	if (c == ':') {
		cli_usage("%soption '%s' needs a value (try '%s')", pre, bad, hint);
		return '?';
	}
	const char *names[64] = {0};
	char buf[64][40];
	size_t n = 0;
	for (size_t i = 0; longopts && longopts[i].name && n < ARRAY_SIZE(names); i++) {
		snprintf(buf[n], sizeof buf[n], "--%s", longopts[i].name);
		names[n] = buf[n];
		n++;
	}
	const char *near = strncmp(bad, "--", 2) == 0 ? cli_nearest(bad, names, n) : NULL;
	/* "--re" that could be --recipe or --refresh */
	size_t amb = 0;
	for (size_t i = 0; i < n && strncmp(bad, "--", 2) == 0 && strlen(bad) > 2; i++)
		amb += strncmp(names[i], bad, strlen(bad)) == 0;
	if (amb > 1)
		cli_usage("%soption '%s' is ambiguous (try '%s')", pre, bad, hint);
	else if (near)
		cli_usage("%sunknown option '%s' (did you mean '%s'?)", pre, bad, near);
	else
		cli_usage("%sunknown option '%s' (try '%s')", pre, bad, hint);
	return '?';
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

int cli_job_max_s(double *out)
{
	const char *jm = getenv("PYTI_JOB_MAX_S");
	if (!jm || !*jm)
		return 0;
	char *end;
	double v = strtod(jm, &end);
	if (*end || !(v > 0) || v > 1e9)
		return cli_usage("PYTI_JOB_MAX_S must be a number of seconds above 0, not '%s'", jm);
	*out = v;
	return 0;
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

/* The environment variables the sandbox backends, the vm module and the fetch obey, read here once
 * (man/pyti.1, ENVIRONMENT) and handed down. */
static unsigned env_uint(const char *name)
{
	const char *e = getenv(name);
	return e && *e ? (unsigned)strtoul(e, NULL, 10) : 0; /* 0: the default */
}

static void read_sandbox_env(void)
{
	const char *standby = getenv("PYTI_VM_STANDBY");
	struct sandbox_host h = {
		.net_helper = getenv("PYTI_SLIRP4NETNS"),
		.vm_memory_mib = env_uint("PYTI_VM_MEMORY_MIB"),
		.vm_vcpus = env_uint("PYTI_VM_VCPUS"),
		.vm_hang_s = env_uint("PYTI_VM_HANG_S"),
		.vm_no_standby = standby && strcmp(standby, "0") == 0,
	};
	sandbox_set_host(&h);
	vm_set_host(&(struct vm_host){.uri = getenv("PYTI_VM_URI"), .accel = getenv("PYTI_VM_ACCEL")});
	fetch_set_host(&(struct fetch_host){.ttl = getenv("PYTI_FETCH_TTL"),
					    .keep_scratch = getenv("PYTI_KEEP_FETCH") != NULL});
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"state-dir", required_argument, NULL, 's'},
		{"store", required_argument, NULL, 'S'},
		{"verbose", no_argument, NULL, 'v'},
		{"version", no_argument, NULL, 'V'},
		{"json", no_argument, NULL, 'J'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	_cleanup_free_ char *state = NULL;
	struct cli_ctx ctx = {.tty = isatty(2)};
	int c;
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--json") == 0)
			cli_json_errors = true;
	/* '+': stop at the first non-option so that command options are the command's own. */
	while ((c = cli_getopt("", argc, argv, "+vVh", opts)) != -1) {
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
		case 'J': /* `pyti --json CMD` = `pyti CMD --json` */
			ctx.json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return PYTI_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return cli_usage("a command is needed (run, cache, image, disk, vm; try 'pyti --help')");
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
	read_sandbox_env();

	const char *name = argv[optind];
	/* not a user command: the vm backend's standby helper, started by pyti itself */
	if (strcmp(name, "__vm-standby") == 0 && argc - optind == 3)
		return sandbox_vm_standby_main(argv[optind + 1], argv[optind + 2]);
	bool help = strcmp(name, "help") == 0;
	if (help) {
		if (argc - optind == 1) {
			usage(stdout);
			return 0;
		}
		if (argc - optind > 2)
			return cli_usage("help: unexpected argument '%s' (usage: pyti help [COMMAND])",
					 argv[optind + 2]);
		name = argv[optind + 1];
	}
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (strcmp(commands[i].name, name) == 0) {
			int sub_argc = argc - optind;
			char **sub_argv = argv + optind;
			char *help_argv[] = {(char *)name, (char *)"--help", NULL};
			if (help) { /* `pyti help run` = `pyti run --help` */
				sub_argc = 2;
				sub_argv = help_argv;
			}
			/* Commands parse with getopt from their own argv[0]. 0, not 1: a full re-initialisation,
			 * so that main's "+" (stop at the first non-option) mode does not stay and options
			 * may follow the command's operands ("pyti run six --json"). */
			optind = 0;
			return commands[i].fn(&ctx, sub_argc, sub_argv);
		}
	}
	const char *names[ARRAY_SIZE(commands) + 1];
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		names[i] = commands[i].name;
	names[ARRAY_SIZE(commands)] = "help";
	const char *near = cli_nearest(name, names, ARRAY_SIZE(names));
	if (near)
		return cli_usage("unknown command '%s' (did you mean '%s'?)", name, near);
	return cli_usage("unknown command '%s' (try 'pyti --help')", name);
}

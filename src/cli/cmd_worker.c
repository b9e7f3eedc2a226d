/* pyti worker: take jobs from a master and run each as `pyti run` does. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "worker.h"

static void worker_usage(FILE *f)
{
	fputs("usage: pyti worker --master URL --token-file FILE [OPTIONS]\n\n"
	      "Take jobs from a pyti master (JSON-RPC over HTTP) and run each exactly as `pyti run` does,\n"
	      "in a process of its own: heartbeats keep its lease, each task is reported as it ends, and\n"
	      "the job's results, logs and JUnit files are uploaded when it finishes. Requests the master\n"
	      "has not accepted wait in STATE/worker/spool/NAME/ and are sent again (with backoff), so a\n"
	      "master restart loses nothing. SIGTERM or ^C: no more claims, the running jobs end, then exit 0\n"
	      "(a second signal kills them).\n\n"
	      "options:\n"
	      "  -m, --master URL       the master (http://HOST:PORT)\n"
	      "  -t, --token-file FILE  the worker token (first line of FILE)\n"
	      "  -b, --backend ns|vm    sandbox backend (default ns)\n"
	      "  -j, --slots N          jobs at a time (default: the number of cores)\n"
	      "  -n, --name NAME        this worker's name (default: the host name; two workers sharing\n"
	      "                         a state directory need different names)\n"
	      "  -c, --config FILE      INI file: [worker] master, token_file, slots, backend, name,\n"
	      "                         heartbeat_s (the command line wins)\n"
	      "      --once             claim once, run what came, exit\n"
	      "      --max-jobs N       exit after N jobs\n"
	      "      --allow-local-dists  also run jobs whose distribution is a path on this machine\n"
	      "                         (a source tree, an sdist; off: any submitter could have this\n"
	      "                         machine's files copied into a sandbox and out in the logs)\n"
	      "  -h, --help             this help\n\n"
	      "exit status: 0 stopped, 2 usage or configuration error (also: the master refused the\n"
	      "token), 3 infrastructure error.\n",
	      f);
}

static int parse_count(const char *what, const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < lo || v > hi)
		return cli_usage("worker: %s must be a number %ld…%ld, not '%s'", what, lo, hi, s);
	*out = v;
	return 0;
}

int cmd_worker(struct cli_ctx *ctx, int argc, char **argv)
{
	enum {
		OPT_ONCE = 256,
		OPT_MAX_JOBS,
		OPT_RUN_JOB,
		OPT_ALLOW_LOCAL
	};
	static const struct option opts[] = {
		{"master", required_argument, NULL, 'm'},
		{"token-file", required_argument, NULL, 't'},
		{"backend", required_argument, NULL, 'b'},
		{"slots", required_argument, NULL, 'j'},
		{"name", required_argument, NULL, 'n'},
		{"config", required_argument, NULL, 'c'},
		{"once", no_argument, NULL, OPT_ONCE},
		{"max-jobs", required_argument, NULL, OPT_MAX_JOBS},
		{"run-job", required_argument, NULL, OPT_RUN_JOB},
		{"allow-local-dists", no_argument, NULL, OPT_ALLOW_LOCAL},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct worker_config wc = {0};
	const char *config = NULL, *run_job = NULL;
	struct worker_opts wo = {.state_dir = ctx->state_dir, .verbose = ctx->verbose};
	long v;
	int c, rc;
	while ((c = cli_getopt("worker", argc, argv, "m:t:b:j:n:c:h", opts)) != -1) {
		switch (c) {
		case 'm':
			free(wc.master);
			wc.master = xstrdup(optarg);
			break;
		case 't':
			free(wc.token_file);
			wc.token_file = xstrdup(optarg);
			break;
		case 'b':
			if (strcmp(optarg, "ns") != 0 && strcmp(optarg, "vm") != 0) {
				worker_config_free(&wc);
				return cli_usage("worker: unknown backend '%s' (ns or vm)", optarg);
			}
			free(wc.backend);
			wc.backend = xstrdup(optarg);
			break;
		case 'j':
			if ((rc = parse_count("--slots", optarg, 1, 1024, &v))) {
				worker_config_free(&wc);
				return rc;
			}
			wc.slots = (int)v;
			break;
		case 'n':
			free(wc.name);
			wc.name = xstrdup(optarg);
			break;
		case 'c':
			config = optarg;
			break;
		case OPT_ONCE:
			wo.once = true;
			break;
		case OPT_MAX_JOBS:
			if ((rc = parse_count("--max-jobs", optarg, 1, 1000000000, &v))) {
				worker_config_free(&wc);
				return rc;
			}
			wo.max_jobs = v;
			break;
		case OPT_RUN_JOB:
			run_job = optarg;
			break;
		case OPT_ALLOW_LOCAL:
			wc.allow_local_dists = true;
			break;
		case 'h':
			worker_usage(stdout);
			worker_config_free(&wc);
			return 0;
		default:
			worker_config_free(&wc);
			return PYTI_EXIT_USAGE;
		}
	}
	if (run_job) { /* the job process the worker started (not for users) */
		worker_config_free(&wc);
		_cleanup_free_ char *agent = cli_find_helper("pyti-agent");
		return worker_job_main(ctx->state_dir, run_job, agent, 3);
	}
	if (optind != argc) {
		worker_config_free(&wc);
		return cli_usage("worker: unexpected operand '%s' (try 'pyti worker --help')", argv[optind]);
	}
	struct pyti_err err = {0};
	if (config && worker_config_load(config, &wc, &err) < 0) {
		worker_config_free(&wc);
		return cli_fail(&err);
	}
	if (!wc.master || !wc.token_file) {
		worker_config_free(&wc);
		return cli_usage("worker: --master and --token-file are needed (or master and token_file in --config)");
	}
	_cleanup_free_ char *token = NULL;
	if (wrpc_read_token(wc.token_file, &token, &err) < 0) {
		worker_config_free(&wc);
		return cli_fail(&err);
	}
	char host[HOST_NAME_MAX + 1] = "worker";
	if (!wc.name) {
		if (gethostname(host, sizeof host) < 0 || !host[0])
			snprintf(host, sizeof host, "worker");
		host[HOST_NAME_MAX] = '\0';
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0) {
		worker_config_free(&wc);
		return cli_usage("worker: cannot find the pyti binary (/proc/self/exe)");
	}
	self[n] = '\0';
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	_cleanup_free_ char *agent = cli_find_helper("pyti-agent");
	wo.master = wc.master;
	wo.token = token;
	wo.backend = wc.backend ? wc.backend : "ns";
	wo.name = wc.name ? wc.name : host;
	wo.slots = wc.slots ? wc.slots : (cores > 0 ? (int)cores : 1);
	wo.heartbeat_s = wc.heartbeat_s;
	wo.allow_local = wc.allow_local_dists;
	wo.self_exe = self;
	wo.agent_path = agent;
	if (wo.once)
		wo.max_jobs = wo.max_jobs ? wo.max_jobs : wo.slots;
	/* a daemon's stderr is its log: one line per job event unless asked to be quieter */
	if (pyti_log_level < PYTI_LOG_INFO)
		pyti_log_level = PYTI_LOG_INFO;
	rc = worker_run(&wo, &err);
	worker_config_free(&wc);
	return rc < 0 ? cli_fail(&err) : 0;
}

/* pyti run: one job, end to end, with progress on stderr and a report on stdout. */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "manager.h"

static void run_usage(FILE *f)
{
	fputs("usage: pyti run [OPTIONS] DIST\n\n"
	      "Fetch DIST and its (test) dependencies, run the recipe's tasks in a throwaway sandbox with\n"
	      "no network, and report each task's raw data. DIST is a requirement (six, six==1.17.0),\n"
	      "a local sdist or wheel, or a source directory.\n\n"
	      "options:\n"
	      "  -b, --backend ns|vm   sandbox backend (default ns: Linux namespaces; vm: libvirt/QEMU)\n"
	      "  -s, --suite SUITE     guest image (default bookworm; see `pyti image list`)\n"
	      "  -r, --recipe FILE     INI recipe (default: the built-in install/import/test recipe)\n"
	      "      --json            print the job's raw data as JSON on stdout\n"
	      "      --junit FILE      also write the tasks as JUnit XML\n"
	      "      --keep            keep the job's I/O directory (job.json, wheels, src, out)\n"
	      "      --cold            vm: boot the guest instead of restoring its warm snapshot\n"
	      "      --connect URI     vm: libvirt URI (default qemu:///system)\n"
	      "  -q, --quiet           no progress on stderr\n"
	      "  -h, --help            this help\n\n"
	      "exit status: 0 every task passed, 1 a task failed, 2 usage or configuration error,\n"
	      "3 infrastructure error (could not fetch, sandbox could not start).\n",
	      f);
}

struct progress {
	bool quiet, tty;
	double t0;
};

static void on_progress(void *arg, const char *phase, const json_t *ev)
{
	struct progress *p = arg;
	if (p->quiet)
		return;
	double t = now_mono() - p->t0;
	if (!ev) {
		fprintf(stderr, "pyti: [%6.1fs] %s\n", t, phase);
		return;
	}
	/* task names and statuses come from the agent, inside the sandbox: escaped like the table */
	const char *e = pj_str(ev, "event", "");
	_cleanup_free_ char *task = term_safe_dup(pj_str(ev, "task", "?"), 0),
			    *status = term_safe_dup(pj_str(ev, "status", "?"), 0);
	if (strcmp(phase, "fetch") == 0) { /* the fetch sandbox's own steps: pip wheel, pip download */
		if (strcmp(e, "task_end") == 0)
			fprintf(stderr, "pyti: [%6.1fs] fetch: %s %s (%.2fs)\n", t, task, status,
				pj_num(ev, "wall_s", 0));
		return;
	}
	if (strcmp(e, "task_start") == 0) {
		fprintf(stderr, "pyti: [%6.1fs] task %lld/%lld %s …\n", t, pj_int(ev, "i", 0), pj_int(ev, "n", 0),
			task);
	} else if (strcmp(e, "task_end") == 0) {
		const char *fc0 = pj_str(ev, "failure_class", NULL);
		_cleanup_free_ char *fc = fc0 ? term_safe_dup(fc0, 0) : NULL;
		fprintf(stderr, "pyti: [%6.1fs] task %s %s%s%s (%.2fs)\n", t, task, status, fc ? " " : "",
			fc ? fc : "", pj_num(ev, "wall_s", 0));
	} else if (strcmp(e, "heartbeat") == 0 && p->tty) {
		fprintf(stderr, "pyti: [%6.1fs] task %s still running (%lld bytes of output)\n", t, task,
			pj_int(ev, "output_bytes", 0));
	}
}

int cmd_run(struct cli_ctx *ctx, int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_JUNIT, OPT_KEEP, OPT_COLD, OPT_CONNECT };
	static const struct option opts[] = {
		{"backend", required_argument, NULL, 'b'}, {"suite", required_argument, NULL, 's'},
		{"recipe", required_argument, NULL, 'r'},  {"json", no_argument, NULL, OPT_JSON},
		{"junit", required_argument, NULL, OPT_JUNIT}, {"keep", no_argument, NULL, OPT_KEEP},
		{"cold", no_argument, NULL, OPT_COLD},     {"connect", required_argument, NULL, OPT_CONNECT},
		{"quiet", no_argument, NULL, 'q'},         {"help", no_argument, NULL, 'h'},
		{0},
	};
	struct manager_opts mo = {.state_dir = ctx->state_dir, .suite = "bookworm", .backend = "ns"};
	const char *junit = NULL;
	struct progress prog = {.tty = ctx->tty, .t0 = now_mono()};
	int c;
	while ((c = getopt_long(argc, argv, "b:s:r:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'b':
			mo.backend = optarg;
			break;
		case 's':
			mo.suite = optarg;
			break;
		case 'r':
			mo.recipe_path = optarg;
			break;
		case OPT_JSON:
			ctx->json = true;
			break;
		case OPT_JUNIT:
			junit = optarg;
			break;
		case OPT_KEEP:
			mo.keep = true;
			break;
		case OPT_COLD:
			mo.cold = true;
			break;
		case OPT_CONNECT:
			mo.vm_uri = optarg;
			break;
		case 'q':
			prog.quiet = true;
			break;
		case 'h':
			run_usage(stdout);
			return 0;
		default:
			run_usage(stderr);
			return PYTI_EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		run_usage(stderr);
		return PYTI_EXIT_USAGE;
	}
	if (strcmp(mo.backend, "ns") != 0 && strcmp(mo.backend, "vm") != 0)
		return cli_usage("run: unknown backend '%s' (ns or vm)", mo.backend);
	mo.dist = argv[optind];
	const char *jm = getenv("PYTI_JOB_MAX_S");
	if (jm && *jm) {
		char *end;
		mo.job_max_s = strtod(jm, &end);
		if (*end || !(mo.job_max_s > 0) || mo.job_max_s > 1e9)
			return cli_usage("PYTI_JOB_MAX_S must be a number of seconds above 0, not '%s'", jm);
	}
	_cleanup_free_ char *agent = cli_find_helper("pyti-agent");
	mo.agent_path = agent;
	mo.on_progress = on_progress;
	mo.arg = &prog;

	struct pyti_err err = {0};
	_cleanup_json_ json_t *res = NULL;
	if (manager_run(&mo, &res, &err) < 0) {
		if (ctx->json) { /* machine-readable on failure too (docs/contracts.md) */
			const char *fc = pyti_fclass_name(err.fclass);
			/* lossy: the message may quote sandbox bytes that are not UTF-8 (json_pack would fail) */
			const char *msg = pyti_err_str(&err);
			_cleanup_json_ json_t *e = json_pack("{s:s, s:o, s:o, s:i}", "status",
							     err.status == PYTI_EXIT_FAILED ? "failed" : "error", "failure_class",
							     fc ? json_string(fc) : json_null(), "error",
							     pj_string_lossy(msg, strlen(msg)),
							     "exit_status", err.status ? (int)err.status : PYTI_EXIT_INFRA);
			json_dumpf(e, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
			fputc('\n', stdout);
			fflush(stdout);
		}
		return cli_fail(&err);
	}
	if (junit && report_junit_write(res, junit, &err) < 0)
		return cli_fail(&err);
	if (ctx->json) {
		json_dumpf(res, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', stdout);
	} else {
		report_table(stdout, res, true);
		if (json_object_get(res, "job_dir"))
			printf("job directory kept: %s\n", pj_str(res, "job_dir", ""));
	}
	fflush(stdout);
	return strcmp(pj_str(res, "status", ""), "passed") == 0 ? PYTI_EXIT_OK : PYTI_EXIT_FAILED;
}

/* pyti run: one job or a batch of them, end to end, with progress on stderr and a report on stdout.
 *
 * Every job runs in a child process of its own (manager_run; the manager code is not known to be
 * thread-safe), which sends its progress and, at its end, its raw data to this process as JSON
 * lines on a pipe. This process only renders, and owns the signals: on SIGINT/SIGTERM it kills the
 * jobs' processes, ends everything they left (it is their subreaper: a sandbox whose manager died
 * is killed by the kernel, PR_SET_PDEATHSIG, and reaped here), keeps what their finished tasks
 * reported (manager_salvage) and exits 130/143. The vm backend's single job runs in this process
 * instead (its domain is named after the pid that runs it). */
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

#include "fetch.h"
#include "image.h"
#include "recipe.h"
#include "run.h"

static void run_usage(FILE *f)
{
	fputs("usage: pyti run [OPTIONS] DIST... [-- ARGS...]\n"
	      "       pyti run [OPTIONS] -r FILE [-- ARGS...]\n\n"
	      "Fetch each DIST and its (test) dependencies, run the recipe's tasks in a throwaway sandbox\n"
	      "with no network, and report each task's raw data. DIST is a requirement (six, six==1.17.0),\n"
	      "a local sdist or wheel, or a source directory (., .., ./mypkg). Several DISTs (or -r) make\n"
	      "a batch: the jobs run side by side (--jobs), one line each as it ends, then a summary.\n"
	      "ARGS after -- go to the test runner ({posargs} of the recipe: pytest's -k NAME, -x …).\n\n"
	      "options:\n"
	      "  -b, --backend ns|vm     sandbox backend (default ns: Linux namespaces; vm: libvirt/QEMU)\n"
	      "  -s, --suite SUITE       guest image (default bookworm; see `pyti image list`)\n"
	      "      --recipe FILE|NAME  INI recipe (default: the built-in install/import/test recipe)\n"
	      "  -r, --requirement FILE  test each requirement of FILE (one a line, # comments), as pip -r\n"
	      "  -j, --jobs N            jobs at a time in a batch (default: the number of CPUs)\n"
	      "  -e, --env NAME=VALUE    set a variable for every task (repeatable)\n"
	      "      --refresh           re-resolve and re-download, whatever the fetch cache holds\n"
	      "      --json              the raw data as JSON on stdout (a batch: {\"jobs\",\"summary\"})\n"
	      "      --junit FILE        also write the tasks as JUnit XML (one DIST)\n"
	      "      --keep              keep the job's I/O directory (job.json, wheels, src, out)\n"
	      "      --cold              vm: boot the guest instead of restoring its warm snapshot\n"
	      "      --connect URI       vm: libvirt URI (default qemu:///system)\n"
	      "  -v, --verbose           stream the tasks' output to stderr as it comes (ns)\n"
	      "  -q, --quiet             no progress on stderr\n"
	      "  -h, --help              this help\n\n"
	      "Ctrl-C (SIGINT) or SIGTERM ends the jobs' sandboxes, keeps the results of the tasks that\n"
	      "finished in STATE/runs/JOB and exits 130 (143).\n"
	      "exit status: 0 every task passed, 1 a task failed, 2 usage or configuration error,\n"
	      "3 infrastructure error (index unreachable, sandbox could not start). A batch: 0 when every\n"
	      "job passed (or had no tests), 3 when one was an infrastructure error, else 1.\n",
	      f);
}

/* ---- where a finished job goes ---- */

/* The one place a finished job's results are handled: j->result is its raw data (manager_run's
 * results) or its error object, and the verdict is manager_verdict's. A store records the job
 * here (one call), before the line that says it ended. */
void run_job_done(struct run *r, struct job *j)
{
	j->done = true;
	j->running = false;
	j->t1 = now_mono();
	r->n_done++;
	const char *verdict = manager_verdict(j->result);
	json_object_set_new(j->result, "verdict", json_string(verdict));
	/* the local store (record.c): the job as soon as it ended, with manager_verdict's verdict */
	struct manager_opts mo = r->mo;
	mo.dist = j->dist;
	cli_record_job(r->ctx, &mo, j->result, NULL);
	if (!r->batch)
		return; /* the report says it all */
	if (!json_object_get(j->result, "dist"))
		json_object_set_new(j->result, "dist", json_string(j->dist));
	char tests[160] = "";
	report_tests_summary(tests, sizeof tests, j->result);
	const char *fc = pj_str(j->result, "failure_class", NULL);
	const char *msg = pj_str(j->result, "error", NULL);
	run_say(r, j, "done (%zu/%zu): %s%s%s%s%s in %.1fs%s%.*s", r->n_done, r->n, verdict, fc ? " " : "",
		fc ? fc : "", *tests ? ", " : "", tests, j->t1 - j->t0, msg ? ": " : "",
		msg ? (int)strcspn(msg, "\n") : 0, msg ? msg : "");
	if (json_object_get(j->result, "job_dir"))
		run_say(r, j, "job directory kept: %s", pj_str(j->result, "job_dir", ""));
}

/* ---- the batch ---- */

static const char *const verdicts[] = {"passed", "test-failed", "build-failed", "no-tests", "infra"};

static int batch_report(struct run *r)
{
	json_t *summary = json_object();
	for (size_t i = 0; i < ARRAY_SIZE(verdicts); i++)
		json_object_set_new(summary, verdicts[i], json_integer(0));
	int rc = PYTI_EXIT_OK;
	for (size_t i = 0; i < r->n; i++) {
		const json_t *res = r->jobs[i].result;
		if (!res)
			continue;
		const char *v = pj_str(res, "verdict", manager_verdict(res));
		json_object_set_new(summary, v, json_integer(pj_int(summary, v, 0) + 1));
		int e = manager_verdict_exit(v);
		if (e == PYTI_EXIT_INFRA || (e == PYTI_EXIT_FAILED && rc == PYTI_EXIT_OK))
			rc = e;
	}
	if (r->ctx->json) {
		json_t *jobs = json_array();
		for (size_t i = 0; i < r->n; i++)
			if (r->jobs[i].result)
				json_array_append(jobs, r->jobs[i].result);
		_cleanup_json_ json_t *o = json_pack("{s:o, s:O, s:f}", "jobs", jobs, "summary", summary, "wall_s",
						     now_mono() - r->t0);
		if (r->sig)
			json_object_set_new(o, "interrupted", json_string(r->sig == SIGINT ? "SIGINT" : "SIGTERM"));
		cli_print_json(o);
	} else {
		printf("%-32s %-13s %-44s %8s  %s\n", "DIST", "VERDICT", "TESTS", "TIME", "LOGS");
		for (size_t i = 0; i < r->n; i++) {
			struct job *j = &r->jobs[i];
			if (!j->result)
				continue;
			char tests[160] = "";
			report_tests_summary(tests, sizeof tests, j->result);
			const char *fc = pj_str(j->result, "failure_class", NULL);
			if (!*tests && fc)
				snprintf(tests, sizeof tests, "error (%s)", fc);
			_cleanup_free_ char *dist = term_safe_dup(j->dist, 0), *t = term_safe_dup(tests, 0),
					    *logs = term_safe_dup(pj_str(j->result, "logs", "-"), 0);
			printf("%-32.64s %-13s %-44s %7.1fs  %s\n", dist, pj_str(j->result, "verdict", "?"), t,
			       j->t1 > j->t0 ? j->t1 - j->t0 : 0, logs);
		}
		printf("\nsummary:");
		bool first = true;
		for (size_t i = 0; i < ARRAY_SIZE(verdicts); i++) {
			long long c = pj_int(summary, verdicts[i], 0);
			if (c) {
				printf("%s %lld %s", first ? "" : ",", c, verdicts[i]);
				first = false;
			}
		}
		printf("%s (%zu job%s in %.1fs)\n", first ? " nothing ran" : "", r->n_done, r->n_done == 1 ? "" : "s",
		       now_mono() - r->t0);
	}
	json_decref(summary);
	fflush(stdout);
	return rc;
}

/* Run every job, r->max_jobs at a time; returns when all ended or a signal came. */
/* ---- arguments ---- */

/* -r FILE: one requirement a line, as pip reads it: blank lines and # comments skipped, and
 * "-r OTHER" (--requirement) includes OTHER, relative to the including file's directory. */
static int read_requirements(const char *path, int depth, char ***out, size_t *n, struct pyti_err *err)
{
	if (depth > 8)
		return pyti_err_usage(err, "%s: requirement files include each other too deeply", path);
	_cleanup_buf_ struct buf b = BUF_INIT(16u << 20);
	if (read_file(path, &b, err) < 0) {
		pyti_err_prefix(err, "-r %s", path);
		err->status = PYTI_EXIT_USAGE; /* the user's file */
		return -1;
	}
	int lineno = 0;
	char *line = b.data, *next;
	for (; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		lineno++;
		char *hash = strchr(line, '#');
		if (hash && (hash == line || hash[-1] == ' ' || hash[-1] == '\t'))
			*hash = '\0';
		while (*line == ' ' || *line == '\t')
			line++;
		size_t l = strlen(line);
		while (l && (line[l - 1] == ' ' || line[l - 1] == '\t' || line[l - 1] == '\r'))
			line[--l] = '\0';
		if (!l)
			continue;
		const char *inc = NULL;
		if (strncmp(line, "-r ", 3) == 0)
			inc = line + 3;
		else if (strncmp(line, "--requirement ", 14) == 0)
			inc = line + 14;
		else if (strncmp(line, "--requirement=", 14) == 0)
			inc = line + 14;
		if (inc) {
			while (*inc == ' ' || *inc == '\t')
				inc++;
			const char *slash = strrchr(path, '/');
			_cleanup_free_ char *p = inc[0] == '/' || !slash
							 ? xstrdup(inc)
							 : xasprintf("%.*s/%s", (int)(slash - path), path, inc);
			if (read_requirements(p, depth + 1, out, n, err) < 0)
				return pyti_err_prefix(err, "%s:%d", path, lineno);
			continue;
		}
		if (line[0] == '-')
			return pyti_err_usage(err,
					      "%s:%d: '%s': pip options are not taken here (one requirement a line)",
					      path, lineno, line);
		if (*n >= RUN_MAX_JOBS)
			return pyti_err_usage(err, "%s:%d: more than %d requirements", path, lineno, RUN_MAX_JOBS);
		*out = xrealloc(*out, (*n + 2) * sizeof **out);
		(*out)[(*n)++] = xstrdup(line);
		(*out)[*n] = NULL;
	}
	return 0;
}

/* "." and ".." are directories (pip's "Directory '.' is not installable" is not what a user means);
 * a bare name that is also a directory here is the index's project, and pyti says so. */
static char *resolve_dist(const char *d, bool quiet)
{
	if (strcmp(d, ".") == 0 || strcmp(d, "..") == 0)
		return xasprintf("%s/", d);
	struct stat st;
	if (!quiet && !strchr(d, '/') && !fetch_dist_is_local(d, &st) && stat(d, &st) == 0 && S_ISDIR(st.st_mode)) {
		_cleanup_free_ char *s = term_safe_dup(d, 0);
		fprintf(stderr,
			"pyti: note: '%s' is taken as a requirement (the package index's project); to test the "
			"directory of that name here, run `pyti run ./%s`\n",
			s, s);
	}
	return xstrdup(d);
}

/* --junit FILE is checked before any work: a file that can be written, in a directory that is one. */
static int check_output_path(const char *opt, const char *path)
{
	struct stat st;
	if (!*path)
		return cli_usage("run: %s: an empty file name", opt);
	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return cli_usage("run: %s %s: is a directory", opt, path);
		if (access(path, W_OK) < 0)
			return cli_usage("run: %s %s: cannot write it: %s", opt, path, strerror(errno));
		return 0;
	}
	if (errno != ENOENT)
		return cli_usage("run: %s %s: %s", opt, path, strerror(errno));
	_cleanup_free_ char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
	if (stat(d, &st) < 0 || !S_ISDIR(st.st_mode))
		return cli_usage("run: %s %s: no directory %s", opt, path, d);
	if (access(d, W_OK | X_OK) < 0)
		return cli_usage("run: %s %s: cannot write in %s: %s", opt, path, d, strerror(errno));
	return 0;
}

static bool env_name_ok(const char *s, size_t n)
{
	if (!n || n > 255 || !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '_'))
			return false;
	return true;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

int cmd_run(struct cli_ctx *ctx, int argc, char **argv)
{
	enum {
		OPT_JSON = 256,
		OPT_JUNIT,
		OPT_KEEP,
		OPT_COLD,
		OPT_CONNECT,
		OPT_RECIPE,
		OPT_REFRESH
	};
	static const struct option opts[] = {
		{"backend", required_argument, NULL, 'b'},
		{"suite", required_argument, NULL, 's'},
		{"recipe", required_argument, NULL, OPT_RECIPE},
		{"requirement", required_argument, NULL, 'r'},
		{"jobs", required_argument, NULL, 'j'},
		{"env", required_argument, NULL, 'e'},
		{"refresh", no_argument, NULL, OPT_REFRESH},
		{"json", no_argument, NULL, OPT_JSON},
		{"junit", required_argument, NULL, OPT_JUNIT},
		{"keep", no_argument, NULL, OPT_KEEP},
		{"cold", no_argument, NULL, OPT_COLD},
		{"connect", required_argument, NULL, OPT_CONNECT},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct run r = {.ctx = ctx, .t0 = now_mono(), .tty = ctx->tty, .verbose = ctx->verbose > 0};
	r.mo = (struct manager_opts){.state_dir = ctx->state_dir, .suite = "bookworm", .backend = "ns"};
	_cleanup_free_ char **reqfiles = NULL, **envs = NULL;
	size_t n_reqfiles = 0, n_envs = 0;
	const char *jobs_arg = NULL;

	/* ARGS after the first "--" are the test runner's, untouched by getopt */
	int nargs = argc;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--") == 0) {
			nargs = i;
			break;
		}
	int c;
	while ((c = cli_getopt("run", nargs, argv, "b:s:r:j:e:vqh", opts)) != -1) {
		switch (c) {
		case 'b':
			r.mo.backend = optarg;
			break;
		case 's':
			r.mo.suite = optarg;
			break;
		case OPT_RECIPE:
			r.mo.recipe_path = optarg;
			break;
		case 'r':
			reqfiles = xrealloc(reqfiles, (n_reqfiles + 1) * sizeof *reqfiles);
			reqfiles[n_reqfiles++] = optarg;
			break;
		case 'j':
			jobs_arg = optarg;
			break;
		case 'e': {
			const char *eq = strchr(optarg, '=');
			if (!eq || !env_name_ok(optarg, (size_t)(eq - optarg)))
				return cli_usage("run: --env '%s': NAME=VALUE, NAME of letters, digits and '_'",
						 optarg);
			_cleanup_json_ json_t *utf8 = json_string(eq + 1);
			if (!utf8)
				return cli_usage("run: --env %.*s: the value is not UTF-8", (int)(eq - optarg), optarg);
			envs = xrealloc(envs, (n_envs + 2) * sizeof *envs);
			envs[n_envs++] = optarg;
			envs[n_envs] = NULL;
			break;
		}
		case OPT_REFRESH:
			r.mo.refresh = true;
			break;
		case OPT_JSON:
			ctx->json = true;
			break;
		case OPT_JUNIT:
			r.junit = optarg;
			break;
		case OPT_KEEP:
			r.mo.keep = true;
			break;
		case OPT_COLD:
			r.mo.cold = true;
			break;
		case OPT_CONNECT:
			r.mo.vm_uri = optarg;
			break;
		case 'v':
			r.verbose = true;
			break;
		case 'q':
			r.quiet = true;
			break;
		case 'h':
			run_usage(stdout);
			return 0;
		default:
			return PYTI_EXIT_USAGE;
		}
	}
	if (nargs < argc) {
		r.mo.posargs = (const char *const *)argv + nargs + 1;
		r.mo.n_posargs = (size_t)(argc - nargs - 1);
	}
	r.mo.env = (const char *const *)envs;

	/* every usage error comes before any work */
	if (strcmp(r.mo.backend, "ns") != 0 && strcmp(r.mo.backend, "vm") != 0) {
		const char *b[] = {"ns", "vm"};
		const char *near = cli_nearest(r.mo.backend, b, 2);
		return cli_usage("run: unknown backend '%s' (%s%s%sns or vm)", r.mo.backend,
				 near ? "did you mean '" : "", near ? near : "", near ? "'? " : "");
	}
	if (!image_suite_valid(r.mo.suite)) {
		const char *s[] = {"bookworm", "trixie"};
		const char *near = cli_nearest(r.mo.suite, s, 2);
		return cli_usage("run: pyti cannot build a '%s' image (%s%s%ssuites: bookworm, trixie)", r.mo.suite,
				 near ? "did you mean '" : "", near ? near : "", near ? "'? " : "");
	}
	r.max_jobs = 0;
	if (jobs_arg) {
		char *end;
		long v = strtol(jobs_arg, &end, 10);
		if (*end || v < 1 || v > 256)
			return cli_usage("run: --jobs '%s': a number from 1 to 256", jobs_arg);
		r.max_jobs = (unsigned)v;
	} else {
		long nc = sysconf(_SC_NPROCESSORS_ONLN);
		r.max_jobs = nc > 0 && nc < 256 ? (unsigned)nc : 1;
	}
	int jm_rc = cli_job_max_s(&r.mo.job_max_s);
	if (jm_rc)
		return jm_rc;
	char **dists = NULL;
	size_t n_dists = 0;
	for (int i = optind; i < nargs; i++) {
		if (n_dists >= RUN_MAX_JOBS)
			break;
		dists = xrealloc(dists, (n_dists + 2) * sizeof *dists);
		dists[n_dists++] = resolve_dist(argv[i], r.quiet);
		dists[n_dists] = NULL;
	}
	struct pyti_err err = {0};
	for (size_t i = 0; i < n_reqfiles; i++) {
		if (read_requirements(reqfiles[i], 0, &dists, &n_dists, &err) < 0) {
			strv_free(dists);
			return cli_fail(&err);
		}
	}
	if (!n_dists) {
		strv_free(dists);
		if (n_reqfiles)
			return cli_usage("run: no requirement in %s", reqfiles[0]);
		return cli_usage("run: a distribution is needed: `pyti run DIST` (try 'pyti run --help')");
	}
	r.batch = n_dists > 1;
	if (r.junit && r.batch) {
		strv_free(dists);
		return cli_usage("run: --junit FILE takes one distribution (a batch's jobs keep their JUnit files in "
				 "STATE/runs/JOB/)");
	}
	if (r.junit && check_output_path("--junit", r.junit) != 0) {
		strv_free(dists);
		return PYTI_EXIT_USAGE;
	}
	/* the recipe and the image once, before any job: a bad one is exit 2 at once, with file:line */
	{
		_cleanup_recipe_ struct recipe *rec = NULL;
		_cleanup_(image_info_free) struct image_info img = {0};
		if (recipe_load(r.mo.recipe_path ? r.mo.recipe_path : "default", &rec, &err) < 0 ||
		    image_find(r.mo.state_dir, r.mo.suite, &img, &err) < 0) {
			strv_free(dists);
			return cli_fail(&err);
		}
	}
	_cleanup_free_ char *agent = cli_find_helper("pyti-agent");
	r.mo.agent_path = agent;
	if (r.verbose)
		pyti_log_level = pyti_log_level < PYTI_LOG_INFO ? PYTI_LOG_INFO : pyti_log_level;

	r.n = n_dists;
	r.jobs = xcalloc(n_dists, sizeof *r.jobs);
	for (size_t i = 0; i < n_dists; i++) {
		r.jobs[i].dist = dists[i];
		r.jobs[i].id = manager_new_job_id();
		r.jobs[i].fd = -1;
		r.jobs[i].efd = -1;
		r.jobs[i].in = (struct buf)BUF_INIT(RUN_LINE_MAX);
	}
	free(dists);
	if (r.max_jobs > r.n)
		r.max_jobs = (unsigned)r.n;

	if (!r.batch && strcmp(r.mo.backend, "vm") == 0) {
		/* here: the vm backend names its domain after this process (and cleans up after it) */
		struct job *j = &r.jobs[0];
		struct here_arg h = {&r, j};
		j->running = true;
		j->t0 = now_mono();
		j->result = run_job_here(&r, j, run_in_progress_here, &h, &j->exit_status);
		run_job_done(&r, j);
	} else {
		sigset_t ss;
		sigemptyset(&ss);
		sigaddset(&ss, SIGINT);
		sigaddset(&ss, SIGTERM);
		sigprocmask(SIG_BLOCK, &ss, NULL);
		signal(SIGPIPE, SIG_IGN);
		/* orphans of the jobs (a sandbox whose manager died) come here to be ended and reaped */
		prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
		if (r.batch)
			cli_record_begin(ctx, &r.mo); /* one run in the store for every job of the batch */
		run_loop(&r);
		if (r.sig)
			run_interrupt(&r);
	}

	int rc;
	if (r.batch) {
		rc = batch_report(&r);
	} else {
		struct job *j = &r.jobs[0];
		rc = j->exit_status;
		json_t *res = j->result;
		bool is_err = !res || strcmp(pj_str(res, "status", ""), "error") == 0;
		if (!is_err && r.junit && report_junit_write(res, r.junit, &err) < 0) {
			rc = cli_fail(&err);
		} else if (ctx->json) {
			if (res)
				cli_print_json(res);
		} else if (!is_err) {
			json_object_set_new(res, "command_s", json_real(now_mono() - r.t0));
			report_table(stdout, res, true);
			json_object_del(res, "command_s");
		}
		if (!is_err && json_object_get(res, "job_dir")) {
			_cleanup_free_ char *d = term_safe_dup(pj_str(res, "job_dir", ""), 0);
			fprintf(stderr, "pyti: job directory kept: %s\n", d);
		}
		fflush(stdout);
	}
	if (r.sig)
		rc = 128 + r.sig;
	for (size_t i = 0; i < r.n; i++) {
		free(r.jobs[i].dist);
		free(r.jobs[i].id);
		json_decref(r.jobs[i].result);
		buf_free(&r.jobs[i].in);
		if (r.jobs[i].fd >= 0)
			close(r.jobs[i].fd);
		if (r.jobs[i].efd >= 0)
			close(r.jobs[i].efd);
	}
	free(r.jobs);
	return rc;
}

/* pyti compare RUN_A RUN_B, pyti rerun RUN (issue 13): what changed between two runs of the store,
 * confirmed by running again. The verdicts are src/compare's (pure functions over the store's JSON);
 * this file reads the runs, adds each job's every test case from its stored JUnit files, runs jobs
 * again here (manager_run, like `pyti run`: nothing runs queued jobs locally yet) and prints. */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "compare.h"
#include "manager.h"
#include "store.h"

#define CMP_JUNIT_MAX (64u << 20)

/* A run by id or unique prefix: store_show's run shape. Unknown or not a run: usage (exit 2). */
static int load_run(struct store *st, const char *id, json_t **out, struct pyti_err *err)
{
	if (store_id_kind(id) == 'j' || (id[0] && id[0] != 'r'))
		return pyti_err_usage(err, "'%s' is not a run id (r + 16 hex digits, or a unique prefix)", id);
	int rc = store_show(st, id, out, err);
	if (rc == STORE_E_NOTFOUND || rc == STORE_E_INVALID) {
		err->status = PYTI_EXIT_USAGE;
		return -1;
	}
	return rc < 0 ? -1 : 0;
}

/* The job's every test case from the JUnit files its last attempt stored (the artefacts its tasks'
 * tests.junit name), as "cases"; nothing when there are none (compare then knows only failures). */
static void add_cases(struct store *st, json_t *job)
{
	const json_t *res = json_object_get(job, "results");
	const char *id = pj_str(job, "job_id", NULL);
	if (!id || !json_is_object(res))
		return;
	_cleanup_json_ json_t *shown = NULL;
	struct pyti_err err = {0};
	if (store_show(st, id, &shown, &err) < 0)
		return;
	const json_t *atts = json_object_get(json_object_get(shown, "job"), "attempts");
	const json_t *arts = json_object_get(json_array_get(atts, json_array_size(atts) - 1), "artefacts");
	json_t *cases = NULL;
	size_t i, k;
	json_t *t, *a;
	json_array_foreach(json_object_get(res, "tasks"), i, t) {
		const char *rel = pj_str(json_object_get(t, "tests"), "junit", NULL);
		if (!rel)
			continue;
		if (strncmp(rel, "out/", 4) == 0)
			rel += 4; /* runs/<job>/ keeps out/'s files at its top (artefact names) */
		json_array_foreach(arts, k, a) {
			if (strcmp(pj_str(a, "name", ""), rel) != 0)
				continue;
			_cleanup_buf_ struct buf b = BUF_INIT(CMP_JUNIT_MAX);
			_cleanup_json_ json_t *c = NULL;
			if (store_blob_get(st, pj_str(a, "sha256", ""), &b, &err) == 0)
				c = report_junit_cases_mem(b.data ? b.data : "", b.len, rel, &err);
			if (!c) {
				_cleanup_free_ char *m = term_safe_dup(pyti_err_str(&err), 0);
				log_warn("job %s: %s: only its failing tests are known (%s)", id, rel, m);
				continue;
			}
			if (!cases)
				cases = json_array();
			json_array_extend(cases, c);
		}
	}
	if (cases)
		json_object_set_new(job, "cases", cases);
}

static void add_all_cases(struct store *st, json_t *run)
{
	size_t i;
	json_t *j;
	json_array_foreach(json_object_get(run, "jobs"), i, j)
		add_cases(st, j);
}

/* store_show(job)'s detail as a store_results() job (what compare reads). */
static json_t *job_row(struct store *st, const char *job_id)
{
	_cleanup_json_ json_t *shown = NULL;
	struct pyti_err err = {0};
	if (store_show(st, job_id, &shown, &err) < 0)
		return NULL;
	const json_t *d = json_object_get(shown, "job");
	json_t *row = json_object();
	static const char *const keys[] = {"job_id",  "dist",	       "suite",	  "state",  "attempt",
					   "verdict", "failure_class", "results", "backend"};
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		json_object_set(row, keys[i], json_object_get(d, keys[i]) ? json_object_get(d, keys[i]) : json_null());
	add_cases(st, row);
	return row;
}

/* ---- running jobs again here ---- */

struct rerun_ctx {
	struct cli_ctx *cli;
	struct store *st;
	const char *recipe_path;
	const char *agent;
	bool quiet;
	double job_max_s; /* PYTI_JOB_MAX_S (cli_job_max_s), 0 = the manager's default */
};

/* A new local run linked to parent (the run its jobs come from). */
static int rerun_new(struct rerun_ctx *rc, const char *parent, const char *suite, const char *backend,
		     char run[STORE_ID_SIZE], struct pyti_err *err)
{
	const char *suites[] = {suite ? suite : "bookworm"};
	struct store_run_spec spec = {
		.suites = suites, .n_suites = 1, .backend = backend, .origin = "local", .parent = parent};
	return store_run_new(rc->st, &spec, run, err) < 0 ? -1 : 0;
}

/* Run one job of the store again (its dist, suite and backend) with manager_run, record it in run,
 * and return its row (NULL: not recorded; warned). */
static json_t *rerun_job(struct rerun_ctx *rc, const json_t *job, const char *run)
{
	const char *backend = pj_str(job, "backend", NULL);
	struct manager_opts mo = {.state_dir = rc->cli->state_dir,
				  .dist = pj_str(job, "dist", ""),
				  .suite = pj_str(job, "suite", "bookworm"),
				  .backend = backend && *backend ? backend : "ns",
				  .recipe_path = rc->recipe_path,
				  .agent_path = rc->agent,
				  .job_max_s = rc->job_max_s};
	if (!rc->quiet) {
		_cleanup_free_ char *d = term_safe_dup(mo.dist, 0);
		fprintf(stderr, "pyti: running %s (%s) again\n", d, mo.suite);
	}
	struct pyti_err err = {0};
	_cleanup_json_ json_t *res = NULL;
	int mrc = manager_run(&mo, &res, &err);
	if (mrc < 0 && err.status == PYTI_EXIT_USAGE) {
		_cleanup_free_ char *m = term_safe_dup(pyti_err_str(&err), 0);
		log_warn("cannot run %s again: %s", mo.dist, m);
		return NULL;
	}
	struct store_job_record r = {
		.dist = mo.dist,
		.suite = mo.suite,
		.backend = mo.backend,
		.results = mrc < 0 ? NULL : res,
		.error = mrc < 0 ? pyti_err_str(&err) : NULL,
		.fclass = mrc < 0 ? err.fclass : PYTI_FC_NONE,
		.artefact_dir = mrc < 0 ? NULL : pj_str(res, "logs", NULL),
	};
	char id[STORE_ID_SIZE];
	struct pyti_err e2 = {0};
	if (store_record_job(rc->st, run, &r, id, &e2) < 0) {
		_cleanup_free_ char *m = term_safe_dup(pyti_err_str(&e2), 0);
		log_warn("the rerun of %s is not recorded: %s", mo.dist, m);
		return NULL;
	}
	return job_row(rc->st, id);
}

/* The job of run with this id (NULL if none). */
static json_t *find_job(const json_t *run, const char *id)
{
	size_t i;
	json_t *j;
	json_array_foreach(json_object_get(run, "jobs"), i, j) {
		if (id && strcmp(pj_str(j, "job_id", ""), id) == 0)
			return j;
	}
	return NULL;
}

static void add_rerun(json_t *job, json_t *row)
{
	json_t *rr = json_object_get(job, "reruns");
	if (!rr) {
		rr = json_array();
		json_object_set_new(job, "reruns", rr);
	}
	json_array_append_new(rr, row);
}

/* --confirm: every regressed or fixed pair runs `times` more times on each side, interleaved
 * (A, B, A, B…), each in a fresh sandbox; the reruns go into two new runs linked to A and B. */
static int confirm(struct rerun_ctx *rc, json_t *a, json_t *b, const json_t *cmp, int times, json_t *confirm_runs,
		   struct pyti_err *err)
{
	char ra[STORE_ID_SIZE] = "", rb[STORE_ID_SIZE] = "";
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(cmp, "pairs"), i, p) {
		if (!compare_wants_confirm(p))
			continue;
		json_t *ja = find_job(a, pj_str(p, "a", NULL)), *jb = find_job(b, pj_str(p, "b", NULL));
		if (!ja || !jb)
			continue;
		if (!ra[0] && (rerun_new(rc, pj_str(json_object_get(a, "run"), "run_id", NULL),
					 pj_str(ja, "suite", NULL), NULL, ra, err) < 0 ||
			       rerun_new(rc, pj_str(json_object_get(b, "run"), "run_id", NULL),
					 pj_str(jb, "suite", NULL), NULL, rb, err) < 0))
			return -1;
		/* the store_results() row has no backend: take the job's own */
		_cleanup_json_ json_t *da = job_row(rc->st, pj_str(ja, "job_id", "")),
				      *db = job_row(rc->st, pj_str(jb, "job_id", ""));
		for (int k = 0; k < times; k++) {
			json_t *x = rerun_job(rc, da ? da : ja, ra), *y = rerun_job(rc, db ? db : jb, rb);
			if (x)
				add_rerun(ja, x);
			if (y)
				add_rerun(jb, y);
		}
	}
	if (ra[0])
		json_object_set_new(confirm_runs, "a", json_string(ra));
	if (rb[0])
		json_object_set_new(confirm_runs, "b", json_string(rb));
	return 0;
}

/* --control: the control run's jobs are more runs of A's configuration (A/A): each becomes a rerun
 * of A's job of the same dist and suite; the flake rates come from A with them. */
static json_t *attach_control(json_t *a, const json_t *control)
{
	_cleanup_json_ json_t *aa = json_pack("{s:O, s:[]}", "run", json_object_get(a, "run"), "jobs");
	size_t i, k;
	json_t *c, *j;
	json_array_foreach(json_object_get(control, "jobs"), i, c) {
		json_array_foreach(json_object_get(a, "jobs"), k, j) {
			if (strcmp(pj_str(j, "dist", ""), pj_str(c, "dist", "?")) == 0 &&
			    strcmp(pj_str(j, "suite", ""), pj_str(c, "suite", "?")) == 0) {
				add_rerun(j, json_deep_copy(c));
				break;
			}
		}
	}
	json_array_foreach(json_object_get(a, "jobs"), k, j)
		json_array_append(json_object_get(aa, "jobs"), j);
	return compare_control(aa);
}

/* The runs made again from run (pyti rerun, compare --confirm): their jobs become reruns of run's. */
static int attach_children(struct store *st, json_t *run, struct pyti_err *err)
{
	_cleanup_json_ json_t *kids = NULL;
	struct store_runs_query q = {.limit = 1000, .parent = pj_str(json_object_get(run, "run"), "run_id", "")};
	if (store_runs(st, &q, &kids, err) < 0)
		return -1;
	size_t i;
	json_t *k;
	json_array_foreach(json_object_get(kids, "runs"), i, k) {
		_cleanup_json_ json_t *kr = NULL;
		if (store_results(st, pj_str(k, "run_id", ""), &kr, err) < 0)
			return -1;
		add_all_cases(st, kr);
		size_t n;
		json_t *c, *j;
		json_array_foreach(json_object_get(kr, "jobs"), n, c) {
			size_t m;
			json_array_foreach(json_object_get(run, "jobs"), m, j) {
				if (strcmp(pj_str(j, "dist", ""), pj_str(c, "dist", "?")) == 0 &&
				    strcmp(pj_str(j, "suite", ""), pj_str(c, "suite", "?")) == 0) {
					add_rerun(j, json_incref(c));
					break;
				}
			}
		}
	}
	return 0;
}

/* `pyti compare --control RUN` alone: the flake rate of each package of RUN over RUN's jobs (a run
 * with each configuration several times) and the runs made again from it (`pyti rerun --all`). */
static int control_only(struct cli_ctx *ctx, const char *url, const char *control, bool markdown)
{
	struct pyti_err err = {0};
	_cleanup_store_ struct store *st = NULL;
	_cleanup_json_ json_t *run = NULL;
	if (cli_store_open(ctx, url, &st, &err) < 0 || load_run(st, control, &run, &err) < 0)
		return cli_fail(&err);
	add_all_cases(st, run);
	if (attach_children(st, run, &err) < 0)
		return cli_fail(&err);
	_cleanup_json_ json_t *out = compare_control(run);
	json_object_set_new(out, "run", json_string(pj_str(json_object_get(run, "run"), "run_id", "")));
	if (ctx->json) {
		cli_print_json(out);
		return 0;
	}
	size_t i;
	json_t *p;
	if (markdown)
		printf("## pyti control `%s`\n\n| distribution | image | runs | passed | flake rate |\n|---|---|---|---|---|\n",
		       pj_str(out, "run", ""));
	else
		printf("%-10s %5s %6s  %-10s %s\n", "FLAKE", "RUNS", "PASSED", "IMAGE", "DIST");
	json_array_foreach(json_object_get(out, "packages"), i, p) {
		_cleanup_free_ char *d = markdown ? NULL : term_safe_dup(pj_str(p, "dist", "?"), 0),
				    *su = term_safe_dup(pj_str(p, "suite", "?"), 0);
		if (markdown) {
			_cleanup_free_ char *dm = term_safe_dup(pj_str(p, "dist", "?"), 0);
			for (char *c = dm; *c; c++)
				if (*c == '`' || *c == '|')
					*c = '\'';
			printf("| `%s` | %s | %lld | %lld | %.0f%% |\n", dm, su, pj_int(p, "runs", 0),
			       pj_int(p, "passed", 0), 100 * pj_num(p, "flake_rate", 0));
		} else {
			printf("%9.0f%% %5lld %6lld  %-10s %s\n", 100 * pj_num(p, "flake_rate", 0),
			       pj_int(p, "runs", 0), pj_int(p, "passed", 0), su, d);
		}
	}
	json_array_foreach(json_object_get(out, "known_flaky"), i, p) {
		if (i == 0)
			fputs(markdown ? "\n### Known flaky tests\n\n" : "\nknown flaky tests:\n", stdout);
		_cleanup_free_ char *d = term_safe_dup(pj_str(p, "dist", "?"), 0),
				    *id = term_safe_dup(pj_str(p, "id", "?"), 0);
		if (markdown) {
			for (char *c = id; *c; c++)
				if (*c == '`' || *c == '|')
					*c = '\'';
			for (char *c = d; *c; c++)
				if (*c == '`' || *c == '|')
					*c = '\'';
			printf("- `%s` (`%s`): passed %lld of %lld runs\n", id, d, pj_int(p, "passed", 0),
			       pj_int(p, "runs", 0));
		} else {
			printf("  %3.0f%% pass (%lld of %lld)  %s  %s\n", 100 * pj_num(p, "pass_rate", 0),
			       pj_int(p, "passed", 0), pj_int(p, "runs", 0), d, id);
		}
	}
	fflush(stdout);
	return 0;
}

static void compare_usage(FILE *f)
{
	fputs("usage: pyti compare [OPTIONS] RUN_A RUN_B\n"
	      "       pyti compare --control RUN [--json|--markdown]\n\n"
	      "Pair the jobs of two runs of the store (the same distribution, or the same one across images)\n"
	      "and give each pair one verdict: regressed, fixed, still-passing, still-failing, spurious (a side\n"
	      "failed with OOM, Timeout, NoOutput, NoSpace, Crash, Infra or Network), flaky (its runs disagree),\n"
	      "broken-dependency (B failed because a dependency did not install or build), new, gone, pending.\n"
	      "Per pair the tests newly failing, newly passing, added and removed; failures grouped by cause\n"
	      "(exception type + innermost frame); tasks that got slower.\n\n"
	      "options:\n"
	      "      --json            the comparison as JSON (docs/contracts.md \"Compare\")\n"
	      "      --markdown        a Markdown report to paste into an issue tracker\n"
	      "      --confirm         run every regressed or fixed pair again here (N times each side,\n"
	      "                        interleaved, fresh sandboxes) and keep its verdict only if all agree\n"
	      "      --times N         reruns per side for --confirm (default 2)\n"
	      "      --control RUN     an A/A run (A's configuration again): its jobs count as reruns of A's,\n"
	      "                        and each package's flake rate and known-flaky tests are listed;\n"
	      "                        alone: the flake rates of RUN over its own jobs and the runs made\n"
	      "                        again from it (`pyti rerun --all --now RUN`)\n"
	      "      --slower X        a task is slower past X times its time or memory in A (default 1.5)\n"
	      "      --recipe FILE     the recipe for --confirm's reruns (default: the built-in one)\n"
	      "      --store URL       the store (default STATE/pyti.db, or PYTI_STORE)\n"
	      "  -q, --quiet           no progress on stderr\n"
	      "  -h, --help            this help\n\n"
	      "exit status: 0 no regression, 1 regressions (regressed or broken-dependency pairs),\n"
	      "2 usage (an unknown run), 3 the store could not be read.\n",
	      f);
}

/* The comparison as JSON, Markdown or a table; the exit status (1: regressions). */
static int compare_print(const struct cli_ctx *ctx, const json_t *cmp, bool markdown)
{
	if (ctx->json) {
		cli_print_json(cmp);
	} else if (markdown) {
		compare_markdown(stdout, cmp);
	} else {
		compare_table(stdout, cmp);
		const json_t *cr = json_object_get(cmp, "confirm_runs");
		if (json_object_size(cr))
			printf("reruns recorded as runs %s (of A) and %s (of B)\n", pj_str(cr, "a", "-"),
			       pj_str(cr, "b", "-"));
	}
	fflush(stdout);
	return pj_int(cmp, "regressions", 0) > 0 ? PYTI_EXIT_FAILED : PYTI_EXIT_OK;
}

int cmd_compare(struct cli_ctx *ctx, int argc, char **argv)
{
	enum {
		OPT_JSON = 256,
		OPT_MD,
		OPT_CONFIRM,
		OPT_TIMES,
		OPT_CONTROL,
		OPT_SLOWER,
		OPT_STORE
	};
	static const struct option opts[] = {
		{"json", no_argument, NULL, OPT_JSON},
		{"markdown", no_argument, NULL, OPT_MD},
		{"confirm", no_argument, NULL, OPT_CONFIRM},
		{"times", required_argument, NULL, OPT_TIMES},
		{"control", required_argument, NULL, OPT_CONTROL},
		{"slower", required_argument, NULL, OPT_SLOWER},
		{"recipe", required_argument, NULL, 'r'},
		{"store", required_argument, NULL, OPT_STORE},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	bool markdown = false, do_confirm = false, quiet = false;
	int times = 2;
	const char *control = NULL, *url = NULL, *recipe = NULL;
	struct compare_opts co = {0};
	int c;
	while ((c = cli_getopt("compare", argc, argv, "qh", opts)) != -1) {
		switch (c) {
		case OPT_JSON:
			ctx->json = true;
			break;
		case OPT_MD:
			markdown = true;
			break;
		case OPT_CONFIRM:
			do_confirm = true;
			break;
		case OPT_TIMES: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > 20)
				return cli_usage("compare: --times takes 1 to 20, not '%s'", optarg);
			times = (int)n;
			break;
		}
		case OPT_CONTROL:
			control = optarg;
			break;
		case OPT_SLOWER: {
			char *end;
			co.slower_ratio = strtod(optarg, &end);
			if (*end || !(co.slower_ratio > 1) || co.slower_ratio > 1000)
				return cli_usage("compare: --slower takes a factor above 1, not '%s'", optarg);
			break;
		}
		case 'r':
			recipe = optarg;
			break;
		case OPT_STORE:
			url = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			compare_usage(stdout);
			return 0;
		default:
			return PYTI_EXIT_USAGE;
		}
	}
	if (ctx->json && markdown)
		return cli_usage("compare: --json and --markdown exclude each other");
	if (optind == argc && control && !do_confirm)
		return control_only(ctx, url, control, markdown);
	if (optind > argc - 2)
		return cli_usage("compare: two run ids are needed: `pyti compare RUN_A RUN_B` (try 'pyti compare --help')");
	if (optind < argc - 2)
		return cli_usage("compare: unexpected operand '%s'", argv[optind + 2]);
	struct pyti_err err = {0};
	_cleanup_store_ struct store *st = NULL;
	_cleanup_json_ json_t *a = NULL, *b = NULL, *ctl = NULL, *control_out = NULL;
	if (cli_store_open(ctx, url, &st, &err) < 0 || load_run(st, argv[optind], &a, &err) < 0 ||
	    load_run(st, argv[optind + 1], &b, &err) < 0 || (control && load_run(st, control, &ctl, &err) < 0))
		return cli_fail(&err);
	add_all_cases(st, a);
	add_all_cases(st, b);
	if (ctl) {
		add_all_cases(st, ctl);
		control_out = attach_control(a, ctl);
		json_object_set_new(control_out, "run", json_string(pj_str(json_object_get(ctl, "run"), "run_id", "")));
	}
	_cleanup_json_ json_t *cmp = compare_runs(a, b, &co);
	if (!cmp)
		return cli_usage("compare: the runs could not be read");
	if (do_confirm) {
		_cleanup_free_ char *agent = cli_find_helper("pyti-agent");
		struct rerun_ctx rc = {.cli = ctx, .st = st, .recipe_path = recipe, .agent = agent, .quiet = quiet};
		int jm_rc = cli_job_max_s(&rc.job_max_s);
		if (jm_rc)
			return jm_rc;
		_cleanup_json_ json_t *runs = json_object();
		if (confirm(&rc, a, b, cmp, times, runs, &err) < 0)
			return cli_fail(&err);
		json_decref(cmp);
		cmp = compare_runs(a, b, &co);
		if (!cmp)
			return cli_usage("compare: the runs could not be read");
		json_object_set(cmp, "confirm_runs", runs);
	}
	if (control_out)
		json_object_set(cmp, "control", control_out);
	return compare_print(ctx, cmp, markdown);
}

/* ---- pyti rerun ---- */

static void rerun_usage(FILE *f)
{
	fputs("usage: pyti rerun [OPTIONS] RUN\n\n"
	      "Run some jobs of RUN again, as a new run linked to it (its \"parent\"): by default (--failed)\n"
	      "those that did not pass. The new run is queued in the store for a worker; with --now its jobs\n"
	      "run here, one after the other, as `pyti run` runs them.\n\n"
	      "options:\n"
	      "      --failed          the jobs whose verdict is not passed or no-tests (the default)\n"
	      "      --spurious        the jobs that failed with an infrastructure or resource class\n"
	      "      --flaky           the jobs whose runs disagree: RUN's own jobs of one distribution and\n"
	      "                        image, with those of the runs made again from RUN\n"
	      "      --all             every job (queued without --recipe: with the run's own recipe,\n"
	      "                        backend, environment and arguments)\n"
	      "      --now             run them here instead of queuing them\n"
	      "      --recipe FILE     the recipe (queued: its text goes with the run; default: built-in)\n"
	      "      --json            print {\"runs\": [{\"run_id\", \"parent\", \"jobs\"}]}\n"
	      "      --store URL       the store (default STATE/pyti.db, or PYTI_STORE)\n"
	      "  -q, --quiet           no progress on stderr\n"
	      "  -h, --help            this help\n\n"
	      "exit status: 0 queued (or --now: every job passed), 1 --now: a job failed, 2 usage (an unknown\n"
	      "run, no job to run again), 3 infrastructure.\n",
	      f);
}

enum rerun_sel {
	SEL_FAILED,
	SEL_SPURIOUS,
	SEL_FLAKY,
	SEL_ALL
};

static bool job_passed(const json_t *j)
{
	const char *v = pj_str(j, "verdict", "");
	return strcmp(v, "passed") == 0 || strcmp(v, "no-tests") == 0;
}

/* Jobs of run (and of its child runs) per dist+suite: does any of them disagree on passing? */
static bool job_flaky(const json_t *job, const json_t *all_jobs)
{
	bool pass = false, fail = false;
	size_t i;
	json_t *j;
	json_array_foreach(all_jobs, i, j) {
		if (strcmp(pj_str(j, "dist", ""), pj_str(job, "dist", "?")) != 0 ||
		    strcmp(pj_str(j, "suite", ""), pj_str(job, "suite", "?")) != 0)
			continue;
		const char *st = pj_str(j, "state", "");
		if ((strcmp(st, "done") != 0 && strcmp(st, "failed") != 0) || compare_job_resource_class(j))
			continue;
		if (job_passed(j))
			pass = true;
		else
			fail = true;
	}
	return pass && fail;
}

/* The jobs of run that sel picks; --flaky also reads the runs made again from it. NULL with err. */
static json_t *rerun_pick(struct store *st, const json_t *run, enum rerun_sel sel, struct pyti_err *err)
{
	const char *parent = pj_str(json_object_get(run, "run"), "run_id", "");
	/* --flaky: this run's jobs with those of the runs made again from it */
	_cleanup_json_ json_t *all_jobs = json_deep_copy(json_object_get(run, "jobs"));
	if (sel == SEL_FLAKY) {
		_cleanup_json_ json_t *kids = NULL;
		struct store_runs_query q = {.limit = 1000, .parent = parent};
		if (store_runs(st, &q, &kids, err) < 0)
			return NULL;
		size_t i;
		json_t *k;
		json_array_foreach(json_object_get(kids, "runs"), i, k) {
			_cleanup_json_ json_t *kr = NULL;
			if (store_status(st, pj_str(k, "run_id", ""), &kr, err) < 0)
				return NULL;
			json_array_extend(all_jobs, json_object_get(kr, "jobs"));
		}
	}
	json_t *picked = json_array();
	size_t i;
	json_t *j;
	json_array_foreach(json_object_get(run, "jobs"), i, j) {
		const char *state = pj_str(j, "state", "");
		bool ended = strcmp(state, "done") == 0 || strcmp(state, "failed") == 0;
		bool take = sel == SEL_ALL	  ? true
			    : sel == SEL_FAILED	  ? ended && !job_passed(j)
			    : sel == SEL_SPURIOUS ? ended && compare_job_resource_class(j) != NULL
						  : job_flaky(j, all_jobs);
		if (take)
			json_array_append(picked, j);
	}
	return picked;
}

/* --now: the picked jobs again here, one after the other, as one new run recorded under parent;
 * its row onto out's "runs". The exit status (1 a job failed, 3 one could not run), or -1 with err. */
static int rerun_here(struct rerun_ctx *rc, const char *parent, const json_t *picked, json_t *out,
		      struct pyti_err *err)
{
	int status = PYTI_EXIT_OK;
	char nr[STORE_ID_SIZE];
	if (rerun_new(rc, parent, pj_str(json_array_get(picked, 0), "suite", NULL), NULL, nr, err) < 0)
		return -1;
	json_t *ids = json_array();
	size_t i;
	json_t *j;
	json_array_foreach(picked, i, j) {
		_cleanup_json_ json_t *d = job_row(rc->st, pj_str(j, "job_id", ""));
		_cleanup_json_ json_t *row = rerun_job(rc, d ? d : j, nr);
		if (!row) {
			status = PYTI_EXIT_INFRA;
			continue;
		}
		json_array_append_new(ids, json_pack("{s:s?, s:s?, s:s?}", "job_id", pj_str(row, "job_id", NULL), "dist",
						     pj_str(row, "dist", NULL), "verdict", pj_str(row, "verdict", NULL)));
		if (!job_passed(row) && status == PYTI_EXIT_OK)
			status = PYTI_EXIT_FAILED;
	}
	json_array_append_new(json_object_get(out, "runs"),
			      json_pack("{s:s, s:s, s:o}", "run_id", nr, "parent", parent, "jobs", ids));
	return status;
}

/* Queued, some jobs: their dists and images (the run's recipe is --recipe's or the built-in one),
 * one run per image (a run is dists × images); each run's row onto out's "runs". */
static int rerun_queue_some(struct store *st, const char *parent, const char *recipe, const json_t *picked,
			    json_t *out, struct pyti_err *err)
{
	_cleanup_buf_ struct buf rtext = BUF_INIT(1u << 20);
	if (recipe && read_file(recipe, &rtext, err) < 0)
		return -1;
	_cleanup_json_ json_t *done_suites = json_object();
	size_t i;
	json_t *j;
	json_array_foreach(picked, i, j) {
		const char *suite = pj_str(j, "suite", "bookworm");
		if (json_object_get(done_suites, suite))
			continue;
		json_object_set_new(done_suites, suite, json_true());
		size_t n = 0, k;
		json_t *x;
		_cleanup_free_ const char **dists = calloc(json_array_size(picked), sizeof *dists);
		json_array_foreach(picked, k, x) {
			if (strcmp(pj_str(x, "suite", "bookworm"), suite) == 0)
				dists[n++] = pj_str(x, "dist", "");
		}
		const char *suites[] = {suite};
		struct store_run_spec spec = {.dists = dists,
					      .n_dists = n,
					      .suites = suites,
					      .n_suites = 1,
					      .recipe = recipe ? rtext.data : NULL,
					      .parent = parent};
		_cleanup_json_ json_t *sub = NULL;
		if (store_submit(st, &spec, &sub, err) < 0)
			return -1;
		json_array_append_new(json_object_get(out, "runs"),
				      json_pack("{s:O, s:s, s:O}", "run_id", json_object_get(sub, "run_id"), "parent",
						parent, "jobs", json_object_get(sub, "jobs")));
	}
	return 0;
}

/* What rerun made, one line a run and one a job. */
static void rerun_print(const json_t *out, const char *parent, bool now)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(out, "runs"), i, r) {
		printf("%s run %s (from %s): %zu job%s\n", now ? "ran" : "queued", pj_str(r, "run_id", "?"), parent,
		       json_array_size(json_object_get(r, "jobs")),
		       json_array_size(json_object_get(r, "jobs")) == 1 ? "" : "s");
		size_t k;
		json_t *x;
		json_array_foreach(json_object_get(r, "jobs"), k, x) {
			if (!json_is_object(x))
				continue;
			printf("  %s ", pj_str(x, "job_id", "?"));
			_cleanup_free_ char *d = term_safe_dup(pj_str(x, "dist", "?"), 0);
			printf("%s %s\n", d, pj_str(x, "verdict", "-"));
		}
	}
}

int cmd_rerun(struct cli_ctx *ctx, int argc, char **argv)
{
	enum {
		OPT_FAILED = 256,
		OPT_SPURIOUS,
		OPT_FLAKY,
		OPT_ALL,
		OPT_NOW,
		OPT_JSON,
		OPT_STORE
	};
	static const struct option opts[] = {
		{"failed", no_argument, NULL, OPT_FAILED},
		{"spurious", no_argument, NULL, OPT_SPURIOUS},
		{"flaky", no_argument, NULL, OPT_FLAKY},
		{"all", no_argument, NULL, OPT_ALL},
		{"now", no_argument, NULL, OPT_NOW},
		{"recipe", required_argument, NULL, 'r'},
		{"json", no_argument, NULL, OPT_JSON},
		{"store", required_argument, NULL, OPT_STORE},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	enum rerun_sel sel = SEL_FAILED;
	bool now = false, quiet = false;
	const char *url = NULL, *recipe = NULL;
	int c;
	while ((c = cli_getopt("rerun", argc, argv, "qh", opts)) != -1) {
		switch (c) {
		case OPT_FAILED:
			sel = SEL_FAILED;
			break;
		case OPT_SPURIOUS:
			sel = SEL_SPURIOUS;
			break;
		case OPT_FLAKY:
			sel = SEL_FLAKY;
			break;
		case OPT_ALL:
			sel = SEL_ALL;
			break;
		case OPT_NOW:
			now = true;
			break;
		case 'r':
			recipe = optarg;
			break;
		case OPT_JSON:
			ctx->json = true;
			break;
		case OPT_STORE:
			url = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case 'h':
			rerun_usage(stdout);
			return 0;
		default:
			return PYTI_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return cli_usage("rerun: a run id is needed: `pyti rerun RUN` (try 'pyti rerun --help')");
	if (optind < argc - 1)
		return cli_usage("rerun: unexpected operand '%s'", argv[optind + 1]);
	struct pyti_err err = {0};
	_cleanup_store_ struct store *st = NULL;
	_cleanup_json_ json_t *run = NULL;
	if (cli_store_open(ctx, url, &st, &err) < 0 || load_run(st, argv[optind], &run, &err) < 0)
		return cli_fail(&err);
	const char *parent = pj_str(json_object_get(run, "run"), "run_id", "");
	_cleanup_json_ json_t *picked = rerun_pick(st, run, sel, &err);
	if (!picked)
		return cli_fail(&err);
	if (json_array_size(picked) == 0) {
		static const char *const what[] = {"failed", "spurious", "flaky", ""};
		return cli_usage("rerun: run %s has no %s job to run again", parent, what[sel]);
	}

	_cleanup_json_ json_t *out = json_pack("{s:[]}", "runs");
	int status = PYTI_EXIT_OK;
	if (now) {
		_cleanup_free_ char *agent = cli_find_helper("pyti-agent");
		struct rerun_ctx rc = {.cli = ctx, .st = st, .recipe_path = recipe, .agent = agent, .quiet = quiet};
		int jm_rc = cli_job_max_s(&rc.job_max_s);
		if (jm_rc)
			return jm_rc;
		status = rerun_here(&rc, parent, picked, out, &err);
		if (status < 0)
			return cli_fail(&err);
	} else if (!recipe && json_array_size(picked) == json_array_size(json_object_get(run, "jobs"))) {
		/* every job: the store's own rerun keeps the run's recipe, backend, env, posargs, priority */
		_cleanup_json_ json_t *sub = NULL;
		if (store_rerun(st, parent, &sub, &err) < 0)
			return cli_fail(&err);
		json_array_append_new(json_object_get(out, "runs"),
				      json_pack("{s:O, s:s, s:O}", "run_id", json_object_get(sub, "run_id"), "parent",
						parent, "jobs", json_object_get(sub, "jobs")));
	} else if (rerun_queue_some(st, parent, recipe, picked, out, &err) < 0) {
		return cli_fail(&err);
	}
	if (ctx->json)
		cli_print_json(out);
	else
		rerun_print(out, parent, now);
	fflush(stdout);
	return status;
}

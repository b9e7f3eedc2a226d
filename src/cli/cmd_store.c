/* pyti runs, pyti show RUN|JOB, pyti store copy SRC DST: reading back the store (docs/contracts.md
 * "Store"). Everything shown came from a tested package at some point (dist names, task output,
 * test ids, messages): escaped for the terminal like the run's own table. */
#include <getopt.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "manager.h"
#include "store.h"

static int store_fail(const struct pyti_err *err)
{
	return cli_fail(err);
}

/* "done 2, queued 1": the non-zero members of an object of counts */
static void put_counts(const json_t *o, int width)
{
	_cleanup_buf_ struct buf b = BUF_INIT(256);
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)o, k, v) {
		if (json_integer_value(v) > 0)
			buf_printf(&b, "%s%s %lld", b.len ? ", " : "", k, (long long)json_integer_value(v));
	}
	printf("%-*s", width, b.len ? b.data : "-");
}

static void runs_usage(FILE *f)
{
	fputs("usage: pyti runs [--json] [--limit N] [--dist NAME] [--store URL]\n\n"
	      "List the runs in the store, newest first: jobs by state and by verdict, and their first\n"
	      "distributions. The store is STATE/pyti.db unless --store (or PYTI_STORE) names another\n"
	      "(a file, sqlite:PATH, postgresql://…, or libpq key=value).\n",
	      f);
}

int cmd_runs(struct cli_ctx *ctx, int argc, char **argv)
{
	enum {
		OPT_JSON = 256,
		OPT_LIMIT,
		OPT_DIST,
		OPT_STORE
	};
	static const struct option opts[] = {
		{"json", no_argument, NULL, OPT_JSON},
		{"limit", required_argument, NULL, OPT_LIMIT},
		{"dist", required_argument, NULL, OPT_DIST},
		{"store", required_argument, NULL, OPT_STORE},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct store_runs_query q = {.limit = 20};
	const char *url = NULL;
	int c;
	while ((c = cli_getopt("runs", argc, argv, "h", opts)) != -1) {
		switch (c) {
		case OPT_JSON:
			ctx->json = true;
			break;
		case OPT_LIMIT: {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > 10000)
				return cli_usage("runs: --limit takes 1 to 10000, not '%s'", optarg);
			q.limit = (int)n;
			break;
		}
		case OPT_DIST:
			q.dist = optarg;
			break;
		case OPT_STORE:
			url = optarg;
			break;
		case 'h':
			runs_usage(stdout);
			return 0;
		default:
			return PYTI_EXIT_USAGE;
		}
	}
	if (optind != argc)
		return cli_usage("runs: unexpected operand '%s' (try 'pyti runs --help')", argv[optind]);
	struct pyti_err err = {0};
	_cleanup_store_ struct store *st = NULL;
	_cleanup_json_ json_t *out = NULL;
	if (cli_store_open(ctx, url, &st, &err) < 0 || store_runs(st, &q, &out, &err) < 0)
		return store_fail(&err);
	if (ctx->json) {
		cli_print_json(out);
		return 0;
	}
	json_t *runs = json_object_get(out, "runs"), *r;
	if (json_array_size(runs) == 0) {
		printf("no runs in %s\n", store_describe(st));
		return 0;
	}
	printf("%-18s %-21s %-7s %5s  %-22s %-32s %s\n", "RUN", "CREATED", "ORIGIN", "JOBS", "STATES", "VERDICTS",
	       "DISTS");
	size_t i;
	json_array_foreach(runs, i, r) {
		printf("%-18s %-21s ", pj_str(r, "run_id", "?"), pj_str(r, "created", "?"));
		cli_put_safe(pj_str(r, "origin", "-"), 7);
		printf(" %5lld  ", pj_int(r, "jobs", 0));
		put_counts(json_object_get(r, "counts"), 22);
		putchar(' ');
		put_counts(json_object_get(r, "verdicts"), 32);
		putchar(' ');
		size_t k;
		json_t *d;
		json_array_foreach(json_object_get(r, "dists"), k, d) {
			if (k)
				fputs(", ", stdout);
			cli_put_safe(json_string_value(d), 0);
		}
		if (pj_int(r, "jobs", 0) > (long long)json_array_size(json_object_get(r, "dists")))
			fputs(", …", stdout);
		putchar('\n');
	}
	return 0;
}

static void show_usage(FILE *f)
{
	fputs("usage: pyti show RUN|JOB [--json] [--store URL]\n"
	      "       pyti show JOB --artefact NAME [--store URL]\n\n"
	      "Read a run (r…: its jobs, their states and verdicts) or a job (j…: its attempts, task\n"
	      "results, failed test cases and artefacts, and the task table `pyti run` printed) back from\n"
	      "the store. A unique prefix of an id (at least 5 characters) will do. --artefact NAME\n"
	      "writes one of the job's kept files (e.g. logs/test.log, results.json) to stdout.\n",
	      f);
}

static void show_run(const json_t *out)
{
	const json_t *run = json_object_get(out, "run");
	printf("run %s, created %s (%s), %lld jobs\n  states:   ", pj_str(run, "run_id", "?"),
	       pj_str(run, "created", "?"), pj_str(run, "origin", "?"), pj_int(run, "jobs", 0));
	put_counts(json_object_get(run, "counts"), 0);
	fputs("\n  verdicts: ", stdout);
	put_counts(json_object_get(run, "verdicts"), 0);
	if (pj_str(run, "parent", NULL)) /* made again from another run (pyti rerun, compare --confirm) */
		printf("\n  rerun of: %s", pj_str(run, "parent", ""));
	printf("\n%-18s %-10s %-8s %-9s %-13s %-9s %s\n", "JOB", "STATE", "ATTEMPT", "SUITE", "VERDICT", "CLASS",
	       "DIST");
	size_t i;
	json_t *j;
	json_array_foreach(json_object_get(out, "jobs"), i, j) {
		printf("%-18s %-10s %-8lld ", pj_str(j, "job_id", "?"), pj_str(j, "state", "?"),
		       pj_int(j, "attempt", 0));
		cli_put_safe(pj_str(j, "suite", "-"), 9);
		printf(" %-13s ", pj_str(j, "verdict", "-"));
		cli_put_safe(pj_str(j, "failure_class", "-"), 9);
		putchar(' ');
		cli_put_safe(pj_str(j, "dist", "?"), 0);
		putchar('\n');
	}
}

static void show_job(const json_t *out)
{
	const json_t *job = json_object_get(out, "job");
	printf("job %s of run %s: ", pj_str(job, "job_id", "?"), pj_str(job, "run_id", "?"));
	cli_put_safe(pj_str(job, "dist", "?"), 0);
	fputs(" on ", stdout);
	cli_put_safe(pj_str(job, "suite", "?"), 0);
	printf("\n  state %s, verdict %s, attempt %lld of %lld", pj_str(job, "state", "?"), pj_str(job, "verdict", "-"),
	       pj_int(job, "attempt", 0), pj_int(job, "max_attempts", 0));
	if (pj_str(job, "failure_class", NULL)) {
		fputs(", class ", stdout);
		cli_put_safe(pj_str(job, "failure_class", NULL), 0);
	}
	printf("\n  created %s, finished %s\n", pj_str(job, "created", "-"), pj_str(job, "finished", "-"));
	if (pj_str(job, "error", NULL)) {
		fputs("  error: ", stdout);
		cli_put_safe(pj_str(job, "error", NULL), 0);
		putchar('\n');
	}
	size_t i, k;
	json_t *a, *x;
	json_array_foreach(json_object_get(job, "attempts"), i, a) {
		printf("attempt %lld: %s", pj_int(a, "attempt", 0), pj_str(a, "outcome", "running"));
		if (pj_str(a, "worker_id", NULL))
			printf(" on worker %s", pj_str(a, "worker_id", NULL));
		printf(" (%s → %s)\n", pj_str(a, "started", "-"), pj_str(a, "ended", "-"));
		json_array_foreach(json_object_get(a, "testcases"), k, x) {
			fputs("  ", stdout);
			cli_put_safe(pj_str(x, "outcome", "?"), 7);
			putchar(' ');
			cli_put_safe(pj_str(x, "id", "?"), 0);
			if (pj_str(x, "message", NULL)) {
				fputs(": ", stdout);
				cli_put_safe(pj_str(x, "message", NULL), 0);
			}
			putchar('\n');
		}
		json_array_foreach(json_object_get(a, "artefacts"), k, x) {
			printf("  artefact %.12s %10lld  ", pj_str(x, "sha256", "?"), pj_int(x, "size", 0));
			cli_put_safe(pj_str(x, "name", "?"), 0);
			putchar('\n');
		}
	}
	const json_t *res = json_object_get(job, "results");
	if (json_is_array(json_object_get(res, "tasks")))
		report_table(stdout, res, false);
}

/* One artefact of the job's last attempt that has it, to stdout: the bytes as stored into a pipe or
 * file, escaped for a terminal (a package wrote them). */
static int show_artefact(struct store *st, const json_t *out, const char *name)
{
	const json_t *job = json_object_get(out, "job");
	if (!job)
		return cli_usage("show: --artefact needs a job id (j…), not a run");
	const char *sha = NULL;
	size_t i, k;
	json_t *a, *x;
	json_array_foreach(json_object_get(job, "attempts"), i, a) {
		json_array_foreach(json_object_get(a, "artefacts"), k, x) {
			if (strcmp(pj_str(x, "name", ""), name) == 0)
				sha = pj_str(x, "sha256", NULL);
		}
	}
	if (!sha)
		return cli_usage("show: job %s has no artefact '%s' (`pyti show JOB` lists them)",
				 pj_str(job, "job_id", "?"), name);
	struct pyti_err err = {0};
	_cleanup_buf_ struct buf b = BUF_INIT(0);
	if (store_blob_get(st, sha, &b, &err) < 0)
		return store_fail(&err);
	if (isatty(1))
		term_put_safe(stdout, b.data ? b.data : "", b.len, TERM_KEEP_NEWLINES);
	else if (b.len && fwrite(b.data, 1, b.len, stdout) != b.len)
		return cli_usage("show: cannot write to stdout");
	return fflush(stdout) == 0 ? 0 : PYTI_EXIT_INFRA;
}

int cmd_show(struct cli_ctx *ctx, int argc, char **argv)
{
	enum {
		OPT_JSON = 256,
		OPT_STORE,
		OPT_ARTEFACT
	};
	static const struct option opts[] = {
		{"json", no_argument, NULL, OPT_JSON},
		{"store", required_argument, NULL, OPT_STORE},
		{"artefact", required_argument, NULL, OPT_ARTEFACT},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *url = NULL, *artefact = NULL;
	int c;
	while ((c = cli_getopt("show", argc, argv, "h", opts)) != -1) {
		switch (c) {
		case OPT_JSON:
			ctx->json = true;
			break;
		case OPT_STORE:
			url = optarg;
			break;
		case OPT_ARTEFACT:
			artefact = optarg;
			break;
		case 'h':
			show_usage(stdout);
			return 0;
		default:
			return PYTI_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return cli_usage("show: a run or job id is needed: `pyti show RUN|JOB` (try 'pyti show --help')");
	if (optind != argc - 1)
		return cli_usage("show: unexpected operand '%s' (try 'pyti show --help')", argv[optind + 1]);
	struct pyti_err err = {0};
	_cleanup_store_ struct store *st = NULL;
	_cleanup_json_ json_t *out = NULL;
	if (cli_store_open(ctx, url, &st, &err) < 0 || store_show(st, argv[optind], &out, &err) < 0)
		return store_fail(&err);
	if (artefact)
		return show_artefact(st, out, artefact);
	if (ctx->json)
		cli_print_json(out);
	else if (json_object_get(out, "job"))
		show_job(out);
	else
		show_run(out);
	return 0;
}

static void store_usage(FILE *f)
{
	fputs("usage: pyti store copy [--json] SRC DST\n\n"
	      "Copy every run of the store SRC that DST does not have (with its jobs, attempts, task\n"
	      "results, test cases, artefacts and their blobs) into DST, e.g. a local history into a\n"
	      "shared PostgreSQL: pyti store copy ~/.cache/pyti/pyti.db postgresql://host/pyti.\n"
	      "Ids are global, so copying twice, or from several machines, merges without duplicates.\n"
	      "SRC and DST: a file, sqlite:PATH, postgresql://…, postgres://…, or libpq key=value.\n",
	      f);
}

int cmd_store(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int c;
	while ((c = cli_getopt("store", argc, argv, "h", opts)) != -1) {
		switch (c) {
		case 'j':
			ctx->json = true;
			break;
		case 'h':
			store_usage(stdout);
			return 0;
		default:
			return PYTI_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return cli_usage("store: a subcommand is needed: `pyti store copy SRC DST` (try 'pyti store --help')");
	if (strcmp(argv[optind], "copy") != 0)
		return cli_usage("store: unknown subcommand '%s' (copy)", argv[optind]);
	if (argc - optind < 3)
		return cli_usage("store copy: SRC and DST are needed: `pyti store copy SRC DST`");
	if (argc - optind > 3)
		return cli_usage("store copy: unexpected operand '%s'", argv[optind + 3]);
	struct pyti_err err = {0};
	_cleanup_store_ struct store *src = NULL, *dst = NULL;
	if (store_open_existing(argv[optind + 1], &src, &err) < 0 || store_open(argv[optind + 2], &dst, &err) < 0)
		return store_fail(&err);
	struct store_copy_stats s;
	int rc = store_copy(src, dst, &s, &err);
	if (ctx->json) {
		_cleanup_json_ json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:b}", "runs", (json_int_t)s.runs,
						     "runs_skipped", (json_int_t)s.runs_skipped, "jobs",
						     (json_int_t)s.jobs, "blobs", (json_int_t)s.blobs, "complete",
						     rc == 0);
		cli_print_json(j);
	} else {
		printf("copied %ld runs (%ld jobs, %ld blobs) from %s to %s; %ld runs were there already\n", s.runs,
		       s.jobs, s.blobs, store_describe(src), store_describe(dst), s.runs_skipped);
	}
	return rc < 0 ? store_fail(&err) : 0;
}

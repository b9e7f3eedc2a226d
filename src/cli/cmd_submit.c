/* pyti submit / status / results / cancel: a run of many distributions on a master, over its
 * JSON-RPC API (docs/rpc.md), or — without --master — in the local store (STATE/pyti.db, or
 * --store URL) directly, with the same shapes. */
#include <errno.h>
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "recipe.h"
#include "store.h"
#include "worker.h"

#define REQ_FILE_MAX (16u << 20)
#define RECIPE_MAX (1u << 20)

static const char *master_url(const char *opt)
{
	return opt ? opt : getenv("PYTI_MASTER");
}

/* Where the command goes: a master over JSON-RPC, or the store itself. */
struct target {
	struct wrpc_client *c;
	struct store *st;
};

static void target_close(struct target *t)
{
	wrpc_free(t->c);
	store_close(t->st);
}

static int target_open(struct cli_ctx *ctx, const char *cmd, const char *url, const char *store_url,
		       const char *token_file, bool need_token, struct target *t)
{
	struct pyti_err err = {0};
	*t = (struct target){0};
	if (!url || !*url) { /* the command's --store, the global one, $PYTI_STORE, STATE/pyti.db */
		if (cli_store_open(ctx, store_url, &t->st, &err) < 0)
			return cli_fail(&err);
		return 0;
	}
	if (store_url)
		return cli_usage("%s: --store is for the local store, not with --master", cmd);
	_cleanup_free_ char *token = NULL;
	if (wrpc_user_token(token_file, &token, &err) < 0)
		return cli_fail(&err);
	if (need_token && !token)
		return cli_usage("%s: a user token is needed: --token-file FILE or $PYTI_TOKEN_FILE", cmd);
	t->c = wrpc_new(url, token, 120, &err);
	if (!t->c)
		return cli_fail(&err);
	return 0;
}

static int local_submit(struct store *st, json_t *p, json_t **res, struct pyti_err *err)
{
	json_t *dists = json_object_get(p, "dists"), *images = json_object_get(p, "images");
	size_t nd = json_array_size(dists), ni = json_array_size(images);
	_cleanup_free_ const char **d = xcalloc(nd + 1, sizeof *d), **im = xcalloc(ni + 1, sizeof *im);
	for (size_t i = 0; i < nd; i++)
		d[i] = json_string_value(json_array_get(dists, i));
	for (size_t i = 0; i < ni; i++)
		im[i] = json_string_value(json_array_get(images, i));
	struct store_run_spec spec = {
		.dists = d,
		.n_dists = nd,
		.suites = im,
		.n_suites = ni,
		.recipe = pj_str(p, "recipe", NULL),
		.recipe_name = pj_str(p, "recipe_name", NULL),
		.priority = (int)pj_int(p, "priority", 0),
		.origin = "submit",
	};
	return store_submit(st, &spec, res, err) < 0 ? -1 : 0;
}

/* One call, either way. The local forms take the same params and give the same results. */
static int target_call(struct target *t, const char *method, json_t *p, json_t **res, struct pyti_err *err)
{
	*res = NULL;
	if (t->c)
		return wrpc_call(t->c, method, p, res, err);
	int rc;
	if (strcmp(method, "submit") == 0) {
		rc = local_submit(t->st, p, res, err);
	} else if (strcmp(method, "status") == 0) {
		rc = store_status(t->st, pj_str(p, "run_id", ""), res, err);
	} else if (strcmp(method, "results") == 0) {
		rc = store_results(t->st, pj_str(p, "run_id", ""), res, err);
	} else if (strcmp(method, "cancel") == 0) {
		int n = 0;
		const char *id = pj_str(p, "run_id", pj_str(p, "job_id", ""));
		rc = store_cancel(t->st, id, &n, err);
		if (rc == 0)
			*res = json_pack("{s:i}", "cancelled", n);
	} else {
		return pyti_err_set(err, 0, "%s: not a local command", method);
	}
	return rc < 0 ? -1 : 0;
}

/* ---- submit ---- */

static int read_reqs(const char *path, json_t *dists, struct pyti_err *err)
{
	_cleanup_buf_ struct buf b = BUF_INIT(REQ_FILE_MAX);
	if (read_file(path, &b, err) < 0) {
		err->status = PYTI_EXIT_USAGE;
		return -1;
	}
	char *p = b.data ? b.data : "";
	int lineno = 0;
	while (*p) {
		char *nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		lineno++;
		char *hash = strchr(p, '#');
		if (hash)
			*hash = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		size_t n = strlen(p);
		while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'))
			p[--n] = '\0';
		if (n) {
			if (p[0] == '-')
				return pyti_err_usage(err,
						      "%s:%d: '%s': pip options are not requirements (one "
						      "requirement a line)",
						      path, lineno, p);
			json_array_append_new(dists, pj_string_lossy(p, n));
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	return 0;
}

static void submit_usage(FILE *f)
{
	fputs("usage: pyti submit [--master URL | --store URL] [OPTIONS] DIST... | -r FILE\n\n"
	      "Queue a run of one job per distribution (× image) on a master and print its run id.\n\n"
	      "options:\n"
	      "  -m, --master URL      the master (default $PYTI_MASTER; none: the local store, where a\n"
	      "                        `pyti master` on that store hands the jobs to workers)\n"
	      "      --store URL       the local store (default STATE/pyti.db; postgresql://…)\n"
	      "  -t, --token-file F    user token (default $PYTI_TOKEN_FILE)\n"
	      "  -r, --requirements F  distributions from F, one requirement a line (# comments)\n"
	      "  -i, --image SUITE     guest image (repeatable; default bookworm)\n"
	      "      --recipe FILE     INI recipe (default: the built-in one); checked here first\n"
	      "  -p, --priority N      lower runs first (default 0)\n"
	      "      --json            print the master's answer (run id and job ids) as JSON\n"
	      "  -h, --help            this help\n",
	      f);
}

int cmd_submit(struct cli_ctx *ctx, int argc, char **argv)
{
	enum {
		OPT_RECIPE = 256,
		OPT_JSON,
		OPT_STORE
	};
	static const struct option opts[] = {
		{"master", required_argument, NULL, 'm'},
		{"token-file", required_argument, NULL, 't'},
		{"store", required_argument, NULL, OPT_STORE},
		{"requirements", required_argument, NULL, 'r'},
		{"image", required_argument, NULL, 'i'},
		{"recipe", required_argument, NULL, OPT_RECIPE},
		{"priority", required_argument, NULL, 'p'},
		{"json", no_argument, NULL, OPT_JSON},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *master = NULL, *token_file = NULL, *recipe = NULL, *store_url = NULL;
	_cleanup_json_ json_t *dists = json_array(), *images = json_array();
	long long priority = 0;
	struct pyti_err err = {0};
	int c;
	while ((c = cli_getopt("submit", argc, argv, "m:t:r:i:p:h", opts)) != -1) {
		switch (c) {
		case 'm':
			master = optarg;
			break;
		case 't':
			token_file = optarg;
			break;
		case 'r':
			if (read_reqs(optarg, dists, &err) < 0)
				return cli_fail(&err);
			break;
		case 'i':
			json_array_append_new(images, json_string(optarg));
			break;
		case OPT_RECIPE:
			recipe = optarg;
			break;
		case OPT_STORE:
			store_url = optarg;
			break;
		case 'p': {
			char *end;
			errno = 0;
			priority = strtoll(optarg, &end, 10);
			if (errno || *end || end == optarg || priority < -1000000 || priority > 1000000)
				return cli_usage("submit: --priority must be a number -1000000…1000000, not '%s'",
						 optarg);
			break;
		}
		case OPT_JSON:
			ctx->json = true;
			break;
		case 'h':
			submit_usage(stdout);
			return 0;
		default:
			return PYTI_EXIT_USAGE;
		}
	}
	for (int i = optind; i < argc; i++)
		json_array_append_new(dists, pj_string_lossy(argv[i], strlen(argv[i])));
	if (!json_array_size(dists))
		return cli_usage("submit: a distribution is needed: `pyti submit DIST…` or `-r FILE` (try 'pyti submit --help')");
	json_t *recipe_text = json_null();
	if (recipe) {
		/* the master and its workers would find the same mistakes, later and further away */
		_cleanup_recipe_ struct recipe *r = NULL;
		if (recipe_load_file(recipe, &r, &err) < 0)
			return cli_fail(&err);
		_cleanup_buf_ struct buf b = BUF_INIT(RECIPE_MAX);
		if (read_file(recipe, &b, &err) < 0)
			return cli_fail(&err);
		recipe_text = pj_string_lossy(b.data ? b.data : "", b.len);
	}
	if (!json_array_size(images))
		json_array_append_new(images, json_string("bookworm"));
	struct target t;
	int rc = target_open(ctx, "submit", master_url(master), store_url, token_file, true, &t);
	if (rc) {
		json_decref(recipe_text);
		return rc;
	}
	_cleanup_json_ json_t *p = json_pack("{s:O, s:O, s:o, s:I, s:n, s:{}, s:[]}", "dists", dists, "images", images,
					     "recipe", recipe_text, "priority", (json_int_t)priority, "backend", "env",
					     "posargs");
	_cleanup_json_ json_t *res = NULL;
	rc = target_call(&t, "submit", p, &res, &err);
	target_close(&t);
	if (rc < 0)
		return cli_fail(&err);
	if (ctx->json)
		cli_print_json(res);
	else
		printf("%s\n", pj_str(res, "run_id", "?"));
	return 0;
}

/* ---- status, results ---- */

static int read_cmd_opts(const char *cmd, int argc, char **argv, const char **master, const char **token_file,
			 const char **store_url, const char **junit, bool *json, void (*usage)(FILE *))
{
	enum {
		OPT_JSON = 256,
		OPT_JUNIT,
		OPT_STORE
	};
	static const struct option opts[] = {
		{"store", required_argument, NULL, OPT_STORE},
		{"master", required_argument, NULL, 'm'},
		{"token-file", required_argument, NULL, 't'},
		{"json", no_argument, NULL, OPT_JSON},
		{"junit", required_argument, NULL, OPT_JUNIT},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int c;
	while ((c = cli_getopt(cmd, argc, argv, "m:t:h", opts)) != -1) {
		switch (c) {
		case 'm':
			*master = optarg;
			break;
		case 't':
			*token_file = optarg;
			break;
		case OPT_JSON:
			*json = true;
			break;
		case OPT_STORE:
			*store_url = optarg;
			break;
		case OPT_JUNIT:
			if (!junit)
				return cli_usage("%s: no --junit here", cmd);
			*junit = optarg;
			break;
		case 'h':
			usage(stdout);
			return -1;
		default:
			return PYTI_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return cli_usage("%s: a run or job id is needed (try 'pyti %s --help')", cmd, cmd);
	if (optind != argc - 1)
		return cli_usage("%s: unexpected operand '%s'", cmd, argv[optind + 1]);
	return 0;
}

static void status_usage(FILE *f)
{
	fputs("usage: pyti status [--master URL | --store URL] [--json] RUN\n\n"
	      "A run's jobs: state (queued, leased, done, failed, cancelled), attempt and verdict\n"
	      "(passed, test-failed, build-failed, no-tests, infra).\n",
	      f);
}

static void results_usage(FILE *f)
{
	fputs("usage: pyti results [--master URL | --store URL] [--json | --junit FILE] RUN\n\n"
	      "A run's results: one line per job with its verdict and test counts; --json the raw data\n"
	      "(each job's results as `pyti run --json` prints them); --junit FILE one <testsuite> per job\n"
	      "with a <testcase> per task and per failed test.\n\n"
	      "exit status: 0 every job done and passed, 1 otherwise, 2 usage, 3 infrastructure.\n",
	      f);
}

static void print_counts(const json_t *run)
{
	const char *k;
	json_t *v;
	printf("run %s", pj_str(run, "run_id", "?"));
	const char *created = pj_str(run, "created", NULL);
	if (created) {
		printf(" (");
		cli_put_safe(created, 0);
		printf(")");
	}
	printf(":");
	json_object_foreach(json_object_get(run, "counts"), k, v) {
		if (!json_integer_value(v))
			continue; /* "queued 0 leased 0 …" says nothing */
		printf(" ");
		cli_put_safe(k, 0);
		printf(" %lld", (long long)json_integer_value(v));
	}
	json_t *verdicts = json_object_get(run, "verdicts");
	if (json_object_size(verdicts)) {
		printf(";");
		json_object_foreach(verdicts, k, v) {
			if (!json_integer_value(v))
				continue;
			printf(" ");
			cli_put_safe(k, 0);
			printf(" %lld", (long long)json_integer_value(v));
		}
	}
	printf("\n");
}

static int run_query(struct cli_ctx *ctx, const char *cmd, const char *method, int argc, char **argv,
		     void (*usage)(FILE *), const char **junit, bool *json, json_t **res)
{
	const char *master = NULL, *token_file = NULL, *store_url = NULL;
	int rc = read_cmd_opts(cmd, argc, argv, &master, &token_file, &store_url, junit, json, usage);
	if (rc)
		return rc < 0 ? 0 : rc;
	struct target t;
	if ((rc = target_open(ctx, cmd, master_url(master), store_url, token_file, false, &t)))
		return rc;
	struct pyti_err err = {0};
	_cleanup_json_ json_t *p = json_pack("{s:s}", "run_id", argv[argc - 1]);
	rc = target_call(&t, method, p, res, &err);
	target_close(&t);
	if (rc < 0)
		return cli_fail(&err);
	return -1; /* go on */
}

int cmd_status(struct cli_ctx *ctx, int argc, char **argv)
{
	_cleanup_json_ json_t *res = NULL;
	int rc = run_query(ctx, "status", "status", argc, argv, status_usage, NULL, &ctx->json, &res);
	if (rc >= 0)
		return rc;
	if (ctx->json) {
		cli_print_json(res);
		return 0;
	}
	print_counts(json_object_get(res, "run"));
	size_t i;
	json_t *j;
	json_array_foreach(json_object_get(res, "jobs"), i, j) {
		printf("  ");
		cli_put_safe(pj_str(j, "job_id", NULL), 18);
		printf(" ");
		cli_put_safe(pj_str(j, "dist", NULL), 30);
		printf(" ");
		cli_put_safe(pj_str(j, "suite", NULL), 10);
		printf(" ");
		cli_put_safe(pj_str(j, "state", NULL), 10);
		printf(" %-3lld ", pj_int(j, "attempt", 0));
		cli_put_safe(pj_str(j, "verdict", NULL), 0);
		printf("\n");
	}
	return 0;
}

static void xml_put(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		switch (*p) {
		case '&':
			fputs("&amp;", f);
			break;
		case '<':
			fputs("&lt;", f);
			break;
		case '>':
			fputs("&gt;", f);
			break;
		case '"':
			fputs("&quot;", f);
			break;
		case '\'':
			fputs("&apos;", f);
			break;
		default:
			/* XML 1.0 has no place for C0 controls but tab and newline (JSON strings are UTF-8) */
			if (*p >= 0x20 || *p == '\t' || *p == '\n')
				fputc(*p, f);
			else
				fputs("?", f);
		}
	}
}

/* The results as JUnit XML, built in memory and put in place by write_file_atomic (an unguessable
 * temporary name, made with O_EXCL, renamed over path). */
static int write_junit(const json_t *res, const char *path, struct pyti_err *err)
{
	_cleanup_free_ char *xml = NULL;
	size_t xml_len = 0;
	FILE *f = open_memstream(&xml, &xml_len);
	if (!f)
		return pyti_err_set(err, errno, "%s", path);
	fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"", f);
	xml_put(f, pj_str(json_object_get(res, "run"), "run_id", ""));
	fputs("\">\n", f);
	size_t i;
	json_t *j;
	json_array_foreach(json_object_get(res, "jobs"), i, j) {
		json_t *r = json_object_get(j, "results");
		json_t *tasks = json_object_get(r, "tasks");
		fputs("  <testsuite name=\"", f);
		xml_put(f, pj_str(j, "dist", "?"));
		fputs(" (", f);
		xml_put(f, pj_str(j, "suite", "?"));
		fprintf(f, ")\" tests=\"%zu\">\n", json_array_size(tasks) ? json_array_size(tasks) : 1);
		if (!json_array_size(tasks)) { /* never ran, or could not: one case says why */
			fputs("    <testcase classname=\"", f);
			xml_put(f, pj_str(j, "dist", "?"));
			fputs("\" name=\"job\">", f);
			const char *state = pj_str(j, "state", "?");
			if (strcmp(state, "done") != 0 || json_object_get(r, "error")) {
				fputs("<error type=\"", f);
				xml_put(f, pj_str(r, "failure_class", state));
				fputs("\" message=\"", f);
				xml_put(f, pj_str(r, "error", state));
				fputs("\"/>", f);
			}
			fputs("</testcase>\n", f);
		}
		size_t k;
		json_t *t;
		json_array_foreach(tasks, k, t) {
			const char *st = pj_str(t, "status", "?"), *fc = pj_str(t, "failure_class", NULL);
			fputs("    <testcase classname=\"", f);
			xml_put(f, pj_str(j, "dist", "?"));
			fputs("\" name=\"", f);
			xml_put(f, pj_str(t, "task", "?"));
			fprintf(f, "\" time=\"%.3f\">", pj_num(t, "wall_s", 0));
			if (strcmp(st, "skipped") == 0) {
				fputs("<skipped/>", f);
			} else if (strcmp(st, "passed") != 0) {
				fprintf(f, "<%s type=\"", fc ? "error" : "failure");
				xml_put(f, fc ? fc : "Failed");
				fprintf(f, "\"/>");
			}
			fputs("</testcase>\n", f);
			size_t m;
			json_t *fl;
			json_array_foreach(json_object_get(json_object_get(t, "tests"), "failures"), m, fl) {
				fputs("    <testcase classname=\"", f);
				xml_put(f, pj_str(j, "dist", "?"));
				fputs("\" name=\"", f);
				xml_put(f, pj_str(fl, "id", "?"));
				fputs("\"><failure message=\"", f);
				xml_put(f, pj_str(fl, "message", ""));
				fputs("\">", f);
				xml_put(f, pj_str(fl, "traceback", ""));
				fputs("</failure></testcase>\n", f);
			}
		}
		fputs("  </testsuite>\n", f);
	}
	fputs("</testsuites>\n", f);
	bool bad = ferror(f) != 0;
	if (fclose(f) != 0 || bad)
		return pyti_err_set(err, ENOMEM, "write %s", path);
	return write_file_atomic(path, xml, xml_len, 0644, err);
}

int cmd_results(struct cli_ctx *ctx, int argc, char **argv)
{
	_cleanup_json_ json_t *res = NULL;
	const char *junit = NULL;
	int rc = run_query(ctx, "results", "results", argc, argv, results_usage, &junit, &ctx->json, &res);
	if (rc >= 0)
		return rc;
	struct pyti_err err = {0};
	if (junit && write_junit(res, junit, &err) < 0)
		return cli_fail(&err);
	bool all_passed = true;
	size_t i;
	json_t *j;
	json_array_foreach(json_object_get(res, "jobs"), i, j)
		if (strcmp(pj_str(j, "verdict", ""), "passed") != 0)
			all_passed = false;
	if (ctx->json) {
		cli_print_json(res);
		return all_passed ? 0 : PYTI_EXIT_FAILED;
	}
	if (junit)
		return all_passed ? 0 : PYTI_EXIT_FAILED;
	print_counts(json_object_get(res, "run"));
	json_array_foreach(json_object_get(res, "jobs"), i, j) {
		json_t *r = json_object_get(j, "results");
		long long passed = 0, failed = 0, total = 0;
		size_t k;
		json_t *t;
		json_array_foreach(json_object_get(r, "tasks"), k, t) {
			json_t *ts = json_object_get(t, "tests");
			passed += pj_int(ts, "passed", 0);
			failed += pj_int(ts, "failed", 0) + pj_int(ts, "errors", 0);
			total += pj_int(ts, "total", 0);
		}
		printf("  ");
		cli_put_safe(pj_str(j, "dist", NULL), 30);
		printf(" ");
		cli_put_safe(pj_str(j, "suite", NULL), 10);
		printf(" ");
		cli_put_safe(pj_str(j, "state", NULL), 10);
		printf(" ");
		cli_put_safe(pj_str(j, "verdict", NULL), 13);
		printf(" tests %lld passed, %lld failed of %lld\n", passed, failed, total);
	}
	return all_passed ? 0 : PYTI_EXIT_FAILED;
}

/* ---- cancel ---- */

static void cancel_usage(FILE *f)
{
	fputs("usage: pyti cancel [--master URL [--token-file F] | --store URL] RUN|JOB\n\n"
	      "Cancel a run's queued and running jobs, or one job (ids start with r and j). A running job's\n"
	      "worker learns it at its next heartbeat and kills it.\n",
	      f);
}

int cmd_cancel(struct cli_ctx *ctx, int argc, char **argv)
{
	const char *master = NULL, *token_file = NULL, *store_url = NULL;
	int rc = read_cmd_opts("cancel", argc, argv, &master, &token_file, &store_url, NULL, &ctx->json, cancel_usage);
	if (rc)
		return rc < 0 ? 0 : rc;
	const char *id = argv[argc - 1];
	if (id[0] != 'r' && id[0] != 'j')
		return cli_usage("cancel: '%s' is neither a run id (r…) nor a job id (j…)", id);
	struct target t;
	/* the local store needs no token: whoever can write it can cancel */
	if ((rc = target_open(ctx, "cancel", master_url(master), store_url, token_file, true, &t)))
		return rc;
	struct pyti_err err = {0};
	_cleanup_json_ json_t *p = json_pack("{s:s}", id[0] == 'r' ? "run_id" : "job_id", id), *res = NULL;
	rc = target_call(&t, "cancel", p, &res, &err);
	target_close(&t);
	if (rc < 0)
		return cli_fail(&err);
	if (ctx->json)
		cli_print_json(res);
	else
		printf("cancelled %lld jobs\n", pj_int(res, "cancelled", 0));
	return 0;
}

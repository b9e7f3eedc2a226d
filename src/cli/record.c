/* Every `pyti run` job goes into the local store (STATE/pyti.db, or --store URL / $PYTI_STORE;
 * "off" records nothing): one run per pyti invocation, one job per distribution, recorded as soon
 * as its results are known. The store is history, not the job's outcome: when it cannot be written
 * pyti warns once and the run goes on with its own exit status. */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "manager.h"
#include "store.h"

static struct {
	pthread_mutex_t mu;
	struct store *st;
	pid_t pid; /* the process that opened st: a forked child opens its own */
	char run[STORE_ID_SIZE];
	bool broken; /* warned once; record nothing more */
} rec = {.mu = PTHREAD_MUTEX_INITIALIZER};

char *cli_store_url(const struct cli_ctx *ctx, const char *opt)
{
	if (opt && *opt)
		return xstrdup(opt);
	if (ctx->store_url && *ctx->store_url)
		return xstrdup(ctx->store_url);
	const char *e = getenv("PYTI_STORE");
	if (e && *e)
		return xstrdup(e);
	return store_default_url(ctx->state_dir);
}

int cli_store_open(const struct cli_ctx *ctx, const char *opt, struct store **out, struct pyti_err *err)
{
	_cleanup_free_ char *url = cli_store_url(ctx, opt);
	if (strcmp(url, "off") == 0)
		return pyti_err_usage(err, "the store is off (PYTI_STORE=off)");
	return store_open(url, out, err) < 0 ? -1 : 0;
}

static void rec_warn(const struct pyti_err *err)
{
	rec.broken = true;
	_cleanup_free_ char *m = term_safe_dup(pyti_err_str(err), 0);
	log_warn("the job is not recorded in the store: %s", m);
}

/* The store handle and this invocation's run, opened and made on first use; rec.mu held. */
static bool rec_ready(const struct cli_ctx *ctx, const char *suite, const char *backend, const char *recipe_path)
{
	if (rec.broken)
		return false;
	if (rec.st && rec.pid != getpid())
		rec.st = NULL; /* the parent's connection is not ours to use, nor to close */
	struct pyti_err err = {0};
	if (!rec.st) {
		_cleanup_free_ char *url = cli_store_url(ctx, NULL);
		if (strcmp(url, "off") == 0) {
			rec.broken = true;
			return false;
		}
		if (store_open(url, &rec.st, &err) < 0) {
			rec_warn(&err);
			return false;
		}
		rec.pid = getpid();
	}
	if (!rec.run[0]) {
		const char *suites[] = {suite ? suite : "bookworm"};
		/* the recipe's text, so that a rerun runs what this run ran (a file the run already read) */
		_cleanup_buf_ struct buf recipe = BUF_INIT(1u << 20);
		struct pyti_err rerr = {0};
		if (recipe_path && read_file(recipe_path, &recipe, &rerr) < 0)
			buf_reset(&recipe);
		struct store_run_spec spec = {.suites = suites,
					      .n_suites = 1,
					      .backend = backend,
					      .origin = "local",
					      .recipe = recipe.len && !memchr(recipe.data, 0, recipe.len) ? recipe.data
													  : NULL};
		if (store_run_new(rec.st, &spec, rec.run, &err) < 0) {
			rec.run[0] = '\0';
			rec_warn(&err);
			return false;
		}
	}
	return true;
}

int cli_record_begin(struct cli_ctx *ctx, const struct manager_opts *mo)
{
	pthread_mutex_lock(&rec.mu);
	bool ok = rec_ready(ctx, mo->suite, mo->backend, mo->recipe_path);
	pthread_mutex_unlock(&rec.mu);
	return ok ? 0 : -1;
}

const char *cli_record_run_id(void)
{
	return rec.run[0] ? rec.run : NULL;
}

void cli_record_job(struct cli_ctx *ctx, const struct manager_opts *mo, const json_t *results,
		    const struct pyti_err *job_err)
{
	if ((job_err && job_err->status == PYTI_EXIT_USAGE) ||
	    (!job_err && strcmp(pj_str(results, "status", ""), "error") == 0 &&
	     pj_int(results, "exit_status", 0) == PYTI_EXIT_USAGE))
		return; /* a mistyped option or path never became a job */
	pthread_mutex_lock(&rec.mu);
	if (!rec_ready(ctx, mo->suite, mo->backend, mo->recipe_path))
		goto out;
	struct store_job_record r = {
		.dist = mo->dist,
		.suite = mo->suite ? mo->suite : "bookworm",
		.backend = mo->backend,
		.results = job_err ? NULL : results,
		.error = job_err ? pyti_err_str(job_err) : NULL,
		.fclass = job_err ? job_err->fclass : PYTI_FC_NONE,
		.artefact_dir = job_err ? NULL : pj_str(results, "logs", NULL),
	};
	char job[STORE_ID_SIZE];
	struct pyti_err err = {0};
	if (store_record_job(rec.st, rec.run, &r, job, &err) < 0)
		rec_warn(&err);
	else
		log_info("recorded as job %s of run %s in %s", job, rec.run, store_describe(rec.st));
out:
	pthread_mutex_unlock(&rec.mu);
}

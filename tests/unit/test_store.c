/* Unit tests for the store (issue 11, "One store"): the same cases against SQLite and against a real
 * PostgreSQL. The PostgreSQL cluster is scripts/pg-start's (scripts/test exports PYTI_TEST_PG, its
 * connection string); every case gets a database of its own there, and a file of its own for SQLite.
 * Without PYTI_TEST_PG the PostgreSQL cases skip, under PYTI_TEST_MUST_RUN=1 they fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "store.h"

struct eng {
	bool pg;
	char url[1024];
	char dir[64]; /* SQLite: the case's directory */
	char db[64];  /* PostgreSQL: the case's database */
	struct store *st;
};

static const char *pg_base(void)
{
	const char *pg = getenv("PYTI_TEST_PG");
	return pg && *pg ? pg : NULL;
}

static bool must_run(void)
{
	const char *m = getenv("PYTI_TEST_MUST_RUN");
	return m && strcmp(m, "1") == 0;
}

static void pg_admin(const char *sql)
{
	_cleanup_free_ char *ci = xasprintf("%s dbname=postgres", pg_base());
	PGconn *c = PQconnectdb(ci);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

static int setup_engine(void **state, bool pg)
{
	struct eng *e = xcalloc(1, sizeof *e);
	e->pg = pg;
	*state = e;
	if (pg) {
		if (!pg_base())
			return 0; /* the case skips (or fails under PYTI_TEST_MUST_RUN) */
		static int n;
		snprintf(e->db, sizeof e->db, "pyti_unit_%ld_%d", (long)getpid(), ++n);
		_cleanup_free_ char *sql = xasprintf("CREATE DATABASE %s", e->db);
		pg_admin(sql);
		snprintf(e->url, sizeof e->url, "%s dbname=%s", pg_base(), e->db);
	} else {
		snprintf(e->dir, sizeof e->dir, "/tmp/pyti-store-XXXXXX");
		assert_non_null(mkdtemp(e->dir));
		snprintf(e->url, sizeof e->url, "%s/sub/pyti.db", e->dir); /* the parent is made by the store */
	}
	struct pyti_err err = {0};
	if (store_open(e->url, &e->st, &err) < 0)
		fail_msg("open %s: %s", e->url, err.msg);
	return 0;
}

static int setup_sqlite(void **state)
{
	return setup_engine(state, false);
}
static int setup_pg(void **state)
{
	return setup_engine(state, true);
}

static int teardown(void **state)
{
	struct eng *e = *state;
	store_close(e->st);
	if (e->pg && e->db[0]) {
		_cleanup_free_ char *sql = xasprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", e->db);
		pg_admin(sql);
	} else if (e->dir[0]) {
		rm_rf(e->dir, NULL);
	}
	free(e);
	return 0;
}

/* The case's engine, or skip: PostgreSQL without PYTI_TEST_PG (a failure under PYTI_TEST_MUST_RUN). */
static struct eng *engine(void **state)
{
	struct eng *e = *state;
	if (e->pg && !e->st) {
		if (must_run())
			fail_msg("PYTI_TEST_PG is not set (scripts/pg-start DIR prints it) and PYTI_TEST_MUST_RUN=1");
		skip();
	}
	return e;
}

/* One number from the database, read past the store (what the API does not show). */
static long long raw_count(struct eng *e, const char *sql)
{
	long long v = -1;
	if (e->pg) {
		PGconn *c = PQconnectdb(e->url);
		assert_int_equal(PQstatus(c), CONNECTION_OK);
		PGresult *r = PQexec(c, sql);
		assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
		PQfinish(c);
	} else {
		sqlite3 *db;
		assert_int_equal(sqlite3_open(e->url, &db), SQLITE_OK);
		sqlite3_stmt *s;
		assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_step(s), SQLITE_ROW);
		v = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
		sqlite3_close(db);
	}
	return v;
}

static void raw_exec(struct eng *e, const char *sql)
{
	if (e->pg) {
		PGconn *c = PQconnectdb(e->url);
		PGresult *r = PQexec(c, sql);
		assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
		PQclear(r);
		PQfinish(c);
	} else {
		sqlite3 *db;
		assert_int_equal(sqlite3_open(e->url, &db), SQLITE_OK);
		assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(db);
	}
}

/* ---- fixtures ---- */
static json_t *task_result(const char *task, const char *status, int nfail)
{
	json_t *t = json_pack("{s:s, s:s, s:n, s:i, s:f}", "task", task, "status", status, "failure_class", "exit_code",
			      strcmp(status, "passed") ? 1 : 0, "wall_s", 0.5);
	if (strcmp(task, "test") == 0) {
		json_t *fails = json_array();
		for (int i = 0; i < nfail; i++) {
			char id[64];
			snprintf(id, sizeof id, "tests.test_x::test_%d", i);
			json_array_append_new(fails, json_pack("{s:s, s:s, s:s}", "id", id, "outcome", "failed",
							       "message", "assert 1 == 2"));
		}
		json_object_set_new(t, "tests",
				    json_pack("{s:i, s:i, s:i, s:b, s:o}", "passed", 3, "failed", nfail, "total",
					      3 + nfail, "no_tests", 0, "failures", fails));
	}
	return t;
}

static json_t *results(const char *test_status, int nfail)
{
	bool passed = strcmp(test_status, "passed") == 0;
	return json_pack("{s:s, s:s, s:s, s:f, s:[o, o]}", "job", "x", "dist", "six", "status",
			 passed ? "passed" : "failed", "wall_s", 1.5, "tasks", task_result("install", "passed", 0),
			 task_result("test", test_status, nfail));
}

static json_t *submit(struct store *st, int n, const char *suite)
{
	_cleanup_free_ const char **dists = xcalloc((size_t)n, sizeof *dists);
	char(*names)[32] = xcalloc((size_t)n, sizeof *names);
	for (int i = 0; i < n; i++) {
		snprintf(names[i], sizeof names[i], "pkg%03d==1.0", i);
		dists[i] = names[i];
	}
	const char *suites[] = {suite};
	struct store_run_spec spec = {.dists = dists, .n_dists = (size_t)n, .suites = suites, .n_suites = 1};
	json_t *out = NULL;
	struct pyti_err err = {0};
	if (store_submit(st, &spec, &out, &err) < 0)
		fail_msg("submit: %s", err.msg);
	free(names);
	return out;
}

static void hello(struct store *st, char id[STORE_ID_SIZE])
{
	_cleanup_json_ json_t *caps = json_pack("{s:[{s:s, s:s}], s:[s], s:i}", "images", "suite", "bookworm", "python",
						"3.11", "backends", "ns", "slots", 2);
	struct pyti_err err = {0};
	assert_int_equal(store_worker_hello(st, "test-worker", caps, id, &err), 0);
	assert_int_equal(store_id_kind(id), 'w');
}

static json_t *claim(struct store *st, const char *worker, int max)
{
	json_t *jobs = NULL;
	struct pyti_err err = {0};
	if (store_claim(st, worker, max, &jobs, &err) < 0)
		fail_msg("claim: %s", err.msg);
	return jobs;
}

static struct store_lease lease_of(const json_t *job)
{
	return (struct store_lease){pj_str(job, "job_id", NULL), (int)pj_int(job, "attempt", 0),
				    pj_str(job, "lease", NULL)};
}

static int finish(struct store *st, const json_t *job, const char *status, const char *fc, const json_t *res,
		  enum store_state *state)
{
	struct store_finish f = {.lease = lease_of(job), .status = status, .failure_class = fc, .results = res};
	struct pyti_err err = {0};
	return store_finish(st, &f, state, NULL, &err);
}

static long long count(const json_t *status, const char *group, const char *key)
{
	return pj_int(json_object_get(json_object_get(status, "run"), group), key, -1);
}

/* ---- cases ---- */
static void test_state_machine(void **state)
{
	struct eng *e = engine(state);
	struct pyti_err err = {0};
	_cleanup_json_ json_t *sub = submit(e->st, 3, "bookworm"), *st0 = NULL, *st1 = NULL, *res = NULL;
	const char *run = pj_str(sub, "run_id", "");
	assert_int_equal(store_id_kind(run), 'r');
	assert_int_equal(json_array_size(json_object_get(sub, "jobs")), 3);
	assert_int_equal(store_status(e->st, run, &st0, &err), 0);
	assert_int_equal(count(st0, "counts", "queued"), 3);

	char w[STORE_ID_SIZE];
	hello(e->st, w);
	_cleanup_json_ json_t *jobs = claim(e->st, w, 2), *more = NULL, *none = NULL;
	assert_int_equal(json_array_size(jobs), 2);
	json_t *j0 = json_array_get(jobs, 0), *j1 = json_array_get(jobs, 1);
	assert_int_equal(pj_int(j0, "attempt", 0), 1);
	assert_int_equal(strlen(pj_str(j0, "lease", "")), 32);
	assert_string_equal(pj_str(json_object_get(j0, "config"), "suite", ""), "bookworm");
	assert_int_equal(pj_int(j0, "lease_expires_in_s", 0), 60);
	assert_string_equal(pj_str(j0, "run_id", ""), run); /* the worker's log lines name the run */

	int exp = 0;
	bool cancel = true;
	struct store_lease l0 = lease_of(j0);
	_cleanup_json_ json_t *prog = json_pack("{s:s, s:i, s:i}", "task", "test", "i", 2, "n", 3);
	assert_int_equal(store_heartbeat(e->st, &l0, prog, &exp, &cancel, &err), 0);
	assert_int_equal(exp, 60);
	assert_false(cancel);
	_cleanup_json_ json_t *t = task_result("install", "passed", 0);
	assert_int_equal(store_report(e->st, &l0, "install", t, &err), 0);
	enum store_state s;
	_cleanup_json_ json_t *ok = results("passed", 0), *bad = results("failed", 2);
	assert_int_equal(finish(e->st, j0, "passed", NULL, ok, &s), 0);
	assert_int_equal(s, STORE_DONE);
	assert_int_equal(finish(e->st, j1, "failed", NULL, bad, &s), 0);
	assert_int_equal(s, STORE_DONE); /* a package's own failure is done, not retried */
	/* a repeated finish answers what it reached and changes nothing */
	assert_int_equal(finish(e->st, j1, "failed", NULL, bad, &s), 0);
	assert_int_equal(s, STORE_DONE);

	more = claim(e->st, w, 10);
	assert_int_equal(json_array_size(more), 1);
	assert_int_equal(finish(e->st, json_array_get(more, 0), "passed", NULL, ok, &s), 0);
	none = claim(e->st, w, 10);
	assert_int_equal(json_array_size(none), 0);

	assert_int_equal(store_status(e->st, run, &st1, &err), 0);
	assert_int_equal(count(st1, "counts", "done"), 3);
	assert_int_equal(count(st1, "counts", "queued"), 0);
	assert_int_equal(count(st1, "verdicts", "passed"), 2);
	assert_int_equal(count(st1, "verdicts", "test-failed"), 1);
	assert_int_equal(store_results(e->st, run, &res, &err), 0);
	json_t *rj = json_array_get(json_object_get(res, "jobs"), 0);
	assert_string_equal(pj_str(json_object_get(rj, "results"), "status", ""), "passed");

	/* show: the job's attempts, tasks and test cases (from tests.failures) */
	_cleanup_json_ json_t *show = NULL, *runs = NULL, *bad_show = NULL;
	assert_int_equal(store_show(e->st, pj_str(j1, "job_id", ""), &show, &err), 0);
	json_t *job = json_object_get(show, "job");
	assert_string_equal(pj_str(job, "verdict", ""), "test-failed");
	json_t *a1 = json_array_get(json_object_get(job, "attempts"), 0);
	assert_string_equal(pj_str(a1, "outcome", ""), "done");
	assert_int_equal(json_array_size(json_object_get(a1, "tasks")), 2);
	assert_int_equal(json_array_size(json_object_get(a1, "testcases")), 2);
	/* a unique prefix */
	char prefix[8];
	snprintf(prefix, sizeof prefix, "%.7s", run);
	json_decref(show);
	assert_int_equal(store_show(e->st, prefix, &show, &err), 0);
	assert_string_equal(pj_str(json_object_get(show, "run"), "run_id", ""), run);
	assert_int_equal(store_show(e->st, "rffffffffffffffff", &bad_show, &err), STORE_E_NOTFOUND);
	assert_int_equal(store_show(e->st, "x", &bad_show, &err), STORE_E_INVALID);

	struct store_runs_query q = {.limit = 10};
	assert_int_equal(store_runs(e->st, &q, &runs, &err), 0);
	assert_int_equal(json_array_size(json_object_get(runs, "runs")), 1);
	json_decref(none);
	assert_int_equal(store_claim(e->st, "wffffffffffffffff", 1, &none, &err), STORE_E_NOTFOUND);

	/* rerun: the run's jobs (or one job) again, queued in a new run */
	_cleanup_json_ json_t *rr = NULL, *rjob = NULL, *rst = NULL;
	assert_int_equal(store_rerun(e->st, run, &rr, &err), 0);
	assert_string_not_equal(pj_str(rr, "run_id", ""), run);
	assert_int_equal(json_array_size(json_object_get(rr, "jobs")), 3);
	assert_int_equal(store_status(e->st, pj_str(rr, "run_id", ""), &rst, &err), 0);
	assert_int_equal(count(rst, "counts", "queued"), 3);
	assert_string_equal(pj_str(json_object_get(rst, "run"), "parent", ""), run);
	_cleanup_json_ json_t *children = NULL;
	struct store_runs_query qp = {.parent = run};
	assert_int_equal(store_runs(e->st, &qp, &children, &err), 0);
	assert_int_equal(json_array_size(json_object_get(children, "runs")), 1);
	assert_string_equal(pj_str(json_array_get(json_object_get(rst, "jobs"), 0), "dist", ""), "pkg000==1.0");
	assert_int_equal(store_rerun(e->st, pj_str(j1, "job_id", ""), &rjob, &err), 0);
	assert_int_equal(json_array_size(json_object_get(rjob, "jobs")), 1);
	json_decref(rr);
	assert_int_equal(store_rerun(e->st, "rffffffffffffffff", &rr, &err), STORE_E_NOTFOUND);
}

/* Two processes claim from one queue at once: every job is handed out exactly once. */
static void test_claim_exactly_once(void **state)
{
	struct eng *e = engine(state);
	enum {
		N = 60
	};
	_cleanup_json_ json_t *sub = submit(e->st, N, "bookworm");
	int fds[2][2], go[2];
	pid_t pid[2];
	assert_int_equal(pipe(go), 0); /* both start claiming when the parent closes it */
	for (int k = 0; k < 2; k++) {
		assert_int_equal(pipe(fds[k]), 0);
		pid[k] = fork();
		assert_true(pid[k] >= 0);
		if (pid[k] == 0) {
			close(fds[k][0]);
			struct store *st = NULL;
			struct pyti_err err = {0};
			if (store_open(e->url, &st, &err) < 0)
				_exit(10);
			char w[STORE_ID_SIZE];
			_cleanup_json_ json_t *caps = json_pack("{s:[s], s:[s]}", "images", "bookworm", "backends",
								"ns");
			if (store_worker_hello(st, "w", caps, w, &err) < 0)
				_exit(11);
			close(go[1]);
			char c;
			if (read(go[0], &c, 1) != 0)
				_exit(14);
			for (int empty = 0; empty < 3;) {
				json_t *jobs = NULL;
				if (store_claim(st, w, 2, &jobs, &err) < 0)
					_exit(12);
				empty = json_array_size(jobs) ? 0 : empty + 1;
				usleep(2000); /* "running" the jobs, outside any lock: the other claimer's turn */
				size_t i;
				json_t *j;
				json_array_foreach(jobs, i, j) {
					struct store_finish f = {.lease = lease_of(j), .status = "passed"};
					enum store_state s;
					if (store_finish(st, &f, &s, NULL, &err) < 0 || s != STORE_DONE)
						_exit(13);
					dprintf(fds[k][1], "%s\n", pj_str(j, "job_id", ""));
				}
				json_decref(jobs);
			}
			store_close(st);
			_exit(0);
		}
		close(fds[k][1]);
	}
	close(go[0]);
	close(go[1]);
	_cleanup_json_ json_t *seen = json_object();
	int total = 0, per[2] = {0, 0};
	for (int k = 0; k < 2; k++) {
		FILE *f = fdopen(fds[k][0], "r");
		char line[64];
		while (fgets(line, sizeof line, f)) {
			line[strcspn(line, "\n")] = '\0';
			assert_null(json_object_get(seen, line)); /* never twice */
			json_object_set_new(seen, line, json_true());
			total++;
			per[k]++;
		}
		fclose(f);
		int ws;
		assert_int_equal(waitpid(pid[k], &ws, 0), pid[k]);
		assert_true(WIFEXITED(ws));
		assert_int_equal(WEXITSTATUS(ws), 0);
	}
	assert_int_equal(total, N);
	assert_true(per[0] > 0 && per[1] > 0); /* they did claim side by side */
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM jobs WHERE state = 'done' AND attempt = 1"), N);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM attempts"), N);
	print_message("claims: %d and %d\n", per[0], per[1]);
}

/* A lease that is not renewed returns the job to the queue; the old lease is fenced off. */
static void test_lease_expiry_and_fencing(void **state)
{
	struct eng *e = engine(state);
	struct pyti_err err = {0};
	struct store_limits lim;
	store_limits_get(e->st, &lim);
	lim.lease_s = 2; /* long enough for a loaded machine to report within it */
	store_limits_set(e->st, &lim);
	_cleanup_json_ json_t *sub = submit(e->st, 1, "bookworm");
	char w1[STORE_ID_SIZE], w2[STORE_ID_SIZE];
	hello(e->st, w1);
	hello(e->st, w2);
	_cleanup_json_ json_t *first = claim(e->st, w1, 1), *second = NULL, *show = NULL;
	json_t *j1 = json_array_get(first, 0);
	struct store_lease l1 = lease_of(j1);
	_cleanup_json_ json_t *t = task_result("install", "passed", 0), *ok = results("passed", 0);
	assert_int_equal(store_report(e->st, &l1, "install", t, &err), 0);
	usleep(2300 * 1000);
	int n = 0;
	assert_int_equal(store_expire(e->st, &n, &err), 0);
	assert_int_equal(n, 1);
	second = claim(e->st, w2, 1);
	assert_int_equal(json_array_size(second), 1);
	json_t *j2 = json_array_get(second, 0);
	assert_int_equal(pj_int(j2, "attempt", 0), 2);
	assert_string_not_equal(pj_str(j2, "lease", ""), l1.lease);

	/* the worker presumed dead: every call with its lease is refused, nothing stored */
	int exp;
	bool cancel;
	assert_int_equal(store_heartbeat(e->st, &l1, NULL, &exp, &cancel, &err), STORE_E_STALE);
	assert_int_equal(store_rpc_code(STORE_E_STALE), -32001);
	_cleanup_json_ json_t *t2 = task_result("test", "passed", 0);
	assert_int_equal(store_report(e->st, &l1, "test", t2, &err), STORE_E_STALE);
	enum store_state s;
	assert_int_equal(finish(e->st, j1, "passed", NULL, ok, &s), STORE_E_STALE);
	/* a forged lease for the current attempt, or the right lease with the wrong attempt */
	struct store_lease forged = lease_of(j2);
	forged.lease = "0123456789abcdef0123456789abcdef";
	assert_int_equal(store_report(e->st, &forged, "test", t2, &err), STORE_E_STALE);
	forged = lease_of(j2);
	forged.attempt = 1;
	assert_int_equal(store_report(e->st, &forged, "test", t2, &err), STORE_E_STALE);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM task_results WHERE task = 'test'"), 0);

	assert_int_equal(finish(e->st, j2, "passed", NULL, ok, &s), 0);
	assert_int_equal(s, STORE_DONE);
	assert_int_equal(store_show(e->st, pj_str(j2, "job_id", ""), &show, &err), 0);
	json_t *att = json_object_get(json_object_get(show, "job"), "attempts");
	assert_int_equal(json_array_size(att), 2);
	assert_string_equal(pj_str(json_array_get(att, 0), "outcome", ""), "lease-lost");
	assert_string_equal(pj_str(json_array_get(att, 1), "outcome", ""), "done");
	/* attempt 1's report stays attempt 1's: nothing lost, nothing duplicated */
	assert_int_equal(json_array_size(json_object_get(json_array_get(att, 0), "tasks")), 1);
	assert_int_equal(json_array_size(json_object_get(json_array_get(att, 1), "tasks")), 2);
}

static void test_report_idempotent(void **state)
{
	struct eng *e = engine(state);
	struct pyti_err err = {0};
	_cleanup_json_ json_t *sub = submit(e->st, 1, "bookworm");
	char w[STORE_ID_SIZE];
	hello(e->st, w);
	_cleanup_json_ json_t *jobs = claim(e->st, w, 1);
	struct store_lease l = lease_of(json_array_get(jobs, 0));
	_cleanup_json_ json_t *t = task_result("test", "failed", 3), *other = task_result("install", "passed", 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(store_report(e->st, &l, "test", t, &err), 0);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM task_results"), 1);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM testcases"), 3);
	/* a result that says it is another task is refused */
	assert_int_equal(store_report(e->st, &l, "test", other, &err), STORE_E_INVALID);
	/* finish carries the whole results: the reported task is not stored twice */
	_cleanup_json_ json_t *res = json_pack("{s:s, s:[O, O]}", "status", "failed", "tasks", other, t);
	enum store_state s;
	assert_int_equal(finish(e->st, json_array_get(jobs, 0), "failed", NULL, res, &s), 0);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM task_results"), 2);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM testcases"), 3);
}

/* A task's record as it ended (the worker's early report, "partial": true) is kept until the whole
 * one of the same attempt comes (its report at the job's end, or finish), which replaces it, with its
 * test cases; nothing replaces a whole record, and a partial one after it changes nothing. */
static void test_report_partial_superseded(void **state)
{
	struct eng *e = engine(state);
	struct pyti_err err = {0};
	_cleanup_json_ json_t *sub = submit(e->st, 1, "bookworm");
	char w[STORE_ID_SIZE];
	hello(e->st, w);
	_cleanup_json_ json_t *jobs = claim(e->st, w, 1);
	struct store_lease l = lease_of(json_array_get(jobs, 0));
	_cleanup_json_ json_t *early = json_pack("{s:s, s:s, s:f, s:n, s:b}", "task", "test", "status", "failed",
						 "wall_s", 0.5, "failure_class", "partial", 1);
	_cleanup_json_ json_t *inst = json_pack("{s:s, s:s, s:f, s:n, s:b}", "task", "install", "status", "passed",
						"wall_s", 0.2, "failure_class", "partial", 1);
	assert_int_equal(store_report(e->st, &l, "install", inst, &err), 0);
	assert_int_equal(store_report(e->st, &l, "test", early, &err), 0);
	assert_int_equal(store_report(e->st, &l, "test", early, &err), 0); /* a repeat: one row */
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM task_results"), 2);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM testcases"), 0);
	/* the whole record replaces it, in its place (seq), with its cases */
	_cleanup_json_ json_t *t = task_result("test", "failed", 3), *other = task_result("install", "passed", 0);
	assert_int_equal(store_report(e->st, &l, "test", t, &err), 0);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM task_results"), 2);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM task_results WHERE task = 'test' AND seq = 1"), 1);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM task_results WHERE result LIKE '%partial%'"), 1);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM testcases"), 3);
	/* late partial: changes nothing */
	assert_int_equal(store_report(e->st, &l, "test", early, &err), 0);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM testcases"), 3);
	/* finish's whole results replace the partial install record too */
	_cleanup_json_ json_t *res = json_pack("{s:s, s:[O, O]}", "status", "failed", "tasks", other, t);
	enum store_state s;
	assert_int_equal(finish(e->st, json_array_get(jobs, 0), "failed", NULL, res, &s), 0);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM task_results"), 2);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM task_results WHERE result LIKE '%partial%'"), 0);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM testcases"), 3);
}

static void test_cancel(void **state)
{
	struct eng *e = engine(state);
	struct pyti_err err = {0};
	_cleanup_json_ json_t *sub = submit(e->st, 3, "bookworm"), *st = NULL, *none = NULL;
	const char *run = pj_str(sub, "run_id", "");
	char w[STORE_ID_SIZE];
	hello(e->st, w);
	_cleanup_json_ json_t *jobs = claim(e->st, w, 1);
	json_t *j = json_array_get(jobs, 0);
	int n = 0;
	assert_int_equal(store_cancel(e->st, run, &n, &err), 0);
	assert_int_equal(n, 3);
	struct store_lease l = lease_of(j);
	int exp = 1;
	bool cancel = false;
	assert_int_equal(store_heartbeat(e->st, &l, NULL, &exp, &cancel, &err), 0);
	assert_true(cancel);
	assert_int_equal(exp, 0);
	enum store_state s;
	_cleanup_json_ json_t *ok = results("passed", 0);
	assert_int_equal(finish(e->st, j, "passed", NULL, ok, &s), 0);
	assert_int_equal(s, STORE_CANCELLED);
	none = claim(e->st, w, 5);
	assert_int_equal(json_array_size(none), 0);
	assert_int_equal(store_cancel(e->st, run, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(store_cancel(e->st, "jffffffffffffffff", &n, &err), STORE_E_NOTFOUND);
	assert_int_equal(store_cancel(e->st, "nonsense", &n, &err), STORE_E_INVALID);
	assert_int_equal(store_status(e->st, run, &st, &err), 0);
	assert_int_equal(count(st, "counts", "cancelled"), 3);
}

/* Crash/Infra are retried up to max_attempts, then failed keeping the class; a package's failure never is. */
static void test_max_attempts(void **state)
{
	struct eng *e = engine(state);
	struct pyti_err err = {0};
	struct store_limits lim;
	store_limits_get(e->st, &lim);
	lim.max_attempts = 2;
	store_limits_set(e->st, &lim);
	_cleanup_json_ json_t *sub = submit(e->st, 1, "bookworm"), *show = NULL;
	char w[STORE_ID_SIZE];
	hello(e->st, w);
	enum store_state s;
	_cleanup_json_ json_t *a1 = claim(e->st, w, 1);
	assert_int_equal(finish(e->st, json_array_get(a1, 0), "error", "Crash", NULL, &s), 0);
	assert_int_equal(s, STORE_QUEUED);
	_cleanup_json_ json_t *a2 = claim(e->st, w, 1);
	assert_int_equal(pj_int(json_array_get(a2, 0), "attempt", 0), 2);
	assert_int_equal(finish(e->st, json_array_get(a2, 0), "error", "Infra", NULL, &s), 0);
	assert_int_equal(s, STORE_FAILED);
	_cleanup_json_ json_t *a3 = claim(e->st, w, 1);
	assert_int_equal(json_array_size(a3), 0);
	assert_int_equal(store_show(e->st, pj_str(json_array_get(a2, 0), "job_id", ""), &show, &err), 0);
	json_t *job = json_object_get(show, "job");
	assert_string_equal(pj_str(job, "state", ""), "failed");
	assert_string_equal(pj_str(job, "failure_class", ""), "Infra");
	assert_string_equal(pj_str(job, "verdict", ""), "infra");
	/* a Timeout (the package hung) is not retried */
	_cleanup_json_ json_t *sub2 = submit(e->st, 1, "bookworm");
	_cleanup_json_ json_t *b1 = claim(e->st, w, 1);
	assert_int_equal(finish(e->st, json_array_get(b1, 0), "error", "Timeout", NULL, &s), 0);
	assert_int_equal(s, STORE_DONE);
	assert_int_equal(finish(e->st, json_array_get(b1, 0), "error", "Bogus", NULL, &s), STORE_E_INVALID);
}

static void test_blobs(void **state)
{
	struct eng *e = engine(state);
	struct pyti_err err = {0};
	size_t n = 200000;
	_cleanup_free_ char *data = xmalloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (char)("log line \n"[i % 10]);
	char sha[65], sha2[65];
	assert_int_equal(store_blob_put(e->st, data, n, NULL, sha, &err), 0);
	assert_int_equal(store_blob_put(e->st, data, n, sha, sha2, &err), 0); /* dedupe: present is fine */
	assert_string_equal(sha, sha2);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM blobs"), 1);
	assert_true(raw_count(e, "SELECT stored FROM blobs") < (long long)n / 10); /* compressed */
	bool has = false;
	assert_int_equal(store_blob_has(e->st, sha, &has, &err), 0);
	assert_true(has);
	_cleanup_buf_ struct buf b = BUF_INIT(0), small = BUF_INIT(100);
	assert_int_equal(store_blob_get(e->st, sha, &b, &err), 0);
	assert_int_equal(b.len, n);
	assert_memory_equal(b.data, data, n);
	assert_int_equal(store_blob_get(e->st, sha, &small, &err), STORE_E_TOOBIG);
	/* incompressible bytes are kept as they are; the empty blob is a blob */
	unsigned char rnd[64];
	for (size_t i = 0; i < sizeof rnd; i++)
		rnd[i] = (unsigned char)(i * 151 + 7);
	assert_int_equal(store_blob_put(e->st, rnd, sizeof rnd, NULL, sha2, &err), 0);
	buf_reset(&b);
	assert_int_equal(store_blob_get(e->st, sha2, &b, &err), 0);
	assert_memory_equal(b.data, rnd, sizeof rnd);
	assert_int_equal(store_blob_put(e->st, "", 0, NULL, sha2, &err), 0);
	/* wrong names, the cap, absent blobs */
	assert_int_equal(store_blob_put(e->st, "x", 1, sha, NULL, &err), STORE_E_INVALID);
	assert_int_equal(store_blob_put(e->st, "x", 1, "XYZ", NULL, &err), STORE_E_INVALID);
	struct store_limits lim;
	store_limits_get(e->st, &lim);
	lim.blob_max = 1000;
	store_limits_set(e->st, &lim);
	assert_int_equal(store_blob_put(e->st, data, 1001, NULL, NULL, &err), STORE_E_TOOBIG);
	assert_int_equal(store_rpc_code(STORE_E_TOOBIG), -32005);
	assert_int_equal(
		store_blob_get(e->st, "0000000000000000000000000000000000000000000000000000000000000000", &b, &err),
		STORE_E_NOTFOUND);

	/* finish naming a blob nobody uploaded: refused with the list, nothing stored */
	_cleanup_json_ json_t *sub = submit(e->st, 1, "bookworm"), *missing = NULL;
	char w[STORE_ID_SIZE];
	hello(e->st, w);
	_cleanup_json_ json_t *jobs = claim(e->st, w, 1);
	_cleanup_json_ json_t *arts = json_pack(
		"[{s:s, s:s, s:i}, {s:s, s:s, s:i}]", "name", "logs/test.log", "sha256", sha, "size", (int)n, "name",
		"junit.xml", "sha256", "1111111111111111111111111111111111111111111111111111111111111111", "size", 3);
	struct store_finish f = {.lease = lease_of(json_array_get(jobs, 0)), .status = "passed", .artefacts = arts};
	enum store_state s;
	assert_int_equal(store_finish(e->st, &f, &s, &missing, &err), STORE_E_MISSING);
	assert_int_equal(json_array_size(missing), 1);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM artefacts"), 0);
	json_array_remove(arts, 1);
	assert_int_equal(store_finish(e->st, &f, &s, NULL, &err), 0);
	assert_int_equal(raw_count(e, "SELECT COUNT(*) FROM artefacts"), 1);
}

/* A local `pyti run` job recorded at schema version 1 survives the migration to the current one. */
static void test_migration(void **state)
{
	struct eng *e = engine(state);
	struct pyti_err err = {0};
	store_close(e->st);
	e->st = NULL;
	/* a fresh database at version 1 (the SQLite case reuses its file name with another one) */
	if (!e->pg) {
		snprintf(e->url + strlen(e->url), sizeof e->url - strlen(e->url), ".v1");
	} else {
		_cleanup_free_ char *sql = xasprintf("DROP DATABASE %s WITH (FORCE)", e->db),
				    *sql2 = xasprintf("CREATE DATABASE %s", e->db);
		pg_admin(sql);
		pg_admin(sql2);
	}
	struct store *old = NULL;
	assert_int_equal(store_open_version(e->url, 1, &old, &err), 0);
	int v = 0;
	assert_int_equal(store_schema_version(old, &v, &err), 0);
	assert_int_equal(v, 1);
	struct store_run_spec spec = {.origin = "local"};
	char run[STORE_ID_SIZE], job[STORE_ID_SIZE];
	assert_int_equal(store_run_new(old, &spec, run, &err), 0);
	_cleanup_json_ json_t *res = results("failed", 1);
	struct store_job_record rec = {.dist = "six==1.17.0", .suite = "bookworm", .backend = "ns", .results = res};
	assert_int_equal(store_record_job(old, run, &rec, job, &err), 0);
	store_close(old);

	assert_int_equal(store_open(e->url, &e->st, &err), 0);
	assert_int_equal(store_schema_version(e->st, &v, &err), 0);
	assert_int_equal(v, STORE_SCHEMA_VERSION);
	_cleanup_json_ json_t *show = NULL;
	assert_int_equal(store_show(e->st, job, &show, &err), 0);
	assert_string_equal(pj_str(json_object_get(show, "job"), "verdict", ""), "test-failed");
	char w[STORE_ID_SIZE];
	hello(e->st, w); /* the table version 2 added */
	store_close(e->st);
	e->st = NULL;

	/* a database from a newer pyti is refused, not written */
	raw_exec(e, "UPDATE meta SET value = '99' WHERE key = 'schema_version'");
	assert_true(store_open(e->url, &e->st, &err) < 0);
	assert_non_null(strstr(err.msg, "newer"));
	assert_null(e->st);
	if (!e->pg)
		unlink(e->url);
}

/* store_record_job with artefacts, then store_copy into this engine: merged once, skipped after. */
static void test_record_and_copy(void **state)
{
	struct eng *e = engine(state);
	struct pyti_err err = {0};
	char dir[] = "/tmp/pyti-store-src-XXXXXX";
	assert_non_null(mkdtemp(dir));
	_cleanup_free_ char *src_url = xasprintf("%s/local.db", dir), *runs = xasprintf("%s/runs/j1", dir),
			    *logs = xasprintf("%s/runs/j1/logs", dir),
			    *log = xasprintf("%s/runs/j1/logs/test.log", dir),
			    *rj = xasprintf("%s/runs/j1/results.json", dir);
	assert_int_equal(mkdir_p(logs, 0755, &err), 0);
	assert_int_equal(write_file_atomic(log, "hello log\n", 10, 0644, &err), 0);
	assert_int_equal(write_file_atomic(rj, "{}", 2, 0644, &err), 0);
	struct store *src = NULL;
	assert_int_equal(store_open(src_url, &src, &err), 0);
	struct store_run_spec spec = {.origin = "local"};
	char run[STORE_ID_SIZE], job[STORE_ID_SIZE], job2[STORE_ID_SIZE];
	assert_int_equal(store_run_new(src, &spec, run, &err), 0);
	_cleanup_json_ json_t *res = results("passed", 0);
	struct store_job_record rec = {.dist = "six", .suite = "bookworm", .results = res, .artefact_dir = runs};
	assert_int_equal(store_record_job(src, run, &rec, job, &err), 0);
	struct store_job_record rec2 = {
		.dist = "nope", .suite = "bookworm", .error = "no such distribution", .fclass = PYTI_FC_FETCH};
	assert_int_equal(store_record_job(src, run, &rec2, job2, &err), 0);

	struct store_copy_stats cs;
	assert_int_equal(store_copy(src, e->st, &cs, &err), 0);
	assert_int_equal(cs.runs, 1);
	assert_int_equal(cs.jobs, 2);
	assert_int_equal(cs.blobs, 2);
	assert_int_equal(store_copy(src, e->st, &cs, &err), 0);
	assert_int_equal(cs.runs, 0);
	assert_int_equal(cs.runs_skipped, 1);
	store_close(src);
	rm_rf(dir, NULL);

	_cleanup_json_ json_t *show = NULL, *show2 = NULL, *st = NULL;
	assert_int_equal(store_show(e->st, job, &show, &err), 0);
	json_t *a = json_array_get(json_object_get(json_object_get(show, "job"), "attempts"), 0);
	json_t *arts = json_object_get(a, "artefacts");
	assert_int_equal(json_array_size(arts), 2);
	json_t *lg = json_array_get(arts, 0);
	assert_string_equal(pj_str(lg, "name", ""), "logs/test.log");
	_cleanup_buf_ struct buf b = BUF_INIT(0);
	assert_int_equal(store_blob_get(e->st, pj_str(lg, "sha256", ""), &b, &err), 0);
	assert_string_equal(b.data, "hello log\n");
	assert_int_equal(store_show(e->st, job2, &show2, &err), 0);
	assert_string_equal(pj_str(json_object_get(show2, "job"), "verdict", ""), "build-failed");
	/* a verdict the results carry (manager_verdict's) is the one stored */
	_cleanup_json_ json_t *own = json_pack("{s:s, s:s, s:s, s:s}", "status", "error", "failure_class", "Fetch",
					       "error", "x", "verdict", "infra"),
			      *show3 = NULL;
	char job3[STORE_ID_SIZE];
	struct store_job_record rec3 = {.dist = "own", .suite = "bookworm", .results = own};
	assert_int_equal(store_record_job(e->st, run, &rec3, job3, &err), 0);
	assert_int_equal(store_show(e->st, job3, &show3, &err), 0);
	assert_string_equal(pj_str(json_object_get(show3, "job"), "verdict", ""), "infra");
	assert_string_equal(pj_str(json_object_get(show3, "job"), "error", ""), "x");
	assert_int_equal(store_status(e->st, run, &st, &err), 0);
	assert_string_equal(pj_str(json_object_get(st, "run"), "origin", ""), "local");
}

/* A batch's processes record into one run at once: every job lands, each with its own seq. */
static void test_record_concurrent(void **state)
{
	struct eng *e = engine(state);
	struct pyti_err err = {0};
	struct store_run_spec spec = {.origin = "local"};
	char run[STORE_ID_SIZE];
	assert_int_equal(store_run_new(e->st, &spec, run, &err), 0);
	pid_t pid[2];
	for (int k = 0; k < 2; k++) {
		pid[k] = fork();
		assert_true(pid[k] >= 0);
		if (pid[k] == 0) {
			struct store *st = NULL;
			if (store_open(e->url, &st, &err) < 0)
				_exit(10);
			json_t *res = results("passed", 0);
			for (int i = 0; i < 15; i++) {
				char job[STORE_ID_SIZE];
				struct store_job_record rec = {
					.dist = k ? "b" : "a", .suite = "bookworm", .results = res};
				if (store_record_job(st, run, &rec, job, &err) < 0)
					_exit(11);
			}
			json_decref(res);
			store_close(st);
			_exit(0);
		}
	}
	for (int k = 0; k < 2; k++) {
		int ws;
		assert_int_equal(waitpid(pid[k], &ws, 0), pid[k]);
		assert_true(WIFEXITED(ws));
		assert_int_equal(WEXITSTATUS(ws), 0);
	}
	assert_int_equal(raw_count(e, "SELECT COUNT(DISTINCT seq) FROM jobs"), 30);
	assert_int_equal(raw_count(e, "SELECT MAX(seq) FROM jobs"), 30);
}

/* engine-independent */
static void test_names_and_verdicts(void **state)
{
	(void)state;
	char id[STORE_ID_SIZE];
	store_id_new('j', id);
	assert_int_equal(store_id_kind(id), 'j');
	assert_int_equal(store_id_kind("j123"), 0);
	assert_int_equal(store_id_kind("jABCDEF0123456789"), 0);
	assert_int_equal(store_rpc_code(STORE_E_NOTFOUND), -32003);
	assert_int_equal(store_rpc_code(STORE_E_UNAVAILABLE), -32006);
	assert_int_equal(store_rpc_code(STORE_E_MISSING), -32004);
	assert_int_equal(store_rpc_code(STORE_E_INVALID), -32602);
	assert_int_equal(store_rpc_code(STORE_E_INTERNAL), -32603);
	assert_int_equal(store_state_parse("leased"), STORE_LEASED);
	assert_int_equal(store_verdict_parse("no-tests"), STORE_V_NO_TESTS);
	_cleanup_json_ json_t *ok = results("passed", 0), *bad = results("failed", 1);
	assert_int_equal(store_verdict_of(ok), STORE_V_PASSED);
	assert_int_equal(store_verdict_of(bad), STORE_V_TEST_FAILED);
	assert_int_equal(store_verdict_of(NULL), STORE_V_INFRA);
	_cleanup_json_ json_t *inst = json_pack("{s:s, s:[{s:s, s:s}]}", "status", "failed", "tasks", "task", "install",
						"status", "failed");
	assert_int_equal(store_verdict_of(inst), STORE_V_BUILD_FAILED);
	_cleanup_json_ json_t *notest = json_pack("{s:s, s:[{s:s, s:s, s:{s:i, s:b}}]}", "status", "passed", "tasks",
						  "task", "test", "status", "passed", "tests", "total", 0, "no_tests",
						  1);
	assert_int_equal(store_verdict_of(notest), STORE_V_NO_TESTS);
	_cleanup_json_ json_t *crash = json_pack("{s:s, s:s}", "status", "error", "failure_class", "Crash"),
			      *fetch = json_pack("{s:s, s:s}", "status", "error", "failure_class", "Fetch");
	assert_int_equal(store_verdict_of(crash), STORE_V_INFRA);
	assert_int_equal(store_verdict_of(fetch), STORE_V_BUILD_FAILED);
	/* URLs */
	struct store *st = NULL;
	struct pyti_err err = {0};
	assert_int_equal(store_open("", &st, &err), STORE_E_INVALID);
	assert_int_equal(store_open("sqlite:", &st, &err), STORE_E_INVALID);
	/* a source that is not there is not created */
	assert_int_equal(store_open_existing("sqlite:/tmp/pyti-no-such-store-dir/x.db", &st, &err), STORE_E_NOTFOUND);
	assert_false(path_exists("/tmp/pyti-no-such-store-dir"));
	/* a server that is not there is "unavailable", the retryable error */
	assert_int_equal(store_open("host=/nonexistent-pyti dbname=x connect_timeout=2", &st, &err),
			 STORE_E_UNAVAILABLE);
	assert_int_equal(store_open("postgresql:///x?host=/nonexistent-pyti", &st, &err), STORE_E_UNAVAILABLE);
}

#define CASES(setup)                                                                                                   \
	cmocka_unit_test_setup_teardown(test_state_machine, setup, teardown),                                          \
		cmocka_unit_test_setup_teardown(test_claim_exactly_once, setup, teardown),                             \
		cmocka_unit_test_setup_teardown(test_lease_expiry_and_fencing, setup, teardown),                       \
		cmocka_unit_test_setup_teardown(test_report_idempotent, setup, teardown),                              \
		cmocka_unit_test_setup_teardown(test_report_partial_superseded, setup, teardown),                      \
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),                                         \
		cmocka_unit_test_setup_teardown(test_max_attempts, setup, teardown),                                   \
		cmocka_unit_test_setup_teardown(test_blobs, setup, teardown),                                          \
		cmocka_unit_test_setup_teardown(test_migration, setup, teardown),                                      \
		cmocka_unit_test_setup_teardown(test_record_and_copy, setup, teardown),                                \
		cmocka_unit_test_setup_teardown(test_record_concurrent, setup, teardown)

int main(void)
{
	const struct CMUnitTest common[] = {cmocka_unit_test(test_names_and_verdicts)};
	const struct CMUnitTest sqlite[] = {CASES(setup_sqlite)};
	const struct CMUnitTest pg[] = {CASES(setup_pg)};
	int rc = cmocka_run_group_tests_name("store", common, NULL, NULL);
	rc += cmocka_run_group_tests_name("store-sqlite", sqlite, NULL, NULL);
	rc += cmocka_run_group_tests_name("store-postgresql", pg, NULL, NULL);
	return rc;
}

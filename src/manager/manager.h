/* manager: one job end to end (the seed's Manager):
 *   fetch → stage (I/O directory) → sandbox run → collect → report.
 * Also the report helpers that turn a job's raw data into a table, JUnit XML and test counts. */
#ifndef PYTI_MANAGER_H
#define PYTI_MANAGER_H

#include "core.h"

#define MANAGER_JOB_MAX_S 21600.0 /* 6 h; PYTI_JOB_MAX_S */

struct manager_opts {
	const char *state_dir;
	const char *dist;        /* name, name==version (any requirement), sdist/wheel file, or source dir */
	const char *suite;       /* guest image, default "bookworm" */
	const char *recipe_path; /* NULL = the built-in default recipe */
	const char *backend;     /* "ns" (default) or "vm" */
	bool cold;               /* vm: boot instead of restoring the warm snapshot */
	const char *vm_uri;      /* vm: libvirt URI */
	bool keep;               /* keep the job's I/O directory */
	bool refresh;            /* re-resolve and re-download, whatever the fetch cache holds */
	const char *job_id;      /* NULL = a new one (manager_new_job_id) */
	const char *const *posargs; /* {posargs} of the recipe: arguments for the test runner */
	size_t n_posargs;
	const char *const *env;  /* "NAME=VALUE" set for every task (NULL-terminated, may be NULL) */
	const char *agent_path;  /* the static pyti-agent */
	/* Wall-clock limit of the sandbox of a job that has a task without a timeout (0 =
	 * MANAGER_JOB_MAX_S). Every job has a backstop that the sandbox cannot switch off. */
	double job_max_s;
	/* Progress: phase is "fetch", "stage", "sandbox", "collect"; event is an agent event or NULL. */
	void (*on_progress)(void *arg, const char *phase, const json_t *event);
	void *arg;
};

/* Run one job. On success *results is the job's raw data (results.json plus "tests" counts and
 * "logs", the directory that keeps its logs, and with keep "job_dir") — a failing task is still success here. On -1, err says
 * why (err->status: 2 for usage/configuration, 3 for infrastructure; err->fclass when it applies). */
int manager_run(const struct manager_opts *o, json_t **results, struct pyti_err *err);
/* A job id: UTC time and 24 random bits ("20261123T101500-3f2a9c"). Caller frees. */
char *manager_new_job_id(void);
/* The one rule that sums up a job for a batch, the store and the master: "passed", "test-failed",
 * "build-failed", "no-tests" or "infra". results is a job's raw data or the error object of a job
 * that could not run ({"status":"error","failure_class",…}, docs/contracts.md):
 *   - error object: class Fetch → build-failed; a limit the package ran into (Timeout OOM NoSpace
 *     Pids NoOutput) or Tampered → test-failed; anything else (Network, Crash, Infra, none) → infra;
 *   - a task with class Infra or Crash → infra;
 *   - the first failed task: a test task (it has "tests", or its name starts with "test") →
 *     test-failed (no-tests when its tests say no_tests), any other task → build-failed;
 *   - passed: no-tests when every test task ran no tests (and there is one), else passed. */
const char *manager_verdict(const json_t *results);
/* The exit status a verdict asks for: 0 passed/no-tests, 1 test-failed/build-failed, 3 infra. */
int manager_verdict_exit(const char *verdict);
/* After a job's process was killed (SIGINT/SIGTERM, its sandbox ended): keep what its tasks
 * finished — out/ goes to runs/<job_id>/ with results.json when its SHA-256 is announced_sha256
 * (the last "results" event the agent sent; NULL or another digest: renamed results.json.refused),
 * its "status" then "interrupted" — and remove the I/O directory (keep: leave it, without the
 * owner record that a sweep would remove it by). *partial (may be NULL) gets those results or
 * NULL. Returns 0, or -1 with err. */
int manager_salvage(const char *state_dir, const char *job_id, const char *announced_sha256, bool keep,
		    json_t **partial, struct pyti_err *err);
/* What runs/<job>/ keeps of a job's out/: at most this many bytes of files (docs/contracts.md). */
#define MANAGER_KEEP_MAX (64ULL << 20)
/* Remove from out_dir the files past cap bytes (results.json, top-level junit*.xml, logs/, then
 * the rest, in name order within each) and, when any were, set results' "omitted_outputs":
 * {"files": N, "bytes": B, "first": [{"file", "bytes"}, … up to 100]}. Never follows links. */
int manager_cap_outputs(const char *out_dir, uint64_t cap, json_t *results, struct pyti_err *err);
/* Test results from a JUnit XML file (untrusted input): {"passed","failed","skipped","errors",
 * "xfailed","xpassed","total","no_tests","failures":[{"id","outcome","message","traceback"}, … at
 * most 1000],"failures_truncated"} (docs/contracts.md). */
json_t *report_junit_counts(const char *path, struct pyti_err *err);
/* Test counts and per-test results from JUnit XML text (what report_junit_counts reads). */
json_t *report_junit_counts_mem(const char *data, size_t len, const char *name, struct pyti_err *err);
/* Every test case of JUnit XML text (untrusted, the same parser and limits): [{"id", "outcome": passed |
 * failed | error | skipped | xfailed, failures also "message" and "text" (the last 4 KiB of the
 * failure's text, for the first 1000)}], at most 200000 cases (issue 13: tests added and removed). */
json_t *report_junit_cases_mem(const char *data, size_t len, const char *path, struct pyti_err *err);
/* For each task of job.json that names a junit file, add "tests" to its entry in results; for each
 * task that wrote out/runtime-<task>.json, add "runtime" (capped, only the documented keys). The
 * files are the sandbox's: read beneath io_fd (the I/O directory) without following links. */
void report_add_test_counts(json_t *results, const json_t *job, int io_fd);
/* The test counts of every task of results, as pytest sums them up ("385 passed, 29 failed,
 * 203 errors, 15 skipped, 1 xfailed"), "no tests", or "" when no task has tests. */
void report_tests_summary(char *out, size_t cap, const json_t *results);
/* The human table; its result line gives results' "command_s" (the whole command) when set, and
 * then fetch_s and wall_s (the tasks'); show_failures adds the last lines of each failed task's output (escaped). */
void report_table(FILE *f, const json_t *results, bool show_failures);
/* One <testcase> per task (a failure class is an <error>), then a <testsuite> per test task with
 * one <testcase> per test, read back from its JUnit file kept under results' "logs". */
int report_junit_write(const json_t *results, const char *path, struct pyti_err *err);

#endif

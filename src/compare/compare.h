/* compare: what changed between two runs of the store (issue 13, docs/contracts.md "Compare").
 *
 * Pure functions over the JSON the store hands out (store_results() / store_show() of a run): no
 * database, no files, so every rule is unit-tested on plain JSON. The caller (cli) reads the runs,
 * may add to each job what the store keeps elsewhere, and prints the result:
 *   - "cases": [{"id", "outcome", "text"?}] — every test case of the job's JUnit files (outcome
 *     passed | failed | error | skipped | xfailed; text = the tail of a failure's text), so that tests
 *     added and removed can be told and failures get their innermost frame. Without it only the
 *     failing tests of results' tests.failures are known (added/removed stay empty).
 *   - "reruns": [job…] — the same job run again (`--confirm`, `--control`), in store_results()'s job
 *     shape; a side whose runs disagree makes its pair flaky.
 * Everything in the input came from a tested package (dist names, test ids, messages): the output
 * carries it as it is, the caller escapes it for its terminal or document.
 */
#ifndef PYTI_COMPARE_H
#define PYTI_COMPARE_H

#include <stdbool.h>
#include <stdio.h>

#include "core.h"

/* Pair verdicts, in the order the summary lists them. */
enum compare_verdict {
	CMP_REGRESSED = 0, /* passed in A, failed in B */
	CMP_FIXED,	   /* failed in A, passed in B */
	CMP_STILL_PASSING,
	CMP_STILL_FAILING,
	CMP_SPURIOUS,	/* a side failed with OOM, Timeout, NoSpace, Crash, Infra or Network */
	CMP_FLAKY,	/* the runs of one side disagree */
	CMP_BROKEN_DEP, /* B failed because a dependency failed to install or build */
	CMP_NEW,	/* only in B */
	CMP_GONE,	/* only in A */
	CMP_PENDING,	/* a side has not finished (queued, leased, cancelled) */
	CMP_VERDICT_COUNT
};
const char *compare_verdict_name(enum compare_verdict v); /* "regressed", "broken-dependency", … */
int compare_verdict_parse(const char *name);		  /* -1 if unknown */

struct compare_opts {
	double slower_ratio; /* a task's wall, CPU or peak memory grew past this factor: 0 = 1.5 */
	double slower_min_s; /* … and by at least this many seconds (memory: 16 MiB); 0 = 1.0 */
};

/* Compare run a (baseline) with run b (candidate): docs/contracts.md's shape
 * {"a", "b", "pairs": [{"dist", "a", "b", "suite_a", "suite_b", "verdict", "verdict_a", "verdict_b",
 *   "class", "dependency", "runs": {"a": [verdict…], "b": [verdict…]}, "tests": {"newly_failing",
 *   "newly_passing", "added", "removed", "flaky": [{"id", "side", "runs", "passed", "pass_rate"}]}}],
 *  "groups": [{"signature", "kind", "count", "dists", "tests": [{"dist", "id"}]}],
 *  "slower": [{"dist", "task", "metric", "a", "b", "ratio"}], "summary": {verdict: n},
 *  "regressions": n}. NULL only when a or b is not a run's JSON (no "jobs" array). */
json_t *compare_runs(const json_t *a, const json_t *b, const struct compare_opts *o);

/* The pairs whose verdict asks for confirmation by reruns (regressed, fixed). */
bool compare_wants_confirm(const json_t *pair);

/* The flake rate of each distribution and the known-flaky tests of a control (A/A) run: its jobs
 * each with "reruns" (or several jobs of the same dist and suite). {"packages": [{"dist", "suite",
 * "runs", "passed", "flake_rate"}], "known_flaky": [{"dist", "id", "runs", "passed", "pass_rate"}]} */
json_t *compare_control(const json_t *run);

/* The distribution's project name, normalised (PEP 503: lowercase, runs of -_. as one -), from a
 * requirement ("Six==1.17"), a file ("/x/six-1.17.0.tar.gz", "six-1.17.0-py3-none-any.whl") or a
 * source directory ("/x/pyti_demo-0.1.0"). Caller frees. */
char *compare_project_name(const char *dist);

/* The failure's signature: exception type + innermost frame (from a failure's traceback line,
 * message and text: pytest's "path.py:LINE: Type" lines), e.g. "AssertionError at tests/test_x.py:7";
 * without a frame "Type: message" (digits and addresses masked). Caller frees. */
char *compare_signature(const char *traceback, const char *message, const char *text);

/* The dependency a build-failed job's message or output names ("Failed to build X", "No matching
 * distribution found for X", …), normalised, when it is not the job's own project; else NULL. */
char *compare_broken_dependency(const json_t *job);

/* The job's infrastructure or resource class (OOM, Timeout, NoOutput, NoSpace, Crash, Infra, Network:
 * the job's own, its error form's or a task's), or NULL: such a job's failure says nothing of its package. */
const char *compare_job_resource_class(const json_t *job);

/* A Markdown report of compare_runs()'s result (test ids and messages in code spans). */
void compare_markdown(FILE *f, const json_t *cmp);
/* The terminal table (every string escaped with term_safe_dup). */
void compare_table(FILE *f, const json_t *cmp);

#endif

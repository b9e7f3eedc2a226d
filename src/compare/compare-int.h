/* compare: internal header (signature.c's and job.c's helpers that compare.c uses). */
#ifndef PYTI_COMPARE_INT_H
#define PYTI_COMPARE_INT_H

#include "compare.h"

#define CMP_SIG_MAX 200 /* bytes of a signature's message part */

/* s[0..n) with digits masked, at most CMP_SIG_MAX bytes, onto b. */
void cmp_put_masked(struct buf *b, const char *s, size_t n);
/* The last line of s that starts with an exception ("Type: …"), or NULL (caller frees). */
char *cmp_last_exception_line(const char *s);
/* The normalised dependency a build failure's text names, if not own (caller frees), or NULL. */
char *cmp_dep_from_text(const char *s, const char *own);

/* The wheel set an install's output reports: pip's "Successfully installed a-1 b-2" line, or uv's
 * "Installed N packages in …" and its " + a==1" / " - a==0.9" lines, whichever comes last:
 * {name: version} (names normalised), or NULL when the output has neither. */
json_t *cmp_installed(const char *output);

/* ---- one job (job.c) ---- */

/* A job's side of a pair: passed (or no tests), failed, spurious (a resource or infrastructure
 * class), not finished yet. */
enum cmp_outcome {
	CMP_O_PASS,
	CMP_O_FAIL,
	CMP_O_SPURIOUS,
	CMP_O_PENDING
};
/* The job's verdict (its own, else the store's rule), or NULL while it has not ended. */
const char *cmp_job_verdict(const json_t *job);
enum cmp_outcome cmp_job_outcome(const json_t *job);

/* What a job says about its tests. */
struct cmp_jtests {
	json_t *fail; /* id → failure {"id","outcome","message","traceback"} (+ "text" from cases) */
	json_t *all;  /* id → outcome, from "cases"; NULL when the job has none */
	bool ran;     /* some task counted tests (or listed failures) */
};
void cmp_jtests_of(const json_t *job, struct cmp_jtests *t);
void cmp_jtests_free(struct cmp_jtests *t);
/* The test failed in the job; ran and did not fail; ran and passed (or xfailed). */
bool cmp_jt_failing(const struct cmp_jtests *t, const char *id);
bool cmp_jt_not_failing(const struct cmp_jtests *t, const char *id);
bool cmp_jt_passed(const struct cmp_jtests *t, const char *id);

#endif

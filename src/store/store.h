/* store: runs → jobs → attempts → task results → test cases, plus content-addressed blobs, in SQLite
 * (embedded, WAL) or PostgreSQL (libpq) behind one interface (docs/design.md §6, docs/rpc.md).
 *
 * The database is the queue and the only state: a master keeps nothing of its own, so several masters
 * on one PostgreSQL are safe. Every change is one transaction; claims use FOR UPDATE SKIP LOCKED
 * (PostgreSQL) or BEGIN IMMEDIATE (SQLite); idempotency rests on unique keys, not on memory.
 *
 * Conventions: every fallible function returns STORE_OK (0) or a negative enum store_rc and fills
 * err (pyti_err_usage() status for STORE_E_NOTFOUND / STORE_E_INVALID, infrastructure otherwise);
 * store_rpc_code() maps a return value onto docs/rpc.md's error codes. JSON handed in is only read
 * (the caller keeps its reference); JSON handed out (json_t **out) is a new reference the caller
 * decrefs. Shapes of JSON results are docs/rpc.md's, named there.
 *
 * Threads: a struct store may be shared by threads (calls are serialised by a mutex inside); open one
 * per thread for parallel database work. Not usable across fork(): open it in the child.
 * Time: leases are measured with the caller's wall clock (now_wall()); masters on several machines
 * want their clocks in NTP sync (a lease lasts tens of seconds, skew of a second does not matter).
 */
#ifndef PYTI_STORE_H
#define PYTI_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

/* ---- return codes (negative) and their JSON-RPC codes (docs/rpc.md "Errors") ---- */
enum store_rc {
	STORE_OK = 0,
	STORE_E_INTERNAL = -1,	  /* a bug, a corrupt database, a full disk: -32603 */
	STORE_E_STALE = -2,	  /* the lease is not the job's current one (fencing); nothing stored: -32001 */
	STORE_E_NOTFOUND = -3,	  /* no such run, job, worker or blob: -32003 */
	STORE_E_UNAVAILABLE = -4, /* database down or busy past its timeout; retry later: -32006 */
	STORE_E_MISSING = -5,	  /* finish named artefact blobs that are not stored: -32004 */
	STORE_E_INVALID = -6,	  /* bad parameters (malformed id, wrong shape, sha256 mismatch): -32602 */
	STORE_E_TOOBIG = -7,	  /* a blob over the size cap: -32005 */
};
/* The docs/rpc.md code for a return value (0 for STORE_OK). */
int store_rpc_code(int rc);
/* "stale lease", "not found", …; "ok" for 0. */
const char *store_rc_name(int rc);

/* ---- ids (docs/rpc.md "Ids"): a letter and 16 hex digits, random; leases 32 hex digits ---- */
#define STORE_ID_SIZE 18    /* 'r'|'j'|'w' + 16 hex + NUL */
#define STORE_LEASE_SIZE 33 /* 32 hex + NUL */
/* A new random id of the given kind ('r' run, 'j' job, 'w' worker). */
void store_id_new(char kind, char out[STORE_ID_SIZE]);
/* The id's kind ('r', 'j', 'w') when it is well formed, else 0. */
char store_id_kind(const char *id);

/* ---- job states and verdicts ---- */
enum store_state {
	STORE_QUEUED = 0,
	STORE_LEASED,
	STORE_DONE,	 /* it ran, whatever its verdict */
	STORE_FAILED,	 /* could not be run within max_attempts (infrastructure); keeps its failure class */
	STORE_CANCELLED, /* by a user */
	STORE_STATE_COUNT
};
const char *store_state_name(enum store_state s); /* "queued", "leased", … */
int store_state_parse(const char *name);	  /* -1 if unknown */

enum store_verdict {
	STORE_V_NONE = 0, /* not done yet */
	STORE_V_PASSED,
	STORE_V_TEST_FAILED,
	STORE_V_BUILD_FAILED,
	STORE_V_NO_TESTS,
	STORE_V_INFRA,
	STORE_VERDICT_COUNT
};
const char *store_verdict_name(enum store_verdict v); /* "passed", "test-failed", …; NULL for NONE */
int store_verdict_parse(const char *name);	      /* -1 if unknown */
/* The verdict of a job from its results (what `pyti run --json` prints, also its {"status":"error",
 * "failure_class"} form; NULL = infra). The store's own rule until manager_verdict() replaces it:
 * an error or a task with class Crash/Infra/Network → infra; Fetch, or a failed install/build task →
 * build-failed; another failed task → test-failed; all passed but no test ran → no-tests; else passed. */
enum store_verdict store_verdict_of(const json_t *results);
/* (Results that carry a "verdict" of their own — manager_verdict()'s, as `pyti run` and the worker
 * add it — are stored with that one; store_verdict_of decides only for results without.) */
/* true for the failure classes a job is retried for (Crash, Infra; a lost lease counts as Infra). */
bool store_fclass_retried(enum pyti_fclass fc);

/* ---- opening ---- */
enum store_engine {
	STORE_SQLITE,
	STORE_POSTGRES
};
#define STORE_SCHEMA_VERSION 3

/* url: a file path (absolute or relative, e.g. STATE/pyti.db), "sqlite:PATH", "postgresql://…",
 * "postgres://…", or a libpq key=value string ("host=/run/dir dbname=pyti"; anything with '=' and
 * no '/' before it). Creates the schema, or migrates an older one in one transaction; a database of
 * a newer schema than STORE_SCHEMA_VERSION is refused. SQLite runs in WAL mode with a busy timeout;
 * its parent directory is created. A PostgreSQL that cannot be reached is STORE_E_UNAVAILABLE. */
struct store;
int store_open(const char *url, struct store **out, struct pyti_err *err);
/* store_open that never creates a database: a SQLite file that is not there is STORE_E_NOTFOUND (a
 * source to copy from, say). An existing older schema is still migrated. */
int store_open_existing(const char *url, struct store **out, struct pyti_err *err);
/* Tests only: create or migrate the schema only up to `version` (1..STORE_SCHEMA_VERSION). */
int store_open_version(const char *url, int version, struct store **out, struct pyti_err *err);
void store_close(struct store *st); /* NULL is fine */
static inline void store_closep(struct store **st)
{
	store_close(*st);
}
#define _cleanup_store_ _cleanup_(store_closep)
/* STATE/pyti.db (caller frees). */
char *store_default_url(const char *state_dir);
enum store_engine store_engine_of(const struct store *st);
/* For messages and logs: "sqlite:/path" or "postgresql (host=…, dbname=…)", never a password. */
const char *store_describe(const struct store *st);
/* The schema version the database is at. */
int store_schema_version(struct store *st, int *version, struct pyti_err *err);
/* A trivial query: is the database there? (STORE_E_UNAVAILABLE when not). A PostgreSQL connection
 * that broke is re-established by the next call to any function. */
int store_ping(struct store *st, struct pyti_err *err);

/* ---- limits (per handle; a master sets them from its configuration) ---- */
struct store_limits {
	int lease_s;	   /* a claim's and a heartbeat's lease (default 60) */
	int heartbeat_s;   /* what hello tells workers (default 20, a third of the lease) */
	int max_attempts;  /* attempts before an infrastructure failure is final (default 3) */
	uint64_t blob_max; /* bytes of one blob before compression (default 64 MiB) */
};
void store_limits_get(const struct store *st, struct store_limits *out);
void store_limits_set(struct store *st, const struct store_limits *lim); /* 0 fields keep the default */

/* ---- runs and jobs ---- */
struct store_run_spec {
	const char *const *dists; /* requirements, one job per dist × suite */
	size_t n_dists;
	const char *const *suites; /* images; NULL/0 = {"bookworm"} */
	size_t n_suites;
	const char *recipe;	 /* INI text, or NULL for the built-in default */
	const char *recipe_name; /* for display; NULL = "default" or the recipe's [recipe] name */
	const char *backend;	 /* "ns", "vm" or NULL (the worker's choice) */
	const json_t *env;	 /* object of strings, or NULL */
	const json_t *posargs;	 /* array of strings, or NULL */
	int priority;		 /* lower runs first (default 0) */
	const char *origin;	 /* "submit" (master) or "local" (pyti run); NULL = "submit" */
	const char *parent;	 /* the run this one runs again (`pyti rerun`), or NULL (schema 3) */
};
/* submit: a run with one queued job per dist × suite (in that order). *out = {"run_id", "jobs":
 * [job_id…]}. No dists is STORE_E_INVALID. */
int store_submit(struct store *st, const struct store_run_spec *spec, json_t **out, struct pyti_err *err);
/* rerun: a new run (queued, origin "submit", parent the run it repeats) of a run's jobs (r…) or of
 * one job (j…), with the same dists, suites, recipe, backend, env, posargs and priority. *out as
 * store_submit's. */
int store_rerun(struct store *st, const char *id, json_t **out, struct pyti_err *err);
/* The same for the jobs of run_id that ended without passing (a verdict other than passed, or
 * failed/cancelled without one). None: STORE_E_NOTFOUND. */
int store_rerun_failed(struct store *st, const char *run_id, json_t **out, struct pyti_err *err);
/* A run without jobs (spec->dists is ignored), for jobs recorded as they end (store_record_job). */
int store_run_new(struct store *st, const struct store_run_spec *spec, char run_id[STORE_ID_SIZE],
		  struct pyti_err *err);

/* A job that already ran outside the queue (`pyti run`): recorded as done, attempt 1, with its task
 * results, test cases, verdict and artefacts, in one transaction. */
struct store_job_record {
	const char *dist;
	const char *suite;
	const char *backend;
	const char *recipe_name;  /* NULL: results' "recipe" */
	const json_t *results;	  /* results.json as `pyti run --json` prints, or its error form, or NULL */
	const char *error;	  /* when the job did not run to its end: the message (or NULL) */
	enum pyti_fclass fclass;  /* that error's class */
	const char *artefact_dir; /* a host-made directory (STATE/runs/<job>) whose regular files, read
				     * beneath it without following links, become artefacts; NULL = none.
				     * Files over the blob cap are left out with a warning (log). */
};
int store_record_job(struct store *st, const char *run_id, const struct store_job_record *rec,
		     char job_id[STORE_ID_SIZE], struct pyti_err *err);

/* cancel a run (every queued and leased job of it) or a job, by id (r… or j…). *n = jobs cancelled
 * (0 when all had ended). A leased job is cancelled at once; its worker learns it from its next
 * heartbeat (cancel: true), and its report/finish are still accepted (and change nothing more). */
int store_cancel(struct store *st, const char *id, int *n, struct pyti_err *err);

/* ---- workers ---- */
/* hello: register a worker (a new id each time) with its capabilities (docs/rpc.md `hello`: images
 * [{suite, python}], backends, slots, disk_free, mem_free, version). */
int store_worker_hello(struct store *st, const char *name, const json_t *capabilities, char worker_id[STORE_ID_SIZE],
		       struct pyti_err *err);
/* {"workers": [{"worker_id", "name", "capabilities", "created", "last_seen"}]} newest first. */
int store_workers(struct store *st, json_t **out, struct pyti_err *err);

/* ---- the queue ---- */
/* claim: atomically lease up to max (1..100) queued jobs the worker can run (its images' suites, its
 * backends), lowest priority first, then oldest. Each gets attempt + 1 and a new lease token expiring
 * lease_s from now. Expired leases are returned first (store_expire). Never waits: the long poll is
 * the caller's loop. *jobs = [{"job_id", "run_id", "attempt", "lease", "lease_expires_in_s", "config":
 * {"dist", "suite", "backend", "recipe", "env", "posargs"}}] (maybe empty). Unknown worker:
 * STORE_E_NOTFOUND. Updates the worker's last_seen. */
int store_claim(struct store *st, const char *worker_id, int max, json_t **jobs, struct pyti_err *err);

/* What names one attempt: every call below is refused with STORE_E_STALE (nothing stored) unless the
 * job is leased (or cancelled) with exactly this attempt and lease token. A lease past its expiry that
 * nobody has returned to the queue yet is still the current one. */
struct store_lease {
	const char *job_id;
	int attempt;
	const char *lease;
};
/* heartbeat: renew the lease for lease_s; *expires_in_s = lease_s, or *cancel = true and 0 when the
 * job was cancelled (the worker stops it and finishes; nothing is renewed).
 * progress ({"task", "i", "n"} or NULL) is kept for status. Updates the worker's last_seen. */
int store_heartbeat(struct store *st, const struct store_lease *l, const json_t *progress, int *expires_in_s,
		    bool *cancel, struct pyti_err *err);
/* report: one task's raw data (an element of results.json's "tasks"; its "task" must equal task),
 * and its test cases from tests.failures. Idempotent per job + attempt + task: a repeat is accepted
 * and stores nothing new, except that a whole record replaces a partial one ("partial": true, what
 * a worker sends as the task ends); finish's results replace partial records too. */
int store_report(struct store *st, const struct store_lease *l, const char *task, const json_t *result,
		 struct pyti_err *err);

struct store_finish {
	struct store_lease lease;
	const char *status;	   /* the job's: "passed", "failed" or "error" (did not run to its end) */
	const char *failure_class; /* the job's class or NULL; Crash/Infra are retried */
	const json_t *results;	   /* the whole results.json (its tasks not reported yet are stored too) */
	const json_t *artefacts;   /* [{"name", "sha256", "size"}] of uploaded blobs, or NULL */
	const char *error;	   /* message for status "error", or NULL */
};
/* finish: end the attempt. An infrastructure class (store_fclass_retried) sends the job back to the
 * queue while attempts remain (*state = queued), else failed with that class; anything else is done
 * with its verdict. Artefacts not in the blob store: STORE_E_MISSING, *missing = [sha256…] (when
 * missing is not NULL), nothing stored. A repeated finish of the same attempt answers the state it
 * reached; a finish of a cancelled job keeps it cancelled. */
int store_finish(struct store *st, const struct store_finish *f, enum store_state *state, json_t **missing,
		 struct pyti_err *err);

/* Return every leased job whose lease expired to the queue (attempt outcome "lease-lost"), or to
 * failed with class Infra when it was the last attempt. *n = jobs affected (n may be NULL). */
int store_expire(struct store *st, int *n, struct pyti_err *err);

/* ---- reading (docs/rpc.md shapes) ---- */
/* status: {"run": {"run_id", "created", "origin", "parent", "counts": {state: n}, "verdicts": {verdict: n}},
 * "jobs": [{"job_id", "dist", "suite", "state", "attempt", "verdict", "failure_class"}]} */
int store_status(struct store *st, const char *run_id, json_t **out, struct pyti_err *err);
/* results: the same "run", and jobs with their "results" (the stored results.json, or null). */
int store_results(struct store *st, const char *run_id, json_t **out, struct pyti_err *err);
struct store_runs_query {
	int limit;	    /* 0 = 50 */
	const char *dist;   /* only runs with a job of this dist (exact), or NULL */
	const char *parent; /* only the runs made again from this run (full id), or NULL */
};
/* runs: {"runs": [{"run_id", "created", "origin", "parent", "jobs", "counts", "verdicts"}]} newest first. */
int store_runs(struct store *st, const struct store_runs_query *q, json_t **out, struct pyti_err *err);
/* show: a run id → store_results()'s shape; a job id → {"job": {"job_id", "run_id", "dist", "suite",
 * "backend", "recipe", "state", "attempt", "max_attempts", "verdict", "failure_class", "error",
 * "created", "finished", "worker_id", "progress", "results", "attempts": [{"attempt", "worker_id",
 * "started", "ended", "outcome", "failure_class", "tasks": [{"task", "status", "failure_class",
 * "wall_s", "result"}], "testcases": [{"task", "id", "outcome", "message"}], "artefacts": [{"name",
 * "sha256", "size"}]}]}}. A unique prefix of an id (at least 5 characters) is accepted. */
int store_show(struct store *st, const char *id, json_t **out, struct pyti_err *err);

/* ---- the web UI's tables (web.c) ---- */
/* {"run": status's run, "jobs": [{"job_id", "dist", "suite", "state", "attempt", "verdict",
 * "failure_class", "worker_id", "started", "duration_s", "tests_passed", "tests_failed", "progress"}]} */
int store_run_jobs(struct store *st, const char *run_id, json_t **out, struct pyti_err *err);
/* {"dist", "jobs": [{"job_id", "run_id", "created" (the run's), "suite", "state", "verdict",
 * "failure_class", "duration_s", "tests_passed", "tests_failed"}]} newest run first, at most limit
 * (0: 200) */
int store_dist_history(struct store *st, const char *dist, int limit, json_t **out, struct pyti_err *err);
/* {"jobs": [{"job_id", "run_id", "dist", "suite", "state", "priority", "attempt", "max_attempts",
 * "worker_id", "created", "lease_expires", "progress"}]}: leased first, then queued by priority
 * (highest first) and age; at most limit (0: 500) */
int store_queue(struct store *st, int limit, json_t **out, struct pyti_err *err);
/* Add "dists" and "suites" (distinct counts of its jobs) to each run of store_runs()'s answer. */
int store_runs_axes(struct store *st, json_t *runs, struct pyti_err *err);

/* ---- blobs: content-addressed (sha256 of the uncompressed bytes), compressed (zstd), deduplicated ---- */
/* Store len bytes. sha256 (64 lowercase hex) is checked against the data when given (mismatch:
 * STORE_E_INVALID); out_sha (may be NULL) gets it. Over the cap: STORE_E_TOOBIG. Already present is
 * not an error (nothing written). */
int store_blob_put(struct store *st, const void *data, size_t len, const char *sha256, char out_sha[65],
		   struct pyti_err *err);
int store_blob_has(struct store *st, const char *sha256, bool *has, struct pyti_err *err);
/* The uncompressed bytes into out (out->max caps them: larger is an error). Absent: STORE_E_NOTFOUND. */
int store_blob_get(struct store *st, const char *sha256, struct buf *out, struct pyti_err *err);

/* ---- copy: merge src's history into dst (`pyti store copy`) ----
 * Every run of src not in dst, with its jobs, attempts, task results, test cases, artefacts and their
 * blobs, and the workers they name; one transaction per run, so an interrupted copy resumes. Ids are
 * global, so runs already in dst are skipped, not duplicated. */
struct store_copy_stats {
	long runs, runs_skipped, jobs, blobs;
};
int store_copy(struct store *src, struct store *dst, struct store_copy_stats *stats, struct pyti_err *err);

#endif

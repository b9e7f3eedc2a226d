/* worker: the client side of the master's JSON-RPC API (docs/rpc.md) and `pyti worker`.
 *
 *   wrpc_*    one JSON-RPC 2.0 request/response over HTTP (libcurl), errors classified
 *   backoff_* exponential backoff with jitter and a cap
 *   spool_*   unsent report/finish requests on disk, replayed in order
 *   worker_*  hello → claim (long poll) → each job in a child process running manager_run() →
 *             heartbeat, report (each task as it ends), upload + finish
 */
#ifndef PYTI_WORKER_H
#define PYTI_WORKER_H

#include "core.h"

/* ---- JSON-RPC client ---- */

/* How a failed call failed; what the caller does next depends only on this. */
enum wrpc_kind {
	WRPC_OK = 0,
	WRPC_RETRY,	   /* connection refused/reset, timeout, HTTP 5xx, -32002 slow down, -32006 store down */
	WRPC_UNAUTHORIZED, /* -32000: fatal for the worker (wrong token) */
	WRPC_STALE,	   /* -32001: the lease is another attempt's: abandon that job, quietly */
	WRPC_NOT_FOUND,	   /* -32003 */
	WRPC_MISSING,	   /* -32004: finish named blobs not uploaded (data.missing) */
	WRPC_TOO_LARGE,	   /* -32005 (or HTTP 413) */
	WRPC_FATAL,	   /* anything else: a bad request, a protocol error, -326xx */
};

/* Application error codes of docs/rpc.md */
#define WRPC_E_UNAUTHORIZED (-32000)
#define WRPC_E_STALE_LEASE (-32001)
#define WRPC_E_SLOW_DOWN (-32002)
#define WRPC_E_NOT_FOUND (-32003)
#define WRPC_E_MISSING (-32004)
#define WRPC_E_TOO_LARGE (-32005)
#define WRPC_E_STORE_DOWN (-32006)

struct wrpc_client;

/* url: the master's base URL ("http://host:port" or one ending in /rpc); token may be NULL (reading
 * methods need none). timeout_s bounds a whole call (a claim's long poll adds its wait_s). */
struct wrpc_client *wrpc_new(const char *url, const char *token, double timeout_s, struct pyti_err *err);
void wrpc_free(struct wrpc_client *c);
/* A flag the caller's signal handler sets: a call in flight is aborted (WRPC_RETRY) when it is. */
void wrpc_set_abort_flag(struct wrpc_client *c, volatile int *flag);

/* Call method with params (borrowed; NULL = no params). On success *result is the "result"
 * member (caller decrefs). On -1, err says why (its message names the method and, for an
 * error object, the code and message) and wrpc_last() classifies it. */
int wrpc_call(struct wrpc_client *c, const char *method, json_t *params, json_t **result, struct pyti_err *err);
/* The same with the long-poll allowance extra_s added to the call's timeout. */
int wrpc_call_wait(struct wrpc_client *c, const char *method, json_t *params, double extra_s, json_t **result,
		   struct pyti_err *err);

struct wrpc_status {
	enum wrpc_kind kind;
	int rpc_code;	      /* the JSON-RPC error code, 0 when the failure was HTTP or transport */
	long http;	      /* HTTP status, 0 when none came */
	double retry_after_s; /* data.retry_after_s of -32002/-32006, else 0 */
	json_t *data;	      /* the error object's data (borrowed, valid until the next call) or NULL */
};
const struct wrpc_status *wrpc_last(const struct wrpc_client *c);

/* The classification rules, exposed for the unit tests: a transport failure (curl_code != 0),
 * an HTTP status and an error object's code. */
enum wrpc_kind wrpc_classify(int curl_code, long http, int rpc_code, bool have_error);
const char *wrpc_kind_name(enum wrpc_kind k);

/* Read a token file: its first line, without surrounding blanks; an empty or unreadable file is
 * a usage error. Caller frees *out. */
int wrpc_read_token(const char *path, char **out, struct pyti_err *err);
/* The token for user commands: path, else $PYTI_TOKEN_FILE, else *out = NULL (not an error). */
int wrpc_user_token(const char *path, char **out, struct pyti_err *err);

/* Base64 (RFC 4648, with padding) of n bytes; caller frees. */
char *wrpc_base64(const void *data, size_t n);

/* ---- backoff ---- */
struct backoff {
	double base_s, cap_s; /* first delay, largest delay */
	double cur_s;	      /* the current ceiling */
	unsigned seed;
};
void backoff_init(struct backoff *b, double base_s, double cap_s, unsigned seed);
/* The next delay: uniform in [ceiling/2, ceiling] ("equal jitter"), at least min_s (a server's
 * retry_after_s) and never over cap_s; the ceiling doubles up to cap_s. */
double backoff_next(struct backoff *b, double min_s);
void backoff_reset(struct backoff *b);

/* ---- spool: requests that must reach the master (report, finish), one file each ----
 * Files are NNNNNNNNNNNN.json (a sequence number), written with write_file_atomic, so a crash
 * leaves either the whole request or none; they are sent in sequence order. An entry is
 * {"method", "params", "job_id", "uploads": [{"root", "rel", "sha256", "size"}] (root/rel sent by
 * `upload` first, read beneath root)}. */
struct spool;
/* Open (creating) the spool directory dir, locked for this process (a second worker with the same
 * spool is a usage error). */
struct spool *spool_open(const char *dir, struct pyti_err *err);
void spool_close(struct spool *s);
/* Append an entry (borrowed); returns its sequence number, or -1. */
long long spool_push(struct spool *s, const json_t *entry, struct pyti_err *err);
/* The entries in sequence order: *seqs (caller frees) of *n. */
int spool_list(struct spool *s, long long **seqs, size_t *n, struct pyti_err *err);
json_t *spool_read(struct spool *s, long long seq, struct pyti_err *err);
void spool_remove(struct spool *s, long long seq);
/* Remove every entry of job_id (its lease was lost or it was cancelled). */
void spool_drop_job(struct spool *s, const char *job_id);
size_t spool_count(struct spool *s);

/* Send the spool in order over c: uploads, then the request. An entry answered WRPC_STALE or
 * another non-retryable error is dropped (with a warning; stale ones quietly), an accepted one
 * removed. Returns the number left (0 = empty) or -1 on a retryable failure (err, wrpc_last(c)),
 * at which point the caller backs off. on_done (may be NULL) hears each entry's fate. */
typedef void (*spool_done_fn)(void *arg, const json_t *entry, enum wrpc_kind kind, const json_t *result);
int spool_flush(struct spool *s, struct wrpc_client *c, spool_done_fn on_done, void *arg, struct pyti_err *err);

/* ---- the worker ---- */
struct worker_opts {
	const char *state_dir;
	const char *master;	/* URL */
	const char *token;	/* worker token (clear text, read from the token file) */
	const char *backend;	/* "ns" or "vm" */
	const char *name;	/* worker name (default: host name) */
	const char *self_exe;	/* the pyti binary, re-executed for each job */
	const char *agent_path; /* pyti-agent */
	int slots;		/* concurrent jobs */
	long max_jobs;		/* exit after this many jobs (0 = no limit); --once = 1 */
	bool once;		/* one claim: run what it returned, then exit */
	int verbose;		/* passed on to the job processes */
	double heartbeat_s;	/* 0 = the master's */
	bool allow_local;	/* take distributions that are paths on this machine */
};
/* Run until SIGTERM/SIGINT (then: stop claiming, let the running jobs end, flush, return 0), or
 * until max_jobs are done. -1 on a fatal error (unauthorized, a bad configuration). */
int worker_run(const struct worker_opts *o, struct pyti_err *err);

/* The job process (`pyti worker --run-job DIR`): DIR/claim.json is the claimed job; runs it with
 * manager_run() exactly as `pyti run` does, writes each progress event as one JSON line on
 * event_fd and the outcome to DIR/outcome.json ({"results": …} or {"error": …, "failure_class",
 * "exit_status"}). Returns the exit status. */
int worker_job_main(const char *state_dir, const char *dir, const char *agent_path, int event_fd);

/* Capabilities for hello: images (suite, python) of state_dir, backends, slots, disk and memory. */
json_t *worker_capabilities(const char *state_dir, const char *backend, int slots);

/* Worker configuration file (INI): [worker] master, token_file, slots, backend, name, heartbeat_s,
 * allow_local_dists (true/false).
 * Values already set in *c (the command line) win. Errors name FILE:LINE. Strings are allocated
 * into the struct; free with worker_config_free. */
struct worker_config {
	char *master, *token_file, *backend, *name;
	int slots;
	double heartbeat_s;
	bool allow_local_dists;
};
int worker_config_load(const char *path, struct worker_config *c, struct pyti_err *err);
void worker_config_free(struct worker_config *c);

#endif

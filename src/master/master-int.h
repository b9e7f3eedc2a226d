/* master: internal header shared by server.c (HTTP, auth, the handle pool, the log) and
 * handlers.c (one function per JSON-RPC method, on the store). */
#ifndef PYTI_MASTER_INT_H
#define PYTI_MASTER_INT_H

#include <pthread.h>
#include <stdbool.h>

#include "master.h"
#include "rpc.h"
#include "store.h"

#define MASTER_MAX_HANDLES 64

struct master {
	const struct master_config *cfg;
	char *store_url;
	struct store_limits lim;
	FILE *log;

	pthread_mutex_t mu;
	pthread_cond_t handle_free; /* a handle was given back */
	struct store *handles[MASTER_MAX_HANDLES];
	bool busy[MASTER_MAX_HANDLES];
	unsigned n_handles;

	pthread_cond_t work; /* this master queued work (submit, a requeue): wake long polls */
	unsigned long work_gen;
	bool stopping;
	unsigned inflight;   /* HTTP requests between their first byte and their answer's end */
	uint64_t buffered;   /* bytes of request bodies held */
	pthread_cond_t idle; /* inflight dropped to 0 */
};

/* A borrowed store handle (struct store is serialised inside: one request at a time on it). */
struct master_handle {
	struct master *m;
	unsigned idx;
	struct store *st;
};
/* Borrow a handle, opening it when needed: 0, or -1 with e filled (-32002 when none came free in
 * slow_down_ms, -32006 when the store cannot be opened). */
int master_handle_get(struct master *m, struct master_handle *h, struct rpc_error *e);
void master_handle_put(struct master_handle *h);
/* Wake the long polls of this master. */
void master_work_signal(struct master *m);
/* Wait until work is signalled, until deadline (now_mono() seconds) or at most step seconds. */
void master_work_wait(struct master *m, double deadline, double step);

/* One line an event: "TIME EVENT key=value …" (values escaped for the terminal). */
void master_log(struct master *m, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The JSON-RPC dispatcher (rpc_dispatch_fn) over the store. */
json_t *master_dispatch(void *ctx, const struct rpc_call *call, struct rpc_error *e);

/* Strict base64 (RFC 4648, padding required, no whitespace) into a new buffer. -1 when not base64. */
int master_base64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len);

#endif

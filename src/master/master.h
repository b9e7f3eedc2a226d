/* master: `pyti master`, the JSON-RPC 2.0 server over HTTP (POST /rpc, libmicrohttpd) in front of
 * the store (docs/rpc.md, docs/design.md §6).
 *
 * Stateless: every job, lease and result lives in the store, so several masters on one PostgreSQL
 * serve the same queue. What a master holds is configuration and a small pool of store handles
 * (a handle serialises its calls; a request borrows one, and a request that cannot get one in time
 * is told to slow down, -32002). Lease expiry is swept by the store on every claim.
 */
#ifndef PYTI_MASTER_H
#define PYTI_MASTER_H

#include <stdint.h>
#include <stdio.h>

#include "core.h"

#define MASTER_DEFAULT_PORT 8765
#define MASTER_MAX_TOKENS 64

struct master_config {
	char *source;	      /* the config file, for messages (NULL: none) */
	char *listen_addr;    /* IPv4 or IPv6 literal, or "localhost"; default 127.0.0.1 */
	unsigned listen_port; /* default MASTER_DEFAULT_PORT; 0 = any free port (printed on start) */
	char *store_url;      /* store_open()'s url; NULL = the state directory's pyti.db */
	int lease_s;	      /* 0 = the store's default */
	int heartbeat_s;
	int max_attempts;
	uint64_t body_limit;	/* bytes of one HTTP body (default 64 MiB + base64 slack: 96 MiB) */
	unsigned batch_limit;	/* requests in one batch (default 100) */
	unsigned connections;	/* concurrent HTTP connections (default 256) */
	unsigned store_handles; /* store handles in the pool (0: 1 on SQLite, 4 on PostgreSQL) */
	double slow_down_ms;	/* how long a request waits for a free handle before -32002 (default 2000) */
	/* SHA-256 (raw 32 bytes) of the tokens, never the tokens */
	unsigned char worker_tokens[MASTER_MAX_TOKENS][32];
	unsigned char user_tokens[MASTER_MAX_TOKENS][32];
	unsigned n_worker_tokens, n_user_tokens;
	int verbose; /* 1: log heartbeats and reads too */
	FILE *log;   /* event log (one line an event); NULL = stderr */
	FILE *ready; /* when set: "listening ADDR:PORT\n" is written here once the socket is up */
};

void master_config_init(struct master_config *c);
void master_config_free(struct master_config *c);
/* Read an INI file into c (keys of [master] and [tokens], see man/pyti.1); errors name file:line. */
int master_config_load(struct master_config *c, const char *path, struct pyti_err *err);
/* "ADDR:PORT", "[V6]:PORT", ":PORT" or "PORT" into c. */
int master_config_listen(struct master_config *c, const char *spec, struct pyti_err *err);
/* A 64-hex-digit SHA-256 into raw bytes: 0, or -1 when it is not one. */
int master_parse_hash(const char *hex, unsigned char out[32]);

/* Serve until SIGINT or SIGTERM (then stop accepting, finish the requests in flight, return 0).
 * state_dir gives the default store. */
int master_serve(const struct master_config *c, const char *state_dir, struct pyti_err *err);

#endif

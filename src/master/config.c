/* master: the configuration file (INI, read with inih like recipes; errors name file:line).
 *
 *   [master]
 *   listen = 127.0.0.1:8765
 *   store = postgresql:///pyti?host=/run/postgresql     (default: STATE/pyti.db)
 *   lease_s = 60
 *   heartbeat_s = 20
 *   max_attempts = 3
 *   body_limit = 32M
 *   batch_limit = 100
 *   connections = 256
 *   store_handles = 4                (default: 1 on SQLite, 4 on PostgreSQL)
 *   slow_down_ms = 2000
 *   [tokens]
 *   worker = <sha256 of a worker token, 64 hex digits>     (repeatable)
 *   user = <sha256 of a user token>
 *
 * Tokens are kept as hashes only, so a leaked config does not leak them (`pyti master hash-token`).
 */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <ini.h>

#include "master.h"

void master_config_init(struct master_config *c)
{
	*c = (struct master_config){0};
	c->listen_addr = xstrdup("127.0.0.1");
	c->listen_port = MASTER_DEFAULT_PORT;
	c->body_limit = 32u << 20;
	c->batch_limit = 100;
	c->connections = 256;
	c->slow_down_ms = 2000;
}

void master_config_free(struct master_config *c)
{
	free(c->source);
	free(c->listen_addr);
	free(c->store_url);
	*c = (struct master_config){0};
}

int master_parse_hash(const char *hex, unsigned char out[32])
{
	if (strlen(hex) != 64)
		return -1;
	for (int i = 0; i < 32; i++) {
		unsigned v = 0;
		for (int k = 0; k < 2; k++) {
			char ch = hex[2 * i + k];
			v <<= 4;
			if (ch >= '0' && ch <= '9')
				v |= (unsigned)(ch - '0');
			else if (ch >= 'a' && ch <= 'f')
				v |= (unsigned)(ch - 'a' + 10);
			else if (ch >= 'A' && ch <= 'F')
				v |= (unsigned)(ch - 'A' + 10);
			else
				return -1;
		}
		out[i] = (unsigned char)v;
	}
	return 0;
}

int master_config_listen(struct master_config *c, const char *spec, struct pyti_err *err)
{
	const char *colon = strrchr(spec, ':');
	_cleanup_free_ char *host = NULL;
	const char *port = spec;
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (!close || close[1] != ':')
			return pyti_err_usage(err, "listen address '%s': expected [IPV6]:PORT", spec);
		host = xasprintf("%.*s", (int)(close - spec - 1), spec + 1);
		port = close + 2;
	} else if (colon) {
		host = xasprintf("%.*s", (int)(colon - spec), spec);
		port = colon + 1;
	}
	char *end;
	errno = 0;
	unsigned long p = strtoul(port, &end, 10);
	if (!*port || *end || errno || p > 65535)
		return pyti_err_usage(err, "listen address '%s': bad port '%s'", spec, port);
	if (host && *host) {
		free(c->listen_addr);
		c->listen_addr = steal_pointer(&host);
	}
	c->listen_port = (unsigned)p;
	return 0;
}

struct load_ctx {
	struct master_config *c;
	char msg[512];
	bool failed;
	bool seen_master, seen_tokens;
	unsigned keys_seen;
};

static int parse_uint(const char *v, long long lo, long long hi, long long *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (!*v || *end || errno || x < lo || x > hi)
		return -1;
	*out = x;
	return 0;
}

static int parse_bytes(const char *v, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (!*v || v[0] == '-' || errno || end == v)
		return -1;
	unsigned shift = 0;
	if (*end == 'K' || *end == 'k')
		shift = 10, end++;
	else if (*end == 'M' || *end == 'm')
		shift = 20, end++;
	else if (*end == 'G' || *end == 'g')
		shift = 30, end++;
	if (shift && (*end == 'i' || *end == 'B'))
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end || x > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)x << shift;
	return 0;
}

#define FAIL(...)                                                                                                      \
	do {                                                                                                           \
		snprintf(l->msg, sizeof l->msg, __VA_ARGS__);                                                          \
		l->failed = true;                                                                                      \
		return 0;                                                                                              \
	} while (0)

static const struct {
	const char *name;
	long long lo, hi;
	size_t off; /* offset of an int or unsigned in struct master_config; SIZE_MAX for others */
	bool is_unsigned;
} int_keys[] = {
	{"lease_s", 5, 86400, offsetof(struct master_config, lease_s), false},
	{"heartbeat_s", 1, 86400, offsetof(struct master_config, heartbeat_s), false},
	{"max_attempts", 1, 100, offsetof(struct master_config, max_attempts), false},
	{"batch_limit", 1, 1000, offsetof(struct master_config, batch_limit), true},
	{"connections", 1, 10000, offsetof(struct master_config, connections), true},
	{"store_handles", 1, 64, offsetof(struct master_config, store_handles), true},
};

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *l = user;
	struct master_config *c = l->c;
	if (l->failed)
		return 0;
	if (strcmp(section, "master") == 0) {
		if (strcmp(name, "listen") == 0) {
			struct pyti_err e = {0};
			if (master_config_listen(c, value, &e) < 0)
				FAIL("%.500s", e.msg);
			return 1;
		}
		if (strcmp(name, "store") == 0) {
			if (!*value)
				FAIL("empty 'store'");
			free(c->store_url);
			c->store_url = xstrdup(value);
			return 1;
		}
		if (strcmp(name, "body_limit") == 0) {
			if (parse_bytes(value, &c->body_limit) < 0 || c->body_limit < 4096 ||
			    c->body_limit > (1ull << 32))
				FAIL("bad value for 'body_limit': '%s' (bytes from 4K to 4G, e.g. 32M)", value);
			return 1;
		}
		if (strcmp(name, "slow_down_ms") == 0) {
			long long x;
			if (parse_uint(value, 1, 600000, &x) < 0)
				FAIL("bad value for 'slow_down_ms': '%s' (milliseconds, 1 to 600000)", value);
			c->slow_down_ms = (double)x;
			return 1;
		}
		for (size_t i = 0; i < ARRAY_SIZE(int_keys); i++) {
			if (strcmp(int_keys[i].name, name) != 0)
				continue;
			long long x;
			if (parse_uint(value, int_keys[i].lo, int_keys[i].hi, &x) < 0)
				FAIL("bad value for '%s': '%s' (an integer from %lld to %lld)", name, value,
				     int_keys[i].lo, int_keys[i].hi);
			char *p = (char *)c + int_keys[i].off;
			if (int_keys[i].is_unsigned)
				*(unsigned *)p = (unsigned)x;
			else
				*(int *)p = (int)x;
			return 1;
		}
		FAIL("unknown key '%s' in [master]", name);
	}
	if (strcmp(section, "tokens") == 0) {
		bool worker = strcmp(name, "worker") == 0;
		if (!worker && strcmp(name, "user") != 0)
			FAIL("unknown key '%s' in [tokens] (worker or user)", name);
		unsigned *n = worker ? &c->n_worker_tokens : &c->n_user_tokens;
		if (*n >= MASTER_MAX_TOKENS)
			FAIL("more than %d %s tokens", MASTER_MAX_TOKENS, name);
		if (master_parse_hash(value, worker ? c->worker_tokens[*n] : c->user_tokens[*n]) < 0)
			FAIL("'%s' in [tokens] must be the SHA-256 of a token, 64 hex digits (pyti master hash-token)",
			     name);
		(*n)++;
		return 1;
	}
	if (!*section)
		FAIL("key '%s' outside a section (start with [master])", name);
	FAIL("unknown section [%s] (expected [master] or [tokens])", section);
}

int master_config_load(struct master_config *c, const char *path, struct pyti_err *err)
{
	struct load_ctx l = {.c = c};
	free(c->source);
	c->source = xstrdup(path);
	/* a regular file only, like recipes: a FIFO or device would block or never end */
	_cleanup_buf_ struct buf b = BUF_INIT(1u << 20);
	if (read_file(path, &b, err) < 0)
		return pyti_err_prefix(err, "master config %s", path);
	if (!b.data || memchr(b.data, '\0', b.len))
		return pyti_err_usage(err, "%s: empty, or not a text file", path);
	/* stop at the first error, so that the line inih reports is the one our message is about (inih's
	 * options are globals: read once at start, before any thread) */
	bool stop = ini_stop_on_first_error;
	ini_stop_on_first_error = true;
	int rc = ini_parse_string(b.data, handler, &l);
	ini_stop_on_first_error = stop;
	if (rc < 0)
		return pyti_err_set(err, 0, "%s: cannot parse", path);
	if (rc > 0)
		return pyti_err_usage(err, "%s:%d: %s", path, rc, l.failed ? l.msg : "syntax error");
	if (c->heartbeat_s && c->lease_s && c->heartbeat_s >= c->lease_s)
		return pyti_err_usage(err, "%s: heartbeat_s (%d) must be below lease_s (%d)", path, c->heartbeat_s,
				      c->lease_s);
	return 0;
}

/* master: HTTP (libmicrohttpd, a thread per connection, bounded), tokens, the store handle pool and
 * the event log. Only POST /rpc exists: other paths are 404, other methods on /rpc 405. A body over
 * the limit is refused with -32005: before it is sent when the client asked "Expect: 100-continue",
 * else once it is read (what passes the limit is dropped, never kept in memory). Every JSON-RPC answer is HTTP 200
 * (its error objects say what went wrong), a body of notifications only gets 204.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "master-int.h"
#include "web.h"

/* ---- the event log ---- */
void master_log(struct master *m, const char *event, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[40];
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
	/* values quote what clients sent (worker names, task names, dists): escaped, one line */
	_cleanup_free_ char *safe = term_safe_dup(line, 0);
	flockfile(m->log);
	fprintf(m->log, "%s.%03ldZ %s %s\n", when, ts.tv_nsec / 1000000, event, safe);
	fflush(m->log);
	funlockfile(m->log);
}

/* ---- the store handle pool ---- */
int master_handle_get(struct master *m, struct master_handle *h, struct rpc_error *e)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	long ns = (long)(m->cfg->slow_down_ms * 1e6);
	until.tv_sec += ns / 1000000000L;
	until.tv_nsec += ns % 1000000000L;
	if (until.tv_nsec >= 1000000000L)
		until.tv_sec++, until.tv_nsec -= 1000000000L;

	pthread_mutex_lock(&m->mu);
	for (;;) {
		for (unsigned i = 0; i < m->n_handles; i++)
			if (!m->busy[i]) {
				m->busy[i] = true;
				h->m = m;
				h->idx = i;
				h->st = m->handles[i];
				pthread_mutex_unlock(&m->mu);
				goto got;
			}
		if (pthread_cond_timedwait(&m->handle_free, &m->mu, &until) == ETIMEDOUT) {
			pthread_mutex_unlock(&m->mu);
			rpc_error_set(e, RPC_SLOW_DOWN, json_pack("{s:i}", "retry_after_s", 1),
				      "slow down: every store handle is busy; retry later");
			return -1;
		}
	}
got:
	if (!h->st) {
		/* first use, or the store could not be opened before (PostgreSQL down at start) */
		struct pyti_err err = {0};
		struct store *st = NULL;
		if (store_open(m->store_url, &st, &err) < 0) {
			master_handle_put(h);
			master_log(m, "store-unavailable", "error=\"%s\"", pyti_err_str(&err));
			rpc_error_set(e, RPC_STORE_UNAVAILABLE, json_pack("{s:i}", "retry_after_s", 2),
				      "store unavailable; retry later");
			return -1;
		}
		store_limits_set(st, &m->lim);
		h->st = st;
		pthread_mutex_lock(&m->mu);
		m->handles[h->idx] = st;
		pthread_mutex_unlock(&m->mu);
	}
	return 0;
}

void master_handle_put(struct master_handle *h)
{
	struct master *m = h->m;
	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	m->busy[h->idx] = false;
	pthread_cond_signal(&m->handle_free);
	pthread_mutex_unlock(&m->mu);
	h->m = NULL;
	h->st = NULL;
}

void master_work_signal(struct master *m)
{
	pthread_mutex_lock(&m->mu);
	m->work_gen++;
	pthread_cond_broadcast(&m->work);
	pthread_mutex_unlock(&m->mu);
}

void master_work_wait(struct master *m, double deadline, double step)
{
	double now = now_mono();
	double until_mono = deadline < now + step ? deadline : now + step;
	if (until_mono <= now)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	double d = until_mono - now;
	long ns = ts.tv_nsec + (long)((d - (double)(long)d) * 1e9);
	ts.tv_sec += (time_t)d + ns / 1000000000L;
	ts.tv_nsec = ns % 1000000000L;
	pthread_mutex_lock(&m->mu);
	unsigned long gen = m->work_gen;
	while (gen == m->work_gen && !m->stopping)
		if (pthread_cond_timedwait(&m->work, &m->mu, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&m->mu);
}

/* ---- tokens ---- */
/* The grants of an "Authorization: Bearer TOKEN" header: the token's SHA-256 is compared with every
 * configured hash, each comparison reading all 32 bytes, so that the time taken says nothing about
 * how close a guess was (nor which list matched). */
static unsigned grants_of(const struct master_config *c, const char *tok, size_t n)
{
	if (n == 0)
		return 0;
	char hex[65];
	unsigned char h[32];
	sha256_hex(tok, n, hex);
	if (master_parse_hash(hex, h) < 0)
		return 0;
	unsigned grants = 0;
	for (unsigned k = 0; k < 2; k++) {
		const unsigned char(*list)[32] = k == 0 ? c->worker_tokens : c->user_tokens;
		unsigned cnt = k == 0 ? c->n_worker_tokens : c->n_user_tokens;
		unsigned any = 0;
		for (unsigned i = 0; i < cnt; i++) {
			unsigned char diff = 0;
			for (int b = 0; b < 32; b++)
				diff |= (unsigned char)(list[i][b] ^ h[b]);
			any |= (unsigned)(diff == 0);
		}
		if (any)
			grants |= k == 0 ? RPC_GRANT_WORKER : RPC_GRANT_USER;
	}
	return grants;
}

static unsigned token_grants(const struct master_config *c, const char *header)
{
	if (!header || strncasecmp(header, "Bearer ", 7) != 0)
		return 0;
	const char *tok = header + 7;
	while (*tok == ' ')
		tok++;
	size_t n = strlen(tok);
	while (n && tok[n - 1] == ' ')
		n--;
	return grants_of(c, tok, n);
}

/* ---- HTTP ---- */
struct req {
	struct master *m;
	struct buf body;
	uint64_t limit;	  /* this request's body limit: body_limit, or less without a token */
	unsigned grants;  /* what its Authorization header proved */
	size_t accounted; /* bytes of body counted in m->buffered */
	bool too_large;
	bool web;  /* a page of the web UI (not /rpc) */
	bool busy; /* the master's buffer budget was spent: answered -32002 */
	bool answered;
};

/* A body without a token can only be for the reading methods: small. And all bodies held at once
 * share a budget, so that many large uploads cannot take the machine's memory. */
#define ANON_BODY_LIMIT (1u << 20)
static uint64_t buffer_budget(const struct master_config *c)
{
	return c->body_limit * 8 > (64ull << 20) ? c->body_limit * 8 : 64ull << 20;
}

static enum MHD_Result send_body(struct MHD_Connection *conn, unsigned status, char *text, const char *ctype)
{
	size_t n = text ? strlen(text) : 0;
	struct MHD_Response *r = MHD_create_response_from_buffer(n, text ? text : (char *)"",
								 text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	if (ctype)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "POST");
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, json_t *doc)
{
	char *text = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!text)
		return send_body(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, NULL);
	return send_body(conn, status, text, "application/json");
}

static enum MHD_Result too_large(struct master *m, struct MHD_Connection *conn, uint64_t limit)
{
	master_log(m, "refused", "reason=body-too-large limit=%llu", (unsigned long long)limit);
	return send_json(conn, MHD_HTTP_CONTENT_TOO_LARGE,
			 rpc_error_response(RPC_TOO_LARGE, "request body too large",
					    json_pack("{s:I}", "limit", (json_int_t)limit)));
}

/* ---- the web UI (src/web) ---- */
static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	struct web_request *wr = cls;
	if (key && wr->n_args < WEB_MAX_ARGS)
		wr->args[wr->n_args++] = (struct web_arg){key, value ? value : ""};
	return MHD_YES;
}

static bool web_user_token(void *ctx, const char *token)
{
	const struct master *m = ctx;
	return (grants_of(m->cfg, token, strlen(token)) & RPC_GRANT_USER) != 0;
}

static enum MHD_Result serve_web(struct master *m, struct MHD_Connection *conn, const char *url, const char *method,
				 struct req *rq)
{
	struct web_request wr = {
		.method = method,
		.path = url,
		.accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT),
		.origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"),
		.host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST),
		.fetch_site = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Site"),
		.user = (rq->grants & RPC_GRANT_USER) != 0,
		.user_token = web_user_token,
		.ctx = m,
	};
	struct web_response out = {0};
	_cleanup_free_ char *form = NULL;
	if (strcmp(method, MHD_HTTP_METHOD_POST) == 0) {
		const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
		if (rq->too_large || rq->body.truncated)
			return send_body(conn, MHD_HTTP_CONTENT_TOO_LARGE, xstrdup("form too large\n"), "text/plain");
		if (ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0 &&
		    web_parse_form(rq->body.data ? rq->body.data : "", rq->body.len, &wr, &form) < 0)
			return send_body(conn, MHD_HTTP_BAD_REQUEST, xstrdup("not a form\n"), "text/plain");
	} else {
		MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &wr);
	}
	if (web_is_static(url)) {
		web_handle(NULL, &wr, &out);
	} else {
		struct master_handle h;
		struct rpc_error e = {0};
		if (master_handle_get(m, &h, &e) < 0) {
			rpc_error_clear(&e);
			return send_body(conn, MHD_HTTP_SERVICE_UNAVAILABLE, xstrdup("the store is busy or unavailable\n"),
					 "text/plain");
		}
		web_handle(h.st, &wr, &out);
		master_handle_put(&h);
	}
	if (out.queued_work) {
		master_work_signal(m);
		master_log(m, "rerun", "via=web path=%s", url);
	}
	struct MHD_Response *r = MHD_create_response_from_buffer(out.len, out.body ? out.body : (char *)"",
								 out.body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	out.body = NULL;
	if (!r) {
		web_response_free(&out);
		return MHD_NO;
	}
	if (out.ctype)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, out.ctype);
	MHD_add_response_header(r, "Content-Security-Policy", web_csp);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	MHD_add_response_header(r, "Referrer-Policy", "same-origin");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, out.static_file ? "max-age=3600" : "no-store");
	if (out.location)
		MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, out.location);
	if (out.disposition)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_DISPOSITION, out.disposition);
	if (out.status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD, POST");
	enum MHD_Result ret = MHD_queue_response(conn, out.status, r);
	MHD_destroy_response(r);
	web_response_free(&out);
	return ret;
}

static bool json_ctype(const char *ct)
{
	if (!ct)
		return true; /* absent: taken as JSON */
	while (*ct == ' ')
		ct++;
	size_t n = strlen("application/json");
	return strncasecmp(ct, "application/json", n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **req_cls)
{
	(void)version;
	struct master *m = cls;
	struct req *rq = *req_cls;
	if (!rq) {
		rq = xcalloc(1, sizeof *rq);
		rq->m = m;
		rq->grants = token_grants(
			m->cfg, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION));
		rq->limit = m->cfg->body_limit;
		if (!rq->grants && rq->limit > ANON_BODY_LIMIT)
			rq->limit = ANON_BODY_LIMIT;
		rq->body = (struct buf)BUF_INIT((size_t)rq->limit);
		*req_cls = rq;
		pthread_mutex_lock(&m->mu);
		m->inflight++;
		pthread_mutex_unlock(&m->mu);
		/* the web UI: GET and HEAD at once, a POST (a form) once its small body is in */
		if (strcmp(url, "/rpc") != 0) {
			rq->web = true;
			if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
				rq->answered = true;
				return serve_web(m, conn, url, method, rq);
			}
			rq->body.max = WEB_FORM_LIMIT;
			return MHD_YES;
		}
		if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
			rq->answered = true;
			return send_body(conn, MHD_HTTP_METHOD_NOT_ALLOWED, xstrdup("POST only\n"), "text/plain");
		}
		if (!json_ctype(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE))) {
			rq->answered = true;
			return send_body(conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, xstrdup("application/json only\n"),
					 "text/plain");
		}
		const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		unsigned long long len = cl ? strtoull(cl, NULL, 10) : 0;
		if (len > rq->limit) {
			/* A client that waits for "100 Continue" (curl does for large bodies) is answered now
			 * and sends nothing. One that is already sending would see its connection reset before
			 * it reads the answer if we closed now: its body is read and dropped (never kept),
			 * unless it is absurdly large. */
			const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
			if ((expect && strcasecmp(expect, "100-continue") == 0) || len / 16 > rq->limit) {
				rq->answered = true;
				return too_large(m, conn, rq->limit);
			}
			rq->too_large = true;
		}
		return MHD_YES;
	}
	if (rq->answered)
		return MHD_YES; /* discard what still comes */
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (rq->too_large || rq->busy)
			return MHD_YES;
		pthread_mutex_lock(&m->mu);
		if (m->buffered + n > buffer_budget(m->cfg)) {
			rq->busy = true;
		} else {
			m->buffered += n;
			rq->accounted += n;
		}
		pthread_mutex_unlock(&m->mu);
		if (!rq->busy && buf_append(&rq->body, upload_data, n) < 0)
			rq->too_large = true; /* chunked bodies have no Content-Length to refuse early */
		return MHD_YES;
	}
	rq->answered = true;
	if (rq->web)
		return serve_web(m, conn, url, method, rq);
	if (rq->too_large)
		return too_large(m, conn, rq->limit);
	if (rq->busy) {
		master_log(m, "refused", "reason=buffers-full budget=%llu", (unsigned long long)buffer_budget(m->cfg));
		return send_json(conn, MHD_HTTP_OK,
				 rpc_error_response(RPC_SLOW_DOWN,
						    "slow down: the master holds too many request bodies",
						    json_pack("{s:i}", "retry_after_s", 1)));
	}

	struct rpc_stats st;
	json_t *out = rpc_process(rq->body.data ? rq->body.data : "", rq->body.len, rq->grants, m->cfg->batch_limit,
				  master_dispatch, m, &st);
	if (st.unauthorized || st.invalid) {
		char peer[INET6_ADDRSTRLEN + 8] = "-";
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		if (ci && ci->client_addr)
			getnameinfo(ci->client_addr,
				    ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
									   : sizeof(struct sockaddr_in),
				    peer, sizeof peer, NULL, 0, NI_NUMERICHOST);
		master_log(m, "refused", "peer=%s unauthorized=%zu invalid=%zu requests=%zu bytes=%zu", peer,
			   st.unauthorized, st.invalid, st.requests, rq->body.len);
	}
	if (!out)
		return send_body(conn, MHD_HTTP_NO_CONTENT, NULL, NULL);
	return send_json(conn, MHD_HTTP_OK, out);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	struct req *rq = *req_cls;
	if (rq) {
		struct master *m = rq->m;
		pthread_mutex_lock(&m->mu);
		m->buffered -= rq->accounted;
		if (--m->inflight == 0)
			pthread_cond_broadcast(&m->idle);
		pthread_mutex_unlock(&m->mu);
		buf_free(&rq->body);
		free(rq);
		*req_cls = NULL;
	}
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct master *m = cls;
	char msg[512];
	vsnprintf(msg, sizeof msg, fmt, ap);
	size_t n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	master_log(m, "http-error", "error=\"%s\"", msg);
}

/* A store URL for the log without its password: postgresql://user:SECRET@host → user:***@host, and a
 * libpq "password=SECRET" → "password=***". Caller frees. */
static char *redact_url(const char *url)
{
	const char *scheme = strstr(url, "://");
	if (scheme) {
		const char *auth = scheme + 3, *at = strchr(auth, '@'), *slash = strchr(auth, '/');
		if (at && (!slash || at < slash)) {
			const char *colon = memchr(auth, ':', (size_t)(at - auth));
			if (colon)
				return xasprintf("%.*s***%s", (int)(colon + 1 - url), url, at);
		}
	}
	const char *pw = strstr(url, "password=");
	if (pw) {
		const char *end = strchr(pw, ' ');
		return xasprintf("%.*spassword=***%s", (int)(pw - url), url, end ? end : "");
	}
	return xstrdup(url);
}

int master_serve(const struct master_config *c, const char *state_dir, struct pyti_err *err)
{
	struct master m = {.cfg = c, .log = c->log ? c->log : stderr};
	pthread_mutex_init(&m.mu, NULL);
	pthread_cond_init(&m.handle_free, NULL);
	pthread_cond_init(&m.work, NULL);
	m.store_url = c->store_url ? xstrdup(c->store_url) : store_default_url(state_dir);
	if (!m.store_url)
		m.store_url = xasprintf("%s/pyti.db", state_dir);
	m.lim = (struct store_limits){
		.lease_s = c->lease_s, .heartbeat_s = c->heartbeat_s, .max_attempts = c->max_attempts};
	char *shown = redact_url(m.store_url); /* for the log */

	int rc = -1;
	struct MHD_Daemon *d = NULL;
	/* The first handle now: a bad path or schema is an error at start, not at the first request.
	 * A PostgreSQL that is down is not: the master starts and answers -32006 until it is up. */
	struct store *first = NULL;
	struct pyti_err oerr = {0};
	m.n_handles = c->store_handles ? c->store_handles : 4;
	if (m.n_handles > MASTER_MAX_HANDLES)
		m.n_handles = MASTER_MAX_HANDLES;
	int orc = store_open(m.store_url, &first, &oerr);
	if (orc < 0) {
		bool pg = strstr(m.store_url, "://") || strchr(m.store_url, '=');
		if (!pg || orc != STORE_E_UNAVAILABLE) {
			if (err)
				*err = oerr;
			goto out;
		}
		master_log(&m, "store-unavailable", "store=\"%s\" error=\"%s\"", shown, pyti_err_str(&oerr));
	} else {
		/* SQLite takes one writer at a time: more handles only make them wait in SQLite's busy
		 * handler (sleeps, measured as a worse p99 in bench/ingest) instead of in order here */
		if (!c->store_handles && store_engine_of(first) == STORE_SQLITE)
			m.n_handles = 1;
		store_limits_set(first, &m.lim);
		store_limits_get(first, &m.lim);
		m.handles[0] = first;
	}
	if (!m.lim.lease_s) {
		/* the store's defaults, as hello will tell them, even before the store is reachable */
		m.lim.lease_s = c->lease_s ? c->lease_s : 60;
		m.lim.heartbeat_s = c->heartbeat_s ? c->heartbeat_s : m.lim.lease_s / 3;
		m.lim.max_attempts = c->max_attempts ? c->max_attempts : 3;
	}

	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	char port[16];
	snprintf(port, sizeof port, "%u", c->listen_port);
	int gai = getaddrinfo(c->listen_addr, port, &hints, &ai);
	if (gai != 0) {
		pyti_err_usage(err, "listen address '%s': %s", c->listen_addr, gai_strerror(gai));
		goto out;
	}
	/* Signals go to the main thread's sigwait only: block them before MHD's threads inherit the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
			 MHD_USE_POLL | MHD_USE_ITC;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	d = MHD_start_daemon(flags, (uint16_t)c->listen_port, NULL, NULL, on_request, &m, MHD_OPTION_EXTERNAL_LOGGER,
			     mhd_log, &m, /* first, or MHD logs to stderr itself */
			     MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->connections,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(RPC_MAX_WAIT_S * 2),
			     MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1u << 20), MHD_OPTION_LISTEN_BACKLOG_SIZE, 256u,
			     MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!d) {
		pyti_err_set(err, errno, "cannot listen on %s:%u", c->listen_addr, c->listen_port);
		goto out;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	unsigned bound = info ? info->port : c->listen_port;
	master_log(&m, "start", "listen=%s:%u store=\"%s\" lease_s=%d heartbeat_s=%d max_attempts=%d handles=%u",
		   c->listen_addr, bound, m.handles[0] ? store_describe(m.handles[0]) : shown, m.lim.lease_s,
		   m.lim.heartbeat_s, m.lim.max_attempts, m.n_handles);
	if (c->ready) {
		fprintf(c->ready, "listening %s:%u\n", c->listen_addr, bound);
		fflush(c->ready);
	}
	int sig = 0;
	sigwait(&sigs, &sig);
	master_log(&m, "stop", "signal=%d", sig);
	/* No new connections; wake the long polls so that they answer (empty), and let every request in
	 * flight send its answer (MHD_stop_daemon shuts the sockets down, answered or not): a worker's
	 * report either got its answer or will be sent again, never half-taken. */
	MHD_socket lsock = MHD_quiesce_daemon(d);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	pthread_mutex_lock(&m.mu);
	m.stopping = true;
	m.work_gen++;
	pthread_cond_broadcast(&m.work);
	while (m.inflight > 0)
		if (pthread_cond_timedwait(&m.idle, &m.mu, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&m.mu);
	MHD_stop_daemon(d);
	if (lsock != MHD_INVALID_SOCKET)
		close(lsock);
	rc = 0;
out:
	for (unsigned i = 0; i < m.n_handles; i++)
		store_close(m.handles[i]);
	free(m.store_url);
	free(shown);
	pthread_cond_destroy(&m.work);
	pthread_cond_destroy(&m.idle);
	pthread_cond_destroy(&m.handle_free);
	pthread_mutex_destroy(&m.mu);
	return rc;
}

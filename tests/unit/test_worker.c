/* Unit tests of the worker's client side: error classification, backoff, base64, token files,
 * the spool, and wrpc_call/spool_flush against a tiny in-test HTTP responder (a fake, beside
 * tests/integration/test_worker.py, which drives the real master). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "worker.h"

/* ---- the responder: answers each connection with the next canned answer, then closes ---- */

struct canned {
	int status;
	const char *body; /* "%ID%" is replaced by the request's id */
};

struct responder {
	int fd, port;
	pthread_t th;
	const struct canned *answers;
	size_t n, next;
	char requests[16][4096]; /* bodies */
	char auth[16][256];
	size_t n_req;
};

static void *responder_main(void *arg)
{
	struct responder *r = arg;
	for (;;) {
		int c = accept(r->fd, NULL, NULL);
		if (c < 0)
			return NULL;
		char req[65536];
		size_t len = 0;
		ssize_t k;
		char *hdr_end = NULL;
		long clen = 0;
		while (len < sizeof req - 1 && (k = read(c, req + len, sizeof req - 1 - len)) > 0) {
			len += (size_t)k;
			req[len] = '\0';
			hdr_end = strstr(req, "\r\n\r\n");
			if (hdr_end) {
				char *cl = strcasestr(req, "Content-Length:");
				clen = cl ? strtol(cl + 15, NULL, 10) : 0;
				if ((long)(len - (size_t)(hdr_end + 4 - req)) >= clen)
					break;
			}
		}
		if (!hdr_end) {
			close(c);
			continue;
		}
		size_t i = r->n_req < 16 ? r->n_req : 15;
		snprintf(r->requests[i], sizeof r->requests[i], "%s", hdr_end + 4);
		char *a = strcasestr(req, "Authorization: ");
		r->auth[i][0] = '\0';
		if (a && a < hdr_end)
			snprintf(r->auth[i], sizeof r->auth[i], "%.*s", (int)strcspn(a + 15, "\r\n"), a + 15);
		r->n_req++;
		const struct canned *ans = r->next < r->n ? &r->answers[r->next++] : &(struct canned){500, ""};
		/* the request's id, so that the client's id check passes */
		json_t *j = json_loads(hdr_end + 4, 0, NULL);
		long long id = j ? json_integer_value(json_object_get(j, "id")) : 0;
		json_decref(j);
		char body[8192];
		const char *p = strstr(ans->body, "%ID%");
		if (p)
			snprintf(body, sizeof body, "%.*s%lld%s", (int)(p - ans->body), ans->body, id, p + 4);
		else
			snprintf(body, sizeof body, "%s", ans->body);
		char head[512];
		int hn = snprintf(head, sizeof head,
				  "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
				  "Connection: close\r\n\r\n",
				  ans->status, strlen(body));
		if (write(c, head, (size_t)hn) < 0 || write(c, body, strlen(body)) < 0)
			(void)0;
		close(c);
	}
}

static void responder_start(struct responder *r, const struct canned *answers, size_t n)
{
	memset(r, 0, sizeof *r);
	r->answers = answers;
	r->n = n;
	r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(r->fd >= 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(r->fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(r->fd, 16), 0);
	socklen_t sl = sizeof sa;
	getsockname(r->fd, (struct sockaddr *)&sa, &sl);
	r->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&r->th, NULL, responder_main, r), 0);
}

static void responder_stop(struct responder *r)
{
	shutdown(r->fd, SHUT_RDWR);
	close(r->fd);
	pthread_join(r->th, NULL);
}

static struct wrpc_client *client_for(struct responder *r, const char *token)
{
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", r->port);
	struct pyti_err err = {0};
	struct wrpc_client *c = wrpc_new(url, token, 5, &err);
	assert_non_null(c);
	return c;
}

/* ---- classification ---- */

static void test_classify(void **state)
{
	(void)state;
	assert_int_equal(wrpc_classify(CURLE_COULDNT_CONNECT, 0, 0, false), WRPC_RETRY);
	assert_int_equal(wrpc_classify(CURLE_OPERATION_TIMEDOUT, 0, 0, false), WRPC_RETRY);
	assert_int_equal(wrpc_classify(CURLE_GOT_NOTHING, 0, 0, false), WRPC_RETRY);
	assert_int_equal(wrpc_classify(CURLE_URL_MALFORMAT, 0, 0, false), WRPC_FATAL);
	assert_int_equal(wrpc_classify(0, 500, 0, false), WRPC_RETRY);
	assert_int_equal(wrpc_classify(0, 503, 0, false), WRPC_RETRY);
	assert_int_equal(wrpc_classify(0, 429, 0, false), WRPC_RETRY);
	assert_int_equal(wrpc_classify(0, 401, 0, false), WRPC_UNAUTHORIZED);
	assert_int_equal(wrpc_classify(0, 413, 0, false), WRPC_TOO_LARGE);
	assert_int_equal(wrpc_classify(0, 404, 0, false), WRPC_FATAL);
	assert_int_equal(wrpc_classify(0, 200, 0, false), WRPC_OK);
	assert_int_equal(wrpc_classify(0, 200, WRPC_E_UNAUTHORIZED, true), WRPC_UNAUTHORIZED);
	assert_int_equal(wrpc_classify(0, 200, WRPC_E_STALE_LEASE, true), WRPC_STALE);
	assert_int_equal(wrpc_classify(0, 200, WRPC_E_SLOW_DOWN, true), WRPC_RETRY);
	assert_int_equal(wrpc_classify(0, 200, WRPC_E_STORE_DOWN, true), WRPC_RETRY);
	assert_int_equal(wrpc_classify(0, 200, WRPC_E_NOT_FOUND, true), WRPC_NOT_FOUND);
	assert_int_equal(wrpc_classify(0, 200, WRPC_E_MISSING, true), WRPC_MISSING);
	assert_int_equal(wrpc_classify(0, 200, WRPC_E_TOO_LARGE, true), WRPC_TOO_LARGE);
	assert_int_equal(wrpc_classify(0, 200, -32602, true), WRPC_FATAL);
	assert_int_equal(wrpc_classify(0, 200, -32601, true), WRPC_FATAL);
	assert_int_equal(wrpc_classify(0, 200, -32603, true), WRPC_RETRY);
	assert_int_equal(wrpc_classify(0, 503, -32099, true), WRPC_RETRY);
}

/* ---- backoff ---- */

static void test_backoff(void **state)
{
	(void)state;
	struct backoff b;
	backoff_init(&b, 1, 8, 42);
	double ceil_s = 1;
	for (int i = 0; i < 20; i++) {
		double d = backoff_next(&b, 0);
		assert_true(d >= ceil_s / 2 - 1e-9 && d <= ceil_s + 1e-9);
		ceil_s = ceil_s * 2 > 8 ? 8 : ceil_s * 2;
	}
	assert_true(b.cur_s == 8);
	/* the server's retry_after wins over the jitter and the cap, within 300 s */
	assert_true(backoff_next(&b, 20) == 20);
	assert_true(backoff_next(&b, 1000) == 300);
	backoff_reset(&b);
	double d = backoff_next(&b, 0);
	assert_true(d >= 0.5 && d <= 1);
	/* jitter: two seeds do not walk in step */
	struct backoff x, y;
	backoff_init(&x, 1, 60, 1);
	backoff_init(&y, 1, 60, 2);
	int same = 0;
	for (int i = 0; i < 8; i++)
		same += backoff_next(&x, 0) == backoff_next(&y, 0);
	assert_true(same < 8);
}

static void test_base64(void **state)
{
	(void)state;
	const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	for (size_t i = 0; i < ARRAY_SIZE(in); i++) {
		char *s = wrpc_base64(in[i], strlen(in[i]));
		assert_string_equal(s, out[i]);
		free(s);
	}
	unsigned char bin[3] = {0xff, 0x00, 0xfe};
	char *s = wrpc_base64(bin, 3);
	assert_string_equal(s, "/wD+");
	free(s);
}

static char tmpdir[256];

static int setup_tmp(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/pyti-test-worker.XXXXXX");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown_tmp(void **state)
{
	(void)state;
	rm_rf(tmpdir, NULL);
	return 0;
}

static void test_token_file(void **state)
{
	(void)state;
	char p[512];
	snprintf(p, sizeof p, "%s/tok", tmpdir);
	struct pyti_err err = {0};
	char *t = NULL;
	assert_int_equal(write_file_atomic(p, "  s3cret-token \nsecond line\n", 29, 0600, &err), 0);
	assert_int_equal(wrpc_read_token(p, &t, &err), 0);
	assert_string_equal(t, "s3cret-token");
	free(t);
	assert_int_equal(write_file_atomic(p, "\n\n", 2, 0600, &err), 0);
	assert_int_equal(wrpc_read_token(p, &t, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_non_null(strstr(err.msg, "empty"));
	assert_int_equal(write_file_atomic(p,
					   "a\x01"
					   "b\n",
					   4, 0600, &err),
			 0);
	assert_int_equal(wrpc_read_token(p, &t, &err), -1);
	snprintf(p, sizeof p, "%s/nope", tmpdir);
	assert_int_equal(wrpc_read_token(p, &t, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
}

/* ---- spool ---- */

static json_t *entry(const char *method, const char *job, int n)
{
	return json_pack("{s:s, s:s, s:{s:s, s:i, s:s, s:i}, s:[]}", "method", method, "job_id", job, "params",
			 "job_id", job, "attempt", 1, "lease", "L", "n", n, "uploads");
}

static void test_spool_basic(void **state)
{
	(void)state;
	char d[512];
	snprintf(d, sizeof d, "%s/spool", tmpdir);
	struct pyti_err err = {0};
	struct spool *s = spool_open(d, &err);
	assert_non_null(s);
	/* one spool, one worker */
	assert_null(spool_open(d, &err));
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	for (int i = 0; i < 12; i++) {
		json_t *e = entry("report", i % 3 == 0 ? "jA" : "jB", i);
		assert_true(spool_push(s, e, &err) > 0);
		json_decref(e);
	}
	assert_int_equal(spool_count(s), 12);
	spool_close(s);
	/* reopened (a restart): the same entries, in order, and new ones after them */
	s = spool_open(d, &err);
	assert_non_null(s);
	long long *seqs;
	size_t n;
	assert_int_equal(spool_list(s, &seqs, &n, &err), 0);
	assert_int_equal(n, 12);
	for (size_t i = 0; i < n; i++) {
		json_t *e = spool_read(s, seqs[i], &err);
		assert_non_null(e);
		assert_int_equal(pj_int(json_object_get(e, "params"), "n", -1), (long long)i);
		json_decref(e);
	}
	json_t *e = entry("finish", "jC", 99);
	long long seq = spool_push(s, e, &err);
	json_decref(e);
	assert_true(seq > seqs[n - 1]);
	free(seqs);
	spool_drop_job(s, "jA");
	assert_int_equal(spool_count(s), 9);
	spool_remove(s, seq);
	assert_int_equal(spool_count(s), 8);
	/* a half-written leftover is swept, never taken for an entry */
	char junk[600];
	snprintf(junk, sizeof junk, "%s/000000000077.json.tmp.1.2", d);
	assert_int_equal(write_file_atomic(junk, "{", 1, 0600, &err), 0);
	spool_close(s);
	s = spool_open(d, &err);
	assert_false(path_exists(junk));
	assert_int_equal(spool_count(s), 8);
	spool_close(s);
}

/* ---- against the responder ---- */

static void test_call_kinds(void **state)
{
	(void)state;
	const struct canned answers[] = {
		{200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"worker_id\":\"w1\"}}"},
		{200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"error\":{\"code\":-32001,\"message\":\"stale\","
		      "\"data\":{\"job_id\":\"j1\",\"attempt\":2}}}"},
		{200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"error\":{\"code\":-32002,\"message\":\"slow down\","
		      "\"data\":{\"retry_after_s\":1.5}}}"},
		{503, ""},
		{200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"error\":{\"code\":-32000,\"message\":\"unauthorized\"}}"},
		{200, "not json"},
		{200, "{\"jsonrpc\":\"2.0\",\"id\":999999,\"result\":{}}"},
	};
	struct responder r;
	responder_start(&r, answers, ARRAY_SIZE(answers));
	struct wrpc_client *c = client_for(&r, "tok123");
	struct pyti_err err = {0};
	json_t *res = NULL, *p = json_pack("{s:s}", "name", "x");
	assert_int_equal(wrpc_call(c, "hello", p, &res, &err), 0);
	assert_string_equal(pj_str(res, "worker_id", ""), "w1");
	json_decref(res);
	assert_string_equal(r.auth[0], "Bearer tok123");
	json_t *sent = json_loads(r.requests[0], 0, NULL);
	assert_string_equal(pj_str(sent, "jsonrpc", ""), "2.0");
	assert_string_equal(pj_str(sent, "method", ""), "hello");
	assert_string_equal(pj_str(json_object_get(sent, "params"), "name", ""), "x");
	json_decref(sent);

	assert_int_equal(wrpc_call(c, "report", p, &res, &err), -1);
	assert_int_equal(wrpc_last(c)->kind, WRPC_STALE);
	assert_int_equal(wrpc_last(c)->rpc_code, -32001);
	assert_int_equal(pj_int(wrpc_last(c)->data, "attempt", 0), 2);
	assert_int_equal(wrpc_call(c, "report", p, &res, &err), -1);
	assert_int_equal(wrpc_last(c)->kind, WRPC_RETRY);
	assert_true(wrpc_last(c)->retry_after_s == 1.5);
	assert_int_equal(wrpc_call(c, "report", p, &res, &err), -1);
	assert_int_equal(wrpc_last(c)->kind, WRPC_RETRY);
	assert_int_equal(wrpc_last(c)->http, 503);
	assert_int_equal(wrpc_call(c, "report", p, &res, &err), -1);
	assert_int_equal(wrpc_last(c)->kind, WRPC_UNAUTHORIZED);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_int_equal(wrpc_call(c, "report", p, &res, &err), -1);
	assert_int_equal(wrpc_last(c)->kind, WRPC_RETRY);	     /* not an answer: a proxy's page, a restart */
	assert_int_equal(wrpc_call(c, "report", p, &res, &err), -1); /* an answer to another request */
	assert_int_equal(wrpc_last(c)->kind, WRPC_RETRY);
	wrpc_free(c);
	responder_stop(&r);

	/* nobody listens any more: connection refused is worth a retry */
	c = client_for(&r, NULL);
	assert_int_equal(wrpc_call(c, "hello", p, &res, &err), -1);
	assert_int_equal(wrpc_last(c)->kind, WRPC_RETRY);
	wrpc_free(c);
	json_decref(p);

	assert_null(wrpc_new("ftp://x", NULL, 1, &err));
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
}

struct done_log {
	int ok, stale, other;
};

static void on_done(void *arg, const json_t *e, enum wrpc_kind k, const json_t *res)
{
	(void)e, (void)res;
	struct done_log *d = arg;
	if (k == WRPC_OK)
		d->ok++;
	else if (k == WRPC_STALE)
		d->stale++;
	else
		d->other++;
}

static void test_spool_flush(void **state)
{
	(void)state;
	const struct canned answers[] = {
		/* jA's report taken, jB's report stale (jB's other entries dropped with it), then the
		 * master goes away on jA's finish: the flush stops, the finish stays */
		{200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"stored\":true}}"},
		{200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"error\":{\"code\":-32001,\"message\":\"stale\"}}"},
		{200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"stored\":true}}"}, /* upload */
		{503, ""},
		/* the replay: upload already done (not sent again), finish taken */
		{200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"state\":\"done\"}}"},
	};
	char d[512];
	snprintf(d, sizeof d, "%s/spool2", tmpdir);
	struct pyti_err err = {0};
	struct spool *s = spool_open(d, &err);
	assert_non_null(s);
	char art[600];
	snprintf(art, sizeof art, "%s/results.json", tmpdir);
	assert_int_equal(write_file_atomic(art, "{}\n", 3, 0644, &err), 0);
	char sha[65];
	sha256_hex("{}\n", 3, sha);
	json_t *e1 = entry("report", "jA", 1), *e2 = entry("report", "jB", 2), *e3 = entry("report", "jB", 3),
	       *e4 = entry("finish", "jA", 4);
	json_object_set_new(json_object_get(e4, "params"), "artefacts",
			    json_pack("[{s:s, s:s, s:i}]", "name", "results.json", "sha256", sha, "size", 3));
	json_object_set_new(
		e4, "uploads",
		json_pack("[{s:s, s:s, s:s, s:i}]", "root", tmpdir, "rel", "results.json", "sha256", sha, "size", 3));
	json_t *all[] = {e1, e2, e3, e4};
	for (size_t i = 0; i < 4; i++) {
		assert_true(spool_push(s, all[i], &err) > 0);
		json_decref(all[i]);
	}
	struct responder r;
	responder_start(&r, answers, ARRAY_SIZE(answers));
	struct wrpc_client *c = client_for(&r, "w");
	struct done_log dl = {0};
	assert_int_equal(spool_flush(s, c, on_done, &dl, &err), -1);
	assert_int_equal(wrpc_last(c)->kind, WRPC_RETRY);
	assert_int_equal(dl.ok, 1);
	assert_int_equal(dl.stale, 1);
	assert_int_equal(spool_count(s), 1);
	assert_int_equal(spool_flush(s, c, on_done, &dl, &err), 0);
	assert_int_equal(dl.ok, 2);
	assert_int_equal(spool_count(s), 0);
	/* what was sent, in order: report jA, report jB (stale; jB's second never sent), upload,
	 * finish (503), finish */
	assert_int_equal(r.n_req, 5);
	const char *methods[] = {"report", "report", "upload", "finish", "finish"};
	for (size_t i = 0; i < 5; i++) {
		json_t *j = json_loads(r.requests[i], 0, NULL);
		assert_non_null(j);
		assert_string_equal(pj_str(j, "method", ""), methods[i]);
		if (i == 2) {
			json_t *p = json_object_get(j, "params");
			assert_string_equal(pj_str(p, "sha256", ""), sha);
			assert_string_equal(pj_str(p, "data", ""), "e30K");
		}
		json_decref(j);
	}
	wrpc_free(c);
	responder_stop(&r);
	spool_close(s);
}

static void test_spool_too_large(void **state)
{
	(void)state;
	const struct canned answers[] = {
		{200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"error\":{\"code\":-32005,\"message\":\"too large\"}}"},
		{200, "{\"jsonrpc\":\"2.0\",\"id\":%ID%,\"result\":{\"state\":\"done\"}}"},
	};
	char d[512];
	snprintf(d, sizeof d, "%s/spool3", tmpdir);
	struct pyti_err err = {0};
	struct spool *s = spool_open(d, &err);
	assert_non_null(s);
	json_t *e = entry("finish", "jA", 1);
	json_object_set_new(json_object_get(e, "params"), "results",
			    json_pack("{s:[{s:s, s:s}]}", "tasks", "task", "test", "output", "lots of it"));
	assert_true(spool_push(s, e, &err) > 0);
	json_decref(e);
	struct responder r;
	responder_start(&r, answers, ARRAY_SIZE(answers));
	struct wrpc_client *c = client_for(&r, "w");
	assert_int_equal(spool_flush(s, c, NULL, NULL, &err), 0);
	assert_int_equal(r.n_req, 2);
	assert_non_null(strstr(r.requests[0], "lots of it"));
	assert_null(strstr(r.requests[1], "lots of it"));
	assert_non_null(strstr(r.requests[1], "\"task\":\"test\""));
	wrpc_free(c);
	responder_stop(&r);
	spool_close(s);
}

static void test_config(void **state)
{
	(void)state;
	char p[512];
	snprintf(p, sizeof p, "%s/worker.ini", tmpdir);
	struct pyti_err err = {0};
	const char *good = "; a worker\n[worker]\nmaster = http://m:8080\ntoken_file = /etc/pyti/token\nslots = 3\n"
			   "backend = vm\nheartbeat_s = 2.5\n";
	assert_int_equal(write_file_atomic(p, good, strlen(good), 0644, &err), 0);
	struct worker_config c = {.slots = 7}; /* the command line's --slots wins */
	assert_int_equal(worker_config_load(p, &c, &err), 0);
	assert_string_equal(c.master, "http://m:8080");
	assert_string_equal(c.token_file, "/etc/pyti/token");
	assert_string_equal(c.backend, "vm");
	assert_int_equal(c.slots, 7);
	assert_true(c.heartbeat_s == 2.5);
	worker_config_free(&c);
	const char *bad[] = {"[worker]\nmaster = x\nslots = many\n", "[worker]\n\nbogus = 1\n", "[other]\nmaster = x\n",
			     "[worker]\nbackend = docker\n"};
	const char *want[] = {":3: slots", ":3: unknown key 'bogus'", ":2: unknown section", ":2: backend"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(write_file_atomic(p, bad[i], strlen(bad[i]), 0644, &err), 0);
		c = (struct worker_config){0};
		assert_int_equal(worker_config_load(p, &c, &err), -1);
		assert_int_equal(err.status, PYTI_EXIT_USAGE);
		if (!strstr(err.msg, want[i]))
			fail_msg("'%s' lacks '%s'", err.msg, want[i]);
		worker_config_free(&c);
	}
}

static void test_capabilities(void **state)
{
	(void)state;
	json_t *c = worker_capabilities(tmpdir, "ns", 2);
	assert_non_null(c);
	assert_true(json_is_array(json_object_get(c, "images")));
	assert_string_equal(json_string_value(json_array_get(json_object_get(c, "backends"), 0)), "ns");
	assert_int_equal(pj_int(c, "slots", 0), 2);
	assert_true(pj_int(c, "disk_free", 0) > 0);
	assert_true(pj_int(c, "mem_free", 0) > 0);
	json_decref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),    cmocka_unit_test(test_backoff),
		cmocka_unit_test(test_base64),	    cmocka_unit_test(test_token_file),
		cmocka_unit_test(test_spool_basic), cmocka_unit_test(test_call_kinds),
		cmocka_unit_test(test_spool_flush), cmocka_unit_test(test_spool_too_large),
		cmocka_unit_test(test_config),	    cmocka_unit_test(test_capabilities),
	};
	return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}

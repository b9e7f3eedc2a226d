/* The JSON-RPC 2.0 client: one request, one response, over one reused libcurl handle.
 *
 * Every failure is classified (enum wrpc_kind) so that callers decide by kind, never by message:
 * a transport failure or a server that is busy or restarting is worth a retry (with backoff); a
 * wrong token stops the worker; a stale lease abandons one job. */
#include <errno.h>
#include <string.h>

#include <curl/curl.h>

#include "worker.h"

#define RESPONSE_MAX (256u << 20) /* a run's results can be large; a worker's answers are small */

struct wrpc_client {
	CURL *curl;
	char *url;
	struct curl_slist *headers;
	double timeout_s;
	long long next_id;
	volatile int *abort_flag;
	struct wrpc_status last;
	json_t *last_data;
};

static void curl_init_once(void)
{
	static bool done;
	if (!done) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		done = true;
	}
}

struct wrpc_client *wrpc_new(const char *url, const char *token, double timeout_s, struct pyti_err *err)
{
	if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
		pyti_err_usage(err, "master URL '%s': expected http://HOST:PORT or https://…", url ? url : "");
		return NULL;
	}
	if (token && strpbrk(token, "\r\n")) {
		pyti_err_usage(err, "the token has a line break in it");
		return NULL;
	}
	curl_init_once();
	struct wrpc_client *c = xcalloc(1, sizeof *c);
	c->curl = curl_easy_init();
	if (!c->curl) {
		free(c);
		pyti_err_set(err, ENOMEM, "curl_easy_init");
		return NULL;
	}
	size_t n = strlen(url);
	while (n && url[n - 1] == '/')
		n--;
	/* a bare base URL gets the API's path; one that names a path is taken as it is */
	const char *p = strstr(url, "://") + 3;
	const char *slash = memchr(p, '/', (size_t)(url + n - p));
	c->url = slash ? xasprintf("%.*s", (int)n, url) : xasprintf("%.*s/rpc", (int)n, url);
	c->headers = curl_slist_append(NULL, "Content-Type: application/json");
	c->headers = curl_slist_append(c->headers, "Expect:"); /* no 100-continue round trip */
	if (token) {
		_cleanup_free_ char *h = xasprintf("Authorization: Bearer %s", token);
		c->headers = curl_slist_append(c->headers, h);
	}
	c->timeout_s = timeout_s > 0 ? timeout_s : 60;
	c->next_id = 1;
	return c;
}

void wrpc_free(struct wrpc_client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	curl_slist_free_all(c->headers);
	if (c->last_data)
		json_decref(c->last_data);
	free(c->url);
	free(c);
}

void wrpc_set_abort_flag(struct wrpc_client *c, volatile int *flag)
{
	c->abort_flag = flag;
}

const struct wrpc_status *wrpc_last(const struct wrpc_client *c)
{
	return &c->last;
}

const char *wrpc_kind_name(enum wrpc_kind k)
{
	static const char *const names[] = {
		"ok", "retry", "unauthorized", "stale lease", "not found", "missing artefacts", "too large", "fatal"};
	return (unsigned)k < ARRAY_SIZE(names) ? names[k] : "?";
}

enum wrpc_kind wrpc_classify(int curl_code, long http, int rpc_code, bool have_error)
{
	if (curl_code) {
		switch (curl_code) {
		case CURLE_UNSUPPORTED_PROTOCOL:
		case CURLE_URL_MALFORMAT:
		case CURLE_NOT_BUILT_IN:
		case CURLE_BAD_FUNCTION_ARGUMENT:
			return WRPC_FATAL;
		case CURLE_FILESIZE_EXCEEDED:
			return WRPC_FATAL; /* an answer over RESPONSE_MAX: asking again gets the same */
		default:
			/* refused, reset, timed out, no answer, name not resolved (yet), aborted by us */
			return WRPC_RETRY;
		}
	}
	if (have_error) {
		switch (rpc_code) {
		case WRPC_E_UNAUTHORIZED:
			return WRPC_UNAUTHORIZED;
		case WRPC_E_STALE_LEASE:
			return WRPC_STALE;
		case WRPC_E_SLOW_DOWN:
		case WRPC_E_STORE_DOWN:
			return WRPC_RETRY;
		case WRPC_E_NOT_FOUND:
			return WRPC_NOT_FOUND;
		case WRPC_E_MISSING:
			return WRPC_MISSING;
		case WRPC_E_TOO_LARGE:
			return WRPC_TOO_LARGE;
		case -32603: /* internal error: the server's problem, perhaps passing */
			return WRPC_RETRY;
		default:
			return http >= 500 ? WRPC_RETRY : WRPC_FATAL;
		}
	}
	if (http >= 500 || http == 429 || http == 408)
		return WRPC_RETRY;
	if (http == 401 || http == 403)
		return WRPC_UNAUTHORIZED;
	if (http == 413)
		return WRPC_TOO_LARGE;
	if (http == 404)
		return WRPC_FATAL; /* no /rpc there: the wrong URL */
	if (http >= 400 || http < 200)
		return WRPC_FATAL;
	return WRPC_OK;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	if (buf_append(b, p, size * n) < 0)
		return 0; /* over the cap: curl ends the transfer with CURLE_WRITE_ERROR */
	return size * n;
}

static int on_xfer(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt, (void)dn, (void)ut, (void)un;
	struct wrpc_client *c = arg;
	return c->abort_flag && *c->abort_flag ? 1 : 0;
}

static int fail(struct wrpc_client *c, enum wrpc_kind k, struct pyti_err *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(struct wrpc_client *c, enum wrpc_kind k, struct pyti_err *err, const char *fmt, ...)
{
	c->last.kind = k;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	pyti_err_set(err, 0, "%s", msg);
	if (k == WRPC_UNAUTHORIZED)
		err->status = PYTI_EXIT_USAGE; /* the user's token: a configuration error */
	return -1;
}

int wrpc_call_wait(struct wrpc_client *c, const char *method, json_t *params, double extra_s, json_t **result,
		   struct pyti_err *err)
{
	*result = NULL;
	if (c->last_data) {
		json_decref(c->last_data);
		c->last_data = NULL;
	}
	c->last = (struct wrpc_status){0};
	long long id = c->next_id++;
	_cleanup_json_ json_t *req = json_pack("{s:s, s:s, s:I}", "jsonrpc", "2.0", "method", method, "id",
					       (json_int_t)id);
	if (params)
		json_object_set(req, "params", params);
	_cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);
	if (!body)
		return fail(c, WRPC_FATAL, err, "%s: cannot serialise the request", method);

	_cleanup_buf_ struct buf resp = BUF_INIT(RESPONSE_MAX);
	char curl_msg[CURL_ERROR_SIZE] = "";
	CURL *h = c->curl;
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, c->url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_msg);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)((c->timeout_s + extra_s) * 1000));
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)RESPONSE_MAX);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xfer);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	CURLcode cc = curl_easy_perform(h);
	long http = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
	c->last.http = http;
	if (cc == CURLE_WRITE_ERROR && resp.truncated)
		cc = CURLE_FILESIZE_EXCEEDED;
	if (cc != CURLE_OK)
		return fail(c, wrpc_classify(cc, 0, 0, false), err, "%s: %s: %s", method, c->url,
			    cc == CURLE_ABORTED_BY_CALLBACK ? "interrupted"
							    : (curl_msg[0] ? curl_msg : curl_easy_strerror(cc)));

	json_error_t je;
	_cleanup_json_ json_t *ans = resp.len ? json_loadb(resp.data, resp.len, 0, &je) : NULL;
	json_t *eo = json_is_object(ans) ? json_object_get(ans, "error") : NULL;
	if (json_is_object(eo)) {
		int code = (int)pj_int(eo, "code", 0);
		c->last.rpc_code = code;
		json_t *data = json_object_get(eo, "data");
		if (data) {
			c->last_data = json_incref(data);
			c->last.data = data;
			c->last.retry_after_s = pj_num(data, "retry_after_s", 0);
		}
		/* the server's message is the server's text: bounded and made printable by cli_fail */
		const char *m = pj_str(eo, "message", "");
		return fail(c, wrpc_classify(0, http, code, true), err, "%s: the master answered error %d: %.300s",
			    method, code, m);
	}
	enum wrpc_kind k = wrpc_classify(0, http, 0, false);
	if (k != WRPC_OK)
		return fail(c, k, err, "%s: %s answered HTTP %ld", method, c->url, http);
	if (http == 204)
		return 0; /* a notification's answer: nothing */
	json_t *res = json_is_object(ans) ? json_object_get(ans, "result") : NULL;
	if (!res || !json_is_integer(json_object_get(ans, "id")) ||
	    json_integer_value(json_object_get(ans, "id")) != id)
		return fail(c, WRPC_RETRY, err, "%s: %s: not a JSON-RPC answer to this request (HTTP %ld, %zu bytes)",
			    method, c->url, http, resp.len);
	*result = json_incref(res);
	return 0;
}

int wrpc_call(struct wrpc_client *c, const char *method, json_t *params, json_t **result, struct pyti_err *err)
{
	return wrpc_call_wait(c, method, params, 0, result, err);
}

int wrpc_read_token(const char *path, char **out, struct pyti_err *err)
{
	*out = NULL;
	_cleanup_buf_ struct buf b = BUF_INIT(64 << 10);
	if (read_file(path, &b, err) < 0) {
		err->status = PYTI_EXIT_USAGE;
		return pyti_err_prefix(err, "token file");
	}
	const char *s = b.data ? b.data : "";
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	size_t n = strcspn(s, "\r\n");
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 0)
		return pyti_err_usage(err, "token file %s is empty", path);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return pyti_err_usage(err, "token file %s: the token has a blank or control character", path);
	*out = xasprintf("%.*s", (int)n, s);
	return 0;
}

int wrpc_user_token(const char *path, char **out, struct pyti_err *err)
{
	*out = NULL;
	if (!path || !*path)
		path = getenv("PYTI_TOKEN_FILE");
	if (!path || !*path)
		return 0;
	return wrpc_read_token(path, out, err);
}

char *wrpc_base64(const void *data, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = data;
	char *out = xmalloc(4 * ((n + 2) / 3) + 1), *o = out;
	size_t i = 0;
	for (; i + 2 < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
		*o++ = tab[v >> 18], *o++ = tab[(v >> 12) & 63], *o++ = tab[(v >> 6) & 63], *o++ = tab[v & 63];
	}
	if (i < n) {
		unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0);
		*o++ = tab[v >> 18], *o++ = tab[(v >> 12) & 63];
		*o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

void backoff_init(struct backoff *b, double base_s, double cap_s, unsigned seed)
{
	b->base_s = base_s > 0 ? base_s : 0.5;
	b->cap_s = cap_s >= b->base_s ? cap_s : b->base_s;
	b->cur_s = b->base_s;
	b->seed = seed ? seed : 1;
}

void backoff_reset(struct backoff *b)
{
	b->cur_s = b->base_s;
}

double backoff_next(struct backoff *b, double min_s)
{
	double ceil_s = b->cur_s;
	double r = (double)rand_r(&b->seed) / ((double)RAND_MAX + 1.0);
	double d = ceil_s / 2 + r * ceil_s / 2;
	b->cur_s = b->cur_s * 2 > b->cap_s ? b->cap_s : b->cur_s * 2;
	if (d > b->cap_s)
		d = b->cap_s;
	if (d < min_s) /* the server's own figure wins over the cap, within reason */
		d = min_s < 300 ? min_s : 300;
	return d;
}

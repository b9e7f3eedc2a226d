/* web: routing. GET /, /run/ID, /job/ID, /dist/NAME, /workers, /queue (HTML, or JSON with
 * "Accept: application/json" or under /api/), /job/ID/artefact/NAME (a download), /static/…
 * (the stylesheet, the script and Debian's chart.js), and POST /run/ID/rerun (a user token). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pyti_css.h"
#include "pyti_js.h"
#include "web-int.h"

#ifndef PYTI_CHARTJS
#define PYTI_CHARTJS "/usr/share/javascript/chart.js/chart.min.js"
#endif
#define CHARTJS_MAX (4u << 20)

const char web_csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
		       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

void web_response_free(struct web_response *r)
{
	free(r->body);
	free(r->disposition);
	free(r->location);
	*r = (struct web_response){0};
}

static int answer(struct web_response *out, unsigned status, const char *ctype, char *body)
{
	out->status = status;
	out->ctype = ctype;
	out->body = body;
	out->len = body ? strlen(body) : 0;
	return 0;
}

static int text_page(struct web_response *out, unsigned status, const char *title, const char *msg)
{
	struct buf b = BUF_INIT(0);
	h_begin(&b, title, NULL);
	buf_puts(&b, "<h1>");
	h_s(&b, title);
	buf_puts(&b, "</h1><p class=\"error\">");
	h_s(&b, msg);
	buf_puts(&b, "</p>");
	h_end(&b);
	return answer(out, status, "text/html; charset=utf-8", buf_steal(&b));
}

static int error_answer(struct web_response *out, bool json, unsigned status, const char *msg)
{
	if (json) {
		json_t *e = json_pack("{s:{s:s, s:i}}", "error", "message", msg, "status", (int)status);
		char *t = json_dumps(e, JSON_COMPACT);
		json_decref(e);
		return answer(out, status, "application/json", t);
	}
	return text_page(out, status, status == 404 ? "Not found" : "Error", msg);
}

static unsigned http_status_of(int rc)
{
	switch (rc) {
	case STORE_E_NOTFOUND:
		return 404;
	case STORE_E_INVALID:
		return 400;
	default:
		return 503;
	}
}

bool web_is_static(const char *path)
{
	return strncmp(path, "/static/", 8) == 0;
}

static int static_file(const char *name, struct web_response *out)
{
	out->static_file = true;
	if (strcmp(name, "pyti.css") == 0)
		return answer(out, 200, "text/css; charset=utf-8", xstrdup(pyti_css));
	if (strcmp(name, "pyti.js") == 0)
		return answer(out, 200, "text/javascript; charset=utf-8", xstrdup(pyti_js));
	if (strcmp(name, "chart.js") == 0) {
		/* Debian's libjs-chart.js, read where it is installed; without it the pages only lose charts */
		int fd = open(PYTI_CHARTJS, O_RDONLY | O_CLOEXEC);
		struct buf b = BUF_INIT(CHARTJS_MAX);
		if (fd >= 0) {
			char chunk[65536];
			ssize_t n;
			while ((n = read(fd, chunk, sizeof chunk)) > 0)
				if (buf_append(&b, chunk, (size_t)n) < 0)
					break;
			close(fd);
		}
		if (fd < 0 || b.truncated || !b.len) {
			buf_free(&b);
			out->static_file = false;
			return answer(out, 404, "text/plain; charset=utf-8",
				      xstrdup("chart.js is not installed (Debian package libjs-chart.js)\n"));
		}
		out->len = b.len;
		out->body = buf_steal(&b);
		out->status = 200;
		out->ctype = "text/javascript; charset=utf-8";
		return 0;
	}
	out->static_file = false;
	return answer(out, 404, "text/plain; charset=utf-8", xstrdup("not found\n"));
}

/* "/run/" + ID (one segment) → ID, else NULL */
static const char *segment(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);
	if (strncmp(path, prefix, n) != 0 || !path[n] || strchr(path + n, '/'))
		return NULL;
	return path + n;
}

static bool wants_json(const struct web_request *rq)
{
	const char *a = rq->accept;
	if (!a)
		return false;
	const char *j = strstr(a, "application/json"), *h = strstr(a, "text/html");
	return j && (!h || j < h);
}

/* GET /job/ID/artefact/NAME: the blob, as an attachment, never as a page */
static int artefact(struct store *st, const char *job_id, const char *name, struct web_response *out)
{
	json_t *doc = NULL;
	struct pyti_err err = {0};
	int rc = store_show(st, job_id, &doc, &err);
	if (rc < 0)
		return error_answer(out, false, http_status_of(rc), err.msg);
	json_t *atts = json_object_get(json_object_get(doc, "job"), "attempts");
	json_t *last = json_array_get(atts, json_array_size(atts) ? json_array_size(atts) - 1 : 0), *a;
	const char *sha = NULL;
	size_t i;
	json_array_foreach(json_object_get(last, "artefacts"), i, a)
		if (strcmp(pj_str(a, "name", ""), name) == 0)
			sha = pj_str(a, "sha256", NULL);
	if (!sha) {
		json_decref(doc);
		return error_answer(out, false, 404, "no such artefact in the job's last attempt");
	}
	struct buf b = BUF_INIT(0);
	rc = store_blob_get(st, sha, &b, &err);
	json_decref(doc);
	if (rc < 0) {
		buf_free(&b);
		return error_answer(out, false, http_status_of(rc), err.msg);
	}
	const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
	size_t bl = strlen(base);
	out->status = 200;
	out->len = b.len;
	out->body = buf_steal(&b);
	out->ctype = bl > 5 && strcmp(base + bl - 5, ".json") == 0	 ? "application/json"
		     : bl > 4 && strcmp(base + bl - 4, ".xml") == 0 ? "application/xml"
								   : "text/plain; charset=utf-8";
	/* the file name: only characters that need no quoting */
	struct buf fn = BUF_INIT(256);
	for (const char *c = base; *c; c++)
		buf_append(&fn,
			   (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
					   *c == '-' || *c == '_'
				   ? c
				   : "_",
			   1);
	out->disposition = xasprintf("attachment; filename=\"%s-%s\"", job_id, fn.data ? fn.data : "artefact");
	buf_free(&fn);
	return 0;
}

/* A POST that changes state: same-origin only (Sec-Fetch-Site, else Origin against Host), and a
 * user token (the Authorization header or the form's "token" field). */
static const char *refuse_post(const struct web_request *rq)
{
	if (rq->fetch_site && strcmp(rq->fetch_site, "same-origin") != 0 && strcmp(rq->fetch_site, "none") != 0)
		return "cross-site request refused";
	if (rq->origin) {
		const char *o = strstr(rq->origin, "://");
		if (!rq->host || !o || strcmp(o + 3, rq->host) != 0)
			return "cross-site request refused (Origin is not this master)";
	}
	if (rq->user)
		return NULL;
	const char *tok = page_arg(rq, "token");
	if (tok && rq->user_token && rq->user_token(rq->ctx, tok))
		return NULL;
	return "a user token is needed to rerun";
}

static int rerun(struct store *st, const struct web_request *rq, const char *run_id, struct web_response *out)
{
	const char *why = refuse_post(rq);
	if (why)
		return error_answer(out, wants_json(rq), 403, why);
	json_t *res = NULL;
	struct pyti_err err = {0};
	int rc = store_rerun_failed(st, run_id, &res, &err);
	if (rc < 0)
		return error_answer(out, wants_json(rq), http_status_of(rc), err.msg);
	out->queued_work = true;
	if (wants_json(rq)) {
		char *t = json_dumps(res, JSON_COMPACT);
		json_decref(res);
		return answer(out, 200, "application/json", t);
	}
	out->location = xasprintf("/run/%s", pj_str(res, "run_id", ""));
	json_decref(res);
	return answer(out, 303, "text/plain; charset=utf-8", xstrdup("queued\n"));
}

int web_handle(struct store *st, const struct web_request *rq, struct web_response *out)
{
	*out = (struct web_response){0};
	const char *path = rq->path ? rq->path : "/";
	if (web_is_static(path))
		return static_file(path + 8, out);
	bool json = wants_json(rq);
	if (strncmp(path, "/api/", 5) == 0 || strcmp(path, "/api") == 0) {
		json = true;
		path += 4;
		if (!*path)
			path = "/";
	}
	bool post = strcmp(rq->method, "POST") == 0;
	if (post) {
		const char *p = path;
		if (strncmp(p, "/run/", 5) == 0) {
			const char *slash = strchr(p + 5, '/');
			if (slash && strcmp(slash, "/rerun") == 0 && slash - (p + 5) < STORE_ID_SIZE) {
				char id[STORE_ID_SIZE];
				snprintf(id, sizeof id, "%.*s", (int)(slash - (p + 5)), p + 5);
				return rerun(st, rq, id, out);
			}
		}
		return error_answer(out, json, 404, "no such page (only POST /run/ID/rerun changes anything)");
	}
	if (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "HEAD") != 0)
		return error_answer(out, json, 405, "GET, HEAD or POST");

	struct page_ctx c = {.st = st, .rq = rq};
	struct buf b = BUF_INIT(0);
	json_t *doc = NULL;
	int rc;
	const char *id;
	if (strcmp(path, "/") == 0 || strcmp(path, "/runs") == 0) {
		const char *d = page_arg(rq, "dist");
		if (d) { /* the search box */
			struct buf loc = BUF_INIT(0);
			h_link(&loc, "/dist/", d, NULL); /* reuse its encoding: <a href="…"> */
			char *s = strstr(loc.data, "href=\"") + 6;
			*strchr(s, '"') = '\0';
			out->location = xstrdup(s);
			buf_free(&loc);
			return answer(out, 303, "text/plain; charset=utf-8", xstrdup("see the distribution's page\n"));
		}
		rc = page_runs(&c, &b, &doc);
	} else if ((id = segment(path, "/run/"))) {
		rc = page_run(&c, id, &b, &doc);
	} else if (strncmp(path, "/dist/", 6) == 0 && path[6]) { /* a local path may hold '/' */
		id = path + 6;
		rc = page_dist(&c, id, &b, &doc);
	} else if (strncmp(path, "/compare/", 9) == 0 && strchr(path + 9, '/') &&
		   !strchr(strchr(path + 9, '/') + 1, '/')) {
		char a[STORE_ID_SIZE];
		const char *slash = strchr(path + 9, '/');
		if (slash - (path + 9) >= STORE_ID_SIZE)
			return error_answer(out, json, 404, "no such run");
		snprintf(a, sizeof a, "%.*s", (int)(slash - (path + 9)), path + 9);
		rc = page_compare(&c, a, slash + 1, &b, &doc);
	} else if (strcmp(path, "/compare") == 0 && page_arg(rq, "a") && page_arg(rq, "b")) {
		out->location = xasprintf("/compare/%.*s/%.*s", STORE_ID_SIZE - 1, page_arg(rq, "a"), STORE_ID_SIZE - 1,
					  page_arg(rq, "b"));
		for (char *q = out->location + 9; *q; q++)
			if (!((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '/'))
				*q = '_'; /* ids are lowercase hex with a kind letter */
		return answer(out, 303, "text/plain; charset=utf-8", xstrdup("see the comparison\n"));
	} else if (strcmp(path, "/workers") == 0) {
		rc = page_workers(&c, &b, &doc);
	} else if (strcmp(path, "/queue") == 0) {
		rc = page_queue(&c, &b, &doc);
	} else if ((id = segment(path, "/job/"))) {
		rc = page_job(&c, id, &b, &doc);
		if (rc == 1) { /* it named a run */
			buf_free(&b);
			out->location = xasprintf("/run/%s", pj_str(json_object_get(doc, "run"), "run_id", ""));
			json_decref(doc);
			return answer(out, 303, "text/plain; charset=utf-8", xstrdup("a run\n"));
		}
	} else if (strncmp(path, "/job/", 5) == 0 && strstr(path + 5, "/artefact/")) {
		const char *sep = strstr(path + 5, "/artefact/");
		char jid[STORE_ID_SIZE];
		if (sep - (path + 5) >= STORE_ID_SIZE)
			return error_answer(out, json, 404, "no such job");
		snprintf(jid, sizeof jid, "%.*s", (int)(sep - (path + 5)), path + 5);
		return artefact(st, jid, sep + 10, out);
	} else {
		return error_answer(out, json, 404, "no such page");
	}
	if (rc < 0) {
		buf_free(&b);
		return error_answer(out, json, http_status_of(rc), c.err.msg);
	}
	if (json) {
		buf_free(&b);
		char *t = json_dumps(doc, JSON_COMPACT);
		json_decref(doc);
		return answer(out, 200, "application/json", t);
	}
	json_decref(doc);
	out->status = 200;
	out->ctype = "text/html; charset=utf-8";
	out->len = b.len;
	out->body = buf_steal(&b);
	return 0;
}

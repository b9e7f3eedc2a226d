/* web: one function a page. Each reads the store once or twice, keeps what it read as the page's
 * JSON twin, and renders the HTML from the same data: the numbers shown are the store's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "web-int.h"

#define LOG_HEAD_LINES 1000
#define LOG_TAIL_LINES 1000
#define LOG_MAX_BYTES (2u << 20) /* of one log, read from the store */

const char *page_arg(const struct web_request *rq, const char *key)
{
	for (unsigned i = 0; i < rq->n_args; i++)
		if (strcmp(rq->args[i].key, key) == 0)
			return rq->args[i].value && *rq->args[i].value ? rq->args[i].value : NULL;
	return NULL;
}

static long long jint(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/* ---- / ---- */
int page_runs(struct page_ctx *c, struct buf *b, json_t **json)
{
	struct store_runs_query q = {.limit = 100};
	json_t *runs = NULL;
	int rc = store_runs(c->st, &q, &runs, &c->err);
	if (rc == 0 && (rc = store_runs_axes(c->st, runs, &c->err)) < 0)
		json_decref(runs);
	if (rc < 0)
		return rc;
	*json = runs;
	size_t active = 0, i;
	json_t *r;
	h_begin(b, "Runs", "/");
	buf_puts(b, "<h1>Runs</h1><table id=\"runs\" class=\"grid\"><thead><tr><th>run</th><th>created</th><th>origin</th>"
		    "<th>dists × images</th><th>done</th><th>queued</th><th>passed</th><th>test-failed</th>"
		    "<th>build-failed</th><th>no-tests</th><th>infra</th><th></th></tr></thead><tbody>");
	json_array_foreach(json_object_get(runs, "runs"), i, r) {
		const json_t *cn = json_object_get(r, "counts"), *v = json_object_get(r, "verdicts");
		long long pending = jint(cn, "queued") + jint(cn, "leased");
		long long done = jint(cn, "done") + jint(cn, "failed") + jint(cn, "cancelled");
		active += pending > 0;
		buf_puts(b, "<tr><td class=\"id\">");
		h_link(b, "/run/", pj_str(r, "run_id", ""), NULL);
		buf_puts(b, "</td><td>");
		h_j(b, json_object_get(r, "created"));
		buf_puts(b, "</td><td>");
		h_j(b, json_object_get(r, "origin"));
		buf_printf(b, "</td><td class=\"n\">%lld × %lld</td><td class=\"n\">%lld</td><td class=\"n\">%lld</td>",
			   jint(r, "dists"), jint(r, "suites"), done, pending);
		static const char *const vs[] = {"passed", "test-failed", "build-failed", "no-tests", "infra"};
		for (size_t k = 0; k < sizeof vs / sizeof *vs; k++)
			buf_printf(b, "<td class=\"n\" data-v=\"%s\">%lld</td>", vs[k], jint(v, vs[k]));
		buf_puts(b, "<td>");
		h_bar(b, cn, v, jint(r, "jobs"));
		buf_puts(b, "</td></tr>");
	}
	buf_puts(b, "</tbody></table>");
	if (!json_array_size(json_object_get(runs, "runs")))
		buf_puts(b, "<p class=\"empty\">No runs yet: <code>pyti submit DIST…</code> queues one.</p>");
	if (active)
		buf_puts(b, "<div hidden data-live=\"reload\"></div>");
	h_end(b);
	return 0;
}

/* ---- /run/ID ---- */
/* the master renders pages on many threads at once: the sort's key travels with the call (qsort_r) */
struct job_sort {
	const char *key;
	int dir;
};
static int cmp_jobs(const void *pa, const void *pb, void *arg)
{
	const struct job_sort *o = arg;
	const char *sort_key = o->key;
	const json_t *a = *(json_t *const *)pa, *b = *(json_t *const *)pb;
	const json_t *x = json_object_get(a, sort_key), *y = json_object_get(b, sort_key);
	int r;
	if (json_is_number(x) || json_is_number(y)) {
		double u = json_is_number(x) ? json_number_value(x) : -INFINITY;
		double w = json_is_number(y) ? json_number_value(y) : -INFINITY;
		r = u < w ? -1 : u > w;
	} else {
		r = strcmp(json_is_string(x) ? json_string_value(x) : "", json_is_string(y) ? json_string_value(y) : "");
	}
	if (r == 0) /* stable by job order */
		r = (int)(jint(a, "seq_") - jint(b, "seq_"));
	return r * o->dir;
}

static const char *const run_cols[][2] = {
	{"dist", "distribution"},  {"suite", "image"},		{"state", "state"},
	{"verdict", "verdict"},	   {"failure_class", "class"}, {"duration_s", "duration (s)"},
	{"tests_passed", "passed"}, {"tests_failed", "failed"}, {"attempt", "attempt"},
};

/* the filters of a run page: ?state=…&verdict=…&class=… */
#define N_FILTERS 3
static const char *const filter_keys[N_FILTERS] = {"state", "verdict", "class"};
static const char *const filter_fields[N_FILTERS] = {"state", "verdict", "failure_class"};

static void query_link(struct buf *b, const char *run_id, const char *const f[N_FILTERS], const char *sort,
		       const char *dir)
{
	buf_puts(b, "/run/");
	h_s(b, run_id);
	char sep = '?';
	for (size_t i = 0; i < N_FILTERS + 2; i++) {
		const char *k = i < N_FILTERS ? filter_keys[i] : i == N_FILTERS ? "sort" : "dir";
		const char *v = i < N_FILTERS ? f[i] : i == N_FILTERS ? sort : dir;
		if (v) {
			buf_printf(b, "%c%s=", sep, k);
			h_s(b, v); /* states, verdicts, classes and column keys are plain words */
			sep = '&';
		}
	}
}

static void filter_links(struct buf *b, const char *run_id, size_t which, json_t *values, const char *const f[N_FILTERS],
			 const char *sort, const char *dir)
{
	const char *g[N_FILTERS];
	memcpy(g, f, sizeof g);
	g[which] = NULL;
	buf_printf(b, "<p class=\"filters\" id=\"filter-%s\">%s: <a href=\"", filter_keys[which], filter_keys[which]);
	query_link(b, run_id, g, sort, dir);
	buf_printf(b, "\"%s>all</a>", f[which] ? "" : " class=\"here\"");
	const char *k;
	json_t *n;
	json_object_foreach(values, k, n) {
		g[which] = k;
		buf_puts(b, " <a href=\"");
		query_link(b, run_id, g, sort, dir);
		buf_printf(b, "\"%s>", f[which] && strcmp(f[which], k) == 0 ? " class=\"here\"" : "");
		h_s(b, k);
		buf_printf(b, " (%lld)</a>", (long long)json_integer_value(n));
	}
	buf_puts(b, "</p>");
}

int page_run(struct page_ctx *c, const char *id, struct buf *b, json_t **json)
{
	json_t *doc = NULL;
	int rc = store_run_jobs(c->st, id, &doc, &c->err);
	if (rc < 0)
		return rc;
	*json = doc;
	const json_t *run = json_object_get(doc, "run");
	const char *run_id = pj_str(run, "run_id", id);
	const char *f[N_FILTERS];
	for (size_t k = 0; k < N_FILTERS; k++)
		f[k] = page_arg(c->rq, filter_keys[k]);
	const char *sort = page_arg(c->rq, "sort"), *dir = page_arg(c->rq, "dir");
	bool known = false;
	for (size_t i = 0; sort && i < sizeof run_cols / sizeof *run_cols; i++)
		known |= strcmp(sort, run_cols[i][0]) == 0;
	if (!known)
		sort = NULL;
	bool desc = dir && strcmp(dir, "desc") == 0;

	/* the rows shown: filtered, then sorted (a copy: the JSON twin keeps the store's order) */
	json_t *all = json_object_get(doc, "jobs"), *j;
	size_t n = 0, i;
	json_t **rows = xcalloc(json_array_size(all) + 1, sizeof *rows);
	json_t *seen[N_FILTERS]; /* value → jobs, for the filter links */
	for (size_t k = 0; k < N_FILTERS; k++)
		seen[k] = json_object();
	long long not_passed = 0;
	json_array_foreach(all, i, j) {
		const char *js = pj_str(j, "state", "");
		if ((strcmp(js, "done") == 0 || strcmp(js, "failed") == 0 || strcmp(js, "cancelled") == 0) &&
		    strcmp(pj_str(j, "verdict", ""), "passed") != 0)
			not_passed++;
		json_object_set_new(j, "seq_", json_integer((json_int_t)i));
		bool keep = true;
		for (size_t k = 0; k < N_FILTERS; k++) {
			const char *v = pj_str(j, filter_fields[k], NULL);
			if (v)
				json_object_set_new(seen[k], v, json_integer(jint(seen[k], v) + 1));
			if (f[k] && (!v || strcmp(v, f[k]) != 0))
				keep = false;
		}
		if (keep)
			rows[n++] = j;
	}
	if (sort) {
		struct job_sort o = {sort, desc ? -1 : 1};
		qsort_r(rows, n, sizeof *rows, cmp_jobs, &o);
	}

	const json_t *cn = json_object_get(run, "counts"), *v = json_object_get(run, "verdicts");
	long long pending = jint(cn, "queued") + jint(cn, "leased");
	char title[64];
	snprintf(title, sizeof title, "Run %s", run_id);
	h_begin(b, title, NULL);
	buf_puts(b, "<h1>Run <span class=\"id\">");
	h_s(b, run_id);
	buf_puts(b, "</span></h1><dl class=\"facts\"><dt>created</dt><dd>");
	h_j(b, json_object_get(run, "created"));
	buf_puts(b, "</dd><dt>origin</dt><dd>");
	h_j(b, json_object_get(run, "origin"));
	buf_puts(b, "</dd><dt>recipe</dt><dd>");
	h_j(b, json_object_get(run, "recipe"));
	if (json_is_string(json_object_get(run, "parent"))) {
		buf_puts(b, "</dd><dt>parent</dt><dd>");
		h_link(b, "/run/", pj_str(run, "parent", ""), NULL);
		buf_puts(b, " (<a id=\"compare-parent\" href=\"/compare/");
		h_s(b, pj_str(run, "parent", ""));
		buf_puts(b, "/");
		h_s(b, run_id);
		buf_puts(b, "\">compare</a>)");
	}
	buf_printf(b, "</dd><dt>jobs</dt><dd id=\"n-jobs\">%lld</dd>", jint(run, "jobs"));
	const char *k;
	json_t *cnt;
	json_object_foreach((json_t *)cn, k, cnt) {
		buf_printf(b, "<dt>%s</dt><dd data-count=\"%s\">%lld</dd>", k, k, (long long)json_integer_value(cnt));
	}
	json_object_foreach((json_t *)v, k, cnt) {
		buf_printf(b, "<dt>%s</dt><dd data-verdict=\"%s\">%lld</dd>", k, k, (long long)json_integer_value(cnt));
	}
	buf_puts(b, "</dl>");
	h_bar(b, cn, v, jint(run, "jobs"));

	for (size_t q = 0; q < N_FILTERS; q++) {
		if (json_object_size(seen[q]) || f[q])
			filter_links(b, run_id, q, seen[q], f, sort, dir);
		json_decref(seen[q]);
	}

	/* the chart of job durations (what is shown, in the order shown) */
	_cleanup_json_ json_t *chart = json_pack("{s:s, s:[], s:[]}", "kind", "durations", "labels", "values");
	for (size_t r = 0; r < n; r++) {
		json_array_append(json_object_get(chart, "labels"), json_object_get(rows[r], "dist"));
		json_array_append(json_object_get(chart, "values"), json_object_get(rows[r], "duration_s"));
	}
	buf_puts(b, "<figure class=\"chart\"><canvas id=\"chart-durations\" height=\"120\"");
	h_attr_json(b, "data-chart", chart);
	buf_puts(b, "></canvas></figure>");

	buf_printf(b, "<p class=\"shown\">%zu of %zu jobs shown</p><table id=\"jobs\" class=\"grid\"><thead><tr><th>job</th>", n,
		   json_array_size(all));
	for (size_t col = 0; col < sizeof run_cols / sizeof *run_cols; col++) {
		bool here = sort && strcmp(sort, run_cols[col][0]) == 0;
		buf_printf(b, "<th data-col=\"%s\"%s><a href=\"", run_cols[col][0],
			   here ? (desc ? " aria-sort=\"descending\"" : " aria-sort=\"ascending\"") : "");
		query_link(b, run_id, f, run_cols[col][0], here && !desc ? "desc" : "asc");
		buf_printf(b, "\">%s%s</a></th>", run_cols[col][1], here ? (desc ? " ▼" : " ▲") : "");
	}
	buf_puts(b, "</tr></thead><tbody>");
	for (size_t r = 0; r < n; r++) {
		j = rows[r];
		const char *jid = pj_str(j, "job_id", "");
		buf_puts(b, "<tr id=\"");
		h_s(b, jid);
		buf_puts(b, "\">");
		static const struct h_col cols[] = {
			{"job_id", H_JOB, false},	    {"dist", H_DIST, false},	       {"suite", H_TEXT, false},
			{"state", H_BADGE, true},	    {"verdict", H_BADGE, true},	       {"failure_class", H_TEXT, true},
			{"duration_s", H_NUM, true},	    {"tests_passed", H_NUM, true},     {"tests_failed", H_NUM, true},
			{"attempt", H_NUM, true},
		};
		h_cells(b, j, cols, sizeof cols / sizeof *cols);
		buf_puts(b, "</tr>");
	}
	buf_puts(b, "</tbody></table>");
	free(rows);
	json_array_foreach(all, i, j)
		json_object_del(j, "seq_");

	if (not_passed) {
		buf_puts(b, "<form class=\"rerun\" method=\"post\" action=\"/run/");
		h_s(b, run_id);
		buf_printf(b, "/rerun\"><label>user token <input type=\"password\" name=\"token\" autocomplete=\"off\"></label>"
			      " <button>Rerun the %lld that did not pass</button></form>",
			   not_passed);
	}
	buf_puts(b, "<form class=\"compare\" method=\"get\" action=\"/compare\"><input type=\"hidden\" name=\"b\" value=\"");
	h_s(b, run_id);
	buf_puts(b, "\"><label>compare with the baseline run <input name=\"a\" size=\"20\" placeholder=\"r…\"></label>"
		    " <button>Compare</button></form>");
	if (pending) {
		buf_puts(b, "<div hidden data-live=\"/api/run/");
		h_s(b, run_id);
		buf_puts(b, "\"></div>");
	}
	h_end(b);
	return 0;
}

/* ---- /job/ID ---- */
static void task_row(struct buf *b, const json_t *t)
{
	const json_t *r = json_object_get(t, "result"), *tests = json_object_get(r, "tests");
	buf_puts(b, "<tr><td>");
	h_j(b, json_object_get(t, "task"));
	buf_puts(b, "</td><td>");
	h_badge(b, pj_str(t, "status", NULL));
	buf_puts(b, "</td><td>");
	h_j(b, json_object_get(t, "failure_class"));
	buf_puts(b, "</td><td class=\"n\">");
	h_j(b, json_object_get(r, "exit_code"));
	buf_puts(b, "</td><td class=\"n\">");
	h_j(b, json_object_get(t, "wall_s"));
	buf_puts(b, "</td><td class=\"n\">");
	if (json_is_number(json_object_get(r, "cpu_user_s")))
		h_num(b, pj_num(r, "cpu_user_s", 0) + pj_num(r, "cpu_sys_s", 0), 2);
	else
		buf_puts(b, "–");
	buf_puts(b, "</td><td class=\"n\">");
	if (json_is_integer(json_object_get(r, "max_rss_kb")))
		h_num(b, (double)jint(r, "max_rss_kb") / 1024.0, 1);
	else
		buf_puts(b, "–");
	buf_puts(b, "</td><td class=\"n\">");
	if (json_is_object(tests))
		buf_printf(b, "%lld / %lld / %lld / %lld", jint(tests, "passed"), jint(tests, "failed") + jint(tests, "errors"),
			   jint(tests, "skipped"), jint(tests, "total"));
	else
		buf_puts(b, "–");
	buf_puts(b, "</td></tr>");
}

/* an anchor-safe name: letters, digits, - and _ only */
static void anchor(struct buf *b, const char *s)
{
	for (; *s; s++)
		buf_append(b, (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-'
				      ? s
				      : "_",
			   1);
}

static void log_line(struct buf *b, const char *task, size_t no, const char *s, size_t n)
{
	buf_puts(b, "<span class=\"ln\" id=\"");
	anchor(b, task);
	buf_printf(b, "-L%zu\"><a href=\"#", no);
	anchor(b, task);
	buf_printf(b, "-L%zu\">%zu</a></span>", no, no);
	web_html_text(b, s, n);
	buf_puts(b, "\n");
}

static void show_log(struct page_ctx *c, struct buf *b, const char *job_id, const json_t *art)
{
	const char *name = pj_str(art, "name", ""), *sha = pj_str(art, "sha256", "");
	char task[128];
	const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
	snprintf(task, sizeof task, "%.*s", (int)(strlen(base) > 4 ? strlen(base) - 4 : strlen(base)), base);
	buf_puts(b, "<section class=\"log\"><h3 id=\"log-");
	anchor(b, task);
	buf_puts(b, "\">");
	h_s(b, name);
	buf_printf(b, " <small>(%lld bytes, <a href=\"/job/", jint(art, "size"));
	h_s(b, job_id);
	buf_puts(b, "/artefact/");
	h_s(b, name);
	buf_puts(b, "\" download>download</a>)</small></h3>");
	_cleanup_buf_ struct buf data = BUF_INIT(LOG_MAX_BYTES);
	struct pyti_err err = {0};
	if (jint(art, "size") > (long long)LOG_MAX_BYTES * 8) {
		buf_puts(b, "<p class=\"empty\">too large to show here: download it.</p></section>");
		return;
	}
	if (store_blob_get(c->st, sha, &data, &err) < 0) {
		buf_puts(b, "<p class=\"empty\">not readable: ");
		h_s(b, err.msg);
		buf_puts(b, "</p></section>");
		return;
	}
	/* line starts, then the head and the tail */
	size_t lines = 0;
	for (size_t i = 0; i < data.len; i++)
		lines += data.data[i] == '\n';
	if (data.len && data.data[data.len - 1] != '\n')
		lines++;
	buf_puts(b, "<pre class=\"logtext\">");
	size_t no = 0, start = 0;
	for (size_t i = 0; i <= data.len; i++) {
		if (i < data.len && data.data[i] != '\n')
			continue;
		if (i == data.len && start == i)
			break;
		no++;
		if (no <= LOG_HEAD_LINES || no > lines - (lines > LOG_TAIL_LINES ? LOG_TAIL_LINES : lines))
			log_line(b, task, no, data.data + start, i - start);
		else if (no == LOG_HEAD_LINES + 1)
			buf_printf(b, "<span class=\"skip\">… %zu lines not shown (download the log) …</span>\n",
				   lines - LOG_HEAD_LINES - LOG_TAIL_LINES);
		start = i + 1;
	}
	buf_puts(b, "</pre>");
	if (data.truncated)
		buf_puts(b, "<p class=\"empty\">(the rest is in the download)</p>");
	buf_puts(b, "</section>");
}

int page_job(struct page_ctx *c, const char *id, struct buf *b, json_t **json)
{
	json_t *doc = NULL;
	int rc = store_show(c->st, id, &doc, &c->err);
	if (rc < 0)
		return rc;
	*json = doc;
	json_t *job = json_object_get(doc, "job");
	if (!job)
		return 1; /* a run: web.c redirects */
	const char *job_id = pj_str(job, "job_id", id);
	json_t *atts = json_object_get(job, "attempts");
	json_t *last = json_array_get(atts, json_array_size(atts) ? json_array_size(atts) - 1 : 0);
	char title[160];
	snprintf(title, sizeof title, "%s on %s", pj_str(job, "dist", "?"), pj_str(job, "suite", "?"));
	h_begin(b, title, NULL);
	buf_puts(b, "<h1>");
	h_link(b, "/dist/", pj_str(job, "dist", ""), NULL);
	buf_puts(b, " on ");
	h_s(b, pj_str(job, "suite", ""));
	buf_puts(b, "</h1><dl class=\"facts\"><dt>job</dt><dd class=\"id\">");
	h_s(b, job_id);
	buf_puts(b, "</dd><dt>run</dt><dd>");
	h_link(b, "/run/", pj_str(job, "run_id", ""), NULL);
	buf_puts(b, "</dd><dt>state</dt><dd id=\"job-state\">");
	h_badge(b, pj_str(job, "state", NULL));
	buf_puts(b, "</dd><dt>verdict</dt><dd id=\"job-verdict\">");
	h_badge(b, pj_str(job, "verdict", NULL));
	buf_puts(b, "</dd><dt>failure class</dt><dd>");
	h_j(b, json_object_get(job, "failure_class"));
	buf_printf(b, "</dd><dt>attempt</dt><dd>%lld of %lld</dd><dt>backend</dt><dd>", jint(job, "attempt"),
		   jint(job, "max_attempts"));
	h_j(b, json_object_get(job, "backend"));
	buf_puts(b, "</dd><dt>worker</dt><dd>");
	h_j(b, json_object_get(job, "worker_id"));
	buf_puts(b, "</dd><dt>created</dt><dd>");
	h_j(b, json_object_get(job, "created"));
	buf_puts(b, "</dd><dt>finished</dt><dd>");
	h_j(b, json_object_get(job, "finished"));
	buf_puts(b, "</dd>");
	if (json_is_string(json_object_get(job, "error"))) {
		buf_puts(b, "<dt>error</dt><dd class=\"error\">");
		h_j(b, json_object_get(job, "error"));
		buf_puts(b, "</dd>");
	}
	const json_t *pg = json_object_get(job, "progress");
	if (strcmp(pj_str(job, "state", ""), "leased") == 0 && json_is_object(pg)) {
		buf_puts(b, "<dt>running</dt><dd id=\"job-progress\">task ");
		h_j(b, json_object_get(pg, "task"));
		buf_printf(b, " (%lld of %lld)</dd>", jint(pg, "i"), jint(pg, "n"));
	}
	buf_puts(b, "</dl>");
	if (strcmp(pj_str(job, "state", ""), "leased") == 0) {
		/* the running task's last output, from the worker's latest heartbeat */
		buf_puts(b, "<h2>Live output</h2><pre class=\"logtext\" id=\"live-tail\">");
		h_j(b, json_is_string(json_object_get(pg, "tail")) ? json_object_get(pg, "tail") : NULL);
		buf_puts(b, "</pre>");
	}

	/* tasks of the last attempt, with their chart */
	json_t *tasks = json_object_get(last, "tasks"), *t;
	size_t i;
	_cleanup_json_ json_t *chart =
		json_pack("{s:s, s:[], s:[], s:[], s:[]}", "kind", "tasks", "labels", "wall", "cpu", "rss_mb");
	buf_puts(b, "<h2>Tasks</h2><table id=\"tasks\" class=\"grid\"><thead><tr><th>task</th><th>status</th>"
		    "<th>class</th><th>exit</th><th>wall (s)</th><th>CPU (s)</th><th>peak memory (MiB)</th>"
		    "<th>tests passed / failed / skipped / total</th></tr></thead><tbody>");
	json_array_foreach(tasks, i, t) {
		const json_t *r = json_object_get(t, "result");
		task_row(b, t);
		json_array_append(json_object_get(chart, "labels"), json_object_get(t, "task"));
		json_array_append_new(json_object_get(chart, "wall"), json_real(pj_num(t, "wall_s", 0)));
		json_array_append_new(json_object_get(chart, "cpu"),
				      json_real(pj_num(r, "cpu_user_s", 0) + pj_num(r, "cpu_sys_s", 0)));
		json_array_append_new(json_object_get(chart, "rss_mb"), json_real((double)jint(r, "max_rss_kb") / 1024.0));
	}
	buf_puts(b, "</tbody></table>");
	if (json_array_size(tasks)) {
		buf_puts(b, "<figure class=\"chart\"><canvas id=\"chart-tasks\" height=\"120\"");
		h_attr_json(b, "data-chart", chart);
		buf_puts(b, "></canvas></figure>");
	}

	json_t *cases = json_object_get(last, "testcases");
	buf_printf(b, "<h2>Failed tests (%zu)</h2>", json_array_size(cases));
	if (json_array_size(cases)) {
		buf_puts(b, "<table id=\"failed-tests\" class=\"grid\"><thead><tr><th>task</th><th>test</th><th>outcome</th>"
			    "<th>message</th></tr></thead><tbody>");
		json_array_foreach(cases, i, t) {
			buf_puts(b, "<tr><td>");
			h_j(b, json_object_get(t, "task"));
			buf_puts(b, "</td><td class=\"test\">");
			h_j(b, json_object_get(t, "id"));
			buf_puts(b, "</td><td>");
			h_badge(b, pj_str(t, "outcome", NULL));
			buf_puts(b, "</td><td><pre class=\"msg\">");
			h_j(b, json_object_get(t, "message"));
			buf_puts(b, "</pre></td></tr>");
		}
		buf_puts(b, "</tbody></table>");
	}

	json_t *arts = json_object_get(last, "artefacts"), *a;
	buf_puts(b, "<h2>Downloads</h2><ul id=\"downloads\">");
	json_array_foreach(arts, i, a) {
		buf_puts(b, "<li><a href=\"/job/");
		h_s(b, job_id);
		buf_puts(b, "/artefact/");
		h_s(b, pj_str(a, "name", ""));
		buf_puts(b, "\" download>");
		h_s(b, pj_str(a, "name", ""));
		buf_printf(b, "</a> (%lld bytes)</li>", jint(a, "size"));
	}
	buf_puts(b, "<li><a href=\"/api/job/");
	h_s(b, job_id);
	buf_puts(b, "\">the job as JSON</a></li></ul><h2>Logs</h2>");
	json_array_foreach(arts, i, a) {
		const char *name = pj_str(a, "name", "");
		size_t nl = strlen(name);
		if (strncmp(name, "logs/", 5) == 0 && nl > 4 && strcmp(name + nl - 4, ".log") == 0)
			show_log(c, b, job_id, a);
	}
	if (strcmp(pj_str(job, "state", ""), "leased") == 0 || strcmp(pj_str(job, "state", ""), "queued") == 0) {
		buf_puts(b, "<div hidden data-live=\"/api/job/");
		h_s(b, job_id);
		buf_puts(b, "\"></div>");
	}
	h_end(b);
	return 0;
}

/* ---- /dist/NAME ---- */
int page_dist(struct page_ctx *c, const char *name, struct buf *b, json_t **json)
{
	json_t *doc = NULL;
	int rc = store_dist_history(c->st, name, 0, &doc, &c->err);
	if (rc < 0)
		return rc;
	*json = doc;
	json_t *jobs = json_object_get(doc, "jobs"), *j;
	size_t i, n = json_array_size(jobs);
	h_begin(b, name, NULL);
	buf_puts(b, "<h1>");
	h_s(b, name);
	buf_printf(b, "</h1><p>%zu jobs, newest first.</p>", n);
	/* the sparkline: oldest left, one square a job, coloured by verdict */
	buf_printf(b, "<svg id=\"sparkline\" class=\"spark\" width=\"%zu\" height=\"12\" role=\"img\">", n * 8 + 1);
	for (size_t k = 0; k < n; k++) {
		j = json_array_get(jobs, n - 1 - k);
		const char *v = pj_str(j, "verdict", NULL);
		buf_printf(b, "<rect class=\"v-%s\" x=\"%zu\" y=\"1\" width=\"7\" height=\"10\"><title>",
			   v ? v : "pending", k * 8);
		h_s(b, pj_str(j, "run_id", ""));
		buf_puts(b, " ");
		h_s(b, v ? v : pj_str(j, "state", ""));
		buf_puts(b, "</title></rect>");
	}
	buf_puts(b, "</svg>");
	_cleanup_json_ json_t *chart = json_pack("{s:s, s:[], s:[], s:[]}", "kind", "history", "labels", "passed", "failed");
	for (size_t k = 0; k < n; k++) {
		j = json_array_get(jobs, n - 1 - k);
		json_array_append(json_object_get(chart, "labels"), json_object_get(j, "created"));
		json_array_append(json_object_get(chart, "passed"), json_object_get(j, "tests_passed"));
		json_array_append(json_object_get(chart, "failed"), json_object_get(j, "tests_failed"));
	}
	buf_puts(b, "<figure class=\"chart\"><canvas id=\"chart-history\" height=\"100\"");
	h_attr_json(b, "data-chart", chart);
	buf_puts(b, "></canvas></figure><table id=\"history\" class=\"grid\"><thead><tr><th>run</th><th>created</th>"
		    "<th>image</th><th>state</th><th>verdict</th><th>class</th><th>duration (s)</th><th>passed</th>"
		    "<th>failed</th><th>job</th></tr></thead><tbody>");
	json_array_foreach(jobs, i, j) {
		static const struct h_col cols[] = {
			{"run_id", H_RUN, false},	 {"created", H_TEXT, false},	  {"suite", H_TEXT, false},
			{"state", H_BADGE, false},	 {"verdict", H_BADGE, false},	  {"failure_class", H_TEXT, false},
			{"duration_s", H_NUM, false},	 {"tests_passed", H_NUM, false}, {"tests_failed", H_NUM, false},
			{"job_id", H_JOB, false},
		};
		buf_puts(b, "<tr>");
		h_cells(b, j, cols, sizeof cols / sizeof *cols);
		buf_puts(b, "</tr>");
	}
	buf_puts(b, "</tbody></table>");
	if (!n)
		buf_puts(b, "<p class=\"empty\">No job of this distribution in the store.</p>");
	h_end(b);
	return 0;
}

/* ---- /workers and /queue ---- */
int page_workers(struct page_ctx *c, struct buf *b, json_t **json)
{
	json_t *doc = NULL;
	_cleanup_json_ json_t *q = NULL;
	int rc = store_workers(c->st, &doc, &c->err);
	if (rc == 0 && (rc = store_queue(c->st, 0, &q, &c->err)) < 0)
		json_decref(doc);
	if (rc < 0)
		return rc;
	*json = doc;
	double now = now_wall();
	size_t i, k;
	json_t *w, *j;
	/* current jobs: the leased ones, by worker */
	json_array_foreach(json_object_get(doc, "workers"), i, w) {
		json_t *cur = json_array();
		json_array_foreach(json_object_get(q, "jobs"), k, j) {
			if (strcmp(pj_str(j, "state", ""), "leased") == 0 &&
			    strcmp(pj_str(j, "worker_id", "-"), pj_str(w, "worker_id", "")) == 0)
				json_array_append_new(cur, json_pack("{s:O, s:O, s:O}", "job_id", json_object_get(j, "job_id"),
								     "dist", json_object_get(j, "dist"), "progress",
								     json_object_get(j, "progress")));
		}
		json_object_set_new(w, "jobs", cur);
		json_object_set_new(w, "heartbeat_age_s", json_real(now - pj_num(w, "last_seen", now)));
	}
	h_begin(b, "Workers", "/workers");
	buf_puts(b, "<h1>Workers</h1><table id=\"workers\" class=\"grid\"><thead><tr><th>worker</th><th>name</th>"
		    "<th>capabilities</th><th>current jobs</th><th>last heard (s ago)</th></tr></thead><tbody>");
	json_array_foreach(json_object_get(doc, "workers"), i, w) {
		buf_puts(b, "<tr><td class=\"id\">");
		h_j(b, json_object_get(w, "worker_id"));
		buf_puts(b, "</td><td>");
		h_j(b, json_object_get(w, "name"));
		buf_puts(b, "</td><td><code class=\"caps\">");
		char *caps = json_dumps(json_object_get(w, "capabilities"), JSON_COMPACT | JSON_ENCODE_ANY);
		h_s(b, caps);
		free(caps);
		buf_puts(b, "</code></td><td>");
		json_array_foreach(json_object_get(w, "jobs"), k, j) {
			h_link(b, "/job/", pj_str(j, "job_id", ""), pj_str(j, "dist", ""));
			const json_t *pg = json_object_get(j, "progress");
			if (json_is_object(pg)) {
				buf_puts(b, " (");
				h_j(b, json_object_get(pg, "task"));
				buf_puts(b, ")");
			}
			buf_puts(b, " ");
		}
		buf_puts(b, "</td><td class=\"n\">");
		h_num(b, pj_num(w, "heartbeat_age_s", 0), 0);
		buf_puts(b, "</td></tr>");
	}
	buf_puts(b, "</tbody></table>");
	if (!json_array_size(json_object_get(doc, "workers")))
		buf_puts(b, "<p class=\"empty\">No worker has said hello: <code>pyti worker --master URL</code>.</p>");
	buf_puts(b, "<div hidden data-live=\"reload\"></div>");
	h_end(b);
	return 0;
}

int page_queue(struct page_ctx *c, struct buf *b, json_t **json)
{
	json_t *doc = NULL;
	int rc = store_queue(c->st, 0, &doc, &c->err);
	if (rc < 0)
		return rc;
	*json = doc;
	size_t i;
	json_t *j;
	h_begin(b, "Queue", "/queue");
	buf_printf(b, "<h1>Queue</h1><p>%zu jobs running or waiting; running first, then by priority.</p>",
		   json_array_size(json_object_get(doc, "jobs")));
	buf_puts(b, "<table id=\"queue\" class=\"grid\"><thead><tr><th>job</th><th>run</th><th>distribution</th>"
		    "<th>image</th><th>state</th><th>priority</th><th>attempt</th><th>worker</th><th>queued at</th>"
		    "</tr></thead><tbody>");
	json_array_foreach(json_object_get(doc, "jobs"), i, j) {
		static const struct h_col cols[] = {
			{"job_id", H_JOB, false}, {"run_id", H_RUN, false},  {"dist", H_DIST, false},
			{"suite", H_TEXT, false}, {"state", H_BADGE, false},
		};
		buf_puts(b, "<tr>");
		h_cells(b, j, cols, sizeof cols / sizeof *cols);
		buf_printf(b, "<td class=\"n\">%lld</td><td class=\"n\">%lld of %lld</td><td>", jint(j, "priority"),
			   jint(j, "attempt"), jint(j, "max_attempts"));
		h_j(b, json_object_get(j, "worker_id"));
		buf_puts(b, "</td><td>");
		h_j(b, json_object_get(j, "created"));
		buf_puts(b, "</td></tr>");
	}
	buf_puts(b, "</tbody></table><div hidden data-live=\"reload\"></div>");
	h_end(b);
	return 0;
}

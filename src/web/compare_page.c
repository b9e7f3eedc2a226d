/* web: /compare/A/B, what changed from run A (the baseline) to run B, as compare_runs() tells it
 * from the two runs' results (the failing tests each job's results name; the terminal's
 * `pyti compare` also reads every JUnit case, so it can tell tests added and removed). */
#include <string.h>

#include "compare.h"
#include "web-int.h"

static void pair_tests(struct buf *b, const json_t *tests, const char *key, const char *label)
{
	const json_t *a = json_object_get(tests, key);
	if (!json_array_size(a))
		return;
	size_t i;
	json_t *t;
	buf_printf(b, "<div class=\"tests\">%s: ", label);
	json_array_foreach(a, i, t) {
		if (i >= 20) {
			buf_printf(b, " … %zu more", json_array_size(a) - 20);
			break;
		}
		buf_puts(b, "<code>");
		h_j(b, json_is_object(t) ? json_object_get(t, "id") : t);
		buf_puts(b, "</code> ");
	}
	buf_puts(b, "</div>");
}

int page_compare(struct page_ctx *c, const char *a_id, const char *b_id, struct buf *b, json_t **json)
{
	_cleanup_json_ json_t *ra = NULL, *rb = NULL;
	int rc = store_results(c->st, a_id, &ra, &c->err);
	if (rc == 0)
		rc = store_results(c->st, b_id, &rb, &c->err);
	if (rc < 0)
		return rc;
	json_t *cmp = compare_runs(ra, rb, NULL);
	if (!cmp)
		return -1;
	*json = cmp;
	char title[96];
	snprintf(title, sizeof title, "Compare %s → %s", a_id, b_id);
	h_begin(b, title, NULL);
	buf_puts(b, "<h1>Compare ");
	h_link(b, "/run/", a_id, NULL);
	buf_puts(b, " → ");
	h_link(b, "/run/", b_id, NULL);
	buf_printf(b, "</h1><p><strong id=\"regressions\">%lld</strong> regressions.</p><dl class=\"facts\" id=\"summary\">",
		   pj_int(cmp, "regressions", 0));
	const char *k;
	json_t *n;
	json_object_foreach(json_object_get(cmp, "summary"), k, n) {
		buf_printf(b, "<dt>");
		h_s(b, k);
		buf_printf(b, "</dt><dd data-summary=\"");
		h_s(b, k);
		buf_printf(b, "\">%lld</dd>", (long long)json_integer_value(n));
	}
	buf_puts(b, "</dl><table id=\"pairs\" class=\"grid\"><thead><tr><th>distribution</th><th>verdict</th>"
		    "<th>in A</th><th>in B</th><th>class</th><th>dependency</th><th>tests</th><th>jobs</th></tr></thead><tbody>");
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(cmp, "pairs"), i, p) {
		static const struct h_col cols[] = {
			{"dist", H_DIST, false},      {"verdict", H_BADGE, false}, {"verdict_a", H_BADGE, false},
			{"verdict_b", H_BADGE, false}, {"class", H_TEXT, false},    {"dependency", H_TEXT, false},
		};
		buf_puts(b, "<tr>");
		h_cells(b, p, cols, sizeof cols / sizeof *cols);
		buf_puts(b, "<td>");
		const json_t *t = json_object_get(p, "tests");
		pair_tests(b, t, "newly_failing", "newly failing");
		pair_tests(b, t, "newly_passing", "newly passing");
		pair_tests(b, t, "added", "added");
		pair_tests(b, t, "removed", "removed");
		pair_tests(b, t, "flaky", "flaky");
		buf_puts(b, "</td><td class=\"id\">");
		if (json_is_string(json_object_get(p, "a")))
			h_link(b, "/job/", pj_str(p, "a", ""), "A");
		buf_puts(b, " ");
		if (json_is_string(json_object_get(p, "b")))
			h_link(b, "/job/", pj_str(p, "b", ""), "B");
		buf_puts(b, "</td></tr>");
	}
	buf_puts(b, "</tbody></table>");
	json_t *groups = json_object_get(cmp, "groups");
	if (json_array_size(groups)) {
		buf_puts(b, "<h2>Failures by signature</h2><table id=\"groups\" class=\"grid\"><thead><tr><th>signature</th>"
			    "<th>kind</th><th>count</th><th>distributions</th></tr></thead><tbody>");
		json_array_foreach(groups, i, p) {
			buf_puts(b, "<tr><td><code>");
			h_j(b, json_object_get(p, "signature"));
			buf_puts(b, "</code></td><td>");
			h_j(b, json_object_get(p, "kind"));
			buf_puts(b, "</td><td class=\"n\">");
			h_j(b, json_object_get(p, "count"));
			buf_puts(b, "</td><td>");
			size_t q;
			json_t *d;
			json_array_foreach(json_object_get(p, "dists"), q, d) {
				h_j(b, d);
				buf_puts(b, " ");
			}
			buf_puts(b, "</td></tr>");
		}
		buf_puts(b, "</tbody></table>");
	}
	json_t *slower = json_object_get(cmp, "slower");
	if (json_array_size(slower)) {
		buf_puts(b, "<h2>Slower or bigger</h2><table id=\"slower\" class=\"grid\"><thead><tr><th>distribution</th>"
			    "<th>task</th><th>metric</th><th>A</th><th>B</th><th>ratio</th></tr></thead><tbody>");
		json_array_foreach(slower, i, p) {
			static const char *const cols[] = {"dist", "task", "metric", "a", "b", "ratio"};
			buf_puts(b, "<tr>");
			for (size_t q = 0; q < 6; q++) {
				buf_puts(b, q >= 3 ? "<td class=\"n\">" : "<td>");
				h_j(b, json_object_get(p, cols[q]));
				buf_puts(b, "</td>");
			}
			buf_puts(b, "</tr>");
		}
		buf_puts(b, "</tbody></table>");
	}
	buf_puts(b, "<p class=\"empty\">Tests added and removed need every JUnit case: <code>pyti compare A B</code> "
		    "reads them, and can confirm a regression by rerunning it (<code>--confirm</code>).</p>");
	h_end(b);
	return 0;
}

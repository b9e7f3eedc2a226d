/* web: internal header shared by html.c (escaping, the page frame), pages.c (one function a page)
 * and web.c (routing, static files, downloads, the rerun form). */
#ifndef PYTI_WEB_INT_H
#define PYTI_WEB_INT_H

#include <jansson.h>

#include "web.h"

/* ---- html.c ---- */
void h_s(struct buf *b, const char *s); /* web_html_text of a C string (NULL: nothing) */
void h_j(struct buf *b, const json_t *v); /* a JSON scalar as text (null: "–") */
void h_num(struct buf *b, double v, int decimals);
void h_begin(struct buf *b, const char *title, const char *nav_current);
void h_end(struct buf *b);
/* <a href="PREFIX/ID">label</a>, with ID percent-encoded and escaped */
void h_link(struct buf *b, const char *prefix, const char *id, const char *label);
/* name="JSON" as an attribute (the charts read it; never executed) */
void h_attr_json(struct buf *b, const char *name, const json_t *j);
/* the verdict/state as a coloured label */
void h_badge(struct buf *b, const char *what);
/* table cells from one JSON row, a column a field */
enum h_kind {
	H_TEXT,	 /* h_j */
	H_NUM,	 /* h_j, right-aligned */
	H_BADGE, /* h_badge */
	H_RUN,	 /* a link to /run/VALUE */
	H_JOB,	 /* a link to /job/VALUE */
	H_DIST,	 /* a link to /dist/VALUE */
};
struct h_col {
	const char *field;
	enum h_kind kind;
	bool live; /* data-f="field": pyti.js updates it from the JSON twin */
};
void h_cells(struct buf *b, const json_t *row, const struct h_col *cols, size_t n);
/* a small stacked bar of verdict counts (inline SVG, no style attribute) */
void h_bar(struct buf *b, const json_t *counts, const json_t *verdicts, long long total);

/* ---- pages.c: each fills *json (the JSON twin) and b (the HTML); 0, or a store error ---- */
struct page_ctx {
	struct store *st;
	const struct web_request *rq;
	struct pyti_err err;
};
const char *page_arg(const struct web_request *rq, const char *key); /* NULL when absent */
int page_runs(struct page_ctx *c, struct buf *b, json_t **json);
int page_run(struct page_ctx *c, const char *id, struct buf *b, json_t **json);
int page_job(struct page_ctx *c, const char *id, struct buf *b, json_t **json);
int page_dist(struct page_ctx *c, const char *name, struct buf *b, json_t **json);
int page_workers(struct page_ctx *c, struct buf *b, json_t **json);
int page_queue(struct page_ctx *c, struct buf *b, json_t **json);
/* compare_page.c */
int page_compare(struct page_ctx *c, const char *a, const char *b_id, struct buf *b, json_t **json);

#endif

/* web: HTML text escaping and the page frame. Everything shown comes through web_html_text. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "web-int.h"

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

static unsigned decode(const unsigned char *p, size_t k)
{
	unsigned c = k == 2 ? p[0] & 0x1fu : k == 3 ? p[0] & 0x0fu : p[0] & 0x07u;
	for (size_t i = 1; i < k; i++)
		c = c << 6 | (p[i] & 0x3fu);
	return c;
}

static bool invisible(unsigned c)
{
	return (c >= 0x80 && c <= 0x9f) || c == 0x200e || c == 0x200f || (c >= 0x202a && c <= 0x202e) ||
	       (c >= 0x2066 && c <= 0x2069) || c == 0xfeff;
}

void web_html_text(struct buf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		size_t run = i;
		/* the plain run: printable ASCII that needs no entity */
		while (run < n && p[run] >= 0x20 && p[run] < 0x7f && p[run] != '&' && p[run] != '<' && p[run] != '>' &&
		       p[run] != '"' && p[run] != '\'')
			run++;
		if (run > i) {
			buf_append(b, s + i, run - i);
			i = run;
			continue;
		}
		unsigned char c = p[i];
		if (c < 0x80) {
			const char *ent = NULL;
			char pic[4];
			switch (c) {
			case '&': ent = "&amp;"; break;
			case '<': ent = "&lt;"; break;
			case '>': ent = "&gt;"; break;
			case '"': ent = "&quot;"; break;
			case '\'': ent = "&#39;"; break;
			case '\n': ent = "\n"; break;
			case '\t': ent = "\t"; break;
			case 0: ent = REPLACEMENT; break;
			case 0x7f: ent = "\xe2\x90\xa1"; break; /* U+2421 */
			default: /* C0: its control picture, U+2400 + c */
				pic[0] = (char)0xe2, pic[1] = (char)0x90, pic[2] = (char)(0x80 + c), pic[3] = 0;
				ent = pic;
				break;
			}
			buf_puts(b, ent);
			i++;
			continue;
		}
		size_t k = utf8_seq(p + i, n - i);
		if (k == 0) {
			buf_puts(b, REPLACEMENT);
			i++;
		} else {
			if (invisible(decode(p + i, k)))
				buf_puts(b, REPLACEMENT);
			else
				buf_append(b, s + i, k);
			i += k;
		}
	}
}

void h_s(struct buf *b, const char *s)
{
	if (s)
		web_html_text(b, s, strlen(s));
}

void h_num(struct buf *b, double v, int decimals)
{
	if (!isfinite(v))
		buf_puts(b, "–");
	else
		buf_printf(b, "%.*f", decimals, v);
}

void h_j(struct buf *b, const json_t *v)
{
	if (json_is_string(v))
		web_html_text(b, json_string_value(v), json_string_length(v));
	else if (json_is_integer(v))
		buf_printf(b, "%lld", (long long)json_integer_value(v));
	else if (json_is_real(v))
		h_num(b, json_real_value(v), 2);
	else if (json_is_boolean(v))
		buf_puts(b, json_is_true(v) ? "yes" : "no");
	else
		buf_puts(b, "–");
}

/* percent-encode a path segment (then it is also safe inside an attribute) */
static void url_seg(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		    *p == '_' || *p == '.' || *p == '~') {
			buf_append(b, p, 1);
		} else {
			char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			buf_append(b, e, 3);
		}
	}
}

void h_link(struct buf *b, const char *prefix, const char *id, const char *label)
{
	buf_printf(b, "<a href=\"%s", prefix);
	url_seg(b, id ? id : "");
	buf_puts(b, "\">");
	h_s(b, label ? label : id);
	buf_puts(b, "</a>");
}

void h_attr_json(struct buf *b, const char *name, const json_t *j)
{
	char *t = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	buf_printf(b, " %s=\"", name);
	if (t)
		web_html_text(b, t, strlen(t));
	buf_puts(b, "\"");
	free(t);
}

void h_badge(struct buf *b, const char *what)
{
	if (!what) {
		buf_puts(b, "–");
		return;
	}
	buf_puts(b, "<span class=\"badge b-");
	url_seg(b, what);
	buf_puts(b, "\">");
	h_s(b, what);
	buf_puts(b, "</span>");
}

void h_cells(struct buf *b, const json_t *row, const struct h_col *cols, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct h_col *c = &cols[i];
		const json_t *v = json_object_get(row, c->field);
		buf_puts(b, c->kind == H_NUM ? "<td class=\"n\"" : c->kind == H_RUN || c->kind == H_JOB ? "<td class=\"id\"" : "<td");
		if (c->live)
			buf_printf(b, " data-f=\"%s\"", c->field);
		buf_puts(b, ">");
		switch (c->kind) {
		case H_TEXT:
		case H_NUM:
			h_j(b, v);
			break;
		case H_BADGE:
			h_badge(b, json_string_value(v));
			break;
		case H_RUN:
		case H_JOB:
		case H_DIST:
			if (json_is_string(v))
				h_link(b, c->kind == H_RUN ? "/run/" : c->kind == H_JOB ? "/job/" : "/dist/", json_string_value(v),
				       NULL);
			else
				buf_puts(b, "–");
			break;
		}
		buf_puts(b, "</td>");
	}
}

void h_bar(struct buf *b, const json_t *counts, const json_t *verdicts, long long total)
{
	static const char *const parts[] = {"passed", "test-failed", "build-failed", "no-tests", "infra"};
	if (total <= 0) {
		buf_puts(b, "<svg class=\"bar\" width=\"120\" height=\"10\"></svg>");
		return;
	}
	buf_puts(b, "<svg class=\"bar\" width=\"120\" height=\"10\" role=\"img\">");
	double x = 0;
	for (size_t i = 0; i <= sizeof parts / sizeof *parts; i++) {
		const char *name = i < sizeof parts / sizeof *parts ? parts[i] : "pending";
		long long n = i < sizeof parts / sizeof *parts
				      ? json_integer_value(json_object_get(verdicts, name))
				      : json_integer_value(json_object_get(counts, "queued")) +
						json_integer_value(json_object_get(counts, "leased"));
		if (n <= 0)
			continue;
		double w = 120.0 * (double)n / (double)total;
		buf_printf(b, "<rect class=\"v-%s\" x=\"%.1f\" y=\"0\" width=\"%.1f\" height=\"10\"><title>%s %lld</title></rect>",
			   name, x, w, name, n);
		x += w;
	}
	buf_puts(b, "</svg>");
}

void h_begin(struct buf *b, const char *title, const char *nav_current)
{
	static const char *const nav[][2] = {{"/", "Runs"}, {"/queue", "Queue"}, {"/workers", "Workers"}};
	buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
		    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>");
	h_s(b, title);
	buf_puts(b, " · pyti</title><link rel=\"stylesheet\" href=\"/static/pyti.css\">"
		    "<script src=\"/static/chart.js\" defer></script><script src=\"/static/pyti.js\" defer></script>"
		    "</head><body><header><a class=\"brand\" href=\"/\">pyti</a><nav>");
	for (size_t i = 0; i < sizeof nav / sizeof *nav; i++)
		buf_printf(b, "<a href=\"%s\"%s>%s</a>", nav[i][0],
			   nav_current && strcmp(nav_current, nav[i][0]) == 0 ? " class=\"here\"" : "", nav[i][1]);
	buf_puts(b, "</nav><form class=\"search\" method=\"get\" action=\"/\"><input type=\"search\" name=\"dist\""
		    " placeholder=\"distribution\" aria-label=\"distribution\"><button>Find</button></form></header>\n<main>");
}

void h_end(struct buf *b)
{
	buf_puts(b, "</main></body></html>\n");
}

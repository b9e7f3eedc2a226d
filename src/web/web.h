/* web: the master's HTML pages and their JSON twins (docs/web.md), rendered from the store.
 *
 * Independent of the HTTP server: the master turns a request into a struct web_request (method,
 * path, query or form arguments, a few headers, what the token proved), and sends back the
 * struct web_response this module fills. Every byte that came from a package (names, messages,
 * logs) goes through one escaper (web_html_text); pages load only the master's own scripts, and
 * the Content-Security-Policy it sends forbids everything else. */
#ifndef PYTI_WEB_H
#define PYTI_WEB_H

#include <stdbool.h>
#include <stddef.h>

#include "core.h"
#include "store.h"

#define WEB_MAX_ARGS 16
#define WEB_FORM_LIMIT 4096 /* bytes of a POSTed form */

struct web_arg {
	const char *key, *value;
};

struct web_request {
	const char *method; /* "GET", "HEAD" or "POST" */
	const char *path;   /* percent-decoded, without the query */
	struct web_arg args[WEB_MAX_ARGS]; /* the query (GET) or the form (POST), first WEB_MAX_ARGS */
	unsigned n_args;
	const char *accept; /* the Accept header, or NULL */
	const char *origin; /* Origin, Host and Sec-Fetch-Site: the cross-site checks of a POST */
	const char *host;
	const char *fetch_site;
	bool user;	    /* the Authorization header proved a user token */
	/* a token typed into a form: true when it is a user token */
	bool (*user_token)(void *ctx, const char *token);
	void *ctx;
};

struct web_response {
	unsigned status;
	char *body; /* malloc'd (or NULL) */
	size_t len;
	const char *ctype;
	char *disposition; /* Content-Disposition, or NULL */
	char *location;	   /* a redirect's target, or NULL */
	bool static_file;  /* may be cached */
	bool queued_work;  /* a rerun queued jobs: wake the workers' long polls */
};

/* The Content-Security-Policy every answer carries. */
extern const char web_csp[];

/* Whether path is served without the store (/static/…). */
bool web_is_static(const char *path);
/* Answer rq; st may be NULL for a static path. Returns 0 (out filled, whatever its status). */
int web_handle(struct store *st, const struct web_request *rq, struct web_response *out);
void web_response_free(struct web_response *r);

/* Parse an application/x-www-form-urlencoded body (at most WEB_FORM_LIMIT bytes) into rq->args;
 * the strings live in *storage (caller frees). -1 when it is not one. */
int web_parse_form(const char *body, size_t n, struct web_request *rq, char **storage);

/* Append untrusted bytes to b as HTML text: & < > " ' as entities, invalid UTF-8 and NUL as U+FFFD,
 * C0 controls but \n and \t as their visible pictures (ESC as U+241B), DEL as U+2421, C1 and the
 * bidi overrides as U+FFFD. The output is valid UTF-8 and holds no markup. */
void web_html_text(struct buf *b, const char *s, size_t n);

#endif

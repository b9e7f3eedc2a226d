/* web: the one form the UI posts (application/x-www-form-urlencoded), read into a request's
 * arguments. Bounded (WEB_FORM_LIMIT bytes, WEB_MAX_ARGS arguments kept) and fuzzed (fuzz_web). */
#include <stdlib.h>
#include <string.h>

#include "web-int.h"

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* decode in place; -1 on a bad escape */
static int form_decode(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (*p == '+') {
			*o++ = ' ';
		} else if (*p == '%') {
			int h = p[1] ? hexval(p[1]) : -1, l = h >= 0 && p[2] ? hexval(p[2]) : -1;
			if (h < 0 || l < 0 || (h == 0 && l == 0))
				return -1;
			*o++ = (char)(h << 4 | l);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return 0;
}

int web_parse_form(const char *body, size_t n, struct web_request *rq, char **storage)
{
	*storage = NULL;
	rq->n_args = 0;
	if (n > WEB_FORM_LIMIT || memchr(body, '\0', n))
		return -1;
	char *s = xmalloc(n + 1);
	memcpy(s, body, n);
	s[n] = '\0';
	*storage = s;
	char *save = NULL;
	for (char *pair = strtok_r(s, "&", &save); pair; pair = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(pair, '=');
		if (eq)
			*eq = '\0';
		if (form_decode(pair) < 0 || (eq && form_decode(eq + 1) < 0))
			return -1;
		if (rq->n_args < WEB_MAX_ARGS)
			rq->args[rq->n_args++] = (struct web_arg){pair, eq ? eq + 1 : ""};
	}
	return 0;
}

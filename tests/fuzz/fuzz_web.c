/* libFuzzer: what the web UI does with bytes it did not write. The first byte picks: the HTML text
 * escaper (every log line, test name and message a page shows: the output must be valid UTF-8 with
 * no markup character outside an entity), or the form reader (bounded, NUL-free strings). */
#include <stdint.h>
#include <string.h>

#include "web.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_html(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		if (c == '<' || c == '>' || c == '"' || c == '\'' || c == 0 || (c < 0x20 && c != '\n' && c != '\t') ||
		    c == 0x7f)
			__builtin_trap();
		if (c == '&') {
			static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"};
			bool ok = false;
			for (size_t e = 0; e < 5; e++)
				ok |= strncmp(s + i, ents[e], strlen(ents[e])) == 0;
			if (!ok)
				__builtin_trap();
		}
		size_t k = utf8_seq((const unsigned char *)s + i, n - i);
		if (k == 0)
			__builtin_trap();
		i += k;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	const char *in = (const char *)data + 1;
	size_t n = size - 1;
	if (data[0] & 1) {
		struct web_request rq = {0};
		char *storage = NULL;
		int rc = web_parse_form(in, n, &rq, &storage);
		if (rc == 0) {
			if (rq.n_args > WEB_MAX_ARGS)
				__builtin_trap();
			for (unsigned i = 0; i < rq.n_args; i++)
				if (strlen(rq.args[i].key) > n || strlen(rq.args[i].value) > n)
					__builtin_trap();
		}
		free(storage);
		return 0;
	}
	struct buf b = BUF_INIT(0);
	web_html_text(&b, in, n);
	check_html(b.data ? b.data : "", b.len);
	if (b.len > n * 8 + 8)
		__builtin_trap();
	buf_free(&b);
	return 0;
}

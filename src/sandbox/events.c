/* sandbox: the "@pyti {…}" event lines the agent prints on its channel (ns: its stdout; vm: the
 * serial console), cut out of a byte stream whatever else a hostile guest prints around them. Both
 * backends' stream readers use it; it depends on nothing else of the module. */
#include <string.h>

#include "sandbox.h"

size_t sandbox_parse_events(const char *data, size_t n, void (*on_event)(void *, json_t *), void *arg)
{
	static const char tag[] = "@pyti ";
	size_t used = 0;
	for (;;) {
		const char *nl = memchr(data + used, '\n', n - used);
		if (!nl)
			break;
		const char *line = data + used;
		size_t len = (size_t)(nl - line);
		used += len + 1;
		if (len && line[len - 1] == '\r') /* serial consoles add CR */
			len--;
		/* The tag may follow console noise on the same line (kernel messages interleave). */
		const char *at = memmem(line, len, tag, sizeof tag - 1);
		if (!at || !on_event)
			continue;
		const char *js = at + sizeof tag - 1;
		json_error_t je;
		json_t *ev = json_loadb(js, len - (size_t)(js - line), 0, &je);
		if (ev && json_is_object(ev))
			on_event(arg, ev);
		if (ev)
			json_decref(ev);
	}
	return used;
}

void sandbox_feed_events(struct buf *pending, size_t line_max, const char *data, size_t n, bool eof,
			 void (*on_event)(void *, json_t *), void *arg)
{
	size_t off = 0;
	do {
		size_t room = line_max - 1 - pending->len, k = n - off;
		if (k > room)
			k = room;
		buf_append(pending, data + off, k);
		off += k;
		if (eof && off == n && pending->len && pending->data[pending->len - 1] != '\n')
			buf_append(pending, "\n", 1);
		size_t used = sandbox_parse_events(pending->data ? pending->data : "", pending->len, on_event, arg);
		if (used) {
			memmove(pending->data, pending->data + used, pending->len - used);
			pending->len -= used;
			pending->data[pending->len] = '\0';
		}
		if (pending->len >= line_max - 1) /* an endless line is console noise, never an event */
			buf_reset(pending);
	} while (off < n);
}

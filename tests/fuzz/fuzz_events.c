/* libFuzzer: the agent's event lines as the host reads them from a pipe or a VM's serial console
 * (sandbox_feed_events + sandbox_parse_events), whatever a hostile guest prints. Every event handed
 * on is a JSON object, and how the bytes are cut into reads never changes which events come out.
 * The same events then go through the host's verdict (sandbox_verdict_*), which must judge any
 * stream and any results.json without crashing or leaking, and never accept a file it was not told
 * the digest of. */
#include <stdint.h>
#include <string.h>

#include "sandbox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
	size_t n;
	char *dump; /* the events, serialised, one after another */
	struct sandbox_verdict *v;
};

static void on_event(void *arg, json_t *ev)
{
	struct seen *s = arg;
	if (!json_is_object(ev))
		__builtin_trap();
	char *d = json_dumps(ev, JSON_SORT_KEYS | JSON_COMPACT);
	char *both = xasprintf("%s%s\n", s->dump ? s->dump : "", d ? d : "?");
	free(d);
	free(s->dump);
	s->dump = both;
	s->n++;
	if (s->v)
		sandbox_verdict_event(s->v, ev);
}

static void feed(const uint8_t *data, size_t size, size_t chunk, struct seen *s)
{
	struct buf pending = BUF_INIT(0);
	for (size_t off = 0; off < size; off += chunk) {
		size_t k = size - off < chunk ? size - off : chunk;
		sandbox_feed_events(&pending, 256, (const char *)data + off, k, false, on_event, s);
	}
	sandbox_feed_events(&pending, 256, "", 0, true, on_event, s);
	if (pending.len >= 256)
		__builtin_trap();
	buf_free(&pending);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t chunk = (size_t)data[0] % 17 + 1; /* a short line cap (256) and small reads: many drops */
	struct sandbox_verdict v;
	sandbox_verdict_init(&v);
	struct seen whole = {.v = &v}, cut = {0};
	feed(data + 1, size - 1, size, &whole);
	feed(data + 1, size - 1, chunk, &cut);
	/* The input itself as a results.json: believed only when its digest was announced. */
	char d[65];
	sha256_hex(data + 1, size - 1, d);
	for (int final = 0; final < 2; final++) {
		struct pyti_err err = {0};
		int r = sandbox_verdict_check(&v, (const char *)data + 1, size - 1, final, NULL, &err);
		if (r == 0 && strcmp(v.digest, d) != 0)
			__builtin_trap();
		if (r < 0 && err.fclass != PYTI_FC_TAMPERED)
			__builtin_trap();
	}
	sandbox_verdict_free(&v);
	if (whole.n != cut.n || strcmp(whole.dump ? whole.dump : "", cut.dump ? cut.dump : "") != 0)
		__builtin_trap();
	free(whole.dump);
	free(cut.dump);
	return 0;
}

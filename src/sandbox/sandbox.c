/* sandbox: backend dispatch and the event-line parser both backends share. */
#include <string.h>

#include "sandbox.h"
#if PYTI_HAVE_NS
#include "sandbox-ns.h"
#endif
#if PYTI_HAVE_VM
#include "sandbox-vm.h"
#endif

int sandbox_run(const struct sandbox_spec *spec, struct sandbox_result *res, struct pyti_err *err)
{
	*res = (struct sandbox_result){.agent_status = -1};
	const char *b = spec->backend ? spec->backend : "ns";
#if PYTI_HAVE_NS
	if (strcmp(b, "ns") == 0)
		return sandbox_ns_run(spec, res, err);
#endif
#if PYTI_HAVE_VM
	if (strcmp(b, "vm") == 0)
		return sandbox_vm_run(spec, res, err);
#endif
	return pyti_err_usage(err, "unknown or unavailable sandbox backend '%s' (this build has:%s%s)", b,
			      PYTI_HAVE_NS ? " ns" : "", PYTI_HAVE_VM ? " vm" : "");
}

int sandbox_vm_standby_helper(const char *warm_dir, const char *uri)
{
#if PYTI_HAVE_VM
	return sandbox_vm_standby_main(warm_dir, uri);
#else
	(void)warm_dir;
	(void)uri;
	return PYTI_EXIT_USAGE;
#endif
}

void sandbox_vm_forget_image(const char *state_dir, const char *suite)
{
#if PYTI_HAVE_VM
	sandbox_vm_forget_image_main(state_dir, suite);
#else
	(void)state_dir;
	(void)suite;
#endif
}

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

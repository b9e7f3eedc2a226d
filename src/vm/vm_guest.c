/* vm: running guests. A transient domain plus its serial console (a libvirt stream) and its
 * lifecycle events, driven by libvirt's default event loop on the caller's thread. */
#include <errno.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "vm-int.h"

#define VM_TAIL 16384

struct vm_guest {
	struct vm_conn *c;
	virDomainPtr dom;
	virStreamPtr st;
	int lifecycle_id; /* -1 when not registered */
	int timer;        /* -1 when not registered */
	bool stopped, stream_open;
	vm_console_fn fn;
	void *arg;
	char *name;
	char tail[VM_TAIL + 1];
	size_t tail_len;
};

static int vm_lifecycle_cb(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
	(void)conn;
	(void)dom;
	(void)detail;
	struct vm_guest *g = opaque;
	if (event == VIR_DOMAIN_EVENT_STOPPED || event == VIR_DOMAIN_EVENT_CRASHED)
		g->stopped = true;
	return 0;
}

static void vm_tail_add(struct vm_guest *g, const char *p, size_t n)
{
	if (n >= VM_TAIL) {
		memcpy(g->tail, p + n - VM_TAIL, VM_TAIL);
		g->tail_len = VM_TAIL;
	} else {
		if (g->tail_len + n > VM_TAIL) {
			size_t drop = g->tail_len + n - VM_TAIL;
			memmove(g->tail, g->tail + drop, g->tail_len - drop);
			g->tail_len -= drop;
		}
		memcpy(g->tail + g->tail_len, p, n);
		g->tail_len += n;
	}
	g->tail[g->tail_len] = '\0';
}

static void vm_console_close(struct vm_guest *g)
{
	if (!g->st)
		return;
	if (g->stream_open) {
		virStreamEventRemoveCallback(g->st);
		virStreamAbort(g->st);
		g->stream_open = false;
	}
	virStreamFree(g->st);
	g->st = NULL;
}

static void vm_stream_cb(virStreamPtr st, int events, void *opaque)
{
	struct vm_guest *g = opaque;
	char data[16384];
	bool dead = (events & (VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP)) != 0;
	for (;;) {
		int n = virStreamRecv(st, data, sizeof data);
		if (n == -2)
			break;
		if (n <= 0) {
			dead = true;
			break;
		}
		vm_tail_add(g, data, (size_t)n);
		if (g->fn)
			g->fn(g->arg, data, (size_t)n);
	}
	if (dead && g->stream_open) {
		/* The domain is gone (or the console broke): stop watching; vm_console_close frees. */
		virStreamEventRemoveCallback(st);
		virStreamAbort(st);
		g->stream_open = false;
	}
}

static void vm_timer_cb(int timer, void *opaque)
{
	(void)timer;
	(void)opaque; /* only there so that virEventRunDefaultImpl returns to check deadlines */
}

static int vm_guest_attach(struct vm_guest *g, struct pyti_err *err)
{
	g->lifecycle_id = virConnectDomainEventRegisterAny(g->c->lc, g->dom, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
							   VIR_DOMAIN_EVENT_CALLBACK(vm_lifecycle_cb), g, NULL);
	if (g->lifecycle_id < 0)
		log_debug("vm: no lifecycle events on %s, polling instead", g->c->uri);
	g->timer = virEventAddTimeout(100, vm_timer_cb, NULL, NULL);
	g->st = virStreamNew(g->c->lc, VIR_STREAM_NONBLOCK);
	if (!g->st)
		return vm_lverr(err, "console stream of %s", g->name);
	if (virDomainOpenConsole(g->dom, NULL, g->st, VIR_DOMAIN_CONSOLE_FORCE) < 0)
		return vm_lverr(err, "open the console of %s", g->name);
	if (virStreamEventAddCallback(g->st,
				      VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP,
				      vm_stream_cb, g, NULL) < 0)
		return vm_lverr(err, "watch the console of %s", g->name);
	g->stream_open = true;
	return 0;
}

static void vm_guest_drop(struct vm_guest *g, bool destroy);

static struct vm_guest *vm_guest_new(struct vm_conn *c, vm_console_fn fn, void *arg)
{
	struct vm_guest *g = xcalloc(1, sizeof *g);
	g->c = c;
	g->fn = fn;
	g->arg = arg;
	g->lifecycle_id = -1;
	g->timer = -1;
	return g;
}

int vm_guest_create(struct vm_conn *c, const char *xml, vm_console_fn fn, void *arg, struct vm_guest **out,
		    struct pyti_err *err)
{
	*out = NULL;
	struct vm_guest *g = vm_guest_new(c, fn, arg);
	g->dom = virDomainCreateXML(c->lc, xml, VIR_DOMAIN_START_PAUSED);
	if (!g->dom) {
		vm_guest_free(g);
		return vm_lverr(err, "create domain");
	}
	g->name = xstrdup(virDomainGetName(g->dom));
	if (vm_guest_attach(g, err) < 0 || (virDomainResume(g->dom) < 0 && vm_lverr(err, "resume %s", g->name))) {
		vm_guest_free(g);
		return -1;
	}
	*out = g;
	return 0;
}

static char *vm_xml_name(const char *xml)
{
	const char *a = strstr(xml, "<name>"), *b = a ? strstr(a, "</name>") : NULL;
	if (!a || !b)
		return NULL;
	a += 6;
	char *n = xmalloc((size_t)(b - a) + 1);
	memcpy(n, a, (size_t)(b - a));
	n[b - a] = '\0';
	return n;
}

int vm_save_image_xml(struct vm_conn *c, const char *save_path, char **out, struct pyti_err *err)
{
	*out = virDomainSaveImageGetXMLDesc(c->lc, save_path, 0);
	if (!*out)
		return vm_lverr(err, "read the domain XML of %s", save_path);
	return 0;
}

/* A domain by name with console and lifecycle events attached; on failure the domain is destroyed
 * (destroy_on_fail: one we just made) or left as it is. */
static int vm_guest_open(struct vm_conn *c, const char *name, bool destroy_on_fail, vm_console_fn fn, void *arg,
			 struct vm_guest **out, struct pyti_err *err)
{
	*out = NULL;
	struct vm_guest *g = vm_guest_new(c, fn, arg);
	g->name = xstrdup(name);
	g->dom = virDomainLookupByName(c->lc, name);
	if (!g->dom || vm_guest_attach(g, err) < 0) {
		if (!g->dom)
			vm_lverr(err, "look up domain %s", name);
		vm_guest_drop(g, destroy_on_fail);
		return -1;
	}
	*out = g;
	return 0;
}

int vm_guest_restore(struct vm_conn *c, const char *save_path, const char *xml, unsigned flags, vm_console_fn fn,
		     void *arg, struct vm_guest **out, struct pyti_err *err)
{
	*out = NULL;
	_cleanup_free_ char *own = NULL;
	if (!xml) {
		if (vm_save_image_xml(c, save_path, &own, err) < 0)
			return -1;
		xml = own;
	}
	_cleanup_free_ char *name = vm_xml_name(xml);
	if (!name)
		return pyti_err_set(err, 0, "no <name> in the domain XML of %s", save_path);
	/* Restored running, the guest was saved waiting for input, so nothing is printed before the
	 * console is attached; paused, the caller may prepare the guest's disks before it resumes. */
	unsigned lf = flags & VM_RESTORE_PAUSED ? VIR_DOMAIN_SAVE_PAUSED : VIR_DOMAIN_SAVE_RUNNING;
	if (virDomainRestoreFlags(c->lc, save_path, xml, lf) < 0)
		return vm_lverr(err, "restore %s", save_path);
	return vm_guest_open(c, name, true, fn, arg, out, err);
}

int vm_guest_adopt(struct vm_conn *c, const char *name, vm_console_fn fn, void *arg, struct vm_guest **out,
		   struct pyti_err *err)
{
	return vm_guest_open(c, name, false, fn, arg, out, err);
}

int vm_guest_resume(struct vm_guest *g, struct pyti_err *err)
{
	if (virDomainResume(g->dom) < 0)
		return vm_lverr(err, "resume %s", g->name);
	return 0;
}

int vm_guest_suspend(struct vm_guest *g, struct pyti_err *err)
{
	if (virDomainSuspend(g->dom) < 0)
		return vm_lverr(err, "pause %s", g->name);
	return 0;
}

int vm_guest_paused(struct vm_guest *g)
{
	int st = 0, reason = 0;
	if (virDomainGetState(g->dom, &st, &reason, 0) < 0)
		return -1;
	return st == VIR_DOMAIN_PAUSED;
}

int vm_guest_wait(struct vm_guest *g, const bool *stop, double deadline, struct pyti_err *err)
{
	double next_poll = now_mono() + 1.0;
	for (;;) {
		if (stop && *stop)
			return 0;
		if (g->stopped)
			return 1;
		double now = now_mono();
		if (deadline > 0 && now >= deadline)
			return 2;
		/* Backstop for drivers without lifecycle events (and for a missed one). */
		if (now >= next_poll || g->lifecycle_id < 0) {
			if (virDomainIsActive(g->dom) == 0)
				g->stopped = true;
			next_poll = now + 1.0;
			if (g->stopped)
				continue;
		}
		if (virEventRunDefaultImpl() < 0)
			return vm_lverr(err, "libvirt event loop");
	}
}

int vm_guest_send(struct vm_guest *g, const char *data, size_t n, struct pyti_err *err)
{
	double end = now_mono() + 10;
	while (n > 0) {
		if (!g->stream_open)
			return pyti_err_set(err, 0, "console of %s is closed", g->name);
		int k = virStreamSend(g->st, data, n);
		if (k == -2) {
			if (now_mono() > end)
				return pyti_err_set(err, ETIMEDOUT, "write to the console of %s", g->name);
			virEventRunDefaultImpl();
			continue;
		}
		if (k < 0)
			return vm_lverr(err, "write to the console of %s", g->name);
		data += k;
		n -= (size_t)k;
	}
	return 0;
}

int vm_guest_save(struct vm_guest *g, const char *path, struct pyti_err *err)
{
	vm_console_close(g);
	if (virDomainSaveFlags(g->dom, path, NULL, VIR_DOMAIN_SAVE_RUNNING) < 0)
		return vm_lverr(err, "save %s to %s", g->name, path);
	g->stopped = true;
	return 0;
}

const char *vm_guest_console_tail(const struct vm_guest *g) { return g->tail; }
const char *vm_guest_name(const struct vm_guest *g) { return g->name; }

static void vm_guest_drop(struct vm_guest *g, bool destroy)
{
	if (!g)
		return;
	vm_console_close(g);
	if (g->lifecycle_id >= 0)
		virConnectDomainEventDeregisterAny(g->c->lc, g->lifecycle_id);
	if (g->timer >= 0)
		virEventRemoveTimeout(g->timer);
	if (g->dom) {
		if (destroy && virDomainIsActive(g->dom) == 1)
			virDomainDestroy(g->dom);
		virDomainFree(g->dom);
	}
	free(g->name);
	free(g);
}

void vm_guest_free(struct vm_guest *g) { vm_guest_drop(g, true); }
void vm_guest_release(struct vm_guest *g) { vm_guest_drop(g, false); }

/* vm: libvirt connections, domain XML and the lifecycle commands behind `pyti vm`. */
#include <errno.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "vm-int.h"

const char vm_default_cmdline[] = "console=ttyS0 panic=-1 quiet loglevel=3";

/* libvirt prints every error to stderr by default; we report them ourselves, with context. */
static void vm_silent_error(void *arg, virErrorPtr e)
{
	(void)arg;
	(void)e;
}

int vm_lverr(struct pyti_err *err, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	const char *m = virGetLastErrorMessage();
	return pyti_err_set(err, 0, "%s: %s", what, m ? m : "unknown libvirt error");
}

static int vm_event_loop_ready(struct pyti_err *err)
{
	static bool done;
	if (done)
		return 0;
	virSetErrorFunc(NULL, vm_silent_error);
	if (virEventRegisterDefaultImpl() < 0)
		return vm_lverr(err, "libvirt event loop");
	done = true;
	return 0;
}

static struct vm_host vm_host_cfg;

void vm_set_host(const struct vm_host *h)
{
	vm_host_cfg = *h;
}

int vm_connect(const char *uri, struct vm_conn **out, struct pyti_err *err)
{
	*out = NULL;
	if (!uri || !*uri)
		uri = vm_host_cfg.uri;
	if (!uri || !*uri)
		uri = VM_DEFAULT_URI;
	if (vm_event_loop_ready(err) < 0)
		return -1;
	virConnectPtr lc = virConnectOpen(uri);
	if (!lc) {
		vm_lverr(err, "cannot connect to %s", uri);
		if (strcmp(uri, "qemu:///system") == 0)
			pyti_err_prefix(err, "is libvirtd running? (scripts/libvirtd-start starts it without systemd)");
		err->status = PYTI_EXIT_INFRA;
		return -1;
	}
	struct vm_conn *c = xcalloc(1, sizeof *c);
	c->lc = lc;
	c->uri = xstrdup(uri);
	*out = c;
	return 0;
}

void vm_disconnect(struct vm_conn *c)
{
	if (!c)
		return;
	virConnectClose(c->lc);
	free(c->uri);
	free(c);
}

const char *vm_conn_uri(const struct vm_conn *c) { return c->uri; }

static bool vm_cpu_has_virt(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/cpuinfo", "r");
	char line[4096];
	if (!f)
		return false;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "flags", 5) == 0)
			return strstr(line, " vmx") || strstr(line, " svm");
	return false;
}

const char *vm_domain_type(const char *uri)
{
	if (uri && strncmp(uri, "test:", 5) == 0)
		return "test";
	if (uri && strncmp(uri, "vbox:", 5) == 0)
		return "vbox";
	const char *a = vm_host_cfg.accel;
	if (a && strcmp(a, "kvm") == 0)
		return "kvm";
	if (a && strcmp(a, "tcg") == 0)
		return "qemu";
	return access("/dev/kvm", R_OK | W_OK) == 0 && vm_cpu_has_virt() ? "kvm" : "qemu";
}

/* ---- XML ---- */

void vm_xml_escape(struct buf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': buf_puts(b, "&lt;"); break;
		case '>': buf_puts(b, "&gt;"); break;
		case '&': buf_puts(b, "&amp;"); break;
		case '\'': buf_puts(b, "&apos;"); break;
		case '"': buf_puts(b, "&quot;"); break;
		default: buf_append(b, s, 1);
		}
	}
}

static void vm_xml_elem(struct buf *b, const char *indent, const char *tag, const char *val)
{
	buf_printf(b, "%s<%s>", indent, tag);
	vm_xml_escape(b, val);
	buf_printf(b, "</%s>\n", tag);
}

static void vm_xml_disk(struct buf *b, const char *format, const char *path, const char *dev)
{
	buf_printf(b, "    <disk type='file' device='disk'>\n      <driver name='qemu' type='%s'/>\n"
		      "      <source file='",
		   format);
	vm_xml_escape(b, path);
	buf_printf(b, "'/>\n      <target dev='%s' bus='virtio'/>\n    </disk>\n", dev);
}

int vm_domain_xml(const struct vm_def *d, const char *uri, char **out, struct pyti_err *err)
{
	*out = NULL;
	if (!d->name || strncmp(d->name, VM_NAME_PREFIX, strlen(VM_NAME_PREFIX)) != 0)
		return pyti_err_usage(err, "domain name '%s' must start with " VM_NAME_PREFIX, d->name ? d->name : "");
	if (!d->kernel || !d->system_disk)
		return pyti_err_usage(err, "domain %s: a kernel and a system disk are required", d->name);
	const char *type = d->type ? d->type : vm_domain_type(uri);
	bool qemu = strcmp(type, "kvm") == 0 || strcmp(type, "qemu") == 0;
	_cleanup_buf_ struct buf b = BUF_INIT(0);
	buf_printf(&b, "<domain type='%s'>\n", type);
	vm_xml_elem(&b, "  ", "name", d->name);
	buf_printf(&b, "  <memory unit='MiB'>%u</memory>\n  <vcpu>%u</vcpu>\n", d->memory_mib ? d->memory_mib : 1024,
		   d->vcpus ? d->vcpus : 1);
	buf_puts(&b, "  <os>\n    <type arch='x86_64'>hvm</type>\n");
	vm_xml_elem(&b, "    ", "kernel", d->kernel);
	if (d->initrd)
		vm_xml_elem(&b, "    ", "initrd", d->initrd);
	vm_xml_elem(&b, "    ", "cmdline", d->cmdline ? d->cmdline : vm_default_cmdline);
	buf_puts(&b, "  </os>\n");
	/* Without ACPI libvirt adds -no-acpi and a guest power-off never ends the domain. */
	buf_puts(&b, "  <features><acpi/></features>\n");
	if (strcmp(type, "kvm") == 0)
		buf_puts(&b, "  <cpu mode='host-passthrough' migratable='off'/>\n");
	else if (qemu) /* TCG: "<model>max</model>" is refused by libvirt 9 ("Unknown CPU model max") */
		buf_puts(&b, "  <cpu mode='maximum' migratable='off'/>\n");
	buf_puts(&b, "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>destroy</on_reboot>\n"
		     "  <on_crash>destroy</on_crash>\n  <devices>\n");
	vm_xml_disk(&b, "qcow2", d->system_disk, "vda");
	if (d->io_disk)
		vm_xml_disk(&b, "raw", d->io_disk, "vdb");
	buf_puts(&b, "    <serial type='pty'><target port='0'/></serial>\n"
		     "    <console type='pty'><target type='serial' port='0'/></console>\n");
	if (qemu)
		buf_puts(&b, "    <controller type='usb' model='none'/>\n    <memballoon model='none'/>\n");
	buf_puts(&b, "  </devices>\n</domain>\n");
	*out = buf_steal(&b);
	return 0;
}

int vm_xml_replace_file(char **xml, const char *old_path, const char *new_path)
{
	_cleanup_buf_ struct buf o = BUF_INIT(0), n = BUF_INIT(0), r = BUF_INIT(0);
	buf_puts(&o, "file='");
	vm_xml_escape(&o, old_path);
	buf_puts(&o, "'");
	buf_puts(&n, "file='");
	vm_xml_escape(&n, new_path);
	buf_puts(&n, "'");
	int count = 0;
	const char *p = *xml, *hit;
	while ((hit = strstr(p, o.data))) {
		buf_append(&r, p, (size_t)(hit - p));
		buf_append(&r, n.data, n.len);
		p = hit + o.len;
		count++;
	}
	if (!count)
		return 0;
	buf_puts(&r, p);
	free(*xml);
	*xml = buf_steal(&r);
	return count;
}

/* ---- lifecycle ---- */

static virDomainPtr vm_lookup(struct vm_conn *c, const char *name, struct pyti_err *err)
{
	virDomainPtr d = virDomainLookupByName(c->lc, name);
	if (!d) {
		virErrorPtr e = virGetLastError();
		if (e && e->code == VIR_ERR_NO_DOMAIN)
			return pyti_err_usage(err, "no domain named '%s' on %s", name, c->uri), NULL;
		return vm_lverr(err, "look up domain %s", name), NULL;
	}
	return d;
}

static void vm_domain_freep(virDomainPtr *d)
{
	if (*d)
		virDomainFree(*d);
}
#define _cleanup_dom_ _cleanup_(vm_domain_freep)

int vm_define(struct vm_conn *c, const struct vm_def *d, struct pyti_err *err)
{
	_cleanup_free_ char *xml = NULL;
	if (vm_domain_xml(d, c->uri, &xml, err) < 0)
		return -1;
	_cleanup_dom_ virDomainPtr dom = virDomainDefineXML(c->lc, xml);
	if (!dom)
		return vm_lverr(err, "define domain %s", d->name);
	return 0;
}

int vm_start(struct vm_conn *c, const char *name, struct pyti_err *err)
{
	_cleanup_dom_ virDomainPtr dom = vm_lookup(c, name, err);
	if (!dom)
		return -1;
	if (virDomainIsActive(dom) == 1)
		return 0;
	if (virDomainCreate(dom) < 0)
		return vm_lverr(err, "start domain %s", name);
	return 0;
}

int vm_stop(struct vm_conn *c, const char *name, double timeout_s, struct pyti_err *err)
{
	_cleanup_dom_ virDomainPtr dom = vm_lookup(c, name, err);
	if (!dom)
		return -1;
	if (virDomainIsActive(dom) != 1)
		return 0;
	/* A guest without an ACPI handler (pyti's agent is PID 1 and has none) ignores this; the
	 * timeout then ends in destroy. Polling is fine here: this is the interactive command. */
	if (virDomainShutdown(dom) == 0) {
		double end = now_mono() + timeout_s;
		while (now_mono() < end) {
			if (virDomainIsActive(dom) != 1)
				return 0;
			usleep(100 * 1000);
		}
	}
	if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0)
		return vm_lverr(err, "destroy domain %s", name);
	return 1;
}

int vm_snapshot(struct vm_conn *c, const char *name, const char *snap, struct pyti_err *err)
{
	_cleanup_dom_ virDomainPtr dom = vm_lookup(c, name, err);
	if (!dom)
		return -1;
	_cleanup_buf_ struct buf x = BUF_INIT(0);
	buf_puts(&x, "<domainsnapshot><name>");
	vm_xml_escape(&x, snap);
	buf_puts(&x, "</name><description>pyti</description></domainsnapshot>");
	virDomainSnapshotPtr s = virDomainSnapshotCreateXML(dom, x.data, 0);
	if (!s)
		return vm_lverr(err, "snapshot %s of %s", snap, name);
	virDomainSnapshotFree(s);
	return 0;
}

int vm_rollback(struct vm_conn *c, const char *name, const char *snap, struct pyti_err *err)
{
	_cleanup_dom_ virDomainPtr dom = vm_lookup(c, name, err);
	if (!dom)
		return -1;
	virDomainSnapshotPtr s = virDomainSnapshotLookupByName(dom, snap, 0);
	if (!s)
		return vm_lverr(err, "snapshot %s of %s", snap, name);
	int r = virDomainRevertToSnapshot(s, 0);
	virDomainSnapshotFree(s);
	if (r < 0)
		return vm_lverr(err, "roll %s back to %s", name, snap);
	return 0;
}

static int vm_destroy_dom(virDomainPtr dom, const char *name, struct pyti_err *err)
{
	if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0)
		return vm_lverr(err, "destroy domain %s", name);
	if (virDomainIsPersistent(dom) == 1) {
		/* The test driver knows no NVRAM/managed-save flags; retry with plain snapshot metadata. */
		if (virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
							VIR_DOMAIN_UNDEFINE_MANAGED_SAVE) < 0 &&
		    virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA) < 0)
			return vm_lverr(err, "undefine domain %s", name);
	}
	return 0;
}

int vm_destroy(struct vm_conn *c, const char *name, struct pyti_err *err)
{
	_cleanup_dom_ virDomainPtr dom = vm_lookup(c, name, err);
	if (!dom)
		return -1;
	return vm_destroy_dom(dom, name, err);
}

static const char *vm_state_name(int st)
{
	switch (st) {
	case VIR_DOMAIN_RUNNING: return "running";
	case VIR_DOMAIN_BLOCKED: return "blocked";
	case VIR_DOMAIN_PAUSED: return "paused";
	case VIR_DOMAIN_SHUTDOWN: return "shutting down";
	case VIR_DOMAIN_SHUTOFF: return "shut off";
	case VIR_DOMAIN_CRASHED: return "crashed";
	case VIR_DOMAIN_PMSUSPENDED: return "suspended";
	default: return "unknown";
	}
}

/* All pyti- domains; *n of them in *out (free each with virDomainFree, then the array). */
static int vm_all(struct vm_conn *c, virDomainPtr **out, int *n, struct pyti_err *err)
{
	virDomainPtr *doms = NULL;
	int k = virConnectListAllDomains(c->lc, &doms, 0);
	if (k < 0)
		return vm_lverr(err, "list domains on %s", c->uri);
	int m = 0;
	for (int i = 0; i < k; i++) {
		const char *nm = virDomainGetName(doms[i]);
		if (nm && strncmp(nm, VM_NAME_PREFIX, strlen(VM_NAME_PREFIX)) == 0)
			doms[m++] = doms[i];
		else
			virDomainFree(doms[i]);
	}
	*out = doms;
	*n = m;
	return 0;
}

int vm_list(struct vm_conn *c, json_t **out, struct pyti_err *err)
{
	virDomainPtr *doms;
	int n;
	*out = NULL;
	if (vm_all(c, &doms, &n, err) < 0)
		return -1;
	json_t *arr = json_array();
	for (int i = 0; i < n; i++) {
		int st = 0, reason = 0;
		virDomainGetState(doms[i], &st, &reason, 0);
		json_t *o = json_object();
		json_object_set_new(o, "name", json_string(virDomainGetName(doms[i])));
		json_object_set_new(o, "state", json_string(vm_state_name(st)));
		json_object_set_new(o, "persistent", json_boolean(virDomainIsPersistent(doms[i]) == 1));
		unsigned id = virDomainGetID(doms[i]);
		json_object_set_new(o, "id", id == (unsigned)-1 ? json_null() : json_integer(id));
		json_t *snaps = json_array();
		virDomainSnapshotPtr *ss = NULL;
		int ns = virDomainListAllSnapshots(doms[i], &ss, 0);
		for (int j = 0; j < ns; j++) {
			json_array_append_new(snaps, json_string(virDomainSnapshotGetName(ss[j])));
			virDomainSnapshotFree(ss[j]);
		}
		free(ss);
		json_object_set_new(o, "snapshots", snaps);
		json_array_append_new(arr, o);
		virDomainFree(doms[i]);
	}
	free(doms);
	*out = arr;
	return 0;
}

int vm_cleanup_stale(struct vm_conn *c, bool (*is_stale)(void *arg, const char *name), void *arg,
		     struct pyti_err *err)
{
	virDomainPtr *doms;
	int n, cleaned = 0, r = 0;
	if (vm_all(c, &doms, &n, err) < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		const char *nm = virDomainGetName(doms[i]);
		if (r == 0 && is_stale(arg, nm)) {
			log_info("vm: cleaning stale domain %s", nm);
			if (vm_destroy_dom(doms[i], nm, err) < 0)
				r = -1;
			else
				cleaned++;
		}
		virDomainFree(doms[i]);
	}
	free(doms);
	return r < 0 ? -1 : cleaned;
}

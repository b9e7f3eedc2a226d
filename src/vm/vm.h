/* vm: VManager. libvirt domains for pyti (define, start, stop, snapshot, rollback, list, destroy),
 * the guest console channel the agent's event lines travel on, and the VM artefacts built from an
 * image's rootfs (tiny initrd with the agent inside, qcow2 system-disk base).
 *
 * Every domain pyti creates is named "pyti-…" so that stale ones (left by a crash) can be found.
 * URIs: qemu:///system (default; needs libvirtd, see scripts/libvirtd-start), qemu:///session,
 * test:///default (unit tests: an in-process fake that never runs a guest), vbox:///session where
 * VirtualBox exists (as far as its driver allows: no direct kernel boot there). */
#ifndef PYTI_VM_H
#define PYTI_VM_H

#include "core.h"

#define VM_DEFAULT_URI "qemu:///system"
#define VM_NAME_PREFIX "pyti-"

/* ---- connections ---- */
struct vm_conn; /* a libvirt connection; the default event loop is registered before it opens */
/* The host's settings, read from the environment once by the CLI (man/pyti.1, ENVIRONMENT), not
 * here: the default URI ($PYTI_VM_URI) and the accelerator ($PYTI_VM_ACCEL, kvm|tcg). NULL: unset. */
struct vm_host {
	const char *uri;
	const char *accel;
};
void vm_set_host(const struct vm_host *h);

/* uri NULL = the host's (vm_set_host), else VM_DEFAULT_URI. */
int vm_connect(const char *uri, struct vm_conn **out, struct pyti_err *err);
void vm_disconnect(struct vm_conn *c); /* NULL ok */
const char *vm_conn_uri(const struct vm_conn *c);

/* "kvm" when KVM is usable, else "qemu" (TCG); "test" for test:// URIs. KVM counts as usable when
 * /dev/kvm exists and the CPU shows vmx/svm; the host's accel (vm_set_host: kvm|tcg) overrides (some nested hosts
 * have a /dev/kvm whose guests hang). */
const char *vm_domain_type(const char *uri);

/* ---- domain definitions ---- */
struct vm_def {
	const char *name;        /* full domain name, "pyti-…" */
	const char *type;        /* NULL = vm_domain_type(uri) */
	unsigned memory_mib;     /* 0 = 1024 */
	unsigned vcpus;          /* 0 = 1 */
	const char *kernel, *initrd, *cmdline; /* direct kernel boot; cmdline NULL = vm_default_cmdline */
	const char *system_disk; /* qcow2, vda */
	const char *io_disk;     /* raw, vdb; NULL = none */
};
extern const char vm_default_cmdline[];
/* Domain XML: no network, no usb/graphics/sound/balloon, ACPI on (guest power-off ends the domain),
 * serial console on a pty, on_poweroff/reboot/crash = destroy. Caller frees *out. */
int vm_domain_xml(const struct vm_def *d, const char *uri, char **out, struct pyti_err *err);

/* ---- the pyti vm commands (persistent domains; names are full "pyti-…" names) ---- */
int vm_define(struct vm_conn *c, const struct vm_def *d, struct pyti_err *err);
int vm_start(struct vm_conn *c, const char *name, struct pyti_err *err);
/* Graceful shutdown, then destroy once timeout_s has passed without the domain stopping.
 * Returns 1 when it had to destroy, 0 when the guest stopped by itself (or was not running). */
int vm_stop(struct vm_conn *c, const char *name, double timeout_s, struct pyti_err *err);
/* A snapshot of the running domain with its RAM state (internal, in the qcow2), or of the disks
 * only when the domain is shut off. */
int vm_snapshot(struct vm_conn *c, const char *name, const char *snap, struct pyti_err *err);
int vm_rollback(struct vm_conn *c, const char *name, const char *snap, struct pyti_err *err);
/* Destroy if running, remove snapshot metadata, undefine. A missing domain is an error (usage). */
int vm_destroy(struct vm_conn *c, const char *name, struct pyti_err *err);
/* pyti's domains: a JSON array of {"name","state","persistent","id","snapshots":[…]}. */
int vm_list(struct vm_conn *c, json_t **out, struct pyti_err *err);
/* Destroy (and undefine) the pyti- domains for which is_stale(name) says true; returns how many. */
int vm_cleanup_stale(struct vm_conn *c, bool (*is_stale)(void *arg, const char *name), void *arg,
		     struct pyti_err *err);

/* ---- running guests with their console (the vm sandbox backend) ---- */
struct vm_guest;
/* Console bytes as they arrive (raw, may split lines). */
typedef void (*vm_console_fn)(void *arg, const char *data, size_t n);

/* Create a transient domain from xml: started paused, console attached and lifecycle events
 * watched, then resumed, so that no console output is lost. */
int vm_guest_create(struct vm_conn *c, const char *xml, vm_console_fn fn, void *arg, struct vm_guest **out,
		    struct pyti_err *err);
/* Restore a saved domain (vm_guest_save) with an alternate XML (NULL = the saved one), running, or
 * paused with VM_RESTORE_PAUSED (then vm_guest_resume it). */
#define VM_RESTORE_PAUSED 1u
int vm_guest_restore(struct vm_conn *c, const char *save_path, const char *xml, unsigned flags, vm_console_fn fn,
		     void *arg, struct vm_guest **out, struct pyti_err *err);
/* A running or paused domain someone else started (a standby): console and events attached. */
int vm_guest_adopt(struct vm_conn *c, const char *name, vm_console_fn fn, void *arg, struct vm_guest **out,
		   struct pyti_err *err);
int vm_guest_resume(struct vm_guest *g, struct pyti_err *err);
int vm_guest_suspend(struct vm_guest *g, struct pyti_err *err);
/* 1 paused, 0 not, -1 unknown (gone). */
int vm_guest_paused(struct vm_guest *g);
int vm_guest_send(struct vm_guest *g, const char *data, size_t n, struct pyti_err *err);
/* Run libvirt's event loop until *stop is true (set from the console callback), the domain has
 * stopped, or now_mono() >= deadline (0 = none). Returns 0, 1 (stopped) or 2 (deadline). */
int vm_guest_wait(struct vm_guest *g, const bool *stop, double deadline, struct pyti_err *err);
/* Save the RAM state to path; the domain is gone afterwards. */
int vm_guest_save(struct vm_guest *g, const char *path, struct pyti_err *err);
/* The last bytes the console printed (for error messages: kernel panics and the like). */
const char *vm_guest_console_tail(const struct vm_guest *g);
const char *vm_guest_name(const struct vm_guest *g);
/* Destroy the domain if it still runs, release everything. NULL ok. */
void vm_guest_free(struct vm_guest *g);
/* Release our handles but leave the domain as it is (a standby for a later job). NULL ok. */
void vm_guest_release(struct vm_guest *g);

/* The domain XML stored in a save image; caller frees. */
int vm_save_image_xml(struct vm_conn *c, const char *save_path, char **out, struct pyti_err *err);
/* Replace every file='OLD' (attribute value, XML-escaped) by NEW in xml; returns how many. */
int vm_xml_replace_file(char **xml, const char *old_path, const char *new_path);

/* ---- VM artefacts of an image ---- */
struct vm_image {
	char *kernel; /* <image>/vmlinuz */
	char *initrd; /* <cache>/initrd-<key>.img: <image>/initrd.img + the agent */
	char *base;   /* <image>/base.qcow2 */
	char key[65]; /* changes whenever kernel, initrd (agent) or base change */
};
/* Build what is missing, idempotently: <image_dir>/initrd.img (busybox + the virtio/ext4 modules the
 * kernel lacks + /init), <image_dir>/base.qcow2 (rootfs as ext4), and <cache_dir>/initrd-<h>.img
 * with the agent (keyed by its sha256). Half-built files are never left under their real names. */
int vm_image_prepare(const char *image_dir, const char *agent_path, const char *cache_dir, struct vm_image *out,
		     struct pyti_err *err);
void vm_image_free(struct vm_image *img); /* members only; NULL ok */

#endif

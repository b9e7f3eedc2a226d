/* Internal to the sandbox module: the libvirt/QEMU backend. sandbox_vm.c is the job,
 * sandbox_vm_standby.c the standby helper; both use sandbox_vm_warm.c, the warm snapshots and
 * their standby record, which uses neither. */
#ifndef PYTI_SANDBOX_VM_INT_H
#define PYTI_SANDBOX_VM_INT_H

#include "sandbox.h"
#include "vm.h"

#define SVM_LINE_MAX (1u << 20) /* an event line longer than this is console noise */

/* Boot (spec->cold, or no warm snapshot yet: it is made on the first warm run) or take the image's
 * warm snapshot (the standby restored after the previous warm job, or restored now), with
 * spec->io_dir as the I/O disk (vdb); feed the agent's console events to spec->on_event; copy the
 * disk's /out back to io_dir/out; destroy the domain and its files; after a warm job, start the
 * helper (`pyti __vm-standby`) that restores the next standby, and return without waiting for it.
 * Same contract as sandbox_run(). The guest's memory and CPUs, the hang watchdog (a guest whose
 * console stays silent spec->vm_hang_s while a job runs is hung: class Timeout) and whether a
 * standby is left behind come from the spec (sandbox_run fills them from the CLI's environment);
 * the vm module itself reads PYTI_VM_URI (when spec->vm_uri is NULL) and PYTI_VM_ACCEL. */
int sandbox_vm_run(const struct sandbox_spec *spec, struct sandbox_result *res, struct pyti_err *err);

/* ---- sandbox_vm_warm.c ---- */

/* The files of one warm snapshot (STATE/vm/<suite>/warm-<key>, see the layout above) and its
 * standby's domain name. */
struct svm_warm {
	char *dir, *name, *lock, *uri, *frozen, *io0, *sav, *dx, *ok, *tmpl, *sb_sys, *sb_io, *owner;
};
/* dir = STATE/vm/<suite>/warm-<key>; the domain is pyti-warm-<key>. */
void svm_warm_init(struct svm_warm *w, const char *dir);
void svm_warm_free(struct svm_warm *w);

/* The standby record's states (WARM_DIR/standby, docs/contracts.md), parsed and printed here only. */
enum svm_state { SVM_NONE, SVM_PREP, SVM_WARMING, SVM_READY, SVM_FAILED, SVM_JOB };
/* Write the standby record: state, pid and (when > 0) seconds. */
void svm_owner_set(const struct svm_warm *w, enum svm_state st, pid_t pid, double secs);
/* The standby's owner record: its state (SVM_NONE when there is none or it is not one of ours),
 * pid, seconds (or 0). */
enum svm_state svm_owner_get(const struct svm_warm *w, int *pid, double *secs);

/* qemu-img: a qcow2 overlay on backing. */
int svm_qcow2_overlay(const char *backing, const char *path, struct pyti_err *err);
/* A fresh empty overlay on backing, copied from the template tmpl (made once). */
int svm_overlay_fast(const char *backing, const char *tmpl, const char *path, struct pyti_err *err);
/* Restore the warm snapshot paused as the standby (we hold the warm lock). */
int svm_standby_restore(struct vm_conn *c, const struct svm_warm *w, vm_console_fn fn, void *arg,
			struct vm_guest **out, struct pyti_err *err);
/* The warm lock is busy: wait for a helper restoring the standby (true: we hold it now). */
bool svm_wait_for_prep(int lock_fd, const struct svm_warm *w);
/* A standby of a warm snapshot that is going away. */
void svm_standby_destroy(struct vm_conn *c, const char *name);
/* Warm snapshots under cache other than keep, for uri, that nobody uses. */
void svm_prune_warm(struct vm_conn *c, const char *cache, const char *keep, const char *uri);

#endif

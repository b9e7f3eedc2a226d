/* Internal to the sandbox module: the libvirt/QEMU backend (sandbox_vm.c). */
#ifndef PYTI_SANDBOX_VM_H
#define PYTI_SANDBOX_VM_H

#include "sandbox.h"

/* Boot (spec->cold, or no warm snapshot yet: it is made on the first warm run) or take the image's
 * warm snapshot (the standby restored after the previous warm job, or restored now), with
 * spec->io_dir as the I/O disk (vdb); feed the agent's console events to spec->on_event; copy the
 * disk's /out back to io_dir/out; destroy the domain and its files; after a warm job, start the
 * helper (`pyti __vm-standby`) that restores the next standby, and return without waiting for it.
 * Same contract as sandbox_run(). Environment: PYTI_VM_URI (when spec->vm_uri is NULL),
 * PYTI_VM_MEMORY_MIB (default 1024), PYTI_VM_VCPUS (default 1), PYTI_VM_ACCEL (kvm|tcg),
 * PYTI_VM_STANDBY=0 (restore inline each time; leave no paused guest behind), PYTI_VM_HANG_S (a
 * guest whose console stays silent this long while a job runs is hung: class Timeout; default 120). */
int sandbox_vm_run(const struct sandbox_spec *spec, struct sandbox_result *res, struct pyti_err *err);

#endif

/* Internal to the sandbox module: the Linux-namespace backend (sandbox_ns.c). */
#ifndef PYTI_SANDBOX_NS_H
#define PYTI_SANDBOX_NS_H

#include "sandbox.h"

/* Run spec->agent_path as PID 1 of fresh user/mount/pid/ipc/uts/cgroup (+net unless spec->network)
 * namespaces on the read-only spec->image_dir/rootfs, with spec->io_dir at /io. Same contract as
 * sandbox_run(). */
int sandbox_ns_run(const struct sandbox_spec *spec, struct sandbox_result *res, struct pyti_err *err);

#endif

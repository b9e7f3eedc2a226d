/* Internal to the sandbox module: the Linux-namespace backend (sandbox_ns.c, the parent's side;
 * sandbox_ns_child.c, the child's; sandbox_ns_net.c, the fetch sandbox's network). */
#ifndef PYTI_SANDBOX_NS_INT_H
#define PYTI_SANDBOX_NS_INT_H

#include <sys/types.h>

#include "sandbox.h"

#define NS_NET_HELPER "slirp4netns"

/* The uid tasks run as inside the sandbox when a second uid is mapped; the agent's
 * AGENT_TASK_UID, which the VM guest uses too. */
#define NS_TASK_UID 1000u

/* What the parent hands the child across clone. */
struct ns_ctx {
	const struct sandbox_spec *spec;
	char rootfs[4096];
	bool setgroups_allowed;
	bool task_uid; /* a second uid is mapped for the tasks (root callers) */
	int sync_fd, err_fd, out_fd, errout_fd;
};

/* The child after clone (sandbox_ns_child.c): set the sandbox up and exec the agent; a set-up
 * error is written to c->err_fd. Never returns. */
__attribute__((noreturn)) void ns_child(const struct ns_ctx *c);
/* Whether ns_child installs a seccomp filter on this architecture. */
bool ns_seccomp_available(void);

/* Run spec->agent_path as PID 1 of fresh user/mount/pid/ipc/uts/cgroup (+net unless spec->network)
 * namespaces on the read-only spec->image_dir/rootfs, with spec->io_dir at /io. Same contract as
 * sandbox_run(). */
int sandbox_ns_run(const struct sandbox_spec *spec, struct sandbox_result *res, struct pyti_err *err);

/* The fetch sandbox's network: its own network namespace (the host's loopback listeners, abstract
 * unix sockets and /proc/net stay out of reach) joined to the outside by slirp4netns, a user-mode
 * TCP/IP stack running on the host side that opens ordinary host sockets for the sandbox's
 * connections. --disable-host-loopback refuses its gateway's mapping to the host's 127.0.0.1;
 * there are no port forwards; its own sandbox and seccomp filter limit what a bug in it exposes.
 * What the host itself could reach (the index, a proxy, listeners on the host's other addresses)
 * the fetch can reach too: that is the point of it. Not pasta (Debian's passt): bookworm's
 * defaults forward every port bound on the host's loopback into the namespace (-T/-U auto) and
 * map the gateway to the host (--no-map-gw), five switches to turn off where slirp4netns has one,
 * and it copies the host's addresses and routes into the sandbox. */
struct ns_net {
	pid_t pid;  /* the slirp4netns process, or 0 */
	int exit_w; /* closing it tells slirp4netns to exit */
};

/* Start slirp4netns (helper, or NULL: found in PATH) for the network namespace of child (the
 * sandbox, still waiting on its sync pipe) and wait until it is up; an error says what is missing.
 * ns_net_stop ends it (net->pid 0: nothing to do). */
int ns_net_start(pid_t child, const char *helper, struct ns_net *net, struct pyti_err *err);
void ns_net_stop(struct ns_net *net);

#endif

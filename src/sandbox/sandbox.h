/* sandbox: run the guest agent on a job's I/O directory in a throwaway sandbox, and throw it away.
 * Backends: "ns" (Linux namespaces, sandbox_ns.c) and "vm" (libvirt/QEMU, sandbox_vm.c).
 * Both run the same agent on the same job.json and leave the same out/ in the I/O directory. */
#ifndef PYTI_SANDBOX_H
#define PYTI_SANDBOX_H

#include "core.h"

/* Every tmpfs of a sandbox is bounded (unbounded, each could take half of the host's RAM); what
 * a task writes there also counts against its memory limit (the agent's watchdog). */
#define SANDBOX_TMPFS_DEFAULT (1ULL << 30)

/* The base environment of what runs in a sandbox, in one place: the agent's own (the ns backend's
 * execve), a fetch's pip and a job's tasks (job.json's "env") start from it. */
#define SANDBOX_ENV_PATH "/usr/local/bin:/usr/bin:/bin"
#define SANDBOX_ENV_HOME "/tmp/home"
#define SANDBOX_ENV_LANG "C.UTF-8"
/* Sets PATH (path, NULL = SANDBOX_ENV_PATH), HOME and LANG in the JSON object env, in that order. */
void sandbox_env_base(json_t *env, const char *path);

struct sandbox_spec {
	const char *backend;   /* "ns" or "vm" */
	const char *image_dir; /* $STATE/images/<suite>: rootfs/, manifest.json, vmlinuz, initrd.img, base.qcow2 */
	const char *io_dir;    /* host directory with job.json, wheels/, src/; the agent writes out/ there */
	const char *agent_path;/* host path of the static pyti-agent binary */
	const char *state_dir;
	bool network;          /* fetch sandbox only: a network to the outside, through slirp4netns (ns only) */
	const char *const *ro_binds; /* NULL-terminated host paths made visible read-only at the same path */
	double timeout_s;      /* backstop for the whole sandbox, above the tasks' own timeouts; 0 = none */
	uint64_t tmpfs_bytes;  /* ns: size of each tmpfs (/tmp /var/tmp /dev/shm /run); 0 = SANDBOX_TMPFS_DEFAULT.
				* vm: the agent takes it from job.json's "tmpfs" */
	bool cold;             /* vm: boot instead of restoring the warm snapshot */
	const char *vm_uri;    /* vm: libvirt URI (NULL = default) */
	/* The host's settings (0/NULL: what sandbox_set_host() was given, else the default). */
	const char *net_helper;  /* ns, network: the slirp4netns binary (NULL: found in PATH) */
	unsigned vm_memory_mib;  /* vm: guest memory (1024) */
	unsigned vm_vcpus;       /* vm: guest CPUs (1) */
	double vm_hang_s;        /* vm: console silence while a job runs that means a hung guest (120) */
	bool vm_no_standby;      /* vm: restore inline each time, leave no paused guest behind */
	/* The tasks of job.json as the host wrote it. When set, out/results.json is believed only as
	 * far as the agent itself vouched for it on its event channel (sandbox_verdict_check): a file
	 * a task forged or changed is refused with class Tampered. NULL: no check (tests' stand-ins). */
	const json_t *job_tasks;
	/* Called with each "@pyti {…}" event the agent prints (borrowed reference); may be NULL. */
	void (*on_event)(void *arg, json_t *event);
	void *arg;
};

/* How a vm job got its guest, measured where it happens (results.json's "vm", docs/contracts.md):
 * what benchmarks and tests read instead of log lines. A time not measured is -1. */
struct sandbox_vm_times {
	const char *reset;  /* "cold", "standby" (adopted), "restore" (restored now); NULL: not vm */
	double ready_s;     /* → the agent ready for "go" */
	double restore_s;   /* the snapshot's restore (standby: done by the helper after the last job) */
	double first_task_s;/* "go" → the first task_end */
	double warm_boot_s, warm_save_s; /* this job built the warm snapshot: its boot, its save */
};

struct sandbox_result {
	double wall_s;           /* sandbox start → sandbox gone */
	double setup_s;          /* sandbox start → agent running (ns) / agent ready (vm) */
	enum pyti_fclass fclass; /* Crash/Timeout when the sandbox itself died or hung */
	int agent_status;        /* agent exit status (ns), or -1 */
	struct sandbox_vm_times vm;
};
/* res->vm as results.json's "vm" object (new reference), or NULL for a job that was not vm. */
json_t *sandbox_vm_times_json(const struct sandbox_result *res);

/* Settings from the host's environment, read once by the CLI (PYTI_SLIRP4NETNS, PYTI_VM_MEMORY_MIB,
 * PYTI_VM_VCPUS, PYTI_VM_HANG_S, PYTI_VM_STANDBY=0; see man/pyti.1) and handed to every sandbox
 * whose spec leaves the field 0/NULL. The strings are borrowed: they must outlive every run. */
struct sandbox_host {
	const char *net_helper;
	unsigned vm_memory_mib, vm_vcpus;
	double vm_hang_s;
	bool vm_no_standby;
};
void sandbox_set_host(const struct sandbox_host *h);

/* Runs the agent to completion. Returns 0 when the agent ran and wrote out/results.json; -1 with
 * err (and res->fclass where it applies) otherwise. Nothing of the sandbox is left behind. */
int sandbox_run(const struct sandbox_spec *spec, struct sandbox_result *res, struct pyti_err *err);

/* What the host saw on the agent's own event channel (ns: its stdout, a pipe no task holds; vm:
 * the serial console, which tasks cannot open when they run as another uid than the agent), to judge
 * the out/results.json it finds by. The agent announces every results.json it writes (partial
 * and final) as {"event":"results","sha256":HEX,"status":…,"tasks":N}. */
struct sandbox_verdict {
	char digest[65];   /* of the last results.json the agent announced; "" = none yet */
	char status[16];   /* that announcement's job status: running, passed or failed */
	json_t *task_ends; /* the task_end events seen, in order (owned) */
	char job_end[16];  /* job_end's status; "" = not seen */
	int job_starts;
	char *odd;         /* the first event an honest agent would not send, or NULL */
};
void sandbox_verdict_init(struct sandbox_verdict *v);
void sandbox_verdict_free(struct sandbox_verdict *v);
void sandbox_verdict_event(struct sandbox_verdict *v, const json_t *ev);
/* Judge the bytes of out/results.json. final: the backend says the job ran to its end; the file must
 * then be the agent's final one (digest, job_end, and its tasks those of job_tasks (may be NULL)
 * and of the task_end events, in order). Not final (a crash or timeout): it must be the last
 * results.json the agent announced. 0 when it is; -1 with class Tampered otherwise. */
int sandbox_verdict_check(const struct sandbox_verdict *v, const char *data, size_t len, bool final,
			  const json_t *job_tasks, struct pyti_err *err);

/* The body of the hidden command `pyti __vm-standby WARM_DIR URI`: the vm backend's helper process
 * that restores the next job's standby guest (sandbox_vm.c starts it; nothing else should). Returns
 * an exit status. */
int sandbox_vm_standby_main(const char *warm_dir, const char *uri);

/* After `pyti image rm SUITE`: destroy the vm backend's standby guests of that image (each on the
 * libvirt URI it was made for) and remove its VM artefacts (STATE/vm/SUITE: initrds, warm
 * snapshots). Best effort: what cannot be done (libvirtd down, a job running) is warned about. */
void sandbox_vm_forget_image(const char *state_dir, const char *suite);

/* events.c: call a callback for each complete "@pyti " line in data[0..n); returns bytes consumed.
 * Shared by both backends' stream readers. */
size_t sandbox_parse_events(const char *data, size_t n, void (*on_event)(void *, json_t *), void *arg);
/* A stream reader's side of it: append data[0..n) to pending (bytes of an unfinished line), hand
 * every complete event line on, keep the rest. A line reaching line_max bytes is dropped; at eof
 * a last line without its newline counts. */
void sandbox_feed_events(struct buf *pending, size_t line_max, const char *data, size_t n, bool eof,
			 void (*on_event)(void *, json_t *), void *arg);

#endif

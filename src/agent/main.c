/* pyti-agent: the guest agent's command line.
 *
 *   pyti-agent [--io DIR] [--confine [--task-uid UID]]  run DIR/job.json (default /io), then exit
 *   pyti-agent --vm [--io-dev DEV] [--console DEV]      the VM guest's PID 1 (see vm.c)
 *
 * Exit status (not --vm): 0 when results.json was written (task failures are in it), 2 for a
 * missing or malformed job.json, 3 when the agent itself could not do its work.
 * Works as PID 1 of a pid namespace (ns backend) and as an ordinary process (it then becomes a
 * child subreaper, so that daemons started by tasks still come back to it to be killed and reaped).
 * --confine runs tasks without capabilities, --task-uid also as that uid (the ns backend passes
 * them; --vm implies both with uid AGENT_TASK_UID).
 * The agent makes itself non-dumpable first thing: a task running as the same uid (an unprivileged
 * caller's ns sandbox maps one uid only) can then neither ptrace it nor open its /proc/PID/mem, which
 * needs CAP_SYS_PTRACE that no task has.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "agent.h"

static void usage(FILE *f)
{
	fputs("usage: pyti-agent [--io DIR] [--confine [--task-uid UID]]\n"
	      "       pyti-agent --vm [--io-dev DEV] [--console DEV]\n"
	      "Runs the tasks of DIR/job.json and writes DIR/out/results.json (see docs/contracts.md).\n",
	      f);
}

int main(int argc, char **argv)
{
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	const char *io = "/io", *io_dev = "/dev/vdb", *console = "/dev/ttyS0";
	bool vm = false, confine = false, task_ids = false;
	unsigned long task_uid = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool has = i + 1 < argc;
		if (strcmp(a, "--io") == 0 && has)
			io = argv[++i];
		else if (strcmp(a, "--io-dev") == 0 && has)
			io_dev = argv[++i];
		else if (strcmp(a, "--console") == 0 && has)
			console = argv[++i];
		else if (strcmp(a, "--vm") == 0)
			vm = true;
		else if (strcmp(a, "--confine") == 0)
			confine = true;
		else if (strcmp(a, "--task-uid") == 0 && has) {
			char *end;
			task_uid = strtoul(argv[++i], &end, 10);
			if (*end || !*argv[i] || task_uid == 0 || task_uid >= 0xffffffffUL) {
				fprintf(stderr, "pyti-agent: --task-uid wants a uid other than 0: %s\n", argv[i]);
				return PYTI_EXIT_USAGE;
			}
			task_ids = true;
		}
		else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "pyti-agent: unknown or incomplete argument: %s\n", a);
			usage(stderr);
			return PYTI_EXIT_USAGE;
		}
	}
	/* Tasks run beside us: as our uid (ns) they could otherwise open /proc/1/fd/1 — the event
	 * channel the host trusts — or /proc/1/mem. Not dumpable, those need a capability tasks lack. */
	prctl(PR_SET_DUMPABLE, 0);
	if (vm) {
		/* It mounts file systems and powers the machine off: never on a host by mistake. */
		if (getpid() != 1) {
			fputs("pyti-agent: --vm is the guest's init; it must run as PID 1\n", stderr);
			return PYTI_EXIT_USAGE;
		}
		agent_vm_main(io_dev, console);
	}

	signal(SIGPIPE, SIG_IGN); /* a host that went away must not kill us halfway through results */
	bool pid1 = getpid() == 1;
	if (!pid1)
		prctl(PR_SET_CHILD_SUBREAPER, 1);
	struct agent_opts opts = {.io_dir = io, .event_fd = 1, .emit_job_end = true, .pid1 = pid1,
				  .confine = confine || task_ids, .task_ids = task_ids, .task_uid = (uid_t)task_uid};
	struct pyti_err err = {0};
	bool passed;
	if (agent_run_job(&opts, &passed, &err) < 0) {
		fprintf(stderr, "pyti-agent: %s\n", pyti_err_str(&err));
		return err.status ? (int)err.status : PYTI_EXIT_INFRA;
	}
	return 0;
}

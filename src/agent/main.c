/* pyti-agent: the guest agent's command line.
 *
 *   pyti-agent [--io DIR]                               run DIR/job.json (default /io), then exit
 *   pyti-agent --vm [--io-dev DEV] [--console DEV]      the VM guest's PID 1 (see vm.c)
 *
 * Exit status (not --vm): 0 when results.json was written (task failures are in it), 2 for a
 * missing or malformed job.json, 3 when the agent itself could not do its work.
 * Works as PID 1 of a pid namespace (ns backend) and as an ordinary process (it then becomes a
 * child subreaper, so that daemons started by tasks still come back to it to be killed and reaped).
 */
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>

#include "agent.h"

static void usage(FILE *f)
{
	fputs("usage: pyti-agent [--io DIR]\n"
	      "       pyti-agent --vm [--io-dev DEV] [--console DEV]\n"
	      "Runs the tasks of DIR/job.json and writes DIR/out/results.json (see docs/contracts.md).\n",
	      f);
}

int main(int argc, char **argv)
{
	const char *io = "/io", *io_dev = "/dev/vdb", *console = "/dev/ttyS0";
	bool vm = false;
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
	struct agent_opts opts = {.io_dir = io, .event_fd = 1, .emit_job_end = true, .pid1 = pid1};
	struct pyti_err err = {0};
	bool passed;
	if (agent_run_job(&opts, &passed, &err) < 0) {
		fprintf(stderr, "pyti-agent: %s\n", pyti_err_str(&err));
		return err.status ? (int)err.status : PYTI_EXIT_INFRA;
	}
	return 0;
}

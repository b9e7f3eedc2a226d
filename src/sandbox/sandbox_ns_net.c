/* The ns backend's network for a fetch: slirp4netns on the host side of the sandbox's own network
 * namespace (why slirp4netns, and what it can reach: sandbox-ns-int.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox-ns-int.h"

#define NS_NET_START_S 10.0 /* slirp4netns is up in milliseconds; this is for a wedged host */


static char *ns_net_find(const char *own)
{
	/* PYTI_SLIRP4NETNS names it outright (a build of one's own; the tests name a missing one) */
	if (own && *own)
		return access(own, X_OK) == 0 ? xstrdup(own) : NULL;
	const char *path = getenv("PATH");
	_cleanup_free_ char *dirs = xstrdup(path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
	/* a sudo or cron PATH may be short: the usual places are tried after it */
	_cleanup_free_ char *all = xasprintf("%s:/usr/bin:/bin:/usr/local/bin", dirs);
	char *save = NULL;
	for (char *d = strtok_r(all, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		if (*d != '/')
			continue;
		char *exe = xasprintf("%s/%s", d, NS_NET_HELPER);
		if (access(exe, X_OK) == 0)
			return exe;
		free(exe);
	}
	return NULL;
}

int ns_net_start(pid_t child, const char *helper, struct ns_net *net, struct pyti_err *err)
{
	_cleanup_free_ char *exe = ns_net_find(helper);
	if (!exe)
		return pyti_err_set(err, 0, "the fetch sandbox's network needs %s%s%s (install the Debian package "
					    "slirp4netns); pyti does not fall back to the host's network",
				    NS_NET_HELPER, helper && *helper ? ", not found at $PYTI_SLIRP4NETNS=" : "",
				    helper && *helper ? helper : "");
	if (access("/dev/net/tun", R_OK | W_OK) < 0)
		return pyti_err_set(err, errno, "the fetch sandbox's network (%s) needs /dev/net/tun, which this user "
					    "cannot open (Debian makes it mode 0666; `chmod 0666 /dev/net/tun`, or run "
					    "as root)", NS_NET_HELPER);
	int ready[2], ex[2], eo[2];
	if (pipe2(ready, O_CLOEXEC) < 0)
		return pyti_err_set(err, errno, "pipe");
	if (pipe2(ex, O_CLOEXEC) < 0) {
		int e = errno;
		close(ready[0]), close(ready[1]);
		return pyti_err_set(err, e, "pipe");
	}
	if (pipe2(eo, O_CLOEXEC) < 0) {
		int e = errno;
		close(ready[0]), close(ready[1]), close(ex[0]), close(ex[1]);
		return pyti_err_set(err, e, "pipe");
	}
	char pidarg[32], userns[64];
	snprintf(pidarg, sizeof pidarg, "%d", (int)child);
	/* An ordinary user reaches the sandbox's network namespace only through its user namespace
	 * (which the user owns); root may enter the network namespace directly. */
	snprintf(userns, sizeof userns, "--userns-path=/proc/%d/ns/user", (int)child);
	bool join_userns = geteuid() != 0;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		/* copies above 4 first: a source already at 3 or 4 would be clobbered, or keep its
		 * close-on-exec flag through a dup2 onto itself */
		int r = fcntl(ready[1], F_DUPFD, 10), x = fcntl(ex[0], F_DUPFD, 10), e = fcntl(eo[1], F_DUPFD, 10);
		int null = open("/dev/null", O_RDWR);
		if (r < 0 || x < 0 || e < 0 || null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(e, 2) < 0 ||
		    dup2(r, 3) < 0 || dup2(x, 4) < 0)
			_exit(127);
		close_range(5, ~0U, 0);
		setsid(); /* no terminal of the user's */
		char *argv[] = {exe, "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox",
				"--enable-seccomp", "--ready-fd=3", "--exit-fd=4", pidarg, "tap0", NULL, NULL};
		if (join_userns) {
			memmove(argv + 2, argv + 1, (ARRAY_SIZE(argv) - 3) * sizeof *argv);
			argv[1] = userns;
		}
		execv(exe, argv);
		_exit(127);
	}
	int fork_errno = errno;
	close(ready[1]);
	close(ex[0]);
	close(eo[1]);
	if (pid < 0) {
		close(ready[0]), close(ex[1]), close(eo[0]);
		return pyti_err_set(err, fork_errno, "fork %s", NS_NET_HELPER);
	}
	struct pollfd pf = {ready[0], POLLIN, 0};
	char b = 0;
	double deadline = now_mono() + NS_NET_START_S;
	int pr;
	do {
		pr = poll(&pf, 1, (int)((deadline - now_mono()) * 1000) + 1);
	} while (pr < 0 && errno == EINTR);
	bool up = pr > 0 && read(ready[0], &b, 1) == 1 && b == '1';
	close(ready[0]);
	if (!up) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		char msg[1024];
		ssize_t n = read(eo[0], msg, sizeof msg - 1); /* it is dead: read() cannot block */
		close(eo[0]);
		close(ex[1]);
		msg[n > 0 ? n : 0] = '\0';
		msg[strcspn(msg, "\n")] = '\0';
		return pyti_err_set(err, 0, "%s did not bring the fetch sandbox's network up%s%s", exe,
				    n > 0 ? ": " : "", msg);
	}
	close(eo[0]); /* later complaints of slirp4netns go nowhere; it gets EPIPE, not a stall */
	net->pid = pid;
	net->exit_w = ex[1];
	log_debug("ns sandbox: %s (pid %d) serves the network of sandbox %d", NS_NET_HELPER, (int)pid, (int)child);
	return 0;
}

void ns_net_stop(struct ns_net *net)
{
	if (!net->pid)
		return;
	if (net->exit_w >= 0)
		close(net->exit_w);
	net->exit_w = -1;
	/* it exits on the closed exit fd at once; one that does not is not waited for long */
	for (int i = 0; i < 100; i++) {
		pid_t w = waitpid(net->pid, NULL, WNOHANG);
		if (w == net->pid || (w < 0 && errno != EINTR)) {
			net->pid = 0;
			return;
		}
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	kill(net->pid, SIGKILL);
	waitpid(net->pid, NULL, 0);
	net->pid = 0;
}


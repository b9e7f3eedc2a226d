/* Tests of the ns sandbox backend against a real image root (env PYTI_TEST_ROOTFS = …/rootfs;
 * skipped when unset, failed when unset under PYTI_TEST_MUST_RUN=1 as scripts/test sets it) with a
 * tiny static stand-in for the agent.
 *
 * This file is built twice: with -DNS_FAKE_AGENT it is that stand-in (libc only, static): it runs
 * `/bin/sh -c "$(cat /io/cmd)"` as its child with output to /io/out/output.txt, reaps everything,
 * and writes /io/out/results.json with its own pid and the command's status. */
#ifdef NS_FAKE_AGENT
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv);
int main(int argc, char **argv)
{
	/* what the sandbox passes the real agent: --io /io --confine [--task-uid N] */
	if (argc < 3 || strcmp(argv[1], "--io") || strcmp(argv[2], "/io"))
		return 2;
	for (int i = 3; i < argc; i++)
		if (strcmp(argv[i], "--confine") && !(strcmp(argv[i], "--task-uid") == 0 && ++i < argc))
			return 2;
	printf("noise before\n@pyti {\"event\":\"job_start\",\"job\":\"t\",\"tasks\":1}\n");
	fflush(stdout);
	fprintf(stderr, "fake agent stderr\n");
	mkdir("/io/out", 0755);
	if (access("/io/close-streams", F_OK) == 0) {
		close(1);
		close(2);
	}
	char cmd[8192] = "true";
	int fd = open("/io/cmd", O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, cmd, sizeof cmd - 1);
		cmd[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	pid_t pid = fork();
	if (pid == 0) {
		/* as the real agent does for its tasks: whatever it keeps, the command gets no capability */
		for (int cap = 0; cap <= 63; cap++)
			prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
		struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
		struct __user_cap_data_struct data[2] = {{0}};
		if (syscall(SYS_capset, &hdr, data) < 0)
			_exit(126);
		int o = open("/io/out/output.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(o, 1);
		dup2(o, 2);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	int st = 0, cst = -1;
	for (;;) {
		pid_t w = wait(&st);
		if (w < 0)
			break;
		if (w == pid) {
			cst = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			break;
		}
	}
	FILE *f = fopen("/io/out/results.json", "w");
	if (!f)
		return 3;
	fprintf(f, "{\"pid\": %d, \"exit\": %d}\n", (int)getpid(), cst);
	fclose(f);
	printf("@pyti {\"event\":\"job_end\",\"status\":\"%s\"}", cst == 0 ? "passed" : "failed");
	return 0;
}
#else
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <grp.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "sandbox.h"
#include "sandbox-ns-int.h"

static char image_dir[4096];
static const char *agent;

struct events {
	int start, end;
	char status[32];
};

static void on_event(void *arg, json_t *ev)
{
	struct events *e = arg;
	const char *name = pj_str(ev, "event", "");
	if (!strcmp(name, "job_start"))
		e->start++;
	if (!strcmp(name, "job_end")) {
		e->end++;
		snprintf(e->status, sizeof e->status, "%s", pj_str(ev, "status", ""));
	}
}

static int setup(void **state)
{
	(void)state;
	const char *rootfs = getenv("PYTI_TEST_ROOTFS");
	agent = getenv("PYTI_TEST_FAKE_AGENT");
	if (!rootfs || !*rootfs || !path_is_dir(rootfs) || !agent)
		return 0;
	size_t n = strlen(rootfs);
	while (n > 1 && rootfs[n - 1] == '/')
		n--;
	if (n < 7 || memcmp(rootfs + n - 7, "/rootfs", 7))
		return 0;
	snprintf(image_dir, sizeof image_dir, "%.*s", (int)(n - 7), rootfs);
	return 0;
}

/* scripts/test sets PYTI_TEST_MUST_RUN=1: there a missing image root is a failure, not a skip */
#define NEED_IMAGE()                                                                               \
	do {                                                                                       \
		if (!*image_dir) {                                                                 \
			const char *must = getenv("PYTI_TEST_MUST_RUN");                           \
			if (must && !strcmp(must, "1"))                                            \
				fail_msg("no image root: PYTI_TEST_ROOTFS=…/rootfs, PYTI_TEST_FAKE_AGENT"); \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

static char *mk_io(const char *cmd)
{
	char *d = xstrdup("/tmp/pyti-nstest-XXXXXX");
	assert_non_null(mkdtemp(d));
	char p[4200];
	snprintf(p, sizeof p, "%s/cmd", d);
	assert_int_equal(write_file_atomic(p, cmd, strlen(cmd), 0644, NULL), 0);
	return d;
}

static char *slurp(const char *io, const char *rel)
{
	char p[4200];
	snprintf(p, sizeof p, "%s/%s", io, rel);
	struct buf b = BUF_INIT(1 << 20);
	if (read_file(p, &b, NULL) < 0) {
		buf_free(&b);
		return xstrdup("");
	}
	return buf_steal(&b);
}

static int run_in(const char *io, bool network, const char *const *ro, double timeout, struct events *ev,
		  struct sandbox_result *res, struct pyti_err *err)
{
	struct sandbox_spec s = {.backend = "ns", .image_dir = image_dir, .io_dir = io, .agent_path = agent,
				 .network = network, .ro_binds = ro, .timeout_s = timeout,
				 .on_event = on_event, .arg = ev};
	return sandbox_ns_run(&s, res, err);
}

static char *read_mountinfo(void)
{
	struct buf b = BUF_INIT(0);
	read_file("/proc/self/mountinfo", &b, NULL);
	return buf_steal(&b);
}

/* true if any process's command line contains marker */
static bool proc_with(const char *marker)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	bool found = false;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char p[300], cl[4096];
		snprintf(p, sizeof p, "/proc/%s/cmdline", e->d_name);
		FILE *f = fopen(p, "r");
		if (!f)
			continue;
		size_t n = fread(cl, 1, sizeof cl - 1, f);
		fclose(f);
		for (size_t i = 0; i < n; i++)
			if (!cl[i])
				cl[i] = ' ';
		cl[n] = '\0';
		if (strstr(cl, marker))
			found = true;
	}
	if (d)
		closedir(d);
	return found;
}

static void test_basic(void **state)
{
	(void)state;
	NEED_IMAGE();
	_cleanup_free_ char *mi_before = read_mountinfo();
	/* Each check prints a word; the host checks the words. */
	const char *cmd =
		"echo pid1=$PPID; cat /proc/self/uid_map | tr -s ' ' > /io/out/uidmap; "
		"touch /usr/x 2>/dev/null && echo usr-rw || echo usr-ro; "
		"touch /x 2>/dev/null && echo root-rw || echo root-ro; "
		"touch /tmp/x /var/tmp/x /tmp/home/x /dev/shm/x && echo tmp-rw; "
		"echo hi > /io/out/written && echo io-rw; "
		"test -e /work && echo work-visible || echo work-hidden; "
		"test -e /var/tmp/pyti-scratch && echo scratch-visible || echo scratch-hidden; "
		"test -e /io/cmd && echo io-cmd; "
		"echo x > /dev/null && head -c 4 /dev/urandom | wc -c | tr -d ' ' | sed s/^/urandom=/; "
		"test -x /run/pyti/agent && echo agent-there; "
		"test \"$(hostname)\" = pyti && echo host-pyti; "
		"grep -q CapEff:.0000000000000000 /proc/self/status && echo nocaps; "
		"grep -q 'NoNewPrivs:.1' /proc/self/status && echo nnp; "
		"grep -q 'SigIgn:.0000000000000000' /proc/1/status && grep -q 'SigBlk:.0000000000000000' /proc/1/status "
		"&& echo sig-clean; ls /proc/1/fd | wc -l | tr -d ' ' | sed s/^/agent-fds=/; "
		"unshare -U true 2>/dev/null && echo userns-open || echo userns-blocked; "
		"python3 -c 'import ctypes; l = ctypes.CDLL(None, use_errno=True); "
		"print(\"keyctl\", l.syscall(250, 0, 0, 0, 0, 0), ctypes.get_errno())'; "
		"python3 -c 'import threading, subprocess; t = threading.Thread(target=print, args=(\"thread-ok\",)); "
		"t.start(); t.join(); subprocess.run([\"true\"], check=True); print(\"spawn-ok\")'; "
		"grep 'Max processes' /proc/self/limits | tr -s ' ' | cut -d' ' -f3 | sed s/^/nproc=/; "
		"(setsid sleep 1000 & ) ; sleep 1000 & echo bg-started";
	_cleanup_free_ char *io = mk_io(cmd);
	struct events ev = {0};
	struct sandbox_result res;
	struct pyti_err err = {0};
	/* host state that must not leak in: an ignored signal, a blocked one, a stray descriptor */
	signal(SIGPIPE, SIG_IGN);
	sigset_t blk, old;
	sigemptyset(&blk);
	sigaddset(&blk, SIGUSR1);
	sigprocmask(SIG_BLOCK, &blk, &old);
	int stray = open("/dev/null", O_RDONLY);
	int rc = run_in(io, false, NULL, 60, &ev, &res, &err);
	close(stray);
	sigprocmask(SIG_SETMASK, &old, NULL);
	signal(SIGPIPE, SIG_DFL);
	assert_int_equal(rc, 0);
	_cleanup_free_ char *out = slurp(io, "out/output.txt");
	_cleanup_free_ char *results = slurp(io, "out/results.json");
	printf("# output:\n%s# results: %s# setup %.1f ms, wall %.1f ms\n", out, results, res.setup_s * 1e3,
	       res.wall_s * 1e3);
	assert_non_null(strstr(results, "\"pid\": 1,"));
	assert_non_null(strstr(out, "pid1=1\n"));
	assert_non_null(strstr(out, "usr-ro\n"));
	assert_non_null(strstr(out, "root-ro\n"));
	assert_non_null(strstr(out, "tmp-rw\n"));
	assert_non_null(strstr(out, "io-rw\n"));
	assert_non_null(strstr(out, "work-hidden\n"));
	assert_non_null(strstr(out, "scratch-hidden\n"));
	assert_non_null(strstr(out, "io-cmd\n"));
	assert_non_null(strstr(out, "urandom=4\n"));
	assert_non_null(strstr(out, "agent-there\n"));
	assert_non_null(strstr(out, "host-pyti\n"));
	assert_non_null(strstr(out, "nocaps\n"));
	assert_non_null(strstr(out, "nnp\n"));
	assert_non_null(strstr(out, "sig-clean\n"));
	assert_non_null(strstr(out, "userns-blocked\n"));
	assert_non_null(strstr(out, "keyctl -1 1\n")); /* EPERM */
	assert_non_null(strstr(out, "thread-ok\nspawn-ok\n"));
	assert_non_null(strstr(out, "nproc=4096\n"));
	assert_non_null(strstr(out, "agent-fds=3\n")); /* stdin, stdout, stderr */
	assert_int_equal(ev.start, 1);
	assert_int_equal(ev.end, 1);
	assert_string_equal(ev.status, "passed");
	assert_int_equal(res.agent_status, 0);
	assert_true(res.setup_s > 0 && res.setup_s <= res.wall_s);
	/* uid mapping: root callers get an unprivileged per-run uid, others their own */
	_cleanup_free_ char *map = slurp(io, "out/uidmap");
	unsigned a = 9, b = 9, n = 0;
	assert_int_equal(sscanf(map, " %u %u %u", &a, &b, &n), 3);
	assert_int_equal(a, 0);
	assert_int_equal(n, 1);
	if (geteuid() == 0)
		assert_true(b >= 0x10000);
	else
		assert_int_equal(b, geteuid());
	/* the host gets its files back */
	char p[4200];
	snprintf(p, sizeof p, "%s/out/written", io);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_uid, geteuid());
	/* nothing left behind */
	assert_false(proc_with("sleep 1000"));
	_cleanup_free_ char *mi_after = read_mountinfo();
	assert_string_equal(mi_before, mi_after);
	rm_rf(io, NULL);
}

static void test_no_network(void **state)
{
	(void)state;
	NEED_IMAGE();
	int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(l, 4), 0);
	socklen_t al = sizeof a;
	getsockname(l, (struct sockaddr *)&a, &al);
	int tport = ntohs(a.sin_port);
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in ua = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(u, (struct sockaddr *)&ua, sizeof ua), 0);
	al = sizeof ua;
	getsockname(u, (struct sockaddr *)&ua, &al);
	int uport = ntohs(ua.sin_port);
	char cmd[2048];
	snprintf(cmd, sizeof cmd,
		 "python3 -c '\n"
		 "import socket\n"
		 "try:\n    socket.create_connection((\"127.0.0.1\", %d), timeout=3); print(\"tcp-open\")\n"
		 "except OSError: print(\"tcp-blocked\")\n"
		 "try:\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
		 "s.sendto(b\"leak\", (\"127.0.0.1\", %d)); print(\"udp-sent\")\n"
		 "except OSError: print(\"udp-blocked\")\n"
		 "try:\n    socket.getaddrinfo(\"example.org\", 443); print(\"dns-open\")\n"
		 "except OSError: print(\"dns-blocked\")\n"
		 "try:\n    t = socket.create_server((\"127.0.0.1\", 0)); "
		 "c = socket.create_connection(t.getsockname()); print(\"lo-up\")\n"
		 "except OSError as e: print(\"lo-down\", e)\n"
		 "'",
		 tport, uport);
	_cleanup_free_ char *io = mk_io(cmd);
	struct events ev = {0};
	struct sandbox_result res;
	struct pyti_err err = {0};
	assert_int_equal(run_in(io, false, NULL, 60, &ev, &res, &err), 0);
	_cleanup_free_ char *out = slurp(io, "out/output.txt");
	printf("# %s", out);
	assert_non_null(strstr(out, "tcp-blocked"));
	assert_non_null(strstr(out, "dns-blocked"));
	assert_non_null(strstr(out, "lo-up"));
	int c = accept(l, NULL, NULL);
	assert_true(c < 0);
	char b[16];
	assert_true(recv(u, b, sizeof b, 0) < 0);
	close(l);
	close(u);
	rm_rf(io, NULL);
}

static void test_network_and_ro_binds(void **state)
{
	(void)state;
	NEED_IMAGE();
	/* a host directory at a path the image lacks, under a directory the image has (/opt, /etc) */
	_cleanup_free_ char *hd = xstrdup("/opt/pyti-nstest-XXXXXX");
	if (!mkdtemp(hd)) {
		/* an ordinary user may not write /opt (the host forbids it); anything else is a failure */
		if (errno == EACCES || errno == EPERM || errno == EROFS)
			skip();
		fail_msg("mkdtemp %s: %s", hd, strerror(errno));
	}
	chmod(hd, 0755); /* the sandbox uid reads it as "other" */
	char f[4200];
	snprintf(f, sizeof f, "%s/marker", hd);
	assert_int_equal(write_file_atomic(f, "m1", 2, 0644, NULL), 0);
	char cmd[8192];
	snprintf(cmd, sizeof cmd,
		 "cat %s/marker && echo; touch %s/new 2>/dev/null && echo bind-rw || echo bind-ro; "
		 "test -e /etc/resolv.conf && echo resolv; test -e /usr/bin/python3 && echo image-ok; "
		 "ls /etc | wc -l | tr -d ' ' | sed s/^/etc=/",
		 hd, hd);
	_cleanup_free_ char *io = mk_io(cmd);
	const char *ro[] = {hd, NULL};
	struct events ev = {0};
	struct sandbox_result res;
	struct pyti_err err = {0};
	int rc = run_in(io, true, ro, 60, &ev, &res, &err);
	if (rc < 0)
		printf("# %s\n", pyti_err_str(&err));
	assert_int_equal(rc, 0);
	_cleanup_free_ char *out = slurp(io, "out/output.txt");
	printf("# %s", out);
	assert_non_null(strstr(out, "m1\n"));
	assert_non_null(strstr(out, "bind-ro\n"));
	assert_non_null(strstr(out, "resolv\n"));
	assert_non_null(strstr(out, "image-ok\n"));
	rm_rf(io, NULL);
	rm_rf(hd, NULL);
}

static void test_timeout_kills_all(void **state)
{
	(void)state;
	NEED_IMAGE();
	_cleanup_free_ char *io = mk_io("(setsid sleep 1001 &); sleep 1001");
	struct events ev = {0};
	struct sandbox_result res;
	struct pyti_err err = {0};
	double t0 = now_mono();
	assert_int_equal(run_in(io, false, NULL, 1.0, &ev, &res, &err), -1);
	assert_int_equal(res.fclass, PYTI_FC_TIMEOUT);
	assert_int_equal(err.fclass, PYTI_FC_TIMEOUT);
	assert_true(now_mono() - t0 < 5);
	assert_false(proc_with("sleep 1001"));
	rm_rf(io, NULL);
}

/* An agent that closes its streams and hangs is still stopped by the backstop. */
static void test_timeout_streams_closed(void **state)
{
	(void)state;
	NEED_IMAGE();
	_cleanup_free_ char *io = mk_io("sleep 1003");
	char p[4200];
	snprintf(p, sizeof p, "%s/close-streams", io);
	assert_int_equal(write_file_atomic(p, "", 0, 0644, NULL), 0);
	struct events ev = {0};
	struct sandbox_result res;
	struct pyti_err err = {0};
	double t0 = now_mono();
	assert_int_equal(run_in(io, false, NULL, 1.0, &ev, &res, &err), -1);
	assert_int_equal(res.fclass, PYTI_FC_TIMEOUT);
	assert_true(now_mono() - t0 < 5);
	assert_false(proc_with("sleep 1003"));
	rm_rf(io, NULL);
}

static void test_agent_without_results(void **state)
{
	(void)state;
	NEED_IMAGE();
	/* /io/out/results.json is a directory: the stand-in cannot write it */
	_cleanup_free_ char *io = mk_io("true");
	char p[4200];
	snprintf(p, sizeof p, "%s/out/results.json", io);
	assert_int_equal(mkdir_p(p, 0755, NULL), 0);
	struct events ev = {0};
	struct sandbox_result res;
	struct pyti_err err = {0};
	assert_int_equal(run_in(io, false, NULL, 30, &ev, &res, &err), -1);
	assert_int_equal(res.fclass, PYTI_FC_CRASH);
	assert_non_null(strstr(err.msg, "results.json"));
	assert_non_null(strstr(err.msg, "fake agent stderr"));
	rm_rf(io, NULL);
}

static void test_bad_spec(void **state)
{
	(void)state;
	struct sandbox_spec s = {.image_dir = "/nonexistent-pyti", .io_dir = "/tmp", .agent_path = "/bin/true"};
	struct sandbox_result res;
	struct pyti_err err = {0};
	assert_int_equal(sandbox_ns_run(&s, &res, &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent-pyti/rootfs"));
}

static void test_bind_refused(void **state)
{
	(void)state;
	NEED_IMAGE();
	static const char *const bad[] = {"/", "/io", "/proc/1", "/dev", "/run/pyti", "relative"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		_cleanup_free_ char *io = mk_io("true");
		const char *ro[] = {bad[i], NULL};
		struct events ev = {0};
		struct sandbox_result res;
		struct pyti_err err = {0};
		assert_int_equal(run_in(io, true, ro, 30, &ev, &res, &err), -1);
		assert_non_null(strstr(err.msg, bad[i]));
		rm_rf(io, NULL);
	}
}

/* Whether the host lets uid 65534 create a user namespace and reach the image root and the agent:
 * 0 when it does, else the reason it does not (a skip; any other failure of the run is a failure). */
static const char *nobody_probe(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			_exit(10);
		/* EPERM: user namespaces disabled for the unprivileged (sysctl, LSM); ENOSPC:
		 * user.max_user_namespaces is 0 */
		if (unshare(CLONE_NEWUSER) < 0)
			_exit(errno == EPERM || errno == ENOSPC ? 12 : 10);
		_exit(0);
	}
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) == 10)
		fail_msg("the probe as uid 65534 itself failed");
	if (WEXITSTATUS(st) == 12)
		return "the host forbids an unprivileged user namespace";
	/* a build tree or image under a private directory (a 0700 home) is not reachable by nobody */
	pid = fork();
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			_exit(10);
		char root[4200];
		snprintf(root, sizeof root, "%s/rootfs/usr/bin", image_dir);
		_exit(access(agent, X_OK) == 0 && access(root, X_OK) == 0 ? 0 : 13);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) == 10)
		fail_msg("the probe as uid 65534 itself failed");
	if (WEXITSTATUS(st) == 13)
		return "the image root or the build tree is not reachable by uid 65534 here";
	return NULL;
}

/* An ordinary user (as bubblewrap does): run the basic checks as uid 65534 in a child process. */
static void test_unprivileged(void **state)
{
	(void)state;
	NEED_IMAGE();
	if (geteuid() != 0)
		skip(); /* already covered by the other tests */
	const char *why = nobody_probe();
	if (why) {
		print_message("# skipped: %s\n", why);
		skip();
	}
	_cleanup_free_ char *io = mk_io("touch /io/out/mine && cat /proc/self/uid_map | tr -s ' ' > /io/out/uidmap");
	assert_int_equal(chown(io, 65534, 65534), 0);
	char p[4200];
	snprintf(p, sizeof p, "%s/cmd", io);
	assert_int_equal(chown(p, 65534, 65534), 0);
	pid_t pid = fork();
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			_exit(10);
		prctl(PR_SET_DUMPABLE, 1); /* as an ordinary user's process would be */
		struct events ev = {0};
		struct sandbox_result res;
		struct pyti_err err = {0};
		int rc = run_in(io, false, NULL, 30, &ev, &res, &err);
		if (rc < 0)
			fprintf(stderr, "# unprivileged: %s\n", pyti_err_str(&err));
		_exit(rc == 0 ? 0 : 11);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st));
	/* the host allows it (nobody_probe): a failed run is the sandbox's failure, never a skip */
	assert_int_equal(WEXITSTATUS(st), 0);
	_cleanup_free_ char *map = slurp(io, "out/uidmap");
	assert_non_null(strstr(map, "0 65534 1"));
	rm_rf(io, NULL);
}

static void drv_event(void *arg, json_t *ev)
{
	json_array_append(arg, ev);
}

/* Driver for tests/integration/test_sandbox_ns.py:
 *   test_sandbox_ns --run IMAGE_DIR IO_DIR AGENT [--network] [--timeout S] [--ro PATH]…
 * prints {"rc","setup_s","wall_s","fclass","agent_status","error","events":[…]} */
static int driver(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s --run IMAGE_DIR IO_DIR AGENT [--network] [--timeout S] [--ro PATH]...\n",
			argv[0]);
		return 2;
	}
	if (getenv("PYTI_DEBUG"))
		pyti_log_level = PYTI_LOG_DEBUG;
	const char *ro[64] = {0};
	size_t nro = 0;
	struct sandbox_spec s = {.backend = "ns", .image_dir = argv[2], .io_dir = argv[3], .agent_path = argv[4]};
	for (int i = 5; i < argc; i++) {
		if (!strcmp(argv[i], "--network"))
			s.network = true;
		else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			s.timeout_s = atof(argv[++i]);
		else if (!strcmp(argv[i], "--ro") && i + 1 < argc && nro < 63)
			ro[nro++] = argv[++i];
	}
	s.ro_binds = ro;
	json_t *events = json_array();
	s.on_event = drv_event;
	s.arg = events;
	struct sandbox_result res;
	struct pyti_err err = {0};
	int rc = sandbox_run(&s, &res, &err);
	json_t *j = json_object();
	json_object_set_new(j, "rc", json_integer(rc));
	json_object_set_new(j, "setup_s", json_real(res.setup_s));
	json_object_set_new(j, "wall_s", json_real(res.wall_s));
	const char *fc = pyti_fclass_name(res.fclass);
	json_object_set_new(j, "fclass", fc ? json_string(fc) : json_null());
	json_object_set_new(j, "agent_status", json_integer(res.agent_status));
	json_object_set_new(j, "error", rc < 0 ? json_string(pyti_err_str(&err)) : json_null());
	json_object_set_new(j, "events", events);
	char *out = json_dumps(j, JSON_COMPACT);
	printf("%s\n", out);
	free(out);
	json_decref(j);
	return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--run"))
		return driver(argc, argv);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_spec),
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_no_network),
		cmocka_unit_test(test_network_and_ro_binds),
		cmocka_unit_test(test_timeout_kills_all),
		cmocka_unit_test(test_timeout_streams_closed),
		cmocka_unit_test(test_agent_without_results),
		cmocka_unit_test(test_bind_refused),
		cmocka_unit_test(test_unprivileged),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
#endif

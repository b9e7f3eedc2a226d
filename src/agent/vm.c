/* agent --vm: the VM guest's PID 1.
 *
 * Protocol with the host (the vm backend), all on the serial console (default /dev/ttyS0), one line
 * each, anything not starting with "@pyti " is to be ignored by the host:
 *
 *   1. boot: mount /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /tmp and /run (tmpfs) unless
 *      already mounted; bring up the loopback interface; open the console (raw, no echo).
 *   2. print  @pyti {"event":"ready"}           <- the warm-snapshot point: nothing of the job has
 *                                                  been read yet; the host may save the VM here.
 *   3. wait for a line "go" or "go EPOCH"       -> EPOCH (unix seconds, may have a fraction) sets the
 *      guest clock, which is stale after a snapshot restore; other lines are ignored, except
 *      "warm": run the image's Python once beside the wait (vm_warm_start) and print
 *      @pyti {"event":"warm"} when it is done; a "go" that comes first kills it.
 *   4. flush the block cache of the I/O device (default /dev/vdb; the disk may have been swapped
 *      while the VM was saved), mount it as ext4 at /io, run /io/job.json exactly as the ns backend
 *      does (events job_start, task_start, heartbeat, task_end, results on the console). Tasks run as
 *      uid and gid AGENT_TASK_UID without capabilities: the agent (root, non-dumpable) and its
 *      console are out of their reach.
 *   5. sync, unmount /io, then print  @pyti {"event":"job_end","status":"passed"|"failed"}:
 *      once job_end is seen, the I/O disk is clean and complete.
 *   6. power off (reboot(RB_POWER_OFF)); the domain needs <features><acpi/></features>.
 *
 * On any error: print @pyti {"event":"error","message":"…"} and power off all the same. PID 1 never
 * exits (an exiting init panics the kernel): after requesting power-off it sleeps forever.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

#include "agent.h"

static int vm_console = 2;

static void vm_event_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void vm_event_error(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	_cleanup_json_ json_t *ev = json_object();
	json_object_set_new(ev, "event", json_string("error"));
	json_object_set_new(ev, "message", pj_string_lossy(msg, strlen(msg)));
	agent_emit(vm_console, ev);
}

static __attribute__((noreturn)) void vm_power_off(void)
{
	sync();
	tcdrain(vm_console);
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

/* Already a mount point when it lives on another device than its parent. */
static bool vm_is_mounted(const char *dir)
{
	struct stat a, b;
	_cleanup_free_ char *parent = xasprintf("%s/..", dir);
	return stat(dir, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

static int vm_mount(const char *src, const char *dir, const char *type, unsigned long flags,
		    const char *data)
{
	mkdir(dir, 0755);
	if (vm_is_mounted(dir))
		return 0;
	if (mount(src, dir, type, flags, data) < 0) {
		vm_event_error("mount %s on %s: %s", type, dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* The tmpfs mounts were made at boot, before the warm snapshot, with the default size; the job's
 * recipe may ask for another ("tmpfs" in job.json). A size below what is in use already is
 * refused by the kernel: the mount stays as it was, and the agent says so. */
static void vm_tmpfs_resize(void)
{
	_cleanup_json_ json_t *job = json_load_file("/io/job.json", 0, NULL);
	json_t *v = json_object_get(job, "tmpfs");
	if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
	    (unsigned long long)json_integer_value(v) == AGENT_DEFAULT_TMPFS)
		return;
	char opts[64];
	snprintf(opts, sizeof opts, "size=%lld", (long long)json_integer_value(v));
	static const char *const dirs[] = {"/tmp", "/dev/shm", "/run"};
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
		if (mount(NULL, dirs[i], NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, opts) < 0)
			vm_event_error("resize tmpfs %s to %s: %s", dirs[i], opts, strerror(errno));
}

static void vm_loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	struct ifreq ifr = {0};
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	close(s);
}

static int vm_open_console(const char *console)
{
	int fd = open(console, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct termios tio;
	if (tcgetattr(fd, &tio) == 0) {
		cfmakeraw(&tio);
		tio.c_oflag |= OPOST | ONLCR; /* keep "\r\n" on output, like any console */
		tcsetattr(fd, TCSANOW, &tio);
	}
	/* The host believes what comes on this line: only the agent (root) may open it. Tasks run
	 * as AGENT_TASK_UID in sessions of their own, so neither a write nor a TIOCSTI reaches it. */
	static const char *const consoles[] = {"/dev/console", "/dev/ttyS0", "/dev/ttyS1", "/dev/ttyS2",
					       "/dev/ttyS3", "/dev/hvc0", "/dev/ttyAMA0"};
	(void)!fchown(fd, 0, 0);
	(void)!fchmod(fd, 0600);
	for (size_t i = 0; i < ARRAY_SIZE(consoles); i++)
		if (chown(consoles[i], 0, 0) == 0)
			(void)!chmod(consoles[i], 0600);
	/* Stray messages (ours, or of anything that writes to fd 1/2) go to the console too. */
	dup2(fd, 1);
	dup2(fd, 2);
	return fd;
}

/* "warm": run the image's Python once over what a job's first task loads (the interpreter, venv,
 * pip's install command), so that QEMU's translation cache (TCG), which no snapshot keeps, and the
 * guest's page cache hold them before a job comes. No job data exists yet; -B writes no .pyc files,
 * so the system disk stays as the snapshot left it. Its failure (no pip in the image) is harmless.
 * It runs beside the wait for "go", which kills it: a job never waits for a warm-up. */
static pid_t vm_warm_start(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			dup2(nul, 2);
		}
		char *argv[] = {"python3", "-B", "-c", "import venv, pip._internal.commands.install", NULL};
		char *envp[] = {"PATH=" AGENT_DEFAULT_PATH, "HOME=/root", "LANG=C.UTF-8", NULL};
		execve("/usr/bin/python3", argv, envp);
		_exit(127);
	}
	return pid;
}

/* Wait for "go" or "go EPOCH" on the console; "warm" starts a warm-up, whose end prints
 * @pyti {"event":"warm"}. */
static void vm_wait_go(void)
{
	char line[128];
	size_t n = 0;
	pid_t warm = 0;
	for (;;) {
		if (warm > 0 && waitpid(warm, NULL, WNOHANG) == warm) {
			warm = 0;
			_cleanup_json_ json_t *ev = json_pack("{s:s}", "event", "warm");
			agent_emit(vm_console, ev);
		}
		struct pollfd pfd = {.fd = vm_console, .events = POLLIN};
		int pr = poll(&pfd, 1, warm > 0 ? 50 : 1000);
		if (pr <= 0)
			continue;
		char c;
		ssize_t r = read(vm_console, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			struct timespec ts = {0, 100000000};
			nanosleep(&ts, NULL);
			continue;
		}
		if (c != '\n' && c != '\r') {
			if (n < sizeof line - 1)
				line[n++] = c;
			continue;
		}
		line[n] = '\0';
		n = 0;
		if (strcmp(line, "warm") == 0) {
			if (warm <= 0)
				warm = vm_warm_start();
			continue;
		}
		if (strncmp(line, "go", 2) != 0 || (line[2] != '\0' && line[2] != ' '))
			continue;
		if (warm > 0) { /* the job is here: the warm-up has done what it could */
			kill(warm, SIGKILL);
			while (waitpid(warm, NULL, 0) < 0 && errno == EINTR)
				;
		}
		char *end;
		double epoch = strtod(line + 2, &end);
		if (end != line + 2 && epoch > 1e9) {
			struct timespec ts = {(time_t)epoch, (long)((epoch - (double)(time_t)epoch) * 1e9)};
			clock_settime(CLOCK_REALTIME, &ts);
		}
		return;
	}
}

static int vm_mount_io(const char *dev)
{
	mkdir("/io", 0755);
	/* The disk behind dev may have been swapped while the VM was saved: forget cached blocks. */
	int fd = -1;
	for (int i = 0; i < 100 && fd < 0; i++) {
		fd = open(dev, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			struct timespec ts = {0, 100000000}; /* wait for the device node, up to 10 s */
			nanosleep(&ts, NULL);
		}
	}
	if (fd < 0) {
		vm_event_error("open I/O device %s: %s", dev, strerror(errno));
		return -1;
	}
	ioctl(fd, BLKFLSBUF, 0);
	close(fd);
	if (mount(dev, "/io", "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME, "") < 0) {
		vm_event_error("mount %s on /io: %s", dev, strerror(errno));
		return -1;
	}
	return 0;
}

static void vm_umount_io(void)
{
	sync();
	for (int i = 0; i < 3; i++) {
		if (umount("/io") == 0)
			return;
		kill(-1, SIGKILL); /* something still holds it */
		while (waitpid(-1, NULL, WNOHANG | __WALL) > 0)
			;
		struct timespec ts = {0, 100000000};
		nanosleep(&ts, NULL);
	}
	/* Last resort: at least leave the file system clean. */
	if (mount(NULL, "/io", NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0)
		vm_event_error("umount /io: %s", strerror(errno));
}

void agent_vm_main(const char *io_dev, const char *console)
{
	signal(SIGPIPE, SIG_IGN);
	vm_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	vm_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	vm_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	int fd = vm_open_console(console);
	if (fd >= 0)
		vm_console = fd;
	vm_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666");
	char opts1777[64], opts0755[64];
	snprintf(opts1777, sizeof opts1777, "mode=1777,size=%llu", (unsigned long long)AGENT_DEFAULT_TMPFS);
	snprintf(opts0755, sizeof opts0755, "mode=0755,size=%llu", (unsigned long long)AGENT_DEFAULT_TMPFS);
	vm_mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, opts1777);
	vm_mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts1777);
	vm_mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, opts0755);
	if (fd < 0)
		vm_event_error("open console %s: %s", console, strerror(errno));
	vm_loopback_up();

	_cleanup_json_ json_t *ev = json_pack("{s:s}", "event", "ready");
	agent_emit(vm_console, ev);
	vm_wait_go();

	if (vm_mount_io(io_dev) < 0)
		vm_power_off();
	vm_tmpfs_resize();
	agent_confine_name_user();
	struct agent_opts opts = {.io_dir = "/io", .event_fd = vm_console, .emit_job_end = false,
				  .pid1 = true, .confine = true, .task_ids = true, .task_uid = AGENT_TASK_UID};
	struct pyti_err err = {0};
	bool passed = false;
	int rc = agent_run_job(&opts, &passed, &err);
	if (rc < 0)
		vm_event_error("%s", pyti_err_str(&err));
	vm_umount_io();
	if (rc == 0) {
		json_decref(ev);
		ev = json_pack("{s:s, s:s}", "event", "job_end", "status", passed ? "passed" : "failed");
		agent_emit(vm_console, ev);
	}
	vm_power_off();
}

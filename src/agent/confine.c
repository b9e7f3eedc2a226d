/* agent: the directories of a job whose tasks run as another uid than the agent (--task-uid).
 *
 * The agent (uid 0: real root in the VM, root of its user namespace in the ns sandbox) owns
 * /io, /io/job.json, /io/out and /io/out/logs; the tasks' uid owns what the host put in /io for
 * them to work on (src/, wheels/, a copied source tree …) and their HOME. /io and /io/out are
 * sticky and world-writable while the tasks run: a task may make its own entries there (JUnit
 * files, pip logs, /io/sdist), but it cannot remove, rename or replace the agent's (job.json,
 * results.json, logs/). After the last task both go back to 0755.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "agent.h"

#define CONFINE_MAX_DEPTH 256

/* Hand the tree below /io to the tasks' uid/gid, without following links (tree_walk), but for
 * the agent's own out/ and job.json. Files with more than one link are left alone: in the ns
 * sandbox they are hard links into pyti's shared cache (read-only for the sandbox, and not the
 * sandbox's to change). Errors are skipped: what a task cannot write shows up as that task's own
 * failure. A directory is handed over after its contents. */
struct confine_walk {
	uid_t uid;
	gid_t gid;
};

static void confine_chown(const struct confine_walk *cw, const struct tree_entry *e)
{
	/* Best effort: a file the tasks' uid cannot take stays the agent's (still readable), and a
	 * task that must write it fails on its own, visibly. */
	(void)!fchownat(e->dirfd, e->name, cw->uid, cw->gid, AT_SYMLINK_NOFOLLOW);
}

static int confine_pre(void *arg, const struct tree_entry *e)
{
	if (e->depth == 0 && (!strcmp(e->name, "out") || !strcmp(e->name, "job.json")))
		return TREE_WALK_SKIP;
	if (!S_ISDIR(e->st->st_mode) && !(S_ISREG(e->st->st_mode) && e->st->st_nlink > 1))
		confine_chown(arg, e);
	return TREE_WALK_NEXT;
}

static int confine_post(void *arg, const struct tree_entry *e)
{
	confine_chown(arg, e);
	return 0;
}

int agent_confine_io(const struct agent_opts *opts, struct pyti_err *err)
{
	if (!opts->task_ids)
		return 0;
	_cleanup_close_ int io = open(opts->io_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (io < 0)
		return pyti_err_set(err, errno, "open %s", opts->io_dir);
	if (fchown(io, 0, 0) < 0 || fchmod(io, 01777) < 0)
		return pyti_err_set(err, errno, "make %s the tasks' working directory", opts->io_dir);
	if (mkdirat(io, "out", 0755) < 0 && errno != EEXIST)
		return pyti_err_set(err, errno, "mkdir %s/out", opts->io_dir);
	_cleanup_close_ int out = openat(io, "out", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (out < 0 || fchown(out, 0, 0) < 0 || fchmod(out, 01777) < 0)
		return pyti_err_set(err, errno, "prepare %s/out", opts->io_dir);
	if (mkdirat(out, "logs", 0755) < 0 && errno != EEXIST)
		return pyti_err_set(err, errno, "mkdir %s/out/logs", opts->io_dir);
	if (fchownat(out, "logs", 0, 0, AT_SYMLINK_NOFOLLOW) < 0 || fchmodat(out, "logs", 0755, 0) < 0)
		return pyti_err_set(err, errno, "prepare %s/out/logs", opts->io_dir);

	struct confine_walk cw = {opts->task_uid, (gid_t)opts->task_uid};
	tree_walk(io, CONFINE_MAX_DEPTH, confine_pre, confine_post, &cw);
	return 0;
}

void agent_confine_home(const struct agent_opts *opts, const char *home)
{
	/* Only a HOME the agent made under /tmp: never hand a system directory to a task. */
	if (!opts->task_ids || !home || strncmp(home, "/tmp/", 5) != 0 || strstr(home, "/.."))
		return;
	/* No link followed on the way: a task may have made a component under /tmp a link to the
	 * agent's own directories before a later task's HOME is prepared. */
	struct open_how how = {.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
			       .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
	_cleanup_close_ int fd = (int)syscall(SYS_openat2, AT_FDCWD, home, &how, sizeof how);
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_uid == 0)
		(void)!fchown(fd, opts->task_uid, (gid_t)opts->task_uid);
}

void agent_confine_end(const struct agent_opts *opts)
{
	if (!opts->task_ids)
		return;
	_cleanup_close_ int io = open(opts->io_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (io < 0)
		return;
	fchmod(io, 0755);
	_cleanup_close_ int out = openat(io, "out", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (out >= 0)
		fchmod(out, 0755);
}

/* Name the task uid in the guest's /etc/passwd and /etc/group, as the ns backend does with a
 * bound copy (test suites ask pwd or getpass who they are). The VM's system disk is an overlay
 * thrown away after the job, so appending is enough. */
static void confine_name_in(const char *path, const char *line)
{
	_cleanup_buf_ struct buf b = BUF_INIT(1u << 20);
	if (read_file(path, &b, NULL) < 0 || b.truncated || !b.data)
		return;
	const char *data = b.data;
	size_t len = b.len;
	char needle[32];
	snprintf(needle, sizeof needle, ":x:%u:", AGENT_TASK_UID);
	if (memmem(data, len, needle, strlen(needle)))
		return;
	_cleanup_close_ int fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	if (len && data[len - 1] != '\n')
		(void)!write(fd, "\n", 1);
	(void)!write(fd, line, strlen(line));
}

void agent_confine_name_user(void)
{
	char line[128];
	snprintf(line, sizeof line, "pyti:x:%u:%u:pyti task:/tmp/home:/bin/sh\n", AGENT_TASK_UID, AGENT_TASK_UID);
	confine_name_in("/etc/passwd", line);
	snprintf(line, sizeof line, "pyti:x:%u:\n", AGENT_TASK_UID);
	confine_name_in("/etc/group", line);
}

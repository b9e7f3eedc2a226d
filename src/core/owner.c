/* Leftovers of killed runs. A run's scratch directory (STATE/jobs/<id>, STATE/tmp/fetch.*) has a
 * sibling record .owner.<name> that the run holds an flock on for as long as it lives. The kernel
 * drops the lock however the process ends (kill -9 included), so a record whose lock can be taken
 * belongs to nobody and its directory may go; a live run's lock cannot be taken, whatever its pid
 * namespace or its age. The record is made under a .new name, locked, then renamed into place,
 * so a sweeper never sees an unlocked record of a live run (an unlocked .new one it may remove:
 * the claimer sees that once it holds the lock, and makes it again). A directory without a record (a
 * --keep job, pyti versions before this one) is never touched here. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "core.h"

#define OWNER_PREFIX ".owner."

static bool owner_name_ok(const char *name)
{
	return name && *name && name[0] != '.' && !strchr(name, '/') && strlen(name) < 200;
}

int owner_claim(const char *parent, const char *name, struct pyti_err *err)
{
	if (!owner_name_ok(name))
		return pyti_err_set(err, EINVAL, "owner record: bad name '%s'", name);
	_cleanup_free_ char *rec = xasprintf("%s/" OWNER_PREFIX "%s", parent, name);
	_cleanup_free_ char *tmp = xasprintf("%s.new", rec);
	/* Between its creation and its lock the .new record is unlocked, and a sweeper running
	 * beside us (another job of a worker or a batch starting) may take it for a killed claimer's
	 * and unlink it. So the lock is taken waiting (a sweeper holds it only for a moment), and
	 * then the name must still be this file, as in lock_open_held; if not, start again. */
	for (int tries = 0; tries < 100; tries++) {
		unlink(tmp); /* a claimer of this name killed before its rename */
		_cleanup_close_ int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return pyti_err_set(err, errno, "create %s", tmp);
		if (flock(fd, LOCK_EX) < 0) {
			int e = errno;
			unlink(tmp);
			return pyti_err_set(err, e, "lock %s", tmp);
		}
		struct stat a, b;
		if (fstat(fd, &a) < 0 || lstat(tmp, &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
			continue; /* swept before we held it */
		char pid[32];
		int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid()); /* for a human looking; not trusted */
		if (write(fd, pid, (size_t)n) < 0) {
			/* only informative */
		}
		/* held from here on: no sweeper unlinks it, under either name */
		if (rename(tmp, rec) < 0) {
			int e = errno;
			unlink(tmp);
			return pyti_err_set(err, e, "rename %s", rec);
		}
		return pyti_steal_fd(&fd);
	}
	return pyti_err_set(err, EAGAIN, "owner record %s: it keeps being swept", rec);
}

void owner_release(const char *parent, const char *name, int fd)
{
	if (fd < 0)
		return;
	_cleanup_free_ char *rec = xasprintf("%s/" OWNER_PREFIX "%s", parent, name);
	unlink(rec);
	close(fd);
}

/* Give a dead run's tree back to the caller (root) before removing it: the sandbox uid (another uid
 * for a root caller) owned it and may have left directories we could not enter otherwise.
 * tree_walk: a link where a directory was is never followed. */
static int chown_back(void *arg, const struct tree_entry *e)
{
	(void)arg;
	mode_t mode = e->st->st_mode;
	/* Best effort throughout: the tree is removed next, and what could not be made ours
	 * shows up there as an error of its own. */
	bool mine = fchownat(e->dirfd, e->name, 0, 0, AT_SYMLINK_NOFOLLOW) == 0;
	if (mine && !S_ISLNK(mode) && (mode & (S_ISUID | S_ISGID)) && fchmodat(e->dirfd, e->name, mode & 0777, 0) < 0)
		return TREE_WALK_SKIP;
	if (S_ISDIR(mode) && fchmodat(e->dirfd, e->name, (mode & 0777) | 0700, 0) < 0)
		return TREE_WALK_SKIP;
	return TREE_WALK_NEXT;
}

int owner_sweep(const char *parent)
{
	_cleanup_closedir_ DIR *d = opendir(parent);
	if (!d)
		return 0;
	int swept = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, OWNER_PREFIX, strlen(OWNER_PREFIX)) != 0)
			continue;
		const char *name = e->d_name + strlen(OWNER_PREFIX);
		bool is_new = str_has_suffix(name, ".new");
		_cleanup_free_ char *rec = xasprintf("%s/%s", parent, e->d_name);
		_cleanup_close_ int fd = open(rec, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
			continue; /* held: its run is alive */
		struct stat a, b;
		if (fstat(fd, &a) < 0 || lstat(rec, &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
			continue; /* replaced meanwhile: look again next time */
		if (is_new) { /* killed between creating and publishing its record: no directory yet */
			unlink(rec);
			continue;
		}
		if (!owner_name_ok(name))
			continue;
		_cleanup_free_ char *dir = xasprintf("%s/%s", parent, name);
		struct stat st;
		if (lstat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
			log_info("removing %s, left by a pyti that was killed", dir);
			_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (dfd >= 0 && geteuid() == 0) {
				if (fchown(dfd, 0, 0) < 0)
					log_debug("chown %s: %s", dir, strerror(errno));
				tree_walk(dfd, 128, chown_back, NULL, NULL);
			}
			struct pyti_err e2 = {0};
			if (rm_rf(dir, &e2) < 0) {
				log_warn("%s", pyti_err_str(&e2));
				continue; /* keep the record: try again next time */
			}
			swept++;
		} else if (lstat(dir, &st) == 0) {
			unlink(dir); /* not ours to have made anything but a directory there */
		}
		unlink(rec);
	}
	return swept;
}

int lock_open_held(const char *path, struct pyti_err *err)
{
	for (int tries = 0; tries < 100; tries++) {
		_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
		if (fd < 0)
			return pyti_err_set(err, errno, "open %s", path);
		if (flock(fd, LOCK_EX) < 0)
			return pyti_err_set(err, errno, "lock %s", path);
		/* a sweeper (or the last holder) may have unlinked it while we waited: a lock on a file
		 * that no longer has the name is no lock at all */
		struct stat a, b;
		if (fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			return pyti_steal_fd(&fd);
	}
	return pyti_err_set(err, EAGAIN, "lock %s: it keeps being replaced", path);
}

void lock_release(const char *path, int fd)
{
	if (fd < 0)
		return;
	unlink(path); /* while still held: a waiter then finds it unnamed and makes a new one */
	close(fd);
}

int lock_sweep(const char *dir, const char *suffix)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	if (!d)
		return 0;
	int swept = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || !str_has_suffix(e->d_name, suffix))
			continue;
		_cleanup_free_ char *p = xasprintf("%s/%s", dir, e->d_name);
		_cleanup_close_ int fd = open(p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0)
			continue;
		struct stat a, b;
		if (fstat(fd, &a) == 0 && S_ISREG(a.st_mode) && lstat(p, &b) == 0 && a.st_ino == b.st_ino &&
		    a.st_dev == b.st_dev && unlink(p) == 0)
			swept++;
	}
	return swept;
}

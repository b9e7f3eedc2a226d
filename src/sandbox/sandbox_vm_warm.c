/* sandbox: the vm backend's warm snapshots and their standby guests, below the job (sandbox_vm.c)
 * and the standby helper (sandbox_vm_standby.c), which both use it: the files of a warm snapshot
 * (struct svm_warm), qcow2 overlays, the standby record (WARM_DIR/standby: its states are parsed
 * and printed here only), restoring the snapshot as a standby, and throwing snapshots and standbys
 * away. Nothing here knows a job. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proc.h"
#include "sandbox-vm-int.h"

int svm_qcow2_overlay(const char *backing, const char *path, struct pyti_err *err)
{
	char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", (char *)backing, (char *)path,
			NULL};
	return proc_run_simple(argv, NULL, 60, err);
}

/* A fresh empty overlay on backing: a copy of a template made once with qemu-img (an empty qcow2
 * overlay is ~200 KB and names its backing file by absolute path), so that a job does not pay
 * for a qemu-img process. */
int svm_overlay_fast(const char *backing, const char *tmpl, const char *path, struct pyti_err *err)
{
	if (!path_exists(tmpl)) {
		_cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", tmpl, (int)getpid());
		if (svm_qcow2_overlay(backing, tmp, err) < 0)
			return -1;
		if (rename(tmp, tmpl) < 0) {
			unlink(tmp);
			return pyti_err_set(err, errno, "rename %s", tmp);
		}
	}
	return copy_file(tmpl, path, 0644, err);
}


/* dir = STATE/vm/<suite>/warm-<key>; the domain is pyti-warm-<key>. */
void svm_warm_init(struct svm_warm *w, const char *dir)
{
	const char *base = strrchr(dir, '/');
	w->dir = xstrdup(dir);
	w->name = xasprintf(VM_NAME_PREFIX "%s", base ? base + 1 : dir);
	w->lock = xasprintf("%s/lock", w->dir);
	w->uri = xasprintf("%s/uri", w->dir);
	w->frozen = xasprintf("%s/frozen.qcow2", w->dir);
	w->io0 = xasprintf("%s/io0.img", w->dir);
	w->sav = xasprintf("%s/state.sav", w->dir);
	w->dx = xasprintf("%s/domain.xml", w->dir);
	w->ok = xasprintf("%s/ok", w->dir);
	w->tmpl = xasprintf("%s/overlay-template.qcow2", w->dir);
	w->sb_sys = xasprintf("%s/standby.qcow2", w->dir);
	w->sb_io = xasprintf("%s/standby-io.img", w->dir);
	w->owner = xasprintf("%s/standby", w->dir);
}

void svm_warm_free(struct svm_warm *w)
{
	free(w->dir);
	free(w->name);
	free(w->lock);
	free(w->uri);
	free(w->frozen);
	free(w->io0);
	free(w->sav);
	free(w->dx);
	free(w->ok);
	free(w->tmpl);
	free(w->sb_sys);
	free(w->sb_io);
	free(w->owner);
}
/* Warm snapshots of older agents/images (other keys) for the same URI that nobody uses: ~70 MB each. */
void svm_prune_warm(struct vm_conn *c, const char *cache, const char *keep, const char *uri)
{
	_cleanup_closedir_ DIR *d = opendir(cache);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, "warm-", 5) != 0 || strcmp(de->d_name, keep) == 0 || strchr(de->d_name, '.'))
			continue;
		_cleanup_free_ char *dir = xasprintf("%s/%s", cache, de->d_name);
		struct svm_warm w = {0};
		svm_warm_init(&w, dir);
		_cleanup_buf_ struct buf u = BUF_INIT(4096);
		if (read_file(w.uri, &u, NULL) == 0 && strcmp(u.data ? u.data : "", uri) == 0) {
			_cleanup_close_ int fd = open(w.lock, O_RDWR | O_CLOEXEC);
			if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) {
				log_info("vm: removing unused warm snapshot %s", dir);
				svm_standby_destroy(c, w.name);
				rm_rf(dir, NULL);
			}
		}
		svm_warm_free(&w);
	}
}

/* ---- the standby: the warm snapshot restored ahead of the next job ----
 *
 * Restoring through libvirt costs ~0.6 s here, over half of it libvirt itself (it reads the
 * guest CPU's ~400 feature properties over QMP whenever it starts a QEMU process), so a warm job
 * does not restore: it adopts a "standby", the warm snapshot restored *paused* by a helper process
 * right after the previous warm job, with its own system overlay and its own I/O disk file
 * (standby.qcow2, standby-io.img; the I/O disk has the snapshot's fixed size). The job writes its
 * files into standby-io.img in place (QEMU has it open but the guest has never read it), resumes
 * the guest if it is paused and says "go". One standby per warm snapshot, owned by whoever holds
 * the warm lock; warm-dir/standby says who that is ("job PID", "prep PID", "warming PID SECONDS",
 * "ready PID SECONDS" with the restore's duration, "failed PID"). PYTI_VM_STANDBY=0 restores inline
 * and leaves nothing running. */

static const char *const svm_state_names[] = {
	[SVM_NONE] = "none", [SVM_PREP] = "prep", [SVM_WARMING] = "warming",
	[SVM_READY] = "ready", [SVM_FAILED] = "failed", [SVM_JOB] = "job",
};

static enum svm_state svm_state_parse(const char *word)
{
	for (size_t i = SVM_PREP; i < ARRAY_SIZE(svm_state_names); i++)
		if (strcmp(word, svm_state_names[i]) == 0)
			return (enum svm_state)i;
	return SVM_NONE;
}

void svm_owner_set(const struct svm_warm *w, enum svm_state st, pid_t pid, double secs)
{
	char line[96];
	const char *what = svm_state_names[st];
	int n = secs > 0 ? snprintf(line, sizeof line, "%s %d %.3f\n", what, (int)pid, secs)
			 : snprintf(line, sizeof line, "%s %d\n", what, (int)pid);
	write_file_atomic(w->owner, line, (size_t)n, 0644, NULL);
}

/* The standby's owner record: its state (SVM_NONE when there is none or it is not one of ours),
 * pid, seconds (or 0). */
enum svm_state svm_owner_get(const struct svm_warm *w, int *pid, double *secs)
{
	_cleanup_buf_ struct buf b = BUF_INIT(4096);
	char what[16];
	*pid = 0;
	*secs = 0;
	if (read_file(w->owner, &b, NULL) < 0 || !b.data || sscanf(b.data, "%15s %d %lf", what, pid, secs) < 2)
		return SVM_NONE;
	return svm_state_parse(what);
}

/* Restore the warm snapshot paused as the standby (we hold the warm lock). */
int svm_standby_restore(struct vm_conn *c, const struct svm_warm *w, vm_console_fn fn, void *arg,
			       struct vm_guest **out, struct pyti_err *err)
{
	_cleanup_buf_ struct buf x = BUF_INIT(4u << 20);
	if (read_file(w->dx, &x, err) < 0 || svm_overlay_fast(w->frozen, w->tmpl, w->sb_sys, err) < 0)
		return -1;
	/* an empty file of the snapshot's I/O disk size: the job writes its file system into it */
	struct stat st;
	if (stat(w->io0, &st) < 0)
		return pyti_err_set(err, errno, "warm snapshot %s", w->io0);
	_cleanup_close_ int fd = open(w->sb_io, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 || ftruncate(fd, st.st_size) < 0)
		return pyti_err_set(err, errno, "standby I/O disk %s", w->sb_io);
	_cleanup_free_ char *xml = buf_steal(&x);
	if (vm_xml_replace_file(&xml, w->frozen, w->sb_sys) < 1 || vm_xml_replace_file(&xml, w->io0, w->sb_io) < 1)
		return pyti_err_set(err, 0, "warm snapshot %s: its domain XML does not name %s and %s", w->dir,
				    w->frozen, w->io0);
	return vm_guest_restore(c, w->sav, xml, VM_RESTORE_PAUSED, fn, arg, out, err);
}

void sandbox_vm_forget_image(const char *state_dir, const char *suite)
{
	_cleanup_free_ char *cache = xasprintf("%s/vm/%s", state_dir, suite);
	_cleanup_closedir_ DIR *d = opendir(cache);
	if (!d)
		return;
	bool busy = false;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "warm-", 5) != 0 || strchr(de->d_name, '.'))
			continue;
		_cleanup_free_ char *dir = xasprintf("%s/%s", cache, de->d_name);
		struct svm_warm w = {0};
		svm_warm_init(&w, dir);
		_cleanup_close_ int fd = open(w.lock, O_RDWR | O_CLOEXEC);
		_cleanup_buf_ struct buf u = BUF_INIT(4096);
		struct vm_conn *c = NULL;
		struct pyti_err err = {0};
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0)
			busy = true;
		else if (read_file(w.uri, &u, NULL) == 0 && u.data && *u.data && vm_connect(u.data, &c, &err) < 0)
			log_warn("vm: %s: its standby guest (if any) stays: %s", de->d_name, pyti_err_str(&err));
		else if (c)
			svm_standby_destroy(c, w.name);
		vm_disconnect(c);
		svm_warm_free(&w);
	}
	struct pyti_err err = {0};
	if (busy)
		log_warn("vm: a job is using a warm snapshot of %s: %s stays", suite, cache);
	else if (rm_rf(cache, &err) < 0)
		log_warn("vm: %s", pyti_err_str(&err));
}

/* The lock is busy: worth waiting for when a helper is restoring the standby (under a second), or
 * finishing; a warming helper is ended at once (the guest is usable, the agent drops the warm-up
 * at "go"); another job on it is not worth waiting for. */
bool svm_wait_for_prep(int lock_fd, const struct svm_warm *w)
{
	int pid;
	double secs;
	for (double end = now_mono() + 30; now_mono() < end;) {
		/* the helper's record: "prep", "warming", and "ready"/"failed" for the moment between
		 * its last word and its exit, which releases the lock */
		enum svm_state st = svm_owner_get(w, &pid, &secs);
		bool helper = st != SVM_NONE && st != SVM_JOB && pid > 0 && !(kill(pid, 0) < 0 && errno == ESRCH);
		if (!helper)
			return flock(lock_fd, LOCK_EX | LOCK_NB) == 0;
		if (st == SVM_WARMING)
			kill(pid, SIGKILL);
		if (flock(lock_fd, LOCK_EX | LOCK_NB) == 0)
			return true;
		usleep(20000);
	}
	return false;
}

/* A standby of a warm snapshot that is going away. */
void svm_standby_destroy(struct vm_conn *c, const char *name)
{
	struct vm_guest *g = NULL;
	struct pyti_err e2 = {0};
	if (vm_guest_adopt(c, name, NULL, NULL, &g, &e2) == 0)
		vm_guest_free(g);
}

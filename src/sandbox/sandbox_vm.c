/* sandbox: the vm backend. One libvirt domain per job, thrown away afterwards:
 *   vda = a fresh qcow2 overlay (cold: on the image's base; warm: on the overlay frozen at the
 *         warm snapshot), vdb = the job's raw ext4 I/O disk written by the DiskHandler.
 * Warm reset (docs/design.md §3): once per image+agent, boot to the agent's "ready" and virDomainSave
 * the guest there. A warm job then takes the *standby* (below): that snapshot already restored,
 * paused, by a helper process after the previous warm job; the job writes its I/O disk into the
 * standby's I/O disk file, resumes the guest and sends "go". The agent has read nothing of the I/O
 * disk before "go", so its contents may change under the saved guest (the agent drops its block
 * cache first). Without a standby the job restores the snapshot itself, the same way.
 *
 * Layout: STATE/vm/<suite>/initrd-<h>.img, STATE/vm/<suite>/warm-<key>/{frozen.qcow2, io0.img,
 * state.sav, domain.xml, ok, uri, lock, standby, standby.qcow2, standby-io.img, standby.log},
 * STATE/vm/run-<pid>-<n>/{system.qcow2, io.img} (cold jobs). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "disk.h"
#include "proc.h"
#include "sandbox-vm-int.h"

/* The guest learns vdb's size at boot and keeps it across a restore, so every warm job's I/O disk
 * has the warm snapshot's size: sparse, so unused space costs nothing. Bigger jobs boot cold. */
#define SVM_WARM_IO_SIZE (4ull << 30)

/* The warm guest zeroes what it frees (init_on_free=1): the memory the boot used and released
 * (initramfs, …) then saves as zero pages, which shrinks the save image from ~113 to ~70 MB and
 * so the restore. It costs the boot 1–3 s under TCG, so cold job boots go without it. */
#define SVM_WARM_CMDLINE_EXTRA " init_on_free=1"


struct svm {
	const struct sandbox_spec *spec;
	struct buf con; /* console bytes not yet parsed (an incomplete line) */
	bool ready, job_end;
	double t_output;     /* now_mono() of the console's last bytes (the hang watchdog) */
	double t_job_start;  /* now_mono() of job_start: the agent has mounted the I/O disk */
	double t_first_task; /* now_mono() of the first task_end (bench/vm-reset reads the log line) */
	char *agent_error;
	int lock_fd;
};

static void svm_on_event(void *arg, json_t *ev)
{
	struct svm *s = arg;
	const char *e = pj_str(ev, "event", "");
	if (strcmp(e, "ready") == 0) {
		s->ready = true;
		return; /* vm-only: the ns backend has no such event */
	}
	if (strcmp(e, "warm") == 0)
		return; /* the standby helper's, vm-only too */
	if (strcmp(e, "job_end") == 0)
		s->job_end = true;
	if (strcmp(e, "job_start") == 0 && !s->t_job_start)
		s->t_job_start = now_mono();
	if (strcmp(e, "task_end") == 0 && !s->t_first_task)
		s->t_first_task = now_mono();
	if (strcmp(e, "error") == 0 && !s->agent_error)
		s->agent_error = xstrdup(pj_str(ev, "message", "?"));
	if (s->spec->on_event)
		s->spec->on_event(s->spec->arg, ev);
}

static void svm_console(void *arg, const char *data, size_t n)
{
	struct svm *s = arg;
	s->t_output = now_mono();
	sandbox_feed_events(&s->con, SVM_LINE_MAX, data, n, false, svm_on_event, s);
}

static bool svm_is_stale(void *arg, const char *name)
{
	(void)arg;
	int pid = 0;
	/* (a warm domain is a standby, or what a dead job left of one: svm_standby_take decides) */
	return sscanf(name, VM_NAME_PREFIX "job-%d-", &pid) == 1 && pid > 0 && pid != getpid() &&
	       kill(pid, 0) < 0 && errno == ESRCH;
}

static long long svm_tree_bytes;
static int svm_tree_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)p;
	(void)flag;
	(void)f;
	svm_tree_bytes += (long long)st->st_size + 4096;
	return 0;
}

/* qemu:///system runs QEMU as libvirt-qemu, which must be able to walk to every file it opens. */
static int svm_check_reach(const char *uri, const char *path, struct pyti_err *err)
{
	if (strcmp(uri, "qemu:///system") != 0 || geteuid() != 0)
		return 0;
	_cleanup_free_ char *p = xstrdup(path);
	for (char *slash = strrchr(p, '/'); slash && slash != p; slash = strrchr(p, '/')) {
		*slash = '\0';
		struct stat st;
		if (stat(p, &st) == 0 && !(st.st_mode & S_IXOTH))
			return pyti_err_usage(err,
					      "the vm backend on %s runs QEMU as user libvirt-qemu, which cannot "
					      "enter %s (mode %o): use a --state-dir outside it, `chmod o+x %s`, "
					      "or --connect qemu:///session",
					      uri, p, st.st_mode & 07777, p);
	}
	return 0;
}

/* The last lines of the console, printable ASCII only, for an error message. */
static char *svm_tail_text(const char *tail)
{
	size_t n = strlen(tail);
	const char *p = n > 600 ? tail + n - 600 : tail;
	char *out = xstrdup(p);
	for (char *q = out; *q; q++)
		if ((*q < 0x20 && *q != '\n') || *q == 0x7f)
			*q = ' ';
	return out;
}

static void svm_fill_crash(struct svm *s, struct vm_guest *g, struct sandbox_result *res, const char *what,
			   struct pyti_err *err)
{
	_cleanup_free_ char *t = svm_tail_text(vm_guest_console_tail(g));
	res->fclass = PYTI_FC_CRASH;
	const char *panic = strstr(vm_guest_console_tail(g), "Kernel panic");
	if (panic) {
		const char *eol = strpbrk(panic, "\r\n");
		int len = eol ? (int)(eol - panic) : (int)strlen(panic);
		pyti_err_class(err, PYTI_FC_CRASH, "vm %s: %s: %.*s", vm_guest_name(g), what, len > 300 ? 300 : len,
			       panic);
	} else if (s->agent_error)
		pyti_err_class(err, PYTI_FC_CRASH, "vm %s: %s: agent error: %s", vm_guest_name(g), what, s->agent_error);
	else
		pyti_err_class(err, PYTI_FC_CRASH, "vm %s: %s; console ends with:\n%s", vm_guest_name(g), what, t);
}

/* Boot xml until the agent says ready (or fails). */
static int svm_boot_ready(struct svm *s, struct vm_conn *c, const char *xml, struct vm_guest **out,
			  struct sandbox_result *res, struct pyti_err *err)
{
	struct vm_guest *g = NULL;
	if (vm_guest_create(c, xml, svm_console, s, &g, err) < 0)
		return -1;
	int w = vm_guest_wait(g, &s->ready, now_mono() + 300, err);
	if (w == 0) {
		*out = g;
		return 0;
	}
	if (w == 1)
		svm_fill_crash(s, g, res, "stopped before the agent was ready", err);
	else if (w == 2) {
		res->fclass = PYTI_FC_TIMEOUT;
		pyti_err_class(err, PYTI_FC_TIMEOUT, "vm %s: no agent ready within 300 s", vm_guest_name(g));
	}
	vm_guest_free(g);
	return -1;
}

/* Make the warm snapshot of this image+agent under dir (we hold dir/lock). */
static int svm_warm_build(struct svm *s, struct vm_conn *c, const struct vm_image *img, const struct svm_warm *w,
			  unsigned mem, unsigned vcpus, struct sandbox_result *res, struct pyti_err *err)
{
	_cleanup_free_ char *xml = NULL, *saved = NULL;
	unlink(w->ok);
	unlink(w->frozen);
	unlink(w->sav);
	if (svm_qcow2_overlay(img->base, w->frozen, err) < 0 || disk_mkfs(w->io0, SVM_WARM_IO_SIZE, err) < 0)
		return -1;
	_cleanup_free_ char *cmdline = xasprintf("%s%s", vm_default_cmdline, SVM_WARM_CMDLINE_EXTRA);
	struct vm_def d = {.name = w->name, .memory_mib = mem, .vcpus = vcpus, .kernel = img->kernel,
			   .initrd = img->initrd, .cmdline = cmdline, .system_disk = w->frozen, .io_disk = w->io0};
	if (vm_domain_xml(&d, vm_conn_uri(c), &xml, err) < 0)
		return -1;
	double t0 = now_mono();
	struct vm_guest *g = NULL;
	if (svm_boot_ready(s, c, xml, &g, res, err) < 0)
		return pyti_err_prefix(err, "warm snapshot");
	double t_ready = now_mono();
	int r = vm_guest_save(g, w->sav, err);
	vm_guest_free(g);
	if (r < 0)
		return pyti_err_prefix(err, "warm snapshot");
	res->vm.warm_boot_s = t_ready - t0;
	res->vm.warm_save_s = now_mono() - t_ready;
	log_info("vm: warm snapshot of %s: boot → ready %.2f s, save %.2f s", w->name, res->vm.warm_boot_s,
		 res->vm.warm_save_s);
	if (vm_save_image_xml(c, w->sav, &saved, err) < 0)
		return -1;
	const char *uri = vm_conn_uri(c);
	if (write_file_atomic(w->dx, saved, strlen(saved), 0644, err) < 0 ||
	    write_file_atomic(w->uri, uri, strlen(uri), 0644, err) < 0)
		return -1;
	return write_file_atomic(w->ok, "ok\n", 3, 0644, err);
}

/* After a warm job: start the helper that restores the next standby, hand it the warm lock, and
 * return at once (double fork: nobody has to reap it). */
static void svm_standby_spawn(struct svm *s, const char *uri, const struct svm_warm *w)
{
	if (s->spec->vm_no_standby)
		return;
	_cleanup_close_pair_ int pfd[2] = {-1, -1};
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		setsid();
		pid_t gc = fork();
		if (gc != 0) {
			int v = gc > 0 ? (int)gc : -1;
			(void)!write(pfd[1], &v, sizeof v);
			_exit(0);
		}
		_cleanup_free_ char *logp = xasprintf("%s/standby.log", w->dir);
		int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
		int log = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(log >= 0 ? log : nul, 2);
		dup2(s->lock_fd, 3); /* the warm lock: dup2 clears close-on-exec, so the helper keeps it */
		close_range(4, ~0u, 0);
		/* a fresh process: libvirt's client state does not survive fork */
		execl("/proc/self/exe", "pyti", "__vm-standby", w->dir, uri, (char *)NULL);
		_exit(127);
	}
	close(pyti_steal_fd(&pfd[1]));
	int gc = -1;
	if (pid > 0) {
		(void)!read(pfd[0], &gc, sizeof gc);
		waitpid(pid, NULL, 0);
	}
	if (gc > 0)
		svm_owner_set(w, SVM_PREP, gc, 0); /* the helper holds the lock now; ours goes at the end */
	else
		log_warn("vm: could not start the standby helper: %s", strerror(errno));
}

/* With the warm lock held: the standby, adopted (paused, restored earlier by the helper) or
 * restored now. *restore_s is how long its restore took and *adopted whether that was earlier. */
static int svm_standby_take(struct svm *s, struct vm_conn *c, const struct svm_warm *w, struct vm_guest **out,
			    double *restore_s, bool *adopted, bool *warm_cut, struct pyti_err *err)
{
	int pid;
	double secs;
	enum svm_state st = svm_owner_get(w, &pid, &secs);
	bool ready = st == SVM_READY || st == SVM_WARMING;
	svm_owner_set(w, SVM_JOB, getpid(), 0);
	struct vm_guest *g = NULL;
	struct pyti_err e2 = {0};
	if (vm_guest_adopt(c, w->name, svm_console, s, &g, &e2) == 0) {
		/* Recorded ready (paused), or warming (its helper ended by svm_wait_for_prep: paused or
		 * still running the warm-up, which "go" ends). Anything else (a guest a job used and
		 * died with) is thrown away. */
		struct stat io_st;
		int paused = vm_guest_paused(g);
		if (ready && (paused == 1 || (paused == 0 && st == SVM_WARMING)) &&
		    stat(w->sb_io, &io_st) == 0 && S_ISREG(io_st.st_mode)) {
			*out = g;
			*restore_s = secs;
			*adopted = true;
			*warm_cut = st == SVM_WARMING;
			return 0;
		}
		log_info("vm: discarding a used or unfinished standby %s", w->name);
		vm_guest_free(g);
	}
	*adopted = false;
	double t0 = now_mono();
	if (svm_standby_restore(c, w, svm_console, s, out, err) < 0)
		return -1;
	*restore_s = now_mono() - t0;
	return 0;
}
/* The I/O disk's size: the job's files + room for out/ (logs, junit, results). */
static int svm_io_size(const char *io_dir, uint64_t *size, struct pyti_err *err)
{
	svm_tree_bytes = 0;
	if (nftw(io_dir, svm_tree_cb, 64, FTW_PHYS) < 0)
		return pyti_err_set(err, errno, "read %s", io_dir);
	*size = ((uint64_t)svm_tree_bytes * 5 / 4 + (256u << 20) + (1u << 20) - 1) & ~((uint64_t)(1u << 20) - 1);
	return 0;
}

/* What one job knows of its image, its guest and its I/O disk. */
struct svm_job {
	struct vm_image img;
	unsigned mem, vcpus;
	char *cache;       /* STATE/vm/<suite> */
	char *key;         /* the warm snapshot's key (16 hex digits) */
	struct svm_warm w; /* its files */
	const char *io;    /* the I/O disk the guest has: the job's own, or the standby's */
	struct vm_guest *g;
	double t0;         /* the job's start, for setup_s */
};

/* The warm snapshot of this image + agent + domain shape, used by one job at a time: 1 when this
 * job holds its lock (a helper restoring the standby is waited for, a job is not), 0 when it boots
 * cold, -1 on error. */
static int svm_warm_lock(struct svm *s, struct svm_job *j, const char *uri, struct pyti_err *err)
{
	_cleanup_free_ char *key_src = xasprintf("%s %u %u %s %llu %s%s %s", j->img.key, j->mem, j->vcpus,
						vm_domain_type(uri), SVM_WARM_IO_SIZE, vm_default_cmdline,
						SVM_WARM_CMDLINE_EXTRA, uri);
	char key[65];
	sha256_hex(key_src, strlen(key_src), key);
	key[16] = '\0';
	j->key = xstrdup(key);
	_cleanup_free_ char *warm_dir = xasprintf("%s/warm-%s", j->cache, key);
	svm_warm_init(&j->w, warm_dir);
	if (mkdir_p(j->w.dir, 0755, err) < 0)
		return -1;
	s->lock_fd = open(j->w.lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (s->lock_fd >= 0 && (flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0 || svm_wait_for_prep(s->lock_fd, &j->w)))
		return 1;
	log_info("vm: the warm snapshot is in use by another job: booting cold");
	return 0;
}

/* Warm start: the snapshot (built first if need be), its standby taken, the job's files written
 * into the standby's I/O disk, the guest resumed. 1 when that failed in a way a cold boot may
 * mend (the snapshot is then rebuilt next time), 0 on success, -1 on error. */
static int svm_start_warm(struct svm *s, struct vm_conn *c, struct svm_job *j, struct sandbox_result *res,
			  struct pyti_err *err)
{
	const struct sandbox_spec *spec = s->spec;
	if (!path_exists(j->w.ok)) {
		svm_standby_destroy(c, j->w.name);
		if (svm_warm_build(s, c, &j->img, &j->w, j->mem, j->vcpus, res, err) < 0)
			return -1;
		_cleanup_free_ char *keep = xasprintf("warm-%s", j->key);
		svm_prune_warm(c, j->cache, keep, vm_conn_uri(c));
	}
	double restore_s = 0;
	bool adopted = false, warm_cut = false;
	j->t0 = now_mono(); /* the job itself starts here */
	if (svm_standby_take(s, c, &j->w, &j->g, &restore_s, &adopted, &warm_cut, err) < 0) {
		/* e.g. a save image from an older QEMU: boot this job, rebuild the snapshot next time */
		log_warn("vm: %s; booting instead, the warm snapshot will be rebuilt", pyti_err_str(err));
		pyti_err_clear(err);
		unlink(j->w.ok);
		j->t0 = now_mono();
		return 1;
	}
	double t_take = now_mono();
	if (disk_from_dir_in_place(j->w.sb_io, spec->io_dir, err) < 0)
		return -1;
	j->io = j->w.sb_io;
	double t_disk = now_mono();
	if (vm_guest_paused(j->g) == 1 && vm_guest_resume(j->g, err) < 0)
		return -1;
	s->ready = true; /* saved at "ready"; the agent waits for "go" */
	/* the I/O disk is written outside the timing, as it is before a cold boot */
	double ready_s = now_mono() - t_disk + (t_take - j->t0);
	res->vm.reset = adopted ? "standby" : "restore";
	res->vm.ready_s = ready_s;
	res->vm.restore_s = restore_s;
	if (adopted)
		log_info("vm: standby → ready %.2f s (its restore ran after the previous job: %.2f s%s)", ready_s,
			 restore_s, warm_cut ? "; its warm-up cut short" : "");
	else
		log_info("vm: restore → ready %.2f s (restore %.2f s)", ready_s, restore_s);
	j->t0 = now_mono() - ready_s;
	return 0;
}

/* Cold start: the job's own I/O disk and system overlay, a fresh domain booted to "ready". */
static int svm_start_cold(struct svm *s, struct vm_conn *c, struct svm_job *j, const char *rundir,
			  uint64_t io_size, struct sandbox_result *res, struct pyti_err *err)
{
	const struct sandbox_spec *spec = s->spec;
	_cleanup_free_ char *ov = xasprintf("%s/system.qcow2", rundir);
	if (disk_from_dir(j->io, spec->io_dir, io_size, err) < 0)
		return -1;
	j->t0 = now_mono();
	_cleanup_free_ char *tmpl = xasprintf("%s/overlay-%.16s.qcow2", j->cache, j->img.key);
	if (svm_overlay_fast(j->img.base, tmpl, ov, err) < 0)
		return -1;
	static unsigned counter;
	_cleanup_free_ char *name = xasprintf(VM_NAME_PREFIX "job-%d-%u", (int)getpid(), ++counter);
	_cleanup_free_ char *xml = NULL;
	struct vm_def d = {.name = name, .memory_mib = j->mem, .vcpus = j->vcpus, .kernel = j->img.kernel,
			   .initrd = j->img.initrd, .system_disk = ov, .io_disk = j->io};
	if (vm_domain_xml(&d, vm_conn_uri(c), &xml, err) < 0 || svm_boot_ready(s, c, xml, &j->g, res, err) < 0)
		return -1;
	res->vm.reset = "cold";
	res->vm.ready_s = now_mono() - j->t0;
	log_info("vm: cold boot → ready %.2f s", res->vm.ready_s);
	return 0;
}

/* "go", then wait for job_end against the backstop and the hang watchdog. 0: the job ended;
 * 1: it did not (crash, hang or timeout: err and res->fclass say which); -1: an error. */
static int svm_watch_job(struct svm *s, struct vm_guest *g, struct sandbox_result *res, struct pyti_err *err)
{
	const struct sandbox_spec *spec = s->spec;
	/* "go EPOCH": the clock of a restored guest is as old as its snapshot */
	char go[64];
	snprintf(go, sizeof go, "go %.3f\n", now_wall());
	if (vm_guest_send(g, go, strlen(go), err) < 0)
		return -1;
	double t_go = now_mono();
	double deadline = spec->timeout_s > 0 ? t_go + spec->timeout_s : 0;
	/* A hung guest (a kernel that stopped, a livelock) prints nothing, while the agent prints a
	 * heartbeat every 10 s during a task: silence much longer than that ends the job early
	 * instead of at the backstop, which may be hours away. */
	double hang_s = spec->vm_hang_s;
	s->t_output = t_go;
	int wr;
	bool hung = false;
	for (;;) {
		double until = now_mono() + 1;
		if (deadline > 0 && deadline < until)
			until = deadline;
		wr = vm_guest_wait(g, &s->job_end, until, err);
		if (wr != 2 || (deadline > 0 && now_mono() >= deadline))
			break;
		if (now_mono() - s->t_output > hang_s) {
			hung = true;
			break;
		}
	}
	if (wr < 0)
		return -1;
	if (s->t_first_task)
		res->vm.first_task_s = s->t_first_task - t_go;
	if (wr == 0) {
		log_info("vm: go → job start %.2f s, → first task done %.2f s, → job_end %.2f s",
			 s->t_job_start ? s->t_job_start - t_go : -1.0, s->t_first_task ? s->t_first_task - t_go : -1.0,
			 now_mono() - t_go);
		/* The agent synced and unmounted /io before job_end, and QEMU has written what the guest
		 * flushed: the guest's power-off (a second under TCG) has nothing left to do. */
		return 0;
	}
	if (wr == 1) {
		svm_fill_crash(s, g, res, "the guest stopped before the job ended", err);
	} else if (hung) {
		res->fclass = PYTI_FC_TIMEOUT;
		_cleanup_free_ char *t = svm_tail_text(vm_guest_console_tail(g));
		pyti_err_class(err, PYTI_FC_TIMEOUT,
			       "vm %s: the guest printed nothing for %.0f s (hung); console ends with:\n%s",
			       vm_guest_name(g), hang_s, t);
	} else {
		res->fclass = PYTI_FC_TIMEOUT;
		pyti_err_class(err, PYTI_FC_TIMEOUT, "vm %s: the job did not end within %.0f s", vm_guest_name(g),
			       spec->timeout_s);
	}
	return 1;
}

static int svm_run(struct svm *s, struct vm_conn *c, const char *rundir, struct sandbox_result *res,
		   struct pyti_err *err)
{
	const struct sandbox_spec *spec = s->spec;
	const char *uri = vm_conn_uri(c);
	const char *slash = strrchr(spec->image_dir, '/');
	const char *suite = slash && slash[1] ? slash + 1 : spec->image_dir;
	struct svm_job j = {.mem = spec->vm_memory_mib, .vcpus = spec->vm_vcpus};
	j.cache = xasprintf("%s/vm/%s", spec->state_dir, suite);
	if (vm_image_prepare(spec->image_dir, spec->agent_path, j.cache, &j.img, err) < 0) {
		free(j.cache);
		return -1;
	}
	int r = -1;
	_cleanup_free_ char *io_cold = xasprintf("%s/io.img", rundir);
	j.io = io_cold;
	_cleanup_free_ char *outdir = xasprintf("%s/out", spec->io_dir);
	_cleanup_free_ char *results = xasprintf("%s/results.json", outdir);
	uint64_t io_size = 0;
	if (svm_check_reach(uri, j.img.base, err) < 0 || svm_check_reach(uri, j.img.initrd, err) < 0 ||
	    svm_check_reach(uri, io_cold, err) < 0 || svm_io_size(spec->io_dir, &io_size, err) < 0)
		goto out;
	bool cold = spec->cold;
	if (!cold && io_size > SVM_WARM_IO_SIZE) {
		log_info("vm: %llu MiB of job files: too big for the warm snapshot's I/O disk, booting cold",
			 (unsigned long long)(io_size >> 20));
		cold = true;
	}
	int lk = cold ? 0 : svm_warm_lock(s, &j, uri, err);
	if (lk < 0)
		goto out;
	bool warm = lk == 1;
	if (vm_cleanup_stale(c, svm_is_stale, s, err) < 0)
		goto out;

	j.t0 = now_mono();
	if (warm) {
		int w = svm_start_warm(s, c, &j, res, err);
		if (w < 0)
			goto out;
		warm = w == 0;
	}
	if (!warm && svm_start_cold(s, c, &j, rundir, io_size, res, err) < 0)
		goto out;
	res->setup_s = now_mono() - j.t0;

	int wr = svm_watch_job(s, j.g, res, err);
	if (wr < 0)
		goto out;
	vm_guest_free(j.g);
	j.g = NULL;

	/* results (also partial ones after a crash or timeout: logs help) */
	struct pyti_err derr = {0};
	int dl = disk_download_flags(j.io, "/out", outdir, DISK_DL_SKIP_UNSAFE_LINKS, &derr);
	if (warm)
		svm_standby_spawn(s, uri, &j.w);
	if (wr != 0)
		goto out;
	if (dl < 0) {
		*err = derr;
		pyti_err_prefix(err, "vm: reading the I/O disk back");
		goto out;
	}
	if (!path_exists(results)) {
		pyti_err_class(err, PYTI_FC_CRASH, "vm: the agent ended without writing out/results.json%s%s",
			       s->agent_error ? ": " : "", s->agent_error ? s->agent_error : "");
		res->fclass = PYTI_FC_CRASH;
		goto out;
	}
	res->agent_status = 0;
	r = 0;
out:
	vm_guest_free(j.g);
	vm_image_free(&j.img);
	svm_warm_free(&j.w);
	free(j.cache);
	free(j.key);
	return r;
}

/* Run directories of pyti processes that died (killed mid-job): their domains are cleaned by
 * vm_cleanup_stale, their files here. Like that, it judges by pids of this pid namespace: a state
 * directory shared with pyti processes in other pid namespaces is not supported. */
static void svm_remove_stale_rundirs(const char *state_dir)
{
	_cleanup_free_ char *vmdir = xasprintf("%s/vm", state_dir);
	_cleanup_closedir_ DIR *d = opendir(vmdir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		int pid = 0;
		unsigned n = 0;
		if (sscanf(de->d_name, "run-%d-%u", &pid, &n) != 2 || pid <= 0 || pid == getpid() ||
		    !(kill(pid, 0) < 0 && errno == ESRCH))
			continue;
		_cleanup_free_ char *p = xasprintf("%s/%s", vmdir, de->d_name);
		struct pyti_err e2 = {0};
		if (rm_rf(p, &e2) < 0)
			log_warn("vm: %s", pyti_err_str(&e2));
	}
}

int sandbox_vm_run(const struct sandbox_spec *spec, struct sandbox_result *res, struct pyti_err *err)
{
	*res = (struct sandbox_result){.agent_status = -1, .vm = {NULL, -1, -1, -1, -1, -1}};
	if (!spec->image_dir || !spec->io_dir || !spec->state_dir || !spec->agent_path)
		return pyti_err_usage(err, "vm backend: image_dir, io_dir, state_dir and agent_path are required");
	if (spec->network)
		return pyti_err_usage(err, "vm backend: guests have no network (the fetch sandbox is ns only)");
	double t0 = now_mono();
	struct svm s = {.spec = spec, .con = BUF_INIT(0), .lock_fd = -1};
	struct vm_conn *c = NULL;
	static unsigned counter;
	_cleanup_free_ char *rundir = xasprintf("%s/vm/run-%d-%u", spec->state_dir, (int)getpid(), ++counter);
	int r = vm_connect(spec->vm_uri, &c, err);
	if (r == 0) {
		svm_remove_stale_rundirs(spec->state_dir);
		r = mkdir_p(rundir, 0755, err);
		if (r == 0)
			r = svm_run(&s, c, rundir, res, err);
		struct pyti_err e2 = {0};
		if (rm_rf(rundir, &e2) < 0)
			log_warn("vm: %s", pyti_err_str(&e2));
	}
	if (r < 0 && !err->fclass)
		err->fclass = res->fclass ? res->fclass : PYTI_FC_INFRA;
	vm_disconnect(c);
	if (s.lock_fd >= 0)
		close(s.lock_fd);
	buf_free(&s.con);
	free(s.agent_error);
	res->wall_s = now_mono() - t0;
	return r;
}

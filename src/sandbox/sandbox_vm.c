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
#include "sandbox-vm.h"
#include "vm.h"

/* The guest learns vdb's size at boot and keeps it across a restore, so every warm job's I/O disk
 * has the warm snapshot's size: sparse, so unused space costs nothing. Bigger jobs boot cold. */
#define SVM_WARM_IO_SIZE (4ull << 30)

/* The warm guest zeroes what it frees (init_on_free=1): the memory the boot used and released
 * (initramfs, …) then saves as zero pages, which shrinks the save image from ~113 to ~70 MB and
 * so the restore. It costs the boot 1–3 s under TCG, so cold job boots go without it. */
#define SVM_WARM_CMDLINE_EXTRA " init_on_free=1"

#define SVM_LINE_MAX (1u << 20) /* an event line longer than this is console noise */

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

static unsigned svm_env_uint(const char *name, unsigned dflt)
{
	const char *e = getenv(name);
	unsigned long v = e && *e ? strtoul(e, NULL, 10) : 0;
	return v ? (unsigned)v : dflt;
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

static int svm_qcow2_overlay(const char *backing, const char *path, struct pyti_err *err)
{
	char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", (char *)backing, (char *)path,
			NULL};
	return proc_run_simple(argv, NULL, 60, err);
}

/* A fresh empty overlay on backing: a copy of a template made once with qemu-img (an empty qcow2
 * overlay is ~200 KB and names its backing file by absolute path), so that a job does not pay
 * for a qemu-img process. */
static int svm_overlay_fast(const char *backing, const char *tmpl, const char *path, struct pyti_err *err)
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

/* The files of one warm snapshot (STATE/vm/<suite>/warm-<key>, see the layout above) and its
 * standby's domain name. */
struct svm_warm {
	char *dir, *name, *lock, *uri, *frozen, *io0, *sav, *dx, *ok, *tmpl, *sb_sys, *sb_io, *owner;
};

/* dir = STATE/vm/<suite>/warm-<key>; the domain is pyti-warm-<key>. */
static void svm_warm_init(struct svm_warm *w, const char *dir)
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

static void svm_warm_free(struct svm_warm *w)
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
static void svm_standby_destroy(struct vm_conn *c, const char *name);
static void svm_prune_warm(struct vm_conn *c, const char *cache, const char *keep, const char *uri)
{
	DIR *d = opendir(cache);
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
	if (d)
		closedir(d);
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
	log_info("vm: warm snapshot of %s: boot → ready %.2f s, save %.2f s", w->name, t_ready - t0,
		 now_mono() - t_ready);
	if (vm_save_image_xml(c, w->sav, &saved, err) < 0)
		return -1;
	const char *uri = vm_conn_uri(c);
	if (write_file_atomic(w->dx, saved, strlen(saved), 0644, err) < 0 ||
	    write_file_atomic(w->uri, uri, strlen(uri), 0644, err) < 0)
		return -1;
	return write_file_atomic(w->ok, "ok\n", 3, 0644, err);
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

/* The standby record's states (WARM_DIR/standby, docs/contracts.md), parsed and printed here only. */
enum svm_state { SVM_NONE, SVM_PREP, SVM_WARMING, SVM_READY, SVM_FAILED, SVM_JOB };
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

static void svm_owner_set(const struct svm_warm *w, enum svm_state st, pid_t pid, double secs)
{
	char line[96];
	const char *what = svm_state_names[st];
	int n = secs > 0 ? snprintf(line, sizeof line, "%s %d %.3f\n", what, (int)pid, secs)
			 : snprintf(line, sizeof line, "%s %d\n", what, (int)pid);
	write_file_atomic(w->owner, line, (size_t)n, 0644, NULL);
}

/* The standby's owner record: its state (SVM_NONE when there is none or it is not one of ours),
 * pid, seconds (or 0). */
static enum svm_state svm_owner_get(const struct svm_warm *w, int *pid, double *secs)
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
static int svm_standby_restore(struct vm_conn *c, const struct svm_warm *w, vm_console_fn fn, void *arg,
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

/* The helper's view of the console: it waits for the agent's "warm" event. */
struct svm_warmup {
	struct buf con;
	bool warm;
};

static void svm_warmup_event(void *arg, json_t *ev)
{
	struct svm_warmup *wu = arg;
	if (strcmp(pj_str(ev, "event", ""), "warm") == 0)
		wu->warm = true;
}

static void svm_warmup_console(void *arg, const char *data, size_t n)
{
	struct svm_warmup *wu = arg;
	sandbox_feed_events(&wu->con, SVM_LINE_MAX, data, n, false, svm_warmup_event, wu);
}

/* `pyti __vm-standby WARM_DIR URI`, started by svm_standby_spawn with the warm lock as fd 3 (held
 * until this process exits) and stderr on WARM_DIR/standby.log. Record: "prep" while it restores,
 * "warming" while the guest warms up (a job may kill it then and take the guest as it is), "ready"
 * once the guest is paused again. */
int sandbox_vm_standby_main(const char *warm_dir, const char *uri)
{
	struct svm_warm w = {0};
	svm_warm_init(&w, warm_dir);
	struct pyti_err err = {0};
	struct vm_conn *c = NULL;
	struct vm_guest *g = NULL;
	struct svm_warmup wu = {.con = BUF_INIT(0)};
	double t0 = now_mono(), t_restored = 0;
	int r = -1;
	/* restored paused, then warmed up (the agent runs the image's Python once, see agent/vm.c:
	 * TCG's translation cache is not in the snapshot) and paused again for the next job */
	if (vm_connect(uri, &c, &err) == 0 && svm_standby_restore(c, &w, svm_warmup_console, &wu, &g, &err) == 0) {
		t_restored = now_mono();
		/* usable from here on: a job that comes now ends the warm-up (svm_wait_for_prep) */
		svm_owner_set(&w, SVM_WARMING, getpid(), t_restored - t0);
		int wr = -1;
		if (vm_guest_resume(g, &err) == 0 && vm_guest_send(g, "warm\n", 5, &err) == 0)
			wr = vm_guest_wait(g, &wu.warm, now_mono() + 120, &err);
		if (wr == 0 && vm_guest_suspend(g, &err) == 0) {
			log_info("vm: standby %s restored in %.2f s, warmed up in %.2f s", w.name, t_restored - t0,
				 now_mono() - t_restored);
			svm_owner_set(&w, SVM_READY, getpid(), t_restored - t0);
			vm_guest_release(g);
			g = NULL;
			r = 0;
		} else if (wr > 0) {
			pyti_err_set(&err, 0, "the guest %s during its warm-up",
				     wr == 1 ? "stopped" : "did not answer within 120 s");
		}
	}
	if (r < 0) {
		log_warn("vm: standby for %s: %s", w.name, pyti_err_str(&err));
		svm_owner_set(&w, SVM_FAILED, getpid(), 0);
		vm_guest_free(g);
	}
	vm_disconnect(c);
	buf_free(&wu.con);
	svm_warm_free(&w);
	return r < 0 ? PYTI_EXIT_INFRA : 0;
}

void sandbox_vm_forget_image(const char *state_dir, const char *suite)
{
	_cleanup_free_ char *cache = xasprintf("%s/vm/%s", state_dir, suite);
	DIR *d = opendir(cache);
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
	closedir(d);
	struct pyti_err err = {0};
	if (busy)
		log_warn("vm: a job is using a warm snapshot of %s: %s stays", suite, cache);
	else if (rm_rf(cache, &err) < 0)
		log_warn("vm: %s", pyti_err_str(&err));
}

/* After a warm job: start the helper that restores the next standby, hand it the warm lock, and
 * return at once (double fork: nobody has to reap it). */
static void svm_standby_spawn(struct svm *s, const char *uri, const struct svm_warm *w)
{
	const char *e = getenv("PYTI_VM_STANDBY");
	if (e && strcmp(e, "0") == 0)
		return;
	int pfd[2];
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
	close(pfd[1]);
	int gc = -1;
	if (pid > 0) {
		(void)!read(pfd[0], &gc, sizeof gc);
		waitpid(pid, NULL, 0);
	}
	close(pfd[0]);
	if (gc > 0)
		svm_owner_set(w, SVM_PREP, gc, 0); /* the helper holds the lock now; ours goes at the end */
	else
		log_warn("vm: could not start the standby helper: %s", strerror(errno));
}

/* The lock is busy: worth waiting for when a helper is restoring the standby (under a second), or
 * finishing; a warming helper is ended at once (the guest is usable, the agent drops the warm-up
 * at "go"); another job on it is not worth waiting for. */
static bool svm_wait_for_prep(int lock_fd, const struct svm_warm *w)
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

/* A standby of a warm snapshot that is going away. */
static void svm_standby_destroy(struct vm_conn *c, const char *name)
{
	struct vm_guest *g = NULL;
	struct pyti_err e2 = {0};
	if (vm_guest_adopt(c, name, NULL, NULL, &g, &e2) == 0)
		vm_guest_free(g);
}

static int svm_run(struct svm *s, struct vm_conn *c, const char *rundir, struct sandbox_result *res,
		   struct pyti_err *err)
{
	const struct sandbox_spec *spec = s->spec;
	const char *uri = vm_conn_uri(c);
	const char *slash = strrchr(spec->image_dir, '/');
	const char *suite = slash && slash[1] ? slash + 1 : spec->image_dir;
	_cleanup_free_ char *cache = xasprintf("%s/vm/%s", spec->state_dir, suite);
	unsigned mem = svm_env_uint("PYTI_VM_MEMORY_MIB", 1024), vcpus = svm_env_uint("PYTI_VM_VCPUS", 1);

	struct vm_image img = {0};
	if (vm_image_prepare(spec->image_dir, spec->agent_path, cache, &img, err) < 0)
		return -1;
	int r = -1;
	struct vm_guest *g = NULL;
	struct svm_warm w = {0};
	_cleanup_free_ char *xml = NULL, *key_src = NULL, *warm_dir = NULL;
	_cleanup_free_ char *ov = xasprintf("%s/system.qcow2", rundir);
	_cleanup_free_ char *io_cold = xasprintf("%s/io.img", rundir);
	const char *io = io_cold; /* the I/O disk the guest has: the job's own, or the standby's */
	_cleanup_free_ char *outdir = xasprintf("%s/out", spec->io_dir);
	_cleanup_free_ char *results = xasprintf("%s/results.json", outdir);
	if (svm_check_reach(uri, img.base, err) < 0 || svm_check_reach(uri, img.initrd, err) < 0 ||
	    svm_check_reach(uri, io_cold, err) < 0)
		goto out;

	/* I/O disk: the job's files + room for out/ (logs, junit, results) */
	svm_tree_bytes = 0;
	if (nftw(spec->io_dir, svm_tree_cb, 64, FTW_PHYS) < 0) {
		pyti_err_set(err, errno, "read %s", spec->io_dir);
		goto out;
	}
	uint64_t io_size = ((uint64_t)svm_tree_bytes * 5 / 4 + (256u << 20) + (1u << 20) - 1) & ~((uint64_t)(1u << 20) - 1);
	bool cold = spec->cold;
	if (!cold && io_size > SVM_WARM_IO_SIZE) {
		log_info("vm: %llu MiB of job files: too big for the warm snapshot's I/O disk, booting cold",
			 (unsigned long long)(io_size >> 20));
		cold = true;
	}

	/* warm snapshot: one per image + agent + domain shape, used by one job at a time */
	key_src = xasprintf("%s %u %u %s %llu %s%s %s", img.key, mem, vcpus, vm_domain_type(uri),
			    SVM_WARM_IO_SIZE, vm_default_cmdline, SVM_WARM_CMDLINE_EXTRA, uri);
	char key[65];
	sha256_hex(key_src, strlen(key_src), key);
	key[16] = '\0';
	warm_dir = xasprintf("%s/warm-%s", cache, key);
	svm_warm_init(&w, warm_dir);
	bool warm = false;
	if (!cold) {
		if (mkdir_p(w.dir, 0755, err) < 0)
			goto out;
		s->lock_fd = open(w.lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		/* Busy: wait for a helper restoring the standby, boot cold rather than wait for a job. */
		if (s->lock_fd >= 0 &&
		    (flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0 || svm_wait_for_prep(s->lock_fd, &w)))
			warm = true;
		else
			log_info("vm: the warm snapshot is in use by another job: booting cold");
	}
	if (vm_cleanup_stale(c, svm_is_stale, s, err) < 0)
		goto out;

	double t0 = now_mono();
	if (warm) {
		if (!path_exists(w.ok)) {
			svm_standby_destroy(c, w.name);
			if (svm_warm_build(s, c, &img, &w, mem, vcpus, res, err) < 0)
				goto out;
			_cleanup_free_ char *keep = xasprintf("warm-%s", key);
			svm_prune_warm(c, cache, keep, uri);
		}
		double restore_s = 0;
		bool adopted = false, warm_cut = false;
		t0 = now_mono(); /* the job itself starts here */
		if (svm_standby_take(s, c, &w, &g, &restore_s, &adopted, &warm_cut, err) == 0) {
			double t_take = now_mono();
			if (disk_from_dir_in_place(w.sb_io, spec->io_dir, err) < 0)
				goto out;
			io = w.sb_io;
			double t_disk = now_mono();
			if (vm_guest_paused(g) == 1 && vm_guest_resume(g, err) < 0)
				goto out;
			s->ready = true; /* saved at "ready"; the agent waits for "go" */
			/* the I/O disk is written outside the timing, as it is before a cold boot */
			double ready_s = now_mono() - t_disk + (t_take - t0);
			if (adopted)
				log_info("vm: standby → ready %.2f s (its restore ran after the previous job: %.2f s%s)",
					 ready_s, restore_s, warm_cut ? "; its warm-up cut short" : "");
			else
				log_info("vm: restore → ready %.2f s (restore %.2f s)", ready_s, restore_s);
			t0 = now_mono() - ready_s;
		} else {
			/* e.g. a save image from an older QEMU: boot this job, rebuild the snapshot next time */
			log_warn("vm: %s; booting instead, the warm snapshot will be rebuilt", pyti_err_str(err));
			pyti_err_clear(err);
			unlink(w.ok);
			warm = false;
			t0 = now_mono();
		}
	}
	if (!warm) {
		if (disk_from_dir(io_cold, spec->io_dir, io_size, err) < 0)
			goto out;
		t0 = now_mono();
		_cleanup_free_ char *tmpl = xasprintf("%s/overlay-%.16s.qcow2", cache, img.key);
		if (svm_overlay_fast(img.base, tmpl, ov, err) < 0)
			goto out;
		static unsigned counter;
		_cleanup_free_ char *name = xasprintf(VM_NAME_PREFIX "job-%d-%u", (int)getpid(), ++counter);
		struct vm_def d = {.name = name, .memory_mib = mem, .vcpus = vcpus, .kernel = img.kernel,
				   .initrd = img.initrd, .system_disk = ov, .io_disk = io_cold};
		if (vm_domain_xml(&d, uri, &xml, err) < 0 || svm_boot_ready(s, c, xml, &g, res, err) < 0)
			goto out;
		log_info("vm: cold boot → ready %.2f s", now_mono() - t0);
	}
	res->setup_s = now_mono() - t0;

	/* "go EPOCH": the clock of a restored guest is as old as its snapshot */
	char go[64];
	snprintf(go, sizeof go, "go %.3f\n", now_wall());
	if (vm_guest_send(g, go, strlen(go), err) < 0)
		goto out;
	double t_go = now_mono();
	double deadline = spec->timeout_s > 0 ? t_go + spec->timeout_s : 0;
	/* A hung guest (a kernel that stopped, a livelock) prints nothing, while the agent prints a
	 * heartbeat every 10 s during a task: silence much longer than that ends the job early
	 * instead of at the backstop, which may be hours away. */
	double hang_s = svm_env_uint("PYTI_VM_HANG_S", 120);
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
		goto out;
	if (wr == 0) {
		log_info("vm: go → job start %.2f s, → first task done %.2f s, → job_end %.2f s",
			 s->t_job_start ? s->t_job_start - t_go : -1.0, s->t_first_task ? s->t_first_task - t_go : -1.0,
			 now_mono() - t_go);
		/* The agent synced and unmounted /io before job_end, and QEMU has written what the guest
		 * flushed: the guest's power-off (a second under TCG) has nothing left to do. */
	} else if (wr == 1) {
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
	vm_guest_free(g);
	g = NULL;

	/* results (also partial ones after a crash or timeout: logs help) */
	struct pyti_err derr = {0};
	int dl = disk_download_flags(io, "/out", outdir, DISK_DL_SKIP_UNSAFE_LINKS, &derr);
	if (warm)
		svm_standby_spawn(s, uri, &w);
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
	vm_guest_free(g);
	vm_image_free(&img);
	svm_warm_free(&w);
	return r;
}

/* Run directories of pyti processes that died (killed mid-job): their domains are cleaned by
 * vm_cleanup_stale, their files here. Like that, it judges by pids of this pid namespace: a state
 * directory shared with pyti processes in other pid namespaces is not supported. */
static void svm_remove_stale_rundirs(const char *state_dir)
{
	_cleanup_free_ char *vmdir = xasprintf("%s/vm", state_dir);
	DIR *d = opendir(vmdir);
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
	if (d)
		closedir(d);
}

int sandbox_vm_run(const struct sandbox_spec *spec, struct sandbox_result *res, struct pyti_err *err)
{
	*res = (struct sandbox_result){.agent_status = -1};
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

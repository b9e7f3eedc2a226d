/* sandbox: the vm backend's standby helper, the hidden command `pyti __vm-standby WARM_DIR URI`
 * that sandbox_vm.c starts after a warm job: it restores the warm snapshot paused as the next job's
 * standby and warms the guest's Python once (sandbox_vm_warm.c holds the record it keeps). */
#include <string.h>
#include <unistd.h>

#include "sandbox-vm-int.h"

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

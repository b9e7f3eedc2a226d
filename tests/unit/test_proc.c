/* Unit tests for proc: real processes, real limits. Every tree the tests start is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "proc.h"

static const char *py(void)
{
	return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

static void run_sh(const char *script, const struct proc_limits *lim, struct proc_result *res)
{
	char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
	struct proc_spec spec = {.argv = argv};
	if (lim)
		spec.lim = *lim;
	struct pyti_err err = {0};
	assert_int_equal(proc_run(&spec, res, &err), 0);
}

/* No child of ours may be left, neither running nor as a zombie. */
static void assert_no_children(void)
{
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static void test_exit_codes(void **state)
{
	(void)state;
	struct proc_result res;
	run_sh("echo hello; exit 3", NULL, &res);
	assert_int_equal(res.exit_code, 3);
	assert_int_equal(res.signal, 0);
	assert_int_equal(res.fclass, PYTI_FC_NONE);
	assert_string_equal(res.output, "hello\n");
	assert_int_equal(res.output_bytes, 6);
	assert_false(res.output_truncated);
	assert_true(res.wall_s >= 0 && res.wall_s < 5);
	proc_result_free(&res);

	run_sh("echo to-stderr >&2; exit 0", NULL, &res);
	assert_int_equal(res.exit_code, 0);
	assert_string_equal(res.output, "to-stderr\n");
	proc_result_free(&res);
	assert_no_children();
}

static void test_signal(void **state)
{
	(void)state;
	struct proc_result res;
	run_sh("kill -TERM $$; sleep 5", NULL, &res);
	assert_int_equal(res.exit_code, -1);
	assert_int_equal(res.signal, SIGTERM);
	assert_int_equal(res.fclass, PYTI_FC_NONE);
	proc_result_free(&res);
	assert_no_children();
}

static void test_exec_failure(void **state)
{
	(void)state;
	char *argv[] = {"/nonexistent/pyti-no-such-tool", NULL};
	struct proc_spec spec = {.argv = argv};
	struct proc_result res;
	struct pyti_err err = {0};
	assert_int_equal(proc_run(&spec, &res, &err), -1);
	assert_int_equal(err.errnum, ENOENT);
	assert_non_null(strstr(err.msg, "pyti-no-such-tool"));

	char *argv2[] = {"true", NULL};
	struct proc_spec spec2 = {.argv = argv2, .cwd = "/nonexistent-dir"};
	assert_int_equal(proc_run(&spec2, &res, &err), -1);
	assert_non_null(strstr(err.msg, "chdir"));
	assert_no_children();
}

static void test_env_cwd(void **state)
{
	(void)state;
	char *argv[] = {"sh", "-c", "echo $FOO; pwd", NULL};
	char *envp[] = {"FOO=bar baz", "PATH=/usr/bin:/bin", NULL};
	struct proc_spec spec = {.argv = argv, .envp = envp, .cwd = "/tmp"};
	struct proc_result res;
	struct pyti_err err = {0};
	assert_int_equal(proc_run(&spec, &res, &err), 0);
	assert_int_equal(res.exit_code, 0);
	assert_string_equal(res.output, "bar baz\n/tmp\n");
	proc_result_free(&res);
}

static void test_timeout(void **state)
{
	(void)state;
	struct proc_result res;
	struct proc_limits lim = {.timeout_s = 0.5};
	double t0 = now_mono();
	/* The background sleep shares the pipe: it must be killed too, or EOF never comes. */
	run_sh("sleep 30 & echo started; sleep 30", &lim, &res);
	double took = now_mono() - t0;
	assert_int_equal(res.fclass, PYTI_FC_TIMEOUT);
	assert_int_equal(res.signal, SIGKILL);
	assert_true(took >= 0.45 && took < 3);
	assert_string_equal(res.output, "started\n");
	proc_result_free(&res);
	assert_no_children();
}

static void test_no_output_timeout(void **state)
{
	(void)state;
	struct proc_result res;
	struct proc_limits lim = {.timeout_s = 20, .no_output_timeout_s = 0.6};
	double t0 = now_mono();
	run_sh("for i in 1 2 3; do echo $i; sleep 0.2; done; sleep 30", &lim, &res);
	double took = now_mono() - t0;
	assert_int_equal(res.fclass, PYTI_FC_NOOUTPUT);
	assert_true(took >= 0.9 && took < 4);
	assert_string_equal(res.output, "1\n2\n3\n");
	proc_result_free(&res);
}

static void test_cpu_limit(void **state)
{
	(void)state;
	struct proc_result res;
	struct proc_limits lim = {.timeout_s = 20, .cpu_s = 1};
	run_sh("while :; do :; done", &lim, &res);
	assert_int_equal(res.fclass, PYTI_FC_TIMEOUT);
	assert_true(res.signal == SIGXCPU || res.signal == SIGKILL);
	/* rusage splits CPU time by tick samples: it can read lower than the precise rlimit clock */
	if (res.cpu_user_s + res.cpu_sys_s < 0.5)
		fail_msg("cpu %.3f+%.3f wall %.3f sig %d", res.cpu_user_s, res.cpu_sys_s, res.wall_s, res.signal);
	proc_result_free(&res);
}

static void test_big_output_capped(void **state)
{
	(void)state;
	char *argv[] = {"head", "-c", "200000000", "/dev/zero", NULL};
	struct proc_spec spec = {.argv = argv, .keep_head = 1000, .keep_tail = 2000};
	struct proc_result res;
	struct pyti_err err = {0};
	assert_int_equal(proc_run(&spec, &res, &err), 0);
	assert_int_equal(res.exit_code, 0);
	assert_int_equal(res.output_bytes, 200000000ULL);
	assert_true(res.output_truncated);
	assert_true(res.output_len < 3100);
	const char *mark = "[\u2026 199997000 bytes omitted \u2026]";
	void *at = memmem(res.output, res.output_len, mark, strlen(mark));
	assert_non_null(at);
	assert_int_equal((char *)at - res.output, 1001); /* after the head and a newline */
	proc_result_free(&res);
}

static void test_small_output_whole(void **state)
{
	(void)state;
	/* Exactly head + tail bytes: nothing omitted, nothing marked. */
	char *argv[] = {"head", "-c", "3000", "/dev/zero", NULL};
	struct proc_spec spec = {.argv = argv, .keep_head = 1000, .keep_tail = 2000};
	struct proc_result res;
	struct pyti_err err = {0};
	assert_int_equal(proc_run(&spec, &res, &err), 0);
	assert_int_equal(res.output_len, 3000);
	assert_false(res.output_truncated);
	proc_result_free(&res);
}

static char *slurp(const char *path, size_t *n)
{
	struct buf b = BUF_INIT(0);
	struct pyti_err err = {0};
	assert_int_equal(read_file(path, &b, &err), 0);
	*n = b.len;
	return buf_steal(&b);
}

static void test_log_capped(void **state)
{
	(void)state;
	char logp[] = "/tmp/pyti-test-proc-log-XXXXXX";
	int fd = mkstemp(logp);
	assert_true(fd >= 0);
	close(fd);
	char *argv[] = {"seq", "1", "200000", NULL};
	struct proc_spec spec = {.argv = argv, .log_path = logp, .keep_head = 100, .keep_tail = 100,
				 .lim = {.output_limit = 10000}};
	struct proc_result res;
	struct pyti_err err = {0};
	assert_int_equal(proc_run(&spec, &res, &err), 0);
	assert_true(res.output_truncated);
	size_t n;
	char *log = slurp(logp, &n);
	assert_true(n > 10000 && n < 10300);
	assert_memory_equal(log, "1\n2\n3\n", 6);
	assert_memory_equal(log + n - 7, "200000\n", 7);
	assert_non_null(strstr(log, "bytes omitted from this log"));
	free(log);
	proc_result_free(&res);

	/* An unlimited log keeps everything: not truncated even though memory kept little. */
	spec.lim.output_limit = 0;
	assert_int_equal(proc_run(&spec, &res, &err), 0);
	assert_false(res.output_truncated);
	log = slurp(logp, &n);
	assert_int_equal(n, res.output_bytes);
	free(log);
	proc_result_free(&res);
	unlink(logp);
}

struct lines {
	int n;
	size_t longest;
	int beats;
};

static void on_line(void *arg, const char *line, size_t n)
{
	struct lines *l = arg;
	(void)line;
	l->n++;
	if (n > l->longest)
		l->longest = n;
}

static char beat_tail[PROC_HEARTBEAT_TAIL + 1];
static void on_beat(void *arg, double wall, uint64_t bytes, const char *tail, size_t tail_len)
{
	(void)wall;
	assert_true(tail_len <= PROC_HEARTBEAT_TAIL && tail_len <= bytes);
	memcpy(beat_tail, tail, tail_len);
	beat_tail[tail_len] = '\0';
	((struct lines *)arg)->beats++;
}

static void test_lines_heartbeat(void **state)
{
	(void)state;
	char *argv[] = {"sh", "-c", "seq 1 1000; sleep 0.35; printf no-newline", NULL};
	struct lines l = {0};
	struct proc_spec spec = {.argv = argv, .on_line = on_line, .on_heartbeat = on_beat,
				 .heartbeat_s = 0.1, .arg = &l};
	struct proc_result res;
	struct pyti_err err = {0};
	assert_int_equal(proc_run(&spec, &res, &err), 0);
	assert_int_equal(l.n, 1001);
	assert_int_equal(l.longest, strlen("no-newline"));
	assert_true(l.beats >= 2);
	/* a heartbeat during the sleep saw the output's last 2 KiB, in order */
	if (!strstr(beat_tail, "998\n999\n1000\n"))
		fail_msg("tail %zu: [%s]", strlen(beat_tail), beat_tail + (strlen(beat_tail) > 40 ? strlen(beat_tail) - 40 : 0));
	assert_int_equal(strlen(beat_tail) >= PROC_HEARTBEAT_TAIL - 16, true);
	proc_result_free(&res);
}

/* past the head and round the ring: the tail is still the output's last bytes */
static void test_heartbeat_tail_wraps(void **state)
{
	(void)state;
	char *argv[] = {"sh", "-c", "seq 1 20000; sleep 0.35", NULL};
	struct lines l = {0};
	struct proc_spec spec = {.argv = argv, .on_heartbeat = on_beat, .heartbeat_s = 0.1, .arg = &l};
	struct proc_result res;
	struct pyti_err err = {0};
	assert_int_equal(proc_run(&spec, &res, &err), 0);
	assert_int_equal(strlen(beat_tail), PROC_HEARTBEAT_TAIL);
	assert_non_null(strstr(beat_tail, "19999\n20000\n"));
	assert_non_null(strstr(beat_tail, "\n19700\n"));
	proc_result_free(&res);
}

static void test_oom(void **state)
{
	(void)state;
	char *argv[] = {(char *)py(), "-c", "b = b'x' * (4 << 30); print('survived')", NULL};
	struct proc_spec spec = {.argv = argv, .lim = {.timeout_s = 60, .memory_bytes = 1ULL << 30}};
	struct proc_result res;
	struct pyti_err err = {0};
	assert_int_equal(proc_run(&spec, &res, &err), 0);
	assert_int_equal(res.fclass, PYTI_FC_OOM);
	assert_int_equal(res.signal, SIGKILL);
	assert_null(strstr(res.output, "survived"));
	assert_true(res.max_rss_kb > 900 * 1024);
	proc_result_free(&res);
	assert_no_children();
}

static void test_memory_under_limit(void **state)
{
	(void)state;
	/* Forked processes share their pages: RSS sums double count, PSS does not. */
	char *argv[] = {(char *)py(), "-c",
			"import os\nb = b'x' * (300 << 20)\npids = [os.fork() for _ in range(1)]\n"
			"import time; time.sleep(0.3)\n"
			"[os.waitpid(p, 0) for p in pids if p]\nprint('ok')",
			NULL};
	struct proc_spec spec = {.argv = argv, .lim = {.timeout_s = 60, .memory_bytes = 450ULL << 20}};
	struct proc_result res;
	struct pyti_err err = {0};
	assert_int_equal(proc_run(&spec, &res, &err), 0);
	assert_int_equal(res.fclass, PYTI_FC_NONE);
	assert_int_equal(res.exit_code, 0);
	proc_result_free(&res);
}

static void test_fork_bomb_pids(void **state)
{
	(void)state;
	/* Bounded: depth 8 of binary forking is at most 511 processes, each gone within 20 s. */
	struct proc_result res;
	struct proc_limits lim = {.timeout_s = 60, .pids = 64};
	double t0 = now_mono();
	run_sh("b() { if [ $1 -gt 0 ]; then b $(($1-1)) & b $(($1-1)) & fi; sleep 20; }; b 8", &lim, &res);
	assert_int_equal(res.fclass, PYTI_FC_PIDS);
	assert_true(now_mono() - t0 < 10);
	proc_result_free(&res);
	assert_no_children();
}

static void test_grandchild_rusage(void **state)
{
	(void)state;
	/* A grandchild that double-forks away (setsid) is re-parented to us as a subreaper:
	 * its CPU and RSS must still be counted. */
	char script[512];
	snprintf(script, sizeof script,
		 "(setsid %s -c \"b = b'x' * (200 << 20)\nimport time\nt = time.process_time()\n"
		 "while time.process_time() - t < 0.3: pass\n\" &); sleep 2",
		 py());
	struct proc_result res;
	run_sh(script, NULL, &res);
	assert_int_equal(res.exit_code, 0);
	assert_true(res.max_rss_kb > 190 * 1024);
	assert_true(res.cpu_user_s + res.cpu_sys_s >= 0.3);
	proc_result_free(&res);
	assert_no_children();
}

static void test_leftovers_killed(void **state)
{
	(void)state;
	struct proc_result res;
	double t0 = now_mono();
	/* The daemon keeps the output pipe open: it must be killed when its parent is done. */
	run_sh("(setsid sleep 60 &); echo done", NULL, &res);
	assert_true(now_mono() - t0 < 3);
	assert_string_equal(res.output, "done\n");
	proc_result_free(&res);
	assert_no_children();
}

/* A child is the leader of a new session (so it has no controlling terminal: /dev/tty cannot be
 * opened whatever ran the tests) and of its own process group; killpg of that group still stops
 * what it started. */
static void test_new_session(void **state)
{
	(void)state;
	struct proc_result res;
	run_sh("set -- $(sed 's/.*) //' /proc/$$/stat); "
	       "[ \"$4\" = $$ ] && [ \"$3\" = $$ ] && [ \"$5\" = 0 ] && ! (exec </dev/tty) 2>/dev/null && echo alone",
	       NULL, &res);
	assert_int_equal(res.exit_code, 0);
	assert_string_equal(res.output, "alone\n");
	proc_result_free(&res);
	struct proc_limits lim = {.timeout_s = 0.5};
	run_sh("sleep 30 & sleep 30", &lim, &res);
	assert_int_equal(res.fclass, PYTI_FC_TIMEOUT);
	proc_result_free(&res);
	assert_no_children();
}

static void test_run_simple(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	char *ok[] = {"true", NULL};
	assert_int_equal(proc_run_simple(ok, NULL, 10, &err), 0);
	char *bad[] = {"sh", "-c", "echo something broke; exit 4", NULL};
	assert_int_equal(proc_run_simple(bad, NULL, 10, &err), -1);
	assert_non_null(strstr(err.msg, "exited with status 4"));
	assert_non_null(strstr(err.msg, "something broke"));
	char *slow[] = {"sleep", "10", NULL};
	assert_int_equal(proc_run_simple(slow, NULL, 0.3, &err), -1);
	assert_non_null(strstr(err.msg, "timed out"));
	assert_int_equal(err.fclass, PYTI_FC_TIMEOUT);
}

int main(void)
{
	/* Orphans come back to us, as they do to the agent. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exit_codes),
		cmocka_unit_test(test_signal),
		cmocka_unit_test(test_exec_failure),
		cmocka_unit_test(test_env_cwd),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_no_output_timeout),
		cmocka_unit_test(test_cpu_limit),
		cmocka_unit_test(test_big_output_capped),
		cmocka_unit_test(test_small_output_whole),
		cmocka_unit_test(test_log_capped),
		cmocka_unit_test(test_lines_heartbeat),
		cmocka_unit_test(test_heartbeat_tail_wraps),
		cmocka_unit_test(test_oom),
		cmocka_unit_test(test_memory_under_limit),
		cmocka_unit_test(test_fork_bomb_pids),
		cmocka_unit_test(test_grandchild_rusage),
		cmocka_unit_test(test_leftovers_killed),
		cmocka_unit_test(test_new_session),
		cmocka_unit_test(test_run_simple),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for core: buffers with caps, safe paths, JSON round trips, errors. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "core.h"

static void test_buf_cap(void **state)
{
	(void)state;
	_cleanup_buf_ struct buf b = BUF_INIT(10);
	assert_int_equal(buf_puts(&b, "hello"), 0);
	assert_int_equal(buf_puts(&b, " world!"), -1);
	assert_true(b.truncated);
	assert_int_equal(b.len, 10);
	assert_string_equal(b.data, "hello worl");
	buf_reset(&b);
	assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), 0);
	assert_string_equal(b.data, "42-x");
}

static void test_path_safe(void **state)
{
	(void)state;
	assert_true(path_is_safe_rel("a/b/c.py"));
	assert_true(path_is_safe_rel("a..b/c"));
	assert_false(path_is_safe_rel(""));
	assert_false(path_is_safe_rel("/etc/passwd"));
	assert_false(path_is_safe_rel("../x"));
	assert_false(path_is_safe_rel("a/../../x"));
	assert_false(path_is_safe_rel("a/./b"));
	assert_false(path_is_safe_rel("a//b"));
	assert_false(path_is_safe_rel(".."));
	char *out = NULL;
	struct pyti_err err = {0};
	assert_int_equal(path_join_safe("/root", "pkg/", &out, &err), 0);
	assert_string_equal(out, "/root/pkg");
	free(out);
	assert_int_equal(path_join_safe("/root", "pkg/../../etc", &out, &err), -1);
	assert_non_null(strstr(err.msg, "unsafe path"));
}

static void test_files(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	char tmpl[] = "/tmp/pyti-test-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	_cleanup_free_ char *deep = xasprintf("%s/a/b/c", tmpl);
	assert_int_equal(mkdir_p(deep, 0755, &err), 0);
	_cleanup_free_ char *f = xasprintf("%s/file", deep);
	assert_int_equal(write_file_atomic(f, "data", 4, 0644, &err), 0);
	_cleanup_buf_ struct buf b = BUF_INIT(3);
	assert_int_equal(read_file(f, &b, &err), -1); /* larger than the cap */
	struct buf b2 = BUF_INIT(0);
	assert_int_equal(read_file(f, &b2, &err), 0);
	assert_string_equal(b2.data, "data");
	buf_free(&b2);
	_cleanup_free_ char *link = xasprintf("%s/a/escape", tmpl);
	assert_int_equal(symlink("/etc", link), 0);
	chmod(deep, 0); /* rm_rf must cope with unreadable directories */
	assert_int_equal(rm_rf(tmpl, &err), 0);
	assert_false(path_exists(tmpl));
	assert_true(path_exists("/etc/hostname") || path_exists("/etc/passwd")); /* link not followed */
}

static void test_json(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	const char *doc = "{\"a\": 1, \"b\": 2.5, \"s\": \"x\", \"t\": true}";
	_cleanup_json_ json_t *j = pj_loads(doc, strlen(doc), &err);
	assert_non_null(j);
	assert_int_equal(pj_int(j, "a", 0), 1);
	assert_true(pj_num(j, "b", 0) == 2.5);
	assert_true(pj_num(j, "a", 0) == 1.0);
	assert_string_equal(pj_str(j, "s", ""), "x");
	assert_string_equal(pj_str(j, "missing", "d"), "d");
	assert_true(pj_bool(j, "t", false));
	assert_null(pj_loads("{\"a\": 1, \"a\": 2}", 16, &err)); /* duplicates refused */
	assert_null(pj_loads("{", 1, &err));
	_cleanup_json_ json_t *s = pj_string_lossy("ok\xff\xfe\0end", 8);
	assert_string_equal(json_string_value(s), "ok\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "end");
}

static void test_err(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	assert_int_equal(pyti_err_usage(&err, "unknown key '%s'", "timout"), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	pyti_err_prefix(&err, "recipe.ini:%d", 12);
	assert_string_equal(err.msg, "recipe.ini:12: unknown key 'timout'");
	pyti_err_class(&err, PYTI_FC_OOM, "killed");
	assert_string_equal(pyti_fclass_name(err.fclass), "OOM");
	assert_int_equal(pyti_fclass_parse("NoOutput"), PYTI_FC_NOOUTPUT);
	assert_int_equal(pyti_fclass_parse("bogus"), -1);
	char h[65];
	sha256_hex("abc", 3, h);
	assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* An unreadable, non-empty directory, removed by its (non-root) owner: root reads anything, so a
 * root test run drops to "nobody" in a child for this. */
static void test_rm_rf_unreadable(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/pyti-test-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	chmod(tmpl, 0777);
	_cleanup_free_ char *top = xasprintf("%s/top", tmpl);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			_exit(2);
		_cleanup_free_ char *sub = xasprintf("%s/locked/sub", top);
		_cleanup_free_ char *f = xasprintf("%s/locked/f", top);
		if (mkdir_p(sub, 0755, NULL) < 0 || write_file_atomic(f, "x", 1, 0644, NULL) < 0)
			_exit(3);
		_cleanup_free_ char *locked = xasprintf("%s/locked", top);
		chmod(locked, 0);
		_exit(rm_rf(top, NULL) == 0 && !path_exists(top) ? 0 : 1);
	}
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(rm_rf(tmpl, NULL), 0);
}

static void put(const char *root, const char *rel, const char *data)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", root, rel);
	_cleanup_free_ char *dir = xstrdup(p);
	*strrchr(dir, '/') = '\0';
	assert_int_equal(mkdir_p(dir, 0755, NULL), 0);
	assert_int_equal(write_file_atomic(p, data, strlen(data), 0644, NULL), 0);
}

static bool has(const char *root, const char *rel)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", root, rel);
	return path_exists(p);
}

static void test_copy_src_tree(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/pyti-test-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	_cleanup_free_ char *src = xasprintf("%s/src", tmpl), *a = xasprintf("%s/a", tmpl),
			    *b = xasprintf("%s/b", tmpl);
	put(src, "pkg/__init__.py", "x = 1\n");
	put(src, "pkg/build/keep.py", "a package named build is source\n");
	put(src, "build/lib/pkg/__init__.py", "old build output\n");
	put(src, "pkg/__pycache__/m.pyc", "junk");
	put(src, "pkg/m.pyc", "junk");
	put(src, ".tox/py311/x", "junk");
	put(src, ".git/HEAD", "ref: refs/heads/main\n");
	_cleanup_free_ char *l1 = xasprintf("%s/pkg/inside", src), *l2 = xasprintf("%s/pkg/out", src),
			    *l3 = xasprintf("%s/abs", src), *tool = xasprintf("%s/tool", src);
	assert_int_equal(symlink("__init__.py", l1), 0);
	assert_int_equal(symlink("../../etc", l2), 0);
	assert_int_equal(symlink("/etc/passwd", l3), 0);
	put(src, "tool", "#!/bin/sh\n");
	chmod(tool, 0750);

	struct pyti_err err = {0};
	assert_int_equal(copy_src_tree(src, a, 0, &err), 0);
	assert_true(has(a, "pkg/__init__.py") && has(a, "pkg/build/keep.py") && has(a, "pkg/inside"));
	assert_false(has(a, "build") || has(a, ".git") || has(a, ".tox") || has(a, "pkg/__pycache__") ||
		     has(a, "pkg/m.pyc") || has(a, "pkg/out") || has(a, "abs"));
	_cleanup_free_ char *ta = xasprintf("%s/tool", a), *la = xasprintf("%s/pkg/inside", a);
	struct stat st;
	assert_int_equal(stat(ta, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0750); /* its own mode, not widened */
	assert_int_equal(lstat(la, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	/* for a build, version control stays (setuptools-scm) */
	assert_int_equal(copy_src_tree(src, b, SRC_TREE_KEEP_VCS, &err), 0);
	assert_true(has(b, ".git/HEAD"));
	assert_false(has(b, ".tox") || has(b, "build"));
	rm_rf(tmpl, NULL);
}

static void test_term_safe(void **state)
{
	(void)state;
	/* ESC, a UTF-8 C1 CSI (U+009B), a lone 0x9b, DEL, a tab and newline, é and a backslash */
	static const char in[] = "a\x1b[2Jb\xc2\x9b" "31mc\x9b\x7f\t\n\xc3\xa9\\";
	_cleanup_free_ char *plain = term_safe_dup(in, 0);
	assert_string_equal(plain, "a\\x1b[2Jb\\u009b31mc\\x9b\\x7f\\x09\\x0a\xc3\xa9\\");
	_cleanup_free_ char *lines = term_safe_dup(in, TERM_KEEP_NEWLINES | TERM_ESCAPE_BACKSLASH);
	assert_string_equal(lines, "a\\x1b[2Jb\\u009b31mc\\x9b\\x7f\t\n\xc3\xa9\\x5c");
}

static void test_term_safe_invisible(void **state)
{
	(void)state;
	/* "Trojan Source": RLO, LRI..PDI, LRM/RLM, ZWSP, BOM, word joiner, a tag character, the line
	 * separator; and a CR that would overwrite the line */
	static const char in[] = "g\xe2\x80\xae" "h\xe2\x81\xa6" "i\xe2\x81\xa9" "j\xe2\x80\x8e\xe2\x80\x8f"
				 "k\xe2\x80\x8b" "m\xef\xbb\xbf" "n\xe2\x81\xa0" "p\xf3\xa0\x80\x81" "q\xe2\x80\xa8"
				 "r\rs";
	_cleanup_free_ char *o = term_safe_dup(in, TERM_KEEP_NEWLINES);
	assert_string_equal(o, "g\\u202eh\\u2066i\\u2069j\\u200e\\u200fk\\u200bm\\ufeffn\\u2060p\\U000e0001q"
			       "\\u2028r\\x0ds");
	/* every bidi control named by Unicode (U+202A..U+202E, U+2066..U+2069, ALM) */
	static const unsigned bidi[] = {0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069, 0x61c};
	for (size_t i = 0; i < ARRAY_SIZE(bidi); i++) {
		char s[8];
		unsigned cp = bidi[i];
		if (cp < 0x800)
			snprintf(s, sizeof s, "%c%c", 0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
		else
			snprintf(s, sizeof s, "%c%c%c", 0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
		_cleanup_free_ char *e = term_safe_dup(s, 0);
		char want[16];
		snprintf(want, sizeof want, "\\u%04x", cp);
		assert_string_equal(e, want);
	}
	/* C1 as UTF-8 and as raw bytes, invalid UTF-8 (truncated, overlong, surrogate) */
	_cleanup_free_ char *c1 = term_safe_dup("\xc2\x85\xc2\x9d\x9d\xe2\x80\xc0\xaf\xed\xa0\x80", 0);
	assert_string_equal(c1, "\\u0085\\u009d\\x9d\\xe2\\x80\\xc0\\xaf\\xed\\xa0\\x80");
	/* what stays: accents, CJK, emoji with ZWJ, the no-break space */
	static const char keep[] = "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x92\xbb\xc2\xa0";
	_cleanup_free_ char *k = term_safe_dup(keep, 0);
	assert_string_equal(k, keep);
}

/* write_file_atomic shares directories with sandboxes: a pre-made temporary name (the old
 * predictable path.tmp.<pid>, as a directory) must not stop it, a link at path is replaced and
 * never written through, a directory at path is an error. */
static void test_write_atomic_hostile_dir(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/pyti-test-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	_cleanup_free_ char *f = xasprintf("%s/results.json", tmpl);
	_cleanup_free_ char *old_tmp = xasprintf("%s.tmp.%ld", f, (long)getpid());
	assert_int_equal(mkdir(old_tmp, 0755), 0);
	_cleanup_free_ char *victim = xasprintf("%s/victim", tmpl);
	assert_int_equal(write_file_atomic(victim, "keep", 4, 0644, NULL), 0);
	assert_int_equal(symlink(victim, f), 0);
	struct pyti_err err = {0};
	assert_int_equal(write_file_atomic(f, "new", 3, 0644, &err), 0);
	struct stat st;
	assert_int_equal(lstat(f, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	struct buf b = BUF_INIT(0);
	assert_int_equal(read_file(victim, &b, &err), 0);
	assert_string_equal(b.data, "keep");
	buf_free(&b);
	_cleanup_free_ char *d = xasprintf("%s/dir", tmpl);
	assert_int_equal(mkdir(d, 0755), 0);
	assert_int_equal(write_file_atomic(d, "x", 1, 0644, &err), -1);
	assert_int_equal(rm_rf(tmpl, NULL), 0);
}

static unsigned mode_of(const char *root, const char *rel)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", root, rel);
	struct stat st;
	assert_int_equal(lstat(p, &st), 0);
	return st.st_mode & 07777;
}

/* Modes survive the copy (never widened: 0600 stays 0600), set-id bits go, owner-read is added;
 * a file the caller cannot read is left out, the rest is copied. */
static void test_copy_src_tree_modes(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/pyti-test-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	chmod(tmpl, 0777); /* the unprivileged child below writes its copy here */
	_cleanup_free_ char *src = xasprintf("%s/src", tmpl), *a = xasprintf("%s/a", tmpl);
	put(src, "secret.cfg", "token\n");
	put(src, "group.cfg", "g\n");
	put(src, "tool", "#!/bin/sh\n");
	put(src, "suid", "x\n");
	put(src, "wonly", "x\n");
	put(src, "private/x.py", "x = 1\n");
	_cleanup_free_ char *p1 = xasprintf("%s/secret.cfg", src), *p2 = xasprintf("%s/group.cfg", src),
			    *p3 = xasprintf("%s/tool", src), *p4 = xasprintf("%s/suid", src),
			    *p5 = xasprintf("%s/wonly", src), *p6 = xasprintf("%s/private", src);
	chmod(p1, 0600);
	chmod(p2, 0640);
	chmod(p3, 0750);
	chmod(p4, 04755);
	chmod(p5, 0200);
	chmod(p6, 0700);
	struct pyti_err err = {0};
	assert_int_equal(copy_src_tree(src, a, 0, &err), 0);
	assert_int_equal(mode_of(a, "secret.cfg"), 0600);
	assert_int_equal(mode_of(a, "group.cfg"), 0640);
	assert_int_equal(mode_of(a, "tool"), 0750);
	assert_int_equal(mode_of(a, "suid"), 0755);
	assert_int_equal(mode_of(a, "wonly"), 0600); /* owner-read added: the sandbox must read it */
	assert_int_equal(mode_of(a, "private"), 0700);
	assert_int_equal(mode_of(a, "private/x.py"), 0644);

	/* unreadable for the caller: as another uid (root reads everything) */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (geteuid() == 0 && (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0))
			_exit(3);
		/* 65534 owns nothing in src: only what others may read (suid, 04755) is copied */
		_cleanup_free_ char *b = xasprintf("%s/b", tmpl);
		struct pyti_err e2 = {0};
		if (copy_src_tree(src, b, 0, &e2) < 0)
			_exit(4);
		_exit(!has(b, "suid") || has(b, "group.cfg") || has(b, "secret.cfg") || has(b, "private") ? 5 : 0);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (geteuid() == 0)
		assert_int_equal(WEXITSTATUS(status), 0);
	rm_rf(tmpl, NULL);
}

/* A record held by a live process protects its directory; one whose holder died (here: a child
 * that _exits, as kill -9 would end it) lets the sweep remove the directory and the record. */
static void test_owner_sweep(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/pyti-test-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	struct pyti_err err = {0};
	int live = owner_claim(tmpl, "live", &err);
	assert_true(live >= 0);
	put(tmpl, "live/x", "x");
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = owner_claim(tmpl, "dead", NULL);
		put(tmpl, "dead/sub/y", "y");
		_exit(fd >= 0 ? 0 : 1);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(WEXITSTATUS(status), 0);
	put(tmpl, "unrecorded/z", "z"); /* no record: never the sweep's */
	assert_int_equal(owner_sweep(tmpl), 1);
	assert_false(has(tmpl, "dead") || has(tmpl, ".owner.dead"));
	assert_true(has(tmpl, "live/x") && has(tmpl, ".owner.live") && has(tmpl, "unrecorded/z"));
	owner_release(tmpl, "live", live);
	assert_false(has(tmpl, ".owner.live"));
	assert_int_equal(owner_sweep(tmpl), 0);
	assert_true(has(tmpl, "live/x")); /* released (--keep): kept for good */

	/* lock files: a held one stays, an unheld one is swept, a released one is gone */
	_cleanup_free_ char *held = xasprintf("%s/a.lock", tmpl), *stale = xasprintf("%s/b.lock", tmpl);
	int h = lock_open_held(held, &err);
	assert_true(h >= 0);
	put(tmpl, "b.lock", "");
	assert_int_equal(lock_sweep(tmpl, ".lock"), 1);
	assert_true(path_exists(held) && !path_exists(stale));
	lock_release(held, h);
	assert_false(path_exists(held));
	rm_rf(tmpl, NULL);
}

/* Claims beside sweeps, as concurrent jobs of one worker (or batch) do: each job sweeps the jobs
 * directory, then claims its own record. A sweep that found a claimer's .new record before its lock
 * was taken used to unlink it, and the claim's rename then failed (ENOENT). Every claim must
 * succeed, and the directory of a live claim must never be swept. */
static void test_owner_claim_beside_sweeps(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/pyti-test-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	enum { KIDS = 4, ROUNDS = 400 };
	pid_t kids[KIDS];
	for (int k = 0; k < KIDS; k++) {
		kids[k] = fork();
		assert_true(kids[k] >= 0);
		if (kids[k] == 0) {
			for (int i = 0; i < ROUNDS; i++) {
				_cleanup_free_ char *name = xasprintf("j%d-%d", k, i);
				owner_sweep(tmpl);
				struct pyti_err e = {0};
				int fd = owner_claim(tmpl, name, &e);
				if (fd < 0)
					_exit(1);
				_cleanup_free_ char *dir = xasprintf("%s/%s", tmpl, name);
				_cleanup_free_ char *f = xasprintf("%s/%s/x", tmpl, name);
				if (mkdir(dir, 0700) < 0 || write_file_atomic(f, "x", 1, 0600, NULL) < 0)
					_exit(2);
				owner_sweep(tmpl);
				if (!path_exists(f))
					_exit(3); /* a live job's directory swept */
				rm_rf(dir, NULL);
				owner_release(tmpl, name, fd);
			}
			_exit(0);
		}
	}
	for (int k = 0; k < KIDS; k++) {
		int status = -1;
		assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	rm_rf(tmpl, NULL);
}

/* What a sandbox leaves in a directory the host then reads: links of every kind are refused, a
 * FIFO neither hangs nor is read, a file past the cap is an error; both the openat2 path and the
 * O_NOFOLLOW walk. */
static void check_beneath(const char *root)
{
	struct pyti_err err = {0};
	_cleanup_close_ int dfd = safe_opendir_path(root, &err);
	assert_true(dfd >= 0);
	_cleanup_buf_ struct buf b = BUF_INIT(0);
	assert_int_equal(safe_read_beneath(dfd, "out/results.json", &b, &err), 0);
	assert_string_equal(b.data, "{}");
	buf_reset(&b);
	assert_int_equal(safe_read_beneath(dfd, "out/link.json", &b, &err), -1);
	assert_int_equal(err.errnum, ELOOP);
	assert_int_equal(safe_read_beneath(dfd, "outlink/results.json", &b, &err), -1);
	assert_int_equal(err.errnum, ELOOP);
	assert_int_equal(safe_read_beneath(dfd, "out/stdin", &b, &err), -1); /* /proc/self/fd/0 */
	assert_int_equal(err.errnum, ELOOP);
	assert_int_equal(safe_read_beneath(dfd, "out/fifo", &b, &err), -1); /* at once, no writer */
	assert_int_equal(err.errnum, EINVAL);
	assert_int_equal(safe_read_beneath(dfd, "out", &b, &err), -1); /* a directory */
	assert_int_equal(safe_read_beneath(dfd, "../etc/passwd", &b, &err), -1);
	assert_int_equal(safe_read_beneath(dfd, "out/missing", &b, &err), -1);
	assert_int_equal(err.errnum, ENOENT);
	_cleanup_buf_ struct buf small = BUF_INIT(1);
	assert_int_equal(safe_read_beneath(dfd, "out/results.json", &small, &err), -1);
	assert_int_equal(err.errnum, EFBIG);
	_cleanup_close_ int od = safe_opendir_beneath(dfd, "out", &err);
	assert_true(od >= 0);
	assert_int_equal(safe_opendir_beneath(dfd, "outlink", &err), -1);
	assert_int_equal(err.errnum, ELOOP);
	_cleanup_free_ char *outlink = xasprintf("%s/outlink", root);
	assert_int_equal(safe_opendir_path(outlink, &err), -1);
	assert_int_equal(err.errnum, ELOOP);
	_cleanup_json_ json_t *j = pj_load_beneath(od, "results.json", 1024, &err);
	assert_non_null(j);
}

static void test_beneath(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/pyti-test-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	_cleanup_free_ char *hostf = xasprintf("%s/host-secret", tmpl), *out = xasprintf("%s/out", tmpl),
			    *res = xasprintf("%s/out/results.json", tmpl), *l = xasprintf("%s/out/link.json", tmpl),
			    *ol = xasprintf("%s/outlink", tmpl), *in = xasprintf("%s/out/stdin", tmpl),
			    *fifo = xasprintf("%s/out/fifo", tmpl);
	struct pyti_err err = {0};
	assert_int_equal(mkdir_p(out, 0755, &err), 0);
	assert_int_equal(write_file_atomic(hostf, "secret", 6, 0600, &err), 0);
	assert_int_equal(write_file_atomic(res, "{}", 2, 0644, &err), 0);
	assert_int_equal(symlink(hostf, l), 0);
	assert_int_equal(symlink(out, ol), 0);
	assert_int_equal(symlink("/proc/self/fd/0", in), 0);
	assert_int_equal(mkfifo(fifo, 0644), 0);
	check_beneath(tmpl);
	beneath_no_openat2 = true;
	check_beneath(tmpl);
	beneath_no_openat2 = false;
	rm_rf(tmpl, NULL);
}

/* tree_walk: every entry once, a directory's pre before and post after its contents, links
 * reported but never followed, directories at max_depth not entered, a callback's error stops it. */
struct walk_log {
	struct buf b;
	int stop_at_depth;
};

static int walk_log_pre(void *arg, const struct tree_entry *e)
{
	struct walk_log *w = arg;
	buf_printf(&w->b, "+%s%s:%d ", e->rel, S_ISLNK(e->st->st_mode) ? "@" : "", e->depth);
	if (w->stop_at_depth && e->depth >= w->stop_at_depth)
		return -7;
	return strcmp(e->name, "skip") == 0 ? TREE_WALK_SKIP : TREE_WALK_NEXT;
}

static int walk_log_post(void *arg, const struct tree_entry *e)
{
	struct walk_log *w = arg;
	buf_printf(&w->b, "-%s ", e->rel);
	return 0;
}

static void test_tree_walk(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/pyti-test-XXXXXX";
	assert_non_null(mkdtemp(tmpl));
	struct pyti_err err = {0};
	_cleanup_free_ char *deep = xasprintf("%s/t/a/b/c", tmpl), *skip = xasprintf("%s/t/skip/x", tmpl),
			    *f = xasprintf("%s/t/a/f", tmpl), *ln = xasprintf("%s/t/a/ln", tmpl),
			    *top = xasprintf("%s/t", tmpl);
	assert_int_equal(mkdir_p(deep, 0755, &err), 0);
	assert_int_equal(mkdir_p(skip, 0755, &err), 0);
	assert_int_equal(write_file_atomic(f, "x", 1, 0644, &err), 0);
	assert_int_equal(symlink(tmpl, ln), 0); /* a link to a directory above: never entered */
	_cleanup_close_ int fd = open(top, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);

	struct walk_log w = {.b = BUF_INIT(0)};
	assert_int_equal(tree_walk(fd, 2, walk_log_pre, walk_log_post, &w), 0);
	/* order within a directory is readdir's: check pieces, not the whole line */
	assert_non_null(strstr(w.b.data, "+a:0 "));
	assert_non_null(strstr(w.b.data, "+a/f:1 "));
	assert_non_null(strstr(w.b.data, "+a/ln@:1 "));
	assert_non_null(strstr(w.b.data, "+a/b/c:2 -a/b/c "));  /* at max_depth: not entered, post still */
	assert_true(strstr(w.b.data, "+a/b/c:2 ") > strstr(w.b.data, "+a/b:1 "));
	assert_true(strstr(w.b.data, "-a/b ") > strstr(w.b.data, "-a/b/c "));
	assert_true(strstr(w.b.data, "-a ") > strstr(w.b.data, "-a/b "));
	assert_non_null(strstr(w.b.data, "+skip:0 "));
	assert_null(strstr(w.b.data, "skip/x"));  /* TREE_WALK_SKIP: not entered */
	assert_null(strstr(w.b.data, "-skip ")); /* nor its post */
	assert_null(strstr(w.b.data, "ln/"));    /* the link is not followed */
	buf_free(&w.b);

	struct walk_log s2 = {.b = BUF_INIT(0), .stop_at_depth = 2};
	assert_int_equal(tree_walk(fd, 8, walk_log_pre, NULL, &s2), -7);
	assert_null(strstr(s2.b.data, "a/b/c/"));
	buf_free(&s2.b);
	rm_rf(tmpl, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_cap), cmocka_unit_test(test_path_safe), cmocka_unit_test(test_files),
		cmocka_unit_test(test_json), cmocka_unit_test(test_err), cmocka_unit_test(test_rm_rf_unreadable),
		cmocka_unit_test(test_copy_src_tree), cmocka_unit_test(test_term_safe),
		cmocka_unit_test(test_term_safe_invisible),
		cmocka_unit_test(test_write_atomic_hostile_dir), cmocka_unit_test(test_beneath),
		cmocka_unit_test(test_copy_src_tree_modes), cmocka_unit_test(test_owner_sweep),
		cmocka_unit_test(test_owner_claim_beside_sweeps),
		cmocka_unit_test(test_tree_walk),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Reports of a job's raw data: the runtime records, the terminal table, JUnit XML out (reading a
 * task's JUnit file is junit.c).
 * Everything printed from a task's output is untrusted: control characters are neutralised for the
 * terminal and replaced for XML. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xmlwriter.h>

#include "manager.h"
#include "report-int.h"

/* Bytes of each test's failure text copied into --junit's output. */
#define JUNIT_BODY_MAX (64u << 10)
#define RUNTIME_MAX_BYTES (64u << 10)
#define RUNTIME_LIST_MAX 64
#define RUNTIME_TEXT_MAX 4096

/* A string of the guest's runtime record, capped and made valid UTF-8; NULL when not a string. */
static json_t *runtime_str(const json_t *v)
{
	if (!json_is_string(v))
		return NULL;
	size_t n = json_string_length(v);
	return pj_string_lossy(json_string_value(v), n < RUNTIME_TEXT_MAX ? n : RUNTIME_TEXT_MAX);
}

/* out/runtime-<task>.json, written by the task (untrusted): only the documented keys, capped. */
static json_t *runtime_read(int io_fd, const char *path)
{
	_cleanup_buf_ struct buf b = BUF_INIT(RUNTIME_MAX_BYTES);
	struct pyti_err e = {0};
	if (safe_read_beneath(io_fd, path, &b, &e) < 0 || b.truncated) {
		if (e.errnum == ENOENT) /* the task wrote none */
			return NULL;
		log_warn("%s: %s", path, b.truncated ? "larger than 64 KiB, ignored" : pyti_err_str(&e));
		return NULL;
	}
	_cleanup_json_ json_t *in = pj_loads(b.data ? b.data : "", b.len, &e);
	if (!json_is_object(in)) {
		log_warn("%s: not a JSON object, ignored", path);
		return NULL;
	}
	json_t *out = json_object();
	/* tests_from, cwd, declared_by: where runtests.py ran the tests and what declared its runner */
	static const char *const keys[] = {"python", "runner", "runner_version", "runner_file",
					   "tests_from", "cwd", "declared_by"};
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		json_t *s = runtime_str(json_object_get(in, keys[i]));
		if (s)
			json_object_set_new(out, keys[i], s);
	}
	static const char *const lists[] = {"sys_path", "args"};
	for (size_t l = 0; l < ARRAY_SIZE(lists); l++) {
		json_t *sp = json_object_get(in, lists[l]);
		if (json_is_array(sp)) {
			json_t *a = json_array(), *v;
			size_t i;
			json_array_foreach(sp, i, v) {
				json_t *s = i < RUNTIME_LIST_MAX ? runtime_str(v) : NULL;
				if (s)
					json_array_append_new(a, s);
			}
			json_object_set_new(out, lists[l], a);
		}
	}
	/* network: what the tests tried to reach, [{"kind", "destination", "count"}] */
	json_t *net = json_object_get(in, "network");
	if (json_is_array(net)) {
		json_t *a = json_array(), *v;
		size_t i;
		json_array_foreach(net, i, v) {
			if (i >= RUNTIME_LIST_MAX)
				break;
			json_t *kind = runtime_str(json_object_get(v, "kind"));
			json_t *dest = runtime_str(json_object_get(v, "destination"));
			json_t *cnt = json_object_get(v, "count");
			if (kind && dest && json_is_integer(cnt) && json_integer_value(cnt) >= 0)
				json_array_append_new(a, json_pack("{sosos:I}", "kind", kind, "destination", dest,
								   "count", json_integer_value(cnt)));
			else
				json_decref(kind), json_decref(dest);
		}
		json_object_set_new(out, "network", a);
	}
	json_t *mods = json_object_get(in, "modules");
	if (json_is_object(mods)) {
		json_t *o = json_object(), *v;
		const char *k;
		size_t n = 0;
		json_object_foreach(mods, k, v) {
			if (n++ >= RUNTIME_LIST_MAX)
				break;
			_cleanup_json_ json_t *key = pj_string_lossy(k, strnlen(k, 256));
			json_t *s = runtime_str(v);
			json_object_set_new(o, json_string_value(key), s ? s : json_null());
		}
		json_object_set_new(out, "modules", o);
	}
	return out;
}

/* The sandbox's files are read beneath io_fd (the I/O directory) without following links. */
void report_add_test_counts(json_t *results, const json_t *job, int io_fd)
{
	json_t *jtasks = json_object_get(job, "tasks"), *rtasks = json_object_get(results, "tasks");
	size_t i;
	json_t *jt;
	json_array_foreach(jtasks, i, jt) {
		const char *junit = pj_str(jt, "junit", NULL), *name = pj_str(jt, "name", "");
		json_t *rt = NULL, *r;
		size_t k;
		json_array_foreach(rtasks, k, r)
			if (!rt && strcmp(pj_str(r, "task", ""), name) == 0)
				rt = r;
		if (!rt)
			continue;
		_cleanup_free_ char *rel_rt = xasprintf("out/runtime-%s.json", name);
		if (path_is_safe_rel(rel_rt)) {
			json_t *rtm = runtime_read(io_fd, rel_rt);
			if (rtm)
				json_object_set_new(rt, "runtime", rtm);
		}
		if (!junit)
			continue;
		/* "/io/out/junit-test.xml" or "out/junit-test.xml" → out/junit-test.xml beneath io_fd */
		const char *rel = strncmp(junit, "/io/", 4) == 0 ? junit + 4 : junit;
		struct pyti_err e2 = {0};
		_cleanup_buf_ struct buf b = BUF_INIT(JUNIT_MAX_BYTES);
		json_t *counts;
		int rr = safe_read_beneath(io_fd, rel, &b, &e2);
		if (rr < 0 && e2.errnum == ENOENT) {
			/* a test task that passed without writing its JUnit file ran no test we know of */
			if (strcmp(pj_str(rt, "status", ""), "passed") != 0)
				continue;
			counts = json_pack("{sisisisisisisisisbs[]sb}", "passed", 0, "failed", 0, "skipped", 0, "errors", 0,
					   "xfailed", 0, "xpassed", 0, "network", 0, "total", 0, "no_tests", 1, "failures",
					   "failures_truncated", 0);
		} else if (rr < 0) {
			/* A link (to a host file, to /proc/self/fd/0), a FIFO or a huge file where the
			 * report should be: never read, and the task did not give an honest report, so it
			 * does not pass. */
			log_warn("task %s: junit %s", name, pyti_err_str(&e2));
			json_object_set_new(rt, "status", json_string("failed"));
			json_object_set_new(rt, "junit_error", json_string(pyti_err_str(&e2)));
			if (strcmp(pj_str(results, "status", ""), "passed") == 0)
				json_object_set_new(results, "status", json_string("failed"));
			continue;
		} else if (!(counts = report_junit_counts_mem(b.data, b.len, rel, &e2))) {
			log_warn("task %s: %s", name, pyti_err_str(&e2));
			continue;
		}
		json_object_set_new(counts, "junit", json_string(rel));
		json_object_set_new(rt, "tests", counts);
	}
}

static void fmt_mem(char out[32], long kb)
{
	if (kb <= 0)
		snprintf(out, 32, "-");
	else if (kb >= 1024 * 1024)
		snprintf(out, 32, "%.1f GiB", (double)kb / (1024.0 * 1024.0));
	else
		snprintf(out, 32, "%.1f MiB", (double)kb / 1024.0);
}

/* pytest's summary: "385 passed, 29 failed, 203 errors, 15 skipped, 1 xfailed" (passed always,
 * the others when not 0). The counts come from the guest: summed without overflow. */
static void fmt_counts(char *out, size_t cap, const long long c[6])
{
	static const char *const names[] = {"passed", "failed", "errors", "skipped", "xfailed", "xpassed"};
	size_t len = 0;
	out[0] = '\0';
	for (size_t i = 0; i < 6; i++) {
		if (i && !c[i])
			continue;
		const char *name = i == 2 && c[i] == 1 ? "error" : names[i];
		int n = snprintf(out + len, cap - len, "%s%lld %s", i ? ", " : "", c[i], name);
		if (n < 0 || (size_t)n >= cap - len)
			return;
		len += (size_t)n;
	}
}

static void add_counts(long long c[6], const json_t *t)
{
	static const char *const keys[] = {"passed", "failed", "errors", "skipped", "xfailed", "xpassed"};
	for (size_t i = 0; i < 6; i++)
		if (__builtin_add_overflow(c[i], pj_int(t, keys[i], 0), &c[i]))
			c[i] = LLONG_MAX;
}

static void fmt_tests(char out[128], const json_t *t)
{
	out[0] = '\0';
	if (!json_is_object(t))
		return;
	if (json_is_true(json_object_get(t, "no_tests"))) {
		/* a suite that collected nothing is not a pass of its tests: say so */
		snprintf(out, 128, "no tests");
		return;
	}
	long long c[6] = {0};
	add_counts(c, t);
	fmt_counts(out, 128, c);
}

void report_tests_summary(char *out, size_t cap, const json_t *results)
{
	long long c[6] = {0};
	size_t n = 0, none = 0, i;
	json_t *t;
	out[0] = '\0';
	json_array_foreach(json_object_get(results, "tasks"), i, t) {
		const json_t *tests = json_object_get(t, "tests");
		if (!json_is_object(tests))
			continue;
		n++;
		if (json_is_true(json_object_get(tests, "no_tests")))
			none++;
		else
			add_counts(c, tests);
	}
	if (n && none == n)
		snprintf(out, cap, "no tests");
	else if (n)
		fmt_counts(out, cap, c);
}

/* The failed and erroring tests of one task's "tests", at most `max` of them. */
static void print_test_failures(FILE *f, const json_t *tests, size_t max)
{
	const json_t *fl = json_object_get(tests, "failures");
	size_t i, n = json_array_size(fl);
	json_t *e;
	json_array_foreach(fl, i, e) {
		if (i >= max)
			break;
		const char *m = pj_str(e, "message", "");
		/* the message's first line (the rest is in --json and the log), at most 200 bytes */
		_cleanup_free_ char *line = xasprintf("%.*s", (int)strcspn(m, "\n"), m);
		_cleanup_free_ char *id = term_safe_dup(pj_str(e, "id", "?"), 0),
				    *oc = term_safe_dup(pj_str(e, "outcome", "?"), 0), *msg = term_safe_dup(line, 0);
		fprintf(f, "  %s %s: %.200s\n", strcmp(oc, "error") == 0 ? "ERROR " : "FAILED", id, msg);
	}
	if (n > max || json_is_true(json_object_get(tests, "failures_truncated")))
		fprintf(f, "  … more in --json and the task's JUnit file\n");
}

/* The last `lines` lines of s. */
static const char *tail_lines(const char *s, size_t n, int lines, size_t *len)
{
	const char *p = s + n;
	while (n && p > s && (p[-1] == '\n'))
		p--, n--;
	const char *end = p;
	int seen = 0;
	while (p > s) {
		if (p[-1] == '\n' && ++seen >= lines)
			break;
		p--;
	}
	*len = (size_t)(end - p);
	return p;
}

void report_table(FILE *f, const json_t *r, bool show_failures)
{
	/* every string here comes back from the sandbox: escape what could drive the terminal */
	_cleanup_free_ char *dist = term_safe_dup(pj_str(r, "dist", "?"), 0),
			    *image = term_safe_dup(pj_str(r, "image", "?"), 0),
			    *backend = term_safe_dup(pj_str(r, "backend", "?"), 0),
			    *recipe = term_safe_dup(pj_str(r, "recipe", "?"), 0);
	fprintf(f, "pyti: %s on %s, backend %s, recipe %s\n", dist, image, backend, recipe);
	fprintf(f, "%-12s %-8s %-10s %9s %9s %10s  %s\n", "TASK", "STATUS", "CLASS", "WALL", "CPU", "PEAK MEM",
		"TESTS");
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(r, "tasks"), i, t) {
		char wall[32] = "-", cpu[32] = "-", mem[32], tests[128];
		_cleanup_free_ char *st = term_safe_dup(pj_str(t, "status", "?"), 0),
				    *fc = term_safe_dup(pj_str(t, "failure_class", ""), 0),
				    *name = term_safe_dup(pj_str(t, "task", "?"), 0);
		if (strcmp(st, "skipped") != 0) {
			snprintf(wall, sizeof wall, "%.2fs", pj_num(t, "wall_s", 0));
			snprintf(cpu, sizeof cpu, "%.2fs", pj_num(t, "cpu_user_s", 0) + pj_num(t, "cpu_sys_s", 0));
		}
		fmt_mem(mem, (long)pj_int(t, "max_rss_kb", 0));
		fmt_tests(tests, json_object_get(t, "tests"));
		fprintf(f, "%-12.40s %-8s %-10s %9s %9s %10s  %s\n", name, st, fc, wall, cpu, mem, tests);
	}
	if (show_failures) {
		json_array_foreach(json_object_get(r, "tasks"), i, t) {
			if (strcmp(pj_str(t, "status", ""), "failed") != 0)
				continue;
			const char *out = pj_str(t, "output", "");
			size_t len;
			const char *tl = tail_lines(out, strlen(out), 15, &len);
			_cleanup_free_ char *name = term_safe_dup(pj_str(t, "task", "?"), 0);
			fprintf(f, "\n--- %s: last lines of output", name);
			if (json_is_integer(json_object_get(t, "exit_code")))
				fprintf(f, " (exit status %lld)", pj_int(t, "exit_code", 0));
			else if (json_is_integer(json_object_get(t, "signal")))
				fprintf(f, " (signal %lld)", pj_int(t, "signal", 0));
			fputs(" ---\n", f);
			term_put_safe(f, tl, len, TERM_KEEP_NEWLINES);
			fputc('\n', f);
			const char *je = pj_str(t, "junit_error", NULL);
			if (je) { /* why a task that exited 0 failed: its JUnit report was not a file to read */
				_cleanup_free_ char *msg = term_safe_dup(je, 0);
				fprintf(f, "(failed: its JUnit report %s)\n", msg);
			}
			const json_t *tests = json_object_get(t, "tests");
			if (json_array_size(json_object_get(tests, "failures"))) {
				fprintf(f, "--- %s: failed tests ---\n", name);
				print_test_failures(f, tests, 20);
			}
		}
	}
	json_array_foreach(json_object_get(r, "tasks"), i, t) {
		if (json_is_true(json_object_get(json_object_get(t, "tests"), "no_tests"))) {
			_cleanup_free_ char *name = term_safe_dup(pj_str(t, "task", "?"), 0);
			fprintf(f, "\nnote: task %s ran no tests (none collected, or the distribution ships none)\n",
				name);
		}
	}
	_cleanup_free_ char *status = term_safe_dup(pj_str(r, "status", "?"), 0);
	/* the whole command's time when the CLI says it ("command_s"), else the job's */
	const json_t *cmd = json_object_get(r, "command_s");
	fprintf(f, "\nresult: %s in %.1fs", status, cmd ? json_number_value(cmd) : pj_num(r, "wall_s", 0));
	if (cmd && json_object_get(r, "fetch_s"))
		fprintf(f, " (fetch %.1fs, tasks %.1fs)", pj_num(r, "fetch_s", 0), pj_num(r, "wall_s", 0));
	/* the host's own path (collect sets it), escaped all the same: a stored results.json may be read back */
	const char *logs_raw = pj_str(r, "logs", NULL);
	_cleanup_free_ char *logs = logs_raw ? term_safe_dup(logs_raw, 0) : NULL;
	if (logs)
		fprintf(f, "; logs in %s", logs);
	fputc('\n', f);
}

/* The one XML escaper for sandbox text (the writer does <>&" itself): XML 1.0 allows only
 * \t \n \r, U+0020..U+D7FF, U+E000..U+FFFD and U+10000.. — anything else (a control byte, U+FFFE,
 * bytes that are not UTF-8) would make the whole file unparseable, so it becomes U+FFFD. */
static char *xml_clean(const char *s)
{
	struct buf b = BUF_INIT(0);
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(p + i, n - i);
		bool ok = k > 0;
		if (k == 1)
			ok = p[i] >= 0x20 || p[i] == '\t' || p[i] == '\n' || p[i] == '\r';
		else if (k == 3) /* U+FFFE, U+FFFF: EF BF BE/BF */
			ok = !(p[i] == 0xef && p[i + 1] == 0xbf && p[i + 2] >= 0xbe);
		if (ok)
			buf_append(&b, p + i, k);
		else
			buf_append(&b, "\xef\xbf\xbd", 3);
		i += k ? k : 1;
	}
	buf_append(&b, "", 0);
	return b.data; /* NUL-terminated by buf (it keeps one spare byte) */
}

/* Text of at most JUNIT_BODY_MAX bytes, cleaned for XML. */
static char *xml_clean_capped(const char *s)
{
	size_t n = strnlen(s, JUNIT_BODY_MAX);
	_cleanup_free_ char *cut = xasprintf("%.*s", (int)n, s);
	return xml_clean(cut);
}

static void write_attr_from(xmlTextWriterPtr w, xmlNode *n, const char *name, size_t max)
{
	xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
	if (!v)
		return;
	_cleanup_free_ char *cut = xasprintf("%.*s", (int)max, (const char *)v);
	_cleanup_free_ char *c = xml_clean(cut);
	xmlTextWriterWriteAttribute(w, (const xmlChar *)name, (const xmlChar *)c);
	xmlFree(v);
}

/* Copy the test cases of one task's JUnit file (kept in the job's logs directory), one <testcase>
 * each with its <failure>/<error>/<skipped>, into a <testsuite> named after the task. */
static void write_task_tests(xmlTextWriterPtr w, const json_t *r, const json_t *t, const char *dist)
{
	const json_t *tests = json_object_get(t, "tests");
	const char *rel = pj_str(tests, "junit", NULL), *logs = pj_str(r, "logs", NULL);
	if (!rel || !logs)
		return;
	/* runs/<job>/ keeps out/'s files at its top: out/junit-test.xml → LOGS/junit-test.xml */
	if (strncmp(rel, "out/", 4) == 0)
		rel += 4;
	/* what runs/<job>/ keeps is still the sandbox's bytes: read beneath it, no links */
	struct pyti_err e = {0};
	_cleanup_close_ int dfd = safe_opendir_path(logs, &e);
	_cleanup_buf_ struct buf b = BUF_INIT(JUNIT_MAX_BYTES);
	xmlDoc *doc = NULL;
	if (dfd >= 0 && path_is_safe_rel(rel) && safe_read_beneath(dfd, rel, &b, &e) == 0)
		doc = report_junit_parse(b.data, b.len, rel, &e);
	if (!doc && e.msg[0] && e.errnum != ENOENT)
		log_warn("--junit: %s", pyti_err_str(&e));
	_cleanup_free_ char *task = xml_clean(pj_str(t, "task", "?"));
	xmlTextWriterStartElement(w, BAD_CAST "testsuite");
	xmlTextWriterWriteFormatAttribute(w, BAD_CAST "name", "%s:%s", dist, task);
	xmlTextWriterWriteFormatAttribute(w, BAD_CAST "tests", "%lld", pj_int(tests, "total", 0));
	xmlTextWriterWriteFormatAttribute(w, BAD_CAST "failures", "%lld", pj_int(tests, "failed", 0));
	xmlTextWriterWriteFormatAttribute(w, BAD_CAST "errors", "%lld", pj_int(tests, "errors", 0));
	xmlTextWriterWriteFormatAttribute(w, BAD_CAST "skipped", "%lld",
					  pj_int(tests, "skipped", 0) + pj_int(tests, "xfailed", 0));
	/* the same walk as the counts: suites down to JUNIT_DEPTH_MAX, with an explicit stack */
	xmlNode *stack[JUNIT_DEPTH_MAX];
	int sp = 0;
	xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (root && (report_is_elem(root, "testsuite") || report_is_elem(root, "testsuites")))
		stack[sp++] = root->children;
	while (sp > 0) {
		xmlNode *n = stack[sp - 1];
		if (!n) {
			sp--;
			continue;
		}
		stack[sp - 1] = n->next;
		if ((report_is_elem(n, "testsuite") || report_is_elem(n, "testsuites")) && sp < JUNIT_DEPTH_MAX - 1) {
			stack[sp++] = n->children;
			continue;
		}
		if (!report_is_elem(n, "testcase") || !n->parent || !report_is_elem(n->parent, "testsuite"))
			continue;
		xmlTextWriterStartElement(w, BAD_CAST "testcase");
		write_attr_from(w, n, "classname", JUNIT_TEXT_MAX);
		write_attr_from(w, n, "name", JUNIT_TEXT_MAX);
		write_attr_from(w, n, "file", JUNIT_TEXT_MAX);
		write_attr_from(w, n, "line", 32);
		write_attr_from(w, n, "time", 32);
		for (xmlNode *c = n->children; c; c = c->next) {
			if (!report_is_elem(c, "failure") && !report_is_elem(c, "error") && !report_is_elem(c, "skipped"))
				continue;
			xmlTextWriterStartElement(w, c->name);
			write_attr_from(w, c, "type", JUNIT_TEXT_MAX);
			write_attr_from(w, c, "message", JUNIT_TEXT_MAX);
			xmlChar *body = xmlNodeGetContent(c);
			if (body && *body) {
				_cleanup_free_ char *cb = xml_clean_capped((const char *)body);
				xmlTextWriterWriteString(w, BAD_CAST cb);
			}
			xmlFree(body);
			xmlTextWriterEndElement(w);
		}
		xmlTextWriterEndElement(w);
	}
	xmlTextWriterEndElement(w);
	if (doc)
		xmlFreeDoc(doc);
}

int report_junit_write(const json_t *r, const char *path, struct pyti_err *err)
{
	xmlBufferPtr xb = xmlBufferCreate();
	xmlTextWriterPtr w = xmlNewTextWriterMemory(xb, 0);
	if (!w) {
		xmlBufferFree(xb);
		return pyti_err_set(err, ENOMEM, "JUnit writer");
	}
	json_t *tasks = json_object_get(r, "tasks");
	size_t i, nfail = 0, nerr = 0, nskip = 0;
	json_t *t;
	json_array_foreach(tasks, i, t) {
		const char *st = pj_str(t, "status", "");
		bool infra = pj_str(t, "failure_class", NULL) != NULL;
		nfail += strcmp(st, "failed") == 0 && !infra;
		nerr += strcmp(st, "failed") == 0 && infra;
		nskip += strcmp(st, "skipped") == 0;
	}
	_cleanup_free_ char *dist = xml_clean(pj_str(r, "dist", "?")),
			    *recipe = xml_clean(pj_str(r, "recipe", "recipe"));
	xmlTextWriterSetIndent(w, 1);
	xmlTextWriterStartDocument(w, NULL, "UTF-8", NULL);
	xmlTextWriterStartElement(w, BAD_CAST "testsuites");
	xmlTextWriterStartElement(w, BAD_CAST "testsuite");
	xmlTextWriterWriteAttribute(w, BAD_CAST "name", BAD_CAST dist);
	xmlTextWriterWriteFormatAttribute(w, BAD_CAST "tests", "%zu", json_array_size(tasks));
	xmlTextWriterWriteFormatAttribute(w, BAD_CAST "failures", "%zu", nfail);
	xmlTextWriterWriteFormatAttribute(w, BAD_CAST "skipped", "%zu", nskip);
	xmlTextWriterWriteFormatAttribute(w, BAD_CAST "errors", "%zu", nerr);
	xmlTextWriterWriteFormatAttribute(w, BAD_CAST "time", "%.3f", pj_num(r, "wall_s", 0));
	json_array_foreach(tasks, i, t) {
		const char *st = pj_str(t, "status", "");
		xmlTextWriterStartElement(w, BAD_CAST "testcase");
		xmlTextWriterWriteFormatAttribute(w, BAD_CAST "classname", "pyti.%s", recipe);
		_cleanup_free_ char *name = xml_clean(pj_str(t, "task", "?"));
		xmlTextWriterWriteAttribute(w, BAD_CAST "name", BAD_CAST name);
		xmlTextWriterWriteFormatAttribute(w, BAD_CAST "time", "%.3f", pj_num(t, "wall_s", 0));
		const char *fc0 = pj_str(t, "failure_class", NULL);
		_cleanup_free_ char *fc = fc0 ? xml_clean(fc0) : NULL;
		if (strcmp(st, "failed") == 0) {
			/* a failure class (OOM, Timeout, Infra, …) is the infrastructure's verdict, not the
			 * package's: JUnit's <error>; a plain non-zero exit is the package's <failure> */
			xmlTextWriterStartElement(w, BAD_CAST(fc ? "error" : "failure"));
			xmlTextWriterWriteFormatAttribute(w, BAD_CAST "type", "%s", fc ? fc : "Failed");
			if (json_is_integer(json_object_get(t, "exit_code")))
				xmlTextWriterWriteFormatAttribute(w, BAD_CAST "message", "exit status %lld",
								  pj_int(t, "exit_code", 0));
			xmlTextWriterEndElement(w);
		} else if (strcmp(st, "skipped") == 0) {
			xmlTextWriterStartElement(w, BAD_CAST "skipped");
			xmlTextWriterWriteFormatAttribute(w, BAD_CAST "message", "%s", fc ? fc : "skipped");
			xmlTextWriterEndElement(w);
		}
		_cleanup_free_ char *out = xml_clean(pj_str(t, "output", ""));
		xmlTextWriterWriteElement(w, BAD_CAST "system-out", BAD_CAST out);
		xmlTextWriterEndElement(w);
	}
	xmlTextWriterEndElement(w); /* the tasks' suite */
	json_array_foreach(tasks, i, t)
		write_task_tests(w, r, t, dist);
	xmlTextWriterEndDocument(w);
	xmlFreeTextWriter(w);
	int rc = write_file_atomic(path, xb->content, (size_t)xb->use, 0644, err);
	xmlBufferFree(xb);
	return rc;
}

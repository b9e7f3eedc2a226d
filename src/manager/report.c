/* Reports of a job's raw data: test counts from JUnit XML, the terminal table, JUnit XML out.
 * Everything printed from a task's output is untrusted: control characters are neutralised for the
 * terminal and replaced for XML. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xmlwriter.h>

#include "manager.h"

#define JUNIT_MAX_BYTES (64u << 20)
/* The JSON lists at most this many failed/erroring tests per task (then "failures_truncated"). */
#define JUNIT_FAILURES_MAX 1000
/* Bytes kept of each message, test id and traceback line: enough to read, bounded per test. */
#define JUNIT_TEXT_MAX 1024
/* Bytes of each test's failure text copied into --junit's output. */
#define JUNIT_BODY_MAX (64u << 10)
#define JUNIT_DEPTH_MAX 32
#define RUNTIME_MAX_BYTES (64u << 10)
#define RUNTIME_LIST_MAX 64
#define RUNTIME_TEXT_MAX 4096

static long attr_long(xmlNode *n, const char *name)
{
	xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
	if (!v)
		return 0;
	char *end;
	long r = strtol((const char *)v, &end, 10);
	xmlFree(v);
	return (r < 0) ? 0 : r;
}

/* The counts are the task's to choose (two suites of tests="9223372036854775807"): a sum that
 * would overflow sticks at LONG_MAX instead, which is both defined and obviously absurd. */
static long sat_add(long a, long b)
{
	long r;
	return __builtin_add_overflow(a, b, &r) ? LONG_MAX : r;
}

static bool is_elem(const xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && xmlStrcmp(n->name, (const xmlChar *)name) == 0;
}

/* A JUnit file is untrusted: capped, refuse any DTD (pytest never writes one, and a DTD is
 * where entity tricks live), parse with no network, no entity substitution, no DTD loading. */
static xmlDoc *junit_parse(const char *data, size_t len, const char *path, struct pyti_err *err)
{
	if (len > JUNIT_MAX_BYTES) {
		pyti_err_set(err, E2BIG, "%s: JUnit file larger than %u bytes", path, JUNIT_MAX_BYTES);
		return NULL;
	}
	if (len && memmem(data, len, "<!DOCTYPE", 9)) {
		pyti_err_set(err, 0, "%s: a JUnit file with a DOCTYPE is refused", path);
		return NULL;
	}
	/* The push parser, in chunks: libxml2 2.9's xmlReadMemory refuses any document past 10 MB
	 * ("Huge input lookup"), and a real suite's JUnit file can be that large; XML_PARSE_HUGE would
	 * lift every other limit too. */
	xmlParserCtxtPtr ctx = xmlCreatePushParserCtxt(NULL, NULL, NULL, 0, path);
	if (!ctx) {
		pyti_err_set(err, ENOMEM, "%s: XML parser", path);
		return NULL;
	}
	xmlCtxtUseOptions(ctx, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	int rc = 0;
	for (size_t off = 0; rc == 0 && off < len; off += 1u << 16) {
		size_t n = len - off < (1u << 16) ? len - off : (1u << 16);
		rc = xmlParseChunk(ctx, data + off, (int)n, 0);
	}
	if (rc == 0)
		rc = xmlParseChunk(ctx, NULL, 0, 1);
	xmlDoc *doc = ctx->myDoc;
	bool ok = rc == 0 && ctx->wellFormed && doc;
	xmlFreeParserCtxt(ctx);
	if (!ok) {
		if (doc)
			xmlFreeDoc(doc);
		pyti_err_set(err, 0, "%s: not a JUnit XML file", path);
		return NULL;
	}
	return doc;
}

/* An attribute (or NULL) as a JSON string of at most `max` bytes, made valid UTF-8. */
static json_t *attr_json(xmlNode *n, const char *name, size_t max)
{
	xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
	if (!v)
		return json_null();
	size_t len = strlen((const char *)v);
	json_t *j = pj_string_lossy((const char *)v, len < max ? len : max);
	xmlFree(v);
	return j;
}

/* The line of a failure text that says what went wrong: pytest marks the exception's lines with
 * "E   "; without one (another runner, a collection error), the first non-blank line. */
static json_t *first_line_json(xmlNode *n)
{
	xmlChar *v = xmlNodeGetContent(n);
	if (!v)
		return json_null();
	const char *first = NULL, *pick = NULL;
	size_t first_len = 0, pick_len = 0;
	for (const char *p = (const char *)v; *p && !pick;) {
		size_t l = strcspn(p, "\n");
		const char *q = p + strspn(p, " \t\r");
		size_t k = l - (size_t)(q - p); /* q stops at the newline at the latest */
		while (k && (q[k - 1] == ' ' || q[k - 1] == '\t' || q[k - 1] == '\r'))
			k--;
		if (k && !first)
			first = q, first_len = k;
		if (k > 1 && q == p && q[0] == 'E' && (q[1] == ' ' || q[1] == '\t')) {
			pick = q + 1 + strspn(q + 1, " \t");
			pick_len = k - (size_t)(pick - q);
		}
		p += l + (p[l] == '\n');
	}
	if (!pick)
		pick = first, pick_len = first_len;
	json_t *j = pick && pick_len ? pj_string_lossy(pick, pick_len < JUNIT_TEXT_MAX ? pick_len : JUNIT_TEXT_MAX)
				     : json_null();
	xmlFree(v);
	return j;
}

/* pytest's test id from a <testcase>: "classname::name" (pytest writes the module path dotted in
 * classname; the file is not in xunit2, so this is as close to the node id as JUnit gets). */
static json_t *case_id(xmlNode *tc)
{
	xmlChar *cn = xmlGetProp(tc, (const xmlChar *)"classname"), *nm = xmlGetProp(tc, (const xmlChar *)"name");
	struct buf b = BUF_INIT(JUNIT_TEXT_MAX);
	if (cn && *cn) {
		buf_puts(&b, (const char *)cn);
		buf_puts(&b, "::");
	}
	buf_puts(&b, nm ? (const char *)nm : "?");
	json_t *j = pj_string_lossy(b.data ? b.data : "", b.len);
	buf_free(&b);
	xmlFree(cn);
	xmlFree(nm);
	return j;
}

struct tally {
	long suite[4]; /* the <testsuite> attributes: tests failures errors skipped */
	bool suite_counts; /* some outermost suite has a tests="" attribute */
	long cases, passed, failed, errors, skipped, xfailed, network;
	json_t *failures;
	bool truncated;
};

/* A failure whose text shows the network refused (the sandbox has none): a connection refused or
 * unreachable, a name that did not resolve. Counted as "network" so that a regression tool can
 * tell such a test from a real failure (issue 10, point 7). */
static bool shows_network(xmlNode *c)
{
	static const char *const needles[] = {
		"ConnectionRefusedError", "Connection refused", "Network is unreachable", "[Errno 101]",
		"[Errno 111]", "Temporary failure in name resolution", "Name or service not known",
		"gaierror", "NewConnectionError", "No route to host", "[Errno -2]", "[Errno -3]",
		"Failed to establish a new connection", "nodename nor servname", NULL};
	xmlChar *text = xmlNodeGetContent(c);
	xmlChar *msg = xmlGetProp(c, (const xmlChar *)"message");
	bool hit = false;
	for (size_t i = 0; needles[i] && !hit; i++)
		hit = (text && strstr((const char *)text, needles[i])) || (msg && strstr((const char *)msg, needles[i]));
	xmlFree(text);
	xmlFree(msg);
	return hit;
}

static void tally_case(xmlNode *tc, struct tally *t)
{
	bool bad = false, skip = false, xfail = false;
	t->cases = sat_add(t->cases, 1);
	for (xmlNode *c = tc->children; c; c = c->next) {
		bool f = is_elem(c, "failure"), e = is_elem(c, "error");
		if (is_elem(c, "skipped")) {
			/* pytest marks an xfail as <skipped type="pytest.xfail">, a skip as type="pytest.skip" */
			xmlChar *ty = xmlGetProp(c, (const xmlChar *)"type");
			if (ty && xmlStrcmp(ty, (const xmlChar *)"pytest.xfail") == 0)
				xfail = true;
			else
				skip = true;
			xmlFree(ty);
		}
		if (!f && !e)
			continue;
		bad = true;
		if (f)
			t->failed = sat_add(t->failed, 1);
		else
			t->errors = sat_add(t->errors, 1);
		bool net = shows_network(c);
		if (net)
			t->network = sat_add(t->network, 1);
		if (json_array_size(t->failures) >= JUNIT_FAILURES_MAX) {
			t->truncated = true;
			continue;
		}
		json_array_append_new(t->failures, json_pack("{sosssososb}", "id", case_id(tc), "outcome",
							     f ? "failed" : "error", "message",
							     attr_json(c, "message", JUNIT_TEXT_MAX), "traceback",
							     first_line_json(c), "network", net));
	}
	if (bad)
		return;
	if (xfail)
		t->xfailed = sat_add(t->xfailed, 1);
	else if (skip)
		t->skipped = sat_add(t->skipped, 1);
	else
		t->passed = sat_add(t->passed, 1);
}

/* One <testsuites> or <testsuite> element. The attributes count only for the outermost suites (a
 * parent suite's totals include its children's); every <testcase> counts, however deep. */
static void tally_suite(xmlNode *n, struct tally *t, bool in_suite, int depth)
{
	if (depth >= JUNIT_DEPTH_MAX)
		return;
	bool suite = is_elem(n, "testsuite");
	if (suite && !in_suite) {
		t->suite_counts |= xmlHasProp(n, (const xmlChar *)"tests") != NULL;
		t->suite[0] = sat_add(t->suite[0], attr_long(n, "tests"));
		t->suite[1] = sat_add(t->suite[1], attr_long(n, "failures"));
		t->suite[2] = sat_add(t->suite[2], attr_long(n, "errors"));
		t->suite[3] = sat_add(t->suite[3], attr_long(n, "skipped"));
	}
	for (xmlNode *c = n->children; c; c = c->next) {
		if (suite && is_elem(c, "testcase"))
			tally_case(c, t);
		else if (is_elem(c, "testsuite") || is_elem(c, "testsuites"))
			tally_suite(c, t, in_suite || suite, depth + 1);
	}
}

json_t *report_junit_counts_mem(const char *data, size_t len, const char *path, struct pyti_err *err)
{
	xmlDoc *doc = junit_parse(data, len, path, err);
	if (!doc)
		return NULL;
	struct tally t = {.failures = json_array()};
	xmlNode *root = xmlDocGetRootElement(doc);
	if (root && (is_elem(root, "testsuite") || is_elem(root, "testsuites")))
		tally_suite(root, &t, false, 0);
	xmlFreeDoc(doc);
	long total;
	if (t.suite_counts || t.cases == 0) {
		/* The suites' totals, as before per-test results existed (pytest writes both; the
		 * test cases only split xfailed out of skipped). Every count is >= 0 (attr_long), so only
		 * the subtraction's sign needs care. */
		long not_passed = sat_add(sat_add(t.suite[1], t.suite[2]), t.suite[3]);
		t.passed = t.suite[0] > not_passed ? t.suite[0] - not_passed : 0;
		t.failed = t.suite[1], t.errors = t.suite[2];
		t.xfailed = t.xfailed < t.suite[3] ? t.xfailed : t.suite[3];
		t.skipped = t.suite[3] - t.xfailed;
		total = t.suite[0];
	} else {
		/* no totals written (some runners): the test cases themselves */
		total = t.cases;
	}
	/* xpassed: pytest's JUnit writes a non-strict XPASS as a plain pass and a strict one as a
	 * failure, so it cannot be told apart here (docs/contracts.md); the key is kept for runners
	 * that can. */
	/* network: of the failed and erroring tests, those whose failure shows a refused connection or
	 * a failed name lookup (also in failed/errors) */
	return json_pack("{sIsIsIsIsIsIsIsIsbsosb}", "passed", (json_int_t)t.passed, "failed", (json_int_t)t.failed,
			 "skipped", (json_int_t)t.skipped, "errors", (json_int_t)t.errors, "xfailed",
			 (json_int_t)t.xfailed, "xpassed", (json_int_t)0, "network", (json_int_t)t.network, "total",
			 (json_int_t)total, "no_tests", total == 0, "failures", t.failures, "failures_truncated",
			 t.truncated);
}

json_t *report_junit_counts(const char *path, struct pyti_err *err)
{
	_cleanup_buf_ struct buf b = BUF_INIT(JUNIT_MAX_BYTES);
	if (read_file(path, &b, err) < 0)
		return NULL;
	if (b.truncated) {
		pyti_err_set(err, E2BIG, "%s: JUnit file larger than %u bytes", path, JUNIT_MAX_BYTES);
		return NULL;
	}
	return report_junit_counts_mem(b.data, b.len, path, err);
}

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
	long long failed; /* the counts come from the guest: no overflow on a hostile sum */
	if (__builtin_add_overflow(pj_int(t, "failed", 0), pj_int(t, "errors", 0), &failed))
		failed = LLONG_MAX;
	int n = snprintf(out, 128, "%lld passed, %lld failed, %lld skipped%s", pj_int(t, "passed", 0), failed,
			 pj_int(t, "skipped", 0), pj_int(t, "errors", 0) ? " (incl. errors)" : "");
	if (pj_int(t, "xfailed", 0) && n > 0 && n < 128)
		snprintf(out + n, 128 - (size_t)n, ", %lld xfailed", pj_int(t, "xfailed", 0));
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
	fprintf(f, "\nresult: %s in %.1fs", status, pj_num(r, "wall_s", 0));
	const char *logs = pj_str(r, "logs", NULL);
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
		doc = junit_parse(b.data, b.len, rel, &e);
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
	if (root && (is_elem(root, "testsuite") || is_elem(root, "testsuites")))
		stack[sp++] = root->children;
	while (sp > 0) {
		xmlNode *n = stack[sp - 1];
		if (!n) {
			sp--;
			continue;
		}
		stack[sp - 1] = n->next;
		if ((is_elem(n, "testsuite") || is_elem(n, "testsuites")) && sp < JUNIT_DEPTH_MAX - 1) {
			stack[sp++] = n->children;
			continue;
		}
		if (!is_elem(n, "testcase") || !n->parent || !is_elem(n->parent, "testsuite"))
			continue;
		xmlTextWriterStartElement(w, BAD_CAST "testcase");
		write_attr_from(w, n, "classname", JUNIT_TEXT_MAX);
		write_attr_from(w, n, "name", JUNIT_TEXT_MAX);
		write_attr_from(w, n, "file", JUNIT_TEXT_MAX);
		write_attr_from(w, n, "line", 32);
		write_attr_from(w, n, "time", 32);
		for (xmlNode *c = n->children; c; c = c->next) {
			if (!is_elem(c, "failure") && !is_elem(c, "error") && !is_elem(c, "skipped"))
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

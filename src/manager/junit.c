/* Test results from a task's JUnit XML (untrusted input): counts, the failures list and every case,
 * through libxml2 with no DTD, entities or network, bounded in size, depth and text. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <libxml/parser.h>

#include "manager.h"
#include "report-int.h"

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

bool report_is_elem(const xmlNode *n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && xmlStrcmp(n->name, (const xmlChar *)name) == 0;
}

/* A JUnit file is untrusted: capped, refuse any DTD (pytest never writes one, and a DTD is
 * where entity tricks live), parse with no network, no entity substitution, no DTD loading. */
xmlDoc *report_junit_parse(const char *data, size_t len, const char *path, struct pyti_err *err)
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
		bool f = report_is_elem(c, "failure"), e = report_is_elem(c, "error");
		if (report_is_elem(c, "skipped")) {
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
	bool suite = report_is_elem(n, "testsuite");
	if (suite && !in_suite) {
		t->suite_counts |= xmlHasProp(n, (const xmlChar *)"tests") != NULL;
		t->suite[0] = sat_add(t->suite[0], attr_long(n, "tests"));
		t->suite[1] = sat_add(t->suite[1], attr_long(n, "failures"));
		t->suite[2] = sat_add(t->suite[2], attr_long(n, "errors"));
		t->suite[3] = sat_add(t->suite[3], attr_long(n, "skipped"));
	}
	for (xmlNode *c = n->children; c; c = c->next) {
		if (suite && report_is_elem(c, "testcase"))
			tally_case(c, t);
		else if (report_is_elem(c, "testsuite") || report_is_elem(c, "testsuites"))
			tally_suite(c, t, in_suite || suite, depth + 1);
	}
}

json_t *report_junit_counts_mem(const char *data, size_t len, const char *path, struct pyti_err *err)
{
	xmlDoc *doc = report_junit_parse(data, len, path, err);
	if (!doc)
		return NULL;
	struct tally t = {.failures = json_array()};
	xmlNode *root = xmlDocGetRootElement(doc);
	if (root && (report_is_elem(root, "testsuite") || report_is_elem(root, "testsuites")))
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

/* Test cases listed per JUnit file by report_junit_cases_mem, and the failures whose text tail is kept. */
#define JUNIT_CASES_MAX 200000
#define JUNIT_TAIL_MAX 4096

/* The last JUNIT_TAIL_MAX bytes of a failure's text (pytest writes the innermost frame last). */
static json_t *tail_json(xmlNode *n)
{
	xmlChar *v = xmlNodeGetContent(n);
	if (!v)
		return json_null();
	size_t len = strlen((const char *)v), off = len > JUNIT_TAIL_MAX ? len - JUNIT_TAIL_MAX : 0;
	json_t *j = pj_string_lossy((const char *)v + off, len - off);
	xmlFree(v);
	return j;
}

static void list_case(xmlNode *tc, json_t *cases, long *texts)
{
	const char *outcome = "passed";
	xmlNode *bad = NULL;
	for (xmlNode *c = tc->children; c; c = c->next) {
		if (report_is_elem(c, "failure") || report_is_elem(c, "error")) {
			outcome = report_is_elem(c, "failure") ? "failed" : "error";
			bad = c;
			break;
		}
		if (report_is_elem(c, "skipped")) {
			xmlChar *ty = xmlGetProp(c, (const xmlChar *)"type");
			outcome = ty && xmlStrcmp(ty, (const xmlChar *)"pytest.xfail") == 0 ? "xfailed" : "skipped";
			xmlFree(ty);
		}
	}
	json_t *o = json_pack("{s:o, s:s}", "id", case_id(tc), "outcome", outcome);
	if (bad) {
		json_object_set_new(o, "message", attr_json(bad, "message", JUNIT_TEXT_MAX));
		if (*texts < JUNIT_FAILURES_MAX) {
			json_object_set_new(o, "text", tail_json(bad));
			(*texts)++;
		}
	}
	json_array_append_new(cases, o);
}

json_t *report_junit_cases_mem(const char *data, size_t len, const char *path, struct pyti_err *err)
{
	xmlDoc *doc = report_junit_parse(data, len, path, err);
	if (!doc)
		return NULL;
	json_t *cases = json_array();
	long texts = 0;
	/* every <testcase> of every suite, down to JUNIT_DEPTH_MAX, with an explicit stack */
	xmlNode *stack[JUNIT_DEPTH_MAX];
	int sp = 0;
	xmlNode *root = xmlDocGetRootElement(doc);
	if (root && (report_is_elem(root, "testsuite") || report_is_elem(root, "testsuites")))
		stack[sp++] = root->children;
	while (sp > 0 && json_array_size(cases) < JUNIT_CASES_MAX) {
		xmlNode *n = stack[sp - 1];
		if (!n) {
			sp--;
			continue;
		}
		stack[sp - 1] = n->next;
		if (report_is_elem(n, "testcase"))
			list_case(n, cases, &texts);
		else if ((report_is_elem(n, "testsuite") || report_is_elem(n, "testsuites")) && sp < JUNIT_DEPTH_MAX)
			stack[sp++] = n->children;
	}
	xmlFreeDoc(doc);
	return cases;
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

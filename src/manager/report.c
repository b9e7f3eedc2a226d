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

static void sum_suites(xmlNode *n, long c[4], int depth)
{
	for (; n && depth < 32; n = n->next) {
		if (n->type != XML_ELEMENT_NODE)
			continue;
		if (xmlStrcmp(n->name, (const xmlChar *)"testsuite") == 0) {
			c[0] = sat_add(c[0], attr_long(n, "tests"));
			c[1] = sat_add(c[1], attr_long(n, "failures"));
			c[2] = sat_add(c[2], attr_long(n, "errors"));
			c[3] = sat_add(c[3], attr_long(n, "skipped"));
		} else if (xmlStrcmp(n->name, (const xmlChar *)"testsuites") == 0) {
			sum_suites(n->children, c, depth + 1);
		}
	}
}

json_t *report_junit_counts_mem(const char *data, size_t len, const char *name, struct pyti_err *err)
{
	if (len > INT_MAX) {
		pyti_err_set(err, EFBIG, "%s: too large", name);
		return NULL;
	}
	/* No network, no entity substitution, no DTD loading: the file comes from untrusted code. */
	xmlDoc *doc = xmlReadMemory(data, (int)len, name, NULL,
				    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (!doc) {
		pyti_err_set(err, 0, "%s: not a JUnit XML file", name);
		return NULL;
	}
	long c[4] = {0};
	sum_suites(xmlDocGetRootElement(doc), c, 0);
	xmlFreeDoc(doc);
	/* every count is >= 0 (attr_long), so only the subtraction's sign needs care */
	long not_passed = sat_add(sat_add(c[1], c[2]), c[3]);
	long passed = c[0] > not_passed ? c[0] - not_passed : 0;
	return json_pack("{sIsIsIsI}", "passed", (json_int_t)passed, "failed",
			 (json_int_t)c[1], "skipped", (json_int_t)c[3], "errors", (json_int_t)c[2]);
}

json_t *report_junit_counts(const char *path, struct pyti_err *err)
{
	_cleanup_buf_ struct buf b = BUF_INIT(JUNIT_MAX_BYTES);
	if (read_file(path, &b, err) < 0)
		return NULL;
	return report_junit_counts_mem(b.data, b.len, path, err);
}

void report_add_test_counts(json_t *results, const json_t *job, int io_fd)
{
	json_t *jtasks = json_object_get(job, "tasks"), *rtasks = json_object_get(results, "tasks");
	size_t i;
	json_t *jt;
	json_array_foreach(jtasks, i, jt) {
		const char *junit = pj_str(jt, "junit", NULL), *name = pj_str(jt, "name", "");
		if (!junit)
			continue;
		/* "/io/out/junit-test.xml" or "out/junit-test.xml" → out/junit-test.xml beneath io_fd */
		const char *rel = strncmp(junit, "/io/", 4) == 0 ? junit + 4 : junit;
		struct pyti_err e2 = {0};
		_cleanup_buf_ struct buf b = BUF_INIT(JUNIT_MAX_BYTES);
		if (safe_read_beneath(io_fd, rel, &b, &e2) < 0) {
			if (e2.errnum == ENOENT) /* a task that wrote no report is not news */
				continue;
			/* A link (to a host file, to /proc/self/fd/0), a FIFO or a huge file where the
			 * report should be: never read, and the task did not give an honest report, so it
			 * does not pass. */
			log_warn("task %s: junit %s", name, pyti_err_str(&e2));
			size_t k;
			json_t *rt;
			json_array_foreach(rtasks, k, rt) {
				if (strcmp(pj_str(rt, "task", ""), name) != 0)
					continue;
				json_object_set_new(rt, "status", json_string("failed"));
				json_object_set_new(rt, "junit_error", json_string(pyti_err_str(&e2)));
			}
			if (strcmp(pj_str(results, "status", ""), "passed") == 0)
				json_object_set_new(results, "status", json_string("failed"));
			continue;
		}
		json_t *counts = report_junit_counts_mem(b.data, b.len, rel, &e2);
		if (!counts) {
			log_warn("task %s: %s", name, pyti_err_str(&e2));
			continue;
		}
		size_t k;
		json_t *rt;
		json_array_foreach(rtasks, k, rt)
			if (strcmp(pj_str(rt, "task", ""), name) == 0)
				json_object_set(rt, "tests", counts);
		json_decref(counts);
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

static void fmt_tests(char out[96], const json_t *t)
{
	out[0] = '\0';
	if (!json_is_object(t))
		return;
	long long failed; /* the counts come from the guest: no overflow on a hostile sum */
	if (__builtin_add_overflow(pj_int(t, "failed", 0), pj_int(t, "errors", 0), &failed))
		failed = LLONG_MAX;
	snprintf(out, 96, "%lld passed, %lld failed, %lld skipped%s", pj_int(t, "passed", 0), failed,
		 pj_int(t, "skipped", 0), pj_int(t, "errors", 0) ? " (incl. errors)" : "");
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
		char wall[32] = "-", cpu[32] = "-", mem[32], tests[96];
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

int report_junit_write(const json_t *r, const char *path, struct pyti_err *err)
{
	xmlBufferPtr xb = xmlBufferCreate();
	xmlTextWriterPtr w = xmlNewTextWriterMemory(xb, 0);
	if (!w) {
		xmlBufferFree(xb);
		return pyti_err_set(err, ENOMEM, "JUnit writer");
	}
	json_t *tasks = json_object_get(r, "tasks");
	size_t i, nfail = 0, nskip = 0;
	json_t *t;
	json_array_foreach(tasks, i, t) {
		const char *st = pj_str(t, "status", "");
		nfail += strcmp(st, "failed") == 0;
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
	xmlTextWriterWriteFormatAttribute(w, BAD_CAST "errors", "0");
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
			xmlTextWriterStartElement(w, BAD_CAST "failure");
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
	xmlTextWriterEndDocument(w);
	xmlFreeTextWriter(w);
	int rc = write_file_atomic(path, xb->content, (size_t)xb->use, 0644, err);
	xmlBufferFree(xb);
	return rc;
}

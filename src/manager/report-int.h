/* manager: what report.c and junit.c share (internal to the module). */
#ifndef PYTI_REPORT_INT_H
#define PYTI_REPORT_INT_H

#include <stdbool.h>
#include <libxml/tree.h>

#include "core.h"

#define JUNIT_MAX_BYTES (64u << 20)
/* The JSON lists at most this many failed/erroring tests per task (then "failures_truncated"). */
#define JUNIT_FAILURES_MAX 1000
/* Bytes kept of each message, test id and traceback line: enough to read, bounded per test. */
#define JUNIT_TEXT_MAX 1024
/* Suites nested deeper than this are not walked (reading and writing alike). */
#define JUNIT_DEPTH_MAX 32

/* A JUnit document from untrusted bytes: no DTD, no entities, no network, capped (NULL + err). */
xmlDoc *report_junit_parse(const char *data, size_t len, const char *path, struct pyti_err *err);
/* n is an element named name. */
bool report_is_elem(const xmlNode *n, const char *name);

#endif

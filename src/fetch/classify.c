/* fetch: what a failed pip task means. pip's output and log are the sandbox's, untrusted text:
 * only searched, quoted capped, never parsed further. */
#include <stdio.h>
#include <string.h>

#include "fetch-int.h"

/* The last lines of pip's output, for an error message. */
char *fetch_tail_lines(const char *s, int lines, size_t max)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
		n--;
	size_t start = n;
	int seen = 0;
	while (start > 0 && n - start < max) {
		if (s[start - 1] == '\n' && ++seen >= lines)
			break;
		start--;
	}
	return xasprintf("%.*s", (int)(n - start), s + start);
}

static bool has_any(const char *s, const char *const *needles)
{
	for (; *needles; needles++)
		if (strstr(s, *needles))
			return true;
	return false;
}

/* The first line of text containing any of needles (allocated), or NULL. */
static char *line_with(const char *text, const char *const *needles)
{
	for (const char *const *n = needles; *n; n++) {
		const char *hit = strstr(text, *n);
		if (!hit)
			continue;
		const char *b = hit, *e = strchr(hit, '\n');
		while (b > text && b[-1] != '\n')
			b--;
		size_t len = e ? (size_t)(e - b) : strlen(b);
		return xasprintf("%.*s", (int)(len > 600 ? 600 : len), b);
	}
	return NULL;
}

/* Turn a failed pip task into an error with a failure class. pip says "No matching distribution"
 * both for a name no index has and for an index it could not reach; only its debug log (--log)
 * tells the two apart, so that is read too. */
int fetch_classify_pip(const char *dist, const char *what, const char *output, const char *log,
		       struct pyti_err *err)
{
	static const char *const net[] = {
		"connection error", "NewConnectionError", "Failed to establish a new connection",
		"Max retries exceeded", "ConnectTimeoutError", "ReadTimeoutError",
		"Temporary failure in name resolution", "Name or service not known", "Network is unreachable",
		"Connection refused", "ProxyError", "Cannot connect to proxy", "SSLError",
		"CERTIFICATE_VERIFY_FAILED", "ConnectionResetError", "No route to host", NULL};
	static const char *const unknown[] = {"No matching distribution found", "Could not find a version that satisfies",
					      NULL};
	if (!output)
		output = "";
	_cleanup_free_ char *tail = fetch_tail_lines(output, 12, 1500);
	/* When the package's own build code failed (setup.py, a PEP 517 hook; not pip's subprocess
	 * installing build dependencies), its output is in the log, and it may say "Connection
	 * refused" to pass its failure off as the index's: the class is Fetch, whatever it printed. */
	bool own_build_failed = strstr(output, "subprocess-exited-with-error") &&
				!strstr(output, "pip subprocess to install");
	if (own_build_failed) {
		/* The package's result, not the infrastructure's: its build failed (exit 1, BuildFail),
		 * with the compiler's first error and the end of the build's output. */
		static const char *const cc_err[] = {": error:", "fatal error:", "error: command", "Error:", NULL};
		/* pip run with --log sends the build's own output (the compiler's) to its log only */
		_cleanup_free_ char *first = log ? line_with(log, cc_err) : NULL;
		if (!first)
			first = line_with(output, cc_err);
		_cleanup_free_ char *btail = fetch_tail_lines(output, 25, 1400);
		pyti_err_class(err, PYTI_FC_BUILDFAIL, "%s failed to build (BuildFail) while trying to %s%s%s\nbuild "
						       "output (end):\n%s",
			       dist, what, first ? ": " : "", first ? first : "", btail);
		err->status = PYTI_EXIT_FAILED;
		return -1;
	}
	_cleanup_free_ char *netline = line_with(output, net);
	if (!netline && log)
		netline = line_with(log, net);
	if (netline)
		return pyti_err_class(err, PYTI_FC_NETWORK,
				      "cannot reach the package index to fetch %s (Network): %s\npip said:\n%s", dist,
				      netline, tail);
	if (has_any(output, unknown)) {
		/* a name or version the index does not have is the user's mistake (exit 2); pip's
		 * "(from versions: …)" in the tail names the versions it has */
		/* what the index has, as pip tells it: "(from versions: none)" or the versions, the last few */
		char has[320] = "";
		const char *fv = strstr(output, "(from versions: ");
		if (fv) {
			fv += 16;
			size_t n = strcspn(fv, ")\n");
			if (n == 4 && strncmp(fv, "none", 4) == 0) {
				snprintf(has, sizeof has, "; the index has no release of that name");
			} else if (n) {
				const char *start = fv;
				int commas = 0;
				for (const char *q = fv + n; q > fv; q--)
					if (q[-1] == ',' && ++commas == 6) {
						start = q + 1;
						break;
					}
				snprintf(has, sizeof has, "; the index has %s%.*s", start > fv ? "… " : "",
					 (int)(fv + n - start > 240 ? 240 : fv + n - start), start);
			}
		}
		pyti_err_class(err, PYTI_FC_FETCH, "unknown distribution %s (%s)%s; pip said:\n%s", dist, what, has,
			       tail);
		err->status = PYTI_EXIT_USAGE;
		return -1;
	}
	return pyti_err_class(err, PYTI_FC_FETCH, "pip could not %s for %s; pip said:\n%s", what, dist, tail);
}


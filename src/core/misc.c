/* Time, logging and hashing. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sha2.h>
#include <string.h>
#include <time.h>

#include "core.h"

int pyti_log_level = PYTI_LOG_WARN;

void pyti_log(enum pyti_loglevel lvl, const char *fmt, ...)
{
	static const char *const tag[] = {"error", "warning", "info", "debug"};
	if ((int)lvl > pyti_log_level)
		return;
	char line[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	/* Messages quote sandbox text (pip's output, task names, event strings): escape it here, once,
	 * rather than trust every caller to remember. */
	_cleanup_free_ char *safe = term_safe_dup(line, TERM_KEEP_NEWLINES);
	fprintf(stderr, "pyti: %s: %s\n", tag[lvl], safe);
}

double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double now_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void iso8601_utc(char out[32], double epoch)
{
	time_t t = (time_t)epoch;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void sha256_hex(const void *data, size_t len, char out[65])
{
	SHA2_CTX ctx;
	SHA256Init(&ctx);
	SHA256Update(&ctx, data, len);
	SHA256End(&ctx, out);
}

int sha256_fd(int fd, const char *name, char out[65], struct pyti_err *err)
{
	SHA2_CTX ctx;
	SHA256Init(&ctx);
	unsigned char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pyti_err_set(err, errno, "read %s", name);
		if (n == 0)
			break;
		SHA256Update(&ctx, chunk, (size_t)n);
	}
	SHA256End(&ctx, out);
	return 0;
}

int sha256_file(const char *path, char out[65], struct pyti_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pyti_err_set(err, errno, "open %s", path);
	return sha256_fd(fd, path, out, err);
}

bool str_has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

char *pep503_name(const char *s, size_t n)
{
	struct buf b = BUF_INIT(0);
	bool sep = false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '-' || c == '_' || c == '.') {
			sep = true;
			continue;
		}
		if (sep && b.len)
			buf_puts(&b, "-");
		sep = false;
		char lc = (char)tolower((unsigned char)c);
		buf_append(&b, &lc, 1);
	}
	return buf_steal(&b);
}

bool is_sdist_name(const char *name)
{
	static const char *const suffixes[] = {".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip"};
	for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++)
		if (str_has_suffix(name, suffixes[i]))
			return true;
	return false;
}

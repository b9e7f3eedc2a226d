/* Errors carry a message, errno and a failure class; context is prepended as they travel up. */
#include <errno.h>
#include <string.h>

#include "core.h"

static const char *const fclass_names[PYTI_FC_COUNT] = {
	[PYTI_FC_NONE] = NULL,         [PYTI_FC_OOM] = "OOM",
	[PYTI_FC_TIMEOUT] = "Timeout", [PYTI_FC_NOOUTPUT] = "NoOutput",
	[PYTI_FC_NOSPACE] = "NoSpace", [PYTI_FC_NETWORK] = "Network",
	[PYTI_FC_DEPENDSON] = "DependsOn", [PYTI_FC_PIDS] = "Pids",
	[PYTI_FC_CRASH] = "Crash",     [PYTI_FC_FETCH] = "Fetch",
	[PYTI_FC_INFRA] = "Infra",     [PYTI_FC_TAMPERED] = "Tampered",
	[PYTI_FC_BUILDFAIL] = "BuildFail",
};

const char *pyti_fclass_name(enum pyti_fclass fc)
{
	if ((unsigned)fc >= PYTI_FC_COUNT)
		return "Unknown";
	return fclass_names[fc];
}

int pyti_fclass_parse(const char *name)
{
	if (!name)
		return PYTI_FC_NONE;
	for (int i = 1; i < PYTI_FC_COUNT; i++)
		if (strcmp(fclass_names[i], name) == 0)
			return i;
	return -1;
}

__attribute__((format(printf, 5, 0))) static int verr(struct pyti_err *err, int errnum, enum pyti_fclass fc, enum pyti_estatus st,
		const char *fmt, va_list ap)
{
	if (!err)
		return -1;
	err->errnum = errnum;
	err->fclass = fc;
	err->status = st;
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	return -1;
}

int pyti_err_set(struct pyti_err *err, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verr(err, errnum, PYTI_FC_NONE, PYTI_EXIT_INFRA, fmt, ap);
	va_end(ap);
	return -1;
}

int pyti_err_usage(struct pyti_err *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verr(err, 0, PYTI_FC_NONE, PYTI_EXIT_USAGE, fmt, ap);
	va_end(ap);
	return -1;
}

int pyti_err_class(struct pyti_err *err, enum pyti_fclass fc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	verr(err, 0, fc, PYTI_EXIT_INFRA, fmt, ap);
	va_end(ap);
	return -1;
}

int pyti_err_prefix(struct pyti_err *err, const char *fmt, ...)
{
	if (!err)
		return -1;
	char pre[512], old[sizeof err->msg];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof old);
	/* Truncation keeps the context and the start of the old message; that is what we want. */
	size_t n = strlen(pre);
	if (n > sizeof err->msg - 3)
		n = sizeof err->msg - 3;
	memcpy(err->msg, pre, n);
	memcpy(err->msg + n, ": ", 2);
	size_t room = sizeof err->msg - n - 3, olen = strnlen(old, sizeof old - 1);
	if (olen > room)
		olen = room;
	memcpy(err->msg + n + 2, old, olen);
	err->msg[n + 2 + olen] = '\0';
	return -1;
}

void pyti_err_clear(struct pyti_err *err)
{
	if (err)
		memset(err, 0, sizeof *err);
}

const char *pyti_err_str(const struct pyti_err *err)
{
	static __thread char out[sizeof err->msg + 128];
	struct buf b = BUF_INIT(sizeof out - 1);
	buf_puts(&b, err->msg);
	if (err->errnum) {
		buf_puts(&b, ": ");
		buf_puts(&b, strerror(err->errnum));
	}
	memcpy(out, b.data, b.len + 1);
	buf_free(&b);
	return out;
}

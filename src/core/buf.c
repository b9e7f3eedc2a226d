/* The one growable buffer. The cap is part of the buffer: output of untrusted code never grows
 * memory without bound. */
#include <errno.h>
#include <string.h>

#include "core.h"

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		abort();
	return p;
}

void *xcalloc(size_t n, size_t m)
{
	void *p = calloc(n ? n : 1, m ? m : 1);
	if (!p)
		abort();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		abort();
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s ? s : "");
	if (!p)
		abort();
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	char *p;
	va_list ap;
	va_start(ap, fmt);
	int r = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (r < 0)
		abort();
	return p;
}

static void buf_grow(struct buf *b, size_t need)
{
	if (b->cap >= need + 1)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need + 1)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	int r = 0;
	if (b->max && b->len + n > b->max) {
		n = b->max > b->len ? b->max - b->len : 0;
		b->truncated = true;
		r = -1;
	}
	buf_grow(b, b->len + n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return r;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	char *tmp = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&tmp, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort(); /* out of memory, as in xmalloc */
	int r = buf_append(b, tmp, (size_t)n);
	free(tmp);
	return r;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	b->truncated = false;
	if (b->data)
		b->data[0] = '\0';
}

void buf_free(struct buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->truncated = false;
}

char *buf_steal(struct buf *b)
{
	char *p = b->data ? b->data : xstrdup("");
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

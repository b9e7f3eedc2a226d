/* proc: the tree's output, merged stdout and stderr, untrusted bytes: counted, written to the log
 * file up to the output limit, kept in memory as head + tail ring, split into lines for on_line. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "proc-int.h"

/* ---------------------------------------------------------------------------------------------
 * Output: head + tail ring in memory, capped log file, line splitting.
 * ------------------------------------------------------------------------------------------- */

static void out_ring_put(struct proc_out *o, const char *p, size_t n)
{
	if (!o->tail_cap)
		return;
	if (n >= o->tail_cap) {
		memcpy(o->tail, p + n - o->tail_cap, o->tail_cap);
		o->tail_pos = 0;
		o->tail_len = o->tail_cap;
		return;
	}
	size_t first = o->tail_cap - o->tail_pos;
	if (first > n)
		first = n;
	memcpy(o->tail + o->tail_pos, p, first);
	memcpy(o->tail, p + first, n - first);
	o->tail_pos = (o->tail_pos + n) % o->tail_cap;
	o->tail_len = o->tail_len + n > o->tail_cap ? o->tail_cap : o->tail_len + n;
}

/* Copy the ring's content in stream order into dst (tail_len bytes). */
static void out_ring_linear(const struct proc_out *o, char *dst)
{
	if (o->tail_len < o->tail_cap) {
		memcpy(dst, o->tail, o->tail_len);
		return;
	}
	size_t first = o->tail_cap - o->tail_pos;
	memcpy(dst, o->tail + o->tail_pos, first);
	memcpy(dst + first, o->tail, o->tail_pos);
}

size_t proc_out_tail(const struct proc_out *o, char *dst, size_t max)
{
	/* the head holds the first head_cap bytes, the ring what came after: the last bytes are the
	 * ring's, preceded (while the ring is short) by the head's end */
	size_t nr = o->tail_len < max ? o->tail_len : max;
	size_t nh = max - nr < o->head_len ? max - nr : o->head_len;
	memcpy(dst, o->head + o->head_len - nh, nh);
	size_t end = o->tail_len < o->tail_cap ? o->tail_len : o->tail_pos;
	for (size_t i = 0; i < nr; i++)
		dst[nh + i] = o->tail[(end + o->tail_cap - nr + i) % o->tail_cap];
	return nh + nr;
}

static void out_lines(struct proc_out *o, const char *p, size_t n)
{
	const struct proc_spec *s = o->spec;
	while (n) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) : n;
		size_t room = PROC_LINE_MAX - o->line_len;
		if (take > room)
			take = room;
		memcpy(o->line + o->line_len, p, take);
		o->line_len += take;
		p += take;
		n -= take;
		bool end = n && *p == '\n';
		if (end) {
			p++;
			n--;
		}
		if (end || o->line_len == PROC_LINE_MAX) {
			s->on_line(s->arg, o->line, o->line_len);
			o->line_len = 0;
		}
	}
}

void proc_out_feed(struct proc_out *o, const char *p, size_t n)
{
	o->total += n;
	if (o->log_fd >= 0 && !o->log_failed && (!o->log_limit || o->log_written < o->log_limit)) {
		size_t w = n;
		if (o->log_limit && o->log_limit - o->log_written < w)
			w = (size_t)(o->log_limit - o->log_written);
		if (write_all(o->log_fd, p, w) < 0)
			o->log_failed = true; /* e.g. ENOSPC: keep running, the memory copy remains */
		else
			o->log_written += w;
	}
	if (o->spec->on_line)
		out_lines(o, p, n);
	if (o->head_len < o->head_cap) {
		size_t h = o->head_cap - o->head_len;
		if (h > n)
			h = n;
		memcpy(o->head + o->head_len, p, h);
		o->head_len += h;
		p += h;
		n -= h;
	}
	out_ring_put(o, p, n);
}

/* Stream positions: head holds [0, H), the ring [T-R, T), the log [0, L) while it was not capped. */
void proc_out_finish(struct proc_out *o, struct proc_result *res)
{
	const struct proc_spec *s = o->spec;
	if (s->on_line && o->line_len) {
		s->on_line(s->arg, o->line, o->line_len);
		o->line_len = 0;
	}
	uint64_t T = o->total, H = o->head_len, R = o->tail_len;
	uint64_t omitted = T - H - R;
	char *lin = xmalloc(R ? R : 1);
	out_ring_linear(o, lin);
	struct buf b = BUF_INIT(0);
	buf_append(&b, o->head, o->head_len);
	if (omitted)
		buf_printf(&b, "\n[\u2026 %llu bytes omitted \u2026]\n", (unsigned long long)omitted);
	buf_append(&b, lin, R);
	/* Complete a capped log with what memory still holds, so that it keeps head and tail. */
	if (o->log_fd >= 0 && !o->log_failed && o->log_written < T) {
		uint64_t covered = o->log_written;
		if (H > covered) {
			write_all(o->log_fd, o->head + covered, (size_t)(H - covered));
			covered = H;
		}
		if (T - R > covered) {
			char mark[96];
			int m = snprintf(mark, sizeof mark, "\n[\u2026 pyti: %llu bytes omitted from this log \u2026]\n",
					 (unsigned long long)(T - R - covered));
			write_all(o->log_fd, mark, (size_t)m);
			covered = T - R;
		}
		if (T > covered)
			write_all(o->log_fd, lin + (covered - (T - R)), (size_t)(T - covered));
	}
	free(lin);
	uint64_t front = H;
	if (o->log_fd >= 0 && o->log_written > front)
		front = o->log_written;
	res->output_len = b.len;
	res->output = buf_steal(&b);
	res->output_bytes = T;
	res->output_truncated = T - R > front;
}

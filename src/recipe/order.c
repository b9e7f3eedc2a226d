/* A parsed recipe's validation: every task has a run, every need names a task, and the tasks are put
 * in an order where each comes after what it needs (or the dependency cycle is reported). */
#include <string.h>

#include "recipe-int.h"

/* ---- validation: needs, cycles, order ---- */

static int task_index(const struct recipe *r, const char *name)
{
	for (size_t i = 0; i < r->n_tasks; i++)
		if (strcmp(r->tasks[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Task indices of every need, so that ordering is not quadratic in string compares. */
struct need_idx {
	size_t *v;
	size_t n;
};

static void need_idx_free(struct need_idx *ni, size_t n)
{
	for (size_t i = 0; ni && i < n; i++)
		free(ni[i].v);
	free(ni);
}

static int order_tasks(struct parse_ctx *c, struct need_idx *ni)
{
	struct recipe *r = c->r;
	size_t n = r->n_tasks;
	/* Kahn's algorithm; the lowest file index among ready tasks goes first. */
	_cleanup_free_ bool *placed = xcalloc(n, sizeof *placed);
	_cleanup_free_ size_t *order = xcalloc(n, sizeof *order);
	size_t done = 0;
	while (done < n) {
		size_t pick = n;
		for (size_t i = 0; i < n && pick == n; i++) {
			if (placed[i])
				continue;
			bool ready = true;
			for (size_t k = 0; k < ni[i].n && ready; k++)
				ready = placed[ni[i].v[k]];
			if (ready)
				pick = i;
		}
		if (pick == n)
			break;
		placed[pick] = true;
		order[done++] = pick;
	}
	if (done < n) {
		/* Every unplaced task waits for an unplaced one: walk until a task repeats. */
		_cleanup_free_ size_t *seen_at = xcalloc(n, sizeof *seen_at); /* position+1 in path */
		_cleanup_free_ size_t *path = xcalloc(n + 1, sizeof *path);
		size_t cur = 0, len = 0;
		while (placed[cur])
			cur++;
		while (!seen_at[cur]) {
			seen_at[cur] = ++len;
			path[len - 1] = cur;
			for (size_t k = 0; k < ni[cur].n; k++)
				if (!placed[ni[cur].v[k]]) {
					cur = ni[cur].v[k];
					break;
				}
		}
		/* path[seen_at[cur]-1 .. len-1] is the cycle, each needing the next */
		_cleanup_buf_ struct buf b = BUF_INIT(1024);
		for (size_t i = seen_at[cur] - 1; i < len; i++)
			buf_printf(&b, "%s -> ", r->tasks[path[i]].name);
		buf_puts(&b, r->tasks[cur].name);
		return recipe_perr(c, r->tasks[cur].line, "dependency cycle: %s%s", b.data, b.truncated ? "..." : "");
	}
	struct recipe_task *sorted = xcalloc(n, sizeof *sorted);
	for (size_t i = 0; i < n; i++)
		sorted[i] = r->tasks[order[i]];
	free(r->tasks);
	r->tasks = sorted;
	return 0;
}

int recipe_validate_and_order(struct parse_ctx *c)
{
	struct recipe *r = c->r;
	size_t n = r->n_tasks;
	if (!n)
		return recipe_perr(c, 0, "empty recipe: no [task:NAME] section");
	struct need_idx *ni = xcalloc(n, sizeof *ni);
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct recipe_task *t = &r->tasks[i];
		if (!t->run) {
			rc = recipe_perr(c, t->line, "[task:%s] has no 'run'", t->name);
			break;
		}
		ni[i].v = xcalloc(t->n_needs + 1, sizeof *ni[i].v);
		for (size_t k = 0; k < t->n_needs; k++) {
			int x = task_index(r, t->needs[k]);
			if (x < 0) {
				rc = recipe_perr(c, c->needs_line[i] ? c->needs_line[i] : t->line,
					  "[task:%s] needs unknown task '%s'", t->name, t->needs[k]);
				break;
			}
			ni[i].v[ni[i].n++] = (size_t)x;
		}
		if (!t->cwd)
			t->cwd = xstrdup(RECIPE_DEFAULT_CWD);
	}
	if (rc == 0)
		rc = order_tasks(c, ni);
	need_idx_free(ni, n);
	return rc;
}

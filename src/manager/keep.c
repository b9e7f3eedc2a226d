/* What the host keeps of a job's out/: at most MANAGER_KEEP_MAX bytes of regular files.
 *
 * out/ is written by the tested package's tasks, and runs/<job>/ stays until the user removes
 * it: without a cap, one task writing 1 GiB there keeps 1 GiB on the host for ever. The agent's
 * results.json comes first, then the JUnit files at the top of out/ (the host reads test counts
 * from them), then the logs (each already capped at its task's output_limit), then anything
 * else, each group in name order; a file that would pass the total is removed and named in
 * results' "omitted_outputs". The walk (tree_walk) opens every directory with O_NOFOLLOW beneath out/
 * and never follows a link; links and special files are left for the safe readers to refuse. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "manager.h"

#define KEEP_DEPTH_MAX 32
#define KEEP_FILES_MAX 100000 /* past this many, the rest count as omitted without their size */

struct keep_file {
	char *rel; /* path under out/ */
	uint64_t bytes;
	int rank;
};

struct keep_list {
	struct keep_file *v;
	size_t n, cap;
	size_t uncounted; /* files past KEEP_FILES_MAX, removed as they were found */
	uint64_t uncounted_bytes;
};

static int keep_rank(const char *rel)
{
	if (!strcmp(rel, "results.json"))
		return 0;
	if (!strchr(rel, '/') && !strncmp(rel, "junit", 5) && str_has_suffix(rel, ".xml"))
		return 1;
	if (!strncmp(rel, "logs/", 5))
		return 2;
	return 3;
}

static int keep_file(void *arg, const struct tree_entry *e)
{
	struct keep_list *l = arg;
	if (!S_ISREG(e->st->st_mode))
		return TREE_WALK_NEXT;
	if (l->n >= KEEP_FILES_MAX) {
		if (unlinkat(e->dirfd, e->name, 0) == 0) {
			l->uncounted++;
			l->uncounted_bytes += (uint64_t)e->st->st_size;
		}
		return TREE_WALK_NEXT;
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->v = xrealloc(l->v, l->cap * sizeof *l->v);
	}
	l->v[l->n++] = (struct keep_file){xstrdup(e->rel), (uint64_t)e->st->st_size, keep_rank(e->rel)};
	return TREE_WALK_NEXT;
}

static int keep_cmp(const void *a, const void *b)
{
	const struct keep_file *x = a, *y = b;
	if (x->rank != y->rank)
		return x->rank - y->rank;
	return strcmp(x->rel, y->rel);
}

int manager_cap_outputs(const char *out_dir, uint64_t cap, json_t *results, struct pyti_err *err)
{
	_cleanup_close_ int root = open(out_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (root < 0)
		return pyti_err_set(err, errno, "open %s", out_dir);
	struct keep_list l = {0};
	tree_walk(root, KEEP_DEPTH_MAX, keep_file, NULL, &l);
	if (l.n)
		qsort(l.v, l.n, sizeof *l.v, keep_cmp);
	uint64_t kept = 0, dropped = l.uncounted_bytes;
	size_t n_dropped = l.uncounted;
	_cleanup_json_ json_t *omitted = json_array();
	for (size_t i = 0; i < l.n; i++) {
		struct keep_file *f = &l.v[i];
		if (f->bytes <= cap - kept) {
			kept += f->bytes;
		} else {
			/* The sandbox is gone (nothing changes out/ any more) and the walk saw each
			 * component of rel as a directory, not a link. */
			if (unlinkat(root, f->rel, 0) < 0 && errno != ENOENT)
				log_warn("out/: cannot remove %s: %s", f->rel, strerror(errno));
			dropped += f->bytes;
			n_dropped++;
			if (json_array_size(omitted) < 100)
				json_array_append_new(omitted, json_pack("{s:o, s:I}", "file",
									 pj_string_lossy(f->rel, strlen(f->rel)), "bytes",
									 (json_int_t)f->bytes));
		}
		free(f->rel);
	}
	free(l.v);
	if (n_dropped) {
		log_warn("kept %llu bytes of the job's out/ (the cap is %llu): %zu files (%llu bytes) left out",
			 (unsigned long long)kept, (unsigned long long)cap, n_dropped, (unsigned long long)dropped);
		if (results)
			json_object_set_new(results, "omitted_outputs",
					    json_pack("{s:I, s:I, s:O}", "files", (json_int_t)n_dropped, "bytes",
						      (json_int_t)dropped, "first", omitted));
	}
	return 0;
}

/* core: the one walk of a directory tree that a sandbox (or a task in it) may have written: fd-based
 * all the way down, every entry lstat'ed (fstatat AT_SYMLINK_NOFOLLOW) in the directory that holds
 * it, every subdirectory opened O_NOFOLLOW beneath its parent, so a link where a directory was is
 * never followed and no path is looked up again from the top. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

struct walk {
	int max_depth;
	tree_walk_fn pre, post;
	void *arg;
	struct buf rel;
};

/* The entries of the directory dfd (consumed), whose entries are at depth. */
static int walk_dir(struct walk *w, int dfd, int depth)
{
	_cleanup_closedir_ DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return 0;
	}
	size_t base = w->rel.len;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		w->rel.len = base;
		if (base)
			buf_append(&w->rel, "/", 1);
		buf_append(&w->rel, de->d_name, strlen(de->d_name));
		struct tree_entry e = {.dirfd = dirfd(d), .name = de->d_name, .rel = w->rel.data, .st = &st,
				       .depth = depth};
		int r = w->pre ? w->pre(w->arg, &e) : TREE_WALK_NEXT;
		if (r < 0)
			return r;
		if (!S_ISDIR(st.st_mode) || r == TREE_WALK_SKIP)
			continue;
		if (depth < w->max_depth) {
			int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0) {
				r = walk_dir(w, sub, depth + 1);
				if (r < 0)
					return r;
			}
			w->rel.len = base + (base ? 1 : 0) + strlen(de->d_name);
			w->rel.data[w->rel.len] = '\0';
			e.rel = w->rel.data;
		}
		if (w->post && (r = w->post(w->arg, &e)) < 0)
			return r;
	}
	w->rel.len = base;
	if (w->rel.data)
		w->rel.data[base] = '\0';
	return 0;
}

int tree_walk(int dirfd, int max_depth, tree_walk_fn pre, tree_walk_fn post, void *arg)
{
	int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return 0;
	struct walk w = {.max_depth = max_depth, .pre = pre, .post = post, .arg = arg, .rel = BUF_INIT(0)};
	int r = walk_dir(&w, dfd, 0);
	buf_free(&w.rel);
	return r;
}

/* Safe unpacking of sdists and wheels (see pyti_archive.h for the rules).
 *
 * Two passes over the archive: pass 1 validates every entry and counts what the decompressor
 * really produces (headers may lie about sizes), then checks the things that need the whole
 * archive (symlink targets through other symlinks, hard-link targets, paths through symlinks).
 * Pass 2 re-validates each entry against what pass 1 saw and writes it without ever following a
 * symlink. */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "archive-int.h"
#include "pyti_archive.h"

#define MAX_LINK_EXPANSIONS 40
/* Path components visited while resolving all symlinks of one archive: crafted chains of long
 * targets must not turn validation into a denial of service. */
#define MAX_RESOLVE_STEPS (8u << 20)

struct link {
	char *path, *target;
	size_t ord; /* entry number, for "appears before" */
};

struct unpack {
	const char *apath; /* the archive, for messages */
	struct arch_opts o;
	uint64_t compressed;
	uint64_t entries, bytes;
	char *top; /* the top-level directory when stripping */
	/* pass 1 inventory, sorted at its end */
	char **paths; /* every entry that is written */
	size_t n_paths, cap_paths;
	struct link *files; /* regular files (hard-link targets), target unused */
	size_t n_files, cap_files;
	struct link *hards; /* hard links */
	size_t n_hards, cap_hards;
	struct link *syms;
	size_t n_syms, cap_syms;
	size_t resolve_steps;
	struct pyti_err *err;
};

static void push_str(char ***v, size_t *n, size_t *cap, char *s)
{
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 64;
		*v = xrealloc(*v, *cap * sizeof **v);
	}
	(*v)[(*n)++] = s;
}

static void unpack_clear(struct unpack *u)
{
	free(u->top);
	for (size_t i = 0; i < u->n_paths; i++)
		free(u->paths[i]);
	free(u->paths);
	for (size_t i = 0; i < u->n_files; i++)
		free(u->files[i].path);
	free(u->files);
	for (size_t i = 0; i < u->n_hards; i++) {
		free(u->hards[i].path);
		free(u->hards[i].target);
	}
	free(u->hards);
	for (size_t i = 0; i < u->n_syms; i++) {
		free(u->syms[i].path);
		free(u->syms[i].target);
	}
	free(u->syms);
}

static int cmp_link(const void *a, const void *b)
{
	const struct link *x = a, *y = b;
	int c = strcmp(x->path, y->path);
	return c ? c : (x->ord > y->ord) - (x->ord < y->ord);
}

static int cmp_link_path(const void *a, const void *b)
{
	return strcmp(((const struct link *)a)->path, ((const struct link *)b)->path);
}

static void push_link(struct link **v, size_t *n, size_t *cap, const char *path, const char *target, size_t ord)
{
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 64;
		*v = xrealloc(*v, *cap * sizeof **v);
	}
	(*v)[(*n)++] = (struct link){xstrdup(path), target ? xstrdup(target) : NULL, ord};
}

static const struct link *find_sym(const struct unpack *u, const char *path)
{
	struct link key = {.path = (char *)path};
	return u->n_syms ? bsearch(&key, u->syms, u->n_syms, sizeof key, cmp_link_path) : NULL;
}

/* A regular file of the archive at path, written before entry number ord (any, with SIZE_MAX). */
static bool have_file(const struct unpack *u, const char *path, size_t ord)
{
	struct link key = {.path = (char *)path};
	const struct link *f = u->n_files ? bsearch(&key, u->files, u->n_files, sizeof key, cmp_link_path) : NULL;
	if (!f)
		return false;
	while (f > u->files && strcmp(f[-1].path, path) == 0)
		f--; /* the earliest of duplicates */
	return f->ord < ord;
}

/* Opens the archive with only the formats and filters an sdist or wheel can use. */

/* Normalise an entry name: no leading "/", no "..", "." and empty components dropped. With strip,
 * the first component must be u->top (set from the first entry) and is removed. *out is "" for
 * the root itself (or the stripped top directory). */
static int norm_path(struct unpack *u, const char *raw, const char *what, bool is_dir, char **out)
{
	if (!raw || !*raw)
		return pyti_err_set(u->err, 0, "%s: %s with an empty or unreadable name", u->apath, what);
	if (raw[0] == '/')
		return pyti_err_set(u->err, 0, "%s: refusing %s '%s': absolute path", u->apath, what, raw);
	if (strlen(raw) >= PATH_MAX)
		return pyti_err_set(u->err, 0, "%s: refusing %s '%.64s...': path too long", u->apath, what, raw);
	_cleanup_buf_ struct buf b = BUF_INIT(0);
	bool first = true, stripped = !u->o.strip_top;
	for (const char *p = raw; *p;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return pyti_err_set(u->err, 0, "%s: refusing %s '%s': '..' in path", u->apath, what, raw);
		if (n > NAME_MAX)
			return pyti_err_set(u->err, 0, "%s: refusing %s '%.64s...': name too long", u->apath, what, raw);
		if (n && !(n == 1 && p[0] == '.')) {
			if (!stripped) {
				/* the top component: a directory, either explicitly or because more follows */
				bool more = false;
				for (const char *q = e; q && *q; q++)
					if (*q != '/' && !(*q == '.' && (q[1] == '/' || !q[1])))
						more = true;
				if (!more && !is_dir)
					return pyti_err_set(u->err, 0,
							    "%s: '%s' is not under a single top-level directory", u->apath, raw);
				if (!u->top)
					u->top = xasprintf("%.*s", (int)n, p);
				else if (strlen(u->top) != n || memcmp(u->top, p, n) != 0)
					return pyti_err_set(u->err, 0,
							    "%s: more than one top-level directory ('%s' and '%.*s')",
							    u->apath, u->top, (int)n, p);
				stripped = true;
			} else {
				if (!first)
					buf_puts(&b, "/");
				buf_append(&b, p, n);
				first = false;
			}
		}
		if (!e)
			break;
		p = e + 1;
	}
	if (!stripped && !is_dir) /* nothing but "." and "/" */
		return pyti_err_set(u->err, 0, "%s: '%s' is not under a single top-level directory", u->apath, raw);
	*out = buf_steal(&b);
	return 0;
}

/* Follows target from dir through the archive's own symlinks; -1 when it leaves the tree (or
 * loops). cur holds dir on entry and the resolved path on success. */
static int resolve(struct unpack *u, char *cur, const char *target, int *budget)
{
	if (target[0] == '/')
		return -1;
	for (const char *p = target; *p;) {
		if (++u->resolve_steps > MAX_RESOLVE_STEPS) {
			*budget = -1;
			return -1;
		}
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (!*cur)
				return -1;
			char *s = strrchr(cur, '/');
			if (s)
				*s = '\0';
			else
				*cur = '\0';
		} else if (n && !(n == 1 && p[0] == '.')) {
			size_t cl = strlen(cur);
			if (cl + n + 2 >= PATH_MAX)
				return -1;
			if (cl)
				cur[cl++] = '/';
			memcpy(cur + cl, p, n);
			cur[cl + n] = '\0';
			const struct link *l = find_sym(u, cur);
			if (l) {
				if (--*budget < 0)
					return -1;
				char *s = strrchr(cur, '/');
				if (s)
					*s = '\0';
				else
					*cur = '\0';
				if (resolve(u, cur, l->target, budget) < 0)
					return -1;
			}
		}
		if (!e)
			break;
		p = e + 1;
	}
	return 0;
}

static const char *type_name(mode_t t)
{
	switch (t) {
	case AE_IFCHR: return "a character device";
	case AE_IFBLK: return "a block device";
	case AE_IFIFO: return "a FIFO";
	case AE_IFSOCK: return "a socket";
	default: return "of an unknown type";
	}
}

enum kind { K_SKIP, K_DIR, K_FILE, K_SYMLINK, K_HARDLINK };

/* Validates one header; fills *path (and *target for links). Counts the entry. */
static int check_entry(struct unpack *u, struct archive_entry *e, enum kind *kind, char **path, char **target)
{
	const char *raw = archive_entry_pathname(e);
	*kind = K_SKIP;
	*path = *target = NULL;
	if (++u->entries > u->o.max_entries)
		return pyti_err_set(u->err, 0, "%s: more than %llu entries", u->apath,
				    (unsigned long long)u->o.max_entries);
	const char *hl = archive_entry_hardlink(e);
	mode_t t = archive_entry_filetype(e);
	if (!hl && t != AE_IFREG && t != AE_IFDIR && t != AE_IFLNK)
		return pyti_err_set(u->err, 0, "%s: refusing entry '%s': it is %s", u->apath, raw ? raw : "?",
				    type_name(t));
	if (norm_path(u, raw, "entry", t == AE_IFDIR, path) < 0)
		return -1;
	if (!**path) {
		if (hl || t != AE_IFDIR)
			return pyti_err_set(u->err, 0, "%s: refusing entry '%s': not a directory at the top", u->apath, raw);
		free(*path);
		*path = NULL;
		return 0;
	}
	if (hl) {
		/* a hard link names another entry of the archive, with the same top directory */
		_cleanup_free_ char *tp = NULL;
		struct pyti_err sub = {0};
		struct pyti_err *saved = u->err;
		u->err = &sub;
		int r = norm_path(u, hl, "hard link target", false, &tp);
		u->err = saved;
		if (r < 0 || !*tp)
			return pyti_err_set(u->err, 0, "%s: refusing hard link '%s' -> '%s': target outside the archive",
					    u->apath, raw, hl);
		*target = steal_pointer(&tp);
		*kind = K_HARDLINK;
		return 0;
	}
	if (t == AE_IFLNK) {
		const char *st = archive_entry_symlink(e);
		if (!st || !*st)
			return pyti_err_set(u->err, 0, "%s: refusing symlink '%s': empty target", u->apath, raw);
		if (st[0] == '/')
			return pyti_err_set(u->err, 0, "%s: refusing symlink '%s' -> '%s': absolute target", u->apath,
					    raw, st);
		if (strlen(st) >= PATH_MAX)
			return pyti_err_set(u->err, 0, "%s: refusing symlink '%s': target too long", u->apath, raw);
		*target = xstrdup(st);
		*kind = K_SYMLINK;
		return 0;
	}
	*kind = t == AE_IFDIR ? K_DIR : K_FILE;
	return 0;
}

static int count_bytes(struct unpack *u, const char *name, uint64_t n)
{
	u->bytes += n;
	if (u->bytes > u->o.max_bytes)
		return pyti_err_set(u->err, EFBIG, "%s: refusing entry '%s': archive expands to more than %llu bytes",
				    u->apath, name, (unsigned long long)u->o.max_bytes);
	if (u->bytes > ARCH_RATIO_FLOOR && (double)u->bytes > u->o.max_ratio * (double)u->compressed)
		return pyti_err_set(u->err, EFBIG,
				    "%s: refusing entry '%s': archive expands more than %.0f times its size "
				    "(decompression bomb?)",
				    u->apath, name, u->o.max_ratio);
	return 0;
}

static int read_err(struct unpack *u, struct archive *a, const char *name)
{
	return pyti_err_set(u->err, archive_errno(a) > 0 ? archive_errno(a) : 0, "%s: entry '%s': %s", u->apath,
			    name ? name : "?", archive_error_string(a) ? archive_error_string(a) : "read error");
}

/* Reads (and, with fd >= 0, writes) an entry's data, counting what comes out. */
static int pump_data(struct unpack *u, struct archive *a, const char *name, int fd)
{
	uint64_t end = 0;
	for (;;) {
		const void *blk;
		size_t sz;
		la_int64_t off;
		int r = archive_read_data_block(a, &blk, &sz, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN)
			return read_err(u, a, name);
		if (off < 0)
			return pyti_err_set(u->err, 0, "%s: entry '%s': bad data offset", u->apath, name);
		/* sparse holes count: they are bytes of the file someone will read */
		uint64_t newend = (uint64_t)off + sz;
		if (newend > end) {
			if (count_bytes(u, name, newend - end) < 0)
				return -1;
			end = newend;
		}
		if (fd >= 0) {
			const char *p = blk;
			size_t left = sz;
			while (left) {
				ssize_t w = pwrite(fd, p, left, off);
				if (w < 0) {
					if (errno == EINTR)
						continue;
					return pyti_err_set(u->err, errno, "%s: write '%s'", u->apath, name);
				}
				p += w;
				off += w;
				left -= (size_t)w;
			}
		}
	}
	if (fd >= 0 && ftruncate(fd, (off_t)end) < 0)
		return pyti_err_set(u->err, errno, "%s: write '%s'", u->apath, name);
	return 0;
}

static int pass1(struct unpack *u, const char *path)
{
	_cleanup_archive_ struct archive *a = arch_open_read(path, true, u->err);
	if (!a)
		return -1;
	struct archive_entry *e;
	int r;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		enum kind k;
		_cleanup_free_ char *p = NULL, *t = NULL;
		if (check_entry(u, e, &k, &p, &t) < 0)
			return -1;
		if (pump_data(u, a, archive_entry_pathname(e), -1) < 0)
			return -1;
		if (k == K_SKIP)
			continue;
		if (k == K_FILE)
			push_link(&u->files, &u->n_files, &u->cap_files, p, NULL, u->entries);
		if (k == K_SYMLINK)
			push_link(&u->syms, &u->n_syms, &u->cap_syms, p, t, u->entries);
		if (k == K_HARDLINK)
			push_link(&u->hards, &u->n_hards, &u->cap_hards, p, t, u->entries);
		push_str(&u->paths, &u->n_paths, &u->cap_paths, steal_pointer(&p));
	}
	if (r != ARCHIVE_EOF)
		return read_err(u, a, NULL);
	if (u->entries == 0)
		return pyti_err_set(u->err, 0, "%s: empty archive", u->apath);

	if (u->n_files)
		qsort(u->files, u->n_files, sizeof *u->files, cmp_link);
	if (u->n_syms)
		qsort(u->syms, u->n_syms, sizeof *u->syms, cmp_link);
	/* syms are unique by path (checked below), so find_sym's bsearch by path is exact */
	for (size_t i = 1; i < u->n_syms; i++)
		if (strcmp(u->syms[i - 1].path, u->syms[i].path) == 0)
			return pyti_err_set(u->err, 0, "%s: refusing symlink '%s': it appears twice", u->apath,
					    u->syms[i].path);

	/* A hard link names a regular file that the archive wrote before it. */
	for (size_t i = 0; i < u->n_hards; i++)
		if (!have_file(u, u->hards[i].target, u->hards[i].ord))
			return pyti_err_set(u->err, 0,
					    "%s: refusing hard link '%s' -> '%s': target is not a regular file of this "
					    "archive (written before the link)",
					    u->apath, u->hards[i].path, u->hards[i].target);
	/* Nothing may be written through one of the archive's symlinks. */
	for (size_t i = 0; i < u->n_paths; i++) {
		const char *p = u->paths[i];
		char tmp[PATH_MAX];
		snprintf(tmp, sizeof tmp, "%s", p);
		for (char *s = strchr(tmp, '/'); s; s = strchr(s + 1, '/')) {
			*s = '\0';
			if (find_sym(u, tmp))
				return pyti_err_set(u->err, 0, "%s: refusing entry '%s': its parent '%s' is a symlink",
						    u->apath, p, tmp);
			*s = '/';
		}
	}
	for (size_t i = 0; i < u->n_syms; i++) {
		char cur[PATH_MAX];
		snprintf(cur, sizeof cur, "%s", u->syms[i].path);
		char *s = strrchr(cur, '/');
		if (s)
			*s = '\0';
		else
			*cur = '\0';
		int budget = MAX_LINK_EXPANSIONS;
		if (resolve(u, cur, u->syms[i].target, &budget) < 0)
			return pyti_err_set(u->err, 0, "%s: refusing symlink '%s' -> '%s': it points outside the archive%s",
					    u->apath, u->syms[i].path, u->syms[i].target,
					    budget < 0 ? " (or loops)" : "");
	}
	return 0;
}

/* ---- pass 2: writing under dest without following symlinks ---- */

/* Opens (creating when asked) the directory rel (n bytes of it) under dfd, one component at a
 * time with O_NOFOLLOW. */
static int open_dir_at(struct unpack *u, int dfd, const char *rel, size_t n, bool create)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return pyti_err_set(u->err, errno, "%s: open destination", u->apath);
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && rel[j] != '/')
			j++;
		char comp[NAME_MAX + 1];
		size_t cl = j - i;
		if (cl == 0 || cl > NAME_MAX) {
			close(fd);
			return pyti_err_set(u->err, EINVAL, "%s: bad path '%.*s'", u->apath, (int)n, rel);
		}
		memcpy(comp, rel + i, cl);
		comp[cl] = '\0';
		int nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (nfd < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, comp, 0755) < 0 && errno != EEXIST) {
				int en = errno;
				close(fd);
				return pyti_err_set(u->err, en, "%s: mkdir '%.*s'", u->apath, (int)j, rel);
			}
			nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		int en = errno;
		close(fd);
		if (nfd < 0)
			return pyti_err_set(u->err, en == ELOOP ? ENOTDIR : en,
					    "%s: '%.*s' is not a directory (symlink or file in the way)", u->apath,
					    (int)j, rel);
		fd = nfd;
		i = j + 1;
	}
	return fd;
}

static int open_parent(struct unpack *u, int dfd, const char *rel, const char **leaf, bool create)
{
	const char *s = strrchr(rel, '/');
	*leaf = s ? s + 1 : rel;
	return open_dir_at(u, dfd, rel, s ? (size_t)(s - rel) : 0, create);
}

/* Makes room for a new non-directory at leaf: removes a previous file or link of that name. */
static int clear_leaf(struct unpack *u, int pfd, const char *leaf, const char *rel)
{
	struct stat st;
	if (fstatat(pfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : pyti_err_set(u->err, errno, "%s: stat '%s'", u->apath, rel);
	if (S_ISDIR(st.st_mode))
		return pyti_err_set(u->err, EISDIR, "%s: entry '%s' would replace a directory", u->apath, rel);
	if (unlinkat(pfd, leaf, 0) < 0)
		return pyti_err_set(u->err, errno, "%s: replace '%s'", u->apath, rel);
	return 0;
}

static int write_entry(struct unpack *u, struct archive *a, struct archive_entry *e, int dfd, enum kind k,
		       const char *p, const char *t)
{
	if (k == K_DIR) {
		int fd = open_dir_at(u, dfd, p, strlen(p), true);
		if (fd < 0)
			return -1;
		close(fd);
		return pump_data(u, a, p, -1);
	}
	const char *leaf;
	_cleanup_close_ int pfd = open_parent(u, dfd, p, &leaf, true);
	if (pfd < 0)
		return -1;
	if (clear_leaf(u, pfd, leaf, p) < 0)
		return -1;
	if (k == K_SYMLINK) {
		const struct link *l = find_sym(u, p);
		if (!l || strcmp(l->target, t) != 0)
			return pyti_err_set(u->err, 0, "%s: archive changed while unpacking (symlink '%s')", u->apath, p);
		if (symlinkat(t, pfd, leaf) < 0)
			return pyti_err_set(u->err, errno, "%s: symlink '%s'", u->apath, p);
		return pump_data(u, a, p, -1);
	}
	if (k == K_HARDLINK) {
		if (!have_file(u, t, SIZE_MAX))
			return pyti_err_set(u->err, 0, "%s: archive changed while unpacking (hard link '%s')", u->apath, p);
		const char *tleaf;
		_cleanup_close_ int tfd = open_parent(u, dfd, t, &tleaf, false);
		if (tfd < 0)
			return -1;
		struct stat st;
		if (fstatat(tfd, tleaf, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			return pyti_err_set(u->err, 0, "%s: hard link '%s' -> '%s': target not unpacked as a regular file",
					    u->apath, p, t);
		if (linkat(tfd, tleaf, pfd, leaf, 0) < 0)
			return pyti_err_set(u->err, errno, "%s: hard link '%s'", u->apath, p);
		return pump_data(u, a, p, -1);
	}
	mode_t mode = (archive_entry_perm(e) & 0111) ? 0755 : 0644;
	_cleanup_close_ int fd = openat(pfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return pyti_err_set(u->err, errno, "%s: create '%s'", u->apath, p);
	if (fchmod(fd, mode) < 0)
		return pyti_err_set(u->err, errno, "%s: chmod '%s'", u->apath, p);
	return pump_data(u, a, p, fd);
}

static int pass2(struct unpack *u, const char *path, int dfd)
{
	_cleanup_archive_ struct archive *a = arch_open_read(path, true, u->err);
	if (!a)
		return -1;
	u->entries = u->bytes = 0;
	struct archive_entry *e;
	int r;
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		enum kind k;
		_cleanup_free_ char *p = NULL, *t = NULL;
		if (check_entry(u, e, &k, &p, &t) < 0)
			return -1;
		if (k == K_SKIP) {
			if (pump_data(u, a, archive_entry_pathname(e), -1) < 0)
				return -1;
			continue;
		}
		if (write_entry(u, a, e, dfd, k, p, t) < 0)
			return -1;
	}
	if (r != ARCHIVE_EOF)
		return read_err(u, a, NULL);
	return 0;
}

int arch_unpack(const char *path, const char *dest_dir, const struct arch_opts *opts, struct pyti_err *err)
{
	struct unpack u = {.apath = path, .err = err};
	if (opts)
		u.o = *opts;
	if (!u.o.max_bytes)
		u.o.max_bytes = ARCH_DEFAULT_MAX_BYTES;
	if (!u.o.max_entries)
		u.o.max_entries = ARCH_DEFAULT_MAX_ENTRIES;
	if (!(u.o.max_ratio > 0))
		u.o.max_ratio = ARCH_DEFAULT_MAX_RATIO;
	struct stat st;
	if (stat(path, &st) < 0)
		return pyti_err_set(err, errno, "%s", path);
	if (!S_ISREG(st.st_mode))
		return pyti_err_set(err, 0, "%s: not a regular file", path);
	u.compressed = st.st_size > 0 ? (uint64_t)st.st_size : 1;

	int rc = pass1(&u, path);
	if (rc == 0) {
		free(u.top);
		u.top = NULL;
		rc = mkdir_p(dest_dir, 0755, err);
	}
	if (rc == 0) {
		_cleanup_close_ int dfd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0)
			rc = pyti_err_set(err, errno, "open %s", dest_dir);
		else
			rc = pass2(&u, path, dfd);
	}
	unpack_clear(&u);
	return rc;
}

/* core: errors, cleanup helpers, the one growable buffer, safe paths, JSON helpers, logging.
 *
 * Everything here needs only libc and jansson, so the static guest agent can link it too.
 * Conventions (see docs/HACKING.md):
 *   - fallible functions return 0 (or a non-negative value) on success and -1 on error, filling a
 *     struct pyti_err; callers add context with pyti_err_prefix() and pass it up; only cli prints.
 *   - _free() functions accept NULL; locals are released by the _cleanup_*_ attributes.
 */
#ifndef PYTI_CORE_H
#define PYTI_CORE_H

#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <jansson.h>

/* ---- failure classes: why a job or task failed, independent of how it is reported ---- */
enum pyti_fclass {
	PYTI_FC_NONE = 0,
	PYTI_FC_OOM,       /* memory limit reached */
	PYTI_FC_TIMEOUT,   /* wall-clock or CPU timeout */
	PYTI_FC_NOOUTPUT,  /* silent past no_output_timeout */
	PYTI_FC_NOSPACE,   /* disk or file-size limit reached */
	PYTI_FC_NETWORK,   /* could not reach an index / network needed */
	PYTI_FC_DEPENDSON, /* a task it needs did not pass */
	PYTI_FC_PIDS,      /* process-count limit reached */
	PYTI_FC_CRASH,     /* sandbox/guest died (kernel panic, agent gone) */
	PYTI_FC_FETCH,     /* distribution could not be resolved or downloaded */
	PYTI_FC_INFRA,     /* pyti's own machinery failed */
	PYTI_FC_TAMPERED,  /* the job's results are not what its agent reported (a task forged them) */
	PYTI_FC_BUILDFAIL, /* the distribution (or a dependency) failed to build: the package's result */
	PYTI_FC_COUNT
};
const char *pyti_fclass_name(enum pyti_fclass fc); /* "OOM", "Timeout", …; NULL for NONE */
int pyti_fclass_parse(const char *name);           /* -1 if unknown */

/* ---- errors ---- */
enum pyti_estatus {
	PYTI_EXIT_OK = 0,
	PYTI_EXIT_FAILED = 1, /* a task failed */
	PYTI_EXIT_USAGE = 2,  /* usage or configuration error */
	PYTI_EXIT_INFRA = 3,  /* infrastructure error */
};

struct pyti_err {
	int errnum;              /* errno, or 0 */
	enum pyti_fclass fclass; /* set when the error is about a job */
	enum pyti_estatus status;/* what the CLI should exit with; defaults to PYTI_EXIT_INFRA */
	char msg[2048];
};

/* All return -1 so that `return pyti_err_set(err, …);` reads naturally. err may be NULL. */
int pyti_err_set(struct pyti_err *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A usage/configuration error (exit status 2). */
int pyti_err_usage(struct pyti_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An error that carries a failure class. */
int pyti_err_class(struct pyti_err *err, enum pyti_fclass fc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Prepend "context: " to the message. */
int pyti_err_prefix(struct pyti_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pyti_err_clear(struct pyti_err *err);
/* "msg: strerror(errnum)" when errnum is set, else msg. Points into a static-per-thread buffer. */
const char *pyti_err_str(const struct pyti_err *err);

/* ---- cleanup attributes ---- */
static inline void pyti_freep(void *p) { free(*(void **)p); }
static inline void pyti_closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
static inline void pyti_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
static inline void pyti_closedirp(DIR **d)
{
	if (*d)
		closedir(*d);
}
static inline void pyti_json_decrefp(json_t **j)
{
	if (*j)
		json_decref(*j);
}
static inline void *pyti_steal(void *pp)
{
	void **p = pp, *v = *p;
	*p = NULL;
	return v;
}
static inline int pyti_steal_fd(int *fd)
{
	int v = *fd;
	*fd = -1;
	return v;
}
/* Both ends of a pipe2()/socketpair() array, each closed when >= 0. */
static inline void pyti_close_pairp(int (*p)[2])
{
	for (int i = 0; i < 2; i++)
		if ((*p)[i] >= 0)
			close((*p)[i]);
}
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(pyti_freep)
#define _cleanup_close_ _cleanup_(pyti_closep)
#define _cleanup_fclose_ _cleanup_(pyti_fclosep)
#define _cleanup_json_ _cleanup_(pyti_json_decrefp)
#define _cleanup_close_pair_ _cleanup_(pyti_close_pairp)
#define _cleanup_closedir_ _cleanup_(pyti_closedirp)
/* The ternary makes the compiler check that *pp is a pointer (steal_pointer(&an_int) is an error:
 * a pointer/integer mismatch), the cast gives the result *pp's own type. */
#define steal_pointer(pp) ((__typeof__(*(pp)))(0 ? (*(pp)) : pyti_steal(pp)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation that never returns NULL: out of memory on the host is not recoverable. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- the one growable buffer, with a hard cap (curl's dynbuf idea) ----
 * max == 0 means no cap. Appending past max keeps what fits, sets truncated and returns -1.
 * data is always NUL-terminated (when non-NULL), so it may be used as a C string if it holds no NUL. */
struct buf {
	char *data;
	size_t len, cap, max;
	bool truncated;
};
#define BUF_INIT(maxbytes) {NULL, 0, 0, (maxbytes), false}
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
char *buf_steal(struct buf *b); /* caller frees; returns "" (allocated) for an empty buffer */
static inline void buf_freep(struct buf *b) { buf_free(b); }
#define _cleanup_buf_ _cleanup_(buf_freep)

/* ---- files and paths ---- */
/* true when rel is a relative path with no "..", no empty or absolute components, no NUL. */
bool path_is_safe_rel(const char *rel);
/* root + "/" + rel after path_is_safe_rel(rel); caller frees *out. */
int path_join_safe(const char *root, const char *rel, char **out, struct pyti_err *err);
int mkdir_p(const char *path, unsigned mode, struct pyti_err *err);
/* Remove a tree without following symlinks; a missing path is not an error. */
int rm_rf(const char *path, struct pyti_err *err);
/* Walk the tree below the directory dirfd (not consumed; it may be an O_PATH fd) without following
 * a link anywhere: each entry is lstat'ed in the directory holding it and each subdirectory opened
 * O_NOFOLLOW beneath its parent. pre is called for every entry (depth 0: the entries of dirfd), a
 * directory's before its contents; it returns TREE_WALK_NEXT, TREE_WALK_SKIP (do not enter this
 * directory) or a negative value, which stops the walk and is returned. post (may be NULL) is
 * called for a directory after its contents. Directories at max_depth are not entered; entries
 * that vanish or cannot be opened are passed over. e->dirfd and e->rel are valid only during the
 * call. Returns 0 or what a callback stopped it with. */
struct stat;
struct tree_entry {
	int dirfd;             /* the directory holding the entry */
	const char *name;      /* its name there */
	const char *rel;       /* its path below the walk's top, "a/b/name" */
	const struct stat *st; /* its lstat */
	int depth;
};
enum { TREE_WALK_NEXT = 0, TREE_WALK_SKIP = 1 };
typedef int (*tree_walk_fn)(void *arg, const struct tree_entry *e);
int tree_walk(int dirfd, int max_depth, tree_walk_fn pre, tree_walk_fn post, void *arg);
/* All of data[0..len) to fd, across short writes and EINTR; 0 or -1 with errno. */
int write_all(int fd, const void *data, size_t len);
/* Read a whole file into b (respecting b->max: larger files are an error). */
int read_file(const char *path, struct buf *b, struct pyti_err *err);
/* Write via a temporary file in the same directory + fsync + rename. The temporary name
 * (path.tmp.<pid>.<random>) is created with O_EXCL|O_NOFOLLOW, so a pre-made name or link there is
 * never written through; a directory at path makes it fail. */
int write_file_atomic(const char *path, const void *data, size_t len, unsigned mode, struct pyti_err *err);
int copy_file(const char *src, const char *dst, unsigned mode, struct pyti_err *err);
bool path_exists(const char *path);
bool path_is_dir(const char *path);

/* ---- reading what a sandbox wrote (beneath.c) ----
 * rel is resolved beneath dirfd without following any link (symlinks, /proc magic links: ELOOP)
 * and must be path_is_safe_rel(). Files: a regular file only (a FIFO or device is EINVAL, and
 * never blocks: it is opened O_NONBLOCK), at most max bytes (0 = no cap; EFBIG beyond). */
int safe_open_beneath(int dirfd, const char *rel, uint64_t max, struct pyti_err *err);
/* A directory beneath dirfd (O_RDONLY|O_DIRECTORY, usable with fdopendir and *at()). */
int safe_opendir_beneath(int dirfd, const char *rel, struct pyti_err *err);
/* A host-made directory by path, refusing a symlink at its last component. */
int safe_opendir_path(const char *path, struct pyti_err *err);
/* Read fd to its end into b (b->max caps it); name is for messages. */
int safe_read_fd(int fd, const char *name, struct buf *b, struct pyti_err *err);
int safe_read_beneath(int dirfd, const char *rel, struct buf *b, struct pyti_err *err);
/* safe_read_beneath() below the directory root (itself not a link). */
int safe_read_under(const char *root, const char *rel, struct buf *b, struct pyti_err *err);
json_t *pj_load_beneath(int dirfd, const char *rel, size_t max, struct pyti_err *err);
/* Copy what fd reads into a new file dst (O_EXCL: an existing dst or link there is an error). */
int copy_fd_new(int in, const char *name, const char *dst, unsigned mode, struct pyti_err *err);
extern bool beneath_no_openat2; /* tests: force the O_NOFOLLOW walk */

/* ---- leftovers of killed runs (owner.c) ----
 * owner_claim: record under parent that the caller owns parent/name (made before or after it) for
 * as long as the returned fd stays open (an flock the kernel drops when the process dies, however
 * it dies). owner_release: drop the record (call it after removing the directory, or to keep it
 * for good, as --keep does). owner_sweep: remove parent/<name> of every record no live process
 * holds, giving a root caller's sandbox-owned tree back first; returns how many. */
int owner_claim(const char *parent, const char *name, struct pyti_err *err);
void owner_release(const char *parent, const char *name, int fd);
int owner_sweep(const char *parent);
/* An flock'ed lock file at path that still bears that name once the lock is ours (a sweeper or
 * the last holder may unlink it meanwhile); lock_release unlinks it while held, so lock files do
 * not pile up; lock_sweep removes *suffix files of dir that nobody holds (killed holders). */
int lock_open_held(const char *path, struct pyti_err *err);
void lock_release(const char *path, int fd);
int lock_sweep(const char *dir, const char *suffix);

/* ---- source trees (a local DIST directory) ----
 * Litter that is never part of a source: .tox .nox .venv __pycache__ .pytest_cache .mypy_cache,
 * *.pyc, a top-level build/; and version control (.git .hg) unless SRC_TREE_KEEP_VCS (a build
 * needs it: setuptools-scm reads the version from tags). One rule for every copy and for the
 * fetch cache's hash of a tree. depth 0 = an entry of the tree's top directory. */
#define SRC_TREE_KEEP_VCS 0x1u
bool src_tree_skip(const char *name, bool is_dir, int depth, unsigned flags);
/* Copy src to dst (created): directories, regular files (their own permission bits, plus
 * owner-read, without set-id bits; one the caller cannot read is left out with a warning naming
 * it) and symlinks that are relative and have no ".." (they stay inside); nothing is followed, and
 * what src_tree_skip(flags) says or anything else (devices, fifos, escaping links) is left out. */
int copy_src_tree(const char *src, const char *dst, unsigned flags, struct pyti_err *err);

/* ---- JSON helpers over jansson ---- */
json_t *pj_load_file(const char *path, struct pyti_err *err);
json_t *pj_loads(const char *s, size_t len, struct pyti_err *err);
int pj_dump_file(const json_t *j, const char *path, struct pyti_err *err); /* atomic */
const char *pj_str(const json_t *obj, const char *key, const char *dflt);
long long pj_int(const json_t *obj, const char *key, long long dflt);
double pj_num(const json_t *obj, const char *key, double dflt); /* accepts int or real */
bool pj_bool(const json_t *obj, const char *key, bool dflt);
/* Build a JSON string from untrusted bytes: invalid UTF-8 is replaced with U+FFFD. */
json_t *pj_string_lossy(const char *p, size_t n);
/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0 when it is not one. */
size_t utf8_seq(const unsigned char *p, size_t n);

/* Write untrusted bytes to a terminal with every control that could drive it escaped: C0 (but
 * \n and \t with TERM_KEEP_NEWLINES), DEL, UTF-8-encoded C1 (U+0080..U+009F, as \u00XX), bidi
 * controls (U+200E/F, U+202A..U+202E, U+2066..U+2069) and other invisible format characters (as
 * \uXXXX or \UXXXXXXXX) and bytes that are not UTF-8 (as \xNN); TERM_ESCAPE_BACKSLASH escapes
 * '\\' too (unambiguous names). The one sanitiser for sandbox text on its way to a terminal: the
 * CLI's error printer and pyti_log() pass everything through it. */
#define TERM_KEEP_NEWLINES 0x1u
#define TERM_ESCAPE_BACKSLASH 0x2u
void term_put_safe(FILE *f, const char *s, size_t n, unsigned flags);
/* The same into a new string (caller frees). */
char *term_safe_dup(const char *s, unsigned flags);

/* ---- time ---- */
double now_mono(void);                       /* seconds, CLOCK_MONOTONIC */
bool str_has_suffix(const char *s, const char *suffix);
/* A source distribution's file name: .tar.gz .tgz .tar.bz2 .tar.xz .tar .zip */
bool is_sdist_name(const char *name);
/* The PEP 503 normalised form of the project name s[0..n): lower case, each run of "-", "_", "."
 * one "-" (none at either end). The one normaliser: fetch and archive use it. Caller frees. */
char *pep503_name(const char *s, size_t n);
void iso8601_utc(char out[32], double epoch); /* "2026-11-23T10:00:00Z" */
double now_wall(void);

/* ---- logging (stderr); only cli and the agent's main decide the level ---- */
enum pyti_loglevel { PYTI_LOG_ERROR, PYTI_LOG_WARN, PYTI_LOG_INFO, PYTI_LOG_DEBUG };
extern int pyti_log_level;
void pyti_log(enum pyti_loglevel lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_warn(...) pyti_log(PYTI_LOG_WARN, __VA_ARGS__)
#define log_info(...) pyti_log(PYTI_LOG_INFO, __VA_ARGS__)
#define log_debug(...) pyti_log(PYTI_LOG_DEBUG, __VA_ARGS__)

/* ---- hashing (for the cache and image manifests) ---- */
/* sha256 of a file / bytes as 64 lowercase hex chars + NUL. */
int sha256_file(const char *path, char out[65], struct pyti_err *err);
int sha256_fd(int fd, const char *name, char out[65], struct pyti_err *err); /* from fd's offset */
void sha256_hex(const void *data, size_t len, char out[65]);

#endif

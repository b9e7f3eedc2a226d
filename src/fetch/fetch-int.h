/* Internal to the fetch module. */
#ifndef PYTI_FETCH_INT_H
#define PYTI_FETCH_INT_H

#include "fetch.h"

/* cache.c */
/* Look up key; on a hit, link/copy the files into io_dir/wheels and io_dir/sdist and fill out.
 * Returns 1 on a hit, 0 on a miss, -1 on error. max_age_s > 0 treats older entries as misses. */
int fetch_cache_get(const char *state_dir, const char *key, double max_age_s, const char *io_dir,
		    struct fetch_result *out, struct pyti_err *err);
/* Store the wheels of wheel_dir (every *.whl), sdist (may be NULL) and the dist's own wheel name
 * under key, atomically. Everything is copied, never linked or chmodded in place: wheel_dir and
 * an sdist_is_ours sdist are the fetch sandbox's, so they are opened without following links and
 * only regular files are taken (a link to a host file is left out); a user's own sdist keeps its
 * inode and mode.
 * test_requires (may be NULL): the test requirements the source declares, kept in the entry. */
int fetch_cache_put(const char *state_dir, const char *key, const char *dist, const char *wheel_dir,
		    const char *sdist, bool sdist_is_ours, const char *dist_wheel, char *const *test_requires,
		    const json_t *test_record, struct pyti_err *err);
/* A plain file name (no '/', no leading '.', not empty). */
bool fetch_name_ok(const char *name);

/* testreqs.c: what src/fetch/testreqs.py (run by the fetch sandbox's "testreqs" task on an sdist
 * or source directory) printed: the requirements of its test dependency groups or test
 * requirements file, one a line. */
#define FETCH_MAX_REQ_FILE (256 * 1024)
#define FETCH_MAX_REQS 256
/* The lines of data that pass fetch_requirement_ok, at most FETCH_MAX_REQS; NULL-terminated
 * (free with fetch_strv_free), never NULL. */
char **fetch_parse_requirements(const char *data, size_t size);
/* The requirements in path, one a line (lines failing fetch_requirement_ok are dropped);
 * NULL-terminated (free with fetch_strv_free), or NULL on error. */
char **fetch_read_requirements(const char *path, struct pyti_err *err);
/* One requirement line: not empty, at most 1024 bytes of UTF-8, no control characters, not an
 * option or a comment. */
bool fetch_requirement_ok(const char *s, size_t len);
void fetch_strv_free(char **v);
/* The record testreqs.py wrote (out/testreqs.json: untrusted), rebuilt from its known fields:
 * {"declared": [{"requirement","from"}], "fetched": ["req"…], "dropped": [{"requirement","from",
 * "reason"}]}, texts valid UTF-8 and capped, at most FETCH_MAX_REQS entries each. in may be
 * anything (NULL too). A new reference, never NULL. */
json_t *fetch_testreqs_record(const json_t *in);
/* One warning per dropped test requirement (at most 20), for the fresh and the cached run alike. */
void fetch_testreqs_warn(const char *dist, const json_t *record);

/* ---- classify.c ---- */
/* The last lines (at most max bytes) of pip's output s, trailing blank and spaces dropped; caller frees. */
char *fetch_tail_lines(const char *s, int lines, size_t max);
/* Turn a failed pip task ("own" or "deps": what = what it was trying to do) into err with a failure
 * class (Network, Fetch, BuildFail) and exit status, from its output and its --log (may be NULL). -1. */
int fetch_classify_pip(const char *dist, const char *what, const char *output, const char *log,
		       struct pyti_err *err);

#endif

/* fetch: get a distribution, its dependencies and its test dependencies as wheels into a job's
 * wheelhouse, with the guest's own python3/pip running inside a fetch sandbox (the ns backend with
 * the host's network), and keep what was fetched in a content-addressed cache shared by jobs:
 *   STATE/cache/blobs/<sha256>        one wheel or sdist, read-only
 *   STATE/cache/fetch/<key>.json      {"files":[{"name","sha256"}],"sdist":{…}|null,"dist_wheel",…}
 * pip's configuration comes from the user's environment (PIP_* variables and pip.conf files);
 * settings naming host files are made visible read-only in the sandbox or dropped with a warning.
 * No index URL is ever written by pyti. */
#ifndef PYTI_FETCH_H
#define PYTI_FETCH_H

#include <sys/stat.h>

#include "core.h"

struct fetch_req {
	const char *dist;              /* name, any pip requirement, local sdist/wheel file, or source dir */
	const char *const *requires;   /* extra requirements such as the recipe's test runner; NULL-terminated, may be NULL */
	const char *const *extras;     /* extras to ask for; NULL = fetch_test_extras (unknown ones only warn) */
	const char *state_dir;         /* cache in state_dir/cache, scratch in state_dir/tmp */
	const char *image_dir;         /* the guest image (rootfs/, manifest.json) */
	const char *agent_path;        /* the static pyti-agent */
	const char *io_dir;            /* the job's I/O directory: wheels go to io_dir/wheels, the sdist to io_dir/sdist */
	double timeout_s;              /* backstop for the fetch sandbox; 0 = 1800 */
	bool refresh;                  /* skip the cache lookup (the result is still cached) */
	char *const *envp;             /* the user's environment; NULL = environ */
	/* Agent events of the fetch sandbox (progress), may be NULL. */
	void (*on_event)(void *arg, json_t *event);
	void *arg;
};

/* The host's settings, read from the environment once by the CLI (man/pyti.1, ENVIRONMENT), not
 * here: how old an unpinned requirement's cache entry may be ($PYTI_FETCH_TTL, seconds, as given:
 * fetch_dist says when it is not a number; NULL = a day) and keeping the scratch directory
 * ($PYTI_KEEP_FETCH, debugging). */
struct fetch_host {
	const char *ttl;
	bool keep_scratch;
};
void fetch_set_host(const struct fetch_host *h);

/* The extras that name a distribution's test dependencies: "test", "tests", "testing"; NULL-ended.
 * Fetched by default, and installed by {extras} when the distribution declares them. */
extern const char *const fetch_test_extras[];

struct fetch_result {
	char *wheelhouse; /* io_dir/wheels */
	char *sdist;      /* io_dir/sdist/<file> (the sdist whose tests are run), or NULL (wheel-only, source dir) */
	char *dist_wheel; /* file name, in wheelhouse, of the distribution's own wheel */
	char **test_requires; /* NULL-terminated test requirements its source declares (PEP 735 groups
			       * test/tests/testing, else a test or dev requirements file), fetched
			       * into wheelhouse too; never NULL */
	json_t *test_requirements; /* what became of the declared test requirements: {"declared",
			       * "fetched", "dropped" (with "reason")}, as docs/contracts.md says; NULL
			       * when the source declares none it could read (a wheel, no sdist) */
	bool from_cache;  /* nothing was fetched: the cache had it all */
	double wall_s;
};

/* Fills out (release with fetch_result_free). On -1, err->fclass is PYTI_FC_FETCH (unknown
 * distribution, failing build), PYTI_FC_NETWORK (index unreachable) or PYTI_FC_INFRA. */
int fetch_dist(const struct fetch_req *req, struct fetch_result *out, struct pyti_err *err);
/* DIST names a local file or directory (and not a requirement that happens to match a file name
 * in the working directory): it exists and has a '/', a .whl or an sdist suffix. Fills st. */
bool fetch_dist_is_local(const char *dist, struct stat *st);
void fetch_result_free(struct fetch_result *r);

/* `pyti cache`: what the cache holds. An entry is one fetch's list of blobs; a blob that no entry
 * names is unreferenced (garbage). */
struct fetch_cache_stats {
	uint64_t entries, blobs, bytes;            /* what is there (after a clean: what is left) */
	uint64_t unreferenced, unreferenced_bytes; /* blobs no entry names */
	uint64_t entries_removed, blobs_removed, bytes_removed;
	double oldest, newest;                     /* entries' creation times (epoch seconds), 0 = none */
};
int fetch_cache_info(const char *state_dir, struct fetch_cache_stats *st, struct pyti_err *err);
/* Remove the entries older than older_than_s seconds (0 = every entry), then every blob no
 * remaining entry names (with older_than_s > 0 not one written in the last 10 minutes, which a
 * fetch running now may be storing). A job that then misses a blob fetches again. */
int fetch_cache_clean(const char *state_dir, double older_than_s, struct fetch_cache_stats *st, struct pyti_err *err);

/* ---- exposed for tests and for `pyti` diagnostics ---- */

/* pip's configuration as pyti hands it into the fetch sandbox. */
struct fetch_pipconf {
	json_t *env;      /* name -> value for the task environment (PIP_*, proxies), host paths checked */
	char *conf;       /* merged pip.conf text to write into the sandbox (PIP_CONFIG_FILE points at it) */
	char **ro_binds;  /* NULL-terminated host paths the settings name, to bind read-only */
	size_t nbinds;
	char *key_part;   /* settings that change what is fetched (pre, only-binary…), for the cache key */
	char **warnings;  /* NULL-terminated: settings dropped (missing host files…) */
	size_t nwarnings;
};
/* Read PIP_CONFIG_FILE (or /etc/xdg/pip/pip.conf, /etc/pip.conf, ~/.pip/pip.conf,
 * $XDG_CONFIG_HOME/pip/pip.conf or ~/.config/pip/pip.conf, later ones winning) and the PIP_*
 * variables of envp (NULL = environ). */
int fetch_pipconf_load(char *const *envp, struct fetch_pipconf *pc, struct pyti_err *err);
/* The same with explicit config files (in increasing priority); for tests. */
int fetch_pipconf_from(const char *const *files, char *const *envp, struct fetch_pipconf *pc,
		       struct pyti_err *err);
void fetch_pipconf_free(struct fetch_pipconf *pc);

/* Cache key (64 hex chars): sha256 over what determines a fetch's result. dist_id is the DIST
 * spec, or "file:<sha256>"/"dir:<sha256>" of a local file/directory's content. */
void fetch_cache_key(const char *dist_id, const char *const *extras, const char *const *requires,
		     const char *image_hash, const char *pip_key_part, char out[65]);
/* sha256 over a source directory's regular files and symlinks (names and contents, sorted), as
 * copy_src_tree(SRC_TREE_KEEP_VCS) copies it for a build, except that of .git/.hg only HEAD and
 * the refs count (a new tag or commit changes the key; the object store is not read). */
int fetch_hash_dir(const char *dir, char out[65], struct pyti_err *err);
/* PEP 503 normalised project name of a wheel/sdist file name or requirement ("Foo_Bar-1.0…" → "foo-bar"). */
char *fetch_norm_name(const char *s);

#endif

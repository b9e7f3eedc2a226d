/* fetch_dist: the cache first; on a miss, pip inside a fetch sandbox.
 *
 * The fetch sandbox is the ns backend with a network (slirp4netns), running the same agent as a test
 * job on a generated job.json whose tasks are pip commands of the guest's own python3, so that
 * wheels are built for the guest's Python and any package code (setup.py) runs confined:
 *   own    pip wheel --no-deps -w /io/own DIST           the distribution's own wheel
 *   deps   pip wheel -w /io/wheels OWN.whl[extras] REQS  with its (test) dependencies, and beside
 *          it (requirements only) the sdist of the same version: getsdist.py asks pip's finder for
 *          its link without building anything (pip download --no-binary, the fallback, would
 *          install its build backend); a wheel-only project just has no sdist
 *   testreqs  the test requirements the sdist or source tree declares (PEP 735 dependency groups,
 *          requirements-test.txt …), read by testreqs.py; when there are any, one more pip wheel
 *          of everything together so that the wheelhouse holds one consistent resolution. Its
 *          failure only means "no such test requirements".
 * Building the own wheel first and resolving the rest from it treats every kind of DIST alike
 * and names the distribution's own wheel without parsing pip's output. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "fetch-int.h"
#include "sandbox.h"
#include "getsdist_py.h" /* getsdist_py[]: src/fetch/getsdist.py, embedded by the build */
#include "testreqs_py.h" /* testreqs_py[]: src/fetch/testreqs.py */

#define FETCH_TMPFS (4ULL << 30)     /* each tmpfs of the fetch sandbox (docs/contracts.md) */
#define FETCH_IO_LIMIT (16ULL << 30) /* what one fetch task may add under /io */

extern char **environ;

enum fetch_kind { FK_REQ, FK_SDIST, FK_WHEEL, FK_DIR };

const char *const fetch_test_extras[] = {"test", "tests", "testing", NULL};

static char *sh_quote(const char *s)
{
	struct buf b = BUF_INIT(0);
	buf_puts(&b, "'");
	for (; *s; s++) {
		if (*s == '\'')
			buf_puts(&b, "'\\''");
		else
			buf_append(&b, s, 1);
	}
	buf_puts(&b, "'");
	return buf_steal(&b);
}

static bool extra_ok(const char *e)
{
	if (!*e || strlen(e) > 64)
		return false;
	for (; *e; e++)
		if (!((*e >= 'a' && *e <= 'z') || (*e >= 'A' && *e <= 'Z') || (*e >= '0' && *e <= '9') ||
		      *e == '-' || *e == '_' || *e == '.'))
			return false;
	return true;
}

static char *read_log(const char *io, const char *task)
{
	_cleanup_free_ char *p = xasprintf("out/pip-%s.log", task);
	struct buf b = BUF_INIT(16u << 20);
	if (safe_read_under(io, p, &b, NULL) < 0) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

static json_t *task_new(const char *name, const char *run, const char *need)
{
	json_t *t = json_object();
	json_object_set_new(t, "name", json_string(name));
	json_object_set_new(t, "run", json_string(run));
	json_t *needs = json_array();
	if (need)
		json_array_append_new(needs, json_string(need));
	json_object_set_new(t, "needs", needs);
	json_object_set_new(t, "cwd", json_string("/io"));
	json_object_set_new(t, "env", json_object());
	json_object_set_new(t, "timeout", json_integer(900));
	json_object_set_new(t, "no_output_timeout", json_integer(300));
	json_object_set_new(t, "memory", json_integer(0));
	json_object_set_new(t, "pids", json_integer(0));
	json_object_set_new(t, "output_limit", json_integer(1 << 20));
	json_object_set_new(t, "junit", json_null());
	return t;
}

static char *image_hash(const char *image_dir)
{
	_cleanup_free_ char *m = xasprintf("%s/manifest.json", image_dir);
	_cleanup_json_ json_t *j = pj_load_file(m, NULL);
	const char *h = j ? pj_str(j, "hash", NULL) : NULL;
	if (h && *h)
		return xstrdup(h);
	char sha[65];
	if (sha256_file(m, sha, NULL) == 0)
		return xstrdup(sha);
	return xasprintf("image-dir:%s", image_dir);
}

/* Extras named in the DIST itself ("pkg[a,b]>=1"), merged with the requested ones. */
static char *extras_list(const char *dist, enum fetch_kind kind, const char *const *extras)
{
	struct buf b = BUF_INIT(0);
	for (size_t i = 0; extras[i]; i++)
		if (extra_ok(extras[i]))
			buf_printf(&b, "%s%s", b.len ? "," : "", extras[i]);
	if (kind == FK_REQ) {
		size_t name_end = strcspn(dist, "[=<>!~;@ (");
		if (dist[name_end] == '[') {
			const char *close = strchr(dist + name_end, ']');
			if (close) {
				_cleanup_free_ char *in = xasprintf("%.*s", (int)(close - dist - name_end - 1),
								    dist + name_end + 1);
				char *save = NULL;
				for (char *t = strtok_r(in, ", ", &save); t; t = strtok_r(NULL, ", ", &save))
					if (extra_ok(t))
						buf_printf(&b, "%s%s", b.len ? "," : "", t);
			}
		}
	}
	return buf_steal(&b);
}

bool fetch_dist_is_local(const char *dist, struct stat *st)
{
	return stat(dist, st) == 0 && (S_ISDIR(st->st_mode) || S_ISREG(st->st_mode)) &&
	       (strchr(dist, '/') || str_has_suffix(dist, ".whl") || is_sdist_name(dist));
}

static bool pinned(const char *dist)
{
	return strstr(dist, "==") && !strchr(dist, '*') && !strchr(dist, ',');
}

/* The only *.whl in dir (the own wheel), or NULL. */
static char *only_wheel(const char *dir)
{
	int dfd = safe_opendir_path(dir, NULL); /* the sandbox's: not through a link */
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		return NULL;
	}
	char *found = NULL;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (fetch_name_ok(e->d_name) && str_has_suffix(e->d_name, ".whl")) {
			n++;
			free(found);
			found = xstrdup(e->d_name);
		}
	closedir(d);
	if (n != 1) {
		free(found);
		return NULL;
	}
	return found;
}

static char *first_sdist(const char *dir)
{
	/* /io/sdist is the sandbox's: a link to a host directory is not looked into, a link or
	 * FIFO in it is not an sdist (and the cache opens the one found without following links) */
	int dfd = safe_opendir_path(dir, NULL);
	DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
	if (!d) {
		if (dfd >= 0) {
			close(dfd);
		} else if (path_exists(dir) && !path_is_dir(dir)) {
			log_warn("fetch: /io/sdist was replaced by something other than a directory; ignored");
		} else {
			struct stat lst;
			if (lstat(dir, &lst) == 0 && S_ISLNK(lst.st_mode))
				log_warn("fetch: /io/sdist was replaced by a link; not followed");
		}
		return NULL;
	}
	char *found = NULL;
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		if (!fetch_name_ok(e->d_name) || !is_sdist_name(e->d_name))
			continue;
		struct stat st;
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
			found = xasprintf("%s/%s", dir, e->d_name);
	}
	closedir(d);
	return found;
}

/* The fetch lock of one cache key, released (and its file removed) on every way out. */
struct held_lock {
	const char *path;
	int fd;
};
static void held_lock_release(struct held_lock *l)
{
	lock_release(l->path, l->fd);
}

struct fetch_ctx {
	const struct fetch_req *req;
	enum fetch_kind kind;
	const char *dist_arg_in_io; /* what pip gets as DIST inside the sandbox */
	char *extras;
};

/* "set -- OWN.whl && pip wheel OPTS -w /io/wheels OWN.whl[extras] REQS": the distribution with
 * everything it and the recipe need, in one resolution. */
static void pip_wheel_all(struct buf *b, const struct fetch_ctx *c, const char *opts)
{
	buf_printf(b, "set -- /io/own/*.whl && python3 -m pip wheel %s -w /io/wheels \"$1%s%s%s\"", opts,
		   *c->extras ? "[" : "", c->extras, *c->extras ? "]" : "");
	for (size_t i = 0; c->req->requires && c->req->requires[i]; i++) {
		_cleanup_free_ char *q = sh_quote(c->req->requires[i]);
		buf_printf(b, " %s", q);
	}
}

/* The fetch sandbox's environment: the pip configuration's variables, then a fixed base and pip's
 * switches for a run without a terminal. */
static json_t *job_env(const struct fetch_pipconf *pc)
{
	json_t *env = json_object();
	json_object_update(env, pc->env);
	sandbox_env_base(env, NULL);
	json_object_set_new(env, "PIP_CONFIG_FILE", json_string("/io/pip.conf"));
	json_object_set_new(env, "PIP_NO_INPUT", json_string("1"));
	json_object_set_new(env, "PIP_ROOT_USER_ACTION", json_string("ignore"));
	json_object_set_new(env, "PIP_DISABLE_PIP_VERSION_CHECK", json_string("1"));
	json_object_set_new(env, "PIP_PROGRESS_BAR", json_string("off"));
	return env;
}

/* The job's tasks: own, deps and (for a source) testreqs; their order in the module comment. */
static json_t *job_tasks(const struct fetch_ctx *c)
{
	const struct fetch_req *r = c->req;
	json_t *tasks = json_array();
	_cleanup_free_ char *qdist = sh_quote(c->dist_arg_in_io);
	_cleanup_free_ char *own = xasprintf("python3 -m pip wheel --log /io/out/pip-own.log --no-deps -w /io/own %s", qdist);
	json_array_append_new(tasks, task_new("own", own, NULL));
	struct buf deps = BUF_INIT(0);
	if (c->kind == FK_REQ) {
		/* The sdist is fetched alongside the dependencies (pip spends most of that time setting
		 * up the project's build backend to read its metadata); its failure only means "no
		 * sdist". --no-binary for this project only: ":all:" would also build the backend and
		 * its dependencies from source, for minutes. */
		_cleanup_free_ char *pname = fetch_norm_name(r->dist);
		_cleanup_free_ char *qname = sh_quote(pname);
		/* the sdist of the very version whose wheel was fetched ("name-VERSION-….whl") */
		buf_printf(&deps,
			   "set -- /io/own/*.whl && v=${1##*/} && v=${v#*-} && v=${v%%%%-*} && "
			   "{ { python3 /io/getsdist.py %s \"$v\" /io/sdist >/io/out/sdist.txt 2>&1; rc=$?; [ $rc = 0 ] || [ $rc = 3 ] || "
			   "python3 -m pip download --log /io/out/pip-sdist.log --no-deps --no-binary %s -d /io/sdist "
			   "%s==\"$v\" >>/io/out/sdist.txt 2>&1; } & } && ",
			   qname, qname, qname);
	}
	pip_wheel_all(&deps, c, "--log /io/out/pip-deps.log");
	buf_puts(&deps, " && { test -e \"/io/wheels/${1##*/}\" || cp \"$1\" /io/wheels/; }; rc=$?; wait; exit $rc");
	_cleanup_free_ char *deps_run = buf_steal(&deps);
	json_array_append_new(tasks, task_new("deps", deps_run, "own"));
	if (c->kind != FK_WHEEL) {
		/* the source: the downloaded sdist, or the user's sdist or tree copied into /io/local */
		struct buf g = BUF_INIT(0);
		if (c->kind == FK_REQ)
			buf_puts(&g, "set -- /io/sdist/* && [ -f \"$1\" ] || exit 0; src=$1");
		else
			buf_printf(&g, "src=%s", qdist);
		/* testreqs.py fetches them too: all together, else one by one, dropping only what pip
		 * cannot get (and saying why in out/testreqs.json) */
		buf_printf(&g, " && set -- /io/own/*.whl && python3 /io/testreqs.py \"$src\" \"$1\" '%s'", c->extras);
		for (size_t i = 0; c->req->requires && c->req->requires[i]; i++) {
			_cleanup_free_ char *q = sh_quote(c->req->requires[i]);
			buf_printf(&g, " %s", q);
		}
		_cleanup_free_ char *testreqs_run = buf_steal(&g);
		json_array_append_new(tasks, task_new("testreqs", testreqs_run, "deps"));
	}
	return tasks;
}

/* The agent's results.json: a failed own or deps task is the fetch's failure, classified. */
static int check_results(const struct fetch_ctx *c, const char *io, struct pyti_err *err)
{
	const struct fetch_req *r = c->req;
	_cleanup_json_ json_t *res = NULL;
	{
		_cleanup_close_ int iofd = safe_opendir_path(io, err);
		if (iofd >= 0)
			res = pj_load_beneath(iofd, "out/results.json", 64u << 20, err);
	}
	if (!res)
		return pyti_err_prefix(err, "fetch %s: the agent's results", r->dist);
	json_t *t;
	size_t i;
	json_array_foreach(json_object_get(res, "tasks"), i, t) {
		const char *name = pj_str(t, "task", "");
		const char *status = pj_str(t, "status", "");
		const char *output = pj_str(t, "output", "");
		log_debug("fetch %s: task %s %s in %.1f s", r->dist, name, status, pj_num(t, "wall_s", 0));
		if (!strcmp(status, "passed"))
			continue;
		if (!strcmp(name, "testreqs")) {
			/* testreqs.py drops what pip cannot get and goes on: its own failure is rare */
			_cleanup_free_ char *last = fetch_tail_lines(output, 3, 600);
			log_warn("fetch %s: reading its test requirements failed; testing without them: %s", r->dist, last);
		}
		if (!strcmp(name, "own") || !strcmp(name, "deps")) {
			_cleanup_free_ char *log = read_log(io, name);
			const char *what = !strcmp(name, "own") ? "build or download its wheel" : "get its dependencies";
			return fetch_classify_pip(r->dist, what, output, log, err);
		}
	}
	return 0;
}

static int run_sandbox(const struct fetch_ctx *c, const struct fetch_pipconf *pc, const char *io,
		       const char *key, struct pyti_err *err)
{
	const struct fetch_req *r = c->req;
	_cleanup_free_ char *conf = xasprintf("%s/pip.conf", io);
	if (write_file_atomic(conf, pc->conf, strlen(pc->conf), 0644, err) < 0)
		return -1;
	static const char *const dirs[] = {"own", "wheels", "sdist", "out"};
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		_cleanup_free_ char *d = xasprintf("%s/%s", io, dirs[i]);
		if (mkdir_p(d, 0755, err) < 0)
			return -1;
	}
	_cleanup_json_ json_t *job = json_object();
	_cleanup_free_ char *jobid = xasprintf("fetch-%.12s", key);
	json_object_set_new(job, "job", json_string(jobid));
	json_object_set_new(job, "dist", json_string(r->dist));
	json_object_set_new(job, "recipe", json_string("fetch"));
	json_object_set_new(job, "backend", json_string("ns"));
	json_object_set_new(job, "image", json_string(r->image_dir));
	/* A fetch's downloads are legitimately large (pip keeps them in /tmp until it is done), so
	 * its bounds are wider than a test job's defaults; bounded all the same. */
	json_object_set_new(job, "io_limit", json_integer((json_int_t)FETCH_IO_LIMIT));
	json_t *env = job_env(pc);
	json_object_set_new(job, "env", env);
	json_t *tasks = job_tasks(c);
	json_object_set_new(job, "tasks", tasks);
	static const struct {
		const char *name, *text;
	} scripts[] = {{"getsdist.py", getsdist_py}, {"testreqs.py", testreqs_py}};
	for (size_t i = 0; i < ARRAY_SIZE(scripts); i++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", io, scripts[i].name);
		if (write_file_atomic(p, scripts[i].text, strlen(scripts[i].text), 0644, err) < 0)
			return -1;
	}
	_cleanup_free_ char *jobpath = xasprintf("%s/job.json", io);
	if (pj_dump_file(job, jobpath, err) < 0)
		return -1;

	const char *const *binds = (const char *const *)pc->ro_binds;
	struct sandbox_spec spec = {.backend = "ns", .image_dir = r->image_dir, .io_dir = io,
				    .agent_path = r->agent_path, .state_dir = r->state_dir, .network = true,
				    .ro_binds = binds, .timeout_s = r->timeout_s > 0 ? r->timeout_s : 1800,
				    .job_tasks = tasks, .tmpfs_bytes = FETCH_TMPFS,
				    .on_event = r->on_event, .arg = r->arg};
	struct sandbox_result sres;
	log_debug("fetch %s: starting the fetch sandbox", r->dist);
	if (sandbox_run(&spec, &sres, err) < 0) {
		if (sres.fclass == PYTI_FC_TIMEOUT)
			err->fclass = PYTI_FC_FETCH;
		return pyti_err_prefix(err, "fetch %s", r->dist);
	}
	return check_results(c, io, err);
}

/* Scratch directories of fetches that died with their pyti (killed, power loss) are removed
 * once they are a day old: far past any fetch's backstop. */
static void sweep_scratch(const char *tmpdir)
{
	DIR *d = opendir(tmpdir);
	if (!d)
		return;
	struct dirent *e;
	double now = now_wall();
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "fetch.", 6))
			continue;
		_cleanup_free_ char *p = xasprintf("%s/%s", tmpdir, e->d_name);
		struct stat st;
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && now - (double)st.st_mtime > 86400) {
			log_debug("fetch: removing stale %s", p);
			rm_rf(p, NULL);
		}
	}
	closedir(d);
}

/* What the caller asked for, before anything runs: pip would read a leading '-' as one of its options. */
static int check_req(const struct fetch_req *req, struct pyti_err *err)
{
	if (!req->dist || !*req->dist)
		return pyti_err_usage(err, "fetch: no distribution given");
	if (req->dist[0] == '-')
		return pyti_err_usage(err, "fetch: '%s' is not a requirement, a file or a directory", req->dist);
	for (size_t i = 0; req->requires && req->requires[i]; i++)
		if (req->requires[i][0] == '-' || !req->requires[i][0])
			return pyti_err_usage(err, "fetch: '%s' is not a requirement", req->requires[i]);
	if (!req->state_dir || !req->io_dir || !req->image_dir || !req->agent_path)
		return pyti_err_set(err, 0, "fetch: state_dir, io_dir, image_dir and agent_path are required");
	return 0;
}

/* c->kind of the distribution, and *abs its absolute path when it is a local file or directory. */
static int dist_kind(struct fetch_ctx *c, char **abs, struct pyti_err *err)
{
	const struct fetch_req *req = c->req;
	struct stat st;
	c->kind = FK_REQ;
	if (fetch_dist_is_local(req->dist, &st)) {
		*abs = realpath(req->dist, NULL);
		if (!*abs)
			return pyti_err_set(err, errno, "fetch: %s", req->dist);
		if (S_ISDIR(st.st_mode))
			c->kind = FK_DIR;
		else if (str_has_suffix(*abs, ".whl"))
			c->kind = FK_WHEEL;
		else if (is_sdist_name(*abs))
			c->kind = FK_SDIST;
		else
			return pyti_err_usage(err, "%s is neither a wheel, an sdist nor a source directory",
					      req->dist);
	} else if (strchr(req->dist, '/') && !strstr(req->dist, "://") && !strchr(req->dist, '@')) {
		return pyti_err_usage(err, "%s: no such file or directory", req->dist);
	}
	return 0;
}

/* The cache key: the distribution (a local one by its content), extras, requires, image, pip config. */
static int cache_key(const struct fetch_ctx *c, const char *abs, const struct fetch_pipconf *pc, char key[65],
		     struct pyti_err *err)
{
	const struct fetch_req *req = c->req;
	_cleanup_free_ char *dist_id = NULL;
	char h[65];
	if (c->kind == FK_DIR) {
		if (fetch_hash_dir(abs, h, err) < 0)
			return -1;
		dist_id = xasprintf("dir:%s", h);
	} else if (c->kind != FK_REQ) {
		if (sha256_file(abs, h, err) < 0)
			return -1;
		const char *base = strrchr(abs, '/') + 1;
		dist_id = xasprintf("file:%s:%s", base, h);
	} else {
		dist_id = xasprintf("req:%s", req->dist);
	}
	_cleanup_free_ char *img = image_hash(req->image_dir);
	const char *ex1[] = {c->extras, NULL};
	fetch_cache_key(dist_id, ex1, req->requires, img, pc->key_part, key);
	return 0;
}

static struct fetch_host fetch_host_cfg;

void fetch_set_host(const struct fetch_host *h)
{
	fetch_host_cfg = *h;
}

/* How old a cache entry may be: unpinned requirements are re-resolved after a day (PYTI_FETCH_TTL
 * seconds; 0 = every time, as --refresh does for every fetch, so *refresh is set). */
static double cache_ttl(const struct fetch_ctx *c, bool *refresh)
{
	if (c->kind != FK_REQ || pinned(c->req->dist))
		return 0;
	const char *t = fetch_host_cfg.ttl;
	char *end = NULL;
	double ttl = t && *t ? strtod(t, &end) : 86400;
	if (t && *t && (*end || !(ttl >= 0))) {
		log_warn("PYTI_FETCH_TTL=%s is not a number of seconds: a day it is", t);
		ttl = 86400;
	}
	if (ttl == 0)
		*refresh = true;
	return ttl;
}

/* Look in the cache (unless refreshing), then look again once the fetch lock is ours: jobs running
 * side by side that want the same fetch wait for the first one and then take it from the cache,
 * instead of fetching it twice. 1 a hit (out filled), 0 a miss with the lock held, -1 an error. */
static int cache_lookup(const struct fetch_req *req, const char *key, double ttl, bool refresh,
			struct held_lock *lock, struct fetch_result *out, struct pyti_err *err)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!refresh) {
			int hit = fetch_cache_get(req->state_dir, key, ttl, req->io_dir, out, err);
			if (hit < 0)
				return pyti_err_prefix(err, "fetch %s: from the cache", req->dist);
			if (hit) {
				if (out->test_requirements)
					fetch_testreqs_warn(req->dist, out->test_requirements);
				out->from_cache = true;
				log_debug("fetch %s: cache hit %s", req->dist, key);
				return 1;
			}
		}
		if (attempt == 0 && (lock->fd = lock_open_held(lock->path, err)) < 0)
			return -1;
		if (refresh)
			break;
	}
	return 0;
}

/* A local distribution goes into IO/local for the sandbox (c->dist_arg_in_io is its path there, *in_io
 * owns it); a requirement is handed to pip as it is. *sdist_src: a local sdist's own path. */
static int stage_local(struct fetch_ctx *c, const char *abs, const char *io, char **in_io, char **sdist_src,
		       struct pyti_err *err)
{
	if (c->kind == FK_REQ) {
		c->dist_arg_in_io = c->req->dist;
		return 0;
	}
	const char *base = strrchr(abs, '/') + 1;
	_cleanup_free_ char *local = xasprintf("%s/local", io);
	_cleanup_free_ char *dst = xasprintf("%s/%s", local, base);
	if (mkdir_p(local, 0755, err) < 0)
		return -1;
	if ((c->kind == FK_DIR ? copy_src_tree(abs, dst, SRC_TREE_KEEP_VCS, err) : copy_file(abs, dst, 0644, err)) < 0)
		return -1;
	*in_io = xasprintf("/io/local/%s", base);
	c->dist_arg_in_io = *in_io;
	if (c->kind == FK_SDIST)
		*sdist_src = xstrdup(abs);
	return 0;
}

/* The sdist pip downloaded beside a requirement's wheel, or NULL (logged: no tests from its source). */
static char *downloaded_sdist(const char *dist, const char *io)
{
	_cleanup_free_ char *sddir = xasprintf("%s/sdist", io);
	char *sdist_src = first_sdist(sddir);
	if (!sdist_src) {
		/* why: pip's last words on it (no sdist on the index, or one pip could not prepare) */
		_cleanup_buf_ struct buf why = BUF_INIT(64 * 1024);
		_cleanup_free_ char *last = safe_read_under(io, "out/sdist.txt", &why, NULL) == 0 && why.len
						   ? fetch_tail_lines(why.data, 2, 300) : xstrdup("");
		log_info("fetch %s: no sdist, so no tests from its source%s%s", dist, *last ? ": " : "", last);
	}
	return sdist_src;
}

/* What testreqs.py printed: the sandbox's file, read beneath io without following a link (one to a
 * host file would put that file's lines into the job and the cache). Never NULL. */
static char **read_testreqs(const char *dist, const char *io)
{
	_cleanup_buf_ struct buf tb = BUF_INIT(FETCH_MAX_REQ_FILE);
	struct pyti_err e2 = {0};
	if (safe_read_under(io, "out/testreqs.txt", &tb, &e2) == 0)
		return fetch_parse_requirements(tb.data, tb.len);
	if (e2.errnum != ENOENT)
		log_warn("fetch %s: its test requirements are ignored: %s", dist, pyti_err_str(&e2));
	return xcalloc(1, sizeof(char *));
}

/* And testreqs.py's record of what was declared, fetched and dropped (why), rebuilt; or NULL. */
static json_t *read_testreqs_record(const char *io)
{
	_cleanup_close_ int iofd = safe_opendir_path(io, NULL);
	struct pyti_err e2 = {0};
	_cleanup_json_ json_t *raw = iofd < 0 ? NULL : pj_load_beneath(iofd, "out/testreqs.json", FETCH_MAX_REQ_FILE, &e2);
	return raw ? fetch_testreqs_record(raw) : NULL;
}

/* A miss, in the scratch I/O directory io: the fetch sandbox, then its products into the cache
 * under key and from there into the caller's I/O directory. */
static int fetch_miss(struct fetch_ctx *c, const struct fetch_pipconf *pc, const char *abs, const char *io,
		      const char *key, struct fetch_result *out, struct pyti_err *err)
{
	const struct fetch_req *req = c->req;
	_cleanup_free_ char *sdist_src = NULL, *in_io = NULL, *own = NULL;
	_cleanup_json_ json_t *trec = NULL; /* testreqs.py's record, rebuilt */
	_cleanup_free_ char *own_dir = xasprintf("%s/own", io);
	_cleanup_free_ char *wheels = xasprintf("%s/wheels", io);
	if (stage_local(c, abs, io, &in_io, &sdist_src, err) < 0)
		return -1;
	if (run_sandbox(c, pc, io, key, err) < 0)
		return -1;
	own = only_wheel(own_dir);
	if (!own)
		return pyti_err_class(err, PYTI_FC_FETCH, "fetch %s: pip produced no wheel of the distribution itself",
				      req->dist);
	if (c->kind == FK_REQ)
		sdist_src = downloaded_sdist(req->dist, io);
	char **treqs = read_testreqs(req->dist, io);
	trec = read_testreqs_record(io);
	int put = fetch_cache_put(req->state_dir, key, req->dist, wheels, sdist_src, c->kind == FK_REQ, own, treqs,
				  trec, err);
	fetch_strv_free(treqs);
	if (put < 0)
		return -1;
	int hit = fetch_cache_get(req->state_dir, key, 0, req->io_dir, out, err);
	if (hit <= 0) {
		if (hit == 0)
			pyti_err_set(err, 0, "fetch %s: the cache entry just written is incomplete", req->dist);
		return -1;
	}
	if (out->test_requirements)
		fetch_testreqs_warn(req->dist, out->test_requirements);
	return 0;
}

int fetch_dist(const struct fetch_req *req, struct fetch_result *out, struct pyti_err *err)
{
	double t0 = now_mono();
	memset(out, 0, sizeof *out);
	if (check_req(req, err) < 0)
		return -1;
	struct fetch_ctx c = {.req = req};
	_cleanup_free_ char *abs = NULL;
	if (dist_kind(&c, &abs, err) < 0)
		return -1;
	const char *const *extras = req->extras ? req->extras : fetch_test_extras;
	_cleanup_free_ char *extras_str = extras_list(req->dist, c.kind, extras);
	c.extras = extras_str;

	_cleanup_(fetch_pipconf_free) struct fetch_pipconf pc = {0};
	if (fetch_pipconf_load(req->envp, &pc, err) < 0)
		return -1;
	char key[65];
	if (cache_key(&c, abs, &pc, key, err) < 0)
		return -1;
	bool refresh = req->refresh;
	double ttl = cache_ttl(&c, &refresh);

	_cleanup_free_ char *entries = xasprintf("%s/cache/fetch", req->state_dir);
	if (mkdir_p(entries, 0755, err) < 0)
		return -1;
	_cleanup_free_ char *lockp = xasprintf("%s/%s.lock", entries, key);
	/* locks and scratch directories of fetches whose pyti was killed (a finished fetch removes
	 * its own), whether or not this one is a cache hit */
	lock_sweep(entries, ".lock");
	_cleanup_free_ char *tmpdir = xasprintf("%s/tmp", req->state_dir);
	owner_sweep(tmpdir);
	_cleanup_(held_lock_release) struct held_lock lock = {lockp, -1};
	int hit = cache_lookup(req, key, ttl, refresh, &lock, out, err);
	if (hit < 0)
		return -1;
	if (hit) {
		out->wall_s = now_mono() - t0;
		return 0;
	}
	for (size_t i = 0; i < pc.nwarnings; i++)
		log_warn("%s", pc.warnings[i]);

	/* a miss: the fetch sandbox, in a scratch I/O directory on the cache's file system */
	if (mkdir_p(tmpdir, 0755, err) < 0)
		return -1;
	sweep_scratch(tmpdir);
	_cleanup_free_ char *io = xasprintf("%s/fetch.XXXXXX", tmpdir);
	if (!mkdtemp(io))
		return pyti_err_set(err, errno, "mkdtemp %s", io);
	chmod(io, 0755);
	const char *io_name = strrchr(io, '/') + 1;
	int owner = owner_claim(tmpdir, io_name, err);
	if (owner < 0) {
		rmdir(io);
		return -1;
	}
	int rc = fetch_miss(&c, &pc, abs, io, key, out, err);
	if (rc == 0)
		out->wall_s = now_mono() - t0;
	if (fetch_host_cfg.keep_scratch) { /* PYTI_KEEP_FETCH, debugging: docs/HACKING.md */
		log_warn("fetch: scratch directory kept: %s", io);
	} else {
		struct pyti_err e2 = {0};
		if (rm_rf(io, &e2) < 0)
			log_warn("fetch: cannot remove %s: %s", io, pyti_err_str(&e2));
	}
	owner_release(tmpdir, io_name, owner);
	if (rc < 0)
		fetch_result_free(out);
	return rc;
}

void fetch_result_free(struct fetch_result *r)
{
	if (!r)
		return;
	free(r->wheelhouse);
	free(r->sdist);
	free(r->dist_wheel);
	fetch_strv_free(r->test_requires);
	json_decref(r->test_requirements);
	memset(r, 0, sizeof *r);
}

/* The fetch cache: content-addressed blobs shared by every job, and one small JSON entry per
 * fetch saying which blobs it produced. Blobs are read-only and written under a temporary name,
 * then renamed, so a crash leaves no half-written blob or entry under its real name. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "fetch-int.h"

bool fetch_name_ok(const char *name)
{
	return name && *name && name[0] != '.' && !strchr(name, '/') && strlen(name) < 256;
}

char *fetch_norm_name(const char *s)
{
	/* the project name is what precedes the first "-<digit>" (sdist), "-" (wheel: '_' inside
	 * names) or a requirement operator */
	size_t n = strcspn(s, "[=<>!~;@ (\t,");
	const char *base = strrchr(s, '/');
	if (base && (size_t)(base - s) < n) {
		s = base + 1;
		n = strcspn(s, "[=<>!~;@ (\t,");
	}
	size_t end = 0;
	for (; end < n; end++)
		if (s[end] == '-' && end + 1 < n && s[end + 1] >= '0' && s[end + 1] <= '9' &&
		    (strstr(s, ".whl") || strstr(s, ".tar") || strstr(s, ".zip")))
			break; /* "name-1.0.tar.gz", "name-1.0-py3-none-any.whl" */
	return pep503_name(s, end);
}

void fetch_cache_key(const char *dist_id, const char *const *extras, const char *const *requires,
		     const char *image_hash, const char *pip_key_part, char out[65])
{
	json_t *k = json_object();
	json_object_set_new(k, "v", json_integer(4)); /* 4: entries keep the test requirements' record */
	json_object_set_new(k, "dist", json_string(dist_id ? dist_id : ""));
	json_t *e = json_array(), *r = json_array();
	for (size_t i = 0; extras && extras[i]; i++)
		json_array_append_new(e, json_string(extras[i]));
	for (size_t i = 0; requires && requires[i]; i++)
		json_array_append_new(r, json_string(requires[i]));
	json_object_set_new(k, "extras", e);
	json_object_set_new(k, "requires", r);
	json_object_set_new(k, "image", json_string(image_hash ? image_hash : ""));
	json_object_set_new(k, "pip", json_string(pip_key_part ? pip_key_part : ""));
	char *s = json_dumps(k, JSON_SORT_KEYS | JSON_COMPACT);
	sha256_hex(s, strlen(s), out);
	free(s);
	json_decref(k);
}

/* What of a .git (or .hg) decides a build's version, cheaply: HEAD and the refs (a new tag or
 * commit changes them), not the object store. */
static const char *const vcs_state[] = {"HEAD", "packed-refs", "refs", "dirstate", "localtags", "bookmarks"};

static bool hash_vcs_keep(const char *rel_in_vcs)
{
	for (size_t i = 0; i < ARRAY_SIZE(vcs_state); i++) {
		size_t n = strlen(vcs_state[i]);
		if (strncmp(rel_in_vcs, vcs_state[i], n) == 0 && (rel_in_vcs[n] == '\0' || rel_in_vcs[n] == '/'))
			return true;
	}
	return false;
}

/* vcs: the offset in rel just past ".git/" or ".hg/" while inside one, else 0. */
static int hash_walk(const char *root, const char *rel, size_t vcs, struct buf *acc, int depth,
		     struct pyti_err *err)
{
	if (depth > 64)
		return pyti_err_set(err, 0, "%s: directories nested too deeply", root);
	_cleanup_free_ char *dir = *rel ? xasprintf("%s/%s", root, rel) : xstrdup(root);
	struct dirent **ents = NULL;
	int n = scandir(dir, &ents, NULL, alphasort);
	if (n < 0)
		return pyti_err_set(err, errno, "read %s", dir);
	int rc = 0;
	for (int i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;
		if (rc || !strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		_cleanup_free_ char *r = *rel ? xasprintf("%s/%s", rel, name) : xstrdup(name);
		_cleanup_free_ char *p = xasprintf("%s/%s", root, r);
		struct stat st;
		if (lstat(p, &st) < 0)
			continue;
		/* the same rule as the copy the fetch sandbox builds from (copy_src_tree) */
		if (vcs ? !hash_vcs_keep(r + vcs) : src_tree_skip(name, S_ISDIR(st.st_mode), depth, SRC_TREE_KEEP_VCS))
			continue;
		if (S_ISDIR(st.st_mode)) {
			buf_printf(acc, "D %s", r);
			buf_append(acc, "", 1);
			size_t in_vcs = vcs ? vcs : depth == 0 && (!strcmp(name, ".git") || !strcmp(name, ".hg")) ? strlen(r) + 1 : 0;
			rc = hash_walk(root, r, in_vcs, acc, depth + 1, err);
		} else if (S_ISREG(st.st_mode)) {
			char h[65];
			if (sha256_file(p, h, err) < 0) {
				rc = -1;
				continue;
			}
			buf_printf(acc, "F %s", r);
			buf_append(acc, "", 1);
			buf_printf(acc, "%s %o", h, (unsigned)(st.st_mode & 0111));
			buf_append(acc, "", 1);
		} else if (S_ISLNK(st.st_mode)) {
			char t[4096];
			ssize_t k = readlink(p, t, sizeof t - 1);
			t[k > 0 ? k : 0] = '\0';
			buf_printf(acc, "L %s", r);
			buf_append(acc, "", 1);
			buf_puts(acc, t);
			buf_append(acc, "", 1);
		}
	}
	for (int i = 0; i < n; i++)
		free(ents[i]);
	free(ents);
	return rc;
}

int fetch_hash_dir(const char *dir, char out[65], struct pyti_err *err)
{
	_cleanup_buf_ struct buf acc = BUF_INIT(0);
	if (hash_walk(dir, "", 0, &acc, 0, err) < 0)
		return -1;
	sha256_hex(acc.data ? acc.data : "", acc.len, out);
	return 0;
}

/* Hard links where they are safe, copies elsewhere. A job's wheelhouse is writable by its
 * sandbox; for a root caller the sandbox runs as another uid and cannot write the root-owned,
 * read-only blob through a link; for an ordinary user the sandbox IS the blob's owner, so it
 * gets a copy. */
static int place(const char *blob, const char *dst, struct pyti_err *err)
{
	unlink(dst);
	if (geteuid() == 0 && link(blob, dst) == 0)
		return 0;
	return copy_file(blob, dst, 0644, err);
}

int fetch_cache_get(const char *state_dir, const char *key, double max_age_s, const char *io_dir,
		    struct fetch_result *out, struct pyti_err *err)
{
	_cleanup_free_ char *entry = xasprintf("%s/cache/fetch/%s.json", state_dir, key);
	if (!path_exists(entry))
		return 0;
	_cleanup_json_ json_t *j = pj_load_file(entry, NULL);
	if (!j)
		return 0; /* unreadable: refetch and overwrite */
	if (max_age_s > 0 && now_wall() - pj_num(j, "created", 0) > max_age_s)
		return 0;
	json_t *files = json_object_get(j, "files");
	json_t *sd = json_object_get(j, "sdist");
	const char *own = pj_str(j, "dist_wheel", NULL);
	if (!json_is_array(files) || !own || !fetch_name_ok(own))
		return 0;
	/* every blob must still be there, else it is a miss */
	size_t i;
	json_t *f;
	json_array_foreach(files, i, f) {
		const char *sha = pj_str(f, "sha256", ""), *name = pj_str(f, "name", "");
		_cleanup_free_ char *blob = xasprintf("%s/cache/blobs/%s", state_dir, sha);
		if (strlen(sha) != 64 || !fetch_name_ok(name) || !path_exists(blob))
			return 0;
	}
	const char *sd_name = json_is_object(sd) ? pj_str(sd, "name", "") : NULL;
	const char *sd_sha = json_is_object(sd) ? pj_str(sd, "sha256", "") : NULL;
	_cleanup_free_ char *sd_blob = sd_name ? xasprintf("%s/cache/blobs/%s", state_dir, sd_sha) : NULL;
	if (sd_name && (!fetch_name_ok(sd_name) || strlen(sd_sha) != 64 || !path_exists(sd_blob)))
		return 0;

	_cleanup_free_ char *wh = xasprintf("%s/wheels", io_dir);
	if (mkdir_p(wh, 0755, err) < 0)
		return -1;
	json_array_foreach(files, i, f) {
		_cleanup_free_ char *blob = xasprintf("%s/cache/blobs/%s", state_dir, pj_str(f, "sha256", ""));
		_cleanup_free_ char *dst = xasprintf("%s/%s", wh, pj_str(f, "name", ""));
		if (place(blob, dst, err) < 0)
			return -1;
	}
	if (sd_name) {
		_cleanup_free_ char *sdir = xasprintf("%s/sdist", io_dir);
		if (mkdir_p(sdir, 0755, err) < 0)
			return -1;
		_cleanup_free_ char *dst = xasprintf("%s/%s", sdir, sd_name);
		if (place(sd_blob, dst, err) < 0)
			return -1;
		out->sdist = steal_pointer(&dst);
	}
	json_t *tr = json_object_get(j, "test_requires");
	size_t ntr = json_is_array(tr) ? json_array_size(tr) : 0;
	out->test_requires = xcalloc(ntr + 1, sizeof *out->test_requires);
	size_t k = 0;
	json_array_foreach(tr, i, f) {
		const char *s = json_string_value(f);
		if (s && fetch_requirement_ok(s, strlen(s)))
			out->test_requires[k++] = xstrdup(s);
	}
	json_t *rec = json_object_get(j, "test_requirements");
	out->test_requirements = rec ? fetch_testreqs_record(rec) : NULL;
	out->wheelhouse = steal_pointer(&wh);
	out->dist_wheel = xstrdup(own);
	return 1;
}

/* fd is the file to keep, already opened (by the caller's rules for who made it). A copy, never a
 * link: a file the fetch sandbox made may be a host file it linked in, and a blob is chmodded 0444. */
static int blob_put(const char *state_dir, int fd, const char *name, char sha[65], struct pyti_err *err)
{
	if (sha256_fd(fd, name, sha, err) < 0)
		return -1;
	_cleanup_free_ char *blob = xasprintf("%s/cache/blobs/%s", state_dir, sha);
	if (path_exists(blob))
		return 0;
	_cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", blob, (int)getpid());
	unlink(tmp);
	if (lseek(fd, 0, SEEK_SET) < 0)
		return pyti_err_set(err, errno, "seek %s", name);
	if (copy_fd_new(fd, name, tmp, 0444, err) < 0) {
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, blob) < 0) {
		unlink(tmp);
		return pyti_err_set(err, errno, "rename %s", tmp);
	}
	return 0;
}

/* A file the fetch sandbox wrote at path: its directory must not be a link, nor the file one,
 * and it must be a regular file. */
static int open_sandbox_file(const char *path, struct pyti_err *err)
{
	_cleanup_free_ char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		return pyti_err_set(err, EINVAL, "%s: not a path", path);
	*slash = '\0';
	_cleanup_close_ int dfd = safe_opendir_path(dir, err);
	if (dfd < 0)
		return -1;
	int fd = safe_open_beneath(dfd, slash + 1, 0, err);
	if (fd < 0)
		pyti_err_prefix(err, "%s", dir);
	return fd;
}

int fetch_cache_put(const char *state_dir, const char *key, const char *dist, const char *wheel_dir,
		    const char *sdist, bool sdist_is_ours, const char *dist_wheel, char *const *test_requires,
		    const json_t *test_record, struct pyti_err *err)
{
	_cleanup_free_ char *blobs = xasprintf("%s/cache/blobs", state_dir);
	_cleanup_free_ char *entries = xasprintf("%s/cache/fetch", state_dir);
	if (mkdir_p(blobs, 0755, err) < 0 || mkdir_p(entries, 0755, err) < 0)
		return -1;
	_cleanup_json_ json_t *j = json_object();
	json_t *files = json_array();
	json_object_set_new(j, "dist", json_string(dist));
	json_object_set_new(j, "files", files);
	json_object_set_new(j, "dist_wheel", json_string(dist_wheel));
	json_object_set_new(j, "created", json_real(now_wall()));
	json_t *tr = json_array();
	for (size_t i = 0; test_requires && test_requires[i]; i++)
		json_array_append_new(tr, json_string(test_requires[i]));
	json_object_set_new(j, "test_requires", tr);
	if (test_record)
		json_object_set_new(j, "test_requirements", fetch_testreqs_record(test_record));
	/* the wheelhouse is the fetch sandbox's: not followed if it is a link, and its links,
	 * FIFOs and devices are not wheels */
	int wfd = safe_opendir_path(wheel_dir, err);
	if (wfd < 0)
		return pyti_err_prefix(err, "fetch: the wheelhouse");
	DIR *d = fdopendir(wfd);
	if (!d) {
		close(wfd);
		return pyti_err_set(err, errno, "open %s", wheel_dir);
	}
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (!fetch_name_ok(e->d_name) || n < 5 || strcmp(e->d_name + n - 4, ".whl"))
			continue;
		struct pyti_err e2 = {0};
		_cleanup_close_ int fd = safe_open_beneath(wfd, e->d_name, 0, &e2);
		if (fd < 0) {
			if (e2.errnum != ENOENT) {
				_cleanup_free_ char *shown = term_safe_dup(e->d_name, TERM_ESCAPE_BACKSLASH);
				log_warn("fetch: wheel %s left out: not a regular file of the sandbox's own", shown);
			}
			continue;
		}
		char sha[65];
		rc = blob_put(state_dir, fd, e->d_name, sha, err);
		if (rc < 0)
			break; /* sha is not set */
		json_t *f = json_object();
		json_object_set_new(f, "name", json_string(e->d_name));
		json_object_set_new(f, "sha256", json_string(sha));
		json_array_append_new(files, f);
	}
	closedir(d);
	if (rc < 0)
		return -1;
	if (sdist) {
		char sha[65];
		/* the user's own sdist is opened as the user named it; one the sandbox downloaded is not */
		_cleanup_close_ int fd = sdist_is_ours ? open_sandbox_file(sdist, err) : open(sdist, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return sdist_is_ours ? pyti_err_prefix(err, "fetch: the sdist")
					     : pyti_err_set(err, errno, "open %s", sdist);
		if (blob_put(state_dir, fd, sdist, sha, err) < 0)
			return -1;
		const char *base = strrchr(sdist, '/');
		json_t *s = json_object();
		json_object_set_new(s, "name", json_string(base ? base + 1 : sdist));
		json_object_set_new(s, "sha256", json_string(sha));
		json_object_set_new(j, "sdist", s);
	} else {
		json_object_set_new(j, "sdist", json_null());
	}
	_cleanup_free_ char *entry = xasprintf("%s/%s.json", entries, key);
	return pj_dump_file(j, entry, err);
}

/* ---- `pyti cache info|clean` ---- */

/* The blobs every readable entry names (sorted hex digests, for bsearch). */
static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_ref(char ***v, size_t *n, size_t *cap, const char *sha)
{
	if (!sha || strlen(sha) != 64)
		return;
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 256;
		*v = xrealloc(*v, *cap * sizeof **v);
	}
	(*v)[(*n)++] = xstrdup(sha);
}

/* Walk the entries: remove those older than max_age_s (>= 0; 0 = all) when removing, count the
 * rest and collect what they reference; then the blobs nobody references (removed when removing,
 * unless younger than a fetch that may be storing them now). */
static int cache_walk(const char *state_dir, bool remove, double max_age_s, struct fetch_cache_stats *st,
		      struct pyti_err *err)
{
	memset(st, 0, sizeof *st);
	_cleanup_free_ char *entries = xasprintf("%s/cache/fetch", state_dir);
	_cleanup_free_ char *blobs = xasprintf("%s/cache/blobs", state_dir);
	char **refs = NULL;
	size_t nrefs = 0, cap = 0;
	double now = now_wall();
	DIR *d = opendir(entries);
	if (!d && errno != ENOENT)
		return pyti_err_set(err, errno, "open %s", entries);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (e->d_name[0] == '.' || n < 6 || strcmp(e->d_name + n - 5, ".json"))
			continue;
		_cleanup_free_ char *p = xasprintf("%s/%s", entries, e->d_name);
		_cleanup_json_ json_t *j = pj_load_file(p, NULL);
		double created = pj_num(j, "created", 0);
		if (remove && (!j || max_age_s <= 0 || now - created > max_age_s)) {
			if (unlink(p) == 0)
				st->entries_removed++;
			continue;
		}
		if (!j)
			continue;
		st->entries++;
		if (!st->oldest || created < st->oldest)
			st->oldest = created;
		if (created > st->newest)
			st->newest = created;
		size_t i;
		json_t *f;
		json_array_foreach(json_object_get(j, "files"), i, f)
			add_ref(&refs, &nrefs, &cap, pj_str(f, "sha256", NULL));
		json_t *sd = json_object_get(j, "sdist");
		if (json_is_object(sd))
			add_ref(&refs, &nrefs, &cap, pj_str(sd, "sha256", NULL));
	}
	if (d)
		closedir(d);
	if (nrefs)
		qsort(refs, nrefs, sizeof *refs, cmp_str);
	d = opendir(blobs);
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		struct stat sb;
		if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode))
			continue;
		const char *name = e->d_name;
		bool referenced = nrefs && bsearch(&name, refs, nrefs, sizeof *refs, cmp_str);
		/* a blob written in the last 10 minutes may be a running fetch's, whose entry comes next */
		bool young = now - (double)sb.st_mtime < 600;
		if (!referenced && remove && (!young || max_age_s <= 0) && unlinkat(dirfd(d), name, 0) == 0) {
			st->blobs_removed++;
			st->bytes_removed += (uint64_t)sb.st_size;
			continue;
		}
		st->blobs++;
		st->bytes += (uint64_t)sb.st_size;
		if (!referenced) {
			st->unreferenced++;
			st->unreferenced_bytes += (uint64_t)sb.st_size;
		}
	}
	if (d)
		closedir(d);
	for (size_t i = 0; i < nrefs; i++)
		free(refs[i]);
	free(refs);
	return 0;
}

int fetch_cache_info(const char *state_dir, struct fetch_cache_stats *st, struct pyti_err *err)
{
	return cache_walk(state_dir, false, 0, st, err);
}

int fetch_cache_clean(const char *state_dir, double older_than_s, struct fetch_cache_stats *st, struct pyti_err *err)
{
	return cache_walk(state_dir, true, older_than_s, st, err);
}

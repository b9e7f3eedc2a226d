/* The spool: every report and finish is written here before it is sent, and removed only once
 * the master accepted it (or refused it for good), so a master that restarts, or a network that
 * drops, loses nothing. `report` is idempotent per job + attempt + task and `finish` per lease,
 * so sending an entry twice (a crash between the answer and the unlink) is harmless. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "worker.h"

#define ENTRY_MAX (512u << 20)
#define UPLOAD_MAX (64u << 20) /* what runs/<job>/ keeps at most (MANAGER_KEEP_MAX) */

struct spool {
	char *dir;
	int lock_fd;
	long long next;
};

static bool seq_name(const char *name, long long *seq)
{
	size_t n = strlen(name);
	if (n != 17 || strcmp(name + 12, ".json") != 0)
		return false;
	long long v = 0;
	for (size_t i = 0; i < 12; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		v = v * 10 + (name[i] - '0');
	}
	*seq = v;
	return true;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

int spool_list(struct spool *s, long long **seqs, size_t *n, struct pyti_err *err)
{
	*seqs = NULL;
	*n = 0;
	DIR *d = opendir(s->dir);
	if (!d)
		return pyti_err_set(err, errno, "spool %s", s->dir);
	size_t cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		long long v;
		if (!seq_name(e->d_name, &v))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			*seqs = xrealloc(*seqs, cap * sizeof **seqs);
		}
		(*seqs)[(*n)++] = v;
	}
	closedir(d);
	if (*n)
		qsort(*seqs, *n, sizeof **seqs, cmp_ll);
	return 0;
}

struct spool *spool_open(const char *dir, struct pyti_err *err)
{
	if (mkdir_p(dir, 0700, err) < 0)
		return NULL;
	_cleanup_free_ char *lock = xasprintf("%s/.lock", dir);
	int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		pyti_err_set(err, errno, "open %s", lock);
		return NULL;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			pyti_err_usage(err,
				       "spool %s is in use by another worker (give each worker on one state "
				       "directory its own --name)",
				       dir);
		else
			pyti_err_set(err, e, "lock %s", lock);
		return NULL;
	}
	struct spool *s = xcalloc(1, sizeof *s);
	s->dir = xstrdup(dir);
	s->lock_fd = fd;
	_cleanup_free_ long long *seqs = NULL;
	size_t n;
	if (spool_list(s, &seqs, &n, err) < 0) {
		spool_close(s);
		return NULL;
	}
	s->next = n ? seqs[n - 1] + 1 : 1;
	/* leftovers of a write that died half-way (NAME.tmp.PID.RANDOM) are never an entry */
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (strstr(e->d_name, ".json.tmp."))
			unlinkat(dirfd(d), e->d_name, 0);
	if (d)
		closedir(d);
	return s;
}

void spool_close(struct spool *s)
{
	if (!s)
		return;
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s->dir);
	free(s);
}

static char *seq_path(struct spool *s, long long seq)
{
	return xasprintf("%s/%012lld.json", s->dir, seq);
}

static int write_entry(struct spool *s, long long seq, const json_t *entry, struct pyti_err *err)
{
	_cleanup_free_ char *text = json_dumps(entry, JSON_COMPACT);
	if (!text)
		return pyti_err_set(err, ENOMEM, "spool: cannot serialise an entry");
	_cleanup_free_ char *p = seq_path(s, seq);
	return write_file_atomic(p, text, strlen(text), 0600, err);
}

long long spool_push(struct spool *s, const json_t *entry, struct pyti_err *err)
{
	if (s->next > 999999999999LL)
		return pyti_err_set(err, EOVERFLOW, "spool %s: sequence numbers exhausted", s->dir);
	long long seq = s->next++;
	if (write_entry(s, seq, entry, err) < 0)
		return -1;
	return seq;
}

json_t *spool_read(struct spool *s, long long seq, struct pyti_err *err)
{
	_cleanup_free_ char *p = seq_path(s, seq);
	_cleanup_buf_ struct buf b = BUF_INIT(ENTRY_MAX);
	if (read_file(p, &b, err) < 0)
		return NULL;
	json_t *j = pj_loads(b.data ? b.data : "", b.len, err);
	if (j && (!json_is_object(j) || !json_is_string(json_object_get(j, "method")))) {
		json_decref(j);
		pyti_err_set(err, 0, "%s: not a spool entry", p);
		return NULL;
	}
	return j;
}

void spool_remove(struct spool *s, long long seq)
{
	_cleanup_free_ char *p = seq_path(s, seq);
	if (unlink(p) < 0 && errno != ENOENT)
		log_warn("spool: cannot remove %s: %s", p, strerror(errno));
}

size_t spool_count(struct spool *s)
{
	_cleanup_free_ long long *seqs = NULL;
	size_t n = 0;
	if (spool_list(s, &seqs, &n, NULL) < 0)
		return 0;
	return n;
}

void spool_drop_job(struct spool *s, const char *job_id)
{
	_cleanup_free_ long long *seqs = NULL;
	size_t n = 0;
	if (!job_id || spool_list(s, &seqs, &n, NULL) < 0)
		return;
	for (size_t i = 0; i < n; i++) {
		_cleanup_json_ json_t *e = spool_read(s, seqs[i], NULL);
		if (!e || strcmp(pj_str(e, "job_id", ""), job_id) == 0)
			spool_remove(s, seqs[i]);
	}
}

/* A request over the master's body limit: the tasks' captured output (head and tail; the logs go up
 * as artefacts anyway) is what can be big; without it the raw data still says everything else. */
static bool drop_outputs(json_t *entry)
{
	json_t *p = json_object_get(entry, "params");
	json_t *tasks = json_object_get(json_object_get(p, "results"), "tasks");
	bool dropped = false;
	size_t i;
	json_t *t;
	json_array_foreach(tasks, i, t)
		dropped |= json_object_del(t, "output") == 0;
	if (json_object_del(json_object_get(p, "result"), "output") == 0)
		dropped = true;
	return dropped;
}

/* Drop the artefact named sha256 from a finish's params (it could not be uploaded). */
static void drop_artefact(json_t *entry, const char *sha)
{
	json_t *arts = json_object_get(json_object_get(entry, "params"), "artefacts");
	for (size_t i = json_array_size(arts); i-- > 0;)
		if (strcmp(pj_str(json_array_get(arts, i), "sha256", ""), sha) == 0)
			json_array_remove(arts, i);
}

/* Upload what the entry names, then forget the list (rewritten), so that a replay does not
 * upload again. -1 only on a retryable (or unauthorized) failure. */
static int send_uploads(struct spool *s, long long seq, json_t *entry, struct wrpc_client *c, struct pyti_err *err)
{
	json_t *ups = json_object_get(entry, "uploads");
	if (!json_array_size(ups))
		return 0;
	size_t i;
	json_t *u;
	json_array_foreach(ups, i, u) {
		/* root is the job's kept directory, whose files the sandbox wrote: read beneath it,
		 * never through a link, and only when it still is what was announced */
		const char *root = pj_str(u, "root", ""), *rel = pj_str(u, "rel", ""), *sha = pj_str(u, "sha256", "");
		_cleanup_free_ char *path = xasprintf("%s/%s", root, rel);
		_cleanup_buf_ struct buf b = BUF_INIT(UPLOAD_MAX);
		struct pyti_err e2 = {0};
		char have[65];
		if (!path_is_safe_rel(rel) || safe_read_under(root, rel, &b, &e2) < 0 ||
		    (sha256_hex(b.data ? b.data : "", b.len, have), strcmp(have, sha))) {
			log_warn("spool: artefact %s is gone or changed; finishing without it", path);
			drop_artefact(entry, sha);
			continue;
		}
		_cleanup_free_ char *data = wrpc_base64(b.data ? b.data : "", b.len);
		_cleanup_json_ json_t *p = json_pack("{s:s, s:I, s:s}", "sha256", sha, "size", (json_int_t)b.len,
						     "data", data);
		_cleanup_json_ json_t *res = NULL;
		if (wrpc_call(c, "upload", p, &res, err) < 0) {
			enum wrpc_kind k = wrpc_last(c)->kind;
			if (k == WRPC_RETRY || k == WRPC_UNAUTHORIZED)
				return -1;
			log_warn("spool: upload of %s refused (%s); finishing without it", path, pyti_err_str(err));
			drop_artefact(entry, sha);
		}
	}
	json_object_set_new(entry, "uploads", json_array());
	return write_entry(s, seq, entry, err);
}

int spool_flush(struct spool *s, struct wrpc_client *c, spool_done_fn on_done, void *arg, struct pyti_err *err)
{
	_cleanup_free_ long long *seqs = NULL;
	size_t n = 0;
	if (spool_list(s, &seqs, &n, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct pyti_err e2 = {0};
		_cleanup_json_ json_t *entry = spool_read(s, seqs[i], &e2);
		if (!entry) {
			if (e2.errnum != ENOENT) { /* dropped meanwhile (spool_drop_job) is no news */
				log_warn("spool: dropping unreadable entry: %s", pyti_err_str(&e2));
				spool_remove(s, seqs[i]);
			}
			continue;
		}
		const char *method = pj_str(entry, "method", "");
		for (int round = 0;; round++) {
			if (send_uploads(s, seqs[i], entry, c, err) < 0)
				return -1;
			_cleanup_json_ json_t *res = NULL;
			if (wrpc_call(c, method, json_object_get(entry, "params"), &res, err) == 0) {
				spool_remove(s, seqs[i]);
				if (on_done)
					on_done(arg, entry, WRPC_OK, res);
				break;
			}
			const struct wrpc_status *st = wrpc_last(c);
			if (st->kind == WRPC_RETRY || st->kind == WRPC_UNAUTHORIZED)
				return -1;
			if (st->kind == WRPC_MISSING && round == 0) {
				/* the master lost blobs we sent, or never got them: finish without those */
				size_t k;
				json_t *m;
				json_array_foreach(json_object_get(st->data, "missing"), k, m)
					if (json_is_string(m))
						drop_artefact(entry, json_string_value(m));
				continue;
			}
			if (st->kind == WRPC_TOO_LARGE && drop_outputs(entry)) {
				log_warn("spool: %s of job %s over the master's limit; sending it without the tasks' "
					 "output (their logs are artefacts)",
					 method, pj_str(entry, "job_id", "?"));
				continue;
			}
			if (st->kind == WRPC_STALE) {
				log_info("job %s: lease lost; dropping its unsent requests",
					 pj_str(entry, "job_id", "?"));
				if (on_done)
					on_done(arg, entry, st->kind, NULL);
				spool_drop_job(s, pj_str(entry, "job_id", NULL));
			} else {
				log_warn("spool: %s refused for good, dropped: %s", method, pyti_err_str(err));
				spool_remove(s, seqs[i]);
				if (on_done)
					on_done(arg, entry, st->kind, NULL);
			}
			break;
		}
	}
	pyti_err_clear(err);
	return (int)spool_count(s);
}

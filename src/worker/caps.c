/* What a worker tells the master in hello (its images, backends, slots, free disk and memory),
 * and the worker's configuration file. */
#include <errno.h>
#include <ini.h>
#include <string.h>
#include <sys/statvfs.h>

#include "image.h"
#include "worker.h"

#ifndef PYTI_VERSION
#define PYTI_VERSION "0.0"
#endif

static long long mem_available(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/meminfo", "re");
	char line[256];
	while (f && fgets(line, sizeof line, f)) {
		long long kb;
		if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1)
			return kb * 1024;
	}
	return 0;
}

json_t *worker_capabilities(const char *state_dir, const char *backend, int slots)
{
	json_t *images = json_array();
	struct image_info *list = NULL;
	size_t n = 0;
	struct pyti_err err = {0};
	if (image_list(state_dir, &list, &n, &err) == 0) {
		for (size_t i = 0; i < n; i++)
			json_array_append_new(images, json_pack("{s:s, s:s}", "suite", list[i].suite, "python",
								list[i].python ? list[i].python : ""));
		image_list_free(list, n);
	} else {
		log_warn("worker: cannot list images: %s", pyti_err_str(&err));
	}
	struct statvfs sv;
	long long disk = statvfs(state_dir, &sv) == 0 ? (long long)sv.f_bavail * (long long)sv.f_frsize : 0;
	return json_pack("{s:o, s:[s], s:i, s:I, s:I, s:s}", "images", images, "backends", backend, "slots", slots,
			 "disk_free", (json_int_t)disk, "mem_free", (json_int_t)mem_available(), "version",
			 PYTI_VERSION);
}

struct cfg_ctx {
	const char *path;
	struct worker_config *c;
	FILE *f;
	struct pyti_err *err;
	bool failed;
	int line; /* of the line inih has just read, and so of the one the handler hears about */
};

static char *cfg_reader(char *str, int num, void *stream)
{
	struct cfg_ctx *x = stream;
	if (x->failed || !fgets(str, num, x->f))
		return NULL;
	x->line++;
	return str;
}

static int cfg_handler(void *arg, const char *section, const char *name, const char *value)
{
	struct cfg_ctx *x = arg;
	if (x->failed)
		return 0; /* the first error is the one reported */
	int lineno = x->line;
	if (strcmp(section, "worker") != 0) {
		pyti_err_usage(x->err, "%s:%d: unknown section [%s] (expected [worker])", x->path, lineno, section);
		x->failed = true;
		return 0;
	}
	struct worker_config *c = x->c;
	char **str = NULL;
	if (strcmp(name, "master") == 0)
		str = &c->master;
	else if (strcmp(name, "token_file") == 0)
		str = &c->token_file;
	else if (strcmp(name, "backend") == 0)
		str = &c->backend;
	else if (strcmp(name, "name") == 0)
		str = &c->name;
	if (str) {
		if (!*value) {
			pyti_err_usage(x->err, "%s:%d: %s is empty", x->path, lineno, name);
			x->failed = true;
			return 0;
		}
		if (strcmp(name, "backend") == 0 && strcmp(value, "ns") != 0 && strcmp(value, "vm") != 0) {
			pyti_err_usage(x->err, "%s:%d: backend must be ns or vm, not '%s'", x->path, lineno, value);
			x->failed = true;
			return 0;
		}
		if (!*str)
			*str = xstrdup(value);
		return 1;
	}
	char *end;
	errno = 0;
	if (strcmp(name, "slots") == 0) {
		long v = strtol(value, &end, 10);
		if (errno || *end || end == value || v < 1 || v > 1024) {
			pyti_err_usage(x->err, "%s:%d: slots must be a number 1…1024, not '%s'", x->path, lineno,
				       value);
			x->failed = true;
			return 0;
		}
		if (!c->slots)
			c->slots = (int)v;
		return 1;
	}
	if (strcmp(name, "heartbeat_s") == 0) {
		double v = strtod(value, &end);
		if (errno || *end || end == value || !(v > 0) || v > 3600) {
			pyti_err_usage(x->err, "%s:%d: heartbeat_s must be seconds above 0, not '%s'", x->path, lineno,
				       value);
			x->failed = true;
			return 0;
		}
		if (!(c->heartbeat_s > 0))
			c->heartbeat_s = v;
		return 1;
	}
	if (strcmp(name, "allow_local_dists") == 0) {
		if (strcmp(value, "true") && strcmp(value, "false")) {
			pyti_err_usage(x->err, "%s:%d: allow_local_dists must be true or false, not '%s'", x->path,
				       lineno, value);
			x->failed = true;
			return 0;
		}
		c->allow_local_dists |= strcmp(value, "true") == 0;
		return 1;
	}
	pyti_err_usage(x->err,
		       "%s:%d: unknown key '%s' (master, token_file, slots, backend, name, heartbeat_s, "
		       "allow_local_dists)",
		       x->path, lineno, name);
	x->failed = true;
	return 0;
}

int worker_config_load(const char *path, struct worker_config *c, struct pyti_err *err)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f) {
		pyti_err_set(err, errno, "%s", path);
		err->status = PYTI_EXIT_USAGE;
		return -1;
	}
	struct cfg_ctx x = {.path = path, .c = c, .err = err, .f = f};
	int r = ini_parse_stream(cfg_reader, &x, cfg_handler, &x);
	if (x.failed)
		return -1;
	if (r > 0)
		return pyti_err_usage(err, "%s:%d: not an INI line (expected key = value or [section])", path, r);
	if (r < 0)
		return pyti_err_set(err, 0, "%s: cannot parse", path);
	return 0;
}

void worker_config_free(struct worker_config *c)
{
	free(c->master), free(c->token_file), free(c->backend), free(c->name);
	*c = (struct worker_config){0};
}

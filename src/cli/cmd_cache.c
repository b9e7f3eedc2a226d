/* pyti cache info|clean: the fetch cache (STATE/cache: blobs and one entry per fetch). */
#include <string.h>

#include "cli.h"
#include "fetch.h"
#include "recipe.h"

static const char cache_usage_text[] =
	"usage: pyti cache info [--json]\n"
	"       pyti cache clean [--older-than DURATION] [--json]\n\n"
	"The fetch cache keeps every wheel and sdist a job fetched (STATE/cache/blobs, by SHA-256) and one\n"
	"entry per fetch naming them (STATE/cache/fetch). A job whose fetch is in the cache runs without\n"
	"the network; unpinned requirements are re-resolved after PYTI_FETCH_TTL seconds (default a day),\n"
	"`pyti run --refresh` re-resolves and re-downloads.\n\n"
	"  info                    entries, blobs, their size, and the blobs no entry names\n"
	"  clean                   remove every entry, then every blob no entry names (and what\n"
	"                          killed fetches left: scratch directories, lock files)\n"
	"  clean --older-than D    remove the entries older than D (300, 90m, 12h, 30d), then the\n"
	"                          blobs no remaining entry names (garbage collection)\n"
	"  --json                  the figures as JSON on stdout\n";

static void fmt_size(char out[32], uint64_t b)
{
	if (b >= 1ULL << 30)
		snprintf(out, 32, "%.1f GiB", (double)b / (1ULL << 30));
	else if (b >= 1ULL << 20)
		snprintf(out, 32, "%.1f MiB", (double)b / (1ULL << 20));
	else
		snprintf(out, 32, "%.1f KiB", (double)b / 1024);
}

static json_t *stats_json(const char *dir, const struct fetch_cache_stats *st, bool clean)
{
	json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "cache", dir, "entries", (json_int_t)st->entries,
			      "blobs", (json_int_t)st->blobs, "bytes", (json_int_t)st->bytes, "unreferenced_blobs",
			      (json_int_t)st->unreferenced, "unreferenced_bytes", (json_int_t)st->unreferenced_bytes);
	json_object_set_new(o, "oldest", st->oldest ? json_real(st->oldest) : json_null());
	json_object_set_new(o, "newest", st->newest ? json_real(st->newest) : json_null());
	if (clean) {
		json_object_set_new(o, "entries_removed", json_integer((json_int_t)st->entries_removed));
		json_object_set_new(o, "blobs_removed", json_integer((json_int_t)st->blobs_removed));
		json_object_set_new(o, "bytes_removed", json_integer((json_int_t)st->bytes_removed));
	}
	return o;
}

int cmd_cache(struct cli_ctx *ctx, int argc, char **argv)
{
	enum {
		OPT_JSON = 256,
		OPT_OLDER
	};
	static const struct option opts[] = {
		{"json", no_argument, NULL, OPT_JSON},
		{"older-than", required_argument, NULL, OPT_OLDER},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *older = NULL;
	int c;
	while ((c = cli_getopt("cache", argc, argv, "h", opts)) != -1) {
		switch (c) {
		case OPT_JSON:
			ctx->json = true;
			break;
		case OPT_OLDER:
			older = optarg;
			break;
		case 'h':
			fputs(cache_usage_text, stdout);
			return 0;
		default:
			return PYTI_EXIT_USAGE;
		}
	}
	if (optind >= argc)
		return cli_usage("cache: a subcommand is needed: info or clean (try 'pyti cache --help')");
	const char *sub = argv[optind];
	bool clean = strcmp(sub, "clean") == 0;
	if (!clean && strcmp(sub, "info") != 0) {
		const char *subs[] = {"info", "clean"};
		const char *near = cli_nearest(sub, subs, 2);
		if (near)
			return cli_usage("cache: unknown subcommand '%s' (did you mean '%s'?)", sub, near);
		return cli_usage("cache: unknown subcommand '%s' (info or clean)", sub);
	}
	if (optind + 1 < argc)
		return cli_usage("cache %s: unexpected argument '%s'", sub, argv[optind + 1]);
	uint64_t age = 0;
	if (older && !clean)
		return cli_usage("cache info: --older-than is an option of `pyti cache clean`");
	if (older && (recipe_parse_duration(older, &age) < 0 || age == 0))
		return cli_usage("cache clean: --older-than '%s': a duration above 0 (300, 90m, 12h, 30d)", older);

	struct fetch_cache_stats st;
	struct pyti_err err = {0};
	if (clean) { /* what killed fetches left: scratch directories and lock files nobody holds */
		_cleanup_free_ char *tmp = xasprintf("%s/tmp", ctx->state_dir);
		_cleanup_free_ char *entries = xasprintf("%s/cache/fetch", ctx->state_dir);
		owner_sweep(tmp);
		lock_sweep(entries, ".lock");
	}
	if ((clean ? fetch_cache_clean(ctx->state_dir, (double)age, &st, &err)
		   : fetch_cache_info(ctx->state_dir, &st, &err)) < 0)
		return cli_fail(&err);
	_cleanup_free_ char *dir = xasprintf("%s/cache", ctx->state_dir);
	if (ctx->json) {
		_cleanup_json_ json_t *o = stats_json(dir, &st, clean);
		cli_print_json(o);
		return 0;
	}
	char sz[32], usz[32], rsz[32];
	fmt_size(sz, st.bytes);
	fmt_size(usz, st.unreferenced_bytes);
	fmt_size(rsz, st.bytes_removed);
	if (clean)
		printf("removed %llu entr%s and %llu blob%s (%s)\n", (unsigned long long)st.entries_removed,
		       st.entries_removed == 1 ? "y" : "ies", (unsigned long long)st.blobs_removed,
		       st.blobs_removed == 1 ? "" : "s", rsz);
	printf("cache:        %s\n", dir);
	printf("entries:      %llu\n", (unsigned long long)st.entries);
	printf("blobs:        %llu (%s)\n", (unsigned long long)st.blobs, sz);
	printf("unreferenced: %llu blob%s (%s)%s\n", (unsigned long long)st.unreferenced,
	       st.unreferenced == 1 ? "" : "s", usz,
	       st.unreferenced && !clean ? "; `pyti cache clean --older-than 30d` removes them" : "");
	if (st.entries) {
		double now = now_wall();
		printf("ages:         %.1f to %.1f days\n", (now - st.newest) / 86400, (now - st.oldest) / 86400);
	}
	return 0;
}

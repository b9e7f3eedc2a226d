/* `pyti disk`: the DiskHandler from the command line (mkfs, upload, download, ls, rm). */
#include <getopt.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "disk.h"

static const char *const disk_usage_text =
	"usage: pyti disk COMMAND [ARGS]\n\n"
	"Read and write raw ext4 images without mounting them (no root, no FUSE, no appliance).\n"
	"Guest paths are absolute paths inside the image.\n\n"
	"commands:\n"
	"  mkfs IMAGE SIZE                      create an empty ext4 image (SIZE: bytes or K/M/G/T)\n"
	"  upload IMAGE HOSTPATH GUESTPATH      copy a file or directory tree into the image\n"
	"  download IMAGE GUESTPATH HOSTPATH    copy a file or directory tree out of the image\n"
	"  ls [-l] [--json] IMAGE [PATH]        list a directory (default /)\n"
	"  rm [-r] IMAGE PATH                   remove a file (or a tree with -r)\n"
	"  df [--json] IMAGE                    blocks and inodes in use and free\n\n"
	"`pyti disk COMMAND --help` describes a command.\n";

static const struct {
	const char *name, *help;
} sub_help[] = {
	{"mkfs", "usage: pyti disk mkfs IMAGE SIZE\n\n"
		 "Create IMAGE as a sparse raw ext4 image of SIZE bytes (suffixes K, M, G, T are powers of\n"
		 "1024; at least 1M). An existing IMAGE is replaced.\n"},
	{"upload", "usage: pyti disk upload IMAGE HOSTPATH GUESTPATH\n\n"
		   "Copy HOSTPATH (a file, symlink or directory tree) to GUESTPATH in IMAGE. Missing parent\n"
		   "directories are created; an existing directory receives a directory's contents, or a file\n"
		   "under its own name; existing files are overwritten. Modes and mtimes are kept; owner and\n"
		   "group become root.\n"},
	{"download", "usage: pyti disk download [--skip-unsafe-links] IMAGE GUESTPATH HOSTPATH\n\n"
		     "Copy GUESTPATH (a file, symlink or directory tree) from IMAGE to HOSTPATH. Nothing is\n"
		     "written outside HOSTPATH and no host symlink is followed. A symlink in the image whose\n"
		     "target is absolute or leaves HOSTPATH makes the download fail, unless\n"
		     "--skip-unsafe-links is given (then it is skipped with a warning). setuid/setgid bits are\n"
		     "dropped.\n"},
	{"ls", "usage: pyti disk ls [-l] [--json] IMAGE [PATH]\n\n"
	       "List the directory PATH (default /) of IMAGE, or PATH itself when it is not a directory.\n"
	       "  -l, --long   mode, links, owner, group, size, mtime (UTC), name and symlink target\n"
	       "  --json       a JSON array of {name,type,mode,uid,gid,nlink,size,mtime,ino[,target]}\n"},
	{"rm", "usage: pyti disk rm [-r] IMAGE PATH\n\n"
	       "Remove PATH from IMAGE; a directory only with -r (--recursive), with all it holds.\n"},
	{"df", "usage: pyti disk df [--json] IMAGE\n\n"
	       "Show IMAGE's block size, blocks and inodes in total and free (as dumpe2fs -h counts them).\n"},
};

static const char *help_for(const char *sub)
{
	for (size_t i = 0; i < ARRAY_SIZE(sub_help); i++)
		if (strcmp(sub_help[i].name, sub) == 0)
			return sub_help[i].help;
	return NULL;
}

/* Names come from images: print control bytes escaped so they cannot drive the terminal. */
static void put_name(const char *s)
{
	term_put_safe(stdout, s, strlen(s), TERM_ESCAPE_BACKSLASH);
}

static void mode_string(uint32_t mode, char type, char out[11])
{
	out[0] = type == 'f' ? '-' : type == '?' ? '?' : type;
	const char *rwx = "rwxrwxrwx";
	for (int i = 0; i < 9; i++)
		out[1 + i] = (mode & (0400u >> i)) ? rwx[i] : '-';
	if (mode & 04000)
		out[3] = (mode & 0100) ? 's' : 'S';
	if (mode & 02000)
		out[6] = (mode & 010) ? 's' : 'S';
	if (mode & 01000)
		out[9] = (mode & 01) ? 't' : 'T';
	out[10] = '\0';
}

static int ls_short_cb(void *arg, const struct disk_entry *e)
{
	(void)arg;
	put_name(e->name);
	putchar('\n');
	return 0;
}

static int ls_long_cb(void *arg, const struct disk_entry *e)
{
	(void)arg;
	char m[11], when[32];
	mode_string(e->mode, e->type, m);
	time_t t = (time_t)e->mtime;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
	printf("%s %3u %5u %5u %10llu %s ", m, e->nlink, e->uid, e->gid, (unsigned long long)e->size, when);
	put_name(e->name);
	if (e->target) {
		fputs(" -> ", stdout);
		put_name(e->target);
	}
	putchar('\n');
	return 0;
}

/* Parse sub-command options; returns -1 on a usage error (already reported), 1 for --help. */
static int parse(int argc, char **argv, const char *sub, bool *opt_l, bool *opt_r, bool *opt_json,
		 bool *opt_skip, int *rc)
{
	static const struct option opts[] = {
		{"help", no_argument, NULL, 'h'},
		{"long", no_argument, NULL, 'l'},
		{"recursive", no_argument, NULL, 'r'},
		{"json", no_argument, NULL, 'j'},
		{"skip-unsafe-links", no_argument, NULL, 's'},
		{0},
	};
	bool is_ls = strcmp(sub, "ls") == 0, is_df = strcmp(sub, "df") == 0, is_rm = strcmp(sub, "rm") == 0, is_dl = strcmp(sub, "download") == 0;
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, is_ls ? "hl" : is_rm ? "hrR" : "h", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			fputs(help_for(sub), stdout);
			*rc = 0;
			return 1;
		case 'l':
			if (!is_ls)
				goto bad;
			*opt_l = true;
			break;
		case 'r':
		case 'R':
			if (!is_rm)
				goto bad;
			*opt_r = true;
			break;
		case 'j':
			if (!is_ls && !is_df)
				goto bad;
			*opt_json = true;
			break;
		case 's':
			if (!is_dl)
				goto bad;
			*opt_skip = true;
			break;
		default:
			goto bad;
		}
	}
	return 0;
bad:
	*rc = cli_usage("disk %s: unknown option '%s' (try 'pyti disk %s --help')", sub, argv[optind - 1], sub);
	return -1;
}

int cmd_disk(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage(
			"disk: a subcommand is needed: mkfs, upload, download, ls, rm, df (try 'pyti disk --help')");
	const char *sub = argv[1];
	if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
		fputs(disk_usage_text, stdout);
		return 0;
	}
	if (!help_for(sub)) {
		const char *names[ARRAY_SIZE(sub_help)];
		for (size_t i = 0; i < ARRAY_SIZE(sub_help); i++)
			names[i] = sub_help[i].name;
		const char *near = cli_nearest(sub, names, ARRAY_SIZE(names));
		if (near)
			return cli_usage("disk: unknown command '%s' (did you mean '%s'?)", sub, near);
		return cli_usage("disk: unknown command '%s' (try 'pyti disk --help')", sub);
	}
	bool opt_l = false, opt_r = false, opt_json = ctx->json, opt_skip = false;
	int rc = 0;
	int p = parse(argc - 1, argv + 1, sub, &opt_l, &opt_r, &opt_json, &opt_skip, &rc);
	if (p != 0)
		return rc;
	char **args = argv + 1 + optind;
	int nargs = argc - 1 - optind;
	struct pyti_err err = {0};

#define NEED(lo, hi)                                                                                                   \
	do {                                                                                                           \
		if (nargs > (hi))                                                                                      \
			return cli_usage("disk %s: unexpected argument '%s' (try 'pyti disk %s --help')", sub,         \
					 args[hi], sub);                                                               \
		if (nargs < (lo))                                                                                      \
			return cli_usage("disk %s: too few arguments (try 'pyti disk %s --help')", sub, sub);          \
	} while (0)

	if (strcmp(sub, "mkfs") == 0) {
		NEED(2, 2);
		uint64_t size;
		if (disk_parse_size(args[1], &size, &err) < 0 || disk_mkfs(args[0], size, &err) < 0)
			return cli_fail(&err);
		return 0;
	}
	if (strcmp(sub, "upload") == 0) {
		NEED(3, 3);
		if (disk_upload(args[0], args[1], args[2], &err) < 0)
			return cli_fail(&err);
		return 0;
	}
	if (strcmp(sub, "download") == 0) {
		NEED(3, 3);
		if (disk_download_flags(args[0], args[1], args[2], opt_skip ? DISK_DL_SKIP_UNSAFE_LINKS : 0, &err) < 0)
			return cli_fail(&err);
		return 0;
	}
	if (strcmp(sub, "ls") == 0) {
		NEED(1, 2);
		const char *path = nargs > 1 ? args[1] : "/";
		if (opt_json) {
			_cleanup_json_ json_t *a = NULL;
			if (disk_ls_json(args[0], path, &a, &err) < 0)
				return cli_fail(&err);
			char *s = json_dumps(a, JSON_INDENT(2));
			if (s)
				puts(s);
			free(s);
			return 0;
		}
		if (disk_ls(args[0], path, opt_l ? ls_long_cb : ls_short_cb, NULL, &err) != 0)
			return cli_fail(&err);
		return 0;
	}
	if (strcmp(sub, "df") == 0) {
		NEED(1, 1);
		struct disk_usage u;
		if (disk_usage(args[0], &u, &err) < 0)
			return cli_fail(&err);
		if (opt_json) {
			_cleanup_json_ json_t *o = json_pack("{sI sI sI sI sI}", "block_size", (json_int_t)u.block_size,
							     "blocks", (json_int_t)u.blocks, "free_blocks",
							     (json_int_t)u.free_blocks, "inodes", (json_int_t)u.inodes,
							     "free_inodes", (json_int_t)u.free_inodes);
			char *js = json_dumps(o, JSON_INDENT(2));
			if (js)
				puts(js);
			free(js);
			return 0;
		}
		printf("block size   %llu\n", (unsigned long long)u.block_size);
		printf("blocks       %llu total, %llu used, %llu free (%llu MiB free)\n", (unsigned long long)u.blocks,
		       (unsigned long long)(u.blocks - u.free_blocks), (unsigned long long)u.free_blocks,
		       (unsigned long long)(u.free_blocks * u.block_size >> 20));
		printf("inodes       %llu total, %llu used, %llu free\n", (unsigned long long)u.inodes,
		       (unsigned long long)(u.inodes - u.free_inodes), (unsigned long long)u.free_inodes);
		return 0;
	}
	/* rm */
	NEED(2, 2);
	if (disk_rm(args[0], args[1], opt_r, &err) < 0)
		return cli_fail(&err);
	return 0;
#undef NEED
}

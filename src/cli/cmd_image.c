/* pyti image: build, list and remove guest images (src/image). */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "sandbox.h"
#include "image.h"

static void image_usage(FILE *f)
{
	fputs("usage: pyti image build [--suite SUITE] [--profile full|minimal] [--mirror URL] [--force]\n"
	      "       pyti image list [--json]\n"
	      "       pyti image rm SUITE\n\n"
	      "Guest images live in STATE_DIR/images/SUITE/ (rootfs/, vmlinuz, manifest.json). An image is\n"
	      "Debian minbase with python3, pip, venv, pytest, the cloud kernel and build tools (gcc,\n"
	      "python3-dev, git, less, gettext, locales, pkg-config, libffi-dev); each suite is one\n"
	      "Python version (bookworm: 3.11, trixie: 3.13).\n\n"
	      "build   debootstrap (as root) or mmdebstrap --mode=unshare (as a user) the image; a no-op\n"
	      "        when it is already built, unless --force. Takes a few minutes and needs the network.\n"
	      "  -s, --suite SUITE   bookworm (default) or trixie\n"
	      "  -p, --profile P     full (default) or minimal: without the build tools (less than half\n"
	      "                      the size), named SUITE-minimal (`pyti run --suite bookworm-minimal`)\n"
	      "  -m, --mirror URL    Debian mirror (default: the one the host's apt uses for the suite,\n"
	      "                      from /etc/apt/sources.list and /etc/apt/sources.list.d/)\n"
	      "  -f, --force         rebuild even when the image exists\n"
	      "  -q, --quiet         no progress on stderr\n"
	      "list    the built images: suite, Python version, size, creation time (--json: an array)\n"
	      "rm      remove an image, its VM artefacts and its standby guests (vm backend)\n\n"
	      "exit status: 0 done, 2 usage or configuration error (unknown suite, no mirror found,\n"
	      "missing tool, no such image), 3 the build failed.\n"
	      "A command that needs an image which is not built (e.g. `pyti run`) exits with status 2\n"
	      "and says which `pyti image build` to run.\n",
	      f);
}

struct build_progress {
	bool tty, quiet;
	double t0;
	char phase[32];
	unsigned spin;
	size_t last_width;
};

static void show(struct build_progress *p, const char *phase, const char *line)
{
	if (p->quiet)
		return;
	double t = now_mono() - p->t0;
	bool new_phase = strcmp(p->phase, phase) != 0;
	if (new_phase)
		snprintf(p->phase, sizeof p->phase, "%s", phase);
	if (!p->tty) {
		/* Without a terminal: one line per phase, plus pyti's own notes (not tool chatter). */
		if (new_phase)
			fprintf(stderr, "pyti: [%6.1fs] image: %s\n", t, phase);
		else if (line && strcmp(phase, "bootstrap") != 0) {
			_cleanup_free_ char *safe = term_safe_dup(line, 0);
			fprintf(stderr, "pyti: [%6.1fs] image: %s: %s\n", t, phase, safe);
		}
		return;
	}
	static const char spin[] = "|/-\\";
	static char last[120];
	if (line) {
		/* Tool output is untrusted bytes: show printable ASCII only. */
		size_t k = 0;
		for (const char *s = line; *s && k < sizeof last - 1; s++)
			last[k++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
		last[k] = '\0';
	} else if (new_phase) {
		last[0] = '\0';
	}
	char out[200];
	int n = snprintf(out, sizeof out, "%c %-9s %5.0fs  %.*s", spin[p->spin++ % 4], phase, t, 60, last);
	if (n < 0)
		return;
	size_t w = (size_t)n < sizeof out ? (size_t)n : sizeof out - 1;
	fprintf(stderr, "\r%s", out);
	for (size_t i = w; i < p->last_width; i++)
		fputc(' ', stderr);
	p->last_width = w;
	fflush(stderr);
}

static void on_build_progress(void *arg, const char *phase, const char *line)
{
	show(arg, phase, line);
}

static void end_line(struct build_progress *p)
{
	if (p->tty && !p->quiet && p->last_width) {
		fputc('\r', stderr);
		for (size_t i = 0; i < p->last_width; i++)
			fputc(' ', stderr);
		fputc('\r', stderr);
		p->last_width = 0;
	}
}

static void human_size(long long b, char out[32])
{
	if (b >= 1LL << 30)
		snprintf(out, 32, "%.1f GB", (double)b / (1LL << 30));
	else
		snprintf(out, 32, "%.0f MB", (double)b / (1LL << 20));
}

static int image_cmd_build(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{"suite", required_argument, NULL, 's'}, {"mirror", required_argument, NULL, 'm'},
		{"profile", required_argument, NULL, 'p'},
		{"force", no_argument, NULL, 'f'},       {"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},        {0},
	};
	struct build_progress p = {.tty = ctx->tty, .t0 = now_mono()};
	struct image_build_opts o = {.suite = "bookworm", .progress = on_build_progress, .arg = &p};
	int c;
	while ((c = cli_getopt("image build", argc, argv, "s:m:p:fqh", opts)) != -1) {
		switch (c) {
		case 's':
			o.suite = optarg;
			break;
		case 'p':
			o.profile = optarg;
			break;
		case 'm':
			o.mirror = optarg;
			break;
		case 'f':
			o.force = true;
			break;
		case 'q':
			p.quiet = true;
			break;
		case 'h':
			image_usage(stdout);
			return 0;
		default:
			return PYTI_EXIT_USAGE;
		}
	}
	if (optind < argc)
		return cli_usage("image build: unexpected argument '%s'", argv[optind]);

	struct pyti_err err = {0};
	int r = image_build(ctx->state_dir, &o, &err);
	end_line(&p);
	if (r < 0)
		return cli_fail(&err);
	struct image_info info;
	_cleanup_free_ char *name = o.profile && strcmp(o.profile, "minimal") == 0 ? xasprintf("%s-minimal", o.suite)
										  : xstrdup(o.suite);
	if (image_find(ctx->state_dir, name, &info, &err) < 0)
		return cli_fail(&err);
	char size[32];
	human_size(info.size_bytes, size);
	if (r == 1)
		fprintf(stderr, "pyti: image %s is up to date (%s; --force rebuilds)\n", info.display, info.dir);
	else
		fprintf(stderr, "pyti: built image %s in %.0fs: %s, %s\n", info.display, now_mono() - p.t0,
			info.dir, size);
	image_info_free(&info);
	return 0;
}

static int image_cmd_list(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int c;
	while ((c = cli_getopt("image list", argc, argv, "h", opts)) != -1) {
		switch (c) {
		case 'j':
			ctx->json = true;
			break;
		case 'h':
			image_usage(stdout);
			return 0;
		default:
			return PYTI_EXIT_USAGE;
		}
	}
	if (optind < argc)
		return cli_usage("image list: unexpected argument '%s'", argv[optind]);

	struct pyti_err err = {0};
	struct image_info *list;
	size_t n;
	if (image_list(ctx->state_dir, &list, &n, &err) < 0)
		return cli_fail(&err);
	if (ctx->json) {
		_cleanup_json_ json_t *a = json_array();
		for (size_t i = 0; i < n; i++) {
			json_t *o = json_object();
			json_object_set_new(o, "suite", json_string(list[i].suite));
			json_object_set_new(o, "python", json_string(list[i].python));
			json_object_set_new(o, "name", json_string(list[i].display));
			json_object_set_new(o, "size_bytes", json_integer(list[i].size_bytes));
			json_object_set_new(o, "created", json_string(list[i].created));
			json_object_set_new(o, "packages", json_integer((json_int_t)list[i].n_packages));
			json_object_set_new(o, "hash", json_string(list[i].hash));
			json_object_set_new(o, "path", json_string(list[i].dir));
			json_array_append_new(a, o);
		}
		char *s = json_dumps(a, JSON_INDENT(2));
		if (s)
			printf("%s\n", s);
		free(s);
	} else if (n == 0) {
		fprintf(stderr, "pyti: no images in %s/images (build one with `pyti image build`)\n", ctx->state_dir);
	} else {
		printf("%-16s %-8s %9s  %s\n", "SUITE", "PYTHON", "SIZE", "CREATED");
		for (size_t i = 0; i < n; i++) {
			char size[32];
			human_size(list[i].size_bytes, size);
			printf("%-16s %-8s %9s  %s\n", list[i].suite, list[i].python, size, list[i].created);
		}
	}
	image_list_free(list, n);
	return 0;
}

static int image_cmd_rm(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
		image_usage(stdout);
		return 0;
	}
	if (argc > 2)
		return cli_usage("image rm: unexpected argument '%s' (usage: pyti image rm SUITE)", argv[2]);
	if (argc != 2)
		return cli_usage("image rm: a SUITE is needed (usage: pyti image rm SUITE)");
	struct pyti_err err = {0};
	if (image_rm(ctx->state_dir, argv[1], &err) < 0)
		return cli_fail(&err);
	sandbox_vm_forget_image(ctx->state_dir, argv[1]); /* its VM artefacts and standby guests */
	fprintf(stderr, "pyti: removed image %s\n", argv[1]);
	return 0;
}

int cmd_image(struct cli_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage("image: a subcommand is needed: build, list, rm (try 'pyti image --help')");
	const char *sub = argv[1];
	if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
		image_usage(stdout);
		return 0;
	}
	/* The subcommand parses its own options from argv[1..] (main reset getopt: optind = 0). */
	if (strcmp(sub, "build") == 0)
		return image_cmd_build(ctx, argc - 1, argv + 1);
	if (strcmp(sub, "list") == 0 || strcmp(sub, "ls") == 0)
		return image_cmd_list(ctx, argc - 1, argv + 1);
	if (strcmp(sub, "rm") == 0)
		return image_cmd_rm(ctx, argc - 1, argv + 1);
	const char *subs[] = {"build", "list", "rm"};
	const char *near = cli_nearest(sub, subs, ARRAY_SIZE(subs));
	if (near)
		return cli_usage("image: unknown subcommand '%s' (did you mean '%s'?)", sub, near);
	return cli_usage("image: unknown subcommand '%s' (build, list, rm; try 'pyti image --help')", sub);
}

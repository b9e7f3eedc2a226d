/* pyti vm: the VManager commands on libvirt domains named "pyti-<NAME>". */
#include <errno.h>
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "proc.h"
#include "vm.h"

static void vm_usage(FILE *f)
{
	fprintf(f, "usage: pyti vm define|start|stop|snapshot|rollback|destroy NAME [SNAPSHOT] [options]\n"
		   "       pyti vm list [--connect URI] [--json]\n\n"
		   "Libvirt domains for pyti's guest images (domain name: pyti-NAME). A defined domain boots the\n"
		   "image's kernel with pyti's tiny initrd into the guest agent, on a qcow2 overlay of the image's\n"
		   "base disk (STATE/vm/domains/NAME/system.qcow2). No network interface.\n\n"
		   "options:\n"
		   "  --connect URI   libvirt URI (default $PYTI_VM_URI or " VM_DEFAULT_URI
		   "; qemu:///session, test:///default)\n"
		   "  --image SUITE   image to define the domain from (default bookworm)\n"
		   "  --memory MIB    guest memory (default 1024)     --vcpus N   (default 1)\n"
		   "  --timeout S     stop: seconds to wait for a clean shutdown before destroying (default 10)\n"
		   "  --json          list: print JSON\n"
		   "SNAPSHOT (snapshot, rollback) defaults to \"pyti\". Snapshots of a running domain include its RAM.\n");
}

static char *vm_full_name(const char *name)
{
	if (strncmp(name, VM_NAME_PREFIX, strlen(VM_NAME_PREFIX)) == 0)
		return xstrdup(name);
	return xasprintf(VM_NAME_PREFIX "%s", name);
}

static bool vm_name_ok(const char *n)
{
	if (!*n || strlen(n) > 64)
		return false;
	for (const char *p = n; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.'))
			return false;
	return n[0] != '.';
}

static int vm_cmd_define(struct cli_ctx *ctx, struct vm_conn *c, const char *short_name, const char *full,
			 const char *suite, unsigned mem, unsigned vcpus, struct pyti_err *err)
{
	const char *uri = vm_conn_uri(c);
	_cleanup_free_ char *dir = xasprintf("%s/vm/domains/%s", ctx->state_dir, short_name);
	_cleanup_free_ char *disk = xasprintf("%s/system.qcow2", dir);
	struct vm_image img = {0};
	struct vm_def d = {.name = full, .memory_mib = mem, .vcpus = vcpus, .system_disk = disk};
	if (strncmp(uri, "test:", 5) == 0) {
		/* the test driver never reads the files */
		img.kernel = xasprintf("%s/vmlinuz", dir);
		img.initrd = xasprintf("%s/initrd.img", dir);
	} else {
		_cleanup_free_ char *image_dir = xasprintf("%s/images/%s", ctx->state_dir, suite);
		_cleanup_free_ char *cache = xasprintf("%s/vm/%s", ctx->state_dir, suite);
		_cleanup_free_ char *agent = cli_find_helper("pyti-agent");
		if (vm_image_prepare(image_dir, agent, cache, &img, err) < 0)
			return -1;
		if (path_exists(disk)) {
			vm_image_free(&img);
			return pyti_err_usage(err, "%s exists: `pyti vm destroy %s` first", disk, short_name);
		}
		char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", img.base, disk, NULL};
		if (mkdir_p(dir, 0755, err) < 0 || proc_run_simple(argv, NULL, 60, err) < 0) {
			vm_image_free(&img);
			return -1;
		}
	}
	d.kernel = img.kernel;
	d.initrd = img.initrd;
	int r = vm_define(c, &d, err);
	vm_image_free(&img);
	if (r < 0 && strncmp(uri, "test:", 5) != 0)
		unlink(disk);
	return r;
}

static int vm_cmd_list(struct cli_ctx *ctx, struct vm_conn *c, struct pyti_err *err)
{
	_cleanup_json_ json_t *arr = NULL;
	if (vm_list(c, &arr, err) < 0)
		return -1;
	if (ctx->json) {
		char *s = json_dumps(arr, JSON_INDENT(2));
		puts(s);
		free(s);
		return 0;
	}
	printf("%-32s %-14s %-10s %s\n", "NAME", "STATE", "PERSISTENT", "SNAPSHOTS");
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o)
	{
		_cleanup_buf_ struct buf snaps = BUF_INIT(4096);
		size_t j;
		json_t *s;
		json_array_foreach(json_object_get(o, "snapshots"), j, s)
			buf_printf(&snaps, "%s%s", j ? "," : "", json_string_value(s));
		printf("%-32s %-14s %-10s %s\n", pj_str(o, "name", "?"), pj_str(o, "state", "?"),
		       pj_bool(o, "persistent", false) ? "yes" : "no", snaps.len ? snaps.data : "-");
	}
	return 0;
}

int cmd_vm(struct cli_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{"connect", required_argument, NULL, 'c'}, {"image", required_argument, NULL, 'i'},
		{"memory", required_argument, NULL, 'm'},  {"vcpus", required_argument, NULL, 'n'},
		{"timeout", required_argument, NULL, 't'}, {"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},          {0},
	};
	const char *uri = NULL, *suite = "bookworm";
	unsigned mem = 0, vcpus = 0;
	double timeout = 10;
	int o;
	while ((o = cli_getopt("vm", argc, argv, "c:i:h", opts)) != -1) {
		switch (o) {
		case 'c': uri = optarg; break;
		case 'i': suite = optarg; break;
		case 'm': mem = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'n': vcpus = (unsigned)strtoul(optarg, NULL, 10); break;
		case 't': timeout = strtod(optarg, NULL); break;
		case 'j': ctx->json = true; break;
		case 'h': vm_usage(stdout); return 0;
		default: return PYTI_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		return cli_usage("vm: a subcommand is needed: define, start, stop, snapshot, rollback, destroy, list "
				 "(try 'pyti vm --help')");
	}
	const char *sub = argv[optind++];
	static const char *const subs[] = {"define", "start", "stop", "snapshot", "rollback", "destroy", "list"};
	bool known = false;
	for (size_t i = 0; i < ARRAY_SIZE(subs); i++)
		known = known || strcmp(sub, subs[i]) == 0;
	if (!known) {
		const char *near = cli_nearest(sub, subs, ARRAY_SIZE(subs));
		if (near)
			return cli_usage("vm: unknown subcommand '%s' (did you mean '%s'?)", sub, near);
		return cli_usage("vm: unknown subcommand '%s' (pyti vm --help)", sub);
	}
	const char *name = NULL, *snap = "pyti";
	if (strcmp(sub, "list") != 0) {
		if (optind >= argc)
			return cli_usage("vm %s: NAME is missing", sub);
		name = argv[optind++];
		if (!vm_name_ok(name))
			return cli_usage("vm %s: invalid domain name '%s' (letters, digits, '-', '_', '.')", sub, name);
		if ((strcmp(sub, "snapshot") == 0 || strcmp(sub, "rollback") == 0) && optind < argc)
			snap = argv[optind++];
	}
	if (optind < argc)
		return cli_usage("vm %s: unexpected argument '%s'", sub, argv[optind]);

	struct pyti_err err = {0};
	struct vm_conn *c = NULL;
	if (vm_connect(uri, &c, &err) < 0)
		return cli_fail(&err);
	_cleanup_free_ char *full = name ? vm_full_name(name) : NULL;
	const char *short_name = name && strncmp(name, VM_NAME_PREFIX, strlen(VM_NAME_PREFIX)) == 0
					 ? name + strlen(VM_NAME_PREFIX)
					 : name;
	int r = 0;
	if (strcmp(sub, "list") == 0) {
		r = vm_cmd_list(ctx, c, &err);
	} else if (strcmp(sub, "define") == 0) {
		r = vm_cmd_define(ctx, c, short_name, full, suite, mem, vcpus, &err);
		if (r == 0)
			printf("defined %s\n", full);
	} else if (strcmp(sub, "start") == 0) {
		r = vm_start(c, full, &err);
		if (r == 0)
			printf("started %s\n", full);
	} else if (strcmp(sub, "stop") == 0) {
		r = vm_stop(c, full, timeout, &err);
		if (r >= 0)
			printf("stopped %s%s\n", full, r == 1 ? " (destroyed after the shutdown timeout)" : "");
	} else if (strcmp(sub, "snapshot") == 0) {
		r = vm_snapshot(c, full, snap, &err);
		if (r == 0)
			printf("snapshot %s of %s\n", snap, full);
	} else if (strcmp(sub, "rollback") == 0) {
		r = vm_rollback(c, full, snap, &err);
		if (r == 0)
			printf("rolled %s back to %s\n", full, snap);
	} else if (strcmp(sub, "destroy") == 0) {
		r = vm_destroy(c, full, &err);
		if (r == 0 && strncmp(vm_conn_uri(c), "test:", 5) != 0) {
			_cleanup_free_ char *dir = xasprintf("%s/vm/domains/%s", ctx->state_dir, short_name);
			r = rm_rf(dir, &err);
		}
		if (r == 0)
			printf("destroyed %s\n", full);
	}
	vm_disconnect(c);
	return r < 0 ? cli_fail(&err) : 0;
}

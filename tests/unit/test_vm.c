/* Unit tests for the vm module: domain XML, the lifecycle commands against libvirt's test driver
 * (test:///default, in-process, no daemon, no guest), stale-domain cleanup, and the initrd built
 * from a synthetic rootfs (read back with libarchive). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>
#include <cmocka.h>

#include "vm.h"

static const struct vm_def base_def = {
	.name = "pyti-unit",
	.kernel = "/img/vmlinuz",
	.initrd = "/img/initrd.img",
	.system_disk = "/run/x/system.qcow2",
	.io_disk = "/run/x/io & <1>.img",
	.memory_mib = 512,
	.vcpus = 2,
};

static void test_xml_qemu(void **state)
{
	(void)state;
	struct vm_def d = base_def;
	d.type = "qemu";
	char *x = NULL;
	struct pyti_err err = {0};
	assert_int_equal(vm_domain_xml(&d, "qemu:///system", &x, &err), 0);
	assert_non_null(strstr(x, "<domain type='qemu'>"));
	assert_non_null(strstr(x, "<name>pyti-unit</name>"));
	assert_non_null(strstr(x, "<memory unit='MiB'>512</memory>"));
	assert_non_null(strstr(x, "<vcpu>2</vcpu>"));
	assert_non_null(strstr(x, "<features><acpi/></features>"));
	assert_non_null(strstr(x, "<cpu mode='maximum' migratable='off'/>"));
	assert_non_null(strstr(x, "<kernel>/img/vmlinuz</kernel>"));
	assert_non_null(strstr(x, "<initrd>/img/initrd.img</initrd>"));
	assert_non_null(strstr(x, "console=ttyS0"));
	assert_non_null(strstr(x, "type='qcow2'/>\n      <source file='/run/x/system.qcow2'/>\n      <target dev='vda'"));
	assert_non_null(strstr(x, "type='raw'/>\n      <source file='/run/x/io &amp; &lt;1&gt;.img'/>"));
	assert_non_null(strstr(x, "<memballoon model='none'/>"));
	assert_non_null(strstr(x, "<controller type='usb' model='none'/>"));
	assert_non_null(strstr(x, "<on_poweroff>destroy</on_poweroff>"));
	assert_null(strstr(x, "<interface"));
	assert_null(strstr(x, "<graphics"));
	assert_null(strstr(x, "<sound"));
	free(x);

	d.type = "kvm";
	d.io_disk = NULL;
	assert_int_equal(vm_domain_xml(&d, "qemu:///system", &x, &err), 0);
	assert_non_null(strstr(x, "<domain type='kvm'>"));
	assert_non_null(strstr(x, "host-passthrough"));
	assert_null(strstr(x, "vdb"));
	free(x);
}

static void test_xml_refuses(void **state)
{
	(void)state;
	struct vm_def d = base_def;
	d.name = "other";
	char *x = NULL;
	struct pyti_err err = {0};
	assert_int_equal(vm_domain_xml(&d, "test:///default", &x, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_null(x);
	d = base_def;
	d.system_disk = NULL;
	assert_int_equal(vm_domain_xml(&d, "test:///default", &x, &err), -1);
}

static void test_domain_type(void **state)
{
	(void)state;
	assert_string_equal(vm_domain_type("test:///default"), "test");
	vm_set_host(&(struct vm_host){.accel = "tcg"});
	assert_string_equal(vm_domain_type("qemu:///system"), "qemu");
	vm_set_host(&(struct vm_host){.accel = "kvm"});
	assert_string_equal(vm_domain_type("qemu:///system"), "kvm");
	vm_set_host(&(struct vm_host){0});
}

static void test_replace_file(void **state)
{
	(void)state;
	char *x = xstrdup("<disk><source file='/a/frozen.qcow2'/></disk><disk><source file='/a/io0 &amp; x.img'/>"
			  "<x file='/a/frozen.qcow2'/>");
	assert_int_equal(vm_xml_replace_file(&x, "/a/frozen.qcow2", "/b/job.qcow2"), 2);
	assert_int_equal(vm_xml_replace_file(&x, "/a/io0 & x.img", "/b/io.img"), 1);
	assert_int_equal(vm_xml_replace_file(&x, "/nope", "/b/io.img"), 0);
	assert_string_equal(x, "<disk><source file='/b/job.qcow2'/></disk><disk><source file='/b/io.img'/>"
			       "<x file='/b/job.qcow2'/>");
	free(x);
}

static json_t *find_dom(json_t *arr, const char *name)
{
	size_t i;
	json_t *o;
	json_array_foreach(arr, i, o) if (strcmp(pj_str(o, "name", ""), name) == 0) return o;
	return NULL;
}

static void test_lifecycle(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	struct vm_conn *c = NULL;
	assert_int_equal(vm_connect("test:///default", &c, &err), 0);
	assert_string_equal(vm_conn_uri(c), "test:///default");

	struct vm_def d = base_def;
	assert_int_equal(vm_define(c, &d, &err), 0);
	json_t *arr = NULL;
	assert_int_equal(vm_list(c, &arr, &err), 0);
	json_t *o = find_dom(arr, "pyti-unit");
	assert_non_null(o);
	assert_string_equal(pj_str(o, "state", ""), "shut off");
	assert_true(pj_bool(o, "persistent", false));
	/* the test driver's own "test" domain is not pyti's */
	assert_null(find_dom(arr, "test"));
	json_decref(arr);

	assert_int_equal(vm_start(c, "pyti-unit", &err), 0);
	assert_int_equal(vm_start(c, "pyti-unit", &err), 0); /* already running: fine */
	assert_int_equal(vm_list(c, &arr, &err), 0);
	assert_string_equal(pj_str(find_dom(arr, "pyti-unit"), "state", ""), "running");
	json_decref(arr);

	assert_int_equal(vm_snapshot(c, "pyti-unit", "s1", &err), 0);
	assert_int_equal(vm_list(c, &arr, &err), 0);
	json_t *snaps = json_object_get(find_dom(arr, "pyti-unit"), "snapshots");
	assert_int_equal(json_array_size(snaps), 1);
	assert_string_equal(json_string_value(json_array_get(snaps, 0)), "s1");
	json_decref(arr);
	assert_int_equal(vm_rollback(c, "pyti-unit", "s1", &err), 0);
	assert_int_equal(vm_rollback(c, "pyti-unit", "nope", &err), -1);

	assert_true(vm_stop(c, "pyti-unit", 5, &err) >= 0);
	assert_int_equal(vm_list(c, &arr, &err), 0);
	assert_string_equal(pj_str(find_dom(arr, "pyti-unit"), "state", ""), "shut off");
	json_decref(arr);
	assert_int_equal(vm_stop(c, "pyti-unit", 5, &err), 0); /* not running: nothing to do */

	assert_int_equal(vm_destroy(c, "pyti-unit", &err), 0);
	assert_int_equal(vm_list(c, &arr, &err), 0);
	assert_null(find_dom(arr, "pyti-unit"));
	json_decref(arr);

	pyti_err_clear(&err);
	assert_int_equal(vm_start(c, "pyti-missing", &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	assert_non_null(strstr(err.msg, "pyti-missing"));
	vm_disconnect(c);
}

static bool stale_odd(void *arg, const char *name)
{
	(void)arg;
	return strcmp(name, "pyti-job-1") == 0 || strcmp(name, "pyti-job-3") == 0;
}

static void test_cleanup_stale(void **state)
{
	(void)state;
	struct pyti_err err = {0};
	struct vm_conn *c = NULL;
	assert_int_equal(vm_connect("test:///default", &c, &err), 0);
	const char *names[] = {"pyti-job-1", "pyti-job-2", "pyti-job-3"};
	for (size_t i = 0; i < 3; i++) {
		struct vm_def d = base_def;
		d.name = names[i];
		assert_int_equal(vm_define(c, &d, &err), 0);
		assert_int_equal(vm_start(c, names[i], &err), 0);
	}
	assert_int_equal(vm_cleanup_stale(c, stale_odd, NULL, &err), 2);
	json_t *arr = NULL;
	assert_int_equal(vm_list(c, &arr, &err), 0);
	assert_null(find_dom(arr, "pyti-job-1"));
	assert_non_null(find_dom(arr, "pyti-job-2"));
	assert_null(find_dom(arr, "pyti-job-3"));
	json_decref(arr);
	assert_int_equal(vm_destroy(c, "pyti-job-2", &err), 0);
	vm_disconnect(c);
}

/* ---- initrd from a synthetic rootfs ---- */

static void put(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static void test_image_initrd(void **state)
{
	(void)state;
	if (access("/bin/busybox", X_OK) != 0) {
		skip();
		return;
	}
	char tmpl[] = "/tmp/pyti-vm-unit.XXXXXX";
	char *dir = mkdtemp(tmpl);
	assert_non_null(dir);
	struct pyti_err err = {0};
	char *img = xasprintf("%s/img", dir), *md = xasprintf("%s/img/rootfs/lib/modules/6.1.0-test", dir);
	assert_int_equal(mkdir_p(md, 0755, &err), 0);
	char *p = xasprintf("%s/modules.dep", md);
	put(p, "kernel/drivers/virtio/virtio.ko:\n"
	       "kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\n"
	       "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko "
	       "kernel/drivers/virtio/virtio.ko\n"
	       "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko "
	       "kernel/drivers/virtio/virtio.ko\n"
	       "kernel/fs/other.ko:\n");
	free(p);
	const char *kos[] = {"drivers/virtio/virtio.ko", "drivers/virtio/virtio_ring.ko",
			     "drivers/virtio/virtio_pci.ko", "drivers/block/virtio_blk.ko"};
	for (size_t i = 0; i < ARRAY_SIZE(kos); i++) {
		char *f = xasprintf("%s/kernel/%s", md, kos[i]);
		char *slash = strrchr(f, '/');
		*slash = '\0';
		assert_int_equal(mkdir_p(f, 0755, &err), 0);
		*slash = '/';
		put(f, kos[i]);
		free(f);
	}
	char *boot = xasprintf("%s/img/rootfs/boot", dir);
	assert_int_equal(mkdir_p(boot, 0755, &err), 0);
	p = xasprintf("%s/vmlinuz", img);
	put(p, "kernel");
	free(p);
	p = xasprintf("%s/img/rootfs/etc", dir);
	assert_int_equal(mkdir_p(p, 0755, &err), 0);
	free(p);
	char *agent = xasprintf("%s/pyti-agent", dir);
	put(agent, "#!agent\n");
	char *cache = xasprintf("%s/cache", dir);

	struct vm_image vi = {0};
	int r = vm_image_prepare(img, agent, cache, &vi, &err);
	if (r < 0)
		fail_msg("vm_image_prepare: %s", err.msg);
	assert_true(path_exists(vi.base));
	assert_non_null(strstr(vi.initrd, "/cache/initrd-"));
	char key[65];
	memcpy(key, vi.key, sizeof key);

	/* read back: two concatenated newc archives */
	struct archive *a = archive_read_new();
	archive_read_support_format_cpio(a);
	assert_int_equal(archive_read_open_filename(a, vi.initrd, 10240), ARCHIVE_OK);
	struct archive_entry *e;
	_cleanup_buf_ struct buf names = BUF_INIT(0), init = BUF_INIT(0);
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		buf_printf(&names, "%s\n", archive_entry_pathname(e));
		if (strcmp(archive_entry_pathname(e), "init") == 0) {
			char b[4096];
			la_ssize_t n;
			while ((n = archive_read_data(a, b, sizeof b)) > 0)
				buf_append(&init, b, (size_t)n);
		}
	}
	archive_read_free(a);
	assert_non_null(strstr(names.data, "init\n"));
	assert_non_null(strstr(names.data, "bin/busybox\n"));
	assert_non_null(strstr(names.data, "dev/console\n"));
	assert_non_null(strstr(names.data, "lib/modules/virtio_blk.ko\n"));
	assert_null(strstr(names.data, "other.ko"));
	/* libarchive stops at the first trailer; the agent is the second archive, after it */
	_cleanup_buf_ struct buf raw = BUF_INIT(0);
	assert_int_equal(read_file(vi.initrd, &raw, &err), 0);
	const char *tr = memmem(raw.data, raw.len, "TRAILER!!!", 10);
	assert_non_null(tr);
	size_t rest = raw.len - (size_t)(tr - raw.data);
	assert_non_null(memmem(tr, rest, "pyti-agent", 10));
	assert_non_null(memmem(tr, rest, "#!agent", 7));
	/* dependencies load first, each once */
	const char *v = strstr(init.data, "insmod /lib/modules/virtio.ko\n");
	const char *rg = strstr(init.data, "insmod /lib/modules/virtio_ring.ko\n");
	const char *pci = strstr(init.data, "insmod /lib/modules/virtio_pci.ko\n");
	const char *blk = strstr(init.data, "insmod /lib/modules/virtio_blk.ko\n");
	assert_true(v && rg && pci && blk && v < rg && rg < pci && pci < blk);
	assert_null(strstr(v + 1, "insmod /lib/modules/virtio.ko\n"));
	assert_non_null(strstr(init.data, "switch_root /newroot /usr/local/sbin/pyti-agent --vm"));
	vm_image_free(&vi);

	/* idempotent; a new agent gives a new initrd and key */
	assert_int_equal(vm_image_prepare(img, agent, cache, &vi, &err), 0);
	assert_string_equal(vi.key, key);
	char *old = xstrdup(vi.initrd);
	vm_image_free(&vi);
	put(agent, "#!agent v2\n");
	assert_int_equal(vm_image_prepare(img, agent, cache, &vi, &err), 0);
	assert_string_not_equal(vi.initrd, old);
	assert_string_not_equal(vi.key, key);
	vm_image_free(&vi);

	/* no agent: a usage error */
	assert_int_equal(vm_image_prepare(img, "/nonexistent/agent", cache, &vi, &err), -1);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);

	assert_int_equal(rm_rf(dir, &err), 0);
	free(old);
	free(img);
	free(md);
	free(boot);
	free(agent);
	free(cache);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xml_qemu),    cmocka_unit_test(test_xml_refuses),
		cmocka_unit_test(test_domain_type), cmocka_unit_test(test_replace_file),
		cmocka_unit_test(test_lifecycle),   cmocka_unit_test(test_cleanup_stale),
		cmocka_unit_test(test_image_initrd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for the master module's pure parts: the config file (every error names file:line), the
 * listen address, token hashes and the strict base64 of upload. The server itself is tested with
 * real processes in tests/integration/test_master.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "master-int.h"

static char path[64];

static int load(struct master_config *c, const char *text, struct pyti_err *err)
{
	snprintf(path, sizeof path, "/tmp/test_master.%d.ini", (int)getpid());
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	master_config_init(c);
	int rc = master_config_load(c, path, err);
	unlink(path);
	return rc;
}

static void expect_error(const char *text, int line, const char *msg)
{
	struct master_config c;
	struct pyti_err err = {0};
	assert_int_equal(load(&c, text, &err), -1);
	char want[600];
	snprintf(want, sizeof want, "%s:%d: %s", path, line, msg);
	assert_string_equal(err.msg, want);
	assert_int_equal(err.status, PYTI_EXIT_USAGE);
	master_config_free(&c);
}

static const char H1[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; /* sha256("test") */

static void test_config_ok(void **state)
{
	(void)state;
	char text[1024];
	snprintf(text, sizeof text,
		 "# a comment\n[master]\nlisten = 0.0.0.0:9000\nstore = postgresql:///pyti\nlease_s = 30\n"
		 "heartbeat_s = 10\nmax_attempts = 2\nbody_limit = 8M\nbatch_limit = 50\nconnections = 64\n"
		 "store_handles = 2\nslow_down_ms = 500\n\n[tokens]\nworker = %s\nworker = %s\nuser = %s\n",
		 H1, "00000000000000000000000000000000000000000000000000000000000000aB", H1);
	struct master_config c;
	struct pyti_err err = {0};
	if (load(&c, text, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(c.listen_addr, "0.0.0.0");
	assert_int_equal(c.listen_port, 9000);
	assert_string_equal(c.store_url, "postgresql:///pyti");
	assert_int_equal(c.lease_s, 30);
	assert_int_equal(c.heartbeat_s, 10);
	assert_int_equal(c.max_attempts, 2);
	assert_int_equal(c.body_limit, 8u << 20);
	assert_int_equal(c.batch_limit, 50);
	assert_int_equal(c.connections, 64);
	assert_int_equal(c.store_handles, 2);
	assert_true(c.slow_down_ms == 500);
	assert_int_equal(c.n_worker_tokens, 2);
	assert_int_equal(c.n_user_tokens, 1);
	assert_int_equal(c.worker_tokens[0][0], 0x9f);
	assert_int_equal(c.worker_tokens[1][31], 0xab);
	master_config_free(&c);
}

static void test_config_errors(void **state)
{
	(void)state;
	expect_error("lease_s = 3\n", 1, "key 'lease_s' outside a section (start with [master])");
	expect_error("[master]\n\nlease_s = 3\n", 3, "bad value for 'lease_s': '3' (an integer from 5 to 86400)");
	expect_error("[master]\nlease_s = 10x\n", 2, "bad value for 'lease_s': '10x' (an integer from 5 to 86400)");
	expect_error("[master]\nlisten = host:99999\n", 2, "listen address 'host:99999': bad port '99999'");
	expect_error("[master]\ncolour = red\n", 2, "unknown key 'colour' in [master]");
	expect_error("[master]\nbody_limit = 1\n", 2,
		     "bad value for 'body_limit': '1' (bytes from 4K to 4G, e.g. 32M)");
	expect_error("[tokens]\nworker = secret\n", 2,
		     "'worker' in [tokens] must be the SHA-256 of a token, 64 hex digits (pyti master hash-token)");
	expect_error("[tokens]\nadmin = x\n", 2, "unknown key 'admin' in [tokens] (worker or user)");
	expect_error("[master]\n[web]\nport = 1\n", 3, "unknown section [web] (expected [master] or [tokens])");
	expect_error("[master\nlease_s = 5\n", 1, "syntax error");
	/* a check across keys names the file */
	struct master_config c;
	struct pyti_err err = {0};
	assert_int_equal(load(&c, "[master]\nlease_s = 10\nheartbeat_s = 10\n", &err), -1);
	assert_non_null(strstr(err.msg, "heartbeat_s (10) must be below lease_s (10)"));
	master_config_free(&c);
	master_config_init(&c);
	assert_int_equal(master_config_load(&c, "/nonexistent/master.ini", &err), -1);
	assert_non_null(strstr(err.msg, "/nonexistent/master.ini"));
	master_config_free(&c);
}

static void test_listen(void **state)
{
	(void)state;
	struct master_config c;
	struct pyti_err err = {0};
	master_config_init(&c);
	assert_int_equal(master_config_listen(&c, "8080", &err), 0);
	assert_string_equal(c.listen_addr, "127.0.0.1");
	assert_int_equal(c.listen_port, 8080);
	assert_int_equal(master_config_listen(&c, ":0", &err), 0);
	assert_int_equal(c.listen_port, 0);
	assert_int_equal(master_config_listen(&c, "[::1]:81", &err), 0);
	assert_string_equal(c.listen_addr, "::1");
	assert_int_equal(c.listen_port, 81);
	assert_int_equal(master_config_listen(&c, "[::1]81", &err), -1);
	assert_int_equal(master_config_listen(&c, "x:", &err), -1);
	assert_int_equal(master_config_listen(&c, "x:-1", &err), -1);
	master_config_free(&c);
	unsigned char h[32];
	assert_int_equal(master_parse_hash(H1, h), 0);
	assert_int_equal(master_parse_hash("9f86", h), -1);
	assert_int_equal(master_parse_hash("zf86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", h), -1);
}

static void b64_ok(const char *in, const char *want, size_t want_len)
{
	unsigned char *out = NULL;
	size_t n = 0;
	assert_int_equal(master_base64_decode(in, strlen(in), &out, &n), 0);
	assert_int_equal(n, want_len);
	assert_memory_equal(out, want, want_len);
	free(out);
}

static void test_base64(void **state)
{
	(void)state;
	/* RFC 4648 §10 */
	b64_ok("", "", 0);
	b64_ok("Zg==", "f", 1);
	b64_ok("Zm8=", "fo", 2);
	b64_ok("Zm9v", "foo", 3);
	b64_ok("Zm9vYg==", "foob", 4);
	b64_ok("Zm9vYmE=", "fooba", 5);
	b64_ok("Zm9vYmFy", "foobar", 6);
	b64_ok("AP8=", "\x00\xff", 2);
	const char *bad[] = {"Zg", "Zg=", "Z===", "Zm9v\n", "Zm=v", "Zg==Zg==", "Zm9*", "====", "Zm9vY===", "-_8="};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		unsigned char *out = NULL;
		size_t n = 0;
		if (master_base64_decode(bad[i], strlen(bad[i]), &out, &n) == 0)
			fail_msg("'%s' was accepted as base64", bad[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_ok),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_base64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

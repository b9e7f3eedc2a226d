/* Unit tests for sandbox.c: the event-line reader both backends feed their streams through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "sandbox.h"

struct got {
	int n;
	char last[64];
};

static void on_event(void *arg, json_t *ev)
{
	struct got *g = arg;
	g->n++;
	snprintf(g->last, sizeof g->last, "%s", pj_str(ev, "event", "?"));
}

static void feed(struct buf *b, size_t max, const char *s, struct got *g)
{
	sandbox_feed_events(b, max, s, strlen(s), false, on_event, g);
}

static void test_split_lines(void **state)
{
	(void)state;
	struct got g = {0};
	struct buf b = BUF_INIT(0);
	feed(&b, 1024, "[ 0.1] noise\r\n@pyti {\"ev", &g);
	assert_int_equal(g.n, 0);
	feed(&b, 1024, "ent\":\"ready\"}\r\n@pyti {\"event\":\"a\"}\n@pyti {\"event\":\"b\"}\nkernel: x @pyti {\"event\":\"c\"}", &g);
	assert_int_equal(g.n, 3); /* ready, a, b */
	assert_string_equal(g.last, "b");
	sandbox_feed_events(&b, 1024, "", 0, true, on_event, &g); /* the last line lacks its newline */
	assert_int_equal(g.n, 4);
	assert_string_equal(g.last, "c");
	assert_int_equal(b.len, 0);
	buf_free(&b);
}

static void test_endless_line_dropped(void **state)
{
	(void)state;
	struct got g = {0};
	struct buf b = BUF_INIT(0);
	char big[3000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	/* a huge line, then two events in the same read: the events survive, the buffer stays small */
	_cleanup_free_ char *chunk = xasprintf("%s\n@pyti {\"event\":\"one\"}\n@pyti {\"event\":\"two\"}\n", big);
	feed(&b, 256, chunk, &g);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.last, "two");
	feed(&b, 256, big, &g);
	assert_true(b.len < 256);
	feed(&b, 256, "\n@pyti {\"event\":\"three\"}\n@pyti [1]\n@pyti {bad\n", &g);
	assert_int_equal(g.n, 3);
	assert_string_equal(g.last, "three");
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_lines),
		cmocka_unit_test(test_endless_line_dropped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

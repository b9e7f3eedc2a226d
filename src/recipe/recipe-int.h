/* recipe: internal header (what the recipe file parser in parse.c, the task ordering in order.c and
 * the loader in recipe.c share: the parse context and its error helper). */
#ifndef PYTI_RECIPE_INT_H
#define PYTI_RECIPE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "recipe.h"

#define RECIPE_MAX_LINE 65536       /* longest line we accept */
#define RECIPE_MAX_SIZE (1u << 20)  /* largest recipe file */
#define RECIPE_MAX_TASKS 256
#define RECIPE_MAX_LIST 1024        /* needs/requires/env entries per task */

enum line_kind { LK_BLANK, LK_SECTION, LK_KEY, LK_CONT };
enum sec_kind { SEC_NONE, SEC_RECIPE, SEC_TASK };

/* Keys, with the bit used to catch duplicates inside one section. */
enum {
	K_NAME = 1u << 0, K_DESCRIPTION = 1u << 1, K_REQUIRES = 1u << 2, K_RUN = 1u << 3,
	K_NEEDS = 1u << 4, K_CWD = 1u << 5, K_TIMEOUT = 1u << 6, K_NOOUT = 1u << 7,
	K_MEMORY = 1u << 8, K_PIDS = 1u << 9, K_OUTLIMIT = 1u << 10, K_ENV = 1u << 11,
	K_JUNIT = 1u << 12, K_TMPFS = 1u << 13, K_IOLIMIT = 1u << 14, K_TESTFROM = 1u << 15,
};

struct parse_ctx {
	const char *src;
	const char *data;
	size_t len, pos;
	int lineno;
	enum line_kind kind;
	bool have_prev_key; /* mirrors inih's prev_name: continuation lines are possible */

	enum sec_kind sec;
	char *sec_name; /* full "[...]" text, for messages */
	unsigned keys_seen;
	unsigned cur_key; /* key bit of the last key line, for continuations */

	struct recipe *r;
	size_t cap_tasks;
	int *needs_line; /* per task: line of its needs key */
	int recipe_line;

	struct pyti_err *err;
	bool failed;
};

/* Fail the parse with "SOURCE:LINE: message" (line 0: no line) in c->err, once; returns -1. */
int recipe_perr(struct parse_ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* inih's reader (fgets-like, one line per call, classifies it and opens sections) and its key
 * handler; both take the parse_ctx as their user pointer (parse.c). */
char *recipe_ini_reader(char *str, int num, void *stream);
int recipe_ini_handler(void *user, const char *section, const char *name, const char *value);

/* Every task has a run and known needs, default cwd; tasks reordered so that needs come first, or a
 * dependency cycle reported (order.c). 0 or -1 with c->failed set. */
int recipe_validate_and_order(struct parse_ctx *c);

#endif

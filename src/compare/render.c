/* compare: the reports of a comparison for people — Markdown to paste into an issue tracker and the
 * terminal table (docs/contracts.md "Compare"). Every string in them came from a sandbox or the store:
 * made one line and escaped here. */
#include <ctype.h>
#include <string.h>

#include "compare-int.h"

/* A Markdown code span of untrusted text: one line, no backticks, no table pipes. */
static void md_code(FILE *f, const char *s)
{
	fputc('`', f);
	for (size_t i = 0; s && s[i] && i < 300; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '`')
			fputc('\'', f);
		else if (c == '|')
			fputs("\\|", f);
		else if (c < 0x20 || c == 0x7f)
			fputc(' ', f);
		else
			fputc(c, f);
	}
	fputc('`', f);
}

static void md_ids(FILE *f, const json_t *ids, size_t max)
{
	size_t i;
	json_t *id;
	json_array_foreach(ids, i, id) {
		if (i == max) {
			fprintf(f, " … %zu more", json_array_size(ids) - max);
			break;
		}
		if (i)
			fputs(", ", f);
		md_code(f, json_string_value(id));
	}
}

void compare_markdown(FILE *f, const json_t *cmp)
{
	fputs("## pyti compare ", f);
	md_code(f, pj_str(cmp, "a", "?"));
	fputs(" → ", f);
	md_code(f, pj_str(cmp, "b", "?"));
	fprintf(f, "\n\n**%lld regression%s**", pj_int(cmp, "regressions", 0),
		pj_int(cmp, "regressions", 0) == 1 ? "" : "s");
	const json_t *sum = json_object_get(cmp, "summary");
	for (int v = 0; v < CMP_VERDICT_COUNT; v++) {
		long long n = pj_int(sum, compare_verdict_name((enum compare_verdict)v), 0);
		if (n)
			fprintf(f, " · %s %lld", compare_verdict_name((enum compare_verdict)v), n);
	}
	fputs("\n\n| verdict | distribution | A | B | tests |\n|---|---|---|---|---|\n", f);
	size_t i;
	json_t *p;
	for (int v = 0; v < CMP_VERDICT_COUNT; v++) {
		if (v == CMP_STILL_PASSING)
			continue; /* the report is about change; the summary counts them */
		json_array_foreach(json_object_get(cmp, "pairs"), i, p) {
			if (strcmp(pj_str(p, "verdict", ""), compare_verdict_name((enum compare_verdict)v)) != 0)
				continue;
			fprintf(f, "| %s | ", compare_verdict_name((enum compare_verdict)v));
			md_code(f, pj_str(p, "dist", "?"));
			fputs(" | ", f);
			if (pj_str(p, "a", NULL))
				fprintf(f, "%s (%s)", pj_str(p, "verdict_a", "pending"), pj_str(p, "a", ""));
			fputs(" | ", f);
			if (pj_str(p, "b", NULL))
				fprintf(f, "%s (%s)", pj_str(p, "verdict_b", "pending"), pj_str(p, "b", ""));
			if (pj_str(p, "class", NULL))
				fprintf(f, " %s", pj_str(p, "class", ""));
			if (pj_str(p, "dependency", NULL)) {
				fputs(" dependency ", f);
				md_code(f, pj_str(p, "dependency", ""));
			}
			fputs(" | ", f);
			const json_t *t = json_object_get(p, "tests");
			static const char *const keys[] = {"newly_failing", "newly_passing", "added", "removed"};
			bool any = false;
			for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
				const json_t *ids = json_object_get(t, keys[k]);
				if (!json_array_size(ids))
					continue;
				fprintf(f, "%s%s: ", any ? "; " : "", keys[k]);
				md_ids(f, ids, 10);
				any = true;
			}
			size_t j;
			json_t *fl;
			json_array_foreach(json_object_get(t, "flaky"), j, fl) {
				fprintf(f, "%sflaky (%s): ", any ? "; " : "", pj_str(fl, "side", "?"));
				md_code(f, pj_str(fl, "id", "?"));
				fprintf(f, " %.0f%% pass", 100 * pj_num(fl, "pass_rate", 0));
				any = true;
			}
			json_t *w;
			json_array_foreach(json_object_get(p, "wheels"), j, w) {
				fputs(j ? ", " : any ? "; wheels: " : "wheels: ", f);
				md_code(f, pj_str(w, "name", "?"));
				fprintf(f, " %s → %s", pj_str(w, "a", "-"), pj_str(w, "b", "-"));
				any = true;
			}
			fputs(" |\n", f);
		}
	}
	const json_t *groups = json_object_get(cmp, "groups");
	if (json_array_size(groups)) {
		fputs("\n### Failures by cause\n\n| distributions | cause | examples |\n|---|---|---|\n", f);
		json_t *g;
		json_array_foreach(groups, i, g) {
			fprintf(f, "| %lld | ", pj_int(g, "count", 0));
			md_code(f, pj_str(g, "signature", "?"));
			fputs(" | ", f);
			size_t k;
			json_t *x;
			json_array_foreach(json_object_get(g, "dists"), k, x) {
				if (k == 5) {
					fputs(" …", f);
					break;
				}
				if (k)
					fputs(", ", f);
				md_code(f, json_string_value(x));
			}
			fputs(" |\n", f);
		}
	}
	const json_t *slower = json_object_get(cmp, "slower");
	if (json_array_size(slower)) {
		fputs("\n### Slower\n\n| distribution | task | metric | A | B | ratio |\n|---|---|---|---|---|---|\n",
		      f);
		json_t *s;
		json_array_foreach(slower, i, s) {
			fputs("| ", f);
			md_code(f, pj_str(s, "dist", "?"));
			fputs(" | ", f);
			md_code(f, pj_str(s, "task", "?"));
			fprintf(f, " | %s | %.2f | %.2f | %.2f× |\n", pj_str(s, "metric", "?"), pj_num(s, "a", 0),
				pj_num(s, "b", 0), pj_num(s, "ratio", 0));
		}
	}
}

static void put_term(FILE *f, const char *s)
{
	_cleanup_free_ char *t = term_safe_dup(s ? s : "-", 0);
	fputs(t, f);
}

void compare_table(FILE *f, const json_t *cmp)
{
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(cmp, "pairs"), i, p) {
		fprintf(f, "%-18s ", pj_str(p, "verdict", "?"));
		put_term(f, pj_str(p, "dist", "?"));
		fputs("  ", f);
		put_term(f, pj_str(p, "verdict_a", pj_str(p, "a", NULL) ? "pending" : "-"));
		fputs(" → ", f);
		put_term(f, pj_str(p, "verdict_b", pj_str(p, "b", NULL) ? "pending" : "-"));
		if (pj_str(p, "class", NULL)) {
			fputs(" (", f);
			put_term(f, pj_str(p, "class", ""));
			fputs(")", f);
		}
		if (pj_str(p, "dependency", NULL)) {
			fputs(" dependency ", f);
			put_term(f, pj_str(p, "dependency", ""));
		}
		if (json_is_false(json_object_get(p, "confirmed")) && strcmp(pj_str(p, "verdict", ""), "flaky") != 0)
			fputs(" (not confirmed: a rerun did not finish normally)", f);
		fputc('\n', f);
		const json_t *t = json_object_get(p, "tests");
		static const char *const keys[] = {"newly_failing", "newly_passing", "added", "removed"};
		for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
			size_t j;
			json_t *id;
			json_array_foreach(json_object_get(t, keys[k]), j, id) {
				if (j == 20) {
					fprintf(f, "    %s: … %zu more\n", keys[k],
						json_array_size(json_object_get(t, keys[k])) - 20);
					break;
				}
				fprintf(f, "    %s: ", keys[k]);
				put_term(f, json_string_value(id));
				fputc('\n', f);
			}
		}
		size_t j;
		json_t *fl;
		json_array_foreach(json_object_get(t, "flaky"), j, fl) {
			fprintf(f, "    flaky (%s, %.0f%% of %lld runs pass): ", pj_str(fl, "side", "?"),
				100 * pj_num(fl, "pass_rate", 0), pj_int(fl, "runs", 0));
			put_term(f, pj_str(fl, "id", "?"));
			fputc('\n', f);
		}
		json_t *w;
		json_array_foreach(json_object_get(p, "wheels"), j, w) {
			fputs("    wheel: ", f);
			put_term(f, pj_str(w, "name", "?"));
			fputc(' ', f);
			put_term(f, pj_str(w, "a", "-"));
			fputs(" → ", f);
			put_term(f, pj_str(w, "b", "-"));
			fputc('\n', f);
		}
	}
	json_t *g;
	json_array_foreach(json_object_get(cmp, "groups"), i, g) {
		if (i == 0)
			fputs("\nfailures by cause:\n", f);
		fprintf(f, "  %3lld  ", pj_int(g, "count", 0));
		put_term(f, pj_str(g, "signature", "?"));
		fputc('\n', f);
	}
	json_t *s;
	json_array_foreach(json_object_get(cmp, "slower"), i, s) {
		if (i == 0)
			fputs("\nslower:\n", f);
		fputs("  ", f);
		put_term(f, pj_str(s, "dist", "?"));
		fputs(" ", f);
		put_term(f, pj_str(s, "task", "?"));
		fprintf(f, " %s %.2f → %.2f (%.2f×)\n", pj_str(s, "metric", "?"), pj_num(s, "a", 0), pj_num(s, "b", 0),
			pj_num(s, "ratio", 0));
	}
	const json_t *sum = json_object_get(cmp, "summary");
	fputs("\n", f);
	bool first = true;
	for (int v = 0; v < CMP_VERDICT_COUNT; v++) {
		long long n = pj_int(sum, compare_verdict_name((enum compare_verdict)v), 0);
		if (n) {
			fprintf(f, "%s%s %lld", first ? "" : ", ", compare_verdict_name((enum compare_verdict)v), n);
			first = false;
		}
	}
	fprintf(f, "%s%lld regression%s\n", first ? "" : "; ", pj_int(cmp, "regressions", 0),
		pj_int(cmp, "regressions", 0) == 1 ? "" : "s");
}

/* compare: internal header (signature.c's helpers that compare.c uses). */
#ifndef PYTI_COMPARE_INT_H
#define PYTI_COMPARE_INT_H

#include "compare.h"

#define CMP_SIG_MAX 200 /* bytes of a signature's message part */

/* PEP 503 name of s[0..n) (caller frees). */
char *cmp_normalise_name(const char *s, size_t n);
/* s[0..n) with digits masked, at most CMP_SIG_MAX bytes, onto b. */
void cmp_put_masked(struct buf *b, const char *s, size_t n);
/* The last line of s that starts with an exception ("Type: …"), or NULL (caller frees). */
char *cmp_last_exception_line(const char *s);
/* The normalised dependency a build failure's text names, if not own (caller frees), or NULL. */
char *cmp_dep_from_text(const char *s, const char *own);

/* The wheel set of pip's last "Successfully installed a-1 b-2" line in output: {name: version}, or NULL. */
json_t *cmp_installed(const char *output);

#endif

/* harness.h -- the C unit tests' harness: TAP output, checks that report
 * file:line and keep going, one exit code.
 *
 *   static void test_x(void) { CHECK(1 + 1 == 2); CHECK_EQ_INT(a, b); }
 *   int main(void) { RUN(test_x); return DONE(); }
 */
#ifndef WEFT_TEST_HARNESS_H
#define WEFT_TEST_HARNESS_H

#include <stdio.h>
#include <string.h>

static int harness_failed;   /* checks failed in the whole binary */
static int harness_tests;    /* tests run */
static int harness_test_failed; /* checks failed in the current test */

#define CHECK(cond) do { \
    if (!(cond)) { \
        harness_failed++; harness_test_failed++; \
        fprintf(stdout, "# %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    } } while (0)

#define CHECK_EQ_INT(a, b) do { \
    long long ha_ = (long long)(a), hb_ = (long long)(b); \
    if (ha_ != hb_) { \
        harness_failed++; harness_test_failed++; \
        fprintf(stdout, "# %s:%d: %s == %s: got %lld, expected %lld\n", \
                __FILE__, __LINE__, #a, #b, ha_, hb_); \
    } } while (0)

#define CHECK_EQ_STR(a, b) do { \
    const char *ha_ = (a), *hb_ = (b); \
    if (!ha_ || !hb_ || strcmp(ha_, hb_) != 0) { \
        harness_failed++; harness_test_failed++; \
        fprintf(stdout, "# %s:%d: %s == %s: got \"%s\", expected \"%s\"\n", \
                __FILE__, __LINE__, #a, #b, ha_ ? ha_ : "(null)", hb_ ? hb_ : "(null)"); \
    } } while (0)

#define RUN(fn) do { \
    harness_test_failed = 0; harness_tests++; \
    fn(); \
    fprintf(stdout, "%s %d - %s\n", harness_test_failed ? "not ok" : "ok", \
            harness_tests, #fn); \
    fflush(stdout); \
    } while (0)

#define DONE() (fprintf(stdout, "1..%d\n", harness_tests), harness_failed ? 1 : 0)

#endif

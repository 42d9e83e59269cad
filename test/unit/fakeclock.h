/* fakeclock.h -- a clock the test moves by hand. */
#ifndef WEFT_TEST_FAKECLOCK_H
#define WEFT_TEST_FAKECLOCK_H

#include "clock.h"

static double fake_now;
static double fake_clock_fn(void *ud) { (void)ud; return fake_now; }
static const struct weft_clock fake_clock = {fake_clock_fn, 0};

#endif

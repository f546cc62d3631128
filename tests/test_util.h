/* The helpers every C test suite shares: the cmocka prelude, one random number generator, a
   monotonic clock and float comparisons that report the max abs / rel error. Header-only (static
   functions), independent of molora.h. Include it first, before any system header: it asks for
   POSIX clock_gettime, which -std=c99 hides otherwise.

   Each suite keeps the random sequence its expected values and tolerances were tuned on: define
   TEST_RNG_SEED before the include (the default is test_core.c's seed) and draw with the mapping
   the suite has always used (rnd, rnd32 or the float product of rnd_vec_f). */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L   /* clock_gettime */
#endif

/* cmocka.h needs these four first; cmocka 1.1.5 has no assert_double_equal or assert_int_in_range */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <time.h>

/* ---- random numbers: xorshift64 (13, 7, 17), one state per suite ------------------------- */
#ifndef TEST_RNG_SEED
#define TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#endif
static uint64_t g_rng = TEST_RNG_SEED;

static inline uint64_t rng_next(void)
{
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return g_rng;
}
/* uniform in [-1, 1) from the top 53 bits */
static inline double rnd(void) { return (double)(rng_next() >> 11) / (double)(1ull << 52) - 1.0; }
/* the top 32 bits, and uniform in [-1, 1) from them (test_types.c's draw) */
static inline uint32_t rnd_u32(void) { return (uint32_t)(rng_next() >> 32); }
static inline double rnd32(void) { return (double)rnd_u32() / 2147483648.0 - 1.0; }

/* n floats rnd() * scale, the product rounded once to float; the caller frees them */
static inline float *rnd_vec(size_t n, double scale)
{
    float *v = (float *)malloc(n * sizeof *v);
    size_t i;
    for (i = 0; i < n; i++) v[i] = (float)(rnd() * scale);
    return v;
}
/* the same with rnd() rounded to float first and the product taken in float (test_threads.c) */
static inline float *rnd_vec_f(size_t n, float scale)
{
    float *v = (float *)malloc(n * sizeof *v);
    size_t i;
    for (i = 0; i < n; i++) v[i] = (float)rnd() * scale;
    return v;
}

/* ---- wall-clock time for cost measurements ------------------------------------------------ */
static inline double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* ---- float comparisons that report the max abs / rel error -------------------------------- */
/* An accumulator: err_add each value with the scale its relative error is taken against, then
   CHECK_ERR fails when the max relative error passes tol. Start from err e = {0, 0, 0}. */
typedef struct err { double abs, rel; long n; } err;
static inline void err_add(err *e, double got, double want, double scale)
{
    double a = fabs(got - want), r = a / (scale > 1e-30 ? scale : 1e-30);
    if (a > e->abs) e->abs = a;
    if (r > e->rel) e->rel = r;
    e->n++;
}
#define CHECK_ERR(e, tol, what)                                                                  \
    do {                                                                                         \
        if ((e).rel > (tol))                                                                     \
            fail_msg("%s: max abs err %.3g, max rel err %.3g over %ld values (tol %.1g)",         \
                     (what), (e).abs, (e).rel, (e).n, (double)(tol));                            \
    } while (0)

/* Element-wise |got[i] - want[i]| <= atol + rtol * |want[i]| (numpy.isclose; a NaN fails).
   On failure names the first index out of tolerance, both values and the max abs / rel errors
   over all n values. */
static inline void check_close(const char *name, const float *got, const double *want, size_t n,
                               double atol, double rtol)
{
    double max_abs = 0, max_rel = 0;
    size_t i, bad = n;
    for (i = 0; i < n; i++) {
        double a = fabs((double)got[i] - want[i]), r = a / (fabs(want[i]) > 1e-30 ? fabs(want[i]) : 1e-30);
        if (!(a <= atol + rtol * fabs(want[i])) && bad == n) bad = i;
        if (a > max_abs) max_abs = a;
        if (r > max_rel) max_rel = r;
    }
    if (bad < n)
        fail_msg("%s: [%zu] is %.9g, want %.9g (atol %.1g, rtol %.1g); max abs err %.3g, max rel err %.3g over %zu",
                 name, bad, (double)got[bad], want[bad], atol, rtol, max_abs, max_rel, n);
}

/* ---- allocation counter (TEST_COUNT_ALLOCS): the suite links with -Wl,--wrap=malloc,calloc,realloc,
   and g_allocs counts every allocation, so a test can check that a call allocates nothing ----- */
#ifdef TEST_COUNT_ALLOCS
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
static long g_allocs;
void *__wrap_malloc(size_t n) { g_allocs++; return __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { g_allocs++; return __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { g_allocs++; return __real_realloc(p, n); }
#endif

#endif /* TEST_UTIL_H */

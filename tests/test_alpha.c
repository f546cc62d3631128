/* AlphaLoRA tests: the ESD power-law fits and their boundaries, the eigenvalue solvers against
   a float64 SVD, float16 rounding, the expert allocation, the layer-name patterns and a model
   built from a plan.
   Built twice: against OpenBLAS and with MOLORA_NO_BLAS (the LAPACK parts must then say
   UNSUPPORTED). The library is compiled once in tests/molora_impl.c. Pinned values come from
   the float64 reference tools/alpha_ref.py and from the upstream functions run on the same
   spectra (values quoted in the comments). */
#define TEST_RNG_SEED 0x2545F4914F6CDD1Dull
#include "test_util.h"   /* cmocka, rnd */

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "molora.h"

/* ---- random numbers and matrices ----------------------------------------------------------- */
#ifndef MOLORA_NO_BLAS
static double gauss(void)
{
    double u = (rnd() + 1.0) / 2.0, v = (rnd() + 1.0) / 2.0;
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* x (n) <- x - 2 v (v.x) / (v.v) for every column (stride s) of a (n, count) block */
static void reflect(double *A, int n, int count, size_t row_stride, size_t col_stride, const double *v)
{
    int i, j;
    double vv = 0;
    for (i = 0; i < n; i++) vv += v[i] * v[i];
    for (j = 0; j < count; j++) {
        double d = 0;
        for (i = 0; i < n; i++) d += v[i] * A[i * row_stride + j * col_stride];
        d *= 2.0 / vv;
        for (i = 0; i < n; i++) A[i * row_stride + j * col_stride] -= d * v[i];
    }
}

/* W (rows, cols) float32 = U diag(sigma) V^T with U, V products of 4 random reflectors each. */
static float *with_singular_values(int rows, int cols, const double *sigma)
{
    int m = rows < cols ? rows : cols, k, i;
    double *A = calloc((size_t)rows * cols, sizeof *A), *v = malloc(sizeof(double) * (rows > cols ? rows : cols));
    float *W = malloc(sizeof(float) * (size_t)rows * cols);
    for (i = 0; i < m; i++) A[(size_t)i * cols + i] = sigma[i];
    for (k = 0; k < 4; k++) {
        for (i = 0; i < rows; i++) v[i] = gauss();
        reflect(A, rows, cols, (size_t)cols, 1, v);     /* from the left: columns of length rows */
        for (i = 0; i < cols; i++) v[i] = gauss();
        reflect(A, cols, rows, 1, (size_t)cols, v);     /* from the right: rows of length cols */
    }
    for (i = 0; i < rows * cols; i++) W[i] = (float)A[i];
    free(A); free(v);
    return W;
}

/* A weight-like matrix: Gaussian bulk + heavy-tailed (Student t, 3 dof) entries + a few
   low-rank spikes, scale 0.02 like an LLM projection. */
static float *realistic(int rows, int cols)
{
    float *W = malloc(sizeof(float) * (size_t)rows * cols);
    double u[4][512], v[4][512];
    int i, j, s;
    for (s = 0; s < 4; s++) {
        for (i = 0; i < rows; i++) u[s][i] = gauss();
        for (j = 0; j < cols; j++) v[s][j] = gauss();
    }
    for (i = 0; i < rows; i++)
        for (j = 0; j < cols; j++) {
            double g = gauss(), chi = (gauss() * gauss() + gauss() * gauss() + gauss() * gauss()) / 3.0;
            double t = gauss() / sqrt(fabs(chi) + 0.05), x = 0.02 * (0.8 * g + 0.2 * t);
            for (s = 0; s < 4; s++) x += 0.002 * (s + 1) * u[s][i] * v[s][j] / sqrt((double)cols);
            W[(size_t)i * cols + j] = (float)x;
        }
    return W;
}

#endif

static double rel(double got, double want) { return fabs(got - want) / fabs(want); }

/* Pareto quantiles: xmin (N / (N - j))^(1 / (a - 1)), ascending. */
static void pareto(double *lam, int N, double xmin, double a)
{
    int j;
    for (j = 0; j < N; j++) lam[j] = xmin * pow((double)N / (N - j), 1.0 / (a - 1.0));
}

/* ---- spectra: the fits ----------------------------------------------------------------------- */
static void test_powerlaw_recovered(void **s)
{
    static double lam[4000];
    const double as[] = {2.0, 2.5, 3.5, 5.0};
    int k, m;
    (void)s;
    for (k = 0; k < 4; k++)
        for (m = 0; m < 2; m++) {
            molora_alpha_args o;
            molora_alpha_fit f;
            memset(&o, 0, sizeof o);
            o.method = m ? MOLORA_ALPHA_WW : MOLORA_ALPHA_FIX_FINGER;
            pareto(lam, 4000, 0.37, as[k]);
            assert_int_equal(molora_alpha_fit_spectrum(lam, 4000, &o, &f), MOLORA_RESULT_SUCCESS);
            if (rel(f.alpha, as[k]) > 0.02)
                fail_msg("method %d: alpha %.5f for a power law of exponent %.2f", m, f.alpha, as[k]);
            assert_true(rel(f.xmin, 0.37) < 0.05);
            assert_int_equal(f.n_eigs, 4000);
            assert_int_equal(f.n_used, 4000);
            assert_true(f.n_tail > 3500);
            assert_true(f.ks > 0.0 && f.ks < 0.02);
            assert_int_equal(f.flags, 0);
        }
}

/* Power law from 5 (200 Pareto quantiles, exponent 2.5) + 20 eigenvalues at 1000. The ESD peak
   is the spike: xmin2 = 948.40, so a correct lower bound 0.95 xmin2 = 901 leaves only the spike
   (alpha = inf). Upstream's log10 bound (2.95) lets xmin = 5 in, and it wins. Upstream
   fix_finger (torch 1.13, float32 alphas) returns 1.9285808801651; the float64 reference
   1.9285808565860507. */
static void test_pinned_lo_quirk(void **s)
{
    double lam[220];
    molora_alpha_args o;
    molora_alpha_fit f;
    int j;
    (void)s;
    memset(&o, 0, sizeof o);
    pareto(lam, 200, 5.0, 2.5);
    for (j = 200; j < 220; j++) lam[j] = 1000.0;
    assert_int_equal(molora_alpha_fit_spectrum(lam, 220, &o, &f), MOLORA_RESULT_SUCCESS);
    if (rel(f.alpha, 1.9285808565860507) > 1e-12) fail_msg("alpha %.17g", f.alpha);
    assert_true(rel(f.alpha, 1.9285808801651) < 2e-7);   /* upstream, float32 */
    assert_true(f.xmin == 5.0);
    assert_int_equal(f.n_tail, 220);
    assert_true(rel(f.ks, 0.11311341644190065) < 1e-10);
    assert_int_equal(f.flags, 0);
#ifndef MOLORA_NO_BLAS
    {   /* the same spectrum as a (220, 300) matrix: W = [diag(sqrt(lam)) 0] */
        float *W = calloc(220 * 300, sizeof *W);
        molora_alpha_solver r;
        for (j = 0; j < 220; j++) W[j * 300 + j] = (float)sqrt(lam[j]);
        for (r = MOLORA_ALPHA_SOLVER_DEFAULT; r < MOLORA_ALPHA_SOLVER_COUNT; r = (molora_alpha_solver)(r + 1)) {
            o.solver = r;
            assert_int_equal(molora_alpha_matrix(W, 220, 300, &o, &f), MOLORA_RESULT_SUCCESS);
            if (rel(f.alpha, 1.9285808565860507) > 1e-5) fail_msg("solver %d: alpha %.17g", (int)r, f.alpha);
            assert_int_equal(f.n_eigs, 220);
        }
        free(W);
    }
#endif
}

static void test_equal_tail_flag(void **s)
{
    double lam[10];
    molora_alpha_args o;
    molora_alpha_fit f;
    int j, m;
    (void)s;
    for (m = 0; m < 2; m++) {   /* upstream fix_finger gives inf here too */
        memset(&o, 0, sizeof o);
        o.method = m ? MOLORA_ALPHA_WW : MOLORA_ALPHA_FIX_FINGER;
        for (j = 0; j < 10; j++) lam[j] = 4.0;
        assert_int_equal(molora_alpha_fit_spectrum(lam, 10, &o, &f), MOLORA_RESULT_SUCCESS);
        assert_true(isinf(f.alpha) && f.alpha > 0);
        assert_true(f.flags & MOLORA_ALPHA_FLAG_EQUAL_TAIL);
        assert_true(fabs(f.ks - 0.5) < 1e-15);   /* (n - 1) / n at the last candidate, n = 2 */
        assert_int_equal(f.n_tail, 2);
    }
}

/* 3 decades below an ESD peak 18 decades up: the log10 lower bound (17.8) skips them and the
   peak is above 1.5 xmin2; upstream returns 0. */
static void test_no_candidate(void **s)
{
    double lam[8] = {1, 2, 5, 1e18, 1e18, 1e18, 1e18, 1e18};
    molora_alpha_fit f;
    (void)s;
    assert_int_equal(molora_alpha_fit_spectrum(lam, 8, NULL, &f), MOLORA_RESULT_SUCCESS);
    assert_true(f.alpha == 0.0);
    assert_true(f.flags & MOLORA_ALPHA_FLAG_NO_CANDIDATE);
    assert_true(f.ks == 1.0);
}

static void test_spectrum_threshold_and_order(void **s)
{
    double lam[60], copy[60];
    molora_alpha_args o;
    molora_alpha_fit f, g;
    int j;
    (void)s;
    memset(&o, 0, sizeof o);
    pareto(lam, 50, 0.5, 3.0);
    for (j = 50; j < 55; j++) lam[j] = 1e-6;   /* below WeightWatcher's 1e-5 */
    for (j = 55; j < 60; j++) lam[j] = 0.0;
    for (j = 0; j < 60; j++) copy[j] = lam[59 - j];   /* reversed order: sorted in place */
    o.method = MOLORA_ALPHA_WW;
    assert_int_equal(molora_alpha_fit_spectrum(copy, 60, &o, &f), MOLORA_RESULT_SUCCESS);
    assert_int_equal(f.n_eigs, 60);
    assert_int_equal(f.n_used, 50);
    for (j = 1; j < 60; j++) assert_true(copy[j - 1] <= copy[j]);
    assert_int_equal(molora_alpha_fit_spectrum(lam, 50, &o, &g), MOLORA_RESULT_SUCCESS);
    assert_true(f.alpha == g.alpha && f.xmin == g.xmin && f.ks == g.ks);
    /* fix_finger keeps every eigenvalue by default (filter_zeros=False): a zero is an error */
    o.method = MOLORA_ALPHA_FIX_FINGER;
    assert_int_equal(molora_alpha_fit_spectrum(copy, 60, &o, &f), MOLORA_RESULT_DEGENERATE_SPECTRUM);
    o.evals_thresh = 1e-4;   /* upstream filter_zeros=True */
    assert_int_equal(molora_alpha_fit_spectrum(copy, 60, &o, &f), MOLORA_RESULT_SUCCESS);
    assert_int_equal(f.n_used, 50);
    /* WW with filtering off sees the zeros */
    o.method = MOLORA_ALPHA_WW;
    o.evals_thresh = -1.0;
    assert_int_equal(molora_alpha_fit_spectrum(copy, 60, &o, &f), MOLORA_RESULT_DEGENERATE_SPECTRUM);
    /* too few, non-finite, bad options */
    o.evals_thresh = 0;
    assert_int_equal(molora_alpha_fit_spectrum(lam, 1, &o, &f), MOLORA_RESULT_DEGENERATE_SPECTRUM);
    copy[3] = NAN;
    assert_int_equal(molora_alpha_fit_spectrum(copy, 60, &o, &f), MOLORA_RESULT_NON_FINITE);
    o.method = (molora_alpha_method)7;
    assert_int_equal(molora_alpha_fit_spectrum(lam, 50, &o, &f), MOLORA_RESULT_INVALID_ARGUMENT);
    o.method = MOLORA_ALPHA_FIX_FINGER;
    o.bins = -1;
    assert_int_equal(molora_alpha_fit_spectrum(lam, 50, &o, &f), MOLORA_RESULT_INVALID_VALUE);
    o.bins = 0;
    assert_int_equal(molora_alpha_fit_spectrum(lam, 50, &o, NULL), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_alpha_fit_spectrum(NULL, 50, &o, &f), MOLORA_RESULT_INVALID_ARGUMENT);
}

/* ---- thresholds and windows at their boundary values ----------------------------------------- */
static molora_alpha_args opts(molora_alpha_method m, double thresh, int bins)
{
    molora_alpha_args o;
    memset(&o, 0, sizeof o);
    o.method = m; o.evals_thresh = thresh; o.bins = bins;
    return o;
}

/* WeightWatcher keeps eigenvalues > 1e-5 (evals[evals > thresh]); AlphaLoRA's filter_zeros keeps
   > 1e-4 (eigs[eigs > EVALS_THRESH]): both strict, so the value itself is dropped. */
static void test_evals_thresh_boundaries(void **s)
{
    const double below = nextafter(1e-5, 0.0), above = nextafter(1e-5, 1.0);
    double lam[44], c[44];
    molora_alpha_args ww = opts(MOLORA_ALPHA_WW, 0, 0), ww7 = opts(MOLORA_ALPHA_WW_077, 0, 0);
    molora_alpha_args ff = opts(MOLORA_ALPHA_FIX_FINGER, 1e-4, 0);
    molora_alpha_fit f;
    (void)s;
    pareto(lam, 40, 0.5, 3.0);
    lam[40] = below; lam[41] = 1e-5; lam[42] = above; lam[43] = 5e-5;   /* 5e-5: in (1e-5, 1e-4) */
    memcpy(c, lam, sizeof c);
    assert_int_equal(molora_alpha_fit_spectrum(c, 44, &ww, &f), MOLORA_RESULT_SUCCESS);
    assert_int_equal(f.n_used, 42);                         /* 1e-5 itself and below dropped */
    assert_true(f.lambda_min == below);
    memcpy(c, lam, sizeof c);
    assert_int_equal(molora_alpha_fit_spectrum(c, 44, &ww7, &f), MOLORA_RESULT_SUCCESS);
    assert_int_equal(f.n_used, 42);
    memcpy(c, lam, sizeof c);
    assert_int_equal(molora_alpha_fit_spectrum(c, 44, &ff, &f), MOLORA_RESULT_SUCCESS);
    assert_int_equal(f.n_used, 40);                         /* upstream's 1e-4 drops 5e-5 too */
    lam[43] = 1e-4; lam[42] = nextafter(1e-4, 1.0);
    memcpy(c, lam, sizeof c);
    assert_int_equal(molora_alpha_fit_spectrum(c, 44, &ff, &f), MOLORA_RESULT_SUCCESS);
    assert_int_equal(f.n_used, 41);                         /* 1e-4 dropped, its successor kept */
}

/* fix_finger's window [lo, hi] with bins = 2 and the peak in the upper bin: edge = hmax - step,
   xmin2 = 10^edge, lo = log10(0.95 xmin2) (upstream's unit slip), hi = 1.5 xmin2. Upstream skips
   lam < lo (`continue`) and stops at lam > hi (`break`): both bounds are inside the window. The
   spectra hold exactly one value that can be a candidate, so moving it by one ulp past the bound
   leaves no candidate (NO_CANDIDATE, alpha 0). */
static void ff_window(double *lam, double *lo, double *hi)
{
    double hmin = log10(lam[0]), hmax = log10(lam[5]), step = (hmax - hmin) / 2, x2 = pow(10.0, hmax - step * 1);
    *lo = log10(0.95 * x2); *hi = 1.5 * x2;
}

static void test_fix_finger_window_edges(void **s)
{
    double lam[6] = {1e-3, 0, 20, 30, 50, 1e5}, c[6], lo, hi;
    molora_alpha_args o = opts(MOLORA_ALPHA_FIX_FINGER, 0, 2);
    molora_alpha_fit f;
    (void)s;
    ff_window(lam, &lo, &hi);
    assert_true(lo > 0.97 && lo < 0.98 && hi > 14.9 && hi < 15.1);
    lam[1] = lo;                                             /* lam == lo: a candidate */
    memcpy(c, lam, sizeof c);
    assert_int_equal(molora_alpha_fit_spectrum(c, 6, &o, &f), MOLORA_RESULT_SUCCESS);
    assert_int_equal(f.flags & MOLORA_ALPHA_FLAG_NO_CANDIDATE, 0);
    assert_true(f.xmin == lo && f.n_tail == 5 && f.alpha > 1.0);
    lam[1] = nextafter(lo, 0.0);                             /* one ulp below: skipped */
    memcpy(c, lam, sizeof c);
    assert_int_equal(molora_alpha_fit_spectrum(c, 6, &o, &f), MOLORA_RESULT_SUCCESS);
    assert_true((f.flags & MOLORA_ALPHA_FLAG_NO_CANDIDATE) && f.alpha == 0.0);
    {
        double m[6] = {1e-3, 0.5, 0, 20, 30, 1e5};           /* 0.5 < lo: skipped; m[2] at hi */
        ff_window(m, &lo, &hi);
        m[2] = hi;
        memcpy(c, m, sizeof c);
        assert_int_equal(molora_alpha_fit_spectrum(c, 6, &o, &f), MOLORA_RESULT_SUCCESS);
        assert_int_equal(f.flags & MOLORA_ALPHA_FLAG_NO_CANDIDATE, 0);
        assert_true(f.xmin == hi && f.n_tail == 4);
        m[2] = nextafter(hi, 1e300);                         /* one ulp above: break */
        memcpy(c, m, sizeof c);
        assert_int_equal(molora_alpha_fit_spectrum(c, 6, &o, &f), MOLORA_RESULT_SUCCESS);
        assert_true((f.flags & MOLORA_ALPHA_FLAG_NO_CANDIDATE) && f.alpha == 0.0);
    }
}

/* ww077 switches to the small-N fit below 20 eigenvalues left after the threshold: at 20 it is
   WW exactly, at 19 (one value pushed under 1e-5) the small-N estimator. */
static void test_ww077_small_n_switch(void **s)
{
    double lam[20], a[20], b[20];
    molora_alpha_args ww = opts(MOLORA_ALPHA_WW, 0, 0), ww7 = opts(MOLORA_ALPHA_WW_077, 0, 0);
    molora_alpha_fit f, g;
    (void)s;
    pareto(lam, 20, 0.1, 2.5);
    lam[19] *= 3.0;                                          /* a spike: the tails differ */
    memcpy(a, lam, sizeof a); memcpy(b, lam, sizeof b);
    assert_int_equal(molora_alpha_fit_spectrum(a, 20, &ww, &f), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_alpha_fit_spectrum(b, 20, &ww7, &g), MOLORA_RESULT_SUCCESS);
    assert_int_equal(g.n_used, 20);
    assert_int_equal(g.flags & MOLORA_ALPHA_FLAG_SMALL_N, 0);
    assert_true(f.alpha == g.alpha && f.xmin == g.xmin && f.ks == g.ks);
    lam[0] = 1e-5;                                           /* dropped: 19 left */
    memcpy(a, lam, sizeof a); memcpy(b, lam, sizeof b);
    assert_int_equal(molora_alpha_fit_spectrum(a, 20, &ww, &f), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_alpha_fit_spectrum(b, 20, &ww7, &g), MOLORA_RESULT_SUCCESS);
    assert_int_equal(g.n_used, 19);
    assert_true(g.flags & MOLORA_ALPHA_FLAG_SMALL_N);
    assert_true(g.n_tail >= 8);                              /* k_min: tails of 8 or more */
    {   /* the small-N alpha of the chosen tail, recomputed: 1 + (n - 1) / sum ln(lam / xmin) */
        double S = 0;
        int j, n = g.n_tail;
        for (j = 20 - n; j < 20; j++) S += log(b[j] / g.xmin);
        assert_true(rel(g.alpha, 1.0 + (n - 1.0) / S) < 1e-13);
        assert_true(rel(g.alpha, 1.0 + n / S) > 1e-3);       /* not WW's n / S */
    }
}

/* min_evals = 8 counts every eigenvalue (WeightWatcher's M = min(rows, cols)), before the
   threshold; with fewer than 8 left after it no tail qualifies and the whole spectrum is fitted. */
static void test_ww077_min_evals(void **s)
{
    double lam[8], c[8], S = 0;
    molora_alpha_args ww7 = opts(MOLORA_ALPHA_WW_077, 0, 0);
    molora_alpha_fit f;
    int j;
    (void)s;
    pareto(lam, 8, 0.2, 3.0);
    memcpy(c, lam, sizeof c);
    assert_int_equal(molora_alpha_fit_spectrum(c, 7, &ww7, &f), MOLORA_RESULT_DEGENERATE_SPECTRUM);
    memcpy(c, lam, sizeof c);
    assert_int_equal(molora_alpha_fit_spectrum(c, 8, &ww7, &f), MOLORA_RESULT_SUCCESS);
    for (j = 0; j < 8; j++) S += log(lam[j] / lam[0]);
    assert_true(f.n_tail == 8 && f.xmin == lam[0]);          /* the only tail of 8 */
    assert_true(rel(f.alpha, 1.0 + 7.0 / S) < 1e-13);
    lam[0] = 1e-6; lam[1] = 2e-6;                            /* 6 left: the whole-spectrum fallback */
    memcpy(c, lam, sizeof c);
    assert_int_equal(molora_alpha_fit_spectrum(c, 8, &ww7, &f), MOLORA_RESULT_SUCCESS);
    for (S = 0, j = 2; j < 8; j++) S += log(lam[j] / lam[2]);
    assert_true(f.n_used == 6 && f.n_tail == 6 && rel(f.alpha, 1.0 + 5.0 / S) < 1e-13);
    for (j = 0; j < 8; j++) c[j] = 0.5;                      /* all equal: every tail degenerate */
    assert_int_equal(molora_alpha_fit_spectrum(c, 8, &ww7, &f), MOLORA_RESULT_SUCCESS);
    assert_true(f.alpha == 0.0 && f.ks == 1.0 && (f.flags & MOLORA_ALPHA_FLAG_NO_CANDIDATE));
    c[0] = 1e-5; c[1] = 0.5;                                 /* one left: no fit */
    assert_int_equal(molora_alpha_fit_spectrum(c, 2, &ww7, &f), MOLORA_RESULT_DEGENERATE_SPECTRUM);
}

#include "fixtures/alpha_ww077_expected.h"

/* WeightWatcher 0.7.7's own numbers (tests/fixtures/make_alpha_ww077.py): its float64
   eigenvalues through the fit, and the matrices through molora's eigenvalues. */
static void test_ww077_against_weightwatcher(void **s)
{
    molora_alpha_args o = opts(MOLORA_ALPHA_WW_077, 0, 0);
    size_t k;
    (void)s;
    for (k = 0; k < sizeof ww077_cases / sizeof ww077_cases[0]; k++) {
        const ww077_case *c = &ww077_cases[k];
        int m = c->rows < c->cols ? c->rows : c->cols;
        double *ev = malloc(sizeof(double) * (size_t)m);
        molora_alpha_fit f;
        memcpy(ev, c->evals, sizeof(double) * (size_t)m);
        assert_int_equal(molora_alpha_fit_spectrum(ev, m, &o, &f), MOLORA_RESULT_SUCCESS);
        assert_true(rel(f.alpha, c->alpha) < 1e-13 && rel(f.xmin, c->xmin) < 1e-13 && fabs(f.ks - c->D) < 1e-13);
        assert_int_equal(!!(f.flags & MOLORA_ALPHA_FLAG_SMALL_N), f.n_used < 20);
#ifndef MOLORA_NO_BLAS
        assert_int_equal(molora_alpha_matrix(c->W, c->rows, c->cols, &o, &f), MOLORA_RESULT_SUCCESS);
        assert_true(rel(f.alpha, c->alpha) < 1e-12 && rel(f.xmin, c->xmin) < 1e-12);
#endif
        free(ev);
    }
#ifndef MOLORA_NO_BLAS
    {   /* a trained matrix: the demo model's layer-0 down_proj */
        molora_safetensors *st = NULL;
        molora_tensor_info ti;
        molora_alpha_fit f;
        const float *W;
        size_t i;
        assert_int_equal(molora_safetensors_open("examples/demo_model/base.safetensors", NULL, &st),
                         MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_safetensors_find(st, "model.layers.0.mlp.down_proj.weight", &i), MOLORA_RESULT_SUCCESS);
        molora_safetensors_tensor_info(st, i, &ti);
        assert_int_equal(molora_safetensors_tensor_f32(st, i, &W), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_alpha_matrix(W, (int)ti.shape[0], (int)ti.shape[1], &o, &f), MOLORA_RESULT_SUCCESS);
        assert_true(rel(f.alpha, ww077_demo_alpha) < 1e-12 && rel(f.xmin, ww077_demo_xmin) < 1e-12);
        assert_true(fabs(f.ks - ww077_demo_D) < 1e-12);
        molora_safetensors_free(st);
    }
#endif
}

/* ---- layer patterns and families ------------------------------------------------------------ */
static void test_layer_index(void **s)
{
    static const struct { const char *name, *pattern; int want; } t[] = {
        { "transformer.h.3.mlp.c_fc.weight", "h.{L}.", 3 },
        { "h.11.attn.c_attn.weight", "h.{L}.", 11 },
        { "transformer.ch.3.mlp.weight", "h.{L}.", -1 },          /* not after a '.' */
        { "transformer.h.3x.mlp", "h.{L}.", -1 },                 /* digits must end at P2 */
        { "transformer.h.03.mlp", "h.{L}.", 3 },
        { "transformer.h..mlp", "h.{L}.", -1 },                   /* at least one digit */
        { "bert.encoder.layer.5.attention.self.query.weight", "encoder.layer.{L}.", 5 },
        { "encoder.layer.5.output.dense.weight", "encoder.layer.{L}.", 5 },
        { "encoder.block.2.layer.0.SelfAttention.q.weight", "encoder.block.{L}.", 2 },
        { "decoder.block.2.layer.0.SelfAttention.q.weight", "encoder.block.{L}.", -1 },
        { "model.layers.31.mlp.up_proj.weight", "layers.{L}.", 31 },
        { "model.sublayers.3.x", "layers.{L}.", -1 },
        { "a.layers.x.layers.7.q", "layers.{L}.", 7 },            /* the first match wins */
        { "layers.1.layers.2.q", "layers.{L}.", 1 },
        { "aab.aab.aaab.4.x", "aab.{L}.", -1 },
        { "x.aaab.4.x", "aab.{L}.", -1 },                          /* KMP restart inside P1 */
        { "x.aab.aab.4.x", "aab.{L}.", 4 },
        { "x.h.1.h.1.h.2.end", "h.{L}.h.2.end", 1 },               /* P2 overlapping the next match */
        { "h.12.h.12.h.12.z", "h.{L}.h.12.z", 12 },
        { "block.999999.x", "block.{L}.", 999999 },
        { "block.1000000.x", "block.{L}.", -1 },                   /* index out of range */
        { "7.w", "{L}.w", 7 },                                     /* empty P1 */
        { "x.8", "x.{L}", 8 },                                     /* empty P2 */
        { "h.1.x", "h.x.", -1 },                                   /* no {L}: invalid */
        { "h.1.x", "h.{L}.{L}", -1 },                              /* two {L}: invalid */
    };
    char longp[MOLORA_ALPHA_PATTERN_MAX + 2];
    size_t i;
    (void)s;
    for (i = 0; i < sizeof t / sizeof t[0]; i++)
        if (molora_alpha_block_index(t[i].name, t[i].pattern) != t[i].want)
            fail_msg("%s ~ %s: got %d, want %d", t[i].name, t[i].pattern,
                     molora_alpha_block_index(t[i].name, t[i].pattern), t[i].want);
    assert_int_equal(molora_alpha_pattern_check("h.x."), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_alpha_pattern_check(NULL), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_alpha_pattern_check("{L}"), MOLORA_RESULT_SUCCESS);
    memset(longp, 'a', sizeof longp); memcpy(longp, "{L}", 3);
    longp[MOLORA_ALPHA_PATTERN_MAX] = 0;                          /* exactly the maximum */
    assert_int_equal(molora_alpha_pattern_check(longp), MOLORA_RESULT_SUCCESS);
    longp[MOLORA_ALPHA_PATTERN_MAX] = 'a'; longp[MOLORA_ALPHA_PATTERN_MAX + 1] = 0;
    assert_int_equal(molora_alpha_pattern_check(longp), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_alpha_block_index(NULL, "h.{L}."), -1);
}

static void test_family_detect(void **s)
{
    static const char *t5[] = { "shared.weight", "encoder.block.0.layer.0.SelfAttention.q.weight",
                                "decoder.block.0.layer.1.EncDecAttention.k.weight", "encoder.final_layer_norm.weight" };
    static const char *bert[] = { "bert.embeddings.word_embeddings.weight",
                                  "bert.encoder.layer.0.attention.self.query.weight",
                                  "bert.encoder.layer.1.output.dense.weight" };
    static const char *gpt2[] = { "transformer.wte.weight", "transformer.h.0.attn.c_attn.weight",
                                  "transformer.h.1.mlp.c_proj.weight" };
    static const char *llama[] = { "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                                   "lm_head.weight" };
    static const char *bart[] = { "model.encoder.layers.0.self_attn.q_proj.weight", "model.decoder.layers.0.fc1.weight",
                                  "model.decoder.layers.1.fc1.weight" };
    static const char *opt[] = { "model.decoder.layers.0.self_attn.q_proj.weight",
                                 "model.decoder.layers.1.fc1.weight" };
    static const char *none[] = { "w1", "w2" };
    int n, f;
    const molora_alpha_family *t = molora_alpha_families(&n);
    (void)s;
    assert_int_equal(n, 5);
    f = molora_alpha_family_detect(t5, 4);   assert_true(f >= 0 && !strcmp(t[f].name, "t5") && t[f].sets[1]);
    f = molora_alpha_family_detect(bert, 3); assert_true(f >= 0 && !strcmp(t[f].name, "bert") && !t[f].sets[1]);
    f = molora_alpha_family_detect(gpt2, 3); assert_true(f >= 0 && !strcmp(t[f].name, "gpt2"));
    f = molora_alpha_family_detect(llama, 3); assert_true(f >= 0 && !strcmp(t[f].name, "llama"));
    /* not llama: a tie, 2 sets */
    f = molora_alpha_family_detect(bart, 3); assert_true(f >= 0 && !strcmp(t[f].name, "bart"));
    f = molora_alpha_family_detect(opt, 2); assert_true(f >= 0 && !strcmp(t[f].name, "llama"));   /* no encoder stack */
    assert_int_equal(molora_alpha_family_detect(t5 + 2, 2), -1);                            /* T5 without its encoder */
    assert_int_equal(molora_alpha_family_detect(none, 2), -1);
    assert_int_equal(molora_alpha_family_detect(NULL, 2), -1);
}

/* ---- matrices: solvers against the float64 SVD ---------------------------------------------- */
#ifndef MOLORA_NO_BLAS
static double *evals_of(const float *W, int rows, int cols, molora_alpha_solver solver)
{
    molora_alpha_args o;
    int m = rows < cols ? rows : cols;
    double *e = malloc(sizeof(double) * (size_t)m);
    memset(&o, 0, sizeof o);
    o.solver = solver;
    assert_int_equal(molora_alpha_eigenvalues(W, rows, cols, &o, e), MOLORA_RESULT_SUCCESS);
    return e;
}

static void test_routes_realistic_nonsquare(void **s)
{
    const int shapes[][2] = {{96, 160}, {200, 120}, {128, 128}, {33, 257}};
    int k, r, m, j;
    (void)s;
    for (k = 0; k < 4; k++) {
        int rows = shapes[k][0], cols = shapes[k][1], n = rows < cols ? rows : cols;
        float *W = realistic(rows, cols);
        double *ref = evals_of(W, rows, cols, MOLORA_ALPHA_SOLVER_DGESDD);
        for (j = 1; j < n; j++) assert_true(ref[j - 1] <= ref[j]);
        for (m = 0; m < 2; m++) {
            molora_alpha_args o;
            molora_alpha_fit want, got;
            memset(&o, 0, sizeof o);
            o.method = m ? MOLORA_ALPHA_WW : MOLORA_ALPHA_FIX_FINGER;
            o.solver = MOLORA_ALPHA_SOLVER_DGESDD;
            assert_int_equal(molora_alpha_matrix(W, rows, cols, &o, &want), MOLORA_RESULT_SUCCESS);
            assert_int_equal(want.n_eigs, n);
            for (r = MOLORA_ALPHA_SOLVER_DEFAULT; r < MOLORA_ALPHA_SOLVER_COUNT; r++) {
                double *e = evals_of(W, rows, cols, (molora_alpha_solver)r), emax = 0;
                for (j = 0; j < n; j++) emax = fmax(emax, rel(e[j], ref[j]));
                o.solver = (molora_alpha_solver)r;
                assert_int_equal(molora_alpha_matrix(W, rows, cols, &o, &got), MOLORA_RESULT_SUCCESS);
                if (r != MOLORA_ALPHA_SOLVER_FAST) {   /* the fast solver is approximate by design */
                    if (rel(got.alpha, want.alpha) > 1e-4)
                        fail_msg("(%d, %d) method %d solver %d: alpha %.9g, float64 %.9g", rows, cols, m, r, got.alpha,
                                 want.alpha);
                    if (emax > (r == MOLORA_ALPHA_SOLVER_SGESDD ? 1e-4 : 1e-9))
                        fail_msg("(%d, %d) solver %d: eigenvalues max rel err %.3g", rows, cols, r, emax);
                }
                free(e);
            }
        }
        free(ref); free(W);
    }
}

/* sigma from 1 down to 1e-5: a float32 Gram matrix (eigenvalue error ~1e-7 lambda_max) loses
   every eigenvalue below ~1e-7 and can return values <= 0; the double Gram keeps them. */
static void test_ill_conditioned(void **s)
{
    const int rows = 160, cols = 96;
    double sigma[96], *ref, *fast, *def, emax = 0, fmax_err = 0;
    molora_alpha_args o;
    molora_alpha_fit want, got;
    float *W;
    int j, r;
    (void)s;
    for (j = 0; j < 96; j++) sigma[j] = pow(10.0, -5.0 * j / 95.0);
    W = with_singular_values(rows, cols, sigma);
    ref = evals_of(W, rows, cols, MOLORA_ALPHA_SOLVER_DGESDD);
    def = evals_of(W, rows, cols, MOLORA_ALPHA_SOLVER_DEFAULT);
    fast = evals_of(W, rows, cols, MOLORA_ALPHA_SOLVER_FAST);
    assert_true(rel(ref[0], 1e-10) < 1e-2);    /* the float32 W still has sigma_min ~ 1e-5 */
    for (j = 0; j < 96; j++) {
        emax = fmax(emax, rel(def[j], ref[j]));
        fmax_err = fmax(fmax_err, rel(fast[j], ref[j]));
    }
    if (emax > 1e-5) fail_msg("double Gram: eigenvalue max rel err %.3g", emax);
    if (!(fmax_err > 0.5)) fail_msg("float32 Gram unexpectedly accurate: max rel err %.3g", fmax_err);
    memset(&o, 0, sizeof o);
    o.solver = MOLORA_ALPHA_SOLVER_DGESDD;
    assert_int_equal(molora_alpha_matrix(W, rows, cols, &o, &want), MOLORA_RESULT_SUCCESS);
    for (r = MOLORA_ALPHA_SOLVER_DEFAULT; r <= MOLORA_ALPHA_SOLVER_GRAM64_2STAGE; r++) {
        o.solver = (molora_alpha_solver)r;
        assert_int_equal(molora_alpha_matrix(W, rows, cols, &o, &got), MOLORA_RESULT_SUCCESS);
        if (rel(got.alpha, want.alpha) > 1e-6)
            fail_msg("solver %d: alpha %.9g, float64 %.9g", r, got.alpha, want.alpha);
    }
    /* the fast solver: an error (eigenvalue <= 0) or a different histogram range */
    o.solver = MOLORA_ALPHA_SOLVER_FAST;
    {
        molora_result res = molora_alpha_matrix(W, rows, cols, &o, &got);
        assert_true(res == MOLORA_RESULT_DEGENERATE_SPECTRUM ||
                    (res == MOLORA_RESULT_SUCCESS && rel(got.lambda_min, want.lambda_min) > 0.5));
    }
    free(ref); free(def); free(fast); free(W);
}

static void test_known_singular_values(void **s)
{
    double sigma[120], lam[120];
    molora_alpha_args o;
    molora_alpha_fit f, g;
    float *W;
    int j;
    (void)s;
    pareto(lam, 120, 0.8, 3.0);   /* eigenvalues with exponent 3 */
    for (j = 0; j < 120; j++) sigma[j] = sqrt(lam[119 - j]);
    W = with_singular_values(120, 300, sigma);
    memset(&o, 0, sizeof o);
    o.method = MOLORA_ALPHA_WW;
    assert_int_equal(molora_alpha_matrix(W, 120, 300, &o, &f), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_alpha_fit_spectrum(lam, 120, &o, &g), MOLORA_RESULT_SUCCESS);
    if (rel(f.alpha, g.alpha) > 1e-4) fail_msg("alpha %.9g, from the exact spectrum %.9g", f.alpha, g.alpha);
    assert_true(rel(f.alpha, 3.0) < 0.1);
    free(W);
}

static void test_matrix_errors(void **s)
{
    float W[12 * 20];
    double e[12];
    molora_alpha_args o;
    molora_alpha_fit f;
    size_t need;
    int m;
    (void)s;
    memset(&o, 0, sizeof o);
    memset(W, 0, sizeof W);
    for (m = 0; m < 2; m++) {
        o.method = m ? MOLORA_ALPHA_WW : MOLORA_ALPHA_FIX_FINGER;
        assert_int_equal(molora_alpha_matrix(W, 12, 20, &o, &f), MOLORA_RESULT_DEGENERATE_SPECTRUM);
    }
    W[5] = NAN;
    assert_int_equal(molora_alpha_matrix(W, 12, 20, &o, &f), MOLORA_RESULT_NON_FINITE);
    assert_int_equal(molora_alpha_eigenvalues(W, 12, 20, &o, e), MOLORA_RESULT_NON_FINITE);
    W[5] = INFINITY;
    assert_int_equal(molora_alpha_matrix(W, 12, 20, &o, &f), MOLORA_RESULT_NON_FINITE);
    W[5] = 1.0f;
    assert_int_equal(molora_alpha_matrix(W, 0, 20, &o, &f), MOLORA_RESULT_INVALID_SHAPE);
    assert_int_equal(molora_alpha_matrix(NULL, 12, 20, &o, &f), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_alpha_matrix(W, 12, 20, &o, NULL), MOLORA_RESULT_INVALID_ARGUMENT);
    o.solver = (molora_alpha_solver)99;
    assert_int_equal(molora_alpha_matrix(W, 12, 20, &o, &f), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_alpha_workspace_size(12, 20, &o, &need), MOLORA_RESULT_INVALID_ARGUMENT);
}

/* ---- scratch: hook, workspace, out of memory ----------------------------------------------- */
typedef struct hook { long allocs, frees, fail_after; } hook;
static void *hook_alloc(size_t n, void *u)
{
    hook *h = (hook *)u;
    if (h->fail_after >= 0 && h->allocs >= h->fail_after) return NULL;
    h->allocs++;
    return malloc(n);
}
static void hook_free(void *p, void *u) { ((hook *)u)->frees++; free(p); }

static void test_scratch(void **s)
{
    float *W = realistic(64, 100);
    molora_alpha_args o;
    molora_alpha_fit f, g;
    hook h = {0, 0, -1};
    size_t need;
    void *ws;
    int r;
    (void)s;
    for (r = MOLORA_ALPHA_SOLVER_DEFAULT; r < MOLORA_ALPHA_SOLVER_COUNT; r++) {
        memset(&o, 0, sizeof o);
        o.solver = (molora_alpha_solver)r;
        o.memory.alloc = hook_alloc; o.memory.free = hook_free; o.memory.user = &h;
        h.allocs = h.frees = 0; h.fail_after = -1;
        assert_int_equal(molora_alpha_matrix(W, 64, 100, &o, &f), MOLORA_RESULT_SUCCESS);
        assert_int_equal(h.allocs, 1);
        assert_int_equal(h.frees, 1);
        h.allocs = h.frees = 0; h.fail_after = 0;
        assert_int_equal(molora_alpha_matrix(W, 64, 100, &o, &g), MOLORA_RESULT_OUT_OF_MEMORY);
        assert_int_equal(h.frees, 0);
        /* a caller workspace of exactly the queried size: no hook call, same answer */
        assert_int_equal(molora_alpha_workspace_size(64, 100, &o, &need), MOLORA_RESULT_SUCCESS);
        ws = malloc(need);
        o.workspace = ws; o.workspace_size = need;
        h.allocs = 0; h.fail_after = -1;
        assert_int_equal(molora_alpha_matrix(W, 64, 100, &o, &g), MOLORA_RESULT_SUCCESS);
        assert_int_equal(h.allocs, 0);
        assert_true(g.alpha == f.alpha && g.xmin == f.xmin && g.n_tail == f.n_tail);
        o.workspace_size = need - 1;
        assert_int_equal(molora_alpha_matrix(W, 64, 100, &o, &g), MOLORA_RESULT_WORKSPACE_TOO_SMALL);
        free(ws);
    }
    memset(&o, 0, sizeof o);
    o.memory.alloc = hook_alloc;   /* one without the other */
    assert_int_equal(molora_alpha_matrix(W, 64, 100, &o, &f), MOLORA_RESULT_INVALID_ARGUMENT);
    free(W);
}

/* round_to_f16: every weight rounded to float16, ties to even, before the eigenvalues, in every
   solver. A diagonal W has eigenvalues w_ii^2, exact in double for float16 values. */
static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_round_to_f16(void **s)
{
    /* ties to even at 1 + 2^-11 and 1 + 3 2^-11; the largest finite; subnormal ties (step 2^-24)
       up to the smallest normal 2^-14 */
    const float in[9]  = { 1.0f + 0x1p-11f, 1.0f + 0x3p-11f, 65519.0f, 0.1f, 1000.3f, -2.5f, 0x3p-25f, 0x1p-25f,
                           0x1p-14f - 0x1p-25f };
    const float out[9] = { 1.0f, 1.0f + 0x1p-9f, 65504.0f, 0.0999755859375f, 1000.5f, 2.5f, 0x1p-23f, 0.0f, 0x1p-14f };
    float W[81];
    double want[9], got[9];
    molora_alpha_args o;
    molora_alpha_fit f;
    int i, r;
    (void)s;
    memset(W, 0, sizeof W);
    for (i = 0; i < 9; i++) { W[i * 10] = in[i]; want[i] = (double)out[i] * (double)out[i]; }
    qsort(want, 9, sizeof *want, cmp_d);
    memset(&o, 0, sizeof o);
    o.round_to_f16 = 1;
    for (r = MOLORA_ALPHA_SOLVER_DEFAULT; r < MOLORA_ALPHA_SOLVER_COUNT; r++) {
        o.solver = (molora_alpha_solver)r;
        assert_int_equal(molora_alpha_eigenvalues(W, 9, 9, &o, got), MOLORA_RESULT_SUCCESS);
        for (i = 0; i < 9; i++) {
            if (r == MOLORA_ALPHA_SOLVER_DEFAULT || r == MOLORA_ALPHA_SOLVER_GRAM64) assert_true(got[i] == want[i]);
            else if (want[i] > 1e-3) assert_true(rel(got[i], want[i]) < 1e-6);
        }
    }
    o.solver = MOLORA_ALPHA_SOLVER_DEFAULT;
    o.round_to_f16 = 0;   /* off: the float32 values themselves */
    assert_int_equal(molora_alpha_eigenvalues(W, 9, 9, &o, got), MOLORA_RESULT_SUCCESS);
    assert_true(got[8] == 65519.0 * 65519.0);
    /* the float16 range: 65520 rounds to Inf (NON_FINITE), one float below it to 65504 */
    W[0] = 65520.0f;
    assert_int_equal(molora_alpha_matrix(W, 9, 9, &o, &f), MOLORA_RESULT_SUCCESS);
    o.round_to_f16 = 1;
    assert_int_equal(molora_alpha_matrix(W, 9, 9, &o, &f), MOLORA_RESULT_NON_FINITE);
    assert_int_equal(molora_alpha_eigenvalues(W, 9, 9, &o, got), MOLORA_RESULT_NON_FINITE);
    W[0] = nextafterf(65520.0f, 0.0f);
    assert_int_equal(molora_alpha_eigenvalues(W, 9, 9, &o, got), MOLORA_RESULT_SUCCESS);
    assert_true(got[8] == 65504.0 * 65504.0);
    {   /* the fit of a rounded matrix equals the fit of the matrix rounded beforehand */
        float *R = realistic(40, 56), *Q = malloc(sizeof(float) * 40 * 56);
        molora_alpha_fit h;
        for (i = 0; i < 40 * 56; i++) Q[i] = R[i];
        o.round_to_f16 = 0;
        assert_int_equal(molora_alpha_matrix(R, 40, 56, &o, &h), MOLORA_RESULT_SUCCESS);
        o.round_to_f16 = 1;
        assert_int_equal(molora_alpha_matrix(R, 40, 56, &o, &f), MOLORA_RESULT_SUCCESS);
        for (i = 0; i < 40 * 56; i++) assert_true(Q[i] == R[i]);                                  /* W not modified */
        assert_true(f.alpha != h.alpha);                                                         /* rounding moved it */
        {
            size_t ws = 0, ws0 = 0;
            o.solver = MOLORA_ALPHA_SOLVER_FAST;
            assert_int_equal(molora_alpha_workspace_size(40, 56, &o, &ws), MOLORA_RESULT_SUCCESS);
            o.round_to_f16 = 0;
            assert_int_equal(molora_alpha_workspace_size(40, 56, &o, &ws0), MOLORA_RESULT_SUCCESS);
            assert_true(ws >= ws0 + 40 * 56 * sizeof(float));                                    /* FAST needs a copy */
            o.solver = MOLORA_ALPHA_SOLVER_DEFAULT;
        }
        free(R); free(Q);
    }
}

#else
static void test_unsupported_without_blas(void **s)
{
    float W[4] = {1, 2, 3, 4};
    double e[2];
    molora_alpha_fit f;
    size_t need;
    (void)s;
    assert_int_equal(molora_alpha_matrix(W, 2, 2, NULL, &f), MOLORA_RESULT_UNSUPPORTED);
    assert_int_equal(molora_alpha_eigenvalues(W, 2, 2, NULL, e), MOLORA_RESULT_UNSUPPORTED);
    assert_int_equal(molora_alpha_workspace_size(2, 2, NULL, &need), MOLORA_RESULT_UNSUPPORTED);
}
#endif

/* ---- per-layer alpha and the allocation ---------------------------------------------------- */
static void test_layer_mean(void **s)
{
    const double a[] = {2.0, 4.0, 3.0, 5.0, 7.0, 3.5};
    const int layer[] = {0, 0, 1, 1, 1, 2};
    int bad[] = {0, 0, 1, 1, 1, 3};
    double out[3], nan_a[] = {2.0, NAN, 3.0};
    (void)s;
    assert_int_equal(molora_alpha_block_mean(a, layer, 6, 3, out), MOLORA_RESULT_SUCCESS);
    assert_true(out[0] == 3.0 && out[1] == 5.0 && out[2] == 3.5);
    assert_int_equal(molora_alpha_block_mean(a, NULL, 3, 3, out), MOLORA_RESULT_SUCCESS);
    assert_true(out[0] == 2.0 && out[1] == 4.0 && out[2] == 3.0);
    assert_int_equal(molora_alpha_block_mean(a, bad, 6, 3, out), MOLORA_RESULT_INVALID_LAYER);
    assert_int_equal(molora_alpha_block_mean(a, layer, 5, 3, out), MOLORA_RESULT_INVALID_LAYER);   /* layer 2 empty */
    assert_int_equal(molora_alpha_block_mean(nan_a, NULL, 3, 3, out), MOLORA_RESULT_NON_FINITE);
    assert_int_equal(molora_alpha_block_mean(a, NULL, 6, 3, out), MOLORA_RESULT_INVALID_SHAPE);
}

static void expect_alloc(const double *a, int n, int budget, double beta, molora_result want_r, const int *want,
                         const int *want_k)
{
    int e[64], k[64], l;
    assert_int_equal(molora_alpha_allocate(a, n, budget, beta, e, k), want_r);
    for (l = 0; l < n; l++) {
        if (e[l] != want[l])
            fail_msg("layer %d: %d experts, want %d (budget %d, beta %g)", l, e[l], want[l], budget, beta);
        assert_int_equal(k[l], want_k ? want_k[l] : (want[l] > 1 ? 2 : 1));
    }
}

static void test_allocate_reference_cases(void **s)
{
    const double a1[] = {2, 3, 4}, a2[] = {1, 1, 1, 1}, a3[] = {2, 9}, a4[] = {2.0, 4.0, 3.4, 3.6};
    const int w1[] = {3, 3, 4}, w2[] = {2, 0, 0, 0}, w3[] = {0, 3}, w4[] = {-1, 1, 1, 1};
    const int k3[] = {1, 2};
    (void)s;
    expect_alloc(a1, 3, 10, 1.0, MOLORA_RESULT_SUCCESS, w1, NULL);   /* not largest remainder [2,3,5] */
    expect_alloc(a2, 4, 2, 1.0, MOLORA_RESULT_SUCCESS, w2, NULL);    /* half to even: rint(0.5) = 0 */
    expect_alloc(a3, 2, 3, 2.5, MOLORA_RESULT_SUCCESS, w3, k3);      /* a zero-expert layer, top_k 1 */
    expect_alloc(a4, 4, 2, 0.5, MOLORA_RESULT_NEGATIVE_EXPERTS, w4, NULL);   /* upstream's numbers, refused */
}

static void test_allocate_ties_zero_one(void **s)
{
    const double t3[] = {3, 3, 3}, o3[] = {1, 1, 1}, one[] = {4.2};
    const int w_up[] = {4, 3, 3}, w_down[] = {1, 2, 2}, zero[] = {0, 0, 0}, w_one[] = {7}, w_one1[] = {1},
        w_one0[] = {0};
    double a32[32];
    int e[32], l, sum = 0;
    (void)s;
    expect_alloc(t3, 3, 10, 2.5, MOLORA_RESULT_SUCCESS, w_up, NULL);     /* +1 to the first of equal s - n */
    expect_alloc(o3, 3, 5, 2.5, MOLORA_RESULT_SUCCESS, w_down, NULL);    /* rint(5/3) = 2 each, -1 to the first */
    expect_alloc(t3, 3, 0, 2.5, MOLORA_RESULT_SUCCESS, zero, NULL);      /* zero budget: all frozen, top_k 1 */
    expect_alloc(one, 1, 7, 2.5, MOLORA_RESULT_SUCCESS, w_one, NULL);
    expect_alloc(one, 1, 1, 2.5, MOLORA_RESULT_SUCCESS, w_one1, NULL);
    expect_alloc(one, 1, 0, 2.5, MOLORA_RESULT_SUCCESS, w_one0, NULL);
    /* defaults on a 32-layer model: the budget is met and every count >= 0 */
    for (l = 0; l < 32; l++) a32[l] = 2.0 + 6.0 * (rnd() + 1.0) / 2.0;
    assert_int_equal(molora_alpha_allocate(a32, 32, MOLORA_ALPHA_DEFAULT_BUDGET, MOLORA_ALPHA_DEFAULT_BETA, e, NULL),
                     MOLORA_RESULT_SUCCESS);
    for (l = 0; l < 32; l++) { assert_true(e[l] >= 0); sum += e[l]; }
    assert_int_equal(sum, 160);
}

static void test_allocate_errors(void **s)
{
    const double a[] = {2, 3}, neg[] = {2, -1}, zero[] = {2, 0}, nan_a[] = {2, NAN}, big[] = {1e300, 2};
    int e[2];
    (void)s;
    assert_int_equal(molora_alpha_allocate(a, 2, -1, 2.5, e, NULL), MOLORA_RESULT_INVALID_VALUE);
    assert_int_equal(molora_alpha_allocate(a, 2, 5, NAN, e, NULL), MOLORA_RESULT_INVALID_VALUE);
    assert_int_equal(molora_alpha_allocate(neg, 2, 5, 2.5, e, NULL), MOLORA_RESULT_INVALID_VALUE);
    assert_int_equal(molora_alpha_allocate(zero, 2, 5, 2.5, e, NULL), MOLORA_RESULT_INVALID_VALUE);
    assert_int_equal(molora_alpha_allocate(nan_a, 2, 5, 2.5, e, NULL), MOLORA_RESULT_NON_FINITE);
    assert_int_equal(molora_alpha_allocate(big, 2, 5, 2.5, e, NULL), MOLORA_RESULT_NON_FINITE);
    assert_int_equal(molora_alpha_allocate(a, 0, 5, 2.5, e, NULL), MOLORA_RESULT_INVALID_SHAPE);
    assert_int_equal(molora_alpha_allocate(a, 2, 5, 2.5, NULL, NULL), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_alpha_allocate(NULL, 2, 5, 2.5, e, NULL), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_non_null(strstr(molora_result_string(MOLORA_RESULT_NEGATIVE_EXPERTS), "negative"));
    assert_non_null(strstr(molora_result_string(MOLORA_RESULT_DEGENERATE_SPECTRUM), "zero matrix"));
}

/* ---- the plan feeds a model ------------------------------------------------------------------ */
/* Three decoder layers, two adapted projections each (6 molora layers); the plan from the
   alphas decides each layer's experts and top-k; the model runs and matches a naive top-k. */
static void test_plan_end_to_end(void **s)
{
    enum { L = 3, P = 2, D = 24, R = 4, T = 5, MAXE = 8 };
    const double alpha[L] = {2.0, 3.0, 4.5};
    const int layer_of[L * P] = {0, 0, 1, 1, 2, 2};
    int experts[L], top_k[L], i, t, o, j, k, e_sum = 0;
    molora_layer_desc ld[L * P];
    molora_expert_desc ex[L * P][MAXE];
    float *A[L * P][MAXE], *B[L * P][MAXE], *W0[L * P], *Wg[L * P], X[T * D], Y[T * D];
    molora_model_desc md;
    molora_model *m;
    void *ws;
    size_t wsz;
    (void)s;
    assert_int_equal(molora_alpha_allocate(alpha, L, 8, MOLORA_ALPHA_DEFAULT_BETA, experts, top_k),
                     MOLORA_RESULT_SUCCESS);
    /* s = [5.66, 15.59, 43.05], sum 64.30: rint([0.70, 1.94, 5.36]) = [1, 2, 5] */
    assert_int_equal(experts[0], 1); assert_int_equal(experts[1], 2); assert_int_equal(experts[2], 5);
    assert_int_equal(top_k[0], 1); assert_int_equal(top_k[1], 2); assert_int_equal(top_k[2], 2);
    experts[0] = 0;   /* a frozen decoder layer too (the rule gives one for alpha [2, 9], T 3) */
    top_k[0] = 1;
    memset(ld, 0, sizeof ld);
    assert_int_equal(molora_alpha_plan_apply(experts, top_k, L, layer_of, ld, L * P), MOLORA_RESULT_SUCCESS);
    for (i = 0; i < L * P; i++) {
        int n = ld[i].n_experts;
        assert_int_equal(n, experts[layer_of[i]]);
        ld[i].d_in = D; ld[i].d_out = D;
        W0[i] = malloc(sizeof(float) * D * D);
        for (j = 0; j < D * D; j++) W0[i][j] = (float)(rnd() * 0.2);
        ld[i].W0 = W0[i];
        Wg[i] = malloc(sizeof(float) * (n ? n : 1) * D);
        for (j = 0; j < n * D; j++) Wg[i][j] = (float)rnd();
        ld[i].gate_weight = n ? Wg[i] : NULL;
        for (k = 0; k < n; k++) {
            A[i][k] = malloc(sizeof(float) * R * D);
            B[i][k] = malloc(sizeof(float) * R * D);
            for (j = 0; j < R * D; j++) { A[i][k][j] = (float)(rnd() * 0.3); B[i][k][j] = (float)(rnd() * 0.3); }
            memset(&ex[i][k], 0, sizeof ex[i][k]);
            ex[i][k].rank = R; ex[i][k].A = A[i][k]; ex[i][k].B = B[i][k];
        }
        ld[i].experts = n ? ex[i] : NULL;
        e_sum += n;
    }
    assert_int_equal(e_sum, 2 * (0 + 2 + 5));
    memset(&md, 0, sizeof md);
    md.n_layers = L * P; md.layers = ld;
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_workspace_size(m, T, &wsz), MOLORA_RESULT_SUCCESS);
    ws = malloc(wsz);
    for (j = 0; j < T * D; j++) X[j] = (float)rnd();
    for (i = 0; i < L * P; i++) {
        molora_layer_info info;
        molora_forward_args fa;
        int n = ld[i].n_experts, kk = top_k[layer_of[i]];
        assert_int_equal(molora_model_layer_info(m, i, &info), MOLORA_RESULT_SUCCESS);
        assert_int_equal(info.n_experts, n);
        if (n) { assert_int_equal(info.routing, MOLORA_ROUTING_TOPK); assert_int_equal(info.top_k, kk); }
        memset(&fa, 0, sizeof fa);
        fa.layer = i; fa.n_tokens = T; fa.x = X; fa.y = Y; fa.workspace = ws; fa.workspace_size = wsz;
        assert_int_equal(molora_forward(m, &fa), MOLORA_RESULT_SUCCESS);
        for (t = 0; t < T; t++) {   /* naive: y = W0 x + sum over the k best of p renormalised */
            const float *x = X + t * D;
            double z[MAXE], w[MAXE] = {0}, mx = -1e300, sw = 0, y;
            int used[MAXE] = {0}, c;
            for (k = 0; k < n; k++) {
                z[k] = 0;
                for (j = 0; j < D; j++) z[k] += (double)Wg[i][k * D + j] * x[j];
            }
            for (c = 0; c < (n ? kk : 0); c++) {
                int best = -1;
                for (k = 0; k < n; k++) if (!used[k] && (best < 0 || z[k] > z[best])) best = k;
                used[best] = 1;
                if (z[best] > mx) mx = z[best];
            }
            for (k = 0; k < n; k++) if (used[k]) { w[k] = exp(z[k] - mx); sw += w[k]; }
            for (o = 0; o < D; o++) {
                y = 0;
                for (j = 0; j < D; j++) y += (double)W0[i][o * D + j] * x[j];
                for (k = 0; k < n; k++) {
                    double h;
                    int r;
                    if (!used[k]) continue;
                    for (r = 0; r < R; r++) {
                        h = 0;
                        for (j = 0; j < D; j++) h += (double)A[i][k][r * D + j] * x[j];
                        y += w[k] / sw * (double)B[i][k][o * R + r] * h;   /* scaling 1 */
                    }
                }
                if (fabs(Y[t * D + o] - y) > 1e-4 * (1 + fabs(y)))
                    fail_msg("layer %d token %d out %d: %.7g, naive %.7g", i, t, o, (double)Y[t * D + o], y);
            }
        }
    }
    /* errors: negative count, bad top_k, layer out of range; nothing written */
    {
        int neg[L] = {1, -1, 2}, badk[L] = {1, 3, 2}, bad_of[2] = {0, 3};
        molora_layer_desc d2[2];
        memset(d2, 0, sizeof d2);
        assert_int_equal(molora_alpha_plan_apply(neg, NULL, L, NULL, d2, 2), MOLORA_RESULT_NEGATIVE_EXPERTS);
        assert_int_equal(d2[0].n_experts, 0);
        assert_int_equal(molora_alpha_plan_apply(experts, badk, L, NULL, d2, 2), MOLORA_RESULT_INVALID_TOP_K);
        assert_int_equal(molora_alpha_plan_apply(experts, NULL, L, bad_of, d2, 2), MOLORA_RESULT_INVALID_LAYER);
        assert_int_equal(molora_alpha_plan_apply(experts, NULL, 1, NULL, d2, 2), MOLORA_RESULT_INVALID_SHAPE);
        assert_int_equal(molora_alpha_plan_apply(experts, NULL, L, NULL, d2, 2), MOLORA_RESULT_SUCCESS);
        assert_int_equal(d2[1].n_experts, 2); assert_int_equal(d2[1].top_k, 2);   /* NULL top_k: the rule */
    }
    molora_model_free(m);
    free(ws);
    for (i = 0; i < L * P; i++) {
        for (k = 0; k < ld[i].n_experts; k++) { free(A[i][k]); free(B[i][k]); }
        free(W0[i]); free(Wg[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_powerlaw_recovered),
        cmocka_unit_test(test_pinned_lo_quirk),
        cmocka_unit_test(test_equal_tail_flag),
        cmocka_unit_test(test_no_candidate),
        cmocka_unit_test(test_spectrum_threshold_and_order),
        cmocka_unit_test(test_evals_thresh_boundaries),
        cmocka_unit_test(test_fix_finger_window_edges),
        cmocka_unit_test(test_ww077_small_n_switch),
        cmocka_unit_test(test_ww077_min_evals),
        cmocka_unit_test(test_ww077_against_weightwatcher),
        cmocka_unit_test(test_layer_index),
        cmocka_unit_test(test_family_detect),
#ifndef MOLORA_NO_BLAS
        cmocka_unit_test(test_round_to_f16),
        cmocka_unit_test(test_routes_realistic_nonsquare),
        cmocka_unit_test(test_ill_conditioned),
        cmocka_unit_test(test_known_singular_values),
        cmocka_unit_test(test_matrix_errors),
        cmocka_unit_test(test_scratch),
#else
        cmocka_unit_test(test_unsupported_without_blas),
#endif
        cmocka_unit_test(test_layer_mean),
        cmocka_unit_test(test_allocate_reference_cases),
        cmocka_unit_test(test_allocate_ties_zero_one),
        cmocka_unit_test(test_allocate_errors),
        cmocka_unit_test(test_plan_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

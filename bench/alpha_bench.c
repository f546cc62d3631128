/* AlphaLoRA spectrum benchmark: every eigenvalue solver of molora_alpha_eigenvalues() on one
   4096x4096 and one 4096x11008 weight-like matrix at 1 and 2 OpenBLAS threads, side by side
   with torch.linalg.svdvals (what AlphaLoRA calls) and numpy.linalg.svd(compute_uv=False) at
   the same thread count, plus each solver's accuracy against the float64 SVD (dgesdd):
   the relative error of the fix_finger and WeightWatcher alphas and of the eigenvalues.

   build/alpha_bench [--quick]        (--quick: 1024x1024 and 1024x2752, for a smoke run)
   PYTHON (default python3) runs bench/alpha_torch.py; without torch/numpy those columns are
   skipped with a message. One run of each timing: the machine is shared, rerun to see noise. */
#define MOLORA_IMPLEMENTATION
#include "molora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int n);   /* OpenBLAS's own: the bench sets threads, molora never does */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double unif(void) /* (0, 1) */
{
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return ((double)(g_rng >> 11) + 0.5) / (double)(1ull << 53);
}
static double gauss(void) { return sqrt(-2.0 * log(unif())) * cos(6.283185307179586 * unif()); }

/* Weight-like: 0.02 * (Gaussian bulk + Student-t(3) heavy entries) + 8 rank-1 spikes. */
static float *realistic(int rows, int cols)
{
    float *W = (float *)malloc(sizeof(float) * (size_t)rows * cols);
    double *u = (double *)malloc(sizeof(double) * 8 * rows), *v = (double *)malloc(sizeof(double) * 8 * cols);
    int i, j, s;
    for (i = 0; i < 8 * rows; i++) u[i] = gauss();
    for (j = 0; j < 8 * cols; j++) v[j] = gauss();
    for (i = 0; i < rows; i++)
        for (j = 0; j < cols; j++) {
            double a = gauss(), b = gauss(), c = gauss();
            double t = gauss() / sqrt((a * a + b * b + c * c) / 3.0 + 1e-3);
            double x = 0.02 * (0.8 * gauss() + 0.2 * t);
            for (s = 0; s < 8; s++) x += 0.004 * (s + 1) * u[s * rows + i] * v[s * cols + j] / sqrt((double)cols);
            W[(size_t)i * cols + j] = (float)x;
        }
    free(u); free(v);
    return W;
}

static void fits(const double *e, int m, double *ff, double *ww)
{
    double *c = (double *)malloc(sizeof(double) * m);
    molora_alpha_args o;
    molora_alpha_fit f;
    memset(&o, 0, sizeof o);
    memcpy(c, e, sizeof(double) * m);
    *ff = molora_alpha_fit_spectrum(c, m, &o, &f) == MOLORA_RESULT_SUCCESS ? f.alpha : NAN;
    o.method = MOLORA_ALPHA_WW;
    memcpy(c, e, sizeof(double) * m);
    *ww = molora_alpha_fit_spectrum(c, m, &o, &f) == MOLORA_RESULT_SUCCESS ? f.alpha : NAN;
    free(c);
}

static int python_times(int rows, int cols, int threads, double *torch_s, double *numpy_s)
{
    char cmd[512], line[256];
    const char *py = getenv("PYTHON");
    FILE *p;
    *torch_s = *numpy_s = NAN;
    snprintf(cmd, sizeof cmd, "%s bench/alpha_torch.py %d %d %d 2>&1", py && *py ? py : "python3", rows, cols, threads);
    if (!(p = popen(cmd, "r"))) return 0;
    while (fgets(line, sizeof line, p)) {
        if (!strncmp(line, "torch ", 6)) *torch_s = atof(line + 6);
        else if (!strncmp(line, "numpy ", 6)) *numpy_s = atof(line + 6);
        else printf("  python: %s", line);
    }
    pclose(p);
    return 1;
}

int main(int argc, char **argv)
{
    static const char *names[] = {"default", "gram64+dsyevd", "gram64+dsyevd_2stage", "sgesdd", "dgesdd",
                                  "FAST gram32+ssyevd_2stage"};
    const molora_alpha_solver solvers[] = {MOLORA_ALPHA_SOLVER_GRAM64, MOLORA_ALPHA_SOLVER_GRAM64_2STAGE,
                                         MOLORA_ALPHA_SOLVER_SGESDD, MOLORA_ALPHA_SOLVER_FAST};
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    int shapes[2][2] = {{4096, 4096}, {4096, 11008}}, k, th, r, j;
    if (quick) { shapes[0][0] = shapes[0][1] = shapes[1][0] = 1024; shapes[1][1] = 2752; }
    printf("molora alpha bench (molora %s): eigenvalues of W^T W; one run per cell\n", MOLORA_VERSION_STRING);
    for (k = 0; k < 2; k++) {
        int R = shapes[k][0], C = shapes[k][1], m = R < C ? R : C;
        float *W = realistic(R, C);
        double *ref = (double *)malloc(sizeof(double) * m), *e = (double *)malloc(sizeof(double) * m);
        double rff, rww, t;
        molora_alpha_args o;
        memset(&o, 0, sizeof o);
        openblas_set_num_threads(2);
        o.solver = MOLORA_ALPHA_SOLVER_DGESDD;
        t = now();
        if (molora_alpha_eigenvalues(W, R, C, &o, ref) != MOLORA_RESULT_SUCCESS) { puts("dgesdd failed"); return 1; }
        t = now() - t;
        fits(ref, m, &rff, &rww);
        printf("\n%dx%d  float64 reference (dgesdd, 2 threads, %.2f s): fix_finger alpha %.6f, ww alpha %.6f, "
               "lambda %.3g..%.3g\n", R, C, t, rff, rww, ref[0], ref[m - 1]);
        printf("%-8s %-28s %9s %9s %12s %12s %12s\n", "threads", "solver", "seconds", "/torch", "ff rel err",
               "ww rel err", "lambda err");
        for (th = 1; th <= 2; th++) {
            double ts, ns;
            openblas_set_num_threads(th);
            python_times(R, C, th, &ts, &ns);
            if (!isnan(ts)) printf("%-8d %-28s %9.2f %9.2f\n", th, "torch.linalg.svdvals (f32)", ts, 1.0);
            if (!isnan(ns)) printf("%-8d %-28s %9.2f %9.2f\n", th, "numpy.linalg.svd (f32)", ns, ns / ts);
            for (r = 0; r < 4; r++) {
                double ff, ww, emax = 0;
                o.solver = solvers[r];
                t = now();
                if (molora_alpha_eigenvalues(W, R, C, &o, e) != MOLORA_RESULT_SUCCESS) {
                    printf("%s failed\n", names[solvers[r]]);
                    continue;
                }
                t = now() - t;
                for (j = 0; j < m; j++) emax = fmax(emax, fabs(e[j] - ref[j]) / fabs(ref[j]));
                fits(e, m, &ff, &ww);
                printf("%-8d %-28s %9.2f %9.2f %12.2e %12.2e %12.2e\n", th, names[solvers[r]], t,
                       isnan(ts) ? NAN : t / ts,
                       fabs(ff - rff) / rff, fabs(ww - rww) / rww, emax);
                fflush(stdout);
            }
        }
        free(W); free(ref); free(e);
    }
    return 0;
}

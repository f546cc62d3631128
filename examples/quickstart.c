/* quickstart: build a small mixture-of-LoRA-experts model in code, run every routing rule,
   print the routing weights and the active experts per token, and time the layer against
   the frozen layer alone.
       cc -O2 -I. examples/quickstart.c -lopenblas -lm && ./a.out [d]      (default d = 4096) */
#define _POSIX_C_SOURCE 199309L   /* clock_gettime */
#define MOLORA_IMPLEMENTATION
#include "molora.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N 8        /* experts per layer */
#define R 8        /* rank of each expert */
#define SHOW 4     /* tokens whose weights are printed */

static unsigned long long rng = 88172645463325252ull;
static float rnd(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((double)(rng >> 11) / (double)(1ull << 52) - 1.0);
}
static float *rnd_vec(size_t n, float scale)
{
    float *v = (float *)malloc(n * sizeof *v);
    size_t i;
    if (!v) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (i = 0; i < n; i++) v[i] = rnd() * scale;
    return v;
}
static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) { qsort(v, (size_t)n, sizeof *v, cmp_double); return v[n / 2]; }

static void check(molora_result r, const char *what)
{
    if (r != MOLORA_RESULT_SUCCESS) { fprintf(stderr, "%s: %s\n", what, molora_result_string(r)); exit(1); }
}
static void log_fn(void *user, molora_result r, const char *msg) { (void)user; (void)r; fprintf(stderr, "molora: %s\n", msg); }

/* the frozen layer alone, as an engine would run it: the faster of sgemv per token and sgemm */
static void frozen(const float *W0, const float *X, float *Y, int T, int d)
{
    int t;
    if (T == 1) { cblas_sgemv(CblasRowMajor, CblasNoTrans, d, d, 1.0f, W0, d, X, 1, 0.0f, Y, 1); return; }
    if (T < 8) { for (t = 0; t < T; t++) cblas_sgemv(CblasRowMajor, CblasNoTrans, d, d, 1.0f, W0, d, X + (size_t)t * d, 1, 0.0f, Y + (size_t)t * d, 1); return; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, d, d, 1.0f, X, d, W0, d, 0.0f, Y, d);
}

int main(int argc, char **argv)
{
    static const char *names[] = {"dense", "top-k (k=2)", "threshold", "AdaMoLE", "MoLE output", "fixed"};
    static const molora_routing rules[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_THRESHOLD,
                                           MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_MOLE_OUTPUT, MOLORA_ROUTING_FIXED};
    enum { L = 6, TMAX = 64 };
    int d = argc > 1 ? atoi(argv[1]) : 4096, l, i, t, rep;
    float *W0, *A[N], *B[N], *Wg, *wt, *e, *X, *Y, *W, fixed[N] = {0.5f, 0.3f, 0.2f, 0, 0, 0, 0, 0};
    molora_expert_desc ex[N];
    molora_layer_desc ld[L];
    molora_model_desc md;
    molora_model *m;
    size_t ws_size;
    void *ws;
    int32_t counts[N];
    if (d < 16 || d > 16384) { fprintf(stderr, "usage: %s [d in 16..16384]\n", argv[0]); return 2; }

    /* 1. Weights: one frozen W0 (d, d), 8 experts of rank 8, a gate, a threshold net, MoLE's e. */
    W0 = rnd_vec((size_t)d * d, 1.0f / sqrtf((float)d));
    for (i = 0; i < N; i++) {
        A[i] = rnd_vec((size_t)R * d, 1.0f / sqrtf((float)d));
        B[i] = rnd_vec((size_t)d * R, 0.05f);
        memset(&ex[i], 0, sizeof ex[i]);
        ex[i].rank = R; ex[i].A = A[i]; ex[i].B = B[i]; ex[i].lora_alpha = 16;   /* s = 16 / 8 */
    }
    Wg = rnd_vec((size_t)N * d, 4.0f / sqrtf((float)d));
    wt = rnd_vec((size_t)d, 4.0f / sqrtf((float)d));
    e = rnd_vec((size_t)N * N * d, 1.0f);

    /* 2. One layer per routing rule, all sharing W0 (borrowed: it must outlive the model). */
    for (l = 0; l < L; l++) {
        memset(&ld[l], 0, sizeof ld[l]);
        ld[l].d_in = d; ld[l].d_out = d; ld[l].n_experts = N; ld[l].experts = ex;
        ld[l].W0 = W0; ld[l].routing = rules[l]; ld[l].gate_weight = Wg;
    }
    ld[1].top_k = 2;
    ld[2].threshold = 0.15f;
    ld[3].threshold_weight = wt;              /* tau_max defaults to 1/N */
    ld[4].mole_gate = e; ld[4].temperature = 0.5f;
    memset(&md, 0, sizeof md);
    md.n_layers = L; md.layers = ld; md.log = log_fn;
    check(molora_model_init(&md, &m), "molora_model_init");
    /* the experts are packed now: A[i], B[i], Wg, wt could be freed here */

    check(molora_workspace_size(m, TMAX, &ws_size), "molora_workspace_size");
    ws = malloc(ws_size);
    X = rnd_vec((size_t)TMAX * d, 1.0f);
    Y = (float *)malloc((size_t)TMAX * d * sizeof *Y);
    W = (float *)malloc((size_t)TMAX * N * sizeof *W);
    printf("molora %s quickstart: d_in = d_out = %d, %d experts of rank %d per layer, %d tokens\n\n",
           MOLORA_VERSION_STRING, d, N, R, TMAX);

    /* 3. Route 64 tokens through each rule; show the weights of the first tokens. */
    for (l = 0; l < L; l++) {
        molora_forward_args a;
        double active = 0;
        memset(&a, 0, sizeof a);
        a.layer = l; a.n_tokens = TMAX; a.x = X; a.y = Y; a.weights_out = W; a.counts_out = counts;
        a.workspace = ws; a.workspace_size = ws_size;
        if (rules[l] == MOLORA_ROUTING_FIXED) a.weights = fixed;
        check(molora_forward(m, &a), "molora_forward");
        printf("%-12s token |", names[l]);
        for (i = 0; i < N; i++) printf("   e%d ", i);
        printf(" | active\n");
        for (t = 0; t < SHOW; t++) {
            int act = 0;
            printf("%-12s %5d |", "", t);
            for (i = 0; i < N; i++) {
                float w = W[t * N + i];
                act += w != 0.0f;
                if (w == 0.0f) printf("    . "); else printf(" %5.3f", w);
            }
            printf(" | %d\n", act);
        }
        for (i = 0; i < N; i++) active += counts[i];
        printf("%-12s tokens per expert:", "");
        for (i = 0; i < N; i++) printf(" %d", counts[i]);
        printf("   mean active experts per token: %.2f\n\n", active / TMAX);
    }

    /* 4. Masks: remove experts 0 and 1 for every token; the rest renormalise (MoLE, §3.2). */
    {
        uint8_t mask[N] = {0, 0, 1, 1, 1, 1, 1, 1};
        molora_forward_args a;
        memset(&a, 0, sizeof a);
        a.layer = 0; a.n_tokens = 1; a.x = X; a.y = Y; a.weights_out = W; a.expert_mask = mask;
        a.workspace = ws; a.workspace_size = ws_size;
        check(molora_forward(m, &a), "molora_forward (mask)");
        printf("dense, experts 0 and 1 masked, token 0:");
        for (i = 0; i < N; i++) printf(" %.3f", W[i]);
        printf("\n\n");
    }

    /* 5. Time: the whole layer through molora vs the frozen layer alone (median, interleaved). */
    printf("time per call, median of interleaved runs (frozen = best of sgemm and T x sgemv on W0)\n");
    printf("%-12s %6s %12s %12s %8s\n", "routing", "tokens", "frozen ms", "molora ms", "ratio");
    {
        static const int Ts[] = {1, 64};
        int k;
        for (k = 0; k < 2; k++) {
            int T = Ts[k], reps = T == 1 ? 41 : 11;
            for (l = 0; l < L; l++) {
                double tf[64], tm[64], ratio[64], t0;
                molora_forward_args a;
                memset(&a, 0, sizeof a);
                a.layer = l; a.n_tokens = T; a.x = X; a.y = Y;
                a.workspace = ws; a.workspace_size = ws_size;
                if (rules[l] == MOLORA_ROUTING_FIXED) a.weights = fixed;
                for (rep = -2; rep < reps; rep++) {   /* two warm-up rounds */
                    t0 = now_ms(); frozen(W0, X, Y, T, d);
                    if (rep >= 0) tf[rep] = now_ms() - t0;
                    t0 = now_ms(); check(molora_forward(m, &a), "molora_forward");
                    if (rep >= 0) { tm[rep] = now_ms() - t0; ratio[rep] = tm[rep] / tf[rep]; }
                }
                printf("%-12s %6d %12.3f %12.3f %8.3f\n", names[l], T, median(tf, reps), median(tm, reps), median(ratio, reps));
            }
        }
    }
    printf("\nfloor: 1 + 2*N*r/d = %.3f (the experts' extra bytes and flops over W0 alone)\n", 1.0 + 2.0 * N * R / d);

    molora_model_free(m);
    free(ws); free(X); free(Y); free(W); free(W0); free(Wg); free(wt); free(e);
    for (i = 0; i < N; i++) { free(A[i]); free(B[i]); }
    return 0;
}

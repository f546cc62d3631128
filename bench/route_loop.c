/* One layer's calls in a loop, for the questions make bench's rotation cannot separate: what a
   call costs with its inputs in cache and with the caches flushed between calls.

     ./build/route_loop route D N RULE T REPS FLUSH_MIB   molora_route alone (RULE: dense, topk,
                                                          adamole; top-2), FLUSH_MIB written
                                                          between calls (0: none)
     ./build/route_loop layer D N T REPS                  cblas_sgemm, molora FULL, DELTA and FULL
                                                          with every expert masked, one thread

   Rank-8 experts, d_in = d_out = D, random weights; times are the best of 5 batches (route) or
   the median of REPS calls (layer), in ms. Example: ./build/route_loop route 768 8 adamole 512 1000 64 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MOLORA_IMPLEMENTATION
#include "molora.h"

#ifndef MOLORA_NO_BLAS
#include <cblas.h>
void openblas_set_num_threads(int);
#endif

enum { RANK = 8, MAX_N = 64, MAX_REPS = 101 };

static float *rnd_vec(size_t n, float scale)
{
    float *v = malloc(n * sizeof *v);
    size_t i;
    if (!v) exit(1);
    for (i = 0; i < n; i++) v[i] = scale * ((float)rand() / (float)RAND_MAX * 2.0f - 1.0f);
    return v;
}
static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* one layer of N rank-8 experts with a gate and a threshold net */
static molora_model *make_model(int d, int n, molora_routing rule, const float **W0)
{
    static molora_expert_desc ex[MAX_N];
    molora_layer_desc ld;
    molora_model_desc md;
    molora_model *m;
    int i;
    memset(&ld, 0, sizeof ld);
    memset(&md, 0, sizeof md);
    for (i = 0; i < n; i++) {
        memset(&ex[i], 0, sizeof ex[i]);
        ex[i].rank = RANK; ex[i].lora_alpha = 16;
        ex[i].A = rnd_vec((size_t)RANK * d, 0.1f); ex[i].B = rnd_vec((size_t)RANK * d, 0.1f);
    }
    *W0 = rnd_vec((size_t)d * d, 0.05f);
    ld.d_in = d; ld.d_out = d; ld.n_experts = n; ld.experts = ex; ld.W0 = *W0; ld.routing = rule; ld.top_k = 2;
    ld.gate_weight = rnd_vec((size_t)n * d, 0.05f); ld.threshold_weight = rnd_vec((size_t)d, 0.05f);
    md.n_layers = 1; md.layers = &ld;
    if (molora_model_init(&md, &m) != MOLORA_RESULT_SUCCESS) exit(1);
    return m;
}

static void *workspace(const molora_model *m, int T, size_t *size)
{
    void *w;
    if (molora_workspace_size(m, T, size) != MOLORA_RESULT_SUCCESS) exit(1);
    w = malloc(*size);
    if (!w) exit(1);
    return w;
}

static int run_route(int d, int n, const char *rule, int T, int reps, int flush_mib)
{
    molora_routing r = !strcmp(rule, "topk") ? MOLORA_ROUTING_TOPK
                       : !strcmp(rule, "adamole") ? MOLORA_ROUTING_ADAMOLE : MOLORA_ROUTING_DENSE;
    const float *W0;
    molora_model *m = make_model(d, n, r, &W0);
    molora_forward_args a;
    size_t ws;
    char *flush = flush_mib > 0 ? malloc((size_t)flush_mib << 20) : NULL;
    double best = 1e30;
    int b, i;
    if (flush_mib > 0 && !flush) return 1;
#ifndef MOLORA_NO_BLAS
    openblas_set_num_threads(1);   /* one thread, as molora's kernels (a gate over 32 rows is an sgemm) */
#endif
    memset(&a, 0, sizeof a);
    a.n_tokens = T; a.x = rnd_vec((size_t)T * d, 1.0f); a.weights_out = malloc(sizeof(float) * T * n);
    a.workspace = workspace(m, T, &ws); a.workspace_size = ws;
    for (b = 0; b < 5; b++) {
        double sum = 0.0;
        for (i = 0; i < reps / 5; i++) {
            double t0;
            if (flush) memset(flush, i, (size_t)flush_mib << 20);
            t0 = now_ms();
            if (molora_route(m, &a) != MOLORA_RESULT_SUCCESS) return 1;
            sum += now_ms() - t0;
        }
        if (sum / (reps / 5) < best) best = sum / (reps / 5);
    }
    printf("route d %d N %d %s T %d, %d MiB flushed between calls: %.4f ms\n", d, n, rule, T, flush_mib, best);
    return 0;
}

static int run_layer(int d, int n, int T, int reps)
{
    static const char *name[4] = {"cblas_sgemm", "molora FULL", "molora DELTA", "molora FULL, experts masked"};
    static uint8_t mask[MAX_N];
    const float *W0;
    molora_model *m = make_model(d, n, MOLORA_ROUTING_DENSE, &W0);
    float *X = rnd_vec((size_t)T * d, 1.0f), *Y = malloc(sizeof(float) * T * d);
    double t[4][MAX_REPS];
    size_t ws;
    void *w = workspace(m, T, &ws);
    int k, mode;
#ifndef MOLORA_NO_BLAS
    openblas_set_num_threads(1);
#endif
    for (k = 0; k < reps; k++)
        for (mode = 0; mode < 4; mode++) {
            molora_forward_args a;
            double t0;
            memset(&a, 0, sizeof a);
            a.n_tokens = T; a.x = X; a.y = Y; a.workspace = w; a.workspace_size = ws;
            a.output = mode == 2 ? MOLORA_OUTPUT_DELTA : MOLORA_OUTPUT_FULL;
            if (mode == 3) a.expert_mask = mask;
            t0 = now_ms();
#ifndef MOLORA_NO_BLAS
            if (mode == 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, d, d, 1.0f, X, d, W0, d, 0.0f, Y, d);
            else
#endif
            if (mode > 0 && molora_forward(m, &a) != MOLORA_RESULT_SUCCESS) return 1;
            t[mode][k] = now_ms() - t0;
        }
    for (mode = 0; mode < 4; mode++) {
        qsort(t[mode], (size_t)reps, sizeof(double), cmp_double);
        printf("layer d %d N %d T %d, %-28s median %.3f ms (min %.3f)\n", d, n, T, name[mode], t[mode][reps / 2],
               t[mode][0]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 8 && !strcmp(argv[1], "route") && atoi(argv[3]) >= 1 && atoi(argv[3]) <= MAX_N && atoi(argv[6]) >= 5)
        return run_route(atoi(argv[2]), atoi(argv[3]), argv[4], atoi(argv[5]), atoi(argv[6]), atoi(argv[7]));
    if (argc == 6 && !strcmp(argv[1], "layer") && atoi(argv[3]) >= 1 && atoi(argv[3]) <= MAX_N &&
        atoi(argv[5]) >= 1 && atoi(argv[5]) <= MAX_REPS)
        return run_layer(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    fprintf(stderr, "usage: %s route D N dense|topk|adamole T REPS FLUSH_MIB | layer D N T REPS\n", argv[0]);
    return 2;
}

/* molora_bench: the mixture-of-LoRA-experts layer against the frozen layer alone, measured side
   by side in one process.
     molora_bench [--shapes S1,S2,...] [--tokens 1,8,64,512] [--threads 1,2]
                  [--routing dense,adamole,topk:2,threshold:0.15] [--json FILE] [--reps N]
                  [--smoke | --quickstart]
   Every variant runs interleaved; weights rotate through >= 192 MiB so decode reads come from
   memory. --threads t: OpenBLAS gets t threads for frozen_ms / naive_ms; molora splits one call
   over t threads (ith/nth) with OpenBLAS at 1 thread. S6 adds topk:8 (its goal is top-8 of 64).
   --smoke: a seconds-long run of small shapes that checks molora against the naive loop and that
   every timing is finite and positive; it asserts no speed (make test runs it on busy machines).
   --quickstart: the layer of examples/quickstart.c's old timing table (S1: d = 4096, 8 experts of
   rank 8) under dense, top-2, threshold and AdaMoLE routing, 1 and 64 tokens, one thread. */
#define _POSIX_C_SOURCE 200809L
#define MOLORA_IMPLEMENTATION
#include "molora.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int);
char *openblas_get_corename(void);
char *openblas_get_config(void);

typedef struct shape { const char *name; int d, n, r; } shape;
static const shape SHAPES[] = {{"S1", 4096, 8, 8},  {"S2", 4096, 8, 16}, {"S3", 4096, 16, 16},
                               {"S4", 2048, 8, 8},  {"S5", 768, 8, 8},   {"S6", 4096, 64, 1}};
#define ROT_BYTES (192.0 * 1024 * 1024)
#define MAXR 8

static unsigned long long rng = 0x2545F4914F6CDD1Dull;
static float rnd(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((double)(rng >> 11) / (double)(1ull << 52) - 1.0);
}
static float *rnd_vec(size_t n, float scale)
{
    float *v = (float *)malloc(n * sizeof *v);
    size_t i;
    if (!v) { fprintf(stderr, "molora_bench: out of memory (%zu floats)\n", n); exit(1); }
    for (i = 0; i < n; i++) v[i] = rnd() * scale;
    return v;
}
static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) { qsort(v, (size_t)n, sizeof *v, cmpd); return n ? v[n / 2] : NAN; }

/* ---- a spinning pool: molora_forward split over t threads with ith/nth ------------------- */
typedef struct pool {
    int nth;
    pthread_t th[16];
    volatile int gen, done, quit;
    const molora_model *m;
    molora_forward_args args[16];
    int route_only;
} pool;
static void pool_job(pool *p, int ith)
{
    molora_result r;
    if (p->route_only && ith > 0) return;   /* routing alone: one caller */
    r = p->route_only ? molora_route(p->m, &p->args[ith]) : molora_forward(p->m, &p->args[ith]);
    if (r != MOLORA_RESULT_SUCCESS) { fprintf(stderr, "molora_bench: %s\n", molora_result_string(r)); exit(1); }
}
static pool *g_pool;
static void *pool_main(void *arg)
{
    int ith = (int)(size_t)arg, seen = 0;
    for (;;) {
        long spins = 0;
        while (__atomic_load_n(&g_pool->gen, __ATOMIC_ACQUIRE) == seen)
            if (++spins > 2000000) { sched_yield(); spins = 0; }
        seen = __atomic_load_n(&g_pool->gen, __ATOMIC_ACQUIRE);
        if (g_pool->quit) return NULL;
        pool_job(g_pool, ith);
        __atomic_add_fetch(&g_pool->done, 1, __ATOMIC_ACQ_REL);
    }
}
static void pool_start(pool *p, int nth)
{
    int i;
    memset(p, 0, sizeof *p);
    p->nth = nth;
    g_pool = p;
    for (i = 1; i < nth; i++) pthread_create(&p->th[i], NULL, pool_main, (void *)(size_t)i);
}
static void pool_run(pool *p)
{
    __atomic_store_n(&p->done, 0, __ATOMIC_RELEASE);
    __atomic_add_fetch(&p->gen, 1, __ATOMIC_ACQ_REL);
    pool_job(p, 0);
    while (__atomic_load_n(&p->done, __ATOMIC_ACQUIRE) < p->nth - 1) { }
}
static void pool_stop(pool *p)
{
    int i;
    p->quit = 1;
    __atomic_add_fetch(&p->gen, 1, __ATOMIC_ACQ_REL);
    for (i = 1; i < p->nth; i++) pthread_join(p->th[i], NULL);
}

/* ---- stream read bandwidth with t threads ------------------------------------------------ */
typedef struct sarg { const float *p; size_t n; float sum; } sarg;
__attribute__((target("avx2"))) static void *stream_part(void *v)
{
    typedef float v8 __attribute__((vector_size(32)));
    sarg *s = (sarg *)v;
    v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    size_t i;
    for (i = 0; i + 32 <= s->n; i += 32) {
        v8 x0, x1, x2, x3;
        memcpy(&x0, s->p + i, 32); memcpy(&x1, s->p + i + 8, 32);
        memcpy(&x2, s->p + i + 16, 32); memcpy(&x3, s->p + i + 24, 32);
        a0 += x0; a1 += x1; a2 += x2; a3 += x3;
    }
    a0 += a1 + a2 + a3;
    s->sum = a0[0] + a0[7];
    return NULL;
}
static double stream_gbps(const float *buf, size_t n, int t)
{
    double best = 0;
    int rep, i;
    for (rep = 0; rep < 3; rep++) {
        pthread_t th[16];
        sarg a[16];
        double t0 = now_ms();
        for (i = 0; i < t; i++) {
            a[i].p = buf + n / t * i; a[i].n = n / t;
            pthread_create(&th[i], NULL, stream_part, &a[i]);
        }
        for (i = 0; i < t; i++) pthread_join(th[i], NULL);
        t0 = now_ms() - t0;
        if (n * 4.0 / t0 / 1e6 > best) best = n * 4.0 / t0 / 1e6;
    }
    return best;
}

/* ---- one shape's weights, rotated through copies ----------------------------------------- */
typedef struct routing { char name[16]; molora_routing rule; int k; float threshold; } routing;
typedef struct bench {
    shape s;
    int copies, n_rt;
    routing rt[MAXR];
    float **W0, **A, **B, **Wg, **wt;   /* per copy; A, B: n experts of (r, d), (d, r) each concatenated */
    molora_model *m;                    /* layer (copy * n_rt + routing) */
} bench;

static void bench_build(bench *b, const shape *s, const routing *rt, int n_rt)
{
    int c, l, i;
    size_t d = (size_t)s->d, per = d * d * 4 + (size_t)s->n * s->r * d * 8;
    molora_layer_desc *ld;
    molora_expert_desc *ex;
    molora_model_desc md;
    memset(b, 0, sizeof *b);
    b->s = *s;
    b->copies = (int)ceil(ROT_BYTES / (double)per);
    if (b->copies < 2) b->copies = 2;
    b->n_rt = n_rt;
    memcpy(b->rt, rt, sizeof(routing) * n_rt);
    b->W0 = (float **)calloc((size_t)b->copies, sizeof(float *));
    b->A = (float **)calloc((size_t)b->copies, sizeof(float *));
    b->B = (float **)calloc((size_t)b->copies, sizeof(float *));
    b->Wg = (float **)calloc((size_t)b->copies, sizeof(float *));
    b->wt = (float **)calloc((size_t)b->copies, sizeof(float *));
    ld = (molora_layer_desc *)calloc((size_t)b->copies * n_rt, sizeof *ld);
    ex = (molora_expert_desc *)calloc((size_t)b->copies * s->n, sizeof *ex);
    for (c = 0; c < b->copies; c++) {
        b->W0[c] = rnd_vec(d * d, 1.0f / sqrtf((float)d));
        b->A[c] = rnd_vec((size_t)s->n * s->r * d, 1.0f / sqrtf((float)d));
        b->B[c] = rnd_vec((size_t)s->n * s->r * d, 0.05f);
        b->Wg[c] = rnd_vec((size_t)s->n * d, 3.0f / sqrtf((float)d));
        b->wt[c] = rnd_vec(d, 2.0f / sqrtf((float)d));
        for (i = 0; i < s->n; i++) {
            molora_expert_desc *e = &ex[c * s->n + i];
            e->rank = s->r; e->lora_alpha = 2.0f * s->r;
            e->A = b->A[c] + (size_t)i * s->r * d; e->B = b->B[c] + (size_t)i * s->r * d;
        }
        for (l = 0; l < n_rt; l++) {
            molora_layer_desc *L = &ld[c * n_rt + l];
            L->d_in = s->d; L->d_out = s->d; L->n_experts = s->n; L->experts = &ex[c * s->n];
            L->W0 = b->W0[c]; L->routing = rt[l].rule; L->top_k = rt[l].k; L->threshold = rt[l].threshold;
            L->gate_weight = b->Wg[c]; L->threshold_weight = b->wt[c];
        }
    }
    memset(&md, 0, sizeof md);
    md.n_layers = b->copies * n_rt; md.layers = ld;
    if (molora_model_init(&md, &b->m) != MOLORA_RESULT_SUCCESS) {
        fprintf(stderr, "molora_bench: init failed\n");
        exit(1);
    }
    free(ld); free(ex);
}
static void bench_free(bench *b)
{
    int c;
    molora_model_free(b->m);
    for (c = 0; c < b->copies; c++) { free(b->W0[c]); free(b->A[c]); free(b->B[c]); free(b->Wg[c]); free(b->wt[c]); }
    free(b->W0); free(b->A); free(b->B); free(b->Wg); free(b->wt);
}

/* frozen: the faster of cblas_sgemm and T x cblas_sgemv (the latter only tried for T <= 16) */
static void frozen_sgemm(const float *W0, const float *X, float *Y, int T, int d)
{
    if (T == 1) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, d, d, 1.0f, X, d, W0, d, 0.0f, Y, d);
    else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, d, d, 1.0f, X, d, W0, d, 0.0f, Y, d);
}
static void frozen_sgemv(const float *W0, const float *X, float *Y, int T, int d)
{
    int t;
    for (t = 0; t < T; t++)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, d, d, 1.0f, W0, d, X + (size_t)t * d, 1, 0.0f, Y + (size_t)t * d, 1);
}
/* naive: per token, sgemv for W0 then per expert two sgemv (dense weights w) */
static void naive(const bench *b, int c, const float *X, float *Y, const float *w, int T, float *h)
{
    int t, i, d = b->s.d, r = b->s.r;
    float s = 2.0f;
    for (t = 0; t < T; t++) {
        const float *x = X + (size_t)t * d;
        float *y = Y + (size_t)t * d;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, d, d, 1.0f, b->W0[c], d, x, 1, 0.0f, y, 1);
        for (i = 0; i < b->s.n; i++) {
            const float *A = b->A[c] + (size_t)i * r * d, *B = b->B[c] + (size_t)i * r * d;
            cblas_sgemv(CblasRowMajor, CblasNoTrans, r, d, 1.0f, A, d, x, 1, 0.0f, h, 1);
            cblas_sgemv(CblasRowMajor, CblasNoTrans, d, r, w[(size_t)t * b->s.n + i] * s, B, r, h, 1, 1.0f, y, 1);
        }
    }
}

static const char *path_name(molora_path p)
{
    switch (p) {
    case MOLORA_PATH_DECODE: return "decode";
    case MOLORA_PATH_SMALL: return "small";
    case MOLORA_PATH_GEMM: return "gemm";
    case MOLORA_PATH_SPARSE: return "sparse";
    default: return "none";
    }
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) { out[n++] = atoi(s); while (*s && *s != ',') s++; if (*s == ',') s++; }
    return n;
}

/* ---- options ----------------------------------------------------------------------------- */
typedef struct options {
    const char *shapes, *routings, *json_path;
    int tokens[16], n_tok, threads[8], n_thr, reps, smoke;
} options;

static int parse_options(int argc, char **argv, options *o)   /* 0, or the exit status */
{
    int i, quickstart = 0;
    memset(o, 0, sizeof *o);
    o->shapes = "S1,S2,S3,S4,S5,S6"; o->routings = "dense,adamole,topk:2";
    o->n_tok = parse_list("1,8,64,512", o->tokens, 16); o->n_thr = parse_list("1,2", o->threads, 8);
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shapes") && i + 1 < argc) o->shapes = argv[++i];
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) o->n_tok = parse_list(argv[++i], o->tokens, 16);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) o->n_thr = parse_list(argv[++i], o->threads, 8);
        else if (!strcmp(argv[i], "--routing") && i + 1 < argc) o->routings = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) o->json_path = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) o->reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--smoke")) o->smoke = 1;
        else if (!strcmp(argv[i], "--quickstart")) quickstart = 1;
        else {
            fprintf(stderr, "usage: %s [--shapes S1,..] [--tokens 1,8,..] [--threads 1,2] "
                    "[--routing dense,adamole,topk:K,threshold:V] [--json FILE] [--reps N] [--smoke | --quickstart]\n",
                    argv[0]);
            return 2;
        }
    }
    if (quickstart) {
        o->shapes = "S1"; o->routings = "dense,topk:2,threshold:0.15,adamole";
        o->n_tok = parse_list("1,64", o->tokens, 16); o->n_thr = parse_list("1", o->threads, 8);
    }
    if (o->smoke) {
        o->shapes = "S5";
        o->n_tok = parse_list("1,8,64", o->tokens, 16); o->n_thr = parse_list("1", o->threads, 8);
    }
    for (i = 0; i < o->n_thr; i++)
        if (o->threads[i] < 1 || o->threads[i] > 16) { fprintf(stderr, "molora_bench: threads 1..16\n"); return 2; }
    for (i = 0; i < o->n_tok; i++)
        if (o->tokens[i] < 1 || o->tokens[i] > 8192) { fprintf(stderr, "molora_bench: tokens 1..8192\n"); return 2; }
    return 0;
}

/* the routing list for shape s (top-k beyond N dropped; S6 always gets topk:8, its goal); -1: unknown */
static int parse_routings(const char *p, const shape *s, routing *rt)
{
    int n_rt = 0, l;
    while (*p && n_rt < MAXR - 1) {
        routing *r = &rt[n_rt];
        int len = 0;
        memset(r, 0, sizeof *r);
        while (p[len] && p[len] != ',') len++;
        snprintf(r->name, sizeof r->name, "%.*s", len, p);
        if (!strncmp(p, "dense", 5)) r->rule = MOLORA_ROUTING_DENSE;
        else if (!strncmp(p, "adamole", 7)) r->rule = MOLORA_ROUTING_ADAMOLE;
        else if (!strncmp(p, "topk:", 5)) { r->rule = MOLORA_ROUTING_TOPK; r->k = atoi(p + 5); }
        else if (!strncmp(p, "threshold:", 10)) {
            r->rule = MOLORA_ROUTING_THRESHOLD; r->threshold = (float)atof(p + 10);
        }
        else { fprintf(stderr, "molora_bench: unknown routing '%s'\n", r->name); return -1; }
        p += len + (p[len] == ',');
        if (r->rule == MOLORA_ROUTING_TOPK && (r->k < 1 || r->k > s->n)) continue;
        n_rt++;
    }
    for (l = 0; l < n_rt && !(rt[l].rule == MOLORA_ROUTING_TOPK && rt[l].k == 8); l++) { }
    if (!strcmp(s->name, "S6") && l == n_rt) {
        memset(&rt[n_rt], 0, sizeof rt[n_rt]);
        strcpy(rt[n_rt].name, "topk:8"); rt[n_rt].rule = MOLORA_ROUTING_TOPK; rt[n_rt].k = 8;
        n_rt++;
    }
    return n_rt;
}

/* ---- one (shape, T, threads) case --------------------------------------------------------- */
typedef struct run {   /* the buffers and timings of one case */
    int T, nth, reps;
    float *X, *Y, *Y2, *Wt, *h;
    int32_t counts[64];
    void *ws[16];
    size_t ws_size;
    double gemm[64], gemv[64], full[MAXR][64], delta[MAXR][64], gate[MAXR][64], active[MAXR], naive_ms;
    molora_path path[MAXR];
} run;

/* interleaved rounds: frozen (both forms), then each routing in full, delta and gate modes; each
   call on the next copy of the weights, so a decode call reads them from memory */
static void time_rounds(const bench *b, run *u)
{
    int T = u->T, nth = u->nth, d = b->s.d, rep, c = 0, l, k, mode;
    pool pl;
    pool_start(&pl, nth);
    pl.m = b->m;
    for (rep = -1; rep < u->reps; rep++) {
        double t0;
        openblas_set_num_threads(nth);
        t0 = now_ms(); frozen_sgemm(b->W0[c], u->X, u->Y, T, d); t0 = now_ms() - t0;
        if (rep >= 0) u->gemm[rep] = t0;
        c = (c + 1) % b->copies;
        if (T <= 16) {
            t0 = now_ms(); frozen_sgemv(b->W0[c], u->X, u->Y, T, d); t0 = now_ms() - t0;
            if (rep >= 0) u->gemv[rep] = t0;
            c = (c + 1) % b->copies;
        }
        openblas_set_num_threads(1);
        for (l = 0; l < b->n_rt; l++) {
            for (mode = 0; mode < 3; mode++) {   /* full, delta, gate (route only) */
                for (k = 0; k < nth; k++) {
                    molora_forward_args *a = &pl.args[k];
                    memset(a, 0, sizeof *a);
                    a->layer = c * b->n_rt + l; a->n_tokens = T; a->x = u->X; a->y = u->Y;
                    a->output = mode == 1 ? MOLORA_OUTPUT_DELTA : MOLORA_OUTPUT_FULL;
                    a->workspace = u->ws[k]; a->workspace_size = u->ws_size;
                    a->ith = k; a->nth = nth > 1 ? nth : 0;
                    if (k == 0) {   /* the first caller reports the weights, counts and path */
                        a->weights_out = u->Wt; a->counts_out = u->counts;
                        if (mode == 0) a->path_out = &u->path[l];
                    }
                }
                pl.route_only = mode == 2;
                t0 = now_ms(); pool_run(&pl); t0 = now_ms() - t0;
                if (rep >= 0) (mode == 0 ? u->full : mode == 1 ? u->delta : u->gate)[l][rep] = t0;
                if (mode == 0) {
                    int e, tot = 0;
                    for (e = 0; e < b->s.n; e++) tot += u->counts[e];
                    u->active[l] = (double)tot / T;
                }
                c = (c + 1) % b->copies;
            }
        }
    }
    pool_stop(&pl);
}

/* the naive loop (all experts, dense weights), once per case, fewer reps when slow; molora and it
   must agree. Returns the failures (0 or 1). */
static int time_naive(const bench *b, run *u, int smoke)
{
    molora_forward_args a;
    double t_naive[8], mx = 0, sc = 0;
    int rep, nr = smoke ? 1 : u->T >= 64 ? 1 : 3;
    size_t q, n = (size_t)u->T * b->s.d;
    openblas_set_num_threads(u->nth);
    memset(&a, 0, sizeof a);
    a.layer = 0; a.n_tokens = u->T; a.x = u->X; a.y = u->Y2; a.workspace = u->ws[0]; a.workspace_size = u->ws_size;
    a.weights_out = u->Wt;
    molora_forward(b->m, &a);   /* layer 0 = copy 0, first routing: Y2 = molora */
    for (rep = 0; rep < nr; rep++) {
        double t0 = now_ms();
        naive(b, 0, u->X, u->Y, u->Wt, u->T, u->h);
        t_naive[rep] = now_ms() - t0;
    }
    u->naive_ms = median(t_naive, nr);
    for (q = 0; q < n; q++) { mx = fmax(mx, fabs(u->Y[q] - u->Y2[q])); sc = fmax(sc, fabs(u->Y[q])); }
    if (mx <= 1e-4 * (1 + sc)) return 0;
    fprintf(stderr, "molora_bench: %s T=%d: molora differs from the naive loop by %g\n", b->s.name, u->T, mx);
    return 1;
}

/* one row per routing (and a JSON record); the medians of the rounds. Returns the failures. */
static int report(const bench *b, run *u, double gbps, int smoke, FILE *json, int *first_rec)
{
    const shape *s = &b->s;
    int T = u->T, d = s->d, l, fails = 0;
    double fg = median(u->gemm, u->reps), fv = T <= 16 ? median(u->gemv, u->reps) : INFINITY;
    double frozen_ms = fg < fv ? fg : fv, floor = 1.0 + 2.0 * s->n * s->r / d;
    for (l = 0; l < b->n_rt; l++) {
        double mm = median(u->full[l], u->reps), dm = median(u->delta[l], u->reps), gm = median(u->gate[l], u->reps);
        double bytes = 4.0 * ((double)d * d + (s->n + 1.0) * d + u->active[l] * s->r * 2.0 * d);
        double mgbps = T == 1 ? bytes / mm / 1e6 : NAN, ratio = mm / frozen_ms;
        printf("%-3s %4d %3d %3d %5d %3d %-14s %-7s %9.3f %9.3f %8.3f %8.4f %9.2f %7.3f %7.3f %6.1f %6.2f %6.1f\n",
               s->name, d, s->n, s->r, T, u->nth, b->rt[l].name, path_name(u->path[l]), frozen_ms, mm, dm, gm,
               u->naive_ms, ratio, floor, u->naive_ms / mm, u->active[l], T == 1 ? mgbps : gbps);
        if (smoke && !(ratio > 0 && isfinite(ratio))) {
            fprintf(stderr, "molora_bench: smoke: ratio %g is not a time\n", ratio);
            fails++;
        }
        if (json) {
            char sgemv[32] = "null", mg[32] = "null";
            if (T <= 16) snprintf(sgemv, sizeof sgemv, "%.6f", fv);
            if (T == 1) snprintf(mg, sizeof mg, "%.3f", mgbps);
            fprintf(json, "%s  {\"shape\": \"%s\", \"d\": %d, \"n_experts\": %d, \"rank\": %d, \"tokens\": %d, "
                    "\"threads\": %d, \"routing\": \"%s\", \"path\": \"%s\", \"frozen_ms\": %.6f, \"molora_ms\": %.6f, "
                    "\"delta_ms\": %.6f, \"gate_ms\": %.6f, \"naive_ms\": %.6f, \"torch_ms\": null, "
                    "\"ratio_vs_frozen\": %.6f, \"naive_over_molora\": %.6f, \"active_experts_mean\": %.4f, "
                    "\"stream_gbps\": %.3f, \"floor\": %.6f, \"frozen_sgemm_ms\": %.6f, \"frozen_sgemv_ms\": %s, "
                    "\"molora_gbps\": %s}",
                    *first_rec ? "" : ",\n", s->name, d, s->n, s->r, T, u->nth, b->rt[l].name, path_name(u->path[l]),
                    frozen_ms, mm, dm, gm, u->naive_ms, ratio, u->naive_ms / mm, u->active[l], gbps, floor, fg,
                    sgemv, mg);
            *first_rec = 0;
        }
    }
    fflush(stdout);
    return fails;
}

/* time one case: buffers, the interleaved rounds, the naive loop, the report */
static int run_case(const bench *b, const options *o, int T, int nth, double gbps, FILE *json, int *first_rec)
{
    run *u = (run *)calloc(1, sizeof *u);
    int k, fails;
    size_t d = (size_t)b->s.d;
    double work = 2.0 * T * d * d;   /* frozen flops, to size the repetitions */
    if (!u) { fprintf(stderr, "molora_bench: out of memory\n"); exit(1); }
    u->T = T; u->nth = nth;
    u->reps = o->reps ? o->reps : work < 1e8 ? 31 : work < 2e9 ? 11 : 5;
    if (o->smoke) u->reps = 3;
    if (u->reps > 64) u->reps = 64;
    u->X = rnd_vec((size_t)T * d, 1.0f);
    u->Y = (float *)malloc((size_t)T * d * 4); u->Y2 = (float *)malloc((size_t)T * d * 4);
    u->Wt = (float *)malloc((size_t)T * b->s.n * 4); u->h = (float *)malloc((size_t)b->s.r * 4);
    molora_workspace_size(b->m, T, &u->ws_size);
    for (k = 0; k < nth; k++) u->ws[k] = malloc(u->ws_size);
    time_rounds(b, u);
    fails = time_naive(b, u, o->smoke);
    fails += report(b, u, gbps, o->smoke, json, first_rec);
    for (k = 0; k < nth; k++) free(u->ws[k]);
    free(u->X); free(u->Y); free(u->Y2); free(u->Wt); free(u->h); free(u);
    return fails;
}

int main(int argc, char **argv)
{
    options o;
    FILE *json = NULL;
    int first_rec = 1, i, fails = 0, rc = parse_options(argc, argv, &o);
    size_t sn = (size_t)256 * 1024 * 1024 / 4 / (o.smoke ? 16 : 1);   /* the stream buffer */
    float *sbuf;
    if (rc) return rc;
    if (o.json_path && !(json = fopen(o.json_path, "w"))) {
        fprintf(stderr, "molora_bench: cannot write %s\n", o.json_path);
        return 1;
    }
    if (json) fprintf(json, "[\n");
    sbuf = rnd_vec(sn, 1.0f);
    printf("molora %s bench: ratios measured side by side in one run (median); OpenBLAS %s, core %s\n",
           MOLORA_VERSION_STRING, openblas_get_config(), openblas_get_corename());
    printf("%-3s %4s %3s %3s %5s %3s %-14s %-7s %9s %9s %8s %8s %9s %7s %7s %6s %6s %6s\n", "sh", "d", "N", "r", "T",
           "thr", "routing", "path", "frozen_ms", "molora_ms", "delta_ms", "gate_ms", "naive_ms", "ratio", "floor",
           "naive/", "active", "GB/s");
    for (i = 0; i < (int)(sizeof SHAPES / sizeof *SHAPES); i++) {
        const shape *s = &SHAPES[i];
        routing rt[MAXR];
        int n_rt, hi, ti;
        bench b;
        if (!strstr(o.shapes, s->name)) continue;
        if ((n_rt = parse_routings(o.routings, s, rt)) < 0) return 2;
        bench_build(&b, s, rt, n_rt);
        for (hi = 0; hi < o.n_thr; hi++) {
            double gbps = stream_gbps(sbuf, sn, o.threads[hi]);
            for (ti = 0; ti < o.n_tok; ti++)
                fails += run_case(&b, &o, o.tokens[ti], o.threads[hi], gbps, json, &first_rec);
        }
        bench_free(&b);
    }
    if (json) { fprintf(json, "\n]\n"); fclose(json); }
    free(sbuf);
    if (o.smoke) printf("bench smoke: %d passed, %d failed\n", fails ? 0 : 1, fails ? 1 : 0);
    return fails ? 1 : 0;
}

/* BF16 experts (MOLORA_MODEL_EXPERTS_BF16 / _KEEP_BF16): every forward path, route and merge of a
   BF16 layer against the float32 layer of the same stored values, and both against a naive
   float64 reference written here; the rounding of F32 / F16 inputs against a rounding written
   here in double arithmetic; memory, errors at their codes, no allocation on the forward path, the
   widening kernel against its portable twin, and a BF16 adapter fixture read with and without the
   flag. Built against OpenBLAS and with MOLORA_NO_BLAS; also run with MOLORA_PORTABLE=1. */
#define TEST_RNG_SEED 0xB16B00B5CAFEF00Dull
#define TEST_COUNT_ALLOCS   /* linked with -Wl,--wrap=malloc,calloc,realloc */
#include "test_util.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "molora.h"

/* ---- BF16 in the test's own terms: the nearest value with an 8-bit significand, in double -- */
static float bits_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bf16_f(uint16_t h) { return bits_f((uint32_t)h << 16); }
/* round x (finite float) to the nearest BF16, ties to the even significand: written with frexp and
   rint (the FPU's ties-to-even), not with molora's bit trick; below 2^-126 the spacing stays 2^-133 */
static double ref_round_bf16(double x)
{
    int e;
    double m;
    if (x == 0) return x;
    m = frexp(fabs(x), &e);              /* |x| = m 2^e, m in [0.5, 1) */
    if (e < -125) e = -125;              /* subnormal BF16: the spacing of the smallest binade */
    m = ldexp(rint(ldexp(fabs(x), 8 - e)), e - 8);
    return x < 0 ? -m : m;
}
static uint16_t to_bf16(float f)   /* a value known to be BF16-exact, as its bits */
{
    return (uint16_t)(f_bits(f) >> 16);
}

/* ---- a test layer: random BF16-exact experts, float32 W0 / gate ---------------------------- */
#define MAXN 64
typedef struct fix {
    int d_in, d_out, n, rank[MAXN];
    float *A[MAXN], *B[MAXN];              /* float32 arrays holding BF16-exact values          */
    uint16_t *A16[MAXN], *B16[MAXN];       /* the same values as BF16 bits                       */
    float *W0, *bias, *Wg, *e;
    molora_expert_desc ex[MAXN];
    molora_layer_desc ld;
} fix;

static float *rnd_bf16_vec(size_t n, double scale, uint16_t **bits)
{
    float *v = (float *)malloc(n * sizeof *v);
    size_t i;
    *bits = (uint16_t *)malloc(n * sizeof **bits);
    for (i = 0; i < n; i++) {
        v[i] = (float)ref_round_bf16(rnd() * scale);
        (*bits)[i] = to_bf16(v[i]);
    }
    return v;
}

/* n experts of ranks r0, r0 + 1, ... (cycling up to rmax); typed: the descriptor points at BF16 bits */
static void fix_make(fix *f, int d_in, int d_out, int n, int r0, int rmax, molora_routing routing, int typed)
{
    int i;
    memset(f, 0, sizeof *f);
    f->d_in = d_in; f->d_out = d_out; f->n = n;
    for (i = 0; i < n; i++) {
        f->rank[i] = r0 + i % (rmax - r0 + 1);
        f->A[i] = rnd_bf16_vec((size_t)f->rank[i] * d_in, 0.5, &f->A16[i]);
        f->B[i] = rnd_bf16_vec((size_t)d_out * f->rank[i], 0.5, &f->B16[i]);
        f->ex[i].rank = f->rank[i];
        f->ex[i].A = typed ? (const void *)f->A16[i] : (const void *)f->A[i];
        f->ex[i].B = typed ? (const void *)f->B16[i] : (const void *)f->B[i];
        f->ex[i].A_type = f->ex[i].B_type = typed ? MOLORA_TYPE_BF16 : MOLORA_TYPE_F32;
        f->ex[i].lora_alpha = (float)(2 * f->rank[i]) * (i % 2 ? 0.5f : 1.0f);
    }
    f->W0 = rnd_vec((size_t)d_out * d_in, 0.1);
    f->bias = rnd_vec((size_t)d_out, 0.1);
    f->Wg = rnd_vec((size_t)n * d_in, 1.0);
    f->e = rnd_vec((size_t)n * n * d_out, 1.0);
    f->ld.d_in = d_in; f->ld.d_out = d_out; f->ld.n_experts = n; f->ld.experts = f->ex;
    f->ld.W0 = f->W0; f->ld.bias = f->bias; f->ld.routing = routing;
    f->ld.gate_weight = routing == MOLORA_ROUTING_MOLE_OUTPUT ? NULL : f->Wg;
    f->ld.mole_gate = routing == MOLORA_ROUTING_MOLE_OUTPUT ? f->e : NULL;
}
static void fix_free(fix *f)
{
    int i;
    for (i = 0; i < f->n; i++) { free(f->A[i]); free(f->B[i]); free(f->A16[i]); free(f->B16[i]); }
    free(f->W0); free(f->bias); free(f->Wg); free(f->e);
}
static molora_model *fix_model(const fix *f, unsigned flags)
{
    molora_model_desc md;
    molora_model *m = NULL;
    memset(&md, 0, sizeof md);
    md.n_layers = 1; md.layers = &f->ld; md.flags = flags;
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
    return m;
}

/* the naive delta of token x with weights w (N), and its error scale sum |w s B h| with |h| = sum |A x| */
static void ref_delta(const fix *f, const molora_model *m, const float *x, const float *w, double *y, double *scale)
{
    int i, j, k, o;
    for (o = 0; o < f->d_out; o++) y[o] = scale[o] = 0;
    for (i = 0; i < f->n; i++) {
        float s;
        if (w[i] == 0.0f) continue;
        assert_int_equal(molora_model_expert(m, 0, i, NULL, &s), MOLORA_RESULT_SUCCESS);
        for (j = 0; j < f->rank[i]; j++) {
            double h = 0, ha = 0;
            for (k = 0; k < f->d_in; k++) {
                h += (double)f->A[i][(size_t)j * f->d_in + k] * x[k];
                ha += fabs((double)f->A[i][(size_t)j * f->d_in + k] * x[k]);
            }
            for (o = 0; o < f->d_out; o++) {
                double b = (double)f->B[i][(size_t)o * f->rank[i] + j] * w[i] * s;
                y[o] += b * h;
                scale[o] += fabs(b) * ha;
            }
        }
    }
}

/* a serial parallel_for: the tasks in reverse order, as a pool may run them */
static void serial_for(void *user, int n_tasks, molora_task_fn task, void *ctx)
{
    int k;
    (void)user;
    for (k = n_tasks - 1; k >= 0; k--) task(ctx, k, n_tasks);
}

/* how a call is made: the routing source, a split, the output */
typedef struct how {
    int T, nth, n_tasks, index_spread;   /* index_spread > 0: adapter_index over that many adapters */
    int fixed;                           /* fixed per-token weights (half of them zero)         */
    molora_output output;
} how;

/* Y of one call (every ith of nth, n_tasks each), its weights and path */
static void run_call(const molora_model *m, const fix *f, const how *h, const float *X, const int32_t *idx,
                     const float *wfix, float *Y, float *W, molora_path *path)
{
    molora_forward_args a;
    size_t ws;
    void *w;
    int ith, nth = h->nth ? h->nth : 1, tasks = h->n_tasks ? h->n_tasks : 1;
    long before;
    assert_int_equal(molora_workspace_size_tasks(m, h->T, tasks, &ws), MOLORA_RESULT_SUCCESS);
    w = malloc(ws);
    for (ith = 0; ith < nth; ith++) {
        memset(&a, 0, sizeof a);
        a.n_tokens = h->T; a.x = X; a.y = Y; a.output = h->output;
        a.workspace = w; a.workspace_size = ws; a.weights_out = ith == 0 ? W : NULL; a.path_out = path;
        a.adapter_index = idx; a.weights = wfix; a.weights_per_token = wfix != NULL;
        if (h->nth) { a.ith = ith; a.nth = nth; }
        if (h->n_tasks) { a.parallel_for = serial_for; a.n_tasks = tasks; }
        before = g_allocs;
        assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_SUCCESS);
        assert_int_equal(g_allocs, before);   /* the forward path allocates nothing */
    }
    free(w);
    (void)f;
}

/* One case: the BF16 model (from float32 BF16-exact values, and from BF16 bits) against the float32
   model within 1e-6 of the error scale, and against the float64 reference within 1e-5; same path. */
static void check_case(fix *f, const how *h, const char *what)
{
    molora_model *m32 = fix_model(f, 0), *m16, *mk;
    size_t ny = (size_t)h->T * f->d_out, nw = (size_t)h->T * f->n;
    float *X = rnd_vec((size_t)h->T * f->d_in, 1.0), *Y32 = calloc(ny + 1, 4), *Y16 = calloc(ny + 1, 4);
    float *W32 = calloc(nw + 1, 4), *W16 = calloc(nw + 1, 4), *wfix = NULL;
    int32_t *idx = NULL;
    double *ry = malloc((size_t)f->d_out * sizeof *ry), *rs = malloc((size_t)f->d_out * sizeof *rs);
    molora_path p32 = MOLORA_PATH_NONE, p16 = MOLORA_PATH_NONE;
    err e = {0, 0, 0}, er = {0, 0, 0};
    int t, o, typed, i;
    char name[160];
    if (h->index_spread) {
        idx = malloc((size_t)h->T * sizeof *idx);
        for (t = 0; t < h->T; t++) idx[t] = t % 7 == 6 ? -1 : (int32_t)((t * 5) % h->index_spread);
    }
    if (h->fixed) {
        wfix = malloc(nw * sizeof *wfix);
        for (i = 0; i < (int)nw; i++) wfix[i] = i % 2 ? 0.0f : (float)rnd();
    }
    for (typed = 0; typed < 2; typed++) {
        f->ld.experts = f->ex;
        for (i = 0; i < f->n; i++) {   /* the same values as float32 (rounding is exact) or as BF16 bits */
            f->ex[i].A = typed ? (const void *)f->A16[i] : (const void *)f->A[i];
            f->ex[i].B = typed ? (const void *)f->B16[i] : (const void *)f->B[i];
            f->ex[i].A_type = f->ex[i].B_type = typed ? MOLORA_TYPE_BF16 : MOLORA_TYPE_F32;
        }
        m16 = fix_model(f, typed ? MOLORA_MODEL_EXPERTS_KEEP_BF16 : MOLORA_MODEL_EXPERTS_BF16);
        mk = m16;
        {
            molora_layer_info li;
            assert_int_equal(molora_model_layer_info(mk, 0, &li), MOLORA_RESULT_SUCCESS);
            assert_int_equal(li.expert_type, MOLORA_TYPE_BF16);
        }
        for (o = 0; o < (int)ny; o++) Y32[o] = Y16[o] = h->output == MOLORA_OUTPUT_DELTA ? 0.25f : -7.0f;
        run_call(m32, f, h, X, idx, wfix, Y32, W32, &p32);
        run_call(m16, f, h, X, idx, wfix, Y16, W16, &p16);
        snprintf(name, sizeof name, "%s (T %d, %s)", what, h->T, typed ? "BF16 bits" : "F32 values");
        if (p32 != p16) fail_msg("%s: path %d, float32 layer's %d", name, (int)p16, (int)p32);
        /* the gate is float32 at the same 64-byte phase: the routing is bitwise the float32 layer's,
           except MoLE's output gate, which reads the experts' deltas */
        if (f->ld.routing != MOLORA_ROUTING_MOLE_OUTPUT && memcmp(W32, W16, nw * sizeof *W32) != 0)
            fail_msg("%s: routing weights differ", name);
        for (i = 0; i < (int)nw; i++)
            if (fabs((double)W32[i] - W16[i]) > 1e-6) fail_msg("%s: weight %d: %g, not %g", name, i, W16[i], W32[i]);
        for (t = 0; t < h->T; t++) {
            ref_delta(f, m32, X + (size_t)t * f->d_in, W32 + (size_t)t * f->n, ry, rs);
            for (o = 0; o < f->d_out; o++) {
                size_t k = (size_t)t * f->d_out + o;
                double base = h->output == MOLORA_OUTPUT_DELTA ? 0.25 : Y32[k] - ry[o], sc = rs[o] + fabs(base);
                err_add(&e, Y16[k], Y32[k], sc + 1e-30);
                if (h->output == MOLORA_OUTPUT_DELTA) err_add(&er, Y16[k], ry[o] + 0.25, sc + 1e-30);
            }
        }
        CHECK_ERR(e, 1e-6, name);
        CHECK_ERR(er, 1e-5, name);
        molora_model_free(m16);
    }
    molora_model_free(m32);
    free(X); free(Y32); free(Y16); free(W32); free(W16); free(ry); free(rs); free(idx); free(wfix);
}

static void test_paths_match_f32(void **s)
{
    static const int Ts[] = {1, 2, 8, 16, 17, 64, 200};
    fix f;
    how h;
    size_t i;
    (void)s;
    /* dense and top-k: every path of T, FULL and DELTA; d_in and d_out not multiples of 16 */
    fix_make(&f, 83, 45, 5, 1, 4, MOLORA_ROUTING_DENSE, 0);
    for (i = 0; i < sizeof Ts / sizeof *Ts; i++) {
        memset(&h, 0, sizeof h);
        h.T = Ts[i]; h.output = MOLORA_OUTPUT_DELTA;
        check_case(&f, &h, "dense delta");
        h.output = MOLORA_OUTPUT_FULL;
        check_case(&f, &h, "dense full");
        h.nth = 3; check_case(&f, &h, "dense ith/nth 3");
        h.nth = 0; h.n_tasks = 4; h.output = MOLORA_OUTPUT_DELTA; check_case(&f, &h, "dense parallel_for 4");
        h.n_tasks = 0; h.fixed = 1; check_case(&f, &h, "fixed weights");
    }
    fix_free(&f);
    /* runs of experts widened together beyond 16 tokens (the tile's 64 rows): six of rank 16 (a
       run of exactly 64 rows, then 32), and ranks 20..24 (runs of 63, 47 and 20 rows) */
    for (i = 0; i < 2; i++) {
        static const int Tr[] = {16, 17, 64};
        size_t ti;
        fix_make(&f, 70, 37, 6, i ? 20 : 16, i ? 24 : 16, MOLORA_ROUTING_DENSE, 0);
        for (ti = 0; ti < 3; ti++) {
            memset(&h, 0, sizeof h);
            h.T = Tr[ti]; h.output = MOLORA_OUTPUT_FULL;
            check_case(&f, &h, i ? "runs of ranks 20..24" : "runs of rank 16");
            h.n_tasks = 2; h.output = MOLORA_OUTPUT_DELTA; check_case(&f, &h, "runs, parallel_for 2");
        }
        fix_free(&f);
    }
    /* top-1 of 24 rank-1..3 experts: few routed pairs, the grouped (sparse) path at T > 1 */
    fix_make(&f, 64, 48, 24, 1, 3, MOLORA_ROUTING_TOPK, 0);
    f.ld.top_k = 1;
    for (i = 1; i < sizeof Ts / sizeof *Ts; i++) {
        memset(&h, 0, sizeof h);
        h.T = Ts[i]; h.output = MOLORA_OUTPUT_DELTA;
        check_case(&f, &h, "top-1 of 24");
        h.n_tasks = 3; check_case(&f, &h, "top-1 of 24, 3 tasks");
    }
    /* top-8 of 24 (the by-token order for float32; BF16 runs by expert) */
    f.ld.top_k = 8;
    memset(&h, 0, sizeof h);
    h.T = 64; h.output = MOLORA_OUTPUT_DELTA;
    check_case(&f, &h, "top-8 of 24");
    /* adapter pool: one adapter per token, -1 for some, spread over 4 and 16 adapters */
    for (i = 0; i < sizeof Ts / sizeof *Ts; i++) {
        memset(&h, 0, sizeof h);
        h.T = Ts[i]; h.output = MOLORA_OUTPUT_FULL; h.index_spread = 16;
        check_case(&f, &h, "adapter_index over 16");
        h.index_spread = 4; h.nth = 2; check_case(&f, &h, "adapter_index over 4, nth 2");
    }
    fix_free(&f);
    /* MoLE's output gate reads every expert's delta (route), then mixes */
    fix_make(&f, 40, 24, 3, 2, 5, MOLORA_ROUTING_MOLE_OUTPUT, 0);
    for (i = 0; i < sizeof Ts / sizeof *Ts; i++) {
        memset(&h, 0, sizeof h);
        h.T = Ts[i]; h.output = MOLORA_OUTPUT_DELTA;
        check_case(&f, &h, "mole_output");
        h.n_tasks = 2; h.output = MOLORA_OUTPUT_FULL; check_case(&f, &h, "mole_output, 2 tasks");
    }
    fix_free(&f);
    /* fan_in_fan_out W0 (d_in, d_out) */
    fix_make(&f, 33, 50, 3, 4, 4, MOLORA_ROUTING_DENSE, 0);
    f.ld.fan_in_fan_out = 1;
    for (i = 0; i < sizeof Ts / sizeof *Ts; i++) {
        memset(&h, 0, sizeof h);
        h.T = Ts[i]; h.output = MOLORA_OUTPUT_FULL;
        check_case(&f, &h, "fan_in_fan_out");
    }
    fix_free(&f);
}

/* route and merge of a BF16 layer: route bitwise (the gate is float32), merge within float rounding */
static void test_route_merge(void **s)
{
    fix f;
    molora_model *m32, *m16;
    molora_forward_args a;
    float *X, *W1, *W2, *M32, *M16, wts[4] = {0.5f, -1.25f, 0.0f, 2.0f};
    size_t ws, k, nm;
    void *w;
    int ff;
    (void)s;
    for (ff = 0; ff < 2; ff++) {
        err e = {0, 0, 0};
        fix_make(&f, 37, 29, 4, 2, 6, MOLORA_ROUTING_TOPK, 0);
        f.ld.fan_in_fan_out = ff;
        m32 = fix_model(&f, 0); m16 = fix_model(&f, MOLORA_MODEL_EXPERTS_BF16);
        X = rnd_vec(5 * 37, 1.0); W1 = calloc(5 * 4, 4); W2 = calloc(5 * 4, 4);
        assert_int_equal(molora_workspace_size(m16, 5, &ws), MOLORA_RESULT_SUCCESS);
        w = malloc(ws);
        memset(&a, 0, sizeof a);
        a.n_tokens = 5; a.x = X; a.workspace = w; a.workspace_size = ws; a.weights_out = W1;
        assert_int_equal(molora_route(m32, &a), MOLORA_RESULT_SUCCESS);
        a.weights_out = W2;
        assert_int_equal(molora_route(m16, &a), MOLORA_RESULT_SUCCESS);
        assert_memory_equal(W1, W2, 5 * 4 * sizeof(float));
        nm = (size_t)37 * 29;
        M32 = rnd_vec(nm, 1.0); M16 = malloc(nm * sizeof *M16);
        memcpy(M16, M32, nm * sizeof *M16);
        assert_int_equal(molora_merge(m32, 0, wts, M32), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_merge(m16, 0, wts, M16), MOLORA_RESULT_SUCCESS);
        for (k = 0; k < nm; k++) err_add(&e, M16[k], M32[k], fabs(M32[k]) + 1.0);
        CHECK_ERR(e, 1e-6, ff ? "merge fan_in_fan_out" : "merge");
        free(X); free(W1); free(W2); free(M32); free(M16); free(w);
        molora_model_free(m32); molora_model_free(m16);
        fix_free(&f);
    }
}

/* F32 and F16 inputs rounded to the nearest BF16, ties to even: seen through merge of a rank-1
   expert with B = 1 (W = A, exactly), against ref_round_bf16 */
static void check_stored(const void *A, molora_type type, int n, const double *want, const char *what)
{
    float B = 1.0f, wt = 1.0f, *W = calloc((size_t)n, sizeof *W);
    molora_expert_desc ex;
    molora_layer_desc ld;
    molora_model_desc md;
    molora_model *m;
    int k;
    memset(&ex, 0, sizeof ex); memset(&ld, 0, sizeof ld); memset(&md, 0, sizeof md);
    ex.rank = 1; ex.A = A; ex.A_type = type; ex.B = &B; ex.scaling = 1.0f;
    ld.d_in = n; ld.d_out = 1; ld.n_experts = 1; ld.experts = &ex; ld.routing = MOLORA_ROUTING_FIXED;
    md.n_layers = 1; md.layers = &ld; md.flags = MOLORA_MODEL_EXPERTS_BF16;
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_merge(m, 0, &wt, W), MOLORA_RESULT_SUCCESS);
    for (k = 0; k < n; k++)
        if ((double)W[k] != want[k]) fail_msg("%s [%d]: stored %.9g, want %.9g", what, k, (double)W[k], want[k]);
    molora_model_free(m);
    free(W);
}

static void test_rounding(void **s)
{
    /* ties: 1 + 2^-8 to 1 (even), 1 + 3 2^-8 to 1 + 2^-6 (even), just above a tie up; negative;
       the largest finite float that stays below BF16's Inf; subnormals; zero of both signs */
    float A[16];
    double want[16];
    uint16_t H[4] = {0x3c01u, 0x0001u, 0xfbffu, 0x3555u};   /* F16: 1 + 2^-10, 2^-24, -65504, 0.333... */
    int k, n = 0;
    (void)s;
    A[n++] = 1.0f + 0x1p-8f; A[n++] = 1.0f + 3 * 0x1p-8f; A[n++] = 1.0f + 0x1p-8f + 0x1p-20f;
    A[n++] = -(1.0f + 3 * 0x1p-8f); A[n++] = bits_f(0x7f7f7fffu); A[n++] = bits_f(0x00000001u);
    A[n++] = bits_f(0x00018000u); A[n++] = bits_f(0x80000000u); A[n++] = 0.0f; A[n++] = 3.14159265f;
    A[n++] = 1e-40f; A[n++] = -2.5e-39f;
    for (k = 0; k < n; k++) want[k] = ref_round_bf16(A[k]);
    assert_true(want[0] == 1.0 && want[1] == 1.0 + 0x1p-6 && want[2] == 1.0 + 0x1p-7);   /* the reference itself */
    check_stored(A, MOLORA_TYPE_F32, n, want, "F32 to BF16");
    /* random F32 */
    {
        float R[257];
        double w[257];
        for (k = 0; k < 257; k++) {
            R[k] = (float)(rnd() * pow(2.0, (double)(k % 60) - 30));
            w[k] = ref_round_bf16(R[k]);
        }
        check_stored(R, MOLORA_TYPE_F32, 257, w, "random F32 to BF16");
    }
    for (k = 0; k < 4; k++) {
        float f;
        molora_convert_f32(&H[k], MOLORA_TYPE_F16, 1, &f);
        want[k] = ref_round_bf16(f);
    }
    check_stored(H, MOLORA_TYPE_F16, 4, want, "F16 to BF16");
    /* BF16 inputs are kept bit for bit, subnormals and -0 included */
    {
        uint16_t Bb[5] = {0x0001u, 0x8000u, 0x7f7fu, 0xff7fu, 0x3f81u};
        for (k = 0; k < 5; k++) want[k] = bf16_f(Bb[k]);
        check_stored(Bb, MOLORA_TYPE_BF16, 5, want, "BF16 kept");
    }
}

/* errors at their codes, with a message naming the expert and matrix */
static char g_msg[400];
static int g_code;
static void on_log(void *user, molora_result r, const char *msg)
{
    (void)user; g_code = (int)r; snprintf(g_msg, sizeof g_msg, "%s", msg);
}
static molora_result init_one(const void *A, molora_type ta, const void *B, molora_type tb, unsigned flags)
{
    molora_expert_desc ex;
    molora_layer_desc ld;
    molora_model_desc md;
    molora_model *m = NULL;
    molora_result r;
    memset(&ex, 0, sizeof ex); memset(&ld, 0, sizeof ld); memset(&md, 0, sizeof md);
    ex.rank = 1; ex.A = A; ex.A_type = ta; ex.B = B; ex.B_type = tb;
    ld.d_in = 2; ld.d_out = 2; ld.n_experts = 1; ld.experts = &ex; ld.routing = MOLORA_ROUTING_FIXED;
    md.n_layers = 1; md.layers = &ld; md.flags = flags; md.log = on_log;
    g_msg[0] = 0;
    r = molora_model_init(&md, &m);
    if (r == MOLORA_RESULT_SUCCESS) assert_non_null(m);
    else assert_null(m);
    molora_model_free(m);
    return r;
}
static void test_errors(void **s)
{
    float ok[2] = {1.0f, -2.0f}, big[2] = {1.0f, 0}, nan2[2] = {NAN, 1.0f};
    uint16_t inf16[2] = {0x3f80u, 0x7f80u};
    (void)s;
    big[1] = bits_f(0x7f7f8000u);   /* the smallest float that rounds to BF16's Inf */
    assert_int_equal(init_one(ok, MOLORA_TYPE_F32, big, MOLORA_TYPE_F32, MOLORA_MODEL_EXPERTS_BF16),
                     MOLORA_RESULT_NON_FINITE);
    assert_non_null(strstr(g_msg, "layer 0 expert 0: B has a value beyond BF16's range"));
    big[1] = FLT_MAX;
    assert_int_equal(init_one(big, MOLORA_TYPE_F32, ok, MOLORA_TYPE_F32, MOLORA_MODEL_EXPERTS_BF16),
                     MOLORA_RESULT_NON_FINITE);
    assert_non_null(strstr(g_msg, "A has a value beyond BF16's range"));
    /* the same values are fine in float32, and the largest that stays finite is fine in BF16 */
    assert_int_equal(init_one(big, MOLORA_TYPE_F32, ok, MOLORA_TYPE_F32, 0), MOLORA_RESULT_SUCCESS);
    big[1] = bits_f(0x7f7f7fffu);
    assert_int_equal(init_one(big, MOLORA_TYPE_F32, ok, MOLORA_TYPE_F32, MOLORA_MODEL_EXPERTS_BF16),
                     MOLORA_RESULT_SUCCESS);
    /* NaN / Inf refused as before, in both precisions */
    assert_int_equal(init_one(nan2, MOLORA_TYPE_F32, ok, MOLORA_TYPE_F32, MOLORA_MODEL_EXPERTS_BF16),
                     MOLORA_RESULT_NON_FINITE);
    assert_non_null(strstr(g_msg, "A or B has NaN or Inf"));
    assert_int_equal(init_one(ok, MOLORA_TYPE_F32, inf16, MOLORA_TYPE_BF16, MOLORA_MODEL_EXPERTS_KEEP_BF16),
                     MOLORA_RESULT_NON_FINITE);
    /* an unknown flag bit */
    assert_int_equal(init_one(ok, MOLORA_TYPE_F32, ok, MOLORA_TYPE_F32, 8u), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_non_null(strstr(g_msg, "unknown flags 0x8"));
    assert_int_equal(molora_model_memory(NULL, NULL, NULL), MOLORA_RESULT_INVALID_ARGUMENT);
}

/* the packed experts' bytes halve exactly; KEEP_BF16 keeps only all-BF16 layers; the block shrinks */
static void test_memory(void **s)
{
    fix f;
    molora_model *m32, *m16, *mk;
    molora_layer_info li;
    size_t b32, e32, b16, e16, bk, ek, want;
    int i;
    (void)s;
    fix_make(&f, 256, 192, 6, 3, 8, MOLORA_ROUTING_TOPK, 1);
    for (want = 0, i = 0; i < f.n; i++) want += (size_t)f.rank[i] * (256 + 192);
    m32 = fix_model(&f, 0); m16 = fix_model(&f, MOLORA_MODEL_EXPERTS_BF16);
    mk = fix_model(&f, MOLORA_MODEL_EXPERTS_KEEP_BF16);
    assert_int_equal(molora_model_memory(m32, &b32, &e32), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_model_memory(m16, &b16, &e16), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_model_memory(mk, &bk, &ek), MOLORA_RESULT_SUCCESS);
    assert_true(e32 == 4 * want && e16 == 2 * want && ek == e16);
    assert_true(b16 == bk && b32 - b16 >= e32 - e16 - 3 * 64 && b32 - b16 <= e32 - e16 + 3 * 64);
    assert_int_equal(molora_model_layer_info(m32, 0, &li), MOLORA_RESULT_SUCCESS);
    assert_int_equal(li.expert_type, MOLORA_TYPE_F32);
    molora_model_free(mk);
    /* one expert's B in F32: KEEP_BF16 keeps that layer float32 */
    f.ex[2].B = f.B[2]; f.ex[2].B_type = MOLORA_TYPE_F32;
    mk = fix_model(&f, MOLORA_MODEL_EXPERTS_KEEP_BF16);
    assert_int_equal(molora_model_memory(mk, NULL, &ek), MOLORA_RESULT_SUCCESS);
    assert_true(ek == e32);
    assert_int_equal(molora_model_layer_info(mk, 0, &li), MOLORA_RESULT_SUCCESS);
    assert_int_equal(li.expert_type, MOLORA_TYPE_F32);
    molora_model_free(m32); molora_model_free(m16); molora_model_free(mk);
    fix_free(&f);
}

/* ARROW's prototypes computed at init from the stored BF16 values: the float32 layer's, bitwise */
static void test_arrow_prototypes(void **s)
{
    fix f;
    molora_model *m32, *m16;
    float *P32, *P16;
    how h;
    (void)s;
    fix_make(&f, 48, 40, 5, 2, 6, MOLORA_ROUTING_ARROW, 0);
    f.ld.gate_weight = NULL; f.ld.top_k = 2;
    m32 = fix_model(&f, 0); m16 = fix_model(&f, MOLORA_MODEL_EXPERTS_BF16);
    P32 = malloc(5 * 48 * sizeof *P32); P16 = malloc(5 * 48 * sizeof *P16);
    assert_int_equal(molora_model_prototypes(m32, 0, P32), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_model_prototypes(m16, 0, P16), MOLORA_RESULT_SUCCESS);
    assert_memory_equal(P32, P16, 5 * 48 * sizeof *P32);
    memset(&h, 0, sizeof h);
    h.T = 9; h.output = MOLORA_OUTPUT_DELTA;
    check_case(&f, &h, "arrow");
    free(P32); free(P16);
    molora_model_free(m32); molora_model_free(m16);
    fix_free(&f);
}

/* the BF16 kernels of this CPU against their twins; widening against the portable one, every
   bit pattern, any alignment */
double molora__kernel_check(int kernel, int T, int N, int K, int q, int acc);
/* nt16 (8) and nn16 (9) against their twins: T = 1..16, K and N across the 16-lane steps */
static void check_bf16_kernels(void)
{
    static const int Ts[] = {1, 2, 5, 7, 8, 9, 13, 16}, Ks[] = {1, 8, 15, 16, 17, 100};
    static const int Ms[] = {1, 3, 16, 17, 50, 67, 130};   /* nn16: strips of 32 / 64 columns, masked tails */
    int q, ti, ki, mi;
    for (q = 8; q <= 9; q++)
        for (ti = 0; ti < 8; ti++)
            for (ki = 0; ki < 6; ki++)
                for (mi = 0; mi < 7; mi++) {
                    double e = molora__kernel_check(q, Ts[ti], Ms[mi], Ks[ki], 0, 0);
                    if (e == -1.0) { print_message("no BF16 kernels on this CPU or build\n"); return; }
                    if (!(e <= 1e-6)) fail_msg("kernel %d T %d N %d K %d: %g", q, Ts[ti], Ms[mi], Ks[ki], e);
                }
}
static void test_widen_kernel(void **s)
{
    static const int Ns[] = {0, 1, 15, 16, 17, 255, 4096};
    int i, q;
    (void)s;
    check_bf16_kernels();
    for (i = 0; i < (int)(sizeof Ns / sizeof *Ns); i++)
        for (q = 0; q < 3; q++) {
            double e = molora__kernel_check(7, 1, Ns[i], 1, q, 0);
            if (e == -1.0) { print_message("no fast widening kernel on this CPU or build\n"); return; }
            if (e != 0.0) fail_msg("widen %d values at offset %d: %g", Ns[i], q, e);
        }
}

#ifndef MOLORA_NO_FILES
/* a BF16 adapter file (MoLA, BF16 experts): KEEP_BF16 keeps it BF16, and its forward is the
   float32 model's within 1e-6 of each row's largest value */
static void test_bf16_fixture(void **s)
{
    molora_load_desc d;
    molora_adapter *ad;
    molora_model_desc md;
    int l;
    (void)s;
    memset(&d, 0, sizeof d);
    assert_int_equal(molora_adapter_open("tests/fixtures/mola", &d, &ad), MOLORA_RESULT_SUCCESS);
    molora_adapter_model_desc(ad, &md);
    for (l = 0; l < md.n_layers; l++) {
        molora_model_desc one = md;
        molora_model *m32, *m16;
        molora_layer_info li;
        molora_forward_args a;
        size_t ws, k, b32, b16, e32, e16;
        int T = 5;
        float *X, *Y32, *Y16;
        void *w;
        err e = {0, 0, 0};
        one.n_layers = 1; one.layers = &md.layers[l];
        assert_int_equal(molora_model_init(&one, &m32), MOLORA_RESULT_SUCCESS);
        one.flags |= MOLORA_MODEL_EXPERTS_KEEP_BF16;
        assert_int_equal(molora_model_init(&one, &m16), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_model_layer_info(m16, 0, &li), MOLORA_RESULT_SUCCESS);
        assert_int_equal(li.expert_type, MOLORA_TYPE_BF16);
        assert_int_equal(molora_model_memory(m32, &b32, &e32), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_model_memory(m16, &b16, &e16), MOLORA_RESULT_SUCCESS);
        /* a tiny layer: the block may grow by the 64 bytes that place the gate at its float32 phase */
        if (!(e32 == 2 * e16 && b16 <= b32 + 64))
            fail_msg("layer %d: block %zu / %zu, experts %zu / %zu", l, b32, b16, e32, e16);
        X = rnd_vec((size_t)T * li.d_in, 1.0);
        Y32 = calloc((size_t)T * li.d_out, 4); Y16 = calloc((size_t)T * li.d_out, 4);
        assert_int_equal(molora_workspace_size(m16, T, &ws), MOLORA_RESULT_SUCCESS);
        w = malloc(ws);
        memset(&a, 0, sizeof a);
        a.n_tokens = T; a.x = X; a.output = MOLORA_OUTPUT_DELTA; a.workspace = w; a.workspace_size = ws;
        a.y = Y32;
        assert_int_equal(molora_forward(m32, &a), MOLORA_RESULT_SUCCESS);
        a.y = Y16;
        assert_int_equal(molora_forward(m16, &a), MOLORA_RESULT_SUCCESS);
        for (k = 0; k < (size_t)T * li.d_out; k++) {   /* against the row's largest value (no reference terms here) */
            size_t r0 = k - k % (size_t)li.d_out, j;
            double mx = 0;
            for (j = 0; j < (size_t)li.d_out; j++) mx = fmax(mx, fabs(Y32[r0 + j]));
            err_add(&e, Y16[k], Y32[k], mx);
        }
        CHECK_ERR(e, 1e-6, "mola fixture");
        free(X); free(Y32); free(Y16); free(w);
        molora_model_free(m32); molora_model_free(m16);
    }
    molora_adapter_free(ad);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_match_f32),
        cmocka_unit_test(test_route_merge),
        cmocka_unit_test(test_rounding),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_arrow_prototypes),
        cmocka_unit_test(test_widen_kernel),
#ifndef MOLORA_NO_FILES
        cmocka_unit_test(test_bf16_fixture),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

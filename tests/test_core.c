/* Core layer tests: every routing rule, mask case and output mode against a naive float64
   reference written here, apart from the library (per token, per expert, no packing).
   Built twice: against OpenBLAS and with MOLORA_NO_BLAS. The library is compiled once in
   tests/molora_impl.c, so this file sees only the public declarations. */
#define TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#define TEST_COUNT_ALLOCS   /* linked with -Wl,--wrap=malloc,calloc,realloc */
#include "test_util.h"   /* cmocka, rnd / rnd_vec, err_add / CHECK_ERR */

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "molora.h"


/* ---- the test layer: one set of random arrays, seen by the reference and by molora -------- */
#define MAXN 256   /* the adapter-pool test: 256 experts */
typedef struct fix {
    int d_in, d_out, n, routing, top_k, tau_max_set;
    int rank[MAXN];
    float scaling[MAXN], lora_alpha[MAXN];
    int rslora[MAXN];
    float *A[MAXN], *B[MAXN], *W0, *bias, *Wg, *bg, *wt, *e;
    float bt, temperature, threshold, tau_max;
} fix;

static double ref_scaling(const fix *f, int i)
{
    double alpha = f->lora_alpha[i] != 0.0f ? f->lora_alpha[i] : f->rank[i];
    if (f->scaling[i] != 0.0f) return f->scaling[i];
    return f->rslora[i] ? alpha / sqrt((double)f->rank[i]) : alpha / f->rank[i];
}

/* delta of expert i on token x, double: s_i B_i (A_i x) */
#define MAXR 256   /* largest rank the reference takes: above every blocking size of molora.h */
static void ref_expert(const fix *f, int i, const float *x, double *out)
{
    double h[MAXR];
    int j, k, o;
    assert_true(f->rank[i] <= MAXR);
    for (j = 0; j < f->rank[i]; j++) {
        h[j] = 0;
        for (k = 0; k < f->d_in; k++) h[j] += (double)f->A[i][j * f->d_in + k] * x[k];
    }
    for (o = 0; o < f->d_out; o++) {
        double s = 0;
        for (j = 0; j < f->rank[i]; j++) s += (double)f->B[i][o * f->rank[i] + j] * h[j];
        out[o] = ref_scaling(f, i) * s;
    }
}

static double temp_of(const fix *f) { return f->temperature > 0 ? f->temperature : 1.0; }

/* softmax over allowed of z / temperature */
static void ref_softmax(const fix *f, const double *z, const uint8_t *allow, double *p)
{
    double mx = -INFINITY, s = 0;
    int i;
    for (i = 0; i < f->n; i++) if (!allow || allow[i]) mx = fmax(mx, z[i] / temp_of(f));
    for (i = 0; i < f->n; i++) { p[i] = (!allow || allow[i]) ? exp(z[i] / temp_of(f) - mx) : 0; s += p[i]; }
    for (i = 0; i < f->n; i++) p[i] = s > 0 ? p[i] / s : 0;
}

/* Routing weights of one token, and the margin of its discrete decision (1e9 when none). */
static void ref_route(const fix *f, const float *x, const uint8_t *allow, double *w, double *margin)
{
    int n = f->n, i, k;
    double z[MAXN] = {0}, p[MAXN] = {0};
    *margin = 1e9;
    if (f->routing == MOLORA_ROUTING_MOLE_OUTPUT) {
        double *v = calloc((size_t)n * f->d_out, sizeof *v), nrm = 0;
        for (i = 0; i < n; i++)
            if (!allow || allow[i]) ref_expert(f, i, x, v + (size_t)i * f->d_out);
        for (k = 0; k < n * f->d_out; k++) nrm += v[k] * v[k];
        nrm = fmax(sqrt(nrm), 1e-12);
        for (i = 0; i < n; i++) {
            z[i] = f->bg ? f->bg[i] : 0;
            for (k = 0; k < n * f->d_out; k++) z[i] += (double)f->e[(size_t)i * n * f->d_out + k] * v[k] / nrm;
        }
        free(v);
        ref_softmax(f, z, allow, w);
        return;
    }
    for (i = 0; i < n; i++) {
        z[i] = f->bg ? f->bg[i] : 0;
        for (k = 0; k < f->d_in; k++) z[i] += (double)f->Wg[i * f->d_in + k] * x[k];
    }
    ref_softmax(f, z, allow, p);
    switch (f->routing) {
    case MOLORA_ROUTING_DENSE:
        memcpy(w, p, sizeof(double) * n);
        break;
    case MOLORA_ROUTING_TOPK: {   /* selection sort by z, stable: lower index first on ties */
        int order[MAXN], cnt = 0, kk = f->top_k ? f->top_k : (n > 1 ? 2 : 1), a, b;
        uint8_t sel[MAXN] = {0};
        for (i = 0; i < n; i++) if (!allow || allow[i]) order[cnt++] = i;
        for (a = 0; a < cnt; a++)
            for (b = a + 1; b < cnt; b++)
                if (z[order[b]] > z[order[a]] || (z[order[b]] == z[order[a]] && order[b] < order[a])) {
                    int t = order[a]; order[a] = order[b]; order[b] = t;
                }
        if (kk > cnt) kk = cnt;
        for (a = 0; a < kk; a++) sel[order[a]] = 1;
        if (kk < cnt) *margin = z[order[kk - 1]] - z[order[kk]];
        ref_softmax(f, z, sel, w);
        break;
    }
    case MOLORA_ROUTING_THRESHOLD: {
        double s = 0;
        for (i = 0; i < n; i++) {
            if (!allow || allow[i]) *margin = fmin(*margin, fabs(p[i] - f->threshold));
            w[i] = (p[i] >= f->threshold && (!allow || allow[i])) ? p[i] : 0;
            s += w[i];
        }
        for (i = 0; i < n; i++) w[i] = s > 0 ? w[i] / s : 0;
        break;
    }
    case MOLORA_ROUTING_ADAMOLE: {
        double u = f->bt, tau, s = 0, tmax = f->tau_max_set ? f->tau_max : 1.0 / n;
        for (k = 0; k < f->d_in; k++) u += (double)f->wt[k] * x[k];
        tau = tmax / (1.0 + exp(-u));
        for (i = 0; i < n; i++) {
            double a = p[i] - tau;
            if (!allow || allow[i]) *margin = fmin(*margin, fabs(a));
            w[i] = ((!allow || allow[i]) && a >= 0) ? a : 0;
            s += w[i];
        }
        if (s == 0) s = 1;
        for (i = 0; i < n; i++) w[i] /= s;
        break;
    }
    default:
        fail_msg("ref_route: routing %d", f->routing);
    }
}

/* The reference layer over T tokens. fixed: (n) or (T, n) caller weights or NULL. */
static void ref_forward(const fix *f, int T, const float *X, const uint8_t *mask, int mask_pt,
                        const float *fixed, int fixed_pt, int full, const float *Yin, double *Y,
                        double *Wout, double *margin)
{
    int t, i, o, k;
    double *d = malloc(sizeof(double) * f->d_out);
    for (t = 0; t < T; t++) {
        const float *x = X + (size_t)t * f->d_in;
        const uint8_t *allow = mask ? mask + (mask_pt ? (size_t)t * f->n : 0) : NULL;
        double *w = Wout + (size_t)t * f->n, *y = Y + (size_t)t * f->d_out;
        margin[t] = 1e9;
        if (fixed)
            for (i = 0; i < f->n; i++) w[i] = (!allow || allow[i]) ? fixed[(fixed_pt ? (size_t)t * f->n : 0) + i] : 0;
        else if (f->n > 0)
            ref_route(f, x, allow, w, &margin[t]);
        for (o = 0; o < f->d_out; o++) {
            if (full) {
                y[o] = f->bias ? f->bias[o] : 0;
                for (k = 0; k < f->d_in; k++) y[o] += (double)f->W0[(size_t)o * f->d_in + k] * x[k];
            } else {
                y[o] = Yin[(size_t)t * f->d_out + o];
            }
        }
        for (i = 0; i < f->n; i++) {
            if (w[i] == 0) continue;
            ref_expert(f, i, x, d);
            for (o = 0; o < f->d_out; o++) y[o] += w[i] * d[o];
        }
    }
    free(d);
}

static void fix_make(fix *f, int d_in, int d_out, int n, const int *ranks, int routing)
{
    int i;
    memset(f, 0, sizeof *f);
    f->d_in = d_in; f->d_out = d_out; f->n = n; f->routing = routing;
    for (i = 0; i < n; i++) {
        f->rank[i] = ranks[i];
        if (i % 3 == 0) f->scaling[i] = 0.7f;           /* given directly */
        else if (i % 3 == 1) f->lora_alpha[i] = 16.0f;  /* lora_alpha / r */
        else { f->lora_alpha[i] = 8.0f; f->rslora[i] = 1; }  /* rsLoRA */
        f->A[i] = rnd_vec((size_t)ranks[i] * d_in, 1.0 / sqrt(d_in));
        f->B[i] = rnd_vec((size_t)d_out * ranks[i], 1.0 / sqrt(ranks[i]));
    }
    f->W0 = rnd_vec((size_t)d_out * d_in, 1.0 / sqrt(d_in));
    f->bias = rnd_vec((size_t)d_out, 0.1);
    f->Wg = rnd_vec((size_t)(n ? n : 1) * d_in, 3.0 / sqrt(d_in));
    f->bg = rnd_vec((size_t)(n ? n : 1), 0.5);
    f->wt = rnd_vec((size_t)d_in, 2.0 / sqrt(d_in));
    f->bt = (float)rnd();
    f->e = rnd_vec((size_t)(n ? n : 1) * (n ? n : 1) * d_out, 3.0);
    f->temperature = 0.0f;
    f->top_k = n > 2 ? 2 : n;
    f->threshold = n ? 0.8f / n : 0.5f;
}

static void fix_free(fix *f)
{
    int i;
    for (i = 0; i < f->n; i++) { free(f->A[i]); free(f->B[i]); }
    free(f->W0); free(f->bias); free(f->Wg); free(f->bg); free(f->wt); free(f->e);
}

static void fix_desc(const fix *f, molora_expert_desc *ex, molora_layer_desc *ld)
{
    int i;
    memset(ld, 0, sizeof *ld);
    for (i = 0; i < f->n; i++) {
        memset(&ex[i], 0, sizeof ex[i]);
        ex[i].rank = f->rank[i]; ex[i].A = f->A[i]; ex[i].B = f->B[i];
        ex[i].scaling = f->scaling[i]; ex[i].lora_alpha = f->lora_alpha[i]; ex[i].use_rslora = f->rslora[i];
    }
    ld->d_in = f->d_in; ld->d_out = f->d_out; ld->n_experts = f->n; ld->experts = ex;
    ld->W0 = f->W0; ld->bias = f->bias; ld->routing = (molora_routing)f->routing;
    ld->gate_weight = f->Wg; ld->gate_bias = f->bg; ld->temperature = f->temperature;
    ld->top_k = f->top_k; ld->threshold = f->threshold;
    ld->tau_max_set = f->tau_max_set; ld->tau_max = f->tau_max;
    ld->threshold_weight = f->wt; ld->threshold_bias = f->bt; ld->mole_gate = f->e;
}

static molora_model *fix_model(const fix *f)
{
    molora_expert_desc ex[MAXN];
    molora_layer_desc ld;
    molora_model_desc md;
    molora_model *m = NULL;
    fix_desc(f, ex, &ld);
    memset(&md, 0, sizeof md);
    md.n_layers = 1; md.layers = &ld;
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
    return m;
}

/* ---- canaries: CANARY bytes of a pattern after every buffer molora writes ----------------- */
#define CANARY 64
static void canary_fill(unsigned char *p)
{
    int i;
    for (i = 0; i < CANARY; i++) p[i] = (unsigned char)(0xA5 ^ i);
}
static void canary_check(const unsigned char *p, const char *what)
{
    int i;
    for (i = 0; i < CANARY; i++)
        if (p[i] != (unsigned char)(0xA5 ^ i)) fail_msg("%s: byte %d past its end was written", what, i);
}
/* n random floats in [-1, 1), then a canary */
static float *buf_new(size_t n)
{
    unsigned char *p = malloc(n * sizeof(float) + CANARY);
    size_t i;
    for (i = 0; i < n; i++) ((float *)p)[i] = (float)rnd();
    canary_fill(p + n * sizeof(float));
    return (float *)p;
}
static void buf_free(void *p, size_t bytes, const char *what)
{
    canary_check((unsigned char *)p + bytes, what);
    free(p);
}

/* a workspace of molora_workspace_size(T) bytes and a canary after it: free with ws_free */
static void *ws_for(const molora_model *m, int T, size_t *size)
{
    unsigned char *ws;
    assert_int_equal(molora_workspace_size(m, T, size), MOLORA_RESULT_SUCCESS);
    ws = malloc(*size + CANARY);
    canary_fill(ws + *size);
    return ws;
}
static void ws_free(void *ws, size_t size) { buf_free(ws, size, "workspace"); }

/* One forward call as a caller makes it, checked against the reference: weights (to 2e-5, or
   bit-equal with exact_w), outputs (to 2e-5 of the row's largest value), counts, the path taken,
   and canaries after the workspace, Y, weights_out and counts_out. */
typedef struct call {
    int T, full, nth;               /* nth > 1: split over nth callers, run one after the other   */
    const uint8_t *mask; int mask_pt;
    const float *fixed; int fixed_pt;
    const float *X;                 /* (T, d_in), or NULL for random rows                         */
    int noskip, exact_w;            /* compare tokens at a tie too; weights equal to the reference */
    int path;                       /* expected path_out, or -1                                   */
    double floor;                   /* least output scale for the relative error (0: 1e-3)        */
    const int32_t *index;           /* adapter_index (T), or NULL; the reference takes it one-hot  */
} call;
static long g_skipped;

static void check_call(const fix *f, const molora_model *m, const call *c, err *ew, err *ey)
{
    int T = c->T, n = f->n, O = f->d_out, t, i, j, k, nth = c->nth > 1 ? c->nth : 1;
    size_t wsz, ny = (size_t)T * O, nw = (size_t)T * n;
    void *ws = ws_for(m, T, &wsz);
    float *Xr = c->X ? NULL : rnd_vec((size_t)T * f->d_in, 1.0);
    const float *X = c->X ? c->X : Xr;
    float *Y = buf_new(ny), *Wm = buf_new(nw), *Yin = malloc(sizeof(float) * (ny + 1));
    int32_t *counts = (int32_t *)buf_new((size_t)n);
    double *Yr = malloc(sizeof(double) * (ny + 1)), *Wr = malloc(sizeof(double) * (nw + 1));
    double *margin = malloc(sizeof(double) * ((size_t)T + 1));
    molora_path path;
    molora_forward_args a;
    float *fixed_hot = NULL;
    memcpy(Yin, Y, sizeof(float) * ny);
    memset(&a, 0, sizeof a);
    a.layer = 0; a.n_tokens = T; a.x = X; a.y = Y;
    a.output = c->full ? MOLORA_OUTPUT_FULL : MOLORA_OUTPUT_DELTA;
    a.expert_mask = c->mask; a.mask_per_token = c->mask_pt;
    a.weights = c->fixed; a.weights_per_token = c->fixed_pt;
    a.weights_out = Wm; a.counts_out = counts; a.adapter_index = c->index;
    a.workspace = ws; a.workspace_size = wsz; a.path_out = &path;
    if (c->index) {   /* the reference: weight 1 on the token's adapter, none for -1 */
        float *hot = calloc(nw + 1, sizeof *hot);
        for (t = 0; t < T; t++) if (c->index[t] >= 0) hot[(size_t)t * n + c->index[t]] = 1.0f;
        fixed_hot = hot;
    }
    for (k = 0; k < nth; k++) {
        a.ith = k; a.nth = nth > 1 ? nth : 0;
        assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_SUCCESS);
        if (c->path >= 0 && (int)path != c->path)
            fail_msg("T = %d, caller %d of %d: path %d, expected %d", T, k, nth, (int)path, c->path);
    }
    ref_forward(f, T, X, c->mask, c->mask_pt, fixed_hot ? fixed_hot : c->fixed, fixed_hot ? 1 : c->fixed_pt, c->full,
                Yin, Yr, Wr, margin);
    for (i = 0; i < n; i++) {
        int cnt = 0;
        for (t = 0; t < T; t++) cnt += Wm[(size_t)t * n + i] != 0.0f;
        assert_int_equal(counts[i], cnt);
    }
    for (t = 0; t < T; t++) {
        double scale = 0;
        if (!c->noskip && margin[t] < 1e-5) { g_skipped++; continue; }   /* decision within float rounding */
        for (i = 0; i < n; i++) {
            size_t q = (size_t)t * n + i;
            if (c->exact_w && (double)Wm[q] != Wr[q])
                fail_msg("T = %d token %d expert %d: weight %.9g, reference %.17g", T, t, i, (double)Wm[q], Wr[q]);
            err_add(ew, Wm[q], Wr[q], 1.0);
        }
        for (j = 0; j < O; j++) scale = fmax(scale, fabs(Yr[(size_t)t * O + j]));
        scale = c->floor > 0 ? fmax(scale, c->floor) : scale + 1e-3;
        for (j = 0; j < O; j++) err_add(ey, Y[(size_t)t * O + j], Yr[(size_t)t * O + j], scale);
    }
    ws_free(ws, wsz);
    buf_free(Y, ny * sizeof(float), "y"); buf_free(Wm, nw * sizeof(float), "weights_out");
    buf_free(counts, (size_t)n * sizeof(int32_t), "counts_out");
    free(Xr); free(Yin); free(Yr); free(Wr); free(margin); free(fixed_hot);
}

/* One grid run: masks none / batch / per token (allocated to their exact size), fixed weights
   none / batch / per token, random rows. */
typedef struct run_opts { int T, mask_mode, fixed_mode, full; } run_opts;

static void run_one(const fix *f, const molora_model *m, run_opts o, err *ew, err *ey)
{
    int T = o.T, n = f->n, t, i;
    float *fixed = NULL;
    uint8_t *mask = NULL;
    call c;
    if (o.mask_mode == 1) {   /* batch mask: remove expert 1 (and 3) */
        mask = malloc((size_t)n);
        for (i = 0; i < n; i++) mask[i] = !(i == 1 || i == 3);
    } else if (o.mask_mode == 2) {   /* per-token masks, some tokens fully masked */
        mask = malloc((size_t)T * n + !T);
        for (t = 0; t < T; t++)
            for (i = 0; i < n; i++) mask[(size_t)t * n + i] = (t % 5 == 4) ? 0 : (rnd() > -0.4);
    }
    if (o.fixed_mode) fixed = rnd_vec((o.fixed_mode == 2 ? (size_t)T * n : (size_t)n), 1.0);
    memset(&c, 0, sizeof c);
    c.T = T; c.full = o.full; c.mask = mask; c.mask_pt = o.mask_mode == 2;
    c.fixed = fixed; c.fixed_pt = o.fixed_mode == 2; c.path = -1;
    check_call(f, m, &c, ew, ey);
    free(fixed); free(mask);
}

/* The grid of the issue: N in {1,2,8}, ranks {1},{4},{16}, mixed; T in {0,1,7,64}; d not a
   multiple of 8; masks none / batch / per token; full and delta output. */
static void grid(int routing, int fixed_mode, const char *name)
{
    static const int Ns[] = {1, 2, 8}, Ts[] = {0, 1, 7, 64}, dims[][2] = {{13, 11}, {37, 50}};
    static const int mixed[] = {1, 4, 16, 3, 7, 2, 16, 5};
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    int a, b, c, d, mm, full, i;
    g_skipped = 0;
    for (a = 0; a < 3; a++)
        for (b = 0; b < 4; b++)
            for (d = 0; d < 2; d++) {
                fix f;
                int ranks[MAXN];
                molora_model *m;
                for (i = 0; i < Ns[a]; i++) ranks[i] = b == 0 ? 1 : b == 1 ? 4 : b == 2 ? 16 : mixed[i];
                fix_make(&f, dims[d][0], dims[d][1], Ns[a], ranks, routing);
                if (routing == MOLORA_ROUTING_ADAMOLE && d == 1) { f.tau_max_set = 1; f.tau_max = 1.6f / Ns[a]; }
                if (d == 1) f.temperature = 1.7f;
                if (routing == MOLORA_ROUTING_TOPK && d == 1) f.top_k = Ns[a];
                m = fix_model(&f);
                for (c = 0; c < 4; c++)
                    for (mm = 0; mm < 3; mm++)
                        for (full = 0; full < 2; full++) {
                            run_opts o;
                            o.T = Ts[c]; o.mask_mode = mm; o.fixed_mode = fixed_mode; o.full = full;
                            run_one(&f, m, o, &ew, &ey);
                        }
                molora_model_free(m);
                fix_free(&f);
            }
    print_message("  %-12s weights: max abs err %.2e over %ld | output: max abs %.2e, max rel %.2e over %ld | %ld "
                  "tokens skipped (margin < 1e-5)\n",
                  name, ew.abs, ew.n, ey.abs, ey.rel, ey.n, g_skipped);
    CHECK_ERR(ew, 2e-5, "routing weights");
    CHECK_ERR(ey, 2e-5, "layer output");
}

static void test_grid_dense(void **s) { (void)s; grid(MOLORA_ROUTING_DENSE, 0, "dense"); }
static void test_grid_topk(void **s) { (void)s; grid(MOLORA_ROUTING_TOPK, 0, "topk"); }
static void test_grid_threshold(void **s) { (void)s; grid(MOLORA_ROUTING_THRESHOLD, 0, "threshold"); }
static void test_grid_adamole(void **s) { (void)s; grid(MOLORA_ROUTING_ADAMOLE, 0, "adamole"); }
static void test_grid_mole_output(void **s) { (void)s; grid(MOLORA_ROUTING_MOLE_OUTPUT, 0, "mole_output"); }
static void test_grid_fixed_batch(void **s) { (void)s; grid(MOLORA_ROUTING_FIXED, 1, "fixed/batch"); }
static void test_grid_fixed_token(void **s) { (void)s; grid(MOLORA_ROUTING_FIXED, 2, "fixed/token"); }
static void test_grid_override(void **s) { (void)s; grid(MOLORA_ROUTING_ADAMOLE, 2, "override"); }

/* ---- a tiny hand-built layer for exact edge cases ----------------------------------------- */
/* d_in = d_out = 2, W0 = I, experts rank 1 with A_i = e_0^T, B_i = (i+1) e_1, scaling 1, so the
   delta of token x is (0, x0 * sum_i w_i (i+1)). Gate weight 0: the logits are the gate bias. */
typedef struct tiny {
    molora_expert_desc ex[MAXN];
    float A[2], B[MAXN][2], W0[4], Wg[2 * MAXN], wt[2];
    molora_layer_desc ld;
} tiny;
static void tiny_make(tiny *z, int n, int routing, const float *bias)
{
    int i;
    memset(z, 0, sizeof *z);
    z->A[0] = 1; z->W0[0] = 1; z->W0[3] = 1;
    for (i = 0; i < n; i++) {
        z->B[i][1] = (float)(i + 1);
        z->ex[i].rank = 1; z->ex[i].A = z->A; z->ex[i].B = z->B[i]; z->ex[i].scaling = 1;
    }
    z->ld.d_in = 2; z->ld.d_out = 2; z->ld.n_experts = n; z->ld.experts = z->ex; z->ld.W0 = z->W0;
    z->ld.routing = (molora_routing)routing; z->ld.gate_weight = z->Wg; z->ld.gate_bias = bias;
    z->ld.threshold_weight = z->wt;
}
static molora_result tiny_run(const molora_layer_desc *ld, const uint8_t *mask, const float *x, int T,
                              float *y, float *w, int32_t *counts)
{
    molora_model_desc md;
    molora_model *m;
    molora_forward_args a;
    molora_result r;
    size_t wsz;
    void *ws;
    memset(&md, 0, sizeof md);
    md.n_layers = 1; md.layers = ld;
    r = molora_model_init(&md, &m);
    if (r != MOLORA_RESULT_SUCCESS) return r;
    ws = ws_for(m, T, &wsz);
    memset(&a, 0, sizeof a);
    a.n_tokens = T; a.x = x; a.y = y; a.expert_mask = mask; a.weights_out = w; a.counts_out = counts;
    a.workspace = ws; a.workspace_size = wsz;
    r = molora_forward(m, &a);
    ws_free(ws, wsz);
    molora_model_free(m);
    return r;
}

static void test_mask_worked_example(void **s)
{   /* the dense rule: softmax, logits 0, ln 2, ln 3, mask out expert 1 -> 1/4, 0, 3/4 */
    float bias[3], x[2] = {1, 0}, y[2], w[3];
    uint8_t mask[3] = {1, 0, 1};
    tiny z;
    (void)s;
    bias[0] = 0; bias[1] = logf(2); bias[2] = logf(3);
    tiny_make(&z, 3, MOLORA_ROUTING_DENSE, bias);
    assert_int_equal(tiny_run(&z.ld, mask, x, 1, y, w, NULL), 0);
    assert_true(fabsf(w[0] - 0.25f) < 1e-6f && w[1] == 0.0f && fabsf(w[2] - 0.75f) < 1e-6f);
    assert_true(fabsf(y[1] - (0.25f * 1 + 0.75f * 3)) < 1e-6f && y[0] == 1.0f);
    /* unmasked: 1/6, 2/6, 3/6 */
    assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, NULL), 0);
    assert_true(fabsf(w[0] - 1.0f / 6) < 1e-6f && fabsf(w[1] - 2.0f / 6) < 1e-6f && fabsf(w[2] - 0.5f) < 1e-6f);
}

static void test_fully_masked_is_frozen(void **s)
{
    static const int rules[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_THRESHOLD,
                                MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_MOLE_OUTPUT};
    float bias[3] = {0.1f, 0.2f, 0.3f}, x[2] = {2, 5}, y[2], w[3], e[3 * 6];
    uint8_t mask[3] = {0, 0, 0};
    int32_t counts[3];
    unsigned r;
    tiny z;
    (void)s;
    for (r = 0; r < sizeof rules / sizeof *rules; r++) {
        tiny_make(&z, 3, rules[r], bias);
        memset(e, 0, sizeof e);
        z.ld.mole_gate = e;
        assert_int_equal(tiny_run(&z.ld, mask, x, 1, y, w, counts), 0);
        assert_true(y[0] == 2.0f && y[1] == 5.0f);
        assert_true(w[0] == 0 && w[1] == 0 && w[2] == 0 && counts[0] == 0 && counts[1] == 0 && counts[2] == 0);
    }
}

static void test_topk_ties_lowest_index(void **s)
{
    float bias[4] = {0.5f, 1.0f, 1.0f, 1.0f}, x[2] = {1, 0}, y[2], w[4];
    uint8_t mask[4] = {1, 1, 0, 1};
    tiny z;
    (void)s;
    tiny_make(&z, 4, MOLORA_ROUTING_TOPK, bias);
    z.ld.top_k = 2;
    assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, NULL), 0);
    assert_true(w[0] == 0 && w[1] == 0.5f && w[2] == 0.5f && w[3] == 0);
    assert_int_equal(tiny_run(&z.ld, mask, x, 1, y, w, NULL), 0);   /* 2 masked: 1 and 3 */
    assert_true(w[0] == 0 && w[1] == 0.5f && w[2] == 0 && w[3] == 0.5f);
    z.ld.top_k = 0;   /* AlphaLoRA's default: 2 when N > 1 */
    assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, NULL), 0);
    assert_true(w[1] == 0.5f && w[2] == 0.5f);
    /* only one allowed: min(k, allowed) = 1 */
    mask[0] = 0; mask[1] = 0; mask[3] = 0; mask[2] = 1;
    assert_int_equal(tiny_run(&z.ld, mask, x, 1, y, w, NULL), 0);
    assert_true(w[2] == 1.0f && w[0] == 0 && w[1] == 0 && w[3] == 0);
}

static void test_topk_k_equals_n_is_dense(void **s)
{
    fix f;
    int ranks[MAXN] = {3, 3, 3, 3, 3, 3, 3, 3}, T = 9, i;
    molora_model *m1, *m2;
    float *X, *W1, *W2;
    size_t wsz;
    void *ws;
    molora_forward_args a;
    (void)s;
    fix_make(&f, 21, 19, 8, ranks, MOLORA_ROUTING_TOPK);
    f.top_k = 8;
    m1 = fix_model(&f);
    f.routing = MOLORA_ROUTING_DENSE;
    m2 = fix_model(&f);
    X = rnd_vec((size_t)T * 21, 1); W1 = malloc(sizeof(float) * T * 8); W2 = malloc(sizeof(float) * T * 8);
    ws = ws_for(m1, T, &wsz);
    memset(&a, 0, sizeof a);
    a.n_tokens = T; a.x = X; a.workspace = ws; a.workspace_size = wsz;
    a.weights_out = W1; assert_int_equal(molora_route(m1, &a), 0);
    a.weights_out = W2; assert_int_equal(molora_route(m2, &a), 0);
    for (i = 0; i < T * 8; i++) assert_true(fabsf(W1[i] - W2[i]) < 1e-6f);
    free(X); free(W1); free(W2); ws_free(ws, wsz);
    molora_model_free(m1); molora_model_free(m2); fix_free(&f);
}

static void test_threshold_static(void **s)
{   /* p = 1/6, 2/6, 3/6 with threshold 0.3 -> experts 1, 2 renormalised: 0.4, 0.6 */
    float bias[3], x[2] = {1, 0}, y[2], w[3];
    tiny z;
    (void)s;
    bias[0] = 0; bias[1] = logf(2); bias[2] = logf(3);
    tiny_make(&z, 3, MOLORA_ROUTING_THRESHOLD, bias);
    z.ld.threshold = 0.3f;
    assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, NULL), 0);
    assert_true(w[0] == 0 && fabsf(w[1] - 0.4f) < 1e-6f && fabsf(w[2] - 0.6f) < 1e-6f);
    z.ld.threshold = 0.9f;   /* all below: frozen layer */
    assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, NULL), 0);
    assert_true(w[0] == 0 && w[1] == 0 && w[2] == 0 && y[0] == 1 && y[1] == 0);
}

static void test_adamole_edges(void **s)
{
    float bias[4] = {0, 0.3f, 0.6f, 0.9f}, x[2] = {1, 0}, y[2], w[4], p[4], sum = 0;
    int32_t counts[4];
    int i;
    tiny z;
    (void)s;
    for (i = 0; i < 4; i++) sum += expf(bias[i]);
    for (i = 0; i < 4; i++) p[i] = expf(bias[i]) / sum;
    tiny_make(&z, 4, MOLORA_ROUTING_ADAMOLE, bias);
    /* tau_max = 0: tau = 0, w = p (dense softmax) */
    z.ld.tau_max_set = 1; z.ld.tau_max = 0;
    assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, counts), 0);
    for (i = 0; i < 4; i++) assert_true(fabsf(w[i] - p[i]) < 1e-6f);
    /* default tau_max = 1/N, threshold logit 0: tau = 1/8; p - tau where p >= tau */
    z.ld.tau_max_set = 0;
    assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, counts), 0);
    {
        float u[4], s2 = 0;
        for (i = 0; i < 4; i++) { u[i] = p[i] >= 0.125f ? p[i] - 0.125f : 0; s2 += u[i]; }
        for (i = 0; i < 4; i++) assert_true(fabsf(w[i] - u[i] / s2) < 1e-6f);
        assert_true(counts[0] + counts[1] + counts[2] + counts[3] >= 1);
    }
    /* tau_max large and threshold logit large: every p < tau -> all-zero row -> frozen layer */
    z.ld.tau_max_set = 1; z.ld.tau_max = 1.0f; z.ld.threshold_bias = 20.0f;
    assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, counts), 0);
    for (i = 0; i < 4; i++) assert_true(w[i] == 0 && counts[i] == 0);
    assert_true(y[0] == 1 && y[1] == 0);
    /* N = 1: p = 1 > tau with the default: w = 1 */
    tiny_make(&z, 1, MOLORA_ROUTING_ADAMOLE, bias);
    z.ld.threshold_bias = 5.0f;
    assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, counts), 0);
    assert_true(w[0] == 1.0f && y[1] == 1.0f);
    /* ... unless sigmoid rounds to exactly 1 (logit >= ~17): a = p - tau = 0 is selected with
       weight 0, the row sums to 0 and upstream divides by 1: zero delta (docs/maths.md, ADAMOLE) */
    z.ld.threshold_bias = 30.0f;
    assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, counts), 0);
    assert_true(w[0] == 0.0f && y[1] == 0.0f && counts[0] == 0);
}

static void test_temperature(void **s)
{
    float bias[2] = {0, 1}, x[2] = {1, 0}, y[2], w[2];
    tiny z;
    (void)s;
    tiny_make(&z, 2, MOLORA_ROUTING_DENSE, bias);
    z.ld.temperature = 2.0f;
    assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, NULL), 0);
    assert_true(fabsf(w[1] - 1.0f / (1.0f + expf(-0.5f))) < 1e-6f);
}

static void test_huge_logits_stay_finite(void **s)
{
    float bias[3] = {1e30f, -1e30f, 3e29f}, x[2] = {1, 0}, y[2], w[3];
    tiny z;
    (void)s;
    tiny_make(&z, 3, MOLORA_ROUTING_DENSE, bias);
    assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, NULL), 0);
    assert_true(w[0] == 1.0f && w[1] == 0 && w[2] == 0 && isfinite(y[1]) && y[1] == 1.0f);
}

static void test_zero_experts_is_frozen(void **s)
{
    float x[4] = {1, 2, 3, 4}, y[4] = {9, 9, 9, 9};
    tiny z;
    (void)s;
    tiny_make(&z, 0, MOLORA_ROUTING_TOPK, NULL);
    z.ld.top_k = 7;   /* ignored when N = 0 */
    assert_int_equal(tiny_run(&z.ld, NULL, x, 2, y, NULL, NULL), 0);
    assert_true(y[0] == 1 && y[1] == 2 && y[2] == 3 && y[3] == 4);
}

static void test_zero_tokens_noop(void **s)
{
    fix f;
    int ranks[2] = {4, 4};
    molora_model *m;
    molora_forward_args a;
    float y = 42.0f, w = 7.0f;
    int32_t counts[2] = {5, 5};
    (void)s;
    fix_make(&f, 13, 11, 2, ranks, MOLORA_ROUTING_DENSE);
    m = fix_model(&f);
    memset(&a, 0, sizeof a);
    a.n_tokens = 0; a.y = &y; a.weights_out = &w; a.counts_out = counts;   /* x NULL is fine at T = 0 */
    assert_int_equal(molora_forward(m, &a), 0);
    assert_true(y == 42.0f && w == 7.0f && counts[0] == 0 && counts[1] == 0);
    assert_int_equal(molora_route(m, &a), 0);
    molora_model_free(m); fix_free(&f);
}

static void test_route_matches_forward(void **s)
{
    static const int rules[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_THRESHOLD,
                                MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_MOLE_OUTPUT};
    int ranks[MAXN] = {2, 5, 1, 8, 3, 4, 2, 6}, T = 17, r, i;
    (void)s;
    for (r = 0; r < 5; r++) {
        fix f;
        molora_model *m;
        float *X, *Y, *W1, *W2, *Y2;
        size_t wsz;
        void *ws;
        molora_forward_args a;
        fix_make(&f, 29, 23, 8, ranks, rules[r]);
        m = fix_model(&f);
        X = rnd_vec((size_t)T * 29, 1); Y = malloc(sizeof(float) * T * 23); Y2 = malloc(sizeof(float) * T * 23);
        W1 = malloc(sizeof(float) * T * 8); W2 = malloc(sizeof(float) * T * 8);
        ws = ws_for(m, T, &wsz);
        memset(&a, 0, sizeof a);
        a.n_tokens = T; a.x = X; a.y = Y; a.workspace = ws; a.workspace_size = wsz;
        a.weights_out = W1;
        assert_int_equal(molora_forward(m, &a), 0);
        a.weights_out = W2; a.y = NULL;
        assert_int_equal(molora_route(m, &a), 0);
        for (i = 0; i < T * 8; i++) assert_true(W1[i] == W2[i]);
        /* route once, then pass the result as per-token fixed weights: same output */
        a.y = Y2; a.weights = W2; a.weights_per_token = 1; a.weights_out = NULL;
        assert_int_equal(molora_forward(m, &a), 0);
        for (i = 0; i < T * 23; i++) assert_true(fabsf(Y[i] - Y2[i]) <= 1e-5f * (1 + fabsf(Y[i])));
        free(X); free(Y); free(Y2); free(W1); free(W2); ws_free(ws, wsz);
        molora_model_free(m); fix_free(&f);
    }
}

static void test_merge(void **s)
{
    fix f;
    int ranks[MAXN] = {2, 5, 1, 8}, T = 5, i;
    molora_model *m, *mm;
    float w[4] = {0.3f, -0.2f, 0.0f, 1.1f}, *W, *X, *Y1, *Y2;
    molora_layer_desc ld;
    molora_model_desc md;
    size_t wsz;
    void *ws;
    molora_forward_args a;
    (void)s;
    fix_make(&f, 19, 17, 4, ranks, MOLORA_ROUTING_DENSE);
    m = fix_model(&f);
    W = malloc(sizeof(float) * 19 * 17);
    memcpy(W, f.W0, sizeof(float) * 19 * 17);
    assert_int_equal(molora_merge(m, 0, w, W), 0);
    memset(&ld, 0, sizeof ld);
    ld.d_in = 19; ld.d_out = 17; ld.W0 = W; ld.bias = f.bias;
    memset(&md, 0, sizeof md);
    md.n_layers = 1; md.layers = &ld;
    assert_int_equal(molora_model_init(&md, &mm), 0);
    X = rnd_vec((size_t)T * 19, 1); Y1 = malloc(sizeof(float) * T * 17); Y2 = malloc(sizeof(float) * T * 17);
    ws = ws_for(m, T, &wsz);
    memset(&a, 0, sizeof a);
    a.n_tokens = T; a.x = X; a.y = Y1; a.weights = w; a.workspace = ws; a.workspace_size = wsz;
    assert_int_equal(molora_forward(m, &a), 0);
    a.y = Y2; a.weights = NULL;
    assert_int_equal(molora_forward(mm, &a), 0);
    for (i = 0; i < T * 17; i++) assert_true(fabsf(Y1[i] - Y2[i]) <= 2e-5f * (1 + fabsf(Y1[i])));
    /* errors */
    assert_int_equal(molora_merge(m, 1, w, W), MOLORA_RESULT_INVALID_LAYER);
    assert_int_equal(molora_merge(m, 0, NULL, W), MOLORA_RESULT_INVALID_ARGUMENT);
    w[0] = NAN;
    assert_int_equal(molora_merge(m, 0, w, W), MOLORA_RESULT_NON_FINITE);
    free(W); free(X); free(Y1); free(Y2); free(ws);
    molora_model_free(m); molora_model_free(mm); fix_free(&f);
}

static void test_copy_weights(void **s)
{
    fix f;
    int ranks[2] = {3, 3}, T = 4, i;
    molora_expert_desc ex[MAXN];
    molora_layer_desc ld;
    molora_model_desc md;
    molora_model *mc;
    molora_model *mb;
    float *X, *Y1, *Y2;
    size_t wsz;
    void *ws;
    molora_forward_args a;
    (void)s;
    fix_make(&f, 13, 11, 2, ranks, MOLORA_ROUTING_MOLE_OUTPUT);
    mb = fix_model(&f);
    fix_desc(&f, ex, &ld);
    memset(&md, 0, sizeof md);
    md.n_layers = 1; md.layers = &ld; md.flags = MOLORA_MODEL_COPY_WEIGHTS;
    assert_int_equal(molora_model_init(&md, &mc), 0);
    X = rnd_vec((size_t)T * 13, 1); Y1 = malloc(sizeof(float) * T * 11); Y2 = malloc(sizeof(float) * T * 11);
    ws = ws_for(mc, T, &wsz);
    memset(&a, 0, sizeof a);
    a.n_tokens = T; a.x = X; a.y = Y1; a.workspace = ws; a.workspace_size = wsz;
    assert_int_equal(molora_forward(mb, &a), 0);
    /* clobber every source array: the copied model must not notice */
    memset(f.W0, 0, sizeof(float) * 13 * 11); memset(f.bias, 0, sizeof(float) * 11);
    memset(f.e, 0, sizeof(float) * 2 * 2 * 11); memset(f.A[0], 0, sizeof(float) * 3 * 13);
    memset(f.Wg, 0, sizeof(float) * 2 * 13); memset(f.bg, 0, sizeof(float) * 2);
    a.y = Y2;
    assert_int_equal(molora_forward(mc, &a), 0);
    /* summation order follows W0's alignment */
    for (i = 0; i < T * 11; i++) assert_true(fabsf(Y1[i] - Y2[i]) <= 1e-5f * (1 + fabsf(Y1[i])));
    free(X); free(Y1); free(Y2); free(ws);
    molora_model_free(mc); molora_model_free(mb); fix_free(&f);
}

static void test_mixed_layers_model(void **s)
{   /* a model whose layers have different N, ranks and rules, run side by side */
    fix f[3];
    int r0[MAXN] = {4, 4, 4, 4, 4, 4, 4, 4}, r1[1] = {16}, r2[3] = {1, 8, 2}, l, i, T = 7;
    molora_expert_desc ex[3][MAXN];
    molora_layer_desc ld[4];
    molora_model_desc md;
    molora_model *m;
    molora_layer_info info;
    size_t wsz;
    void *ws;
    (void)s;
    fix_make(&f[0], 24, 40, 8, r0, MOLORA_ROUTING_TOPK);
    fix_make(&f[1], 40, 24, 1, r1, MOLORA_ROUTING_ADAMOLE);
    fix_make(&f[2], 24, 24, 3, r2, MOLORA_ROUTING_MOLE_OUTPUT);
    for (l = 0; l < 3; l++) fix_desc(&f[l], ex[l], &ld[l]);
    memset(&ld[3], 0, sizeof ld[3]);
    ld[3].d_in = 24; ld[3].d_out = 24; ld[3].W0 = f[2].W0;
    memset(&md, 0, sizeof md);
    md.n_layers = 4; md.layers = ld;
    assert_int_equal(molora_model_init(&md, &m), 0);
    assert_int_equal(molora_model_n_layers(m), 4);
    assert_int_equal(molora_model_layer_info(m, 0, &info), 0);
    assert_true(info.n_experts == 8 && info.top_k == 2 && info.rank_total == 32 && info.routing == MOLORA_ROUTING_TOPK);
    assert_int_equal(molora_model_layer_info(m, 1, &info), 0);
    assert_true(info.tau_max == 1.0f && info.d_in == 40);
    assert_int_equal(molora_model_layer_info(m, 3, &info), 0);
    assert_true(info.n_experts == 0);
    assert_int_equal(molora_model_layer_info(m, 4, &info), MOLORA_RESULT_INVALID_LAYER);
    {
        int rk; float sc;
        assert_int_equal(molora_model_expert(m, 2, 2, &rk, &sc), 0);
        assert_true(rk == 2 && fabsf(sc - 8.0f / sqrtf(2.0f)) < 1e-6f);
        assert_int_equal(molora_model_expert(m, 2, 3, &rk, &sc), MOLORA_RESULT_INVALID_ARGUMENT);
    }
    ws = ws_for(m, T, &wsz);
    for (l = 0; l < 3; l++) {
        float *X = rnd_vec((size_t)T * f[l].d_in, 1), *Y = malloc(sizeof(float) * T * f[l].d_out);
        double *Yr = malloc(sizeof(double) * T * f[l].d_out), *Wr = malloc(sizeof(double) * T * 8), mg[16];
        molora_forward_args a;
        err e = {0, 0, 0};
        memset(&a, 0, sizeof a);
        a.layer = l; a.n_tokens = T; a.x = X; a.y = Y; a.workspace = ws; a.workspace_size = wsz;
        assert_int_equal(molora_forward(m, &a), 0);
        ref_forward(&f[l], T, X, NULL, 0, NULL, 0, 1, NULL, Yr, Wr, mg);
        for (i = 0; i < T * f[l].d_out; i++) err_add(&e, Y[i], Yr[i], fabs(Yr[i]) + 1);
        CHECK_ERR(e, 2e-5, "mixed model layer");
        free(X); free(Y); free(Yr); free(Wr);
    }
    ws_free(ws, wsz);
    molora_model_free(m);
    for (l = 0; l < 3; l++) fix_free(&f[l]);
}

/* ---- errors: every init and call path ------------------------------------------------------- */
static molora_result init_one(const molora_layer_desc *ld)
{
    molora_model_desc md;
    molora_model *m = (molora_model *)&md;   /* must come back NULL on failure */
    molora_result r;
    memset(&md, 0, sizeof md);
    md.n_layers = 1; md.layers = ld;
    r = molora_model_init(&md, &m);
    if (r) assert_null(m);
    molora_model_free(m);
    return r;
}

static int g_logged;
static void count_log(void *user, molora_result r, const char *msg)
{
    (void)user; (void)r;
    assert_non_null(msg);
    assert_true(strlen(msg) > 5);
    g_logged++;
}

static long g_hook_allocs, g_hook_frees, g_hook_fail;
static void *hook_alloc(size_t n, void *user)
{
    (void)user;
    if (g_hook_fail) return NULL;
    g_hook_allocs++;
    return malloc(n);
}
static void hook_free(void *p, void *user) { (void)user; g_hook_frees++; free(p); }

static void test_init_errors(void **s)
{
    fix f;
    int ranks[MAXN] = {4, 4, 4};
    molora_expert_desc ex[MAXN];
    molora_layer_desc ld;
    molora_model_desc md;
    molora_model *m;
    float saved;
    (void)s;
    fix_make(&f, 13, 11, 3, ranks, MOLORA_ROUTING_ADAMOLE);
#define RESET() fix_desc(&f, ex, &ld)
#define EXPECT(code) assert_int_equal(init_one(&ld), (code))
    RESET(); EXPECT(MOLORA_RESULT_SUCCESS);
    /* descriptor-level */
    assert_int_equal(molora_model_init(NULL, &m), MOLORA_RESULT_INVALID_ARGUMENT);
    memset(&md, 0, sizeof md); md.n_layers = 1; md.layers = &ld;
    assert_int_equal(molora_model_init(&md, NULL), MOLORA_RESULT_INVALID_ARGUMENT);
    md.n_layers = -1; assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_INVALID_ARGUMENT);
    md.n_layers = 2; md.layers = NULL; assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_INVALID_ARGUMENT);
    md.n_layers = 1; md.layers = &ld; md.flags = 0x80;
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_INVALID_ARGUMENT);
    md.flags = 0; md.memory.free = hook_free;
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_INVALID_ARGUMENT);
    md.memory.free = NULL;
    md.n_layers = 0; assert_int_equal(molora_model_init(&md, &m), 0); molora_model_free(m);   /* empty model is valid */
    /* shapes and ranks */
    RESET(); ld.d_in = 0; EXPECT(MOLORA_RESULT_INVALID_SHAPE);
    RESET(); ld.d_out = -3; EXPECT(MOLORA_RESULT_INVALID_SHAPE);
    RESET(); ld.n_experts = -1; EXPECT(MOLORA_RESULT_INVALID_SHAPE);
    RESET(); ld.experts = NULL; EXPECT(MOLORA_RESULT_INVALID_ARGUMENT);
    RESET(); ex[1].rank = 0; EXPECT(MOLORA_RESULT_INVALID_RANK);
    RESET(); ex[2].rank = -4; EXPECT(MOLORA_RESULT_INVALID_RANK);
    RESET(); ex[0].A = NULL; EXPECT(MOLORA_RESULT_MISSING_WEIGHTS);
    RESET(); ex[2].B = NULL; EXPECT(MOLORA_RESULT_MISSING_WEIGHTS);
    RESET(); ld.routing = (molora_routing)99; EXPECT(MOLORA_RESULT_INVALID_ARGUMENT);
    RESET(); ld.routing = (molora_routing)-1; EXPECT(MOLORA_RESULT_INVALID_ARGUMENT);
    /* sizes whose products overflow: checked before any byte is read */
    RESET(); ld.d_in = INT_MAX; ld.d_out = INT_MAX; ld.W0 = NULL; ex[0].rank = INT_MAX;
    EXPECT(MOLORA_RESULT_SIZE_OVERFLOW);
    RESET(); ld.d_in = INT_MAX; ld.d_out = INT_MAX; EXPECT(MOLORA_RESULT_SIZE_OVERFLOW);
    /* routing parameters */
    RESET(); ld.routing = MOLORA_ROUTING_TOPK; ld.top_k = 4; EXPECT(MOLORA_RESULT_INVALID_TOP_K);
    RESET(); ld.routing = MOLORA_ROUTING_TOPK; ld.top_k = -1; EXPECT(MOLORA_RESULT_INVALID_TOP_K);
    RESET(); ld.routing = MOLORA_ROUTING_TOPK; ld.top_k = 3; EXPECT(MOLORA_RESULT_SUCCESS);
    RESET(); ld.temperature = -1; EXPECT(MOLORA_RESULT_INVALID_VALUE);
    RESET(); ld.temperature = NAN; EXPECT(MOLORA_RESULT_INVALID_VALUE);
    RESET(); ld.temperature = INFINITY; EXPECT(MOLORA_RESULT_INVALID_VALUE);
    RESET(); ld.tau_max_set = 1; ld.tau_max = -0.1f; EXPECT(MOLORA_RESULT_INVALID_VALUE);
    RESET(); ld.tau_max_set = 1; ld.tau_max = NAN; EXPECT(MOLORA_RESULT_INVALID_VALUE);
    RESET(); ld.tau_max_set = 1; ld.tau_max = 0; EXPECT(MOLORA_RESULT_SUCCESS);
    RESET(); ld.routing = MOLORA_ROUTING_THRESHOLD; ld.threshold = NAN; EXPECT(MOLORA_RESULT_INVALID_VALUE);
    /* missing matrices */
    RESET(); ld.gate_weight = NULL; EXPECT(MOLORA_RESULT_MISSING_WEIGHTS);
    RESET(); ld.threshold_weight = NULL; EXPECT(MOLORA_RESULT_MISSING_WEIGHTS);
    RESET(); ld.routing = MOLORA_ROUTING_MOLE_OUTPUT; ld.mole_gate = NULL; EXPECT(MOLORA_RESULT_MISSING_WEIGHTS);
    RESET(); ld.routing = MOLORA_ROUTING_FIXED; ld.gate_weight = NULL; EXPECT(MOLORA_RESULT_SUCCESS);
    RESET(); ld.W0 = NULL; EXPECT(MOLORA_RESULT_SUCCESS);   /* delta-only layer */
    /* NaN / Inf anywhere */
#define POISON(arr, idx, code)                                                                    \
    do {                                                                                          \
        RESET(); saved = (arr)[idx]; (arr)[idx] = NAN; EXPECT(code);                              \
        (arr)[idx] = INFINITY; EXPECT(code); (arr)[idx] = saved;                                  \
    } while (0)
    POISON(f.A[1], 7, MOLORA_RESULT_NON_FINITE);
    POISON(f.B[2], 43, MOLORA_RESULT_NON_FINITE);
    POISON(f.W0, 100, MOLORA_RESULT_NON_FINITE);
    POISON(f.bias, 10, MOLORA_RESULT_NON_FINITE);
    POISON(f.Wg, 38, MOLORA_RESULT_NON_FINITE);
    POISON(f.bg, 2, MOLORA_RESULT_NON_FINITE);
    POISON(f.wt, 12, MOLORA_RESULT_NON_FINITE);
    RESET(); ld.threshold_bias = NAN; EXPECT(MOLORA_RESULT_NON_FINITE);
    RESET(); ex[0].scaling = INFINITY; EXPECT(MOLORA_RESULT_NON_FINITE);
    RESET(); ex[0].lora_alpha = NAN; EXPECT(MOLORA_RESULT_NON_FINITE);
    RESET(); ld.routing = MOLORA_ROUTING_MOLE_OUTPUT; f.e[5] = NAN; EXPECT(MOLORA_RESULT_NON_FINITE); f.e[5] = 0;
    /* the logger hears about it, with a message */
    RESET(); ld.d_in = 0;
    memset(&md, 0, sizeof md); md.n_layers = 1; md.layers = &ld; md.log = count_log;
    g_logged = 0;
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_INVALID_SHAPE);
    assert_int_equal(g_logged, 1);
    fix_free(&f);
#undef POISON
#undef EXPECT
#undef RESET
}

static void test_memory_hook_and_oom(void **s)
{
    fix f;
    int ranks[MAXN] = {4, 4, 4};
    molora_expert_desc ex[MAXN];
    molora_layer_desc ld;
    molora_model_desc md;
    molora_model *m = NULL;
    (void)s;
    fix_make(&f, 13, 11, 3, ranks, MOLORA_ROUTING_DENSE);
    fix_desc(&f, ex, &ld);
    memset(&md, 0, sizeof md);
    md.n_layers = 1; md.layers = &ld; md.memory.alloc = hook_alloc; md.memory.free = hook_free;
    g_hook_allocs = g_hook_frees = 0; g_hook_fail = 1;
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_OUT_OF_MEMORY);
    assert_null(m);
    g_hook_fail = 0;
    assert_int_equal(molora_model_init(&md, &m), 0);
    molora_model_free(m);
    assert_true(g_hook_allocs == 1 && g_hook_frees == 1);
    molora_model_free(NULL);
    fix_free(&f);
}

static void test_forward_errors(void **s)
{
    fix f;
    int ranks[MAXN] = {4, 4, 4}, T = 6;
    molora_model *m;
    molora_forward_args a, good;
    float *X, *Y, w[3] = {1, 1, 1};
    size_t wsz;
    void *ws;
    (void)s;
    fix_make(&f, 13, 11, 3, ranks, MOLORA_ROUTING_DENSE);
    m = fix_model(&f);
    X = rnd_vec((size_t)T * 13, 1); Y = malloc(sizeof(float) * T * 11);
    ws = ws_for(m, T, &wsz);
    memset(&good, 0, sizeof good);
    good.n_tokens = T; good.x = X; good.y = Y; good.workspace = ws; good.workspace_size = wsz;
#define CALL(mod, code) do { a = good; mod; assert_int_equal(molora_forward(m, &a), (code)); } while (0)
    CALL((void)0, MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_forward(NULL, &good), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_forward(m, NULL), MOLORA_RESULT_INVALID_ARGUMENT);
    CALL(a.layer = 1, MOLORA_RESULT_INVALID_LAYER);
    CALL(a.layer = -1, MOLORA_RESULT_INVALID_LAYER);
    CALL(a.n_tokens = -1, MOLORA_RESULT_INVALID_SHAPE);
    CALL(a.output = (molora_output)5, MOLORA_RESULT_INVALID_ARGUMENT);
    CALL(a.x = NULL, MOLORA_RESULT_INVALID_ARGUMENT);
    CALL(a.y = NULL, MOLORA_RESULT_INVALID_ARGUMENT);
    CALL(a.workspace = NULL, MOLORA_RESULT_WORKSPACE_TOO_SMALL);
    CALL(a.workspace_size = wsz - 1, MOLORA_RESULT_WORKSPACE_TOO_SMALL);   /* one byte short */
    CALL(a.n_tokens = T + 1, MOLORA_RESULT_WORKSPACE_TOO_SMALL);
    X[17] = NAN; CALL((void)0, MOLORA_RESULT_NON_FINITE); X[17] = INFINITY; CALL((void)0, MOLORA_RESULT_NON_FINITE);
    X[17] = 0;
    w[1] = NAN; CALL(a.weights = w, MOLORA_RESULT_NON_FINITE); w[1] = 1;
    CALL(a.weights = w, MOLORA_RESULT_SUCCESS);
    /* route-only needs weights_out */
    a = good; assert_int_equal(molora_route(m, &a), MOLORA_RESULT_INVALID_ARGUMENT);
    /* workspace size queries */
    assert_int_equal(molora_workspace_size(NULL, 4, &wsz), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_workspace_size(m, -1, &wsz), MOLORA_RESULT_INVALID_SHAPE);
    assert_int_equal(molora_workspace_size(m, 4, NULL), MOLORA_RESULT_INVALID_ARGUMENT);
    molora_model_free(m);
    /* FULL output without W0; FIXED routing without weights */
    f.routing = MOLORA_ROUTING_FIXED;
    {
        molora_expert_desc ex[MAXN];
        molora_layer_desc ld;
        molora_model_desc md;
        fix_desc(&f, ex, &ld);
        ld.W0 = NULL;
        memset(&md, 0, sizeof md);
        md.n_layers = 1; md.layers = &ld;
        assert_int_equal(molora_model_init(&md, &m), 0);
    }
    CALL(a.weights = w, MOLORA_RESULT_MISSING_WEIGHTS);
    CALL((a.output = MOLORA_OUTPUT_DELTA, a.weights = NULL), MOLORA_RESULT_MISSING_WEIGHTS);
    CALL((a.output = MOLORA_OUTPUT_DELTA, a.weights = w), MOLORA_RESULT_SUCCESS);
#undef CALL
    /* every result has a name */
    {
        int r;
        for (r = 0; r <= MOLORA_RESULT_COUNT; r++)
            assert_non_null(strstr(molora_result_string((molora_result)r), "MOLORA_RESULT_"));
    }
    free(X); free(Y); free(ws);
    molora_model_free(m); fix_free(&f);
}

static void test_error_leaves_output_unchanged(void **s)
{   /* a failing call writes nothing: huge inputs make the gate logits inf - inf = NaN */
    float bias[2] = {0, 0}, x[2] = {3e38f, 3e38f}, y[2] = {7, 8}, w[2];
    tiny z;
    (void)s;
    tiny_make(&z, 2, MOLORA_ROUTING_DENSE, bias);
    z.Wg[0] = 1e10f; z.Wg[1] = -1e10f; z.Wg[2] = 1; z.Wg[3] = 1;
    assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, NULL), MOLORA_RESULT_NON_FINITE);
    assert_true(y[0] == 7 && y[1] == 8);
}

static void test_zero_allocations_on_forward(void **s)
{
    static const int rules[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_THRESHOLD,
                                MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_MOLE_OUTPUT};
    int ranks[MAXN] = {4, 8, 2, 4, 4, 4, 1, 16}, r, it, T;
    long before, total = 0;
    (void)s;
    for (r = 0; r < 5; r++) {
        fix f;
        molora_model *m;
        float *X, *Y, *W;
        int32_t counts[MAXN];
        size_t wsz;
        void *ws;
        molora_forward_args a;
        fix_make(&f, 33, 31, 8, ranks, rules[r]);
        m = fix_model(&f);
        X = rnd_vec(64 * 33, 1); Y = malloc(sizeof(float) * 64 * 31); W = malloc(sizeof(float) * 64 * 8);
        ws = ws_for(m, 64, &wsz);
        memset(&a, 0, sizeof a);
        a.x = X; a.y = Y; a.weights_out = W; a.counts_out = counts; a.workspace = ws; a.workspace_size = wsz;
        before = g_allocs;
        for (it = 0; it < 50; it++)
            for (T = 0; T <= 64; T += 7) {
                a.n_tokens = T;
                assert_int_equal(molora_forward(m, &a), 0);
                assert_int_equal(molora_route(m, &a), 0);
            }
        total += g_allocs - before;
        free(X); free(Y); free(W); ws_free(ws, wsz);
        molora_model_free(m); fix_free(&f);
    }
    assert_int_equal(total, 0);
}

/* ==== boundaries (issue 12): every comparison of the contract at its boundary value ==========
   Each case runs through every path and is checked against the float64 reference; where the
   boundary value is exact in float (p = 1/2, 1/4, tau = tau_max / 2 ...) the weights must equal
   the reference bit for bit, so the side the contract names is the side taken. */

/* The path a call of T tokens takes when routing is not sparse. */
static int path_of(int T)
{
    return T == 0 ? MOLORA_PATH_NONE : T == 1 ? MOLORA_PATH_DECODE : T <= 16 ? MOLORA_PATH_SMALL : MOLORA_PATH_GEMM;
}

/* A layer whose gate logits are exact: Wg = 0, so z = the given logits (gate bias); the
   threshold net wt = e_0 with bt = 0, so u = x[0] and tau = tau_max * sigmoid(x[0]). */
static void fix_exact(fix *f, int n, const int *ranks, int routing, const float *logits)
{
    int i;
    fix_make(f, 37, 50, n, ranks, routing);
    memset(f->Wg, 0, sizeof(float) * (size_t)n * 37);
    for (i = 0; i < n; i++) f->bg[i] = logits[i];
    memset(f->wt, 0, sizeof(float) * 37);
    f->wt[0] = 1; f->bt = 0;
}

/* T random rows whose first value cycles through us (the threshold-net input u) */
static float *rows_u(int T, int d_in, const float *us, int nu)
{
    float *X = rnd_vec((size_t)T * d_in, 1.0);
    int t;
    for (t = 0; t < T && nu > 0; t++) X[(size_t)t * d_in] = us[t % nu];
    return X;
}

/* Every path (T = 1, 7, 16, 17, 40; full and delta) against the reference, ties compared too;
   mask rows (nm of them, or NULL) cycle over the tokens, per token. */
static void sweep(const fix *f, const molora_model *m, const uint8_t *rows, int nm, const float *us, int nu,
                  int exact_w)
{
    static const int Ts[] = {1, 7, 16, 17, 40};
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    int c, full, t;
    for (c = 0; c < 5; c++)
        for (full = 0; full < 2; full++) {
            int T = Ts[c];
            float *X = rows_u(T, f->d_in, us, nu);
            uint8_t *mask = NULL;
            call k;
            if (rows) {
                mask = malloc((size_t)T * f->n);
                for (t = 0; t < T; t++) memcpy(mask + (size_t)t * f->n, rows + (size_t)(t % nm) * f->n, (size_t)f->n);
            }
            memset(&k, 0, sizeof k);
            k.T = T; k.full = full; k.X = X; k.mask = mask; k.mask_pt = rows != NULL;
            k.noskip = 1; k.exact_w = exact_w; k.path = -1;
            check_call(f, m, &k, &ew, &ey);
            free(X); free(mask);
        }
    CHECK_ERR(ew, 2e-6, "routing weights at the boundary");
    CHECK_ERR(ey, 2e-5, "layer output at the boundary");
}

/* The weights of one token with threshold-net input u (molora_route, T = 1) must be want. */
static void expect_route(const molora_model *m, const fix *f, float u, const uint8_t *allow, const float *want)
{
    float *x = rows_u(1, f->d_in, &u, 1), w[MAXN];
    size_t wsz;
    void *ws = ws_for(m, 1, &wsz);
    molora_forward_args a;
    int i;
    memset(&a, 0, sizeof a);
    a.n_tokens = 1; a.x = x; a.expert_mask = allow; a.weights_out = w; a.workspace = ws; a.workspace_size = wsz;
    assert_int_equal(molora_route(m, &a), MOLORA_RESULT_SUCCESS);
    for (i = 0; i < f->n; i++)
        if (w[i] != want[i])
            fail_msg("u = %g: expert %d weight %.9g, expected %.9g", (double)u, i, (double)w[i], (double)want[i]);
    ws_free(ws, wsz); free(x);
}

static void test_bound_threshold(void **s)
{   /* THRESHOLD keeps p_i >= threshold (ThresholdMoeLayer: sel = p >= threshold): at p ==
       threshold the expert stays. N = 2 equal logits: p = 1/2; N = 8 with 4 masked: p = 1/4 */
    static const float z2[2] = {0.25f, 0.25f}, z8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    static const float half[2] = {0.5f, 0.5f}, none[2] = {0, 0};
    static const float quarter[8] = {0.25f, 0, 0.25f, 0, 0.25f, 0, 0.25f, 0}, none8[8] = {0};
    static const uint8_t odd_out[8] = {1, 0, 1, 0, 1, 0, 1, 0};
    int ranks[MAXN] = {3, 5, 2, 4, 1, 3, 2, 6};
    fix f;
    molora_model *m;
    (void)s;
    fix_exact(&f, 2, ranks, MOLORA_ROUTING_THRESHOLD, z2);
    f.threshold = 0.5f;                         /* p == threshold: kept */
    m = fix_model(&f); expect_route(m, &f, 0, NULL, half); sweep(&f, m, NULL, 0, NULL, 0, 1); molora_model_free(m);
    f.threshold = nextafterf(0.5f, 1.0f);       /* one ulp above p: none left, frozen layer */
    m = fix_model(&f); expect_route(m, &f, 0, NULL, none); sweep(&f, m, NULL, 0, NULL, 0, 1); molora_model_free(m);
    f.threshold = nextafterf(0.5f, 0.0f);       /* one ulp below */
    m = fix_model(&f); expect_route(m, &f, 0, NULL, half); molora_model_free(m);
    fix_free(&f);
    fix_exact(&f, 8, ranks, MOLORA_ROUTING_THRESHOLD, z8);
    f.threshold = 0.25f;                        /* masked experts take no part: p = 1/4 == threshold */
    m = fix_model(&f); expect_route(m, &f, 0, odd_out, quarter); sweep(&f, m, odd_out, 1, NULL, 0, 1);
    molora_model_free(m);
    f.threshold = nextafterf(0.25f, 1.0f);
    m = fix_model(&f); expect_route(m, &f, 0, odd_out, none8); sweep(&f, m, odd_out, 1, NULL, 0, 1);
    molora_model_free(m);
    fix_free(&f);
}

static void test_bound_adamole_tau(void **s)
{   /* ADAMOLE: a = p - tau, selected when a >= 0 with weight a; a zero sum is divided by 1.
       p = 1/2 (N = 2 equal logits); u = x[0] in {0, 1000, -1000} gives tau = tau_max / 2,
       tau_max (sigmoid rounds to 1) and 0, all exact; a logit of -1000 gives p = 0, in double too */
    static const float z2[2] = {-0.5f, -0.5f}, z4[4] = {1, 1, 1, 1}, zu[4] = {0, 0, -1000, -1000};
    static const float us[3] = {0, 1000, -1000};
    static const float half[2] = {0.5f, 0.5f}, none[2] = {0, 0}, q4[4] = {0.25f, 0.25f, 0.25f, 0.25f}, none4[4] = {0};
    static const float half4[4] = {0.5f, 0.5f, 0, 0};
    int ranks[MAXN] = {4, 2, 7, 3};
    fix f;
    molora_model *m;
    (void)s;
    fix_exact(&f, 2, ranks, MOLORA_ROUTING_ADAMOLE, z2);
    f.tau_max_set = 1;
    f.tau_max = 1.0f;                            /* u = 0: tau = 1/2 == p, a = 0: weight 0, sum 0 -> / 1 */
    m = fix_model(&f);
    expect_route(m, &f, 0, NULL, none); expect_route(m, &f, -1000, NULL, half);
    sweep(&f, m, NULL, 0, us, 3, 1); molora_model_free(m);
    f.tau_max = nextafterf(1.0f, 0.0f);          /* tau one step below p: both in, a = 2^-25 each */
    m = fix_model(&f); expect_route(m, &f, 0, NULL, half); sweep(&f, m, NULL, 0, us, 3, 1); molora_model_free(m);
    f.tau_max = nextafterf(1.0f, 2.0f);          /* tau one step above p: none, frozen layer */
    m = fix_model(&f); expect_route(m, &f, 0, NULL, none); sweep(&f, m, NULL, 0, us, 3, 1); molora_model_free(m);
    f.tau_max = 0.5f;                            /* u = 1000: tau = tau_max == p */
    m = fix_model(&f);
    expect_route(m, &f, 1000, NULL, none); expect_route(m, &f, 0, NULL, half);
    sweep(&f, m, NULL, 0, us, 3, 1); molora_model_free(m);
    fix_free(&f);
    /* default tau_max = 1/N: with a uniform gate and sigmoid at 1, every a = 0 (docs/maths.md, ADAMOLE) */
    fix_exact(&f, 4, ranks, MOLORA_ROUTING_ADAMOLE, z4);
    m = fix_model(&f);
    expect_route(m, &f, 1000, NULL, none4); expect_route(m, &f, 0, NULL, q4);
    sweep(&f, m, NULL, 0, us, 3, 1); molora_model_free(m);
    fix_free(&f);
    /* tau_max = 0: tau = 0, experts with p = 0 tie at a = 0 (weight 0), the rest keep p */
    fix_exact(&f, 4, ranks, MOLORA_ROUTING_ADAMOLE, zu);
    f.tau_max_set = 1; f.tau_max = 0;
    m = fix_model(&f); expect_route(m, &f, 0, NULL, half4); sweep(&f, m, NULL, 0, us, 3, 1); molora_model_free(m);
    fix_free(&f);
}

static void test_bound_tau_max_values(void **s)
{   /* tau_max >= 0 and finite when set; ignored when not set (then 1/N) */
    fix f;
    int ranks[MAXN] = {2, 2, 2, 2};
    molora_expert_desc ex[MAXN];
    molora_layer_desc ld;
    molora_model_desc md;
    molora_model *m;
    molora_layer_info info;
    (void)s;
    fix_make(&f, 13, 11, 4, ranks, MOLORA_ROUTING_ADAMOLE);
    fix_desc(&f, ex, &ld);
    memset(&md, 0, sizeof md); md.n_layers = 1; md.layers = &ld;
    ld.tau_max_set = 1;
#define TAU(v, code) do { ld.tau_max = (v); assert_int_equal(init_one(&ld), (code)); } while (0)
    TAU(0.0f, MOLORA_RESULT_SUCCESS);
    TAU(-0.0f, MOLORA_RESULT_SUCCESS);
    TAU(-nextafterf(0.0f, 1.0f), MOLORA_RESULT_INVALID_VALUE);   /* the negative value closest to 0 */
    TAU(FLT_MAX, MOLORA_RESULT_SUCCESS);
    TAU(INFINITY, MOLORA_RESULT_INVALID_VALUE);
    TAU(-INFINITY, MOLORA_RESULT_INVALID_VALUE);
#undef TAU
    ld.tau_max_set = 0; ld.tau_max = -1;   /* not set: the value is not read */
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_model_layer_info(m, 0, &info), MOLORA_RESULT_SUCCESS);
    assert_true(info.tau_max == 0.25f);
    molora_model_free(m);
    fix_free(&f);
}

static void test_bound_topk(void **s)
{   /* the k largest, ties to the lowest index, at k and k + 1; 1 <= k <= N, k = 0: 2 if N > 1 */
    static const float z5[5] = {0.5f, 1, 1, 1, 1};
    static const float k1[5] = {0, 1, 0, 0, 0}, k2[5] = {0, 0.5f, 0.5f, 0, 0}, k4[5] = {0, 0.25f, 0.25f, 0.25f, 0.25f};
    static const float k2m[5] = {0, 0.5f, 0, 0.5f, 0}, one[1] = {1};
    static const uint8_t no2[5] = {1, 1, 0, 1, 1};
    int ranks[MAXN] = {3, 1, 4, 2, 5}, k;
    fix f;
    molora_model *m;
    molora_expert_desc ex[MAXN];
    molora_layer_desc ld;
    (void)s;
    fix_exact(&f, 5, ranks, MOLORA_ROUTING_TOPK, z5);
    for (k = 0; k <= 5; k++) {   /* every k, ties included, every path */
        f.top_k = k;
        m = fix_model(&f);
        if (k == 1) expect_route(m, &f, 0, NULL, k1);
        if (k == 2 || k == 0) { expect_route(m, &f, 0, NULL, k2); expect_route(m, &f, 0, no2, k2m); }
        if (k == 4) expect_route(m, &f, 0, NULL, k4);
        sweep(&f, m, k == 3 ? no2 : NULL, 1, NULL, 0, k != 3 && k != 5);
        molora_model_free(m);
    }
    fix_desc(&f, ex, &ld);
    ld.top_k = 5; assert_int_equal(init_one(&ld), MOLORA_RESULT_SUCCESS);        /* k = N */
    ld.top_k = 6; assert_int_equal(init_one(&ld), MOLORA_RESULT_INVALID_TOP_K);   /* k = N + 1 */
    ld.top_k = -1; assert_int_equal(init_one(&ld), MOLORA_RESULT_INVALID_TOP_K);
    ld.top_k = INT_MAX; assert_int_equal(init_one(&ld), MOLORA_RESULT_INVALID_TOP_K);
    fix_free(&f);
    fix_exact(&f, 1, ranks, MOLORA_ROUTING_TOPK, z5);   /* N = 1: k = 0 means 1 */
    f.top_k = 0;
    m = fix_model(&f); expect_route(m, &f, 0, NULL, one); molora_model_free(m);
    fix_desc(&f, ex, &ld);
    ld.top_k = 1; assert_int_equal(init_one(&ld), MOLORA_RESULT_SUCCESS);
    ld.top_k = 2; assert_int_equal(init_one(&ld), MOLORA_RESULT_INVALID_TOP_K);
    fix_free(&f);
}

static void test_bound_temperature(void **s)
{   /* temperature > 0 and finite, 0 = 1; it divides the logits, down to the smallest positive
       float (where 1 / temperature overflows: the largest logit takes all) */
    static const float z[3] = {0, 1, -1};
    static const float hot[3] = {0, 1, 0};
    int ranks[MAXN] = {2, 3, 4};
    fix f;
    molora_model *m;
    molora_expert_desc ex[MAXN];
    molora_layer_desc ld;
    molora_layer_info info;
    float t_min = nextafterf(0.0f, 1.0f);
    (void)s;
    fix_exact(&f, 3, ranks, MOLORA_ROUTING_DENSE, z);
    fix_desc(&f, ex, &ld);
#define TEMP(v, code) do { ld.temperature = (v); assert_int_equal(init_one(&ld), (code)); } while (0)
    TEMP(-t_min, MOLORA_RESULT_INVALID_VALUE);
    TEMP(-1.0f, MOLORA_RESULT_INVALID_VALUE);
    TEMP(INFINITY, MOLORA_RESULT_INVALID_VALUE);
    TEMP(NAN, MOLORA_RESULT_INVALID_VALUE);
    TEMP(t_min, MOLORA_RESULT_SUCCESS);
    TEMP(FLT_MAX, MOLORA_RESULT_SUCCESS);
#undef TEMP
    {   /* 0 and -0 both mean 1 */
        molora_model_desc md;
        float zeros[2] = {0.0f, -0.0f};
        int i;
        for (i = 0; i < 2; i++) {
            memset(&md, 0, sizeof md); md.n_layers = 1; md.layers = &ld;
            ld.temperature = zeros[i];
            assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
            assert_int_equal(molora_model_layer_info(m, 0, &info), MOLORA_RESULT_SUCCESS);
            assert_true(info.temperature == 1.0f);
            molora_model_free(m);
        }
    }
    {
        static const int rules[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_THRESHOLD,
                                    MOLORA_ROUTING_ADAMOLE};
        int r;
        for (r = 0; r < 4; r++) {
            f.routing = rules[r]; f.top_k = 2; f.threshold = 0.5f; f.tau_max_set = 0;
            f.temperature = t_min;     /* z / t = 0, +inf, -inf: one-hot on the largest */
            m = fix_model(&f);
            if (rules[r] != MOLORA_ROUTING_ADAMOLE) expect_route(m, &f, 0, NULL, hot);
            sweep(&f, m, NULL, 0, NULL, 0, rules[r] != MOLORA_ROUTING_ADAMOLE);
            molora_model_free(m);
            f.temperature = FLT_MIN;   /* the smallest normal: z / t finite or inf, still one-hot */
            m = fix_model(&f);
            if (rules[r] != MOLORA_ROUTING_ADAMOLE) expect_route(m, &f, 0, NULL, hot);
            sweep(&f, m, NULL, 0, NULL, 0, rules[r] != MOLORA_ROUTING_ADAMOLE);
            molora_model_free(m);
            f.temperature = FLT_MAX;   /* z / t below 1e-38: uniform */
            m = fix_model(&f); sweep(&f, m, NULL, 0, NULL, 0, 0); molora_model_free(m);
        }
    }
    fix_free(&f);
}

static void test_bound_tiny_temperature(void **s)
{   /* 1e-45 (subnormal), FLT_MIN and 1e-38: softmax is exp((z - zmax) / t), so the largest
       logit takes all (ties share equally) even where z / t would overflow to +-inf for several
       logits (all positive, all negative), for every rule that uses the softmax */
    static const float zs[4][3] = {{1, 2, 0.5f}, {-3, -1, -2}, {0.25f, 3, 2.5f}, {2, 2, 1}};
    static const float hot[3] = {0, 1, 0}, tie[3] = {0.5f, 0.5f, 0};
    static const int rules[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_THRESHOLD,
                                MOLORA_ROUTING_ADAMOLE};
    float temps[3];
    int ranks[MAXN] = {2, 3, 4};
    int zi, ti, r;
    (void)s;
    temps[0] = 1e-45f; temps[1] = FLT_MIN; temps[2] = 1e-38f;
    assert_true(temps[0] > 0.0f);
    for (zi = 0; zi < 4; zi++)
        for (ti = 0; ti < 3; ti++)
            for (r = 0; r < 4; r++) {
                fix f;
                molora_model *m;
                fix_exact(&f, 3, ranks, rules[r], zs[zi]);
                f.top_k = 2; f.threshold = 0.5f; f.tau_max_set = 0;
                f.temperature = temps[ti];
                m = fix_model(&f);
                if (rules[r] != MOLORA_ROUTING_ADAMOLE) expect_route(m, &f, 0, NULL, zi == 3 ? tie : hot);
                sweep(&f, m, NULL, 0, NULL, 0, rules[r] != MOLORA_ROUTING_ADAMOLE);
                molora_model_free(m);
                fix_free(&f);
            }
    {   /* z - zmax overflowing float (logits near +-FLT_MAX): divided first there, as before */
        static const float big[3] = {3e38f, -3e38f, 0};
        fix f;
        molora_model *m;
        fix_exact(&f, 3, ranks, MOLORA_ROUTING_DENSE, big);
        f.temperature = FLT_MAX;
        m = fix_model(&f);
        sweep(&f, m, NULL, 0, NULL, 0, 0);
        molora_model_free(m);
        fix_free(&f);
    }
}

static void test_bound_paths(void **s)
{   /* T = 0 none, 1 decode, 2..16 small, 17.. gemm; molora_route computes no experts: none */
    static const int Ts[] = {0, 1, 2, 15, 16, 17, 18};
    int ranks[MAXN] = {3, 8, 17}, c, full;
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    fix f;
    molora_model *m;
    (void)s;
    fix_make(&f, 37, 50, 3, ranks, MOLORA_ROUTING_DENSE);
    m = fix_model(&f);
    for (c = 0; c < 7; c++)
        for (full = 0; full < 2; full++) {
            call k;
            memset(&k, 0, sizeof k);
            k.T = Ts[c]; k.full = full; k.path = path_of(Ts[c]);
            check_call(&f, m, &k, &ew, &ey);
        }
    {
        float *X = rnd_vec(17 * 37, 1), W[17 * 3];
        size_t wsz;
        void *ws = ws_for(m, 17, &wsz);
        molora_path path = MOLORA_PATH_GEMM;
        molora_forward_args a;
        memset(&a, 0, sizeof a);
        a.n_tokens = 17; a.x = X; a.weights_out = W; a.workspace = ws; a.workspace_size = wsz; a.path_out = &path;
        assert_int_equal(molora_route(m, &a), MOLORA_RESULT_SUCCESS);
        assert_int_equal(path, MOLORA_PATH_NONE);
        ws_free(ws, wsz); free(X);
    }
    CHECK_ERR(ew, 2e-5, "routing weights");
    CHECK_ERR(ey, 2e-5, "layer output");
    molora_model_free(m); fix_free(&f);
}

/* path_out is the path that ran: with every expert masked, FULL runs the frozen layer on the
   path of T, DELTA runs nothing (NONE); the same for a layer without experts and for MoLE's
   output gate. Every caller of an ith / nth split (nth 5 over 4 chunks of 16 columns: one caller
   has none) reports that same path. */
static void test_path_when_nothing_runs(void **s)
{
    static const int Ts[] = {1, 2, 17};
    static const int routings[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_DENSE, MOLORA_ROUTING_MOLE_OUTPUT};
    static const int ns[] = {0, 2, 2};
    int ranks[MAXN] = {3, 8}, v, c, full, ith;
    uint8_t none[2] = {0, 0};
    (void)s;
    for (v = 0; v < 3; v++) {
        fix f;
        molora_model *m;
        int n = ns[v];
        fix_make(&f, 37, 50, n, ranks, routings[v]);
        m = fix_model(&f);
        for (c = 0; c < 3; c++)
            for (full = 0; full < 2; full++)
                for (ith = -1; ith < 5; ith++) {   /* -1: one caller; else caller ith of 5 */
                    int T = Ts[c];
                    float *X = rnd_vec((size_t)T * 37, 1), *Y = calloc((size_t)T * 50, sizeof(float));
                    size_t wsz;
                    void *ws = ws_for(m, T, &wsz);
                    molora_path path = MOLORA_PATH_SPARSE;
                    molora_forward_args a;
                    memset(&a, 0, sizeof a);
                    a.n_tokens = T; a.x = X; a.y = Y; a.workspace = ws; a.workspace_size = wsz; a.path_out = &path;
                    a.output = full ? MOLORA_OUTPUT_FULL : MOLORA_OUTPUT_DELTA;
                    a.expert_mask = n ? none : NULL;
                    if (ith >= 0) { a.ith = ith; a.nth = 5; }
                    assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_SUCCESS);
                    if ((int)path != (full ? path_of(T) : MOLORA_PATH_NONE))
                        fail_msg("%s n = %d, T = %d, %s, ith %d of 5: path %d", v == 2 ? "mole_output" : "dense", n, T,
                                 full ? "full" : "delta", ith, (int)path);
                    ws_free(ws, wsz); free(X); free(Y);
                }
        molora_model_free(m); fix_free(&f);
    }
}

/* fixed per-token weights: token t routes to expert pick[t] alone (-1: to none) */
static float *one_hot_rows(int T, int n, const int *pick)
{
    float *w = calloc((size_t)T * n + 1, sizeof *w);
    int t;
    for (t = 0; t < T; t++) if (pick[t] >= 0) w[(size_t)t * n + pick[t]] = 0.5f + 0.125f * (float)(t % 5);
    return w;
}

int molora__by_expert_ratio(void);   /* a test hook in molora.h */
static void test_bound_sparse_switch(void **s)
{   /* the grouped path runs when nnz * ratio < T * r_act (ratio the CPU table's by-expert switch: 4,
       AMD's AVX-512 table 3), nnz = sum over routed (token, expert) pairs of the expert's rank,
       r_act = sum of the active experts' ranks: equality is dense. n = ratio experts. */
    static const int ranks_even[4] = {3, 3, 3, 3}, ranks_odd[4] = {1, 1, 5, 1};
    int pick[40], t, v, full, n = molora__by_expert_ratio();
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    (void)s;
    assert_true(n == 4 || n == 3);   /* the tables': Intel / AVX2 / portable 4, AMD's AVX-512 3 */
    for (v = 0; v < 2; v++) {
        fix f;
        molora_model *m;
        int Ts[2] = {12, 24}, c;   /* SMALL and GEMM, multiples of 3 and 4 */
        fix_make(&f, 37, 50, n, v ? ranks_odd : ranks_even, MOLORA_ROUTING_FIXED);
        m = fix_model(&f);
        for (c = 0; c < 2; c++)
            for (full = 0; full < 2; full++) {
                int T = Ts[c], drop;
                for (drop = 0; drop < 2; drop++) {
                    /* every token one expert, t % n: nnz = T / n * r_act, so nnz * n == T * r_act */
                    float *w;
                    call k;
                    for (t = 0; t < T; t++) pick[t] = t % n;
                    if (drop) pick[4] = -1;   /* token 4's expert stays active through token 4 - n */
                    w = one_hot_rows(T, n, pick);
                    memset(&k, 0, sizeof k);
                    k.T = T; k.full = full; k.fixed = w; k.fixed_pt = 1;
                    k.path = drop ? MOLORA_PATH_SPARSE : path_of(T);
                    check_call(&f, m, &k, &ew, &ey);
                    free(w);
                }
            }
        molora_model_free(m); fix_free(&f);
    }
    CHECK_ERR(ey, 2e-5, "layer output at the sparse switch");
}

/* ranks just below, at and above every blocking size in molora.h: 3 rows per register block
   (nt), 8 rows of B per block (nn), 16 lanes and 16-token blocks, the 64-row flush of the
   gather path and the 64-rank blocks of molora_merge, and twice 64 */
static const int g_bound_ranks[] = {1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129};
#define N_BOUND_RANKS (int)(sizeof g_bound_ranks / sizeof g_bound_ranks[0])

static void test_bound_rank_paths(void **s)
{   /* each rank in every path: decode, small (2, 8, 9, 16), gemm (17, 40), sparse (one expert
       per token), MoLE output gate, and split over 3 callers */
    static const int Ts[] = {1, 2, 8, 9, 16, 17, 40};
    int ri, c, t;
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    (void)s;
    for (ri = 0; ri < N_BOUND_RANKS; ri++) {
        int r = g_bound_ranks[ri], ranks[4], rule;
        ranks[0] = r; ranks[1] = 1; ranks[2] = r; ranks[3] = r > 1 ? r - 1 : 2;
        for (rule = 0; rule < 2; rule++) {
            fix f;
            molora_model *m;
            fix_make(&f, 37, 50, 4, ranks, rule ? MOLORA_ROUTING_MOLE_OUTPUT : MOLORA_ROUTING_DENSE);
            m = fix_model(&f);
            for (c = 0; c < 7; c++) {
                call k;
                memset(&k, 0, sizeof k);
                k.T = Ts[c]; k.full = c & 1; k.nth = c % 3 == 0 ? 3 : 0; k.path = path_of(Ts[c]);
                check_call(&f, m, &k, &ew, &ey);
            }
            if (!rule) {   /* sparse: 23 of the 40 tokens to one expert, two tokens to two (2r rows) */
                int pick[40];
                float *w;
                call k;
                for (t = 0; t < 40; t++) pick[t] = t < 4 ? t : t % 4 == 0 ? 0 : t % 4 == 2 ? 2 : -1;
                w = one_hot_rows(40, 4, pick);
                w[5 * 4 + 2] = 0.25f; w[6 * 4 + 0] = -0.75f;
                memset(&k, 0, sizeof k);
                k.T = 40; k.fixed = w; k.fixed_pt = 1; k.path = MOLORA_PATH_SPARSE;
                check_call(&f, m, &k, &ew, &ey);
                k.nth = 3; k.full = 1;
                check_call(&f, m, &k, &ew, &ey);
                free(w);
            }
            molora_model_free(m); fix_free(&f);
        }
    }
    print_message("  ranks 1..129 in every path: weights max abs err %.2e | output max rel %.2e over %ld\n", ew.abs,
                  ey.rel, ey.n);
    CHECK_ERR(ew, 2e-5, "routing weights");
    CHECK_ERR(ey, 2e-5, "layer output");
}

static void test_bound_merge_ranks(void **s)
{   /* W += sum_i w_i s_i B_i A_i against the float64 sum, every blocking rank */
    int ri, i, o, k, q;
    err e = {0, 0, 0};
    (void)s;
    for (ri = 0; ri < N_BOUND_RANKS; ri++) {
        int r = g_bound_ranks[ri], ranks[3];
        float w[3] = {0.75f, -1.25f, 0.5f}, *W;
        fix f;
        molora_model *m;
        ranks[0] = r; ranks[1] = 2; ranks[2] = r + 1;
        fix_make(&f, 37, 19, 3, ranks, MOLORA_ROUTING_DENSE);
        m = fix_model(&f);
        W = buf_new((size_t)19 * 37);
        memcpy(W, f.W0, sizeof(float) * 19 * 37);
        assert_int_equal(molora_merge(m, 0, w, W), MOLORA_RESULT_SUCCESS);
        for (o = 0; o < 19; o++)
            for (k = 0; k < 37; k++) {
                double want = f.W0[o * 37 + k];
                for (i = 0; i < 3; i++) {
                    double d = 0;
                    for (q = 0; q < f.rank[i]; q++) d += (double)f.B[i][o * f.rank[i] + q] * f.A[i][q * 37 + k];
                    want += w[i] * ref_scaling(&f, i) * d;
                }
                err_add(&e, W[o * 37 + k], want, 1.0);   /* |W| ~ 0.2, every rank row moves it by ~1e-3 */
            }
        buf_free(W, sizeof(float) * 19 * 37, "merged W");
        molora_model_free(m); fix_free(&f);
    }
    print_message("  merge, ranks 1..130: max abs err %.2e over %ld values\n", e.abs, e.n);
    CHECK_ERR(e, 1e-5, "merged weights");
}

static void test_bound_panels(void **s)
{   /* X is packed in 16-float panels at W0's 64-byte phase for T <= 16, B^T columns go 16 at a
       time, Y's columns are split in chunks of 16 over callers: d_in and d_out around 16 and
       32, W0 at phases 0, 1, 7 and 15 floats, T around 8 and 16, one and three callers */
    static const int d_ins[] = {1, 15, 16, 17, 31, 32, 33}, d_outs[] = {1, 15, 16, 17, 33};
    static const int phases[] = {0, 1, 7, 15}, Ts[] = {1, 2, 8, 9, 16, 17};
    int ranks[MAXN] = {1, 3, 8}, a, b, q, c;
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    (void)s;
    for (a = 0; a < 7; a++)
        for (b = 0; b < 5; b++)
            for (q = 0; q < 4; q++) {
                fix f;
                molora_model *m;
                float *own, *raw;
                size_t nw0 = (size_t)d_ins[a] * d_outs[b];
                fix_make(&f, d_ins[a], d_outs[b], 3, ranks, MOLORA_ROUTING_DENSE);
                raw = malloc(sizeof(float) * (nw0 + 32));
                own = (float *)(((uintptr_t)raw + 63) & ~(uintptr_t)63) + phases[q];
                memcpy(own, f.W0, sizeof(float) * nw0);
                free(f.W0);
                f.W0 = own;   /* borrowed by the model at this phase */
                m = fix_model(&f);
                for (c = 0; c < 6; c++) {
                    call k;
                    memset(&k, 0, sizeof k);
                    k.T = Ts[c]; k.full = 1; k.nth = c % 2 ? 3 : 0; k.path = path_of(Ts[c]);
                    k.floor = 0.5;   /* a row of one or a few values can sit near 0 by chance */
                    check_call(&f, m, &k, &ew, &ey);
                }
                molora_model_free(m);
                f.W0 = rnd_vec(1, 1);
                free(raw); fix_free(&f);
            }
    CHECK_ERR(ew, 2e-5, "routing weights");
    CHECK_ERR(ey, 2e-5, "layer output");
}

static void test_bound_gate_width(void **s)
{   /* up to 32 gate rows (N, or N + 1 with AdaMoLE's threshold row) take molora's own kernel
       outside the packed path, more take the packed kernel or BLAS: N = 31, 32, 33 */
    static const int Ns[] = {31, 32, 33}, rules[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_ADAMOLE};
    static const int Ts[] = {1, 7, 17};
    int ranks[MAXN], i, a, r, c;
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    (void)s;
    for (i = 0; i < MAXN; i++) ranks[i] = 1 + i % 3;
    for (a = 0; a < 3; a++)
        for (r = 0; r < 2; r++) {
            fix f;
            molora_model *m;
            fix_make(&f, 37, 50, Ns[a], ranks, rules[r]);
            m = fix_model(&f);
            for (c = 0; c < 3; c++) {
                call k;
                memset(&k, 0, sizeof k);
                k.T = Ts[c]; k.full = c & 1; k.path = -1;
                check_call(&f, m, &k, &ew, &ey);
            }
            molora_model_free(m); fix_free(&f);
        }
    CHECK_ERR(ew, 2e-5, "routing weights");
    CHECK_ERR(ey, 2e-5, "layer output");
}

/* Smallest workspace_size a call of T tokens accepts (the size check is monotone). */
static size_t ws_minimum(const molora_model *m, molora_forward_args a, size_t hi)
{
    size_t lo = 0;   /* lo fails, hi succeeds */
    void *buf = malloc(hi);
    a.workspace = buf;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        molora_result r;
        a.workspace_size = mid;
        r = molora_route(m, &a);
        if (r == MOLORA_RESULT_SUCCESS) hi = mid;
        else { assert_int_equal(r, MOLORA_RESULT_WORKSPACE_TOO_SMALL); lo = mid; }
    }
    free(buf);
    return hi;
}

static void test_bound_workspace(void **s)
{   /* per rule and path: the smallest accepted workspace fits in molora_workspace_size(T) and
       is that size exactly for T <= 16; one byte less is WORKSPACE_TOO_SMALL; at the smallest
       size, at every 64-byte phase of the pointer, nothing is written past its end */
    static const int rules[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_THRESHOLD,
                                MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_MOLE_OUTPUT, MOLORA_ROUTING_FIXED};
    static const int Ts[] = {1, 2, 16, 17, 64};
    static const int dims[2][2] = {{37, 50}, {512, 8}};   /* the second: the X copy of T <= 16 dominates */
    int ranks[MAXN] = {3, 1, 9, 2, 65, 4}, r, c, d, phase;
    (void)s;
    for (d = 0; d < 2; d++)
        for (r = 0; r < 6; r++) {
            fix f;
            molora_model *m;
            fix_make(&f, dims[d][0], dims[d][1], 6, ranks, rules[r]);
            m = fix_model(&f);
            for (c = 0; c < 5; c++) {
                int T = Ts[c], apply;
                size_t wsz, need;
                float *X = rnd_vec((size_t)T * f.d_in, 1), *Y = malloc(sizeof(float) * T * f.d_out),
                    *W = malloc(sizeof(float) * T * 6);
                float *fixed = rnd_vec((size_t)T * 6, 1);
                unsigned char *buf;
                molora_forward_args a;
                memset(&a, 0, sizeof a);
                a.n_tokens = T; a.x = X; a.y = Y; a.weights_out = W; a.output = MOLORA_OUTPUT_FULL;
                if (rules[r] == MOLORA_ROUTING_FIXED) { a.weights = fixed; a.weights_per_token = 1; }
                assert_int_equal(molora_workspace_size(m, T, &wsz), MOLORA_RESULT_SUCCESS);
                need = ws_minimum(m, a, wsz);
                assert_true(need <= wsz);
                if (T <= 16) assert_true(need == wsz);
                buf = malloc(need + 64 + CANARY);
                for (phase = 0; phase < 64; phase += (phase < 4 || phase > 59) ? 1 : 7) {
                    for (apply = 0; apply < 2; apply++) {
                        a.workspace = buf + phase; a.workspace_size = need;
                        canary_fill(buf + phase + need);
                        assert_int_equal(apply ? molora_forward(m, &a) : molora_route(m, &a), MOLORA_RESULT_SUCCESS);
                        canary_check(buf + phase + need, "workspace of the smallest accepted size");
                        a.workspace_size = need - 1;
                        assert_int_equal(apply ? molora_forward(m, &a) : molora_route(m, &a),
                                         MOLORA_RESULT_WORKSPACE_TOO_SMALL);
                    }
                }
                free(buf); free(X); free(Y); free(W); free(fixed);
            }
            molora_model_free(m); fix_free(&f);
        }
}

static void test_bound_indices(void **s)
{   /* layer index n_layers and expert index N are refused with the contract's codes;
       n_layers - 1 and N - 1 are served */
    fix f[2];
    int r0[3] = {2, 3, 4}, r2[2] = {5, 1}, rk, l;
    float sc, wm[3] = {1, 1, 1}, *W, X[37], Y[50], Wo[3];
    molora_expert_desc ex[2][MAXN];
    molora_layer_desc ld[3];
    molora_model_desc md;
    molora_model *m;
    molora_layer_info info;
    molora_forward_args a;
    size_t wsz;
    void *ws;
    (void)s;
    fix_make(&f[0], 37, 50, 3, r0, MOLORA_ROUTING_TOPK);
    fix_make(&f[1], 37, 50, 2, r2, MOLORA_ROUTING_DENSE);
    fix_desc(&f[0], ex[0], &ld[0]);
    memset(&ld[1], 0, sizeof ld[1]);
    ld[1].d_in = 37; ld[1].d_out = 50; ld[1].W0 = f[0].W0;   /* N = 0 */
    fix_desc(&f[1], ex[1], &ld[2]);
    memset(&md, 0, sizeof md);
    md.n_layers = 3; md.layers = ld;
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_model_layer_info(m, 2, &info), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_model_layer_info(m, 3, &info), MOLORA_RESULT_INVALID_LAYER);
    assert_int_equal(molora_model_layer_info(m, -1, &info), MOLORA_RESULT_INVALID_LAYER);
    assert_int_equal(molora_model_expert(m, 0, 2, &rk, &sc), MOLORA_RESULT_SUCCESS);
    assert_int_equal(rk, 4);
    assert_int_equal(molora_model_expert(m, 0, 3, &rk, &sc), MOLORA_RESULT_INVALID_ARGUMENT);   /* expert N */
    assert_int_equal(molora_model_expert(m, 0, -1, &rk, &sc), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_model_expert(m, 1, 0, &rk, &sc), MOLORA_RESULT_INVALID_ARGUMENT);   /* N = 0 */
    assert_int_equal(molora_model_expert(m, 2, 1, &rk, &sc), MOLORA_RESULT_SUCCESS);
    assert_int_equal(rk, 1);
    assert_int_equal(molora_model_expert(m, 2, 2, &rk, &sc), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_model_expert(m, 3, 0, &rk, &sc), MOLORA_RESULT_INVALID_LAYER);
    assert_int_equal(molora_model_expert(m, -1, 0, &rk, &sc), MOLORA_RESULT_INVALID_LAYER);
    W = malloc(sizeof(float) * 50 * 37);
    memcpy(W, f[0].W0, sizeof(float) * 50 * 37);
    assert_int_equal(molora_merge(m, 2, wm, W), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_merge(m, 3, wm, W), MOLORA_RESULT_INVALID_LAYER);
    assert_int_equal(molora_merge(m, -1, wm, W), MOLORA_RESULT_INVALID_LAYER);
    memcpy(W, f[0].W0, sizeof(float) * 50 * 37);
    assert_int_equal(molora_merge(m, 1, NULL, W), MOLORA_RESULT_SUCCESS);   /* N = 0: nothing to merge */
    assert_int_equal(memcmp(W, f[0].W0, sizeof(float) * 50 * 37), 0);
    ws = ws_for(m, 1, &wsz);
    for (l = 0; l < 37; l++) X[l] = (float)rnd();
    memset(&a, 0, sizeof a);
    a.n_tokens = 1; a.x = X; a.y = Y; a.weights_out = Wo; a.workspace = ws; a.workspace_size = wsz;
    for (l = -1; l <= 3; l++) {
        molora_result want = l >= 0 && l < 3 ? MOLORA_RESULT_SUCCESS : MOLORA_RESULT_INVALID_LAYER;
        a.layer = l;
        assert_int_equal(molora_forward(m, &a), want);
        assert_int_equal(molora_route(m, &a), want);
    }
    ws_free(ws, wsz); free(W);
    molora_model_free(m); fix_free(&f[0]); fix_free(&f[1]);
}

static void test_bound_mask_last(void **s)
{   /* the mask's last entry (index N - 1) and the row boundary of per-token masks, every rule:
       token t masks expert N - 1 when t is even and expert 0 when t % 3 == 1, so a row read one
       byte off (index N is the next row's first) changes the result */
    static const int rules[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_THRESHOLD,
                                MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_MOLE_OUTPUT, MOLORA_ROUTING_FIXED};
    static const int Ts[] = {1, 6, 16, 17, 40};
    int ranks[MAXN] = {2, 7, 1, 3, 9}, r, c, t, i, n = 5;
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    (void)s;
    for (r = 0; r < 6; r++) {
        fix f;
        molora_model *m;
        fix_make(&f, 37, 50, n, ranks, rules[r]);
        f.threshold = 0.15f;
        m = fix_model(&f);
        for (c = 0; c < 5; c++) {
            int T = Ts[c], pt;
            for (pt = 0; pt < 2; pt++) {
                uint8_t *mask = malloc(pt ? (size_t)T * n : (size_t)n);   /* exact size: index N is past the end */
                float *fixed = rules[r] == MOLORA_ROUTING_FIXED ? rnd_vec((size_t)n, 1) : NULL;
                call k;
                for (t = 0; t < (pt ? T : 1); t++)
                    for (i = 0; i < n; i++)
                        mask[(size_t)t * n + i] = !((i == n - 1 && (pt ? t % 2 == 0 : 1)) ||
                                                    (pt && i == 0 && t % 3 == 1));
                memset(&k, 0, sizeof k);
                k.T = T; k.full = c & 1; k.mask = mask; k.mask_pt = pt; k.fixed = fixed; k.path = -1;
                check_call(&f, m, &k, &ew, &ey);
                free(mask); free(fixed);
            }
        }
        molora_model_free(m); fix_free(&f);
    }
    CHECK_ERR(ew, 2e-5, "routing weights");
    CHECK_ERR(ey, 2e-5, "layer output");
}

/* ---- the speed paths: sparse per-token path, batch-size independence, ith/nth split ------- */
static void test_sparse_many_experts(void **s)
{   /* S6-like: 64 rank-1..4 experts, top-8, AdaMoLE or threshold: few (token, expert) pairs, so
       the per-token gather path runs */
    static const int rules[] = {MOLORA_ROUTING_TOPK, MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_THRESHOLD};
    static const int Ts[] = {1, 5, 17, 40, 100};
    int ranks[MAXN], r, c, i;
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    (void)s;
    for (i = 0; i < 64; i++) ranks[i] = 1 + (i % 7 == 3) + 2 * (i % 11 == 5);
    for (r = 0; r < 4; r++) {   /* the 4th: top-8 of 64 rank-16 experts, 128 gathered rows per token */
        fix f;
        molora_model *m;
        int r16[MAXN];
        for (i = 0; i < 64; i++) r16[i] = 16;
        fix_make(&f, 45, 38, 64, r == 3 ? r16 : ranks, rules[r % 3]);
        f.top_k = 8;
        f.threshold = 0.03f;
        f.tau_max_set = 1; f.tau_max = 0.03f;
        m = fix_model(&f);
        for (c = 0; c < 5; c++) {
            run_opts o;
            o.T = Ts[c]; o.mask_mode = c % 3; o.fixed_mode = 0; o.full = c & 1;
            run_one(&f, m, o, &ew, &ey);
        }
        molora_model_free(m); fix_free(&f);
    }
    print_message("  64 experts   weights: max abs err %.2e | output: max rel %.2e over %ld\n", ew.abs, ey.rel, ey.n);
    CHECK_ERR(ew, 2e-5, "routing weights");
    CHECK_ERR(ey, 2e-5, "layer output");
}

/* run T tokens in blocks of `block` tokens (and nth-way split) and return Y */
static void run_blocks(const molora_model *m, const float *X, int T, int d_in, int d_out, int block, int nth, float *Y)
{
    size_t wsz;
    void *ws = ws_for(m, block, &wsz);
    int t0, k;
    for (t0 = 0; t0 < T; t0 += block) {
        molora_forward_args a;
        memset(&a, 0, sizeof a);
        a.n_tokens = T - t0 < block ? T - t0 : block;
        a.x = X + (size_t)t0 * d_in; a.y = Y + (size_t)t0 * d_out;
        a.workspace = ws; a.workspace_size = wsz;
        for (k = 0; k < nth; k++) {
            a.ith = k; a.nth = nth == 1 ? 0 : nth;
            assert_int_equal(molora_forward(m, &a), 0);
        }
    }
    ws_free(ws, wsz);
}

/* molora's own products up to the CPU table's own_t tokens (the frozen layer and the dense
   experts' shrink on ntg from 17 tokens, their expand on nng from own_from: 2 on AMD, 9 on Intel),
   BLAS or the small-batch kernels outside: against the reference at every switch (T 1 / 2, 8 / 9
   where Intel's expand starts, 16 / 17, 32 / 33 where Intel's table stops, 96 / 97 where AMD's
   does, 128 / 129 where every table must), d_in on
   both sides of the 1024-float K tile, d_out on both sides of a 64-row block and of a 64-column
   strip, ranks 1, 5 and 17 (runs of 4 rows and their tails); and where the table runs them, a
   call split over 3 callers gives the single call's bits (the delta, and beyond 16 tokens the
   whole layer) */
int molora__own_t(void);
double molora__nt_own_check(int T, int N, int K);
static void test_bound_dense_own(void **s)
{
    static const int Ts[] = {1, 2, 8, 9, 16, 17, 32, 33, 96, 97, 128, 129}, d_ins[] = {1023, 1025, 2049},
                     d_outs[] = {63, 65};
    int ranks[MAXN] = {1, 5, 17}, a, b, c, own = molora__own_t(), bitwise = 0;
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    (void)s;
    for (a = 0; a < 3; a++)
        for (b = 0; b < 2; b++) {
            fix f;
            molora_model *m;
            fix_make(&f, d_ins[a], d_outs[b], 3, ranks, MOLORA_ROUTING_DENSE);
            m = fix_model(&f);
            for (c = 0; c < 12; c++) {
                call k;
                memset(&k, 0, sizeof k);
                k.T = Ts[c]; k.full = (a + c) % 2; k.nth = c % 3 == 1 ? 3 : 0; k.path = path_of(Ts[c]);
                check_call(&f, m, &k, &ew, &ey);
                if (Ts[c] >= 2 && Ts[c] <= own) {   /* at T <= 16 the delta alone: ntp computes W0 x */
                    size_t ny = (size_t)Ts[c] * d_outs[b], wsz;
                    float *X = rnd_vec((size_t)Ts[c] * d_ins[a], 1), *Y1 = calloc(ny, sizeof(float));
                    float *Y3 = calloc(ny, sizeof(float));
                    void *ws = ws_for(m, Ts[c], &wsz);
                    molora_forward_args fa;
                    int ith, full;
                    for (full = 0; full < 1 + (Ts[c] > 16); full++) {
                        memset(&fa, 0, sizeof fa);
                        fa.n_tokens = Ts[c]; fa.x = X; fa.y = Y1;
                        fa.output = full ? MOLORA_OUTPUT_FULL : MOLORA_OUTPUT_DELTA;
                        fa.workspace = ws; fa.workspace_size = wsz;
                        assert_int_equal(molora_forward(m, &fa), 0);
                        for (ith = 0, fa.y = Y3, fa.nth = 3; ith < 3; ith++) {
                            fa.ith = ith;
                            assert_int_equal(molora_forward(m, &fa), 0);
                        }
                        assert_memory_equal(Y1, Y3, sizeof(float) * ny);
                        bitwise++;
                    }
                    ws_free(ws, wsz); free(X); free(Y1); free(Y3);
                }
            }
            molora_model_free(m); fix_free(&f);
        }
    {   /* the kernel behind it alone, up to and beyond the MOLORA__OWN_MAX tokens of one chunk */
        static const int Tk[] = {1, 127, 128, 129, 257};
        for (c = 0; c < 5; c++) {
            double e = molora__nt_own_check(Tk[c], 65, 1025);
            if (!(e >= 0 && e < 1e-6)) fail_msg("nt_own at T = %d: error %g of the |products|' sum", Tk[c], e);
        }
    }
    print_message("  own_t %d on this CPU: %d single / split calls compared bit for bit\n", own, bitwise);
    CHECK_ERR(ew, 2e-5, "routing weights");
    CHECK_ERR(ey, 2e-5, "layer output");
}

static void test_workspace_covers_every_batch(void **s)
{   /* molora_workspace_size(max) must be enough for every T <= max: with a wide d_in and few,
       low-rank experts the small-batch copy of X (T <= 16) outweighs the layout at T = max
       (found by examples/engine.c: prefill 13 tokens in a workspace sized for 128) */
    static const int rules[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_ADAMOLE,
                                MOLORA_ROUTING_MOLE_OUTPUT};
    static const int maxes[] = {1, 8, 16, 17, 40, 128};
    int ranks[MAXN] = {1, 2, 1, 1, 1, 1, 1, 1}, r, k, T, D_IN = 512, D_OUT = 8, calls = 0;
    (void)s;
    for (r = 0; r < 4; r++) {
        fix f;
        molora_model *m;
        float *X = rnd_vec((size_t)128 * D_IN, 1), *Y = malloc(sizeof(float) * 128 * D_OUT);
        fix_make(&f, D_IN, D_OUT, 2, ranks, rules[r]);
        m = fix_model(&f);
        for (k = 0; k < 6; k++) {
            size_t wsz;
            void *ws = ws_for(m, maxes[k], &wsz);
            for (T = 1; T <= maxes[k]; T++) {
                molora_forward_args a;
                memset(&a, 0, sizeof a);
                memset(Y, 0, sizeof(float) * 128 * D_OUT);
                a.n_tokens = T; a.x = X; a.y = Y; a.output = MOLORA_OUTPUT_DELTA;
                a.workspace = ws; a.workspace_size = wsz;
                assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_SUCCESS);
                calls++;
            }
            ws_free(ws, wsz);
        }
        free(X); free(Y);
        molora_model_free(m); fix_free(&f);
    }
    print_message("  workspace sized for max tokens: %d forwards with T = 1..max all fit\n", calls);
}

static void test_batch_size_independence(void **s)
{   /* the same rows through decode (1), small-batch (7, 16) and GEMM (64) paths, and split
       over 2, 3 and 5 callers: equal within 1e-5 of the row's scale (documented in the header) */
    static const int rules[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_THRESHOLD,
                                MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_MOLE_OUTPUT};
    static const int blocks[] = {1, 7, 16, 64}, nths[] = {2, 3, 5};
    int ranks[MAXN] = {4, 8, 2, 4, 16, 4, 1, 8}, r, b, i, t, T = 64, D = 203;
    err e = {0, 0, 0};
    (void)s;
    for (r = 0; r < 5; r++) {
        fix f;
        molora_model *m;
        float *X, *Y0, *Y1;
        fix_make(&f, 150, D, 8, ranks, rules[r]);
        m = fix_model(&f);
        X = rnd_vec((size_t)T * 150, 1); Y0 = malloc(sizeof(float) * T * D); Y1 = malloc(sizeof(float) * T * D);
        run_blocks(m, X, T, 150, D, 64, 1, Y0);
        for (b = 0; b < 4 + 3; b++) {
            if (b < 4) run_blocks(m, X, T, 150, D, blocks[b], 1, Y1);
            else run_blocks(m, X, T, 150, D, b == 4 ? 1 : 64, nths[b - 4], Y1);
            for (t = 0; t < T; t++) {
                double sc = 0;
                for (i = 0; i < D; i++) sc = fmax(sc, fabs(Y0[t * D + i]));
                for (i = 0; i < D; i++) err_add(&e, Y1[t * D + i], Y0[t * D + i], sc);
            }
        }
        free(X); free(Y0); free(Y1);
        molora_model_free(m); fix_free(&f);
    }
    print_message("  batch sizes 1/7/16/64, nth 2/3/5: max rel diff %.2e over %ld values\n", e.rel, e.n);
    CHECK_ERR(e, 1e-5, "batch-size independence");
}

static void test_thread_split_args(void **s)
{
    fix f;
    int ranks[2] = {4, 4};
    molora_model *m;
    molora_forward_args a;
    float X[13], Y[11];
    size_t wsz;
    void *ws;
    (void)s;
    memset(X, 0, sizeof X);
    fix_make(&f, 13, 11, 2, ranks, MOLORA_ROUTING_DENSE);
    m = fix_model(&f);
    ws = ws_for(m, 1, &wsz);
    memset(&a, 0, sizeof a);
    a.n_tokens = 1; a.x = X; a.y = Y; a.workspace = ws; a.workspace_size = wsz;
    a.ith = 2; a.nth = 2; assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_INVALID_ARGUMENT);
    a.ith = -1; a.nth = 2; assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_INVALID_ARGUMENT);
    a.ith = 1; a.nth = 0; assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_INVALID_ARGUMENT);
    a.ith = 0; a.nth = -2; assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_INVALID_ARGUMENT);
    a.ith = 4; a.nth = 5; assert_int_equal(molora_forward(m, &a), 0);   /* more callers than columns: a no-op share */
    ws_free(ws, wsz); molora_model_free(m); fix_free(&f);
}


/* ---- the caller's parallel_for: argument errors at their codes, with a logged message ------- */
static long g_pf_calls;
static void serial_for(void *user, int n_tasks, molora_task_fn task, void *ctx)
{
    int k;
    (void)user;
    g_pf_calls++;
    for (k = n_tasks - 1; k >= 0; k--) task(ctx, k, n_tasks);
}

static void test_parallel_for_args(void **s)
{
    fix f;
    int ranks[2] = {4, 4};
    molora_expert_desc ex[MAXN];
    molora_layer_desc ld;
    molora_model_desc md;
    molora_model *m = NULL;
    molora_forward_args a;
    float X[4 * 13], Y[4 * 11], Y0[4 * 11];
    size_t w1, w3, wsz;
    unsigned char *ws;
    long before;
    int i;
    (void)s;
    for (i = 0; i < 4 * 13; i++) X[i] = (float)rnd();
    fix_make(&f, 13, 11, 2, ranks, MOLORA_ROUTING_DENSE);
    fix_desc(&f, ex, &ld);
    memset(&md, 0, sizeof md);
    md.n_layers = 1; md.layers = &ld; md.log = count_log;
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
    /* the size query: n_tasks = 1 is molora_workspace_size; < 1 refused; overflow named */
    assert_int_equal(molora_workspace_size(m, 4, &w1), 0);
    assert_int_equal(molora_workspace_size_tasks(m, 4, 1, &wsz), 0);
    assert_true(wsz == w1);
    assert_int_equal(molora_workspace_size_tasks(m, 4, 3, &w3), 0);
    assert_true(w3 > w1);
    wsz = 7;
    assert_int_equal(molora_workspace_size_tasks(m, 4, 0, &wsz), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_true(wsz == 0);
    assert_int_equal(molora_workspace_size_tasks(m, 4, -1, &wsz), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_workspace_size_tasks(NULL, 4, 2, &wsz), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_workspace_size_tasks(m, 4, 2, NULL), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_workspace_size_tasks(m, -1, 2, &wsz), MOLORA_RESULT_INVALID_SHAPE);
    assert_int_equal(molora_workspace_size_tasks(m, 0x7fffffff, 0x7fffffff, &wsz), MOLORA_RESULT_SIZE_OVERFLOW);
    ws = (unsigned char *)malloc(w3);
    memset(&a, 0, sizeof a);
    a.n_tokens = 4; a.x = X; a.y = Y; a.workspace = ws; a.workspace_size = w3;
    assert_int_equal(molora_forward(m, &a), 0);
    memcpy(Y0, Y, sizeof Y);
#define PF_EXPECT(code, calls)                                                                      \
    do {                                                                                            \
        g_logged = 0; g_pf_calls = 0; memset(Y, 0x7f, sizeof Y);                                     \
        assert_int_equal(molora_forward(m, &a), code);                                              \
        assert_int_equal(g_logged, (code) != 0); assert_int_equal(g_pf_calls, calls);               \
        if (code) for (i = 0; i < 4 * 11; i++) assert_true(((uint32_t *)Y)[i] == 0x7f7f7f7fu);     \
    } while (0)
    /* a task count without a hook, a hook without a task count */
    a.n_tasks = 2; PF_EXPECT(MOLORA_RESULT_INVALID_ARGUMENT, 0);
    a.n_tasks = -1; PF_EXPECT(MOLORA_RESULT_INVALID_ARGUMENT, 0);
    a.n_tasks = 1; PF_EXPECT(0, 0);
    a.parallel_for = serial_for;
    a.n_tasks = 0; PF_EXPECT(MOLORA_RESULT_INVALID_ARGUMENT, 0);
    a.n_tasks = -3; PF_EXPECT(MOLORA_RESULT_INVALID_ARGUMENT, 0);
    /* nth x n_tasks shares must fit in an int: 2 x 0x3fffffff does, 2 x 0x40000000 does not */
    a.nth = 2; a.n_tasks = 0x40000000; PF_EXPECT(MOLORA_RESULT_INVALID_ARGUMENT, 0);
    a.n_tasks = 0x3fffffff; PF_EXPECT(MOLORA_RESULT_WORKSPACE_TOO_SMALL, 0);
    a.nth = 0;
    /* the workspace holds one slice per task: one byte short for 3 tasks, or sized for 1 */
    a.n_tasks = 3; a.workspace_size = w3 - 1; PF_EXPECT(MOLORA_RESULT_WORKSPACE_TOO_SMALL, 0);
    a.workspace_size = w1; PF_EXPECT(MOLORA_RESULT_WORKSPACE_TOO_SMALL, 0);
    a.workspace_size = w3; PF_EXPECT(0, 1);
    assert_memory_equal(Y, Y0, sizeof Y);   /* 11 columns: one chunk, task 0 computes it all */
    /* route checks the hook fields, calls it only for a routing of 64 tokens or more (test_threads),
       and needs the one-task workspace */
    a.workspace_size = w1; a.weights_out = Y;
    g_pf_calls = 0; assert_int_equal(molora_route(m, &a), 0); assert_int_equal(g_pf_calls, 0);
    a.n_tasks = 0; assert_int_equal(molora_route(m, &a), MOLORA_RESULT_INVALID_ARGUMENT);
    a.weights_out = NULL; a.n_tasks = 3; a.workspace_size = w3;
    /* no work, no call: T = 0; DELTA with every expert masked */
    a.n_tokens = 0; PF_EXPECT(0, 0);
    {
        uint8_t none[2] = {0, 0};
        a.n_tokens = 4; a.expert_mask = none; a.output = MOLORA_OUTPUT_DELTA; PF_EXPECT(0, 0);
        a.expert_mask = NULL; a.output = MOLORA_OUTPUT_FULL;
    }
    /* and no allocation through the hook either */
    before = g_allocs;
    for (i = 0; i < 100; i++) assert_int_equal(molora_forward(m, &a), 0);
    assert_int_equal(g_allocs - before, 0);
#undef PF_EXPECT
    free(ws); molora_model_free(m); fix_free(&f);
}

/* ---- the fast kernels against their naive twins in the header ------------------------------
   molora__kernel_check (a test hook in molora.h, not public API) runs this CPU's fast kernel
   (ntp, nt, nn, and the sparse path's dots and axpys; and on an AVX-512 CPU the other vendor's
   ntp, kernel 16, which prefetches W into L1 on Intel and into L2 on AMD) and its naive twin on one shape:
   T = 1..16 rows, N and K on both sides of every blocking size (3 / 2 rows, 8 tokens, 16-float
   chunks, 64 ranks), W at 64-byte phase 0 and off it, acc on and off. Both sum K products in
   float, so they may differ by 2 K rounding errors of the magnitude. */
double molora__kernel_check(int kernel, int T, int N, int K, int q, int acc);

static void test_kernels_match_twins(void **state)
{
    static const int Ns[] = {1, 2, 3, 4, 5, 8, 17, 50, 67, 130};   /* nn: strips of 32 / 64 and masked tails */
    static const int Ks[] = {1, 3, 8, 15, 16, 17, 33, 64, 100, 257};
    static const int qs[] = {0, 1, 7, 15};
    int kernel, T, ni, ki, qi, acc, ran[6] = {0, 0, 0, 0, 0, 0};
    (void)state;
    for (kernel = 0; kernel < 17; kernel = kernel == 4 ? 16 : kernel + 1)
        for (T = 1; T <= (kernel >= 3 && kernel <= 4 ? 1 : 16); T++)
            for (ni = 0; ni < 10; ni++)
                for (ki = 0; ki < 10; ki++)
                    for (qi = 0; qi < 4; qi++)
                        for (acc = 0; acc < 2; acc++) {
                            double e = molora__kernel_check(kernel, T, Ns[ni], Ks[ki], qs[qi], acc);
                            if (e == -1.0) continue;   /* no fast kernel of this kind on this CPU */
                            if (!(e >= 0.0) || e > (2.0 * Ks[ki] + 4.0) * FLT_EPSILON)
                                fail_msg("kernel %d T %d N %d K %d q %d acc %d: error %g", kernel, T, Ns[ni],
                                         Ks[ki], qs[qi], acc, e);
                            ran[kernel == 16 ? 5 : kernel]++;
                        }
    print_message("kernel checks run: ntp %d, nt %d, nn %d, dots %d, axpys %d, other vendor's ntp %d\n", ran[0],
                  ran[1], ran[2], ran[3], ran[4], ran[5]);
}

/* the single-row kernels (decode, M = 1: gvt y = W x, gvn y = x W) against nt_c / nn_c at every
   blocking boundary: N and K 1, 15, 16, 17 (16-float steps), 63, 64, 65, 4097 (8-row blocks and the
   1..7 left), W at 64-byte phase 0 / 1 / 7 with x off its phase, rows padded (ldw > width) or not,
   acc on and off (off: y starts as NaN and must not be read); 4097 x 4097 once per kernel. The
   CPU's table (10 gvt, 11 gvn; the portable table has 4-row C versions), the AVX2 versions (12,
   13) on any AVX2 CPU, as an AVX-512 CPU does not otherwise run them (both vendors' AVX-512
   tables run one gvt). */
static void test_gemv_kernels_match_twins(void **state)
{
    static const int Ls[] = {1, 15, 16, 17, 63, 64, 65, 4097}, qs[] = {0, 1, 7};
    int kernel, ni, ki, qi, acc, pad, ran[4] = {0, 0, 0, 0};
    (void)state;
    for (kernel = 10; kernel < 14; kernel++)
        for (ni = 0; ni < 8; ni++)
            for (ki = 0; ki < 8; ki++)
                for (qi = 0; qi < 3; qi++)
                    for (acc = 0; acc < 2; acc++)
                        for (pad = 0; pad < 4; pad += 3) {
                            int N = Ls[ni], K = Ls[ki];
                            double e;
                            if (N > 4096 && K > 4096 && (qi != 1 || !acc || pad)) continue;
                            e = molora__kernel_check(kernel, pad + 1, N, K, qs[qi], acc);
                            if (e == -1.0 && kernel >= 12) continue;   /* not an AVX2 / AVX-512 CPU, or NO_SIMD */
                            assert_true(e != -1.0);   /* every table has gvt / gvn */
                            if (!(e >= 0.0) || e > (2.0 * K + 4.0) * FLT_EPSILON)
                                fail_msg("%s%s N %d K %d q %d acc %d pad %d: error %g", kernel % 2 ? "gvn" : "gvt",
                                         kernel >= 12 ? " avx2" : "", N, K, qs[qi], acc, pad, e);
                            ran[kernel - 10]++;
                        }
    print_message("gemv kernel checks run: gvt %d, gvn %d, avx2 gvt %d, gvn %d\n", ran[0], ran[1], ran[2], ran[3]);
}

/* ---- ARROW: top-k of |p_e . x| over prototypes, and the exact prototypes (the eigen section) ---- */
typedef struct arw {
    int d_in, d_out, n, top_k;
    float temperature;
    int rank[8];
    float scaling[8];
    float *A[8], *B[8], *P;
    molora_expert_desc ex[8];
    molora_layer_desc ld;
} arw;

static void arw_make(arw *z, int d_in, int d_out, int n, int top_k, float temperature)
{
    int i;
    memset(z, 0, sizeof *z);
    z->d_in = d_in; z->d_out = d_out; z->n = n; z->top_k = top_k; z->temperature = temperature;
    for (i = 0; i < n; i++) {
        z->rank[i] = 1 + i % 3;
        z->scaling[i] = 0.5f + 0.25f * (float)i;
        z->A[i] = rnd_vec((size_t)z->rank[i] * d_in, 1);
        z->B[i] = rnd_vec((size_t)d_out * z->rank[i], 1);
        z->ex[i].rank = z->rank[i]; z->ex[i].A = z->A[i]; z->ex[i].B = z->B[i]; z->ex[i].scaling = z->scaling[i];
    }
    z->P = rnd_vec((size_t)n * d_in, 1);
    z->ld.d_in = d_in; z->ld.d_out = d_out; z->ld.n_experts = n; z->ld.experts = z->ex;
    z->ld.routing = MOLORA_ROUTING_ARROW; z->ld.top_k = top_k; z->ld.temperature = temperature;
    z->ld.prototypes = z->P;
}
static void arw_free(arw *z)
{
    int i;
    for (i = 0; i < z->n; i++) { free(z->A[i]); free(z->B[i]); }
    free(z->P);
}
static molora_result arw_init(const molora_layer_desc *L, molora_model **m)
{
    molora_model_desc md;
    memset(&md, 0, sizeof md);
    md.n_layers = 1; md.layers = L;
    return molora_model_init(&md, m);
}

/* the naive rule of one token: z = |P x|, the k largest allowed (lower index first on ties),
   softmax of z / T over them; then y = sum_e w_e s_e B_e A_e x */
static void arw_ref(const arw *z, const float *P, const float *x, const uint8_t *allow, double *w, double *y)
{
    double lg[8], mx = -1, sum = 0;
    int kept[8] = {0}, i, c, j, o, k = z->top_k ? z->top_k : 3;
    for (i = 0; i < z->n; i++) {
        double d = 0;
        for (j = 0; j < z->d_in; j++) d += (double)P[i * z->d_in + j] * x[j];
        lg[i] = fabs(d);
        w[i] = 0;
    }
    for (c = 0; c < k; c++) {
        int best = -1;
        for (i = 0; i < z->n; i++)
            if ((!allow || allow[i]) && !kept[i] && (best < 0 || lg[i] > lg[best])) best = i;
        if (best < 0) break;
        kept[best] = 1;
        if (lg[best] > mx) mx = lg[best];
    }
    for (i = 0; i < z->n; i++)
        if (kept[i]) { w[i] = exp((lg[i] - mx) / (z->temperature > 0 ? z->temperature : 1)); sum += w[i]; }
    for (i = 0; i < z->n; i++) if (sum > 0) w[i] /= sum;
    for (o = 0; o < z->d_out; o++) y[o] = 0;
    for (i = 0; i < z->n; i++) {
        double h[3];
        if (w[i] == 0) continue;
        for (j = 0; j < z->rank[i]; j++) {
            int q;
            h[j] = 0;
            for (q = 0; q < z->d_in; q++) h[j] += (double)z->A[i][j * z->d_in + q] * x[q];
        }
        for (o = 0; o < z->d_out; o++) {
            double s = 0;
            for (j = 0; j < z->rank[i]; j++) s += (double)z->B[i][o * z->rank[i] + j] * h[j];
            y[o] += w[i] * z->scaling[i] * s;
        }
    }
}

/* forward (DELTA) and weights_out of T tokens against arw_ref; mask: (T, N) per token or NULL */
static void arw_check(const arw *z, int T, const uint8_t *mask, int per_token)
{
    molora_model *m;
    molora_forward_args a;
    float *X = rnd_vec((size_t)(T ? T : 1) * z->d_in, 1), *Y = calloc((size_t)(T ? T : 1) * z->d_out, sizeof(float));
    float *W = calloc((size_t)(T ? T : 1) * z->n, sizeof(float));
    size_t wsz;
    void *ws;
    err e = {0, 0, 0};
    int t, i;
    long before;
    assert_int_equal(arw_init(&z->ld, &m), MOLORA_RESULT_SUCCESS);
    ws = ws_for(m, T ? T : 1, &wsz);
    memset(&a, 0, sizeof a);
    a.n_tokens = T; a.x = X; a.y = Y; a.output = MOLORA_OUTPUT_DELTA; a.weights_out = W;
    a.workspace = ws; a.workspace_size = wsz; a.expert_mask = mask; a.mask_per_token = per_token;
    before = g_allocs;   /* ARROW's forward allocates nothing either */
    assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_SUCCESS);
    assert_int_equal(g_allocs, before);
    for (t = 0; t < T; t++) {
        double w[8], y[64];
        arw_ref(z, z->P, X + (size_t)t * z->d_in, mask ? mask + (per_token ? (size_t)t * z->n : 0) : NULL, w, y);
        for (i = 0; i < z->n; i++) err_add(&e, W[t * z->n + i], w[i], 1);
        for (i = 0; i < z->d_out; i++) err_add(&e, Y[t * z->d_out + i], y[i], 1 + fabs(y[i]));
    }
    CHECK_ERR(e, 1e-5, "arrow forward vs the naive rule");
    molora_model_free(m);
    free(ws); free(X); free(Y); free(W);
}

static void test_arrow_rule(void **s)
{
    static const int Ts[] = {0, 1, 2, 16, 17, 40};
    static const struct { int k; float temp; } kt[] = {{1, 1}, {2, 1}, {0, 0.3f}, {3, 2}, {5, 1}, {2, 0}};
    arw z;
    int i, j, t;
    (void)s;
    for (i = 0; i < (int)(sizeof kt / sizeof kt[0]); i++)
        for (j = 0; j < (int)(sizeof Ts / sizeof Ts[0]); j++) {
            arw_make(&z, 13, 11, 5, kt[i].k, kt[i].temp);
            arw_check(&z, Ts[j], NULL, 0);
            arw_free(&z);
        }
    /* masks: one for the batch, and one per token (a token with every expert masked gets nothing) */
    {
        uint8_t batch[5] = {1, 0, 1, 1, 0}, tok[17 * 5];
        for (t = 0; t < 17 * 5; t++) tok[t] = (uint8_t)((t * 7 + t / 5) % 3 != 0);
        for (t = 0; t < 5; t++) tok[3 * 5 + t] = 0;
        arw_make(&z, 13, 11, 5, 3, 1);
        arw_check(&z, 17, batch, 0);
        arw_check(&z, 17, tok, 1);
        arw_check(&z, 1, tok, 1);
        arw_free(&z);
    }
    arw_make(&z, 9, 4, 1, 1, 1);   /* N = 1: weight 1 */
    arw_check(&z, 17, NULL, 0);
    arw_free(&z);
}

/* k = N, N + 1, the default 3 against N, the gate bias, NaN prototypes: each at its code */
static void test_arrow_bounds(void **s)
{
    arw z;
    molora_model *m = NULL;
    molora_layer_info info;
    float bias[4] = {0};
    (void)s;
    arw_make(&z, 6, 5, 4, 4, 1);   /* k = N: a softmax over all of |z| */
    arw_check(&z, 16, NULL, 0);
    z.ld.top_k = 5;
    assert_int_equal(arw_init(&z.ld, &m), MOLORA_RESULT_INVALID_TOP_K);
    assert_null(m);
    z.ld.top_k = -1;
    assert_int_equal(arw_init(&z.ld, &m), MOLORA_RESULT_INVALID_TOP_K);
    z.ld.top_k = 0;   /* the default k = 3 */
    assert_int_equal(arw_init(&z.ld, &m), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_model_layer_info(m, 0, &info), 0);
    assert_int_equal(info.top_k, 3);
    assert_int_equal(info.routing, MOLORA_ROUTING_ARROW);
    assert_string_equal(molora_routing_name(MOLORA_ROUTING_ARROW), "arrow");
    molora_model_free(m); m = NULL;
    z.ld.n_experts = 2;   /* the default 3 with N = 2: PEFT's "k out of range", here at init */
    assert_int_equal(arw_init(&z.ld, &m), MOLORA_RESULT_INVALID_TOP_K);
    z.ld.top_k = 2;
    assert_int_equal(arw_init(&z.ld, &m), MOLORA_RESULT_SUCCESS);
    molora_model_free(m); m = NULL;
    z.ld.n_experts = 4;
    z.ld.gate_bias = bias;
    assert_int_equal(arw_init(&z.ld, &m), MOLORA_RESULT_INVALID_ARGUMENT);
    z.ld.gate_bias = NULL;
    z.P[7] = NAN;
    assert_int_equal(arw_init(&z.ld, &m), MOLORA_RESULT_NON_FINITE);
    z.P[7] = INFINITY;
    assert_int_equal(arw_init(&z.ld, &m), MOLORA_RESULT_NON_FINITE);
    z.P[7] = 0;
    z.ld.temperature = -1;
    assert_int_equal(arw_init(&z.ld, &m), MOLORA_RESULT_INVALID_VALUE);
    z.ld.temperature = 1;
    assert_int_equal(arw_init(&z.ld, &m), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_model_prototypes(m, 1, z.P), MOLORA_RESULT_INVALID_LAYER);
    assert_int_equal(molora_model_prototypes(m, 0, NULL), MOLORA_RESULT_INVALID_ARGUMENT);
    molora_model_free(m); m = NULL;
    z.ld.routing = MOLORA_ROUTING_FIXED;   /* not ARROW: no prototypes to give */
    assert_int_equal(arw_init(&z.ld, &m), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_model_prototypes(m, 0, z.P), MOLORA_RESULT_INVALID_ARGUMENT);
    molora_model_free(m);
    arw_free(&z);
}

/* ties go to the lower index, |.| makes p and -p equal, and x = 0 gives 1/k on the first k */
static void test_arrow_ties(void **s)
{
    arw z;
    molora_model *m;
    molora_forward_args a;
    float x[4] = {1, 2, 0, 0}, y[3], w[4], zero[4] = {0};
    size_t wsz;
    void *ws;
    int j;
    (void)s;
    arw_make(&z, 4, 3, 4, 2, 1);
    for (j = 0; j < 4; j++) {   /* p1 = -p0 = p3 (one tie of three), p2 smaller */
        z.P[0 * 4 + j] = (float)(j + 1);
        z.P[1 * 4 + j] = -(float)(j + 1);
        z.P[2 * 4 + j] = 0.5f * (float)(j + 1);
        z.P[3 * 4 + j] = (float)(j + 1);
    }
    assert_int_equal(arw_init(&z.ld, &m), 0);
    ws = ws_for(m, 1, &wsz);
    memset(&a, 0, sizeof a);
    a.n_tokens = 1; a.x = x; a.y = y; a.output = MOLORA_OUTPUT_DELTA; a.weights_out = w;
    a.workspace = ws; a.workspace_size = wsz;
    memset(y, 0, sizeof y);
    assert_int_equal(molora_forward(m, &a), 0);
    assert_true(w[0] == 0.5f && w[1] == 0.5f && w[2] == 0 && w[3] == 0);
    a.x = zero;
    memset(y, 0, sizeof y);   /* DELTA output adds into y */
    assert_int_equal(molora_forward(m, &a), 0);
    assert_true(w[0] == 0.5f && w[1] == 0.5f && w[2] == 0 && w[3] == 0);
    assert_true(y[0] == 0 && y[1] == 0 && y[2] == 0);
    free(ws);
    molora_model_free(m);
    arw_free(&z);
}

/* the eigen-solver: A v = lambda v and V V^T = I to double precision, values descending */
static void eigen_check(int n, const double *A0, double tol)
{
    double *A = malloc(sizeof(double) * n * n), *V = malloc(sizeof(double) * n * n), *w = malloc(sizeof(double) * n);
    double scale = 0, worst = 0;
    int i, j, k;
    memcpy(A, A0, sizeof(double) * n * n);
    assert_int_equal(molora_eigen_sym(n, A, w, V), MOLORA_RESULT_SUCCESS);
    for (i = 0; i < n * n; i++) scale = fmax(scale, fabs(A0[i]));
    for (k = 0; k < n; k++) {
        if (k) assert_true(w[k] <= w[k - 1]);
        for (i = 0; i < n; i++) {
            double r = 0;
            for (j = 0; j < n; j++) r += A0[i * n + j] * V[k * n + j];
            worst = fmax(worst, fabs(r - w[k] * V[k * n + i]) / (scale > 0 ? scale : 1));
        }
        for (j = 0; j < n; j++) {
            double d = 0;
            for (i = 0; i < n; i++) d += V[k * n + i] * V[j * n + i];
            worst = fmax(worst, fabs(d - (j == k)));
        }
    }
    if (worst > tol) fail_msg("eigen n = %d: residual %g > %g", n, worst, tol);
    free(A); free(V); free(w);
}
static void test_eigen_known_spectra(void **s)
{
    double D[16] = {0}, A[64 * 64], Q[3 * 3], w[64], one = 7.5, v1 = 0;
    int i, j, k, n;
    (void)s;
    D[0] = 1; D[5] = 3; D[10] = -2; D[15] = 3;   /* diagonal, 3 twice */
    memcpy(A, D, sizeof D);
    assert_int_equal(molora_eigen_sym(4, A, w, NULL), 0);
    assert_true(w[0] == 3 && w[1] == 3 && w[2] == 1 && w[3] == -2);
    eigen_check(4, D, 1e-14);
    assert_int_equal(molora_eigen_sym(1, &one, w, &v1), 0);   /* r = 1 */
    assert_true(w[0] == 7.5 && v1 == 1);
    /* repeated eigenvalues in a rotated basis: Q diag(2, 2, -1) Q^T, Q a Householder reflection */
    {
        double u[3] = {1, 2, 2}, lam[3] = {2, 2, -1}, B[9];
        for (i = 0; i < 3; i++) for (j = 0; j < 3; j++) Q[i * 3 + j] = (i == j) - 2 * u[i] * u[j] / 9;
        for (i = 0; i < 3; i++)
            for (j = 0; j < 3; j++) {
                B[i * 3 + j] = 0;
                for (k = 0; k < 3; k++) B[i * 3 + j] += Q[i * 3 + k] * lam[k] * Q[j * 3 + k];
            }
        eigen_check(3, B, 1e-14);
        memcpy(A, B, sizeof B);
        assert_int_equal(molora_eigen_sym(3, A, w, NULL), 0);
        assert_true(fabs(w[0] - 2) < 1e-14 && fabs(w[1] - 2) < 1e-14 && fabs(w[2] + 1) < 1e-14);
    }
    /* rank-deficient: G = X X^T with X (64, 5): 59 zero eigenvalues; and random symmetric r = 64 */
    for (n = 2; n <= 64; n *= 2) {
        double *X = malloc(sizeof(double) * n * 5), G[64 * 64];
        for (i = 0; i < n * 5; i++) X[i] = rnd();
        for (i = 0; i < n; i++)
            for (j = 0; j < n; j++) {
                G[i * n + j] = 0;
                for (k = 0; k < 5; k++) G[i * n + j] += X[i * 5 + k] * X[j * 5 + k];
            }
        eigen_check(n, G, 1e-12);
        memcpy(A, G, sizeof(double) * n * n);
        assert_int_equal(molora_eigen_sym(n, A, w, NULL), 0);
        for (i = 5; i < n; i++) assert_true(fabs(w[i]) < 1e-12 * w[0]);
        for (i = 0; i < n; i++) for (j = i; j < n; j++) G[i * n + j] = G[j * n + i] = rnd();
        eigen_check(n, G, 1e-12);
        free(X);
    }
    {   /* entries near DBL_MAX: their squares would overflow without the solver's scaling */
        double H[9] = {1e307, 2e307, 0, 2e307, -3e307, 1e307, 0, 1e307, 5e306};
        eigen_check(3, H, 1e-13);
    }
    {   /* every entry 1.7e308: the top eigenvalue 16 x 1.7e308 is beyond double, refused, not inf */
        static double Hm[16 * 16];
        double wm[16];
        for (i = 0; i < 16 * 16; i++) Hm[i] = 1.7e308;
        assert_int_equal(molora_eigen_sym(16, Hm, wm, NULL), MOLORA_RESULT_NON_FINITE);
    }
    memset(A, 0, sizeof(double) * 9);   /* zero matrix */
    eigen_check(3, A, 0);
    assert_int_equal(molora_eigen_sym(0, A, w, NULL), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_eigen_sym(2, NULL, w, NULL), MOLORA_RESULT_INVALID_ARGUMENT);
    A[0] = 1; A[1] = NAN; A[3] = 1;
    assert_int_equal(molora_eigen_sym(2, A, w, NULL), MOLORA_RESULT_NON_FINITE);
}

/* exact prototypes against a naive reference: power iteration in double on (BA)^T (BA), run to
   convergence (a separated spectrum), sign-free: |cos| = 1 to 1e-6; B = 0 gives p = 0, a rank-1
   expert gives A's row; rank-deficient A (a repeated row) still gives the top direction */
static void test_arrow_exact_prototypes(void **s)
{
    arw z;
    molora_model *m;
    float P[5 * 17];
    int e, it, j, o, q;
    (void)s;
    arw_make(&z, 17, 9, 5, 2, 1);
    z.ld.prototypes = NULL;
    memset(z.B[4], 0, sizeof(float) * 9 * z.rank[4]);   /* an untrained expert: B = 0 */
    memcpy(z.A[2] + 17, z.A[2], sizeof(float) * 17);     /* expert 2 (rank 3): row 1 = row 0 */
    assert_int_equal(arw_init(&z.ld, &m), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_model_prototypes(m, 0, P), MOLORA_RESULT_SUCCESS);
    for (e = 0; e < 5; e++) {
        double v[17], u[17], h[3], bh[9], nv = 0, c = 0, np = 0;
        int r = z.rank[e];
        for (j = 0; j < 17; j++) v[j] = 1.0 + 0.1 * j;
        for (it = 0; it < 3000; it++) {   /* v <- A^T B^T B A v, normalised */
            double n2 = 0;
            for (q = 0; q < r; q++) { h[q] = 0; for (j = 0; j < 17; j++) h[q] += z.A[e][q * 17 + j] * v[j]; }
            for (o = 0; o < 9; o++) { bh[o] = 0; for (q = 0; q < r; q++) bh[o] += z.B[e][o * r + q] * h[q]; }
            for (q = 0; q < r; q++) { h[q] = 0; for (o = 0; o < 9; o++) h[q] += z.B[e][o * r + q] * bh[o]; }
            for (j = 0; j < 17; j++) { u[j] = 0; for (q = 0; q < r; q++) u[j] += z.A[e][q * 17 + j] * h[q]; }
            for (j = 0; j < 17; j++) n2 += u[j] * u[j];
            if (n2 == 0) break;
            for (j = 0; j < 17; j++) v[j] = u[j] / sqrt(n2);
        }
        for (j = 0; j < 17; j++) {
            c += v[j] * P[e * 17 + j]; nv += v[j] * v[j]; np += (double)P[e * 17 + j] * P[e * 17 + j];
        }
        if (e == 4) { assert_true(np == 0); continue; }
        if (fabs(fabs(c) / sqrt(nv * np) - 1) > 1e-6 || fabs(np - 1) > 1e-6)
            fail_msg("expert %d: |cos| %.9f, |p|^2 %.9f", e, fabs(c) / sqrt(nv * np), np);
    }
    molora_model_free(m);
    arw_free(&z);
}

/* ---- the grouped sparse path and adapter pools ---------------------------------------------- */
/* the path molora's rule picks for per-token weights w (T, n): grouped when fewer than 1 in the
   CPU table's by-expert ratio (4; AMD's AVX-512 table 3) of the (token, active rank) pairs are
   routed, 1 in its by-token ratio (6; AMD's 3) when the routed tokens select more than 2 experts on
   average and their mean rank is below the table's by-token rank (any; AMD's 2)
   (test_bound_sparse_switch, test_bound_by_token_switch and test_bound_order_rank check the switches) */
int molora__by_token_ratio(void);    /* test hooks in molora.h */
int molora__by_expert_ratio(void);
int molora__by_token_rank(void);
static int expected_path(const fix *f, int T, const float *w)
{
    size_t pairs = 0, r_act = 0, e_pairs = 0, routed = 0;
    int t, i, by_token;
    for (i = 0; i < f->n; i++) {
        int act = 0;
        for (t = 0; t < T; t++)
            if (w[(size_t)t * f->n + i] != 0.0f) { act = 1; pairs += (size_t)f->rank[i]; e_pairs++; }
        r_act += act ? (size_t)f->rank[i] : 0;
    }
    for (t = 0; t < T; t++)
        for (i = 0; i < f->n; i++)
            if (w[(size_t)t * f->n + i] != 0.0f) { routed++; break; }
    by_token = e_pairs > 2 * routed && pairs < (size_t)molora__by_token_rank() * e_pairs;
    if (T > 1 && r_act > 0 &&
        pairs * (size_t)(by_token ? molora__by_token_ratio() : molora__by_expert_ratio()) < (size_t)T * r_act)
        return MOLORA_PATH_SPARSE;
    return path_of(T);
}

/* per-token weights: k experts per token (every 7th token none; expert `idle` never), or with
   one >= 0 every token on expert `one` and token 0 on k more */
static float *sparse_rows(int T, int n, int k, int idle, int one)
{
    float *w = calloc((size_t)T * n + 1, sizeof *w);
    int t, j;
    for (t = 0; t < T; t++) {
        float *wt = w + (size_t)t * n;
        if (one >= 0) {
            wt[one] = 0.6f + 0.1f * (float)(t % 3);
            for (j = 0; t == 0 && j < k; j++) wt[(one + 1 + j) % n] = 0.3f;
            continue;
        }
        if (t % 7 == 6) continue;
        for (j = 0; j < k; j++) {
            int i = (t * 5 + j * 11) % n;
            if (i == idle) i = (i + 1) % n;
            wt[i] += 0.2f + 0.05f * (float)j;
        }
    }
    return w;
}

static void test_grouped_path(void **s)
{   /* 40 experts, ranks above every blocking size (3 rows, 8 / 16 tokens and rows, 64-row flush),
       d_in and d_out above the 256-float tile of the by-token order and not multiples of 16:
       1, 2 (by expert), 3 and 5 (by token) experts per token, one expert idle, all tokens on one
       expert, split over 3 callers; T at the batch-size boundaries */
    static const int Ts[] = {2, 15, 16, 17, 64, 200}, ks[] = {1, 2, 3, 5}, rk[] = {1, 3, 17, 33, 65, 2, 8, 16};
    int ranks[MAXN], i, ti, ki, grouped = 0, calls = 0;
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    fix f;
    molora_model *m;
    (void)s;
    for (i = 0; i < 40; i++) ranks[i] = rk[i % 8];
    fix_make(&f, 300, 530, 40, ranks, MOLORA_ROUTING_FIXED);
    m = fix_model(&f);
    for (ti = 0; ti < 6; ti++)
        for (ki = 0; ki < 5; ki++) {
            int T = Ts[ti];
            float *w = ki < 4 ? sparse_rows(T, 40, ks[ki], 7, -1) : sparse_rows(T, 40, 5, -1, 4);
            call c;
            memset(&c, 0, sizeof c);
            c.T = T; c.full = (ti + ki) & 1; c.fixed = w; c.fixed_pt = 1; c.nth = ki == 2 ? 3 : 1;
            c.path = expected_path(&f, T, w);
            grouped += c.path == MOLORA_PATH_SPARSE; calls++;
            check_call(&f, m, &c, &ew, &ey);
            free(w);
        }
    molora_model_free(m); fix_free(&f);
    print_message("  grouped path: %d of %d calls grouped | output: max rel %.2e over %ld\n", grouped, calls, ey.rel,
                  ey.n);
    assert_true(grouped >= 20);
    CHECK_ERR(ey, 2e-5, "layer output, grouped path");
}

static void test_bound_by_token_switch(void **s)
{   /* 3 experts per token (the by-token order): grouped when pairs * ratio < T * r_act (ratio the
       CPU table's, 3 to 6). 19 experts of rank 2, token t on t, t + 1, t + 2 (mod u): pairs = 6 T,
       r_act = 2 u, so u = 3 ratio active is equality (dense), u = 3 ratio + 1 grouped */
    int ranks[MAXN], i, u, t, full, ratio = molora__by_token_ratio();
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    fix f;
    molora_model *m;
    (void)s;
    for (i = 0; i < 19; i++) ranks[i] = 2;
    fix_make(&f, 290, 270, 19, ranks, MOLORA_ROUTING_FIXED);
    m = fix_model(&f);
    assert_true(ratio == 6 || ratio == 3);   /* the tables': Intel / AVX2 / portable 6, AMD's AVX-512 3 */
    for (u = 3 * ratio; u <= 3 * ratio + 1; u++)
        for (full = 0; full < 2; full++) {
            int T = 38;
            float *w = calloc((size_t)T * 19, sizeof *w);
            call c;
            for (t = 0; t < T; t++)
                for (i = 0; i < 3; i++) w[(size_t)t * 19 + (t + i) % u] = 0.3f + 0.1f * (float)i;
            memset(&c, 0, sizeof c);
            c.T = T; c.full = full; c.fixed = w; c.fixed_pt = 1;
            c.path = u == 3 * ratio ? MOLORA_PATH_GEMM : MOLORA_PATH_SPARSE;
            assert_int_equal(expected_path(&f, T, w), c.path);
            check_call(&f, m, &c, &ew, &ey);
            free(w);
        }
    molora_model_free(m); fix_free(&f);
    CHECK_ERR(ey, 2e-5, "layer output at the by-token switch");
}

int molora__order_check(size_t pairs, size_t e_pairs, size_t routed);   /* test hook: 1 by token */
static void test_bound_order_rank(void **s)
{   /* the grouped path's order, by token only when the routed tokens select more than 2 experts on
       average (e_pairs > 2 routed) and their mean rank is below the table's by_token_rank (AMD's
       AVX-512 table 2, the others any): both comparisons at equality and one past it through the
       hook that choose_path calls; then layers at the rank boundary through molora_forward: 60
       experts, token t on 3t, 3t + 1, 3t + 2 (mod 60) with ranks 1, 1, 3 (mean 5 / 3) or 1, 2, 3
       (mean 2), T 40, under a fifth of the pairs routed so the path is grouped in either order:
       on AMD the first runs by token, the second by expert, elsewhere both by token */
    int ranks[MAXN], i, t, v, rank = molora__by_token_rank();
    size_t big = rank == 0x7fffffff ? 1000 : (size_t)rank;
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    (void)s;
    assert_true(rank == 2 || rank == 0x7fffffff);   /* the tables': AMD's AVX-512 2, the others any rank */
    /* experts per token: 3 per token over 10 tokens is 30 > 20 (by token), 2 per token is 20 (not) */
    assert_int_equal(molora__order_check(30, 30, 10), 1);
    assert_int_equal(molora__order_check(20, 20, 10), 0);
    assert_int_equal(molora__order_check(21, 21, 10), 1);
    /* the mean rank at the table's bound: pairs = rank e_pairs is by expert, one pair fewer by token */
    assert_int_equal(molora__order_check(big * 30 - 1, 30, 10), 1);
    assert_int_equal(molora__order_check(big * 30, 30, 10), rank == 0x7fffffff);
    for (v = 0; v < 2; v++) {
        fix f;
        molora_model *m;
        int T = 40;
        float *w = calloc((size_t)T * 60, sizeof *w);
        call c;
        for (i = 0; i < 60; i++) ranks[i] = v == 0 ? (i % 3 == 2 ? 3 : 1) : 1 + i % 3;
        fix_make(&f, 290, 270, 60, ranks, MOLORA_ROUTING_FIXED);
        m = fix_model(&f);
        for (t = 0; t < T; t++)
            for (i = 0; i < 3; i++) w[(size_t)t * 60 + (3 * t + i) % 60] = 0.3f + 0.1f * (float)i;
        /* the counts of this routing: 120 (token, expert) pairs over 40 tokens, 200 or 240 rank pairs */
        assert_int_equal(molora__order_check(v == 0 ? 200 : 240, 120, 40), v == 0 || rank == 0x7fffffff);
        memset(&c, 0, sizeof c);
        c.T = T; c.full = v; c.fixed = w; c.fixed_pt = 1;
        c.path = expected_path(&f, T, w);
        assert_int_equal(c.path, MOLORA_PATH_SPARSE);
        check_call(&f, m, &c, &ew, &ey);
        free(w);
        molora_model_free(m); fix_free(&f);
    }
    CHECK_ERR(ey, 2e-5, "layer output at the order's rank switch");
}

static void test_grouped_routing_rules(void **s)
{   /* the gates' own rules on 40 experts: top-8, threshold, AdaMoLE, and MoLE's output gate with
       fixed sparse weights; T at the boundaries, masks none / batch / per token */
    static const int rules[] = {MOLORA_ROUTING_TOPK, MOLORA_ROUTING_THRESHOLD, MOLORA_ROUTING_ADAMOLE,
                                MOLORA_ROUTING_MOLE_OUTPUT};
    static const int Ts[] = {2, 15, 16, 17, 64, 200};
    int ranks[MAXN], r, ti, i;
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    (void)s;
    for (i = 0; i < 40; i++) ranks[i] = 1 + (i % 5 == 2) * 16 + (i % 9 == 4) * 2;
    for (r = 0; r < 4; r++) {
        fix f;
        molora_model *m;
        fix_make(&f, 270, 260, 40, ranks, rules[r]);
        f.top_k = 8; f.threshold = 0.03f; f.tau_max_set = 1; f.tau_max = 0.03f;
        m = fix_model(&f);
        for (ti = 0; ti < 6; ti++) {
            if (rules[r] == MOLORA_ROUTING_MOLE_OUTPUT) {
                float *w = sparse_rows(Ts[ti], 40, 3, 0, -1);
                call c;
                memset(&c, 0, sizeof c);
                c.T = Ts[ti]; c.full = ti & 1; c.fixed = w; c.fixed_pt = 1; c.path = expected_path(&f, Ts[ti], w);
                check_call(&f, m, &c, &ew, &ey);
                free(w);
            } else {
                run_opts o;
                o.T = Ts[ti]; o.mask_mode = ti % 3; o.fixed_mode = 0; o.full = ti & 1;
                run_one(&f, m, o, &ew, &ey);
            }
        }
        molora_model_free(m); fix_free(&f);
    }
    print_message("  rules on the grouped path  weights: max abs err %.2e | output: max rel %.2e over %ld\n", ew.abs,
                  ey.rel, ey.n);
    CHECK_ERR(ew, 2e-5, "routing weights");
    CHECK_ERR(ey, 2e-5, "layer output");
}

/* the pool's index patterns: 0 spread over min(16, T) adapters with -1 and N - 1 among them,
   1 every token on adapter N - 1, 2 every token -1 */
static int32_t *pool_index(int T, int n, int pattern)
{
    int32_t *idx = malloc(sizeof(int32_t) * ((size_t)T + 1));
    int t, used = T < 16 ? T : 16;
    for (t = 0; t < T; t++) {
        if (pattern == 1) idx[t] = n - 1;
        else if (pattern == 2) idx[t] = -1;
        else idx[t] = t % 9 == 8 ? -1 : t % used == 0 ? n - 1 : (int32_t)((t % used) * 37 % n);
    }
    return idx;
}

/* one pool call: T tokens over n adapters by pattern pat (pool_index), full or delta, nth callers;
   the path is asserted SPARSE for the spread pattern from 16 tokens on */
static void check_pool_call(fix *f, molora_model *m, int T, int n, int pat, int full, int nth, err *ew, err *ey)
{
    int32_t *idx = pool_index(T, n, pat);
    float *hot = calloc((size_t)T * n, sizeof *hot);
    call c;
    int t;
    for (t = 0; t < T; t++) if (idx[t] >= 0) hot[(size_t)t * n + idx[t]] = 1.0f;
    memset(&c, 0, sizeof c);
    c.T = T; c.full = full; c.index = idx; c.exact_w = 1; c.nth = nth;
    c.path = pat == 2 && !c.full ? MOLORA_PATH_NONE : expected_path(f, T, hot);
    if (pat == 0 && T >= 16) assert_int_equal(c.path, MOLORA_PATH_SPARSE);
    check_call(f, m, &c, ew, ey);
    free(idx); free(hot);
}

static void test_adapter_pool(void **s)
{   /* 256 adapters of rank 16 (one of rank 1, one of 17), one adapter per token through
       adapter_index; every routing rule of the layer is replaced; T = 1 reads one adapter */
    static const int Ts[] = {1, 2, 16, 17, 64, 200};
    static const int rules[] = {MOLORA_ROUTING_FIXED, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_MOLE_OUTPUT};
    int ranks[MAXN], i, ti, pat, r;
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    (void)s;
    for (i = 0; i < 256; i++) ranks[i] = i == 0 ? 1 : i == 255 ? 17 : 16;
    for (r = 0; r < 3; r++) {
        fix f;
        molora_model *m;
        fix_make(&f, 40, 33, 256, ranks, rules[r]);
        m = fix_model(&f);
        for (ti = 0; ti < 6; ti++)
            for (pat = 0; pat < 3; pat++)
                check_pool_call(&f, m, Ts[ti], 256, pat, (ti + pat + r) & 1, ti == 3 ? 2 : 1, &ew, &ey);
        molora_model_free(m); fix_free(&f);
    }
    print_message("  pool of 256  weights: max abs err %.2e | output: max rel %.2e over %ld\n", ew.abs, ey.rel, ey.n);
    CHECK_ERR(ey, 2e-5, "layer output, adapter pool");
}

static char g_last_log[512];
static void keep_log(void *user, molora_result r, const char *msg)
{
    (void)user; (void)r;
    snprintf(g_last_log, sizeof g_last_log, "%s", msg);
}

static void test_adapter_index_errors(void **s)
{   /* refused before Y is touched, each at its code, the log naming the token or the clash */
    static const int32_t bad[][3] = {{0, 4, 1}, {0, -2, 1}, {0, 1, INT32_MAX}, {INT32_MIN, 0, 0}};
    static const int bad_t[] = {1, 1, 2, 0};
    int ranks[MAXN] = {4, 4, 4, 4}, k;
    fix f;
    molora_expert_desc ex[MAXN];
    molora_layer_desc ld;
    molora_model_desc md;
    molora_model *m = NULL;
    molora_forward_args a, good;
    float X[3 * 20], Y[3 * 10], Ysave[3 * 10], Wout[3 * 4], fw[4] = {1, 0, 0, 0};
    int32_t idx[3] = {3, -1, 0};
    uint8_t mask[4] = {1, 1, 1, 1};
    size_t wsz;
    void *ws;
    char want[64];
    (void)s;
    fix_make(&f, 20, 10, 4, ranks, MOLORA_ROUTING_FIXED);
    fix_desc(&f, ex, &ld);
    memset(&md, 0, sizeof md);
    md.n_layers = 1; md.layers = &ld; md.log = keep_log;
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
    ws = ws_for(m, 3, &wsz);
    for (k = 0; k < 60; k++) X[k] = (float)rnd();
    for (k = 0; k < 30; k++) Ysave[k] = Y[k] = (float)rnd();
    memset(&good, 0, sizeof good);
    good.n_tokens = 3; good.x = X; good.y = Y; good.workspace = ws; good.workspace_size = wsz;
    good.adapter_index = idx; good.weights_out = Wout;
    a = good;   /* FIXED routing needs no weights with an index; molora_route fills the one-hot rows */
    assert_int_equal(molora_route(m, &a), MOLORA_RESULT_SUCCESS);
    assert_true(Wout[3] == 1.0f && Wout[4 + 0] == 0.0f && Wout[4 + 3] == 0.0f && Wout[8] == 1.0f);
    for (k = 0; k < 4; k++) {
        a = good; a.adapter_index = bad[k];
        assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_INVALID_ARGUMENT);
        snprintf(want, sizeof want, "adapter_index[%d] = %ld", bad_t[k], (long)bad[k][bad_t[k]]);
        if (!strstr(g_last_log, want)) fail_msg("log '%s' does not name '%s'", g_last_log, want);
        assert_memory_equal(Y, Ysave, sizeof Y);
    }
    a = good; a.weights = fw;
    assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_non_null(strstr(g_last_log, "weights"));
    a = good; a.expert_mask = mask;
    assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_non_null(strstr(g_last_log, "expert_mask"));
    assert_memory_equal(Y, Ysave, sizeof Y);
    a = good; a.n_tokens = 0; a.adapter_index = bad[0];   /* T = 0 reads no index */
    assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_SUCCESS);
    ws_free(ws, wsz); molora_model_free(m); fix_free(&f);
    {   /* a layer without experts takes -1 only */
        int32_t none[2] = {-1, -1}, zero[2] = {-1, 0};
        fix z;
        molora_model *m0;
        float X0[2 * 5], Y0[2 * 6];
        void *w0;
        fix_make(&z, 5, 6, 0, ranks, MOLORA_ROUTING_DENSE);
        m0 = fix_model(&z);
        w0 = ws_for(m0, 2, &wsz);
        memset(X0, 0, sizeof X0);
        memset(&a, 0, sizeof a);
        a.n_tokens = 2; a.x = X0; a.y = Y0; a.workspace = w0; a.workspace_size = wsz; a.adapter_index = none;
        assert_int_equal(molora_forward(m0, &a), MOLORA_RESULT_SUCCESS);
        a.adapter_index = zero;
        assert_int_equal(molora_forward(m0, &a), MOLORA_RESULT_INVALID_ARGUMENT);
        ws_free(w0, wsz); molora_model_free(m0); fix_free(&z);
    }
}

static void test_adapter_pool_no_allocations(void **s)
{   /* the pool's forward allocates nothing, at every T and pattern */
    int ranks[MAXN], i, T, pat;
    long before;
    fix f;
    molora_model *m;
    float *X, *Y;
    size_t wsz;
    void *ws;
    molora_forward_args a;
    (void)s;
    for (i = 0; i < 256; i++) ranks[i] = 16;
    fix_make(&f, 24, 20, 256, ranks, MOLORA_ROUTING_FIXED);
    m = fix_model(&f);
    X = rnd_vec(64 * 24, 1); Y = malloc(sizeof(float) * 64 * 20);
    ws = ws_for(m, 64, &wsz);
    for (T = 1; T <= 64; T += 9)
        for (pat = 0; pat < 3; pat++) {
            int32_t *idx = pool_index(T, 256, pat);
            memset(&a, 0, sizeof a);
            a.n_tokens = T; a.x = X; a.y = Y; a.workspace = ws; a.workspace_size = wsz; a.adapter_index = idx;
            before = g_allocs;
            assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_SUCCESS);
            assert_int_equal(g_allocs - before, 0);
            free(idx);
        }
    free(X); free(Y); ws_free(ws, wsz); molora_model_free(m); fix_free(&f);
}

static void test_narrow_kernel_matches_twin(void **state)
{   /* ntn, the gate's narrow kernel (AVX-512 and AVX2 where the CPU has them), against its twin:
       rows 1..17 (its 9-row block and 5-row AVX2 block on both sides), and the block edges to 65
       (gates of any width run it at T <= 16), K around 16-float steps and
       d 768, T 1..7 and 16, 17, 64 (3- and 2-token blocks), X's rows and W at phases 0, 1, 7, 15 */
    static const int Ks[] = {1, 15, 16, 17, 767, 768, 769}, Ts[] = {1, 2, 3, 4, 5, 6, 7, 16, 17, 64};
    static const int qs[] = {0, 1, 7, 15};
    int ti, n, ki, qi, acc, ran = 0;
    (void)state;
    for (ti = 0; ti < 10; ti++)
        for (n = 1; n <= 65; n++)
            for (ki = 0; ki < 7; ki++)
                for (qi = 0; qi < 4; qi++)
                    for (acc = 0; acc < 2; acc++) {
                        double e;
                        if (Ts[ti] > 7 && (qi > 1 || ki < 4)) continue;   /* the long T: fewer shapes */
                        if (n > 17 && n % 9 != 0 && n % 9 != 1 && n % 5 != 0) continue;   /* wide gates: block edges */
                        if (n > 17 && (qi > 1 || ki < 4)) continue;
                        e = molora__kernel_check(14, Ts[ti], n, Ks[ki], qs[qi], acc);
                        if (e == -1.0) continue;
                        if (!(e >= 0.0) || e > (2.0 * Ks[ki] + 4.0) * FLT_EPSILON)
                            fail_msg("ntn T %d N %d K %d q %d acc %d: error %g", Ts[ti], n, Ks[ki], qs[qi], acc, e);
                        ran++;
                    }
    print_message("narrow kernel checks run: ntn %d\n", ran);
}

static void test_outer_kernel_matches_twin(void **state)
{   /* gto, the gate as outer products (AVX-512 tables only), bitwise its twin (each logit one FMA
       chain over k in order): columns 1..17 and every strip and vector edge to 130, K across the
       256-float chunks (1, 255, 256, 257, 768, 769), T 1..13 (its 6-, 8- and 12-token tiles, the
       pairs and the single) and 17, 64, X's rows at phases 0, 1, 15 */
    static const int Ks[] = {1, 255, 256, 257, 768, 769}, Ts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 64};
    static const int qs[] = {0, 1, 15};
    int ti, n, ki, qi, ran = 0;
    (void)state;
    for (ti = 0; ti < 15; ti++)
        for (n = 1; n <= 130; n++)
            for (ki = 0; ki < 6; ki++)
                for (qi = 0; qi < 3; qi++) {
                    double e;
                    int m = n % 16;
                    if (n > 17 && m != 0 && m != 1 && m != 15) continue;   /* wide: the vectors' edges */
                    if (Ts[ti] > 13 && (qi > 0 || ki < 3)) continue;
                    e = molora__kernel_check(17, Ts[ti], n, Ks[ki], qs[qi], 0);
                    if (e == -1.0) continue;
                    if (e != 0.0) fail_msg("gto T %d N %d K %d q %d: error %g", Ts[ti], n, Ks[ki], qs[qi], e);
                    ran++;
                }
    print_message("outer kernel checks run: gto %d\n", ran);
}

double molora__exps_check(float lo, float hi, uint32_t step);

static void test_exps_within_one_ulp(void **state)
{   /* the softmax's exps (>>vexp) against exp in double: within 1 ulp on [-104, 0] (every 997th
       float, about 1.1 million), every 4099th of [-1e-6, 0] near exp's 1, every float of [-104,
       -86] (the subnormal results); exact at +-0, -inf, NaN, underflow and overflow. Every float
       of [-104, 0], 1.12e9 of them, was measured once: at most 1 ulp too. */
    double e;
    (void)state;
    e = molora__exps_check(-104.0f, -0.0f, 997);
    if (!(e <= 1.0)) fail_msg("exps on [-104, 0]: %g ulp", e);
    e = molora__exps_check(-1e-6f, -0.0f, 4099);
    if (!(e <= 1.0)) fail_msg("exps on [-1e-6, 0]: %g ulp", e);
    e = molora__exps_check(-104.0f, -86.0f, 1);
    if (!(e <= 1.0)) fail_msg("exps on [-104, -86]: %g ulp", e);
    print_message("exps: within 1 ulp\n");
}

static void test_grouped_kernels_match_twins(void **state)
{   /* the grouped path's ntg and nng (rows through pointers) against their twins, as above */
    static const int Ns[] = {1, 2, 3, 4, 16, 17, 67}, Ks[] = {1, 3, 8, 15, 16, 17, 33, 64, 257};
    int kernel, T, ni, ki, acc, ran[2] = {0, 0};
    (void)state;
    for (kernel = 5; kernel < 7; kernel++)
        for (T = 1; T <= 16; T++)
            for (ni = 0; ni < 7; ni++)
                for (ki = 0; ki < 9; ki++)
                    for (acc = 0; acc < 2; acc++) {
                        double e = molora__kernel_check(kernel, T, Ns[ni], Ks[ki], (ki + ni) % 16, acc);
                        if (e == -1.0) continue;
                        if (!(e >= 0.0) || e > (2.0 * Ks[ki] + 4.0) * FLT_EPSILON)
                            fail_msg("kernel %d T %d N %d K %d acc %d: error %g", kernel, T, Ns[ni], Ks[ki], acc, e);
                        ran[kernel - 5]++;
                    }
    print_message("grouped kernel checks run: ntg %d, nng %d\n", ran[0], ran[1]);
}

static void test_grouped_kernel_blocks(void **state)
{   /* the blocking sizes of the gather and grouped kernels at their boundaries: dots and axpys in
       blocks of 8 rows (7, 8, 9, 16, 17, 65 rows), axpys two 16-column steps at once (31, 32, 33
       columns), nng's strips of 64 columns and their masked last strip of 1..4 vectors (48, 63, 64,
       65, 100, 255, 256, 257, 272, 513) with ranks 1, 15, 16, 17, 33, 64, tokens in groups of 4
       (1, 2, 3, 4, 5, 7, 8, 9, 16) */
    static const int Rs[] = {7, 8, 9, 16, 17, 65}, Cs[] = {1, 15, 16, 17, 31, 32, 33, 48, 1000};
    static const int Ns[] = {48, 63, 64, 65, 100, 255, 256, 257, 272, 513}, Ks[] = {1, 15, 16, 17, 33, 64};
    static const int Ts[] = {1, 2, 3, 4, 5, 7, 8, 9, 16};
    int ri, ci, ni, ki, ti, acc, ran = 0;
    double e;
    (void)state;
    for (ri = 0; ri < 6; ri++)
        for (ci = 0; ci < 9; ci++) {
            /* dots: Rs rows of Cs floats; axpys: Rs coefficient rows into Cs columns */
            e = molora__kernel_check(3, 1, Rs[ri], Cs[ci], 0, 0);
            if (e != -1.0 && (!(e >= 0.0) || e > (2.0 * Cs[ci] + 4.0) * FLT_EPSILON))
                fail_msg("dots R %d K %d: error %g", Rs[ri], Cs[ci], e);
            ran += e != -1.0;
            e = molora__kernel_check(4, 1, Cs[ci], Rs[ri], 0, 0);
            if (e != -1.0 && (!(e >= 0.0) || e > (2.0 * Rs[ri] + 4.0) * FLT_EPSILON))
                fail_msg("axpys R %d N %d: error %g", Rs[ri], Cs[ci], e);
            ran += e != -1.0;
        }
    for (ni = 0; ni < 10; ni++)
        for (ki = 0; ki < 6; ki++)
            for (ti = 0; ti < 9; ti++)
                for (acc = 0; acc < 2; acc++) {
                    e = molora__kernel_check(6, Ts[ti], Ns[ni], Ks[ki], (ni + ki) % 16, acc);
                    if (e != -1.0 && (!(e >= 0.0) || e > (2.0 * Ks[ki] + 4.0) * FLT_EPSILON))
                        fail_msg("nng T %d N %d K %d: error %g", Ts[ti], Ns[ni], Ks[ki], e);
                    ran += e != -1.0;
                }
    print_message("  grouped kernel blocks: %d checks\n", ran);
}

static void test_pool_tiles(void **s)
{   /* adapter pools across the by-expert shrink's 512-float tiles of d_in (511, 512, 513, 1030)
       and nng's 256-column tile of d_out (257): ranks 16, 17 and 1, T = 1 / 16 / 17 / 64, index
       spread with -1 and N - 1 (grouped), all tokens on N - 1 (one expert: dense), and all -1 */
    static const int Din[] = {511, 512, 513, 1030}, Ts[] = {1, 16, 17, 64};
    int ranks[MAXN], i, di, ti, pat;
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    (void)s;
    for (i = 0; i < 20; i++) ranks[i] = i == 3 ? 1 : i == 19 ? 17 : 16;
    for (di = 0; di < 4; di++) {
        fix f;
        molora_model *m;
        fix_make(&f, Din[di], 257, 20, ranks, MOLORA_ROUTING_FIXED);
        m = fix_model(&f);
        for (ti = 0; ti < 4; ti++)
            for (pat = 0; pat < 3; pat++)
                check_pool_call(&f, m, Ts[ti], 20, pat, (ti + pat + di) & 1, ti == 2 ? 2 : 1, &ew, &ey);
        molora_model_free(m); fix_free(&f);
    }
    print_message("  pool tiles  output: max rel %.2e over %ld\n", ey.rel, ey.n);
    CHECK_ERR(ey, 2e-5, "layer output, pool tiles");
}

static void test_pool_token_counts(void **s)
{   /* the grouped kernels' edges through the forward: adapters holding 1, 7, 8, 9, 16 and 17
       tokens (ntg's groups of 6, nng's of 4, the by-expert blocks of 16), ranks 1, 15, 16, 17
       and 64 (ntg's rows in 4s), -1 between them, d_out 100 (nng's last strip 36 columns, masked)
       and 64, over 1, 2 and 3 callers (shares of 16-column chunks) */
    static const int counts[] = {1, 7, 8, 9, 16, 17}, Douts[] = {100, 64};
    int ranks[12] = {1, 15, 16, 17, 64, 16, 16, 15, 17, 1, 16, 64}, di, nth, full, i, t, T = 0;
    int32_t idx[160];
    err ew = {0, 0, 0}, ey = {0, 0, 0};
    (void)s;
    /* adapter i holds counts[i % 6] tokens, round robin while it has some left, -1 every 11th */
    {
        int left[12], any = 1;
        for (i = 0; i < 12; i++) left[i] = counts[i % 6];
        while (any) {
            any = 0;
            for (i = 0; i < 12; i++) {
                if (left[i] == 0) continue;
                if (T % 11 == 10) idx[T++] = -1;
                idx[T++] = i; left[i]--; any = 1;
            }
        }
    }
    for (di = 0; di < 2; di++) {
        fix f;
        molora_model *m;
        float *hot = calloc((size_t)T * 12, sizeof *hot);
        fix_make(&f, 70, Douts[di], 12, ranks, MOLORA_ROUTING_FIXED);
        m = fix_model(&f);
        for (t = 0; t < T; t++) if (idx[t] >= 0) hot[(size_t)t * 12 + idx[t]] = 1.0f;
        for (nth = 1; nth <= 3; nth++)
            for (full = 0; full < 2; full++) {
                call c;
                memset(&c, 0, sizeof c);
                c.T = T; c.full = full; c.index = idx; c.exact_w = 1; c.nth = nth;
                c.path = expected_path(&f, T, hot);
                assert_int_equal(c.path, MOLORA_PATH_SPARSE);
                check_call(&f, m, &c, &ew, &ey);
            }
        free(hot);
        molora_model_free(m); fix_free(&f);
    }
    print_message("  pool token counts (T = %d)  output: max rel %.2e over %ld\n", T, ey.rel, ey.n);
    CHECK_ERR(ey, 2e-5, "layer output, pool token counts");
}

static void test_route_equals_forward(void **s)
{   /* molora_route gives the routing weights molora_forward uses, bit for bit: gates of 9, 41 and
       65 rows (narrow, and wider than the narrow kernel's 32 at every T), d_in 270 (rows off their
       64-byte phase), T 1..17 and 40, every gated rule */
    static const int Ns[] = {8, 40, 64}, Ts[] = {1, 2, 5, 16, 17, 40};
    static const int rules[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_ADAMOLE};
    int ranks[MAXN], ni, ri, ti, i;
    (void)s;
    for (i = 0; i < MAXN; i++) ranks[i] = 1 + i % 4;
    for (ni = 0; ni < 3; ni++)
        for (ri = 0; ri < 3; ri++) {
            fix f;
            molora_model *m;
            fix_make(&f, 270, 24, Ns[ni], ranks, rules[ri]);
            if (rules[ri] == MOLORA_ROUTING_TOPK) f.top_k = 8;
            m = fix_model(&f);
            for (ti = 0; ti < 6; ti++) {
                int T = Ts[ti], N = Ns[ni];
                size_t wsz;
                void *ws = ws_for(m, T, &wsz);
                float *X = malloc(sizeof(float) * (size_t)T * 270), *Y = malloc(sizeof(float) * (size_t)T * 24);
                float *w1 = malloc(sizeof(float) * (size_t)T * N), *w2 = malloc(sizeof(float) * (size_t)T * N);
                molora_forward_args a;
                for (i = 0; i < T * 270; i++) X[i] = (float)rnd();
                memset(&a, 0, sizeof a);
                a.n_tokens = T; a.x = X; a.y = Y; a.workspace = ws; a.workspace_size = wsz; a.weights_out = w1;
                assert_int_equal(molora_route(m, &a), MOLORA_RESULT_SUCCESS);
                a.weights_out = w2;
                assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_SUCCESS);
                if (memcmp(w1, w2, sizeof(float) * (size_t)T * N) != 0)
                    fail_msg("N %d rule %d T %d: route and forward route differently", N, rules[ri], T);
                free(X); free(Y); free(w1); free(w2); ws_free(ws, wsz);
            }
            molora_model_free(m); fix_free(&f);
        }
}

static void test_topk_one_pass(void **s)
{   /* top-k's one pass (k <= 64) and the selection passes (k = 65, 70) against a naive pick of
       the k best, ties to the lowest index: 70 experts whose logits (the gate bias) take 5 values */
    static const int ks[] = {1, 2, 8, 63, 64, 65, 69, 70};
    float bias[70], x[2] = {1, 0}, y[2], w[70];
    int ki, i, j;
    tiny z;
    (void)s;
    for (i = 0; i < 70; i++) bias[i] = (float)((i * 7) % 5) - (i == 50 ? 3.0f : 0.0f);
    tiny_make(&z, 70, MOLORA_ROUTING_TOPK, bias);
    for (ki = 0; ki < 8; ki++) {
        int k = ks[ki], chosen[70] = {0};
        double sum = 0.0, mx = -1e30;
        for (j = 0; j < k; j++) {   /* the naive pick: the best not yet chosen, lowest index first */
            int best = -1;
            for (i = 0; i < 70; i++) if (!chosen[i] && (best < 0 || bias[i] > bias[best])) best = i;
            chosen[best] = 1;
            if (bias[best] > mx) mx = bias[best];
        }
        for (i = 0; i < 70; i++) if (chosen[i]) sum += exp((double)bias[i] - mx);
        z.ld.top_k = k;
        assert_int_equal(tiny_run(&z.ld, NULL, x, 1, y, w, NULL), MOLORA_RESULT_SUCCESS);
        for (i = 0; i < 70; i++) {
            double ref = chosen[i] ? exp((double)bias[i] - mx) / sum : 0.0;
            if (!chosen[i] ? w[i] != 0.0f : fabs(w[i] - ref) > 1e-6)
                fail_msg("top-%d: w[%d] = %g, the naive pick %g", k, i, (double)w[i], ref);
        }
    }
}

/* ---- X's NaN / Inf found through the gate logits (molora__gate_checks_x) ------------------------ */
/* one bad element of X at every kind of place (first, last, a middle row's middle, each column of
   a 16-wide step), for every rule with a gate, gates narrow (own kernel) and wide (BLAS at T > 16),
   T across the paths: the same NON_FINITE and message as the separate check gave. A finite X whose
   logits overflow still routes as before (X is then checked in full and found finite). */
static void test_x_check_through_gate(void **s)
{
    static const int rules[] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_THRESHOLD,
                                MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_ARROW};
    static const int Ts[] = {1, 5, 16, 17, 64};
    static const int ns[] = {3, 40};
    const float bad[] = {NAN, INFINITY, -INFINITY};
    int ri, ti, ni, ranks[40], i, fx;
    (void)s;
    for (i = 0; i < 40; i++) ranks[i] = 1 + i % 4;
    for (ni = 0; ni < 2; ni++)
        for (ri = 0; ri < 5; ri++) {
            fix f;
            molora_expert_desc ex[MAXN];
            molora_layer_desc ld;
            molora_model_desc md;
            molora_model *m = NULL;
            int d = 37, n = ns[ni];
            fix_make(&f, d, 21, n, ranks, rules[ri] == MOLORA_ROUTING_ARROW ? MOLORA_ROUTING_TOPK : rules[ri]);
            fix_desc(&f, ex, &ld);
            if (rules[ri] == MOLORA_ROUTING_ARROW) {
                ld.routing = MOLORA_ROUTING_ARROW; ld.prototypes = f.Wg; ld.gate_weight = NULL; ld.gate_bias = NULL;
            }
            memset(&md, 0, sizeof md); md.n_layers = 1; md.layers = &ld; md.log = keep_log;
            assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
            for (ti = 0; ti < 5; ti++) {
                int T = Ts[ti], pos[5], p, b, out;
                float *X = rnd_vec((size_t)T * d, 1), *Y = malloc((size_t)T * 21 * sizeof(float));
                float *wo = malloc((size_t)T * n * sizeof(float)), *wf = rnd_vec((size_t)T * n, 1);
                size_t wsz;
                void *ws = ws_for(m, T, &wsz);
                molora_forward_args a;
                pos[0] = 0; pos[1] = T * d - 1; pos[2] = (T / 2) * d + d / 2; pos[3] = 15; pos[4] = 16;
                memset(&a, 0, sizeof a);
                a.n_tokens = T; a.x = X; a.y = Y; a.workspace = ws; a.workspace_size = wsz; a.weights_out = wo;
                /* fx: the gate's rule; FIXED weights for all tokens, per token (they skip the gate
                   product, so X is checked on its own) */
                for (fx = 0; fx < 3; fx++)
                    for (p = 0; p < 5; p++)
                        for (b = 0; b < 3; b++)
                            for (out = 0; out < 3; out++) {   /* full, delta, route only */
                                float keep = X[pos[p]];
                                molora_result r;
                                X[pos[p]] = bad[b]; g_last_log[0] = 0;
                                a.weights = fx ? wf : NULL; a.weights_per_token = fx == 2;
                                a.output = out == 1 ? MOLORA_OUTPUT_DELTA : MOLORA_OUTPUT_FULL;
                                r = out == 2 ? molora_route(m, &a) : molora_forward(m, &a);
                                if (r != MOLORA_RESULT_NON_FINITE)
                                    fail_msg("rule %d n %d T %d fx %d pos %d bad %d out %d: %d", rules[ri], n, T, fx,
                                             pos[p], b, out, (int)r);
                                assert_string_equal(g_last_log, "forward: input x has NaN or Inf");
                                X[pos[p]] = keep;
                            }
                a.weights = wf; a.weights_per_token = 1;   /* FIXED: the given weights, the gate not run */
                assert_int_equal(molora_route(m, &a), MOLORA_RESULT_SUCCESS);
                assert_memory_equal(wo, wf, (size_t)T * n * sizeof(float));
                a.weights = NULL; a.weights_per_token = 0;
                a.output = MOLORA_OUTPUT_FULL;
                assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_SUCCESS);
                for (i = 0; i < d; i++) X[i] = 3e38f;   /* finite, its logits overflow: not an x error */
                g_last_log[0] = 0;
                (void)molora_forward(m, &a);
                assert_string_not_equal(g_last_log, "forward: input x has NaN or Inf");
                ws_free(ws, wsz); free(X); free(Y); free(wo); free(wf);
            }
            molora_model_free(m);
            fix_free(&f);
        }
}

/* Gate logits that overflow float from finite x and weights: NaN or +-inf by the kernel's order
   of sums (ntn's lanes meet +inf and -inf as NaN; gto's one chain stays infinite), either way the
   same NON_FINITE and message at every T, whichever kernel the gate of 8 to 65 rows runs on:
   x = +-3e38 alternating against gate rows of 2 (the partial sums cancel or overflow by order),
   x = 3e38 (every order overflows to +inf), and AdaMoLE's threshold row alone overflowing */
static void test_gate_overflow_is_an_error(void **s)
{
    static const int ns[] = {8, 15, 16, 17, 31, 64, 65}, Ts[] = {1, 4, 5, 16, 17, 64, 130};
    enum { D = 64, DO = 5 };
    int ni, ri, ti, xi, i, t;
    (void)s;
    for (ni = 0; ni < 7; ni++)
        for (ri = 0; ri < 3; ri++) {
            int n = ns[ni], rank[MAXN];
            molora_routing rule = ri == 0   ? MOLORA_ROUTING_DENSE
                                : ri == 1 ? MOLORA_ROUTING_TOPK
                                          : MOLORA_ROUTING_ADAMOLE;
            float *Wg = malloc(sizeof(float) * n * D), *wt = malloc(sizeof(float) * D);
            molora_expert_desc ex[MAXN];
            molora_layer_desc ld;
            molora_model_desc md;
            molora_model *m = NULL;
            fix f;
            for (i = 0; i < n; i++) rank[i] = 1;
            fix_make(&f, D, DO, n, rank, rule);
            fix_desc(&f, ex, &ld);
            for (xi = 0; xi < 3; xi++) {   /* 0, 1: the gate overflows; 2: AdaMoLE's threshold only */
                if (xi == 2 && rule != MOLORA_ROUTING_ADAMOLE) continue;
                for (i = 0; i < n * D; i++) Wg[i] = xi == 2 ? 1e-3f : 2.0f;
                for (i = 0; i < D; i++) wt[i] = xi == 2 ? 2.0f : 1e-3f;
                ld.gate_weight = Wg; ld.gate_bias = NULL; ld.threshold_weight = wt;
                memset(&md, 0, sizeof md); md.n_layers = 1; md.layers = &ld; md.log = keep_log;
                assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
                for (ti = 0; ti < 7; ti++) {
                    int T = Ts[ti];
                    float *X = malloc(sizeof(float) * T * D), *Y = calloc((size_t)T * DO, sizeof(float));
                    float *w = malloc(sizeof(float) * T * n);
                    size_t wsz;
                    void *ws = ws_for(m, T, &wsz);
                    molora_forward_args a;
                    const char *want = xi == 2 ? "forward: layer 0 threshold logit is not finite (inputs too large)"
                                               : "forward: layer 0 gate logits are not finite (inputs too large)";
                    for (t = 0; t < T; t++)
                        for (i = 0; i < D; i++) X[t * D + i] = xi == 0 && i % 2 ? -3e38f : 3e38f;
                    memset(&a, 0, sizeof a);
                    a.n_tokens = T; a.x = X; a.y = Y; a.workspace = ws; a.workspace_size = wsz; a.weights_out = w;
                    g_last_log[0] = 0;
                    if (molora_forward(m, &a) != MOLORA_RESULT_NON_FINITE || strcmp(g_last_log, want))
                        fail_msg("rule %d n %d T %d case %d: forward \"%s\"", (int)rule, n, T, xi, g_last_log);
                    g_last_log[0] = 0;
                    if (molora_route(m, &a) != MOLORA_RESULT_NON_FINITE || strcmp(g_last_log, want))
                        fail_msg("rule %d n %d T %d case %d: route \"%s\"", (int)rule, n, T, xi, g_last_log);
                    for (i = 0; i < T * DO; i++) assert_true(Y[i] == 0.0f);   /* Y untouched */
                    ws_free(ws, wsz); free(X); free(Y); free(w);
                }
                molora_model_free(m);
            }
            fix_free(&f); free(Wg); free(wt);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid_dense),
        cmocka_unit_test(test_grid_topk),
        cmocka_unit_test(test_grid_threshold),
        cmocka_unit_test(test_grid_adamole),
        cmocka_unit_test(test_grid_mole_output),
        cmocka_unit_test(test_grid_fixed_batch),
        cmocka_unit_test(test_grid_fixed_token),
        cmocka_unit_test(test_grid_override),
        cmocka_unit_test(test_mask_worked_example),
        cmocka_unit_test(test_fully_masked_is_frozen),
        cmocka_unit_test(test_topk_ties_lowest_index),
        cmocka_unit_test(test_topk_k_equals_n_is_dense),
        cmocka_unit_test(test_threshold_static),
        cmocka_unit_test(test_adamole_edges),
        cmocka_unit_test(test_temperature),
        cmocka_unit_test(test_huge_logits_stay_finite),
        cmocka_unit_test(test_zero_experts_is_frozen),
        cmocka_unit_test(test_zero_tokens_noop),
        cmocka_unit_test(test_route_matches_forward),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_copy_weights),
        cmocka_unit_test(test_mixed_layers_model),
        cmocka_unit_test(test_init_errors),
        cmocka_unit_test(test_memory_hook_and_oom),
        cmocka_unit_test(test_forward_errors),
        cmocka_unit_test(test_error_leaves_output_unchanged),
        cmocka_unit_test(test_zero_allocations_on_forward),
        cmocka_unit_test(test_bound_threshold),
        cmocka_unit_test(test_bound_adamole_tau),
        cmocka_unit_test(test_bound_tau_max_values),
        cmocka_unit_test(test_bound_topk),
        cmocka_unit_test(test_bound_temperature),
        cmocka_unit_test(test_bound_tiny_temperature),
        cmocka_unit_test(test_bound_paths),
        cmocka_unit_test(test_path_when_nothing_runs),
        cmocka_unit_test(test_bound_sparse_switch),
        cmocka_unit_test(test_bound_rank_paths),
        cmocka_unit_test(test_bound_merge_ranks),
        cmocka_unit_test(test_bound_panels),
        cmocka_unit_test(test_bound_gate_width),
        cmocka_unit_test(test_bound_workspace),
        cmocka_unit_test(test_bound_indices),
        cmocka_unit_test(test_bound_mask_last),
        cmocka_unit_test(test_sparse_many_experts),
        cmocka_unit_test(test_bound_dense_own),
        cmocka_unit_test(test_workspace_covers_every_batch),
        cmocka_unit_test(test_batch_size_independence),
        cmocka_unit_test(test_thread_split_args),
        cmocka_unit_test(test_parallel_for_args),
        cmocka_unit_test(test_kernels_match_twins),
        cmocka_unit_test(test_gemv_kernels_match_twins),
        cmocka_unit_test(test_arrow_rule),
        cmocka_unit_test(test_arrow_bounds),
        cmocka_unit_test(test_arrow_ties),
        cmocka_unit_test(test_eigen_known_spectra),
        cmocka_unit_test(test_arrow_exact_prototypes),
        cmocka_unit_test(test_grouped_path),
        cmocka_unit_test(test_bound_by_token_switch),
        cmocka_unit_test(test_bound_order_rank),
        cmocka_unit_test(test_grouped_routing_rules),
        cmocka_unit_test(test_adapter_pool),
        cmocka_unit_test(test_adapter_index_errors),
        cmocka_unit_test(test_adapter_pool_no_allocations),
        cmocka_unit_test(test_grouped_kernels_match_twins),
        cmocka_unit_test(test_narrow_kernel_matches_twin), cmocka_unit_test(test_outer_kernel_matches_twin),
        cmocka_unit_test(test_exps_within_one_ulp),
        cmocka_unit_test(test_grouped_kernel_blocks),
        cmocka_unit_test(test_pool_tiles),
        cmocka_unit_test(test_pool_token_counts),
        cmocka_unit_test(test_topk_one_pass),
        cmocka_unit_test(test_x_check_through_gate),
        cmocka_unit_test(test_gate_overflow_is_an_error),
        cmocka_unit_test(test_route_equals_forward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

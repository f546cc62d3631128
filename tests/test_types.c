/* Typed descriptors and fan_in_fan_out layers (issue 12):
   - F16 / BF16 (and unaligned F32) expert A, B and W0 give the same model, bit for bit, as
     their float32 conversion, on every forward path (T = 1, 2..16, > 16, sparse);
   - NaN / Inf in a 16-bit weight is NON_FINITE at init, an unknown type INVALID_ARGUMENT;
   - molora_convert_f32 against an independent converter, on all 65536 bit patterns;
   - a fan_in_fan_out layer (W0 stored (d_in, d_out), GPT-2 Conv1D) against a naive float64
     reference: full forward on every path and with an ith/nth split, and molora_merge;
   - the adapter loader hands the file's bytes (typed, unaligned) and reads fan_in_fan_out.
   Built against OpenBLAS and with MOLORA_NO_BLAS; the library is in tests/molora_impl.c. */
#define TEST_RNG_SEED 0x2545F4914F6CDD1Dull
#include "test_util.h"   /* cmocka, rnd32 (this suite's draw: the top 32 bits), check_close */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "molora.h"

/* ---- an independent 16-bit -> float reference -------------------------------------------- */
static float ref_f16(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (float)((h & 0x8000) ? -v : v);
}
static float ref_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static float ref_elem(uint16_t h, molora_type t) { return t == MOLORA_TYPE_F16 ? ref_f16(h) : ref_bf16(h); }
/* a random finite 16-bit value of magnitude about scale: from a float, rounded to the type */
static uint16_t rnd16(molora_type t, double scale)
{
    float f = (float)(rnd32() * scale);
    uint32_t u;
    if (t == MOLORA_TYPE_BF16) { memcpy(&u, &f, 4); return (uint16_t)(u >> 16); }
    {   /* F16: search the nearest normal half for |f| in [2^-14, 2) */
        double a = fabs((double)f) < 6.2e-5 ? 6.2e-5 : fabs((double)f);
        int e = (int)floor(log2(a));
        int m = (int)((a / ldexp(1.0, e) - 1.0) * 1024.0);
        return (uint16_t)((f < 0 ? 0x8000 : 0) | ((e + 15) << 10) | (m & 1023));
    }
}

/* ---- one layer in two forms: typed (16-bit or unaligned F32) and its float32 conversion --- */
#define NE 16
typedef struct typed_layer {
    int d_in, d_out, n, rank[NE];
    molora_type type;
    unsigned char *raw[2 * NE + 1];   /* typed bytes, at an odd address (see stored_at)        */
    float *f32[2 * NE + 1];           /* the same values as float32: A_i, B_i, ..., W0           */
    float *Wg, *bias;
    molora_expert_desc ex_t[NE], ex_f[NE];
    molora_layer_desc ld_t, ld_f;
} typed_layer;

static void fill_matrix(typed_layer *z, int k, size_t n, double scale)
{
    size_t i, es = z->type == MOLORA_TYPE_F32 ? 4 : 2;
    z->raw[k] = malloc(n * es + 3);
    z->f32[k] = malloc(n * sizeof(float));
    for (i = 0; i < n; i++) {
        float f;
        if (z->type == MOLORA_TYPE_F32) { f = (float)(rnd32() * scale); memcpy(z->raw[k] + 1 + 4 * i, &f, 4); }
        else { uint16_t h = rnd16(z->type, scale); f = ref_elem(h, z->type); memcpy(z->raw[k] + 1 + 2 * i, &h, 2); }
        z->f32[k][i] = f;
    }
}
static void typed_layer_make(typed_layer *z, molora_type type, int fifo, molora_routing routing)
{
    int i, j;
    memset(z, 0, sizeof *z);
    z->d_in = 40; z->d_out = 24; z->n = NE; z->type = type;
    for (i = 0; i < NE; i++) {
        z->rank[i] = 1 + i % 3;
        fill_matrix(z, 2 * i, (size_t)z->rank[i] * z->d_in, 0.3);
        fill_matrix(z, 2 * i + 1, (size_t)z->d_out * z->rank[i], 0.3);
    }
    fill_matrix(z, 2 * NE, (size_t)z->d_in * z->d_out, 0.2);
    z->Wg = malloc(sizeof(float) * NE * z->d_in);
    z->bias = malloc(sizeof(float) * z->d_out);
    for (j = 0; j < NE * z->d_in; j++) z->Wg[j] = (float)rnd32();
    for (j = 0; j < z->d_out; j++) z->bias[j] = (float)rnd32();
    for (i = 0; i < NE; i++) {
        z->ex_f[i].rank = z->ex_t[i].rank = z->rank[i];
        z->ex_f[i].lora_alpha = z->ex_t[i].lora_alpha = 2.0f;
        z->ex_f[i].A = z->f32[2 * i]; z->ex_f[i].B = z->f32[2 * i + 1];
        z->ex_t[i].A = z->raw[2 * i] + 1; z->ex_t[i].B = z->raw[2 * i + 1] + 1;
        z->ex_t[i].A_type = z->ex_t[i].B_type = type;
    }
    z->ld_f.d_in = z->d_in; z->ld_f.d_out = z->d_out; z->ld_f.n_experts = NE;
    z->ld_f.routing = routing; z->ld_f.top_k = 1;
    z->ld_f.gate_weight = z->Wg; z->ld_f.bias = z->bias; z->ld_f.fan_in_fan_out = fifo;
    z->ld_t = z->ld_f;
    z->ld_f.experts = z->ex_f; z->ld_f.W0 = z->f32[2 * NE];
    z->ld_t.experts = z->ex_t; z->ld_t.W0 = z->raw[2 * NE] + 1; z->ld_t.W0_type = type;
}
static void typed_layer_free(typed_layer *z)
{
    int k;
    for (k = 0; k < 2 * NE + 1; k++) { free(z->raw[k]); free(z->f32[k]); }
    free(z->Wg); free(z->bias);
}
static molora_model *init_one(const molora_layer_desc *ld, unsigned flags)
{
    molora_model_desc md;
    molora_model *m = NULL;
    memset(&md, 0, sizeof md);
    md.n_layers = 1; md.layers = ld; md.flags = flags;
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
    return m;
}
/* forward of T tokens of X: Y (T, d_out) full output; returns the path taken */
static molora_path run(const molora_model *m, int T, const float *X, float *Y, float *W, int ith, int nth)
{
    molora_forward_args a;
    molora_path path = MOLORA_PATH_NONE;
    size_t ws;
    void *w;
    assert_int_equal(molora_workspace_size(m, T, &ws), MOLORA_RESULT_SUCCESS);
    w = malloc(ws);
    memset(&a, 0, sizeof a);
    a.n_tokens = T; a.x = X; a.y = Y; a.weights_out = W; a.workspace = w; a.workspace_size = ws;
    a.ith = ith; a.nth = nth; a.path_out = &path;
    assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_SUCCESS);
    free(w);
    return path;
}

/* ---- typed = float32 conversion, bit for bit, every path ---------------------------------- */
static void check_bit_exact(molora_type type, int fifo, molora_routing routing, int T, molora_path want)
{
    typed_layer z;
    molora_model *mt, *mf;
    float *X, *Yt, *Yf, *Wt, *Wf;
    int i;
    typed_layer_make(&z, type, fifo, routing);
    X = malloc(sizeof(float) * T * z.d_in);
    Yt = calloc((size_t)T * z.d_out, sizeof(float)); Yf = calloc((size_t)T * z.d_out, sizeof(float));
    Wt = calloc((size_t)T * NE, sizeof(float)); Wf = calloc((size_t)T * NE, sizeof(float));
    for (i = 0; i < T * z.d_in; i++) X[i] = (float)rnd32();
    mt = init_one(&z.ld_t, 0);
    mf = init_one(&z.ld_f, MOLORA_MODEL_COPY_WEIGHTS);   /* W0 in model memory, as the typed one */
    assert_int_equal(run(mt, T, X, Yt, Wt, 0, 0), want);
    assert_int_equal(run(mf, T, X, Yf, Wf, 0, 0), want);
    assert_memory_equal(Yt, Yf, sizeof(float) * T * z.d_out);
    assert_memory_equal(Wt, Wf, sizeof(float) * T * NE);
    molora_model_free(mt); molora_model_free(mf);
    free(X); free(Yt); free(Yf); free(Wt); free(Wf);
    typed_layer_free(&z);
}
static void test_typed_equals_f32_every_path(void **state)
{
    static const molora_type types[] = {MOLORA_TYPE_F16, MOLORA_TYPE_BF16, MOLORA_TYPE_F32};
    int t, fifo;
    (void)state;
    for (t = 0; t < 3; t++)
        for (fifo = 0; fifo < 2; fifo++) {
            check_bit_exact(types[t], fifo, MOLORA_ROUTING_DENSE, 1, MOLORA_PATH_DECODE);
            check_bit_exact(types[t], fifo, MOLORA_ROUTING_DENSE, 2, MOLORA_PATH_SMALL);
            check_bit_exact(types[t], fifo, MOLORA_ROUTING_DENSE, 16, MOLORA_PATH_SMALL);
            check_bit_exact(types[t], fifo, MOLORA_ROUTING_DENSE, 17, MOLORA_PATH_GEMM);
            check_bit_exact(types[t], fifo, MOLORA_ROUTING_DENSE, 64, MOLORA_PATH_GEMM);
            check_bit_exact(types[t], fifo, MOLORA_ROUTING_TOPK, 40, MOLORA_PATH_SPARSE);
        }
}

/* ---- non-finite 16-bit weights and unknown types are refused at init ---------------------- */
static molora_result init_result(const molora_layer_desc *ld)
{
    molora_model_desc md;
    molora_model *m = NULL;
    molora_result r;
    memset(&md, 0, sizeof md);
    md.n_layers = 1; md.layers = ld;
    r = molora_model_init(&md, &m);
    if (r == MOLORA_RESULT_SUCCESS) molora_model_free(m);
    else assert_null(m);
    return r;
}
static void poison(typed_layer *z, int k, size_t i, uint16_t bits)
{
    memcpy(z->raw[k] + 1 + 2 * i, &bits, 2);
}
static void test_typed_non_finite(void **state)
{
    typed_layer z;
    (void)state;
    typed_layer_make(&z, MOLORA_TYPE_BF16, 0, MOLORA_ROUTING_DENSE);
    assert_int_equal(init_result(&z.ld_t), MOLORA_RESULT_SUCCESS);
    poison(&z, 4, 7, 0x7fc1);                      /* BF16 NaN in A_2 */
    assert_int_equal(init_result(&z.ld_t), MOLORA_RESULT_NON_FINITE);
    poison(&z, 4, 7, 0x3f80);
    poison(&z, 2 * NE, 100, 0xff80);               /* BF16 -Inf in W0 */
    assert_int_equal(init_result(&z.ld_t), MOLORA_RESULT_NON_FINITE);
    poison(&z, 2 * NE, 100, 0x3f80);
    poison(&z, 3, 0, 0x7f81);                      /* BF16 signalling NaN in B_1 */
    assert_int_equal(init_result(&z.ld_t), MOLORA_RESULT_NON_FINITE);
    poison(&z, 3, 0, 0x7f7f);                      /* the largest finite BF16 */
    assert_int_equal(init_result(&z.ld_t), MOLORA_RESULT_SUCCESS);
    typed_layer_free(&z);
    typed_layer_make(&z, MOLORA_TYPE_F16, 1, MOLORA_ROUTING_DENSE);
    poison(&z, 2 * NE, 3, 0x7e00);                 /* F16 NaN in a (d_in, d_out) W0 */
    assert_int_equal(init_result(&z.ld_t), MOLORA_RESULT_NON_FINITE);
    poison(&z, 2 * NE, 3, 0x7bff);                 /* 65504, the largest finite F16 */
    assert_int_equal(init_result(&z.ld_t), MOLORA_RESULT_SUCCESS);
    poison(&z, 0, 1, 0xfc00);                      /* F16 -Inf in A_0 */
    assert_int_equal(init_result(&z.ld_t), MOLORA_RESULT_NON_FINITE);
    typed_layer_free(&z);
}
static void test_unknown_type(void **state)
{
    typed_layer z;
    (void)state;
    typed_layer_make(&z, MOLORA_TYPE_F16, 0, MOLORA_ROUTING_DENSE);
    z.ex_t[5].B_type = MOLORA_TYPE_COUNT;
    assert_int_equal(init_result(&z.ld_t), MOLORA_RESULT_INVALID_ARGUMENT);
    z.ex_t[5].B_type = MOLORA_TYPE_F16;
    z.ld_t.W0_type = (molora_type)-1;
    assert_int_equal(init_result(&z.ld_t), MOLORA_RESULT_INVALID_ARGUMENT);
    z.ld_t.W0_type = MOLORA_TYPE_F16;
    assert_int_equal(init_result(&z.ld_t), MOLORA_RESULT_SUCCESS);
    typed_layer_free(&z);
}

/* ---- molora_convert_f32 on every bit pattern ---------------------------------------------- */
static void check_all_patterns(molora_type t)
{
    unsigned char *src = malloc(2 * 65536 + 1);
    float *dst = malloc(sizeof(float) * 65536);
    uint32_t h;
    for (h = 0; h < 65536; h++) { uint16_t v = (uint16_t)h; memcpy(src + 1 + 2 * h, &v, 2); }
    assert_int_equal(molora_convert_f32(src + 1, t, 65536, dst), MOLORA_RESULT_SUCCESS);
    for (h = 0; h < 65536; h++) {
        float want = ref_elem((uint16_t)h, t);
        if (isnan(want)) assert_true(isnan(dst[h]));
        else assert_memory_equal(&dst[h], &want, sizeof want);   /* signed zeros too */
    }
    free(src); free(dst);
}
static void test_convert_f32(void **state)
{
    float f[2], one = 1.0f, out = 0;
    unsigned char b[5];
    (void)state;
    check_all_patterns(MOLORA_TYPE_F16);
    check_all_patterns(MOLORA_TYPE_BF16);
    memcpy(b + 1, &one, 4);                       /* unaligned F32 */
    assert_int_equal(molora_convert_f32(b + 1, MOLORA_TYPE_F32, 1, &out), MOLORA_RESULT_SUCCESS);
    assert_true(out == 1.0f);
    assert_int_equal(molora_convert_f32(f, MOLORA_TYPE_COUNT, 2, f), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_convert_f32(NULL, MOLORA_TYPE_F16, 2, f), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_convert_f32(NULL, MOLORA_TYPE_F16, 0, NULL), MOLORA_RESULT_SUCCESS);
}

/* ---- fan_in_fan_out: X W0 + b + delta, and merge in (d_in, d_out) ------------------------- */
/* naive float64: y (d_out) of token x for the float32 layer z with routing weights w (N) */
static void ref_token(const typed_layer *z, const float *x, const float *w, double *y)
{
    int i, o, k, q;
    const float *W0 = z->f32[2 * NE];
    for (o = 0; o < z->d_out; o++) {
        y[o] = z->bias[o];
        for (k = 0; k < z->d_in; k++) y[o] += (double)x[k] * W0[(size_t)k * z->d_out + o];
    }
    for (i = 0; i < NE; i++) {
        const float *A = z->f32[2 * i], *B = z->f32[2 * i + 1];
        double s = 2.0 / z->rank[i];
        for (q = 0; q < z->rank[i]; q++) {
            double h = 0;
            for (k = 0; k < z->d_in; k++) h += (double)A[q * z->d_in + k] * x[k];
            for (o = 0; o < z->d_out; o++) y[o] += w[i] * s * B[o * z->rank[i] + q] * h;
        }
    }
}
static void check_in_out(const typed_layer *z, const molora_model *m, int T, int nth)
{
    float *X = malloc(sizeof(float) * T * z->d_in), *Y = calloc((size_t)T * z->d_out, sizeof(float));
    float *W = calloc((size_t)T * NE, sizeof(float));
    double y[64];
    int t, o, ith;
    for (t = 0; t < T * z->d_in; t++) X[t] = (float)rnd32();
    for (ith = 0; ith < (nth ? nth : 1); ith++) run(m, T, X, Y, W, ith, nth);
    for (t = 0; t < T; t++) {
        double mx = 1e-30;
        char what[64];
        ref_token(z, X + (size_t)t * z->d_in, W + (size_t)t * NE, y);
        for (o = 0; o < z->d_out; o++) mx = fabs(y[o]) > mx ? fabs(y[o]) : mx;
        snprintf(what, sizeof what, "T %d nth %d token %d, col", T, nth, t);
        check_close(what, Y + (size_t)t * z->d_out, y, (size_t)z->d_out, 1e-5 * mx, 0);  /* relative to the row's max */
    }
    free(X); free(Y); free(W);
}
static void test_fan_in_fan_out_forward(void **state)
{
    static const int Ts[] = {1, 3, 16, 17, 70};
    typed_layer z;
    molora_model *m;
    molora_layer_info li;
    int i;
    (void)state;
    typed_layer_make(&z, MOLORA_TYPE_F32, 1, MOLORA_ROUTING_DENSE);
    m = init_one(&z.ld_f, 0);                     /* borrowed, read in place */
    assert_int_equal(molora_model_layer_info(m, 0, &li), MOLORA_RESULT_SUCCESS);
    assert_int_equal(li.fan_in_fan_out, 1);
    for (i = 0; i < 5; i++) { check_in_out(&z, m, Ts[i], 0); check_in_out(&z, m, Ts[i], 2); }
    molora_model_free(m);
    z.ld_f.routing = MOLORA_ROUTING_TOPK;         /* sparse path */
    m = init_one(&z.ld_f, 0);
    check_in_out(&z, m, 40, 0);
    molora_model_free(m);
    typed_layer_free(&z);
}
static void test_fan_in_fan_out_merge(void **state)
{
    typed_layer z;
    molora_model *m;
    float w[NE], *W;
    int i, k, o, q, n;
    (void)state;
    typed_layer_make(&z, MOLORA_TYPE_F32, 1, MOLORA_ROUTING_DENSE);
    free(z.f32[0]); free(z.f32[1]);               /* expert 0 of rank 70: past merge's 64-row blocks */
    z.rank[0] = z.ex_f[0].rank = 70;
    z.f32[0] = malloc(sizeof(float) * 70 * z.d_in); z.f32[1] = malloc(sizeof(float) * z.d_out * 70);
    for (i = 0; i < 70 * z.d_in; i++) z.f32[0][i] = (float)(0.3 * rnd32());
    for (i = 0; i < 70 * z.d_out; i++) z.f32[1][i] = (float)(0.3 * rnd32());
    z.ex_f[0].A = z.f32[0]; z.ex_f[0].B = z.f32[1];
    for (i = 0; i < NE; i++) w[i] = (float)rnd32();
    n = z.d_in * z.d_out;
    W = malloc(sizeof(float) * n);
    memcpy(W, z.f32[2 * NE], sizeof(float) * n);
    m = init_one(&z.ld_f, 0);
    assert_int_equal(molora_merge(m, 0, w, W), MOLORA_RESULT_SUCCESS);
    for (k = 0; k < z.d_in; k++)
        for (o = 0; o < z.d_out; o++) {           /* W[k][o] = W0[k][o] + sum_i w_i s_i (B_i A_i)[o][k] */
            double want = z.f32[2 * NE][k * z.d_out + o];
            for (i = 0; i < NE; i++)
                for (q = 0; q < z.rank[i]; q++)
                    want += w[i] * (2.0 / z.rank[i]) * z.f32[2 * i + 1][o * z.rank[i] + q]
                            * z.f32[2 * i][q * z.d_in + k];
            if (fabs(W[k * z.d_out + o] - want) > 1e-5 * (1 + fabs(want)))
                fail_msg("merge (d_in, d_out) [%d][%d]: %.9g, reference %.9g", k, o, (double)W[k * z.d_out + o], want);
        }
    molora_model_free(m);
    free(W);
    typed_layer_free(&z);
}

/* ---- the loader hands the file's bytes, typed, and reads fan_in_fan_out ------------------ */
/* a safetensors buffer with a BF16 lora_A (2, 3) and lora_B (4, 2), data at an odd offset */
static size_t bf16_adapter_file(unsigned char *buf)
{
    static const char hdr[] = "{\"base_model.model.h.0.attn.c_attn.lora_A.weight\":{\"dtype\":\"BF16\",\"shape\":[2,3],"
                              "\"data_offsets\":[0,12]},"
                              "\"base_model.model.h.0.attn.c_attn.lora_B.weight\":{\"dtype\":\"BF16\",\"shape\":[4,2],"
                              "\"data_offsets\":[12,28]}}";
    size_t hl = sizeof hdr - 1, i;
    if (hl % 2 == 0) hl++;                          /* 8 + hl odd: unaligned data */
    memset(buf, ' ', 8 + hl);
    for (i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, sizeof hdr - 1);
    for (i = 0; i < 14; i++) { uint16_t h = (uint16_t)(0x3f80 + 0x10 * i); memcpy(buf + 8 + hl + 2 * i, &h, 2); }
    return 8 + hl + 28;
}
static void check_loaded(const char *cfg, int want_fifo)
{
    static unsigned char buf[1024];
    size_t n = bf16_adapter_file(buf), ia;
    molora_safetensors *st;
    molora_adapter *a;
    molora_model_desc md;
    molora_tensor_info ti;
    assert_int_equal(molora_safetensors_open_memory(buf, n, NULL, &st), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_adapter_open_memory(cfg, strlen(cfg), st, NULL, &a), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_adapter_model_desc(a, &md), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_safetensors_find(st, "base_model.model.h.0.attn.c_attn.lora_A.weight", &ia),
                     MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_safetensors_tensor_info(st, ia, &ti), MOLORA_RESULT_SUCCESS);
    assert_int_equal(md.layers[0].experts[0].A_type, MOLORA_TYPE_BF16);
    assert_int_equal(md.layers[0].experts[0].B_type, MOLORA_TYPE_BF16);
    assert_ptr_equal(md.layers[0].experts[0].A, ti.data);   /* the file's bytes, not a copy */
    assert_int_equal(md.layers[0].fan_in_fan_out, want_fifo);
    molora_adapter_free(a);
    molora_safetensors_free(st);
}
static void test_loader_typed(void **state)
{
    (void)state;
    check_loaded("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"fan_in_fan_out\": true}", 1);
    check_loaded("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4}", 0);
    check_loaded("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, \"fan_in_fan_out\": false}", 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_typed_equals_f32_every_path),
        cmocka_unit_test(test_typed_non_finite),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_convert_f32),
        cmocka_unit_test(test_fan_in_fan_out_forward),
        cmocka_unit_test(test_fan_in_fan_out_merge),
        cmocka_unit_test(test_loader_typed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

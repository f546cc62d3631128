/* The bad-input catalogue: every row is one hostile input and what it must produce, a named
   error or a defined result. Core API, safetensors bytes, adapter directories and the molora
   command's .npy inputs, in one table. Detailed tests of each part live in test_core.c,
   test_files.c and test_cli.sh; this is the index a reviewer reads.
   Usage: test_catalogue [path/to/molora]   (default build/molora) */
#include "test_util.h"   /* cmocka */

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "molora.h"

/* ---- a small valid layer that every core row breaks in one place ------------------------ */
enum { DI = 12, DO = 10, NE = 3, RK = 2, TT = 4 };
typedef struct base {
    float A[NE][RK * DI], B[NE][DO * RK], W0[DO * DI], bias[DO], Wg[NE * DI], bg[NE], wt[DI], e[NE * NE * DO];
    molora_expert_desc ex[NE];
    molora_layer_desc ld;
    molora_model_desc md;
    float X[TT * DI], Y[TT * DO], W[TT * NE], fixed[NE];
    uint8_t mask[TT * NE];
    char ws[1 << 14];
    molora_forward_args fa;
} base;
static base g;

static void base_make(void)
{
    int i, k;
    memset(&g, 0, sizeof g);
    for (i = 0; i < NE; i++) {
        for (k = 0; k < RK * DI; k++) g.A[i][k] = 0.1f * (float)((k * 7 + i) % 5) - 0.2f;
        for (k = 0; k < DO * RK; k++) g.B[i][k] = 0.1f * (float)((k * 3 + i) % 7) - 0.3f;
        g.ex[i].rank = RK; g.ex[i].A = g.A[i]; g.ex[i].B = g.B[i];
    }
    for (k = 0; k < DO * DI; k++) g.W0[k] = 0.05f * (float)(k % 9) - 0.2f;
    for (k = 0; k < NE * DI; k++) g.Wg[k] = 0.2f * (float)(k % 4) - 0.3f;
    for (k = 0; k < DI; k++) g.wt[k] = 0.01f * (float)k;
    for (k = 0; k < NE * NE * DO; k++) g.e[k] = 0.1f * (float)(k % 6) - 0.25f;
    for (k = 0; k < TT * DI; k++) g.X[k] = 0.3f * (float)(k % 5) - 0.6f;
    for (k = 0; k < NE; k++) { g.bg[k] = 0.1f * (float)k; g.fixed[k] = 0.5f; }
    memset(g.mask, 1, sizeof g.mask);
    g.ld.d_in = DI; g.ld.d_out = DO; g.ld.n_experts = NE; g.ld.experts = g.ex; g.ld.W0 = g.W0; g.ld.bias = g.bias;
    g.ld.routing = MOLORA_ROUTING_ADAMOLE; g.ld.gate_weight = g.Wg; g.ld.gate_bias = g.bg;
    g.ld.threshold_weight = g.wt; g.ld.mole_gate = g.e;
    g.md.n_layers = 1; g.md.layers = &g.ld;
    g.fa.n_tokens = TT; g.fa.x = g.X; g.fa.y = g.Y; g.fa.weights_out = g.W;
    g.fa.workspace = g.ws; g.fa.workspace_size = sizeof g.ws;
}
static molora_result init_only(void)
{
    molora_model *m = (molora_model *)&g;   /* must come back NULL on failure */
    molora_result r = molora_model_init(&g.md, &m);
    if (r != MOLORA_RESULT_SUCCESS && m != NULL) return MOLORA_RESULT_COUNT;   /* half-built model */
    molora_model_free(m);
    return r;
}
static molora_result init_and(molora_result (*call)(molora_model *))
{
    molora_model *m = NULL;
    molora_result r = molora_model_init(&g.md, &m);
    if (r != MOLORA_RESULT_SUCCESS) return r;
    r = call(m);
    molora_model_free(m);
    return r;
}
static molora_result do_forward(molora_model *m) { return molora_forward(m, &g.fa); }
static molora_result do_route(molora_model *m) { return molora_route(m, &g.fa); }

/* one-line rows: a change to the base, then init (I) or init + forward (F) or + route (R) */
#define I(name, stmt) static molora_result name(void) { base_make(); { stmt; } return init_only(); }
#define F(name, stmt) static molora_result name(void) { base_make(); { stmt; } return init_and(do_forward); }
#define R(name, stmt) static molora_result name(void) { base_make(); { stmt; } return init_and(do_route); }

I(i_ok, (void)0)
I(i_null_layers, g.md.layers = NULL)
I(i_neg_layers, g.md.n_layers = -1)
I(i_flags, g.md.flags = 0x100)
I(i_half_hook, g.md.memory.alloc = NULL; g.md.memory.free = (void (*)(void *, void *))0x1)
I(i_d_in0, g.ld.d_in = 0)
I(i_d_out_neg, g.ld.d_out = -5)
I(i_n_neg, g.ld.n_experts = -1)
I(i_experts_null, g.ld.experts = NULL)
I(i_rank0, g.ex[1].rank = 0)
I(i_rank_neg, g.ex[2].rank = -3)
I(i_overflow_dims, g.ld.d_in = INT_MAX; g.ld.d_out = INT_MAX)
I(i_overflow_rank, g.ld.W0 = NULL; g.ld.d_in = INT_MAX; g.ex[0].rank = INT_MAX)
I(i_a_null, g.ex[0].A = NULL)
I(i_b_null, g.ex[1].B = NULL)
I(i_gate_null, g.ld.gate_weight = NULL)
I(i_thr_null, g.ld.threshold_weight = NULL)
I(i_mole_null, g.ld.routing = MOLORA_ROUTING_MOLE_OUTPUT; g.ld.mole_gate = NULL)
I(i_routing_bad, g.ld.routing = (molora_routing)77)
I(i_k_neg, g.ld.routing = MOLORA_ROUTING_TOPK; g.ld.top_k = -1)
I(i_k_big, g.ld.routing = MOLORA_ROUTING_TOPK; g.ld.top_k = NE + 1)
I(i_k_default, g.ld.routing = MOLORA_ROUTING_TOPK; g.ld.top_k = 0)
I(i_k_on_n0, g.ld.n_experts = 0; g.ld.routing = MOLORA_ROUTING_TOPK; g.ld.top_k = 99)
I(i_tau_neg, g.ld.tau_max_set = 1; g.ld.tau_max = -0.1f)
I(i_tau_nan, g.ld.tau_max_set = 1; g.ld.tau_max = NAN)
I(i_tau_inf, g.ld.tau_max_set = 1; g.ld.tau_max = INFINITY)
I(i_temp_neg, g.ld.temperature = -1)
I(i_temp_nan, g.ld.temperature = NAN)
I(i_thr_nan, g.ld.routing = MOLORA_ROUTING_THRESHOLD; g.ld.threshold = NAN)
I(i_nan_a, g.A[2][5] = NAN)
I(i_inf_b, g.B[0][3] = -INFINITY)
I(i_nan_w0, g.W0[17] = NAN)
I(i_inf_bias, g.bias[2] = INFINITY)
I(i_nan_gate, g.Wg[4] = NAN)
I(i_nan_gate_bias, g.bg[1] = NAN)
I(i_nan_thr_w, g.wt[3] = NAN)
I(i_nan_thr_b, g.ld.threshold_bias = NAN)
I(i_nan_mole, g.ld.routing = MOLORA_ROUTING_MOLE_OUTPUT; g.e[7] = NAN)
I(i_nan_scaling, g.ex[0].scaling = NAN)
F(f_ok, (void)0)
F(f_layer_bad, g.fa.layer = 1)
F(f_layer_neg, g.fa.layer = -1)
F(f_t_neg, g.fa.n_tokens = -2)
F(f_x_null, g.fa.x = NULL)
F(f_y_null, g.fa.y = NULL)
F(f_output_bad, g.fa.output = (molora_output)9)
F(f_ws_null, g.fa.workspace = NULL)
F(f_ws_short, g.fa.workspace_size = 64)
F(f_nan_x, g.X[3] = NAN)
F(f_inf_x, g.X[30] = INFINITY)
F(f_nan_fixed, g.fa.weights = g.fixed; g.fixed[1] = NAN)
F(f_fixed_missing, g.ld.routing = MOLORA_ROUTING_FIXED)
F(f_full_no_w0, g.ld.W0 = NULL)
F(f_ith_bad, g.fa.ith = 2; g.fa.nth = 2)
F(f_nth_neg, g.fa.nth = -1)
F(f_logits_inf_minus_inf, g.X[0] = 3e38f; g.X[1] = 3e38f; g.Wg[0] = 1e10f; g.Wg[1] = -1e10f)
R(r_no_weights_out, g.fa.weights_out = NULL)
/* ARROW: the base with its routing switched, gate bias dropped, prototypes given (the gate's rows) or computed */
#define ARROW_ON g.ld.routing = MOLORA_ROUTING_ARROW; g.ld.gate_bias = NULL; g.ld.prototypes = g.Wg
I(i_arrow_ok, ARROW_ON)
I(i_arrow_exact, ARROW_ON; g.ld.prototypes = NULL)
I(i_arrow_k_big, ARROW_ON; g.ld.top_k = NE + 1)
I(i_arrow_k_neg, ARROW_ON; g.ld.top_k = -1)
I(i_arrow_default_k_big, ARROW_ON; g.ld.n_experts = 2)
I(i_arrow_gate_bias, ARROW_ON; g.ld.gate_bias = g.bg)
I(i_arrow_nan_proto, ARROW_ON; g.Wg[5] = NAN)
I(i_arrow_inf_proto, ARROW_ON; g.Wg[0] = -INFINITY)
I(i_arrow_nan_b_exact, ARROW_ON; g.ld.prototypes = NULL; g.B[1][2] = NAN)
F(f_arrow_ok, ARROW_ON)
F(f_arrow_zero_x, ARROW_ON; memset(g.X, 0, sizeof g.X))

/* workspace one byte short of what molora_workspace_size() asked for */
static molora_result f_ws_one_short(void)
{
    molora_model *m = NULL;
    size_t need;
    molora_result r;
    base_make();
    if ((r = molora_model_init(&g.md, &m)) != MOLORA_RESULT_SUCCESS) return r;
    molora_workspace_size(m, TT, &need);
    g.fa.workspace_size = need - 1;
    r = molora_forward(m, &g.fa);
    molora_model_free(m);
    return r;
}
static molora_result m_merge_nan(void)
{
    molora_model *m = NULL;
    molora_result r;
    float W[DO * DI];
    base_make();
    if ((r = molora_model_init(&g.md, &m)) != MOLORA_RESULT_SUCCESS) return r;
    g.fixed[2] = NAN;
    r = molora_merge(m, 0, g.fixed, W);
    molora_model_free(m);
    return r;
}
static molora_result w_neg_tokens(void)
{
    molora_model *m = NULL;
    molora_result r;
    size_t s;
    base_make();
    if ((r = molora_model_init(&g.md, &m)) != MOLORA_RESULT_SUCCESS) return r;
    r = molora_workspace_size(m, -1, &s);
    molora_model_free(m);
    return r;
}

/* ---- defined results: each returns SUCCESS only when the result is the documented one --- */
static int frozen_rows(int T)   /* Y == X W0^T + b for the first T rows */
{
    int t, o, k;
    for (t = 0; t < T; t++)
        for (o = 0; o < DO; o++) {
            double y = g.bias[o];
            for (k = 0; k < DI; k++) y += (double)g.W0[o * DI + k] * g.X[t * DI + k];
            if (fabs(y - g.Y[t * DO + o]) > 1e-5 * (1 + fabs(y))) return 0;
        }
    return 1;
}
static molora_result d_zero_tokens(void)
{
    molora_result r;
    base_make();
    g.fa.n_tokens = 0; g.fa.x = NULL; g.Y[0] = 42; g.W[0] = 7;
    r = init_and(do_forward);
    return (r == MOLORA_RESULT_SUCCESS && g.Y[0] == 42 && g.W[0] == 7) ? r : MOLORA_RESULT_COUNT;
}
static molora_result d_all_masked(void)
{
    molora_result r;
    base_make();
    memset(g.mask, 0, sizeof g.mask);
    g.fa.expert_mask = g.mask; g.fa.mask_per_token = 1;
    r = init_and(do_forward);
    return (r == MOLORA_RESULT_SUCCESS && frozen_rows(TT) && g.W[0] == 0 &&
            g.W[TT * NE - 1] == 0) ? r : MOLORA_RESULT_COUNT;
}
static molora_result d_no_experts(void)
{
    molora_result r;
    base_make();
    g.ld.n_experts = 0;
    r = init_and(do_forward);
    return (r == MOLORA_RESULT_SUCCESS && frozen_rows(TT)) ? r : MOLORA_RESULT_COUNT;
}
static molora_result d_huge_logits(void)
{   /* gate bias 1e30: the softmax stays finite and one-hot */
    molora_result r;
    int i;
    base_make();
    g.ld.routing = MOLORA_ROUTING_DENSE; g.bg[0] = 1e30f; g.bg[1] = -1e30f; g.bg[2] = 3e29f;
    r = init_and(do_forward);
    for (i = 0; i < TT * DO; i++) if (!isfinite(g.Y[i])) return MOLORA_RESULT_COUNT;
    return (r == MOLORA_RESULT_SUCCESS && g.W[0] == 1 && g.W[1] == 0 && g.W[2] == 0) ? r : MOLORA_RESULT_COUNT;
}
static molora_result d_subnormal_inputs(void)
{   /* subnormal inputs: finite, and the frozen part exact to float rounding */
    molora_result r;
    int i;
    base_make();
    for (i = 0; i < TT * DI; i++) g.X[i] = (i % 2 ? 1 : -1) * FLT_MIN / 64;
    r = init_and(do_forward);
    for (i = 0; i < TT * DO; i++)
        if (!isfinite(g.Y[i]) || fabsf(g.Y[i] - g.bias[i % DO]) > 1e-30f) return MOLORA_RESULT_COUNT;
    return r;
}
static molora_result d_near_flt_max(void)
{   /* |x| near FLT_MAX with small weights: finite where the products fit in float */
    molora_result r;
    int i;
    base_make();
    for (i = 0; i < DO * DI; i++) g.W0[i] = 1e-10f;
    for (i = 0; i < TT * DI; i++) g.X[i] = 3e38f;
    for (i = 0; i < NE * DI; i++) g.Wg[i] = 1e-10f;
    for (i = 0; i < DI; i++) g.wt[i] = 1e-10f;
    for (i = 0; i < NE; i++) { int k; for (k = 0; k < RK * DI; k++) g.A[i][k] = 1e-10f; }
    r = init_and(do_forward);
    for (i = 0; i < TT * DO; i++) if (!isfinite(g.Y[i])) return MOLORA_RESULT_COUNT;
    return r;
}

/* ---- files: safetensors bytes ------------------------------------------------------------- */
static molora_result st_bytes(const char *b, size_t n)
{
    molora_safetensors *st = NULL;
    molora_result r = molora_safetensors_open_memory(b, n, NULL, &st);
    molora_safetensors_free(st);
    return r;
}
#define ST(name, lit) static molora_result name(void) { return st_bytes(lit, sizeof(lit) - 1); }
#define H(len) len "\x00\x00\x00\x00\x00\x00\x00"
ST(s_empty, "")
ST(s_short_len, "\x01\x00\x00\x00\x00\x00\x00")
ST(s_len_huge, "\x00\x00\x00\x00\x00\x00\x00\x10{}")
ST(s_len_past_end, H("<"))
ST(s_bad_utf8, H("\x01") "\xff")
ST(s_bad_json, H("\x01") "{")
/* 8-byte little-endian header length + JSON + data_len zero bytes */
static molora_result st_json(const char *json, size_t data_len, int read_first_as_f32)
{
    static char b[4096];
    size_t n = strlen(json), i;
    molora_safetensors *st = NULL;
    const float *p = NULL;
    molora_result r;
    for (i = 0; i < 8; i++) b[i] = (char)((n >> (8 * i)) & 0xff);
    memcpy(b + 8, json, n);
    memset(b + 8 + n, 0, data_len);
    r = molora_safetensors_open_memory(b, 8 + n + data_len, NULL, &st);
    if (r == MOLORA_RESULT_SUCCESS && read_first_as_f32) r = molora_safetensors_tensor_f32(st, 0, &p);
    molora_safetensors_free(st);
    return r;
}
#define SJ(name, json, data_len) static molora_result name(void) { return st_json(json, data_len, 0); }
SJ(s_json_types, "{\"t\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,4]}}", 4)
SJ(s_dup_name, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
               "\"data_offsets\":[4,8]}}", 8)
SJ(s_gap, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
          "\"data_offsets\":[8,12]}}", 12)
SJ(s_overlap, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
              "\"data_offsets\":[4,8]}}", 8)
SJ(s_shape_mismatch, "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8)
SJ(s_not_covered, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12)
SJ(s_truncated, "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4)
ST(s_size_overflow, H("N") "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,9223372036854775807],"
                           "\"data_offsets\":[0,16]}}" "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0")
static molora_result s_unsupported_dtype(void)
{   /* a valid I32 tensor opens; reading it as float is refused by name */
    return st_json("{\"t\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 1);
}
static molora_result s_deep_json(void)
{
    static char b[8 + 1000];
    size_t n = 0, i;
    for (i = 0; i < 400; i++) b[8 + n++] = '[';
    for (i = 0; i < 400; i++) b[8 + n++] = ']';
    memset(b, 0, 8); b[0] = (char)(n & 0xff); b[1] = (char)(n >> 8);
    return st_bytes(b, 8 + n);
}

/* ---- files: adapter directories (committed fixtures) and configs ---------------------------- */
static molora_result adapter_dir(const char *dir)
{
    molora_adapter *a = NULL;
    molora_result r = molora_adapter_open(dir, NULL, &a);
    molora_adapter_free(a);
    return r;
}
#define AD(name, dir) static molora_result name(void) { return adapter_dir(dir); }
AD(a_missing_dir, "tests/fixtures/does-not-exist")
AD(a_dora, "tests/fixtures/bad/dora")
AD(a_bias, "tests/fixtures/bad/bias")
AD(a_embedding, "tests/fixtures/bad/embedding")
AD(a_missing_b, "tests/fixtures/bad/missing_b")
AD(a_shape, "tests/fixtures/bad/shape")
AD(a_rank, "tests/fixtures/bad/rank")
AD(a_i32, "tests/fixtures/bad/i32")
AD(a_config_json, "tests/fixtures/bad/config_json")
AD(a_peft_type, "tests/fixtures/bad/peft_type")
AD(a_xlora_as_adapter, "tests/fixtures/xlora/d1_bcast")
/* X-LoRA directories (tests/fixtures/xlora; the config refusals are in tests/test_xlora.c) */
static molora_result xlora_dir(const char *dir)
{
    molora_xlora *xl = NULL;
    molora_result r = molora_xlora_open(dir, NULL, &xl);
    molora_xlora_free(xl);
    return r;
}
#define XD(name, dir) static molora_result name(void) { return xlora_dir(dir); }
XD(x_ok, "tests/fixtures/xlora/d2_layer")
XD(x_peft_save, "tests/fixtures/xlora/peft_save")
XD(x_plain_lora, "tests/fixtures/xlora/lora0")
static molora_result x_nan_hidden(void)
{
    molora_xlora *xl = NULL;
    float h[32] = {0}, s[8 * 3];
    char ws[4096];
    size_t need;
    molora_result r = molora_xlora_open("tests/fixtures/xlora/d1_bcast", NULL, &xl);
    if (r) return r;
    h[7] = NAN;
    r = molora_xlora_workspace_size(xl, 1, &need);
    if (!r) r = need > sizeof ws ? MOLORA_RESULT_WORKSPACE_TOO_SMALL : molora_xlora_scalings(xl, 1, h, s, ws, need);
    molora_xlora_free(xl);
    return r;
}

/* ---- the molora command on bad .npy inputs: non-zero exit, exactly one line on stderr ------- */
static const char *g_cli = "build/molora";
static molora_result npy_case(const char *bytes, size_t n)
{
    char cmd[1024], line[512];
    FILE *f = fopen("build/catalogue_bad.npy", "wb"), *err;
    int rc, lines = 0;
    if (!f) return MOLORA_RESULT_IO_ERROR;
    fwrite(bytes, 1, n, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s forward tests/fixtures/peft --module model.layers.0.self_attn.q_proj "
             "--input build/catalogue_bad.npy --output build/catalogue_y.npy 2>build/catalogue_err.txt >/dev/null",
                 g_cli);
    rc = system(cmd);
    if ((err = fopen("build/catalogue_err.txt", "r")) != NULL) {
        while (fgets(line, sizeof line, err)) lines++;
        fclose(err);
    }
    if (rc == -1 || !WIFEXITED(rc)) return MOLORA_RESULT_COUNT;   /* killed: a crash */
    if (WEXITSTATUS(rc) == 0) return lines == 0 ? MOLORA_RESULT_SUCCESS : MOLORA_RESULT_COUNT;
    return lines == 1 ? MOLORA_RESULT_INVALID_ARGUMENT : MOLORA_RESULT_COUNT;
}
#define NPY(name, lit) static molora_result name(void) { return npy_case(lit, sizeof(lit) - 1); }
/* a well-formed v1.0 file but for the dict, padded to 64 bytes as numpy writes it */
static molora_result npy_dict(int version, const char *dict, size_t data_len)
{
    static char b[4096];
    size_t n = strlen(dict), hl = (10 + n + 1 + 63) / 64 * 64 - 10, i;
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (char)version; b[7] = 0; b[8] = (char)(hl & 0xff); b[9] = (char)(hl >> 8);
    memcpy(b + 10, dict, n);
    for (i = n; i < hl - 1; i++) b[10 + i] = ' ';
    b[10 + hl - 1] = '\n';
    memset(b + 10 + hl, 0, data_len);
    return npy_case(b, 10 + hl + data_len);
}
#define ND(name, version, dict, data_len) static molora_result name(void) { return npy_dict(version, dict, data_len); }
NPY(n_empty, "")
NPY(n_magic, "\x93NUMPZ\x01\x00\x10\x00{'descr': '<f4'}   \n")
NPY(n_header_len, "\x93NUMPY\x01\x00\xff\xff{'descr': '<f4'")
ND(n_control, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 5), }", 40)
ND(n_f64, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 5), }", 80)
ND(n_fortran, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 5), }", 40)
ND(n_rank3, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 5), }", 40)
ND(n_width, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4), }", 32)
ND(n_truncated, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 5), }", 20)
ND(n_version, 9, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 5), }", 40)
ND(n_not_dict, 1, "['descr', '<f4']", 40)

/* ---- the table ------------------------------------------------------------------------------ */
typedef struct row { const char *what; molora_result (*run)(void); molora_result want; } row;
static const row CATALOGUE[] = {
    {"valid layer (control)", i_ok, MOLORA_RESULT_SUCCESS},
    {"model: layers NULL with n_layers 1", i_null_layers, MOLORA_RESULT_INVALID_ARGUMENT},
    {"model: n_layers -1", i_neg_layers, MOLORA_RESULT_INVALID_ARGUMENT},
    {"model: unknown flag bits", i_flags, MOLORA_RESULT_INVALID_ARGUMENT},
    {"model: memory hook with free but no alloc", i_half_hook, MOLORA_RESULT_INVALID_ARGUMENT},
    {"layer: d_in 0", i_d_in0, MOLORA_RESULT_INVALID_SHAPE},
    {"layer: d_out -5", i_d_out_neg, MOLORA_RESULT_INVALID_SHAPE},
    {"layer: n_experts -1", i_n_neg, MOLORA_RESULT_INVALID_SHAPE},
    {"layer: experts NULL", i_experts_null, MOLORA_RESULT_INVALID_ARGUMENT},
    {"expert: rank 0", i_rank0, MOLORA_RESULT_INVALID_RANK},
    {"expert: rank -3", i_rank_neg, MOLORA_RESULT_INVALID_RANK},
    {"sizes: d_in * d_out * 4 overflows (INT_MAX^2)", i_overflow_dims, MOLORA_RESULT_SIZE_OVERFLOW},
    {"sizes: rank * d_in * 4 overflows", i_overflow_rank, MOLORA_RESULT_SIZE_OVERFLOW},
    {"expert: A NULL", i_a_null, MOLORA_RESULT_MISSING_WEIGHTS},
    {"expert: B NULL", i_b_null, MOLORA_RESULT_MISSING_WEIGHTS},
    {"gate rule without gate_weight", i_gate_null, MOLORA_RESULT_MISSING_WEIGHTS},
    {"AdaMoLE without threshold_weight", i_thr_null, MOLORA_RESULT_MISSING_WEIGHTS},
    {"MoLE output gate without mole_gate", i_mole_null, MOLORA_RESULT_MISSING_WEIGHTS},
    {"routing 77", i_routing_bad, MOLORA_RESULT_INVALID_ARGUMENT},
    {"top-k: k -1", i_k_neg, MOLORA_RESULT_INVALID_TOP_K},
    {"top-k: k = N + 1", i_k_big, MOLORA_RESULT_INVALID_TOP_K},
    {"top-k: k 0 = AlphaLoRA's default (defined)", i_k_default, MOLORA_RESULT_SUCCESS},
    {"top-k: any k on a layer with N = 0 (ignored)", i_k_on_n0, MOLORA_RESULT_SUCCESS},
    {"tau_max -0.1", i_tau_neg, MOLORA_RESULT_INVALID_VALUE},
    {"tau_max NaN", i_tau_nan, MOLORA_RESULT_INVALID_VALUE},
    {"tau_max Inf", i_tau_inf, MOLORA_RESULT_INVALID_VALUE},
    {"temperature -1", i_temp_neg, MOLORA_RESULT_INVALID_VALUE},
    {"temperature NaN", i_temp_nan, MOLORA_RESULT_INVALID_VALUE},
    {"static threshold NaN", i_thr_nan, MOLORA_RESULT_INVALID_VALUE},
    {"NaN in A", i_nan_a, MOLORA_RESULT_NON_FINITE},
    {"-Inf in B", i_inf_b, MOLORA_RESULT_NON_FINITE},
    {"NaN in W0", i_nan_w0, MOLORA_RESULT_NON_FINITE},
    {"Inf in bias", i_inf_bias, MOLORA_RESULT_NON_FINITE},
    {"NaN in gate weight", i_nan_gate, MOLORA_RESULT_NON_FINITE},
    {"NaN in gate bias", i_nan_gate_bias, MOLORA_RESULT_NON_FINITE},
    {"NaN in threshold weight", i_nan_thr_w, MOLORA_RESULT_NON_FINITE},
    {"NaN threshold bias", i_nan_thr_b, MOLORA_RESULT_NON_FINITE},
    {"NaN in MoLE gate e", i_nan_mole, MOLORA_RESULT_NON_FINITE},
    {"NaN scaling", i_nan_scaling, MOLORA_RESULT_NON_FINITE},
    {"forward (control)", f_ok, MOLORA_RESULT_SUCCESS},
    {"forward: layer 1 of 1", f_layer_bad, MOLORA_RESULT_INVALID_LAYER},
    {"forward: layer -1", f_layer_neg, MOLORA_RESULT_INVALID_LAYER},
    {"forward: n_tokens -2", f_t_neg, MOLORA_RESULT_INVALID_SHAPE},
    {"forward: x NULL", f_x_null, MOLORA_RESULT_INVALID_ARGUMENT},
    {"forward: y NULL", f_y_null, MOLORA_RESULT_INVALID_ARGUMENT},
    {"forward: output mode 9", f_output_bad, MOLORA_RESULT_INVALID_ARGUMENT},
    {"forward: workspace NULL", f_ws_null, MOLORA_RESULT_WORKSPACE_TOO_SMALL},
    {"forward: workspace of 64 bytes", f_ws_short, MOLORA_RESULT_WORKSPACE_TOO_SMALL},
    {"forward: workspace one byte short", f_ws_one_short, MOLORA_RESULT_WORKSPACE_TOO_SMALL},
    {"forward: NaN in x", f_nan_x, MOLORA_RESULT_NON_FINITE},
    {"forward: Inf in x", f_inf_x, MOLORA_RESULT_NON_FINITE},
    {"forward: NaN in fixed weights", f_nan_fixed, MOLORA_RESULT_NON_FINITE},
    {"forward: FIXED routing, no weights", f_fixed_missing, MOLORA_RESULT_MISSING_WEIGHTS},
    {"forward: full output, layer without W0", f_full_no_w0, MOLORA_RESULT_MISSING_WEIGHTS},
    {"forward: ith 2 of nth 2", f_ith_bad, MOLORA_RESULT_INVALID_ARGUMENT},
    {"forward: nth -1", f_nth_neg, MOLORA_RESULT_INVALID_ARGUMENT},
    {"forward: x near FLT_MAX makes gate logits inf - inf (documented error)", f_logits_inf_minus_inf,
     MOLORA_RESULT_NON_FINITE},
    {"route: weights_out NULL", r_no_weights_out, MOLORA_RESULT_INVALID_ARGUMENT},
    {"ARROW, prototypes given (control)", i_arrow_ok, MOLORA_RESULT_SUCCESS},
    {"ARROW, prototypes computed at init (control)", i_arrow_exact, MOLORA_RESULT_SUCCESS},
    {"ARROW: top_k N + 1", i_arrow_k_big, MOLORA_RESULT_INVALID_TOP_K},
    {"ARROW: top_k -1", i_arrow_k_neg, MOLORA_RESULT_INVALID_TOP_K},
    {"ARROW: top_k 0 (k = 3) with N = 2", i_arrow_default_k_big, MOLORA_RESULT_INVALID_TOP_K},
    {"ARROW: a gate bias", i_arrow_gate_bias, MOLORA_RESULT_INVALID_ARGUMENT},
    {"ARROW: NaN in prototypes", i_arrow_nan_proto, MOLORA_RESULT_NON_FINITE},
    {"ARROW: -Inf in prototypes", i_arrow_inf_proto, MOLORA_RESULT_NON_FINITE},
    {"ARROW: NaN in B, prototypes computed", i_arrow_nan_b_exact, MOLORA_RESULT_NON_FINITE},
    {"ARROW forward (control)", f_arrow_ok, MOLORA_RESULT_SUCCESS},
    {"ARROW forward: x = 0 (weights 1/k, delta 0)", f_arrow_zero_x, MOLORA_RESULT_SUCCESS},
    {"merge: NaN weight", m_merge_nan, MOLORA_RESULT_NON_FINITE},
    {"workspace_size: -1 tokens", w_neg_tokens, MOLORA_RESULT_INVALID_SHAPE},
    {"defined: T = 0 writes nothing", d_zero_tokens, MOLORA_RESULT_SUCCESS},
    {"defined: every expert masked = frozen layer", d_all_masked, MOLORA_RESULT_SUCCESS},
    {"defined: N = 0 = frozen layer", d_no_experts, MOLORA_RESULT_SUCCESS},
    {"defined: gate logits 1e30 = finite one-hot", d_huge_logits, MOLORA_RESULT_SUCCESS},
    {"defined: subnormal inputs = finite, exact", d_subnormal_inputs, MOLORA_RESULT_SUCCESS},
    {"defined: inputs near FLT_MAX, small weights = finite", d_near_flt_max, MOLORA_RESULT_SUCCESS},
    {"safetensors: empty file", s_empty, MOLORA_RESULT_HEADER_TOO_SMALL},
    {"safetensors: 7 bytes", s_short_len, MOLORA_RESULT_HEADER_TOO_SMALL},
    {"safetensors: header length 2^60", s_len_huge, MOLORA_RESULT_HEADER_TOO_LARGE},
    {"safetensors: header length past the end", s_len_past_end, MOLORA_RESULT_INVALID_HEADER_LENGTH},
    {"safetensors: header not UTF-8", s_bad_utf8, MOLORA_RESULT_INVALID_UTF8},
    {"safetensors: header not JSON", s_bad_json, MOLORA_RESULT_INVALID_JSON},
    {"safetensors: dtype is a number", s_json_types, MOLORA_RESULT_INVALID_JSON},
    {"safetensors: JSON nested 400 deep", s_deep_json, MOLORA_RESULT_INVALID_JSON},
    {"safetensors: duplicate tensor name", s_dup_name, MOLORA_RESULT_DUPLICATE_NAME},
    {"safetensors: gap between offsets", s_gap, MOLORA_RESULT_INVALID_OFFSET},
    {"safetensors: overlapping offsets", s_overlap, MOLORA_RESULT_INVALID_OFFSET},
    {"safetensors: shape x dtype != byte range", s_shape_mismatch, MOLORA_RESULT_TENSOR_INVALID_INFO},
    {"safetensors: data longer than the tensors", s_not_covered, MOLORA_RESULT_INCOMPLETE_BUFFER},
    {"safetensors: data truncated", s_truncated, MOLORA_RESULT_INCOMPLETE_BUFFER},
    {"safetensors: shape product overflows", s_size_overflow, MOLORA_RESULT_SIZE_OVERFLOW},
    {"safetensors: I32 tensor read as float", s_unsupported_dtype, MOLORA_RESULT_UNSUPPORTED_DTYPE},
    {"adapter: directory missing", a_missing_dir, MOLORA_RESULT_IO_ERROR},
    {"adapter: DoRA", a_dora, MOLORA_RESULT_UNSUPPORTED},
    {"adapter: bias 'all'", a_bias, MOLORA_RESULT_UNSUPPORTED},
    {"adapter: embedding LoRA", a_embedding, MOLORA_RESULT_UNSUPPORTED},
    {"adapter: lora_B missing", a_missing_b, MOLORA_RESULT_MISSING_WEIGHTS},
    {"adapter: A/B shape mismatch", a_shape, MOLORA_RESULT_INVALID_SHAPE},
    {"adapter: rank differs from config", a_rank, MOLORA_RESULT_INVALID_SHAPE},
    {"adapter: I32 weights", a_i32, MOLORA_RESULT_UNSUPPORTED_DTYPE},
    {"adapter: adapter_config.json not JSON", a_config_json, MOLORA_RESULT_INVALID_JSON},
    {"adapter: peft_type IA3", a_peft_type, MOLORA_RESULT_UNSUPPORTED},
    {"adapter: an X-LoRA directory given to molora_adapter_open", a_xlora_as_adapter, MOLORA_RESULT_UNSUPPORTED},
    {"x-lora: valid directory (control)", x_ok, MOLORA_RESULT_SUCCESS},
    {"x-lora: PEFT 0.20's own save (classifier layers dropped)", x_peft_save, MOLORA_RESULT_MISSING_WEIGHTS},
    {"x-lora: a plain LoRA directory", x_plain_lora, MOLORA_RESULT_INVALID_CONFIG},
    {"x-lora: NaN in the hidden states", x_nan_hidden, MOLORA_RESULT_NON_FINITE},
    {"molora forward: empty .npy", n_empty, MOLORA_RESULT_INVALID_ARGUMENT},
    {"molora forward: .npy bad magic", n_magic, MOLORA_RESULT_INVALID_ARGUMENT},
    {"molora forward: valid .npy (control)", n_control, MOLORA_RESULT_SUCCESS},
    {"molora forward: .npy float64", n_f64, MOLORA_RESULT_INVALID_ARGUMENT},
    {"molora forward: .npy width 4, layer wants 5", n_width, MOLORA_RESULT_INVALID_ARGUMENT},
    {"molora forward: .npy header is not a dict", n_not_dict, MOLORA_RESULT_INVALID_ARGUMENT},
    {"molora forward: .npy Fortran order", n_fortran, MOLORA_RESULT_INVALID_ARGUMENT},
    {"molora forward: .npy rank 3", n_rank3, MOLORA_RESULT_INVALID_ARGUMENT},
    {"molora forward: .npy data truncated", n_truncated, MOLORA_RESULT_INVALID_ARGUMENT},
    {"molora forward: .npy header length past the end", n_header_len, MOLORA_RESULT_INVALID_ARGUMENT},
    {"molora forward: .npy version 9.0", n_version, MOLORA_RESULT_INVALID_ARGUMENT},
};

static void test_catalogue(void **state)
{
    size_t i, bad = 0, n = sizeof CATALOGUE / sizeof CATALOGUE[0];
    (void)state;
    for (i = 0; i < n; i++) {
        molora_result got = CATALOGUE[i].run();
        int ok = got == CATALOGUE[i].want;
        const char *name = got == MOLORA_RESULT_COUNT ? "a wrong or undefined result" : molora_result_string(got);
        if (!ok) bad++;
        print_message("  %-4s %-66s -> %s\n", ok ? "ok" : "FAIL", CATALOGUE[i].what,
                      ok ? molora_result_string(got) : name);
        if (!ok) print_message("       expected %s\n", molora_result_string(CATALOGUE[i].want));
    }
    print_message("  catalogue: %zu inputs, %zu as expected\n", n, n - bad);
    assert_int_equal(bad, 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_catalogue)};
    if (argc > 1) g_cli = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}

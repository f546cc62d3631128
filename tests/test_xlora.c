/* X-LoRA (api_xlora) against PEFT 0.20's own numbers (tests/fixtures/xlora, written by
   tests/fixtures/make_xlora.py): the classifier's scalings, the per-module weights after top-k,
   the softmax over the kept entries and global_scaling_weight, the scaling pass, X-LoRA's module
   order, one module's layer output; both layouts; every refusal at its code and message.
   Run from the repository root. The binary links with -Wl,--wrap=malloc,... to count
   allocations (the scalings allocate nothing). */
#define TEST_COUNT_ALLOCS   /* linked with -Wl,--wrap=malloc,calloc,realloc */
#include "test_util.h"   /* cmocka */

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "molora.h"


#define F "tests/fixtures/xlora"
enum { T = 17, H = 32, N = 3, L = 8 };
static const char *const g_cases[] = {"d1_bcast", "d2_layer", "d2_topk", "d1_topk_sm", "d3_spv", "d1_spv_topk"};
static const char *const g_modules[] = {"layers.0.self_attn.q_proj", "layers.1.self_attn.k_proj"};

static char g_log[512];
static molora_result g_log_r;
static void on_log(void *user, molora_result r, const char *msg)
{
    (void)user;
    g_log_r = r;
    snprintf(g_log, sizeof g_log, "%s", msg);
}
static molora_load_desc desc(void)
{
    molora_load_desc d;
    memset(&d, 0, sizeof d);
    d.log = on_log;
    return d;
}

/* a float32 .npy written by np.save (format 1.0): its data, *n floats; the caller frees */
static float *npy_load(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char h[10];
    long size;
    float *v;
    size_t hl;
    if (!f) fail_msg("cannot open %s", path);
    assert_int_equal(fread(h, 1, 10, f), 10);
    assert_memory_equal(h, "\x93NUMPY\x01\x00", 8);
    hl = (size_t)h[8] | (size_t)h[9] << 8;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    *n = ((size_t)size - 10 - hl) / sizeof(float);
    v = (float *)malloc(*n * sizeof(float) + 4);
    fseek(f, (long)(10 + hl), SEEK_SET);
    assert_int_equal(fread(v, sizeof(float), *n, f), *n);
    fclose(f);
    return v;
}
static float *npy_case(const char *c, const char *file, size_t want)
{
    char p[256];
    size_t n;
    float *v;
    if (c) snprintf(p, sizeof p, F "/%s/%s", c, file); else snprintf(p, sizeof p, F "/%s", file);
    v = npy_load(p, &n);
    assert_int_equal(n, want);
    return v;
}
static void xl_close(const float *got, const float *want, size_t n, double tol, const char *what)
{
    err e = {0, 0, 0};
    size_t i;
    for (i = 0; i < n; i++) err_add(&e, got[i], want[i], fabs(want[i]) > 1.0 ? fabs(want[i]) : 1.0);
    if (e.rel > tol) fail_msg("%s: max error %g (abs %g) over %ld values", what, e.rel, e.abs, e.n);
}
static molora_xlora *open_ok(const char *dir)
{
    molora_load_desc d = desc();
    molora_xlora *xl = NULL;
    g_log[0] = 0;
    if (molora_xlora_open(dir, &d, &xl)) fail_msg("%s: %s", dir, g_log);
    return xl;
}
static void expect_open(const char *dir, molora_result want, const char *needle)
{
    molora_load_desc d = desc();
    molora_xlora *xl = (molora_xlora *)&d;
    molora_result r;
    g_log[0] = 0;
    r = molora_xlora_open(dir, &d, &xl);
    if (r != want)
        fail_msg("%s: got %s, want %s (%s)", dir, molora_result_string(r), molora_result_string(want), g_log);
    assert_null(xl);
    if (!strstr(g_log, needle)) fail_msg("%s: log \"%s\" does not say \"%s\"", dir, g_log, needle);
}
/* the scalings of xl for hidden (T, H), the workspace sized and checked for zero allocations */
static float *scalings_of(const molora_xlora *xl, const float *hidden, int t)
{
    size_t ws;
    void *w;
    float *s = (float *)calloc((size_t)t * L * N + 1, sizeof(float));
    long before;
    assert_int_equal(molora_xlora_workspace_size(xl, t, &ws), MOLORA_RESULT_SUCCESS);
    w = malloc(ws);
    before = g_allocs;
    assert_int_equal(molora_xlora_scalings(xl, t, hidden, s, w, ws), MOLORA_RESULT_SUCCESS);
    assert_int_equal(g_allocs, before);
    free(w);
    return s;
}

/* every case: N, L, H, the module order, scalings and pass 1 against PEFT */
static void test_parity(void **state)
{
    size_t c;
    float *hidden = npy_case(NULL, "hidden.npy", T * H);
    (void)state;
    for (c = 0; c < sizeof g_cases / sizeof g_cases[0]; c++) {
        char dir[128], line[256], what[160];
        FILE *f;
        int l = 0;
        molora_xlora *xl;
        float *want = npy_case(g_cases[c], "weights.npy", T * L * N);
        float *p1 = npy_case(g_cases[c], "pass1.npy", T * L * N);
        float *got, mine[T * L * N];
        molora_xlora_info info;
        snprintf(dir, sizeof dir, F "/%s", g_cases[c]);
        xl = open_ok(dir);
        assert_int_equal(molora_xlora_n_adapters(xl), N);
        assert_int_equal(molora_xlora_n_modules(xl), L);
        assert_int_equal(molora_xlora_hidden_size(xl), H);
        assert_int_equal(molora_xlora_config(xl, &info), MOLORA_RESULT_SUCCESS);
        assert_string_equal(info.layout, "peft");
        assert_string_equal(info.module_order, "llama");
        snprintf(line, sizeof line, "%s/order.txt", dir);
        assert_non_null(f = fopen(line, "r"));
        while (fgets(line, sizeof line, f)) {   /* X-LoRA's layer l is the adapter's layer l */
            line[strcspn(line, "\n")] = 0;
            assert_string_equal(molora_adapter_layer_name(molora_xlora_adapter(xl), l), line);
            l++;
        }
        fclose(f);
        assert_int_equal(l, L);
        got = scalings_of(xl, hidden, T);
        snprintf(what, sizeof what, "%s scalings", g_cases[c]);
        xl_close(got, want, T * L * N, 1e-5, what);
        assert_int_equal(molora_xlora_scaling_pass(xl, T, mine), MOLORA_RESULT_SUCCESS);
        snprintf(what, sizeof what, "%s pass 1", g_cases[c]);
        xl_close(mine, p1, T * L * N, 1e-6, what);
        assert_int_equal(molora_xlora_scaling_pass_is_base(xl) != 0, info.scaling_pass_value == 0.0f);
        free(got); free(want); free(p1);
        molora_xlora_free(xl);
    }
    free(hidden);
}

/* token t's scalings do not depend on the batch: T = 1, 16 and 17 give the same rows; T = 0 is
   a no-op; errors at their codes */
static void test_scalings_calls(void **state)
{
    float *hidden = npy_case(NULL, "hidden.npy", T * H), *all, *one, s[L * N];
    molora_xlora *xl = open_ok(F "/d2_layer");
    size_t ws;
    void *w;
    int t;
    (void)state;
    all = scalings_of(xl, hidden, T);
    for (t = 0; t < T; t++) {
        one = scalings_of(xl, hidden + (size_t)t * H, 1);
        xl_close(one, all + (size_t)t * L * N, L * N, 1e-5, "T = 1 row");
        free(one);
    }
    one = scalings_of(xl, hidden, 16);
    xl_close(one, all, 16 * L * N, 1e-5, "T = 16 rows");
    free(one);
    assert_int_equal(molora_xlora_workspace_size(xl, T, &ws), MOLORA_RESULT_SUCCESS);
    w = malloc(ws);
    assert_int_equal(molora_xlora_scalings(xl, 0, NULL, NULL, NULL, 0), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_xlora_scalings(xl, -1, hidden, all, w, ws), MOLORA_RESULT_INVALID_SHAPE);
    assert_int_equal(molora_xlora_scalings(xl, T, hidden, all, w, ws - 1), MOLORA_RESULT_WORKSPACE_TOO_SMALL);
    assert_int_equal(molora_xlora_scalings(xl, T, NULL, all, w, ws), MOLORA_RESULT_INVALID_ARGUMENT);
    hidden[5 * H + 3] = NAN;
    memcpy(s, all, sizeof s);
    assert_int_equal(molora_xlora_scalings(xl, T, hidden, all, w, ws), MOLORA_RESULT_NON_FINITE);
    hidden[5 * H + 3] = INFINITY;
    assert_int_equal(molora_xlora_scalings(xl, 1, hidden + 5 * H, all, w, ws), MOLORA_RESULT_NON_FINITE);
    assert_non_null(strstr(g_log, "NaN or Inf"));
    assert_int_equal(molora_xlora_scaling_pass(xl, 0, NULL), MOLORA_RESULT_SUCCESS);
    /* n < 0: INVALID_SHAPE (logged) from all three, as molora_forward */
    assert_int_equal(molora_xlora_scaling_pass(xl, -1, s), MOLORA_RESULT_INVALID_SHAPE);
    assert_non_null(strstr(g_log, "x-lora: n_tokens -1 < 0"));
    assert_int_equal(molora_xlora_workspace_size(xl, -1, &ws), MOLORA_RESULT_INVALID_SHAPE);
    assert_non_null(strstr(g_log, "x-lora: max_tokens -1 < 0"));
    g_log[0] = 0;
    assert_int_equal(molora_xlora_scalings(xl, -1, hidden, all, w, ws), MOLORA_RESULT_INVALID_SHAPE);
    assert_non_null(strstr(g_log, "x-lora: n_tokens -1 < 0"));
    free(w); free(all); free(hidden);
    molora_xlora_free(xl);
}

/* module M of the X-LoRA adapter as a one-layer model with W0 from the base */
static molora_model *module_model(const molora_xlora *xl, const char *m, float **W0)
{
    const molora_adapter *a = molora_xlora_adapter(xl);
    molora_model_desc md, one;
    molora_layer_desc Ld;
    molora_model *mod;
    char p[160];
    size_t n;
    int l;
    snprintf(p, sizeof p, "model.%s", m);
    l = molora_adapter_find_layer(a, p);
    assert_true(l >= 0);
    molora_adapter_model_desc(a, &md);
    Ld = md.layers[l];
    assert_int_equal(Ld.routing, MOLORA_ROUTING_FIXED);
    assert_int_equal(Ld.n_experts, N);
    snprintf(p, sizeof p, F "/W0.%s.npy", m);
    *W0 = npy_load(p, &n);
    assert_int_equal(n, (size_t)Ld.d_in * Ld.d_out);
    Ld.W0 = *W0;
    one = md; one.n_layers = 1; one.layers = &Ld;
    assert_int_equal(molora_model_init(&one, &mod), MOLORA_RESULT_SUCCESS);
    return mod;
}
/* y = the module's forward with (T, N) per-token FIXED weights; *path the path it took */
static void module_forward(const molora_model *mod, int t, const float *x, const float *w, molora_output out,
                           float *y, molora_path *path)
{
    molora_forward_args fa;
    size_t ws;
    void *buf;
    assert_int_equal(molora_workspace_size(mod, t, &ws), MOLORA_RESULT_SUCCESS);
    buf = malloc(ws);
    memset(&fa, 0, sizeof fa);
    fa.n_tokens = t; fa.x = x; fa.y = y; fa.output = out; fa.weights = w; fa.weights_per_token = 1;
    fa.workspace = buf; fa.workspace_size = ws; fa.path_out = path;
    assert_int_equal(molora_forward(mod, &fa), MOLORA_RESULT_SUCCESS);
    free(buf);
}
/* row l of scalings (T, L, N) as the (T, N) weights of module l */
static void module_rows(const float *s, int l, int t, float *w)
{
    int k;
    for (k = 0; k < t; k++) memcpy(w + (size_t)k * N, s + ((size_t)k * L + l) * N, N * sizeof(float));
}

/* PEFT's XLoraLinearLayer.forward, both passes, on two modules (one that adapter 2 skips), at
   T = 17 (GEMM), 16 (small batch) and 1 (decode), full output and delta */
static void test_module_forward(void **state)
{
    size_t c, m;
    float *x = npy_case(NULL, "x.npy", T * H), *hidden = npy_case(NULL, "hidden.npy", T * H);
    (void)state;
    for (c = 0; c < sizeof g_cases / sizeof g_cases[0]; c++) {
        char dir[128];
        molora_xlora *xl;
        float *s, p1[T * L * N];
        snprintf(dir, sizeof dir, F "/%s", g_cases[c]);
        xl = open_ok(dir);
        s = scalings_of(xl, hidden, T);
        molora_xlora_scaling_pass(xl, T, p1);
        for (m = 0; m < 2; m++) {
            char file[96], what[160];
            size_t n;
            float *W0, w[T * N], got[T * 32], base[T * 32], *want, *want1;
            int l, d_out, t, k;
            molora_model *mod = module_model(xl, g_modules[m], &W0);
            molora_path path;
            snprintf(file, sizeof file, "model.%s", g_modules[m]);
            l = molora_adapter_find_layer(molora_xlora_adapter(xl), file);
            snprintf(file, sizeof file, F "/%s/y.%s.npy", g_cases[c], g_modules[m]);
            want = npy_load(file, &n);
            d_out = (int)(n / T);
            snprintf(file, sizeof file, F "/%s/y1.%s.npy", g_cases[c], g_modules[m]);
            want1 = npy_load(file, &n);
            module_rows(s, l, T, w);
            for (t = 1; t <= T; t += t == 1 ? 15 : 1) {
                module_forward(mod, t, x, w, MOLORA_OUTPUT_FULL, got, &path);
                snprintf(what, sizeof what, "%s %s T = %d", g_cases[c], g_modules[m], t);
                xl_close(got, want, (size_t)t * d_out, 1e-5, what);
            }
            /* delta output: Y += delta onto the frozen layer computed by hand */
            for (t = 0; t < T; t++)
                for (k = 0; k < d_out; k++) {
                    int j;
                    double a = 0;
                    for (j = 0; j < H; j++) a += (double)x[t * H + j] * W0[k * H + j];
                    base[t * d_out + k] = (float)a;
                }
            memcpy(got, base, sizeof(float) * T * d_out);
            module_forward(mod, T, x, w, MOLORA_OUTPUT_DELTA, got, &path);
            xl_close(got, want, (size_t)T * d_out, 1e-5, "delta");
            /* pass 1 */
            module_rows(p1, l, T, w);
            module_forward(mod, T, x, w, MOLORA_OUTPUT_FULL, got, &path);
            snprintf(what, sizeof what, "%s %s pass 1", g_cases[c], g_modules[m]);
            xl_close(got, want1, (size_t)T * d_out, 1e-5, what);
            free(W0); free(want); free(want1);
            molora_model_free(mod);
        }
        free(s);
        molora_xlora_free(xl);
    }
    free(x); free(hidden);
}

/* pass 1 at scaling_pass_value 0 is the base model at no cost: DELTA does nothing (path NONE),
   FULL runs the frozen layer alone, equal to X W0^T */
static void test_pass1_base_costs_nothing(void **state)
{
    float *x = npy_case(NULL, "x.npy", T * H), p1[T * L * N], w[T * N], y[T * 32], base[T * 32], *W0;
    molora_xlora *xl = open_ok(F "/d2_layer");
    molora_model *mod = module_model(xl, g_modules[0], &W0);
    molora_path path = MOLORA_PATH_GEMM;
    int i, t, k;
    (void)state;
    assert_true(molora_xlora_scaling_pass_is_base(xl));
    assert_int_equal(molora_xlora_scaling_pass(xl, T, p1), MOLORA_RESULT_SUCCESS);
    for (i = 0; i < T * L * N; i++) assert_true(p1[i] == 0.0f);
    module_rows(p1, 0, T, w);
    for (i = 0; i < T * 32; i++) y[i] = (float)i;
    module_forward(mod, T, x, w, MOLORA_OUTPUT_DELTA, y, &path);
    assert_int_equal(path, MOLORA_PATH_NONE);
    for (i = 0; i < T * 32; i++) assert_true(y[i] == (float)i);
    for (t = 1; t <= T; t += 8) {
        module_forward(mod, t, x, w, MOLORA_OUTPUT_FULL, y, &path);
        assert_int_equal(path, t == 1 ? MOLORA_PATH_DECODE : t <= 16 ? MOLORA_PATH_SMALL : MOLORA_PATH_GEMM);
        for (i = 0; i < t; i++)
            for (k = 0; k < 32; k++) {
                int j;
                double a = 0;
                for (j = 0; j < H; j++) a += (double)x[i * H + j] * W0[k * H + j];
                base[i * 32 + k] = (float)a;
            }
        xl_close(y, base, (size_t)t * 32, 1e-6, "pass 1 = frozen layer");
    }
    free(W0); free(x);
    molora_model_free(mod);
    molora_xlora_free(xl);
}

/* the column of an adapter that skips a module: a zero rank-1 expert; the others keep their
   own rank and alpha / r */
static void test_union_columns(void **state)
{
    molora_xlora *xl = open_ok(F "/d1_bcast");
    const molora_adapter *a = molora_xlora_adapter(xl);
    molora_model_desc md;
    const molora_layer_desc *Lk, *Lq;
    (void)state;
    assert_int_equal(molora_adapter_layout(a), MOLORA_LAYOUT_XLORA);
    assert_string_equal(molora_layout_name(MOLORA_LAYOUT_XLORA), "xlora");
    assert_int_equal(molora_adapter_n_layers(a), L);
    molora_adapter_model_desc(a, &md);
    Lk = &md.layers[molora_adapter_find_layer(a, "base_model.model.model.layers.1.self_attn.k_proj")];
    Lq = &md.layers[molora_adapter_find_layer(a, "model.layers.1.self_attn.q_proj")];
    assert_int_equal(Lk->experts[0].rank, 4);
    assert_true(Lk->experts[0].scaling == 2.0f);
    assert_int_equal(Lk->experts[1].rank, 2);
    assert_true(Lk->experts[1].scaling == 8.0f);
    assert_int_equal(Lk->experts[2].rank, 1);   /* adapter 2 has no k_proj */
    assert_true(((const float *)Lk->experts[2].A)[0] == 0.0f && ((const float *)Lk->experts[2].B)[15] == 0.0f);
    assert_int_equal(Lk->d_out, 16);
    assert_int_equal(Lq->experts[2].rank, 8);
    assert_true(Lq->experts[2].scaling == 1.0f);
    assert_string_equal(molora_xlora_adapter_name(xl, 2), "2");
    assert_non_null(strstr(molora_xlora_adapter_path(xl, 2), "lora2"));
    assert_null(molora_xlora_adapter_name(xl, 3));
    assert_null(molora_xlora_adapter_name(xl, -1));
    molora_xlora_free(xl);
}

/* the original package's layout of case d2_layer: the same scalings */
static void test_xlora_package(void **state)
{
    float *hidden = npy_case(NULL, "hidden.npy", T * H), *want = npy_case("d2_layer", "weights.npy", T * L * N), *got;
    molora_xlora *xl = open_ok(F "/xlora_pkg");
    molora_xlora_info info;
    (void)state;
    molora_xlora_config(xl, &info);
    assert_string_equal(info.layout, "xlora");
    assert_string_equal(molora_xlora_adapter_name(xl, 0), "prose");
    assert_string_equal(molora_xlora_adapter_name(xl, 2), "python");
    got = scalings_of(xl, hidden, T);
    xl_close(got, want, T * L * N, 1e-5, "xlora package layout");
    free(got); free(want); free(hidden);
    molora_xlora_free(xl);
}

/* PEFT 0.20's own save (its classifier lacks layers.0) is refused naming the tensors */
static void test_peft_save_refused(void **state)
{
    (void)state;
    expect_open(F "/peft_save", MOLORA_RESULT_MISSING_WEIGHTS,
                "lacks 2 tensors: base_model.internal_xlora_classifier.layers.0.weight, "
                "base_model.internal_xlora_classifier.layers.0.bias");
    expect_open(F "/lora0", MOLORA_RESULT_INVALID_CONFIG, "not an X-LoRA adapter");
    expect_open(F "/nowhere", MOLORA_RESULT_IO_ERROR, "adapter_config.json");
}

/* ---- hostile configs: a scratch X-LoRA directory over the fixtures' LoRAs --------------------- */
static char g_tmp[64];
static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}
static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[4096];
    size_t n;
    assert_non_null(a); assert_non_null(b);
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) assert_int_equal(fwrite(buf, 1, n, b), n);
    fclose(a);
    assert_int_equal(fclose(b), 0);
}
/* d1_bcast's config with key `key` set to the JSON text val (NULL: removed), `extra` appended */
static const char *const g_keys[][2] = {
    {"peft_type", "\"XLORA\""}, {"hidden_size", "32"}, {"adapters", NULL}, {"enable_softmax", "true"},
    {"enable_softmax_topk", "false"}, {"layerwise_scalings", "false"}, {"xlora_depth", "1"},
    {"xlora_size", "2048"}, {"xlora_dropout_p", "0.2"}, {"softmax_temperature", "1.0"}, {"top_k_lora", "null"},
    {"scaling_pass_value", "0.0"}, {"global_scaling_weight", "1.0"}, {"use_trainable_adapters", "false"}};
/* ... and key2 set to val2 */
static void write_cfg2(const char *key, const char *val, const char *key2, const char *val2, const char *extra)
{
    char cfg[8192], adapters[2048], p[128], cwd[400];
    size_t i, n = 0;
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(adapters, sizeof adapters, "{\"0\": \"%s/" F "/lora0\", \"1\": \"%s/" F "/lora1\", \"2\": \"%s/" F
             "/lora2\"}", cwd, cwd, cwd);
    n += (size_t)snprintf(cfg + n, sizeof cfg - n, "{");
    for (i = 0; i < sizeof g_keys / sizeof g_keys[0]; i++) {
        const char *v = g_keys[i][1] ? g_keys[i][1] : adapters;
        if (!strcmp(g_keys[i][0], key)) v = val;
        else if (!strcmp(g_keys[i][0], key2)) v = val2;
        if (v) n += (size_t)snprintf(cfg + n, sizeof cfg - n, "%s\"%s\": %s", n > 1 ? ", " : "", g_keys[i][0], v);
    }
    snprintf(cfg + n, sizeof cfg - n, "%s}", extra ? extra : "");
    snprintf(p, sizeof p, "%s/adapter_config.json", g_tmp);
    write_text(p, cfg);
}
static void write_cfg(const char *key, const char *val, const char *extra)
{
    write_cfg2(key, val, "", NULL, extra);
}
static void tmp_setup(void)
{
    char p[128];
    strcpy(g_tmp, "/tmp/molora_xlora_XXXXXX");
    assert_non_null(mkdtemp(g_tmp));
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", g_tmp);
    copy_file(F "/d1_bcast/adapter_model.safetensors", p);
}
static void tmp_teardown(void)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    assert_int_equal(system(cmd), 0);
}
static void expect_cfg(const char *key, const char *val, const char *extra, molora_result want, const char *needle)
{
    write_cfg(key, val, extra);
    expect_open(g_tmp, want, needle);
}
static void test_config_refusals(void **state)
{
    molora_xlora *xl;
    (void)state;
    tmp_setup();
    write_cfg("", NULL, NULL);
    molora_xlora_free(open_ok(g_tmp));
    expect_cfg("softmax_temperature", "0", NULL, MOLORA_RESULT_INVALID_CONFIG, "\"softmax_temperature\" 0 must be > 0");
    expect_cfg("softmax_temperature", "-0.5", NULL, MOLORA_RESULT_INVALID_CONFIG, "softmax_temperature");
    expect_cfg("softmax_temperature", "1e-50", NULL, MOLORA_RESULT_INVALID_CONFIG, "softmax_temperature");
    expect_cfg("softmax_temperature", "NaN", NULL, MOLORA_RESULT_INVALID_JSON, "adapter_config.json");
    expect_cfg("top_k_lora", "0", NULL, MOLORA_RESULT_INVALID_CONFIG, "\"top_k_lora\" 0 outside 1..3");
    expect_cfg("top_k_lora", "4", NULL, MOLORA_RESULT_INVALID_CONFIG, "\"top_k_lora\" 4 outside 1..3");
    expect_cfg("top_k_lora", "-1", NULL, MOLORA_RESULT_INVALID_CONFIG, "top_k_lora");
    expect_cfg("top_k_lora", "1.5", NULL, MOLORA_RESULT_INVALID_CONFIG, "\"top_k_lora\" must be an integer");
    write_cfg("top_k_lora", "3", NULL);   /* k = N: every adapter kept */
    molora_xlora_free(open_ok(g_tmp));
    write_cfg("top_k_lora", "1", NULL);
    molora_xlora_free(open_ok(g_tmp));
    expect_cfg("xlora_depth", "0", NULL, MOLORA_RESULT_INVALID_CONFIG, "\"xlora_depth\" is 0, outside 1..64");
    expect_cfg("xlora_depth", "-2", NULL, MOLORA_RESULT_INVALID_CONFIG, "xlora_depth");
    expect_cfg("xlora_depth", "2", NULL, MOLORA_RESULT_MISSING_WEIGHTS, "layers.3.weight");   /* j = 3k */
    write_cfg("xlora_dropout_p", "0", NULL);   /* depth 1: layers.0 either way */
    molora_xlora_free(open_ok(g_tmp));
    expect_cfg("xlora_dropout_p", "1.5", NULL, MOLORA_RESULT_INVALID_CONFIG, "xlora_dropout_p");
    expect_cfg("xlora_size", "0", NULL, MOLORA_RESULT_INVALID_CONFIG, "xlora_size");
    expect_cfg("hidden_size", "31", NULL, MOLORA_RESULT_INVALID_SHAPE, "should be (3, 31)");
    expect_cfg("hidden_size", NULL, NULL, MOLORA_RESULT_INVALID_CONFIG, "\"hidden_size\" is missing");
    expect_cfg("hidden_size", "\"32\"", NULL, MOLORA_RESULT_INVALID_CONFIG, "\"hidden_size\" must be an integer");
    expect_cfg("layerwise_scalings", "true", NULL, MOLORA_RESULT_INVALID_SHAPE, "should be (24, 32)");
    expect_cfg("enable_softmax", "1", NULL, MOLORA_RESULT_INVALID_CONFIG, "\"enable_softmax\" must be true or false");
    expect_cfg("enable_softmax_topk", "\"yes\"", NULL, MOLORA_RESULT_INVALID_CONFIG, "enable_softmax_topk");
    expect_cfg("use_trainable_adapters", "null", NULL, MOLORA_RESULT_INVALID_CONFIG, "use_trainable_adapters");
    expect_cfg("scaling_pass_value", "null", NULL, MOLORA_RESULT_INVALID_CONFIG, "\"scaling_pass_value\" must be");
    expect_cfg("global_scaling_weight", "1e39", NULL, MOLORA_RESULT_INVALID_CONFIG, "global_scaling_weight");
    expect_cfg("peft_type", "\"LORA\"", NULL, MOLORA_RESULT_INVALID_CONFIG, "not an X-LoRA adapter");
    expect_cfg("adapters", "{}", NULL, MOLORA_RESULT_INVALID_CONFIG, "\"adapters\" must be an object");
    expect_cfg("adapters", NULL, NULL, MOLORA_RESULT_INVALID_CONFIG, "\"adapters\"");
    expect_cfg("adapters", "[\"0\"]", NULL, MOLORA_RESULT_INVALID_CONFIG, "\"adapters\"");
    expect_cfg("adapters", "{\"math\": \"" F "/lora0\"}", NULL, MOLORA_RESULT_INVALID_CONFIG,
               "\"adapters\" key \"math\" is not one of \"0\"..\"0\"");
    expect_cfg("adapters", "{\"1\": \"" F "/lora0\", \"3\": \"" F "/lora1\", \"0\": \"" F "/lora2\"}", NULL,
               MOLORA_RESULT_INVALID_CONFIG, "key \"3\" is not one of \"0\"..\"2\"");   /* index N */
    expect_cfg("adapters", "{\"01\": \"" F "/lora0\", \"1\": \"" F "/lora1\", \"2\": \"" F "/lora2\"}", NULL,
               MOLORA_RESULT_INVALID_CONFIG, "key \"01\" is not one of");
    expect_cfg("adapters", "{\"-1\": \"" F "/lora0\", \"1\": \"" F "/lora1\", \"2\": \"" F "/lora2\"}", NULL,
               MOLORA_RESULT_INVALID_CONFIG, "key \"-1\" is not one of");
    expect_cfg("adapters", "{\"\\u0030\": \"" F "/lora0\", \"1\": \"" F "/lora1\", \"0\": \"" F "/lora2\"}",
               NULL, MOLORA_RESULT_INVALID_JSON, "appears twice");   /* "\u0030" is "0" */
    /* any order of the keys "0".."N-1": column c is key "c" */
    write_cfg("adapters", "{\"2\": \"" F "/lora2\", \"0\": \"" F "/lora0\", \"1\": \"" F "/lora1\"}", NULL);
    xl = open_ok(g_tmp);
    assert_string_equal(molora_xlora_adapter_name(xl, 0), "0");
    assert_non_null(strstr(molora_xlora_adapter_path(xl, 0), "/lora0"));
    assert_string_equal(molora_xlora_adapter_name(xl, 2), "2");
    assert_non_null(strstr(molora_xlora_adapter_path(xl, 2), "/lora2"));
    molora_xlora_free(xl);
    expect_cfg("top_k_lora", "2.0", NULL, MOLORA_RESULT_INVALID_CONFIG, "\"top_k_lora\" must be an integer (PEFT "
               "takes an int");
    expect_cfg("top_k_lora", "2e0", NULL, MOLORA_RESULT_INVALID_CONFIG, "\"top_k_lora\" must be an integer");
    expect_cfg("hidden_size", "32.0", NULL, MOLORA_RESULT_INVALID_CONFIG, "\"hidden_size\" must be an integer");
    expect_cfg("adapters", "{\"0\": \"" F "/lora0\", \"0\": \"" F "/lora1\"}", NULL, MOLORA_RESULT_INVALID_JSON,
               "\"0\" appears twice");
    expect_cfg("adapters", "{\"0\": 5}", NULL, MOLORA_RESULT_INVALID_CONFIG, "entry 0 must be a non-empty path");
    expect_cfg("adapters", "{\"0\": \"no/such/dir\", \"1\": \"" F "/lora1\", \"2\": \"" F "/lora2\"}", NULL,
               MOLORA_RESULT_IO_ERROR, "X-LoRA adapter \"0\": no directory no/such/dir, /tmp/molora_xlora_");
    {   /* a relative path: as given (the current directory's), the X-LoRA directory's, its {key}/ folder */
        char want[200];
        snprintf(want, sizeof want, "no directory no/such/dir, %s/no/such/dir or %s/0", g_tmp, g_tmp);
        assert_non_null(strstr(g_log, want));
    }
    expect_cfg("adapters", "{\"0\": \"" F "/lora0\", \"1\": \"" F "/lora1\", \"2\": \"tests/fixtures/bad/embedding\"}",
               NULL, MOLORA_RESULT_UNSUPPORTED, "X-LoRA adapter \"2\": ");
    expect_cfg("adapters", "{\"0\": \"" F "/lora0\", \"1\": \"" F "/lora1\", \"2\": \"tests/fixtures/mole\"}",
               NULL, MOLORA_RESULT_UNSUPPORTED, "not a PEFT LoRA");
    expect_cfg("", NULL, ", \"use_bias\": false", MOLORA_RESULT_INVALID_CONFIG, "the xlora package's keys");
    expect_cfg("", NULL, ", \"hidden_size\": 32", MOLORA_RESULT_INVALID_JSON, "appears twice");
    write_cfg("", NULL, ", \"use_bias\": true, \"unknown_key\": [1, 2]");   /* unknown keys are ignored */
    xl = open_ok(g_tmp);
    molora_xlora_free(xl);
    tmp_teardown();
}

/* a safetensors file of F32 tensors: names, shapes (rows, cols; cols 0 = 1-D), values v[k] */
static void write_st(const char *path, int n, const char *const *names, const int (*shape)[2], float fill)
{
    char hdr[2048];
    size_t hl = 0, off = 0, pad;
    int k;
    FILE *f;
    hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "{");
    for (k = 0; k < n; k++) {
        size_t bytes = (size_t)shape[k][0] * (size_t)(shape[k][1] ? shape[k][1] : 1) * 4;
        if (shape[k][1])
            hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],"
                                   "\"data_offsets\":[%zu,%zu]}", k ? "," : "", names[k], shape[k][0], shape[k][1], off,
                                   off + bytes);
        else
            hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],"
                                   "\"data_offsets\":[%zu,%zu]}", k ? "," : "", names[k], shape[k][0], off,
                                   off + bytes);
        off += bytes;
    }
    hl += (size_t)snprintf(hdr + hl, sizeof hdr - hl, "}");
    pad = (8 - hl % 8) % 8;
    while (pad--) hdr[hl++] = ' ';
    assert_non_null(f = fopen(path, "wb"));
    {
        uint64_t h = hl;
        unsigned char le[8];
        size_t i;
        for (i = 0; i < 8; i++) le[i] = (unsigned char)(h >> (8 * i));
        fwrite(le, 1, 8, f);
        fwrite(hdr, 1, hl, f);
        for (i = 0; i < off / 4; i++) { float v = fill * (float)((i % 7) + 1) / 7.0f; fwrite(&v, 4, 1, f); }
    }
    assert_int_equal(fclose(f), 0);
}
/* a GPT-2-style X-LoRA over one LoRA on h.{0,1}.attn.c_attn: no order table for its names */
static void write_gpt2ish(const char *dir, const char *layerwise)
{
    static const char *const lora[] = {"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight",
                                       "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight",
                                       "base_model.model.transformer.h.1.attn.c_attn.lora_A.weight",
                                       "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight"};
    static const int lshape[][2] = {{1, 8}, {8, 1}, {1, 8}, {8, 1}};
    static const char *const clf[] = {"base_model.internal_xlora_classifier.layers.0.weight",
                                      "base_model.internal_xlora_classifier.layers.0.bias"};
    int cshape[2][2] = {{1, 8}, {1, 0}};
    char p[160], cfg[512];
    snprintf(p, sizeof p, "%s/0", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/0/adapter_model.safetensors", dir);
    write_st(p, 4, lora, lshape, 0.5f);
    snprintf(p, sizeof p, "%s/0/adapter_config.json", dir);
    write_text(p, "{\"peft_type\": \"LORA\", \"r\": 1, \"lora_alpha\": 2}");
    if (!strcmp(layerwise, "true")) cshape[0][0] = cshape[1][0] = 2;
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    write_st(p, 2, clf, (const int (*)[2])cshape, 1.0f);
    snprintf(cfg, sizeof cfg, "{\"peft_type\": \"XLORA\", \"hidden_size\": 8, \"adapters\": {\"0\": \"/gone/0\"}, "
             "\"layerwise_scalings\": %s, \"enable_softmax\": false}", layerwise);
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    write_text(p, cfg);
}
/* another family: broadcast needs no order; layer-wise is refused until the caller gives it;
   the {key}/ folder is the adapter when the config's path is gone */
static void test_module_order(void **state)
{
    static const char *const order[] = {"transformer.h.1.attn.c_attn",
                                        "base_model.model.transformer.h.0.attn.c_attn"};
    static const char *const twice[] = {"transformer.h.1.attn.c_attn", "transformer.h.1.attn.c_attn"};
    static const char *const stranger[] = {"transformer.h.1.attn.c_attn", "transformer.h.2.attn.c_attn"};
    float hid[8] = {1, 0, 0, 0, 0, 0, 0, 0}, s[2];
    molora_xlora_info info;
    molora_xlora *xl;
    size_t ws;
    void *w;
    (void)state;
    tmp_setup();
    write_gpt2ish(g_tmp, "false");
    xl = open_ok(g_tmp);
    molora_xlora_config(xl, &info);
    assert_null(info.module_order);
    assert_int_equal(molora_xlora_n_modules(xl), 2);
    assert_string_equal(molora_adapter_layer_name(molora_xlora_adapter(xl), 0),
                        "base_model.model.transformer.h.0.attn.c_attn");
    molora_xlora_workspace_size(xl, 1, &ws);
    w = malloc(ws);
    assert_int_equal(molora_xlora_scalings(xl, 1, hid, s, w, ws), MOLORA_RESULT_SUCCESS);
    assert_true(s[0] == s[1] && s[0] != 0.0f);
    molora_xlora_free(xl);
    write_gpt2ish(g_tmp, "true");
    xl = open_ok(g_tmp);
    assert_int_equal(molora_xlora_scalings(xl, 1, hid, s, w, ws), MOLORA_RESULT_UNSUPPORTED);
    assert_non_null(strstr(g_log, "molora_xlora_set_module_order"));
    assert_int_equal(molora_xlora_set_module_order(xl, order, 1), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_non_null(strstr(g_log, "names 1 modules, the adapters adapt 2"));
    assert_int_equal(molora_xlora_set_module_order(xl, twice, 2), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_non_null(strstr(g_log, "given twice"));
    assert_int_equal(molora_xlora_set_module_order(xl, stranger, 2), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_non_null(strstr(g_log, "transformer.h.2.attn.c_attn) is not an adapted module"));
    assert_int_equal(molora_xlora_set_module_order(xl, order, 2), MOLORA_RESULT_SUCCESS);
    molora_xlora_config(xl, &info);
    assert_string_equal(info.module_order, "caller");
    assert_string_equal(molora_adapter_layer_name(molora_xlora_adapter(xl), 0),
                        "base_model.model.transformer.h.1.attn.c_attn");
    assert_int_equal(molora_adapter_find_layer(molora_xlora_adapter(xl), "transformer.h.0.attn.c_attn"), 1);
    assert_int_equal(molora_xlora_scalings(xl, 1, hid, s, w, ws), MOLORA_RESULT_SUCCESS);
    assert_true(s[0] != s[1]);   /* rows of the classifier's (2, 8) weight: 1/7 and 2/7 ... */
    molora_xlora_free(xl);
    free(w);
    tmp_teardown();
}
/* PEFT's {key}/ copy: a clean one is used, PEFT 0.20's own (base tensors, lost layers) refused */
static void test_key_folder(void **state)
{
    char p[256], cmd[1024];
    (void)state;
    tmp_setup();
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", g_tmp);
    copy_file(F "/d2_layer/adapter_model.safetensors", p);
    snprintf(cmd, sizeof cmd, "sed 's#\\.\\./lora#gone#' " F "/d2_layer/adapter_config.json >%s/adapter_config.json && "
             "cp -r " F "/lora0 %s/0 && cp -r " F "/lora1 %s/1 && cp -r " F "/lora2 %s/2", g_tmp, g_tmp, g_tmp, g_tmp);
    assert_int_equal(system(cmd), 0);
    molora_xlora_free(open_ok(g_tmp));
    snprintf(cmd, sizeof cmd, "rm -r %s/1 && cp -r " F "/peft_save/1 %s/1", g_tmp, g_tmp);
    assert_int_equal(system(cmd), 0);
    expect_open(g_tmp, MOLORA_RESULT_MISSING_WEIGHTS, "X-LoRA adapter \"1\": this copy from PEFT's X-LoRA save");
    snprintf(cmd, sizeof cmd, "rm -r %s/1", g_tmp);
    assert_int_equal(system(cmd), 0);
    snprintf(p, sizeof p, "X-LoRA adapter \"1\": no directory gone1, %s/gone1 or %s/1", g_tmp, g_tmp);
    expect_open(g_tmp, MOLORA_RESULT_IO_ERROR, p);
    tmp_teardown();
}
/* a NaN in the classifier is refused naming the tensor */
static void test_classifier_nan(void **state)
{
    static const char *const clf[] = {"base_model.internal_xlora_classifier.layers.0.weight",
                                      "base_model.internal_xlora_classifier.layers.0.bias"};
    static const int shape[][2] = {{3, 32}, {3, 0}};
    char p[160];
    (void)state;
    tmp_setup();
    write_cfg("", NULL, NULL);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", g_tmp);
    write_st(p, 2, clf, shape, NAN);
    expect_open(g_tmp, MOLORA_RESULT_NON_FINITE, "layers.0.weight holds NaN or Inf");
    tmp_teardown();
}

/* ties in top-k (ties_n5, _n8, _n11 by make_xlora_ties.py): PEFT keeps torch.topk's pick, which
   on torch 1.13's CPU kernel is not the lower indices (N = 5, k = 2 on pass 1's constant row:
   columns 2 and 4); both passes against PEFT's numbers, the kept columns exactly. ties_n11's
   keys come "0", "1", "10", "2", ... (PEFT's sort_keys): column c is key "c". */
static void test_topk_ties(void **state)
{
    static const int ns[] = {5, 8, 11};
    float *hidden = npy_case(NULL, "hidden.npy", T * H);
    size_t j, ws;
    int c;
    (void)state;
    for (c = 0; c < 3; c++) {
        char dir[96], key[24];
        int n = ns[c];
        size_t cnt = (size_t)T * L * n;
        float *want, *want1, *got = (float *)calloc(cnt, sizeof(float)), *got1 = (float *)calloc(cnt, sizeof(float));
        void *w;
        molora_xlora *xl;
        snprintf(dir, sizeof dir, F "/ties_n%d", n);
        xl = open_ok(dir);
        assert_int_equal(molora_xlora_n_adapters(xl), n);
        for (j = 0; j < (size_t)n; j++) {
            snprintf(key, sizeof key, "%zu", j);
            assert_string_equal(molora_xlora_adapter_name(xl, (int)j), key);
            snprintf(key, sizeof key, "lora%zu", j % 3);
            assert_non_null(strstr(molora_xlora_adapter_path(xl, (int)j), key));
        }
        snprintf(dir, sizeof dir, "ties_n%d", n);
        want = npy_case(dir, "weights.npy", cnt);
        want1 = npy_case(dir, "pass1.npy", cnt);
        assert_int_equal(molora_xlora_workspace_size(xl, T, &ws), MOLORA_RESULT_SUCCESS);
        w = malloc(ws);
        assert_int_equal(molora_xlora_scalings(xl, T, hidden, got, w, ws), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_xlora_scaling_pass(xl, T, got1), MOLORA_RESULT_SUCCESS);
        for (j = 0; j < cnt; j++) {
            if ((got[j] == 0.0f) != (want[j] == 0.0f) || (got1[j] == 0.0f) != (want1[j] == 0.0f))
                fail_msg("ties_n%d: entry %zu (column %zu) kept differently from torch.topk", n, j, j % (size_t)n);
        }
        xl_close(got, want, cnt, 1e-6, dir);
        xl_close(got1, want1, cnt, 1e-6, dir);
        if (n == 5) assert_true(got1[2] != 0.0f && got1[4] != 0.0f && got1[0] == 0.0f && got1[1] == 0.0f);
        free(w); free(want); free(want1); free(got); free(got1);
        molora_xlora_free(xl);
    }
    free(hidden);
}
/* overflow at every step is NON_FINITE naming the step, never NaN scalings with success */
static void test_overflow(void **state)
{
    float *hidden = npy_case(NULL, "hidden.npy", T * H), s[L * N], *out = (float *)malloc(T * L * N * sizeof(float));
    molora_xlora *xl;
    size_t ws;
    void *w;
    (void)state;
    tmp_setup();
    write_cfg("softmax_temperature", "1e-40", NULL);   /* a float (subnormal), so > 0: accepted */
    xl = open_ok(g_tmp);
    molora_xlora_workspace_size(xl, T, &ws);
    w = malloc(ws);
    assert_int_equal(molora_xlora_scalings(xl, T, hidden, out, w, ws), MOLORA_RESULT_NON_FINITE);
    assert_non_null(strstr(g_log, "x-lora: token 0: the softmax of the logits / softmax_temperature"));
    molora_xlora_free(xl);
    write_cfg2("enable_softmax", "false", "global_scaling_weight", "3.4e38", NULL);
    xl = open_ok(g_tmp);   /* the raw logits times 3.4e38: those above 1.0001 overflow */
    assert_int_equal(molora_xlora_scalings(xl, T, hidden, out, w, ws), MOLORA_RESULT_NON_FINITE);
    assert_non_null(strstr(g_log, "the scalings times global_scaling_weight 3.4e+38 overflow"));
    assert_int_equal(molora_xlora_scaling_pass(xl, 1, s), MOLORA_RESULT_SUCCESS);   /* spv 0: 0 */
    molora_xlora_free(xl);
    write_cfg2("scaling_pass_value", "1e30", "global_scaling_weight", "1e30", NULL);
    xl = open_ok(g_tmp);
    assert_int_equal(molora_xlora_scaling_pass(xl, 1, s), MOLORA_RESULT_NON_FINITE);
    assert_non_null(strstr(g_log, "x-lora: scaling_pass_value 1e+30 times global_scaling_weight 1e+30 overflows"));
    molora_xlora_free(xl);
    free(w); free(out); free(hidden);
    tmp_teardown();
}

/* a classifier file with a tensor the config does not describe is refused naming it: an extra
   layer, an unrelated tensor; the package's biases when its use_bias is false */
static void test_extra_tensors(void **state)
{
    static const char *const extra[] = {"base_model.internal_xlora_classifier.layers.0.weight",
                                        "base_model.internal_xlora_classifier.layers.0.bias",
                                        "base_model.internal_xlora_classifier.layers.3.weight"};
    static const char *const other[] = {"base_model.internal_xlora_classifier.layers.0.weight",
                                        "base_model.internal_xlora_classifier.layers.0.bias", "lm_head.weight"};
    static const int shape[][2] = {{3, 32}, {3, 0}, {3, 32}};
    char p[256], cmd[768];
    (void)state;
    tmp_setup();
    write_cfg("", NULL, NULL);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", g_tmp);
    write_st(p, 2, extra, shape, 1.0f);
    molora_xlora_free(open_ok(g_tmp));   /* the two it needs: fine */
    write_st(p, 3, extra, shape, 1.0f);
    expect_open(g_tmp, MOLORA_RESULT_INVALID_CONFIG, "adapter_model.safetensors: tensor base_model."
                "internal_xlora_classifier.layers.3.weight is not part of the classifier the config describes "
                "(xlora_depth 1, xlora_dropout_p > 0)");
    write_st(p, 3, other, shape, 1.0f);
    expect_open(g_tmp, MOLORA_RESULT_INVALID_CONFIG, "tensor lm_head.weight is not part of the classifier");
    tmp_teardown();
    tmp_setup();
    snprintf(cmd, sizeof cmd, "cp -r " F "/xlora_pkg/. %s/ && sed 's/\"use_bias\": true/\"use_bias\": false/' "
             F "/xlora_pkg/xlora_config.json >%s/xlora_config.json", g_tmp, g_tmp);
    assert_int_equal(system(cmd), 0);
    expect_open(g_tmp, MOLORA_RESULT_INVALID_CONFIG, "xlora_classifier.safetensors: tensor ");
    if (!strstr(g_log, ".bias is not part of the classifier the config describes (xlora_depth 2, use_bias false)"))
        fail_msg("log: %s", g_log);
    snprintf(cmd, sizeof cmd, "sed 's/\"python\"\\]/\"prose\"]/' " F "/xlora_pkg/xlora_config.json "
             ">%s/xlora_config.json", g_tmp);
    assert_int_equal(system(cmd), 0);
    expect_open(g_tmp, MOLORA_RESULT_INVALID_CONFIG, "xlora_config.json: \"adapters\" names \"prose\" twice");
    tmp_teardown();
}
/* the package's defaults and its other "adapters": enable_relu_and_dropout absent is the
   package's False (no ReLU); "adapters" as its dict name -> path is taken by the names (the
   package loads each from its {name}/ folder), the same scalings as the list */
static void test_package_variants(void **state)
{
    float *hidden = npy_case(NULL, "hidden.npy", T * H), *want = npy_case("d2_layer", "weights.npy", T * L * N), *got;
    char cmd[768];
    molora_xlora_info info;
    molora_xlora *xl;
    (void)state;
    tmp_setup();
    snprintf(cmd, sizeof cmd, "cp -r " F "/xlora_pkg/. %s/ && sed 's/\"enable_relu_and_dropout\": true, //' "
             F "/xlora_pkg/xlora_config.json >%s/xlora_config.json", g_tmp, g_tmp);
    assert_int_equal(system(cmd), 0);
    xl = open_ok(g_tmp);
    molora_xlora_config(xl, &info);
    assert_int_equal(info.relu, 0);
    molora_xlora_free(xl);
    snprintf(cmd, sizeof cmd, "sed 's/\\[\"prose\", \"c\", \"python\"\\]/{\"prose\": \"x\", \"c\": \"y\", "
             "\"python\": \"zz\"}/' " F "/xlora_pkg/xlora_config.json >%s/xlora_config.json", g_tmp);
    assert_int_equal(system(cmd), 0);
    xl = open_ok(g_tmp);
    molora_xlora_config(xl, &info);
    assert_int_equal(info.relu, 1);
    assert_string_equal(molora_xlora_adapter_name(xl, 2), "python");
    got = scalings_of(xl, hidden, T);
    xl_close(got, want, T * L * N, 1e-5, "xlora package, adapters as a dict");
    free(got); free(want); free(hidden);
    molora_xlora_free(xl);
    tmp_teardown();
}
/* a relative adapter path is taken as given (against the current directory) first, then against
   the X-LoRA directory: here both hold tests/fixtures/xlora/lora1 and the current directory's is
   taken; lora3, only in the X-LoRA directory (a copy of lora0), is found there */
static void test_relative_paths(void **state)
{
    char cmd[768], want[256];
    molora_xlora *xl;
    (void)state;
    tmp_setup();
    write_cfg("adapters", "{\"0\": \"" F "/lora0\", \"1\": \"" F "/lora1\", \"2\": \"" F "/lora3\"}", NULL);
    snprintf(cmd, sizeof cmd, "mkdir -p %s/" F " && cp -r " F "/lora0 %s/" F "/lora1 && cp -r " F "/lora0 %s/" F
             "/lora3", g_tmp, g_tmp, g_tmp);
    assert_int_equal(system(cmd), 0);
    xl = open_ok(g_tmp);
    assert_string_equal(molora_xlora_adapter_path(xl, 1), F "/lora1");   /* both exist: as given */
    assert_string_equal(molora_xlora_adapter_path(xl, 0), F "/lora0");   /* only the current directory's */
    snprintf(want, sizeof want, "%s/" F "/lora3", g_tmp);
    assert_string_equal(molora_xlora_adapter_path(xl, 2), want);         /* only the X-LoRA directory's */
    molora_xlora_free(xl);
    tmp_teardown();
}

/* KEEP_BF16 on an X-LoRA of BF16 LoRAs keeps every module in BF16, the modules one LoRA skips
   too: the union's zero filler expert takes the present experts' type (it read as F32, which made
   the layer mixed and kept it in float32) */
static void test_bf16_union_filler(void **state)
{
    molora_xlora *xl = open_ok("tests/fixtures/xlora/bf16/xlora");
    const molora_adapter *ad = molora_xlora_adapter(xl);
    molora_model_desc md;
    int l, fillers = 0;
    (void)state;
    assert_int_equal(molora_adapter_model_desc(ad, &md), MOLORA_RESULT_SUCCESS);
    for (l = 0; l < md.n_layers; l++) {
        molora_model_desc one = md;
        molora_model *m = NULL;
        molora_layer_info li;
        int e;
        for (e = 0; e < md.layers[l].n_experts; e++) {
            const molora_expert_desc *x = &md.layers[l].experts[e];
            assert_int_equal(x->A_type, MOLORA_TYPE_BF16);
            assert_int_equal(x->B_type, MOLORA_TYPE_BF16);
            fillers += x->rank == 1;
        }
        one.n_layers = 1; one.layers = &md.layers[l]; one.flags = MOLORA_MODEL_EXPERTS_KEEP_BF16;
        assert_int_equal(molora_model_init(&one, &m), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_model_layer_info(m, 0, &li), MOLORA_RESULT_SUCCESS);
        assert_int_equal(li.expert_type, MOLORA_TYPE_BF16);
        molora_model_free(m);
    }
    assert_true(fillers > 0);   /* the fixture has modules some LoRA skips */
    molora_xlora_free(xl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity),
        cmocka_unit_test(test_scalings_calls),
        cmocka_unit_test(test_module_forward),
        cmocka_unit_test(test_pass1_base_costs_nothing),
        cmocka_unit_test(test_union_columns),
        cmocka_unit_test(test_xlora_package),
        cmocka_unit_test(test_peft_save_refused),
        cmocka_unit_test(test_config_refusals),
        cmocka_unit_test(test_module_order),
        cmocka_unit_test(test_key_folder),
        cmocka_unit_test(test_classifier_nan),
        cmocka_unit_test(test_topk_ties),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_extra_tensors),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_package_variants),
        cmocka_unit_test(test_bf16_union_filler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Cost bounded by the input's size (issue 12): the loader's work and memory, measured and printed
   as "figure: ..." lines, asserted by scaling (cost at 2n over cost at n, best of three runs) or by
   counted bytes and VM steps, never by wall-clock limits. This file compiles the implementation
   itself so it can count the pattern matcher's steps. Run from the repository root. */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime */
#define MOLORA_IMPLEMENTATION
#define MOLORA_NO_BLAS
#include "test_util.h"   /* cmocka, now_ms */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "molora.h"

/* ---- memory hook: live and peak bytes through molora_memory --------------------------------- */
static size_t g_cur, g_peak;
static void *peak_alloc(size_t n, void *u)
{
    size_t *p = (size_t *)malloc(n + 16);
    (void)u;
    if (!p) return NULL;
    p[0] = n;
    g_cur += n;
    if (g_cur > g_peak) g_peak = g_cur;
    return (char *)p + 16;
}
static void peak_free(void *q, void *u)
{
    size_t *p;
    (void)u;
    if (!q) return;
    p = (size_t *)(void *)((char *)q - 16);
    g_cur -= p[0];
    free(p);
}
static char g_log[512];
static void keep_log(void *u, molora_result r, const char *m)
{
    (void)u; (void)r;
    snprintf(g_log, sizeof g_log, "%s", m);
}
static molora_load_desc desc(void)
{
    molora_load_desc d;
    memset(&d, 0, sizeof d);
    d.memory.alloc = peak_alloc; d.memory.free = peak_free; d.log = keep_log;
    return d;
}

/* ---- a growing text buffer ---------------------------------------------------------------- */
typedef struct buf { char *p; size_t n, cap; } buf;
static void put(buf *b, const char *fmt, ...)
{
    va_list ap;
    int k;
    for (;;) {
        va_start(ap, fmt);
        k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        assert_true(k >= 0);
        if (b->p && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        b->cap = 2 * (b->cap + (size_t)k + 64);
        b->p = (char *)realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
}
/* a safetensors image: 8-byte length, the header in h, `data` zero bytes */
static unsigned char *image(const buf *h, size_t data, size_t *n)
{
    unsigned char *f = (unsigned char *)calloc(8 + h->n + data + 1, 1);
    size_t i;
    assert_non_null(f);
    for (i = 0; i < 8; i++) f[i] = (unsigned char)((uint64_t)h->n >> (8 * i));
    memcpy(f + 8, h->p, h->n);
    *n = 8 + h->n + data;
    return f;
}
/* the image of n_mod modules "base_model.model.model.layers.<i>.q", each with the 1x1 F32 tensors
   named by parts, their data back to back */
static unsigned char *modules_image(int n_mod, const char *const *parts, int n_parts, size_t *n)
{
    buf h = {0};
    unsigned char *f;
    int i, k;
    put(&h, "{");
    for (i = 0; i < n_mod; i++)
        for (k = 0; k < n_parts; k++) {
            int off = 4 * (n_parts * i + k);
            put(&h, "%s\"base_model.model.model.layers.%d.q.%s\":{\"dtype\":\"F32\",\"shape\":[1,1],"
                    "\"data_offsets\":[%d,%d]}", i || k ? "," : "", i, parts[k], off, off + 4);
        }
    put(&h, "}");
    f = image(&h, (size_t)n_mod * n_parts * 4, n);
    free(h.p);
    return f;
}

/* ---- rank_pattern keys: VM steps grow linearly with the name, whatever the nesting ------------- */
static size_t re_steps(molora__re *re, const char *key, size_t len, int tail_b, int *hit)
{
    char *name = (char *)malloc(len + 2);
    size_t steps = 0;
    memset(name, 'a', len);
    name[len] = tail_b ? 'b' : 0;
    name[len + 1] = 0;
    *hit = molora__re_match(re, key, name, &steps);
    free(name);
    return steps;
}
static void test_pattern_linear(void **state)
{
    static molora__re re;
    char nested[256] = "a*", flat[256] = "";
    int i, hit;
    size_t s1, s2;
    double t0, ms;
    (void)state;
    for (i = 0; i < 11; i++) { char t[256]; snprintf(t, sizeof t, "(%s)*", nested); strcpy(nested, t); }
    strcat(nested, "b");                               /* 12 nested quantifiers, then b */
    for (i = 0; i < 12; i++) strcat(flat, "a*");
    strcat(flat, "b");
    s1 = re_steps(&re, nested, 4000, 0, &hit);
    assert_int_equal(hit, 0);
    t0 = now_ms();
    s2 = re_steps(&re, nested, 8000, 0, &hit);
    ms = now_ms() - t0;
    assert_int_equal(hit, 0);
    printf("figure: 12-level nested-quantifier key %s on 4000 / 8000 'a's: %zu / %zu VM steps (ratio %.2f), %.3f ms "
           "for 8000\n",
           nested, s1, s2, (double)s2 / (double)s1, ms);
    assert_true((double)s2 / (double)s1 < 2.5);
    re_steps(&re, nested, 8000, 1, &hit);
    assert_int_equal(hit, 1);
    s1 = re_steps(&re, flat, 4000, 0, &hit);
    s2 = re_steps(&re, flat, 8000, 0, &hit);
    printf("figure: 12 flat quantifiers a*a*...b on 4000 / 8000 'a's: %zu / %zu VM steps (ratio %.2f)\n", s1, s2,
           (double)s2 / (double)s1);
    assert_true((double)s2 / (double)s1 < 2.5);
}

/* ---- the time of parse + load, best of 3 --------------------------------------------------- */
/* Opens the image f as safetensors and the config c as its adapter, three times; `timed` runs on
   the adapter inside the timed part (the lookups the test prices), `check` after it (asserts only).
   Returns the best time in ms; every run must free all it allocated. */
typedef void (*adapter_fn)(const molora_adapter *a, void *ctx);
static double best_load_ms(const unsigned char *f, size_t n, const buf *c, adapter_fn timed, adapter_fn check,
                           void *ctx)
{
    double best = 1e30;
    int run;
    molora_load_desc d = desc();
    for (run = 0; run < 3; run++) {
        molora_safetensors *st;
        molora_adapter *a;
        double t0 = now_ms(), ms;
        assert_int_equal(molora_safetensors_open_memory(f, n, &d, &st), MOLORA_RESULT_SUCCESS);
        if (molora_adapter_open_memory(c->p, c->n, st, &d, &a) != MOLORA_RESULT_SUCCESS) fail_msg("%s", g_log);
        if (timed) timed(a, ctx);
        ms = now_ms() - t0;
        if (ms < best) best = ms;
        if (check) check(a, ctx);
        molora_adapter_free(a);
        molora_safetensors_free(st);
        assert_int_equal(g_cur, 0);
    }
    return best;
}

/* ---- 2n modules and 2n layers_to_transform entries cost about twice n ------------------------ */
typedef struct modules_case { int n_mod, kept; } modules_case;
static void find_every_module(const molora_adapter *a, void *ctx)   /* the even layers are kept */
{
    modules_case *m = (modules_case *)ctx;
    char name[96];
    int i;
    m->kept = molora_adapter_n_layers(a);
    for (i = 0; i < m->n_mod; i++) {
        snprintf(name, sizeof name, "model.layers.%d.q", i);
        if ((molora_adapter_find_layer(a, name) >= 0) != (i % 2 == 0)) fail_msg("find_layer %s", name);
    }
}
static double load_modules(int n_mod, int n_ltt, int *kept)
{
    static const char *const parts[] = {"lora_A.weight", "lora_B.weight"};
    buf c = {0};
    size_t n;
    int i;
    double best;
    modules_case m = {n_mod, 0};
    unsigned char *f = modules_image(n_mod, parts, 2, &n);
    put(&c, "{\"peft_type\":\"LORA\",\"r\":1,\"lora_alpha\":1,\"layers_to_transform\":[");
    for (i = 0; i < n_ltt; i++) put(&c, "%s%d", i ? "," : "", 2 * i);   /* even layers */
    put(&c, "]}");
    best = best_load_ms(f, n, &c, find_every_module, NULL, &m);
    *kept = m.kept;
    free(f); free(c.p);
    return best;
}
/* 5k -> 20k modules: near-linear work grows about 4x (n log n: 4.6x), quadratic 16x. The bound 8
   sits between the two with room for a loaded machine or a sanitizer's cache effects. */
static void test_modules_near_linear(void **state)
{
    int k1, k2;
    double t1, t2;
    (void)state;
    t1 = load_modules(5000, 50000, &k1);
    t2 = load_modules(20000, 200000, &k2);
    assert_int_equal(k1, 2500);
    assert_int_equal(k2, 10000);
    printf("figure: 5k / 20k modules with 50k / 200k layers_to_transform entries, parse + load + every find_layer: "
           "%.1f / %.1f ms (ratio %.2f for 4x the input)\n",
           t1, t2, t2 / t1);
    assert_true(t2 / t1 < 8.0);
}

/* ---- a MOLORA expert_scaling object (one key per module) is indexed once, not scanned per module */
static void check_scalings(const molora_adapter *a, void *ctx)   /* every 997th module's s = i % 7 + 1.5 */
{
    int n_mod = *(const int *)ctx, i;
    molora_model_desc md;
    memset(&md, 0, sizeof md);
    assert_int_equal(molora_adapter_model_desc(a, &md), MOLORA_RESULT_SUCCESS);
    assert_int_equal(md.n_layers, n_mod);
    for (i = 0; i < n_mod; i += 997) {
        char name[96];
        int l;
        snprintf(name, sizeof name, "model.layers.%d.q", i);
        l = molora_adapter_find_layer(a, name);
        assert_true(l >= 0);
        assert_true(md.layers[l].experts[0].scaling == (float)(i % 7 + 1) + 0.5f);
    }
}
static double load_scaling(int n_mod)
{
    static const char *const parts[] = {"lora_A.0.weight", "lora_B.0.weight", "lora_gating.weight"};
    buf c = {0};
    size_t n;
    int i;
    double best;
    unsigned char *f = modules_image(n_mod, parts, 3, &n);
    put(&c, "{\"peft_type\":\"MOLORA\",\"routing\":\"dense\",\"expert_scaling\":{");
    for (i = n_mod - 1; i >= 0; i--)   /* reverse order, half with the prefix: the index sorts */
        put(&c, "%s\"%smodel.layers.%d.q\":[%d.5]", i < n_mod - 1 ? "," : "", i % 2 ? "base_model.model." : "", i,
            i % 7 + 1);
    put(&c, "}}");
    best = best_load_ms(f, n, &c, NULL, check_scalings, &n_mod);
    free(f); free(c.p);
    return best;
}
/* 10k -> 40k modules (each with its expert_scaling key): near-linear about 4x, quadratic 16x
   (the per-module scan took 9.4 s at 40k); the bound 8 as for the module test */
static void test_scaling_object_near_linear(void **state)
{
    double t1, t2;
    (void)state;
    t1 = load_scaling(10000);
    t2 = load_scaling(40000);
    printf("figure: 10k / 40k modules with a per-module expert_scaling object, parse + load: %.1f / %.1f ms (ratio "
           "%.2f for 4x the input)\n",
           t1, t2, t2 / t1);
    assert_true(t2 / t1 < 8.0);
}

/* ---- zero-size tensors and absurd expert indices: memory follows the file -------------------- */
static size_t load_peak(int n_t, const char *fmt, molora_result want, size_t *file)
{
    buf h = {0};
    unsigned char *f;
    size_t n;
    int i;
    molora_load_desc d = desc();
    molora_safetensors *st;
    molora_adapter *a;
    static const char cfg[] = "{\"peft_type\":\"ADAMOLE\",\"lora_rank\":4,\"lora_alpha\":8,\"num_experts\":2}";
    put(&h, "{");
    for (i = 0; i < n_t; i++) { put(&h, i ? "," : ""); put(&h, fmt, i); }
    put(&h, "}");
    f = image(&h, 0, &n);
    g_peak = 0;
    assert_int_equal(molora_safetensors_open_memory(f, n, &d, &st), MOLORA_RESULT_SUCCESS);
    g_log[0] = 0;
    if (molora_adapter_open_memory(cfg, sizeof cfg - 1, st, &d, &a) != want) fail_msg("%s: %s", fmt, g_log);
    molora_safetensors_free(st);
    assert_int_equal(g_cur, 0);
    *file = n;
    free(f); free(h.p);
    return g_peak;
}
static void test_zero_size_proportional(void **state)
{
    static const struct { const char *fmt; molora_result r; const char *what; } c[] = {
        {"\"m%d.q.lora_A.65535.weight\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[0,0]}",
         MOLORA_RESULT_MISSING_WEIGHTS, "index 65535"},
        {"\"m%d.q.lora_A_1000000000.weight\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}",
         MOLORA_RESULT_UNSUPPORTED, "index 10^9"},
        {"\"m%d.q.lora_A.0.weight\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[0,0]}",
         MOLORA_RESULT_MISSING_WEIGHTS, "rank 0, no B"},
    };
    size_t i, f1, f2, p1, p2;
    (void)state;
    for (i = 0; i < sizeof c / sizeof c[0]; i++) {
        p1 = load_peak(3000, c[i].fmt, c[i].r, &f1);
        p2 = load_peak(6000, c[i].fmt, c[i].r, &f2);
        printf("figure: 3,000 / 6,000 zero-size tensors (%s): file %zu / %zu bytes, peak allocation %zu / %zu bytes "
               "(%.1f / %.1f per file byte)\n",
               c[i].what, f1, f2, p1, p2, (double)p1 / (double)f1, (double)p2 / (double)f2);
        assert_true(p1 < 8 * f1 && p2 < 8 * f2);
        assert_true((double)p2 / (double)p1 < 2.5);
    }
}

/* ---- parser memory follows the header's content --------------------------------------------- */
static size_t header_peak(size_t items, const char *pre, const char *item, const char *post, molora_result want,
                          size_t *file)
{
    buf h = {0};
    unsigned char *f;
    size_t n, i;
    molora_load_desc d = desc();
    molora_safetensors *st;
    put(&h, "%s", pre);
    for (i = 0; i < items; i++) put(&h, "%s%s", i ? "," : "", item);
    put(&h, "%s", post);
    f = image(&h, 4, &n);
    g_peak = 0;
    g_log[0] = 0;
    if (molora_safetensors_open_memory(f, n, &d, &st) != want) fail_msg("%s...: %s", pre, g_log);
    molora_safetensors_free(st);
    assert_int_equal(g_cur, 0);
    *file = n;
    free(f); free(h.p);
    return g_peak;
}
static void test_parser_memory(void **state)
{
    static const struct { const char *pre, *item, *post; molora_result r; double bound; const char *what; } c[] = {
        {"[", "0", "]", MOLORA_RESULT_INVALID_JSON, 0.1, "a header [0,0,...]"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":[", "0", "]}}", MOLORA_RESULT_SUCCESS,
         1.5, "an ignored field [0,0,...]"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":[", "{}", "]}}", MOLORA_RESULT_SUCCESS,
         1.5, "an ignored field [{},{},...]"},
        {"{\"t\":{\"dtype\":\"U8\",\"data_offsets\":[0,4],\"shape\":[4,", "1", "]}}", MOLORA_RESULT_SUCCESS, 6.0,
         "a shape [4,1,1,...]"},
    };
    size_t i, f1, f2, p1, p2;
    (void)state;
    for (i = 0; i < sizeof c / sizeof c[0]; i++) {
        p1 = header_peak(500000, c[i].pre, c[i].item, c[i].post, c[i].r, &f1);
        p2 = header_peak(1000000, c[i].pre, c[i].item, c[i].post, c[i].r, &f2);
        printf("figure: %s of %zu / %zu bytes: peak allocation %zu / %zu bytes (%.2f / %.2f per header byte)\n",
               c[i].what, f1, f2, p1, p2, (double)p1 / (double)f1, (double)p2 / (double)f2);
        assert_true((double)p2 < c[i].bound * (double)f2 + 65536);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_linear),
        cmocka_unit_test(test_modules_near_linear),
        cmocka_unit_test(test_scaling_object_near_linear),
        cmocka_unit_test(test_zero_size_proportional),
        cmocka_unit_test(test_parser_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* File tests: the safetensors reader against every check of huggingface/safetensors 0.8
   (its unit-test byte strings and the shapes of its attacks/ scripts, built here), conversion,
   alignment, the JSON limits, sharded models and every adapter layout through the loader and
   molora_forward against float64 expectations written by tests/fixtures/make_fixtures.py.
   Run from the repository root (fixture paths are relative). */
#define _POSIX_C_SOURCE 200809L   /* mkfifo, mkdtemp */
#include "test_util.h"   /* cmocka */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include "molora.h"

/* ---- a counting memory hook: every path must free what it allocates --------------------- */
static long g_live, g_allocs;
static unsigned g_flags;          /* molora_load_desc.flags every desc() gets */
static void *cnt_alloc(size_t n, void *u) { (void)u; g_live++; g_allocs++; return malloc(n); }
static void cnt_free(void *p, void *u) { (void)u; if (p) g_live--; free(p); }
static char g_log[512];
static void cnt_log(void *u, molora_result r, const char *m)
{
    (void)u; (void)r;
    snprintf(g_log, sizeof g_log, "%s", m);
}
static molora_load_desc desc(void)
{
    molora_load_desc d;
    memset(&d, 0, sizeof d);
    d.memory.alloc = cnt_alloc; d.memory.free = cnt_free; d.log = cnt_log;
    d.flags = g_flags;
    return d;
}

static molora_result open_bytes(const void *b, size_t n)
{
    molora_load_desc d = desc();
    molora_safetensors *st = NULL;
    molora_result r;
    g_log[0] = 0;
    r = molora_safetensors_open_memory(b, n, &d, &st);
    if (r == MOLORA_RESULT_SUCCESS) assert_non_null(st); else assert_null(st);
    molora_safetensors_free(st);
    assert_int_equal(g_live, 0);
    return r;
}
#define S(lit) (lit), (sizeof(lit) - 1)

/* builds "8-byte length + header + data" into a static buffer */
static unsigned char g_buf[1 << 16];
static size_t build(const char *header, size_t data_len, uint64_t claimed)
{
    size_t n = strlen(header), i;
    uint64_t h = claimed ? claimed : n;
    for (i = 0; i < 8; i++) g_buf[i] = (unsigned char)(h >> (8 * i));
    memcpy(g_buf + 8, header, n);
    memset(g_buf + 8 + n, 0, data_len);
    return 8 + n + data_len;
}

/* ---- the reference's unit tests ------------------------------------------------------------ */
static void test_reference_valid(void **state)
{
    (void)state;
    assert_int_equal(open_bytes(S("<\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],"
                                  "\"data_offsets\":[0,16]}}"
                                  "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")),
                     MOLORA_RESULT_SUCCESS);
    /* empty shape = scalar, zero-sized tensor, whitespace-padded header, empty file with metadata */
    assert_int_equal(open_bytes(S("8\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[],"
                                  "\"data_offsets\":[0,4]}}\x00\x00\x00\x00")), MOLORA_RESULT_SUCCESS);
    assert_int_equal(open_bytes(S("<\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[2,0],"
                                  "\"data_offsets\":[0, 0]}}")), MOLORA_RESULT_SUCCESS);
    assert_int_equal(open_bytes(S("\x06\x00\x00\x00\x00\x00\x00\x00{}\x0D\x20\x09\x0A")), MOLORA_RESULT_SUCCESS);
    assert_int_equal(open_bytes(S("\x08\x00\x00\x00\x00\x00\x00\x00{}      ")), MOLORA_RESULT_SUCCESS);
    /* 0.8: leading whitespace */
    assert_int_equal(open_bytes(S("\x06\x00\x00\x00\x00\x00\x00\x00\x09\x0A{}\x0D\x20")), MOLORA_RESULT_SUCCESS);
    {
        static const unsigned char ser[] = {40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116,
                                            97, 95,
            95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
            116, 34, 125, 125, 32, 32, 32, 32, 32};
        molora_load_desc d = desc();
        molora_safetensors *st;
        assert_int_equal(molora_safetensors_open_memory(ser, sizeof ser, &d, &st), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_safetensors_n_metadata(st), 1);
        assert_string_equal(molora_safetensors_find_metadata(st, "framework"), "pt");
        assert_null(molora_safetensors_find_metadata(st, "nope"));
        molora_safetensors_free(st);
    }
    {   /* test_serialization's exact bytes: F32 (1, 2, 3) = 0..5 */
        static const unsigned char ser[] = {64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123,
                                            34, 100,
            116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
            58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
            101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
            0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};
        molora_load_desc d = desc();
        molora_safetensors *st;
        molora_tensor_info ti;
        size_t idx;
        float v[6];
        int i;
        assert_int_equal(molora_safetensors_open_memory(ser, sizeof ser, &d, &st), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_safetensors_find(st, "attn.0", &idx), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_safetensors_find(st, "attn.1", &idx), MOLORA_RESULT_TENSOR_NOT_FOUND);
        assert_int_equal(molora_safetensors_tensor_info(st, 0, &ti), MOLORA_RESULT_SUCCESS);
        assert_int_equal(ti.n_dims, 3);
        assert_int_equal(ti.shape[2], 3);
        assert_int_equal(ti.dtype, MOLORA_DTYPE_F32);
        assert_int_equal(molora_safetensors_read_f32(st, 0, v, 6), MOLORA_RESULT_SUCCESS);
        for (i = 0; i < 6; i++) assert_true(v[i] == (float)i);
        molora_safetensors_free(st);
        assert_int_equal(g_live, 0);
    }
}

static void test_reference_errors(void **state)
{
    char h[2048];
    int i;
    size_t n;
    (void)state;
    assert_int_equal(open_bytes("", 0), MOLORA_RESULT_HEADER_TOO_SMALL);
    assert_int_equal(open_bytes(S("\x01\x00\x00\x00\x00\x00\x00")), MOLORA_RESULT_HEADER_TOO_SMALL);
    assert_int_equal(open_bytes(S("<\x00\x00\x00\x00\xff\xff\xff{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],"
                                  "\"data_offsets\":[0,16]}}"
                                  "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")),
                     MOLORA_RESULT_HEADER_TOO_LARGE);
    assert_int_equal(open_bytes(S("<\x00\x00\x00\x00\x00\x00\x00")), MOLORA_RESULT_INVALID_HEADER_LENGTH);
    assert_int_equal(open_bytes(S("\x01\x00\x00\x00\x00\x00\x00\x00\xff")), MOLORA_RESULT_INVALID_UTF8);
    assert_int_equal(open_bytes(S("\x01\x00\x00\x00\x00\x00\x00\x00{")), MOLORA_RESULT_INVALID_JSON);
    assert_int_equal(open_bytes(S("<\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],"
                                  "\"data_offsets\":[0, 4]}}")), MOLORA_RESULT_TENSOR_INVALID_INFO);
    assert_int_equal(open_bytes(S("<\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],"
                                  "\"data_offsets\":[0,16]}}"
                                  "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00extra_bogus_data_for"
                                  "_polyglot_file")), MOLORA_RESULT_INCOMPLETE_BUFFER);
    assert_int_equal(open_bytes(S("<\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],"
                                  "\"data_offsets\":[0,16]}}"
                                  "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")),
                     MOLORA_RESULT_INCOMPLETE_BUFFER);
    assert_int_equal(open_bytes(S("O\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[2,"
                                  "18446744073709551614],\"data_offsets\":[0,16]}}"
                                  "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")),
                     MOLORA_RESULT_SIZE_OVERFLOW);
    assert_int_equal(open_bytes(S("N\x00\x00\x00\x00\x00\x00\x00{\"test\":{\"dtype\":\"I32\",\"shape\":[2,"
                                  "9223372036854775807],\"data_offsets\":[0,16]}}"
                                  "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")),
                     MOLORA_RESULT_SIZE_OVERFLOW);
    /* test_json_attack: ten tensors all at [0, 16] */
    n = (size_t)sprintf(h, "{");
    for (i = 0; i < 10; i++)
        n += (size_t)sprintf(h + n, "%s\"weight_%d\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}",
                             i ? "," : "", i);
    sprintf(h + n, "}");
    n = build(h, 16, 0);
    assert_int_equal(open_bytes(g_buf, n), MOLORA_RESULT_INVALID_OFFSET);
    assert_non_null(strstr(g_log, "weight_"));
    /* MisalignedSlice: an odd number of F4 values */
    n = build("{\"t\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, 0);
    assert_int_equal(open_bytes(g_buf, n), MOLORA_RESULT_TENSOR_INVALID_INFO);
    n = build("{\"t\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[0,2]}}", 2, 0);
    assert_int_equal(open_bytes(g_buf, n), MOLORA_RESULT_SUCCESS);
}

/* ---- attacks/ shapes and more -------------------------------------------------------------- */
/* one hostile file per row: build(header, data_len, claimed) must open to `want`, and where
   `log` is set the logger's message must name it */
typedef struct attack {
    const char *name, *header;
    size_t data_len;
    uint64_t claimed;            /* the header length written in the first 8 bytes (0: the true one) */
    molora_result want;
    const char *log;
} attack;
#define TF "{\"a\":{\"dtype\":\"F32\","   /* the start of a header whose one tensor is "a" */
static const attack ATTACKS[] = {
    /* attempt 1: a valid 2x2 F32 file whose header length says 1000 */
    {"header length past the file", "{\"weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
     16, 1000, MOLORA_RESULT_INVALID_HEADER_LENGTH, NULL},
    {"header length 2^63", "{}", 0, (uint64_t)1 << 63, MOLORA_RESULT_HEADER_TOO_LARGE, NULL},
    {"header length just over 100 MB", "{}", 0, 100000001, MOLORA_RESULT_HEADER_TOO_LARGE, NULL},
    /* overlapping offsets */
    {"overlapping offsets", TF "\"shape\":[2],\"data_offsets\":[0,8]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, 0, MOLORA_RESULT_INVALID_OFFSET, "\"b\""},
    /* gap, not starting at 0, end before begin, beyond the file */
    {"data not starting at 0", TF "\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0, MOLORA_RESULT_INVALID_OFFSET, NULL},
    {"end before begin", TF "\"shape\":[0],\"data_offsets\":[8,4]}}", 8, 0, MOLORA_RESULT_INVALID_OFFSET, NULL},
    {"data beyond the file", TF "\"shape\":[4],\"data_offsets\":[0,16]}}", 8, 0, MOLORA_RESULT_INCOMPLETE_BUFFER, NULL},
    /* offsets that overflow 64 bits, or sit at the top of the range */
    {"offset 2^64", TF "\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}", 4, 0,
     MOLORA_RESULT_INVALID_JSON, NULL},
    {"U8 of 2^64-1 elements", "{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615],"
                              "\"data_offsets\":[0,18446744073709551615]}}",
     4, 0, MOLORA_RESULT_SIZE_OVERFLOW, NULL},   /* bits = n * 8 overflows, as upstream */
    {"offset 2^64-1 for 8 bytes", TF "\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}", 8, 0,
     MOLORA_RESULT_TENSOR_INVALID_INFO, NULL},
    {"shape of 2^62 floats", TF "\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0, 0,
     MOLORA_RESULT_SIZE_OVERFLOW, NULL},
    /* field types and dtypes */
    {"dtype F33", "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0,
     MOLORA_RESULT_INVALID_JSON, NULL},
    {"shape of a float", TF "\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, 0, MOLORA_RESULT_INVALID_JSON, NULL},
    {"negative shape", TF "\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, 0, MOLORA_RESULT_INVALID_JSON, NULL},
    {"three offsets", TF "\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, 0, MOLORA_RESULT_INVALID_JSON, NULL},
    {"no offsets", TF "\"shape\":[1]}}", 4, 0, MOLORA_RESULT_INVALID_JSON, NULL},
    {"an extra field", TF "\"shape\":[1],\"data_offsets\":[0,4],\"extra\":{\"ignored\":[1,2]}}}", 4, 0,
     MOLORA_RESULT_SUCCESS, NULL},
    {"metadata value not a string", "{\"__metadata__\":{\"k\":1}}", 0, 0, MOLORA_RESULT_INVALID_JSON, NULL},
    {"metadata null", "{\"__metadata__\":null}", 0, 0, MOLORA_RESULT_SUCCESS, NULL},
    {"an array, not an object", "[]", 0, 0, MOLORA_RESULT_INVALID_JSON, NULL},
    {"text after the object", "{} x", 0, 0, MOLORA_RESULT_INVALID_JSON, NULL},
    {"a lone surrogate escape", "{\"a\\ud800\":1}", 0, 0, MOLORA_RESULT_INVALID_JSON, NULL},
    /* duplicate names, rejected by name (also when written with an escape) */
    {"a name twice, once escaped", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                   "\"\\u0077\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, 0, MOLORA_RESULT_DUPLICATE_NAME, "\"w\""},
    /* overlong UTF-8, surrogate in UTF-8 */
    {"overlong UTF-8", "{\"\xc0\xaf\":1}", 0, 0, MOLORA_RESULT_INVALID_UTF8, NULL},
    {"a surrogate in UTF-8", "{\"\xed\xa0\x80\":1}", 0, 0, MOLORA_RESULT_INVALID_UTF8, NULL},
};
#undef TF
static void test_attacks(void **state)
{
    size_t i;
    (void)state;
    for (i = 0; i < sizeof ATTACKS / sizeof ATTACKS[0]; i++) {
        const attack *at = &ATTACKS[i];
        molora_result r = open_bytes(g_buf, build(at->header, at->data_len, at->claimed));
        if (r != at->want)
            fail_msg("%s: %s, want %s (log: %s)", at->name, molora_result_string(r), molora_result_string(at->want),
                     g_log);
        if (at->log && !strstr(g_log, at->log)) fail_msg("%s: the log '%s' lacks %s", at->name, g_log, at->log);
    }
}

/* a key given twice in any object, compared after decoding escapes, at any object size */
static void test_duplicate_keys(void **state)
{
    static const char *const headers[] = {
        "{\"__metadata__\":{\"a\":\"1\",\"\\u0061\":\"2\"}}",
        "{\"t\":{\"dtype\":\"F32\",\"d\\u0074ype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":[{\"k\":1,\"k\":2}]}}",
        "{\"__metadata__\":null,\"__metad\\u0061ta__\":null}",
    };
    char h[8192], cfg[256];
    size_t n, i;
    molora_load_desc d = desc();
    molora_safetensors *st;
    molora_adapter *a;
    (void)state;
    for (i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        n = build(headers[i], strstr(headers[i], "data_offsets") ? 4 : 0, 0);
        if (open_bytes(g_buf, n) != MOLORA_RESULT_INVALID_JSON) fail_msg("header %zu: %s", i, g_log);
        assert_non_null(strstr(g_log, "appears twice"));
    }
    /* 100 metadata keys, the twin of the first one last (v0.1 skipped objects over 64 members) */
    n = (size_t)sprintf(h, "{\"__metadata__\":{");
    for (i = 0; i < 100; i++) n += (size_t)sprintf(h + n, "%s\"k%zu\":\"v\"", i ? "," : "", i % 99);
    strcpy(h + n, "}}");
    n = build(h, 0, 0);
    assert_int_equal(open_bytes(g_buf, n), MOLORA_RESULT_INVALID_JSON);
    assert_non_null(strstr(g_log, "\"k0\""));
    /* adapter_config.json: Python keeps the last value, molora refuses */
    n = build("{\"m.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]},\"m.lora_B.weight\":"
              "{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[4,8]}}", 8, 0);
    assert_int_equal(molora_safetensors_open_memory(g_buf, n, &d, &st), MOLORA_RESULT_SUCCESS);
    snprintf(cfg, sizeof cfg, "{\"peft_type\":\"LORA\",\"r\":1,\"lora_alpha\":4,\"lora_\\u0061lpha\":400}");
    g_log[0] = 0;
    assert_int_equal(molora_adapter_open_memory(cfg, strlen(cfg), st, &d, &a), MOLORA_RESULT_INVALID_JSON);
    assert_non_null(strstr(g_log, "\"lora_alpha\" appears twice"));
    snprintf(cfg, sizeof cfg, "{\"peft_type\":\"LORA\",\"r\":1,\"lora_alpha\":4,\"rank_pattern\":{\"m\":1,"
                              "\"\\u006d\":2}}");
    assert_int_equal(molora_adapter_open_memory(cfg, strlen(cfg), st, &d, &a), MOLORA_RESULT_INVALID_JSON);
    snprintf(cfg, sizeof cfg, "{\"peft_type\":\"LORA\",\"r\":1,\"lora_alpha\":4,\"lora_alpha_\":400}");
    assert_int_equal(molora_adapter_open_memory(cfg, strlen(cfg), st, &d, &a), MOLORA_RESULT_SUCCESS);
    molora_adapter_free(a);
    molora_safetensors_free(st);
    assert_int_equal(g_live, 0);
}

static void test_json_depth(void **state)
{
    char h[4096];
    size_t n;
    int d;
    (void)state;
    for (d = 100; d <= 200; d += 100) {
        int i;
        n = (size_t)sprintf(h, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":");
        for (i = 0; i < d; i++) h[n++] = '[';
        for (i = 0; i < d; i++) h[n++] = ']';
        strcpy(h + n, "}}");
        n = build(h, 4, 0);
        assert_int_equal(open_bytes(g_buf, n), d == 100 ? MOLORA_RESULT_SUCCESS : MOLORA_RESULT_INVALID_JSON);
    }
}

/* every prefix of a valid file is rejected, never crashes, never leaks */
static void test_truncation(void **state)
{
    size_t n, k;
    static unsigned char copy[4096];
    (void)state;
    n = build("{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
              "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[24,30]}}", 30, 0);
    memcpy(copy, g_buf, n);
    assert_int_equal(open_bytes(copy, n), MOLORA_RESULT_SUCCESS);
    for (k = 0; k < n; k++) {   /* the exact code for each cut: length word, header, data */
        unsigned char *t = (unsigned char *)malloc(k + 1);
        molora_result want = k < 8 ? MOLORA_RESULT_HEADER_TOO_SMALL
                           : k < n - 30 ? MOLORA_RESULT_INVALID_HEADER_LENGTH : MOLORA_RESULT_INCOMPLETE_BUFFER;
        memcpy(t, copy, k);
        if (open_bytes(t, k) != want) fail_msg("prefix of %zu bytes: %s", k, g_log);
        free(t);
    }
}

/* a header length 1..8 bytes short of (or past) its real end, each at its exact code */
static void test_header_length_boundaries(void **state)
{
    static const char tight[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    static const char padded[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}        ";
    size_t n, j, len;
    (void)state;
    len = strlen(padded);
    n = build(padded, 4, 0);
    assert_int_equal(open_bytes(g_buf, n), MOLORA_RESULT_SUCCESS);
    for (j = 1; j <= 8; j++) {
        /* padded: the cut takes only spaces, which become data: the tensors no longer cover it */
        n = build(padded, 4, len - j);
        if (open_bytes(g_buf, n) != MOLORA_RESULT_INCOMPLETE_BUFFER) fail_msg("padded, %zu short: %s", j, g_log);
        /* tight: the cut takes the JSON's end */
        n = build(tight, 4, strlen(tight) - j);
        if (open_bytes(g_buf, n) != MOLORA_RESULT_INVALID_JSON) fail_msg("tight, %zu short: %s", j, g_log);
        /* past the end: into the 4 data bytes (zeros: not JSON), then past the file */
        n = build(tight, 4, strlen(tight) + j);
        if (open_bytes(g_buf, n) != (j <= 4 ? MOLORA_RESULT_INVALID_JSON : MOLORA_RESULT_INVALID_HEADER_LENGTH))
            fail_msg("tight, %zu long: %s", j, g_log);
    }
}

/* UTF-8 in the header at each edge of the ranges (Rust str::from_utf8, as the reference) */
static void test_utf8_edges(void **state)
{
    static const struct { const char *bytes; int ok; } c[] = {
        {"\xf4\x8f\xbf\xbf", 1}, {"\xf4\x90\x80\x80", 0}, {"\xf0\x90\x80\x80", 1}, {"\xf0\x8f\xbf\xbf", 0},
        {"\xf5\x80\x80\x80", 0}, {"\xf8\x88\x80\x80\x80", 0}, {"\xfe", 0}, {"\xff", 0},
        {"\xc0\xaf", 0}, {"\xc1\xbf", 0}, {"\xc2\x80", 1}, {"\xdf\xbf", 1},
        {"\xe0\x80\x80", 0}, {"\xe0\x9f\xbf", 0}, {"\xe0\xa0\x80", 1},
        {"\xed\x9f\xbf", 1}, {"\xed\xa0\x80", 0}, {"\xed\xbf\xbf", 0}, {"\xee\x80\x80", 1},
        {"\x80", 0}, {"\xbf", 0}, {"\xe2\x82", 0}, {"\xf0\x9f\x98", 0}, {"\xc3", 0}, {"\xe2\x28\xa1", 0},
    };
    char h[64];
    size_t i, n;
    (void)state;
    for (i = 0; i < sizeof c / sizeof c[0]; i++) {
        snprintf(h, sizeof h, "{\"__metadata__\":{\"k\":\"%s\"}}", c[i].bytes);
        n = build(h, 0, 0);
        if (open_bytes(g_buf, n) != (c[i].ok ? MOLORA_RESULT_SUCCESS : MOLORA_RESULT_INVALID_UTF8))
            fail_msg("case %zu: %s", i, g_log);
    }
    /* a sequence cut by the end of the header itself */
    n = build("{}\xe2\x82", 0, 0);
    assert_int_equal(open_bytes(g_buf, n), MOLORA_RESULT_INVALID_UTF8);
}

/* every dtype safetensors 0.8 accepts opens (sizes in bits as its Dtype::bitsize, checked with
   the 0.8 package); only F32 / F16 / BF16 read as float */
static void test_every_dtype(void **state)
{
    static const struct { const char *name; int bits; } dt[] = {
        {"BOOL", 8}, {"F4", 4}, {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8}, {"I8", 8}, {"F8_E5M2", 8},
        {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"I16", 16}, {"U16", 16},
        {"F16", 16}, {"BF16", 16}, {"I32", 32}, {"U32", 32}, {"F32", 32}, {"C64", 64}, {"F64", 64},
        {"I64", 64}, {"U64", 64}};
    char h[4096], name[32];
    size_t n = 0, off = 0, idx, i;
    molora_load_desc d = desc();
    molora_safetensors *st;
    (void)state;
    assert_int_equal(sizeof dt / sizeof dt[0], MOLORA_DTYPE_COUNT);
    n += (size_t)sprintf(h + n, "{");
    for (i = 0; i < sizeof dt / sizeof dt[0]; i++) {
        int count = dt[i].bits < 8 ? 8 : 2;
        size_t bytes = (size_t)(dt[i].bits * count / 8);
        n += (size_t)sprintf(h + n, "%s\"t_%s\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                             i ? "," : "", dt[i].name, dt[i].name, count, off, off + bytes);
        off += bytes;
    }
    strcpy(h + n, "}");
    n = build(h, off, 0);
    g_log[0] = 0;
    if (molora_safetensors_open_memory(g_buf, n, &d, &st) != MOLORA_RESULT_SUCCESS) fail_msg("%s", g_log);
    assert_int_equal(molora_safetensors_n_tensors(st), MOLORA_DTYPE_COUNT);
    for (i = 0; i < sizeof dt / sizeof dt[0]; i++) {
        molora_tensor_info ti;
        float v[8];
        int fl = !strcmp(dt[i].name, "F32") || !strcmp(dt[i].name, "F16") || !strcmp(dt[i].name, "BF16");
        snprintf(name, sizeof name, "t_%s", dt[i].name);
        assert_int_equal(molora_safetensors_find(st, name, &idx), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_safetensors_tensor_info(st, idx, &ti), MOLORA_RESULT_SUCCESS);
        assert_string_equal(molora_dtype_name(ti.dtype), dt[i].name);
        assert_int_equal(ti.n_bytes, (size_t)(dt[i].bits * (dt[i].bits < 8 ? 8 : 2) / 8));
        g_log[0] = 0;
        assert_int_equal(molora_safetensors_read_f32(st, idx, v, (size_t)ti.n_elements),
                         fl ? MOLORA_RESULT_SUCCESS : MOLORA_RESULT_UNSUPPORTED_DTYPE);
        if (!fl) assert_non_null(strstr(g_log, name));
    }
    molora_safetensors_free(st);
    /* an adapter loads while a tensor it does not use is F8_E4M3FNUZ; used, it is refused by name */
    {
        static const char cfg[] = "{\"peft_type\":\"LORA\",\"r\":1,\"lora_alpha\":1}";
        static const char *const hdr[2] = {
            "{\"m.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},\"m.lora_B.weight\":"
            "{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[8,16]},"
            "\"m.scale\":{\"dtype\":\"F8_E4M3FNUZ\",\"shape\":[2],\"data_offsets\":[16,18]}}",
            "{\"m.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},\"m.lora_B.weight\":"
            "{\"dtype\":\"F8_E5M2FNUZ\",\"shape\":[2,1],\"data_offsets\":[8,10]}}"};
        int k;
        for (k = 0; k < 2; k++) {
            molora_adapter *a;
            molora_model_desc md;
            molora_model *m;
            n = build(hdr[k], k ? 10 : 18, 0);
            assert_int_equal(molora_safetensors_open_memory(g_buf, n, &d, &st), MOLORA_RESULT_SUCCESS);
            g_log[0] = 0;
            assert_int_equal(molora_adapter_open_memory(cfg, sizeof cfg - 1, st, &d, &a),
                             k ? MOLORA_RESULT_UNSUPPORTED_DTYPE : MOLORA_RESULT_SUCCESS);
            if (!k) {
                assert_int_equal(molora_adapter_n_ignored(a), 1);
                assert_string_equal(molora_adapter_ignored_name(a, 0), "m.scale");
                molora_adapter_model_desc(a, &md);
                assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
                molora_model_free(m);
                molora_adapter_free(a);
            } else assert_non_null(strstr(g_log, "m.lora_B.weight"));
            molora_safetensors_free(st);
        }
    }
    assert_int_equal(g_live, 0);
}

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static void test_conversion(void **state)
{
    /* F16: 1, -2, smallest subnormal, largest subnormal, +Inf, -Inf, NaN, -0, 65504 */
    static const uint16_t h16[] = {0x3C00, 0xC000, 0x0001, 0x03FF, 0x7C00, 0xFC00, 0x7E00, 0x8000, 0x7BFF};
    /* BF16: 1, subnormal 0x0001, Inf, NaN, -0 */
    static const uint16_t b16[] = {0x3F80, 0x0001, 0x7F80, 0x7FC0, 0x8000};
    char hdr[256];
    unsigned char *buf;
    size_t n, i, idx;
    float v[9];
    molora_load_desc d = desc();
    molora_safetensors *st;
    const float *p;
    (void)state;
    n = build("{\"h\":{\"dtype\":\"F16\",\"shape\":[9],\"data_offsets\":[0,18]},\"b\":{\"dtype\":\"BF16\","
              "\"shape\":[5],\"data_offsets\":[18,28]},\"i\":{\"dtype\":\"I32\",\"shape\":[1],"
              "\"data_offsets\":[28,32]}}", 32, 0);
    for (i = 0; i < 9; i++) {
        g_buf[n - 32 + 2 * i] = (unsigned char)h16[i]; g_buf[n - 32 + 2 * i + 1] = (unsigned char)(h16[i] >> 8);
    }
    for (i = 0; i < 5; i++) {
        g_buf[n - 14 + 2 * i] = (unsigned char)b16[i]; g_buf[n - 14 + 2 * i + 1] = (unsigned char)(b16[i] >> 8);
    }
    assert_int_equal(molora_safetensors_open_memory(g_buf, n, &d, &st), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_safetensors_find(st, "h", &idx), 0);
    assert_int_equal(molora_safetensors_read_f32(st, idx, v, 9), MOLORA_RESULT_SUCCESS);
    assert_true(v[0] == 1.0f && v[1] == -2.0f);
    assert_true(v[2] == ldexpf(1.0f, -24) && v[3] == 1023.0f * ldexpf(1.0f, -24));
    assert_true(isinf(v[4]) && v[4] > 0 && isinf(v[5]) && v[5] < 0 && isnan(v[6]));
    assert_true(f2u(v[7]) == 0x80000000u && v[8] == 65504.0f);
    assert_int_equal(molora_safetensors_read_f32(st, idx, v, 8), MOLORA_RESULT_INVALID_SHAPE);
    assert_int_equal(molora_safetensors_find(st, "b", &idx), 0);
    assert_int_equal(molora_safetensors_tensor_f32(st, idx, &p), MOLORA_RESULT_SUCCESS);
    assert_true(p[0] == 1.0f && f2u(p[1]) == 0x00010000u && isinf(p[2]) && isnan(p[3]) && f2u(p[4]) == 0x80000000u);
    assert_int_equal(molora_safetensors_find(st, "i", &idx), 0);
    g_log[0] = 0;
    assert_int_equal(molora_safetensors_tensor_f32(st, idx, &p), MOLORA_RESULT_UNSUPPORTED_DTYPE);
    assert_non_null(strstr(g_log, "\"i\""));
    assert_int_equal(molora_safetensors_read_f32(st, idx, v, 1), MOLORA_RESULT_UNSUPPORTED_DTYPE);
    molora_safetensors_free(st);
    assert_int_equal(g_live, 0);

    /* F32 borrowed when aligned, copied when not */
    buf = (unsigned char *)malloc(256);
    for (i = 0; i < 2; i++) {
        unsigned char *b = buf + 8 + i;     /* 8-aligned + header of 16 bytes -> data aligned for i = 0 */
        float want[2] = {1.5f, -3.25f};
        strcpy(hdr, "{\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}    ");
        n = build(hdr, 8, 0);
        memcpy(g_buf + n - 8, want, 8);
        memcpy(b, g_buf, n);
        assert_int_equal(molora_safetensors_open_memory(b, n, &d, &st), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_safetensors_tensor_f32(st, 0, &p), MOLORA_RESULT_SUCCESS);
        assert_true(p[0] == 1.5f && p[1] == -3.25f);
        if (((uintptr_t)(b + n - 8) & 3) == 0) assert_ptr_equal(p, b + n - 8);
        else assert_ptr_not_equal((const void *)p, (const void *)(b + n - 8));
        molora_safetensors_free(st);
    }
    free(buf);
    assert_int_equal(g_live, 0);
}

/* ---- sharded model ----------------------------------------------------------------------- */
static void test_sharded(void **state)
{
    static const char *const paths[] = {"tests/fixtures/base", "tests/fixtures/base/model.safetensors.index.json"};
    int k;
    (void)state;
    for (k = 0; k < 2; k++) {
        molora_load_desc d = desc();
        molora_safetensors *st;
        molora_tensor_info ti;
        size_t idx;
        assert_int_equal(molora_safetensors_open(paths[k], &d, &st), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_safetensors_n_tensors(st), 2);
        assert_int_equal(molora_safetensors_find(st, "model.layers.0.self_attn.k_proj.bias", &idx), 0);
        molora_safetensors_tensor_info(st, idx, &ti);
        assert_int_equal(ti.shard, 1);
        assert_int_equal(molora_safetensors_n_metadata(st), 2);
        molora_safetensors_free(st);
        assert_int_equal(g_live, 0);
    }
    {
        molora_load_desc d = desc();
        molora_safetensors *st;
        assert_int_equal(molora_safetensors_open("tests/fixtures/nope", &d, &st), MOLORA_RESULT_IO_ERROR);
        assert_int_equal(molora_safetensors_open("tests/fixtures/peft/adapter_config.json", &d, &st),
                         MOLORA_RESULT_INVALID_JSON);
        assert_int_equal(g_live, 0);
    }
}

/* ---- inputs that are not regular files: refused at open, without blocking ---------------- */
static void write_file(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}
static void expect_load(const char *dir, molora_result want, const char *needle)
{
    molora_load_desc d = desc();
    molora_adapter *a;
    g_log[0] = 0;
    assert_int_equal(molora_adapter_open(dir, &d, &a), want);
    if (!strstr(g_log, needle)) fail_msg("%s: log \"%s\" does not say %s", dir, g_log, needle);
    assert_int_equal(g_live, 0);
}
static void expect_open(const char *path, molora_result want, const char *needle)
{
    molora_load_desc d = desc();
    molora_safetensors *st;
    g_log[0] = 0;
    assert_int_equal(molora_safetensors_open(path, &d, &st), want);
    if (!strstr(g_log, needle)) fail_msg("%s: log \"%s\" does not say %s", path, g_log, needle);
    assert_int_equal(g_live, 0);
}
static void test_not_regular(void **state)
{
    static const char cfg[] = "{\"peft_type\":\"LORA\",\"r\":1,\"lora_alpha\":1}";
    char dir[] = "/tmp/molora_files_XXXXXX", p[256], q[256];
    (void)state;
    assert_non_null(mkdtemp(dir));
    /* FIFO as adapter_config.json (an open() without O_NONBLOCK would hang here) */
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    assert_int_equal(mkfifo(p, 0600), 0);
    expect_load(dir, MOLORA_RESULT_IO_ERROR, "adapter_config.json: is a FIFO");
    unlink(p);
    /* a directory as adapter_config.json */
    assert_int_equal(mkdir(p, 0700), 0);
    expect_load(dir, MOLORA_RESULT_IO_ERROR, "adapter_config.json: is a directory");
    rmdir(p);
    write_file(p, cfg, sizeof cfg - 1);
    /* adapter_model.bin alone names the converter */
    snprintf(q, sizeof q, "%s/adapter_model.bin", dir);
    write_file(q, "PK", 2);
    expect_load(dir, MOLORA_RESULT_IO_ERROR, "tools/convert_pickle.py");
    unlink(q);
    /* FIFO as adapter_model.safetensors, as a model file, as an index, /dev/null as a model */
    snprintf(q, sizeof q, "%s/adapter_model.safetensors", dir);
    assert_int_equal(mkfifo(q, 0600), 0);
    expect_load(dir, MOLORA_RESULT_IO_ERROR, "adapter_model.safetensors: is a FIFO");
    expect_open(q, MOLORA_RESULT_IO_ERROR, "is a FIFO");
    expect_open("/dev/null", MOLORA_RESULT_IO_ERROR, "is a device");
    unlink(q);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    assert_int_equal(mkfifo(p, 0600), 0);
    expect_open(dir, MOLORA_RESULT_IO_ERROR, "index.json: is a FIFO");
    expect_open(p, MOLORA_RESULT_IO_ERROR, "index.json: is a FIFO");
    unlink(p);
    assert_int_equal(rmdir(dir), 0);
}

/* the same refusals when files are read instead of mapped */
static void test_not_regular_read(void **state)
{
    g_flags = MOLORA_LOAD_READ;
    test_not_regular(state);
    g_flags = 0;
}

/* ---- MOLORA_LOAD_READ: the same tensors as the mapping, in memory from the hook ----------- */
static void read_whole(const char *path, unsigned char **b, size_t *n)
{
    FILE *f = fopen(path, "rb");
    long len;
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    len = ftell(f);
    assert_true(len >= 0);
    rewind(f);
    *n = (size_t)len;
    *b = (unsigned char *)malloc(*n + 1);
    assert_non_null(*b);
    assert_int_equal(fread(*b, 1, *n, f), *n);
    fclose(f);
}
static void copy_file(const char *from, const char *to)
{
    unsigned char *b;
    size_t n;
    read_whole(from, &b, &n);
    write_file(to, b, n);
    free(b);
}
/* opens path with flags; *allocs: hook allocations the open made */
static molora_safetensors *open_flags(const char *path, unsigned flags, long *allocs)
{
    molora_load_desc d = desc();
    molora_safetensors *st = NULL;
    d.flags = flags;
    g_allocs = 0;
    assert_int_equal(molora_safetensors_open(path, &d, &st), MOLORA_RESULT_SUCCESS);
    *allocs = g_allocs;
    return st;
}
static void assert_same_tensors(const molora_safetensors *a, const molora_safetensors *b)
{
    size_t i, n = molora_safetensors_n_tensors(a);
    int k;
    assert_true(n > 0);
    assert_int_equal(molora_safetensors_n_tensors(b), n);
    for (i = 0; i < n; i++) {
        molora_tensor_info x, y;
        assert_int_equal(molora_safetensors_tensor_info(a, i, &x), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_safetensors_tensor_info(b, i, &y), MOLORA_RESULT_SUCCESS);
        assert_string_equal(x.name, y.name);
        assert_int_equal(x.dtype, y.dtype);
        assert_int_equal(x.n_dims, y.n_dims);
        for (k = 0; k < x.n_dims; k++) assert_int_equal(x.shape[k], y.shape[k]);
        assert_int_equal(x.shard, y.shard);
        assert_int_equal(x.n_bytes, y.n_bytes);
        assert_true(x.data != y.data || x.n_bytes == 0);
        assert_memory_equal(x.data, y.data, x.n_bytes);
    }
    assert_int_equal(molora_safetensors_n_metadata(b), molora_safetensors_n_metadata(a));
}
static void test_load_read_same_tensors(void **state)
{
    char dir[] = "/tmp/molora_read_XXXXXX", p[256];
    static const char *const shards[] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    struct { const char *path; long n_files; } c[4];
    int i;
    (void)state;
    assert_non_null(mkdtemp(dir));
    for (i = 0; i < 2; i++) {   /* a directory of shards without an index */
        char from[256];
        snprintf(from, sizeof from, "tests/fixtures/base/%s", shards[i]);
        snprintf(p, sizeof p, "%s/%s", dir, shards[i]);
        copy_file(from, p);
    }
    c[0].path = "tests/fixtures/peft/adapter_model.safetensors"; c[0].n_files = 1;
    c[1].path = dir; c[1].n_files = 2;
    c[2].path = "tests/fixtures/base/model.safetensors.index.json"; c[2].n_files = 2;
    c[3].path = "tests/fixtures/base"; c[3].n_files = 2;
    for (i = 0; i < 4; i++) {
        long mapped, read;
        molora_safetensors *a = open_flags(c[i].path, 0, &mapped);
        molora_safetensors *b = open_flags(c[i].path, MOLORA_LOAD_READ, &read);
        assert_same_tensors(a, b);
        assert_int_equal(read, mapped + c[i].n_files);   /* one hook buffer per file read */
        molora_safetensors_free(a);
        molora_safetensors_free(b);
        assert_int_equal(g_live, 0);
    }
    for (i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, shards[i]);
        assert_int_equal(unlink(p), 0);
    }
    assert_int_equal(rmdir(dir), 0);
}
static void assert_same_floats(const float *a, const float *b, size_t n)
{
    if (!a || !b) { assert_true(a == b); return; }
    assert_memory_equal(a, b, n * sizeof(float));
}
static size_t type_size(molora_type t) { return t == MOLORA_TYPE_F32 ? 4 : 2; }
static void assert_same_layer(const molora_layer_desc *x, const molora_layer_desc *y)
{
    int e;
    assert_int_equal(x->d_in, y->d_in);
    assert_int_equal(x->d_out, y->d_out);
    assert_int_equal(x->n_experts, y->n_experts);
    assert_int_equal(x->routing, y->routing);
    for (e = 0; e < x->n_experts; e++) {
        const molora_expert_desc *a = &x->experts[e], *b = &y->experts[e];
        assert_int_equal(a->rank, b->rank);
        assert_int_equal(a->A_type, b->A_type);
        assert_int_equal(a->B_type, b->B_type);
        assert_true(a->scaling == b->scaling && a->lora_alpha == b->lora_alpha);
        assert_memory_equal(a->A, b->A, (size_t)a->rank * (size_t)x->d_in * type_size(a->A_type));
        assert_memory_equal(a->B, b->B, (size_t)x->d_out * (size_t)a->rank * type_size(a->B_type));
    }
    assert_same_floats(x->gate_weight, y->gate_weight, (size_t)x->n_experts * (size_t)x->d_in);
    assert_same_floats(x->threshold_weight, y->threshold_weight, (size_t)x->d_in);
    assert_true(x->threshold_bias == y->threshold_bias);
}
static void test_load_read_same_adapters(void **state)
{
    static const char *const dirs[] = {"tests/fixtures/peft", "tests/fixtures/adamole", "tests/fixtures/mole",
                                       "tests/fixtures/mola", "tests/fixtures/molora", "tests/fixtures/gpt2/adapter"};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        molora_load_desc d = desc();
        molora_adapter *a, *b;
        molora_model_desc ma, mb;
        long mapped;
        int l;
        g_allocs = 0;
        assert_int_equal(molora_adapter_open(dirs[i], &d, &a), MOLORA_RESULT_SUCCESS);
        mapped = g_allocs;
        d.flags = MOLORA_LOAD_READ;
        g_allocs = 0;
        assert_int_equal(molora_adapter_open(dirs[i], &d, &b), MOLORA_RESULT_SUCCESS);
        assert_int_equal(g_allocs, mapped + 1);   /* adapter_model.safetensors read into the hook's memory */
        assert_int_equal(molora_adapter_layout(a), molora_adapter_layout(b));
        assert_int_equal(molora_adapter_model_desc(a, &ma), MOLORA_RESULT_SUCCESS);
        assert_int_equal(molora_adapter_model_desc(b, &mb), MOLORA_RESULT_SUCCESS);
        assert_int_equal(ma.n_layers, mb.n_layers);
        assert_true(ma.n_layers > 0);
        for (l = 0; l < ma.n_layers; l++) {
            assert_string_equal(molora_adapter_layer_name(a, l), molora_adapter_layer_name(b, l));
            assert_same_layer(&ma.layers[l], &mb.layers[l]);
        }
        molora_adapter_free(a);
        molora_adapter_free(b);
        assert_int_equal(g_live, 0);
    }
}

/* after an open with MOLORA_LOAD_READ the file may be overwritten in place, truncated and deleted */
static void test_load_read_file_may_change(void **state)
{
    char dir[] = "/tmp/molora_read_XXXXXX", p[256];
    unsigned char *orig, *zero;
    size_t n;
    molora_safetensors *st;
    long allocs;
    FILE *f;
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/m.safetensors", dir);
    copy_file("tests/fixtures/peft/adapter_model.safetensors", p);
    read_whole(p, &orig, &n);
    st = open_flags(p, MOLORA_LOAD_READ, &allocs);
    zero = (unsigned char *)calloc(n, 1);
    assert_non_null(zero);
    assert_non_null(f = fopen(p, "r+b"));       /* in place: a private mapping would see this */
    assert_int_equal(fwrite(zero, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(truncate(p, 0), 0);        /* a mapping would now fault (SIGBUS) */
    assert_int_equal(unlink(p), 0);
    {   /* the tensors still hold the bytes the file had at open */
        molora_load_desc d = desc();
        molora_safetensors *old;
        assert_int_equal(molora_safetensors_open_memory(orig, n, &d, &old), MOLORA_RESULT_SUCCESS);
        assert_same_tensors(old, st);
        molora_safetensors_free(old);
    }
    molora_safetensors_free(st);
    assert_int_equal(g_live, 0);
    free(zero);
    free(orig);
    assert_int_equal(rmdir(dir), 0);
}

/* a file that shrinks or grows between fstat and the read is IO_ERROR naming it: the memory
   hook changes the file when molora asks for the buffer it is about to read it into */
static const char *g_change_path;
static size_t g_change_at;
static long g_change_to;
static void *changing_alloc(size_t n, void *u)
{
    if (n == g_change_at) assert_int_equal(truncate(g_change_path, g_change_to), 0);
    return cnt_alloc(n, u);
}
static void test_load_read_size_changes(void **state)
{
    char dir[] = "/tmp/molora_read_XXXXXX", p[256];
    unsigned char *orig;
    size_t n;
    long to[2];
    int k;
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/m.safetensors", dir);
    read_whole("tests/fixtures/peft/adapter_model.safetensors", &orig, &n);
    to[0] = (long)n - 1; to[1] = (long)n + 1;
    for (k = 0; k < 2; k++) {
        molora_load_desc d = desc();
        molora_safetensors *st;
        write_file(p, orig, n);
        d.memory.alloc = changing_alloc;
        d.flags = MOLORA_LOAD_READ;
        g_change_path = p; g_change_at = n + 1; g_change_to = to[k];
        g_log[0] = 0;
        assert_int_equal(molora_safetensors_open(p, &d, &st), MOLORA_RESULT_IO_ERROR);
        assert_null(st);
        if (!strstr(g_log, p) || !strstr(g_log, "changed size while read")) fail_msg("log \"%s\"", g_log);
        assert_int_equal(g_live, 0);
    }
    g_change_at = 0;
    assert_int_equal(unlink(p), 0);
    free(orig);
    assert_int_equal(rmdir(dir), 0);
}

/* flags other than MOLORA_LOAD_READ are refused by every loader */
static void test_load_flags_unknown(void **state)
{
    molora_load_desc d = desc();
    molora_safetensors *st;
    molora_adapter *a;
    static const unsigned char empty[] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    (void)state;
    d.flags = 2;
    assert_int_equal(molora_safetensors_open("tests/fixtures/peft/adapter_model.safetensors", &d, &st),
                     MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_safetensors_open_memory(empty, sizeof empty, &d, &st), MOLORA_RESULT_INVALID_ARGUMENT);
    assert_int_equal(molora_adapter_open("tests/fixtures/peft", &d, &a), MOLORA_RESULT_INVALID_ARGUMENT);
    d.flags = MOLORA_LOAD_READ;
    assert_int_equal(molora_safetensors_open_memory(empty, sizeof empty, &d, &st), MOLORA_RESULT_SUCCESS);
    molora_safetensors_free(st);
    assert_int_equal(g_live, 0);
}

/* the same tensor name in two shards: DUPLICATE_NAME, also through an index */
static void test_duplicate_across_shards(void **state)
{
    static const char ha[] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    static const char hb[] = "{\"v\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"w\":{\"dtype\":\"F32\","
                             "\"shape\":[1],\"data_offsets\":[4,8]}}";
    static const char idx[] = "{\"metadata\":{},\"weight_map\":{\"w\":\"a.safetensors\",\"v\":\"b.safetensors\"}}";
    static const char idx_dup[] = "{\"weight_map\":{\"w\":\"a.safetensors\",\"\\u0077\":\"b.safetensors\"}}";
    char dir[] = "/tmp/molora_shards_XXXXXX", pa[256], pb[256], pi[256];
    size_t n;
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(pa, sizeof pa, "%s/a.safetensors", dir);
    snprintf(pb, sizeof pb, "%s/b.safetensors", dir);
    snprintf(pi, sizeof pi, "%s/model.safetensors.index.json", dir);
    n = build(ha, 4, 0); write_file(pa, g_buf, n);
    n = build(hb, 8, 0); write_file(pb, g_buf, n);
    expect_open(dir, MOLORA_RESULT_DUPLICATE_NAME, "\"w\" appears in shards 0 and 1");
    write_file(pi, idx, sizeof idx - 1);
    expect_open(pi, MOLORA_RESULT_DUPLICATE_NAME, "\"w\" appears in shards 0 and 1");
    expect_open(dir, MOLORA_RESULT_DUPLICATE_NAME, "\"w\" appears in shards 0 and 1");
    write_file(pi, idx_dup, sizeof idx_dup - 1);
    expect_open(pi, MOLORA_RESULT_INVALID_JSON, "key \"w\" appears twice");
    unlink(pi); unlink(pa); unlink(pb);
    assert_int_equal(rmdir(dir), 0);
}

/* every refusal names its key or tensor, and a file's path once */
static int count_of(const char *hay, const char *needle)
{
    int k = 0;
    for (hay = strstr(hay, needle); hay; hay = strstr(hay + 1, needle)) k++;
    return k;
}
static void test_messages(void **state)
{
    static const char hdr[] = "{\"m.lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[0,8]},"
                              "\"m.lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[8,16]}}";
    static const struct { const char *cfg; molora_result r; const char *needle; } c[] = {
        /* AdaMoLE's LoRA baseline */
        {"{\"peft_type\":\"LORA\",\"lora_rank\":2,\"lora_alpha\":8}", MOLORA_RESULT_SUCCESS, ""},
        {"{\"peft_type\":\"LORA\",\"lora_rank\":4,\"lora_alpha\":8}", MOLORA_RESULT_INVALID_SHAPE,
         "r = 4 (from key \"lora_rank\")"},
        {"{\"peft_type\":\"LORA\",\"lora_alpha\":8}", MOLORA_RESULT_INVALID_SHAPE,
         "r = 8 (from PEFT's default: the config has no \"r\")"},
        {"{\"peft_type\":\"LORA\",\"r\":3,\"lora_alpha\":8}", MOLORA_RESULT_INVALID_SHAPE, "r = 3 (from key \"r\")"},
        {"{\"peft_type\":\"LORA\",\"r\":2,\"rank_pattern\":{\"m\":5}}", MOLORA_RESULT_INVALID_SHAPE,
         "r = 5 (from its \"rank_pattern\" entry)"},
        {"{\"peft_type\":\"LORA\",\"r\":2,\"layers_to_transform\":[0,1.5]}", MOLORA_RESULT_INVALID_CONFIG,
         "\"layers_to_transform\" entry 1"},
        {"{\"peft_type\":\"LORA\",\"r\":2,\"rank_pattern\":{\"m{2}\":5}}", MOLORA_RESULT_UNSUPPORTED,
         "rank_pattern key \"m{2}\""},
    };
    char dir[] = "/tmp/molora_msg_XXXXXX", p[256];
    size_t i, n;
    molora_load_desc d = desc();
    molora_safetensors *st;
    molora_adapter *a;
    (void)state;
    n = build(hdr, 16, 0);
    assert_int_equal(molora_safetensors_open_memory(g_buf, n, &d, &st), MOLORA_RESULT_SUCCESS);
    for (i = 0; i < sizeof c / sizeof c[0]; i++) {
        molora_model_desc md;
        g_log[0] = 0;
        if (molora_adapter_open_memory(c[i].cfg, strlen(c[i].cfg), st, &d, &a) != c[i].r)
            fail_msg("case %zu: %s", i, g_log);
        if (!strstr(g_log, c[i].needle)) fail_msg("case %zu: log \"%s\" does not say %s", i, g_log, c[i].needle);
        if (c[i].r) continue;
        molora_adapter_model_desc(a, &md);
        assert_true(md.layers[0].experts[0].scaling == 4.0f);   /* lora_alpha / lora_rank */
        molora_adapter_free(a);
    }
    molora_safetensors_free(st);
    /* a bad shard: its path appears once in the line */
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    write_file(p, g_buf, n - 1);
    g_log[0] = 0;
    assert_int_equal(molora_safetensors_open(p, &d, &st), MOLORA_RESULT_INCOMPLETE_BUFFER);
    assert_int_equal(count_of(g_log, dir), 1);
    unlink(p);
    assert_int_equal(rmdir(dir), 0);
    assert_int_equal(g_live, 0);
}

/* ---- adapters ---------------------------------------------------------------------------- */
static float *npy_load(const char *path, int *rows, int *cols)
{
    FILE *f = fopen(path, "rb");
    unsigned char pre[10];
    char h[256];
    size_t hl;
    float *v;
    assert_non_null(f);
    assert_int_equal(fread(pre, 1, 10, f), 10);
    hl = (size_t)pre[8] | (size_t)pre[9] << 8;
    assert_true(hl < sizeof h);
    assert_int_equal(fread(h, 1, hl, f), hl);
    h[hl] = 0;
    assert_int_equal(sscanf(strstr(h, "'shape': (") + 10, "%d, %d", rows, cols), 2);
    v = (float *)malloc((size_t)*rows * (size_t)*cols * sizeof(float));
    assert_int_equal(fread(v, sizeof(float), (size_t)*rows * (size_t)*cols, f), (size_t)*rows * (size_t)*cols);
    fclose(f);
    return v;
}

/* loads dir, runs module on tests/fixtures/x.npy, compares with expected (mask: optional) */
static void check_forward(const char *dir, const char *module, const char *expected, molora_layout layout,
                          int n_modules, const uint8_t *mask)
{
    molora_load_desc d = desc();
    molora_adapter *a;
    molora_model_desc md;
    molora_model *m;
    molora_forward_args fa;
    float *X, *E, *Y;
    int T, din, rows, cols, l, i;
    size_t ws;
    void *w;
    double maxerr = 0;
    X = npy_load("tests/fixtures/x.npy", &T, &din);
    E = npy_load(expected, &rows, &cols);
    assert_int_equal(molora_adapter_open(dir, &d, &a), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_adapter_layout(a), layout);
    assert_int_equal(molora_adapter_n_layers(a), n_modules);
    l = molora_adapter_find_layer(a, module);
    assert_true(l >= 0);
    assert_int_equal(molora_adapter_find_layer(a, molora_adapter_layer_name(a, l)), l);
    assert_int_equal(molora_adapter_model_desc(a, &md), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
    assert_int_equal(md.layers[l].d_out, cols);
    Y = (float *)calloc((size_t)T * (size_t)cols, sizeof(float));
    assert_int_equal(molora_workspace_size(m, T, &ws), MOLORA_RESULT_SUCCESS);
    w = malloc(ws);
    memset(&fa, 0, sizeof fa);
    fa.layer = l; fa.n_tokens = T; fa.x = X; fa.y = Y; fa.output = MOLORA_OUTPUT_DELTA;
    fa.expert_mask = mask; fa.workspace = w; fa.workspace_size = ws;
    assert_int_equal(molora_forward(m, &fa), MOLORA_RESULT_SUCCESS);
    for (i = 0; i < T * cols; i++) {
        double e = fabs((double)Y[i] - E[i]) / (fabs(E[i]) > 1 ? fabs(E[i]) : 1);
        if (e > maxerr) maxerr = e;
    }
    if (maxerr > 1e-5) fail_msg("%s %s: max rel err %.3g", dir, module, maxerr);
    free(X); free(E); free(Y); free(w);
    molora_model_free(m);
    molora_adapter_free(a);
    assert_int_equal(g_live, 0);
}

static void test_layouts(void **state)
{
    static const uint8_t mask02[3] = {1, 0, 1};
    const char *F = "tests/fixtures";
    char a[256], b[256];
    (void)state;
#define CASE(dir, mod, exp, layout, n, mask)                                                          \
    snprintf(a, sizeof a, "%s/%s", F, dir); snprintf(b, sizeof b, "%s/%s/%s", F, dir, exp);         \
    check_forward(a, mod, b, layout, n, mask)
    CASE("peft", "model.layers.0.self_attn.q_proj", "expected.layers.0.q_proj.npy", MOLORA_LAYOUT_PEFT_LORA, 4, NULL);
    CASE("peft", "base_model.model.model.layers.1.self_attn.v_proj", "expected.layers.1.v_proj.npy",
         MOLORA_LAYOUT_PEFT_LORA, 4, NULL);
    CASE("peft_rslora", "model.layers.1.self_attn.q_proj", "expected.layers.1.q_proj.npy", MOLORA_LAYOUT_PEFT_LORA, 1,
         NULL);
    CASE("adamole", "model.layers.0.self_attn.q_proj", "expected.layers.0.q_proj.npy", MOLORA_LAYOUT_ADAMOLE, 1, NULL);
    CASE("mole", "model.layers.0.self_attn.v_proj", "expected.layers.0.v_proj.npy", MOLORA_LAYOUT_MOLE, 1, NULL);
    CASE("mola", "model.layers.0.self_attn.o_proj", "expected.layers.0.o_proj.npy", MOLORA_LAYOUT_MOLA, 2, NULL);
    CASE("mola", "model.layers.1.self_attn.o_proj", "expected.layers.1.o_proj.npy", MOLORA_LAYOUT_MOLA, 2, NULL);
    CASE("molora", "model.layers.0.self_attn.k_proj", "expected.layers.0.k_proj.npy", MOLORA_LAYOUT_MOLORA, 1, NULL);
    CASE("molora", "model.layers.0.self_attn.k_proj", "expected.layers.0.k_proj.mask02.npy", MOLORA_LAYOUT_MOLORA, 1,
         mask02);
#undef CASE
}

static void test_adapter_details(void **state)
{
    molora_load_desc d = desc();
    molora_adapter *a;
    molora_model_desc md;
    (void)state;
    /* MoLA: N per layer from the tensors, default top-k rule, BF16 */
    assert_int_equal(molora_adapter_open("tests/fixtures/mola", &d, &a), MOLORA_RESULT_SUCCESS);
    molora_adapter_model_desc(a, &md);
    assert_int_equal(md.layers[0].n_experts, 2);
    assert_int_equal(md.layers[1].n_experts, 3);
    assert_int_equal(md.layers[1].routing, MOLORA_ROUTING_TOPK);
    assert_int_equal(molora_adapter_layer_dtype(a, 1), MOLORA_DTYPE_BF16);
    assert_int_equal(molora_adapter_find_layer(a, "model.layers.7.self_attn.o_proj"), -1);
    molora_adapter_free(a);
    /* PEFT: rank_pattern / alpha_pattern scalings, modules_to_save ignored */
    assert_int_equal(molora_adapter_open("tests/fixtures/peft", &d, &a), MOLORA_RESULT_SUCCESS);
    molora_adapter_model_desc(a, &md);
    assert_int_equal(md.layers[0].experts[0].rank, 4);
    assert_true(md.layers[0].experts[0].scaling == 1.0f);
    assert_true(md.layers[3].experts[0].scaling == 1.5f);
    assert_int_equal(molora_adapter_n_ignored(a), 1);
    assert_string_equal(molora_adapter_ignored_name(a, 0), "base_model.model.lm_head.weight");
    molora_adapter_free(a);
    /* AdaMoLE: tau_max 1/N by default, aliases ignored */
    assert_int_equal(molora_adapter_open("tests/fixtures/adamole", &d, &a), MOLORA_RESULT_SUCCESS);
    molora_adapter_model_desc(a, &md);
    assert_int_equal(md.layers[0].routing, MOLORA_ROUTING_ADAMOLE);
    assert_int_equal(md.layers[0].tau_max_set, 0);
    assert_true(md.layers[0].threshold_bias == 0.25f);
    assert_int_equal(molora_adapter_n_ignored(a), 6);
    molora_adapter_free(a);
    assert_int_equal(g_live, 0);
}

static void test_refusals(void **state)
{
    static const struct { const char *dir; molora_result r; const char *needle; } c[] = {
        {"dora", MOLORA_RESULT_UNSUPPORTED, "use_dora"},
        {"bias", MOLORA_RESULT_UNSUPPORTED, "bias"},
        {"embedding", MOLORA_RESULT_UNSUPPORTED, "embed_tokens"},
        {"missing_b", MOLORA_RESULT_MISSING_WEIGHTS, "layers.0.self_attn.q_proj"},
        {"shape", MOLORA_RESULT_INVALID_SHAPE, "layers.0.self_attn.q_proj"},
        {"rank", MOLORA_RESULT_INVALID_SHAPE, "layers.0.self_attn.q_proj"},
        {"i32", MOLORA_RESULT_UNSUPPORTED_DTYPE, "lora_B.weight"},
        {"config_json", MOLORA_RESULT_INVALID_JSON, "adapter_config.json"},
        {"peft_type", MOLORA_RESULT_UNSUPPORTED, "IA3"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof c / sizeof c[0]; i++) {
        molora_load_desc d = desc();
        molora_adapter *a = (molora_adapter *)&d;
        char p[256];
        snprintf(p, sizeof p, "tests/fixtures/bad/%s", c[i].dir);
        g_log[0] = 0;
        assert_int_equal(molora_adapter_open(p, &d, &a), c[i].r);
        assert_null(a);
        if (!strstr(g_log, c[i].needle)) fail_msg("%s: log \"%s\" does not name %s", c[i].dir, g_log, c[i].needle);
        assert_int_equal(g_live, 0);
    }
}

/* PEFT's rank_pattern key rule: re.match(rf"(.*\.)?({key})$", module), first key wins */
static void test_pattern_rule(void **state)
{
    static const char st_fmt[] = "{\"base_model.model.model.layers.%d.mlp.down_proj.lora_A.weight\":{\"dtype\":\"F32\","
                                 "\"shape\":[%d,2],\"data_offsets\":[0,%d]},"
                                 "\"base_model.model.model.layers.%d.mlp.down_proj.lora_B.weight\":{\"dtype\":\"F32\","
                                 "\"shape\":[2,%d],\"data_offsets\":[%d,%d]}}";
    static const struct { const char *patterns; int layer, want_rank; molora_result r; } c[] = {
        {"{\"down_proj\": 4}", 3, 4, MOLORA_RESULT_SUCCESS},
        {"{\"own_proj\": 4}", 3, 2, MOLORA_RESULT_SUCCESS},                 /* only whole components */
        {"{\"layers.3.mlp.down_proj\": 4}", 3, 4, MOLORA_RESULT_SUCCESS},
        {"{\"layers.3.mlp.down_proj\": 4}", 13, 2, MOLORA_RESULT_SUCCESS},  /* 13 is not .3 */
        {"{\"layers\\\\.\\\\d+\\\\.mlp\\\\.down_proj\": 4}", 13, 4, MOLORA_RESULT_SUCCESS},
        {"{\"model.layers.3.mlp.down_proj\": 4, \"down_proj\": 8}", 3, 4, MOLORA_RESULT_SUCCESS},  /* first wins */
        {"{\"up_proj|down_proj\": 4}", 3, 4, MOLORA_RESULT_SUCCESS},
        {"{\"(down)_proj\": 4}", 3, 4, MOLORA_RESULT_SUCCESS},           /* groups, as Python's re */
        {"{\"(?:up|down)_pro[a-j]\": 4}", 3, 4, MOLORA_RESULT_SUCCESS},
        {"{\"((((d*)*o)*w)*)n_proj\": 4}", 3, 4, MOLORA_RESULT_SUCCESS},
        {"{\"down_proj{1}\": 4}", 3, 0, MOLORA_RESULT_UNSUPPORTED},      /* never guessed */
        {"{\"^down_proj\": 4}", 3, 0, MOLORA_RESULT_UNSUPPORTED},
        {"{\"\\\\bdown_proj\": 4}", 3, 0, MOLORA_RESULT_UNSUPPORTED},
        {"{\"down_proj**\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},   /* Python: multiple repeat */
        {"{\"down_proj*+\": 4}", 3, 0, MOLORA_RESULT_UNSUPPORTED},     /* possessive (Python 3.11) */
        {"{\"down_proj{2}\": 4}", 3, 0, MOLORA_RESULT_UNSUPPORTED},
        {"{\"?:down_proj\": 4}", 3, 0, MOLORA_RESULT_UNSUPPORTED},     /* (?:down_proj) once wrapped */
        {"{\"down)|(proj\": 4}", 3, 0, MOLORA_RESULT_UNSUPPORTED},     /* balanced once wrapped */
        /* keys Python's re.compile refuses (PEFT would raise): INVALID_CONFIG naming the key */
        {"{\"[z-a]\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"(a\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"a)\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"*a\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"a{2,1}\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"down_pro[z-a]\": 4, \"down_proj\": 8}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},   /* before a later match */
        {"{\"[\\\\d-z]\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"[a-\\\\d]\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"[]\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"[a\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"a|*b\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"a|?b\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"(?:+a)\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"a*??\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"a+*\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
        {"{\"a\\\\\": 4}", 3, 0, MOLORA_RESULT_INVALID_CONFIG},
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof c / sizeof c[0]; i++) {
        molora_load_desc d = desc();
        molora_safetensors *st;
        molora_adapter *a;
        char h[1024], cfg[256];
        int r = c[i].want_rank ? c[i].want_rank : 4;
        size_t n;
        snprintf(h, sizeof h, st_fmt, c[i].layer, r, 8 * r, c[i].layer, r, 8 * r, 16 * r);
        n = build(h, (size_t)(16 * r), 0);
        assert_int_equal(molora_safetensors_open_memory(g_buf, n, &d, &st), MOLORA_RESULT_SUCCESS);
        snprintf(cfg, sizeof cfg, "{\"peft_type\":\"LORA\",\"r\":2,\"lora_alpha\":8,\"rank_pattern\":%s}",
                 c[i].patterns);
        g_log[0] = 0;
        if (molora_adapter_open_memory(cfg, strlen(cfg), st, &d, &a) != c[i].r) fail_msg("case %zu: %s", i, g_log);
        if (c[i].r == MOLORA_RESULT_INVALID_CONFIG &&
            (!strstr(g_log, "not a valid regular expression") || !strstr(g_log, "rank_pattern key")))
            fail_msg("case %zu: log \"%s\"", i, g_log);
        if (c[i].r == MOLORA_RESULT_SUCCESS) molora_adapter_free(a);
        molora_safetensors_free(st);
        assert_int_equal(g_live, 0);
    }
}

/* An in-memory adapter: every tensor F32 (2, 2), named prefix + names[i]; loads cfg; check (or
   NULL) sees a loaded adapter before it is freed. */
static molora_result load_names_check(const char *prefix, const char *const *names, size_t k, const char *cfg,
                                      molora_adapter **out,
                                      void (*check)(molora_adapter *))
{
    static char h[1 << 15];
    molora_load_desc d = desc();
    molora_safetensors *st;
    molora_result r;
    size_t i, len = 0, n;
    len += (size_t)snprintf(h + len, sizeof h - len, "{");
    for (i = 0; i < k; i++)
        len += (size_t)snprintf(h + len, sizeof h - len,
                                "%s\"%s%s\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[%zu,%zu]}",
                                i ? "," : "", prefix, names[i], 16 * i, 16 * i + 16);
    snprintf(h + len, sizeof h - len, "}");
    n = build(h, 16 * k, 0);
    assert_int_equal(molora_safetensors_open_memory(g_buf, n, &d, &st), MOLORA_RESULT_SUCCESS);
    g_log[0] = 0;
    *out = NULL;
    r = molora_adapter_open_memory(cfg, strlen(cfg), st, &d, out);
    if (r == MOLORA_RESULT_SUCCESS && check) check(*out);
    if (r == MOLORA_RESULT_SUCCESS) molora_adapter_free(*out);
    molora_safetensors_free(st);
    assert_int_equal(g_live, 0);
    return r;
}
static molora_result load_names(const char *prefix, const char *const *names, size_t k, const char *cfg,
                                molora_adapter **out)
{
    return load_names_check(prefix, names, k, cfg, out, NULL);
}

/* An expert index is written once and without leading zeros: lora_A_01 beside lora_A_1 (or
   lora_A.0 beside lora_A_0) is refused naming the tensor, never dropped or overwritten */
static void test_expert_index_once(void **state)
{
    static const char pre[] = "base_model.model.model.layers.0.self_attn.q_proj.";
    static const char *const mola_lead[] = {"lora_A_0.weight", "lora_B_0.weight", "lora_A_1.weight", "lora_B_1.weight",
                                            "lora_A_01.weight", "lora_B_01.weight"};
    static const char *const mole_lead[] = {"lora_A.0.weight", "lora_B.0.weight", "lora_A.01.weight",
                                            "lora_B.01.weight"};
    static const char *const mola_ok[] = {"lora_A_0.weight", "lora_B_0.weight", "lora_A_1.weight", "lora_B_1.weight",
                                          "router.router.weight"};
    static const char *const mixed[] = {"lora_A.0.weight", "lora_B.0.weight", "lora_A_0.weight", "lora_B_0.weight"};
    static const char *const mixed_b[] = {"lora_A.0.weight", "lora_B.0.weight", "lora_B_0.weight", "lora_A.1.weight",
                                          "lora_B.1.weight"};
    static const char mola_cfg[] = "{\"peft_type\":\"LORA\",\"r\":2,\"lora_alpha\":4}";
    static const char mole_cfg[] = "{\"peft_type\":\"MOLE\",\"lora_rank\":2,\"lora_alpha\":2,\"top_k\":1,"
                                   "\"threshold\":null}";
    molora_adapter *a;
    (void)state;
    assert_int_equal(load_names(pre, mola_lead, 6, mola_cfg, &a), MOLORA_RESULT_UNSUPPORTED);
    if (!strstr(g_log, "lora_A_01.weight") || !strstr(g_log, "leading zero")) fail_msg("log \"%s\"", g_log);
    assert_int_equal(load_names(pre, mole_lead, 4, mole_cfg, &a), MOLORA_RESULT_UNSUPPORTED);
    if (!strstr(g_log, "lora_A.01.weight") || !strstr(g_log, "leading zero")) fail_msg("log \"%s\"", g_log);
    assert_int_equal(load_names(pre, mola_ok, 5, mola_cfg, &a), MOLORA_RESULT_SUCCESS);   /* "0" itself is an index */
    if (strstr(g_log, "leading zero")) fail_msg("log \"%s\"", g_log);
    assert_int_equal(load_names(pre, mixed, 4, mole_cfg, &a), MOLORA_RESULT_DUPLICATE_NAME);
    if (!strstr(g_log, "lora_A.0.weight") || !strstr(g_log, "lora_A_0.weight") || !strstr(g_log, "twice"))
        fail_msg("log \"%s\"", g_log);
    assert_int_equal(load_names(pre, mixed_b, 5, mole_cfg, &a), MOLORA_RESULT_DUPLICATE_NAME);
    if (!strstr(g_log, "lora_B.0.weight") || !strstr(g_log, "lora_B_0.weight")) fail_msg("log \"%s\"", g_log);
}

/* Rank (lora_A's rows) is at most 65536: 65537 is refused naming the tensor and the limit */
static void test_rank_limit(void **state)
{
    static const char fmt[] = "{\"base_model.model.model.layers.0.mlp.down_proj.lora_A.weight\":{\"dtype\":\"BF16\","
                              "\"shape\":[%d,1],\"data_offsets\":[0,%d]},"
                              "\"base_model.model.model.layers.0.mlp.down_proj.lora_B.weight\":{\"dtype\":\"BF16\","
                              "\"shape\":[1,%d],\"data_offsets\":[%d,%d]}}";
    int rk;
    (void)state;
    for (rk = 65536; rk <= 65537; rk++) {
        molora_load_desc d = desc();
        molora_safetensors *st;
        molora_adapter *a = NULL;
        char h[512], cfg[128];
        size_t hn, n;
        unsigned char *b;
        int i;
        snprintf(h, sizeof h, fmt, rk, 2 * rk, rk, 2 * rk, 4 * rk);
        hn = strlen(h);
        n = 8 + hn + 4 * (size_t)rk;
        b = calloc(1, n);
        assert_non_null(b);
        for (i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hn >> (8 * i));
        memcpy(b + 8, h, hn);
        assert_int_equal(molora_safetensors_open_memory(b, n, &d, &st), MOLORA_RESULT_SUCCESS);
        snprintf(cfg, sizeof cfg, "{\"peft_type\":\"LORA\",\"r\":%d,\"lora_alpha\":8}", rk);
        g_log[0] = 0;
        if (rk == 65536) {
            assert_int_equal(molora_adapter_open_memory(cfg, strlen(cfg), st, &d, &a), MOLORA_RESULT_SUCCESS);
            molora_adapter_free(a);
        } else {
            assert_int_equal(molora_adapter_open_memory(cfg, strlen(cfg), st, &d, &a), MOLORA_RESULT_INVALID_SHAPE);
            if (!strstr(g_log, "rank 65537 above molora's limit 65536") || !strstr(g_log, "down_proj.lora_A.weight"))
                fail_msg("log \"%s\"", g_log);
        }
        molora_safetensors_free(st);
        free(b);
        assert_int_equal(g_live, 0);
    }
}

/* expert_scaling object keys longer than any fixed buffer, written with escapes, still match
   their modules (compared decoded, incrementally) */
#define LONG_MOD "base_model.model.model.layers.0.self_attn.%s_proj" \
                 "_padding_padding_padding_padding_padding_padding_padding_padding"
static void check_long_keys(molora_adapter *a)
{
    molora_model_desc md;
    assert_int_equal(molora_adapter_model_desc(a, &md), MOLORA_RESULT_SUCCESS);
    assert_int_equal(md.n_layers, 2);
    assert_true(strstr(molora_adapter_layer_name(a, 0), "k_proj") != NULL);
    assert_true(md.layers[0].experts[0].scaling == 0.5f && md.layers[0].experts[1].scaling == 2.0f);
    assert_true(md.layers[1].experts[0].scaling == 3.0f && md.layers[1].experts[1].scaling == 4.0f);
}
static void test_long_escaped_keys(void **state)
{
    static const char *const parts[] = {".lora_A.0.weight", ".lora_B.0.weight", ".lora_A.1.weight", ".lora_B.1.weight",
                                        ".lora_gating.weight"};
    char names[10][256], cfg[1024], key_k[256], key_q[256];
    const char *np[10];
    molora_adapter *a;
    int i, j;
    (void)state;
    for (i = 0; i < 2; i++)
        for (j = 0; j < 5; j++) {
            char mod[200];
            snprintf(mod, sizeof mod, LONG_MOD, i ? "q" : "k");
            snprintf(names[5 * i + j], sizeof names[0], "%s%s", mod, parts[j]);
            np[5 * i + j] = names[5 * i + j];
        }
    /* "self\u005fattn" is "self_attn"; "\u0070roj" is "proj": 110+ bytes raw, escapes inside */
    snprintf(key_k, sizeof key_k, "base_model.model.model.layers.0.self\\u005fattn.k_\\u0070roj_padding_padding_padding"
                                  "_padding_padding_padding_padding_padding");
    snprintf(key_q, sizeof key_q, "base_model.model.model.layers.0.self\\u005fattn.q_\\u0070roj_padding_padding_padding"
                                  "_padding_padding_padding_padding_padding");
    assert_true(strlen(key_k) >= 110 && strlen(key_q) >= 110);
    snprintf(cfg, sizeof cfg, "{\"peft_type\":\"MOLORA\",\"routing\":\"dense\",\"expert_scaling\":{\"%s\":[3,4],"
                              "\"%s\":[0.5,2]}}", key_q, key_k);
    if (load_names_check("", np, 10, cfg, &a, check_long_keys) != MOLORA_RESULT_SUCCESS) fail_msg("%s", g_log);
}

/* ---- the safetensors parse in steps: header, entries, names, validation (issue 13) --------- */
/* When a header breaks several rules at once, the step that runs first reports it: the header
   itself, the sizing pass (__metadata__), each entry in header order (dtype, shape,
   data_offsets), then Metadata::validate in offset order, and last the data section's size. */
static void expect_first(const char *header, size_t data_len, molora_result want, const char *needle)
{
    size_t n = build(header, data_len, 0);
    assert_int_equal(open_bytes(g_buf, n), want);
    if (!strstr(g_log, needle)) fail_msg("expected \"%s\" in \"%s\"", needle, g_log);
}
#define T32(name, shape, b, e) "\"" name "\":{\"dtype\":\"F32\",\"shape\":" shape ",\"data_offsets\":[" b "," e "]}"
static void test_parse_step_order(void **state)
{
    (void)state;
    expect_first("[]", 0, MOLORA_RESULT_INVALID_JSON, "header is not a JSON object");
    expect_first("{\"a\":1,\"__metadata__\":{\"k\":2}}", 0, MOLORA_RESULT_INVALID_JSON,
                 "__metadata__ value of \"k\" is not a string");
    expect_first("{" T32("b", "[1]", "4", "8") ",\"a\":{\"dtype\":\"X\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                 MOLORA_RESULT_INVALID_JSON, "tensor \"a\": unknown dtype");
    expect_first("{\"a\":{\"shape\":[1]}}", 0, MOLORA_RESULT_INVALID_JSON, "tensor \"a\": missing field \"dtype\"");
    expect_first("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, MOLORA_RESULT_INVALID_JSON,
                 "missing field \"shape\"");
    expect_first("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0]}}", 4, MOLORA_RESULT_INVALID_JSON,
                 "tensor \"a\": shape[0] is not an unsigned 64-bit integer");
    expect_first("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, MOLORA_RESULT_INVALID_JSON,
                 "data_offsets must be two unsigned 64-bit integers");
    /* offset order, not header order: "z" at [0, 8) is checked before "a" at [8, 12) */
    expect_first("{" T32("a", "[1]", "8", "12") "," T32("z", "[1]", "0", "8") "}", 12,
                 MOLORA_RESULT_TENSOR_INVALID_INFO, "tensor \"z\": F32 shape needs 4 bytes, data_offsets give 8");
    expect_first("{" T32("a", "[1]", "0", "4") "," T32("b", "[1]", "8", "12") "}", 12, MOLORA_RESULT_INVALID_OFFSET,
                 "tensor \"b\": data_offsets [8, 12] (expected to start at 4)");
    expect_first("{" T32("a", "[4294967296,4294967296]", "0", "4") "}", 4, MOLORA_RESULT_SIZE_OVERFLOW,
                 "tensor \"a\": shape product overflows");
    expect_first("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", 1,
                 MOLORA_RESULT_TENSOR_INVALID_INFO, "3 elements of F4 do not fill whole bytes");
    expect_first("{" T32("a", "[1]", "0", "4") "}", 8, MOLORA_RESULT_INCOMPLETE_BUFFER,
                 "tensors cover 4 data bytes, the file has 8");
}
/* Each allocation of the parse failing in turn: OUT_OF_MEMORY with nothing left allocated, until
   every allocation succeeds and the tensors come out in file order with their metadata. */
static long g_oom_left;
static void *oom_alloc(size_t n, void *u) { (void)u; if (g_oom_left-- <= 0) return NULL; g_live++; return malloc(n); }
static void test_parse_out_of_memory(void **state)
{
    size_t n = build("{\"__metadata__\":{\"k\":\"v\"},\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]},"
                     T32("a", "[1]", "0", "4") "}", 8, 0);
    molora_result r = MOLORA_RESULT_OUT_OF_MEMORY;
    molora_safetensors *st = NULL;
    molora_tensor_info ti;
    long k;
    (void)state;
    for (k = 0; r == MOLORA_RESULT_OUT_OF_MEMORY; k++) {
        molora_load_desc d = desc();
        d.memory.alloc = oom_alloc;
        g_oom_left = k;
        r = molora_safetensors_open_memory(g_buf, n, &d, &st);
        if (r == MOLORA_RESULT_OUT_OF_MEMORY) assert_int_equal(g_live, 0);
    }
    assert_int_equal(r, MOLORA_RESULT_SUCCESS);
    assert_true(k > 4);
    assert_int_equal(molora_safetensors_n_tensors(st), 2);
    assert_int_equal(molora_safetensors_tensor_info(st, 0, &ti), MOLORA_RESULT_SUCCESS);
    assert_string_equal(ti.name, "a");
    assert_int_equal(molora_safetensors_tensor_info(st, 1, &ti), MOLORA_RESULT_SUCCESS);
    assert_string_equal(ti.name, "b");
    assert_true(ti.n_elements == 2 && ti.n_bytes == 4 && ti.data == g_buf + n - 4);
    assert_string_equal(molora_safetensors_find_metadata(st, "k"), "v");
    molora_safetensors_free(st);
    assert_int_equal(g_live, 0);
}
#undef T32

/* The loader's steps keep their order, so the first error found stays the same: the config's
   shared keys (use_dora) before the tensor names, the tensor names before peft_type's value, the
   layout's keys (MOLE's top_k / threshold, layers_to_transform) before the expert checks. */
static void test_check_order(void **state)
{
    static const char pre[] = "base_model.model.model.layers.0.self_attn.q_proj.";
    static const char *const dora[] = {"lora_A.weight", "lora_B.weight", "lora_magnitude_vector"};
    static const char *const no_b[] = {"lora_A.0.weight", "lora_gating.weight"};
    static const char *const peft_no_b[] = {"lora_A.weight"};
    static const char mole_neither[] = "{\"peft_type\":\"MOLE\",\"lora_rank\":2,\"lora_alpha\":2,\"num_experts\":1}";
    molora_adapter *a;
    (void)state;
    assert_int_equal(load_names(pre, dora, 3, "{\"peft_type\":\"LORA\",\"use_dora\":true}", &a),
                     MOLORA_RESULT_UNSUPPORTED);
    if (!strstr(g_log, "\"use_dora\"")) fail_msg("log \"%s\"", g_log);
    assert_int_equal(load_names(pre, dora, 3, "{\"peft_type\":\"X\"}", &a), MOLORA_RESULT_UNSUPPORTED);
    if (!strstr(g_log, "lora_magnitude_vector")) fail_msg("log \"%s\"", g_log);
    assert_int_equal(load_names(pre, peft_no_b, 1, "{\"peft_type\":\"X\"}", &a), MOLORA_RESULT_UNSUPPORTED);
    if (!strstr(g_log, "is not one of")) fail_msg("log \"%s\"", g_log);
    assert_int_equal(load_names(pre, no_b, 2, mole_neither, &a), MOLORA_RESULT_INVALID_CONFIG);
    if (!strstr(g_log, "exactly one")) fail_msg("log \"%s\"", g_log);
    assert_int_equal(load_names(pre, peft_no_b, 1, "{\"peft_type\":\"LORA\",\"layers_to_transform\":[0,-1]}", &a),
                     MOLORA_RESULT_INVALID_CONFIG);
    if (!strstr(g_log, "\"layers_to_transform\" entry 1")) fail_msg("log \"%s\"", g_log);
    assert_int_equal(load_names(pre, peft_no_b, 1, "{\"peft_type\":\"LORA\",\"layers_to_transform\":[0]}", &a),
                     MOLORA_RESULT_MISSING_WEIGHTS);
    if (!strstr(g_log, "has no lora_B")) fail_msg("log \"%s\"", g_log);
}

/* The ignored list: tensors without a LoRA name in file order, then the lora_A / lora_B of the
   layers layers_to_transform leaves out, in layer order. */
static void check_ignored_order(molora_adapter *a)
{
    assert_int_equal(molora_adapter_n_layers(a), 1);
    assert_true(strstr(molora_adapter_layer_name(a, 0), "layers.1.") != NULL);
    assert_int_equal(molora_adapter_n_ignored(a), 5);
    assert_string_equal(molora_adapter_ignored_name(a, 0), "base_model.model.lm_head.weight");
    assert_string_equal(molora_adapter_ignored_name(a, 1), "base_model.model.model.layers.2.q.lora_A.weight");
    assert_string_equal(molora_adapter_ignored_name(a, 2), "base_model.model.model.layers.2.q.lora_B.weight");
    assert_string_equal(molora_adapter_ignored_name(a, 3), "base_model.model.model.layers.10.q.lora_A.weight");
    assert_string_equal(molora_adapter_ignored_name(a, 4), "base_model.model.model.layers.10.q.lora_B.weight");
    assert_null(molora_adapter_ignored_name(a, 5));
}
static void test_ignored_order(void **state)
{
    static const char *const names[] = {
        "model.layers.10.q.lora_B.weight", "model.layers.10.q.lora_A.weight", "model.layers.1.q.lora_A.weight",
        "model.layers.1.q.lora_B.weight", "model.layers.2.q.lora_A.weight", "model.layers.2.q.lora_B.weight",
        "lm_head.weight"};
    static const char cfg[] = "{\"peft_type\":\"LORA\",\"r\":2,\"layers_to_transform\":1}";
    molora_adapter *a;
    (void)state;
    if (load_names_check("base_model.model.", names, 7, cfg, &a, check_ignored_order) != MOLORA_RESULT_SUCCESS)
        fail_msg("%s", g_log);
}

/* MoLE shares AdaMoLE's builder: experts scaled lora_alpha / lora_rank, the threshold rule and its
   gate from the file, the temperature defaulting to 1. */
static void check_mole_threshold(molora_adapter *a)
{
    molora_model_desc md;
    assert_int_equal(molora_adapter_layout(a), MOLORA_LAYOUT_MOLE);
    assert_int_equal(molora_adapter_model_desc(a, &md), MOLORA_RESULT_SUCCESS);
    assert_int_equal(md.n_layers, 1);
    assert_int_equal(md.layers[0].n_experts, 2);
    assert_int_equal(md.layers[0].routing, MOLORA_ROUTING_THRESHOLD);
    assert_true(md.layers[0].threshold == 0.25f && md.layers[0].temperature == 1.0f && md.layers[0].top_k == 0);
    assert_true(md.layers[0].experts[0].scaling == 2.0f && md.layers[0].experts[1].scaling == 2.0f);
    assert_non_null(md.layers[0].gate_weight);
    assert_null(md.layers[0].gate_bias);
    assert_null(md.layers[0].threshold_weight);
}
static void test_mole_builder(void **state)
{
    static const char pre[] = "base_model.model.model.layers.0.self_attn.q_proj.";
    static const char *const names[] = {"lora_A.0.weight", "lora_B.0.weight", "lora_A.1.weight", "lora_B.1.weight",
                                        "lora_gating.weight"};
    static const char cfg[] = "{\"peft_type\":\"MOLE\",\"lora_rank\":2,\"lora_alpha\":4,\"num_experts\":2,"
                              "\"threshold\":0.25}";
    molora_adapter *a;
    (void)state;
    if (load_names_check(pre, names, 5, cfg, &a, check_mole_threshold) != MOLORA_RESULT_SUCCESS) fail_msg("%s", g_log);
    assert_int_equal(load_names(pre, names, 4, cfg, &a), MOLORA_RESULT_MISSING_WEIGHTS);
    if (!strstr(g_log, "lora_gating.weight is missing")) fail_msg("log \"%s\"", g_log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_valid),
        cmocka_unit_test(test_reference_errors),
        cmocka_unit_test(test_attacks),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_json_depth),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_header_length_boundaries),
        cmocka_unit_test(test_utf8_edges),
        cmocka_unit_test(test_conversion),
        cmocka_unit_test(test_every_dtype),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_not_regular),
        cmocka_unit_test(test_not_regular_read),
        cmocka_unit_test(test_load_read_same_tensors),
        cmocka_unit_test(test_load_read_same_adapters),
        cmocka_unit_test(test_load_read_file_may_change),
        cmocka_unit_test(test_load_read_size_changes),
        cmocka_unit_test(test_load_flags_unknown),
        cmocka_unit_test(test_duplicate_across_shards),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_layouts),
        cmocka_unit_test(test_adapter_details),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_pattern_rule),
        cmocka_unit_test(test_expert_index_once),
        cmocka_unit_test(test_rank_limit),
        cmocka_unit_test(test_long_escaped_keys),
        cmocka_unit_test(test_parse_step_order),
        cmocka_unit_test(test_parse_out_of_memory),
        cmocka_unit_test(test_check_order),
        cmocka_unit_test(test_ignored_order),
        cmocka_unit_test(test_mole_builder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

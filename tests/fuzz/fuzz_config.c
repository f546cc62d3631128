/* libFuzzer harness: the JSON parser and adapter loader on arbitrary adapter_config.json text,
   against a fixed small MOLORA-layout weights file (2 experts, gate), so every config path runs. */
#define MOLORA_IMPLEMENTATION
#define MOLORA_NO_BLAS
#include "molora.h"
#include <string.h>

static unsigned char g_st[4096];
static size_t g_n;
static void build(void)
{
    const char *h = "{\"m.layers.0.q.lora_A.0.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},"
                    "\"m.layers.0.q.lora_B.0.weight\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[8,16]},"
                    "\"m.layers.0.q.lora_A.1.weight\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[16,20]},"
                    "\"m.layers.0.q.lora_B.1.weight\":{\"dtype\":\"F16\",\"shape\":[2,1],\"data_offsets\":[20,24]},"
                    "\"m.layers.0.q.lora_gating.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[24,40]},"
                    "\"m.layers.0.q.lora_threshold.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],"
                    "\"data_offsets\":[40,48]},"
                    "\"m.layers.0.q.lora_threshold.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[48,52]}}";
    size_t n = strlen(h), i;
    for (i = 0; i < 8; i++) g_st[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(g_st + 8, h, n);
    for (i = 0; i < 52; i++) g_st[8 + n + i] = (unsigned char)(i % 7 == 0 ? 0x3f : 0);
    g_n = 8 + n + 52;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    molora_safetensors *st;
    molora_adapter *a;
    if (!g_n) build();
    if (molora_safetensors_open_memory(g_st, g_n, NULL, &st) != MOLORA_RESULT_SUCCESS) __builtin_trap();
    if (molora_adapter_open_memory((const char *)data, size, st, NULL, &a) == MOLORA_RESULT_SUCCESS) {
        molora_model_desc md;
        molora_model *m;
        molora_adapter_model_desc(a, &md);
        if (molora_model_init(&md, &m) == MOLORA_RESULT_SUCCESS) molora_model_free(m);
        molora_adapter_find_layer(a, "m.layers.0.q");
        molora_adapter_free(a);
    }
    molora_safetensors_free(st);
    return 0;
}

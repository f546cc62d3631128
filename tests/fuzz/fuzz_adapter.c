/* libFuzzer harness: the adapter loader with its config and its tensors fuzzed together. The input
   is a 2-byte little-endian length L, then L bytes of adapter_config.json text, then the bytes of
   adapter_model.safetensors; the harness loads it, asks for the model descriptor, initialises a
   model from it and looks up every module, freeing everything. */
#define MOLORA_IMPLEMENTATION
#define MOLORA_NO_BLAS
#include "molora.h"
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    molora_safetensors *st;
    molora_adapter *a;
    size_t L;
    int l;
    if (size < 2) return 0;
    L = (size_t)data[0] | (size_t)data[1] << 8;
    if (L > size - 2) L = size - 2;
    if (molora_safetensors_open_memory(data + 2 + L, size - 2 - L, NULL, &st) != MOLORA_RESULT_SUCCESS) return 0;
    if (molora_adapter_open_memory((const char *)data + 2, L, st, NULL, &a) == MOLORA_RESULT_SUCCESS) {
        molora_model_desc md;
        molora_model *m;
        if (molora_adapter_model_desc(a, &md) != MOLORA_RESULT_SUCCESS) __builtin_trap();
        if (molora_model_init(&md, &m) == MOLORA_RESULT_SUCCESS) molora_model_free(m);
        for (l = 0; l < molora_adapter_n_layers(a); l++) {
            const char *name = molora_adapter_layer_name(a, l);
            int found = molora_adapter_find_layer(a, name);
            if (found < 0 || strcmp(molora_adapter_layer_name(a, found), name)) __builtin_trap();
            (void)molora_dtype_name(molora_adapter_layer_dtype(a, l));
        }
        molora_adapter_free(a);
    }
    molora_safetensors_free(st);
    return 0;
}

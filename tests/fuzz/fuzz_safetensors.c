/* libFuzzer harness: the safetensors reader on arbitrary bytes, then every accessor. */
#define MOLORA_IMPLEMENTATION
#define MOLORA_NO_BLAS
#include "molora.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    molora_safetensors *st;
    size_t i;
    if (molora_safetensors_open_memory(data, size, NULL, &st) != MOLORA_RESULT_SUCCESS) return 0;
    for (i = 0; i < molora_safetensors_n_tensors(st); i++) {
        molora_tensor_info ti;
        const float *p;
        size_t j;
        molora_safetensors_tensor_info(st, i, &ti);
        if (molora_safetensors_find(st, ti.name, &j) != MOLORA_RESULT_SUCCESS || j != i) __builtin_trap();
        if (molora_safetensors_tensor_f32(st, i, &p) == MOLORA_RESULT_SUCCESS && ti.n_elements)
            if (p[ti.n_elements - 1] != p[ti.n_elements - 1] && 0) __builtin_trap();
    }
    molora_safetensors_free(st);
    return 0;
}

/* libFuzzer harness: the shard index parser (model.safetensors.index.json) on arbitrary text:
   strict JSON, duplicate keys, the weight_map and its file names. Every accepted index must name
   distinct, sorted, plain file names. */
#define MOLORA_IMPLEMENTATION
#define MOLORA_NO_BLAS
#include "molora.h"
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    molora__io io;
    molora__index x;
    size_t i;
    memset(&io, 0, sizeof io);
    if (molora__index_parse(&io, (const char *)data, size, "index", &x) != MOLORA_RESULT_SUCCESS) return 0;
    for (i = 0; i < x.nf; i++) {
        if (!x.files[i][0] || strchr(x.files[i], '/')) __builtin_trap();
        if (i && strcmp(x.files[i - 1], x.files[i]) >= 0) __builtin_trap();
    }
    molora__index_free(&io, &x);
    return 0;
}

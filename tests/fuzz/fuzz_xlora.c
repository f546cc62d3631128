/* libFuzzer harness: molora_xlora_open on arbitrary adapter_config.json text (written into a
   scratch X-LoRA directory beside the d1_bcast fixture's classifier file), then the scalings and
   the scaling pass on what opens. Adapter paths in the inputs resolve from the repository root
   (run it from there): tests/fuzz/corpus_xlora seeds name tests/fixtures/xlora/lora{0,1,2}. */
#define MOLORA_IMPLEMENTATION
#define MOLORA_NO_BLAS
#define _POSIX_C_SOURCE 200809L
#include "molora.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char g_dir[64], g_cfg[96], g_st[96];
static void cleanup(void)
{
    remove(g_cfg);
    remove(g_st);
    remove(g_dir);
}
static void setup(void)
{
    char *st = g_st, buf[8192];
    FILE *a, *b;
    size_t n;
    strcpy(g_dir, "/tmp/molora_fuzz_xlora_XXXXXX");
    if (!mkdtemp(g_dir)) __builtin_trap();
    snprintf(g_st, sizeof g_st, "%s/adapter_model.safetensors", g_dir);
    atexit(cleanup);
    snprintf(g_cfg, sizeof g_cfg, "%s/adapter_config.json", g_dir);
    a = fopen("tests/fixtures/xlora/d1_bcast/adapter_model.safetensors", "rb");
    b = fopen(st, "wb");
    if (!a || !b) __builtin_trap();
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) fwrite(buf, 1, n, b);
    fclose(a);
    fclose(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    molora_xlora *xl;
    FILE *f;
    if (!g_dir[0]) setup();
    if (!(f = fopen(g_cfg, "wb"))) __builtin_trap();
    fwrite(data, 1, size, f);
    fclose(f);
    if (molora_xlora_open(g_dir, NULL, &xl) == MOLORA_RESULT_SUCCESS) {
        int T = 3, L = molora_xlora_n_modules(xl), N = molora_xlora_n_adapters(xl), H = molora_xlora_hidden_size(xl);
        size_t ws;
        float *h = (float *)calloc((size_t)T * H, sizeof(float));
        float *s = (float *)calloc((size_t)T * L * N, sizeof(float));
        void *w;
        if (molora_xlora_workspace_size(xl, T, &ws) != MOLORA_RESULT_SUCCESS) __builtin_trap();
        w = malloc(ws);
        if (h && s && w) {
            h[0] = 1.0f;
            molora_xlora_scalings(xl, T, h, s, w, ws);
            if (molora_xlora_scaling_pass(xl, T, s) != MOLORA_RESULT_SUCCESS) __builtin_trap();
        }
        free(h); free(s); free(w);
        molora_xlora_free(xl);
    }
    return 0;
}

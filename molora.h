/* molora.h - mixture-of-LoRA-experts inference in one C header.  v0.1.0
   MIT licence at the end of the file.

   WHAT IT DOES
     A frozen linear layer y = W0 x (+ b) carries N LoRA experts dW_i = s_i B_i A_i,
     mixed per token by routing weights w_i(x):

         y = W0 x + b + sum_i w_i(x) * s_i * B_i (A_i x)

     Routing rules (exact formulas: shared/reference-math.md, checked against upstream code):
       MOLORA_ROUTING_DENSE        softmax(Wg x / temperature)                  (MoLE, token level)
       MOLORA_ROUTING_TOPK         top-k of the softmax, renormalised, ties to the lowest index (MoLA)
       MOLORA_ROUTING_THRESHOLD    p_i >= threshold, weights p_i renormalised (AdaMoLE repo baseline)
       MOLORA_ROUTING_ADAMOLE      tau = tau_max * sigmoid(wt.x + bt); weights p_i - tau where
                                   p_i >= tau, renormalised; an all-zero row is the frozen layer
       MOLORA_ROUTING_MOLE_OUTPUT  MoLE paper Eq. 9-11 per token: the experts' deltas s_i B_i A_i x
                                   concatenated, L2-normalised, times e, softmax with temperature
       MOLORA_ROUTING_FIXED        weights given by the caller per call (per batch or per token)
     Any layer also takes caller-given weights per call (X-LoRA-style scalings), and
     molora_route() returns the routing weights without applying the experts, so an engine can
     route once per prompt and pass the result as fixed weights while it generates.

     Masks make an expert not exist for a token (the rule runs over the allowed experts only);
     a token whose experts are all masked gets the frozen layer. Two output modes: the full
     layer, or delta-only (Y += delta) for an engine that runs its own base matmul.

   QUICK START
       #define MOLORA_IMPLEMENTATION      // in exactly one .c file
       #include "molora.h"                // cc -I. app.c -lopenblas -lm

       molora_expert_desc ex[2] = {{8, A0, B0}, {8, A1, B1}};   // rank, A (8,d_in), B (d_out,8)
       molora_layer_desc ld = {0};
       ld.d_in = 4096; ld.d_out = 4096; ld.n_experts = 2; ld.experts = ex;
       ld.W0 = W0; ld.gate_weight = Wg;  ld.routing = MOLORA_ROUTING_DENSE;
       molora_model_desc md = {0};  md.n_layers = 1; md.layers = &ld;
       molora_model *m;  molora_result r = molora_model_init(&md, &m);
       size_t ws;  molora_workspace_size(m, 64, &ws);   void *w = malloc(ws);
       molora_forward_args fa = {0};
       fa.layer = 0; fa.n_tokens = T; fa.x = X; fa.y = Y; fa.workspace = w; fa.workspace_size = ws;
       r = molora_forward(m, &fa);        // Y (T, d_out) = X W0^T + delta
       ...  molora_model_free(m);

   MEMORY AND OWNERSHIP
     - Expert matrices (A, B), the gate Wg and its bias, and the threshold net are packed into
       memory the model owns at init (stacked A with the gate and threshold rows appended,
       concatenated B); the caller may free them right after molora_model_init().
     - W0, the bias and the MoLE output gate e are BORROWED by default: you must keep them alive
       and unchanged until molora_model_free(). Set MOLORA_MODEL_COPY_WEIGHTS to copy them.
     - Every allocation goes through desc.memory (default malloc/free), in one block per model.
     - The forward path allocates nothing: size a workspace with molora_workspace_size() and
       pass it to molora_forward() / molora_route().

   THREAD SAFETY
     - A model is immutable after init: any number of threads may call molora_forward(),
       molora_route(), molora_merge() and the getters on one model at once, each with its OWN
       workspace. A workspace must not be shared between concurrent calls.
     - molora_model_init() and molora_model_free() are not concurrent with other use of the
       same model. The logger may be called from any thread that uses the model.
     - molora never changes OpenBLAS's thread count; OpenBLAS threads as you configured it.

   ERRORS
     Every fallible call returns molora_result; molora_result_string() names it. The library
     never prints, exits or aborts on bad data: detail (which layer, expert, field) goes to the
     optional logger in the model descriptor. On an error nothing is half-built or leaked, and
     a forward call that fails leaves Y unchanged.

   CONFIGURATION MACROS (define before including)
     MOLORA_IMPLEMENTATION  compile the implementation in this translation unit
     MOLORA_STATIC          make every function static (a private copy per translation unit)
     MOLORA_API             override the linkage of the public functions
     MOLORA_NO_BLAS         no OpenBLAS: molora's own kernels for every size, same results within
                            float tolerance
     MOLORA_NO_SIMD         compile only the portable C kernels (no AVX2 / AVX-512 code)
     MOLORA_ASSERT(c)       assertion for programmer errors only (default: assert from assert.h)
   Environment: MOLORA_PORTABLE=1 forces the portable kernels at run time (valgrind cannot run
   AVX-512 code); otherwise AVX-512, AVX2+FMA or portable is chosen from the CPU once.

   PERFORMANCE (how a call runs; measured numbers are in README.md, from bench/molora_bench)
     - Init packs each layer: [A_0; ...; A_{N-1}; Wg; wt] stacked (N*r + N + 1 rows) and B
       transposed per expert, so an expert's A and B rows are contiguous.
     - Every call computes the gate logits first (one narrow product), routes, and computes only
       the experts some token of the batch selects (top-k, AdaMoLE and masks skip the rest).
     - T = 1 (decode): OpenBLAS sgemv for W0 and for the selected experts' A and B^T rows.
       2 <= T <= 16: molora's own multi-token kernels (X packed in 16-float panels, 3 rows x 8
       tokens in registers, W prefetched); OpenBLAS sgemm is 4-5x above the memory floor here.
       T > 16: OpenBLAS GEMMs over each run of selected experts.
       When routing selects fewer than 1 in 4 of the (token, rank) pairs (e.g. top-8 of 64
       rank-1 experts), a per-token path gathers just the selected rows instead.
     - A token's result does not depend on the batch it comes in, nor on an ith/nth split,
       beyond float rounding: the tests bound the difference at 1e-5 of the row's largest
       value (measured: 1.1e-6).
     - Threads: molora's kernels are single-threaded; split one call over threads with
       molora_forward_args.ith / nth (each thread its own workspace), and keep OpenBLAS at one
       thread meanwhile (colliding pools cost 1.5-3.5x). molora never changes OpenBLAS threads.

   WHAT WORKS TODAY (v0.1.0)
     Everything above, tested against an independent naive reference (tests/test_core.c), with
     the SIMD kernels and with the portable ones.

   DOES NOT (yet)
     - read files (safetensors, PEFT adapters): planned, not in this version;
     - AlphaLoRA alpha estimation and expert allocation: planned;
     - a caller-supplied parallel-for hook (only the ith/nth split exists);
     - AVX2 versions of the packed small-batch and gather kernels (AVX2 CPUs use row-major and
       portable ones; only AVX-512 was measured);
     - quantised or half-precision weights: float32 only (convert before init);
     - training, gradients, dropout: inference only.
*/
#ifndef MOLORA_H
#define MOLORA_H

#include <stddef.h>
#include <stdint.h>

#define MOLORA_VERSION_MAJOR 0
#define MOLORA_VERSION_MINOR 1
#define MOLORA_VERSION_PATCH 0
#define MOLORA_VERSION_STRING "0.1.0"

#ifndef MOLORA_API
#  ifdef MOLORA_STATIC
#    if defined(__GNUC__) || defined(__clang__)
#      define MOLORA_API static __attribute__((unused))
#    else
#      define MOLORA_API static
#    endif
#  else
#    define MOLORA_API extern
#  endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- results ----------------------------------------------------------------------------- */
typedef enum molora_result {
    MOLORA_RESULT_SUCCESS = 0,
    MOLORA_RESULT_INVALID_ARGUMENT,    /* NULL where not allowed, bad enum or flag value        */
    MOLORA_RESULT_INVALID_SHAPE,       /* d_in, d_out, n_experts, n_tokens out of range          */
    MOLORA_RESULT_INVALID_RANK,        /* an expert's rank < 1                                   */
    MOLORA_RESULT_INVALID_TOP_K,       /* k outside 1..N on a layer with experts                 */
    MOLORA_RESULT_INVALID_VALUE,       /* temperature, tau_max, threshold: negative, NaN, ...    */
    MOLORA_RESULT_MISSING_WEIGHTS,     /* a matrix the routing rule or output mode needs is NULL */
    MOLORA_RESULT_NON_FINITE,          /* NaN or Inf in weights, inputs or gate logits           */
    MOLORA_RESULT_SIZE_OVERFLOW,       /* a size product does not fit in size_t                  */
    MOLORA_RESULT_OUT_OF_MEMORY,
    MOLORA_RESULT_WORKSPACE_TOO_SMALL,
    MOLORA_RESULT_INVALID_LAYER,       /* layer index outside 0..n_layers-1                      */
    MOLORA_RESULT_UNSUPPORTED,
    MOLORA_RESULT_COUNT
} molora_result;

/* A static string naming the result ("MOLORA_RESULT_INVALID_TOP_K: ..."); never NULL. */
MOLORA_API const char *molora_result_string(molora_result result);

/* ---- descriptors (every zero field means its default) ---------------------------------------- */
typedef enum molora_routing {
    MOLORA_ROUTING_DENSE = 0,     /* default */
    MOLORA_ROUTING_TOPK,
    MOLORA_ROUTING_THRESHOLD,
    MOLORA_ROUTING_ADAMOLE,
    MOLORA_ROUTING_MOLE_OUTPUT,
    MOLORA_ROUTING_FIXED,
    MOLORA_ROUTING_COUNT
} molora_routing;

/* One memory hook for the model: both functions or neither (then malloc / free). */
typedef struct molora_memory {
    void *(*alloc)(size_t size, void *user);
    void (*free)(void *ptr, void *user);
    void *user;
} molora_memory;

/* Called with detail for every error the model sees (init and calls). May be NULL. */
typedef void (*molora_log_fn)(void *user, molora_result result, const char *message);

typedef struct molora_expert_desc {
    int rank;                 /* r_i >= 1                                                      */
    const float *A;           /* (rank, d_in), row-major: lora_A.weight                        */
    const float *B;           /* (d_out, rank), row-major: lora_B.weight                       */
    float scaling;            /* s_i; 0 = derive: lora_alpha / rank (rsLoRA: / sqrt(rank))     */
    float lora_alpha;         /* used when scaling == 0; 0 = rank (so s = 1 without rsLoRA)    */
    int use_rslora;           /* nonzero: s = lora_alpha / sqrt(rank)                          */
} molora_expert_desc;

typedef struct molora_layer_desc {
    int d_in, d_out;                     /* >= 1                                               */
    int n_experts;                       /* N >= 0; 0 = the frozen layer alone                 */
    const molora_expert_desc *experts;   /* (n_experts)                                        */
    const float *W0;                     /* (d_out, d_in), optional; needed for full output    */
    const float *bias;                   /* (d_out), optional                                  */
    molora_routing routing;              /* default DENSE; ignored when n_experts == 0         */
    const float *gate_weight;            /* Wg (n_experts, d_in): DENSE, TOPK, THRESHOLD, ADAMOLE */
    const float *gate_bias;              /* (n_experts), optional; added to every rule's logits */
    float temperature;                   /* > 0; 0 = 1. Divides the logits before every softmax */
    int top_k;                           /* TOPK: 1..N; 0 = AlphaLoRA's rule (2 if N > 1 else 1) */
    float threshold;                     /* THRESHOLD: static threshold on p_i (finite)         */
    int tau_max_set;                     /* ADAMOLE: nonzero = use tau_max below ...            */
    float tau_max;                       /* ... (>= 0, finite); else 1/N (max_threshold=None)   */
    const float *threshold_weight;       /* ADAMOLE: wt (d_in) = lora_threshold.weight          */
    float threshold_bias;                /* ADAMOLE: bt = lora_threshold.bias                   */
    const float *mole_gate;              /* MOLE_OUTPUT: e^T (n_experts, n_experts * d_out),
                                            i.e. nn.Linear(N*d_out, N).weight                   */
} molora_layer_desc;

enum {
    MOLORA_MODEL_COPY_WEIGHTS = 1        /* copy W0, bias and mole_gate instead of borrowing    */
};

typedef struct molora_model_desc {
    int n_layers;                        /* >= 0                                                */
    const molora_layer_desc *layers;     /* (n_layers)                                          */
    unsigned flags;                      /* MOLORA_MODEL_*                                      */
    molora_memory memory;                /* default malloc / free                               */
    molora_log_fn log;                   /* optional                                            */
    void *log_user;
} molora_model_desc;

typedef struct molora_model molora_model;   /* opaque, immutable after init */

/* Validates the whole descriptor, packs the experts and returns the model in *out.
   Return Value: SUCCESS, or the first problem found (*out is then NULL, nothing leaked).
   Checks: shapes, ranks, k, temperature, tau_max, threshold, missing matrices, NaN/Inf in
   every weight (W0 included), size overflow. */
MOLORA_API molora_result molora_model_init(const molora_model_desc *desc, molora_model **out);
MOLORA_API void molora_model_free(molora_model *model);   /* NULL is a no-op */

typedef struct molora_layer_info {
    int d_in, d_out, n_experts;
    int rank_total;                      /* sum of the experts' ranks                          */
    molora_routing routing;
    int top_k;                           /* effective k (TOPK), else 0                          */
    float temperature, threshold, tau_max;  /* effective values (tau_max resolved to 1/N)      */
    int has_W0, has_bias, has_gate_bias;
} molora_layer_info;

MOLORA_API int molora_model_n_layers(const molora_model *model);
MOLORA_API molora_result molora_layer_get_info(const molora_model *model, int layer,
                                               molora_layer_info *info);
/* Rank and scaling of one expert (either out pointer may be NULL). */
MOLORA_API molora_result molora_expert_get(const molora_model *model, int layer, int expert,
                                           int *rank, float *scaling);

/* ---- forward ------------------------------------------------------------------------------ */
typedef enum molora_output {
    MOLORA_OUTPUT_FULL = 0,    /* Y = X W0^T + b + delta (needs W0)                            */
    MOLORA_OUTPUT_DELTA        /* Y += delta (Y holds the engine's own base output)            */
} molora_output;

/* Which kernels a forward call used (reported through molora_forward_args.path_out). */
typedef enum molora_path {
    MOLORA_PATH_NONE = 0,      /* nothing to compute (T = 0, or routing only)                  */
    MOLORA_PATH_DECODE,        /* T = 1: matrix-vector, only the selected experts are read     */
    MOLORA_PATH_SMALL,         /* 2 <= T <= 16: molora's own SIMD multi-token kernels           */
    MOLORA_PATH_GEMM,          /* T > 16: BLAS GEMMs over the experts some token selects        */
    MOLORA_PATH_SPARSE         /* per-token expert products: routing selects few (token, expert) pairs */
} molora_path;

typedef struct molora_forward_args {
    int layer;                     /* 0..n_layers-1                                            */
    int n_tokens;                  /* T >= 0; T = 0 is a no-op                                 */
    const float *x;                /* (T, d_in), row-major                                     */
    float *y;                      /* (T, d_out); written (FULL) or accumulated into (DELTA)   */
    molora_output output;
    const uint8_t *expert_mask;    /* optional: 1 keeps an expert, 0 removes it;
                                      (N) for the batch, or (T, N) with mask_per_token          */
    int mask_per_token;
    const float *weights;          /* optional fixed routing weights replacing the router:
                                      (N) for the batch, or (T, N) with weights_per_token;
                                      masked entries become 0, the others are used as given    */
    int weights_per_token;
    float *weights_out;            /* optional (T, N): the routing weights applied             */
    int32_t *counts_out;           /* optional (N): tokens with a nonzero weight per expert    */
    void *workspace;               /* molora_workspace_size() bytes for at least T tokens      */
    size_t workspace_size;
    int ith, nth;                  /* optional split of one call over nth threads (0 = none):
                                      caller ith of nth writes its share of Y's columns; each
                                      needs its own workspace; weights_out / counts_out are
                                      written by ith 0. The routing is computed by every caller. */
    molora_path *path_out;         /* optional: the path this call took                        */
} molora_forward_args;

/* Bytes of workspace for calls of up to max_tokens tokens on any layer of the model. */
MOLORA_API molora_result molora_workspace_size(const molora_model *model, int max_tokens,
                                               size_t *size);
/* One forward call of one layer over T tokens. Thread safety: see the doc block. */
MOLORA_API molora_result molora_forward(const molora_model *model, const molora_forward_args *args);
/* Routing only: fills args->weights_out (required) and counts_out; y and output are ignored. */
MOLORA_API molora_result molora_route(const molora_model *model, const molora_forward_args *args);

/* Merge: W (d_out, d_in) += sum_i weights[i] * s_i * B_i A_i. Copy W0 into W first to get
   the merged layer (static routing at zero runtime cost). weights: (N), finite. */
MOLORA_API molora_result molora_merge(const molora_model *model, int layer, const float *weights,
                                      float *W);

#ifdef __cplusplus
}
#endif
#endif /* MOLORA_H */

/* ============================================================================================ */
#ifdef MOLORA_IMPLEMENTATION
#ifndef MOLORA__IMPLEMENTED
#define MOLORA__IMPLEMENTED

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef MOLORA_NO_BLAS
#include <cblas.h>
#endif
#ifndef MOLORA_ASSERT
#include <assert.h>
#define MOLORA_ASSERT(c) assert(c)
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MOLORA__PRIVATE static __attribute__((unused))
#else
#define MOLORA__PRIVATE static
#endif
#define MOLORA__ALIGN 64

/* ---- [results] ------------------------------------------------------------------------------ */
MOLORA_API const char *molora_result_string(molora_result r)
{
    switch (r) {
    case MOLORA_RESULT_SUCCESS: return "MOLORA_RESULT_SUCCESS: success";
    case MOLORA_RESULT_INVALID_ARGUMENT: return "MOLORA_RESULT_INVALID_ARGUMENT: invalid argument";
    case MOLORA_RESULT_INVALID_SHAPE: return "MOLORA_RESULT_INVALID_SHAPE: invalid shape";
    case MOLORA_RESULT_INVALID_RANK: return "MOLORA_RESULT_INVALID_RANK: expert rank must be >= 1";
    case MOLORA_RESULT_INVALID_TOP_K: return "MOLORA_RESULT_INVALID_TOP_K: top_k outside 1..n_experts";
    case MOLORA_RESULT_INVALID_VALUE: return "MOLORA_RESULT_INVALID_VALUE: invalid parameter value";
    case MOLORA_RESULT_MISSING_WEIGHTS: return "MOLORA_RESULT_MISSING_WEIGHTS: a required weight matrix is missing";
    case MOLORA_RESULT_NON_FINITE: return "MOLORA_RESULT_NON_FINITE: NaN or Inf value";
    case MOLORA_RESULT_SIZE_OVERFLOW: return "MOLORA_RESULT_SIZE_OVERFLOW: size does not fit in size_t";
    case MOLORA_RESULT_OUT_OF_MEMORY: return "MOLORA_RESULT_OUT_OF_MEMORY: out of memory";
    case MOLORA_RESULT_WORKSPACE_TOO_SMALL: return "MOLORA_RESULT_WORKSPACE_TOO_SMALL: workspace too small";
    case MOLORA_RESULT_INVALID_LAYER: return "MOLORA_RESULT_INVALID_LAYER: no such layer";
    case MOLORA_RESULT_UNSUPPORTED: return "MOLORA_RESULT_UNSUPPORTED: not supported by this build";
    default: return "MOLORA_RESULT_UNKNOWN: unknown result code";
    }
}

/* ---- [internal types] ----------------------------------------------------------------------- */
typedef struct molora__layer {
    int d_in, d_out, n;          /* n = number of experts                                      */
    int routing, top_k;
    float temperature, threshold, tau_max, thr_bias;
    int r_total;                 /* sum of ranks                                               */
    int n_rows;                  /* rows of A: r_total + gate rows + threshold row             */
    int gate_row, thr_row;       /* row offsets in A, -1 when absent                           */
    int *rank, *offset;          /* (n) rank and first row of each expert in A / column in B  */
    float *scaling;              /* (n)                                                        */
    float *A;                    /* (n_rows, d_in)  [A_0; ...; A_{n-1}; Wg; wt]                */
    float *BT;                   /* (r_total, d_out) [B_0^T; ...; B_{n-1}^T]: an expert's B is
                                    contiguous, so decode reads only the selected experts       */
    float *gate_bias;            /* (n) or NULL                                                */
    const float *W0, *bias, *mole_gate;
} molora__layer;

struct molora_model {
    int n_layers;
    molora__layer *layers;
    molora_memory memory;
    molora_log_fn log;
    void *log_user;
    void *block;                 /* the one allocation                                         */
};

typedef struct molora__logger { molora_log_fn fn; void *user; } molora__logger;

MOLORA__PRIVATE molora_result molora__fail(const molora__logger *lg, molora_result r, const char *fmt, ...)
{
    if (lg && lg->fn) {
        char msg[320];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        lg->fn(lg->user, r, msg);
    }
    return r;
}

/* ---- [size maths] ---------------------------------------------------------------------------- */
MOLORA__PRIVATE int molora__mul(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > (size_t)-1 / a) return 0;
    *out = a * b;
    return 1;
}
/* *out = a * b floats, 0 unless the byte size fits in a ptrdiff_t (an addressable array) */
MOLORA__PRIVATE int molora__floats(size_t a, size_t b, size_t *out)
{
    size_t bytes;
    if (!molora__mul(a, b, out) || !molora__mul(*out, sizeof(float), &bytes)) return 0;
    return bytes <= (size_t)PTRDIFF_MAX;
}
MOLORA__PRIVATE int molora__add(size_t a, size_t b, size_t *out)
{
    if (b > (size_t)-1 - a) return 0;
    *out = a + b;
    return 1;
}
/* *acc += round_up(bytes, 64); 0 on overflow */
MOLORA__PRIVATE int molora__reserve(size_t *acc, size_t n, size_t elem)
{
    size_t bytes;
    if (!molora__mul(n, elem, &bytes)) return 0;
    if (!molora__add(bytes, MOLORA__ALIGN - 1, &bytes)) return 0;
    bytes &= ~(size_t)(MOLORA__ALIGN - 1);
    return molora__add(*acc, bytes, acc);
}
MOLORA__PRIVATE void *molora__carve(unsigned char **cursor, size_t n, size_t elem)
{
    void *p = *cursor;
    size_t bytes = (n * elem + MOLORA__ALIGN - 1) & ~(size_t)(MOLORA__ALIGN - 1);
    *cursor += bytes;
    return p;
}
MOLORA__PRIVATE unsigned char *molora__align_up(void *p)
{
    uintptr_t u = (uintptr_t)p;
    return (unsigned char *)p + ((MOLORA__ALIGN - (u & (MOLORA__ALIGN - 1))) & (MOLORA__ALIGN - 1));
}
/* 1 when no value is NaN or Inf: exponent bits tested in blocks, so the loop vectorises */
MOLORA__PRIVATE int molora__all_finite_c(const float *v, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t e = n - i > 4096 ? i + 4096 : n;
        uint32_t bad = 0;
        for (; i < e; i++) {
            uint32_t u;
            memcpy(&u, v + i, sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad) return 0;
    }
    return 1;
}


/* ---- [kernels] ------------------------------------------------------------------------------
   Two small-batch kernels, each in a portable, an AVX2 and an AVX-512 version picked at run
   time (a plain -O2 build still uses the wide units; MOLORA_PORTABLE=1 in the environment or
   the MOLORA_NO_SIMD macro forces the portable one, e.g. for valgrind):
     nt: Y (T, N) = alpha * X (T, K) W (N, K)^T (+ Y if acc)    T <= 16 rows of X stream W once
     nn: Y (T, N) += H (T, K) B (K, N)                           B rows read once for all T
   They are the decode and small-batch paths, where OpenBLAS sgemm is 4-5x above the
   memory floor; large batches go to BLAS. */
typedef void (*molora__nt_fn)(int T, int N, int K, float alpha, const float *X, int ldx, const float *W,
                              int ldw, float *Y, int ldy, int acc);
typedef void (*molora__nn_fn)(int T, int N, int K, const float *H, int ldh, const float *B, int ldb,
                              float *Y, int ldy);
/* gather forms for the sparse path, over R arbitrary rows: out[r] = rows[r] . x (K); and
   y (N) += sum_r coef[r] * rows[r] (N) */
typedef void (*molora__dots_fn)(int R, const float *const *rows, const float *x, int K, float *out);
typedef void (*molora__axpys_fn)(int R, const float *const *rows, const float *coef, float *y, int N);
/* ntp: nt with X packed by molora__pack_x (panels of 16 floats per token, W's 64-byte phase q),
   so the hot loop reads X through one pointer at constant offsets and W with aligned loads */
typedef void (*molora__ntp_fn)(int T, int N, int K, int q, float alpha, const float *P, const float *W, int ldw,
                               float *Y, int ldy, int acc);
typedef struct molora__kernels {
    molora__nt_fn nt; molora__nn_fn nn; molora__dots_fn dots; molora__axpys_fn axpys;
    molora__ntp_fn ntp;   /* NULL: use nt on row-major X */
    int (*finite)(const float *v, size_t n);
    const char *name;
} molora__kernels;

/* 64-byte phase of a float pointer, in floats (0 when not even 4-byte aligned) */
MOLORA__PRIVATE int molora__phase(const float *p)
{
    return ((uintptr_t)p & 3) ? 0 : (int)(((uintptr_t)p & 63) / 4);
}
/* Packs T rows of X (K wide) in blocks of 8 tokens: chunk c of token t holds X[t, 16c - q ..
   16c - q + 15] (zero outside 0..K-1) at P + t0 * nc * 16 + (c * tb + t) * 16. P 64-byte aligned. */
MOLORA__PRIVATE void molora__pack_x(const float *X, int ldx, int T, int K, int q, float *P)
{
    int nc = (K + q + 15) / 16, t0, c, t, l;
    for (t0 = 0; t0 < T; t0 += 8) {
        int tb = T - t0 < 8 ? T - t0 : 8;
        float *blk = P + (size_t)t0 * nc * 16;
        for (c = 0; c < nc; c++)
            for (t = 0; t < tb; t++) {
                float *dst = blk + ((size_t)c * tb + t) * 16;
                const float *src = X + (size_t)(t0 + t) * ldx;
                int k0 = 16 * c - q;
                if (k0 >= 0 && k0 + 16 <= K) memcpy(dst, src + k0, 16 * sizeof(float));
                else for (l = 0; l < 16; l++) dst[l] = (k0 + l >= 0 && k0 + l < K) ? src[k0 + l] : 0.0f;
            }
    }
}
MOLORA__PRIVATE size_t molora__pack_floats(int T, int K) { return (size_t)T * (((size_t)K + 31) & ~(size_t)15); }
#define MOLORA__SMALL_T 16   /* up to this many tokens the own kernels beat OpenBLAS sgemm here */

MOLORA__PRIVATE void molora__nt_c(int T, int N, int K, float alpha, const float *X, int ldx, const float *W,
                                  int ldw, float *Y, int ldy, int acc)
{
    int t, n, k;
    for (n = 0; n < N; n++) {
        const float *w = W + (size_t)n * ldw;
        for (t = 0; t < T; t++) {
            const float *x = X + (size_t)t * ldx;
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0, *y = Y + (size_t)t * ldy + n;
            for (k = 0; k + 4 <= K; k += 4) {
                s0 += x[k] * w[k]; s1 += x[k + 1] * w[k + 1];
                s2 += x[k + 2] * w[k + 2]; s3 += x[k + 3] * w[k + 3];
            }
            for (; k < K; k++) s0 += x[k] * w[k];
            *y = (acc ? *y : 0.0f) + alpha * ((s0 + s1) + (s2 + s3));
        }
    }
}

MOLORA__PRIVATE void molora__nn_c(int T, int N, int K, const float *H, int ldh, const float *B, int ldb,
                                  float *Y, int ldy)
{
    int t, n, k;
    for (t = 0; t < T; t++) {
        float *y = Y + (size_t)t * ldy;
        for (k = 0; k < K; k++) {
            float h = H[(size_t)t * ldh + k];
            const float *b = B + (size_t)k * ldb;
            if (h == 0.0f) continue;
            for (n = 0; n < N; n++) y[n] += h * b[n];
        }
    }
}

MOLORA__PRIVATE void molora__dots_c(int R, const float *const *rows, const float *x, int K, float *out)
{
    int r;
    for (r = 0; r < R; r++) molora__nt_c(1, 1, K, 1.0f, x, K, rows[r], K, out + r, 1, 0);
}
MOLORA__PRIVATE void molora__axpys_c(int R, const float *const *rows, const float *coef, float *y, int N)
{
    int r, n;
    for (r = 0; r < R; r++)
        for (n = 0; n < N; n++) y[n] += coef[r] * rows[r][n];
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && !defined(MOLORA_NO_SIMD)
#define MOLORA__X86 1
#include <immintrin.h>
#define MOLORA__T512 __attribute__((target("avx512f,avx2,fma")))
#define MOLORA__T256 __attribute__((target("avx2,fma")))
#define MOLORA__INLINE static inline __attribute__((always_inline, unused))
#define MOLORA__UNROLL _Pragma("GCC unroll 16")

/* TB tokens against R rows of W (both constants after inlining: the accumulators live in
   registers); the caller steps through W's rows R at a time */
#define MOLORA__NT_ROWS(VEC, LANES, ZERO, LOAD, FMA, REDUCE)                                           \
    int t, k, kk, r, p = (int)(((64 - ((uintptr_t)W & 63)) & 63) / 4);                             \
    VEC acc_[MOLORA__RMAX][MOLORA__TBMAX];                                                         \
    if (((uintptr_t)W & 3) != 0 || p > K) p = 0;   /* peel p steps: W's loads aligned after it */  \
    MOLORA__UNROLL for (r = 0; r < R; r++) MOLORA__UNROLL for (t = 0; t < TB; t++) acc_[r][t] = ZERO; \
    for (k = p; k + LANES <= K; k += LANES) {                                                      \
        VEC v_[MOLORA__RMAX];                                                                      \
        MOLORA__UNROLL for (r = 0; r < R; r++) v_[r] = LOAD(W + (size_t)r * ldw + k);              \
        MOLORA__UNROLL for (t = 0; t < TB; t++) {                                                  \
            VEC x = LOAD(X + (size_t)t * ldx + k);                                                 \
            MOLORA__UNROLL for (r = 0; r < R; r++) acc_[r][t] = FMA(v_[r], x, acc_[r][t]);         \
        }                                                                                          \
    }                                                                                              \
    MOLORA__UNROLL for (r = 0; r < R; r++) {                                                       \
        const float *w = W + (size_t)r * ldw;                                                      \
        MOLORA__UNROLL for (t = 0; t < TB; t++) {                                                  \
            const float *x = X + (size_t)t * ldx;                                                  \
            float *y = Y + (size_t)t * ldy + r, s0 = REDUCE(acc_[r][t]);                           \
            for (kk = 0; kk < p; kk++) s0 += x[kk] * w[kk];                                        \
            for (kk = k; kk < K; kk++) s0 += x[kk] * w[kk];                                        \
            y[0] = (acc ? y[0] : 0.0f) + alpha * s0;                                               \
        }                                                                                          \
    }

MOLORA__T256 static inline float molora__hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
MOLORA__T512 static inline float molora__hsum512(__m512 v)
{
    __m256 lo = _mm512_castps512_ps256(v), hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define MOLORA__TBMAX 8
#define MOLORA__RMAX 3
#ifndef MOLORA__PFD
#define MOLORA__PFD 512   /* W prefetch distance in floats: 4.3 ms vs 5.2 ms at T=8, d=4096 here */
#endif
MOLORA__INLINE MOLORA__T512 void molora__nt512_rows(const int TB, const int R, int K, float alpha, const float *X,
                                                    int ldx, const float *W, int ldw, float *Y, int ldy, int acc)
{
    MOLORA__NT_ROWS(__m512, 16, _mm512_setzero_ps(), _mm512_loadu_ps, _mm512_fmadd_ps, molora__hsum512)
}
MOLORA__INLINE MOLORA__T256 void molora__nt256_rows(const int TB, const int R, int K, float alpha, const float *X,
                                                    int ldx, const float *W, int ldw, float *Y, int ldy, int acc)
{
    MOLORA__NT_ROWS(__m256, 8, _mm256_setzero_ps(), _mm256_loadu_ps, _mm256_fmadd_ps, molora__hsum256)
}
/* all N rows for TB tokens: 3 rows at a time with AVX-512 (24 accumulators), 2 with AVX2 */
MOLORA__INLINE MOLORA__T512 void molora__nt512_tb(const int TB, int N, int K, float alpha, const float *X, int ldx,
                                                  const float *W, int ldw, float *Y, int ldy, int acc)
{
    int n = 0;
    for (; n + 3 <= N; n += 3) molora__nt512_rows(TB, 3, K, alpha, X, ldx, W + (size_t)n * ldw, ldw, Y + n, ldy, acc);
    for (; n < N; n++) molora__nt512_rows(TB, 1, K, alpha, X, ldx, W + (size_t)n * ldw, ldw, Y + n, ldy, acc);
}
MOLORA__INLINE MOLORA__T256 void molora__nt256_tb(const int TB, int N, int K, float alpha, const float *X, int ldx,
                                                  const float *W, int ldw, float *Y, int ldy, int acc)
{
    int n = 0;
    if (TB <= 4) for (; n + 2 <= N; n += 2) molora__nt256_rows(TB, 2, K, alpha, X, ldx, W + (size_t)n * ldw, ldw, Y + n, ldy, acc);
    for (; n < N; n++) molora__nt256_rows(TB, 1, K, alpha, X, ldx, W + (size_t)n * ldw, ldw, Y + n, ldy, acc);
}

/* ntp: TB tokens x R rows over packed X; W read from W - q in aligned 16-float chunks, the
   first and last chunks masked (masked lanes are never touched, so reading before the row is safe) */
MOLORA__INLINE MOLORA__T512 void molora__ntp512_rows(const int TB, const int R, int K, int q, float alpha,
                                                     const float *P, const float *W, int ldw, float *Y, int ldy, int acc)
{
    int c, t, r, nc = (K + q + 15) / 16;
    __m512 acc_[MOLORA__RMAX][MOLORA__TBMAX];
    const float *w0 = W - q;
    MOLORA__UNROLL for (r = 0; r < R; r++) MOLORA__UNROLL for (t = 0; t < TB; t++) acc_[r][t] = _mm512_setzero_ps();
    for (c = 0; c < nc; c++) {
        __m512 v_[MOLORA__RMAX];
        const float *xp = P + (size_t)c * TB * 16;
        __mmask16 m = (__mmask16)0xFFFF;
        if (c == 0 || c == nc - 1) {
            int lo = q - 16 * c, hi = K + q - 16 * c;
            unsigned mm = hi >= 16 ? 0xFFFFu : ((1u << hi) - 1u);
            if (lo > 0) mm &= ~((1u << lo) - 1u);
            m = (__mmask16)mm;
        }
        MOLORA__UNROLL for (r = 0; r < R; r++) {
            v_[r] = _mm512_maskz_loadu_ps(m, w0 + (size_t)r * ldw + 16 * c);
#if MOLORA__PFD > 0
            _mm_prefetch((const char *)(w0 + (size_t)r * ldw + 16 * c + MOLORA__PFD), _MM_HINT_T0);
#endif
        }
        MOLORA__UNROLL for (t = 0; t < TB; t++) {
            __m512 x = _mm512_load_ps(xp + 16 * t);
            MOLORA__UNROLL for (r = 0; r < R; r++) acc_[r][t] = _mm512_fmadd_ps(v_[r], x, acc_[r][t]);
        }
    }
    MOLORA__UNROLL for (r = 0; r < R; r++)
        MOLORA__UNROLL for (t = 0; t < TB; t++) {
            float *y = Y + (size_t)t * ldy + r;
            y[0] = (acc ? y[0] : 0.0f) + alpha * molora__hsum512(acc_[r][t]);
        }
}
MOLORA__INLINE MOLORA__T512 void molora__ntp512_tb(const int TB, int N, int K, int q, float alpha, const float *P,
                                                   const float *W, int ldw, float *Y, int ldy, int acc)
{
    int n = 0;
    for (; n + 3 <= N; n += 3) molora__ntp512_rows(TB, 3, K, q, alpha, P, W + (size_t)n * ldw, ldw, Y + n, ldy, acc);
    for (; n < N; n++) molora__ntp512_rows(TB, 1, K, q, alpha, P, W + (size_t)n * ldw, ldw, Y + n, ldy, acc);
}
MOLORA__PRIVATE MOLORA__T512 void molora__ntp_avx512(int T, int N, int K, int q, float alpha, const float *P,
                                                     const float *W, int ldw, float *Y, int ldy, int acc)
{
    int t0, nc = (K + q + 15) / 16;
    for (t0 = 0; t0 < T; t0 += 8) {
        const float *p = P + (size_t)t0 * nc * 16;
        float *y = Y + (size_t)t0 * ldy;
        switch (T - t0 >= 8 ? 8 : T - t0) {
        case 1: molora__ntp512_tb(1, N, K, q, alpha, p, W, ldw, y, ldy, acc); break;
        case 2: molora__ntp512_tb(2, N, K, q, alpha, p, W, ldw, y, ldy, acc); break;
        case 3: molora__ntp512_tb(3, N, K, q, alpha, p, W, ldw, y, ldy, acc); break;
        case 4: molora__ntp512_tb(4, N, K, q, alpha, p, W, ldw, y, ldy, acc); break;
        case 5: molora__ntp512_tb(5, N, K, q, alpha, p, W, ldw, y, ldy, acc); break;
        case 6: molora__ntp512_tb(6, N, K, q, alpha, p, W, ldw, y, ldy, acc); break;
        case 7: molora__ntp512_tb(7, N, K, q, alpha, p, W, ldw, y, ldy, acc); break;
        default: molora__ntp512_tb(8, N, K, q, alpha, p, W, ldw, y, ldy, acc); break;
        }
    }
}

/* dispatch TB = 1..8 to constant-folded copies of the body */
#ifndef MOLORA__NT_KBLOCK
#define MOLORA__NT_KBLOCK (1 << 30)   /* K per pass; blocking K (to keep X in L1) measured slower: it fragments the W streams */
#endif
#define MOLORA__NT_DISPATCH(FN)                                                                        \
    int t0, k0;                                                                                    \
    for (t0 = 0; t0 < T; t0 += 8)                                                                  \
        for (k0 = 0; k0 < K; k0 += MOLORA__NT_KBLOCK) {                                            \
            const float *x = X + (size_t)t0 * ldx + k0, *w = W + k0;                               \
            float *y = Y + (size_t)t0 * ldy;                                                       \
            int kb = K - k0 < MOLORA__NT_KBLOCK ? K - k0 : MOLORA__NT_KBLOCK, ac = acc || k0 > 0;  \
            switch (T - t0 >= 8 ? 8 : T - t0) {                                                    \
            case 1: FN(1, N, kb, alpha, x, ldx, w, ldw, y, ldy, ac); break;                        \
            case 2: FN(2, N, kb, alpha, x, ldx, w, ldw, y, ldy, ac); break;                        \
            case 3: FN(3, N, kb, alpha, x, ldx, w, ldw, y, ldy, ac); break;                        \
            case 4: FN(4, N, kb, alpha, x, ldx, w, ldw, y, ldy, ac); break;                        \
            case 5: FN(5, N, kb, alpha, x, ldx, w, ldw, y, ldy, ac); break;                        \
            case 6: FN(6, N, kb, alpha, x, ldx, w, ldw, y, ldy, ac); break;                        \
            case 7: FN(7, N, kb, alpha, x, ldx, w, ldw, y, ldy, ac); break;                        \
            default: FN(8, N, kb, alpha, x, ldx, w, ldw, y, ldy, ac); break;                       \
            }                                                                                      \
        }
MOLORA__PRIVATE MOLORA__T512 void molora__nt_avx512(int T, int N, int K, float alpha, const float *X, int ldx,
                                                    const float *W, int ldw, float *Y, int ldy, int acc)
{
    MOLORA__NT_DISPATCH(molora__nt512_tb)
}
MOLORA__PRIVATE MOLORA__T256 void molora__nt_avx2(int T, int N, int K, float alpha, const float *X, int ldx,
                                                  const float *W, int ldw, float *Y, int ldy, int acc)
{
    MOLORA__NT_DISPATCH(molora__nt256_tb)
}

/* nn: blocks of 8 rows of B streamed along N together; per 16 (8) columns all T <= 16 (8)
   tokens accumulate in registers, so Y is loaded and stored once per block of 8 rows */
MOLORA__PRIVATE MOLORA__T512 void molora__nn_avx512(int T, int N, int K, const float *H, int ldh, const float *B,
                                                    int ldb, float *Y, int ldy)
{
    int t0, t, n, k0, k;
    for (t0 = 0; t0 < T; t0 += 16) {
        int tb = T - t0 >= 16 ? 16 : T - t0;
        const float *h = H + (size_t)t0 * ldh;
        float *y = Y + (size_t)t0 * ldy;
        for (k0 = 0; k0 < K; k0 += 8) {
            int kb = K - k0 >= 8 ? 8 : K - k0;
            for (n = 0; n < N; n += 16) {
                __mmask16 m = N - n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (N - n)) - 1);
                __m512 acc[16], b[8];
                for (k = 0; k < kb; k++) b[k] = _mm512_maskz_loadu_ps(m, B + (size_t)(k0 + k) * ldb + n);
                for (t = 0; t < tb; t++) {
                    acc[t] = _mm512_maskz_loadu_ps(m, y + (size_t)t * ldy + n);
                    for (k = 0; k < kb; k++) acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(h[(size_t)t * ldh + k0 + k]), b[k], acc[t]);
                    _mm512_mask_storeu_ps(y + (size_t)t * ldy + n, m, acc[t]);
                }
            }
        }
    }
}
MOLORA__PRIVATE MOLORA__T256 void molora__nn_avx2(int T, int N, int K, const float *H, int ldh, const float *B,
                                                  int ldb, float *Y, int ldy)
{
    int t0, t, n, k;
    for (t0 = 0; t0 < T; t0 += 8) {
        int tb = T - t0 >= 8 ? 8 : T - t0;
        const float *h = H + (size_t)t0 * ldh;
        float *y = Y + (size_t)t0 * ldy;
        for (n = 0; n + 8 <= N; n += 8) {
            __m256 acc[8];
            for (t = 0; t < tb; t++) acc[t] = _mm256_loadu_ps(y + (size_t)t * ldy + n);
            for (k = 0; k < K; k++) {
                __m256 b = _mm256_loadu_ps(B + (size_t)k * ldb + n);
                for (t = 0; t < tb; t++) acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(h[(size_t)t * ldh + k]), b, acc[t]);
            }
            for (t = 0; t < tb; t++) _mm256_storeu_ps(y + (size_t)t * ldy + n, acc[t]);
        }
        if (n < N) molora__nn_c(tb, N - n, K, h, ldh, B + n, ldb, y + n, ldy);
    }
}
/* gather kernels: 8 rows share each load of x; all rows share each load and store of y */
MOLORA__PRIVATE MOLORA__T512 void molora__dots_avx512(int R, const float *const *rows, const float *x, int K, float *out)
{
    int r0, r, k, kk;
    for (r0 = 0; r0 < R; r0 += 8) {
        int rb = R - r0 < 8 ? R - r0 : 8;
        __m512 acc[8];
        for (r = 0; r < 8; r++) acc[r] = _mm512_setzero_ps();
        for (k = 0; k + 16 <= K; k += 16) {
            __m512 xv = _mm512_loadu_ps(x + k);
            for (r = 0; r < rb; r++) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(rows[r0 + r] + k), xv, acc[r]);
        }
        for (r = 0; r < rb; r++) {
            float s0 = molora__hsum512(acc[r]);
            for (kk = k; kk < K; kk++) s0 += rows[r0 + r][kk] * x[kk];
            out[r0 + r] = s0;
        }
    }
}
MOLORA__PRIVATE MOLORA__T512 void molora__axpys_avx512(int R, const float *const *rows, const float *coef, float *y, int N)
{
    int r, n;
    for (n = 0; n < N; n += 16) {
        __mmask16 m = N - n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (N - n)) - 1);
        __m512 acc = _mm512_maskz_loadu_ps(m, y + n);
        for (r = 0; r < R; r++) acc = _mm512_fmadd_ps(_mm512_set1_ps(coef[r]), _mm512_maskz_loadu_ps(m, rows[r] + n), acc);
        _mm512_mask_storeu_ps(y + n, m, acc);
    }
}
MOLORA__PRIVATE MOLORA__T512 int molora__all_finite_avx512(const float *v, size_t n)
{
    const __m512 inf = _mm512_set1_ps(INFINITY);
    size_t i = 0;
    __mmask16 ok = 0xFFFF;
    for (; i + 16 <= n; i += 16) {   /* |v| < inf is false for Inf and NaN */
        ok &= _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(v + i)), inf, _CMP_LT_OQ);
        if ((i & 4095) == 0 && ok != 0xFFFF) return 0;
    }
    return ok == 0xFFFF && molora__all_finite_c(v + i, n - i);
}
#endif /* MOLORA__X86 */

/* The kernels for this CPU, chosen once (a benign race: every thread stores the same value). */
MOLORA__PRIVATE const molora__kernels *molora__get_kernels(void)
{
    static const molora__kernels portable = {molora__nt_c, molora__nn_c, molora__dots_c, molora__axpys_c, NULL,
                                             molora__all_finite_c, "portable"};
#ifdef MOLORA__X86
    static const molora__kernels avx2 = {molora__nt_avx2, molora__nn_avx2, molora__dots_c, molora__axpys_c, NULL,
                                         molora__all_finite_c, "avx2"};
    static const molora__kernels avx512 = {molora__nt_avx512, molora__nn_avx512, molora__dots_avx512, molora__axpys_avx512,
                                           molora__ntp_avx512, molora__all_finite_avx512, "avx512"};
    static const molora__kernels *chosen = NULL;
    const molora__kernels *k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (k) return k;
    {
        const char *env = getenv("MOLORA_PORTABLE");
        __builtin_cpu_init();
        if (env && env[0] && env[0] != '0') k = &portable;
        else if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) k = &avx512;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) k = &avx2;
        else k = &portable;
    }
    __atomic_store_n(&chosen, k, __ATOMIC_RELEASE);
    return k;
#else
    return &portable;
#endif
}

MOLORA__PRIVATE int molora__all_finite(const float *v, size_t n) { return molora__get_kernels()->finite(v, n); }

/* ---- [gemm seam] ---------------------------------------------------------------------------
   C (M, N) = alpha * A (M, K) * op(B) + beta * C, row-major, A never transposed, beta 0 or 1.
   transb != 0: B is (N, K) and op(B) = B^T;  transb == 0: B is (K, N).  beta == 0 never reads C.
   M <= MOLORA__SMALL_T goes to the own kernels, larger M to BLAS (or, without BLAS, to the own
   kernels in blocks of MOLORA__SMALL_T rows). */
MOLORA__PRIVATE void molora__sgemm(int transb, int M, int N, int K, float alpha, const float *A, int lda,
                                   const float *B, int ldb, float beta, float *C, int ldc)
{
    const molora__kernels *kr = molora__get_kernels();
    int m0;
    MOLORA_ASSERT(beta == 0.0f || beta == 1.0f);
    if (M <= 0 || N <= 0) return;
#ifndef MOLORA_NO_BLAS
    if (M > MOLORA__SMALL_T && K > 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                    B, ldb, beta, C, ldc);
        return;
    }
#endif
    for (m0 = 0; m0 < M; m0 += MOLORA__SMALL_T) {
        int mb = M - m0 < MOLORA__SMALL_T ? M - m0 : MOLORA__SMALL_T, t;
        const float *a = A + (size_t)m0 * lda;
        float *c = C + (size_t)m0 * ldc;
        if (transb) { kr->nt(mb, N, K, alpha, a, lda, B, ldb, c, ldc, beta != 0.0f); continue; }
        if (beta == 0.0f) for (t = 0; t < mb; t++) memset(c + (size_t)t * ldc, 0, (size_t)N * sizeof *c);
        if (alpha == 1.0f) { kr->nn(mb, N, K, a, lda, B, ldb, c, ldc); continue; }
        {   /* alpha != 1 (merge only): scale a copy of A's rows, one at a time */
            int k;
            float tmp[256];
            for (t = 0; t < mb; t++) {
                int k0;
                for (k0 = 0; k0 < K; k0 += 256) {
                    int kb = K - k0 < 256 ? K - k0 : 256;
                    for (k = 0; k < kb; k++) tmp[k] = alpha * a[(size_t)t * lda + k0 + k];
                    kr->nn(1, N, kb, tmp, kb, B + (size_t)k0 * ldb, ldb, c + (size_t)t * ldc, ldc);
                }
            }
        }
    }
}

/* ---- [init] ------------------------------------------------------------------------------- */
MOLORA__PRIVATE int molora__needs_gate(int routing)
{
    return routing == MOLORA_ROUTING_DENSE || routing == MOLORA_ROUTING_TOPK ||
           routing == MOLORA_ROUTING_THRESHOLD || routing == MOLORA_ROUTING_ADAMOLE;
}

/* Validates one layer and adds its memory to *bytes. */
MOLORA__PRIVATE molora_result molora__check_layer(const molora_layer_desc *L, int l, int copy,
                                                  const molora__logger *lg, size_t *bytes)
{
    size_t din = (size_t)L->d_in, dout = (size_t)L->d_out, rt = 0, nrows, sz, ng = 0;
    int i, n = L->n_experts;
    if (L->d_in < 1 || L->d_out < 1)
        return molora__fail(lg, MOLORA_RESULT_INVALID_SHAPE, "layer %d: d_in %d, d_out %d (must be >= 1)", l, L->d_in, L->d_out);
    if (n < 0)
        return molora__fail(lg, MOLORA_RESULT_INVALID_SHAPE, "layer %d: n_experts %d (must be >= 0)", l, n);
    if (n > 0 && !L->experts)
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "layer %d: n_experts %d but experts is NULL", l, n);
    if (!molora__floats(din, dout, &sz))
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: d_out * d_in overflows", l);
    if (L->W0 && !molora__all_finite(L->W0, sz))
        return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d: W0 has NaN or Inf", l);
    if (L->bias && !molora__all_finite(L->bias, dout))
        return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d: bias has NaN or Inf", l);
    if (copy) {
        if (L->W0 && !molora__reserve(bytes, sz, sizeof(float)))
            return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: W0 size overflows", l);
        if (L->bias && !molora__reserve(bytes, dout, sizeof(float)))
            return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: bias size overflows", l);
    }
    if (n == 0) return MOLORA_RESULT_SUCCESS;
    if ((int)L->routing < 0 || (int)L->routing >= MOLORA_ROUTING_COUNT)
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "layer %d: unknown routing %d", l, (int)L->routing);
    for (i = 0; i < n; i++) {
        const molora_expert_desc *e = &L->experts[i];
        size_t na, nb;
        if (e->rank < 1)
            return molora__fail(lg, MOLORA_RESULT_INVALID_RANK, "layer %d expert %d: rank %d (must be >= 1)", l, i, e->rank);
        if (!e->A || !e->B)
            return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS, "layer %d expert %d: A or B is NULL", l, i);
        if (!isfinite(e->scaling) || !isfinite(e->lora_alpha))
            return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d expert %d: scaling or lora_alpha is NaN/Inf", l, i);
        if (!molora__add(rt, (size_t)e->rank, &rt) || rt > 0x7fffffff || !molora__floats((size_t)e->rank, din, &na) ||
            !molora__floats((size_t)e->rank, dout, &nb))
            return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d expert %d: rank %d overflows", l, i, e->rank);
        if (!molora__all_finite(e->A, na) || !molora__all_finite(e->B, nb))
            return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d expert %d: A or B has NaN or Inf", l, i);
    }
    if (molora__needs_gate(L->routing) && !L->gate_weight)
        return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS, "layer %d: routing needs gate_weight (N, d_in)", l);
    if (molora__needs_gate(L->routing) && !molora__floats((size_t)n, din, &ng))
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: gate size overflows", l);
    if (molora__needs_gate(L->routing) && !molora__all_finite(L->gate_weight, ng))
        return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d: gate_weight has NaN or Inf", l);
    if (L->gate_bias && !molora__all_finite(L->gate_bias, (size_t)n))
        return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d: gate_bias has NaN or Inf", l);
    if (!(L->temperature >= 0.0f) || !isfinite(L->temperature))
        return molora__fail(lg, MOLORA_RESULT_INVALID_VALUE, "layer %d: temperature %g (must be > 0, or 0 for 1)", l, (double)L->temperature);
    if (L->routing == MOLORA_ROUTING_TOPK && (L->top_k < 0 || L->top_k > n))
        return molora__fail(lg, MOLORA_RESULT_INVALID_TOP_K, "layer %d: top_k %d outside 1..%d", l, L->top_k, n);
    if (L->routing == MOLORA_ROUTING_THRESHOLD && !isfinite(L->threshold))
        return molora__fail(lg, MOLORA_RESULT_INVALID_VALUE, "layer %d: threshold is NaN or Inf", l);
    if (L->routing == MOLORA_ROUTING_ADAMOLE) {
        if (L->tau_max_set && (!(L->tau_max >= 0.0f) || !isfinite(L->tau_max)))
            return molora__fail(lg, MOLORA_RESULT_INVALID_VALUE, "layer %d: tau_max %g (must be finite and >= 0)", l, (double)L->tau_max);
        if (!L->threshold_weight)
            return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS, "layer %d: ADAMOLE needs threshold_weight (d_in)", l);
        if (!molora__all_finite(L->threshold_weight, din) || !isfinite(L->threshold_bias))
            return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d: threshold net has NaN or Inf", l);
    }
    if (L->routing == MOLORA_ROUTING_MOLE_OUTPUT) {
        size_t ne;
        if (!L->mole_gate)
            return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS, "layer %d: MOLE_OUTPUT needs mole_gate (N, N*d_out)", l);
        if (!molora__floats((size_t)n * (size_t)n, dout, &ne) || ne / (size_t)n > 0x7fffffff)
            return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: mole_gate size overflows", l);
        if (!molora__all_finite(L->mole_gate, ne))
            return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d: mole_gate has NaN or Inf", l);
        if (copy && !molora__reserve(bytes, ne, sizeof(float)))
            return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: mole_gate size overflows", l);
    }
    nrows = rt + (molora__needs_gate(L->routing) ? (size_t)n : 0) + (L->routing == MOLORA_ROUTING_ADAMOLE);
    if (nrows > 0x7fffffff || !molora__reserve(bytes, nrows, din * sizeof(float)) || !molora__reserve(bytes, dout, rt * sizeof(float)) ||
        !molora__reserve(bytes, (size_t)n, sizeof(int)) || !molora__reserve(bytes, (size_t)n, sizeof(int)) ||
        !molora__reserve(bytes, (size_t)n, sizeof(float)) || (L->gate_bias && !molora__reserve(bytes, (size_t)n, sizeof(float))))
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: packed expert size overflows", l);
    return MOLORA_RESULT_SUCCESS;
}

MOLORA__PRIVATE void molora__pack_layer(molora__layer *P, const molora_layer_desc *L, int copy, unsigned char **cur)
{
    int i, j, n = L->n_experts, off = 0;
    size_t din = (size_t)L->d_in, dout = (size_t)L->d_out;
    memset(P, 0, sizeof *P);
    P->d_in = L->d_in; P->d_out = L->d_out; P->n = n;
    P->gate_row = P->thr_row = -1;
    P->W0 = L->W0; P->bias = L->bias;
    if (copy && L->W0) P->W0 = (const float *)memcpy(molora__carve(cur, din * dout, sizeof(float)), L->W0, din * dout * sizeof(float));
    if (copy && L->bias) P->bias = (const float *)memcpy(molora__carve(cur, dout, sizeof(float)), L->bias, dout * sizeof(float));
    if (n == 0) { P->routing = MOLORA_ROUTING_FIXED; return; }
    P->routing = (int)L->routing;
    P->temperature = L->temperature > 0.0f ? L->temperature : 1.0f;
    P->top_k = L->routing == MOLORA_ROUTING_TOPK ? (L->top_k ? L->top_k : (n > 1 ? 2 : 1)) : 0;
    P->threshold = L->threshold;
    P->tau_max = L->tau_max_set ? L->tau_max : 1.0f / (float)n;
    P->thr_bias = L->threshold_bias;
    for (i = 0; i < n; i++) P->r_total += L->experts[i].rank;
    P->n_rows = P->r_total;
    if (molora__needs_gate(P->routing)) { P->gate_row = P->n_rows; P->n_rows += n; }
    if (P->routing == MOLORA_ROUTING_ADAMOLE) { P->thr_row = P->n_rows; P->n_rows += 1; }
    P->rank = (int *)molora__carve(cur, (size_t)n, sizeof(int));
    P->offset = (int *)molora__carve(cur, (size_t)n, sizeof(int));
    P->scaling = (float *)molora__carve(cur, (size_t)n, sizeof(float));
    P->A = (float *)molora__carve(cur, (size_t)P->n_rows * din, sizeof(float));
    P->BT = (float *)molora__carve(cur, dout * (size_t)P->r_total, sizeof(float));
    for (i = 0; i < n; i++) {
        const molora_expert_desc *e = &L->experts[i];
        float alpha = e->lora_alpha != 0.0f ? e->lora_alpha : (float)e->rank;
        P->rank[i] = e->rank;
        P->offset[i] = off;
        P->scaling[i] = e->scaling != 0.0f ? e->scaling
                      : (e->use_rslora ? alpha / sqrtf((float)e->rank) : alpha / (float)e->rank);
        memcpy(P->A + (size_t)off * din, e->A, (size_t)e->rank * din * sizeof(float));
        for (j = 0; j < L->d_out; j++) {
            int q;
            for (q = 0; q < e->rank; q++) P->BT[(size_t)(off + q) * dout + j] = e->B[(size_t)j * e->rank + q];
        }
        off += e->rank;
    }
    if (P->gate_row >= 0) memcpy(P->A + (size_t)P->gate_row * din, L->gate_weight, (size_t)n * din * sizeof(float));
    if (P->thr_row >= 0) memcpy(P->A + (size_t)P->thr_row * din, L->threshold_weight, din * sizeof(float));
    if (L->gate_bias) {
        P->gate_bias = (float *)molora__carve(cur, (size_t)n, sizeof(float));
        memcpy(P->gate_bias, L->gate_bias, (size_t)n * sizeof(float));
    }
    P->mole_gate = L->mole_gate;
    if (P->routing == MOLORA_ROUTING_MOLE_OUTPUT && copy) {
        size_t ne = (size_t)n * (size_t)n * dout;
        P->mole_gate = (const float *)memcpy(molora__carve(cur, ne, sizeof(float)), L->mole_gate, ne * sizeof(float));
    }
}

MOLORA_API molora_result molora_model_init(const molora_model_desc *desc, molora_model **out)
{
    molora__logger lg;
    molora_memory mem;
    size_t bytes = 0;
    int l, copy;
    unsigned char *cur;
    void *block;
    molora_model *m;
    molora_result r;
    if (out) *out = NULL;
    if (!desc || !out) return MOLORA_RESULT_INVALID_ARGUMENT;
    lg.fn = desc->log; lg.user = desc->log_user;
    if (desc->n_layers < 0 || (desc->n_layers > 0 && !desc->layers))
        return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "model: n_layers %d with layers %p", desc->n_layers, (const void *)desc->layers);
    if ((desc->flags & ~(unsigned)MOLORA_MODEL_COPY_WEIGHTS) != 0)
        return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "model: unknown flags 0x%x", desc->flags);
    if (!desc->memory.alloc != !desc->memory.free)
        return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "model: memory hook needs both alloc and free");
    copy = (desc->flags & MOLORA_MODEL_COPY_WEIGHTS) != 0;
    mem = desc->memory;
    /* one block: header, layer table, then every layer's packed data, 64-byte aligned */
    if (!molora__reserve(&bytes, 1, sizeof(molora_model)) ||
        !molora__reserve(&bytes, (size_t)desc->n_layers, sizeof(molora__layer)))
        return molora__fail(&lg, MOLORA_RESULT_SIZE_OVERFLOW, "model: layer table overflows");
    for (l = 0; l < desc->n_layers; l++) {
        r = molora__check_layer(&desc->layers[l], l, copy, &lg, &bytes);
        if (r != MOLORA_RESULT_SUCCESS) return r;
    }
    if (!molora__add(bytes, MOLORA__ALIGN, &bytes))
        return molora__fail(&lg, MOLORA_RESULT_SIZE_OVERFLOW, "model: total size overflows");
    block = mem.alloc ? mem.alloc(bytes, mem.user) : malloc(bytes);
    if (!block) return molora__fail(&lg, MOLORA_RESULT_OUT_OF_MEMORY, "model: cannot allocate %zu bytes", bytes);
    cur = molora__align_up(block);
    m = (molora_model *)molora__carve(&cur, 1, sizeof(molora_model));
    m->layers = (molora__layer *)molora__carve(&cur, (size_t)desc->n_layers, sizeof(molora__layer));
    m->n_layers = desc->n_layers;
    m->memory = mem;
    m->log = desc->log; m->log_user = desc->log_user;
    m->block = block;
    for (l = 0; l < desc->n_layers; l++) molora__pack_layer(&m->layers[l], &desc->layers[l], copy, &cur);
    MOLORA_ASSERT((size_t)(cur - (unsigned char *)block) <= bytes);
    *out = m;
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API void molora_model_free(molora_model *m)
{
    if (!m) return;
    if (m->memory.free) m->memory.free(m->block, m->memory.user);
    else free(m->block);
}

MOLORA_API int molora_model_n_layers(const molora_model *m) { return m ? m->n_layers : 0; }

MOLORA_API molora_result molora_layer_get_info(const molora_model *m, int layer, molora_layer_info *info)
{
    const molora__layer *L;
    if (!m || !info) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (layer < 0 || layer >= m->n_layers) return MOLORA_RESULT_INVALID_LAYER;
    L = &m->layers[layer];
    memset(info, 0, sizeof *info);
    info->d_in = L->d_in; info->d_out = L->d_out; info->n_experts = L->n;
    info->rank_total = L->r_total;
    info->routing = (molora_routing)L->routing;
    info->top_k = L->top_k;
    info->temperature = L->temperature; info->threshold = L->threshold; info->tau_max = L->tau_max;
    info->has_W0 = L->W0 != NULL; info->has_bias = L->bias != NULL; info->has_gate_bias = L->gate_bias != NULL;
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API molora_result molora_expert_get(const molora_model *m, int layer, int expert, int *rank, float *scaling)
{
    const molora__layer *L;
    if (!m) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (layer < 0 || layer >= m->n_layers) return MOLORA_RESULT_INVALID_LAYER;
    L = &m->layers[layer];
    if (expert < 0 || expert >= L->n) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (rank) *rank = L->rank[expert];
    if (scaling) *scaling = L->scaling[expert];
    return MOLORA_RESULT_SUCCESS;
}

/* ---- [routing] -----------------------------------------------------------------------------
   Each rule works on one token: z (n) gate logits with bias, allowed(i) from the mask. */

/* v (n): in, the logits, NaN for experts that take no part; out, softmax of v / temperature
   over the others (0 for the rest). Logits are NaN-checked before, so NaN is free as a marker. */
MOLORA__PRIVATE void molora__softmax(float *v, int n, float inv_t)
{
    int i, any = 0, n_top = 0;
    float mx = 0.0f, sum = 0.0f;
    for (i = 0; i < n; i++)
        if (!isnan(v[i])) { v[i] *= inv_t; if (!any || v[i] > mx) mx = v[i]; any = 1; }
    if (!any) { for (i = 0; i < n; i++) v[i] = 0.0f; return; }
    if (isinf(mx)) {   /* logits at +inf share the weight; all at -inf: uniform */
        for (i = 0; i < n; i++) { v[i] = v[i] == mx ? 1.0f : 0.0f; n_top += v[i] != 0.0f; }
        for (i = 0; i < n; i++) v[i] /= (float)n_top;
        return;
    }
    for (i = 0; i < n; i++) { v[i] = isnan(v[i]) ? 0.0f : expf(v[i] - mx); sum += v[i]; }
    for (i = 0; i < n; i++) v[i] /= sum;
}

MOLORA__PRIVATE float molora__sigmoid(float u)
{
    if (u >= 0.0f) return 1.0f / (1.0f + expf(-u));
    { float e = expf(u); return e / (1.0f + e); }
}

/* Weights w (n) of one token for the gate rules: z gate logits (bias added), u the
   threshold-net logit (ADAMOLE), allow the mask row or NULL. */
MOLORA__PRIVATE void molora__route_token(const molora__layer *L, const float *z, float u, const uint8_t *allow, float *w)
{
    int i, c, n = L->n;
    float s = 0.0f;
    if (L->routing == MOLORA_ROUTING_TOPK) {   /* keep the k best allowed, ties to the lowest index */
        for (i = 0; i < n; i++) w[i] = (!allow || allow[i]) ? 0.0f : -1.0f;   /* 0 candidate, 1 chosen */
        for (c = 0; c < L->top_k; c++) {
            int best = -1;
            for (i = 0; i < n; i++)
                if (w[i] == 0.0f && (best < 0 || z[i] > z[best])) best = i;
            if (best < 0) break;
            w[best] = 1.0f;
        }
        for (i = 0; i < n; i++) w[i] = w[i] == 1.0f ? z[i] : NAN;
        molora__softmax(w, n, 1.0f / L->temperature);
        return;
    }
    for (i = 0; i < n; i++) w[i] = (!allow || allow[i]) ? z[i] : NAN;
    molora__softmax(w, n, 1.0f / L->temperature);
    if (L->routing == MOLORA_ROUTING_THRESHOLD) {      /* p_i >= threshold, renormalised */
        for (i = 0; i < n; i++) { if (!(w[i] >= L->threshold) || w[i] == 0.0f) w[i] = 0.0f; s += w[i]; }
        if (s == 0.0f) return;
        for (i = 0; i < n; i++) w[i] /= s;
    } else if (L->routing == MOLORA_ROUTING_ADAMOLE) { /* p_i - tau where p_i >= tau, renormalised */
        float tau = L->tau_max * molora__sigmoid(u);
        for (i = 0; i < n; i++) {
            float a = w[i] - tau;
            w[i] = ((!allow || allow[i]) && a >= 0.0f) ? a : 0.0f;
            s += w[i];
        }
        if (s == 0.0f) s = 1.0f;
        for (i = 0; i < n; i++) w[i] /= s;
    }
}

/* ---- [forward] ----------------------------------------------------------------------------- */
MOLORA__PRIVATE size_t molora__xa_ld(int d_in) { return ((size_t)d_in + 15) & ~(size_t)15; }

/* workspace parts, in floats: gate logits (T, n_rows - r_total), expert inputs H (T, r_total),
   weights (T, n), MoLE deltas (T, n * d_out), active flags (n) */
typedef struct molora__ws { size_t g, h, w, d, act, xa, total; } molora__ws;

MOLORA__PRIVATE int molora__ws_layout(const molora__layer *L, size_t T, molora__ws *ws)
{
    size_t bytes = MOLORA__ALIGN;
    memset(ws, 0, sizeof *ws);
    if (!molora__mul(T, (size_t)(L->n_rows - L->r_total), &ws->g) || !molora__mul(T, (size_t)L->r_total, &ws->h) ||
        !molora__mul(T, (size_t)L->n, &ws->w)) return 0;
    if (L->routing == MOLORA_ROUTING_MOLE_OUTPUT && L->n > 0 &&
        !molora__mul(T, (size_t)L->n * (size_t)L->d_out, &ws->d)) return 0;
    ws->act = (size_t)L->n;
    /* small batches: X copied for the kernels: row-major at W0's 64-byte phase, or two packed
       panels (phase 0 for the experts and gate, W0's phase for the frozen layer) */
    if (T <= MOLORA__SMALL_T) {
        size_t a1, a2;
        if (!molora__mul(T + 1, molora__xa_ld(L->d_in), &a1)) return 0;
        a2 = 2 * molora__pack_floats((int)T, L->d_in) + 32;
        ws->xa = a1 > a2 ? a1 : a2;
    }
    if (!molora__reserve(&bytes, ws->g, sizeof(float)) || !molora__reserve(&bytes, ws->h, sizeof(float)) ||
        !molora__reserve(&bytes, ws->xa, sizeof(float)) ||
        !molora__reserve(&bytes, ws->w, sizeof(float)) || !molora__reserve(&bytes, ws->d, sizeof(float)) ||
        !molora__reserve(&bytes, ws->act, sizeof(int)))
        return 0;
    ws->total = bytes;
    return 1;
}

MOLORA_API molora_result molora_workspace_size(const molora_model *m, int max_tokens, size_t *size)
{
    int l;
    size_t best = 0;
    if (size) *size = 0;
    if (!m || !size) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (max_tokens < 0) return MOLORA_RESULT_INVALID_SHAPE;
    for (l = 0; l < m->n_layers; l++) {
        molora__ws ws;
        if (!molora__ws_layout(&m->layers[l], (size_t)max_tokens, &ws)) return MOLORA_RESULT_SIZE_OVERFLOW;
        if (ws.total > best) best = ws.total;
    }
    *size = best;
    return MOLORA_RESULT_SUCCESS;
}

/* MoLE output gate: D_i = s_i H_i B_i^T (T, d_out) per expert, logits = e^T D / ||D||, softmax.
   H holds every expert's inputs; it is scaled by s_i in place. */
MOLORA__PRIVATE molora_result molora__route_mole(const molora__layer *L, const molora_forward_args *a,
                                                 float *H, float *D, float *w)
{
    int T = a->n_tokens, n = L->n, O = L->d_out, t, i, j;
    size_t ld = (size_t)n * (size_t)O, o;
    for (i = 0; i < n; i++) {
        if (a->expert_mask && !a->mask_per_token && !a->expert_mask[i]) {
            for (t = 0; t < T; t++) memset(D + (size_t)t * ld + (size_t)i * O, 0, (size_t)O * sizeof(float));
            continue;
        }
        for (t = 0; t < T; t++)
            for (j = L->offset[i]; j < L->offset[i] + L->rank[i]; j++) H[(size_t)t * L->r_total + j] *= L->scaling[i];
        molora__sgemm(0, T, O, L->rank[i], 1.0f, H + L->offset[i], L->r_total,
                      L->BT + (size_t)L->offset[i] * O, O, 0.0f, D + (size_t)i * O, (int)ld);
    }
    if (a->expert_mask && a->mask_per_token)
        for (t = 0; t < T; t++)
            for (i = 0; i < n; i++)
                if (!a->expert_mask[(size_t)t * n + i]) memset(D + (size_t)t * ld + (size_t)i * O, 0, (size_t)O * sizeof(float));
    molora__sgemm(1, T, n, (int)ld, 1.0f, D, (int)ld, L->mole_gate, (int)ld, 0.0f, w, n);
    for (t = 0; t < T; t++) {
        const float *d = D + (size_t)t * ld;
        const uint8_t *allow = a->expert_mask ? a->expert_mask + (a->mask_per_token ? (size_t)t * n : 0) : NULL;
        float *wt = w + (size_t)t * n;
        double ss = 0.0, norm;
        for (o = 0; o < ld; o++) ss += (double)d[o] * d[o];
        norm = sqrt(ss) > 1e-12 ? sqrt(ss) : 1e-12;   /* F.normalize: v / max(||v||, eps) */
        for (i = 0; i < n; i++) {
            wt[i] = (float)(wt[i] / norm) + (L->gate_bias ? L->gate_bias[i] : 0.0f);
            if (isnan(wt[i])) return MOLORA_RESULT_NON_FINITE;
            if (allow && !allow[i]) wt[i] = NAN;
        }
        molora__softmax(wt, n, 1.0f / L->temperature);
    }
    return MOLORA_RESULT_SUCCESS;
}

/* X of a small batch, packed for the ntp kernel: p0 at phase 0, pw at phase qw (or NULL) */
typedef struct molora__xpack { int T, K, qw; const float *p0, *pw; } molora__xpack;

/* Y (T, N) = X W^T (+ Y if acc) for W (N, K): packed kernel when X is packed, else the seam */
MOLORA__PRIVATE void molora__xwt(const molora__kernels *kr, const molora__xpack *xp, const float *X, int ldx, int T,
                                 int N, int K, const float *W, int ldw, float *Y, int ldy, int acc)
{
    if (xp->p0 && N > 0) {
        int q = molora__phase(W);
        if (q != 0 && (q != xp->qw || !xp->pw)) q = 0;   /* no panel at W's phase: unaligned W loads */
        kr->ntp(T, N, K, q, 1.0f, q ? xp->pw : xp->p0, W, ldw, Y, ldy, acc);
        return;
    }
    molora__sgemm(1, T, N, K, 1.0f, X, ldx, W, ldw, acc ? 1.0f : 0.0f, Y, ldy);
}

/* A per-token path beats the dense products when fewer than 1 in MOLORA__SPARSE_RATIO of the
   (token, active rank) pairs are routed (top-8 of 64 rank-1 experts, say). */
#define MOLORA__SPARSE_RATIO 4

MOLORA__PRIVATE molora_result molora__run(const molora_model *m, const molora_forward_args *a, int apply)
{
    molora__logger lg;
    const molora__layer *L;
    const molora__kernels *kr = molora__get_kernels();
    molora__ws ws;
    float *G, *H, *W, *D, *Y;
    const float *X = a ? a->x : NULL;
    int *act, ldx = 0;
    molora__xpack xp;
    unsigned char *cur;
    int T, n, t, i, j, ith, nth, o0, o1, O, chunks, ng, r_act = 0;
    size_t nx, nnz = 0;
    molora_result r;
    if (!m || !a) return MOLORA_RESULT_INVALID_ARGUMENT;
    lg.fn = m->log; lg.user = m->log_user;
    if (a->layer < 0 || a->layer >= m->n_layers)
        return molora__fail(&lg, MOLORA_RESULT_INVALID_LAYER, "forward: layer %d outside 0..%d", a->layer, m->n_layers - 1);
    L = &m->layers[a->layer];
    T = a->n_tokens;
    n = L->n;
    if (T < 0) return molora__fail(&lg, MOLORA_RESULT_INVALID_SHAPE, "forward: n_tokens %d < 0", T);
    if (a->nth < 0 || (a->nth == 0 && a->ith != 0) || (a->nth > 0 && (a->ith < 0 || a->ith >= a->nth)))
        return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "forward: ith %d / nth %d (need 0 <= ith < nth)", a->ith, a->nth);
    ith = a->nth > 0 ? a->ith : 0;
    nth = a->nth > 0 ? a->nth : 1;
    if ((int)a->output != MOLORA_OUTPUT_FULL && (int)a->output != MOLORA_OUTPUT_DELTA)
        return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "forward: unknown output mode %d", (int)a->output);
    if (apply && a->output == MOLORA_OUTPUT_FULL && !L->W0)
        return molora__fail(&lg, MOLORA_RESULT_MISSING_WEIGHTS, "forward: layer %d has no W0; use MOLORA_OUTPUT_DELTA", a->layer);
    if (!apply && !a->weights_out)
        return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "route: weights_out is NULL");
    if (a->counts_out && ith == 0) for (i = 0; i < n; i++) a->counts_out[i] = 0;
    if (a->path_out) *a->path_out = MOLORA_PATH_NONE;
    if (T == 0) return MOLORA_RESULT_SUCCESS;
    if (!a->x || (apply && !a->y))
        return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "forward: x or y is NULL");
    if (n > 0 && L->routing == MOLORA_ROUTING_FIXED && !a->weights)
        return molora__fail(&lg, MOLORA_RESULT_MISSING_WEIGHTS, "forward: layer %d has FIXED routing but no weights were given", a->layer);
    if (!molora__ws_layout(L, (size_t)T, &ws) || !molora__mul((size_t)T, (size_t)L->d_in, &nx))
        return molora__fail(&lg, MOLORA_RESULT_SIZE_OVERFLOW, "forward: %d tokens overflow the workspace size", T);
    if (!a->workspace || a->workspace_size < ws.total)
        return molora__fail(&lg, MOLORA_RESULT_WORKSPACE_TOO_SMALL, "forward: workspace %zu bytes, %d tokens on layer %d need %zu",
                            a->workspace ? a->workspace_size : (size_t)0, T, a->layer, ws.total);
    if (!molora__all_finite(a->x, nx))
        return molora__fail(&lg, MOLORA_RESULT_NON_FINITE, "forward: input x has NaN or Inf");
    if (n > 0 && a->weights && !molora__all_finite(a->weights, a->weights_per_token ? (size_t)T * n : (size_t)n))
        return molora__fail(&lg, MOLORA_RESULT_NON_FINITE, "forward: fixed weights have NaN or Inf");
    memset(&xp, 0, sizeof xp);
    cur = molora__align_up(a->workspace);
    G = (float *)molora__carve(&cur, ws.g, sizeof(float));
    H = (float *)molora__carve(&cur, ws.h, sizeof(float));
    W = (float *)molora__carve(&cur, ws.w, sizeof(float));
    D = (float *)molora__carve(&cur, ws.d, sizeof(float));
    act = (int *)molora__carve(&cur, ws.act, sizeof(int));
    ng = L->n_rows - L->r_total;
    if (!ws.xa) ldx = L->d_in;
    /* this call's share of the output columns: chunks of 16, split over nth callers */
    chunks = (L->d_out + 15) / 16;
    o0 = (int)((long long)chunks * ith / nth) * 16; if (o0 > L->d_out) o0 = L->d_out;
    o1 = (int)((long long)chunks * (ith + 1) / nth) * 16; if (o1 > L->d_out) o1 = L->d_out;
    O = o1 - o0;
    Y = apply ? a->y + o0 : NULL;
    if (ws.xa && kr->ntp) {   /* small batch, packed panels: phase 0, and W0's phase if it differs */
        float *xa = (float *)molora__carve(&cur, ws.xa, sizeof(float));
        size_t half = (molora__pack_floats(T, L->d_in) + 15) & ~(size_t)15;
        xp.T = T; xp.K = L->d_in; xp.p0 = xa;
        ldx = L->d_in;   /* the sparse path still reads X row by row */
        molora__pack_x(a->x, L->d_in, T, L->d_in, 0, xa);
        if (L->W0 && a->output == MOLORA_OUTPUT_FULL && T > 1) {
            xp.qw = molora__phase(L->W0 + (size_t)o0 * L->d_in);
            if (xp.qw) { molora__pack_x(a->x, L->d_in, T, L->d_in, xp.qw, xa + half); xp.pw = xa + half; }
        }
    } else if (ws.xa) {   /* small batch: X row-major at W0's phase, so the kernels' loads are aligned */
        size_t ldxa = molora__xa_ld(L->d_in), phase = 0;
        float *xa = (float *)molora__carve(&cur, ws.xa, sizeof(float));
        if (L->W0 && a->output == MOLORA_OUTPUT_FULL && ((uintptr_t)L->W0 & 3) == 0 && L->d_in % 16 == 0)
            phase = ((uintptr_t)L->W0 & 63) / 4;
        for (t = 0; t < T; t++) memcpy(xa + phase + (size_t)t * ldxa, a->x + (size_t)t * L->d_in, (size_t)L->d_in * sizeof(float));
        X = xa + phase;
        ldx = (int)ldxa;
    }
    if (a->path_out) *a->path_out = !apply ? MOLORA_PATH_NONE : T == 1 ? MOLORA_PATH_DECODE
                                  : T <= MOLORA__SMALL_T ? MOLORA_PATH_SMALL : MOLORA_PATH_GEMM;

    if (n > 0) {
        /* 1. gate and threshold logits G = X [Wg; wt]^T (T, ng): routing needs nothing else */
        if (ng > 0 && !xp.p0 && ng <= 32)   /* a narrow product: the own kernel beats BLAS at every T here */
            kr->nt(T, ng, L->d_in, 1.0f, X, ldx, L->A + (size_t)L->r_total * L->d_in, L->d_in, G, ng, 0);
        else if (ng > 0)
            molora__xwt(kr, &xp, X, ldx, T, ng, L->d_in, L->A + (size_t)L->r_total * L->d_in, L->d_in, G, ng, 0);
        /* 2. routing weights W (T, n) */
        if (a->weights) {
            for (t = 0; t < T; t++) {
                const uint8_t *allow = a->expert_mask ? a->expert_mask + (a->mask_per_token ? (size_t)t * n : 0) : NULL;
                for (i = 0; i < n; i++)
                    W[(size_t)t * n + i] = (!allow || allow[i]) ? a->weights[(a->weights_per_token ? (size_t)t * n : 0) + i] : 0.0f;
            }
        } else if (L->routing == MOLORA_ROUTING_MOLE_OUTPUT) {
            molora__xwt(kr, &xp, X, ldx, T, L->r_total, L->d_in, L->A, L->d_in, H, L->r_total, 0);
            r = molora__route_mole(L, a, H, D, W);
            if (r != MOLORA_RESULT_SUCCESS)
                return molora__fail(&lg, r, "forward: layer %d MoLE output-gate logits are NaN (inputs too large)", a->layer);
        } else {
            for (t = 0; t < T; t++) {
                float *z = G + (size_t)t * ng;
                const uint8_t *allow = a->expert_mask ? a->expert_mask + (a->mask_per_token ? (size_t)t * n : 0) : NULL;
                float u = L->thr_row >= 0 ? z[n] + L->thr_bias : 0.0f;
                for (i = 0; i < n; i++) {
                    if (L->gate_bias) z[i] += L->gate_bias[i];
                    if (isnan(z[i])) return molora__fail(&lg, MOLORA_RESULT_NON_FINITE, "forward: layer %d gate logits are NaN (inputs too large)", a->layer);
                }
                if (isnan(u)) return molora__fail(&lg, MOLORA_RESULT_NON_FINITE, "forward: layer %d threshold logit is NaN", a->layer);
                molora__route_token(L, z, u, allow, W + (size_t)t * n);
            }
        }
        if (ith == 0 && a->counts_out)
            for (t = 0; t < T; t++)
                for (i = 0; i < n; i++) a->counts_out[i] += W[(size_t)t * n + i] != 0.0f;
        if (ith == 0 && a->weights_out) memcpy(a->weights_out, W, (size_t)T * n * sizeof(float));
    }
    if (!apply || O == 0) return MOLORA_RESULT_SUCCESS;

    /* 3. frozen layer: Y = X W0^T + b (this caller's columns) */
    if (a->output == MOLORA_OUTPUT_FULL) {
#ifndef MOLORA_NO_BLAS
        if (T == 1)   /* decode: sgemv streams W0 at memory speed (sgemm with one row is ~4x slower) */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, O, L->d_in, 1.0f, L->W0 + (size_t)o0 * L->d_in, L->d_in, a->x, 1, 0.0f, Y, 1);
        else
#endif
        molora__xwt(kr, &xp, X, ldx, T, O, L->d_in, L->W0 + (size_t)o0 * L->d_in, L->d_in, Y, L->d_out, 0);
        if (L->bias)
            for (t = 0; t < T; t++)
                for (j = 0; j < O; j++) Y[(size_t)t * L->d_out + j] += L->bias[o0 + j];
    }
    if (n == 0) return MOLORA_RESULT_SUCCESS;

    /* 4a. MoLE output gate: Y += sum_i w_i D_i, the deltas are already there */
    if (L->routing == MOLORA_ROUTING_MOLE_OUTPUT && !a->weights) {
        size_t ld = (size_t)n * L->d_out;
        for (t = 0; t < T; t++)
            for (i = 0; i < n; i++) {
                float wi = W[(size_t)t * n + i];
                const float *d = D + (size_t)t * ld + (size_t)i * L->d_out + o0;
                float *y = Y + (size_t)t * L->d_out;
                if (wi == 0.0f) continue;
                for (j = 0; j < O; j++) y[j] += wi * d[j];
            }
        return MOLORA_RESULT_SUCCESS;
    }

    /* 4b. experts: only those some token routes to; per token when routing is sparse enough */
    for (i = 0; i < n; i++) {
        act[i] = 0;
        for (t = 0; t < T; t++)
            if (W[(size_t)t * n + i] != 0.0f) { act[i] = 1; nnz += (size_t)L->rank[i]; }
        if (act[i]) r_act += L->rank[i];
    }
    if (r_act == 0) return MOLORA_RESULT_SUCCESS;
    if (T > 1 && nnz * MOLORA__SPARSE_RATIO < (size_t)T * (size_t)r_act) {
        if (a->path_out) *a->path_out = MOLORA_PATH_SPARSE;
        for (t = 0; t < T; t++) {   /* per token: the selected experts' rows, 64 at a time */
            const float *x = X + (size_t)t * ldx, *arow[64], *brow[64];
            float *y = Y + (size_t)t * L->d_out, cf[64], h[64];
            int m_ = 0, q;
            for (i = 0; i <= n; i++) {
                float c = i < n ? W[(size_t)t * n + i] * L->scaling[i] : 0.0f;
                for (j = 0; i < n && c != 0.0f && j < L->rank[i]; j++) {
                    arow[m_] = L->A + (size_t)(L->offset[i] + j) * L->d_in;
                    brow[m_] = L->BT + (size_t)(L->offset[i] + j) * L->d_out + o0;
                    cf[m_++] = c;
                    if (m_ < 64) continue;
                    kr->dots(m_, arow, x, L->d_in, h);
                    for (q = 0; q < m_; q++) h[q] *= cf[q];
                    kr->axpys(m_, brow, h, y, O);
                    m_ = 0;
                }
                if (i == n && m_ > 0) {
                    kr->dots(m_, arow, x, L->d_in, h);
                    for (q = 0; q < m_; q++) h[q] *= cf[q];
                    kr->axpys(m_, brow, h, y, O);
                }
            }
        }
        return MOLORA_RESULT_SUCCESS;
    }
    for (i = 0; i < n; ) {   /* dense over each run of consecutive active experts */
        int i1 = i, off = L->offset[i], rr = 0;
        if (!act[i]) { i++; continue; }
        while (i1 < n && act[i1]) rr += L->rank[i1++];
#ifndef MOLORA_NO_BLAS
        if (T == 1)   /* decode: sgemv streams the selected experts' A at memory speed */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, rr, L->d_in, 1.0f, L->A + (size_t)off * L->d_in, L->d_in, a->x, 1, 0.0f, H + off, 1);
        else
#endif
        molora__xwt(kr, &xp, X, ldx, T, rr, L->d_in, L->A + (size_t)off * L->d_in, L->d_in, H + off, L->r_total, 0);
        for (t = 0; t < T; t++)
            for (j = i; j < i1; j++) {
                float c = W[(size_t)t * n + j] * L->scaling[j];
                float *h = H + (size_t)t * L->r_total + L->offset[j];
                int q;
                for (q = 0; q < L->rank[j]; q++) h[q] *= c;
            }
#ifndef MOLORA_NO_BLAS
        if (T == 1)   /* ... and their B^T rows (measured: S3 decode 1.13x frozen, own kernel 1.37x) */
            cblas_sgemv(CblasRowMajor, CblasTrans, rr, O, 1.0f, L->BT + (size_t)off * L->d_out + o0, L->d_out, H + off, 1, 1.0f, Y, 1);
        else
#endif
        molora__sgemm(0, T, O, rr, 1.0f, H + off, L->r_total, L->BT + (size_t)off * L->d_out + o0, L->d_out, 1.0f, Y, L->d_out);
        i = i1;
    }
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API molora_result molora_forward(const molora_model *m, const molora_forward_args *a) { return molora__run(m, a, 1); }
MOLORA_API molora_result molora_route(const molora_model *m, const molora_forward_args *a) { return molora__run(m, a, 0); }

MOLORA_API molora_result molora_merge(const molora_model *m, int layer, const float *weights, float *W)
{
    const molora__layer *L;
    int i;
    if (!m || !W) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (layer < 0 || layer >= m->n_layers) return MOLORA_RESULT_INVALID_LAYER;
    L = &m->layers[layer];
    if (L->n == 0) return MOLORA_RESULT_SUCCESS;
    if (!weights) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (!molora__all_finite(weights, (size_t)L->n)) return MOLORA_RESULT_NON_FINITE;
    for (i = 0; i < L->n; i++) {   /* W += c B_i A_i = c BT_i^T A_i, one output row at a time */
        float c = weights[i] * L->scaling[i], coef[64];
        const float *A = L->A + (size_t)L->offset[i] * L->d_in, *BT = L->BT + (size_t)L->offset[i] * L->d_out;
        int o, q0, q;
        if (c == 0.0f) continue;
        for (o = 0; o < L->d_out; o++)
            for (q0 = 0; q0 < L->rank[i]; q0 += 64) {
                int qb = L->rank[i] - q0 < 64 ? L->rank[i] - q0 : 64;
                for (q = 0; q < qb; q++) coef[q] = c * BT[(size_t)(q0 + q) * L->d_out + o];
                molora__get_kernels()->nn(1, L->d_in, qb, coef, qb, A + (size_t)q0 * L->d_in, L->d_in, W + (size_t)o * L->d_in, L->d_in);
            }
    }
    return MOLORA_RESULT_SUCCESS;
}

#endif /* MOLORA__IMPLEMENTED */
#endif /* MOLORA_IMPLEMENTATION */

/*
MIT License

Copyright (c) 2026 the molora authors

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
*/

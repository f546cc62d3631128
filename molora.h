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

   ALPHALORA (molora_alpha_*, needs LAPACK: UNSUPPORTED under MOLORA_NO_BLAS)
     AlphaLoRA gives each decoder layer a number of LoRA experts from the heavy-tailed spectrum
     of its frozen weights (formulas and upstream quirks: shared/reference-math.md 5-6):
       molora_alpha_matrix(W, rows, cols, &opt, &fit)   eigenvalues of W^T W, then a power-law
           fit of the tail: alpha, xmin, KS distance, n_eigs, n_tail. opt.method FIX_FINGER
           (default, AlphaLoRA's estimator: ESD-peak window with upstream's log10 lower bound,
           torch.histc bins, first argmin) or WW (WeightWatcher's default, threshold 1e-5).
       molora_alpha_layer_mean()     alpha of a decoder layer = mean over its matrices
       molora_alpha_allocate()       experts per layer, the exact integers of upstream
                                     exponential_scaling (budget 160, beta 2.5 by default)
       molora_alpha_plan_apply()     writes n_experts, top_k and TOPK routing into layer descs
     Eigenvalue routes, measured on weight-like matrices (Gaussian + Student-t + spikes) by
     `make bench-alpha` (one run, 2-core AMD EPYC shared with other jobs, OpenBLAS 0.3.21;
     seconds at 1 thread, ratio to torch.linalg.svdvals 1.13 at the same thread count, and the
     max relative alpha error, fix_finger / WW, against a float64 SVD):
                               4096x4096                  4096x11008
       GRAM64_2STAGE       4.25 s  0.55x  1e-14/1e-14   6.76 s  0.45x  5e-15/6e-14   (default)
       GRAM64              6.76 s  0.87x  7e-15/2e-14   8.53 s  0.57x  3e-15/6e-14   (default < 2048)
       SGESDD              7.32 s  0.94x  5e-6/1.1e-4   11.1 s  0.75x  1e-5/1.1e-4   (too coarse)
       FAST (approximate)  2.33 s  0.30x  0.29/8e-6     3.20 s  0.21x  3e-6/2.7e-4
       torch svdvals f32   7.76 s  1.00x               14.9 s  1.00x
     At 2 threads (same run, machine loaded): default 0.59x and 0.63x of torch. The Gram is
     formed in double from float32 panels (dsyrk), so its condition-number squaring costs
     nothing that matters (eigenvalue error ~1e-16 * cond(W)^2 relative); a float32 Gram
     (FAST) loses every eigenvalue below ~1e-7 lambda_max, which moves fix_finger's histogram:
     use FAST only for a quick look, never for a plan. Scratch: one block of about
     8 min(rows,cols)^2 + 2 KiB * min(rows,cols) bytes (GRAM64), from opt.workspace
     (molora_alpha_workspace_size()) or opt.memory; freed before return, also on errors.
     Upstream reproduced: fix_finger on 40 random matrices within 5e-8 (upstream keeps alphas
     in float32), the allocation on 3000 random draws with ties: identical integers.

   CONFIGURATION MACROS (define before including)
     MOLORA_IMPLEMENTATION  compile the implementation in this translation unit
     MOLORA_STATIC          make every function static (a private copy per translation unit)
     MOLORA_API             override the linkage of the public functions
     MOLORA_NO_BLAS         no OpenBLAS: plain-C loops with the same results within float tolerance
     MOLORA_ASSERT(c)       assertion for programmer errors only (default: assert from assert.h)

   WHAT WORKS TODAY (v0.1.0)
     Everything above, tested against an independent naive reference (tests/test_core.c);
     AlphaLoRA alpha and allocation (tests/test_alpha.c, tools/alpha_ref.py).
     Forward uses two batched GEMMs on top of the frozen layer (matrix-vector for one token).

   DOES NOT (yet)
     - read files (safetensors, PEFT adapters): planned, not in this version;
     - the `molora alpha` command (needs the safetensors reader): the library calls are here;
     - skip unselected experts (top-k, AdaMoLE): every expert's product is computed and the
       unselected ones are weighted by zero, so sparse routing does not save time yet;
     - own SIMD kernels, ith/nth thread splits: planned;
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
    MOLORA_RESULT_DEGENERATE_SPECTRUM, /* alpha: zero matrix, eigenvalue <= 0 (fix_finger) or
                                          fewer than 2 eigenvalues above the threshold        */
    MOLORA_RESULT_NEGATIVE_EXPERTS,    /* alpha allocation: the budget needs a negative count  */
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

/* ---- AlphaLoRA: ESD power-law alpha and expert allocation -----------------------------------
   Needs LAPACK from OpenBLAS; with MOLORA_NO_BLAS every function here except
   molora_alpha_fit_spectrum, molora_alpha_layer_mean, molora_alpha_allocate and
   molora_alpha_plan_apply returns MOLORA_RESULT_UNSUPPORTED. Nothing here is on the forward
   path: scratch memory comes from options.workspace or the options.memory hook. */
typedef enum molora_alpha_method {
    MOLORA_ALPHA_FIX_FINGER = 0,  /* default: AlphaLoRA's fix_finger (ESD peak window, KS, MLE)   */
    MOLORA_ALPHA_WW,              /* WeightWatcher default: every eigenvalue > 1e-5 tried as xmin */
    MOLORA_ALPHA_METHOD_COUNT
} molora_alpha_method;

/* How the eigenvalues of W^T W are computed (see ALPHA in the doc block for measurements). */
typedef enum molora_alpha_route {
    MOLORA_ALPHA_ROUTE_DEFAULT = 0,     /* fastest route within 1e-4 of float64: GRAM64 when
                                           min(rows, cols) < 2048, else GRAM64_2STAGE            */
    MOLORA_ALPHA_ROUTE_GRAM64,          /* Gram in double (dsyrk) + dsyevd                        */
    MOLORA_ALPHA_ROUTE_GRAM64_2STAGE,   /* Gram in double (dsyrk) + dsyevd_2stage                 */
    MOLORA_ALPHA_ROUTE_SGESDD,          /* float32 SVD, as torch.linalg.svdvals: ~1e-4 off in WW  */
    MOLORA_ALPHA_ROUTE_DGESDD,          /* float64 singular values: the reference, slowest         */
    MOLORA_ALPHA_ROUTE_FAST,            /* APPROXIMATE: float32 Gram (ssyrk) + ssyevd_2stage; wrong
                                           for ill-conditioned W (small eigenvalues lost)         */
    MOLORA_ALPHA_ROUTE_COUNT
} molora_alpha_route;

#define MOLORA_ALPHA_DEFAULT_BUDGET 160    /* AlphaLoRA --target_sum */
#define MOLORA_ALPHA_DEFAULT_BETA   2.5    /* AlphaLoRA --beta       */

typedef struct molora_alpha_options {   /* every zero field means its default */
    molora_alpha_method method;         /* default FIX_FINGER                                     */
    molora_alpha_route route;           /* default MOLORA_ALPHA_ROUTE_DEFAULT                     */
    int bins;                           /* fix_finger histogram bins; 0 = 100                     */
    double evals_thresh;                /* eigenvalues <= this are dropped before the fit;
                                           0 = method default (WW 1e-5, FIX_FINGER none, as
                                           upstream filter_zeros=False); < 0 = never drop        */
    void *workspace;                    /* optional: molora_alpha_workspace_size() bytes; else   */
    size_t workspace_size;              /* scratch comes from memory (malloc) and is freed        */
    molora_memory memory;               /* both functions or neither                              */
    molora_log_fn log;                  /* optional detail on errors                              */
    void *log_user;
} molora_alpha_options;

enum {
    MOLORA_ALPHA_FLAG_EQUAL_TAIL = 1,   /* the chosen tail is all equal values: alpha = +inf,
                                           ks = (n-1)/n (numpy/torch give the same)              */
    MOLORA_ALPHA_FLAG_NO_CANDIDATE = 2  /* fix_finger: no eigenvalue in the xmin window; alpha = 0
                                           as upstream (spectra spanning > ~17 decades)          */
};

typedef struct molora_alpha_fit {
    double alpha;      /* power-law exponent of the ESD tail                                      */
    double xmin;       /* the eigenvalue where the tail starts                                    */
    double ks;         /* Kolmogorov-Smirnov distance D of the chosen fit                         */
    double sigma;      /* (alpha - 1) / sqrt(n_tail), WeightWatcher's error estimate              */
    double lambda_min, lambda_max;  /* smallest and largest eigenvalue computed                  */
    int n_eigs;        /* eigenvalues computed: min(rows, cols)                                   */
    int n_used;        /* eigenvalues left after evals_thresh                                     */
    int n_tail;        /* eigenvalues in the fitted tail (xmin counted): n_used - index of xmin   */
    unsigned flags;    /* MOLORA_ALPHA_FLAG_*                                                     */
} molora_alpha_fit;

/* Bytes of scratch molora_alpha_matrix() / molora_alpha_eigenvalues() need for a (rows, cols)
   matrix with these options (NULL = defaults). Includes the eigenvalue buffer. */
MOLORA_API molora_result molora_alpha_workspace_size(int rows, int cols, const molora_alpha_options *options,
                                                     size_t *size);
/* evals (min(rows, cols)), ascending: the eigenvalues of W^T W (squared singular values) of W
   (rows, cols), row-major float32 (e.g. a torch nn.Linear weight (d_out, d_in)).
   Errors: NON_FINITE for NaN/Inf in W, INVALID_SHAPE, OUT_OF_MEMORY, WORKSPACE_TOO_SMALL,
   UNSUPPORTED (MOLORA_NO_BLAS). Thread safety: reentrant; OpenBLAS threads as configured. */
MOLORA_API molora_result molora_alpha_eigenvalues(const float *W, int rows, int cols,
                                                  const molora_alpha_options *options, double *evals);
/* The power-law fit of a spectrum: evals (n), any order, is sorted ascending IN PLACE.
   Uses options->method / bins / evals_thresh and allocates nothing.
   Errors: DEGENERATE_SPECTRUM (fewer than 2 eigenvalues after the threshold, or an eigenvalue
   <= 0 with FIX_FINGER: pass evals_thresh, e.g. upstream's 1e-4, to drop them), NON_FINITE. */
MOLORA_API molora_result molora_alpha_fit_spectrum(double *evals, int n, const molora_alpha_options *options,
                                                   molora_alpha_fit *fit);
/* Eigenvalues + fit of one weight matrix W (rows, cols), row-major float32. */
MOLORA_API molora_result molora_alpha_matrix(const float *W, int rows, int cols, const molora_alpha_options *options,
                                             molora_alpha_fit *fit);
/* Per-layer alpha: layer_alpha[l] = mean of matrix_alpha[i] over the matrices with
   matrix_layer[i] == l (AlphaLoRA: the 7 projections of decoder layer l). matrix_layer may be
   NULL when every matrix is its own layer (n_matrices == n_layers). A layer with no matrix,
   a layer index outside 0..n_layers-1 or a non-finite alpha is an error. */
MOLORA_API molora_result molora_alpha_layer_mean(const double *matrix_alpha, const int *matrix_layer, int n_matrices,
                                                 int n_layers, double *layer_alpha);
/* AlphaLoRA allocation (exponential_scaling): s_l = alpha_l^beta, n_l = rint(s_l / sum s * budget)
   (half to even), then one expert at a time to the first argmin (add) / argmax (remove) of
   s_l - n_l until sum n = budget; top_k_l = 2 if n_l > 1 else 1. experts (n_layers) required,
   top_k (n_layers) optional. budget >= 0 (default MOLORA_ALPHA_DEFAULT_BUDGET), beta finite
   (default MOLORA_ALPHA_DEFAULT_BETA), every alpha finite and > 0. A count of 0 is valid (the
   layer keeps only its frozen weights). If the upstream rule ends with a negative count the
   counts are still written, exactly as upstream, and NEGATIVE_EXPERTS is returned. */
MOLORA_API molora_result molora_alpha_allocate(const double *layer_alpha, int n_layers, int budget, double beta,
                                               int *experts, int *top_k);
/* Writes a plan into model descriptors: for each descriptor i, l = layer_of[i] (NULL: l = i),
   descs[i].n_experts = experts[l], descs[i].top_k = top_k[l] (NULL: AlphaLoRA's rule) and
   routing = MOLORA_ROUTING_TOPK when experts[l] > 0. The experts, gate_weight etc. stay the
   caller's to set (for n_experts entries). Errors: negative count, l out of range. */
MOLORA_API molora_result molora_alpha_plan_apply(const int *experts, const int *top_k, int n_layers,
                                                 const int *layer_of, molora_layer_desc *descs, int n_descs);

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
    case MOLORA_RESULT_DEGENERATE_SPECTRUM: return "MOLORA_RESULT_DEGENERATE_SPECTRUM: no power law can be fitted (zero matrix, eigenvalue <= 0, or < 2 eigenvalues above the threshold)";
    case MOLORA_RESULT_NEGATIVE_EXPERTS: return "MOLORA_RESULT_NEGATIVE_EXPERTS: the expert budget would need a negative count in some layer";
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
    float *B;                    /* (d_out, r_total) [B_0 | ... | B_{n-1}]                      */
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
MOLORA__PRIVATE int molora__all_finite(const float *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* ---- [gemm seam] ---------------------------------------------------------------------------
   C (M, N) = alpha * A (M, K) * op(B) + beta * C, row-major, A never transposed.
   transb != 0: B is (N, K) and op(B) = B^T;  transb == 0: B is (K, N).  beta == 0 never reads C. */
MOLORA__PRIVATE void molora__sgemm_ref(int transb, int M, int N, int K, float alpha, const float *A,
                                       int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    int m, n, k;
    for (m = 0; m < M; m++) {
        const float *a = A + (size_t)m * lda;
        float *c = C + (size_t)m * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof *c);
        else if (beta != 1.0f) for (n = 0; n < N; n++) c[n] *= beta;
        if (transb) {
            for (n = 0; n < N; n++) {
                const float *b = B + (size_t)n * ldb;
                float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                for (k = 0; k + 4 <= K; k += 4) {
                    s0 += a[k] * b[k]; s1 += a[k + 1] * b[k + 1];
                    s2 += a[k + 2] * b[k + 2]; s3 += a[k + 3] * b[k + 3];
                }
                for (; k < K; k++) s0 += a[k] * b[k];
                c[n] += alpha * ((s0 + s1) + (s2 + s3));
            }
        } else {
            for (k = 0; k < K; k++) {
                const float *b = B + (size_t)k * ldb;
                float ak = alpha * a[k];
                if (ak == 0.0f) continue;
                for (n = 0; n < N; n++) c[n] += ak * b[n];
            }
        }
    }
}

MOLORA__PRIVATE void molora__sgemm(int transb, int M, int N, int K, float alpha, const float *A, int lda,
                                   const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { molora__sgemm_ref(transb, M, N, 0, alpha, A, lda, B, ldb, beta, C, ldc); return; }
#ifdef MOLORA_NO_BLAS
    molora__sgemm_ref(transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    if (M == 1) {   /* one row: matrix-vector, sgemm with M = 1 is ~4x slower here */
        if (beta == 0.0f) memset(C, 0, (size_t)N * sizeof *C);
        if (transb) cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, alpha, B, ldb, A, 1, beta == 0.0f ? 1.0f : beta, C, 1);
        else        cblas_sgemv(CblasRowMajor, CblasTrans, K, N, alpha, B, ldb, A, 1, beta == 0.0f ? 1.0f : beta, C, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                B, ldb, beta, C, ldc);
#endif
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
    P->B = (float *)molora__carve(cur, dout * (size_t)P->r_total, sizeof(float));
    for (i = 0; i < n; i++) {
        const molora_expert_desc *e = &L->experts[i];
        float alpha = e->lora_alpha != 0.0f ? e->lora_alpha : (float)e->rank;
        P->rank[i] = e->rank;
        P->offset[i] = off;
        P->scaling[i] = e->scaling != 0.0f ? e->scaling
                      : (e->use_rslora ? alpha / sqrtf((float)e->rank) : alpha / (float)e->rank);
        memcpy(P->A + (size_t)off * din, e->A, (size_t)e->rank * din * sizeof(float));
        for (j = 0; j < L->d_out; j++)
            memcpy(P->B + (size_t)j * P->r_total + off, e->B + (size_t)j * e->rank, (size_t)e->rank * sizeof(float));
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
typedef struct molora__ws { size_t hg, w, d, total; } molora__ws;   /* floats per part */

MOLORA__PRIVATE int molora__ws_layout(const molora__layer *L, size_t T, molora__ws *ws)
{
    size_t bytes = MOLORA__ALIGN;
    memset(ws, 0, sizeof *ws);
    if (!molora__mul(T, (size_t)L->n_rows, &ws->hg) || !molora__mul(T, (size_t)L->n, &ws->w)) return 0;
    if (L->routing == MOLORA_ROUTING_MOLE_OUTPUT && L->n > 0 &&
        !molora__mul(T, (size_t)L->n * (size_t)L->d_out, &ws->d)) return 0;
    if (!molora__reserve(&bytes, ws->hg, sizeof(float)) || !molora__reserve(&bytes, ws->w, sizeof(float)) ||
        !molora__reserve(&bytes, ws->d, sizeof(float)))
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

/* MoLE output gate: D = per-expert deltas (T, n*d_out), logits = e^T D / ||D||, softmax. */
MOLORA__PRIVATE molora_result molora__route_mole(const molora__layer *L, const molora_forward_args *a,
                                                 const float *H, float *D, float *w)
{
    int T = a->n_tokens, n = L->n, O = L->d_out, t, i, o;
    size_t ld = (size_t)n * (size_t)O;
    for (i = 0; i < n; i++) {
        if (a->expert_mask && !a->mask_per_token && !a->expert_mask[i]) {
            for (t = 0; t < T; t++) memset(D + (size_t)t * ld + (size_t)i * O, 0, (size_t)O * sizeof(float));
            continue;
        }
        molora__sgemm(1, T, O, L->rank[i], L->scaling[i], H + L->offset[i], L->n_rows,
                      L->B + L->offset[i], L->r_total, 0.0f, D + (size_t)i * O, (int)ld);
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
        for (o = 0; o < (int)ld; o++) ss += (double)d[o] * d[o];
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

MOLORA__PRIVATE molora_result molora__run(const molora_model *m, const molora_forward_args *a, int apply)
{
    molora__logger lg;
    const molora__layer *L;
    molora__ws ws;
    float *HG, *W, *D;
    unsigned char *cur;
    int T, n, t, i, j;
    size_t nx;
    molora_result r;
    if (!m || !a) return MOLORA_RESULT_INVALID_ARGUMENT;
    lg.fn = m->log; lg.user = m->log_user;
    if (a->layer < 0 || a->layer >= m->n_layers)
        return molora__fail(&lg, MOLORA_RESULT_INVALID_LAYER, "forward: layer %d outside 0..%d", a->layer, m->n_layers - 1);
    L = &m->layers[a->layer];
    T = a->n_tokens;
    n = L->n;
    if (T < 0) return molora__fail(&lg, MOLORA_RESULT_INVALID_SHAPE, "forward: n_tokens %d < 0", T);
    if ((int)a->output != MOLORA_OUTPUT_FULL && (int)a->output != MOLORA_OUTPUT_DELTA)
        return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "forward: unknown output mode %d", (int)a->output);
    if (apply && a->output == MOLORA_OUTPUT_FULL && !L->W0)
        return molora__fail(&lg, MOLORA_RESULT_MISSING_WEIGHTS, "forward: layer %d has no W0; use MOLORA_OUTPUT_DELTA", a->layer);
    if (!apply && !a->weights_out)
        return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "route: weights_out is NULL");
    if (a->counts_out) for (i = 0; i < n; i++) a->counts_out[i] = 0;
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
    cur = molora__align_up(a->workspace);
    HG = (float *)molora__carve(&cur, ws.hg, sizeof(float));
    W = (float *)molora__carve(&cur, ws.w, sizeof(float));
    D = (float *)molora__carve(&cur, ws.d, sizeof(float));

    if (n > 0) {
        /* 1. H = X A^T, gate logits and threshold logit in one product: (T, n_rows) */
        molora__sgemm(1, T, L->n_rows, L->d_in, 1.0f, a->x, L->d_in, L->A, L->d_in, 0.0f, HG, L->n_rows);
        /* 2. routing weights (T, n) */
        if (a->weights) {
            for (t = 0; t < T; t++)
                for (i = 0; i < n; i++) {
                    const uint8_t *allow = a->expert_mask ? a->expert_mask + (a->mask_per_token ? (size_t)t * n : 0) : NULL;
                    W[(size_t)t * n + i] = (!allow || allow[i]) ? a->weights[(a->weights_per_token ? (size_t)t * n : 0) + i] : 0.0f;
                }
        } else if (L->routing == MOLORA_ROUTING_MOLE_OUTPUT) {
            r = molora__route_mole(L, a, HG, D, W);
            if (r != MOLORA_RESULT_SUCCESS)
                return molora__fail(&lg, r, "forward: layer %d MoLE output-gate logits are NaN (inputs too large)", a->layer);
        } else {
            for (t = 0; t < T; t++) {
                float *z = HG + (size_t)t * L->n_rows + L->gate_row;
                const uint8_t *allow = a->expert_mask ? a->expert_mask + (a->mask_per_token ? (size_t)t * n : 0) : NULL;
                float u = L->thr_row >= 0 ? HG[(size_t)t * L->n_rows + L->thr_row] + L->thr_bias : 0.0f;
                for (i = 0; i < n; i++) {
                    if (L->gate_bias) z[i] += L->gate_bias[i];
                    if (isnan(z[i])) return molora__fail(&lg, MOLORA_RESULT_NON_FINITE, "forward: layer %d gate logits are NaN (inputs too large)", a->layer);
                }
                if (isnan(u)) return molora__fail(&lg, MOLORA_RESULT_NON_FINITE, "forward: layer %d threshold logit is NaN", a->layer);
                molora__route_token(L, z, u, allow, W + (size_t)t * n);
            }
        }
        if (a->counts_out)
            for (t = 0; t < T; t++)
                for (i = 0; i < n; i++) a->counts_out[i] += W[(size_t)t * n + i] != 0.0f;
        if (a->weights_out) memcpy(a->weights_out, W, (size_t)T * n * sizeof(float));
    }
    if (!apply) return MOLORA_RESULT_SUCCESS;

    /* 3. frozen layer: Y = X W0^T + b */
    if (a->output == MOLORA_OUTPUT_FULL) {
        molora__sgemm(1, T, L->d_out, L->d_in, 1.0f, a->x, L->d_in, L->W0, L->d_in, 0.0f, a->y, L->d_out);
        if (L->bias)
            for (t = 0; t < T; t++)
                for (j = 0; j < L->d_out; j++) a->y[(size_t)t * L->d_out + j] += L->bias[j];
    }
    if (n == 0) return MOLORA_RESULT_SUCCESS;
    /* 4. Y += sum_i w_i * s_i * B_i H_i */
    if (L->routing == MOLORA_ROUTING_MOLE_OUTPUT && !a->weights) {
        size_t ld = (size_t)n * L->d_out;
        for (t = 0; t < T; t++) {
            float *y = a->y + (size_t)t * L->d_out;
            for (i = 0; i < n; i++) {
                float wi = W[(size_t)t * n + i];
                const float *d = D + (size_t)t * ld + (size_t)i * L->d_out;
                if (wi == 0.0f) continue;
                for (j = 0; j < L->d_out; j++) y[j] += wi * d[j];
            }
        }
        return MOLORA_RESULT_SUCCESS;
    }
    for (t = 0; t < T; t++) {
        float *h = HG + (size_t)t * L->n_rows;
        for (i = 0; i < n; i++) {
            float c = W[(size_t)t * n + i] * L->scaling[i];
            for (j = L->offset[i]; j < L->offset[i] + L->rank[i]; j++) h[j] *= c;
        }
    }
    molora__sgemm(1, T, L->d_out, L->r_total, 1.0f, HG, L->n_rows, L->B, L->r_total, 1.0f, a->y, L->d_out);
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
    for (i = 0; i < L->n; i++) {
        float c = weights[i] * L->scaling[i];
        if (c == 0.0f) continue;
        molora__sgemm(0, L->d_out, L->d_in, L->rank[i], c, L->B + L->offset[i], L->r_total,
                      L->A + (size_t)L->offset[i] * L->d_in, L->d_in, 1.0f, W, L->d_in);
    }
    return MOLORA_RESULT_SUCCESS;
}

/* ---- [alpha] ---------------------------------------------------------------------------------
   AlphaLoRA: eigenvalues of W^T W through LAPACK, the power-law fits of reference-math.md 5.2
   (WeightWatcher) and 5.3 (fix_finger), the per-layer mean and the allocation of section 6. */
#ifndef MOLORA_NO_BLAS
#ifdef __cplusplus
extern "C" {
#endif
/* LAPACK's Fortran entry points (OpenBLAS exports them); the trailing size_t are the hidden
   lengths of the character arguments, as gfortran passes them. */
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
             const int *lwork, int *iwork, const int *liwork, int *info, size_t ljobz, size_t luplo);
void dsyevd_2stage_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t ljobz, size_t luplo);
void ssyevd_2stage_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda, float *w,
                    float *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t ljobz, size_t luplo);
void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s, float *u, const int *ldu,
             float *vt, const int *ldvt, float *work, const int *lwork, int *iwork, int *info, size_t ljobz);
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s, double *u, const int *ldu,
             double *vt, const int *ldvt, double *work, const int *lwork, int *iwork, int *info, size_t ljobz);
#ifdef __cplusplus
}
#endif
#endif

#define MOLORA__ALPHA_PANEL 256   /* columns (or rows) of W converted to double per dsyrk update */

/* DEFAULT: the two-stage tridiagonalisation wins from m ~ 2048 (0.59 vs 0.60 s there, 4.3 vs
   6.8 s at 4096), the one-stage below (0.08 vs 0.11 s at 1024); both match float64 to 1e-13. */
MOLORA__PRIVATE molora_alpha_route molora__alpha_route(const molora_alpha_options *o, int rows, int cols)
{
    if (o->route != MOLORA_ALPHA_ROUTE_DEFAULT) return o->route;
    return (rows < cols ? rows : cols) >= 2048 ? MOLORA_ALPHA_ROUTE_GRAM64_2STAGE : MOLORA_ALPHA_ROUTE_GRAM64;
}

MOLORA__PRIVATE molora_result molora__alpha_check_options(const molora_alpha_options *o, const molora__logger *lg)
{
    if ((int)o->method < 0 || (int)o->method >= MOLORA_ALPHA_METHOD_COUNT)
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: unknown method %d", (int)o->method);
    if ((int)o->route < 0 || (int)o->route >= MOLORA_ALPHA_ROUTE_COUNT)
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: unknown route %d", (int)o->route);
    if (o->bins < 0)
        return molora__fail(lg, MOLORA_RESULT_INVALID_VALUE, "alpha: bins %d (must be >= 1, or 0 for 100)", o->bins);
    if (isnan(o->evals_thresh))
        return molora__fail(lg, MOLORA_RESULT_INVALID_VALUE, "alpha: evals_thresh is NaN");
    if (!o->memory.alloc != !o->memory.free)
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: memory hook needs both alloc and free");
    return MOLORA_RESULT_SUCCESS;
}

/* Scratch of one route for a (rows, cols) matrix, in elements of each part. */
typedef struct molora__alpha_ws {
    size_t a, panel, work, iwork, vals;   /* a: Gram or copy; vals: float eigen/singular values */
    int elem;                             /* sizeof(double) or sizeof(float) for a, panel, work, vals */
    int lwork, liwork;
} molora__alpha_ws;

#ifndef MOLORA_NO_BLAS
/* LAPACK's own workspace query, rounded up: lwork is returned as a float and may be short. */
MOLORA__PRIVATE int molora__alpha_lwork(double q, int minimum)
{
    double v = ceil(q * (1.0 + 1e-6)) + 1.0;
    if (v < (double)minimum) v = (double)minimum;
    return v > 2147483647.0 ? -1 : (int)v;
}

MOLORA__PRIVATE molora_result molora__alpha_layout(int rows, int cols, molora_alpha_route route, molora__alpha_ws *ws)
{
    int m = rows < cols ? rows : cols, mx = rows < cols ? cols : rows, q1 = -1, info = 0, iq = 0, one = 1;
    size_t mm;
    memset(ws, 0, sizeof *ws);
    if (!molora__mul((size_t)m, (size_t)m, &mm)) return MOLORA_RESULT_SIZE_OVERFLOW;
    if (route == MOLORA_ALPHA_ROUTE_GRAM64 || route == MOLORA_ALPHA_ROUTE_GRAM64_2STAGE) {
        double dq = 0, dummy = 0;
        ws->elem = (int)sizeof(double);
        ws->a = mm;
        if (!molora__mul((size_t)m, (size_t)(mx < MOLORA__ALPHA_PANEL ? mx : MOLORA__ALPHA_PANEL), &ws->panel))
            return MOLORA_RESULT_SIZE_OVERFLOW;
        if (route == MOLORA_ALPHA_ROUTE_GRAM64)
            dsyevd_("N", "L", &m, &dummy, &m, &dummy, &dq, &q1, &iq, &q1, &info, 1, 1);
        else
            dsyevd_2stage_("N", "L", &m, &dummy, &m, &dummy, &dq, &q1, &iq, &q1, &info, 1, 1);
        ws->lwork = molora__alpha_lwork(dq, 2 * m + 1);
        ws->liwork = iq > 1 ? iq : 1;
    } else if (route == MOLORA_ALPHA_ROUTE_FAST) {
        float fq = 0, dummy = 0;
        ws->elem = (int)sizeof(float);
        ws->a = mm;
        ws->vals = (size_t)m;
        ssyevd_2stage_("N", "L", &m, &dummy, &m, &dummy, &fq, &q1, &iq, &q1, &info, 1, 1);
        ws->lwork = molora__alpha_lwork((double)fq, 2 * m + 1);
        ws->liwork = iq > 1 ? iq : 1;
    } else {   /* SGESDD, DGESDD on the column-major view W^T (cols, rows) */
        int minimum = 3 * m + (mx > 7 * m ? mx : 7 * m);
        if (!molora__mul((size_t)rows, (size_t)cols, &ws->a)) return MOLORA_RESULT_SIZE_OVERFLOW;
        if (route == MOLORA_ALPHA_ROUTE_SGESDD) {
            float fq = 0, dummy = 0;
            ws->elem = (int)sizeof(float);
            ws->vals = (size_t)m;
            sgesdd_("N", &cols, &rows, &dummy, &cols, &dummy, &dummy, &one, &dummy, &one, &fq, &q1, &iq, &info, 1);
            ws->lwork = molora__alpha_lwork((double)fq, minimum);
        } else {
            double dq = 0, dummy = 0;
            ws->elem = (int)sizeof(double);
            dgesdd_("N", &cols, &rows, &dummy, &cols, &dummy, &dummy, &one, &dummy, &one, &dq, &q1, &iq, &info, 1);
            ws->lwork = molora__alpha_lwork(dq, minimum);
        }
        ws->liwork = 8 * m;
    }
    if (info != 0 || ws->lwork < 0) return MOLORA_RESULT_SIZE_OVERFLOW;
    ws->work = (size_t)ws->lwork;
    ws->iwork = (size_t)ws->liwork;
    return MOLORA_RESULT_SUCCESS;
}

/* Bytes of the route's scratch plus `extra` doubles, 64-byte aligned parts. */
MOLORA__PRIVATE int molora__alpha_bytes(const molora__alpha_ws *ws, size_t extra, size_t *bytes)
{
    *bytes = MOLORA__ALIGN;
    return molora__reserve(bytes, ws->a, (size_t)ws->elem) && molora__reserve(bytes, ws->panel, (size_t)ws->elem) &&
           molora__reserve(bytes, ws->work, (size_t)ws->elem) && molora__reserve(bytes, ws->vals, (size_t)ws->elem) &&
           molora__reserve(bytes, ws->iwork, sizeof(int)) && molora__reserve(bytes, extra, sizeof(double)) &&
           *bytes <= (size_t)PTRDIFF_MAX;
}

/* G (m, m), upper triangle row-major (= lower column-major) of W W^T (rows <= cols) or W^T W,
   accumulated in double from float32 panels of W converted to double. */
MOLORA__PRIVATE void molora__alpha_gram64(const float *W, int rows, int cols, double *G, double *P)
{
    int k0, k, i, j;
    if (rows <= cols) {
        for (k0 = 0; k0 < cols; k0 += k) {
            k = cols - k0 < MOLORA__ALPHA_PANEL ? cols - k0 : MOLORA__ALPHA_PANEL;
            for (i = 0; i < rows; i++)
                for (j = 0; j < k; j++) P[(size_t)i * k + j] = (double)W[(size_t)i * cols + k0 + j];
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, rows, k, 1.0, P, k, k0 ? 1.0 : 0.0, G, rows);
        }
    } else {
        for (k0 = 0; k0 < rows; k0 += k) {
            size_t n, q;
            k = rows - k0 < MOLORA__ALPHA_PANEL ? rows - k0 : MOLORA__ALPHA_PANEL;
            n = (size_t)k * cols;
            for (q = 0; q < n; q++) P[q] = (double)W[(size_t)k0 * cols + q];
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, cols, k, 1.0, P, cols, k0 ? 1.0 : 0.0, G, cols);
        }
    }
}

/* evals (m) ascending, from scratch laid out by molora__alpha_layout. */
MOLORA__PRIVATE molora_result molora__alpha_run(const float *W, int rows, int cols, molora_alpha_route route,
                                                const molora__alpha_ws *ws, unsigned char *cur, double *evals,
                                                const molora__logger *lg)
{
    int m = rows < cols ? rows : cols, info = 0, one = 1, i;
    size_t n;
    void *a = molora__carve(&cur, ws->a, (size_t)ws->elem);
    void *panel = molora__carve(&cur, ws->panel, (size_t)ws->elem);
    void *work = molora__carve(&cur, ws->work, (size_t)ws->elem);
    float *vals = (float *)molora__carve(&cur, ws->vals, (size_t)ws->elem);
    int *iwork = (int *)molora__carve(&cur, ws->iwork, sizeof(int));
    switch (route) {
    case MOLORA_ALPHA_ROUTE_GRAM64:
    case MOLORA_ALPHA_ROUTE_GRAM64_2STAGE:
        molora__alpha_gram64(W, rows, cols, (double *)a, (double *)panel);
        if (route == MOLORA_ALPHA_ROUTE_GRAM64)
            dsyevd_("N", "L", &m, (double *)a, &m, evals, (double *)work, &ws->lwork, iwork, &ws->liwork, &info, 1, 1);
        else
            dsyevd_2stage_("N", "L", &m, (double *)a, &m, evals, (double *)work, &ws->lwork, iwork, &ws->liwork, &info, 1, 1);
        break;
    case MOLORA_ALPHA_ROUTE_FAST:
        if (rows <= cols) cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, m, cols, 1.0f, W, cols, 0.0f, (float *)a, m);
        else              cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, m, rows, 1.0f, W, cols, 0.0f, (float *)a, m);
        ssyevd_2stage_("N", "L", &m, (float *)a, &m, vals, (float *)work, &ws->lwork, iwork, &ws->liwork, &info, 1, 1);
        for (i = 0; i < m; i++) evals[i] = (double)vals[i];
        break;
    case MOLORA_ALPHA_ROUTE_SGESDD: {
        float dummy = 0;
        memcpy(a, W, ws->a * sizeof(float));
        sgesdd_("N", &cols, &rows, (float *)a, &cols, vals, &dummy, &one, &dummy, &one, (float *)work, &ws->lwork, iwork, &info, 1);
        for (i = 0; i < m; i++) evals[i] = (double)vals[m - 1 - i] * (double)vals[m - 1 - i];
        break;
    }
    default: {   /* DGESDD */
        double dummy = 0, *A = (double *)a;
        for (n = 0; n < ws->a; n++) A[n] = (double)W[n];
        dgesdd_("N", &cols, &rows, A, &cols, evals, &dummy, &one, &dummy, &one, (double *)work, &ws->lwork, iwork, &info, 1);
        for (i = 0; i < m / 2; i++) { double t = evals[i]; evals[i] = evals[m - 1 - i]; evals[m - 1 - i] = t; }
        for (i = 0; i < m; i++) evals[i] *= evals[i];
        break;
    }
    }
    if (info != 0)
        return molora__fail(lg, MOLORA_RESULT_INVALID_VALUE, "alpha: LAPACK route %d failed to converge (info %d)", (int)route, info);
    return MOLORA_RESULT_SUCCESS;
}
#endif /* MOLORA_NO_BLAS */

MOLORA__PRIVATE molora_result molora__alpha_prepare(const float *W, int rows, int cols, const molora_alpha_options *o,
                                                    const molora__logger *lg)
{
    size_t n;
    molora_result r = molora__alpha_check_options(o, lg);
    if (r != MOLORA_RESULT_SUCCESS) return r;
    if (rows < 1 || cols < 1)
        return molora__fail(lg, MOLORA_RESULT_INVALID_SHAPE, "alpha: matrix (%d, %d) must have rows, cols >= 1", rows, cols);
    if (!W) return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: W is NULL");
    if (!molora__floats((size_t)rows, (size_t)cols, &n))
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "alpha: matrix (%d, %d) overflows", rows, cols);
#ifdef MOLORA_NO_BLAS
    return molora__fail(lg, MOLORA_RESULT_UNSUPPORTED, "alpha: eigenvalues need LAPACK (built with MOLORA_NO_BLAS)");
#else
    if (!molora__all_finite(W, n))
        return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "alpha: matrix (%d, %d) has NaN or Inf", rows, cols);
    return MOLORA_RESULT_SUCCESS;
#endif
}

MOLORA_API molora_result molora_alpha_workspace_size(int rows, int cols, const molora_alpha_options *options, size_t *size)
{
    molora_alpha_options o;
    molora_result r;
    if (size) *size = 0;
    if (!size) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (options) o = *options; else memset(&o, 0, sizeof o);
    if ((r = molora__alpha_check_options(&o, NULL)) != MOLORA_RESULT_SUCCESS) return r;
    if (rows < 1 || cols < 1) return MOLORA_RESULT_INVALID_SHAPE;
#ifdef MOLORA_NO_BLAS
    return MOLORA_RESULT_UNSUPPORTED;
#else
    {
        molora__alpha_ws ws;
        size_t m = (size_t)(rows < cols ? rows : cols);
        if ((r = molora__alpha_layout(rows, cols, molora__alpha_route(&o, rows, cols), &ws)) != MOLORA_RESULT_SUCCESS) return r;
        if (!molora__alpha_bytes(&ws, 2 * m + MOLORA__ALIGN / sizeof(double), size)) return MOLORA_RESULT_SIZE_OVERFLOW;
        return MOLORA_RESULT_SUCCESS;
    }
#endif
}

/* Scratch from options->workspace or the memory hook; *owned is what to free. */
MOLORA__PRIVATE void *molora__alpha_scratch(const molora_alpha_options *o, size_t bytes, void **owned)
{
    *owned = NULL;
    if (o->workspace) return o->workspace_size >= bytes ? o->workspace : NULL;
    *owned = o->memory.alloc ? o->memory.alloc(bytes, o->memory.user) : malloc(bytes);
    return *owned;
}
MOLORA__PRIVATE void molora__alpha_release(const molora_alpha_options *o, void *owned)
{
    if (!owned) return;
    if (o->memory.free) o->memory.free(owned, o->memory.user);
    else free(owned);
}

MOLORA__PRIVATE molora_result molora__alpha_scratch_fail(const molora_alpha_options *o, const molora__logger *lg, size_t bytes)
{
    if (o->workspace)
        return molora__fail(lg, MOLORA_RESULT_WORKSPACE_TOO_SMALL, "alpha: workspace %zu bytes, need %zu", o->workspace_size, bytes);
    return molora__fail(lg, MOLORA_RESULT_OUT_OF_MEMORY, "alpha: cannot allocate %zu bytes of scratch", bytes);
}

MOLORA_API molora_result molora_alpha_eigenvalues(const float *W, int rows, int cols, const molora_alpha_options *options,
                                                  double *evals)
{
    molora_alpha_options o;
    molora__logger lg;
    molora_result r;
    if (options) o = *options; else memset(&o, 0, sizeof o);
    lg.fn = o.log; lg.user = o.log_user;
    if (!evals) return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: evals is NULL");
    if ((r = molora__alpha_prepare(W, rows, cols, &o, &lg)) != MOLORA_RESULT_SUCCESS) return r;
#ifdef MOLORA_NO_BLAS
    return MOLORA_RESULT_UNSUPPORTED;
#else
    {
        molora__alpha_ws ws;
        size_t bytes;
        void *owned, *p;
        molora_alpha_route route = molora__alpha_route(&o, rows, cols);
        if ((r = molora__alpha_layout(rows, cols, route, &ws)) != MOLORA_RESULT_SUCCESS || !molora__alpha_bytes(&ws, 0, &bytes))
            return molora__fail(&lg, MOLORA_RESULT_SIZE_OVERFLOW, "alpha: scratch for (%d, %d) overflows", rows, cols);
        if (!(p = molora__alpha_scratch(&o, bytes, &owned))) return molora__alpha_scratch_fail(&o, &lg, bytes);
        r = molora__alpha_run(W, rows, cols, route, &ws, molora__align_up(p), evals, &lg);
        molora__alpha_release(&o, owned);
        return r;
    }
#endif
}

MOLORA__PRIVATE int molora__alpha_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* KS distance of the power law with exponent a on the tail lam[0..n-1] (lg = ln lam):
   max_j |1 - (lam_j/lam_0)^(1-a) - j/n|. a = +inf gives pow's 1^-inf = 1 and 0 elsewhere. */
MOLORA__PRIVATE double molora__alpha_ks(const double *lg, int n, double a)
{
    double d = 0.0, nn = (double)n, t;
    int j;
    for (j = 0; j < n; j++) {
        double x = lg[j] - lg[0];
        double f = isinf(a) ? (x == 0.0 ? 1.0 : 0.0) : exp((1.0 - a) * x);
        t = fabs(1.0 - f - (double)j / nn);
        if (t > d) d = t;
    }
    return d;
}

/* The fit of lam (N, ascending, all > 0) with lg = ln lam as scratch. */
MOLORA__PRIVATE void molora__alpha_fit_sorted(const double *lam, int N, double *lg, const molora_alpha_options *o,
                                              molora_alpha_fit *fit)
{
    int i, lo_i = 0, hi_i = N - 1, best = -1;
    double S = 0.0, best_D = 2.0, best_a = 0.0;
    for (i = 0; i < N; i++) lg[i] = log(lam[i]);
    if (o->method == MOLORA_ALPHA_FIX_FINGER) {
        /* histogram of log10 lam over [min, max] (torch.histc), first peak bin, its lower edge */
        int bins = o->bins ? o->bins : 100, ih = 0, cur = -1, cnt = 0, best_cnt = 0;
        double hmin = log10(lam[0]), hmax = log10(lam[N - 1]), edge = hmin, xmin2, lo, hi;
        if (hmax > hmin) {
            double step = (hmax - hmin) / bins;
            for (i = 0; i <= N; i++) {   /* lam sorted: bins come in runs */
                int b = -2;
                if (i < N) {
                    b = (int)((log10(lam[i]) - hmin) * bins / (hmax - hmin));
                    if (b >= bins) b = bins - 1;
                }
                if (b == cur) { cnt++; continue; }
                if (cur >= 0 && cnt > best_cnt) { best_cnt = cnt; ih = cur; }
                cur = b; cnt = 1;
            }
            edge = ih < (bins + 1) / 2 ? hmin + step * ih : hmax - step * (bins - ih);   /* torch.linspace */
        }
        xmin2 = pow(10.0, edge);
        lo = log10(0.95 * xmin2);   /* sic: upstream compares this log10 value with raw eigenvalues */
        hi = 1.5 * xmin2;
        while (lo_i < N - 1 && lam[lo_i] < lo) lo_i++;
        hi_i = lo_i;
        while (hi_i < N - 1 && !(lam[hi_i] > hi)) hi_i++;
    }
    /* candidates lo_i..hi_i-1, from the top so the tail sums accumulate like upstream's */
    for (i = N - 1; i >= hi_i; i--) S += lg[i];
    for (i = hi_i - 1; i >= lo_i; i--) {
        double n = (double)(N - i), a, D;
        S += lg[i];
        a = 1.0 + n / (S - n * lg[i]);
        D = a > 1.0 ? molora__alpha_ks(lg + i, N - i, a) : 1.0;
        if (D <= best_D) { best_D = D; best_a = a; best = i; }   /* <=: the first index wins ties */
    }
    /* unvisited slots hold alpha 0, D 1: slot 0 wins if nothing beats 1 */
    if (best < 0 || (best_D >= 1.0 && lo_i > 0)) { best = 0; best_a = 0.0; best_D = 1.0; fit->flags |= MOLORA_ALPHA_FLAG_NO_CANDIDATE; }
    if (isinf(best_a)) fit->flags |= MOLORA_ALPHA_FLAG_EQUAL_TAIL;
    fit->alpha = best_a;
    fit->ks = best_D;
    fit->xmin = lam[best];
    fit->n_tail = N - best;
    fit->sigma = (best_a - 1.0) / sqrt((double)(N - best));
}

/* Sorts, filters and fits evals (n) with lg (n) as scratch. */
MOLORA__PRIVATE molora_result molora__alpha_fit(double *evals, int n, double *lg, const molora_alpha_options *o,
                                                const molora__logger *lg_, molora_alpha_fit *fit)
{
    int i, k = 0;
    double thresh = o->evals_thresh;
    memset(fit, 0, sizeof *fit);
    fit->n_eigs = n;
    for (i = 0; i < n; i++)
        if (!isfinite(evals[i])) return molora__fail(lg_, MOLORA_RESULT_NON_FINITE, "alpha: eigenvalue %d is NaN or Inf", i);
    for (i = 1; i < n && evals[i - 1] <= evals[i]; i++) {}
    if (i < n) qsort(evals, (size_t)n, sizeof *evals, molora__alpha_cmp);
    if (n > 0) { fit->lambda_min = evals[0]; fit->lambda_max = evals[n - 1]; }
    if (thresh == 0.0) thresh = o->method == MOLORA_ALPHA_WW ? 1e-5 : -1.0;
    if (thresh >= 0.0) while (k < n && !(evals[k] > thresh)) k++;
    fit->n_used = n - k;
    if (n - k < 2)
        return molora__fail(lg_, MOLORA_RESULT_DEGENERATE_SPECTRUM, "alpha: %d of %d eigenvalues above %g; a fit needs 2 (zero matrix?)",
                            n - k, n, thresh);
    if (!(evals[k] > 0.0))
        return molora__fail(lg_, MOLORA_RESULT_DEGENERATE_SPECTRUM, "alpha: eigenvalue %g <= 0 (rank-deficient matrix); "
                            "set evals_thresh (upstream filter_zeros uses 1e-4)", evals[k]);
    molora__alpha_fit_sorted(evals + k, n - k, lg, o, fit);
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API molora_result molora_alpha_fit_spectrum(double *evals, int n, const molora_alpha_options *options,
                                                   molora_alpha_fit *fit)
{
    molora_alpha_options o;
    molora__logger lg;
    molora_result r;
    size_t bytes = MOLORA__ALIGN;
    void *owned, *p;
    if (options) o = *options; else memset(&o, 0, sizeof o);
    lg.fn = o.log; lg.user = o.log_user;
    if (!fit) return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: fit is NULL");
    memset(fit, 0, sizeof *fit);
    if ((r = molora__alpha_check_options(&o, &lg)) != MOLORA_RESULT_SUCCESS) return r;
    if (n < 0 || (n > 0 && !evals)) return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: %d eigenvalues at %p", n, (void *)evals);
    if (!molora__reserve(&bytes, (size_t)n, sizeof(double)))
        return molora__fail(&lg, MOLORA_RESULT_SIZE_OVERFLOW, "alpha: %d eigenvalues overflow", n);
    if (!(p = molora__alpha_scratch(&o, bytes, &owned))) return molora__alpha_scratch_fail(&o, &lg, bytes);
    r = molora__alpha_fit(evals, n, (double *)molora__align_up(p), &o, &lg, fit);
    molora__alpha_release(&o, owned);
    return r;
}

MOLORA_API molora_result molora_alpha_matrix(const float *W, int rows, int cols, const molora_alpha_options *options,
                                             molora_alpha_fit *fit)
{
    molora_alpha_options o;
    molora__logger lg;
    molora_result r;
    if (options) o = *options; else memset(&o, 0, sizeof o);
    lg.fn = o.log; lg.user = o.log_user;
    if (!fit) return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: fit is NULL");
    memset(fit, 0, sizeof *fit);
    if ((r = molora__alpha_prepare(W, rows, cols, &o, &lg)) != MOLORA_RESULT_SUCCESS) return r;
#ifdef MOLORA_NO_BLAS
    return MOLORA_RESULT_UNSUPPORTED;
#else
    {
        molora__alpha_ws ws;
        size_t bytes, m = (size_t)(rows < cols ? rows : cols);
        void *owned, *p;
        unsigned char *cur;
        double *evals, *lgv;
        molora_alpha_route route = molora__alpha_route(&o, rows, cols);
        if ((r = molora__alpha_layout(rows, cols, route, &ws)) != MOLORA_RESULT_SUCCESS ||
            !molora__alpha_bytes(&ws, 2 * m + MOLORA__ALIGN / sizeof(double), &bytes))
            return molora__fail(&lg, MOLORA_RESULT_SIZE_OVERFLOW, "alpha: scratch for (%d, %d) overflows", rows, cols);
        if (!(p = molora__alpha_scratch(&o, bytes, &owned))) return molora__alpha_scratch_fail(&o, &lg, bytes);
        cur = molora__align_up(p);
        evals = (double *)molora__carve(&cur, m, sizeof(double));
        lgv = (double *)molora__carve(&cur, m, sizeof(double));
        r = molora__alpha_run(W, rows, cols, route, &ws, cur, evals, &lg);
        if (r == MOLORA_RESULT_SUCCESS) r = molora__alpha_fit(evals, (int)m, lgv, &o, &lg, fit);
        fit->n_eigs = (int)m;
        molora__alpha_release(&o, owned);
        return r;
    }
#endif
}

MOLORA_API molora_result molora_alpha_layer_mean(const double *matrix_alpha, const int *matrix_layer, int n_matrices,
                                                 int n_layers, double *layer_alpha)
{
    int i, l;
    if (!layer_alpha || n_matrices < 0 || n_layers < 0 || (n_matrices > 0 && !matrix_alpha)) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (!matrix_layer && n_matrices != n_layers) return MOLORA_RESULT_INVALID_SHAPE;
    for (l = 0; l < n_layers; l++) {
        double s = 0.0;
        int c = 0;
        for (i = 0; i < n_matrices; i++) {
            int li = matrix_layer ? matrix_layer[i] : i;
            if (li < 0 || li >= n_layers) return MOLORA_RESULT_INVALID_LAYER;
            if (li != l) continue;
            if (!isfinite(matrix_alpha[i])) return MOLORA_RESULT_NON_FINITE;
            s += matrix_alpha[i];
            c++;
        }
        if (c == 0) return MOLORA_RESULT_INVALID_LAYER;
        layer_alpha[l] = s / c;
    }
    return MOLORA_RESULT_SUCCESS;
}

/* sum_i alpha_i^beta with numpy's pairwise summation (add.reduce, contiguous), bit for bit. */
MOLORA__PRIVATE double molora__alpha_pow_sum(const double *a, int n, double beta)
{
    int i, j;
    if (n < 8) {
        double res = 0.0;
        for (i = 0; i < n; i++) res += pow(a[i], beta);
        return res;
    }
    if (n <= 128) {
        double r[8], res;
        for (j = 0; j < 8; j++) r[j] = pow(a[j], beta);
        for (i = 8; i < n - (n % 8); i += 8)
            for (j = 0; j < 8; j++) r[j] += pow(a[i + j], beta);
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += pow(a[i], beta);
        return res;
    }
    {
        int n2 = n / 2;
        n2 -= n2 % 8;
        return molora__alpha_pow_sum(a, n2, beta) + molora__alpha_pow_sum(a + n2, n - n2, beta);
    }
}

MOLORA_API molora_result molora_alpha_allocate(const double *layer_alpha, int n_layers, int budget, double beta,
                                               int *experts, int *top_k)
{
    int l, i, sum = 0;
    double S;
    molora_result r = MOLORA_RESULT_SUCCESS;
    if (!layer_alpha || !experts) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (n_layers < 1) return MOLORA_RESULT_INVALID_SHAPE;
    if (budget < 0 || !isfinite(beta)) return MOLORA_RESULT_INVALID_VALUE;
    for (l = 0; l < n_layers; l++) {
        if (!isfinite(layer_alpha[l])) return MOLORA_RESULT_NON_FINITE;
        if (!(layer_alpha[l] > 0.0)) return MOLORA_RESULT_INVALID_VALUE;
        if (!isfinite(pow(layer_alpha[l], beta))) return MOLORA_RESULT_NON_FINITE;
    }
    S = molora__alpha_pow_sum(layer_alpha, n_layers, beta);   /* sum of s_l = alpha_l^beta */
    if (!isfinite(S) || !(S > 0.0)) return MOLORA_RESULT_NON_FINITE;
    for (l = 0; l < n_layers; l++) {   /* np.round((s / S) * T): half to even */
        experts[l] = (int)nearbyint(pow(layer_alpha[l], beta) / S * (double)budget);
        sum += experts[l];
    }
    while (sum != budget) {   /* one at a time: unnormalised s against the counts, first index */
        int add = budget > sum, pick = 0;
        double best = pow(layer_alpha[0], beta) - (double)experts[0];
        for (i = 1; i < n_layers; i++) {
            double v = pow(layer_alpha[i], beta) - (double)experts[i];
            if (add ? v < best : v > best) { best = v; pick = i; }
        }
        experts[pick] += add ? 1 : -1;
        sum += add ? 1 : -1;
    }
    for (l = 0; l < n_layers; l++) {
        if (experts[l] < 0) r = MOLORA_RESULT_NEGATIVE_EXPERTS;
        if (top_k) top_k[l] = experts[l] > 1 ? 2 : 1;
    }
    return r;
}

MOLORA_API molora_result molora_alpha_plan_apply(const int *experts, const int *top_k, int n_layers, const int *layer_of,
                                                 molora_layer_desc *descs, int n_descs)
{
    int i, l;
    if (!experts || n_layers < 0 || n_descs < 0 || (n_descs > 0 && !descs)) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (!layer_of && n_descs > n_layers) return MOLORA_RESULT_INVALID_SHAPE;
    for (i = 0; i < n_descs; i++) {   /* validate everything before writing anything */
        l = layer_of ? layer_of[i] : i;
        if (l < 0 || l >= n_layers) return MOLORA_RESULT_INVALID_LAYER;
        if (experts[l] < 0) return MOLORA_RESULT_NEGATIVE_EXPERTS;
        if (top_k && experts[l] > 0 && (top_k[l] < 1 || top_k[l] > experts[l])) return MOLORA_RESULT_INVALID_TOP_K;
    }
    for (i = 0; i < n_descs; i++) {
        l = layer_of ? layer_of[i] : i;
        descs[i].n_experts = experts[l];
        if (experts[l] == 0) { descs[i].top_k = 0; continue; }
        descs[i].routing = MOLORA_ROUTING_TOPK;
        descs[i].top_k = top_k ? top_k[l] : (experts[l] > 1 ? 2 : 1);
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

/* molora.h - mixture-of-LoRA-experts inference in one C header.  v0.7.0
   MIT licence at the end of the file. Maths: docs/maths.md; design: docs/design.md; files:
   docs/formats.md; measured speed: README.md, "Measured".

   WHAT IT IS
     A frozen linear layer y = W0 x (+ b) carries N LoRA experts dW_i = s_i B_i A_i, mixed per
     token by routing weights w_i(x):

         y = W0 x + b + sum_i w_i(x) * s_i * B_i (A_i x)

     molora runs the routing rules of MoLE, AdaMoLE and MoLA / AlphaLoRA as their upstream code
     does, reads their checkpoints (safetensors), and computes AlphaLoRA's expert plan.

   MAP  (each part below is a section between the banners >>TAG and <<TAG: search for >>TAG)
     declarations
       api_core          results, descriptors, molora_model_init, molora_forward / route / merge
       api_files         the file declarations (out with MOLORA_NO_FILES):
         api_safetensors   the strict safetensors reader (its error table), dtypes, load options
         api_adapters      adapter layouts and molora_adapter_open
         api_xlora         X-LoRA checkpoints, their modules, the classifier's weights
       api_alpha         AlphaLoRA: alpha per matrix and block, allocation, plan, block patterns
     implementation
       common            result strings, memory hook, logger and molora__fail, size arithmetic
       types             F16 / BF16 to float32 conversion
       kernels           SIMD and portable kernels (AVX-512, AVX2+FMA, C) with their naive twins,
                         chosen once per CPU; BF16 widening and the BF16 nt16 / nn16 kernels
         gemv            the single-row kernels of decode (M = 1): gvt y = W x, gvn y = x W
         narrow          ntn, the gate's narrow nt: 3 tokens x 9 rows in registers, at any T
         vexp            exp of a vector for the softmax (libm's expf, or AVX-512 within 1 ulp)
       seam              molora__pick / molora__product: which kernel runs each product (BLAS
                         sgemv / sgemm, the own single-row and multi-token kernels, MOLORA_NO_BLAS
                         fallbacks)
       eigen             cyclic Jacobi (symmetric, double) and ARROW's exact prototypes
       init              validation and packing of each layer (ARROW's prototypes computed here),
                         float32 or BF16 experts
       routing           the rules of one token: DENSE softmax, TOPK, THRESHOLD, ADAMOLE, ARROW, masks
       forward           one call (molora__forward_pass): check and set up, gate logits, route
                         (FIXED weights, or the MOLE_OUTPUT gate over the experts' deltas), the
                         path chosen once: DECODE (T = 1), SMALL (2..16), GEMM (> 16), SPARSE
                         (tokens grouped by expert); frozen layer, experts, MoLE output mix, in
                         n_tasks tasks (parallel_for); the adapter index of adapter pools; the
                         experts' rows through molora__rows_a / _bt (BF16 widened into a tile)
       merge             molora_merge
       files             everything that reads files (compiled out by MOLORA_NO_FILES):
         io                open, fstat, mmap or read whole (MOLORA_LOAD_READ), directories
         dtypes, utf8      safetensors dtype names and sizes; strict UTF-8
         json              the one strict JSON parser
         safetensors       header validation (read_metadata, Metadata::validate), tensor lookup
         conversion        tensors to float32 or typed descriptor pointers
         index             sharded models: model.safetensors.index.json
         adapter_types     the adapter object, its modules, layout names
         config            adapter_config.json keys per layout
         patterns          PEFT rank_pattern / alpha_pattern keys (linear-time regex)
         modules           tensor names -> modules and experts; layout detection; checks
         builders          layouts -> layer descriptors (PEFT LoRA, AdaMoLE, MOLE, MoLA, MOLORA)
         xlora             X-LoRA: config, classifier tensors, adapters, module order, scalings
       alpha             AlphaLoRA (compiled out by MOLORA_NO_ALPHA):
         alpha_solvers     eigenvalues of W^T W through LAPACK
         alpha_fit         fix_finger, WeightWatcher 0.7.5.5 and 0.7.7 power-law fits
         alpha_plan        mean per block, exponential_scaling allocation, plan into descriptors
         alpha_patterns    which tensors form block L; model families

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
       r = molora_forward(m, &fa);        // Y (T, d_out) = X W0^T + delta (fan_in_fan_out: X W0)
       ...  molora_model_free(m);
     From files: molora_adapter_open(dir) then molora_adapter_model_desc() gives the descriptor
     (set W0 from the base model, or use MOLORA_OUTPUT_DELTA). examples/quickstart.c runs it all.
     X-LoRA: molora_xlora_open(dir), its molora_xlora_adapter() as above, and per call
     molora_xlora_scalings() (T, L, N) as each module's per-token FIXED weights (api_xlora).

   ROUTING RULES (molora_routing; formulas, defaults, edge cases: docs/maths.md)
     DENSE        softmax((Wg x + bg) / temperature)               MoLE, token level
     TOPK         the k best of the softmax, renormalised; ties to the lowest index     MoLA
     THRESHOLD    p_i >= threshold, renormalised                   AdaMoLE repo's baseline
     ADAMOLE      p_i - tau where p_i >= tau, tau = tau_max sigmoid(wt.x + bt), tau_max 1/N
     MOLE_OUTPUT  softmax of e^T (the experts' deltas, concatenated, L2-normalised)   MoLE paper
     FIXED        weights given per call (any layer also takes them: X-LoRA-style scalings)
     ARROW        top-k of |p_e . x| over per-expert prototypes P (N, d_in), softmax with the
                  temperature over the k kept; default k 3; no gate, no gate bias   PEFT's Arrow
                  P given (layer desc `prototypes`), or computed at init: each expert's exact
                  top right singular vector of B_e A_e, from a thin QR of A_e^T and a Jacobi
                  eigen-solver on the r x r core (no BLAS or LAPACK needed; B_e A_e = 0 gives 0)
     adapter_index  one expert per token at weight 1, -1 for none: adapter pools (any layer)
     A mask removes experts for a token (the rule runs over the rest); a token with every
     expert masked, or with nothing selected, gets the frozen layer. Output: the full layer, or
     the delta only (Y += delta) for an engine that runs its own base matmul.

   MEMORY AND OWNERSHIP
     - Experts (A, B), the gate and the threshold net are packed into memory the model owns at
       init; the caller may free them right after molora_model_init().
     - W0, the bias and the MoLE gate e are BORROWED: keep them alive and unchanged until
       molora_model_free(), or set MOLORA_MODEL_COPY_WEIGHTS. A W0 that is F16 / BF16, or F32 but
       not 4-byte aligned, is converted into a float32 copy the model owns.
     - Typed matrices (molora_type F32, F16, BF16) may have any alignment, e.g. straight into a
       mapped safetensors file; init converts exactly, only the layers it packs.
     - Expert precision: the experts' A and B are packed as float32 (4 bytes an element), or
       as BF16 (2 bytes) with MOLORA_MODEL_EXPERTS_BF16 (every layer; F32 / F16 values rounded
       to the nearest BF16, ties to even) or MOLORA_MODEL_EXPERTS_KEEP_BF16 (the layers whose
       experts are all BF16, kept bit for bit). W0, gates and threshold nets stay float32.
       The kernels widen BF16 exactly and compute in float32 (X is never rounded; no BF16
       dot-product instruction is used): a BF16 layer gives the float32 layer of the same
       stored values within float rounding, and the same routing bit for bit (MoLE's output
       gate, which reads the experts' deltas, within rounding). Its workspace holds, per task,
       a tile of R (d_in + d_out) floats into which the paths that do not read BF16 directly
       widen the experts: R = r_max (the layer's largest rank: a run of consecutive experts of
       at most r_max rows at a time) for up to 16 tokens, beyond that min(r_total, 64) if
       larger (runs of up to 64 rows, one GEMM each). molora_model_memory() gives the model's
       bytes and its experts' share. On AVX-512 CPUs a gate of 16 rows or more (with AdaMoLE's
       threshold row) also keeps a transpose of its rows for the gto kernel: about the gate's
       own size again (a 64-expert gate over d_in 4096: 1 MiB).
     - Every allocation goes through desc.memory (default malloc / free), one block per model.
       The forward path allocates nothing: size a workspace with molora_workspace_size()
       (molora_workspace_size_tasks() for a call split through parallel_for).
     - Loaders: pointers from getters live until the object's free; see api_safetensors.

   THREAD SAFETY
     - A model is immutable after init: any number of threads may call molora_forward(),
       molora_route(), molora_merge() and the getters at once, each with its OWN workspace.
     - molora's kernels are single-threaded. One call is split over threads either by the
       caller (ith / nth: nth calls, each with its own workspace) or by molora through the
       caller's pool (parallel_for, n_tasks, below). molora never changes OpenBLAS's thread
       count: keep it at one thread while either split runs.
     - parallel_for: molora_forward checks the arguments, computes the gate logits, the routing
       (weights_out, counts_out) and the path once, then calls parallel_for(parallel_user,
       n_tasks, task, ctx) for the products once, from the calling thread, when there is work:
       not for T = 0, after an error, for an ith / nth caller without columns, or for DELTA
       output with no expert routed (molora_route checks the fields, never calls it for the
       products, and needs only molora_workspace_size()'s workspace). Up to two calls come before that one,
       one after the other, each with tasks of its own: (1) the gate routing in blocks of 32
       tokens, from 64 tokens on a layer whose gate (with its threshold net) has up to 32 rows,
       or any number where the kernels have gto (>>outer: AVX-512 CPUs, not with
       MOLORA_PORTABLE=1 or MOLORA_NO_SIMD), and no MoLE output gate, when no weights or adapter
       index replace it, n_tasks > 1 (for any caller, and the one call molora_route makes to
       the hook); its tasks write disjoint tokens' gate logits and weights, and the calling thread then reports
       the first error, if any, with the code and message of the call without the hook;
       (2) the experts' inputs H = X A^T, n_tasks > 1, on a float32 layer with experts routed
       and no MoLE output mix: on the dense path (PATH_GEMM) from 32 tokens, in blocks of
       tokens, and on the grouped path (PATH_SPARSE: an adapter pool, sparse routing) in
       blocks of an expert's tokens or token by token (the path's order); its tasks write
       disjoint parts of H into slice 0, which the products' tasks then only read. Each call
       is as follows. The hook must call task(ctx, ith, n_tasks) exactly once for every ith in
       0..n_tasks-1, on any threads (the calling one included), in any order, at once or one
       after another, and return only after every task has returned, its writes visible to the
       calling thread (any pool that joins with a mutex, a condition variable or acquire/release
       atomics does). ctx is valid
       only until parallel_for returns. A task never fails, never blocks on another task, never
       calls the hook or the logger, and allocates nothing: task ith writes only its share of
       Y's columns (chunks of 16; with more tasks than chunks some have none and return at once)
       and slice ith of the workspace (in call (2): its blocks of H in slice 0; in call (1): its
       tokens' rows of the routing's part of the workspace and one int per block of tokens).
       molora does not nest calls to the hook, but several molora_forward calls (one per thread,
       each with its own workspace) may call it at once, and a pool thread may run other molora
       calls while it waits: molora keeps no state between calls. The workspace holds one slice
       per task: molora_workspace_size_tasks().
     - Results: a call split into n_tasks tasks is bitwise equal to the same call split by
       ith / nth with nth = n_tasks, whatever the order and threads the tasks ran on. The
       routing (weights_out, counts_out, path_out) is bitwise the same for every split; Y agrees
       with the one-task call within float rounding (the tests bound it at 1e-5 of the row's
       largest value) but is not promised bitwise: a narrower block of columns may be blocked
       differently by BLAS or the kernels. n_tasks = 1 through the hook is the plain call, bitwise.
     - Both at once: caller ith of nth with n_tasks tasks computes shares ith * n_tasks .. ith *
       n_tasks + n_tasks - 1 of an nth * n_tasks split, and equals that split bitwise.
     - molora_model_init() and molora_model_free() are not concurrent with other use of the
       same model. The logger may be called from any thread that uses the model.

   ERRORS
     Every fallible call returns molora_result; molora_result_string() names it. The library
     never prints, exits or aborts on bad data: detail (which layer, expert, tensor, key, file)
     goes to the optional logger of the descriptor. On an error nothing is half-built or
     leaked, and a forward call that fails leaves Y unchanged.

   BUILD OPTIONS (define before including)
     MOLORA_IMPLEMENTATION  compile the implementation in this translation unit
     MOLORA_STATIC          make every function static (a private copy per translation unit)
     MOLORA_API             override the linkage of the public functions
     MOLORA_NO_BLAS         no OpenBLAS / LAPACK: molora's own kernels for every size (same results
                            within float tolerance); AlphaLoRA's eigenvalues return UNSUPPORTED
     MOLORA_NO_SIMD         compile only the portable C kernels (no AVX2 / AVX-512 code)
     MOLORA_NO_STDIO        no file access (open, mmap, directories): only the in-memory loaders
     MOLORA_NO_FILES        no JSON parser, safetensors reader or adapter loaders (api_files and
                            files compiled out); with MOLORA_NO_ALPHA too: the core layer only
     MOLORA_NO_ALPHA        no AlphaLoRA (api_alpha and alpha compiled out)
     MOLORA_ASSERT(c)       assertion for programmer errors only (default: assert from assert.h)
     MOLORA_JSON_MAX_DEPTH  nesting limit of the JSON parser (default 128, as serde_json)
     Environment: MOLORA_PORTABLE=1 forces the portable kernels at run time (valgrind cannot run
     AVX-512 code); otherwise AVX-512, AVX2+FMA or portable is chosen from the CPU once.

   DOES NOT
     - parse pickles (tools/convert_pickle.py converts AdaMoLE / AlphaLoRA checkpoints);
     - split the routing over the hook's tasks below 64 tokens, for gates over 32 rows where
       the kernels have no gto (no AVX-512, MOLORA_PORTABLE=1, MOLORA_NO_SIMD) or for the MoLE
       output gate (those run on the calling thread), or the experts' H = X A^T below
       32 tokens on the dense path or on BF16 layers (each task computes it for the experts
       some token routes to, as every ith / nth caller does);
     - have AVX2 versions of the packed small-batch, gather and grouped kernels (AVX2 CPUs use
       the row-major and portable ones);
     - keep quantised weights, or F16 experts in 16 bits at run time (init converts them to
       float32, or to BF16 on request: see MEMORY AND OWNERSHIP);
     - read BF16 experts in registers beyond AVX-512's decode and small-batch dense products:
       T > 16, the grouped path, MoLE's output gate and other CPUs widen a tile first;
     - train: no gradients, dropout or auxiliary losses; inference only.
*/
#ifndef MOLORA_H
#define MOLORA_H

#include <stddef.h>
#include <stdint.h>

#define MOLORA_VERSION_MAJOR 0
#define MOLORA_VERSION_MINOR 13
#define MOLORA_VERSION_PATCH 0
#define MOLORA_VERSION_STRING "0.13.0"

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

/* >>api_core  results, descriptors, model init, forward, route and merge ---------------------- */
/* ---- results ---------------------------------------------------------------------------- */
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
    /* files (safetensors, adapters): see the table in api_safetensors */
    MOLORA_RESULT_IO_ERROR,            /* cannot open, stat or map a file                        */
    MOLORA_RESULT_HEADER_TOO_SMALL,    /* safetensors: fewer than 8 bytes                        */
    MOLORA_RESULT_HEADER_TOO_LARGE,    /* safetensors: header length > 100,000,000              */
    MOLORA_RESULT_INVALID_HEADER_LENGTH, /* safetensors: 8 + header length > file size          */
    MOLORA_RESULT_INVALID_UTF8,        /* safetensors header or JSON file is not UTF-8           */
    MOLORA_RESULT_INVALID_JSON,        /* syntax, nesting, field types, missing field, dtype     */
    MOLORA_RESULT_INVALID_OFFSET,      /* data_offsets not contiguous from 0 / overlapping       */
    MOLORA_RESULT_TENSOR_INVALID_INFO, /* shape x dtype size differs from data_offsets          */
    MOLORA_RESULT_INCOMPLETE_BUFFER,   /* tensors do not cover the data section exactly          */
    MOLORA_RESULT_TENSOR_NOT_FOUND,
    MOLORA_RESULT_DUPLICATE_NAME,      /* a tensor name (or an expert's lora_A / lora_B) twice   */
    MOLORA_RESULT_UNSUPPORTED_DTYPE,   /* read as float: only F32, F16, BF16                     */
    MOLORA_RESULT_INVALID_CONFIG,      /* adapter_config.json: missing key, bad value or type    */
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
    MOLORA_ROUTING_ARROW,         /* top-k of |p_e . x| over per-expert prototypes (PEFT's Arrow) */
    MOLORA_ROUTING_COUNT
} molora_routing;
/* "dense", "topk", "threshold", "adamole", "mole_output", "fixed", "arrow"; "?" for any other value. */
MOLORA_API const char *molora_routing_name(molora_routing routing);

/* One memory hook for the model: both functions or neither (then malloc / free). */
typedef struct molora_memory {
    void *(*alloc)(size_t size, void *user);
    void (*free)(void *ptr, void *user);
    void *user;
} molora_memory;

/* Called with detail for every error the model sees (init and calls). May be NULL. */
typedef void (*molora_log_fn)(void *user, molora_result result, const char *message);

/* Element type of a matrix a descriptor points to. Zero is F32, so a zero-initialised
   descriptor means float32 everywhere. F16 (IEEE binary16) and BF16 (bfloat16) elements are
   uint16_t values in host byte order (on little-endian hosts: the bytes safetensors stores).
   Typed pointers may have ANY alignment (safetensors data is not aligned in general): init
   reads them byte-safely. Init converts F16 / BF16 to float32 exactly (every F16 and BF16
   value is a float32 value), so a typed descriptor gives the same model, bit for bit, as
   its float32 conversion (experts may instead be stored as BF16: MOLORA_MODEL_EXPERTS_BF16). */
typedef enum molora_type {
    MOLORA_TYPE_F32 = 0,
    MOLORA_TYPE_F16,
    MOLORA_TYPE_BF16,
    MOLORA_TYPE_COUNT
} molora_type;

/* Converts n elements of src (type, any alignment) to float32 in dst (exact).
   INVALID_ARGUMENT for a bad type or NULL pointers with n > 0. */
MOLORA_API molora_result molora_convert_f32(const void *src, molora_type type, size_t n, float *dst);

typedef struct molora_expert_desc {
    int rank;                 /* r_i >= 1                                                      */
    const void *A;            /* (rank, d_in), row-major, elements of A_type: lora_A.weight    */
    const void *B;            /* (d_out, rank), row-major, elements of B_type: lora_B.weight   */
    float scaling;            /* s_i; 0 = derive: lora_alpha / rank (rsLoRA: / sqrt(rank))     */
    float lora_alpha;         /* used when scaling == 0; 0 = rank (so s = 1 without rsLoRA)    */
    int use_rslora;           /* nonzero: s = lora_alpha / sqrt(rank)                          */
    molora_type A_type, B_type;   /* default F32; packed (converted) into the model at init    */
} molora_expert_desc;

typedef struct molora_layer_desc {
    int d_in, d_out;                     /* >= 1                                               */
    int n_experts;                       /* N >= 0; 0 = the frozen layer alone                 */
    const molora_expert_desc *experts;   /* (n_experts)                                        */
    const void *W0;                      /* (d_out, d_in) (fan_in_fan_out: (d_in, d_out)),
                                            elements of W0_type; optional; needed for full output */
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
    molora_type W0_type;                 /* default F32. F32 W0 is borrowed (copied when not
                                            4-byte aligned); F16 / BF16 W0 is converted at init
                                            into memory the model owns                          */
    int fan_in_fan_out;                  /* nonzero: W0 is stored (d_in, d_out), as GPT-2 Conv1D
                                            and PEFT's fan_in_fan_out: the full layer computes
                                            X W0 + b, read in place (no transposed copy), and
                                            molora_merge adds into W in that layout. The experts'
                                            A (r, d_in) and B (d_out, r) are stored as usual.  */
    const float *prototypes;             /* ARROW: P (n_experts, d_in), used as given (finite);
                                            NULL = computed at init: each expert's exact top
                                            right singular vector of B_e A_e (zero when B_e A_e
                                            = 0). ARROW reads neither gate_weight nor gate_bias
                                            (a gate_bias is refused: INVALID_ARGUMENT); top_k
                                            0 = 3, above N: INVALID_TOP_K                      */
} molora_layer_desc;

enum {
    MOLORA_MODEL_COPY_WEIGHTS = 1,       /* copy W0, bias and mole_gate instead of borrowing    */
    /* Expert precision (the experts' A and B only; W0, gates, threshold nets, prototypes and the
       MoLE gate stay float32). Default: every expert stored as float32 (F16 / BF16 converted).
       EXPERTS_BF16: every layer's experts stored as BF16, half the bytes: BF16 inputs kept bit
       for bit, F32 and F16 inputs rounded to the nearest BF16 (ties to even); a finite F32 value
       that rounds beyond BF16's range is NON_FINITE. EXPERTS_KEEP_BF16: a layer whose experts'
       A and B are all BF16 stays BF16 (the natural choice for BF16 adapter files), the others
       float32. The kernels widen BF16 to float32 exactly and compute in float32 (X is never
       rounded), so a BF16 layer gives the float32 layer of the same stored values within
       float rounding (the order of the sums may differ). */
    MOLORA_MODEL_EXPERTS_BF16 = 2,
    MOLORA_MODEL_EXPERTS_KEEP_BF16 = 4
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
   every weight (W0 included), size overflow. ARROW layers without prototypes get them computed
   here (one scratch allocation through the memory hook, freed before returning). */
MOLORA_API molora_result molora_model_init(const molora_model_desc *desc, molora_model **out);
MOLORA_API void molora_model_free(molora_model *model);   /* NULL is a no-op */

typedef struct molora_layer_info {
    int d_in, d_out, n_experts;
    int rank_total;                      /* sum of the experts' ranks                          */
    molora_routing routing;
    int top_k;                           /* effective k (TOPK), else 0                          */
    float temperature, threshold, tau_max;  /* effective values (tau_max resolved to 1/N)      */
    int has_W0, has_bias, has_gate_bias;
    int fan_in_fan_out;                  /* W0 (and merge's W) stored (d_in, d_out)             */
    molora_type expert_type;             /* how the experts are stored: F32 or BF16             */
} molora_layer_info;

MOLORA_API int molora_model_n_layers(const molora_model *model);
MOLORA_API molora_result molora_model_layer_info(const molora_model *model, int layer,
                                               molora_layer_info *info);
/* Bytes of the model's one block (*bytes) and of its packed experts' A and B in it (*expert_bytes:
   4 per element for F32 layers, 2 for BF16 ones); either pointer may be NULL. */
MOLORA_API molora_result molora_model_memory(const molora_model *model, size_t *bytes, size_t *expert_bytes);
/* Rank and scaling of one expert (either out pointer may be NULL). */
MOLORA_API molora_result molora_model_expert(const molora_model *model, int layer, int expert,
                                           int *rank, float *scaling);
/* An ARROW layer's prototypes P (n_experts, d_in), as given or as computed at init.
   INVALID_ARGUMENT for NULL pointers or a layer whose routing is not ARROW. */
MOLORA_API molora_result molora_model_prototypes(const molora_model *model, int layer, float *P);
/* Eigen-decomposition of a symmetric n x n matrix A (row-major, double; only its upper triangle
   is read; A is overwritten, scaled) by cyclic Jacobi: values (n) in descending order, vectors (n, n)
   with row j the unit eigenvector of values[j] (optional: NULL). No allocation. The solver of
   ARROW's prototypes (always compiled, no BLAS or LAPACK). INVALID_ARGUMENT for n < 1, NULL
   A or values; NON_FINITE for NaN / Inf in A or an eigenvalue beyond double's range (entries near
   DBL_MAX); UNSUPPORTED if 100 sweeps do not converge. */
MOLORA_API molora_result molora_eigen_sym(int n, double *A, double *values, double *vectors);

/* ---- forward ------------------------------------------------------------------------------ */
typedef enum molora_output {
    MOLORA_OUTPUT_FULL = 0,    /* Y = X W0^T + b + delta (needs W0); fan_in_fan_out: X W0 + b + delta */
    MOLORA_OUTPUT_DELTA        /* Y += delta (Y holds the engine's own base output)            */
} molora_output;

/* Which kernels a forward call used (reported through molora_forward_args.path_out). */
typedef enum molora_path {
    MOLORA_PATH_NONE = 0,      /* nothing ran: T = 0, routing only, or DELTA output with no expert
                                  routed (with FULL output the frozen layer runs on the path of T) */
    MOLORA_PATH_DECODE,        /* T = 1: matrix-vector, only the selected experts are read     */
    MOLORA_PATH_SMALL,         /* 2 <= T <= 16: molora's own SIMD multi-token kernels           */
    MOLORA_PATH_GEMM,          /* T > 16: BLAS GEMMs over the experts some token selects        */
    MOLORA_PATH_SPARSE         /* T > 1, tokens grouped by expert: routing selects fewer than 1 in 4 of the
                                  (token, active rank) pairs (1 in 6 when tokens select more than 2
                                  experts on average; 1 in 3 for both on AMD's AVX-512 CPUs), and only
                                  those are computed (grouped GEMM /
                                  SGMV: each active expert's rows against its own tokens) */
} molora_path;

/* A caller's parallel-for (see THREAD SAFETY in the doc block): run task(ctx, ith, n_tasks)
   once for every ith in 0..n_tasks-1, on any threads, and return when all have returned. */
typedef void (*molora_task_fn)(void *ctx, int ith, int n_tasks);
typedef void (*molora_parallel_for_fn)(void *user, int n_tasks, molora_task_fn task, void *ctx);

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
    void *workspace;               /* molora_workspace_size() bytes for at least T tokens
                                      (molora_workspace_size_tasks() with parallel_for)        */
    size_t workspace_size;
    int ith, nth;                  /* optional split of one call over nth threads (0 = none):
                                      caller ith of nth writes its share of Y's columns; each
                                      needs its own workspace; weights_out / counts_out are
                                      written by ith 0. The routing is computed by every caller.
                                      With parallel_for too: caller ith's share is split again. */
    molora_path *path_out;         /* optional: the path this call took                        */
    /* optional: the caller's thread pool, through which molora splits this call into n_tasks
       tasks (contract: THREAD SAFETY in the doc block); NULL runs the call on the calling thread */
    molora_parallel_for_fn parallel_for;
    void *parallel_user;           /* passed to parallel_for as user                           */
    int n_tasks;                   /* with parallel_for: >= 1; without it: 0 or 1              */
    const int32_t *adapter_index;  /* optional (T): one expert per token, -1 for none (below)  */
} molora_forward_args;

/* Adapter pools (adapter_index; the S-LoRA / Punica serving case, N adapters in one layer and a
   batch of requests each on its own adapter): token t gets expert i = adapter_index[t] alone at
   weight 1, y_t = W0 x_t + b + s_i B_i A_i x_t, or the frozen layer alone for -1.
   - It replaces the router: the layer's rule (any, FIXED included: no weights are needed) does
     not run and no gate is read; on a MOLE_OUTPUT layer the output gate does not run either
     (as with fixed weights). Masks and temperature play no part.
   - One source of routing per call: adapter_index with `weights` or with `expert_mask` is
     INVALID_ARGUMENT. An entry outside -1..N-1 (N = 0: only -1) is INVALID_ARGUMENT, logged
     with the token ("adapter_index[5] = 8 outside -1..7"); like every check, before Y is written.
   - weights_out gets the one-hot rows, counts_out the tokens per adapter, as for any call;
     molora_route takes it too. The forward reads only the adapters its tokens use: spread over
     more than 4 adapters they run grouped (MOLORA_PATH_SPARSE), else the path of T over the
     few used. Init and memory are linear in the pool (every adapter is packed, once). */

/* Bytes of workspace for calls of up to max_tokens tokens on any layer of the model. */
MOLORA_API molora_result molora_workspace_size(const molora_model *model, int max_tokens,
                                               size_t *size);
/* The same for calls split into n_tasks tasks through parallel_for: one slice per task
   (n_tasks = 1 gives molora_workspace_size's figure). n_tasks < 1: INVALID_ARGUMENT. */
MOLORA_API molora_result molora_workspace_size_tasks(const molora_model *model, int max_tokens, int n_tasks,
                                                     size_t *size);
/* One forward call of one layer over T tokens. Thread safety: see the doc block. */
MOLORA_API molora_result molora_forward(const molora_model *model, const molora_forward_args *args);
/* Routing only: fills args->weights_out (required) and counts_out; y and output are ignored. */
MOLORA_API molora_result molora_route(const molora_model *model, const molora_forward_args *args);

/* Merge: W (d_out, d_in) += sum_i weights[i] * s_i * B_i A_i. Copy W0 into W first to get
   the merged layer (static routing at zero runtime cost). weights: (N), finite.
   A fan_in_fan_out layer merges in W0's stored layout: W (d_in, d_out) += (sum ...)^T, so a
   merged GPT-2 Conv1D weight comes out (in, out), ready to save as Conv1D.weight. */
MOLORA_API molora_result molora_merge(const molora_model *model, int layer, const float *weights,
                                      float *W);
/* <<api_core */

/* >>api_files  everything that reads files: safetensors and adapters (out with MOLORA_NO_FILES) */
#ifndef MOLORA_NO_FILES
/* >>api_safetensors  safetensors files and sharded models: checks, loading options, tensor getters */
/* Reading real checkpoints (safetensors + adapter_config.json) into model descriptors.
   The in-memory API is always compiled; the parts that open files (mmap, directories, sharded
   models) are compiled out by MOLORA_NO_STDIO. The contract is below; the formats in full
   (safetensors, index files, adapter layouts) are described in docs/formats.md.

   safetensors validation: every check of huggingface/safetensors 0.8 `safetensors/src/tensor.rs`
   (`SafeTensors::read_metadata` + `Metadata::validate`, the same as in v0.7.0 apart from the two
   FNUZ dtypes), in the same order, plus duplicate names.
   Reference error kind                 molora result
   ------------------------------------ -----------------------------------------------------
   HeaderTooSmall (< 8 bytes)           MOLORA_RESULT_HEADER_TOO_SMALL
   HeaderTooLarge (n > 100,000,000)     MOLORA_RESULT_HEADER_TOO_LARGE
   InvalidHeaderLength (8 + n > size)   MOLORA_RESULT_INVALID_HEADER_LENGTH
   InvalidHeader (not UTF-8)            MOLORA_RESULT_INVALID_UTF8
   InvalidHeaderDeserialization /       MOLORA_RESULT_INVALID_JSON (syntax, nesting > MOLORA_JSON_MAX_DEPTH,
     JsonError                            field types, missing field, unknown dtype, integer > 2^64-1)
   InvalidOffset(name)                  MOLORA_RESULT_INVALID_OFFSET (logged with the tensor name)
   ValidationOverflow                   MOLORA_RESULT_SIZE_OVERFLOW
   MisalignedSlice (sub-byte dtypes)    MOLORA_RESULT_TENSOR_INVALID_INFO
   TensorInvalidInfo (shape x dtype)    MOLORA_RESULT_TENSOR_INVALID_INFO
   MetadataIncompleteBuffer             MOLORA_RESULT_INCOMPLETE_BUFFER
   TensorNotFound(name)                 MOLORA_RESULT_TENSOR_NOT_FOUND
   IoError                              MOLORA_RESULT_IO_ERROR
   InvalidTensorView                    (writer-only; 0.8 dropped InvalidHeaderStart: leading
                                          whitespace before the header's `{` is accepted)
   (molora) the same name twice         MOLORA_RESULT_DUPLICATE_NAME (logged with the name)
   (molora) dtype not F32/F16/BF16      MOLORA_RESULT_UNSUPPORTED_DTYPE when read as float or typed
   Stricter than the reference (documented, all still refused with INVALID_JSON / DUPLICATE_NAME):
   duplicate keys anywhere in the header, a tensor entry written as a JSON array, `\u0000` in a
   string. Unknown keys inside a tensor entry are ignored, as the reference does.

   JSON (one parser for the header, adapter_config.json and model.safetensors.index.json): strict
   RFC 8259, nesting up to MOLORA_JSON_MAX_DEPTH, texts under 4 GiB. A key given twice in ANY
   object (also `__metadata__`, a tensor entry, objects inside arrays), compared after decoding
   escapes ("lora_alpha" and "lora_\u0061lpha" are one key; Python's json would keep the last
   silently), is refused naming the key: DUPLICATE_NAME for a tensor name at the header's top
   level, INVALID_JSON everywhere else (config and index included, as for any other JSON error;
   a config that is valid JSON but wrong in content is INVALID_CONFIG). Cost: O(n log n) time,
   memory about the text's size (objects' members are 20-byte tokens, arrays one token).

   Files: every file is opened with O_NONBLOCK | O_CLOEXEC and fstat'ed before a byte is read; a
   FIFO, device or directory where a file is expected is IO_ERROR ("...: is a FIFO, expected a
   regular file"). A .safetensors file is mapped read-only: it must not change while the object
   lives (molora's own writers replace files by rename, never in place). When another writer
   might change it, set MOLORA_LOAD_READ in molora_load_desc.flags: the file is read whole into
   memory from the memory hook (read in bounded pieces, retried on EINTR and short reads, the
   size read checked against fstat's), after which the file may be deleted or overwritten.
   adapter_config.json and index files are always read, never mapped. Log lines name the file
   once ("path: what is wrong").

   Ownership: molora_safetensors_open_memory() BORROWS the bytes: keep them alive and unchanged
   until molora_safetensors_free(). Pointers returned by getters live until the free.
   Thread safety: getters and molora_safetensors_read_f32() may run concurrently;
   molora_safetensors_tensor_f32() may allocate a converted copy and must not run concurrently
   with itself on the same object. */

/* Every dtype name huggingface/safetensors 0.8 accepts, with its size in bits (a file whose
   tensors use any of them opens; molora converts only F32, F16 and BF16 to float32, and any other
   dtype is UNSUPPORTED_DTYPE naming the tensor only when something reads it as float):
     BOOL 8   F4 4   F6_E2M3 6   F6_E3M2 6   U8 8   I8 8   F8_E5M2 8   F8_E4M3 8   F8_E8M0 8
     F8_E4M3FNUZ 8   F8_E5M2FNUZ 8   I16 16   U16 16   F16 16   BF16 16   I32 32   U32 32
     F32 32   C64 64   F64 64   I64 64   U64 64
   Sub-byte dtypes (F4, F6_*) must fill whole bytes (TENSOR_INVALID_INFO otherwise, as upstream's
   MisalignedSlice). The two FNUZ names are new in 0.8 and appended here, so older values keep
   their numbers. */
typedef enum molora_dtype {
    MOLORA_DTYPE_BOOL = 0, MOLORA_DTYPE_F4, MOLORA_DTYPE_F6_E2M3, MOLORA_DTYPE_F6_E3M2,
    MOLORA_DTYPE_U8, MOLORA_DTYPE_I8, MOLORA_DTYPE_F8_E5M2, MOLORA_DTYPE_F8_E4M3,
    MOLORA_DTYPE_F8_E8M0, MOLORA_DTYPE_I16, MOLORA_DTYPE_U16, MOLORA_DTYPE_F16, MOLORA_DTYPE_BF16,
    MOLORA_DTYPE_I32, MOLORA_DTYPE_U32, MOLORA_DTYPE_F32, MOLORA_DTYPE_C64, MOLORA_DTYPE_F64,
    MOLORA_DTYPE_I64, MOLORA_DTYPE_U64,
    MOLORA_DTYPE_F8_E4M3FNUZ, MOLORA_DTYPE_F8_E5M2FNUZ,   /* safetensors 0.8 */
    MOLORA_DTYPE_COUNT
} molora_dtype;

/* "F32", "BF16", ... as safetensors spells them; "?" for a bad value. */
MOLORA_API const char *molora_dtype_name(molora_dtype dtype);

/* Options for everything that loads (zero = defaults). */
enum {
    MOLORA_LOAD_READ = 1                 /* read each file into memory instead of mapping it    */
};
/* flags: 0 (the default) maps every .safetensors file read-only; a mapped file must not change
   while the object lives (truncating it makes a later read fault with SIGBUS; rewriting it in
   place changes the tensors under you). molora's own command never rewrites a file in place (it
   writes a temporary file and renames it over the target), but other writers may: when a file
   might change while in use, give MOLORA_LOAD_READ. Each file is then read into memory allocated
   through `memory` (counted against it, freed by molora_safetensors_free()), and a file whose
   size changes while it is read is IO_ERROR naming it. Any other bit is INVALID_ARGUMENT. */
typedef struct molora_load_desc {
    molora_memory memory;                /* default malloc / free                               */
    molora_log_fn log;                   /* optional: one line of detail per error              */
    void *log_user;
    unsigned flags;                      /* MOLORA_LOAD_READ or 0 (map)                         */
} molora_load_desc;

typedef struct molora_safetensors molora_safetensors;   /* opaque */

typedef struct molora_tensor_info {
    const char *name;
    molora_dtype dtype;
    int n_dims;                          /* 0 for a scalar                                      */
    const uint64_t *shape;               /* (n_dims)                                            */
    uint64_t n_elements;                 /* product of shape (1 for a scalar)                   */
    const void *data;                    /* raw little-endian bytes, NOT aligned in general     */
    size_t n_bytes;
    int shard;                           /* which file of a sharded model (0 otherwise)         */
} molora_tensor_info;

/* Validates a whole safetensors file held in memory (borrowed, see above). desc may be NULL. */
MOLORA_API molora_result molora_safetensors_open_memory(const void *data, size_t size,
                                                        const molora_load_desc *desc,
                                                        molora_safetensors **out);
#ifndef MOLORA_NO_STDIO
/* path: a .safetensors file (mapped read-only, or read into memory with MOLORA_LOAD_READ; never
   read twice), a directory of shards (its
   model.safetensors.index.json if present, else every *.safetensors in it), or an index .json
   whose weight_map names the shards. A sharded model is one tensor namespace. */
MOLORA_API molora_result molora_safetensors_open(const char *path, const molora_load_desc *desc,
                                                 molora_safetensors **out);
#endif
MOLORA_API void molora_safetensors_free(molora_safetensors *st);   /* NULL is a no-op */

/* Tensors in file order (shard, then data offset). */
MOLORA_API size_t molora_safetensors_n_tensors(const molora_safetensors *st);
MOLORA_API molora_result molora_safetensors_tensor_info(const molora_safetensors *st, size_t index,
                                                     molora_tensor_info *info);
/* Exact name lookup (binary search): SUCCESS or TENSOR_NOT_FOUND. */
MOLORA_API molora_result molora_safetensors_find(const molora_safetensors *st, const char *name,
                                                 size_t *index);
/* __metadata__ (string -> string) of every shard, in file order. */
MOLORA_API size_t molora_safetensors_n_metadata(const molora_safetensors *st);
MOLORA_API molora_result molora_safetensors_metadata(const molora_safetensors *st, size_t i,
                                                         const char **key, const char **value);
MOLORA_API const char *molora_safetensors_find_metadata(const molora_safetensors *st,
                                                        const char *key);   /* NULL: absent */
/* Converts tensor `index` (F32, F16 or BF16) to float32 into dst (n_elements floats).
   Other dtypes: UNSUPPORTED_DTYPE (logged with the tensor name). Thread-safe. */
MOLORA_API molora_result molora_safetensors_read_f32(const molora_safetensors *st, size_t index,
                                                     float *dst, size_t n_elements);
/* Float32 view of tensor `index`: borrowed from the file when it is F32, 4-byte aligned and the
   host is little-endian, else converted once into a copy that st owns. Valid until the free. */
MOLORA_API molora_result molora_safetensors_tensor_f32(molora_safetensors *st, size_t index,
                                                    const float **data);
/* Tensor `index` as a typed descriptor pointer, NOT converted: the file's bytes (any alignment)
   with their molora_type for F32, F16 and BF16 on a little-endian host, so a descriptor built
   from it costs nothing until molora_model_init() packs its layer. A big-endian host gets
   molora_safetensors_tensor_f32()'s float32 copy (type F32). Other dtypes: UNSUPPORTED_DTYPE. */
MOLORA_API molora_result molora_safetensors_tensor_data(molora_safetensors *st, size_t index,
                                                      const void **data, molora_type *type);
/* <<api_safetensors */

/* >>api_adapters  adapters: adapter_config.json + adapter_model.safetensors as model layers ------ */
/* An adapter in one of the layouts below (MOLORA_LAYOUT_*) becomes one model layer per adapted
   module, in natural name order (layer numbers compared as numbers). docs/formats.md gives the
   file layouts and the config keys each layout uses.
   - Experts are numbered 0..N-1 in the names (lora_A.{i}, lora_A_{i}); an index at or above the
     module's count of lora_A / lora_B tensors is MISSING_WEIGHTS, one above 65535 or written
     with a leading zero (lora_A_01; "0" itself is fine) UNSUPPORTED, and an expert's lora_A or
     lora_B given by two tensors (lora_A.0 beside lora_A_0) DUPLICATE_NAME naming both; each
     names the tensor, before anything is sized by it.
   - Rank (lora_A's first dimension) is at most 65536, molora's limit: a larger one is
     INVALID_SHAPE ("rank R above molora's limit 65536", naming the tensor).
   - PEFT rank: "r"; a config without "r" but with "lora_rank" (AdaMoLE's LoRA baseline, also
     peft_type LORA) takes "lora_rank"; neither: PEFT's default 8. rank_pattern / alpha_pattern
     keys follow PEFT v0.20.0 get_pattern_key (Python's re.match(rf"(.*\.)?({key})$", module),
     first key wins), matched without backtracking; the supported regex subset is listed in the
     implementation's patterns section. layers_to_transform: an int or a list of non-negative ints.
   - A directory holding adapter_model.bin but no adapter_model.safetensors is IO_ERROR naming
     tools/convert_pickle.py (molora never reads pickle).
   - Cost: O(n log n) in the number of tensors and modules (sorting, binary-search lookups; a
     MOLORA expert_scaling object is indexed by key once), memory proportional to the file's
     header. One exception, as in PEFT: rank_pattern / alpha_pattern keys are regexes tried in
     file order per module, O(modules x keys) (a pattern with one key per module is quadratic
     in PEFT too). */
typedef enum molora_layout {
    MOLORA_LAYOUT_PEFT_LORA = 0,   /* peft_type LORA, P.lora_A.weight                          */
    MOLORA_LAYOUT_ADAMOLE,         /* peft_type ADAMOLE                                        */
    MOLORA_LAYOUT_MOLE,            /* peft_type MOLE (AdaMoLE repo's top-k / threshold baseline) */
    MOLORA_LAYOUT_MOLA,            /* P.lora_A_{i}.weight + P.router.router.weight (AlphaLoRA)  */
    MOLORA_LAYOUT_MOLORA,          /* peft_type MOLORA: molora compose                         */
    MOLORA_LAYOUT_XLORA,           /* molora_xlora_adapter: X-LoRA's modules (api_xlora)       */
    MOLORA_LAYOUT_COUNT
} molora_layout;
MOLORA_API const char *molora_layout_name(molora_layout layout);   /* "peft_lora", "adamole", ... */

typedef struct molora_adapter molora_adapter;   /* opaque */

/* Builds an adapter from its config text and its opened weights. `weights` is BORROWED (keep it
   until molora_adapter_free()). Expert A and B are not converted: the descriptors point at the
   file's bytes with their type (molora_safetensors_tensor_data), and molora_model_init()
   converts the layers it packs. Gates, threshold nets and the MoLE gate (small) are converted
   to float32 at load, cached in `weights`. `fan_in_fan_out` in the config (GPT-2 Conv1D)
   sets every layer's fan_in_fan_out (PEFT applies it to every Conv1D target; a model mixing
   Linear and Conv1D targets under one config is not distinguished). */
MOLORA_API molora_result molora_adapter_open_memory(const char *config_json, size_t config_size,
                                                    molora_safetensors *weights,
                                                    const molora_load_desc *desc,
                                                    molora_adapter **out);
#ifndef MOLORA_NO_STDIO
/* dir: a directory with adapter_config.json and adapter_model.safetensors (owned by the adapter). */
MOLORA_API molora_result molora_adapter_open(const char *dir, const molora_load_desc *desc,
                                             molora_adapter **out);
#endif
MOLORA_API void molora_adapter_free(molora_adapter *adapter);   /* NULL is a no-op */

MOLORA_API molora_layout molora_adapter_layout(const molora_adapter *adapter);
/* A model descriptor whose layers (experts, gate, threshold net, routing) point into the adapter
   (valid until molora_adapter_free). Expert A / B are typed pointers into the file (F32, F16 or
   BF16, unaligned in general); nothing is converted until molora_model_init(), so init only the
   layers you use (copy one layer desc into a one-layer model desc). W0 and bias are NULL: set
   them from the base model (W0 as stored, in the layout fan_in_fan_out says), or use
   MOLORA_OUTPUT_DELTA. memory and log come from the load desc; flags are 0 (float32 experts):
   add MOLORA_MODEL_EXPERTS_KEEP_BF16 to keep a BF16 file's experts in BF16 (half the memory),
   as `molora forward` does by default. */
MOLORA_API molora_result molora_adapter_model_desc(const molora_adapter *adapter,
                                                 molora_model_desc *desc);
MOLORA_API int molora_adapter_n_layers(const molora_adapter *adapter);
/* Module path of a layer as written in the file (e.g. base_model.model.model.layers.3.self_attn.q_proj). */
MOLORA_API const char *molora_adapter_layer_name(const molora_adapter *adapter, int layer);
/* Dtype of the layer's expert A matrices as stored in the file. */
MOLORA_API molora_dtype molora_adapter_layer_dtype(const molora_adapter *adapter, int layer);
/* Layer of a module path, with or without the `base_model.model.` prefix; -1 if none. */
MOLORA_API int molora_adapter_find_layer(const molora_adapter *adapter, const char *path);
/* Tensors the loader did not use: modules_to_save, AdaMoLE's moe_layer.experts.* aliases and
   other tensors without a LoRA name, in file order; then the lora_A / lora_B of layers outside
   layers_to_transform, in layer order. */
MOLORA_API size_t molora_adapter_n_ignored(const molora_adapter *adapter);
MOLORA_API const char *molora_adapter_ignored_name(const molora_adapter *adapter, size_t i);
/* <<api_adapters */

/* >>api_xlora  X-LoRA: a classifier over the final hidden state gives every module's weights ---- */
/* X-LoRA (PEFT's XLORA, arXiv 2402.07148): N frozen LoRAs on the same model, mixed per token and
   per adapted module by a small classifier (Linear / ReLU stack) over the model's final hidden
   state h (T, H), the last layer's output after the final norm. One model call is two passes:
   pass 1 with every weight at scaling_pass_value (the default 0 is the base model), the
   classifier on pass 1's h, then pass 2 with the classifier's weights. molora provides the
   layers, the classifier and both passes' weights; the engine runs the two passes (formulas:
   docs/maths.md; layouts and the module order: docs/formats.md).
   - Layouts: PEFT's (adapter_config.json with peft_type XLORA, the classifier in
     adapter_model.safetensors as base_model.internal_xlora_classifier.layers.{j}.*) and the
     original xlora package's (xlora_config.json, xlora_classifier.safetensors inner.{j}.*,
     last.*, with use_bias, default true, and enable_relu_and_dropout, default false as in the
     package's xLoRAConfig). PEFT 0.20's own save_pretrained drops
     the classifier layers whose index j is an adapter's name ("0".."N-1"); such a save is
     refused naming the missing tensors (PEFT would initialise them at random on load).
   - Config: every field is checked: softmax_temperature > 0, 1 <= top_k_lora <= N (or null),
     xlora_depth >= 1, hidden_size equal to the classifier's input (INVALID_SHAPE otherwise); a
     wrong type or value is INVALID_CONFIG naming the key, a NaN INVALID_JSON (not JSON: the
     parser refuses it), an integer key written as 2.0 INVALID_CONFIG (PEFT raises on a float),
     a missing classifier tensor MISSING_WEIGHTS, one the config does not describe (an extra
     layer, any other tensor, biases with use_bias false) INVALID_CONFIG naming it. PEFT's
     adapter keys: exactly "0".."N-1", each once, in any order (its save sorts them as strings);
     column c is key "c". The package's names: each once (its dict name -> path: the names).
   - Adapters (PEFT LoRAs, one expert each): a config path p is tried as given (a relative p
     against the current directory, as PEFT reads it), then a relative p as dir/p, then the
     directory's `{key}/` folder; the package's: dir/name. None: IO_ERROR naming the candidates
     in that order. A `{key}/` folder written by PEFT 0.20's X-LoRA save holds base-model tensors and has
     lost the LoRA tensors of decoder layers numbered like another adapter: it is refused
     (MISSING_WEIGHTS). Embedding and DoRA LoRAs are refused as molora_adapter_open refuses them.
   - Modules: the union of the adapters' targets, in X-LoRA's order (the order the model
     registers its modules, which no file stores): for module paths of the Llama layout
     (Llama, Mistral, Qwen2: model.layers.{b}.self_attn.{q,k,v,o}_proj and mlp.{gate,up,down}_proj)
     decoder layer ascending, then q, k, v, o, gate, up, down. Any other model: layer-wise
     scalings are UNSUPPORTED until molora_xlora_set_module_order(); broadcast scalings (one row
     for every module) need no order. */
typedef struct molora_xlora molora_xlora;   /* opaque */

#ifndef MOLORA_NO_STDIO
/* dir: an X-LoRA directory in either layout; the adapters are opened as molora_adapter_open does
   (desc's flags, memory and logger). No memory variant: the adapters are directories. */
MOLORA_API molora_result molora_xlora_open(const char *dir, const molora_load_desc *desc, molora_xlora **out);
#endif
MOLORA_API void molora_xlora_free(molora_xlora *xl);   /* NULL is a no-op */

MOLORA_API int molora_xlora_n_adapters(const molora_xlora *xl);   /* N */
MOLORA_API int molora_xlora_n_modules(const molora_xlora *xl);    /* L */
MOLORA_API int molora_xlora_hidden_size(const molora_xlora *xl);  /* H */
/* Adapter i's key (PEFT: "i"; xlora package: its name) and the directory it was opened from. */
MOLORA_API const char *molora_xlora_adapter_name(const molora_xlora *xl, int i);
MOLORA_API const char *molora_xlora_adapter_path(const molora_xlora *xl, int i);

typedef struct molora_xlora_info {
    const char *layout;               /* "peft" or "xlora" (the original package)             */
    const char *module_order;         /* "llama" (the table), "caller", or NULL: unknown        */
    int n_adapters, n_modules, hidden_size;
    int depth, size;                  /* xlora_depth, xlora_size (the hidden width, depth > 1)  */
    int layerwise, enable_softmax, enable_softmax_topk;
    int top_k;                        /* top_k_lora; 0 = none                                   */
    int use_bias, relu;               /* PEFT: both 1; xlora: use_bias, enable_relu_and_dropout */
    float temperature, scaling_pass_value, global_scaling_weight, dropout_p;
} molora_xlora_info;
MOLORA_API molora_result molora_xlora_config(const molora_xlora *xl, molora_xlora_info *info);

/* The L modules as an adapter (owned by xl; do not free it): layer l is X-LoRA's module l, with
   N experts, expert i being adapter i's LoRA there (its own rank and s_i = lora_alpha / r, or
   / sqrt(r) with rsLoRA). An adapter that does not target module l keeps its column there as a
   rank-1 expert whose A and B are zero, so its delta is exactly 0 whatever its weight. Routing
   is FIXED: pass each call's weights (T, N) with weights_per_token. Use it with
   molora_adapter_model_desc, molora_model_init, molora_adapter_find_layer like any adapter. */
MOLORA_API const molora_adapter *molora_xlora_adapter(const molora_xlora *xl);
/* X-LoRA's module order given by the caller: `paths` (n = L) are the module paths (with or
   without base_model.model.) in the order the model registers them. It reorders the adapter's
   layers (descriptors taken before are stale) and enables layer-wise scalings.
   INVALID_ARGUMENT (logged) for n != L, a path that is no module, a path given twice. */
MOLORA_API molora_result molora_xlora_set_module_order(molora_xlora *xl, const char *const *paths, int n);

/* Bytes of workspace for molora_xlora_scalings over up to max_tokens tokens (INVALID_SHAPE,
   logged, for max_tokens < 0). */
MOLORA_API molora_result molora_xlora_workspace_size(const molora_xlora *xl, int max_tokens, size_t *size);
/* scalings (T, L, N) = every module's final weights for hidden (T, H): the classifier, its
   softmax with temperature (enable_softmax), broadcast or layer-wise, then per module the top-k
   mask without renormalisation (top_k_lora; ties: torch.topk's pick on torch 1.13's CPU
   kernel, not the lower index: docs/maths.md), the softmax over the non-zero entries
   (enable_softmax_topk), times global_scaling_weight. Row (t, l) is what module l's forward
   takes as token t's weights. Allocates nothing. NON_FINITE for NaN / Inf in hidden, or when
   the logits, the softmax (logits / temperature) or the final row overflow; UNSUPPORTED for
   layer-wise scalings without a module order; WORKSPACE_TOO_SMALL; INVALID_SHAPE (logged) for
   n_tokens < 0. T = 0 is a no-op. */
MOLORA_API molora_result molora_xlora_scalings(const molora_xlora *xl, int n_tokens, const float *hidden,
                                               float *scalings, void *workspace, size_t workspace_size);
/* Pass 1's weights (T, L, N): every entry scaling_pass_value, then the same per-module steps
   and global_scaling_weight (with top-k < N every entry ties: N = 5, k = 2 keeps columns 2 and
   4, as torch). NON_FINITE when scaling_pass_value times global_scaling_weight overflows;
   INVALID_SHAPE (logged) for n_tokens < 0. */
MOLORA_API molora_result molora_xlora_scaling_pass(const molora_xlora *xl, int n_tokens, float *scalings);
/* Nonzero when pass 1's weights are all 0 (scaling_pass_value 0, or global_scaling_weight 0):
   pass 1 is then the base model, and molora_forward with those weights skips the experts (no
   expert work: DELTA output does nothing, FULL runs the frozen layer alone). */
MOLORA_API int molora_xlora_scaling_pass_is_base(const molora_xlora *xl);
/* <<api_xlora */
#endif /* MOLORA_NO_FILES */
/* <<api_files */

#ifndef MOLORA_NO_ALPHA
/* >>api_alpha  AlphaLoRA: ESD power-law alpha per matrix, per block, expert allocation, block patterns */
/* AlphaLoRA gives each block (decoder layer) of a network a number of LoRA experts from the
   heavy-tailed eigenvalue spectrum of its frozen weights: eigenvalues of W^T W (a solver), a
   power-law fit of their tail (a method), the mean alpha of each block, then integer expert
   counts under a budget. Formulas and upstream sources: docs/maths.md, "AlphaLoRA".
   The eigenvalues need LAPACK from OpenBLAS; with MOLORA_NO_BLAS every function here except
   molora_alpha_fit_spectrum, molora_alpha_block_mean, molora_alpha_allocate and
   molora_alpha_plan_apply returns MOLORA_RESULT_UNSUPPORTED. Nothing here is on the forward
   path: scratch memory comes from args.workspace or the args.memory hook. */
typedef enum molora_alpha_method {
    MOLORA_ALPHA_FIX_FINGER = 0,  /* default: AlphaLoRA's fix_finger (ESD peak window, KS, MLE)   */
    MOLORA_ALPHA_WW,              /* WeightWatcher 0.7.5.5 default: every eigenvalue > 1e-5 tried
                                     as xmin, first argmin of the KS distance                     */
    MOLORA_ALPHA_WW_077,          /* WeightWatcher 0.7.7: as WW from 20 eigenvalues (after the
                                     1e-5 threshold) up; below 20 its small-N fit: tails of >= 8
                                     values only, alpha = 1 + (n-1)/sum ln(lam/xmin) (bias-
                                     corrected), tails with sum <= 1e-12 skipped, first argmin of
                                     D; no such tail: the whole spectrum. Matrices with fewer than
                                     8 eigenvalues (min_evals) are refused                        */
    MOLORA_ALPHA_METHOD_COUNT
} molora_alpha_method;

/* The solver: how the eigenvalues of W^T W are computed (the trade-offs: docs/design.md,
   "AlphaLoRA solvers"; their speed: README, AlphaLoRA bench). */
typedef enum molora_alpha_solver {
    MOLORA_ALPHA_SOLVER_DEFAULT = 0,     /* fastest solver within 1e-4 of float64: GRAM64 when
                                           min(rows, cols) < 2048, else GRAM64_2STAGE            */
    MOLORA_ALPHA_SOLVER_GRAM64,          /* Gram in double (dsyrk) + dsyevd                        */
    MOLORA_ALPHA_SOLVER_GRAM64_2STAGE,   /* Gram in double (dsyrk) + dsyevd_2stage                 */
    MOLORA_ALPHA_SOLVER_SGESDD,          /* float32 SVD, as torch.linalg.svdvals: ~1e-4 off in WW  */
    MOLORA_ALPHA_SOLVER_DGESDD,          /* float64 singular values: the reference, slowest         */
    MOLORA_ALPHA_SOLVER_FAST,            /* APPROXIMATE: float32 Gram (ssyrk) + ssyevd_2stage; wrong
                                           for ill-conditioned W (small eigenvalues lost)         */
    MOLORA_ALPHA_SOLVER_COUNT
} molora_alpha_solver;

#define MOLORA_ALPHA_DEFAULT_BUDGET 160    /* AlphaLoRA --target_sum */
#define MOLORA_ALPHA_DEFAULT_BETA   2.5    /* AlphaLoRA --beta       */

typedef struct molora_alpha_args {   /* every zero field means its default */
    molora_alpha_method method;         /* default FIX_FINGER                                     */
    molora_alpha_solver solver;         /* default MOLORA_ALPHA_SOLVER_DEFAULT                    */
    int bins;                           /* fix_finger histogram bins; 0 = 100                     */
    double evals_thresh;                /* eigenvalues <= this are dropped before the fit;
                                           0 = method default (WW 1e-5, FIX_FINGER none, as
                                           upstream filter_zeros=False); < 0 = never drop        */
    int round_to_f16;                   /* nonzero: round every weight to float16 (nearest even)
                                           before the eigenvalues, as AlphaLoRA's expert_number.py
                                           loads its model in float16; |w| >= 65520 is NON_FINITE */
    void *workspace;                    /* optional: molora_alpha_workspace_size() bytes; else   */
    size_t workspace_size;              /* scratch comes from memory (malloc) and is freed        */
    molora_memory memory;               /* both functions or neither                              */
    molora_log_fn log;                  /* optional detail on errors                              */
    void *log_user;
} molora_alpha_args;

enum {
    MOLORA_ALPHA_FLAG_EQUAL_TAIL = 1,   /* the chosen tail is all equal values: alpha = +inf,
                                           ks = (n-1)/n (numpy/torch give the same)              */
    MOLORA_ALPHA_FLAG_NO_CANDIDATE = 2, /* fix_finger: no eigenvalue in the xmin window; alpha = 0
                                           as upstream (spectra spanning > ~17 decades)          */
    MOLORA_ALPHA_FLAG_SMALL_N = 4       /* WW_077: fewer than 20 eigenvalues, the small-N fit ran;
                                           alpha = 0 with NO_CANDIDATE when every tail was
                                           degenerate (sum of logs <= 1e-12), as WeightWatcher   */
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
   matrix with these args (NULL = defaults). Includes the eigenvalue buffer. */
MOLORA_API molora_result molora_alpha_workspace_size(int rows, int cols, const molora_alpha_args *args,
                                                     size_t *size);
/* evals (min(rows, cols)), ascending: the eigenvalues of W^T W (squared singular values) of W
   (rows, cols), row-major float32 (e.g. a torch nn.Linear weight (d_out, d_in)).
   Errors: NON_FINITE for NaN/Inf in W, INVALID_SHAPE, OUT_OF_MEMORY, WORKSPACE_TOO_SMALL,
   UNSUPPORTED (MOLORA_NO_BLAS). Thread safety: reentrant; OpenBLAS threads as configured. */
MOLORA_API molora_result molora_alpha_eigenvalues(const float *W, int rows, int cols,
                                                  const molora_alpha_args *args, double *evals);
/* The power-law fit of a spectrum: evals (n), any order, is sorted ascending IN PLACE.
   Uses args->method / bins / evals_thresh; its n doubles of scratch come from args->workspace
   or args->memory.
   Errors: DEGENERATE_SPECTRUM (fewer than 2 eigenvalues after the threshold, or an eigenvalue
   <= 0 with FIX_FINGER: pass evals_thresh, e.g. upstream's 1e-4, to drop them), NON_FINITE. */
MOLORA_API molora_result molora_alpha_fit_spectrum(double *evals, int n, const molora_alpha_args *args,
                                                   molora_alpha_fit *fit);
/* Eigenvalues + fit of one weight matrix W (rows, cols), row-major float32. */
MOLORA_API molora_result molora_alpha_matrix(const float *W, int rows, int cols, const molora_alpha_args *args,
                                             molora_alpha_fit *fit);
/* Alpha of each block: block_alpha[b] = mean of matrix_alpha[i] over the matrices with
   matrix_block[i] == b (AlphaLoRA: the 7 projections of decoder layer b). matrix_block may be
   NULL when every matrix is its own block (n_matrices == n_blocks). A block with no matrix,
   a block index outside 0..n_blocks-1 or a non-finite alpha is an error. */
MOLORA_API molora_result molora_alpha_block_mean(const double *matrix_alpha, const int *matrix_block, int n_matrices,
                                                 int n_blocks, double *block_alpha);
/* AlphaLoRA allocation (exponential_scaling): s_b = alpha_b^beta, n_b = rint(s_b / sum s * budget)
   (half to even), then one expert at a time to the first argmin (add) / argmax (remove) of
   s_b - n_b until sum n = budget; top_k_b = 2 if n_b > 1 else 1. experts (n_blocks) required,
   top_k (n_blocks) optional. budget >= 0 (default MOLORA_ALPHA_DEFAULT_BUDGET), beta finite
   (default MOLORA_ALPHA_DEFAULT_BETA), every alpha finite and > 0. A count of 0 is valid (the
   block keeps only its frozen weights). If the upstream rule ends with a negative count the
   counts are still written, exactly as upstream, and NEGATIVE_EXPERTS is returned. */
MOLORA_API molora_result molora_alpha_allocate(const double *block_alpha, int n_blocks, int budget, double beta,
                                               int *experts, int *top_k);
/* Writes a plan into layer descriptors: for each descriptor i, b = block_of[i] (NULL: b = i),
   descs[i].n_experts = experts[b], descs[i].top_k = top_k[b] (NULL: AlphaLoRA's rule) and
   routing = MOLORA_ROUTING_TOPK when experts[b] > 0. The experts, gate_weight etc. stay the
   caller's to set (for n_experts entries). Errors: negative count, b out of range. */
MOLORA_API molora_result molora_alpha_plan_apply(const int *experts, const int *top_k, int n_blocks,
                                                 const int *block_of, molora_layer_desc *descs, int n_descs);

/* Which block a tensor belongs to, by name. A pattern is a name fragment with exactly one
   "{L}", e.g. "encoder.layer.{L}." or "transformer.h.{L}.": it must match at the start of the
   name or right after a '.' (so "h.{L}." matches "transformer.h.3.mlp" but not "ch.3.mlp"), and
   {L} is the whole run of decimal digits there (value < 1000000). The first match wins. Time is
   linear in the lengths of name and pattern (KMP, no backtracking); nothing is allocated.
   Returns the block index, or -1 when nothing matches or the pattern is invalid. */
#define MOLORA_ALPHA_PATTERN_MAX 256   /* longest pattern, bytes without the terminator */
MOLORA_API int molora_alpha_block_index(const char *name, const char *pattern);
/* INVALID_ARGUMENT unless pattern holds exactly one "{L}" and is 1..MOLORA_ALPHA_PATTERN_MAX long. */
MOLORA_API molora_result molora_alpha_pattern_check(const char *pattern);

/* The Hugging Face families molora recognises by tensor name. A family has one or two block sets;
   with two (T5: encoder, then decoder stack), an AlphaLoRA plan numbers the blocks of the first
   set 0..n1-1 and of the second n1..n1+n2-1 and allocates ONE budget over all of them (the
   allocation compares alpha^beta across every block; splitting the budget per stack would need
   a rule AlphaLoRA does not have). Table order: t5, bart, bert, llama, gpt2. */
typedef struct molora_alpha_family {
    const char *name;          /* "t5", "bart" (also Whisper, Marian), "bert", "llama" (also
                                  Mistral, Qwen, OPT), "gpt2" (also Falcon)                   */
    const char *sets[2];       /* block patterns; sets[1] NULL for one stack                  */
} molora_alpha_family;
MOLORA_API const molora_alpha_family *molora_alpha_families(int *count);
/* The family whose patterns match the most of names (n), among those with every set matching at
   least one name; on a tie the one with more sets (BART's encoder.layers.{L}. and
   decoder.layers.{L}. before Llama's layers.{L}., which would merge the two stacks), then the
   first in table order. -1 when no family matches. */
MOLORA_API int molora_alpha_family_detect(const char *const *names, size_t n);
/* <<api_alpha */
#endif /* MOLORA_NO_ALPHA */

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

/* >>common  result strings, the internal layer type, the memory hook, the logger, size maths --- */
MOLORA_API const char *molora_routing_name(molora_routing routing)
{
    static const char *const names[] = {"dense", "topk", "threshold", "adamole", "mole_output", "fixed", "arrow"};
    return (int)routing >= 0 && routing < MOLORA_ROUTING_COUNT ? names[routing] : "?";
}

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
    case MOLORA_RESULT_IO_ERROR: return "MOLORA_RESULT_IO_ERROR: cannot open, stat or map a file";
    case MOLORA_RESULT_HEADER_TOO_SMALL: return "MOLORA_RESULT_HEADER_TOO_SMALL: safetensors file shorter than 8 bytes";
    case MOLORA_RESULT_HEADER_TOO_LARGE:
        return "MOLORA_RESULT_HEADER_TOO_LARGE: safetensors header larger than 100000000 bytes";
    case MOLORA_RESULT_INVALID_HEADER_LENGTH:
        return "MOLORA_RESULT_INVALID_HEADER_LENGTH: safetensors header length beyond the end of the file";
    case MOLORA_RESULT_INVALID_UTF8: return "MOLORA_RESULT_INVALID_UTF8: header is not valid UTF-8";
    case MOLORA_RESULT_INVALID_JSON: return "MOLORA_RESULT_INVALID_JSON: invalid JSON or wrong field types";
    case MOLORA_RESULT_INVALID_OFFSET: return "MOLORA_RESULT_INVALID_OFFSET: tensor data_offsets not contiguous";
    case MOLORA_RESULT_TENSOR_INVALID_INFO:
        return "MOLORA_RESULT_TENSOR_INVALID_INFO: tensor shape and dtype do not match its data_offsets";
    case MOLORA_RESULT_INCOMPLETE_BUFFER:
        return "MOLORA_RESULT_INCOMPLETE_BUFFER: tensors do not cover the data exactly";
    case MOLORA_RESULT_TENSOR_NOT_FOUND: return "MOLORA_RESULT_TENSOR_NOT_FOUND: no such tensor";
    case MOLORA_RESULT_DUPLICATE_NAME: return "MOLORA_RESULT_DUPLICATE_NAME: tensor name appears twice";
    case MOLORA_RESULT_UNSUPPORTED_DTYPE:
        return "MOLORA_RESULT_UNSUPPORTED_DTYPE: unsupported dtype (F32, F16, BF16 only)";
    case MOLORA_RESULT_INVALID_CONFIG: return "MOLORA_RESULT_INVALID_CONFIG: invalid adapter configuration";
    case MOLORA_RESULT_DEGENERATE_SPECTRUM:
        return "MOLORA_RESULT_DEGENERATE_SPECTRUM: no power law can be fitted (zero matrix, eigenvalue <= 0, or < 2 "
               "eigenvalues above the threshold)";
    case MOLORA_RESULT_NEGATIVE_EXPERTS:
        return "MOLORA_RESULT_NEGATIVE_EXPERTS: the expert budget would need a negative count in some layer";
    default: return "MOLORA_RESULT_UNKNOWN: unknown result code";
    }
}

/* ---- the packed layer and the model ------------------------------------------------------- */
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
    int bf16;                    /* experts stored as BF16: A16, BT16 (A holds the routing rows
                                    only, BT is NULL); the kernels read them through the seam   */
    const uint16_t *A16, *BT16;  /* (r_total, d_in), (r_total, d_out) as A and BT, or NULL      */
    const float *R;              /* the routing rows [Wg; wt] (n_rows - r_total, d_in)          */
    const float *GT;             /* their transpose as gto's strips (>>outer), or NULL          */
    int r_max;                   /* largest rank: a widening tile holds at least r_max (d_in + d_out) */
    float *gate_bias;            /* (n) or NULL                                                */
    const float *W0, *bias, *mole_gate;
    int w0_in_out;               /* W0 stored (d_in, d_out) (fan_in_fan_out), read in place     */
} molora__layer;

struct molora_model {
    int n_layers;
    molora__layer *layers;
    molora_memory memory;
    molora_log_fn log;
    void *log_user;
    void *block;                 /* the one allocation                                         */
    size_t bytes;                /* its size                                                   */
};

/* The memory hook, called from here only: the caller's alloc/free when set, else malloc/free. */
MOLORA__PRIVATE void *molora__mem_alloc(const molora_memory *mem, size_t bytes)
{
    return mem->alloc ? mem->alloc(bytes, mem->user) : malloc(bytes);
}
MOLORA__PRIVATE void molora__mem_free(const molora_memory *mem, void *p)
{
    if (!p) return;
    if (mem->free) mem->free(p, mem->user);
    else free(p);
}

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

/* ---- size maths: overflow-checked products and sums, 64-byte carving --------------------- */
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
/* <<common */

/* >>types  F32 / F16 / BF16 elements of typed descriptor pointers, any alignment ------------- */
MOLORA__PRIVATE float molora__bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
MOLORA__PRIVATE float molora__f16_f32(unsigned h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 31, m = h & 0x3FF;
    if (e == 0) {                                   /* zero or subnormal: m * 2^-24, exact */
        float v = (float)m * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (e == 31) return molora__bits_f32(sign | 0x7F800000u | (m << 13));   /* Inf, NaN (payload kept) */
    return molora__bits_f32(sign | ((e + 112) << 23) | (m << 13));
}
MOLORA__PRIVATE int molora__type_ok(molora_type t) { return (int)t >= 0 && t < MOLORA_TYPE_COUNT; }
/* element i of p (type t), read byte-safely */
MOLORA__PRIVATE float molora__elem(const void *p, molora_type t, size_t i)
{
    const unsigned char *b = (const unsigned char *)p;
    uint16_t h;
    float f;
    if (t == MOLORA_TYPE_F32) { memcpy(&f, b + 4 * i, 4); return f; }
    memcpy(&h, b + 2 * i, 2);
    return t == MOLORA_TYPE_F16 ? molora__f16_f32(h) : molora__bits_f32((uint32_t)h << 16);
}
MOLORA__PRIVATE void molora__to_f32(const void *src, molora_type t, size_t n, float *dst)
{
    size_t i;
    if (t == MOLORA_TYPE_F32) { if (n) memcpy(dst, src, n * sizeof(float)); return; }
    for (i = 0; i < n; i++) dst[i] = molora__elem(src, t, i);
}
/* 1 when no element of a 16-bit type is NaN or Inf (all exponent bits set) */
MOLORA__PRIVATE int molora__finite16(const void *p, size_t n, uint16_t exp_mask)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t i;
    unsigned bad = 0;
    for (i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, b + 2 * i, 2);
        bad |= (h & exp_mask) == exp_mask;
    }
    return !bad;
}
/* float32 bits to BF16, round to nearest, ties to even (finite inputs; BF16's 0x7f80 is Inf) */
MOLORA__PRIVATE uint16_t molora__bf16_round(uint32_t u)
{
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
MOLORA_API molora_result molora_convert_f32(const void *src, molora_type type, size_t n, float *dst)
{
    if (!molora__type_ok(type) || (n > 0 && (!src || !dst))) return MOLORA_RESULT_INVALID_ARGUMENT;
    molora__to_f32(src, type, n, dst);
    return MOLORA_RESULT_SUCCESS;
}

/* <<types */

/* >>kernels  molora's own small-batch kernels: portable, AVX2, AVX-512, picked at run time ---- */
/* Each kernel has a portable version, its naive twin, and AVX2 / AVX-512 versions picked at run
   time (a plain -O2 build still uses the wide units; MOLORA_PORTABLE=1 in the environment or
   the MOLORA_NO_SIMD macro forces the portable one, e.g. for valgrind):
     nt: Y (T, N) = alpha * X (T, K) W (N, K)^T (+ Y if acc)    T <= 16 rows of X stream W once
     nn: Y (T, N) += H (T, K) B (K, N)                           B rows read once for all T
     ntn: nt for few rows of W (the gate's N + 1) at any T      >>narrow: all rows x 3 tokens
   Small batches are memory-bound: every token multiplies the same W, so these kernels read W
   once for all T tokens held in registers, where a general sgemm packs panels of W first and
   that overhead dominates at a few rows. The seam below sends large batches to BLAS. */
typedef void (*molora__nt_fn)(int T, int N, int K, float alpha, const float *X, int ldx, const float *W,
                              int ldw, float *Y, int ldy, int acc);
typedef void (*molora__nn_fn)(int T, int N, int K, const float *H, int ldh, const float *B, int ldb,
                              float *Y, int ldy);
/* gather forms for the sparse path, over R arbitrary rows: out[r] = rows[r] . x (K); and
   y (N) += sum_r coef[r] * rows[r] (N) */
typedef void (*molora__dots_fn)(int R, const float *const *rows, const float *x, int K, float *out);
typedef void (*molora__axpys_fn)(int R, const float *const *rows, const float *coef, float *y, int N);
/* grouped forms over T token rows given by pointers: the grouped sparse path's (up to 16 tokens
   routed to one expert) and molora's own dense products (MOLORA__OWN_MAX tokens at most):
   ntg: Y[t] (N) = X[t] (K) W (N, K)^T (+ Y[t] if acc); nng: Y[t] (N) += H[t] (K) B (K, N). The
   caller tiles ntg's K (the kernel runs K whole); nng tiles N itself. Every row is a float32
   pointer, so a widening seam (BF16 experts) can hand in converted tiles. */
typedef void (*molora__ntg_fn)(int T, int N, int K, const float *const *X, const float *W, int ldw, float *const *Y,
                               int acc);
typedef void (*molora__nng_fn)(int T, int N, int K, const float *const *H, const float *B, int ldb, float *const *Y);
/* ntp: nt with X packed by molora__pack_x (panels of 16 floats per token, W's 64-byte phase q),
   so the hot loop reads X through one pointer at constant offsets and W with aligned loads */
typedef void (*molora__ntp_fn)(int T, int N, int K, int q, float alpha, const float *P, const float *W, int ldw,
                               float *Y, int ldy, int acc);
/* nt16 / nn16: nt (alpha 1, no acc) and nn with W / B stored as BF16, widened in registers
   (exact; X and H stay float32), T <= 16: the small-batch and decode products of BF16 experts */
typedef void (*molora__nt16_fn)(int T, int N, int K, const float *X, int ldx, const uint16_t *W, int ldw, float *Y,
                                int ldy);
typedef void (*molora__nn16_fn)(int T, int N, int K, const float *H, int ldh, const uint16_t *B, int ldb, float *Y,
                                int ldy);
/* gvt / gvn: the single-row forms (M = 1) of nt / nn, see >>gemv */
typedef void (*molora__gv_fn)(int N, int K, const float *x, const float *W, int ldw, float *y, int acc);
/* gto: Y (T, N) = X (T, K) Wg^T with Wg's transpose GT packed by molora__pack_gate_t, see >>outer */
typedef void (*molora__gto_fn)(int T, int N, int K, const float *X, int ldx, const float *GT, float *Y, int ldy);
/* molora__kernels.by_token_ratio / by_expert_ratio on Intel's AVX-512 CPUs (measured there), AVX2
   and portable ones */
#define MOLORA__BY_TOKEN_RATIO 6
#define MOLORA__BY_EXPERT_RATIO 4
/* molora__kernels.by_token_rank there: the by-token order at any mean rank (as before AMD's
   table, where higher ranks were measured faster by expert; unmeasured on Intel) */
#define MOLORA__BY_TOKEN_RANK 0x7fffffff
/* molora__kernels.own_t / own_from on the AVX-512 tables: up to own_t tokens the frozen layer X W0^T
   (W0 stored (d_out, d_in); fan_in_fan_out layers keep BLAS) and the dense experts' shrink X A^T
   run on ntg (beyond MOLORA__SMALL_T tokens, molora__nt_own) and the experts' expand Y += H B^T on
   nng (from own_from tokens, 2 on AMD; a BF16 layer's from 17, below which it reads BF16 in nn16), where
   OpenBLAS's sgemm packs W0, A or B^T again on every call and molora's nn keeps fewer
   accumulators. Measured on Zen 4, one thread, d 4096: the frozen layer from DRAM at T = 17 / 32 /
   64 / 128 7.5 / 13.2 / 24.9 / 49.1 ms against
   sgemm 17.4 / 21.1 / 31.5 / 51.7 (T = 256 94.8 against 90.3); in cache, the shrink of 64 rank rows
   at T = 17 / 64 / 128 0.10 / 0.37 / 0.74 against 0.25 / 0.48 / 0.82, of 256 at T = 64 1.50
   against 1.88; the expand of 256 rows at T = 8 / 16 / 64 0.15 / 0.30 / 1.24 against nn 0.27,
   sgemm 0.46 / 1.39. At T = 128 the two are within noise (the frozen layer in the bench 57.4 ms
   against 54.9), so AMD's table stops at 96 (41.9 ms against 37.7 standalone). Measured with gcc
   12: clang 14 builds ntg slower (zmm accumulators spilled to the stack; the frozen layer at
   T = 96 95.3 ms against sgemm's 41.6, at T = 17 17.9 against 18.6), so a clang build keeps BLAS
   there (0). Calls beyond MOLORA__OWN_MAX tokens run in chunks of that many (the kernels' token
   pointers are on the stack).
   Intel's AVX-512 table (Xeon family 6 model 167, one thread, gcc 12, from DRAM, best of 20;
   OpenBLAS's SkylakeX sgemm is faster there than on Zen 4): the frozen layer at T = 17 / 24 / 32 /
   48 / 64 8.4 / 10.4 / 13.0 / 18.0 / 22.4 ms against sgemm 11.8 / 12.0 / 13.8 / 16.9 / 19.2; the
   shrink of 64 rank rows at T = 17 / 32 / 48 0.131 / 0.198 / 0.271 against 0.178 / 0.229 / 0.274
   (of 256 rows 0.53 / 0.83 / 1.10 against 0.72 / 0.89 / 0.99); the expand of 64 rows at T = 16 /
   32 / 64 0.095 / 0.151 / 0.296 against sgemm 0.137 / 0.186 / 0.293 (of 256 rows at T = 16 0.50
   against 0.99), so it stops at 32; but below 9 tokens nn beats nng there on 256 rows (T = 2 / 8
   0.255 / 0.320 against 0.344 / 0.399), so its expand starts at 9 (own_from), where the seam's nn
   gives way to sgemm. */
#if defined(__clang__)
#define MOLORA__OWN_T_AMD 0
#define MOLORA__OWN_T_INTEL 0
#else
#define MOLORA__OWN_T_AMD 96
#define MOLORA__OWN_T_INTEL 32
#endif
#define MOLORA__OWN_FROM_INTEL 9
#define MOLORA__OWN_MAX 128
typedef struct molora__kernels {
    molora__nt_fn nt; molora__nn_fn nn; molora__dots_fn dots; molora__axpys_fn axpys;
    molora__ntp_fn ntp;   /* NULL: use nt on row-major X */
    int (*finite)(const float *v, size_t n);
    const char *name;
    molora__ntg_fn ntg; molora__nng_fn nng;   /* the grouped sparse path */
    void (*widen)(const uint16_t *src, size_t n, float *dst);   /* BF16 experts to float32 */
    molora__nt16_fn nt16; molora__nn16_fn nn16;   /* BF16 W / B read directly; NULL: widen a tile */
    molora__gv_fn gvt, gvn;   /* decode: y = W x, y = x W (>>gemv) */
    int gv_own;               /* 1: gvt / gvn beat BLAS sgemv on this CPU, the seam picks them at M = 1 */
    molora__nt_fn ntn;   /* nt for few rows of W (the gate) at any T (>>narrow); NULL: use nt */
    void (*exps)(float *v, int n);   /* v = exp(v), the softmax's (>>vexp) */
    int by_token_ratio;   /* the grouped by-token order pays when fewer than 1 in this many pairs are
                             routed (molora__choose_path): its kernels' cost per pair against BLAS's */
    int by_expert_ratio;  /* the same for the by-expert order */
    int by_token_rank;    /* the by-token order only while the routed experts' mean rank is below this */
    molora__gto_fn gto;   /* the gate of many rows as outer products (>>outer); NULL: ntn / BLAS */
    int own_t;            /* up to this many tokens the dense experts' expand runs on nng from
                             own_from tokens (molora__dense_own), their shrink and the frozen layer
                             on ntg from 17 (molora__nt_own); 0: the seam's kernels (BLAS beyond 16) */
    int own_from;         /* the fewest tokens whose dense expand runs on nng (2 or more) */
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

/* BF16 to float32, exact: the 16 bits are the float's top half (the seam's widening tiles) */
MOLORA__PRIVATE void molora__widen_c(const uint16_t *src, size_t n, float *dst)
{
    size_t i;
    for (i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(dst + i, &u, sizeof u);
    }
}

/* nt16 / nn16's naive twins (not dispatched: without a fast version the seam widens a tile and
   runs nt / nn; the tests check the fast ones against these) */
MOLORA__PRIVATE float molora__bf(uint16_t h) { return molora__bits_f32((uint32_t)h << 16); }
MOLORA__PRIVATE void molora__nt16_c(int T, int N, int K, const float *X, int ldx, const uint16_t *W, int ldw, float *Y,
                                    int ldy)
{
    int t, n, k;
    for (t = 0; t < T; t++)
        for (n = 0; n < N; n++) {
            float s = 0.0f;
            for (k = 0; k < K; k++) s += X[(size_t)t * ldx + k] * molora__bf(W[(size_t)n * ldw + k]);
            Y[(size_t)t * ldy + n] = s;
        }
}
MOLORA__PRIVATE void molora__nn16_c(int T, int N, int K, const float *H, int ldh, const uint16_t *B, int ldb, float *Y,
                                    int ldy)
{
    int t, n, k;
    for (t = 0; t < T; t++)
        for (k = 0; k < K; k++)
            for (n = 0; n < N; n++)
                Y[(size_t)t * ldy + n] += H[(size_t)t * ldh + k] * molora__bf(B[(size_t)k * ldb + n]);
}

/* the grouped kernels' portable versions and naive twins: one token row at a time */
MOLORA__PRIVATE void molora__ntg_c(int T, int N, int K, const float *const *X, const float *W, int ldw,
                                   float *const *Y, int acc)
{
    int t;
    for (t = 0; t < T; t++) molora__nt_c(1, N, K, 1.0f, X[t], K, W, ldw, Y[t], N, acc);
}
MOLORA__PRIVATE void molora__nng_c(int T, int N, int K, const float *const *H, const float *B, int ldb,
                                   float *const *Y)
{
    int t;
    for (t = 0; t < T; t++) molora__nn_c(1, N, K, H[t], K, B, ldb, Y[t], N);
}

/* ntp's naive twin: the same product read from the packed panels one (token, row) at a time.
   Not dispatched (the portable table keeps nt on row-major X); it is the reference the test
   checks every ntp kernel against (molora__kernel_check). */
MOLORA__PRIVATE void molora__ntp_c(int T, int N, int K, int q, float alpha, const float *P, const float *W, int ldw,
                                   float *Y, int ldy, int acc)
{
    int nc = (K + q + 15) / 16, t, n, k;
    for (t = 0; t < T; t++) {
        int t0 = t - t % 8, tb = T - t0 < 8 ? T - t0 : 8;
        const float *xt = P + (size_t)t0 * nc * 16 + (size_t)(t - t0) * 16;   /* chunk c at xt + c * tb * 16 */
        for (n = 0; n < N; n++) {
            const float *w = W + (size_t)n * ldw;
            float s = 0.0f, *y = Y + (size_t)t * ldy + n;
            for (k = 0; k < K; k++) s += xt[(size_t)((k + q) / 16) * tb * 16 + (k + q) % 16] * w[k];
            *y = (acc ? *y : 0.0f) + alpha * s;
        }
    }
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && !defined(MOLORA_NO_SIMD)
#define MOLORA__X86 1
#include <immintrin.h>
/* MOLORA_KERNELS_NO_UBSAN (the test builds under ASan + UBSan set it): the SIMD kernels without
   UBSan's checks (ASan's stay); instrumenting their unrolled intrinsics made one build 4 minutes */
#ifdef MOLORA_KERNELS_NO_UBSAN
#define MOLORA__KSAN , no_sanitize("undefined")
#else
#define MOLORA__KSAN
#endif
#define MOLORA__T512 __attribute__((target("avx512f,avx2,fma") MOLORA__KSAN))
#define MOLORA__T256 __attribute__((target("avx2,fma") MOLORA__KSAN))
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
#define MOLORA__PFD 512   /* W prefetch distance in floats: far enough ahead to cover DRAM latency */
#endif
/* Software prefetch of p + MOLORA__PFD floats, by the CPU's table (a constant PF in each kernel's
   copy): 0 none, the hardware prefetchers alone; 1 into L1 (Intel: its streams read faster so);
   2 into L2 (AMD Zen 4: ntp at T = 8 reads W from DRAM in 4.0 ms with it, 4.9 into L1, 5.4 with
   none). Both vendors' decode kernel gvt reads fastest with none: Zen 4 (28.8 GB/s against 17.8
   into L1) and the Xeon of family 6 model 167 (from DRAM, one thread, mean of 400 calls: d 768
   152 us against 166 into L1, d 2048 1.04 ms against 1.13, d 4096 4.04-4.14 against 4.13-4.25).
   A prefetch past the row never faults.
   MOLORA__PREFETCH_AT prefetches address a itself, by PF (the grouped kernels' own distances). */
#define MOLORA__PREFETCH_AT(PF, a)                                                                    \
    do {                                                                                           \
        if ((PF) == 1) _mm_prefetch((const char *)(a), _MM_HINT_T0);                               \
        else if ((PF) == 2) _mm_prefetch((const char *)(a), _MM_HINT_T1);                          \
    } while (0)
#if MOLORA__PFD > 0
#define MOLORA__PREFETCH(PF, p) MOLORA__PREFETCH_AT(PF, (p) + MOLORA__PFD)
#else
#define MOLORA__PREFETCH(PF, p) ((void)(PF), (void)(p))
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
    if (TB <= 4)
        for (; n + 2 <= N; n += 2)
            molora__nt256_rows(TB, 2, K, alpha, X, ldx, W + (size_t)n * ldw, ldw, Y + n, ldy, acc);
    for (; n < N; n++) molora__nt256_rows(TB, 1, K, alpha, X, ldx, W + (size_t)n * ldw, ldw, Y + n, ldy, acc);
}

/* ntp: TB tokens x R rows over packed X; W read from W - q in aligned 16-float chunks, the
   first and last chunks masked (masked lanes are never touched, so reading before the row is safe) */
MOLORA__INLINE MOLORA__T512 void molora__ntp512_rows(const int TB, const int R, const int PF, int K, int q,
                                                     float alpha, const float *P, const float *W, int ldw, float *Y,
                                                     int ldy, int acc)
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
            MOLORA__PREFETCH(PF, w0 + (size_t)r * ldw + 16 * c);
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
MOLORA__INLINE MOLORA__T512 void molora__ntp512_tb(const int TB, const int PF, int N, int K, int q, float alpha,
                                                   const float *P, const float *W, int ldw, float *Y, int ldy, int acc)
{
    int n = 0;
    for (; n + 3 <= N; n += 3)
        molora__ntp512_rows(TB, 3, PF, K, q, alpha, P, W + (size_t)n * ldw, ldw, Y + n, ldy, acc);
    for (; n < N; n++) molora__ntp512_rows(TB, 1, PF, K, q, alpha, P, W + (size_t)n * ldw, ldw, Y + n, ldy, acc);
}
#define MOLORA__NTP512_CASE(TB, PF) molora__ntp512_tb(TB, PF, N, K, q, alpha, p, W, ldw, y, ldy, acc); break;
MOLORA__INLINE MOLORA__T512 void molora__ntp512_blocks(const int PF, int T, int N, int K, int q, float alpha,
                                                       const float *P, const float *W, int ldw, float *Y, int ldy,
                                                       int acc)
{
    int t0, nc = (K + q + 15) / 16;
    for (t0 = 0; t0 < T; t0 += 8) {
        const float *p = P + (size_t)t0 * nc * 16;
        float *y = Y + (size_t)t0 * ldy;
        switch (T - t0 >= 8 ? 8 : T - t0) {
        case 1: MOLORA__NTP512_CASE(1, PF)
        case 2: MOLORA__NTP512_CASE(2, PF)
        case 3: MOLORA__NTP512_CASE(3, PF)
        case 4: MOLORA__NTP512_CASE(4, PF)
        case 5: MOLORA__NTP512_CASE(5, PF)
        case 6: MOLORA__NTP512_CASE(6, PF)
        case 7: MOLORA__NTP512_CASE(7, PF)
        default: MOLORA__NTP512_CASE(8, PF)
        }
    }
}
#undef MOLORA__NTP512_CASE
/* Intel's table: W prefetched into L1 */
MOLORA__PRIVATE MOLORA__T512 void molora__ntp_avx512(int T, int N, int K, int q, float alpha, const float *P,
                                                     const float *W, int ldw, float *Y, int ldy, int acc)
{
    molora__ntp512_blocks(1, T, N, K, q, alpha, P, W, ldw, Y, ldy, acc);
}
/* AMD's table: W prefetched into L2 */
MOLORA__PRIVATE MOLORA__T512 void molora__ntp_avx512_l2(int T, int N, int K, int q, float alpha, const float *P,
                                                        const float *W, int ldw, float *Y, int ldy, int acc)
{
    molora__ntp512_blocks(2, T, N, K, q, alpha, P, W, ldw, Y, ldy, acc);
}

/* dispatch TB = 1..8 to constant-folded copies of the body */
#ifndef MOLORA__NT_KBLOCK
#define MOLORA__NT_KBLOCK (1 << 30)   /* K per pass: one pass, so each row of W is one unbroken stream */
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

/* nn: Y (T, N) += H (T, K) B (K, N). Blocks of MOLORA__NN_KB rows of B are streamed along N
   together (that many sequential reads, which the prefetchers follow; a tile over all of K walked
   B's rows in 128-byte pieces and read DRAM at half the rate); per strip of 16 NV columns a
   register tile of TB tokens x NV vectors accumulates the block's rows, so Y is loaded and stored
   once per block of rows and each row of B once per token block. TB and NV are constants after
   inlining (the old kernel's one accumulator per token ran its FMAs as one dependent chain: from
   DRAM at K 256, N 4096, 8 tokens 0.46-0.63 ms against 0.37-0.45). Every sum runs over k in
   order, one FMA a step. Token blocks of up to 8: NV 4 (64 columns) up to 6 tokens, else NV 2.
   MOLORA__NN512_KERNEL(NAME, BT, LOAD_B): the kernel NAME for B of element type BT; LOAD_B(p, nb, m)
   gives the 16 columns at p as floats, nb (0 .. 16) of them valid under mask m. The last strip's
   columns past N are masked: nothing is read or written there. */
#define MOLORA__NN_VMAX 4
#ifndef MOLORA__NN_KB
#define MOLORA__NN_KB 8
#endif
#define MOLORA__NN512_KERNEL(NAME, BT, LOAD_B)                                                           \
    MOLORA__INLINE MOLORA__T512 void NAME##_tile(const int TB, const int NV, int K, const float *H, int ldh, \
                                                 const BT *B, int ldb, float *Y, int ldy, int nb)          \
    {                                                                                                  \
        __m512 acc_[MOLORA__TBMAX][MOLORA__NN_VMAX], b_[MOLORA__NN_VMAX];                              \
        __mmask16 m_[MOLORA__NN_VMAX];                                                                 \
        int n_[MOLORA__NN_VMAX], t, v, k;                                                              \
        MOLORA__UNROLL for (v = 0; v < NV; v++) {                                                      \
            n_[v] = nb - 16 * v < 0 ? 0 : nb - 16 * v > 16 ? 16 : nb - 16 * v;                         \
            m_[v] = (__mmask16)((1u << n_[v]) - 1u);                                                   \
        }                                                                                              \
        MOLORA__UNROLL for (t = 0; t < TB; t++) MOLORA__UNROLL for (v = 0; v < NV; v++)                \
            acc_[t][v] = _mm512_maskz_loadu_ps(m_[v], Y + (size_t)t * ldy + 16 * v);                   \
        for (k = 0; k < K; k++) {                                                                      \
            const BT *bk = B + (size_t)k * ldb;                                                        \
            MOLORA__UNROLL for (v = 0; v < NV; v++) b_[v] = LOAD_B(bk + 16 * v, n_[v], m_[v]);         \
            MOLORA__UNROLL for (t = 0; t < TB; t++) {                                                  \
                __m512 h = _mm512_set1_ps(H[(size_t)t * ldh + k]);                                     \
                MOLORA__UNROLL for (v = 0; v < NV; v++) acc_[t][v] = _mm512_fmadd_ps(h, b_[v], acc_[t][v]); \
            }                                                                                          \
        }                                                                                              \
        MOLORA__UNROLL for (t = 0; t < TB; t++) MOLORA__UNROLL for (v = 0; v < NV; v++)                \
            _mm512_mask_storeu_ps(Y + (size_t)t * ldy + 16 * v, m_[v], acc_[t][v]);                    \
    }                                                                                                  \
    /* TB tokens: blocks of MOLORA__NN_KB rows of B, each streamed along N in strips of 16 NV columns  \
       (the last masked), so the rows of a block are read as that many sequential streams */            \
    MOLORA__INLINE MOLORA__T512 void NAME##_strips(const int TB, const int NV, int N, int K, const float *H, \
                                                   int ldh, const BT *B, int ldb, float *Y, int ldy)       \
    {                                                                                                  \
        int k0, n;                                                                                     \
        for (k0 = 0; k0 < K; k0 += MOLORA__NN_KB) {                                                    \
            int kb = K - k0 < MOLORA__NN_KB ? K - k0 : MOLORA__NN_KB;                                  \
            const BT *b = B + (size_t)k0 * ldb;                                                        \
            for (n = 0; n + 16 * NV <= N; n += 16 * NV)                                                \
                NAME##_tile(TB, NV, kb, H + k0, ldh, b + n, ldb, Y + n, ldy, 16 * NV);                 \
            if (n < N) NAME##_tile(TB, NV, kb, H + k0, ldh, b + n, ldb, Y + n, ldy, N - n);            \
        }                                                                                              \
    }                                                                                                  \
    /* T tokens in ceil(T / 8) blocks as even as can be */                                            \
    MOLORA__PRIVATE MOLORA__T512 void NAME(int T, int N, int K, const float *H, int ldh, const BT *B, int ldb, \
                                           float *Y, int ldy)                                          \
    {                                                                                                  \
        int t0 = 0;                                                                                    \
        while (t0 < T) {                                                                               \
            int left = T - t0, blocks = (left + MOLORA__TBMAX - 1) / MOLORA__TBMAX;                    \
            int tb = (left + blocks - 1) / blocks;                                                     \
            const float *h = H + (size_t)t0 * ldh;                                                     \
            float *y = Y + (size_t)t0 * ldy;                                                           \
            switch (tb) {                                                                              \
            case 1: NAME##_strips(1, 4, N, K, h, ldh, B, ldb, y, ldy); break;                          \
            case 2: NAME##_strips(2, 4, N, K, h, ldh, B, ldb, y, ldy); break;                          \
            case 3: NAME##_strips(3, 4, N, K, h, ldh, B, ldb, y, ldy); break;                          \
            case 4: NAME##_strips(4, 4, N, K, h, ldh, B, ldb, y, ldy); break;                          \
            case 5: NAME##_strips(5, 4, N, K, h, ldh, B, ldb, y, ldy); break;                          \
            case 6: NAME##_strips(6, 4, N, K, h, ldh, B, ldb, y, ldy); break;                          \
            case 7: NAME##_strips(7, 2, N, K, h, ldh, B, ldb, y, ldy); break;                          \
            default: NAME##_strips(8, 2, N, K, h, ldh, B, ldb, y, ldy); break;                         \
            }                                                                                          \
            t0 += tb;                                                                                  \
        }                                                                                              \
    }
#define MOLORA__NN512_LOAD_F32(p, nb, m) _mm512_maskz_loadu_ps((m), (p))
MOLORA__NN512_KERNEL(molora__nn_avx512, float, MOLORA__NN512_LOAD_F32)
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
/* gather kernels, R <= 8 rows a block with R a constant after inlining, so the accumulators, the
   row pointers and the coefficients stay in registers (a run-time R kept them on the stack, one
   store-to-load round trip per FMA). dots: the R rows share each load of x; the last 16-float
   step is masked. axpys: the R rows share each load and store of y; two 16-column steps at once
   so two FMA chains overlap, and a column's sum does not depend on the step it falls in. */
MOLORA__INLINE MOLORA__T512 void molora__dots512_blk(const int R, const float *const *rows, const float *x,
                                                     float *out, int K)
{
    const float *p[8];
    __m512 acc[8];
    int r, k = 0;
    MOLORA__UNROLL for (r = 0; r < R; r++) { p[r] = rows[r]; acc[r] = _mm512_setzero_ps(); }
    for (; k + 16 <= K; k += 16) {
        __m512 xv = _mm512_loadu_ps(x + k);
        MOLORA__UNROLL for (r = 0; r < R; r++) acc[r] = _mm512_fmadd_ps(_mm512_loadu_ps(p[r] + k), xv, acc[r]);
    }
    if (k < K) {
        __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + k);
        MOLORA__UNROLL for (r = 0; r < R; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, p[r] + k), xv, acc[r]);
    }
    MOLORA__UNROLL for (r = 0; r < R; r++) out[r] = molora__hsum512(acc[r]);
}
MOLORA__INLINE MOLORA__T512 void molora__axpys512_blk(const int R, const float *const *rows, const float *coef,
                                                      float *y, int N)
{
    const float *p[8];
    __m512 c[8];
    int r, n = 0;
    MOLORA__UNROLL for (r = 0; r < R; r++) { p[r] = rows[r]; c[r] = _mm512_set1_ps(coef[r]); }
    for (; n + 32 <= N; n += 32) {
        __m512 a0 = _mm512_loadu_ps(y + n), a1 = _mm512_loadu_ps(y + n + 16);
        MOLORA__UNROLL for (r = 0; r < R; r++) {
            a0 = _mm512_fmadd_ps(c[r], _mm512_loadu_ps(p[r] + n), a0);
            a1 = _mm512_fmadd_ps(c[r], _mm512_loadu_ps(p[r] + n + 16), a1);
        }
        _mm512_storeu_ps(y + n, a0); _mm512_storeu_ps(y + n + 16, a1);
    }
    for (; n < N; n += 16) {
        __mmask16 m = N - n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (N - n)) - 1);
        __m512 a0 = _mm512_maskz_loadu_ps(m, y + n);
        MOLORA__UNROLL for (r = 0; r < R; r++) a0 = _mm512_fmadd_ps(c[r], _mm512_maskz_loadu_ps(m, p[r] + n), a0);
        _mm512_mask_storeu_ps(y + n, m, a0);
    }
}
/* the cases R = 1..8 of a gather block BLK, with its arguments after the row count */
#define MOLORA__GATHER_CASES(BLK, ROWS, A3, A4, LEN)                                                   \
    case 1: BLK(1, ROWS, A3, A4, LEN); break; case 2: BLK(2, ROWS, A3, A4, LEN); break;               \
    case 3: BLK(3, ROWS, A3, A4, LEN); break; case 4: BLK(4, ROWS, A3, A4, LEN); break;               \
    case 5: BLK(5, ROWS, A3, A4, LEN); break; case 6: BLK(6, ROWS, A3, A4, LEN); break;               \
    case 7: BLK(7, ROWS, A3, A4, LEN); break; default: BLK(8, ROWS, A3, A4, LEN); break;
MOLORA__PRIVATE MOLORA__T512 void molora__dots_avx512(int R, const float *const *rows, const float *x, int K,
                                                      float *out)
{
    int r0;
    for (r0 = 0; r0 < R; r0 += 8)
        switch (R - r0 < 8 ? R - r0 : 8) { MOLORA__GATHER_CASES(molora__dots512_blk, rows + r0, x, out + r0, K) }
}
MOLORA__PRIVATE MOLORA__T512 void molora__axpys_avx512(int R, const float *const *rows, const float *coef, float *y,
                                                       int N)
{
    int r0;
    for (r0 = 0; r0 < R; r0 += 8)
        switch (R - r0 < 8 ? R - r0 : 8) { MOLORA__GATHER_CASES(molora__axpys512_blk, rows + r0, coef + r0, y, N) }
}
#undef MOLORA__GATHER_CASES
/* ntg: TB <= 6 gathered tokens x R <= 4 rows of W in registers (24 accumulators, 10 loads per 24
   FMAs; rank 16 is 4 x 4 rows with no single-row tail), K in 16-lane steps (the last one masked).
   pf: the first token group prefetches each row MOLORA__NTG_PF floats ahead, the next tile of
   the caller's d_in tiling, so a row's stream does not stall at every tile (an expert's rows
   come from DRAM: the pool's batch touches each adapter once), as MOLORA__PREFETCH's PF says (1
   into L1 on Intel's table, 2 into L2 on AMD's: Zen 4, 16 rank-16 adapters of d 4096 used by 4
   tokens each, from DRAM, mean of 400 calls 0.69 ms prefetching ntg and nng into L1, 0.48-0.59
   into L2). Each dot is summed lane-wise over k, then across lanes, whatever the grouping. */
#ifndef MOLORA__NTG_PF
#define MOLORA__NTG_PF 512
#endif
MOLORA__INLINE MOLORA__T512 void molora__ntg512_rows(const int TB, const int R, int K, const float *const *X,
                                                     const float *W, int ldw, float *const *Y, int n0, int acc,
                                                     int pf)
{
    int t, k, r;
    const float *xp[6];
    __m512 acc_[4][6];
    MOLORA__UNROLL for (t = 0; t < TB; t++) xp[t] = X[t];
    MOLORA__UNROLL for (r = 0; r < R; r++) MOLORA__UNROLL for (t = 0; t < TB; t++) acc_[r][t] = _mm512_setzero_ps();
    for (k = 0; k < K; k += 16) {
        __mmask16 m = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
        __m512 v_[4];
        MOLORA__UNROLL for (r = 0; r < R; r++) v_[r] = _mm512_maskz_loadu_ps(m, W + (size_t)r * ldw + k);
        if (pf)
            MOLORA__UNROLL for (r = 0; r < R; r++) MOLORA__PREFETCH_AT(pf, W + (size_t)r * ldw + k + MOLORA__NTG_PF);
        MOLORA__UNROLL for (t = 0; t < TB; t++) {
            __m512 x = _mm512_maskz_loadu_ps(m, xp[t] + k);
            MOLORA__UNROLL for (r = 0; r < R; r++) acc_[r][t] = _mm512_fmadd_ps(v_[r], x, acc_[r][t]);
        }
    }
    MOLORA__UNROLL for (r = 0; r < R; r++)
        MOLORA__UNROLL for (t = 0; t < TB; t++) {
            float *y = Y[t] + n0 + r;
            y[0] = (acc ? y[0] : 0.0f) + molora__hsum512(acc_[r][t]);
        }
}
MOLORA__INLINE MOLORA__T512 void molora__ntg512_tb(const int TB, int N, int K, const float *const *X, const float *W,
                                                   int ldw, float *const *Y, int acc, int pf)
{
    int n = 0;
    for (; n + 4 <= N; n += 4) molora__ntg512_rows(TB, 4, K, X, W + (size_t)n * ldw, ldw, Y, n, acc, pf);
    switch (N - n) {
    case 3: molora__ntg512_rows(TB, 3, K, X, W + (size_t)n * ldw, ldw, Y, n, acc, pf); break;
    case 2: molora__ntg512_rows(TB, 2, K, X, W + (size_t)n * ldw, ldw, Y, n, acc, pf); break;
    case 1: molora__ntg512_rows(TB, 1, K, X, W + (size_t)n * ldw, ldw, Y, n, acc, pf); break;
    default: break;
    }
}
MOLORA__INLINE MOLORA__T512 void molora__ntg512_all(const int PF, int T, int N, int K, const float *const *X,
                                                    const float *W, int ldw, float *const *Y, int acc)
{
    int t0;
    for (t0 = 0; t0 < T; t0 += 6) {
        const float *const *x = X + t0;
        float *const *y = Y + t0;
        int pf = t0 == 0 ? PF : 0;
        switch (T - t0 >= 6 ? 6 : T - t0) {
        case 1: molora__ntg512_tb(1, N, K, x, W, ldw, y, acc, pf); break;
        case 2: molora__ntg512_tb(2, N, K, x, W, ldw, y, acc, pf); break;
        case 3: molora__ntg512_tb(3, N, K, x, W, ldw, y, acc, pf); break;
        case 4: molora__ntg512_tb(4, N, K, x, W, ldw, y, acc, pf); break;
        case 5: molora__ntg512_tb(5, N, K, x, W, ldw, y, acc, pf); break;
        default: molora__ntg512_tb(6, N, K, x, W, ldw, y, acc, pf); break;
        }
    }
}
/* Intel's table: the rows prefetched into L1; AMD's: into L2 */
MOLORA__PRIVATE MOLORA__T512 void molora__ntg_avx512(int T, int N, int K, const float *const *X, const float *W,
                                                     int ldw, float *const *Y, int acc)
{
    molora__ntg512_all(1, T, N, K, X, W, ldw, Y, acc);
}
MOLORA__PRIVATE MOLORA__T512 void molora__ntg_avx512_l2(int T, int N, int K, const float *const *X, const float *W,
                                                        int ldw, float *const *Y, int acc)
{
    molora__ntg512_all(2, T, N, K, X, W, ldw, Y, acc);
}
/* nng: a register tile of TB <= 4 tokens x NV <= 4 vectors of 16 columns (TB, NV constants after
   inlining): the 16 accumulators start from Y and take every row k of B in order, 4 loads of B
   and TB broadcasts of H per 4 TB FMAs, 16 independent chains (one chain over k per column kept
   a FMA's latency between every two rows). Column strips of 64 outside, token groups inside, so
   the strip of B (K x 64) stays in L1 while the block's tokens pass it. Per column the sum runs
   over k in order, y + h_0 b_0 + h_1 b_1 + ..., whatever the tiling. The last vector is masked
   by m (0xFFFF when whole). */
MOLORA__INLINE MOLORA__T512 void molora__nng512_tile(const int TB, const int NV, int K, const float *const *H,
                                                     const float *B, int ldb, float *const *Y, int n, __mmask16 m,
                                                     int pf)
{
    __m512 acc[4][4];
    int t, v, k;
    MOLORA__UNROLL for (t = 0; t < TB; t++)
        MOLORA__UNROLL for (v = 0; v < NV; v++) acc[t][v] = _mm512_maskz_loadu_ps(v == NV - 1 ? m : 0xFFFF,
                                                                                  Y[t] + n + 16 * v);
    for (k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb + n;
        __m512 bv[4];
        MOLORA__UNROLL for (v = 0; v < NV; v++) bv[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? m : 0xFFFF, b + 16 * v);
        if (pf) MOLORA__UNROLL for (v = 0; v < 4; v++) MOLORA__PREFETCH_AT(pf, b + 128 + 16 * v);
        MOLORA__UNROLL for (t = 0; t < TB; t++) {
            __m512 h = _mm512_set1_ps(H[t][k]);
            MOLORA__UNROLL for (v = 0; v < NV; v++) acc[t][v] = _mm512_fmadd_ps(h, bv[v], acc[t][v]);
        }
    }
    MOLORA__UNROLL for (t = 0; t < TB; t++)
        MOLORA__UNROLL for (v = 0; v < NV; v++) _mm512_mask_storeu_ps(Y[t] + n + 16 * v, v == NV - 1 ? m : 0xFFFF,
                                                                      acc[t][v]);
}
/* one strip of NV vectors at column n, the tokens 4 at a time; the first group prefetches as PF */
MOLORA__INLINE MOLORA__T512 void molora__nng512_strip(const int PF, const int NV, int T, int K, const float *const *H,
                                                      const float *B, int ldb, float *const *Y, int n, __mmask16 m)
{
    int t0;
    for (t0 = 0; t0 + 4 <= T; t0 += 4) molora__nng512_tile(4, NV, K, H + t0, B, ldb, Y + t0, n, m, t0 == 0 ? PF : 0);
    switch (T - t0) {
    case 3: molora__nng512_tile(3, NV, K, H + t0, B, ldb, Y + t0, n, m, t0 == 0 ? PF : 0); break;
    case 2: molora__nng512_tile(2, NV, K, H + t0, B, ldb, Y + t0, n, m, t0 == 0 ? PF : 0); break;
    case 1: molora__nng512_tile(1, NV, K, H + t0, B, ldb, Y + t0, n, m, t0 == 0 ? PF : 0); break;
    default: break;
    }
}
MOLORA__INLINE MOLORA__T512 void molora__nng512_all(const int PF, int T, int N, int K, const float *const *H,
                                                    const float *B, int ldb, float *const *Y)
{
    int n = 0, nv;
    __mmask16 m;
    for (; n + 64 <= N; n += 64) molora__nng512_strip(PF, 4, T, K, H, B, ldb, Y, n, 0xFFFF);
    if (n == N) return;
    nv = (N - n + 15) / 16;
    m = (N - n) % 16 ? (__mmask16)((1u << ((N - n) % 16)) - 1) : (__mmask16)0xFFFF;
    switch (nv) {
    case 4: molora__nng512_strip(PF, 4, T, K, H, B, ldb, Y, n, m); break;
    case 3: molora__nng512_strip(PF, 3, T, K, H, B, ldb, Y, n, m); break;
    case 2: molora__nng512_strip(PF, 2, T, K, H, B, ldb, Y, n, m); break;
    default: molora__nng512_strip(PF, 1, T, K, H, B, ldb, Y, n, m); break;
    }
}
/* Intel's table: B's strips prefetched into L1; AMD's: into L2 (see ntg) */
MOLORA__PRIVATE MOLORA__T512 void molora__nng_avx512(int T, int N, int K, const float *const *H, const float *B,
                                                     int ldb, float *const *Y)
{
    molora__nng512_all(1, T, N, K, H, B, ldb, Y);
}
MOLORA__PRIVATE MOLORA__T512 void molora__nng_avx512_l2(int T, int N, int K, const float *const *H, const float *B,
                                                        int ldb, float *const *Y)
{
    molora__nng512_all(2, T, N, K, H, B, ldb, Y);
}
/* 16 BF16 values at p as float32 (zero-extend, shift left 16: exact); n < 16 reads only n (rest 0) */
MOLORA__INLINE MOLORA__T512 __m512 molora__ld16(const uint16_t *p)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
MOLORA__INLINE MOLORA__T512 __m512 molora__ld16n(const uint16_t *p, int n)
{
    uint16_t b[16] = {0};
    memcpy(b, p, (size_t)n * sizeof *b);
    return molora__ld16(b);
}
/* nt16: TB tokens x R rows of BF16 W in registers, K in 16-lane steps, the K tail in scalar */
MOLORA__INLINE MOLORA__T512 void molora__nt16_512_rows(const int TB, const int R, int K, const float *X, int ldx,
                                                       const uint16_t *W, int ldw, float *Y, int ldy)
{
    int t, k, r, kk;
    __m512 acc_[MOLORA__RMAX][MOLORA__TBMAX];
    MOLORA__UNROLL for (r = 0; r < R; r++) MOLORA__UNROLL for (t = 0; t < TB; t++) acc_[r][t] = _mm512_setzero_ps();
    for (k = 0; k + 16 <= K; k += 16) {
        __m512 v_[MOLORA__RMAX];
        MOLORA__UNROLL for (r = 0; r < R; r++) {
            v_[r] = molora__ld16(W + (size_t)r * ldw + k);
#if MOLORA__PFD > 0
            _mm_prefetch((const char *)(W + (size_t)r * ldw + k + MOLORA__PFD), _MM_HINT_T0);
#endif
        }
        MOLORA__UNROLL for (t = 0; t < TB; t++) {
            __m512 x = _mm512_loadu_ps(X + (size_t)t * ldx + k);
            MOLORA__UNROLL for (r = 0; r < R; r++) acc_[r][t] = _mm512_fmadd_ps(v_[r], x, acc_[r][t]);
        }
    }
    MOLORA__UNROLL for (r = 0; r < R; r++)
        MOLORA__UNROLL for (t = 0; t < TB; t++) {
            const uint16_t *w = W + (size_t)r * ldw;
            const float *x = X + (size_t)t * ldx;
            float s0 = molora__hsum512(acc_[r][t]);
            for (kk = k; kk < K; kk++) s0 += x[kk] * molora__bf(w[kk]);
            Y[(size_t)t * ldy + r] = s0;
        }
}
MOLORA__INLINE MOLORA__T512 void molora__nt16_512_tb(const int TB, int N, int K, const float *X, int ldx,
                                                     const uint16_t *W, int ldw, float *Y, int ldy)
{
    int n = 0;
    for (; n + 3 <= N; n += 3) molora__nt16_512_rows(TB, 3, K, X, ldx, W + (size_t)n * ldw, ldw, Y + n, ldy);
    for (; n < N; n++) molora__nt16_512_rows(TB, 1, K, X, ldx, W + (size_t)n * ldw, ldw, Y + n, ldy);
}
MOLORA__PRIVATE MOLORA__T512 void molora__nt16_avx512(int T, int N, int K, const float *X, int ldx, const uint16_t *W,
                                                      int ldw, float *Y, int ldy)
{
    int t0;
    for (t0 = 0; t0 < T; t0 += 8) {
        const float *x = X + (size_t)t0 * ldx;
        float *y = Y + (size_t)t0 * ldy;
        switch (T - t0 >= 8 ? 8 : T - t0) {
        case 1: molora__nt16_512_tb(1, N, K, x, ldx, W, ldw, y, ldy); break;
        case 2: molora__nt16_512_tb(2, N, K, x, ldx, W, ldw, y, ldy); break;
        case 3: molora__nt16_512_tb(3, N, K, x, ldx, W, ldw, y, ldy); break;
        case 4: molora__nt16_512_tb(4, N, K, x, ldx, W, ldw, y, ldy); break;
        case 5: molora__nt16_512_tb(5, N, K, x, ldx, W, ldw, y, ldy); break;
        case 6: molora__nt16_512_tb(6, N, K, x, ldx, W, ldw, y, ldy); break;
        case 7: molora__nt16_512_tb(7, N, K, x, ldx, W, ldw, y, ldy); break;
        default: molora__nt16_512_tb(8, N, K, x, ldx, W, ldw, y, ldy); break;
        }
    }
}
/* nn16: Y (T, N) += H (T, K) B (K, N), B BF16: nn's register tiles, each row of B's strip widened as
   it is loaded */
#define MOLORA__NN512_LOAD_BF16(p, nb, m)                                                                \
    ((nb) == 16 ? molora__ld16(p) : (nb) > 0 ? molora__ld16n((p), (nb)) : _mm512_setzero_ps())
MOLORA__NN512_KERNEL(molora__nn16_avx512, uint16_t, MOLORA__NN512_LOAD_BF16)
#undef MOLORA__NN512_LOAD_BF16
#undef MOLORA__NN512_LOAD_F32
#undef MOLORA__NN512_KERNEL
/* BF16 to float32: zero-extend to 32 bits, shift left 16 (exact; no BF16 instruction rounds) */
MOLORA__PRIVATE MOLORA__T512 void molora__widen_avx512(const uint16_t *src, size_t n, float *dst)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(src + i)));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
    }
    molora__widen_c(src + i, n - i, dst + i);
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

/* >>gemv  single-row kernels (M = 1, decode): y = W x and y = x W, several rows of W in flight */
/* Decode multiplies one row of X by each matrix, so the time is the matrix's bytes over the read
   bandwidth. One row of W at a time is one stream, and a single stream does not keep enough
   cache-line requests in flight to reach it; these kernels read 8 rows of W at once (8 streams),
   each with its own accumulator, x (nt) or y (nn) shared by the 8 and held in L1.
     gvt: y (N) = W (N, K) x (K) (+ y if acc)        the nt form: X W0^T, X A^T at T = 1
     gvn: y (N) = x (K) W (K, N) (+ y if acc)        the nn form: X W0 (fan_in_fan_out), H B^T
   Without acc y is never read. The seam picks them for M = 1 where the CPU's table says they beat
   BLAS sgemv (gv_own), and in MOLORA_NO_BLAS builds on every CPU. */

/* portable: 4 rows of W per pass, each with its own sum (the naive twins are nt_c / nn_c at T = 1) */
MOLORA__PRIVATE void molora__gvt_c(int N, int K, const float *x, const float *W, int ldw, float *y, int acc)
{
    int n = 0, k;
    for (; n + 4 <= N; n += 4) {
        const float *w0 = W + (size_t)n * ldw, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (k = 0; k < K; k++) { s0 += w0[k] * x[k]; s1 += w1[k] * x[k]; s2 += w2[k] * x[k]; s3 += w3[k] * x[k]; }
        y[n] = (acc ? y[n] : 0.0f) + s0; y[n + 1] = (acc ? y[n + 1] : 0.0f) + s1;
        y[n + 2] = (acc ? y[n + 2] : 0.0f) + s2; y[n + 3] = (acc ? y[n + 3] : 0.0f) + s3;
    }
    for (; n < N; n++) {
        const float *w = W + (size_t)n * ldw;
        float s = 0;
        for (k = 0; k < K; k++) s += w[k] * x[k];
        y[n] = (acc ? y[n] : 0.0f) + s;
    }
}
MOLORA__PRIVATE void molora__gvn_c(int N, int K, const float *x, const float *W, int ldw, float *y, int acc)
{
    int n, k = 0;
    if (!acc) memset(y, 0, (size_t)N * sizeof *y);
    for (; k + 4 <= K; k += 4) {
        const float *w0 = W + (size_t)k * ldw, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
        float c0 = x[k], c1 = x[k + 1], c2 = x[k + 2], c3 = x[k + 3];
        for (n = 0; n < N; n++) y[n] += ((c0 * w0[n] + c1 * w1[n]) + (c2 * w2[n] + c3 * w3[n]));
    }
    for (; k < K; k++)
        for (n = 0; n < N; n++) y[n] += x[k] * W[(size_t)k * ldw + n];
}

#ifdef MOLORA__X86
/* gvt / gvn's row blocks, one body over the vector width: VEC the vector type, L its floats, ZERO /
   LOAD / FMA / SET1 / STORE its intrinsics, TAIL() what follows the full steps (the K or N tail and,
   for gvt, the sums into y). AVX-512 masks its tails; AVX2 does them in scalar, gvt adding its tail
   to the horizontal sum. No software prefetch: the hardware prefetchers read W fastest (see
   MOLORA__PREFETCH). */
#define MOLORA__GVT_ROWS(VEC, L, ZERO, LOAD, FMA, TAIL)                                                 \
    VEC a[8];                                                                                      \
    int r, k = 0;                                                                                  \
    MOLORA__UNROLL for (r = 0; r < R; r++) a[r] = ZERO;                                            \
    for (; k + L <= K; k += L) {                                                                   \
        VEC xv = LOAD(x + k);                                                                      \
        MOLORA__UNROLL for (r = 0; r < R; r++) a[r] = FMA(LOAD(W + (size_t)r * ldw + k), xv, a[r]);   \
    }                                                                                              \
    TAIL()
#define MOLORA__GVT512_TAIL()                                                                          \
    if (k < K) {                                                                                   \
        __mmask16 m = (__mmask16)((1u << (K - k)) - 1);                                            \
        __m512 xv = _mm512_maskz_loadu_ps(m, x + k);                                               \
        MOLORA__UNROLL for (r = 0; r < R; r++)                                                     \
            a[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, W + (size_t)r * ldw + k), xv, a[r]);   \
    }                                                                                              \
    MOLORA__UNROLL for (r = 0; r < R; r++) y[r] = (acc ? y[r] : 0.0f) + molora__hsum512(a[r]);
#define MOLORA__GVT256_TAIL()                                                                          \
    MOLORA__UNROLL for (r = 0; r < R; r++) {                                                       \
        int kk;                                                                                    \
        float s = molora__hsum256(a[r]);                                                           \
        for (kk = k; kk < K; kk++) s += W[(size_t)r * ldw + kk] * x[kk];                           \
        y[r] = (acc ? y[r] : 0.0f) + s;                                                            \
    }
#define MOLORA__GVN_ROWS(VEC, L, ZERO, LOAD, FMA, SET1, STORE, TAIL)                                    \
    VEC c[8];                                                                                      \
    int r, n = 0;                                                                                  \
    MOLORA__UNROLL for (r = 0; r < R; r++) c[r] = SET1(x[r]);                                      \
    for (; n + L <= N; n += L) {                                                                   \
        VEC a = init ? ZERO : LOAD(y + n);                                                         \
        MOLORA__UNROLL for (r = 0; r < R; r++) a = FMA(c[r], LOAD(W + (size_t)r * ldw + n), a);    \
        STORE(y + n, a);                                                                           \
    }                                                                                              \
    TAIL()
#define MOLORA__GVN512_TAIL()                                                                          \
    if (n < N) {                                                                                   \
        __mmask16 m = (__mmask16)((1u << (N - n)) - 1);                                            \
        __m512 a = init ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, y + n);                   \
        MOLORA__UNROLL for (r = 0; r < R; r++)                                                     \
            a = _mm512_fmadd_ps(c[r], _mm512_maskz_loadu_ps(m, W + (size_t)r * ldw + n), a);       \
        _mm512_mask_storeu_ps(y + n, m, a);                                                        \
    }
#define MOLORA__GVN256_TAIL()                                                                          \
    for (; n < N; n++) {                                                                           \
        float s = init ? 0.0f : y[n];                                                              \
        for (r = 0; r < R; r++) s += x[r] * W[(size_t)r * ldw + n];                                \
        y[n] = s;                                                                                  \
    }
/* gvt: R <= 8 rows of W, 16 floats of each per step against one load of x; the K tail masked */
MOLORA__INLINE MOLORA__T512 void molora__gvt512_rows(const int R, int K, const float *x, const float *W, int ldw,
                                                     float *y, int acc)
{
    MOLORA__GVT_ROWS(__m512, 16, _mm512_setzero_ps(), _mm512_loadu_ps, _mm512_fmadd_ps, MOLORA__GVT512_TAIL)
}
/* gvn: R <= 8 rows of W (x's R values broadcast once) into y, 16 columns a step, the N tail
   masked; init: the first block of rows stores into y without reading it */
MOLORA__INLINE MOLORA__T512 void molora__gvn512_rows(const int R, int N, const float *x, const float *W, int ldw,
                                                     float *y, int init)
{
    MOLORA__GVN_ROWS(__m512, 16, _mm512_setzero_ps(), _mm512_loadu_ps, _mm512_fmadd_ps, _mm512_set1_ps,
                     _mm512_storeu_ps, MOLORA__GVN512_TAIL)
}
/* the AVX2 versions: 8 floats a step, no software prefetch, the tails in scalar */
MOLORA__INLINE MOLORA__T256 void molora__gvt256_rows(const int R, int K, const float *x, const float *W, int ldw,
                                                     float *y, int acc)
{
    MOLORA__GVT_ROWS(__m256, 8, _mm256_setzero_ps(), _mm256_loadu_ps, _mm256_fmadd_ps, MOLORA__GVT256_TAIL)
}
MOLORA__INLINE MOLORA__T256 void molora__gvn256_rows(const int R, int N, const float *x, const float *W, int ldw,
                                                     float *y, int init)
{
    MOLORA__GVN_ROWS(__m256, 8, _mm256_setzero_ps(), _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_set1_ps,
                     _mm256_storeu_ps, MOLORA__GVN256_TAIL)
}
#undef MOLORA__GVN256_TAIL
#undef MOLORA__GVN512_TAIL
#undef MOLORA__GVN_ROWS
#undef MOLORA__GVT256_TAIL
#undef MOLORA__GVT512_TAIL
#undef MOLORA__GVT_ROWS
/* the 1..7 rows left after the blocks of 8, as one block of a constant R */
#define MOLORA__GV_TAIL(FN, REST, LEN, X, W, Y, ARG)                                                   \
    switch (REST) {                                                                                \
    case 1: FN(1, LEN, X, W, ldw, Y, ARG); break;                                                  \
    case 2: FN(2, LEN, X, W, ldw, Y, ARG); break;                                                  \
    case 3: FN(3, LEN, X, W, ldw, Y, ARG); break;                                                  \
    case 4: FN(4, LEN, X, W, ldw, Y, ARG); break;                                                  \
    case 5: FN(5, LEN, X, W, ldw, Y, ARG); break;                                                  \
    case 6: FN(6, LEN, X, W, ldw, Y, ARG); break;                                                  \
    case 7: FN(7, LEN, X, W, ldw, Y, ARG); break;                                                  \
    default: break;                                                                                \
    }
/* nt: blocks of 8 rows of W, each row its own output */
#define MOLORA__GVT_BODY(FN)                                                                           \
    int n = 0;                                                                                     \
    for (; n + 8 <= N; n += 8) FN(8, K, x, W + (size_t)n * ldw, ldw, y + n, acc);                  \
    MOLORA__GV_TAIL(FN, N - n, K, x, W + (size_t)n * ldw, y + n, acc)
/* nn: blocks of 8 rows of W, all into y; without acc the first block stores y unread */
#define MOLORA__GVN_BODY(FN)                                                                           \
    int k = 0, init = !acc;                                                                        \
    if (K <= 0) { if (init) memset(y, 0, (size_t)N * sizeof *y); return; }                         \
    for (; k + 8 <= K; k += 8, init = 0) FN(8, N, x + k, W + (size_t)k * ldw, ldw, y, init);       \
    MOLORA__GV_TAIL(FN, K - k, N, x + k, W + (size_t)k * ldw, y, init)
MOLORA__PRIVATE MOLORA__T512 void molora__gvt_avx512(int N, int K, const float *x, const float *W, int ldw, float *y,
                                                     int acc)
{
    MOLORA__GVT_BODY(molora__gvt512_rows)
}
MOLORA__PRIVATE MOLORA__T512 void molora__gvn_avx512(int N, int K, const float *x, const float *W, int ldw, float *y,
                                                     int acc)
{
    MOLORA__GVN_BODY(molora__gvn512_rows)
}
MOLORA__PRIVATE MOLORA__T256 void molora__gvt_avx2(int N, int K, const float *x, const float *W, int ldw, float *y,
                                                   int acc)
{
    MOLORA__GVT_BODY(molora__gvt256_rows)
}
MOLORA__PRIVATE MOLORA__T256 void molora__gvn_avx2(int N, int K, const float *x, const float *W, int ldw, float *y,
                                                   int acc)
{
    MOLORA__GVN_BODY(molora__gvn256_rows)
}
#undef MOLORA__GVN_BODY
#undef MOLORA__GVT_BODY
#undef MOLORA__GV_TAIL
#endif /* MOLORA__X86 */
/* <<gemv */

/* >>narrow  ntn, the narrow nt of the gate: its rows (N + 1) in blocks of 9, any T, blocked over tokens */
/* ntn: Y (T, N) = alpha * X (T, K) W (N, K)^T (+ Y if acc) for few rows N (the gate's N + 1), any T.
   nt holds 3 rows x 8 tokens and reloads each token's X for every 3 rows; ntn holds TB tokens x R
   rows (AVX-512 3 x 9: 27 accumulators, AVX2 2 x 5), so a 16-float step loads each row of W once for
   TB tokens and each token's X once for all R rows. The last step is a masked load, never a scalar
   tail, and there is no alignment peel: lane l sums k = l (mod 16) in order and the lanes are then
   added in one fixed tree, so the result does not depend on where X or W sit in memory (a BF16
   layer's float32 gate rows give the float32 layer's logits bit for bit at any phase).
   molora__ntn_c is its naive twin (one plain sum a product, the tests' reference); the portable
   table has no ntn (the seam runs nt there). */
MOLORA__PRIVATE void molora__ntn_c(int T, int N, int K, float alpha, const float *X, int ldx, const float *W,
                                   int ldw, float *Y, int ldy, int acc)
{
    int t, n, k;
    for (t = 0; t < T; t++)
        for (n = 0; n < N; n++) {
            float s = 0.0f, *y = Y + (size_t)t * ldy + n;
            for (k = 0; k < K; k++) s += X[(size_t)t * ldx + k] * W[(size_t)n * ldw + k];
            *y = (acc ? *y : 0.0f) + alpha * s;
        }
}

#ifdef MOLORA__X86
#define MOLORA__NTN_TB 3   /* AVX-512: tokens x rows held at once (27 of the 32 registers) */
#define MOLORA__NTN_RB 9
/* v in a register: else GCC folds the load of W's row into each of the TB FMAs (TB loads, not one) */
#define MOLORA__NTN_REG(v) __asm__("" : "+v"(v))
/* TB tokens x R rows, both constants after inlining; MLOAD(p, m) loads the lanes of mask m (the K
   tail: MASK(rem) builds it), FLUSH(acc_, ...) writes the TB x R sums */
#define MOLORA__NTN_ROWS(VEC, LANES, ZERO, LOAD, MASKT, MASK, MLOAD, FMA, FLUSH)                     \
    int t, k, r;                                                                                   \
    VEC acc_[MOLORA__NTN_RB][MOLORA__NTN_TB];                                                      \
    MOLORA__UNROLL for (r = 0; r < R; r++) MOLORA__UNROLL for (t = 0; t < TB; t++) acc_[r][t] = ZERO; \
    for (k = 0; k + LANES <= K; k += LANES) {                                                      \
        VEC x_[MOLORA__NTN_TB];                                                                    \
        MOLORA__UNROLL for (t = 0; t < TB; t++) x_[t] = LOAD(X + (size_t)t * ldx + k);             \
        MOLORA__UNROLL for (r = 0; r < R; r++) {                                                   \
            VEC v = LOAD(W + (size_t)r * ldw + k);                                                 \
            MOLORA__NTN_REG(v);                                                                    \
            MOLORA__UNROLL for (t = 0; t < TB; t++) acc_[r][t] = FMA(v, x_[t], acc_[r][t]);        \
        }                                                                                          \
    }                                                                                              \
    if (k < K) {                                                                                   \
        MASKT m_ = MASK(K - k);                                                                    \
        VEC x_[MOLORA__NTN_TB];                                                                    \
        MOLORA__UNROLL for (t = 0; t < TB; t++) x_[t] = MLOAD(X + (size_t)t * ldx + k, m_);        \
        MOLORA__UNROLL for (r = 0; r < R; r++) {                                                   \
            VEC v = MLOAD(W + (size_t)r * ldw + k, m_);                                            \
            MOLORA__UNROLL for (t = 0; t < TB; t++) acc_[r][t] = FMA(v, x_[t], acc_[r][t]);        \
        }                                                                                          \
    }                                                                                              \
    FLUSH(acc_, TB, R, alpha, Y, ldy, acc)

/* the lane sums of up to 16 vectors v[0..n-1] as one vector, lane i the sum of v[i] (zeros past n):
   pairs of lanes, then of pairs, then of 128-bit quarters (15 adds and 30 shuffles for 16 sums,
   where one horizontal sum each takes 4 adds and 4 shuffles) */
MOLORA__INLINE MOLORA__T512 __m512 molora__sum16(const int n, const __m512 *v)
{
    __m512 a[16], b[8], c[4], d[2];
    int i;
    MOLORA__UNROLL for (i = 0; i < 16; i++) a[i] = i < n ? v[i] : _mm512_setzero_ps();
    MOLORA__UNROLL for (i = 0; i < 8; i++)   /* quarter q: [v0 0+2, v1 0+2, v0 1+3, v1 1+3] */
        b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    MOLORA__UNROLL for (i = 0; i < 4; i++)   /* quarter q: the sums of quarter q of v0..v3 */
        c[i] = _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(b[2 * i]), _mm512_castps_pd(b[2 * i + 1]))),
            _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(b[2 * i]), _mm512_castps_pd(b[2 * i + 1]))));
    MOLORA__UNROLL for (i = 0; i < 2; i++)   /* [v0..3 q0+q1, v0..3 q2+q3, v4..7 q0+q1, v4..7 q2+q3] */
        d[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
}
/* AVX-512 flush: token t's R sums in one tree, stored as R lanes of Y's row (contiguous) */
#define MOLORA__NTN512_FLUSH(ACC, TB, R, ALPHA, Y, LDY, ACCUM)                                         \
    MOLORA__UNROLL for (t = 0; t < TB; t++) {                                                      \
        __m512 col_[MOLORA__NTN_RB], s_;                                                           \
        __mmask16 ym_ = (__mmask16)((1u << R) - 1u);                                               \
        float *y_ = Y + (size_t)t * LDY;                                                           \
        MOLORA__UNROLL for (r = 0; r < R; r++) col_[r] = ACC[r][t];                                \
        s_ = _mm512_mul_ps(_mm512_set1_ps(ALPHA), molora__sum16(R, col_));                         \
        if (ACCUM) s_ = _mm512_add_ps(_mm512_maskz_loadu_ps(ym_, y_), s_);                        \
        _mm512_mask_storeu_ps(y_, ym_, s_);                                                        \
    }
#define MOLORA__NTN512_MASK(rem) ((__mmask16)((1u << (rem)) - 1u))
#define MOLORA__NTN512_MLOAD(p, m) _mm512_maskz_loadu_ps((m), (p))
MOLORA__INLINE MOLORA__T512 void molora__ntn512_rows(const int TB, const int R, int K, float alpha, const float *X,
                                                     int ldx, const float *W, int ldw, float *Y, int ldy, int acc)
{
    MOLORA__NTN_ROWS(__m512, 16, _mm512_setzero_ps(), _mm512_loadu_ps, __mmask16, MOLORA__NTN512_MASK,
                     MOLORA__NTN512_MLOAD, _mm512_fmadd_ps, MOLORA__NTN512_FLUSH)
}
/* AVX2 flush: one horizontal sum per (token, row) */
#define MOLORA__NTN256_FLUSH(ACC, TB, R, ALPHA, Y, LDY, ACCUM)                                         \
    MOLORA__UNROLL for (t = 0; t < TB; t++) MOLORA__UNROLL for (r = 0; r < R; r++) {                \
        float *y_ = Y + (size_t)t * LDY + r;                                                       \
        *y_ = (ACCUM ? *y_ : 0.0f) + ALPHA * molora__hsum256(ACC[r][t]);                           \
    }
#define MOLORA__NTN256_MASK(rem) _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define MOLORA__NTN256_MLOAD(p, m) _mm256_maskload_ps((p), (m))
MOLORA__INLINE MOLORA__T256 void molora__ntn256_rows(const int TB, const int R, int K, float alpha, const float *X,
                                                     int ldx, const float *W, int ldw, float *Y, int ldy, int acc)
{
    MOLORA__NTN_ROWS(__m256, 8, _mm256_setzero_ps(), _mm256_loadu_ps, __m256i, MOLORA__NTN256_MASK,
                     MOLORA__NTN256_MLOAD, _mm256_fmadd_ps, MOLORA__NTN256_FLUSH)
}
/* TB tokens, all N rows: RB at a time, then the rest (R a constant in every case) */
#define MOLORA__NTN_TBODY(ROWS, RB)                                                                    \
    int n = 0;                                                                                     \
    for (; n + RB <= N; n += RB) ROWS(TB, RB, K, alpha, X, ldx, W + (size_t)n * ldw, ldw, Y + n, ldy, acc); \
    W += (size_t)n * ldw; Y += n;                                                                  \
    switch (N - n) {                                                                               \
    case 1: ROWS(TB, 1, K, alpha, X, ldx, W, ldw, Y, ldy, acc); break;                             \
    case 2: ROWS(TB, 2, K, alpha, X, ldx, W, ldw, Y, ldy, acc); break;                             \
    case 3: ROWS(TB, 3, K, alpha, X, ldx, W, ldw, Y, ldy, acc); break;                             \
    case 4: ROWS(TB, 4, K, alpha, X, ldx, W, ldw, Y, ldy, acc); break;                             \
    case 5: if (RB > 5) ROWS(TB, 5, K, alpha, X, ldx, W, ldw, Y, ldy, acc); break;                 \
    case 6: if (RB > 6) ROWS(TB, 6, K, alpha, X, ldx, W, ldw, Y, ldy, acc); break;                 \
    case 7: if (RB > 7) ROWS(TB, 7, K, alpha, X, ldx, W, ldw, Y, ldy, acc); break;                 \
    case 8: if (RB > 8) ROWS(TB, 8, K, alpha, X, ldx, W, ldw, Y, ldy, acc); break;                 \
    default: break;                                                                                \
    }
MOLORA__INLINE MOLORA__T512 void molora__ntn512_tb(const int TB, int N, int K, float alpha, const float *X, int ldx,
                                                   const float *W, int ldw, float *Y, int ldy, int acc)
{
    MOLORA__NTN_TBODY(molora__ntn512_rows, 9)
}
MOLORA__INLINE MOLORA__T256 void molora__ntn256_tb(const int TB, int N, int K, float alpha, const float *X, int ldx,
                                                   const float *W, int ldw, float *Y, int ldy, int acc)
{
    MOLORA__NTN_TBODY(molora__ntn256_rows, 5)
}
MOLORA__PRIVATE MOLORA__T512 void molora__ntn_avx512(int T, int N, int K, float alpha, const float *X, int ldx,
                                                     const float *W, int ldw, float *Y, int ldy, int acc)
{
    int t0 = 0;
    for (; t0 + 3 <= T; t0 += 3)
        molora__ntn512_tb(3, N, K, alpha, X + (size_t)t0 * ldx, ldx, W, ldw, Y + (size_t)t0 * ldy, ldy, acc);
    X += (size_t)t0 * ldx; Y += (size_t)t0 * ldy;
    if (T - t0 == 2) molora__ntn512_tb(2, N, K, alpha, X, ldx, W, ldw, Y, ldy, acc);
    if (T - t0 == 1) molora__ntn512_tb(1, N, K, alpha, X, ldx, W, ldw, Y, ldy, acc);
}
MOLORA__PRIVATE MOLORA__T256 void molora__ntn_avx2(int T, int N, int K, float alpha, const float *X, int ldx,
                                                   const float *W, int ldw, float *Y, int ldy, int acc)
{
    int t0 = 0;
    for (; t0 + 2 <= T; t0 += 2)
        molora__ntn256_tb(2, N, K, alpha, X + (size_t)t0 * ldx, ldx, W, ldw, Y + (size_t)t0 * ldy, ldy, acc);
    if (T - t0 == 1) molora__ntn256_tb(1, N, K, alpha, X + (size_t)t0 * ldx, ldx, W, ldw, Y + (size_t)t0 * ldy, ldy,
                                       acc);
}
#undef MOLORA__NTN_TBODY
#undef MOLORA__NTN256_MLOAD
#undef MOLORA__NTN256_MASK
#undef MOLORA__NTN256_FLUSH
#undef MOLORA__NTN512_MLOAD
#undef MOLORA__NTN512_MASK
#undef MOLORA__NTN512_FLUSH
#undef MOLORA__NTN_ROWS
#undef MOLORA__NTN_REG
#endif /* MOLORA__X86 */
/* <<narrow */

/* >>outer  gto, the gate as outer products: G (T, N) = X (T, K) GT for gates of many rows, any T */
/* gto: Y (T, N) = X (T, K) Wg (N, K)^T from the transpose GT of Wg packed at init
   (molora__pack_gate_t): strips of 64 columns (the last one's width rounded up to 16, zeros past
   row N), each strip K rows of its width. A register tile holds TB tokens x V vectors of 16 logits
   (6 x 4, 8 x 3, 12 x 2, 12 x 1; pairs and singles after) and takes, per k, V loads of GT's row k
   and one broadcast of x[t, k] per token: ntn reloads a row of W for every 3 tokens, gto a row of
   GT for every TB, and needs no lane sums. K runs in chunks of MOLORA__GTO_KC (GT's chunk stays in
   L2 for every token tile); the accumulators go through Y between chunks, which is exact. So each
   logit is one FMA chain over k = 0 .. K - 1 in order, whatever T, the tile or the chunk: the
   same bits as molora__gto_c (the tests' twin, fmaf in the same order). AVX-512 only; the other
   tables have none and keep ntn / BLAS. */
#define MOLORA__GTO_STRIP 64   /* columns of one strip of GT */
#define MOLORA__GTO_KC 256     /* k per chunk: a full strip's chunk is 64 KiB */
/* A gate of ng rows (n, n + 1 for AdaMoLE) runs its first ng & ~15 rows on gto (from 16 rows up)
   and the rest (up to 15) on ntn, also one token at a time: a strip of 16 columns costs gto as much
   whatever its rows, and ntn's row is cheap. Measured on Zen 4, one core, 512 tokens of d 4096 in
   cache (ms): 64 rows gto 2.42, ntn 4.08, sgemm 3.12; 65 rows gto 3.58 with the row in a strip of
   its own, 64 + 1 on ntn 0.13; 16 rows 0.83 / 0.96 / 1.01; 48 rows 1.92 / 3.40 / 1.65. */
#define MOLORA__GTO_MIN 16
MOLORA__PRIVATE int molora__gto_rows(int ng) { return ng & ~15; }
/* the width of strip s of an N-column GT: 64, the last one N's remainder rounded up to 16 */
MOLORA__PRIVATE int molora__gto_width(int N, int s)
{
    int left = N - s * MOLORA__GTO_STRIP;
    return left >= MOLORA__GTO_STRIP ? MOLORA__GTO_STRIP : (left + 15) & ~15;
}
/* the columns of GT: the strips' widths added */
MOLORA__PRIVATE size_t molora__gto_cols(int N)
{
    return (size_t)(N / MOLORA__GTO_STRIP) * MOLORA__GTO_STRIP + (size_t)((N % MOLORA__GTO_STRIP + 15) & ~15);
}
/* GT (K, molora__gto_cols(N)) as strips from W (N, K) */
MOLORA__PRIVATE void molora__pack_gate_t(int N, int K, const float *W, float *GT)
{
    int s, j, k;
    for (s = 0; s * MOLORA__GTO_STRIP < N; s++) {
        int ws = molora__gto_width(N, s), j0 = s * MOLORA__GTO_STRIP;
        float *S = GT + (size_t)K * j0;
        for (k = 0; k < K; k++)
            for (j = 0; j < ws; j++) S[(size_t)k * ws + j] = j0 + j < N ? W[(size_t)(j0 + j) * K + k] : 0.0f;
    }
}
/* the twin: logit (t, j) = fmaf over k in order from 0, reading GT as the kernel does */
MOLORA__PRIVATE void molora__gto_c(int T, int N, int K, const float *X, int ldx, const float *GT, float *Y, int ldy)
{
    int t, j, k;
    for (t = 0; t < T; t++)
        for (j = 0; j < N; j++) {
            int s = j / MOLORA__GTO_STRIP, ws = molora__gto_width(N, s);
            const float *g = GT + (size_t)K * s * MOLORA__GTO_STRIP + j % MOLORA__GTO_STRIP;
            float acc = 0.0f;
            for (k = 0; k < K; k++) acc = fmaf(X[(size_t)t * ldx + k], g[(size_t)k * ws], acc);
            Y[(size_t)t * ldy + j] = acc;
        }
}
#ifdef MOLORA__X86
/* TB tokens x V vectors of one strip (S: its row k0, width 16 V) over k0 .. k0 + kc - 1: the sums
   so far from Y (first: none), back to Y's first n columns (masked) */
MOLORA__INLINE MOLORA__T512 void molora__gto512_tile(const int TB, const int V, int n, int kc, int first,
                                                     const float *X, int ldx, const float *S, float *Y, int ldy)
{
    __m512 acc[12][4];
    __mmask16 m[4];
    int t, v, k;
    MOLORA__UNROLL for (v = 0; v < V; v++) {
        int left = n - 16 * v;
        m[v] = left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1u) : (__mmask16)0;
    }
    MOLORA__UNROLL for (t = 0; t < TB; t++) MOLORA__UNROLL for (v = 0; v < V; v++)
        acc[t][v] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m[v], Y + (size_t)t * ldy + 16 * v);
    for (k = 0; k < kc; k++) {
        __m512 g[4];
        MOLORA__UNROLL for (v = 0; v < V; v++) g[v] = _mm512_load_ps(S + (size_t)k * 16 * V + 16 * v);
        MOLORA__UNROLL for (t = 0; t < TB; t++) {
            __m512 x = _mm512_set1_ps(X[(size_t)t * ldx + k]);
            MOLORA__UNROLL for (v = 0; v < V; v++) acc[t][v] = _mm512_fmadd_ps(x, g[v], acc[t][v]);
        }
    }
    MOLORA__UNROLL for (t = 0; t < TB; t++) MOLORA__UNROLL for (v = 0; v < V; v++)
        _mm512_mask_storeu_ps(Y + (size_t)t * ldy + 16 * v, m[v], acc[t][v]);
}
/* all T tokens of one strip of V vectors over one chunk: tiles of TB, then pairs, then one */
MOLORA__INLINE MOLORA__T512 void molora__gto512_strip(const int TB, const int V, int T, int n, int kc, int first,
                                                      const float *X, int ldx, const float *S, float *Y, int ldy)
{
    int t = 0;
    for (; t + TB <= T; t += TB)
        molora__gto512_tile(TB, V, n, kc, first, X + (size_t)t * ldx, ldx, S, Y + (size_t)t * ldy, ldy);
    for (; t + 2 <= T; t += 2)
        molora__gto512_tile(2, V, n, kc, first, X + (size_t)t * ldx, ldx, S, Y + (size_t)t * ldy, ldy);
    if (t < T) molora__gto512_tile(1, V, n, kc, first, X + (size_t)t * ldx, ldx, S, Y + (size_t)t * ldy, ldy);
}
/* GT 64-byte aligned (the strips' rows then are too) */
MOLORA__PRIVATE MOLORA__T512 void molora__gto_avx512(int T, int N, int K, const float *X, int ldx, const float *GT,
                                                     float *Y, int ldy)
{
    int k0, s;
    for (k0 = 0; k0 < K; k0 += MOLORA__GTO_KC) {
        int kc = K - k0 < MOLORA__GTO_KC ? K - k0 : MOLORA__GTO_KC;
        for (s = 0; s * MOLORA__GTO_STRIP < N; s++) {
            int ws = molora__gto_width(N, s), j0 = s * MOLORA__GTO_STRIP, n = N - j0;
            const float *S = GT + (size_t)K * j0 + (size_t)k0 * ws;
            const float *x = X + k0;
            float *y = Y + j0;
            switch (ws / 16) {
            case 4: molora__gto512_strip(6, 4, T, n, kc, k0 == 0, x, ldx, S, y, ldy); break;
            case 3: molora__gto512_strip(8, 3, T, n, kc, k0 == 0, x, ldx, S, y, ldy); break;
            case 2: molora__gto512_strip(12, 2, T, n, kc, k0 == 0, x, ldx, S, y, ldy); break;
            default: molora__gto512_strip(12, 1, T, n, kc, k0 == 0, x, ldx, S, y, ldy); break;
            }
        }
    }
}
#endif /* MOLORA__X86 */
/* <<outer */

/* >>vexp  exp of a vector for the routing's softmax: libm's expf, or 16 lanes at once (AVX-512) */
/* v[i] = exp(v[i]) for i < n, used on v <= 0 (the softmax's shifted logits) but right for every
   float: NaN stays NaN, -inf and anything below about -103.97 gives +0. The portable table runs
   libm's expf; the AVX-512 one is expf's argument reduction x = k ln 2 + r (ln 2 in two parts,
   |r| <= ln 2 / 2), Cephes' degree-7 polynomial for exp(r) by FMA, and vscalefps for 2^k (one
   rounding, into the subnormals too). Measured over every float in [-104, 0] (1.12e9 of them)
   against exp in double rounded to float: at most 1 ulp apart; exp(0) = 1 and exp(-inf) = 0
   exactly, as the tie tests need (equal logits share exactly). */
MOLORA__PRIVATE void molora__exps_c(float *v, int n)
{
    int i;
    for (i = 0; i < n; i++) v[i] = expf(v[i]);
}
#ifdef MOLORA__X86
MOLORA__INLINE MOLORA__T512 __m512 molora__exp512(__m512 x)
{
    /* below -104 (and -inf) exp rounds to +0: such lanes (and NaN's) compute exp(0) and take +0 (x)
       after, as producing a subnormal through vscalefps costs a microcode assist on Intel's cores
       (a top-2 of 8 routing's softmax spent a sixth of its time there) */
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __mmask16 zero = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-104.0f), _CMP_LT_OQ);
    __m512 xc = _mm512_mask_mov_ps(_mm512_min_ps(x, _mm512_set1_ps(89.0f)), nan | zero, _mm512_setzero_ps());
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693145751953125f), xc);   /* ln 2's top bits: k ln2hi exact */
    __m512 p = _mm512_set1_ps(1.9875691500E-4f), y;
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.428606765330187045e-06f), r);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));   /* 1 + r + r^2 p(r) */
    return _mm512_mask_mov_ps(_mm512_mask_blend_ps(nan, _mm512_scalef_ps(y, k), x), zero, _mm512_setzero_ps());
}
MOLORA__PRIVATE MOLORA__T512 void molora__exps_avx512(float *v, int n)
{
    int i;
    for (i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1u);
        _mm512_mask_storeu_ps(v + i, m, molora__exp512(_mm512_maskz_loadu_ps(m, v + i)));
    }
}
#endif /* MOLORA__X86 */
/* <<vexp */

/* The kernels for this CPU, chosen once (a benign race: every thread stores the same value). */
MOLORA__PRIVATE const molora__kernels *molora__get_kernels(void)
{
    static const molora__kernels portable = {molora__nt_c, molora__nn_c, molora__dots_c, molora__axpys_c, NULL,
                                             molora__all_finite_c, "portable", molora__ntg_c,
                                             molora__nng_c, molora__widen_c, NULL, NULL, molora__gvt_c,
                                             molora__gvn_c, 0, NULL, molora__exps_c, MOLORA__BY_TOKEN_RATIO,
                                             MOLORA__BY_EXPERT_RATIO, MOLORA__BY_TOKEN_RANK, NULL, 0, 2};
#ifdef MOLORA__X86
    static const molora__kernels avx2 = {molora__nt_avx2, molora__nn_avx2, molora__dots_c, molora__axpys_c, NULL,
                                         molora__all_finite_c, "avx2", molora__ntg_c, molora__nng_c,
                                         molora__widen_c, NULL, NULL, molora__gvt_avx2, molora__gvn_avx2, 0,
                                         molora__ntn_avx2, molora__exps_c, MOLORA__BY_TOKEN_RATIO,
                                         MOLORA__BY_EXPERT_RATIO, MOLORA__BY_TOKEN_RANK, NULL, 0, 2};
/* the AVX-512 table; its streaming kernel ntp prefetches W by vendor (MOLORA__PREFETCH), and
   AMD's Zen 4 runs the by-token order's gathered kernels at about half Intel's cost per pair
   against OpenBLAS (S6, 64 rank-1 experts: top-12 at T = 64 by token 1.14 ms, dense 1.64-1.71;
   S3, 16 of rank 16: top-4 at T = 64 2.3-2.9 against 3.8-4.0), so it switches at 1 in 3; its
   by-expert order too (S1, top-2 of 8 rank-8 experts, 1 in 4: T = 64 0.49-0.52 ms against dense
   1.15, T = 512 4.8-4.9 against 7.3-7.5, T = 8 0.14 against 0.20-0.22) */
#define MOLORA__AVX512_TABLE(NAME, NTP, GVT, NTG, NNG, RATIO, ERATIO, TRANK, OWN_T, OWN_FROM)        \
    {molora__nt_avx512, molora__nn_avx512, molora__dots_avx512, molora__axpys_avx512, NTP,                    \
     molora__all_finite_avx512, NAME, NTG, NNG, molora__widen_avx512,                                       \
     molora__nt16_avx512, molora__nn16_avx512, GVT, molora__gvn_avx512, 1, molora__ntn_avx512,             \
     molora__exps_avx512, RATIO, ERATIO, TRANK, molora__gto_avx512, OWN_T, OWN_FROM}
    static const molora__kernels avx512 =
        MOLORA__AVX512_TABLE("avx512", molora__ntp_avx512, molora__gvt_avx512, molora__ntg_avx512,
                             molora__nng_avx512, MOLORA__BY_TOKEN_RATIO, MOLORA__BY_EXPERT_RATIO,
                             MOLORA__BY_TOKEN_RANK, MOLORA__OWN_T_INTEL, MOLORA__OWN_FROM_INTEL);
    static const molora__kernels avx512_amd =
        MOLORA__AVX512_TABLE("avx512-amd", molora__ntp_avx512_l2, molora__gvt_avx512, molora__ntg_avx512_l2,
                             molora__nng_avx512_l2, 3, 3, 2, MOLORA__OWN_T_AMD, 2);
#undef MOLORA__AVX512_TABLE
    static const molora__kernels *chosen = NULL;
    const molora__kernels *k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (k) return k;
    {
        const char *env = getenv("MOLORA_PORTABLE");
        __builtin_cpu_init();
        if (env && env[0] && env[0] != '0') k = &portable;
        else if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            k = __builtin_cpu_is("amd") ? &avx512_amd : &avx512;
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
MOLORA__PRIVATE int molora__finite_typed(const void *p, molora_type t, size_t n)
{
    if (t == MOLORA_TYPE_F16) return molora__finite16(p, n, 0x7c00u);
    if (t == MOLORA_TYPE_BF16) return molora__finite16(p, n, 0x7f80u);
    return molora__all_finite((const float *)p, n);   /* unaligned-safe: memcpy / loadu */
}

#ifdef MOLORA_TEST_HOOKS   /* defined by the tests' implementation unit only */
/* pseudo-random floats in [-1, 1) for molora__kernel_check (xorshift32) */
MOLORA__PRIVATE void molora__check_fill(float *v, size_t n, uint32_t *s)
{
    size_t i;
    for (i = 0; i < n; i++) {
        *s ^= *s << 13; *s ^= *s >> 17; *s ^= *s << 5;
        v[i] = (float)(*s >> 8) / 8388608.0f - 1.0f;
    }
}

/* molora__kernel_check's grouped kernels (ntg 5, nng 6): row t of X (H) and Y through pointer T - 1 - t;
   on x86 the other vendor's AVX-512 one as well, which must give the table's bits */
MOLORA__PRIVATE void molora__check_grouped(const molora__kernels *kr, int kernel, int T, int N, int K, const float *X,
                                           const float *W, float *Y1, float *Y2, int acc)
{
    const float *xp[16] = {0};
    float *y1p[16] = {0}, *y2p[16] = {0}, *y3p[16] = {0}, *Y3 = NULL;
    size_t ny = (size_t)T * N;
    int t;
#ifdef MOLORA__X86   /* the other vendor's AVX-512 ntg / nng too (they differ in the prefetch alone) */
    if ((kr->ntg == molora__ntg_avx512 || kr->ntg == molora__ntg_avx512_l2) &&
        (Y3 = (float *)malloc((ny + 1) * sizeof *Y3)) != NULL)
        memcpy(Y3, Y1, ny * sizeof *Y3);
#endif
    for (t = 0; t < T; t++) {
        xp[T - 1 - t] = X + (size_t)t * K; y1p[T - 1 - t] = Y1 + (size_t)t * N; y2p[T - 1 - t] = Y2 + (size_t)t * N;
        y3p[T - 1 - t] = Y3 ? Y3 + (size_t)t * N : NULL;
    }
    if (kernel == 5) {
        kr->ntg(T, N, K, xp, W, K, y1p, acc);
        molora__ntg_c(T, N, K, xp, W, K, y2p, acc);
    } else {
        kr->nng(T, N, K, xp, W, N, y1p);
        molora__nng_c(T, N, K, xp, W, N, y2p);
    }
#ifdef MOLORA__X86
    if (Y3 && kernel == 5)
        (kr->ntg == molora__ntg_avx512 ? molora__ntg_avx512_l2 : molora__ntg_avx512)(T, N, K, xp, W, K, y3p, acc);
    if (Y3 && kernel == 6)
        (kr->nng == molora__nng_avx512 ? molora__nng_avx512_l2 : molora__nng_avx512)(T, N, K, xp, W, N, y3p);
    if (Y3 && memcmp(Y3, Y1, ny * sizeof *Y3)) Y1[0] = NAN;   /* not bitwise the table's: the check fails */
#endif
    free(Y3);
}

/* molora__kernel_check's BF16 kernels (nt16 8, nn16 9): W rounded to BF16 in place first, so the
   magnitudes the check divides by are those of the values the kernels read */
MOLORA__PRIVATE void molora__check_bf16(const molora__kernels *kr, int kernel, int T, int N, int K, const float *X,
                                        float *W, float *Y1, float *Y2)
{
    size_t i, nw = (size_t)N * K;
    uint16_t *W16 = (uint16_t *)malloc(nw * sizeof *W16 + 1);
    if (!W16) return;
    for (i = 0; i < nw; i++) {
        uint32_t u;
        memcpy(&u, &W[i], 4);
        W16[i] = molora__bf16_round(u);
        W[i] = molora__bf(W16[i]);
    }
    if (kernel == 8) {
        kr->nt16(T, N, K, X, K, W16, K, Y1, N);
        molora__nt16_c(T, N, K, X, K, W16, K, Y2, N);
    } else {   /* Y (T, N) += X (T, K) B (K, N) */
        kr->nn16(T, N, K, X, K, W16, N, Y1, N);
        molora__nn16_c(T, N, K, X, K, W16, N, Y2, N);
    }
    free(W16);
}

/* molora__kernel_check's widening (7): n random BF16 values (every bit pattern) widened by both;
   0 when the float32 bits agree, 1e30 when not */
MOLORA__PRIVATE double molora__check_widen(const molora__kernels *kr, size_t n, int q)
{
    uint16_t *h = (uint16_t *)malloc((n + 16) * sizeof *h);
    float *a = (float *)malloc(n * sizeof *a), *b = (float *)malloc(n * sizeof *b);
    uint32_t s = 2463534242u;
    size_t i;
    double r;
    if (!h || !a || !b) { free(h); free(a); free(b); return -2.0; }
    for (i = 0; i < n + 16; i++) { s ^= s << 13; s ^= s >> 17; s ^= s << 5; h[i] = (uint16_t)(s >> 9); }
    kr->widen(h + q, n, a);
    molora__widen_c(h + q, n, b);
    r = n && memcmp(a, b, n * sizeof *a) != 0 ? 1e30 : 0.0;
    free(h); free(a); free(b);
    return r;
}

/* molora__kernel_check's single-row kernels (gvt 10, gvn 11; their AVX2 versions 12, 13 on any AVX2
   CPU) against nt_c / nn_c at T = 1: W (N, K) for gvt (nt), (K, N) for gvn, at 64-byte phase q, its
   rows pad floats longer than they are wide; x at phase (16 - q) % 16 (both aligned at q = 0, both
   off it otherwise); without acc y starts as NaN, which must not be read. Returns the check's
   measure, as below. */
MOLORA__PRIVATE double molora__check_gemv(molora__gv_fn gv, int nt, int N, int K, int q, int acc, int pad)
{
    int rows = nt ? N : K, ldw = (nt ? K : N) + pad, n, k;
    size_t nw = (size_t)rows * ldw;
    float *buf = (float *)malloc((nw + (size_t)K + 2 * (size_t)N + 64) * sizeof(float)), *W, *x, *y1, *y2;
    uint32_t s = 2463534242u;
    double worst = 0.0;
    if (!buf) return -2.0;
    W = (float *)molora__align_up(buf) + q;
    x = (float *)molora__align_up(W + nw) + (16 - q) % 16;
    y1 = x + K; y2 = y1 + N;
    molora__check_fill(W, nw, &s); molora__check_fill(x, (size_t)K, &s); molora__check_fill(y2, (size_t)N, &s);
    for (n = 0; n < N; n++) {
        if (!acc) y2[n] = 0.0f;
        y1[n] = acc ? y2[n] : NAN;
    }
    gv(N, K, x, W, ldw, y1, acc);
    if (nt) molora__nt_c(1, N, K, 1.0f, x, K, W, ldw, y2, N, 1);
    else molora__nn_c(1, N, K, x, K, W, ldw, y2, N);
    for (n = 0; n < N; n++) {
        double mag = acc ? fabs((double)y2[n]) : 0.0, e;
        for (k = 0; k < K; k++)
            mag += fabs((double)x[k] * (nt ? W[(size_t)n * ldw + k] : W[(size_t)k * ldw + n]));
        e = fabs((double)y1[n] - y2[n]) / (mag + 1e-30);
        if (!(e <= worst)) worst = e == e ? e : 1e30;
    }
    free(buf);
    return worst;
}

/* kernel 10..13 of molora__kernel_check: the table's gvt / gvn, or the AVX2 ones (NULL: none here) */
MOLORA__PRIVATE molora__gv_fn molora__check_gv_kernel(const molora__kernels *kr, int kernel)
{
    if (kernel < 12) return kernel == 10 ? kr->gvt : kernel == 11 ? kr->gvn : NULL;
#ifdef MOLORA__X86
    if (kernel <= 13 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return kernel == 12 ? molora__gvt_avx2 : molora__gvn_avx2;
#endif
    return NULL;
}
/* kernel 0 / 16 of molora__kernel_check: the table's ntp, or the other vendor's AVX-512 ntp */
MOLORA__PRIVATE molora__ntp_fn molora__check_ntp_kernel(const molora__kernels *kr, int kernel)
{
    if (kernel == 0) return kr->ntp;
#ifdef MOLORA__X86
    if (kr->ntp == molora__ntp_avx512) return molora__ntp_avx512_l2;
    if (kr->ntp == molora__ntp_avx512_l2) return molora__ntp_avx512;
#endif
    return NULL;
}

/* molora__kernel_check's narrow kernel (14): ntn against its twin, X's rows at a stride of K + q
   (so rows start at every phase), W at phase q; on x86 the AVX2 ntn as well when the CPU runs
   AVX-512 (that table is not chosen here): Y1 gets the worse of the two */
MOLORA__PRIVATE void molora__check_narrow(const molora__kernels *kr, int T, int N, int K, int q, const float *X,
                                          const float *W, float *Y1, float *Y2, int acc)
{
    int ldx = K + q, t;
    size_t ny = (size_t)T * N, i;
    float *Xs = (float *)malloc(((size_t)T * ldx + 1) * sizeof *Xs), *Y3 = (float *)malloc((ny + 1) * sizeof *Y3);
    if (!Xs || !Y3) { free(Xs); free(Y3); return; }
    for (t = 0; t < T; t++) memcpy(Xs + (size_t)t * ldx, X + (size_t)t * K, (size_t)K * sizeof *Xs);
    memcpy(Y3, Y1, ny * sizeof *Y3);
    kr->ntn(T, N, K, 0.5f, Xs, ldx, W, K, Y1, N, acc);
    molora__ntn_c(T, N, K, 0.5f, Xs, ldx, W, K, Y2, N, acc);
#ifdef MOLORA__X86
    if (kr->ntn != molora__ntn_avx2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        molora__ntn_avx2(T, N, K, 0.5f, Xs, ldx, W, K, Y3, N, acc);
        for (i = 0; i < ny; i++)
            if (!(fabsf(Y3[i] - Y2[i]) <= fabsf(Y1[i] - Y2[i]))) Y1[i] = Y3[i];
    }
#endif
    (void)i;
    free(Xs); free(Y3);
}

/* molora__kernel_check's outer kernel (17): gto against its twin on W packed as GT (64-byte
   aligned), X's rows at a stride of K + q */
MOLORA__PRIVATE void molora__check_outer(const molora__kernels *kr, int T, int N, int K, int q, const float *X,
                                         const float *W, float *Y1, float *Y2)
{
    int ldx = K + q, t;
    size_t ngt = molora__gto_cols(N) * (size_t)K;
    float *Xs = (float *)malloc(((size_t)T * ldx + 1) * sizeof *Xs), *buf = (float *)malloc((ngt + 16) * sizeof *buf);
    float *GT = buf ? (float *)molora__align_up(buf) : NULL;
    if (!Xs || !buf) { free(Xs); free(buf); return; }
    for (t = 0; t < T; t++) memcpy(Xs + (size_t)t * ldx, X + (size_t)t * K, (size_t)K * sizeof *Xs);
    molora__pack_gate_t(N, K, W, GT);
    kr->gto(T, N, K, Xs, ldx, GT, Y1, N);
    molora__gto_c(T, N, K, Xs, ldx, GT, Y2, N);
    free(Xs); free(buf);
}

/* Test hook, not public API: the kernels' exps on every step-th float from lo down in magnitude to
   hi (lo <= hi <= -0), then on special values; returns the largest distance in ulps from exp in
   double rounded to float, or 1e30 when a special value is wrong (exp(+-0) = 1, exp(-inf) = 0,
   exp(NaN) NaN, 0 below -103.98, inf above 88.73). Allocates nothing; the library never calls it. */
MOLORA_API double molora__exps_check(float lo, float hi, uint32_t step)
{
    /* exact cases; -104.00001f: the first float below the AVX-512 exps' cut to +0 */
    static const float sp[] = {0.0f, -0.0f, -INFINITY, -1000.0f, -103.98f, 89.0f, INFINITY, NAN,
                               -104.00001f};
    float v[64], r[64];
    uint32_t u, end;
    double worst = 0.0;
    int i, m = 0;
    memcpy(&u, &lo, 4); memcpy(&end, &hi, 4);
    for (i = 0; i < 9; i++) v[i] = sp[i];
    molora__get_kernels()->exps(v, 9);
    if (v[0] != 1.0f || v[1] != 1.0f || v[2] != 0.0f || v[3] != 0.0f || v[4] != 0.0f || !isinf(v[5]) ||
        !isinf(v[6]) || v[7] == v[7] || v[8] != 0.0f || signbit(v[2]) || signbit(v[8]) || u < 0x80000000u ||
        end < 0x80000000u || u < end)
        return 1e30;
    for (;; u = u - end > step ? u - step : end) {   /* negative floats: smaller bits, smaller magnitude */
        memcpy(&v[m], &u, 4); r[m] = v[m]; m++;
        if (m == 64 || u == end) {
            molora__get_kernels()->exps(v, m);
            for (i = 0; i < m; i++) {
                float want = (float)exp((double)r[i]);
                int32_t a, b;
                double d;
                memcpy(&a, &v[i], 4); memcpy(&b, &want, 4);
                d = fabs((double)a - (double)b);   /* both >= 0: ulps apart */
                if (!(d <= worst)) worst = d == d ? d : 1e30;
            }
            m = 0;
        }
        if (u == end) break;
    }
    return worst;
}

/* molora__kernel_check: whether this CPU has a fast kernel number `kernel` to check at T rows */
MOLORA__PRIVATE int molora__check_has(const molora__kernels *kr, int kernel, int T)
{
    if (kernel < 0 || kernel > 17 || (T > 16 && kernel != 14 && kernel != 17)) return 0;
    switch (kernel) {
    case 0: case 16: return molora__check_ntp_kernel(kr, kernel) != NULL;
    case 1: case 2: return kr->nt != molora__nt_c;
    case 3: return kr->dots != molora__dots_c;
    case 4: return kr->axpys != molora__axpys_c;
    case 5: return kr->ntg != molora__ntg_c;
    case 6: return kr->nng != molora__nng_c;
    case 7: return kr->widen != molora__widen_c;
    case 8: case 9: return kr->nt16 != NULL;
    case 14: return kr->ntn != NULL;
    case 17: return kr->gto != NULL;
    default: return molora__check_gv_kernel(kr, kernel) != NULL;   /* 10..13 */
    }
}

/* Test hook, not public API (a test declares it itself): runs this CPU's fast kernel (0 ntp,
   1 nt, 2 nn, 3 dots, 4 axpys, 5 ntg, 6 nng, 7 BF16 widening of N * K values from element q of
   a random buffer, 8 nt16, 9 nn16: nt / nn with W rounded to BF16, 10 gvt, 11 gvn, 12 / 13 their
   AVX2 versions: the single-row kernels, N x K, rows T - 1 floats of padding, see
   molora__check_gemv; 14 ntn: nt at any T, X's rows at every phase; 15 none (the other vendor's
   gvt until both tables ran one); 16 the AVX-512 ntp of the other vendor's table, as 0; 17 gto:
   nt at any T, alpha 1, no acc, bitwise its twin (0 when equal)) and its naive twin on one shape,
   W (B for nn) at
   64-byte phase q (0..15). dots: the N rows of W dotted with X's first row; axpys: y (N) += X's
   first row (K coefficients) times the K rows of W read as (K, N); both use T = 1. ntg / nng:
   nt / nn with X's (H's) and Y's rows passed as pointers, in reverse order.
   Returns max |fast - twin| / (sum_k |x_k w_k| + |y|) over Y, -1 when the CPU has no fast
   kernel of that kind, -2 when out of memory. Allocates; the library never calls it. */
MOLORA_API double molora__kernel_check(int kernel, int T, int N, int K, int q, int acc)
{
    const molora__kernels *kr = molora__get_kernels();
    size_t np = (molora__pack_floats(T, K) + 15) & ~(size_t)15, nx = (size_t)T * K, nw = (size_t)N * K;
    size_t ny = (size_t)T * N, nxw = (nx + 15) & ~(size_t)15;
    float *buf, *P, *X, *W, *Y1, *Y2;
    const float **rows;
    double worst = 0.0;
    uint32_t s = 2463534242u;
    int t, n, k, gather = kernel == 3 || kernel == 4, kn = kernel == 2 || kernel == 4 || kernel == 6 || kernel == 9;
    if (!molora__check_has(kr, kernel, T)) return -1.0;
    if (kernel >= 10 && kernel <= 13)
        return molora__check_gemv(molora__check_gv_kernel(kr, kernel), kernel % 2 == 0, N, K, q, acc, T - 1);
    if (kernel == 7) return molora__check_widen(kr, (size_t)N * (size_t)K, q);
    if (gather) { T = 1; nx = (size_t)K; ny = (size_t)N; }
    buf = (float *)malloc((np + nxw + 16 + nw + 2 * ny + 16) * sizeof(float));
    rows = (const float **)malloc(((size_t)N + (size_t)K + 1) * sizeof *rows);
    if (!buf || !rows) { free(buf); free(rows); return -2.0; }
    P = (float *)molora__align_up(buf);
    X = P + np; W = X + nxw + q; Y1 = W + nw; Y2 = Y1 + ny;
    molora__check_fill(X, nx, &s); molora__check_fill(W, nw, &s); molora__check_fill(Y1, ny, &s);
    memcpy(Y2, Y1, ny * sizeof(float));
    if (kernel == 0 || kernel == 16) {
        molora__pack_x(X, K, T, K, q, P);
        molora__check_ntp_kernel(kr, kernel)(T, N, K, q, 0.5f, P, W, K, Y1, N, acc);
        molora__ntp_c(T, N, K, q, 0.5f, P, W, K, Y2, N, acc);
    } else if (kernel == 1) {
        kr->nt(T, N, K, 0.5f, X, K, W, K, Y1, N, acc);
        molora__nt_c(T, N, K, 0.5f, X, K, W, K, Y2, N, acc);
    } else if (kernel == 2) {   /* Y (T, N) += X (T, K) B (K, N), B = W */
        kr->nn(T, N, K, X, K, W, N, Y1, N);
        molora__nn_c(T, N, K, X, K, W, N, Y2, N);
    } else if (kernel == 8 || kernel == 9) {
        molora__check_bf16(kr, kernel, T, N, K, X, W, Y1, Y2);
    } else if (kernel == 14) {
        molora__check_narrow(kr, T, N, K, q, X, W, Y1, Y2, acc);
    } else if (kernel == 17) {
        molora__check_outer(kr, T, N, K, q, X, W, Y1, Y2);
    } else if (kernel == 5 || kernel == 6) {
        molora__check_grouped(kr, kernel, T, N, K, X, W, Y1, Y2, acc);
    } else if (kernel == 3) {   /* Y (N) = W (N, K) x */
        for (n = 0; n < N; n++) rows[n] = W + (size_t)n * K;
        kr->dots(N, rows, X, K, Y1);
        molora__dots_c(N, rows, X, K, Y2);
    } else {                    /* Y (N) += sum_k x_k W[k, :] */
        for (k = 0; k < K; k++) rows[k] = W + (size_t)k * N;
        kr->axpys(K, rows, X, Y1, N);
        molora__axpys_c(K, rows, X, Y2, N);
    }
    for (t = 0; t < T; t++)
        for (n = 0; n < N; n++) {
            double mag = fabs((double)Y2[(size_t)t * N + n]), e;
            for (k = 0; k < K; k++)
                mag += fabs((double)X[(size_t)t * K + k] * (kn ? W[(size_t)k * N + n] : W[(size_t)n * K + k]));
            e = fabs((double)Y1[(size_t)t * N + n] - Y2[(size_t)t * N + n]) / (mag + 1e-30);
            if (!(e <= worst)) worst = e == e ? e : 1e30;
        }
    free(buf);
    free(rows);
    return worst;
}
/* Test hooks: the by-token and by-expert switches of this CPU's table (molora__choose_path) */
MOLORA_API int molora__by_token_ratio(void) { return molora__get_kernels()->by_token_ratio; }
MOLORA_API int molora__by_expert_ratio(void) { return molora__get_kernels()->by_expert_ratio; }
MOLORA_API int molora__by_token_rank(void) { return molora__get_kernels()->by_token_rank; }
/* Test hook: the fewest gate rows that get gto's GT on this CPU (0: its table has no gto) */
MOLORA_API int molora__gto_min(void) { return molora__get_kernels()->gto ? MOLORA__GTO_MIN : 0; }
/* Test hook: the table's own_t (molora__dense_own, molora__nt_own), 0: never */
MOLORA_API int molora__own_t(void) { return molora__get_kernels()->own_t; }
#endif /* MOLORA_TEST_HOOKS */

/* <<kernels */

/* >>seam  the one place that picks the kernel of every product, and the only BLAS calls ------- */
/* Every product of the forward pass and of merge has one of two row-major forms:
     nt: C (M, N) = A (M, K) B (N, K)^T (+ C)   X W0^T, X A^T, gate logits, MoLE logits
     nn: C (M, N) = A (M, K) B (K, N)   (+ C)   H B^T, X W0 for W0 stored (d_in, d_out), MoLE deltas
   molora__pick chooses the kernel from the rows M and what the product allows; molora__product
   runs it, and holds the only BLAS calls of the forward pass:
     M = 1, sgemv allowed       molora's gvt / gvn (>>gemv) where the CPU's table says they beat
                                BLAS sgemv (gv_own: the AVX-512 table) and without BLAS, else BLAS
                                sgemv: decode streams each matrix once (sgemm does not for one
                                row); allowed for the frozen layer and the dense experts, while
                                the gate and MoLE products keep the rules below at T = 1 too
     narrow nt (the gate rows)  molora's ntn kernel (nt where the CPU has none) at every M: too few
                                rows for BLAS to pay off, and ntn holds all of them for 3 tokens
     X packed (nt only)         molora's ntp kernel: small batches on kernels that have it
     M <= MOLORA__SMALL_T       molora's nt / nn kernels: W streamed once for every row of X, where
                                BLAS sgemm packs its operands first and that dominates few rows;
                                nn only up to MOLORA__NN_T rows, beyond which sgemm's packed
                                micro-kernel is faster (below)
     M > MOLORA__SMALL_T        BLAS sgemm (K > 0); without BLAS, the own kernels 16 rows at a time
   The grouped sparse path calls its kernels (ntg, nng; dots, axpys) directly, from >>forward, and
   so do, up to the CPU table's own_t rows, the frozen layer and the dense experts (X W0^T and
   X A^T from 17 rows on ntg, molora__nt_own; H B^T from the table's own_from rows on nng,
   molora__dense_own). */
#define MOLORA__SMALL_T 16   /* rows up to which molora's own kernels run instead of BLAS sgemm */
/* rows up to which the nn form runs molora's nn. Measured on Zen 4 from DRAM (K 256, N 4096): at 8
   rows nn 0.37-0.45 ms, sgemm 0.36-0.46; at 16 rows nn 0.73-0.76, sgemm 0.50-0.58; for W0 stored
   (4096, 4096) at 16 rows nn 14.1 ms, sgemm 8.2 */
#define MOLORA__NN_T 8

typedef enum molora__kernel {
    MOLORA__KERNEL_OWN = 0,  /* molora's nt / nn kernels, MOLORA__SMALL_T rows per call        */
    MOLORA__KERNEL_OWN_ALL,  /* molora's narrow ntn (else nt) kernel over all M rows in one call */
    MOLORA__KERNEL_PACKED,   /* molora's ntp kernel over X packed by molora__pack_x              */
    MOLORA__KERNEL_GEMV,     /* BLAS sgemv (M = 1)                                               */
    MOLORA__KERNEL_GEMM,     /* BLAS sgemm                                                       */
    MOLORA__KERNEL_OWN_GEMV  /* molora's gvt / gvn (M = 1)                                       */
} molora__kernel;

/* what a product allows besides the default kernels */
enum { MOLORA__ALLOW_GEMV = 1, MOLORA__ALLOW_NARROW = 2 };

/* X of a small batch, packed for the ntp kernel: p0 at phase 0, pw at phase qw (or NULL) */
typedef struct molora__xpack { int qw; const float *p0, *pw; } molora__xpack;

MOLORA__PRIVATE molora__kernel molora__pick(int transb, int M, int K, int allow, int packed)
{
    if (M == 1 && (allow & MOLORA__ALLOW_GEMV)) {
#ifndef MOLORA_NO_BLAS
        if (!molora__get_kernels()->gv_own) return MOLORA__KERNEL_GEMV;
#endif
        return MOLORA__KERNEL_OWN_GEMV;
    }
    if (transb && (allow & MOLORA__ALLOW_NARROW)) return MOLORA__KERNEL_OWN_ALL;   /* ntn beats ntp at T <= 16 too */
    if (transb && packed) return MOLORA__KERNEL_PACKED;
#ifndef MOLORA_NO_BLAS
    if ((M > MOLORA__SMALL_T || (!transb && M > MOLORA__NN_T)) && K > 0) return MOLORA__KERNEL_GEMM;
#endif
    (void)M; (void)K;
    return MOLORA__KERNEL_OWN;
}

/* C = A op(B) (+ C if acc) on kernel k. transb: B is (N, K) and op(B) = B^T, else B is (K, N).
   Without acc C is never read. xp: the packed A for MOLORA__KERNEL_PACKED (A itself unused). */
MOLORA__PRIVATE void molora__product(molora__kernel k, int transb, int M, int N, int K, const float *A, int lda,
                                     const float *B, int ldb, int acc, float *C, int ldc, const molora__xpack *xp)
{
    const molora__kernels *kr = molora__get_kernels();
    int m0, t;
    if (M <= 0 || N <= 0) return;
    switch (k) {
#ifndef MOLORA_NO_BLAS
    case MOLORA__KERNEL_GEMV:
        if (transb) cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, B, ldb, A, 1, acc ? 1.0f : 0.0f, C, 1);
        else cblas_sgemv(CblasRowMajor, CblasTrans, K, N, 1.0f, B, ldb, A, 1, acc ? 1.0f : 0.0f, C, 1);
        return;
    case MOLORA__KERNEL_GEMM:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, lda,
                    B, ldb, acc ? 1.0f : 0.0f, C, ldc);
        return;
#endif
    case MOLORA__KERNEL_PACKED: {
        int q = molora__phase(B);
        if (q != 0 && (q != xp->qw || !xp->pw)) q = 0;   /* no panel at B's phase: unaligned B loads */
        kr->ntp(M, N, K, q, 1.0f, q ? xp->pw : xp->p0, B, ldb, C, ldc, acc);
        return;
    }
    case MOLORA__KERNEL_OWN_ALL:   /* the narrow kernel where the CPU has one */
        (kr->ntn ? kr->ntn : kr->nt)(M, N, K, 1.0f, A, lda, B, ldb, C, ldc, acc);
        return;
    case MOLORA__KERNEL_OWN_GEMV:   /* M = 1 */
        (transb ? kr->gvt : kr->gvn)(N, K, A, B, ldb, C, acc);
        return;
    default:
        break;
    }
    for (m0 = 0; m0 < M; m0 += MOLORA__SMALL_T) {
        int mb = M - m0 < MOLORA__SMALL_T ? M - m0 : MOLORA__SMALL_T;
        const float *a = A + (size_t)m0 * lda;
        float *c = C + (size_t)m0 * ldc;
        if (transb) { kr->nt(mb, N, K, 1.0f, a, lda, B, ldb, c, ldc, acc); continue; }
        if (!acc) for (t = 0; t < mb; t++) memset(c + (size_t)t * ldc, 0, (size_t)N * sizeof *c);
        kr->nn(mb, N, K, a, lda, B, ldb, c, ldc);
    }
}

/* Y (T, N) = X W^T on ntg, without packing: W's rows in blocks of MOLORA__OWN_NB, d_in in tiles of
   MOLORA__OWN_KT, each tile's dots added to the last (W read once per MOLORA__OWN_MAX tokens, X
   once per block of rows, from cache). Per element the sum is the same whatever block of rows or
   of tokens it falls in, so every split of a call's columns or tokens gives the same bits. */
#define MOLORA__OWN_NB 64
#define MOLORA__OWN_KT 1024
/* 1 when a product X W^T of T rows runs on molora__nt_own: beyond MOLORA__SMALL_T up to own_t */
MOLORA__PRIVATE int molora__own_nt(int T) { return T > MOLORA__SMALL_T && T <= molora__get_kernels()->own_t; }
MOLORA__PRIVATE void molora__nt_own(int T, int N, int K, const float *X, int ldx, const float *W, int ldw, float *Y,
                                    int ldy)
{
    const float *xp[MOLORA__OWN_MAX];
    float *yp[MOLORA__OWN_MAX];
    int t, n0, k0;
    for (; T > MOLORA__OWN_MAX; T -= MOLORA__OWN_MAX) {   /* in chunks of MOLORA__OWN_MAX tokens */
        molora__nt_own(MOLORA__OWN_MAX, N, K, X, ldx, W, ldw, Y, ldy);
        X += (size_t)MOLORA__OWN_MAX * ldx; Y += (size_t)MOLORA__OWN_MAX * ldy;
    }
    for (n0 = 0; n0 < N; n0 += MOLORA__OWN_NB) {
        int nb = N - n0 < MOLORA__OWN_NB ? N - n0 : MOLORA__OWN_NB;
        for (t = 0; t < T; t++) yp[t] = Y + (size_t)t * ldy + n0;
        for (k0 = 0; k0 < K; k0 += MOLORA__OWN_KT) {
            for (t = 0; t < T; t++) xp[t] = X + (size_t)t * ldx + k0;
            molora__get_kernels()->ntg(T, nb, K - k0 < MOLORA__OWN_KT ? K - k0 : MOLORA__OWN_KT, xp,
                                       W + (size_t)n0 * ldw + k0, ldw, yp, k0 > 0);
        }
    }
}

#ifdef MOLORA_TEST_HOOKS
/* Test hook: molora__nt_own on T x K and N x K pseudo-random rows against float64 sums, beyond
   MOLORA__OWN_MAX tokens too (its chunks): the largest error over the sum of the |products| (-1:
   out of memory) */
MOLORA_API double molora__nt_own_check(int T, int N, int K)
{
    uint32_t seed = 12345u;
    float *X = (float *)malloc(sizeof(float) * T * K), *W = (float *)malloc(sizeof(float) * N * K);
    float *Y = (float *)malloc(sizeof(float) * T * N);
    double worst = -1.0;
    int t, n, k;
    if (X && W && Y) {
        molora__check_fill(X, (size_t)T * K, &seed);
        molora__check_fill(W, (size_t)N * K, &seed);
        molora__nt_own(T, N, K, X, K, W, K, Y, N);
        for (worst = 0.0, t = 0; t < T; t++)
            for (n = 0; n < N; n++) {
                double sum = 0.0, mag = 0.0, e;
                for (k = 0; k < K; k++) {
                    double p = (double)X[(size_t)t * K + k] * W[(size_t)n * K + k];
                    sum += p; mag += fabs(p);
                }
                e = fabs(Y[(size_t)t * N + n] - sum) / (mag > 0.0 ? mag : 1.0);
                if (e > worst) worst = e;
            }
    }
    free(X); free(W); free(Y);
    return worst;
}
#endif

/* C (M, N) = A B^T (+ C) for B (N, K), A a plain row-major matrix */
MOLORA__PRIVATE void molora__mul_abt(int M, int N, int K, const float *A, int lda, const float *B, int ldb, int acc,
                                     float *C, int ldc)
{
    molora__product(molora__pick(1, M, K, 0, 0), 1, M, N, K, A, lda, B, ldb, acc, C, ldc, NULL);
}
/* C (M, N) = A B (+ C) for B (K, N); allow: MOLORA__ALLOW_GEMV or 0 */
MOLORA__PRIVATE void molora__mul_ab(int allow, int M, int N, int K, const float *A, int lda, const float *B, int ldb,
                                    int acc, float *C, int ldc)
{
    molora__product(molora__pick(0, M, K, allow, 0), 0, M, N, K, A, lda, B, ldb, acc, C, ldc, NULL);
}

/* row stride of X copied row-major for the small-batch kernels */
MOLORA__PRIVATE size_t molora__xa_ld(int d_in) { return ((size_t)d_in + 15) & ~(size_t)15; }

/* A call's input X (T, K) as the kernels read it */
typedef struct molora__input {
    int T, K;
    const float *x;          /* the caller's X, row-major (T, K): what sgemv and gvt read        */
    const float *X;          /* X for the row-major kernels: x, or a copy at W0's 64-byte phase  */
    int ldx;
    molora__xpack xp;        /* packed panels for the ntp kernel, or p0 == NULL                  */
} molora__input;

/* Lays out X (T <= MOLORA__SMALL_T, xa: the workspace part for it) for the small-batch kernels:
   packed panels when the kernels have ntp (phase 0, and W0's phase qw when it differs), else
   X row-major at W0's 64-byte phase so the nt kernel's loads are aligned. w0: W0's first row of
   this call's columns when the frozen layer streams it as (d_out, d_in), else NULL. */
MOLORA__PRIVATE void molora__input_small(molora__input *in, const float *w0, float *xa)
{
    const molora__kernels *kr = molora__get_kernels();
    int T = in->T, K = in->K, t;
    if (kr->ntp) {
        size_t half = (molora__pack_floats(T, K) + 15) & ~(size_t)15;
        in->xp.p0 = xa;
        molora__pack_x(in->x, K, T, K, 0, xa);
        if (w0 && T > 1) {
            in->xp.qw = molora__phase(w0);
            if (in->xp.qw) { molora__pack_x(in->x, K, T, K, in->xp.qw, xa + half); in->xp.pw = xa + half; }
        }
    } else {
        size_t ldxa = molora__xa_ld(K), phase = 0;
        if (w0 && ((uintptr_t)w0 & 3) == 0 && K % 16 == 0) phase = ((uintptr_t)w0 & 63) / 4;
        for (t = 0; t < T; t++) memcpy(xa + phase + (size_t)t * ldxa, in->x + (size_t)t * K, (size_t)K * sizeof(float));
        in->X = xa + phase;
        in->ldx = (int)ldxa;
    }
}

/* Y (T, N) = X W^T (+ Y) for the call's input X and W (N, K); allow: MOLORA__ALLOW_* */
MOLORA__PRIVATE void molora__mul_xwt(const molora__input *in, int allow, int N, const float *W, int acc,
                                     float *Y, int ldy)
{
    molora__kernel k = molora__pick(1, in->T, in->K, allow, in->xp.p0 != NULL);
    const float *X = k == MOLORA__KERNEL_GEMV || k == MOLORA__KERNEL_OWN_GEMV ? in->x : in->X;
    molora__product(k, 1, in->T, N, in->K, X, in->ldx, W, in->K, acc, Y, ldy, &in->xp);
}

/* <<seam */

/* >>eigen  cyclic Jacobi for symmetric matrices, in double; ARROW's exact prototypes ----------- */
/* One Jacobi rotation in the (p, q) plane that zeroes A[p][q]: A = J^T A J, rows of V by J^T. */
MOLORA__PRIVATE void molora__jacobi_rotate(int n, double *A, double *V, int p, int q)
{
    double apq = A[(size_t)p * n + q], theta, t, c, s;
    int k;
    theta = (A[(size_t)q * n + q] - A[(size_t)p * n + p]) / (2.0 * apq);
    t = fabs(theta) > 1e150 ? 0.5 / theta   /* theta^2 would overflow: t = tan(phi) ~ 1 / (2 theta) */
                            : (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
    c = 1.0 / sqrt(t * t + 1.0);
    s = t * c;
    for (k = 0; k < n; k++) {   /* columns p and q: A J */
        double akp = A[(size_t)k * n + p], akq = A[(size_t)k * n + q];
        A[(size_t)k * n + p] = c * akp - s * akq;
        A[(size_t)k * n + q] = s * akp + c * akq;
    }
    for (k = 0; k < n; k++) {   /* rows p and q: J^T (A J), and the eigenvector rows of V */
        double apk = A[(size_t)p * n + k], aqk = A[(size_t)q * n + k];
        A[(size_t)p * n + k] = c * apk - s * aqk;
        A[(size_t)q * n + k] = s * apk + c * aqk;
        if (V) {
            double vp = V[(size_t)p * n + k], vq = V[(size_t)q * n + k];
            V[(size_t)p * n + k] = c * vp - s * vq;
            V[(size_t)q * n + k] = s * vp + c * vq;
        }
    }
    A[(size_t)p * n + q] = A[(size_t)q * n + p] = 0.0;   /* zero by construction; rounding removed */
}

/* values (the diagonal times scale) sorted descending, the rows of V with them */
MOLORA__PRIVATE void molora__eigen_sort(int n, const double *A, double scale, double *w, double *V)
{
    int i, j, k;
    for (i = 0; i < n; i++) w[i] = A[(size_t)i * n + i] * scale;
    for (i = 0; i < n; i++) {
        int best = i;
        for (j = i + 1; j < n; j++) if (w[j] > w[best]) best = j;
        if (best == i) continue;
        { double t = w[i]; w[i] = w[best]; w[best] = t; }
        if (V)
            for (k = 0; k < n; k++) {
                double t = V[(size_t)i * n + k];
                V[(size_t)i * n + k] = V[(size_t)best * n + k];
                V[(size_t)best * n + k] = t;
            }
    }
}

MOLORA_API molora_result molora_eigen_sym(int n, double *A, double *w, double *V)
{
    int i, j, sweep;
    size_t q;
    double scale = 0.0;
    if (n < 1 || !A || !w) return MOLORA_RESULT_INVALID_ARGUMENT;
    for (i = 0; i < n; i++)
        for (j = i; j < n; j++) {
            if (!isfinite(A[(size_t)i * n + j])) return MOLORA_RESULT_NON_FINITE;
            A[(size_t)j * n + i] = A[(size_t)i * n + j];   /* the upper triangle mirrored */
            if (fabs(A[(size_t)i * n + j]) > scale) scale = fabs(A[(size_t)i * n + j]);
        }
    if (scale == 0.0) scale = 1.0;
    for (q = 0; q < (size_t)n * (size_t)n; q++) A[q] /= scale;   /* in [-1, 1]: no square below overflows */
    if (V)
        for (i = 0; i < n; i++)
            for (j = 0; j < n; j++) V[(size_t)i * n + j] = i == j;
    for (sweep = 0; sweep < 100; sweep++) {
        double off = 0.0, all = 0.0;
        for (i = 0; i < n; i++)
            for (j = 0; j < n; j++) {
                double a = A[(size_t)i * n + j] * A[(size_t)i * n + j];
                all += a;
                if (i != j) off += a;
            }
        /* converged once the off-diagonal part is below double rounding of the whole */
        if (off <= 1e-34 * all) {
            molora__eigen_sort(n, A, scale, w, V);
            for (i = 0; i < n; i++)   /* |lambda| <= n max|a_ij|: scaled back it can overflow double */
                if (!isfinite(w[i])) return MOLORA_RESULT_NON_FINITE;
            return MOLORA_RESULT_SUCCESS;
        }
        for (i = 0; i < n; i++)
            for (j = i + 1; j < n; j++) {
                double a = fabs(A[(size_t)i * n + j]);
                if (sweep > 3 && a < 1e-18 * fabs(A[(size_t)i * n + i]) && a < 1e-18 * fabs(A[(size_t)j * n + j]))
                    A[(size_t)i * n + j] = A[(size_t)j * n + i] = 0.0;   /* below the diagonal's rounding */
                else if (a != 0.0) molora__jacobi_rotate(n, A, V, i, j);
            }
    }
    return MOLORA_RESULT_UNSUPPORTED;
}

/* doubles of scratch for one expert of rank r: Q (r, d_in), R, M, RM, V (r, r), w (r), v (d_in) */
MOLORA__PRIVATE int molora__proto_scratch(size_t r, size_t din, size_t *n)
{
    size_t a, b;
    return molora__mul(r, din, &a) && molora__mul(r, r, &b) && molora__mul(b, 4, &b) && molora__add(a, b, n) &&
           molora__add(*n, r + din, n);
}

/* Thin QR of A^T = Q R (A (r, d_in) float): modified Gram-Schmidt run twice per column, in double.
   Row j of Q is column j of the maths' Q; a row of A whose part outside the span of the earlier
   ones is below 1e-10 of its norm (far below the float32 rounding of A itself) counts as in that
   span: q_j = 0 and R[j][j] = 0, so A^T = Q R holds for rank-deficient A too. */
MOLORA__PRIVATE void molora__thin_qr(const float *A, int r, int din, double *Q, double *R)
{
    int i, j, k, pass;
    memset(R, 0, (size_t)r * r * sizeof(double));
    for (j = 0; j < r; j++) {
        double *q = Q + (size_t)j * din, n0 = 0.0, nr = 0.0;
        for (k = 0; k < din; k++) { q[k] = A[(size_t)j * din + k]; n0 += q[k] * q[k]; }
        for (pass = 0; pass < 2; pass++)
            for (i = 0; i < j; i++) {
                const double *qi = Q + (size_t)i * din;
                double c = 0.0;
                for (k = 0; k < din; k++) c += qi[k] * q[k];
                R[(size_t)i * r + j] += c;
                for (k = 0; k < din; k++) q[k] -= c * qi[k];
            }
        for (k = 0; k < din; k++) nr += q[k] * q[k];
        nr = sqrt(nr);
        if (!(nr > 1e-10 * sqrt(n0))) { memset(q, 0, (size_t)din * sizeof(double)); continue; }
        R[(size_t)j * r + j] = nr;
        for (k = 0; k < din; k++) q[k] /= nr;
    }
}

/* p (d_in) = the unit top right singular vector of B A for expert e of the packed layer, through
   the r x r core: (B A)^T (B A) = Q C Q^T with C = R (B^T B) R^T, so v = Q u, u C's top
   eigenvector. B A = 0 gives p = 0. Sign: the largest |p_k| (the first of equals) is positive. */
MOLORA__PRIVATE molora_result molora__arrow_prototype(const molora__layer *L, int e, double *s, float *p)
{
    int r = L->rank[e], din = L->d_in, dout = L->d_out, i, j, k, big = 0;
    size_t rr = (size_t)r * r;
    const float *A = L->A + (size_t)L->offset[e] * din, *BT = L->BT + (size_t)L->offset[e] * dout;
    double *Q = s, *R = Q + (size_t)r * din, *M = R + rr, *RM = M + rr, *V = RM + rr, *w = V + rr, *v = w + r, nv = 0;
    molora_result res;
    molora__thin_qr(A, r, din, Q, R);
    for (i = 0; i < r; i++)   /* M = B^T B */
        for (j = 0; j < r; j++) {
            double m = 0.0;
            for (k = 0; k < dout; k++) m += (double)BT[(size_t)i * dout + k] * BT[(size_t)j * dout + k];
            M[(size_t)i * r + j] = m;
        }
    for (i = 0; i < r; i++)   /* RM = R M, then M = C = RM R^T */
        for (j = 0; j < r; j++) {
            double m = 0.0;
            for (k = i; k < r; k++) m += R[(size_t)i * r + k] * M[(size_t)k * r + j];
            RM[(size_t)i * r + j] = m;
        }
    for (i = 0; i < r; i++)
        for (j = 0; j < r; j++) {
            double m = 0.0;
            for (k = j; k < r; k++) m += RM[(size_t)i * r + k] * R[(size_t)j * r + k];
            M[(size_t)i * r + j] = m;
        }
    if ((res = molora_eigen_sym(r, M, w, V)) != MOLORA_RESULT_SUCCESS) return res;
    for (k = 0; k < din; k++) {
        v[k] = 0.0;
        if (w[0] > 0.0)
            for (j = 0; j < r; j++) v[k] += V[j] * Q[(size_t)j * din + k];
        nv += v[k] * v[k];
        if (fabs(v[k]) > fabs(v[big])) big = k;
    }
    nv = nv > 0.0 ? (v[big] < 0 ? -1.0 : 1.0) / sqrt(nv) : 0.0;
    for (k = 0; k < din; k++) p[k] = (float)(v[k] * nv);
    return MOLORA_RESULT_SUCCESS;
}
/* <<eigen */

/* >>init  molora_model_init: validate every layer, pack the experts into one block ------------ */
MOLORA__PRIVATE int molora__needs_gate(int routing)
{
    return routing == MOLORA_ROUTING_DENSE || routing == MOLORA_ROUTING_TOPK ||
           routing == MOLORA_ROUTING_THRESHOLD || routing == MOLORA_ROUTING_ADAMOLE ||
           routing == MOLORA_ROUTING_ARROW;   /* ARROW packs its prototypes where the gate goes */
}

/* ARROW: the prototypes as given (finite), else the scratch (doubles) to compute them at init;
   no gate bias; k = top_k, or 3, within 1..N (PEFT's top_k default and its k > N error). */
MOLORA__PRIVATE molora_result molora__check_arrow(const molora_layer_desc *L, int l, int bf16,
                                                  const molora__logger *lg, size_t *scratch)
{
    size_t ng, need;
    int i, n = L->n_experts, k = L->top_k ? L->top_k : 3;
    if (L->gate_bias)
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "layer %d: ARROW takes no gate_bias (its logits are "
                            "|p_e . x|)", l);
    if (L->top_k < 0 || k > n)
        return molora__fail(lg, MOLORA_RESULT_INVALID_TOP_K, "layer %d: ARROW top_k %d%s outside 1..%d", l, k,
                            L->top_k ? "" : " (the default)", n);
    if (!molora__floats((size_t)n, (size_t)L->d_in, &ng))
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: prototypes size overflows", l);
    if (L->prototypes) {
        if (!molora__all_finite(L->prototypes, ng))
            return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d: prototypes have NaN or Inf", l);
        return MOLORA_RESULT_SUCCESS;
    }
    for (i = 0; i < n; i++) {
        size_t wide = 0;   /* BF16: the expert's A and B^T widened to float32 behind the doubles */
        if (!molora__proto_scratch((size_t)L->experts[i].rank, (size_t)L->d_in, &need) ||
            !molora__mul(need, sizeof(double), &need) ||
            (bf16 && (!molora__floats((size_t)L->experts[i].rank, (size_t)L->d_in + (size_t)L->d_out, &wide) ||
                      !molora__mul(wide, sizeof(float), &wide) || !molora__add(need, wide, &need))))
            return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d expert %d: prototype scratch overflows",
                                l, i);
        if (need > *scratch) *scratch = need;
    }
    return MOLORA_RESULT_SUCCESS;
}

/* 1 when the model holds its own float32 W0: copied on request, converted from F16 / BF16,
   or an F32 pointer that is not 4-byte aligned (the kernels read W0 as floats) */
MOLORA__PRIVATE int molora__owns_w0(const molora_layer_desc *L, int copy)
{
    return copy || L->W0_type != MOLORA_TYPE_F32 || ((uintptr_t)L->W0 & 3) != 0;
}

/* 1 when layer L's experts are stored as BF16: every layer's (EXPERTS_BF16), or a layer whose
   experts' A and B are all BF16 already (EXPERTS_KEEP_BF16) */
MOLORA__PRIVATE int molora__layer_bf16(const molora_layer_desc *L, unsigned flags)
{
    int i;
    if (flags & MOLORA_MODEL_EXPERTS_BF16) return 1;
    if (!(flags & MOLORA_MODEL_EXPERTS_KEEP_BF16) || L->n_experts < 1 || !L->experts) return 0;
    for (i = 0; i < L->n_experts; i++)
        if (L->experts[i].A_type != MOLORA_TYPE_BF16 || L->experts[i].B_type != MOLORA_TYPE_BF16) return 0;
    return 1;
}
/* element i of p (type t) as BF16: BF16 kept, F32 and F16 (widened exactly) rounded */
MOLORA__PRIVATE uint16_t molora__elem_bf16(const void *p, molora_type t, size_t i)
{
    uint16_t h;
    uint32_t u;
    float f;
    if (t == MOLORA_TYPE_BF16) { memcpy(&h, (const unsigned char *)p + 2 * i, 2); return h; }
    f = molora__elem(p, t, i);
    memcpy(&u, &f, sizeof u);
    return molora__bf16_round(u);
}
/* 1 when every element of a finite F32 matrix stays finite once rounded to BF16 (F16, BF16 always do) */
MOLORA__PRIVATE int molora__bf16_fits(const void *p, molora_type t, size_t n)
{
    size_t i;
    unsigned bad = 0;
    if (t != MOLORA_TYPE_F32) return 1;
    for (i = 0; i < n; i++) bad |= (molora__elem_bf16(p, t, i) & 0x7f80u) == 0x7f80u;
    return !bad;
}

/* Validates the experts of layer l; *rt = the sum of their ranks. */
MOLORA__PRIVATE molora_result molora__check_experts(const molora_layer_desc *L, int l, int bf16,
                                                    const molora__logger *lg, size_t *rt)
{
    size_t din = (size_t)L->d_in, dout = (size_t)L->d_out;
    int i;
    for (i = 0; i < L->n_experts; i++) {
        const molora_expert_desc *e = &L->experts[i];
        size_t na, nb;
        if (e->rank < 1)
            return molora__fail(lg, MOLORA_RESULT_INVALID_RANK, "layer %d expert %d: rank %d (must be >= 1)",
                                l, i, e->rank);
        if (!e->A || !e->B)
            return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS, "layer %d expert %d: A or B is NULL", l, i);
        if (!molora__type_ok(e->A_type) || !molora__type_ok(e->B_type))
            return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT,
                                "layer %d expert %d: unknown A_type %d or B_type %d",
                                l, i, (int)e->A_type, (int)e->B_type);
        if (!isfinite(e->scaling) || !isfinite(e->lora_alpha))
            return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d expert %d: scaling or lora_alpha is NaN/Inf",
                                l, i);
        if (!molora__add(*rt, (size_t)e->rank, rt) || *rt > 0x7fffffff ||
            !molora__floats((size_t)e->rank, din, &na) || !molora__floats((size_t)e->rank, dout, &nb))
            return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d expert %d: rank %d overflows",
                                l, i, e->rank);
        if (!molora__finite_typed(e->A, e->A_type, na) || !molora__finite_typed(e->B, e->B_type, nb))
            return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d expert %d: A or B has NaN or Inf", l, i);
        if (bf16 && (!molora__bf16_fits(e->A, e->A_type, na) || !molora__bf16_fits(e->B, e->B_type, nb)))
            return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d expert %d: %s has a value beyond BF16's range "
                                "(it rounds to Inf in BF16)", l, i, molora__bf16_fits(e->A, e->A_type, na) ? "B" : "A");
    }
    return MOLORA_RESULT_SUCCESS;
}

/* Validates the routing rule of layer l (n >= 1 experts) and adds a copied mole_gate to *bytes. */
MOLORA__PRIVATE molora_result molora__check_routing(const molora_layer_desc *L, int l, int copy,
                                                    const molora__logger *lg, size_t *bytes)
{
    size_t din = (size_t)L->d_in, dout = (size_t)L->d_out, ng = 0, ne;
    int n = L->n_experts, gated = molora__needs_gate(L->routing) && L->routing != MOLORA_ROUTING_ARROW;
    if (gated && !L->gate_weight)
        return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS, "layer %d: routing needs gate_weight (N, d_in)", l);
    if (gated && !molora__floats((size_t)n, din, &ng))
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: gate size overflows", l);
    if (gated && !molora__all_finite(L->gate_weight, ng))
        return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d: gate_weight has NaN or Inf", l);
    if (L->gate_bias && !molora__all_finite(L->gate_bias, (size_t)n))
        return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d: gate_bias has NaN or Inf", l);
    if (!(L->temperature >= 0.0f) || !isfinite(L->temperature))
        return molora__fail(lg, MOLORA_RESULT_INVALID_VALUE, "layer %d: temperature %g (must be > 0, or 0 for 1)",
                            l, (double)L->temperature);
    if (L->routing == MOLORA_ROUTING_TOPK && (L->top_k < 0 || L->top_k > n))
        return molora__fail(lg, MOLORA_RESULT_INVALID_TOP_K, "layer %d: top_k %d outside 1..%d", l, L->top_k, n);
    if (L->routing == MOLORA_ROUTING_THRESHOLD && !isfinite(L->threshold))
        return molora__fail(lg, MOLORA_RESULT_INVALID_VALUE, "layer %d: threshold is NaN or Inf", l);
    if (L->routing == MOLORA_ROUTING_ADAMOLE) {
        if (L->tau_max_set && (!(L->tau_max >= 0.0f) || !isfinite(L->tau_max)))
            return molora__fail(lg, MOLORA_RESULT_INVALID_VALUE, "layer %d: tau_max %g (must be finite and >= 0)",
                                l, (double)L->tau_max);
        if (!L->threshold_weight)
            return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS, "layer %d: ADAMOLE needs threshold_weight (d_in)",
                                l);
        if (!molora__all_finite(L->threshold_weight, din) || !isfinite(L->threshold_bias))
            return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d: threshold net has NaN or Inf", l);
    }
    if (L->routing != MOLORA_ROUTING_MOLE_OUTPUT) return MOLORA_RESULT_SUCCESS;
    if (!L->mole_gate)
        return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS, "layer %d: MOLE_OUTPUT needs mole_gate (N, N*d_out)", l);
    if (!molora__floats((size_t)n * (size_t)n, dout, &ne) || ne / (size_t)n > 0x7fffffff)
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: mole_gate size overflows", l);
    if (!molora__all_finite(L->mole_gate, ne))
        return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d: mole_gate has NaN or Inf", l);
    if (copy && !molora__reserve(bytes, ne, sizeof(float)))
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: mole_gate size overflows", l);
    return MOLORA_RESULT_SUCCESS;
}

/* gates of at least MOLORA__GTO_MIN rows (>>outer) get GT, where this CPU's table has gto: the
   transpose of their first molora__gto_rows(ng) rows, in molora__gto_floats(ng, d_in) floats */
MOLORA__PRIVATE int molora__gate_outer(int ng) { return ng >= MOLORA__GTO_MIN && molora__get_kernels()->gto; }
MOLORA__PRIVATE size_t molora__gto_floats(int ng, int d_in)
{
    return molora__gto_cols(molora__gto_rows(ng)) * (size_t)d_in;
}

/* Validates one layer and adds its memory to *bytes: the frozen layer, the experts, the routing
   rule, then the packed experts' size (A rows, B^T, rank / offset / scaling, gate bias). */
MOLORA__PRIVATE molora_result molora__check_layer(const molora_layer_desc *L, int l, int copy, int bf16,
                                                  const molora__logger *lg, size_t *bytes, size_t *scratch)
{
    size_t din = (size_t)L->d_in, dout = (size_t)L->d_out, rt = 0, nrows, sz, n = (size_t)L->n_experts;
    size_t elem = bf16 ? sizeof(uint16_t) : sizeof(float);
    molora_result r;
    if (L->d_in < 1 || L->d_out < 1)
        return molora__fail(lg, MOLORA_RESULT_INVALID_SHAPE, "layer %d: d_in %d, d_out %d (must be >= 1)",
                            l, L->d_in, L->d_out);
    if (L->n_experts < 0)
        return molora__fail(lg, MOLORA_RESULT_INVALID_SHAPE, "layer %d: n_experts %d (must be >= 0)", l, L->n_experts);
    if (n > 0 && !L->experts)
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "layer %d: n_experts %d but experts is NULL",
                            l, L->n_experts);
    if (!molora__floats(din, dout, &sz))
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: d_out * d_in overflows", l);
    if (!molora__type_ok(L->W0_type))
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "layer %d: unknown W0_type %d", l, (int)L->W0_type);
    if (L->W0 && !molora__finite_typed(L->W0, L->W0_type, sz))
        return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d: W0 has NaN or Inf", l);
    if (L->bias && !molora__all_finite(L->bias, dout))
        return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "layer %d: bias has NaN or Inf", l);
    if (L->W0 && molora__owns_w0(L, copy) && !molora__reserve(bytes, sz, sizeof(float)))
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: W0 size overflows", l);
    if (copy && L->bias && !molora__reserve(bytes, dout, sizeof(float)))
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: bias size overflows", l);
    if (n == 0) return MOLORA_RESULT_SUCCESS;
    if ((int)L->routing < 0 || (int)L->routing >= MOLORA_ROUTING_COUNT)
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "layer %d: unknown routing %d", l, (int)L->routing);
    if ((r = molora__check_experts(L, l, bf16, lg, &rt)) != MOLORA_RESULT_SUCCESS) return r;
    if ((r = molora__check_routing(L, l, copy, lg, bytes)) != MOLORA_RESULT_SUCCESS) return r;
    if (L->routing == MOLORA_ROUTING_ARROW && (r = molora__check_arrow(L, l, bf16, lg, scratch)))
        return r;
    nrows = rt + (molora__needs_gate(L->routing) ? n : 0) + (L->routing == MOLORA_ROUTING_ADAMOLE);
    /* F32: A and the routing rows in one matrix; BF16: the routing rows (float32, 16 floats more
       to place them at the 64-byte phase they have in the float32 layout), then A16 */
    if (nrows > 0x7fffffff || !molora__mul(bf16 ? nrows - rt : nrows, din, &sz) ||
        !molora__add(sz, bf16 ? 16 : 0, &sz) || !molora__reserve(bytes, sz, sizeof(float)) ||
        (bf16 && !molora__reserve(bytes, rt, din * elem)) ||
        !molora__reserve(bytes, dout, rt * elem) || !molora__reserve(bytes, n, sizeof(int)) ||
        !molora__reserve(bytes, n, sizeof(int)) || !molora__reserve(bytes, n, sizeof(float)) ||
        (L->gate_bias && !molora__reserve(bytes, n, sizeof(float))) ||
        (molora__gate_outer((int)(nrows - rt)) &&
         !molora__reserve(bytes, molora__gto_cols(molora__gto_rows((int)(nrows - rt))), din * sizeof(float))))
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "layer %d: packed expert size overflows", l);
    return MOLORA_RESULT_SUCCESS;
}

/* the rule's parameters with their defaults resolved (n >= 1 experts) */
MOLORA__PRIVATE void molora__pack_rule(molora__layer *P, const molora_layer_desc *L)
{
    int n = L->n_experts;
    P->routing = (int)L->routing;
    P->temperature = L->temperature > 0.0f ? L->temperature : 1.0f;
    P->top_k = L->routing == MOLORA_ROUTING_TOPK ? (L->top_k ? L->top_k : (n > 1 ? 2 : 1))
             : L->routing == MOLORA_ROUTING_ARROW ? (L->top_k ? L->top_k : 3) : 0;   /* PEFT's default 3 */
    P->threshold = L->threshold;
    P->tau_max = L->tau_max_set ? L->tau_max : 1.0f / (float)n;
    P->thr_bias = L->threshold_bias;
}

/* Expert e's A (rank, d_in) and B^T (rank, d_out) into the packed rows at row off: float32
   (converted exactly), or BF16 (rounded to nearest even, BF16 inputs kept) */
MOLORA__PRIVATE void molora__pack_expert(molora__layer *P, const molora_expert_desc *e, int off)
{
    size_t din = (size_t)P->d_in, dout = (size_t)P->d_out, k;
    int j, q;
    if (P->bf16) {
        uint16_t *A16 = (uint16_t *)P->A16 + (size_t)off * din, *BT16 = (uint16_t *)P->BT16;
        for (k = 0; k < (size_t)e->rank * din; k++) A16[k] = molora__elem_bf16(e->A, e->A_type, k);
        for (j = 0; j < P->d_out; j++)
            for (q = 0; q < e->rank; q++)
                BT16[(size_t)(off + q) * dout + j] = molora__elem_bf16(e->B, e->B_type, (size_t)j * e->rank + q);
        return;
    }
    molora__to_f32(e->A, e->A_type, (size_t)e->rank * din, P->A + (size_t)off * din);
    for (j = 0; j < P->d_out; j++)
        for (q = 0; q < e->rank; q++)
            P->BT[(size_t)(off + q) * dout + j] = molora__elem(e->B, e->B_type, (size_t)j * e->rank + q);
}

/* the packed rows: float32 A = [experts; routing rows] and B^T, or for BF16 experts the routing
   rows alone in float32 (at their float32 layout's 64-byte phase, so the gate's products and the
   routing are bitwise the float32 layer's), then A16 and BT16 */
MOLORA__PRIVATE void molora__carve_rows(molora__layer *P, int bf16, unsigned char **cur)
{
    size_t din = (size_t)P->d_in, dout = (size_t)P->d_out, rt = (size_t)P->r_total;
    P->bf16 = bf16;
    if (bf16) {
        P->A = (float *)molora__carve(cur, ((size_t)P->n_rows - rt) * din + 16, sizeof(float));
        P->R = P->A + (rt * din) % 16;
        P->A16 = (const uint16_t *)molora__carve(cur, rt * din, sizeof(uint16_t));
        P->BT16 = (const uint16_t *)molora__carve(cur, dout * rt, sizeof(uint16_t));
    } else {
        P->A = (float *)molora__carve(cur, (size_t)P->n_rows * din, sizeof(float));
        P->R = P->A + rt * din;
        P->BT = (float *)molora__carve(cur, dout * rt, sizeof(float));
    }
}

MOLORA__PRIVATE void molora__pack_layer(molora__layer *P, const molora_layer_desc *L, int copy, int bf16,
                                        unsigned char **cur)
{
    int i, n = L->n_experts, off = 0;
    size_t din = (size_t)L->d_in, dout = (size_t)L->d_out;
    memset(P, 0, sizeof *P);
    P->d_in = L->d_in; P->d_out = L->d_out; P->n = n;
    P->gate_row = P->thr_row = -1;
    P->W0 = (const float *)L->W0; P->bias = L->bias;
    P->w0_in_out = L->fan_in_fan_out != 0;
    if (L->W0 && molora__owns_w0(L, copy)) {
        float *w = (float *)molora__carve(cur, din * dout, sizeof(float));
        molora__to_f32(L->W0, L->W0_type, din * dout, w);
        P->W0 = w;
    }
    if (copy && L->bias)
        P->bias = (const float *)memcpy(molora__carve(cur, dout, sizeof(float)), L->bias, dout * sizeof(float));
    if (n == 0) { P->routing = MOLORA_ROUTING_FIXED; return; }
    molora__pack_rule(P, L);
    for (i = 0; i < n; i++) {
        P->r_total += L->experts[i].rank;
        if (L->experts[i].rank > P->r_max) P->r_max = L->experts[i].rank;
    }
    P->n_rows = P->r_total;
    if (molora__needs_gate(P->routing)) { P->gate_row = P->n_rows; P->n_rows += n; }
    if (P->routing == MOLORA_ROUTING_ADAMOLE) { P->thr_row = P->n_rows; P->n_rows += 1; }
    P->rank = (int *)molora__carve(cur, (size_t)n, sizeof(int));
    P->offset = (int *)molora__carve(cur, (size_t)n, sizeof(int));
    P->scaling = (float *)molora__carve(cur, (size_t)n, sizeof(float));
    molora__carve_rows(P, bf16, cur);
    for (i = 0; i < n; i++) {
        const molora_expert_desc *e = &L->experts[i];
        float alpha = e->lora_alpha != 0.0f ? e->lora_alpha : (float)e->rank;
        P->rank[i] = e->rank;
        P->offset[i] = off;
        P->scaling[i] = e->scaling != 0.0f ? e->scaling
                      : (e->use_rslora ? alpha / sqrtf((float)e->rank) : alpha / (float)e->rank);
        molora__pack_expert(P, e, off);
        off += e->rank;
    }
    if (P->gate_row >= 0) {   /* the gate, or ARROW's given prototypes (else computed once packed) */
        const float *g = P->routing == MOLORA_ROUTING_ARROW ? L->prototypes : L->gate_weight;
        if (g) memcpy((float *)P->R + (size_t)(P->gate_row - P->r_total) * din, g, (size_t)n * din * sizeof(float));
    }
    if (P->thr_row >= 0)
        memcpy((float *)P->R + (size_t)(P->thr_row - P->r_total) * din, L->threshold_weight, din * sizeof(float));
    if (L->gate_bias) {
        P->gate_bias = (float *)molora__carve(cur, (size_t)n, sizeof(float));
        memcpy(P->gate_bias, L->gate_bias, (size_t)n * sizeof(float));
    }
    if (molora__gate_outer(P->n_rows - P->r_total))   /* filled once ARROW's prototypes are in R */
        P->GT = (const float *)molora__carve(cur, molora__gto_floats(P->n_rows - P->r_total, P->d_in), sizeof(float));
    P->mole_gate = L->mole_gate;
    if (P->routing == MOLORA_ROUTING_MOLE_OUTPUT && copy) {
        size_t ne = (size_t)n * (size_t)n * dout;
        P->mole_gate = (const float *)memcpy(molora__carve(cur, ne, sizeof(float)), L->mole_gate, ne * sizeof(float));
    }
}

/* ARROW: expert e's prototype into its gate row; BF16 experts are widened first (exactly) into the
   scratch's end, as a one-expert float32 layer, so the prototype is that of the stored values */
MOLORA__PRIVATE molora_result molora__arrow_expert(const molora__layer *L, int e, double *s, size_t scratch)
{
    float *p = (float *)L->R + (size_t)(L->gate_row - L->r_total + e) * L->d_in;
    molora__layer one;
    size_t na = (size_t)L->rank[e] * L->d_in, nb = (size_t)L->rank[e] * L->d_out;
    int zero = 0;
    if (!L->bf16) return molora__arrow_prototype(L, e, s, p);
    one = *L;
    one.A = (float *)((unsigned char *)s + scratch) - na - nb;
    one.BT = one.A + na;
    one.rank = (int *)L->rank + e; one.offset = &zero;
    molora__widen_c(L->A16 + (size_t)L->offset[e] * L->d_in, na, one.A);
    molora__widen_c(L->BT16 + (size_t)L->offset[e] * L->d_out, nb, one.BT);
    return molora__arrow_prototype(&one, 0, s, p);
}

/* ARROW layers without given prototypes: each expert's exact prototype into the gate rows, in a
   scratch block of init (freed here; the forward path never sees it). */
MOLORA__PRIVATE molora_result molora__arrow_init(molora_model *m, const molora_model_desc *desc, size_t scratch,
                                                 const molora__logger *lg)
{
    double *s = (double *)molora__mem_alloc(&m->memory, scratch);
    molora_result r = MOLORA_RESULT_SUCCESS;
    int l, e;
    if (!s) return molora__fail(lg, MOLORA_RESULT_OUT_OF_MEMORY, "model: cannot allocate %zu bytes", scratch);
    for (l = 0; l < m->n_layers && !r; l++) {
        molora__layer *L = &m->layers[l];
        if (L->n == 0 || L->routing != MOLORA_ROUTING_ARROW || desc->layers[l].prototypes) continue;
        for (e = 0; e < L->n && !r; e++)
            if ((r = molora__arrow_expert(L, e, s, scratch)))
                molora__fail(lg, r, "layer %d expert %d: the prototype's eigen-solver did not converge", l, e);
    }
    molora__mem_free(&m->memory, s);
    return r;
}

MOLORA_API molora_result molora_model_init(const molora_model_desc *desc, molora_model **out)
{
    molora__logger lg;
    molora_memory mem;
    size_t bytes = 0, scratch = 0;
    int l, copy;
    unsigned char *cur;
    void *block;
    molora_model *m;
    molora_result r;
    if (out) *out = NULL;
    if (!desc || !out) return MOLORA_RESULT_INVALID_ARGUMENT;
    lg.fn = desc->log; lg.user = desc->log_user;
    if (desc->n_layers < 0 || (desc->n_layers > 0 && !desc->layers))
        return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "model: n_layers %d with layers %p", desc->n_layers,
                            (const void *)desc->layers);
    if ((desc->flags & ~(unsigned)(MOLORA_MODEL_COPY_WEIGHTS | MOLORA_MODEL_EXPERTS_BF16 |
                                   MOLORA_MODEL_EXPERTS_KEEP_BF16)) != 0)
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
        r = molora__check_layer(&desc->layers[l], l, copy, molora__layer_bf16(&desc->layers[l], desc->flags), &lg,
                                &bytes, &scratch);
        if (r != MOLORA_RESULT_SUCCESS) return r;
    }
    if (!molora__add(bytes, MOLORA__ALIGN, &bytes))
        return molora__fail(&lg, MOLORA_RESULT_SIZE_OVERFLOW, "model: total size overflows");
    block = molora__mem_alloc(&mem, bytes);
    if (!block) return molora__fail(&lg, MOLORA_RESULT_OUT_OF_MEMORY, "model: cannot allocate %zu bytes", bytes);
    cur = molora__align_up(block);
    m = (molora_model *)molora__carve(&cur, 1, sizeof(molora_model));
    m->layers = (molora__layer *)molora__carve(&cur, (size_t)desc->n_layers, sizeof(molora__layer));
    m->n_layers = desc->n_layers;
    m->memory = mem;
    m->log = desc->log; m->log_user = desc->log_user;
    m->block = block;
    m->bytes = bytes;
    for (l = 0; l < desc->n_layers; l++)
        molora__pack_layer(&m->layers[l], &desc->layers[l], copy, molora__layer_bf16(&desc->layers[l], desc->flags),
                           &cur);
    MOLORA_ASSERT((size_t)(cur - (unsigned char *)block) <= bytes);
    if (scratch && (r = molora__arrow_init(m, desc, scratch, &lg)) != MOLORA_RESULT_SUCCESS) {
        molora__mem_free(&mem, block);
        return r;
    }
    for (l = 0; l < m->n_layers; l++) {
        const molora__layer *L = &m->layers[l];
        if (L->GT) molora__pack_gate_t(molora__gto_rows(L->n_rows - L->r_total), L->d_in, L->R, (float *)L->GT);
    }
    *out = m;
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API void molora_model_free(molora_model *m)
{
    if (m) molora__mem_free(&m->memory, m->block);
}

MOLORA_API int molora_model_n_layers(const molora_model *m) { return m ? m->n_layers : 0; }

MOLORA_API molora_result molora_model_layer_info(const molora_model *m, int layer, molora_layer_info *info)
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
    info->fan_in_fan_out = L->w0_in_out;
    info->expert_type = L->bf16 ? MOLORA_TYPE_BF16 : MOLORA_TYPE_F32;
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API molora_result molora_model_memory(const molora_model *m, size_t *bytes, size_t *expert_bytes)
{
    size_t e = 0;
    int l;
    if (!m) return MOLORA_RESULT_INVALID_ARGUMENT;
    for (l = 0; l < m->n_layers; l++) {
        const molora__layer *L = &m->layers[l];
        e += (size_t)L->r_total * ((size_t)L->d_in + (size_t)L->d_out) * (L->bf16 ? 2 : 4);
    }
    if (bytes) *bytes = m->bytes;
    if (expert_bytes) *expert_bytes = e;
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API molora_result molora_model_prototypes(const molora_model *m, int layer, float *P)
{
    const molora__layer *L;
    if (!m || !P) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (layer < 0 || layer >= m->n_layers) return MOLORA_RESULT_INVALID_LAYER;
    L = &m->layers[layer];
    if (L->n == 0 || L->routing != MOLORA_ROUTING_ARROW) return MOLORA_RESULT_INVALID_ARGUMENT;
    memcpy(P, L->R + (size_t)(L->gate_row - L->r_total) * L->d_in, (size_t)L->n * L->d_in * sizeof(float));
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API molora_result molora_model_expert(const molora_model *m, int layer, int expert, int *rank, float *scaling)
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

/* <<init */

/* >>routing  the routing rules of one token: softmax, top-k, threshold, AdaMoLE, Arrow ---------- */
/* Each rule works on one token: z (n) gate logits with bias, allowed(i) from the mask. */

/* v (n): in, the logits, NaN for experts that take no part; out, softmax of v / temperature
   over the others (0 for the rest). Logits are NaN-checked before, so NaN is free as a marker.
   Computed as exp((v_i - v_max) / temperature): the maximum is subtracted BEFORE dividing, so a
   tiny temperature (down to the smallest subnormal) sends every non-maximal entry to exp(-inf) = 0
   and the maxima to exp(0) = 1 (ties share equally) instead of overflowing v / temperature to
   +-inf. At temperature 1 this is bit-identical to exp(v_i / 1 - v_max / 1); elsewhere it differs
   from dividing first by float rounding only. Divided, not multiplied by 1 / temperature: below
   1 / FLT_MAX that reciprocal is inf. The exps run in the kernels' exps (>>vexp: with AVX-512
   within 1 ulp of the exact value, not always libm's bits), for many tokens at once: softmax_shift
   leaves the shifted logits (-inf for the experts that take no part) and returns 0, or, for a row
   that needs no exp (nothing allowed, or a logit at +inf), the weights themselves and returns 1;
   softmax_norm divides the exps by their sum. */
MOLORA__PRIVATE int molora__softmax_shift(float *v, int n, float temperature)
{
    int i, any = 0;
    float mx = 0.0f;
    for (i = 0; i < n; i++)
        if (!isnan(v[i])) { if (!any || v[i] > mx) mx = v[i]; any = 1; }
    if (!any) { for (i = 0; i < n; i++) v[i] = 0.0f; return 1; }
    if (isinf(mx)) {   /* logits at +inf share the weight; all at -inf: uniform (the gate rules'
                          logits are finite here: route_block fails on others) */
        int n_top = 0;
        for (i = 0; i < n; i++) { v[i] = v[i] == mx ? 1.0f : 0.0f; n_top += v[i] != 0.0f; }
        for (i = 0; i < n; i++) v[i] /= (float)n_top;
        return 1;
    }
    for (i = 0; i < n; i++) {
        float d = v[i] - mx;   /* in [-inf, 0]: -inf only when the difference overflows float */
        if (isnan(v[i])) { v[i] = -INFINITY; continue; }   /* exp(-inf) = 0: takes no part */
        if (isinf(d)) d = v[i] / temperature - mx / temperature;   /* then divide first (FLT_MAX at T > 2) */
        else if (temperature != 1.0f) d /= temperature;            /* d / 1 is d */
        v[i] = d;
    }
    return 0;
}
/* the exps' row into weights: each over their sum, added in index order */
MOLORA__PRIVATE void molora__softmax_norm(float *v, int n)
{
    int i;
    float sum = 0.0f;
    for (i = 0; i < n; i++) sum += v[i];
    for (i = 0; i < n; i++) v[i] /= sum;
}
MOLORA__PRIVATE void molora__softmax(float *v, int n, float temperature)
{
    if (molora__softmax_shift(v, n, temperature)) return;
    molora__get_kernels()->exps(v, n);
    molora__softmax_norm(v, n);
}

/* sigmoid(u) from e = exp(-|u|) (no overflow on either side) */
MOLORA__PRIVATE float molora__sigmoid(float u, float e)
{
    return u >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

/* top-k in one pass over the experts for k <= MOLORA__TOPK_ONE_PASS (the k selection passes
   below cost k n compares per token: for top-8 of 64, about a third of the gate product's time):
   the k best so far kept sorted, a newcomer placed after every entry not below it, so among
   equal logits the lowest index stays first, as in the selection passes. Logits are not NaN
   (checked before). w: 0 candidate, -1 masked out; the chosen get 1. */
#define MOLORA__TOPK_ONE_PASS 64
MOLORA__PRIVATE void molora__topk_one_pass(int k, int n, const float *z, int arrow, float *w)
{
    float val[MOLORA__TOPK_ONE_PASS];
    int idx[MOLORA__TOPK_ONE_PASS], m = 0, i, j;
    MOLORA_ASSERT(k <= MOLORA__TOPK_ONE_PASS);
    if (k < 1) return;
    for (i = 0; i < n; i++) {
        float v = arrow ? fabsf(z[i]) : z[i];
        if (w[i] != 0.0f || (m == k && !(v > val[k - 1]))) continue;
        j = m < k ? m++ : k - 1;   /* the slot freed at the end, then moved up past the smaller */
        for (; j > 0 && v > val[j - 1]; j--) { val[j] = val[j - 1]; idx[j] = idx[j - 1]; }
        val[j] = v; idx[j] = i;
    }
    for (j = 0; j < m; j++) w[idx[j]] = 1.0f;
}

/* The weights w (n) of one token for the gate rules, in two steps around the exps (the exps of
   a block of tokens run at once). route_shift: z gate logits (bias added), allow the mask row or
   NULL; TOPK / ARROW select their k; returns molora__softmax_shift's flag. route_finish, after
   the exps: the softmax's division, then THRESHOLD's or ADAMOLE's rule (sig: the threshold net's
   sigmoid); done: route_shift's flag (w already holds the softmax). */
MOLORA__PRIVATE int molora__route_shift(const molora__layer *L, const float *z, const uint8_t *allow, float *w)
{
    int i, c, n = L->n;
    if (L->routing == MOLORA_ROUTING_TOPK || L->routing == MOLORA_ROUTING_ARROW) {
        int arrow = L->routing == MOLORA_ROUTING_ARROW;   /* ARROW: the same over |p_e . x| */
        for (i = 0; i < n; i++) w[i] = (!allow || allow[i]) ? 0.0f : -1.0f;   /* 0 candidate, 1 chosen */
        if (L->top_k <= MOLORA__TOPK_ONE_PASS) molora__topk_one_pass(L->top_k, n, z, arrow, w);
        else
            for (c = 0; c < L->top_k; c++) {   /* keep the k best allowed, ties to the lowest index */
                int best = -1;
                for (i = 0; i < n; i++)
                    if (w[i] == 0.0f && (best < 0 || (arrow ? fabsf(z[i]) > fabsf(z[best]) : z[i] > z[best])))
                        best = i;
                if (best < 0) break;
                w[best] = 1.0f;
            }
        for (i = 0; i < n; i++) w[i] = w[i] == 1.0f ? (arrow ? fabsf(z[i]) : z[i]) : NAN;
    } else {
        for (i = 0; i < n; i++) w[i] = (!allow || allow[i]) ? z[i] : NAN;
    }
    return molora__softmax_shift(w, n, L->temperature);
}
MOLORA__PRIVATE void molora__route_finish(const molora__layer *L, float sig, const uint8_t *allow, float *w, int done)
{
    int i, n = L->n;
    float s = 0.0f;
    if (!done) molora__softmax_norm(w, n);
    if (L->routing == MOLORA_ROUTING_THRESHOLD) {      /* p_i >= threshold, renormalised */
        for (i = 0; i < n; i++) { if (!(w[i] >= L->threshold) || w[i] == 0.0f) w[i] = 0.0f; s += w[i]; }
        if (s == 0.0f) return;
        for (i = 0; i < n; i++) w[i] /= s;
    } else if (L->routing == MOLORA_ROUTING_ADAMOLE) { /* p_i - tau where p_i >= tau, renormalised */
        float tau = L->tau_max * sig;
        for (i = 0; i < n; i++) {
            float a = w[i] - tau;
            w[i] = ((!allow || allow[i]) && a >= 0.0f) ? a : 0.0f;
            s += w[i];
        }
        if (s == 0.0f) s = 1.0f;
        for (i = 0; i < n; i++) w[i] /= s;
    }
}

/* <<routing */

/* >>forward  molora_forward: check, gate logits, route, frozen layer, experts, MoLE mix -------- */
/* See docs/maths.md for the formulas and docs/design.md for the paths and the workspace. */

/* workspace parts, in floats: shared by the call's tasks: gate logits (T, n_rows - r_total),
   weights (T, n), MoLE deltas (T, n * d_out), active flags (n), in ints the grouped path's lists
   ((T + 1) (n + 1): starts, then up to T * n routed pairs), X laid out for the kernels (the same
   for every task: a share starts at a multiple of 16 columns, so W0's panel keeps its 64-byte
   phase); then one slice per task: its expert inputs H (T, r_total) and, for BF16 experts, the
   tile that BF16 experts' A and B^T are widened into (molora__tile_rows (d_in + d_out)). slice:
   bytes of a slice. */
typedef struct molora__ws { size_t g, h, w, d, act, grp, xa, tile, slice, total; } molora__ws;

/* Rows of the BF16 widening tile: one expert (r_max) up to MOLORA__SMALL_T tokens; beyond, a run
   of consecutive experts up to MOLORA__RUN_ROWS rows, so that the dense path runs one sgemm per
   run, not per expert (eight of rank 8 each packing X again took S1's experts at T = 512 from
   7.5 to 15.6 ms) */
#define MOLORA__RUN_ROWS 64
MOLORA__PRIVATE int molora__tile_rows(const molora__layer *L, size_t T)
{
    int run = L->r_total < MOLORA__RUN_ROWS ? L->r_total : MOLORA__RUN_ROWS;
    return T > MOLORA__SMALL_T && run > L->r_max ? run : L->r_max;
}

MOLORA__PRIVATE int molora__ws_layout(const molora__layer *L, size_t T, size_t tasks, molora__ws *ws)
{
    size_t bytes = MOLORA__ALIGN, slices;
    memset(ws, 0, sizeof *ws);
    if (!molora__mul(T, (size_t)(L->n_rows - L->r_total), &ws->g) || !molora__mul(T, (size_t)L->r_total, &ws->h) ||
        !molora__mul(T, (size_t)L->n, &ws->w)) return 0;
    if (L->routing == MOLORA_ROUTING_MOLE_OUTPUT && L->n > 0 &&
        !molora__mul(T, (size_t)L->n * (size_t)L->d_out, &ws->d)) return 0;
    ws->act = (size_t)L->n;
    if (L->bf16 && !molora__mul((size_t)molora__tile_rows(L, T), (size_t)L->d_in + (size_t)L->d_out, &ws->tile))
        return 0;
    if (!molora__mul(T + 1, (size_t)L->n + 1, &ws->grp) || ws->grp > 0x7fffffff) return 0;   /* int entries */
    /* small batches: X copied for the kernels: row-major at W0's 64-byte phase, or two packed
       panels (phase 0 for the experts and gate, W0's phase for the frozen layer) */
    if (T <= MOLORA__SMALL_T) {
        size_t a1, a2;
        if (!molora__mul(T + 1, molora__xa_ld(L->d_in), &a1)) return 0;
        a2 = 2 * molora__pack_floats((int)T, L->d_in) + 32;
        ws->xa = a1 > a2 ? a1 : a2;
    }
    if (!molora__reserve(&bytes, ws->g, sizeof(float)) || !molora__reserve(&bytes, ws->w, sizeof(float)) ||
        !molora__reserve(&bytes, ws->d, sizeof(float)) || !molora__reserve(&bytes, ws->act, sizeof(int)) ||
        !molora__reserve(&bytes, ws->grp, sizeof(int)) || !molora__reserve(&bytes, ws->xa, sizeof(float)) ||
        !molora__reserve(&ws->slice, ws->h, sizeof(float)) || !molora__reserve(&ws->slice, ws->tile, sizeof(float)) ||
        !molora__mul(tasks, ws->slice, &slices) ||
        !molora__add(bytes, slices, &ws->total))
        return 0;
    return 1;
}

/* the largest layout over the model's layers for up to max_tokens tokens and n_tasks slices */
MOLORA__PRIVATE molora_result molora__workspace_max(const molora_model *m, int max_tokens, int n_tasks, size_t *size)
{
    int l;
    size_t best = 0;
    if (size) *size = 0;
    if (!m || !size || n_tasks < 1) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (max_tokens < 0) return MOLORA_RESULT_INVALID_SHAPE;
    for (l = 0; l < m->n_layers; l++) {
        /* every part grows with T, but batches of at most MOLORA__SMALL_T tokens also copy X for
           the kernels: with a wide d_in and few experts that copy at T = 16 can outweigh the whole
           layout at T = max_tokens, so "enough for max_tokens" must cover both */
        molora__ws ws, small;
        size_t ts = max_tokens < MOLORA__SMALL_T ? (size_t)max_tokens : (size_t)MOLORA__SMALL_T;
        if (!molora__ws_layout(&m->layers[l], (size_t)max_tokens, (size_t)n_tasks, &ws) ||
            !molora__ws_layout(&m->layers[l], ts, (size_t)n_tasks, &small)) return MOLORA_RESULT_SIZE_OVERFLOW;
        if (ws.total > best) best = ws.total;
        if (small.total > best) best = small.total;
    }
    *size = best;
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API molora_result molora_workspace_size(const molora_model *m, int max_tokens, size_t *size)
{
    return molora__workspace_max(m, max_tokens, 1, size);
}
MOLORA_API molora_result molora_workspace_size_tasks(const molora_model *m, int max_tokens, int n_tasks, size_t *size)
{
    return molora__workspace_max(m, max_tokens, n_tasks, size);
}

/* One forward or route call: what every step reads and writes */
typedef struct molora__call {
    const molora__layer *L;
    const molora_forward_args *args;
    molora__logger lg;
    int apply;                 /* 1: molora_forward, 0: molora_route                           */
    int T, n, ith, nth;
    int n_tasks;               /* tasks of this call: args->n_tasks with parallel_for, else 1   */
    int o0, O;                 /* this caller's (or task's) output columns o0 .. o0 + O - 1     */
    molora__input in;          /* X as the kernels read it                                     */
    float *G;                  /* (T, ng) gate logits (n of them), then the threshold logit     */
    float *H;                  /* (T, r_total) expert inputs X A_i^T, then scaled by w_i s_i    */
    float *w;                  /* (T, n) routing weights                                       */
    float *D;                  /* (T, n * d_out) MoLE output gate: the experts' deltas          */
    int *act;                  /* (n) 1 when some token routes to expert i                      */
    int *gs, *gl;              /* grouped path: list j is gl[gs[j] .. gs[j + 1] - 1], the tokens routed
                                  to expert j (by expert) or the experts of token j (by token)  */
    float *Y;                  /* y at column o0 (forward), NULL (route)                        */
    molora_path path;          /* chosen once after routing: what path_out reports             */
    float *xa;                 /* small batches: the copy of X the kernels read (shared)        */
    unsigned char *slices;     /* the per-task workspace slices: each task's H (slice 0's when h_shared) */
    size_t slice;              /* bytes of one slice                                           */
    float *tile;               /* BF16 experts: this task's widening tile (molora__rows_a), or NULL */
    int tile_rows;             /* its rows of A (molora__tile_rows), B^T's behind them          */
    size_t tile_off;           /* its offset in a slice, in bytes                              */
    int by_token;              /* the grouped path's order: by token (molora__order_by_token)   */
    int h_blocks;              /* the dense experts' H in this many token blocks (molora__h_blocks) */
    int h_shared;              /* 1: the first parallel_for call left all of H in slice 0       */
} molora__call;

/* mask row of token t, or NULL when every expert is allowed */
MOLORA__PRIVATE const uint8_t *molora__allow(const molora_forward_args *a, int t, int n)
{
    return a->expert_mask ? a->expert_mask + (a->mask_per_token ? (size_t)t * n : 0) : NULL;
}

/* The seam of the experts' weights: every read of a BF16 layer's packed A and B^T in the forward
   pass, but the kernels that read BF16 directly (nt16, nn16: the dense path up to 16 tokens and
   the grouped path's one-token experts); float32-only paths
   (the by-token grouped order, MoLE's output gate on float32 layers) read the packed rows.
   The rows of A (rows, d_in) from expert i's first, and of B^T's columns o0 .. o0 + O - 1 (rows,
   O, row stride *ldb), as float32: expert i's rank, or a run of consecutive experts from i (rows
   <= c->tile_rows). A float32 layer gives its packed rows; a BF16 layer widens them (exactly)
   into the task's tile, A at its start and B^T behind it: one pair at a time. */
MOLORA__PRIVATE const float *molora__rows_a(const molora__call *c, int i, int rows)
{
    const molora__layer *L = c->L;
    if (!L->bf16) return L->A + (size_t)L->offset[i] * L->d_in;
    MOLORA_ASSERT(rows <= c->tile_rows);
    molora__get_kernels()->widen(L->A16 + (size_t)L->offset[i] * L->d_in, (size_t)rows * L->d_in, c->tile);
    return c->tile;
}
MOLORA__PRIVATE const float *molora__rows_bt(const molora__call *c, int i, int rows, int o0, int O, int *ldb)
{
    const molora__layer *L = c->L;
    float *bt;
    int q;
    if (!L->bf16) { *ldb = L->d_out; return L->BT + (size_t)L->offset[i] * L->d_out + o0; }
    MOLORA_ASSERT(rows <= c->tile_rows);
    bt = c->tile + (size_t)c->tile_rows * L->d_in;
    for (q = 0; q < rows; q++)
        molora__get_kernels()->widen(L->BT16 + (size_t)(L->offset[i] + q) * L->d_out + o0, (size_t)O,
                                     bt + (size_t)q * O);
    *ldb = O;
    return bt;
}

/* c's output columns o0 .. o0 + O - 1: share s of ns over chunks of 16 columns, so that share
   ith * n_tasks + k of nth * n_tasks is task k's part of caller ith's columns */
MOLORA__PRIVATE void molora__share(molora__call *c, int s, int ns)
{
    int chunks = (c->L->d_out + 15) / 16;
    c->o0 = (int)((long long)chunks * s / ns) * 16; if (c->o0 > c->L->d_out) c->o0 = c->L->d_out;
    c->O = (int)((long long)chunks * (s + 1) / ns) * 16; if (c->O > c->L->d_out) c->O = c->L->d_out;
    c->O -= c->o0;
    c->Y = c->apply ? c->args->y + c->o0 : NULL;
}

/* X as the kernels read it; small batches copy it into c->xa, at the 64-byte phase of W0's
   panel when the frozen layer streams W0 as (d_out, d_in). Every share starts at a multiple of
   16 columns, so the copy is the same for every task and is made once. */
MOLORA__PRIVATE void molora__lay_input(molora__call *c)
{
    const molora__layer *L = c->L;
    int w0_nt = L->W0 && !L->w0_in_out && c->args->output == MOLORA_OUTPUT_FULL;
    memset(&c->in, 0, sizeof c->in);
    c->in.T = c->T; c->in.K = L->d_in; c->in.x = c->in.X = c->args->x; c->in.ldx = L->d_in;
    /* the layout's condition for the copy (molora__ws_layout); a route call reads X only in the gate's
       ntn (row-major X as given) unless MoLE's output gate runs the experts */
    if (c->T <= MOLORA__SMALL_T && (c->apply || L->routing == MOLORA_ROUTING_MOLE_OUTPUT))
        molora__input_small(&c->in, w0_nt ? L->W0 + (size_t)c->o0 * L->d_in : NULL, c->xa);
}

/* The checks that leave every output untouched when they fail; fills the call's fields. */
MOLORA__PRIVATE molora_result molora__call_check(molora__call *c, const molora_model *m, const molora_forward_args *a,
                                                 int apply)
{
    const molora__logger *lg = &c->lg;
    memset(c, 0, sizeof *c);
    if (!m || !a) return MOLORA_RESULT_INVALID_ARGUMENT;
    c->lg.fn = m->log; c->lg.user = m->log_user;
    c->args = a; c->apply = apply; c->path = MOLORA_PATH_NONE;
    if (a->layer < 0 || a->layer >= m->n_layers)
        return molora__fail(lg, MOLORA_RESULT_INVALID_LAYER, "forward: layer %d outside 0..%d",
                            a->layer, m->n_layers - 1);
    c->L = &m->layers[a->layer];
    c->T = a->n_tokens;
    c->n = c->L->n;
    if (c->T < 0) return molora__fail(lg, MOLORA_RESULT_INVALID_SHAPE, "forward: n_tokens %d < 0", c->T);
    if (a->nth < 0 || (a->nth == 0 && a->ith != 0) || (a->nth > 0 && (a->ith < 0 || a->ith >= a->nth)))
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "forward: ith %d / nth %d (need 0 <= ith < nth)",
                            a->ith, a->nth);
    c->ith = a->nth > 0 ? a->ith : 0;
    c->nth = a->nth > 0 ? a->nth : 1;
    if (a->parallel_for ? a->n_tasks < 1 : (a->n_tasks < 0 || a->n_tasks > 1))
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "forward: n_tasks %d %s", a->n_tasks,
                            a->parallel_for ? "with parallel_for (need n_tasks >= 1)"
                                            : "without parallel_for (need 0 or 1)");
    c->n_tasks = a->parallel_for ? a->n_tasks : 1;
    if (c->n_tasks > 0x7fffffff / c->nth)   /* the call's shares: nth x n_tasks, an int */
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "forward: nth %d x n_tasks %d shares overflow int",
                            c->nth, c->n_tasks);
    if ((int)a->output != MOLORA_OUTPUT_FULL && (int)a->output != MOLORA_OUTPUT_DELTA)
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "forward: unknown output mode %d", (int)a->output);
    if (apply && a->output == MOLORA_OUTPUT_FULL && !c->L->W0)
        return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS, "forward: layer %d has no W0; use MOLORA_OUTPUT_DELTA",
                            a->layer);
    if (!apply && !a->weights_out)
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "route: weights_out is NULL");
    return MOLORA_RESULT_SUCCESS;
}

/* adapter_index: alone in place of the router (no weights, no mask), each entry -1 or an expert */
MOLORA__PRIVATE molora_result molora__check_index(const molora__call *c)
{
    const molora_forward_args *a = c->args;
    int t;
    if (a->weights || a->expert_mask)
        return molora__fail(&c->lg, MOLORA_RESULT_INVALID_ARGUMENT,
                            "forward: adapter_index replaces the router and its weights: give no %s with it",
                            a->weights ? "weights" : "expert_mask");
    for (t = 0; t < c->T; t++)
        if (a->adapter_index[t] < -1 || a->adapter_index[t] >= c->n)
            return molora__fail(&c->lg, MOLORA_RESULT_INVALID_ARGUMENT,
                                "forward: adapter_index[%d] = %ld outside -1..%d (layer %d has %d experts)", t,
                                (long)a->adapter_index[t], c->n - 1, a->layer, c->n);
    return MOLORA_RESULT_SUCCESS;
}

/* 1 when the gate logits check X: a NaN or Inf anywhere in a row of X makes every logit of that
   row NaN or Inf (0 * Inf and 0 * NaN are NaN), so a finite G (T, ng) proves X finite, and the
   call reads X once less (at d 768 the separate check cost about a fifth of the routing). X is
   read in full only when G is not finite, for the same error. Not for calls without the gate's
   rows over X: FIXED weights, an adapter index, a gateless layer. */
MOLORA__PRIVATE int molora__gate_checks_x(const molora__call *c)
{
    return c->n > 0 && !c->args->adapter_index && !c->args->weights && c->L->n_rows > c->L->r_total;
}

/* Checks the inputs of a call with T > 0, carves the workspace and lays X out for the kernels. */
MOLORA__PRIVATE molora_result molora__call_setup(molora__call *c)
{
    const molora_forward_args *a = c->args;
    const molora__layer *L = c->L;
    const molora__logger *lg = &c->lg;
    int T = c->T, n = c->n;
    molora__ws ws;
    unsigned char *cur;
    size_t nx;
    if (!a->x || (c->apply && !a->y))
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "forward: x or y is NULL");
    if (n > 0 && L->routing == MOLORA_ROUTING_FIXED && !a->weights && !a->adapter_index)
        return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS,
                            "forward: layer %d has FIXED routing but no weights were given", a->layer);
    if (a->adapter_index) {
        molora_result r = molora__check_index(c);
        if (r != MOLORA_RESULT_SUCCESS) return r;
    }
    if (!molora__ws_layout(L, (size_t)T, c->apply ? (size_t)c->n_tasks : 1, &ws) ||
        !molora__mul((size_t)T, (size_t)L->d_in, &nx))
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW,
                            "forward: %d tokens in %d task(s) overflow the workspace size", T,
                            c->apply ? c->n_tasks : 1);
    if (!a->workspace || a->workspace_size < ws.total)
        return molora__fail(lg, MOLORA_RESULT_WORKSPACE_TOO_SMALL,
                            "forward: workspace %zu bytes, %d tokens in %d task(s) on layer %d need %zu",
                            a->workspace ? a->workspace_size : (size_t)0, T, c->apply ? c->n_tasks : 1, a->layer,
                            ws.total);
    if (!molora__gate_checks_x(c) && !molora__all_finite(a->x, nx))
        return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "forward: input x has NaN or Inf");
    if (n > 0 && a->weights && !molora__all_finite(a->weights, a->weights_per_token ? (size_t)T * n : (size_t)n))
        return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "forward: fixed weights have NaN or Inf");
    cur = molora__align_up(a->workspace);
    c->G = (float *)molora__carve(&cur, ws.g, sizeof(float));
    c->w = (float *)molora__carve(&cur, ws.w, sizeof(float));
    c->D = (float *)molora__carve(&cur, ws.d, sizeof(float));
    c->act = (int *)molora__carve(&cur, ws.act, sizeof(int));
    c->gs = (int *)molora__carve(&cur, ws.grp, sizeof(int));
    c->gl = c->gs + (T > n ? T : n) + 1;
    c->xa = (float *)molora__carve(&cur, ws.xa, sizeof(float));
    c->slices = cur; c->slice = ws.slice;
    c->tile_off = ((ws.h * sizeof(float) + MOLORA__ALIGN - 1) & ~(size_t)(MOLORA__ALIGN - 1));
    c->tile = L->bf16 ? (float *)(c->slices + c->tile_off) : NULL;
    c->tile_rows = molora__tile_rows(L, (size_t)T);
    /* this caller's share of the output columns (ith of nth), then X for the kernels, once */
    molora__share(c, c->ith, c->nth);
    c->H = (float *)c->slices;
    molora__lay_input(c);
    return MOLORA_RESULT_SUCCESS;
}

/* The gate routing's failures, found block by block (on any thread when the routing runs as the
   hook's tasks) and logged by the calling thread (molora__route_fail) */
#define MOLORA__ROUTE_OK 0
/* From finite x and weights a logit is NaN or +-inf only when its sum overflowed float, and which
   of the two depends on the summation order (ntn's lanes meet +inf and -inf as NaN, gto's one
   chain stays at +-inf): either is the same error, so the outcome does not depend on the kernel,
   nor on the T that picked it */
#define MOLORA__ROUTE_GATE_BAD 1   /* a gate logit is not finite */
#define MOLORA__ROUTE_THR_BAD 2    /* a threshold logit is not finite */
#define MOLORA__ROUTE_X 3          /* x has NaN or Inf */
MOLORA__PRIVATE molora_result molora__route_fail(const molora__call *c, int why)
{
    if (why == MOLORA__ROUTE_GATE_BAD)
        return molora__fail(&c->lg, MOLORA_RESULT_NON_FINITE,
                            "forward: layer %d gate logits are not finite (inputs too large)", c->args->layer);
    if (why == MOLORA__ROUTE_THR_BAD)
        return molora__fail(&c->lg, MOLORA_RESULT_NON_FINITE,
                            "forward: layer %d threshold logit is not finite (inputs too large)", c->args->layer);
    return molora__fail(&c->lg, MOLORA_RESULT_NON_FINITE, "forward: input x has NaN or Inf");
}

/* gto for the gate (>>outer) where the layer has GT: beyond MOLORA__SMALL_T tokens, and from 4
   tokens on gates of 64 rows up. Measured in cache on Zen 4 (ms, d 4096): 64 rows at T = 8 gto
   0.040, ntn 0.062; at T = 2 0.015 / 0.016; 16 rows at T = 8 0.018 / 0.014, T = 16 0.028 / 0.029 */
MOLORA__PRIVATE int molora__gate_gto(const molora__call *c)
{
    int ng = c->L->n_rows - c->L->r_total;
    return c->L->GT && (c->T > MOLORA__SMALL_T || (c->T >= 4 && ng >= MOLORA__GTO_STRIP));
}

/* G's rows t0 .. t0 + tb - 1 = those of X [Wg; wt]^T: the gate logits and the threshold-net logit,
   all routing reads of X; 1 when they are all finite. A block after the first only through gto or
   the narrow kernel (allow MOLORA__ALLOW_NARROW, gates of up to 32 rows), which read X row by row
   and give each token's logits alone (X's packed panels hold every token). */
MOLORA__PRIVATE int molora__gate_block(const molora__call *c, int t0, int tb, int allow)
{
    int ng = c->L->n_rows - c->L->r_total;
    float *G = c->G + (size_t)t0 * ng;
    molora__input in = c->in;
    MOLORA_ASSERT(t0 == 0 || molora__gate_gto(c) || (allow == MOLORA__ALLOW_NARROW && ng <= 32));
    in.T = tb; in.x += (size_t)t0 * in.K; in.X += (size_t)t0 * in.ldx;
    if (molora__gate_gto(c)) {   /* gto's rows, then the rest (up to 15) on ntn */
        int ngt = molora__gto_rows(ng);
        molora__get_kernels()->gto(tb, ngt, in.K, in.x, in.K, c->L->GT, G, ng);
        if (ngt < ng)
            molora__mul_xwt(&in, MOLORA__ALLOW_NARROW, ng - ngt, c->L->R + (size_t)ngt * in.K, 0, G + ngt, ng);
    } else {
        molora__mul_xwt(&in, allow, ng, c->L->R, 0, G, ng);
    }
    return molora__all_finite(G, (size_t)tb * ng);
}

/* G (T, ng) for every token, then X's finiteness from G's (molora__gate_checks_x) */
MOLORA__PRIVATE molora_result molora__gate_logits(molora__call *c)
{
    int ng = c->L->n_rows - c->L->r_total, finite;
    /* gto where molora__gate_gto says (the layer has GT: beyond MOLORA__SMALL_T tokens, from 4 for
       64 rows and more); else ntn for up to 32 rows (N + 1) at any T, too narrow for BLAS's
       packing to pay off, and for any gate at T <= MOLORA__SMALL_T: molora_route does not pack X,
       so the gate must not depend on the packed layout, or route and forward would differ in the
       last bits; wider gates above use BLAS */
    if (ng == 0) return MOLORA_RESULT_SUCCESS;
    finite = molora__gate_block(c, 0, c->T, ng <= 32 || c->T <= MOLORA__SMALL_T ? MOLORA__ALLOW_NARROW : 0);
    if (molora__gate_checks_x(c) && !finite && !molora__all_finite(c->args->x, (size_t)c->T * (size_t)c->L->d_in))
        return molora__route_fail(c, MOLORA__ROUTE_X);
    return MOLORA_RESULT_SUCCESS;
}

/* w = the given weights, masked entries 0 */
MOLORA__PRIVATE void molora__route_fixed(molora__call *c)
{
    const molora_forward_args *a = c->args;
    int t, i, n = c->n;
    for (t = 0; t < c->T; t++) {
        const uint8_t *allow = molora__allow(a, t, n);
        const float *v = a->weights + (a->weights_per_token ? (size_t)t * n : 0);
        for (i = 0; i < n; i++) c->w[(size_t)t * n + i] = (!allow || allow[i]) ? v[i] : 0.0f;
    }
}

/* w of tokens t0 .. t0 + tb - 1 (tb <= MOLORA__ROUTE_BLOCK) from their gate logits z + gate bias
   (and threshold logit u) by the layer's rule: each token's shifted logits, then one exps over
   the block's rows (and one over its threshold nets' exp(-|u|)), then each token's division and
   rule. A row that needs no exp (molora__softmax_shift's flag) is shifted again after the exps,
   which overwrote it. Writes only the block's rows of G and w; MOLORA__ROUTE_* */
#define MOLORA__ROUTE_BLOCK 32
MOLORA__PRIVATE int molora__route_n_blocks(int T) { return (T + MOLORA__ROUTE_BLOCK - 1) / MOLORA__ROUTE_BLOCK; }
/* the tokens of block b: MOLORA__ROUTE_BLOCK, the last block fewer */
MOLORA__PRIVATE int molora__route_block_len(int T, int b)
{
    return T - b * MOLORA__ROUTE_BLOCK < MOLORA__ROUTE_BLOCK ? T - b * MOLORA__ROUTE_BLOCK : MOLORA__ROUTE_BLOCK;
}
MOLORA__PRIVATE int molora__route_block(const molora__call *c, int t0, int tb)
{
    const molora__layer *L = c->L;
    int t, i, n = c->n, ng = L->n_rows - L->r_total, done[MOLORA__ROUTE_BLOCK];
    float e[MOLORA__ROUTE_BLOCK], u[MOLORA__ROUTE_BLOCK];   /* per token: exp(-|u|), the threshold logit */
    const uint8_t *allow[MOLORA__ROUTE_BLOCK];              /* per token: its mask row (molora__allow) */
    for (t = t0; t < t0 + tb; t++) {
        float *z = c->G + (size_t)t * ng;
        u[t - t0] = L->thr_row >= 0 ? z[n] + L->thr_bias : 0.0f;
        allow[t - t0] = molora__allow(c->args, t, n);
        for (i = 0; i < n; i++) {
            if (L->gate_bias) z[i] += L->gate_bias[i];
            if (!isfinite(z[i])) return MOLORA__ROUTE_GATE_BAD;
        }
        if (!isfinite(u[t - t0])) return MOLORA__ROUTE_THR_BAD;
        e[t - t0] = -fabsf(u[t - t0]);
        done[t - t0] = molora__route_shift(L, z, allow[t - t0], c->w + (size_t)t * n);
    }
    molora__get_kernels()->exps(c->w + (size_t)t0 * n, tb * n);
    if (L->routing == MOLORA_ROUTING_ADAMOLE) molora__get_kernels()->exps(e, tb);
    for (t = t0; t < t0 + tb; t++) {
        float *w = c->w + (size_t)t * n;
        if (done[t - t0]) molora__route_shift(L, c->G + (size_t)t * ng, allow[t - t0], w);
        molora__route_finish(L, molora__sigmoid(u[t - t0], e[t - t0]), allow[t - t0], w, done[t - t0]);
    }
    return MOLORA__ROUTE_OK;
}

/* w from the gate logits by the layer's rule, block after block */
MOLORA__PRIVATE molora_result molora__route_gates(molora__call *c)
{
    int b, why;
    for (b = 0; b < molora__route_n_blocks(c->T); b++)
        if ((why = molora__route_block(c, b * MOLORA__ROUTE_BLOCK, molora__route_block_len(c->T, b))))
            return molora__route_fail(c, why);
    return MOLORA_RESULT_SUCCESS;
}

/* The gate routing as the hook's tasks, from 2 blocks of tokens up (before the products, in a hook
   call of its own): block b's gate logits, its G's finiteness and its weights, the same products
   and steps as on the calling thread (the narrow kernel, up to 32 gate rows, computes each token
   alone, as does gto for wider gates), so the routing stays bitwise that of the one-task call.
   Task k runs blocks k, k + n_tasks, ... and leaves each block's outcome in c->gs[b] (free until
   the grouped path's lists): its MOLORA__ROUTE_* code, plus MOLORA__ROUTE_G_INF when its logits
   are not all finite. */
#define MOLORA__ROUTE_G_INF 4
MOLORA__PRIVATE int molora__route_splits(const molora__call *c)
{
    const molora_forward_args *a = c->args;
    int ng = c->L->n_rows - c->L->r_total;
    return a->parallel_for && c->n_tasks > 1 && c->n > 0 && ng > 0 && (ng <= 32 || molora__gate_gto(c)) &&
           !a->adapter_index && !a->weights && c->L->routing != MOLORA_ROUTING_MOLE_OUTPUT &&
           c->T >= 2 * MOLORA__ROUTE_BLOCK;
}
MOLORA__PRIVATE void molora__route_task(void *ctx, int k, int n_tasks)
{
    const molora__call *c = (const molora__call *)ctx;
    int b;
    MOLORA_ASSERT(n_tasks == c->n_tasks && k >= 0 && k < n_tasks);
    if (k < 0 || k >= c->n_tasks) return;
    for (b = k; b < molora__route_n_blocks(c->T); b += c->n_tasks) {
        int t0 = b * MOLORA__ROUTE_BLOCK, tb = molora__route_block_len(c->T, b);
        c->gs[b] = molora__gate_block(c, t0, tb, MOLORA__ALLOW_NARROW) ? 0 : MOLORA__ROUTE_G_INF;
        c->gs[b] |= molora__route_block(c, t0, tb);
    }
}
/* The split routing's error, as the calling thread's routing would give it: x's first (a block
   with logits not all finite, and x not finite), then the first block's */
MOLORA__PRIVATE molora_result molora__route_split_result(const molora__call *c)
{
    int b, nb = molora__route_n_blocks(c->T);
    for (b = 0; b < nb; b++)
        if (c->gs[b] & MOLORA__ROUTE_G_INF) {
            if (!molora__all_finite(c->args->x, (size_t)c->T * (size_t)c->L->d_in))
                return molora__route_fail(c, MOLORA__ROUTE_X);
            break;
        }
    for (b = 0; b < nb; b++)
        if (c->gs[b] & ~MOLORA__ROUTE_G_INF) return molora__route_fail(c, c->gs[b] & ~MOLORA__ROUTE_G_INF);
    return MOLORA_RESULT_SUCCESS;
}

/* MoLE output gate: D_i = s_i H_i B_i^T (T, d_out) per expert, logits = e^T D / ||D||, softmax.
   H = X A^T holds every expert's inputs; it is scaled by s_i in place. */
MOLORA__PRIVATE molora_result molora__route_mole(molora__call *c)
{
    const molora__layer *L = c->L;
    const molora_forward_args *a = c->args;
    int T = c->T, n = c->n, O = L->d_out, t, i, j, ldb;
    size_t ld = (size_t)n * (size_t)O, o;
    if (!L->bf16) molora__mul_xwt(&c->in, 0, L->r_total, L->A, 0, c->H, L->r_total);
    for (i = 0; i < n; i++) {
        float *Di = c->D + (size_t)i * O;
        const float *bt;
        if (L->bf16)   /* expert by expert through the tile */
            molora__mul_xwt(&c->in, 0, L->rank[i], molora__rows_a(c, i, L->rank[i]), 0, c->H + L->offset[i],
                            L->r_total);
        if (a->expert_mask && !a->mask_per_token && !a->expert_mask[i]) {
            for (t = 0; t < T; t++) memset(Di + (size_t)t * ld, 0, (size_t)O * sizeof(float));
            continue;
        }
        for (t = 0; t < T; t++)
            for (j = L->offset[i]; j < L->offset[i] + L->rank[i]; j++)
                c->H[(size_t)t * L->r_total + j] *= L->scaling[i];
        bt = molora__rows_bt(c, i, L->rank[i], 0, O, &ldb);
        molora__mul_ab(0, T, O, L->rank[i], c->H + L->offset[i], L->r_total, bt, ldb, 0, Di, (int)ld);
    }
    if (a->expert_mask && a->mask_per_token)
        for (t = 0; t < T; t++)
            for (i = 0; i < n; i++)
                if (!a->expert_mask[(size_t)t * n + i])
                    memset(c->D + (size_t)t * ld + (size_t)i * O, 0, (size_t)O * sizeof(float));
    molora__mul_abt(T, n, (int)ld, c->D, (int)ld, L->mole_gate, (int)ld, 0, c->w, n);
    for (t = 0; t < T; t++) {
        const float *d = c->D + (size_t)t * ld;
        const uint8_t *allow = molora__allow(a, t, n);
        float *wt = c->w + (size_t)t * n;
        double ss = 0.0, norm;
        for (o = 0; o < ld; o++) ss += (double)d[o] * d[o];
        norm = sqrt(ss) > 1e-12 ? sqrt(ss) : 1e-12;   /* F.normalize: v / max(||v||, eps) */
        for (i = 0; i < n; i++) {
            wt[i] = (float)(wt[i] / norm) + (L->gate_bias ? L->gate_bias[i] : 0.0f);
            if (isnan(wt[i]))
                return molora__fail(&c->lg, MOLORA_RESULT_NON_FINITE,
                                    "forward: layer %d MoLE output-gate logits are NaN (inputs too large)", a->layer);
            if (allow && !allow[i]) wt[i] = NAN;
        }
        molora__softmax(wt, n, L->temperature);
    }
    return MOLORA_RESULT_SUCCESS;
}

/* w = one-hot rows: weight 1 on token t's adapter, none for -1 */
MOLORA__PRIVATE void molora__route_index(molora__call *c)
{
    int t, n = c->n;
    memset(c->w, 0, (size_t)c->T * n * sizeof(float));
    for (t = 0; t < c->T; t++)
        if (c->args->adapter_index[t] >= 0) c->w[(size_t)t * n + c->args->adapter_index[t]] = 1.0f;
}

/* w (T, n): the adapter index's, the given weights, the MoLE output gate's, or the layer's gate rule's */
MOLORA__PRIVATE molora_result molora__route(molora__call *c)
{
    if (c->args->adapter_index) { molora__route_index(c); return MOLORA_RESULT_SUCCESS; }
    if (c->args->weights) { molora__route_fixed(c); return MOLORA_RESULT_SUCCESS; }
    if (c->L->routing == MOLORA_ROUTING_MOLE_OUTPUT) return molora__route_mole(c);
    return molora__route_gates(c);
}

/* weights_out and counts_out, written by caller 0 of a split */
MOLORA__PRIVATE void molora__report(const molora__call *c)
{
    const molora_forward_args *a = c->args;
    int t, i, n = c->n;
    if (c->ith != 0) return;
    if (a->counts_out)
        for (t = 0; t < c->T; t++)
            for (i = 0; i < n; i++) a->counts_out[i] += c->w[(size_t)t * n + i] != 0.0f;
    if (a->weights_out) memcpy(a->weights_out, c->w, (size_t)c->T * n * sizeof(float));
}

/* The grouped path reads only the routed experts' rows for each token, the dense products every
   active expert's rows once for all tokens: grouped wins when fewer than 1 in the CPU's table's
   by_expert_ratio of the (token, active rank) pairs are routed (MOLORA__BY_EXPERT_RATIO, 4; AMD's
   AVX-512 table 3). Its by-token order (tokens selecting more than 2 experts on average) costs more
   per pair than its by-expert order where it was measured first (Intel), so there it needs fewer:
   1 in by_token_ratio (MOLORA__BY_TOKEN_RATIO, 6); AMD's AVX-512 table runs it cheaper and
   switches at 1 in 3, and keeps that order to mean ranks below 2: by expert, where each expert's
   rows are read once per 16 of its tokens, S3 top-4 (rank 16) takes 1.5-1.7 ms at T = 64 against
   2.7 by token (T = 512 14.4-16.4 against 20.5-21), while S6's rank-1 top-8 is as fast at T = 64
   and slower at T = 512 (8.6-9.6 against 6.9-7.4). A BF16 layer then runs by expert (its rows
   widened once per expert), as measured on AMD faster than dense there too (S3, top-4 of 16
   rank-16 experts: T = 64 1.3-1.8 ms against 4.0-4.1, T = 512 11-12 against 25-29). */

/* The routing's counts: c->act[i] = 1 when some token routes to expert i; pairs: the routed
   (token, rank) pairs; e_pairs: the routed (token, expert) pairs; routed: the tokens with some
   expert. w is read in its own row order (by expert it was a stride of n floats per step: at a
   pool's 256 experts each read a new cache line); an adapter index is counted from the index
   alone, in O(T + n), as w is one-hot. */
typedef struct molora__routed { size_t pairs, e_pairs, routed; } molora__routed;
MOLORA__PRIVATE molora__routed molora__count_routed(const molora__call *c)
{
    const molora__layer *L = c->L;
    const int32_t *idx = c->args->adapter_index;
    molora__routed r = {0, 0, 0};
    int t, i;
    for (i = 0; i < c->n; i++) c->act[i] = 0;
    for (t = 0; t < c->T; t++) {
        const float *wt = c->w + (size_t)t * c->n;
        size_t e = 0;
        if (idx) {
            if (idx[t] < 0) continue;
            c->act[idx[t]] = 1; r.pairs += (size_t)L->rank[idx[t]]; e = 1;
        } else
            for (i = 0; i < c->n; i++)
                if (wt[i] != 0.0f) { c->act[i] = 1; r.pairs += (size_t)L->rank[i]; e++; }
        r.e_pairs += e;
        r.routed += e > 0;
    }
    return r;
}

/* the active experts' rank, summed */
MOLORA__PRIVATE size_t molora__active_rank(const molora__call *c)
{
    size_t r_act = 0;
    int i;
    for (i = 0; i < c->n; i++) r_act += c->act[i] ? (size_t)c->L->rank[i] : 0;
    return r_act;
}

/* The grouped path's order from the routing's counts: by token when the routed tokens select
   more than 2 experts on average and their mean rank is below the table's by_token_rank, else
   by expert */
MOLORA__PRIVATE int molora__order_by_token(size_t pairs, size_t e_pairs, size_t routed)
{
    return e_pairs > 2 * routed && pairs < (size_t)molora__get_kernels()->by_token_rank * e_pairs;
}
#ifdef MOLORA_TEST_HOOKS
/* Test hook: the order from the counts (1: by token), as molora__choose_path takes it */
MOLORA_API int molora__order_check(size_t pairs, size_t e_pairs, size_t routed)
{
    return molora__order_by_token(pairs, e_pairs, routed);
}
#endif

/* The path, chosen once after routing: by T (decode, small, gemm), or SPARSE when the experts
   will run per token; marks the experts some token routes to in c->act. */
MOLORA__PRIVATE molora_path molora__choose_path(molora__call *c)
{
    const molora__layer *L = c->L;
    molora_path by_t = c->T == 1 ? MOLORA_PATH_DECODE : c->T <= MOLORA__SMALL_T ? MOLORA_PATH_SMALL : MOLORA_PATH_GEMM;
    const molora__kernels *kr = molora__get_kernels();
    size_t r_act;
    molora__routed rc;
    int ratio, full = c->args->output == MOLORA_OUTPUT_FULL;
    if (!c->apply) return MOLORA_PATH_NONE;   /* routing only */
    if (c->n == 0) return full ? by_t : MOLORA_PATH_NONE;
    /* computed from the routing alone, so every ith / nth caller (one without columns too) and
       every split reports the same path */
    rc = molora__count_routed(c);
    r_act = molora__active_rank(c);
    if (r_act == 0) return full ? by_t : MOLORA_PATH_NONE;   /* no expert routed: the frozen layer or nothing */
    if (L->routing == MOLORA_ROUTING_MOLE_OUTPUT && !c->args->weights && !c->args->adapter_index)
        return by_t;   /* the output gate mixes the deltas routing already computed */
    c->by_token = molora__order_by_token(rc.pairs, rc.e_pairs, rc.routed);
    ratio = c->by_token ? kr->by_token_ratio : kr->by_expert_ratio;
    if (c->T > 1 && rc.pairs * (size_t)ratio < (size_t)c->T * r_act) {
        if (L->bf16) c->by_token = 0;   /* BF16 experts run by expert: each expert's rows widened once */
        return MOLORA_PATH_SPARSE;
    }
    return by_t;
}

/* Y = X W0^T + b, or X W0 + b for W0 stored (d_in, d_out), on this caller's columns */
MOLORA__PRIVATE void molora__frozen(const molora__call *c)
{
    const molora__layer *L = c->L;
    int t, j;
    if (L->w0_in_out)   /* rows of W0 are runs of output columns: the nn form streams them */
        molora__mul_ab(MOLORA__ALLOW_GEMV, c->T, c->O, L->d_in, c->in.X, c->in.ldx, L->W0 + c->o0, L->d_out, 0,
                       c->Y, L->d_out);
    else if (molora__own_nt(c->T))   /* no packing of W0 */
        molora__nt_own(c->T, c->O, L->d_in, c->in.X, c->in.ldx, L->W0 + (size_t)c->o0 * L->d_in, L->d_in, c->Y,
                       L->d_out);
    else
        molora__mul_xwt(&c->in, MOLORA__ALLOW_GEMV, c->O, L->W0 + (size_t)c->o0 * L->d_in, 0, c->Y, L->d_out);
    if (L->bias)
        for (t = 0; t < c->T; t++)
            for (j = 0; j < c->O; j++) c->Y[(size_t)t * L->d_out + j] += L->bias[c->o0 + j];
}

/* 1 when the layer's output is MoLE's output mix of the deltas routing computed (its gate routes:
   no fixed weights or adapter index replace it) */
MOLORA__PRIVATE int molora__mole_mixes(const molora__call *c)
{
    return c->L->routing == MOLORA_ROUTING_MOLE_OUTPUT && !c->args->weights && !c->args->adapter_index;
}

/* MoLE output mix: Y += sum_i w_i D_i, the deltas already computed by the routing */
MOLORA__PRIVATE void molora__mole_mix(const molora__call *c)
{
    const molora__layer *L = c->L;
    size_t ld = (size_t)c->n * L->d_out;
    int t, i, j;
    for (t = 0; t < c->T; t++)
        for (i = 0; i < c->n; i++) {
            float wi = c->w[(size_t)t * c->n + i];
            const float *d = c->D + (size_t)t * ld + (size_t)i * L->d_out + c->o0;
            float *y = c->Y + (size_t)t * L->d_out;
            if (wi == 0.0f) continue;
            for (j = 0; j < c->O; j++) y[j] += wi * d[j];
        }
}

/* The grouped sparse path (grouped GEMM, Punica's SGMV): only the routed (token, expert) pairs
   are computed, in the order that reads least, chosen by how many experts a token selects:
   - by expert (up to 2 experts per token, e.g. adapter pools): each expert's tokens in blocks
     of 16 against its rows of A (ntg, d_in in tiles that keep the block's X in L1, 6 tokens x 4
     rows in registers), then of B^T (nng, strips of 64 columns of B^T in L1, 4 tokens x 64
     columns of Y in registers): the expert's rows are read once per block (from DRAM, prefetched
     ahead, for the first), each row of X and Y once per expert of its token; an expert with a
     single token runs decode's kernels (gvt, gvn) on it;
   - by token (more, e.g. top-8 of 64): each token against its experts' rows (dots, axpys), K
     and d_out in tiles so that the tile of every active expert's rows stays in L2 while the
     tokens stream past it: each row of X and Y is read once, however many experts it selects. */

/* the lists: by token, list t holds the experts token t routes to; by expert, list i holds the
   tokens routed to expert i (counting sort of w's nonzero entries). Returns the pairs. */
MOLORA__PRIVATE int molora__group_lists(const molora__call *c, int by_token)
{
    int t, i, p = 0, n = c->n;
    if (by_token) {
        for (t = 0; t < c->T; t++) {
            c->gs[t] = p;
            for (i = 0; i < n; i++)
                if (c->w[(size_t)t * n + i] != 0.0f) c->gl[p++] = i;
        }
        c->gs[c->T] = p;
        return p;
    }
    /* by expert: a counting sort in w's row order (an index's entries alone), tokens ascending
       in each list: gs[i + 1] counts expert i's tokens, the prefix sums make gs[i] the start of
       list i, which runs to its end while the list fills; then shifted back to the starts */
    for (i = 0; i <= n; i++) c->gs[i] = 0;
    for (t = 0; t < c->T; t++) {
        const int32_t *idx = c->args->adapter_index;
        if (idx) { if (idx[t] >= 0) c->gs[idx[t] + 1]++; continue; }
        for (i = 0; i < n; i++) c->gs[i + 1] += c->w[(size_t)t * n + i] != 0.0f;
    }
    for (i = 0; i < n; i++) c->gs[i + 1] += c->gs[i];
    p = c->gs[n];
    for (t = 0; t < c->T; t++) {
        const int32_t *idx = c->args->adapter_index;
        if (idx) { if (idx[t] >= 0) c->gl[c->gs[idx[t]]++] = t; continue; }
        for (i = 0; i < n; i++)
            if (c->w[(size_t)t * n + i] != 0.0f) c->gl[c->gs[i]++] = t;
    }
    for (i = n; i > 0; i--) c->gs[i] = c->gs[i - 1];   /* the running ends back to the starts */
    c->gs[0] = 0;
    return p;
}

/* by expert: h = X_b A_i^T for a block b of 16 of expert i's tokens, h *= w s_i, Y_b += h B_i^T.
   The shrink runs over d_in in tiles of MOLORA__NTG_KT: the block's rows of X in the tile stay in
   L1 while every rank row of A_i passes them (over all of d_in they were re-read from L2 for every
   3 rank rows). */
#define MOLORA__NTG_KT 512
MOLORA__PRIVATE void molora__one_token_shrink(const molora__call *c, int i, int t)
{   /* h = A_i x_t (gvt), h *= w s_i: float32 rows, or BF16 ones widened through the seam */
    const molora__layer *L = c->L;
    float *h = c->H + (size_t)t * L->r_total + L->offset[i], coef = c->w[(size_t)t * c->n + i] * L->scaling[i];
    int q;
    molora__get_kernels()->gvt(L->rank[i], L->d_in, c->in.X + (size_t)t * c->in.ldx, molora__rows_a(c, i, L->rank[i]),
                               L->d_in, h, 0);
    for (q = 0; q < L->rank[i]; q++) h[q] *= coef;
}
/* by expert, an expert with a single token t (an adapter pool's request alone on its adapter):
   decode's kernels, h = A_i x_t (gvt), h *= w s_i, y_t += h B_i^T (gvn), which stream the
   expert's rows 8 at a time end to end, where the tiled kernels read B_i^T in 64-column strips;
   BF16 rows straight from the packed bits where the CPU reads them in registers (nt16, nn16) */
MOLORA__PRIVATE void molora__expert_one_token(const molora__call *c, int i, int t)
{
    const molora__layer *L = c->L;
    const molora__kernels *kr = molora__get_kernels();
    const float *x = c->in.X + (size_t)t * c->in.ldx, *bt;
    float *h = c->H + (size_t)t * L->r_total + L->offset[i], *y = c->Y + (size_t)t * L->d_out;
    float coef = c->w[(size_t)t * c->n + i] * L->scaling[i];
    int q, r = L->rank[i], ldb;
    if (L->bf16 && kr->nt16) {
        MOLORA_ASSERT(!c->h_shared);
        kr->nt16(1, r, L->d_in, x, c->in.ldx, L->A16 + (size_t)L->offset[i] * L->d_in, L->d_in, h, r);
        for (q = 0; q < r; q++) h[q] *= coef;
        kr->nn16(1, c->O, r, h, r, L->BT16 + (size_t)L->offset[i] * L->d_out + c->o0, L->d_out, y, L->d_out);
        return;
    }
    if (!c->h_shared) molora__one_token_shrink(c, i, t);   /* else the hook's first call left h in slice 0 */
    bt = molora__rows_bt(c, i, r, c->o0, c->O, &ldb);
    kr->gvn(c->O, r, h, bt, ldb, y, 1);
}

/* by expert, expert i's block of tokens gl[p .. p + tb - 1]: up to MOLORA__GROUP_BLOCK of its tokens */
#define MOLORA__GROUP_BLOCK 16
MOLORA__PRIVATE int molora__group_block(const molora__call *c, int i, int p)
{
    return c->gs[i + 1] - p < MOLORA__GROUP_BLOCK ? c->gs[i + 1] - p : MOLORA__GROUP_BLOCK;
}
/* the block's shrink: h = X_b A_i^T over d_in in tiles of MOLORA__NTG_KT (a: A_i's rows, the
   seam's), then h *= w s_i */
MOLORA__PRIVATE void molora__group_shrink(const molora__call *c, int i, int p, const float *a)
{
    const molora__layer *L = c->L;
    const float *xp[MOLORA__GROUP_BLOCK];
    float *hp[MOLORA__GROUP_BLOCK];
    int j, q, k0, tb = molora__group_block(c, i, p);
    for (j = 0; j < tb; j++) {
        xp[j] = c->in.X + (size_t)c->gl[p + j] * c->in.ldx;
        hp[j] = c->H + (size_t)c->gl[p + j] * L->r_total + L->offset[i];
    }
    for (k0 = 0; k0 < L->d_in; k0 += MOLORA__NTG_KT) {
        int kb = L->d_in - k0 < MOLORA__NTG_KT ? L->d_in - k0 : MOLORA__NTG_KT;
        if (k0 > 0) for (j = 0; j < tb; j++) xp[j] += MOLORA__NTG_KT;
        molora__get_kernels()->ntg(tb, L->rank[i], kb, xp, a + k0, L->d_in, hp, k0 > 0);
    }
    for (j = 0; j < tb; j++) {
        float coef = c->w[(size_t)c->gl[p + j] * c->n + i] * L->scaling[i];
        for (q = 0; q < L->rank[i]; q++) hp[j][q] *= coef;
    }
}
/* the block's expand on the call's columns: Y_b += h B_i^T (bt: B_i^T's columns, row stride ldb) */
MOLORA__PRIVATE void molora__group_expand(const molora__call *c, int i, int p, const float *bt, int ldb)
{
    const molora__layer *L = c->L;
    const float *hc[MOLORA__GROUP_BLOCK];
    float *yp[MOLORA__GROUP_BLOCK];
    int j, tb = molora__group_block(c, i, p);
    for (j = 0; j < tb; j++) {
        hc[j] = c->H + (size_t)c->gl[p + j] * L->r_total + L->offset[i];
        yp[j] = c->Y + (size_t)c->gl[p + j] * L->d_out;
    }
    molora__get_kernels()->nng(tb, c->O, L->rank[i], hc, bt, ldb, yp);
}
MOLORA__PRIVATE void molora__grouped_by_expert(const molora__call *c)
{
    const molora__layer *L = c->L;
    int i, p, ldb;
    for (i = 0; i < c->n; i++) {
        const float *a, *bt;
        if (c->gs[i + 1] - c->gs[i] <= 1) {   /* none, or one token */
            if (c->gs[i + 1] > c->gs[i]) molora__expert_one_token(c, i, c->gl[c->gs[i]]);
            continue;
        }
        a = c->h_shared ? NULL : molora__rows_a(c, i, L->rank[i]);   /* the seam */
        bt = molora__rows_bt(c, i, L->rank[i], c->o0, c->O, &ldb);
        for (p = c->gs[i]; p < c->gs[i + 1]; p += MOLORA__GROUP_BLOCK) {
            if (!c->h_shared) molora__group_shrink(c, i, p, a);
            molora__group_expand(c, i, p, bt, ldb);
        }
    }
}

/* floats of the active experts' rows in one tile of the by-token order: a tile stays in L2 */
#define MOLORA__GROUP_TILE ((size_t)1 << 16)
MOLORA__PRIVATE int molora__group_tile(size_t rows, int K)
{
    size_t kc = (MOLORA__GROUP_TILE / (rows ? rows : 1)) & ~(size_t)15;
    if (kc < 256) kc = 256;
    return kc < (size_t)K ? (int)kc : K;
}

/* by token, token t on columns c0 .. c0 + cb - 1, its rows 64 at a time: shrink h (= or +=) A x,
   or expand y += h B^T */
MOLORA__PRIVATE void molora__token_rows(const molora__call *c, int t, int c0, int cb, int expand)
{
    const molora__layer *L = c->L;
    const molora__kernels *kr = molora__get_kernels();
    const float *rows[64], *x = c->in.X + (size_t)t * c->in.ldx + c0;
    float part[64], *hq[64], *y = expand ? c->Y + (size_t)t * L->d_out + c0 : NULL;
    int p, q, j, m = 0;
    for (p = c->gs[t]; p <= c->gs[t + 1]; p++) {
        int i = p < c->gs[t + 1] ? c->gl[p] : -1;
        for (q = 0; q < (i >= 0 ? L->rank[i] : 1); q++) {
            if (m == 64 || (i < 0 && m > 0)) {   /* flush: 64 rows gathered, or the token's last */
                if (!expand) kr->dots(m, rows, x, cb, part);
                for (j = 0; j < m; j++) {
                    if (expand) part[j] = *hq[j];
                    else *hq[j] = c0 > 0 ? *hq[j] + part[j] : part[j];
                }
                if (expand) kr->axpys(m, rows, part, y, cb);
                m = 0;
            }
            if (i < 0) break;
            hq[m] = c->H + (size_t)t * L->r_total + L->offset[i] + q;
            rows[m++] = expand ? L->BT + (size_t)(L->offset[i] + q) * L->d_out + c->o0 + c0
                               : L->A + (size_t)(L->offset[i] + q) * L->d_in + c0;
        }
    }
}

/* by token, the shrink of tokens t0, t0 + dt, ...: h = A x over d_in in tiles that keep the
   active experts' rows in L2, then h *= w s (the same operations for a token whichever tasks
   share the tokens) */
MOLORA__PRIVATE void molora__token_shrink(const molora__call *c, int t0, int dt)
{
    const molora__layer *L = c->L;
    int t, p, q, k0, kc = molora__group_tile(molora__active_rank(c), L->d_in);
    for (k0 = 0; k0 < L->d_in; k0 += kc)
        for (t = t0; t < c->T; t += dt) molora__token_rows(c, t, k0, L->d_in - k0 < kc ? L->d_in - k0 : kc, 0);
    for (t = t0; t < c->T; t += dt)
        for (p = c->gs[t]; p < c->gs[t + 1]; p++) {
            float coef = c->w[(size_t)t * c->n + c->gl[p]] * L->scaling[c->gl[p]];
            float *h = c->H + (size_t)t * L->r_total + L->offset[c->gl[p]];
            for (q = 0; q < L->rank[c->gl[p]]; q++) h[q] *= coef;
        }
}
/* by token: the shrink (unless the hook's first call did it), then every token's expand on the
   call's columns */
MOLORA__PRIVATE void molora__grouped_by_token(const molora__call *c)
{
    int t, k0, nc = molora__group_tile(molora__active_rank(c), c->O);
    MOLORA_ASSERT(!c->L->bf16);   /* molora__choose_path sends BF16 layers by expert, through the seam */
    if (!c->h_shared) molora__token_shrink(c, 0, 1);   /* else the hook's first call left H in slice 0 */
    for (k0 = 0; k0 < c->O; k0 += nc)
        for (t = 0; t < c->T; t++) molora__token_rows(c, t, k0, c->O - k0 < nc ? c->O - k0 : nc, 1);
}

/* The grouped path's shrink as the hook's first call, on a float32 layer, into slice 0's H, which
   every task of the second call then reads (molora__task). By expert, its blocks (an expert's one
   token, or up to 16 of its tokens) numbered in order, task k computing blocks k, k + n_tasks, ...;
   by token, tokens k, k + n_tasks, ...; with the kernels and rows of the one-task call (the same
   bits) */
MOLORA__PRIVATE int molora__group_h_splits(const molora__call *c)
{
    return c->path == MOLORA_PATH_SPARSE && !c->L->bf16 && !molora__mole_mixes(c);
}
MOLORA__PRIVATE void molora__group_shrink_task(void *ctx, int k, int n_tasks)
{
    const molora__call *c = (const molora__call *)ctx;
    molora__call t = *c;
    int i, p, u = 0;
    MOLORA_ASSERT(n_tasks == c->n_tasks && k >= 0 && k < n_tasks && !c->L->bf16);   /* one tile: slice 0's */
    if (k < 0 || k >= c->n_tasks) return;
    t.H = (float *)c->slices;
    if (c->by_token) { molora__token_shrink(&t, k, c->n_tasks); return; }
    for (i = 0; i < c->n; i++)
        for (p = c->gs[i]; p < c->gs[i + 1]; p += MOLORA__GROUP_BLOCK, u++) {
            if (u % c->n_tasks != k) continue;
            if (c->gs[i + 1] - c->gs[i] == 1) molora__one_token_shrink(&t, i, c->gl[p]);
            else molora__group_shrink(&t, i, p, molora__rows_a(&t, i, c->L->rank[i]));
        }
}

/* Experts grouped, in the order molora__choose_path picked (molora__order_by_token) */
MOLORA__PRIVATE void molora__experts_grouped(const molora__call *c)
{
    if (c->by_token) molora__grouped_by_token(c);
    else molora__grouped_by_expert(c);
}

/* Experts dense, over each run i .. i1-1 of consecutive active experts: H = X A^T, H_i *= w_i s_i
   per token, Y += H B^T. BF16 experts: up to MOLORA__SMALL_T tokens on kernels that read BF16
   (nt16 / nn16), the run straight from the packed rows; else runs of up to the tile's rows
   (one expert up to MOLORA__SMALL_T tokens, MOLORA__RUN_ROWS beyond), widened through the seam.
   Float32 experts beyond MOLORA__SMALL_T tokens: H in token blocks first, then the runs' expands. */

/* H's rows t0 .. t1 - 1 of experts i .. i1 - 1 scaled by w s: h *= w_ti s_i */
MOLORA__PRIVATE void molora__scale_h(const molora__call *c, int i, int i1, int t0, int t1)
{
    const molora__layer *L = c->L;
    int t, j, q;
    for (t = t0; t < t1; t++)
        for (j = i; j < i1; j++) {
            float coef = c->w[(size_t)t * c->n + j] * L->scaling[j];
            float *h = c->H + (size_t)t * L->r_total + L->offset[j];
            for (q = 0; q < L->rank[j]; q++) h[q] *= coef;
        }
}

/* The next run of the dense experts from i: consecutive active experts (a BF16 layer's that are
   widened: at most c->tile_rows rows). Returns its end i1 (i1 == i: expert i is not active), and
   its rows in *rr. */
MOLORA__PRIVATE int molora__dense_run(const molora__call *c, int i, int widened, int *rr)
{
    const molora__layer *L = c->L;
    int i1;
    *rr = 0;
    for (i1 = i; i1 < c->n && c->act[i1] && !(widened && *rr + L->rank[i1] > c->tile_rows); i1++) *rr += L->rank[i1];
    return i1;
}

/* The dense experts' products on the grouped kernels up to the table's own_t tokens (the expand
   from own_from, the shrink from 17): each token's row of H or Y through a pointer, as the grouped path's. Per
   token and column the sums are those of the grouped path's kernels, whatever the token block or
   the columns a caller owns, so every split of the call gives the same bits. */
MOLORA__PRIVATE int molora__dense_own(const molora__call *c)
{
    const molora__kernels *kr = molora__get_kernels();
    return c->T >= kr->own_from && c->T <= kr->own_t;
}
/* H rows t0 .. t0 + in->T - 1, columns off .. off + rr - 1: = X A_run^T (a: the run's rr rows of A) */
MOLORA__PRIVATE void molora__dense_shrink_own(const molora__call *c, const molora__input *in, const float *a, int rr,
                                              int off, int t0)
{
    const molora__layer *L = c->L;
    molora__nt_own(in->T, rr, in->K, in->X, in->ldx, a, L->d_in, c->H + (size_t)t0 * L->r_total + off, L->r_total);
}
/* Y += H_run B_run^T on the call's columns (h: H's column of the run; bt: its rows of B^T, stride
   ldb), every token at once (nng) */
MOLORA__PRIVATE void molora__dense_expand_own(const molora__call *c, const float *h, int rr, const float *bt, int ldb)
{
    const molora__layer *L = c->L;
    const float *hp[MOLORA__OWN_MAX];
    float *yp[MOLORA__OWN_MAX];
    int t, t0, tb;
    for (t0 = 0; t0 < c->T; t0 += tb) {   /* in chunks of MOLORA__OWN_MAX tokens */
        tb = c->T - t0 < MOLORA__OWN_MAX ? c->T - t0 : MOLORA__OWN_MAX;
        for (t = 0; t < tb; t++) {
            hp[t] = h + (size_t)(t0 + t) * L->r_total;
            yp[t] = c->Y + (size_t)(t0 + t) * L->d_out;
        }
        molora__get_kernels()->nng(tb, c->O, rr, hp, bt, ldb, yp);
    }
}

/* The dense experts' shrink in token blocks: beyond MOLORA__SMALL_T tokens on a float32 layer, H's
   rows are computed in as many blocks as the call has shares (nth x n_tasks; blocks of at least 16
   tokens), the same products for every split of the call, so that the parallel_for hook can run
   the blocks as tasks (molora__shrink_task) and still equal the ith / nth split bit for bit. */
MOLORA__PRIVATE int molora__h_blocks(const molora__call *c)
{
    int i, any = 0, most = c->T / 16, shares = c->nth * c->n_tasks;
    if (c->n == 0 || c->L->bf16 || c->path != MOLORA_PATH_GEMM || molora__mole_mixes(c)) return 1;
    for (i = 0; i < c->n; i++) any |= c->act[i];
    if (!any) return 1;
    return shares < most ? shares : most;
}
MOLORA__PRIVATE void molora__shrink_block(const molora__call *c, int b)
{
    const molora__layer *L = c->L;
    int t0 = (int)((long long)c->T * b / c->h_blocks), t1 = (int)((long long)c->T * (b + 1) / c->h_blocks), i, i1, rr;
    molora__input in = c->in;
    in.T = t1 - t0; in.x += (size_t)t0 * in.K; in.X += (size_t)t0 * in.ldx;
    for (i = 0; i < c->n; i = i1 > i ? i1 : i + 1) {
        const float *a;
        i1 = molora__dense_run(c, i, 0, &rr);
        if (i1 == i) continue;
        a = L->A + (size_t)L->offset[i] * L->d_in;
        if (molora__own_nt(c->T)) molora__dense_shrink_own(c, &in, a, rr, L->offset[i], t0);
        else molora__mul_xwt(&in, 0, rr, a, 0, c->H + (size_t)t0 * L->r_total + L->offset[i], L->r_total);
        molora__scale_h(c, i, i1, t0, t1);
    }
}
/* The first parallel_for call's task k: H's blocks k, k + n_tasks, ... into slice 0, which every
   task of the second call then reads (molora__task) */
MOLORA__PRIVATE void molora__shrink_task(void *ctx, int k, int n_tasks)
{
    const molora__call *c = (const molora__call *)ctx;
    molora__call t = *c;
    int b;
    MOLORA_ASSERT(n_tasks == c->n_tasks && k >= 0 && k < n_tasks);
    if (k < 0 || k >= c->n_tasks) return;
    t.H = (float *)c->slices;
    for (b = k; b < c->h_blocks; b += c->n_tasks) molora__shrink_block(&t, b);
}

/* dense experts, float32, beyond MOLORA__SMALL_T tokens: H in its token blocks (unless the hook's
   first call left it in slice 0), then Y += H_run B_run^T per run */
MOLORA__PRIVATE void molora__experts_dense_blocks(const molora__call *c)
{
    const molora__layer *L = c->L;
    int i, i1, rr, b;
    if (!c->h_shared)
        for (b = 0; b < c->h_blocks; b++) molora__shrink_block(c, b);
    for (i = 0; i < c->n; i = i1 > i ? i1 : i + 1) {
        const float *bt;
        i1 = molora__dense_run(c, i, 0, &rr);
        if (i1 == i) continue;
        bt = L->BT + (size_t)L->offset[i] * L->d_out + c->o0;
        if (molora__dense_own(c)) molora__dense_expand_own(c, c->H + L->offset[i], rr, bt, L->d_out);
        else molora__mul_ab(0, c->T, c->O, rr, c->H + L->offset[i], L->r_total, bt, L->d_out, 1, c->Y, L->d_out);
    }
}

/* dense experts: per run, H = X A_run^T, h *= w s, Y += H B_run^T; beyond MOLORA__SMALL_T tokens on
   a float32 layer, molora__experts_dense_blocks */
MOLORA__PRIVATE void molora__experts_dense(const molora__call *c)
{
    const molora__layer *L = c->L;
    const molora__kernels *kr = molora__get_kernels();
    int i, i1, ldb, rr, direct = L->bf16 && c->T <= MOLORA__SMALL_T && kr->nt16;
    if (!L->bf16 && c->T > MOLORA__SMALL_T) { molora__experts_dense_blocks(c); return; }
    for (i = 0; i < c->n; i = i1 > i ? i1 : i + 1) {
        int off = L->offset[i];
        float *H = c->H + off;
        const float *bt;
        i1 = molora__dense_run(c, i, L->bf16 && !direct, &rr);
        if (i1 == i) continue;
        if (direct) kr->nt16(c->T, rr, L->d_in, c->in.X, c->in.ldx, L->A16 + (size_t)off * L->d_in, L->d_in, H,
                             L->r_total);
        else if (molora__own_nt(c->T))   /* a BF16 layer's widened run */
            molora__dense_shrink_own(c, &c->in, molora__rows_a(c, i, rr), rr, off, 0);
        else molora__mul_xwt(&c->in, MOLORA__ALLOW_GEMV, rr, molora__rows_a(c, i, rr), 0, H, L->r_total);
        molora__scale_h(c, i, i1, 0, c->T);
        if (direct) {
            kr->nn16(c->T, c->O, rr, H, L->r_total, L->BT16 + (size_t)off * L->d_out + c->o0, L->d_out, c->Y, L->d_out);
            continue;
        }
        bt = molora__rows_bt(c, i, rr, c->o0, c->O, &ldb);
        if (molora__dense_own(c)) molora__dense_expand_own(c, H, rr, bt, ldb);
        else molora__mul_ab(MOLORA__ALLOW_GEMV, c->T, c->O, rr, H, L->r_total, bt, ldb, 1, c->Y, L->d_out);
    }
}

/* The products on c's columns: frozen layer, then the MoLE output mix or the experts */
MOLORA__PRIVATE void molora__apply(const molora__call *c)
{
    /* frozen layer: Y = X W0^T + b */
    if (c->args->output == MOLORA_OUTPUT_FULL) molora__frozen(c);
    if (c->n == 0) return;
    /* MoLE output mix: Y += sum_i w_i D_i */
    if (molora__mole_mixes(c)) molora__mole_mix(c);
    /* experts: Y += sum_i w_i s_i X A_i^T B_i^T, tokens grouped by expert (sparse) or dense */
    else if (c->path == MOLORA_PATH_SPARSE) molora__experts_grouped(c);
    else molora__experts_dense(c);
}

/* Task k of n_tasks (molora_task_fn): share ith * n_tasks + k of the call's nth * n_tasks, with
   workspace slice k for its H (or slice 0's H, read only, after the hook's H call:
   molora__shrink_task or molora__group_shrink_task).
   Reads the routing the call left in the shared workspace; writes only its slice and its columns
   of Y, so the tasks of a call run in any order, at once or not. */
MOLORA__PRIVATE void molora__task(void *ctx, int k, int n_tasks)
{
    const molora__call *c = (const molora__call *)ctx;
    molora__call t = *c;
    MOLORA_ASSERT(n_tasks == c->n_tasks && k >= 0 && k < n_tasks);
    if (k < 0 || k >= c->n_tasks) return;
    molora__share(&t, c->ith * c->n_tasks + k, c->nth * c->n_tasks);
    if (t.O == 0) return;
    /* the shared X in t.in is read only; so is H in slice 0 after the hook's first call */
    t.H = (float *)(c->slices + (c->h_shared ? 0 : (size_t)k * c->slice));
    if (c->tile) t.tile = (float *)(c->slices + (size_t)k * c->slice + c->tile_off);
    molora__apply(&t);
}

/* The gate logits G = X [Wg; wt]^T (none with an adapter index or FIXED weights: they replace the
   router, and X was checked on its own, molora__gate_checks_x), then the weights w (T, n): on the
   calling thread, or through the hook in blocks of tokens, as tasks of their own */
MOLORA__PRIVATE molora_result molora__gate_and_route(molora__call *c)
{
    const molora_forward_args *a = c->args;
    molora_result r;
    if (molora__route_splits(c)) {
        a->parallel_for(a->parallel_user, c->n_tasks, molora__route_task, c);
        return molora__route_split_result(c);
    }
    if (!a->adapter_index && !a->weights && (r = molora__gate_logits(c)) != MOLORA_RESULT_SUCCESS) return r;
    return molora__route(c);
}

/* The forward pass of one call, after molora__call_check: the checks, gate logits, routing and
   path once, on the calling thread; then the products in n_tasks tasks, through the caller's
   parallel_for when there is one */
MOLORA__PRIVATE molora_result molora__forward_pass(molora__call *c)
{
    const molora_forward_args *a = c->args;
    molora_result r;
    int i;
    /* counts_out starts at 0, also for T = 0 */
    if (a->counts_out && c->ith == 0) for (i = 0; i < c->n; i++) a->counts_out[i] = 0;
    if (c->T == 0) return MOLORA_RESULT_SUCCESS;
    /* check the inputs, carve the workspace, lay X out for the kernels */
    r = molora__call_setup(c);
    if (r != MOLORA_RESULT_SUCCESS) return r;
    if (c->n > 0) {
        /* gate logits and routing: the weights w (T, n) */
        r = molora__gate_and_route(c);
        if (r != MOLORA_RESULT_SUCCESS) return r;
        /* report w and the per-expert counts */
        molora__report(c);
    }
    /* the path, chosen once: by T, or per token when routing selects few (token, rank) pairs */
    c->path = molora__choose_path(c);
    /* nothing to compute: routing only, no columns for this caller, or DELTA with nothing routed */
    if (!c->apply || c->O == 0 || c->path == MOLORA_PATH_NONE) return MOLORA_RESULT_SUCCESS;
    /* the grouped path's lists, once: the tasks read them */
    if (c->path == MOLORA_PATH_SPARSE) molora__group_lists(c, c->by_token);
    /* the experts' H: the dense path's in token blocks, the grouped path's by its order; through
       the hook, first as tasks of their own */
    c->h_blocks = molora__h_blocks(c);
    if (a->parallel_for && c->n_tasks > 1 && (c->h_blocks > 1 || molora__group_h_splits(c))) {
        a->parallel_for(a->parallel_user, c->n_tasks, c->h_blocks > 1 ? molora__shrink_task : molora__group_shrink_task,
                        c);
        c->h_shared = 1;
    }
    if (a->parallel_for) a->parallel_for(a->parallel_user, c->n_tasks, molora__task, c);
    else molora__task(c, 0, 1);
    return MOLORA_RESULT_SUCCESS;
}

/* molora_forward (apply = 1) and molora_route (apply = 0); path_out is written once, at the end */
MOLORA__PRIVATE molora_result molora__run(const molora_model *m, const molora_forward_args *a, int apply)
{
    molora__call c;
    molora_result r = molora__call_check(&c, m, a, apply);
    if (r != MOLORA_RESULT_SUCCESS) return r;
    r = molora__forward_pass(&c);
    if (a->path_out) *a->path_out = c.path;
    return r;
}

MOLORA_API molora_result molora_forward(const molora_model *m, const molora_forward_args *a)
{
    return molora__run(m, a, 1);
}
MOLORA_API molora_result molora_route(const molora_model *m, const molora_forward_args *a)
{
    return molora__run(m, a, 0);
}
/* <<forward */

/* >>merge  molora_merge: W += sum_i w_i s_i B_i A_i, in W0's stored layout ---------------------- */
/* W (rows, cols) += c P^T Q for P (rank, rows) and Q (rank, cols) with row strides ldp and ldq:
   one row of W at a time, 64 ranks per own-kernel call */
MOLORA__PRIVATE void molora__add_ptq(int rows, int cols, int rank, float c, const float *P, int ldp, const float *Q,
                                     int ldq, float *W)
{
    float coef[64];
    int o, q0, q;
    for (o = 0; o < rows; o++)
        for (q0 = 0; q0 < rank; q0 += 64) {
            int qb = rank - q0 < 64 ? rank - q0 : 64;
            for (q = 0; q < qb; q++) coef[q] = c * P[(size_t)(q0 + q) * ldp + o];
            molora__mul_ab(0, 1, cols, qb, coef, qb, Q + (size_t)q0 * ldq, ldq, 1, W + (size_t)o * cols, cols);
        }
}

/* the same for BF16 P and Q, widened element by element (merge has no workspace for a tile) */
MOLORA__PRIVATE void molora__add_ptq16(int rows, int cols, int rank, float c, const uint16_t *P, int ldp,
                                       const uint16_t *Q, int ldq, float *W)
{
    int o, q, j;
    for (o = 0; o < rows; o++) {
        float *w = W + (size_t)o * cols;
        for (q = 0; q < rank; q++) {
            const uint16_t *qr = Q + (size_t)q * ldq;
            float h = c * molora__bits_f32((uint32_t)P[(size_t)q * ldp + o] << 16);
            if (h == 0.0f) continue;
            for (j = 0; j < cols; j++) w[j] += h * molora__bits_f32((uint32_t)qr[j] << 16);
        }
    }
}

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
        const float *A, *BT;
        float c = weights[i] * L->scaling[i];
        if (c == 0.0f) continue;
        if (L->bf16) {
            const uint16_t *A16 = L->A16 + (size_t)L->offset[i] * L->d_in;
            const uint16_t *BT16 = L->BT16 + (size_t)L->offset[i] * L->d_out;
            if (L->w0_in_out) molora__add_ptq16(L->d_in, L->d_out, L->rank[i], c, A16, L->d_in, BT16, L->d_out, W);
            else molora__add_ptq16(L->d_out, L->d_in, L->rank[i], c, BT16, L->d_out, A16, L->d_in, W);
            continue;
        }
        A = L->A + (size_t)L->offset[i] * L->d_in; BT = L->BT + (size_t)L->offset[i] * L->d_out;
        if (L->w0_in_out)   /* W (d_in, d_out) += c A_i^T B_i^T (Conv1D layout) */
            molora__add_ptq(L->d_in, L->d_out, L->rank[i], c, A, L->d_in, BT, L->d_out, W);
        else                /* W (d_out, d_in) += c B_i A_i = c (B_i^T)^T A_i */
            molora__add_ptq(L->d_out, L->d_in, L->rank[i], c, BT, L->d_out, A, L->d_in, W);
    }
    return MOLORA_RESULT_SUCCESS;
}
/* <<merge */

/* >>files  everything that reads files (compiled out by MOLORA_NO_FILES) --------------------- */
#ifndef MOLORA_NO_FILES
/* In tags: io (the memory hook, mapping and reading files), dtypes, utf8, json (the one parser for
   safetensors headers, adapter_config.json and index files), safetensors (the header's checks,
   the object and its getters), conversion (F16 / BF16 / F32 bytes to float) and index (sharded
   models: model.safetensors.index.json, directories, molora_safetensors_open()). The formats
   and their contracts in full: docs/formats.md. */

/* >>io  loading options, the memory hook, opening, mapping and reading files */
#define MOLORA__ST_MAX_HEADER 100000000u      /* safetensors MAX_HEADER_SIZE                    */

typedef struct molora__io { molora_memory mem; molora__logger lg; unsigned flags; } molora__io;

MOLORA__PRIVATE molora_result molora__io_init(const molora_load_desc *d, molora__io *io)
{
    memset(io, 0, sizeof *io);
    if (!d) return MOLORA_RESULT_SUCCESS;
    if (!d->memory.alloc != !d->memory.free) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (d->flags & ~(unsigned)MOLORA_LOAD_READ) return MOLORA_RESULT_INVALID_ARGUMENT;
    io->mem = d->memory;
    io->flags = d->flags;
    io->lg.fn = d->log;
    io->lg.user = d->log_user;
    return MOLORA_RESULT_SUCCESS;
}
MOLORA__PRIVATE void *molora__malloc(const molora__io *io, size_t n)
{
    if (n == 0) n = 1;
    return molora__mem_alloc(&io->mem, n);
}
MOLORA__PRIVATE void molora__mfree(const molora__io *io, void *p)
{
    molora__mem_free(&io->mem, p);
}
/* zeroed n * elem bytes, NULL on overflow or out of memory */
MOLORA__PRIVATE void *molora__calloc(const molora__io *io, size_t n, size_t elem)
{
    size_t bytes;
    void *p;
    if (!molora__mul(n, elem, &bytes)) return NULL;
    p = molora__malloc(io, bytes);
    if (p) memset(p, 0, bytes ? bytes : 1);
    return p;
}

MOLORA__PRIVATE int molora__ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Files (compiled out by MOLORA_NO_STDIO): each opened without blocking and fstat'ed before a
   byte is read, then mapped read-only or read whole into memory from the hook. */
#ifndef MOLORA_NO_STDIO
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

MOLORA__PRIVATE void molora__unmap(void *p, size_t n)
{
    if (p && n) munmap(p, n);
}
#ifdef O_CLOEXEC
#define MOLORA__O_CLOEXEC O_CLOEXEC
#else                                          /* hidden by -std=c99 without _POSIX_C_SOURCE */
#define MOLORA__O_CLOEXEC 0
#endif
MOLORA__PRIVATE const char *molora__file_kind(mode_t m)
{
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
    return "not a regular file";
}
/* Opens path for reading without blocking (a FIFO would block in open) and refuses anything but
   a regular file before a byte is read. */
MOLORA__PRIVATE molora_result molora__open_regular(const molora__logger *lg, const char *path, int *fd,
                                                   struct stat *sb)
{
    *fd = open(path, O_RDONLY | O_NONBLOCK | MOLORA__O_CLOEXEC);
    if (*fd < 0) return molora__fail(lg, MOLORA_RESULT_IO_ERROR, "%s: cannot open: %s", path, strerror(errno));
#ifndef O_CLOEXEC
    (void)fcntl(*fd, F_SETFD, FD_CLOEXEC);
#endif
    if (fstat(*fd, sb) != 0) {
        close(*fd);
        return molora__fail(lg, MOLORA_RESULT_IO_ERROR, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb->st_mode)) {
        close(*fd);
        return molora__fail(lg, MOLORA_RESULT_IO_ERROR, "%s: is %s, expected a regular file", path,
                            molora__file_kind(sb->st_mode));
    }
    return MOLORA_RESULT_SUCCESS;
}
/* Maps a whole regular file read-only. An empty file gives (NULL, 0). */
MOLORA__PRIVATE molora_result molora__map(const molora__logger *lg, const char *path, void **map, size_t *size)
{
    struct stat sb;
    int fd;
    molora_result r = molora__open_regular(lg, path, &fd, &sb);
    *map = NULL; *size = 0;
    if (r) return r;
    if ((uint64_t)sb.st_size > (uint64_t)PTRDIFF_MAX) {
        close(fd);
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "%s: too large to map", path);
    }
    if (sb.st_size > 0) {
        void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return molora__fail(lg, MOLORA_RESULT_IO_ERROR, "%s: cannot map: %s", path, strerror(errno));
        }
        *map = p; *size = (size_t)sb.st_size;
    }
    close(fd);
    return MOLORA_RESULT_SUCCESS;
}
#define MOLORA__READ_CHUNK ((size_t)1 << 30)   /* one read() asks for at most this much        */
/* Reads exactly n bytes of fd into buf (bounded pieces, EINTR and short reads retried), then
   checks the file ends there: a file shorter or longer than fstat said changed while read. */
MOLORA__PRIVATE molora_result molora__read_exact(const molora__logger *lg, const char *path, int fd,
                                                 unsigned char *buf, size_t n)
{
    size_t got = 0;
    unsigned char extra;
    ssize_t k;
    while (got < n) {
        k = read(fd, buf + got, n - got < MOLORA__READ_CHUNK ? n - got : MOLORA__READ_CHUNK);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return molora__fail(lg, MOLORA_RESULT_IO_ERROR, "%s: read failed: %s", path, strerror(errno));
        if (k == 0)
            return molora__fail(lg, MOLORA_RESULT_IO_ERROR, "%s: changed size while read (%zu of %zu bytes)", path,
                                got, n);
        got += (size_t)k;
    }
    do k = read(fd, &extra, 1); while (k < 0 && errno == EINTR);
    if (k < 0) return molora__fail(lg, MOLORA_RESULT_IO_ERROR, "%s: read failed: %s", path, strerror(errno));
    if (k > 0)
        return molora__fail(lg, MOLORA_RESULT_IO_ERROR, "%s: changed size while read (longer than %zu bytes)", path, n);
    return MOLORA_RESULT_SUCCESS;
}
/* Reads a whole regular file of at most max bytes into memory from the hook, NUL-terminated
   (*out owned by the caller, freed with molora__mfree); a larger file is too_large. */
MOLORA__PRIVATE molora_result molora__read_file(const molora__io *io, const char *path, size_t max,
                                                molora_result too_large, char **out, size_t *size)
{
    struct stat sb;
    int fd;
    size_t n;
    molora_result r = molora__open_regular(&io->lg, path, &fd, &sb);
    *out = NULL; *size = 0;
    if (r) return r;
    if ((uint64_t)sb.st_size > (uint64_t)max) {
        close(fd);
        return molora__fail(&io->lg, too_large, "%s: %llu bytes is too large to read", path,
                            (unsigned long long)sb.st_size);
    }
    n = (size_t)sb.st_size;
    if (!(*out = (char *)molora__malloc(io, n + 1))) {
        close(fd);
        return molora__fail(&io->lg, MOLORA_RESULT_OUT_OF_MEMORY, "%s: out of memory for %zu bytes", path, n);
    }
    r = molora__read_exact(&io->lg, path, fd, (unsigned char *)*out, n);
    close(fd);
    if (r) { molora__mfree(io, *out); *out = NULL; return r; }
    (*out)[n] = 0;
    *size = n;
    return MOLORA_RESULT_SUCCESS;
}
/* Reads a small text file (config, index) into memory owned by the caller, NUL-terminated. */
MOLORA__PRIVATE molora_result molora__slurp(const molora__io *io, const char *path, char **out, size_t *size)
{
    return molora__read_file(io, path, MOLORA__ST_MAX_HEADER, MOLORA_RESULT_HEADER_TOO_LARGE, out, size);
}
MOLORA__PRIVATE char *molora__path_join(const molora__io *io, const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = (char *)molora__malloc(io, a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}
#endif

/* <<io */

/* >>dtypes  safetensors dtype names and sizes */
static const char *const molora__dtype_names[MOLORA_DTYPE_COUNT] = {
    "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16",
    "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64", "F8_E4M3FNUZ", "F8_E5M2FNUZ"};
static const unsigned char molora__dtype_bits[MOLORA_DTYPE_COUNT] = {
    8, 4, 6, 6, 8, 8, 8, 8, 8, 16, 16, 16, 16, 32, 32, 32, 64, 64, 64, 64, 8, 8};

MOLORA_API const char *molora_dtype_name(molora_dtype d)
{
    return ((int)d >= 0 && d < MOLORA_DTYPE_COUNT) ? molora__dtype_names[d] : "?";
}
/* <<dtypes */

/* >>utf8  strict UTF-8: no overlongs, no surrogates, <= U+10FFFF (Rust str::from_utf8) */
MOLORA__PRIVATE int molora__utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else return 0;
        if (n - i <= k) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        if (k >= 2 && (s[i + 2] & 0xC0) != 0x80) return 0;
        if (k == 3 && (s[i + 3] & 0xC0) != 0x80) return 0;
        i += k + 1;
    }
    return 1;
}
/* Encodes code point v (<= U+10FFFF, no surrogate) at *d as 1 to 4 bytes; advances *d. */
MOLORA__PRIVATE void molora__utf8_put(char **d, unsigned v)
{
    unsigned char *o = (unsigned char *)*d;
    if (v < 0x80) {
        *o++ = (unsigned char)v;
    } else if (v < 0x800) {
        *o++ = (unsigned char)(0xC0 | (v >> 6));
        *o++ = (unsigned char)(0x80 | (v & 63));
    } else if (v < 0x10000) {
        *o++ = (unsigned char)(0xE0 | (v >> 12));
        *o++ = (unsigned char)(0x80 | ((v >> 6) & 63));
        *o++ = (unsigned char)(0x80 | (v & 63));
    } else {
        *o++ = (unsigned char)(0xF0 | (v >> 18));
        *o++ = (unsigned char)(0x80 | ((v >> 12) & 63));
        *o++ = (unsigned char)(0x80 | ((v >> 6) & 63));
        *o++ = (unsigned char)(0x80 | (v & 63));
    }
    *d = (char *)o;
}
/* <<utf8 */

/* >>json  strict RFC 8259 parser into a flat token array (jsmn-like), then readers of its tokens */
#ifndef MOLORA_JSON_MAX_DEPTH
#define MOLORA_JSON_MAX_DEPTH 128            /* serde_json's recursion limit                   */
#endif
/*    Memory is proportional to the text: objects and their members are tokens of 20 bytes (a
   member is at least 5 bytes of text), an array is ONE token whatever it holds (its items are
   read back from the validated text with molora__jitem), so `[0,0,...]` costs nothing per item.
   Every object, also inside arrays, is checked for a key given twice, compared after decoding
   escapes (sorted per object: O(n log n)). Texts are limited to 4 GiB - 1 (offsets are 32-bit). */
enum { MOLORA__J_OBJ = 1, MOLORA__J_ARR, MOLORA__J_STR, MOLORA__J_NUM, MOLORA__J_TRUE,
       MOLORA__J_FALSE, MOLORA__J_NULL };
typedef struct molora__jtok {
    uint32_t start, end;  /* raw span; strings: between the quotes                            */
    uint32_t size;        /* OBJ: members, ARR: items                                          */
    uint32_t skip;        /* tokens in this subtree, itself included (an array: 1)             */
    unsigned char type;
} molora__jtok;
typedef struct molora__jkey { const char *s; size_t n; } molora__jkey;   /* raw key span     */
typedef struct molora__json {
    const char *s;
    size_t n, pos;
    molora__jtok *tok;    /* NULL while counting                                               */
    size_t ntok;
    int quiet;            /* > 0 inside an array: no tokens                                    */
    const char *err;      /* what went wrong, at err_pos                                       */
    size_t err_pos;
    const molora__io *io; /* key stack for the duplicate check (first pass only)             */
    molora__jkey *keys;
    size_t n_keys, cap_keys;
    int check_dups, dup_depth, oom;
    molora__jkey dup;     /* the repeated key (raw), at object depth dup_depth                 */
} molora__json;

MOLORA__PRIVATE int molora__jerr(molora__json *p, const char *what)
{
    if (!p->err) { p->err = what; p->err_pos = p->pos; }
    return 0;
}
MOLORA__PRIVATE void molora__jws(molora__json *p)
{
    while (p->pos < p->n &&
           (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}
MOLORA__PRIVATE int molora__jhex4(const char *s, unsigned *v)
{
    int i;
    *v = 0;
    for (i = 0; i < 4; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return 0;
        *v = *v * 16 + d;
    }
    return 1;
}
MOLORA__PRIVATE size_t molora__jpush(molora__json *p, int type, size_t start)
{
    size_t i = p->ntok;
    if (p->quiet) return (size_t)-1;
    p->ntok++;
    if (p->tok) {
        p->tok[i].type = (unsigned char)type; p->tok[i].start = (uint32_t)start; p->tok[i].end = (uint32_t)start;
        p->tok[i].size = 0; p->tok[i].skip = 1;
    }
    return i;
}
MOLORA__PRIVATE void molora__jset_end(molora__json *p, size_t t, size_t end)
{
    if (p->tok && t != (size_t)-1) p->tok[t].end = (uint32_t)end;
}
MOLORA__PRIVATE int molora__jstring(molora__json *p)
{
    size_t t;
    p->pos++;   /* opening quote */
    t = molora__jpush(p, MOLORA__J_STR, p->pos);
    while (p->pos < p->n) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            molora__jset_end(p, t, p->pos);
            p->pos++;
            return 1;
        }
        if (c < 0x20) return molora__jerr(p, "control character in string");
        if (c != '\\') { p->pos++; continue; }
        if (p->n - p->pos < 2) return molora__jerr(p, "unterminated escape");
        c = (unsigned char)p->s[p->pos + 1];
        if (c == 'u') {
            unsigned v, w;
            if (p->n - p->pos < 6 || !molora__jhex4(p->s + p->pos + 2, &v)) return molora__jerr(p, "bad \\u escape");
            if (v == 0) return molora__jerr(p, "\\u0000 in string");
            p->pos += 6;
            if (v >= 0xDC00 && v <= 0xDFFF) return molora__jerr(p, "lone low surrogate");
            if (v >= 0xD800 && v <= 0xDBFF) {
                if (p->n - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                    !molora__jhex4(p->s + p->pos + 2, &w) || w < 0xDC00 || w > 0xDFFF)
                    return molora__jerr(p, "lone high surrogate");
                p->pos += 6;
            }
            continue;
        }
        if (!strchr("\"\\/bfnrt", (int)c) || c == 0) return molora__jerr(p, "bad escape");
        p->pos += 2;
    }
    return molora__jerr(p, "unterminated string");
}
MOLORA__PRIVATE int molora__jnumber(molora__json *p)
{
    size_t s = p->pos, t;
    const char *c = p->s;
    if (p->pos < p->n && c[p->pos] == '-') p->pos++;
    if (p->pos >= p->n) return molora__jerr(p, "bad number");
    if (c[p->pos] == '0') {
        p->pos++;
    } else if (c[p->pos] >= '1' && c[p->pos] <= '9') {
        while (p->pos < p->n && c[p->pos] >= '0' && c[p->pos] <= '9') p->pos++;
    } else {
        return molora__jerr(p, "bad number");
    }
    if (p->pos < p->n && c[p->pos] == '.') {
        p->pos++;
        if (p->pos >= p->n || c[p->pos] < '0' || c[p->pos] > '9') return molora__jerr(p, "bad fraction");
        while (p->pos < p->n && c[p->pos] >= '0' && c[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->n && (c[p->pos] == 'e' || c[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->n && (c[p->pos] == '+' || c[p->pos] == '-')) p->pos++;
        if (p->pos >= p->n || c[p->pos] < '0' || c[p->pos] > '9') return molora__jerr(p, "bad exponent");
        while (p->pos < p->n && c[p->pos] >= '0' && c[p->pos] <= '9') p->pos++;
    }
    t = molora__jpush(p, MOLORA__J_NUM, s);
    molora__jset_end(p, t, p->pos);
    return 1;
}

/* Keys: decoded comparison and the duplicate check. */
/* Decodes one character of a validated string body at *s into d (1..4 bytes); advances both. */
MOLORA__PRIVATE void molora__jchar(const char **s, char **d)
{
    const char *q = *s;
    if (*q != '\\') { *(*d)++ = *q; *s = q + 1; return; }
    q++;
    switch (*q) {
    case 'b': *(*d)++ = '\b'; q++; break;
    case 'f': *(*d)++ = '\f'; q++; break;
    case 'n': *(*d)++ = '\n'; q++; break;
    case 'r': *(*d)++ = '\r'; q++; break;
    case 't': *(*d)++ = '\t'; q++; break;
    case 'u': {
        unsigned v, w;
        molora__jhex4(q + 1, &v);
        q += 5;
        if (v >= 0xD800 && v <= 0xDBFF) {
            molora__jhex4(q + 2, &w);
            v = 0x10000 + ((v - 0xD800) << 10) + (w - 0xDC00);
            q += 6;
        }
        molora__utf8_put(d, v);
        break;
    }
    default: *(*d)++ = *q++; break;
    }
    *s = q;
}
/* a cursor over the decoded bytes of a raw key */
typedef struct molora__jcur { const char *s, *e; char b[4]; int n, i; } molora__jcur;
MOLORA__PRIVATE int molora__jcur_byte(molora__jcur *c)
{
    if (c->i == c->n) {
        char *d = c->b;
        if (c->s >= c->e) return -1;
        molora__jchar(&c->s, &d);
        c->n = (int)(d - c->b); c->i = 0;
    }
    return (unsigned char)c->b[c->i++];
}
static int molora__cmp_jkey(const void *a, const void *b)
{
    const molora__jkey *x = (const molora__jkey *)a, *y = (const molora__jkey *)b;
    molora__jcur u, v;
    u.s = x->s; u.e = x->s + x->n; u.n = u.i = 0;
    v.s = y->s; v.e = y->s + y->n; v.n = v.i = 0;
    for (;;) {
        int cu = molora__jcur_byte(&u), cv = molora__jcur_byte(&v);
        if (cu != cv) return cu < cv ? -1 : 1;
        if (cu < 0) return 0;
    }
}
MOLORA__PRIVATE int molora__jkey_push(molora__json *p, size_t start, size_t end)
{
    if (!p->check_dups) return 1;
    if (p->n_keys == p->cap_keys) {
        size_t cap = p->cap_keys ? 2 * p->cap_keys : 64;
        molora__jkey *nk = (molora__jkey *)molora__calloc(p->io, cap, sizeof *nk);
        if (!nk) { p->oom = 1; return molora__jerr(p, "out of memory"); }
        if (p->n_keys) memcpy(nk, p->keys, p->n_keys * sizeof *nk);
        molora__mfree(p->io, p->keys);
        p->keys = nk; p->cap_keys = cap;
    }
    p->keys[p->n_keys].s = p->s + start;
    p->keys[p->n_keys].n = end - start;
    p->n_keys++;
    return 1;
}
/* The keys of the object just closed are keys[base..n_keys): sort them, look for a twin, pop. */
MOLORA__PRIVATE int molora__jkeys_close(molora__json *p, size_t base, int depth)
{
    size_t i, k;
    if (!p->check_dups) return 1;
    k = p->n_keys - base;
    if (k > 1) {
        qsort(p->keys + base, k, sizeof *p->keys, molora__cmp_jkey);
        for (i = base + 1; i < p->n_keys; i++)
            if (!molora__cmp_jkey(&p->keys[i - 1], &p->keys[i])) {
                p->dup = p->keys[i]; p->dup_depth = depth;
                return molora__jerr(p, "duplicate key");
            }
    }
    p->n_keys = base;
    return 1;
}

MOLORA__PRIVATE int molora__jvalue(molora__json *p, int depth);
MOLORA__PRIVATE int molora__jmember(molora__json *p, int depth)
{
    size_t ks;
    molora__jws(p);
    if (p->pos >= p->n || p->s[p->pos] != '"') return molora__jerr(p, "expected a key");
    ks = p->pos + 1;
    if (!molora__jstring(p) || !molora__jkey_push(p, ks, p->pos - 1)) return 0;
    molora__jws(p);
    if (p->pos >= p->n || p->s[p->pos] != ':') return molora__jerr(p, "expected ':'");
    p->pos++;
    return molora__jvalue(p, depth + 1);
}
/* object or array at p->pos; an array's items are validated but not stored */
MOLORA__PRIVATE int molora__jcontainer(molora__json *p, int depth)
{
    int obj = p->s[p->pos] == '{';
    char close = obj ? '}' : ']';
    size_t t, count = 0, base = p->n_keys;
    if (depth >= MOLORA_JSON_MAX_DEPTH) return molora__jerr(p, "nesting too deep");
    t = molora__jpush(p, obj ? MOLORA__J_OBJ : MOLORA__J_ARR, p->pos);
    p->pos++;
    if (!obj) p->quiet++;
    molora__jws(p);
    if (p->pos < p->n && p->s[p->pos] == close) p->pos++;
    else for (;;) {
        if (!(obj ? molora__jmember(p, depth) : molora__jvalue(p, depth + 1))) return 0;
        count++;
        molora__jws(p);
        if (p->pos < p->n && p->s[p->pos] == ',') { p->pos++; continue; }
        if (p->pos < p->n && p->s[p->pos] == close) { p->pos++; break; }
        return molora__jerr(p, obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    if (!obj) p->quiet--;
    if (obj && !molora__jkeys_close(p, base, depth)) return 0;
    if (p->tok && t != (size_t)-1) {
        p->tok[t].size = (uint32_t)count;
        p->tok[t].end = (uint32_t)p->pos;
        p->tok[t].skip = (uint32_t)(p->ntok - t);
    }
    return 1;
}
MOLORA__PRIVATE int molora__jliteral(molora__json *p, const char *lit, int type)
{
    size_t n = strlen(lit);
    if (p->n - p->pos < n || memcmp(p->s + p->pos, lit, n)) return molora__jerr(p, "unexpected character");
    molora__jset_end(p, molora__jpush(p, type, p->pos), p->pos + n);
    p->pos += n;
    return 1;
}
MOLORA__PRIVATE int molora__jvalue(molora__json *p, int depth)
{
    char c;
    molora__jws(p);
    if (p->pos >= p->n) return molora__jerr(p, "unexpected end");
    c = p->s[p->pos];
    if (c == '{' || c == '[') return molora__jcontainer(p, depth);
    if (c == '"') return molora__jstring(p);
    if (c == '-' || (c >= '0' && c <= '9')) return molora__jnumber(p);
    if (c == 't') return molora__jliteral(p, "true", MOLORA__J_TRUE);
    if (c == 'f') return molora__jliteral(p, "false", MOLORA__J_FALSE);
    return molora__jliteral(p, "null", MOLORA__J_NULL);
}
/* The duplicate key, decoded, control characters shown as '?', cut at 200 bytes. */
MOLORA__PRIVATE void molora__jdup_text(const molora__json *p, char *out, size_t cap)
{
    molora__jcur c;
    size_t k = 0;
    int b;
    c.s = p->dup.s; c.e = p->dup.s + p->dup.n; c.n = c.i = 0;
    while (k + 1 < cap && (b = molora__jcur_byte(&c)) >= 0) out[k++] = (char)(b < 0x20 ? '?' : b);
    out[k] = 0;
}
/* One pass checks the syntax and duplicate keys and counts the tokens, the second fills them.
   The text must be valid UTF-8 already. A key given twice is INVALID_JSON, except among the
   members of the root object when root_dup (the header's tensor names) is given: then root_dup. */
MOLORA__PRIVATE molora_result molora__json_parse(const molora__io *io, const char *s, size_t n,
                                                 molora__json *p, const char *what, molora_result root_dup)
{
    int pass;
    memset(p, 0, sizeof *p);
    p->s = s; p->n = n; p->io = io;
    if (n >= 0xFFFFFFFFu)
        return molora__fail(&io->lg, MOLORA_RESULT_INVALID_JSON, "%s: %zu bytes of JSON is too large", what, n);
    for (pass = 0; pass < 2; pass++) {
        p->pos = 0; p->ntok = 0; p->check_dups = pass == 0;
        if (!molora__jvalue(p, 0)) goto bad;
        molora__jws(p);
        if (p->pos != n) { molora__jerr(p, "trailing characters"); goto bad; }
        if (pass == 0) {
            molora__mfree(io, p->keys);
            p->keys = NULL;
            p->tok = (molora__jtok *)molora__calloc(io, p->ntok, sizeof *p->tok);
            if (!p->tok)
                return molora__fail(&io->lg, MOLORA_RESULT_OUT_OF_MEMORY, "%s: %zu JSON tokens: out of memory", what,
                                    p->ntok);
        }
    }
    return MOLORA_RESULT_SUCCESS;
bad:
    molora__mfree(io, p->tok);
    molora__mfree(io, p->keys);
    p->tok = NULL; p->keys = NULL;
    if (p->oom) return molora__fail(&io->lg, MOLORA_RESULT_OUT_OF_MEMORY, "%s: out of memory for the JSON keys", what);
    if (p->dup.s) {
        char key[201];
        int names = root_dup != MOLORA_RESULT_INVALID_JSON && p->dup_depth == 0;
        molora__jdup_text(p, key, sizeof key);
        names = names && strcmp(key, "__metadata__") != 0;
        return molora__fail(&io->lg, names ? root_dup : MOLORA_RESULT_INVALID_JSON,
                            "%s: %s \"%s\" appears twice (at byte %zu; keys are compared after decoding escapes)",
                            what, names ? "tensor" : "key", key, (size_t)(p->dup.s - s));
    }
    return molora__fail(&io->lg, MOLORA_RESULT_INVALID_JSON, "%s: invalid JSON at byte %zu: %s", what, p->err_pos,
                        p->err);
}
MOLORA__PRIVATE void molora__json_free(const molora__io *io, molora__json *p)
{
    molora__mfree(io, p->tok);
    p->tok = NULL;
}
/* Decodes a validated string token into dst (room for end - start + 1 bytes); returns length. */
MOLORA__PRIVATE size_t molora__jstr(const molora__json *p, const molora__jtok *t, char *dst)
{
    const char *s = p->s + t->start, *e = p->s + t->end;
    char *d = dst;
    while (s < e) molora__jchar(&s, &d);
    *d = 0;
    return (size_t)(d - dst);
}
/* Compares the decoded raw JSON string s (n bytes, validated, escapes allowed) with lit, byte by
   byte as unsigned char, without a buffer (any length): < 0, 0 or > 0. */
MOLORA__PRIVATE int molora__jcmp_lit(const char *s, size_t n, const char *lit)
{
    const unsigned char *l = (const unsigned char *)lit;
    molora__jcur u;
    u.s = s; u.e = s + n; u.n = u.i = 0;
    for (;; l++) {
        int c = molora__jcur_byte(&u);
        if (c < 0) return *l ? -1 : 0;
        if (c != *l) return c < *l ? -1 : 1;   /* *l == 0 lands here too: the key is longer */
    }
}
/* Does string token t equal the literal lit? */
MOLORA__PRIVATE int molora__jeq(const molora__json *p, const molora__jtok *t, const char *lit)
{
    size_t n = t->end - t->start;
    if (t->type != MOLORA__J_STR) return 0;
    if (!memchr(p->s + t->start, '\\', n)) return strlen(lit) == n && !memcmp(p->s + t->start, lit, n);
    return molora__jcmp_lit(p->s + t->start, n, lit) == 0;
}
/* Member `key` of object token o (index), or 0 if absent. Tokens are indices into p->tok. */
MOLORA__PRIVATE size_t molora__jget(const molora__json *p, size_t o, const char *key)
{
    size_t i, k = o + 1;
    if (p->tok[o].type != MOLORA__J_OBJ) return 0;
    for (i = 0; i < p->tok[o].size; i++) {
        if (molora__jeq(p, &p->tok[k], key)) return k + 1;
        k += 1 + p->tok[k + 1].skip;
    }
    return 0;
}
/* Next item of array token arr, read back from the validated text into *item (a scalar, or an
   OBJ / ARR span whose members are not tokens: never pass it to molora__jget). *pos starts at 0. */
MOLORA__PRIVATE int molora__jitem(const molora__json *p, const molora__jtok *arr, size_t *pos, molora__jtok *item)
{
    const char *s = p->s;
    size_t i = *pos ? *pos : arr->start + 1;
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == ',') i++;
    if (s[i] == ']') return 0;
    memset(item, 0, sizeof *item);
    item->skip = 1;
    if (s[i] == '"') {
        item->type = MOLORA__J_STR;
        item->start = (uint32_t)++i;
        while (s[i] != '"') i += s[i] == '\\' ? 2 : 1;
        item->end = (uint32_t)i++;
    } else if (s[i] == '{' || s[i] == '[') {
        int depth = 0;
        item->type = s[i] == '{' ? MOLORA__J_OBJ : MOLORA__J_ARR;
        item->start = (uint32_t)i;
        do {
            if (s[i] == '"') { for (i++; s[i] != '"'; i += s[i] == '\\' ? 2 : 1) {} }
            else if (s[i] == '{' || s[i] == '[') depth++;
            else if (s[i] == '}' || s[i] == ']') depth--;
            i++;
        } while (depth > 0);
        item->end = (uint32_t)i;
    } else {
        item->type = s[i] == 't' ? MOLORA__J_TRUE : s[i] == 'f' ? MOLORA__J_FALSE
                   : s[i] == 'n' ? MOLORA__J_NULL : MOLORA__J_NUM;
        item->start = (uint32_t)i;
        while (i < arr->end && strchr("+-.eE0123456789truefalsn", s[i]) && s[i]) i++;
        item->end = (uint32_t)i;
    }
    *pos = i;
    return 1;
}
/* Non-negative integer without fraction or exponent that fits in 64 bits. */
MOLORA__PRIVATE int molora__ju64(const molora__json *p, const molora__jtok *t, uint64_t *v)
{
    size_t i;
    *v = 0;
    if (t->type != MOLORA__J_NUM) return 0;
    for (i = t->start; i < t->end; i++) {
        unsigned d;
        if (p->s[i] < '0' || p->s[i] > '9') return 0;
        d = (unsigned)(p->s[i] - '0');
        if (*v > (UINT64_MAX - d) / 10) return 0;
        *v = *v * 10 + d;
    }
    return 1;
}
MOLORA__PRIVATE int molora__jnum(const molora__json *p, const molora__jtok *t, double *v)
{
    char buf[64];
    size_t n = t->end - t->start;
    if (t->type != MOLORA__J_NUM || n >= sizeof buf) return 0;
    memcpy(buf, p->s + t->start, n);
    buf[n] = 0;
    *v = strtod(buf, NULL);
    return 1;
}
MOLORA__PRIVATE int molora__jint(const molora__json *p, const molora__jtok *t, int *v)
{
    double d;
    if (!molora__jnum(p, t, &d) || d != floor(d) || d < -2147483647.0 || d > 2147483647.0) return 0;
    *v = (int)d;
    return 1;
}
/* Item i of array token t as a finite number (O(i): for short lists). */
MOLORA__PRIVATE int molora__jlist_num(const molora__json *js, size_t t, size_t i, double *v)
{
    size_t pos = 0;
    molora__jtok it;
    if (!t || js->tok[t].type != MOLORA__J_ARR || i >= js->tok[t].size) return 0;
    do { if (!molora__jitem(js, &js->tok[t], &pos, &it)) return 0; } while (i-- > 0);
    return molora__jnum(js, &it, v) && isfinite(*v);
}
/* Every item of array token t as a double (NaN for an item that is not a finite number), in one
   pass; *out is owned by the caller (NULL for an empty array). 0: out of memory. */
MOLORA__PRIVATE int molora__jlist_f64(const molora__io *io, const molora__json *js, size_t t, double **out)
{
    size_t pos = 0, i = 0;
    molora__jtok it;
    *out = NULL;
    if (!js->tok[t].size) return 1;
    if (!(*out = (double *)molora__calloc(io, js->tok[t].size, sizeof(double)))) return 0;
    while (molora__jitem(js, &js->tok[t], &pos, &it)) {
        double v;
        (*out)[i++] = molora__jnum(js, &it, &v) && isfinite(v) ? v : NAN;
    }
    return 1;
}
/* <<json */

/* >>safetensors  one file image: the header checks of the reference reader, the object, its getters */
typedef struct molora__tensor {
    const char *name;
    molora_dtype dtype;
    int n_dims, shard;
    const uint64_t *shape;
    uint64_t n_el, begin, end;    /* data offsets relative to the data section              */
    const unsigned char *data;
    size_t n_bytes;
    float *f32;                   /* converted copy owned by the object, or NULL            */
    size_t index;                 /* position in file order over all shards                 */
} molora__tensor;

typedef struct molora__shard {
    void *block;                  /* tensors, shapes, strings of this file                  */
    molora__tensor *t;
    size_t n_t, n_meta;
    const char **meta;            /* (2 * n_meta) key, value                                */
    void *map;                    /* mapping (files) or NULL (memory)                       */
    size_t map_size;
    void *owned;                  /* file read into memory (MOLORA_LOAD_READ), or NULL      */
} molora__shard;

struct molora_safetensors {
    molora__io io;
    int n_shards;
    molora__shard *shards;
    size_t n;                     /* all tensors                                            */
    molora__tensor **all;         /* (n) shard, then offset order                           */
    molora__tensor **by_name;     /* (n) sorted by name                                     */
};

static int molora__cmp_off(const void *a, const void *b)
{
    const molora__tensor *x = *(molora__tensor *const *)a, *y = *(molora__tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}
static int molora__cmp_name(const void *a, const void *b)
{
    return strcmp((*(molora__tensor *const *)a)->name, (*(molora__tensor *const *)b)->name);
}

/* One file image being parsed: the JSON header and what the sizing pass counted, then the parts of
   the shard's block that the entries are decoded into. */
typedef struct molora__st_reader {
    const molora__io *io;
    const char *what;             /* the file, as log lines name it                         */
    molora__json js;              /* the header                                             */
    size_t n;                     /* header length: the data section starts at 8 + n        */
    size_t nt, ndims, nmeta;      /* tensors, their dimensions, __metadata__ entries        */
    size_t meta_tok;              /* __metadata__'s value token, 0 when absent              */
    uint64_t *dims;               /* next free dimension in the block                       */
    molora__tensor **order;       /* (nt) the tensors, sorted by name, then by offsets      */
    char *str;                    /* next free byte for the decoded strings                 */
} molora__st_reader;

/* SafeTensors::read_metadata up to the JSON: the 8-byte little-endian header length n and its
   bounds, then n bytes of UTF-8 text parsed into rd->js, which must be an object. */
MOLORA__PRIVATE molora_result molora__st_read_header(molora__st_reader *rd, const unsigned char *buf, size_t size)
{
    const molora__logger *lg = &rd->io->lg;
    const char *what = rd->what;
    uint64_t n64;
    size_t i;
    molora_result r;
    if (size < 8)
        return molora__fail(lg, MOLORA_RESULT_HEADER_TOO_SMALL, "%s: %zu bytes, a safetensors file needs at least 8",
                            what, size);
    for (n64 = 0, i = 8; i-- > 0;) n64 = (n64 << 8) | buf[i];
    if (n64 > MOLORA__ST_MAX_HEADER)
        return molora__fail(lg, MOLORA_RESULT_HEADER_TOO_LARGE, "%s: header length %llu exceeds 100000000", what,
                            (unsigned long long)n64);
    rd->n = (size_t)n64;
    if (rd->n > size - 8)
        return molora__fail(lg, MOLORA_RESULT_INVALID_HEADER_LENGTH, "%s: header length %zu but only %zu bytes follow",
                            what, rd->n, size - 8);
    if (!molora__utf8_valid(buf + 8, rd->n))
        return molora__fail(lg, MOLORA_RESULT_INVALID_UTF8, "%s: header is not valid UTF-8", what);
    r = molora__json_parse(rd->io, (const char *)buf + 8, rd->n, &rd->js, what, MOLORA_RESULT_DUPLICATE_NAME);
    if (r) return r;
    if (rd->js.tok[0].type != MOLORA__J_OBJ) {
        r = molora__fail(lg, MOLORA_RESULT_INVALID_JSON, "%s: header is not a JSON object", what);
        molora__json_free(rd->io, &rd->js);
        return r;
    }
    return MOLORA_RESULT_SUCCESS;
}

/* Sizing pass over the header's members, for one allocation: the tensors, their dimensions and
   the __metadata__ entries, whose values must all be strings (HashMetadata in the reference). */
MOLORA__PRIVATE molora_result molora__st_count(molora__st_reader *rd)
{
    const molora__json *js = &rd->js;
    size_t i, k, j, e;
    for (i = 0, k = 1; i < js->tok[0].size; i++, k += 1 + js->tok[k + 1].skip) {
        size_t v = k + 1;
        if (!molora__jeq(js, &js->tok[k], "__metadata__")) {
            size_t shape = js->tok[v].type == MOLORA__J_OBJ ? molora__jget(js, v, "shape") : 0;
            rd->nt++;
            if (shape && js->tok[shape].type == MOLORA__J_ARR) rd->ndims += js->tok[shape].size;
            continue;
        }
        rd->meta_tok = v;
        if (js->tok[v].type == MOLORA__J_NULL) continue;
        if (js->tok[v].type != MOLORA__J_OBJ)
            return molora__fail(&rd->io->lg, MOLORA_RESULT_INVALID_JSON,
                                "%s: __metadata__ must be an object of strings", rd->what);
        for (j = 0, e = v + 1; j < js->tok[v].size; j++, e += 2)
            if (js->tok[e + 1].type != MOLORA__J_STR)
                return molora__fail(&rd->io->lg, MOLORA_RESULT_INVALID_JSON,
                                    "%s: __metadata__ value of \"%.*s\" is not a string", rd->what,
                                    (int)(js->tok[e].end - js->tok[e].start), js->s + js->tok[e].start);
        rd->nmeta = js->tok[v].size;
    }
    return MOLORA_RESULT_SUCCESS;
}

/* One block for the shard: tensors, dimensions, metadata pointers, the sort order, then the
   decoded strings (decoding never lengthens a string, so the header's length bounds them). */
MOLORA__PRIVATE molora_result molora__st_carve(molora__st_reader *rd, molora__shard *sh)
{
    size_t bytes = 0, pool = rd->n + 2 * (rd->js.tok[0].size + rd->nmeta) + 1;
    unsigned char *blk, *cur;
    if (!molora__reserve(&bytes, rd->nt, sizeof(molora__tensor)) ||
        !molora__reserve(&bytes, rd->ndims, sizeof(uint64_t)) ||
        !molora__reserve(&bytes, 2 * rd->nmeta, sizeof(char *)) ||
        !molora__reserve(&bytes, rd->nt, sizeof(molora__tensor *)) ||
        !molora__reserve(&bytes, pool, 1) || !molora__add(bytes, MOLORA__ALIGN, &bytes))
        return molora__fail(&rd->io->lg, MOLORA_RESULT_SIZE_OVERFLOW, "%s: header sizes overflow", rd->what);
    blk = (unsigned char *)molora__malloc(rd->io, bytes);
    if (!blk)
        return molora__fail(&rd->io->lg, MOLORA_RESULT_OUT_OF_MEMORY, "%s: %zu bytes for the header", rd->what, bytes);
    memset(sh, 0, sizeof *sh);
    sh->block = blk;
    cur = molora__align_up(blk);
    sh->t = (molora__tensor *)molora__carve(&cur, rd->nt, sizeof(molora__tensor));
    rd->dims = (uint64_t *)molora__carve(&cur, rd->ndims, sizeof(uint64_t));
    sh->meta = (const char **)molora__carve(&cur, 2 * rd->nmeta, sizeof(char *));
    rd->order = (molora__tensor **)molora__carve(&cur, rd->nt, sizeof(molora__tensor *));
    rd->str = (char *)cur;
    memset(sh->t, 0, rd->nt * sizeof(molora__tensor));
    return MOLORA_RESULT_SUCCESS;
}

/* __metadata__ (string -> string), decoded into the block in file order. */
MOLORA__PRIVATE void molora__st_metadata(molora__st_reader *rd, molora__shard *sh)
{
    const molora__json *js = &rd->js;
    size_t j, e;
    if (!rd->meta_tok || js->tok[rd->meta_tok].type != MOLORA__J_OBJ) return;
    for (j = 0, e = rd->meta_tok + 1; j < rd->nmeta; j++, e += 2) {
        sh->meta[2 * j] = rd->str;
        rd->str += molora__jstr(js, &js->tok[e], rd->str) + 1;
        sh->meta[2 * j + 1] = rd->str;
        rd->str += molora__jstr(js, &js->tok[e + 1], rd->str) + 1;
    }
    sh->n_meta = rd->nmeta;
}

/* One tensor entry, key token k: its name, then dtype, shape and data_offsets. A missing field or
   a field of the wrong type is a JSON error, as serde's TensorInfo makes it in the reference. */
MOLORA__PRIVATE molora_result molora__st_entry(molora__st_reader *rd, molora__tensor *t, size_t k)
{
    const molora__json *js = &rd->js;
    const molora__logger *lg = &rd->io->lg;
    const char *what = rd->what;
    size_t v = k + 1, fd, fs, fo, j, pos;
    molora__jtok item;
    int d;
    t->name = rd->str;
    rd->str += molora__jstr(js, &js->tok[k], rd->str) + 1;
    if (js->tok[v].type != MOLORA__J_OBJ)
        return molora__fail(lg, MOLORA_RESULT_INVALID_JSON, "%s: tensor \"%s\": entry is not an object", what, t->name);
    fd = molora__jget(js, v, "dtype");
    fs = molora__jget(js, v, "shape");
    fo = molora__jget(js, v, "data_offsets");
    if (!fd || !fs || !fo)
        return molora__fail(lg, MOLORA_RESULT_INVALID_JSON, "%s: tensor \"%s\": missing field \"%s\"", what, t->name,
                            !fd ? "dtype" : !fs ? "shape" : "data_offsets");
    for (d = 0; d < MOLORA_DTYPE_COUNT; d++)
        if (molora__jeq(js, &js->tok[fd], molora__dtype_names[d])) break;
    if (d == MOLORA_DTYPE_COUNT)
        return molora__fail(lg, MOLORA_RESULT_INVALID_JSON, "%s: tensor \"%s\": unknown dtype", what, t->name);
    t->dtype = (molora_dtype)d;
    if (js->tok[fs].type != MOLORA__J_ARR || js->tok[fs].size > 0x7fffffff)
        return molora__fail(lg, MOLORA_RESULT_INVALID_JSON, "%s: tensor \"%s\": shape is not an array", what, t->name);
    t->n_dims = (int)js->tok[fs].size;
    t->shape = rd->dims;
    for (j = 0, pos = 0; molora__jitem(js, &js->tok[fs], &pos, &item); j++)
        if (!molora__ju64(js, &item, rd->dims++))
            return molora__fail(lg, MOLORA_RESULT_INVALID_JSON,
                                "%s: tensor \"%s\": shape[%zu] is not an unsigned 64-bit integer", what, t->name, j);
    pos = 0;
    if (js->tok[fo].type != MOLORA__J_ARR || js->tok[fo].size != 2 ||
        !molora__jitem(js, &js->tok[fo], &pos, &item) || !molora__ju64(js, &item, &t->begin) ||
        !molora__jitem(js, &js->tok[fo], &pos, &item) || !molora__ju64(js, &item, &t->end))
        return molora__fail(lg, MOLORA_RESULT_INVALID_JSON,
                            "%s: tensor \"%s\": data_offsets must be two unsigned 64-bit integers", what, t->name);
    return MOLORA_RESULT_SUCCESS;
}

/* The tensor entries in header order (the reference's deserialisation into HashMetadata). */
MOLORA__PRIVATE molora_result molora__st_entries(molora__st_reader *rd, molora__shard *sh, int shard)
{
    const molora__json *js = &rd->js;
    size_t i, k, nt = 0;
    molora_result r;
    for (i = 0, k = 1; i < js->tok[0].size; i++, k += 1 + js->tok[k + 1].skip) {
        molora__tensor *t;
        if (molora__jeq(js, &js->tok[k], "__metadata__")) continue;
        t = &sh->t[nt];
        rd->order[nt++] = t;
        t->shard = shard;
        if ((r = molora__st_entry(rd, t, k)) != MOLORA_RESULT_SUCCESS) return r;
    }
    sh->n_t = nt;
    return MOLORA_RESULT_SUCCESS;
}

/* molora's extra check, before the validation: a tensor name given twice (the reference keeps the
   last one silently). */
MOLORA__PRIVATE molora_result molora__st_unique(molora__st_reader *rd)
{
    size_t i;
    if (rd->nt > 1) qsort(rd->order, rd->nt, sizeof *rd->order, molora__cmp_name);
    for (i = 1; i < rd->nt; i++)
        if (!strcmp(rd->order[i - 1]->name, rd->order[i]->name))
            return molora__fail(&rd->io->lg, MOLORA_RESULT_DUPLICATE_NAME, "%s: tensor \"%s\" appears twice", rd->what,
                                rd->order[i]->name);
    return MOLORA_RESULT_SUCCESS;
}

/* The body of Metadata::validate's loop for tensor t: it starts where the previous one ended
   (*start, then moved to its end), and holds exactly shape x dtype bytes, overflow-checked. */
MOLORA__PRIVATE molora_result molora__st_validate_tensor(const molora__st_reader *rd, molora__tensor *t,
                                                         uint64_t *start)
{
    const molora__logger *lg = &rd->io->lg;
    const char *what = rd->what, *dtype = molora__dtype_names[t->dtype];
    uint64_t el = 1, bits;
    int d;
    if (t->begin != *start || t->end < t->begin)
        return molora__fail(lg, MOLORA_RESULT_INVALID_OFFSET,
                            "%s: tensor \"%s\": data_offsets [%llu, %llu] (expected to start at %llu)", what, t->name,
                            (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)*start);
    *start = t->end;
    for (d = 0; d < t->n_dims; d++) {
        if (t->shape[d] != 0 && el > UINT64_MAX / t->shape[d])
            return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "%s: tensor \"%s\": shape product overflows", what,
                                t->name);
        el *= t->shape[d];
    }
    if (el > (uint64_t)(SIZE_MAX) || el > UINT64_MAX / molora__dtype_bits[t->dtype])
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "%s: tensor \"%s\": byte size overflows", what, t->name);
    bits = el * molora__dtype_bits[t->dtype];
    if (bits % 8)
        return molora__fail(lg, MOLORA_RESULT_TENSOR_INVALID_INFO,
                            "%s: tensor \"%s\": %llu elements of %s do not fill whole bytes", what, t->name,
                            (unsigned long long)el, dtype);
    if (t->end - t->begin != bits / 8)
        return molora__fail(lg, MOLORA_RESULT_TENSOR_INVALID_INFO,
                            "%s: tensor \"%s\": %s shape needs %llu bytes, data_offsets give %llu", what, t->name,
                            dtype, (unsigned long long)(bits / 8), (unsigned long long)(t->end - t->begin));
    t->n_el = el;
    return MOLORA_RESULT_SUCCESS;
}

/* Metadata::validate: in offset order the tensors tile the data section from 0, without a gap or
   an overlap; *end is where the last one ends. */
MOLORA__PRIVATE molora_result molora__st_validate(molora__st_reader *rd, uint64_t *end)
{
    size_t i;
    molora_result r;
    *end = 0;
    if (rd->nt > 1) qsort(rd->order, rd->nt, sizeof *rd->order, molora__cmp_off);
    for (i = 0; i < rd->nt; i++)
        if ((r = molora__st_validate_tensor(rd, rd->order[i], end)) != MOLORA_RESULT_SUCCESS) return r;
    return MOLORA_RESULT_SUCCESS;
}

/* Points each tensor at its bytes in the data section, then stores the tensors in file (offset)
   order, the order molora_safetensors_tensor_info() counts in. */
MOLORA__PRIVATE molora_result molora__st_place(molora__st_reader *rd, molora__shard *sh, const unsigned char *data)
{
    size_t i, nt = rd->nt;
    molora__tensor *tmp;
    for (i = 0; i < nt; i++) {
        rd->order[i]->data = data + (size_t)rd->order[i]->begin;
        rd->order[i]->n_bytes = (size_t)(rd->order[i]->end - rd->order[i]->begin);
    }
    tmp = (molora__tensor *)molora__calloc(rd->io, nt, sizeof *tmp);
    if (!tmp && nt) return molora__fail(&rd->io->lg, MOLORA_RESULT_OUT_OF_MEMORY, "%s: out of memory", rd->what);
    for (i = 0; i < nt; i++) tmp[i] = *rd->order[i];
    if (nt) memcpy(sh->t, tmp, nt * sizeof *tmp);
    molora__mfree(rd->io, tmp);
    return MOLORA_RESULT_SUCCESS;
}

/* Parses and validates one file image into sh (what names it in log lines), with the reference's
   checks in its order: read_metadata (header, entries), molora's duplicate names, then
   Metadata::validate, and read_metadata's last check that the tensors cover the whole data
   section. On failure sh is left empty. The format: docs/formats.md. */
MOLORA__PRIVATE molora_result molora__st_parse(const molora__io *io, const unsigned char *buf, size_t size, int shard,
                                               const char *what, molora__shard *sh)
{
    molora__st_reader rd;
    molora_result r;
    uint64_t end = 0;
    memset(&rd, 0, sizeof rd);
    rd.io = io;
    rd.what = what;
    if ((r = molora__st_read_header(&rd, buf, size)) != MOLORA_RESULT_SUCCESS) return r;
    r = molora__st_count(&rd);
    if (!r) r = molora__st_carve(&rd, sh);
    if (r) { molora__json_free(io, &rd.js); return r; }   /* nothing allocated into sh yet */
    molora__st_metadata(&rd, sh);
    r = molora__st_entries(&rd, sh, shard);
    if (!r) r = molora__st_unique(&rd);
    if (!r) r = molora__st_validate(&rd, &end);
    if (!r && end != (uint64_t)(size - 8 - rd.n))
        r = molora__fail(&io->lg, MOLORA_RESULT_INCOMPLETE_BUFFER,
                         "%s: tensors cover %llu data bytes, the file has %zu", what, (unsigned long long)end,
                         size - 8 - rd.n);
    if (!r) r = molora__st_place(&rd, sh, buf + 8 + rd.n);
    if (r) {
        molora__mfree(io, sh->block);
        memset(sh, 0, sizeof *sh);
    }
    molora__json_free(io, &rd.js);
    return r;
}

MOLORA__PRIVATE void molora__st_release(molora_safetensors *st)
{
    int s;
    size_t i;
    if (!st) return;
    for (s = 0; s < st->n_shards; s++) {
        molora__shard *sh = &st->shards[s];
        for (i = 0; i < sh->n_t; i++) molora__mfree(&st->io, sh->t[i].f32);
        molora__mfree(&st->io, sh->block);
#ifndef MOLORA_NO_STDIO
        molora__unmap(sh->map, sh->map_size);
#endif
        molora__mfree(&st->io, sh->owned);
    }
    molora__mfree(&st->io, st->shards);
    molora__mfree(&st->io, st->all);
    molora__mfree(&st->io, st->by_name);
    molora__mfree(&st->io, st);
}

/* Builds the lookup tables over all of st's shards (file order, and sorted by name for
   molora_safetensors_find()); a name present in two shards is refused. */
MOLORA__PRIVATE molora_result molora__st_lookup(molora_safetensors *st)
{
    size_t i, k = 0;
    int s;
    st->n = 0;
    for (s = 0; s < st->n_shards; s++) st->n += st->shards[s].n_t;
    st->all = (molora__tensor **)molora__calloc(&st->io, st->n, sizeof(molora__tensor *));
    st->by_name = (molora__tensor **)molora__calloc(&st->io, st->n, sizeof(molora__tensor *));
    if (!st->all || !st->by_name)
        return molora__fail(&st->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "safetensors: index of %zu tensors", st->n);
    for (s = 0; s < st->n_shards; s++)
        for (i = 0; i < st->shards[s].n_t; i++) {
            st->shards[s].t[i].index = k;
            st->all[k++] = &st->shards[s].t[i];
        }
    if (st->n) memcpy(st->by_name, st->all, st->n * sizeof *st->all);
    if (st->n > 1) qsort(st->by_name, st->n, sizeof *st->by_name, molora__cmp_name);
    for (i = 1; i < st->n; i++)
        if (!strcmp(st->by_name[i - 1]->name, st->by_name[i]->name))
            return molora__fail(&st->io.lg, MOLORA_RESULT_DUPLICATE_NAME,
                                "safetensors: tensor \"%s\" appears in shards %d and %d", st->by_name[i]->name,
                                st->by_name[i - 1]->shard, st->by_name[i]->shard);
    return MOLORA_RESULT_SUCCESS;
}

/* An empty object with room for n_shards shards (at least one). */
MOLORA__PRIVATE molora_result molora__st_new(const molora_load_desc *desc, int n_shards, molora_safetensors **out)
{
    molora__io io;
    molora_safetensors *st;
    if (molora__io_init(desc, &io)) return MOLORA_RESULT_INVALID_ARGUMENT;
    st = (molora_safetensors *)molora__calloc(&io, 1, sizeof *st);
    if (!st) return molora__fail(&io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "safetensors: out of memory");
    st->io = io;
    st->shards = (molora__shard *)molora__calloc(&io, (size_t)(n_shards > 0 ? n_shards : 1), sizeof(molora__shard));
    if (!st->shards) {
        molora__mfree(&io, st);
        return molora__fail(&io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "safetensors: out of memory");
    }
    *out = st;
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API molora_result molora_safetensors_open_memory(const void *data, size_t size,
                                                        const molora_load_desc *desc,
                                                        molora_safetensors **out)
{
    molora_safetensors *st;
    molora_result r;
    if (!out) return MOLORA_RESULT_INVALID_ARGUMENT;
    *out = NULL;
    if (!data && size) return MOLORA_RESULT_INVALID_ARGUMENT;
    if ((r = molora__st_new(desc, 1, &st)) != MOLORA_RESULT_SUCCESS) return r;
    r = molora__st_parse(&st->io, (const unsigned char *)(data ? data : ""), size, 0, "safetensors", &st->shards[0]);
    if (!r) { st->n_shards = 1; r = molora__st_lookup(st); }
    if (r) { molora__st_release(st); return r; }
    *out = st;
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API void molora_safetensors_free(molora_safetensors *st) { molora__st_release(st); }
MOLORA_API size_t molora_safetensors_n_tensors(const molora_safetensors *st) { return st ? st->n : 0; }

MOLORA_API molora_result molora_safetensors_tensor_info(const molora_safetensors *st, size_t index,
                                                     molora_tensor_info *info)
{
    const molora__tensor *t;
    if (!st || !info) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (index >= st->n) return MOLORA_RESULT_TENSOR_NOT_FOUND;
    t = st->all[index];
    info->name = t->name; info->dtype = t->dtype; info->n_dims = t->n_dims; info->shape = t->shape;
    info->n_elements = t->n_el; info->data = t->data; info->n_bytes = t->n_bytes; info->shard = t->shard;
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API molora_result molora_safetensors_find(const molora_safetensors *st, const char *name, size_t *index)
{
    size_t lo = 0, hi;
    if (!st || !name || !index) return MOLORA_RESULT_INVALID_ARGUMENT;
    hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->by_name[mid]->name, name);
        if (c == 0) { *index = st->by_name[mid]->index; return MOLORA_RESULT_SUCCESS; }
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return MOLORA_RESULT_TENSOR_NOT_FOUND;
}

MOLORA_API size_t molora_safetensors_n_metadata(const molora_safetensors *st)
{
    size_t n = 0;
    int s;
    if (!st) return 0;
    for (s = 0; s < st->n_shards; s++) n += st->shards[s].n_meta;
    return n;
}
MOLORA_API molora_result molora_safetensors_metadata(const molora_safetensors *st, size_t i,
                                                         const char **key, const char **value)
{
    int s;
    if (!st) return MOLORA_RESULT_INVALID_ARGUMENT;
    for (s = 0; s < st->n_shards; s++) {
        if (i < st->shards[s].n_meta) {
            if (key) *key = st->shards[s].meta[2 * i];
            if (value) *value = st->shards[s].meta[2 * i + 1];
            return MOLORA_RESULT_SUCCESS;
        }
        i -= st->shards[s].n_meta;
    }
    return MOLORA_RESULT_INVALID_ARGUMENT;
}
MOLORA_API const char *molora_safetensors_find_metadata(const molora_safetensors *st, const char *key)
{
    size_t i, n = molora_safetensors_n_metadata(st);
    const char *k, *v;
    if (!key) return NULL;
    for (i = 0; i < n; i++)
        if (!molora_safetensors_metadata(st, i, &k, &v) && !strcmp(k, key)) return v;
    return NULL;
}
/* <<safetensors */

/* >>conversion  F16 / BF16 / F32 little-endian bytes to float (scalar converters: types) */
MOLORA__PRIVATE int molora__little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}
/* Tensor t (F32, F16 or BF16) into dst, n_el floats; F32 on a little-endian host is a copy. */
MOLORA__PRIVATE void molora__convert(const molora__tensor *t, float *dst)
{
    const unsigned char *p = t->data;
    size_t i, n = (size_t)t->n_el;
    if (t->dtype == MOLORA_DTYPE_F32) {
        if (molora__little_endian()) {
            if (n) memcpy(dst, p, n * 4);
        } else {
            for (i = 0; i < n; i++)
                dst[i] = molora__bits_f32((uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                                          (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24);
        }
    } else if (t->dtype == MOLORA_DTYPE_F16) {
        for (i = 0; i < n; i++) dst[i] = molora__f16_f32((unsigned)p[2 * i] | (unsigned)p[2 * i + 1] << 8);
    } else {
        for (i = 0; i < n; i++) dst[i] = molora__bits_f32(((uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8) << 16);
    }
}
MOLORA__PRIVATE int molora__is_float(molora_dtype d)
{
    return d == MOLORA_DTYPE_F32 || d == MOLORA_DTYPE_F16 || d == MOLORA_DTYPE_BF16;
}
/* UNSUPPORTED_DTYPE, logged with the tensor's name, unless t converts to float. */
MOLORA__PRIVATE molora_result molora__need_float(const molora_safetensors *st, const molora__tensor *t)
{
    if (molora__is_float(t->dtype)) return MOLORA_RESULT_SUCCESS;
    return molora__fail(&st->io.lg, MOLORA_RESULT_UNSUPPORTED_DTYPE,
                        "tensor \"%s\": unsupported dtype %s (F32, F16 or BF16 only)", t->name,
                        molora__dtype_names[t->dtype]);
}

MOLORA_API molora_result molora_safetensors_read_f32(const molora_safetensors *st, size_t index,
                                                     float *dst, size_t n_elements)
{
    const molora__tensor *t;
    molora_result r;
    if (!st || (!dst && n_elements)) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (index >= st->n) return MOLORA_RESULT_TENSOR_NOT_FOUND;
    t = st->all[index];
    if ((r = molora__need_float(st, t)) != MOLORA_RESULT_SUCCESS) return r;
    if (n_elements != t->n_el)
        return molora__fail(&st->io.lg, MOLORA_RESULT_INVALID_SHAPE, "tensor \"%s\": has %llu elements, buffer has %zu",
                            t->name, (unsigned long long)t->n_el, n_elements);
    molora__convert(t, dst);
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API molora_result molora_safetensors_tensor_data(molora_safetensors *st, size_t index, const void **data,
                                                      molora_type *type)
{
    const molora__tensor *t;
    const float *f = NULL;
    molora_result r;
    if (!st || !data || !type) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (index >= st->n) return MOLORA_RESULT_TENSOR_NOT_FOUND;
    t = st->all[index];
    if (molora__is_float(t->dtype) && molora__little_endian()) {
        *data = t->data;
        *type = t->dtype == MOLORA_DTYPE_F32 ? MOLORA_TYPE_F32
              : t->dtype == MOLORA_DTYPE_F16 ? MOLORA_TYPE_F16 : MOLORA_TYPE_BF16;
        return MOLORA_RESULT_SUCCESS;
    }
    r = molora_safetensors_tensor_f32(st, index, &f);   /* big-endian host: a converted copy */
    *data = f;
    *type = MOLORA_TYPE_F32;
    return r;
}

MOLORA_API molora_result molora_safetensors_tensor_f32(molora_safetensors *st, size_t index, const float **data)
{
    molora__tensor *t;
    molora_result r;
    if (!st || !data) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (index >= st->n) return MOLORA_RESULT_TENSOR_NOT_FOUND;
    t = st->all[index];
    if ((r = molora__need_float(st, t)) != MOLORA_RESULT_SUCCESS) return r;
    if (t->dtype == MOLORA_DTYPE_F32 && ((uintptr_t)t->data & 3) == 0 && molora__little_endian()) {
        *data = (const float *)(const void *)t->data;
        return MOLORA_RESULT_SUCCESS;
    }
    if (!t->f32) {
        size_t nf;
        if (!molora__floats((size_t)t->n_el, 1, &nf))
            return molora__fail(&st->io.lg, MOLORA_RESULT_SIZE_OVERFLOW, "tensor \"%s\": too large", t->name);
        t->f32 = (float *)molora__calloc(&st->io, nf, sizeof(float));
        if (!t->f32)
            return molora__fail(&st->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "tensor \"%s\": %zu floats", t->name, nf);
        molora__convert(t, t->f32);
    }
    *data = t->f32;
    return MOLORA_RESULT_SUCCESS;
}
/* <<conversion */

/* >>index  sharded models: model.safetensors.index.json, directories of shards, opening a path */
static int molora__cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
typedef struct molora__index {
    molora__json js;
    size_t wm, nw;                /* weight_map token, its members                          */
    char **files;                 /* (nf) distinct shard file names, sorted                 */
    size_t nf;
    char *pool;                   /* their decoded text                                     */
} molora__index;
MOLORA__PRIVATE void molora__index_free(const molora__io *io, molora__index *x)
{
    molora__json_free(io, &x->js);
    molora__mfree(io, x->files);
    molora__mfree(io, x->pool);
    memset(x, 0, sizeof *x);
}
/* The weight_map's values decoded into x->pool, each a plain file name, then sorted and made
   distinct into x->files[0..nf). */
MOLORA__PRIVATE molora_result molora__index_files(const molora__io *io, const char *what, molora__index *x)
{
    const molora__json *js = &x->js;
    size_t i, k;
    char *p;
    for (i = 0, k = x->wm + 1, p = x->pool; i < x->nw; i++, k += 2) {
        char *f = p;
        if (js->tok[k + 1].type != MOLORA__J_STR)
            return molora__fail(&io->lg, MOLORA_RESULT_INVALID_JSON, "%s: weight_map value of \"%.*s\" is not a string",
                                what, (int)(js->tok[k].end - js->tok[k].start), js->s + js->tok[k].start);
        p += molora__jstr(js, &js->tok[k + 1], p) + 1;
        if (strchr(f, '/') || !f[0] || !strcmp(f, ".") || !strcmp(f, ".."))
            return molora__fail(&io->lg, MOLORA_RESULT_INVALID_JSON, "%s: shard name \"%s\" must be a plain file name",
                                what, f);
        x->files[i] = f;
    }
    if (x->nw > 1) qsort(x->files, x->nw, sizeof *x->files, molora__cmp_str);
    for (i = 0; i < x->nw; i++)
        if (i == 0 || strcmp(x->files[i], x->files[x->nf - 1])) x->files[x->nf++] = x->files[i];
    return MOLORA_RESULT_SUCCESS;
}
/* Parses an index text (strict JSON, no key twice) into x: the weight_map must be an object of
   plain file names (no '/', not empty, not "." or ".."). what names the file in messages. */
MOLORA__PRIVATE molora_result molora__index_parse(const molora__io *io, const char *text, size_t size, const char *what,
                                                  molora__index *x)
{
    molora__json *js = &x->js;
    molora_result r;
    memset(x, 0, sizeof *x);
    if (!molora__utf8_valid((const unsigned char *)text, size))
        return molora__fail(&io->lg, MOLORA_RESULT_INVALID_UTF8, "%s: not valid UTF-8", what);
    r = molora__json_parse(io, text, size, js, what, MOLORA_RESULT_INVALID_JSON);
    if (r) return r;
    x->wm = molora__jget(js, 0, "weight_map");
    if (!x->wm || js->tok[x->wm].type != MOLORA__J_OBJ) {
        r = molora__fail(&io->lg, MOLORA_RESULT_INVALID_JSON, "%s: key \"weight_map\" missing or not an object", what);
    } else {
        x->nw = js->tok[x->wm].size;
        x->files = (char **)molora__calloc(io, x->nw + 1, sizeof(char *));
        x->pool = (char *)molora__malloc(io, size + x->nw + 1);
        if (!x->files || !x->pool) r = molora__fail(&io->lg, MOLORA_RESULT_OUT_OF_MEMORY, "%s: out of memory", what);
        else r = molora__index_files(io, what, x);
    }
    if (r) molora__index_free(io, x);
    return r;
}

#ifndef MOLORA_NO_STDIO
/* Reads (MOLORA_LOAD_READ) or maps shard s of st from path and parses it. */
MOLORA__PRIVATE molora_result molora__st_load_shard(molora_safetensors *st, int s, const char *path)
{
    molora__shard *sh = &st->shards[s];
    void *map = NULL;
    char *owned = NULL;
    const char *image;
    size_t size;
    molora_result r;
    if (st->io.flags & MOLORA_LOAD_READ)
        r = molora__read_file(&st->io, path, (size_t)PTRDIFF_MAX - 1, MOLORA_RESULT_SIZE_OVERFLOW, &owned, &size);
    else
        r = molora__map(&st->io.lg, path, &map, &size);
    if (r) return r;
    image = owned ? owned : map ? (const char *)map : "";
    r = molora__st_parse(&st->io, (const unsigned char *)image, size, s, path, sh);
    if (r) { molora__unmap(map, size); molora__mfree(&st->io, owned); return r; }
    sh->map = map;
    sh->map_size = map ? size : 0;
    sh->owned = owned;
    st->n_shards = s + 1;
    return MOLORA_RESULT_SUCCESS;
}

/* Every tensor the weight_map lists is present, in the shard the index names for it. */
MOLORA__PRIVATE molora_result molora__index_check(const molora__io *io, const char *path, const molora__index *x,
                                                  const molora_safetensors *st)
{
    const molora__json *js = &x->js;
    size_t i, k;
    for (i = 0, k = x->wm + 1; i < x->nw; i++, k += 2) {
        size_t idx, s;
        char *name = (char *)molora__malloc(io, js->tok[k].end - js->tok[k].start + 1);
        char *file = (char *)molora__malloc(io, js->tok[k + 1].end - js->tok[k + 1].start + 1);
        molora_result r = MOLORA_RESULT_SUCCESS;
        int ok = 0;
        if (!name || !file) {
            molora__mfree(io, name);
            molora__mfree(io, file);
            return molora__fail(&io->lg, MOLORA_RESULT_OUT_OF_MEMORY, "%s: out of memory", path);
        }
        molora__jstr(js, &js->tok[k], name);
        molora__jstr(js, &js->tok[k + 1], file);
        if (!molora_safetensors_find(st, name, &idx)) {
            char **hit = (char **)bsearch(&file, x->files, x->nf, sizeof *x->files, molora__cmp_str);
            s = hit ? (size_t)(hit - x->files) : x->nf;
            ok = (int)s == st->all[idx]->shard;
        }
        if (!ok)
            r = molora__fail(&io->lg, MOLORA_RESULT_TENSOR_NOT_FOUND, "%s: tensor \"%s\" is not in shard %s", path,
                             name, file);
        molora__mfree(io, name);
        molora__mfree(io, file);
        if (r) return r;
    }
    return MOLORA_RESULT_SUCCESS;
}

/* The shard files an index .json's weight_map names, each loaded once from the index's
   directory, then checked against the weight_map. */
MOLORA__PRIVATE molora_result molora__st_open_index(const char *path, const molora_load_desc *desc,
                                                    molora_safetensors **out)
{
    molora__io io;
    molora__index x;
    molora_result r;
    char *text = NULL, *dir = NULL, *slash;
    size_t size, i;
    molora_safetensors *st = NULL;
    if (molora__io_init(desc, &io)) return MOLORA_RESULT_INVALID_ARGUMENT;
    if ((r = molora__slurp(&io, path, &text, &size)) != MOLORA_RESULT_SUCCESS) return r;
    if ((r = molora__index_parse(&io, text, size, path, &x)) != MOLORA_RESULT_SUCCESS) {
        molora__mfree(&io, text);
        return r;
    }
    dir = (char *)molora__malloc(&io, strlen(path) + 1);
    if (!dir) { r = molora__fail(&io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "%s: out of memory", path); goto done; }
    strcpy(dir, path);
    slash = strrchr(dir, '/');
    if (slash) *slash = 0; else strcpy(dir, ".");
    if ((r = molora__st_new(desc, (int)x.nf, &st)) != MOLORA_RESULT_SUCCESS) goto done;
    for (i = 0; i < x.nf; i++) {
        char *fp = molora__path_join(&io, dir, x.files[i]);
        if (!fp) { r = molora__fail(&io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "%s: out of memory", path); goto done; }
        r = molora__st_load_shard(st, (int)i, fp);
        molora__mfree(&io, fp);
        if (r) goto done;
    }
    if ((r = molora__st_lookup(st)) != MOLORA_RESULT_SUCCESS) goto done;
    r = molora__index_check(&io, path, &x, st);
done:
    if (r) { molora__st_release(st); st = NULL; }
    *out = st;
    molora__index_free(&io, &x);
    molora__mfree(&io, text);
    molora__mfree(&io, dir);
    return r;
}

/* The paths of the *.safetensors files in directory path (hidden files skipped), in readdir's
   order; *names (n of them, also on failure) is the caller's to free. */
MOLORA__PRIVATE molora_result molora__list_shards(const molora__io *io, const char *path, char ***names, size_t *n)
{
    DIR *d = opendir(path);
    struct dirent *e;
    size_t cap = 0;
    molora_result r = MOLORA_RESULT_SUCCESS;
    *names = NULL;
    *n = 0;
    if (!d) return molora__fail(&io->lg, MOLORA_RESULT_IO_ERROR, "%s: cannot open directory", path);
    while ((e = readdir(d)) != NULL) {
        if (!molora__ends_with(e->d_name, ".safetensors") || e->d_name[0] == '.') continue;
        if (*n == cap) {
            char **nn = (char **)molora__calloc(io, cap = cap ? 2 * cap : 16, sizeof(char *));
            if (!nn) { r = MOLORA_RESULT_OUT_OF_MEMORY; break; }
            if (*n) memcpy(nn, *names, *n * sizeof **names);
            molora__mfree(io, *names);
            *names = nn;
        }
        if (!((*names)[*n] = molora__path_join(io, path, e->d_name))) { r = MOLORA_RESULT_OUT_OF_MEMORY; break; }
        (*n)++;
    }
    closedir(d);
    if (r) return molora__fail(&io->lg, r, "%s: out of memory", path);
    if (*n == 0)
        return molora__fail(&io->lg, MOLORA_RESULT_IO_ERROR, "%s: no .safetensors files in the directory", path);
    return MOLORA_RESULT_SUCCESS;
}

/* A directory: its model.safetensors.index.json when present, else every *.safetensors in it,
   loaded in name order. */
MOLORA__PRIVATE molora_result molora__st_open_dir(const char *path, const molora_load_desc *desc,
                                                  molora_safetensors **out)
{
    molora__io io;
    char **names = NULL, *idx;
    size_t n = 0, i;
    molora_result r;
    molora_safetensors *st = NULL;
    struct stat sb;
    if (molora__io_init(desc, &io)) return MOLORA_RESULT_INVALID_ARGUMENT;
    idx = molora__path_join(&io, path, "model.safetensors.index.json");
    if (!idx) return molora__fail(&io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "%s: out of memory", path);
    if (stat(idx, &sb) == 0) { r = molora__st_open_index(idx, desc, out); molora__mfree(&io, idx); return r; }
    molora__mfree(&io, idx);
    r = molora__list_shards(&io, path, &names, &n);
    if (!r) {
        if (n > 1) qsort(names, n, sizeof *names, molora__cmp_str);
        if (!(r = molora__st_new(desc, (int)n, &st)))
            for (i = 0; i < n && !r; i++) r = molora__st_load_shard(st, (int)i, names[i]);
        if (!r) r = molora__st_lookup(st);
        if (r) { molora__st_release(st); st = NULL; }
    }
    for (i = 0; i < n; i++) molora__mfree(&io, names[i]);
    molora__mfree(&io, names);
    *out = st;
    return r;
}

MOLORA_API molora_result molora_safetensors_open(const char *path, const molora_load_desc *desc,
                                                 molora_safetensors **out)
{
    struct stat sb;
    molora_safetensors *st;
    molora_result r;
    molora__io io;
    if (!out) return MOLORA_RESULT_INVALID_ARGUMENT;
    *out = NULL;
    if (!path || molora__io_init(desc, &io)) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (stat(path, &sb) != 0)
        return molora__fail(&io.lg, MOLORA_RESULT_IO_ERROR, "%s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return molora__st_open_dir(path, desc, out);
    if (molora__ends_with(path, ".json")) return molora__st_open_index(path, desc, out);
    if ((r = molora__st_new(desc, 1, &st)) != MOLORA_RESULT_SUCCESS) return r;
    r = molora__st_load_shard(st, 0, path);
    if (!r) r = molora__st_lookup(st);
    if (r) { molora__st_release(st); return r; }
    *out = st;
    return MOLORA_RESULT_SUCCESS;
}
#endif /* MOLORA_NO_STDIO */
/* <<index */

/* >>adapter_types  the adapter object, its modules and the layout names ------------------------ */
/* Loading is split the way cgltf splits parsing: the config section reads adapter_config.json
   into one struct; the modules section groups the tensors into modules, detects the layout,
   filters the layers and checks the experts; the builders section turns each module into a layer
   descriptor, one builder per layout. The file layouts: docs/formats.md. */
typedef struct molora__module {
    char *name;                  /* module path P as in the file                          */
    int block;                   /* block (decoder layer) index parsed from P, -1 if none */
    int n;                       /* experts: highest index + 1, the length of A and B     */
    long *A, *B;                 /* tensor index per expert, -1 = missing                 */
    long gate, gate_bias, thr_w, thr_b, mole_gate;
    long protos;                 /* molora's arrow_prototypes (N, d_in), -1 = none         */
    unsigned styles;             /* bit s: an A / B tensor named in style s (MOLORA__STYLE_*) */
} molora__module;

struct molora_adapter {
    molora__io io;
    molora_layout layout;
    molora_safetensors *st;
    int own_st;
    int n_mod, cap_mod;
    molora__module *mods;
    molora_layer_desc *layers;   /* (n_mod)                                               */
    molora_expert_desc *experts; /* all layers' experts                                   */
    molora_dtype *dtypes;        /* (n_mod)                                               */
    float *zeros;                /* zero gates for single-expert PEFT layers               */
    size_t n_ignored;
    const char **ignored;
    molora__module **by_name;    /* (n_mod) sorted by path without base_model.model.       */
};

static const char *const molora__layout_names[MOLORA_LAYOUT_COUNT] = {
    "peft_lora", "adamole", "mole", "mola", "molora", "xlora"};
MOLORA_API const char *molora_layout_name(molora_layout l)
{
    return ((int)l >= 0 && l < MOLORA_LAYOUT_COUNT) ? molora__layout_names[l] : "?";
}

/* <<adapter_types */

/* >>config  adapter_config.json: every key the layouts use, read into one struct ---------------- */
/* peft_type, use_dora and bias are read first (molora__config_open), so a refused config fails
   before any tensor is looked at; the layout's own keys after the tensors are grouped
   (molora__config_read), since a LORA config is PEFT LoRA or MoLA by its tensor names. Every
   error names its key. */
typedef struct molora__re molora__re;   /* a compiled key and its Pike VM (the patterns section) */
MOLORA__PRIVATE molora__re *molora__re_alloc(const molora__io *io);

/* A sorted index of an object's members by decoded key, built once (O(m log m)) so a lookup per
   module is a binary search: molora's expert_scaling object has one key per module, and scanning
   it per module would be O(modules^2). (rank_pattern / alpha_pattern keys are regexes, tried in
   file order per module as PEFT's get_pattern_key does: O(modules x keys), as in PEFT.) */
typedef struct molora__jkv { molora__jkey k; size_t val; } molora__jkv;   /* k first: molora__cmp_jkey */
MOLORA__PRIVATE molora__jkv *molora__jindex(const molora__io *io, const molora__json *p, size_t o)
{
    size_t i, k = o + 1, n = p->tok[o].size;
    molora__jkv *x = (molora__jkv *)molora__calloc(io, n ? n : 1, sizeof *x);
    if (!x) return NULL;
    for (i = 0; i < n; i++) {
        x[i].k.s = p->s + p->tok[k].start; x[i].k.n = p->tok[k].end - p->tok[k].start; x[i].val = k + 1;
        k += 1 + p->tok[k + 1].skip;
    }
    if (n > 1) qsort(x, n, sizeof *x, molora__cmp_jkey);
    return x;
}
/* value token of `key` in an index of n members, or 0 (keys are unique: the parser refuses twins) */
MOLORA__PRIVATE size_t molora__jindex_get(const molora__jkv *x, size_t n, const char *key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = molora__jcmp_lit(x[mid].k.s, x[mid].k.n, key);
        if (!c) return x[mid].val;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return 0;
}

/* The config as the builders use it; a zero field is absent (tokens index js.tok, 0 = none). */
typedef struct molora__adapter_config {
    molora__json js;                  /* the parsed text                                          */
    const molora__logger *lg;
    char peft_type[32];
    /* PEFT LoRA and MoLA */
    double r, lora_alpha;             /* "r" (or "lora_rank"), "lora_alpha": PEFT's default 8      */
    const char *r_from;               /* where r came from, for messages                          */
    int use_rslora, fan_in_fan_out;   /* fan_in_fan_out: GPT-2 Conv1D, W0 is (in, out)            */
    molora__re *re;                   /* rank_pattern / alpha_pattern scratch (PEFT only)         */
    size_t layers_to_transform;       /* token; its layers sorted in ltt (n_ltt)                  */
    double *ltt;
    size_t n_ltt;
    size_t r_list, top_k_list;        /* MoLA: "r" and "top_k" as lists per decoder layer ...     */
    double *r_per_layer, *top_k_per_layer;   /* ... converted (NaN: not a number)                 */
    /* AdaMoLE, MoLE and molora */
    int lora_rank, num_experts;       /* AdaMoLE and MoLE; num_experts 0 = not checked            */
    int routing;                      /* molora_routing                                           */
    double top_k, threshold, max_threshold, temperature;
    int top_k_set, threshold_set, max_threshold_set;
    int protos_given;                 /* molora arrow: "arrow_prototypes": "given" (every module
                                         must then hold its tensor: they cannot be recomputed)   */
    size_t expert_scaling;            /* molora: a list, or an object module -> list ...          */
    molora__jkv *scaling_index;       /* ... indexed by key at its first use                      */
    size_t n_scaling_index;
} molora__adapter_config;

MOLORA__PRIVATE molora_result molora__cfg_num(const molora__adapter_config *c, const char *key, int required,
                                              double def, double *v, int *present)
{
    size_t t = molora__jget(&c->js, 0, key);
    if (present) *present = 0;
    *v = def;
    if (!t || c->js.tok[t].type == MOLORA__J_NULL) {
        if (required)
            return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: key \"%s\" is missing", key);
        return MOLORA_RESULT_SUCCESS;
    }
    if (!molora__jnum(&c->js, &c->js.tok[t], v) || !isfinite(*v))
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: key \"%s\" must be a number",
                            key);
    if (present) *present = 1;
    return MOLORA_RESULT_SUCCESS;
}
MOLORA__PRIVATE molora_result molora__cfg_int(const molora__adapter_config *c, const char *key, int required,
                                              int def, int *v, int *present)
{
    double d;
    molora_result r = molora__cfg_num(c, key, required, def, &d, present);
    if (r) return r;
    if (d != floor(d) || d < -2147483647.0 || d > 2147483647.0)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: key \"%s\" must be an integer",
                            key);
    *v = (int)d;
    return MOLORA_RESULT_SUCCESS;
}
MOLORA__PRIVATE int molora__cfg_true(const molora__adapter_config *c, const char *key)
{
    size_t t = molora__jget(&c->js, 0, key);
    return t && c->js.tok[t].type == MOLORA__J_TRUE;
}

/* The text parsed, then the keys every layout shares: peft_type, use_dora, bias. */
MOLORA__PRIVATE molora_result molora__config_open(const molora__io *io, molora__adapter_config *c,
                                                  const char *text, size_t size)
{
    const molora__json *js = &c->js;
    size_t t;
    molora_result r;
    c->lg = &io->lg;
    if (!molora__utf8_valid((const unsigned char *)text, size))
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: not valid UTF-8");
    r = molora__json_parse(io, text, size, &c->js, "adapter_config.json", MOLORA_RESULT_INVALID_JSON);
    if (r != MOLORA_RESULT_SUCCESS) return r;
    if (js->tok[0].type != MOLORA__J_OBJ)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: not a JSON object");
    t = molora__jget(js, 0, "peft_type");
    if (!t || js->tok[t].type != MOLORA__J_STR || js->tok[t].end - js->tok[t].start >= sizeof c->peft_type)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG,
                            "adapter_config.json: key \"peft_type\" missing or not a string");
    molora__jstr(js, &js->tok[t], c->peft_type);
    if (molora__cfg_true(c, "use_dora"))
        return molora__fail(c->lg, MOLORA_RESULT_UNSUPPORTED,
                            "adapter_config.json: \"use_dora\": DoRA adapters are not supported");
    t = molora__jget(js, 0, "bias");
    if (t && js->tok[t].type != MOLORA__J_NULL && !molora__jeq(js, &js->tok[t], "none"))
        return molora__fail(c->lg, MOLORA_RESULT_UNSUPPORTED,
                            "adapter_config.json: \"bias\" must be \"none\" (trained biases are not supported)");
    return MOLORA_RESULT_SUCCESS;
}

/* PEFT LoRA and MoLA: r (MoLA: also a list per layer), lora_alpha, MoLA's top_k per layer. */
MOLORA__PRIVATE molora_result molora__config_lora(const molora__io *io, molora__adapter_config *c, int mola)
{
    const molora__json *js = &c->js;
    size_t t = molora__jget(js, 0, "r");
    molora_result r;
    c->r = 8; c->lora_alpha = 8;
    c->r_from = "key \"r\"";
    if (mola && t && js->tok[t].type == MOLORA__J_ARR) c->r_list = t;
    else {   /* PEFT's "r"; AdaMoLE's LoRA baseline (peft_type LORA too) writes "lora_rank" instead */
        int lora_rank = !t && !mola && molora__jget(js, 0, "lora_rank");
        if (lora_rank) c->r_from = "key \"lora_rank\"";
        else if (!t) c->r_from = "PEFT's default: the config has no \"r\"";
        r = molora__cfg_num(c, lora_rank ? "lora_rank" : "r", 0, 8, &c->r, NULL);
        if (r != MOLORA_RESULT_SUCCESS) return r;
    }
    if ((r = molora__cfg_num(c, "lora_alpha", 0, 8, &c->lora_alpha, NULL)) != MOLORA_RESULT_SUCCESS) return r;
    if (!mola) return MOLORA_RESULT_SUCCESS;
    t = molora__jget(js, 0, "top_k");
    c->top_k_list = t && js->tok[t].type != MOLORA__J_NULL ? t : 0;
    if (c->top_k_list && js->tok[t].type != MOLORA__J_ARR)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG,
                            "adapter_config.json: \"top_k\" must be a list per layer");
    if ((c->r_list && !molora__jlist_f64(io, js, c->r_list, &c->r_per_layer)) ||
        (c->top_k_list && !molora__jlist_f64(io, js, c->top_k_list, &c->top_k_per_layer)))
        return molora__fail(c->lg, MOLORA_RESULT_OUT_OF_MEMORY, "adapter: out of memory");
    return MOLORA_RESULT_SUCCESS;
}

/* molora compose: the routing rule by name and the experts' scalings. */
MOLORA__PRIVATE molora_result molora__config_compose(molora__adapter_config *c)
{
    const molora__json *js = &c->js;
    size_t t = molora__jget(js, 0, "routing");
    int k;   /* every rule by its molora_routing_name but FIXED, which a file cannot hold */
    if (!t) return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: key \"routing\" is missing");
    for (k = 0; k < MOLORA_ROUTING_COUNT; k++)
        if (k != MOLORA_ROUTING_FIXED && molora__jeq(js, &js->tok[t], molora_routing_name((molora_routing)k))) break;
    if (k == MOLORA_ROUTING_COUNT)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: \"routing\" must be dense, "
                            "topk, threshold, adamole, mole_output or arrow");
    c->routing = k;   /* same order as molora_routing */
    t = molora__jget(js, 0, "arrow_prototypes");
    if (t && !molora__jeq(js, &js->tok[t], "exact") && !(c->protos_given = molora__jeq(js, &js->tok[t], "given")))
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: \"arrow_prototypes\" must be "
                            "\"given\" or \"exact\"");
    t = c->expert_scaling = molora__jget(js, 0, "expert_scaling");
    if (!t || (js->tok[t].type != MOLORA__J_ARR && js->tok[t].type != MOLORA__J_OBJ))
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: \"expert_scaling\" must be "
                            "a list of N numbers (or an object: module -> list)");
    return MOLORA_RESULT_SUCCESS;
}

/* AdaMoLE, MoLE and molora: lora_alpha, lora_rank and num_experts (not molora's), the routing. */
MOLORA__PRIVATE molora_result molora__config_moe(molora__adapter_config *c, molora_layout layout)
{
    int compose = layout == MOLORA_LAYOUT_MOLORA;
    molora_result r;
    c->lora_alpha = 8; c->lora_rank = 8;
    if ((r = molora__cfg_num(c, "lora_alpha", !compose, 8, &c->lora_alpha, NULL)) != MOLORA_RESULT_SUCCESS) return r;
    if (!compose) {
        if ((r = molora__cfg_int(c, "lora_rank", 1, 8, &c->lora_rank, NULL)) != MOLORA_RESULT_SUCCESS) return r;
        if ((r = molora__cfg_int(c, "num_experts", 1, 0, &c->num_experts, NULL)) != MOLORA_RESULT_SUCCESS) return r;
    }
    if ((r = molora__cfg_num(c, "top_k", 0, 0, &c->top_k, &c->top_k_set)) ||
        (r = molora__cfg_num(c, "threshold", 0, 0, &c->threshold, &c->threshold_set)) ||
        (r = molora__cfg_num(c, "max_threshold", 0, 0, &c->max_threshold, &c->max_threshold_set)) ||
        (r = molora__cfg_num(c, "temperature", 0, 1, &c->temperature, NULL)))
        return r;
    if (!((float)c->temperature > 0) || isinf((float)c->temperature))   /* 0 would read as the default 1 */
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: \"temperature\" %g must be "
                            "> 0 and finite as a float32", c->temperature);
    if (layout == MOLORA_LAYOUT_ADAMOLE) c->routing = MOLORA_ROUTING_ADAMOLE;
    else if (layout == MOLORA_LAYOUT_MOLE) {
        if (c->top_k_set == c->threshold_set)
            return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG,
                                "adapter_config.json: MOLE needs exactly one of \"top_k\" and \"threshold\"");
        c->routing = c->top_k_set ? MOLORA_ROUTING_TOPK : MOLORA_ROUTING_THRESHOLD;
    } else return molora__config_compose(c);
    return MOLORA_RESULT_SUCCESS;
}

static int molora__cmp_f64(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
/* layers_to_transform (PEFT only): an int or a list of non-negative ints, kept sorted */
MOLORA__PRIVATE molora_result molora__config_layers(const molora__io *io, molora__adapter_config *c)
{
    const molora__json *js = &c->js;
    size_t t = molora__jget(js, 0, "layers_to_transform"), i;
    if (!t || js->tok[t].type == MOLORA__J_NULL) return MOLORA_RESULT_SUCCESS;
    if (js->tok[t].type != MOLORA__J_ARR && js->tok[t].type != MOLORA__J_NUM)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG,
                            "adapter_config.json: \"layers_to_transform\" must be an int or a list of ints");
    c->layers_to_transform = t;
    if (js->tok[t].type == MOLORA__J_NUM) {
        if (!(c->ltt = (double *)molora__calloc(io, 1, sizeof(double))))
            return molora__fail(c->lg, MOLORA_RESULT_OUT_OF_MEMORY, "adapter: out of memory");
        if (!molora__jnum(js, &js->tok[t], c->ltt)) c->ltt[0] = NAN;
        c->n_ltt = 1;
    } else {
        if (!molora__jlist_f64(io, js, t, &c->ltt))
            return molora__fail(c->lg, MOLORA_RESULT_OUT_OF_MEMORY, "adapter: out of memory");
        c->n_ltt = js->tok[t].size;
    }
    for (i = 0; i < c->n_ltt; i++)
        if (!(c->ltt[i] == floor(c->ltt[i])) || c->ltt[i] < 0 || c->ltt[i] > 2147483647.0)
            return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: \"layers_to_transform\" "
                                "entry %zu is not a layer number (a non-negative integer)", i);
    if (c->n_ltt > 1) qsort(c->ltt, c->n_ltt, sizeof *c->ltt, molora__cmp_f64);
    return MOLORA_RESULT_SUCCESS;
}

/* The layout's keys, in the order they have always been checked (the first error stays first). */
MOLORA__PRIVATE molora_result molora__config_read(const molora__io *io, molora__adapter_config *c, molora_layout layout)
{
    int peft = layout == MOLORA_LAYOUT_PEFT_LORA;
    molora_result r;
    if (peft && !(c->re = molora__re_alloc(io)))
        return molora__fail(c->lg, MOLORA_RESULT_OUT_OF_MEMORY, "adapter: out of memory");
    if (peft || layout == MOLORA_LAYOUT_MOLA) r = molora__config_lora(io, c, layout == MOLORA_LAYOUT_MOLA);
    else r = molora__config_moe(c, layout);
    if (r != MOLORA_RESULT_SUCCESS) return r;
    c->use_rslora = peft && molora__cfg_true(c, "use_rslora");
    c->fan_in_fan_out = molora__cfg_true(c, "fan_in_fan_out");
    return peft ? molora__config_layers(io, c) : MOLORA_RESULT_SUCCESS;
}
MOLORA__PRIVATE void molora__config_free(const molora__io *io, molora__adapter_config *c)
{
    molora__mfree(io, c->scaling_index);
    molora__mfree(io, c->re);
    molora__mfree(io, c->ltt);
    molora__mfree(io, c->r_per_layer);
    molora__mfree(io, c->top_k_per_layer);
    molora__json_free(io, &c->js);
}
/* <<config */

/* >>patterns  rank_pattern / alpha_pattern keys matched as PEFT v0.20.0 get_pattern_key does ----- */
/* That is Python's re.match(rf"(.*\.)?({key})$", module), first key in dict order wins. The key is
   compiled to a Thompson NFA and run as a Pike VM over the module name's code points, all threads
   in step, so a match costs O(len(key) * len(name)) whatever the key (no backtracking: `((a*)*)*b`
   is linear). Supported, with Python's meaning: literals (UTF-8), `.`, classes `[...]` (ranges,
   negation, escapes), `\d \w \s \D \W \S` (ASCII: a key using them is refused for a name with
   non-ASCII characters), escaped punctuation, `\t \n \r \f \v \a`, `* + ?` and their lazy forms
   (same yes/no answer), `|`, groups `(...)` and `(?:...)`.
   Anything else (`{m,n}`, `^`, `$`, back-references, `\b`, look-arounds, other `(?` forms, a
   possessive quantifier) is refused as UNSUPPORTED, never guessed. A key Python's re.compile
   itself refuses (PEFT would raise) is INVALID_CONFIG, naming the key and Python's reason:
   unbalanced parentheses, nothing to repeat (`*a`), a multiple repeat (`a**`), `{m,n}` with
   m > n, a bad character range (`[z-a]`, `[\d-z]`), an unterminated class, a trailing `\`. */
enum { MOLORA__RE_EMPTY, MOLORA__RE_LIT, MOLORA__RE_ANY, MOLORA__RE_CLASS, MOLORA__RE_CAT, MOLORA__RE_ALT,
       MOLORA__RE_STAR, MOLORA__RE_PLUS, MOLORA__RE_QUEST, MOLORA__RE_SPLIT, MOLORA__RE_JMP, MOLORA__RE_MATCH };
#define MOLORA__RE_MAX 2048                     /* nodes and instructions; keys are < 512 bytes */
typedef struct molora__re_node { int type, a, b; unsigned c; const char *cls; int cls_len; } molora__re_node;
typedef struct molora__re_inst { int op, x, y; unsigned c; const char *cls; int cls_len; } molora__re_inst;
struct molora__re {                             /* typedef'd in the config section             */
    const char *p;                              /* parse cursor into the key                    */
    int ok, n_node, n_inst;
    int ascii_classes;                          /* the key uses \d \w \s ...: ASCII names only */
    const char *key, *bad;                      /* the key; why Python's re refuses it (or NULL) */
    molora__re_node node[MOLORA__RE_MAX];
    molora__re_inst inst[MOLORA__RE_MAX];
    int mark[MOLORA__RE_MAX], gen;              /* Pike VM: thread already on the list          */
    int list[2][MOLORA__RE_MAX], n_list[2];
};

MOLORA__PRIVATE molora__re *molora__re_alloc(const molora__io *io)
{
    return (molora__re *)molora__malloc(io, sizeof(molora__re));
}

/* next code point of a valid UTF-8 string */
MOLORA__PRIVATE unsigned molora__utf8_next(const char **s)
{
    const unsigned char *u = (const unsigned char *)*s;
    unsigned c = u[0];
    int k = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3, i;
    if (k) c &= 0x3Fu >> k;
    for (i = 1; i <= k && u[i]; i++) c = (c << 6) | (u[i] & 0x3F);
    *s += i;
    return c;
}
MOLORA__PRIVATE int molora__re_class1(char e, unsigned c)
{
    switch (e) {
    case 'd': return c >= '0' && c <= '9';
    case 'D': return !(c >= '0' && c <= '9');
    case 'w': return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    case 'W': return !molora__re_class1('w', c);
    case 's': return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
    case 'S': return !molora__re_class1('s', c);
    default: return 0;
    }
}
/* the character an escape \e stands for (0: a class letter or unsupported) */
MOLORA__PRIVATE unsigned molora__re_escape(char e)
{
    static const char ctl[] = "t\tn\nr\rf\fv\va\a";
    const char *q;
    if (!e || strchr("dDwWsS", e)) return 0;
    if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) {
        for (q = ctl; *q; q += 2) if (*q == e) return (unsigned char)q[1];
        return 0;                               /* \b \A \1 ...: not supported                   */
    }
    return (unsigned char)e;
}
/* does class [p, p + len) (brackets included) hold c? */
MOLORA__PRIVATE int molora__re_in_class(const char *p, int len, unsigned c)
{
    const char *q = p + 1, *end = p + len - 1;
    int neg = 0, hit = 0, first = 1;
    if (*q == '^') { neg = 1; q++; }
    while (q < end) {
        unsigned lo, hi;
        int cls = 0;
        if (*q == '\\') {
            cls = molora__re_escape(q[1]) == 0;
            lo = cls ? (unsigned char)q[1] : molora__re_escape(q[1]);
            q += 2;
        } else if (*q == ']' && first) { lo = ']'; q++; }
        else lo = molora__utf8_next(&q);
        first = 0;
        if (cls) { hit |= molora__re_class1((char)lo, c); continue; }
        if (*q == '-' && q + 1 < end) {
            q++;
            if (*q == '\\') { hi = molora__re_escape(q[1]); q += 2; } else hi = molora__utf8_next(&q);
            hit |= c >= lo && c <= hi;
        } else hit |= c == lo;
    }
    return hit != neg;
}
/* length of the class starting at p, or -1 if unterminated or using an unsupported escape */
MOLORA__PRIVATE int molora__re_class_len(const char *p)
{
    const char *q = p + 1;
    if (*q == '^') q++;
    if (*q == ']') q++;
    while (*q && *q != ']') {
        if (*q == '\\') { if (!q[1] || (!molora__re_escape(q[1]) && !strchr("dDwWsS", q[1]))) return -1; q += 2; }
        else if (*q == '[' && (q[1] == ':' || q[1] == '=' || q[1] == '.')) return -1;   /* POSIX-like: Python warns */
        else q++;
    }
    return *q ? (int)(q - p + 1) : -2;
}
static const char molora__re_bad_range_class[] = "bad character range (a class escape as a range end)";
/* why Python refuses class [p, p + len) (a range whose ends are reversed or a class escape), or NULL */
MOLORA__PRIVATE const char *molora__re_class_bad(const char *p, int len)
{
    const char *q = p + 1, *end = p + len - 1;
    int first = 1;
    if (*q == '^') q++;
    while (q < end) {
        unsigned lo, hi;
        int cls = 0;
        if (*q == '\\') { cls = molora__re_escape(q[1]) == 0; lo = cls ? 0 : molora__re_escape(q[1]); q += 2; }
        else if (*q == ']' && first) { lo = ']'; q++; }
        else lo = molora__utf8_next(&q);
        first = 0;
        if (*q == '-' && q + 1 < end) {
            q++;
            if (*q == '\\') {
                if (!(hi = molora__re_escape(q[1]))) return molora__re_bad_range_class;
                q += 2;
            } else hi = molora__utf8_next(&q);
            if (cls) return molora__re_bad_range_class;
            if (lo > hi) return "bad character range (its start is above its end)";
        }
    }
    return NULL;
}
/* are the key's parentheses (outside classes and escapes) unbalanced in number? */
MOLORA__PRIVATE int molora__re_parens_unbalanced(const char *q)
{
    long d = 0;
    while (*q) {
        if (*q == '\\') { if (!q[1]) return 0; q += 2; continue; }
        if (*q == '[') { int len = molora__re_class_len(q); if (len < 0) return 0; q += len; continue; }
        d += *q == '(' ? 1 : *q == ')' ? -1 : 0;
        q++;
    }
    return d != 0;
}
MOLORA__PRIVATE int molora__re_new(molora__re *re, int type, int a, int b)
{
    molora__re_node *n;
    if (re->n_node >= MOLORA__RE_MAX) { re->ok = 0; return 0; }
    n = &re->node[re->n_node];
    memset(n, 0, sizeof *n);
    n->type = type; n->a = a; n->b = b;
    return re->n_node++;
}
MOLORA__PRIVATE int molora__re_alt(molora__re *re, int depth);
MOLORA__PRIVATE int molora__re_atom(molora__re *re, int depth)
{
    const char *p = re->p;
    int n;
    if (*p == '(') {
        if (p[1] == '?') { if (p[2] != ':') { re->ok = 0; return 0; } re->p += 3; } else re->p++;
        n = molora__re_alt(re, depth + 1);
        if (re->ok && !*re->p) re->bad = "missing ), unterminated subpattern";
        if (*re->p != ')') { re->ok = 0; return 0; }
        re->p++;
        return n;
    }
    if (*p == '*' || *p == '+' || (*p == '?' && p != re->key)) re->bad = "nothing to repeat";
    if (*p == ')' && molora__re_parens_unbalanced(re->key)) re->bad = "unbalanced parenthesis";
    if (*p == ')' || strchr("*+?{}^$", *p)) { re->ok = 0; return 0; }
    if (*p == '.') { re->p++; return molora__re_new(re, MOLORA__RE_ANY, 0, 0); }
    if (*p == '[') {
        int len = molora__re_class_len(p), k;
        if (len == -2) re->bad = "unterminated character set";
        if (len < 0) { re->ok = 0; return 0; }
        if ((re->bad = molora__re_class_bad(p, len)) != NULL) { re->ok = 0; return 0; }
        n = molora__re_new(re, MOLORA__RE_CLASS, 0, 0);
        re->node[n].cls = p; re->node[n].cls_len = len;
        for (k = 1; k < len; k++) re->ascii_classes |= p[k - 1] == '\\' && strchr("dDwWsS", p[k]) != NULL;
        re->p += len;
        return n;
    }
    n = molora__re_new(re, MOLORA__RE_LIT, 0, 0);
    if (*p == '\\') {
        if (p[1] && strchr("dDwWsS", p[1])) {   /* \d and friends: a class without brackets */
            re->ascii_classes = 1;
            re->node[n].type = MOLORA__RE_CLASS; re->node[n].c = (unsigned char)p[1];
            re->p += 2;
            return n;
        }
        if (!p[1]) re->bad = "bad escape (end of pattern)";
        if (!(re->node[n].c = molora__re_escape(p[1]))) { re->ok = 0; return 0; }
        re->p += 2;
        return n;
    }
    re->node[n].c = molora__utf8_next(&re->p);
    return n;
}
MOLORA__PRIVATE int molora__re_repeat(molora__re *re, int depth)
{
    int n = molora__re_atom(re, depth);
    const char *q = re->p;
    if (re->ok && *q == '{') {   /* {m,n} is unsupported; with m > n Python refuses it */
        const char *t = q + 1;
        unsigned long lo = 0, hi = 0;
        int dl = 0, dh = 0;
        while (*t >= '0' && *t <= '9' && dl < 9) { lo = lo * 10 + (unsigned long)(*t++ - '0'); dl++; }
        if (*t == ',')
            for (t++; *t >= '0' && *t <= '9' && dh < 9; dh++) hi = hi * 10 + (unsigned long)(*t++ - '0');
        if (*t == '}' && dl && dh && lo > hi) re->bad = "min repeat greater than max repeat";
    }
    if (!re->ok || !(*q == '*' || *q == '+' || *q == '?')) return n;
    n = molora__re_new(re, *q == '*' ? MOLORA__RE_STAR : *q == '+' ? MOLORA__RE_PLUS : MOLORA__RE_QUEST, n, 0);
    re->p++;
    if (*re->p == '?') {                        /* lazy: the same yes / no answer            */
        re->p++;
        if (*re->p == '?' || *re->p == '*' || *re->p == '+') re->bad = "multiple repeat";
    }
    if (*re->p == '*') re->bad = "multiple repeat";   /* a '+' here is possessive (Python 3.11): unsupported */
    if (*re->p == '*' || *re->p == '+' || *re->p == '?' || *re->p == '{') re->ok = 0;
    return n;
}
MOLORA__PRIVATE int molora__re_cat(molora__re *re, int depth)
{
    int n = -1;
    while (re->ok && *re->p && *re->p != '|' && !(*re->p == ')' && depth > 0)) {
        int r = molora__re_repeat(re, depth);
        n = n < 0 ? r : molora__re_new(re, MOLORA__RE_CAT, n, r);
    }
    return n < 0 ? molora__re_new(re, MOLORA__RE_EMPTY, 0, 0) : n;
}
MOLORA__PRIVATE int molora__re_alt(molora__re *re, int depth)
{
    int n;
    if (depth > 100) { re->ok = 0; return 0; }  /* Python's own limit is near here too     */
    n = molora__re_cat(re, depth);
    while (re->ok && *re->p == '|') {
        re->p++;
        n = molora__re_new(re, MOLORA__RE_ALT, n, molora__re_cat(re, depth));
    }
    return n;
}
MOLORA__PRIVATE int molora__re_emit(molora__re *re, int op)
{
    molora__re_inst *i;
    if (re->n_inst >= MOLORA__RE_MAX) { re->ok = 0; return 0; }
    i = &re->inst[re->n_inst];
    memset(i, 0, sizeof *i);
    i->op = op;
    return re->n_inst++;
}
/* Thompson's construction, node by node */
MOLORA__PRIVATE void molora__re_code(molora__re *re, int n)
{
    const molora__re_node *d = &re->node[n];
    int s, j;
    if (!re->ok) return;
    switch (d->type) {
    case MOLORA__RE_EMPTY: break;
    case MOLORA__RE_LIT: case MOLORA__RE_ANY: case MOLORA__RE_CLASS:
        s = molora__re_emit(re, d->type);
        re->inst[s].c = d->c; re->inst[s].cls = d->cls; re->inst[s].cls_len = d->cls_len;
        break;
    case MOLORA__RE_CAT: molora__re_code(re, d->a); molora__re_code(re, d->b); break;
    case MOLORA__RE_ALT:
        s = molora__re_emit(re, MOLORA__RE_SPLIT);
        re->inst[s].x = re->n_inst; molora__re_code(re, d->a);
        j = molora__re_emit(re, MOLORA__RE_JMP);
        re->inst[s].y = re->n_inst; molora__re_code(re, d->b);
        re->inst[j].x = re->n_inst;
        break;
    case MOLORA__RE_QUEST:
        s = molora__re_emit(re, MOLORA__RE_SPLIT);
        re->inst[s].x = re->n_inst; molora__re_code(re, d->a);
        re->inst[s].y = re->n_inst;
        break;
    case MOLORA__RE_STAR:
        s = molora__re_emit(re, MOLORA__RE_SPLIT);
        re->inst[s].x = re->n_inst; molora__re_code(re, d->a);
        j = molora__re_emit(re, MOLORA__RE_JMP);
        re->inst[j].x = s;
        re->inst[s].y = re->n_inst;
        break;
    default:   /* PLUS */
        j = re->n_inst; molora__re_code(re, d->a);
        s = molora__re_emit(re, MOLORA__RE_SPLIT);
        re->inst[s].x = j; re->inst[s].y = re->n_inst;
        break;
    }
}
/* 1: compiled into re->inst (ending in MATCH), 0: unsupported */
MOLORA__PRIVATE int molora__re_compile(molora__re *re, const char *key)
{
    int root;
    re->p = key; re->ok = 1; re->n_node = re->n_inst = 0; re->ascii_classes = 0;
    re->key = key; re->bad = NULL;
    root = molora__re_alt(re, 0);
    if (!re->ok || *re->p) return 0;            /* a ')' without '('                            */
    molora__re_code(re, root);
    molora__re_emit(re, MOLORA__RE_MATCH);
    return re->ok;
}
MOLORA__PRIVATE void molora__re_add(molora__re *re, int l, int pc, size_t *steps)
{
    const molora__re_inst *i;
    if (re->mark[pc] == re->gen) return;
    re->mark[pc] = re->gen;
    if (steps) (*steps)++;
    i = &re->inst[pc];
    if (i->op == MOLORA__RE_JMP) { molora__re_add(re, l, i->x, steps); return; }
    if (i->op == MOLORA__RE_SPLIT) { molora__re_add(re, l, i->x, steps); molora__re_add(re, l, i->y, steps); return; }
    re->list[l][re->n_list[l]++] = pc;
}
MOLORA__PRIVATE int molora__re_step_ok(const molora__re_inst *i, unsigned c)
{
    if (i->op == MOLORA__RE_LIT) return c == i->c;
    if (i->op == MOLORA__RE_ANY) return c != '\n';
    if (i->op == MOLORA__RE_CLASS)
        return i->cls ? molora__re_in_class(i->cls, i->cls_len, c) : molora__re_class1((char)i->c, c);
    return 0;
}
MOLORA__PRIVATE int molora__re_matched(const molora__re *re, int l)
{
    int k;
    for (k = 0; k < re->n_list[l]; k++) if (re->inst[re->list[l][k]].op == MOLORA__RE_MATCH) return 1;
    return 0;
}
/* Runs the compiled key over name: a new thread starts at 0 and after every '.' not preceded
   by a newline ((.*\.)? of the wrapper); accepts at the end or before a final "\n" ($). */
MOLORA__PRIVATE int molora__re_run(molora__re *re, const char *name, size_t *steps)
{
    int cur = 0, k, newline = 0;
    const char *s = name;
    memset(re->mark, 0, (size_t)re->n_inst * sizeof re->mark[0]);
    re->gen = 1; re->n_list[0] = 0;
    molora__re_add(re, 0, 0, steps);
    for (;;) {
        unsigned c;
        if ((!*s || (s[0] == '\n' && !s[1])) && molora__re_matched(re, cur)) return 1;
        if (!*s) return 0;
        c = molora__utf8_next(&s);
        re->gen++;
        re->n_list[!cur] = 0;
        for (k = 0; k < re->n_list[cur]; k++) {
            int pc = re->list[cur][k];
            if (steps) (*steps)++;
            if (molora__re_step_ok(&re->inst[pc], c)) molora__re_add(re, !cur, pc + 1, steps);
        }
        if (c == '\n') newline = 1;
        if (c == '.' && !newline) molora__re_add(re, !cur, 0, steps);
        cur = !cur;
    }
}
/* 1 match, 0 no match, -1 unsupported pattern, -2 a pattern Python refuses (re->bad says why);
   re is scratch sized by MOLORA__RE_MAX (one per adapter, reused for every key); *steps
   (optional) counts VM steps, which the tests use to show the cost is linear */
MOLORA__PRIVATE int molora__re_match(molora__re *re, const char *key, const char *name, size_t *steps)
{
    const char *s;
    if (!molora__re_compile(re, key)) return re->bad ? -2 : -1;
    if (re->ascii_classes)   /* Python's \w, \d, \s are Unicode-aware: not guessed for non-ASCII names */
        for (s = name; *s; s++) if ((unsigned char)*s >= 0x80) return -1;
    return molora__re_run(re, name, steps);
}

/* Value of the first key of pattern object `obj` (rank_pattern, alpha_pattern) matching module:
   PEFT's get_pattern_key, keys tried in file order. */
MOLORA__PRIVATE molora_result molora__pattern(const molora__adapter_config *c, const char *obj, const char *module,
                                              double *v, int *hit)
{
    const molora__json *js = &c->js;
    size_t o = molora__jget(js, 0, obj), i, k;
    *hit = 0;
    if (!o || js->tok[o].type == MOLORA__J_NULL) return MOLORA_RESULT_SUCCESS;
    if (js->tok[o].type != MOLORA__J_OBJ)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: \"%s\" must be an object", obj);
    for (i = 0, k = o + 1; i < js->tok[o].size; i++, k += 1 + js->tok[k + 1].skip) {
        char key[512];
        int m;
        if (js->tok[k].end - js->tok[k].start >= sizeof key)
            return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: a \"%s\" key is too long",
                                obj);
        molora__jstr(js, &js->tok[k], key);
        m = molora__re_match(c->re, key, module, NULL);
        if (m == -2)
            return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "adapter_config.json: %s key \"%s\" is not "
                                "a valid regular expression (Python's re.compile refuses it: %s)",
                                obj, key, c->re->bad);
        if (m < 0)
            return molora__fail(c->lg, MOLORA_RESULT_UNSUPPORTED, "adapter_config.json: %s key \"%s\": regex features "
                                "beyond . [] \\d \\w \\s ( ) (?: ) * + ? | are not supported", obj, key);
        if (m) {
            if (!molora__jnum(js, &js->tok[k + 1], v))
                return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG,
                                    "adapter_config.json: %s[\"%s\"] must be a number", obj, key);
            *hit = 1;
            return MOLORA_RESULT_SUCCESS;
        }
    }
    return MOLORA_RESULT_SUCCESS;
}
/* <<patterns */

/* >>modules  tensors into modules, layout detection, layers_to_transform, the expert checks ----- */
/* Natural order: digit runs compare as numbers (layers.2 before layers.10). */
static int molora__cmp_natural(const char *a, const char *b)
{
    while (*a && *b) {
        if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
            const char *x = a, *y = b;
            size_t la, lb;
            while (*x == '0' && x[1] >= '0' && x[1] <= '9') x++;
            while (*y == '0' && y[1] >= '0' && y[1] <= '9') y++;
            for (a = x; *a >= '0' && *a <= '9'; a++) {}
            for (b = y; *b >= '0' && *b <= '9'; b++) {}
            la = (size_t)(a - x); lb = (size_t)(b - y);
            if (la != lb) return la < lb ? -1 : 1;
            if (memcmp(x, y, la)) return memcmp(x, y, la);
            continue;
        }
        if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
        a++; b++;
    }
    return (unsigned char)*a - (unsigned char)*b;
}
static int molora__cmp_module(const void *a, const void *b)
{
    const char *x = ((const molora__module *)a)->name, *y = ((const molora__module *)b)->name;
    int c = molora__cmp_natural(x, y);
    return c ? c : strcmp(x, y);   /* layers.01 and layers.1: a fixed order */
}

/* First ".<digits>." component of a module path: the block (decoder layer). */
MOLORA__PRIVATE int molora__block_of(const char *p)
{
    for (; *p; p++) {
        const char *q = p + 1;
        long v = 0;
        if (*p != '.' || !(*q >= '0' && *q <= '9')) continue;
        while (*q >= '0' && *q <= '9' && v < 100000000) v = v * 10 + (*q++ - '0');
        if (*q == '.' || *q == 0) return (int)v;
    }
    return -1;
}

static const char molora__prefix[] = "base_model.model.";
MOLORA__PRIVATE const char *molora__strip(const char *p)
{
    return strncmp(p, molora__prefix, sizeof molora__prefix - 1) ? p : p + sizeof molora__prefix - 1;
}

/* What a tensor is to its module, and how its A / B name spells the expert. */
enum { MOLORA__K_IGNORE = 0, MOLORA__K_A, MOLORA__K_B, MOLORA__K_GATE, MOLORA__K_GATE_BIAS,
       MOLORA__K_THR_W, MOLORA__K_THR_B, MOLORA__K_MOLE_GATE, MOLORA__K_ROUTER, MOLORA__K_REFUSE,
       MOLORA__K_PROTOS };
enum { MOLORA__STYLE_PEFT = 1,   /* P.lora_A.weight: PEFT LoRA, one expert           */
       MOLORA__STYLE_DOT,        /* P.lora_A.{i}.weight: AdaMoLE, MoLE, molora       */
       MOLORA__STYLE_MOLA };     /* P.lora_A_{i}.weight: MoLA                        */

/* Kind, expert index and naming style of a lora_A / lora_B tensor; q: its name after ".lora_". */
MOLORA__PRIVATE int molora__classify_ab(const char *q, int *idx, int *style, const char **why)
{
    int kind = q[0] == 'A' ? MOLORA__K_A : MOLORA__K_B;
    const char *r = q + 2;
    long v = 0;
    if (!strcmp(q + 1, ".weight")) { *style = MOLORA__STYLE_PEFT; return kind; }
    if (!strcmp(q + 1, ".bias")) { *why = "a LoRA bias (lora_bias) is not supported"; return MOLORA__K_REFUSE; }
    if (*r >= '0' && *r <= '9') {
        if (r[0] == '0' && r[1] >= '0' && r[1] <= '9') {
            *why = "expert index with a leading zero (experts are written 0, 1, ..., never 01)";
            return MOLORA__K_REFUSE;
        }
        while (*r >= '0' && *r <= '9' && v <= 65535) v = v * 10 + (*r++ - '0');
        if (v > 65535 || (*r >= '0' && *r <= '9')) { *why = "expert index above 65535"; return MOLORA__K_REFUSE; }
        if (!strcmp(r, ".weight")) {
            *idx = (int)v;
            *style = q[1] == '.' ? MOLORA__STYLE_DOT : MOLORA__STYLE_MOLA;
            return kind;
        }
    }
    *why = "unrecognised LoRA tensor (an unstripped adapter name such as .default?)";
    return MOLORA__K_REFUSE;
}
/* Splits a tensor name into module path length, kind, expert index and naming style. */
MOLORA__PRIVATE int molora__classify(const char *name, size_t *plen, int *idx, int *style, const char **why)
{
    static const struct { const char *suffix; int kind; } fixed[] = {
        {".lora_gating.weight", MOLORA__K_GATE}, {".lora_gating.bias", MOLORA__K_GATE_BIAS},
        {".lora_threshold.weight", MOLORA__K_THR_W}, {".lora_threshold.bias", MOLORA__K_THR_B},
        {".mole_gate.weight", MOLORA__K_MOLE_GATE}, {".router.router.weight", MOLORA__K_ROUTER},
        {".arrow_prototypes", MOLORA__K_PROTOS}};
    const char *q, *last = NULL;
    size_t i, n = strlen(name);
    *idx = 0; *style = 0; *why = NULL;
    if (strstr(name, ".moe_layer.experts.")) return MOLORA__K_IGNORE;   /* AdaMoLE's duplicate aliases */
    for (i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (molora__ends_with(name, fixed[i].suffix)) { *plen = n - strlen(fixed[i].suffix); return fixed[i].kind; }
    for (q = strstr(name, ".lora_"); q; q = strstr(q + 1, ".lora_")) last = q;
    if (!last) return MOLORA__K_IGNORE;
    *plen = (size_t)(last - name);
    q = last + 6;
    if (!strncmp(q, "magnitude_vector", 16)) {
        *why = "DoRA (lora_magnitude_vector) is not supported";
        return MOLORA__K_REFUSE;
    }
    if (!strncmp(q, "embedding_", 10)) { *why = "embedding LoRA is not supported"; return MOLORA__K_REFUSE; }
    if ((q[0] == 'A' || q[0] == 'B') && (q[1] == '.' || q[1] == '_')) return molora__classify_ab(q, idx, style, why);
    *why = "unrecognised LoRA tensor (an unstripped adapter name such as .default?)";
    return MOLORA__K_REFUSE;
}

/* One LoRA tensor before grouping: modules are runs of equal paths after sorting, so building
   them is O(n log n) and each module's expert arrays are sized by its own tensors, never by an
   index written in a name. */
typedef struct molora__rec { const char *name; size_t plen; long t; int kind, idx, style; } molora__rec;
static int molora__cmp_rec(const void *a, const void *b)
{
    const molora__rec *x = (const molora__rec *)a, *y = (const molora__rec *)b;
    int c = memcmp(x->name, y->name, x->plen < y->plen ? x->plen : y->plen);
    if (c) return c;
    if (x->plen != y->plen) return x->plen < y->plen ? -1 : 1;
    return x->t < y->t ? -1 : x->t > y->t;
}
MOLORA__PRIVATE int molora__same_module(const molora__rec *x, const molora__rec *y)
{
    return x->plen == y->plen && !memcmp(x->name, y->name, x->plen);
}
/* An expert's lora_A or lora_B into its slot: a second tensor for it (lora_A.0 beside lora_A_0)
   is refused, never dropped. */
MOLORA__PRIVATE molora_result molora__module_put_ab(const molora_adapter *a, molora__module *m, const molora__rec *x)
{
    long *slot = x->kind == MOLORA__K_A ? &m->A[x->idx] : &m->B[x->idx];
    m->styles |= 1u << x->style;
    if (*slot >= 0)
        return molora__fail(&a->io.lg, MOLORA_RESULT_DUPLICATE_NAME,
                            "module %s: expert %d's lora_%s is given twice: tensors \"%s\" and \"%s\"", m->name, x->idx,
                            x->kind == MOLORA__K_A ? "A" : "B", a->st->all[*slot]->name, x->name);
    *slot = x->t;
    return MOLORA_RESULT_SUCCESS;
}
/* The module's name and expert arrays: N = highest index + 1, every index below the module's
   count of A / B tensors (so N is bounded by the file, never by a number in a name). */
MOLORA__PRIVATE molora_result molora__module_alloc(molora_adapter *a, molora__module *m, const molora__rec *rc,
                                                   size_t k)
{
    size_t i, n_ab = 0;
    int n = 0, e;
    m->gate = m->gate_bias = m->thr_w = m->thr_b = m->mole_gate = m->protos = -1;
    if (!(m->name = (char *)molora__malloc(&a->io, rc->plen + 1)))
        return molora__fail(&a->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "adapter: out of memory");
    memcpy(m->name, rc->name, rc->plen);
    m->name[rc->plen] = 0;
    m->block = molora__block_of(molora__strip(m->name));
    for (i = 0; i < k; i++) n_ab += rc[i].kind == MOLORA__K_A || rc[i].kind == MOLORA__K_B;
    for (i = 0; i < k; i++) {
        if (rc[i].kind != MOLORA__K_A && rc[i].kind != MOLORA__K_B) continue;
        if ((size_t)rc[i].idx >= n_ab)
            return molora__fail(&a->io.lg, MOLORA_RESULT_MISSING_WEIGHTS, "module %s: tensor \"%s\" has expert index "
                                "%d but the module has %zu lora_A / lora_B tensors (experts are numbered 0..N-1)",
                                m->name, rc[i].name, rc[i].idx, n_ab);
        if (rc[i].idx + 1 > n) n = rc[i].idx + 1;
    }
    if (n) {
        m->A = (long *)molora__calloc(&a->io, (size_t)n, sizeof(long));
        m->B = (long *)molora__calloc(&a->io, (size_t)n, sizeof(long));
        if (!m->A || !m->B) return molora__fail(&a->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "adapter: out of memory");
        for (e = 0; e < n; e++) m->A[e] = m->B[e] = -1;
    }
    m->n = n;
    return MOLORA_RESULT_SUCCESS;
}
/* Module from its k tensors (one run of equal paths). */
MOLORA__PRIVATE molora_result molora__module_make(molora_adapter *a, const molora__rec *rc, size_t k, int *any_mola)
{
    molora__module *m = &a->mods[a->n_mod++];
    molora_result r;
    size_t i;
    if ((r = molora__module_alloc(a, m, rc, k)) != MOLORA_RESULT_SUCCESS) return r;
    for (i = 0; i < k; i++) {
        long t = rc[i].t;
        switch (rc[i].kind) {
        case MOLORA__K_A: case MOLORA__K_B:
            if (rc[i].style == MOLORA__STYLE_MOLA) *any_mola = 1;
            if ((r = molora__module_put_ab(a, m, &rc[i])) != MOLORA_RESULT_SUCCESS) return r;
            break;
        case MOLORA__K_GATE: m->gate = t; break;
        case MOLORA__K_GATE_BIAS: m->gate_bias = t; break;
        case MOLORA__K_THR_W: m->thr_w = t; break;
        case MOLORA__K_THR_B: m->thr_b = t; break;
        case MOLORA__K_MOLE_GATE: m->mole_gate = t; break;
        case MOLORA__K_PROTOS: m->protos = t; break;
        default: m->gate = t; *any_mola = 1; break;   /* router.router.weight */
        }
    }
    return MOLORA_RESULT_SUCCESS;
}
/* Tensors -> modules: refused names first (file order), ignored ones listed, the rest grouped.
   *any_mola: a lora_A_{i} / lora_B_{i} or router tensor was seen (a LORA config is then MoLA). */
MOLORA__PRIVATE molora_result molora__modules_collect(molora_adapter *a, int *any_mola)
{
    size_t i, n_t = a->st->n, n_r = 0, g, e, groups = 0;
    molora_result r = MOLORA_RESULT_SUCCESS;
    molora__rec *rec;
    if (!n_t) return MOLORA_RESULT_SUCCESS;
    if (!(rec = (molora__rec *)molora__calloc(&a->io, n_t, sizeof *rec)))
        return molora__fail(&a->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "adapter: out of memory");
    for (i = 0; i < n_t; i++) {
        molora__rec *x = &rec[n_r];
        const char *why;
        x->name = a->st->all[i]->name;
        x->t = (long)i;
        x->kind = molora__classify(x->name, &x->plen, &x->idx, &x->style, &why);
        if (x->kind == MOLORA__K_REFUSE) {
            r = molora__fail(&a->io.lg, MOLORA_RESULT_UNSUPPORTED, "module %.*s: tensor \"%s\": %s", (int)x->plen,
                             x->name, x->name, why);
            goto done;
        }
        if (x->kind == MOLORA__K_IGNORE) a->ignored[a->n_ignored++] = x->name;
        else n_r++;
    }
    if (n_r > 1) qsort(rec, n_r, sizeof *rec, molora__cmp_rec);
    for (g = 0; g < n_r; g++) groups += g == 0 || !molora__same_module(&rec[g - 1], &rec[g]);
    if (groups > 0x7ffffffe) {
        r = molora__fail(&a->io.lg, MOLORA_RESULT_SIZE_OVERFLOW, "adapter: too many modules");
        goto done;
    }
    if (groups && !(a->mods = (molora__module *)molora__calloc(&a->io, groups, sizeof *a->mods))) {
        r = molora__fail(&a->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "adapter: out of memory");
        goto done;
    }
    a->cap_mod = (int)groups;
    for (g = 0; g < n_r && !r; g = e) {
        for (e = g + 1; e < n_r && molora__same_module(&rec[g], &rec[e]); e++) {}
        r = molora__module_make(a, rec + g, e - g, any_mola);
    }
done:
    molora__mfree(&a->io, rec);
    return r;
}

/* The layout: peft_type, and for LORA the tensor names (lora_A_{i} or a router: MoLA). */
MOLORA__PRIVATE molora_result molora__layout_detect(const molora__adapter_config *c, int any_mola, molora_layout *out)
{
    const char *p = c->peft_type;
    if (!strcmp(p, "LORA")) *out = any_mola ? MOLORA_LAYOUT_MOLA : MOLORA_LAYOUT_PEFT_LORA;
    else if (!strcmp(p, "ADAMOLE")) *out = MOLORA_LAYOUT_ADAMOLE;
    else if (!strcmp(p, "MOLE")) *out = MOLORA_LAYOUT_MOLE;
    else if (!strcmp(p, "MOLORA")) *out = MOLORA_LAYOUT_MOLORA;
    else if (!strcmp(p, "XLORA"))
        return molora__fail(c->lg, MOLORA_RESULT_UNSUPPORTED, "adapter_config.json: \"peft_type\" \"XLORA\" is an "
                            "X-LoRA adapter: open it with molora_xlora_open");
    else return molora__fail(c->lg, MOLORA_RESULT_UNSUPPORTED,
                             "adapter_config.json: \"peft_type\" \"%s\" is not one of LORA, ADAMOLE, MOLE, MOLORA", p);
    return MOLORA_RESULT_SUCCESS;
}

MOLORA__PRIVATE int molora__block_listed(const double *v, size_t n, int block)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] == (double)block) return 1;
        if (v[mid] < (double)block) lo = mid + 1; else hi = mid;
    }
    return 0;
}
/* layers_to_transform: modules of other decoder layers are dropped, as PEFT would skip them, and
   their lora_A / lora_B tensors join the ignored list. */
MOLORA__PRIVATE void molora__layers_filter(molora_adapter *a, const molora__adapter_config *c)
{
    int l, w = 0;
    if (!c->layers_to_transform) return;
    for (l = 0; l < a->n_mod; l++) {
        molora__module *m = &a->mods[l];
        int e;
        if (molora__block_listed(c->ltt, c->n_ltt, m->block)) { a->mods[w++] = *m; continue; }
        for (e = 0; e < m->n; e++) {
            if (m->A[e] >= 0) a->ignored[a->n_ignored++] = a->st->all[m->A[e]]->name;
            if (m->B[e] >= 0) a->ignored[a->n_ignored++] = a->st->all[m->B[e]]->name;
        }
        molora__mfree(&a->io, m->name); molora__mfree(&a->io, m->A); molora__mfree(&a->io, m->B);
    }
    a->n_mod = w;
    if (w < a->cap_mod) memset(a->mods + w, 0, (size_t)(a->cap_mod - w) * sizeof *a->mods);
}

/* lora_A (r, d_in) and lora_B (d_out, r) of one expert: 2-D, in range, and the d_in / d_out of
   the module's expert 0 */
MOLORA__PRIVATE int molora__expert_fits(const molora__tensor *A, const molora__tensor *B,
                                        const molora__tensor *A0, const molora__tensor *B0)
{
    return A->n_dims == 2 && B->n_dims == 2 && A->shape[0] >= 1 && A->shape[0] <= 65536 && A->shape[1] >= 1 &&
           A->shape[1] <= 0x7fffffff && B->shape[0] >= 1 && B->shape[0] <= 0x7fffffff && B->shape[1] == A->shape[0] &&
           A->shape[1] == A0->shape[1] && B->shape[0] == B0->shape[0];
}
/* One module: named the layout's way, every expert 0..N-1 with a lora_A and a lora_B that fit. */
MOLORA__PRIVATE molora_result molora__module_check(const molora_adapter *a, const molora__module *m, int style)
{
    const molora__logger *lg = &a->io.lg;
    int e;
    if (m->n == 0)
        return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS,
                            "module %s: gate or router tensors but no lora_A / lora_B", m->name);
    if (m->styles != 1u << style)
        return molora__fail(lg, MOLORA_RESULT_INVALID_CONFIG, "module %s: lora_A / lora_B naming does not match the %s "
                            "layout", m->name, molora__layout_names[a->layout]);
    for (e = 0; e < m->n; e++) {
        const molora__tensor *A, *B;
        if (m->A[e] < 0 || m->B[e] < 0)
            return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS, "module %s: expert %d has no lora_%s", m->name, e,
                                m->A[e] < 0 ? "A" : "B");
        A = a->st->all[m->A[e]]; B = a->st->all[m->B[e]];
        if (A->n_dims == 2 && A->shape[0] > 65536)
            return molora__fail(lg, MOLORA_RESULT_INVALID_SHAPE, "module %s: expert %d: lora_A %s: rank %llu above "
                                "molora's limit 65536", m->name, e, A->name, (unsigned long long)A->shape[0]);
        if (!molora__expert_fits(A, B, a->st->all[m->A[0]], a->st->all[m->B[0]]))
            return molora__fail(lg, MOLORA_RESULT_INVALID_SHAPE, "module %s: expert %d: lora_A %s and lora_B %s shapes "
                                "do not fit (r, d_in) and (d_out, r)", m->name, e, A->name, B->name);
    }
    return MOLORA_RESULT_SUCCESS;
}
/* Every module checked; *n_exp: experts in all, *max_din: the widest d_in (the zero gate's size). */
MOLORA__PRIVATE molora_result molora__experts_check(const molora_adapter *a, size_t *n_exp, size_t *max_din)
{
    int style = a->layout == MOLORA_LAYOUT_PEFT_LORA ? MOLORA__STYLE_PEFT
              : a->layout == MOLORA_LAYOUT_MOLA ? MOLORA__STYLE_MOLA : MOLORA__STYLE_DOT;
    int l;
    molora_result r;
    *n_exp = 0; *max_din = 1;
    for (l = 0; l < a->n_mod; l++) {
        const molora__module *m = &a->mods[l];
        if ((r = molora__module_check(a, m, style)) != MOLORA_RESULT_SUCCESS) return r;
        *n_exp += (size_t)m->n;
        if (a->st->all[m->A[0]]->shape[1] > *max_din) *max_din = (size_t)a->st->all[m->A[0]]->shape[1];
    }
    return MOLORA_RESULT_SUCCESS;
}
/* <<modules */

/* >>builders  one builder per layout fills the layer descriptors; the public adapter functions --- */
/* tensor t of the module: 2-D (rows, cols) or 1-D (cols, rows = 1 given) check */
MOLORA__PRIVATE molora_result molora__shape2(const molora_adapter *a, const molora__module *m, long t, uint64_t rows,
                                             uint64_t cols, int one_d_ok, const char *what)
{
    const molora__tensor *x = a->st->all[t];
    int ok = (x->n_dims == 2 && x->shape[0] == rows && x->shape[1] == cols) ||
             (one_d_ok && x->n_dims == 1 && rows == 1 && x->shape[0] == cols) ||
             (one_d_ok && x->n_dims == 0 && rows == 1 && cols == 1);
    if (!ok)
        return molora__fail(&a->io.lg, MOLORA_RESULT_INVALID_SHAPE, "module %s: %s \"%s\" should be (%llu, %llu)",
                            m->name, what, x->name, (unsigned long long)rows, (unsigned long long)cols);
    return MOLORA_RESULT_SUCCESS;
}
/* tensor t checked as (rows, cols), then converted to float32 (small: gates, threshold nets) */
MOLORA__PRIVATE molora_result molora__f32_shaped(molora_adapter *a, const molora__module *m, long t, uint64_t rows,
                                                 uint64_t cols, int one_d_ok, const char *what, const float **p)
{
    molora_result r = molora__shape2(a, m, t, rows, cols, one_d_ok, what);
    return r ? r : molora_safetensors_tensor_f32(a->st, (size_t)t, p);
}
/* entry `block` of a per-block list converted by molora__jlist_f64 (NaN entries do not count) */
MOLORA__PRIVATE int molora__block_entry(const double *v, size_t n, int block, double *out)
{
    if (block < 0 || (size_t)block >= n || v[block] != v[block]) return 0;
    *out = v[block];
    return 1;
}

/* A builder fills layer L (shape and expert pointers already set) from module m and the config. */
typedef molora_result (*molora__builder)(molora_adapter *a, molora__adapter_config *c, const molora__module *m,
                                         molora_layer_desc *L, molora_expert_desc *ex);

/* PEFT LoRA: one expert of rank r (rank_pattern's or the config's), scaled alpha / r (rsLoRA:
   alpha / sqrt(r)), weight 1 from a shared zero gate under DENSE routing. */
MOLORA__PRIVATE molora_result molora__build_peft(molora_adapter *a, molora__adapter_config *c, const molora__module *m,
                                                 molora_layer_desc *L, molora_expert_desc *ex)
{
    const char *bare = molora__strip(m->name), *r_from = c->r_from;
    double rank = c->r, alpha = c->lora_alpha, v;
    int hit;
    molora_result r;
    if ((r = molora__pattern(c, "rank_pattern", bare, &v, &hit)) != MOLORA_RESULT_SUCCESS) return r;
    if (hit) { rank = v; r_from = "its \"rank_pattern\" entry"; }
    if ((r = molora__pattern(c, "alpha_pattern", bare, &v, &hit)) != MOLORA_RESULT_SUCCESS) return r;
    if (hit) alpha = v;
    if (rank != ex[0].rank)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_SHAPE, "module %s: lora_A has rank %d but the config gives "
                            "r = %g (from %s)", m->name, ex[0].rank, rank, r_from);
    ex[0].scaling = (float)(c->use_rslora ? alpha / sqrt(rank) : alpha / rank);
    if (ex[0].scaling == 0.0f || !isfinite(ex[0].scaling))
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "module %s: lora_alpha %g gives scaling %g", m->name,
                            alpha, (double)ex[0].scaling);
    L->routing = MOLORA_ROUTING_DENSE;
    L->gate_weight = a->zeros;
    return MOLORA_RESULT_SUCCESS;
}

/* MoLA (AlphaLoRA): experts of the decoder layer's r, scaled lora_alpha / r, top-k (the layer's
   top_k, or AlphaLoRA's rule) over router.router.weight. */
MOLORA__PRIVATE molora_result molora__build_mola(molora_adapter *a, molora__adapter_config *c, const molora__module *m,
                                                 molora_layer_desc *L, molora_expert_desc *ex)
{
    double rank = c->r, k;
    int e, n = m->n;
    if (c->r_list && !molora__block_entry(c->r_per_layer, c->js.tok[c->r_list].size, m->block, &rank))
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "module %s: \"r\" has no entry for decoder layer %d",
                            m->name, m->block);
    for (e = 0; e < n; e++) {
        if (rank != ex[e].rank)
            return molora__fail(c->lg, MOLORA_RESULT_INVALID_SHAPE, "module %s: expert %d has rank %d but the config "
                                "says r = %g", m->name, e, ex[e].rank, rank);
        ex[e].scaling = (float)(c->lora_alpha / rank);
    }
    L->routing = MOLORA_ROUTING_TOPK;
    if (c->top_k_list) {
        if (!molora__block_entry(c->top_k_per_layer, c->js.tok[c->top_k_list].size, m->block, &k) ||
            k != floor(k) || k < 1 || k > n)
            return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "module %s: \"top_k\" entry for decoder layer %d "
                                "missing or outside 1..%d", m->name, m->block, n);
        L->top_k = (int)k;
    }
    if (m->gate < 0)
        return molora__fail(c->lg, MOLORA_RESULT_MISSING_WEIGHTS, "module %s: router.router.weight is missing",
                            m->name);
    return molora__f32_shaped(a, m, m->gate, (uint64_t)n, (uint64_t)L->d_in, 0, "router", &L->gate_weight);
}

/* routing arrow: the prototypes P.arrow_prototypes (N, d_in) when the file has them (else computed
   at init); no gate, threshold net or MoLE gate */
MOLORA__PRIVATE molora_result molora__arrow_tensors(molora_adapter *a, const molora__module *m, int given,
                                                    molora_layer_desc *L)
{
    const float *p;
    molora_result r;
    if (m->gate >= 0 || m->gate_bias >= 0 || m->thr_w >= 0 || m->thr_b >= 0 || m->mole_gate >= 0)
        return molora__fail(&a->io.lg, MOLORA_RESULT_INVALID_CONFIG, "module %s: routing arrow takes no gate, "
                            "threshold or mole_gate tensors", m->name);
    if (m->protos < 0 && given)
        return molora__fail(&a->io.lg, MOLORA_RESULT_MISSING_WEIGHTS, "module %s: arrow_prototypes is missing (the "
                            "config says \"given\": they came from --prototypes and cannot be recomputed)", m->name);
    if (m->protos < 0) return MOLORA_RESULT_SUCCESS;
    if ((r = molora__f32_shaped(a, m, m->protos, (uint64_t)m->n, (uint64_t)L->d_in, 0, "arrow_prototypes", &p)))
        return r;
    if (!molora__all_finite(p, (size_t)m->n * (size_t)L->d_in))
        return molora__fail(&a->io.lg, MOLORA_RESULT_NON_FINITE, "module %s: arrow_prototypes has NaN or Inf",
                            m->name);
    L->prototypes = p;
    return MOLORA_RESULT_SUCCESS;
}
/* The router tensors of an AdaMoLE, MoLE or molora layer: the gate (not for mole_output), its
   bias, AdaMoLE's threshold network, the mole_output gate over the experts' outputs. */
MOLORA__PRIVATE molora_result molora__router_tensors(molora_adapter *a, const molora__adapter_config *c,
                                                    const molora__module *m, molora_layer_desc *L)
{
    const molora__logger *lg = &a->io.lg;
    uint64_t n = (uint64_t)m->n, din = (uint64_t)L->d_in;
    molora_result r;
    if (L->routing == MOLORA_ROUTING_ARROW) return molora__arrow_tensors(a, m, c->protos_given, L);
    if (m->protos >= 0)
        return molora__fail(lg, MOLORA_RESULT_INVALID_CONFIG, "module %s: arrow_prototypes with routing %s (only "
                            "arrow reads them)", m->name, molora_routing_name(L->routing));
    if (m->gate >= 0) {
        if ((r = molora__f32_shaped(a, m, m->gate, n, din, 0, "lora_gating.weight", &L->gate_weight))) return r;
    } else if (L->routing != MOLORA_ROUTING_MOLE_OUTPUT)
        return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS, "module %s: lora_gating.weight is missing", m->name);
    if (m->gate_bias >= 0 && (r = molora__f32_shaped(a, m, m->gate_bias, 1, n, 1, "lora_gating.bias", &L->gate_bias)))
        return r;
    if (L->routing == MOLORA_ROUTING_ADAMOLE) {
        const float *b;
        if (m->thr_w < 0 || m->thr_b < 0)
            return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS, "module %s: lora_threshold.%s is missing", m->name,
                                m->thr_w < 0 ? "weight" : "bias");
        if ((r = molora__f32_shaped(a, m, m->thr_w, 1, din, 1, "lora_threshold.weight", &L->threshold_weight)) ||
            (r = molora__f32_shaped(a, m, m->thr_b, 1, 1, 1, "lora_threshold.bias", &b)))
            return r;
        L->threshold_bias = b[0];
    }
    if (L->routing == MOLORA_ROUTING_MOLE_OUTPUT) {
        if (m->mole_gate < 0)
            return molora__fail(lg, MOLORA_RESULT_MISSING_WEIGHTS, "module %s: mole_gate.weight is missing (routing "
                                "mole_output)", m->name);
        return molora__f32_shaped(a, m, m->mole_gate, n, n * (uint64_t)L->d_out, 0, "mole_gate.weight", &L->mole_gate);
    }
    return MOLORA_RESULT_SUCCESS;
}
/* The routing rule of an AdaMoLE, MoLE or molora layer and its parameters, then its tensors. */
MOLORA__PRIVATE molora_result molora__build_routing(molora_adapter *a, const molora__adapter_config *c,
                                                    const molora__module *m, molora_layer_desc *L)
{
    int n = m->n;
    L->routing = (molora_routing)c->routing;
    L->temperature = (float)c->temperature;
    if (c->routing == MOLORA_ROUTING_TOPK || (c->routing == MOLORA_ROUTING_ARROW && c->top_k_set)) {
        if (c->top_k != floor(c->top_k) || c->top_k < 1 || c->top_k > n)
            return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "module %s: \"top_k\" %g outside 1..%d", m->name,
                                c->top_k, n);
        L->top_k = (int)c->top_k;
    }
    if (c->routing == MOLORA_ROUTING_ARROW && !c->top_k_set && n < 3)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "module %s: routing arrow without \"top_k\" means "
                            "k = 3, but the module has %d experts", m->name, n);
    if (c->routing == MOLORA_ROUTING_THRESHOLD) {
        if (!c->threshold_set)
            return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "module %s: \"threshold\" is missing", m->name);
        L->threshold = (float)c->threshold;
    }
    if (c->routing == MOLORA_ROUTING_ADAMOLE && c->max_threshold_set) {
        L->tau_max_set = 1;
        L->tau_max = (float)c->max_threshold;
    }
    return molora__router_tensors(a, c, m, L);
}

/* AdaMoLE, and MoLE (the same tensors, routed top-k or by a threshold): num_experts experts of
   rank lora_rank, scaled lora_alpha / lora_rank. */
MOLORA__PRIVATE molora_result molora__build_adamole(molora_adapter *a, molora__adapter_config *c,
                                                    const molora__module *m, molora_layer_desc *L,
                                                    molora_expert_desc *ex)
{
    int e, n = m->n;
    if (c->num_experts && c->num_experts != n)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_SHAPE,
                            "module %s: %d experts in the tensors, num_experts = %d", m->name, n, c->num_experts);
    for (e = 0; e < n; e++) {
        if (ex[e].rank != c->lora_rank)
            return molora__fail(c->lg, MOLORA_RESULT_INVALID_SHAPE, "module %s: expert %d has rank %d, lora_rank = %d",
                                m->name, e, ex[e].rank, c->lora_rank);
        ex[e].scaling = (float)(c->lora_alpha / c->lora_rank);
    }
    return molora__build_routing(a, c, m, L);
}

/* molora compose: each expert scaled by its expert_scaling entry (one list for every module, or
   an object module -> list, looked up by the path as written, then without base_model.model.). */
MOLORA__PRIVATE molora_result molora__build_compose(molora_adapter *a, molora__adapter_config *c,
                                                    const molora__module *m, molora_layer_desc *L,
                                                    molora_expert_desc *ex)
{
    const molora__json *js = &c->js;
    size_t list = c->expert_scaling;
    int e, n = m->n;
    double s;
    if (js->tok[list].type == MOLORA__J_OBJ) {
        if (!c->scaling_index) {
            c->n_scaling_index = js->tok[list].size;
            if (!(c->scaling_index = molora__jindex(&a->io, js, list)))
                return molora__fail(c->lg, MOLORA_RESULT_OUT_OF_MEMORY, "adapter: out of memory");
        }
        list = molora__jindex_get(c->scaling_index, c->n_scaling_index, m->name);
        if (!list) list = molora__jindex_get(c->scaling_index, c->n_scaling_index, molora__strip(m->name));
    }
    for (e = 0; e < n; e++) {
        if (!list || js->tok[list].type != MOLORA__J_ARR || js->tok[list].size != (size_t)n ||
            !molora__jlist_num(js, list, (size_t)e, &s) || s <= 0)
            return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "module %s: \"expert_scaling\" must give %d "
                                "positive numbers", m->name, n);
        ex[e].scaling = (float)s;
    }
    return molora__build_routing(a, c, m, L);
}

/* Room for the layer descriptors, their dtypes, every layer's experts (one array) and the zero
   gate PEFT's single-expert layers share. */
MOLORA__PRIVATE molora_result molora__descs_alloc(molora_adapter *a, size_t n_exp, size_t max_din)
{
    size_t n_layers = (size_t)(a->n_mod ? a->n_mod : 1);
    int peft = a->layout == MOLORA_LAYOUT_PEFT_LORA;
    a->layers = (molora_layer_desc *)molora__calloc(&a->io, n_layers, sizeof(molora_layer_desc));
    a->dtypes = (molora_dtype *)molora__calloc(&a->io, n_layers, sizeof(molora_dtype));
    a->experts = (molora_expert_desc *)molora__calloc(&a->io, n_exp ? n_exp : 1, sizeof(molora_expert_desc));
    a->zeros = peft ? (float *)molora__calloc(&a->io, max_din, sizeof(float)) : NULL;
    if (!a->layers || !a->dtypes || !a->experts || (peft && !a->zeros))
        return molora__fail(&a->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "adapter: out of memory");
    return MOLORA_RESULT_SUCCESS;
}
/* Layer l's shape and its experts' typed pointers into the file: A and B are not converted here
   (molora_model_init converts the layers it packs). */
MOLORA__PRIVATE molora_result molora__layer_experts(molora_adapter *a, const molora__adapter_config *c, int l,
                                                    molora_expert_desc *ex)
{
    const molora__module *m = &a->mods[l];
    molora_layer_desc *L = &a->layers[l];
    int e;
    molora_result r;
    L->d_in = (int)a->st->all[m->A[0]]->shape[1];
    L->d_out = (int)a->st->all[m->B[0]]->shape[0];
    L->n_experts = m->n;
    L->experts = ex;
    L->fan_in_fan_out = c->fan_in_fan_out;
    a->dtypes[l] = a->st->all[m->A[0]]->dtype;
    for (e = 0; e < m->n; e++) {
        ex[e].rank = (int)a->st->all[m->A[e]]->shape[0];
        if ((r = molora_safetensors_tensor_data(a->st, (size_t)m->A[e], &ex[e].A, &ex[e].A_type)) ||
            (r = molora_safetensors_tensor_data(a->st, (size_t)m->B[e], &ex[e].B, &ex[e].B_type)))
            return r;
    }
    return MOLORA_RESULT_SUCCESS;
}
/* Every layer, module by module: its shape and experts, then its layout's builder. */
MOLORA__PRIVATE molora_result molora__layers_build(molora_adapter *a, molora__adapter_config *c)
{
    static const molora__builder build[MOLORA_LAYOUT_COUNT] = {
        molora__build_peft, molora__build_adamole, molora__build_adamole /* MOLE */, molora__build_mola,
        molora__build_compose};
    size_t n_exp = 0;
    int l;
    molora_result r;
    for (l = 0; l < a->n_mod; l++) {
        molora_expert_desc *ex = a->experts + n_exp;
        n_exp += (size_t)a->mods[l].n;
        if ((r = molora__layer_experts(a, c, l, ex)) != MOLORA_RESULT_SUCCESS ||
            (r = build[a->layout](a, c, &a->mods[l], &a->layers[l], ex)) != MOLORA_RESULT_SUCCESS)
            return r;
    }
    return MOLORA_RESULT_SUCCESS;
}

/* Config and tensors -> layer descriptors, one step at a time; each step's checks run in the
   order they always have, so the first error found is the same. */
MOLORA__PRIVATE molora_result molora__adapter_build(molora_adapter *a, const char *cfg_text, size_t cfg_size)
{
    molora__adapter_config c;
    size_t n_exp = 0, max_din = 1;
    int any_mola = 0;
    molora_result r;
    memset(&c, 0, sizeof c);
    /* peft_type, use_dora, bias: a refused config fails before the tensors are looked at */
    if ((r = molora__config_open(&a->io, &c, cfg_text, cfg_size)) != MOLORA_RESULT_SUCCESS) goto out;
    /* tensors -> modules; refused tensor names fail here, in file order */
    if ((r = molora__modules_collect(a, &any_mola)) != MOLORA_RESULT_SUCCESS) goto out;
    /* the layout: peft_type, and for LORA whether the names are MoLA's */
    if ((r = molora__layout_detect(&c, any_mola, &a->layout)) != MOLORA_RESULT_SUCCESS) goto out;
    /* the layout's own config keys */
    if ((r = molora__config_read(&a->io, &c, a->layout)) != MOLORA_RESULT_SUCCESS) goto out;
    /* natural name order (layers.2 before layers.10), then only the layers_to_transform */
    if (a->n_mod > 1) qsort(a->mods, (size_t)a->n_mod, sizeof *a->mods, molora__cmp_module);
    molora__layers_filter(a, &c);
    /* experts: every index with a lora_A and a lora_B that fit, named the layout's way */
    if ((r = molora__experts_check(a, &n_exp, &max_din)) != MOLORA_RESULT_SUCCESS) goto out;
    if ((r = molora__descs_alloc(a, n_exp, max_din)) != MOLORA_RESULT_SUCCESS) goto out;
    /* one builder per layout fills each layer's descriptor */
    r = molora__layers_build(a, &c);
out:
    molora__config_free(&a->io, &c);
    return r;
}

MOLORA_API void molora_adapter_free(molora_adapter *a)
{
    int i;
    if (!a) return;
    for (i = 0; i < a->n_mod; i++) {
        molora__mfree(&a->io, a->mods[i].name);
        molora__mfree(&a->io, a->mods[i].A);
        molora__mfree(&a->io, a->mods[i].B);
    }
    molora__mfree(&a->io, a->mods);
    molora__mfree(&a->io, a->by_name);
    molora__mfree(&a->io, a->layers);
    molora__mfree(&a->io, a->experts);
    molora__mfree(&a->io, a->dtypes);
    molora__mfree(&a->io, a->zeros);
    molora__mfree(&a->io, (void *)a->ignored);
    if (a->own_st) molora_safetensors_free(a->st);
    molora__mfree(&a->io, a);
}

static int molora__cmp_stripped(const void *a, const void *b)
{
    const molora__module *x = *(molora__module *const *)a, *y = *(molora__module *const *)b;
    int c = strcmp(molora__strip(x->name), molora__strip(y->name));
    return c ? c : (x < y ? -1 : x > y);
}
/* the index molora_adapter_find_layer searches: module pointers sorted by stripped path, so a
   lookup is a binary search */
MOLORA__PRIVATE molora_result molora__adapter_index(molora_adapter *a)
{
    int l;
    if (!a->n_mod) return MOLORA_RESULT_SUCCESS;
    a->by_name = (molora__module **)molora__calloc(&a->io, (size_t)a->n_mod, sizeof *a->by_name);
    if (!a->by_name) return molora__fail(&a->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "adapter: out of memory");
    for (l = 0; l < a->n_mod; l++) a->by_name[l] = &a->mods[l];
    if (a->n_mod > 1) qsort(a->by_name, (size_t)a->n_mod, sizeof *a->by_name, molora__cmp_stripped);
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API molora_result molora_adapter_open_memory(const char *config_json, size_t config_size,
                                                    molora_safetensors *weights,
                                                    const molora_load_desc *desc, molora_adapter **out)
{
    molora__io io;
    molora_adapter *a;
    molora_result r;
    if (!out) return MOLORA_RESULT_INVALID_ARGUMENT;
    *out = NULL;
    if (!weights || (!config_json && config_size) || molora__io_init(desc, &io)) return MOLORA_RESULT_INVALID_ARGUMENT;
    a = (molora_adapter *)molora__calloc(&io, 1, sizeof *a);
    if (!a) return molora__fail(&io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "adapter: out of memory");
    a->io = io;
    a->st = weights;
    a->ignored = (const char **)molora__calloc(&io, weights->n + 1, sizeof(char *));
    if (!a->ignored) {
        molora_adapter_free(a);
        return molora__fail(&io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "adapter: out of memory");
    }
    r = molora__adapter_build(a, config_json ? config_json : "", config_size);
    if (!r) r = molora__adapter_index(a);
    if (r) { molora_adapter_free(a); return r; }
    *out = a;
    return MOLORA_RESULT_SUCCESS;
}

#ifndef MOLORA_NO_STDIO
/* A directory with adapter_model.bin but no adapter_model.safetensors: say how to convert it. */
MOLORA__PRIVATE molora_result molora__no_pickle_only(const molora__io *io, const char *dir, const char *st_path)
{
    struct stat sb;
    char *bin;
    int pickle;
    if (stat(st_path, &sb) == 0 || errno != ENOENT) return MOLORA_RESULT_SUCCESS;
    if (!(bin = molora__path_join(io, dir, "adapter_model.bin")))
        return molora__fail(&io->lg, MOLORA_RESULT_OUT_OF_MEMORY, "%s: out of memory", dir);
    pickle = stat(bin, &sb) == 0;
    molora__mfree(io, bin);
    if (!pickle) return MOLORA_RESULT_SUCCESS;
    return molora__fail(&io->lg, MOLORA_RESULT_IO_ERROR, "%s: no adapter_model.safetensors, only adapter_model.bin "
                        "(a torch pickle, never read by molora): convert it with tools/convert_pickle.py", dir);
}
MOLORA_API molora_result molora_adapter_open(const char *dir, const molora_load_desc *desc, molora_adapter **out)
{
    molora__io io;
    char *cfg_path, *st_path, *text = NULL;
    size_t size = 0;
    molora_safetensors *st = NULL;
    molora_result r;
    if (!out) return MOLORA_RESULT_INVALID_ARGUMENT;
    *out = NULL;
    if (!dir || molora__io_init(desc, &io)) return MOLORA_RESULT_INVALID_ARGUMENT;
    cfg_path = molora__path_join(&io, dir, "adapter_config.json");
    st_path = molora__path_join(&io, dir, "adapter_model.safetensors");
    if (!cfg_path || !st_path) r = molora__fail(&io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "%s: out of memory", dir);
    else if (!(r = molora__slurp(&io, cfg_path, &text, &size)) && !(r = molora__no_pickle_only(&io, dir, st_path)) &&
             !(r = molora_safetensors_open(st_path, desc, &st))) {
        r = molora_adapter_open_memory(text, size, st, desc, out);
        if (!r) (*out)->own_st = 1;
        else molora_safetensors_free(st);
    }
    molora__mfree(&io, text);
    molora__mfree(&io, cfg_path);
    molora__mfree(&io, st_path);
    return r;
}
#endif

MOLORA_API molora_layout molora_adapter_layout(const molora_adapter *a) { return a ? a->layout : MOLORA_LAYOUT_COUNT; }
MOLORA_API int molora_adapter_n_layers(const molora_adapter *a) { return a ? a->n_mod : 0; }
MOLORA_API molora_result molora_adapter_model_desc(const molora_adapter *a, molora_model_desc *d)
{
    if (!a || !d) return MOLORA_RESULT_INVALID_ARGUMENT;
    memset(d, 0, sizeof *d);
    d->n_layers = a->n_mod;
    d->layers = a->layers;
    d->memory = a->io.mem;
    d->log = a->io.lg.fn;
    d->log_user = a->io.lg.user;
    return MOLORA_RESULT_SUCCESS;
}
MOLORA_API const char *molora_adapter_layer_name(const molora_adapter *a, int layer)
{
    return (a && layer >= 0 && layer < a->n_mod) ? a->mods[layer].name : NULL;
}
MOLORA_API molora_dtype molora_adapter_layer_dtype(const molora_adapter *a, int layer)
{
    return (a && layer >= 0 && layer < a->n_mod) ? a->dtypes[layer] : MOLORA_DTYPE_COUNT;
}
MOLORA_API int molora_adapter_find_layer(const molora_adapter *a, const char *path)
{
    size_t lo = 0, hi;
    if (!a || !path || !a->by_name) return -1;
    path = molora__strip(path);
    hi = (size_t)a->n_mod;
    while (lo < hi) {   /* the first (lowest layer) of equal stripped names */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(molora__strip(a->by_name[mid]->name), path) < 0) lo = mid + 1; else hi = mid;
    }
    if (lo < (size_t)a->n_mod && !strcmp(molora__strip(a->by_name[lo]->name), path))
        return (int)(a->by_name[lo] - a->mods);
    return -1;
}
MOLORA_API size_t molora_adapter_n_ignored(const molora_adapter *a) { return a ? a->n_ignored : 0; }
MOLORA_API const char *molora_adapter_ignored_name(const molora_adapter *a, size_t i)
{
    return (a && i < a->n_ignored) ? a->ignored[i] : NULL;
}
/* <<builders */

/* >>xlora  X-LoRA: config, classifier tensors, adapters, module order, the scalings ----------- */
/* One X-LoRA directory: its config (either layout) read and checked into the object, the
   classifier's tensors found and converted to float32, each adapter opened as a PEFT LoRA, the
   union of their modules built as one adapter in X-LoRA's module order; then the per-token
   classifier and the per-module post-processing of PEFT 0.20's XLoraClassifier.forward and
   XLoraLayer.get_maybe_topk_scalings. */
#define MOLORA__XLORA_MAX_N 65536      /* adapters: molora's expert limit                        */
#define MOLORA__XLORA_MAX_DEPTH 64     /* classifier layers                                      */
#define MOLORA__XLORA_MAX_WIDTH (1 << 24)

struct molora_xlora {
    molora__io io;
    int xlora_pkg;                     /* the original package's layout                          */
    int n, n_mod, hidden, depth, size, layerwise, softmax, softmax_topk, top_k, use_bias, relu;
    float temperature, spv, gsw, dropout_p;
    int dropout;                       /* PEFT: xlora_dropout_p > 0 (a Dropout after each ReLU)   */
    const char *order;                 /* "llama", "caller" or NULL                              */
    char **names, **paths;             /* (n) adapter keys, resolved directories                 */
    molora_adapter **ads;              /* (n) the LoRAs                                          */
    molora_adapter *un;                /* the union of their modules                             */
    molora_safetensors *clf_st;
    const float **W, **b;              /* (depth) layer k: W (out_k, in_k), b (out_k) or NULL    */
    int *dim;                          /* (depth + 1): in_0 = H, ..., out_{D-1}                   */
    float *zeros;                      /* the zero A and B of the modules an adapter skips       */
};

#ifndef MOLORA_NO_STDIO
/* ---- config ---------------------------------------------------------------------------- */
/* key as a bool (absent: def); anything but true / false is INVALID_CONFIG */
MOLORA__PRIVATE molora_result molora__xl_bool(const molora__adapter_config *c, const char *f, const char *key, int def,
                                              int *v)
{
    size_t t = molora__jget(&c->js, 0, key);
    *v = def;
    if (!t) return MOLORA_RESULT_SUCCESS;
    if (c->js.tok[t].type != MOLORA__J_TRUE && c->js.tok[t].type != MOLORA__J_FALSE)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "%s: key \"%s\" must be true or false", f, key);
    *v = c->js.tok[t].type == MOLORA__J_TRUE;
    return MOLORA_RESULT_SUCCESS;
}
/* number token t written as an integer: digits only (Python's json reads 2.0 and 2e0 as floats) */
MOLORA__PRIVATE int molora__xl_int_text(const molora__adapter_config *c, size_t t)
{
    const molora__jtok *k = &c->js.tok[t];
    uint32_t i;
    for (i = k->start; i < k->end; i++)
        if (c->js.s[i] == '.' || c->js.s[i] == 'e' || c->js.s[i] == 'E') return 0;
    return 1;
}
/* key as a finite number in [lo, hi] (absent: def; null refused unless null_ok, then *is_null) */
MOLORA__PRIVATE molora_result molora__xl_num(const molora__adapter_config *c, const char *f, const char *key,
                                             double def, double lo, double hi, int integer, double *v, int *is_null)
{
    size_t t = molora__jget(&c->js, 0, key);
    *v = def;
    if (is_null) *is_null = 0;
    if (!t) return MOLORA_RESULT_SUCCESS;
    if (c->js.tok[t].type == MOLORA__J_NULL && is_null) { *is_null = 1; return MOLORA_RESULT_SUCCESS; }
    if (!molora__jnum(&c->js, &c->js.tok[t], v) || !isfinite(*v) || (integer && !molora__xl_int_text(c, t)))
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "%s: key \"%s\" must be %s", f, key,
                            integer ? "an integer (PEFT takes an int: 2.0 or 2e0 fails there)" : "a number");
    if (!(*v >= lo && *v <= hi))
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "%s: key \"%s\" is %.15g, outside %.15g..%.15g", f,
                            key, *v, lo, hi);
    return MOLORA_RESULT_SUCCESS;
}
/* The classifier's options; softmax_temperature must be > 0 (PEFT divides by it: 0 gives NaN),
   top_k_lora 1..N (PEFT: < 1 silently gives the base model, > N fails at the first forward). */
MOLORA__PRIVATE molora_result molora__xl_options(molora_xlora *xl, const molora__adapter_config *c, const char *f)
{
    double v, temp, spv, gsw, p, k;
    int null_k, null_spv, trainable;
    molora_result r;
    if ((r = molora__xl_num(c, f, "hidden_size", 0, 1, MOLORA__XLORA_MAX_WIDTH, 1, &v, NULL))) return r;
    if (!molora__jget(&c->js, 0, "hidden_size"))
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "%s: key \"hidden_size\" is missing", f);
    xl->hidden = (int)v;
    if ((r = molora__xl_num(c, f, "xlora_depth", 1, 1, MOLORA__XLORA_MAX_DEPTH, 1, &v, NULL))) return r;
    xl->depth = (int)v;
    if ((r = molora__xl_num(c, f, "xlora_size", 2048, 1, MOLORA__XLORA_MAX_WIDTH, 1, &v, NULL))) return r;
    xl->size = (int)v;
    if ((r = molora__xl_bool(c, f, "enable_softmax", 1, &xl->softmax)) ||
        (r = molora__xl_bool(c, f, "enable_softmax_topk", 0, &xl->softmax_topk)) ||
        (r = molora__xl_bool(c, f, "layerwise_scalings", 0, &xl->layerwise)) ||
        (r = molora__xl_bool(c, f, "use_trainable_adapters", 0, &trainable)) ||
        (r = molora__xl_bool(c, f, "use_bias", 1, &xl->use_bias)) ||
        (r = molora__xl_bool(c, f, "enable_relu_and_dropout", !xl->xlora_pkg, &xl->relu)))   /* package: False */
        return r;
    if (!xl->xlora_pkg && (!xl->use_bias || !xl->relu))
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "%s: \"use_bias\" and \"enable_relu_and_dropout\" "
                            "are the xlora package's keys (xlora_config.json); PEFT's classifier has both", f);
    if ((r = molora__xl_num(c, f, "xlora_dropout_p", 0.2, 0, 1, 0, &p, NULL)) ||
        (r = molora__xl_num(c, f, "softmax_temperature", 1, -HUGE_VAL, HUGE_VAL, 0, &temp, NULL)) ||
        (r = molora__xl_num(c, f, "top_k_lora", 0, -HUGE_VAL, HUGE_VAL, 1, &k, &null_k)) ||
        (r = molora__xl_num(c, f, "scaling_pass_value", 0, -HUGE_VAL, HUGE_VAL, 0, &spv, &null_spv)) ||
        (r = molora__xl_num(c, f, "global_scaling_weight", 1, -HUGE_VAL, HUGE_VAL, 0, &gsw, NULL)))
        return r;
    if (!(temp > 0) || !isfinite((float)temp) || (float)temp == 0.0f)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "%s: \"softmax_temperature\" %g must be > 0 (PEFT "
                            "divides the logits by it)", f, temp);
    if (!null_k && molora__jget(&c->js, 0, "top_k_lora") && (k < 1 || k > xl->n))
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "%s: \"top_k_lora\" %g outside 1..%d (the adapters)",
                            f, k, xl->n);
    if (null_spv)   /* PEFT's set_scaling_pass_value(None) stores 1/N, never null */
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "%s: \"scaling_pass_value\" must be a number", f);
    if (!isfinite((float)spv) || !isfinite((float)gsw))
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "%s: \"%s\" does not fit a float", f,
                            isfinite((float)spv) ? "global_scaling_weight" : "scaling_pass_value");
    xl->top_k = null_k ? 0 : (int)k;
    xl->temperature = (float)temp; xl->spv = (float)spv; xl->gsw = (float)gsw; xl->dropout_p = (float)p;
    xl->dropout = p > 0.0;
    return MOLORA_RESULT_SUCCESS;
}

MOLORA__PRIVATE char *molora__xl_strdup(const molora__io *io, const char *s, size_t n)
{
    char *d = (char *)molora__malloc(io, n + 1);
    if (d) { memcpy(d, s, n); d[n] = 0; }
    return d;
}
/* PEFT's key (decoded) as its column: "0".."N-1" in decimal without leading zeros, else -1 */
MOLORA__PRIVATE int molora__xl_key_column(const char *key, int n)
{
    size_t len = strlen(key), j;
    long v = 0;
    if (len == 0 || len > 6 || (len > 1 && key[0] == '0')) return -1;
    for (j = 0; j < len; j++) {
        if (key[j] < '0' || key[j] > '9') return -1;
        v = v * 10 + (key[j] - '0');
    }
    return v < n ? (int)v : -1;
}
/* the key and path of the i-th "adapters" entry: PEFT's object key -> path, the key "c" naming
   column c (PEFT's save sorts the keys as strings: "0", "1", "10", "2", ...), or the xlora
   package's list of names (each in the folder of its name), column i */
MOLORA__PRIVATE molora_result molora__xl_adapter_entry(molora_xlora *xl, const molora__adapter_config *c,
                                                       const char *f, const molora__jtok *key,
                                                       const molora__jtok *val, size_t i)
{
    const molora__json *js = &c->js;
    char *name;
    int col = (int)i;
    if (val->type != MOLORA__J_STR || val->end == val->start)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "%s: \"adapters\" entry %zu must be a non-empty %s",
                            f, i, xl->xlora_pkg ? "name" : "path");
    if (!(name = (char *)molora__malloc(&xl->io, key->end - key->start + 1)))
        return molora__fail(c->lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
    molora__jstr(js, key, name);
    if (!xl->xlora_pkg && (col = molora__xl_key_column(name, xl->n)) < 0) {
        molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "%s: \"adapters\" key \"%.40s\" is not one of \"0\"..\"%d\": "
                     "PEFT loads adapter i under the name \"i\" and looks its column up by the key, so any other key "
                     "fails at PEFT's first forward", f, name, xl->n - 1);
        molora__mfree(&xl->io, name);
        return MOLORA_RESULT_INVALID_CONFIG;
    }
    if (xl->names[col]) {   /* PEFT's keys: the parser refuses a key twice; the package's list: here */
        molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "%s: \"adapters\" names \"%.40s\" twice", f, name);
        molora__mfree(&xl->io, name);
        return MOLORA_RESULT_INVALID_CONFIG;
    }
    xl->names[col] = name;
    if (!(xl->paths[col] = (char *)molora__malloc(&xl->io, val->end - val->start + 1)))
        return molora__fail(c->lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
    molora__jstr(js, val, xl->paths[col]);
    return MOLORA_RESULT_SUCCESS;
}
static int molora__xl_cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
/* the package's names are its folders: each once (sorted copies compared, O(N log N)) */
MOLORA__PRIVATE molora_result molora__xl_distinct(molora_xlora *xl, const molora__logger *lg, const char *f)
{
    char **s = (char **)molora__calloc(&xl->io, (size_t)xl->n, sizeof *s);
    int i;
    molora_result r = MOLORA_RESULT_SUCCESS;
    if (!s) return molora__fail(lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
    memcpy(s, xl->names, (size_t)xl->n * sizeof *s);
    qsort(s, (size_t)xl->n, sizeof *s, molora__xl_cmp_str);
    for (i = 1; i < xl->n && !r; i++)
        if (!strcmp(s[i - 1], s[i]))
            r = molora__fail(lg, MOLORA_RESULT_INVALID_CONFIG, "%s: \"adapters\" names \"%.40s\" twice", f, s[i]);
    molora__mfree(&xl->io, s);
    return r;
}
/* "adapters": N >= 1 entries, their keys and paths */
MOLORA__PRIVATE molora_result molora__xl_adapters(molora_xlora *xl, const molora__adapter_config *c, const char *f)
{
    const molora__json *js = &c->js;
    size_t t = molora__jget(js, 0, "adapters"), k, i, pos = 0;
    molora__jtok it;
    molora_result r;
    int type = t ? js->tok[t].type : 0, list = type == MOLORA__J_ARR;
    /* the package saves the list of names; its in-memory dict name -> path (some versions save it)
       is taken by its keys: the package loads each from its {name}/ folder, whatever the path */
    if (!t || (type != MOLORA__J_OBJ && !(xl->xlora_pkg && list)) || js->tok[t].size == 0 ||
        js->tok[t].size > MOLORA__XLORA_MAX_N)
        return molora__fail(c->lg, MOLORA_RESULT_INVALID_CONFIG, "%s: \"adapters\" must be %s of 1..%d adapters", f,
                            xl->xlora_pkg ? "a list of the names (or an object name: path)" :
                            "an object \"0\": path, ...", MOLORA__XLORA_MAX_N);
    xl->n = (int)js->tok[t].size;
    xl->names = (char **)molora__calloc(&xl->io, (size_t)xl->n, sizeof(char *));
    xl->paths = (char **)molora__calloc(&xl->io, (size_t)xl->n, sizeof(char *));
    xl->ads = (molora_adapter **)molora__calloc(&xl->io, (size_t)xl->n, sizeof(molora_adapter *));
    if (!xl->names || !xl->paths || !xl->ads)
        return molora__fail(c->lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
    for (i = 0, k = t + 1; i < (size_t)xl->n; i++) {
        if (list) {   /* list items are read back from the text (not tokens) */
            molora__jitem(js, &js->tok[t], &pos, &it);
            r = molora__xl_adapter_entry(xl, c, f, &it, &it, i);
        } else {
            r = molora__xl_adapter_entry(xl, c, f, &js->tok[k], &js->tok[k + (xl->xlora_pkg ? 0 : 1)], i);
            k += 1 + js->tok[k + 1].skip;
        }
        if (r) return r;
    }
    return xl->xlora_pkg ? molora__xl_distinct(xl, c->lg, f) : MOLORA_RESULT_SUCCESS;
}

/* ---- the classifier's tensors ------------------------------------------------------------ */
/* name of layer k's weight (bias: 1) in the layout: PEFT's nn.Sequential index j = 3k with
   dropout (Linear, ReLU, Dropout), else 2k; the package's inner.{j} (j = 3k with its ReLU and
   Dropout, else k) and last */
MOLORA__PRIVATE void molora__xl_tensor_name(const molora_xlora *xl, int k, int bias, char *buf, size_t cap)
{
    const char *part = bias ? "bias" : "weight";
    if (xl->xlora_pkg) {
        if (k == xl->depth - 1) snprintf(buf, cap, "last.%s", part);
        else snprintf(buf, cap, "inner.%d.%s", xl->relu ? 3 * k : k, part);
    } else {
        snprintf(buf, cap, "base_model.internal_xlora_classifier.layers.%d.%s", xl->dropout ? 3 * k : 2 * k, part);
    }
}
/* every tensor of the file is one the classifier uses: an extra layer, bias (use_bias false) or
   any other tensor means the config does not describe this classifier (INVALID_CONFIG) */
MOLORA__PRIVATE molora_result molora__xl_tensors_expected(molora_xlora *xl, const char *file)
{
    char name[96];
    size_t i;
    int k, bias, ok;
    molora_tensor_info ti;
    for (i = 0; i < molora_safetensors_n_tensors(xl->clf_st); i++) {
        molora_safetensors_tensor_info(xl->clf_st, i, &ti);
        for (ok = 0, k = 0; !ok && k < xl->depth; k++)
            for (bias = 0; !ok && bias <= 1; bias++) {
                molora__xl_tensor_name(xl, k, bias, name, sizeof name);
                ok = (bias <= xl->use_bias) && !strcmp(name, ti.name);
            }
        if (!ok)
            return molora__fail(&xl->io.lg, MOLORA_RESULT_INVALID_CONFIG, "%s: tensor %s is not part of the "
                                "classifier the config describes (xlora_depth %d, %s%s)", file, ti.name, xl->depth,
                                xl->xlora_pkg ? "use_bias " : "xlora_dropout_p ", xl->xlora_pkg ?
                                (xl->use_bias ? "true" : "false") : (xl->dropout ? "> 0" : "0"));
    }
    return MOLORA_RESULT_SUCCESS;
}
/* every tensor the classifier needs is there; else one message naming the missing ones */
MOLORA__PRIVATE molora_result molora__xl_tensors_present(molora_xlora *xl, const char *file)
{
    char name[96], miss[200];
    size_t idx, used = 0;
    int k, bias, n_miss = 0;
    miss[0] = 0;
    for (k = 0; k < xl->depth; k++)
        for (bias = 0; bias <= xl->use_bias; bias++) {
            molora__xl_tensor_name(xl, k, bias, name, sizeof name);
            if (!molora_safetensors_find(xl->clf_st, name, &idx)) continue;
            if (n_miss++ < 2 && used + strlen(name) + 3 < sizeof miss)
                used += (size_t)snprintf(miss + used, sizeof miss - used, "%s%s", n_miss > 1 ? ", " : "", name);
        }
    if (!n_miss) return molora__xl_tensors_expected(xl, file);
    return molora__fail(&xl->io.lg, MOLORA_RESULT_MISSING_WEIGHTS, "%s: the classifier lacks %d tensor%s: %s%s%s", file,
                        n_miss, n_miss > 1 ? "s" : "", miss, n_miss > 2 ? ", ..." : "",
                        xl->xlora_pkg ? "" : " (PEFT 0.20's save drops classifier layers numbered like an adapter)");
}
/* shapes (now that L is known), finite values, float32 views */
MOLORA__PRIVATE molora_result molora__xl_tensors_load(molora_xlora *xl, const char *file)
{
    char name[96];
    size_t idx;
    int k, bias;
    molora_tensor_info ti;
    molora_result r;
    for (k = 0; k < xl->depth; k++) {
        xl->dim[k] = k == 0 ? xl->hidden : xl->size;
        xl->dim[k + 1] = k < xl->depth - 1 ? xl->size : xl->n * (xl->layerwise ? xl->n_mod : 1);
    }
    for (k = 0; k < xl->depth; k++)
        for (bias = 0; bias <= xl->use_bias; bias++) {
            const float **dst = bias ? &xl->b[k] : &xl->W[k];
            uint64_t rows = (uint64_t)xl->dim[k + 1], cols = (uint64_t)xl->dim[k];
            molora__xl_tensor_name(xl, k, bias, name, sizeof name);
            molora_safetensors_find(xl->clf_st, name, &idx);
            molora_safetensors_tensor_info(xl->clf_st, idx, &ti);
            if (bias && (ti.n_dims != 1 || ti.shape[0] != rows))
                return molora__fail(&xl->io.lg, MOLORA_RESULT_INVALID_SHAPE, "%s: %s should be (%llu)", file, name,
                                    (unsigned long long)rows);
            if (!bias && (ti.n_dims != 2 || ti.shape[0] != rows || ti.shape[1] != cols))
                return molora__fail(&xl->io.lg, MOLORA_RESULT_INVALID_SHAPE, "%s: %s should be (%llu, %llu)%s", file,
                                    name, (unsigned long long)rows, (unsigned long long)cols,
                                    k == 0 ? " (hidden_size 2nd)" : "");
            if ((r = molora_safetensors_tensor_f32(xl->clf_st, idx, dst))) return r;
            if (!molora__all_finite(*dst, (size_t)ti.n_elements))
                return molora__fail(&xl->io.lg, MOLORA_RESULT_NON_FINITE, "%s: %s holds NaN or Inf", file, name);
        }
    return MOLORA_RESULT_SUCCESS;
}

/* ---- adapters ------------------------------------------------------------------------------ */
/* an adapter's own log lines, prefixed with which X-LoRA adapter it is */
typedef struct molora__xl_log { const molora__logger *up; const char *name; } molora__xl_log;
static void molora__xl_log_fn(void *user, molora_result r, const char *msg)
{
    const molora__xl_log *x = (const molora__xl_log *)user;
    molora__fail(x->up, r, "X-LoRA adapter \"%s\": %s", x->name, msg);
}
MOLORA__PRIVATE int molora__xl_is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}
/* the directory of adapter i. PEFT: the path as given if it is a directory (a relative one
   against the current directory, as PEFT's loader takes it), then a relative one against dir,
   then dir/{key}/. The package: dir/{name}/ */
MOLORA__PRIVATE molora_result molora__xl_resolve(molora_xlora *xl, const char *dir, int i, int *fallback)
{
    char *cand[3] = {NULL, NULL, NULL};
    int c, n = 0, key = -1, rel = xl->paths[i][0] != '/';
    *fallback = 0;
    if (xl->xlora_pkg) cand[n++] = molora__path_join(&xl->io, dir, xl->paths[i]);
    else {
        cand[n++] = molora__xl_strdup(&xl->io, xl->paths[i], strlen(xl->paths[i]));
        if (rel) cand[n++] = molora__path_join(&xl->io, dir, xl->paths[i]);
        key = n; cand[n++] = molora__path_join(&xl->io, dir, xl->names[i]);
    }
    for (c = 0; c < n; c++)
        if (!cand[c]) { while (n) molora__mfree(&xl->io, cand[--n]); return molora__fail(&xl->io.lg,
                        MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory"); }
    for (c = 0; c < n && !molora__xl_is_dir(cand[c]); c++) {}
    if (c == n) {
        molora__fail(&xl->io.lg, MOLORA_RESULT_IO_ERROR, "%s: X-LoRA adapter \"%s\": no directory %s%s%s%s%s", dir,
                     xl->names[i], cand[0], n > 2 ? ", " : n > 1 ? " or " : "", n > 1 ? cand[1] : "",
                     n > 2 ? " or " : "", n > 2 ? cand[2] : "");
        while (n) molora__mfree(&xl->io, cand[--n]);
        return MOLORA_RESULT_IO_ERROR;
    }
    *fallback = c == key;
    molora__mfree(&xl->io, xl->paths[i]);
    xl->paths[i] = cand[c];
    while (n) { if (--n != c) molora__mfree(&xl->io, cand[n]); }
    return MOLORA_RESULT_SUCCESS;
}
/* a {key}/ copy written by PEFT 0.20's X-LoRA save holds the base model's tensors and has lost
   the LoRA tensors of decoder layers numbered like another adapter: refused */
MOLORA__PRIVATE molora_result molora__xl_copy_check(molora_xlora *xl, int i, const molora_load_desc *desc)
{
    char *p = molora__path_join(&xl->io, xl->paths[i], "adapter_model.safetensors");
    molora_safetensors *st = NULL;
    molora_load_desc quiet = *desc;
    molora_tensor_info ti;
    size_t k;
    molora_result r = MOLORA_RESULT_SUCCESS;
    if (!p) return molora__fail(&xl->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
    quiet.log = NULL;   /* a file that does not open is reported by molora_adapter_open next */
    if (!molora_safetensors_open(p, &quiet, &st))
        for (k = 0; !r && k < molora_safetensors_n_tensors(st); k++) {
            molora_safetensors_tensor_info(st, k, &ti);
            if (strstr(ti.name, ".base_layer.") || strstr(ti.name, "internal_xlora_classifier"))
                r = molora__fail(&xl->io.lg, MOLORA_RESULT_MISSING_WEIGHTS, "%s: X-LoRA adapter \"%s\": this copy "
                                 "from PEFT's X-LoRA save holds %s and lost the LoRA tensors of decoder layers "
                                 "numbered like another adapter; give the adapter's own directory", xl->paths[i],
                                 xl->names[i], ti.name);
        }
    molora_safetensors_free(st);
    molora__mfree(&xl->io, p);
    return r;
}
MOLORA__PRIVATE molora_result molora__xl_open_adapters(molora_xlora *xl, const char *dir, const molora_load_desc *desc)
{
    int i, fallback;
    molora_result r;
    for (i = 0; i < xl->n; i++) {
        molora_load_desc d = *desc;
        molora__xl_log x;
        x.up = &xl->io.lg; x.name = xl->names[i];
        d.log = xl->io.lg.fn ? molora__xl_log_fn : NULL;
        d.log_user = &x;
        if ((r = molora__xl_resolve(xl, dir, i, &fallback))) return r;
        if (fallback && (r = molora__xl_copy_check(xl, i, desc))) return r;
        if ((r = molora_adapter_open(xl->paths[i], &d, &xl->ads[i]))) return r;
        if (molora_adapter_layout(xl->ads[i]) != MOLORA_LAYOUT_PEFT_LORA)
            return molora__fail(&xl->io.lg, MOLORA_RESULT_UNSUPPORTED, "%s: X-LoRA adapter \"%s\" is a %s adapter, "
                                "not a PEFT LoRA", xl->paths[i], xl->names[i],
                                molora_layout_name(molora_adapter_layout(xl->ads[i])));
    }
    return MOLORA_RESULT_SUCCESS;
}

/* ---- the union of the modules, in X-LoRA's order -------------------------------------------- */
/* rank of a module in the Llama layout's registration order (decoder layer, then q, k, v, o,
   gate, up, down), or -1 when the path is not of that layout */
MOLORA__PRIVATE long molora__xl_llama_rank(const char *path)
{
    static const char *const proj[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                        "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    const char *p = molora__strip(path);
    long b = 0;
    int j, digits = 0;
    if (strncmp(p, "model.layers.", 13)) return -1;
    for (p += 13; *p >= '0' && *p <= '9' && digits < 9; p++, digits++) b = b * 10 + (*p - '0');
    if (!digits || *p != '.' || (digits > 1 && p[-digits] == '0')) return -1;
    for (j = 0; j < 7; j++)
        if (!strcmp(p + 1, proj[j])) return b * 7 + j;
    return -1;
}
static int molora__xl_cmp_llama(const void *a, const void *b)
{
    long x = molora__xl_llama_rank(((const molora__module *)a)->name);
    long y = molora__xl_llama_rank(((const molora__module *)b)->name);
    return x < y ? -1 : x > y;
}
static int molora__xl_cmp_stripped(const void *a, const void *b)
{
    return strcmp(molora__strip(((const molora__module *)a)->name), molora__strip(((const molora__module *)b)->name));
}
/* every adapter's module paths once each (compared without base_model.model.) into un->mods */
MOLORA__PRIVATE molora_result molora__xl_collect(molora_xlora *xl)
{
    molora_adapter *u = xl->un;
    size_t total = 0;
    int i, l, m = 0, known = 1;
    for (i = 0; i < xl->n; i++) total += (size_t)molora_adapter_n_layers(xl->ads[i]);
    if (!(u->mods = (molora__module *)molora__calloc(&xl->io, total ? total : 1, sizeof *u->mods)))
        return molora__fail(&xl->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
    for (i = 0; i < xl->n; i++)
        for (l = 0; l < molora_adapter_n_layers(xl->ads[i]); l++) u->mods[m++].name = (char *)
            molora_adapter_layer_name(xl->ads[i], l);   /* borrowed until copied below */
    if (m > 1) qsort(u->mods, (size_t)m, sizeof *u->mods, molora__xl_cmp_stripped);
    for (i = 0, l = 0; i < m; i++)
        if (!l || molora__xl_cmp_stripped(&u->mods[l - 1], &u->mods[i])) u->mods[l++] = u->mods[i];
    u->n_mod = 0;
    for (i = 0; i < l; i++) {
        const char *s = u->mods[i].name;
        if (!(u->mods[i].name = molora__xl_strdup(&xl->io, s, strlen(s)))) {
            for (; i < l; i++) u->mods[i].name = NULL;
            return molora__fail(&xl->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
        }
        u->n_mod = i + 1;
        u->mods[i].block = molora__block_of(molora__strip(u->mods[i].name));
        known = known && molora__xl_llama_rank(u->mods[i].name) >= 0;
    }
    if (!l) return molora__fail(&xl->io.lg, MOLORA_RESULT_MISSING_WEIGHTS, "x-lora: the adapters adapt no module");
    if (known) { qsort(u->mods, (size_t)l, sizeof *u->mods, molora__xl_cmp_llama); xl->order = "llama"; }
    else if (l > 1) qsort(u->mods, (size_t)l, sizeof *u->mods, molora__cmp_module);
    xl->n_mod = l;
    return MOLORA_RESULT_SUCCESS;
}
/* layer l of the union: adapter i's expert where it adapts module l, else a zero rank-1 one */
MOLORA__PRIVATE molora_result molora__xl_layer(molora_xlora *xl, int l)
{
    molora_adapter *u = xl->un;
    molora_layer_desc *L = &u->layers[l];
    molora_expert_desc *ex = u->experts + (size_t)l * (size_t)xl->n;
    const char *name = u->mods[l].name;
    int i, j, first = 1;
    for (i = 0; i < xl->n; i++) {
        molora_model_desc md;
        const molora_layer_desc *S;
        int k = molora_adapter_find_layer(xl->ads[i], name);
        if (k < 0 || molora_adapter_model_desc(xl->ads[i], &md)) continue;
        S = &md.layers[k];
        if (first) {
            L->d_in = S->d_in; L->d_out = S->d_out; L->fan_in_fan_out = S->fan_in_fan_out;
            u->dtypes[l] = molora_adapter_layer_dtype(xl->ads[i], k);
            first = 0;
        } else if (S->d_in != L->d_in || S->d_out != L->d_out || S->fan_in_fan_out != L->fan_in_fan_out)
            return molora__fail(&xl->io.lg, MOLORA_RESULT_INVALID_SHAPE, "module %s: X-LoRA adapter \"%s\" has it "
                                "(%d, %d)%s, another adapter (%d, %d)%s", name, xl->names[i], S->d_out, S->d_in,
                                S->fan_in_fan_out ? " fan_in_fan_out" : "", L->d_out, L->d_in,
                                L->fan_in_fan_out ? " fan_in_fan_out" : "");
        ex[i] = S->experts[0];
    }
    for (j = 0; j < xl->n && !ex[j].A; j++) {}
    for (i = 0; i < xl->n; i++)   /* a zero rank-1 filler, of the present experts' types: zero bytes are 0 in each */
        if (!ex[i].A) {
            ex[i].rank = 1; ex[i].A = xl->zeros; ex[i].B = xl->zeros; ex[i].scaling = 1.0f;
            if (j < xl->n) { ex[i].A_type = ex[j].A_type; ex[i].B_type = ex[j].B_type; }
        }
    L->n_experts = xl->n;
    L->experts = ex;
    L->routing = MOLORA_ROUTING_FIXED;
    return MOLORA_RESULT_SUCCESS;
}
MOLORA__PRIVATE molora_result molora__xl_union(molora_xlora *xl)
{
    molora_adapter *u;
    size_t n_exp, max_d = 1;
    int l, i;
    molora_result r;
    if (!(u = xl->un = (molora_adapter *)molora__calloc(&xl->io, 1, sizeof *u)))
        return molora__fail(&xl->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
    u->io = xl->io;
    u->layout = MOLORA_LAYOUT_XLORA;
    if ((r = molora__xl_collect(xl))) return r;
    for (i = 0; i < xl->n; i++)
        for (l = 0; l < molora_adapter_n_layers(xl->ads[i]); l++) {
            molora_model_desc md;
            molora_adapter_model_desc(xl->ads[i], &md);
            if ((size_t)md.layers[l].d_in > max_d) max_d = (size_t)md.layers[l].d_in;
            if ((size_t)md.layers[l].d_out > max_d) max_d = (size_t)md.layers[l].d_out;
        }
    if (!molora__mul((size_t)u->n_mod, (size_t)xl->n, &n_exp))
        return molora__fail(&xl->io.lg, MOLORA_RESULT_SIZE_OVERFLOW, "x-lora: %d modules x %d adapters", u->n_mod,
                            xl->n);
    u->layers = (molora_layer_desc *)molora__calloc(&xl->io, (size_t)u->n_mod, sizeof *u->layers);
    u->dtypes = (molora_dtype *)molora__calloc(&xl->io, (size_t)u->n_mod, sizeof *u->dtypes);
    u->experts = (molora_expert_desc *)molora__calloc(&xl->io, n_exp, sizeof *u->experts);
    xl->zeros = (float *)molora__calloc(&xl->io, max_d, sizeof(float));
    if (!u->layers || !u->dtypes || !u->experts || !xl->zeros)
        return molora__fail(&xl->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
    for (l = 0; l < u->n_mod; l++)
        if ((r = molora__xl_layer(xl, l))) return r;
    return molora__adapter_index(u);
}

/* ---- open, free, getters ------------------------------------------------------------------- */
/* the config file of either layout: its text parsed, the options and the adapters read */
MOLORA__PRIVATE molora_result molora__xl_config(molora_xlora *xl, const char *dir, const char **clf_file)
{
    molora__adapter_config c;
    char *path = molora__path_join(&xl->io, dir, "xlora_config.json"), *text = NULL;
    const char *f;
    size_t size = 0;
    molora_result r;
    memset(&c, 0, sizeof c);
    c.lg = &xl->io.lg;
    if (!path) return molora__fail(&xl->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
    xl->xlora_pkg = molora__xl_is_dir(dir) && access(path, F_OK) == 0;
    if (!xl->xlora_pkg) {
        molora__mfree(&xl->io, path);
        if (!(path = molora__path_join(&xl->io, dir, "adapter_config.json")))
            return molora__fail(&xl->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
    }
    f = xl->xlora_pkg ? "xlora_config.json" : "adapter_config.json";
    *clf_file = xl->xlora_pkg ? "xlora_classifier.safetensors" : "adapter_model.safetensors";
    if (!(r = molora__slurp(&xl->io, path, &text, &size))) {
        if (!molora__utf8_valid((const unsigned char *)text, size))
            r = molora__fail(c.lg, MOLORA_RESULT_INVALID_CONFIG, "%s: not valid UTF-8", f);
        else if (!(r = molora__json_parse(&xl->io, text, size, &c.js, f, MOLORA_RESULT_INVALID_JSON)) &&
                 c.js.tok[0].type != MOLORA__J_OBJ)
            r = molora__fail(c.lg, MOLORA_RESULT_INVALID_CONFIG, "%s: not a JSON object", f);
    }
    if (!r && !xl->xlora_pkg) {
        size_t t = molora__jget(&c.js, 0, "peft_type");
        if (!t || !molora__jeq(&c.js, &c.js.tok[t], "XLORA"))
            r = molora__fail(c.lg, MOLORA_RESULT_INVALID_CONFIG, "%s: \"peft_type\" is not \"XLORA\" (and there is "
                             "no xlora_config.json): not an X-LoRA adapter", f);
    }
    if (!r) r = molora__xl_adapters(xl, &c, f);
    if (!r) r = molora__xl_options(xl, &c, f);
    molora__json_free(&xl->io, &c.js);
    molora__mfree(&xl->io, text);
    molora__mfree(&xl->io, path);
    return r;
}
MOLORA__PRIVATE molora_result molora__xl_build(molora_xlora *xl, const char *dir, const molora_load_desc *desc)
{
    const char *clf = "adapter_model.safetensors";
    char *path;
    molora_result r;
    if ((r = molora__xl_config(xl, dir, &clf))) return r;
    xl->W = (const float **)molora__calloc(&xl->io, (size_t)xl->depth, sizeof(float *));
    xl->b = (const float **)molora__calloc(&xl->io, (size_t)xl->depth, sizeof(float *));
    xl->dim = (int *)molora__calloc(&xl->io, (size_t)xl->depth + 1, sizeof(int));
    if (!xl->W || !xl->b || !xl->dim || !(path = molora__path_join(&xl->io, dir, clf)))
        return molora__fail(&xl->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
    r = molora_safetensors_open(path, desc, &xl->clf_st);
    molora__mfree(&xl->io, path);
    if (r || (r = molora__xl_tensors_present(xl, clf))) return r;
    if ((r = molora__xl_open_adapters(xl, dir, desc)) || (r = molora__xl_union(xl))) return r;
    return molora__xl_tensors_load(xl, clf);
}
MOLORA_API molora_result molora_xlora_open(const char *dir, const molora_load_desc *desc, molora_xlora **out)
{
    molora__io io;
    molora_load_desc d;
    molora_xlora *xl;
    molora_result r;
    if (!out) return MOLORA_RESULT_INVALID_ARGUMENT;
    *out = NULL;
    if (!dir || molora__io_init(desc, &io)) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (desc) d = *desc; else memset(&d, 0, sizeof d);
    if (!(xl = (molora_xlora *)molora__calloc(&io, 1, sizeof *xl)))
        return molora__fail(&io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
    xl->io = io;
    if ((r = molora__xl_build(xl, dir, &d))) { molora_xlora_free(xl); return r; }
    *out = xl;
    return MOLORA_RESULT_SUCCESS;
}
#endif /* MOLORA_NO_STDIO */
MOLORA_API void molora_xlora_free(molora_xlora *xl)
{
    int i;
    if (!xl) return;
    for (i = 0; i < xl->n; i++) {
        if (xl->ads) molora_adapter_free(xl->ads[i]);
        if (xl->names) molora__mfree(&xl->io, xl->names[i]);
        if (xl->paths) molora__mfree(&xl->io, xl->paths[i]);
    }
    molora_adapter_free(xl->un);
    molora_safetensors_free(xl->clf_st);
    molora__mfree(&xl->io, xl->ads);
    molora__mfree(&xl->io, xl->names);
    molora__mfree(&xl->io, xl->paths);
    molora__mfree(&xl->io, (void *)xl->W);
    molora__mfree(&xl->io, (void *)xl->b);
    molora__mfree(&xl->io, xl->dim);
    molora__mfree(&xl->io, xl->zeros);
    molora__mfree(&xl->io, xl);
}
MOLORA_API int molora_xlora_n_adapters(const molora_xlora *xl) { return xl ? xl->n : 0; }
MOLORA_API int molora_xlora_n_modules(const molora_xlora *xl) { return xl ? xl->n_mod : 0; }
MOLORA_API int molora_xlora_hidden_size(const molora_xlora *xl) { return xl ? xl->hidden : 0; }
MOLORA_API const char *molora_xlora_adapter_name(const molora_xlora *xl, int i)
{
    return xl && i >= 0 && i < xl->n ? xl->names[i] : NULL;
}
MOLORA_API const char *molora_xlora_adapter_path(const molora_xlora *xl, int i)
{
    return xl && i >= 0 && i < xl->n ? xl->paths[i] : NULL;
}
MOLORA_API const molora_adapter *molora_xlora_adapter(const molora_xlora *xl) { return xl ? xl->un : NULL; }
MOLORA_API molora_result molora_xlora_config(const molora_xlora *xl, molora_xlora_info *o)
{
    if (!xl || !o) return MOLORA_RESULT_INVALID_ARGUMENT;
    memset(o, 0, sizeof *o);
    o->layout = xl->xlora_pkg ? "xlora" : "peft";
    o->module_order = xl->order;
    o->n_adapters = xl->n; o->n_modules = xl->n_mod; o->hidden_size = xl->hidden;
    o->depth = xl->depth; o->size = xl->size;
    o->layerwise = xl->layerwise; o->enable_softmax = xl->softmax; o->enable_softmax_topk = xl->softmax_topk;
    o->top_k = xl->top_k; o->use_bias = xl->use_bias; o->relu = xl->relu;
    o->temperature = xl->temperature; o->scaling_pass_value = xl->spv; o->global_scaling_weight = xl->gsw;
    o->dropout_p = xl->dropout_p;
    return MOLORA_RESULT_SUCCESS;
}

/* the caller's order: paths[k] is X-LoRA's module k; the union's layers permuted to it */
MOLORA_API molora_result molora_xlora_set_module_order(molora_xlora *xl, const char *const *paths, int n)
{
    molora_adapter *u;
    molora__module *mods;
    molora_layer_desc *layers;
    molora_dtype *dt;
    int k, *from;
    if (!xl || !paths) return MOLORA_RESULT_INVALID_ARGUMENT;
    u = xl->un;
    if (n != u->n_mod)
        return molora__fail(&xl->io.lg, MOLORA_RESULT_INVALID_ARGUMENT, "x-lora: the module order names %d modules, "
                            "the adapters adapt %d", n, u->n_mod);
    mods = (molora__module *)molora__calloc(&xl->io, (size_t)n, sizeof *mods);
    layers = (molora_layer_desc *)molora__calloc(&xl->io, (size_t)n, sizeof *layers);
    dt = (molora_dtype *)molora__calloc(&xl->io, (size_t)n, sizeof *dt);
    from = (int *)molora__calloc(&xl->io, (size_t)n, sizeof *from);
    if (!mods || !layers || !dt || !from) {
        molora__mfree(&xl->io, mods); molora__mfree(&xl->io, layers); molora__mfree(&xl->io, dt);
        molora__mfree(&xl->io, from);
        return molora__fail(&xl->io.lg, MOLORA_RESULT_OUT_OF_MEMORY, "x-lora: out of memory");
    }
    for (k = 0; k < n; k++) {
        int l = paths[k] ? molora_adapter_find_layer(u, paths[k]) : -1;
        if (l < 0 || from[l])
            break;
        from[l] = k + 1;
        mods[k] = u->mods[l]; layers[k] = u->layers[l]; dt[k] = u->dtypes[l];
    }
    if (k < n) {
        molora__mfree(&xl->io, mods); molora__mfree(&xl->io, layers); molora__mfree(&xl->io, dt);
        molora__mfree(&xl->io, from);
        return molora__fail(&xl->io.lg, MOLORA_RESULT_INVALID_ARGUMENT, "x-lora: module order entry %d (%s) is %s", k,
                            paths[k] ? paths[k] : "NULL", paths[k] && molora_adapter_find_layer(u, paths[k]) >= 0 ?
                            "given twice" : "not an adapted module");
    }
    molora__mfree(&xl->io, u->mods); molora__mfree(&xl->io, u->layers); molora__mfree(&xl->io, u->dtypes);
    molora__mfree(&xl->io, from);
    molora__mfree(&xl->io, u->by_name);
    u->mods = mods; u->layers = layers; u->dtypes = dt; u->by_name = NULL;
    xl->order = "caller";
    return molora__adapter_index(u);
}

/* ---- torch.topk's pick on CPU -------------------------------------------------------------- */
/* PEFT keeps torch.topk(w, k).indices; with ties which equal entries stay is not the lower index
   but what torch 1.13's CPU kernel (TopKImpl.h) leaves in front: the pairs (w_j, j) in index
   order through libstdc++'s std::partial_sort (k * 64 <= n) or std::nth_element at k - 1, both
   with comp(a, b) = a > b. The steps below are libstdc++'s, on ix (n): the indices as floats
   (exact: n <= 2^16); w NULL is a constant row (comp always false). */
#define MOLORA__XL_GT(w, a, b) ((w) && (w)[(int)(a)] > (w)[(int)(b)])
MOLORA__PRIVATE void molora__xl_adjust_heap(const float *w, float *f, long hole, long len, float val)
{
    long top = hole, c = hole, parent;
    while (c < (len - 1) / 2) {
        c = 2 * (c + 1);
        if (MOLORA__XL_GT(w, f[c], f[c - 1])) c--;
        f[hole] = f[c]; hole = c;
    }
    if ((len & 1) == 0 && c == (len - 2) / 2) { c = 2 * (c + 1); f[hole] = f[c - 1]; hole = c - 1; }
    for (parent = (hole - 1) / 2; hole > top && MOLORA__XL_GT(w, f[parent], val); parent = (hole - 1) / 2) {
        f[hole] = f[parent]; hole = parent;
    }
    f[hole] = val;
}
/* std::__heap_select(f, f + mid, f + n): the heap of the first mid, then every later entry that
   beats its top replaces it */
MOLORA__PRIVATE void molora__xl_heap_select(const float *w, float *f, long mid, long n)
{
    long p, i;
    float v;
    if (mid >= 2)
        for (p = (mid - 2) / 2; p >= 0; p--) molora__xl_adjust_heap(w, f, p, mid, f[p]);
    for (i = mid; i < n; i++)
        if (MOLORA__XL_GT(w, f[i], f[0])) { v = f[i]; f[i] = f[0]; molora__xl_adjust_heap(w, f, 0, mid, v); }
}
#define MOLORA__XL_SWAP(a, b) do { float s_ = (a); (a) = (b); (b) = s_; } while (0)
/* std::__unguarded_partition_pivot over f[lo, hi): the median of three to lo, then Hoare */
MOLORA__PRIVATE long molora__xl_partition(const float *w, float *f, long lo, long hi)
{
    long a = lo + 1, b = lo + (hi - lo) / 2, c = hi - 1, m, first = lo + 1, last = hi;
    if (MOLORA__XL_GT(w, f[a], f[b]))
        m = MOLORA__XL_GT(w, f[b], f[c]) ? b : MOLORA__XL_GT(w, f[a], f[c]) ? c : a;
    else
        m = MOLORA__XL_GT(w, f[a], f[c]) ? a : MOLORA__XL_GT(w, f[b], f[c]) ? c : b;
    MOLORA__XL_SWAP(f[lo], f[m]);
    for (;;) {
        while (MOLORA__XL_GT(w, f[first], f[lo])) first++;
        for (last--; MOLORA__XL_GT(w, f[lo], f[last]); last--) {}
        if (first >= last) return first;
        MOLORA__XL_SWAP(f[first], f[last]);
        first++;
    }
}
/* std::nth_element(f, f + nth, f + n) (libstdc++'s introselect, depth limit 2 floor(log2 n)) */
MOLORA__PRIVATE void molora__xl_nth_element(const float *w, float *f, long nth, long n)
{
    long lo = 0, hi = n, depth = 0, i, j;
    float v;
    for (i = n; i > 1; i >>= 1) depth += 2;
    while (hi - lo > 3) {
        if (depth-- == 0) {
            molora__xl_heap_select(w, f + lo, nth + 1 - lo, hi - lo);
            MOLORA__XL_SWAP(f[lo], f[nth]);
            return;
        }
        i = molora__xl_partition(w, f, lo, hi);
        if (i <= nth) lo = i; else hi = i;
    }
    for (i = lo + 1; i < hi; i++) {   /* std::__insertion_sort */
        v = f[i];
        if (MOLORA__XL_GT(w, v, f[lo])) { memmove(f + lo + 1, f + lo, (size_t)(i - lo) * sizeof *f); f[lo] = v; }
        else { for (j = i; MOLORA__XL_GT(w, v, f[j - 1]); j--) f[j] = f[j - 1]; f[j] = v; }
    }
}
/* ix (n) = 0..n-1 reordered so that ix[0..k-1] are torch.topk(w, k)'s indices (0 < k < n) */
MOLORA__PRIVATE void molora__xl_topk(const float *w, float *ix, int n, int k)
{
    int j;
    for (j = 0; j < n; j++) ix[j] = (float)j;
    if ((long)k * 64 <= n) molora__xl_heap_select(w, ix, k, n);   /* std::partial_sort's set */
    else molora__xl_nth_element(w, ix, k - 1, n);
}

/* ---- the scalings -------------------------------------------------------------------------- */
MOLORA__PRIVATE int molora__xl_width(const molora_xlora *xl)
{
    int k, w = 1;
    for (k = 1; k <= xl->depth; k++) if (xl->dim[k] > w) w = xl->dim[k];
    return w;
}
/* the workspace: two (T, width) buffers for the classifier's layers, then top-k's ix (N) */
MOLORA_API molora_result molora_xlora_workspace_size(const molora_xlora *xl, int max_tokens, size_t *size)
{
    size_t one, acc = MOLORA__ALIGN;
    if (!xl || !size) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (max_tokens < 0)
        return molora__fail(&xl->io.lg, MOLORA_RESULT_INVALID_SHAPE, "x-lora: max_tokens %d < 0", max_tokens);
    if (!molora__floats((size_t)(max_tokens ? max_tokens : 1), (size_t)molora__xl_width(xl), &one) ||
        !molora__reserve(&acc, one, sizeof(float)) || !molora__reserve(&acc, one, sizeof(float)) ||
        !molora__reserve(&acc, (size_t)xl->n, sizeof(float)))
        return MOLORA_RESULT_SIZE_OVERFLOW;
    *size = acc;
    return MOLORA_RESULT_SUCCESS;
}
/* softmax of v (n) / temp in place, as torch.softmax: the maximum subtracted first */
MOLORA__PRIVATE void molora__xl_softmax(float *v, int n, float temp)
{
    float m = v[0] / temp, s = 0.0f;
    int i;
    for (i = 1; i < n; i++) if (v[i] / temp > m) m = v[i] / temp;
    for (i = 0; i < n; i++) s += (v[i] = expf(v[i] / temp - m));
    for (i = 0; i < n; i++) v[i] /= s;
}
/* one module's row w (N): the top-k mask without renormalisation (torch.topk's pick; ix (N) its
   scratch; NULL: the mask is done), the softmax over the non-zero entries (the zeros stay 0, an
   all-zero row stays 0), times gsw */
MOLORA__PRIVATE void molora__xl_post(const molora_xlora *xl, float *w, float *ix)
{
    int i, n = xl->n;
    if (ix && xl->top_k && xl->top_k < n) {
        molora__xl_topk(w, ix, n, xl->top_k);
        for (i = xl->top_k; i < n; i++) w[(int)ix[i]] = 0.0f;
    }
    if (xl->softmax_topk) {
        float m = -HUGE_VALF, s = 0.0f;
        for (i = 0; i < n; i++) if (w[i] != 0.0f && w[i] > m) m = w[i];
        for (i = 0; i < n; i++) if (w[i] != 0.0f) s += (w[i] = expf(w[i] - m));
        for (i = 0; i < n; i++) if (w[i] != 0.0f) w[i] /= s;
    }
    for (i = 0; i < n; i++) w[i] *= xl->gsw;
}
/* logits z (T, out) of the Linear / ReLU stack over hidden (T, H), in the workspace */
MOLORA__PRIVATE const float *molora__xl_classify(const molora_xlora *xl, int T, const float *hidden, float *buf0,
                                                 float *buf1)
{
    const float *cur = hidden;
    int k, t, j;
    for (k = 0; k < xl->depth; k++) {
        int in = xl->dim[k], out = xl->dim[k + 1];
        float *y = (k & 1) ? buf1 : buf0;
        molora__mul_abt(T, out, in, cur, in, xl->W[k], in, 0, y, out);
        for (t = 0; t < T; t++) {
            float *row = y + (size_t)t * out;
            if (xl->b[k]) for (j = 0; j < out; j++) row[j] += xl->b[k][j];
            if (k < xl->depth - 1 && xl->relu) for (j = 0; j < out; j++) row[j] = row[j] > 0.0f ? row[j] : 0.0f;
        }
        cur = y;
    }
    return cur;
}
/* every module's row from the logits z: softmax (checked: logits / temperature may overflow),
   then the post-processing (checked: global_scaling_weight may overflow) */
MOLORA__PRIVATE molora_result molora__xl_rows(const molora_xlora *xl, int T, const float *z, float *scalings,
                                              float *ix)
{
    int t, l, n = xl->n, L = xl->n_mod, outw = xl->dim[xl->depth];
    for (t = 0; t < T; t++)
        for (l = 0; l < L; l++) {
            float *w = scalings + ((size_t)t * L + l) * n;
            memcpy(w, z + (size_t)t * outw + (xl->layerwise ? (size_t)l * n : 0), (size_t)n * sizeof(float));
            if (xl->softmax) molora__xl_softmax(w, n, xl->temperature);
            if (!molora__all_finite(w, (size_t)n))
                return molora__fail(&xl->io.lg, MOLORA_RESULT_NON_FINITE, "x-lora: token %d: the softmax of the "
                                    "logits / softmax_temperature %g overflows", t, (double)xl->temperature);
            molora__xl_post(xl, w, ix);
            if (!molora__all_finite(w, (size_t)n))
                return molora__fail(&xl->io.lg, MOLORA_RESULT_NON_FINITE, "x-lora: token %d: the scalings times "
                                    "global_scaling_weight %g overflow", t, (double)xl->gsw);
        }
    return MOLORA_RESULT_SUCCESS;
}
MOLORA_API molora_result molora_xlora_scalings(const molora_xlora *xl, int n_tokens, const float *hidden,
                                               float *scalings, void *workspace, size_t workspace_size)
{
    size_t need, one;
    const float *z;
    float *b0;
    if (!xl || (n_tokens > 0 && (!hidden || !scalings || !workspace))) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (n_tokens < 0) return molora__fail(&xl->io.lg, MOLORA_RESULT_INVALID_SHAPE, "x-lora: n_tokens %d < 0", n_tokens);
    if (n_tokens == 0) return MOLORA_RESULT_SUCCESS;
    if (xl->layerwise && !xl->order)
        return molora__fail(&xl->io.lg, MOLORA_RESULT_UNSUPPORTED, "x-lora: layer-wise scalings need X-LoRA's module "
                            "order, which this model's module names do not give: molora_xlora_set_module_order");
    if (molora_xlora_workspace_size(xl, n_tokens, &need) || workspace_size < need)
        return molora__fail(&xl->io.lg, MOLORA_RESULT_WORKSPACE_TOO_SMALL, "x-lora: workspace of %zu bytes, %d tokens "
                            "need %zu", workspace_size, n_tokens, need);
    if (!molora__all_finite(hidden, (size_t)n_tokens * (size_t)xl->hidden))
        return molora__fail(&xl->io.lg, MOLORA_RESULT_NON_FINITE, "x-lora: the hidden states hold NaN or Inf");
    one = (((size_t)n_tokens * (size_t)molora__xl_width(xl) * sizeof(float)) + MOLORA__ALIGN - 1) &
          ~(size_t)(MOLORA__ALIGN - 1);
    b0 = (float *)molora__align_up(workspace);
    z = molora__xl_classify(xl, n_tokens, hidden, b0, (float *)((unsigned char *)b0 + one));
    if (!molora__all_finite(z, (size_t)n_tokens * (size_t)xl->dim[xl->depth]))
        return molora__fail(&xl->io.lg, MOLORA_RESULT_NON_FINITE, "x-lora: the classifier's logits overflow");
    return molora__xl_rows(xl, n_tokens, z, scalings, (float *)((unsigned char *)b0 + 2 * one));
}
/* pass 1's row: constant, so torch.topk's pick depends on (N, k) alone; the row itself is ix,
   the kept indices flagged by + N (exact as floats), then the values written */
MOLORA_API molora_result molora_xlora_scaling_pass(const molora_xlora *xl, int n_tokens, float *scalings)
{
    size_t k, row;
    int i, n;
    if (!xl || (n_tokens > 0 && !scalings)) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (n_tokens < 0) return molora__fail(&xl->io.lg, MOLORA_RESULT_INVALID_SHAPE, "x-lora: n_tokens %d < 0", n_tokens);
    if (n_tokens == 0) return MOLORA_RESULT_SUCCESS;
    row = (size_t)(n = xl->n);
    if (xl->top_k && xl->top_k < n) {
        molora__xl_topk(NULL, scalings, n, xl->top_k);
        for (i = 0; i < xl->top_k; i++) {
            float v = scalings[i];
            scalings[(int)(v >= (float)n ? v - (float)n : v)] += (float)n;
        }
        for (i = 0; i < n; i++) scalings[i] = scalings[i] >= (float)n ? xl->spv : 0.0f;
    } else {
        for (i = 0; i < n; i++) scalings[i] = xl->spv;
    }
    molora__xl_post(xl, scalings, NULL);   /* every row is the same: the first, copied */
    if (!molora__all_finite(scalings, row))
        return molora__fail(&xl->io.lg, MOLORA_RESULT_NON_FINITE, "x-lora: scaling_pass_value %g times "
                            "global_scaling_weight %g overflows", (double)xl->spv, (double)xl->gsw);
    for (k = 1; k < (size_t)n_tokens * (size_t)xl->n_mod; k++)
        memcpy(scalings + k * row, scalings, row * sizeof(float));
    return MOLORA_RESULT_SUCCESS;
}
MOLORA_API int molora_xlora_scaling_pass_is_base(const molora_xlora *xl)
{
    return xl && (xl->spv == 0.0f || xl->gsw == 0.0f);
}
/* <<xlora */
#endif /* MOLORA_NO_FILES */
/* <<files */

/* >>alpha  AlphaLoRA (compiled out by MOLORA_NO_ALPHA) ---------------------------------------
   AlphaLoRA, in four parts (tags): alpha_solvers (eigenvalues of W^T W through LAPACK), alpha_fit
   (the power-law fits: AlphaLoRA's fix_finger, WeightWatcher's WWFit of 0.7.5.5 and 0.7.7),
   alpha_plan (the mean per block, the allocation exponential_scaling, the plan into layer
   descriptors) and alpha_patterns (which tensors form block L). Maths: docs/maths.md. */
#ifndef MOLORA_NO_ALPHA

/* >>alpha_solvers  eigenvalues of W^T W: solver choice, LAPACK scratch, Gram in double, the SVDs */
#ifndef MOLORA_NO_BLAS
#ifdef __cplusplus
extern "C" {
#endif
/* LAPACK's Fortran entry points (OpenBLAS exports them); the trailing size_t are the hidden
   lengths of the character arguments, as gfortran passes them. */
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w, double *work,
             const int *lwork, int *iwork, const int *liwork, int *info, size_t ljobz, size_t luplo);
void dsyevd_2stage_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info,
                    size_t ljobz, size_t luplo);
void ssyevd_2stage_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda, float *w,
                    float *work, const int *lwork, int *iwork, const int *liwork, int *info,
                    size_t ljobz, size_t luplo);
void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s,
             float *u, const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork, int *iwork,
             int *info, size_t ljobz);
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork, int *iwork,
             int *info, size_t ljobz);
#ifdef __cplusplus
}
#endif
#endif

#define MOLORA__ALPHA_PANEL 256   /* columns (or rows) of W converted to double per dsyrk update */

/* DEFAULT: both Gram solvers agree with a float64 SVD to rounding; the two-stage reduction to
   tridiagonal form (dsyevd_2stage) pays a fixed cost that only a large Gram earns back, so it
   takes over from m = 2048, where `make bench-alpha` put the crossover. */
MOLORA__PRIVATE molora_alpha_solver molora__alpha_solver(const molora_alpha_args *o, int rows, int cols)
{
    if (o->solver != MOLORA_ALPHA_SOLVER_DEFAULT) return o->solver;
    return (rows < cols ? rows : cols) >= 2048 ? MOLORA_ALPHA_SOLVER_GRAM64_2STAGE : MOLORA_ALPHA_SOLVER_GRAM64;
}

MOLORA__PRIVATE molora_result molora__alpha_check_args(const molora_alpha_args *o, const molora__logger *lg)
{
    if ((int)o->method < 0 || (int)o->method >= MOLORA_ALPHA_METHOD_COUNT)
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: unknown method %d", (int)o->method);
    if ((int)o->solver < 0 || (int)o->solver >= MOLORA_ALPHA_SOLVER_COUNT)
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: unknown solver %d", (int)o->solver);
    if (o->bins < 0)
        return molora__fail(lg, MOLORA_RESULT_INVALID_VALUE, "alpha: bins %d (must be >= 1, or 0 for 100)", o->bins);
    if (isnan(o->evals_thresh))
        return molora__fail(lg, MOLORA_RESULT_INVALID_VALUE, "alpha: evals_thresh is NaN");
    if (!o->memory.alloc != !o->memory.free)
        return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: memory hook needs both alloc and free");
    return MOLORA_RESULT_SUCCESS;
}

/* Scratch of one solver for a (rows, cols) matrix, in elements of each part. */
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

MOLORA__PRIVATE molora_result molora__alpha_layout(int rows, int cols, molora_alpha_solver solver, int f16,
                                                   molora__alpha_ws *ws)
{
    int m = rows < cols ? rows : cols, mx = rows < cols ? cols : rows, q1 = -1, info = 0, iq = 0, one = 1;
    size_t mm;
    memset(ws, 0, sizeof *ws);
    if (!molora__mul((size_t)m, (size_t)m, &mm)) return MOLORA_RESULT_SIZE_OVERFLOW;
    if (solver == MOLORA_ALPHA_SOLVER_GRAM64 || solver == MOLORA_ALPHA_SOLVER_GRAM64_2STAGE) {
        double dq = 0, dummy = 0;
        ws->elem = (int)sizeof(double);
        ws->a = mm;
        if (!molora__mul((size_t)m, (size_t)(mx < MOLORA__ALPHA_PANEL ? mx : MOLORA__ALPHA_PANEL), &ws->panel))
            return MOLORA_RESULT_SIZE_OVERFLOW;
        if (solver == MOLORA_ALPHA_SOLVER_GRAM64)
            dsyevd_("N", "L", &m, &dummy, &m, &dummy, &dq, &q1, &iq, &q1, &info, 1, 1);
        else
            dsyevd_2stage_("N", "L", &m, &dummy, &m, &dummy, &dq, &q1, &iq, &q1, &info, 1, 1);
        ws->lwork = molora__alpha_lwork(dq, 2 * m + 1);
        ws->liwork = iq > 1 ? iq : 1;
    } else if (solver == MOLORA_ALPHA_SOLVER_FAST) {
        float fq = 0, dummy = 0;
        ws->elem = (int)sizeof(float);
        ws->a = mm;
        ws->vals = (size_t)m;
        if (f16 && !molora__mul((size_t)rows, (size_t)cols, &ws->panel))   /* panel: the rounded W */
            return MOLORA_RESULT_SIZE_OVERFLOW;
        ssyevd_2stage_("N", "L", &m, &dummy, &m, &dummy, &fq, &q1, &iq, &q1, &info, 1, 1);
        ws->lwork = molora__alpha_lwork((double)fq, 2 * m + 1);
        ws->liwork = iq > 1 ? iq : 1;
    } else {   /* SGESDD, DGESDD on the column-major view W^T (cols, rows) */
        int minimum = 3 * m + (mx > 7 * m ? mx : 7 * m);
        if (!molora__mul((size_t)rows, (size_t)cols, &ws->a)) return MOLORA_RESULT_SIZE_OVERFLOW;
        if (solver == MOLORA_ALPHA_SOLVER_SGESDD) {
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

/* Bytes of the solver's scratch plus `extra` doubles, 64-byte aligned parts. */
MOLORA__PRIVATE int molora__alpha_bytes(const molora__alpha_ws *ws, size_t extra, size_t *bytes)
{
    *bytes = MOLORA__ALIGN;
    return molora__reserve(bytes, ws->a, (size_t)ws->elem) && molora__reserve(bytes, ws->panel, (size_t)ws->elem) &&
           molora__reserve(bytes, ws->work, (size_t)ws->elem) && molora__reserve(bytes, ws->vals, (size_t)ws->elem) &&
           molora__reserve(bytes, ws->iwork, sizeof(int)) && molora__reserve(bytes, extra, sizeof(double)) &&
           *bytes <= (size_t)PTRDIFF_MAX;
}

/* x rounded to the nearest float16 (ties to even) and back, as numpy's and torch's .half():
   11 significant bits down to 2^-14, steps of 2^-24 below (subnormals). Needs |x| < 65520
   (larger values become Inf; molora__alpha_prepare refuses them). */
MOLORA__PRIVATE float molora__f16_round(float x)
{
    float a = fabsf(x), r;
    int e;
    if (a < 6.103515625e-05f) r = nearbyintf(a * 16777216.0f) / 16777216.0f;
    else { frexpf(a, &e); r = ldexpf(nearbyintf(ldexpf(a, 11 - e)), e - 11); }
    return x < 0 ? -r : r;
}

MOLORA__PRIVATE double molora__alpha_w(const float *W, size_t i, int f16)
{
    return f16 ? (double)molora__f16_round(W[i]) : (double)W[i];
}

/* G (m, m), upper triangle row-major (= lower column-major) of W W^T (rows <= cols) or W^T W,
   accumulated in double from float32 panels of W (rounded to float16 if f16) converted to double. */
MOLORA__PRIVATE void molora__alpha_gram64(const float *W, int rows, int cols, int f16, double *G, double *P)
{
    int k0, k, i, j;
    if (rows <= cols) {
        for (k0 = 0; k0 < cols; k0 += k) {
            k = cols - k0 < MOLORA__ALPHA_PANEL ? cols - k0 : MOLORA__ALPHA_PANEL;
            for (i = 0; i < rows; i++)
                for (j = 0; j < k; j++)
                    P[(size_t)i * k + j] = molora__alpha_w(W, (size_t)i * cols + k0 + j, f16);
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, rows, k, 1.0, P, k, k0 ? 1.0 : 0.0, G, rows);
        }
    } else {
        for (k0 = 0; k0 < rows; k0 += k) {
            size_t n, q;
            k = rows - k0 < MOLORA__ALPHA_PANEL ? rows - k0 : MOLORA__ALPHA_PANEL;
            n = (size_t)k * cols;
            for (q = 0; q < n; q++) P[q] = molora__alpha_w(W, (size_t)k0 * cols + q, f16);
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, cols, k, 1.0, P, cols, k0 ? 1.0 : 0.0, G, cols);
        }
    }
}

/* evals (m) ascending, from scratch laid out by molora__alpha_layout. */
MOLORA__PRIVATE molora_result molora__alpha_run(const float *W, int rows, int cols, molora_alpha_solver solver,
                                                int f16, const molora__alpha_ws *ws, unsigned char *cur,
                                                double *evals, const molora__logger *lg)
{
    int m = rows < cols ? rows : cols, info = 0, one = 1, i;
    size_t n;
    void *a = molora__carve(&cur, ws->a, (size_t)ws->elem);
    void *panel = molora__carve(&cur, ws->panel, (size_t)ws->elem);
    void *work = molora__carve(&cur, ws->work, (size_t)ws->elem);
    float *vals = (float *)molora__carve(&cur, ws->vals, (size_t)ws->elem);
    int *iwork = (int *)molora__carve(&cur, ws->iwork, sizeof(int));
    switch (solver) {
    case MOLORA_ALPHA_SOLVER_GRAM64:
    case MOLORA_ALPHA_SOLVER_GRAM64_2STAGE:
        molora__alpha_gram64(W, rows, cols, f16, (double *)a, (double *)panel);
        if (solver == MOLORA_ALPHA_SOLVER_GRAM64)
            dsyevd_("N", "L", &m, (double *)a, &m, evals, (double *)work, &ws->lwork, iwork, &ws->liwork,
                    &info, 1, 1);
        else
            dsyevd_2stage_("N", "L", &m, (double *)a, &m, evals, (double *)work, &ws->lwork, iwork, &ws->liwork,
                           &info, 1, 1);
        break;
    case MOLORA_ALPHA_SOLVER_FAST:
        if (f16) {   /* panel holds the rounded copy of W */
            for (n = 0; n < ws->panel; n++) ((float *)panel)[n] = molora__f16_round(W[n]);
            W = (const float *)panel;
        }
        if (rows <= cols)
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, m, cols, 1.0f, W, cols, 0.0f, (float *)a, m);
        else
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, m, rows, 1.0f, W, cols, 0.0f, (float *)a, m);
        ssyevd_2stage_("N", "L", &m, (float *)a, &m, vals, (float *)work, &ws->lwork, iwork, &ws->liwork,
                       &info, 1, 1);
        for (i = 0; i < m; i++) evals[i] = (double)vals[i];
        break;
    case MOLORA_ALPHA_SOLVER_SGESDD: {
        float dummy = 0;
        memcpy(a, W, ws->a * sizeof(float));
        if (f16) for (n = 0; n < ws->a; n++) ((float *)a)[n] = molora__f16_round(((float *)a)[n]);
        sgesdd_("N", &cols, &rows, (float *)a, &cols, vals, &dummy, &one, &dummy, &one, (float *)work, &ws->lwork,
                iwork, &info, 1);
        for (i = 0; i < m; i++) evals[i] = (double)vals[m - 1 - i] * (double)vals[m - 1 - i];
        break;
    }
    default: {   /* DGESDD */
        double dummy = 0, *A = (double *)a;
        for (n = 0; n < ws->a; n++) A[n] = molora__alpha_w(W, n, f16);
        dgesdd_("N", &cols, &rows, A, &cols, evals, &dummy, &one, &dummy, &one, (double *)work, &ws->lwork,
                iwork, &info, 1);
        for (i = 0; i < m / 2; i++) { double t = evals[i]; evals[i] = evals[m - 1 - i]; evals[m - 1 - i] = t; }
        for (i = 0; i < m; i++) evals[i] *= evals[i];
        break;
    }
    }
    if (info != 0)
        return molora__fail(lg, MOLORA_RESULT_INVALID_VALUE, "alpha: LAPACK solver %d failed to converge (info %d)",
                            (int)solver, info);
    return MOLORA_RESULT_SUCCESS;
}
#endif /* MOLORA_NO_BLAS */

/* The checks shared by the functions that take a matrix: args, shape, finite weights, float16 range. */
MOLORA__PRIVATE molora_result molora__alpha_prepare(const float *W, int rows, int cols, const molora_alpha_args *o,
                                                    const molora__logger *lg)
{
    size_t n;
    molora_result r = molora__alpha_check_args(o, lg);
    if (r != MOLORA_RESULT_SUCCESS) return r;
    if (rows < 1 || cols < 1)
        return molora__fail(lg, MOLORA_RESULT_INVALID_SHAPE, "alpha: matrix (%d, %d) must have rows, cols >= 1",
                            rows, cols);
    if (!W) return molora__fail(lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: W is NULL");
    if (!molora__floats((size_t)rows, (size_t)cols, &n))
        return molora__fail(lg, MOLORA_RESULT_SIZE_OVERFLOW, "alpha: matrix (%d, %d) overflows", rows, cols);
#ifdef MOLORA_NO_BLAS
    return molora__fail(lg, MOLORA_RESULT_UNSUPPORTED, "alpha: eigenvalues need LAPACK (built with MOLORA_NO_BLAS)");
#else
    if (!molora__all_finite(W, n))
        return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "alpha: matrix (%d, %d) has NaN or Inf", rows, cols);
    if (o->round_to_f16) {
        size_t i;
        for (i = 0; i < n; i++)
            if (!(fabsf(W[i]) < 65520.0f))
                return molora__fail(lg, MOLORA_RESULT_NON_FINITE, "alpha: weight %zu (%g) overflows float16 "
                                    "(round_to_f16)", i, (double)W[i]);
    }
    return MOLORA_RESULT_SUCCESS;
#endif
}

MOLORA_API molora_result molora_alpha_workspace_size(int rows, int cols, const molora_alpha_args *args,
                                                     size_t *size)
{
    molora_alpha_args o;
    molora_result r;
    if (size) *size = 0;
    if (!size) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (args) o = *args; else memset(&o, 0, sizeof o);
    if ((r = molora__alpha_check_args(&o, NULL)) != MOLORA_RESULT_SUCCESS) return r;
    if (rows < 1 || cols < 1) return MOLORA_RESULT_INVALID_SHAPE;
#ifdef MOLORA_NO_BLAS
    return MOLORA_RESULT_UNSUPPORTED;
#else
    {
        molora__alpha_ws ws;
        size_t m = (size_t)(rows < cols ? rows : cols);
        r = molora__alpha_layout(rows, cols, molora__alpha_solver(&o, rows, cols), o.round_to_f16 != 0, &ws);
        if (r != MOLORA_RESULT_SUCCESS) return r;
        if (!molora__alpha_bytes(&ws, 2 * m + MOLORA__ALIGN / sizeof(double), size)) return MOLORA_RESULT_SIZE_OVERFLOW;
        return MOLORA_RESULT_SUCCESS;
    }
#endif
}

/* A call's arguments (the defaults for NULL) and its logger. */
MOLORA__PRIVATE void molora__alpha_begin(const molora_alpha_args *args, molora_alpha_args *o, molora__logger *lg)
{
    if (args) *o = *args;
    else memset(o, 0, sizeof *o);
    lg->fn = o->log;
    lg->user = o->log_user;
}
/* Scratch from args->workspace or the memory hook; *owned is what to free. */
MOLORA__PRIVATE void *molora__alpha_scratch(const molora_alpha_args *o, size_t bytes, void **owned)
{
    *owned = NULL;
    if (o->workspace) return o->workspace_size >= bytes ? o->workspace : NULL;
    *owned = molora__mem_alloc(&o->memory, bytes);
    return *owned;
}
MOLORA__PRIVATE void molora__alpha_release(const molora_alpha_args *o, void *owned)
{
    molora__mem_free(&o->memory, owned);
}

MOLORA__PRIVATE molora_result molora__alpha_scratch_fail(const molora_alpha_args *o, const molora__logger *lg,
                                                         size_t bytes)
{
    if (o->workspace)
        return molora__fail(lg, MOLORA_RESULT_WORKSPACE_TOO_SMALL, "alpha: workspace %zu bytes, need %zu",
                            o->workspace_size, bytes);
    return molora__fail(lg, MOLORA_RESULT_OUT_OF_MEMORY, "alpha: cannot allocate %zu bytes of scratch", bytes);
}

MOLORA_API molora_result molora_alpha_eigenvalues(const float *W, int rows, int cols, const molora_alpha_args *args,
                                                  double *evals)
{
    molora_alpha_args o;
    molora__logger lg;
    molora_result r;
    molora__alpha_begin(args, &o, &lg);
    if (!evals) return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: evals is NULL");
    if ((r = molora__alpha_prepare(W, rows, cols, &o, &lg)) != MOLORA_RESULT_SUCCESS) return r;
#ifdef MOLORA_NO_BLAS
    return MOLORA_RESULT_UNSUPPORTED;
#else
    {
        molora__alpha_ws ws;
        size_t bytes;
        void *owned, *p;
        molora_alpha_solver solver = molora__alpha_solver(&o, rows, cols);
        if ((r = molora__alpha_layout(rows, cols, solver, o.round_to_f16 != 0, &ws)) != MOLORA_RESULT_SUCCESS ||
            !molora__alpha_bytes(&ws, 0, &bytes))
            return molora__fail(&lg, MOLORA_RESULT_SIZE_OVERFLOW, "alpha: scratch for (%d, %d) overflows", rows, cols);
        if (!(p = molora__alpha_scratch(&o, bytes, &owned))) return molora__alpha_scratch_fail(&o, &lg, bytes);
        r = molora__alpha_run(W, rows, cols, solver, o.round_to_f16 != 0, &ws, molora__align_up(p), evals, &lg);
        molora__alpha_release(&o, owned);
        return r;
    }
#endif
}
/* <<alpha_solvers */

/* >>alpha_fit  the power-law fit of a spectrum: MLE alpha and KS distance over candidate xmin */
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

/* fix_finger's window of candidate xmin indices [*lo_i, *hi_i) in lam (N, ascending, all > 0):
   the histogram of log10 lam over [min, max] in `bins` bins (torch.histc), its first peak bin,
   that bin's lower edge xmin2; candidates are lam in [log10(0.95 xmin2), 1.5 xmin2]. */
MOLORA__PRIVATE void molora__alpha_fix_finger_window(const double *lam, int N, int bins, int *lo_i, int *hi_i)
{
    int i, ih = 0, cur = -1, cnt = 0, best_cnt = 0, lo_k = 0, hi_k;
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
    while (lo_k < N - 1 && lam[lo_k] < lo) lo_k++;
    hi_k = lo_k;
    while (hi_k < N - 1 && !(lam[hi_k] > hi)) hi_k++;
    *lo_i = lo_k;
    *hi_i = hi_k;
}

/* The chosen fit: the tail lam[best..N-1] with exponent a and KS distance D. */
MOLORA__PRIVATE void molora__alpha_fit_store(const double *lam, int N, int best, double a, double D,
                                             molora_alpha_fit *fit)
{
    fit->alpha = a;
    fit->ks = D;
    fit->xmin = lam[best];
    fit->n_tail = N - best;
    fit->sigma = (a - 1.0) / sqrt((double)(N - best));
}

/* The fit of lam (N, ascending, all > 0) with lg = ln lam as scratch: WW tries every xmin but the
   largest, fix_finger those in its window. */
MOLORA__PRIVATE void molora__alpha_fit_sorted(const double *lam, int N, double *lg, const molora_alpha_args *o,
                                              molora_alpha_fit *fit)
{
    int i, lo_i = 0, hi_i = N - 1, best = -1;
    double S = 0.0, best_D = 2.0, best_a = 0.0;
    for (i = 0; i < N; i++) lg[i] = log(lam[i]);
    if (o->method == MOLORA_ALPHA_FIX_FINGER)
        molora__alpha_fix_finger_window(lam, N, o->bins ? o->bins : 100, &lo_i, &hi_i);
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
    if (best < 0 || (best_D >= 1.0 && lo_i > 0)) {
        best = 0; best_a = 0.0; best_D = 1.0;
        fit->flags |= MOLORA_ALPHA_FLAG_NO_CANDIDATE;
    }
    if (isinf(best_a)) fit->flags |= MOLORA_ALPHA_FLAG_EQUAL_TAIL;
    molora__alpha_fit_store(lam, N, best, best_a, best_D, fit);
}

/* WeightWatcher 0.7.7 below 20 eigenvalues: WWFit.fit_powerlaw_smallN fills alphas / Ds for tails
   of n >= 8 values with s = sum ln(lam/xmin) > 1e-12 (alpha = 1 + (n-1)/s), the whole spectrum when
   none qualifies; WWFit.__init__ then takes the first argmin of Ds (its J objective only decides
   whether that fallback runs). Unvisited slots hold alpha 0, D 1. lg = ln lam, filled. */
#define MOLORA__ALPHA_SMALL_N 20   /* weightwatcher WW_powerlaw.SMALL_N_CUTOFF */
#define MOLORA__ALPHA_K_MIN   8    /* fit_powerlaw_smallN(k_min=8)              */
MOLORA__PRIVATE double molora__alpha_small_tail(const double *lg, int n, double S, double *a)
{
    double s = S - (double)n * lg[0];   /* sum_j ln(lam_j / xmin) */
    if (s <= 1e-12) return 2.0;         /* degenerate tail: skipped */
    *a = 1.0 + ((double)n - 1.0) / s;
    return molora__alpha_ks(lg, n, *a);
}

MOLORA__PRIVATE void molora__alpha_fit_small(const double *lam, int N, const double *lg, molora_alpha_fit *fit)
{
    int i, best = 0;
    double S = 0.0, best_D = 1.0, best_a = 0.0, a, D;
    for (i = N - 1; i >= 0; i--) {
        S += lg[i];
        if (i > N - MOLORA__ALPHA_K_MIN) continue;
        D = molora__alpha_small_tail(lg + i, N - i, S, &a);
        if (D <= best_D && D < 2.0) { best_D = D; best_a = a; best = i; }   /* first index wins ties */
    }
    if (best_D >= 1.0) {   /* no tail qualified: the whole spectrum, or alpha 0 if even that is degenerate */
        best = 0; best_a = 0.0; best_D = 1.0;
        D = molora__alpha_small_tail(lg, N, S, &a);
        if (D < 2.0) { best_D = D; best_a = a; } else fit->flags |= MOLORA_ALPHA_FLAG_NO_CANDIDATE;
    }
    fit->flags |= MOLORA_ALPHA_FLAG_SMALL_N;
    molora__alpha_fit_store(lam, N, best, best_a, best_D, fit);
}

/* Sorts, filters and fits evals (n) with lg (n) as scratch. */
MOLORA__PRIVATE molora_result molora__alpha_fit(double *evals, int n, double *lg, const molora_alpha_args *o,
                                                const molora__logger *lg_, molora_alpha_fit *fit)
{
    int i, k = 0;
    double thresh = o->evals_thresh;
    memset(fit, 0, sizeof *fit);
    fit->n_eigs = n;
    for (i = 0; i < n; i++)
        if (!isfinite(evals[i]))
            return molora__fail(lg_, MOLORA_RESULT_NON_FINITE, "alpha: eigenvalue %d is NaN or Inf", i);
    for (i = 1; i < n && evals[i - 1] <= evals[i]; i++) {}
    if (i < n) qsort(evals, (size_t)n, sizeof *evals, molora__alpha_cmp);
    if (n > 0) { fit->lambda_min = evals[0]; fit->lambda_max = evals[n - 1]; }
    if (o->method == MOLORA_ALPHA_WW_077 && n < MOLORA__ALPHA_K_MIN)
        return molora__fail(lg_, MOLORA_RESULT_DEGENERATE_SPECTRUM, "alpha: %d eigenvalues; WeightWatcher 0.7.7 needs "
                            "min_evals = %d", n, MOLORA__ALPHA_K_MIN);
    if (thresh == 0.0) thresh = o->method == MOLORA_ALPHA_FIX_FINGER ? -1.0 : 1e-5;
    if (thresh >= 0.0) while (k < n && !(evals[k] > thresh)) k++;
    fit->n_used = n - k;
    if (n - k < 2)
        return molora__fail(lg_, MOLORA_RESULT_DEGENERATE_SPECTRUM, "alpha: %d of %d eigenvalues above %g; "
                            "a fit needs 2 (zero matrix?)", n - k, n, thresh);
    if (!(evals[k] > 0.0))
        return molora__fail(lg_, MOLORA_RESULT_DEGENERATE_SPECTRUM,
                            "alpha: eigenvalue %g <= 0 (rank-deficient matrix); "
                            "set evals_thresh (upstream filter_zeros uses 1e-4)", evals[k]);
    if (o->method == MOLORA_ALPHA_WW_077 && n - k < MOLORA__ALPHA_SMALL_N) {
        for (i = k; i < n; i++) lg[i - k] = log(evals[i]);
        molora__alpha_fit_small(evals + k, n - k, lg, fit);
    } else
        molora__alpha_fit_sorted(evals + k, n - k, lg, o, fit);
    return MOLORA_RESULT_SUCCESS;
}

MOLORA_API molora_result molora_alpha_fit_spectrum(double *evals, int n, const molora_alpha_args *args,
                                                   molora_alpha_fit *fit)
{
    molora_alpha_args o;
    molora__logger lg;
    molora_result r;
    size_t bytes = MOLORA__ALIGN;
    void *owned, *p;
    molora__alpha_begin(args, &o, &lg);
    if (!fit) return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: fit is NULL");
    memset(fit, 0, sizeof *fit);
    if ((r = molora__alpha_check_args(&o, &lg)) != MOLORA_RESULT_SUCCESS) return r;
    if (n < 0 || (n > 0 && !evals))
        return molora__fail(&lg, MOLORA_RESULT_INVALID_ARGUMENT, "alpha: %d eigenvalues at %p", n, (void *)evals);
    if (!molora__reserve(&bytes, (size_t)n, sizeof(double)))
        return molora__fail(&lg, MOLORA_RESULT_SIZE_OVERFLOW, "alpha: %d eigenvalues overflow", n);
    if (!(p = molora__alpha_scratch(&o, bytes, &owned))) return molora__alpha_scratch_fail(&o, &lg, bytes);
    r = molora__alpha_fit(evals, n, (double *)molora__align_up(p), &o, &lg, fit);
    molora__alpha_release(&o, owned);
    return r;
}

MOLORA_API molora_result molora_alpha_matrix(const float *W, int rows, int cols, const molora_alpha_args *args,
                                             molora_alpha_fit *fit)
{
    molora_alpha_args o;
    molora__logger lg;
    molora_result r;
    molora__alpha_begin(args, &o, &lg);
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
        molora_alpha_solver solver = molora__alpha_solver(&o, rows, cols);
        if ((r = molora__alpha_layout(rows, cols, solver, o.round_to_f16 != 0, &ws)) != MOLORA_RESULT_SUCCESS ||
            !molora__alpha_bytes(&ws, 2 * m + MOLORA__ALIGN / sizeof(double), &bytes))
            return molora__fail(&lg, MOLORA_RESULT_SIZE_OVERFLOW, "alpha: scratch for (%d, %d) overflows", rows, cols);
        if (!(p = molora__alpha_scratch(&o, bytes, &owned))) return molora__alpha_scratch_fail(&o, &lg, bytes);
        cur = molora__align_up(p);
        evals = (double *)molora__carve(&cur, m, sizeof(double));
        lgv = (double *)molora__carve(&cur, m, sizeof(double));
        r = molora__alpha_run(W, rows, cols, solver, o.round_to_f16 != 0, &ws, cur, evals, &lg);
        if (r == MOLORA_RESULT_SUCCESS) r = molora__alpha_fit(evals, (int)m, lgv, &o, &lg, fit);
        fit->n_eigs = (int)m;
        molora__alpha_release(&o, owned);
        return r;
    }
#endif
}
/* <<alpha_fit */

/* >>alpha_plan  the alpha of each block, AlphaLoRA's expert allocation, the plan into layer descriptors */
MOLORA_API molora_result molora_alpha_block_mean(const double *matrix_alpha, const int *matrix_block, int n_matrices,
                                                 int n_blocks, double *block_alpha)
{
    int i, b;
    if (!block_alpha || n_matrices < 0 || n_blocks < 0 || (n_matrices > 0 && !matrix_alpha))
        return MOLORA_RESULT_INVALID_ARGUMENT;
    if (!matrix_block && n_matrices != n_blocks) return MOLORA_RESULT_INVALID_SHAPE;
    for (b = 0; b < n_blocks; b++) {
        double s = 0.0;
        int c = 0;
        for (i = 0; i < n_matrices; i++) {
            int bi = matrix_block ? matrix_block[i] : i;
            if (bi < 0 || bi >= n_blocks) return MOLORA_RESULT_INVALID_LAYER;
            if (bi != b) continue;
            if (!isfinite(matrix_alpha[i])) return MOLORA_RESULT_NON_FINITE;
            s += matrix_alpha[i];
            c++;
        }
        if (c == 0) return MOLORA_RESULT_INVALID_LAYER;
        block_alpha[b] = s / c;
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

MOLORA_API molora_result molora_alpha_allocate(const double *block_alpha, int n_blocks, int budget, double beta,
                                               int *experts, int *top_k)
{
    int b, i, sum = 0;
    double S;
    molora_result r = MOLORA_RESULT_SUCCESS;
    if (!block_alpha || !experts) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (n_blocks < 1) return MOLORA_RESULT_INVALID_SHAPE;
    if (budget < 0 || !isfinite(beta)) return MOLORA_RESULT_INVALID_VALUE;
    for (b = 0; b < n_blocks; b++) {
        if (!isfinite(block_alpha[b])) return MOLORA_RESULT_NON_FINITE;
        if (!(block_alpha[b] > 0.0)) return MOLORA_RESULT_INVALID_VALUE;
        if (!isfinite(pow(block_alpha[b], beta))) return MOLORA_RESULT_NON_FINITE;
    }
    S = molora__alpha_pow_sum(block_alpha, n_blocks, beta);   /* sum of s_b = alpha_b^beta */
    if (!isfinite(S) || !(S > 0.0)) return MOLORA_RESULT_NON_FINITE;
    for (b = 0; b < n_blocks; b++) {   /* np.round((s / S) * T): half to even */
        experts[b] = (int)nearbyint(pow(block_alpha[b], beta) / S * (double)budget);
        sum += experts[b];
    }
    while (sum != budget) {   /* one at a time: unnormalised s against the counts, first index */
        int add = budget > sum, pick = 0;
        double best = pow(block_alpha[0], beta) - (double)experts[0];
        for (i = 1; i < n_blocks; i++) {
            double v = pow(block_alpha[i], beta) - (double)experts[i];
            if (add ? v < best : v > best) { best = v; pick = i; }
        }
        experts[pick] += add ? 1 : -1;
        sum += add ? 1 : -1;
    }
    for (b = 0; b < n_blocks; b++) {
        if (experts[b] < 0) r = MOLORA_RESULT_NEGATIVE_EXPERTS;
        if (top_k) top_k[b] = experts[b] > 1 ? 2 : 1;
    }
    return r;
}

MOLORA_API molora_result molora_alpha_plan_apply(const int *experts, const int *top_k, int n_blocks,
                                                 const int *block_of, molora_layer_desc *descs, int n_descs)
{
    int i, b;
    if (!experts || n_blocks < 0 || n_descs < 0 || (n_descs > 0 && !descs)) return MOLORA_RESULT_INVALID_ARGUMENT;
    if (!block_of && n_descs > n_blocks) return MOLORA_RESULT_INVALID_SHAPE;
    for (i = 0; i < n_descs; i++) {   /* validate everything before writing anything */
        b = block_of ? block_of[i] : i;
        if (b < 0 || b >= n_blocks) return MOLORA_RESULT_INVALID_LAYER;
        if (experts[b] < 0) return MOLORA_RESULT_NEGATIVE_EXPERTS;
        if (top_k && experts[b] > 0 && (top_k[b] < 1 || top_k[b] > experts[b])) return MOLORA_RESULT_INVALID_TOP_K;
    }
    for (i = 0; i < n_descs; i++) {
        b = block_of ? block_of[i] : i;
        descs[i].n_experts = experts[b];
        if (experts[b] == 0) { descs[i].top_k = 0; continue; }
        descs[i].routing = MOLORA_ROUTING_TOPK;
        descs[i].top_k = top_k ? top_k[b] : (experts[b] > 1 ? 2 : 1);
    }
    return MOLORA_RESULT_SUCCESS;
}

/* <<alpha_plan */

/* >>alpha_patterns  which tensors form block L: name patterns with {L} (KMP), the model families */
MOLORA_API molora_result molora_alpha_pattern_check(const char *pattern)
{
    const char *L = pattern ? strstr(pattern, "{L}") : NULL;
    size_t n = pattern ? strlen(pattern) : 0;
    if (!L || strstr(L + 3, "{L}") || n > MOLORA_ALPHA_PATTERN_MAX) return MOLORA_RESULT_INVALID_ARGUMENT;
    return MOLORA_RESULT_SUCCESS;
}

/* KMP failure function f (n) of p (n >= 1). */
MOLORA__PRIVATE void molora__kmp_init(const char *p, int n, short *f)
{
    int i, k = 0;
    f[0] = 0;
    for (i = 1; i < n; i++) {
        while (k && p[i] != p[k]) k = f[k - 1];
        if (p[i] == p[k]) k++;
        f[i] = (short)k;
    }
}

/* Characters of p (n) matched after reading c in state k; n means an occurrence ends at c. */
MOLORA__PRIVATE int molora__kmp_step(const char *p, int n, const short *f, int k, char c)
{
    if (k == n) k = f[n - 1];
    while (k && c != p[k]) k = f[k - 1];
    return c == p[k] ? k + 1 : 0;
}

#define MOLORA__DIGIT(c) ((c) >= '0' && (c) <= '9')

/* One scan of name: P1 (the part before {L}) streamed through KMP; at each end e of an
   occurrence that starts a component and is followed by the start of a digit run [e, q), the
   second KMP stream (P2, the part after {L}) is advanced to q + |P2| and tells whether P2 starts
   at q. Runs start at distinct, increasing e, so both streams only move forward. */
MOLORA_API int molora_alpha_block_index(const char *name, const char *pattern)
{
    short f1[MOLORA_ALPHA_PATTERN_MAX], f2[MOLORA_ALPHA_PATTERN_MAX];
    const char *p1 = pattern, *p2;
    int l1, l2, k1 = 0, k2 = 0;
    size_t n, e, q, pos2 = 0;
    if (!name || molora_alpha_pattern_check(pattern) != MOLORA_RESULT_SUCCESS) return -1;
    p2 = strstr(pattern, "{L}") + 3;
    l1 = (int)(p2 - 3 - p1); l2 = (int)strlen(p2);
    if (l1) molora__kmp_init(p1, l1, f1);
    if (l2) molora__kmp_init(p2, l2, f2);
    n = strlen(name);
    for (e = 0; e < n; e++) {
        long v = 0;
        if (e > 0 && l1) k1 = molora__kmp_step(p1, l1, f1, k1, name[e - 1]);
        if ((l1 && k1 != l1) || !MOLORA__DIGIT(name[e]) || (e > 0 && MOLORA__DIGIT(name[e - 1]))) continue;
        if (e > (size_t)l1 && name[e - l1 - 1] != '.') continue;        /* P1 must start a component */
        for (q = e; q < n && MOLORA__DIGIT(name[q]); q++)
            if (v < 1000000) v = v * 10 + (name[q] - '0');
        if (l2) {
            if (n - q < (size_t)l2) return -1;                          /* later runs end later still */
            for (; pos2 < q + (size_t)l2; pos2++) k2 = molora__kmp_step(p2, l2, f2, k2, name[pos2]);
            if (k2 != l2) continue;
        }
        if (v < 1000000) return (int)v;
    }
    return -1;
}

static const molora_alpha_family molora__alpha_family_table[] = {
    { "t5",    { "encoder.block.{L}.", "decoder.block.{L}." } },
    { "bart",  { "encoder.layers.{L}.", "decoder.layers.{L}." } },
    { "bert",  { "encoder.layer.{L}.", NULL } },
    { "llama", { "layers.{L}.", NULL } },
    { "gpt2",  { "h.{L}.", NULL } },
};

MOLORA_API const molora_alpha_family *molora_alpha_families(int *count)
{
    if (count) *count = (int)(sizeof molora__alpha_family_table / sizeof molora__alpha_family_table[0]);
    return molora__alpha_family_table;
}

/* Names (n) matching set `set` of family f. */
MOLORA__PRIVATE size_t molora__alpha_family_hits(const molora_alpha_family *f, int set, const char *const *names,
                                                 size_t n)
{
    size_t i, hits = 0;
    for (i = 0; i < n; i++) hits += names[i] && molora_alpha_block_index(names[i], f->sets[set]) >= 0;
    return hits;
}

MOLORA_API int molora_alpha_family_detect(const char *const *names, size_t n)
{
    int f, nf, best = -1, best_sets = 0;
    size_t best_hits = 0;
    const molora_alpha_family *t = molora_alpha_families(&nf);
    for (f = 0; f < nf && names; f++) {
        size_t h0 = molora__alpha_family_hits(&t[f], 0, names, n), h1 = 0;
        int sets = t[f].sets[1] ? 2 : 1;
        if (sets == 2 && (h1 = molora__alpha_family_hits(&t[f], 1, names, n)) == 0) continue;   /* a stack missing */
        if (h0 == 0 || h0 + h1 < best_hits || (h0 + h1 == best_hits && sets <= best_sets)) continue;
        best = f; best_hits = h0 + h1; best_sets = sets;
    }
    return best;
}
/* <<alpha_patterns */

#endif /* MOLORA_NO_ALPHA */
/* <<alpha */

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

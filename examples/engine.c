/* engine.c: a small inference engine for a byte-level Llama-style model (RMSNorm, RoPE, SwiGLU)
   whose attention projections carry mixture-of-LoRA experts, run by molora.

   The engine owns the model: embedding, norms, attention with a KV cache, MLP and every base
   matmul (OpenBLAS). molora reads the files (base weights through its safetensors reader, the
   adapter through its adapter loader) and adds the experts' delta to the engine's base output of
   each adapted projection (MOLORA_OUTPUT_DELTA). Prefill hands molora every token of the window
   at once; generation hands it one token per step (molora's decode path). When the context is
   full (seq_len bytes) generation keeps the last half and prefills it again.

   X-LoRA (-x) runs two passes over the same tokens, each with its own KV cache: pass 1 with every
   weight equal to scaling_pass_value (at 0 it is the base model, and the experts are skipped), then
   molora_xlora_scalings on pass 1's final hidden states (after the norm) gives each module its
   per-token weights (T, N), FIXED routing in pass 2, whose logits are the output. PEFT recomputes
   both passes over the whole sequence at every generated token; both are causal, so the two caches
   give the same logits.

   Words: a block is one decoder layer of the model (L0, L1, ... in the output); a molora layer is
   one adapted projection of a block (molora's layer index, -1 for a projection not adapted).

   Build:  cc -O2 -I. examples/engine.c -o build/engine -lopenblas -lm
   Usage:  engine MODEL.safetensors [-a ADAPTER_DIR | -x XLORA_DIR [-t] [-m]] COMMAND
     -a DIR                      load a PEFT / AdaMoLE / MoLA / composed-MoLE / composed-Arrow
                                 adapter from DIR
     -x DIR                      load an X-LoRA adapter from DIR (PEFT's or the xlora package's
                                 layout): every forward is two passes, the scaling pass (skipped
                                 when it is the base model, scaling_pass_value 0), the classifier on
                                 its final hidden states, then the real pass with each module's
                                 per-token weights; each pass has its own KV cache
     -t                          with -e: also print the routing table (mean routing weight of
                                 every expert of every adapted module, per file)
     -p PARITY.safetensors KEY   compare the logits of the prompts in PARITY with its tensor KEY
                                 (exit 1 if max |diff| > 1e-4)
     -e FILE...                  bits per byte on each file, for the base alone and with the
                                 adapter, prefill tokens/s of both, active experts per block
     -r FILE...                  routing map: each adapted module's top expert for the first 96 bytes
     -R FILE...                  routing map of every byte (windows of seq_len bytes, as -e): the
                                 expert with the largest weight summed over the modules
     -g PROMPT [-n N] [-s SEED]  generate N bytes after PROMPT (temperature 0.8 sampling), then
                                 time the same generation without the adapter */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime */
#define MOLORA_IMPLEMENTATION
#include "molora.h"

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define NPROJ 4
static const char *proj_name[NPROJ] = { "q_proj", "k_proj", "v_proj", "o_proj" };

typedef struct {                        /* one decoder block of the base model */
    const float *attn_norm, *proj[NPROJ], *mlp_norm, *gate, *up, *down;
    int layer[NPROJ];                   /* molora layer of each projection, -1 = not adapted */
} Block;

typedef struct {
    int vocab, dim, n_blocks, n_heads, hidden, seq_len;
    float rope_theta, norm_eps;
    const float *embed, *norm, *lm_head;
    Block *blocks;
    molora_safetensors *st;
    /* adapter (all NULL / 0 without one) */
    molora_adapter *adapter;            /* owned (-a); NULL with -x */
    const molora_adapter *view;         /* the adapter in use: e->adapter, or the X-LoRA's */
    molora_model *model;
    int n_layers;                       /* molora layers (adapted projections) */
    void *ws; size_t ws_size;
    int use_adapter;                    /* 0: run the base alone even when an adapter is loaded */
    float *route;                       /* (seq_len, max experts): the weights molora applied */
    int max_experts;
    double *active_sum;                 /* (n_layers): sum over tokens of the active expert count */
    double *weight_sum;                 /* (n_layers, max_experts): sum over tokens of each weight */
    long routed_tokens;                 /* tokens that went through every molora layer */
    unsigned char *winner;              /* (n_layers, seq_len): each token's top expert, last forward */
    double *token_weight;               /* (seq_len, max_experts): weights summed over the layers */
    /* X-LoRA (-x; all NULL / 0 without): pass 1 and 2 of each forward, each with its KV cache */
    molora_xlora *xl;
    int xpass;                          /* 1: the scaling pass, 2: the real pass, 0: no X-LoRA */
    int pass1_base;                     /* pass 1 is the base model: no expert work at all */
    float *pass1_w;                     /* (L, N): pass 1's weights, the same for every token */
    float *scal;                        /* (seq_len, L, N): molora_xlora_scalings of pass 1 */
    float *wtok;                        /* (seq_len, N): one module's rows of scal */
    void *xws; size_t xws_size;
    float *kc1, *vc1, *kc2, *vc2;       /* the caches of pass 1 and pass 2 */
    /* activations (seq_len rows) and the KV cache (n_blocks, seq_len, dim) */
    float *x, *h, *q, *att, *o, *g, *u, *logits;
    float *kc, *vc;
} Engine;

typedef struct {            /* what -e found on one file */
    const char *name;
    double bpb, bpb_base, tps, tps_base;
    double *active_sum, *weight_sum;    /* copies of the engine's routing statistics */
    long tokens;
} FileStats;

/* the one stderr line, then exit 1 */
static void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "engine: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

/* the one line for a library error: what failed and the result's name */
static void die_lib(const char *what, molora_result r)
{
    die("%s: %s", what, molora_result_string(r));
}

static const float *tensor(Engine *e, const char *name, uint64_t rows, uint64_t cols)
{
    size_t i;
    molora_tensor_info info;
    const float *p;
    molora_result r;
    if ((r = molora_safetensors_find(e->st, name, &i))) die_lib(name, r);
    molora_safetensors_tensor_info(e->st, i, &info);
    if (info.n_elements != rows * cols) die("%s: wrong size", name);
    if ((r = molora_safetensors_tensor_f32(e->st, i, &p))) die_lib(name, r);
    return p;
}

static const char *meta(Engine *e, const char *key)
{
    const char *v = molora_safetensors_find_metadata(e->st, key);
    if (!v) die("base model has no metadata '%s'", key);
    return v;
}

/* a config integer in [lo, hi]; anything else (garbage, overflow) is an error */
static int meta_int(Engine *e, const char *key, long lo, long hi)
{
    const char *v = meta(e, key);
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi)
        die("base model metadata %s = '%s' is not an integer in [%ld, %ld]", key, v, lo, hi);
    return (int)x;
}

static float meta_float(Engine *e, const char *key)
{
    const char *v = meta(e, key);
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x > 0.0) || x > 1e30)
        die("base model metadata %s = '%s' is not a positive number", key, v);
    return (float)x;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) die("out of memory");
    return p;
}

/* the model's shape from the file's metadata (the config train_demo.py wrote) */
static void engine_read_config(Engine *e)
{
    e->vocab = meta_int(e, "vocab", 256, 256);        /* byte-level: one token per byte value */
    e->dim = meta_int(e, "dim", 2, 16384); e->n_blocks = meta_int(e, "n_layers", 1, 1024);
    e->n_heads = meta_int(e, "n_heads", 1, 1024); e->hidden = meta_int(e, "hidden", 1, 65536);
    e->seq_len = meta_int(e, "seq_len", 2, 65536);
    e->rope_theta = meta_float(e, "rope_theta");
    e->norm_eps = meta_float(e, "norm_eps");
    if (e->dim % e->n_heads || (e->dim / e->n_heads) % 2)
        die("base model: dim %d is not n_heads %d times an even head size", e->dim, e->n_heads);
}

/* the weights of block b (HF Llama names), none of its projections adapted yet */
static void engine_load_block(Engine *e, int b)
{
    Block *blk = &e->blocks[b];
    char name[160];
    int D = e->dim, H = e->hidden, j;
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", b);
    blk->attn_norm = tensor(e, name, 1, D);
    for (j = 0; j < NPROJ; j++) {
        snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.weight", b, proj_name[j]);
        blk->proj[j] = tensor(e, name, D, D);
        blk->layer[j] = -1;
    }
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", b);
    blk->mlp_norm = tensor(e, name, 1, D);
    snprintf(name, sizeof name, "model.layers.%d.mlp.gate_proj.weight", b);
    blk->gate = tensor(e, name, H, D);
    snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj.weight", b);
    blk->up = tensor(e, name, H, D);
    snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", b);
    blk->down = tensor(e, name, D, H);
}

/* -x: the X-LoRA adapter, its classifier's workspace, pass 1's weights and the second KV cache */
static void engine_open_xlora(Engine *e, const char *dir)
{
    molora_result r;
    int L, N, S = e->seq_len;
    if ((r = molora_xlora_open(dir, NULL, &e->xl))) die_lib(dir, r);
    if (molora_xlora_hidden_size(e->xl) != e->dim)
        die("%s: the classifier reads hidden states of %d, the model's are %d", dir, molora_xlora_hidden_size(e->xl),
            e->dim);
    e->view = molora_xlora_adapter(e->xl);
    L = molora_xlora_n_modules(e->xl); N = molora_xlora_n_adapters(e->xl);
    if ((r = molora_xlora_workspace_size(e->xl, S, &e->xws_size))) die_lib("X-LoRA workspace", r);
    e->xws = xcalloc(1, e->xws_size + 1);
    e->scal = xcalloc((size_t)S * L * N, sizeof(float));
    e->wtok = xcalloc((size_t)S * N, sizeof(float));
    e->pass1_w = xcalloc((size_t)L * N, sizeof(float));
    if ((r = molora_xlora_scaling_pass(e->xl, 1, e->pass1_w))) die_lib("X-LoRA scaling pass", r);
    e->pass1_base = molora_xlora_scaling_pass_is_base(e->xl);
}

/* the adapter (-a DIR) or the X-LoRA's (-x DIR) as a molora model, each projection's molora layer
   found by its module name, and the workspace and routing statistics of seq_len tokens */
static void engine_load_adapter(Engine *e, const char *adapter_dir, int xlora)
{
    molora_model_desc md;
    molora_result r;
    char name[160];
    int b, j, D = e->dim, S = e->seq_len;
    if (xlora) engine_open_xlora(e, adapter_dir);
    else if ((r = molora_adapter_open(adapter_dir, NULL, &e->adapter))) die_lib(adapter_dir, r);
    else e->view = e->adapter;
    if ((r = molora_adapter_model_desc(e->view, &md))) die_lib(adapter_dir, r);
    if ((r = molora_model_init(&md, &e->model))) die_lib(adapter_dir, r);
    e->n_layers = md.n_layers;
    for (j = 0; j < md.n_layers; j++) {
        if (md.layers[j].d_in != D || md.layers[j].d_out != D)
            die("%s: module %s does not fit the model", adapter_dir, molora_adapter_layer_name(e->view, j));
        if (md.layers[j].n_experts > e->max_experts) e->max_experts = md.layers[j].n_experts;
    }
    for (b = 0; b < e->n_blocks; b++)
        for (j = 0; j < NPROJ; j++) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.%s", b, proj_name[j]);
            e->blocks[b].layer[j] = molora_adapter_find_layer(e->view, name);
        }
    if ((r = molora_workspace_size(e->model, S, &e->ws_size))) die_lib("workspace", r);
    e->ws = xcalloc(1, e->ws_size + 1);
    e->route = xcalloc((size_t)S * (size_t)(e->max_experts + 1), sizeof(float));
    e->active_sum = xcalloc((size_t)e->n_layers, sizeof(double));
    e->weight_sum = xcalloc((size_t)e->n_layers * (size_t)e->max_experts, sizeof(double));
    e->use_adapter = 1;
    e->winner = xcalloc((size_t)e->n_layers * (size_t)S, 1);
    e->token_weight = xcalloc((size_t)S * (size_t)e->max_experts, sizeof(double));
}

static void engine_load(Engine *e, const char *model_path, const char *adapter_dir, int xlora)
{
    molora_result r;
    int b, S, D, H;
    memset(e, 0, sizeof *e);
    if ((r = molora_safetensors_open(model_path, NULL, &e->st))) die_lib(model_path, r);
    engine_read_config(e);
    D = e->dim; H = e->hidden; S = e->seq_len;
    e->embed = tensor(e, "model.embed_tokens.weight", e->vocab, D);
    e->norm = tensor(e, "model.norm.weight", 1, D);
    e->lm_head = tensor(e, "lm_head.weight", e->vocab, D);
    e->blocks = xcalloc((size_t)e->n_blocks, sizeof *e->blocks);
    for (b = 0; b < e->n_blocks; b++) engine_load_block(e, b);
    if (adapter_dir) engine_load_adapter(e, adapter_dir, xlora);
    e->x = xcalloc((size_t)S * D, sizeof(float)); e->h = xcalloc((size_t)S * D, sizeof(float));
    e->q = xcalloc((size_t)S * D, sizeof(float)); e->o = xcalloc((size_t)S * D, sizeof(float));
    e->kc = xcalloc((size_t)e->n_blocks * S * D, sizeof(float));
    e->vc = xcalloc((size_t)e->n_blocks * S * D, sizeof(float));
    if (e->xl) {                        /* pass 2 gets the first cache, pass 1 its own */
        e->kc2 = e->kc; e->vc2 = e->vc;
        e->kc1 = xcalloc((size_t)e->n_blocks * S * D, sizeof(float));
        e->vc1 = xcalloc((size_t)e->n_blocks * S * D, sizeof(float));
    }
    e->att = xcalloc((size_t)S, sizeof(float));
    e->g = xcalloc((size_t)S * H, sizeof(float)); e->u = xcalloc((size_t)S * H, sizeof(float));
    e->logits = xcalloc((size_t)S * e->vocab, sizeof(float));
}

static void engine_free(Engine *e)
{
    molora_model_free(e->model);
    if (e->xl) { e->kc = e->kc2; e->vc = e->vc2; }
    molora_adapter_free(e->adapter);
    molora_xlora_free(e->xl);
    free(e->xws); free(e->scal); free(e->wtok); free(e->pass1_w); free(e->kc1); free(e->vc1);
    molora_safetensors_free(e->st);
    free(e->blocks); free(e->ws); free(e->route); free(e->active_sum); free(e->weight_sum); free(e->winner);
    free(e->token_weight);
    free(e->x); free(e->h); free(e->q); free(e->kc); free(e->vc); free(e->o); free(e->att);
    free(e->g); free(e->u); free(e->logits);
}

/* Y (T, n) = X (T, k) W^T, W (n, k) as nn.Linear stores it */
static void matmul(float *Y, const float *X, const float *W, int T, int n, int k)
{
    if (T == 1)     /* decode: sgemm would repack all of W for one row */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, W, k, X, 1, 0.0f, Y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n, k, 1.0f, X, k, W, k, 0.0f, Y, n);
}

static void rmsnorm(float *out, const float *x, const float *w, int T, int d, float eps)
{
    int t, i;
    for (t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * d;
        float ss = 0.0f, s;
        for (i = 0; i < d; i++) ss += xt[i] * xt[i];
        s = 1.0f / sqrtf(ss / (float)d + eps);
        for (i = 0; i < d; i++) out[(size_t)t * d + i] = xt[i] * s * w[i];
    }
}

/* HF Llama rotate_half: dimension i pairs with i + hd/2 inside each head; row t is position pos+t */
static void rope(float *x, int T, int pos, int n_heads, int hd, float theta)
{
    int t, hh, i, half = hd / 2;
    for (t = 0; t < T; t++)
        for (i = 0; i < half; i++) {
            float inv = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
            float a = (float)(pos + t) * inv, c = cosf(a), s = sinf(a);
            for (hh = 0; hh < n_heads; hh++) {
                float *p = x + (size_t)t * n_heads * hd + (size_t)hh * hd;
                float x1 = p[i], x2 = p[i + half];
                p[i] = x1 * c - x2 * s;
                p[i + half] = x2 * c + x1 * s;
            }
        }
}

/* the routing weights molora applied to T tokens of molora layer `layer` (n experts each), added
   to the statistics of the demo's table and map */
static void record_routing(Engine *e, int layer, int n, int T)
{
    int t, i;
    for (t = 0; t < T; t++) {
        const float *w = e->route + (size_t)t * n;
        int best = 0, active = 0;
        for (i = 0; i < n; i++) {
            active += w[i] != 0.0f;
            if (w[i] > w[best]) best = i;
            e->weight_sum[(size_t)layer * e->max_experts + i] += w[i];
            e->token_weight[(size_t)t * e->max_experts + i] += w[i];
        }
        e->active_sum[layer] += active;
        e->winner[(size_t)layer * e->seq_len + t] = (unsigned char)best;
    }
}

/* One projection j of block b: out = in W0^T (the engine's matmul) + molora's expert delta when
   it is adapted. */
static void projection(Engine *e, int b, int j, float *out, const float *in, int T)
{
    int D = e->dim, layer = e->blocks[b].layer[j];
    matmul(out, in, e->blocks[b].proj[j], T, D, D);
    if (layer >= 0 && e->use_adapter && !(e->xpass == 1 && e->pass1_base)) {
        molora_forward_args a;
        molora_layer_info info;
        molora_result r;
        memset(&a, 0, sizeof a);
        molora_model_layer_info(e->model, layer, &info);
        a.layer = layer; a.n_tokens = T; a.x = in; a.y = out;
        a.output = MOLORA_OUTPUT_DELTA;
        a.weights_out = e->route;
        a.workspace = e->ws; a.workspace_size = e->ws_size;
        if (e->xpass == 1) a.weights = e->pass1_w + (size_t)layer * info.n_experts;   /* one row for all */
        if (e->xpass == 2) {            /* token t's row of module `layer` in the scalings (T, L, N) */
            int t, L = e->n_layers, N = info.n_experts;
            for (t = 0; t < T; t++)
                memcpy(e->wtok + (size_t)t * N, e->scal + ((size_t)t * L + layer) * N, N * sizeof(float));
            a.weights = e->wtok; a.weights_per_token = 1;
        }
        if ((r = molora_forward(e->model, &a))) die_lib("molora_forward", r);
        if (e->xpass != 1) record_routing(e, layer, info.n_experts, T);
    }
}

/* e->o (T, dim) = causal softmax attention of the queries e->q at positions pos..pos+T-1 over the
   keys and values kc, vc of positions 0..pos+T-1, head by head */
static void attention(Engine *e, const float *kc, const float *vc, int T, int pos)
{
    int D = e->dim, nh = e->n_heads, hd = D / nh, t, s, hh, i;
    float scale = 1.0f / sqrtf((float)hd);
    for (t = 0; t < T; t++)
        for (hh = 0; hh < nh; hh++) {
            const float *qt = e->q + (size_t)t * D + hh * hd;
            float mx = -INFINITY, sum = 0.0f, *ot = e->o + (size_t)t * D + hh * hd;
            for (s = 0; s <= pos + t; s++) {
                const float *ks = kc + (size_t)s * D + hh * hd;
                float dot = 0.0f;
                for (i = 0; i < hd; i++) dot += qt[i] * ks[i];
                e->att[s] = dot * scale;
                if (e->att[s] > mx) mx = e->att[s];
            }
            for (s = 0; s <= pos + t; s++) { e->att[s] = expf(e->att[s] - mx); sum += e->att[s]; }
            for (i = 0; i < hd; i++) ot[i] = 0.0f;
            for (s = 0; s <= pos + t; s++) {
                const float *vs = vc + (size_t)s * D + hh * hd;
                float w = e->att[s] / sum;
                for (i = 0; i < hd; i++) ot[i] += w * vs[i];
            }
        }
}

/* the SwiGLU MLP of block blk on e->h (T, dim), into e->h */
static void mlp(Engine *e, const Block *blk, int T)
{
    int D = e->dim, H = e->hidden, i;
    matmul(e->g, e->h, blk->gate, T, H, D);
    matmul(e->u, e->h, blk->up, T, H, D);
    for (i = 0; i < T * H; i++) e->g[i] = e->g[i] / (1.0f + expf(-e->g[i])) * e->u[i];
    matmul(e->h, e->g, blk->down, T, D, H);
}

/* logits (T, vocab) for the bytes tok[0..T-1] at positions pos..pos+T-1, attending to the KV cache
   of positions 0..pos-1 (which an earlier call filled); pos + T <= seq_len */
static void forward_pass(Engine *e, const unsigned char *tok, int T, int pos)
{
    int D = e->dim, nh = e->n_heads, hd = D / nh, S = e->seq_len, b, t, i;
    for (t = 0; t < T; t++) memcpy(e->x + (size_t)t * D, e->embed + (size_t)tok[t] * D, D * sizeof(float));
    for (b = 0; b < e->n_blocks; b++) {
        Block *blk = &e->blocks[b];
        float *kc = e->kc + (size_t)b * S * D, *vc = e->vc + (size_t)b * S * D;
        rmsnorm(e->h, e->x, blk->attn_norm, T, D, e->norm_eps);
        projection(e, b, 0, e->q, e->h, T);
        projection(e, b, 1, kc + (size_t)pos * D, e->h, T);
        projection(e, b, 2, vc + (size_t)pos * D, e->h, T);
        rope(e->q, T, pos, nh, hd, e->rope_theta);
        rope(kc + (size_t)pos * D, T, pos, nh, hd, e->rope_theta);
        attention(e, kc, vc, T, pos);
        projection(e, b, 3, e->h, e->o, T);
        for (i = 0; i < T * D; i++) e->x[i] += e->h[i];
        rmsnorm(e->h, e->x, blk->mlp_norm, T, D, e->norm_eps);
        mlp(e, blk, T);
        for (i = 0; i < T * D; i++) e->x[i] += e->h[i];
    }
    rmsnorm(e->h, e->x, e->norm, T, D, e->norm_eps);
    matmul(e->logits, e->h, e->lm_head, T, e->vocab, D);
    if (e->model && e->use_adapter && e->xpass != 1) e->routed_tokens += T;
}

/* One forward: logits (T, vocab) as forward_pass; with X-LoRA (and the adapter on) its two passes,
   each on its own KV cache, pass 1's final hidden states (e->h after the norm) giving pass 2's
   per-module weights. */
static void forward(Engine *e, const unsigned char *tok, int T, int pos)
{
    molora_result r;
    if (!e->xl || !e->use_adapter) {    /* the base alone runs on pass 2's cache */
        forward_pass(e, tok, T, pos);
        return;
    }
    e->kc = e->kc1; e->vc = e->vc1; e->xpass = 1;
    forward_pass(e, tok, T, pos);
    if ((r = molora_xlora_scalings(e->xl, T, e->h, e->scal, e->xws, e->xws_size))) die_lib("X-LoRA scalings", r);
    e->kc = e->kc2; e->vc = e->vc2; e->xpass = 2;
    forward_pass(e, tok, T, pos);
    e->xpass = 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static unsigned char *read_file(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    struct stat sb;
    if (!f) die("cannot open %s", path);
    /* a directory opens, and its size is no byte count: refused here, not as "out of memory" */
    if (fstat(fileno(f), &sb) || !S_ISREG(sb.st_mode)) die("%s is not a regular file", path);
    if (fseek(f, 0, SEEK_END) || (*n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) die("cannot read %s", path);
    buf = xcalloc((size_t)*n + 1, 1);
    if (fread(buf, 1, (size_t)*n, f) != (size_t)*n) die("cannot read %s", path);
    fclose(f);
    return buf;
}

/* *md = the larger of *md and max |a[i] - b[i]| over n values */
static void max_abs_diff(const float *a, const float *b, int n, double *md)
{
    int i;
    for (i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > *md) *md = d;
    }
}

/* -p: the engine's logits for the parity prompts against PyTorch's */
static int parity(Engine *e, const char *path, const char *key)
{
    molora_safetensors *st;
    molora_tensor_info pi, li;
    size_t ip, il;
    const float *ref;
    molora_result r;
    int n, T, j, ok;
    double md = 0.0, mdd = 0.0;
    if ((r = molora_safetensors_open(path, NULL, &st))) die_lib(path, r);
    if ((r = molora_safetensors_find(st, "prompts", &ip)) || (r = molora_safetensors_find(st, key, &il)))
        die_lib(key, r);
    molora_safetensors_tensor_info(st, ip, &pi);
    molora_safetensors_tensor_info(st, il, &li);
    n = (int)pi.shape[0]; T = (int)pi.shape[1];
    if (li.n_elements != (uint64_t)n * T * e->vocab || T > e->seq_len) {
        fprintf(stderr, "engine: %s: bad shapes\n", path);
        return 1;
    }
    if ((r = molora_safetensors_tensor_f32(st, il, &ref))) die_lib(key, r);
    for (j = 0; j < n; j++) {
        const unsigned char *tok = (const unsigned char *)pi.data + (size_t)j * T;
        const float *rj = ref + (size_t)j * T * e->vocab;
        int t;
        forward(e, tok, T, 0);                      /* prefill: the whole prompt at once */
        max_abs_diff(e->logits, rj, T * e->vocab, &md);
        for (t = 0; t < T; t++) {                   /* decode: one byte at a time, KV cache */
            forward(e, tok + t, 1, t);
            max_abs_diff(e->logits, rj + (size_t)t * e->vocab, e->vocab, &mdd);
        }
    }
    molora_safetensors_free(st);
    ok = md <= 1e-4 && mdd <= 1e-4;
    printf("parity %-16s %d prompts x %d bytes: max |engine - pytorch| prefill %.3g, decode %.3g %s\n", key, n, T,
           md, mdd, ok ? "(ok, <= 1e-4)" : "(FAIL, > 1e-4)");
    return ok ? 0 : 1;
}

/* bits per byte over non-overlapping windows of seq_len bytes (as tools/train_demo.py); *tps gets
   the prefill speed in tokens (bytes) per second */
static double bits_per_byte(Engine *e, const unsigned char *buf, long n, double *tps)
{
    long s, m = 0;
    int t, i;
    double nll = 0.0, t0 = now();
    for (s = 0; s + 1 < n; s += e->seq_len) {
        int T = (int)(n - s < e->seq_len ? n - s : e->seq_len);
        if (T < 2) break;
        forward(e, buf + s, T, 0);
        for (t = 0; t + 1 < T; t++) {
            const float *lg = e->logits + (size_t)t * e->vocab;
            float mx = lg[0];
            double z = 0.0;
            for (i = 1; i < e->vocab; i++) if (lg[i] > mx) mx = lg[i];
            for (i = 0; i < e->vocab; i++) z += exp((double)(lg[i] - mx));
            nll += log(z) + mx - lg[buf[s + t + 1]];
        }
        m += T - 1;
    }
    *tps = (double)n / (now() - t0);
    return m ? nll / (double)m / log(2.0) : 0.0;
}

/* the mean number of active experts per block, over its adapted projections ("-" for none) */
static void print_active_experts(const Engine *e, const FileStats *fs)
{
    int b, j;
    for (b = 0; b < e->n_blocks; b++) {
        double a = 0.0;
        int na = 0;
        for (j = 0; j < NPROJ; j++)
            if (e->blocks[b].layer[j] >= 0) { a += e->active_sum[e->blocks[b].layer[j]]; na++; }
        if (na) printf(" %4.2f", a / ((double)fs->tokens * na)); else printf("    -");
    }
}

/* -e: one file, the base alone and (with an adapter) with the experts; routing statistics kept */
static void evaluate(Engine *e, const char *path, FileStats *fs)
{
    long n;
    unsigned char *buf = read_file(path, &n);
    const char *base = strrchr(path, '/');
    memset(fs, 0, sizeof *fs);
    fs->name = base ? base + 1 : path;
    e->use_adapter = 0;
    fs->bpb_base = bits_per_byte(e, buf, n, &fs->tps_base);
    printf("%-11s %6ld %10.4f %10.0f", fs->name, n, fs->bpb_base, fs->tps_base);
    if (e->model) {
        size_t n_active = (size_t)e->n_layers, n_weights = (size_t)e->n_layers * e->max_experts;
        memset(e->active_sum, 0, n_active * sizeof(double));
        memset(e->weight_sum, 0, n_weights * sizeof(double));
        e->routed_tokens = 0;
        e->use_adapter = 1;
        fs->bpb = bits_per_byte(e, buf, n, &fs->tps);
        fs->tokens = e->routed_tokens;
        fs->active_sum = xcalloc(n_active, sizeof(double));
        fs->weight_sum = xcalloc(n_weights, sizeof(double));
        memcpy(fs->active_sum, e->active_sum, n_active * sizeof(double));
        memcpy(fs->weight_sum, e->weight_sum, n_weights * sizeof(double));
        printf(" %10.4f %+8.4f %10.0f   ", fs->bpb, fs->bpb - fs->bpb_base, fs->tps);
        print_active_experts(e, fs);
    }
    printf("\n");
    free(buf);
}

static void evaluate_header(Engine *e)
{
    int b;
    printf("%-11s %6s %10s %10s", "text", "bytes", "base b/B", "base tok/s");
    if (e->model) {
        printf(" %10s %8s %10s    active experts, layer", "+experts", "change", "tok/s");
        for (b = 0; b < e->n_blocks; b++) printf(" %d", b);
    }
    printf("\n");
}

/* -t: mean routing weight (%) of every expert of every adapted module, one column group per file;
   '*' marks each group's largest. With -m (expert i is the same expert in every module, as in a
   composed MoLE) a last row averages the modules. */
/* one column group: w[0..n-1] / denom as percentages, '*' after the largest, padded to col */
static void print_shares(const double *w, int n, double denom, int col)
{
    int i, best = 0;
    for (i = 1; i < n; i++) if (w[i] > w[best]) best = i;
    printf(" ");
    for (i = 0; i < n; i++) printf("%3.0f%c", 100.0 * w[i] / denom, i == best ? '*' : ' ');
    printf("%*s", col - 4 * n, "");
}

static void routing_table(Engine *e, FileStats *fs, int nf, int merged)
{
    int b, j, f, i, same = 1, col = 4 * e->max_experts + 2;
    molora_layer_info info, first;
    molora_model_layer_info(e->model, 0, &first);
    printf("mean routing weight per expert, %% of each token's total (* = the largest)\n%-13s", "module");
    for (f = 0; f < nf; f++) printf(" %-*s", col, fs[f].name);
    printf("\n");
    for (b = 0; b < e->n_blocks; b++)
        for (j = 0; j < NPROJ; j++) {
            int layer = e->blocks[b].layer[j];
            if (layer < 0) continue;
            molora_model_layer_info(e->model, layer, &info);
            same &= info.n_experts == first.n_experts;
            printf("L%d %-10s", b, proj_name[j]);
            for (f = 0; f < nf; f++)
                print_shares(fs[f].weight_sum + (size_t)layer * e->max_experts, info.n_experts, (double)fs[f].tokens,
                             col);
            printf("\n");
        }
    if (!merged || !same || e->n_layers < 2) return;
    printf("%-13s", "all modules");
    for (f = 0; f < nf; f++) {       /* expert i summed over the layers */
        double *w = xcalloc((size_t)first.n_experts, sizeof(double));
        for (j = 0; j < e->n_layers; j++)
            for (i = 0; i < first.n_experts; i++) w[i] += fs[f].weight_sum[(size_t)j * e->max_experts + i];
        print_shares(w, first.n_experts, (double)fs[f].tokens * e->n_layers, col);
        free(w);
    }
    printf("\n");
}

/* expert index as one character: 0-9, then a-z, then '+' for 36 and more */
static int expert_char(int i)
{
    return i < 10 ? '0' + i : i < 36 ? 'a' + i - 10 : '+';
}

/* the map's row of the expert with the largest weight summed over all layers, per byte (-m) */
static void route_map_merged(const Engine *e, int T)
{
    int t, i;
    printf("  %-12s|", "top expert");
    for (t = 0; t < T; t++) {
        const double *w = e->token_weight + (size_t)t * e->max_experts;
        int best = 0;
        for (i = 1; i < e->max_experts; i++) if (w[i] > w[best]) best = i;
        putchar(expert_char(best));
    }
    printf("|\n");
}

/* the map's rows of each molora layer's top expert per byte, named by block and projection */
static void route_map_layers(const Engine *e, int T)
{
    int t, j;
    for (j = 0; j < e->n_layers; j++) {
        const char *name = molora_adapter_layer_name(e->view, j);
        const char *p = strstr(name, "layers.");
        const char *q = strrchr(name, '.');
        printf("  L%d %-9s|", p ? atoi(p + 7) : 0, q ? q + 1 : name);
        for (t = 0; t < T; t++) putchar(expert_char(e->winner[(size_t)j * e->seq_len + t]));
        printf("|\n");
    }
}

/* -r: routing map of the first bytes of a file: one row per adapted module, the top expert of
   every byte (the expert with the largest routing weight) under the text itself; with -m one row,
   the expert with the largest weight summed over all modules */
static void route_map(Engine *e, const char *path, int width, int merged)
{
    long n;
    int T, t;
    unsigned char *buf = read_file(path, &n);
    const char *base = strrchr(path, '/');
    if (!e->model) die("-r needs an adapter (-a)");
    T = (int)(n < width ? n : width);
    if (T > e->seq_len) T = e->seq_len;
    memset(e->token_weight, 0, (size_t)e->seq_len * e->max_experts * sizeof(double));
    forward(e, buf, T, 0);
    printf("%-14s |", base ? base + 1 : path);
    for (t = 0; t < T; t++) putchar(buf[t] >= 32 && buf[t] < 127 ? buf[t] : ' ');
    printf("|\n");
    if (merged) route_map_merged(e, T);
    else route_map_layers(e, T);
    free(buf);
}

/* -R: the routing map of a whole file, evaluated in windows of seq_len bytes as -e does: per byte
   the expert with the largest weight summed over all modules, printed under the text in rows of
   `width` bytes */
static void route_map_file(Engine *e, const char *path, int width)
{
    long n, s, t;
    int T, i;
    unsigned char *buf, *top;
    if (!e->model) die("-R needs an adapter (-a or -x)");
    if (e->max_experts < 2) die("-R: the adapter has one expert per module, nothing is routed");
    buf = read_file(path, &n);
    if (n == 0) die("-R: %s is empty, no byte to map", path);
    top = xcalloc((size_t)n + 1, 1);
    for (s = 0; s < n; s += e->seq_len) {
        T = (int)(n - s < e->seq_len ? n - s : e->seq_len);
        memset(e->token_weight, 0, (size_t)e->seq_len * e->max_experts * sizeof(double));
        forward(e, buf + s, T, 0);
        for (t = 0; t < T; t++) {
            const double *w = e->token_weight + (size_t)t * e->max_experts;
            int best = 0;
            for (i = 1; i < e->max_experts; i++) if (w[i] > w[best]) best = i;
            top[s + t] = (unsigned char)expert_char(best);
        }
    }
    for (s = 0; s < n; s += width) {
        long m = n - s < width ? n - s : width;
        printf("%6ld |", s);
        for (t = 0; t < m; t++) putchar(buf[s + t] >= 32 && buf[s + t] < 127 ? buf[s + t] : ' ');
        printf("|\n       |");
        fwrite(top + s, 1, (size_t)m, stdout);
        printf("|\n");
    }
    free(top);
    free(buf);
}

static unsigned long long rng_state = 88172645463325252ULL;
static float rng_uniform(void)   /* xorshift64 */
{
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)(rng_state >> 40) / 16777216.0f;
}

/* a byte drawn from the softmax of the logits lg at temperature 0.8 */
static int sample(const Engine *e, const float *lg)
{
    float mx = lg[0], sum = 0.0f, r;
    int i, next = 0;
    for (i = 1; i < e->vocab; i++) if (lg[i] > mx) mx = lg[i];
    for (i = 0; i < e->vocab; i++) sum += expf((lg[i] - mx) / 0.8f);
    r = rng_uniform() * sum;
    for (i = 0; i < e->vocab; i++) { next = i; r -= expf((lg[i] - mx) / 0.8f); if (r <= 0.0f) break; }
    return next;
}

/* N bytes after PROMPT, temperature 0.8; prefill, then one token per forward through the KV cache.
   Returns the decode speed in bytes per second; prints the text unless quiet. */
static double generate(Engine *e, const char *prompt, int n, int quiet)
{
    int len = (int)strlen(prompt), S = e->seq_len, cap, t, pos, last;
    unsigned char *buf;
    double t0;
    if (len > S) { prompt += len - S; len = S; }     /* the context holds seq_len bytes */
    cap = len + n;
    buf = xcalloc((size_t)cap + 1, 1);
    memcpy(buf, prompt, (size_t)len);
    if (!quiet) fwrite(prompt, 1, (size_t)len, stdout);
    t0 = now();
    forward(e, buf, len, 0);
    pos = len; last = len - 1;
    for (t = len; t < cap; t++) {
        int next = sample(e, e->logits + (size_t)last * e->vocab);
        buf[t] = (unsigned char)next;
        if (!quiet) fputc(next, stdout);
        if (t + 1 == cap) break;
        if (pos == S) {                 /* context full: keep the last half, prefill it again */
            int keep = S / 2;
            forward(e, buf + t + 1 - keep, keep, 0);
            pos = keep; last = keep - 1;
        } else {
            forward(e, buf + t, 1, pos);
            pos++; last = 0;
        }
    }
    t0 = now() - t0;
    free(buf);
    return n / t0;
}

/* -e FILE...: the table, one row per file, then with -t the routing table */
static void run_evaluate(Engine *e, char **files, int nf, int table, int merged)
{
    int f;
    FileStats *fs = xcalloc((size_t)nf, sizeof *fs);
    evaluate_header(e);
    for (f = 0; f < nf; f++) evaluate(e, files[f], &fs[f]);
    if (table && e->model) routing_table(e, fs, nf, merged);
    for (f = 0; f < nf; f++) { free(fs[f].active_sum); free(fs[f].weight_sum); }
    free(fs);
}

/* -g PROMPT [-n N] [-s SEED] (args: what follows PROMPT): the sample, then with an adapter the
   same length again from the same seed, base alone, for the speed */
static int run_generate(Engine *e, const char *prompt, int argc, char **args)
{
    int n = 200, i;
    unsigned long long seed = rng_state;
    double bps;
    for (i = 0; i + 1 < argc; i += 2) {
        if (!strcmp(args[i], "-n")) n = atoi(args[i + 1]);
        else if (!strcmp(args[i], "-s")) seed = strtoull(args[i + 1], NULL, 10) | 1;
    }
    if (!*prompt || n < 1) {
        fprintf(stderr, "engine: -g needs a non-empty prompt and -n >= 1\n");
        return 2;
    }
    rng_state = seed;
    bps = generate(e, prompt, n, 0);
    printf("\n[%d bytes at %.0f bytes/s", n, bps);
    if (e->model) {
        e->use_adapter = 0; rng_state = seed;
        printf("; base alone %.0f bytes/s", generate(e, prompt, n, 1));
    }
    printf("]\n");
    return 0;
}

int main(int argc, char **argv)
{
    Engine e;
    const char *adapter = NULL;
    int i = 2, rc = 0, table = 0, merged = 0, xlora = 0;
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.safetensors [-a ADAPTER_DIR | -x XLORA_DIR [-t] [-m]] "
                "(-p PARITY KEY | -e FILE... | -r FILE... | -R FILE... | -g PROMPT [-n N] [-s SEED])\n", argv[0]);
        return 2;
    }
    if ((!strcmp(argv[i], "-a") || !strcmp(argv[i], "-x")) && i + 1 < argc) {
        xlora = argv[i][1] == 'x'; adapter = argv[i + 1]; i += 2;
    }
    for (; i < argc && (!strcmp(argv[i], "-t") || !strcmp(argv[i], "-m")); i++) {
        if (argv[i][1] == 't') table = 1; else merged = 1;
    }
    engine_load(&e, argv[1], adapter, xlora);
    if (i + 2 < argc && !strcmp(argv[i], "-p")) rc = parity(&e, argv[i + 1], argv[i + 2]);
    else if (i + 1 < argc && !strcmp(argv[i], "-r")) { for (i++; i < argc; i++) route_map(&e, argv[i], 96, merged); }
    else if (i + 1 < argc && !strcmp(argv[i], "-R")) { for (i++; i < argc; i++) route_map_file(&e, argv[i], 96); }
    else if (i + 1 < argc && !strcmp(argv[i], "-e")) run_evaluate(&e, argv + i + 1, argc - i - 1, table, merged);
    else if (i + 1 < argc && !strcmp(argv[i], "-g")) rc = run_generate(&e, argv[i + 1], argc - i - 2, argv + i + 2);
    else { fprintf(stderr, "engine: bad command\n"); rc = 2; }
    engine_free(&e);
    return rc;
}

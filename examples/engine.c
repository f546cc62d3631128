/* engine.c: a small inference engine for a byte-level Llama-style model (RMSNorm, RoPE, SwiGLU)
   whose attention projections carry mixture-of-LoRA experts, run by molora.

   The engine owns the model: embedding, norms, attention with a KV cache, MLP and every base
   matmul (OpenBLAS). molora reads the files (base weights through its safetensors reader, the
   adapter through its adapter loader) and adds the experts' delta to the engine's base output of
   each adapted projection (MOLORA_OUTPUT_DELTA). Prefill hands molora every token of the window
   at once; generation hands it one token per step (molora's decode path). When the context is
   full (seq_len bytes) generation keeps the last half and prefills it again.

   Build:  cc -O2 -I. examples/engine.c -o build/engine -lopenblas -lm
   Usage:  engine MODEL.safetensors [-a ADAPTER_DIR [-t] [-m]] COMMAND
     -a DIR                      load a PEFT / AdaMoLE / MoLA / composed-MoLE adapter from DIR
     -t                          with -e: also print the routing table (mean routing weight of
                                 every expert of every adapted module, per file)
     -p PARITY.safetensors KEY   compare the logits of the prompts in PARITY with its tensor KEY
                                 (exit 1 if max |diff| > 1e-4)
     -e FILE...                  bits per byte on each file, for the base alone and with the
                                 adapter, prefill tokens/s of both, active experts per layer
     -r FILE...                  routing map: each adapted module's top expert for the first 96 bytes
     -g PROMPT [-n N] [-s SEED]  generate N bytes after PROMPT (temperature 0.8 sampling), then
                                 time the same generation without the adapter */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime */
#define MOLORA_IMPLEMENTATION
#include "molora.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NPROJ 4
static const char *proj_name[NPROJ] = { "q_proj", "k_proj", "v_proj", "o_proj" };

typedef struct {
    const float *attn_norm, *proj[NPROJ], *mlp_norm, *gate, *up, *down;
    int ml[NPROJ];                      /* molora layer of each projection, -1 = not adapted */
} Layer;

typedef struct {
    int vocab, dim, n_layers, n_heads, hidden, seq_len;
    float rope_theta, norm_eps;
    const float *embed, *norm, *lm_head;
    Layer *layers;
    molora_safetensors *st;
    /* adapter (all NULL / 0 without one) */
    molora_adapter *ad;
    molora_model *moe;
    int n_moe;                          /* molora layers */
    void *ws; size_t ws_size;
    int use_adapter;                    /* 0: run the base alone even when an adapter is loaded */
    float *route;                       /* (seq_len, max experts): the weights molora applied */
    int max_experts;
    double *active_sum;                 /* (n_moe): sum over tokens of the active expert count */
    double *weight_sum;                 /* (n_moe, max_experts): sum over tokens of each weight */
    long routed_tokens;                 /* tokens that went through every molora layer */
    unsigned char *winner;              /* (n_moe, seq_len): each token's top expert, last forward */
    double *token_weight;               /* (seq_len, max_experts): weights summed over modules */
    /* activations (seq_len rows) and the KV cache (n_layers, seq_len, dim) */
    float *x, *h, *q, *att, *o, *g, *u, *logits;
    float *kc, *vc;
} Engine;

typedef struct {            /* what -e measured on one file */
    const char *name;
    double bpb, bpb_base, tps, tps_base;
    double *active_sum, *weight_sum;    /* copies of the engine's routing statistics */
    long tokens;
} FileStats;

static void die(const char *what, molora_result r)
{
    fprintf(stderr, "engine: %s: %s\n", what, molora_result_string(r));
    exit(1);
}

static const float *tensor(Engine *e, const char *name, uint64_t rows, uint64_t cols)
{
    size_t i;
    molora_tensor_info info;
    const float *p;
    molora_result r;
    if ((r = molora_safetensors_find(e->st, name, &i))) die(name, r);
    molora_safetensors_tensor_info(e->st, i, &info);
    if (info.n_elements != rows * cols) { fprintf(stderr, "engine: %s: wrong size\n", name); exit(1); }
    if ((r = molora_safetensors_tensor_f32(e->st, i, &p))) die(name, r);
    return p;
}

static const char *meta(Engine *e, const char *key)
{
    const char *v = molora_safetensors_find_metadata(e->st, key);
    if (!v) { fprintf(stderr, "engine: base model has no metadata '%s'\n", key); exit(1); }
    return v;
}

/* a config integer in [lo, hi]; anything else (garbage, overflow) is an error */
static int meta_int(Engine *e, const char *key, long lo, long hi)
{
    const char *v = meta(e, key);
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "engine: base model metadata %s = '%s' is not an integer in [%ld, %ld]\n", key, v, lo, hi);
        exit(1);
    }
    return (int)x;
}

static float meta_float(Engine *e, const char *key)
{
    const char *v = meta(e, key);
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x > 0.0) || x > 1e30) {
        fprintf(stderr, "engine: base model metadata %s = '%s' is not a positive number\n", key, v);
        exit(1);
    }
    return (float)x;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) { fprintf(stderr, "engine: out of memory\n"); exit(1); }
    return p;
}

static void engine_load(Engine *e, const char *model_path, const char *adapter_dir)
{
    molora_result r;
    char name[160];
    int L, j, S, D, H;
    memset(e, 0, sizeof *e);
    if ((r = molora_safetensors_open(model_path, NULL, &e->st))) die(model_path, r);
    e->vocab = meta_int(e, "vocab", 256, 256);        /* byte-level: one token per byte value */
    e->dim = meta_int(e, "dim", 2, 16384); e->n_layers = meta_int(e, "n_layers", 1, 1024);
    e->n_heads = meta_int(e, "n_heads", 1, 1024); e->hidden = meta_int(e, "hidden", 1, 65536);
    e->seq_len = meta_int(e, "seq_len", 2, 65536);
    e->rope_theta = meta_float(e, "rope_theta");
    e->norm_eps = meta_float(e, "norm_eps");
    if (e->dim % e->n_heads || (e->dim / e->n_heads) % 2) {
        fprintf(stderr, "engine: base model: dim %d is not n_heads %d times an even head size\n", e->dim, e->n_heads);
        exit(1);
    }
    D = e->dim; H = e->hidden; S = e->seq_len;
    e->embed = tensor(e, "model.embed_tokens.weight", e->vocab, D);
    e->norm = tensor(e, "model.norm.weight", 1, D);
    e->lm_head = tensor(e, "lm_head.weight", e->vocab, D);
    e->layers = xcalloc((size_t)e->n_layers, sizeof *e->layers);
    for (L = 0; L < e->n_layers; L++) {
        Layer *l = &e->layers[L];
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", L);
        l->attn_norm = tensor(e, name, 1, D);
        for (j = 0; j < NPROJ; j++) {
            snprintf(name, sizeof name, "model.layers.%d.self_attn.%s.weight", L, proj_name[j]);
            l->proj[j] = tensor(e, name, D, D);
            l->ml[j] = -1;
        }
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", L);
        l->mlp_norm = tensor(e, name, 1, D);
        snprintf(name, sizeof name, "model.layers.%d.mlp.gate_proj.weight", L);
        l->gate = tensor(e, name, H, D);
        snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj.weight", L);
        l->up = tensor(e, name, H, D);
        snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", L);
        l->down = tensor(e, name, D, H);
    }
    if (adapter_dir) {
        molora_model_desc md;
        if ((r = molora_adapter_open(adapter_dir, NULL, &e->ad))) die(adapter_dir, r);
        if ((r = molora_adapter_model_desc(e->ad, &md))) die(adapter_dir, r);
        if ((r = molora_model_init(&md, &e->moe))) die(adapter_dir, r);
        e->n_moe = md.n_layers;
        for (j = 0; j < md.n_layers; j++) {
            if (md.layers[j].d_in != D || md.layers[j].d_out != D) {
                fprintf(stderr, "engine: %s: module %s does not fit the model\n", adapter_dir,
                        molora_adapter_layer_name(e->ad, j));
                exit(1);
            }
            if (md.layers[j].n_experts > e->max_experts) e->max_experts = md.layers[j].n_experts;
        }
        for (L = 0; L < e->n_layers; L++)
            for (j = 0; j < NPROJ; j++) {
                snprintf(name, sizeof name, "model.layers.%d.self_attn.%s", L, proj_name[j]);
                e->layers[L].ml[j] = molora_adapter_find_layer(e->ad, name);
            }
        if ((r = molora_workspace_size(e->moe, S, &e->ws_size))) die("workspace", r);
        e->ws = xcalloc(1, e->ws_size + 1);
        e->route = xcalloc((size_t)S * (size_t)(e->max_experts + 1), sizeof(float));
        e->active_sum = xcalloc((size_t)e->n_moe, sizeof(double));
        e->weight_sum = xcalloc((size_t)e->n_moe * (size_t)e->max_experts, sizeof(double));
        e->use_adapter = 1;
        e->winner = xcalloc((size_t)e->n_moe * (size_t)S, 1);
        e->token_weight = xcalloc((size_t)S * (size_t)e->max_experts, sizeof(double));
    }
    e->x = xcalloc((size_t)S * D, sizeof(float)); e->h = xcalloc((size_t)S * D, sizeof(float));
    e->q = xcalloc((size_t)S * D, sizeof(float)); e->o = xcalloc((size_t)S * D, sizeof(float));
    e->kc = xcalloc((size_t)e->n_layers * S * D, sizeof(float));
    e->vc = xcalloc((size_t)e->n_layers * S * D, sizeof(float));
    e->att = xcalloc((size_t)S, sizeof(float));
    e->g = xcalloc((size_t)S * H, sizeof(float)); e->u = xcalloc((size_t)S * H, sizeof(float));
    e->logits = xcalloc((size_t)S * e->vocab, sizeof(float));
}

static void engine_free(Engine *e)
{
    molora_model_free(e->moe);
    molora_adapter_free(e->ad);
    molora_safetensors_free(e->st);
    free(e->layers); free(e->ws); free(e->route); free(e->active_sum); free(e->weight_sum); free(e->winner); free(e->token_weight);
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

/* One adapted projection: out = in W0^T (the engine's matmul) + molora's expert delta. */
static void projection(Engine *e, int L, int j, float *out, const float *in, int T)
{
    int D = e->dim, ml = e->layers[L].ml[j];
    matmul(out, in, e->layers[L].proj[j], T, D, D);
    if (ml >= 0 && e->use_adapter) {
        molora_forward_args a;
        molora_layer_info info;
        molora_result r;
        int t, i;
        memset(&a, 0, sizeof a);
        a.layer = ml; a.n_tokens = T; a.x = in; a.y = out;
        a.output = MOLORA_OUTPUT_DELTA;
        a.weights_out = e->route;
        a.workspace = e->ws; a.workspace_size = e->ws_size;
        if ((r = molora_forward(e->moe, &a))) die("molora_forward", r);
        molora_model_layer_info(e->moe, ml, &info);
        for (t = 0; t < T; t++) {            /* routing statistics for the demo's table */
            const float *w = e->route + (size_t)t * info.n_experts;
            int best = 0, active = 0;
            for (i = 0; i < info.n_experts; i++) {
                active += w[i] != 0.0f;
                if (w[i] > w[best]) best = i;
                e->weight_sum[(size_t)ml * e->max_experts + i] += w[i];
                e->token_weight[(size_t)t * e->max_experts + i] += w[i];
            }
            e->active_sum[ml] += active;
            e->winner[(size_t)ml * e->seq_len + t] = (unsigned char)best;
        }
    }
}

/* logits (T, vocab) for the bytes tok[0..T-1] at positions pos..pos+T-1, attending to the KV cache
   of positions 0..pos-1 (which an earlier call filled); pos + T <= seq_len */
static void forward(Engine *e, const unsigned char *tok, int T, int pos)
{
    int D = e->dim, H = e->hidden, nh = e->n_heads, hd = D / nh, S = e->seq_len, L, t, s, hh, i;
    float scale = 1.0f / sqrtf((float)hd);
    for (t = 0; t < T; t++) memcpy(e->x + (size_t)t * D, e->embed + (size_t)tok[t] * D, D * sizeof(float));
    for (L = 0; L < e->n_layers; L++) {
        Layer *l = &e->layers[L];
        float *kc = e->kc + (size_t)L * S * D, *vc = e->vc + (size_t)L * S * D;
        rmsnorm(e->h, e->x, l->attn_norm, T, D, e->norm_eps);
        projection(e, L, 0, e->q, e->h, T);
        projection(e, L, 1, kc + (size_t)pos * D, e->h, T);
        projection(e, L, 2, vc + (size_t)pos * D, e->h, T);
        rope(e->q, T, pos, nh, hd, e->rope_theta);
        rope(kc + (size_t)pos * D, T, pos, nh, hd, e->rope_theta);
        for (t = 0; t < T; t++)                       /* causal attention, head by head */
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
        projection(e, L, 3, e->h, e->o, T);
        for (i = 0; i < T * D; i++) e->x[i] += e->h[i];
        rmsnorm(e->h, e->x, l->mlp_norm, T, D, e->norm_eps);   /* SwiGLU MLP */
        matmul(e->g, e->h, l->gate, T, H, D);
        matmul(e->u, e->h, l->up, T, H, D);
        for (i = 0; i < T * H; i++) e->g[i] = e->g[i] / (1.0f + expf(-e->g[i])) * e->u[i];
        matmul(e->h, e->g, l->down, T, D, H);
        for (i = 0; i < T * D; i++) e->x[i] += e->h[i];
    }
    rmsnorm(e->h, e->x, e->norm, T, D, e->norm_eps);
    matmul(e->logits, e->h, e->lm_head, T, e->vocab, D);
    if (e->moe && e->use_adapter) e->routed_tokens += T;
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
    if (!f) { fprintf(stderr, "engine: cannot open %s\n", path); exit(1); }
    if (fseek(f, 0, SEEK_END) || (*n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        fprintf(stderr, "engine: cannot read %s\n", path); exit(1);
    }
    buf = xcalloc((size_t)*n + 1, 1);
    if (fread(buf, 1, (size_t)*n, f) != (size_t)*n) { fprintf(stderr, "engine: cannot read %s\n", path); exit(1); }
    fclose(f);
    return buf;
}

/* -p: the engine's logits for the parity prompts against PyTorch's */
static int parity(Engine *e, const char *path, const char *key)
{
    molora_safetensors *st;
    molora_tensor_info pi, li;
    size_t ip, il;
    const float *ref;
    molora_result r;
    int n, T, j, i;
    double md = 0.0, mdd = 0.0;
    if ((r = molora_safetensors_open(path, NULL, &st))) die(path, r);
    if ((r = molora_safetensors_find(st, "prompts", &ip)) || (r = molora_safetensors_find(st, key, &il))) die(key, r);
    molora_safetensors_tensor_info(st, ip, &pi);
    molora_safetensors_tensor_info(st, il, &li);
    n = (int)pi.shape[0]; T = (int)pi.shape[1];
    if (li.n_elements != (uint64_t)n * T * e->vocab || T > e->seq_len) { fprintf(stderr, "engine: %s: bad shapes\n", path); return 1; }
    if ((r = molora_safetensors_tensor_f32(st, il, &ref))) die(key, r);
    for (j = 0; j < n; j++) {
        const unsigned char *tok = (const unsigned char *)pi.data + (size_t)j * T;
        const float *rj = ref + (size_t)j * T * e->vocab;
        int t;
        forward(e, tok, T, 0);                      /* prefill: the whole prompt at once */
        for (i = 0; i < T * e->vocab; i++) {
            double d = fabs((double)e->logits[i] - (double)rj[i]);
            if (d > md) md = d;
        }
        for (t = 0; t < T; t++) {                   /* decode: one byte at a time, KV cache */
            forward(e, tok + t, 1, t);
            for (i = 0; i < e->vocab; i++) {
                double d = fabs((double)e->logits[i] - (double)rj[(size_t)t * e->vocab + i]);
                if (d > mdd) mdd = d;
            }
        }
    }
    molora_safetensors_free(st);
    printf("parity %-16s %d prompts x %d bytes: max |engine - pytorch| prefill %.3g, decode %.3g %s\n", key, n, T,
           md, mdd, md <= 1e-4 && mdd <= 1e-4 ? "(ok, <= 1e-4)" : "(FAIL, > 1e-4)");
    return md <= 1e-4 && mdd <= 1e-4 ? 0 : 1;
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

/* -e: one file, the base alone and (with an adapter) with the experts; routing statistics kept */
static void evaluate(Engine *e, const char *path, FileStats *fs)
{
    long n;
    int L, j;
    unsigned char *buf = read_file(path, &n);
    const char *base = strrchr(path, '/');
    memset(fs, 0, sizeof *fs);
    fs->name = base ? base + 1 : path;
    e->use_adapter = 0;
    fs->bpb_base = bits_per_byte(e, buf, n, &fs->tps_base);
    printf("%-11s %6ld %10.4f %10.0f", fs->name, n, fs->bpb_base, fs->tps_base);
    if (e->moe) {
        memset(e->active_sum, 0, (size_t)e->n_moe * sizeof(double));
        memset(e->weight_sum, 0, (size_t)e->n_moe * e->max_experts * sizeof(double));
        e->routed_tokens = 0;
        e->use_adapter = 1;
        fs->bpb = bits_per_byte(e, buf, n, &fs->tps);
        fs->tokens = e->routed_tokens;
        fs->active_sum = xcalloc((size_t)e->n_moe, sizeof(double));
        fs->weight_sum = xcalloc((size_t)e->n_moe * e->max_experts, sizeof(double));
        memcpy(fs->active_sum, e->active_sum, (size_t)e->n_moe * sizeof(double));
        memcpy(fs->weight_sum, e->weight_sum, (size_t)e->n_moe * e->max_experts * sizeof(double));
        printf(" %10.4f %+8.4f %10.0f   ", fs->bpb, fs->bpb - fs->bpb_base, fs->tps);
        for (L = 0; L < e->n_layers; L++) {     /* mean active experts over the layer's modules */
            double a = 0.0;
            int na = 0;
            for (j = 0; j < NPROJ; j++)
                if (e->layers[L].ml[j] >= 0) { a += e->active_sum[e->layers[L].ml[j]]; na++; }
            if (na) printf(" %4.2f", a / ((double)fs->tokens * na)); else printf("    -");
        }
    }
    printf("\n");
    free(buf);
}

static void evaluate_header(Engine *e)
{
    int L;
    printf("%-11s %6s %10s %10s", "text", "bytes", "base b/B", "base tok/s");
    if (e->moe) {
        printf(" %10s %8s %10s    active experts, layer", "+experts", "change", "tok/s");
        for (L = 0; L < e->n_layers; L++) printf(" %d", L);
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
    int L, j, f, i, same = 1, col = 4 * e->max_experts + 2;
    molora_layer_info info, first;
    molora_model_layer_info(e->moe, 0, &first);
    printf("mean routing weight per expert, %% of each token's total (* = the largest)\n%-13s", "module");
    for (f = 0; f < nf; f++) printf(" %-*s", col, fs[f].name);
    printf("\n");
    for (L = 0; L < e->n_layers; L++)
        for (j = 0; j < NPROJ; j++) {
            int ml = e->layers[L].ml[j];
            if (ml < 0) continue;
            molora_model_layer_info(e->moe, ml, &info);
            same &= info.n_experts == first.n_experts;
            printf("L%d %-10s", L, proj_name[j]);
            for (f = 0; f < nf; f++)
                print_shares(fs[f].weight_sum + (size_t)ml * e->max_experts, info.n_experts, (double)fs[f].tokens, col);
            printf("\n");
        }
    if (!merged || !same || e->n_moe < 2) return;
    printf("%-13s", "all modules");
    for (f = 0; f < nf; f++) {       /* expert i summed over the modules */
        double *w = xcalloc((size_t)first.n_experts, sizeof(double));
        for (j = 0; j < e->n_moe; j++)
            for (i = 0; i < first.n_experts; i++) w[i] += fs[f].weight_sum[(size_t)j * e->max_experts + i];
        print_shares(w, first.n_experts, (double)fs[f].tokens * e->n_moe, col);
        free(w);
    }
    printf("\n");
}

/* expert index as one character: 0-9, then a-z, then '+' for 36 and more */
static int expert_char(int i)
{
    return i < 10 ? '0' + i : i < 36 ? 'a' + i - 10 : '+';
}

/* -r: routing map of the first bytes of a file: one row per adapted module, the top expert of
   every byte (the expert with the largest routing weight) under the text itself; with -m one row,
   the expert with the largest weight summed over all modules */
static void route_map(Engine *e, const char *path, int width, int merged)
{
    long n;
    int T, t, j, i;
    unsigned char *buf = read_file(path, &n);
    const char *base = strrchr(path, '/');
    if (!e->moe) { fprintf(stderr, "engine: -r needs an adapter (-a)\n"); exit(1); }
    T = (int)(n < width ? n : width);
    if (T > e->seq_len) T = e->seq_len;
    memset(e->token_weight, 0, (size_t)e->seq_len * e->max_experts * sizeof(double));
    forward(e, buf, T, 0);
    printf("%-14s |", base ? base + 1 : path);
    for (t = 0; t < T; t++) putchar(buf[t] >= 32 && buf[t] < 127 ? buf[t] : ' ');
    printf("|\n");
    if (merged) {
        printf("  %-12s|", "top expert");
        for (t = 0; t < T; t++) {
            const double *w = e->token_weight + (size_t)t * e->max_experts;
            int best = 0;
            for (i = 1; i < e->max_experts; i++) if (w[i] > w[best]) best = i;
            putchar(expert_char(best));
        }
        printf("|\n");
    } else
        for (j = 0; j < e->n_moe; j++) {
            const char *name = molora_adapter_layer_name(e->ad, j);
            const char *p = strstr(name, "layers.");
            const char *q = strrchr(name, '.');
            printf("  L%d %-9s|", p ? atoi(p + 7) : 0, q ? q + 1 : name);
            for (t = 0; t < T; t++) putchar(expert_char(e->winner[(size_t)j * e->seq_len + t]));
            printf("|\n");
        }
    free(buf);
}

static unsigned long long rng_state = 88172645463325252ULL;
static float rng_uniform(void)   /* xorshift64 */
{
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (float)(rng_state >> 40) / 16777216.0f;
}

/* N bytes after PROMPT, temperature 0.8; prefill, then one token per forward through the KV cache.
   Returns the decode speed in bytes per second; prints the text unless quiet. */
static double generate(Engine *e, const char *prompt, int n, int quiet)
{
    int len = (int)strlen(prompt), S = e->seq_len, cap, i, t, pos, last;
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
        const float *lg = e->logits + (size_t)last * e->vocab;
        float mx = lg[0], sum = 0.0f, r;
        int next = 0;
        for (i = 1; i < e->vocab; i++) if (lg[i] > mx) mx = lg[i];
        for (i = 0; i < e->vocab; i++) sum += expf((lg[i] - mx) / 0.8f);
        r = rng_uniform() * sum;
        for (i = 0; i < e->vocab; i++) { next = i; r -= expf((lg[i] - mx) / 0.8f); if (r <= 0.0f) break; }
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

int main(int argc, char **argv)
{
    Engine e;
    const char *adapter = NULL;
    int i = 2, rc = 0, table = 0, merged = 0;
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.safetensors [-a ADAPTER_DIR [-t] [-m]] (-p PARITY KEY | -e FILE... | -r FILE... | -g PROMPT [-n N] [-s SEED])\n", argv[0]);
        return 2;
    }
    if (!strcmp(argv[i], "-a") && i + 1 < argc) { adapter = argv[i + 1]; i += 2; }
    for (; i < argc && (!strcmp(argv[i], "-t") || !strcmp(argv[i], "-m")); i++) {
        if (argv[i][1] == 't') table = 1; else merged = 1;
    }
    engine_load(&e, argv[1], adapter);
    if (i + 2 < argc && !strcmp(argv[i], "-p")) rc = parity(&e, argv[i + 1], argv[i + 2]);
    else if (i + 1 < argc && !strcmp(argv[i], "-r")) { for (i++; i < argc; i++) route_map(&e, argv[i], 96, merged); }
    else if (i + 1 < argc && !strcmp(argv[i], "-e")) {
        int nf = argc - i - 1, f;
        FileStats *fs = xcalloc((size_t)nf, sizeof *fs);
        evaluate_header(&e);
        for (f = 0; f < nf; f++) evaluate(&e, argv[i + 1 + f], &fs[f]);
        if (table && e.moe) routing_table(&e, fs, nf, merged);
        for (f = 0; f < nf; f++) { free(fs[f].active_sum); free(fs[f].weight_sum); }
        free(fs);
    } else if (i + 1 < argc && !strcmp(argv[i], "-g")) {
        const char *prompt = argv[i + 1];
        int n = 200;
        unsigned long long seed = rng_state;
        double bps;
        for (i += 2; i + 1 < argc; i += 2) {
            if (!strcmp(argv[i], "-n")) n = atoi(argv[i + 1]);
            else if (!strcmp(argv[i], "-s")) seed = strtoull(argv[i + 1], NULL, 10) | 1;
        }
        if (!*prompt || n < 1) { fprintf(stderr, "engine: -g needs a non-empty prompt and -n >= 1\n"); rc = 2; }
        else {
            rng_state = seed;
            bps = generate(&e, prompt, n, 0);
            printf("\n[%d bytes at %.0f bytes/s", n, bps);
            if (e.moe) {                /* the same length again, base alone, for the speed */
                e.use_adapter = 0; rng_state = seed;
                printf("; base alone %.0f bytes/s", generate(&e, prompt, n, 1));
            }
            printf("]\n");
        }
    } else { fprintf(stderr, "engine: bad command\n"); rc = 2; }
    engine_free(&e);
    return rc;
}

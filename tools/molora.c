/* molora: the command of DESIGN.md 4.2 (inspect, forward, compose; alpha comes later).
   Every bad input ends with a non-zero exit and one line on stderr naming the file, tensor or
   key and what is wrong. Build: make (build/molora). */
#define MOLORA_IMPLEMENTATION
#include "molora.h"
#include "molora_npy.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char g_detail[512];   /* the library's last log line */
static void on_log(void *user, molora_result r, const char *msg)
{
    (void)user; (void)r;
    snprintf(g_detail, sizeof g_detail, "%s", msg);
}
static int die(const char *fmt, ...)
{
    va_list ap;
    fputs("molora: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}
/* one line: the library's detail if it logged one, else the result name */
static int die_lib(const char *what, molora_result r)
{
    if (g_detail[0]) return die("%s: %s (%s)", what, g_detail, molora_result_string(r));
    return die("%s: %s", what, molora_result_string(r));
}
static molora_load_desc load_desc(void)
{
    molora_load_desc d;
    memset(&d, 0, sizeof d);
    d.log = on_log;
    return d;
}

/* ---- npy ------------------------------------------------------------------------------- */
/* Reads a 2-D float32 C-order .npy (format 1.0-3.0). 0 on success, else prints and returns 1. */
static int npy_read(const char *path, float **data, int *rows, int *cols)
{
    char err[320];
    if (molora_npy_read(path, data, rows, cols, err, sizeof err)) return die("%s: %s", path, err);
    return 0;
}
static int npy_write(const char *path, const float *data, int rows, int cols)
{
    FILE *f = fopen(path, "wb");
    int failed;
    if (!f) return die("%s: cannot write: %s", path, strerror(errno));
    failed = molora_npy_write(f, data, rows, cols);
    if (fclose(f) != 0 || failed) return die("%s: write failed", path);
    return 0;
}

/* ---- JSON output ------------------------------------------------------------------------- */
static void jstr(FILE *o, const char *s)
{
    fputc('"', o);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(o, "\\%c", c);
        else if (c < 0x20) fprintf(o, "\\u%04x", c);
        else fputc(c, o);
    }
    fputc('"', o);
}
static const char *routing_name(molora_routing r)
{
    static const char *const n[] = {"dense", "topk", "threshold", "adamole", "mole_output", "fixed"};
    return (int)r >= 0 && r < MOLORA_ROUTING_COUNT ? n[r] : "?";
}

/* ---- inspect ----------------------------------------------------------------------------- */
/* What molora_model_init would resolve, read from the descriptor alone: inspect converts no
   weight and initialises no model, so its cost is the header's, not the tensors'. */
static int desc_top_k(const molora_layer_desc *L)
{
    if (L->routing != MOLORA_ROUTING_TOPK) return 0;
    return L->top_k ? L->top_k : (L->n_experts > 1 ? 2 : 1);
}
static float desc_tau_max(const molora_layer_desc *L)
{
    return L->tau_max_set ? L->tau_max : 1.0f / (float)(L->n_experts ? L->n_experts : 1);
}
static float desc_scaling(const molora_expert_desc *e)
{
    float alpha = e->lora_alpha != 0.0f ? e->lora_alpha : (float)e->rank;
    if (e->scaling != 0.0f) return e->scaling;
    return e->use_rslora ? alpha / sqrtf((float)e->rank) : alpha / (float)e->rank;
}
static void inspect_json(const molora_adapter *a, const molora_layer_desc *L, int l)
{
    int e;
    printf("%s\n  {\"name\": ", l ? "," : "");
    jstr(stdout, molora_adapter_module_name(a, l));
    printf(", \"layer\": %d, \"d_in\": %d, \"d_out\": %d, \"n_experts\": %d, \"ranks\": [", l, L->d_in, L->d_out, L->n_experts);
    for (e = 0; e < L->n_experts; e++) printf("%s%d", e ? ", " : "", L->experts[e].rank);
    printf("], \"scaling\": [");
    for (e = 0; e < L->n_experts; e++) printf("%s%.9g", e ? ", " : "", (double)desc_scaling(&L->experts[e]));
    printf("], \"routing\": \"%s\", \"top_k\": %d, \"threshold\": %.9g, \"tau_max\": %.9g, \"dtype\": \"%s\", \"fan_in_fan_out\": %s}",
           routing_name(L->routing), desc_top_k(L), (double)L->threshold, (double)desc_tau_max(L),
           molora_dtype_name(molora_adapter_module_dtype(a, l)), L->fan_in_fan_out ? "true" : "false");
}
static void inspect_text(const molora_adapter *a, const molora_layer_desc *L, int l)
{
    int e;
    printf("%3d %s  d_in %d d_out %d  N %d  ranks", l, molora_adapter_module_name(a, l), L->d_in, L->d_out, L->n_experts);
    for (e = 0; e < L->n_experts; e++) printf(" %d(s=%g)", L->experts[e].rank, (double)desc_scaling(&L->experts[e]));
    printf("  %s", routing_name(L->routing));
    if (L->routing == MOLORA_ROUTING_TOPK) printf(" k=%d", desc_top_k(L));
    if (L->routing == MOLORA_ROUTING_THRESHOLD) printf(" threshold=%g", (double)L->threshold);
    if (L->routing == MOLORA_ROUTING_ADAMOLE) printf(" tau_max=%g", (double)desc_tau_max(L));
    printf("  %s%s\n", molora_dtype_name(molora_adapter_module_dtype(a, l)), L->fan_in_fan_out ? "  fan_in_fan_out" : "");
}
static int cmd_inspect(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0, i, l, n;
    molora_adapter *a;
    molora_model_desc md;
    molora_load_desc ld = load_desc();
    molora_result r;
    for (i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!dir && argv[i][0] != '-') dir = argv[i];
        else return die("inspect: unexpected argument %s", argv[i]);
    }
    if (!dir) return die("inspect: usage: molora inspect ADAPTER_DIR [--json]");
    if ((r = molora_adapter_load(dir, &ld, &a))) return die_lib(dir, r);
    molora_adapter_get_desc(a, &md);
    n = molora_adapter_n_modules(a);
    if (json) printf("{\"layout\": \"%s\", \"modules\": [", molora_layout_name(molora_adapter_layout(a)));
    else printf("layout %s, %d modules\n", molora_layout_name(molora_adapter_layout(a)), n);
    for (l = 0; l < n; l++) {
        if (json) inspect_json(a, &md.layers[l], l);
        else inspect_text(a, &md.layers[l], l);
    }
    if (json) {
        size_t k;
        printf("%s], \"ignored\": [", n ? "\n" : "");
        for (k = 0; k < molora_adapter_n_ignored(a); k++) { printf("%s", k ? ", " : ""); jstr(stdout, molora_adapter_ignored_name(a, k)); }
        printf("]}\n");
    } else {
        size_t k;
        for (k = 0; k < molora_adapter_n_ignored(a); k++) printf("ignored %s\n", molora_adapter_ignored_name(a, k));
    }
    molora_adapter_free(a);
    return 0;
}

/* ---- forward ----------------------------------------------------------------------------- */
static int parse_float(const char *s, float *v)
{
    char *end;
    double d = strtod(s, &end);
    if (end == s || *end || !isfinite(d)) return 0;
    *v = (float)d;
    return 1;
}
/* The module's frozen weight and bias from a base model. W0 stays as stored (typed, not
   converted: init converts the one layer it packs): (d_out, d_in), or (d_in, d_out) for a
   fan_in_fan_out module (GPT-2 Conv1D). */
static int base_weights(molora_safetensors *bst, const char *base, const char *module, molora_layer_desc *L)
{
    char name[1024];
    const char *bare = strncmp(module, "base_model.model.", 17) ? module : module + 17;
    int r0 = L->fan_in_fan_out ? L->d_in : L->d_out, r1 = L->fan_in_fan_out ? L->d_out : L->d_in;
    size_t idx;
    molora_tensor_info ti;
    molora_result r;
    snprintf(name, sizeof name, "%s.weight", bare);
    if (molora_safetensors_find(bst, name, &idx)) return die("%s: tensor %s not found", base, name);
    molora_safetensors_get_info(bst, idx, &ti);
    if (ti.n_dims != 2 || ti.shape[0] != (uint64_t)r0 || ti.shape[1] != (uint64_t)r1)
        return die("%s: tensor %s has the wrong shape for module %s: want (%d, %d)%s", base, name, module, r0, r1,
                   L->fan_in_fan_out ? " (fan_in_fan_out: stored (in, out))" : "");
    if ((r = molora_safetensors_get_typed(bst, idx, &L->W0, &L->W0_type))) return die_lib(base, r);
    snprintf(name, sizeof name, "%s.bias", bare);
    if (molora_safetensors_find(bst, name, &idx)) return 0;
    molora_safetensors_get_info(bst, idx, &ti);
    if (ti.n_dims != 1 || ti.shape[0] != (uint64_t)L->d_out) return die("%s: tensor %s should have shape (%d)", base, name, L->d_out);
    if ((r = molora_safetensors_get_f32(bst, idx, &L->bias))) return die_lib(base, r);
    return 0;
}

static int cmd_forward(int argc, char **argv)
{
    const char *dir = NULL, *module = NULL, *in = NULL, *outp = NULL, *base = NULL, *routing = NULL, *mask = NULL, *wout = NULL;
    const char *tau = NULL, *temp = NULL;
    int i, layer, T = 0, din = 0, rc = 1;
    float *X = NULL, *Y = NULL, *W = NULL;
    void *ws = NULL;
    uint8_t *msk = NULL;
    size_t wsz;
    molora_adapter *a = NULL;
    molora_safetensors *bst = NULL;
    molora_model *m = NULL;
    molora_model_desc md, one;
    molora_layer_desc L;
    molora_forward_args fa;
    molora_load_desc ld = load_desc();
    molora_result r;
    for (i = 0; i < argc; i++) {
        const char **slot = NULL;
        if (!strcmp(argv[i], "--module")) slot = &module;
        else if (!strcmp(argv[i], "--input")) slot = &in;
        else if (!strcmp(argv[i], "--output")) slot = &outp;
        else if (!strcmp(argv[i], "--base")) slot = &base;
        else if (!strcmp(argv[i], "--routing")) slot = &routing;
        else if (!strcmp(argv[i], "--tau-max")) slot = &tau;
        else if (!strcmp(argv[i], "--temperature")) slot = &temp;
        else if (!strcmp(argv[i], "--mask")) slot = &mask;
        else if (!strcmp(argv[i], "--weights-out")) slot = &wout;
        else if (!dir && argv[i][0] != '-') { dir = argv[i]; continue; }
        else return die("forward: unexpected argument %s", argv[i]);
        if (i + 1 >= argc) return die("forward: %s needs a value", argv[i]);
        *slot = argv[++i];
    }
    if (!dir || !module || !in || !outp) return die("forward: usage: molora forward ADAPTER_DIR --module NAME --input X.npy --output Y.npy [...]");
    if ((r = molora_adapter_load(dir, &ld, &a))) return die_lib(dir, r);
    layer = molora_adapter_find_module(a, module);
    if (layer < 0) { die("%s: no adapted module %s", dir, module); goto done; }
    molora_adapter_get_desc(a, &md);
    L = md.layers[layer];
    if (routing) {
        float v;
        if (!strcmp(routing, "dense")) L.routing = MOLORA_ROUTING_DENSE;
        else if (!strcmp(routing, "adamole")) L.routing = MOLORA_ROUTING_ADAMOLE;
        else if (!strncmp(routing, "topk:", 5) && atoi(routing + 5) > 0) { L.routing = MOLORA_ROUTING_TOPK; L.top_k = atoi(routing + 5); }
        else if (!strncmp(routing, "threshold:", 10) && parse_float(routing + 10, &v)) { L.routing = MOLORA_ROUTING_THRESHOLD; L.threshold = v; }
        else { die("forward: --routing %s: expected dense, topk:K, threshold:V or adamole", routing); goto done; }
        if (L.routing != MOLORA_ROUTING_MOLE_OUTPUT && !L.gate_weight) { die("%s: module %s has no gate (lora_gating / router) for --routing %s", dir, module, routing); goto done; }
    }
    if (tau) { if (!parse_float(tau, &L.tau_max) || L.tau_max < 0) { die("forward: --tau-max %s: expected a number >= 0", tau); goto done; } L.tau_max_set = 1; }
    if (temp) { if (!parse_float(temp, &L.temperature) || L.temperature <= 0) { die("forward: --temperature %s: expected a number > 0", temp); goto done; } }
    if (base && ((r = molora_safetensors_open(base, &ld, &bst)) || base_weights(bst, base, module, &L))) {
        if (r) die_lib(base, r);
        goto done;
    }
    if (mask) {
        const char *p = mask;
        msk = (uint8_t *)malloc((size_t)L.n_experts + 1);
        if (!msk) { die("forward: out of memory"); goto done; }
        memset(msk, 1, (size_t)L.n_experts + 1);
        while (*p) {
            char *end;
            long e = strtol(p, &end, 10);
            if (end == p || e < 0 || e >= L.n_experts || (*end && *end != ',')) { die("forward: --mask %s: expert indices 0..%d separated by commas", mask, L.n_experts - 1); goto done; }
            msk[e] = 0;
            p = *end ? end + 1 : end;
        }
    }
    one = md;
    one.n_layers = 1;
    one.layers = &L;
    if ((r = molora_model_init(&one, &m))) { die_lib(dir, r); goto done; }
    if (npy_read(in, &X, &T, &din)) goto done;
    if (din != L.d_in) { die("%s: width %d does not match d_in %d of module %s", in, din, L.d_in, module); goto done; }
    Y = (float *)calloc((size_t)T * (size_t)L.d_out + 1, sizeof(float));
    W = (float *)calloc((size_t)T * (size_t)(L.n_experts ? L.n_experts : 1) + 1, sizeof(float));
    if (!Y || !W || (r = molora_workspace_size(m, T, &wsz)) || !(ws = malloc(wsz + 1))) { die("forward: out of memory"); goto done; }
    memset(&fa, 0, sizeof fa);
    fa.layer = 0; fa.n_tokens = T; fa.x = X; fa.y = Y;
    fa.output = base ? MOLORA_OUTPUT_FULL : MOLORA_OUTPUT_DELTA;
    fa.expert_mask = msk;
    fa.weights_out = L.n_experts ? W : NULL;
    fa.workspace = ws; fa.workspace_size = wsz;
    if ((r = molora_forward(m, &fa))) { die_lib(in, r); goto done; }
    if (npy_write(outp, Y, T, L.d_out)) goto done;
    if (wout && npy_write(wout, W, T, L.n_experts)) goto done;
    rc = 0;
done:
    free(X); free(Y); free(W); free(ws); free(msk);
    molora_model_free(m);
    molora_safetensors_free(bst);
    molora_adapter_free(a);
    return rc;
}

/* ---- compose ----------------------------------------------------------------------------- */
typedef struct out_tensor { char *name; const float *data; size_t n; int rows, cols; float *own; } out_tensor;

/* t->data = a float32 copy of a typed descriptor matrix (rows, cols): compose writes F32 */
static int out_f32(out_tensor *t, const void *src, molora_type type, int rows, int cols)
{
    t->rows = rows; t->cols = cols; t->n = (size_t)rows * (size_t)cols;
    if (!(t->own = (float *)malloc(t->n * sizeof(float) + 1))) return die("compose: out of memory");
    molora_convert_f32(src, type, t->n, t->own);
    t->data = t->own;
    return 0;
}

static int write_st(const char *path, const out_tensor *t, int n)
{
    FILE *f;
    char *h;
    size_t cap = 256, len = 0, off = 0, pad;
    int i;
    uint64_t hl;
    unsigned char b[8];
    for (i = 0; i < n; i++) cap += strlen(t[i].name) * 6 + 128;
    h = (char *)malloc(cap);
    if (!h) return die("%s: out of memory", path);
    len += (size_t)sprintf(h + len, "{");
    for (i = 0; i < n; i++) {
        const char *s;
        len += (size_t)sprintf(h + len, "%s\"", i ? "," : "");
        for (s = t[i].name; *s; s++) {
            if (*s == '"' || *s == '\\') h[len++] = '\\';
            h[len++] = *s;
        }
        if (t[i].rows > 0) len += (size_t)sprintf(h + len, "\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}", t[i].rows, t[i].cols, off, off + 4 * t[i].n);
        else len += (size_t)sprintf(h + len, "\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}", t[i].cols, off, off + 4 * t[i].n);
        off += 4 * t[i].n;
    }
    h[len++] = '}';
    pad = (8 - len % 8) % 8;
    while (pad--) h[len++] = ' ';
    if (!(f = fopen(path, "wb"))) { free(h); return die("%s: cannot write: %s", path, strerror(errno)); }
    hl = len;
    for (i = 0; i < 8; i++) b[i] = (unsigned char)(hl >> (8 * i));
    fwrite(b, 1, 8, f);
    fwrite(h, 1, len, f);
    free(h);
    for (i = 0; i < n; i++) fwrite(t[i].data, sizeof(float), t[i].n, f);
    if (fclose(f)) return die("%s: write failed", path);
    return 0;
}

#define MAXEXP 64
static int cmd_compose(int argc, char **argv)
{
    const char *exp_dirs[MAXEXP], *gate = NULL, *outd = NULL, *routing = "dense";
    int n = 0, i, l, e, nm, rc = 1, nt = 0, same = 1;
    molora_adapter *ad[MAXEXP];
    molora_model *mods[MAXEXP];
    molora_safetensors *gst = NULL;
    molora_load_desc ld = load_desc();
    molora_result r;
    out_tensor *ot = NULL;
    float *scal = NULL;
    char path[4096];
    FILE *f;
    memset(ad, 0, sizeof ad);
    memset(mods, 0, sizeof mods);
    for (i = 0; i < argc; i++) {
        if (i + 1 >= argc) return die("compose: %s needs a value", argv[i]);
        if (!strcmp(argv[i], "--expert")) { if (n == MAXEXP) return die("compose: at most %d experts", MAXEXP); exp_dirs[n++] = argv[++i]; }
        else if (!strcmp(argv[i], "--gate")) gate = argv[++i];
        else if (!strcmp(argv[i], "--out")) outd = argv[++i];
        else if (!strcmp(argv[i], "--routing")) routing = argv[++i];
        else return die("compose: unexpected argument %s", argv[i]);
    }
    if (!n || !gate || !outd) return die("compose: usage: molora compose --expert DIR [--expert DIR ...] --gate GATE.safetensors --out DIR [--routing ...]");
    if (strcmp(routing, "dense") && strncmp(routing, "topk:", 5) && strncmp(routing, "threshold:", 10))
        return die("compose: --routing %s: expected dense, topk:K or threshold:V", routing);
    if (!strncmp(routing, "topk:", 5) && (atoi(routing + 5) < 1 || atoi(routing + 5) > n)) return die("compose: --routing %s: k must be in 1..%d", routing, n);
    for (i = 0; i < n; i++) {
        molora_model_desc md;
        if ((r = molora_adapter_load(exp_dirs[i], &ld, &ad[i]))) { die_lib(exp_dirs[i], r); goto done; }
        if (molora_adapter_layout(ad[i]) != MOLORA_LAYOUT_PEFT_LORA) { die("%s: layout %s is not a plain PEFT LoRA adapter", exp_dirs[i], molora_layout_name(molora_adapter_layout(ad[i]))); goto done; }
        molora_adapter_get_desc(ad[i], &md);
        if ((r = molora_model_init(&md, &mods[i]))) { die_lib(exp_dirs[i], r); goto done; }
        if (molora_adapter_n_modules(ad[i]) != molora_adapter_n_modules(ad[0])) { die("%s: adapts %d modules, %s adapts %d (all experts must adapt the same modules)", exp_dirs[i], molora_adapter_n_modules(ad[i]), exp_dirs[0], molora_adapter_n_modules(ad[0])); goto done; }
    }
    if ((r = molora_safetensors_open(gate, &ld, &gst))) { die_lib(gate, r); goto done; }
    nm = molora_adapter_n_modules(ad[0]);
    ot = (out_tensor *)calloc((size_t)nm * (size_t)(2 * n + 2) + 1, sizeof *ot);
    scal = (float *)calloc((size_t)nm * (size_t)n + 1, sizeof *scal);
    if (!ot || !scal) { die("compose: out of memory"); goto done; }
    for (l = 0; l < nm; l++) {
        const char *name = molora_adapter_module_name(ad[0], l);
        const char *bare = strncmp(name, "base_model.model.", 17) ? name : name + 17;
        molora_model_desc d0;
        const molora_layer_desc *L0;
        char gname[1200];
        size_t gi;
        molora_tensor_info ti;
        molora_adapter_get_desc(ad[0], &d0);
        L0 = &d0.layers[l];
        for (e = 0; e < n; e++) {
            molora_model_desc de;
            const molora_layer_desc *Le;
            int le = molora_adapter_find_module(ad[e], name);
            float s = 0;
            if (le < 0) { die("%s: module %s is not adapted (all experts must adapt the same modules)", exp_dirs[e], name); goto done; }
            molora_adapter_get_desc(ad[e], &de);
            Le = &de.layers[le];
            if (Le->d_in != L0->d_in || Le->d_out != L0->d_out) { die("%s: module %s is (%d, %d), %s has (%d, %d)", exp_dirs[e], name, Le->d_out, Le->d_in, exp_dirs[0], L0->d_out, L0->d_in); goto done; }
            molora_expert_get(mods[e], le, 0, NULL, &s);
            scal[(size_t)l * (size_t)n + (size_t)e] = s;
            if (s != scal[e]) same = 0;
            ot[nt].name = (char *)malloc(strlen(name) + 32); sprintf(ot[nt].name, "%s.lora_A.%d.weight", name, e);
            if (out_f32(&ot[nt++], Le->experts[0].A, Le->experts[0].A_type, Le->experts[0].rank, Le->d_in)) goto done;
            ot[nt].name = (char *)malloc(strlen(name) + 32); sprintf(ot[nt].name, "%s.lora_B.%d.weight", name, e);
            if (out_f32(&ot[nt++], Le->experts[0].B, Le->experts[0].B_type, Le->d_out, Le->experts[0].rank)) goto done;
        }
        snprintf(gname, sizeof gname, "%s.lora_gating.weight", name);
        if (molora_safetensors_find(gst, gname, &gi)) {
            snprintf(gname, sizeof gname, "%s.lora_gating.weight", bare);
            if (molora_safetensors_find(gst, gname, &gi)) { die("%s: tensor %s.lora_gating.weight not found", gate, name); goto done; }
        }
        molora_safetensors_get_info(gst, gi, &ti);
        if (ti.n_dims != 2 || ti.shape[0] != (uint64_t)n || ti.shape[1] != (uint64_t)L0->d_in) { die("%s: tensor %s should be (%d, %d)", gate, gname, n, L0->d_in); goto done; }
        ot[nt].name = (char *)malloc(strlen(name) + 32); sprintf(ot[nt].name, "%s.lora_gating.weight", name);
        if ((r = molora_safetensors_get_f32(gst, gi, &ot[nt].data))) { die_lib(gate, r); goto done; }
        ot[nt].rows = n; ot[nt].cols = L0->d_in; ot[nt].n = (size_t)n * (size_t)L0->d_in; nt++;
        snprintf(gname + strlen(gname) - 6, 8, "bias");
        if (!molora_safetensors_find(gst, gname, &gi)) {
            molora_safetensors_get_info(gst, gi, &ti);
            if (ti.n_dims != 1 || ti.shape[0] != (uint64_t)n) { die("%s: tensor %s should be (%d)", gate, gname, n); goto done; }
            ot[nt].name = (char *)malloc(strlen(name) + 32); sprintf(ot[nt].name, "%s.lora_gating.bias", name);
            if ((r = molora_safetensors_get_f32(gst, gi, &ot[nt].data))) { die_lib(gate, r); goto done; }
            ot[nt].rows = 0; ot[nt].cols = n; ot[nt].n = (size_t)n; nt++;
        }
    }
    if (mkdir(outd, 0755) != 0 && errno != EEXIST) { die("%s: cannot create directory: %s", outd, strerror(errno)); goto done; }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", outd);
    if (write_st(path, ot, nt)) goto done;
    snprintf(path, sizeof path, "%s/adapter_config.json", outd);
    if (!(f = fopen(path, "w"))) { die("%s: cannot write: %s", path, strerror(errno)); goto done; }
    fprintf(f, "{\n \"peft_type\": \"MOLORA\",\n \"routing\": \"%s\",\n", !strncmp(routing, "topk:", 5) ? "topk" : !strncmp(routing, "threshold:", 10) ? "threshold" : "dense");
    if (!strncmp(routing, "topk:", 5)) fprintf(f, " \"top_k\": %d,\n", atoi(routing + 5));
    if (!strncmp(routing, "threshold:", 10)) fprintf(f, " \"threshold\": %s,\n", routing + 10);
    fprintf(f, " \"experts\": [");
    for (e = 0; e < n; e++) { fprintf(f, "%s", e ? ", " : ""); jstr(f, exp_dirs[e]); }
    fprintf(f, "],\n \"expert_scaling\": ");
    if (same) {
        fprintf(f, "[");
        for (e = 0; e < n; e++) fprintf(f, "%s%.9g", e ? ", " : "", (double)scal[e]);
        fprintf(f, "]\n}\n");
    } else {
        fprintf(f, "{");
        for (l = 0; l < nm; l++) {
            fprintf(f, "%s\n  ", l ? "," : "");
            jstr(f, molora_adapter_module_name(ad[0], l));
            fprintf(f, ": [");
            for (e = 0; e < n; e++) fprintf(f, "%s%.9g", e ? ", " : "", (double)scal[(size_t)l * (size_t)n + (size_t)e]);
            fprintf(f, "]");
        }
        fprintf(f, "\n }\n}\n");
    }
    if (fclose(f)) { die("%s: write failed", path); goto done; }
    rc = 0;
done:
    if (ot) for (i = 0; i < nt + 1; i++) { free(ot[i].name); free(ot[i].own); }
    free(ot); free(scal);
    molora_safetensors_free(gst);
    for (i = 0; i < n; i++) { molora_model_free(mods[i]); molora_adapter_free(ad[i]); }
    return rc;
}

/* ---- alpha (DESIGN.md 4.2) ------------------------------------------------------------------
   molora alpha MODEL [--method fix_finger|ww] [--budget N] [--beta B] [--prefix P] [--json]
   Every 2-D float weight whose name (after --prefix) contains "layers.L." belongs to decoder
   layer L; matrices whose smaller side is under 10 are skipped and listed. */
static int layer_of_name(const char *name, const char *prefix)
{
    const char *p = name, *q;
    if (prefix && *prefix) {
        if (strncmp(name, prefix, strlen(prefix)) != 0) return -1;
        p = name + strlen(prefix);
    }
    for (q = strstr(p, "layers."); q; q = strstr(q + 1, "layers.")) {
        const char *d = q + 7;
        char *end;
        long L;
        if (q != p && q[-1] != '.') continue;
        if (*d < '0' || *d > '9') continue;
        L = strtol(d, &end, 10);
        if (*end == '.' && L >= 0 && L < 1000000) return (int)L;
    }
    return -1;
}

static int cmd_alpha(int argc, char **argv)
{
    const char *model = NULL, *prefix = "", *method = "fix_finger";
    int budget = MOLORA_ALPHA_DEFAULT_BUDGET, json = 0, i, rc = 1, n_mat = 0, n_skip = 0, n_layers = 0, progress;
    double beta = MOLORA_ALPHA_DEFAULT_BETA, total = 0;
    molora_load_desc d = load_desc();
    molora_safetensors *st = NULL;
    molora_alpha_options o;
    molora_result r;
    size_t nt, k, ws_bytes = 0;
    size_t *mat = NULL, *skip = NULL;
    int *mlayer = NULL, *experts = NULL, *topk = NULL;
    double *malpha = NULL, *lalpha = NULL;
    molora_alpha_fit *fits = NULL;
    void *ws = NULL;
    memset(&o, 0, sizeof o);
    for (i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (a[0] != '-' && !model) { model = a; continue; }
        if (!v) return die("alpha: %s needs a value", a);
        i++;
        if (!strcmp(a, "--method")) method = v;
        else if (!strcmp(a, "--prefix")) prefix = v;
        else if (!strcmp(a, "--budget")) {
            long b = strtol(v, &end, 10);
            if (*end || end == v || b < 0 || b > 1000000) return die("alpha: --budget %s: want an integer 0..1000000", v);
            budget = (int)b;
        } else if (!strcmp(a, "--beta")) {
            beta = strtod(v, &end);
            if (*end || end == v || !isfinite(beta) || beta <= 0) return die("alpha: --beta %s: want a finite number > 0", v);
        } else return die("alpha: unknown option %s", a);
    }
    if (!model) return die("usage: molora alpha MODEL [--method fix_finger|ww] [--budget N] [--beta B] [--prefix P] [--json]");
    if (!strcmp(method, "fix_finger")) o.method = MOLORA_ALPHA_FIX_FINGER;
    else if (!strcmp(method, "ww")) o.method = MOLORA_ALPHA_WW;
    else return die("alpha: --method %s: want fix_finger or ww", method);
    o.log = on_log;
    if ((r = molora_safetensors_open(model, &d, &st)) != MOLORA_RESULT_SUCCESS) return die_lib(model, r);
    nt = molora_safetensors_n_tensors(st);
    mat = (size_t *)calloc(nt + 1, sizeof *mat); skip = (size_t *)calloc(nt + 1, sizeof *skip);
    mlayer = (int *)calloc(nt + 1, sizeof *mlayer); malpha = (double *)calloc(nt + 1, sizeof *malpha);
    fits = (molora_alpha_fit *)calloc(nt + 1, sizeof *fits);
    if (!mat || !skip || !mlayer || !malpha || !fits) { die("alpha: out of memory"); goto done; }
    /* 1. which tensors are decoder-layer matrices */
    for (k = 0; k < nt; k++) {
        molora_tensor_info ti;
        int L;
        molora_safetensors_get_info(st, k, &ti);
        L = layer_of_name(ti.name, prefix);
        if (ti.n_dims != 2 || L < 0) continue;
        if (ti.dtype != MOLORA_DTYPE_F32 && ti.dtype != MOLORA_DTYPE_F16 && ti.dtype != MOLORA_DTYPE_BF16) { skip[n_skip++] = k; continue; }
        if (ti.shape[0] < 10 || ti.shape[1] < 10) { skip[n_skip++] = k; continue; }
        if (ti.shape[0] > 1000000 || ti.shape[1] > 1000000) { die("alpha: %s: %s: %llu x %llu is too large", model, ti.name,
                                                                 (unsigned long long)ti.shape[0], (unsigned long long)ti.shape[1]); goto done; }
        mat[n_mat] = k; mlayer[n_mat++] = L;
        if (L + 1 > n_layers) n_layers = L + 1;
        total += (double)ti.shape[0] * (double)ti.shape[1];
        {   /* one workspace for the largest matrix */
            size_t b = 0;
            if ((r = molora_alpha_workspace_size((int)ti.shape[0], (int)ti.shape[1], &o, &b)) != MOLORA_RESULT_SUCCESS) { die_lib(ti.name, r); goto done; }
            if (b > ws_bytes) ws_bytes = b;
        }
    }
    if (n_mat == 0) { die("alpha: %s: no 2-D weight named like \"%slayers.L.\" with both sides >= 10", model, prefix); goto done; }
    if (ws_bytes && !(ws = malloc(ws_bytes))) { die("alpha: out of memory (%zu bytes of workspace)", ws_bytes); goto done; }
    o.workspace = ws; o.workspace_size = ws_bytes;
    progress = total > 3e7;   /* large models: a line per matrix on stderr */
    /* 2. alpha of every matrix */
    for (i = 0; i < n_mat; i++) {
        molora_tensor_info ti;
        const float *w = NULL;
        molora_safetensors_get_info(st, mat[i], &ti);
        if (progress) fprintf(stderr, "alpha: [%d/%d] %s (%llu x %llu)\n", i + 1, n_mat, ti.name,
                              (unsigned long long)ti.shape[0], (unsigned long long)ti.shape[1]);
        g_detail[0] = 0;
        if ((r = molora_safetensors_get_f32(st, mat[i], &w)) != MOLORA_RESULT_SUCCESS) { die_lib(ti.name, r); goto done; }
        if ((r = molora_alpha_matrix(w, (int)ti.shape[0], (int)ti.shape[1], &o, &fits[i])) != MOLORA_RESULT_SUCCESS) {
            die_lib(ti.name, r);
            goto done;
        }
        malpha[i] = fits[i].alpha;
        if (!isfinite(malpha[i])) { die("alpha: %s: the fitted tail is all equal values (alpha is infinite)", ti.name); goto done; }
    }
    /* 3. per-layer mean and the allocation */
    lalpha = (double *)calloc((size_t)n_layers, sizeof *lalpha);
    experts = (int *)calloc((size_t)n_layers, sizeof *experts); topk = (int *)calloc((size_t)n_layers, sizeof *topk);
    if (!lalpha || !experts || !topk) { die("alpha: out of memory"); goto done; }
    g_detail[0] = 0;
    if ((r = molora_alpha_layer_mean(malpha, mlayer, n_mat, n_layers, lalpha)) != MOLORA_RESULT_SUCCESS) {
        for (i = 0; i < n_layers; i++) {
            int j, any = 0;
            for (j = 0; j < n_mat; j++) any |= mlayer[j] == i;
            if (!any) { die("alpha: %s: decoder layer %d has no weight matrix (layers 0..%d expected)", model, i, n_layers - 1); goto done; }
        }
        die_lib("alpha: per-layer mean", r);
        goto done;
    }
    r = molora_alpha_allocate(lalpha, n_layers, budget, beta, experts, topk);
    if (r != MOLORA_RESULT_SUCCESS && r != MOLORA_RESULT_NEGATIVE_EXPERTS) { die_lib("alpha: allocation", r); goto done; }
    /* 4. output */
    if (json) {
        printf("{\"matrices\": [");
        for (i = 0; i < n_mat; i++) {
            molora_tensor_info ti;
            molora_safetensors_get_info(st, mat[i], &ti);
            printf("%s\n  {\"name\": ", i ? "," : "");
            jstr(stdout, ti.name);
            printf(", \"layer\": %d, \"alpha\": %.17g, \"xmin\": %.17g, \"ks\": %.17g, \"n_eigs\": %d, \"n_tail\": %d}",
                   mlayer[i], fits[i].alpha, fits[i].xmin, fits[i].ks, fits[i].n_eigs, fits[i].n_tail);
        }
        printf("],\n \"layers\": [");
        for (i = 0; i < n_layers; i++)
            printf("%s\n  {\"layer\": %d, \"alpha\": %.17g, \"experts\": %d, \"top_k\": %d}", i ? "," : "", i, lalpha[i], experts[i], topk[i]);
        printf("],\n \"skipped\": [");
        for (i = 0; i < n_skip; i++) {
            molora_tensor_info ti;
            molora_safetensors_get_info(st, skip[i], &ti);
            printf("%s", i ? ", " : "");
            jstr(stdout, ti.name);
        }
        printf("]}\n");
    } else {
        printf("%-56s %5s %13s %9s %11s %8s %6s %6s\n", "matrix", "layer", "shape", "alpha", "xmin", "ks", "n_eigs", "n_tail");
        for (i = 0; i < n_mat; i++) {
            molora_tensor_info ti;
            char shape[32];
            molora_safetensors_get_info(st, mat[i], &ti);
            snprintf(shape, sizeof shape, "%llux%llu", (unsigned long long)ti.shape[0], (unsigned long long)ti.shape[1]);
            printf("%-56s %5d %13s %9.4f %11.4g %8.4f %6d %6d\n", ti.name, mlayer[i], shape, fits[i].alpha, fits[i].xmin,
                   fits[i].ks, fits[i].n_eigs, fits[i].n_tail);
        }
        printf("\n%5s %9s %7s %5s    (method %s, budget %d, beta %g)\n", "layer", "alpha", "experts", "top_k", method, budget, beta);
        for (i = 0; i < n_layers; i++) printf("%5d %9.4f %7d %5d\n", i, lalpha[i], experts[i], topk[i]);
        for (i = 0; i < n_skip; i++) {
            molora_tensor_info ti;
            molora_safetensors_get_info(st, skip[i], &ti);
            printf("%s%s", i ? ", " : "\nskipped (a side under 10, or not float): ", ti.name);
        }
        if (n_skip) printf("\n");
    }
    if (r == MOLORA_RESULT_NEGATIVE_EXPERTS) { die("alpha: budget %d with beta %g needs a negative expert count (printed as upstream computes it)", budget, beta); goto done; }
    rc = 0;
done:
    free(mat); free(skip); free(mlayer); free(malpha); free(fits); free(lalpha); free(experts); free(topk); free(ws);
    molora_safetensors_free(st);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) return die("usage: molora inspect|forward|compose|alpha ... (see DESIGN.md 4.2)");
    if (!strcmp(argv[1], "inspect")) return cmd_inspect(argc - 2, argv + 2);
    if (!strcmp(argv[1], "forward")) return cmd_forward(argc - 2, argv + 2);
    if (!strcmp(argv[1], "compose")) return cmd_compose(argc - 2, argv + 2);
    if (!strcmp(argv[1], "alpha")) return cmd_alpha(argc - 2, argv + 2);
    return die("unknown command %s (inspect, forward, compose, alpha)", argv[1]);
}

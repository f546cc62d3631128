/* molora: the command of DESIGN.md 4.2 (inspect, forward, compose; alpha comes later).
   Every bad input ends with a non-zero exit and one line on stderr naming the file, tensor or
   key and what is wrong. Build: make (build/molora). */
#define MOLORA_IMPLEMENTATION
#include "molora.h"

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
    FILE *f = fopen(path, "rb");
    unsigned char pre[12];
    size_t hlen, n, got;
    char *h = NULL, *p;
    long r = -1, c = -1;
    int ver;
    *data = NULL;
    if (!f) return die("%s: cannot open: %s", path, strerror(errno));
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6)) { fclose(f); return die("%s: not a .npy file (bad magic)", path); }
    ver = pre[6];
    if (ver < 1 || ver > 3 || pre[7] != 0) { fclose(f); return die("%s: .npy format version %d.%d not supported (1.0-3.0)", path, pre[6], pre[7]); }
    if (ver == 1) hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    else {
        if (fread(pre + 10, 1, 2, f) != 2) { fclose(f); return die("%s: truncated .npy header", path); }
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    }
    if (hlen > 1 << 20 || !(h = (char *)malloc(hlen + 1)) || fread(h, 1, hlen, f) != hlen) { free(h); fclose(f); return die("%s: truncated or oversized .npy header", path); }
    h[hlen] = 0;
    if (!strstr(h, "'descr': '<f4'") && !strstr(h, "'descr': '|f4'")) {
        p = strstr(h, "'descr': '");
        die("%s: dtype %.*s is not float32 ('<f4')", path, p && strchr(p + 10, '\'') ? (int)(strchr(p + 10, '\'') - (p + 10)) : 1, p ? p + 10 : "?");
        free(h); fclose(f); return 1;
    }
    if (!strstr(h, "'fortran_order': False")) { free(h); fclose(f); return die("%s: Fortran-order arrays are not supported (need C order)", path); }
    p = strstr(h, "'shape': (");
    if (!p || sscanf(p + 10, "%ld, %ld)", &r, &c) != 2 || p[10] == ')' || strchr(p + 10, ')') < strchr(p + 10, ',') ||
        (strchr(strchr(p + 10, ',') + 1, ',') && strchr(strchr(p + 10, ',') + 1, ',') < strchr(p + 10, ')'))) {
        free(h); fclose(f); return die("%s: array must have rank 2 (T, d_in)", path);
    }
    free(h);
    if (r < 0 || c < 1 || r > 1 << 24 || c > 1 << 24) { fclose(f); return die("%s: shape (%ld, %ld) out of range", path, r, c); }
    n = (size_t)r * (size_t)c;
    *data = (float *)malloc(n ? n * sizeof(float) : 1);
    if (!*data) { fclose(f); return die("%s: out of memory", path); }
    got = fread(*data, sizeof(float), n, f);
    if (got != n || fgetc(f) != EOF) { fclose(f); free(*data); *data = NULL; return die("%s: data size does not match shape (%ld, %ld)", path, r, c); }
    fclose(f);
    *rows = (int)r; *cols = (int)c;
    return 0;
}
static int npy_write(const char *path, const float *data, int rows, int cols)
{
    char h[128];
    int len = snprintf(h, sizeof h, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols);
    int total = 10 + len + 1, pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    if (!f) return die("%s: cannot write: %s", path, strerror(errno));
    pre[8] = (unsigned char)((len + 1 + pad) & 255); pre[9] = (unsigned char)((len + 1 + pad) >> 8);
    fwrite(pre, 1, 10, f);
    fwrite(h, 1, (size_t)len, f);
    while (pad--) fputc(' ', f);
    fputc('\n', f);
    fwrite(data, sizeof(float), (size_t)rows * (size_t)cols, f);
    if (fclose(f) != 0) return die("%s: write failed", path);
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
static int cmd_inspect(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0, i, l, n;
    molora_adapter *a;
    molora_model *m;
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
    if ((r = molora_model_init(&md, &m))) { molora_adapter_free(a); return die_lib(dir, r); }
    n = molora_adapter_n_modules(a);
    if (json) printf("{\"layout\": \"%s\", \"modules\": [", molora_layout_name(molora_adapter_layout(a)));
    else printf("layout %s, %d modules\n", molora_layout_name(molora_adapter_layout(a)), n);
    for (l = 0; l < n; l++) {
        molora_layer_info li;
        int e;
        molora_layer_get_info(m, l, &li);
        if (json) {
            printf("%s\n  {\"name\": ", l ? "," : "");
            jstr(stdout, molora_adapter_module_name(a, l));
            printf(", \"layer\": %d, \"d_in\": %d, \"d_out\": %d, \"n_experts\": %d, \"ranks\": [", l, li.d_in, li.d_out, li.n_experts);
            for (e = 0; e < li.n_experts; e++) { int rk = 0; molora_expert_get(m, l, e, &rk, NULL); printf("%s%d", e ? ", " : "", rk); }
            printf("], \"scaling\": [");
            for (e = 0; e < li.n_experts; e++) { float s = 0; molora_expert_get(m, l, e, NULL, &s); printf("%s%.9g", e ? ", " : "", (double)s); }
            printf("], \"routing\": \"%s\", \"top_k\": %d, \"threshold\": %.9g, \"tau_max\": %.9g, \"dtype\": \"%s\"}",
                   routing_name(li.routing), li.top_k, (double)li.threshold, (double)li.tau_max, molora_dtype_name(molora_adapter_module_dtype(a, l)));
        } else {
            printf("%3d %s  d_in %d d_out %d  N %d  ranks", l, molora_adapter_module_name(a, l), li.d_in, li.d_out, li.n_experts);
            for (e = 0; e < li.n_experts; e++) { int rk = 0; float s = 0; molora_expert_get(m, l, e, &rk, &s); printf(" %d(s=%g)", rk, (double)s); }
            printf("  %s", routing_name(li.routing));
            if (li.routing == MOLORA_ROUTING_TOPK) printf(" k=%d", li.top_k);
            if (li.routing == MOLORA_ROUTING_THRESHOLD) printf(" threshold=%g", (double)li.threshold);
            if (li.routing == MOLORA_ROUTING_ADAMOLE) printf(" tau_max=%g", (double)li.tau_max);
            printf("  %s\n", molora_dtype_name(molora_adapter_module_dtype(a, l)));
        }
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
    molora_model_free(m);
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
    if (base) {
        char name[1024];
        const char *bare = strncmp(module, "base_model.model.", 17) ? module : module + 17;
        size_t idx;
        molora_tensor_info ti;
        if ((r = molora_safetensors_open(base, &ld, &bst))) { die_lib(base, r); goto done; }
        snprintf(name, sizeof name, "%s.weight", bare);
        if (molora_safetensors_find(bst, name, &idx)) { die("%s: tensor %s not found", base, name); goto done; }
        molora_safetensors_get_info(bst, idx, &ti);
        if (ti.n_dims != 2 || ti.shape[0] != (uint64_t)L.d_out || ti.shape[1] != (uint64_t)L.d_in) { die("%s: tensor %s has the wrong shape for module %s (%d, %d)", base, name, module, L.d_out, L.d_in); goto done; }
        if ((r = molora_safetensors_get_f32(bst, idx, &L.W0))) { die_lib(base, r); goto done; }
        snprintf(name, sizeof name, "%s.bias", bare);
        if (!molora_safetensors_find(bst, name, &idx)) {
            molora_safetensors_get_info(bst, idx, &ti);
            if (ti.n_dims != 1 || ti.shape[0] != (uint64_t)L.d_out) { die("%s: tensor %s should have shape (%d)", base, name, L.d_out); goto done; }
            if ((r = molora_safetensors_get_f32(bst, idx, &L.bias))) { die_lib(base, r); goto done; }
        }
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
typedef struct out_tensor { char *name; const float *data; size_t n; int rows, cols; } out_tensor;

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
            ot[nt].data = Le->experts[0].A; ot[nt].rows = Le->experts[0].rank; ot[nt].cols = Le->d_in; ot[nt].n = (size_t)ot[nt].rows * (size_t)ot[nt].cols; nt++;
            ot[nt].name = (char *)malloc(strlen(name) + 32); sprintf(ot[nt].name, "%s.lora_B.%d.weight", name, e);
            ot[nt].data = Le->experts[0].B; ot[nt].rows = Le->d_out; ot[nt].cols = Le->experts[0].rank; ot[nt].n = (size_t)ot[nt].rows * (size_t)ot[nt].cols; nt++;
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
    if (ot) for (i = 0; i < nt + 1; i++) free(ot[i].name);
    free(ot); free(scal);
    molora_safetensors_free(gst);
    for (i = 0; i < n; i++) { molora_model_free(mods[i]); molora_adapter_free(ad[i]); }
    return rc;
}

/* ---- alpha (DESIGN.md 4.2) ------------------------------------------------------------------
   molora alpha MODEL [--method fix_finger|ww|ww077] [--budget N] [--beta B] [--prefix P]
                      [--layers PATTERN] [--upstream-fp16] [--json]
   Decoder layers are found by a name pattern with {L} (molora_alpha_layer_index): --layers, or
   the family molora_alpha_family_detect picks (t5, bart, bert, llama, gpt2). A layer's matrices are its
   2-D float tensors named "...weight" (not "weight" of a norm, an embedding or T5's
   relative_attention_bias); a matrix whose smaller side is under the method's minimum (10, or
   WeightWatcher 0.7.7's min_evals 8 for ww077) is skipped and listed. With two layer sets (T5)
   the layers are numbered first set first and share one budget. */
#define ALPHA_USAGE "usage: molora alpha MODEL [--method fix_finger|ww|ww077] [--budget N] [--beta B] [--prefix P] " \
                    "[--layers PATTERN] [--upstream-fp16] [--json]"

typedef struct alpha_args {
    const char *model, *prefix, *method, *layers;
    int budget, json, fp16;
    double beta;
    molora_alpha_options o;
} alpha_args;

typedef struct alpha_sets {
    const char *family;           /* NULL with --layers */
    const char *pat[2];
    int n, first[3];              /* layer numbers of set s: first[s] .. first[s + 1] - 1 */
} alpha_sets;

static int alpha_parse(int argc, char **argv, alpha_args *A)
{
    int i;
    memset(A, 0, sizeof *A);
    A->prefix = ""; A->method = "fix_finger"; A->budget = MOLORA_ALPHA_DEFAULT_BUDGET; A->beta = MOLORA_ALPHA_DEFAULT_BETA;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;
        if (!strcmp(a, "--json")) { A->json = 1; continue; }
        if (!strcmp(a, "--upstream-fp16")) { A->fp16 = 1; continue; }
        if (a[0] != '-' && !A->model) { A->model = a; continue; }
        if (!v) return die("alpha: %s needs a value", a);
        i++;
        if (!strcmp(a, "--method")) A->method = v;
        else if (!strcmp(a, "--prefix")) A->prefix = v;
        else if (!strcmp(a, "--layers")) A->layers = v;
        else if (!strcmp(a, "--budget")) {
            long b = strtol(v, &end, 10);
            if (*end || end == v || b < 0 || b > 1000000) return die("alpha: --budget %s: want an integer 0..1000000", v);
            A->budget = (int)b;
        } else if (!strcmp(a, "--beta")) {
            A->beta = strtod(v, &end);
            if (*end || end == v || !isfinite(A->beta) || A->beta <= 0) return die("alpha: --beta %s: want a finite number > 0", v);
        } else return die("alpha: unknown option %s", a);
    }
    if (!A->model) return die(ALPHA_USAGE);
    if (!strcmp(A->method, "fix_finger")) A->o.method = MOLORA_ALPHA_FIX_FINGER;
    else if (!strcmp(A->method, "ww")) A->o.method = MOLORA_ALPHA_WW;
    else if (!strcmp(A->method, "ww077")) A->o.method = MOLORA_ALPHA_WW_077;
    else return die("alpha: --method %s: want fix_finger, ww or ww077", A->method);
    if (A->layers && molora_alpha_pattern_check(A->layers) != MOLORA_RESULT_SUCCESS)
        return die("alpha: --layers \"%s\": want a name pattern with exactly one {L} for the layer index (at most %d bytes), "
                   "e.g. \"encoder.layer.{L}.\"", A->layers, MOLORA_ALPHA_PATTERN_MAX);
    A->o.round_to_f16 = A->fp16;
    A->o.log = on_log;
    return 0;
}

/* The name after --prefix, or NULL when it does not start with it. */
static const char *alpha_strip(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(name, prefix, n) ? NULL : name + n;
}

/* The layer sets: --layers, or the family whose patterns match the most names. */
static int alpha_pick_sets(const alpha_args *A, molora_safetensors *st, alpha_sets *S)
{
    size_t nt = molora_safetensors_n_tensors(st), k, n = 0;
    const char **names;
    int f, count;
    const molora_alpha_family *t = molora_alpha_families(&count);
    memset(S, 0, sizeof *S);
    if (A->layers) { S->pat[0] = A->layers; S->n = 1; return 0; }
    if (!(names = (const char **)calloc(nt + 1, sizeof *names))) return die("alpha: out of memory");
    for (k = 0; k < nt; k++) {
        molora_tensor_info ti;
        molora_safetensors_get_info(st, k, &ti);
        if ((names[n] = alpha_strip(ti.name, A->prefix))) n++;
    }
    f = molora_alpha_family_detect(names, n);
    free(names);
    if (f < 0) {
        char known[256] = "";
        int i;
        for (i = 0; i < count; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s %s%s%s", i ? ", " : "", t[i].name,
                     t[i].sets[0], t[i].sets[1] ? " + " : "", t[i].sets[1] ? t[i].sets[1] : "");
        return die("alpha: %s: no 2-D weight named like \"%s\" + a known layer pattern (%s); name one with --layers",
                   A->model, A->prefix, known);
    }
    S->family = t[f].name; S->pat[0] = t[f].sets[0]; S->pat[1] = t[f].sets[1]; S->n = t[f].sets[1] ? 2 : 1;
    return 0;
}

/* Set and local layer of a name (-1: none). */
static int alpha_layer(const alpha_sets *S, const char *name, int *set)
{
    int s, L;
    for (s = 0; s < S->n; s++)
        if ((L = molora_alpha_layer_index(name, S->pat[s])) >= 0) { *set = s; return L; }
    return -1;
}

/* A layer matrix by name: "...weight", not a norm, an embedding or T5's relative position table. */
static int alpha_is_matrix_name(const char *name)
{
    size_t n = strlen(name);
    if (n < 6 || strcmp(name + n - 6, "weight") || (n > 6 && name[n - 7] != '.')) return 0;
    return !strstr(name, "norm") && !strstr(name, "embed") && !strstr(name, "relative_attention_bias");
}

static void alpha_print_sets(const alpha_sets *S)
{
    int s;
    printf("layers: %s", S->family ? S->family : "--layers");
    for (s = 0; s < S->n; s++)
        printf("%s \"%s\" = layers %d..%d", s ? "," : "", S->pat[s], S->first[s], S->first[s + 1] - 1);
    printf("%s\n\n", S->n > 1 ? " (one budget over both stacks)" : "");
}

static void alpha_json_sets(const alpha_sets *S)
{
    int s;
    printf(" \"family\": ");
    if (S->family) jstr(stdout, S->family); else printf("null");
    printf(", \"patterns\": [");
    for (s = 0; s < S->n; s++) { printf("%s", s ? ", " : ""); jstr(stdout, S->pat[s]); }
    printf("],\n");
}

/* What cmd_alpha found and computed; arrays of nt + 1 entries (matrices) or n_layers (layers). */
typedef struct alpha_plan {
    size_t *mat, *skip;           /* tensor indices of the layer matrices, of the skipped ones */
    int *mlayer, *mset;           /* each matrix's global layer and its set                   */
    molora_alpha_fit *fits;
    double *malpha, *lalpha;
    int *experts, *topk;
    int n_mat, n_skip, n_layers;
    size_t ws_bytes;              /* scratch of the largest matrix                            */
} alpha_plan;

static void alpha_plan_free(alpha_plan *P)
{
    free(P->mat); free(P->skip); free(P->mlayer); free(P->mset); free(P->fits); free(P->malpha);
    free(P->lalpha); free(P->experts); free(P->topk);
}

/* 1. which tensors are layer matrices, by set and local layer; then global layer numbers */
static int alpha_select(const alpha_args *A, molora_safetensors *st, alpha_sets *S, alpha_plan *P)
{
    size_t nt = molora_safetensors_n_tensors(st), k;
    int i, s = 0, nl[2] = {0, 0}, min_side = A->o.method == MOLORA_ALPHA_WW_077 ? 8 : 10;
    molora_result r;
    P->mat = (size_t *)calloc(nt + 1, sizeof *P->mat); P->skip = (size_t *)calloc(nt + 1, sizeof *P->skip);
    P->mlayer = (int *)calloc(nt + 1, sizeof *P->mlayer); P->mset = (int *)calloc(nt + 1, sizeof *P->mset);
    P->malpha = (double *)calloc(nt + 1, sizeof *P->malpha); P->fits = (molora_alpha_fit *)calloc(nt + 1, sizeof *P->fits);
    if (!P->mat || !P->skip || !P->mlayer || !P->mset || !P->malpha || !P->fits) return die("alpha: out of memory");
    for (k = 0; k < nt; k++) {
        molora_tensor_info ti;
        const char *nm;
        int L = -1;
        size_t b = 0;
        molora_safetensors_get_info(st, k, &ti);
        if ((nm = alpha_strip(ti.name, A->prefix))) L = alpha_layer(S, nm, &s);
        if (ti.n_dims != 2 || L < 0 || !alpha_is_matrix_name(nm)) continue;
        if ((ti.dtype != MOLORA_DTYPE_F32 && ti.dtype != MOLORA_DTYPE_F16 && ti.dtype != MOLORA_DTYPE_BF16) ||
            ti.shape[0] < (uint64_t)min_side || ti.shape[1] < (uint64_t)min_side) { P->skip[P->n_skip++] = k; continue; }
        if (ti.shape[0] > 1000000 || ti.shape[1] > 1000000)
            return die("alpha: %s: %s: %llu x %llu is too large", A->model, ti.name, (unsigned long long)ti.shape[0],
                       (unsigned long long)ti.shape[1]);
        P->mat[P->n_mat] = k; P->mlayer[P->n_mat] = L; P->mset[P->n_mat++] = s;
        if (L + 1 > nl[s]) nl[s] = L + 1;
        if ((r = molora_alpha_workspace_size((int)ti.shape[0], (int)ti.shape[1], &A->o, &b)) != MOLORA_RESULT_SUCCESS) return die_lib(ti.name, r);
        if (b > P->ws_bytes) P->ws_bytes = b;
    }
    if (P->n_mat == 0)
        return die("alpha: %s: no 2-D weight matches %s \"%s%s\"%s with both sides >= %d", A->model,
                   A->layers ? "--layers" : "the detected pattern", A->prefix, S->pat[0], S->n > 1 ? " (or its second stack)" : "", min_side);
    S->first[0] = 0; S->first[1] = nl[0]; S->first[2] = nl[0] + nl[1];
    P->n_layers = S->first[S->n];
    for (i = 0; i < P->n_mat; i++) P->mlayer[i] += S->first[P->mset[i]];   /* first set first */
    return 0;
}

/* 2. alpha of every matrix */
static int alpha_fit_all(const alpha_args *A, molora_safetensors *st, alpha_plan *P, double total)
{
    int i, progress = total > 3e7;   /* large models: a line per matrix on stderr */
    molora_result r;
    for (i = 0; i < P->n_mat; i++) {
        molora_tensor_info ti;
        const float *w = NULL;
        molora_safetensors_get_info(st, P->mat[i], &ti);
        if (progress) fprintf(stderr, "alpha: [%d/%d] %s (%llu x %llu)\n", i + 1, P->n_mat, ti.name,
                              (unsigned long long)ti.shape[0], (unsigned long long)ti.shape[1]);
        g_detail[0] = 0;
        if ((r = molora_safetensors_get_f32(st, P->mat[i], &w)) != MOLORA_RESULT_SUCCESS) return die_lib(ti.name, r);
        if ((r = molora_alpha_matrix(w, (int)ti.shape[0], (int)ti.shape[1], &A->o, &P->fits[i])) != MOLORA_RESULT_SUCCESS)
            return die_lib(ti.name, r);
        P->malpha[i] = P->fits[i].alpha;
        if (!isfinite(P->malpha[i])) return die("alpha: %s: the fitted tail is all equal values (alpha is infinite)", ti.name);
    }
    return 0;
}

/* 3. per-layer mean and the allocation; NEGATIVE_EXPERTS is kept in *res (printed, then refused) */
static int alpha_allocate(const alpha_args *A, const alpha_sets *S, alpha_plan *P, molora_result *res)
{
    int i, j, L = P->n_layers;
    molora_result r;
    P->lalpha = (double *)calloc((size_t)L, sizeof *P->lalpha);
    P->experts = (int *)calloc((size_t)L, sizeof *P->experts); P->topk = (int *)calloc((size_t)L, sizeof *P->topk);
    if (!P->lalpha || !P->experts || !P->topk) return die("alpha: out of memory");
    g_detail[0] = 0;
    if ((r = molora_alpha_layer_mean(P->malpha, P->mlayer, P->n_mat, L, P->lalpha)) != MOLORA_RESULT_SUCCESS) {
        for (i = 0; i < L; i++) {
            int any = 0, si = i >= S->first[1];
            for (j = 0; j < P->n_mat; j++) any |= P->mlayer[j] == i;
            if (!any) return die("alpha: %s: layer %d of \"%s\" has no weight matrix (layers 0..%d expected)", A->model,
                                 i - S->first[si], S->pat[si], S->first[si + 1] - S->first[si] - 1);
        }
        return die_lib("alpha: per-layer mean", r);
    }
    r = molora_alpha_allocate(P->lalpha, L, A->budget, A->beta, P->experts, P->topk);
    if (r != MOLORA_RESULT_SUCCESS && r != MOLORA_RESULT_NEGATIVE_EXPERTS) return die_lib("alpha: allocation", r);
    *res = r;
    return 0;
}

static void alpha_print_json(const alpha_args *A, const alpha_sets *S, const alpha_plan *P, molora_safetensors *st)
{
    int i;
    printf("{");
    alpha_json_sets(S);
    printf(" \"method\": \"%s\", \"upstream_fp16\": %s,\n \"matrices\": [", A->method, A->fp16 ? "true" : "false");
    for (i = 0; i < P->n_mat; i++) {
        molora_tensor_info ti;
        const molora_alpha_fit *f = &P->fits[i];
        molora_safetensors_get_info(st, P->mat[i], &ti);
        printf("%s\n  {\"name\": ", i ? "," : "");
        jstr(stdout, ti.name);
        printf(", \"layer\": %d, \"alpha\": %.17g, \"xmin\": %.17g, \"ks\": %.17g, \"n_eigs\": %d, \"n_tail\": %d}",
               P->mlayer[i], f->alpha, f->xmin, f->ks, f->n_eigs, f->n_tail);
    }
    printf("],\n \"layers\": [");
    for (i = 0; i < P->n_layers; i++) {
        int si = i >= S->first[1];
        printf("%s\n  {\"layer\": %d, \"set\": ", i ? "," : "", i);
        jstr(stdout, S->pat[si]);
        printf(", \"index\": %d, \"alpha\": %.17g, \"experts\": %d, \"top_k\": %d}", i - S->first[si], P->lalpha[i],
               P->experts[i], P->topk[i]);
    }
    printf("],\n \"skipped\": [");
    for (i = 0; i < P->n_skip; i++) {
        molora_tensor_info ti;
        molora_safetensors_get_info(st, P->skip[i], &ti);
        printf("%s", i ? ", " : "");
        jstr(stdout, ti.name);
    }
    printf("]}\n");
}

static void alpha_print_table(const alpha_args *A, const alpha_sets *S, const alpha_plan *P, molora_safetensors *st)
{
    int i;
    alpha_print_sets(S);
    printf("%-56s %5s %13s %9s %11s %8s %6s %6s\n", "matrix", "layer", "shape", "alpha", "xmin", "ks", "n_eigs", "n_tail");
    for (i = 0; i < P->n_mat; i++) {
        molora_tensor_info ti;
        const molora_alpha_fit *f = &P->fits[i];
        char shape[32];
        molora_safetensors_get_info(st, P->mat[i], &ti);
        snprintf(shape, sizeof shape, "%llux%llu", (unsigned long long)ti.shape[0], (unsigned long long)ti.shape[1]);
        printf("%-56s %5d %13s %9.4f %11.4g %8.4f %6d %6d\n", ti.name, P->mlayer[i], shape, f->alpha, f->xmin, f->ks,
               f->n_eigs, f->n_tail);
    }
    printf("\n%5s %9s %7s %5s    (method %s%s, budget %d, beta %g)\n", "layer", "alpha", "experts", "top_k", A->method,
           A->fp16 ? ", weights rounded to float16" : "", A->budget, A->beta);
    for (i = 0; i < P->n_layers; i++) printf("%5d %9.4f %7d %5d\n", i, P->lalpha[i], P->experts[i], P->topk[i]);
    for (i = 0; i < P->n_skip; i++) {
        molora_tensor_info ti;
        molora_safetensors_get_info(st, P->skip[i], &ti);
        printf("%s%s", i ? ", " : "\nskipped (a side under the method's minimum, or not float): ", ti.name);
    }
    if (P->n_skip) printf("\n");
}

static int cmd_alpha(int argc, char **argv)
{
    alpha_args A;
    alpha_sets S;
    alpha_plan P;
    molora_load_desc d = load_desc();
    molora_safetensors *st = NULL;
    molora_result r, res = MOLORA_RESULT_SUCCESS;
    void *ws = NULL;
    double total = 0;
    int i, rc = 1;
    memset(&P, 0, sizeof P);
    if (alpha_parse(argc, argv, &A)) return 1;
    if ((r = molora_safetensors_open(A.model, &d, &st)) != MOLORA_RESULT_SUCCESS) return die_lib(A.model, r);
    if (alpha_pick_sets(&A, st, &S) || alpha_select(&A, st, &S, &P)) goto done;
    if (P.ws_bytes && !(ws = malloc(P.ws_bytes))) { die("alpha: out of memory (%zu bytes of workspace)", P.ws_bytes); goto done; }
    A.o.workspace = ws; A.o.workspace_size = P.ws_bytes;
    for (i = 0; i < P.n_mat; i++) {
        molora_tensor_info ti;
        molora_safetensors_get_info(st, P.mat[i], &ti);
        total += (double)ti.shape[0] * (double)ti.shape[1];
    }
    if (alpha_fit_all(&A, st, &P, total) || alpha_allocate(&A, &S, &P, &res)) goto done;
    if (A.json) alpha_print_json(&A, &S, &P, st); else alpha_print_table(&A, &S, &P, st);
    if (res == MOLORA_RESULT_NEGATIVE_EXPERTS) {
        die("alpha: budget %d with beta %g needs a negative expert count (printed as upstream computes it)", A.budget, A.beta);
        goto done;
    }
    rc = 0;
done:
    alpha_plan_free(&P);
    free(ws);
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

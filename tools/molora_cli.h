/* molora_cli.h: the argument parsers of the molora command (tools/molora.c).
   Each parser is a pure function: argv in, an options struct out, or a non-zero return and one
   message in the struct's err (no I/O, no allocation), so tests/fuzz/fuzz_args.c can reach it.
   Values are parsed strictly: a whole-string decimal number in range (no sign, no space, no
   trailing text), a single-valued flag at most once, list flags (--expert) once per value. */
#ifndef MOLORA_CLI_H
#define MOLORA_CLI_H

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>   /* vsnprintf only */
#include <stdlib.h>
#include <string.h>

#define CLI_ERR_SIZE    320
#define CLI_MAX_EXPERTS 64
#define CLI_MASK_LIMIT  65536   /* mask indices are checked against N after load; this bounds the set */

typedef enum { CLI_ROUTE_NONE, CLI_ROUTE_DENSE, CLI_ROUTE_TOPK, CLI_ROUTE_THRESHOLD, CLI_ROUTE_ADAMOLE,
               CLI_ROUTE_ARROW } cli_route_kind;
typedef struct {
    cli_route_kind kind;   /* NONE: not given */
    int top_k;             /* TOPK: >= 1 (forward checks <= N after load, compose against --expert count) */
    float threshold;       /* THRESHOLD: finite */
    const char *text;      /* the spec as given, for messages */
    float temperature;     /* ARROW (compose): > 0, default 1; its top_k defaults to 3 */
} cli_routing;

/* read: --read given (load files with MOLORA_LOAD_READ instead of mapping them) */
typedef struct {
    const char *dir;
    int json, read;
    const char *module_order;   /* X-LoRA: a file of module paths, one a line */
    char err[CLI_ERR_SIZE];
} cli_inspect_opts;
typedef struct {
    const char *dir, *hidden, *output, *module_order;
    int read;
    char err[CLI_ERR_SIZE];
} cli_xlora_opts;

typedef struct {
    const char *dir, *module, *input, *output, *base, *weights_out;
    const char *weights;                                     /* --weights W.npy (T, N), used as given */
    cli_routing routing;
    const char *tau_text, *temperature_text, *mask_text;   /* as given (NULL: not given) */
    float tau_max, temperature;
    int read;
    int precision;                                           /* --precision: 0 auto, 1 f32, 2 bf16 */
    int mask_max;                                            /* largest masked index, -1: none */
    unsigned char mask_bits[CLI_MASK_LIMIT / 8];             /* bit e set: expert e masked */
    char err[CLI_ERR_SIZE];
} cli_forward_opts;

typedef struct {
    const char *experts[CLI_MAX_EXPERTS];
    int n_experts;
    const char *gate, *out;
    cli_routing routing;   /* NONE means dense */
    int read;
    char err[CLI_ERR_SIZE];
    const char *prototypes;                   /* ARROW: --prototypes FILE, or NULL (exact ones)     */
    const char *generals[CLI_MAX_EXPERTS];    /* ARROW: --general DIR ... (GenKnowSub)              */
    int n_general;
} cli_compose_opts;

typedef struct {
    const char *model, *prefix, *method, *layers;
    int budget, json, fp16, read, budget_set, beta_set;
    double beta;
    char err[CLI_ERR_SIZE];
} cli_alpha_opts;

/* ---- numbers ----------------------------------------------------------------------------- */
/* a decimal integer in lo..hi (lo >= 0), the whole string: no sign, space or trailing text */
static int cli_int(const char *s, long lo, long hi, long *v)
{
    char *end;
    long x;
    if (!s || s[0] < '0' || s[0] > '9') return 0;
    errno = 0;
    x = strtol(s, &end, 10);
    if (errno || *end || x < lo || x > hi) return 0;
    *v = x;
    return 1;
}
/* a finite decimal number, the whole string: optional '-', digits or '.', no hex, inf or nan */
static int cli_real(const char *s, double *v)
{
    const char *p = s;
    char *end;
    double x;
    if (!s) return 0;
    if (*p == '-') p++;
    if (!((*p >= '0' && *p <= '9') || (*p == '.' && p[1] >= '0' && p[1] <= '9'))) return 0;
    if (strpbrk(s, "xXpP")) return 0;
    errno = 0;
    x = strtod(s, &end);
    if (errno || *end || !isfinite(x)) return 0;
    *v = x;
    return 1;
}
/* cli_real that also fits a float: no overflow to Inf, no non-zero value flushed to 0 */
static int cli_float(const char *s, float *v)
{
    double d;
    float f;
    if (!cli_real(s, &d)) return 0;
    f = (float)d;
    if (!isfinite(f) || (d != 0 && f == 0)) return 0;
    *v = f;
    return 1;
}

/* ---- the argv walk ------------------------------------------------------------------------ */
typedef struct { int argc; char **argv; int i; const char *cmd; char *err; } cli_args;

/* one line: control characters of the echoed arguments (a newline in a path) shown as '?' */
static void cli_one_line(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}
static int cli_fail(cli_args *c, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(c->err, CLI_ERR_SIZE, "%s: ", c->cmd);
    va_start(ap, fmt);
    vsnprintf(c->err + n, (size_t)(CLI_ERR_SIZE - n), fmt, ap);
    va_end(ap);
    cli_one_line(c->err);
    return -1;
}
static const char *cli_arg(const cli_args *c) { return c->argv[c->i]; }
static int cli_is(const cli_args *c, const char *flag) { return !strcmp(c->argv[c->i], flag); }
/* the value of the current flag into *slot: it must not be set yet, and a value must follow */
static int cli_value(cli_args *c, const char **slot)
{
    const char *flag = cli_arg(c);
    if (*slot) return cli_fail(c, "%s given twice", flag);
    if (c->i + 1 >= c->argc || !c->argv[c->i + 1][0]) return cli_fail(c, "%s needs a value", flag);
    *slot = c->argv[++c->i];
    return 0;
}
static int cli_switch(cli_args *c, int *flag)
{
    if (*flag) return cli_fail(c, "%s given twice", cli_arg(c));
    *flag = 1;
    return 0;
}
/* the one positional argument (a path): not an option, at most one */
static int cli_positional(cli_args *c, const char **slot, const char *what)
{
    const char *a = cli_arg(c);
    if (a[0] == '-') return cli_fail(c, "unknown option %s", a);
    if (!a[0]) return cli_fail(c, "empty %s", what);
    if (*slot) return cli_fail(c, "unexpected argument %s (%s is %s)", a, what, *slot);
    *slot = a;
    return 0;
}
static int cli_init(cli_args *c, int argc, char **argv, const char *cmd, char *err)
{
    c->argc = argc; c->argv = argv; c->i = 0; c->cmd = cmd; c->err = err;
    err[0] = 0;
    return 0;
}

/* ---- values ------------------------------------------------------------------------------ */
/* dense | topk:K | threshold:V | adamole (adamole only where allowed) */
static int cli_routing_parse(cli_args *c, const char *s, int allow_adamole, cli_routing *r)
{
    long k;
    r->text = s;
    if (!strcmp(s, "dense")) r->kind = CLI_ROUTE_DENSE;
    else if (allow_adamole && !strcmp(s, "adamole")) r->kind = CLI_ROUTE_ADAMOLE;
    else if (!strncmp(s, "topk:", 5)) {
        if (!cli_int(s + 5, 1, INT_MAX, &k)) return cli_fail(c, "--routing %s: K must be a whole number >= 1", s);
        r->kind = CLI_ROUTE_TOPK; r->top_k = (int)k;
    } else if (!strncmp(s, "threshold:", 10)) {
        if (!cli_float(s + 10, &r->threshold)) return cli_fail(c, "--routing %s: V must be a finite decimal number", s);
        r->kind = CLI_ROUTE_THRESHOLD;
    } else {
        const char *want = allow_adamole ? "dense, topk:K, threshold:V or adamole" : "dense, topk:K or threshold:V";
        return cli_fail(c, "--routing %s: expected %s", s, want);
    }
    return 0;
}
/* expert e is in the --mask set (e < CLI_MASK_LIMIT) */
static int cli_mask_has(const cli_forward_opts *o, long e)
{
    return (o->mask_bits[e / 8] & (1u << (e % 8))) != 0;
}
/* I,J,...: decimal indices, no empty item, sign or space, no index twice */
static int cli_mask_parse(cli_args *c, const char *s, cli_forward_opts *o)
{
    const char *p = s;
    o->mask_max = -1;
    memset(o->mask_bits, 0, sizeof o->mask_bits);
    for (;;) {
        long e = 0;
        const char *start = p;
        for (; *p >= '0' && *p <= '9'; p++) {
            e = e * 10 + (*p - '0');
            if (e >= CLI_MASK_LIMIT) {
                int digits = (int)strspn(start, "0123456789");
                return cli_fail(c, "--mask %s: expert index %.*s is too large", s, digits, start);
            }
        }
        if (p == start && (*p == ',' || !*p))
            return cli_fail(c, "--mask %s: empty item (indices separated by single commas)", s);
        if (p == start || (*p && *p != ','))
            return cli_fail(c, "--mask %s: indices are digits only (no spaces or signs)", s);
        if (cli_mask_has(o, e)) return cli_fail(c, "--mask %s: index %ld given twice", s, e);
        o->mask_bits[e / 8] |= (unsigned char)(1u << (e % 8));
        if (e > o->mask_max) o->mask_max = (int)e;
        if (!*p) return 0;
        p++;
    }
}

/* ---- the commands ------------------------------------------------------------------------- */
/* molora inspect ADAPTER_DIR [--json] [--read] */
static int cli_parse_inspect(int argc, char **argv, cli_inspect_opts *o)
{
    cli_args c;
    memset(o, 0, sizeof *o);
    cli_init(&c, argc, argv, "inspect", o->err);
    for (; c.i < argc; c.i++) {
        if (cli_is(&c, "--json")) { if (cli_switch(&c, &o->json)) return -1; }
        else if (cli_is(&c, "--read")) { if (cli_switch(&c, &o->read)) return -1; }
        else if (cli_is(&c, "--module-order")) { if (cli_value(&c, &o->module_order)) return -1; }
        else if (cli_positional(&c, &o->dir, "ADAPTER_DIR")) return -1;
    }
    if (!o->dir) return cli_fail(&c, "usage: molora inspect ADAPTER_DIR [--json] [--read] [--module-order FILE]");
    return 0;
}
/* molora xlora XLORA_DIR --hidden H.npy --output S.npy [--module-order FILE] [--read] */
static int cli_parse_xlora(int argc, char **argv, cli_xlora_opts *o)
{
    cli_args c;
    memset(o, 0, sizeof *o);
    cli_init(&c, argc, argv, "xlora", o->err);
    for (; c.i < argc; c.i++) {
        const char **slot = NULL;
        if (cli_is(&c, "--read")) { if (cli_switch(&c, &o->read)) return -1; continue; }
        if (cli_is(&c, "--hidden")) slot = &o->hidden;
        else if (cli_is(&c, "--output")) slot = &o->output;
        else if (cli_is(&c, "--module-order")) slot = &o->module_order;
        if (slot) { if (cli_value(&c, slot)) return -1; }
        else if (cli_positional(&c, &o->dir, "XLORA_DIR")) return -1;
    }
    if (!o->dir || !o->hidden || !o->output)
        return cli_fail(&c, "usage: molora xlora XLORA_DIR --hidden H.npy --output S.npy [--module-order FILE] "
                            "[--read]");
    return 0;
}

/* molora forward ADAPTER_DIR --module NAME --input X.npy --output Y.npy [--base MODEL]
   [--routing R] [--tau-max V] [--temperature V] [--mask I,J,...] [--weights-out W.npy] [--weights W.npy]
   [--precision auto|f32|bf16] [--read] */
static int cli_parse_forward(int argc, char **argv, cli_forward_opts *o)
{
    cli_args c;
    const char *routing = NULL, *precision = NULL;
    memset(o, 0, sizeof *o);
    o->mask_max = -1;
    cli_init(&c, argc, argv, "forward", o->err);
    for (; c.i < argc; c.i++) {
        const char **slot = NULL;
        if (cli_is(&c, "--read")) { if (cli_switch(&c, &o->read)) return -1; continue; }
        if (cli_is(&c, "--module")) slot = &o->module;
        else if (cli_is(&c, "--input")) slot = &o->input;
        else if (cli_is(&c, "--output")) slot = &o->output;
        else if (cli_is(&c, "--base")) slot = &o->base;
        else if (cli_is(&c, "--routing")) slot = &routing;
        else if (cli_is(&c, "--tau-max")) slot = &o->tau_text;
        else if (cli_is(&c, "--temperature")) slot = &o->temperature_text;
        else if (cli_is(&c, "--mask")) slot = &o->mask_text;
        else if (cli_is(&c, "--weights-out")) slot = &o->weights_out;
        else if (cli_is(&c, "--weights")) slot = &o->weights;
        else if (cli_is(&c, "--precision")) slot = &precision;
        if (slot) { if (cli_value(&c, slot)) return -1; }
        else if (cli_positional(&c, &o->dir, "ADAPTER_DIR")) return -1;
    }
    if (!o->dir || !o->module || !o->input || !o->output)
        return cli_fail(&c, "usage: molora forward ADAPTER_DIR --module NAME --input X.npy --output Y.npy [...]");
    if (precision && strcmp(precision, "auto") && strcmp(precision, "f32") && strcmp(precision, "bf16"))
        return cli_fail(&c, "--precision %s: expected auto, f32 or bf16", precision);
    o->precision = !precision || !strcmp(precision, "auto") ? 0 : !strcmp(precision, "f32") ? 1 : 2;
    if (routing && cli_routing_parse(&c, routing, 1, &o->routing)) return -1;
    if (o->tau_text && (!cli_float(o->tau_text, &o->tau_max) || o->tau_max < 0))
        return cli_fail(&c, "--tau-max %s: expected a finite decimal number >= 0", o->tau_text);
    if (o->temperature_text && (!cli_float(o->temperature_text, &o->temperature) || o->temperature <= 0))
        return cli_fail(&c, "--temperature %s: expected a finite decimal number > 0", o->temperature_text);
    if (o->mask_text && cli_mask_parse(&c, o->mask_text, o)) return -1;
    if (o->weights && (routing || o->tau_text || o->temperature_text))
        return cli_fail(&c, "--weights replaces the routing: it takes no --routing, --tau-max or --temperature");
    return 0;
}

/* compose's arrow[:K[:T]]: K a whole number >= 1 (default 3), T a finite number > 0 (default 1) */
static int cli_arrow_parse(cli_args *c, const char *s, cli_routing *r)
{
    const char *k = s[5] == ':' ? s + 6 : NULL, *t = k ? strchr(k, ':') : NULL;
    char kbuf[24];
    long v;
    r->text = s; r->kind = CLI_ROUTE_ARROW; r->top_k = 3; r->temperature = 1;
    if (s[5] && !k) return cli_fail(c, "--routing %s: expected arrow, arrow:K or arrow:K:T", s);
    if (k) {
        size_t n = t ? (size_t)(t - k) : strlen(k);
        if (n >= sizeof kbuf) return cli_fail(c, "--routing %s: K must be a whole number >= 1", s);
        memcpy(kbuf, k, n); kbuf[n] = 0;
        if (!cli_int(kbuf, 1, INT_MAX, &v)) return cli_fail(c, "--routing %s: K must be a whole number >= 1", s);
        r->top_k = (int)v;
    }
    if (t && (!cli_float(t + 1, &r->temperature) || !(r->temperature > 0)))
        return cli_fail(c, "--routing %s: T must be a finite decimal number > 0", s);
    return 0;
}
/* the flags of Arrow: --gate only without it, --prototypes and --general only with it, k <= N */
static int cli_compose_check(cli_args *c, cli_compose_opts *o, const char *routing)
{
    if (o->routing.kind != CLI_ROUTE_ARROW) {
        if (o->prototypes || o->n_general)
            return cli_fail(c, "%s needs --routing arrow", o->prototypes ? "--prototypes" : "--general");
        if (o->routing.kind == CLI_ROUTE_TOPK && o->routing.top_k > o->n_experts)
            return cli_fail(c, "--routing %s: k must be in 1..%d", routing, o->n_experts);
        return 0;
    }
    if (o->gate)
        return cli_fail(c, "--gate is not used with --routing arrow (it routes by the experts' prototypes)");
    if (o->routing.top_k > o->n_experts)
        return cli_fail(c, "--routing %s: k = %d but there are %d experts (k must be in 1..%d; the default is 3)",
                        routing, o->routing.top_k, o->n_experts, o->n_experts);
    return 0;
}

/* molora compose --expert DIR [--expert DIR ...] --gate GATE.safetensors --out DIR [--routing R] [--read]
   molora compose --expert DIR [--expert DIR ...] --routing arrow[:K[:T]] [--prototypes FILE]
                  [--general DIR ...] --out DIR [--read] */
static int cli_parse_compose(int argc, char **argv, cli_compose_opts *o)
{
    cli_args c;
    const char *routing = NULL;
    memset(o, 0, sizeof *o);
    cli_init(&c, argc, argv, "compose", o->err);
    for (; c.i < argc; c.i++) {
        if (cli_is(&c, "--expert")) {
            const char *e = NULL;
            if (o->n_experts == CLI_MAX_EXPERTS) return cli_fail(&c, "at most %d experts", CLI_MAX_EXPERTS);
            if (cli_value(&c, &e)) return -1;
            o->experts[o->n_experts++] = e;
        } else if (cli_is(&c, "--general")) {
            const char *g = NULL;
            if (o->n_general == CLI_MAX_EXPERTS) return cli_fail(&c, "at most %d general adapters", CLI_MAX_EXPERTS);
            if (cli_value(&c, &g)) return -1;
            o->generals[o->n_general++] = g;
        } else if (cli_is(&c, "--prototypes")) { if (cli_value(&c, &o->prototypes)) return -1; }
        else if (cli_is(&c, "--gate")) { if (cli_value(&c, &o->gate)) return -1; }
        else if (cli_is(&c, "--out")) { if (cli_value(&c, &o->out)) return -1; }
        else if (cli_is(&c, "--routing")) { if (cli_value(&c, &routing)) return -1; }
        else if (cli_is(&c, "--read")) { if (cli_switch(&c, &o->read)) return -1; }
        else if (cli_arg(&c)[0] == '-') return cli_fail(&c, "unknown option %s", cli_arg(&c));
        else return cli_fail(&c, "unexpected argument %s", cli_arg(&c));
    }
    if (routing && !strncmp(routing, "arrow", 5)) { if (cli_arrow_parse(&c, routing, &o->routing)) return -1; }
    else if (routing && cli_routing_parse(&c, routing, 0, &o->routing)) return -1;
    if (!o->n_experts || !o->out || (!o->gate && o->routing.kind != CLI_ROUTE_ARROW))
        return cli_fail(&c, "usage: molora compose --expert DIR [--expert DIR ...] --gate GATE.safetensors --out DIR "
                            "[--routing ...] (or --routing arrow[:K[:T]] without --gate)");
    return cli_compose_check(&c, o, routing);
}

/* molora alpha MODEL [--method fix_finger|ww|ww077] [--layers PATTERN] [--upstream-fp16] [--budget N]
                      [--beta B] [--prefix P] [--json] [--read] */
static int cli_parse_alpha(int argc, char **argv, cli_alpha_opts *o)
{
    cli_args c;
    const char *budget = NULL, *beta = NULL;
    long b;
    memset(o, 0, sizeof *o);
    cli_init(&c, argc, argv, "alpha", o->err);
    for (; c.i < argc; c.i++) {
        const char **slot = NULL;
        if (cli_is(&c, "--json")) { if (cli_switch(&c, &o->json)) return -1; continue; }
        if (cli_is(&c, "--upstream-fp16")) { if (cli_switch(&c, &o->fp16)) return -1; continue; }
        if (cli_is(&c, "--read")) { if (cli_switch(&c, &o->read)) return -1; continue; }
        if (cli_is(&c, "--method")) slot = &o->method;
        else if (cli_is(&c, "--layers")) slot = &o->layers;
        else if (cli_is(&c, "--prefix")) slot = &o->prefix;
        else if (cli_is(&c, "--budget")) slot = &budget;
        else if (cli_is(&c, "--beta")) slot = &beta;
        if (slot) { if (cli_value(&c, slot)) return -1; }
        else if (cli_positional(&c, &o->model, "MODEL")) return -1;
    }
    if (!o->model)
        return cli_fail(&c, "usage: molora alpha MODEL [--method fix_finger|ww|ww077] [--layers PATTERN] "
                            "[--upstream-fp16] [--budget N] [--beta B] [--prefix P] [--json] [--read]");
    if (!o->method) o->method = "fix_finger";
    if (!o->prefix) o->prefix = "";
    if (strcmp(o->method, "fix_finger") && strcmp(o->method, "ww") && strcmp(o->method, "ww077"))
        return cli_fail(&c, "--method %s: want fix_finger, ww or ww077", o->method);
    if (budget && !cli_int(budget, 0, 1000000, &b))
        return cli_fail(&c, "--budget %s: want an integer 0..1000000", budget);
    if (budget) { o->budget = (int)b; o->budget_set = 1; }
    if (beta && (!cli_real(beta, &o->beta) || o->beta <= 0))
        return cli_fail(&c, "--beta %s: want a finite number > 0", beta);
    o->beta_set = beta != NULL;
    return 0;
}

#endif /* MOLORA_CLI_H */

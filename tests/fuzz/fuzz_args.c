/* libFuzzer harness: the argument parsers of every molora command (tools/molora_cli.h) on
   arbitrary argv. The input is split at NUL bytes into arguments; the first byte picks the
   command so each parser sees the whole rest. A parser must return 0 with its options
   consistent, or non-zero with one non-empty, newline-free message. */
#include "tools/molora_cli.h"
#include <stdint.h>

#define MAX_ARGS 256

static void check_message(const char *err)
{
    if (!err[0] || strchr(err, '\n') || !memchr(err, 0, CLI_ERR_SIZE)) __builtin_trap();
}
static void check_routing(const cli_routing *r, int max_k)
{
    if (r->kind == CLI_ROUTE_TOPK && (r->top_k < 1 || (max_k && r->top_k > max_k))) __builtin_trap();
    if (r->kind == CLI_ROUTE_THRESHOLD && !isfinite(r->threshold)) __builtin_trap();
}
static void run_forward(int argc, char **argv)
{
    static cli_forward_opts o;
    int e;
    if (cli_parse_forward(argc, argv, &o)) { check_message(o.err); return; }
    if (!o.dir || !o.module || !o.input || !o.output) __builtin_trap();
    check_routing(&o.routing, 0);
    if (o.tau_text && !(isfinite(o.tau_max) && o.tau_max >= 0)) __builtin_trap();
    if (o.temperature_text && !(isfinite(o.temperature) && o.temperature > 0)) __builtin_trap();
    if (!o.mask_text && o.mask_max != -1) __builtin_trap();
    for (e = 0; o.mask_text && e < CLI_MASK_LIMIT; e++)   /* the largest masked index is mask_max */
        if ((o.mask_bits[e / 8] >> (e % 8) & 1) && e > o.mask_max) __builtin_trap();
}
static void run_compose(int argc, char **argv)
{
    static cli_compose_opts o;
    if (cli_parse_compose(argc, argv, &o)) { check_message(o.err); return; }
    if (o.n_experts < 1 || o.n_experts > CLI_MAX_EXPERTS || !o.out) __builtin_trap();
    if (!o.gate != (o.routing.kind == CLI_ROUTE_ARROW)) __builtin_trap();   /* --gate exactly when not arrow */
    if (o.routing.kind != CLI_ROUTE_ARROW && (o.prototypes || o.n_general)) __builtin_trap();
    if (o.routing.kind == CLI_ROUTE_ARROW &&
        (o.routing.top_k < 1 || o.routing.top_k > o.n_experts || !(o.routing.temperature > 0) ||
         !isfinite(o.routing.temperature)))
        __builtin_trap();
    check_routing(&o.routing, o.n_experts);
}
static void run_inspect(int argc, char **argv)
{
    static cli_inspect_opts o;
    if (cli_parse_inspect(argc, argv, &o)) { check_message(o.err); return; }
    if (!o.dir) __builtin_trap();
}
static void run_alpha(int argc, char **argv)
{
    static cli_alpha_opts o;
    if (cli_parse_alpha(argc, argv, &o)) { check_message(o.err); return; }
    if (!o.model || !o.method || !o.prefix || o.budget < 0 || o.budget > 1000000) __builtin_trap();
    if (o.beta_set && !(isfinite(o.beta) && o.beta > 0)) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf, *argv[MAX_ARGS + 1];
    int argc = 0;
    size_t i, start = 1;
    if (size < 1) return 0;
    buf = (char *)malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    for (i = 1; i <= size && argc < MAX_ARGS; i++)
        if (buf[i] == 0) { argv[argc++] = buf + start; start = i + 1; }
    argv[argc] = NULL;
    switch (data[0] % 4) {
    case 0: run_forward(argc, argv); break;
    case 1: run_compose(argc, argv); break;
    case 2: run_inspect(argc, argv); break;
    default: run_alpha(argc, argv); break;
    }
    free(buf);
    return 0;
}

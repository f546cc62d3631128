/* quickstart: one mixture-of-LoRA-experts layer built in code from random weights, one forward call,
   and the result checked against the plain formula
       y = W0 x + b + sum_i w_i s B_i A_i x,   w = top-2 of softmax(Wg x), renormalised (s = alpha / r)
   computed here in double. (How fast it runs: bench/molora_bench --quickstart.)
       cc -O2 -I. examples/quickstart.c -lopenblas -lm && ./a.out */
#define MOLORA_IMPLEMENTATION
#include "molora.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { D = 512, N = 4, R = 8, K = 2, T = 8 };   /* width, experts, rank, experts per token, tokens */

static unsigned long long rng = 88172645463325252ull;
static float *rnd_vec(size_t n, float scale)   /* uniform in [-scale, scale) (xorshift64) */
{
    float *v = (float *)malloc(n * sizeof *v);
    size_t i;
    if (!v) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (i = 0; i < n; i++) {
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
        v[i] = (float)((double)(rng >> 11) / (double)(1ull << 52) - 1.0) * scale;
    }
    return v;
}
static double dot(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* the plain formula for token x: routing weights w (N) and output y (D) */
static void reference(const float *W0, const float *b, const float *Wg, float *const *A, float *const *B,
                      const float *x, double *w, double *y)
{
    double logit[N], ax[R], sum = 0;
    int i, j, o, top[K];
    for (i = 0; i < N; i++) { logit[i] = dot(Wg + (size_t)i * D, x, D); w[i] = 0; }
    for (j = 0; j < K; j++) {   /* the K largest logits, ties to the lowest index (w[i] = 1: taken) */
        top[j] = -1;
        for (i = 0; i < N; i++)
            if (w[i] == 0 && (top[j] < 0 || logit[i] > logit[top[j]])) top[j] = i;
        w[top[j]] = 1;
    }
    for (j = 0; j < K; j++) sum += w[top[j]] = exp(logit[top[j]] - logit[top[0]]);
    for (j = 0; j < K; j++) w[top[j]] /= sum;   /* softmax over the selected experts */
    for (o = 0; o < D; o++) y[o] = dot(W0 + (size_t)o * D, x, D) + b[o];
    for (i = 0; i < N; i++) {
        if (w[i] == 0) continue;
        for (j = 0; j < R; j++) ax[j] = dot(A[i] + (size_t)j * D, x, D);
        for (o = 0; o < D; o++) {
            double bax = 0;
            for (j = 0; j < R; j++) bax += B[i][(size_t)o * R + j] * ax[j];
            y[o] += w[i] * (16.0 / R) * bax;
        }
    }
}

int main(void)
{
    float *W0 = rnd_vec((size_t)D * D, 1.0f / sqrtf(D)), *b = rnd_vec(D, 0.1f), *Wg = rnd_vec((size_t)N * D, 0.2f);
    float *X = rnd_vec((size_t)T * D, 1.0f), Y[T * D], W[T * N], *A[N], *B[N];
    molora_expert_desc ex[N] = {{0}};
    molora_layer_desc ld = {0};
    molora_model_desc md = {0};
    molora_forward_args fa = {0};
    molora_model *m;
    size_t ws_size;
    double err_y = 0, err_w = 0, w[N], y[D];
    int i, t;
    for (i = 0; i < N; i++) {   /* expert i: A (R, D), B (D, R), scaling lora_alpha / rank = 16 / 8 */
        A[i] = rnd_vec((size_t)R * D, 1.0f / sqrtf(D));
        B[i] = rnd_vec((size_t)D * R, 0.05f);
        ex[i].rank = R; ex[i].A = A[i]; ex[i].B = B[i]; ex[i].lora_alpha = 16;
    }
    ld.d_in = D; ld.d_out = D; ld.n_experts = N; ld.experts = ex;
    ld.W0 = W0; ld.bias = b; ld.gate_weight = Wg; ld.routing = MOLORA_ROUTING_TOPK; ld.top_k = K;
    md.n_layers = 1; md.layers = &ld;   /* W0 and b are borrowed: they must outlive the model */
    if (molora_model_init(&md, &m) != MOLORA_RESULT_SUCCESS) return 1;
    if (molora_workspace_size(m, T, &ws_size) != MOLORA_RESULT_SUCCESS) return 1;
    fa.n_tokens = T; fa.x = X; fa.y = Y; fa.weights_out = W; fa.workspace = malloc(ws_size);
    fa.workspace_size = ws_size;
    if (!fa.workspace || molora_forward(m, &fa) != MOLORA_RESULT_SUCCESS) return 1;
    for (t = 0; t < T; t++) {
        reference(W0, b, Wg, A, B, X + (size_t)t * D, w, y);
        for (i = 0; i < N; i++) err_w = fmax(err_w, fabs(W[t * N + i] - w[i]));
        for (i = 0; i < D; i++) err_y = fmax(err_y, fabs(Y[t * D + i] - y[i]) / (1 + fabs(y[i])));
    }
    printf("molora %s quickstart: d = %d, %d experts of rank %d, top-%d routing, %d tokens\n",
           MOLORA_VERSION_STRING, D, N, R, K, T);
    printf("token 0 routing weights:");
    for (i = 0; i < N; i++) printf(" %.4f", W[i]);
    printf("\nagainst the plain formula in double: max weight error %.1e, max relative output error %.1e: %s\n",
           err_w, err_y, err_w < 1e-5 && err_y < 1e-4 ? "ok" : "FAILED");
    molora_model_free(m);
    free(fa.workspace); free(W0); free(b); free(Wg); free(X);
    for (i = 0; i < N; i++) { free(A[i]); free(B[i]); }
    return err_w < 1e-5 && err_y < 1e-4 ? 0 : 1;
}

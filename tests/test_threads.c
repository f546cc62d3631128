/* Thread safety: one model shared by 8 threads, each with its own workspace, running forward
   with different routing rules, masks, batch sizes and ith/nth splits for a few seconds
   (MOLORA_TEST_SECONDS, default 2); every result must equal the single-threaded run bit for bit.
   OpenBLAS is set to one thread here, by the test: the library never changes it. */
#define TEST_RNG_SEED 0x1234567887654321ull
#include "test_util.h"   /* cmocka, rnd / rnd_vec_f (this suite draws in float), now_ms */

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "molora.h"

#ifndef MOLORA_NO_BLAS
void openblas_set_num_threads(int);
#endif

enum { N_LAYERS = 5, N_EXP = 8, D_IN = 67, D_OUT = 53, T_MAX = 40, N_JOBS = 60, N_THREADS = 8 };

typedef struct job {
    int layer, T, mask_mode, nth;
    float *X, *Y_ref, *W_ref;
    uint8_t *mask;
} job;

static molora_model *g_model;
static job g_jobs[N_JOBS];
static double g_seconds = 2.0;
static long g_runs[N_THREADS], g_bad[N_THREADS];

/* a workspace of ws_size bytes followed by CANARY bytes of 0xA5 that no call may touch */
enum { CANARY = 64 };
static void *ws_new(size_t ws_size)
{
    unsigned char *ws = malloc(ws_size + CANARY);
    memset(ws + ws_size, 0xA5, CANARY);
    return ws;
}
static int canary_intact(const void *ws, size_t ws_size)
{
    const unsigned char *c = (const unsigned char *)ws + ws_size;
    int i;
    for (i = 0; i < CANARY; i++) if (c[i] != 0xA5) return 0;
    return 1;
}

/* run job j (all nth shares, one after the other) into Y and W with workspace ws */
static molora_result run_job(const job *jb, void *ws, size_t ws_size, float *Y, float *W)
{
    molora_forward_args a;
    molora_result r = MOLORA_RESULT_SUCCESS;
    int k;
    memset(&a, 0, sizeof a);
    a.layer = jb->layer; a.n_tokens = jb->T; a.x = jb->X; a.y = Y; a.weights_out = W;
    a.expert_mask = jb->mask; a.mask_per_token = jb->mask_mode == 2;
    a.workspace = ws; a.workspace_size = ws_size;
    for (k = 0; k < (jb->nth ? jb->nth : 1) && r == MOLORA_RESULT_SUCCESS; k++) {
        a.ith = k; a.nth = jb->nth;
        r = molora_forward(g_model, &a);
    }
    return r;
}

static void *worker(void *arg)
{
    int id = (int)(size_t)arg, j = id * 7;
    size_t ws_size;
    void *ws;
    float *Y = malloc(sizeof(float) * T_MAX * D_OUT), *W = malloc(sizeof(float) * T_MAX * N_EXP);
    double end = now_ms() + g_seconds * 1e3;
    if (molora_workspace_size(g_model, T_MAX, &ws_size) != MOLORA_RESULT_SUCCESS) {
        g_bad[id]++; free(Y); free(W);
        return NULL;
    }
    ws = ws_new(ws_size);
    while (now_ms() < end) {
        const job *jb = &g_jobs[j % N_JOBS];
        if (run_job(jb, ws, ws_size, Y, W) != MOLORA_RESULT_SUCCESS ||
            memcmp(Y, jb->Y_ref, sizeof(float) * jb->T * D_OUT) != 0 ||
            memcmp(W, jb->W_ref, sizeof(float) * jb->T * N_EXP) != 0 || !canary_intact(ws, ws_size))
            g_bad[id]++;
        g_runs[id]++;
        j += 1 + id;
    }
    free(ws); free(Y); free(W);
    return NULL;
}

static void test_shared_model_many_threads(void **state)
{
    static const molora_routing rules[N_LAYERS] = {MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_THRESHOLD,
                                                   MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_MOLE_OUTPUT};
    static const int ranks[N_EXP] = {4, 8, 1, 16, 4, 2, 8, 3};
    molora_expert_desc ex[N_EXP];
    molora_layer_desc ld[N_LAYERS];
    molora_model_desc md;
    float *A[N_EXP], *B[N_EXP], *W0, *Wg, *wt, *e;
    pthread_t th[N_THREADS];
    size_t ws_size;
    void *ws;
    long runs = 0, bad = 0;
    int i, l, j;
    const char *sec = getenv("MOLORA_TEST_SECONDS");
    (void)state;
    if (sec && atof(sec) > 0) g_seconds = atof(sec);
#ifndef MOLORA_NO_BLAS
    openblas_set_num_threads(1);
#endif
    for (i = 0; i < N_EXP; i++) {
        A[i] = rnd_vec_f((size_t)ranks[i] * D_IN, 0.3f);
        B[i] = rnd_vec_f((size_t)D_OUT * ranks[i], 0.3f);
        memset(&ex[i], 0, sizeof ex[i]);
        ex[i].rank = ranks[i]; ex[i].A = A[i]; ex[i].B = B[i]; ex[i].lora_alpha = 8;
    }
    W0 = rnd_vec_f((size_t)D_OUT * D_IN, 0.2f); Wg = rnd_vec_f((size_t)N_EXP * D_IN, 0.5f);
    wt = rnd_vec_f(D_IN, 0.3f); e = rnd_vec_f((size_t)N_EXP * N_EXP * D_OUT, 1.0f);
    for (l = 0; l < N_LAYERS; l++) {
        memset(&ld[l], 0, sizeof ld[l]);
        ld[l].d_in = D_IN; ld[l].d_out = D_OUT; ld[l].n_experts = N_EXP; ld[l].experts = ex; ld[l].W0 = W0;
        ld[l].routing = rules[l]; ld[l].gate_weight = Wg; ld[l].threshold_weight = wt; ld[l].mole_gate = e;
        ld[l].top_k = 3; ld[l].threshold = 0.1f;
    }
    memset(&md, 0, sizeof md);
    md.n_layers = N_LAYERS; md.layers = ld;
    assert_int_equal(molora_model_init(&md, &g_model), MOLORA_RESULT_SUCCESS);
    /* the jobs and their single-threaded results */
    assert_int_equal(molora_workspace_size(g_model, T_MAX, &ws_size), MOLORA_RESULT_SUCCESS);
    ws = ws_new(ws_size);
    for (j = 0; j < N_JOBS; j++) {
        job *jb = &g_jobs[j];
        static const int Ts[] = {1, 2, 7, 16, 17, 40};
        jb->layer = j % N_LAYERS; jb->T = Ts[(j / N_LAYERS) % 6]; jb->mask_mode = (j / 30) % 3;
        jb->nth = (j % 4 == 3) ? 3 : 0;
        jb->X = rnd_vec_f((size_t)jb->T * D_IN, 1.0f);
        jb->Y_ref = malloc(sizeof(float) * jb->T * D_OUT); jb->W_ref = malloc(sizeof(float) * jb->T * N_EXP);
        jb->mask = NULL;
        if (jb->mask_mode) {
            size_t nm = jb->mask_mode == 2 ? (size_t)jb->T * N_EXP : N_EXP, q;
            jb->mask = malloc(nm);
            for (q = 0; q < nm; q++) jb->mask[q] = (float)rnd() > -0.5f;
        }
        assert_int_equal(run_job(jb, ws, ws_size, jb->Y_ref, jb->W_ref), MOLORA_RESULT_SUCCESS);
        assert_true(canary_intact(ws, ws_size));
    }
    free(ws);
    for (i = 0; i < N_THREADS; i++) pthread_create(&th[i], NULL, worker, (void *)(size_t)i);
    for (i = 0; i < N_THREADS; i++) pthread_join(th[i], NULL);
    for (i = 0; i < N_THREADS; i++) { runs += g_runs[i]; bad += g_bad[i]; }
    print_message("  %d threads, %.1f s: %ld forward calls, %ld differed from the single-threaded run or wrote past "
                  "the workspace\n",
                  N_THREADS, g_seconds, runs, bad);
    assert_true(runs > N_THREADS);
    assert_int_equal(bad, 0);
    for (j = 0; j < N_JOBS; j++) {
        free(g_jobs[j].X); free(g_jobs[j].Y_ref); free(g_jobs[j].W_ref); free(g_jobs[j].mask);
    }
    for (i = 0; i < N_EXP; i++) { free(A[i]); free(B[i]); }
    free(W0); free(Wg); free(wt); free(e);
    molora_model_free(g_model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_shared_model_many_threads)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

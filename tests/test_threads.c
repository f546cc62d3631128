/* Thread safety: one model shared by 8 threads, each with its own workspace, running forward
   with different routing rules, masks, batch sizes, ith/nth splits and parallel_for hooks for a few
   seconds (MOLORA_TEST_SECONDS, default 2); every result must equal the single-threaded run bit for
   bit. Then the parallel_for hook through a pthread pool (see its section).
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
    int layer, T, mask_mode, nth, hook;   /* hook: 3 tasks through reverse_for, against nth = 3 */
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
    memset(ws, 0xFF, ws_size);   /* NaN: a part the call should write and does not shows in Y */
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

static void reverse_for(void *user, int n_tasks, molora_task_fn task, void *ctx);

/* run job j (all nth shares, one after the other, or its hook's tasks with use_hook) into Y and W
   with workspace ws */
static molora_result run_job(const job *jb, int use_hook, void *ws, size_t ws_size, float *Y, float *W)
{
    molora_forward_args a;
    molora_result r = MOLORA_RESULT_SUCCESS;
    int k, nth = jb->hook ? (use_hook ? 0 : 3) : jb->nth;
    memset(&a, 0, sizeof a);
    a.layer = jb->layer; a.n_tokens = jb->T; a.x = jb->X; a.y = Y; a.weights_out = W;
    a.expert_mask = jb->mask; a.mask_per_token = jb->mask_mode == 2;
    a.workspace = ws; a.workspace_size = ws_size;
    if (jb->hook && use_hook) { a.parallel_for = reverse_for; a.n_tasks = 3; }
    for (k = 0; k < (nth ? nth : 1) && r == MOLORA_RESULT_SUCCESS; k++) {
        a.ith = k; a.nth = nth;
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
    if (molora_workspace_size_tasks(g_model, T_MAX, 3, &ws_size) != MOLORA_RESULT_SUCCESS) {
        g_bad[id]++; free(Y); free(W);
        return NULL;
    }
    ws = ws_new(ws_size);
    while (now_ms() < end) {
        const job *jb = &g_jobs[j % N_JOBS];
        if (run_job(jb, 1, ws, ws_size, Y, W) != MOLORA_RESULT_SUCCESS ||
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
        jb->hook = j % 4 == 1;
        jb->X = rnd_vec_f((size_t)jb->T * D_IN, 1.0f);
        jb->Y_ref = malloc(sizeof(float) * jb->T * D_OUT); jb->W_ref = malloc(sizeof(float) * jb->T * N_EXP);
        jb->mask = NULL;
        if (jb->mask_mode) {
            size_t nm = jb->mask_mode == 2 ? (size_t)jb->T * N_EXP : N_EXP, q;
            jb->mask = malloc(nm);
            for (q = 0; q < nm; q++) jb->mask[q] = (float)rnd() > -0.5f;
        }
        assert_int_equal(run_job(jb, 0, ws, ws_size, jb->Y_ref, jb->W_ref), MOLORA_RESULT_SUCCESS);
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

/* ---- the caller's parallel_for --------------------------------------------------------------
   A pthread pool implements the hook: the calling thread and the workers take tasks from one
   counter under a mutex, so tasks land on any thread in any order. Each call through it must equal
   the ith/nth split with nth = n_tasks bit for bit (the header's contract), and the one-task call
   within 1e-5 of the row's largest value, with the same weights, counts and path bit for bit; the
   one-task call itself is checked against a naive double loop over the weights it reports. */
enum { TP_THREADS = 4, TP_MAX_TASKS = 256 };
typedef struct tpool {
    pthread_t th[TP_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t go, idle;
    unsigned gen;
    int quit, n_tasks, next, finished;
    molora_task_fn task;
    void *ctx;
    long calls, bad;                 /* parallel_for calls; tasks run other than once each */
    int ran[TP_MAX_TASKS];
} tpool;

/* with p->mu held: run the call's remaining tasks, the lock dropped while each runs */
static void tp_work(tpool *p)
{
    while (p->next < p->n_tasks) {
        int k = p->next++, n = p->n_tasks;
        molora_task_fn task = p->task;
        void *ctx = p->ctx;
        pthread_mutex_unlock(&p->mu);
        task(ctx, k, n);
        pthread_mutex_lock(&p->mu);
        if (k < TP_MAX_TASKS) p->ran[k]++;
        if (++p->finished == p->n_tasks) pthread_cond_broadcast(&p->idle);
    }
}
static void *tp_main(void *arg)
{
    tpool *p = (tpool *)arg;
    unsigned seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        tp_work(p);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}
static void tp_parallel_for(void *user, int n_tasks, molora_task_fn task, void *ctx)
{
    tpool *p = (tpool *)user;
    int k;
    pthread_mutex_lock(&p->mu);
    p->calls++;
    p->task = task; p->ctx = ctx; p->n_tasks = n_tasks; p->next = 0; p->finished = 0;
    for (k = 0; k < TP_MAX_TASKS; k++) p->ran[k] = 0;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    tp_work(p);
    while (p->finished < p->n_tasks) pthread_cond_wait(&p->idle, &p->mu);
    for (k = 0; k < n_tasks && k < TP_MAX_TASKS; k++) p->bad += p->ran[k] != 1;
    pthread_mutex_unlock(&p->mu);
}
static void tp_start(tpool *p)
{
    int i;
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->idle, NULL);
    for (i = 0; i < TP_THREADS; i++) pthread_create(&p->th[i], NULL, tp_main, p);
}
static void tp_stop(tpool *p)
{
    int i;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i < TP_THREADS; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->idle);
}
/* one pool for every test of the group: a test that fails (cmocka jumps out of it) leaves no
   worker waiting on a pool in its dead stack frame, which hung the next test's pool */
static tpool g_pool;
static int pool_setup(void **state) { (void)state; tp_start(&g_pool); return 0; }
static int pool_teardown(void **state) { (void)state; tp_stop(&g_pool); return 0; }

/* the other extreme: every task on the calling thread, the last first */
static void reverse_for(void *user, int n_tasks, molora_task_fn task, void *ctx)
{
    int k;
    if (user) (*(long *)user)++;   /* NULL from the shared-model test's threads */
    for (k = n_tasks - 1; k >= 0; k--) task(ctx, k, n_tasks);
}

/* the hook's model: every routing rule, a layer per token-sparse top-1 (the SPARSE path at large T),
   fixed weights, a fan_in_fan_out W0 and a layer without experts; d_in 67 (W0 rows at every 64-byte
   phase), d_out 200 (13 chunks of 16, the last one partial) */
enum { HL = 9, HN = 8, HD_IN = 67, HD_OUT = 200, HT_MAX = 200 };
typedef struct hfix {
    molora_model *m;
    float *A[HN], *B[HN], *W0, *W0t, *bias, *Wg, *bg, *wt, *e;
    int ranks[HN];
} hfix;

/* the hook model's last logged error (its calls run on the calling thread: molora logs nothing
   from a task) */
static char g_hlog[256];
static void h_log(void *user, molora_result r, const char *msg)
{
    (void)user; (void)r;
    snprintf(g_hlog, sizeof g_hlog, "%s", msg);
}

static void hfix_make(hfix *h)
{
    static const int ranks[HN] = {4, 8, 1, 16, 4, 2, 8, 3};
    static const molora_routing rules[HL] = {
        MOLORA_ROUTING_DENSE, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_TOPK, MOLORA_ROUTING_THRESHOLD,
        MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_MOLE_OUTPUT, MOLORA_ROUTING_FIXED, MOLORA_ROUTING_DENSE,
        MOLORA_ROUTING_DENSE};
    molora_expert_desc ex[HN];
    molora_layer_desc ld[HL];
    molora_model_desc md;
    int i, l, o;
    for (i = 0; i < HN; i++) {
        h->ranks[i] = ranks[i];
        h->A[i] = rnd_vec_f((size_t)ranks[i] * HD_IN, 0.3f);
        h->B[i] = rnd_vec_f((size_t)HD_OUT * ranks[i], 0.3f);
        memset(&ex[i], 0, sizeof ex[i]);
        ex[i].rank = ranks[i]; ex[i].A = h->A[i]; ex[i].B = h->B[i]; ex[i].lora_alpha = 8;
    }
    h->W0 = rnd_vec_f((size_t)HD_OUT * HD_IN, 0.2f); h->bias = rnd_vec_f(HD_OUT, 0.5f);
    h->W0t = malloc(sizeof(float) * HD_OUT * HD_IN);
    for (o = 0; o < HD_OUT; o++)
        for (i = 0; i < HD_IN; i++) h->W0t[(size_t)i * HD_OUT + o] = h->W0[(size_t)o * HD_IN + i];
    h->Wg = rnd_vec_f((size_t)HN * HD_IN, 0.5f); h->bg = rnd_vec_f(HN, 0.3f);
    h->wt = rnd_vec_f(HD_IN, 0.3f); h->e = rnd_vec_f((size_t)HN * HN * HD_OUT, 1.0f);
    for (l = 0; l < HL; l++) {
        molora_layer_desc *d = &ld[l];
        memset(d, 0, sizeof *d);
        d->d_in = HD_IN; d->d_out = HD_OUT; d->n_experts = l == HL - 1 ? 0 : HN; d->experts = ex;
        d->W0 = l == 7 ? h->W0t : h->W0; d->fan_in_fan_out = l == 7; d->bias = h->bias;
        d->routing = rules[l]; d->gate_weight = h->Wg; d->gate_bias = l == 0 ? h->bg : NULL;
        d->threshold_weight = h->wt; d->mole_gate = h->e;
        d->top_k = l == 2 ? 1 : 3; d->threshold = 0.1f;
    }
    memset(&md, 0, sizeof md);
    md.n_layers = HL; md.layers = ld; md.log = h_log;
    assert_int_equal(molora_model_init(&md, &h->m), MOLORA_RESULT_SUCCESS);
}
static void hfix_free(hfix *h)
{
    int i;
    for (i = 0; i < HN; i++) { free(h->A[i]); free(h->B[i]); }
    free(h->W0); free(h->W0t); free(h->bias); free(h->Wg); free(h->bg); free(h->wt); free(h->e);
    molora_model_free(h->m);
}

/* y (T, d_out) = Y_in (DELTA) or W0 x + b (FULL), + sum_i w_i s_i B_i A_i x, in double, for the
   weights W (T, N) the call reported; the largest error relative to each row's largest value */
static double naive_error(const hfix *h, int layer, int T, const float *X, const float *W, const float *Y_in,
                          int full, const float *Y)
{
    double worst = 0, ax[16], y[HD_OUT];
    int t, i, o, q, k, n = layer == HL - 1 ? 0 : HN;
    for (t = 0; t < T; t++) {
        const float *x = X + (size_t)t * HD_IN;
        double big = 1e-30, err = 0;
        for (o = 0; o < HD_OUT; o++) {
            double v = full ? h->bias[o] : Y_in[(size_t)t * HD_OUT + o];
            if (full) for (k = 0; k < HD_IN; k++) v += (double)h->W0[(size_t)o * HD_IN + k] * x[k];
            y[o] = v;
        }
        for (i = 0; i < n; i++) {
            double c = (double)W[(size_t)t * n + i] * 8.0 / h->ranks[i];
            if (c == 0) continue;
            for (q = 0; q < h->ranks[i]; q++) {
                ax[q] = 0;
                for (k = 0; k < HD_IN; k++) ax[q] += (double)h->A[i][(size_t)q * HD_IN + k] * x[k];
            }
            for (o = 0; o < HD_OUT; o++)
                for (q = 0; q < h->ranks[i]; q++) y[o] += c * h->B[i][(size_t)o * h->ranks[i] + q] * ax[q];
        }
        for (o = 0; o < HD_OUT; o++) {
            big = fmax(big, fabs(y[o]));
            err = fmax(err, fabs(y[o] - Y[(size_t)t * HD_OUT + o]));
        }
        worst = fmax(worst, err / big);
    }
    return worst;
}

/* one case of the grid: the inputs of a call */
typedef struct hcase {
    int layer, T, full;
    const float *X, *Y_in, *fixed;
    const uint8_t *mask;
} hcase;

/* one call (nth = 0) or an nth-way split run caller after caller, with the hook and n_tasks
   given (or none), into Y (starting from Y_in), W, counts and path */
static molora_result hcall(const hfix *h, const hcase *hc, int nth, molora_parallel_for_fn pf, void *user,
                           int n_tasks, void *ws, size_t ws_size, float *Y, float *W, int32_t *counts,
                           molora_path *path)
{
    molora_forward_args a;
    molora_result r = MOLORA_RESULT_SUCCESS;
    int k;
    memcpy(Y, hc->Y_in, sizeof(float) * hc->T * HD_OUT);
    memset(&a, 0, sizeof a);
    a.layer = hc->layer; a.n_tokens = hc->T; a.x = hc->X; a.y = Y;
    a.output = hc->full ? MOLORA_OUTPUT_FULL : MOLORA_OUTPUT_DELTA;
    a.expert_mask = hc->mask; a.mask_per_token = 1; a.weights = hc->fixed; a.weights_per_token = 1;
    a.weights_out = W; a.counts_out = counts; a.path_out = path;
    a.workspace = ws; a.workspace_size = ws_size;
    a.parallel_for = pf; a.parallel_user = user; a.n_tasks = n_tasks;
    for (k = 0; k < (nth ? nth : 1) && r == MOLORA_RESULT_SUCCESS; k++) {
        a.ith = k; a.nth = nth;
        r = molora_forward(h->m, &a);
    }
    return r;
}

/* molora_route of hc's call through the hook (pf, n_tasks) into W and counts */
static molora_result hroute(const hfix *h, const hcase *hc, molora_parallel_for_fn pf, void *user, int n_tasks,
                            void *ws, size_t ws_size, float *W, int32_t *counts)
{
    molora_forward_args a;
    memset(&a, 0, sizeof a);
    a.layer = hc->layer; a.n_tokens = hc->T; a.x = hc->X;
    a.expert_mask = hc->mask; a.mask_per_token = 1; a.weights = hc->fixed; a.weights_per_token = 1;
    a.weights_out = W; a.counts_out = counts; a.workspace = ws; a.workspace_size = ws_size;
    a.parallel_for = pf; a.parallel_user = user; a.n_tasks = n_tasks;
    return molora_route(h->m, &a);
}

/* the outputs of one call, kept for comparing */
typedef struct hout { float *Y, *W; int32_t counts[HN]; molora_path path; } hout;

static int hout_equal(const hout *x, const hout *y, int T)
{
    return memcmp(x->Y, y->Y, sizeof(float) * T * HD_OUT) == 0 && memcmp(x->W, y->W, sizeof(float) * T * HN) == 0 &&
           memcmp(x->counts, y->counts, sizeof x->counts) == 0 && x->path == y->path;
}

static double rel_diff(const float *a, const float *b, int T)
{
    double worst = 0;
    int t, o;
    for (t = 0; t < T; t++) {
        double big = 1e-30, err = 0;
        for (o = 0; o < HD_OUT; o++) {
            big = fmax(big, fabs(a[(size_t)t * HD_OUT + o]));
            err = fmax(err, fabs((double)a[(size_t)t * HD_OUT + o] - b[(size_t)t * HD_OUT + o]));
        }
        worst = fmax(worst, err / big);
    }
    return worst;
}

/* the hook tests' common start: OpenBLAS at one thread, the model, the pool, X and Y_in */
static void hstart(hfix *h, float **X, float **Y_in)
{
#ifndef MOLORA_NO_BLAS
    openblas_set_num_threads(1);
#endif
    hfix_make(h);
    *X = rnd_vec_f((size_t)HT_MAX * HD_IN, 1.0f); *Y_in = rnd_vec_f((size_t)HT_MAX * HD_OUT, 1.0f);
}

static void test_parallel_for_hook(void **state)
{
    /* T 31 / 32: one below and at the first token-block split of the dense experts' H; 64: the
       routing's first split (two blocks of 32), 97: three blocks and one token */
    static const int Ts[] = {1, 2, 16, 17, 31, 32, 64, 97, 200}, tasks[] = {1, 2, 3, 7, HD_OUT + 1};
    hfix h;
    tpool *pool = &g_pool;
    const long bad0 = pool->bad;   /* tasks run other than once, before this test */
    hout plain, split, hooked, rev;
    float *X, *Y_in, *fixed;
    uint8_t *mask;
    size_t ws1;
    void *ws1p;
    int l, ti, ki, full, masked, bitwise = 0, cases = 0, splits = 0, g_splits = 0, r_splits = 0;
    int paths[5] = {0, 0, 0, 0, 0};
    long rev_calls = 0;
    double worst_plain = 0, worst_naive = 0;
    (void)state;
    hstart(&h, &X, &Y_in);
    fixed = rnd_vec_f((size_t)HT_MAX * HN, 1.0f);
    mask = malloc((size_t)HT_MAX * HN);
    for (l = 0; l < HT_MAX * HN; l++) {
        mask[l] = rnd() > -0.6;
        if (l % 5 == 0) fixed[l] = 0;
    }
    memset(mask + 3 * HN, 0, HN);   /* token 3: every expert masked */
    plain.Y = malloc(sizeof(float) * HT_MAX * HD_OUT); plain.W = malloc(sizeof(float) * HT_MAX * HN);
    split.Y = malloc(sizeof(float) * HT_MAX * HD_OUT); split.W = malloc(sizeof(float) * HT_MAX * HN);
    hooked.Y = malloc(sizeof(float) * HT_MAX * HD_OUT); hooked.W = malloc(sizeof(float) * HT_MAX * HN);
    rev.Y = malloc(sizeof(float) * HT_MAX * HD_OUT); rev.W = malloc(sizeof(float) * HT_MAX * HN);
    assert_int_equal(molora_workspace_size(h.m, HT_MAX, &ws1), MOLORA_RESULT_SUCCESS);
    ws1p = ws_new(ws1);
    for (l = 0; l < HL; l++)
        for (ti = 0; ti < (int)(sizeof Ts / sizeof Ts[0]); ti++)
            for (full = 0; full < 2; full++)
                for (masked = 0; masked < 2; masked++) {
                    hcase hc;
                    hc.layer = l; hc.T = Ts[ti]; hc.full = full; hc.X = X; hc.Y_in = Y_in;
                    hc.fixed = l == 6 ? fixed : NULL; hc.mask = masked ? mask : NULL;
                    assert_int_equal(hcall(&h, &hc, 0, NULL, NULL, 0, ws1p, ws1, plain.Y, plain.W, plain.counts,
                                           &plain.path), MOLORA_RESULT_SUCCESS);
                    worst_naive = fmax(worst_naive, naive_error(&h, l, hc.T, X, plain.W, Y_in, full, plain.Y));
                    for (ki = 0; ki < 5; ki++) {
                        int k = tasks[ki];
                        long calls = pool->calls;
                        int h_split, r_split;
                        size_t wsk;
                        void *wskp;
                        assert_int_equal(molora_workspace_size_tasks(h.m, hc.T, k, &wsk), MOLORA_RESULT_SUCCESS);
                        wskp = ws_new(wsk);
                        assert_int_equal(hcall(&h, &hc, k == 1 ? 0 : k, NULL, NULL, 0, ws1p, ws1, split.Y, split.W,
                                               split.counts, &split.path), MOLORA_RESULT_SUCCESS);
                        assert_int_equal(hcall(&h, &hc, 0, tp_parallel_for, pool, k, wskp, wsk, hooked.Y, hooked.W,
                                               hooked.counts, &hooked.path), MOLORA_RESULT_SUCCESS);
                        assert_int_equal(hcall(&h, &hc, 0, reverse_for, &rev_calls, k, wskp, wsk, rev.Y, rev.W,
                                               rev.counts, &rev.path), MOLORA_RESULT_SUCCESS);
                        assert_true(canary_intact(wskp, wsk));
                        /* one hook call for the products when there is work (the path is NONE
                           only for DELTA with nothing routed); one before it when the experts' H
                           runs first as tasks: on the GEMM path of a layer with experts and no
                           MoLE output mix, n_tasks > 1 and at least two blocks of 16 tokens, or
                           on the grouped path (SPARSE, not MoLE, n_tasks > 1); and one before
                           both for the gate routing in blocks of 32 tokens: a gate of up to 32
                           rows (all but the MoLE, FIXED and expertless layers), n_tasks > 1, two
                           blocks or more */
                        h_split = (hooked.path == MOLORA_PATH_GEMM && l != 5 && l != 8 && k > 1 && hc.T >= 32) ||
                                  (hooked.path == MOLORA_PATH_SPARSE && l != 5 && k > 1);
                        g_splits += hooked.path == MOLORA_PATH_SPARSE && h_split;
                        r_split = l != 5 && l != 6 && l != 8 && k > 1 && hc.T >= 64;
                        assert_int_equal(pool->calls - calls,
                                         r_split + (plain.path == MOLORA_PATH_NONE ? 0 : 1 + h_split));
                        splits += h_split; r_splits += r_split;
                        if (!hout_equal(&hooked, &split, hc.T) || !hout_equal(&rev, &hooked, hc.T))
                            fail_msg("layer %d T %d full %d masked %d n_tasks %d: differs from the nth split", l,
                                     hc.T, full, masked, k);
                        if (memcmp(hooked.W, plain.W, sizeof(float) * hc.T * HN) ||
                            memcmp(hooked.counts, plain.counts, sizeof plain.counts) || hooked.path != plain.path)
                            fail_msg("layer %d T %d n_tasks %d: routing differs from the one-task call", l, hc.T, k);
                        /* molora_route through the hook: the routing's call alone, the same weights */
                        calls = pool->calls;
                        assert_int_equal(hroute(&h, &hc, tp_parallel_for, pool, k, ws1p, ws1, split.W,
                                                split.counts), MOLORA_RESULT_SUCCESS);
                        assert_int_equal(pool->calls - calls, r_split);
                        if (memcmp(split.W, plain.W, sizeof(float) * hc.T * HN) ||
                            memcmp(split.counts, plain.counts, sizeof plain.counts))
                            fail_msg("layer %d T %d n_tasks %d: molora_route differs from the one-task call", l,
                                     hc.T, k);
                        worst_plain = fmax(worst_plain, rel_diff(plain.Y, hooked.Y, hc.T));
                        bitwise += memcmp(plain.Y, hooked.Y, sizeof(float) * hc.T * HD_OUT) == 0;
                        cases++;
                        paths[(int)hooked.path]++;
                        /* one byte short of n_tasks slices: refused, Y untouched, no hook call
                           (on the MoLE layer, whose need sizes the query; not at T = 17, where the
                           query covers T = 16's copies of X, larger with many tasks) */
                        if (k > 1 && l == 5 && hc.T != 17) {
                            calls = pool->calls;
                            memcpy(hooked.Y, Y_in, sizeof(float) * hc.T * HD_OUT);
                            assert_int_equal(hcall(&h, &hc, 0, tp_parallel_for, pool, k, wskp, wsk - 1, hooked.Y,
                                                   hooked.W, hooked.counts, NULL),
                                             MOLORA_RESULT_WORKSPACE_TOO_SMALL);
                            assert_int_equal(pool->calls, calls);
                            assert_memory_equal(hooked.Y, Y_in, sizeof(float) * hc.T * HD_OUT);
                        }
                        free(wskp);
                    }
                }
    print_message("  parallel_for: %d cases (9 layers, T 1/2/16/17/31/32/200, n_tasks 1/2/3/7/%d, full/delta, "
                  "masks; %d with H first as tasks, %d of them grouped, %d with the routing in blocks first): equal "
                  "to the nth split bit for bit; vs one task max rel %.1e (%d of %d bitwise); one task vs naive max "
                  "rel %.1e\n", cases, HD_OUT + 1, splits, g_splits, r_splits, worst_plain, bitwise, cases,
                  worst_naive);
    assert_true(splits > g_splits && g_splits > 0 && r_splits > 0);
    for (l = 0; l < 5; l++) assert_true(paths[l] > 0);   /* NONE, DECODE, SMALL, GEMM, SPARSE all ran */
    assert_int_equal(pool->bad - bad0, 0);
    assert_true(worst_plain <= 1e-5);
    assert_true(worst_naive <= 2e-5);
    free(ws1p); free(X); free(Y_in); free(fixed); free(mask);
    free(plain.Y); free(plain.W); free(split.Y); free(split.W); free(hooked.Y); free(hooked.W);
    free(rev.Y); free(rev.W);
    hfix_free(&h);
}

/* ith/nth and the hook together: caller ith of nth with n_tasks tasks is share ith * n_tasks + k
   of an nth * n_tasks split, bit for bit */
static void test_parallel_for_with_ith_nth(void **state)
{
    static const int Ts[] = {1, 16, 17, 200};
    hfix h;
    tpool *pool = &g_pool;
    const long bad0 = pool->bad;   /* tasks run other than once, before this test */
    hout a, b;
    float *X, *Y_in;
    size_t ws1, ws3;
    void *w1, *w3;
    int l, ti;
    (void)state;
    hstart(&h, &X, &Y_in);
    a.Y = malloc(sizeof(float) * HT_MAX * HD_OUT); a.W = malloc(sizeof(float) * HT_MAX * HN);
    b.Y = malloc(sizeof(float) * HT_MAX * HD_OUT); b.W = malloc(sizeof(float) * HT_MAX * HN);
    assert_int_equal(molora_workspace_size(h.m, HT_MAX, &ws1), 0);
    assert_int_equal(molora_workspace_size_tasks(h.m, HT_MAX, 3, &ws3), 0);
    w1 = ws_new(ws1); w3 = ws_new(ws3);
    for (l = 0; l < HL; l++)
        for (ti = 0; ti < 4; ti++) {
            hcase hc;
            memset(&hc, 0, sizeof hc);
            hc.layer = l; hc.T = Ts[ti]; hc.full = 1; hc.X = X; hc.Y_in = Y_in;
            hc.fixed = l == 6 ? Y_in : NULL;   /* any finite weights */
            assert_int_equal(hcall(&h, &hc, 6, NULL, NULL, 0, w1, ws1, a.Y, a.W, a.counts, &a.path), 0);
            assert_int_equal(hcall(&h, &hc, 2, tp_parallel_for, pool, 3, w3, ws3, b.Y, b.W, b.counts, &b.path), 0);
            if (!hout_equal(&a, &b, hc.T)) fail_msg("layer %d T %d: 2 callers x 3 tasks differ from nth 6", l, hc.T);
            assert_true(canary_intact(w3, ws3));
        }
    assert_int_equal(pool->bad - bad0, 0);
    free(w1); free(w3); free(X); free(Y_in); free(a.Y); free(a.W); free(b.Y); free(b.W);
    hfix_free(&h);
}

/* The routing's errors when it runs as the hook's tasks (T = 200, 7 blocks of 32 tokens): the
   same result code and message as the call without the hook, logged once by the calling thread,
   Y untouched, the products' hook call never made. Poisons: a NaN in x in the fifth block (found
   through that block's logits, x then read in full), a NaN there and huge finite x in the first
   (x's error still first, as on the calling thread), x so large in the third block that its gate
   logits are Inf - Inf = NaN, every routed layer with n_tasks 2, 3 and 7. Then the split's
   boundary in molora_route, and an adapter index, which never splits. */
static void test_parallel_for_routing_errors(void **state)
{
    static const int tasks[] = {2, 3, 7};
    hfix h;
    tpool *pool = &g_pool;
    const long bad0 = pool->bad;   /* tasks run other than once, before this test */
    float *X, *Y_in, *Y, *W;
    int32_t counts[HN];
    size_t ws;
    void *wsp;
    int poison, l, ki, t, k;
    (void)state;
    hstart(&h, &X, &Y_in);
    Y = malloc(sizeof(float) * HT_MAX * HD_OUT); W = malloc(sizeof(float) * HT_MAX * HN);
    assert_int_equal(molora_workspace_size_tasks(h.m, HT_MAX, 7, &ws), MOLORA_RESULT_SUCCESS);
    wsp = ws_new(ws);
    for (poison = 0; poison < 3; poison++) {
        float *Xp = malloc(sizeof(float) * HT_MAX * HD_IN);
        memcpy(Xp, X, sizeof(float) * HT_MAX * HD_IN);
        if (poison == 0 || poison == 1) Xp[150 * HD_IN + 33] = NAN;
        if (poison == 1) for (k = 0; k < HD_IN; k++) Xp[10 * HD_IN + k] = 3e38f;
        if (poison == 2) for (k = 0; k < HD_IN; k++) Xp[70 * HD_IN + k] = k % 2 ? 3e38f : -3e38f;
        for (l = 0; l < HL; l++) {
            char want[256];
            molora_result r0;
            hcase hc;
            if (l == 5 || l == 6 || l == HL - 1) continue;   /* MoLE, FIXED, no experts: no gate split */
            memset(&hc, 0, sizeof hc);
            hc.layer = l; hc.T = HT_MAX; hc.full = 1; hc.X = Xp; hc.Y_in = Y_in;
            g_hlog[0] = 0;
            r0 = hcall(&h, &hc, 0, NULL, NULL, 0, wsp, ws, Y, W, counts, NULL);
            assert_int_equal(r0, MOLORA_RESULT_NON_FINITE);
            snprintf(want, sizeof want, "%s", g_hlog);
            if (poison < 2) assert_non_null(strstr(want, "input x has NaN or Inf"));
            else assert_non_null(strstr(want, "gate logits are not finite"));
            for (ki = 0; ki < 3; ki++) {
                long calls = pool->calls;
                g_hlog[0] = 0;
                assert_int_equal(hcall(&h, &hc, 0, tp_parallel_for, pool, tasks[ki], wsp, ws, Y, W, counts, NULL),
                                 MOLORA_RESULT_NON_FINITE);
                assert_int_equal(pool->calls - calls, 1);   /* the routing's call, not the products' */
                if (strcmp(g_hlog, want)) fail_msg("layer %d n_tasks %d: logged \"%s\", not \"%s\"", l, tasks[ki],
                                                   g_hlog, want);
                for (t = 0; t < HT_MAX * HD_OUT; t++)
                    if (memcmp(&Y[t], &Y_in[t], sizeof(float))) fail_msg("layer %d: y[%d] written", l, t);
            }
        }
        free(Xp);
    }
    /* the split's boundary: molora_route at T 63 / 64 / 65 calls the hook from 64 on, the
       weights bitwise the plain call's; an adapter index at T = 200 replaces the router: no call */
    for (t = 63; t <= 65; t++) {
        float *W1 = malloc(sizeof(float) * HT_MAX * HN);
        int32_t c1[HN];
        long calls = pool->calls;
        hcase hc;
        memset(&hc, 0, sizeof hc);
        hc.layer = 4; hc.T = t; hc.X = X; hc.Y_in = Y_in;
        assert_int_equal(hroute(&h, &hc, NULL, NULL, 0, wsp, ws, W1, c1), MOLORA_RESULT_SUCCESS);
        assert_int_equal(hroute(&h, &hc, tp_parallel_for, pool, 3, wsp, ws, W, counts), MOLORA_RESULT_SUCCESS);
        assert_int_equal(pool->calls - calls, t >= 64);
        assert_memory_equal(W, W1, sizeof(float) * t * HN);
        assert_memory_equal(counts, c1, sizeof c1);
        free(W1);
    }
    {
        int32_t idx[HT_MAX];
        molora_forward_args a;
        long calls = pool->calls;
        for (t = 0; t < HT_MAX; t++) idx[t] = t % (HN + 1) - 1;
        memset(&a, 0, sizeof a);
        a.layer = 1; a.n_tokens = HT_MAX; a.x = X; a.adapter_index = idx; a.weights_out = W;
        a.workspace = wsp; a.workspace_size = ws;
        a.parallel_for = tp_parallel_for; a.parallel_user = pool; a.n_tasks = 3;
        assert_int_equal(molora_route(h.m, &a), MOLORA_RESULT_SUCCESS);
        assert_int_equal(pool->calls - calls, 0);
        for (t = 0; t < HT_MAX; t++)
            for (k = 0; k < HN; k++)
                if (W[(size_t)t * HN + k] != (idx[t] == k ? 1.0f : 0.0f)) fail_msg("index token %d expert %d", t, k);
    }
    assert_int_equal(pool->bad - bad0, 0);
    free(wsp); free(X); free(Y_in); free(Y); free(W);
    hfix_free(&h);
}

/* An adapter pool through the hook (one adapter index per token, the grouped path by expert):
   8 tokens on 8 adapters (every expert a one-token one) and 200 tokens over 8 adapters and none;
   the experts' H first as tasks of their own, then the products: Y bitwise the nth split's, two
   hook calls, within 1e-5 of the one-task call */
static void test_parallel_for_adapter_pool(void **state)
{
    static const int Ts[] = {8, 200}, tasks[] = {2, 3, 7};
    hfix h;
    tpool *pool = &g_pool;
    const long bad0 = pool->bad;   /* tasks run other than once, before this test */
    float *X, *Y_in, *Y1, *Ys, *Yh;
    int32_t idx[HT_MAX];
    size_t ws;
    void *wsp;
    int ti, ki, t, k;
    (void)state;
    hstart(&h, &X, &Y_in);
    Y1 = malloc(sizeof(float) * HT_MAX * HD_OUT); Ys = malloc(sizeof(float) * HT_MAX * HD_OUT);
    Yh = malloc(sizeof(float) * HT_MAX * HD_OUT);
    assert_int_equal(molora_workspace_size_tasks(h.m, HT_MAX, 7, &ws), MOLORA_RESULT_SUCCESS);
    wsp = ws_new(ws);
    for (ti = 0; ti < 2; ti++) {
        int T = Ts[ti];
        molora_forward_args a;
        molora_path path;
        for (t = 0; t < T; t++) idx[t] = T == 8 ? t : t % (HN + 1) - 1;
        memset(&a, 0, sizeof a);
        a.layer = 1; a.n_tokens = T; a.x = X; a.output = MOLORA_OUTPUT_FULL; a.adapter_index = idx;
        a.workspace = wsp; a.workspace_size = ws; a.path_out = &path;
        a.y = Y1;
        assert_int_equal(molora_forward(h.m, &a), MOLORA_RESULT_SUCCESS);
        assert_int_equal(path, MOLORA_PATH_SPARSE);
        for (ki = 0; ki < 3; ki++) {
            long calls = pool->calls;
            a.y = Ys; a.nth = tasks[ki];
            for (k = 0; k < tasks[ki]; k++) { a.ith = k; assert_int_equal(molora_forward(h.m, &a), 0); }
            a.ith = 0; a.nth = 0;
            a.y = Yh; a.parallel_for = tp_parallel_for; a.parallel_user = pool; a.n_tasks = tasks[ki];
            memset(wsp, 0xFF, ws);   /* NaN: nothing the split left in the workspace can stand in for H */
            assert_int_equal(molora_forward(h.m, &a), MOLORA_RESULT_SUCCESS);
            assert_true(canary_intact(wsp, ws));
            assert_int_equal(pool->calls - calls, 2);   /* H, then the products */
            if (memcmp(Ys, Yh, sizeof(float) * T * HD_OUT)) fail_msg("T %d n_tasks %d: differs from the nth split", T,
                                                                    tasks[ki]);
            assert_true(rel_diff(Y1, Yh, T) <= 1e-5);
            a.parallel_for = NULL; a.n_tasks = 0;
        }
    }
    assert_int_equal(pool->bad - bad0, 0);
    free(wsp); free(X); free(Y_in); free(Y1); free(Ys); free(Yh);
    hfix_free(&h);
}

/* The routing split's edges on a model of its own (d_in 67, d_out 40, rank-1 experts):
   - layer 0 (ADAMOLE, 8 experts) has gate and threshold weights of +-2 at chosen columns, so a
     token whose x is 3e38 at columns 0 and 1 has a NaN threshold logit (2 x 3e38 = +inf against
     -inf, in any order of the sums) and finite gate logits, and one with 3e38 at columns 2 and 3
     NaN gate logits: two different errors in two blocks (or one block) give the first token's,
     as the call without the hook does; the same code and message, one hook call, Y untouched;
   - layers 1-4 have gates of 32 and 33 rows (DENSE with 32 / 33 experts, ADAMOLE with 31 / 32:
     N + 1 rows): the routing splits up to 32 rows, and wider gates where the CPU's table has gto
     (>>outer: its rows, the rest on ntn, each token alone), the weights bitwise the one-task call's;
   - layer 5 (top-3 of 33 rank-1 experts) takes the grouped path by token: through the hook its H
     first as tasks of their own (token t on task t mod n_tasks), Y bitwise the nth split's; with
     gto its 33-row gate's routing is a hook call of its own too. */
enum { GD_IN = 67, GD_OUT = 40, GN = 33, GL = 6 };   /* d_out: 3 chunks of 16 */
int molora__order_check(size_t pairs, size_t e_pairs, size_t routed);   /* test hooks in molora.h */
int molora__gto_min(void);
static void test_parallel_for_routing_edges(void **state)
{
    static const int n_exp[GL] = {8, 32, 33, 31, 32, 33}, tasks[] = {2, 3, 7};
    static const molora_routing rule[GL] = {MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_DENSE, MOLORA_ROUTING_DENSE,
                                            MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_ADAMOLE, MOLORA_ROUTING_TOPK};
    /* (threshold token, gate token, the message wanted): -1 = none */
    static const struct { int thr, gate, want_thr; } cases[] = {
        {10, 150, 1}, {150, 10, 0}, {70, 195, 1}, {131, 130, 0}, {130, 131, 1}, {199, -1, 1}, {-1, 64, 0}};
    const int T = HT_MAX;
    float *A[GN], *B[GN], *Wg = rnd_vec_f((size_t)GN * GD_IN, 0.3f), *wt = rnd_vec_f(GD_IN, 0.3f);
    float *W0 = rnd_vec_f((size_t)GD_OUT * GD_IN, 0.2f), *X = rnd_vec_f((size_t)T * GD_IN, 1.0f);
    float *Xp = malloc(sizeof(float) * T * GD_IN), *Y = malloc(sizeof(float) * T * GD_OUT);
    float *Y0 = rnd_vec_f((size_t)T * GD_OUT, 1.0f), *W = malloc(sizeof(float) * T * GN);
    float *W1 = malloc(sizeof(float) * T * GN);
    molora_expert_desc ex[GN];
    molora_layer_desc ld[GL];
    molora_model_desc md;
    molora_model *m;
    molora_forward_args a, ra;
    tpool *pool = &g_pool;
    const long bad0 = pool->bad;   /* tasks run other than once, before this test */
    size_t ws;
    void *wsp;
    int i, l, ci, ki, t;
    (void)state;
#ifndef MOLORA_NO_BLAS
    openblas_set_num_threads(1);
#endif
    for (i = 0; i < GN; i++) {
        A[i] = rnd_vec_f(GD_IN, 0.3f); B[i] = rnd_vec_f(GD_OUT, 0.3f);
        memset(&ex[i], 0, sizeof ex[i]);
        ex[i].rank = 1; ex[i].A = A[i]; ex[i].B = B[i]; ex[i].lora_alpha = 1;
    }
    for (i = 0; i < 8; i++) {   /* layer 0's gate rows: 0.5, 0 at columns 0, 1; 2, -2 at 2, 3 */
        Wg[(size_t)i * GD_IN] = 0.5f; Wg[(size_t)i * GD_IN + 1] = 0.0f;
        Wg[(size_t)i * GD_IN + 2] = 2.0f; Wg[(size_t)i * GD_IN + 3] = -2.0f;
    }
    wt[0] = 2.0f; wt[1] = -2.0f; wt[2] = 0.1f; wt[3] = 0.1f;
    for (l = 0; l < GL; l++) {
        memset(&ld[l], 0, sizeof ld[l]);
        ld[l].d_in = GD_IN; ld[l].d_out = GD_OUT; ld[l].n_experts = n_exp[l]; ld[l].experts = ex; ld[l].W0 = W0;
        ld[l].routing = rule[l]; ld[l].gate_weight = Wg; ld[l].threshold_weight = wt; ld[l].top_k = 3;
    }
    memset(&md, 0, sizeof md);
    md.n_layers = GL; md.layers = ld; md.log = h_log;
    assert_int_equal(molora_model_init(&md, &m), MOLORA_RESULT_SUCCESS);
    assert_int_equal(molora_workspace_size_tasks(m, T, 7, &ws), MOLORA_RESULT_SUCCESS);
    wsp = ws_new(ws);
    memset(&a, 0, sizeof a);
    a.n_tokens = T; a.output = MOLORA_OUTPUT_FULL; a.workspace = wsp; a.workspace_size = ws;
    for (ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++) {
        char want[256];
        memcpy(Xp, X, sizeof(float) * T * GD_IN);
        if (cases[ci].thr >= 0) Xp[(size_t)cases[ci].thr * GD_IN] = Xp[(size_t)cases[ci].thr * GD_IN + 1] = 3e38f;
        if (cases[ci].gate >= 0)
            Xp[(size_t)cases[ci].gate * GD_IN + 2] = Xp[(size_t)cases[ci].gate * GD_IN + 3] = 3e38f;
        a.layer = 0; a.x = Xp; a.y = Y; a.parallel_for = NULL; a.n_tasks = 0;
        memcpy(Y, Y0, sizeof(float) * T * GD_OUT);
        g_hlog[0] = 0;
        assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_NON_FINITE);
        snprintf(want, sizeof want, "%s", g_hlog);
        if (!strstr(want, cases[ci].want_thr ? "layer 0 threshold logit is not finite"
                                             : "layer 0 gate logits are not finite"))
            fail_msg("case %d: the one-task call logged \"%s\"", ci, want);
        for (ki = 0; ki < 3; ki++) {
            long calls = pool->calls;
            a.parallel_for = tp_parallel_for; a.parallel_user = pool; a.n_tasks = tasks[ki];
            g_hlog[0] = 0;
            assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_NON_FINITE);
            assert_int_equal(pool->calls - calls, 1);   /* the routing's call, not the products' */
            if (strcmp(g_hlog, want)) fail_msg("case %d n_tasks %d: \"%s\", not \"%s\"", ci, tasks[ki], g_hlog, want);
            assert_memory_equal(Y, Y0, sizeof(float) * T * GD_OUT);
            g_hlog[0] = 0;
            ra = a; ra.weights_out = W;   /* molora_route needs weights_out, ignores y */
            assert_int_equal(molora_route(m, &ra), MOLORA_RESULT_NON_FINITE);
            if (strcmp(g_hlog, want)) fail_msg("case %d route n_tasks %d: \"%s\"", ci, tasks[ki], g_hlog);
        }
    }
    for (l = 0; l < GL; l++) {   /* the gates of 32 and 33 rows */
        int ng = n_exp[l] + (rule[l] == MOLORA_ROUTING_ADAMOLE);
        int splits = ng <= 32 || (molora__gto_min() && ng >= molora__gto_min());
        long calls;
        if (l == 0) continue;
        a.layer = l; a.x = X; a.y = NULL; a.output = MOLORA_OUTPUT_DELTA; a.weights_out = W1;
        a.parallel_for = NULL; a.n_tasks = 0;
        assert_int_equal(molora_route(m, &a), MOLORA_RESULT_SUCCESS);
        a.weights_out = W; a.parallel_for = tp_parallel_for; a.parallel_user = pool; a.n_tasks = 3;
        calls = pool->calls;
        assert_int_equal(molora_route(m, &a), MOLORA_RESULT_SUCCESS);
        if (pool->calls - calls != splits)
            fail_msg("layer %d (gate of %d rows): %ld hook calls", l, ng, pool->calls - calls);
        for (t = 0; t < T * n_exp[l]; t++)
            if (memcmp(&W[t], &W1[t], sizeof(float))) fail_msg("layer %d: weight %d differs", l, t);
        {   /* token 150's logits overflow (x = 3e38): the split's error is the one-task call's */
            char want[256];
            memcpy(Xp, X, sizeof(float) * T * GD_IN);
            for (i = 0; i < GD_IN; i++) Xp[(size_t)150 * GD_IN + i] = 3e38f;
            a.x = Xp; a.parallel_for = NULL; a.n_tasks = 0; g_hlog[0] = 0;
            assert_int_equal(molora_route(m, &a), MOLORA_RESULT_NON_FINITE);
            snprintf(want, sizeof want, "%s", g_hlog);
            assert_non_null(strstr(want, "logit"));
            a.parallel_for = tp_parallel_for; a.n_tasks = 3; g_hlog[0] = 0;
            assert_int_equal(molora_route(m, &a), MOLORA_RESULT_NON_FINITE);
            if (strcmp(g_hlog, want)) fail_msg("layer %d: \"%s\", not \"%s\"", l, g_hlog, want);
            a.x = X;
        }
        a.weights_out = NULL;
    }
    {   /* layer 5: by token */
        float *Ys = malloc(sizeof(float) * T * GD_OUT);
        size_t e_pairs = 0, routed = 0;
        molora_path path;
        a.layer = 5; a.x = X; a.output = MOLORA_OUTPUT_FULL; a.weights_out = W; a.path_out = &path;
        a.parallel_for = NULL; a.n_tasks = 0;
        for (ki = 0; ki < 3; ki++) {
            long calls;
            int k;
            a.y = Ys; a.nth = tasks[ki];
            for (k = 0; k < tasks[ki]; k++) { a.ith = k; assert_int_equal(molora_forward(m, &a), 0); }
            a.ith = 0; a.nth = 0; a.y = Y;
            a.parallel_for = tp_parallel_for; a.parallel_user = pool; a.n_tasks = tasks[ki];
            memset(wsp, 0xFF, ws);   /* NaN: what the split left cannot stand in for H */
            calls = pool->calls;
            assert_int_equal(molora_forward(m, &a), MOLORA_RESULT_SUCCESS);
            /* H, then the products (and first the routing: a gate of 33 rows splits on gto) */
            assert_int_equal(pool->calls - calls, 2 + (molora__gto_min() > 0));
            assert_int_equal(path, MOLORA_PATH_SPARSE);
            if (memcmp(Y, Ys, sizeof(float) * T * GD_OUT))
                fail_msg("by token, n_tasks %d: differs from nth", tasks[ki]);
            a.parallel_for = NULL; a.n_tasks = 0;
        }
        for (t = 0; t < T; t++) {
            size_t e = 0;
            for (i = 0; i < GN; i++) e += W[(size_t)t * GN + i] != 0.0f;
            e_pairs += e; routed += e > 0;
        }
        assert_int_equal(molora__order_check(e_pairs, e_pairs, routed), 1);   /* rank 1: pairs = e_pairs */
        a.path_out = NULL; a.weights_out = NULL;
        free(Ys);
    }
    assert_int_equal(pool->bad - bad0, 0);
    molora_model_free(m);
    for (i = 0; i < GN; i++) { free(A[i]); free(B[i]); }
    free(Wg); free(wt); free(W0); free(X); free(Xp); free(Y); free(Y0); free(W); free(W1); free(wsp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_shared_model_many_threads),
                                       cmocka_unit_test(test_parallel_for_hook),
                                       cmocka_unit_test(test_parallel_for_with_ith_nth),
                                       cmocka_unit_test(test_parallel_for_routing_errors),
                                       cmocka_unit_test(test_parallel_for_routing_edges),
                                       cmocka_unit_test(test_parallel_for_adapter_pool)};
    return cmocka_run_group_tests(tests, pool_setup, pool_teardown);
}

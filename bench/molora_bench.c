/* molora_bench: the mixture-of-LoRA-experts layer against the frozen layer alone, measured side
   by side in one process.
     molora_bench [--shapes S1,S2,...] [--tokens 1,8,64,512] [--threads 1,2]
                  [--routing dense,adamole,topk:2,threshold:0.15] [--json FILE] [--reps N]
                  [--precision f32,bf16] [--smoke | --quickstart | --corename]
   Every variant runs interleaved; weights and the stream buffer rotate through twice the
   last-level cache (sysfs), at least 256 MiB (at most a quarter of MemAvailable) so T = 1 calls
   read from DRAM.
   A row with t threads: molora splits one call over t pinned threads (the bench's pool is the
   call's parallel_for, n_tasks = t) with OpenBLAS at 1 thread inside; frozen_ms, its baseline, is
   the best of OpenBLAS with t threads (sgemm, or T x sgemv for T <= 16), at T = 1 molora's own
   single-row kernel (gvt of this CPU's table; its decode runs it on AVX-512 CPUs) on the same W0, and the
   same t-way split of the 1-thread frozen layer (`baseline` names the winner). The pool's threads sleep while
   OpenBLAS runs; with t > 1 the t-thread sgemm is also timed before the pool exists, and the two
   must agree within noise (printed per case).
   S6 adds topk:8 (its goal is top-8 of 64). S7 is an adapter pool (256 adapters of rank 16 in
   one layer, every token on one adapter through adapter_index, the batch spread over min(16, T)
   adapters, round robin): its rows are "pool" and "lora16", one rank-16 LoRA applied to every
   token of the same batch, the denominator of its goal with the adapters' bytes / stream.
   --precision: the experts' storage, f32 and / or bf16 (MOLORA_MODEL_EXPERTS_BF16; the bench's
   experts are rounded to BF16 first, so the naive loop reads the same values); default both for
   S1 and S7, f32 for the other shapes (the smoke run: both). Every JSON record has "precision"
   and "expert_bytes" (the packed experts of one copy of the layers, molora_model_memory).
   --smoke: a seconds-long run of small shapes (16 MiB rotation), 1 and 2 threads (the pool as
   parallel_for), that checks molora against the naive loop and that every timing is finite and
   positive; it asserts no speed (make test runs it on busy machines).
   --quickstart: the layer of examples/quickstart.c's old timing table (S1: d = 4096, 8 experts of
   rank 8) under dense, top-2, threshold and AdaMoLE routing, 1 and 64 tokens, one thread.
   --corename: print OpenBLAS's detected core and exit (the Makefile checks it, see its bench). */
#define _GNU_SOURCE   /* pthread_setaffinity_np: the pool's threads pinned, see pool_cpu */
#define MOLORA_IMPLEMENTATION
#include "molora.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void openblas_set_num_threads(int);
char *openblas_get_corename(void);
char *openblas_get_config(void);

typedef struct shape { const char *name; int d, n, r; } shape;
static const shape SHAPES[] = {{"S1", 4096, 8, 8},  {"S2", 4096, 8, 16}, {"S3", 4096, 16, 16},
                               {"S4", 2048, 8, 8},  {"S5", 768, 8, 8},   {"S6", 4096, 64, 1},
                               {"S7", 4096, 256, 16}};
static double g_rot_bytes;   /* the rotation: rotation_bytes() */
#define MAXR 8

static unsigned long long rng = 0x2545F4914F6CDD1Dull;
static float rnd(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((double)(rng >> 11) / (double)(1ull << 52) - 1.0);
}
static float *rnd_vec(size_t n, float scale)
{
    float *v = (float *)malloc(n * sizeof *v);
    size_t i;
    if (!v) { fprintf(stderr, "molora_bench: out of memory (%zu floats)\n", n); exit(1); }
    for (i = 0; i < n; i++) v[i] = rnd() * scale;
    return v;
}
static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) { qsort(v, (size_t)n, sizeof *v, cmpd); return n ? v[n / 2] : NAN; }

/* ---- the bench's pool: molora's tasks (or the frozen layer) split over t threads -------------
   molora_forward runs on the main thread and hands its tasks to pool_parallel_for, the call's
   parallel_for hook: worker ith runs tasks ith, ith + t, ... The workers spin only while the bench
   times split calls; whenever a baseline runs they sleep on a condition variable (pool_spin(p, 0)),
   so OpenBLAS's own threads get the cores: a spinning pool once doubled the 2-thread sgemm baseline
   (83 ms instead of 45.5 ms at S1 T=512). */
enum { JOB_TASKS, JOB_SPLIT_GEMM, JOB_SPLIT_GEMV, JOB_SPLIT_OWN };
typedef struct pool {
    int nth, job, spin, quit, done, parked;
    unsigned gen;
    pthread_t th[16];
    pthread_mutex_t mu;
    pthread_cond_t wake, asleep;
    cpu_set_t saved;   /* the main thread's affinity before the pool */
    int pinned;
    molora_task_fn task;   /* JOB_TASKS: molora's tasks of the current call */
    void *ctx;
    int n_tasks;
    const float *W0, *X;   /* the split frozen layer: Y (T, d) = X W0^T, columns split as molora does */
    float *Y;
    int T, d;
} pool;
static void frozen_sgemm(const float *W0, const float *X, float *Y, int T, int d, int d_out);
static void frozen_sgemv(const float *W0, const float *X, float *Y, int T, int d, int d_out);
static void frozen_own(const float *W0, const float *X, float *Y, int T, int d, int d_out);
typedef void (*frozen_fn)(const float *W0, const float *X, float *Y, int T, int d, int d_out);
static void pool_job(pool *p, int ith)
{
    int k;
    if (p->job != JOB_TASKS) {   /* molora's split: chunks of 16 columns */
        int chunks = (p->d + 15) / 16, o0 = chunks * ith / p->nth * 16, o1 = chunks * (ith + 1) / p->nth * 16;
        frozen_fn f = p->job == JOB_SPLIT_GEMM ? frozen_sgemm : p->job == JOB_SPLIT_GEMV ? frozen_sgemv : frozen_own;
        if (o1 > p->d) o1 = p->d;
        if (o1 > o0) f(p->W0 + (size_t)o0 * p->d, p->X, p->Y + o0, p->T, p->d, o1 - o0);
        return;
    }
    for (k = ith; k < p->n_tasks; k += p->nth) p->task(p->ctx, k, p->n_tasks);
}
static pool *g_pool;
/* Caller ith runs on the ith CPU the process may use. Unpinned, a worker woken from the condition
   variable lands on its waker's CPU, and the two spinning threads then share one core: every split
   call waited a scheduler tick (8 ms at S5 T=1). Only when there are CPUs enough. */
static int pool_cpu(const cpu_set_t *allowed, int ith)
{
    int cpu, seen = 0;
    for (cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, allowed) && seen++ == ith) return cpu;
    return -1;
}
static void pin_to(pthread_t th, int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    pthread_setaffinity_np(th, sizeof one, &one);
}
static void *pool_main(void *arg)
{
    pool *p = g_pool;
    int ith = (int)(size_t)arg;
    unsigned seen = 0;
    for (;;) {
        while (__atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) == seen) {
            if (__atomic_load_n(&p->spin, __ATOMIC_ACQUIRE)) { __builtin_ia32_pause(); continue; }
            pthread_mutex_lock(&p->mu);   /* parked: no cycles taken from a baseline */
            p->parked++;
            pthread_cond_signal(&p->asleep);
            while (__atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) == seen && !__atomic_load_n(&p->spin, __ATOMIC_ACQUIRE))
                pthread_cond_wait(&p->wake, &p->mu);
            p->parked--;
            pthread_mutex_unlock(&p->mu);
        }
        seen = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE)) return NULL;
        pool_job(p, ith);
        __atomic_add_fetch(&p->done, 1, __ATOMIC_ACQ_REL);
    }
}
/* spin = 1 before timing split calls (a sleeping worker would add its wake-up to every call);
   spin = 0 parks every worker and returns once they all sleep, the main thread unpinned as it is
   for the standalone sgemm, so OpenBLAS's threads run as they would without the pool */
static void pool_spin(pool *p, int spin)
{
    if (p->pinned && spin) pin_to(pthread_self(), pool_cpu(&p->saved, 0));
    if (p->pinned && !spin) pthread_setaffinity_np(pthread_self(), sizeof p->saved, &p->saved);
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->spin, spin, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&p->wake);
    while (!spin && p->parked < p->nth - 1) pthread_cond_wait(&p->asleep, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
static void pool_start(pool *p, int nth)
{
    int i;
    memset(p, 0, sizeof *p);
    p->nth = nth;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->asleep, NULL);
    g_pool = p;
    p->pinned = nth > 1 && !pthread_getaffinity_np(pthread_self(), sizeof p->saved, &p->saved)
                && CPU_COUNT(&p->saved) >= nth;
    for (i = 1; i < nth; i++) {
        pthread_create(&p->th[i], NULL, pool_main, (void *)(size_t)i);
        if (p->pinned) pin_to(p->th[i], pool_cpu(&p->saved, i));
    }
    pool_spin(p, 0);
}
static void pool_run(pool *p, int job)
{
    p->job = job;
    __atomic_store_n(&p->done, 0, __ATOMIC_RELEASE);
    pthread_mutex_lock(&p->mu);
    __atomic_add_fetch(&p->gen, 1, __ATOMIC_ACQ_REL);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    pool_job(p, 0);
    while (__atomic_load_n(&p->done, __ATOMIC_ACQUIRE) < p->nth - 1) __builtin_ia32_pause();
}
/* molora_forward_args.parallel_for: the call's tasks over the spinning pool, main thread included */
static void pool_parallel_for(void *user, int n_tasks, molora_task_fn task, void *ctx)
{
    pool *p = (pool *)user;
    p->task = task; p->ctx = ctx; p->n_tasks = n_tasks;
    pool_run(p, JOB_TASKS);
}
static void pool_stop(pool *p)
{
    int i;
    __atomic_store_n(&p->quit, 1, __ATOMIC_RELEASE);
    pthread_mutex_lock(&p->mu);
    __atomic_add_fetch(&p->gen, 1, __ATOMIC_ACQ_REL);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (i = 1; i < p->nth; i++) pthread_join(p->th[i], NULL);
    if (p->pinned) pthread_setaffinity_np(pthread_self(), sizeof p->saved, &p->saved);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->asleep);
}

/* ---- read bandwidth of the stream buffer with t threads ----------------------------------
   The decode figure is compared with it, so it must be what this machine can read: the largest of
   a read kernel (64-byte aligned loads, eight accumulators, threads started before the clock),
   cblas_sgemv with t OpenBLAS threads and molora's own decode kernel gvt (t threads, as the read
   kernel) over the same buffer. The buffer is the rotation size, at
   least twice the last-level cache and 256 MiB, so both read DRAM. */
typedef struct sarg { const float *p; size_t n; float sum; pthread_barrier_t *bar; double t0, t1; int gvt; } sarg;
__attribute__((target("avx512f"))) static float read_avx512(const float *p, size_t n)
{
    typedef float v16 __attribute__((vector_size(64)));
    v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
    size_t i;
    for (i = 0; i + 128 <= n; i += 128) {
        const v16 *q = (const v16 *)(const void *)(p + i);   /* the buffer is 64-byte aligned */
        a0 += q[0]; a1 += q[1]; a2 += q[2]; a3 += q[3]; a4 += q[4]; a5 += q[5]; a6 += q[6]; a7 += q[7];
    }
    a0 += a1 + a2 + a3 + a4 + a5 + a6 + a7;
    return a0[0] + a0[15];
}
__attribute__((target("avx2"))) static float read_avx2(const float *p, size_t n)
{
    typedef float v8 __attribute__((vector_size(32)));
    v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    size_t i;
    for (i = 0; i + 32 <= n; i += 32) {
        const v8 *q = (const v8 *)(const void *)(p + i);
        a0 += q[0]; a1 += q[1]; a2 += q[2]; a3 += q[3];
    }
    a0 += a1 + a2 + a3;
    return a0[0] + a0[7];
}
/* gvt reads its part as rows of 4096 floats against one x (the decode kernel itself); xy: this
   thread's own x (4096) and y (8192 rows) */
static float read_gvt(const float *p, size_t n, float *xy)
{
    size_t r0, rows = n / 4096;
    float s = 0;
    for (r0 = 0; r0 < rows; r0 += 8192) {
        int m = rows - r0 < 8192 ? (int)(rows - r0) : 8192;
        molora__get_kernels()->gvt(m, 4096, xy, p + r0 * 4096, 4096, xy + 4096, 0);
        s += xy[4096];
    }
    return s;
}
static void *stream_part(void *v)
{
    sarg *s = (sarg *)v;
    float *xy = s->gvt ? (float *)calloc(4096 + 8192, sizeof(float)) : NULL;
    if (s->gvt && !xy) { fprintf(stderr, "molora_bench: out of memory\n"); exit(1); }
    pthread_barrier_wait(s->bar);
    s->t0 = now_ms();
    if (s->gvt) s->sum = read_gvt(s->p, s->n, xy);
    else s->sum = __builtin_cpu_supports("avx512f") ? read_avx512(s->p, s->n) : read_avx2(s->p, s->n);
    s->t1 = now_ms();
    free(xy);
    return NULL;
}
/* gvt: 0 the read kernel, 1 molora's decode kernel gvt (parts of whole 4096-float rows) */
static double stream_kernel_gbps(const float *buf, size_t n, int t, int gvt)
{
    double best = 0;
    int rep, i;
    for (rep = 0; rep < 3; rep++) {
        pthread_t th[16];
        sarg a[16];
        pthread_barrier_t bar;
        double t0 = INFINITY, t1 = 0;
        size_t part = n / t / 4096 * 4096;
        pthread_barrier_init(&bar, NULL, (unsigned)t);
        for (i = 0; i < t; i++) {
            a[i].p = buf + part * i; a[i].n = part; a[i].bar = &bar; a[i].gvt = gvt;
            pthread_create(&th[i], NULL, stream_part, &a[i]);
        }
        for (i = 0; i < t; i++) {
            pthread_join(th[i], NULL);
            t0 = fmin(t0, a[i].t0); t1 = fmax(t1, a[i].t1);
        }
        pthread_barrier_destroy(&bar);
        best = fmax(best, part * t * 4.0 / (t1 - t0) / 1e6);
    }
    return best;
}
static double stream_sgemv_gbps(const float *buf, size_t n, int t)
{
    int rows = (int)(n / 4096), rep;
    float *x = rnd_vec(4096, 1.0f), *y = (float *)malloc((size_t)rows * 4);
    double best = 0;
    openblas_set_num_threads(t);
    for (rep = 0; rep < 3; rep++) {
        double t0 = now_ms();
        cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, 4096, 1.0f, buf, 4096, x, 1, 0.0f, y, 1);
        best = fmax(best, rows * 4096.0 * 4 / (now_ms() - t0) / 1e6);
    }
    free(x); free(y);
    return best;
}

/* ---- the rotation: 2 x LLC, at least 256 MiB, so T = 1 calls read from DRAM ------------------ */
static double sysfs_size(const char *path)   /* "307200K" -> bytes; 0 when unreadable */
{
    FILE *f = fopen(path, "r");
    double v = 0;
    char unit = 0;
    if (!f) return 0;
    if (fscanf(f, "%lf%c", &v, &unit) < 1) v = 0;
    fclose(f);
    return v * (unit == 'K' ? 1024.0 : unit == 'M' ? 1048576.0 : unit == 'G' ? 1073741824.0 : 1.0);
}
/* the largest cache level of cpu0 (level 3 where there is one) */
static double llc_bytes(void)
{
    double best = 0;
    int i, level, best_level = 0;
    for (i = 0; i < 16; i++) {
        char path[96];
        FILE *f;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        if (!(f = fopen(path, "r"))) break;
        if (fscanf(f, "%d", &level) != 1) level = 0;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        if (level > best_level) { best_level = level; best = sysfs_size(path); }
        else if (level == best_level) best = fmax(best, sysfs_size(path));
    }
    return best;
}
static double mem_available(void)   /* bytes, from /proc/meminfo; 0 when unknown */
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    double kb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}
/* 2 x LLC and at least 256 MiB, at most a quarter of MemAvailable: the weights and the stream
   buffer each take this much, the torch script as much again. The floor: a virtual machine's
   sysfs may report less cache than its host serves it (an AMD EPYC VM's 32 MiB L3: rotating 64
   MiB, the 2-thread decode read W0 at 63 GB/s, twice what both cores stream; at 256 MiB, 33).
   --smoke: 16 MiB (no speed asserted). */
static double rotation_bytes(int smoke, double *llc)
{
    double rot, avail = mem_available();
    *llc = llc_bytes();
    if (smoke) return 16.0 * 1048576;
    rot = *llc > 0 ? 2.0 * *llc : 0;
    if (rot < 256.0 * 1048576) rot = 256.0 * 1048576;
    if (avail > 0 && rot > avail / 4) rot = avail / 4;
    return rot;
}

static void uptime_line(char *out, size_t size)   /* `uptime`, or /proc/loadavg without it */
{
    FILE *f = popen("uptime 2>/dev/null", "r");
    size_t n;
    out[0] = 0;
    if (f) { if (!fgets(out, (int)size, f)) out[0] = 0; pclose(f); }
    if (!out[0] && (f = fopen("/proc/loadavg", "r"))) {
        if (!fgets(out, (int)size, f)) out[0] = 0;
        fclose(f);
    }
    n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == ' ')) out[--n] = 0;
    for (n = 0; out[n]; n++) if (out[n] == '"' || out[n] == '\\') out[n] = ' ';   /* JSON-safe */
}

/* ---- one shape's weights, rotated through copies ----------------------------------------- */
/* kind: 0 a routing rule; S7's 1 the pool (adapter_index), 2 one rank-16 LoRA on every token */
typedef struct routing { char name[16]; molora_routing rule; int k; float threshold; int kind; } routing;
typedef struct bench {
    shape s;
    int copies, n_rt, bf16;   /* bf16: the experts stored as BF16 (MOLORA_MODEL_EXPERTS_BF16) */
    size_t expert_bytes;      /* one copy's packed experts (every routing's layer) */
    routing rt[MAXR];
    float **W0, **A, **B, **Wg, **wt;   /* per copy; A, B: n experts of (r, d), (d, r) each concatenated */
    molora_model *m;                    /* layer (copy * n_rt + routing) */
} bench;

/* v rounded to the nearest BF16 (ties to even) in place: the values a BF16 model stores */
static void round_bf16(float *v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
        memcpy(&v[i], &u, 4);
    }
}

/* The copies of a shape: at least `need`, and coprime with every round's length (time_frozen
   advances 1, 2, 3 or 6 copies, time_molora 3 per routing), so that each call in a round walks
   through every copy over the reps. Before, on an Intel VM (480 MiB L3, a 960 MiB rotation), S1's
   15 copies in rounds of 12 at T = 1 gave its baselines the same 5 copies every round, and the
   frozen layer read 0.89 of molora's time (1.01 with 17 copies). */
static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }
static int rotation_copies(int need, int n_rt)
{
    static const int f[] = {1, 2, 3, 6};
    int c, i, ok;
    for (c = need < 2 ? 2 : need;; c++) {
        for (ok = 1, i = 0; i < 4; i++) ok &= gcd(c, f[i] + 3 * n_rt) == 1;
        if (ok) return c;
    }
}

static void bench_build(bench *b, const shape *s, const routing *rt, int n_rt, int bf16)
{
    int c, l, i;
    size_t d = (size_t)s->d, per = d * d * 4 + (size_t)s->n * s->r * d * (bf16 ? 4 : 8), total;
    molora_layer_desc *ld;
    molora_expert_desc *ex;
    molora_model_desc md;
    memset(b, 0, sizeof *b);
    b->s = *s;
    b->bf16 = bf16;
    b->copies = rotation_copies((int)ceil(g_rot_bytes / (double)per), n_rt);
    b->n_rt = n_rt;
    memcpy(b->rt, rt, sizeof(routing) * n_rt);
    b->W0 = (float **)calloc((size_t)b->copies, sizeof(float *));
    b->A = (float **)calloc((size_t)b->copies, sizeof(float *));
    b->B = (float **)calloc((size_t)b->copies, sizeof(float *));
    b->Wg = (float **)calloc((size_t)b->copies, sizeof(float *));
    b->wt = (float **)calloc((size_t)b->copies, sizeof(float *));
    ld = (molora_layer_desc *)calloc((size_t)b->copies * n_rt, sizeof *ld);
    ex = (molora_expert_desc *)calloc((size_t)b->copies * s->n, sizeof *ex);
    for (c = 0; c < b->copies; c++) {
        b->W0[c] = rnd_vec(d * d, 1.0f / sqrtf((float)d));
        b->A[c] = rnd_vec((size_t)s->n * s->r * d, 1.0f / sqrtf((float)d));
        b->B[c] = rnd_vec((size_t)s->n * s->r * d, 0.05f);
        if (bf16) { round_bf16(b->A[c], (size_t)s->n * s->r * d); round_bf16(b->B[c], (size_t)s->n * s->r * d); }
        b->Wg[c] = rnd_vec((size_t)s->n * d, 3.0f / sqrtf((float)d));
        b->wt[c] = rnd_vec(d, 2.0f / sqrtf((float)d));
        for (i = 0; i < s->n; i++) {
            molora_expert_desc *e = &ex[c * s->n + i];
            e->rank = s->r; e->lora_alpha = 2.0f * s->r;
            e->A = b->A[c] + (size_t)i * s->r * d; e->B = b->B[c] + (size_t)i * s->r * d;
        }
        for (l = 0; l < n_rt; l++) {
            molora_layer_desc *L = &ld[c * n_rt + l];
            L->d_in = s->d; L->d_out = s->d; L->n_experts = rt[l].kind == 2 ? 1 : s->n; L->experts = &ex[c * s->n];
            L->W0 = b->W0[c]; L->routing = rt[l].rule; L->top_k = rt[l].k; L->threshold = rt[l].threshold;
            L->gate_weight = b->Wg[c]; L->threshold_weight = b->wt[c];
        }
    }
    memset(&md, 0, sizeof md);
    md.n_layers = b->copies * n_rt; md.layers = ld; md.flags = bf16 ? MOLORA_MODEL_EXPERTS_BF16 : 0;
    if (molora_model_init(&md, &b->m) != MOLORA_RESULT_SUCCESS) {
        fprintf(stderr, "molora_bench: init failed\n");
        exit(1);
    }
    molora_model_memory(b->m, &total, &b->expert_bytes);
    b->expert_bytes /= (size_t)b->copies;
    printf("    %s %s: packed experts %.2f MiB per copy of its %d layer%s (model block %.1f MiB, %d copies)\n",
           s->name, bf16 ? "bf16" : "f32", b->expert_bytes / 1048576.0, n_rt, n_rt > 1 ? "s" : "",
           total / 1048576.0, b->copies);
    free(ld); free(ex);
}
static void bench_free(bench *b)
{
    int c;
    molora_model_free(b->m);
    for (c = 0; c < b->copies; c++) { free(b->W0[c]); free(b->A[c]); free(b->B[c]); free(b->Wg[c]); free(b->wt[c]); }
    free(b->W0); free(b->A); free(b->B); free(b->Wg); free(b->wt);
}

/* the frozen layer on d_out rows of W0 (all d, or one caller's share of a split): Y (T, d_out),
   row stride d. Timed both ways; the faster counts (sgemv only for T <= 16). */
static void frozen_sgemm(const float *W0, const float *X, float *Y, int T, int d, int d_out)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, d_out, d, 1.0f, X, d, W0, d, 0.0f, Y, d);
}
static void frozen_sgemv(const float *W0, const float *X, float *Y, int T, int d, int d_out)
{
    int t;
    for (t = 0; t < T; t++)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, d_out, d, 1.0f, W0, d, X + (size_t)t * d, 1, 0.0f,
                    Y + (size_t)t * d, 1);
}
/* molora's own frozen layer, the kernels its forward runs there: at T = 1 the single-row gvt
   (>>gemv in the header), at 2..16 the small-batch ntp on X packed at W0's phase (the packing
   timed with it), or nt where the CPU has no ntp; from 17 to the CPU table's own_t tokens ntg in
   blocks of W0's rows (molora__nt_own). They read W0 once for all T tokens, with no packing of
   W0, so the baseline takes them too when they are faster than OpenBLAS. */
static int own_frozen(int T) { return T <= 16 || molora__own_nt(T); }
static void frozen_own(const float *W0, const float *X, float *Y, int T, int d, int d_out)
{
    const molora__kernels *kr = molora__get_kernels();
    float *P;
    int q;
    if (T == 1) { kr->gvt(d_out, d, X, W0, d, Y, 0); return; }
    if (T > 16) { molora__nt_own(T, d_out, d, X, d, W0, d, Y, d); return; }
    if (!kr->ntp) { kr->nt(T, d_out, d, 1.0f, X, d, W0, d, Y, d, 0); return; }
    q = molora__phase(W0);
    P = (float *)aligned_alloc(64, (molora__pack_floats(T, d) * sizeof(float) + 63) / 64 * 64);
    if (!P) { fprintf(stderr, "molora_bench: out of memory\n"); exit(1); }
    molora__pack_x(X, d, T, d, q, P);
    kr->ntp(T, d_out, d, q, 1.0f, P, W0, d, Y, d, 0);
    free(P);
}
/* naive: per token, sgemv for W0 then per expert two sgemv (dense weights w) */
static void naive(const bench *b, int c, const float *X, float *Y, const float *w, int T, float *h)
{
    int t, i, d = b->s.d, r = b->s.r;
    float s = 2.0f;
    for (t = 0; t < T; t++) {
        const float *x = X + (size_t)t * d;
        float *y = Y + (size_t)t * d;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, d, d, 1.0f, b->W0[c], d, x, 1, 0.0f, y, 1);
        for (i = 0; i < b->s.n; i++) {
            const float *A = b->A[c] + (size_t)i * r * d, *B = b->B[c] + (size_t)i * r * d;
            if (b->rt[0].kind == 1 && w[(size_t)t * b->s.n + i] == 0.0f) continue;   /* S7: one adapter per token */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, r, d, 1.0f, A, d, x, 1, 0.0f, h, 1);
            cblas_sgemv(CblasRowMajor, CblasNoTrans, d, r, w[(size_t)t * b->s.n + i] * s, B, r, h, 1, 1.0f, y, 1);
        }
    }
}

static const char *path_name(molora_path p)
{
    switch (p) {
    case MOLORA_PATH_DECODE: return "decode";
    case MOLORA_PATH_SMALL: return "small";
    case MOLORA_PATH_GEMM: return "gemm";
    case MOLORA_PATH_SPARSE: return "sparse";
    default: return "none";
    }
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) { out[n++] = atoi(s); while (*s && *s != ',') s++; if (*s == ',') s++; }
    return n;
}

/* ---- options ----------------------------------------------------------------------------- */
typedef struct options {
    const char *shapes, *routings, *json_path, *precisions;   /* precisions: NULL = the default */
    int tokens[16], n_tok, threads[8], n_thr, reps, smoke;
} options;

static int parse_options(int argc, char **argv, options *o)   /* 0, the exit status, or -1: exit 0 */
{
    int i, quickstart = 0;
    memset(o, 0, sizeof *o);
    o->shapes = "S1,S2,S3,S4,S5,S6,S7"; o->routings = "dense,adamole,topk:2";
    o->n_tok = parse_list("1,8,64,512", o->tokens, 16); o->n_thr = parse_list("1,2", o->threads, 8);
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shapes") && i + 1 < argc) o->shapes = argv[++i];
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) o->n_tok = parse_list(argv[++i], o->tokens, 16);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) o->n_thr = parse_list(argv[++i], o->threads, 8);
        else if (!strcmp(argv[i], "--routing") && i + 1 < argc) o->routings = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) o->json_path = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) o->reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc) o->precisions = argv[++i];
        else if (!strcmp(argv[i], "--smoke")) o->smoke = 1;
        else if (!strcmp(argv[i], "--quickstart")) quickstart = 1;
        else if (!strcmp(argv[i], "--corename")) { printf("%s\n", openblas_get_corename()); return -1; }
        else {
            fprintf(stderr, "usage: %s [--shapes S1,..] [--tokens 1,8,..] [--threads 1,2] "
                    "[--routing dense,adamole,topk:K,threshold:V] [--json FILE] [--reps N]\n"
                    "       [--precision f32,bf16] [--smoke | --quickstart | --corename]\n",
                    argv[0]);
            return 2;
        }
    }
    if (quickstart) {
        o->shapes = "S1"; o->routings = "dense,topk:2,threshold:0.15,adamole";
        o->n_tok = parse_list("1,64", o->tokens, 16); o->n_thr = parse_list("1", o->threads, 8);
    }
    if (o->smoke) {
        o->shapes = "S5";
        o->n_tok = parse_list("1,8,64", o->tokens, 16); o->n_thr = parse_list("1,2", o->threads, 8);
        if (!o->precisions) o->precisions = "f32,bf16";
    }
    if (o->precisions) {
        const char *p = o->precisions;
        if (!*p) { fprintf(stderr, "molora_bench: --precision needs f32, bf16 or both\n"); return 2; }
        while (*p) {
            size_t len = strcspn(p, ",");
            if (!((len == 3 && !strncmp(p, "f32", 3)) || (len == 4 && !strncmp(p, "bf16", 4)))) {
                fprintf(stderr, "molora_bench: unknown precision '%.*s' (f32, bf16)\n", (int)len, p);
                return 2;
            }
            p += len + (p[len] == ',');
        }
    }
    for (i = 0; i < o->n_thr; i++)
        if (o->threads[i] < 1 || o->threads[i] > 16) { fprintf(stderr, "molora_bench: threads 1..16\n"); return 2; }
    for (i = 0; i < o->n_tok; i++)
        if (o->tokens[i] < 1 || o->tokens[i] > 8192) { fprintf(stderr, "molora_bench: tokens 1..8192\n"); return 2; }
    return 0;
}

/* the routing list for shape s (top-k beyond N dropped; S6 always gets topk:8, its goal); -1: unknown */
static int parse_routings(const char *p, const shape *s, routing *rt)
{
    int n_rt = 0, l;
    if (!strcmp(s->name, "S7")) {   /* the pool and its reference, whatever the routings asked */
        memset(rt, 0, 2 * sizeof *rt);
        strcpy(rt[0].name, "pool"); rt[0].rule = MOLORA_ROUTING_FIXED; rt[0].kind = 1;
        strcpy(rt[1].name, "lora16"); rt[1].rule = MOLORA_ROUTING_FIXED; rt[1].kind = 2;
        return 2;
    }
    while (*p && n_rt < MAXR - 1) {
        routing *r = &rt[n_rt];
        int len = 0;
        memset(r, 0, sizeof *r);
        while (p[len] && p[len] != ',') len++;
        snprintf(r->name, sizeof r->name, "%.*s", len, p);
        if (!strncmp(p, "dense", 5)) r->rule = MOLORA_ROUTING_DENSE;
        else if (!strncmp(p, "adamole", 7)) r->rule = MOLORA_ROUTING_ADAMOLE;
        else if (!strncmp(p, "topk:", 5)) { r->rule = MOLORA_ROUTING_TOPK; r->k = atoi(p + 5); }
        else if (!strncmp(p, "threshold:", 10)) {
            r->rule = MOLORA_ROUTING_THRESHOLD; r->threshold = (float)atof(p + 10);
        }
        else { fprintf(stderr, "molora_bench: unknown routing '%s'\n", r->name); return -1; }
        p += len + (p[len] == ',');
        if (r->rule == MOLORA_ROUTING_TOPK && (r->k < 1 || r->k > s->n)) continue;
        n_rt++;
    }
    for (l = 0; l < n_rt && !(rt[l].rule == MOLORA_ROUTING_TOPK && rt[l].k == 8); l++) { }
    if (!strcmp(s->name, "S6") && l == n_rt) {
        memset(&rt[n_rt], 0, sizeof rt[n_rt]);
        strcpy(rt[n_rt].name, "topk:8"); rt[n_rt].rule = MOLORA_ROUTING_TOPK; rt[n_rt].k = 8;
        n_rt++;
    }
    return n_rt;
}

/* ---- one (shape, T, threads) case --------------------------------------------------------- */
typedef struct run {   /* the buffers and timings of one case */
    int T, nth, reps;
    float *X, *Y, *Y2, *Wt, *h;
    int32_t counts[256], *idx;   /* idx: S7's adapter per token */
    void *ws;   /* one workspace, a slice per task */
    size_t ws_size;
    double gemm[64], gemv[64], split_gemm[64], split_gemv[64], alone[64], own[64], split_own[64];
    double full[MAXR][64], delta[MAXR][64], gate[MAXR][64], active[MAXR], naive_ms;
    molora_path path[MAXR];
} run;

/* the check of the baselines: the t-thread cblas_sgemm with no pool thread alive, on the same
   rotation; the bench's own figure for it (pool parked) must agree within noise. As many untimed
   calls as timed ones first: after one warm-up call, S1 T=512 alone still read 76 ms against 67 in
   the bench, and 63 against 64 after a full warm-up pass. */
static void time_alone(const bench *b, run *u)
{
    int rep, c = 0;
    openblas_set_num_threads(u->nth);
    for (rep = -u->reps; rep < u->reps; rep++) {
        double t0 = now_ms();
        frozen_sgemm(b->W0[c], u->X, u->Y, u->T, b->s.d, b->s.d);
        if (rep >= 0) u->alone[rep] = now_ms() - t0;
        c = (c + 1) % b->copies;
    }
}

/* one round of the baselines, each call on the next copy: OpenBLAS with t threads (the pool
   parked) and molora's own frozen kernels where its forward runs them, then with t > 1 the t-way
   split of the 1-thread frozen layer (the pool spinning, as for molora). Form 0 sgemm, 1 sgemv
   (T <= 16), 2 molora's gvt (T = 1), ntp (2..16) or ntg (17..own_t). Returns the next copy. */
static int time_frozen(const bench *b, run *u, pool *pl, int c, int rep)
{
    static const frozen_fn fn[3] = {frozen_sgemm, frozen_sgemv, frozen_own};
    static const int job[3] = {JOB_SPLIT_GEMM, JOB_SPLIT_GEMV, JOB_SPLIT_OWN};
    int T = u->T, d = b->s.d, form, forms = own_frozen(T) ? 3 : 1;
    double t0, *whole[3], *split[3];
    whole[0] = u->gemm; whole[1] = u->gemv; whole[2] = u->own;
    split[0] = u->split_gemm; split[1] = u->split_gemv; split[2] = u->split_own;
    pool_spin(pl, 0);
    openblas_set_num_threads(u->nth);
    for (form = 0; form < forms; form++) {
        if (form == 1 && T > 16) continue;   /* sgemv T times: only for few tokens */
        t0 = now_ms();
        fn[form](b->W0[c], u->X, u->Y, T, d, d);
        t0 = now_ms() - t0;
        if (rep >= 0) whole[form][rep] = t0;
        c = (c + 1) % b->copies;
    }
    openblas_set_num_threads(1);
    if (u->nth < 2) return c;
    pool_spin(pl, 1);
    pl->X = u->X; pl->Y = u->Y; pl->T = T; pl->d = d;
    for (form = 0; form < forms; form++) {
        if (form == 1 && T > 16) continue;
        pl->W0 = b->W0[c];
        t0 = now_ms(); pool_run(pl, job[form]); t0 = now_ms() - t0;
        if (rep >= 0) split[form][rep] = t0;
        c = (c + 1) % b->copies;
    }
    return c;
}

static const float g_one = 1.0f;   /* S7's lora16: the weight of its one expert */
static int pool_used(int T) { return T < 16 ? T : 16; }   /* S7: the adapters a batch of T tokens uses */

/* one round of molora: each routing in full, delta and gate (route only) modes, one call on the
   main thread split into t tasks over the spinning pool (its parallel_for) with OpenBLAS at one
   thread; the gate mode routes on the main thread alone. Returns the next copy. */
static int time_molora(const bench *b, run *u, pool *pl, int c, int rep)
{
    int l, mode, nth = u->nth;
    pool_spin(pl, 1);
    for (l = 0; l < b->n_rt; l++) {
        for (mode = 0; mode < 3; mode++) {
            molora_forward_args a;
            molora_result r;
            double t0;
            memset(&a, 0, sizeof a);
            a.layer = c * b->n_rt + l; a.n_tokens = u->T; a.x = u->X; a.y = u->Y;
            a.output = mode == 1 ? MOLORA_OUTPUT_DELTA : MOLORA_OUTPUT_FULL;
            a.workspace = u->ws; a.workspace_size = u->ws_size;
            if (nth > 1) { a.parallel_for = pool_parallel_for; a.parallel_user = pl; a.n_tasks = nth; }
            if (b->rt[l].kind == 1) a.adapter_index = u->idx;
            if (b->rt[l].kind == 2) a.weights = &g_one;
            a.weights_out = u->Wt; a.counts_out = u->counts;
            if (mode == 0) a.path_out = &u->path[l];
            t0 = now_ms();
            r = mode == 2 ? molora_route(b->m, &a) : molora_forward(b->m, &a);
            t0 = now_ms() - t0;
            if (r != MOLORA_RESULT_SUCCESS) { fprintf(stderr, "molora_bench: %s\n", molora_result_string(r)); exit(1); }
            if (rep >= 0) (mode == 0 ? u->full : mode == 1 ? u->delta : u->gate)[l][rep] = t0;
            if (mode == 0) {
                int e, tot = 0;
                for (e = 0; e < (b->rt[l].kind == 2 ? 1 : b->s.n); e++) tot += u->counts[e];
                u->active[l] = (double)tot / u->T;
            }
            c = (c + 1) % b->copies;
        }
    }
    return c;
}

/* the standalone check first (no pool yet), then interleaved rounds of baselines and molora */
static void time_rounds(const bench *b, run *u)
{
    int rep, c = 0;
    pool pl;
    if (u->nth > 1) time_alone(b, u);
    pool_start(&pl, u->nth);
    for (rep = -1; rep < u->reps; rep++) {
        c = time_frozen(b, u, &pl, c, rep);
        c = time_molora(b, u, &pl, c, rep);
    }
    pool_stop(&pl);
}

/* the naive loop (all experts, dense weights), once per case, fewer reps when slow; molora and it
   must agree. Returns the failures (0 or 1). */
static int time_naive(const bench *b, run *u, int smoke)
{
    molora_forward_args a;
    double t_naive[8], mx = 0, sc = 0;
    int rep, nr = smoke ? 1 : u->T >= 64 ? 1 : 3;
    size_t q, n = (size_t)u->T * b->s.d;
    openblas_set_num_threads(u->nth);
    memset(&a, 0, sizeof a);
    a.layer = 0; a.n_tokens = u->T; a.x = u->X; a.y = u->Y2; a.workspace = u->ws; a.workspace_size = u->ws_size;
    a.weights_out = u->Wt;
    if (b->rt[0].kind == 1) a.adapter_index = u->idx;
    if (molora_forward(b->m, &a) != MOLORA_RESULT_SUCCESS) {   /* layer 0 = copy 0, first routing: Y2 = molora */
        fprintf(stderr, "molora_bench: %s T=%d: molora_forward failed\n", b->s.name, u->T);
        return 1;
    }
    for (rep = 0; rep < nr; rep++) {
        double t0 = now_ms();
        naive(b, 0, u->X, u->Y, u->Wt, u->T, u->h);
        t_naive[rep] = now_ms() - t0;
    }
    u->naive_ms = median(t_naive, nr);
    for (q = 0; q < n; q++) { mx = fmax(mx, fabs(u->Y[q] - u->Y2[q])); sc = fmax(sc, fabs(u->Y[q])); }
    if (mx <= 1e-4 * (1 + sc)) return 0;
    fprintf(stderr, "molora_bench: %s T=%d: molora differs from the naive loop by %g\n", b->s.name, u->T, mx);
    return 1;
}

/* the run's context, in every JSON record */
typedef struct context {
    double stream, stream_kernel, stream_sgemv, stream_gvt, rot_mib, llc_mib;   /* stream: the largest of the three */
    char uptime[160];
} context;

/* the baselines of one case (medians); frozen_ms is the best of them */
typedef struct baselines {
    double gemm, gemv, split_gemm, split_gemv, alone, frozen, openblas, split, own, split_own;   /* own: gvt */
    const char *name;
    int noise;   /* the check: in-bench t-thread sgemm vs alone within 3 % or the spread (IQR) of alone */
} baselines;

static double iqr(const double *sorted, int n) { return n ? sorted[3 * n / 4] - sorted[n / 4] : 0; }

static void baselines_of(run *u, baselines *bs)
{
    int n = u->reps, small = u->T <= 16, split = u->nth > 1;
    bs->gemm = median(u->gemm, n);
    bs->gemv = small ? median(u->gemv, n) : INFINITY;
    bs->split_gemm = split ? median(u->split_gemm, n) : INFINITY;
    bs->split_gemv = split && small ? median(u->split_gemv, n) : INFINITY;
    bs->alone = split ? median(u->alone, n) : NAN;
    bs->own = own_frozen(u->T) ? median(u->own, n) : INFINITY;
    bs->split_own = split && own_frozen(u->T) ? median(u->split_own, n) : INFINITY;
    bs->openblas = fmin(bs->gemm, bs->gemv); bs->split = fmin(fmin(bs->split_gemm, bs->split_gemv), bs->split_own);
    bs->frozen = fmin(fmin(bs->openblas, bs->own), bs->split);
    bs->name = bs->frozen == bs->gemm ? "sgemm" : bs->frozen == bs->gemv ? "sgemv"
             : bs->frozen == bs->own ? (u->T == 1 ? "molora_gemv" : small ? "molora_small" : "molora_own")
             : bs->frozen == bs->split_gemm ? "split_sgemm" : bs->frozen == bs->split_gemv ? "split_sgemv"
             : u->T == 1 ? "split_molora_gemv" : small ? "split_molora_small" : "split_molora_own";
    bs->noise = !split || fabs(bs->gemm - bs->alone) <= fmax(0.03 * bs->alone, iqr(u->alone, n));
}

static void json_num(char *out, size_t size, double v)   /* a number, or null when not measured */
{
    if (isfinite(v)) snprintf(out, size, "%.6f", v); else snprintf(out, size, "null");
}

static void json_record(FILE *json, const bench *b, const run *u, int l, const baselines *bs, const context *cx,
                        double mm, double dm, double gm, double mgbps, int first, const char *extra)
{
    const shape *s = &b->s;
    char sgemv[32], mg[32], sg[32], sv[32], al[32], sp[32], ow[32], so[32];
    json_num(sgemv, sizeof sgemv, bs->gemv); json_num(mg, sizeof mg, u->T == 1 ? mgbps : NAN);
    json_num(sg, sizeof sg, bs->split_gemm); json_num(sv, sizeof sv, bs->split_gemv);
    json_num(al, sizeof al, bs->alone); json_num(sp, sizeof sp, bs->split);
    json_num(ow, sizeof ow, bs->own); json_num(so, sizeof so, bs->split_own);
    fprintf(json, "%s  {\"shape\": \"%s\", \"d\": %d, \"n_experts\": %d, \"rank\": %d, \"tokens\": %d, "
            "\"threads\": %d, \"routing\": \"%s\", \"path\": \"%s\", \"frozen_ms\": %.6f, \"molora_ms\": %.6f, "
            "\"delta_ms\": %.6f, \"gate_ms\": %.6f, \"naive_ms\": %.6f, \"torch_ms\": null, \"torch_lora_ms\": null, "
            "\"ratio_vs_frozen\": %.6f, \"naive_over_molora\": %.6f, \"active_experts_mean\": %.4f, "
            "\"stream_gbps\": %.3f, \"floor\": %.6f, \"frozen_sgemm_ms\": %.6f, \"frozen_sgemv_ms\": %s, "
            "\"molora_gbps\": %s, \"baseline\": \"%s\", \"frozen_openblas_ms\": %.6f, \"frozen_split_ms\": %s, "
            "\"frozen_split_sgemm_ms\": %s, \"frozen_split_sgemv_ms\": %s, \"frozen_sgemm_standalone_ms\": %s, "
            "\"baseline_check\": \"%s\", \"stream_kernel_gbps\": %.3f, \"stream_sgemv_gbps\": %.3f, "
            "\"stream_gvt_gbps\": %.3f, "
            "\"rotation_mib\": %.1f, \"llc_mib\": %.1f, \"reps\": %d, \"uptime\": \"%s\", \"precision\": \"%s\", "
            "\"expert_bytes\": %zu, \"frozen_molora_gemv_ms\": %s, \"frozen_split_molora_gemv_ms\": %s%s}",
            first ? "" : ",\n", s->name, s->d, s->n, s->r, u->T, u->nth, b->rt[l].name, path_name(u->path[l]),
            bs->frozen, mm, dm, gm, u->naive_ms, mm / bs->frozen, u->naive_ms / mm, u->active[l], cx->stream,
            1.0 + 2.0 * s->n * s->r / s->d, bs->gemm, sgemv, mg, bs->name, bs->openblas, sp, sg, sv, al,
            u->nth < 2 ? "n/a" : bs->noise ? "noise" : "differs", cx->stream_kernel, cx->stream_sgemv, cx->stream_gvt,
            cx->rot_mib,
            cx->llc_mib, u->reps, cx->uptime, b->bf16 ? "bf16" : "f32", b->expert_bytes, ow, so, extra);
}

static const char *own_name(int T) { return T == 1 ? "gvt" : T <= 16 ? "ntp" : "ntg"; }
/* the case's baselines on one line: the check of the t-thread sgemm against it alone */
static void print_baselines(const bench *b, const run *u, const baselines *bs)
{
    printf("    %s T=%d thr=%d baselines (ms): OpenBLAS %d-thread sgemm %.3f", b->s.name, u->T, u->nth, u->nth,
           bs->gemm);
    if (u->T <= 16) printf(", sgemv %.3f", bs->gemv);
    if (own_frozen(u->T)) printf("; molora's %s %.3f", own_name(u->T), bs->own);
    if (u->nth > 1) {
        printf("; %d-way split of 1-thread sgemm %.3f", u->nth, bs->split_gemm);
        if (u->T <= 16) printf(", sgemv %.3f", bs->split_gemv);
        if (own_frozen(u->T)) printf(", molora's %s %.3f", own_name(u->T), bs->split_own);
        printf("; check: sgemm alone %.3f, in the bench %.3f (%+.1f %%): %s", bs->alone, bs->gemm,
               100.0 * (bs->gemm / bs->alone - 1), bs->noise ? "noise" : "DIFFERS");
    }
    printf("; frozen_ms = %s\n", bs->name);
}

/* S7's goal: the pool's delta against max(one rank-16 LoRA on every token, the used adapters'
   bytes / the stream rate), printed and added to its JSON records */
static void pool_goal(const bench *b, run *u, const context *cx, char *extra, size_t size)
{
    double pool = median(u->delta[0], u->reps), lora = median(u->delta[1], u->reps);
    double bytes = (double)pool_used(u->T) * b->s.r * b->s.d * 2.0 * (b->bf16 ? 2 : 4);
    double stream_ms = bytes / (cx->stream * 1e6), denom = fmax(lora, stream_ms);
    printf("    S7 T=%d thr=%d: pool delta_ms %.3f; one rank-16 LoRA on every token %.3f ms; %d adapters used, "
           "%.1f MiB / %.1f GB/s = %.3f ms; goal delta <= 1.5 x %.3f = %.3f ms: %.2f x\n", u->T, u->nth, pool, lora,
           pool_used(u->T), bytes / 1048576, cx->stream, stream_ms, denom, 1.5 * denom, pool / denom);
    snprintf(extra, size, ", \"pool_lora_delta_ms\": %.6f, \"pool_adapter_bytes\": %.0f, \"pool_stream_ms\": %.6f, "
             "\"pool_denominator_ms\": %.6f", lora, bytes, stream_ms, denom);
}

/* one row per routing (and a JSON record); the medians of the rounds. Returns the failures. */
static int report(const bench *b, run *u, const context *cx, int smoke, FILE *json, int *first_rec)
{
    const shape *s = &b->s;
    int T = u->T, d = s->d, l, fails = 0;
    double floor = 1.0 + 2.0 * s->n * s->r / d;
    baselines bs;
    char extra[256] = "";
    baselines_of(u, &bs);
    if (b->rt[0].kind == 1) pool_goal(b, u, cx, extra, sizeof extra);
    for (l = 0; l < b->n_rt; l++) {
        double mm = median(u->full[l], u->reps), dm = median(u->delta[l], u->reps), gm = median(u->gate[l], u->reps);
        double bytes = 4.0 * ((double)d * d + (s->n + 1.0) * d) + (b->bf16 ? 2.0 : 4.0) * u->active[l] * s->r * 2.0 * d;
        double mgbps = T == 1 ? bytes / mm / 1e6 : NAN, ratio = mm / bs.frozen;
        printf("%-3s %4d %3d %3d %5d %3d %-14s %-7s %-11s %9.3f %9.3f %8.3f %8.4f %9.2f %7.3f %7.3f %6.1f %6.2f "
               "%6.1f %4s\n",
               s->name, d, s->n, s->r, T, u->nth, b->rt[l].name, path_name(u->path[l]), bs.name, bs.frozen, mm, dm,
               gm, u->naive_ms, ratio, floor, u->naive_ms / mm, u->active[l], T == 1 ? mgbps : cx->stream,
               b->bf16 ? "bf16" : "f32");
        if (smoke && !(ratio > 0 && isfinite(ratio))) {
            fprintf(stderr, "molora_bench: smoke: ratio %g is not a time\n", ratio);
            fails++;
        }
        if (json) { json_record(json, b, u, l, &bs, cx, mm, dm, gm, mgbps, *first_rec, extra); *first_rec = 0; }
    }
    print_baselines(b, u, &bs);
    fflush(stdout);
    return fails;
}

/* time one case: buffers, the interleaved rounds, the naive loop, the report */
static int run_case(const bench *b, const options *o, int T, int nth, const context *cx, FILE *json, int *first_rec)
{
    run *u = (run *)calloc(1, sizeof *u);
    int k, fails;
    size_t d = (size_t)b->s.d;
    double work = 2.0 * T * d * d;   /* frozen flops, to size the repetitions */
    if (!u) { fprintf(stderr, "molora_bench: out of memory\n"); exit(1); }
    u->T = T; u->nth = nth;
    u->reps = o->reps ? o->reps : work < 1e8 ? 31 : work < 2e9 ? 11 : 5;
    if (o->smoke) u->reps = 3;
    if (u->reps > 64) u->reps = 64;
    u->X = rnd_vec((size_t)T * d, 1.0f);
    u->Y = (float *)malloc((size_t)T * d * 4); u->Y2 = (float *)malloc((size_t)T * d * 4);
    u->Wt = (float *)malloc((size_t)T * b->s.n * 4); u->h = (float *)malloc((size_t)b->s.r * 4);
    u->idx = (int32_t *)malloc((size_t)T * sizeof(int32_t));
    for (k = 0; k < T; k++) u->idx[k] = (k % pool_used(T)) * (b->s.n / 16);   /* round robin over the used */
    molora_workspace_size_tasks(b->m, T, nth, &u->ws_size);   /* one slice per task of the pool */
    u->ws = malloc(u->ws_size);
    time_rounds(b, u);
    fails = time_naive(b, u, o->smoke);
    fails += report(b, u, cx, o->smoke, json, first_rec);
    free(u->ws);
    free(u->X); free(u->Y); free(u->Y2); free(u->Wt); free(u->h); free(u->idx); free(u);
    return fails;
}

/* the stream buffer: the rotation size, 64-byte aligned for the read kernel */
static float *stream_buffer(size_t n)
{
    void *p = NULL;
    size_t i;
    if (posix_memalign(&p, 4096, n * sizeof(float))) { fprintf(stderr, "molora_bench: out of memory\n"); exit(1); }
    for (i = 0; i < n; i++) ((float *)p)[i] = rnd();
    return (float *)p;
}

static void stream_of(context *cx, const float *buf, size_t n, int t)
{
    cx->stream_kernel = stream_kernel_gbps(buf, n, t, 0);
    cx->stream_sgemv = stream_sgemv_gbps(buf, n, t);
    cx->stream_gvt = stream_kernel_gbps(buf, n, t, 1);
    cx->stream = fmax(fmax(cx->stream_kernel, cx->stream_sgemv), cx->stream_gvt);
    printf("    stream, %d thread%s, %.0f MiB: read kernel %.1f GB/s, cblas_sgemv %.1f GB/s, molora's gvt %.1f GB/s\n",
           t, t > 1 ? "s" : "", cx->rot_mib, cx->stream_kernel, cx->stream_sgemv, cx->stream_gvt);
}

/* OpenBLAS's idle threads spin for 2^28 cycles (about 0.1 s here) after each multi-threaded call,
   and would take a core from molora's split, timed right after the t-thread baseline. With
   OPENBLAS_THREAD_TIMEOUT=4 they sleep at once (the next call wakes them: microseconds, the same
   in the bench and in the standalone check). OpenBLAS reads it when it loads, so the bench starts
   itself again with it set, unless you set it. */
static void quiet_openblas_threads(char **argv)
{
    if (getenv("OPENBLAS_THREAD_TIMEOUT")) return;
    if (setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1) == 0) execv("/proc/self/exe", argv);
    fprintf(stderr, "molora_bench: could not restart with OPENBLAS_THREAD_TIMEOUT=4; OpenBLAS's threads spin\n");
}

int main(int argc, char **argv)
{
    options o;
    FILE *json = NULL;
    context cx;
    double llc;
    int first_rec = 1, i, fails = 0, rc;
    size_t sn;
    float *sbuf;
    quiet_openblas_threads(argv);
    if ((rc = parse_options(argc, argv, &o))) return rc < 0 ? 0 : rc;
    if (o.json_path && !(json = fopen(o.json_path, "w"))) {
        fprintf(stderr, "molora_bench: cannot write %s\n", o.json_path);
        return 1;
    }
    if (json) fprintf(json, "[\n");
    memset(&cx, 0, sizeof cx);
    g_rot_bytes = rotation_bytes(o.smoke, &llc);
    cx.rot_mib = g_rot_bytes / 1048576; cx.llc_mib = llc / 1048576;
    sn = (size_t)(g_rot_bytes / 4) / 4096 * 4096;
    sbuf = stream_buffer(sn);
    uptime_line(cx.uptime, sizeof cx.uptime);
    printf("molora %s bench: ratios measured side by side in one run (median); OpenBLAS %s, core %s\n",
           MOLORA_VERSION_STRING, openblas_get_config(), openblas_get_corename());
    printf("rotation %.0f MiB (LLC %.0f MiB from sysfs); OPENBLAS_THREAD_TIMEOUT=%s; uptime at start: %s\n",
           cx.rot_mib, cx.llc_mib, getenv("OPENBLAS_THREAD_TIMEOUT"), cx.uptime);
    printf("%-3s %4s %3s %3s %5s %3s %-14s %-7s %-11s %9s %9s %8s %8s %9s %7s %7s %6s %6s %6s %4s\n", "sh", "d", "N",
           "r", "T", "thr", "routing", "path", "baseline", "frozen_ms", "molora_ms", "delta_ms", "gate_ms", "naive_ms",
           "ratio", "floor", "naive/", "active", "GB/s", "prec");
    for (i = 0; i < (int)(sizeof SHAPES / sizeof *SHAPES); i++) {
        const shape *s = &SHAPES[i];
        routing rt[MAXR];
        int n_rt, hi, ti, pr;
        const char *prec = o.precisions ? o.precisions : !strcmp(s->name, "S1") || !strcmp(s->name, "S7") ? "f32,bf16"
                                                                                                      : "f32";
        bench b;
        if (!strstr(o.shapes, s->name)) continue;
        if ((n_rt = parse_routings(o.routings, s, rt)) < 0) return 2;
        for (pr = 0; pr < 2; pr++) {   /* f32, then bf16, as asked */
            if (!strstr(prec, pr ? "bf16" : "f32")) continue;
            bench_build(&b, s, rt, n_rt, pr);
            for (hi = 0; hi < o.n_thr; hi++) {
                stream_of(&cx, sbuf, sn, o.threads[hi]);
                for (ti = 0; ti < o.n_tok; ti++)
                    fails += run_case(&b, &o, o.tokens[ti], o.threads[hi], &cx, json, &first_rec);
            }
            bench_free(&b);
        }
    }
    if (json) { fprintf(json, "\n]\n"); fclose(json); }
    free(sbuf);
    {
        char end[160];
        uptime_line(end, sizeof end);
        printf("uptime at the end: %s\n", end);
    }
    if (o.smoke) printf("bench smoke: %d passed, %d failed\n", fails ? 0 : 1, fails ? 1 : 0);
    return fails ? 1 : 0;
}

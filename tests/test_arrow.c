/* ARROW against PEFT 0.20's own numbers (tests/fixtures/arrow, written by
   tests/fixtures/make_arrow.py with PEFT's create_arrow_model on a tiny random Llama): with
   PEFT's prototypes given, each module's output equals PEFT's within 1e-5 for GenKnowSub off and
   on and (temperature, k) in {(1, 2), (0.3, 3), (2, 1)}; the prototypes molora computes equal
   numpy's SVD within 1e-5 up to sign, and with them the outputs equal PEFT's when PEFT is given
   numpy's exact prototypes. It prints how far PEFT's power-iteration prototypes are from
   the exact ones and what the exact ones change in the outputs. Built with and without BLAS. */
#define TEST_RNG_SEED 0x41727277ull
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "molora.h"

#define DIR "tests/fixtures/arrow/"
#define N 3
#define T 6
static const char *const modules[2] = {"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"};
static const struct { float temp; int k; const char *tag; } configs[3] = {{1, 2, "t1.k2"}, {0.3f, 3, "t0.3.k3"},
                                                                           {2, 1, "t2.k1"}};

/* tensor NAME of st as float32 (n elements, checked), into a malloc'd copy */
static float *tensor(molora_safetensors *st, const char *name, size_t n)
{
    size_t i;
    molora_tensor_info ti;
    const float *p;
    float *c;
    if (molora_safetensors_find(st, name, &i)) fail_msg("fixture tensor %s is missing", name);
    assert_int_equal(molora_safetensors_tensor_info(st, i, &ti), 0);
    assert_true(ti.n_elements == n);
    assert_int_equal(molora_safetensors_tensor_f32(st, i, &p), 0);
    c = malloc(n * sizeof *c);
    memcpy(c, p, n * sizeof *c);
    return c;
}

/* one module's experts from the task LoRAs, GenKnowSub applied the way PEFT does (float32:
   A_e - mean_g A_g, B_e - mean_g B_g, s_e unchanged) when gks */
typedef struct mod {
    int d_in, d_out, r;
    float *A[N], *B[N], scaling[N], *W0;
    molora_expert_desc ex[N];
} mod;

static void factors(const char *dir, const char *module, int *r, int *din, int *dout, float **A, float **B, float *s)
{
    molora_adapter *a;
    molora_model *m;
    molora_model_desc md;
    molora_layer_desc one;
    int l;
    assert_int_equal(molora_adapter_open(dir, NULL, &a), 0);
    l = molora_adapter_find_layer(a, module);
    assert_true(l >= 0);
    molora_adapter_model_desc(a, &md);
    one = md.layers[l];
    md.n_layers = 1; md.layers = &one;
    assert_int_equal(molora_model_init(&md, &m), 0);
    assert_int_equal(molora_model_expert(m, 0, 0, r, s), 0);
    *din = one.d_in; *dout = one.d_out;
    *A = malloc(sizeof(float) * (size_t)*r * *din);
    *B = malloc(sizeof(float) * (size_t)*dout * *r);
    molora_convert_f32(one.experts[0].A, one.experts[0].A_type, (size_t)*r * *din, *A);
    molora_convert_f32(one.experts[0].B, one.experts[0].B_type, (size_t)*dout * *r, *B);
    molora_model_free(m);
    molora_adapter_free(a);
}

static void mod_load(mod *M, int module, int gks, molora_safetensors *base)
{
    char dir[128], name[160];
    int e, g;
    size_t i;
    for (e = 0; e < N; e++) {
        snprintf(dir, sizeof dir, DIR "task_%d", e);
        factors(dir, modules[module], &M->r, &M->d_in, &M->d_out, &M->A[e], &M->B[e], &M->scaling[e]);
    }
    if (gks) {
        float *Ag[2], *Bg[2], s;
        int r, di, dout;
        size_t na = (size_t)M->r * M->d_in, nb = (size_t)M->d_out * M->r;
        for (g = 0; g < 2; g++) {
            snprintf(dir, sizeof dir, DIR "general_%d", g);
            factors(dir, modules[module], &r, &di, &dout, &Ag[g], &Bg[g], &s);
        }
        for (e = 0; e < N; e++) {
            for (i = 0; i < na; i++) M->A[e][i] -= (Ag[0][i] + Ag[1][i]) / 2.0f;
            for (i = 0; i < nb; i++) M->B[e][i] -= (Bg[0][i] + Bg[1][i]) / 2.0f;
        }
        for (g = 0; g < 2; g++) { free(Ag[g]); free(Bg[g]); }
    }
    for (e = 0; e < N; e++) {
        memset(&M->ex[e], 0, sizeof M->ex[e]);
        M->ex[e].rank = M->r; M->ex[e].A = M->A[e]; M->ex[e].B = M->B[e]; M->ex[e].scaling = M->scaling[e];
    }
    snprintf(name, sizeof name, "%s.weight", modules[module]);
    M->W0 = tensor(base, name, (size_t)M->d_out * M->d_in);
}
static void mod_free(mod *M)
{
    int e;
    for (e = 0; e < N; e++) { free(M->A[e]); free(M->B[e]); }
    free(M->W0);
}

/* Y (T, d_out) = the full ARROW layer over X with the given prototypes (NULL: computed) */
static void run(const mod *M, const float *P, float temp, int k, const float *X, float *Y, float *Pout)
{
    molora_layer_desc ld;
    molora_model_desc md;
    molora_model *m;
    molora_forward_args a;
    size_t wsz;
    void *ws;
    memset(&ld, 0, sizeof ld);
    ld.d_in = M->d_in; ld.d_out = M->d_out; ld.n_experts = N; ld.experts = M->ex; ld.W0 = M->W0;
    ld.routing = MOLORA_ROUTING_ARROW; ld.top_k = k; ld.temperature = temp; ld.prototypes = P;
    memset(&md, 0, sizeof md);
    md.n_layers = 1; md.layers = &ld;
    assert_int_equal(molora_model_init(&md, &m), 0);
    assert_int_equal(molora_workspace_size(m, T, &wsz), 0);
    ws = malloc(wsz);
    memset(&a, 0, sizeof a);
    a.n_tokens = T; a.x = X; a.y = Y; a.workspace = ws; a.workspace_size = wsz;
    assert_int_equal(molora_forward(m, &a), 0);
    if (Pout) assert_int_equal(molora_model_prototypes(m, 0, Pout), 0);
    free(ws);
    molora_model_free(m);
}

static void test_arrow_peft_parity(void **s)
{
    molora_safetensors *ref, *base;
    float X[T * 16];
    int g, mo, c, e, i;
    (void)s;
    assert_int_equal(molora_safetensors_open(DIR "ref.safetensors", NULL, &ref), 0);
    assert_int_equal(molora_safetensors_open(DIR "base.safetensors", NULL, &base), 0);
    {   /* x.npy: the input both modules see, (T, 16) float32 after np.save's version 1.0 header */
        FILE *f = fopen(DIR "x.npy", "rb");
        unsigned char h[10];
        assert_non_null(f);
        assert_int_equal(fread(h, 1, 10, f), 10);
        assert_true(h[6] == 1 && h[7] == 0);
        assert_int_equal(fseek(f, 10 + (long)(h[8] | h[9] << 8), SEEK_SET), 0);
        assert_int_equal(fread(X, sizeof(float), T * 16, f), T * 16);
        fclose(f);
    }
    for (g = 0; g < 2; g++)
        for (mo = 0; mo < 2; mo++) {
            mod M;
            char name[200];
            float *Pp, *Pe, Pm[N * 16], Y[T * 16], Yx[T * 16];
            double cosv[N], dy = 0, ymax = 0;
            err ep = {0, 0, 0}, eo = {0, 0, 0}, ex = {0, 0, 0};
            mod_load(&M, mo, g, base);
            snprintf(name, sizeof name, "peft.g%d.%s", g, modules[mo]);
            Pp = tensor(ref, name, (size_t)N * M.d_in);
            snprintf(name, sizeof name, "exact.g%d.%s", g, modules[mo]);
            Pe = tensor(ref, name, (size_t)N * M.d_in);
            for (c = 0; c < 3; c++) {
                float *Yp, *Ye;
                snprintf(name, sizeof name, "y.g%d.%s.%s", g, configs[c].tag, modules[mo]);
                Yp = tensor(ref, name, (size_t)T * M.d_out);
                snprintf(name, sizeof name, "yexact.g%d.%s.%s", g, configs[c].tag, modules[mo]);
                Ye = tensor(ref, name, (size_t)T * M.d_out);
                run(&M, Pp, configs[c].temp, configs[c].k, X, Y, NULL);
                run(&M, NULL, configs[c].temp, configs[c].k, X, Yx, Pm);
                for (i = 0; i < T * M.d_out; i++) {
                    err_add(&eo, Y[i], Yp[i], 1 + fabs(Yp[i]));
                    err_add(&ex, Yx[i], Ye[i], 1 + fabs(Ye[i]));
                    dy = fmax(dy, fabs(Yx[i] - Yp[i]));
                    ymax = fmax(ymax, fabs(Yp[i]));
                }
                free(Yp); free(Ye);
            }
            CHECK_ERR(eo, 1e-5, "outputs with PEFT's prototypes vs PEFT");
            CHECK_ERR(ex, 1e-5, "outputs with molora's exact prototypes vs PEFT run with numpy's exact ones");
            for (e = 0; e < N; e++) {   /* exact prototypes vs numpy's SVD, sign free */
                double dot = 0, pn = 0, sg;
                for (i = 0; i < M.d_in; i++) {
                    dot += (double)Pm[e * M.d_in + i] * Pe[e * M.d_in + i];
                    pn += (double)Pp[e * M.d_in + i] * Pp[e * M.d_in + i];
                }
                sg = dot < 0 ? -1 : 1;
                for (i = 0; i < M.d_in; i++) err_add(&ep, Pm[e * M.d_in + i], sg * Pe[e * M.d_in + i], 1);
                dot = 0;
                for (i = 0; i < M.d_in; i++) dot += (double)Pp[e * M.d_in + i] * Pe[e * M.d_in + i];
                cosv[e] = fabs(dot) / sqrt(pn);
            }
            CHECK_ERR(ep, 1e-5, "exact prototypes vs numpy's SVD");
            print_message("  gks %d %-32s |cos(PEFT's, exact)| %.4f %.4f %.4f; outputs with exact prototypes "
                          "differ from PEFT's by up to %.2e (max |y| %.2f)\n", g, modules[mo], cosv[0], cosv[1],
                          cosv[2], dy, ymax);
            free(Pp); free(Pe);
            mod_free(&M);
        }
    molora_safetensors_free(ref);
    molora_safetensors_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arrow_peft_parity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

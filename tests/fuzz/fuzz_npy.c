/* libFuzzer harness: tools/molora_npy.h on arbitrary bytes as a whole .npy file, through the pure
   header parser, the in-memory loader and the file reader (on a memfd, a real regular file).
   Oracles beyond the sanitizers: the loader and the file reader agree on every input (result,
   message, shape and data); what they accept is exactly data_offset + rows * cols * 4 bytes; a
   refusal leaves one non-empty line and no data; the writer's header for an accepted shape parses
   back to that shape. */
#define _GNU_SOURCE
#include "tools/molora_npy.h"
#include <stdint.h>
#include <sys/mman.h>

static int g_fd = -1;

/* the bytes as the content of a regular file, read back through molora_npy_read_fd */
static int read_as_file(const uint8_t *data, size_t size, float **x, int *r, int *c, char *err, size_t errlen)
{
    if (g_fd < 0 && (g_fd = memfd_create("fuzz_npy", 0)) < 0) __builtin_trap();
    if (ftruncate(g_fd, 0) != 0 || (size && pwrite(g_fd, data, size, 0) != (ssize_t)size) ||
        lseek(g_fd, 0, SEEK_SET) != 0) __builtin_trap();
    return molora_npy_read_fd(g_fd, x, r, c, err, errlen);
}
static void check_message(const char *err)
{
    if (!err[0] || strchr(err, '\n')) __builtin_trap();
}
/* the writer's header for (r, c) must parse back to (r, c) */
static void check_writer(int r, int c)
{
    char h[256], err[320];
    molora_npy_info in;
    int n = molora_npy_header(h, sizeof h, r, c);
    if (n < 0 || n % 64 || molora_npy_parse_header(h, (size_t)n, &in, err, sizeof err)) __builtin_trap();
    if (in.ndim != 2 || in.shape[0] != (unsigned long long)r || in.shape[1] != (unsigned long long)c ||
        in.data_offset != (size_t)n) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    molora_npy_info in;
    char e1[320] = "", e2[320] = "";
    float *x = NULL, *y = NULL;
    int r1 = -1, c1 = -1, r2 = -1, c2 = -1, a, b;
    if (molora_npy_parse_header((const char *)data, size, &in, e1, sizeof e1) == 0) {
        if (in.data_offset > size || in.ndim < 0 || in.ndim > MOLORA_NPY_MAX_DIMS) __builtin_trap();
    } else check_message(e1);
    a = molora_npy_load_memory(data, size, &x, &r1, &c1, e1, sizeof e1);
    b = read_as_file(data, size, &y, &r2, &c2, e2, sizeof e2);
    if ((a == 0) != (b == 0)) __builtin_trap();
    if (a == 0) {
        if (r1 != r2 || c1 != c2 || r1 < 0 || c1 < 1) __builtin_trap();
        if (molora_npy_parse_header((const char *)data, size, &in, e1, sizeof e1) ||
            in.data_offset + (size_t)r1 * (size_t)c1 * 4 != size) __builtin_trap();
        if (memcmp(x, y, (size_t)r1 * (size_t)c1 * 4)) __builtin_trap();
        check_writer(r1, c1);
    } else {
        check_message(e1);
        if (x || y || strcmp(e1, e2)) __builtin_trap();
    }
    free(x);
    free(y);
    return 0;
}

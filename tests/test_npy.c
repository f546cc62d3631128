/* tools/molora_npy.h: the header parser on every form numpy accepts and every one it (or molora,
   on purpose) refuses, each refusal checked at its message; the size checks before allocation;
   the reader on files; the writer against np.save's bytes (when /usr/bin/python3 has numpy). */
#include "test_util.h"   /* cmocka */

#include "tools/molora_npy.h"

static char g_buf[65536 + 64];

/* a .npy of format `version` holding the n bytes of dict as its header (no padding) and
   `data_len` data bytes */
static size_t npy_make_n(int version, const char *dict, size_t n, size_t data_len)
{
    size_t pre = version == 1 ? 10 : 12, i;
    assert_true(pre + n + data_len <= sizeof g_buf);
    memcpy(g_buf, "\x93NUMPY", 6);
    g_buf[6] = (char)version; g_buf[7] = 0;
    for (i = 0; i < pre - 8; i++) g_buf[8 + i] = (char)((n >> (8 * i)) & 0xff);
    memcpy(g_buf + pre, dict, n);
    for (i = 0; i < data_len; i++) g_buf[pre + n + i] = (char)(i % 4 == 3 ? 0x3f : 0);   /* floats 0.5 */
    return pre + n + data_len;
}
static size_t npy_make(int version, const char *dict, size_t data_len)
{
    return npy_make_n(version, dict, strlen(dict), data_len);
}
/* loads dict (format version) with data for (3, 5): expects success and that shape */
static void accept_dict(int version, const char *dict, int rows, int cols)
{
    char err[320] = "";
    float *x = NULL;
    int r = -1, c = -1;
    size_t n = npy_make(version, dict, (size_t)rows * (size_t)cols * 4);
    if (molora_npy_load_memory(g_buf, n, &x, &r, &c, err, sizeof err))
        fail_msg("refused (v%d) %s: %s", version, dict, err);
    assert_int_equal(r, rows);
    assert_int_equal(c, cols);
    if (rows > 0 && cols > 0) assert_true(x[0] == 0.5f && x[rows * cols - 1] == 0.5f);
    free(x);
}
/* loads the first n bytes of g_buf: expects a refusal whose message contains want, no data */
static void refuse_bytes(size_t n, const char *want, const char *what)
{
    char err[320] = "";
    float *x = (float *)&err;
    int r = -7, c = -7;
    if (!molora_npy_load_memory(g_buf, n, &x, &r, &c, err, sizeof err)) fail_msg("accepted %s", what);
    if (!strstr(err, want)) fail_msg("%s: message '%s' lacks '%s'", what, err, want);
    assert_null(x);
    assert_int_equal(r, -7);
}
static void refuse_dict(int version, const char *dict, size_t data_len, const char *want)
{
    refuse_bytes(npy_make(version, dict, data_len), want, dict);
}

#define D(shape) "{'descr': '<f4', 'fortran_order': False, 'shape': " shape ", }"

/* ---- what numpy accepts ------------------------------------------------------------------------ */
static const char *const ACCEPTED[] = {
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }",          /* np.save's own */
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }                    \n",
    "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (3, 5)}",     /* double quotes */
    "{'descr':'<f4','fortran_order':False,'shape':(3,5)}",                  /* no spaces */
    "{ 'descr' : '<f4' , 'fortran_order' : False , 'shape' : ( 3 , 5 , ) , }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5,),}",          /* trailing commas */
    "{'shape': (3, 5), 'fortran_order': False, 'descr': '<f4'}",            /* any key order */
    "{'fortran_order': False, 'descr': '|f4', 'shape': (3, 5)}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (+3, 0x5)}",         /* Python ints */
    "{'descr': '<f4', 'fortran_order': False, 'shape': (0b11, 0o5)}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 0x_5)}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': ((3), ((5)))}",      /* parentheses */
    "({'descr': ('<f4'), 'fortran_order': (False), 'shape': (3, 5)})",
    "{'descr': u'<f4', 'fortran_order': False, 'shape': (3, 5)}",           /* string forms */
    "{'descr': r'<f4', 'fortran_order': False, 'shape': (3, 5)}",
    "{'descr': '<' \"f\" '4', 'fortran_order': False, 'shape': (3, 5)}",
    "{'descr': '\\x3cf\\64', 'fortran_order': False, 'shape': (3, 5)}",
    "{'descr': '\\u003cf4', 'fortran_order': False, 'shape': (3, 5)}",
    "{'descr': '''<f4''', 'fortran_order': False, 'shape': (3, 5)}",
    "{'de\\\nscr': '<f4', 'fortran_order': False, 'shape': (3, 5)}",
    "{'descr': '<f4', # a comment\n 'fortran_order': False, 'shape': (3, 5)}",
    "{'descr': '<f4', \\\n 'fortran_order': False, 'shape': (3,\r\n 5)\r}",
    "\n\t\n# comment line\n{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5)}",
    "  \t{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5)}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5)} # end\n\n  \f\n",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5)}",            /* no final newline */
};
static void test_accepts_numpy_forms(void **state)
{
    size_t i;
    int v;
    (void)state;
    for (i = 0; i < sizeof ACCEPTED / sizeof *ACCEPTED; i++) {
        for (v = 1; v <= 3; v++) accept_dict(v, ACCEPTED[i], 3, 5);
    }
    accept_dict(1, D("(0, 5)"), 0, 5);                                      /* no rows */
    accept_dict(1, D("(-0, 5)"), 0, 5);
    accept_dict(1, D("(00, 5)"), 0, 5);
    accept_dict(1, D("(3L, 5L)"), 3, 5);                                    /* Python 2 longs in 1.0, 2.0 */
    accept_dict(2, D("(3 L, 0x5L)"), 3, 5);
    accept_dict(1, D("(1_5, 1)"), 15, 1);
    /* UTF-8 in 3.0 */
    accept_dict(3, "{'descr': '<f4', # caf\xc3\xa9\n'fortran_order': False, 'shape': (3, 5)}", 3, 5);
    accept_dict(1, "{'descr': '<f4', # caf\xe9\n'fortran_order': False, 'shape': (3, 5)}", 3, 5);   /* latin-1 in 1.0 */
}
/* numpy's limit is 10000 characters of header (UTF-8 characters in format 3.0) */
static void test_header_size_limit(void **state)
{
    static char dict[10100];
    size_t n = strlen(D("(3, 5)"));
    (void)state;
    memcpy(dict, D("(3, 5)"), n);
    memset(dict + n, ' ', 10000 - n);
    dict[10000] = 0;
    accept_dict(1, dict, 3, 5);
    accept_dict(2, dict, 3, 5);
    dict[10000] = ' '; dict[10001] = 0;
    refuse_dict(1, dict, 60, "header of 10001 bytes is over numpy's limit of 10000 characters");
    refuse_dict(3, dict, 60, "header of 10001 characters is over numpy's limit");
    memcpy(dict + n, "#\xc3\xa9", 3);                                       /* 10001 bytes, 10000 characters */
    accept_dict(3, dict, 3, 5);
}

/* ---- what numpy refuses ------------------------------------------------------------------------ */
/* numpy_accepts: refused by molora on purpose though numpy 1.24 loads it (np.load of a real file
   reads a negative dim as "infer from the size"; \N{...} escapes are not decoded here) */
typedef struct refusal { const char *dict; const char *want; int numpy_accepts; } refusal;
static const refusal REFUSED[] = {
    {"{'descr': '<f4', 'shape': (3, 5)}", "header: no key 'fortran_order'", 0},
    {"{'descr': '<f4', 'fortran_order': False}", "header: no key 'shape'", 0},
    {"{'fortran_order': False, 'shape': (3, 5)}", "header: no key 'descr'", 0},
    {"{}", "header: no key 'descr'", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), 'x': 1}",
     "header: key 'x' is not one of 'descr', 'fortran_order', 'shape'", 0},
    {"{'Descr': '<f4', 'fortran_order': False, 'shape': (3, 5)}", "key 'Descr' is not one of", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), 3: 1}", "header: a key at byte 58 is not a string", 0},
    {"{'descr': '<f4', 'fortran_order': 0, 'shape': (3, 5)}", "header: fortran_order is not a bool (True or False)", 0},
    {"{'descr': '<f4', 'fortran_order': None, 'shape': (3, 5)}", "header: fortran_order is not a bool", 0},
    {"{'descr': '<f4', 'fortran_order': 'False', 'shape': (3, 5)}", "header: fortran_order is not a bool", 0},
    {"{'descr': '<f4', 'fortran_order': false, 'shape': (3, 5)}",
     "header: a name that is not True, False or None at byte 34", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': 15}", "header: shape is not a tuple of ints", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3L)}", "header: shape is not a tuple of ints", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (True, 15)}", "header: shape is not a tuple of ints", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': ('3', 5)}", "header: shape is not a tuple of ints", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': ((3, 5),)}", "header: shape is not a tuple of ints", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': [3, 5]}",
     "header: a list (not part of a float32 header) at byte 50", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 5)}", "header: shape has a negative dimension (-1)", 1},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, - 5)}", "header: shape has a negative dimension (-5)", 1},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3.0, 5)}",
     "header: a float or complex number (dims must be ints) at byte 52", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3e0, 5)}", "header: a float or complex number", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3j, 5)}", "header: a float or complex number", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (.3, 5)}", "header: a float (dims must be ints)", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (03, 5)}", "header: leading zeros in a decimal int", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3l, 5)}", "header: a malformed number", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3__0, 5)}", "header: a malformed number", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (30_, 5)}", "header: a malformed number", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (0x, 5)}", "header: a number prefix without digits", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (--3, 5)}", "header: a sign not followed by a number", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (-(3), 5)}", "header: a sign not followed by a number", 1},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3 5)}", "header: expected ',' or ')'", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5,,)}", "header: an unexpected character at byte 56", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5),,}", "header: an unexpected character", 0},
    /* '<f4fortran_order' */
    {"{'descr': '<f4' 'fortran_order': False, 'shape': (3, 5)}", "header: expected ',' or '}' at byte 31", 0},
    {"{'descr': '<f4', 'fortran_order': False 'shape': (3, 5)}", "header: expected ',' or '}'", 0},
    {"{'descr', 'fortran_order', 'shape'}", "header: expected ':' after a key", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5)", "header: unexpected end (expected ',' or '}')", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5)} x", "header: text after the dict at byte 58", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5)};", "header: text after the dict", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5)}\\\n", "header: text after the dict", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5)}\v", "header: text after the dict", 0},
    {" \n {'descr': '<f4', 'fortran_order': False, 'shape': (3, 5)}", "header: an indented first line", 0},
    {"", "header: unexpected end (expected a value)", 0},
    {"\n\n", "header: unexpected end (expected a value)", 0},
    {"['descr', '<f4']", "header: a list", 0},
    {"('descr', 'fortran_order')", "header is not a dict", 0},
    {"({'descr': '<f4', 'fortran_order': False, 'shape': (3, 5)},)", "header is not a dict", 0},
    {"{'descr': {'a': 1}, 'fortran_order': False, 'shape': (3, 5)}", "header: a dict inside the header dict", 0},
    {"{'descr': b'<f4', 'fortran_order': False, 'shape': (3, 5)}", "header: a bytes or f-string literal", 0},
    {"{'descr': f'<f4', 'fortran_order': False, 'shape': (3, 5)}", "header: a bytes or f-string literal", 0},
    {"{'descr': ur'<f4', 'fortran_order': False, 'shape': (3, 5)}",
     "header: a name that is not True, False or None", 0},
    {"{'descr': '<f4, 'fortran_order': False, 'shape': (3, 5)}", "header: expected ',' or '}'", 0},
    {"{'descr': '<f4", "header: unexpected end (unterminated string)", 0},
    {"{'descr': '<f4\n', 'fortran_order': False, 'shape': (3, 5)}", "header: newline in a string", 0},
    {"{'descr': '\\x3', 'fortran_order': False, 'shape': (3, 5)}", "header: truncated \\x, \\u or \\U escape", 0},
    {"{'descr': '\\U00110000', 'fortran_order': False, 'shape': (3, 5)}", "header: escape past U+10FFFF", 0},
    {"{'descr': '\\N{LESS-THAN SIGN}f4', 'fortran_order': False, 'shape': (3, 5)}",
     "header: \\N{...} escapes are not supported", 1},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (18446744073709551616, 5)}",
     "header: shape has a dimension of 2^64 or more", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
     "1,1,1)}",
     "header: shape has 33 dimensions (numpy's limit is 32)", 0},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': "
     "(((((((((((((((((((((((((((((((((3))))))))))))))))))))))))))))))))), 5)}",
     "header: nesting deeper than 32", 0},
};
static void test_refuses_what_numpy_refuses(void **state)
{
    size_t i;
    (void)state;
    for (i = 0; i < sizeof REFUSED / sizeof *REFUSED; i++) refuse_dict(1, REFUSED[i].dict, 60, REFUSED[i].want);
    refuse_dict(3, D("(3L, 5)"), 60, "header: a malformed number");          /* no Python 2 filter in 3.0 */
    refuse_bytes(npy_make_n(1, D("(3, 5)") "\0", sizeof D("(3, 5)"), 60), "header: a NUL byte", "NUL at the end");
    refuse_bytes(npy_make_n(1, "{'descr': '<f4'\0, 'fortran_order': False, 'shape': (3, 5)}",
                            sizeof "{'descr': '<f4'\0, 'fortran_order': False, 'shape': (3, 5)}" - 1, 60),
                 "header: a NUL byte", "NUL inside");
}
/* a key given twice: numpy keeps the last; molora refuses the lie, whatever its spelling */
static const char *const DUPLICATES[] = {
    "{'descr': '<f4', 'fortran_order': False, 'fortran_order': True, 'shape': (5, 3)}",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), 'shape': (5, 3)}",
};
static void test_refuses_duplicate_keys(void **state)
{
    (void)state;
    refuse_dict(1, "{'descr': '<f4', 'fortran_order': False, 'fortran_order': True, 'shape': (5, 3)}", 60,
                "header: key 'fortran_order' given twice (numpy would keep the last one; refused as a lying header)");
    refuse_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), 'shape': (5, 3)}", 60,
                "header: key 'shape' given twice");
    refuse_dict(1, "{'descr': '<f8', 'descr': '<f4', 'fortran_order': False, 'shape': (3, 5)}", 60,
                "header: key 'descr' given twice");
    refuse_dict(2, "{'descr': '<f4', \"de\" 'scr': '<f4', 'fortran_order': False, 'shape': (3, 5)}", 60,
                "header: key 'descr' given twice");
    refuse_dict(3, "{'shape': (3, 5), 'descr': '<f4', 'fortran_order': False, 's\\x68ape': (3, 5)}", 60,
                "header: key 'shape' given twice");
}

/* ---- the preamble ------------------------------------------------------------------------------ */
static void test_refuses_bad_preamble(void **state)
{
    size_t n, k;
    char msg[64];
    (void)state;
    refuse_bytes(0, "not a .npy file (bad magic)", "empty");
    n = npy_make(1, D("(3, 5)"), 60);
    g_buf[5] = 'Z';
    refuse_bytes(n, "not a .npy file (bad magic)", "NUMPZ");
    n = npy_make(1, D("(3, 5)"), 60);
    refuse_bytes(7, "not a .npy file (bad magic)", "7 bytes");
    refuse_bytes(9, "truncated .npy header (9 bytes)", "9 bytes of 1.0");
    n = npy_make(2, D("(3, 5)"), 60);
    refuse_bytes(11, "truncated .npy header (11 bytes)", "11 bytes of 2.0");
    refuse_dict(4, D("(3, 5)"), 60, ".npy format version 4.0 not supported (1.0-3.0)");
    refuse_dict(0, D("(3, 5)"), 60, ".npy format version 0.0 not supported");
    n = npy_make(1, D("(3, 5)"), 60);
    g_buf[7] = 1;
    refuse_bytes(n, ".npy format version 1.1 not supported", "1.1");
    for (k = 1; k <= 8; k++) {                                              /* header length short by 1..8 */
        n = npy_make(1, D("(3, 5)"), 0);
        snprintf(msg, sizeof msg, "header length %lu runs past the end of the file (%lu bytes",
                 (unsigned long)(n - 10), (unsigned long)(n - 10 - k));
        refuse_bytes(n - k, msg, "short header");
    }
    n = npy_make(1, D("(3, 5)"), 60);
    g_buf[8] = (char)0xff; g_buf[9] = (char)0xff;
    refuse_bytes(n, "header of 65535 bytes is over numpy's limit", "65535");
}
static void test_refuses_bad_utf8_in_format_3(void **state)
{
    static const char *const bad[] = {"\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe9", "\xc3"};
    char dict[128];
    size_t i;
    (void)state;
    for (i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(dict, sizeof dict, "{'descr': '<f4', #%s\n'fortran_order': False, 'shape': (3, 5)}", bad[i]);
        refuse_dict(3, dict, 60, "header is not valid UTF-8 (format 3.0)");
    }
}

/* ---- what molora reads: float32, C order, rank 2, the data exactly the shape's size ------------- */
static void test_refuses_what_molora_cannot_use(void **state)
{
    (void)state;
    refuse_dict(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 5)}", 120,
                "dtype <f8 is not float32 ('<f4')");
    refuse_dict(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (3, 5)}", 60, "dtype >f4 is not float32");
    refuse_dict(1, "{'descr': ('<f4', (2,)), 'fortran_order': False, 'shape': (3, 5)}", 60,
                "dtype (not a string) is not float32");
    refuse_dict(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 5)}", 60,
                "Fortran-order arrays are not supported (need C order)");
    refuse_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 5)}", 60,
                "array must have rank 2 (T, d_in), not 3");
    refuse_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (15,)}", 60,
                "array must have rank 2 (T, d_in), not 1");
    refuse_dict(1, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}", 4,
                "array must have rank 2 (T, d_in), not 0");
    refuse_dict(1, D("(3, 5)"), 59, "data size does not match shape (3, 5): it needs 60 bytes, the file has 59 after "
                                    "the header");
    refuse_dict(1, D("(3, 5)"), 61, "data size does not match shape (3, 5): it needs 60 bytes, the file has 61 after "
                                    "the header");
    refuse_dict(1, D("(3, 5)"), 0, "it needs 60 bytes, the file has 0 after the header");
    refuse_dict(1, D("(16777216, 16777216)"), 60, "data size does not match shape (16777216, 16777216): it needs "
                                                  "1125899906842624 bytes, the file has 60");
    refuse_dict(1, D("(4611686018427387904, 4)"), 60,
                "shape (4611686018427387904, 4) overflows: more than 2^64 bytes of data");
    refuse_dict(1, D("(4611686018427387904, 1)"), 60, "shape (4611686018427387904, 1) overflows");
    refuse_dict(1, D("(18446744073709551615, 18446744073709551615)"), 60, "overflows");
    refuse_dict(1, D("(3, 0)"), 0, "shape (3, 0) out of range");
}
/* the range check on a parsed info, without building a 2^24-row file */
static void test_range_of_rows_and_cols(void **state)
{
    molora_npy_info in;
    char err[320];
    (void)state;
    memset(&in, 0, sizeof in);
    strcpy(in.descr, "<f4"); in.descr_is_str = 1; in.ndim = 2;
    in.shape[0] = 1u << 24; in.shape[1] = 1;
    assert_int_equal(molora_npy_check_f32_2d(&in, 4ull << 24, err, sizeof err), 0);
    in.shape[0] = (1u << 24) + 1;
    assert_int_not_equal(molora_npy_check_f32_2d(&in, 4ull * ((1u << 24) + 1), err, sizeof err), 0);
    assert_string_equal(err, "shape (16777217, 1) out of range");
    in.shape[0] = 1; in.shape[1] = 1u << 24;
    assert_int_equal(molora_npy_check_f32_2d(&in, 4ull << 24, err, sizeof err), 0);
    in.shape[1] = (1u << 24) + 1;
    assert_int_not_equal(molora_npy_check_f32_2d(&in, 4ull * ((1u << 24) + 1), err, sizeof err), 0);
    assert_string_equal(err, "shape (1, 16777217) out of range");
    in.shape[0] = 0; in.shape[1] = 0;
    assert_int_not_equal(molora_npy_check_f32_2d(&in, 0, err, sizeof err), 0);
    assert_string_equal(err, "shape (0, 0) out of range");
}
/* the pure parser reports where the data starts and what the dict said */
static void test_parse_header_fields(void **state)
{
    molora_npy_info in;
    char err[320] = "";
    size_t n = npy_make(2, "{'shape': (7, 0x10, 2), 'fortran_order': True, 'descr': '<i8'}", 0);
    (void)state;
    assert_int_equal(molora_npy_parse_header(g_buf, n, &in, err, sizeof err), 0);
    assert_int_equal(in.version, 2);
    assert_int_equal(in.data_offset, n);
    assert_string_equal(in.descr, "<i8");
    assert_int_equal(in.descr_is_str, 1);
    assert_int_equal(in.fortran_order, 1);
    assert_int_equal(in.ndim, 3);
    assert_true(in.shape[0] == 7 && in.shape[1] == 16 && in.shape[2] == 2);
}

/* ---- files ------------------------------------------------------------------------------------- */
static void test_reads_fixtures(void **state)
{
    static const char *const ok[] = {"tests/fixtures/x.npy", "tests/fixtures/x_v2.npy", "tests/fixtures/x_v3.npy"};
    float *x, *ref;
    int r, c, rr, rc;
    char err[320];
    size_t i;
    (void)state;
    assert_int_equal(molora_npy_read(ok[0], &ref, &rr, &rc, err, sizeof err), 0);
    assert_true(rr == 3 && rc == 5);
    for (i = 1; i < 3; i++) {
        if (molora_npy_read(ok[i], &x, &r, &c, err, sizeof err)) fail_msg("%s: %s", ok[i], err);
        assert_true(r == 3 && c == 5);
        assert_memory_equal(x, ref, 60);
        free(x);
    }
    free(ref);
    assert_int_not_equal(molora_npy_read("tests/fixtures/x_f64.npy", &x, &r, &c, err, sizeof err), 0);
    assert_string_equal(err, "dtype <f8 is not float32 ('<f4')");
    assert_int_not_equal(molora_npy_read("tests/fixtures/x_fortran.npy", &x, &r, &c, err, sizeof err), 0);
    assert_string_equal(err, "Fortran-order arrays are not supported (need C order)");
    assert_int_not_equal(molora_npy_read("tests/fixtures/no_such.npy", &x, &r, &c, err, sizeof err), 0);
    assert_string_equal(err, "cannot open: No such file or directory");
    assert_int_not_equal(molora_npy_read("tests/fixtures", &x, &r, &c, err, sizeof err), 0);
    assert_string_equal(err, "a directory, not a regular file");
    assert_int_not_equal(molora_npy_read("/dev/null", &x, &r, &c, err, sizeof err), 0);
    assert_string_equal(err, "a character device, not a regular file");
    assert_null(x);
}
/* the file reader starts at the file's start, wherever the descriptor's offset was left */
static void test_read_fd_from_any_offset(void **state)
{
    int fd = open("tests/fixtures/x.npy", O_RDONLY), r, c;
    float *x;
    char err[320];
    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(lseek(fd, 7, SEEK_SET), 7);
    if (molora_npy_read_fd(fd, &x, &r, &c, err, sizeof err)) fail_msg("%s", err);
    assert_true(r == 3 && c == 5);
    free(x);
    close(fd);
}
/* a (2^24, 2^24) shape in a small file fails on the size, before any allocation */
static void test_reader_checks_size_before_allocating(void **state)
{
    const char *path = "build/test_npy_huge.npy";
    size_t n = npy_make(1, D("(16777216, 16777216)"), 60);
    FILE *f = fopen(path, "wb");
    float *x;
    int r, c;
    char err[320];
    (void)state;
    assert_non_null(f);
    assert_int_equal(fwrite(g_buf, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    assert_int_not_equal(molora_npy_read(path, &x, &r, &c, err, sizeof err), 0);
    assert_string_equal(err, "data size does not match shape (16777216, 16777216): it needs 1125899906842624 bytes, "
                             "the file has 60 after the header");
    assert_null(x);
    remove(path);
}

/* ---- the writer -------------------------------------------------------------------------------- */
static void test_writer_header_is_np_save_layout(void **state)
{
    char h[256], want[256];
    int n;
    (void)state;
    n = molora_npy_header(h, sizeof h, 3, 5);
    assert_int_equal(n, 128);                                           /* np.save: 60 + 20 growth spaces, pad to 128 */
    memset(want, ' ', sizeof want);
    memcpy(want, "\x93NUMPY\x01\x00\x76\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }", 69);
    want[127] = '\n';
    assert_memory_equal(h, want, 128);
    n = molora_npy_header(h, sizeof h, 2147483647, 2147483647);
    assert_int_equal(n, 128);
    assert_memory_equal(h + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (2147483647, 2147483647), }", 77);
    assert_int_equal(molora_npy_header(h, 100, 3, 5), -1);
}
/* writes then reads back; a failing stream (/dev/full) is reported */
static void test_writer_round_trip_and_failure(void **state)
{
    const char *path = "build/test_npy_rt.npy";
    float a[21], *b;
    int i, r, c;
    char err[320];
    FILE *f;
    (void)state;
    for (i = 0; i < 21; i++) a[i] = (float)i - 3.25f;
    assert_non_null(f = fopen(path, "wb"));
    assert_int_equal(molora_npy_write(f, a, 3, 7), 0);
    assert_int_equal(fclose(f), 0);
    if (molora_npy_read(path, &b, &r, &c, err, sizeof err)) fail_msg("%s", err);
    assert_true(r == 3 && c == 7);
    assert_memory_equal(a, b, sizeof a);
    free(b);
    remove(path);
    if (!(f = fopen("/dev/full", "wb"))) skip();
    assert_int_not_equal(molora_npy_write(f, a, 3, 7), 0);
    fclose(f);
    assert_non_null(f = fopen("build/test_npy_neg.npy", "wb"));
    assert_int_not_equal(molora_npy_write(f, a, -1, 7), 0);
    fclose(f);
    remove("build/test_npy_neg.npy");
}
/* byte for byte against np.save for the same float32 arrays (needs /usr/bin/python3 with numpy) */
static const char *python(void)
{
    const char *p = getenv("PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}
static int numpy_present(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s -c 'import numpy' 2>/dev/null", python());
    return system(cmd) == 0;
}
static void test_writer_matches_np_save(void **state)
{
    static const int shapes[][2] = {{1, 1}, {3, 5}, {1000, 7}, {0, 3}, {7, 0}, {1, 123456}, {2147483647, 0},
                                    {0, 2147483647}};
    char cmd[1024], a_path[] = "build/test_npy_mine.npy", b_path[] = "build/test_npy_numpy.npy";
    size_t i;
    (void)state;
    if (!numpy_present()) {
        print_message("skip: %s has no numpy (Debian: apt-get install python3-numpy)\n", python());
        skip();
    }
    for (i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int r = shapes[i][0], c = shapes[i][1];
        size_t n = (size_t)r * (size_t)c, k, na, nb;
        float *x = (float *)malloc(n ? n * sizeof(float) : 1);
        static char fa[1 << 20], fb[1 << 20];
        FILE *f;
        for (k = 0; k < n; k++) x[k] = (float)k * 0.5f;
        assert_non_null(f = fopen(a_path, "wb"));
        assert_int_equal(molora_npy_write(f, x, r, c), 0);
        assert_int_equal(fclose(f), 0);
        free(x);
        snprintf(cmd, sizeof cmd, "%s -c 'import numpy as np, sys; r, c = int(sys.argv[1]), int(sys.argv[2]); "
                 "np.save(sys.argv[3], (np.arange(r * c, dtype=np.float32) * np.float32(0.5)).reshape(r, c))' %d %d %s",
                 python(), r, c, b_path);
        assert_int_equal(system(cmd), 0);
        assert_non_null(f = fopen(a_path, "rb")); na = fread(fa, 1, sizeof fa, f); fclose(f);
        assert_non_null(f = fopen(b_path, "rb")); nb = fread(fb, 1, sizeof fb, f); fclose(f);
        if (na != nb || memcmp(fa, fb, na))
            fail_msg("shape (%d, %d): %lu bytes from molora, %lu from np.save, not the same", r, c, (unsigned long)na,
                     (unsigned long)nb);
    }
    remove(a_path);
    remove(b_path);
}

/* --dump DIR: every table case as a file (accept_*, refuse_*, stricter_*: numpy accepts what
   molora refuses on purpose), for tests/npy_numpy_agree.py to put to numpy itself */
static void dump_case(const char *dir, const char *kind, size_t i, int version, const char *dict, size_t data_len)
{
    char path[512];
    size_t n = npy_make(version, dict, data_len);
    FILE *f;
    snprintf(path, sizeof path, "%s/%s_%03lu_v%d.npy", dir, kind, (unsigned long)i, version);
    if (!(f = fopen(path, "wb")) || fwrite(g_buf, 1, n, f) != n || fclose(f) != 0) { perror(path); exit(1); }
}
static int dump_cases(const char *dir)
{
    size_t i;
    int v;
    for (i = 0; i < sizeof ACCEPTED / sizeof *ACCEPTED; i++)
        for (v = 1; v <= 3; v++) dump_case(dir, "accept", i, v, ACCEPTED[i], 60);
    for (i = 0; i < sizeof REFUSED / sizeof *REFUSED; i++)
        dump_case(dir, REFUSED[i].numpy_accepts ? "stricter" : "refuse", i, 1, REFUSED[i].dict, 60);
    for (i = 0; i < sizeof DUPLICATES / sizeof *DUPLICATES; i++)
        dump_case(dir, "stricter", 100 + i, 1, DUPLICATES[i], 60);
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_numpy_forms),
        cmocka_unit_test(test_header_size_limit),
        cmocka_unit_test(test_refuses_what_numpy_refuses),
        cmocka_unit_test(test_refuses_duplicate_keys),
        cmocka_unit_test(test_refuses_bad_preamble),
        cmocka_unit_test(test_refuses_bad_utf8_in_format_3),
        cmocka_unit_test(test_refuses_what_molora_cannot_use),
        cmocka_unit_test(test_range_of_rows_and_cols),
        cmocka_unit_test(test_parse_header_fields),
        cmocka_unit_test(test_reads_fixtures),
        cmocka_unit_test(test_read_fd_from_any_offset),
        cmocka_unit_test(test_reader_checks_size_before_allocating),
        cmocka_unit_test(test_writer_header_is_np_save_layout),
        cmocka_unit_test(test_writer_round_trip_and_failure),
        cmocka_unit_test(test_writer_matches_np_save),
    };
    if (argc == 3 && !strcmp(argv[1], "--dump")) return dump_cases(argv[2]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

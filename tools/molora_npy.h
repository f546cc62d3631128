/* molora_npy.h: the .npy reader and writer of the molora command, in one small header.

   Reads a 2-D float32 C-order .npy (format 1.0, 2.0 or 3.0) as numpy 1.24's np.load does, and
   writes the header np.save writes for the same float32 (rows, cols) array, byte for byte.
   Every function is static: include this file in each translation unit that uses it.

   The header dict is parsed the way numpy's _read_array_header parses it (ast.literal_eval of a
   Python literal): single or double quotes, string prefixes u and r, adjacent strings joined,
   escapes, comments, line continuations, any spacing, trailing commas, keys in any order, ints
   as 3, +3, 0x3, 1_5 and (format 1.0 and 2.0, as numpy's Python 2 filter allows) 3L. numpy's
   refusals are refusals here too (bad magic, version, header length past the end or over 10000
   characters, not a dict, a missing or unknown key, a non-bool fortran_order, a shape that is
   not a tuple of ints). On purpose stricter than numpy:
     - a key given twice is refused (numpy silently keeps the last one: a header that says two
       things is a lie, and a reader keeping the first would see another array);
     - data past the end of the array is refused (numpy ignores it);
     - a negative dimension is refused (np.load of a real file takes -1 as "infer from the size");
     - exotic literals no numpy writer produces are refused: \N{...} escapes, -(3), nesting
       deeper than 32, a backslash continuation before or after the dict, lists, sets, floats,
       None, bytes;
     - only descr '<f4' (or '|f4'), C order and rank 2 load (molora_npy_check_f32_2d).
   The array size (overflow-checked) is compared with the real data size before any allocation.

   molora_npy_parse_header  the preamble and dict of a buffer holding the file's first bytes (pure)
   molora_npy_check_f32_2d  float32, C order, rank 2, in range, data size exactly the shape's
   molora_npy_load_memory   a whole .npy in memory to an owned float array
   molora_npy_read_fd       the same from an open regular file
   molora_npy_read          opens a path without blocking (a FIFO or device is refused, not waited on)
   molora_npy_write         np.save's bytes for a float32 (rows, cols) array; nonzero if a write failed

   Errors: each function returns 0 on success, else nonzero with one line (no path, no newline)
   in err. Build: C99 or C++11, POSIX (open, fstat, read). */
#ifndef MOLORA_NPY_H
#define MOLORA_NPY_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__GNUC__) || defined(__clang__)
#define MOLORA_NPY_FN static __attribute__((unused))
#else
#define MOLORA_NPY_FN static
#endif

#define MOLORA_NPY_MAX_DIMS 32          /* numpy 1.24's NPY_MAXDIMS */
#define MOLORA_NPY_MAX_HEADER 10000     /* numpy's _MAX_HEADER_SIZE, in characters */
#define MOLORA_NPY_DESCR_MAX 32

typedef struct molora_npy_info {
    int version;                                  /* format major version: 1, 2 or 3 */
    size_t data_offset;                           /* bytes before the array data */
    char descr[MOLORA_NPY_DESCR_MAX];             /* descr as printable text, '?' for non-ASCII */
    int descr_is_str;                             /* 0: descr was a tuple, int, ... */
    int fortran_order;
    int ndim;
    unsigned long long shape[MOLORA_NPY_MAX_DIMS];
} molora_npy_info;

/* ---- errors ---------------------------------------------------------------------------------- */
static int molora__npy_verr(char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    return -1;
}
/* the one line into err (when the caller gave one); always -1 */
static int molora__npy_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    molora__npy_verr(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- the header dict: a Python literal, as ast.literal_eval reads it --------------------------- */
enum { MOLORA__NPY_STR, MOLORA__NPY_INT, MOLORA__NPY_BOOL, MOLORA__NPY_NONE, MOLORA__NPY_TUPLE, MOLORA__NPY_DICT };
enum { MOLORA__NPY_KEY_DESCR, MOLORA__NPY_KEY_FORTRAN, MOLORA__NPY_KEY_SHAPE, MOLORA__NPY_KEYS };
static const char *const molora__npy_keys[MOLORA__NPY_KEYS] = {"descr", "fortran_order", "shape"};

typedef struct molora__npy_val {
    int kind;
    size_t at;                                /* byte offset in the header text */
    char s[MOLORA_NPY_DESCR_MAX];             /* STR: printable text */
    size_t slen;
    int s_exact;                              /* STR: all ASCII and not truncated */
    unsigned long long u;                     /* INT: magnitude */
    int neg, big;                             /* INT: negative (non-zero), over 2^64 - 1 */
    int b;                                    /* BOOL */
    int n, ints;                              /* TUPLE: length; every element a non-negative int */
    long long first_neg;                      /* TUPLE: its first negative element, if any */
    int any_big;
    unsigned long long dims[MOLORA_NPY_MAX_DIMS];
} molora__npy_val;

typedef struct molora__npy_parser {
    const unsigned char *s;
    size_t n, i;
    int version;
    int seen[MOLORA__NPY_KEYS];
    int dicts;                                /* dicts begun: only the top value may be one */
    molora_npy_info *out;
    char *err;
    size_t errlen;
} molora__npy_parser;

/* the parser's error: the whole message */
static int molora__npy_perr(const molora__npy_parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    molora__npy_verr(p->err, p->errlen, fmt, ap);
    va_end(ap);
    return -1;
}
/* the parser's error at the cursor: what was found there, or the end it ran into */
static int molora__npy_fail(molora__npy_parser *p, const char *what)
{
    if (p->i >= p->n) return molora__npy_perr(p, "header: unexpected end (%s)", what);
    return molora__npy_perr(p, "header: %s at byte %lu", what, (unsigned long)p->i);
}
static int molora__npy_at(const molora__npy_parser *p, size_t k) { return p->i + k < p->n ? p->s[p->i + k] : -1; }
static int molora__npy_is_newline(int c) { return c == '\n' || c == '\r'; }
static int molora__npy_is_digit(int c) { return c >= '0' && c <= '9'; }
static int molora__npy_is_ident(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || molora__npy_is_digit(c) || c == '_' || c >= 0x80;
}
/* a '#' comment: to the end of its line (the newline stays) */
static void molora__npy_skip_comment(molora__npy_parser *p)
{
    while (p->i < p->n && !molora__npy_is_newline(p->s[p->i])) p->i++;
}
static int molora__npy_hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* inside brackets: spaces, newlines, comments and backslash-newline continuations */
static void molora__npy_skip_space(molora__npy_parser *p)
{
    for (;;) {
        int c = molora__npy_at(p, 0);
        if (c == ' ' || c == '\t' || c == '\f' || molora__npy_is_newline(c)) p->i++;
        else if (c == '#') molora__npy_skip_comment(p);
        else if (c == '\\' && molora__npy_is_newline(molora__npy_at(p, 1))) {
            p->i += (molora__npy_at(p, 1) == '\r' && molora__npy_at(p, 2) == '\n') ? 3 : 2;
        } else return;
    }
}

/* a string's decoded character: ASCII kept, anything else shown as '?' and never equal to a key */
static void molora__npy_put(molora__npy_val *v, unsigned long cp)
{
    if (cp > 127 || cp < 32) v->s_exact = 0;
    if (v->slen + 1 >= sizeof v->s) { v->s_exact = 0; return; }
    v->s[v->slen++] = cp > 127 || cp < 32 ? '?' : (char)cp;
    v->s[v->slen] = 0;
}
/* \x.., \u...., \U........: exactly `digits` hex digits */
static int molora__npy_hex_escape(molora__npy_parser *p, molora__npy_val *v, int digits)
{
    unsigned long cp = 0;
    int k;
    for (k = 0; k < digits; k++) {
        int h = molora__npy_hexval(molora__npy_at(p, 0));
        if (h < 0) return molora__npy_fail(p, "truncated \\x, \\u or \\U escape");
        cp = cp * 16 + (unsigned long)h;
        p->i++;
    }
    if (cp > 0x10FFFFul) return molora__npy_fail(p, "escape past U+10FFFF");
    molora__npy_put(v, cp);
    return 0;
}
/* one escape after a backslash, in a non-raw string */
static int molora__npy_escape(molora__npy_parser *p, molora__npy_val *v)
{
    static const char simple[] = "\\\\''\"\"a\ab\bf\fn\nr\rt\tv\v";
    int c = molora__npy_at(p, 0), k;
    if (c < 0) return molora__npy_fail(p, "unterminated string");
    p->i++;
    for (k = 0; simple[k]; k += 2) if (simple[k] == c) { molora__npy_put(v, (unsigned char)simple[k + 1]); return 0; }
    if (c == '\n') return 0;
    if (c == '\r') { if (molora__npy_at(p, 0) == '\n') p->i++; return 0; }
    if (c >= '0' && c <= '7') {
        unsigned long cp = (unsigned long)(c - '0');
        for (k = 0; k < 2 && molora__npy_at(p, 0) >= '0' && molora__npy_at(p, 0) <= '7'; k++)
            cp = cp * 8 + (unsigned long)(p->s[p->i++] - '0');
        molora__npy_put(v, cp);
        return 0;
    }
    if (c == 'x') return molora__npy_hex_escape(p, v, 2);
    if (c == 'u') return molora__npy_hex_escape(p, v, 4);
    if (c == 'U') return molora__npy_hex_escape(p, v, 8);
    if (c == 'N') { p->i--; return molora__npy_fail(p, "\\N{...} escapes are not supported"); }
    molora__npy_put(v, '\\');                   /* an unknown escape keeps its backslash */
    molora__npy_put(v, (unsigned long)c);
    return 0;
}
/* one quoted literal (the prefix already read); appends its characters to v */
static int molora__npy_quoted(molora__npy_parser *p, molora__npy_val *v, int raw)
{
    int q = molora__npy_at(p, 0);
    int triple = molora__npy_at(p, 1) == q && molora__npy_at(p, 2) == q;
    p->i += triple ? 3 : 1;
    for (;;) {
        int c = molora__npy_at(p, 0);
        if (c < 0) return molora__npy_fail(p, "unterminated string");
        if (c == q && (!triple || (molora__npy_at(p, 1) == q && molora__npy_at(p, 2) == q))) {
            p->i += triple ? 3 : 1;
            return 0;
        }
        if (!triple && molora__npy_is_newline(c)) return molora__npy_fail(p, "newline in a string");
        p->i++;
        if (c != '\\') molora__npy_put(v, (unsigned long)c);
        else if (!raw) { if (molora__npy_escape(p, v)) return -1; }
        else {                                   /* raw: the backslash stays, and so does what it guards */
            molora__npy_put(v, '\\');
            if (molora__npy_at(p, 0) < 0) return molora__npy_fail(p, "unterminated string");
            molora__npy_put(v, p->s[p->i++]);
        }
    }
}
/* the length of a string prefix at the cursor (u, r, b, f and their mixes), or -1 if none */
static int molora__npy_prefix(const molora__npy_parser *p, int *raw, int *plain)
{
    int k = 0, r = 0, bad = 0;
    while (k < 2) {
        int c = molora__npy_at(p, (size_t)k);
        if (c == 'r' || c == 'R') r++;
        else if (c == 'u' || c == 'U') bad += 10;
        else if (c == 'b' || c == 'B' || c == 'f' || c == 'F') bad += 1;
        else break;
        k++;
    }
    if (molora__npy_at(p, (size_t)k) != '\'' && molora__npy_at(p, (size_t)k) != '"') return -1;
    if (k == 2 && (r != 1 || bad >= 10)) return -1;     /* rr, ub, ur, ...: not Python */
    *raw = r > 0;
    *plain = bad == 0 || bad == 10;                      /* u'...' is a str; b'' and f'' are not */
    return k;
}
/* adjacent string literals, joined as Python joins them */
static int molora__npy_string(molora__npy_parser *p, molora__npy_val *v)
{
    int raw, plain, k;
    v->kind = MOLORA__NPY_STR;
    v->slen = 0; v->s[0] = 0; v->s_exact = 1;
    while ((k = molora__npy_prefix(p, &raw, &plain)) >= 0) {
        if (!plain) return molora__npy_fail(p, "a bytes or f-string literal (only plain strings)");
        p->i += (size_t)k;
        if (molora__npy_quoted(p, v, raw)) return -1;
        molora__npy_skip_space(p);
    }
    return 0;
}

/* digits of one base with single underscores between them; 0 if none */
static int molora__npy_digits(molora__npy_parser *p, molora__npy_val *v, int base)
{
    int count = 0;
    for (;;) {
        int c = molora__npy_at(p, 0), d = molora__npy_hexval(c), next = molora__npy_hexval(molora__npy_at(p, 1));
        if (c == '_' && count && next >= 0 && next < base) { p->i++; continue; }   /* 1_000: one '_' between digits */
        if (d < 0 || d >= base) return count;
        if (v->u > (~0ull - (unsigned long long)d) / (unsigned long long)base) v->big = 1;
        v->u = v->u * (unsigned long long)base + (unsigned long long)d;
        p->i++;
        count++;
    }
}
/* format 1.0 and 2.0: numpy drops a Python 2 'L' after a number (its _filter_header) */
static void molora__npy_skip_long_suffix(molora__npy_parser *p)
{
    size_t k = 0;
    if (p->version > 2) return;
    while (molora__npy_at(p, k) == ' ' || molora__npy_at(p, k) == '\t' || molora__npy_at(p, k) == '\f') k++;
    if (molora__npy_at(p, k) == 'L' && !molora__npy_is_ident(molora__npy_at(p, k + 1))) p->i += k + 1;
}
/* an int literal with an optional sign: 3, +3, -0, 0x1f, 0o7, 0b1, 1_000 (3.0, 3e2, 3j refused) */
static int molora__npy_int(molora__npy_parser *p, molora__npy_val *v)
{
    int sign = 0, c, base = 10, nd;
    v->kind = MOLORA__NPY_INT;
    v->u = 0; v->neg = v->big = 0;
    if (molora__npy_at(p, 0) == '+' || molora__npy_at(p, 0) == '-') {
        sign = p->s[p->i++] == '-';
        molora__npy_skip_space(p);
        if (!molora__npy_is_digit(molora__npy_at(p, 0))) return molora__npy_fail(p, "a sign not followed by a number");
    }
    c = molora__npy_at(p, 1);
    if (molora__npy_at(p, 0) == '0' && (c == 'x' || c == 'X' || c == 'o' || c == 'O' || c == 'b' || c == 'B')) {
        base = (c == 'x' || c == 'X') ? 16 : (c == 'o' || c == 'O') ? 8 : 2;
        p->i += 2;
        if (molora__npy_at(p, 0) == '_') p->i++;
        if (!molora__npy_digits(p, v, base)) return molora__npy_fail(p, "a number prefix without digits");
    } else {
        int leading_zero = molora__npy_at(p, 0) == '0';
        molora__npy_digits(p, v, 10);
        if (leading_zero && v->u) return molora__npy_fail(p, "leading zeros in a decimal int");
    }
    nd = molora__npy_at(p, 0);
    if (nd == '.' || nd == 'e' || nd == 'E' || nd == 'j' || nd == 'J')
        return molora__npy_fail(p, "a float or complex number (dims must be ints)");
    molora__npy_skip_long_suffix(p);
    if (molora__npy_is_ident(molora__npy_at(p, 0))) return molora__npy_fail(p, "a malformed number");
    v->neg = sign && v->u;
    return 0;
}
/* True, False, None; any other name is not a literal */
static int molora__npy_name(molora__npy_parser *p, molora__npy_val *v)
{
    size_t k = 0;
    while (molora__npy_is_ident(molora__npy_at(p, k))) k++;
    if (k == 4 && !memcmp(p->s + p->i, "True", 4)) { v->kind = MOLORA__NPY_BOOL; v->b = 1; }
    else if (k == 5 && !memcmp(p->s + p->i, "False", 5)) { v->kind = MOLORA__NPY_BOOL; v->b = 0; }
    else if (k == 4 && !memcmp(p->s + p->i, "None", 4)) v->kind = MOLORA__NPY_NONE;
    else return molora__npy_fail(p, "a name that is not True, False or None");
    p->i += k;
    return 0;
}

static int molora__npy_value(molora__npy_parser *p, molora__npy_val *v, int depth, int top);

/* a tuple element: kept as a dim when it is a non-negative int */
static void molora__npy_tuple_add(molora__npy_val *t, const molora__npy_val *e)
{
    if (e->kind != MOLORA__NPY_INT) t->ints = 0;
    else if (e->neg) {
        int below_min = e->big || e->u > (unsigned long long)LLONG_MAX;   /* shown as LLONG_MIN */
        if (t->first_neg == 0) t->first_neg = below_min ? LLONG_MIN : -(long long)e->u;
    } else if (e->big) t->any_big = 1;
    if (t->n < MOLORA_NPY_MAX_DIMS && e->kind == MOLORA__NPY_INT) t->dims[t->n] = e->u;
    t->n++;
}
/* ( ... ): a parenthesised value, or a tuple when empty or holding a comma */
static int molora__npy_paren(molora__npy_parser *p, molora__npy_val *v, int depth, int top)
{
    molora__npy_val e;
    int commas = 0;
    p->i++;
    v->kind = MOLORA__NPY_TUPLE;
    v->n = 0; v->ints = 1; v->first_neg = 0; v->any_big = 0;
    molora__npy_skip_space(p);
    while (molora__npy_at(p, 0) != ')') {
        if (molora__npy_value(p, &e, depth + 1, top && !commas && v->n == 0)) return -1;
        molora__npy_skip_space(p);
        if (molora__npy_at(p, 0) == ',') { commas++; p->i++; molora__npy_skip_space(p); }
        else if (molora__npy_at(p, 0) != ')') return molora__npy_fail(p, "expected ',' or ')'");
        if (v->n == 0 && !commas && molora__npy_at(p, 0) == ')') { p->i++; *v = e; return 0; }
        molora__npy_tuple_add(v, &e);
    }
    p->i++;
    return 0;
}

/* shape: a tuple of non-negative ints under 2^64, at most MOLORA_NPY_MAX_DIMS of them */
static int molora__npy_shape(molora__npy_parser *p, const molora__npy_val *v)
{
    int d;
    if (v->kind != MOLORA__NPY_TUPLE || !v->ints) return molora__npy_perr(p, "header: shape is not a tuple of ints");
    if (v->first_neg) return molora__npy_perr(p, "header: shape has a negative dimension (%lld)", v->first_neg);
    if (v->any_big) return molora__npy_perr(p, "header: shape has a dimension of 2^64 or more");
    if (v->n > MOLORA_NPY_MAX_DIMS)
        return molora__npy_perr(p, "header: shape has %d dimensions (numpy's limit is 32)", v->n);
    p->out->ndim = v->n;
    for (d = 0; d < v->n; d++) p->out->shape[d] = v->dims[d];
    return 0;
}
/* records one key: value of the header dict; a known key twice is a lying header */
static int molora__npy_entry(molora__npy_parser *p, const molora__npy_val *k, const molora__npy_val *v)
{
    molora_npy_info *o = p->out;
    int key;
    if (k->kind != MOLORA__NPY_STR)
        return molora__npy_perr(p, "header: a key at byte %lu is not a string", (unsigned long)k->at);
    for (key = 0; key < MOLORA__NPY_KEYS; key++) if (k->s_exact && !strcmp(k->s, molora__npy_keys[key])) break;
    if (key == MOLORA__NPY_KEYS)
        return molora__npy_perr(p, "header: key '%s' is not one of 'descr', 'fortran_order', 'shape'", k->s);
    if (p->seen[key]++)
        return molora__npy_perr(p, "header: key '%s' given twice (numpy would keep the last one; refused as a lying "
                                   "header)", k->s);
    if (key == MOLORA__NPY_KEY_DESCR) {
        o->descr_is_str = v->kind == MOLORA__NPY_STR;
        memcpy(o->descr, v->kind == MOLORA__NPY_STR ? v->s : "?", v->kind == MOLORA__NPY_STR ? v->slen + 1 : 2);
    } else if (key == MOLORA__NPY_KEY_FORTRAN) {
        if (v->kind != MOLORA__NPY_BOOL)
            return molora__npy_perr(p, "header: fortran_order is not a bool (True or False)");
        o->fortran_order = v->b;
    } else return molora__npy_shape(p, v);
    return 0;
}
/* { key: value, ... }: only as the top value */
static int molora__npy_dict(molora__npy_parser *p, molora__npy_val *v, int depth, int top)
{
    molora__npy_val k, e;
    if (!top || p->dicts++) return molora__npy_fail(p, "a dict inside the header dict");
    p->i++;
    v->kind = MOLORA__NPY_DICT;
    molora__npy_skip_space(p);
    while (molora__npy_at(p, 0) != '}') {
        if (molora__npy_value(p, &k, depth + 1, 0)) return -1;
        molora__npy_skip_space(p);
        if (molora__npy_at(p, 0) != ':') return molora__npy_fail(p, "expected ':' after a key");
        p->i++;
        molora__npy_skip_space(p);
        if (molora__npy_value(p, &e, depth + 1, 0) || molora__npy_entry(p, &k, &e)) return -1;
        molora__npy_skip_space(p);
        if (molora__npy_at(p, 0) == ',') { p->i++; molora__npy_skip_space(p); }
        else if (molora__npy_at(p, 0) != '}') return molora__npy_fail(p, "expected ',' or '}'");
    }
    p->i++;
    return 0;
}
static int molora__npy_value(molora__npy_parser *p, molora__npy_val *v, int depth, int top)
{
    int c = molora__npy_at(p, 0), raw, plain;
    v->at = p->i;
    if (depth > 32) return molora__npy_fail(p, "nesting deeper than 32");
    if (c == '(') return molora__npy_paren(p, v, depth, top);
    if (c == '{') return molora__npy_dict(p, v, depth, top);
    if (molora__npy_prefix(p, &raw, &plain) >= 0) return molora__npy_string(p, v);
    if ((c >= '0' && c <= '9') || c == '+' || c == '-') return molora__npy_int(p, v);
    if (c == '[') return molora__npy_fail(p, "a list (not part of a float32 header)");
    if (c == '.') return molora__npy_fail(p, "a float (dims must be ints)");
    if (c >= 0 && (molora__npy_is_ident(c) && !(c >= '0' && c <= '9'))) return molora__npy_name(p, v);
    return molora__npy_fail(p, c < 0 ? "expected a value" : c == 0 ? "a NUL byte" : "an unexpected character");
}

/* before the dict: ast.literal_eval strips spaces and tabs, then blank and comment lines may
   follow; the line holding the value must not be indented */
static int molora__npy_lead(molora__npy_parser *p)
{
    int c;
    while (molora__npy_at(p, 0) == ' ' || molora__npy_at(p, 0) == '\t') p->i++;
    for (;;) {
        size_t line = p->i;
        int indented = 0;
        while ((c = molora__npy_at(p, 0)) == ' ' || c == '\t' || c == '\f') { indented |= c != '\f'; p->i++; }
        if (c == '#') molora__npy_skip_comment(p);
        c = molora__npy_at(p, 0);
        if (molora__npy_is_newline(c)) { p->i += (c == '\r' && molora__npy_at(p, 1) == '\n') ? 2 : 1; continue; }
        if (c < 0) { p->i = line; return 0; }
        if (indented) return molora__npy_fail(p, "an indented first line");
        return 0;
    }
}
/* after the dict: spaces, newlines and comments only */
static int molora__npy_trail(molora__npy_parser *p)
{
    for (;;) {
        int c = molora__npy_at(p, 0);
        if (c < 0) return 0;
        if (c == ' ' || c == '\t' || c == '\f' || molora__npy_is_newline(c)) p->i++;
        else if (c == '#') molora__npy_skip_comment(p);
        else return molora__npy_fail(p, "text after the dict");
    }
}
static int molora__npy_text(molora__npy_parser *p)
{
    molora__npy_val v;
    int key;
    if (memchr(p->s, 0, p->n)) return molora__npy_perr(p, "header: a NUL byte");
    if (molora__npy_lead(p) || molora__npy_value(p, &v, 0, 1)) return -1;
    if (v.kind != MOLORA__NPY_DICT) return molora__npy_perr(p, "header is not a dict");
    if (molora__npy_trail(p)) return -1;
    for (key = 0; key < MOLORA__NPY_KEYS; key++)
        if (!p->seen[key]) return molora__npy_perr(p, "header: no key '%s'", molora__npy_keys[key]);
    return 0;
}

/* format 3.0 headers are UTF-8 (strictly: no overlong forms, surrogates or code points past U+10FFFF);
   returns the number of characters, or -1 */
static long molora__npy_utf8_chars(const unsigned char *s, size_t n)
{
    size_t i = 0;
    long chars = 0;
    while (i < n) {
        unsigned c = s[i], need, k;
        unsigned long cp;
        if (c < 0x80) { i++; chars++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; }
        else return -1;
        for (k = 1; k <= need; k++) {
            if (i + k >= n || (s[i + k] & 0xC0) != 0x80) return -1;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return -1;   /* overlong or a surrogate */
        if (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) return -1;                 /* overlong or past U+10FFFF */
        i += need + 1;
        chars++;
    }
    return chars;
}

/* ---- public ---------------------------------------------------------------------------------- */
/* Parses the preamble and header dict from the first n bytes of a .npy file (n may cover the
   whole file or only the header). Fills out (data_offset: where the data starts). Pure. */
MOLORA_NPY_FN int molora_npy_parse_header(const char *buf, size_t n, molora_npy_info *out, char *err, size_t errlen)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t pre, hlen, limit;
    molora__npy_parser p;
    memset(out, 0, sizeof *out);
    if (n < 8 || memcmp(b, "\x93NUMPY", 6)) return molora__npy_err(err, errlen, "not a .npy file (bad magic)");
    if (b[6] < 1 || b[6] > 3 || b[7] != 0)
        return molora__npy_err(err, errlen, ".npy format version %d.%d not supported (1.0-3.0)", b[6], b[7]);
    out->version = b[6];
    pre = out->version == 1 ? 10 : 12;
    if (n < pre) return molora__npy_err(err, errlen, "truncated .npy header (%lu bytes)", (unsigned long)n);
    hlen = (size_t)b[8] | (size_t)b[9] << 8;
    if (out->version > 1) hlen |= (size_t)b[10] << 16 | (size_t)b[11] << 24;
    /* format 3.0 is UTF-8: up to 4 bytes a character (the characters are counted below) */
    limit = out->version == 3 ? 4 * MOLORA_NPY_MAX_HEADER : MOLORA_NPY_MAX_HEADER;
    if (hlen > limit)
        return molora__npy_err(err, errlen, "header of %lu bytes is over numpy's limit of %d characters",
                               (unsigned long)hlen, MOLORA_NPY_MAX_HEADER);
    if (hlen > n - pre)
        return molora__npy_err(err, errlen, "header length %lu runs past the end of the file "
                               "(%lu bytes after the preamble)", (unsigned long)hlen, (unsigned long)(n - pre));
    if (out->version == 3) {
        long chars = molora__npy_utf8_chars(b + pre, hlen);
        if (chars < 0) return molora__npy_err(err, errlen, "header is not valid UTF-8 (format 3.0)");
        if (chars > MOLORA_NPY_MAX_HEADER)
            return molora__npy_err(err, errlen, "header of %ld characters is over numpy's limit of %d characters",
                                   chars, MOLORA_NPY_MAX_HEADER);
    }
    memset(&p, 0, sizeof p);
    p.s = b + pre; p.n = hlen; p.version = out->version; p.out = out; p.err = err; p.errlen = errlen;
    if (molora__npy_text(&p)) return -1;
    out->data_offset = pre + hlen;
    return 0;
}

/* The shape's data size in bytes (0 if any dimension is 0), or -1 if it passes 2^64 - 1. */
static int molora__npy_data_bytes(const molora_npy_info *in, unsigned long long itemsize, unsigned long long *bytes)
{
    unsigned long long total = itemsize;
    int d;
    *bytes = 0;
    for (d = 0; d < in->ndim; d++) if (!in->shape[d]) return 0;
    for (d = 0; d < in->ndim; d++) {
        if (total > ~0ull / in->shape[d]) return -1;
        total *= in->shape[d];
    }
    *bytes = total;
    return 0;
}

/* Accepts what molora reads: descr '<f4' or '|f4', C order, rank 2, rows in 0..2^24 and cols in
   1..2^24, and exactly rows * cols * 4 bytes of data (data_bytes: the bytes after the header). */
MOLORA_NPY_FN int molora_npy_check_f32_2d(const molora_npy_info *in, unsigned long long data_bytes, char *err,
                                          size_t errlen)
{
    unsigned long long need;
    if (!in->descr_is_str || (strcmp(in->descr, "<f4") && strcmp(in->descr, "|f4")))
        return molora__npy_err(err, errlen, "dtype %s is not float32 ('<f4')",
                               in->descr_is_str ? in->descr : "(not a string)");
    if (in->fortran_order) return molora__npy_err(err, errlen, "Fortran-order arrays are not supported (need C order)");
    if (in->ndim != 2) return molora__npy_err(err, errlen, "array must have rank 2 (T, d_in), not %d", in->ndim);
    if (molora__npy_data_bytes(in, 4, &need))
        return molora__npy_err(err, errlen, "shape (%llu, %llu) overflows: more than 2^64 bytes of data", in->shape[0],
                               in->shape[1]);
    if (need != data_bytes)
        return molora__npy_err(err, errlen, "data size does not match shape (%llu, %llu): it needs %llu bytes, "
                               "the file has %llu after the header", in->shape[0], in->shape[1], need, data_bytes);
    if (in->shape[0] > 1u << 24 || in->shape[1] < 1 || in->shape[1] > 1u << 24)
        return molora__npy_err(err, errlen, "shape (%llu, %llu) out of range", in->shape[0], in->shape[1]);
    return 0;
}

/* A whole .npy file in memory to *data (malloc'd, the caller frees; NULL on failure). */
MOLORA_NPY_FN int molora_npy_load_memory(const void *buf, size_t n, float **data, int *rows, int *cols, char *err,
                                         size_t errlen)
{
    molora_npy_info in;
    size_t bytes;
    *data = NULL;
    if (molora_npy_parse_header((const char *)buf, n, &in, err, errlen) ||
        molora_npy_check_f32_2d(&in, n - in.data_offset, err, errlen)) return -1;
    bytes = (size_t)(n - in.data_offset);
    if (!(*data = (float *)malloc(bytes ? bytes : 1))) return molora__npy_err(err, errlen, "out of memory");
    memcpy(*data, (const char *)buf + in.data_offset, bytes);
    *rows = (int)in.shape[0]; *cols = (int)in.shape[1];
    return 0;
}

/* read() until n bytes or the end; returns the bytes read, or -1 with errno */
static long long molora__npy_read_all(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
        ssize_t r = read(fd, (char *)buf + got, want);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long long)got;
}
static const char *molora__npy_file_kind(mode_t m)
{
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISDIR(m)) return "a directory";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
#ifdef S_ISSOCK
    if (S_ISSOCK(m)) return "a socket";
#endif
    return "not a plain file";
}
/* the header part of the file (its first bytes, up to the longest header numpy reads) */
static int molora__npy_read_header(int fd, unsigned long long size, molora_npy_info *in, char *err, size_t errlen)
{
    char head[12 + 4 * MOLORA_NPY_MAX_HEADER];
    size_t want = size < sizeof head ? (size_t)size : sizeof head;
    long long got;
    if (lseek(fd, 0, SEEK_SET) != 0) return molora__npy_err(err, errlen, "cannot seek: %s", strerror(errno));
    got = molora__npy_read_all(fd, head, want);
    if (got < 0) return molora__npy_err(err, errlen, "read failed: %s", strerror(errno));
    return molora_npy_parse_header(head, (size_t)got, in, err, errlen);
}

/* An open regular file (read from its start, wherever its offset is) to *data (malloc'd, the
   caller frees). The shape is checked against the file's size before anything is allocated. */
MOLORA_NPY_FN int molora_npy_read_fd(int fd, float **data, int *rows, int *cols, char *err, size_t errlen)
{
    struct stat sb;
    molora_npy_info in;
    unsigned long long size;
    size_t bytes;
    char extra;
    *data = NULL;
    if (fstat(fd, &sb) != 0) return molora__npy_err(err, errlen, "cannot stat: %s", strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return molora__npy_err(err, errlen, "%s, not a regular file", molora__npy_file_kind(sb.st_mode));
    size = (unsigned long long)sb.st_size;
    if (molora__npy_read_header(fd, size, &in, err, errlen) ||
        molora_npy_check_f32_2d(&in, size - in.data_offset, err, errlen)) return -1;
    if (size - in.data_offset > (unsigned long long)(size_t)-1) return molora__npy_err(err, errlen, "out of memory");
    bytes = (size_t)(size - in.data_offset);
    if (lseek(fd, (off_t)in.data_offset, SEEK_SET) < 0)
        return molora__npy_err(err, errlen, "cannot seek: %s", strerror(errno));
    if (!(*data = (float *)malloc(bytes ? bytes : 1))) return molora__npy_err(err, errlen, "out of memory");
    if (molora__npy_read_all(fd, *data, bytes) != (long long)bytes || molora__npy_read_all(fd, &extra, 1) != 0) {
        free(*data); *data = NULL;
        return molora__npy_err(err, errlen, "the file changed size while being read");
    }
    *rows = (int)in.shape[0]; *cols = (int)in.shape[1];
    return 0;
}

/* Opens path without blocking (a FIFO or device is refused, never waited on), then reads it. */
MOLORA_NPY_FN int molora_npy_read(const char *path, float **data, int *rows, int *cols, char *err, size_t errlen)
{
    int fd, rc;
    *data = NULL;
#ifdef O_CLOEXEC
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
#else
    fd = open(path, O_RDONLY | O_NONBLOCK);       /* strict C99 hides O_CLOEXEC: set it after */
    if (fd >= 0) (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
    if (fd < 0) return molora__npy_err(err, errlen, "cannot open: %s", strerror(errno));
    rc = molora_npy_read_fd(fd, data, rows, cols, err, errlen);
    close(fd);
    return rc;
}

/* np.save's header for a float32 C-order array of ndim (1..4) dimensions: format 1.0, the dict
   numpy writes, spaces left for the first axis to grow to 21 digits, padded with spaces to a
   multiple of 64 (a full 64 when already aligned, as numpy 1.24's _wrap_header does), then '\n'.
   Returns its length (a multiple of 64), or -1 if cap is short or a dimension negative. */
MOLORA_NPY_FN int molora_npy_header_nd(char *h, size_t cap, int ndim, const int *dims)
{
    char dict[200], shape[120];
    int i, len, digits, grow, hlen, pad, total, used = 0;
    if (ndim < 1 || ndim > 4) return -1;
    for (i = 0; i < ndim; i++) {
        if (dims[i] < 0) return -1;
        used += snprintf(shape + used, sizeof shape - (size_t)used, i ? " %d," : "%d,", dims[i]);
    }
    if (ndim > 1) shape[used - 1] = 0;   /* (3,) for one dimension, (2, 3) for more: numpy's repr */
    len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", shape);
    digits = snprintf(NULL, 0, "%d", dims[0]);
    grow = digits < 21 ? 21 - digits : 0;
    hlen = len + grow + 1; pad = 64 - (10 + hlen) % 64; total = 10 + hlen + pad;
    if (len < 0 || (size_t)total > cap) return -1;
    memcpy(h, "\x93NUMPY\x01\x00", 8);
    h[8] = (char)((hlen + pad) & 0xff);
    h[9] = (char)((hlen + pad) >> 8);
    memcpy(h + 10, dict, (size_t)len);
    memset(h + 10 + len, ' ', (size_t)(grow + pad));
    h[total - 1] = '\n';
    return total;
}
/* Writes a float32 array of ndim dimensions as np.save would; nonzero if a write failed. */
MOLORA_NPY_FN int molora_npy_write_nd(FILE *f, const float *data, int ndim, const int *dims)
{
    char h[320];
    int len = molora_npy_header_nd(h, sizeof h, ndim, dims), i;
    size_t n = 1;
    if (len < 0) return -1;
    for (i = 0; i < ndim; i++) n *= (size_t)dims[i];
    if (fwrite(h, 1, (size_t)len, f) != (size_t)len) return -1;
    if (n && fwrite(data, sizeof(float), n, f) != n) return -1;
    return fflush(f) != 0 || ferror(f) ? -1 : 0;
}

/* The same for a (rows, cols) array. */
MOLORA_NPY_FN int molora_npy_header(char *h, size_t cap, int rows, int cols)
{
    int dims[2];
    dims[0] = rows; dims[1] = cols;
    return molora_npy_header_nd(h, cap, 2, dims);
}

/* Writes a float32 (rows, cols) array as np.save would; nonzero if any write (or the flush) failed.
   The caller opens f ("wb") and must still check fclose. */
MOLORA_NPY_FN int molora_npy_write(FILE *f, const float *data, int rows, int cols)
{
    int dims[2];
    dims[0] = rows; dims[1] = cols;
    return molora_npy_write_nd(f, data, 2, dims);
}

#endif /* MOLORA_NPY_H */

/* molora: the command (inspect, forward, compose, alpha; README "Files").
   Every bad input ends with a non-zero exit and one line on stderr naming the file, tensor or
   key and what is wrong. Build: make (build/molora).

   Top to bottom: the one stderr line (die, die_lib); safe writes (out_*: a temporary file renamed
   over the target); .npy in and out; JSON text; no output over an input (io_*); then one section
   per command, each ending in cmd_NAME; main. The arguments are parsed in molora_cli.h, .npy
   files in molora_npy.h. Words: a layer is one molora layer (one adapted module, named by the
   model's module name: --module); a block is a decoder layer (alpha; its output says "layer"). */
#define _GNU_SOURCE   /* mkstemp, mkdtemp, fsync, realpath, fchmod, renameat2 */
#define MOLORA_IMPLEMENTATION
#include "molora.h"
#include "molora_npy.h"
#include "molora_cli.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_detail[512];   /* the library's last log line */
static void on_log(void *user, molora_result r, const char *msg)
{
    (void)user; (void)r;
    snprintf(g_detail, sizeof g_detail, "%s", msg);
}
/* the one stderr line: a newline or other control character in a path or name shows as '?' */
static int die(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cli_one_line(line);
    fprintf(stderr, "molora: %s\n", line);
    return 1;
}
/* one line: the library's detail if it logged one (it names the file: then `what` is not
   repeated), else `what` and the result name */
static int die_lib(const char *what, molora_result r)
{
    const char *name = molora_result_string(r);
    int rc;
    if (g_detail[0] && strstr(g_detail, what)) rc = die("%s (%s)", g_detail, name);
    else if (g_detail[0]) rc = die("%s: %s (%s)", what, g_detail, name);
    else rc = die("%s: %s", what, name);
    g_detail[0] = 0;
    return rc;
}

/* ---- safe writes ---------------------------------------------------------------------------
   out_open creates a temporary file beside the target (".NAME.molora-XXXXXX", or ".molora-XXXXXX"
   when that would not fit in NAME_MAX; the mode the target has or would get); out_write records
   the first error; out_commit flushes, fsyncs, closes and renames it over the target, then fsyncs
   the directory. Any failure removes the temporary file, leaves the old target as it was and
   prints one line naming the target. */
typedef struct out_file {
    FILE *f;
    int err;   /* the first write error (errno), sticky */
    char path[PATH_MAX], tmp[2 * PATH_MAX + 32], dir[PATH_MAX], shown[PATH_MAX];
} out_file;

static int out_abort(out_file *o)
{
    if (o->f) fclose(o->f);
    o->f = NULL;
    if (o->tmp[0]) unlink(o->tmp);
    o->tmp[0] = 0;
    return 1;
}
static int out_fail(out_file *o, const char *what)
{
    int e = o->err ? o->err : errno;
    out_abort(o);
    return die("%s: %s: %s", o->shown, what, strerror(e));
}
/* dir = the directory part of path (shorter than PATH_MAX): "." without a slash, "/" for "/NAME" */
static void path_parent(const char *path, char *dir)
{
    char *slash;
    strcpy(dir, path);
    slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
}
/* the name after the last slash */
static const char *path_base(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}
/* what an existing non-regular file is, for the refusal */
static const char *out_kind(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device" :
           S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "not a plain file";
}
/* cur (a symbolic link whose text is link) replaced by what it points to: an absolute or
   slash-free link as it is, a relative one beside the link */
static int out_link_step(char cur[PATH_MAX], const char *link, const char *shown)
{
    if (link[0] == '/' || !strchr(cur, '/')) {
        if (strlen(link) >= PATH_MAX) return die("%s: path too long", shown);
        strcpy(cur, link);
    } else {
        char *slash = strrchr(cur, '/');
        slash[1] = 0;
        if (strlen(cur) + strlen(link) >= PATH_MAX) return die("%s: path too long", shown);
        strcat(cur, link);
    }
    return 0;
}
/* cur followed through symbolic links to a regular file or a name that does not exist yet */
static int out_follow_links(char cur[PATH_MAX], const char *shown)
{
    char link[PATH_MAX];
    struct stat st;
    int hops;
    ssize_t k;
    for (hops = 0;; hops++) {
        if (lstat(cur, &st) != 0) {
            if (errno != ENOENT) return die("%s: %s", shown, strerror(errno));
            return 0;   /* a new file: its directory must exist */
        }
        if (!S_ISLNK(st.st_mode)) {
            if (!S_ISREG(st.st_mode)) return die("%s is %s, not a regular file", shown, out_kind(st.st_mode));
            return 0;
        }
        if (hops >= 40) return die("%s: too many levels of symbolic links", shown);
        if ((k = readlink(cur, link, sizeof link - 1)) < 0)
            return die("%s: cannot read the symbolic link: %s", shown, strerror(errno));
        link[k] = 0;
        if (out_link_step(cur, link, shown)) return 1;
    }
}
/* The file an output path names, following symbolic links (a dangling link names the file it
   points to, which is created, like cp, when its directory exists). 0 with the path in res, else
   one line naming `shown` (an existing target that is not a regular file, a missing directory). */
static int out_target(const char *path, const char *shown, char *res, size_t cap)
{
    char cur[PATH_MAX], dir[PATH_MAX];
    struct stat st;
    if (strlen(path) >= sizeof cur) return die("%s: path too long", shown);
    strcpy(cur, path);
    if (out_follow_links(cur, shown)) return 1;
    path_parent(cur, dir);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return die("%s: the directory %s does not exist", shown, dir);
    if (strlen(cur) >= cap) return die("%s: path too long", shown);
    strcpy(res, cur);
    return 0;
}
/* the target resolved (see out_target), its directory beside it */
static int out_resolve(out_file *o, const char *path)
{
    if (out_target(path, o->shown, o->path, sizeof o->path)) return 1;
    path_parent(o->path, o->dir);
    return 0;
}
static mode_t out_umask(void)
{
    mode_t mask = umask(0);
    umask(mask);
    return mask;
}
static mode_t out_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) return st.st_mode & 07777;
    return 0666 & ~out_umask();
}
/* messages name `shown` (compose writes into a temporary directory but names the final path) */
static int out_open_shown(out_file *o, const char *path, const char *shown)
{
    const char *base;
    int fd;
    memset(o, 0, sizeof *o);
    snprintf(o->shown, sizeof o->shown, "%s", shown);
    if (out_resolve(o, path)) return 1;
    base = path_base(o->path);
    if (strlen(base) + sizeof ".molora-XXXXXX" + 1 > NAME_MAX + 1)   /* ".NAME.molora-XXXXXX" would not fit */
        snprintf(o->tmp, sizeof o->tmp, "%s/.molora-XXXXXX", o->dir);
    else snprintf(o->tmp, sizeof o->tmp, "%s/.%s.molora-XXXXXX", o->dir, base);
    if ((fd = mkstemp(o->tmp)) < 0) {
        o->tmp[0] = 0;
        return die("%s: cannot create a temporary file: %s", o->shown, strerror(errno));
    }
    if (fchmod(fd, out_mode(o->path)) != 0 || !(o->f = fdopen(fd, "wb"))) {
        o->err = errno;
        if (!o->f) close(fd);
        return out_fail(o, "cannot write");
    }
    return 0;
}
static int out_open(out_file *o, const char *path) { return out_open_shown(o, path, path); }
static int out_write(out_file *o, const void *p, size_t n)
{
    if (o->err || n == 0) return o->err != 0;
    errno = 0;
    if (fwrite(p, 1, n, o->f) != n) o->err = errno ? errno : EIO;
    return o->err != 0;
}
static int out_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY), rc;
    if (fd < 0) return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}
/* the temporary file complete on disk: flushed, fsync'd and closed (still under its own name) */
static int out_finish(out_file *o)
{
    int fd;
    if (o->err) return out_fail(o, "write failed");
    errno = 0;
    if (fflush(o->f) != 0) return out_fail(o, "write failed");
    fd = fileno(o->f);
    if (fsync(fd) != 0) return out_fail(o, "cannot sync");
    if (fclose(o->f) != 0) { o->f = NULL; return out_fail(o, "write failed"); }
    o->f = NULL;
    return 0;
}
/* the directory of a replaced file fsync'd (EINVAL: a file system that cannot sync directories) */
static int out_sync_parent(const char *dir, const char *shown)
{
    if (out_sync_dir(dir) != 0 && errno != EINVAL)
        return die("%s: cannot sync its directory: %s", shown, strerror(errno));
    return 0;
}
/* a finished temporary file renamed over the target, then the directory fsync'd */
static int out_replace(out_file *o)
{
    if (rename(o->tmp, o->path) != 0) return out_fail(o, "cannot replace");
    o->tmp[0] = 0;
    return out_sync_parent(o->dir, o->shown);
}
static int out_commit(out_file *o) { return out_finish(o) || out_replace(o); }
/* read: --read was given, so files are read into memory rather than mapped */
static molora_load_desc load_desc(int read)
{
    molora_load_desc d;
    memset(&d, 0, sizeof d);
    d.log = on_log;
    d.flags = read ? MOLORA_LOAD_READ : 0;
    return d;
}

/* ---- npy ------------------------------------------------------------------------------- */
/* Reads a 2-D float32 C-order .npy (format 1.0-3.0). 0 on success, else prints and returns 1. */
static int npy_read(const char *path, float **data, int *rows, int *cols)
{
    char err[320];
    if (molora_npy_read(path, data, rows, cols, err, sizeof err)) return die("%s: %s", path, err);
    return 0;
}
/* a .npy written to its temporary file and finished, not yet renamed over path */
static int npy_stage(out_file *o, const char *path, const float *data, int rows, int cols)
{
    if (out_open(o, path)) return 1;
    if (molora_npy_write(o->f, data, rows, cols)) o->err = errno ? errno : EIO;
    return out_finish(o);
}
/* Y (and W when wpath is given) staged first, renamed only when both are complete (both targets
   were checked before computing: forward_check_paths). Before Y is replaced its old file gets a
   second name (a hard link beside it), so when W's rename still fails the old Y is put back (or
   the new Y removed when there was none): a failure in either leaves both old files. Only on a
   file system without hard links can a failed rename of W (after Y's) leave the new Y. */
/* the old Y's second name in keep (sizeof y->tmp): a fresh unique name beside it, then the hard
   link made under it; keep[0] == 0 when there is none (no old Y, or no hard links here) */
static void npy_keep_old(const out_file *y, char *keep, int had)
{
    int fd;
    keep[0] = 0;
    if (!had) return;
    snprintf(keep, sizeof y->tmp, "%s", y->tmp);
    strcpy(keep + strlen(keep) - 6, "XXXXXX");
    if ((fd = mkstemp(keep)) < 0) keep[0] = 0;
    else if (close(fd) != 0 || unlink(keep) != 0 || link(y->path, keep) != 0) { unlink(keep); keep[0] = 0; }
}
static int npy_write_pair(const char *ypath, const float *Y, int rows, int ycols,
                          const char *wpath, const float *W, int wcols)
{
    out_file y, w;
    char keep[sizeof y.tmp];
    int had, e;
    struct stat st;
    if (npy_stage(&y, ypath, Y, rows, ycols)) return 1;
    if (!wpath) return out_replace(&y);
    if (npy_stage(&w, wpath, W, rows, wcols)) return out_abort(&y);
    had = lstat(y.path, &st) == 0;
    npy_keep_old(&y, keep, had);
    if (had && !keep[0]) {   /* no hard link here (a file system without them): W's target checked once more */
        char t[PATH_MAX];
        if (out_target(w.path, wpath, t, sizeof t)) { out_abort(&w); return out_abort(&y); }
    }
    if (out_replace(&y)) { out_abort(&w); if (keep[0]) unlink(keep); return 1; }
    if (rename(w.tmp, w.path) != 0) {   /* the old Y back (or the new one removed), then the one line */
        e = errno;
        if (keep[0]) rename(keep, y.path); else if (!had) unlink(y.path);
        out_abort(&w);
        if (had && !keep[0]) return die("%s: cannot replace: %s (%s was already replaced)", wpath, strerror(e), ypath);
        return die("%s: cannot replace: %s (%s left as it was)", wpath, strerror(e), ypath);
    }
    w.tmp[0] = 0;
    if (keep[0]) unlink(keep);
    return out_sync_parent(w.dir, wpath);
}

/* ---- JSON output ------------------------------------------------------------------------- */
/* a JSON string to a stream, for what inspect and alpha print (compose's sb_json_str below also
   refuses text that is not UTF-8: what it writes is read back by parsers) */
static void jstr(FILE *o, const char *s)
{
    fputc('"', o);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(o, "\\%c", c);
        else if (c < 0x20) fprintf(o, "\\u%04x", c);
        else fputc(c, o);
    }
    fputc('"', o);
}
/* text built in memory, then written once; oom is sticky */
typedef struct strbuf { char *p; size_t n, cap; int oom; } strbuf;

static void sb_put(strbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (cap < b->n + n + 1) cap *= 2;
        if (!(p = (char *)realloc(b->p, cap))) { b->oom = 1; return; }
        b->p = p; b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof tmp) { b->oom = 1; return; }
    sb_put(b, tmp, (size_t)n);
}
/* length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, surrogates or > U+10FFFF),
   0 if invalid */
static int utf8_len(const unsigned char *s)
{
    int n, i;
    if (s[0] < 0x80) return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) n = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef) n = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4) n = 4;
    else return 0;
    for (i = 1; i < n; i++) if ((s[i] & 0xc0) != 0x80) return 0;
    if (s[0] == 0xe0 && s[1] < 0xa0) return 0;
    if (s[0] == 0xed && s[1] > 0x9f) return 0;
    if (s[0] == 0xf0 && s[1] < 0x90) return 0;
    if (s[0] == 0xf4 && s[1] > 0x8f) return 0;
    return n;
}
/* the one JSON string writer of compose: s quoted, '"' and '\\' escaped, every control character
   as \u00XX (RFC 8259); -1 (nothing written) when s is not valid UTF-8 */
static int sb_json_str(strbuf *b, const char *s)
{
    const unsigned char *p;
    int k;
    for (p = (const unsigned char *)s; *p; p += k)
        if (!(k = utf8_len(p))) return -1;
    sb_put(b, "\"", 1);
    for (p = (const unsigned char *)s; *p; p += k) {
        k = utf8_len(p);
        if (*p == '"' || *p == '\\') { sb_put(b, "\\", 1); sb_put(b, (const char *)p, 1); }
        else if (*p < 0x20 || *p == 0x7f) sb_printf(b, "\\u%04x", *p);
        else sb_put(b, (const char *)p, (size_t)k);
    }
    sb_put(b, "\"", 1);
    return 0;
}
/* ---- no output over an input ----------------------------------------------------------------
   Every input file (and adapter directory) is recorded by device and inode, including the files
   the loaders will open inside directories; every output that already exists is compared with
   them, and the outputs with each other, before anything is opened for writing. */
typedef struct io_entry { const char *flag, *arg; char *path; dev_t dev; ino_t ino; } io_entry;
typedef struct io_inputs { io_entry *e; int n, cap; } io_inputs;

static void io_free(io_inputs *in)
{
    int i;
    for (i = 0; i < in->n; i++) free(in->e[i].path);
    free(in->e);
}
static char *io_join(const char *dir, const char *name)
{
    char *p = (char *)malloc(strlen(dir) + strlen(name) + 2);
    if (p) sprintf(p, "%s/%s", dir, name);
    return p;
}
/* records path (given on the command line as FLAG ARG) if it exists; takes ownership of path */
static int io_add(io_inputs *in, const char *flag, const char *arg, char *path)
{
    struct stat st;
    if (!path) return die("out of memory");
    if (stat(path, &st) != 0) { free(path); return 0; }   /* the loader names a missing input */
    if (in->n == in->cap) {
        int cap = in->cap ? 2 * in->cap : 16;
        io_entry *e = (io_entry *)realloc(in->e, (size_t)cap * sizeof *e);
        if (!e) { free(path); return die("out of memory"); }
        in->e = e; in->cap = cap;
    }
    in->e[in->n].flag = flag; in->e[in->n].arg = arg; in->e[in->n].path = path;
    in->e[in->n].dev = st.st_dev; in->e[in->n].ino = st.st_ino;
    in->n++;
    return 0;
}
static char *io_dup(const char *s)
{
    char *p = (char *)malloc(strlen(s) + 1);
    if (p) strcpy(p, s);
    return p;
}
static int io_has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}
/* every regular file in dir (whatever its name: a loader may read any of them, and no output
   may replace one) */
static int io_add_dir_files(io_inputs *in, const char *flag, const char *arg, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int rc = 0;
    if (!d) return 0;
    while (!rc && (de = readdir(d))) {
        struct stat st;
        char *p;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (!(p = io_join(dir, de->d_name))) { rc = die("out of memory"); break; }
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) rc = io_add(in, flag, arg, p);
        else free(p);
    }
    closedir(d);
    return rc;
}
/* an adapter directory, its config and weights; weights given as a directory of shards: the
   files inside it too */
static int io_add_adapter(io_inputs *in, const char *flag, const char *dir)
{
    char *w = io_join(dir, "adapter_model.safetensors");
    struct stat st;
    int rc;
    if (!w) return die("out of memory");
    rc = io_add(in, flag, dir, io_dup(dir)) || io_add(in, flag, dir, io_join(dir, "adapter_config.json")) ||
         (stat(w, &st) == 0 && S_ISDIR(st.st_mode) && io_add_dir_files(in, flag, dir, w)) ||
         io_add(in, flag, dir, w);
    return rc;
}
/* MODEL: a .safetensors file, a directory of shards, or an index .json naming shards beside it */
static int io_add_model(io_inputs *in, const char *flag, const char *path)
{
    struct stat st;
    if (io_add(in, flag, path, io_dup(path))) return 1;
    if (stat(path, &st) != 0) return 0;
    if (S_ISDIR(st.st_mode)) return io_add_dir_files(in, flag, path, path);
    if (io_has_suffix(path, ".json")) {
        char *dir = io_dup(path), *slash;
        int rc;
        if (!dir) return die("out of memory");
        slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        rc = io_add_dir_files(in, flag, path, slash ? dir : ".");
        free(dir);
        return rc;
    }
    return 0;
}
/* FLAG PATH (an output) must not be any recorded input */
static int io_check_output(const io_inputs *in, const char *cmd, const char *flag, const char *path)
{
    struct stat st;
    int i;
    if (stat(path, &st) != 0) return 0;
    for (i = 0; i < in->n; i++) {
        const io_entry *e = &in->e[i];
        if (e->dev != st.st_dev || e->ino != st.st_ino) continue;
        if (!strcmp(e->path, e->arg))
            return die("%s: %s %s is the input %s %s", cmd, flag, path, e->flag, e->arg);
        return die("%s: %s %s is the input %s %s (%s)", cmd, flag, path, e->flag, e->arg, e->path);
    }
    return 0;
}
/* the file an output path names: its own inode if it exists, else its directory's and its name */
static int io_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    char *da, *db;
    int same = 0;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    if (strcmp(path_base(a), path_base(b))) return 0;
    da = io_dup(a); db = io_dup(b);
    if (da && db) {
        char *sla = strrchr(da, '/'), *slb = strrchr(db, '/');
        if (sla) sla[1] = 0; else strcpy(da, ".");
        if (slb) slb[1] = 0; else strcpy(db, ".");
        same = stat(da, &sa) == 0 && stat(db, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    }
    free(da); free(db);
    return same;
}

/* ---- X-LoRA -------------------------------------------------------------------------------- */
/* dir holds an X-LoRA adapter: xlora_config.json (the xlora package), or an adapter_config.json
   whose "peft_type" is "XLORA" (a quick look; molora_xlora_open checks the file in full) */
static int is_xlora(const char *dir)
{
    char *p = io_join(dir, "xlora_config.json"), buf[1 << 16];
    const char *k;
    struct stat st;
    FILE *f;
    size_t n;
    int yes = p && stat(p, &st) == 0;
    free(p);
    if (yes || !(p = io_join(dir, "adapter_config.json"))) return yes;
    f = stat(p, &st) == 0 && S_ISREG(st.st_mode) ? fopen(p, "rb") : NULL;
    free(p);
    if (!f) return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    if (!(k = strstr(buf, "\"peft_type\""))) return 0;
    for (k += 11; *k == ' ' || *k == '\t' || *k == '\n' || *k == '\r' || *k == ':'; k++) {}
    return !strncmp(k, "\"XLORA\"", 7);
}
/* --module-order FILE: one module path a line, in the order the model registers them */
static int xlora_order(molora_xlora *xl, const char *path)
{
    FILE *f;
    char *text, **line;
    long size;
    int n = 0, rc = 0;
    molora_result r;
    struct stat st;
    if (stat(path, &st) != 0) return die("%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return die("%s: %s, expected a regular file", path, out_kind(st.st_mode));
    if (!(f = fopen(path, "rb"))) return die("%s: cannot open: %s", path, strerror(errno));
    if (st.st_size > (1 << 24)) { fclose(f); return die("%s: %lld bytes is too large", path, (long long)st.st_size); }
    size = (long)st.st_size;
    text = (char *)malloc((size_t)size + 1);
    line = (char **)malloc(((size_t)size / 2 + 2) * sizeof *line);
    if (!text || !line || fread(text, 1, (size_t)size, f) != (size_t)size) rc = die("%s: cannot read", path);
    fclose(f);
    if (!rc && memchr(text, 0, (size_t)size)) {   /* the lines are C strings: a NUL would cut one short */
        const char *z = (const char *)memchr(text, 0, (size_t)size), *q;
        int ln = 1;
        for (q = text; q < z; q++) ln += *q == '\n';
        rc = die("%s: line %d holds a NUL byte (one module path a line, text)", path, ln);
    }
    if (!rc) {
        char *p = text, *e;
        text[size] = 0;
        if (size && text[size - 1] == '\n') text[size - 1] = 0;
        while (!rc) {
            e = strchr(p, '\n');
            if (e) *e = 0;
            if (!*p) rc = die("%s: line %d is empty (one module path a line)", path, n + 1);
            line[n++] = p;
            if (!e) break;
            p = e + 1;
        }
    }
    if (!rc && (r = molora_xlora_set_module_order(xl, (const char *const *)line, n))) rc = die_lib(path, r);
    free(text); free(line);
    return rc;
}
static int xlora_open(const char *dir, int read, const char *order, molora_xlora **xl)
{
    molora_load_desc ld = load_desc(read);
    molora_result r = molora_xlora_open(dir, &ld, xl);
    if (r) return die_lib(dir, r);
    if (order && xlora_order(*xl, order)) { molora_xlora_free(*xl); *xl = NULL; return 1; }
    return 0;
}
/* an output must not be a file of the X-LoRA directory or of any of its adapters */
static int xlora_check_output(const molora_xlora *xl, const char *dir, const char *cmd, const char *flag,
                              const char *path)
{
    io_inputs in;
    int i, rc;
    memset(&in, 0, sizeof in);
    rc = io_add(&in, "XLORA_DIR", dir, io_dup(dir)) || io_add_dir_files(&in, "XLORA_DIR", dir, dir);
    for (i = 0; !rc && i < molora_xlora_n_adapters(xl); i++)
        rc = io_add_adapter(&in, "adapter", molora_xlora_adapter_path(xl, i));
    if (!rc) rc = io_check_output(&in, cmd, flag, path);
    io_free(&in);
    return rc;
}

/* ---- inspect ----------------------------------------------------------------------------- */
/* What molora_model_init would resolve, read from the descriptor alone: inspect converts no
   weight and initialises no model, so its cost is the header's, not the tensors'. */
static int desc_top_k(const molora_layer_desc *L)
{
    if (L->routing == MOLORA_ROUTING_ARROW) return L->top_k ? L->top_k : 3;   /* PEFT's default */
    if (L->routing != MOLORA_ROUTING_TOPK) return 0;
    return L->top_k ? L->top_k : (L->n_experts > 1 ? 2 : 1);
}
static float desc_tau_max(const molora_layer_desc *L)
{
    return L->tau_max_set ? L->tau_max : 1.0f / (float)(L->n_experts ? L->n_experts : 1);
}
static float desc_scaling(const molora_expert_desc *e)
{
    float alpha = e->lora_alpha != 0.0f ? e->lora_alpha : (float)e->rank;
    if (e->scaling != 0.0f) return e->scaling;
    return e->use_rslora ? alpha / sqrtf((float)e->rank) : alpha / (float)e->rank;
}
static void inspect_json(const molora_adapter *a, const molora_layer_desc *L, int l)
{
    int e;
    printf("%s\n  {\"name\": ", l ? "," : "");
    jstr(stdout, molora_adapter_layer_name(a, l));
    printf(", \"layer\": %d, \"d_in\": %d, \"d_out\": %d, \"n_experts\": %d, \"ranks\": [",
           l, L->d_in, L->d_out, L->n_experts);
    for (e = 0; e < L->n_experts; e++) printf("%s%d", e ? ", " : "", L->experts[e].rank);
    printf("], \"scaling\": [");
    for (e = 0; e < L->n_experts; e++) printf("%s%.9g", e ? ", " : "", (double)desc_scaling(&L->experts[e]));
    printf("], \"routing\": \"%s\", \"top_k\": %d, \"threshold\": %.9g, \"tau_max\": %.9g, "
           "\"dtype\": \"%s\", \"fan_in_fan_out\": %s}",
           molora_routing_name(L->routing), desc_top_k(L), (double)L->threshold, (double)desc_tau_max(L),
           molora_dtype_name(molora_adapter_layer_dtype(a, l)), L->fan_in_fan_out ? "true" : "false");
}
static void inspect_text(const molora_adapter *a, const molora_layer_desc *L, int l)
{
    int e;
    printf("%3d %s  d_in %d d_out %d  N %d  ranks", l, molora_adapter_layer_name(a, l), L->d_in, L->d_out,
           L->n_experts);
    for (e = 0; e < L->n_experts; e++) printf(" %d(s=%g)", L->experts[e].rank, (double)desc_scaling(&L->experts[e]));
    printf("  %s", molora_routing_name(L->routing));
    if (L->routing == MOLORA_ROUTING_TOPK || L->routing == MOLORA_ROUTING_ARROW) printf(" k=%d", desc_top_k(L));
    if (L->routing == MOLORA_ROUTING_THRESHOLD) printf(" threshold=%g", (double)L->threshold);
    if (L->routing == MOLORA_ROUTING_ADAMOLE) printf(" tau_max=%g", (double)desc_tau_max(L));
    printf("  %s%s\n", molora_dtype_name(molora_adapter_layer_dtype(a, l)),
           L->fan_in_fan_out ? "  fan_in_fan_out" : "");
}
/* the tensors the loader did not use: a JSON list closing the document, or a line each */
static void inspect_ignored(const molora_adapter *a, int json, int n_layers)
{
    size_t k;
    if (json) {
        printf("%s], \"ignored\": [", n_layers ? "\n" : "");
        for (k = 0; k < molora_adapter_n_ignored(a); k++) {
            printf("%s", k ? ", " : "");
            jstr(stdout, molora_adapter_ignored_name(a, k));
        }
        printf("]}\n");
    } else {
        for (k = 0; k < molora_adapter_n_ignored(a); k++) printf("ignored %s\n", molora_adapter_ignored_name(a, k));
    }
}
/* an X-LoRA adapter's options, adapters and module order, before its modules */
static const char *xlora_order_text(const molora_xlora_info *in)
{
    if (!in->module_order) return "unknown: not a Llama-layout model, layer-wise scalings need --module-order";
    if (!strcmp(in->module_order, "llama")) return "llama (decoder layer, then q, k, v, o, gate, up, down)";
    return "caller (--module-order)";
}
static void inspect_xlora_head(const molora_xlora *xl, int json)
{
    molora_xlora_info in;
    int i;
    molora_xlora_config(xl, &in);
    if (json) {
        printf("{\"layout\": \"xlora\", \"xlora\": {\"files\": \"%s\", \"module_order\": ", in.layout);
        if (in.module_order) printf("\"%s\"", in.module_order); else printf("null");
        printf(", \"n_adapters\": %d, \"n_modules\": %d, \"hidden_size\": %d, \"xlora_depth\": %d, "
               "\"xlora_size\": %d, \"layerwise_scalings\": %s, \"enable_softmax\": %s, \"enable_softmax_topk\": %s, "
               "\"top_k_lora\": ", in.n_adapters, in.n_modules, in.hidden_size, in.depth, in.size,
               in.layerwise ? "true" : "false", in.enable_softmax ? "true" : "false",
               in.enable_softmax_topk ? "true" : "false");
        if (in.top_k) printf("%d", in.top_k); else printf("null");
        printf(", \"softmax_temperature\": %.9g, \"scaling_pass_value\": %.9g, \"global_scaling_weight\": %.9g, "
               "\"use_bias\": %s, \"enable_relu_and_dropout\": %s, \"adapters\": [", (double)in.temperature,
               (double)in.scaling_pass_value, (double)in.global_scaling_weight, in.use_bias ? "true" : "false",
               in.relu ? "true" : "false");
        for (i = 0; i < in.n_adapters; i++) {
            printf("%s{\"name\": ", i ? ", " : "");
            jstr(stdout, molora_xlora_adapter_name(xl, i));
            printf(", \"path\": ");
            jstr(stdout, molora_xlora_adapter_path(xl, i));
            printf("}");
        }
        printf("]}, \"modules\": [");
        return;
    }
    printf("x-lora (%s files): %d adapters, %d modules, hidden size %d\n", in.layout, in.n_adapters, in.n_modules,
           in.hidden_size);
    printf("classifier: depth %d", in.depth);
    if (in.depth > 1) printf(", width %d", in.size);   /* xlora_size is the hidden layers' width */
    printf(", %s, softmax %s (temperature %g), softmax_topk %s, top_k_lora ",
           in.layerwise ? "layer-wise" : "broadcast", in.enable_softmax ? "on" : "off", (double)in.temperature,
           in.enable_softmax_topk ? "on" : "off");
    if (in.top_k) printf("%d", in.top_k); else printf("none");
    printf(", scaling_pass_value %g%s, global_scaling_weight %g%s%s\n", (double)in.scaling_pass_value,
           molora_xlora_scaling_pass_is_base(xl) ? " (pass 1 = the base model)" : "",
           (double)in.global_scaling_weight, in.use_bias ? "" : ", no bias", in.relu ? "" : ", no ReLU");
    for (i = 0; i < in.n_adapters; i++)
        printf("adapter %d \"%s\": %s\n", i, molora_xlora_adapter_name(xl, i), molora_xlora_adapter_path(xl, i));
    printf("module order: %s\n", xlora_order_text(&in));
}
static int cmd_inspect(int argc, char **argv)
{
    cli_inspect_opts o;
    int l, n;
    molora_adapter *own = NULL;
    const molora_adapter *a;
    molora_xlora *xl = NULL;
    molora_model_desc md;
    molora_load_desc ld;
    molora_result r;
    const char *layout;
    if (cli_parse_inspect(argc, argv, &o)) return die("%s", o.err);
    ld = load_desc(o.read);
    if (is_xlora(o.dir)) {
        if (xlora_open(o.dir, o.read, o.module_order, &xl)) return 1;
        a = molora_xlora_adapter(xl);
    } else if (o.module_order) return die("inspect: --module-order is for X-LoRA adapters; %s is not one", o.dir);
    else if ((r = molora_adapter_open(o.dir, &ld, &own))) return die_lib(o.dir, r);
    else a = own;
    molora_adapter_model_desc(a, &md);
    n = molora_adapter_n_layers(a);
    layout = molora_layout_name(molora_adapter_layout(a));
    if (xl) inspect_xlora_head(xl, o.json);
    else if (o.json) printf("{\"layout\": \"%s\", \"modules\": [", layout);
    else printf("layout %s, %d modules\n", layout, n);
    for (l = 0; l < n; l++) {
        if (o.json) inspect_json(a, &md.layers[l], l);
        else inspect_text(a, &md.layers[l], l);
    }
    inspect_ignored(a, o.json, n);
    molora_adapter_free(own);
    molora_xlora_free(xl);
    return 0;
}

/* ---- forward ----------------------------------------------------------------------------- */
/* --output and --weights-out: not an input (the adapter's files, --base's shards and index,
   --input), not each other */
static int forward_check_paths(const cli_forward_opts *o)
{
    io_inputs in;
    int rc;
    memset(&in, 0, sizeof in);
    rc = io_add_adapter(&in, "ADAPTER_DIR", o->dir) || io_add(&in, "--input", o->input, io_dup(o->input)) ||
         (o->base && io_add_model(&in, "--base", o->base)) ||
         (o->weights && io_add(&in, "--weights", o->weights, io_dup(o->weights))) ||
         (is_xlora(o->dir) && io_add_dir_files(&in, "ADAPTER_DIR", o->dir, o->dir)) ||
         io_check_output(&in, "forward", "--output", o->output) ||
         (o->weights_out && io_check_output(&in, "forward", "--weights-out", o->weights_out));
    io_free(&in);
    /* each target a regular file, a new name in an existing directory or a link to either,
       checked before anything is computed; the files they name compared, so two links to one
       new file are the same output */
    if (!rc) {
        char ty[PATH_MAX], tw[PATH_MAX];
        rc = out_target(o->output, o->output, ty, sizeof ty) ||
             (o->weights_out && out_target(o->weights_out, o->weights_out, tw, sizeof tw));
        if (!rc && o->weights_out && (io_same_file(o->output, o->weights_out) || io_same_file(ty, tw)))
            rc = die("forward: --weights-out %s is the same file as --output %s", o->weights_out, o->output);
    }
    return rc;
}
/* "BARE.weight" in the base model into name and *idx; else, for a model saved without its head
   (it stores the names without transformers' base_model_prefix: GPT2Model "h.0...", not
   "transformer.h.0..."), the name without its first component, *bare moved past it */
static int base_find_weight(molora_safetensors *bst, const char *base, const char **bare, char *name, size_t cap,
                            size_t *idx)
{
    const char *dot = strchr(*bare, '.');
    snprintf(name, cap, "%s.weight", *bare);
    if (!molora_safetensors_find(bst, name, idx)) return 0;
    if (!dot || !dot[1]) return die("%s: tensor %s.weight not found", base, *bare);
    snprintf(name, cap, "%s.weight", dot + 1);
    if (molora_safetensors_find(bst, name, idx))
        return die("%s: tensor %s.weight not found (tried %s.weight and %s.weight)", base, *bare, *bare, dot + 1);
    *bare = dot + 1;
    return 0;
}
/* The module's frozen weight and bias from a base model. W0 stays as stored (typed, not
   converted: init converts the one layer it packs): (d_out, d_in), or (d_in, d_out) for a
   fan_in_fan_out module (GPT-2 Conv1D). */
static int base_weights(molora_safetensors *bst, const char *base, const char *module, molora_layer_desc *L)
{
    char name[1024];
    const char *bare = strncmp(module, "base_model.model.", 17) ? module : module + 17;
    int r0 = L->fan_in_fan_out ? L->d_in : L->d_out, r1 = L->fan_in_fan_out ? L->d_out : L->d_in;
    size_t idx;
    molora_tensor_info ti;
    molora_result r;
    if (base_find_weight(bst, base, &bare, name, sizeof name, &idx)) return 1;
    molora_safetensors_tensor_info(bst, idx, &ti);
    if (ti.n_dims != 2 || ti.shape[0] != (uint64_t)r0 || ti.shape[1] != (uint64_t)r1)
        return die("%s: tensor %s has the wrong shape for module %s: want (%d, %d)%s", base, name, module, r0, r1,
                   L->fan_in_fan_out ? " (fan_in_fan_out: stored (in, out))" : "");
    if ((r = molora_safetensors_tensor_data(bst, idx, &L->W0, &L->W0_type))) return die_lib(base, r);
    snprintf(name, sizeof name, "%s.bias", bare);
    if (molora_safetensors_find(bst, name, &idx)) return 0;
    molora_safetensors_tensor_info(bst, idx, &ti);
    if (ti.n_dims != 1 || ti.shape[0] != (uint64_t)L->d_out)
        return die("%s: tensor %s should have shape (%d)", base, name, L->d_out);
    if ((r = molora_safetensors_tensor_f32(bst, idx, &L->bias))) return die_lib(base, r);
    return 0;
}

static molora_routing forward_routing(cli_route_kind k)
{
    return k == CLI_ROUTE_TOPK ? MOLORA_ROUTING_TOPK : k == CLI_ROUTE_THRESHOLD ? MOLORA_ROUTING_THRESHOLD :
           k == CLI_ROUTE_ADAMOLE ? MOLORA_ROUTING_ADAMOLE : MOLORA_ROUTING_DENSE;
}
/* *L = the layer --module names with --routing, --tau-max and --temperature applied; the gate
   (and for adamole the threshold network) the routing needs must be there */
static int forward_layer(const cli_forward_opts *o, const molora_model_desc *md, int layer, molora_layer_desc *L)
{
    const char *dir = o->dir, *module = o->module, *routing = o->routing.text;
    *L = md->layers[layer];
    if (o->routing.kind) {
        L->routing = forward_routing(o->routing.kind);
        if (o->routing.kind == CLI_ROUTE_TOPK) L->top_k = o->routing.top_k;
        if (o->routing.kind == CLI_ROUTE_THRESHOLD) L->threshold = o->routing.threshold;
        if (!L->gate_weight)
            return die("%s: module %s has no gate (lora_gating / router) for --routing %s", dir, module, routing);
        if (L->routing == MOLORA_ROUTING_TOPK && L->top_k > L->n_experts)
            return die("forward: --routing %s: k must be in 1..%d (module %s has %d experts)", routing, L->n_experts,
                       module, L->n_experts);
        if (L->routing == MOLORA_ROUTING_ADAMOLE && !L->threshold_weight)
            return die("%s: module %s has no threshold network (lora_threshold) for --routing adamole", dir, module);
    }
    if (o->tau_text) { L->tau_max = o->tau_max; L->tau_max_set = 1; }
    if (o->temperature_text) L->temperature = o->temperature;
    return 0;
}
/* *mask = molora's expert_mask for --mask (1: the expert stays on), NULL without --mask */
static int forward_mask(const cli_forward_opts *o, const molora_layer_desc *L, uint8_t **mask)
{
    int e, n = L->n_experts;
    *mask = NULL;
    if (!o->mask_text) return 0;
    if (o->mask_max >= n)
        return die("forward: --mask %s: index %d is not an expert of module %s (N = %d: indices 0..%d)", o->mask_text,
                   o->mask_max, o->module, n, n - 1);
    if (!(*mask = (uint8_t *)malloc((size_t)n + 1))) return die("forward: out of memory");
    for (e = 0; e < n; e++) (*mask)[e] = !cli_mask_has(o, e);
    return 0;
}
/* X (T, d_in) through the one-layer model: *Y (T, d_out) and, with experts, the routing weights
   *W (T, N) (both the caller's to free); the full layer with --base, else the experts' delta */
static int forward_apply(molora_model *m, const molora_layer_desc *L, const cli_forward_opts *o, const uint8_t *mask,
                         const float *X, int T, const float *wts, float **Y, float **W)
{
    molora_forward_args fa;
    molora_result r;
    void *ws = NULL;
    size_t wsz;
    int rc = 0;
    *Y = (float *)calloc((size_t)T * (size_t)L->d_out + 1, sizeof(float));
    *W = (float *)calloc((size_t)T * (size_t)(L->n_experts ? L->n_experts : 1) + 1, sizeof(float));
    if (!*Y || !*W || molora_workspace_size(m, T, &wsz) || !(ws = malloc(wsz + 1)))
        return die("forward: out of memory");
    memset(&fa, 0, sizeof fa);
    fa.layer = 0; fa.n_tokens = T; fa.x = X; fa.y = *Y;
    fa.output = o->base ? MOLORA_OUTPUT_FULL : MOLORA_OUTPUT_DELTA;
    fa.expert_mask = mask;
    fa.weights = wts;   /* --weights: (T, N), used as given */
    fa.weights_per_token = wts != NULL;
    fa.weights_out = L->n_experts ? *W : NULL;
    fa.workspace = ws; fa.workspace_size = wsz;
    if ((r = molora_forward(m, &fa))) rc = die_lib(o->input, r);
    free(ws);
    return rc;
}
/* --weights W.npy: (T, N) for the T rows of --input and the module's N experts */
static int forward_weights(const cli_forward_opts *o, const molora_layer_desc *L, int T, float **wts)
{
    int rows, cols;
    *wts = NULL;
    if (!o->weights) return 0;
    if (npy_read(o->weights, wts, &rows, &cols)) return 1;
    if (rows != T || cols != L->n_experts)
        return die("%s: shape (%d, %d), want (%d, %d): a row per row of %s, a column per expert of module %s",
                   o->weights, rows, cols, T, L->n_experts, o->input, o->module);
    return 0;
}
/* the adapter: a plain one, or an X-LoRA directory's modules (then --weights is required) */
static int forward_open(const cli_forward_opts *o, molora_adapter **own, molora_xlora **xl, const molora_adapter **a)
{
    molora_load_desc ld = load_desc(o->read);
    molora_result r;
    if (is_xlora(o->dir)) {
        if (!o->weights)
            return die("forward: %s is an X-LoRA adapter: give the module's weights with --weights W.npy (T, N), "
                       "e.g. from molora xlora", o->dir);
        if (o->routing.kind) return die("forward: an X-LoRA module takes --weights, not --routing");
        if (xlora_open(o->dir, o->read, NULL, xl)) return 1;
        *a = molora_xlora_adapter(*xl);
        return xlora_check_output(*xl, o->dir, "forward", "--output", o->output) ||
               (o->weights_out && xlora_check_output(*xl, o->dir, "forward", "--weights-out", o->weights_out));
    }
    if ((r = molora_adapter_open(o->dir, &ld, own))) return die_lib(o->dir, r);
    *a = *own;
    return 0;
}
static int run_forward(const cli_forward_opts *o)
{
    const char *dir = o->dir, *base = o->base;
    int layer, T = 0, din = 0, rc = 1;
    float *X = NULL, *Y = NULL, *W = NULL, *wts = NULL;
    uint8_t *mask = NULL;
    molora_adapter *own = NULL;
    molora_xlora *xl = NULL;
    const molora_adapter *a = NULL;
    molora_safetensors *bst = NULL;
    molora_model *m = NULL;
    molora_model_desc md, one;
    molora_layer_desc L;
    molora_load_desc ld = load_desc(o->read);
    molora_result r = MOLORA_RESULT_SUCCESS;
    if (forward_open(o, &own, &xl, &a)) goto done;
    layer = molora_adapter_find_layer(a, o->module);
    if (layer < 0) { die("%s: no adapted module %s", dir, o->module); goto done; }
    molora_adapter_model_desc(a, &md);
    if (forward_layer(o, &md, layer, &L)) goto done;
    if (base && ((r = molora_safetensors_open(base, &ld, &bst)) || base_weights(bst, base, o->module, &L))) {
        if (r) die_lib(base, r);
        goto done;
    }
    if (forward_mask(o, &L, &mask)) goto done;
    one = md;   /* the model of the one layer: init packs (and converts) no other */
    one.n_layers = 1;
    one.layers = &L;
    /* --precision: auto keeps a module whose experts are all BF16 in BF16, bf16 rounds any to it */
    one.flags |= o->precision == 0 ? MOLORA_MODEL_EXPERTS_KEEP_BF16 : o->precision == 2 ? MOLORA_MODEL_EXPERTS_BF16 : 0;
    if ((r = molora_model_init(&one, &m))) { die_lib(dir, r); goto done; }
    if (npy_read(o->input, &X, &T, &din)) goto done;
    if (din != L.d_in) {
        die("%s: width %d does not match d_in %d of module %s", o->input, din, L.d_in, o->module);
        goto done;
    }
    if (forward_weights(o, &L, T, &wts)) goto done;
    if (forward_apply(m, &L, o, mask, X, T, wts, &Y, &W)) goto done;
    if (npy_write_pair(o->output, Y, T, L.d_out, o->weights_out, W, L.n_experts)) goto done;
    rc = 0;
done:
    free(X); free(Y); free(W); free(mask); free(wts);
    molora_model_free(m);
    molora_safetensors_free(bst);
    molora_adapter_free(own);
    molora_xlora_free(xl);
    return rc;
}

/* ---- xlora: the scalings (T, L, N) of hidden states (T, H) ---------------------------------- */
static int xlora_check_paths(const cli_xlora_opts *o)
{
    io_inputs in;
    char t[PATH_MAX];
    int rc;
    memset(&in, 0, sizeof in);
    rc = io_add(&in, "--hidden", o->hidden, io_dup(o->hidden)) ||
         (o->module_order && io_add(&in, "--module-order", o->module_order, io_dup(o->module_order))) ||
         io_check_output(&in, "xlora", "--output", o->output);
    io_free(&in);
    return rc || out_target(o->output, o->output, t, sizeof t);
}
static int xlora_write(const char *path, const float *S, int T, int L, int N)
{
    out_file f;
    int dims[3];
    dims[0] = T; dims[1] = L; dims[2] = N;
    if (out_open(&f, path)) return 1;
    if (molora_npy_write_nd(f.f, S, 3, dims)) f.err = errno ? errno : EIO;
    return out_commit(&f);
}
static int cmd_xlora(int argc, char **argv)
{
    cli_xlora_opts o;
    molora_xlora *xl = NULL;
    float *Hs = NULL, *S = NULL;
    void *ws = NULL;
    size_t wsz;
    int T = 0, h = 0, L, N, rc = 1;
    molora_xlora_info info;
    molora_result r;
    if (cli_parse_xlora(argc, argv, &o)) return die("%s", o.err);
    if (xlora_check_paths(&o) || xlora_open(o.dir, o.read, o.module_order, &xl)) return 1;
    if (xlora_check_output(xl, o.dir, "xlora", "--output", o.output) || npy_read(o.hidden, &Hs, &T, &h)) goto done;
    if (h != molora_xlora_hidden_size(xl)) {
        die("%s: width %d does not match the X-LoRA hidden_size %d", o.hidden, h, molora_xlora_hidden_size(xl));
        goto done;
    }
    L = molora_xlora_n_modules(xl); N = molora_xlora_n_adapters(xl);
    molora_xlora_config(xl, &info);
    if (info.layerwise && !info.module_order) {
        die("xlora: %s: layer-wise scalings need X-LoRA's module order, which its module names do not give "
            "(not the Llama layout): --module-order FILE", o.dir);
        goto done;
    }
    if ((r = molora_xlora_workspace_size(xl, T, &wsz))) { die_lib(o.dir, r); goto done; }
    S = (float *)malloc((size_t)T * (size_t)L * (size_t)N * sizeof(float) + 1);
    ws = malloc(wsz + 1);
    if (!S || !ws) { die("xlora: out of memory"); goto done; }
    if ((r = molora_xlora_scalings(xl, T, Hs, S, ws, wsz))) { die_lib(o.hidden, r); goto done; }
    rc = xlora_write(o.output, S, T, L, N);
done:
    free(Hs); free(S); free(ws);
    molora_xlora_free(xl);
    return rc;
}
static int cmd_forward(int argc, char **argv)
{
    cli_forward_opts o;
    if (cli_parse_forward(argc, argv, &o)) return die("%s", o.err);
    if (forward_check_paths(&o)) return 1;
    return run_forward(&o);
}

/* ---- compose ----------------------------------------------------------------------------- */
/* one tensor of the composed adapter; own: the float32 copy compose made (else data is borrowed) */
typedef struct out_tensor { char *name; const float *data; size_t n; int rows, cols; float *own; } out_tensor;

/* t->name = LAYER.lora_PART.E.weight (an expert's A or B) or, with e < 0, LAYER.lora_PART */
static int out_name(out_tensor *t, const char *layer, const char *part, int e)
{
    size_t cap = strlen(layer) + 32;
    if (!(t->name = (char *)malloc(cap))) return die("compose: out of memory");
    if (e >= 0) snprintf(t->name, cap, "%s.lora_%s.%d.weight", layer, part, e);
    else snprintf(t->name, cap, "%s.lora_%s", layer, part);
    return 0;
}
/* t->data = a float32 copy of a typed descriptor matrix (rows, cols): compose writes F32 */
static int out_f32(out_tensor *t, const void *src, molora_type type, int rows, int cols)
{
    t->rows = rows; t->cols = cols; t->n = (size_t)rows * (size_t)cols;
    if (!(t->own = (float *)malloc(t->n * sizeof(float) + 1))) return die("compose: out of memory");
    molora_convert_f32(src, type, t->n, t->own);
    t->data = t->own;
    return 0;
}

/* the safetensors header of t[0..n): names through the JSON string writer, padded to 8 bytes */
static int st_header(strbuf *h, const out_tensor *t, int n)
{
    size_t off = 0;
    int i;
    sb_put(h, "{", 1);
    for (i = 0; i < n; i++) {
        size_t end = off + 4 * t[i].n;
        if (i) sb_put(h, ",", 1);
        if (sb_json_str(h, t[i].name)) return die("compose: tensor name %s is not valid UTF-8", t[i].name);
        if (t[i].rows > 0)
            sb_printf(h, ":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}", t[i].rows, t[i].cols,
                      off, end);
        else sb_printf(h, ":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}", t[i].cols, off, end);
        off = end;
    }
    sb_put(h, "}", 1);
    while (h->n % 8) sb_put(h, " ", 1);
    return h->oom ? die("compose: out of memory") : 0;
}
static int write_st(const char *path, const char *shown, const out_tensor *t, int n)
{
    strbuf h = {0};
    out_file o;
    unsigned char b[8];
    int i;
    if (st_header(&h, t, n)) { free(h.p); return 1; }
    if (out_open_shown(&o, path, shown)) { free(h.p); return 1; }
    for (i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    out_write(&o, b, 8);
    out_write(&o, h.p, h.n);
    free(h.p);
    for (i = 0; i < n; i++) out_write(&o, t[i].data, sizeof(float) * t[i].n);
    return out_commit(&o);
}
/* "expert_scaling": one list when every layer has the same scalings, else a list per layer name */
static int compose_config_scaling(strbuf *c, molora_adapter *ad0, int n, const float *scaling, int same)
{
    int e, l, n_layers = molora_adapter_n_layers(ad0);
    if (same) {
        sb_printf(c, "[");
        for (e = 0; e < n; e++) sb_printf(c, "%s%.9g", e ? ", " : "", (double)scaling[e]);
        sb_printf(c, "]\n}\n");
        return 0;
    }
    sb_printf(c, "{");
    for (l = 0; l < n_layers; l++) {
        const char *name = molora_adapter_layer_name(ad0, l);
        const float *row = scaling + (size_t)l * (size_t)n;
        sb_printf(c, "%s\n  ", l ? "," : "");
        if (sb_json_str(c, name)) return die("compose: module name %s is not valid UTF-8", name);
        sb_printf(c, ": [");
        for (e = 0; e < n; e++) sb_printf(c, "%s%.9g", e ? ", " : "", (double)row[e]);
        sb_printf(c, "]");
    }
    sb_printf(c, "\n }\n}\n");
    return 0;
}
/* "KEY": [the directories], informational (GenKnowSub's general adapters) */
static int compose_config_paths(strbuf *c, const char *key, const char *const *dirs, int n)
{
    int i;
    if (!n) return 0;
    sb_printf(c, " \"%s\": [", key);
    for (i = 0; i < n; i++) {
        if (i) sb_printf(c, ", ");
        if (sb_json_str(c, dirs[i]))
            return die("compose: --%s %s: the path is not valid UTF-8 (it is recorded in adapter_config.json)", key,
                       dirs[i]);
    }
    sb_printf(c, "],\n");
    return 0;
}
/* adapter_config.json of the MOLORA layout: numbers from the parsed values, strings escaped;
   fifo: the experts' fan_in_fan_out (GPT-2 Conv1D: W0 stored (in, out)), kept so forward --base
   reads W0 as the experts do */
static int compose_config(strbuf *c, const cli_compose_opts *o, molora_adapter *ad0, const float *scaling, int same,
                          int fifo)
{
    int e, n = o->n_experts;
    cli_route_kind k = o->routing.kind;
    const char *routing = k == CLI_ROUTE_TOPK ? "topk" : k == CLI_ROUTE_THRESHOLD ? "threshold"
                        : k == CLI_ROUTE_ARROW ? "arrow" : "dense";
    sb_printf(c, "{\n \"peft_type\": \"MOLORA\",\n \"routing\": \"%s\",\n", routing);
    if (k == CLI_ROUTE_TOPK || k == CLI_ROUTE_ARROW) sb_printf(c, " \"top_k\": %d,\n", o->routing.top_k);
    if (k == CLI_ROUTE_ARROW) {
        sb_printf(c, " \"temperature\": %.9g,\n \"arrow_prototypes\": \"%s\",\n", (double)o->routing.temperature,
                  o->prototypes ? "given" : "exact");
        if (compose_config_paths(c, "general", o->generals, o->n_general)) return 1;
    }
    if (k == CLI_ROUTE_THRESHOLD) sb_printf(c, " \"threshold\": %.9g,\n", (double)o->routing.threshold);
    if (fifo) sb_printf(c, " \"fan_in_fan_out\": true,\n");
    sb_printf(c, " \"experts\": [");
    for (e = 0; e < n; e++) {
        if (e) sb_printf(c, ", ");
        if (sb_json_str(c, o->experts[e]))
            return die("compose: --expert %s: the path is not valid UTF-8 (it is recorded in adapter_config.json)",
                       o->experts[e]);
    }
    sb_printf(c, "],\n \"expert_scaling\": ");
    if (compose_config_scaling(c, ad0, n, scaling, same)) return 1;
    return c->oom ? die("compose: out of memory") : 0;
}
static int write_text(const char *path, const char *shown, const strbuf *t)
{
    out_file o;
    if (out_open_shown(&o, path, shown)) return 1;
    out_write(&o, t->p, t->n);
    return out_commit(&o);
}
/* ---- compose --out: the whole directory replaced at once -----------------------------------
   The new adapter is written into a temporary directory beside DIR (".NAME.molora-XXXXXX", or
   ".molora-XXXXXX" for a long NAME), loaded back, then exchanged with DIR by one
   renameat2(RENAME_EXCHANGE) (a rename when DIR is new; two renames where the file system cannot
   exchange) and the old copy removed. An existing DIR may hold only adapter_config.json and
   adapter_model.safetensors as regular files (anything else, a leftover ".*.molora-*" entry
   included, is refused before anything is written), so only those two old files and what this
   run created are ever deleted. On any failure DIR stays as it was and this run's temporary
   directory is removed with everything in it. */
static const char *const compose_files[] = {"adapter_config.json", "adapter_model.safetensors"};
typedef struct out_dir {
    char path[PATH_MAX], parent[PATH_MAX], name[PATH_MAX], tmp[2 * PATH_MAX + 32];
    int exists;
} out_dir;

/* one entry n of an existing DIR: only the two files compose writes, as regular files */
static int outdir_check_entry(const char *shown, const char *path, const char *n)
{
    struct stat st;
    char *p;
    int rc = 0;
    if (strcmp(n, compose_files[0]) && strcmp(n, compose_files[1]))
        return die("compose: --out %s holds %s, which compose does not write (refusing to replace the directory)",
                   shown, n);
    if (!(p = io_join(path, n))) return die("out of memory");
    if (lstat(p, &st) != 0) rc = die("compose: --out %s: %s: %s", shown, n, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = die("compose: --out %s holds %s, which is %s, not a regular file (refusing to replace the directory)",
                 shown, n, S_ISLNK(st.st_mode) ? "a symbolic link" : out_kind(st.st_mode));
    free(p);
    return rc;
}
/* every entry of an existing DIR (see outdir_check_entry) */
static int outdir_only_ours(const char *shown, const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    int rc = 0;
    if (!d) return die("compose: --out %s: cannot read the directory: %s", shown, strerror(errno));
    while (!rc && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        rc = outdir_check_entry(shown, path, de->d_name);
    }
    closedir(d);
    return rc;
}
/* a temporary name beside DIR: ".NAME.molora-TAGXXXXXX", or ".molora-TAGXXXXXX" when that would
   not fit in a file name */
static void outdir_tmpname(char *buf, size_t cap, const out_dir *d, const char *tag)
{
    if (strlen(d->name) + strlen(tag) + sizeof ".molora-XXXXXX" + 1 > NAME_MAX + 1)
        snprintf(buf, cap, "%s/.molora-%sXXXXXX", d->parent, tag);
    else snprintf(buf, cap, "%s/.%s.molora-%sXXXXXX", d->parent, d->name, tag);
}
/* a directory of plain files (an old or unfinished copy), removed */
static void outdir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (d) {
        while ((de = readdir(d))) {
            char *p;
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            if ((p = io_join(dir, de->d_name))) { unlink(p); free(p); }
        }
        closedir(d);
    }
    rmdir(dir);
}
/* DIR without trailing slashes, split into its parent directory and its name */
static void outdir_split(out_dir *d)
{
    size_t n = strlen(d->path);
    while (n > 1 && d->path[n - 1] == '/') d->path[--n] = 0;
    strcpy(d->name, path_base(d->path));
    path_parent(d->path, d->parent);
}
static int outdir_open(out_dir *d, const char *path)
{
    struct stat st;
    mode_t mode;
    memset(d, 0, sizeof *d);
    if (strlen(path) >= sizeof d->path) return die("compose: --out %s: path too long", path);
    if (stat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return die("compose: --out %s is not a directory", path);
        if (!realpath(path, d->path)) return die("compose: --out %s: %s", path, strerror(errno));
        if (outdir_only_ours(path, d->path)) return 1;
        d->exists = 1;
    } else strcpy(d->path, path);
    outdir_split(d);
    outdir_tmpname(d->tmp, sizeof d->tmp, d, "");
    if (!mkdtemp(d->tmp)) {
        d->tmp[0] = 0;
        return die("compose: --out %s: cannot create a temporary directory beside it: %s", path, strerror(errno));
    }
    mode = d->exists ? st.st_mode & 07777 : 0777 & ~out_umask();   /* the mode DIR has or would get */
    if (chmod(d->tmp, mode) != 0) return die("compose: --out %s: %s", path, strerror(errno));
    return 0;
}
static void outdir_abort(out_dir *d)
{
    if (d->tmp[0]) outdir_remove(d->tmp);
    d->tmp[0] = 0;
}
/* where RENAME_EXCHANGE is not supported: DIR moved aside, the new copy renamed in, DIR back on failure */
static int outdir_swap_by_rename(out_dir *d, const char *shown)
{
    char old[2 * PATH_MAX + 32];
    outdir_tmpname(old, sizeof old, d, "old-");
    if (!mkdtemp(old)) return die("compose: --out %s: cannot move the old directory aside: %s", shown, strerror(errno));
    if (rename(d->path, old) != 0) {
        int e = errno;
        rmdir(old);
        return die("compose: --out %s: cannot move the old directory aside: %s", shown, strerror(e));
    }
    if (rename(d->tmp, d->path) != 0) {
        int e = errno;
        rename(old, d->path);
        return die("compose: --out %s: cannot rename the new directory into place: %s", shown, strerror(e));
    }
    strcpy(d->tmp, old);   /* the old copy, removed by the caller */
    return 0;
}
static int outdir_commit(out_dir *d, const char *shown)
{
    if (!d->exists) {
        if (rename(d->tmp, d->path) != 0)
            return die("compose: --out %s: cannot rename the new directory into place: %s", shown, strerror(errno));
        d->tmp[0] = 0;
    } else if (renameat2(AT_FDCWD, d->tmp, AT_FDCWD, d->path, RENAME_EXCHANGE) != 0) {
        if (errno != EINVAL && errno != ENOSYS)
            return die("compose: --out %s: cannot exchange the new directory with it: %s", shown, strerror(errno));
        if (outdir_swap_by_rename(d, shown)) return 1;
    }
    outdir_abort(d);   /* after the exchange the temporary name holds the old copy */
    if (out_sync_dir(d->parent) != 0 && errno != EINVAL)
        return die("compose: --out %s: cannot sync its directory: %s", shown, strerror(errno));
    return 0;
}
/* both files into the temporary directory, messages naming DIR/FILE */
static int compose_write(const out_dir *d, const char *outd, const out_tensor *ot, int nt, const strbuf *cfg)
{
    char path[3 * PATH_MAX], shown[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", d->tmp, compose_files[1]);
    snprintf(shown, sizeof shown, "%s/%s", outd, compose_files[1]);
    if (write_st(path, shown, ot, nt)) return 1;
    snprintf(path, sizeof path, "%s/%s", d->tmp, compose_files[0]);
    snprintf(shown, sizeof shown, "%s/%s", outd, compose_files[0]);
    return write_text(path, shown, cfg);
}
/* the written adapter must load and initialise through molora before it replaces DIR */
static int compose_load_back(const out_dir *d, const char *outd, int read)
{
    molora_load_desc ld = load_desc(read);
    molora_adapter *a = NULL;
    molora_model *m = NULL;
    molora_model_desc md;
    molora_result r;
    g_detail[0] = 0;
    if (!(r = molora_adapter_open(d->tmp, &ld, &a))) {
        molora_adapter_model_desc(a, &md);
        r = molora_model_init(&md, &m);
    }
    molora_model_free(m);
    molora_adapter_free(a);
    if (r) {
        die("compose: %s: the composed adapter does not load back: %s (%s)", outd, g_detail, molora_result_string(r));
        g_detail[0] = 0;
        return 1;
    }
    return 0;
}

/* --out (the directory and the two files written into it) is no input: not an --expert
   directory or file, not --gate */
static int compose_check_paths(const cli_compose_opts *o)
{
    io_inputs in;
    char *cfg = io_join(o->out, compose_files[0]), *st = io_join(o->out, compose_files[1]);
    struct stat sd;
    int i, rc = !cfg || !st ? die("out of memory") : 0;
    memset(&in, 0, sizeof in);
    for (i = 0; !rc && i < o->n_experts; i++) rc = io_add_adapter(&in, "--expert", o->experts[i]);
    for (i = 0; !rc && i < o->n_general; i++) rc = io_add_adapter(&in, "--general", o->generals[i]);
    rc = rc || (o->gate && io_add(&in, "--gate", o->gate, io_dup(o->gate))) ||
         (o->prototypes && io_add(&in, "--prototypes", o->prototypes, io_dup(o->prototypes))) ||
         io_check_output(&in, "compose", "--out", o->out) ||
         io_check_output(&in, "compose", "--out", cfg) || io_check_output(&in, "compose", "--out", st);
    io_free(&in);
    free(cfg); free(st);
    /* an existing --out: a directory holding only what compose writes, checked before reading the experts */
    if (!rc && stat(o->out, &sd) == 0)
        rc = S_ISDIR(sd.st_mode) ? outdir_only_ours(o->out, o->out)
                                 : die("compose: --out %s is not a directory", o->out);
    return rc;
}

/* What compose reads and builds: the experts (plain LoRAs), the gate file and the output tensors. */
typedef struct compose_plan {
    const cli_compose_opts *o;
    molora_adapter *adapters[CLI_MAX_EXPERTS];
    molora_model *models[CLI_MAX_EXPERTS];   /* each expert initialised: its scaling as molora resolves it */
    molora_safetensors *gate;
    molora_adapter *generals[CLI_MAX_EXPERTS];   /* arrow's --general adapters (GenKnowSub)         */
    molora_safetensors *protos;              /* arrow's --prototypes file, or NULL                */
    size_t protos_used;                      /* its tensors read (every one must be)              */
    int n_layers;                            /* the layers of expert 0, the order of the output */
    out_tensor *tensors;                     /* n_layers * (2N + 2) + 1: the last one only for cleanup */
    int n_tensors;
    float *scaling;                          /* (n_layers, N) */
    int same_scaling, fan_in_fan_out;
} compose_plan;

static void compose_plan_free(compose_plan *P)
{
    int i;
    if (P->tensors)
        for (i = 0; i < P->n_tensors + 1; i++) { free(P->tensors[i].name); free(P->tensors[i].own); }
    free(P->tensors); free(P->scaling);
    molora_safetensors_free(P->gate);
    molora_safetensors_free(P->protos);
    for (i = 0; i < P->o->n_general; i++) molora_adapter_free(P->generals[i]);
    for (i = 0; i < P->o->n_experts; i++) { molora_model_free(P->models[i]); molora_adapter_free(P->adapters[i]); }
}
/* every --expert: a plain PEFT LoRA that loads and initialises, adapting as many modules as the first */
static int compose_open_experts(compose_plan *P, const molora_load_desc *ld)
{
    const char *const *dirs = P->o->experts;
    int i;
    molora_result r;
    for (i = 0; i < P->o->n_experts; i++) {
        molora_model_desc md;
        molora_adapter *a;
        if ((r = molora_adapter_open(dirs[i], ld, &P->adapters[i]))) return die_lib(dirs[i], r);
        a = P->adapters[i];
        if (molora_adapter_layout(a) != MOLORA_LAYOUT_PEFT_LORA)
            return die("%s: layout %s is not a plain PEFT LoRA adapter", dirs[i],
                       molora_layout_name(molora_adapter_layout(a)));
        molora_adapter_model_desc(a, &md);
        if ((r = molora_model_init(&md, &P->models[i]))) return die_lib(dirs[i], r);
        if (molora_adapter_n_layers(a) != molora_adapter_n_layers(P->adapters[0]))
            return die("%s: adapts %d modules, %s adapts %d (all experts must adapt the same modules)", dirs[i],
                       molora_adapter_n_layers(a), dirs[0], molora_adapter_n_layers(P->adapters[0]));
    }
    return 0;
}
/* layer l of an adapter's descriptor (the layers belong to the adapter) */
static const molora_layer_desc *adapter_layer(const molora_adapter *a, int l)
{
    molora_model_desc md;
    memset(&md, 0, sizeof md);
    molora_adapter_model_desc(a, &md);
    return &md.layers[l];
}
/* expert e's A (r, d_in) and B (d_out, r) of LAYER, as float32 output tensors */
static int compose_expert_tensors(compose_plan *P, const char *layer, int e, const molora_layer_desc *Le)
{
    const molora_expert_desc *x = &Le->experts[0];
    out_tensor *t = &P->tensors[P->n_tensors];
    if (out_name(t, layer, "A", e)) return 1;
    P->n_tensors++;
    if (out_f32(t, x->A, x->A_type, x->rank, Le->d_in)) return 1;
    if (out_name(t + 1, layer, "B", e)) return 1;
    P->n_tensors++;
    return out_f32(t + 1, x->B, x->B_type, Le->d_out, x->rank);
}
/* expert e's copy of layer l (named as in expert 0, L0): the same fan_in_fan_out and shape; its
   scaling recorded, its A and B added to the output */
static int compose_expert(compose_plan *P, int l, int e, const char *name, const molora_layer_desc *L0)
{
    const char *const *dirs = P->o->experts;
    int n = P->o->n_experts, le = molora_adapter_find_layer(P->adapters[e], name);
    const molora_layer_desc *Le;
    float s = 0;
    if (le < 0) return die("%s: module %s is not adapted (all experts must adapt the same modules)", dirs[e], name);
    Le = adapter_layer(P->adapters[e], le);
    if (!Le->fan_in_fan_out != !L0->fan_in_fan_out)
        return die("compose: module %s: %s has fan_in_fan_out %s, %s has %s (the experts must agree)", name, dirs[e],
                   Le->fan_in_fan_out ? "true" : "false", dirs[0], L0->fan_in_fan_out ? "true" : "false");
    if (L0->fan_in_fan_out) P->fan_in_fan_out = 1;
    if (Le->d_in != L0->d_in || Le->d_out != L0->d_out)
        return die("%s: module %s is (%d, %d), %s has (%d, %d)", dirs[e], name, Le->d_out, Le->d_in, dirs[0], L0->d_out,
                   L0->d_in);
    molora_model_expert(P->models[e], le, 0, NULL, &s);
    P->scaling[(size_t)l * (size_t)n + (size_t)e] = s;
    if (s != P->scaling[e]) P->same_scaling = 0;
    return compose_expert_tensors(P, name, e, Le);
}
/* the gate file's tensor idx as the output tensor LAYER.lora_PART, borrowed (rows 0: 1-D of cols) */
static int compose_gate_tensor(compose_plan *P, size_t idx, const char *layer, const char *part, int rows, int cols)
{
    out_tensor *t = &P->tensors[P->n_tensors];
    molora_result r;
    if (out_name(t, layer, part, -1)) return 1;
    if ((r = molora_safetensors_tensor_f32(P->gate, idx, &t->data))) return die_lib(P->o->gate, r);
    t->rows = rows; t->cols = cols; t->n = (size_t)(rows ? rows : 1) * (size_t)cols;
    P->n_tensors++;
    return 0;
}
/* LAYER.lora_gating.weight (N, d_in) from --gate (found under LAYER without "base_model.model."
   too) and its bias (N) when the file has one */
static int compose_gate(compose_plan *P, const char *layer, const molora_layer_desc *L0)
{
    const char *gate = P->o->gate, *bare = strncmp(layer, "base_model.model.", 17) ? layer : layer + 17;
    int n = P->o->n_experts;
    char gname[1200];
    size_t gi;
    molora_tensor_info ti;
    snprintf(gname, sizeof gname, "%s.lora_gating.weight", layer);
    if (molora_safetensors_find(P->gate, gname, &gi)) {
        snprintf(gname, sizeof gname, "%s.lora_gating.weight", bare);
        if (molora_safetensors_find(P->gate, gname, &gi))
            return die("%s: tensor %s.lora_gating.weight not found", gate, layer);
    }
    molora_safetensors_tensor_info(P->gate, gi, &ti);
    if (ti.n_dims != 2 || ti.shape[0] != (uint64_t)n || ti.shape[1] != (uint64_t)L0->d_in)
        return die("%s: tensor %s should be (%d, %d)", gate, gname, n, L0->d_in);
    if (compose_gate_tensor(P, gi, layer, "gating.weight", n, L0->d_in)) return 1;
    snprintf(gname + strlen(gname) - 6, 8, "bias");   /* the same prefix as the weight found */
    if (molora_safetensors_find(P->gate, gname, &gi)) return 0;
    molora_safetensors_tensor_info(P->gate, gi, &ti);
    if (ti.n_dims != 1 || ti.shape[0] != (uint64_t)n) return die("%s: tensor %s should be (%d)", gate, gname, n);
    return compose_gate_tensor(P, gi, layer, "gating.bias", 0, n);
}
/* layer l of expert 0, its copy in every expert, then its gate */
static int compose_layer(compose_plan *P, int l)
{
    const char *name = molora_adapter_layer_name(P->adapters[0], l);
    const molora_layer_desc *L0 = adapter_layer(P->adapters[0], l);
    int e;
    for (e = 0; e < P->o->n_experts; e++)
        if (compose_expert(P, l, e, name, L0)) return 1;
    return compose_gate(P, name, L0);
}
/* ---- compose --routing arrow: GenKnowSub and the prototypes ----------------------------------
   PEFT's Arrow (create_arrow_model): no gate; per module P.arrow_prototypes (N, d_in), from
   --prototypes or the exact ones molora computes from the written factors. With --general
   (GenKnowSub) every expert's A and B become A - mean_g A_g and B - mean_g B_g, as PEFT's code
   does it (the factors' means, s_e unchanged), so the file holds the subtracted factors. Ranks may
   differ between experts, except with --general: the subtraction needs one rank per module. */

/* every --general: a plain PEFT LoRA that loads, adapting as many modules as the first expert */
static int compose_open_generals(compose_plan *P, const molora_load_desc *ld)
{
    const char *const *dirs = P->o->generals;
    int i;
    molora_result r;
    for (i = 0; i < P->o->n_general; i++) {
        if ((r = molora_adapter_open(dirs[i], ld, &P->generals[i]))) return die_lib(dirs[i], r);
        if (molora_adapter_layout(P->generals[i]) != MOLORA_LAYOUT_PEFT_LORA)
            return die("%s: layout %s is not a plain PEFT LoRA adapter (--general)", dirs[i],
                       molora_layout_name(molora_adapter_layout(P->generals[i])));
        if (molora_adapter_n_layers(P->generals[i]) != molora_adapter_n_layers(P->adapters[0]))
            return die("%s: adapts %d modules, %s adapts %d (--general adapters must adapt the experts' modules)",
                       dirs[i], molora_adapter_n_layers(P->generals[i]), P->o->experts[0],
                       molora_adapter_n_layers(P->adapters[0]));
    }
    return 0;
}
/* mean (na + nb doubles) += general g's A and B of module NAME: rank r, the experts' shape */
static int compose_gks_add(compose_plan *P, int g, const char *name, const molora_layer_desc *L0, int r,
                           double *mean, float *tmp)
{
    const char *dir = P->o->generals[g];
    int lg = molora_adapter_find_layer(P->generals[g], name);
    const molora_layer_desc *Lg;
    size_t na = (size_t)r * (size_t)L0->d_in, nb = (size_t)L0->d_out * (size_t)r, i;
    if (lg < 0) return die("%s: module %s is not adapted (--general adapters must adapt the experts' modules)", dir,
                           name);
    Lg = adapter_layer(P->generals[g], lg);
    if (Lg->d_in != L0->d_in || Lg->d_out != L0->d_out || Lg->experts[0].rank != r)
        return die("%s: module %s is (%d, %d) of rank %d, the experts' is (%d, %d) of rank %d (GenKnowSub subtracts "
                   "the factors: one shape and rank)", dir, name, Lg->d_out, Lg->d_in, Lg->experts[0].rank,
                   L0->d_out, L0->d_in, r);
    molora_convert_f32(Lg->experts[0].A, Lg->experts[0].A_type, na, tmp);
    for (i = 0; i < na; i++) mean[i] += tmp[i];
    molora_convert_f32(Lg->experts[0].B, Lg->experts[0].B_type, nb, tmp);
    for (i = 0; i < nb; i++) mean[na + i] += tmp[i];
    return 0;
}
/* GenKnowSub on module NAME: the experts' A and B (tensors from index first) minus the means */
static int compose_gks(compose_plan *P, const char *name, const molora_layer_desc *L0, int first)
{
    out_tensor *t = &P->tensors[first];
    int n = P->o->n_experts, G = P->o->n_general, r = t[0].rows, e, g, rc = 0;
    size_t na = (size_t)r * (size_t)L0->d_in, nb = (size_t)L0->d_out * (size_t)r, i;
    double *mean = (double *)calloc(na + nb, sizeof(double));
    float *tmp = (float *)malloc(sizeof(float) * (na > nb ? na : nb));
    if (!mean || !tmp) rc = die("compose: out of memory");
    for (e = 1; !rc && e < n; e++)
        if (t[2 * e].rows != r)
            rc = die("compose: module %s: %s has rank %d, %s has rank %d (GenKnowSub, --general, subtracts the "
                     "factors: one rank for every expert)", name, P->o->experts[e], t[2 * e].rows, P->o->experts[0], r);
    for (g = 0; !rc && g < G; g++) rc = compose_gks_add(P, g, name, L0, r, mean, tmp);
    for (i = 0; !rc && i < na + nb; i++) {   /* the mean rounded to float once, then subtracted in float */
        float m = (float)(mean[i] / G);
        for (e = 0; e < n; e++) t[2 * e + (i >= na)].own[i >= na ? i - na : i] -= m;
    }
    free(mean); free(tmp);
    return rc;
}
/* the prototypes of LAYER from --prototypes: LAYER.arrow_prototypes, found with or without
   "base_model.model." (not both), F32 (N, d_in), finite */
static int compose_protos_given(compose_plan *P, const char *layer, const molora_layer_desc *L0, out_tensor *t)
{
    const char *file = P->o->prototypes, *bare = strncmp(layer, "base_model.model.", 17) ? layer : layer + 17;
    char full[1200], short_[1200];
    size_t i = 0, ib = 0, k;
    int has, has_b;
    molora_tensor_info ti;
    const float *p;
    molora_result r;
    snprintf(full, sizeof full, "%s.arrow_prototypes", layer);
    snprintf(short_, sizeof short_, "%s.arrow_prototypes", bare);
    has = !molora_safetensors_find(P->protos, full, &i);
    has_b = bare != layer && !molora_safetensors_find(P->protos, short_, &ib);
    if (!has && !has_b) return die("%s: tensor %s.arrow_prototypes not found (module %s)", file, bare, layer);
    if (has && has_b) return die("%s: tensors %s and %s both give module %s", file, full, short_, layer);
    if (has_b) i = ib;
    molora_safetensors_tensor_info(P->protos, i, &ti);
    if (ti.dtype != MOLORA_DTYPE_F32)
        return die("%s: tensor %s is %s, not F32", file, ti.name, molora_dtype_name(ti.dtype));
    if (ti.n_dims != 2 || ti.shape[0] != (uint64_t)P->o->n_experts || ti.shape[1] != (uint64_t)L0->d_in)
        return die("%s: tensor %s should be (%d, %d): one prototype per --expert", file, ti.name, P->o->n_experts,
                   L0->d_in);
    if ((r = molora_safetensors_tensor_f32(P->protos, i, &p))) return die_lib(file, r);
    for (k = 0; k < t->n; k++)
        if (!isfinite(p[k])) return die("%s: tensor %s has NaN or Inf", file, ti.name);
    memcpy(t->own, p, t->n * sizeof(float));
    P->protos_used++;
    return 0;
}
/* every tensor of --prototypes was used: else name the first one that gives no adapted module */
static int compose_protos_extra(const compose_plan *P)
{
    size_t i, n = molora_safetensors_n_tensors(P->protos);
    char name[1200];
    molora_tensor_info ti;
    if (P->protos_used == n) return 0;
    for (i = 0; i < n; i++) {
        size_t len;
        molora_safetensors_tensor_info(P->protos, i, &ti);
        len = strlen(ti.name);
        if (len < 17 || len - 17 >= sizeof name || strcmp(ti.name + len - 17, ".arrow_prototypes"))
            return die("%s: tensor %s is not named <module path>.arrow_prototypes", P->o->prototypes, ti.name);
        memcpy(name, ti.name, len - 17); name[len - 17] = 0;
        if (molora_adapter_find_layer(P->adapters[0], name) < 0)
            return die("%s: tensor %s: module %s is not adapted by the experts", P->o->prototypes, ti.name, name);
    }
    return die("%s: %zu tensors for %zu modules", P->o->prototypes, n, P->protos_used);
}
/* the exact prototypes of LAYER: molora's ARROW init on the factors written (after GenKnowSub) */
static int compose_protos_exact(compose_plan *P, const char *layer, const molora_layer_desc *L0, int first,
                                out_tensor *t)
{
    molora_expert_desc ex[CLI_MAX_EXPERTS];
    molora_layer_desc ld;
    molora_model_desc md;
    molora_model *m;
    molora_result r;
    int e, n = P->o->n_experts;
    memset(ex, 0, sizeof ex); memset(&ld, 0, sizeof ld); memset(&md, 0, sizeof md);
    for (e = 0; e < n; e++) {
        ex[e].rank = P->tensors[first + 2 * e].rows; ex[e].scaling = 1;
        ex[e].A = P->tensors[first + 2 * e].own; ex[e].B = P->tensors[first + 2 * e + 1].own;
    }
    ld.d_in = L0->d_in; ld.d_out = L0->d_out; ld.n_experts = n; ld.experts = ex;
    ld.routing = MOLORA_ROUTING_ARROW; ld.top_k = 1;
    md.n_layers = 1; md.layers = &ld; md.log = on_log;
    g_detail[0] = 0;
    if ((r = molora_model_init(&md, &m))) return die("compose: module %s: prototypes: %s (%s)", layer, g_detail,
                                                     molora_result_string(r));
    r = molora_model_prototypes(m, 0, t->own);
    molora_model_free(m);
    return r ? die("compose: module %s: prototypes: %s", layer, molora_result_string(r)) : 0;
}
/* layer l under arrow: every expert's factors (GenKnowSub applied), then LAYER.arrow_prototypes */
static int compose_arrow_layer(compose_plan *P, int l)
{
    const char *name = molora_adapter_layer_name(P->adapters[0], l);
    const molora_layer_desc *L0 = adapter_layer(P->adapters[0], l);
    int e, first = P->n_tensors, n = P->o->n_experts;
    size_t cap = strlen(name) + 32;
    out_tensor *t;
    for (e = 0; e < n; e++)
        if (compose_expert(P, l, e, name, L0)) return 1;
    if (P->o->n_general && compose_gks(P, name, L0, first)) return 1;
    t = &P->tensors[P->n_tensors++];
    t->rows = n; t->cols = L0->d_in; t->n = (size_t)n * (size_t)L0->d_in;
    if (!(t->name = (char *)malloc(cap)) || !(t->own = (float *)malloc(t->n * sizeof(float) + 1)))
        return die("compose: out of memory");
    snprintf(t->name, cap, "%s.arrow_prototypes", name);
    t->data = t->own;
    return P->protos ? compose_protos_given(P, name, L0, t) : compose_protos_exact(P, name, L0, first, t);
}
static int run_compose(const cli_compose_opts *o)
{
    compose_plan P;
    molora_load_desc ld = load_desc(o->read);
    molora_result r;
    strbuf cfg = {0};
    out_dir od;
    int l, n = o->n_experts, rc = 1, arrow = o->routing.kind == CLI_ROUTE_ARROW;
    memset(&P, 0, sizeof P);
    memset(&od, 0, sizeof od);
    P.o = o;
    P.same_scaling = 1;
    if (compose_open_experts(&P, &ld) || (arrow && compose_open_generals(&P, &ld))) goto done;
    if ((r = !arrow ? molora_safetensors_open(o->gate, &ld, &P.gate)
                    : o->prototypes ? molora_safetensors_open(o->prototypes, &ld, &P.protos) : MOLORA_RESULT_SUCCESS)) {
        die_lib(arrow ? o->prototypes : o->gate, r);
        goto done;
    }
    P.n_layers = molora_adapter_n_layers(P.adapters[0]);
    P.tensors = (out_tensor *)calloc((size_t)P.n_layers * (size_t)(2 * n + 2) + 1, sizeof *P.tensors);
    P.scaling = (float *)calloc((size_t)P.n_layers * (size_t)n + 1, sizeof *P.scaling);
    if (!P.tensors || !P.scaling) { die("compose: out of memory"); goto done; }
    for (l = 0; l < P.n_layers; l++)
        if (arrow ? compose_arrow_layer(&P, l) : compose_layer(&P, l)) goto done;
    if (P.protos && compose_protos_extra(&P)) goto done;
    if (compose_config(&cfg, o, P.adapters[0], P.scaling, P.same_scaling, P.fan_in_fan_out)) goto done;
    if (outdir_open(&od, o->out) || compose_write(&od, o->out, P.tensors, P.n_tensors, &cfg) ||
        compose_load_back(&od, o->out, o->read) || outdir_commit(&od, o->out)) goto done;
    rc = 0;
done:
    compose_plan_free(&P);
    outdir_abort(&od);
    free(cfg.p);
    return rc;
}
static int cmd_compose(int argc, char **argv)
{
    cli_compose_opts o;
    if (cli_parse_compose(argc, argv, &o)) return die("%s", o.err);
    if (compose_check_paths(&o)) return 1;
    return run_compose(&o);
}

/* ---- alpha --------------------------------------------------------------------------------
   molora alpha MODEL [--method fix_finger|ww|ww077] [--budget N] [--beta B] [--prefix P]
                      [--layers PATTERN] [--upstream-fp16] [--json]
   The blocks (decoder layers) are found by a name pattern with {L} (molora_alpha_block_index):
   --layers, or the family molora_alpha_family_detect picks (t5, bart, bert, llama, gpt2). A
   block's matrices are its 2-D float tensors named "...weight" (not "weight" of a norm, an
   embedding or T5's relative_attention_bias); a matrix whose smaller side is under the method's
   minimum (10, or WeightWatcher 0.7.7's min_evals 8 for ww077) is skipped and listed. With two
   block sets (T5) the blocks are numbered first set first and share one budget. The output
   calls a block a "layer", as AlphaLoRA does. */

typedef struct alpha_args {
    const char *model, *prefix, *method, *layers;
    int budget, json, fp16, read;
    double beta;
    molora_alpha_args lib;        /* the library's args for every matrix */
} alpha_args;

typedef struct alpha_sets {
    const char *family;           /* NULL with --layers */
    const char *pat[2];
    int n, first[3];              /* block numbers of set s: first[s] .. first[s + 1] - 1 */
} alpha_sets;

static int alpha_parse(int argc, char **argv, alpha_args *A)
{
    cli_alpha_opts ao;
    memset(A, 0, sizeof *A);
    if (cli_parse_alpha(argc, argv, &ao)) return die("%s", ao.err);
    A->model = ao.model; A->prefix = ao.prefix; A->method = ao.method; A->layers = ao.layers;
    A->json = ao.json; A->fp16 = ao.fp16; A->read = ao.read;
    A->budget = ao.budget_set ? ao.budget : MOLORA_ALPHA_DEFAULT_BUDGET;
    A->beta = ao.beta_set ? ao.beta : MOLORA_ALPHA_DEFAULT_BETA;
    A->lib.method = !strcmp(A->method, "ww") ? MOLORA_ALPHA_WW
                  : !strcmp(A->method, "ww077") ? MOLORA_ALPHA_WW_077 : MOLORA_ALPHA_FIX_FINGER;
    if (A->layers && molora_alpha_pattern_check(A->layers) != MOLORA_RESULT_SUCCESS)
        return die("alpha: --layers \"%s\": want a name pattern with exactly one {L} for the layer index "
                   "(at most %d bytes), e.g. \"encoder.layer.{L}.\"", A->layers, MOLORA_ALPHA_PATTERN_MAX);
    A->lib.round_to_f16 = A->fp16;
    A->lib.log = on_log;
    return 0;
}

/* The name after --prefix, or NULL when it does not start with it. */
static const char *alpha_strip(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(name, prefix, n) ? NULL : name + n;
}

/* The block sets: --layers, or the family whose patterns match the most names. */
static int alpha_pick_sets(const alpha_args *A, molora_safetensors *st, alpha_sets *S)
{
    size_t nt = molora_safetensors_n_tensors(st), k, n = 0;
    const char **names;
    int f, count;
    const molora_alpha_family *t = molora_alpha_families(&count);
    memset(S, 0, sizeof *S);
    if (A->layers) { S->pat[0] = A->layers; S->n = 1; return 0; }
    if (!(names = (const char **)calloc(nt + 1, sizeof *names))) return die("alpha: out of memory");
    for (k = 0; k < nt; k++) {
        molora_tensor_info ti;
        molora_safetensors_tensor_info(st, k, &ti);
        if ((names[n] = alpha_strip(ti.name, A->prefix))) n++;
    }
    f = molora_alpha_family_detect(names, n);
    free(names);
    if (f < 0) {
        char known[256] = "";
        int i;
        for (i = 0; i < count; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s %s%s%s", i ? ", " : "", t[i].name,
                     t[i].sets[0], t[i].sets[1] ? " + " : "", t[i].sets[1] ? t[i].sets[1] : "");
        return die("alpha: %s: no 2-D weight named like \"%s\" + a known layer pattern (%s); name one with --layers",
                   A->model, A->prefix, known);
    }
    S->family = t[f].name; S->pat[0] = t[f].sets[0]; S->pat[1] = t[f].sets[1]; S->n = t[f].sets[1] ? 2 : 1;
    return 0;
}

/* The set and the block (within the set) of a name; -1: in no block. */
static int alpha_block(const alpha_sets *S, const char *name, int *set)
{
    int s, b;
    for (s = 0; s < S->n; s++)
        if ((b = molora_alpha_block_index(name, S->pat[s])) >= 0) { *set = s; return b; }
    return -1;
}

/* A block matrix by name: "...weight", not a norm, an embedding or T5's relative position table. */
static int alpha_is_matrix_name(const char *name)
{
    size_t n = strlen(name);
    if (n < 6 || strcmp(name + n - 6, "weight") || (n > 6 && name[n - 7] != '.')) return 0;
    return !strstr(name, "norm") && !strstr(name, "embed") && !strstr(name, "relative_attention_bias");
}

static void alpha_print_sets(const alpha_sets *S)
{
    int s;
    printf("layers: %s", S->family ? S->family : "--layers");
    for (s = 0; s < S->n; s++)
        printf("%s \"%s\" = layers %d..%d", s ? "," : "", S->pat[s], S->first[s], S->first[s + 1] - 1);
    printf("%s\n\n", S->n > 1 ? " (one budget over both stacks)" : "");
}

static void alpha_json_sets(const alpha_sets *S)
{
    int s;
    printf(" \"family\": ");
    if (S->family) jstr(stdout, S->family); else printf("null");
    printf(", \"patterns\": [");
    for (s = 0; s < S->n; s++) { printf("%s", s ? ", " : ""); jstr(stdout, S->pat[s]); }
    printf("],\n");
}

/* What cmd_alpha found and computed; arrays of nt + 1 entries (matrices) or n_blocks (blocks). */
typedef struct alpha_plan {
    size_t *mat, *skip;           /* tensor indices of the block matrices, of the skipped ones */
    int *mblock, *mset;           /* each matrix's global block and its set                   */
    molora_alpha_fit *fits;
    double *mat_alpha, *block_alpha;
    int *experts, *topk;          /* per block                                                */
    int n_mat, n_skip, n_blocks;
    size_t ws_bytes;              /* scratch of the largest matrix                            */
} alpha_plan;

static void alpha_plan_free(alpha_plan *P)
{
    free(P->mat); free(P->skip); free(P->mblock); free(P->mset); free(P->fits); free(P->mat_alpha);
    free(P->block_alpha); free(P->experts); free(P->topk);
}
static int alpha_plan_alloc_matrices(alpha_plan *P, size_t nt)
{
    P->mat = (size_t *)calloc(nt + 1, sizeof *P->mat);
    P->skip = (size_t *)calloc(nt + 1, sizeof *P->skip);
    P->mblock = (int *)calloc(nt + 1, sizeof *P->mblock);
    P->mset = (int *)calloc(nt + 1, sizeof *P->mset);
    P->mat_alpha = (double *)calloc(nt + 1, sizeof *P->mat_alpha);
    P->fits = (molora_alpha_fit *)calloc(nt + 1, sizeof *P->fits);
    if (!P->mat || !P->skip || !P->mblock || !P->mset || !P->mat_alpha || !P->fits) return die("alpha: out of memory");
    return 0;
}
/* tensor k (ti), a matrix of block b of set s, recorded; the workspace grown to fit it */
static int alpha_add_matrix(const alpha_args *A, alpha_plan *P, size_t k, const molora_tensor_info *ti, int b, int s)
{
    size_t bytes = 0;
    molora_result r;
    if (ti->shape[0] > 1000000 || ti->shape[1] > 1000000)
        return die("alpha: %s: %s: %llu x %llu is too large", A->model, ti->name, (unsigned long long)ti->shape[0],
                   (unsigned long long)ti->shape[1]);
    P->mat[P->n_mat] = k; P->mblock[P->n_mat] = b; P->mset[P->n_mat++] = s;
    r = molora_alpha_workspace_size((int)ti->shape[0], (int)ti->shape[1], &A->lib, &bytes);
    if (r != MOLORA_RESULT_SUCCESS) return die_lib(ti->name, r);
    if (bytes > P->ws_bytes) P->ws_bytes = bytes;
    return 0;
}

/* 1. which tensors are block matrices, by set and block; then global block numbers */
static int alpha_select(const alpha_args *A, molora_safetensors *st, alpha_sets *S, alpha_plan *P)
{
    size_t nt = molora_safetensors_n_tensors(st), k;
    int i, s = 0, nb[2] = {0, 0}, min_side = A->lib.method == MOLORA_ALPHA_WW_077 ? 8 : 10;
    if (alpha_plan_alloc_matrices(P, nt)) return 1;
    for (k = 0; k < nt; k++) {
        molora_tensor_info ti;
        const char *nm;
        int b = -1, is_float;
        molora_safetensors_tensor_info(st, k, &ti);
        if ((nm = alpha_strip(ti.name, A->prefix))) b = alpha_block(S, nm, &s);
        if (ti.n_dims != 2 || b < 0 || !alpha_is_matrix_name(nm)) continue;
        is_float = ti.dtype == MOLORA_DTYPE_F32 || ti.dtype == MOLORA_DTYPE_F16 || ti.dtype == MOLORA_DTYPE_BF16;
        if (!is_float || ti.shape[0] < (uint64_t)min_side || ti.shape[1] < (uint64_t)min_side) {
            P->skip[P->n_skip++] = k;
            continue;
        }
        if (alpha_add_matrix(A, P, k, &ti, b, s)) return 1;
        if (b + 1 > nb[s]) nb[s] = b + 1;
    }
    if (P->n_mat == 0)
        return die("alpha: %s: no 2-D weight matches %s \"%s%s\"%s with both sides >= %d", A->model,
                   A->layers ? "--layers" : "the detected pattern", A->prefix, S->pat[0],
                   S->n > 1 ? " (or its second stack)" : "", min_side);
    S->first[0] = 0; S->first[1] = nb[0]; S->first[2] = nb[0] + nb[1];
    P->n_blocks = S->first[S->n];
    for (i = 0; i < P->n_mat; i++) P->mblock[i] += S->first[P->mset[i]];   /* first set first */
    return 0;
}

/* the number of weights of all the matrices (a large model shows its progress) */
static double alpha_total_weights(molora_safetensors *st, const alpha_plan *P)
{
    double total = 0;
    int i;
    for (i = 0; i < P->n_mat; i++) {
        molora_tensor_info ti;
        molora_safetensors_tensor_info(st, P->mat[i], &ti);
        total += (double)ti.shape[0] * (double)ti.shape[1];
    }
    return total;
}

/* 2. alpha of every matrix */
static int alpha_fit_all(const alpha_args *A, molora_safetensors *st, alpha_plan *P)
{
    int i, progress = alpha_total_weights(st, P) > 3e7;   /* large models: a line per matrix on stderr */
    molora_result r;
    for (i = 0; i < P->n_mat; i++) {
        molora_tensor_info ti;
        const float *w = NULL;
        int rows, cols;
        molora_safetensors_tensor_info(st, P->mat[i], &ti);
        rows = (int)ti.shape[0]; cols = (int)ti.shape[1];
        if (progress) fprintf(stderr, "alpha: [%d/%d] %s (%llu x %llu)\n", i + 1, P->n_mat, ti.name,
                              (unsigned long long)ti.shape[0], (unsigned long long)ti.shape[1]);
        g_detail[0] = 0;
        if ((r = molora_safetensors_tensor_f32(st, P->mat[i], &w)) != MOLORA_RESULT_SUCCESS) return die_lib(ti.name, r);
        if ((r = molora_alpha_matrix(w, rows, cols, &A->lib, &P->fits[i])) != MOLORA_RESULT_SUCCESS)
            return die_lib(ti.name, r);
        P->mat_alpha[i] = P->fits[i].alpha;
        if (!isfinite(P->mat_alpha[i]))
            return die("alpha: %s: the fitted tail is all equal values (alpha is infinite)", ti.name);
    }
    return 0;
}

/* the first block with no matrix (what makes the per-block mean fail), named by its set */
static int alpha_empty_block(const alpha_args *A, const alpha_sets *S, const alpha_plan *P)
{
    int i, j;
    for (i = 0; i < P->n_blocks; i++) {
        int any = 0, si = i >= S->first[1];
        for (j = 0; j < P->n_mat; j++) any |= P->mblock[j] == i;
        if (!any)
            return die("alpha: %s: layer %d of \"%s\" has no weight matrix (layers 0..%d expected)", A->model,
                       i - S->first[si], S->pat[si], S->first[si + 1] - S->first[si] - 1);
    }
    return 0;
}

/* 3. per-block mean and the allocation; NEGATIVE_EXPERTS is kept in *res (printed, then refused) */
static int alpha_allocate(const alpha_args *A, const alpha_sets *S, alpha_plan *P, molora_result *res)
{
    int nb = P->n_blocks;
    molora_result r;
    P->block_alpha = (double *)calloc((size_t)nb, sizeof *P->block_alpha);
    P->experts = (int *)calloc((size_t)nb, sizeof *P->experts);
    P->topk = (int *)calloc((size_t)nb, sizeof *P->topk);
    if (!P->block_alpha || !P->experts || !P->topk) return die("alpha: out of memory");
    g_detail[0] = 0;
    r = molora_alpha_block_mean(P->mat_alpha, P->mblock, P->n_mat, nb, P->block_alpha);
    if (r != MOLORA_RESULT_SUCCESS) return alpha_empty_block(A, S, P) || die_lib("alpha: per-layer mean", r);
    r = molora_alpha_allocate(P->block_alpha, nb, A->budget, A->beta, P->experts, P->topk);
    if (r != MOLORA_RESULT_SUCCESS && r != MOLORA_RESULT_NEGATIVE_EXPERTS) return die_lib("alpha: allocation", r);
    *res = r;
    return 0;
}

static void alpha_print_json(const alpha_args *A, const alpha_sets *S, const alpha_plan *P, molora_safetensors *st)
{
    int i;
    printf("{");
    alpha_json_sets(S);
    printf(" \"method\": \"%s\", \"upstream_fp16\": %s,\n \"matrices\": [", A->method, A->fp16 ? "true" : "false");
    for (i = 0; i < P->n_mat; i++) {
        molora_tensor_info ti;
        const molora_alpha_fit *f = &P->fits[i];
        molora_safetensors_tensor_info(st, P->mat[i], &ti);
        printf("%s\n  {\"name\": ", i ? "," : "");
        jstr(stdout, ti.name);
        printf(", \"layer\": %d, \"alpha\": %.17g, \"xmin\": %.17g, \"ks\": %.17g, \"n_eigs\": %d, \"n_tail\": %d}",
               P->mblock[i], f->alpha, f->xmin, f->ks, f->n_eigs, f->n_tail);
    }
    printf("],\n \"layers\": [");
    for (i = 0; i < P->n_blocks; i++) {
        int si = i >= S->first[1];
        printf("%s\n  {\"layer\": %d, \"set\": ", i ? "," : "", i);
        jstr(stdout, S->pat[si]);
        printf(", \"index\": %d, \"alpha\": %.17g, \"experts\": %d, \"top_k\": %d}", i - S->first[si],
               P->block_alpha[i], P->experts[i], P->topk[i]);
    }
    printf("],\n \"skipped\": [");
    for (i = 0; i < P->n_skip; i++) {
        molora_tensor_info ti;
        molora_safetensors_tensor_info(st, P->skip[i], &ti);
        printf("%s", i ? ", " : "");
        jstr(stdout, ti.name);
    }
    printf("]}\n");
}

static void alpha_print_table(const alpha_args *A, const alpha_sets *S, const alpha_plan *P, molora_safetensors *st)
{
    int i;
    alpha_print_sets(S);
    printf("%-56s %5s %13s %9s %11s %8s %6s %6s\n", "matrix", "layer", "shape", "alpha", "xmin", "ks", "n_eigs",
           "n_tail");
    for (i = 0; i < P->n_mat; i++) {
        molora_tensor_info ti;
        const molora_alpha_fit *f = &P->fits[i];
        char shape[32];
        molora_safetensors_tensor_info(st, P->mat[i], &ti);
        snprintf(shape, sizeof shape, "%llux%llu", (unsigned long long)ti.shape[0], (unsigned long long)ti.shape[1]);
        printf("%-56s %5d %13s %9.4f %11.4g %8.4f %6d %6d\n", ti.name, P->mblock[i], shape, f->alpha, f->xmin, f->ks,
               f->n_eigs, f->n_tail);
    }
    printf("\n%5s %9s %7s %5s    (method %s%s, budget %d, beta %g)\n", "layer", "alpha", "experts", "top_k", A->method,
           A->fp16 ? ", weights rounded to float16" : "", A->budget, A->beta);
    for (i = 0; i < P->n_blocks; i++) printf("%5d %9.4f %7d %5d\n", i, P->block_alpha[i], P->experts[i], P->topk[i]);
    for (i = 0; i < P->n_skip; i++) {
        molora_tensor_info ti;
        molora_safetensors_tensor_info(st, P->skip[i], &ti);
        printf("%s%s", i ? ", " : "\nskipped (a side under the method's minimum, or not float): ", ti.name);
    }
    if (P->n_skip) printf("\n");
}

static int cmd_alpha(int argc, char **argv)
{
    alpha_args A;
    alpha_sets S;
    alpha_plan P;
    molora_load_desc d;
    molora_safetensors *st = NULL;
    molora_result r, res = MOLORA_RESULT_SUCCESS;
    void *ws = NULL;
    int rc = 1;
    memset(&P, 0, sizeof P);
    if (alpha_parse(argc, argv, &A)) return 1;
    d = load_desc(A.read);
    if ((r = molora_safetensors_open(A.model, &d, &st)) != MOLORA_RESULT_SUCCESS) return die_lib(A.model, r);
    if (alpha_pick_sets(&A, st, &S) || alpha_select(&A, st, &S, &P)) goto done;
    if (P.ws_bytes && !(ws = malloc(P.ws_bytes))) {
        die("alpha: out of memory (%zu bytes of workspace)", P.ws_bytes);
        goto done;
    }
    A.lib.workspace = ws; A.lib.workspace_size = P.ws_bytes;
    if (alpha_fit_all(&A, st, &P) || alpha_allocate(&A, &S, &P, &res)) goto done;
    if (A.json) alpha_print_json(&A, &S, &P, st); else alpha_print_table(&A, &S, &P, st);
    if (res == MOLORA_RESULT_NEGATIVE_EXPERTS) {
        die("alpha: budget %d with beta %g needs a negative expert count (printed as upstream computes it)", A.budget,
            A.beta);
        goto done;
    }
    rc = 0;
done:
    alpha_plan_free(&P);
    free(ws);
    molora_safetensors_free(st);
    return rc;
}

static int run_command(int argc, char **argv)
{
    if (argc < 2) return die("usage: molora inspect|forward|compose|alpha|xlora ... (see README.md)");
    if (!strcmp(argv[1], "inspect")) return cmd_inspect(argc - 2, argv + 2);
    if (!strcmp(argv[1], "forward")) return cmd_forward(argc - 2, argv + 2);
    if (!strcmp(argv[1], "compose")) return cmd_compose(argc - 2, argv + 2);
    if (!strcmp(argv[1], "alpha")) return cmd_alpha(argc - 2, argv + 2);
    if (!strcmp(argv[1], "xlora")) return cmd_xlora(argc - 2, argv + 2);
    return die("unknown command %s (inspect, forward, compose, alpha, xlora)", argv[1]);
}
/* what inspect and alpha print must have reached stdout (a redirect to a full disk is an error) */
static int stdout_flushed(void)
{
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout))
        return die("standard output: write failed: %s", strerror(errno ? errno : EIO));
    return 0;
}
int main(int argc, char **argv)
{
    int rc;
    signal(SIGXFSZ, SIG_IGN);   /* a file-size limit makes a write fail with EFBIG, reported like any write error */
    rc = run_command(argc, argv);
    if (rc) return rc;   /* its one line is out; a stdout error would be a second */
    return stdout_flushed();
}

"""The C source templates of `irc build`'s library (irc/build.py fills them in).

C_RUNTIME is the model-independent part of <model>_api.c: the thread-local last
error, contexts, argument-length checks, the .npz reader and writer behind
_load_weights/_save_weights. C_CBLAS / C_CBLAS_ONE glue the model's gemm calls to
a CBLAS found at link time; C_OWN_GEMM is the --no-blas fallback. Placeholders:
@M the model name, @U its upper case, @X the BLAS prefix (s/d), @T the C element
type, @GEMMS the per-type gemm functions, @EXTERNS the model's declarations.

Text only: imports nothing.
"""

C_RUNTIME = r"""
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HIDDEN __attribute__((visibility("hidden")))
#define ALIGNED(p) ((void *)(((uintptr_t)(p) + 63) & ~(uintptr_t)63))

/* The only mutable state outside contexts: this thread's last error. */
static _Thread_local char last_error[512];

const char *irc_@M_last_error(void) { return last_error; }

static int fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return code;
}

/* a * b into *out; 0 on overflow or a negative factor */
static int mul_size(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0) return 0;
    if (a != 0 && b > INT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

typedef struct {
    const char *name, *type, *descr;
    int ndim;
    int64_t shape[8];
    int64_t count;
    int64_t itemsize;
    const unsigned char *init;
} global_info;

@EXTERNS

struct irc_@M {
    void *g[NG > 0 ? NG : 1];      /* the shared variables, 64-aligned */
    void *g_raw[NG > 0 ? NG : 1];
    void *ws[NF > 0 ? NF : 1];     /* one workspace per entry function */
    void *ws_raw[NF > 0 ? NF : 1];
    int64_t ws_size[NF > 0 ? NF : 1];
    int64_t run_ctx[4];           /* the generated code's ctx: {nthreads} */
};

irc_@M *irc_@M_new(void) {
    last_error[0] = 0;
    irc_@M *c = calloc(1, sizeof *c);
    if (!c) { fail(IRC_@U_ENOMEM, "irc_@M_new: out of memory"); return NULL; }
    c->run_ctx[0] = 1;
    for (int k = 0; k < NG; k++) {
        int64_t bytes = GLOBALS[k].count * GLOBALS[k].itemsize;
        c->g_raw[k] = malloc((size_t)bytes + 64);
        if (!c->g_raw[k]) {
            irc_@M_free(c);
            fail(IRC_@U_ENOMEM, "irc_@M_new: out of memory");
            return NULL;
        }
        c->g[k] = ALIGNED(c->g_raw[k]);
        memcpy(c->g[k], GLOBALS[k].init, (size_t)bytes);
    }
    return c;
}

void irc_@M_free(irc_@M *c) {
    if (!c) return;
    for (int k = 0; k < NG; k++) free(c->g_raw[k]);
    for (int k = 0; k < NF; k++) free(c->ws_raw[k]);
    free(c);
}

int irc_@M_set_threads(irc_@M *c, int n) {
    last_error[0] = 0;
    if (!c) return fail(IRC_@U_EARG, "irc_@M_set_threads: ctx is NULL");
    if (n < 1) return fail(IRC_@U_EARG, "irc_@M_set_threads: n must be >= 1, got %d", n);
    c->run_ctx[0] = n;
    return IRC_@U_OK;
}

/* the workspace of entry k, grown to `need` bytes */
static int workspace(irc_@M *c, int k, int64_t need, const char *fn) {
    if (need <= c->ws_size[k]) return IRC_@U_OK;
    if (need < 0) return fail(IRC_@U_EARG, "%s: the dims are too large", fn);
    void *raw = malloc((size_t)need + 64);
    if (!raw) return fail(IRC_@U_ENOMEM, "%s: out of memory (workspace of %lld bytes)", fn, (long long)need);
    free(c->ws_raw[k]);
    c->ws_raw[k] = raw;
    c->ws[k] = ALIGNED(raw);
    c->ws_size[k] = need;
    return IRC_@U_OK;
}

__attribute__((unused)) static int get_global(const irc_@M *c, int k, void *dst, int64_t n, const char *fn) {
    last_error[0] = 0;
    if (!c) return fail(IRC_@U_EARG, "%s: ctx is NULL", fn);
    if (n != GLOBALS[k].count)
        return fail(IRC_@U_EARG, "%s: '%s' is %s = %lld elements, got n = %lld", fn, GLOBALS[k].name,
                    GLOBALS[k].type, (long long)GLOBALS[k].count, (long long)n);
    if (!dst && n) return fail(IRC_@U_EARG, "%s: the buffer is NULL", fn);
    if (n) memcpy(dst, c->g[k], (size_t)(n * GLOBALS[k].itemsize));
    return IRC_@U_OK;
}

__attribute__((unused)) static int set_global(irc_@M *c, int k, const void *src, int64_t n, const char *fn) {
    last_error[0] = 0;
    if (!c) return fail(IRC_@U_EARG, "%s: ctx is NULL", fn);
    if (n != GLOBALS[k].count)
        return fail(IRC_@U_EARG, "%s: '%s' is %s = %lld elements, got n = %lld", fn, GLOBALS[k].name,
                    GLOBALS[k].type, (long long)GLOBALS[k].count, (long long)n);
    if (!src && n) return fail(IRC_@U_EARG, "%s: the buffer is NULL", fn);
    if (n) memcpy(c->g[k], src, (size_t)(n * GLOBALS[k].itemsize));
    return IRC_@U_OK;
}

/* -- the .npz reader: a zip of stored (uncompressed) .npy files, as numpy.savez
   writes them (with zip64 extra fields); compressed entries are refused. -- */

static uint64_t rd16(const unsigned char *p) { return (uint64_t)p[0] | (uint64_t)p[1] << 8; }
static uint64_t rd32(const unsigned char *p) { return rd16(p) | rd16(p + 2) << 16; }
static uint64_t rd64(const unsigned char *p) { return rd32(p) | rd32(p + 4) << 32; }

static int read_at(FILE *f, uint64_t off, void *buf, size_t n) {
    if (fseek(f, (long)off, SEEK_SET) != 0) return 0;
    return fread(buf, 1, n, f) == n;
}

/* the .npy header at the start of an entry: check dtype, order and shape against
   global k; *data_off = where the array data starts within the entry */
static int check_npy(const unsigned char *h, size_t avail, int k, uint64_t *data_off, const char *path) {
    const global_info *gi = &GLOBALS[k];
    if (avail < 10 || memcmp(h, "\x93NUMPY", 6) != 0)
        return fail(IRC_@U_EIO, "%s: '%s' is not an .npy array", path, gi->name);
    uint64_t hl, start;
    if (h[6] == 1) { hl = rd16(h + 8); start = 10; }
    else if (h[6] == 2 || h[6] == 3) { if (avail < 12) return fail(IRC_@U_EIO, "%s: bad .npy header", path); hl = rd32(h + 8); start = 12; }
    else return fail(IRC_@U_EIO, "%s: '%s': unknown .npy version %d", path, gi->name, h[6]);
    if (start + hl > avail) return fail(IRC_@U_EIO, "%s: '%s': .npy header too long", path, gi->name);
    char dict[1024];
    size_t n = hl < sizeof dict - 1 ? (size_t)hl : sizeof dict - 1;
    memcpy(dict, h + start, n);
    dict[n] = 0;
    char want[64];
    snprintf(want, sizeof want, "'descr': '%s'", gi->descr);
    if (!strstr(dict, want)) {
        const char *d = strstr(dict, "'descr':");
        return fail(IRC_@U_EIO, "%s: '%s' must be %s (dtype %s), the file has %.20s", path, gi->name,
                    gi->type, gi->descr, d ? d + 9 : "?");
    }
    if (!strstr(dict, "'fortran_order': False"))
        return fail(IRC_@U_EIO, "%s: '%s' is stored in Fortran order", path, gi->name);
    const char *s = strstr(dict, "'shape': (");
    if (!s) return fail(IRC_@U_EIO, "%s: '%s': no shape in the .npy header", path, gi->name);
    s += 10;
    int nd = 0;
    int64_t shape[8];
    while (*s && *s != ')') {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s || nd == 8) return fail(IRC_@U_EIO, "%s: '%s': bad shape", path, gi->name);
        shape[nd++] = v;
        s = end;
    }
    int same = nd == gi->ndim;
    for (int i = 0; same && i < nd; i++) same = shape[i] == gi->shape[i];
    if (!same) {
        char got[128] = "";
        size_t used = 0;
        for (int i = 0; i < nd && used < sizeof got - 24; i++)
            used += (size_t)snprintf(got + used, sizeof got - used, i ? ", %lld" : "%lld", (long long)shape[i]);
        return fail(IRC_@U_EIO, "%s: '%s' must be %s, the file has shape [%s]", path, gi->name, gi->type, got);
    }
    *data_off = start + hl;
    return IRC_@U_OK;
}

int irc_@M_load_weights(irc_@M *c, const char *path) {
    last_error[0] = 0;
    if (!c || !path) return fail(IRC_@U_EARG, "irc_@M_load_weights: ctx or path is NULL");
    FILE *f = fopen(path, "rb");
    if (!f) return fail(IRC_@U_EIO, "%s: cannot open", path);
    void *tmp[NG > 0 ? NG : 1] = {0};
    int rc = IRC_@U_OK;
    unsigned char *tail = NULL;
    /* 1. the end of central directory record (and its zip64 version) */
    if (fseek(f, 0, SEEK_END) != 0) { rc = fail(IRC_@U_EIO, "%s: cannot seek", path); goto done; }
    long size = ftell(f);
    long tn = size < 65557 ? size : 65557;
    tail = malloc((size_t)tn + 1);
    if (!tail) { rc = fail(IRC_@U_ENOMEM, "%s: out of memory", path); goto done; }
    if (size < 22 || !read_at(f, (uint64_t)(size - tn), tail, (size_t)tn)) {
        rc = fail(IRC_@U_EIO, "%s: not an .npz (zip) file", path); goto done;
    }
    long e = tn - 22;
    while (e >= 0 && rd32(tail + e) != 0x06054b50) e--;
    if (e < 0) { rc = fail(IRC_@U_EIO, "%s: not an .npz (zip) file", path); goto done; }
    uint64_t n_entries = rd16(tail + e + 10), cd_off = rd32(tail + e + 16);
    if (n_entries == 0xFFFF || cd_off == 0xFFFFFFFF) {
        unsigned char loc[20], z64[56];
        uint64_t eocd = (uint64_t)(size - tn + e);
        if (eocd < 20 || !read_at(f, eocd - 20, loc, 20) || rd32(loc) != 0x07064b50 ||
            !read_at(f, rd64(loc + 8), z64, 56) || rd32(z64) != 0x06064b50) {
            rc = fail(IRC_@U_EIO, "%s: bad zip64 directory", path); goto done;
        }
        n_entries = rd64(z64 + 32);
        cd_off = rd64(z64 + 48);
    }
    /* 2. each central directory entry: NAME.npy -> a shared variable */
    int found[NG > 0 ? NG : 1] = {0};
    uint64_t off = cd_off;
    for (uint64_t i = 0; i < n_entries; i++) {
        unsigned char h[46];
        char name[256];
        if (!read_at(f, off, h, 46) || rd32(h) != 0x02014b50) {
            rc = fail(IRC_@U_EIO, "%s: bad zip directory", path); goto done;
        }
        uint64_t method = rd16(h + 10), csize = rd32(h + 20), usize = rd32(h + 24);
        uint64_t nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32), loff = rd32(h + 42);
        if (nlen >= sizeof name || !read_at(f, off + 46, name, (size_t)nlen)) {
            rc = fail(IRC_@U_EIO, "%s: bad zip entry name", path); goto done;
        }
        name[nlen] = 0;
        /* zip64 extra field: the 0xFFFFFFFF fields, in order */
        unsigned char x[256];
        size_t xl = xlen < sizeof x ? (size_t)xlen : sizeof x;
        if (xl && !read_at(f, off + 46 + nlen, x, xl)) { rc = fail(IRC_@U_EIO, "%s: bad zip entry", path); goto done; }
        for (size_t p = 0; p + 4 <= xl;) {
            uint64_t id = rd16(x + p), len = rd16(x + p + 2);
            if (id == 1) {
                size_t q = p + 4;
                if (usize == 0xFFFFFFFF && q + 8 <= xl) { usize = rd64(x + q); q += 8; }
                if (csize == 0xFFFFFFFF && q + 8 <= xl) { csize = rd64(x + q); q += 8; }
                if (loff == 0xFFFFFFFF && q + 8 <= xl) { loff = rd64(x + q); q += 8; }
            }
            p += 4 + (size_t)len;
        }
        off += 46 + nlen + xlen + clen;
        size_t L = strlen(name);
        if (L < 5 || strcmp(name + L - 4, ".npy") != 0) continue;
        name[L - 4] = 0;
        int k = -1;
        for (int j = 0; j < NG; j++)
            if (strcmp(GLOBALS[j].name, name) == 0) k = j;
        if (k < 0) continue; /* not a shared variable of this model */
        if (method != 0) {
            rc = fail(IRC_@U_EIO, "%s: '%s' is compressed; save with numpy.savez (irc train --save does)", path, name);
            goto done;
        }
        unsigned char lh[30];
        if (!read_at(f, loff, lh, 30) || rd32(lh) != 0x04034b50) {
            rc = fail(IRC_@U_EIO, "%s: bad zip entry '%s'", path, name); goto done;
        }
        uint64_t data = loff + 30 + rd16(lh + 26) + rd16(lh + 28);
        unsigned char npy[1100];
        size_t avail = usize < sizeof npy ? (size_t)usize : sizeof npy;
        uint64_t doff = 0;
        if (!read_at(f, data, npy, avail)) { rc = fail(IRC_@U_EIO, "%s: '%s' is truncated", path, name); goto done; }
        if ((rc = check_npy(npy, avail, k, &doff, path)) != IRC_@U_OK) goto done;
        int64_t bytes = GLOBALS[k].count * GLOBALS[k].itemsize;
        if (usize != doff + (uint64_t)bytes) {
            rc = fail(IRC_@U_EIO, "%s: '%s' has %llu data bytes, expected %lld", path, name,
                      (unsigned long long)(usize - doff), (long long)bytes);
            goto done;
        }
        free(tmp[k]);
        tmp[k] = malloc((size_t)bytes + 1);
        if (!tmp[k]) { rc = fail(IRC_@U_ENOMEM, "%s: out of memory", path); goto done; }
        if (bytes && !read_at(f, data + doff, tmp[k], (size_t)bytes)) {
            rc = fail(IRC_@U_EIO, "%s: '%s' is truncated", path, name); goto done;
        }
        found[k] = 1;
    }
    for (int k = 0; k < NG; k++)
        if (!found[k]) { rc = fail(IRC_@U_EIO, "%s has no value for shared variable '%s'", path, GLOBALS[k].name); goto done; }
    /* 3. every variable read and checked: only now change the context */
    for (int k = 0; k < NG; k++)
        memcpy(c->g[k], tmp[k], (size_t)(GLOBALS[k].count * GLOBALS[k].itemsize));
done:
    for (int k = 0; k < NG; k++) free(tmp[k]);
    free(tail);
    fclose(f);
    return rc;
}

/* -- the .npz writer: every shared variable as NAME.npy, stored (uncompressed)
   zip entries, written to PATH.tmp and renamed into place. -- */

static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n--) crc = CRC_TABLE[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static void put16(unsigned char *p, uint64_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint64_t v) { put16(p, v & 0xFFFF); put16(p + 2, (v >> 16) & 0xFFFF); }

/* the .npy header of global k (version 1.0, padded to a multiple of 64 bytes) */
static size_t npy_header(int k, unsigned char *out) {
    const global_info *gi = &GLOBALS[k];
    char dict[512], shape[256] = "";
    size_t used = 0;
    for (int i = 0; i < gi->ndim; i++)
        used += (size_t)snprintf(shape + used, sizeof shape - used, "%lld, ", (long long)gi->shape[i]);
    if (gi->ndim > 1) shape[used - 2] = 0; /* (a, b) but (a,) */
    else if (gi->ndim == 1) shape[used - 1] = 0;
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                     gi->descr, shape);
    size_t total = 10 + (size_t)n + 1;
    size_t padded = (total + 63) / 64 * 64;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    put16(out + 8, padded - 10);
    memcpy(out + 10, dict, (size_t)n);
    memset(out + 10 + n, ' ', padded - total);
    out[padded - 1] = '\n';
    return padded;
}

int irc_@M_save_weights(const irc_@M *c, const char *path) {
    last_error[0] = 0;
    if (!c || !path) return fail(IRC_@U_EARG, "irc_@M_save_weights: ctx or path is NULL");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) return fail(IRC_@U_ENOMEM, "irc_@M_save_weights: out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int rc = fail(IRC_@U_EIO, "%s: cannot write", tmp);
        free(tmp);
        return rc;
    }
    int ok = 1;
    uint64_t off = 0, offsets[NG > 0 ? NG : 1], sizes[NG > 0 ? NG : 1];
    uint32_t crcs[NG > 0 ? NG : 1];
    unsigned char head[600], lh[30];
    for (int k = 0; k < NG && ok; k++) {
        size_t hn = npy_header(k, head);
        uint64_t bytes = (uint64_t)(GLOBALS[k].count * GLOBALS[k].itemsize);
        sizes[k] = hn + bytes;
        crcs[k] = crc32_update(crc32_update(0, head, hn), c->g[k], (size_t)bytes);
        size_t nlen = strlen(GLOBALS[k].name) + 4;
        if (sizes[k] >= 0xFFFFFFFFu || off + 30 + nlen + sizes[k] >= 0xFFFFFFFFu) { ok = 0; break; }
        memset(lh, 0, sizeof lh);
        put32(lh, 0x04034b50);
        put16(lh + 4, 20);
        put32(lh + 14, crcs[k]);
        put32(lh + 18, sizes[k]);
        put32(lh + 22, sizes[k]);
        put16(lh + 26, nlen);
        offsets[k] = off;
        ok = fwrite(lh, 1, 30, f) == 30 && fwrite(GLOBALS[k].name, 1, nlen - 4, f) == nlen - 4 &&
             fwrite(".npy", 1, 4, f) == 4 && fwrite(head, 1, hn, f) == hn &&
             fwrite(c->g[k], 1, (size_t)bytes, f) == (size_t)bytes;
        off += 30 + nlen + sizes[k];
    }
    uint64_t cd = off;
    for (int k = 0; k < NG && ok; k++) {
        unsigned char ch[46] = {0};
        size_t nlen = strlen(GLOBALS[k].name) + 4;
        put32(ch, 0x02014b50);
        put16(ch + 4, 20);
        put16(ch + 6, 20);
        put32(ch + 16, crcs[k]);
        put32(ch + 20, sizes[k]);
        put32(ch + 24, sizes[k]);
        put16(ch + 28, nlen);
        put32(ch + 42, offsets[k]);
        ok = fwrite(ch, 1, 46, f) == 46 && fwrite(GLOBALS[k].name, 1, nlen - 4, f) == nlen - 4 &&
             fwrite(".npy", 1, 4, f) == 4;
        off += 46 + nlen;
    }
    unsigned char e[22] = {0};
    put32(e, 0x06054b50);
    put16(e + 8, NG);
    put16(e + 10, NG);
    put32(e + 12, off - cd);
    put32(e + 16, cd);
    ok = ok && fwrite(e, 1, 22, f) == 22;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        int rc = fail(IRC_@U_EIO, "%s: cannot write (disk full, or over 4 GB)", path);
        free(tmp);
        return rc;
    }
    free(tmp);
    return IRC_@U_OK;
}
"""

C_CBLAS = r"""
/* Matrix products: the CBLAS found at link time (OpenBLAS, BLIS, MKL, Accelerate...). */
enum { CblasRowMajor = 101 };
void cblas_sgemm(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                 float *, int);
void cblas_dgemm(int, int, int, int, int, int, double, const double *, int, const double *, int,
                 double, double *, int);
@GEMMS
"""

C_CBLAS_ONE = r"""
HIDDEN void irc_@M__@Xgemm(int order, int ta, int tb, int m, int n, int k, @T alpha, const @T *a,
                          int lda, const @T *b, int ldb, @T beta, @T *c, int ldc) {
    cblas_@Xgemm(order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
"""

C_OWN_GEMM = r"""
/* --no-blas: irc's own blocked GEMM (row-major; ta/tb: 111 no, 112 transposed). A panel
   of B (KB x NB) is packed row-major so the inner loop runs over contiguous memory. */
#define KB 128
#define NB 512
HIDDEN void irc_@M__@Xgemm(int order, int ta, int tb, int m, int n, int k, @T alpha, const @T *a,
                          int lda, const @T *b, int ldb, @T beta, @T *c, int ldc) {
    (void)order;
    for (int i = 0; i < m; i++) {
        @T *ci = c + (int64_t)i * ldc;
        if (beta == 0) for (int j = 0; j < n; j++) ci[j] = 0;
        else if (beta != 1) for (int j = 0; j < n; j++) ci[j] *= beta;
    }
    @T *panel = malloc(sizeof(@T) * KB * NB);
    for (int j0 = 0; j0 < n; j0 += NB) {
        int nb = n - j0 < NB ? n - j0 : NB;
        for (int k0 = 0; k0 < k; k0 += KB) {
            int kb = k - k0 < KB ? k - k0 : KB;
            const @T *bp;
            int ldp;
            if (tb == 111 && !panel) { bp = b + (int64_t)k0 * ldb + j0; ldp = ldb; }
            else if (!panel) { bp = NULL; ldp = 0; }
            else {
                for (int kk = 0; kk < kb; kk++)
                    for (int j = 0; j < nb; j++)
                        panel[kk * NB + j] = tb == 111 ? b[(int64_t)(k0 + kk) * ldb + j0 + j]
                                                       : b[(int64_t)(j0 + j) * ldb + k0 + kk];
                bp = panel; ldp = NB;
            }
            for (int i = 0; i < m; i++) {
                @T *ci = c + (int64_t)i * ldc + j0;
                for (int kk = 0; kk < kb; kk++) {
                    @T av = alpha * (ta == 111 ? a[(int64_t)i * lda + k0 + kk] : a[(int64_t)(k0 + kk) * lda + i]);
                    if (bp) {
                        const @T *bk = bp + (int64_t)kk * ldp;
                        for (int j = 0; j < nb; j++) ci[j] += av * bk[j];
                    } else { /* out of memory and B transposed: unpacked */
                        for (int j = 0; j < nb; j++) ci[j] += av * b[(int64_t)(j0 + j) * ldb + k0 + kk];
                    }
                }
            }
        }
    }
    free(panel);
}
#undef KB
#undef NB
"""

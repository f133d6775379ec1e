"""`irc build`: a `.tg` model as a C library (no Python at run time).

    irc build FILE.tg [-D NAME=VALUE ...] [--fn NAME ...] [--weights CKPT.npz]
              [--target TRIPLE] [--cpu NAME] [--static] [--no-blas] [--blas FLAGS]
              [--cc CC] [--name NAME] [--seed N] -o DIR

writes into DIR:

    <model>.h        the C API (below)
    <model>_api.c    the C part of the library: contexts, argument checks, the
                     .npz reader of _load_weights, the BLAS glue (its source, so a
                     cross build can finish it with its own compiler)
    <model>.o        the model's object code (runtime/llvm/aot.py: the JIT's own
                     code generator, for the target), with --static: the whole
                     library as one relocatable object
    lib<model>.so    the shared library (host target, or with --cc)
    lib<model>.a     with --static
    README           the API of this model, generated

The API, for a model `m` (the file's stem) with an entry function
`fn train(x: f32[N, 64], y: i32[N], lr: f32 = 0.1) -> f32`:

    irc_m *irc_m_new(void);  void irc_m_free(irc_m *);
    int irc_m_train(irc_m *ctx, int64_t N, const float *x, int64_t x_len,
                    const int32_t *y, int64_t y_len, float lr, float *out0);
    int irc_m_load_weights(irc_m *ctx, const char *path);   /* irc train --save */
    int irc_m_save_weights(const irc_m *ctx, const char *path);
    int irc_m_get_W1(const irc_m *ctx, float *dst, int64_t n);  and _set_W1
    int irc_m_set_threads(irc_m *ctx, int n);
    const char *irc_m_last_error(void);

Named dims are integer parameters; every tensor argument comes with its length
in elements, checked against its type before any code runs (a mismatch returns
IRC_M_EARG and a message in irc_m_last_error(), a thread-local). A context holds
the shared variables and the workspaces; separate contexts may be used from
separate threads at the same time. The only state shared between contexts is
irc's thread pool (runtime/llvm/threads.py), used when a context's thread
count is above 1 (the default is 1); it takes callers one at a time and a
concurrent caller runs its own tasks.

Sits at the top of the layering with irc/commands.py: may import anything, but
only the standard library at module level (the CLI declares every command's
arguments at start-up).
"""

from __future__ import annotations

import ctypes.util
import keyword
import os
import re
import shutil
import subprocess
import sys
import tempfile

CTYPE = {"f32": "float", "f64": "double", "i32": "int32_t", "i64": "int64_t", "bool": "uint8_t"}
DESCR = {"f32": "<f4", "f64": "<f8", "i32": "<i4", "i64": "<i8", "bool": "|b1"}
ITEMSIZE = {"f32": 4, "f64": 8, "i32": 4, "i64": 8, "bool": 1}
C_KEYWORDS = {
    "auto",
    "break",
    "case",
    "char",
    "const",
    "continue",
    "default",
    "do",
    "double",
    "else",
    "enum",
    "extern",
    "float",
    "for",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "register",
    "restrict",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "struct",
    "switch",
    "typedef",
    "union",
    "unsigned",
    "void",
    "volatile",
    "while",
    "ctx",
    "n",
    "bool",
    "int64_t",
    "int32_t",
}
MAX_DIM = 1 << 31  # named dims are checked to be in [0, MAX_DIM): products of two stay in int64


class BuildError(Exception):
    """A mistake in the request (unknown function, bad weights, no compiler...)."""


# -- what the C part needs to know ------------------------------------------------------------


class Arg:
    def __init__(self, name, type_, is_out):
        self.name = name
        self.type = type_
        self.dtype = type_.dtype.name
        self.shape = tuple(type_.shape)
        self.is_out = is_out
        self.scalar = len(self.shape) == 0


class Entry:
    def __init__(self, op, index):
        self.name = op.attrs["sym_name"]
        self.index = index
        self.dims = list(op.attrs.get("dims", ()))
        block = op.regions[0].block
        n_in = op.attrs["n_inputs"]
        self.args = []
        used = set(self.dims)
        for k, a in enumerate(block.args):
            is_out = k >= n_in
            name = a.name_hint or (f"out{k - n_in}" if is_out else f"arg{k}")
            name = re.sub(r"\W", "_", name)
            if (
                name in C_KEYWORDS
                or name in used
                or keyword.iskeyword(name)
                or name.endswith("_len")
            ):
                name = f"arg_{name}"
            used.add(name)
            self.args.append(Arg(name, a.type, is_out))
        self.inputs = [a for a in self.args if not a.is_out]
        self.outputs = [a for a in self.args if a.is_out]
        self.messages = []


def model_name(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    name = re.sub(r"\W", "_", stem)
    if not name or name[0].isdigit():
        name = "m_" + name
    return name


def _c_dim(d) -> str:
    """A dim (int, name, or an expression of names) as a C int64 expression."""
    if isinstance(d, int):
        return f"INT64_C({d})"
    from irc.ir.dims import dim_tree  # irc's own dim parser (a dim may be named `class`)

    def conv(t):
        kind = t[0]
        if kind == "int":
            return f"INT64_C({t[1]})"
        if kind == "name":
            return f"d_{t[1]}"
        if kind == "neg":
            return f"(-{conv(t[1])})"
        # dims are never negative, so C's truncating division is the floor division
        op = "/" if kind == "//" else kind
        return f"({conv(t[1])} {op} {conv(t[2])})"

    try:
        return conv(dim_tree(d))
    except ValueError:
        raise BuildError(f"dim expression '{d}' is not supported by irc build") from None


def _type_text(a: Arg) -> str:
    return f"{a.dtype}[{', '.join(map(str, a.shape))}]" if a.shape else a.dtype


def _params(e: Entry) -> list:
    out = [f"int64_t {d}" for d in e.dims]
    for a in e.args:
        ct = CTYPE[a.dtype]
        if a.is_out:
            out.append(f"{ct} *{a.name}" if a.scalar else f"{ct} *{a.name}, int64_t {a.name}_len")
        elif a.scalar:
            out.append(f"{ct} {a.name}")
        else:
            out.append(f"const {ct} *{a.name}, int64_t {a.name}_len")
    return out


# -- the header ---------------------------------------------------------------------------------


def header_text(model, source, entries, globals_, signatures) -> str:
    M = model.upper()
    lines = [
        f"/* {model}.h: the C API of the irc model {os.path.basename(source)}.",
        "   Generated by `irc build`; see README next to this file. */",
        f"#ifndef IRC_{M}_H",
        f"#define IRC_{M}_H",
        "",
        "#include <stdint.h>",
        "",
        "#if defined(__GNUC__) || defined(__clang__)",
        f'#define IRC_{M}_API __attribute__((visibility("default")))',
        "#else",
        f"#define IRC_{M}_API",
        "#endif",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        "/* A context: the shared variables and the workspaces of one model instance.",
        "   Use one context from one thread at a time; separate contexts are independent. */",
        f"typedef struct irc_{model} irc_{model};",
        "",
        "/* Return codes of every int function. */",
        f"#define IRC_{M}_OK 0",
        f"#define IRC_{M}_EARG 1      /* a wrong argument: a size, a dim, a NULL pointer */",
        f"#define IRC_{M}_ERUNTIME 2  /* a run-time check of the model failed (an index out of range) */",
        f"#define IRC_{M}_ENOMEM 3    /* out of memory */",
        f"#define IRC_{M}_EIO 4       /* load_weights: the file cannot be read or does not fit */",
        "",
        "/* A new context with the shared variables at their initial values (the",
        "   values of --weights if given at build time); NULL when out of memory. */",
        f"IRC_{M}_API irc_{model} *irc_{model}_new(void);",
        f"IRC_{M}_API void irc_{model}_free(irc_{model} *ctx);",
        '/* The message of this thread\'s last failed call ("" after a success). */',
        f"IRC_{M}_API const char *irc_{model}_last_error(void);",
        "/* Read every shared variable from an .npz checkpoint (`irc train --save`,",
        "   CompiledModule.save, numpy.savez); nothing changes when it fails. */",
        f"IRC_{M}_API int irc_{model}_load_weights(irc_{model} *ctx, const char *path);",
        "/* Write every shared variable to an .npz (numpy.load, CompiledModule.restore and",
        "   load_weights read it), through PATH.tmp renamed into place. */",
        f"IRC_{M}_API int irc_{model}_save_weights(const irc_{model} *ctx, const char *path);",
        "/* Threads of parallel loops and products for calls on this context (default 1). */",
        f"IRC_{M}_API int irc_{model}_set_threads(irc_{model} *ctx, int n);",
        "",
        "/* Shared variables: copy out (get) or in (set) n elements, n == the _SIZE. */",
    ]
    for g in globals_:
        ct = CTYPE[g["dtype"]]
        lines.append(f"#define IRC_{M}_{g['cname'].upper()}_SIZE {g['count']}  /* {g['type']} */")
        lines.append(
            f"IRC_{M}_API int irc_{model}_get_{g['cname']}(const irc_{model} *ctx, {ct} *dst, "
            "int64_t n);"
        )
        lines.append(
            f"IRC_{M}_API int irc_{model}_set_{g['cname']}(irc_{model} *ctx, const {ct} *src, "
            "int64_t n);"
        )
    lines.append("")
    lines.append("/* Entry functions: the named dims, then each argument (a tensor: a pointer")
    lines.append("   and its length in elements), then the results (the caller allocates).")
    lines.append("   Results must not overlap the arguments. */")
    for e in entries:
        lines.append(f"/* {signatures[e.name]} */")
        lines.append(
            f"IRC_{M}_API int irc_{model}_{e.name}(irc_{model} *ctx"
            + "".join(", " + p for p in _params(e))
            + ");"
        )
    lines += ["", "#ifdef __cplusplus", "}", "#endif", f"#endif /* IRC_{M}_H */", ""]
    return "\n".join(lines)


# -- the C part ---------------------------------------------------------------------------------

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


def _crc_table() -> list:
    """The CRC-32 (zip) table, emitted as read-only data: no run-time initialisation."""
    out = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if c & 1 else (c >> 1)
        out.append(c)
    return out


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def api_source(model, entries, globals_, uses_blas, no_blas) -> str:
    M, U = model, model.upper()
    ext = []
    ext.append(f'#include "{model}.h"')
    ext.append("")
    ext.append(f"#define NG {len(globals_)}")
    ext.append(f"#define NF {len(entries)}")
    for k in range(len(globals_)):
        ext.append(f"extern HIDDEN const unsigned char irc_{M}__init_{k}[];")
    for e in entries:
        ext.append(
            f"extern HIDDEN int32_t irc_{M}__fn_{e.name}(void **bufs, const int64_t *dims, void *ws, "
            f"int64_t *ctx);"
        )
        ext.append(f"extern HIDDEN int64_t irc_{M}__ws_{e.name}(const int64_t *dims);")
    ext.append("static const global_info GLOBALS[NG > 0 ? NG : 1] = {")
    for k, g in enumerate(globals_):
        shape = ", ".join(str(s) for s in g["shape"]) or "0"
        ext.append(
            f"    {{{_c_string(g['name'])}, {_c_string(g['type'])}, {_c_string(g['descr'])}, "
            f"{len(g['shape'])}, {{{shape}}}, {g['count']}, {g['itemsize']}, irc_{M}__init_{k}}},"
        )
    if not globals_:
        ext.append("    {0}")
    ext.append("};")
    ext.append(
        "static const uint32_t CRC_TABLE[256] = {"
        + ", ".join(f"0x{v:08x}u" for v in _crc_table())
        + "};"
    )
    src = C_RUNTIME.replace("@EXTERNS", "\n".join(ext))
    out = [
        "/* The C part of the irc model library (generated by `irc build`). */",
        "#include <stdint.h>",
        src,
    ]
    # BLAS
    gemms = []
    for x, t in (("s", "float"), ("d", "double")):
        if f"{x}gemm" in uses_blas:
            gemms.append((C_OWN_GEMM if no_blas else C_CBLAS_ONE).replace("@X", x).replace("@T", t))
    if gemms:
        out.append(("\n".join(gemms)) if no_blas else C_CBLAS.replace("@GEMMS", "\n".join(gemms)))
    # shared variable accessors
    for k, g in enumerate(globals_):
        ct = CTYPE[g["dtype"]]
        cn = g["cname"]
        out.append(
            f"int irc_@M_get_{cn}(const irc_@M *c, {ct} *dst, int64_t n) "
            f'{{ return get_global(c, {k}, dst, n, "irc_@M_get_{cn}"); }}'
        )
        out.append(
            f"int irc_@M_set_{cn}(irc_@M *c, const {ct} *src, int64_t n) "
            f'{{ return set_global(c, {k}, src, n, "irc_@M_set_{cn}"); }}'
        )
    # entries
    for e in entries:
        out.append(_entry_source(model, e, len(globals_)))
    text = "\n".join(out)
    return text.replace("@M", M).replace("@U", U)


def _entry_source(model, e: Entry, n_globals) -> str:
    fn = f"irc_{model}_{e.name}"
    L = [f"static const char *const MSG_{e.name}[] = {{"]
    L += [f"    {_c_string(m)}," for m in e.messages] or ['    "",']
    L.append("};")
    L.append(f"int {fn}(irc_@M *ctx" + "".join(", " + p for p in _params(e)) + ") {")
    L.append("    last_error[0] = 0;")
    L.append(f'    if (!ctx) return fail(IRC_@U_EARG, "{fn}: ctx is NULL");')
    nd = max(1, len(e.dims))
    for d in e.dims:
        L.append(f"    if ({d} < 0 || {d} >= INT64_C({MAX_DIM}))")
        L.append(
            f'        return fail(IRC_@U_EARG, "{fn}: the dim {d} = %lld is out of range [0, {MAX_DIM})", '
            f"(long long){d});"
        )
        L.append(f"    const int64_t d_{d} = {d};")
    L.append(
        f"    int64_t dims[{nd}] = {{"
        + ", ".join(f"d_{d}" for d in e.dims)
        + ("0" if not e.dims else "")
        + "};"
    )
    L.append("    int64_t n;")
    for a in e.args:
        if a.scalar:
            if a.is_out:
                L.append(
                    f'    if (!{a.name}) return fail(IRC_@U_EARG, "{fn}: the result {a.name} is NULL");'
                )
            continue
        L.append("    n = 1;")
        for d in a.shape:
            L.append(f"    if (!mul_size(n, {_c_dim(d)}, &n))")
            L.append(
                f'        return fail(IRC_@U_EARG, "{fn}: the size of {a.name} ({_type_text(a)}) '
                f'is out of range");'
            )
        dimvals = "".join(f", {d} = %lld" for d in e.dims)
        dimargs = "".join(f", (long long){d}" for d in e.dims)
        what = "the result" if a.is_out else "the argument"
        L.append(f"    if ({a.name}_len != n)")
        L.append(
            f'        return fail(IRC_@U_EARG, "{fn}: {what} {a.name} is {_type_text(a)} = %lld '
            f'elements{dimvals}; got {a.name}_len = %lld", (long long)n{dimargs}, '
            f"(long long){a.name}_len);"
        )
        L.append(f'    if (!{a.name} && n) return fail(IRC_@U_EARG, "{fn}: {a.name} is NULL");')
    bufs = []
    for a in e.args:
        if a.scalar and not a.is_out:
            bufs.append(f"(void *)&{a.name}")
        else:
            bufs.append(f"(void *){a.name}")
    bufs += [f"ctx->g[{k}]" for k in range(n_globals)]
    L.append(f"    void *bufs[{max(1, len(bufs))}] = {{{', '.join(bufs) or '0'}}};")
    L.append(f'    int rc = workspace(ctx, {e.index}, irc_@M__ws_{e.name}(dims), "{fn}");')
    L.append("    if (rc) return rc;")
    L.append(f"    int32_t r = irc_@M__fn_{e.name}(bufs, dims, ctx->ws[{e.index}], ctx->run_ctx);")
    L.append(f"    if (r > 0 && r <= (int32_t)(sizeof MSG_{e.name} / sizeof *MSG_{e.name}))")
    L.append(f'        return fail(IRC_@U_ERUNTIME, "{fn}: %s", MSG_{e.name}[r - 1]);')
    L.append(f'    if (r) return fail(IRC_@U_ERUNTIME, "{fn}: run-time error %d", (int)r);')
    L.append("    return IRC_@U_OK;")
    L.append("}")
    return "\n".join(L)


# -- README -------------------------------------------------------------------------------------


def readme_text(
    model, source, entries, globals_, signatures, obj, outputs, no_blas, blas_note
) -> str:
    M = model.upper()
    lines = [
        f"lib{model}: the irc model {os.path.basename(source)} as a C library",
        "=" * (len(model) + 40),
        "",
        f"Built by `irc build` for {obj.triple} (CPU {obj.cpu}). Files: {', '.join(outputs)}.",
        "",
        "Use:",
        "",
        f'    #include "{model}.h"',
        f"    irc_{model} *ctx = irc_{model}_new();",
        f'    if (irc_{model}_load_weights(ctx, "checkpoint.npz") != IRC_{M}_OK)',
        f'        fprintf(stderr, "%s\\n", irc_{model}_last_error());',
        "    ...  /* the entry functions below; train updates ctx's variables */",
        f'    irc_{model}_save_weights(ctx, "trained.npz");  /* numpy.load / irc restore it */',
        f"    irc_{model}_free(ctx);",
        "",
        "Build a program:",
        "",
        f"    cc -I. prog.c -L. -l{model} -Wl,-rpath,'$ORIGIN' "
        + ("-lm" if no_blas else "-lopenblas -lm"),
        "",
        blas_note,
        "",
        f"Every int function returns 0 (IRC_{M}_OK) or an error code, with the message in",
        f"irc_{model}_last_error() (per thread): IRC_{M}_EARG (a size, a dim or a NULL pointer",
        f"is wrong; nothing ran), IRC_{M}_ERUNTIME (a run-time check of the model failed),",
        f"IRC_{M}_ENOMEM, IRC_{M}_EIO (load_weights).",
        "",
        "A context holds the shared variables and the workspaces. Use one context from one",
        "thread at a time; separate contexts may run at the same time on separate threads.",
        f"irc_{model}_set_threads(ctx, n) lets one context's calls use n threads of irc's pool",
        "(default 1; results do not depend on n).",
        "",
        "Shared variables (get/set copy n elements, n must equal the size):",
        "",
    ]
    for g in globals_:
        lines.append(
            f"    {g['name']}: {g['type']}  ({g['count']} elements)  "
            f"irc_{model}_get_{g['cname']} / irc_{model}_set_{g['cname']}"
        )
    lines += [
        "",
        "Entry functions (named dims first, then each argument: a tensor is a pointer and",
        "its length in elements; results are written to buffers the caller allocates):",
        "",
    ]
    for e in entries:
        lines.append(f"    {signatures[e.name]}")
        lines.append(
            f"    int irc_{model}_{e.name}(irc_{model} *ctx"
            + "".join(", " + p for p in _params(e))
            + ")"
        )
        lines.append("")
    return "\n".join(lines)


# -- the build ----------------------------------------------------------------------------------


def _compiler(cc):
    cc = cc or os.environ.get("CC") or "cc"
    path = shutil.which(cc.split()[0]) if cc.split() else None
    return cc.split() if path else None


def _run(cmd, what):
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    except OSError as e:
        raise BuildError(f"{what}: cannot run {cmd[0]}: {e}") from None
    if r.returncode != 0:
        raise BuildError(f"{what} failed ({' '.join(cmd)}):\n{r.stderr.strip()}")


def _find_blas():
    for name in ("openblas", "cblas", "blis", "mkl_rt"):
        if ctypes.util.find_library(name):
            return [f"-l{name}"]
    return None


def build(
    source_path,
    out_dir,
    define=None,
    fns=None,
    weights=None,
    target=None,
    cpu=None,
    static=False,
    no_blas=False,
    blas=None,
    cc=None,
    name=None,
    seed=None,
    log=print,
) -> dict:
    """Build the library; returns {"files": [...], "model": name, "triple": ...}."""
    import numpy as np

    from irc import api
    from irc.passes.lower_to_loops import lower_module
    from irc.pipeline import run_pipeline
    from irc.runtime.llvm.aot import TargetError, build_object, host_triple
    from irc.runtime.state import initial_values

    source_path = os.fspath(source_path)
    try:
        with open(source_path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise BuildError(f"cannot read {source_path}: {e.strerror or e}") from None
    model = name or model_name(source_path)
    if not re.fullmatch(r"[A-Za-z_]\w*", model):
        raise BuildError(f"--name must be a C identifier, got '{model}'")
    tg = api.compile_to_ir(text, source_path, define)
    opt = run_pipeline(tg.clone())
    state = initial_values(
        opt,
        os.path.dirname(os.path.abspath(source_path)),
        opt.attrs.get("seed", 0) if seed is None else seed,
    )
    globals_ops = [op for op in opt.body.ops if op.name == "tg.global"]
    public = [
        op.attrs["sym_name"]
        for op in opt.body.ops
        if op.name == "func.func" and op.attrs.get("visibility", "public") == "public"
    ]
    wanted = list(dict.fromkeys(fns)) if fns else public
    unknown = [f for f in wanted if f not in public]
    if unknown:
        raise BuildError(
            f"{source_path} has no entry function '{unknown[0]}' (functions: "
            f"{', '.join(public) or 'none'})"
        )
    if not wanted:
        raise BuildError(f"{source_path} has no entry functions to build")
    if weights is not None:
        try:
            with np.load(os.fspath(weights), allow_pickle=False) as data:
                files = set(data.files)
                for op in globals_ops:
                    n, t = op.attrs["sym_name"], op.attrs["type"]
                    if n not in files:
                        raise BuildError(f"{weights} has no value for shared variable '{n}'")
                    v = data[n]
                    if tuple(v.shape) != tuple(t.shape):
                        raise BuildError(f"{weights}: '{n}' must be {t}, got shape {list(v.shape)}")
                    if v.dtype != t.dtype.np and not np.can_cast(v.dtype, t.dtype.np, "same_kind"):
                        raise BuildError(f"{weights}: '{n}' must be {t}, got dtype {v.dtype}")
                    state[n] = np.asarray(v, dtype=t.dtype.np)
        except (OSError, ValueError) as e:
            raise BuildError(f"cannot read {weights}: {e}") from None

    loops = lower_module(opt.clone())
    gnames = [op.attrs["sym_name"] for op in loops.body.ops if op.name == "tg.global"]
    gtypes = {
        op.attrs["sym_name"]: op.attrs["type"] for op in loops.body.ops if op.name == "tg.global"
    }
    init = []
    globals_ = []
    cnames = set()
    for n in gnames:
        t = gtypes[n]
        v = state.get(n)
        arr = (
            np.zeros(tuple(t.shape), t.dtype.np)
            if v is None
            else np.array(v, dtype=t.dtype.np, order="C")
        )
        init.append(arr)
        cn = re.sub(r"\W", "_", n)
        while cn in cnames:
            cn += "_"
        cnames.add(cn)
        globals_.append(
            {
                "name": n,
                "cname": cn,
                "type": str(t),
                "dtype": t.dtype.name,
                "descr": DESCR[t.dtype.name],
                "shape": tuple(t.shape),
                "count": int(arr.size),
                "itemsize": ITEMSIZE[t.dtype.name],
            }
        )
    by_name = {op.attrs["sym_name"]: op for op in loops.functions()}
    entries = [Entry(by_name[f], k) for k, f in enumerate(wanted)]
    signatures = {}
    m_opt_fns = {op.attrs["sym_name"]: op for op in opt.body.ops if op.name == "func.func"}
    for e in entries:
        signatures[e.name] = _signature(m_opt_fns[e.name])
    try:
        obj = build_object(loops, model, wanted, init, triple=target, cpu=cpu)
    except TargetError as e:
        raise BuildError(str(e)) from None
    for e in entries:
        e.messages = obj.messages[e.name]

    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise BuildError(f"cannot create {out_dir}: {e.strerror or e}") from None
    files = []

    def write(fname, data):
        p = os.path.join(out_dir, fname)
        with open(p, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        files.append(fname)
        return p

    write(f"{model}.h", header_text(model, source_path, entries, globals_, signatures))
    api_c = write(f"{model}_api.c", api_source(model, entries, globals_, obj.uses_blas, no_blas))
    cross = obj.triple != host_triple()
    compiler = _compiler(cc) if (not cross or cc) else None
    blas_flags = []
    if obj.uses_blas and not no_blas:
        blas_flags = blas.split() if blas else (_find_blas() or [])
    with tempfile.TemporaryDirectory() as tmp:
        kobj = os.path.join(tmp, f"{model}_code.o")
        with open(kobj, "wb") as f:
            f.write(obj.data)
        if compiler is None:
            write(f"{model}.o", obj.data)
            if cross:
                log(
                    f"irc build: {obj.triple} is not the host: wrote {model}.o (the model's code) and "
                    f"{model}_api.c; finish with a cross compiler, e.g. CC -shared -fPIC -O2 "
                    f"{model}_api.c {model}.o -lm -lpthread -o lib{model}.so (or pass --cc)"
                )
            else:
                log(
                    f"irc build: no C compiler found (cc, $CC or --cc): wrote {model}.o and {model}_api.c only"
                )
        else:
            cflags = ["-O2", "-fPIC", "-std=c11", "-fvisibility=hidden", "-I", out_dir]
            aobj = os.path.join(tmp, f"{model}_api.o")
            _run(compiler + cflags + ["-c", api_c, "-o", aobj], "compiling the C part")
            if static:
                ld = shutil.which("ld")
                both = os.path.join(out_dir, f"{model}.o")
                if ld and not cross:
                    _run([ld, "-r", "-o", both, kobj, aobj], "ld -r")
                else:
                    _run(
                        compiler + ["-r", "-nostdlib", "-o", both, kobj, aobj],
                        "combining the objects",
                    )
                files.append(f"{model}.o")
                lib_a = os.path.join(out_dir, f"lib{model}.a")
                if os.path.exists(lib_a):
                    os.unlink(lib_a)
                ar = shutil.which(os.environ.get("AR", "ar"))
                if ar is None:
                    raise BuildError("--static needs `ar` (binutils)")
                _run([ar, "rcs", lib_a, both], "ar")
                files.append(f"lib{model}.a")
            so = os.path.join(out_dir, f"lib{model}.so")
            _run(
                compiler
                + ["-shared", "-o", so, kobj, aobj]
                + blas_flags
                + ["-lm", "-lpthread", "-Wl,-z,nodelete"],
                "linking the shared library",
            )
            files.append(f"lib{model}.so")
    if no_blas or not obj.uses_blas:
        blas_note = "No BLAS needed: " + (
            "irc's own GEMM (--no-blas)." if obj.uses_blas else "the model has no matrix products."
        )
    elif blas_flags:
        blas_note = (
            f"Matrix products call cblas_sgemm/cblas_dgemm; lib{model}.so is linked with "
            f"{' '.join(blas_flags)}. A static build needs the same at your link."
        )
    else:
        blas_note = (
            f"Matrix products call cblas_sgemm/cblas_dgemm, left undefined in lib{model}: "
            "link your program with a CBLAS (-lopenblas, -lblis, -lmkl_rt, "
            "-framework Accelerate), or rebuild with --no-blas."
        )
    write(
        "README",
        readme_text(
            model,
            source_path,
            entries,
            globals_,
            signatures,
            obj,
            files + ["README"],
            no_blas,
            blas_note,
        ),
    )
    return {
        "files": files,
        "model": model,
        "triple": obj.triple,
        "cpu": obj.cpu,
        "blas": obj.uses_blas and not no_blas,
        "blas_flags": blas_flags,
    }


def _signature(op) -> str:
    block = op.regions[0].block
    n_in = op.attrs.get("n_inputs", len(block.args))
    defaults = op.attrs.get("arg_defaults", (None,) * len(block.args))
    args = []
    for a, d in zip(list(block.args)[:n_in], defaults):
        s = f"{a.name_hint}: {a.type}"
        if d is not None:
            s += f" = {d}"
        args.append(s)
    res = [str(t) for t in op.attrs.get("res_types", ())]
    r = res[0] if len(res) == 1 else f"({', '.join(res)})"
    return f"fn {op.attrs['sym_name']}({', '.join(args)}) -> {r}"


# -- the command (one row in irc/commands.py) -----------------------------------------------------


def add_args(p) -> None:
    p.add_argument("file", help="the .tg model")
    p.add_argument(
        "-D",
        dest="defines",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a const of the model (repeatable)",
    )
    p.add_argument(
        "--fn",
        dest="fns",
        action="append",
        default=None,
        metavar="NAME",
        help="an entry function to export (repeatable; default: all)",
    )
    p.add_argument(
        "--weights",
        metavar="CKPT.npz",
        help="initial values of the shared variables (a checkpoint of irc train --save)",
    )
    p.add_argument("--target", metavar="TRIPLE", help="target triple (default: the host)")
    p.add_argument(
        "--cpu",
        default=None,
        help="target CPU (default: the host's for the host target, else generic)",
    )
    p.add_argument("--static", action="store_true", help="also write lib<model>.a and <model>.o")
    p.add_argument("--no-blas", action="store_true", help="irc's own GEMM instead of a CBLAS")
    p.add_argument(
        "--blas",
        default=None,
        metavar="FLAGS",
        help="link flags of the CBLAS for lib<model>.so (default: found, else none)",
    )
    p.add_argument("--cc", default=None, help="the C compiler (default: $CC, else cc)")
    p.add_argument("--name", default=None, help="the model's C name (default: the file's stem)")
    p.add_argument(
        "--seed", type=int, default=None, help="seed of the random initialisers (as irc train)"
    )
    p.add_argument("-o", dest="out", required=True, metavar="DIR", help="output folder")


def run(args) -> int:
    from irc.commands import UsageError, _defines

    if not os.path.exists(args.file):
        raise UsageError(f"cannot read {args.file}: no such file")
    try:
        r = build(
            args.file,
            args.out,
            define=_defines(args),
            fns=args.fns,
            weights=args.weights,
            target=args.target,
            cpu=args.cpu,
            static=args.static,
            no_blas=args.no_blas,
            blas=args.blas,
            cc=args.cc,
            name=args.name,
            seed=args.seed,
            log=lambda s: print(s, file=sys.stderr),
        )
    except BuildError as e:
        raise UsageError(str(e)) from None
    print(f"{args.file}: {r['model']} for {r['triple']} -> {args.out}: {', '.join(r['files'])}")
    return 0

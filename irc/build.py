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

from irc.build_templates import C_CBLAS, C_CBLAS_ONE, C_OWN_GEMM, C_RUNTIME

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

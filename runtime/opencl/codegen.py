"""OpenCL C (1.2) from loop IR: the KernelWriter that renders the ops of a
kernel body as C statements, the scalar-op table, literals, dim expressions
and the small helper functions the kernels call (irc_max_f32, irc_floordiv_i64,
...), emitted once per program and only when used.

Values become `const` locals in SSA style (`const float v5 = v3 + v4;`), loop
indices `i<k>`, carried scalars mutable `acc<k>`; buffers are kernel
parameters named after what they hold (`a_x` an argument, `out0` a result,
`g_W1` a shared variable, `t<k>` a temporary, `c<k>` a constant) plus an
element offset where a view starts inside its storage. Memory layout is the
loop IR's: row-major, bool as uchar. Named dims are `long d_<name>` parameters;
dim expressions are rendered with them (`(d_H - 2) / 2` via irc_floordiv).

What a kernel is (which loops become the NDRange, reductions, host loops) is
decided by schedule.py; this module only renders. Imports irc.ir and numpy.
"""

from __future__ import annotations

import ast
import math
import re

import numpy as np

from irc.ir.core import Op, OpResult, Value
from irc.ir.dims import dim_names
from irc.ir.types import DType

CTYPE = {"f32": "float", "f64": "double", "i32": "int", "i64": "long", "bool": "bool"}
MEMTYPE = {"f32": "float", "f64": "double", "i32": "int", "i64": "long", "bool": "uchar"}
ARGTYPE = {"f32": "float", "f64": "double", "i32": "int", "i64": "long", "bool": "uchar"}
NPTYPE = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64, "bool": np.uint8}
SIZE = {"f32": 4, "f64": 8, "i32": 4, "i64": 8, "bool": 1}


class CodegenError(Exception):
    """Loop IR the OpenCL backend cannot render (a gap in irc, not a user error)."""


# -- literals and dims ---------------------------------------------------------------------------


def literal(value, dt: DType) -> str:
    """A C literal of dtype dt that reads back exactly."""
    n = dt.name
    if n == "bool":
        return "true" if bool(value) else "false"
    if dt.is_int:
        v = int(value)
        if n == "i32":
            v = int(np.int64(v).astype(np.int32))
            return str(v) if v != -(2**31) else "(-2147483647 - 1)"
        if v == -(2**63):
            return "(-9223372036854775807L - 1)"
        return f"{v}L" if v >= 0 else f"({v}L)"
    v = float(value)
    if math.isnan(v):
        return "NAN" if n == "f32" else "(double)NAN"
    if math.isinf(v):
        s = "INFINITY" if n == "f32" else "(double)INFINITY"
        return s if v > 0 else f"(-{s})"
    if n == "f32":
        text = np.format_float_positional(np.float32(v), unique=True, trim="0")
        if len(text) > 16:
            text = np.format_float_scientific(np.float32(v), unique=True, trim="0")
        text = text + ("f" if ("." in text or "e" in text) else ".0f")
    else:
        text = repr(v)
        if "." not in text and "e" not in text:
            text += ".0"
    return f"({text})" if text.startswith("-") else text


def dim_param(name: str) -> str:
    return f"d_{name}"


# Names that kernel text uses literally (schedule.py): parameters `chunk` and `groups`,
# locals `lid`, `g`, `end`, `red{k}`. fresh() names are `{prefix}{n}` and root names
# `a_*`, `g_*`, `c{n}`, `t{n}`, `out{j}`, `irc_*`; every name goes through
# KernelWriter.taken, so none of these can collide (issue 15: `c1` was both a constant
# buffer parameter and a chunk start).
FIXED_NAMES = frozenset({"chunk", "groups", "lid", "g", "end"})


def dim_c(d) -> str:
    """C expression (long) of a dim: an int, a name or an expression over names."""
    if isinstance(d, int):
        return str(d) if d >= 0 else f"({d})"
    if d.isidentifier():
        return dim_param(d)
    return _dim_ast(ast.parse(d, mode="eval").body)


def _dim_ast(node) -> str:
    if isinstance(node, ast.Constant):
        return str(int(node.value))
    if isinstance(node, ast.Name):
        return dim_param(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return f"(-{_dim_ast(node.operand)})"
    if isinstance(node, ast.BinOp):
        a, b = _dim_ast(node.left), _dim_ast(node.right)
        if isinstance(node.op, ast.FloorDiv):
            return f"irc_floordiv_i64({a}, {b})"
        sym = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*"}.get(type(node.op))
        if sym:
            return f"({a} {sym} {b})"
    raise CodegenError(f"bad dim expression {ast.dump(node)}")


def dims_used(d) -> set:
    return set() if isinstance(d, int) else dim_names(d)


def is_simple(expr: str) -> bool:
    """An identifier, a literal or a parenthesised expression (safe to embed)."""
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*|[0-9.]+[fL]?|\(.*\)", expr)) and _balanced(
        expr
    )


def _balanced(expr: str) -> bool:
    if not expr.startswith("("):
        return True
    depth = 0
    for k, ch in enumerate(expr):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and k != len(expr) - 1:
            return False
    return True


def paren(expr: str) -> str:
    return expr if is_simple(expr) else f"({expr})"


from irc.ir.types import BOOL, F32, F64, I32, I64

_I64 = I64


# -- helper functions of the generated code ------------------------------------------------------

# name -> (dependencies, C text). {T} is the C type, {S} the dtype suffix.
_FLOAT_HELPERS = {
    "max": (
        (),
        """\
inline {T} irc_max_{S}({T} a, {T} b) {{ return (a > b || a != a) ? a : b; }}  // NaN wins, as np.maximum""",
    ),
    "min": (
        (),
        """\
inline {T} irc_min_{S}({T} a, {T} b) {{ return (a < b || a != a) ? a : b; }}  // NaN wins, as np.minimum""",
    ),
    "abs": (
        (),
        "inline {T} irc_abs_{S}({T} x) {{ return as_double(as_long(x) & 0x7FFFFFFFFFFFFFFFL); }}",
    ),
    "sign": (
        (),
        """\
inline {T} irc_sign_{S}({T} x) {{ return x > 0 ? ({T})1 : (x < 0 ? ({T})-1 : x); }}  // keeps 0 and NaN""",
    ),
}

_INT_HELPERS = {
    "floordiv": (
        (),
        """\
inline {T} irc_floordiv_{S}({T} a, {T} b) {{  // Python's a // b; 0 when b == 0 (as NumPy)
    if (b == 0) return 0;
    if (b == -1) return -a;
    const {T} q = a / b;
    return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}}""",
    ),
    "mod": (
        (),
        """\
inline {T} irc_mod_{S}({T} a, {T} b) {{  // Python's a % b; 0 when b == 0 (as NumPy)
    if (b == 0 || b == -1) return 0;
    const {T} r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}}""",
    ),
    "abs": ((), "inline {T} irc_abs_{S}({T} x) {{ return x < 0 ? -x : x; }}"),
    "sign": ((), "inline {T} irc_sign_{S}({T} x) {{ return (x > 0) - (x < 0); }}"),
    "pow": (
        (),
        """\
inline {T} irc_pow_{S}({T} a, {T} n) {{  // integer power by squaring; n < 0 gives 0 unless |a| == 1
    if (n < 0) return a == 1 ? 1 : (a == -1 ? ((n & 1) ? -1 : 1) : 0);
    {T} r = 1;
    while (n > 0) {{ if (n & 1) r *= a; a *= a; n >>= 1; }}
    return r;
}}""",
    ),
}

# f32 elementary functions as straight-line arithmetic (fma, bit casts, selects):
# the same algorithms as the cpu backend (runtime/llvm/transcendentals.py), so both
# backends round alike, and loops calling them vectorise (a CPU OpenCL's builtins
# are scalar library calls). f64 uses the OpenCL builtins.
_MATH_F32 = {
    "exp": (
        (),
        """\
inline float irc_exp_f32(float x) {  // Cephes expf: 2^n * exp(r), |r| <= ln2/2
#pragma OPENCL FP_CONTRACT ON
    const float xc = x > 88.72283935546875f ? 88.72283935546875f : (x < -104.0f ? -104.0f : x);
    const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // rint
    float r = n * -0.693359375f + xc;
    r = n * 2.12194440e-4f + r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float r2 = r * r, r1 = r + 1.0f;
    float y = p * r2 + r1;
    const int ni = (int)n, n1 = ni / 2, n2 = ni - n1;
    y = y * as_float((n1 + 127) << 23) * as_float((n2 + 127) << 23);
    y = x > 88.72283935546875f ? INFINITY : y;
    return x != x ? x : y;
}""",
    ),
    "log": (
        (),
        """\
inline float irc_log_f32(float x) {  // Cephes logf: e * ln2 + log(m), m in [sqrt(1/2), sqrt(2))
#pragma OPENCL FP_CONTRACT ON
    const bool tiny = x < 1.1754943508222875e-38f;
    const int bits = as_int(tiny ? x * 8388608.0f : x);
    int e = (int)((uint)bits >> 23) - 126 - (tiny ? 23 : 0);
    float m = as_float((bits & 0x807FFFFF) | 0x3F000000);
    const bool small = m < 0.707106781186547524f;
    e -= small ? 1 : 0;
    m = (small ? m + m : m) - 1.0f;
    const float ef = (float)e, z = m * m;
    float p = 7.0376836292e-2f;
    p = p * m + -1.1514610310e-1f;
    p = p * m + 1.1676998740e-1f;
    p = p * m + -1.2420140846e-1f;
    p = p * m + 1.4249322787e-1f;
    p = p * m + -1.6668057665e-1f;
    p = p * m + 2.0000714765e-1f;
    p = p * m + -2.4999993993e-1f;
    p = p * m + 3.3333331174e-1f;
    const float pm = p * m;
    float y = pm * z;
    y = ef * -2.12194440e-4f + y;
    y = z * -0.5f + y;
    const float my = m + y;
    float r = ef * 0.693359375f + my;
    r = x == 0.0f ? -INFINITY : r;
    r = x < 0.0f ? NAN : r;
    r = x == INFINITY ? x : r;
    return x != x ? x : r;
}""",
    ),
    "log1p": (
        ("log_f32",),
        """\
inline float irc_log1p_f32(float x) {  // log(1 + x) * x / ((1 + x) - 1) corrects the rounding of 1 + x
    const float u = x + 1.0f, d = u - 1.0f;
    const float lu = irc_log_f32(u);
    float r = d == 0.0f ? x : lu * (x / d);
    r = u == INFINITY ? u : r;
    return u <= 0.0f ? lu : r;
}""",
    ),
    "tanh": (
        ("exp_f32",),
        """\
inline float irc_tanh_f32(float x) {  // odd polynomial below 0.625, else 1 - 2 / (exp(2|x|) + 1)
#pragma OPENCL FP_CONTRACT ON
    const int sign = as_int(x) & 0x80000000;
    const float ax = as_float(as_int(x) & 0x7FFFFFFF), z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z + -5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z + -3.33332819422e-1f;
    const float pz = p * z;
    const float small = pz * x + x;
    const float e = irc_exp_f32(ax * 2.0f);
    const float big = as_float(as_int(1.0f - 2.0f / (e + 1.0f)) | sign);
    const float r = ax < 0.625f ? small : big;
    return x != x ? x : r;
}""",
    ),
    "abs": ((), "inline float irc_abs_f32(float x) { return as_float(as_int(x) & 0x7FFFFFFF); }"),
}

_MISC_HELPERS = {
    "slot": "#define IRC_SLOT(T, k) (*(__global T*)(irc_scr + (k)))  /* a device scalar kept between kernels */",
    "part": "#define IRC_PART(T, k) (*(__global T*)(irc_part + (k)))  /* a partial result of a reduction */",
    "fail": """\
inline void irc_fail(__global int* status, int code) {  // the first failed check of a call wins
    atomic_cmpxchg((volatile __global int*)status, 0, code);
}""",
}


def _helper_entry(key: str):
    """(dependencies, C text) of a helper key: "max_f32", "floordiv_i64", "slot", ..."""
    if key in _MISC_HELPERS:
        return (), _MISC_HELPERS[key]
    name, suffix = key.rsplit("_", 1)
    if suffix == "f32" and name in _MATH_F32:
        return _MATH_F32[name]
    table = _FLOAT_HELPERS if suffix in ("f32", "f64") else _INT_HELPERS
    deps, text = table[name]
    return deps, text.format(T=CTYPE[suffix], S=suffix)


def helpers_source(keys) -> str:
    """The helpers' C text, each after the ones it calls."""
    out, done = [], set()

    def add(k):
        if k in done:
            return
        done.add(k)
        deps, text = _helper_entry(k)
        for d in deps:
            add(d)
        out.append(text)

    for k in ["slot", "part", "fail"] + sorted(keys):
        if k in keys:
            add(k)
    return "\n".join(out)


# -- scalar ops ------------------------------------------------------------------------------------
# Each renderer takes (writer, args as C expressions, result dtype, operand dtype)
# and returns a C expression.


def _infix(sym):
    def render(w, a, rt, at):
        return f"{paren(a[0])} {sym} {paren(a[1])}"

    render.__name__ = f"render_infix_{sym}"
    return render


def render_add(w, a, rt, at):
    return f"{paren(a[0])} || {paren(a[1])}" if rt.is_bool else f"{paren(a[0])} + {paren(a[1])}"


def render_mul(w, a, rt, at):
    return f"{paren(a[0])} && {paren(a[1])}" if rt.is_bool else f"{paren(a[0])} * {paren(a[1])}"


def render_div(w, a, rt, at):
    if rt.is_float:
        return f"{paren(a[0])} / {paren(a[1])}"
    return w.call("floordiv", rt, a)  # integer division floors (as the cpu backend)


def render_floordiv(w, a, rt, at):
    return w.call("floordiv", rt, a)


def render_mod(w, a, rt, at):
    return w.call("mod", rt, a)


def render_pow(w, a, rt, at):
    if rt.is_float:
        return f"pow({a[0]}, {a[1]})"
    return w.call("pow", rt, a)


def render_maximum(w, a, rt, at):
    if rt.is_bool:
        return f"{paren(a[0])} || {paren(a[1])}"
    if rt.is_int:
        return f"{paren(a[0])} > {paren(a[1])} ? {paren(a[0])} : {paren(a[1])}"
    return w.call("max", rt, a)


def render_minimum(w, a, rt, at):
    if rt.is_bool:
        return f"{paren(a[0])} && {paren(a[1])}"
    if rt.is_int:
        return f"{paren(a[0])} < {paren(a[1])} ? {paren(a[0])} : {paren(a[1])}"
    return w.call("min", rt, a)


def render_neg(w, a, rt, at):
    return f"!{paren(a[0])}" if rt.is_bool else f"-{paren(a[0])}"


def render_abs(w, a, rt, at):
    if rt.is_bool:
        return a[0]
    return w.call("abs", rt, a)  # bit operations, not the fabs builtin (a call on some CPU devices)


def render_square(w, a, rt, at):
    if rt.is_bool:
        return a[0]
    return f"{paren(a[0])} * {paren(a[0])}"


def render_sign(w, a, rt, at):
    if rt.is_bool:
        return a[0]
    return w.call("sign", rt, a)


def render_not(w, a, rt, at):
    return f"!{paren(a[0])}" if rt.is_bool else f"~{paren(a[0])}"


def render_and(w, a, rt, at):
    return f"{paren(a[0])} && {paren(a[1])}" if rt.is_bool else f"{paren(a[0])} & {paren(a[1])}"


def render_or(w, a, rt, at):
    return f"{paren(a[0])} || {paren(a[1])}" if rt.is_bool else f"{paren(a[0])} | {paren(a[1])}"


def _builtin(name):
    def render(w, a, rt, at):
        if not rt.is_float:
            raise CodegenError(f"scalar.{name} on {rt.name}")
        if rt.name == "f32" and name in _MATH_F32:
            return w.call(name, rt, a)
        return f"{name}({a[0]})"

    render.__name__ = f"render_{name}"
    return render


def _helper(name):
    def render(w, a, rt, at):
        if not rt.is_float:
            raise CodegenError(f"scalar.{name} on {rt.name}")
        return w.call(name, rt, a)

    render.__name__ = f"render_{name}"
    return render


def render_select(w, a, rt, at):
    return f"{paren(a[0])} ? {paren(a[1])} : {paren(a[2])}"


def render_cast(w, a, rt, at):
    return cast_expr(a[0], at, rt)


def cast_expr(x: str, src: DType, dst: DType) -> str:
    """NumPy astype of one element (float -> int saturates, NaN -> 0, as the cpu backend)."""
    if src == dst:
        return x
    if dst.is_bool:
        return f"{paren(x)} != {literal(0, src) if not src.is_bool else 'false'}"
    if src.is_float and dst.is_int:
        return f"convert_{CTYPE[dst.name]}_sat({x})"
    return f"({CTYPE[dst.name]}){paren(x)}"


SCALAR = {
    "add": render_add, "sub": _infix("-"), "mul": render_mul, "div": render_div,
    "floordiv": render_floordiv, "mod": render_mod, "pow": render_pow,
    "maximum": render_maximum, "minimum": render_minimum,
    "neg": render_neg, "abs": render_abs, "square": render_square, "sign": render_sign,
    "not": render_not, "and": render_and, "or": render_or,
    "exp": _builtin("exp"), "log": _builtin("log"), "log1p": _builtin("log1p"),
    "sqrt": _builtin("sqrt"), "tanh": _builtin("tanh"), "sin": _builtin("sin"), "cos": _builtin("cos"),
    "lt": _infix("<"), "le": _infix("<="), "gt": _infix(">"), "ge": _infix(">="),
    "eq": _infix("=="), "ne": _infix("!="),
    "select": render_select, "cast": render_cast,
}  # fmt: skip


# -- kernel parameters -----------------------------------------------------------------------------


class Param:
    """One kernel parameter: its C declaration and where the value comes from.
    kind: "buf" (source: a Root), "scalar" (source: a HostVal, dtype name),
    "dim" (source: a dim name), "chunk" (the chunk length of a CPU map kernel
    or of a reduction's work-group), "groups" (the work-groups of a reduction):
    both chosen with the launch size."""

    __slots__ = ("dtype", "kind", "name", "source", "written")

    def __init__(self, name, kind, source, dtype=None):
        self.name = name
        self.kind = kind
        self.source = source
        self.dtype = dtype
        self.written = False

    def decl(self) -> str:
        if self.kind == "buf":
            t = MEMTYPE[self.dtype]
            q = "" if self.written else "const "
            return f"__global {q}{t}* restrict {self.name}"
        if self.kind in ("dim", "chunk", "groups"):
            return f"const long {self.name}"
        return f"const {ARGTYPE[self.dtype]} {self.name}"

    def __repr__(self):
        return f"Param({self.decl()})"


# -- the writer ------------------------------------------------------------------------------------


class KernelWriter:
    """Renders loop-IR ops into the body of one kernel.

    ctx (schedule.FunctionScheduler) resolves values defined outside the kernel:
      ctx.bufref(v)  -> BufRef (root, host offset) of a host-level buffer value
      ctx.hostval(v) -> HostVal of a host-computable scalar (dims, constants, host loop indices)
      ctx.remat(v)   -> the defining op of a device scalar that is re-computed in each kernel
      ctx.slot(v)    -> the scratch slot of a device scalar kept between kernels
    """

    def __init__(self, ctx, name: str):
        self.ctx = ctx
        self.name = name
        self.params: dict = {}
        self.lines: list = []
        self.depth = 1
        self.names: dict = {}  # Value -> C expression (scalars)
        self.bufs: dict = {}  # Value -> (pointer param name, offset expression or "", dtype name)
        self.helpers: set = set()
        self.counter = 0
        self.has_assert = False
        self.status_param = None
        self.pre_lines: list = []  # re-computed device scalars, before the body
        # Every C name declared in this kernel (parameters and locals). Parameters are
        # added lazily, after locals may already be named, so both sides claim their name
        # here: a local never takes a parameter's name nor a parameter a local's.
        self.taken: set = set(FIXED_NAMES)

    # -- naming --------------------------------------------------------------------------------
    def fresh(self, prefix="v") -> str:
        """A new local name `{prefix}{n}`, distinct from every name of this kernel."""
        while True:
            self.counter += 1
            name = f"{prefix}{self.counter}"
            if name not in self.taken:
                self.taken.add(name)
                return name

    def claim(self, base: str) -> str:
        """`base`, or `base_k` if a parameter or local of this kernel already has it."""
        name, k = base, 0
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def add_param(self, key, name: str, kind: str, source, dtype=None) -> Param:
        """Register a parameter under a fixed C name that the kernel text uses as is
        (dims, chunk, groups): such names can never be taken by fresh() or claim()."""
        if key not in self.params:
            if name in self.taken and name not in FIXED_NAMES:
                raise CodegenError(f"kernel {self.name}: the parameter name {name} is taken")
            self.taken.add(name)
            self.params[key] = Param(name, kind, source, dtype)
        return self.params[key]

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def call(self, helper: str, dt: DType, args) -> str:
        self.helpers.add(f"{helper}_{dt.name}")
        return f"irc_{helper}_{dt.name}({', '.join(args)})"

    # -- parameters ----------------------------------------------------------------------------
    def buf_param(self, root) -> Param:
        key = ("buf", root.id)
        p = self.params.get(key)
        if p is None:
            p = Param(self.claim(root.cname), "buf", root, root.dtype)
            self.params[key] = p
        return p

    def scalar_param(self, key, hostval, dtype: DType, hint="p") -> str:
        p = self.params.get(("val", key))
        if p is None:
            p = Param(self.fresh(hint), "scalar", hostval, dtype.name)
            self.params[("val", key)] = p
        name = p.name
        return f"({name} != 0)" if dtype.is_bool else name

    def dim_expr(self, d) -> str:
        for n in sorted(dims_used(d)):
            self.add_param(("dim", n), dim_param(n), "dim", n)
        text = dim_c(d)
        if "irc_floordiv_i64" in text:
            self.helpers.add("floordiv_i64")
        return text

    def status(self) -> str:
        if self.status_param is None:
            root = self.ctx.status_root()
            p = self.buf_param(root)
            p.written = True
            self.status_param = p.name
        return self.status_param

    def scratch(self) -> str:
        p = self.buf_param(self.ctx.scratch_root())
        self.helpers.add("slot")
        return p.name

    # -- values --------------------------------------------------------------------------------
    def val(self, v: Value) -> str:
        """C expression of a scalar value."""
        got = self.names.get(v)
        if got is not None:
            return got
        op = v.op if isinstance(v, OpResult) else None
        if op is not None and op.name == "scalar.const":
            return literal(op.attrs["value"], v.type.dtype)
        if op is not None and op.name == "loop.dim":
            d = op.attrs["dim"]
            return literal(d, I64) if isinstance(d, int) else self.dim_expr(d)
        ctx = self.ctx
        hv = ctx.hostval(v)
        if hv is not None:
            if hv.const is not None:
                return literal(hv.const, v.type.dtype)
            return self.scalar_param(v, hv, v.type.dtype, "s")
        rop = ctx.remat(v)
        if rop is not None:
            # a device scalar re-computed here (e.g. the learning rate read from its argument)
            saved, self.lines, depth = self.lines, self.pre_lines, self.depth
            self.depth = 1
            try:
                self.op(rop)
            finally:
                self.lines, self.depth = saved, depth
            return self.names[v]
        slot = ctx.slot(v)
        if slot is not None:
            scr = self.scratch()
            t = MEMTYPE[v.type.dtype.name]
            expr = f"IRC_SLOT({t}, {slot})"
            if v.type.dtype.is_bool:
                expr = f"({expr} != 0)"
            name = self.fresh()
            self.pre_lines.append(
                f"    const {CTYPE[v.type.dtype.name]} {name} = {expr};  // from {scr}"
            )
            self.names[v] = name
            return name
        raise CodegenError(f"value {v!r} is not available inside kernel {self.name}")

    def define(self, v: Value, expr: str, prefix="v") -> str:
        name = self.fresh(prefix)
        self.line(f"const {CTYPE[v.type.dtype.name]} {name} = {expr};")
        self.names[v] = name
        return name

    def buf(self, v: Value):
        """(pointer, offset expression or "", dtype name) of a buffer value."""
        got = self.bufs.get(v)
        if got is not None:
            return got
        ref = self.ctx.bufref(v)
        if ref is None:
            raise CodegenError(f"buffer {v!r} is not available inside kernel {self.name}")
        p = self.buf_param(ref.root)
        off = ""
        if ref.off.const is not None:
            if ref.off.const != 0:
                off = literal(ref.off.const, I64)
        else:
            off = self.scalar_param(("off", ref.root.id, id(ref.off)), ref.off, I64, "o")
        got = (p.name, off, ref.root.dtype)
        self.bufs[v] = got
        return got

    def mark_written(self, v: Value) -> None:
        ref = self.ctx.bufref(v)
        if ref is None:
            ptr = self.buf(v)[0]
            for p in self.params.values():
                if p.kind == "buf" and p.name == ptr:
                    p.written = True
            return
        self.buf_param(ref.root).written = True

    def linear(self, t, idx: list) -> str:
        """Row-major linear index of idx in a buffer of type t."""
        acc = None
        for d, ix in zip(t.shape, idx):
            if acc is None:
                acc = ix
                continue
            if acc in ("0", "0L"):
                acc = ix
            elif d == 1:
                acc = f"{acc} + {paren(ix)}" if ix not in ("0", "0L") else acc
            else:
                acc = f"{paren(acc)} * {paren(self.dim_expr(d))}"
                acc = acc if ix in ("0", "0L") else f"{acc} + {paren(ix)}"
        return "0" if acc is None else acc

    def element(self, bufv: Value, idx_values) -> str:
        ptr, off, _ = self.buf(bufv)
        lin = self.linear(bufv.type, [self.val(i) for i in idx_values])
        if off:
            lin = off if lin in ("0", "0L") else f"{off} + {lin}"
        return f"{ptr}[{lin}]"

    def numel(self, t) -> str:
        parts = [self.dim_expr(d) for d in t.shape if d != 1]
        if not parts:
            return "1"
        return " * ".join(paren(p) for p in parts)

    # -- ops -------------------------------------------------------------------------------------
    def block(self, block) -> list:
        """Render a block's ops; returns the C expressions of its terminator's operands."""
        for op in block.ops:
            if op.name in ("loop.yield", "func.return"):
                return [self.val(v) for v in op.operands]
            self.op(op)
        return []

    def op(self, op: Op) -> None:
        h = OP_RENDER.get(op.name)
        if h is not None:
            h(self, op)
            return
        dialect, short = op.name.split(".", 1)
        if dialect == "scalar":
            render_scalar_op(self, op, short)
            return
        raise CodegenError(f"no OpenCL rendering for {op.name}")

    def loop(self, op: Op, lo: str | None = None, hi: str | None = None) -> None:
        lo = self.val(op.operands[0]) if lo is None else lo
        hi = self.val(op.operands[1]) if hi is None else hi
        body = op.regions[0].block
        carried = []
        for init, arg in zip(op.operands[2:], body.args[1:]):
            name = self.fresh("acc")
            self.line(f"{CTYPE[arg.type.dtype.name]} {name} = {self.val(init)};")
            self.names[arg] = name
            carried.append(name)
        i = self.fresh("i")
        self.names[body.args[0]] = i
        self.line(f"for (long {i} = {lo}; {i} < {hi}; ++{i}) {{")
        self.depth += 1
        nexts = self.block(body)
        self.assign_carried(carried, nexts, body.args[1:])
        self.depth -= 1
        self.line("}")
        for r, name in zip(op.results, carried):
            self.names[r] = name

    def assign_carried(self, carried, nexts, args) -> None:
        pairs = [(c, n) for c, n in zip(carried, nexts) if c != n]
        if len(pairs) == 1 or not any(n in carried for _, n in pairs):
            for c, n in pairs:
                self.line(f"{c} = {n};")
            return
        tmps = []
        for (c, n), a in zip(pairs, args):
            t = self.fresh("nx")
            self.line(f"const {CTYPE[a.type.dtype.name]} {t} = {n};")
            tmps.append((c, t))
        for c, t in tmps:
            self.line(f"{c} = {t};")

    def fail(self, code: int) -> str:
        self.helpers.add("fail")
        return f"irc_fail({self.status()}, {code});"


def render_scalar_op(w: KernelWriter, op: Op, short: str) -> None:
    if short == "const":
        w.names[op.results[0]] = literal(op.attrs["value"], op.results[0].type.dtype)
        return
    r = SCALAR.get(short)
    if r is None:
        raise CodegenError(f"no OpenCL rendering for scalar.{short}")
    args = [w.val(v) for v in op.operands]
    rt = op.results[0].type.dtype
    at = op.operands[0].type.dtype if op.operands else rt
    if short == "select":
        at = rt
    w.define(op.results[0], r(w, args, rt, at))


def render_load(w: KernelWriter, op: Op) -> None:
    buf = op.operands[0]
    e = w.element(buf, op.operands[1:])
    if buf.type.dtype.is_bool:
        e = f"{e} != 0"
    w.define(op.results[0], e)


def render_store(w: KernelWriter, op: Op) -> None:
    v, buf = op.operands[0], op.operands[1]
    x = w.val(v)
    if buf.type.dtype.is_bool:
        x = f"(uchar){paren(x)}"
    w.mark_written(buf)
    w.line(f"{w.element(buf, op.operands[2:])} = {x};")


def render_view(w: KernelWriter, op: Op) -> None:
    w.bufs[op.results[0]] = w.buf(op.operands[0])


def render_subview(w: KernelWriter, op: Op) -> None:
    b, i = op.operands
    ptr, off, dt = w.buf(b)
    stride = w.numel(b.type.with_shape(b.type.shape[1:]))
    iv = w.val(i)
    step = iv if stride == "1" else f"{paren(iv)} * {paren(stride)}"
    name = w.fresh("o")
    w.line(f"const long {name} = {off + ' + ' if off else ''}{step};")
    w.bufs[op.results[0]] = (ptr, name, dt)


def render_dim(w: KernelWriter, op: Op) -> None:
    w.names[op.results[0]] = w.val(op.results[0])


def render_for(w: KernelWriter, op: Op) -> None:
    w.loop(op)


def render_assert(w: KernelWriter, op: Op) -> None:
    msg = op.attrs.get("message", "assertion failed")
    code = w.ctx.message_code(msg)
    w.has_assert = True
    w.line(f"if (!{paren(w.val(op.operands[0]))}) {{ {w.fail(code)} return; }}  // {msg}")


def render_copy(w: KernelWriter, op: Op) -> None:
    """dst = src element by element; a backward loop when dst starts later in the same storage."""
    src, dst = op.operands
    sp, so, _ = w.buf(src)
    dp, do, _ = w.buf(dst)
    w.mark_written(dst)
    n = w.numel(src.type)
    so, do = so or "0", do or "0"
    e = w.fresh("e")
    if sp == dp:
        w.line(
            f"if ({do} > {so}) {{ for (long {e} = {n} - 1; {e} >= 0; --{e}) {dp}[{do} + {e}] = {sp}[{so} + {e}]; }}"
        )
        w.line(
            f"else {{ for (long {e} = 0; {e} < {n}; ++{e}) {dp}[{do} + {e}] = {sp}[{so} + {e}]; }}"
        )
    else:
        w.line(f"for (long {e} = 0; {e} < {n}; ++{e}) {dp}[{do} + {e}] = {sp}[{so} + {e}];")


def render_gemm(w: KernelWriter, op: Op) -> None:
    """mem.gemm inside a kernel body: a plain triple loop on this work item."""
    A, B, C = op.operands[:3]
    M, N, K, lda, ldb, ldc, oa, ob, oc = (w.val(v) for v in op.operands[3:12])
    ap, ao, _ = w.buf(A)
    bp, bo, _ = w.buf(B)
    cp, co, dt = w.buf(C)
    w.mark_written(C)
    T = CTYPE[dt]
    ta, tb = bool(op.attrs.get("trans_a")), bool(op.attrs.get("trans_b"))
    alpha = literal(float(op.attrs.get("alpha", 1.0)), C.type.dtype)
    beta = float(op.attrs.get("beta", 0.0))
    if len(op.operands) > 12:
        alpha = f"{alpha} * {paren(w.val(op.operands[12]))}"
    i, j, k, s = w.fresh("gi"), w.fresh("gj"), w.fresh("gk"), w.fresh("gs")
    a_at = f"{ap}[{ao + ' + ' if ao else ''}{oa} + " + (
        f"{k} * {lda} + {i}]" if ta else f"{i} * {lda} + {k}]"
    )
    b_at = f"{bp}[{bo + ' + ' if bo else ''}{ob} + " + (
        f"{j} * {ldb} + {k}]" if tb else f"{k} * {ldb} + {j}]"
    )
    c_at = f"{cp}[{co + ' + ' if co else ''}{oc} + {i} * {ldc} + {j}]"
    w.line(f"for (long {i} = 0; {i} < {M}; ++{i}) for (long {j} = 0; {j} < {N}; ++{j}) {{")
    w.depth += 1
    w.line(f"{T} {s} = 0;")
    w.line(f"for (long {k} = 0; {k} < {K}; ++{k}) {s} += {a_at} * {b_at};")
    rhs = f"{alpha} * {s}"
    if beta != 0.0:
        rhs += f" + {literal(beta, C.type.dtype)} * {c_at}"
    w.line(f"{c_at} = {rhs};")
    w.depth -= 1
    w.line("}")


OP_RENDER = {
    "mem.load": render_load,
    "mem.store": render_store,
    "mem.view": render_view,
    "mem.subview": render_subview,
    "mem.copy": render_copy,
    "mem.gemm": render_gemm,
    "loop.dim": render_dim,
    "loop.for": render_for,
    "loop.assert": render_assert,
}


def kernel_source(
    w: KernelWriter, head: list, body: list, comment: str = "", attrs: str = ""
) -> str:
    """The full text of a kernel: signature from w.params, then head, the
    re-computed scalars, and body lines."""
    params = [p.decl() for p in w.params.values()]
    sig = f"__kernel {attrs + ' ' if attrs else ''}void {w.name}("
    if params:
        sig += "\n    " + ",\n    ".join(params) + ")"
    else:
        sig += "void)"
    out = []
    if comment:
        out += ["// " + c for c in comment.splitlines()]
    out.append(sig + " {")
    out += head
    out += w.pre_lines
    out += body
    out.append("}")
    return "\n".join(out)


__all__ = [
    "BOOL",
    "CTYPE",
    "F32",
    "F64",
    "I32",
    "I64",
    "MEMTYPE",
    "NPTYPE",
    "SIZE",
    "CodegenError",
    "KernelWriter",
    "Param",
    "cast_expr",
    "dim_c",
    "helpers_source",
    "kernel_source",
    "literal",
]

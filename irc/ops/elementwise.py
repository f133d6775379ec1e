"""Elementwise ops (tg.add, tg.mul, tg.exp, tg.where, tg.cast, ...):
broadcasting, NumPy promotion, reference semantics, traits, test domains.

Result dtypes are NumPy's (`common.numpy_result_dtype`), so `i32 / i32` is f64
and `exp(i32)` is f64, as in NumPy. Operands must broadcast (types.broadcast_shapes).

Gradient rules (`vjp`) are written in tg ops, so gradients of gradients work. A
rule may return a cotangent with the broadcast result shape and dtype: the grad
pass sums it down to the operand's shape and casts it to the operand's dtype.
Integer and bool operands get None (they carry no gradient). Conventions at the
points where a function is not differentiable: relu'(0) = 0, abs'(0) = 0,
maximum/minimum split the cotangent equally between tied operands (as JAX does),
clip passes it to x where lo <= x <= hi.
Scalar rules (`scalar`): what the op computes on one element, in scalar.* ops
(irc/ops/loop.py), from which lower-to-loops builds every elementwise loop
nest; `binary`/`unary` default to the scalar op of the same name, and the
composites (sigmoid, softplus, relu, clip, where) spell themselves out in
primitives so that the backends never need to know them.
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

import numpy as np

from irc.ir.types import BOOL, TensorType, TypeError_, broadcast_shapes, promote_dtypes
from irc.ops.common import (
    arrayed,
    dtype_attr,
    elementwise_infer,
    named_infer,
    numpy_result_dtype,
    scalar_expr,
    scalar_map,
)
from irc.ops.cost import per_result_element
from irc.ops.registry import COMMUTATIVE, ELEMENTWISE_PURE, NO_GRAD, OpDef, defop

ELEMENTWISE_NO_GRAD = ELEMENTWISE_PURE | {NO_GRAD}
ELEMENTWISE_COMMUTATIVE = ELEMENTWISE_PURE | {COMMUTATIVE}


def _short(name: str) -> str:
    return name.split(".", 1)[1]


def binary(name, fn, traits=ELEMENTWISE_PURE, sym=None, doc="", **kw):
    """Register a broadcasting binary op whose reference is the NumPy function `fn`
    (scalar rule: the scalar op of the same name, unless `scalar` is given)."""
    infer = elementwise_infer(fn, sym=sym or _short(name))
    kw.setdefault("scalar", scalar_map(_short(name)))
    kw.setdefault("cost", per_result_element)
    return defop(OpDef(name, infer=infer, numpy=arrayed(fn), traits=traits, arity=2, doc=doc, **kw))


def unary(name, fn, traits=ELEMENTWISE_PURE, sym=None, doc="", **kw):
    """Register a unary op whose reference is the NumPy function `fn`."""
    infer = elementwise_infer(fn, sym=sym or _short(name))
    kw.setdefault("scalar", scalar_map(_short(name)))
    kw.setdefault("cost", per_result_element)
    return defop(OpDef(name, infer=infer, numpy=arrayed(fn), traits=traits, arity=1, doc=doc, **kw))


# -- scalar rules that are not one scalar op -----------------------------------------------
_BOOL_SCALAR = TensorType(BOOL, ())


def _scalar_compare(name):
    """a <op> b in the operands' common (promoted) dtype; bool result."""

    def rule(emit, args, dtype):
        common = promote_dtypes(args[0].type.dtype, args[1].type.dtype)
        a, b = emit.cast(args[0], common), emit.cast(args[1], common)
        return emit.scalar(name, a, b, t=_BOOL_SCALAR)

    return rule


def _scalar_where(emit, args, dtype):
    c, a, b = args
    return emit.scalar(
        "select",
        emit.cast(c, BOOL),
        emit.cast(a, dtype),
        emit.cast(b, dtype),
        t=a.type.with_dtype(dtype),
    )


def _scalar_sigmoid(emit, x):
    # 1 / (1 + e) with e = exp(-|x|), which never overflows; e * r for x < 0.
    e = emit.scalar("exp", emit.scalar("neg", emit.scalar("abs", x)))
    r = emit.scalar(
        "div", emit.const(1, x.type.dtype), emit.scalar("add", emit.const(1, x.type.dtype), e)
    )
    nonneg = emit.scalar("ge", x, emit.const(0, x.type.dtype), t=_BOOL_SCALAR)
    return emit.scalar("select", nonneg, r, emit.scalar("mul", e, r), t=x.type)


def _scalar_softplus(emit, x):
    # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), stable for every x.
    zero = emit.const(0, x.type.dtype)
    pos = emit.scalar("select", emit.scalar("gt", x, zero, t=_BOOL_SCALAR), x, zero, t=x.type)
    e = emit.scalar("exp", emit.scalar("neg", emit.scalar("abs", x)))
    return emit.scalar("add", pos, emit.scalar("log1p", e))


# -- gradient rules ---------------------------------------------------------------------
# Each takes (b: OpBuilder, op, g) and returns one cotangent (or None) per operand.


def _float(v) -> bool:
    return v.type.dtype.is_float


def _only_float(op, grads):
    """None for the operands that carry no gradient (integers, bools)."""
    return [g if _float(v) else None for v, g in zip(op.operands, grads)]


def _vjp_add(b, op, g):
    return _only_float(op, [g, g])


def _vjp_sub(b, op, g):
    y = op.operands[1]
    return _only_float(op, [g, b.neg(g) if _float(y) else None])


def _vjp_mul(b, op, g):
    x, y = op.operands
    return [b.mul(g, y) if _float(x) else None, b.mul(g, x) if _float(y) else None]


def _vjp_div(b, op, g):
    x, y = op.operands
    gx = b.div(g, y) if _float(x) else None
    # d(x/y)/dy = -(x/y)/y: reuses the forward result instead of squaring y.
    gy = b.neg(b.div(b.mul(g, op.results[0]), y)) if _float(y) else None
    return [gx, gy]


def _vjp_pow(b, op, g):
    x, y = op.operands
    out = op.results[0]
    gx = gy = None
    if _float(x):
        # y * x**(y-1) rather than y * out / x, so that x == 0 works (x**2 at 0).
        gx = b.mul(g, b.mul(y, b.pow(x, b.sub(y, b.like(1, y)))))
    if _float(y):
        # d/dy x**y = log(x) * x**y, defined for x > 0; zero where x <= 0 (where a real
        # power needs an integer y, a locally constant one). log sees 1 there, so
        # no nan or inf reaches the where, nor the second derivative.
        pos = b.gt(x, b.like(0, x))
        safe = b.where(pos, x, b.like(1, x))
        gy = b.where(pos, b.mul(g, b.mul(out, b.log(safe))), b.like(0.0, g))
    return [gx, gy]


def _minmax_vjp(wins):
    """maximum/minimum: the winning operand gets the cotangent; at a tie each gets
    half (JAX's convention), so the rule is symmetric and the sum is preserved."""

    def vjp(b, op, g):
        x, y = op.operands
        half = b.mul(g, b.like(0.5, g))
        zero = b.like(0.0, g)
        gx = b.where(b.op(wins, x, y), g, b.where(b.eq(x, y), half, zero))
        gy = b.sub(g, gx)
        return _only_float(op, [gx, gy])

    return vjp


def _vjp_neg(b, op, g):
    return [b.neg(g)]


def _vjp_abs(b, op, g):
    # sign(0) = 0: the subgradient 0 at the kink.
    return [b.mul(g, b.sign(op.operands[0]))]


def _vjp_exp(b, op, g):
    return [b.mul(g, op.results[0])]


def _vjp_log(b, op, g):
    return [b.div(g, op.operands[0])]


def _vjp_log1p(b, op, g):
    x = op.operands[0]
    return [b.div(g, b.add(b.like(1, x), x))]


def _vjp_sqrt(b, op, g):
    return [b.div(b.mul(g, b.like(0.5, g)), op.results[0])]


def _vjp_tanh(b, op, g):
    t = op.results[0]
    return [b.mul(g, b.sub(b.like(1, t), b.mul(t, t)))]


def _vjp_sigmoid(b, op, g):
    s = op.results[0]
    return [b.mul(g, b.mul(s, b.sub(b.like(1, s), s)))]


def _vjp_relu(b, op, g):
    # relu'(0) = 0, as in PyTorch and JAX.
    x = op.operands[0]
    return [b.where(b.gt(x, b.like(0, x)), g, b.like(0.0, g))]


def _vjp_softplus(b, op, g):
    return [b.mul(g, b.sigmoid(op.operands[0]))]


def _vjp_square(b, op, g):
    x = op.operands[0]
    return [b.mul(g, b.mul(b.like(2, x), x))]


def _vjp_sin(b, op, g):
    return [b.mul(g, b.cos(op.operands[0]))]


def _vjp_cos(b, op, g):
    return [b.neg(b.mul(g, b.sin(op.operands[0])))]


def _vjp_where(b, op, g):
    c, x, y = op.operands
    zero = b.like(0.0, g)
    # No gradient for the bool condition.
    gx = b.where(c, g, zero) if _float(x) else None
    gy = b.where(c, zero, g) if _float(y) else None
    return [None, gx, gy]


def _vjp_clip(b, op, g):
    """clip = minimum(maximum(x, lo), hi) with ties going to x: x gets the
    cotangent where lo <= x <= hi (PyTorch's clamp), lo where x < lo <= hi,
    hi everywhere else (x > hi, or lo > hi where the result is hi)."""
    x, lo, hi = op.operands
    zero = b.like(0.0, g)
    to_x = b.op("tg.and", b.ge(x, lo), b.le(x, hi))
    to_lo = b.op("tg.and", b.lt(x, lo), b.le(lo, hi))
    gx = b.where(to_x, g, zero) if _float(x) else None
    glo = b.where(to_lo, g, zero) if _float(lo) else None
    ghi = b.where(b.op("tg.or", to_x, to_lo), zero, g) if _float(hi) else None
    return [gx, glo, ghi]


def _vjp_cast(b, op, g):
    # float -> float passes the cotangent back in the source dtype; a cast to an
    # integer or bool is a step function (no gradient).
    x = op.operands[0]
    if not (_float(x) and _float(op.results[0])):
        return [None]
    return [g if g.type.dtype == x.type.dtype else b.cast(g, dtype=x.type.dtype.name)]


# -- arithmetic ---------------------------------------------------------------------
ADD = binary(
    "tg.add", np.add, ELEMENTWISE_COMMUTATIVE, "+", "a + b", domain=(-2.0, 2.0), vjp=_vjp_add
)
SUB = binary("tg.sub", np.subtract, sym="-", doc="a - b", domain=(-2.0, 2.0), vjp=_vjp_sub)
MUL = binary(
    "tg.mul", np.multiply, ELEMENTWISE_COMMUTATIVE, "*", "a * b", domain=(-2.0, 2.0), vjp=_vjp_mul
)
DIV = binary(
    "tg.div",
    np.true_divide,
    sym="/",
    doc="a / b, true division (i32 / i32 is f64)",
    domain=(0.5, 2.0),
    vjp=_vjp_div,
)
POW = binary(
    "tg.pow", np.power, sym="**", doc="a ** b (NumPy power)", domain=(0.5, 2.0), vjp=_vjp_pow
)
MAXIMUM = binary(
    "tg.maximum",
    np.maximum,
    ELEMENTWISE_COMMUTATIVE,
    doc="elementwise max",
    domain=(-2.0, 2.0),
    vjp=_minmax_vjp("tg.gt"),
)
MINIMUM = binary(
    "tg.minimum",
    np.minimum,
    ELEMENTWISE_COMMUTATIVE,
    doc="elementwise min",
    domain=(-2.0, 2.0),
    vjp=_minmax_vjp("tg.lt"),
)

# -- comparisons and logic: bool results, not differentiable ------------------------
LT = binary(
    "tg.lt",
    np.less,
    ELEMENTWISE_NO_GRAD,
    "<",
    "a < b",
    domain=(-2.0, 2.0),
    scalar=_scalar_compare("lt"),
)
LE = binary(
    "tg.le",
    np.less_equal,
    ELEMENTWISE_NO_GRAD,
    "<=",
    "a <= b",
    domain=(-2.0, 2.0),
    scalar=_scalar_compare("le"),
)
GT = binary(
    "tg.gt",
    np.greater,
    ELEMENTWISE_NO_GRAD,
    ">",
    "a > b",
    domain=(-2.0, 2.0),
    scalar=_scalar_compare("gt"),
)
GE = binary(
    "tg.ge",
    np.greater_equal,
    ELEMENTWISE_NO_GRAD,
    ">=",
    "a >= b",
    domain=(-2.0, 2.0),
    scalar=_scalar_compare("ge"),
)
EQ = binary(
    "tg.eq",
    np.equal,
    ELEMENTWISE_NO_GRAD | {COMMUTATIVE},
    "==",
    "a == b",
    domain=(-2.0, 2.0),
    scalar=_scalar_compare("eq"),
)
NE = binary(
    "tg.ne",
    np.not_equal,
    ELEMENTWISE_NO_GRAD | {COMMUTATIVE},
    "!=",
    "a != b",
    domain=(-2.0, 2.0),
    scalar=_scalar_compare("ne"),
)
# On bool operands bitwise and/or are logical and/or (and give bool); on integers
# they are bitwise, as `&`/`|` in NumPy. Floats are rejected.
AND = binary(
    "tg.and",
    np.bitwise_and,
    ELEMENTWISE_NO_GRAD | {COMMUTATIVE},
    "&",
    "a & b: logical on bool, bitwise on integers",
    domain=(-2.0, 2.0),
)
OR = binary(
    "tg.or",
    np.bitwise_or,
    ELEMENTWISE_NO_GRAD | {COMMUTATIVE},
    "|",
    "a | b: logical on bool, bitwise on integers",
    domain=(-2.0, 2.0),
)


# -- unary ----------------------------------------------------------------------------
def _sigmoid(x):
    # exp of a non-positive number never overflows; both branches share it.
    x = np.asarray(x)
    e = np.exp(-np.abs(x))
    r = 1 / (1 + e)
    return np.where(x >= 0, r, e * r)


def _relu(x):
    x = np.asarray(x)
    return np.maximum(x, x.dtype.type(0))


def _softplus(x):
    return np.logaddexp(0, x)


NEG = unary("tg.neg", np.negative, sym="-", doc="-x", domain=(-2.0, 2.0), vjp=_vjp_neg)
ABS = unary("tg.abs", np.abs, doc="|x|", domain=(-2.0, 2.0), vjp=_vjp_abs)
EXP = unary("tg.exp", np.exp, doc="e ** x", domain=(-2.0, 2.0), vjp=_vjp_exp)
LOG = unary("tg.log", np.log, doc="natural logarithm", domain=(0.1, 4.0), vjp=_vjp_log)
LOG1P = unary(
    "tg.log1p", np.log1p, doc="log(1 + x), accurate near 0", domain=(-0.5, 2.0), vjp=_vjp_log1p
)
SQRT = unary("tg.sqrt", np.sqrt, doc="square root", domain=(0.1, 4.0), vjp=_vjp_sqrt)
TANH = unary("tg.tanh", np.tanh, doc="hyperbolic tangent", domain=(-2.0, 2.0), vjp=_vjp_tanh)
SIGMOID = unary(
    "tg.sigmoid",
    _sigmoid,
    doc="1 / (1 + exp(-x)), without overflow",
    domain=(-4.0, 4.0),
    vjp=_vjp_sigmoid,
    scalar=scalar_expr(_scalar_sigmoid),
)
RELU = unary(
    "tg.relu",
    _relu,
    doc="max(x, 0), keeping x's dtype",
    domain=(-2.0, 2.0),
    vjp=_vjp_relu,
    scalar=scalar_expr(lambda emit, x: emit.scalar("maximum", x, emit.const(0, x.type.dtype))),
)
SOFTPLUS = unary(
    "tg.softplus",
    _softplus,
    doc="log(1 + exp(x)), computed stably",
    domain=(-4.0, 4.0),
    vjp=_vjp_softplus,
    scalar=scalar_expr(_scalar_softplus),
)
NOT = unary(
    "tg.not",
    np.invert,
    ELEMENTWISE_NO_GRAD,
    "~",
    "~x: logical not on bool, bitwise on integers",
    domain=(-2.0, 2.0),
)
SQUARE = unary("tg.square", np.square, doc="x * x", domain=(-2.0, 2.0), vjp=_vjp_square)
SIN = unary("tg.sin", np.sin, doc="sine", domain=(-3.0, 3.0), vjp=_vjp_sin)
COS = unary("tg.cos", np.cos, doc="cosine", domain=(-3.0, 3.0), vjp=_vjp_cos)
SIGN = unary("tg.sign", np.sign, ELEMENTWISE_NO_GRAD, doc="-1, 0 or 1", domain=(-2.0, 2.0))


# -- where, clip, cast ------------------------------------------------------------------
def _where_infer(types, attrs):
    c, a, b = types
    if not c.dtype.is_bool:
        raise TypeError_(f"the condition must be bool, got {c}")
    shape = broadcast_shapes(c.shape, a.shape, b.shape)
    return [TensorType(numpy_result_dtype(np.where, [c.dtype, a.dtype, b.dtype]), shape)]


WHERE = defop(
    OpDef(
        "tg.where",
        infer=named_infer("where", _where_infer),
        numpy=arrayed(np.where),
        traits=ELEMENTWISE_PURE,
        arity=3,
        domain=(-2.0, 2.0),
        vjp=_vjp_where,
        cost=per_result_element,
        scalar=_scalar_where,
        doc="where(c, a, b): a where the bool c is true, else b; a and b promote",
    )
)


def _clip_infer(types, attrs):
    x, lo, hi = types
    if x.dtype.is_bool:
        raise TypeError_(f"not defined for an operand of dtype bool: {x}")
    shape = broadcast_shapes(x.shape, lo.shape, hi.shape)
    return [TensorType(x.dtype, shape)]


def _clip(x, lo, hi):
    x = np.asarray(x)
    lo = np.asarray(lo).astype(x.dtype, copy=False)
    hi = np.asarray(hi).astype(x.dtype, copy=False)
    return np.minimum(np.maximum(x, lo), hi)


CLIP = defop(
    OpDef(
        "tg.clip",
        infer=named_infer("clip", _clip_infer),
        numpy=arrayed(_clip),
        traits=ELEMENTWISE_PURE,
        arity=3,
        domain=(-2.0, 2.0),
        vjp=_vjp_clip,
        cost=per_result_element,
        scalar=scalar_expr(
            lambda emit, x, lo, hi: emit.scalar("minimum", emit.scalar("maximum", x, lo), hi)
        ),
        doc="clip(x, lo, hi) = minimum(maximum(x, lo), hi) in x's dtype (lo, hi are converted)",
    )
)


def _cast_infer(types, attrs):
    (x,) = types
    return [TensorType(dtype_attr(attrs.get("dtype")), x.shape)]


def _cast(x, dtype):
    """NumPy astype, except float -> int, which is defined for every input, the
    same on every backend: truncation toward zero, saturating at the integer
    type's range (+inf -> max, -inf -> min), NaN -> 0 (LLVM's fptosi.sat)."""
    dt = dtype_attr(dtype).np
    x = np.asarray(x)
    if x.dtype.kind != "f" or dt.kind not in "iu":
        return x.astype(dt)
    info = np.iinfo(dt)
    xf = x.astype(np.float64)
    hi = xf >= float(info.max)
    lo = xf <= float(info.min)
    mid = ~(hi | lo | np.isnan(xf))
    out = np.zeros(x.shape, dt)
    out[mid] = xf[mid].astype(dt)
    out[hi] = info.max
    out[lo] = info.min
    return out


# Casting to an integer or bool type makes the result non-differentiable; that is
# a property of the result dtype, which the gradient pass checks, not a trait.
CAST = defop(
    OpDef(
        "tg.cast",
        infer=named_infer("cast", _cast_infer),
        numpy=_cast,
        traits=ELEMENTWISE_PURE,
        arity=1,
        domain=(-2.0, 2.0),
        vjp=_vjp_cast,
        cost=per_result_element,
        scalar=lambda emit, args, dtype: emit.cast(args[0], dtype),
        doc='cast(x) {dtype = "f32"|"f64"|"i32"|"i64"|"bool"}: NumPy astype',
    )
)

"""Elementwise ops (tg.add, tg.mul, tg.exp, tg.where, tg.cast, ...):
broadcasting, NumPy promotion, reference semantics, traits, test domains.

Result dtypes are NumPy's (`common.numpy_result_dtype`), so `i32 / i32` is f64
and `exp(i32)` is f64, as in NumPy. Operands must broadcast (types.broadcast_shapes).
Gradient rules (vjp) and lowerings are added by their own issues.
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

import numpy as np

from irc.ir.types import TensorType, TypeError_, broadcast_shapes
from irc.ops.common import arrayed, dtype_attr, elementwise_infer, named_infer, numpy_result_dtype
from irc.ops.registry import COMMUTATIVE, ELEMENTWISE_PURE, NO_GRAD, OpDef, defop

ELEMENTWISE_NO_GRAD = ELEMENTWISE_PURE | {NO_GRAD}
ELEMENTWISE_COMMUTATIVE = ELEMENTWISE_PURE | {COMMUTATIVE}


def _short(name: str) -> str:
    return name.split(".", 1)[1]


def binary(name, fn, traits=ELEMENTWISE_PURE, sym=None, doc="", **kw):
    """Register a broadcasting binary op whose reference is the NumPy function `fn`."""
    infer = named_infer(sym or _short(name), elementwise_infer(fn))
    return defop(
        OpDef(name, infer=infer, numpy=arrayed(fn), traits=traits, arity=2, doc=doc, **kw)
    )


def unary(name, fn, traits=ELEMENTWISE_PURE, sym=None, doc="", **kw):
    """Register a unary op whose reference is the NumPy function `fn`."""
    infer = named_infer(sym or _short(name), elementwise_infer(fn))
    return defop(
        OpDef(name, infer=infer, numpy=arrayed(fn), traits=traits, arity=1, doc=doc, **kw)
    )


# -- arithmetic ---------------------------------------------------------------------
ADD = binary("tg.add", np.add, ELEMENTWISE_COMMUTATIVE, "+", "a + b", domain=(-2.0, 2.0))
SUB = binary("tg.sub", np.subtract, sym="-", doc="a - b", domain=(-2.0, 2.0))
MUL = binary("tg.mul", np.multiply, ELEMENTWISE_COMMUTATIVE, "*", "a * b", domain=(-2.0, 2.0))
DIV = binary("tg.div", np.true_divide, sym="/", doc="a / b, true division (i32 / i32 is f64)",
             domain=(0.5, 2.0))
POW = binary("tg.pow", np.power, sym="**", doc="a ** b (NumPy power)", domain=(0.5, 2.0))
MAXIMUM = binary("tg.maximum", np.maximum, ELEMENTWISE_COMMUTATIVE, doc="elementwise max",
                 domain=(-2.0, 2.0))
MINIMUM = binary("tg.minimum", np.minimum, ELEMENTWISE_COMMUTATIVE, doc="elementwise min",
                 domain=(-2.0, 2.0))

# -- comparisons and logic: bool results, not differentiable ------------------------
LT = binary("tg.lt", np.less, ELEMENTWISE_NO_GRAD, "<", "a < b", domain=(-2.0, 2.0))
LE = binary("tg.le", np.less_equal, ELEMENTWISE_NO_GRAD, "<=", "a <= b", domain=(-2.0, 2.0))
GT = binary("tg.gt", np.greater, ELEMENTWISE_NO_GRAD, ">", "a > b", domain=(-2.0, 2.0))
GE = binary("tg.ge", np.greater_equal, ELEMENTWISE_NO_GRAD, ">=", "a >= b", domain=(-2.0, 2.0))
EQ = binary("tg.eq", np.equal, ELEMENTWISE_NO_GRAD | {COMMUTATIVE}, "==", "a == b",
            domain=(-2.0, 2.0))
NE = binary("tg.ne", np.not_equal, ELEMENTWISE_NO_GRAD | {COMMUTATIVE}, "!=", "a != b",
            domain=(-2.0, 2.0))
# On bool operands bitwise and/or are logical and/or (and give bool); on integers
# they are bitwise, as `&`/`|` in NumPy. Floats are rejected.
AND = binary("tg.and", np.bitwise_and, ELEMENTWISE_NO_GRAD | {COMMUTATIVE}, "&",
             "a & b: logical on bool, bitwise on integers", domain=(-2.0, 2.0))
OR = binary("tg.or", np.bitwise_or, ELEMENTWISE_NO_GRAD | {COMMUTATIVE}, "|",
            "a | b: logical on bool, bitwise on integers", domain=(-2.0, 2.0))


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


NEG = unary("tg.neg", np.negative, sym="-", doc="-x", domain=(-2.0, 2.0))
ABS = unary("tg.abs", np.abs, doc="|x|", domain=(-2.0, 2.0))
EXP = unary("tg.exp", np.exp, doc="e ** x", domain=(-2.0, 2.0))
LOG = unary("tg.log", np.log, doc="natural logarithm", domain=(0.1, 4.0))
LOG1P = unary("tg.log1p", np.log1p, doc="log(1 + x), accurate near 0", domain=(-0.5, 2.0))
SQRT = unary("tg.sqrt", np.sqrt, doc="square root", domain=(0.1, 4.0))
TANH = unary("tg.tanh", np.tanh, doc="hyperbolic tangent", domain=(-2.0, 2.0))
SIGMOID = unary("tg.sigmoid", _sigmoid, doc="1 / (1 + exp(-x)), without overflow",
                domain=(-4.0, 4.0))
RELU = unary("tg.relu", _relu, doc="max(x, 0), keeping x's dtype", domain=(-2.0, 2.0))
SOFTPLUS = unary("tg.softplus", _softplus, doc="log(1 + exp(x)), computed stably",
                 domain=(-4.0, 4.0))
NOT = unary("tg.not", np.invert, ELEMENTWISE_NO_GRAD, "~",
            "~x: logical not on bool, bitwise on integers", domain=(-2.0, 2.0))
SQUARE = unary("tg.square", np.square, doc="x * x", domain=(-2.0, 2.0))
SIN = unary("tg.sin", np.sin, doc="sine", domain=(-3.0, 3.0))
COS = unary("tg.cos", np.cos, doc="cosine", domain=(-3.0, 3.0))
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
        doc="clip(x, lo, hi) = minimum(maximum(x, lo), hi) in x's dtype (lo, hi are converted)",
    )
)


def _cast_infer(types, attrs):
    (x,) = types
    return [TensorType(dtype_attr(attrs.get("dtype")), x.shape)]


def _cast(x, dtype):
    return np.asarray(x).astype(dtype_attr(dtype).np)


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
        doc='cast(x) {dtype = "f32"|"f64"|"i32"|"i64"|"bool"}: NumPy astype',
    )
)

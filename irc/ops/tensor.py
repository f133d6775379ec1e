"""Tensor-level ops: constants, matrix products, reductions, shape ops.
"""

from __future__ import annotations

import numpy as np

from irc.ir.types import TensorType, TypeError_, broadcast_shapes, dtype_of_numpy
from irc.ops.common import norm_axes, numpy_result_dtype
from irc.ops.registry import PURE, OpDef, defop


def _constant_infer(types, attrs):
    v = attrs.get("value")
    if not isinstance(v, np.ndarray):
        raise TypeError_("tg.constant needs an array `value`")
    return [TensorType(dtype_of_numpy(v.dtype), tuple(int(d) for d in v.shape))]


CONSTANT = defop(
    OpDef("tg.constant", infer=_constant_infer, numpy=lambda value: np.array(value), arity=0)
)


def _matmul_infer(types, attrs):
    a, b = types
    if a.rank == 0 or b.rank == 0:
        raise TypeError_(f"`@`: operands must have at least one dimension: {a} @ {b}")
    ash = a.shape if a.rank > 1 else (1,) + a.shape
    bsh = b.shape if b.rank > 1 else b.shape + (1,)
    if ash[-1] != bsh[-2]:
        raise TypeError_(f"`@`: inner dimensions differ: {a} @ {b}")
    batch = broadcast_shapes(ash[:-2], bsh[:-2])
    shape = batch + ((ash[-2],) if a.rank > 1 else ()) + ((bsh[-1],) if b.rank > 1 else ())
    return [TensorType(numpy_result_dtype(np.matmul, [a.dtype, b.dtype]), shape)]


MATMUL = defop(OpDef("tg.matmul", infer=_matmul_infer, numpy=np.matmul, arity=2, domain=(-1.0, 1.0)))


def reduce_infer(fn):
    def infer(types, attrs):
        (t,) = types
        axes = norm_axes(attrs.get("axis"), t.rank)
        keep = bool(attrs.get("keepdims", False))
        shape = tuple(1 if i in axes else d for i, d in enumerate(t.shape) if keep or i not in axes)
        return [TensorType(numpy_result_dtype(fn, [t.dtype]), shape)]

    return infer


def _sum(x, axis=None, keepdims=False):
    return np.sum(x, axis=axis, keepdims=keepdims)


SUM = defop(
    OpDef(
        "tg.sum",
        infer=reduce_infer(np.sum),
        numpy=_sum,
        arity=1,
        defaults={"axis": None, "keepdims": False},
        traits=frozenset({PURE}),
        domain=(-2.0, 2.0),
    )
)

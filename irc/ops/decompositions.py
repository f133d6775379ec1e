"""Decompositions of composite ops into primitives, for the `decompose`
pass; `attach()` registers each on its OpDef (OpDef.decompose). Each keeps
the numerically stable form of the composite:

  mean(x, axis)            -> sum(x, axis) * (1 / count)
  softmax(x, a)            -> e / sum(e, a)          with e = exp(x - max(x, a))
  log_softmax(x, a)        -> z - log(sum(exp(z), a)) with z = x - max(x, a)
  crossentropy_logits(x, y) -> -sum(onehot(y) * log_softmax(x), -1)   (labels)
                              -sum(y * log_softmax(x), -1)            (distributions)

Integer labels become a one-hot mask, so the whole loss is elementwise work
plus reductions, which fuse-elementwise turns into a few loops.
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from irc.ir import dims as D
from irc.ops.common import norm_axes
from irc.ops.registry import REGISTRY


def mean(b, op):
    """tg.mean(%x){axis} -> tg.mul(tg.sum(%x){axis}, 1/count)"""
    x = op.operands[0]
    if not op.results[0].type.dtype.is_float or x.type.dtype != op.results[0].type.dtype:
        return None
    axes = norm_axes(op.attrs.get("axis"), x.type.rank)
    count = 1
    for a in axes:
        count = D.dim_mul(count, x.type.shape[a])
    s = b.sum(x, axis=op.attrs.get("axis"), keepdims=op.attrs.get("keepdims", False))
    dt = x.type.dtype
    inv = (
        b.const(1.0 / count, dt)
        if isinstance(count, int) and count
        else b.div(b.const(1.0, dt), b.op("tg.dim", dim=count, dtype=dt.name))
    )
    return [b.mul(s, inv)]


def _shifted(b, x, axis):
    return b.sub(x, b.max(x, axis=(axis,), keepdims=True))


def softmax(b, op):
    """tg.softmax(%x){axis=a} -> e / sum(e){a},  e = exp(x - max(x){a})"""
    a = op.attrs.get("axis", -1)
    e = b.exp(_shifted(b, op.operands[0], a))
    return [b.div(e, b.sum(e, axis=(a,), keepdims=True))]


def _log_softmax(b, x, a):
    z = _shifted(b, x, a)
    return b.sub(z, b.log(b.sum(b.exp(z), axis=(a,), keepdims=True)))


def log_softmax(b, op):
    """tg.log_softmax(%x){axis=a} -> z - log(sum(exp(z)){a}),  z = x - max(x){a}"""
    return [_log_softmax(b, op.operands[0], op.attrs.get("axis", -1))]


def crossentropy_logits(b, op):
    """tg.crossentropy_logits(%x, %y) -> -sum(onehot(%y) * log_softmax(%x), -1)"""
    x, y = op.operands
    logp = _log_softmax(b, x, -1)
    if y.type.dtype.is_int:
        y = b.one_hot(y, n=x.type.shape[-1], dtype=x.type.dtype.name)
    elif y.type.dtype != x.type.dtype:
        return None
    return [b.neg(b.sum(b.mul(y, logp), axis=(-1,), keepdims=False))]


DECOMPOSITIONS = {
    "tg.mean": mean,
    "tg.softmax": softmax,
    "tg.log_softmax": log_softmax,
    "tg.crossentropy_logits": crossentropy_logits,
}


def attach() -> None:
    for name, fn in DECOMPOSITIONS.items():
        d = REGISTRY.get(name)
        if d is not None and d.decompose is None:
            d.decompose = fn


attach()

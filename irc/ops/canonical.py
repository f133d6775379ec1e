"""Canonical patterns of the tg ops: algebraic simplifications the
`canonicalize` pass applies to a fixed point. Each pattern is a function
`pattern(b, op) -> list of Values | None` (None: does not apply), its
docstring the rule in IR notation; `attach()` registers them on the OpDefs
(OpDef.canonical), so an op's patterns are found through the registry.

Only rewrites that hold for every input are here: x*0 -> 0 is applied to
integers only (for floats, inf*0 and nan*0 are nan).
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

import numpy as np

from irc.ir.core import Value
from irc.ops.registry import REGISTRY, semantic_attrs


def producer(v: Value, name: str = None):
    op = getattr(v, "op", None)
    if op is None:
        return None
    return op if name is None or op.name == name else None


def splat_value(v: Value):
    """The value of a constant whose elements are all equal (a scalar constant,
    or a broadcast of one), else None."""
    op = getattr(v, "op", None)
    if op is None:
        return None
    name = op.name
    if name == "tg.constant":
        arr = op.attrs["value"]
        size = arr.size
        if size == 1:  # (most constants: a scalar; arr.item() is its first element's)
            return arr.item()
        if size == 0:
            return None
        first = arr.reshape(-1)[0]
        if np.all(arr == first):
            return first.item()
        return None
    if name == "tg.broadcast_to":
        return splat_value(op.operands[0])
    return None


def _same(v: Value, op) -> bool:
    """Replacing op's result by v keeps the type (no broadcast, no promotion)."""
    return v.type == op.results[0].type


_SPLAT_PRODUCERS = ("tg.constant", "tg.broadcast_to")  # (the ops splat_value can read)


def _identity(neutral, side="both"):
    def pattern(b, op):
        x, y = op.operands
        px, py = getattr(x, "op", None), getattr(y, "op", None)
        if (px is None or px.name not in _SPLAT_PRODUCERS) and (
            py is None or py.name not in _SPLAT_PRODUCERS
        ):
            return None  # (neither operand is a constant: what the tests below come to)
        if side in ("both", "right") and splat_value(y) == neutral and _same(x, op):
            return [x]
        if side == "both" and splat_value(x) == neutral and _same(y, op):
            return [y]
        return None

    return pattern


add_zero = _identity(0)
add_zero.__doc__ = "tg.add(%x, 0) -> %x   (and 0 + x; when no broadcast or promotion happens)"
sub_zero = _identity(0, side="right")
sub_zero.__doc__ = "tg.sub(%x, 0) -> %x"
mul_one = _identity(1)
mul_one.__doc__ = "tg.mul(%x, 1) -> %x   (and 1 * x)"
div_one = _identity(1, side="right")
div_one.__doc__ = "tg.div(%x, 1) -> %x"
pow_one = _identity(1, side="right")
pow_one.__doc__ = "tg.pow(%x, 1) -> %x"


def mul_zero_int(b, op):
    """tg.mul(%x, 0) -> zeros   (integer and bool types only: for floats inf*0 is nan)"""
    t = op.results[0].type
    if t.dtype.is_float:
        return None
    for v in op.operands:
        if splat_value(v) == 0:
            z = b.const(0, t.dtype)
            return [z if t.rank == 0 else b.broadcast_to(z, shape=t.shape)]
    return None


def neg_neg(b, op):
    """tg.neg(tg.neg(%x)) -> %x"""
    inner = producer(op.operands[0], "tg.neg")
    return [inner.operands[0]] if inner is not None else None


def add_neg(b, op):
    """tg.add(%x, tg.neg(%y)) -> tg.sub(%x, %y)"""
    x, y = op.operands
    n = producer(y, "tg.neg")
    if n is not None:
        r = b.sub(x, n.operands[0])
        return [r] if r.type == op.results[0].type else None
    return None


def sub_neg(b, op):
    """tg.sub(%x, tg.neg(%y)) -> tg.add(%x, %y)"""
    x, y = op.operands
    n = producer(y, "tg.neg")
    if n is not None:
        r = b.add(x, n.operands[0])
        return [r] if r.type == op.results[0].type else None
    return None


def mul_constants(b, op):
    """tg.mul(tg.mul(%x, c1), c2) -> tg.mul(%x, c1*c2)   (scalar constants)"""
    x, c2 = op.operands
    if producer(x, "tg.mul") is None and producer(c2, "tg.mul") is None:
        return None  # (what the tests below come to when neither operand is a product)
    if splat_value(c2) is None or producer(c2, "tg.constant") is None or c2.type.rank != 0:
        x, c2 = c2, x
    if producer(c2, "tg.constant") is None or c2.type.rank != 0:
        return None
    inner = producer(x, "tg.mul")
    if inner is None or len(x.uses) != 1:
        return None
    a, c1 = inner.operands
    if producer(c1, "tg.constant") is None or c1.type.rank != 0:
        a, c1 = c1, a
    if producer(c1, "tg.constant") is None or c1.type.rank != 0:
        return None
    c = producer(c1).attrs["value"] * producer(c2).attrs["value"]
    r = b.mul(a, b.op("tg.constant", value=np.asarray(c, dtype=c2.type.dtype.np)))
    return [r] if r.type == op.results[0].type else None


def transpose_transpose(b, op):
    """tg.transpose(tg.transpose(%x){perm=p}){perm=q} -> tg.transpose(%x){perm=p[q]}, or %x"""
    inner = producer(op.operands[0], "tg.transpose")
    if inner is None:
        return None
    x = inner.operands[0]
    p = inner.attrs.get("perm") or tuple(reversed(range(x.type.rank)))
    q = op.attrs.get("perm") or tuple(reversed(range(x.type.rank)))
    perm = tuple(p[i] for i in q)
    if perm == tuple(range(x.type.rank)):
        return [x]
    return [b.transpose(x, perm=perm)]


def reshape_reshape(b, op):
    """tg.reshape(tg.reshape(%x)){shape=s} -> tg.reshape(%x){shape=s}; to its own shape -> %x"""
    x = op.operands[0]
    if x.type.shape == op.results[0].type.shape:
        return [x]
    inner = producer(x, "tg.reshape") or producer(x, "tg.flatten")
    if inner is None:
        return None
    return [b.reshape(inner.operands[0], shape=op.results[0].type.shape)]


def flatten_noop(b, op):
    """tg.flatten(%x) -> %x   when it does not change the shape"""
    x = op.operands[0]
    return [x] if x.type == op.results[0].type else None


def same_type_noop(b, op):
    """tg.broadcast_to / tg.cast / tg.index to the operand's own type and shape -> %x"""
    x = op.operands[0]
    if x.type != op.results[0].type:
        return None
    if op.name == "tg.index" and any(
        it != ("slice", None, None, 1) and it != ("ellipsis",) for it in op.attrs.get("items", ())
    ):
        return None
    return [x]


def broadcast_operand(b, op):
    """tg.add(%x, tg.broadcast_to(%c){shape=s}) -> tg.add(%x, %c)   when %x already has shape s
    (elementwise ops broadcast by themselves: no need to materialise the operand)"""
    for v in op.operands:  # (most ops have no broadcast operand: out before any list)
        p = getattr(v, "op", None)
        if p is not None and p.name == "tg.broadcast_to":
            break
    else:
        return None
    new = list(op.operands)
    changed = False
    for i, v in enumerate(op.operands):
        bc = producer(v, "tg.broadcast_to")
        if bc is None:
            continue
        trial = new[:i] + [bc.operands[0]] + new[i + 1 :]
        try:
            from irc.ops.registry import infer_types

            t = infer_types(op.name, [x.type for x in trial], op.attrs)
        except Exception:
            continue
        if t == [r.type for r in op.results]:
            new = trial
            changed = True
    if not changed:
        return None
    return [b.op(op.name, *new, **semantic_attrs(op))]


def sum_of_broadcast_scalar(b, op):
    """tg.sum(tg.broadcast_to(%c){shape=s}) -> %c * (number of elements)   (%c a scalar, all axes)"""
    bc = producer(op.operands[0], "tg.broadcast_to")
    if bc is None or bc.operands[0].type.rank != 0 or op.attrs.get("axis") is not None:
        return None
    if op.attrs.get("keepdims"):
        return None
    c = bc.operands[0]
    if c.type != op.results[0].type:
        return None
    from irc.ir import dims as D

    n = 1
    for d in bc.results[0].type.shape:
        n = D.dim_mul(n, d)
    count = (
        b.const(n, c.type.dtype)
        if isinstance(n, int)
        else b.op("tg.dim", dim=n, dtype=c.type.dtype.name)
    )
    return [b.mul(c, count)]


def index_of_broadcast(b, op):
    """tg.index(tg.broadcast_to(%s){shape}){items} -> tg.broadcast_to(%s){shape=result}
    when the items only add unit axes or keep whole axes (None, ..., :)"""
    bc = producer(op.operands[0], "tg.broadcast_to")
    if bc is None:
        return None
    if any(
        it not in (("none",), ("ellipsis",), ("slice", None, None, 1))
        for it in op.attrs.get("items", ())
    ):
        return None
    from irc.ops.registry import infer_types

    shape = op.results[0].type.shape
    try:
        t = infer_types("tg.broadcast_to", [bc.operands[0].type], {"shape": shape})
    except Exception:
        return None
    if t != [op.results[0].type]:
        return None
    return [b.broadcast_to(bc.operands[0], shape=shape)]


def argmax_of_softmax(b, op):
    """tg.argmax(tg.softmax(%x){axis=a}){axis=a} -> tg.argmax(%x){axis=a}   (softmax is increasing)"""
    sm = producer(op.operands[0], "tg.softmax")
    axis = op.attrs.get("axis")
    if sm is None or axis is None:
        return None
    rank = sm.operands[0].type.rank
    if axis % rank != sm.attrs["axis"] % rank:
        return None
    return [b.op(op.name, sm.operands[0], **semantic_attrs(op))]


PATTERNS = {
    "tg.argmax": [argmax_of_softmax],
    "tg.argmin": [argmax_of_softmax],
    "tg.add": [add_zero, add_neg, broadcast_operand],
    "tg.sub": [sub_zero, sub_neg, broadcast_operand],
    "tg.mul": [mul_one, mul_zero_int, mul_constants, broadcast_operand],
    "tg.div": [div_one, broadcast_operand],
    "tg.pow": [pow_one],
    "tg.maximum": [broadcast_operand],
    "tg.minimum": [broadcast_operand],
    "tg.where": [broadcast_operand],
    "tg.neg": [neg_neg],
    "tg.transpose": [transpose_transpose],
    "tg.reshape": [reshape_reshape],
    "tg.flatten": [flatten_noop],
    "tg.broadcast_to": [same_type_noop],
    "tg.cast": [same_type_noop],
    "tg.index": [same_type_noop, index_of_broadcast],
    "tg.sum": [sum_of_broadcast_scalar],
}


def attach() -> None:
    """Register the patterns on their OpDefs (idempotent)."""
    for name, pats in PATTERNS.items():
        d = REGISTRY.get(name)
        if d is None:
            continue
        for p in pats:
            if p not in d.canonical:
                d.canonical.append(p)


attach()

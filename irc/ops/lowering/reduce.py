"""Lowering of reductions: sum/mean/max/min (also a tg.fused with `reduce`),
argmax/argmin. Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

import numpy as np

from irc.ir.core import append_new_op
from irc.ir.sizes import iteration_type
from irc.ir.types import I32
from irc.ops.common import norm_axes, norm_axis
from irc.ops.lowering.emit import BOOL_T, IDX, REDUCE_KINDS, product
from irc.ops.registry import lowers


def _reduce_identity(emit, kind, dtype):
    if kind in ("sum", "mean"):
        return emit.const(0, dtype)
    if dtype.is_float:
        return emit.const(-np.inf if kind == "max" else np.inf, dtype)
    if dtype.is_bool:
        return emit.const(kind == "min", dtype)
    info = np.iinfo(dtype.np)
    return emit.const(info.min if kind == "max" else info.max, dtype)


def _combine(emit, kind, a, b):
    if kind in ("sum", "mean"):
        return emit.scalar("add", a, b, reassoc=True)
    return emit.scalar("maximum" if kind == "max" else "minimum", a, b)


def reduce_into(lowerer, emit, in_shape, axes, keep, kind, rdtype, out, value_at):
    """out[kept] = reduce(value_at(idx)) over `axes` of `in_shape`. value_at(emit,
    idx) is called once per element of in_shape, idx its full index, in the loop
    that visits it (lower_fused_reduce stores other results there)."""
    rank = len(in_shape)
    j0 = rank
    while j0 > 0 and (j0 - 1) in axes:
        j0 -= 1
    need_init = False
    for a in range(j0):
        if a in axes:
            need_init = True
            break
    suffix_shape = list(in_shape[j0:])
    n_suffix = rank - j0
    mean = kind == "mean"
    # where out is stored: the kept axes' indices, 0 on a reduced axis kept (keepdims)
    out_axes = [None if a in axes else a for a in range(rank) if keep or a not in axes]
    combine = "add" if kind == "sum" or mean else ("maximum" if kind == "max" else "minimum")
    reassoc = combine == "add"

    if need_init:
        ident = _reduce_identity(emit, kind, rdtype)
        emit.nest(out.type.shape, lambda e, idx: e.store(ident, out, idx))

    def step(e2, sidx, a):
        # (the suffix loop indices are appended to the prefix ones)
        b = e2.cast(value_at(e2, sidx), rdtype)
        if reassoc:  # (e2.scalar("add", a, b, reassoc=True) written out)
            return append_new_op(
                e2.block, "scalar.add", [a, b], [a.type], {"reassoc": True}, lowerer.loc
            ).results
        return [e2.scalar(combine, a, b)]

    def outer(e, idx):
        if n_suffix:
            acc0 = _reduce_identity(e, kind, rdtype)
            (acc,) = e.reduce_nest(suffix_shape, step, [acc0], idx)
        else:
            acc = e.cast(value_at(e, idx), rdtype)
        zero = lowerer.dim(0)
        oi = [zero if a is None else idx[a] for a in out_axes]
        if need_init:
            acc = _combine(e, kind, e.load(out, oi), acc)
        elif mean:
            acc = e.scalar("div", acc, e.cast(e.dim(product([in_shape[a] for a in axes])), rdtype))
        e.store(acc, out, oi)

    emit.nest(in_shape[:j0], outer, parallel=lambda k: k not in axes)
    if need_init and mean:
        n = emit.cast(emit.dim(product([in_shape[a] for a in axes])), rdtype)
        emit.nest(
            out.type.shape, lambda e, idx: e.store(e.scalar("div", e.load(out, idx), n), out, idx)
        )


_AXES: dict = {}  # (axis attribute, rank) -> the set of axes it names (norm_axes)


def _axes(axis, rank) -> set:
    key = (axis, rank)
    got = _AXES.get(key)
    if got is None:
        got = frozenset(norm_axes(axis, rank))
        if len(_AXES) < 1024:
            _AXES[key] = got
    return got


@lowers("tg.sum", "tg.mean", "tg.max", "tg.min")
def lower_reduce(lowerer, emit, op, vals):
    kind = REDUCE_KINDS[op.name]
    x = op.operands[0]
    v = op.results[0]
    axes = _axes(op.attrs.get("axis"), len(x.type.shape))
    keep = bool(op.attrs.get("keepdims", False))
    out = lowerer.result_buf(v)
    memo: dict = {}
    expr = lowerer.expr

    def value_at(e, idx):
        memo.clear()  # one evaluation per element (loops differ per call site)
        return expr(e, x, idx, vals, memo)

    reduce_into(lowerer, emit, x.type.shape, axes, keep, kind, v.type.dtype, out, value_at)
    vals[v] = out


def lower_fused_reduce(lowerer, emit, op, vals):
    shape = tuple(op.attrs["shape"])
    lowerer.iter_types[iteration_type(op)] = None  # (checked at the call: irc/ir/sizes.py)
    kind = op.attrs["reduce"]
    axes = _axes(op.attrs.get("axis"), len(shape))
    keep = bool(op.attrs.get("keepdims", False))
    r, extras = op.results[0], op.results[1:]
    out = lowerer.result_buf(r)
    # Results 1.. (values of the group other ops read) are stored at each element
    # by the reduction's own loop: reduce_into evaluates value_at once per element
    # of `shape`, with the element's full index.
    extra_bufs = [lowerer.result_buf(x) for x in extras]

    def value_at(e, idx):
        vs = lowerer.eval_fused_region(e, op, idx, vals, {})
        for x, v, buf in zip(extras, vs[1:], extra_bufs):
            e.store(e.cast(v, x.type.dtype), buf, idx)
        return vs[0]

    reduce_into(lowerer, emit, shape, axes, keep, kind, r.type.dtype, out, value_at)
    vals[r] = out
    for x, buf in zip(extras, extra_bufs):
        vals[x] = buf


@lowers("tg.argmax", "tg.argmin")
def lower_argreduce(lowerer, emit, op, vals):
    x = op.operands[0]
    v = op.results[0]
    xb = lowerer.buf(emit, x, vals)
    keep = bool(op.attrs.get("keepdims", False))
    axis = op.attrs.get("axis")
    is_max = op.name == "tg.argmax"
    out = lowerer.result_buf(v)
    if axis is None:
        n = product(x.type.shape)
        xb = emit.val("mem.view", [xb], x.type.with_shape((n,)))
        shape, ax = (n,), 0
    else:
        if isinstance(axis, tuple):
            (axis,) = axis
        shape, ax = x.type.shape, norm_axis(axis, x.type.rank)
    dt = x.type.dtype
    compare_dtype = I32 if dt.is_bool else dt
    outer_shape = [d for a, d in enumerate(shape) if a != ax]

    def body(e, oidx):
        def at(i):
            idx = list(oidx[:ax]) + [i] + list(oidx[ax:])
            return e.cast(e.load(xb, idx), compare_dtype)

        best0 = at(e.dim(0))

        def step(e2, i, best, bi):
            xv = e2.cast(e2.load(xb, list(oidx[:ax]) + [i] + list(oidx[ax:])), compare_dtype)
            better = e2.scalar("gt" if is_max else "lt", xv, best, t=BOOL_T)
            if compare_dtype.is_float:
                xnan = e2.scalar("ne", xv, xv, t=BOOL_T)
                bnan = e2.scalar("ne", best, best, t=BOOL_T)
                better = e2.scalar("or", better, e2.scalar("and", xnan, e2.scalar("not", bnan)))
            return [
                e2.scalar("select", better, xv, best, t=xv.type),
                e2.scalar("select", better, i, bi, t=IDX),
            ]

        _, bi = e.loop(e.dim(1), e.dim(shape[ax]), step, inits=[best0, e.dim(0)])
        res = e.cast(bi, I32)
        if axis is None:
            oi = [e.dim(0)] * v.type.rank
        else:
            oi = list(oidx[:ax]) + ([e.dim(0)] if keep else []) + list(oidx[ax:])
        e.store(res, out, oi)

    emit.nest(outer_shape, body)
    vals[v] = out

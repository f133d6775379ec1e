"""Lowering of data movement: views (reshape, flatten), transpose, static
and dynamic indexing and their gradients, gather/scatter_add, concat, stack,
arange, one_hot. Dynamic indices are checked (loop.assert) before any access.
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from irc.ir.core import Value
from irc.ir.dims import dim_add, dim_sub
from irc.ir.types import I64
from irc.ops.common import norm_axis
from irc.ops.lowering.emit import BOOL_T, IDX
from irc.ops.registry import lowers


@lowers("tg.reshape", "tg.flatten")
def lower_view(lowerer, emit, op, vals):
    x = op.operands[0]
    b = lowerer.buf(emit, x, vals)
    v = op.results[0]
    lowerer.viewed.add(x)
    lowerer.viewed.add(v)
    nb = emit.val("mem.view", [b], v.type)
    vals[v] = nb


@lowers("tg.transpose")
def lower_transpose(lowerer, emit, op, vals):
    v = op.results[0]
    if v in lowerer.absorbed:
        vals[v] = ("T", op.operands[0])
        return
    x = op.operands[0]
    perm = op.attrs.get("perm")
    r = x.type.rank
    perm = tuple(range(r))[::-1] if perm is None else tuple(norm_axis(p, r) for p in perm)
    xb = lowerer.buf(emit, x, vals)
    out = lowerer.result_buf(v)

    def body(e, idx):
        src = [None] * r
        for j, p in enumerate(perm):
            src[p] = idx[j]
        e.store(e.load(xb, src), out, idx)

    emit.nest(v.type.shape, body)
    vals[v] = out


def _static_start(item, d):
    """(start index as a dim, step) of a slice item on an axis of size d."""
    _, start, stop, step = item
    step = 1 if step is None else step
    if isinstance(d, int):
        s, _, st = slice(start, stop, step).indices(d)
        return s, st
    if step > 0:
        if start is None:
            return 0, step
        return (dim_add(d, start) if start < 0 else start), step
    if start is None:
        return dim_sub(d, 1), step
    return (dim_add(d, start) if start < 0 else start), step


def _index_plan(emit, items, xt):
    """Per axis of x: ("out", out_axis, start, step) or ("fixed", index dim); asserts
    the fixed indices on named dims are in range."""
    items = [tuple(it) for it in items]
    used = sum(1 for it in items if it[0] in ("int", "slice"))
    if not any(it[0] == "ellipsis" for it in items):
        items.append(("ellipsis",))
    plan = []
    oaxis = 0
    axis = 0
    for it in items:
        if it[0] == "none":
            oaxis += 1
        elif it[0] == "ellipsis":
            for _ in range(xt.rank - used):
                plan.append(("out", oaxis, 0, 1))
                oaxis += 1
                axis += 1
        elif it[0] == "int":
            k, d = it[1], xt.shape[axis]
            fixed = k if k >= 0 else dim_add(d, k)
            plan.append(("fixed", fixed))
            if not isinstance(d, int):
                i = emit.dim(fixed)
                ok = emit.scalar(
                    "and",
                    emit.scalar("ge", i, emit.dim(0), t=BOOL_T),
                    emit.scalar("lt", i, emit.dim(d), t=BOOL_T),
                )
                emit.assert_(ok, f"index {k} is out of range for an axis of size {d}")
            axis += 1
        else:
            start, step = _static_start(it, xt.shape[axis])
            plan.append(("out", oaxis, start, step))
            oaxis += 1
            axis += 1
    return plan


def _index_src(e, plan, idx):
    src = []
    for p in plan:
        if p[0] == "fixed":
            src.append(e.dim(p[1]))
        else:
            _, oa, start, step = p
            i = idx[oa]
            if step != 1:
                i = e.mul_i(i, e.const(step, I64))
            if start != 0:
                i = e.add_i(i, e.dim(start))
            src.append(i)
    return src


@lowers("tg.index")
def lower_index(lowerer, emit, op, vals):
    x = op.operands[0]
    v = op.results[0]
    plan = _index_plan(emit, op.attrs.get("items", ()), x.type)
    xb = lowerer.buf(emit, x, vals)
    out = lowerer.result_buf(v)
    emit.nest(v.type.shape, lambda e, idx: e.store(e.load(xb, _index_src(e, plan, idx)), out, idx))
    vals[v] = out


def _load_index(e, buf) -> Value:
    return e.cast(e.load(buf, []), I64)


@lowers("tg.dynamic_slice")
def lower_dynamic_slice(lowerer, emit, op, vals):
    x, *starts = op.operands
    v = op.results[0]
    axes = op.attrs.get("axes", ())
    if isinstance(axes, int):
        axes = (axes,)
    axes = [norm_axis(a, x.type.rank) for a in axes]
    sizes = list(op.attrs.get("sizes", ()))
    xb = lowerer.buf(emit, x, vals)
    offs = {}
    for a, s, n in zip(axes, starts, sizes):
        st = _load_index(emit, lowerer.buf(emit, s, vals))
        end = emit.add_i(st, emit.dim(n))
        ok = emit.scalar(
            "and",
            emit.scalar("ge", st, emit.dim(0), t=BOOL_T),
            emit.scalar("le", end, emit.dim(x.type.shape[a]), t=BOOL_T),
        )
        emit.assert_(
            ok, f"dynamic slice of size {n} is out of range for axis {a} of size {x.type.shape[a]}"
        )
        offs[a] = st
    out = lowerer.result_buf(v)

    def body(e, idx):
        src = [e.add_i(i, offs[k]) if k in offs else i for k, i in enumerate(idx)]
        e.store(e.load(xb, src), out, idx)

    emit.nest(v.type.shape, body)
    vals[v] = out


@lowers("tg.dynamic_index")
def lower_dynamic_index(lowerer, emit, op, vals):
    x, *ids = op.operands
    v = op.results[0]
    axes = op.attrs.get("axes", ())
    if isinstance(axes, int):
        axes = (axes,)
    axes = [norm_axis(a, x.type.rank) for a in axes]
    xb = lowerer.buf(emit, x, vals)
    fixed = {}
    for a, s in zip(axes, ids):
        i = _load_index(emit, lowerer.buf(emit, s, vals))
        n = emit.dim(x.type.shape[a])
        i = emit.scalar(
            "select", emit.scalar("lt", i, emit.dim(0), t=BOOL_T), emit.add_i(i, n), i, t=IDX
        )
        ok = emit.scalar(
            "and", emit.scalar("ge", i, emit.dim(0), t=BOOL_T), emit.scalar("lt", i, n, t=BOOL_T)
        )
        emit.assert_(ok, f"index is out of range for axis {a} of size {x.type.shape[a]}")
        fixed[a] = i
    out = lowerer.result_buf(v)

    def body(e, idx):
        it = iter(idx)
        src = [fixed[k] if k in fixed else next(it) for k in range(x.type.rank)]
        e.store(e.load(xb, src), out, idx)

    emit.nest(v.type.shape, body)
    vals[v] = out


@lowers("tg.gather")
def lower_gather(lowerer, emit, op, vals):
    x, *ids = op.operands
    v = op.results[0]
    axes = op.attrs.get("axes", (0,))
    if isinstance(axes, int):
        axes = (axes,)
    axes = [norm_axis(a, x.type.rank) for a in axes]
    a0, k = axes[0], len(axes)
    xb = lowerer.buf(emit, x, vals)
    ibs = [lowerer.buf(emit, i, vals) for i in ids]
    bshape = v.type.shape[a0 : v.type.rank - (x.type.rank - a0 - k)]
    out = lowerer.result_buf(v)

    def body(e, idx):
        pre = idx[:a0]
        bidx = idx[a0 : a0 + len(bshape)]
        post = idx[a0 + len(bshape) :]
        src = list(pre)
        for j, (ib, iv) in enumerate(zip(ibs, ids)):
            i = e.cast(e.load(ib, lowerer.index_map(e, iv.type.shape, bshape, bidx)), I64)
            n = e.dim(x.type.shape[a0 + j])
            i = e.scalar("select", e.scalar("lt", i, e.dim(0), t=BOOL_T), e.add_i(i, n), i, t=IDX)
            ok = e.scalar(
                "and", e.scalar("ge", i, e.dim(0), t=BOOL_T), e.scalar("lt", i, n, t=BOOL_T)
            )
            e.assert_(ok, f"index is out of range for axis {a0 + j} of size {x.type.shape[a0 + j]}")
            src.append(i)
        e.store(e.load(xb, src + list(post)), out, idx)

    emit.nest(v.type.shape, body)
    vals[v] = out


@lowers("tg.concat")
def lower_concat(lowerer, emit, op, vals):
    v = op.results[0]
    axis = norm_axis(op.attrs.get("axis", 0), v.type.rank)
    out = lowerer.result_buf(v)
    off = 0
    for x in op.operands:
        xb = lowerer.buf(emit, x, vals)

        def body(e, idx, xb=xb, off=off):
            dst = list(idx)
            if off != 0:
                dst[axis] = e.add_i(idx[axis], e.dim(off))
            e.store(e.cast(e.load(xb, idx), v.type.dtype), out, dst)

        emit.nest(x.type.shape, body)
        off = dim_add(off, x.type.shape[axis])
    vals[v] = out


@lowers("tg.stack")
def lower_stack(lowerer, emit, op, vals):
    v = op.results[0]
    axis = norm_axis(op.attrs.get("axis", 0), v.type.rank)
    out = lowerer.result_buf(v)
    for k, x in enumerate(op.operands):
        xb = lowerer.buf(emit, x, vals)

        def body(e, idx, xb=xb, k=k):
            dst = list(idx[:axis]) + [e.dim(k)] + list(idx[axis:])
            e.store(e.cast(e.load(xb, idx), v.type.dtype), out, dst)

        emit.nest(x.type.shape, body)
    vals[v] = out


@lowers("tg.arange")
def lower_arange(lowerer, emit, op, vals):
    v = op.results[0]
    out = lowerer.result_buf(v)
    emit.nest(v.type.shape, lambda e, idx: e.store(e.cast(idx[0], v.type.dtype), out, idx))
    vals[v] = out


@lowers("tg.one_hot")
def lower_one_hot(lowerer, emit, op, vals):
    y = op.operands[0]
    v = op.results[0]
    yb = lowerer.buf(emit, y, vals)
    out = lowerer.result_buf(v)

    def body(e, idx):
        lab = e.cast(e.load(yb, idx[:-1]), I64)
        e.store(e.cast(e.scalar("eq", lab, idx[-1], t=BOOL_T), v.type.dtype), out, idx)

    emit.nest(v.type.shape, body)
    vals[v] = out


def _zero_fill(emit, out):
    zero = emit.const(0, out.type.dtype)
    emit.nest(out.type.shape, lambda e, idx: e.store(zero, out, idx))


@lowers("tg.index_grad")
def lower_index_grad(lowerer, emit, op, vals):
    g = op.operands[0]
    v = op.results[0]
    plan = _index_plan(emit, op.attrs.get("items", ()), v.type)
    gb = lowerer.buf(emit, g, vals)
    out = lowerer.result_buf(v)
    _zero_fill(emit, out)
    emit.nest(g.type.shape, lambda e, idx: e.store(e.load(gb, idx), out, _index_src(e, plan, idx)))
    vals[v] = out


@lowers("tg.dynamic_slice_grad")
def lower_dynamic_slice_grad(lowerer, emit, op, vals):
    g, *starts = op.operands
    v = op.results[0]
    axes = op.attrs.get("axes", ())
    if isinstance(axes, int):
        axes = (axes,)
    axes = [norm_axis(a, v.type.rank) for a in axes]
    gb = lowerer.buf(emit, g, vals)
    offs = {}
    for a, s in zip(axes, starts):
        st = _load_index(emit, lowerer.buf(emit, s, vals))
        end = emit.add_i(st, emit.dim(g.type.shape[a]))
        ok = emit.scalar(
            "and",
            emit.scalar("ge", st, emit.dim(0), t=BOOL_T),
            emit.scalar("le", end, emit.dim(v.type.shape[a]), t=BOOL_T),
        )
        emit.assert_(ok, f"dynamic slice is out of range for axis {a} of size {v.type.shape[a]}")
        offs[a] = st
    out = lowerer.result_buf(v)
    _zero_fill(emit, out)

    def body(e, idx):
        dst = [e.add_i(i, offs[k]) if k in offs else i for k, i in enumerate(idx)]
        e.store(e.load(gb, idx), out, dst)

    emit.nest(g.type.shape, body)
    vals[v] = out


@lowers("tg.scatter_add")
def lower_scatter_add(lowerer, emit, op, vals):
    g, *ids = op.operands
    v = op.results[0]
    axes = op.attrs.get("axes", (0,))
    if isinstance(axes, int):
        axes = (axes,)
    axes = [norm_axis(a, v.type.rank) for a in axes]
    a0, k = axes[0], len(axes)
    gb = lowerer.buf(emit, g, vals)
    ibs = [lowerer.buf(emit, i, vals) for i in ids]
    bshape = g.type.shape[a0 : g.type.rank - (v.type.rank - a0 - k)]
    out = lowerer.result_buf(v)
    _zero_fill(emit, out)

    def body(e, idx):
        pre, bidx, post = idx[:a0], idx[a0 : a0 + len(bshape)], idx[a0 + len(bshape) :]
        dst = list(pre)
        for j, (ib, iv) in enumerate(zip(ibs, ids)):
            i = e.cast(e.load(ib, lowerer.index_map(e, iv.type.shape, bshape, bidx)), I64)
            n = e.dim(v.type.shape[a0 + j])
            i = e.scalar("select", e.scalar("lt", i, e.dim(0), t=BOOL_T), e.add_i(i, n), i, t=IDX)
            ok = e.scalar(
                "and", e.scalar("ge", i, e.dim(0), t=BOOL_T), e.scalar("lt", i, n, t=BOOL_T)
            )
            e.assert_(ok, f"index is out of range for axis {a0 + j} of size {v.type.shape[a0 + j]}")
            dst.append(i)
        dst += list(post)
        e.store(e.scalar("add", e.load(out, dst), e.load(gb, idx)), out, dst)

    # repeated indices accumulate: one thread, in order
    emit.nest(g.type.shape, body, parallel=False)
    vals[v] = out

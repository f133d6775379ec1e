"""Indexing ops: static indexing and slicing (tg.index, its gradient
tg.index_grad), indexing by run-time scalars (tg.dynamic_slice, tg.dynamic_index
and gradients), gather and scatter_add. Types, NumPy semantics, gradients, costs.
Indices are checked at run time by the lowerings (irc/ops/lowering/index.py).
Imports only irc.ir and irc.ops.
"""


from __future__ import annotations

import numpy as np

from irc.ir.dims import dim_add, dim_floordiv, dim_sub
from irc.ir.types import (
    TypeError_,
    broadcast_shapes,
)
from irc.ops.common import (
    as_dims,
    fmt_shape,
    named_infer,
    norm_axis,
)
from irc.ops.cost import no_flops, per_input_element
from irc.ops.registry import NO_GRAD, PURE, OpDef, defop
from irc.ops.tensor import dim_value, restore_axes

PURE_NO_GRAD = frozenset({PURE, NO_GRAD})


# -- static indexing ----------------------------------------------------------------------
def _slice_text(start, stop, step):
    s = f"{'' if start is None else start}:{'' if stop is None else stop}"
    return s if step == 1 else f"{s}:{step}"


def slice_length(d, start, stop, step):
    """The length NumPy gives `x[start:stop:step]` on an axis of size `d`.

    Exact for an int `d`. For a named dim (or dim expression) the bounds are
    assumed to be in range and the slice non-empty, as in `x[1:]` (N-1),
    `x[:-1]` (N-1), `x[::2]` ((N+1)//2), `x[-3:]` (3); a slice of two bounds
    counted from the same end has an int length, clamped at 0 (`x[3:1]` is 0).
    A slice whose length would shrink as `d` grows (`x[-2:3]`) has no useful
    symbolic length and is rejected."""
    if step == 0:
        raise TypeError_("slice step cannot be zero")
    if isinstance(d, int):
        return len(range(*slice(start, stop, step).indices(d)))

    def pos(b):
        return b if b >= 0 else dim_add(d, b)

    if step > 0:
        if start is not None and start < 0 and stop is not None and stop >= 0:
            raise TypeError_(
                f"the length of slice {_slice_text(start, stop, step)} of dimension {d} "
                "is not known at compile time (use bounds of one sign)"
            )
        lo = 0 if start is None else pos(start)
        hi = d if stop is None else pos(stop)
    else:
        if start is not None and start >= 0 and stop is not None and stop < 0:
            raise TypeError_(
                f"the length of slice {_slice_text(start, stop, step)} of dimension {d} "
                "is not known at compile time (use bounds of one sign)"
            )
        hi = dim_sub(d, 1) if start is None else pos(start)
        lo = -1 if stop is None else pos(stop)
    k = abs(step)
    n = dim_floordiv(dim_add(dim_sub(hi, lo), k - 1), k)
    return max(n, 0) if isinstance(n, int) else n


def _as_int(v, what):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError_(f"{what} must be an integer, got {v!r}")
    return int(v)


def _items(items):
    """Validated index items as tuples: ("int", k), ("slice", a, b, c), ("none",), ("ellipsis",)."""
    if not isinstance(items, (tuple, list)):
        raise TypeError_(f"bad index items {items!r}")
    out = []
    for it in items:
        if not isinstance(it, (tuple, list)) or not it:
            raise TypeError_(f"bad index item {it!r}")
        kind = it[0]
        if kind == "int" and len(it) == 2:
            out.append(("int", _as_int(it[1], "an index")))
        elif kind == "slice" and len(it) == 4:
            a, b, c = it[1:]
            a = None if a is None else _as_int(a, "a slice bound")
            b = None if b is None else _as_int(b, "a slice bound")
            c = 1 if c is None else _as_int(c, "a slice step")
            out.append(("slice", a, b, c))
        elif kind in ("none", "ellipsis") and len(it) == 1:
            out.append((kind,))
        else:
            raise TypeError_(f"bad index item {tuple(it)!r}")
    if sum(1 for it in out if it[0] == "ellipsis") > 1:
        raise TypeError_("an index can only have a single ellipsis ('...')")
    return out


def _index_infer(types, attrs):
    (x,) = types
    items = _items(attrs.get("items", ()))
    used = sum(1 for it in items if it[0] in ("int", "slice"))
    if used > x.rank:
        raise TypeError_(f"too many indices for {x}: {used} given")
    if not any(it[0] == "ellipsis" for it in items):
        items = items + [("ellipsis",)]
    shape = []
    axis = 0
    for it in items:
        if it[0] == "none":
            shape.append(1)
        elif it[0] == "ellipsis":
            n = x.rank - used
            shape.extend(x.shape[axis : axis + n])
            axis += n
        elif it[0] == "int":
            d, k = x.shape[axis], it[1]
            if isinstance(d, int) and not -d <= k < d:
                raise TypeError_(f"index {k} is out of range for axis {axis} of size {d} in {x}")
            axis += 1
        else:
            shape.append(slice_length(x.shape[axis], *it[1:]))
            axis += 1
    return [x.with_shape(shape)]


def _index(x, items=()):
    key = []
    for it in items:
        if it[0] == "int":
            key.append(it[1])
        elif it[0] == "slice":
            key.append(slice(*it[1:]))
        elif it[0] == "none":
            key.append(None)
        else:
            key.append(Ellipsis)
    return np.asarray(np.asarray(x)[tuple(key)])


def _vjp_index(b, op, g):
    x = op.operands[0]
    return [b.op("tg.index_grad", g, items=op.attrs["items"], shape=x.type.shape)]


INDEX = defop(
    OpDef(
        "tg.index",
        cost=no_flops,
        infer=named_infer("[]", _index_infer),
        numpy=_index,
        arity=1,
        defaults={"items": ()},
        domain=(-2.0, 2.0),
        vjp=_vjp_index,
        doc='x[...] with static items: ("int", k), ("slice", start, stop, step), ("none",), '
        '("ellipsis",); NumPy basic indexing',
    )
)


def _index_grad_infer(types, attrs):
    (g,) = types
    shape = as_dims(attrs.get("shape", ()), "shape")
    want = _index_infer([g.with_shape(shape)], attrs)[0].shape
    if want != g.shape:
        raise TypeError_(
            f"{g} is not the shape {fmt_shape(want)} of x[...] for x of shape {fmt_shape(shape)}"
        )
    return [g.with_shape(shape)]


def _index_grad(g, items=(), shape=()):
    g = np.asarray(g)
    out = np.zeros(tuple(shape), dtype=g.dtype)
    key = []
    for it in items:
        if it[0] == "int":
            key.append(it[1])
        elif it[0] == "slice":
            key.append(slice(*it[1:]))
        else:
            key.append(None if it[0] == "none" else Ellipsis)
    # Basic indexing selects each element at most once: assignment is exact.
    out[tuple(key)] = g
    return out


INDEX_GRAD = defop(
    OpDef(
        "tg.index_grad",
        cost=no_flops,
        infer=named_infer("index_grad", _index_grad_infer),
        numpy=_index_grad,
        arity=1,
        defaults={"items": ()},
        dim_attrs=("shape",),
        domain=(-2.0, 2.0),
        vjp=lambda b, op, g: [b.index(g, items=op.attrs["items"])],
        doc="index_grad(g) {items, shape}: zeros of `shape` with g written at x[items] "
        "(the transpose of tg.index, its gradient)",
    )
)


# -- dynamic (runtime scalar) indexing -----------------------------------------------------
def _dynamic_axes(types, attrs, what):
    x, idx = types[0], types[1:]
    axes = attrs.get("axes", ())
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    naxes = tuple(norm_axis(a, x.rank) for a in axes)
    if len(set(naxes)) != len(naxes):
        raise TypeError_(f"repeated axis in {tuple(axes)}")
    if len(idx) != len(naxes):
        raise TypeError_(f"{len(naxes)} axes need {len(naxes)} {what}, got {len(idx)}")
    for t in idx:
        if not (t.is_scalar and t.dtype.is_int):
            raise TypeError_(f"{what} must be integer scalars, got {t}")
    return x, naxes


def _dynamic_slice_infer(types, attrs):
    if not types:
        raise TypeError_("needs a tensor operand")
    x, axes = _dynamic_axes(types, attrs, "start indices")
    sizes = as_dims(attrs.get("sizes", ()), "sizes")
    if len(sizes) != len(axes):
        raise TypeError_(f"{len(axes)} axes need {len(axes)} sizes, got {len(sizes)}")
    shape = list(x.shape)
    for a, s in zip(axes, sizes):
        d = shape[a]
        if isinstance(s, int) and s < 0:
            raise TypeError_(f"negative slice size {s}")
        if isinstance(s, int) and isinstance(d, int) and s > d:
            raise TypeError_(f"a slice of size {s} does not fit axis {a} of size {d} in {x}")
        shape[a] = s
    return [x.with_shape(shape)]


def _dynamic_slice(x, *starts, axes=(), sizes=()):
    x = np.asarray(x)
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    key = [slice(None)] * x.ndim
    for a, s, n in zip(axes, starts, sizes):
        a = a % x.ndim
        s = int(s)
        if s < 0 or s + n > x.shape[a]:
            raise IndexError(
                f"dynamic slice [{s}:{s + n}] is out of range for axis {a} of size {x.shape[a]}"
            )
        key[a] = slice(s, s + n)
    return x[tuple(key)]


def _vjp_dynamic_slice(b, op, g):
    x, starts = op.operands[0], op.operands[1:]
    gx = b.op("tg.dynamic_slice_grad", g, *starts, axes=op.attrs["axes"], shape=x.type.shape)
    return [gx] + [None] * len(starts)


DYNAMIC_SLICE = defop(
    OpDef(
        "tg.dynamic_slice",
        cost=no_flops,
        infer=named_infer("[]", _dynamic_slice_infer),
        numpy=_dynamic_slice,
        arity=None,
        defaults={"axes": (), "sizes": ()},
        dim_attrs=("sizes",),
        domain=(-2.0, 2.0),
        vjp=_vjp_dynamic_slice,
        doc="dynamic_slice(x, start...) {axes, sizes}: x[start:start+size] on each axis, "
        "start a runtime integer scalar; out of range is an IndexError at run time",
    )
)


def _dynamic_slice_grad_infer(types, attrs):
    if not types:
        raise TypeError_("needs a tensor operand")
    g = types[0]
    shape = as_dims(attrs.get("shape", ()), "shape")
    _, axes = _dynamic_axes([g.with_shape(shape)] + list(types[1:]), attrs, "start indices")
    if g.rank != len(shape) or any(
        g.shape[i] != shape[i] for i in range(len(shape)) if i not in axes
    ):
        raise TypeError_(f"{g} does not fit {fmt_shape(shape)} outside the axes {axes}")
    return [g.with_shape(shape)]


def _dynamic_slice_grad(g, *starts, axes=(), shape=()):
    g = np.asarray(g)
    out = np.zeros(tuple(shape), dtype=g.dtype)
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    key = [slice(None)] * out.ndim
    for a, s in zip(axes, starts):
        a = a % out.ndim
        s, n = int(s), g.shape[a]
        if s < 0 or s + n > out.shape[a]:
            raise IndexError(
                f"dynamic slice [{s}:{s + n}] is out of range for axis {a} of size {out.shape[a]}"
            )
        key[a] = slice(s, s + n)
    out[tuple(key)] = g
    return out


def _vjp_dynamic_slice_grad(b, op, g):
    gin, starts = op.operands[0], op.operands[1:]
    axes = tuple(norm_axis(a, gin.type.rank) for a in _axes_tuple(op.attrs["axes"]))
    sizes = tuple(gin.type.shape[a] for a in axes)
    return [b.dynamic_slice(g, *starts, axes=axes, sizes=sizes)] + [None] * len(starts)


def _axes_tuple(axes):
    return (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)


DYNAMIC_SLICE_GRAD = defop(
    OpDef(
        "tg.dynamic_slice_grad",
        cost=no_flops,
        infer=named_infer("dynamic_slice_grad", _dynamic_slice_grad_infer),
        numpy=_dynamic_slice_grad,
        arity=None,
        defaults={"axes": ()},
        dim_attrs=("shape",),
        domain=(-2.0, 2.0),
        vjp=_vjp_dynamic_slice_grad,
        doc="dynamic_slice_grad(g, start...) {axes, shape}: zeros of `shape` with g written "
        "at [start:start+size] on each axis (the transpose of tg.dynamic_slice)",
    )
)


def _dynamic_index_infer(types, attrs):
    if not types:
        raise TypeError_("needs a tensor operand")
    x, axes = _dynamic_axes(types, attrs, "indices")
    return [x.with_shape(d for i, d in enumerate(x.shape) if i not in axes)]


def _dynamic_index(x, *idx, axes=()):
    x = np.asarray(x)
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    key = [slice(None)] * x.ndim
    for a, i in zip(axes, idx):
        a = a % x.ndim
        i = int(i)
        n = x.shape[a]
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for axis {a} of size {n}")
        key[a] = i if i >= 0 else i + n
    return np.asarray(x[tuple(key)])


def _vjp_dynamic_index(b, op, g):
    """Put the removed axes back (size 1) and write g at the index, made
    non-negative first: tg.dynamic_slice_grad takes starts in [0, size)."""
    x, idx = op.operands[0], op.operands[1:]
    axes = tuple(norm_axis(a, x.type.rank) for a in _axes_tuple(op.attrs["axes"]))
    g1 = restore_axes(b, g, x.type.rank, set(axes))
    starts = []
    for a, i in zip(axes, idx):
        n = dim_value(b, x.type.shape[a], i.type.dtype)
        starts.append(b.where(b.lt(i, b.like(0, i)), b.add(i, n), i))
    gx = b.op("tg.dynamic_slice_grad", g1, *starts, axes=axes, shape=x.type.shape)
    return [gx] + [None] * len(idx)


DYNAMIC_INDEX = defop(
    OpDef(
        "tg.dynamic_index",
        cost=no_flops,
        infer=named_infer("[]", _dynamic_index_infer),
        numpy=_dynamic_index,
        arity=None,
        defaults={"axes": ()},
        domain=(-2.0, 2.0),
        vjp=_vjp_dynamic_index,
        doc="dynamic_index(x, i...) {axes}: x[i] on each axis (removing it), i a runtime "
        "integer scalar, negative from the end; out of range is an IndexError at run time",
    )
)


def _gather_infer(types, attrs):
    if len(types) < 2:
        raise TypeError_("integer-array indexing needs a tensor and at least one index array")
    x, idx = types[0], types[1:]
    axes = attrs.get("axes", ())
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    naxes = tuple(norm_axis(a, x.rank) for a in axes)
    if len(naxes) != len(idx):
        raise TypeError_(f"{len(naxes)} axes need {len(naxes)} index arrays, got {len(idx)}")
    if naxes != tuple(range(naxes[0], naxes[0] + len(naxes))):
        raise TypeError_(f"integer-array indices must be on consecutive axes, got {tuple(axes)}")
    for t in idx:
        if not t.dtype.is_int:
            raise TypeError_(f"index arrays must be integer, got {t}")
    bshape = broadcast_shapes(*(t.shape for t in idx))
    a0 = naxes[0]
    return [x.with_shape(x.shape[:a0] + bshape + x.shape[a0 + len(naxes) :])]


def _gather(x, *idx, axes=()):
    x = np.asarray(x)
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    a0 = min(a % x.ndim for a in axes)
    return np.asarray(x[(slice(None),) * a0 + tuple(np.asarray(i) for i in idx)])


def _vjp_gather(b, op, g):
    x, idx = op.operands[0], op.operands[1:]
    gx = b.op("tg.scatter_add", g, *idx, axes=op.attrs["axes"], shape=x.type.shape)
    return [gx] + [None] * len(idx)


GATHER = defop(
    OpDef(
        "tg.gather",
        cost=no_flops,
        infer=named_infer("[]", _gather_infer),
        numpy=_gather,
        arity=None,
        defaults={"axes": (0,)},
        domain=(-2.0, 2.0),
        vjp=_vjp_gather,
        doc="gather(x, idx...) {axes}: NumPy integer-array indexing on consecutive axes "
        "(x[arange(N), y]); the broadcast index shape replaces those axes",
    )
)


def _scatter_add_infer(types, attrs):
    if len(types) < 2:
        raise TypeError_("needs values and at least one index array")
    g = types[0]
    shape = as_dims(attrs.get("shape", ()), "shape")
    want = _gather_infer([g.with_shape(shape)] + list(types[1:]), attrs)[0].shape
    if want != g.shape:
        raise TypeError_(f"{g} is not the shape {fmt_shape(want)} that gathering gives")
    return [g.with_shape(shape)]


def _scatter_add(g, *idx, axes=(0,), shape=()):
    g = np.asarray(g)
    out = np.zeros(tuple(shape), dtype=g.dtype)
    a0 = min(a % out.ndim for a in _axes_tuple(axes))
    # np.add.at, not assignment: a repeated index accumulates.
    np.add.at(out, (slice(None),) * a0 + tuple(np.asarray(i) for i in idx), g)
    return out


def _vjp_scatter_add(b, op, g):
    idx = op.operands[1:]
    return [b.gather(g, *idx, axes=op.attrs["axes"])] + [None] * len(idx)


SCATTER_ADD = defop(
    OpDef(
        "tg.scatter_add",
        cost=per_input_element,
        infer=named_infer("scatter_add", _scatter_add_infer),
        numpy=_scatter_add,
        arity=None,
        defaults={"axes": (0,)},
        dim_attrs=("shape",),
        domain=(-2.0, 2.0),
        vjp=_vjp_scatter_add,
        doc="scatter_add(g, idx...) {axes, shape}: zeros of `shape` plus g added at the "
        "positions gather(x, idx...) {axes} reads, repeated indices accumulating "
        "(np.add.at; the transpose of tg.gather)",
    )
)

"""Tensor-level ops: constants, matrix products, reductions, indexing (static,
dynamic and integer-array gather) and shape ops (transpose, reshape, flatten,
concat, stack, arange, one_hot, broadcast_to), their gradient rules, and the
helper ops those rules need: tg.index_grad, tg.dynamic_slice_grad and
tg.scatter_add write a cotangent into zeros of the operand's shape (the
transposes of tg.index, tg.dynamic_slice and tg.gather; each one's own vjp is
the op it transposes, so second derivatives work).

Shapes may hold named dims and dim expressions; output shapes are computed with
irc.ir.dims so that `x[1:]` on `N` is `N-1` and `reshape(x, [T*B, D])` checks
that the element counts agree. Attributes that hold dims are listed in each
OpDef's `dim_attrs`; the caller evaluates them to ints before calling `numpy`.
Gradient conventions: max/min reductions split the cotangent equally among
the elements equal to the extremum; repeated gather indices accumulate
(np.add.at).
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

import numpy as np

from irc.ir.dims import dim_add, dim_floordiv, dim_mul, dim_sub, parse_dim, same_dim, same_shape
from irc.ir.types import (
    I32,
    TensorType,
    TypeError_,
    broadcast_shapes,
    dtype_of_numpy,
    promote_dtypes,
)
from irc.ops.common import (
    arrayed,
    as_dim,
    as_dims,
    dtype_attr,
    fmt_shape,
    named_infer,
    norm_axes,
    norm_axis,
    np_axis,
    numpy_result_dtype,
)
from irc.ops.registry import NO_GRAD, PURE, OpDef, defop

PURE_NO_GRAD = frozenset({PURE, NO_GRAD})


def _constant_infer(types, attrs):
    v = attrs.get("value")
    if not isinstance(v, np.ndarray):
        raise TypeError_("tg.constant needs an array `value`")
    return [TensorType(dtype_of_numpy(v.dtype), tuple(int(d) for d in v.shape))]


CONSTANT = defop(
    OpDef(
        "tg.constant",
        infer=_constant_infer,
        numpy=lambda value: np.array(value),
        arity=0,
        doc="constant {value = ndarray}: a dense constant",
    )
)


# -- matrix product ----------------------------------------------------------------------
def _matmul_infer(types, attrs):
    a, b = types
    if a.rank == 0 or b.rank == 0:
        raise TypeError_(f"`@`: operands must have at least one dimension: {a} @ {b}")
    ash = a.shape if a.rank > 1 else (1,) + a.shape
    bsh = b.shape if b.rank > 1 else b.shape + (1,)
    if not same_dim(ash[-1], bsh[-2]):
        raise TypeError_(f"`@`: inner dimensions differ: {a} @ {b}")
    batch = broadcast_shapes(ash[:-2], bsh[:-2])
    shape = batch + ((ash[-2],) if a.rank > 1 else ()) + ((bsh[-1],) if b.rank > 1 else ())
    return [TensorType(numpy_result_dtype(np.matmul, [a.dtype, b.dtype]), shape)]


def _swap_last(b, v):
    perm = tuple(range(v.type.rank - 2)) + (v.type.rank - 1, v.type.rank - 2)
    return b.transpose(v, perm=perm)


_ALL = ("slice", None, None, None)


def _vjp_matmul(b, op, g):
    """ga = g @ b^T, gb = a^T @ g on operands promoted to matrices (a 1-D a is a
    row [1, k], a 1-D b a column [k, 1]; g gets the dropped axes back); the grad
    pass sums over broadcast batch axes."""
    x, y = op.operands
    x1, y1 = x.type.rank == 1, y.type.rank == 1
    x2 = b.index(x, items=(("none",), _ALL)) if x1 else x
    y2 = b.index(y, items=(_ALL, ("none",))) if y1 else y
    if x1 and y1:
        g2 = b.index(g, items=(("none",), ("none",)))
    elif x1:
        g2 = b.index(g, items=(("ellipsis",), ("none",), _ALL))
    elif y1:
        g2 = b.index(g, items=(("ellipsis",), ("none",)))
    else:
        g2 = g
    gx = gy = None
    if x.type.dtype.is_float:
        gx = b.matmul(g2, _swap_last(b, y2))
        if x1:
            gx = b.index(gx, items=(("ellipsis",), ("int", 0), _ALL))
    if y.type.dtype.is_float:
        gy = b.matmul(_swap_last(b, x2), g2)
        if y1:
            gy = b.index(gy, items=(("ellipsis",), ("int", 0)))
    return [gx, gy]


MATMUL = defop(
    OpDef(
        "tg.matmul",
        infer=named_infer("@", _matmul_infer),
        numpy=arrayed(np.matmul),
        arity=2,
        domain=(-1.0, 1.0),
        vjp=_vjp_matmul,
        doc="a @ b: NumPy matmul (batched over leading dims; 1-D operands as vectors)",
    )
)


# -- reductions -------------------------------------------------------------------------
def _reduced_shape(t, axes, keep):
    return tuple(1 if i in axes else d for i, d in enumerate(t.shape) if keep or i not in axes)


def reduce_infer(fn):
    def infer(types, attrs):
        (t,) = types
        axes = norm_axes(attrs.get("axis"), t.rank)
        keep = bool(attrs.get("keepdims", False))
        return [TensorType(numpy_result_dtype(fn, [t.dtype]), _reduced_shape(t, axes, keep))]

    return infer


def restore_axes(b, g, rank, axes):
    """g of a reduction without keepdims, with the reduced `axes` back as size 1."""
    if not axes:
        return g
    items = tuple(("none",) if i in axes else _ALL for i in range(rank))
    return b.index(g, items=items)


def _reduced(op):
    """(x, normalised axes, the cotangent's reshaping to keepdims form)."""
    x = op.operands[0]
    axes = norm_axes(op.attrs.get("axis"), x.type.rank)
    keep = bool(op.attrs.get("keepdims", False))
    return x, axes, (lambda b, v: v if keep else restore_axes(b, v, x.type.rank, axes))


def dim_value(b, d, dtype):
    """A dim (int or named-dim expression) as a scalar of `dtype` at run time."""
    if isinstance(d, int):
        return b.const(d, dtype)
    return b.op("tg.dim", dim=d, dtype=dtype.name)


def _vjp_sum(b, op, g):
    x, _, keep = _reduced(op)
    return [b.broadcast_to(keep(b, g), shape=x.type.shape)]


def _vjp_mean(b, op, g):
    x, axes, keep = _reduced(op)
    n = 1
    for a in axes:
        n = dim_mul(n, x.type.shape[a])
    gk = b.div(keep(b, g), dim_value(b, n, g.type.dtype))
    return [b.broadcast_to(gk, shape=x.type.shape)]


def _vjp_extremum(b, op, g):
    """The cotangent goes to the elements equal to the max (min), split equally
    among ties, so it sums to g (NumPy/JAX's reduce_max rule, not Theano's
    every-tie-gets-all)."""
    x, axes, keep = _reduced(op)
    hit = b.cast(b.eq(x, keep(b, op.results[0])), dtype=g.type.dtype.name)
    count = b.sum(hit, axis=axes, keepdims=True)
    return [b.mul(hit, b.div(keep(b, g), count))]


def _reduction(name, fn, doc, domain=(-2.0, 2.0), vjp=None):
    def ref(x, axis=None, keepdims=False):
        return np.asarray(fn(x, axis=np_axis(axis), keepdims=keepdims))

    ref.__name__ = "_" + name
    return defop(
        OpDef(
            "tg." + name,
            infer=named_infer(name, reduce_infer(fn)),
            numpy=ref,
            arity=1,
            defaults={"axis": None, "keepdims": False},
            domain=domain,
            vjp=vjp,
            doc=f"{name}(x) {{axis = None | (ints), keepdims = false}}: {doc}",
        )
    )


SUM = _reduction("sum", np.sum, "sum (NumPy dtype: i32 sums to i64)", vjp=_vjp_sum)
MEAN = _reduction("mean", np.mean, "arithmetic mean (integers give f64)", vjp=_vjp_mean)
MAX = _reduction("max", np.max, "largest element", vjp=_vjp_extremum)
MIN = _reduction("min", np.min, "smallest element", vjp=_vjp_extremum)


def _argreduce_infer(types, attrs):
    (t,) = types
    axis = attrs.get("axis")
    if axis is None:
        axes = tuple(range(t.rank))
    else:
        if isinstance(axis, (tuple, list)) and len(axis) != 1:
            raise TypeError_(f"axis must be None or a single axis, got {tuple(axis)}")
        axes = (norm_axis(axis, t.rank),) if t.rank else ()
    keep = bool(attrs.get("keepdims", False))
    return [TensorType(I32, _reduced_shape(t, axes, keep))]


def _argreduction(name, fn):
    def ref(x, axis=None, keepdims=False):
        if isinstance(axis, (tuple, list)):
            (axis,) = axis
        return np.asarray(fn(x, axis=axis, keepdims=keepdims)).astype(np.int32)

    ref.__name__ = "_" + name
    return defop(
        OpDef(
            "tg." + name,
            infer=named_infer(name, _argreduce_infer),
            numpy=ref,
            arity=1,
            defaults={"axis": None, "keepdims": False},
            traits=PURE_NO_GRAD,
            domain=(-2.0, 2.0),
            doc=f"{name}(x) {{axis = None | int, keepdims = false}}: index as i32 "
            "(NumPy gives int64; i32 compares with i32 labels without a cast)",
        )
    )


ARGMAX = _argreduction("argmax", np.argmax)
ARGMIN = _argreduction("argmin", np.argmin)


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


# -- shape ops ------------------------------------------------------------------------------
def _transpose_infer(types, attrs):
    (x,) = types
    perm = attrs.get("perm")
    if perm is None:
        return [x.with_shape(x.shape[::-1])]
    perm = tuple(perm)
    if len(perm) != x.rank:
        raise TypeError_(f"{perm} is not a permutation of the axes of {x}")
    axes = [norm_axis(a, x.rank) for a in perm]
    if sorted(axes) != list(range(x.rank)):
        raise TypeError_(f"{perm} is not a permutation of the axes of {x}")
    return [x.with_shape(x.shape[a] for a in axes)]


def _transpose(x, perm=None):
    return np.transpose(x, None if perm is None else tuple(perm))


def _vjp_transpose(b, op, g):
    perm = op.attrs.get("perm")
    if perm is None:
        return [b.transpose(g, perm=None)]
    axes = [norm_axis(a, g.type.rank) for a in perm]
    return [b.transpose(g, perm=tuple(int(i) for i in np.argsort(axes)))]


TRANSPOSE = defop(
    OpDef(
        "tg.transpose",
        infer=named_infer("transpose", _transpose_infer),
        numpy=_transpose,
        arity=1,
        defaults={"perm": None},
        domain=(-2.0, 2.0),
        vjp=_vjp_transpose,
        doc="transpose(x) {perm = None (reverse the axes) | (ints)}",
    )
)


def _product(dims):
    p = 1
    for d in dims:
        p = dim_mul(p, d)
    return p


def _monomial(d):
    """d as (integer coefficient, [factor dims]) when d is a product, else (1, [d])."""
    if isinstance(d, int):
        return d, []
    depth = 0
    for i, ch in enumerate(d):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and i > 0 and ch in "+-":
            return 1, [d]  # a sum: an opaque factor
    sign, body = (-1, d[1:]) if d.startswith("-") else (1, d)
    pieces, depth, start, i = [], 0, 0, 0
    while i < len(body):
        ch = body[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and body.startswith("//", i):
            return sign, [parse_dim(body)]  # a lone quotient atom
        elif depth == 0 and ch == "*":
            pieces.append(body[start:i])
            start = i + 1
        i += 1
    pieces.append(body[start:])
    coef, factors = sign, []
    for p in pieces:
        q = parse_dim(p)
        if isinstance(q, int):
            coef *= q
        else:
            factors.append(q)
    return coef, factors


def divide_dims(total: list, known: list):
    """The dim q with q * prod(known) == prod(total), by cancelling factors
    (T*B*D / D = T*B); None when it cannot be determined."""
    num_c, num_f = 1, []
    for d in total:
        c, f = _monomial(d)
        num_c *= c
        num_f += f
    den_c, den_f = 1, []
    for d in known:
        c, f = _monomial(d)
        den_c *= c
        den_f += f
    for f in den_f:
        if f not in num_f:
            return None
        num_f.remove(f)
    if den_c == 0 or num_c % den_c:
        return None
    q = _product([num_c // den_c] + num_f)
    if dim_mul(q, _product(known)) != _product(total):
        return None
    return q


def _reshape_infer(types, attrs):
    (x,) = types
    shape = as_dims(attrs.get("shape", ()), "shape")
    holes = [i for i, d in enumerate(shape) if d == -1]
    if len(holes) > 1:
        raise TypeError_(f"only one dimension can be -1, got {fmt_shape(shape)}")
    for d in shape:
        if isinstance(d, int) and d < -1:
            raise TypeError_(f"negative dimension {d} in {fmt_shape(shape)}")
    total = _product(x.shape)
    if holes:
        known = [d for d in shape if d != -1]
        q = divide_dims(list(x.shape), known)
        if q is None or (isinstance(q, int) and q < 0):
            raise TypeError_(
                f"cannot infer the -1 in {fmt_shape(shape)} from {x} "
                f"({total} elements divided by {_product(known)})"
            )
        shape = shape[: holes[0]] + (q,) + shape[holes[0] + 1 :]
    elif not same_dim(_product(shape), total):
        raise TypeError_(
            f"cannot reshape {x} ({total} elements) to {fmt_shape(shape)} "
            f"({_product(shape)} elements)"
        )
    return [x.with_shape(shape)]


def _reshape(x, shape=()):
    return np.reshape(x, tuple(shape))


def _vjp_reshape(b, op, g):
    return [b.reshape(g, shape=op.operands[0].type.shape)]


RESHAPE = defop(
    OpDef(
        "tg.reshape",
        infer=named_infer("reshape", _reshape_infer),
        numpy=_reshape,
        arity=1,
        dim_attrs=("shape",),
        domain=(-2.0, 2.0),
        vjp=_vjp_reshape,
        doc="reshape(x) {shape = (dims)}: one dim may be -1; element counts must agree "
        "symbolically",
    )
)


def _flatten_infer(types, attrs):
    (x,) = types
    axis = attrs.get("axis", 1)
    if x.rank == 0:
        norm_axis(axis, 0)
        return [x.with_shape((1,))]
    axis = norm_axis(axis, x.rank)
    return [x.with_shape(x.shape[:axis] + (_product(x.shape[axis:]),))]


def _flatten(x, axis=1):
    x = np.asarray(x)
    if x.ndim == 0:
        return x.reshape(1)
    axis = axis % x.ndim
    return x.reshape(x.shape[:axis] + (int(np.prod(x.shape[axis:])),))


FLATTEN = defop(
    OpDef(
        "tg.flatten",
        infer=named_infer("flatten", _flatten_infer),
        numpy=_flatten,
        arity=1,
        defaults={"axis": 1},
        domain=(-2.0, 2.0),
        vjp=_vjp_reshape,
        doc="flatten(x) {axis = 1}: keep x.shape[:axis], multiply the rest into one dim "
        "(torch.flatten(x, start_dim=axis))",
    )
)


def _promote_all(types):
    dt = types[0].dtype
    for t in types[1:]:
        dt = promote_dtypes(dt, t.dtype)
    return dt


def _concat_infer(types, attrs):
    if not types:
        raise TypeError_("needs at least one operand")
    r = types[0].rank
    if r == 0:
        raise TypeError_(f"cannot concatenate scalars ({types[0]})")
    axis = norm_axis(attrs.get("axis", 0), r)
    for t in types[1:]:
        if t.rank != r:
            raise TypeError_(f"operands differ in rank: {types[0]} and {t}")
        for i in range(r):
            if i != axis and not same_dim(t.shape[i], types[0].shape[i]):
                raise TypeError_(f"operands differ in dimension {i}: {types[0]} and {t}")
    n = 0
    for t in types:
        n = dim_add(n, t.shape[axis])
    shape = types[0].shape[:axis] + (n,) + types[0].shape[axis + 1 :]
    return [TensorType(_promote_all(types), shape)]


def _vjp_concat(b, op, g):
    """Each operand's part of g: a static slice where its offset and size are
    ints, else a dynamic_slice starting at the run-time value of the offset."""
    axis = norm_axis(op.attrs.get("axis", 0), g.type.rank)
    out, offset = [], 0
    for v in op.operands:
        n = v.type.shape[axis]
        if not v.type.dtype.is_float:
            out.append(None)
        elif isinstance(offset, int) and isinstance(n, int):
            items = (_ALL,) * axis + (("slice", offset, offset + n, None),)
            out.append(b.index(g, items=items))
        else:
            start = dim_value(b, offset, I32)
            out.append(b.dynamic_slice(g, start, axes=(axis,), sizes=(n,)))
        offset = dim_add(offset, n)
    return out


CONCAT = defop(
    OpDef(
        "tg.concat",
        infer=named_infer("concat", _concat_infer),
        numpy=lambda *xs, axis=0: np.concatenate(xs, axis=axis),
        arity=None,
        defaults={"axis": 0},
        domain=(-2.0, 2.0),
        vjp=_vjp_concat,
        doc="concat(x...) {axis = 0}: np.concatenate",
    )
)


def _stack_infer(types, attrs):
    if not types:
        raise TypeError_("needs at least one operand")
    for t in types[1:]:
        if not same_shape(t.shape, types[0].shape):
            raise TypeError_(f"operands differ in shape: {types[0]} and {t}")
    r = types[0].rank
    axis = norm_axis(attrs.get("axis", 0), r + 1)
    shape = types[0].shape[:axis] + (len(types),) + types[0].shape[axis:]
    return [TensorType(_promote_all(types), shape)]


def _vjp_stack(b, op, g):
    axis = norm_axis(op.attrs.get("axis", 0), g.type.rank)
    return [
        b.index(g, items=(_ALL,) * axis + (("int", i),)) if v.type.dtype.is_float else None
        for i, v in enumerate(op.operands)
    ]


STACK = defop(
    OpDef(
        "tg.stack",
        infer=named_infer("stack", _stack_infer),
        numpy=lambda *xs, axis=0: np.stack(xs, axis=axis),
        arity=None,
        defaults={"axis": 0},
        domain=(-2.0, 2.0),
        vjp=_vjp_stack,
        doc="stack(x...) {axis = 0}: np.stack (a new axis of length len(x...))",
    )
)


def _arange_infer(types, attrs):
    n = as_dim(attrs.get("n"), "length")
    if isinstance(n, int) and n < 0:
        raise TypeError_(f"negative length {n}")
    return [TensorType(dtype_attr(attrs.get("dtype", "i32")), (n,))]


ARANGE = defop(
    OpDef(
        "tg.arange",
        infer=named_infer("arange", _arange_infer),
        numpy=lambda n, dtype="i32": np.arange(n, dtype=dtype_attr(dtype).np),
        arity=0,
        defaults={"dtype": "i32"},
        traits=PURE_NO_GRAD,
        dim_attrs=("n",),
        doc='arange {n: dim, dtype = "i32"}: 0, 1, ..., n-1',
    )
)


def _one_hot_infer(types, attrs):
    (y,) = types
    if not y.dtype.is_int:
        raise TypeError_(f"labels must be integer, got {y}")
    n = as_dim(attrs.get("n"), "number of classes")
    if isinstance(n, int) and n < 0:
        raise TypeError_(f"negative number of classes {n}")
    return [TensorType(dtype_attr(attrs.get("dtype", "f32")), y.shape + (n,))]


def _one_hot(y, n, dtype="f32"):
    y = np.asarray(y)
    return (y[..., None] == np.arange(n)).astype(dtype_attr(dtype).np)


ONE_HOT = defop(
    OpDef(
        "tg.one_hot",
        infer=named_infer("one_hot", _one_hot_infer),
        numpy=_one_hot,
        arity=1,
        defaults={"dtype": "f32"},
        traits=PURE_NO_GRAD,
        dim_attrs=("n",),
        doc='one_hot(y) {n: dim, dtype = "f32"}: y.shape + [n]; labels outside [0, n) '
        "give a row of zeros",
    )
)


def _broadcast_to_infer(types, attrs):
    (x,) = types
    shape = as_dims(attrs.get("shape", ()), "shape")
    for d in shape:
        if isinstance(d, int) and d < 0:
            raise TypeError_(f"negative dimension {d} in {fmt_shape(shape)}")
    if len(shape) < x.rank:
        raise TypeError_(f"cannot broadcast {x} to the lower-rank shape {fmt_shape(shape)}")
    try:
        out = broadcast_shapes(x.shape, shape)
    except TypeError_:
        out = None
    if out is None or not same_shape(out, shape):
        raise TypeError_(f"cannot broadcast {x} to {fmt_shape(shape)}")
    return [x.with_shape(shape)]


BROADCAST_TO = defop(
    OpDef(
        "tg.broadcast_to",
        infer=named_infer("broadcast_to", _broadcast_to_infer),
        # A copy: np.broadcast_to gives a read-only view with zero strides.
        numpy=lambda x, shape=(): np.array(np.broadcast_to(x, tuple(shape))),
        arity=1,
        dim_attrs=("shape",),
        domain=(-2.0, 2.0),
        # The grad pass sums the cotangent back over the broadcast axes.
        vjp=lambda b, op, g: [g],
        doc="broadcast_to(x) {shape = (dims)}: NumPy broadcasting to `shape`",
    )
)

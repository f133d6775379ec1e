"""Tensor-level ops: constants, matrix products, reductions and shape ops
(transpose, reshape, flatten, concat, stack, arange, one_hot, broadcast_to) and
their gradient rules. Indexing (static, dynamic, gather) is in indexing.py: its
helper ops tg.index_grad, tg.dynamic_slice_grad and tg.scatter_add write a
cotangent into zeros of the operand's shape (the transposes of tg.index,
tg.dynamic_slice and tg.gather; each one's own vjp is the op it transposes, so
second derivatives work).

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

from irc.ir.dims import _ACTIVE as _UNIFYING
from irc.ir.dims import dim_add, dim_mul, parse_dim, same_dim, same_shape
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
    named_error,
    named_infer,
    norm_axes,
    norm_axis,
    np_axis,
    numpy_result_dtype,
)
from irc.ops.cost import matmul_flops, no_flops, per_input_element
from irc.ops.registry import NO_GRAD, PURE, OpDef, defop

PURE_NO_GRAD = frozenset({PURE, NO_GRAD})


def _constant_infer(types, attrs):
    v = attrs.get("value")
    if not isinstance(v, np.ndarray):
        raise TypeError_("tg.constant needs an array `value`")
    # (one type object per dtype and shape: a long function has a constant per
    # literal, each inferred again by the verifier)
    key = (v.dtype, v.shape)
    t = _CONSTANT_TYPES.get(key)
    if t is None:
        t = TensorType(dtype_of_numpy(v.dtype), v.shape)  # (v.shape holds Python ints)
        if len(_CONSTANT_TYPES) >= _CACHE_MAX:
            _CONSTANT_TYPES.clear()
        _CONSTANT_TYPES[key] = t
    return [t]


_CONSTANT_TYPES: dict = {}
_CACHE_MAX = 4096


CONSTANT = defop(
    OpDef(
        "tg.constant",
        cost=no_flops,
        infer=_constant_infer,
        numpy=lambda value: np.array(value),
        arity=0,
        doc="constant {value = ndarray}: a dense constant",
    )
)


# -- matrix product ----------------------------------------------------------------------
def _matmul_infer(types, attrs):
    a, b = types
    # (remembered where no unknown dims are in force: dims then compare by
    # equality, so the answer is the operand types' alone)
    key = (a.dtype.name, a.shape, b.dtype.name, b.shape)
    t = _MATMUL_TYPES.get(key)
    if t is not None:
        return [t]
    try:  # (named_infer("@", ...) for the types not seen before: only those raise)
        t = _matmul_type(a, b)
    except TypeError_ as e:
        raise named_error("@", e) from None
    if not _UNIFYING:
        if len(_MATMUL_TYPES) >= _CACHE_MAX:
            _MATMUL_TYPES.clear()
        _MATMUL_TYPES[key] = t
    return [t]


_MATMUL_TYPES: dict = {}


def _matmul_type(a, b):
    if a.rank == 0 or b.rank == 0:
        raise TypeError_(f"`@`: operands must have at least one dimension: {a} @ {b}")
    ash = a.shape if a.rank > 1 else (1,) + a.shape
    bsh = b.shape if b.rank > 1 else b.shape + (1,)
    if not same_dim(ash[-1], bsh[-2]):
        raise TypeError_(f"`@`: inner dimensions differ: {a} @ {b}")
    batch = broadcast_shapes(ash[:-2], bsh[:-2])
    shape = batch + ((ash[-2],) if a.rank > 1 else ()) + ((bsh[-1],) if b.rank > 1 else ())
    return TensorType(numpy_result_dtype(np.matmul, [a.dtype, b.dtype]), shape)


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
        cost=matmul_flops,
        infer=_matmul_infer,
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


def reduce_infer(fn, sym: str):
    """infer of the reduction `sym` (NumPy's `fn`); its errors start with `sym`
    as named_infer(sym, ...) gives them."""
    # The result type of an operand type and axes seen before (no dims are
    # compared). Keyed only by an axis of None, an int or a tuple of ints
    # (exact types: `True` must not find the entry of 1).
    seen: dict = {}

    def infer(types, attrs):
        (t,) = types
        axis = attrs.get("axis")
        keep = attrs.get("keepdims", False)
        ta = type(axis)
        if type(keep) is bool and (
            axis is None or ta is int or (ta is tuple and all(type(a) is int for a in axis))
        ):
            key = (t.dtype.name, t.shape, axis, keep)
            r = seen.get(key)
            if r is None:
                r = _named_reduce_type(fn, sym, t, axis, keep)
                if len(seen) >= _CACHE_MAX:
                    seen.clear()
                seen[key] = r
            return [r]
        return [_named_reduce_type(fn, sym, t, axis, keep)]

    return infer


def _named_reduce_type(fn, sym, t, axis, keepdims):
    try:
        return _reduce_type(fn, t, axis, keepdims)
    except TypeError_ as e:
        raise named_error(sym, e) from None


def _reduce_type(fn, t, axis, keepdims):
    axes = norm_axes(axis, t.rank)
    keep = bool(keepdims)
    return TensorType(numpy_result_dtype(fn, [t.dtype]), _reduced_shape(t, axes, keep))


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
            cost=per_input_element,
            infer=reduce_infer(fn, name),
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
            cost=per_input_element,
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
        cost=no_flops,
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
        cost=no_flops,
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
        cost=no_flops,
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
        cost=no_flops,
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
        cost=no_flops,
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
        cost=no_flops,
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
        cost=no_flops,
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
        cost=no_flops,
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

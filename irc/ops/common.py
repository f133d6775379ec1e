"""Helpers shared by the op families: NumPy-derived result dtypes, axis
normalisation, dim and dtype attributes, user-facing error prefixes, and the
infer/numpy factories for elementwise ops.

Result dtypes are found by asking NumPy itself (applying the op's reference
function to one-element arrays), so promotion is NumPy's by construction.
Imports only irc.ir.
"""

from __future__ import annotations

import functools
from functools import lru_cache

import numpy as np

from irc.ir.dims import _ACTIVE as _UNIFYING
from irc.ir.dims import parse_dim
from irc.ir.types import DTYPES, DType, TensorType, TypeError_, broadcast_shapes, dtype_of_numpy


@lru_cache(maxsize=None)
def _probe_dtype(fn, dtypes: tuple, kwargs: tuple):
    import warnings

    args = [np.ones((1,), dtype=d.np) for d in dtypes]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        out = fn(*args, **dict(kwargs))
    if isinstance(out, tuple):
        out = out[0]
    return dtype_of_numpy(np.asarray(out).dtype)


def numpy_result_dtype(fn, dtypes, **kwargs):
    """The irc dtype NumPy gives for `fn` applied to arrays of `dtypes`.

    Raises TypeError_ when NumPy rejects the dtypes, or when it answers with a
    dtype irc does not have (np.exp of bool is float16: not defined here)."""
    try:
        return _probe_dtype(fn, tuple(dtypes), tuple(sorted(kwargs.items())))
    except Exception:
        names = ", ".join(d.name for d in dtypes)
        what = "operands" if len(dtypes) != 1 else "an operand"
        raise TypeError_(f"not defined for {what} of dtype {names}") from None


def elementwise_infer(fn, allow=None, sym=None):
    """infer for an elementwise op: broadcast shapes, NumPy's result dtype.
    `allow` is a predicate on operand dtypes (e.g. floats only); `sym`, the
    user-facing name its errors start with (as named_infer(sym, ...) gives
    them, without a wrapper call per op: only a type not seen before can
    raise)."""

    result_dtype: dict = {}  # operand dtypes -> result dtype (asked of NumPy once)
    # The result type of operand types seen before, keyed by their dtype names
    # and shapes, only where the answer cannot depend on the unknown dims in
    # force (irc.ir.dims.unifying): no dims were compared (every operand a
    # scalar or of one and the same shape), or none were in force (dims then
    # compare by equality, as they do on a hit under unifying: no binding is
    # made or missed). A long function asks this again and again for the same
    # types (and the verifier once more for every op); giving back the same
    # type object also makes the results' types identical objects, which
    # compare at once.
    seen: dict = {}

    def infer(types, attrs):
        if len(types) == 2:
            a, b = types
            key = (a.dtype.name, a.shape, b.dtype.name, b.shape)
        else:
            key = tuple([(t.dtype.name, t.shape) for t in types])
        hit = seen.get(key)
        if hit is not None:
            return [hit]
        # (checked in this order, as the error messages are: dtypes allowed,
        # shapes, then NumPy's result dtype)
        dtypes = tuple(t.dtype for t in types)
        shapes = [t.shape for t in types]
        try:
            dt = result_dtype.get(dtypes)
            if dt is None and allow is not None:
                for d in dtypes:
                    if not allow(d):
                        raise TypeError_(f"not defined for dtype {d}")
            shape = broadcast_shapes(*shapes)
            if dt is None:
                dt = result_dtype[dtypes] = numpy_result_dtype(fn, dtypes)
        except TypeError_ as e:
            if sym is None:
                raise
            raise named_error(sym, e) from None
        t = TensorType(dt, shape)
        if not _UNIFYING or all(not s or s == shape for s in shapes):
            if len(seen) >= _SEEN_MAX:
                seen.clear()
            seen[key] = t
        return [t]

    return infer


_SEEN_MAX = 4096


def named_error(sym: str, e: TypeError_) -> TypeError_:
    """The error `e` of op `sym`'s type inference as named_infer gives it."""
    if e.message.startswith("`"):
        return e
    return TypeError_(f"`{sym}`: {e.message}")


def named_infer(sym: str, infer):
    """Wrap `infer` so its errors start with the user-facing op name:
    "`+`: shapes cannot be broadcast: ...". Messages that already start with a
    backquoted name are left alone."""

    @functools.wraps(infer)
    def wrapped(types, attrs):
        try:
            return infer(types, attrs)
        except TypeError_ as e:
            if e.message.startswith("`"):
                raise
            raise TypeError_(f"`{sym}`: {e.message}") from None

    return wrapped


def arrayed(fn):
    """`fn` with its result as an ndarray (ufuncs give NumPy scalars on 0-d input)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        return np.asarray(fn(*args, **kwargs))

    return wrapped


def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    if isinstance(axis, (tuple, list)) and len(axis) == 1:
        axis = axis[0]
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError_(f"{what} must be an integer, got {axis!r}")
    axis = int(axis)
    if not -rank <= axis < max(rank, 1) or (rank == 0 and axis not in (0, -1)):
        raise TypeError_(f"{what} {axis} is out of range for a tensor of rank {rank}")
    return axis % rank if rank else 0


def norm_axes(axis, rank: int) -> tuple:
    """A sorted tuple of non-negative axes; None means every axis."""
    if axis is None:
        return tuple(range(rank))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    out = sorted({norm_axis(a, rank) for a in axis})
    if len(out) != len(tuple(axis)):
        raise TypeError_(f"repeated axis in {tuple(axis)}")
    return tuple(out)


def np_axis(axis):
    """An `axis` attribute as NumPy takes it (lists become tuples)."""
    if isinstance(axis, list):
        return tuple(axis)
    return axis


def as_dim(d, what: str = "dimension"):
    """A dim attribute entry in canonical form: an int, or a canonical
    named-dim expression string ("B*T", not "T * B")."""
    if isinstance(d, bool):
        raise TypeError_(f"bad {what} {d!r}")
    if isinstance(d, (int, np.integer)):
        return int(d)
    if isinstance(d, str):
        try:
            return parse_dim(d)
        except ValueError:
            raise TypeError_(f"bad {what} {d!r}") from None
    raise TypeError_(f"bad {what} {d!r}")


def as_dims(ds, what: str = "shape") -> tuple:
    if isinstance(ds, (int, str, np.integer)):
        ds = (ds,)
    if not isinstance(ds, (tuple, list)):
        raise TypeError_(f"bad {what} {ds!r}")
    return tuple(as_dim(d, f"dimension in {what}") for d in ds)


def dtype_attr(v) -> DType:
    """The DType named by a `dtype` attribute ("f32" or a DType)."""
    if isinstance(v, DType):
        return v
    if isinstance(v, str) and v in DTYPES:
        return DTYPES[v]
    raise TypeError_(f"unknown dtype {v!r} (irc has {', '.join(DTYPES)})")


def fmt_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def int_pair(v, what: str) -> tuple:
    """An int or a pair of ints as a 2-tuple of ints."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return (int(v), int(v))
    if (
        isinstance(v, (tuple, list))
        and len(v) == 2
        and all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v)
    ):
        return (int(v[0]), int(v[1]))
    raise TypeError_(f"{what} must be an integer or a pair of integers, got {v!r}")


# -- scalar rules (OpDef.scalar): an elementwise op on one element, in scalar.* ops ----------


def scalar_map(name: str):
    """The scalar rule `scalar.<name>` of the operands converted to the result dtype."""

    def rule(emit, args, dtype):
        return emit.scalar(name, *[emit.cast(a, dtype) for a in args])

    return rule


def scalar_expr(fn):
    """A scalar rule from fn(emit, *args) -> Value, the operands already converted
    to the result dtype: a composite op written in primitive scalar ops."""

    def rule(emit, args, dtype):
        return fn(emit, *[emit.cast(a, dtype) for a in args])

    return rule

"""Helpers shared by the op families: NumPy-derived result dtypes, axis
normalisation, and the infer/numpy factories for elementwise ops.

Result dtypes are found by asking NumPy itself (applying the op's reference
function to one-element arrays), so promotion is NumPy's by construction.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from irc.ir.types import TensorType, TypeError_, broadcast_shapes, dtype_of_numpy


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
    """The irc dtype NumPy gives for `fn` applied to arrays of `dtypes`."""
    try:
        return _probe_dtype(fn, tuple(dtypes), tuple(sorted(kwargs.items())))
    except TypeError_:
        raise
    except Exception:
        names = ", ".join(d.name for d in dtypes)
        raise TypeError_(f"not defined for operands of dtype {names}") from None


def elementwise_infer(fn, allow=None):
    """infer for an elementwise op: broadcast shapes, NumPy's result dtype.
    `allow` is a predicate on operand dtypes (e.g. floats only)."""

    def infer(types, attrs):
        if allow is not None:
            for t in types:
                if not allow(t.dtype):
                    raise TypeError_(f"not defined for dtype {t.dtype}")
        shape = broadcast_shapes(*(t.shape for t in types))
        return [TensorType(numpy_result_dtype(fn, [t.dtype for t in types]), shape)]

    return infer


def norm_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1) or (rank == 0 and axis not in (0, -1)):
        raise TypeError_(f"{what} {axis} is out of range for a tensor of rank {rank}")
    return axis % rank if rank else 0


def norm_axes(axis, rank: int) -> tuple:
    """A sorted tuple of non-negative axes; None means every axis."""
    if axis is None:
        return tuple(range(rank))
    if isinstance(axis, int):
        axis = (axis,)
    out = sorted({norm_axis(a, rank) for a in axis})
    if len(out) != len(tuple(axis)):
        raise TypeError_("repeated axis")
    return tuple(out)

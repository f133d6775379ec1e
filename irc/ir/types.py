"""Types of the tg IR: dtypes, tensor types with integer and named dims, and
NumPy's broadcasting and promotion rules over them.

Owns: DType, TensorType, broadcast_shapes, promote_dtypes, parse helpers for the
type syntax shared by `.tg` source and IR text (`f32[N, 784]`, `i32`).
Imports only irc.ir.dims (same_dim: dims compare by unification where unknown
dims are in force).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Union

import numpy as np

from irc.ir.dims import same_dim

Dim = Union[int, str]  # an integer extent or a named dim bound at call time


class TypeError_(Exception):
    """A type or shape rule was violated; `message` is user-facing text."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class DType:
    name: str  # f32 f64 i32 i64 bool
    np: np.dtype
    kind: str  # "f", "i", "b"
    bits: int

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return self.name

    def __hash__(self) -> int:
        # The name alone (equal dtypes have equal names): every type and CSE
        # key hashes its dtype, and the generated hash of all four fields
        # hashes a NumPy dtype each time.
        return hash(self.name)

    def __eq__(self, other) -> bool:
        # by name, for the same reason (the generated one compares NumPy dtypes)
        return self is other or (type(other) is DType and self.name == other.name)

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind == "i"

    @property
    def is_bool(self) -> bool:
        return self.kind == "b"


F32 = DType("f32", np.dtype(np.float32), "f", 32)
F64 = DType("f64", np.dtype(np.float64), "f", 64)
I32 = DType("i32", np.dtype(np.int32), "i", 32)
I64 = DType("i64", np.dtype(np.int64), "i", 64)
BOOL = DType("bool", np.dtype(np.bool_), "b", 8)

DTYPES = {d.name: d for d in (F32, F64, I32, I64, BOOL)}
_BY_NUMPY = {d.np: d for d in DTYPES.values()}


def dtype_of_numpy(dt) -> DType:
    """The irc dtype of a NumPy dtype; raises TypeError_ for unsupported ones."""
    got = _BY_NUMPY.get(dt) if isinstance(dt, np.dtype) else None
    if got is not None:
        return got
    dt = np.dtype(dt)
    if dt in _BY_NUMPY:
        return _BY_NUMPY[dt]
    raise TypeError_(f"unsupported dtype {dt} (irc has f32, f64, i32, i64, bool)")


def promote_dtypes(a: DType, b: DType) -> DType:
    """NumPy's promotion for two strongly typed operands (np.result_type)."""
    if a == b:
        return a
    return dtype_of_numpy(np.result_type(a.np, b.np))


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: tuple  # tuple of Dim; () for a scalar

    def __post_init__(self):
        for d in self.shape:
            if not (isinstance(d, str) or (isinstance(d, int) and d >= 0)):
                raise TypeError_(f"bad dimension {d!r}")

    # Types are compared and hashed by the million in a long function (use lists,
    # CSE keys, caches): by dtype name and shape, without the generated methods'
    # field tuples and DType calls.
    def __eq__(self, other) -> bool:
        return self is other or (
            type(other) is TensorType and self.shape == other.shape
            and self.dtype.name == other.dtype.name
        )

    def __hash__(self) -> int:
        return hash((self.dtype.name, self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_scalar(self) -> bool:
        return not self.shape

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def with_shape(self, shape: Iterable[Dim]) -> "TensorType":
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: DType) -> "TensorType":
        return TensorType(dtype, self.shape)

    def named_dims(self) -> list:
        return [d for d in self.shape if isinstance(d, str)]

    def __str__(self) -> str:
        if not self.shape:
            return self.dtype.name
        return f"{self.dtype.name}[{', '.join(str(d) for d in self.shape)}]"

    __repr__ = __str__


def scalar(dtype: DType) -> TensorType:
    return TensorType(dtype, ())


def dim_str(d: Dim) -> str:
    return str(d)


def broadcast_shapes(*shapes: tuple) -> tuple:
    """NumPy broadcasting over shapes whose dims may be named.

    A named dim matches itself and broadcasts against 1. A named dim against a
    different integer or name is an error: irc cannot prove the sizes agree for
    every binding of the name (unify the names in the model instead). Unknown
    dims (irc.ir.dims.Unifier, in force) unify instead, as in Theano: an
    unknown dim is not 1 unless it is given as 1.
    """
    # Common case first: the operands' shapes equal, or scalars (rank 0)
    # against one shape (`x * 1.01`): the result is that shape.
    first = None
    for s in shapes:
        if s:
            if first is None:
                first = s
            elif s != first:
                break
    else:
        return tuple(first) if first is not None else ()
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(rank):
        cur: Dim = 1
        for s in shapes:
            i = axis - (rank - len(s))
            if i < 0:
                continue
            d = s[i]
            if d == 1:
                continue
            if cur == 1 or same_dim(cur, d):
                cur = d
                continue
            raise TypeError_(
                "shapes cannot be broadcast: "
                + " and ".join("[" + ", ".join(str(x) for x in sh) + "]" for sh in shapes)
                + f" (dimension {cur} vs {d})"
            )
        out.append(cur)
    return tuple(out)


def broadcast_types(*types: TensorType) -> tuple:
    """(result shape, promoted dtype) of an elementwise op over `types`."""
    shape = broadcast_shapes(*(t.shape for t in types))
    dt = types[0].dtype
    for t in types[1:]:
        dt = promote_dtypes(dt, t.dtype)
    return shape, dt


def num_elements(shape: tuple, dims: dict | None = None):
    """Number of elements, resolving named dims through `dims`; None if unknown."""
    n = 1
    for d in shape:
        if isinstance(d, str):
            if dims is None or d not in dims:
                return None
            d = dims[d]
        n *= d
    return n

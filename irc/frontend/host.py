"""What the two front ends share: the `Host` protocol and the compile-time logic
written once against it.

A front end (irc.frontend.irgen for `.tg`, irc.symbolic for the Python API) gives a
Host: its kind of tensors (IR Values being generated, or traced Variables), its
compile-time values (numbers, named dims, dtypes) and how it makes ops. On a Host,
written once here: folding + - * // over dims, infix operators with NumPy 2's weak
Python scalars, affine forms of integer scalars (so that `x[i*B:(i+1)*B]` has a
length known at compile time), the check of a shared variable's update and the
checks of a scan's length. The built-ins (irc/frontend/builtins.py) and indexing
(irc/frontend/indexing.py) take the same Host.

Imports irc.ir and irc.ops only.
"""

from __future__ import annotations

import numpy as np

from irc.frontend.indexing import combine_affine
from irc.ir import dims as D
from irc.ir.errors import CompileError
from irc.ir.types import BOOL, DTYPES, F32, I32, DType, TypeError_, broadcast_shapes, dtype_of_numpy


def weak_dtype(tensor_dtype: DType, value) -> DType:
    """NumPy 2 (NEP 50): a Python scalar takes the tensor's dtype, except that a
    float meeting an integer or bool tensor gives float64 and an int meeting a
    bool tensor gives int64, as np.result_type(array, python_scalar) does."""
    # The answer depends on the value's kind only (and for an int, on its
    # fitting every integer dtype): remembered, as a long function asks once
    # per literal.
    if type(value) is int and -(2**31) <= value < 2**31:
        key = (tensor_dtype, int)
    elif type(value) in (float, bool):
        key = (tensor_dtype, type(value))
    else:
        return _weak_dtype(tensor_dtype, value)
    dt = _WEAK.get(key)
    if dt is None:
        dt = _WEAK[key] = _weak_dtype(tensor_dtype, value)
    return dt


_WEAK: dict = {}


def _weak_dtype(tensor_dtype: DType, value) -> DType:
    try:
        return dtype_of_numpy(np.result_type(tensor_dtype.np, value))
    except (OverflowError, TypeError_):
        # A literal that does not fit the tensor's dtype: promote like NumPy's
        # strong types instead of failing here (the op reports what is wrong).
        return dtype_of_numpy(np.result_type(tensor_dtype.np, np.min_scalar_type(value)))


def default_dtype(value) -> DType:
    """The dtype of a literal on its own: f32 for floats, i32 for ints."""
    if isinstance(value, bool):
        return DTYPES["bool"]
    if isinstance(value, float):
        return F32
    return I32


def literal_array(items: list, dtype=None, like=None) -> np.ndarray:
    """A list of Python numbers as an array: of `dtype`, else weakly typed against the
    tensor type `like`, else f32 / i32 / bool as literals on their own."""
    arr = np.asarray(items)
    if dtype is None:
        if like is not None and items:
            dtype = weak_dtype(like.dtype, items[0])
        else:
            dtype = {"f": F32, "i": I32, "u": I32, "b": BOOL}.get(arr.dtype.kind)
            if dtype is None:
                dtype = dtype_of_numpy(arr.dtype)
    return arr.astype(dtype.np)


def scan_attrs(n_seqs: int, n_carries: int, length, truncate) -> dict:
    """The attributes of a tg.scan (sequences, carried values, steps, truncation of its
    gradient), iterating forwards, as both front ends build it."""
    return {
        "n_seqs": n_seqs,
        "n_carries": n_carries,
        "length": length,
        "truncate": truncate,
        "reverse": False,
    }


def scan_result_types(carried: list, stacked: list, length) -> list:
    """The result types of a tg.scan: the final carried values, then each stacked
    output with a leading axis of `length` steps."""
    return list(carried) + [t.with_shape((length,) + t.shape) for t in stacked]


def describe_value(v, tensor_class, dim_class, booleans=("false", "true"), sequences=(list,)):
    """How an error message names a value: a tensor with its type, a number, a dim,
    a string ...; booleans and sequences as the front end's language writes them."""
    if isinstance(v, tensor_class):
        return f"a tensor {v.type}"
    if isinstance(v, (bool, np.bool_)):
        return f"the boolean {booleans[bool(v)]}"
    if isinstance(v, (int, float, np.number)):
        return f"the number {v}"
    if isinstance(v, dim_class):
        return f"the dimension {v}"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, DType):
        return f"the dtype {v}"
    if isinstance(v, tuple) and tuple not in sequences:
        return f"{len(v)} values"
    if v is None:
        return "None"
    return f"a {type(v).__name__}"


_AFFINE_OPS = {"tg.add": "+", "tg.sub": "-", "tg.mul": "*"}


class Host:
    """What a front end gives the shared logic. Subclasses override the methods
    above the line; the ones below it are the shared logic itself."""

    tensor_class: type = object  # the front end's tensors
    dim_class: type = object  # its named-dim objects (what x.shape[i] gives for a named axis)
    sequences: tuple = (list,)  # the compile-time values that are lists
    booleans = ("false", "true")  # how the language spells the booleans

    def is_tensor(self, v) -> bool:
        return isinstance(v, self.tensor_class)

    def is_dim(self, v) -> bool:
        return isinstance(v, self.dim_class)

    def make_dim(self, d):
        """A dim (int or canonical text) as the front end's compile-time value."""
        return d if isinstance(d, int) else self.dim_class(d)

    def dim_of(self, v):
        """The dim (int or canonical text) of a compile-time int or dim, else None."""
        raise NotImplementedError

    def as_tensor(self, v, loc, dtype=None, like=None):
        """A compile-time value (number, list, dim) as a tensor: of `dtype`, or weakly
        typed against the tensor `like`."""
        raise NotImplementedError

    def describe(self, v) -> str:
        return describe_value(v, self.tensor_class, self.dim_class, self.booleans, self.sequences)

    def dtype(self, v, call, p: str) -> DType:
        """The DType a dtype argument names (an error located at the argument if none)."""
        raise NotImplementedError

    def op(self, name, operands, attrs, loc):
        """Make the op and return its (one) result."""
        raise NotImplementedError

    def form(self, v):
        """The affine form recorded for an integer scalar tensor, else None."""
        raise NotImplementedError

    def set_form(self, v, f) -> None:
        """Record the affine form of an integer scalar tensor."""
        raise NotImplementedError

    def constant_value(self, v):
        """The array of a tensor made by tg.constant, else None."""
        raise NotImplementedError

    def same_shape(self, a: tuple, b: tuple) -> bool:
        """Whether two shapes agree (binding unknown dims where the front end has them)."""
        return tuple(a) == tuple(b)

    # -- the shared logic ---------------------------------------------------------------

    def emit(self, opname, *operands, loc, **attrs):
        return self.op(opname, list(operands), attrs, loc)

    def fold_dims(self, op, a, b):
        """a op b over ints and dims when either is a dim (+ - * and // by a positive
        int fold into a dim); else NotImplemented."""
        da, db = self.dim_of(a), self.dim_of(b)
        if da is None or db is None or not (self.is_dim(a) or self.is_dim(b)):
            return NotImplemented
        if op == "+":
            return self.make_dim(D.dim_add(da, db))
        if op == "-":
            return self.make_dim(D.dim_sub(da, db))
        if op == "*":
            return self.make_dim(D.dim_mul(da, db))
        if op == "//" and isinstance(db, int) and db > 0:
            return self.make_dim(D.dim_floordiv(da, db))
        return NotImplemented

    def affine_form(self, v):
        """The affine form {tensor | 1: dim} of an integer, dim or int scalar, else None."""
        if isinstance(v, (bool, np.bool_)):
            return None
        if isinstance(v, (int, np.integer)):
            return {1: int(v)} if v else {}
        if self.is_dim(v):
            return {1: self.dim_of(v)}
        if self.is_tensor(v):
            f = self.form(v)
            if f is not None:
                return f
            arr = self.constant_value(v)
            if arr is not None and arr.ndim == 0:
                x = arr.item()
                if isinstance(x, int) and not isinstance(x, bool):
                    return {1: x} if x else {}
        return None

    def track_affine(self, op, a, b, r) -> None:
        """Keep an integer scalar computed from arguments, dims and literals as an
        affine form, so that slices like X[i*B:(i+1)*B] get a static length."""
        t = r.type
        if t.shape or not t.dtype.is_int:  # (an integer scalar only)
            return
        fa, fb = self.affine_form(a), self.affine_form(b)
        if fa is not None and fb is not None:
            f = combine_affine(op, fa, fb)
            if f is not None:
                self.set_form(r, f)

    def track_rebuilt(self, opname, operands, r) -> None:
        """The affine form of the result of an op built again (clone, unpickling)."""
        if opname in _AFFINE_OPS:
            self.track_affine(_AFFINE_OPS[opname], operands[0], operands[1], r)
        elif opname == "tg.neg":
            self.track_affine("-", 0, operands[0], r)

    def negate(self, t, loc):
        """-t, keeping its affine form."""
        r = self.op("tg.neg", [t], {}, loc)
        f = self.form(t)
        if f is not None:
            self.set_form(r, {k: D.dim_sub(0, c) for k, c in f.items()})
        return r

    def binop(self, sym, opname, a, b, loc):
        """The infix operator `sym` (the op `opname`) on tensors and numbers: a Python
        number takes the dtype of the tensor it meets (NumPy 2)."""
        from irc.ops.registry import REGISTRY

        if opname not in REGISTRY:
            raise CompileError(f"operator '{sym}' is not supported on tensors", loc)
        a_tensor, b_tensor = self.is_tensor(a), self.is_tensor(b)
        if a_tensor and b_tensor:
            ta, tb = a, b
        elif a_tensor:
            ta, tb = a, self.as_tensor(b, loc, like=a)
        elif b_tensor:
            ta, tb = self.as_tensor(a, loc, like=b), b
        else:
            ta = self.as_tensor(a, loc)
            tb = self.as_tensor(b, loc, like=ta)
        r = self.op(opname, [ta, tb], {}, loc)
        self.track_affine(sym, ta, tb, r)
        return r

    def update_value(self, name, target, v, loc, cast_hint):
        """The value a shared variable `name` of type `target` is updated with: of its
        dtype, and of its shape or broadcast to it."""
        v = self.as_tensor(v, loc, dtype=target.dtype)
        if v.type.dtype != target.dtype:
            raise CompileError(
                f"update of '{name}' ({target}) with a value of type {v.type}", loc, cast_hint
            )
        if not self.same_shape(v.type.shape, target.shape):
            try:
                fits = broadcast_shapes(v.type.shape, target.shape) == target.shape
            except TypeError_:
                fits = False
            if not fits:
                raise CompileError(
                    f"update of '{name}' ({target}) with a value of type {v.type}", loc
                )
            v = self.op("tg.broadcast_to", [v], {"shape": target.shape}, loc)
        return v

    def scan_length(self, seqs, steps, loc, words):
        """The number of steps of a scan: seqs are (label, tensor, loc); steps is None
        or (value, loc). `words` = (prefix of messages, the name of the steps option,
        the message when nothing gives the length)."""
        prefix, steps_name, no_length = words
        length = None
        for label, v, vloc in seqs:
            d = v.type.shape[0]
            if length is None:
                length, first = d, label
            elif not self.same_shape((d,), (length,)):
                raise CompileError(
                    f"{prefix}sequences have different lengths: {first} has {length} steps, "
                    f"{label} has {d}",
                    vloc,
                )
        if steps is not None:
            value, sloc = steps
            s = self.dim_of(value)
            if s is None or (isinstance(s, int) and s < 0):
                raise CompileError(
                    f"{prefix}{steps_name} must be a non-negative integer or a named dim", sloc
                )
            if length is not None and not self.same_shape((s,), (length,)):
                raise CompileError(
                    f"{prefix}{steps_name} = {s} but the sequences have {length} steps",
                    sloc,
                    "slice the sequences to the number of steps",
                )
            length = s
        if length is None:
            raise CompileError(no_length, loc)
        return length

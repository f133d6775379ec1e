"""The traced tg IR of the Python API: symbolic variables (Variable, SharedVariable:
handles on IR values), named dims (Dim), the unknown dims of inputs made without
dims= (the one Unifier, `_UNIFIER`), leaf values, traced ops (Apply: detached
irc.ir Ops) and `_apply`, which infers types through the op registry and locates
errors at the user's line (`_user_loc`), and the bodies of scans being traced.

Owns the state other modules of irc.symbolic read through this module (`V._UNIFIER`,
`V._NAMED`: tests give a document its own tables by swapping them here).
Imports irc.ir, irc.ops and irc.frontend; its methods use the builders, function and
pp of the modules below it (imported at the end of this file).
"""

from __future__ import annotations

import builtins as _py
import itertools
import os
import sys
import weakref
from typing import Optional

import numpy as np

import irc.ops  # noqa: F401  (registers the ops)
from irc.frontend.builtins import OPERATORS
from irc.ir import dims as D
from irc.ir.core import Block, BlockArgument, Loc, Op, OpResult, Value, freeze_attr
from irc.ir.errors import CompileError, trust_source_file
from irc.ir.types import (
    TensorType,
    TypeError_,
    dtype_of_numpy,
)
from irc.ops.registry import infer_types, lookup

# -- source locations ----------------------------------------------------------------

# the irc package: frames of its files are skipped when locating the user's line
_IRC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _user_loc() -> Optional[Loc]:
    """The file, line and column of the innermost caller outside irc."""
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_IRC_DIR):
        f = f.f_back
    if f is None:
        return None
    code = f.f_code
    line, col = f.f_lineno or 1, 1
    try:  # Python >= 3.11: the column of the instruction being run
        pos = next(itertools.islice(code.co_positions(), f.f_lasti // 2, None))
        if pos[0] is not None:
            line = pos[0]
        if pos[2] is not None:
            col = pos[2] + 1
    except (AttributeError, StopIteration):
        pass
    trust_source_file(code.co_filename)  # a diagnostic may show the user's line
    return Loc(code.co_filename, line, col)


# -- scopes: the traced bodies of scan -----------------------------------------------


class _LeafValue(Value):
    """The value of an input, a shared variable or a named-dim value: a leaf of the
    traced graphs, defined by no op or block. It carries what a Variable of it
    knows (kind, location, creation order; the dim of a dim value, the owners of
    the unknown dims it mentions; whether an input's dims were made up), so that
    graphs that outlive the user's variable still have it; a shared variable's
    leaf holds the SharedVariable (its array). Nothing points back at the ops
    that read it, so a graph nobody holds is freed at once."""

    __slots__ = ("kind", "loc", "id", "dim", "auto", "keep", "shared", "__weakref__")

    def __init__(self, type, kind, name, loc):
        super().__init__(type, name)
        self.kind, self.loc, self.id = kind, loc, next(_ids)
        self.dim = self.keep = self.shared = None
        self.auto = False

    @property
    def owner(self):
        return None


class _Result(OpResult):
    """A result of a traced op: its op holds it weakly (see Apply)."""

    __slots__ = ("__weakref__",)


class _Body(Block):
    """The body of a scan: its arguments are the step arguments, its one op the
    tg.yield of the next carried values and the stacked outputs. Ops traced while
    the step function runs stay detached, with this body as their `scope`; `outer`
    is the body the scan itself is traced in (None at top level)."""

    __slots__ = ("outer",)


_TRACES: list = []  # the bodies being traced, innermost last


def _current_scope():
    return _TRACES[-1] if _TRACES else None


def _visible(scope, from_scope) -> bool:
    """Whether a value of `scope` can be used by an op of `from_scope`."""
    if scope is None:
        return True
    s = from_scope
    while s is not None:
        if s is scope:
            return True
        s = s.outer
    return False


_LEAK = "this value was computed inside a scan step function and cannot be used outside it"
_LEAK_HINT = "return it from the step function: scan stacks each step's outputs"

# -- variables --------------------------------------------------------------------------

_ids = itertools.count()
_anon = itertools.count()

# The unknown dims of inputs made without dims= (irc/ir/dims.py, Unifier): bound as
# expressions meet them; Variables and Dims resolve through it lazily.
_UNIFIER = D.Unifier()
_NAMED: set = set()  # dim names given by users (dims=): unknowns never take them


class DTypeName(str):
    """A dtype as Theano gives it: a string ("float32", so x.dtype.startswith("int")
    works) that also compares equal to NumPy dtypes and has their attributes."""

    __slots__ = ()

    def __eq__(self, o):
        if isinstance(o, str):
            return str.__eq__(self, o)
        try:
            return np.dtype(str(self)) == np.dtype(o)
        except TypeError:
            return NotImplemented

    def __ne__(self, o):
        r = self.__eq__(o)
        return r if r is NotImplemented else not r

    __hash__ = str.__hash__

    def __getattr__(self, name):
        return getattr(np.dtype(str(self)), name)


# The .tg operators, plus `^` which only Python has.
_BINOPS = {**OPERATORS, "^": "tg.xor"}


def _operand_ok(v) -> bool:
    return isinstance(v, (Variable, Dim, bool, int, float, np.generic, np.ndarray, list, tuple))


def _binop_or_ni(sym, a, b):
    other = b if isinstance(a, Variable) else a
    if not _operand_ok(other):
        return NotImplemented
    return _binop(sym, a, b)


class Variable:
    """A symbolic tensor: a handle on a `value` of the tg IR traced so far (the
    result of a detached op, an Apply; or the argument of a leaf or scan body
    block). `type` is its TensorType; `owner` the Apply that computes it (None
    for inputs, shared variables, named-dim values and scan step arguments);
    `name` names it in dumps and errors (settable: the value's name).

    One handle per value while someone holds it (`_handle`): `clone(...).owner.inputs`
    gives back the variables the user holds."""

    __array_ufunc__ = None  # NumPy defers to the reflected operators below
    __slots__ = ("value", "_tcache", "kind", "loc", "_id", "_affine", "__weakref__")

    def __init__(self, value: Value, kind: str, loc=None):
        self.value = value
        self._tcache = None  # (unifier version, resolved type)
        self.kind = kind  # "input" | "shared" | "dim" | "arg" | "op"
        self.loc = loc
        self._id = value.id if isinstance(value, _LeafValue) else next(_ids)
        self._affine = None  # integer scalars: an affine form {Value | 1: dim}
        ref = _HANDLES[id(value)] = _HandleRef(self, _forget_handle)
        ref.key = id(value)

    __hash__ = object.__hash__

    @property
    def name(self):
        return self.value.name_hint

    @name.setter
    def name(self, name):
        self.value.name_hint = name

    @property
    def dim(self):
        """A named-dim value: the dim (int or text) it is the value of; else None."""
        return self.value.dim if isinstance(self.value, _LeafValue) else None

    @property
    def _auto(self) -> bool:
        """An input whose dims were made up because none were given."""
        return isinstance(self.value, _LeafValue) and self.value.auto

    @property
    def owner(self):
        """The Apply computing this value (None for a leaf or a step argument)."""
        v = self.value
        return v.op if isinstance(v, OpResult) else None

    @property
    def index(self) -> int:
        return self.value.index

    @property
    def scope(self):
        """The scan body this value belongs to (None at top level)."""
        v = self.value
        if isinstance(v, OpResult):
            return v.op.scope
        return v.block if isinstance(v, BlockArgument) else None  # a step argument

    @property
    def type(self) -> TensorType:
        """The TensorType, with the unknown dims bound so far substituted."""
        t = self.value.type
        if not _UNIFIER.binding or not t.shape or t.is_static:
            return t
        c = self._tcache
        if c is None or c[0] != _UNIFIER.version:
            c = self._tcache = (_UNIFIER.version, _resolve_type(t))
        return c[1]

    # -- NumPy-like attributes ---------------------------------------------------------
    @property
    def dtype(self) -> DTypeName:
        """The dtype's name, a string that also compares equal to NumPy dtypes
        (x.dtype == "float32", x.dtype == np.float32, x.dtype.startswith("float"))."""
        return DTypeName(self.type.dtype.np.name)

    @property
    def ndim(self) -> int:
        return self.type.rank

    @property
    def shape(self) -> tuple:
        """Ints for static sizes, Dim objects for named dims (they fold with
        ints and other dims, and become tensors when they meet one)."""
        return tuple(_make_dim(d) for d in self.type.shape)

    @property
    def T(self) -> "Variable":
        return _op("tg.transpose", self, perm=None, loc=_user_loc())

    def __len__(self):
        if not self.type.shape:
            raise TypeError("len() of a scalar")
        d = self.type.shape[0]
        if not isinstance(d, int):
            raise TypeError(
                f"the leading dimension of {self.type} is the named dim {d}, known only at call time"
            )
        return d

    def __iter__(self):
        raise TypeError(
            "a symbolic tensor cannot be iterated over; index it, or use irc.scan for a loop"
        )

    def __bool__(self):
        raise TypeError(
            "a symbolic tensor has no truth value; use irc.where(cond, a, b) for a symbolic choice"
        )

    def __array__(self, *args, **kwargs):
        raise TypeError(
            "a symbolic tensor has no value: compile it with irc.function, or call .eval()"
        )

    def __int__(self):
        raise TypeError(
            "a symbolic tensor has no value: compile it with irc.function, or call .eval()"
        )

    __float__ = __index__ = __int__

    def __setitem__(self, key, value):
        raise TypeError(
            "symbolic tensors are immutable; build a new expression (irc.where, irc.concat)"
        )

    # -- operators ---------------------------------------------------------------------
    def __add__(self, o):
        return _binop_or_ni("+", self, o)

    def __radd__(self, o):
        return _binop_or_ni("+", o, self)

    def __sub__(self, o):
        return _binop_or_ni("-", self, o)

    def __rsub__(self, o):
        return _binop_or_ni("-", o, self)

    def __mul__(self, o):
        return _binop_or_ni("*", self, o)

    def __rmul__(self, o):
        return _binop_or_ni("*", o, self)

    def __truediv__(self, o):
        return _binop_or_ni("/", self, o)

    def __rtruediv__(self, o):
        return _binop_or_ni("/", o, self)

    def __floordiv__(self, o):
        return _binop_or_ni("//", self, o)

    def __rfloordiv__(self, o):
        return _binop_or_ni("//", o, self)

    def __mod__(self, o):
        return _binop_or_ni("%", self, o)

    def __rmod__(self, o):
        return _binop_or_ni("%", o, self)

    def __pow__(self, o):
        return _binop_or_ni("**", self, o)

    def __rpow__(self, o):
        return _binop_or_ni("**", o, self)

    def __matmul__(self, o):
        return _binop_or_ni("@", self, o)

    def __rmatmul__(self, o):
        return _binop_or_ni("@", o, self)

    def __and__(self, o):
        return _binop_or_ni("&", self, o)

    def __rand__(self, o):
        return _binop_or_ni("&", o, self)

    def __or__(self, o):
        return _binop_or_ni("|", self, o)

    def __ror__(self, o):
        return _binop_or_ni("|", o, self)

    def __xor__(self, o):
        return _binop_or_ni("^", self, o)

    def __rxor__(self, o):
        return _binop_or_ni("^", o, self)

    def __lt__(self, o):
        return _binop_or_ni("<", self, o)

    def __le__(self, o):
        return _binop_or_ni("<=", self, o)

    def __gt__(self, o):
        return _binop_or_ni(">", self, o)

    def __ge__(self, o):
        return _binop_or_ni(">=", self, o)

    def __eq__(self, o):
        return _binop_or_ni("==", self, o)  # noqa: E704  (elementwise, as in NumPy)

    def __ne__(self, o):
        return _binop_or_ni("!=", self, o)

    def __neg__(self):
        return _HOST.negate(self, _user_loc())

    def __pos__(self):
        return self

    def __abs__(self):
        return _op("tg.abs", self, loc=_user_loc())

    def __invert__(self):
        return _op("tg.not", self, loc=_user_loc())

    def __getitem__(self, key):
        return _getitem(self, key, _user_loc())

    # -- methods (NumPy's names and signatures, so np.sum(x), np.mean(x, axis=1) work) ------
    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        loc = _user_loc()
        x = _numpy_args(self, dtype, out, loc)
        return _builtin("sum", loc, x=x, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        loc = _user_loc()
        x = _numpy_args(self, dtype, out, loc)
        return _builtin("mean", loc, x=x, axis=axis, keepdims=keepdims)

    def max(self, axis=None, out=None, keepdims=False):
        loc = _user_loc()
        x = _numpy_args(self, None, out, loc)
        return _builtin("max", loc, x=x, axis=axis, keepdims=keepdims)

    def min(self, axis=None, out=None, keepdims=False):
        loc = _user_loc()
        x = _numpy_args(self, None, out, loc)
        return _builtin("min", loc, x=x, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None, out=None, keepdims=False):
        loc = _user_loc()
        x = _numpy_args(self, None, out, loc)
        return _builtin("argmax", loc, x=x, axis=axis, keepdims=keepdims)

    def argmin(self, axis=None, out=None, keepdims=False):
        loc = _user_loc()
        x = _numpy_args(self, None, out, loc)
        return _builtin("argmin", loc, x=x, axis=axis, keepdims=keepdims)

    def reshape(self, *shape, order="C", ndim=None):
        """NumPy's reshape (Theano's `ndim=`, the length of the shape, is checked)."""
        loc = _user_loc()
        if order != "C":
            raise CompileError("reshape: only order='C' is supported", loc)
        if len(shape) == 1 and isinstance(shape[0], (list, tuple)):
            shape = shape[0]
        if ndim is not None and ndim != len(shape):
            raise CompileError(f"reshape: ndim={ndim} but the shape has {len(shape)} dims", loc)
        return _builtin("reshape", loc, x=self, shape=shape)

    def flatten(self, ndim=1):
        """x.flatten(): all elements in one axis (NumPy's). x.flatten(ndim) keeps the
        first ndim - 1 axes and multiplies the rest into the last (Theano's); the
        same as irc.flatten(x, ndim - 1)."""
        loc = _user_loc()
        if isinstance(ndim, str):  # NumPy's positional order
            if ndim != "C":
                raise CompileError("flatten: only order='C' is supported", loc)
            ndim = 1
        n = _check("flatten", loc, ndim=ndim).static_int("ndim")
        if not 1 <= n <= _py.max(self.type.rank, 1):
            raise CompileError(f"flatten: ndim={n} for a tensor of rank {self.type.rank}", loc)
        return _op("tg.flatten", self, axis=n - 1, loc=loc)

    def dimshuffle(self, *pattern):
        """Theano's dimshuffle: a permutation of the axes with 'x' for a new axis
        of length 1 (`b.dimshuffle('x', 0, 'x', 'x')`); an axis left out must have
        length 1. Made of irc's indexing and transpose."""
        loc = _user_loc()
        if len(pattern) == 1 and isinstance(pattern[0], (list, tuple)):
            pattern = tuple(pattern[0])
        rank = self.type.rank
        axes = [p for p in pattern if p != "x"]
        if not all(_is_int(a) and 0 <= a < rank for a in axes) or len(set(axes)) != len(axes):
            raise CompileError(
                f"dimshuffle{tuple(pattern)}: expected each axis 0..{rank - 1} at most once "
                "and 'x' for new axes",
                loc,
            )
        x = self
        dropped = [i for i in range(rank) if i not in axes]
        for i in dropped:
            if not _unify_shapes((self.type.shape[i],), (1,)):
                raise CompileError(
                    f"dimshuffle{tuple(pattern)}: axis {i} of {self.type} is left out but its "
                    "length is not 1",
                    loc,
                )
        if dropped:
            x = _getitem(x, tuple(0 if i in dropped else slice(None) for i in range(rank)), loc)
        kept = [i for i in range(rank) if i in axes]
        perm = [kept.index(a) for a in axes]
        if perm != sorted(perm):
            x = _op("tg.transpose", x, perm=tuple(perm), loc=loc)
        if "x" in pattern:
            x = _getitem(x, tuple(None if p == "x" else slice(None) for p in pattern), loc)
        return x

    def transpose(self, *axes):
        if len(axes) == 1 and (isinstance(axes[0], (list, tuple)) or axes[0] is None):
            axes = axes[0]
        loc = _user_loc()
        if axes == ():
            axes = None
        perm = _check("transpose", loc, axes=axes).int_list("axes", allow_none=True)
        return _op("tg.transpose", self, perm=perm, loc=loc)

    def dot(self, other):
        loc = _user_loc()
        return _builtin("dot", loc, a=self, b=other)

    def astype(self, dtype):
        return _op("tg.cast", self, dtype=_dtype(dtype).name, loc=_user_loc())

    def clip(self, lo, hi, out=None):
        loc = _user_loc()
        x = _numpy_args(self, None, out, loc)
        return _op(
            "tg.clip",
            x,
            as_variable(lo, like=x, loc=loc),
            as_variable(hi, like=x, loc=loc),
            loc=loc,
        )

    def eval(self, inputs_to_values=None):
        """Compile and run this expression: `y.eval({x: value})` (Theano's eval)."""
        pairs = list((inputs_to_values or {}).items())
        fn = function([k for k, _ in pairs], self, on_unused_input="ignore")
        return fn(*[v for _, v in pairs])

    # -- display -----------------------------------------------------------------------
    def __reduce__(self):
        """Pickled as Theano users expect: a shared variable with its value, an input
        with its dims, an expression as the tg IR of its graph (irc/pickling.py)."""
        from irc.pickling import reduce_variable

        return reduce_variable(self)

    def __repr__(self):
        what = self.name or (self.owner.op if self.owner is not None else self.kind)
        return f"<irc.{type(self).__name__} {what}: {self.type}>"

    def __str__(self):
        return pp(self)


def _numpy_args(x, dtype, out, loc):
    """x converted to `dtype` (NumPy's dtype= of reductions); out= is refused."""
    if out is not None:
        raise CompileError("out= is not supported: symbolic expressions make new values", loc)
    if dtype is not None and _dtype(dtype) != x.type.dtype:
        return _op("tg.cast", x, dtype=_dtype(dtype).name, loc=loc)
    return x


class SharedVariable(Variable):
    """A tensor whose value lives between calls (Theano's shared variable).
    Its type (dtype and shape) is fixed when it is created."""

    __slots__ = ("_value", "_holder", "_version")

    def __init__(self, value: np.ndarray, name=None, loc=None):
        t = TensorType(dtype_of_numpy(value.dtype), tuple(value.shape))
        super().__init__(_LeafValue(t, "shared", name, loc), "shared", loc)
        self.value.shared = self
        self._value = value
        self._holder = None  # (Function, symbol) holding a newer value than _value
        self._version = 0

    def _fetch(self) -> np.ndarray:
        """The current value (fetched from the function holding it, if any)."""
        if self._holder is not None:
            fn, sym = self._holder
            self._value = fn._backend.get(sym)
            self._holder = None
        return self._value

    def get_value(self, borrow=False) -> np.ndarray:
        v = self._fetch()
        return v if borrow else v.copy()

    def set_value(self, value, borrow=False) -> None:
        arr = np.asarray(value)
        want = self.type.dtype.np
        if tuple(arr.shape) != tuple(self.type.shape):
            raise ValueError(
                f"shared variable '{self.name}' is {self.type}; got shape {list(arr.shape)} "
                "(a shared variable's shape is fixed when it is created)"
            )
        if arr.dtype != want and not np.can_cast(arr.dtype, want, "same_kind"):
            raise ValueError(f"shared variable '{self.name}' is {self.type}; got dtype {arr.dtype}")
        if borrow and arr.dtype == want and arr.flags.c_contiguous:
            self._value = arr
        else:
            self._value = np.array(arr, dtype=want, order="C")
        self._holder = None
        self._version += 1


class Dim:
    """A named dim (or an expression over named dims) known at call time:
    what `x.shape[i]` gives for a named axis. It folds with ints and other
    dims (`x.shape[0] * x.shape[1]`) and becomes a tensor (tg.dim) when it
    meets one."""

    __slots__ = ("_d", "_keep")

    def __init__(self, d):
        self._d = D.parse_dim(d) if isinstance(d, str) else d
        self._keep = _UNIFIER.owners(self._d)  # the unknown dims' owners stay alive

    @property
    def d(self):
        """The dim, int or canonical text (unknown dims bound so far substituted)."""
        return _UNIFIER.resolve(self._d)

    def __str__(self):
        return str(self.d)

    def __repr__(self):
        return f"irc.Dim({str(self.d)!r})"

    def __eq__(self, o):
        if isinstance(o, Dim):
            return self.d == o.d
        if isinstance(o, str):
            try:
                return self.d == D.parse_dim(o)
            except ValueError:
                return False
        return NotImplemented

    def __hash__(self):
        return hash(("Dim", self.d))

    def __int__(self):
        raise TypeError(f"the named dim {self.d} has no value until the function is called")

    __index__ = __int__

    def _arith(self, sym, a, b):
        folded = _HOST.fold_dims(sym, a, b)
        if folded is not NotImplemented:
            return folded
        other = b if a is self else a
        if not _operand_ok(other) or isinstance(other, (list, tuple)):
            return NotImplemented
        return _binop(sym, a, b)

    def __add__(self, o):
        return self._arith("+", self, o)

    def __radd__(self, o):
        return self._arith("+", o, self)

    def __sub__(self, o):
        return self._arith("-", self, o)

    def __rsub__(self, o):
        return self._arith("-", o, self)

    def __mul__(self, o):
        return self._arith("*", self, o)

    def __rmul__(self, o):
        return self._arith("*", o, self)

    def __floordiv__(self, o):
        return self._arith("//", self, o)

    def __truediv__(self, o):
        return self._arith("/", self, o)

    def __rtruediv__(self, o):
        return self._arith("/", o, self)

    def __neg__(self):
        return _make_dim(D.dim_sub(0, self.d))

    def __reduce__(self):
        from irc.pickling import reduce_dim

        return reduce_dim(self)


def _make_dim(d):
    return d if isinstance(d, int) else Dim(d)


def _unify_shapes(a: tuple, b: tuple) -> bool:
    """Whether two shapes agree, binding unknown dims to make them (nothing
    bound when they cannot)."""
    mark = _UNIFIER.mark()
    with D.unifying(_UNIFIER):
        ok = D.same_shape(tuple(a), tuple(b))
    if not ok:
        _UNIFIER.rollback(mark)
    return ok


def _unify_types(a: TensorType, b: TensorType) -> bool:
    return a.dtype == b.dtype and _unify_shapes(a.shape, b.shape)


def _attr_owners(v) -> list:
    if isinstance(v, tuple):
        return [o for x in v for o in _attr_owners(x)]
    if isinstance(v, str):
        try:
            return _UNIFIER.owners(D.parse_dim(v))
        except ValueError:
            return []
    return []


def _resolve_type(t: TensorType) -> TensorType:
    return t.with_shape(tuple(_UNIFIER.resolve(d) for d in t.shape))


def _map_attr(v, f):
    """A dim attribute (an int, dim text, or nested tuples of them) with f applied."""
    if isinstance(v, tuple):
        return tuple(_map_attr(x, f) for x in v)
    if isinstance(v, str):
        try:
            return f(D.parse_dim(v))
        except ValueError:
            return v
    return v


def _resolve_attr(v):
    """A dim attribute (an int, dim text, or nested tuples of them) resolved."""
    if isinstance(v, tuple):
        return tuple(_resolve_attr(x) for x in v)
    if isinstance(v, str):
        try:
            return _UNIFIER.resolve(D.parse_dim(v))
        except ValueError:
            return v
    return v


def _dim_of(v):
    """The dim (int or canonical str) of an int, Dim or dim text; else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, Dim):
        return v.d
    if isinstance(v, str):
        try:
            return D.parse_dim(v)
        except ValueError:
            return None
    return None


# -- apply nodes ---------------------------------------------------------------------------


_HANDLES: dict = {}  # id(Value) -> weak reference to its Variable (a _HandleRef)


class _HandleRef(weakref.ref):
    __slots__ = ("key",)


def _forget_handle(ref):
    if _HANDLES.get(ref.key) is ref:
        del _HANDLES[ref.key]


def _leaf(t: TensorType, kind: str, name=None, loc=None) -> Variable:
    """A new input or named-dim value of type t."""
    return Variable(_LeafValue(t, kind, name, loc), kind, loc)


def _handle(value: Value) -> Variable:
    """The Variable of a value: the one a user holds, else a new handle."""
    r = _HANDLES.get(id(value))
    v = r() if r is not None else None
    if v is not None and v.value is value:
        return v
    if isinstance(value, _LeafValue):
        return value.shared if value.shared is not None else Variable(value, value.kind, value.loc)
    if isinstance(value, OpResult):
        return Variable(value, "op", value.op.loc)
    block = value.block  # a scan body's step argument
    return Variable(value, "arg", block.parent.parent.loc if block.parent is not None else None)


class Apply(Op):
    """One traced op: an irc.ir Op (name, operands, attrs with the op's defaults,
    result values, location) that belongs to no block (detached, as in a jaxpr),
    with the scan body it was traced in (`scope`) and its creation order (`_id`:
    functions emit ops in that order, as the `.tg` front end does). tg.scan has its
    body as its region. Its operands are not registered as uses: a traced op is
    never rewritten in place, and a value used by many graphs (a shared variable's)
    must not keep them alive. It holds its results weakly (`_types` keeps their
    types): a Variable keeps its value, its op and the op's operands alive, not the
    other way round, so a graph nobody holds is freed by reference counting (and the
    names of its unknown dims with it); only scans, whose bodies are blocks, wait
    for the cycle collector."""

    __slots__ = ("scope", "_id", "_keep", "_refs", "_types", "_hold")

    @property
    def results(self) -> list:
        """The result values (None for one nobody holds any more)."""
        if self._hold is not None:
            return list(self._hold)
        return [r() for r in self._refs]

    @results.setter
    def results(self, values):
        self._refs = [weakref.ref(v) for v in values]
        self._types = [v.type for v in values]

    def take(self) -> list:
        """The Variables of a new op's results, ending its hold on them."""
        held, self._hold = self._hold, None
        return [Variable(r, "op", self.loc) for r in held]

    @property
    def op(self) -> str:
        return self.name

    @property
    def inputs(self) -> list:
        """The operands' Variables."""
        return [_handle(v) for v in self.operands]

    @property
    def outputs(self) -> list:
        """The results' Variables (None for a result nobody holds any more)."""
        return [None if r is None else _handle(r) for r in self.results]

    @property
    def body(self):
        """tg.scan: its body (a _Body block); else None."""
        return self.regions[0].blocks[0] if self.regions else None

    def __repr__(self):
        return f"<irc.Apply {self.name} ({len(self.operands)} inputs)>"


_CURRENT = object()


def _auto_hint(inputs):
    for v in inputs:
        if v._auto:
            return (
                f"'{v.name or 'this input'}' was made without dims; what its uses so far "
                f"have bound makes it {v.type}"
            )
    return None


def _apply(
    opname, inputs, attrs=None, loc=None, scope=_CURRENT, types=None, regions=(), names=None
) -> Apply:
    """Trace the op `opname` on the Variables `inputs`: its types are inferred (binding
    unknown dims; a failed op binds nothing and is a CompileError located at loc)."""
    if loc is None:
        loc = _user_loc()
    if scope is _CURRENT:
        scope = _current_scope()
    for v in inputs:
        if not _visible(v.scope, scope):
            raise CompileError(_LEAK, loc, _LEAK_HINT)
    d = lookup(opname)
    full = dict(d.defaults) if d is not None else {}
    full.update(attrs or {})
    if types is None:
        full = {k: freeze_attr(v) for k, v in full.items()}
        mark = _UNIFIER.mark()
        try:
            with D.unifying(_UNIFIER):
                types = infer_types(opname, [v.type for v in inputs], full)
        except TypeError_ as e:
            _UNIFIER.rollback(mark)  # a failed op binds nothing
            raise CompileError(e.message, loc, _auto_hint(inputs)) from None
    a = Apply(opname, (), (), full, regions, loc)
    a.operands = [v.value for v in inputs]  # not registered as uses (see Apply)
    names = list(names or [])
    held = [_Result(a, i, t, names[i] if i < len(names) else None) for i, t in enumerate(types)]
    a.results = held
    a._hold = held  # until the caller takes them (Apply.take)
    a.scope = scope
    # Unknown dims named in dim attributes (arange(x.shape[0])): keep their owners alive.
    a._keep = [
        o
        for k in (d.dim_attrs if d is not None else ())
        if k in a.attrs
        for o in _attr_owners(a.attrs[k])
    ] or None
    a._id = next(_ids)
    return a


def _op(opname, *inputs, loc=None, **attrs) -> Variable:
    return _apply(opname, list(inputs), attrs, loc).take()[0]


# The builders, function and pp, which the methods above call (they import this module).
from irc.symbolic.builders import (  # noqa: E402
    _HOST,
    _binop,
    _builtin,
    _check,
    _dtype,
    _getitem,
    _is_int,
    as_variable,
)
from irc.symbolic.compile import (  # noqa: E402
    function,
)
from irc.symbolic.printing import (  # noqa: E402
    pp,
)

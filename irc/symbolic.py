"""The Theano-style Python API: symbolic variables, shared variables, grad,
scan, clone and function (with updates and givens). It builds the same tg IR
as the `.tg` front end, so passes, backends and dumps are shared.

    x = irc.matrix("x", dims=("N", 64))
    y = irc.vector("y", dtype="int32", dims=("N",))
    W = irc.shared(np.zeros((64, 10), np.float32), name="W")
    b = irc.shared(np.zeros(10, np.float32), name="b")
    loss = irc.categorical_crossentropy(irc.softmax(x @ W + b), y).mean()
    gW, gb = irc.grad(loss, [W, b])
    train = irc.function([x, y], loss, updates=[(W, W - 0.1 * gW), (b, b - 0.1 * gb)])

How it works
------------
An expression is a lazy graph: `Variable`s are inputs, shared variables,
named-dim values, scan step arguments, or outputs of an `Apply` (one tg op
with its inputs and attributes; `tg.scan` also holds its traced body). Types
and shapes are inferred when a node is created, through the op registry, so a
shape error is raised at once as a CompileError located at the user's line:
every node records the file, line and column of the Python expression that
created it (frames of the irc package are skipped).

Inputs made without dims= have unknown dims (irc/ir/dims.py, Unifier): the
type rules compare dims with same_dim while _apply infers types, which binds
unknowns instead of failing (`x @ W` makes x's columns W's rows); Variables
and Dims resolve their types through the bindings lazily. A failed op binds
nothing (rollback); `function` binds the dims of givens for itself only. An
unknown's name is reused once nothing mentions it (its owner input is held
weakly; an Apply holds its outputs weakly, so graphs die by reference count).

`function(...)` emits one module: a tg.global per shared variable used
(init = "value": the backend starts from the variable's current value), one
public func.func with the inputs as arguments, tg.read and tg.dim at its
entry, the op nodes in creation order (the order in which the `.tg` front end
emits the same program), tg.update before func.return. Then
irc.pipeline.run_pipeline and a backend from irc.api._make_backend. Nodes
created while a scan's step function is traced belong to its body (they are
emitted inside the tg.scan region); using one outside is an error.

Python values follow NumPy 2: Python scalars are weak (they take the dtype of
the tensor they meet, irc.frontend.host.weak_dtype), NumPy scalars and
arrays are strong. Floats default to f32 and integers to i32, as in `.tg`.

Shared variables
----------------
A SharedVariable owns its value; compiled functions share it (Theano
semantics: a function sees the updates another one made). A function keeps
its own copy of the state in its backend and syncs lazily around calls, with
a version number per shared variable: before a call it pushes the values
changed elsewhere since its last call (set_value, or an update by another
function); after the call, the updated variables record that this function
holds their newest value. The host copy is fetched only when needed
(get_value, or a call of another function): one copy of the array each
time. A function called repeatedly on its own moves no data.

Pickling (`__reduce__` of Variable, Dim and Function) is irc/pickling.py's.

Imports irc.ir, irc.ops and irc.frontend (weak dtypes) at module level;
irc.pipeline, irc.api and the printer when compiling. Never imported by
the layers below irc.api.
"""

from __future__ import annotations

import builtins as _py
import inspect as _inspect
import itertools
import os
import re
import shutil
import subprocess
import sys
import weakref
from collections import OrderedDict
from typing import Optional

import numpy as np

import irc.ops  # noqa: F401  (registers the ops)
from irc import SYMBOLIC_API
from irc.frontend.builtins import BUILTINS, OPERATORS, REQUIRED, Call, run_builtin
from irc.frontend.host import Host, default_dtype, literal_array, weak_dtype
from irc.frontend.indexing import ELLIPSIS, NONE, Slice, lower_index
from irc.ir import dims as D
from irc.ir.core import Block, Loc, Module, Op, Region, SymbolRef, freeze_attr
from irc.ir.errors import CompileError, trust_source_file
from irc.ir.types import (
    DTYPES,
    I32,
    DType,
    TensorType,
    TypeError_,
    dtype_of_numpy,
)
from irc.ops.registry import infer_types, lookup

# the one list of names, shared with irc/__init__.py, and the built-ins of the tg language
__all__ = list(SYMBOLIC_API) + list(BUILTINS)

# -- source locations ----------------------------------------------------------------

_IRC_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


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


class _Trace:
    """The body of one scan while (and after) its step function is traced.
    Nodes created during tracing belong to it and are emitted inside the body."""

    __slots__ = ("parent", "scan")

    def __init__(self, parent):
        self.parent = parent
        self.scan = None  # the Apply of the tg.scan, once built


_TRACES: list = []  # the traces being built, innermost last


def _current_scope():
    return _TRACES[-1] if _TRACES else None


def _visible(scope, from_scope) -> bool:
    """Whether a node of `scope` can be used by a node of `from_scope`."""
    if scope is None:
        return True
    s = from_scope
    while s is not None:
        if s is scope:
            return True
        s = s.parent
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
    """A symbolic tensor. `type` is its TensorType; `owner` the Apply that
    computes it (None for inputs, shared variables, named-dim values and scan
    step arguments); `name` names it in dumps and errors (settable)."""

    __array_ufunc__ = None  # NumPy defers to the reflected operators below
    __slots__ = (
        "_type",
        "_tcache",
        "kind",
        "owner",
        "index",
        "name",
        "loc",
        "scope",
        "dim",
        "_id",
        "_affine",
        "_auto",
        "_keep",
        "__weakref__",
    )

    def __init__(
        self, type: TensorType, kind: str, name=None, loc=None, owner=None, index=0, scope=None
    ):
        self._type = type
        self._tcache = None  # (unifier version, resolved type)
        self.kind = kind  # "input" | "shared" | "dim" | "arg" | "op"
        self.owner = owner
        self.index = index
        self.name = name
        self.loc = loc
        self.scope = scope
        self.dim = None  # kind "dim": the named dim whose value this is
        self._id = next(_ids)
        self._affine = None  # integer scalars: an affine form {Variable | 1: dim}
        self._auto = False  # input with dims made up because none were given
        self._keep = None  # owners of the unknown dims a "dim" value mentions (kept alive)

    __hash__ = object.__hash__

    @property
    def type(self) -> TensorType:
        """The TensorType, with the unknown dims bound so far substituted."""
        t = self._type
        if not _UNIFIER.binding or not t.shape or t.is_static:
            return t
        c = self._tcache
        if c is None or c[0] != _UNIFIER.version:
            c = self._tcache = (_UNIFIER.version, _resolve_type(t))
        return c[1]

    @type.setter
    def type(self, t: TensorType):
        self._type, self._tcache = t, None

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
        super().__init__(
            TensorType(dtype_of_numpy(value.dtype), tuple(value.shape)), "shared", name, loc
        )
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


class _ScanBody:
    __slots__ = ("trace", "args", "yields", "loc")

    def __init__(self, trace, args, yields, loc):
        self.trace, self.args, self.yields, self.loc = trace, args, yields, loc


class Apply:
    """One op applied to input Variables: `op` (e.g. "tg.matmul"), `attrs`
    (with the op's defaults), `outputs`. tg.scan also has `body`.

    An Apply holds its outputs weakly (their types in `_types`): a Variable keeps
    its Apply and inputs alive, not the other way round, so a graph nobody holds
    is freed at once (and the names of its unknown dims with it) rather than by
    the cycle collector."""

    __slots__ = (
        "op", "inputs", "attrs", "_outs", "_types", "_hold", "loc", "scope", "body", "_id",
        "_keep",
    )  # fmt: skip

    @property
    def outputs(self) -> list:
        """The output Variables (None for one nobody holds any more)."""
        if self._hold is not None:
            return list(self._hold)
        return [r() for r in self._outs]

    def take(self) -> list:
        """The outputs of a new Apply, strongly, ending its hold on them."""
        outs, self._hold = self._hold, None
        return outs

    def __repr__(self):
        return f"<irc.Apply {self.op} ({len(self.inputs)} inputs)>"


_CURRENT = object()


def _auto_hint(inputs):
    for v in inputs:
        if v._auto and v.owner is None:
            return (
                f"'{v.name or 'this input'}' was made without dims; what its uses so far "
                f"have bound makes it {v.type}"
            )
    return None


def _apply(opname, inputs, attrs=None, loc=None, scope=_CURRENT, types=None, body=None) -> Apply:
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
    full = {k: freeze_attr(v) for k, v in full.items()}
    if types is None:
        mark = _UNIFIER.mark()
        try:
            with D.unifying(_UNIFIER):
                types = infer_types(opname, [v.type for v in inputs], full)
        except TypeError_ as e:
            _UNIFIER.rollback(mark)  # a failed op binds nothing
            raise CompileError(e.message, loc, _auto_hint(inputs)) from None
    a = Apply()
    a.op, a.inputs, a.attrs, a.loc, a.scope, a.body = opname, list(inputs), full, loc, scope, body
    # Unknown dims named in dim attributes (arange(x.shape[0])): keep their owners alive.
    a._keep = [
        o
        for k in (d.dim_attrs if d is not None else ())
        if k in full
        for o in _attr_owners(full[k])
    ] or None
    outs = [Variable(t, "op", None, loc, a, i, scope) for i, t in enumerate(types)]
    a._outs = [weakref.ref(o) for o in outs]
    a._types = list(types)
    a._hold = outs  # until the caller takes them (Apply.take)
    a._id = next(_ids)
    return a


def _op(opname, *inputs, loc=None, **attrs) -> Variable:
    return _apply(opname, list(inputs), attrs, loc).take()[0]


# -- Python values as tensors -----------------------------------------------------------------


def _describe(v) -> str:
    if isinstance(v, Variable):
        return f"a tensor {v.type}"
    if isinstance(v, (bool, np.bool_)):
        return f"the boolean {v}"
    if isinstance(v, (int, float, np.number)):
        return f"the number {v}"
    if isinstance(v, Dim):
        return f"the dimension {v}"
    if isinstance(v, str):
        return f"the string {v!r}"
    if v is None:
        return "None"
    return f"a {type(v).__name__}"


def _np_dtype(dt, loc) -> DType:
    try:
        return dtype_of_numpy(dt)
    except TypeError_ as e:
        raise CompileError(
            e.message, loc, "convert it with .astype(np.float32) (or int32, ...)"
        ) from None


def _const(arr: np.ndarray, loc) -> Variable:
    return _op("tg.constant", value=arr, loc=loc)


def _dim_variable(d, dt: DType, loc) -> Variable:
    v = Variable(TensorType(dt, ()), "dim", None, loc)
    v.dim = d
    v._keep = _UNIFIER.owners(d)
    if dt.is_int:
        v._affine = {1: d}
    return v


def as_variable(
    v, dtype: Optional[DType] = None, like: Optional[Variable] = None, loc=None
) -> Variable:
    """A Variable for `v`: Variables as they are; Python numbers and lists as
    constants of `dtype`, or weakly typed against `like` (NumPy 2), else f32
    for floats and i32 for ints; NumPy values keep their dtype; a Dim
    becomes its value (tg.dim)."""
    if isinstance(v, Variable):
        return v
    if loc is None:
        loc = _user_loc()
    if isinstance(v, Dim):
        dt = dtype or (weak_dtype(like.type.dtype, 1) if like is not None else I32)
        return _dim_variable(v.d, dt, loc)
    if isinstance(v, (np.ndarray, np.generic)):
        arr = np.asarray(v)
        return _const(arr.astype(_np_dtype(arr.dtype, loc).np), loc)
    if isinstance(v, (bool, int, float)):
        if dtype is None:
            dtype = weak_dtype(like.type.dtype, v) if like is not None else default_dtype(v)
        return _const(np.asarray(v, dtype=dtype.np), loc)
    if isinstance(v, (list, tuple)):
        items = list(v)
        if items and all(
            isinstance(x, (bool, int, float)) and not isinstance(x, np.generic) for x in items
        ):
            return _const(literal_array(items, dtype, like.type if like is not None else None), loc)
        if not items:
            raise CompileError("cannot make a tensor of an empty list", loc)
        tensors = [as_variable(x, dtype, like, loc) for x in items]
        return _op("tg.stack", *tensors, axis=0, loc=loc)
    raise CompileError(f"expected a tensor, got {_describe(v)}", loc)


def _binop(sym, a, b, loc=None) -> Variable:
    return _HOST.binop(sym, _BINOPS[sym], a, b, loc or _user_loc())


# -- argument checks shared by the built-ins -------------------------------------------------


def _dtype(v) -> DType:
    if isinstance(v, DType):
        return v
    if isinstance(v, str) and v in DTYPES:
        return DTYPES[v]
    try:
        return dtype_of_numpy(np.dtype(v))
    except (TypeError, TypeError_):
        raise TypeError(
            f"unknown dtype {v!r} (irc has {', '.join(DTYPES)}, or NumPy's names for them)"
        ) from None


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


# -- symbolic inputs and shared variables ------------------------------------------------------


def _input(kind, name, dtype, dims, rank, loc) -> Variable:
    dt = _dtype(dtype)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"irc.{kind}(): the name must be a string, got {name!r}")
    if dims is None:
        dims = [None] * rank
    elif isinstance(dims, (int, str, Dim)):
        dims = [dims]
    dims = list(dims)
    if rank is not None and len(dims) != rank:
        raise CompileError(f"irc.{kind}() has {rank} dims, got {len(dims)}: {tuple(dims)}", loc)
    base = re.sub(r"\W", "_", name) if name else f"v{next(_anon)}"
    if base[0].isdigit():
        base = "v" + base
    if any(d is None for d in dims):  # unknown dims: base_0, base_1 (base2_0 ... if taken)

        def taken(b):
            return any(
                f"{b}_{i}" in _UNIFIER.unknown or f"{b}_{i}" in _NAMED for i in range(len(dims))
            )

        if taken(base):  # the graphs of an earlier `x` may be garbage: reuse x_0
            _collect_garbage(young=True)
            if taken(base):
                _collect_garbage()
        stem, k = base, 1
        while taken(base):
            k += 1
            base = f"{stem}{k}"
    shape, auto = [], False
    for i, d in enumerate(dims):
        if d is None:
            d, auto = _UNIFIER.fresh(f"{base}_{i}", _NAMED), True
        else:
            dd = _dim_of(d)
            if dd is None or (isinstance(dd, int) and dd < 0):
                raise CompileError(
                    f"irc.{kind}(): bad dimension {d!r} (an integer or a name such as 'N')", loc
                )
            if isinstance(dd, str) and not D.is_name(dd):
                raise CompileError(
                    f"irc.{kind}(): an input's dims must be integers or names, got {dd}",
                    loc,
                    "compute derived sizes from the inputs (x.shape[0] * 2) instead",
                )
            if isinstance(dd, str):
                if dd in _UNIFIER.unknown:
                    raise CompileError(
                        f"irc.{kind}(): the dim name {dd} is taken by an unknown dim of an input "
                        "made without dims",
                        loc,
                        "choose another name",
                    )
                _NAMED.add(dd)
            d = dd
        shape.append(d)
    v = Variable(TensorType(dt, tuple(shape)), "input", name, loc)
    v._auto = auto
    if auto:
        _UNIFIER.adopt([d for d in shape if isinstance(d, str) and d in _UNIFIER.unknown], v)
    if v.type.rank == 0 and dt.is_int:
        v._affine = {v: 1}
    return v


_LAST_GC = [0.0, 0.0]  # when the last collection ended, and how long it took


def _collect_garbage(young=False):
    """Collect cyclic garbage: the young generations (cheap), or all of them unless
    the last full collection was recent (it may cost tens of ms: at most a tenth of
    the time goes to it). Most graphs are freed when nobody holds them, but those
    in cycles (scans, compiled functions, tracebacks) only by the cycle collector."""
    import gc
    import time

    if young:
        gc.collect(1)
        return
    start = time.monotonic()
    if start - _LAST_GC[0] > _py.max(0.05, 10 * _LAST_GC[1]):
        gc.collect()
        _LAST_GC[0] = time.monotonic()
        _LAST_GC[1] = _LAST_GC[0] - start


def tensor(name=None, dtype="float32", dims=None) -> Variable:
    """A symbolic input of any rank: `irc.tensor("x", "float32", ("N", 1, 8, 8))`.
    A dim is an integer or a name (a named dim, bound by the arguments at call
    time; equal names must agree), or None for a made-up name."""
    if dims is None:
        raise TypeError(
            "irc.tensor(name, dtype, dims): give the dims, e.g. ('N', 64) (or use irc.matrix ...)"
        )
    return _input("tensor", name, dtype, dims, None, _user_loc())


def scalar(name=None, dtype="float32") -> Variable:
    """A symbolic scalar input (f32 unless told)."""
    return _input("scalar", name, dtype, (), 0, _user_loc())


def vector(name=None, dtype="float32", dims=None) -> Variable:
    """A symbolic 1-d input; dims=("N",). Without dims the name is made up."""
    return _input("vector", name, dtype, dims, 1, _user_loc())


def matrix(name=None, dtype="float32", dims=None) -> Variable:
    """A symbolic 2-d input; dims=("N", 64). Without dims the names are made up."""
    return _input("matrix", name, dtype, dims, 2, _user_loc())


def tensor3(name=None, dtype="float32", dims=None) -> Variable:
    return _input("tensor3", name, dtype, dims, 3, _user_loc())


def tensor4(name=None, dtype="float32", dims=None) -> Variable:
    return _input("tensor4", name, dtype, dims, 4, _user_loc())


def shared(value, name=None, dtype=None, borrow=False) -> SharedVariable:
    """A shared variable holding `value` (copied unless borrow=True). NumPy
    arrays keep their dtype; Python numbers and lists are f32 / i32 / bool,
    as literals in `.tg`; `dtype=` converts."""
    loc = _user_loc()
    if isinstance(value, Variable):
        raise TypeError(
            "irc.shared() takes a value (a NumPy array or numbers), not a symbolic tensor"
        )
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.array(value, copy=not borrow) if not borrow else np.asarray(value)
    else:
        arr = np.asarray(value)
        if arr.dtype == object:
            raise TypeError(f"irc.shared(): cannot make a tensor of {_describe(value)}")
        if dtype is None:
            dtype = {"f": "f32", "i": "i32", "u": "i32", "b": "bool"}.get(arr.dtype.kind)
    if dtype is not None:
        arr = arr.astype(_dtype(dtype).np, copy=False)
    _np_dtype(arr.dtype, loc)
    arr = np.asarray(arr, order="C")  # not ascontiguousarray: it makes a 0-d array 1-d
    if name is not None and not isinstance(name, str):
        raise TypeError(f"irc.shared(): the name must be a string, got {name!r}")
    return SharedVariable(arr, name, loc)


class In:
    """A function input with a default value (Theano's In): irc.In(lr, value=0.1).
    Only scalar inputs take defaults, and the default must be a number."""

    def __init__(self, variable, value=None, name=None):
        self.variable, self.value, self.name = variable, value, name


# -- indexing ---------------------------------------------------------------------------------


def _idx(v):
    return int(v) if isinstance(v, np.integer) else v


def _getitem(x: Variable, key, loc) -> Variable:
    """NumPy indexing, lowered as the `.tg` front end does (irc/frontend/indexing.py)."""
    items = []
    for it in list(key) if isinstance(key, tuple) else [key]:
        if it is None:
            items.append(NONE)
        elif it is Ellipsis:
            items.append(ELLIPSIS)
        elif isinstance(it, slice):
            items.append(Slice(_idx(it.start), _idx(it.stop), _idx(it.step), loc))
        else:
            items.append((bool(it) if isinstance(it, np.bool_) else _idx(it), loc))
    return lower_index(_HOST, x, items, loc)


# -- built-in functions: generated from the one table (irc/frontend/builtins.py) -------------


class _Host(Host):
    """Variables for the shared front-end logic (irc/frontend/host.py): the built-ins,
    indexing, operators. Python's tuples are lists, NumPy's dtype names are dtypes,
    shapes agree by unifying unknown dims."""

    sequences = (list, tuple)
    true_false = "True or False"

    def is_tensor(self, v):
        return isinstance(v, Variable)

    def is_dim(self, v):
        return isinstance(v, Dim)

    def make_dim(self, d):
        return _make_dim(d)

    def form(self, v):
        return v._affine

    def set_form(self, v, f):
        v._affine = f

    def constant_value(self, v):
        a = v.owner
        return a.attrs["value"] if a is not None and a.op == "tg.constant" else None

    def same_shape(self, a, b):
        return _unify_shapes(a, b)

    def as_tensor(self, v, loc, dtype=None, like=None):
        return as_variable(v, dtype=dtype, like=like, loc=loc)

    def describe(self, v):
        return _describe(v)

    def dim_of(self, v):
        return _dim_of(v)

    def dtype(self, v, call, p):
        return _dtype(v)

    def op(self, name, operands, attrs, loc):
        return _op(name, *operands, loc=loc, **attrs)


_HOST = _Host()


def _builtin(name, loc, **bound):
    """Built-in `name` (irc/frontend/builtins.py) on its arguments, located at loc."""
    return run_builtin(_HOST, name, bound, loc)


def _check(fname, loc, **bound) -> Call:
    """The argument checks of the built-ins for a method's own arguments."""
    return Call(_HOST, fname, bound, loc, {})


def _python_builtin(name):
    """The Python function of built-in `name`: its signature is the table's, so Python
    binds the arguments (and says what is missing); the location is the caller's."""
    params, handler = BUILTINS[name]
    sig = ", ".join(p if d is REQUIRED else f"{p}={d!r}" for p, d in params)
    args = ", ".join(f"{p}={p}" for p, _ in params)
    src = f"def {name}({sig}):\n    return _builtin({name!r}, _user_loc(), {args})\n"
    ns = {"_builtin": _builtin, "_user_loc": _user_loc}
    # compiled as this file's code: _user_loc skips its frame, as it skips ours
    exec(compile(src, __file__, "exec"), ns)
    fn = ns[name]
    fn.__module__, fn.__qualname__ = __name__, name
    fn.__doc__ = handler.__doc__ or f"The built-in {name}({sig}) of the tg language."
    return fn


for _name in BUILTINS:
    globals()[_name] = _python_builtin(_name)
del _name


# -- grad --------------------------------------------------------------------------------------

_DISCONNECTED = {"raise": "raise", "zero": "zero", "ignore": "zero", "warn": "zero"}


def grad(cost, wrt, disconnected="raise", disconnected_inputs=None):
    """The gradient of the scalar `cost` with respect to one variable (or a
    list: a list of gradients). Gradient code is generated by the `grad` pass
    when the function is compiled. disconnected="zero" gives zeros for a
    variable the cost does not depend on instead of an error (Theano's
    disconnected_inputs="ignore" is accepted too)."""
    loc = _user_loc()
    if disconnected_inputs is not None:
        disconnected = disconnected_inputs
    if disconnected not in _DISCONNECTED:
        raise ValueError('grad(): disconnected must be "raise" or "zero"')
    if not isinstance(cost, Variable):
        raise CompileError(
            f"grad: the cost must be a tensor expression, got {_describe(cost)}", loc
        )
    single = not isinstance(wrt, (list, tuple))
    ws = [wrt] if single else list(wrt)
    for w in ws:
        if not isinstance(w, Variable):
            raise CompileError(f"grad: cannot differentiate with respect to {_describe(w)}", loc)
    if not ws:
        return []
    outs = _apply("tg.grad", [cost] + ws, {"disconnected": _DISCONNECTED[disconnected]}, loc).take()
    for w, g in zip(ws, outs):
        g.name = "g" + w.name if w.name else None
    return outs[0] if single else outs


# -- scan --------------------------------------------------------------------------------------


def _as_list(v):
    if v is None:
        return []
    if isinstance(v, (list, tuple)):
        return list(v)
    return [v]


def _param_names(fn, n) -> list:
    try:
        params = [
            p.name
            for p in _inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return (params + [None] * n)[:n]


def _step_outputs(result, loc) -> list:
    if isinstance(result, dict):
        if result:
            raise CompileError(
                "scan: updates inside a step function are not supported",
                loc,
                "return the new values as outputs and update after the scan",
            )
        return []
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        if result[1]:
            raise CompileError(
                "scan: updates inside a step function are not supported",
                loc,
                "return the new values as outputs and update after the scan",
            )
        result = result[0]
    if result is None:
        return []
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]


def scan(
    fn,
    sequences=None,
    outputs_info=None,
    non_sequences=None,
    n_steps=None,
    truncate_gradient=-1,
    go_backwards=False,
    name=None,
    return_list=False,
):
    """The symbolic loop, with Theano's conventions.

    `fn(*sequence_slices, *previous_outputs, *non_sequences)` is called once,
    with symbolic arguments, to trace the loop body. `outputs_info` has one
    entry per output of fn: the initial value of a carried output (fn gets
    its previous value), or None for an output that is only stacked. Returns
    (outputs, updates): each output stacked over the steps on a new leading
    axis (one variable, or a list when fn has several outputs), and an empty
    updates dict (Theano's). truncate_gradient=k backpropagates through the
    last k steps only; go_backwards=True iterates the sequences from the end.
    """
    loc = _user_loc()
    seqs = []
    for k, s in enumerate(_as_list(sequences)):
        if isinstance(s, dict):
            taps = s.get("taps", [0])
            if taps is not None and list(taps) != [0]:
                raise CompileError(
                    "scan: only taps=[0] are supported for sequences",
                    loc,
                    "pass shifted sequences instead: x[1:], x[:-1]",
                )
            s = s["input"]
        s = as_variable(s, loc=loc)
        if s.type.rank == 0:
            raise CompileError(
                f"scan: sequence {k} is a scalar ({s.type}); scan iterates over a leading axis", loc
            )
        if go_backwards:
            s = _op("tg.index", s, items=(("slice", None, None, -1),), loc=loc)
        seqs.append(s)
    entries = None
    if outputs_info is not None:
        entries = []
        for o in _as_list(outputs_info):
            if isinstance(o, dict):
                taps = o.get("taps", [-1])
                if taps is not None and list(taps) != [-1]:
                    raise CompileError(
                        "scan: only taps=[-1] are supported for outputs",
                        loc,
                        "carry a tuple of the last values instead",
                    )
                o = o.get("initial")
            entries.append(None if o is None else as_variable(o, loc=loc))
    inits = [e for e in (entries or []) if e is not None]
    non_seqs = _as_list(non_sequences)
    if isinstance(n_steps, Variable):
        raise CompileError(
            "scan: n_steps must be an integer or a named dim, not a symbolic value",
            loc,
            "a named dim of an input works: n_steps=x.shape[0]",
        )
    length = _HOST.scan_length(
        [(f"sequence {k}", s, loc) for k, s in enumerate(seqs)],
        None if n_steps is None else (n_steps, loc),
        loc,
        ("scan: ", "n_steps", "scan: without sequences, n_steps gives the number of steps"),
    )
    if truncate_gradient is None or (_is_int(truncate_gradient) and truncate_gradient == -1):
        truncate = None
    elif _is_int(truncate_gradient) and truncate_gradient >= 1:
        truncate = int(truncate_gradient)
    else:
        raise CompileError(
            "scan: truncate_gradient must be -1 (no truncation) or a positive integer", loc
        )

    tr = _Trace(_current_scope())
    names = _param_names(fn, len(seqs) + len(inits))
    args = [
        Variable(s.type.with_shape(s.type.shape[1:]), "arg", n or s.name, loc, scope=tr)
        for s, n in zip(seqs, names)
    ]
    args += [
        Variable(i.type, "arg", n or i.name, loc, scope=tr)
        for i, n in zip(inits, names[len(seqs) :])
    ]
    for p in args:
        if p.type.rank == 0 and p.type.dtype.is_int:
            p._affine = {p: 1}
    _TRACES.append(tr)
    try:
        outs = _step_outputs(fn(*args, *non_seqs), loc)
        if entries is None:
            entries = [None] * len(outs)
        if len(entries) != len(outs):
            raise CompileError(
                f"scan: the step function returns {len(outs)} output(s) but outputs_info has "
                f"{len(entries)} entries",
                loc,
                "one entry per output: the initial value of a carried output, None for the others",
            )
        nexts, stacked = [], []
        for k, (o, e) in enumerate(zip(outs, entries)):
            if e is None:
                v = as_variable(o, loc=loc)
            else:
                v = as_variable(o, dtype=e.type.dtype, loc=loc)
                if not _unify_types(v.type, e.type):
                    raise CompileError(
                        f"scan: output {k} is carried; it starts as {e.type} (outputs_info) but "
                        f"the step function returns {v.type}",
                        v.loc or loc,
                        "the next value must have the type of the initial value",
                    )
                nexts.append(v)
            if not _visible(v.scope, tr):
                raise CompileError(_LEAK, v.loc or loc, _LEAK_HINT)
            stacked.append(v)
    finally:
        _TRACES.pop()
    types = [i.type for i in inits] + [v.type.with_shape((length,) + v.type.shape) for v in stacked]
    attrs = {
        "n_seqs": len(seqs),
        "n_carries": len(inits),
        "length": length,
        "truncate": truncate,
        "reverse": False,
    }
    a = _apply(
        "tg.scan",
        seqs + inits,
        attrs,
        loc,
        types=types,
        body=_ScanBody(tr, args, nexts + stacked, loc),
    )
    tr.scan = a
    results = a.take()[len(inits) :]
    if name is not None:
        for i, r in enumerate(results):
            r.name = name if len(results) == 1 else f"{name}{i}"
    out = results[0] if len(results) == 1 and not return_list else list(results)
    return out, OrderedDict()


# -- clone: substitution -----------------------------------------------------------------------


def _collect_applies(roots) -> list:
    """Every Apply the roots depend on (through scan bodies too), by creation."""
    seen, out = set(), []
    stack = [v for v in roots if isinstance(v, Variable)]
    while stack:
        v = stack.pop()
        a = v.owner
        if a is None or id(a) in seen:
            continue
        seen.add(id(a))
        out.append(a)
        stack.extend(a.inputs)
        if a.body is not None:
            stack.extend(a.body.yields)
    out.sort(key=lambda a: a._id)
    return out


def _clone_graph(roots: list, pairs: list) -> list:
    """The roots with each `old` of `pairs` replaced by its `new` (which is
    not itself substituted). Nodes that depend on no replaced variable are
    shared with the original graph; a scan whose body depends on one is
    rebuilt with a fresh body."""
    rep = {id(k): v for k, v in pairs}
    applies = _collect_applies(roots)
    # The unknown dims of a replaced variable become the replacement's dims where
    # they appear as values (x.shape[0]) or attributes (arange(x.shape[0])).
    dim_map = {}
    for k, v in pairs:
        for dk, dv in zip(k.type.shape, v.type.shape):
            if isinstance(dk, str) and dk in _UNIFIER.unknown and dk != dv:
                dim_map[dk] = dv

    def mapped(d):
        d = _UNIFIER.resolve(d)
        if isinstance(d, int) or not (D.dim_names(d) & dim_map.keys()):
            return d
        text = re.sub(r"[A-Za-z_]\w*", lambda m: f"({dim_map.get(m.group(0), m.group(0))})", d)
        return D.parse_dim(text)

    def map_attrs(a):
        """a's attributes with the dims mapped; a.attrs itself when none changes."""
        od = lookup(a.op)
        if not dim_map or od is None:
            return a.attrs
        changed = {
            k: _map_attr(a.attrs[k], mapped)
            for k in od.dim_attrs
            if k in a.attrs and _map_attr(a.attrs[k], mapped) != a.attrs[k]
        }
        return {**a.attrs, **changed} if changed else a.attrs

    def vdep(v):
        if v.kind == "dim":
            return bool(D.dim_names(_UNIFIER.resolve(v.dim)) & dim_map.keys())
        return id(v) in rep or (v.owner is not None and dep[id(v.owner)])

    dep = {}
    for a in applies:
        dep[id(a)] = (
            any(vdep(i) for i in a.inputs)
            or (a.body is not None and any(vdep(y) for y in a.body.yields))
            or map_attrs(a) is not a.attrs
        )
    rebuilt = set()  # ids of the traces of rebuilt scans; outer scans first
    for a in reversed(applies):
        if a.body is not None and (dep[id(a)] or (a.scope is not None and id(a.scope) in rebuilt)):
            rebuilt.add(id(a.body.trace))

    new: dict = {}
    keep: list = []
    traces: dict = {}

    def nv(v):
        r = rep.get(id(v))
        if r is not None:
            return r
        if v.kind == "arg" and id(v.scope) in rebuilt:
            trace_of(v.scope)
        if v.kind == "dim" and vdep(v) and id(v) not in new:
            d = mapped(v.dim)
            if isinstance(d, int):
                new[id(v)] = _const(np.asarray(d, dtype=v.type.dtype.np), v.loc)
            else:
                new[id(v)] = _dim_variable(d, v.type.dtype, v.loc)
        return new.get(id(v), v)

    def scope_of(s):
        return trace_of(s) if s is not None and id(s) in rebuilt else s

    def trace_of(t):
        nt = traces.get(id(t))
        if nt is not None:
            return nt
        nt = _Trace(scope_of(t.parent))
        traces[id(t)] = nt
        s = t.scan
        ins = [nv(i) for i in s.inputs]
        ns = s.attrs["n_seqs"]
        for k, p in enumerate(s.body.args):
            typ = ins[k].type.with_shape(ins[k].type.shape[1:]) if k < ns else ins[k].type
            q = Variable(typ, "arg", p.name, p.loc, scope=nt)
            if typ.rank == 0 and typ.dtype.is_int:
                q._affine = {q: 1}
            new[id(p)] = q
        return nt

    for a in applies:
        if a.body is not None:
            if id(a.body.trace) not in rebuilt:
                continue
            na = _rebuild_scan(a, nv, scope_of(a.scope), trace_of(a.body.trace), mapped)
        else:
            ins = [nv(i) for i in a.inputs]
            attrs = map_attrs(a)
            if (
                all(n is o for n, o in zip(ins, a.inputs))
                and attrs is a.attrs
                and not (a.scope is not None and id(a.scope) in rebuilt)
            ):
                continue
            na = _apply(a.op, ins, attrs, a.loc, scope=scope_of(a.scope))
        outs = na.take()
        _HOST.track_rebuilt(a.op, outs[0].owner.inputs, outs[0])
        for o, n in zip(a.outputs, outs):
            if o is not None:  # an output nobody holds is not needed
                n.name = o.name
                new[id(o)] = n
                keep.append(o)  # its id stays its own while `new` is keyed by it
    return [nv(r) for r in roots]


def _rebuild_scan(a, nv, scope, tr, mapped) -> Apply:
    ins = [nv(i) for i in a.inputs]
    ns, nc = a.attrs["n_seqs"], a.attrs["n_carries"]
    length = mapped(a.attrs["length"])
    for s in ins[:ns]:
        if not _unify_shapes(s.type.shape[:1], ins[0].type.shape[:1]):
            raise CompileError(
                f"scan: after substitution the sequences have different lengths "
                f"({ins[0].type} and {s.type})",
                a.loc,
            )
    if ns:
        length = ins[0].type.shape[0]
    yields = [nv(y) for y in a.body.yields]
    for k, (init, nxt) in enumerate(zip(ins[ns:], yields[:nc])):
        if not _unify_types(init.type, nxt.type):
            raise CompileError(
                f"scan: after substitution carried value {k} starts as {init.type} but its next "
                f"value is {nxt.type}",
                a.loc,
            )
    args = [nv(p) for p in a.body.args]
    types = [i.type for i in ins[ns:]] + [
        y.type.with_shape((length,) + y.type.shape) for y in yields[nc:]
    ]
    attrs = dict(a.attrs, length=length)
    na = _apply(
        "tg.scan",
        ins,
        attrs,
        a.loc,
        scope=scope,
        types=types,
        body=_ScanBody(tr, args, yields, a.body.loc),
    )
    tr.scan = na
    return na


def _replacements(replace, loc, what="replace") -> list:
    if replace is None:
        return []
    pairs = list(replace.items()) if isinstance(replace, dict) else list(replace)
    out = []
    for pair in pairs:
        try:
            k, v = pair
        except (TypeError, ValueError):
            raise TypeError(f"{what}: expected (variable, replacement) pairs or a dict") from None
        if not isinstance(k, Variable):
            raise TypeError(
                f"{what}: the variable to replace must be a symbolic variable, got {_describe(k)}"
            )
        v = as_variable(v, dtype=k.type.dtype, loc=loc)
        if v.type.dtype != k.type.dtype or v.type.rank != k.type.rank:
            raise CompileError(
                f"{what}: '{k.name or k}' ({k.type}) cannot be replaced by a value of type {v.type}",
                loc,
                "a replacement must have the same dtype and rank (cast or reshape it)",
            )
        if any(k is p for p, _ in out):
            raise CompileError(f"{what}: '{k.name or k}' is replaced twice", loc)
        out.append((k, v))
    return out


def clone(output, replace=None, strict=True):
    """A copy of `output` (a variable or a list) with the variables of
    `replace` ({old: new} or [(old, new)]) substituted: Theano's clone."""
    loc = _user_loc()
    pairs = _replacements(replace, loc)
    single = isinstance(output, Variable)
    roots = [output] if single else list(output)
    for r in roots:
        if not isinstance(r, Variable):
            raise TypeError(f"clone: expected symbolic variables, got {_describe(r)}")
    out = _clone_graph(roots, pairs)
    if single:
        return out[0]
    return tuple(out) if isinstance(output, tuple) else out


# -- emitting the IR ---------------------------------------------------------------------------


def _sym_name(name, taken: set, default: str) -> str:
    base = re.sub(r"\W", "_", name) if name else default
    if not base or base[0].isdigit():
        base = default + "_" + base
    out, k = base, 0
    while out in taken:
        k += 1
        out = f"{base}_{k}"
    taken.add(out)
    return out


_INF = float("inf")


class _Emitter:
    """Writes one func.func (and the tg.global ops it needs) for inputs,
    outputs and updates."""

    def __init__(self, fname, inputs, outputs, updates, loc, on_unused_input="raise"):
        self.fname, self.inputs, self.outputs, self.updates, self.loc = (
            fname,
            inputs,
            outputs,
            updates,
            loc,
        )
        self.on_unused_input = on_unused_input

    def emit(self):
        from collections import ChainMap

        roots = list(self.outputs) + [v for _, v in self.updates]
        for v in roots:
            if v.scope is not None:
                raise CompileError(_LEAK, v.loc or self.loc, _LEAK_HINT)
        applies = _collect_applies(roots)
        self.buckets: dict = {}
        for a in applies:
            self.buckets.setdefault(id(a.scope) if a.scope is not None else None, []).append(a)
        # Leaves, with the position of their first use (reads and dims go in that order).
        first: dict = {}
        leaves: dict = {}

        def note(v, key):
            if v.owner is None and v.kind in ("input", "shared", "dim"):
                if id(v) not in first or key < first[id(v)]:
                    first[id(v)] = key
                    leaves.setdefault(id(v), v)

        for a in applies:
            for i, v in enumerate(a.inputs):
                note(v, (a._id, i))
            if a.body is not None:
                for i, v in enumerate(a.body.yields):
                    note(v, (a._id, 1000 + i))
        for i, v in enumerate(roots):
            note(v, (_INF, i))
        for i, (sv, _) in enumerate(self.updates):
            note(sv, (_INF, len(roots) + i))
        given = {id(v) for v, _, _ in self.inputs}
        for v in sorted(leaves.values(), key=lambda v: first[id(v)]):
            if v.kind == "input" and id(v) not in given:
                raise CompileError(
                    f"the outputs depend on the input '{v.name or v}', which is not among the "
                    "inputs of the function",
                    v.loc or self.loc,
                    "add it to the inputs, or replace it with givens={...}",
                )
        module = Module(self.loc)
        taken = {self.fname}
        shared = [
            v for v in sorted(leaves.values(), key=lambda v: first[id(v)]) if v.kind == "shared"
        ]
        self.syms = []
        sym_of = {}
        for sv in shared:
            sym = _sym_name(sv.name, taken, "shared")
            sym_of[id(sv)] = sym
            self.syms.append((sv, sym))
            module.body.append(
                Op(
                    "tg.global",
                    (),
                    (),
                    {"sym_name": sym, "type": sv.type, "init": "value", "init_args": ()},
                    (),
                    sv.loc,
                )
            )
        block = Block([v.type for v, _, _ in self.inputs], [n for _, n, _ in self.inputs])
        env = {id(v): arg for (v, _, _), arg in zip(self.inputs, block.args)}
        self.dims: dict = {}
        for v in sorted(leaves.values(), key=lambda v: first[id(v)]):
            if v.kind == "shared":
                sym = sym_of[id(v)]
                op = block.append(
                    Op("tg.read", (), [v.type], {"sym": SymbolRef(sym)}, (), v.loc, [sym])
                )
                env[id(v)] = op.results[0]
            elif v.kind == "dim":
                d = _UNIFIER.resolve(v.dim)
                key = (d, v.type.dtype.name)
                if key not in self.dims:
                    if isinstance(d, int):  # an unknown dim bound to a size
                        value = np.asarray(d, dtype=v.type.dtype.np)
                        op = Op("tg.constant", (), [v.type], {"value": value}, (), v.loc)
                    else:
                        op = Op(
                            "tg.dim",
                            (),
                            [v.type],
                            {"dim": d, "dtype": v.type.dtype.name},
                            (),
                            v.loc,
                        )
                    self.dims[key] = block.append(op).results[0]
        self.env = ChainMap(env)
        self.keep: list = []  # outputs keyed by id in env: their ids stay theirs
        self._emit_scope(None, block)
        for sv, val in self.updates:
            block.append(
                Op(
                    "tg.update",
                    [self._value(val)],
                    [],
                    {"sym": SymbolRef(sym_of[id(sv)])},
                    (),
                    val.loc or self.loc,
                )
            )
        results = [self._value(v) for v in self.outputs]
        block.append(Op("func.return", results, [], {}, (), self.loc))
        defaults = tuple(d for _, _, d in self.inputs)
        func = Op(
            "func.func",
            (),
            (),
            {
                "sym_name": self.fname,
                "visibility": "public",
                "arg_defaults": defaults,
                "res_types": tuple(v.type for v in results),
            },
            [Region([block])],
            self.loc,
        )
        module.body.append(func)
        used_dims = self._check_dims(func)
        if self.on_unused_input != "ignore":
            # An input used only for a named dim of its shape (n_steps=x.shape[0]) is used,
            # unless an input used for its value gives that dim too.
            used_dims -= {d for v, _, _ in self.inputs if id(v) in leaves for d in v.type.shape}
            for v, name, _ in self.inputs:
                if id(v) not in leaves and not any(
                    d in used_dims for d in v.type.shape if isinstance(d, str)
                ):
                    msg = f"input '{name}' is not used to compute the outputs or updates"
                    if self.on_unused_input == "raise":
                        raise CompileError(
                            msg, v.loc or self.loc, "pass on_unused_input='ignore' to allow it"
                        )
                    import warnings

                    warnings.warn(msg, stacklevel=3)
        return module

    def _emit_scope(self, scope, block):
        for a in self.buckets.get(id(scope) if scope is not None else None, []):
            operands = [self._value(v) for v in a.inputs]
            attrs = a.attrs
            od = lookup(a.op)
            if od is not None and od.dim_attrs and _UNIFIER.binding:
                attrs = dict(attrs)
                for k in od.dim_attrs:
                    if k in attrs:
                        attrs[k] = _resolve_attr(attrs[k])
            outputs = a.outputs
            types = [_resolve_type(t) for t in a._types]
            names = [o.name if o is not None else None for o in outputs]
            if a.body is None:
                op = Op(a.op, operands, types, attrs, (), a.loc, names)
            else:
                body = a.body
                blk = Block([p.type for p in body.args], [p.name for p in body.args])
                self.env = self.env.new_child({id(p): arg for p, arg in zip(body.args, blk.args)})
                try:
                    self._emit_scope(body.trace, blk)
                    blk.append(
                        Op("tg.yield", [self._value(y) for y in body.yields], [], {}, (), body.loc)
                    )
                finally:
                    self.env = self.env.parents
                op = Op("tg.scan", operands, types, attrs, [Region([blk])], a.loc, names)
            block.append(op)
            for o, r in zip(outputs, op.results):
                if o is not None:
                    self.env[id(o)] = r
                    self.keep.append(o)

    def _value(self, v):
        if v.kind == "dim":
            return self.dims[(_UNIFIER.resolve(v.dim), v.type.dtype.name)]
        r = self.env.get(id(v))
        if r is None:
            raise CompileError(_LEAK, v.loc or self.loc, _LEAK_HINT)
        return r

    def _check_dims(self, func) -> set:
        """Check that every named dim the function uses is bound by an input; return them."""
        bound = {d for v, _, _ in self.inputs for d in v.type.shape if isinstance(d, str)}
        used = set()
        for op in func.walk():
            names = set()
            for r in op.results:
                for d in r.type.shape:
                    names |= D.dim_names(d)
            od = lookup(op.name)
            for k in od.dim_attrs if od is not None else ():
                names |= _attr_dim_names(op.attrs.get(k))
            if op.name == "tg.dim":
                names |= D.dim_names(op.attrs["dim"])
            missing = sorted(names - bound)
            if missing:
                raise CompileError(
                    f"the named dim '{missing[0]}' is not bound by any input of the function",
                    op.loc or self.loc,
                    "named dims take their values from the shapes of the arguments",
                )
            used |= names
        return used


def _attr_dim_names(v) -> set:
    if isinstance(v, tuple):
        out = set()
        for x in v:
            out |= _attr_dim_names(x)
        return out
    if isinstance(v, str):
        try:
            return D.dim_names(D.parse_dim(v))
        except ValueError:
            return set()
    return set()


def _verify(module):
    from irc.ir.verifier import verify
    from irc.ops.registry import verify_op

    verify(module, op_check=verify_op)


# -- function ------------------------------------------------------------------------------------


def _function_inputs(inputs, loc) -> list:
    if isinstance(inputs, (Variable, In)):
        inputs = [inputs]
    out, taken = [], set()
    for k, it in enumerate(inputs or []):
        default, name = None, None
        if isinstance(it, In):
            v, default, name = it.variable, it.value, it.name
        else:
            v = it
        if not isinstance(v, Variable):
            raise TypeError(
                f"irc.function: input {k} must be a symbolic variable, got {_describe(v)}"
            )
        if v.kind == "shared":
            raise CompileError(
                f"the shared variable '{v.name}' cannot be an input: every function that uses it "
                "reads it",
                loc,
                "pass its value with givens, or make a plain input",
            )
        if v.kind != "input":
            raise CompileError(
                f"input {k} ({v.type}) is computed from other variables and cannot be an input",
                loc,
                "inputs are made with irc.tensor, irc.scalar, irc.vector, ...; "
                "substitute intermediate values with givens",
            )
        if any(v is w for w, _, _ in out):
            raise CompileError(f"the input '{v.name or k}' is given twice", loc)
        if default is not None:
            if (
                v.type.rank != 0
                or isinstance(default, bool)
                or not isinstance(default, (int, float, np.number))
            ):
                raise CompileError(
                    f"the default of input '{v.name or k}' must be a number, for a scalar input",
                    loc,
                )
            default = default.item() if isinstance(default, np.number) else default
        out.append((v, _sym_name(name or v.name, taken, f"arg{k}"), default))
    seen_default = False
    for _, name, d in out:
        if d is None and seen_default:
            raise CompileError(f"input '{name}' without a default follows one with a default", loc)
        seen_default = seen_default or d is not None
    return out


def _function_updates(updates, loc) -> list:
    if updates is None:
        return []
    pairs = list(updates.items()) if isinstance(updates, dict) else list(updates)
    out = []
    for pair in pairs:
        try:
            sv, val = pair
        except (TypeError, ValueError):
            raise TypeError(
                "irc.function: updates are (shared variable, new value) pairs or a dict"
            ) from None
        if not isinstance(sv, SharedVariable):
            raise CompileError(
                f"only shared variables can be updated, got {_describe(sv)}",
                loc,
                "make it with irc.shared(value)",
            )
        if any(sv is s for s, _ in out):
            raise CompileError(f"the shared variable '{sv.name}' is updated twice", loc)
        where = (val.loc if isinstance(val, Variable) else None) or loc
        cast = f"cast it: (...).astype('{sv.type.dtype}')"
        v = _HOST.update_value(sv.name, sv.type, val, where, cast)
        out.append((sv, v))
    return out


def function(
    inputs,
    outputs=None,
    updates=None,
    givens=None,
    backend=None,
    name=None,
    on_unused_input="raise",
    device=None,
) -> "Function":
    """Compile a callable: `f = irc.function([x, y], loss, updates=[(W, W - lr * gW)])`.

    inputs: symbolic variables (irc.In(v, value=...) for a default); outputs:
    one variable (f returns one array) or a list (f returns a list); updates:
    (shared, new value) pairs or a dict, applied together after the outputs
    are computed from the values before the call (Theano semantics); givens:
    {variable: replacement} substituted in outputs and updates before
    compiling. Arguments are checked at each call: count, dtype, rank, static
    sizes and the agreement of named dims (irc.api.CallError)."""
    loc = _user_loc()
    from irc.api import BACKENDS, DEFAULT_BACKEND

    backend = backend or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if on_unused_input not in ("raise", "warn", "ignore"):
        raise ValueError("on_unused_input must be 'raise', 'warn' or 'ignore'")
    ins = _function_inputs(inputs, loc)
    single = isinstance(outputs, Variable)
    outs = [outputs] if single else _as_list(outputs)
    for k, o in enumerate(outs):
        if not isinstance(o, Variable):
            raise TypeError(
                f"irc.function: output {k} must be a symbolic variable, got {_describe(o)}"
            )
    # What this function binds of the unknown dims (through givens, updates) holds for
    # this function only: the graph may be compiled again with other givens.
    mark = _UNIFIER.mark()
    try:
        ups = _function_updates(updates, loc)
        pairs = _replacements(givens, loc, "givens")
        for k, v in pairs:
            if any(k is w for w, _, _ in ins):
                raise CompileError(
                    f"givens: '{k.name or k}' is an input of the function and cannot also be "
                    "replaced",
                    loc,
                )
            for dk, dv in zip(k.type.shape, v.type.shape):
                if _UNIFIER.free(dk):  # x: f32[x_0, 64] given a [100, 64] slice: x_0 = 100
                    _unify_shapes((dk,), (dv,))
        if pairs:
            new = _clone_graph(outs + [v for _, v in ups], pairs)
            outs, ups = new[: len(outs)], [(sv, v) for (sv, _), v in zip(ups, new[len(outs) :])]
        fname = _sym_name(name, set(), "f") if name else "f"
        em = _Emitter(fname, ins, outs, ups, loc, on_unused_input)
        module = em.emit()
        try:
            _verify(module)
        except CompileError as e:
            free = sorted(n for n in list(_UNIFIER.unknown) if re.search(rf"\b{n}\b", e.message))
            if free and e.hint is None:  # a check deferred until the dims were known
                e.hint = (
                    f"{', '.join(free)}: dims of inputs made without dims=, known only when the "
                    "function is called; give them (dims=) or replace the input with givens"
                )
            raise
        from irc.pipeline import run_pipeline

        opt = run_pipeline(module.clone())
    finally:
        _UNIFIER.rollback(mark)
    return Function(
        fname, module, opt, backend, device, em.syms, [sv for sv, _ in ups], single, ins, outs, loc
    )


class Function:
    """A compiled function (irc.function). Call it with NumPy arrays, lists or
    numbers, positionally or by input name."""

    def __init__(self, name, tg, opt, backend, device, syms, updated, single, inputs, outputs, loc):
        from irc.api import EntryFunction, _make_backend

        self.name = name
        self._tg, self._opt = tg, opt
        self._shared = list(syms)  # (SharedVariable, symbol)
        sym_of = {id(sv): sym for sv, sym in syms}
        self._updated = [(sv, sym_of[id(sv)]) for sv in updated]
        self._single = single
        self._ins = list(inputs)  # (Variable, argument name, default), for pickling
        self.inputs = [v for v, _, _ in inputs]
        self.outputs = list(outputs)
        self.backend = backend
        self.loc = loc
        state = {sym: sv._fetch() for sv, sym in syms}
        self._backend = _make_backend(backend, opt, state, device)
        self._synced = {id(sv): sv._version for sv, _ in syms}
        self._entry = EntryFunction(self, opt.lookup(name))
        self.signature = self._entry.signature
        self.__doc__ = str(self.signature)

    def __call__(self, *args, **kwargs):
        for sv, sym in self._shared:  # values changed elsewhere since our last call
            if self._synced.get(id(sv)) != sv._version:
                self._backend.set(sym, sv._fetch())
                self._synced[id(sv)] = sv._version
        # the entry checks and binds the arguments once (on cpu, its generated call path)
        result = self._entry(*args, **kwargs)
        for sv, sym in self._updated:  # we hold their newest values now
            sv._version += 1
            sv._holder = (self, sym)
            self._synced[id(sv)] = sv._version
        if self._single:
            return result
        # irc.api's convention (None, a value, a tuple) as Theano's list of outputs
        n = len(self._entry.signature.results)
        return [] if n == 0 else [result] if n == 1 else list(result)

    def __reduce__(self):
        """Pickled as its tg IR, inputs, outputs and backend; compiled again on load."""
        from irc.pickling import reduce_function

        return reduce_function(self)

    def ir(self, after: Optional[str] = None, stage: str = "opt", locs: bool = False) -> str:
        """The IR text: stage "tg" (as built), "opt" (after the pipeline), or
        the module right after the pipeline pass `after`."""
        from irc.ir.printer import print_module
        from irc.pipeline import module_at

        return print_module(module_at(self._tg, self._opt, after, stage), locs=locs)

    def __repr__(self):
        return f"<irc.Function {self.signature} ({self.backend})>"


# -- inspection ------------------------------------------------------------------------------------

# Python's precedences, so pp's text reads as Python.
_PREC = {
    "tg.or": 7,
    "tg.xor": 8,
    "tg.and": 9,
    "tg.add": 11,
    "tg.sub": 11,
    "tg.mul": 12,
    "tg.div": 12,
    "tg.matmul": 12,
    "tg.pow": 14,
    "tg.lt": 6,
    "tg.le": 6,
    "tg.gt": 6,
    "tg.ge": 6,
    "tg.eq": 6,
    "tg.ne": 6,
}
_SYM = {
    "tg.or": "|",
    "tg.xor": "^",
    "tg.and": "&",
    "tg.add": "+",
    "tg.sub": "-",
    "tg.mul": "*",
    "tg.div": "/",
    "tg.matmul": "@",
    "tg.pow": "**",
    "tg.lt": "<",
    "tg.le": "<=",
    "tg.gt": ">",
    "tg.ge": ">=",
    "tg.eq": "==",
    "tg.ne": "!=",
}


def _fmt_attr(v) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt_attr(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def _fmt_items(items, operands) -> str:
    out = []
    for it in items:
        if it[0] == "int":
            out.append(str(it[1]))
        elif it[0] == "none":
            out.append("None")
        elif it[0] == "ellipsis":
            out.append("...")
        else:
            a, b, c = it[1:]
            s = f"{'' if a is None else a}:{'' if b is None else b}"
            out.append(s if c == 1 else f"{s}:{c}")
    return ", ".join(out)


def pp(expr) -> str:
    """A readable infix form of an expression (or a list of them)."""
    if isinstance(expr, (list, tuple)):
        return "[" + ", ".join(pp(e) for e in expr) + "]"
    if not isinstance(expr, Variable):
        return repr(expr)
    memo: dict = {}

    def leaf(v):
        if v.kind == "dim":
            return str(v.dim)
        return v.name or f"<{v.kind} {v.type}>"

    def fmt(v, prec=0):
        key = (id(v), prec)
        if key in memo:
            return memo[key]
        s, p = node(v)
        if p < prec:
            s = f"({s})"
        memo[key] = s
        return s

    def call(fname, args, attrs=None, defaults=None):
        parts = list(args)
        for k, x in (attrs or {}).items():
            if defaults is not None and k in defaults and freeze_attr(defaults[k]) == x:
                continue
            parts.append(f"{k}={_fmt_attr(x)}")
        return f"{fname}({', '.join(parts)})", 16

    def node(v):
        a = v.owner
        if a is None:
            return leaf(v), 16
        op, ins = a.op, a.inputs
        if op == "tg.constant":
            val = a.attrs["value"]
            if val.ndim == 0:
                return str(val[()]), 16 if val[()] >= 0 else 13
            if val.size <= 6:
                return str(val.tolist()), 16
            return f"<constant {TensorType(dtype_of_numpy(val.dtype), val.shape)}>", 16
        if op in _SYM:
            p = _PREC[op]
            if op == "tg.pow":
                return f"{fmt(ins[0], p + 1)} ** {fmt(ins[1], p)}", p
            if p == 6:
                return f"{fmt(ins[0], p + 1)} {_SYM[op]} {fmt(ins[1], p + 1)}", p
            return f"{fmt(ins[0], p)} {_SYM[op]} {fmt(ins[1], p + 1)}", p
        if op == "tg.neg":
            return "-" + fmt(ins[0], 13), 13
        if op == "tg.not":
            return "~" + fmt(ins[0], 13), 13
        if op == "tg.transpose" and a.attrs.get("perm") is None:
            return fmt(ins[0], 16) + ".T", 16
        if op == "tg.index":
            return f"{fmt(ins[0], 16)}[{_fmt_items(a.attrs['items'], ins)}]", 16
        if op == "tg.dynamic_index":
            idx = [":"] * (_py.max(a.attrs["axes"]) + 1)
            for ax, i in zip(a.attrs["axes"], ins[1:]):
                idx[ax] = fmt(i)
            return f"{fmt(ins[0], 16)}[{', '.join(idx)}]", 16
        if op == "tg.dynamic_slice":
            idx = [":"] * (_py.max(a.attrs["axes"]) + 1)
            for ax, s, n in zip(a.attrs["axes"], ins[1:], a.attrs["sizes"]):
                idx[ax] = f"{fmt(s, 12)}:{fmt(s, 11)} + {n}"
            return f"{fmt(ins[0], 16)}[{', '.join(idx)}]", 16
        if op == "tg.gather":
            idx = [":"] * a.attrs["axes"][0] + [fmt(i) for i in ins[1:]]
            return f"{fmt(ins[0], 16)}[{', '.join(idx)}]", 16
        if op == "tg.grad":
            ws = [fmt(w) for w in ins[1:]]
            if len(ws) == 1:
                return f"grad({fmt(ins[0])}, {ws[0]})", 16
            return f"grad({fmt(ins[0])}, [{', '.join(ws)}])[{v.index}]", 16
        if op == "tg.scan":
            ns, nc = a.attrs["n_seqs"], a.attrs["n_carries"]
            seqs = ", ".join(fmt(s) for s in ins[:ns])
            inits = ", ".join(fmt(s) for s in ins[ns:])
            k = v.index - nc
            which = f"[{k}]" if k >= 0 else f".final[{v.index}]"
            return (
                f"scan(steps={a.attrs['length']}, sequences=[{seqs}], carries=[{inits}]){which}",
                16,
            )
        d = lookup(op)
        return call(
            op.split(".", 1)[1],
            [fmt(i) for i in ins],
            a.attrs,
            d.defaults if d is not None else None,
        )

    return fmt(expr)


def _expr_function(obj, name="expr"):
    """An emitted module computing `obj` (a variable or a list), its inputs
    found in the graph (by creation order)."""
    outs = [obj] if isinstance(obj, Variable) else list(obj)
    leaves = {}
    for a in _collect_applies(outs):
        for v in list(a.inputs) + (list(a.body.yields) if a.body is not None else []):
            if v.kind == "input":
                leaves[id(v)] = v
    for v in outs:
        if v.kind == "input":
            leaves[id(v)] = v
    taken: set = set()
    ins = [
        (v, _sym_name(v.name, taken, f"arg{k}"), None)
        for k, v in enumerate(sorted(leaves.values(), key=lambda v: v._id))
    ]
    loc = outs[0].loc if outs else None
    module = _Emitter(name, ins, outs, [], loc, "ignore").emit()
    _verify(module)
    return module


def _module_of(obj, stage=None, after=None):
    from irc.pipeline import run_pipeline

    if isinstance(obj, Function):
        if after is not None:
            return run_pipeline(obj._tg.clone(), until=after)
        return obj._tg if stage == "tg" else obj._opt
    if isinstance(obj, (Variable, list, tuple)):
        m = _expr_function(obj)
        if after is not None:
            return run_pipeline(m, until=after)
        if stage == "opt":
            return run_pipeline(m)
        return m
    raise TypeError(f"expected a compiled function or symbolic variables, got {_describe(obj)}")


def debugprint(obj, file=None, stage=None, after=None, locs=False):
    """Print the IR of a compiled function (after the pipeline, unless
    stage="tg" or after="PASS") or of an expression (as built, unless
    stage="opt"). file="str" returns the text instead of printing it."""
    from irc.ir.printer import print_module

    text = print_module(_module_of(obj, stage, after), locs=locs)
    if file == "str":
        return text
    print(text, end="", file=file if file is not None else sys.stdout)
    return None


def _dot(module) -> str:
    """Graphviz DOT text of a module's functions: ops as boxes, arguments and
    shared reads as ellipses, edges along the data, scan bodies as clusters."""
    lines = ["digraph irc {", '  node [fontname="Helvetica", fontsize=10];', "  rankdir=TB;"]
    edges = []  # at top level: an edge inside a cluster would pull its nodes into it
    ids: dict = {}
    counter = itertools.count()

    def q(s):
        return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'

    def block(b, indent):
        pad = "  " * indent
        for arg in b.args:
            n = f"v{next(counter)}"
            ids[arg] = n
            label = f"{arg.name_hint or 'arg'}: {arg.type}"
            lines.append(f"{pad}{n} [shape=ellipse, label={q(label)}];")
        for op in b.ops:
            n = f"n{next(counter)}"
            if op.name == "tg.read":
                label = f"{op.attrs['sym'].name}: {op.results[0].type}"
                lines.append(
                    f"{pad}{n} [shape=ellipse, style=filled, fillcolor=lightyellow, label={q(label)}];"
                )
            elif op.name == "tg.constant" and op.attrs["value"].size == 1:
                label = str(op.attrs["value"].reshape(())[()])
                lines.append(f"{pad}{n} [shape=plaintext, label={q(label)}];")
            else:
                types = ", ".join(str(r.type) for r in op.results)
                label = op.name + (f"\\n{types}" if types else "")
                if op.name == "tg.update":
                    label = f"{op.name} @{op.attrs['sym'].name}"
                lines.append(f'{pad}{n} [shape=box, label="{label}"];')
            for v in op.operands:
                src = ids.get(v)
                if src is not None:
                    edges.append(f"  {src} -> {n};")
            for r in op.results:
                ids[r] = n
            for reg in op.regions:
                for bb in reg.blocks:
                    c = next(counter)
                    lines.append(f"{pad}subgraph cluster_{c} {{")
                    lines.append(f"{pad}  label={q(op.name + ' body')}; style=dashed;")
                    block(bb, indent + 1)
                    lines.append(f"{pad}}}")
                    if bb.args:
                        edges.append(f"  {n} -> {ids[bb.args[0]]} [style=dotted, arrowhead=none];")

    for op in module.body.ops:
        if op.name == "func.func":
            c = next(counter)
            lines.append(f"  subgraph cluster_{c} {{")
            lines.append(f"    label={q('@' + op.attrs['sym_name'])};")
            block(op.regions[0].block, 2)
            lines.append("  }")
    lines += edges
    lines.append("}")
    return "\n".join(lines) + "\n"


_NO_GRAPHVIZ = (
    "irc.graph: drawing {path} needs Graphviz, which is not installed: install the `dot` program "
    "(apt install graphviz, brew install graphviz, conda install graphviz; the `graphviz` Python "
    "package needs it too), or give a .dot path to write the DOT text, or call irc.graph(f) "
    "without a path to get it as a string"
)


def _render(dot: str, fmt: str, path: str) -> bytes:
    try:
        import graphviz as _gv
    except ImportError:
        _gv = None
    if _gv is not None:
        try:
            return _gv.Source(dot).pipe(format=fmt)
        except _gv.ExecutableNotFound:
            pass
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError(_NO_GRAPHVIZ.format(path=path))
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"irc.graph: dot failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def graph(obj, path=None, stage=None, format=None):
    """Draw a compiled function (after the pipeline unless stage="tg") or an
    expression with Graphviz. No path: the DOT text. A .dot or .gv path: the
    DOT text is written there (nothing else needed). Another path (.svg,
    .png, .pdf): rendered with the `graphviz` package or the `dot` program."""
    text = _dot(_module_of(obj, stage))
    if path is None:
        return text
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in (".dot", ".gv") and format is None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path
    data = _render(text, format or ext.lstrip(".") or "svg", path)
    with open(path, "wb") as f:
        f.write(data)
    return path

"""Building expressions of the Python API: Python values as tensors (as_variable),
symbolic inputs and shared variables, indexing, grad, and the built-in functions
(`irc.exp`, `irc.conv2d` ...), generated from the one table of built-ins of both
front ends (irc/frontend/builtins.py) and built through `_HOST`, the Python API's
Host for the shared front-end logic (irc/frontend/host.py).
Imports irc.ir, irc.ops, irc.frontend and irc.symbolic.variables.
"""

from __future__ import annotations

import builtins as _py
import re
from typing import Optional

import numpy as np

import irc.ops  # noqa: F401  (registers the ops)
from irc.frontend.builtins import BUILTINS, REQUIRED, Call, run_builtin
from irc.frontend.host import Host, default_dtype, literal_array, weak_dtype
from irc.frontend.indexing import ELLIPSIS, NONE, Slice, lower_index
from irc.ir import dims as D
from irc.ir.errors import CompileError
from irc.ir.types import (
    DTYPES,
    I32,
    DType,
    TensorType,
    TypeError_,
    dtype_of_numpy,
)
from irc.symbolic import variables as V
from irc.symbolic.variables import (
    _BINOPS,
    Dim,
    SharedVariable,
    Variable,
    _anon,
    _apply,
    _dim_of,
    _leaf,
    _op,
    _unify_shapes,
    _user_loc,
)

# -- Python values as tensors -----------------------------------------------------------------


def _describe(v) -> str:
    """How an error message of the Python API names a value."""
    return _HOST.describe(v)


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
    v = _leaf(TensorType(dt, ()), "dim", None, loc)
    v.value.dim = d
    v.value.keep = V._UNIFIER.owners(d)
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
                f"{b}_{i}" in V._UNIFIER.unknown or f"{b}_{i}" in V._NAMED for i in range(len(dims))
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
            d, auto = V._UNIFIER.fresh(f"{base}_{i}", V._NAMED), True
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
                if dd in V._UNIFIER.unknown:
                    raise CompileError(
                        f"irc.{kind}(): the dim name {dd} is taken by an unknown dim of an input "
                        "made without dims",
                        loc,
                        "choose another name",
                    )
                V._NAMED.add(dd)
            d = dd
        shape.append(d)
    v = _leaf(TensorType(dt, tuple(shape)), "input", name, loc)
    v.value.auto = auto
    if auto:  # the unknowns live as long as the input's value (held weakly)
        unknown = [d for d in shape if isinstance(d, str) and d in V._UNIFIER.unknown]
        V._UNIFIER.adopt(unknown, v.value)
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

    tensor_class, dim_class = Variable, Dim
    sequences = (list, tuple)
    booleans = ("False", "True")

    def form(self, v):
        if v._affine is None and v.kind in ("input", "arg"):
            t = v.type
            if t.rank == 0 and t.dtype.is_int:  # an integer scalar input: itself
                return {v.value: 1}
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
    exec(compile(src, __file__, "exec"), ns)  # noqa: S102  (our own text, from the table)
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

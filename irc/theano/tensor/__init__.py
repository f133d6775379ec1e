"""theano.tensor (T) over irc: symbolic variable constructors (T.matrix, T.ivector,
T.TensorType ...) and the functions of Theano's tutorials, each a thin call of the
Python API (irc/symbolic.py). Variables are irc Variables: their methods
(.dimshuffle, .flatten(ndim), .shape, .T, .dtype ...) are irc's.

Inputs are made without dims: their dims are unknown and unify with what they meet
(docs/theano.md). Imports irc.symbolic and irc.theano.
"""

from __future__ import annotations

from irc import symbolic as _S
from irc.theano import config as _config
from irc.theano import grad  # noqa: F401  (T.grad is theano.grad)
from irc.theano._compat import check_dtype as _check_dtype
from irc.theano._compat import unsupported as _unsupported

TensorVariable = _S.Variable
TensorConstant = _S.Variable
TensorSharedVariable = _S.SharedVariable


def _dt(dtype):
    return _check_dtype(_config.floatX if dtype is None else dtype)


class TensorType:
    """TensorType(dtype, broadcastable): a type; calling it makes a variable.
    A broadcastable axis has length 1; the others are unknown until they meet
    other dims (or the arguments at call time)."""

    def __init__(self, dtype, broadcastable, name=None):
        self.dtype = _dt(dtype)
        self.broadcastable = tuple(bool(b) for b in broadcastable)
        self.name = name

    @property
    def ndim(self):
        return len(self.broadcastable)

    def __call__(self, name=None):
        if self.ndim == 0:
            return _S.scalar(name, self.dtype)
        dims = tuple(1 if b else None for b in self.broadcastable)
        return _S.tensor(name, self.dtype, dims)

    def __repr__(self):
        return f"TensorType({self.dtype}, {self.broadcastable})"


def tensor(dtype=None, broadcastable=(), name=None):
    return TensorType(dtype, broadcastable)(name)


def _maker(pattern, dtype_fixed=None):
    def make(name=None, dtype=None):
        return TensorType(dtype_fixed or dtype, pattern)(name)

    return make


_PATTERNS = {
    "scalar": (),
    "vector": (False,),
    "row": (True, False),
    "col": (False, True),
    "matrix": (False, False),
    "tensor3": (False,) * 3,
    "tensor4": (False,) * 4,
}
scalar = _maker(())
vector = _maker((False,))
row = _maker((True, False))
col = _maker((False, True))
matrix = _maker((False, False))
tensor3 = _maker((False,) * 3)
tensor4 = _maker((False,) * 4)
# The typed forms: f float32, d float64, i int32, l int64 (fmatrix, ivector, lscalar ...).
for _p, _d in (("f", "float32"), ("d", "float64"), ("i", "int32"), ("l", "int64")):
    for _k, _pat in _PATTERNS.items():
        globals()[_p + _k] = _maker(_pat, _d)
# Theano's int8/int16/uint8/complex forms (bmatrix, wvector, cmatrix ...) are refused by name.
_UNSUPPORTED_PREFIX = {"b": "int8", "w": "int16", "c": "complex64", "z": "complex128"}

# -- functions ------------------------------------------------------------------------------

as_tensor_variable = _S.as_variable
constant = _S.as_variable
dot = _S.dot
log = _S.log
exp = _S.exp
tanh = _S.tanh
sqrt = _S.sqrt
sqr = _S.square
abs_ = _S.abs
neg = _S.neg
log1p = _S.log1p
sin = _S.sin
cos = _S.cos
sgn = _S.sign
maximum = _S.maximum
minimum = _S.minimum
clip = _S.clip


def sum(x, axis=None, dtype=None, keepdims=False, acc_dtype=None):  # noqa: A001
    return _S.as_variable(x).sum(axis=axis, dtype=dtype, keepdims=keepdims)


def mean(x, axis=None, dtype=None, keepdims=False, acc_dtype=None):
    return _S.as_variable(x).mean(axis=axis, dtype=dtype, keepdims=keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001
    return _S.max(x, axis=axis, keepdims=keepdims)


def min(x, axis=None, keepdims=False):  # noqa: A001
    return _S.min(x, axis=axis, keepdims=keepdims)


def argmax(x, axis=None, keepdims=False):
    return _S.argmax(x, axis=axis, keepdims=keepdims)


def argmin(x, axis=None, keepdims=False):
    return _S.argmin(x, axis=axis, keepdims=keepdims)


def _operator(sym, name):
    def apply(a, b):
        return _S._binop(sym, a, b)

    apply.__name__ = apply.__qualname__ = name
    return apply


# T.eq, T.and_, T.pow ...: the Python operators as functions
eq, neq, lt, gt, le, ge, and_, or_, xor, pow = (  # noqa: A001
    _operator(sym, name)
    for sym, name in (
        ("==", "eq"), ("!=", "neq"), ("<", "lt"), (">", "gt"), ("<=", "le"), (">=", "ge"),
        ("&", "and_"), ("|", "or_"), ("^", "xor"), ("**", "pow"),
    )
)  # fmt: skip


def invert(a):
    return ~_S.as_variable(a)


def cast(x, dtype):
    return _S.cast(x, _dt(dtype))


def switch(cond, ift, iff):
    """T.switch: ift where cond is true (non-zero), else iff."""
    c = _S.as_variable(cond)
    if not c.type.dtype.is_bool:
        c = c != 0
    return _S.where(c, ift, iff)


where = switch


def arange(start, stop=None, step=1, dtype=None):
    """T.arange(n), T.arange(start, stop, step): ints or symbolic dims (y.shape[0])."""
    if stop is None:
        start, stop = 0, start
    if step == 1:
        r = _S.arange(stop - start if start != 0 else stop)
    else:
        n = (stop - start + (step - 1 if step > 0 else step + 1)) // step
        r = _S.arange(n) * step
    if start != 0:
        r = r + start
    return r if dtype is None else _S.cast(r, _check_dtype(dtype))


def concatenate(tensor_list, axis=0):
    return _S.concat(list(tensor_list), axis=axis)


def stack(tensors, axis=0):
    return _S.stack(list(tensors), axis=axis)


def zeros_like(x, dtype=None):
    x = _S.as_variable(x)
    return _S.zeros(x.shape, dtype=_check_dtype(dtype) if dtype else x.dtype)


def ones_like(x, dtype=None):
    x = _S.as_variable(x)
    return _S.ones(x.shape, dtype=_check_dtype(dtype) if dtype else x.dtype)


def zeros(shape, dtype=None):
    return _S.zeros(shape, dtype=_dt(dtype))


def ones(shape, dtype=None):
    return _S.ones(shape, dtype=_dt(dtype))


def alloc(value, *shape):
    v = _S.as_variable(value)
    return _S.zeros(shape, dtype=v.dtype) + v


def reshape(x, newshape, ndim=None):
    return _S.as_variable(x).reshape(newshape, ndim=ndim)


def flatten(x, ndim=1):
    return _S.as_variable(x).flatten(ndim)


def transpose(x, axes=None):
    return _S.transpose(x, axes)


def shape(x):
    return _S.as_variable(x).shape


def dimshuffle(x, *pattern):
    return _S.as_variable(x).dimshuffle(*pattern)


_MISSING = {
    "shared_randomstreams": "theano.tensor.shared_randomstreams (symbolic random numbers; "
    "draw them with NumPy and pass them in)",
    "raw_random": "theano.tensor.raw_random (symbolic random numbers)",
    "nlinalg": "theano.tensor.nlinalg (linear algebra)",
    "slinalg": "theano.tensor.slinalg (linear algebra)",
    "fft": "theano.tensor.fft",
    "set_subtensor": "T.set_subtensor (irc tensors are immutable; build the value with "
    "T.switch or T.concatenate)",
    "inc_subtensor": "T.inc_subtensor (irc tensors are immutable)",
    "Rop": "T.Rop (forward-mode differentiation)",
    "Lop": "T.Lop",
    "jacobian": "T.jacobian (take T.grad of each output in a loop)",
    "hessian": "T.hessian",
    "prod": "T.prod (irc has no product reduction)",
    "floor": "T.floor",
    "ceil": "T.ceil",
    "round": "T.round",
    "cumsum": "T.cumsum",
    "sort": "T.sort",
    "argsort": "T.argsort",
    "tile": "T.tile",
    "repeat": "T.repeat",
    "tensordot": "T.tensordot (use T.dot on reshaped operands)",
    "batched_dot": "T.batched_dot",
    "var": "T.var",
    "std": "T.std",
}


def __getattr__(name):
    if name in _MISSING:
        _unsupported(_MISSING[name])
    base = name[1:]
    if name[:1] in _UNSUPPORTED_PREFIX and base in _PATTERNS:
        _unsupported(f"T.{name} (the dtype {_UNSUPPORTED_PREFIX[name[0]]})")
    raise AttributeError(f"module 'irc.theano.tensor' has no attribute {name!r}")


from irc.theano.tensor import nnet, signal  # noqa: E402,F401  (T.nnet, T.signal; they use the names above)

"""The built-in functions of both front ends (`.tg` and the Python API, hence
irc.theano): their signatures, argument checks and how a call becomes tg ops.
One table, `BUILTINS`: name -> (parameters, handler).

A parameter list is a tuple of (name, default) pairs (`REQUIRED` for none),
written as a spec string: `"x, axis=None, keepdims=False"`. A handler gets a
`Call`: the bound arguments, helpers that convert and check them (errors located
at the argument), and the front end's `Host` (irc/frontend/host.py), which makes tensors and ops of its
own kind (irc.frontend.irgen: IR values in a function being generated;
irc.symbolic: traced variables). irc.symbolic generates its Python functions
(`irc.conv2d` ...) from this table, so a built-in is written once.
Imports irc.ir and irc.frontend.host.
"""

from __future__ import annotations

import ast

import numpy as np

from irc.frontend.host import Host
from irc.ir.errors import CompileError
from irc.ir.types import F32, DType

REQUIRED = object()

# The words of the language (grammar/tg.lark), for "did you mean" hints.
KEYWORDS = (
    "fn", "def", "return", "shared", "const", "scan", "yield", "in", "seed", "steps",
    "truncate", "true", "false", "True", "False", "None",
)  # fmt: skip


def _one_edit(a: str, b: str) -> bool:
    """Whether b is a at most one edit away: one character inserted, deleted,
    replaced, or two neighbours swapped (`ture` for `true`)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return a == b
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


def did_you_mean(name: str, candidates, strict: bool = False) -> str | None:
    """A "did you mean 'x'?" hint: a candidate one edit away (or differing only in
    case), else (unless strict) the closest by difflib; None when nothing is close."""
    import difflib

    cands = list(dict.fromkeys(c for c in candidates if c != name))
    near = [c for c in cands if c.lower() == name.lower()] or [
        c for c in cands if _one_edit(name, c)
    ]
    if not near and not strict:
        near = difflib.get_close_matches(name, cands, n=1)
    return f"did you mean '{near[0]}'?" if near else None


# Infix operators and the tg ops they make (the registry decides which exist:
# an operator whose op is not registered is refused where it is used).
OPERATORS = {
    "+": "tg.add",
    "-": "tg.sub",
    "*": "tg.mul",
    "/": "tg.div",
    "//": "tg.floordiv",
    "%": "tg.mod",
    "@": "tg.matmul",
    "**": "tg.pow",
    "&": "tg.and",
    "|": "tg.or",
    "==": "tg.eq",
    "!=": "tg.ne",
    "<": "tg.lt",
    "<=": "tg.le",
    ">": "tg.gt",
    ">=": "tg.ge",
}

UNARY = [
    "neg",
    "abs",
    "exp",
    "log",
    "log1p",
    "sqrt",
    "tanh",
    "sigmoid",
    "relu",
    "softplus",
    "square",
    "sin",
    "cos",
    "sign",
]
BINARY = ["maximum", "minimum"]
REDUCTIONS = ["sum", "mean", "max", "min"]


def _params(spec: str):
    out = []
    for p in spec.split(","):
        p = p.strip()
        if not p:
            continue
        if "=" in p:
            name, default = p.split("=", 1)
            out.append((name.strip(), ast.literal_eval(default.strip())))
        else:
            out.append((p, REQUIRED))
    return out


BUILTINS: dict = {}


def builtin(name, spec):
    def deco(fn):
        BUILTINS[name] = (_params(spec), fn)
        return fn

    return deco


def bind_arguments(name, args, kwargs, loc, arg_locs):
    """Bind a `.tg` call's arguments to the built-in's parameters (Python binds its own):
    returns (bound, locations); errors are located at the call or the keyword."""
    params, _ = BUILTINS[name]
    bound = {}
    if len(args) > len(params):
        raise CompileError(
            f"{name}() takes at most {len(params)} argument(s), got {len(args)}",
            loc,
            f"{name}({', '.join(p for p, _ in params)})",
        )
    for (p, _), a in zip(params, args):
        bound[p] = a
    names = [p for p, _ in params]
    for k, (v, kloc) in kwargs.items():
        if k not in names:
            raise CompileError(
                f"{name}() has no argument '{k}'", kloc, f"{name}({', '.join(names)})"
            )
        if k in bound:
            raise CompileError(f"{name}(): argument '{k}' given twice", kloc)
        bound[k] = v
    for p, default in params:
        if p not in bound:
            if default is REQUIRED:
                raise CompileError(
                    f"{name}() is missing argument '{p}'", loc, f"{name}({', '.join(names)})"
                )
            bound[p] = default
    locs = {p: a for (p, _), a in zip(params, arg_locs)}
    for k, (_, kloc) in kwargs.items():
        locs[k] = kloc
    return bound, locs


def run_builtin(host: Host, name, bound: dict, loc, arg_locs=None):
    """The value of built-in `name` on its bound arguments, built through `host`."""
    return BUILTINS[name][1](Call(host, name, bound, loc, arg_locs or {}))


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


class Call:
    """The bound arguments of one built-in call, with helpers to convert and check
    them; every error is located at the argument (or the call)."""

    def __init__(self, host: Host, name, bound, loc, arg_locs):
        self.host, self.name, self.bound, self.loc, self.arg_locs = host, name, bound, loc, arg_locs

    def where(self, p):
        return self.arg_locs.get(p, self.loc)

    def _bad(self, p, what, v=REQUIRED):
        got = "" if v is REQUIRED else f", got {self.host.describe(v)}"
        return CompileError(f"{self.name}(): '{p}' must be {what}{got}", self.where(p))

    def tensor(self, p, like=None, dtype=None):
        v = self.bound[p]
        h = self.host
        if h.is_tensor(v):
            return v
        if (
            isinstance(v, (str, DType, dict))
            or v is None
            or (isinstance(v, tuple) and tuple not in h.sequences)
        ):
            raise CompileError(
                f"{self.name}(): argument '{p}' must be a tensor, got {h.describe(v)}",
                self.where(p),
            )
        return h.as_tensor(v, self.where(p), dtype=dtype, like=like)

    def tensors_like(self, *names):
        """Tensors for the arguments; numbers take the first tensor's dtype."""
        like = next((self.bound[n] for n in names if self.host.is_tensor(self.bound[n])), None)
        return [self.tensor(n, like=like) for n in names]

    def tensor_list(self, p):
        """A list of tensors (numbers take the first tensor's dtype)."""
        v = self.bound[p]
        h = self.host
        if not isinstance(v, (list, tuple)):
            raise CompileError(
                f"{self.name}(): '{p}' must be a list of tensors: {self.name}([a, b], axis=0)",
                self.where(p),
            )
        like = next((x for x in v if h.is_tensor(x)), None)
        return [x if h.is_tensor(x) else h.as_tensor(x, self.where(p), like=like) for x in v]

    def raw(self, p):
        return self.bound[p]

    def static_int(self, p, allow_none=False):
        v = self.bound[p]
        if v is None and allow_none:
            return None
        if not _is_int(v):
            raise self._bad(p, "an integer known at compile time", v)
        return int(v)

    def dim(self, p):
        d = self.host.dim_of(self.bound[p])
        if d is None:
            raise self._bad(p, "an integer or a named dim", self.bound[p])
        return d

    def int_list(self, p, allow_none=False, n=None):
        """An int (n copies), a list of ints, or None -> tuple of ints (or None)."""
        v = self.bound[p]
        if v is None and allow_none:
            return None
        if _is_int(v):
            return (int(v),) * (n or 1)
        if isinstance(v, self.host.sequences) and all(_is_int(x) for x in v):
            if n and len(v) != n:
                raise CompileError(f"{self.name}(): '{p}' must have {n} items", self.where(p))
            return tuple(int(x) for x in v)
        raise self._bad(p, "an integer or a list of integers", v)

    def dim_list(self, p):
        """A dim or a list of dims (ints, named dims) -> tuple."""
        v = self.bound[p]
        items = v if isinstance(v, self.host.sequences) else [v]
        out = []
        for x in items:
            d = self.host.dim_of(x)
            if d is None:
                raise CompileError(
                    f"{self.name}(): '{p}' must list integers or named dims, got "
                    f"{self.host.describe(x)}",
                    self.where(p),
                )
            out.append(d)
        return tuple(out)

    def static_bool(self, p):
        v = self.bound[p]
        if not isinstance(v, (bool, np.bool_)):
            false, true = self.host.booleans
            raise self._bad(p, f"{true} or {false}", v)
        return bool(v)

    def string(self, p, choices):
        v = self.bound[p]
        if v not in choices:
            raise self._bad(p, f"one of {', '.join(map(repr, choices))}", v)
        return v

    def dtype(self, p, default=None) -> DType:
        v = self.bound[p]
        if v is None and default is not None:
            return default
        return self.host.dtype(v, self, p)

    def op(self, name, *operands, **attrs):
        return self.host.op(name, list(operands), attrs, self.loc)


for _u in UNARY:

    def _mk(opname):
        return lambda c: c.op("tg." + opname, c.tensor("x"))

    builtin(_u, "x")(_mk(_u))

for _bn in BINARY:

    def _mkb(opname):
        return lambda c: c.op("tg." + opname, *c.tensors_like("a", "b"))

    builtin(_bn, "a, b")(_mkb(_bn))


@builtin("where", "cond, a, b")
def _where(c):
    """a where the bool `cond` is true, else b (NumPy's where)."""
    cond = c.tensor("cond")
    a, b = c.tensors_like("a", "b")
    return c.op("tg.where", cond, a, b)


@builtin("clip", "x, lo, hi")
def _clip(c):
    x = c.tensor("x")
    return c.op("tg.clip", x, c.tensor("lo", like=x), c.tensor("hi", like=x))


@builtin("cast", "x, dtype")
def _cast(c):
    """x converted to `dtype`."""
    return c.op("tg.cast", c.tensor("x"), dtype=c.dtype("dtype").name)


def _axis(c, p="axis"):
    v = c.raw(p)
    if v is None:
        return None
    return c.int_list(p)


for _r in REDUCTIONS:

    def _mkr(opname):
        return lambda c: c.op(
            "tg." + opname, c.tensor("x"), axis=_axis(c), keepdims=c.static_bool("keepdims")
        )

    builtin(_r, "x, axis=None, keepdims=False")(_mkr(_r))


def _argreduce(c):
    return c.op(
        "tg." + c.name,
        c.tensor("x"),
        axis=c.static_int("axis", allow_none=True),
        keepdims=c.static_bool("keepdims"),
    )


builtin("argmax", "x, axis=None, keepdims=False")(_argreduce)
builtin("argmin", "x, axis=None, keepdims=False")(_argreduce)


def _matmul(c):
    """The matrix product (as `a @ b`)."""
    return c.op("tg.matmul", *c.tensors_like("a", "b"))


builtin("dot", "a, b")(_matmul)
builtin("matmul", "a, b")(_matmul)


@builtin("transpose", "x, perm=None")
def _transpose(c):
    return c.op("tg.transpose", c.tensor("x"), perm=c.int_list("perm", allow_none=True))


@builtin("reshape", "x, shape")
def _reshape(c):
    """x with a new shape: ints, named dims and one -1."""
    return c.op("tg.reshape", c.tensor("x"), shape=c.dim_list("shape"))


@builtin("flatten", "x, axis=1")
def _flatten(c):
    """Keep x.shape[:axis], multiply the rest into one axis."""
    return c.op("tg.flatten", c.tensor("x"), axis=c.static_int("axis"))


@builtin("concat", "xs, axis=0")
def _concat(c):
    return c.op("tg.concat", *c.tensor_list("xs"), axis=c.static_int("axis"))


@builtin("stack", "xs, axis=0")
def _stack(c):
    return c.op("tg.stack", *c.tensor_list("xs"), axis=c.static_int("axis"))


@builtin("arange", "n")
def _arange(c):
    """0, 1, ..., n-1 (i32); n an integer or a named dim."""
    return c.op("tg.arange", n=c.dim("n"), dtype="i32")


@builtin("one_hot", "y, n, dtype=None")
def _one_hot(c):
    return c.op("tg.one_hot", c.tensor("y"), n=c.dim("n"), dtype=c.dtype("dtype", F32).name)


def _fill(c, value):
    shape = c.dim_list("shape")
    dt = c.dtype("dtype", F32)
    return c.op("tg.broadcast_to", c.host.as_tensor(value, c.loc, dtype=dt), shape=shape)


@builtin("zeros", "shape, dtype=None")
def _zeros(c):
    return _fill(c, 0)


@builtin("ones", "shape, dtype=None")
def _ones(c):
    return _fill(c, 1)


@builtin("full", "shape, value, dtype=None")
def _full(c):
    v = c.raw("value")
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise CompileError("full(shape, value): value must be a number", c.where("value"))
    return _fill(c, v)


@builtin("softmax", "x, axis=-1")
def _softmax(c):
    return c.op("tg.softmax", c.tensor("x"), axis=c.static_int("axis"))


@builtin("log_softmax", "x, axis=-1")
def _log_softmax(c):
    return c.op("tg.log_softmax", c.tensor("x"), axis=c.static_int("axis"))


@builtin("categorical_crossentropy", "p, y")
def _cce(c):
    """Per-row loss -log p[y] from probabilities p [..., K] and integer labels y
    [...] (or target distributions [..., K])."""
    return c.op("tg.categorical_crossentropy", c.tensor("p"), c.tensor("y"))


@builtin("crossentropy_logits", "x, y")
def _cce_logits(c):
    """categorical_crossentropy(softmax(x), y) from the logits x, computed stably."""
    return c.op("tg.crossentropy_logits", c.tensor("x"), c.tensor("y"))


PADDINGS = ("valid", "same", "full")


def _padding(c, n):
    v = c.raw("padding")
    if isinstance(v, str):
        return c.string("padding", PADDINGS)
    return c.int_list("padding", n=n)


@builtin("conv1d", "x, w, stride=1, padding='valid', flip=False")
def _conv1d(c):
    """x [N, C, L] with filters w [F, C, K] -> [N, F, L'] (cross-correlation)."""
    x = c.tensor("x")
    w = c.tensor("w", like=x)
    pad = _padding(c, 1)
    return c.op(
        "tg.conv1d",
        x,
        w,
        stride=c.static_int("stride"),
        padding=pad if isinstance(pad, str) else pad[0],
        flip=c.static_bool("flip"),
    )


@builtin("conv2d", "x, w, stride=1, padding='valid', flip=False")
def _conv2d(c):
    """x [N, C, H, W] (NCHW) with filters w [F, C, KH, KW] (OIHW) -> [N, F, H', W'];
    a cross-correlation unless flip=True (Theano's conv2d flips)."""
    x = c.tensor("x")
    w = c.tensor("w", like=x)
    return c.op(
        "tg.conv2d",
        x,
        w,
        stride=c.int_list("stride", n=2),
        padding=_padding(c, 2),
        flip=c.static_bool("flip"),
    )


@builtin("max_pool2d", "x, size, stride=None")
def _max_pool2d(c):
    """Max over size windows of the last two axes (stride = size unless told)."""
    size = c.int_list("size", n=2)
    stride = c.int_list("stride", allow_none=True, n=2) or size
    return c.op("tg.max_pool2d", c.tensor("x"), size=size, stride=stride)

"""The built-in functions of the `.tg` language: their signatures and how a
call becomes tg ops. One table, `BUILTINS`: name -> (parameters, handler).

A parameter list is a tuple of names; `name=default` marks an optional one.
Handlers get the generator (irc.frontend.irgen.IRGen), the bound arguments and
the call's location; the generator's builder already carries the location.
Imports irc.ir, irc.ops and irc.frontend only.
"""

from __future__ import annotations

import ast

from irc.ir.core import Value
from irc.ir.errors import CompileError
from irc.ir.types import DType

_REQUIRED = object()

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
            out.append((p, _REQUIRED))
    return out


BUILTINS: dict = {}


def builtin(name, spec):
    def deco(fn):
        BUILTINS[name] = (_params(spec), fn)
        return fn

    return deco


def call_builtin(gen, name, args, kwargs, loc, node):
    params, fn = BUILTINS[name]
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
            if default is _REQUIRED:
                raise CompileError(
                    f"{name}() is missing argument '{p}'", loc, f"{name}({', '.join(names)})"
                )
            bound[p] = default
    arg_locs = {p: (a.loc if hasattr(a, "loc") else loc) for (p, _), a in zip(params, node.args)}
    for k, (_, kloc) in kwargs.items():
        arg_locs[k] = kloc
    return fn(Call(gen, name, bound, loc, arg_locs))


class Call:
    """The bound arguments of one built-in call, with helpers to convert them."""

    def __init__(self, gen, name, bound, loc, arg_locs):
        self.gen, self.name, self.bound, self.loc, self.arg_locs = gen, name, bound, loc, arg_locs
        self.b = gen.b

    def where(self, p):
        return self.arg_locs.get(p, self.loc)

    def tensor(self, p, like=None, dtype=None) -> Value:
        v = self.bound[p]
        if isinstance(v, Value):
            return v
        from irc.frontend.irgen import describe

        if isinstance(v, (str, DType)) or v is None or isinstance(v, tuple):
            raise CompileError(
                f"{self.name}(): argument '{p}' must be a tensor, got {describe(v)}", self.where(p)
            )
        return self.gen.as_tensor(v, self.where(p), dtype=dtype, like=like)

    def raw(self, p):
        return self.bound[p]

    def static_int(self, p, allow_none=False):
        v = self.bound[p]
        if v is None and allow_none:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise CompileError(
                f"{self.name}(): '{p}' must be an integer known at compile time", self.where(p)
            )
        return v

    def dim(self, p):
        from irc.frontend.irgen import dim_of

        d = dim_of(self.bound[p])
        if d is None:
            raise CompileError(
                f"{self.name}(): '{p}' must be an integer or a named dim", self.where(p)
            )
        return d

    def int_list(self, p, allow_none=False, n=None):
        """An int, a list of ints, or None -> tuple of ints (or None)."""
        v = self.bound[p]
        if v is None and allow_none:
            return None
        if isinstance(v, int) and not isinstance(v, bool):
            return (v,) * (n or 1) if n else (v,)
        if isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            if n and len(v) != n:
                raise CompileError(f"{self.name}(): '{p}' must have {n} items", self.where(p))
            return tuple(v)
        raise CompileError(
            f"{self.name}(): '{p}' must be an integer or a list of integers", self.where(p)
        )

    def dim_list(self, p):
        from irc.frontend.irgen import dim_of

        v = self.bound[p]
        items = v if isinstance(v, list) else [v]
        out = []
        for x in items:
            d = dim_of(x)
            if d is None:
                raise CompileError(
                    f"{self.name}(): '{p}' must list integers or named dims", self.where(p)
                )
            out.append(d)
        return tuple(out)

    def static_bool(self, p):
        v = self.bound[p]
        if not isinstance(v, bool):
            raise CompileError(f"{self.name}(): '{p}' must be true or false", self.where(p))
        return v

    def string(self, p, choices):
        v = self.bound[p]
        if v not in choices:
            raise CompileError(
                f"{self.name}(): '{p}' must be one of {', '.join(map(repr, choices))}",
                self.where(p),
            )
        return v

    def op(self, name, *operands, **attrs):
        return self.b.op(name, *operands, **attrs)


def _operands_like(c: Call, *names):
    """Convert arguments to tensors; Python numbers take the first tensor's dtype."""
    like = next((c.bound[n] for n in names if isinstance(c.bound[n], Value)), None)
    return [c.tensor(n, like=like) for n in names]


for _u in UNARY:

    def _mk(opname):
        return lambda c: c.op("tg." + opname, c.tensor("x"))

    builtin(_u, "x")(_mk(_u))

for _bn in BINARY:

    def _mkb(opname):
        return lambda c: c.op("tg." + opname, *_operands_like(c, "a", "b"))

    builtin(_bn, "a, b")(_mkb(_bn))


@builtin("where", "cond, a, b")
def _where(c):
    cond = c.tensor("cond")
    a, b = _operands_like(c, "a", "b")
    return c.op("tg.where", cond, a, b)


@builtin("clip", "x, lo, hi")
def _clip(c):
    x = c.tensor("x")
    return c.op("tg.clip", x, c.tensor("lo", like=x), c.tensor("hi", like=x))


@builtin("cast", "x, dtype")
def _cast(c):
    dt = c.raw("dtype")
    if not isinstance(dt, DType):
        raise CompileError(
            "cast(x, dtype): dtype must be one of f32, f64, i32, i64, bool", c.where("dtype")
        )
    return c.op("tg.cast", c.tensor("x"), dtype=dt.name)


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


@builtin("argmax", "x, axis=None, keepdims=False")
def _argmax(c):
    return c.op(
        "tg.argmax",
        c.tensor("x"),
        axis=c.static_int("axis", allow_none=True),
        keepdims=c.static_bool("keepdims"),
    )


@builtin("argmin", "x, axis=None, keepdims=False")
def _argmin(c):
    return c.op(
        "tg.argmin",
        c.tensor("x"),
        axis=c.static_int("axis", allow_none=True),
        keepdims=c.static_bool("keepdims"),
    )


@builtin("dot", "a, b")
def _dot(c):
    a, b = _operands_like(c, "a", "b")
    return c.op("tg.matmul", a, b)


@builtin("matmul", "a, b")
def _matmul(c):
    a, b = _operands_like(c, "a", "b")
    return c.op("tg.matmul", a, b)


@builtin("transpose", "x, perm=None")
def _transpose(c):
    return c.op("tg.transpose", c.tensor("x"), perm=c.int_list("perm", allow_none=True))


@builtin("reshape", "x, shape")
def _reshape(c):
    return c.op("tg.reshape", c.tensor("x"), shape=c.dim_list("shape"))


@builtin("flatten", "x, axis=1")
def _flatten(c):
    return c.op("tg.flatten", c.tensor("x"), axis=c.static_int("axis"))


def _tensor_seq(c, p):
    v = c.raw(p)
    if not isinstance(v, (list, tuple)):
        raise CompileError(
            f"{c.name}(): '{p}' must be a list of tensors: {c.name}([a, b], axis=0)", c.where(p)
        )
    like = next((x for x in v if isinstance(x, Value)), None)
    return [x if isinstance(x, Value) else c.gen.as_tensor(x, c.where(p), like=like) for x in v]


@builtin("concat", "xs, axis=0")
def _concat(c):
    return c.op("tg.concat", *_tensor_seq(c, "xs"), axis=c.static_int("axis"))


@builtin("stack", "xs, axis=0")
def _stack(c):
    return c.op("tg.stack", *_tensor_seq(c, "xs"), axis=c.static_int("axis"))


@builtin("arange", "n")
def _arange(c):
    return c.op("tg.arange", n=c.dim("n"), dtype="i32")


@builtin("one_hot", "y, n, dtype=None")
def _one_hot(c):
    dt = c.raw("dtype")
    dt = dt.name if isinstance(dt, DType) else "f32"
    return c.op("tg.one_hot", c.tensor("y"), n=c.static_int("n"), dtype=dt)


def _fill(c, value):
    shape = c.dim_list("shape")
    dt = c.raw("dtype")
    if dt is not None and not isinstance(dt, DType):
        raise CompileError(f"{c.name}(): dtype must be a dtype such as f32", c.where("dtype"))
    from irc.ir.types import F32

    dt = dt or F32
    return c.op("tg.broadcast_to", c.gen.as_tensor(value, c.loc, dtype=dt), shape=shape)


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
    return c.op("tg.categorical_crossentropy", c.tensor("p"), c.tensor("y"))


@builtin("crossentropy_logits", "x, y")
def _cce_logits(c):
    x = c.tensor("x")
    return c.op("tg.crossentropy_logits", x, c.tensor("y"))


PADDINGS = ("valid", "same", "full")


def _padding(c, n):
    v = c.raw("padding")
    if isinstance(v, str):
        return c.string("padding", PADDINGS)
    return c.int_list("padding", n=n)


@builtin("conv1d", "x, w, stride=1, padding='valid', flip=False")
def _conv1d(c):
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
    size = c.int_list("size", n=2)
    stride = c.int_list("stride", allow_none=True, n=2) or size
    return c.op("tg.max_pool2d", c.tensor("x"), size=size, stride=stride)

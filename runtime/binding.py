"""The call boundary every backend shares: argument binding, checks and dtype
conversion, generated once per entry-function signature.

An entry function is described by a CallSpec (names, types, defaults and the
order of its named dims). From it this module generates, as Python source
compiled once, the check of one call: for each argument a fast test (an
ndarray of the exact dtype, C-contiguous) with a fallback to `convert`, then
the rank, every static size and every named dim, unrolled for that signature,
so a call with correct arrays runs a handful of attribute reads and
comparisons. The rules (irc.api's documented ones):

- Python numbers, lists and NumPy scalars take the argument's dtype when the
  kinds allow it (numbers into a float argument, integers into an int one);
- an ndarray of another dtype is converted if the cast is same-kind (float64
  into f32, int64 into i32), anything else is an irc.CallError;
- a non-contiguous array is copied;
- rank, static sizes and the agreement of named dims across arguments are
  checked; a dim written as an expression (`T*B`) must equal its value.

Every mistake is a CallError naming the function, the argument and the dim.
`bind_names` turns positional and keyword arguments with defaults into the
positional list. Backends build their calls on `check_source` (the cpu
backend appends its marshalling to the same generated function); irc.api and
the OpenCL backend use `make_binder`.

Imports irc.ir only (and NumPy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from irc.ir.dims import eval_dim
from irc.ir.errors import CallError
from irc.ir.types import TensorType

_NO_DEFAULT = object()


@dataclass
class CallSpec:
    """The call boundary of one entry function (inputs only)."""

    name: str
    in_names: list
    in_types: list  # TensorType per input
    dims: list  # named dims in the order of the dims key (the backend's)
    defaults: list = field(default_factory=list)  # per input: a value or None (none)

    def __post_init__(self):
        if not self.defaults:
            self.defaults = [None] * len(self.in_names)


# -- errors and conversion (the slow paths of the generated code) ----------------------------------


def convert(spec: CallSpec, k: int, a) -> np.ndarray:
    """Argument k as a C-contiguous array of its dtype, or CallError."""
    t = spec.in_types[k]
    want = t.dtype.np
    name = spec.in_names[k]
    if not isinstance(a, np.ndarray):
        try:
            arr = np.asarray(a)
        except Exception:
            raise CallError(
                f"{spec.name}(): argument '{name}' cannot be converted to an array"
            ) from None
        if arr.dtype == object:
            raise CallError(f"{spec.name}(): argument '{name}' is not numeric")
        # Python numbers and lists take the argument's dtype
        if (
            arr.dtype.kind == "f"
            and t.dtype.is_float
            or arr.dtype.kind in "iu"
            and t.dtype.kind in "if"
        ):
            check_int_range(spec.name, name, t, arr)
            return np.asarray(arr, dtype=want, order="C")
        a = arr
    if a.dtype != want:
        if a.dtype.kind not in "biuf" or not np.can_cast(a.dtype, want, "same_kind"):
            raise CallError(
                f"{spec.name}(): argument '{name}' must be {t.dtype} ({t}), "
                f"got an array of {a.dtype}"
            )
        check_int_range(spec.name, name, t, a)
    # np.asarray, not ascontiguousarray: the latter turns a 0-d array into 1-d.
    return np.asarray(a, dtype=want, order="C")


def check_int_range(fn_name, name, t, arr: np.ndarray) -> None:
    """A narrowing integer conversion (int64 labels into an i32 argument) must
    not wrap: a value out of the argument's range is a CallError, on every backend."""
    want = t.dtype.np
    if arr.dtype.kind not in "iu" or want.kind != "i" or not arr.size:
        return
    info = np.iinfo(want)
    if np.iinfo(arr.dtype).min >= info.min and np.iinfo(arr.dtype).max <= info.max:
        return
    lo, hi = arr.min(), arr.max()
    if lo < info.min or hi > info.max:
        bad = lo if lo < info.min else hi
        raise CallError(
            f"{fn_name}(): argument '{name}' ({t}) holds {bad}, out of the {t.dtype} range"
        )


def rank_error(spec: CallSpec, k: int, a) -> CallError:
    t = spec.in_types[k]
    return CallError(
        f"{spec.name}(): argument '{spec.in_names[k]}' must have rank {t.rank} ({t}), "
        f"got shape {list(a.shape)}"
    )


def size_error(spec: CallSpec, k: int, a, axis: int) -> CallError:
    t = spec.in_types[k]
    return CallError(
        f"{spec.name}(): argument '{spec.in_names[k]}' must be {t}, got shape {list(a.shape)} "
        f"(axis {axis} is {a.shape[axis]}, expected {t.shape[axis]})"
    )


def dim_error(spec: CallSpec, k: int, a, axis: int, first: int) -> CallError:
    d = spec.in_types[k].shape[axis]
    src = _first_site(spec, d)
    return CallError(
        f"{spec.name}(): argument '{spec.in_names[k]}': dimension {d} is {first} "
        f"(from argument '{spec.in_names[src]}') but {a.shape[axis]} here "
        f"(shape {list(a.shape)})"
    )


def _first_site(spec: CallSpec, d) -> int:
    for k, t in enumerate(spec.in_types):
        if d in t.shape:
            return k
    return 0


def unbound_dim(spec: CallSpec, d: str, env) -> int:
    """A dim no argument binds: from the explicit env, or CallError."""
    if env and d in env:
        return int(env[d])
    raise CallError(f"{spec.name}(): the dim {d} is not bound by the arguments")


def check_expr(spec: CallSpec, expr: str, n: int, dims: dict) -> None:
    try:
        ok = eval_dim(expr, dims) == n
    except KeyError:
        raise CallError(
            f"{spec.name}(): the dims of {expr} are not bound by the arguments"
        ) from None
    if not ok:
        raise CallError(f"{spec.name}(): dimension {expr} does not match the other dims")


def count_error(spec: CallSpec, got: int) -> CallError:
    return CallError(f"{spec.name}() takes {len(spec.in_names)} argument(s), got {got}")


def bind_names(spec: CallSpec, args: tuple, kwargs: dict) -> list:
    """Positional + keyword arguments (defaults filled in) -> the positional list."""
    names = spec.in_names
    if len(args) > len(names):
        raise count_error(spec, len(args))
    values = dict(zip(names, args))
    for k, a in kwargs.items():
        if k not in names:
            raise CallError(f"{spec.name}() has no argument '{k}' (arguments: {', '.join(names)})")
        if k in values:
            raise CallError(f"{spec.name}(): argument '{k}' given twice")
        values[k] = a
    out = []
    for n, t, d in zip(names, spec.in_types, spec.defaults):
        if n in values:
            out.append(values[n])
        elif d is not None:
            out.append(d)
        else:
            raise CallError(f"{spec.name}() is missing argument '{n}' ({t})")
    return out


# -- generated checks ------------------------------------------------------------------------------


def check_source(
    spec: CallSpec, args: str = "args", indent: str = "    ", scalar_slots: dict | None = None
) -> tuple:
    """Python source lines checking the positional sequence `args` (in a function
    that also has `env`, the explicit dims, in scope), and the namespace they need.
    Afterwards local a0..aN-1 hold the converted arrays and `key` the dims tuple.

    scalar_slots {k: local name}: for a float rank-0 input k, a Python float or a
    NumPy float scalar is kept in that local (for the caller to store into a
    ctypes value of the argument's C type: the same rounding as NumPy's cast)
    and a{k} is set to None instead of an array; anything else takes the
    general path."""
    n = len(spec.in_names)
    ns = {
        "ndarray": np.ndarray,
        "spec": spec,
        "convert": convert,
        "rank_error": rank_error,
        "size_error": size_error,
        "dim_error": dim_error,
        "unbound_dim": unbound_dim,
        "check_expr": check_expr,
        "count_error": count_error,
    }
    lines = [f"if len({args}) != {n}: raise count_error(spec, len({args}))"]
    if n:
        lines.append(f"{', '.join(f'a{k}' for k in range(n))}, = {args}")
    var = {}  # dim text -> local variable holding its value
    exprs = []
    for k, t in enumerate(spec.in_types):
        ns[f"T{k}"] = t.dtype.np
        a = f"a{k}"
        lines.append(
            f"if {a}.__class__ is not ndarray or {a}.dtype is not T{k} "
            f"or not {a}.flags.c_contiguous: {a} = convert(spec, {k}, {a})"
        )
        if t.rank == 0 and scalar_slots and k in scalar_slots:
            ns["float"] = float
            ns["f32"], ns["f64"] = np.float32, np.float64
            lines[-1] = (
                f"c = {a}.__class__\n{indent}if c is float or c is f32 or c is f64:"
                f" {scalar_slots[k]} = {a}; {a} = None\n{indent}else:\n{indent}    "
                + lines[-1]
                + f"\n{indent}    if {a}.ndim: raise rank_error(spec, {k}, {a})"
            )
            continue
        if t.rank == 0:
            lines.append(f"if {a}.ndim: raise rank_error(spec, {k}, {a})")
            continue
        lines.append(f"s = {a}.shape")
        lines.append(f"if len(s) != {t.rank}: raise rank_error(spec, {k}, {a})")
        for ax, d in enumerate(t.shape):
            if isinstance(d, int):
                lines.append(f"if s[{ax}] != {d}: raise size_error(spec, {k}, {a}, {ax})")
            elif d in var:
                v = var[d]
                lines.append(f"if s[{ax}] != {v}: raise dim_error(spec, {k}, {a}, {ax}, {v})")
            else:
                v = var[d] = f"d{len(var)}"
                lines.append(f"{v} = s[{ax}]")
                if not d.isidentifier():
                    exprs.append(d)
    for d in spec.dims:
        if d not in var:
            v = var[d] = f"d{len(var)}"
            lines.append(f"{v} = unbound_dim(spec, {d!r}, env)")
    if exprs:
        env_items = ", ".join(f"{d!r}: {var[d]}" for d in spec.dims)
        lines.append(f"denv = {{{env_items}}}")
        for d in exprs:
            lines.append(f"check_expr(spec, {d!r}, {var[d]}, denv)")
    key = ", ".join(var[d] for d in spec.dims)
    lines.append(f"key = ({key},)" if spec.dims else "key = ()")
    return [indent + line for line in lines], ns


def make_binder(spec: CallSpec):
    """bind(args, env=None) -> (list of arrays, dims key): the checked call."""
    lines, ns = check_source(spec)
    arrays = ", ".join(f"a{k}" for k in range(len(spec.in_names)))
    src = "\n".join(["def bind(args, env=None):", *lines, f"    return [{arrays}], key"])
    exec(compile(src, f"<irc binder {spec.name}>", "exec"), ns)  # noqa: S102 - our own source
    return ns["bind"]


def spec_of_loop_function(op) -> CallSpec:
    """The CallSpec of a loop-IR entry function (inputs first, then outputs)."""
    block = op.regions[0].block
    n_in = op.attrs["n_inputs"]
    args = block.args[:n_in]
    return CallSpec(
        op.attrs["sym_name"],
        [a.name_hint or f"arg{k}" for k, a in enumerate(args)],
        [a.type for a in args],
        list(op.attrs.get("dims", ())),
    )


def spec_of_tg_function(op, dims=None) -> CallSpec:
    """The CallSpec of a tg-IR entry function, with its declared defaults."""
    block = op.regions[0].block
    args = block.args
    defaults = op.attrs.get("arg_defaults", (None,) * len(args))
    types = [a.type for a in args]
    if dims is None:
        dims = []
        for t in types:
            for d in t.shape:
                if isinstance(d, str) and d.isidentifier() and d not in dims:
                    dims.append(d)
    return CallSpec(
        op.attrs["sym_name"], [a.name_hint for a in args], types, list(dims), list(defaults)
    )


def spec_to_json(spec: CallSpec) -> dict:
    return {
        "name": spec.name,
        "in_names": list(spec.in_names),
        "in_types": [str(t) for t in spec.in_types],
        "dims": list(spec.dims),
        "defaults": list(spec.defaults),  # numbers (json.dumps refuses anything else)
    }


def spec_from_json(d: dict) -> CallSpec:
    from irc.ir.parser import parse_type

    types = [parse_type(t) for t in d["in_types"]]
    if not all(isinstance(t, TensorType) for t in types):
        raise ValueError("not a tensor type")
    return CallSpec(d["name"], list(d["in_names"]), types, list(d["dims"]), list(d["defaults"]))

"""The IR printer: modules and ops as MLIR-style text that irc.ir.parser reads back.

Owns `print_module` and `print_op`. The text is one op per line, two spaces of
indent per nesting level:

    module {
      tg.global {sym_name = "W", type = f32[64, 10], init = "zeros"}
      func.func @predict(%x: f32[N, 64]) -> (f32[N, 10]) attributes {visibility = "public"} {
        %W = tg.read {sym = @W} : f32[64, 10]
        %0 = tg.matmul %x, %W : f32[N, 10] loc("logreg.tg":8:20)
        func.return %0
      }
    }

(`loc(...)` only with locs=True; an op without a loc then shows `loc(unknown)`.)
`func.func` has a custom form (its entry block's arguments are the
parameters, `sym_name` and `res_types` are shown in the signature); every
other op is printed in the generic form

    %a, %b = dialect.name %x, %y {key = value} : T1, T2 ({
    ^bb0(%arg: T):
      ...
    }) loc("file":line:col)

The contract, checked by tests: print(parse(print(m))) == print(m), so every
choice here (value names, float spelling, dense literals) is one the parser
reproduces exactly. Floats are spelled by repr(float(x)), exact for f32 and
f64 values; a NaN's sign and payload are not kept (every NaN prints `nan`).

Must not import anything of the project outside irc.ir.
"""

from __future__ import annotations

import json
import re

import numpy as np

from irc.ir.core import Op, SymbolRef, Value
from irc.ir.types import DType, TensorType

__all__ = ["format_attr", "format_loc", "print_module", "print_op"]

# Spellings the parser reads without quotes; anything else is JSON-quoted so
# that an odd name from a pass still round-trips instead of corrupting the text.
_VALUE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")
_OP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z0-9_$]+)+\Z")
_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.$]*\Z")

_DTYPE_NAMES = {
    np.dtype(np.float32): "f32",
    np.dtype(np.float64): "f64",
    np.dtype(np.int32): "i32",
    np.dtype(np.int64): "i64",
    np.dtype(np.bool_): "bool",
}


def print_module(module: Op, locs: bool = False) -> str:
    """The text of a module, ending with a newline (ready to write to a file)."""
    return print_op(module, locs) + "\n"


def print_op(op: Op, locs: bool = False) -> str:
    """The text of one op and everything nested in it (no trailing newline).

    A `builtin.module` prints as `module {...}`. Values defined outside `op`
    (when printing a nested op on its own) are named on first use.
    """
    p = _Printer(locs)
    if _is_module_form(op):
        p.module(op)
    else:
        p.names = _Namer()
        p.op(op, 0)
    return "\n".join(p.lines)


# -- attribute values ----------------------------------------------------------------


def format_symbol(name: str) -> str:
    return "@" + (name if _BARE_KEY.match(name) else json.dumps(name))


def format_loc(loc) -> str:
    if loc is None:
        return "loc(unknown)"
    return f"loc({json.dumps(loc.file)}:{loc.line}:{loc.col})"


def _fmt_float(x: float) -> str:
    # Python's repr is the shortest text that reads back to the same double,
    # and always has '.', 'e', or is inf/-inf/nan, so it never reads as an int.
    return repr(float(x))


def format_attr(v) -> str:
    """The text of one attribute value (see irc.ir.core for the kinds)."""
    # bool before int: bool is a subclass of int.
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return _fmt_float(v)
    if isinstance(v, str):
        return json.dumps(v)
    if v is None:
        return "none"
    if isinstance(v, SymbolRef):
        return format_symbol(v.name)
    if isinstance(v, TensorType):
        return str(v)
    if isinstance(v, DType):
        # A bare `f32` already means the scalar TensorType, so a dtype is wrapped.
        return f"dtype<{v.name}>"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    if isinstance(v, np.ndarray):
        return _fmt_dense(v)
    raise TypeError(f"cannot print attribute value {v!r} of type {type(v).__name__}")


def _fmt_dense(a: np.ndarray) -> str:
    name = _DTYPE_NAMES.get(a.dtype)
    if name is None:
        raise TypeError(
            f"cannot print an array of dtype {a.dtype} (irc has f32, f64, i32, i64, bool)"
        )
    ty = name if a.ndim == 0 else f"{name}[{', '.join(str(d) for d in a.shape)}]"
    if a.dtype.kind == "f":
        conv = _fmt_float
    elif a.dtype.kind == "b":
        conv = _fmt_bool
    else:
        conv = str
    return f"dense<{ty}, {_nested(a.tolist(), a.ndim, conv)}>"


def _fmt_bool(x) -> str:
    return "true" if x else "false"


def _nested(x, depth: int, conv) -> str:
    if depth == 0:
        return conv(x)
    if depth == 1:
        return "[" + ", ".join(map(conv, x)) + "]"
    return "[" + ", ".join(_nested(y, depth - 1, conv) for y in x) + "]"


def format_attr_dict(attrs: dict) -> str:
    items = []
    for k, v in attrs.items():
        key = k if isinstance(k, str) and _BARE_KEY.match(k) else json.dumps(str(k))
        items.append(f"{key} = {format_attr(v)}")
    return "{" + ", ".join(items) + "}"


# -- ops -----------------------------------------------------------------------------


def _is_module_form(op: Op) -> bool:
    return (
        op.name == "builtin.module"
        and not op.operands
        and not op.results
        and len(op.regions) == 1
        and len(op.regions[0].blocks) == 1
        and not op.regions[0].blocks[0].args
    )


def _is_func_form(op: Op) -> bool:
    """Whether a func.func fits the custom form; otherwise it prints generically."""
    if op.operands or op.results or len(op.regions) != 1 or len(op.regions[0].blocks) != 1:
        return False
    if not isinstance(op.attrs.get("sym_name"), str):
        return False
    res = op.attrs.get("res_types")
    return isinstance(res, tuple) and all(isinstance(t, TensorType) for t in res)


class _Namer:
    """Names values within one namespace (a function, or a top-level op).

    A value keeps its name hint when that is free, else takes the first free
    `_1`, `_2`, ... suffix; values without a usable hint are numbered. Printed
    names are unique valid identifiers, so re-parsing them (a parsed `%x_1`
    gets hint `x_1`, a parsed `%3` none) reproduces the same names.
    """

    __slots__ = ("names", "used", "next_suffix", "counter")

    def __init__(self):
        self.names: dict = {}
        self.used: set = set()
        self.next_suffix: dict = {}
        self.counter = 0

    def __call__(self, v: Value) -> str:
        n = self.names.get(v)
        if n is not None:
            return n
        hint = v.name_hint
        if isinstance(hint, str) and _VALUE_NAME.match(hint):
            if hint in self.used:
                # Names are only ever added, so the first free suffix never
                # decreases: resume where the last search for this hint stopped.
                k = self.next_suffix.get(hint, 1)
                while f"{hint}_{k}" in self.used:
                    k += 1
                self.next_suffix[hint] = k + 1
                hint = f"{hint}_{k}"
            self.used.add(hint)
            n = "%" + hint
        else:
            n = f"%{self.counter}"
            self.counter += 1
        self.names[v] = n
        return n


class _Printer:
    def __init__(self, locs: bool):
        self.locs = locs
        self.lines: list = []
        self.names = _Namer()
        self.type_cache: dict = {}

    def ty(self, t) -> str:
        s = self.type_cache.get(t)
        if s is None:
            s = str(t)
            self.type_cache[t] = s
        return s

    def loc(self, op: Op) -> str:
        return " " + format_loc(op.loc) if self.locs else ""

    def module(self, m: Op) -> None:
        head = "module"
        if m.attrs:
            head += " attributes " + format_attr_dict(m.attrs)
        self.lines.append(head + " {")
        for op in m.regions[0].blocks[0].ops:
            # Each top-level op is its own namespace (functions are isolated).
            self.names = _Namer()
            self.op(op, 1)
        self.lines.append("}" + self.loc(m))

    def op(self, op: Op, indent: int) -> None:
        pad = "  " * indent
        if op.name == "func.func" and _is_func_form(op):
            self.func(op, indent, pad)
            return
        name = self.names
        parts = [pad]
        if op.results:
            parts.append(", ".join([name(r) for r in op.results]))
            parts.append(" = ")
        parts.append(op.name if _OP_NAME.match(op.name) else json.dumps(op.name))
        if op.operands:
            parts.append(" ")
            parts.append(", ".join([name(v) for v in op.operands]))
        if op.attrs:
            parts.append(" ")
            parts.append(format_attr_dict(op.attrs))
        if op.results:
            parts.append(" : ")
            parts.append(", ".join([self.ty(r.type) for r in op.results]))
        if not op.regions:
            parts.append(self.loc(op))
            self.lines.append("".join(parts))
            return
        parts.append(" ({")
        self.lines.append("".join(parts))
        for i, region in enumerate(op.regions):
            if i:
                self.lines.append(pad + "}, {")
            for bi, block in enumerate(region.blocks):
                # Headers are always printed in generic regions so block
                # arguments survive the round trip.
                if block.args:
                    args = ", ".join(f"{name(a)}: {self.ty(a.type)}" for a in block.args)
                    self.lines.append(f"{pad}^bb{bi}({args}):")
                else:
                    self.lines.append(f"{pad}^bb{bi}:")
                for inner in block.ops:
                    self.op(inner, indent + 1)
        self.lines.append(pad + "})" + self.loc(op))

    def func(self, op: Op, indent: int, pad: str) -> None:
        name = self.names
        block = op.regions[0].blocks[0]
        params = ", ".join(f"{name(a)}: {self.ty(a.type)}" for a in block.args)
        res = ", ".join(self.ty(t) for t in op.attrs["res_types"])
        head = f"{pad}func.func {format_symbol(op.attrs['sym_name'])}({params}) -> ({res})"
        rest = {k: v for k, v in op.attrs.items() if k not in ("sym_name", "res_types")}
        if rest:
            head += " attributes " + format_attr_dict(rest)
        self.lines.append(head + " {")
        for inner in block.ops:
            self.op(inner, indent + 1)
        self.lines.append(pad + "}" + self.loc(op))

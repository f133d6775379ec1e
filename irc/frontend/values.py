"""The `.tg` generator's compile-time values and scopes: Dim (a named dim or an
expression over them), references to shared variables and defs, the names visible
in a function body (FuncScope) and per-function state (FunctionContext), and how
errors describe a value. Imports irc.ir and irc.frontend.ast only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from irc.frontend import ast as A
from irc.frontend.host import describe_value
from irc.ir.core import Loc, Op, Value
from irc.ir.types import (
    TensorType,
)


@dataclass(frozen=True)
class Dim:
    """A compile-time dimension: a named dim or an expression over them."""

    d: object  # str (canonical dim expression); ints are plain Python ints

    def __str__(self):
        return str(self.d)


@dataclass
class SharedRef:
    name: str
    type: TensorType
    loc: Loc


def make_dim(d):
    """A Python int for a static size, else a Dim."""
    return d if isinstance(d, int) else Dim(d)


def dim_of(v):
    """The Dim value (int or str) of a compile-time int or Dim, else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, Dim):
        return v.d
    return None


class FuncScope:
    """Names visible in one function body (and nested scan bodies)."""

    def __init__(self, parent: Optional["FuncScope"] = None):
        self.vars: dict = {}
        self.parent = parent

    def lookup(self, name):
        s = self
        while s is not None:
            if name in s.vars:
                return s.vars[name]
            s = s.parent
        return None


class FunctionContext:
    """Per-function state: entry block, reads of shared variables, dims."""

    def __init__(self, func_op: Op, kind: str, named_dims: set):
        self.func_op = func_op
        self.entry = func_op.regions[0].block
        self.kind = kind
        self.named_dims = named_dims
        self.reads: dict = {}  # shared name -> Value
        self.dim_values: dict = {}  # (dim, dtype) -> Value
        self.prologue = 0  # ops inserted at the entry's top (reads, dims)
        self.updates: list = []  # (name, Value, loc)
        # runtime integer scalars known as affine forms {Value | 1: Dim}
        self.affine: dict = {}


def describe(v) -> str:
    """How an error message of the `.tg` front end names a value."""
    return describe_value(v, Value, Dim)


def type_text(te: A.TypeExpr) -> str:
    if not te.dims:
        return te.dtype

    def dt(de):
        if de.op in ("int", "name"):
            return str(de.args[0])
        return f"{dt(de.args[0])}{de.op}{dt(de.args[1])}"

    return f"{te.dtype}[{', '.join(dt(d) for d in te.dims)}]"

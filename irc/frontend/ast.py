"""The small AST of a `.tg` file: what the parser produces and irgen consumes.

Every node carries `loc` (file, line, column of its first token). `dump_ast`
prints the tree for `irc dump --stage ast`. Imports only irc.ir.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from irc.ir.core import Loc


@dataclass(slots=True)
class Node:
    loc: Loc


# -- types ------------------------------------------------------------------------
@dataclass(slots=True)
class TypeExpr(Node):
    dtype: str
    dims: Optional[list]  # None for a scalar; items are DimExpr


@dataclass(slots=True)
class DimExpr(Node):
    op: str  # "int", "name", "+", "-", "*", "//"
    args: list  # int | str for leaves, DimExpr children otherwise


# -- expressions ----------------------------------------------------------------
@dataclass(slots=True)
class Num(Node):
    value: Any  # int or float
    is_float: bool


@dataclass(slots=True)
class Str(Node):
    value: str


@dataclass(slots=True)
class Bool(Node):
    value: bool


@dataclass(slots=True)
class NoneLit(Node):
    pass


@dataclass(slots=True)
class DTypeLit(Node):
    name: str


@dataclass(slots=True)
class Name(Node):
    id: str


@dataclass(slots=True)
class ListLit(Node):
    items: list


@dataclass(slots=True)
class BinOp(Node):
    op: str  # + - * / // % @ ** & | == != < <= > >=
    left: Node
    right: Node


@dataclass(slots=True)
class UnaryOp(Node):
    op: str  # - + ~
    operand: Node


@dataclass(slots=True)
class Call(Node):
    func: str
    args: list
    kwargs: list  # list of (name, Node, Loc)


@dataclass(slots=True)
class Slice(Node):
    start: Optional[Node]
    stop: Optional[Node]
    step: Optional[Node]


@dataclass(slots=True)
class Ellipsis_(Node):
    pass


@dataclass(slots=True)
class Index(Node):
    value: Node
    items: list  # Node | Slice | Ellipsis_ | NoneLit


@dataclass(slots=True)
class Scan(Node):
    seqs: list  # list of (name, Node, Loc)
    carries: list  # list of (name, Node, Loc)
    options: dict  # "steps"/"truncate" -> Node
    body: list  # statements


# -- statements ------------------------------------------------------------------
@dataclass(slots=True)
class Assign(Node):
    targets: list  # names
    value: Node


@dataclass(slots=True)
class Update(Node):
    target: str
    value: Node


@dataclass(slots=True)
class Return(Node):
    values: list


@dataclass(slots=True)
class Yield(Node):
    values: list


# -- declarations ----------------------------------------------------------------
@dataclass(slots=True)
class Param(Node):
    name: str
    type: TypeExpr
    default: Optional[Node]


@dataclass(slots=True)
class FuncDecl(Node):
    kind: str  # "fn" or "def"
    name: str
    params: list
    ret: Optional[list]  # list of TypeExpr; None when omitted
    ret_is_tuple: bool
    body: list


@dataclass(slots=True)
class SharedDecl(Node):
    name: str
    type: TypeExpr
    init: str
    init_loc: Loc
    args: list
    kwargs: list


@dataclass(slots=True)
class ConstDecl(Node):
    name: str
    value: Node


@dataclass(slots=True)
class SeedDecl(Node):
    value: int


@dataclass(slots=True)
class Program(Node):
    decls: list = field(default_factory=list)


def dump_ast(node, indent: int = 0) -> str:
    """A readable indented dump of an AST (locations as line:col)."""
    pad = "  " * indent
    if isinstance(node, list):
        return "\n".join(dump_ast(x, indent) for x in node)
    if isinstance(node, tuple):
        return pad + "(" + ", ".join(_short(x) for x in node) + ")"
    if not isinstance(node, Node):
        return pad + repr(node)
    head = f"{pad}{type(node).__name__} @{node.loc.line}:{node.loc.col}"
    scalars, children = [], []
    for f in fields(node):
        if f.name == "loc":
            continue
        v = getattr(node, f.name)
        if isinstance(v, Node) or (
            isinstance(v, list) and any(isinstance(x, (Node, tuple)) for x in v)
        ):
            children.append((f.name, v))
        elif isinstance(v, dict) and v:
            children.append((f.name, list(v.items())))
        else:
            scalars.append(f"{f.name}={_short(v)}")
    lines = [head + (" " + " ".join(scalars) if scalars else "")]
    for name, v in children:
        lines.append(f"{pad}  {name}:")
        lines.append(dump_ast(v, indent + 2))
    return "\n".join(lines)


def _short(v) -> str:
    if isinstance(v, Node):
        return dump_ast(v).strip().splitlines()[0]
    if isinstance(v, Loc):
        return f"{v.line}:{v.col}"
    return repr(v)

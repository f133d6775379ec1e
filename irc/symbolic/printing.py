"""Inspecting expressions and functions: pp (infix text), debugprint (the tg IR) and
graph (Graphviz).
Imports irc.ir, irc.ops and the modules of irc.symbolic above it; irc.pipeline and the
printer when called.
"""

from __future__ import annotations

import builtins as _py
import itertools
import os
import shutil
import subprocess
import sys

import irc.ops  # noqa: F401  (registers the ops)
from irc.ir.core import OpResult, freeze_attr
from irc.ir.types import (
    TensorType,
    dtype_of_numpy,
)
from irc.ops.registry import lookup
from irc.symbolic.builders import (
    _describe,
)
from irc.symbolic.compile import (
    Function,
    _Emitter,
    _graph_inputs,
    _verify,
)
from irc.symbolic.variables import (
    Variable,
    _handle,
)

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
    """A readable infix form of an expression (or a list of them), read off its
    traced tg IR."""
    if isinstance(expr, (list, tuple)):
        return "[" + ", ".join(pp(e) for e in expr) + "]"
    if not isinstance(expr, Variable):
        return repr(expr)
    memo: dict = {}  # id(value) -> (text, precedence)

    def leaf(v):
        if v.kind == "dim":
            return str(v.dim)
        return v.name or f"<{v.kind} {v.type}>"

    def fmt(v, prec=0):
        if id(v) not in memo:
            memo[id(v)] = node(v)
        s, p = memo[id(v)]
        return f"({s})" if p < prec else s

    def call(fname, args, attrs=None, defaults=None):
        parts = list(args)
        for k, x in (attrs or {}).items():
            if defaults is not None and k in defaults and freeze_attr(defaults[k]) == x:
                continue
            parts.append(f"{k}={_fmt_attr(x)}")
        return f"{fname}({', '.join(parts)})", 16

    def node(v):  # v: a Value of the traced IR
        if not isinstance(v, OpResult):
            return leaf(_handle(v)), 16
        a = v.op
        op, ins = a.name, a.operands
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

    # Operands are formatted before their users, in an explicit post-order, so that
    # fmt's recursion into an operand always finds it in the memo: a chain thousands
    # of ops deep prints without exhausting Python's stack.
    seen, stack = set(), [(expr.value, False)]
    while stack:
        v, expanded = stack.pop()
        if expanded:
            if id(v) not in memo:
                memo[id(v)] = node(v)
            continue
        if id(v) in seen:
            continue
        seen.add(id(v))
        stack.append((v, True))
        if isinstance(v, OpResult):
            stack.extend((o, False) for o in v.op.operands if id(o) not in seen)
    return fmt(expr.value)


def _expr_function(obj, name="expr"):
    """An emitted module computing `obj` (a variable or a list), its inputs
    found in the graph (by creation order)."""
    outs = [obj] if isinstance(obj, Variable) else list(obj)
    loc = outs[0].loc if outs else None
    module = _Emitter(name, _graph_inputs(outs), outs, [], loc, "ignore").emit()
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

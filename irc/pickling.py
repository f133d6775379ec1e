"""Pickling the Python API's objects, as Theano programs do (`pickle.dump(classifier, f)`
of an object holding shared variables, symbolic expressions and compiled functions).

Owns the reduce and restore functions behind `__reduce__` of irc.symbolic's Variable,
SharedVariable, Dim and Function and of irc.api's CompiledModule. What a pickle holds:

- a shared variable: its current value and name. Pickle's memo keeps one object per
  variable within one pickled object graph, so the objects that shared it before
  `pickle.dump` share it after `pickle.load`, as in Theano;
- an input variable: its name, dtype and dims. An unknown dim (irc/ir/dims.py) is a
  token, restored as a fresh unknown; one unknown in several variables of one pickle
  stays one unknown;
- an expression: the tg IR text of the graph that computes it (irc's printed IR, which
  parses back; not Python internals), with the input and shared variables it reads,
  pickled as above. It is rebuilt into a graph that irc.function compiles;
- a compiled function (irc.function): the tg IR it was built from, its inputs and
  outputs, shared variables and backend; compiled again on load (the backends' disk
  cache makes that quick);
- a `.tg` module (irc.load): its source, defines, backend and current shared values.

Each pickle records FORMAT and irc's version; a pickle of another FORMAT is a
PickleFormatError on load. Unpickling runs code: load only pickles you trust. The
formats irc writes itself (`irc train --save`, `m.save`) stay NumPy .npz.

Imports irc.symbolic and irc.ir; irc.api and irc.pipeline when restoring.
"""

from __future__ import annotations

import pickle
import re

import numpy as np

from irc import __version__
from irc import symbolic as S
from irc.ir import dims as D
from irc.ir.types import DTYPES, TensorType

FORMAT = 1  # bump when what a pickle holds changes


class PickleFormatError(pickle.UnpicklingError):
    """A pickle written by an irc whose pickle format this irc does not read."""


def _check(fmt, version, what):
    if fmt != FORMAT:
        raise PickleFormatError(
            f"cannot unpickle this {what}: it was written by irc {version} in pickle format "
            f"{fmt}, and this irc ({__version__}) reads format {FORMAT}; rebuild the model with "
            f"this irc (or load the pickle with irc {version}) and pickle it again"
        )


# -- unknown dims ---------------------------------------------------------------------------


class _Unknown:
    """An unknown dim in a pickle: one object per name, so pickle's memo makes every
    mention of it in one pickle the same unknown after loading."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return (_restore_unknown, (FORMAT, __version__, self.name))


_TOKENS: dict = {}


def _token(name: str) -> _Unknown:
    t = _TOKENS.get(name)
    if t is None:
        t = _TOKENS[name] = _Unknown(name)
    return t


def _restore_unknown(fmt, version, name):
    _check(fmt, version, "unknown dim")
    m = re.fullmatch(r"(.*?)(\d*)_(\d+)", name)  # x_0, x2_0: taken names become x3_0 ...
    k, fresh = 1, name
    while m and (fresh in S.variables._UNIFIER.unknown or fresh in S.variables._NAMED):
        k += 1
        fresh = f"{m.group(1)}{k}_{m.group(3)}"
    return S.variables._UNIFIER.fresh(fresh, S.variables._NAMED)


def _unknown_names(text: str) -> list:
    return sorted(set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text)) & S.variables._UNIFIER.unknown)


def _dim_out(d):
    """A dim for a pickle: an int, or its text and the unknowns it mentions."""
    d = S.variables._UNIFIER.resolve(d)
    if isinstance(d, int):
        return d
    return (d, tuple((n, _token(n)) for n in _unknown_names(d)))


def _renamer(pairs):
    """A function renaming the pickled unknowns in a dim to their restored names."""
    mapping = {old: new for old, new in pairs if old != new}

    def f(d):
        if isinstance(d, int) or not mapping or not (D.dim_names(d) & mapping.keys()):
            return d
        return D.parse_dim(
            re.sub(r"[A-Za-z_][A-Za-z_0-9]*", lambda m: mapping.get(m.group(0), m.group(0)), d)
        )

    return f


def _dim_in(x):
    if isinstance(x, int):
        return x
    text, pairs = x
    return _renamer(pairs)(D.parse_dim(text))


# -- variables --------------------------------------------------------------------------------


def reduce_shared(v):
    return (_restore_shared, (FORMAT, __version__, v._fetch(), v.name))


def _restore_shared(fmt, version, value, name):
    _check(fmt, version, "shared variable")
    return S.SharedVariable(np.asarray(value, order="C"), name)


def reduce_dim(dim):
    return (_restore_dim, (FORMAT, __version__, _dim_out(dim._d)))


def _restore_dim(fmt, version, d):
    _check(fmt, version, "dim")
    return S._make_dim(_dim_in(d))


def reduce_variable(v):
    if v.kind == "shared":
        return reduce_shared(v)
    if v.kind == "input":
        t = v.type
        dims = tuple(_dim_out(d) for d in t.shape)
        return (_restore_input, (FORMAT, __version__, v.name, t.dtype.name, dims))
    if v.kind == "dim":
        return (_restore_dim_value, (FORMAT, __version__, _dim_out(v.dim), v.type.dtype.name))
    if v.kind == "arg":
        raise pickle.PicklingError(
            "a scan step argument cannot be pickled on its own: pickle the scan's outputs"
        )
    return _reduce_graph(v)


def _restore_input(fmt, version, name, dtype, dims):
    _check(fmt, version, "input variable")
    shape = tuple(_dim_in(d) for d in dims)
    v = S._leaf(TensorType(DTYPES[dtype], shape), "input", name)
    unknown = [n for d in shape if isinstance(d, str) for n in D.dim_names(d)]
    unknown = [
        n
        for n in unknown
        if n in S.variables._UNIFIER.unknown and n not in S.variables._UNIFIER.owner
    ]
    v.value.auto = bool(unknown)
    S.variables._UNIFIER.adopt(unknown, v.value)
    return v


def _restore_dim_value(fmt, version, d, dtype):
    _check(fmt, version, "dim value")
    return S._dim_variable(_dim_in(d), DTYPES[dtype], None)


# -- expressions: their graph as tg IR text ---------------------------------------------------


def _reduce_graph(v):
    from irc.ir.printer import print_module

    ins = S._graph_inputs([v])
    em = S._Emitter("expr", ins, [v], [], v.loc, "ignore")
    text = print_module(em.emit(), locs=True)
    pairs = tuple((n, _token(n)) for n in _unknown_names(text))
    inputs = [u for u, _, _ in ins]
    shared = [(sym, sv) for sv, sym in em.syms]
    return (_restore_graph, (FORMAT, __version__, text, inputs, shared, pairs, v.name))


def _restore_graph(fmt, version, text, inputs, shared, pairs, name):
    _check(fmt, version, "expression")
    from irc.ir.parser import parse_module

    module = parse_module(text, "<pickle>")
    (func,) = list(module.functions())
    block = func.regions[0].block
    env = {arg: v for arg, v in zip(block.args, inputs)}
    out = _Rebuilder(dict(shared), _renamer(pairs), env).block(block, None)
    (v,) = out
    if name is not None:
        v.name = name
    return v


class _Rebuilder:
    """Variables and Apply nodes for the ops of a parsed tg IR function."""

    def __init__(self, shared: dict, rename, env: dict):
        self.shared, self.rename, self.env = shared, rename, env

    def type(self, t):
        return t.with_shape(tuple(self.rename(d) for d in t.shape))

    def attrs(self, op):
        from irc.ops.registry import lookup

        od = lookup(op.name)
        keys = od.dim_attrs if od is not None else ()
        return {k: S._map_attr(v, self.rename) if k in keys else v for k, v in op.attrs.items()}

    def block(self, block, scope) -> list:
        """Rebuild the ops of `block`; returns the values of its terminator."""
        env = self.env
        for op in block.ops:
            if op.name in ("func.return", "tg.yield"):
                return [env[o] for o in op.operands]
            if op.name == "tg.read":
                env[op.results[0]] = self.shared[op.attrs["sym"].name]
                continue
            if op.name == "tg.dim":
                dt = DTYPES[op.attrs["dtype"]]
                env[op.results[0]] = S._dim_variable(self.rename(op.attrs["dim"]), dt, op.loc)
                continue
            ins = [env[o] for o in op.operands]
            if op.name == "tg.scan":
                body, yields = self.scan_body(op, scope)
                a = S._build_scan(ins, self.attrs(op), op.loc, body, yields, scope)
            else:
                types = [self.type(r.type) for r in op.results]
                a = S._apply(op.name, ins, self.attrs(op), op.loc, scope=scope, types=types)
            outs = a.take()
            for r, o in zip(op.results, outs):
                env[r] = o
                if r.name_hint and not r.name_hint.isdigit():
                    o.name = r.name_hint
            if outs:
                S._HOST.track_rebuilt(op.name, ins, outs[0])
        raise pickle.UnpicklingError("a pickled function body has no terminator")

    def scan_body(self, op, scope):
        """The traced body of a parsed tg.scan, and the Variables it yields."""
        blk = op.regions[0].block
        body = S._new_body(
            [self.type(a.type) for a in blk.args], [a.name_hint for a in blk.args], scope
        )
        for a, p in zip(blk.args, body.args):
            self.env[a] = S.Variable(p, "arg", op.loc)
        return body, self.block(blk, body)


# -- compiled functions and modules -----------------------------------------------------------


def reduce_function(fn):
    from irc.ir.printer import print_module

    return (
        _restore_function,
        (
            FORMAT,
            __version__,
            fn.name,
            print_module(fn._tg, locs=True),
            fn.backend,
            [(sv, sym) for sv, sym in fn._shared],
            [sv for sv, _ in fn._updated],
            fn._single,
            list(fn._ins),
            list(fn.outputs),
        ),
    )


def _restore_function(fmt, version, name, text, backend, shared, updated, single, ins, outs):
    _check(fmt, version, "compiled function")
    from irc.ir.parser import parse_module
    from irc.pipeline import run_pipeline

    tg = parse_module(text, "<pickle>")
    opt = run_pipeline(tg.clone())
    return S.Function(name, tg, opt, backend, None, shared, updated, single, ins, outs, None)


def reduce_module(m):
    values = {name: m[name] for name in m._globals}
    return (
        _restore_module,
        (FORMAT, __version__, m._text, m._filename, m._define, m.backend, values),
    )


def _restore_module(fmt, version, text, filename, define, backend, values):
    _check(fmt, version, "compiled module")
    import os

    from irc.api import _build

    base = os.path.dirname(os.path.abspath(filename)) if os.path.exists(filename) else os.getcwd()
    m = _build(text, filename, base, backend, define, None, None)
    for name, value in values.items():
        m[name] = value
    return m

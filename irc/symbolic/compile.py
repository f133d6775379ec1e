"""irc.function: the emitter that copies the traced ops (irc/symbolic/variables.py,
Apply) the outputs and updates need into one tg IR module (a tg.global per shared
variable, tg.read and tg.dim at the entry for the leaves, the ops in creation order
with the unknown dims bound so far resolved, tg.update before the return), the checks
of inputs, givens and updates, and Function, which compiles the module and keeps
shared variables in sync.
Imports irc.ir, irc.ops, irc.frontend and the modules of irc.symbolic above it;
irc.pipeline and irc.api when compiling.
"""

from __future__ import annotations

import re
from collections import ChainMap
from typing import Optional

import numpy as np

import irc.ops  # noqa: F401  (registers the ops)
from irc.ir import dims as D
from irc.ir.core import Block, Module, Op, Region, SymbolRef
from irc.ir.errors import CompileError
from irc.ops.registry import lookup
from irc.symbolic import variables as V
from irc.symbolic.builders import (
    _HOST,
    In,
    _describe,
)
from irc.symbolic.scan import (
    _as_list,
    _clone_graph,
    _collect_applies,
    _leaf_var,
    _replacements,
    _yields,
)
from irc.symbolic.variables import (
    _LEAK,
    _LEAK_HINT,
    SharedVariable,
    Variable,
    _resolve_attr,
    _resolve_type,
    _unify_shapes,
    _user_loc,
)

# -- emitting the IR ---------------------------------------------------------------------------


def _sym_name(name, taken: set, default: str) -> str:
    base = re.sub(r"\W", "_", name) if name else default
    if not base or base[0].isdigit():
        base = default + "_" + base
    out, k = base, 0
    while out in taken:
        k += 1
        out = f"{base}_{k}"
    taken.add(out)
    return out


_INF = float("inf")


def _graph_inputs(outs) -> list:
    """The inputs the Variables `outs` read, in creation order, as function inputs
    (Variable, argument name, no default)."""
    leaves = {}
    for a in _collect_applies(outs):
        for v in list(a.operands) + (_yields(a) if a.body is not None else []):
            leaf = _leaf_var(v)
            if leaf is not None and leaf.kind == "input":
                leaves[v] = leaf
    for v in outs:
        if v.kind == "input":
            leaves[v.value] = v
    taken: set = set()
    return [
        (v, _sym_name(v.name, taken, f"arg{k}"), None)
        for k, v in enumerate(sorted(leaves.values(), key=lambda v: v._id))
    ]


class _Emitter:
    """Writes one func.func (and the tg.global ops it needs) for inputs,
    outputs and updates."""

    def __init__(self, fname, inputs, outputs, updates, loc, on_unused_input="raise"):
        self.fname, self.inputs, self.outputs, self.updates, self.loc = (
            fname,
            inputs,
            outputs,
            updates,
            loc,
        )
        self.on_unused_input = on_unused_input

    def emit(self):
        roots = [v.value for v in self.outputs] + [v.value for _, v in self.updates]
        for v in list(self.outputs) + [v for _, v in self.updates]:
            if v.scope is not None:
                raise CompileError(_LEAK, v.loc or self.loc, _LEAK_HINT)
        applies = _collect_applies(roots)
        self.buckets: dict = {}
        for a in applies:
            self.buckets.setdefault(id(a.scope) if a.scope is not None else None, []).append(a)
        # Leaves, with the position of their first use (reads and dims go in that order).
        first: dict = {}  # leaf Value -> key

        def note(v, key):
            if _leaf_var(v) is not None and (v not in first or key < first[v]):
                first[v] = key

        for a in applies:
            for i, v in enumerate(a.operands):
                note(v, (a._id, i))
            if a.body is not None:
                for i, v in enumerate(_yields(a)):
                    note(v, (a._id, 1000 + i))
        for i, v in enumerate(roots):
            note(v, (_INF, i))
        for i, (sv, _) in enumerate(self.updates):
            note(sv.value, (_INF, len(roots) + i))
        leaves = [_leaf_var(v) for v in sorted(first, key=first.__getitem__)]
        self.used = {v.value for v in leaves}
        given = {v.value for v, _, _ in self.inputs}
        for v in leaves:
            if v.kind == "input" and v.value not in given:
                raise CompileError(
                    f"the outputs depend on the input '{v.name or v}', which is not among the "
                    "inputs of the function",
                    v.loc or self.loc,
                    "add it to the inputs, or replace it with givens={...}",
                )
        module = Module(self.loc)
        taken = {self.fname}
        self.syms = []
        sym_of = {}
        for sv in leaves:
            if sv.kind != "shared":
                continue
            sym = _sym_name(sv.name, taken, "shared")
            sym_of[sv.value] = sym
            self.syms.append((sv, sym))
            module.body.append(
                Op(
                    "tg.global",
                    (),
                    (),
                    {"sym_name": sym, "type": sv.type, "init": "value", "init_args": ()},
                    (),
                    sv.loc,
                )
            )
        block = Block([v.type for v, _, _ in self.inputs], [n for _, n, _ in self.inputs])
        self.env = ChainMap({v.value: arg for (v, _, _), arg in zip(self.inputs, block.args)})
        dims: dict = {}
        for v in leaves:
            if v.kind == "shared":
                sym = sym_of[v.value]
                op = block.append(
                    Op("tg.read", (), [v.type], {"sym": SymbolRef(sym)}, (), v.loc, [sym])
                )
                self.env[v.value] = op.results[0]
            elif v.kind == "dim":
                d = V._UNIFIER.resolve(v.dim)
                key = (d, v.type.dtype.name)
                if key not in dims:
                    if isinstance(d, int):  # an unknown dim bound to a size
                        value = np.asarray(d, dtype=v.type.dtype.np)
                        op = Op("tg.constant", (), [v.type], {"value": value}, (), v.loc)
                    else:
                        attrs = {"dim": d, "dtype": v.type.dtype.name}
                        op = Op("tg.dim", (), [v.type], attrs, (), v.loc)
                    dims[key] = block.append(op).results[0]
                self.env[v.value] = dims[key]
        self._emit_scope(None, block)
        for sv, val in self.updates:
            block.append(
                Op(
                    "tg.update",
                    [self._value(val.value, val.loc)],
                    [],
                    {"sym": SymbolRef(sym_of[sv.value])},
                    (),
                    val.loc or self.loc,
                )
            )
        results = [self._value(v.value, v.loc) for v in self.outputs]
        block.append(Op("func.return", results, [], {}, (), self.loc))
        defaults = tuple(d for _, _, d in self.inputs)
        func = Op(
            "func.func",
            (),
            (),
            {
                "sym_name": self.fname,
                "visibility": "public",
                "arg_defaults": defaults,
                "res_types": tuple(v.type for v in results),
            },
            [Region([block])],
            self.loc,
        )
        module.body.append(func)
        used_dims = self._check_dims(func)
        if self.on_unused_input != "ignore":
            # An input used only for a named dim of its shape (n_steps=x.shape[0]) is used,
            # unless an input used for its value gives that dim too.
            used_dims -= {
                d for v, _, _ in self.inputs if v.value in self.used for d in v.type.shape
            }
            for v, name, _ in self.inputs:
                if v.value not in self.used and not any(
                    d in used_dims for d in v.type.shape if isinstance(d, str)
                ):
                    msg = f"input '{name}' is not used to compute the outputs or updates"
                    if self.on_unused_input == "raise":
                        raise CompileError(
                            msg, v.loc or self.loc, "pass on_unused_input='ignore' to allow it"
                        )
                    import warnings

                    warnings.warn(msg, stacklevel=3)
        return module

    def _emit_scope(self, scope, block):
        """Copy the traced ops of `scope` into `block`, in creation order, with the
        unknown dims bound so far resolved in their types and dim attributes."""
        for a in self.buckets.get(id(scope) if scope is not None else None, []):
            operands = [self._value(v, a.loc) for v in a.operands]
            attrs = a.attrs
            od = lookup(a.op)
            if od is not None and od.dim_attrs and V._UNIFIER.binding:
                attrs = dict(attrs)
                for k in od.dim_attrs:
                    if k in attrs:
                        attrs[k] = _resolve_attr(attrs[k])
            types = [_resolve_type(t) for t in a._types]
            names = [None if r is None else r.name_hint for r in a.results]
            regions = ()
            if a.body is not None:
                body = a.body
                blk = Block(
                    [_resolve_type(p.type) for p in body.args], [p.name_hint for p in body.args]
                )
                self.env = self.env.new_child(dict(zip(body.args, blk.args)))
                try:  # the body's values are visible in it only
                    self._emit_scope(body, blk)
                    y = body.ops[-1]
                    yields = [self._value(v, y.loc) for v in y.operands]
                    blk.append(Op("tg.yield", yields, [], {}, (), y.loc))
                finally:
                    self.env = self.env.parents
                regions = [Region([blk])]
            op = block.append(Op(a.op, operands, types, attrs, regions, a.loc, names))
            self.env.update((r, n) for r, n in zip(a.results, op.results) if r is not None)

    def _value(self, v, loc):
        r = self.env.get(v)
        if r is None:
            raise CompileError(_LEAK, loc or self.loc, _LEAK_HINT)
        return r

    def _check_dims(self, func) -> set:
        """Check that every named dim the function uses is bound by an input; return them."""
        bound = {d for v, _, _ in self.inputs for d in v.type.shape if isinstance(d, str)}
        used = set()
        for op in func.walk():
            names = set()
            for r in op.results:
                for d in r.type.shape:
                    names |= D.dim_names(d)
            od = lookup(op.name)
            for k in od.dim_attrs if od is not None else ():
                names |= _attr_dim_names(op.attrs.get(k))
            if op.name == "tg.dim":
                names |= D.dim_names(op.attrs["dim"])
            missing = sorted(names - bound)
            if missing:
                raise CompileError(
                    f"the named dim '{missing[0]}' is not bound by any input of the function",
                    op.loc or self.loc,
                    "named dims take their values from the shapes of the arguments",
                )
            used |= names
        return used


def _attr_dim_names(v) -> set:
    if isinstance(v, tuple):
        out = set()
        for x in v:
            out |= _attr_dim_names(x)
        return out
    if isinstance(v, str):
        try:
            return D.dim_names(D.parse_dim(v))
        except ValueError:
            return set()
    return set()


def _verify(module):
    from irc.ir.verifier import verify
    from irc.ops.registry import verify_op

    verify(module, op_check=verify_op)


# -- function ------------------------------------------------------------------------------------


def _function_inputs(inputs, loc) -> list:
    if isinstance(inputs, (Variable, In)):
        inputs = [inputs]
    out, taken = [], set()
    for k, it in enumerate(inputs or []):
        default, name = None, None
        if isinstance(it, In):
            v, default, name = it.variable, it.value, it.name
        else:
            v = it
        if not isinstance(v, Variable):
            raise TypeError(
                f"irc.function: input {k} must be a symbolic variable, got {_describe(v)}"
            )
        if v.kind == "shared":
            raise CompileError(
                f"the shared variable '{v.name}' cannot be an input: every function that uses it "
                "reads it",
                loc,
                "pass its value with givens, or make a plain input",
            )
        if v.kind != "input":
            raise CompileError(
                f"input {k} ({v.type}) is computed from other variables and cannot be an input",
                loc,
                "inputs are made with irc.tensor, irc.scalar, irc.vector, ...; "
                "substitute intermediate values with givens",
            )
        if any(v is w for w, _, _ in out):
            raise CompileError(f"the input '{v.name or k}' is given twice", loc)
        if default is not None:
            if (
                v.type.rank != 0
                or isinstance(default, bool)
                or not isinstance(default, (int, float, np.number))
            ):
                raise CompileError(
                    f"the default of input '{v.name or k}' must be a number, for a scalar input",
                    loc,
                )
            default = default.item() if isinstance(default, np.number) else default
        out.append((v, _sym_name(name or v.name, taken, f"arg{k}"), default))
    seen_default = False
    for _, name, d in out:
        if d is None and seen_default:
            raise CompileError(f"input '{name}' without a default follows one with a default", loc)
        seen_default = seen_default or d is not None
    return out


def _function_updates(updates, loc) -> list:
    if updates is None:
        return []
    pairs = list(updates.items()) if isinstance(updates, dict) else list(updates)
    out = []
    for pair in pairs:
        try:
            sv, val = pair
        except (TypeError, ValueError):
            raise TypeError(
                "irc.function: updates are (shared variable, new value) pairs or a dict"
            ) from None
        if not isinstance(sv, SharedVariable):
            raise CompileError(
                f"only shared variables can be updated, got {_describe(sv)}",
                loc,
                "make it with irc.shared(value)",
            )
        if any(sv is s for s, _ in out):
            raise CompileError(f"the shared variable '{sv.name}' is updated twice", loc)
        where = (val.loc if isinstance(val, Variable) else None) or loc
        cast = f"cast it: (...).astype('{sv.type.dtype}')"
        v = _HOST.update_value(sv.name, sv.type, val, where, cast)
        out.append((sv, v))
    return out


def function(
    inputs,
    outputs=None,
    updates=None,
    givens=None,
    backend=None,
    name=None,
    on_unused_input="raise",
    device=None,
) -> "Function":
    """Compile a callable: `f = irc.function([x, y], loss, updates=[(W, W - lr * gW)])`.

    inputs: symbolic variables (irc.In(v, value=...) for a default); outputs:
    one variable (f returns one array) or a list (f returns a list); updates:
    (shared, new value) pairs or a dict, applied together after the outputs
    are computed from the values before the call (Theano semantics); givens:
    {variable: replacement} substituted in outputs and updates before
    compiling. Arguments are checked at each call: count, dtype, rank, static
    sizes and the agreement of named dims (irc.api.CallError)."""
    loc = _user_loc()
    from irc.api import BACKENDS, DEFAULT_BACKEND

    backend = backend or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if on_unused_input not in ("raise", "warn", "ignore"):
        raise ValueError("on_unused_input must be 'raise', 'warn' or 'ignore'")
    ins = _function_inputs(inputs, loc)
    single = isinstance(outputs, Variable)
    outs = [outputs] if single else _as_list(outputs)
    for k, o in enumerate(outs):
        if not isinstance(o, Variable):
            raise TypeError(
                f"irc.function: output {k} must be a symbolic variable, got {_describe(o)}"
            )
    # What this function binds of the unknown dims (through givens, updates) holds for
    # this function only: the graph may be compiled again with other givens.
    mark = V._UNIFIER.mark()
    try:
        ups = _function_updates(updates, loc)
        pairs = _replacements(givens, loc, "givens")
        for k, v in pairs:
            if any(k is w for w, _, _ in ins):
                raise CompileError(
                    f"givens: '{k.name or k}' is an input of the function and cannot also be "
                    "replaced",
                    loc,
                )
            for dk, dv in zip(k.type.shape, v.type.shape):
                if V._UNIFIER.free(dk):  # x: f32[x_0, 64] given a [100, 64] slice: x_0 = 100
                    _unify_shapes((dk,), (dv,))
        if pairs:
            new = _clone_graph(outs + [v for _, v in ups], pairs)
            outs, ups = new[: len(outs)], [(sv, v) for (sv, _), v in zip(ups, new[len(outs) :])]
        fname = _sym_name(name, set(), "f") if name else "f"
        em = _Emitter(fname, ins, outs, ups, loc, on_unused_input)
        module = em.emit()
        try:
            _verify(module)
        except CompileError as e:
            free = sorted(n for n in list(V._UNIFIER.unknown) if re.search(rf"\b{n}\b", e.message))
            if free and e.hint is None:  # a check deferred until the dims were known
                e.hint = (
                    f"{', '.join(free)}: dims of inputs made without dims=, known only when the "
                    "function is called; give them (dims=) or replace the input with givens"
                )
            raise
        from irc.pipeline import run_pipeline

        opt = run_pipeline(module.clone())
    finally:
        V._UNIFIER.rollback(mark)
    return Function(
        fname, module, opt, backend, device, em.syms, [sv for sv, _ in ups], single, ins, outs, loc
    )


class Function:
    """A compiled function (irc.function). Call it with NumPy arrays, lists or
    numbers, positionally or by input name."""

    def __init__(self, name, tg, opt, backend, device, syms, updated, single, inputs, outputs, loc):
        from irc.api import EntryFunction, _make_backend

        self.name = name
        self._tg, self._opt = tg, opt
        self._shared = list(syms)  # (SharedVariable, symbol)
        sym_of = {id(sv): sym for sv, sym in syms}
        self._updated = [(sv, sym_of[id(sv)]) for sv in updated]
        self._single = single
        self._ins = list(inputs)  # (Variable, argument name, default), for pickling
        self.inputs = [v for v, _, _ in inputs]
        self.outputs = list(outputs)
        self.backend = backend
        self.loc = loc
        state = {sym: sv._fetch() for sv, sym in syms}
        self._backend = _make_backend(backend, opt, state, device)
        self._synced = {id(sv): sv._version for sv, _ in syms}
        self._entry = EntryFunction(self, opt.lookup(name))
        self.signature = self._entry.signature
        self.__doc__ = str(self.signature)

    def __call__(self, *args, **kwargs):
        for sv, sym in self._shared:  # values changed elsewhere since our last call
            if self._synced.get(id(sv)) != sv._version:
                self._backend.set(sym, sv._fetch())
                self._synced[id(sv)] = sv._version
        # the entry checks and binds the arguments once (on cpu, its generated call path)
        result = self._entry(*args, **kwargs)
        for sv, sym in self._updated:  # we hold their newest values now
            sv._version += 1
            sv._holder = (self, sym)
            self._synced[id(sv)] = sv._version
        if self._single:
            return result
        # irc.api's convention (None, a value, a tuple) as Theano's list of outputs
        n = len(self._entry.signature.results)
        return [] if n == 0 else [result] if n == 1 else list(result)

    def __reduce__(self):
        """Pickled as its tg IR, inputs, outputs and backend; compiled again on load."""
        from irc.pickling import reduce_function

        return reduce_function(self)

    def ir(self, after: Optional[str] = None, stage: str = "opt", locs: bool = False) -> str:
        """The IR text: stage "tg" (as built), "opt" (after the pipeline), or
        the module right after the pipeline pass `after`."""
        from irc.ir.printer import print_module
        from irc.pipeline import module_at

        return print_module(module_at(self._tg, self._opt, after, stage), locs=locs)

    def __repr__(self):
        return f"<irc.Function {self.signature} ({self.backend})>"

"""scan (the symbolic loop: its step function traced into a body) and clone
(substitution of variables in a graph, rebuilding the scans whose bodies depend on a
replaced variable).
Imports irc.ir, irc.ops, irc.frontend and the modules of irc.symbolic above it.
"""

from __future__ import annotations

import inspect as _inspect
import re
from collections import OrderedDict

import numpy as np

import irc.ops  # noqa: F401  (registers the ops)
from irc.frontend.host import scan_attrs, scan_result_types
from irc.ir import dims as D
from irc.ir.core import Op, OpResult, Region, Value
from irc.ir.errors import CompileError
from irc.ops.registry import lookup
from irc.symbolic import variables as V
from irc.symbolic.builders import (
    _HOST,
    _const,
    _describe,
    _dim_variable,
    _is_int,
    as_variable,
)
from irc.symbolic.variables import (
    _CURRENT,
    _LEAK,
    _LEAK_HINT,
    _TRACES,
    Apply,
    Variable,
    _apply,
    _Body,
    _current_scope,
    _handle,
    _LeafValue,
    _map_attr,
    _op,
    _unify_shapes,
    _unify_types,
    _user_loc,
    _visible,
)

# -- scan --------------------------------------------------------------------------------------


def _as_list(v):
    if v is None:
        return []
    if isinstance(v, (list, tuple)):
        return list(v)
    return [v]


def _param_names(fn, n) -> list:
    try:
        params = [
            p.name
            for p in _inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return (params + [None] * n)[:n]


def _step_outputs(result, loc) -> list:
    if isinstance(result, dict):
        if result:
            raise CompileError(
                "scan: updates inside a step function are not supported",
                loc,
                "return the new values as outputs and update after the scan",
            )
        return []
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        if result[1]:
            raise CompileError(
                "scan: updates inside a step function are not supported",
                loc,
                "return the new values as outputs and update after the scan",
            )
        result = result[0]
    if result is None:
        return []
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]


def _new_body(types, names, outer) -> _Body:
    body = _Body(types, names)
    body.outer = outer
    return body


def _yields(a) -> list:
    """The values a tg.scan's body yields."""
    return list(a.body.ops[-1].operands)


def _build_scan(ins, attrs, loc, body, yields, scope=_CURRENT) -> Apply:
    """The tg.scan over the Variables `ins` (sequences, then initial carried values)
    of a traced body that yields the Variables `yields` (next carried values, then
    the outputs to stack)."""
    ns, nc, length = attrs["n_seqs"], attrs["n_carries"], attrs["length"]
    body.append(Op("tg.yield", [y.value for y in yields], [], {}, (), loc))
    types = scan_result_types([i.type for i in ins[ns:]], [y.type for y in yields[nc:]], length)
    return _apply("tg.scan", ins, attrs, loc, scope=scope, types=types, regions=[Region([body])])


def scan(
    fn,
    sequences=None,
    outputs_info=None,
    non_sequences=None,
    n_steps=None,
    truncate_gradient=-1,
    go_backwards=False,
    name=None,
    return_list=False,
):
    """The symbolic loop, with Theano's conventions.

    `fn(*sequence_slices, *previous_outputs, *non_sequences)` is called once,
    with symbolic arguments, to trace the loop body. `outputs_info` has one
    entry per output of fn: the initial value of a carried output (fn gets
    its previous value), or None for an output that is only stacked. Returns
    (outputs, updates): each output stacked over the steps on a new leading
    axis (one variable, or a list when fn has several outputs), and an empty
    updates dict (Theano's). truncate_gradient=k backpropagates through the
    last k steps only; go_backwards=True iterates the sequences from the end.
    """
    loc = _user_loc()
    seqs = []
    for k, s in enumerate(_as_list(sequences)):
        if isinstance(s, dict):
            taps = s.get("taps", [0])
            if taps is not None and list(taps) != [0]:
                raise CompileError(
                    "scan: only taps=[0] are supported for sequences",
                    loc,
                    "pass shifted sequences instead: x[1:], x[:-1]",
                )
            s = s["input"]
        s = as_variable(s, loc=loc)
        if s.type.rank == 0:
            raise CompileError(
                f"scan: sequence {k} is a scalar ({s.type}); scan iterates over a leading axis", loc
            )
        if go_backwards:
            s = _op("tg.index", s, items=(("slice", None, None, -1),), loc=loc)
        seqs.append(s)
    entries = None
    if outputs_info is not None:
        entries = []
        for o in _as_list(outputs_info):
            if isinstance(o, dict):
                taps = o.get("taps", [-1])
                if taps is not None and list(taps) != [-1]:
                    raise CompileError(
                        "scan: only taps=[-1] are supported for outputs",
                        loc,
                        "carry a tuple of the last values instead",
                    )
                o = o.get("initial")
            entries.append(None if o is None else as_variable(o, loc=loc))
    inits = [e for e in (entries or []) if e is not None]
    non_seqs = _as_list(non_sequences)
    if isinstance(n_steps, Variable):
        raise CompileError(
            "scan: n_steps must be an integer or a named dim, not a symbolic value",
            loc,
            "a named dim of an input works: n_steps=x.shape[0]",
        )
    length = _HOST.scan_length(
        [(f"sequence {k}", s, loc) for k, s in enumerate(seqs)],
        None if n_steps is None else (n_steps, loc),
        loc,
        ("scan: ", "n_steps", "scan: without sequences, n_steps gives the number of steps"),
    )
    if truncate_gradient is None or (_is_int(truncate_gradient) and truncate_gradient == -1):
        truncate = None
    elif _is_int(truncate_gradient) and truncate_gradient >= 1:
        truncate = int(truncate_gradient)
    else:
        raise CompileError(
            "scan: truncate_gradient must be -1 (no truncation) or a positive integer", loc
        )

    names = _param_names(fn, len(seqs) + len(inits))
    arg_types = [s.type.with_shape(s.type.shape[1:]) for s in seqs] + [i.type for i in inits]
    arg_names = [n or s.name for s, n in zip(seqs + inits, names)]
    body = _new_body(arg_types, arg_names, _current_scope())
    args = [Variable(p, "arg", loc) for p in body.args]
    _TRACES.append(body)
    try:
        outs = _step_outputs(fn(*args, *non_seqs), loc)
        if entries is None:
            entries = [None] * len(outs)
        if len(entries) != len(outs):
            raise CompileError(
                f"scan: the step function returns {len(outs)} output(s) but outputs_info has "
                f"{len(entries)} entries",
                loc,
                "one entry per output: the initial value of a carried output, None for the others",
            )
        nexts, stacked = [], []
        for k, (o, e) in enumerate(zip(outs, entries)):
            if e is None:
                v = as_variable(o, loc=loc)
            else:
                v = as_variable(o, dtype=e.type.dtype, loc=loc)
                if not _unify_types(v.type, e.type):
                    raise CompileError(
                        f"scan: output {k} is carried; it starts as {e.type} (outputs_info) but "
                        f"the step function returns {v.type}",
                        v.loc or loc,
                        "the next value must have the type of the initial value",
                    )
                nexts.append(v)
            if not _visible(v.scope, body):
                raise CompileError(_LEAK, v.loc or loc, _LEAK_HINT)
            stacked.append(v)
    finally:
        _TRACES.pop()
    attrs = scan_attrs(len(seqs), len(inits), length, truncate)
    a = _build_scan(seqs + inits, attrs, loc, body, nexts + stacked)
    results = a.take()[len(inits) :]
    if name is not None:
        for i, r in enumerate(results):
            r.name = name if len(results) == 1 else f"{name}{i}"
    out = results[0] if len(results) == 1 and not return_list else list(results)
    return out, OrderedDict()


# -- clone: substitution -----------------------------------------------------------------------


def _collect_applies(roots) -> list:
    """Every Apply the roots (Variables or Values) depend on, through scan bodies
    too, in creation order."""
    seen, out = set(), []
    stack = [v.value if isinstance(v, Variable) else v for v in roots]
    while stack:
        v = stack.pop()
        if not isinstance(v, OpResult):
            continue
        a = v.op
        if id(a) in seen:
            continue
        seen.add(id(a))
        out.append(a)
        stack.extend(a.operands)
        if a.regions:
            stack.extend(_yields(a))
    out.sort(key=lambda a: a._id)
    return out


def _leaf_var(v: Value):
    """The Variable of a leaf value (input, shared, dim), else None."""
    return _handle(v) if isinstance(v, _LeafValue) else None


def _clone_graph(roots: list, pairs: list) -> list:
    """The roots with each `old` of `pairs` replaced by its `new` (which is
    not itself substituted). Ops that depend on no replaced variable are
    shared with the original graph; a scan whose body depends on one is
    rebuilt with a fresh body."""
    rep = {k.value: v for k, v in pairs}  # Value -> Variable
    applies = _collect_applies(roots)
    # The unknown dims of a replaced variable become the replacement's dims where
    # they appear as values (x.shape[0]) or attributes (arange(x.shape[0])).
    dim_map = {}
    for k, v in pairs:
        for dk, dv in zip(k.type.shape, v.type.shape):
            if isinstance(dk, str) and dk in V._UNIFIER.unknown and dk != dv:
                dim_map[dk] = dv

    def mapped(d):
        d = V._UNIFIER.resolve(d)
        if isinstance(d, int) or not (D.dim_names(d) & dim_map.keys()):
            return d
        text = re.sub(r"[A-Za-z_]\w*", lambda m: f"({dim_map.get(m.group(0), m.group(0))})", d)
        return D.parse_dim(text)

    def map_attrs(a):
        """a's attributes with the dims mapped; a.attrs itself when none changes."""
        od = lookup(a.op)
        if not dim_map or od is None:
            return a.attrs
        changed = {
            k: _map_attr(a.attrs[k], mapped)
            for k in od.dim_attrs
            if k in a.attrs and _map_attr(a.attrs[k], mapped) != a.attrs[k]
        }
        return {**a.attrs, **changed} if changed else a.attrs

    def vdep(v):
        leaf = _leaf_var(v)
        if leaf is not None and leaf.kind == "dim":
            return bool(D.dim_names(V._UNIFIER.resolve(leaf.dim)) & dim_map.keys())
        return v in rep or (isinstance(v, OpResult) and dep[id(v.op)])

    dep = {}
    for a in applies:
        dep[id(a)] = (
            any(vdep(i) for i in a.operands)
            or (a.body is not None and any(vdep(y) for y in _yields(a)))
            or map_attrs(a) is not a.attrs
        )
    rebuilt = set()  # ids of the bodies of rebuilt scans; outer scans first
    for a in reversed(applies):
        if a.body is not None and (dep[id(a)] or (a.scope is not None and id(a.scope) in rebuilt)):
            rebuilt.add(id(a.body))

    new: dict = {}  # old Value -> new Variable
    bodies: dict = {}

    def nv(v) -> Variable:
        r = rep.get(v)
        if r is not None:
            return r
        if v in new:
            return new[v]
        b = getattr(v, "block", None)
        if isinstance(b, _Body) and id(b) in rebuilt:
            body_of(b)
            return new[v]
        leaf = _leaf_var(v)
        if leaf is not None and leaf.kind == "dim" and vdep(v):
            d = mapped(leaf.dim)
            if isinstance(d, int):
                new[v] = _const(np.asarray(d, dtype=leaf.type.dtype.np), leaf.loc)
            else:
                new[v] = _dim_variable(d, leaf.type.dtype, leaf.loc)
            return new[v]
        return _handle(v)

    def scope_of(s):
        return body_of(s) if s is not None and id(s) in rebuilt else s

    def body_of(b):
        nb = bodies.get(id(b))
        if nb is not None:
            return nb
        s = b.parent.parent  # the tg.scan
        ins = [nv(i) for i in s.operands]
        ns = s.attrs["n_seqs"]
        types = [
            ins[k].type.with_shape(ins[k].type.shape[1:]) if k < ns else ins[k].type
            for k in range(len(b.args))
        ]
        nb = bodies[id(b)] = _new_body(types, [p.name_hint for p in b.args], scope_of(b.outer))
        for p, q in zip(b.args, nb.args):
            new[p] = Variable(q, "arg", s.loc)
        return nb

    for a in applies:
        if a.body is not None:
            if id(a.body) not in rebuilt:
                continue
            na = _rebuild_scan(a, nv, scope_of(a.scope), body_of(a.body), mapped)
        else:
            ins = [nv(i) for i in a.operands]
            attrs = map_attrs(a)
            if (
                all(n.value is o for n, o in zip(ins, a.operands))
                and attrs is a.attrs
                and not (a.scope is not None and id(a.scope) in rebuilt)
            ):
                continue
            na = _apply(a.op, ins, attrs, a.loc, scope=scope_of(a.scope))
        outs = na.take()
        r = outs[0] if outs else None
        if r is not None and r.type.rank == 0 and r.type.dtype.is_int:  # affine forms
            _HOST.track_rebuilt(a.op, [_handle(i) for i in na.operands], r)
        for o, n in zip(a.results, outs):
            if o is None:  # a result nobody holds is not needed
                continue
            n.name = o.name_hint
            new[o] = n
    return [nv(r.value) for r in roots]


def _rebuild_scan(a, nv, scope, body, mapped) -> Apply:
    ins = [nv(i) for i in a.operands]
    ns, nc = a.attrs["n_seqs"], a.attrs["n_carries"]
    length = mapped(a.attrs["length"])
    for s in ins[:ns]:
        if not _unify_shapes(s.type.shape[:1], ins[0].type.shape[:1]):
            raise CompileError(
                f"scan: after substitution the sequences have different lengths "
                f"({ins[0].type} and {s.type})",
                a.loc,
            )
    if ns:
        length = ins[0].type.shape[0]
    yields = [nv(y) for y in _yields(a)]
    for k, (init, nxt) in enumerate(zip(ins[ns:], yields[:nc])):
        if not _unify_types(init.type, nxt.type):
            raise CompileError(
                f"scan: after substitution carried value {k} starts as {init.type} but its next "
                f"value is {nxt.type}",
                a.loc,
            )
    return _build_scan(ins, dict(a.attrs, length=length), a.loc, body, yields, scope)


def _replacements(replace, loc, what="replace") -> list:
    if replace is None:
        return []
    pairs = list(replace.items()) if isinstance(replace, dict) else list(replace)
    out = []
    for pair in pairs:
        try:
            k, v = pair
        except (TypeError, ValueError):
            raise TypeError(f"{what}: expected (variable, replacement) pairs or a dict") from None
        if not isinstance(k, Variable):
            raise TypeError(
                f"{what}: the variable to replace must be a symbolic variable, got {_describe(k)}"
            )
        v = as_variable(v, dtype=k.type.dtype, loc=loc)
        if v.type.dtype != k.type.dtype or v.type.rank != k.type.rank:
            raise CompileError(
                f"{what}: '{k.name or k}' ({k.type}) cannot be replaced by a value of type {v.type}",
                loc,
                "a replacement must have the same dtype and rank (cast or reshape it)",
            )
        if any(k is p for p, _ in out):
            raise CompileError(f"{what}: '{k.name or k}' is replaced twice", loc)
        out.append((k, v))
    return out


def clone(output, replace=None, strict=True):
    """A copy of `output` (a variable or a list) with the variables of
    `replace` ({old: new} or [(old, new)]) substituted: Theano's clone."""
    loc = _user_loc()
    pairs = _replacements(replace, loc)
    single = isinstance(output, Variable)
    roots = [output] if single else list(output)
    for r in roots:
        if not isinstance(r, Variable):
            raise TypeError(f"clone: expected symbolic variables, got {_describe(r)}")
    out = _clone_graph(roots, pairs)
    if single:
        return out[0]
    return tuple(out) if isinstance(output, tuple) else out

"""decompose{all=false}: rewrite composite ops into primitives with their
registry decomposition (irc/ops/decompositions.py), keeping stable forms.

    %m = tg.mean %x {axis = [1]} : f32[N]      ->    %s = tg.sum %x {axis = [1]} : f32[N]
                                                     %m = tg.mul %s, 0.1 : f32[N]

By default only `tg.mean` is decomposed: its sum becomes a reduction that
fuse-elementwise can attach to the producing chain, and the scale fuses into
the consumer. With all=true every composite with a decomposition
(softmax, log_softmax, crossentropy_logits) is rewritten too, for backends
that have no kernel for them; the CPU and OpenCL backends keep softmax rows
as one kernel.

A decomposition is a function of the op's operand types, attributes and result
types (it builds ops of the operands; it does not look at their producers): an
op like one decomposed before (same name, operand types, attributes and result
types, distinct operands) gets copies of the ops built then, with its own
operands and location, instead of a new run of the decomposition (a long
function has thousands of equal means). Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from dataclasses import dataclass

import irc.ops.decompositions  # noqa: F401  (attaches the decompositions)
from irc.ir.core import ERASED_RESULTS, Block, Module, Op, attr_key
from irc.ops.registry import OpBuilder, lookup
from irc.passes.pass_manager import Pass, ops_named, register

DEFAULT = ("tg.mean",)


@register
@dataclass
class Decompose(Pass):
    name = "decompose"
    summary = "rewrite composite ops (mean; with all=true softmax and friends) into primitives"
    reports_changes = True
    all: bool = False

    def run(self, module: Module) -> bool:
        changed = False
        # The ops a decomposition builds go in front of the op it replaces, and
        # the replaced op goes, in one rebuild of each block's op list at the
        # end: inserting and erasing in place moved the rest of a long block
        # each time. before[op] = the ops built in a scratch block for op.
        before: dict = {}
        done: dict = {}  # _key(op) -> (template op, the ops built for it, its new values)
        for op in _ops(module, None if self.all else DEFAULT):
            if op.parent is None:
                continue
            d = lookup(op.name)
            if d is None or d.decompose is None:
                continue
            key = _key(op)
            hit = done.get(key) if key is not None else None
            copied = _copy(hit, op) if hit is not None else None
            if copied is not None:
                built, new = copied
            else:
                scratch = Block()
                b = OpBuilder(loc=op.loc)
                b.set_insertion_end(scratch)
                new = d.decompose(b, op)
                built = scratch.ops
                if key is not None and new is not None and key not in done:
                    done[key] = (list(op.operands), op.loc, list(built), list(new))
            if built:
                before[op] = (op.parent, built)
                changed = True  # (even when the decomposition declines: they stay, unused)
            if new is None:
                continue
            for r, v in zip(op.results, new):
                if v.type != r.type:
                    raise AssertionError(
                        f"decomposition of {op.name} changed the type {r.type} -> {v.type}"
                    )
                r.replace_all_uses_with(v)
            if any(r.uses for r in op.results):
                raise ValueError(f"erasing {op.name} whose result is still used")
            op.drop_all_references()
            before.setdefault(op, (op.parent, []))
            op.parent = None  # (erased: leaves the list below)
            op.results = ERASED_RESULTS
            changed = True
        for block in {blk: None for blk, _ in before.values()}:
            ops = []
            for o in block.ops:
                got = before.get(o)
                if got is not None:
                    for n in got[1]:
                        n.parent = block
                    ops.extend(got[1])
                if o.parent is block:
                    ops.append(o)
            block.ops[:] = ops
        return changed


def _ops(op: Op, names) -> list:
    """The ops nested in op, in walk order (those named in `names`, if given)."""
    return list(op.walk()) if names is None else ops_named(op, names)


def _key(op: Op):
    """What a decomposition of op depends on, or None (operands repeated, or
    attributes that do not hash or sort): then it is not reused."""
    operands = op.operands
    if len(set(operands)) != len(operands):
        return None
    try:
        attrs = tuple(sorted((k, attr_key(v)) for k, v in op.attrs.items()))
        key = (
            op.name,
            tuple(v.type for v in operands),
            attrs,
            tuple(r.type for r in op.results),
        )
        hash(key)
    except TypeError:
        return None
    return key


def _copy(hit, op: Op):
    """Copies of the ops built for an earlier op like op, for op: (ops, new
    values); None if those ops use a value that is neither an operand of the
    earlier op nor one of theirs (then the decomposition runs again)."""
    operands, tloc, built, new = hit
    known = set(operands)
    for t in built:  # (checked before any copy is made: a copy adds uses to its operands)
        for v in t.operands:
            if v not in known:
                return None
        known.update(t.results)
    for v in new:
        if v not in known:
            return None
    mapping = dict(zip(operands, op.operands))
    loc = op.loc
    ops = []
    for t in built:
        c = t.clone(mapping)
        if c.loc is tloc:
            c.loc = loc
        ops.append(c)
    return ops, [mapping[v] for v in new]

"""plan-memory: mark where a result may reuse an operand's buffer in place
(Theano's inplace optimisation), for the backends to use.

    %b = tg.exp %a : f32[N]                 %b = tg.exp %a {inplace = [0]} : f32[N]
    func.return %b                  ->      func.return %b

On elementwise ops and tg.fused without a reduction, attribute `inplace`
holds, per result, the index of an operand whose buffer the result may
overwrite, or -1. An operand qualifies when
- it has the result's exact type (dtype and shape),
- this op is its last use in the block (so nothing reads it afterwards),
- its buffer is the function's own: produced by an op of this function,
  not an argument (the caller's array), not a block argument of a loop
  body, not a constant (shared between calls), and
- if it is a shared variable's value (tg.read), this result's only use is
  the tg.update of that same variable: the update chain W <- W - lr * gW
  then writes W in place instead of allocating a new W.
Each operand serves at most one result; a shared variable's value is
preferred, so an updated variable keeps its buffer, then an operand this op is
the only reader of. Backends must still refuse a reuse
when their buffer for the operand is a view of another live buffer.
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from dataclasses import dataclass

from irc.ir.core import Block, Module, Op
from irc.ops.registry import ELEMENTWISE, lookup
from irc.passes.pass_manager import Pass, register


@register
@dataclass
class PlanMemory(Pass):
    name = "plan-memory"
    summary = "mark results that may reuse an operand's buffer in place"

    def run(self, module: Module) -> bool:
        return _plan_regions(module, {})


def _plan_regions(op: Op, candidates: dict) -> bool:
    """plan_block on every block nested in op's regions (those of tg.fused bodies
    excepted: scalar code, no buffers), in walk order."""
    changed = False
    plan = op.name != "tg.fused"
    for r in op.regions:
        for block in r.blocks:
            if plan:
                changed |= plan_block(block, candidates)
            for inner in block.ops:
                if inner.regions and inner.name != "tg.fused":
                    changed |= _plan_regions(inner, candidates)
    return changed


def _candidate(op: Op, candidates: dict | None = None) -> bool:
    """candidates: op name -> whether an elementwise op without regions of that
    name is a candidate (one registry look-up per name)."""
    name = op.name
    if name == "tg.fused":
        return op.attrs.get("reduce") is None
    if op.regions:
        return False
    c = None if candidates is None else candidates.get(name)
    if c is None:
        d = lookup(name)
        c = d is not None and ELEMENTWISE in d.traits
        if candidates is not None:
            candidates[name] = c
    return c


def _top(op: Op, block: Block):
    """The ancestor of `op` (or op itself) that sits in `block`, or None."""
    while op is not None and op.parent is not block:
        op = op.parent_op()
    return op


def plan_block(block: Block, candidates: dict | None = None) -> bool:
    if candidates is None:
        candidates = {}
    ops = block.ops
    position = {op: i for i, op in enumerate(ops)}
    changed = False
    for op in ops:
        name = op.name
        if name == "tg.fused":
            if op.attrs.get("reduce") is not None:
                continue
        else:
            c = candidates.get(name)
            if c is None:
                c = _candidate(op, candidates)
            if not c or op.regions:
                continue
        operands = op.operands
        results = op.results
        # Shared variables first: updating W in place keeps its buffer for good.
        # Then operands nothing else reads: a backend that evaluates some
        # users late (a transpose folded into a later product) can always
        # honour those. (The order is the same for every result.)
        if len(operands) == 1:
            order = (0,)
        elif len(operands) == 2:  # (what the sort below gives, without it)
            a, b = operands
            if len(results) == 1:
                # One result takes the first operand in order of its type that
                # qualifies: when only one operand has its type, the order does
                # not matter (an operand and a broadcast scalar or row: most ops)
                rtype = results[0].type
                if not a.type == rtype:
                    if not b.type == rtype:
                        continue
                    order = (1,)
                elif not b.type == rtype:
                    order = (0,)
                else:
                    order = _order_of_two(a, b, op)
            else:
                order = _order_of_two(a, b, op)
        else:
            keys = [
                (
                    getattr(v, "op", None) is None or v.op.name != "tg.read",
                    any(u is not op for u, _ in v.uses),
                )
                for v in operands
            ]
            order = sorted(range(len(operands)), key=keys.__getitem__)
        if len(results) == 1:
            r = results[0]
            rtype = r.type
            for i in order:
                v = operands[i]
                if v.type == rtype and _reusable(v, op, r, block, position):
                    new = (i,)
                    break
            else:
                continue
        else:
            taken = set()
            plan = []
            for r in results:
                choice = -1
                for i in order:
                    v = operands[i]
                    if i in taken or v.type != r.type or not _reusable(v, op, r, block, position):
                        continue
                    choice = i
                    break
                if choice >= 0:
                    # The same value at another operand position is the same buffer.
                    taken.update(j for j, w in enumerate(operands) if w is operands[choice])
                plan.append(choice)
            if not any(c >= 0 for c in plan):
                continue
            new = tuple(plan)
        if op.attrs.get("inplace") != new:
            op.attrs["inplace"] = new
            changed = True
    return changed


def _order_of_two(a, b, op: Op) -> tuple:
    """The order plan_block tries the two operands a, b of op in (what sorting
    them by its keys gives)."""
    ka = (getattr(a, "op", None) is None or a.op.name != "tg.read", _read_by_other(a, op))
    kb = (getattr(b, "op", None) is None or b.op.name != "tg.read", _read_by_other(b, op))
    return (1, 0) if kb < ka else (0, 1)


def _read_by_other(v, op: Op) -> bool:
    for u, _ in v.uses:
        if u is not op:
            return True
    return False


def _reusable(v, op: Op, result, block: Block, position: dict) -> bool:
    producer = getattr(v, "op", None)
    if producer is None or producer.parent is not block:
        return False  # an argument, a loop-body argument, or a value from an enclosing block
    if producer.name == "tg.constant":
        return False
    if producer.name == "tg.read":
        sym = producer.attrs["sym"].name
        uses = result.uses
        if len(uses) != 1 or uses[0][0].name != "tg.update" or uses[0][0].attrs["sym"].name != sym:
            return False
    here = position[op]
    for user, _ in v.uses:
        top = user if user.parent is block else _top(user, block)
        if top is None:
            return False
        if top is not op and position[top] > here:
            return False
    return True

"""decompose{all=false}: rewrite composite ops into primitives with their
registry decomposition (irc/ops/decompositions.py), keeping stable forms.

    %m = tg.mean %x {axis = [1]} : f32[N]      ->    %s = tg.sum %x {axis = [1]} : f32[N]
                                                     %m = tg.mul %s, 0.1 : f32[N]

By default only `tg.mean` is decomposed: its sum becomes a reduction that
fuse-elementwise can attach to the producing chain, and the scale fuses into
the consumer. With all=true every composite with a decomposition
(softmax, log_softmax, crossentropy_logits) is rewritten too, for backends
that have no kernel for them; the CPU and OpenCL backends keep softmax rows
as one kernel. Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from dataclasses import dataclass

import irc.ops.decompositions  # noqa: F401  (attaches the decompositions)
from irc.ir.core import Block, Module
from irc.ops.registry import OpBuilder, lookup
from irc.passes.pass_manager import Pass, register

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
        for op in list(module.walk()):
            if op.parent is None or (not self.all and op.name not in DEFAULT):
                continue
            d = lookup(op.name)
            if d is None or d.decompose is None:
                continue
            scratch = Block()
            b = OpBuilder(loc=op.loc)
            b.set_insertion_end(scratch)
            new = d.decompose(b, op)
            if scratch.ops:
                before[op] = (op.parent, scratch.ops)
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

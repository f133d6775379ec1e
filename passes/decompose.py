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
from irc.ir.core import Module
from irc.ops.registry import OpBuilder, lookup
from irc.passes.pass_manager import Pass, register

DEFAULT = ("tg.mean",)


@register
@dataclass
class Decompose(Pass):
    name = "decompose"
    summary = "rewrite composite ops (mean; with all=true softmax and friends) into primitives"
    all: bool = False

    def run(self, module: Module) -> bool:
        changed = False
        for op in list(module.walk()):
            if op.parent is None or (not self.all and op.name not in DEFAULT):
                continue
            d = lookup(op.name)
            if d is None or d.decompose is None:
                continue
            b = OpBuilder(loc=op.loc)
            b.set_insertion_before(op)
            new = d.decompose(b, op)
            if new is None:
                continue
            for r, v in zip(op.results, new):
                if v.type != r.type:
                    raise AssertionError(
                        f"decomposition of {op.name} changed the type {r.type} -> {v.type}"
                    )
                r.replace_all_uses_with(v)
            op.erase()
            changed = True
        return changed

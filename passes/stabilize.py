"""stabilize: rewrite numerically fragile forms into stable ones, before
`grad` so the gradients are generated from the stable forms too.

    %p = tg.softmax %x {axis = -1}               %l = tg.crossentropy_logits %x, %y
    %l = tg.categorical_crossentropy %p, %y  ->

Patterns (each a function below, its docstring the rule):
  log(softmax(x, a))                     -> log_softmax(x, a)
  categorical_crossentropy(softmax(x), y) -> crossentropy_logits(x, y)   (softmax over the last axis)
  log(sigmoid(x))                        -> neg(softplus(neg(x)))
  log(1 + x), log(x + 1)                 -> log1p(x)
With logits of size 1e3 the forms on the left overflow to inf/nan in float32;
the right-hand forms stay finite, and so do their gradients.
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from dataclasses import dataclass


from irc.ir.core import Module, Op, Value
from irc.ops.registry import OpBuilder
from irc.passes.canonicalize import _CountingBuilder
from irc.passes.pass_manager import Pass, ops_named, register


def _producer(v: Value, name: str):
    op = getattr(v, "op", None)
    return op if op is not None and op.name == name else None


def _scalar_constant(v: Value):
    op = _producer(v, "tg.constant")
    if op is None or op.attrs["value"].size != 1:
        return None
    return op.attrs["value"].reshape(()).item()


def log_of_softmax(b: OpBuilder, op: Op):
    """tg.log(tg.softmax(%x){axis=a}) -> tg.log_softmax(%x){axis=a}"""
    sm = _producer(op.operands[0], "tg.softmax")
    if sm is None:
        return None
    return b.log_softmax(sm.operands[0], axis=sm.attrs["axis"])


def crossentropy_of_softmax(b: OpBuilder, op: Op):
    """tg.categorical_crossentropy(tg.softmax(%x){axis=-1}, %y) -> tg.crossentropy_logits(%x, %y)"""
    sm = _producer(op.operands[0], "tg.softmax")
    if sm is None:
        return None
    rank = sm.operands[0].type.rank
    if sm.attrs["axis"] % max(rank, 1) != rank - 1:
        return None
    return b.crossentropy_logits(sm.operands[0], op.operands[1])


def log_of_sigmoid(b: OpBuilder, op: Op):
    """tg.log(tg.sigmoid(%x)) -> tg.neg(tg.softplus(tg.neg(%x)))"""
    sg = _producer(op.operands[0], "tg.sigmoid")
    if sg is None:
        return None
    return b.neg(b.softplus(b.neg(sg.operands[0])))


def log_of_one_plus(b: OpBuilder, op: Op):
    """tg.log(tg.add(1, %x)) -> tg.log1p(%x)   (either operand order)"""
    add = _producer(op.operands[0], "tg.add")
    if add is None:
        return None
    for one, x in ((add.operands[0], add.operands[1]), (add.operands[1], add.operands[0])):
        c = _scalar_constant(one)
        if c is not None and c == 1 and x.type.shape == add.results[0].type.shape:
            if x.type.dtype == add.results[0].type.dtype:
                return b.log1p(x)
    return None


PATTERNS = {
    "tg.log": [log_of_softmax, log_of_sigmoid, log_of_one_plus],
    "tg.categorical_crossentropy": [crossentropy_of_softmax],
}


@register
@dataclass
class Stabilize(Pass):
    name = "stabilize"
    summary = (
        "rewrite log(softmax), crossentropy(softmax), log(sigmoid), log(1+x) into stable forms"
    )
    reports_changes = True

    def run(self, module: Module) -> bool:
        changed = False
        for op in ops_named(module, PATTERNS):
            patterns = PATTERNS.get(op.name)
            if not patterns or op.parent is None:
                continue
            b = _CountingBuilder(loc=op.loc)
            b.set_insertion_before(op)
            for pattern in patterns:
                new = pattern(b, op)
                if new is not None:
                    op.results[0].replace_all_uses_with(new)
                    op.erase()
                    changed = True
                    break
            if b.inserted:
                changed = True  # (ops a declining pattern built stay, unused)
        return changed

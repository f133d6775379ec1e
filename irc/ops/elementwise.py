"""Elementwise ops (tg.add, tg.mul, tg.exp, ...): broadcasting, NumPy
promotion, reference semantics, gradient rules, test domains.
"""

from __future__ import annotations

import numpy as np

from irc.ops.common import elementwise_infer
from irc.ops.registry import COMMUTATIVE, ELEMENTWISE_PURE, OpDef, defop


def binary(name, fn, traits=ELEMENTWISE_PURE, **kw):
    return defop(OpDef(name, infer=elementwise_infer(fn), numpy=fn, traits=traits, arity=2, **kw))


def unary(name, fn, **kw):
    return defop(OpDef(name, infer=elementwise_infer(fn), numpy=fn, traits=ELEMENTWISE_PURE, arity=1, **kw))


ADD = binary("tg.add", np.add, traits=ELEMENTWISE_PURE | {COMMUTATIVE}, domain=(-2.0, 2.0))
MUL = binary("tg.mul", np.multiply, traits=ELEMENTWISE_PURE | {COMMUTATIVE}, domain=(-2.0, 2.0))
EXP = unary("tg.exp", np.exp, domain=(-2.0, 2.0))

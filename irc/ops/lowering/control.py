"""Lowering of state and structure: tg.read (the shared buffer itself),
tg.update (in place, or a copy after the outputs), and the ops that must be
gone before lowering (func.call, tg.grad). Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from irc.ir.core import OpResult, Value
from irc.ir.errors import CompileError
from irc.ops.registry import lowers


@lowers("tg.read")
def lower_read(lowerer, emit, op, vals):
    vals[op.results[0]] = lowerer.global_buf(op.attrs["sym"].name)


@lowers("tg.update")
def lower_update(lowerer, emit, op, vals):
    sym = op.attrs["sym"].name
    v = op.operands[0]
    if lowerer.inplace_updates.get(v) == sym:
        return
    b = lowerer.buf(emit, v, vals)
    root = _root_value(v)
    if isinstance(root, OpResult) and root.op.name == "tg.read":
        snap = lowerer.alloc(v.type)  # the value of another shared variable: keep it now
        emit.op("mem.copy", [b, snap])
        b = snap
    lowerer.deferred_updates.append((sym, b))


def _root_value(v: Value) -> Value:
    while isinstance(v, OpResult) and v.op.name in ("tg.reshape", "tg.flatten"):
        v = v.op.operands[0]
    return v


@lowers("func.call")
def lower_call(lowerer, emit, op, vals):
    raise CompileError("lower-to-loops: func.call must be inlined first", op.loc)


@lowers("tg.grad")
def lower_grad(lowerer, emit, op, vals):
    raise CompileError("tg.grad must be expanded by the grad pass before lowering", op.loc)

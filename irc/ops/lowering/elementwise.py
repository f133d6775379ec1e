"""Lowering of elementwise work: one loop nest per group of fusible ops
(elementwise ops, tg.fused, tg.broadcast_to, scalar constants, tg.dim), its
body built from each op's scalar rule (OpDef.scalar) by `FuncLowerer.expr`.
A new elementwise op needs no code here. Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from irc.ir.core import Op, OpResult, append_new_op
from irc.ops.lowering.emit import Emitter, fusible, is_scalar_const
from irc.ops.lowering.linalg import emit_matmul
from irc.ops.lowering.reduce import lower_fused_reduce
from irc.ops.registry import lowers


@lowers("tg.fused", "tg.constant", "tg.broadcast_to")
def lower_fusible(lowerer, emit: Emitter, op: Op, vals) -> None:
    if op.name == "tg.fused" and op.attrs.get("reduce"):
        return lower_fused_reduce(lowerer, emit, op, vals)
    if op.name == "tg.constant" and not is_scalar_const(op):
        lowerer.const_buf(op.results[0], vals)
        return
    if len(op.results) > 1:  # a multi-result tg.fused: one loop nest, several stores
        shape = tuple(op.attrs["shape"])
        outs = [lowerer.result_buf(r) for r in op.results]

        def body(e, idx):
            vs = lowerer.eval_fused_region(e, op, idx, vals, {})
            for r, val, o in zip(op.results, vs, outs):
                e.store(e.cast(val, r.type.dtype), o, idx)

        emit.nest(shape, body)
        for r, o in zip(op.results, outs):
            vals[r] = o
        return
    v = op.results[0]
    if v in lowerer.gemm_updates:
        # W <- W - s * (a @ b): one gemm with alpha = -s, beta = 1 into W's buffer
        s, g = lowerer.gemm_updates[v]
        out = lowerer.result_buf(v)
        if s is None:  # acc + a @ b: accumulate into acc's buffer
            emit_matmul(lowerer, emit, g.op, vals, out, alpha=1.0, beta=1.0)
        elif isinstance(s, OpResult) and s.op.name == "tg.constant":
            emit_matmul(
                lowerer,
                emit,
                g.op,
                vals,
                out,
                alpha=-float(s.op.attrs["value"].reshape(())),
                beta=1.0,
            )
        else:
            sv = emit.cast(lowerer.expr(emit, s, [], vals, {}), v.type.dtype)
            emit_matmul(lowerer, emit, g.op, vals, out, alpha=-1.0, beta=1.0, scale=sv)
        vals[v] = out
        return
    out = lowerer.result_buf(v, lowerer.inplace_inputs(op, v, vals))
    eval_fusible = lowerer.eval_fusible

    def body(e, idx):
        # (lowerer.expr(e, v, idx, vals, {}, force=True), less its memo of v itself)
        if v not in vals and fusible(op):
            val = eval_fusible(e, op, v, idx, vals, {})
        else:
            val = lowerer.expr(e, v, idx, vals, {}, force=True)
        append_new_op(e.block, "mem.store", [val, out, *idx], [], {}, lowerer.loc)

    emit.nest(v.type.shape, body)
    vals[v] = out


@lowers("tg.dim")
def lower_dim(lowerer, emit, op, vals):
    v = op.results[0]
    out = lowerer.result_buf(v)
    emit.store(emit.cast(emit.dim(op.attrs["dim"]), v.type.dtype), out, [])
    vals[v] = out

"""A cost model for `irc inspect`: estimated floating-point operations and
bytes moved per op, as dim expressions (so `2*N*...` stays symbolic until
the named dims are known).

Conventions: every scalar elementwise operation counts as 1 FLOP (a tanh
costs more on any machine; the estimate is of the work the model asks for,
not of the instructions); a matrix product of [M, K] x [K, N] is 2*M*N*K; a
convolution 2 * output elements * C * KH * KW; softmax-like rows 5 per
element; reductions 1 per input element. Bytes moved: every operand read
once and every result written once, except shape-only ops (reshape,
flatten, broadcast_to of a scalar, reads of shared variables, constants,
dims), which move nothing.

Each op states its FLOPs as `OpDef.cost`, one of the rules below (the op
files import them); `op_flops` refuses an op without one. Imports only
irc.ir and irc.ops.registry (the op families import this file).
"""

from __future__ import annotations

from irc.ir import dims as D
from irc.ir.core import Op
from irc.ops.registry import lookup

# Ops that move no bytes of their own (views, reads, constants, structure).
FREE = {
    "tg.read",
    "tg.update",
    "tg.constant",
    "tg.dim",
    "tg.reshape",
    "tg.flatten",
    "func.return",
    "func.call",
    "tg.yield",
    "tg.grad",
    "tg.arange",
}


def numel(shape) -> object:
    n = 1
    for d in shape:
        n = D.dim_mul(n, d)
    return n


def _sum(values):
    total = 0
    for v in values:
        total = D.dim_add(total, v)
    return total


# -- cost rules (OpDef.cost): op -> FLOPs, an int or a dim expression ----------------------


def no_flops(op: Op):
    """Data movement, views and structure: no arithmetic."""
    return 0


def per_result_element(op: Op):
    """One FLOP per element of the result (elementwise ops)."""
    return numel(op.results[0].type.shape)


def per_input_element(op: Op):
    """One FLOP per element of the first operand (reductions, pooling, scatter)."""
    return numel(op.operands[0].type.shape)


def per_input_element_times(k: int):
    """k FLOPs per input element (softmax-like rows)."""

    def cost(op: Op):
        return D.dim_mul(k, numel(op.operands[0].type.shape))

    return cost


def matmul_flops(op: Op):
    """[M, K] x [K, N]: 2*M*N*K (batched: per output element, 2*K)."""
    k = op.operands[0].type.shape[-1]
    return D.dim_mul(2, D.dim_mul(numel(op.results[0].type.shape), k))


def conv_flops(op: Op):
    """(x, w) -> y: 2 * |y| * C*KH*KW."""
    w = op.operands[1].type
    return D.dim_mul(2, D.dim_mul(numel(op.results[0].type.shape), numel(w.shape[1:])))


def conv_input_grad_flops(op: Op):
    """(g, w): as much work as the forward convolution."""
    g, w = op.operands[0].type, op.operands[1].type
    return D.dim_mul(2, D.dim_mul(numel(g.shape), numel(w.shape[1:])))


def conv_filter_grad_flops(op: Op):
    """(x, g) -> dw [F, C, KH, KW]."""
    g = op.operands[1].type
    return D.dim_mul(2, D.dim_mul(numel(g.shape), numel(op.results[0].type.shape[1:])))


def fused_flops(op: Op):
    """One per body op per element of the iteration shape, plus one per element
    for a trailing reduction."""
    body = op.regions[0].block
    per = sum(1 for o in body.ops if o.name not in ("tg.yield", "tg.constant"))
    n = numel(op.attrs["shape"])
    total = D.dim_mul(n, per)
    return D.dim_add(total, n) if op.attrs.get("reduce") else total


def op_flops(op: Op):
    """FLOPs of one op by its OpDef's cost rule (not counting ops nested in a
    scan body: see func_cost). An op without one is an error, not 0 FLOPs."""
    d = lookup(op.name)
    if d is None or d.cost is None:
        raise KeyError(f"{op.name} has no cost rule (OpDef.cost, irc/ops/cost.py)")
    return d.cost(op)


def op_bytes(op: Op):
    if op.name in FREE or op.name == "tg.scan":
        return 0
    if op.name == "tg.broadcast_to" and op.operands[0].type.rank == 0:
        return 0
    values = list(op.operands) + list(op.results)
    return _sum(D.dim_mul(numel(v.type.shape), v.type.dtype.np.itemsize) for v in values)


def func_cost(func: Op) -> dict:
    """{'flops', 'bytes', 'kernels', 'fused'} of a function; a scan body counts
    `length` times."""
    return _block_cost(func.regions[0].block, 1)


def _block_cost(block, times) -> dict:
    cost = {"flops": 0, "bytes": 0, "kernels": 0, "fused": 0}
    for op in block.ops:
        if op.name == "tg.scan":
            inner = _block_cost(op.regions[0].block, op.attrs["length"])
            for k in ("flops", "bytes"):
                cost[k] = D.dim_add(cost[k], D.dim_mul(inner[k], times))
            cost["kernels"] += inner["kernels"]
            cost["fused"] += inner["fused"]
            continue
        f, b = op_flops(op), op_bytes(op)
        cost["flops"] = D.dim_add(cost["flops"], D.dim_mul(f, times))
        cost["bytes"] = D.dim_add(cost["bytes"], D.dim_mul(b, times))
        if op.name not in FREE:
            cost["kernels"] += 1
        if op.name == "tg.fused":
            cost["fused"] += 1
    return cost

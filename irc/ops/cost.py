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
dims), which move nothing. Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from irc.ir import dims as D
from irc.ir.core import Op
from irc.ops.registry import ELEMENTWISE, lookup

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
ROWWISE = {
    "tg.softmax": 5,
    "tg.log_softmax": 5,
    "tg.crossentropy_logits": 5,
    "tg.categorical_crossentropy": 2,
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


def op_flops(op: Op):
    """FLOPs of one op (not counting ops nested in a scan body: see func_cost)."""
    name = op.name
    if name in FREE or not op.results:
        return 0
    out = op.results[0].type
    if name == "tg.fused":
        body = op.regions[0].block
        per = sum(1 for o in body.ops if o.name not in ("tg.yield", "tg.constant"))
        n = numel(op.attrs["shape"])
        total = D.dim_mul(n, per)
        return D.dim_add(total, n) if op.attrs.get("reduce") else total
    if name == "tg.matmul":
        k = op.operands[0].type.shape[-1]
        return D.dim_mul(2, D.dim_mul(numel(out.shape), k))
    if name in ("tg.conv2d", "tg.conv1d"):  # (x, w) -> y: 2 * |y| * C*KH*KW
        return D.dim_mul(2, D.dim_mul(numel(out.shape), numel(op.operands[1].type.shape[1:])))
    if name == "tg.conv2d_input_grad":  # (g, w): as much work as the forward conv
        return D.dim_mul(
            2, D.dim_mul(numel(op.operands[0].type.shape), numel(op.operands[1].type.shape[1:]))
        )
    if name == "tg.conv2d_filter_grad":  # (x, g) -> dw [F, C, KH, KW]
        g = op.operands[1].type
        return D.dim_mul(2, D.dim_mul(numel(g.shape), numel(out.shape[1:])))
    if name in ROWWISE:
        return D.dim_mul(ROWWISE[name], numel(op.operands[0].type.shape))
    d = lookup(name)
    if d is not None and ELEMENTWISE in d.traits:
        return numel(out.shape)
    if name in (
        "tg.sum",
        "tg.mean",
        "tg.max",
        "tg.min",
        "tg.argmax",
        "tg.argmin",
        "tg.max_pool2d",
        "tg.max_pool2d_grad",
        "tg.scatter_add",
    ):
        return numel(op.operands[0].type.shape)
    return 0


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

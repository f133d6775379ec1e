"""tg.fused: a group of elementwise ops (optionally ending in a reduction)
that the backends run as one loop nest, with no temporaries in between.

    %r = tg.fused %x, %b {shape = ["N", 10], reduce = none} : f32[N, 10] ({
    ^bb0(%xs: f32, %bs: f32):              // one element of each input
      %s = tg.add %xs, %bs : f32
      %t = tg.tanh %s : f32
      tg.yield %t
    })

Operands are the group's inputs, each broadcast (NumPy rules) to the
iteration shape `shape`. The body works on rank-0 scalars of each input's
dtype and yields one scalar per result. Without `reduce`, result i has type
dtype_i[shape]. With `reduce` ("sum", "max", "min" or "mean"), result 0 is
the first yielded value reduced over `axis` (a tuple, or None for all axes)
with `keepdims`, as tg.sum / tg.max / ... would, and results 1.. are the
other yielded values at every element, dtype_i[shape], as without `reduce`
(values of the group that other ops read, stored by the reduction's loop:

    %s, %t = tg.fused %x {shape = ["N", 8], reduce = "sum", axis = [1], keepdims = true}
             : f32[N, 1], f32[N, 8] ({ ... %y = tg.tanh %xs : f32  tg.yield %y, %y })

is tanh(x) and its row sums in one loop nest).
Produced by the fuse-elementwise pass; imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from irc.ir.types import TensorType, TypeError_, broadcast_shapes
from irc.ops.common import norm_axes
from irc.ops.cost import fused_flops
from irc.ops.registry import PURE, OpDef, defop

REDUCTIONS = ("sum", "max", "min", "mean")

# The most scalar ops one loop body gets (a cost-model bound, decided once by
# fuse-elementwise and kept by lower-to-loops when it evaluates single-use
# producers inside their user's loop). Past it a group is split and the
# boundary value goes through memory: one store and one load per element,
# negligible next to 120 ops of work, while a body of thousands of ops (a
# long function of elementwise statements) makes LLVM's optimisation and
# code generation super-linear (a 1,500-op body: ~50 s; split: seconds).
# 120 = 2^3*3*5: a long function that repeats a pattern of 1-6, 8, 10, 12 or
# 15 ops is cut at the same phase of the pattern every time, so its groups
# are alike and the cpu backend compiles one kernel for all of them (kernel
# dedupe). At 256 (256 mod 3 = 1) a 3-op pattern gave 3 phases, 3 kernels;
# smaller kernels also cost LLVM less than their share (super-linear).
# 20,000 statements `tanh(y)*1.01`, `y+0.5` in turn: 7.7 s -> 4.7 s of CPU
# to load on cpu. The seed's workloads fuse at most 8 ops into one group.
MAX_FUSED_OPS = 120


def body_size(op) -> int:
    """The scalar ops one element of `op` costs in a loop body: a tg.fused op's
    computing ops (constants and the yield are free), 1 for another op."""
    if op.name != "tg.fused":
        return 0 if op.name in ("tg.constant", "tg.dim", "tg.broadcast_to") else 1
    return sum(
        1 for o in op.regions[0].block.ops if o.name not in ("tg.constant", "tg.dim", "tg.yield")
    )


def result_shape(shape: tuple, attrs: dict) -> tuple:
    if attrs.get("reduce") is None:
        return tuple(shape)
    axes = norm_axes(attrs.get("axis"), len(shape))
    keep = bool(attrs.get("keepdims", False))
    return tuple(1 if i in axes else d for i, d in enumerate(shape) if keep or i not in axes)


def _verify_fused(op):
    shape = tuple(op.attrs.get("shape", ()))
    if len(op.regions) != 1 or len(op.regions[0].blocks) != 1:
        raise TypeError_("tg.fused needs one region with one block")
    body = op.regions[0].block
    if len(body.args) != len(op.operands):
        raise TypeError_(
            f"tg.fused body has {len(body.args)} arguments for {len(op.operands)} operands"
        )
    for v, a in zip(op.operands, body.args):
        if a.type != TensorType(v.type.dtype, ()):
            raise TypeError_(f"tg.fused body argument {a.type} for operand {v.type}")
        if broadcast_shapes(v.type.shape, shape) != shape:
            raise TypeError_(f"tg.fused operand {v.type} does not broadcast to {list(shape)}")
    term = body.terminator
    if term is None or term.name != "tg.yield" or len(term.operands) != len(op.results):
        raise TypeError_("tg.fused body must end with tg.yield of one scalar per result")
    reduce = op.attrs.get("reduce")
    if reduce is not None and reduce not in REDUCTIONS:
        raise TypeError_("tg.fused: reduce must be sum, max, min or mean")
    out_shape = result_shape(shape, op.attrs)
    for k, (r, y) in enumerate(zip(op.results, term.operands)):
        if y.type.rank != 0:
            raise TypeError_("tg.fused body must yield scalars")
        reduced = reduce is not None and k == 0
        if not reduced and r.type.dtype != y.type.dtype:
            raise TypeError_(f"tg.fused result {r.type} for a yielded {y.type}")
        want = out_shape if reduced else shape
        if r.type.shape != want:
            raise TypeError_(f"tg.fused result {r.type} does not have the shape {list(want)}")
    for inner in body.ops:
        for res in inner.results:
            if res.type.rank != 0:
                raise TypeError_(f"tg.fused body op {inner.name} must work on scalars")


FUSED = defop(
    OpDef(
        "tg.fused",
        cost=fused_flops,
        traits=frozenset({PURE}),
        verify=_verify_fused,
        dim_attrs=("shape",),
        doc="a fused group of elementwise ops, optionally ending in a reduction",
    )
)

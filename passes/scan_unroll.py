"""scan-unroll{max-steps=N, factor=K}: unroll symbolic loops.

A scan whose length is a static integer <= max-steps is replaced by copies
of its body, one per step, so the ordinary passes (CSE, canonicalize,
fusion) optimise across steps:

    %c, %ys = tg.scan %xs, %h0 {length = 2, ...} ({      %x0 = tg.index %xs {items = [["int", 0]]}
    ^bb0(%x: f32[3], %h: f32[3]):                         %h1 = tg.tanh (%h0 + %x0)
      %n = tg.tanh (%h + %x)                     ->       %x1 = tg.index %xs {items = [["int", 1]]}
      tg.yield %n, %n                                     %h2 = tg.tanh (%h1 + %x1)
    })                                                    %ys = tg.stack %h1, %h2 {axis = 0}

Otherwise, with factor = K > 1, a forward scan becomes a scan over
length // K chunks whose body holds K copies of the original body (the
sequences reshaped to [length // K, K, ...]), followed by a scan over the
remaining length % K steps; their outputs are concatenated. Scans that stay
are left to the backends as loops with carried buffers.
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from dataclasses import dataclass

from irc.ir import dims as D
from irc.ir.core import Block, Module, Op, Region
from irc.ops.registry import OpBuilder
from irc.passes.pass_manager import Pass, ops_named, register


@register
@dataclass
class ScanUnroll(Pass):
    name = "scan-unroll"
    summary = "fully unroll short static scans; unroll longer ones by a factor"
    reports_changes = True
    max_steps: int = 16
    factor: int = 1

    def run(self, module: Module) -> bool:
        changed = False
        # Innermost scans first, so an unrolled outer body holds unrolled inner loops.
        scans = ops_named(module, ("tg.scan",))
        for op in reversed(scans):
            length = op.attrs["length"]
            if isinstance(length, int) and length <= self.max_steps:
                full_unroll(op)
                changed = True
            elif (
                self.factor > 1
                and not op.attrs.get("reverse", False)
                and _chunks(length, self.factor) != 0
            ):
                partial_unroll(op, self.factor)
                changed = True
        return changed


def _chunks(length, k):
    return D.dim_floordiv(length, k)


def _inline_body(b: OpBuilder, body: Block, args: list) -> list:
    """Clone body's ops at b with its arguments bound to `args`; returns the yielded values."""
    mapping = dict(zip(body.args, args))
    for op in body.ops:
        if op.name == "tg.yield":
            return [mapping.get(v, v) for v in op.operands]
        b.insert(op.clone(mapping))
    raise ValueError("scan body without tg.yield")


def full_unroll(op: Op) -> None:
    ns, nc = op.attrs["n_seqs"], op.attrs["n_carries"]
    length = op.attrs["length"]
    seqs, carries = list(op.operands[:ns]), list(op.operands[ns:])
    body = op.regions[0].block
    b = OpBuilder(loc=op.loc)
    b.set_insertion_before(op)
    steps = range(length - 1, -1, -1) if op.attrs.get("reverse", False) else range(length)
    outs: dict = {}
    for t in steps:
        xs = [b.index(s, items=(("int", t),)) for s in seqs]
        res = _inline_body(b, body, xs + carries)
        carries = res[:nc]
        outs[t] = res[nc:]
    stacked = []
    for i, r in enumerate(op.results[nc:]):
        if length == 0:
            zero = b.const(0, r.type.dtype)
            stacked.append(b.broadcast_to(zero, shape=r.type.shape))
        else:
            stacked.append(b.stack(*[outs[t][i] for t in range(length)], axis=0))
    for r, v in zip(op.results, carries + stacked):
        r.replace_all_uses_with(v)
    op.erase()


def partial_unroll(op: Op, k: int) -> None:
    ns, nc = op.attrs["n_seqs"], op.attrs["n_carries"]
    length = op.attrs["length"]
    seqs, inits = list(op.operands[:ns]), list(op.operands[ns:])
    body = op.regions[0].block
    b = OpBuilder(loc=op.loc)
    b.set_insertion_before(op)
    chunks = D.dim_floordiv(length, k)
    main = D.dim_mul(chunks, k)
    rest = D.dim_sub(length, main)
    zero = b.const(0, _i32())

    # Main loop over chunks of k steps.
    chunked = []
    for s in seqs:
        head = b.dynamic_slice(s, zero, axes=(0,), sizes=(main,))
        chunked.append(b.reshape(head, shape=(chunks, k) + tuple(s.type.shape[1:])))
    arg_types = [c.type.with_shape(c.type.shape[1:]) for c in chunked] + [v.type for v in inits]
    block = Block(arg_types)
    inner = OpBuilder(loc=op.loc)
    inner.set_insertion_end(block)
    xs_chunk, carries = block.args[:ns], list(block.args[ns:])
    step_outs = []
    for j in range(k):
        xs = [inner.index(c, items=(("int", j),)) for c in xs_chunk]
        res = _inline_body(inner, body, xs + carries)
        carries = res[:nc]
        step_outs.append(res[nc:])
    outs = [inner.stack(*[so[i] for so in step_outs], axis=0) for i in range(len(op.results) - nc)]
    inner.create("tg.yield", carries + outs, [])
    res_types = [v.type for v in inits] + [
        o.type.with_shape((chunks,) + o.type.shape) for o in outs
    ]
    attrs = dict(op.attrs, length=chunks)
    main_op = b.create("tg.scan", chunked + inits, res_types, attrs, [Region([block])])
    finals = list(main_op.results[:nc])
    main_outs = [
        b.reshape(r, shape=(main,) + tuple(r.type.shape[2:])) for r in main_op.results[nc:]
    ]

    if rest == 0:
        for r, v in zip(op.results, finals + main_outs):
            r.replace_all_uses_with(v)
        op.erase()
        return

    # Remainder: the original body over the last length % k steps.
    start = b.dim(dim=main, dtype="i32")
    tails = [b.dynamic_slice(s, start, axes=(0,), sizes=(rest,)) for s in seqs]
    tail_types = [v.type for v in inits] + [
        r.type.with_shape((rest,) + r.type.shape[1:]) for r in op.results[nc:]
    ]
    tail_op = op.clone()
    tail_op.attrs["length"] = rest
    for i, v in enumerate(tails + finals):
        tail_op.set_operand(i, v)
    for r, t in zip(tail_op.results, tail_types):
        r.type = t
    b.insert(tail_op)
    outs = [b.concat(m, t, axis=0) for m, t in zip(main_outs, tail_op.results[nc:])]
    for r, v in zip(op.results, list(tail_op.results[:nc]) + outs):
        r.replace_all_uses_with(v)
    op.erase()


def _i32():
    from irc.ir.types import I32

    return I32

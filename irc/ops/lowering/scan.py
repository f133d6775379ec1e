"""Lowering of tg.scan: a loop.for whose carries live in buffers (the final
carries are the carry buffers) and whose per-step outputs are written into
the stacked results. Accumulating carries (the gradients of BPTT) are computed
in place, acc + a @ b as one gemm. The scan-hoist pass has already moved what
does not depend on the carries out of the loop. Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from collections import ChainMap

from irc.ir.core import OpResult
from irc.ir.dims import dim_sub
from irc.ops.lowering.emit import is_elementwise
from irc.ops.lowering.linalg import match_accumulate
from irc.ops.registry import lowers


@lowers("tg.scan")
def lower_scan(lowerer, emit, op, vals):
    ns, nc = op.attrs["n_seqs"], op.attrs["n_carries"]
    reverse = bool(op.attrs.get("reverse", False))
    seqs = [lowerer.buf(emit, s, vals) for s in op.operands[:ns]]
    inits = [lowerer.buf(emit, c, vals) for c in op.operands[ns:]]
    carries = []
    for r, ib in zip(op.results[:nc], inits):
        cb = lowerer.result_buf(r)
        if cb is ib or cb in lowerer.entry.args[: len(lowerer.func.regions[0].block.args)]:
            cb = lowerer.alloc(r.type)
        emit.op("mem.copy", [ib, cb])
        carries.append(cb)
        vals[r] = cb
    stacked = [lowerer.result_buf(r) for r in op.results[nc:]]
    for r, sb in zip(op.results[nc:], stacked):
        vals[r] = sb
    body = op.regions[0].block
    length = op.attrs["length"]
    L = emit.dim(length)
    yield_op = body.terminator

    def step(e, i):
        t = e.scalar("sub", e.dim(dim_sub(length, 1)), i) if reverse else i
        inner = ChainMap({}, vals)
        for a, sb in zip(body.args[:ns], seqs):
            inner[a] = e.val("mem.subview", [sb, t], a.type)
        for a, cb in zip(body.args[ns:], carries):
            inner[a] = cb
        # Per-step outputs computed straight into their slot of the stacked result.
        saved = {}
        nexts = set(yield_op.operands[:nc])
        for y, sb in zip(yield_op.operands[nc:], stacked):
            if (
                isinstance(y, OpResult)
                and y.op.parent is body
                and y not in lowerer.dest
                and y not in nexts
                and y.op.name not in ("tg.reshape", "tg.flatten", "tg.read")
                and y not in saved
            ):
                saved[y] = e.val(
                    "mem.subview", [sb, t], y.type
                )  # (a value yielded twice: the first slot)
        lowerer.dest.update(saved)
        # Accumulating carries (acc = acc + ..., the gradients of scan BPTT) are
        # computed in place in their carry buffer; acc + a @ b is one gemm.
        for k, (arg, nxt) in enumerate(zip(body.args[ns:], yield_op.operands[:nc])):
            if not (
                isinstance(nxt, OpResult) and nxt.op.parent is body and nxt not in lowerer.dest
            ):
                continue
            if len(arg.uses) != 1 or arg.uses[0][0] is not nxt.op or nxt.type != arg.type:
                continue
            if list(yield_op.operands).count(nxt) != 1:
                continue
            g = match_accumulate(nxt, arg)
            if g is not None:
                lowerer.dest[nxt] = carries[k]
                lowerer.gemm_updates[nxt] = (None, g)
                lowerer.deferred_matmuls.add(g)
            elif is_elementwise(nxt.op) or (
                nxt.op.name == "tg.fused"
                and not nxt.op.attrs.get("reduce")
                and len(nxt.op.results) == 1
            ):
                lowerer.dest[nxt] = carries[k]
        ys = lowerer.lower_block(e, body, inner)
        for y in saved:
            lowerer.dest.pop(y, None)
        ybufs = [lowerer.buf(e, y, inner) for y in ys]
        written = set()
        for yb, sb, y in zip(ybufs[nc:], stacked, ys[nc:]):
            if y in saved and saved[y] is yb and y not in written:
                written.add(y)  # computed in place into this slot
                continue
            e.op("mem.copy", [yb, e.val("mem.subview", [sb, t], y.type)])
        # Next carries: values that are themselves carry buffers are copied via temps.
        nxt = ybufs[:nc]
        staged = []
        for k, nb in enumerate(nxt):
            if nb is carries[k]:
                staged.append(None)
            elif nb in carries:
                tmp = lowerer.alloc(nb.type)
                e.op("mem.copy", [nb, tmp])
                staged.append(tmp)
            else:
                staged.append(nb)
        for k, nb in enumerate(staged):
            if nb is not None:
                e.op("mem.copy", [nb, carries[k]])

    emit.loop(emit.dim(0), L, step)

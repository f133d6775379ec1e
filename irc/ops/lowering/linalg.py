"""Lowering of tg.matmul: mem.gemm (BLAS) on f32/f64, a transposed operand
as a trans flag, loops otherwise; and the patterns that let an update or an
accumulation be one gemm into its destination (W - s * (a @ b), acc + a @ b).
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from irc.ir.core import Op, OpResult, Value
from irc.ir.dims import dim_mul
from irc.ops.lowering.emit import product
from irc.ops.registry import lowers


def gemm_ok(op: Op) -> bool:
    return op.results[0].type.dtype.is_float and all(
        x.type.dtype == op.results[0].type.dtype for x in op.operands
    )


def match_axpy(r: Op, reads: list):
    """(s, g) when r computes W - s * g with W a read of the updated variable, s a
    scalar and g a 2-d float matmul used only here (so the update can be a gemm)."""
    v = r.results[0]
    if r.name == "tg.fused":
        block = r.regions[0].block
        arg_of = dict(zip(block.args, r.operands))
        body = [o for o in block.ops if o.name != "tg.yield"]
        y = block.terminator.operands[0] if block.terminator.operands else None
        if len(body) != 2 or y is None or not isinstance(y, OpResult):
            return None
        sub = y.op
        mul = body[0] if body[1] is sub else None
        if (
            sub.name != "tg.sub"
            or mul is None
            or mul.name != "tg.mul"
            or sub.operands[1] is not mul.results[0]
        ):
            return None
        w = arg_of.get(sub.operands[0])
        pair = [arg_of.get(x) for x in mul.operands]
    elif r.name == "tg.sub":
        m = r.operands[1]
        if not (isinstance(m, OpResult) and m.op.name == "tg.mul" and len(m.uses) == 1):
            return None
        w = r.operands[0]
        pair = list(m.op.operands)
    else:
        return None
    if w is None or w not in reads or None in pair:
        return None
    for s, g in (pair, pair[::-1]):
        if s.type.rank != 0 or not isinstance(g, OpResult) or g.op.name != "tg.matmul":
            continue
        if len(g.uses) != 1 or g.type != v.type or v.type.rank != 2 or s.type.dtype != v.type.dtype:
            continue
        a, b = g.op.operands
        if a.type.rank == 2 and b.type.rank == 2 and gemm_ok(g.op):
            return s, g
    return None


def match_accumulate(v: Value, acc: Value):
    """The matmul g when v = acc + g (tg.add or a fused add), g a 2-d float matmul
    used only here: v can be one gemm with beta = 1 into acc's buffer."""
    if not isinstance(v, OpResult):
        return None
    r = v.op
    if r.name == "tg.fused" and not r.attrs.get("reduce") and len(r.results) == 1:
        block = r.regions[0].block
        arg_of = dict(zip(block.args, r.operands))
        body = [o for o in block.ops if o.name != "tg.yield"]
        y = block.terminator.operands
        if len(body) != 1 or body[0].name != "tg.add" or list(y) != [body[0].results[0]]:
            return None
        pair = [arg_of.get(x) for x in body[0].operands]
    elif r.name == "tg.add":
        pair = list(r.operands)
    else:
        return None
    for a, g in (pair, pair[::-1]):
        if (
            a is acc
            and isinstance(g, OpResult)
            and g.op.name == "tg.matmul"
            and len(g.uses) == 1
            and g.type == v.type
            and v.type.rank == 2
            and gemm_ok(g.op)
            and all(x.type.rank == 2 for x in g.op.operands)
        ):
            return g
    return None


@lowers("tg.matmul")
def lower_matmul(lowerer, emit, op, vals):
    v = op.results[0]
    if v in lowerer.deferred_matmuls:
        return  # computed by the update it feeds (see plan_updates)
    out = lowerer.result_buf(v)
    vals[v] = out
    emit_matmul(lowerer, emit, op, vals, out)


def emit_matmul(lowerer, emit, op, vals, out, alpha=1.0, beta=0.0, scale=None):
    """out = alpha * scale * (a @ b) + beta * out for the tg.matmul op."""
    a, b = op.operands
    v = op.results[0]
    ash = a.type.shape if a.type.rank > 1 else (1,) + a.type.shape
    bsh = b.type.shape if b.type.rank > 1 else b.type.shape + (1,)
    M, K, N = ash[-2], ash[-1], bsh[-1]
    if not gemm_ok(op):
        return _matmul_loops(lowerer, emit, op, vals, out)
    trans_a = trans_b = False
    ab = vals.get(a)
    if isinstance(ab, tuple):
        ab, trans_a = lowerer.buf(emit, ab[1], vals), True
    else:
        ab = lowerer.buf(emit, a, vals)
    bb = vals.get(b)
    if isinstance(bb, tuple):
        bb, trans_b = lowerer.buf(emit, bb[1], vals), True
    else:
        bb = lowerer.buf(emit, b, vals)
    abatch, bbatch = ash[:-2], bsh[:-2]
    obatch = v.type.shape[: len(v.type.shape) - (a.type.rank > 1) - (b.type.rank > 1)]
    lda = M if trans_a else K
    ldb = K if trans_b else N
    if not bbatch:
        # Fold a's batch axes into M: [..., M, K] @ [K, N] is one product.
        Mt = product(list(abatch) + [M])
        emit.gemm(
            ab,
            bb,
            out,
            Mt,
            N,
            K,
            lda,
            ldb,
            N,
            trans_a=trans_a,
            trans_b=trans_b,
            alpha=alpha,
            beta=beta,
            scale=scale,
        )
        return
    assert scale is None and beta == 0.0
    # Broadcast batch: one gemm per output batch element.
    rank = len(obatch)

    def body(e, idx):
        def off(batch, per):
            o = e.dim(0)
            stride = per
            for k in range(len(batch) - 1, -1, -1):
                dk = batch[k]
                i = idx[k + rank - len(batch)]
                if dk != 1:
                    o = e.add_i(o, e.mul_i(i, e.dim(stride)))
                stride = dim_mul(stride, dk)
            return o

        oa = off(abatch, dim_mul(M, K))
        ob = off(bbatch, dim_mul(K, N))
        oc = off(obatch, dim_mul(M, N))
        e.gemm(
            ab,
            bb,
            out,
            M,
            N,
            K,
            lda,
            ldb,
            N,
            trans_a=trans_a,
            trans_b=trans_b,
            offsets=(oa, ob, oc),
        )

    emit.nest(obatch, body, parallel=False)


def _matmul_loops(lowerer, emit, op, vals, out):
    a, b = op.operands
    v = op.results[0]
    rt = v.type.dtype
    ab, bb = lowerer.buf(emit, a, vals), lowerer.buf(emit, b, vals)
    ar, br = a.type.rank, b.type.rank
    K = a.type.shape[-1]
    orank = v.type.rank

    def body(e, idx):
        def step(e2, k, acc):
            if ar == 1:
                ai = [k]
            else:
                i = idx[orank - (2 if br > 1 else 1)]
                batch = idx[: orank - (2 if br > 1 else 1)]
                ai = (
                    lowerer.index_map(e2, a.type.shape[:-2], batch, batch) + [i, k]
                    if ar > 2
                    else [i, k]
                )
            if br == 1:
                bi = [k]
            else:
                j = idx[orank - 1]
                batch = idx[: orank - 2] if ar > 1 else idx[: orank - 1]
                bi = (
                    lowerer.index_map(e2, b.type.shape[:-2], batch, batch) + [k, j]
                    if br > 2
                    else [k, j]
                )
            p = e2.scalar("mul", e2.cast(e2.load(ab, ai), rt), e2.cast(e2.load(bb, bi), rt))
            return [e2.scalar("add", acc, p)]

        (acc,) = e.loop(e.dim(0), e.dim(K), step, inits=[e.const(0, rt)])
        e.store(acc, out, idx)

    emit.nest(v.type.shape, body)

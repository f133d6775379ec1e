"""grad: reverse-mode differentiation of every tg.grad op, in IR.

    %loss = tg.sum %y : f32                            %loss = tg.sum %y : f32
    %gW = tg.grad %loss, %W : f32[3, 4]        ->      %0 = tg.constant {value = dense<f32, 1.0>} : f32
                                                       %1 = tg.broadcast_to %0 {shape = [N, 4]} : f32[N, 4]
                                                       ... (the vjp of each op, in reverse order)

For each tg.grad(loss, w1, w2, ...): the ops on a path from some w to the
loss are visited in reverse order; each op's registry `vjp` rule turns the
cotangent of its results into cotangents of its operands, which accumulate
(tg.add) where a value fans out. Broadcasting is undone by summing over the
broadcast axes. Integer and boolean values carry no gradient. The generated
ops are ordinary tg ops placed just before the tg.grad op and carry its
location, so a gradient of a gradient works (the second tg.grad sees plain
ops) and errors point at the `grad(...)` call.

A `w` the loss does not depend on is an error, unless the tg.grad op has
disconnected = "zero" (Theano's disconnected_inputs), which gives zeros.
Ops with regions (tg.scan) are differentiated by their own vjp, which sees
the values their body reads from outside as extra inputs.

Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from dataclasses import dataclass


from irc.ir.core import Block, Module, Op, Region, Value
from irc.ir.errors import CompileError
from irc.ir.types import TypeError_
from irc.ops.registry import NO_GRAD, PURE, OpBuilder, lookup
from irc.passes.pass_manager import Pass, register


# Gradient code of a gradient grows geometrically (about 2x per level for
# tanh); past this many ops in one function, a clear error instead of minutes.
MAX_FUNCTION_OPS = 200_000


@register
@dataclass
class Grad(Pass):
    name = "grad"
    summary = "expand tg.grad into reverse-mode gradient code"
    reports_changes = True

    def run(self, module: Module) -> bool:
        changed = False
        while True:
            op = next((o for o in module.walk() if o.name == "tg.grad"), None)
            if op is None:
                return changed
            func = op
            while func is not None and func.name != "func.func":
                func = func.parent_op()
            loc = op.loc
            expand_grad(op)
            changed = True
            if func is not None:
                n = sum(1 for _ in func.walk())
                if n > MAX_FUNCTION_OPS:
                    raise CompileError(
                        f"grad: the function's code has grown to {n} ops, over the limit of "
                        f"{MAX_FUNCTION_OPS} (each nested grad multiplies the code; "
                        "nesting 12 deep gives a few thousand)",
                        loc,
                    )
            if func is not None and _has_grad(func):
                # Another grad will differentiate this code (grad of a grad):
                # merge equal subexpressions and fold constants first, or each
                # level differentiates the previous level's duplicates again and
                # the code grows by a large factor per level.
                simplify(func)


def _has_grad(func: Op) -> bool:
    return any(o.name == "tg.grad" for o in func.walk())


def simplify(func: Op) -> None:
    """Canonicalize and CSE one function (what the pipeline does after grad)."""
    from collections import ChainMap

    from irc.ir.rewriter import Rewriter
    from irc.passes.canonicalize import Canonicalize
    from irc.passes.cse import _cse_block

    canon = Canonicalize()
    for _ in range(canon.max_iterations):
        if not canon._sweep(func):
            break
    for region in func.regions:
        for block in region.blocks:
            _cse_block(block, ChainMap(), Rewriter())


def free_values(op: Op) -> list:
    """Values used inside op's regions but defined outside op, in first-use order."""
    inside = set()
    out, seen = [], set()
    for inner in op.walk():
        if inner is op:
            continue
        for r in inner.regions:
            for b in r.blocks:
                inside.update(b.args)
        inside.update(inner.results)
    for r in op.regions:
        for b in r.blocks:
            inside.update(b.args)
    for inner in op.walk():
        if inner is op:
            continue
        for v in inner.operands:
            if v not in inside and v not in seen:
                seen.add(v)
                out.append(v)
    return out


def op_inputs(op: Op) -> list:
    """Operands plus, for ops with regions, the outer values their bodies read."""
    if not op.regions:
        return list(op.operands)
    return list(op.operands) + [v for v in free_values(op) if v not in op.operands]


def differentiable(v: Value) -> bool:
    return v.type.dtype.is_float


def merge_reads(func_block: Block) -> None:
    """Make every tg.read of one shared variable in a function the same
    value (they are: reads see the value from before the call), so a
    gradient with respect to `W` covers every use of W, including the
    copies that inlining brought in."""
    first: dict = {}
    for op in list(func_block.ops):
        if op.name != "tg.read":
            continue
        sym = op.attrs["sym"].name
        if sym in first:
            op.results[0].replace_all_uses_with(first[sym])
            op.erase()
        else:
            first[sym] = op.results[0]


def expand_grad(gop: Op) -> None:
    func = gop
    while func is not None and func.name != "func.func":
        func = func.parent_op()
    if func is not None:
        merge_reads(func.regions[0].block)
    block: Block = gop.parent
    loss, wrt = gop.operands[0], list(gop.operands[1:])
    b = OpBuilder(loc=gop.loc)
    b.set_insertion_before(gop)
    grads = backprop(b, block, gop, loss, wrt)
    results = []
    for w, g, r in zip(wrt, grads, gop.results):
        if g is None:
            if gop.attrs.get("disconnected", "raise") == "zero":
                g = zeros_like(b, w)
            else:
                name = w.name_hint or "this value"
                raise CompileError(
                    f"grad: the loss does not depend on '{name}'",
                    gop.loc,
                    'pass disconnected="zero" to get zeros instead',
                )
        results.append(g)
    for r, g in zip(gop.results, results):
        if g.name_hint is None:
            g.name_hint = r.name_hint
        r.replace_all_uses_with(g)
    gop.erase()


def backprop(
    b: OpBuilder, block: Block, stop: Op, loss: Value, wrt: list, seed: Value = None
) -> list:
    """Cotangents of `wrt` (None where disconnected) for the scalar `loss`,
    considering the ops of `block` before `stop` (None: all of them)."""
    if seed is None:
        seed = b.const(1.0, loss.type.dtype)
    return backprop_seeds(b, block, stop, [(loss, seed)], wrt)


def backprop_seeds(b: OpBuilder, block: Block, stop, seeds: list, wrt: list) -> list:
    """Reverse mode over the ops of `block` before `stop`: given cotangents
    for some values (`seeds`: (value, cotangent) pairs), the cotangents of
    `wrt` (None where no path leads from a w to a seeded value)."""
    ops = []
    for op in block.ops:
        if op is stop:
            break
        ops.append(op)
    # Forward: values that depend on some w.
    depends = set(wrt)
    for op in ops:
        if any(v in depends for v in op_inputs(op)):
            depends.update(op.results)
    ct: dict = {}
    for v, g in seeds:
        if g is not None and v in depends:
            ct[v] = g if v not in ct else b.add(ct[v], g)
    if not ct:
        return [None] * len(wrt)
    # Backward: values the seeds depend on.
    needed = set(ct)
    for op in reversed(ops):
        if any(r in needed for r in op.results):
            needed.update(op_inputs(op))
    for op in reversed(ops):
        if not any(r in ct for r in op.results):
            continue
        ins = op_inputs(op)
        if not any(v in depends and v in needed and differentiable(v) for v in ins):
            continue
        gs = [ct.get(r) for r in op.results]
        if op.name in REGION_VJPS:
            in_grads = REGION_VJPS[op.name](b, op, gs)
        else:
            d = lookup(op.name)
            if d is None or NO_GRAD in d.traits:
                continue
            if d.vjp is None:
                raise CompileError(f"grad: no gradient rule for '{op.name}'", op.loc)
            g = gs[0] if len(op.results) == 1 else gs
            try:
                in_grads = d.vjp(b, op, g)
            except TypeError_ as e:
                raise CompileError(f"grad of '{op.name}': {e.message}", op.loc) from None
        for v, gv in zip(ins, in_grads):
            if gv is None or not differentiable(v) or v not in depends:
                continue
            gv = sum_to(b, gv, v)
            if gv.type.dtype != v.type.dtype:
                gv = b.cast(gv, dtype=v.type.dtype.name)
            ct[v] = gv if v not in ct else b.add(ct[v], gv)
    return [ct.get(w) for w in wrt]


def scan_vjp(b: OpBuilder, op: Op, gs: list) -> list:
    """Backpropagation through time for tg.scan.

    The forward scan is rebuilt to also stack each step's incoming carries
    and every value its body computes: that is what the backward pass keeps
    (memory: one [length, ...] tensor per carry and per body value), and the
    backward scan recomputes nothing. The backward scan runs in reverse over
    (saved carries, sequences, output cotangents, saved body values) and
    carries the carry cotangents and the accumulated cotangents of the outer
    values the body reads. With truncate = k only the last k steps
    contribute (Theano's truncate_gradient)."""
    ns, nc = op.attrs["n_seqs"], op.attrs["n_carries"]
    length, truncate = op.attrs["length"], op.attrs.get("truncate")
    seqs = list(op.operands[:ns])
    free = [v for v in free_values(op) if v not in op.operands]
    body = op.regions[0].block
    out_results = op.results[nc:]

    # 1. A forward scan that also stacks, per step, the incoming carries and
    #    every value the body computes (so the backward scan recomputes nothing).
    keep = [r for fop in body.ops if fop.name not in ("tg.yield", "tg.constant") for r in fop.results]
    saved, saved_vals = [], []
    if nc or keep:
        fmap: dict = {}
        fwd = op.clone(fmap)
        fy = fwd.regions[0].block.terminator
        for v in list(fwd.regions[0].block.args[ns:]) + [fmap[r] for r in keep]:
            fy.add_operand(v)
            fwd.results.append(_new_result(fwd, v.type.with_shape((length,) + v.type.shape)))
        # Insert at op's position; the builder may point into the same block
        # (after op), and its position must move past the new op too.
        at = op.parent.index_of(op)
        op.parent.insert(at, fwd)
        if b.block is op.parent and b.pos is not None and b.pos > at:
            b.pos += 1
        for r, nr in zip(op.results, fwd.results):
            r.replace_all_uses_with(nr)
        n = len(op.results)
        saved, saved_vals = fwd.results[n : n + nc], fwd.results[n + nc :]

    # 2. Backward scan.
    zero_outs = [g if g is not None else zeros_like(b, r) for r, g in zip(out_results, gs[nc:])]
    g_final = [g if g is not None else zeros_like(b, r) for r, g in zip(op.results[:nc], gs[:nc])]
    dfree = [v for v in free if differentiable(v)]
    g_free0 = [zeros_like(b, v) for v in dfree]
    bseqs = list(saved) + seqs + zero_outs + list(saved_vals)
    if truncate is not None:
        bseqs.append(b.arange(n=length, dtype="i32"))
    bcarries = g_final + g_free0
    arg_types = [v.type.with_shape(v.type.shape[1:]) for v in bseqs] + [v.type for v in bcarries]
    bblock = Block(arg_types)
    it = iter(bblock.args)
    c_t = [next(it) for _ in saved]
    x_t = [next(it) for _ in seqs]
    gy_t = [next(it) for _ in zero_outs]
    v_t = [next(it) for _ in saved_vals]
    step = next(it) if truncate is not None else None
    gc = [next(it) for _ in g_final]
    gfree = [next(it) for _ in dfree]

    inner = OpBuilder(loc=b.loc)
    inner.set_insertion_end(bblock)
    mapping = dict(zip(body.args, x_t + c_t))
    for fop in body.ops:
        if fop.name == "tg.yield":
            yielded = [mapping.get(v, v) for v in fop.operands]
            break
        bblock.append(fop.clone(mapping))
    nexts, outs = yielded[:nc], yielded[nc:]
    seed_c, seed_y = list(gc), list(gy_t)
    if truncate is not None:
        start = inner.sub(
            inner.op("tg.dim", dim=length, dtype="i32"), inner.const(truncate, step.type.dtype)
        )
        active = inner.ge(step, start)
        seed_c = [inner.where(active, g, inner.const(0.0, g.type.dtype)) for g in seed_c]
        seed_y = [inner.where(active, g, inner.const(0.0, g.type.dtype)) for g in seed_y]
    wrt = c_t + x_t + dfree
    grads = backprop_seeds(
        inner, bblock, None, list(zip(nexts, seed_c)) + list(zip(outs, seed_y)), wrt
    )
    # The body's values come from the forward pass: the clones made above only
    # served as the structure the vjp rules walk, and die here.
    stored = {mapping[r]: a for r, a in zip(keep, v_t)}
    for clone, a in stored.items():
        clone.replace_all_uses_with(a)
    grads = [stored.get(g, g) for g in grads]
    g_c = [g if g is not None else zeros_like(inner, v) for g, v in zip(grads[:nc], c_t)]
    g_x = [g if g is not None else zeros_like(inner, v) for g, v in zip(grads[nc : nc + ns], x_t)]
    g_o = [acc if g is None else inner.add(acc, g) for acc, g in zip(gfree, grads[nc + ns :])]
    inner.create("tg.yield", g_c + g_o + g_x, [])
    _erase_dead(bblock)
    res_types = [v.type for v in bcarries] + [s.type for s in seqs]
    attrs = {
        "n_seqs": len(bseqs),
        "n_carries": len(bcarries),
        "length": length,
        "truncate": None,
        "reverse": True,
    }
    bop = b.create("tg.scan", bseqs + bcarries, res_types, attrs, [Region([bblock])])
    r = iter(bop.results)
    g_inits = [next(r) for _ in range(nc)]
    g_free = {v: next(r) for v in dfree}
    g_seqs = [next(r) for _ in range(ns)]
    return g_seqs + g_inits + [g_free.get(v) for v in free]


def _erase_dead(block: Block) -> None:
    """Erase the pure ops of block whose results nothing uses (last first)."""
    for o in reversed(list(block.ops)):
        d = lookup(o.name)
        if d is not None and PURE in d.traits and o.results and not any(r.uses for r in o.results):
            o.erase()


def _new_result(op: Op, t):
    from irc.ir.core import OpResult

    return OpResult(op, len(op.results), t)


REGION_VJPS = {"tg.scan": scan_vjp}


def zeros_like(b: OpBuilder, v: Value) -> Value:
    z = b.const(0.0 if v.type.dtype.is_float else 0, v.type.dtype)
    if v.type.rank == 0:
        return z
    return b.broadcast_to(z, shape=v.type.shape)


def sum_to(b: OpBuilder, g: Value, like: Value) -> Value:
    """Sum g over the axes that broadcasting added or stretched to reach like's shape."""
    target = like.type.shape
    if g.type.shape == target:
        return g
    lead = g.type.rank - len(target)
    if lead < 0:
        return b.broadcast_to(g, shape=target)
    if lead:
        g = b.sum(g, axis=tuple(range(lead)), keepdims=False)
    axes = tuple(i for i, (dt, dg) in enumerate(zip(target, g.type.shape)) if dt == 1 and dg != 1)
    if axes:
        g = b.sum(g, axis=axes, keepdims=True)
    if g.type.shape != target:
        raise CompileError(
            f"grad: cannot reduce a gradient of shape {g.type} to {like.type}", b.loc
        )
    return g

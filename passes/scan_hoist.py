"""scan-hoist: move the work of a scan body that does not need the loop out
of it, so what stays in the loop is the recurrence:

  * hoist_scan: ops that do not depend on the carries run before the loop,
    batched over all steps (loop-invariant ones as they are), and come back
    in as extra sequences; the backward scan of BPTT recomputes forward
    values, which become the forward's own ops after CSE.
  * sink_accumulations: carries that only accumulate, acc <- acc + x_t^T @ d_t,
    become one product after the loop.
  * sink_outputs: per-step outputs computed from other per-step outputs and
    invariants are computed after the loop for all steps at once.
  * sequences the body no longer reads leave the scan.

    %ys = tg.scan seqs(%xs) inits(%s0) ... {         %xu = tg.matmul %xs, %U : f32[T, B, H]
    ^body(%x: f32[B, D], %s: f32[B, H]):             %ys = tg.scan seqs(%xu) inits(%s0) ... {
      %a = tg.matmul %s, %W : f32[B, H]       ->     ^body(%u: f32[B, H], %s: f32[B, H]):
      %b = tg.matmul %x, %U : f32[B, H]                %a = tg.matmul %s, %W : f32[B, H]
      %c = tg.add %a, %b : f32[B, H]                   %c = tg.add %a, %u : f32[B, H]
      ...                                              ...

When it rewrote a scan, the pass ends with the cse and dce passes (the same
classes as the pipeline's): they merge the hoisted recomputations with the
forward's own ops and drop what is left unused. A model without scans pays
nothing. Imports only irc.ir, irc.ops and the pass manager.
"""

from __future__ import annotations

from dataclasses import dataclass

from irc.ir.core import Module, Op, OpResult
from irc.ir.dims import dim_mul
from irc.ops.common import norm_axis
from irc.ops.lowering.emit import REDUCE_KINDS, is_elementwise
from irc.ops.registry import REGISTRY
from irc.passes.cse import CSE
from irc.passes.dce import DCE
from irc.passes.pass_manager import Pass, ops_named, register


@register
@dataclass
class ScanHoist(Pass):
    name = "scan-hoist"
    summary = "move scan-body work that does not need the loop before or after it"

    def run(self, module: Module) -> bool:
        if not rewrite_scans(module):
            return False
        # Only when a scan was rewritten (so a model without scans pays nothing):
        # CSE merges the backward scan's hoisted recomputations with the forward's
        # own ops, DCE drops what the rewrites left unused.
        CSE().run(module)
        DCE().run(module)
        return True


def rewrite_scans(module: Module) -> bool:
    """The scan rewrites below on every scan of every function; whether any ran."""
    found = False
    for f in module.functions():
        for op in ops_named(f, ("tg.scan",)):
            hoist_scan(op)
            sink_accumulations(op)
            sink_outputs(op)
            drop_unused_sequences(op)
            found = True
    return found


def hoist_scan(scan: Op) -> None:
    """Move the part of a scan body that does not depend on the carries out of
    the loop, computed for every step at once, and feed it back in as extra
    sequences (loop-invariant ops move out as they are).

        scan (x in xs; s = s0) { s = tanh(s @ W + x @ U) ... }
     -> xu = xs @ U                  (one [T*B, D] @ [D, H] product)
        scan (x in xs, u in xu; s = s0) { s = tanh(s @ W + u) ... }

    This turns the recomputation in the backward scan of BPTT (everything that
    depends only on saved carries and sequences) into a few large products."""
    from irc.ops.registry import OpBuilder

    ns = scan.attrs["n_seqs"]
    body = scan.regions[0].block
    length = scan.attrs["length"]
    batched = {a: s for a, s in zip(body.args[:ns], scan.operands[:ns])}
    inside = set(body.args)
    for o in body.ops:
        for inner in o.walk():
            inside.update(inner.results)
            for r in inner.regions:
                for bl in r.blocks:
                    inside.update(bl.args)
    b = OpBuilder()
    b.set_insertion_before(scan)
    hoisted = []  # body ops replaced by an outer value
    for op in list(body.ops):
        if op.name == "tg.yield":
            break
        if op.regions and op.name != "tg.fused" or len(op.results) != 1 or not op.operands:
            continue
        d = REGISTRY.get(op.name)
        if d is None or "pure" not in d.traits:
            continue
        if any(v in inside and v not in batched for v in op.operands):
            continue  # depends on a carry
        v = op.results[0]
        b.loc = op.loc
        try:
            if not any(x in batched for x in op.operands):
                new = op.clone({})  # loop-invariant: the same op before the scan
                b.insert(new)
                v.replace_all_uses_with(new.results[0])
                hoisted.append(op)
                continue
            nv = _batched_op(b, op, batched, length)
        except Exception:  # a form the rules below do not cover stays in the loop
            nv = None
        if nv is not None:
            batched[v] = nv
            hoisted.append(op)
    if not hoisted:
        return
    # Hoisted values still used in the body become new sequences.
    new_args = []
    for op in hoisted:
        v = op.results[0]
        if v in batched and v.uses:
            new_args.append((v, batched[v]))
    for k, (v, outer) in enumerate(new_args):
        from irc.ir.core import BlockArgument

        a = BlockArgument(body, ns + k, v.type, v.name_hint)
        body.args.insert(ns + k, a)
        v.replace_all_uses_with(a)
        scan.operands.insert(ns + k, outer)
    for i, a in enumerate(body.args):
        a.index = i
    # rebuild the operand use lists (operands were inserted in the middle)
    ops = list(scan.operands)
    for x in ops:
        for use in [u for u in x.uses if u[0] is scan]:
            x.uses.remove(use)
    scan.operands = []
    for x in ops:
        scan.add_operand(x)
    attrs = dict(scan.attrs)
    attrs["n_seqs"] = ns + len(new_args)
    scan.attrs = attrs
    for op in reversed(hoisted):
        if all(not r.uses for r in op.results):
            op.erase()


def sink_accumulations(scan: Op) -> None:
    """Carries that only accumulate, acc <- acc + g, become one operation after
    the loop when g is a product or a batch sum (the weight gradients of BPTT):

        acc <- acc + x_t^T @ d_t   ->  D = stacked d_t;  acc = acc0 + X^T @ D   (one gemm, K = T*B)
        acc <- acc + a_t           ->  acc = acc0 + sum(A, axis=0)   (a_t a sequence slice;
                                       a gemm too when A is a batched x_t^T @ y_t)

    where X^T @ D reads the sequence X = transpose(Z, (0, 2, 1)) as Z reshaped to
    [T*B, P]. The accumulating add and its product leave the loop body."""
    from irc.ir.core import OpResult as _R
    from irc.ops.registry import OpBuilder

    ns, nc = scan.attrs["n_seqs"], scan.attrs["n_carries"]
    body = scan.regions[0].block
    y_op = body.terminator
    length = scan.attrs["length"]
    b = OpBuilder()
    b.set_insertion_after(scan)
    b.loc = scan.loc
    seq_of = {a: s for a, s in zip(body.args[:ns], scan.operands[:ns])}
    for k in range(nc):
        c = body.args[ns + k]
        nxt = y_op.operands[k]
        r = scan.results[k]
        if not isinstance(nxt, _R) or nxt.op.parent is not body or nxt.op.name != "tg.add":
            continue
        if len(c.uses) != 1 or c.uses[0][0] is not nxt.op or len(nxt.uses) != 1 or c.type.rank != 2:
            continue
        x0, x1 = nxt.op.operands
        g = x1 if x0 is c else x0 if x1 is c else None
        if g is None or g.type != c.type:
            continue
        after = None  # builds the sum over the steps after the loop, given the new outputs
        if g in seq_of:
            A = seq_of[g]

            def after(outs, A=A):
                return _sum_steps(b, A)
        elif isinstance(g, _R) and g.op.parent is body and len(g.uses) == 1:
            gop = g.op
            if (
                gop.name == "tg.matmul"
                and gop.operands[0] in seq_of
                and not gop.operands[1] in seq_of
            ):
                X = seq_of[gop.operands[0]]
                y = gop.operands[1]
                if not (
                    isinstance(X, _R)
                    and X.op.name == "tg.transpose"
                    and tuple(X.op.attrs.get("perm") or ()) == (0, 2, 1)
                    and y.type.rank == 2
                    and X.type.rank == 3
                ):
                    continue
                Z = X.op.operands[0]

                def after(outs, Z=Z, y=y):
                    Y = outs[y]
                    zf = b.reshape(
                        Z, shape=(dim_mul(Z.type.shape[0], Z.type.shape[1]), Z.type.shape[2])
                    )
                    yf = b.reshape(
                        Y, shape=(dim_mul(Y.type.shape[0], Y.type.shape[1]), Y.type.shape[2])
                    )
                    return b.matmul(b.transpose(zf, perm=(1, 0)), yf)

                stack = [y]
            else:
                continue
        else:
            continue
        # stack the per-step values the sum needs as extra scan outputs
        outs = {}
        if g not in seq_of:
            from irc.ir.core import OpResult as NewResult

            for y in stack:
                if y in seq_of:
                    outs[y] = seq_of[y]
                    continue
                y_op.add_operand(y)
                t = y.type.with_shape((length,) + y.type.shape)
                nr = NewResult(scan, len(scan.results), t)
                scan.results.append(nr)
                outs[y] = nr
        total = after(outs)
        if total is None or total.type != r.type:
            continue
        init = scan.operands[ns + k]
        final = b.add(init, total)
        r.replace_all_uses_with(final)
        # the carry now passes through unchanged
        y_op.set_operand(k, c)
        nxt.op.erase()
        if isinstance(g, _R) and g.op.parent is body and not g.uses:
            g.op.erase()


def sink_outputs(scan: Op) -> None:
    """Per-step outputs computed from other per-step outputs and loop
    invariants only leave the loop, computed for all steps at once afterwards:

        scan (...; s = s0) { s = tanh(...); yield s, softmax(c + s @ V) }
     -> ss = scan (...; s = s0) { s = tanh(...); yield s }
        ps = softmax(c + ss @ V)             (one [T*B, H] @ [H, K] product)"""
    from irc.ops.registry import OpBuilder

    nc = scan.attrs["n_carries"]
    body = scan.regions[0].block
    y_op = body.terminator
    length = scan.attrs["length"]
    inside = set(body.args)
    for o in body.ops:
        for inner in o.walk():
            inside.update(inner.results)
    stacked = {}  # body value -> its stacked scan result
    for j, y in enumerate(y_op.operands[nc:]):
        if y not in stacked:
            stacked[y] = scan.results[nc + j]
    # ops computable from stacked values and invariants
    avail = dict(stacked)
    cand = []
    for op in body.ops:
        if op.name == "tg.yield" or op.regions and op.name != "tg.fused" or len(op.results) != 1:
            continue
        d = REGISTRY.get(op.name)
        if d is None or "pure" not in d.traits or not op.operands:
            continue
        if all(x in avail or x not in inside for x in op.operands) and any(
            x in avail for x in op.operands
        ):
            avail[op.results[0]] = None  # placeholder: computed after the loop
            cand.append(op)
    # keep those whose results only feed outputs or other sunk ops
    removable = set()
    for op in reversed(cand):
        v = op.results[0]
        ok = bool(v.uses)
        for u, i in v.uses:
            if u is y_op:
                ok = ok and i >= nc
            elif u not in removable:
                ok = False
        if ok:
            removable.add(op)
    if not removable:
        return
    b = OpBuilder()
    b.set_insertion_after(scan)
    outer = dict(stacked)
    done = []
    for op in cand:
        if op not in removable:
            continue
        if any(x in inside and x not in outer for x in op.operands):
            continue
        b.loc = op.loc
        try:
            nv = _batched_op(b, op, outer, length)
        except Exception:
            nv = None
        if nv is None:
            continue
        outer[op.results[0]] = nv
        done.append(op)
    if not done:
        return
    sunk = {op.results[0] for op in done}
    # outputs that are sunk values: their results now come from after the loop
    keep_pos = []
    for j, y in enumerate(y_op.operands[nc:]):
        r = scan.results[nc + j]
        if y in sunk:
            r.replace_all_uses_with(outer[y])
        else:
            keep_pos.append(j)
    new_yield = list(y_op.operands[:nc]) + [y_op.operands[nc + j] for j in keep_pos]
    y_op.drop_operands()
    for x in new_yield:
        y_op.add_operand(x)
    scan.results = scan.results[:nc] + [scan.results[nc + j] for j in keep_pos]
    for i, r in enumerate(scan.results):
        r.index = i
    for op in reversed(done):
        if all(not r.uses for r in op.results):
            op.erase()


def drop_unused_sequences(scan: Op) -> None:
    """Sequences whose slices the body no longer reads leave the scan."""
    ns = scan.attrs["n_seqs"]
    body = scan.regions[0].block
    keep = [i for i in range(ns) if body.args[i].uses]
    if len(keep) == ns:
        return
    ops = list(scan.operands)
    args = list(body.args)
    new_ops = [ops[i] for i in keep] + ops[ns:]
    new_args = [args[i] for i in keep] + args[ns:]
    scan.drop_operands()
    for x in new_ops:
        scan.add_operand(x)
    body.args[:] = new_args
    for i, a in enumerate(body.args):
        a.index = i
    attrs = dict(scan.attrs)
    attrs["n_seqs"] = len(keep)
    scan.attrs = attrs


def _sum_steps(b, A):
    if isinstance(A, OpResult) and A.op.name == "tg.matmul":
        P, Q = A.op.operands
        if (
            isinstance(P, OpResult)
            and P.op.name == "tg.transpose"
            and tuple(P.op.attrs.get("perm") or ()) == (0, 2, 1)
            and P.type.rank == 3
            and Q.type.rank == 3
        ):
            Z = P.op.operands[0]
            zf = b.reshape(Z, shape=(dim_mul(Z.type.shape[0], Z.type.shape[1]), Z.type.shape[2]))
            qf = b.reshape(Q, shape=(dim_mul(Q.type.shape[0], Q.type.shape[1]), Q.type.shape[2]))
            return b.matmul(b.transpose(zf, perm=(1, 0)), qf)
    return b.sum(A, axis=(0,), keepdims=False)


def _batched_op(b, op, batched, length):
    """op applied to every step at once (operands in `batched` get a leading
    axis of `length`), or None when there is no rule for it."""
    from irc.ops.registry import semantic_attrs

    v = op.results[0]
    R = v.type.rank
    opnds = [batched.get(x, x) for x in op.operands]
    isb = [x in batched for x in op.operands]
    attrs = semantic_attrs(op)
    name = op.name

    def shift(axis, rank):
        if axis is None:
            return tuple(range(1, rank + 1))
        if isinstance(axis, (tuple, list)):
            return tuple(norm_axis(a, rank) + 1 for a in axis)
        return norm_axis(axis, rank) + 1

    if is_elementwise(op) or name == "tg.fused":
        # every batched operand must have the full rank, so the new axis lines up
        if any(
            f and x.type.rank != (len(op.attrs["shape"]) if name == "tg.fused" else R)
            for f, x in zip(isb, op.operands)
        ):
            return None
        if name == "tg.fused":
            from irc.ops.fused import result_shape

            shape = tuple(op.attrs["shape"])
            attrs["shape"] = (length,) + shape
            if attrs.get("reduce"):
                attrs["axis"] = shift(attrs.get("axis"), len(shape))
            t = v.type.with_shape(result_shape(attrs["shape"], attrs))
            return b.create(name, opnds, [t], attrs, [op.regions[0].clone({})]).results[0]
        return b.op(name, *opnds, **attrs)
    if name == "tg.matmul":
        (x, y), (bx, by) = op.operands, isb
        if by and y.type.rank < 2 or (bx and by and x.type.rank < 2):
            return None
        return b.op(name, *opnds, **attrs)
    if name in ("tg.softmax", "tg.log_softmax"):
        attrs["axis"] = shift(attrs.get("axis", -1), R)
        return b.op(name, *opnds, **attrs)
    if name in REDUCE_KINDS:
        attrs["axis"] = shift(attrs.get("axis"), op.operands[0].type.rank)
        return b.op(name, *opnds, **attrs)
    if name == "tg.transpose":
        perm = attrs.get("perm")
        perm = tuple(range(R))[::-1] if perm is None else tuple(norm_axis(p, R) for p in perm)
        attrs["perm"] = (0,) + tuple(p + 1 for p in perm)
        return b.op(name, *opnds, **attrs)
    if name in ("tg.crossentropy_logits", "tg.categorical_crossentropy") and all(isb):
        return b.op(name, *opnds, **attrs)
    if name in ("tg.broadcast_to", "tg.reshape"):
        attrs["shape"] = (length,) + tuple(attrs["shape"])
        return b.op(name, *opnds, **attrs)
    return None

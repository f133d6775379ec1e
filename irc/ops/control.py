"""Control and meta ops: tg.scan (a loop with a region), tg.yield (its
terminator), tg.grad (a gradient request, replaced by the `grad` pass) and
tg.dim (the run-time value of a named dim as a scalar).

tg.scan operands: the sequences (n_seqs of them, iterated over their leading
axis), then the initial carries (n_carries). Attributes: n_seqs, n_carries,
length (the number of steps: a dim), truncate (None or an int: gradient
truncation, Theano's truncate_gradient). The body block's arguments are one
slice of each sequence, then the carries. Its tg.yield operands are the next
carries, then the per-step outputs; the op's results are the outputs stacked
on a new leading axis of size `length`. The body sees values from outside.
"""

from __future__ import annotations

import numpy as np

from irc.ir.types import DTYPES, TensorType, TypeError_
from irc.ops.cost import no_flops
from irc.ops.registry import PURE, TERMINATOR, OpDef, defop


def _verify_scan(op):
    ns, nc = op.attrs.get("n_seqs", 0), op.attrs.get("n_carries", 0)
    if ns + nc != len(op.operands):
        raise TypeError_(
            f"tg.scan has {len(op.operands)} operands, expected n_seqs + n_carries = {ns + nc}"
        )
    if len(op.regions) != 1 or len(op.regions[0].blocks) != 1:
        raise TypeError_("tg.scan needs one region with one block")
    body = op.regions[0].block
    length = op.attrs.get("length")
    want_args = []
    for s in op.operands[:ns]:
        if s.type.rank == 0:
            raise TypeError_("a scan sequence must have a leading axis")
        if s.type.shape[0] != length:
            raise TypeError_(f"scan sequence of type {s.type} does not have {length} steps")
        want_args.append(s.type.with_shape(s.type.shape[1:]))
    want_args += [v.type for v in op.operands[ns:]]
    got_args = [a.type for a in body.args]
    if got_args != want_args:
        raise TypeError_(
            f"scan body arguments ({', '.join(map(str, got_args))}) "
            f"differ from ({', '.join(map(str, want_args))})"
        )
    term = body.terminator
    if term is None or term.name != "tg.yield":
        raise TypeError_("scan body must end with tg.yield")
    if len(term.operands) != len(op.results):
        raise TypeError_(f"tg.yield has {len(term.operands)} operands, expected {len(op.results)}")
    for init, nxt, r in zip(op.operands[ns:], term.operands[:nc], op.results[:nc]):
        if init.type != nxt.type:
            raise TypeError_(
                f"carried value changes type: starts as {init.type}, next value is {nxt.type}"
            )
        if r.type != init.type:
            raise TypeError_(f"final carry result {r.type} differs from the carry type {init.type}")
    for out, r in zip(term.operands[nc:], op.results[nc:]):
        want = out.type.with_shape((length,) + out.type.shape)
        if r.type != want:
            raise TypeError_(f"scan result type {r.type} differs from stacked output {want}")


SCAN = defop(
    OpDef(
        "tg.scan",
        cost=no_flops,
        traits=frozenset({PURE}),
        verify=_verify_scan,
        dim_attrs=("length",),
        doc="symbolic loop over sequences with carried values",
    )
)
YIELD = defop(OpDef("tg.yield", cost=no_flops, infer=lambda ts, a: [], traits=frozenset({TERMINATOR})))


def _grad_infer(types, attrs):
    if not types:
        raise TypeError_("grad needs a loss and at least one variable")
    loss, wrt = types[0], types[1:]
    if not wrt:
        raise TypeError_("grad needs at least one variable to differentiate with respect to")
    if loss.rank != 0:
        raise TypeError_(f"grad: the loss must be a scalar, got {loss}")
    if not loss.dtype.is_float:
        raise TypeError_(f"grad: the loss must be a float, got {loss}")
    for t in wrt:
        if not t.dtype.is_float:
            raise TypeError_(f"grad: cannot differentiate with respect to a value of type {t}")
    if attrs.get("disconnected", "raise") not in ("raise", "zero"):
        raise TypeError_('grad: disconnected must be "raise" or "zero"')
    return list(wrt)


GRAD = defop(
    OpDef(
        "tg.grad",
        cost=no_flops,
        infer=_grad_infer,
        traits=frozenset({PURE}),
        defaults={"disconnected": "raise"},
        doc="gradient of operand 0 (a scalar) with respect to the others; expanded by the grad pass",
    )
)


def _dim_infer(types, attrs):
    return [TensorType(DTYPES[attrs.get("dtype", "i32")], ())]


DIM = defop(
    OpDef(
        "tg.dim",
        cost=no_flops,
        infer=_dim_infer,
        arity=0,
        dim_attrs=("dim",),
        defaults={"dtype": "i32"},
        numpy=lambda dim, dtype="i32": np.asarray(dim, dtype=DTYPES[dtype].np),
        doc="the value of a named dim at run time",
    )
)

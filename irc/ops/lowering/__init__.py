"""Loop lowerings of the tg ops, one module per op family, each rule registered
on its op's OpDef (`OpDef.lower`, with `@lowers("tg.name")`):

    elementwise  groups of fusible ops: one loop nest, bodies from OpDef.scalar
    reduce       sum/mean/max/min, fused reductions, argmax/argmin
    linalg       matmul (mem.gemm or loops), gemm-shaped updates
    nn           softmax, cross-entropies, conv, max_pool2d and their gradients
    index        views, transpose, indexing, gather/scatter, concat, stack, ...
    control      tg.read, tg.update (and the ops that must be gone: call, grad)
    scan         tg.scan as a loop.for over buffers
    emit         the Emitter the rules write with, and shared helpers

A rule is `rule(lowerer, emit, op, vals)`: `lowerer` is the function lowerer of
passes/lower_to_loops.py (buffers, planning decisions, `expr` for fused
values), `emit` the Emitter at the insertion point, `vals` the map from tg
values to their buffers, which the rule extends with op's results.

Why here, in the ops layer, and not in passes/: a lowering is part of what
the compiler knows about its op (ARCHITECTURE.md, "One entry per op"); these
modules import only irc.ir and irc.ops (tests/test_layering.py), and the
driver in passes/ imports them, never the other way round. Imported by
irc/ops/__init__.py after the op families, so every OpDef has its `lower`.
"""

from irc.ops.lowering import control, elementwise, index, linalg, nn, reduce, scan  # noqa: F401
from irc.ops.registry import ELEMENTWISE, REGISTRY

# Ops no lowering sees: module structure, and tg.grad (expanded by the grad pass).
NOT_LOWERED = frozenset({"tg.yield", "tg.global", "tg.grad"})


def rule_of(name: str):
    """The lowering rule of op `name`, or None: its OpDef.lower, or for an
    elementwise op with a scalar rule, the elementwise loop nest."""
    d = REGISTRY.get(name)
    if d is None:
        return None
    if d.lower is not None:
        return d.lower
    if d.has(ELEMENTWISE) and d.scalar is not None:
        return elementwise.lower_fusible
    return None


def missing_lowerings() -> list:
    """tg ops of the registry the backends could not compile (a test keeps this
    empty): neither a lowering nor, for an elementwise op, a scalar rule."""
    return [
        name
        for name in REGISTRY
        if name.startswith("tg.") and name not in NOT_LOWERED and rule_of(name) is None
    ]

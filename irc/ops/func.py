"""Module-level and function ops: builtin.module, func.func, func.return,
func.call, and shared-variable state (tg.global, tg.read, tg.update).

func.func attributes: sym_name (str), visibility ("public" for `fn` entry
points, "private" for `def` helpers awaiting inlining), res_types (tuple of
TensorType), arg_defaults (tuple, None where an argument has no default).
The entry block's arguments are the parameters.
"""

from __future__ import annotations

from irc.ir.types import TensorType, TypeError_
from irc.ops.cost import no_flops
from irc.ops.registry import ISOLATED, PURE, SIDE_EFFECT, SYMBOL, TERMINATOR, OpDef, defop


def _verify_func(op):
    if len(op.regions) != 1 or len(op.regions[0].blocks) != 1:
        raise TypeError_("func.func must have one region with one block")
    body = op.regions[0].block
    term = body.terminator
    if term is None or term.name != "func.return":
        raise TypeError_(f"function @{op.attrs.get('sym_name')} does not end with func.return")
    res = tuple(op.attrs.get("res_types", ()))
    got = tuple(v.type for v in term.operands)
    if res != got:
        raise TypeError_(
            f"function @{op.attrs.get('sym_name')} returns ({', '.join(map(str, got))}) "
            f"but declares ({', '.join(map(str, res))})"
        )


MODULE = defop(OpDef("builtin.module", traits=frozenset({ISOLATED}), arity=0))
FUNC = defop(OpDef("func.func", traits=frozenset({SYMBOL, ISOLATED}), arity=0, verify=_verify_func))
RETURN = defop(OpDef("func.return", cost=no_flops, infer=lambda ts, a: [], traits=frozenset({TERMINATOR})))
# func.call's result types come from the callee (checked by the verifier's
# symbol pass and by `inline`), so it has no local inference.
CALL = defop(OpDef("func.call", cost=no_flops, traits=frozenset({PURE})))


def _verify_global(op):
    if not isinstance(op.attrs.get("type"), TensorType):
        raise TypeError_("tg.global needs a `type` attribute")


# A shared variable: attrs sym_name, type, init (initialiser name), init_args.
GLOBAL = defop(OpDef("tg.global", cost=no_flops, traits=frozenset({SYMBOL}), arity=0, verify=_verify_global))
# Reads see the value from before the call (updates apply after it), so two
# reads of one variable in one call are the same value: reads are pure.
READ = defop(OpDef("tg.read", cost=no_flops, traits=frozenset({PURE}), arity=0))
UPDATE = defop(OpDef("tg.update", cost=no_flops, infer=lambda ts, a: [], traits=frozenset({SIDE_EFFECT}), arity=1))

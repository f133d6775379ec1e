"""The op registry: one `OpDef` per op holding everything the compiler knows
about it (type inference, NumPy semantics, gradient rule, lowering or
decomposition, canonical patterns, traits, a test input domain).

Adding an op is one `defop(OpDef(...))` in the file of its family
(elementwise, tensor, indexing, nn, control, func); its loop lowering, unless it is
elementwise (then `scalar` is the rule), is one `@lowers` function in the
matching module of irc/ops/lowering/. A test checks the registry is complete.

Also owns `OpBuilder`, the builder that creates registered ops with their result
types inferred: `b.add(x, y)` creates `tg.add`. Imports only irc.ir.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from irc.ir.builder import Builder
from irc.ir.core import Op, Value
from irc.ir.dims import _ACTIVE as _UNIFYING
from irc.ir.errors import CompileError
from irc.ir.types import TypeError_

# Traits -------------------------------------------------------------------
PURE = "pure"  # no side effects: CSE may merge it, DCE may drop it
ELEMENTWISE = "elementwise"  # result[i] depends on operands[i] after broadcasting
COMMUTATIVE = "commutative"
TERMINATOR = "terminator"
SIDE_EFFECT = "side_effect"  # must be kept and never reordered with others
SYMBOL = "symbol"  # module-level op with a sym_name
ISOLATED = "isolated"  # regions do not see values defined outside
NO_GRAD = "no_grad"  # output is not differentiable (comparisons, argmax, integer ops)

ELEMENTWISE_PURE = frozenset({PURE, ELEMENTWISE})


@dataclass
class OpDef:
    name: str
    # infer(operand_types, attrs) -> list of result TensorTypes; raises TypeError_
    infer: Optional[Callable] = None
    # numpy(*arrays, **attrs) -> array or tuple of arrays (reference semantics)
    numpy: Optional[Callable] = None
    # vjp(b: OpBuilder, op, g) -> list (one per operand) of Value or None.
    # g is the cotangent of the single result, or a list (None where unused)
    # for ops with several results.
    vjp: Optional[Callable] = None
    # lower(lowerer, emit, op, vals) -> None: emits the loop IR computing op
    # (irc/ops/lowering/, one module per family; set there with @lowers). An
    # elementwise op needs none: its loop nest comes from `scalar`.
    lower: Optional[Callable] = None
    # scalar(emit, args, dtype) -> scalar Value: an elementwise op on one element,
    # built from scalar.* ops (args as the operands' dtypes, dtype the result's).
    # `common.scalar_map("exp")` is the usual rule; composites (sigmoid) build
    # theirs from primitives, so backends only ever see primitive scalar ops.
    scalar: Optional[Callable] = None
    # cost(op) -> (flops) estimate as an int or dim expression, for `irc inspect`
    # (irc/ops/cost.py). Every tg op states one; None only where it is free.
    cost: Optional[Callable] = None
    # decompose(b: OpBuilder, op) -> list of Values replacing op's results
    decompose: Optional[Callable] = None
    # canonical patterns: f(rewriter: OpBuilder, op) -> list of Values or None
    canonical: list = field(default_factory=list)
    traits: frozenset = frozenset({PURE})
    # a (lo, hi) range for random test inputs, where the op is defined and smooth
    domain: Optional[tuple] = None
    # number of operands; None for variadic
    arity: Optional[int] = None
    # default attributes, filled in by OpBuilder when not given
    defaults: dict = field(default_factory=dict)
    # extra structural verification: f(op) -> None, raising TypeError_
    verify: Optional[Callable] = None
    # attributes holding dims (ints or named-dim expressions such as "N" or
    # "T*B"), possibly nested in tuples; the interpreter and backends evaluate
    # them against the dims bound at call time before running the op
    dim_attrs: tuple = ()
    doc: str = ""

    def has(self, trait: str) -> bool:
        return trait in self.traits


REGISTRY: dict = {}

# Attributes that carry planning decisions for the backends (plan-memory's
# `inplace`), not semantics: reference functions never see them.
ANNOTATIONS = frozenset({"inplace"})


def semantic_attrs(op: Op) -> dict:
    """op's attributes without the backend annotations (what `numpy` takes)."""
    return {k: v for k, v in op.attrs.items() if k not in ANNOTATIONS}


def defop(d: OpDef) -> OpDef:
    if d.name in REGISTRY:
        raise ValueError(f"op {d.name} registered twice")
    REGISTRY[d.name] = d
    return d


def lowers(*names: str):
    """Decorator: the function is the loop lowering (`OpDef.lower`) of ops `names`."""

    def register(fn: Callable) -> Callable:
        for name in names:
            get(name).lower = fn
        return fn

    return register


def lookup(name: str) -> Optional[OpDef]:
    return REGISTRY.get(name)


def get(name: str) -> OpDef:
    d = REGISTRY.get(name)
    if d is None:
        raise KeyError(f"unknown op {name}")
    return d


def infer_types(name: str, operand_types: list, attrs: dict) -> list:
    d = get(name)
    if d.arity is not None and len(operand_types) != d.arity:
        raise TypeError_(f"{short_name(name)} takes {d.arity} operands, got {len(operand_types)}")
    if d.infer is None:
        raise TypeError_(f"{name} has no type inference")
    return list(d.infer(list(operand_types), attrs))


def short_name(name: str) -> str:
    return name.split(".", 1)[1] if "." in name else name


def verify_op(op: Op) -> None:
    """Registry-level check of one op (used by the IR verifier): known op,
    arity, and result types equal to what inference gives. Raises TypeError_."""
    d = REGISTRY.get(op.name)
    if d is None:
        raise TypeError_(f"unknown op '{op.name}'")
    if d.arity is not None and len(op.operands) != d.arity:
        raise TypeError_(f"'{op.name}' expects {d.arity} operands, has {len(op.operands)}")
    if d.verify is not None:
        d.verify(op)
    if d.infer is not None:
        operands = op.operands
        results = op.results
        # An op of one or two operands, one result and no attributes whose
        # pattern passed before (a long function repeats a few): done.
        key = None
        if len(results) == 1 and not op.attrs and not _UNIFYING:
            if len(operands) == 2:
                key = (op.name, id(operands[0].type), id(operands[1].type), id(results[0].type))
            elif len(operands) == 1:
                key = (op.name, id(operands[0].type), id(results[0].type))
            if key in _PASSED:
                return
        # (the type lists of one and two operands without a comprehension: the
        # verifier asks this of every op of a long function)
        if len(operands) == 2:
            types = [operands[0].type, operands[1].type]
        elif len(operands) == 1:
            types = [operands[0].type]
        else:
            types = [v.type for v in operands]
        expect = d.infer(types, op.attrs)
        got = [results[0].type] if len(results) == 1 else [r.type for r in results]
        if (expect if type(expect) is list else list(expect)) != got:
            raise TypeError_(
                f"'{op.name}' result types {', '.join(map(str, got)) or '()'} "
                f"differ from inferred {', '.join(map(str, expect)) or '()'}"
            )
        if key is not None:
            if len(_PASSED) >= _PASSED_MAX:
                _PASSED.clear()
            _PASSED[key] = (types, got)  # (holds the types whose ids the key has)


# The attribute-free ops of one or two operands and one result that verify_op
# passed, by (op name, id of each operand type, id of the result type): what
# the check reads past the op's name, OpDef.verify (called before the lookup)
# and its operand count is infer(operand types, {}) and the result type, and
# infer is a function of its arguments, except while dims are unified
# (irc.ir.dims.unifying: not looked up then). The entry holds those type
# objects, so no other object has their ids while it exists.
_PASSED: dict = {}
_PASSED_MAX = 4096


def with_defaults(name: str, attrs: dict):
    """(the OpDef of `name`, `attrs` with its default attributes filled in: a new
    dict, or `attrs` itself when the op has no defaults). KeyError for an
    unknown op."""
    d = REGISTRY.get(name)
    if d is None:
        raise KeyError(f"unknown op {name}")
    if d.defaults:
        full = dict(d.defaults)
        full.update(attrs)
        return d, full
    return d, attrs


class OpBuilder(Builder):
    """Creates registered ops with inferred result types.

    `b.op("tg.add", x, y)` or the shorthand `b.add(x, y)`; keyword arguments
    become attributes. Shape errors become CompileErrors at the builder's loc.
    """

    def op(self, name: str, *operands: Value, **attrs) -> Value:
        op = self.op_full(name, list(operands), attrs)
        return op.results[0] if len(op.results) == 1 else op.results

    def op_full(self, name: str, operands: list, attrs: dict, regions=(), result_names=None) -> Op:
        # (get, infer_types and create written out: the front end makes every op of
        # a long function here, and each call of those shows)
        d, full = with_defaults(name, attrs)
        if full is attrs:
            full = dict(attrs)
        try:
            types = [v.type for v in operands]
            if d.arity is not None and len(types) != d.arity:
                raise TypeError_(f"{short_name(name)} takes {d.arity} operands, got {len(types)}")
            if d.infer is None:
                raise TypeError_(f"{name} has no type inference")
            types = list(d.infer(types, full))
        except TypeError_ as e:
            raise CompileError(e.message, self.loc) from None
        return self.insert(Op(name, operands, types, full, regions, self.loc, result_names))

    def __getattr__(self, item: str):
        if item.startswith("_"):
            raise AttributeError(item)
        name = "tg." + item
        if name not in REGISTRY:
            raise AttributeError(f"no op {name}")
        return lambda *operands, **attrs: self.op(name, *operands, **attrs)

    # constants ---------------------------------------------------------------
    def const(self, value, dtype, shape=None) -> Value:
        """A tg.constant of `value` (a scalar or array) with the given dtype,
        broadcast to `shape` when one is given."""
        import numpy as np

        arr = np.asarray(value, dtype=dtype.np)
        if shape is not None and arr.shape != tuple(shape):
            arr = np.broadcast_to(arr, tuple(shape)).copy()
        return self.op("tg.constant", value=arr)

    def like(self, value, ref: Value) -> Value:
        """A scalar constant of `ref`'s dtype (broadcasts against ref)."""
        return self.const(value, ref.type.dtype)

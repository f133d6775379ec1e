"""The loop-IR emitter the lowerings write with, and the helpers they share.

`Emitter` appends loop IR (irc/ops/loop.py) to a block: scalar ops, loads and
stores, `loop.for` nests; entry-block values (dims, constants, buffers) come
from the function lowerer (passes/lower_to_loops.py, `FuncLowerer`), which the
emitter holds as `emit.lowerer`. `scalar_of` applies an elementwise op's scalar
rule (OpDef.scalar). Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from typing import Optional

from irc.ir.builder import Builder
from irc.ir.core import Block, BlockArgument, Op, Region, Value, append_new_op, freeze_attr
from irc.ir.dims import dim_mul
from irc.ir.errors import CompileError
from irc.ir.types import BOOL, I64, DType, TensorType
from irc.ops.registry import ELEMENTWISE, REGISTRY

IDX = TensorType(I64, ())


BOOL_T = TensorType(BOOL, ())


_SCALAR_TYPES: dict = {}  # dtype name -> the rank-0 type (by name: DType hashes in Python)


def scalar_type(dtype: DType) -> TensorType:
    t = _SCALAR_TYPES.get(dtype.name)
    if t is None:
        t = _SCALAR_TYPES[dtype.name] = TensorType(dtype, ())
    return t


_PRODUCTS: dict = {}


def product(dims) -> object:
    key = tuple(dims)
    p = _PRODUCTS.get(key)
    if p is None:
        p = 1
        for d in key:
            p = dim_mul(p, d)
        if len(_PRODUCTS) < 4096:  # (dims are ints and strings: a bounded memo of the few seen)
            _PRODUCTS[key] = p
    return p


# Elementwise tg ops: lowered through their scalar rule (OpDef.scalar) inside a group.
def is_elementwise(op: Op) -> bool:
    d = REGISTRY.get(op.name)
    return d is not None and d.has(ELEMENTWISE) and len(op.results) == 1


def is_elementwise_name(name: str) -> bool:
    """Whether ops named `name` are ELEMENTWISE (is_elementwise less the result count)."""
    d = REGISTRY.get(name)
    return d is not None and d.has(ELEMENTWISE)


def is_scalar_const(op: Op) -> bool:
    return op.name == "tg.constant" and op.attrs["value"].size == 1


def fusible(op: Op) -> bool:
    """Ops that compute result[i] from operands at broadcast indices only."""
    # (is_elementwise(op) or broadcast_to or an unreduced one-result tg.fused or
    # is_scalar_const(op) or tg.dim, spelled out: asked of every op, often)
    name = op.name
    d = REGISTRY.get(name)
    if d is not None and ELEMENTWISE in d.traits and len(op.results) == 1:
        return True
    if name == "tg.broadcast_to" or name == "tg.dim":
        return True
    if name == "tg.fused":
        return not op.attrs.get("reduce") and len(op.results) == 1
    return name == "tg.constant" and op.attrs["value"].size == 1


REDUCE_KINDS = {"tg.sum": "sum", "tg.mean": "mean", "tg.max": "max", "tg.min": "min"}


# "scalar.<name>" per name: one string for all the ops of a name (not one made per op)
_SCALAR_NAMES: dict = {}


class Emitter:
    """Builds loop IR at the end of a block, with values hoisted to the entry."""

    __slots__ = ("lowerer", "block", "ops")

    def __init__(self, lowerer, block: Block):
        self.lowerer = lowerer
        # Ops are appended to block.ops directly (Builder.insert at the block's
        # end, spelled out): loop IR is made by the tens of thousands of ops for
        # a long function, and the emitter's insertion point never moves.
        self.block = block
        self.ops = block.ops

    @property
    def b(self) -> Builder:
        """A builder at the end of the block (made on demand: an emitter is made
        per loop body, and few rules want one). The emitter always appends at
        the block's end: moving this builder does not move the emitter."""
        return Builder(self.block)

    def op(self, name, operands=(), types=(), regions=(), **attrs) -> Op:
        op = append_new_op(
            self.block,
            name,
            list(operands),
            list(types),
            {k: freeze_attr(v) for k, v in attrs.items()} if attrs else {},
            self.lowerer.loc,
        )
        for r in regions:
            op.add_region(r)
        return op

    def _val(self, name, operands: list, t) -> Value:
        """A one-result op without attributes or regions (the common case);
        `operands` a new list of Values (the op keeps it)."""
        return append_new_op(self.block, name, operands, [t], {}, self.lowerer.loc).results[0]

    def val(self, name, operands, t, **attrs) -> Value:
        return self.op(name, operands, [t], **attrs).results[0]

    def dim(self, d) -> Value:
        return self.lowerer.dim(d)

    def const(self, v, dtype: DType) -> Value:
        return self.lowerer.const(v, dtype)

    def scalar(self, name: str, *operands, t: Optional[TensorType] = None, **attrs) -> Value:
        """scalar.<name>; the result type defaults to the first operand's."""
        full = _SCALAR_NAMES.get(name)
        if full is None:
            full = _SCALAR_NAMES[name] = "scalar." + name
        if attrs:
            return self.op(full, operands, [t or operands[0].type], **attrs).results[0]
        return append_new_op(
            self.block, full, list(operands), [t or operands[0].type], {}, self.lowerer.loc
        ).results[0]

    def cast(self, v: Value, dtype: DType) -> Value:
        d = v.type.dtype
        if d is dtype or d == dtype:  # (the same object, most of the time: no field compare)
            return v
        t = _SCALAR_TYPES.get(dtype.name) or scalar_type(dtype)
        return append_new_op(self.block, "scalar.cast", [v], [t], {}, self.lowerer.loc).results[0]

    def load(self, buf: Value, idx) -> Value:
        dtype = buf.type.dtype
        t = _SCALAR_TYPES.get(dtype.name) or scalar_type(dtype)
        op = append_new_op(self.block, "mem.load", [buf, *idx], [t], {}, self.lowerer.loc)
        return op.results[0]

    def store(self, v: Value, buf: Value, idx) -> None:
        append_new_op(self.block, "mem.store", [v, buf, *idx], [], {}, self.lowerer.loc)

    def gemm(
        self,
        a,
        b,
        c,
        m,
        n,
        k,
        lda,
        ldb,
        ldc,
        *,
        trans_a=False,
        trans_b=False,
        alpha=1.0,
        beta=0.0,
        offsets=(0, 0, 0),
        scale=None,
    ) -> None:
        """c = alpha * op(a) @ op(b) + beta * c as one mem.gemm: sizes and leading
        dims are dims, offsets (elements into a, b, c) dims or index values, scale an
        optional scalar value multiplying alpha."""
        dim = self.lowerer.dim
        sizes = [dim(x) for x in (m, n, k, lda, ldb, ldc)]
        offs = [x if isinstance(x, Value) else dim(x) for x in offsets]
        extra = [scale] if scale is not None else []
        self.op(
            "mem.gemm",
            [a, b, c, *sizes, *offs, *extra],
            trans_a=trans_a,
            trans_b=trans_b,
            alpha=float(alpha),
            beta=float(beta),
        )

    def add_i(self, a: Value, b: Value) -> Value:
        return self.scalar("add", a, b)

    def mul_i(self, a: Value, b: Value) -> Value:
        return self.scalar("mul", a, b)

    def loop(self, lo: Value, hi: Value, body, inits=(), parallel=False) -> list:
        """loop.for; body(emit, i, *carried) returns the next carried values."""
        inner, op = self._for(lo, hi, list(inits), parallel)
        nxt = body(inner, *inner.block.args) or []
        inner._yield(nxt)
        return list(op.results)

    def _for(self, lo: Value, hi: Value, inits: list, parallel) -> tuple:
        """(the Emitter of its body, the op) of a loop.for appended here, carrying
        `inits`; its body is left open (loop, nest and reduce_nest fill it)."""
        block = _loop_body([v.type for v in inits])
        op = _append_for(self.block, lo, hi, inits, block, parallel, self.lowerer.loc)
        return Emitter(self.lowerer, block), op

    def _yield(self, values) -> None:
        append_new_op(self.block, "loop.yield", list(values), [], {}, self.lowerer.loc)

    def nest(self, shape, body, parallel=True, idx=()):
        """Loops over every index of `shape` (outermost first); body(emit, idx)."""
        # (the loops made in turn, not by recursion: the same ops, made in the
        # same order, as loop() nested in loop(); the loop.for ops and bodies
        # made here directly, an Emitter only for the innermost body)
        if not shape:
            body(self, list(idx))
            return
        idx = list(idx)
        lowerer = self.lowerer
        dim = lowerer.dim
        call = callable(parallel)
        lo = dim(0)
        block = self.block
        blocks = []
        for d in shape:
            par = parallel(len(idx)) if call else parallel
            # (_loop_body and _append_for without carries, written out)
            inner = Block()
            i = BlockArgument(inner, 0, IDX)
            inner.args = [i]
            op = append_new_op(block, "loop.for", [lo, dim(d)], [], {"parallel": bool(par)},
                               lowerer.loc)
            region = Region()
            region.parent = op
            inner.parent = region
            region.blocks.append(inner)
            op.regions = [region]
            blocks.append(inner)
            idx.append(i)
            block = inner
        body(Emitter(lowerer, block), idx)
        loc = lowerer.loc
        for block in reversed(blocks):
            append_new_op(block, "loop.yield", [], [], {}, loc)

    def reduce_nest(self, shape, body, acc, idx=()):
        """Loops over `shape` carrying scalars `acc` (a list); body(emit, idx, *acc) -> next acc."""
        # (the loops made in turn, as nest(): the same ops, in the same order, as
        # loop() nested in loop())
        idx = list(idx)
        acc = list(acc)
        if not shape:
            return list(body(self, idx, *acc))
        lowerer = self.lowerer
        dim = lowerer.dim
        lo = dim(0)
        block = self.block
        types = [v.type for v in acc]
        levels = []
        for d in shape:
            inner = _loop_body(types)
            op = _append_for(block, lo, dim(d), acc, inner, False, lowerer.loc)
            levels.append((inner, op))
            args = inner.args
            idx.append(args[0])
            acc = args[1:]
            block = inner
        res = list(body(Emitter(lowerer, block), idx, *acc))
        loc = lowerer.loc
        for block, op in reversed(levels):
            append_new_op(block, "loop.yield", res, [], {}, loc)
            res = list(op.results)
        return res

    def assert_(self, cond: Value, message: str) -> None:
        self.op("loop.assert", [cond], message=message)


def _loop_body(carried_types) -> Block:
    """The block of a loop.for's body: an index argument, then the carried values'."""
    block = Block()
    args = [BlockArgument(block, 0, IDX)]
    for t in carried_types:
        args.append(BlockArgument(block, len(args), t))
    block.args = args
    return block


def _append_for(block, lo, hi, inits, body: Block, parallel, loc) -> Op:
    """A loop.for from lo to hi carrying `inits`, its body `body`, appended to `block`."""
    op = append_new_op(
        block,
        "loop.for",
        [lo, hi, *inits],
        [v.type for v in inits],
        {"parallel": bool(parallel)},
        loc,
    )
    region = Region()
    region.parent = op
    body.parent = region
    region.blocks.append(body)
    op.regions = [region]
    return op


def scalar_of(emit: Emitter, name: str, args: list, dtype: DType) -> Value:
    """The scalar value of elementwise op `name` applied to the scalars `args`,
    by its scalar rule (OpDef.scalar), as a value of `dtype`."""
    return scalar_rule(name, emit.lowerer.loc)(emit, args, dtype)


def scalar_rule(name: str, loc=None):
    """The scalar rule (OpDef.scalar) of op `name`: rule(emit, args, dtype) -> Value."""
    d = REGISTRY.get(name)
    rule = d.scalar if d is not None else None
    if rule is None:
        raise CompileError(f"lower-to-loops: {name} has no scalar rule", loc)
    return rule

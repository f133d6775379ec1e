"""kernelize: decide the kernels of a loop-IR module once, for every backend.

After lower-to-loops, each op a function runs at *host level* (its body, and the
bodies of host loops) is marked with what kind of kernel it is; the backends
render and launch what is marked and decide nothing about parallelism:

    loop.for %c0, %N {parallel = true} ({...})                 (a map over rows)
      -> loop.for %c0, %N {parallel = true, kernel = "map", grid = [0]} ({...})
    %s = loop.for %c0, %N, %z {parallel = false} : f32 ({...})  (a sum)
      -> ... {parallel = false, kernel = "reduce", levels = 1, combine = ["add"]} ...

Marks (attribute `kernel`, on loop.for, mem.gemm and mem.copy at host level):
  map     a loop nest whose perfectly nested loops at depths `grid` (0 = the
          marked loop) are parallel axes: their iterations are independent and
          touch disjoint elements of every buffer the nest writes (a parallel
          loop, or a serial loop's inner loop that indexes every written buffer
          at a fixed axis, e.g. `out[j] += x[i, j]` over j). The cpu backend
          splits grid[0] over threads; OpenCL makes an NDRange of the axes.
  reduce  `levels` perfectly nested serial loops whose carried scalars are only
          combined (`combine`, one per carry: add with reassoc, max, min) with
          values that do not depend on them, with no side effect in the body
          but stores to elements no other iteration touches (a fused
          reduction's other results, `t[i, j] = tanh(x[i, j])` beside
          `s += t[i, j]`): the iterations may be split into chunks whose
          partial results are combined in order.
  gemm    a mem.gemm, or a serial loop whose body is one mem.gemm and index
          arithmetic (a batch of products, one per iteration).
  copy    a mem.copy.
  loop    a serial loop around kernels (scan loops left after unrolling): the
          host runs it and launches the kernels of its body, marked likewise.
  serial  anything else (a loop with carries that is no reduction, a loop
          whose bounds are computed on the device): one thread, in order.
Other host-level ops (scalar ops, loads, stores, checks) are not kernels: a
backend computes host values (dims, constants, host loop indices and scalar
ops of them) where it wants and runs the rest in order on one thread.

Dim expressions: every `loop.dim` whose dim is an expression ("B*T",
"(H-2)//2+1") becomes scalar ops (add, sub, mul, neg, floordiv) of loop.dim
ops of named dims and integers, placed at the top of the function, so loop
bounds and index arithmetic reach the backends as plain scalar code.
Buffer shapes keep their dims (the backends compute strides from them).

The pass is idempotent. Imports irc.ir and irc.ops only.
"""

from __future__ import annotations

from dataclasses import dataclass

from irc.passes.pass_manager import Pass, register

import irc.ops.loop  # noqa: F401  (registers the loop dialects)
from irc.ir.core import Block, Module, Op, OpResult, Value
from irc.ir.dims import dim_tree, is_name
from irc.ir.types import I64, TensorType
from irc.ops.loop import storage_root

KINDS = ("map", "reduce", "gemm", "copy", "loop", "serial")
_IDX = TensorType(I64, ())
_DIM_OPS = {"+": "scalar.add", "-": "scalar.sub", "*": "scalar.mul", "//": "scalar.floordiv"}
_BUFFER_DEFS = ("mem.alloc", "mem.global", "mem.constant")


@register
@dataclass
class Kernelize(Pass):
    name = "kernelize"
    summary = "mark the kernels of loop IR (map, reduce, gemm, copy, loop, serial) once"

    def run(self, module: Module) -> bool:
        kernelize_module(module)
        return True


def kernelize_module(module: Module) -> Module:
    """Lower dim expressions and mark the kernels of every function; returns module."""
    for func in module.functions():
        lower_dims(func)
        _Marker().block(func.regions[0].block)
    return module


def ensure_kernels(module: Module) -> Module:
    """Run the pass on a loop module that has not been through it (tests build
    loop modules with lower_module alone)."""
    for func in module.functions():
        for op in func.regions[0].block.ops:
            if op.name in ("loop.for", "mem.gemm", "mem.copy") and "kernel" not in op.attrs:
                return kernelize_module(module)
    return module


_MARKS = ("kernel", "grid", "levels", "combine")


def _mark(op: Op, kind: str, **attrs) -> None:
    old = op.attrs
    if "kernel" in old or "grid" in old or "levels" in old or "combine" in old:
        new = {k: v for k, v in old.items() if k not in _MARKS}
    else:
        new = old.copy()  # (an op not marked before: the same dict, without a comprehension)
    new["kernel"] = kind
    for k, v in attrs.items():
        new[k] = tuple(v) if isinstance(v, list) else v
    op.attrs = new


# -- dim expressions -----------------------------------------------------------------------------


def lower_dims(func: Op) -> None:
    """Replace every loop.dim of a dim expression by scalar ops over loop.dim ops
    of names and integers, at the top of the function's entry block."""
    entry = func.regions[0].block
    exprs: list = []
    _dim_exprs(func.regions[0].block, exprs)
    if not exprs:
        return
    # the entry block's loop.dim ops of names and integers move to its top (they
    # have no operands), the scalar ops of the expressions right after them
    cache: dict = {}
    leaves = [o for o in entry.ops if o.name == "loop.dim" and _leaf(o.attrs["dim"])]
    top = entry.ops[0]
    for o in leaves:
        cache.setdefault(("dim", o.attrs["dim"]), o.results[0])
        if o is not top:
            entry.remove(o)
            entry.insert_before(top, o)
    first = next(o for o in entry.ops if o.name != "loop.dim")

    def make(name, operands, attrs):
        op = Op(name, operands, [_IDX], attrs, loc=func.loc)
        entry.insert_before(first, op)
        return op.results[0]

    def value(t) -> Value:
        key = t
        v = cache.get(key)
        if v is not None:
            return v
        kind = t[0]
        if kind in ("int", "name"):
            v = cache.get(("dim", t[1])) or make("loop.dim", [], {"dim": t[1]})
            cache[("dim", t[1])] = v
        elif kind == "neg":
            v = make("scalar.neg", [value(t[1])], {})
        else:
            a, b = value(t[1]), value(t[2])
            v = make(_DIM_OPS[kind], [a, b], {})
        cache[key] = v
        return v

    for o in exprs:
        v = value(dim_tree(o.attrs["dim"]))
        o.results[0].replace_all_uses_with(v)
        o.erase()


def _dim_exprs(block: Block, out: list) -> None:
    """The loop.dim ops of dim expressions in block and the blocks nested in it,
    in walk order (a walk without a generator per op: loop IR is long)."""
    for o in block.ops:
        if o.regions:
            for r in o.regions:
                for b in r.blocks:
                    _dim_exprs(b, out)
        elif o.name == "loop.dim":
            d = o.attrs["dim"]
            if type(d) is not int and not _leaf(d):
                out.append(o)


def _leaf(d) -> bool:
    return isinstance(d, int) or is_name(d)


# -- kernels -------------------------------------------------------------------------------------


class _Marker:
    """Marks the host-level ops of one function (see the module docstring)."""

    def __init__(self):
        self.host: set = set()  # values the host knows: dims, constants, host loop indices, ...
        self.bufs: set = set()  # buffers the host knows (defs, views, subviews at host indices)

    def block(self, block: Block) -> None:
        if block.parent_op() is not None and block.parent_op().name == "func.func":
            self.bufs.update(block.args)
        host, bufs = self.host, self.bufs
        for op in block.ops:
            name = op.name
            # (the commonest names first; the tests below are of distinct names)
            if name == "mem.alloc":
                bufs.add(op.results[0])
            elif name == "loop.for":
                self.loop(op)
            elif name in ("loop.dim", "scalar.const"):
                host.add(op.results[0])
            elif name.startswith("scalar."):
                for v in op.operands:
                    if v not in host:
                        break
                else:
                    host.add(op.results[0])
            elif name in _BUFFER_DEFS or name == "mem.view":
                if name in _BUFFER_DEFS or op.operands[0] in self.bufs:
                    self.bufs.add(op.results[0])
            elif name == "mem.subview":
                if op.operands[0] in self.bufs and op.operands[1] in self.host:
                    self.bufs.add(op.results[0])
            elif name == "mem.copy":
                _mark(op, "copy" if all(v in self.bufs for v in op.operands) else "serial")
            elif name == "mem.gemm":
                _mark(op, "gemm" if self.gemm_ok(op) else "serial")

    def gemm_ok(self, op: Op) -> bool:
        return all(v in self.bufs for v in op.operands[:3]) and all(
            v in self.host for v in op.operands[3:12]
        )

    def loop(self, op: Op) -> None:
        lo, hi = op.operands[:2]
        host_bounds = lo in self.host and hi in self.host
        if op.attrs.get("parallel") and host_bounds and not op.results:
            grid = self.grid(op)
            if grid:
                _mark(op, "map", grid=grid)
                return
        if op.operands[2:]:
            red = self.reduction(op) if host_bounds else None
            if red is not None:
                _mark(op, "reduce", levels=red[0], combine=red[1])
            else:
                _mark(op, "serial")
            return
        inner = [o for o in op.walk() if o is not op]
        if host_bounds and any(o.name in ("mem.gemm", "mem.copy") for o in inner):
            self.host_loop(op, "gemm" if self.batched_gemm(op) else "loop")
            return
        if host_bounds:
            grid = self.grid(op)
            if grid:
                _mark(op, "map", grid=grid)
                return
            if any(o.name == "loop.for" and o.attrs.get("parallel") for o in inner):
                self.host_loop(op, "loop")
                return
        _mark(op, "serial")

    def host_loop(self, op: Op, kind: str) -> None:
        _mark(op, kind)
        body = op.regions[0].block
        self.host.add(body.args[0])
        self.block(body)

    # -- map -----------------------------------------------------------------------------------
    def grid(self, op: Op) -> list:
        """Depths of the parallel axes of the perfect nest at op (may be empty)."""
        out, serial_seen = [], False
        known = self.host
        L, depth = op, 0
        while True:  # (over chain(op), without building it)
            bounds = L.operands
            parallel = L.attrs.get("parallel")
            body = L.regions[0].blocks[0]
            if (
                parallel
                and bounds[0] in known
                and bounds[1] in known
                and (not serial_seen or partitioned(op, body.args[0]))
            ):
                out.append(depth)
            elif not parallel:
                serial_seen = True
            inner = _only_op(body.ops)
            if inner is None or inner.name != "loop.for" or len(inner.operands) > 2:
                return out
            L, depth = inner, depth + 1

    # -- reduce --------------------------------------------------------------------------------
    def reduction(self, op: Op):
        """(levels, kinds) when op is a nest of serial loops whose carried scalars
        are only combined (add with reassoc, max, min) with values that do not
        depend on them, and whose body has no side effects."""
        levels = [op]
        cur = op
        host = self.host
        while True:
            body = cur.regions[0].blocks[0]
            inner = _only_op(body.ops)
            if (
                inner is not None
                and inner.name == "loop.for"
                and not inner.attrs.get("parallel")
                and inner.operands[2:] == body.args[1:]  # (lists: compared op by op, by identity)
                and body.ops[-1].operands == inner.results
                and inner.operands[0] in host
                and inner.operands[1] in host
            ):
                cur = inner
                levels.append(cur)
                continue
            break
        if _has_effects(op) and not _stores_partitioned(op, levels):
            return None
        body = levels[-1].regions[0].block
        kinds = []
        for arg, y in zip(body.args[1:], body.terminator.operands):
            if not isinstance(y, OpResult) or y.op.parent is not body or len(arg.uses) != 1:
                return None
            c = y.op
            if arg.uses[0][0] is not c or arg not in c.operands or len(c.operands) != 2:
                return None
            dt = arg.type.dtype
            if (
                c.name == "scalar.add"
                and not dt.is_bool
                and (not dt.is_float or c.attrs.get("reassoc"))
            ):
                kinds.append("add")
            elif c.name in ("scalar.maximum", "scalar.minimum"):
                kinds.append("max" if c.name == "scalar.maximum" else "min")
            else:
                return None
        return len(levels), kinds

    # -- batched gemm --------------------------------------------------------------------------
    def batched_gemm(self, op: Op) -> bool:
        """A serial loop whose body is one mem.gemm of host buffers defined outside
        it, plus scalar index arithmetic, with sizes and strides that do not change
        with the index (offsets may): a batch of products."""
        body = op.regions[0].block
        ops = [o for o in body.ops if o.name != "loop.yield"]
        gemms = [o for o in ops if o.name == "mem.gemm"]
        if len(gemms) != 1 or any(
            o.name != "mem.gemm" and not o.name.startswith("scalar.") for o in ops
        ):
            return False
        g = gemms[0]
        return all(v in self.bufs for v in g.operands[:3]) and all(
            v in self.host for v in g.operands[3:9]
        )


def chain(op: Op) -> list:
    """op and the loops perfectly nested in it (no carries, one loop per body)."""
    out = [op]
    cur = op
    while True:
        inner = _only_op(cur.regions[0].blocks[0].ops)
        if inner is not None and inner.name == "loop.for" and len(inner.operands) <= 2:
            cur = inner
            out.append(cur)
        else:
            return out


_EFFECTS = frozenset(("mem.store", "mem.copy", "mem.gemm", "loop.assert"))


def _has_effects(op: Op) -> bool:
    """Whether op or an op nested in it stores, copies, multiplies or asserts."""
    if op.name in _EFFECTS:
        return True
    for r in op.regions:
        for b in r.blocks:
            for o in b.ops:
                if o.name in _EFFECTS or (o.regions and _has_effects(o)):
                    return True
    return False


def _stores_partitioned(op: Op, levels: list) -> bool:
    """Whether the only side effects in op are stores that give every iteration of
    the reduction's `levels` its own elements: each written buffer is indexed by
    every level's index at some axis in all its accesses (partitioned), so
    chunks of the iterations may run in any order, in parallel."""
    got = _accesses(op, ("mem.copy", "mem.gemm", "loop.assert"))
    return got is not None and all(_disjoint(*got, L.regions[0].block.args[0]) for L in levels)


def _only_op(ops: list):
    """The one op of `ops` that is not a loop.yield, or None when there are more or
    none (looks no further than the second)."""
    found = None
    for o in ops:
        if o.name != "loop.yield":
            if found is not None:
                return None
            found = o
    return found


def reduction_levels(op: Op) -> list:
    """The loops of a reduce kernel marked on op, outermost first."""
    levels = [op]
    for _ in range(op.attrs["levels"] - 1):
        body = levels[-1].regions[0].block
        levels.append(next(o for o in body.ops if o.name == "loop.for"))
    return levels


def partitioned(nest: Op, var: Value) -> bool:
    """True when iterations of the loop with index `var` (inside nest) touch
    disjoint elements of every buffer the nest writes: each such buffer is
    accessed through one value, always with `var` as the index of one axis."""
    got = _accesses(nest)
    return got is not None and _disjoint(*got, var)


def _accesses(nest: Op, refused=("mem.copy", "mem.gemm")):
    """(accesses, written) of the loads and stores in nest: (buffer, indices) of
    each, and the storage roots stored to; None when nest holds a `refused` op
    (a copy or a product: their accesses are not indexed loads and stores)."""
    accesses = []
    written = set()
    for o in nest.walk():
        if o.name in refused:
            return None
        if o.name == "mem.store":
            accesses.append((o.operands[1], list(o.operands[2:])))
            written.add(storage_root(o.operands[1]))
        elif o.name == "mem.load":
            accesses.append((o.operands[0], list(o.operands[1:])))
    return accesses, written


def _disjoint(accesses: list, written: set, var: Value) -> bool:
    for wb in written:
        same = [(b, idx) for b, idx in accesses if storage_root(b) is wb]
        bufs = {b for b, _ in same}
        if len(bufs) != 1:
            return False
        axes = None
        for _, idx in same:
            here = {k for k, i in enumerate(idx) if i is var}
            axes = here if axes is None else axes & here
        if not axes:
            return False
    return True

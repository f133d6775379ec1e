"""lower-to-loops: tg IR -> loop IR (irc/ops/loop.py: buffers, loop nests whose
bounds are named dims read at run time, scalar ops), the input of the backends.

    func.func @f(%x: f32[N, 4]) -> (f32[N, 4]) {         func.func @f(%x: f32[N, 4], %out0: f32[N, 4]) -> () attributes {dims = ["N"], n_inputs = 1, n_outputs = 1, ...} {
      %e = tg.exp %x : f32[N, 4]                             %c0 = loop.dim {dim = 0} : i64
      %y = tg.mul %e, %x : f32[N, 4]              ->         %N = loop.dim {dim = "N"} : i64
      func.return %y                                         %c4 = loop.dim {dim = 4} : i64
    }                                                        loop.for %c0, %N {parallel = true} ({
                                                             ^bb0(%i: i64):
                                                               loop.for %c0, %c4 {parallel = true} ({
                                                               ^bb0(%j: i64):
                                                                 %a = mem.load %x, %i, %j : f32
                                                                 %b = scalar.exp %a : f32
                                                                 %c = scalar.mul %b, %a : f32
                                                                 mem.store %c, %out0, %i, %j
                                                                 ...

What it does, per function:
  * Fusion: elementwise ops (the ELEMENTWISE trait, broadcast_to, scalar
    constants, tg.dim) whose every user is an elementwise op of the same shape
    in the same block are not materialised: they are evaluated inside their
    users' loop nest, so a chain of elementwise ops is one loop nest ("one
    group"). A group may also feed a sum/mean/max/min reduction directly.
    `tg.fused` ops (from a fusion pass: a region of rank-0 tg ops over an
    iteration `shape`, optionally reduced) are lowered the same way.
  * Buffers: every materialised value gets a buffer. Results returned by the
    function are computed directly into the output buffers; a group whose
    input dies in it and has its shape and dtype writes in place into that
    input; an update `W <- f(W, ...)` computed by an elementwise group writes
    in place into W's buffer when every read of the old W comes before it
    (Theano semantics: all reads see the value from before the call);
    otherwise updates are copied into the shared buffers after the outputs.
    Reshape and flatten are views. All allocations are in the entry block.
  * Matrix products become mem.gemm (BLAS) for f32/f64 (a transpose feeding
    a product becomes a trans flag), loops otherwise; conv1d/conv2d are
    im2col + one gemm per image; scan is a loop.for whose carries live in
    buffers (the final carries are the carry buffers) and whose outputs are
    written into the stacked results.

The table LOWERINGS maps each tg op to its rule; a test checks every tg op in
the registry has one. Imports only irc.ir, irc.ops and the pass manager.
"""

from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass
from typing import Optional

import numpy as np

import irc.ops.loop  # noqa: F401  (registers the loop dialects)
from irc.ir.builder import Builder
from irc.ir.core import Block, Module, Op, OpResult, Region, Value
from irc.ir.dims import dim_add, dim_floordiv, dim_mul, dim_names, dim_sub
from irc.ir.errors import CompileError
from irc.ir.types import BOOL, F64, I32, I64, DType, TensorType, promote_dtypes
from irc.ops.common import dtype_attr, int_pair, norm_axes, norm_axis
from irc.ops.registry import ELEMENTWISE, REGISTRY
from irc.passes.pass_manager import Pass, register


@register
@dataclass
class LowerToLoops(Pass):
    name = "lower-to-loops"
    summary = "lower tg ops to loop nests over buffers (loop, mem and scalar dialects)"

    def run(self, module: Module) -> bool:
        lower_module(module)
        return True


def lower_module(module: Module) -> Module:
    """Lower every function of `module` in place; returns it."""
    for op in list(module.body.ops):
        if op.name != "func.func":
            continue
        if op.attrs.get("visibility") == "private":
            # Inlined defs nobody calls any more.
            op.drop_all_references()
            module.body.remove(op)
            continue
        new = FuncLowerer(module, op).lower()
        module.body.insert_before(op, new)
        op.drop_all_references()
        module.body.remove(op)
    module.attrs = dict(module.attrs)
    module.attrs["stage"] = "loops"
    return module


# -- helpers -------------------------------------------------------------------------------

IDX = TensorType(I64, ())
BOOL_T = TensorType(BOOL, ())


def S(dtype: DType) -> TensorType:
    return TensorType(dtype, ())


def _prod(dims) -> object:
    p = 1
    for d in dims:
        p = dim_mul(p, d)
    return p


# Elementwise tg ops lowered through SCALAR_RULES (below) when inside a group.
def _is_elementwise(op: Op) -> bool:
    d = REGISTRY.get(op.name)
    return d is not None and d.has(ELEMENTWISE) and len(op.results) == 1


def _is_scalar_const(op: Op) -> bool:
    return op.name == "tg.constant" and op.attrs["value"].size == 1


def _fusible(op: Op) -> bool:
    """Ops that compute result[i] from operands at broadcast indices only."""
    return (
        _is_elementwise(op)
        or op.name == "tg.broadcast_to"
        or (op.name == "tg.fused" and not op.attrs.get("reduce") and len(op.results) == 1)
        or _is_scalar_const(op)
        or op.name == "tg.dim"
    )


REDUCE_KINDS = {"tg.sum": "sum", "tg.mean": "mean", "tg.max": "max", "tg.min": "min"}


class Emitter:
    """Builds loop IR at the end of a block, with values hoisted to the entry."""

    def __init__(self, fl: "FuncLowerer", block: Block):
        self.fl = fl
        self.b = Builder(block)

    def op(self, name, operands=(), types=(), regions=(), **attrs) -> Op:
        return self.b.create(name, list(operands), list(types), attrs, regions, self.fl.loc)

    def val(self, name, operands, t, **attrs) -> Value:
        return self.op(name, operands, [t], **attrs).results[0]

    def dim(self, d) -> Value:
        return self.fl.dim(d)

    def const(self, v, dtype: DType) -> Value:
        return self.fl.const(v, dtype)

    def s(self, name: str, *operands, t: Optional[TensorType] = None, **attrs) -> Value:
        """scalar.<name>; the result type defaults to the first operand's."""
        return self.val("scalar." + name, operands, t or operands[0].type, **attrs)

    def cast(self, v: Value, dtype: DType) -> Value:
        if v.type.dtype == dtype:
            return v
        return self.val("scalar.cast", [v], S(dtype))

    def load(self, buf: Value, idx) -> Value:
        return self.val("mem.load", [buf, *idx], S(buf.type.dtype))

    def store(self, v: Value, buf: Value, idx) -> None:
        self.op("mem.store", [v, buf, *idx])

    def add_i(self, a: Value, b: Value) -> Value:
        return self.s("add", a, b)

    def mul_i(self, a: Value, b: Value) -> Value:
        return self.s("mul", a, b)

    def loop(self, lo: Value, hi: Value, body, inits=(), parallel=False) -> list:
        """loop.for; body(em, i, *carried) returns the next carried values."""
        inits = list(inits)
        block = Block([IDX] + [v.type for v in inits])
        op = self.op("loop.for", [lo, hi, *inits], [v.type for v in inits],
                     [Region([block])], parallel=bool(parallel))
        inner = Emitter(self.fl, block)
        nxt = body(inner, block.args[0], *block.args[1:]) or []
        inner.op("loop.yield", list(nxt))
        return list(op.results)

    def nest(self, shape, body, parallel=True, idx=()):
        """Loops over every index of `shape` (outermost first); body(em, idx)."""
        shape = list(shape)
        if not shape:
            body(self, list(idx))
            return
        d0 = shape[0]

        def step(em, i):
            em.nest(shape[1:], body, parallel, list(idx) + [i])

        par = parallel(len(idx)) if callable(parallel) else parallel
        self.loop(self.dim(0), self.dim(d0), step, parallel=par)

    def reduce_nest(self, shape, body, acc, idx=()):
        """Loops over `shape` carrying scalars `acc` (a list); body(em, idx, *acc) -> next acc."""
        shape = list(shape)
        if not shape:
            return list(body(self, list(idx), *acc))

        def step(em, i, *a):
            return em.reduce_nest(shape[1:], body, list(a), list(idx) + [i])

        return self.loop(self.dim(0), self.dim(shape[0]), step, inits=acc)

    def assert_(self, cond: Value, message: str) -> None:
        self.op("loop.assert", [cond], message=message)


# -- scalar rules: one tg elementwise op on scalars ------------------------------------------

FLOAT_UNARY = {"exp", "log", "log1p", "sqrt", "tanh", "sigmoid", "softplus", "sin", "cos"}


def scalar_rule(em: Emitter, name: str, args: list, rtype: DType, attrs: dict) -> Value:
    """The scalar value of tg op `name` applied to scalars `args` (NumPy promotion)."""
    short = name.split(".", 1)[1]
    if short in ("lt", "le", "gt", "ge", "eq", "ne"):
        common = promote_dtypes(args[0].type.dtype, args[1].type.dtype)
        a, b = em.cast(args[0], common), em.cast(args[1], common)
        return em.s(short, a, b, t=BOOL_T)
    if short == "where":
        c, a, b = args
        return em.s("select", em.cast(c, BOOL), em.cast(a, rtype), em.cast(b, rtype), t=S(rtype))
    if short == "cast":
        return em.cast(args[0], rtype)
    if short == "clip":
        x, lo, hi = (em.cast(a, rtype) for a in args)
        return em.s("minimum", em.s("maximum", x, lo), hi)
    if short == "relu":
        x = em.cast(args[0], rtype)
        return em.s("maximum", x, em.const(0, rtype))
    vals = [em.cast(a, rtype) for a in args]
    if short in ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "and", "or"):
        return em.s(short, *vals)
    if short in ("neg", "abs", "square", "sign", "not") or short in FLOAT_UNARY:
        return em.s(short, *vals)
    raise CompileError(f"lower-to-loops: no scalar rule for {name}", em.fl.loc)


# -- the function lowerer -----------------------------------------------------------------------


class FuncLowerer:
    def __init__(self, module: Module, func: Op):
        self.module = module
        self.func = func
        self.loc = func.loc
        self.globals = {op.attrs["sym_name"]: op for op in module.body.ops if op.name == "tg.global"}

    # -- entry-block values ---------------------------------------------------------------------
    def dim(self, d) -> Value:
        key = ("dim", d)
        v = self.cache.get(key)
        if v is None:
            for n in dim_names(d):
                if n not in self.dim_names:
                    raise CompileError(
                        f"lower-to-loops: the dim {n} is not bound by the arguments of "
                        f"@{self.func.attrs['sym_name']}", self.loc)
            v = self.pro.create("loop.dim", [], [IDX], {"dim": d}, (), self.loc).results[0]
            self.cache[key] = v
        return v

    def const(self, value, dtype: DType) -> Value:
        if dtype.is_float:
            value = float(value)
        elif dtype.is_bool:
            value = bool(value)
        else:
            value = int(value)
        key = ("const", dtype.name, repr(value))
        v = self.cache.get(key)
        if v is None:
            v = self.pro.create("scalar.const", [], [S(dtype)], {"value": value}, (), self.loc).results[0]
            self.cache[key] = v
        return v

    def alloc(self, t: TensorType) -> Value:
        v = self.pro.create("mem.alloc", [], [t], {}, (), self.loc).results[0]
        self.temps.add(v)
        return v

    def global_buf(self, sym: str) -> Value:
        key = ("global", sym)
        v = self.cache.get(key)
        if v is None:
            t = self.globals[sym].attrs["type"]
            from irc.ir.core import SymbolRef

            v = self.pro.create("mem.global", [], [t], {"sym": SymbolRef(sym)}, (), self.loc).results[0]
            self.cache[key] = v
        return v

    # -- driver -----------------------------------------------------------------------------------
    def lower(self) -> Op:
        f = self.func
        body = f.regions[0].block
        res_types = list(f.attrs.get("res_types", ()))
        names: list = []
        for a in body.args:
            for d in a.type.shape:
                for n in sorted(dim_names(d)):
                    if n not in names:
                        names.append(n)
        self.dim_names = names
        arg_types = [a.type for a in body.args] + res_types
        arg_names = [a.name_hint for a in body.args] + [f"out{i}" for i in range(len(res_types))]
        self.entry = Block(arg_types, arg_names)
        self.pro = Builder(self.entry, 0)
        self.cache: dict = {}
        self.temps: set = set()  # buffers this lowering allocated (may be reused in place)
        self.viewed: set = set()  # tg values whose buffer some view aliases
        self.vals = {}
        n_in = len(body.args)
        for a, la in zip(body.args, self.entry.args):
            self.vals[a] = la
        outs = self.entry.args[n_in:]
        ret = body.terminator
        # Results computed straight into the output buffers.
        self.dest: dict = {}
        for v, o in zip(ret.operands, outs):
            if isinstance(v, OpResult) and v not in self.dest and v.op.name not in (
                "tg.read", "tg.reshape", "tg.flatten"):
                self.dest[v] = o
        self.inplace_updates: dict = {}  # tg value -> global sym it is computed into
        self.plan_updates(body)
        em = Emitter(self, self.entry)
        self.deferred_updates: list = []
        self.lower_block(em, body, self.vals)
        # Outputs first (they may read shared variables' old values), then the updates.
        for v, o in zip(ret.operands, outs):
            buf = self.buf(em, v, self.vals)
            if buf is not o:
                em.op("mem.copy", [buf, o])
        for sym, buf in self.deferred_updates:
            em.op("mem.copy", [buf, self.global_buf(sym)])
        em.op("func.return", [])
        attrs = dict(f.attrs)
        attrs["res_types"] = ()
        attrs["dims"] = tuple(names)
        attrs["n_inputs"] = n_in
        attrs["n_outputs"] = len(res_types)
        attrs["result_types"] = tuple(res_types)
        new = Op("func.func", [], [], attrs, [Region([self.entry])], f.loc)
        return new

    # -- planning -----------------------------------------------------------------------------------
    def plan_groups(self, block: Block) -> None:
        """Mark fusible ops whose users are all in one group of the same shape (inline)."""
        for op in reversed(block.ops):
            if not op.results or len(op.results) != 1:
                continue
            v = op.results[0]
            if not _fusible(op):
                continue
            roots = set()
            ok = bool(v.uses)
            for user, idx in v.uses:
                if user.parent is not block:
                    ok = False
                    break
                if _fusible(user) and user.results and user.results[0].type.shape == v.type.shape:
                    roots.add(self.group_root.get(user, user))
                elif user.name in REDUCE_KINDS and idx == 0:
                    roots.add(user)
                else:
                    ok = False
                    break
            cheap = _is_scalar_const(op) or op.name == "tg.dim"
            if cheap and all(_fusible(u) or u.name in REDUCE_KINDS for u, _ in v.uses) and all(
                    u.parent is block for u, _ in v.uses):
                self.inline.add(v)
                continue
            if ok and len(roots) == 1 and v not in self.dest:
                self.inline.add(v)
                self.group_root[op] = next(iter(roots))

    def plan_updates(self, body: Block) -> None:
        """Find updates that can be computed in place into the shared buffer."""
        self.inline: set = set()
        self.group_root: dict = {}
        self.absorbed: set = set()
        self.plan_groups(body)
        pos = {op: i for i, op in enumerate(body.ops)}

        def emit_pos(user: Op) -> int:
            top = user
            while top.parent is not body:
                top = top.parent_op()
                if top is None:
                    return 1 << 30
            root = self.group_root.get(top, top)
            return pos[root]

        reads: dict = {}
        for op in self.func.walk():
            if op.name == "tg.read":
                reads.setdefault(op.attrs["sym"].name, []).append(op.results[0])
        for op in body.ops:
            if op.name != "tg.update":
                continue
            sym = op.attrs["sym"].name
            v = op.operands[0]
            if not isinstance(v, OpResult) or v in self.inline or v.op.parent is not body:
                continue
            r = v.op
            if not (_fusible(r) and _is_elementwise(r) or r.name == "tg.broadcast_to"):
                continue
            if v.type != self.globals[sym].attrs["type"] or v in self.dest:
                continue
            if v in self.inplace_updates:
                continue
            p = pos[r]
            safe = True
            for rv in reads.get(sym, []):
                for user, _ in rv.uses:
                    if user is op:
                        continue
                    q = emit_pos(user)
                    if q < p:
                        continue
                    if q == p and user.parent is body and self.group_root.get(user, user) is r \
                            and rv.type.shape == v.type.shape:
                        continue
                    safe = False
                if not safe:
                    break
            if safe:
                self.inplace_updates[v] = sym

    # -- values -------------------------------------------------------------------------------------
    def buf(self, em: Emitter, v: Value, vals) -> Value:
        """The buffer of tg value v, materialising inline scalars on demand."""
        b = vals.get(v)
        if b is not None:
            if isinstance(b, tuple):  # an absorbed transpose: materialise it now
                b = self.materialize_transpose(em, v, vals)
            return b
        if isinstance(v, OpResult) and (v in self.inline or _fusible(v.op)):
            out = self.result_buf(v)
            em.nest(v.type.shape, lambda e, idx: e.store(self.expr(e, v, idx, vals, {}, force=True), out, idx))
            vals[v] = out
            return out
        if isinstance(v, OpResult) and v.op.name == "tg.constant":
            return self.const_buf(v, vals)
        raise CompileError(f"lower-to-loops: no buffer for a value of {getattr(v, 'op', None)}", self.loc)

    def const_buf(self, v: Value, vals) -> Value:
        arr = v.op.attrs["value"]
        b = self.pro.create("mem.constant", [], [v.type], {"value": arr}, (), self.loc).results[0]
        vals[v] = b
        return b

    def result_buf(self, v: Value, candidates=()) -> Value:
        """A buffer for the result v: its output buffer, a dying input, or a new one."""
        if v in self.inplace_updates:
            return self.global_buf(self.inplace_updates[v])
        d = self.dest.get(v)
        if d is not None:
            return d
        for c in candidates:
            return c
        return self.alloc(v.type)

    def index_map(self, em: Emitter, operand_shape, shape, idx):
        """Indices into an operand broadcast to `shape` (NumPy rules)."""
        off = len(shape) - len(operand_shape)
        zero = em.dim(0)
        return [zero if d == 1 else idx[k + off] for k, d in enumerate(operand_shape)]

    def expr(self, em: Emitter, v: Value, idx, vals, memo: dict, force=False) -> Value:
        """The scalar value of v at index idx, evaluating inline ops in place."""
        key = (v, tuple(id(i) for i in idx))
        got = memo.get(key)
        if got is not None:
            return got
        op = v.op if isinstance(v, OpResult) else None
        if op is not None and (force or v in self.inline) and _fusible(op) and v not in vals:
            out = self.eval_fusible(em, op, v, idx, vals, memo)
        else:
            b = self.buf(em, v, vals)
            out = em.load(b, idx if v.type.rank == len(idx) else idx[len(idx) - v.type.rank:])
        memo[key] = out
        return out

    def eval_fusible(self, em, op, v, idx, vals, memo) -> Value:
        shape = v.type.shape
        if op.name == "tg.constant":
            return em.const(op.attrs["value"].reshape(()).item(), v.type.dtype)
        if op.name == "tg.dim":
            return em.cast(em.dim(op.attrs["dim"]), v.type.dtype)
        if op.name == "tg.broadcast_to":
            x = op.operands[0]
            return self.expr(em, x, self.index_map(em, x.type.shape, shape, idx), vals, memo)
        if op.name == "tg.fused":
            return self.eval_fused_region(em, op, idx, vals, memo)[op.results.index(v)]
        args = [self.expr(em, x, self.index_map(em, x.type.shape, shape, idx), vals, memo)
                for x in op.operands]
        return scalar_rule(em, op.name, args, v.type.dtype, op.attrs)

    def eval_fused_region(self, em, op, idx, vals, memo) -> list:
        shape = tuple(op.attrs["shape"])
        block = op.regions[0].block
        env = {}
        for a, x in zip(block.args, op.operands):
            s = self.expr(em, x, self.index_map(em, x.type.shape, shape, idx), vals, memo)
            env[a] = em.cast(s, a.type.dtype)
        for inner in block.ops:
            if inner.name == "tg.yield":
                return [env[x] for x in inner.operands]
            if inner.name == "tg.constant":
                env[inner.results[0]] = em.const(inner.attrs["value"].reshape(()).item(),
                                                 inner.results[0].type.dtype)
                continue
            if inner.name == "tg.dim":
                env[inner.results[0]] = em.cast(em.dim(inner.attrs["dim"]), inner.results[0].type.dtype)
                continue
            if not _is_elementwise(inner):
                raise CompileError(f"lower-to-loops: {inner.name} inside tg.fused", inner.loc)
            env[inner.results[0]] = scalar_rule(em, inner.name, [env[x] for x in inner.operands],
                                                inner.results[0].type.dtype, inner.attrs)
        raise CompileError("tg.fused region without tg.yield", op.loc)

    def leaves(self, op: Op, out: list, seen: set) -> None:
        """Materialised values an inline group rooted at op reads."""
        for x in op.operands:
            if x in seen:
                continue
            seen.add(x)
            if isinstance(x, OpResult) and x in self.inline and _fusible(x.op):
                self.leaves(x.op, out, seen)
            else:
                out.append(x)

    def dying_inputs(self, op: Op, v: Value, vals) -> list:
        """Buffers of group inputs that can hold the result in place."""
        leaves: list = []
        self.leaves(op, leaves, set())
        members = set()
        stack = [op]
        while stack:
            o = stack.pop()
            members.add(o)
            for x in o.operands:
                if isinstance(x, OpResult) and x in self.inline and _fusible(x.op) and x.op not in members:
                    stack.append(x.op)
        out = []
        for x in leaves:
            b = vals.get(x)
            if b is None or isinstance(b, tuple) or b not in self.temps or x in self.viewed:
                continue
            if x.type != v.type or not isinstance(x, OpResult) or x.op.parent is not op.parent:
                continue
            if all(u in members for u, _ in x.uses):
                out.append(b)
        return out

    # -- blocks -----------------------------------------------------------------------------------
    def lower_block(self, em: Emitter, block: Block, vals) -> list:
        if block is not self.func.regions[0].block:
            self.plan_groups(block)
        self.plan_transposes(block)
        for op in block.ops:
            if op.name in ("func.return", "tg.yield"):
                return list(op.operands)
            if op.results and all(r in self.inline for r in op.results):
                continue
            self.loc = op.loc or self.loc
            rule = LOWERINGS.get(op.name)
            if rule is None:
                raise CompileError(f"lower-to-loops: no lowering for {op.name}", op.loc)
            rule(self, em, op, vals)
        return []

    def plan_transposes(self, block: Block) -> None:
        for op in block.ops:
            if op.name != "tg.transpose" or op.results[0].type.rank != 2:
                continue
            v = op.results[0]
            if v in self.dest or not v.uses:
                continue
            if all(u.name == "tg.matmul" and u.operands[0].type.rank >= 1 and u.operands[1].type.rank >= 1
                   and u.parent is block and _gemm_ok(u) and u.operands[i].type.rank == 2
                   for u, i in v.uses):
                self.absorbed.add(v)

    def materialize_transpose(self, em, v, vals):
        x = v.op.operands[0]
        out = self.result_buf(v)
        xb = self.buf(em, x, vals)
        em.nest(v.type.shape, lambda e, idx: e.store(e.load(xb, [idx[1], idx[0]]), out, idx))
        vals[v] = out
        return out


def _gemm_ok(op: Op) -> bool:
    return op.results[0].type.dtype.is_float and all(
        x.type.dtype == op.results[0].type.dtype for x in op.operands)


# -- rules ----------------------------------------------------------------------------------------


def lower_fusible(fl: FuncLowerer, em: Emitter, op: Op, vals) -> None:
    if op.name == "tg.fused" and op.attrs.get("reduce"):
        return lower_fused_reduce(fl, em, op, vals)
    if op.name == "tg.constant" and not _is_scalar_const(op):
        fl.const_buf(op.results[0], vals)
        return
    if len(op.results) > 1:  # a multi-result tg.fused: one loop nest, several stores
        shape = tuple(op.attrs["shape"])
        outs = [fl.result_buf(r) for r in op.results]

        def body(e, idx):
            vs = fl.eval_fused_region(e, op, idx, vals, {})
            for r, val, o in zip(op.results, vs, outs):
                e.store(e.cast(val, r.type.dtype), o, idx)

        em.nest(shape, body)
        for r, o in zip(op.results, outs):
            vals[r] = o
        return
    v = op.results[0]
    out = fl.result_buf(v, fl.dying_inputs(op, v, vals))
    em.nest(v.type.shape, lambda e, idx: e.store(fl.expr(e, v, idx, vals, {}, force=True), out, idx))
    vals[v] = out


def lower_read(fl, em, op, vals):
    vals[op.results[0]] = fl.global_buf(op.attrs["sym"].name)


def lower_update(fl, em, op, vals):
    sym = op.attrs["sym"].name
    v = op.operands[0]
    if fl.inplace_updates.get(v) == sym:
        return
    b = fl.buf(em, v, vals)
    root = _root_value(v)
    if isinstance(root, OpResult) and root.op.name == "tg.read":
        snap = fl.alloc(v.type)  # the value of another shared variable: keep it now
        em.op("mem.copy", [b, snap])
        b = snap
    fl.deferred_updates.append((sym, b))


def _root_value(v: Value) -> Value:
    while isinstance(v, OpResult) and v.op.name in ("tg.reshape", "tg.flatten"):
        v = v.op.operands[0]
    return v


def lower_view(fl, em, op, vals):
    x = op.operands[0]
    b = fl.buf(em, x, vals)
    v = op.results[0]
    fl.viewed.add(x)
    fl.viewed.add(v)
    nb = em.val("mem.view", [b], v.type)
    vals[v] = nb
    # a returned reshape still has to reach its output buffer: handled by the final copy


def lower_transpose(fl, em, op, vals):
    v = op.results[0]
    if v in fl.absorbed:
        vals[v] = ("T", op.operands[0])
        return
    x = op.operands[0]
    perm = op.attrs.get("perm")
    r = x.type.rank
    perm = tuple(range(r))[::-1] if perm is None else tuple(norm_axis(p, r) for p in perm)
    xb = fl.buf(em, x, vals)
    out = fl.result_buf(v)

    def body(e, idx):
        src = [None] * r
        for j, p in enumerate(perm):
            src[p] = idx[j]
        e.store(e.load(xb, src), out, idx)

    em.nest(v.type.shape, body)
    vals[v] = out


def _reduce_identity(em, kind, dtype):
    if kind in ("sum", "mean"):
        return em.const(0, dtype)
    if dtype.is_float:
        return em.const(-np.inf if kind == "max" else np.inf, dtype)
    if dtype.is_bool:
        return em.const(kind == "min", dtype)
    info = np.iinfo(dtype.np)
    return em.const(info.min if kind == "max" else info.max, dtype)


def _combine(em, kind, a, b):
    if kind in ("sum", "mean"):
        return em.s("add", a, b, reassoc=True)
    return em.s("maximum" if kind == "max" else "minimum", a, b)


def reduce_into(fl, em, in_shape, axes, keep, kind, rdtype, out, value_at):
    """out[kept] = reduce(value_at(idx)) over `axes` of `in_shape`."""
    rank = len(in_shape)
    j0 = rank
    while j0 > 0 and (j0 - 1) in axes:
        j0 -= 1
    prefix = list(range(j0))
    suffix = list(range(j0, rank))
    need_init = any(a in axes for a in prefix)
    count = _prod([in_shape[a] for a in axes])

    def out_idx(e, idx):
        zero = e.dim(0)
        return [zero if a in axes else idx[a] for a in range(rank) if keep or a not in axes]

    if need_init:
        ident = _reduce_identity(em, kind, rdtype)
        em.nest(out.type.shape, lambda e, idx: e.store(ident, out, idx))

    def outer(e, idx):
        if suffix:
            acc0 = _reduce_identity(e, kind, rdtype)
            (acc,) = e.reduce_nest([in_shape[a] for a in suffix],
                                   lambda e2, sidx, a: [_combine(e2, kind, a, e2.cast(value_at(e2, idx + sidx), rdtype))],
                                   [acc0])
            # (the suffix loop indices are appended to the prefix ones)
        else:
            acc = e.cast(value_at(e, idx), rdtype)
        oi = out_idx(e, idx + [None] * len(suffix)) if suffix else out_idx(e, idx)
        if need_init:
            acc = _combine(e, kind, e.load(out, oi), acc)
        elif kind == "mean":
            acc = e.s("div", acc, e.cast(e.dim(count), rdtype))
        e.store(acc, out, oi)

    em.nest([in_shape[a] for a in prefix], outer, parallel=lambda k: prefix[k] not in axes)
    if need_init and kind == "mean":
        n = em.cast(em.dim(count), rdtype)
        em.nest(out.type.shape, lambda e, idx: e.store(e.s("div", e.load(out, idx), n), out, idx))


def lower_reduce(fl, em, op, vals):
    kind = REDUCE_KINDS[op.name]
    x = op.operands[0]
    v = op.results[0]
    axes = set(norm_axes(op.attrs.get("axis"), x.type.rank))
    keep = bool(op.attrs.get("keepdims", False))
    out = fl.result_buf(v)
    memo: dict = {}

    def value_at(e, idx):
        memo.clear()  # one evaluation per element (loops differ per call site)
        return fl.expr(e, x, idx, vals, memo)

    reduce_into(fl, em, x.type.shape, axes, keep, kind, v.type.dtype, out, value_at)
    vals[v] = out


def lower_fused_reduce(fl, em, op, vals):
    shape = tuple(op.attrs["shape"])
    kind = op.attrs["reduce"]
    axes = set(norm_axes(op.attrs.get("axis"), len(shape)))
    keep = bool(op.attrs.get("keepdims", False))
    for k, r in enumerate(op.results):
        out = fl.result_buf(r)

        def value_at(e, idx, k=k):
            return fl.eval_fused_region(e, op, idx, vals, {})[k]

        reduce_into(fl, em, shape, axes, keep, kind, r.type.dtype, out, value_at)
        vals[r] = out


def lower_argreduce(fl, em, op, vals):
    x = op.operands[0]
    v = op.results[0]
    xb = fl.buf(em, x, vals)
    keep = bool(op.attrs.get("keepdims", False))
    axis = op.attrs.get("axis")
    is_max = op.name == "tg.argmax"
    out = fl.result_buf(v)
    if axis is None:
        n = _prod(x.type.shape)
        xb = em.val("mem.view", [xb], x.type.with_shape((n,)))
        shape, ax = (n,), 0
    else:
        if isinstance(axis, tuple):
            (axis,) = axis
        shape, ax = x.type.shape, norm_axis(axis, x.type.rank)
    dt = x.type.dtype
    cdt = I32 if dt.is_bool else dt
    outer_shape = [d for a, d in enumerate(shape) if a != ax]

    def body(e, oidx):
        def at(i):
            idx = list(oidx[:ax]) + [i] + list(oidx[ax:])
            return e.cast(e.load(xb, idx), cdt)

        best0 = at(e.dim(0))

        def step(e2, i, best, bi):
            xv = e2.cast(e2.load(xb, list(oidx[:ax]) + [i] + list(oidx[ax:])), cdt)
            better = e2.s("gt" if is_max else "lt", xv, best, t=BOOL_T)
            if cdt.is_float:
                xnan = e2.s("ne", xv, xv, t=BOOL_T)
                bnan = e2.s("ne", best, best, t=BOOL_T)
                better = e2.s("or", better, e2.s("and", xnan, e2.s("not", bnan)))
            return [e2.s("select", better, xv, best), e2.s("select", better, i, bi)]

        _, bi = e.loop(e.dim(1), e.dim(shape[ax]), step, inits=[best0, e.dim(0)])
        res = e.cast(bi, I32)
        if axis is None:
            oi = [e.dim(0)] * v.type.rank
        else:
            oi = list(oidx[:ax]) + ([e.dim(0)] if keep else []) + list(oidx[ax:])
        e.store(res, out, oi)

    em.nest(outer_shape, body)
    vals[v] = out


def lower_matmul(fl, em, op, vals):
    a, b = op.operands
    v = op.results[0]
    rt = v.type.dtype
    out = fl.result_buf(v)
    vals[v] = out
    ash = a.type.shape if a.type.rank > 1 else (1,) + a.type.shape
    bsh = b.type.shape if b.type.rank > 1 else b.type.shape + (1,)
    M, K, N = ash[-2], ash[-1], bsh[-1]
    if not _gemm_ok(op):
        return _matmul_loops(fl, em, op, vals, out)
    trans_a = trans_b = False
    ab = vals.get(a)
    if isinstance(ab, tuple):
        ab, trans_a = fl.buf(em, ab[1], vals), True
    else:
        ab = fl.buf(em, a, vals)
    bb = vals.get(b)
    if isinstance(bb, tuple):
        bb, trans_b = fl.buf(em, bb[1], vals), True
    else:
        bb = fl.buf(em, b, vals)
    abatch, bbatch = ash[:-2], bsh[:-2]
    obatch = v.type.shape[: len(v.type.shape) - (a.type.rank > 1) - (b.type.rank > 1)]
    lda = M if trans_a else K
    ldb = K if trans_b else N
    d = em.dim
    if not bbatch:
        # Fold a's batch axes into M: [..., M, K] @ [K, N] is one product.
        Mt = _prod(list(abatch) + [M])
        em.op("mem.gemm", [ab, bb, out, d(Mt), d(N), d(K), d(lda), d(ldb), d(N), d(0), d(0), d(0)],
              trans_a=trans_a, trans_b=trans_b, alpha=1.0, beta=0.0)
        return
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
        e.op("mem.gemm", [ab, bb, out, d(M), d(N), d(K), d(lda), d(ldb), d(N), oa, ob, oc],
             trans_a=trans_a, trans_b=trans_b, alpha=1.0, beta=0.0)

    em.nest(obatch, body, parallel=False)


def _matmul_loops(fl, em, op, vals, out):
    a, b = op.operands
    v = op.results[0]
    rt = v.type.dtype
    ab, bb = fl.buf(em, a, vals), fl.buf(em, b, vals)
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
                ai = fl.index_map(e2, a.type.shape[:-2], batch, batch) + [i, k] if ar > 2 else [i, k]
            if br == 1:
                bi = [k]
            else:
                j = idx[orank - 1]
                batch = idx[: orank - 2] if ar > 1 else idx[: orank - 1]
                bi = fl.index_map(e2, b.type.shape[:-2], batch, batch) + [k, j] if br > 2 else [k, j]
            p = e2.s("mul", e2.cast(e2.load(ab, ai), rt), e2.cast(e2.load(bb, bi), rt))
            return [e2.s("add", acc, p)]

        (acc,) = e.loop(e.dim(0), e.dim(K), step, inits=[e.const(0, rt)])
        e.store(acc, out, idx)

    em.nest(v.type.shape, body)


def _softmax_rows(fl, em, x, axis, body_fn):
    """For each row along `axis`: body_fn(e, at(i) -> index list, n)."""
    shape = x.type.shape
    other = [d for k, d in enumerate(shape) if k != axis]

    def outer(e, oidx):
        def at(i):
            return list(oidx[:axis]) + [i] + list(oidx[axis:])

        body_fn(e, at, shape[axis], oidx)

    em.nest(other, outer)


def _row_max(e, xb, at, n, dt):
    (m,) = e.loop(e.dim(0), e.dim(n), lambda e2, i, acc: [e2.s("maximum", acc, e2.load(xb, at(i)))],
                  inits=[e.const(-np.inf, dt)])
    return m


def _row_sum(e, n, f, dt):
    (s,) = e.loop(e.dim(0), e.dim(n), lambda e2, i, acc: [e2.s("add", acc, f(e2, i), reassoc=True)],
                  inits=[e.const(0, dt)])
    return s


def lower_softmax(fl, em, op, vals):
    x = op.operands[0]
    v = op.results[0]
    dt = v.type.dtype
    axis = norm_axis(op.attrs.get("axis", -1), x.type.rank)
    xb = fl.buf(em, x, vals)
    out = fl.result_buf(v)
    log = op.name == "tg.log_softmax"

    def row(e, at, n, oidx):
        m = _row_max(e, xb, at, n, dt)
        if log:
            s = _row_sum(e, n, lambda e2, i: e2.s("exp", e2.s("sub", e2.load(xb, at(i)), m)), dt)
            lse = e.s("add", m, e.s("log", s))
            e.loop(e.dim(0), e.dim(n), lambda e2, i: e2.store(e2.s("sub", e2.load(xb, at(i)), lse), out, at(i)))
        else:
            def ex(e2, i):
                t = e2.s("exp", e2.s("sub", e2.load(xb, at(i)), m))
                e2.store(t, out, at(i))
                return t

            s = _row_sum(e, n, ex, dt)
            r = e.s("div", e.const(1, dt), s)
            e.loop(e.dim(0), e.dim(n), lambda e2, i: e2.store(e2.s("mul", e2.load(out, at(i)), r), out, at(i)))

    _softmax_rows(fl, em, x, axis, row)
    vals[v] = out


def lower_crossentropy(fl, em, op, vals):
    p, y = op.operands
    v = op.results[0]
    rt = v.type.dtype
    pb, yb = fl.buf(em, p, vals), fl.buf(em, y, vals)
    out = fl.result_buf(v)
    logits = op.name == "tg.crossentropy_logits"
    ax = p.type.rank - 1
    K = p.type.shape[-1]
    int_labels = y.type.dtype.is_int

    def row(e, at, n, oidx):
        def px(e2, i):
            return e2.cast(e2.load(pb, at(i)), rt)

        if logits:
            (m,) = e.loop(e.dim(0), e.dim(n), lambda e2, i, acc: [e2.s("maximum", acc, px(e2, i))],
                          inits=[e.const(-np.inf, rt)])
            s = _row_sum(e, n, lambda e2, i: e2.s("exp", e2.s("sub", px(e2, i), m)), rt)
            lse = e.s("add", m, e.s("log", s))

            def logp(e2, i):
                return e2.s("sub", px(e2, i), lse)
        else:
            def logp(e2, i):
                return e2.s("log", px(e2, i))

        if int_labels:
            lab = e.cast(e.load(yb, oidx), I64)
            ok = e.s("and", e.s("ge", lab, e.dim(0), t=BOOL_T), e.s("lt", lab, e.dim(n), t=BOOL_T))
            e.assert_(ok, f"{op.name}: label out of range [0, {n})")
            loss = e.s("neg", logp(e, lab))
        else:
            tot = _row_sum(e, n, lambda e2, i: e2.s("mul", e2.cast(e2.load(yb, at(i)), rt), logp(e2, i)), rt)
            loss = e.s("neg", tot)
        e.store(loss, out, oidx)

    _softmax_rows(fl, em, p, ax, row)
    vals[v] = out


def _static_start(item, d):
    """(start index as a dim, step) of a slice item on an axis of size d."""
    _, start, stop, step = item
    if isinstance(d, int):
        s, _, st = slice(start, stop, step).indices(d)
        return s, st
    if step > 0:
        if start is None:
            return 0, step
        return (dim_add(d, start) if start < 0 else start), step
    if start is None:
        return dim_sub(d, 1), step
    return (dim_add(d, start) if start < 0 else start), step


def lower_index(fl, em, op, vals):
    x = op.operands[0]
    v = op.results[0]
    items = [tuple(it) for it in op.attrs.get("items", ())]
    used = sum(1 for it in items if it[0] in ("int", "slice"))
    if not any(it[0] == "ellipsis" for it in items):
        items.append(("ellipsis",))
    plan = []  # per input axis: ("out", out_axis, start, step) | ("fixed", index dim)
    oaxis = 0
    axis = 0
    for it in items:
        if it[0] == "none":
            oaxis += 1
        elif it[0] == "ellipsis":
            for _ in range(x.type.rank - used):
                plan.append(("out", oaxis, 0, 1))
                oaxis += 1
                axis += 1
        elif it[0] == "int":
            k, d = it[1], x.type.shape[axis]
            plan.append(("fixed", k if k >= 0 else dim_add(d, k), k, d))
            axis += 1
        else:
            start, step = _static_start(it, x.type.shape[axis])
            plan.append(("out", oaxis, start, step))
            oaxis += 1
            axis += 1
    xb = fl.buf(em, x, vals)
    for p in plan:
        if p[0] == "fixed" and not isinstance(p[3], int):
            i = em.dim(p[1]) if not isinstance(p[1], int) else em.dim(p[1])
            ok = em.s("and", em.s("ge", i, em.dim(0), t=BOOL_T), em.s("lt", i, em.dim(p[3]), t=BOOL_T))
            em.assert_(ok, f"index {p[2]} is out of range for an axis of size {p[3]}")
    out = fl.result_buf(v)

    def body(e, idx):
        src = []
        for p in plan:
            if p[0] == "fixed":
                src.append(e.dim(p[1]))
            else:
                _, oa, start, step = p
                i = idx[oa]
                if step != 1:
                    i = e.mul_i(i, e.const(step, I64))
                if start != 0:
                    i = e.add_i(i, e.dim(start))
                src.append(i)
        e.store(e.load(xb, src), out, idx)

    em.nest(v.type.shape, body)
    vals[v] = out


def _load_index(e, buf) -> Value:
    return e.cast(e.load(buf, []), I64)


def lower_dynamic_slice(fl, em, op, vals):
    x, *starts = op.operands
    v = op.results[0]
    axes = op.attrs.get("axes", ())
    if isinstance(axes, int):
        axes = (axes,)
    axes = [norm_axis(a, x.type.rank) for a in axes]
    sizes = list(op.attrs.get("sizes", ()))
    xb = fl.buf(em, x, vals)
    offs = {}
    for a, s, n in zip(axes, starts, sizes):
        st = _load_index(em, fl.buf(em, s, vals))
        end = em.add_i(st, em.dim(n))
        ok = em.s("and", em.s("ge", st, em.dim(0), t=BOOL_T), em.s("le", end, em.dim(x.type.shape[a]), t=BOOL_T))
        em.assert_(ok, f"dynamic slice of size {n} is out of range for axis {a} of size {x.type.shape[a]}")
        offs[a] = st
    out = fl.result_buf(v)

    def body(e, idx):
        src = [e.add_i(i, offs[k]) if k in offs else i for k, i in enumerate(idx)]
        e.store(e.load(xb, src), out, idx)

    em.nest(v.type.shape, body)
    vals[v] = out


def lower_dynamic_index(fl, em, op, vals):
    x, *ids = op.operands
    v = op.results[0]
    axes = op.attrs.get("axes", ())
    if isinstance(axes, int):
        axes = (axes,)
    axes = [norm_axis(a, x.type.rank) for a in axes]
    xb = fl.buf(em, x, vals)
    fixed = {}
    for a, s in zip(axes, ids):
        i = _load_index(em, fl.buf(em, s, vals))
        n = em.dim(x.type.shape[a])
        i = em.s("select", em.s("lt", i, em.dim(0), t=BOOL_T), em.add_i(i, n), i)
        ok = em.s("and", em.s("ge", i, em.dim(0), t=BOOL_T), em.s("lt", i, n, t=BOOL_T))
        em.assert_(ok, f"index is out of range for axis {a} of size {x.type.shape[a]}")
        fixed[a] = i
    out = fl.result_buf(v)

    def body(e, idx):
        it = iter(idx)
        src = [fixed[k] if k in fixed else next(it) for k in range(x.type.rank)]
        e.store(e.load(xb, src), out, idx)

    em.nest(v.type.shape, body)
    vals[v] = out


def lower_gather(fl, em, op, vals):
    x, *ids = op.operands
    v = op.results[0]
    axes = op.attrs.get("axes", (0,))
    if isinstance(axes, int):
        axes = (axes,)
    axes = [norm_axis(a, x.type.rank) for a in axes]
    a0, k = axes[0], len(axes)
    xb = fl.buf(em, x, vals)
    ibs = [fl.buf(em, i, vals) for i in ids]
    bshape = v.type.shape[a0: v.type.rank - (x.type.rank - a0 - k)]
    out = fl.result_buf(v)

    def body(e, idx):
        pre = idx[:a0]
        bidx = idx[a0: a0 + len(bshape)]
        post = idx[a0 + len(bshape):]
        src = list(pre)
        for j, (ib, iv) in enumerate(zip(ibs, ids)):
            i = e.cast(e.load(ib, fl.index_map(e, iv.type.shape, bshape, bidx)), I64)
            n = e.dim(x.type.shape[a0 + j])
            i = e.s("select", e.s("lt", i, e.dim(0), t=BOOL_T), e.add_i(i, n), i)
            ok = e.s("and", e.s("ge", i, e.dim(0), t=BOOL_T), e.s("lt", i, n, t=BOOL_T))
            e.assert_(ok, f"index is out of range for axis {a0 + j} of size {x.type.shape[a0 + j]}")
            src.append(i)
        e.store(e.load(xb, src + list(post)), out, idx)

    em.nest(v.type.shape, body)
    vals[v] = out


def lower_concat(fl, em, op, vals):
    v = op.results[0]
    axis = norm_axis(op.attrs.get("axis", 0), v.type.rank)
    out = fl.result_buf(v)
    off = 0
    for x in op.operands:
        xb = fl.buf(em, x, vals)

        def body(e, idx, xb=xb, off=off):
            dst = list(idx)
            if off != 0:
                dst[axis] = e.add_i(idx[axis], e.dim(off))
            e.store(e.cast(e.load(xb, idx), v.type.dtype), out, dst)

        em.nest(x.type.shape, body)
        off = dim_add(off, x.type.shape[axis])
    vals[v] = out


def lower_stack(fl, em, op, vals):
    v = op.results[0]
    axis = norm_axis(op.attrs.get("axis", 0), v.type.rank)
    out = fl.result_buf(v)
    for k, x in enumerate(op.operands):
        xb = fl.buf(em, x, vals)

        def body(e, idx, xb=xb, k=k):
            dst = list(idx[:axis]) + [e.dim(k)] + list(idx[axis:])
            e.store(e.cast(e.load(xb, idx), v.type.dtype), out, dst)

        em.nest(x.type.shape, body)
    vals[v] = out


def lower_arange(fl, em, op, vals):
    v = op.results[0]
    out = fl.result_buf(v)
    em.nest(v.type.shape, lambda e, idx: e.store(e.cast(idx[0], v.type.dtype), out, idx))
    vals[v] = out


def lower_one_hot(fl, em, op, vals):
    y = op.operands[0]
    v = op.results[0]
    yb = fl.buf(em, y, vals)
    out = fl.result_buf(v)

    def body(e, idx):
        lab = e.cast(e.load(yb, idx[:-1]), I64)
        e.store(e.cast(e.s("eq", lab, idx[-1], t=BOOL_T), v.type.dtype), out, idx)

    em.nest(v.type.shape, body)
    vals[v] = out


def lower_max_pool2d(fl, em, op, vals):
    x = op.operands[0]
    v = op.results[0]
    size = int_pair(op.attrs.get("size"), "size")
    stride = op.attrs.get("stride")
    stride = size if stride is None else int_pair(stride, "stride")
    xb = fl.buf(em, x, vals)
    out = fl.result_buf(v)
    dt = v.type.dtype
    cdt = I32 if dt.is_bool else dt

    def body(e, idx):
        lead, oh, ow = idx[:-2], idx[-2], idx[-1]
        h0 = e.mul_i(oh, e.const(stride[0], I64))
        w0 = e.mul_i(ow, e.const(stride[1], I64))
        acc = e.cast(e.load(xb, lead + [h0, w0]), cdt)
        for u in range(size[0]):
            for w in range(size[1]):
                if u == 0 and w == 0:
                    continue
                hi = e.add_i(h0, e.const(u, I64)) if u else h0
                wi = e.add_i(w0, e.const(w, I64)) if w else w0
                acc = e.s("maximum", acc, e.cast(e.load(xb, lead + [hi, wi]), cdt))
        e.store(e.cast(acc, dt), out, idx)

    em.nest(v.type.shape, body)
    vals[v] = out


def _conv_pads(e, padding, nd, in_dims, k_dims, strides):
    """Padding before each spatial axis, as i64 values."""
    pads = []
    for i in range(nd):
        h, k, s = in_dims[i], k_dims[i], strides[i]
        if padding == "valid":
            pads.append(e.dim(0))
        elif padding == "full":
            pads.append(e.dim(dim_sub(k, 1)))
        elif padding == "same":
            out = dim_floordiv(dim_add(h, s - 1), s)
            total = dim_sub(dim_add(dim_mul(dim_sub(out, 1), s), k), h)
            t = e.s("maximum", e.dim(total), e.dim(0))
            pads.append(e.s("floordiv", t, e.const(2, I64)))
        else:
            p = padding if isinstance(padding, (tuple, list)) else (padding,) * nd
            pads.append(e.dim(int(p[i])))
    return pads


def lower_conv(fl, em, op, vals):
    x, w = op.operands
    v = op.results[0]
    nd = 2 if op.name == "tg.conv2d" else 1
    rt = v.type.dtype
    stride = op.attrs.get("stride", 1)
    if nd == 1:
        strides = (stride[0] if isinstance(stride, tuple) else stride,)
    else:
        strides = int_pair(stride, "stride")
    padding = op.attrs.get("padding", "valid")
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        padding = (int(padding),) * nd
    flip = bool(op.attrs.get("flip", False))
    xb, wb = fl.buf(em, x, vals), fl.buf(em, w, vals)
    if x.type.dtype != rt:
        xb = _cast_copy(fl, em, xb, rt)
    if w.type.dtype != rt:
        wb = _cast_copy(fl, em, wb, rt)
    Nn, C = x.type.shape[:2]
    F = w.type.shape[0]
    ins = list(x.type.shape[2:])
    ks = list(w.type.shape[2:])
    outs = list(v.type.shape[2:])
    P = _prod(outs)
    CK = _prod([C] + ks)
    pads = _conv_pads(em, padding, nd, ins, ks, strides)
    cols = fl.alloc(TensorType(rt, (Nn, P, CK)))
    colsv = em.val("mem.view", [cols], TensorType(rt, tuple([Nn] + outs + [C] + ks)))
    zero = em.const(0, rt)

    def im2col(e, idx):
        n = idx[0]
        o = idx[1:1 + nd]
        c = idx[1 + nd]
        kk = idx[2 + nd:]
        src = [n, c]
        valid = None
        for i in range(nd):
            ki = kk[i]
            if flip:
                ki = e.s("sub", e.dim(dim_sub(ks[i], 1)), ki)
            pos = e.s("sub", e.add_i(e.mul_i(o[i], e.const(strides[i], I64)), ki), pads[i])
            ok = e.s("and", e.s("ge", pos, e.dim(0), t=BOOL_T), e.s("lt", pos, e.dim(ins[i]), t=BOOL_T))
            valid = ok if valid is None else e.s("and", valid, ok)
            clamped = e.s("minimum", e.s("maximum", pos, e.dim(0)), e.dim(dim_sub(ins[i], 1)))
            src.append(clamped)
        val = e.load(xb, src)
        e.store(e.s("select", valid, val, zero), colsv, idx)

    em.nest([Nn] + outs + [C] + ks, im2col)
    d = em.dim

    def per_image(e, idx):
        n = idx[0]
        ob = e.mul_i(n, e.dim(dim_mul(P, CK)))
        oc = e.mul_i(n, e.dim(dim_mul(F, P)))
        e.op("mem.gemm", [wb, cols, out, d(F), d(P), d(CK), d(CK), d(CK), d(P), d(0), ob, oc],
             trans_a=False, trans_b=True, alpha=1.0, beta=0.0)

    out = fl.result_buf(v)
    em.nest([Nn], per_image, parallel=False)
    vals[v] = out


def _cast_copy(fl, em, buf, dtype):
    t = buf.type.with_dtype(dtype)
    out = fl.alloc(t)
    em.nest(t.shape, lambda e, idx: e.store(e.cast(e.load(buf, idx), dtype), out, idx))
    return out


def lower_scan(fl, em, op, vals):
    ns, nc = op.attrs["n_seqs"], op.attrs["n_carries"]
    reverse = bool(op.attrs.get("reverse", False))
    seqs = [fl.buf(em, s, vals) for s in op.operands[:ns]]
    inits = [fl.buf(em, c, vals) for c in op.operands[ns:]]
    carries = []
    for r, ib in zip(op.results[:nc], inits):
        cb = fl.result_buf(r)
        if cb is ib or cb in fl.entry.args[: len(fl.func.regions[0].block.args)]:
            cb = fl.alloc(r.type)
        em.op("mem.copy", [ib, cb])
        carries.append(cb)
        vals[r] = cb
    stacked = [fl.result_buf(r) for r in op.results[nc:]]
    for r, sb in zip(op.results[nc:], stacked):
        vals[r] = sb
    body = op.regions[0].block
    length = op.attrs["length"]
    L = em.dim(length)
    yield_op = body.terminator

    def step(e, i):
        t = e.s("sub", e.dim(dim_sub(length, 1)), i) if reverse else i
        inner = ChainMap({}, vals)
        for a, sb in zip(body.args[:ns], seqs):
            inner[a] = e.val("mem.subview", [sb, t], a.type)
        for a, cb in zip(body.args[ns:], carries):
            inner[a] = cb
        # Per-step outputs computed straight into their slot of the stacked result.
        saved = {}
        nexts = set(yield_op.operands[:nc])
        for y, sb in zip(yield_op.operands[nc:], stacked):
            if isinstance(y, OpResult) and y.op.parent is body and y not in fl.dest and y not in nexts \
                    and y.op.name not in ("tg.reshape", "tg.flatten", "tg.read"):
                saved[y] = e.val("mem.subview", [sb, t], y.type)
        fl.dest.update(saved)
        ys = fl.lower_block(e, body, inner)
        for y in saved:
            fl.dest.pop(y, None)
        ybufs = [fl.buf(e, y, inner) for y in ys]
        for yb, sb, y in zip(ybufs[nc:], stacked, ys[nc:]):
            if y in saved and saved[y] is yb:
                continue
            e.op("mem.copy", [yb, e.val("mem.subview", [sb, t], y.type)])
        # Next carries: values that are themselves carry buffers are copied via temps.
        nxt = ybufs[:nc]
        staged = []
        for k, nb in enumerate(nxt):
            if nb is carries[k]:
                staged.append(None)
            elif nb in carries:
                tmp = fl.alloc(nb.type)
                e.op("mem.copy", [nb, tmp])
                staged.append(tmp)
            else:
                staged.append(nb)
        for k, nb in enumerate(staged):
            if nb is not None:
                e.op("mem.copy", [nb, carries[k]])

    em.loop(em.dim(0), L, step)


def lower_dim(fl, em, op, vals):
    v = op.results[0]
    out = fl.result_buf(v)
    em.store(em.cast(em.dim(op.attrs["dim"]), v.type.dtype), out, [])
    vals[v] = out


def lower_call(fl, em, op, vals):
    raise CompileError("lower-to-loops: func.call must be inlined first", op.loc)


def lower_grad(fl, em, op, vals):
    raise CompileError("tg.grad must be expanded by the grad pass before lowering", op.loc)


LOWERINGS: dict = {
    "tg.read": lower_read,
    "tg.update": lower_update,
    "tg.reshape": lower_view,
    "tg.flatten": lower_view,
    "tg.transpose": lower_transpose,
    "tg.sum": lower_reduce,
    "tg.mean": lower_reduce,
    "tg.max": lower_reduce,
    "tg.min": lower_reduce,
    "tg.argmax": lower_argreduce,
    "tg.argmin": lower_argreduce,
    "tg.matmul": lower_matmul,
    "tg.softmax": lower_softmax,
    "tg.log_softmax": lower_softmax,
    "tg.categorical_crossentropy": lower_crossentropy,
    "tg.crossentropy_logits": lower_crossentropy,
    "tg.index": lower_index,
    "tg.dynamic_slice": lower_dynamic_slice,
    "tg.dynamic_index": lower_dynamic_index,
    "tg.gather": lower_gather,
    "tg.concat": lower_concat,
    "tg.stack": lower_stack,
    "tg.arange": lower_arange,
    "tg.one_hot": lower_one_hot,
    "tg.max_pool2d": lower_max_pool2d,
    "tg.conv1d": lower_conv,
    "tg.conv2d": lower_conv,
    "tg.scan": lower_scan,
    "tg.dim": lower_dim,
    "tg.grad": lower_grad,
    "func.call": lower_call,
    "tg.fused": lower_fusible,
    "tg.constant": lower_fusible,
    "tg.broadcast_to": lower_fusible,
}
for _name, _d in REGISTRY.items():
    if _d.has(ELEMENTWISE) and _name.startswith("tg."):
        LOWERINGS.setdefault(_name, lower_fusible)


def missing_lowerings() -> list:
    """tg ops of the registry without a rule (a test keeps this empty)."""
    skip = {"tg.yield", "tg.global", "tg.grad"}
    out = []
    for name, d in REGISTRY.items():
        if not name.startswith("tg.") or name in skip:
            continue
        if name in LOWERINGS:
            continue
        if d.has(ELEMENTWISE):
            continue
        out.append(name)
    return out

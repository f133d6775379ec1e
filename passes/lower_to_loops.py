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
  * Fusion is fuse-elementwise's: each tg.fused op (a region of rank-0 tg
    ops over an iteration `shape`, optionally reduced) is one loop nest. What
    that pass leaves single (an elementwise op, broadcast_to, scalar
    constants, tg.dim) is evaluated inside its users' loop nest when every
    user is fusible with the same shape, or a reduction (plan_groups): a
    broadcast is never materialised.
  * Buffers: every materialised value gets a buffer. Results returned by the
    function are computed directly into the output buffers. In-place reuse is
    plan-memory's (the `inplace` marks): a result overwrites the operand it
    names when this lowering can honour it (the buffer is the function's own,
    no view aliases it, and no other op reads it); an update `W <- f(W, ...)`
    marked so writes W's buffer when every read of the old W is evaluated
    before it (Theano semantics: all reads see the value from before the
    call); otherwise updates are copied into the shared buffers after the
    outputs. Reshape and flatten are views. All allocations are in the entry
    block.
  * Matrix products become mem.gemm (BLAS) for f32/f64 (a transpose feeding
    a product becomes a trans flag), loops otherwise; W <- W - s * (a @ b) is
    one gemm (alpha = -s, beta = 1) into W; conv1d/conv2d are im2col of the
    whole batch + one gemm; scan is a loop.for whose carries live in buffers (the
    final carries are the carry buffers) and whose outputs are written into
    the stacked results.
  * Scans arrive rewritten by the scan-hoist pass (passes/scan_hoist.py): what
    stays in the loop is the recurrence.

This file is the driver: per function, the planning above, buffer assignment
and the walk over the ops. The rule for each op is its OpDef's `lower`
(irc/ops/lowering/, one module per op family); an elementwise op's loop body
comes from its scalar rule (OpDef.scalar). A test checks every tg op of the
registry has one. Imports only irc.ir, irc.ops and the pass manager.
"""

from __future__ import annotations

from dataclasses import dataclass

from irc.passes.pass_manager import Pass, register

import irc.ops.loop  # noqa: F401  (registers the loop dialects)
from irc.ir.builder import Builder
from irc.ir.core import (
    Block,
    Module,
    Op,
    OpResult,
    Region,
    SymbolRef,
    Value,
    append_new_op,
    dismantle,
)
from irc.ir.dims import dim_names
from irc.ir.errors import CompileError
from irc.ir.types import DType, TensorType
from irc.ops.fused import MAX_FUSED_OPS, body_size
from irc.ops.lowering import rule_of
from irc.ops.lowering.emit import (
    IDX,
    REDUCE_KINDS,
    Emitter,
    fusible,
    is_elementwise_name,
    is_scalar_const,
    scalar_rule,
    scalar_type,
)
from irc.ops.lowering.linalg import gemm_ok, match_axpy


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
        # (no drop_all_references: every value the old body reads is its own,
        # and it goes as a whole; dropping 10^5 uses one by one showed)
        module.body.remove(op)
        dismantle(op)
    module.attrs = dict(module.attrs)
    module.attrs["stage"] = "loops"
    return module


class FuncLowerer:
    def __init__(self, module: Module, func: Op):
        self.module = module
        self.func = func
        self.loc = func.loc
        # types of the iteration spaces of fused reductions (irc/ir/sizes.py's
        # iteration_type), kept for the call's size check: an ordered set
        self.iter_types: dict = {}
        self.globals = {
            op.attrs["sym_name"]: op for op in module.body.ops if op.name == "tg.global"
        }

    # -- entry-block values ---------------------------------------------------------------------
    def dim(self, d) -> Value:
        v = self.dims.get(d)
        if v is None:
            for n in sorted(dim_names(d)):
                if n not in self.dim_names:
                    # not bound by an argument: the caller passes it (env)
                    self.dim_names.append(n)
            v = append_new_op(self.prologue, "loop.dim", [], [IDX], {"dim": d}, self.loc).results[0]
            self.dims[d] = v
        return v

    def const(self, value, dtype: DType) -> Value:
        kind = dtype.kind  # (dtype.is_float and is_bool, without the property calls)
        if kind == "f":
            value = float(value)
        elif kind == "b":
            value = bool(value)
        else:
            value = int(value)
        if value == value and (value != 0 or kind != "f"):
            # Looked up by value, not by its repr: a number that is not NaN and not
            # a float zero (0.0 and -0.0 compare equal) is equal to another of its
            # dtype exactly when their reprs are. The same constant, the same key.
            key = (dtype.name, value)
            v = self.consts.get(key)
            if v is None:
                v = self.consts[key] = self._new_const(value, dtype)
            return v
        key = ("const", dtype.name, repr(value))
        v = self.cache.get(key)
        if v is None:
            v = self.cache[key] = self._new_const(value, dtype)
        return v

    def _new_const(self, value, dtype: DType) -> Value:
        return append_new_op(
            self.prologue, "scalar.const", [], [scalar_type(dtype)], {"value": value}, self.loc
        ).results[0]

    def alloc(self, t: TensorType) -> Value:
        v = append_new_op(self.prologue, "mem.alloc", [], [t], {}, self.loc).results[0]
        self.temps.add(v)
        return v

    def global_buf(self, sym: str) -> Value:
        key = ("global", sym)
        v = self.cache.get(key)
        if v is None:
            t = self.globals[sym].attrs["type"]
            v = self.pro.create(
                "mem.global", [], [t], {"sym": SymbolRef(sym)}, (), self.loc
            ).results[0]
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
        # Entry-block values (dims, constants, buffers) are made in a block of
        # their own and put in front of the entry block's ops once at the end:
        # inserting each at the top moved every op already emitted (quadratic
        # over a long function: 290,000 inserts into a growing list).
        self.prologue = Block()
        self.pro = Builder(self.prologue)
        self.cache: dict = {}
        self.consts: dict = {}  # (dtype name, value) -> scalar.const (const(), by value)
        self.dims: dict = {}  # dim -> its loop.dim value (asked for by the ten thousand)
        self.scalar_rules: dict = {}  # elementwise op name -> its scalar rule (OpDef.scalar)
        self.rules: dict = {}  # op name -> its lowering rule
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
            if (
                isinstance(v, OpResult)
                and v not in self.dest
                and v.op.name not in ("tg.read", "tg.reshape", "tg.flatten")
            ):
                self.dest[v] = o
        self.inplace_updates: dict = {}  # tg value -> global sym it is computed into
        self.plan_updates(body)
        emit = Emitter(self, self.entry)
        self.deferred_updates: list = []
        self.lower_block(emit, body, self.vals)
        # Outputs first (they may read shared variables' old values), then the updates.
        for v, o in zip(ret.operands, outs):
            buf = self.buf(emit, v, self.vals)
            if buf is not o:
                emit.op("mem.copy", [buf, o])
        for sym, buf in self.deferred_updates:
            emit.op("mem.copy", [buf, self.global_buf(sym)])
        emit.op("func.return", [])
        pro_ops = self.prologue.ops
        for op in pro_ops:
            op.parent = self.entry
        self.entry.ops[0:0] = pro_ops
        self.prologue.ops = []
        attrs = dict(f.attrs)
        attrs["res_types"] = ()
        attrs["dims"] = tuple(names)
        attrs["n_inputs"] = n_in
        attrs["n_outputs"] = len(res_types)
        attrs["result_types"] = tuple(res_types)
        if self.iter_types:
            attrs["iter_types"] = tuple(self.iter_types)
        new = Op("func.func", [], [], attrs, [Region([self.entry])], f.loc)
        return new

    # -- planning -----------------------------------------------------------------------------------
    def plan_groups(self, block: Block) -> None:
        """Mark fusible ops whose users are all in one group of the same shape (inline)."""
        fus: dict = {}  # op -> fusible(op), asked of an op and again of each of its users

        def is_fusible(op):
            f = fus.get(op)
            if f is None:
                f = fus[op] = fusible(op)
            return f

        for op in reversed(block.ops):
            if not op.results or len(op.results) != 1:
                continue
            v = op.results[0]
            if not is_fusible(op):
                continue
            roots = set()
            ok = bool(v.uses)
            for user, idx in v.uses:
                if user.parent is not block:
                    ok = False
                    break
                if is_fusible(user) and user.results and user.results[0].type.shape == v.type.shape:
                    roots.add(self.group_root.get(user, user))
                elif user.name in REDUCE_KINDS and idx == 0:
                    roots.add(user)
                else:
                    ok = False
                    break
            cheap = is_scalar_const(op) or op.name == "tg.dim"
            if (
                cheap
                and all(is_fusible(u) or u.name in REDUCE_KINDS for u, _ in v.uses)
                and all(u.parent is block for u, _ in v.uses)
            ):
                self.inline.add(v)
                continue
            if ok and len(roots) == 1 and v not in self.dest:
                root = next(iter(roots))
                # Not past fuse-elementwise's bound on a loop body (irc/ops/fused.py).
                size = self.group_size.get(root, 0) + body_size(op) + body_size(root)
                if size > MAX_FUSED_OPS:
                    continue
                self.inline.add(v)
                self.group_root[op] = root
                self.group_size[root] = size - body_size(root)

    def plan_updates(self, body: Block) -> None:
        """Updates computed in place into the shared buffer: those plan-memory
        marked (the producer's `inplace` names its read of W), where this
        lowering's evaluation order keeps every read of the old W before the
        producer (an inlined user is evaluated at its group's root)."""
        self.inline: set = set()
        self.group_root: dict = {}
        self.group_size: dict = {}
        self.absorbed: set = set()
        self.gemm_updates: dict = {}  # update value -> (scale value, matmul result)
        self.deferred_matmuls: set = set()
        self.plan_groups(body)
        updates = [op for op in body.ops if op.name == "tg.update"]
        if not updates:
            return  # (nothing below to plan: no walk of the function for its reads)
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
        for op in updates:
            sym = op.attrs["sym"].name
            v = op.operands[0]
            if not isinstance(v, OpResult) or v in self.inline or v.op.parent is not body:
                continue
            r = v.op
            # plan-memory's decision: r's result overwrites the read of W it takes.
            plan = r.attrs.get("inplace") or ()
            k = plan[r.results.index(v)] if plan else -1
            w = r.operands[k] if k >= 0 else None
            if not (
                isinstance(w, OpResult) and w.op.name == "tg.read" and w.op.attrs["sym"].name == sym
            ):
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
                    if (
                        q == p
                        and user.parent is body
                        and self.group_root.get(user, user) is r
                        and rv.type.shape == v.type.shape
                    ):
                        continue
                    safe = False
                if not safe:
                    break
            if safe:
                self.inplace_updates[v] = sym
                axpy = match_axpy(r, reads.get(sym, []))
                if axpy is not None:
                    self.gemm_updates[v] = axpy
                    self.deferred_matmuls.add(axpy[1])

    # -- values -------------------------------------------------------------------------------------
    def buf(self, emit: Emitter, v: Value, vals) -> Value:
        """The buffer of tg value v, materialising inline scalars on demand."""
        b = vals.get(v)
        if b is not None:
            if isinstance(b, tuple):  # an absorbed transpose: materialise it now
                b = self.materialize_transpose(emit, v, vals)
            return b
        if isinstance(v, OpResult) and (v in self.inline or fusible(v.op)):
            out = self.result_buf(v)
            emit.nest(
                v.type.shape,
                lambda e, idx: e.store(self.expr(e, v, idx, vals, {}, force=True), out, idx),
            )
            vals[v] = out
            return out
        if isinstance(v, OpResult) and v.op.name == "tg.constant":
            return self.const_buf(v, vals)
        raise CompileError(
            f"lower-to-loops: no buffer for a value of {getattr(v, 'op', None)}", self.loc
        )

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

    def index_map(self, emit: Emitter, operand_shape, shape, idx):
        """Indices into an operand broadcast to `shape` (NumPy rules)."""
        if operand_shape == shape and 1 not in shape and len(idx) == len(shape) and 0 in self.dims:
            return idx  # (the same indices: what the rule below gives, without the copy)
        off = len(shape) - len(operand_shape)
        zero = emit.dim(0)
        return [zero if d == 1 else idx[k + off] for k, d in enumerate(operand_shape)]

    def expr(self, emit: Emitter, v: Value, idx, vals, memo: dict, force=False) -> Value:
        """The scalar value of v at index idx, evaluating inline ops in place."""
        key = (v, *idx)  # (values hash and compare by identity)
        got = memo.get(key)
        if got is not None:
            return got
        b = vals.get(v)
        if b is None:
            op = v.op if isinstance(v, OpResult) else None
            if op is not None and (force or v in self.inline) and fusible(op):
                out = self.eval_fusible(emit, op, v, idx, vals, memo)
                memo[key] = out
                return out
        if b is None or type(b) is tuple:
            b = self.buf(emit, v, vals)
        # a load of the buffer (the common case: v was materialised); emit.load written out
        rank = len(v.type.shape)
        n = len(idx)
        out = append_new_op(
            emit.block,
            "mem.load",
            [b, *idx] if rank == n else [b, *idx[n - rank :]],
            [scalar_type(b.type.dtype)],
            {},
            self.loc,
        ).results[0]
        memo[key] = out
        return out

    def eval_fusible(self, emit, op, v, idx, vals, memo) -> Value:
        shape = v.type.shape
        name = op.name
        if name == "tg.constant":
            return self.const(op.attrs["value"].item(), v.type.dtype)  # (a one-element array)
        if name == "tg.dim":
            return emit.cast(emit.dim(op.attrs["dim"]), v.type.dtype)
        if name == "tg.broadcast_to":
            x = op.operands[0]
            return self.expr(emit, x, self.index_map(emit, x.type.shape, shape, idx), vals, memo)
        if name == "tg.fused":
            return self.eval_fused_region(emit, op, idx, vals, memo)[op.results.index(v)]
        expr = self.expr
        if len(idx) == len(shape) and 1 not in shape and 0 in self.dims:
            # (index_map's shortcut, once for all operands: an operand of the
            # iteration shape is read at idx)
            index_map = self.index_map
            args = [
                expr(emit, x, idx if x.type.shape == shape else index_map(
                    emit, x.type.shape, shape, idx), vals, memo)
                for x in op.operands
            ]
        else:
            index_map = self.index_map
            args = [
                expr(emit, x, index_map(emit, x.type.shape, shape, idx), vals, memo)
                for x in op.operands
            ]
        rule = self.scalar_rules.get(name)
        if rule is None:
            rule = self.scalar_rules[name] = scalar_rule(name, self.loc)
        return rule(emit, args, v.type.dtype)

    def eval_fused_region(self, emit, op, idx, vals, memo) -> list:
        shape = tuple(op.attrs["shape"])
        block = op.regions[0].block
        env = {}
        index_map = self.index_map
        expr = self.expr
        cast = emit.cast
        for a, x in zip(block.args, op.operands):
            s = expr(emit, x, index_map(emit, x.type.shape, shape, idx), vals, memo)
            env[a] = cast(s, a.type.dtype)
        rules = self.scalar_rules  # op name -> its scalar rule, for the elementwise ops seen
        for inner in block.ops:
            name = inner.name
            if name == "tg.yield":
                return [env[x] for x in inner.operands]
            if name == "tg.constant":
                r = inner.results[0]
                # (.item() of the one-element array: its value, as reshape(()).item())
                env[r] = self.const(inner.attrs["value"].item(), r.type.dtype)
                continue
            if name == "tg.dim":
                r = inner.results[0]
                env[r] = cast(emit.dim(inner.attrs["dim"]), r.type.dtype)
                continue
            rule = rules.get(name)
            if rule is None:
                if not is_elementwise_name(name):
                    raise CompileError(f"lower-to-loops: {name} inside tg.fused", inner.loc)
                rule = rules[name] = scalar_rule(name, self.loc)
            if len(inner.results) != 1:
                raise CompileError(f"lower-to-loops: {name} inside tg.fused", inner.loc)
            # (a Value is never false: `or` falls back only where env has no x)
            args = [
                env.get(x) or self._region_arg(emit, env, x, vals, memo) for x in inner.operands
            ]
            r = inner.results[0]
            env[r] = rule(emit, args, r.type.dtype)
        raise CompileError("tg.fused region without tg.yield", op.loc)

    def _region_arg(self, emit, env, x, vals, memo):
        """A scalar a fused region reads: its own values, or (after CSE merged a
        constant with an outer one) a rank-0 value from outside."""
        got = env.get(x)
        if got is not None:
            return got
        if x.type.rank != 0:
            raise CompileError(
                "lower-to-loops: a tg.fused region reads a tensor from outside", self.loc
            )
        return self.expr(emit, x, [], vals, memo)

    def inplace_inputs(self, op: Op, v: Value, vals) -> list:
        """The buffer plan-memory chose for result v of op to overwrite (op's
        `inplace` annotation), when this lowering can honour it: the operand's
        buffer is one this function allocated, no view aliases it, and op is its
        only reader (lowering reads some values later than their op's place:
        inlined users, deferred update copies, absorbed transposes)."""
        plan = op.attrs.get("inplace")
        if not plan:
            return []
        k = plan[op.results.index(v)]
        if k < 0:
            return []
        x = op.operands[k]
        b = vals.get(x)
        if b is None or isinstance(b, tuple) or b not in self.temps or x in self.viewed:
            return []
        if any(u is not op for u, _ in x.uses):
            return []
        return [b]

    # -- blocks -----------------------------------------------------------------------------------
    def lower_block(self, emit: Emitter, block: Block, vals) -> list:
        if block is not self.func.regions[0].block:
            self.plan_groups(block)
        self.plan_transposes(block)
        inline = self.inline
        rules = self.rules
        for op in block.ops:
            name = op.name
            if name in ("func.return", "tg.yield"):
                return list(op.operands)
            res = op.results
            if res and (res[0] in inline if len(res) == 1 else all(r in inline for r in res)):
                continue
            self.loc = op.loc or self.loc
            rule = rules.get(name)
            if rule is None:
                rule = rule_of(name)
                if rule is None:
                    raise CompileError(f"lower-to-loops: no lowering for {name}", op.loc)
                rules[name] = rule
            rule(self, emit, op, vals)
        return []

    def plan_transposes(self, block: Block) -> None:
        for op in block.ops:
            if op.name != "tg.transpose" or op.results[0].type.rank != 2:
                continue
            v = op.results[0]
            if v in self.dest or not v.uses:
                continue
            if all(
                u.name == "tg.matmul"
                and u.operands[0].type.rank >= 1
                and u.operands[1].type.rank >= 1
                and u.parent is block
                and gemm_ok(u)
                and u.operands[i].type.rank == 2
                for u, i in v.uses
            ):
                self.absorbed.add(v)

    def materialize_transpose(self, emit, v, vals):
        x = v.op.operands[0]
        out = self.result_buf(v)
        xb = self.buf(emit, x, vals)
        emit.nest(v.type.shape, lambda e, idx: e.store(e.load(xb, [idx[1], idx[0]]), out, idx))
        vals[v] = out
        return out

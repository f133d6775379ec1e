"""Loop IR -> LLVM IR with llvmlite's IRBuilder.

Each entry function `f` of the loop module becomes

    i32 @f(ptr %bufs, ptr %dims, ptr %ws, ptr %ctx)

  bufs: one pointer per buffer argument (inputs, outputs), then one per shared
        variable of the module (tg.global order);
  dims: the i64 values of the function's `dims` attribute;
  ws:   the workspace every mem.alloc is carved from (64-byte aligned pieces, in
        the order of the allocs; i64 @"f.ws"(ptr %dims) gives its size);
  ctx:  {i64 nthreads};
  returns 0, or k > 0 when the k-th loop.assert of f (pre-order) failed.

The kernels are the kernelize pass's (passes/kernelize.py), the same for every
backend. A map kernel is outlined into its own (noinline) kernel function whose
buffer pointers are `noalias` (unless two of them share storage and one is
written), so the vectoriser needs no run-time alias checks. When the nest is
big enough (an estimate of its work, computed at run time from the dims) and
ctx.nthreads > 1, the range of its first parallel axis is split into chunks
(64-aligned) handed to the persistent thread pool of threads.py (__irc_parfor,
parallel.py). Only the marked axes are split and no floating-point reduction
crosses a chunk, so results do not depend on the thread count. A large reduce
kernel is cut into at most REDUCE_CHUNKS chunks of a length that depends on its
range only, whose partial results (from the combines' identities) are combined
with the initial values in chunk order after the chunks ran on the pool: the
same sums for any thread count, 1 included. Every other
loop nest (a serial loop, a small map or reduction) becomes a kernel function
too, called once on the calling thread, so that an entry function is glue only
(calls, products, copies, scalar dim math) and the JIT compiles it without
optimisation (jit.py). A host loop (kernel = "loop") is a loop here whose body's
kernels are rendered the same way. Large products are cut
into blocks of C whose size depends on the shape only, then spread over the
pool (parallel.py), for the same reason.

Scalar ops are scalar.py's; mem.gemm calls scipy_cblas_sgemm / scipy_cblas_dgemm
(bound by blas.py); irc_pool_run comes from threads.py.
Imports llvmlite, irc.ir, irc.ops and irc.passes.kernelize only.
"""

from __future__ import annotations

from operator import sub

import numpy as np
from irc.passes.kernelize import chain, ensure_kernels, reduction_levels
from llvmlite import ir

from irc.ir.core import Block, Module, Op, OpResult, Value
from irc.ir.dims import dim_tree
from irc.ops.loop import storage_root, written_buffers

from .parallel import h_gemm, opaque_alloca, parfor_helper
from .scalar import (
    ALIGN,
    F64,
    FCMP,
    I1,
    I8,
    I32,
    I64,
    ICMP,
    LLTYPE,
    MEMTYPE,
    PTR,
    SIZE,
    VOID,
    WEIGHT,
    CodegenError,
    cast,
    const_of,
    dtype_name,
    float_op,
    floordiv,
    int_op,
)

# Work (elements x op weight) below which a loop nest stays on one thread:
# handing chunks to the (spinning) pool of threads.py costs about a microsecond.
PAR_THRESHOLD = 1 << 15

# Structurally identical loop nests of an entry share one kernel (and launcher):
# FunctionGen.plan_kernels, kernel_function. False makes one kernel per nest (tests
# compare the two: the results are bit-identical).
DEDUPE = True

# An entry of more than SEGMENT_MIN host ops is emitted as segments of at most
# SEGMENT_OPS host ops (FunctionGen.segments); segments alike up to their
# workspace offsets and carry slots share one function (segment_key).
SEGMENT_MIN = 1024
SEGMENT_OPS = 256

BUFFER_OPS = {"mem.alloc", "mem.global", "mem.constant", "mem.view", "mem.subview"}


def is_buffer(v: Value) -> bool:
    if isinstance(v, OpResult):
        return v.op.name in BUFFER_OPS
    # block arguments: function parameters are buffers, loop indices/carries scalars
    owner = v.block.parent_op() if v.block is not None else None
    return owner is not None and owner.name == "func.func"


class FloatBlock(tuple):
    """The float constants that a kernel takes as parameters (those that differ
    between the nests it is made for: plan_kernels), in slot order. The kernel
    takes them as one pointer to an f64 array and loads them in its prologue:
    passed one by one, a long function's kernels took dozens each, and calls
    with dozens of operands (each a constant, or in a shared segment a load
    from its table) were most of LLVM's work on such a function. A value map
    key like the values it stands for; equal blocks are one array."""

    __slots__ = ()


def load_floats(g, ptr, values, at: int = 0) -> None:
    """Map `values` (float constants) in g's value map to loads, in its prologue,
    of the f64 array at `ptr` from index `at`, converted to their types."""
    for j, v in enumerate(values):
        x = g.pro.load(g.pro.gep(ptr, [ir.Constant(I64, at + j)], source_etype=F64), typ=F64)
        ty = LLTYPE[v.type.dtype.name]
        g.vmap[v] = x if ty == F64 else g.pro.fptrunc(x, ty)


class ModuleGen:
    """Builds the llvmlite module for a loop-IR module."""

    def __init__(self, module: Module, triple: str = "", data_layout: str = ""):
        self.loop_module = module
        self.m = ir.Module(name="irc")
        if triple:
            self.m.triple = triple
        if data_layout:
            self.m.data_layout = data_layout
        self.globals = [op.attrs["sym_name"] for op in module.body.ops if op.name == "tg.global"]
        self.functions = {}  # name -> FunctionInfo
        self.kernel_count = 0
        self.serial_count = 0
        self.const_count = 0
        self.float_tables: dict = {}  # float values -> private constant f64 array
        self.gens: list = []  # every Gen made (see release)

    def build(self) -> ir.Module:
        fgens = []
        for op in self.loop_module.body.ops:
            if op.name == "func.func":
                fgens.append(FunctionGen(self, op))
                info = fgens[-1].build()
                self.functions[info.name] = info
        self.release(fgens)
        return self.m

    def release(self, fgens: list) -> None:
        """Drop what generation held of the loop IR once the LLVM module is built. A
        Gen and its value map, and a FunctionGen and the closures of its methods,
        are reference cycles: left as they are, every loop op and value they name
        stays alive until Python's cycle collector walks it (a 20,000-statement
        function's loop IR: a second of collection after its compile)."""
        for g in self.gens:
            g.__dict__.clear()
        for fg in fgens:
            fg.__dict__.clear()
        self.gens = []

    def decl(self, name, ret, args, var_arg=False):
        f = self.m.globals.get(name)
        if f is None:
            f = ir.Function(self.m, ir.FunctionType(ret, args, var_arg=var_arg), name)
        return f

    def float_table(self, values: tuple) -> ir.GlobalVariable:
        """A private constant f64 array of `values` (one per distinct tuple; by
        their bits: -0.0 is not 0.0 here)."""
        key = tuple(map(float.hex, values))
        g = self.float_tables.get(key)
        if g is None:
            ty = ir.ArrayType(F64, max(1, len(values)))
            g = ir.GlobalVariable(self.m, ty, f"__irc_fparams{len(self.float_tables)}")
            g.global_constant = True
            g.linkage = "private"
            g.initializer = ir.Constant(ty, list(values) or [0.0])
            self.float_tables[key] = g
        return g

    def constant_data(self, arr) -> ir.GlobalVariable:
        data = bytearray(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()) if arr.size else bytearray(b"\0")
        ty = ir.ArrayType(I8, len(data))
        g = ir.GlobalVariable(self.m, ty, f"__irc_const{self.const_count}")
        self.const_count += 1
        g.global_constant = True
        g.linkage = "private"
        g.align = ALIGN
        g.initializer = ir.Constant(ty, data)
        return g


def ws_symbol(name: str) -> str:
    """The workspace-size function of entry function `name`. Names the code generator
    makes from an entry's name (`f.ws`, `f.k0`, `f.k0.thunk`) contain a dot, which no
    `.tg` name can, so they never collide with an entry function or each other
    (issue 15: an entry named `f__ws` used to redefine f's workspace function)."""
    return f"{name}.ws"


class WorkspaceMap(dict):
    """An entry's value map in which a mem.alloc's pointer is made where it is
    read: ws + sum(count_t * size_t) over the allocs before it (by type)."""

    def __init__(self, g, ws, sizes, lazy, items, carry=None, carried=None):
        super().__init__(items)
        self.g, self.ws, self.sizes, self.lazy = g, ws, sizes, lazy
        self.carry, self.carried = carry, carried or {}
        self.last = None  # (counts, byte offset) of the alloc made last (in a segment)

    def __missing__(self, v):
        counts = self.lazy.get(v)
        if counts is None:
            return self.other_segment(v)
        # in a segment (at most SEGMENT_OPS host ops) once, in its prologue, as
        # the offset of the alloc made before plus the sizes in between
        if self.carry is None:
            b, off, base = self.g.b, None, [0] * len(counts)
        else:
            b = self.g.pro
            base, off = self.last if self.last is not None else ([0] * len(counts), None)
        for n, n0, size in zip(counts, base, self.sizes):
            d = n - n0
            if d:
                term = b.mul(size, ir.Constant(I64, d)) if d != 1 else size
                off = term if off is None else b.add(off, term)
        p = b.gep(self.ws, [off or ir.Constant(I64, 0)], inbounds=True, source_etype=I8)
        if self.carry is not None:
            self.last = (counts, off)
            self[v] = p
        return p

    def other_segment(self, v):
        """A value of an earlier segment of the entry (FunctionGen.segments)."""
        g = self.g
        d = v.op if isinstance(v, OpResult) else None
        if d is not None and d.name == "scalar.const":
            val = const_of(d.attrs["value"], v.type.dtype)
        elif d is not None and d.name == "loop.dim":
            val = g.dim(d.attrs["dim"])
        elif d is not None and d.name == "mem.view":
            val = self[d.operands[0]]
        elif v in self.carried and self.carry is not None:
            ty = PTR if is_buffer(v) else LLTYPE[v.type.dtype.name]
            slot = g.pro.gep(self.carry, [ir.Constant(I64, self.carried[v])], source_etype=I64)
            val = g.pro.load(slot, typ=ty)
        else:
            raise KeyError(v)
        self[v] = val
        return val

    def __contains__(self, v):
        if dict.__contains__(self, v) or v in self.lazy:
            return True
        if self.carry is None:
            return False
        d = v.op if isinstance(v, OpResult) else None
        return v in self.carried or (d is not None and d.name in ("scalar.const", "loop.dim", "mem.view"))


class _Shifted:
    """A read-only view of {value: counts tuple} (an entry's allocs) or {value:
    slot} (its carried values) relative to a segment's base: what a segment
    function shared by several segments indexes from the base it is given."""

    __slots__ = ("table", "base")

    def __init__(self, table: dict, base):
        self.table, self.base = table, base

    def get(self, v, default=None):
        got = self.table.get(v)
        if got is None:
            return default
        if isinstance(got, tuple):
            return tuple(c - b for c, b in zip(got, self.base))
        return got - self.base

    def __getitem__(self, v):
        got = self.get(v)
        if got is None:
            raise KeyError(v)
        return got

    def __contains__(self, v):
        return v in self.table


class _NoKey(Exception):
    """A segment that is generated for itself (segment_key)."""


class FunctionInfo:
    def __init__(self, name, op, messages):
        self.name = name
        self.op = op
        self.messages = messages


class Gen:
    """Shared state of one LLVM function being generated (entry or kernel)."""

    def __init__(self, mg: ModuleGen, fn: ir.Function, dims_ptr, dim_names, messages):
        mg.gens.append(self)
        self.mg = mg
        self.fn = fn
        self.dims_ptr = dims_ptr
        self.dim_names = dim_names
        self.messages = messages
        self.vmap: dict = {}
        self.dimcache: dict = {}
        self.stridecache: dict = {}
        self.bounds: dict = {}  # loop.for op -> (lo, hi) replacing its operands (a kernel's chunk)
        self.inits: dict = {}  # loop.for op -> initial carried values replacing its operands
        pro = fn.append_basic_block("prologue")
        self.body_bb = fn.append_basic_block("body")
        self.pro = ir.IRBuilder(pro)
        self.b = ir.IRBuilder(self.body_bb)
        self.fail_bbs: dict = {}
        # Host code (an entry or one of its segments, frame below) calls the
        # polynomial transcendentals out of line (scalar.py scalar_call); kernels
        # inline them so that the loop vectoriser sees them.
        self.host = False

    def finish_prologue(self):
        self.pro.branch(self.body_bb)

    # -- dims ---------------------------------------------------------------------------------
    def dim(self, d):
        """i64 value of a dim (int or expression), computed in the prologue."""
        if isinstance(d, int):
            return ir.Constant(I64, d)
        v = self.dimcache.get(d)
        if v is None:
            v = self._dim_expr(dim_tree(d))
            self.dimcache[d] = v
        return v

    def _dim_expr(self, t):
        """LLVM i64 of a dim tree (irc.ir.dims.dim_tree: irc's own parser)."""
        b = self.pro
        kind = t[0]
        if kind == "int":
            return ir.Constant(I64, t[1])
        if kind == "name":
            key = t[1]
            v = self.dimcache.get(key)
            if v is None:
                k = self.dim_names.index(key)
                v = b.load(b.gep(self.dims_ptr, [ir.Constant(I64, k)], source_etype=I64), typ=I64)
                self.dimcache[key] = v
            return v
        if kind == "neg":
            return b.neg(self._dim_expr(t[1]))
        x, y = self._dim_expr(t[1]), self._dim_expr(t[2])
        if kind == "+":
            return b.add(x, y)
        if kind == "-":
            return b.sub(x, y)
        if kind == "*":
            return b.mul(x, y)
        if kind == "//":
            return floordiv(b, x, y)
        raise CodegenError(f"bad dim expression {t!r}")

    def shape(self, t):
        return [self.dim(d) for d in t.shape]

    def numel(self, t):
        n = ir.Constant(I64, 1)
        for d in t.shape:
            n = self.pro.mul(n, self.dim(d)) if not (isinstance(d, int) and d == 1) else n
        return n

    def strides(self, t):
        key = tuple(t.shape)
        s = self.stridecache.get(key)
        if s is None:
            s = []
            acc = ir.Constant(I64, 1)
            for d in reversed(t.shape):
                s.append(acc)
                acc = self.pro.mul(acc, self.dim(d)) if d != 1 else acc
            s.reverse()
            self.stridecache[key] = s
        return s

    def linear(self, b, t, idx):
        if not idx:
            return ir.Constant(I64, 0)
        st = self.strides(t)
        lin = None
        for i, s in zip(idx, st):
            term = i if (isinstance(s, ir.Constant) and s.constant == 1) else b.mul(i, s)
            lin = term if lin is None else b.add(lin, term)
        return lin

    def elem_ptr(self, b, buf: Value, idx_vals):
        ty = MEMTYPE[dtype_name(buf.type)]
        lin = self.linear(b, buf.type, idx_vals)
        return b.gep(self.vmap[buf], [lin], inbounds=True, source_etype=ty)

    # -- asserts ------------------------------------------------------------------------------
    def fail(self, code: int):
        bb = self.fail_bbs.get(code)
        if bb is None:
            bb = self.fn.append_basic_block(f"fail{code}")
            ir.IRBuilder(bb).ret(ir.Constant(I32, code))
            self.fail_bbs[code] = bb
        return bb

    # -- blocks ---------------------------------------------------------------------------------
    def emit_block(self, block: Block):
        for op in block.ops:
            if op.name in ("loop.yield", "func.return"):
                return [self.vmap[v] for v in op.operands]
            self.emit_op(op)
        return []

    def emit_op(self, op: Op):
        name = op.name
        h = OP_TABLE.get(name)
        if h is not None:
            h(self, op)
            return
        dialect, short = name.split(".", 1)
        if dialect == "scalar":
            self.vmap[op.results[0]] = self.scalar(op, short)
            return
        raise CodegenError(f"no code generation for {name}")

    # -- scalar ops ------------------------------------------------------------------------------
    def scalar(self, op: Op, short: str):
        b = self.b
        args = [self.vmap[v] for v in op.operands]
        rt = op.results[0].type.dtype
        if short == "const":
            return const_of(op.attrs["value"], rt)
        if short == "cast":
            return cast(b, args[0], op.operands[0].type.dtype, rt)
        if short == "select":
            sel = b.select(*args)
            if op.attrs.get("unpredictable"):  # keep it a select: no branch on data
                sel.set_metadata("unpredictable", self.mg.m.add_metadata([]))
            return sel
        if short in FCMP:
            at = op.operands[0].type.dtype
            if at.is_float:
                pred, kind = FCMP[short]
                return b.fcmp_ordered(pred, *args) if kind == "o" else b.fcmp_unordered(pred, *args)
            if at.is_bool:
                return b.icmp_unsigned(ICMP[short], *args)
            return b.icmp_signed(ICMP[short], *args)
        if rt.is_float:
            return float_op(self, b, short, args, rt, op)
        return int_op(self, b, short, args, rt)



# -- op handlers -----------------------------------------------------------------------------------


def h_load(g: Gen, op):
    buf = op.operands[0]
    p = g.elem_ptr(g.b, buf, [g.vmap[i] for i in op.operands[1:]])
    dn = dtype_name(buf.type)
    v = g.b.load(p, typ=MEMTYPE[dn])
    if dn == "bool":
        v = g.b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
    g.vmap[op.results[0]] = v


def h_store(g: Gen, op):
    v, buf = op.operands[0], op.operands[1]
    p = g.elem_ptr(g.b, buf, [g.vmap[i] for i in op.operands[2:]])
    x = g.vmap[v]
    if dtype_name(buf.type) == "bool":
        x = g.b.zext(x, I8)
    g.b.store(x, p)


def h_dim(g: Gen, op):
    g.vmap[op.results[0]] = g.dim(op.attrs["dim"])


def h_view(g: Gen, op):
    g.vmap[op.results[0]] = g.vmap[op.operands[0]]


def h_subview(g: Gen, op):
    buf = op.operands[0]
    st = g.strides(buf.type)
    off = g.b.mul(g.vmap[op.operands[1]], st[0])
    g.vmap[op.results[0]] = g.b.gep(g.vmap[buf], [off], inbounds=True, source_etype=MEMTYPE[dtype_name(buf.type)])


def h_copy(g: Gen, op):
    src, dst = op.operands
    n = g.numel(src.type)
    nbytes = g.b.mul(n, ir.Constant(I64, SIZE[dtype_name(src.type)]))
    fn = g.mg.decl("llvm.memmove.p0.p0.i64", VOID, [PTR, PTR, I64, I1])
    g.b.call(fn, [g.vmap[dst], g.vmap[src], nbytes, ir.Constant(I1, 0)])



def h_assert(g: Gen, op):
    msg = op.attrs.get("message", "assertion failed")
    g.messages.append(msg)
    code = len(g.messages)
    cont = g.fn.append_basic_block("ok")
    g.b.cbranch(g.vmap[op.operands[0]], cont, g.fail(code))
    g.b.position_at_end(cont)


def h_for(g: Gen, op):
    lo, hi = g.bounds.get(op) or (g.vmap[op.operands[0]], g.vmap[op.operands[1]])
    emit_loop(g, op, lo, hi)


def emit_loop(g: Gen, op, lo, hi, emit_body=None):
    b = g.b
    inits = g.inits.get(op) or [g.vmap[v] for v in op.operands[2:]]
    body = op.regions[0].block
    pre = b.block
    loop_bb = g.fn.append_basic_block("loop")
    exit_bb = g.fn.append_basic_block("endloop")
    b.cbranch(b.icmp_signed("<", lo, hi), loop_bb, exit_bb)
    b.position_at_end(loop_bb)
    i = b.phi(I64)
    i.add_incoming(lo, pre)
    phis = []
    for v, a in zip(inits, body.args[1:]):
        p = b.phi(v.type)
        p.add_incoming(v, pre)
        phis.append(p)
        g.vmap[a] = p
    g.vmap[body.args[0]] = i
    nexts = (emit_body or g.emit_block)(body)
    latch = b.block
    n = b.add(i, ir.Constant(I64, 1), flags=["nsw"])
    i.add_incoming(n, latch)
    for p, v in zip(phis, nexts):
        p.add_incoming(v, latch)
    b.cbranch(b.icmp_signed("<", n, hi), loop_bb, exit_bb)
    b.position_at_end(exit_bb)
    results = []
    for v0, v1 in zip(inits, nexts):
        r = b.phi(v0.type)
        r.add_incoming(v0, pre)
        r.add_incoming(v1, latch)
        results.append(r)
    for r, v in zip(op.results, results):
        g.vmap[r] = v


def h_scalar_const(g: Gen, op):
    g.vmap[op.results[0]] = const_of(op.attrs["value"], op.results[0].type.dtype)


OP_TABLE = {
    "mem.load": h_load,
    "mem.store": h_store,
    "mem.view": h_view,
    "mem.subview": h_subview,
    "mem.copy": h_copy,
    "mem.gemm": h_gemm,
    "loop.dim": h_dim,
    "loop.for": h_for,
    "loop.assert": h_assert,
    "scalar.const": h_scalar_const,
}


# -- entry functions and kernels -------------------------------------------------------------------


def work_estimate(g: Gen, b, block: Block):
    """An i64 estimate of the work in `block` (trip counts x op weights), or None
    when a loop bound is not known before the block runs."""
    total = 0
    dyn = None
    for o in block.ops:
        if o.name == "loop.for":
            lo, hi = o.operands[:2]
            if lo not in g.vmap or hi not in g.vmap:
                return None
            inner = work_estimate(g, b, o.regions[0].block)
            if inner is None:
                return None
            trips = b.sub(g.vmap[hi], g.vmap[lo])
            t = b.mul(trips, inner)
            dyn = t if dyn is None else b.add(dyn, t)
        elif o.name == "mem.gemm":
            return None  # BLAS threads itself
        else:
            short = o.name.split(".", 1)[1]
            total += WEIGHT.get(short, 1)
    c = ir.Constant(I64, total)
    return c if dyn is None else b.add(dyn, c)


REDUCE_CHUNKS = 16  # most chunks a large reduction is cut into (their partials are combined in order)


def reduce_identity(kind: str, dt):
    """The identity of a reduce kernel's combine (add, max, min) in dtype dt."""
    if kind == "add":
        return const_of(0, dt)
    if dt.is_float:
        return const_of(float("-inf") if kind == "max" else float("inf"), dt)
    if dt.is_bool:
        return const_of(kind == "min", dt)
    info = np.iinfo(dt.np)
    return const_of(info.min if kind == "max" else info.max, dt)


def partial_slot(b, parts, k):
    """The k-th 8-byte slot of a reduction's partials."""
    return b.gep(parts, [b.mul(k, ir.Constant(I64, 8))], source_etype=I8)


def nest_work(g: Gen, b, loop: Op):
    """An i64 estimate of the work of a loop nest, or None (see work_estimate)."""
    lo, hi = loop.operands[:2]
    if lo not in g.vmap or hi not in g.vmap:
        return None
    inner = work_estimate(g, b, loop.regions[0].block)
    return None if inner is None else b.mul(b.sub(g.vmap[hi], g.vmap[lo]), inner)


def _static_trips(op: Op):
    """Trip count of a loop.for whose bounds are integer dims, else None."""
    lo, hi = op.operands[:2]
    vals = []
    for v in (lo, hi):
        if not (isinstance(v, OpResult) and v.op.name == "loop.dim" and isinstance(v.op.attrs["dim"], int)):
            return None
        vals.append(v.op.attrs["dim"])
    return max(0, vals[1] - vals[0])


def _small_static(op: Op, limit: int = 4096) -> bool:
    """A loop nest whose every loop has a static trip count and that runs at most
    `limit` innermost iterations in all: not worth a kernel and thread dispatch."""
    total = 1
    for o in op.walk():
        if o.name == "loop.for":
            t = _static_trips(o)
            if t is None:
                return False
            total *= max(t, 1)
        elif o.name == "mem.gemm":
            return False
    return total <= limit


def _runs_on_one_thread(host: Op) -> bool:
    """Whether a host loop's body holds nothing the pool or BLAS would run (no
    product, no map or reduce kernel beyond _small_static): then the whole loop
    can be one function run on the calling thread."""
    for o in host.walk():
        if o.name == "mem.gemm":
            return False
        if o is not host and o.name == "loop.for" and o.attrs.get("kernel") in ("map", "reduce"):
            if not _small_static(o):
                return False
    return True


def _attrs_key(attrs: dict):
    # (in insertion order: nests made by the same lowering agree on it; at worst
    # two equal nests are not merged)
    return repr(attrs) if attrs else ""


def nest_key(loop: Op):
    """(key, slots, fconsts, asserts) of a loop nest, for kernel dedupe: `key`
    describes the nest's structure (op names, attributes, types, operand wiring
    as local indices; every value from outside as a slot in first-use order with
    its kind and type; loop.dim values and integer constants by value); `slots`
    the values from outside in that order; `fconsts` the (slot, value text) of
    its float constants, which the key leaves out when they may become kernel
    parameters (not in a nest with reassociable ops, where LLVM could combine
    constants); `asserts` whether it holds a loop.assert. Two nests with equal
    keys are the same kernel up to their slots' values.

    The key is one flat tuple, in pre-order: per block "block", its argument
    count and types; per op its name, its attributes' repr, its operand count
    and operands (a local index, or -1 - slot, after a slot's description where
    it is first used: a kind, "dim", "const", "fconst" or "free", and three
    fields), its result count and types, its region count. A type is two
    entries, its dtype's name and its shape (what makes types equal:
    TensorType.__eq__; hashing them is most of the cost of hashing a key). The
    counts and the fixed length of a description make it unambiguous, and
    every block ends with its terminator. A local index numbers the nest's own
    values and its slots together in the order they appear (one table for
    both: a value is looked up once per use), so it is a function of the key
    before it. (Flat, of strings, ints and shapes only: a long function's
    nests are keyed by the ten thousand, and a tuple per op was a third of the
    time and as many objects for the cycle collector; the key is hashed once,
    with no nested tuple of types to hash again.)"""
    codes: dict = {}  # value -> local index (>= 0), or -1 - slot for a value from outside
    codes_get = codes.get
    slots: list = []
    fconsts: list = []  # (slot, value text, index of its description in parts)
    parts: list = []
    add = parts.append
    extend = parts.extend
    reassoc = asserts = False

    def first_use(v):
        """The code of a value from outside at its first use, its description added."""
        s = len(slots)
        slots.append(v)
        code = codes[v] = -1 - s
        d = v.op if isinstance(v, OpResult) else None
        name = d.name if d is not None else None
        if name == "loop.dim":
            extend(("dim", d.attrs["dim"], None, None))
            return code
        t = v.type
        if name == "scalar.const":
            if t.dtype.is_float:  # (a parameter unless the nest reassociates)
                fconsts.append((s, repr(d.attrs["value"]), len(parts)))
                extend(("fconst", t.dtype.name, t.shape, None))
            else:
                extend(("const", t.dtype.name, t.shape, repr(d.attrs["value"])))
        else:
            extend(("free", t.dtype.name, t.shape, name in BUFFER_OPS if d is not None else is_buffer(v)))
        return code

    def walk(ops):
        nonlocal reassoc, asserts
        for o in ops:
            attrs = o.attrs
            operands = o.operands
            if attrs:
                if attrs.get("reassoc"):
                    reassoc = True
                extend((o.name, repr(attrs), len(operands)))
            else:
                extend((o.name, "", len(operands)))
            for v in operands:
                i = codes_get(v)
                add(first_use(v) if i is None else i)
            results = o.results
            add(len(results))
            for r in results:
                t = r.type
                extend((t.dtype.name, t.shape))
                codes[r] = len(codes)
            regions = o.regions
            add(len(regions))
            if regions:
                for region in regions:
                    for block in region.blocks:
                        args = block.args
                        extend(("block", len(args)))
                        for a in args:
                            t = a.type
                            extend((t.dtype.name, t.shape))
                            codes[a] = len(codes)
                        walk(block.ops)
            elif o.name == "loop.assert":
                asserts = True

    walk((loop,))
    walk = None  # (it calls itself: a reference cycle holding the tables)
    if reassoc:  # LLVM may combine its constants: they stay in the key, inline
        for s, text, at in fconsts:
            parts[at] = "const"
            parts[at + 3] = text
        fconsts = []
    else:
        fconsts = [(s, text) for s, text, _ in fconsts]
    return tuple(parts), slots, fconsts, asserts


def _host_nests(block: Block, out: list):
    """The loop nests host_op may turn into kernels: the block's loops and, inside
    host loops, theirs."""
    for o in block.ops:
        if o.name == "loop.for":
            out.append(o)
            if o.attrs.get("kernel") in ("loop", "gemm"):
                _host_nests(o.regions[0].block, out)
    return out


class Kernel:
    """A kernel function made by FunctionGen.kernel_function (see there)."""

    __slots__ = ("kfn", "kg", "free", "ptypes", "thunk", "shared_ty", "chunk_ty", "consts")

    def __init__(self, kfn, kg, free, ptypes, thunk, shared_ty, chunk_ty, consts=()):
        self.kfn, self.kg, self.free, self.ptypes = kfn, kg, free, ptypes
        self.consts = consts
        self.thunk, self.shared_ty, self.chunk_ty = thunk, shared_ty, chunk_ty


class FunctionGen:
    def __init__(self, mg: ModuleGen, op: Op):
        self.mg = mg
        self.op = op
        self.keys: dict = {}  # loop op -> FunctionGen.nest(loop)
        self.key_ids: dict = {}  # nest key -> its id
        self.varying: dict = {}  # nest key id -> slots of float constants that differ between its nests
        self.kernels: dict = {}  # kernel key -> its Kernel
        self.combines: dict = {}  # (kinds, dtypes, reassoc flags) -> combine function
        self.known: dict = {}  # nest key id -> work_known
        self.seg_slots: dict = {}  # nest key id -> FunctionGen.segment_slots
        self.launchers: dict = {}  # kernel name -> its launcher
        self.maxres = 1  # most results of a nest (the scratch slots)

    def plan_kernels(self, body: Block):
        """Group the nests by structure (nest_key): a float constant that differs
        between the nests of a group becomes a parameter of their one kernel; one
        that does not (and every constant of a nest alone) stays a constant."""
        seen: dict = {}
        for loop in _host_nests(body, []):
            self.maxres = max(self.maxres, len(loop.results))
            if not DEDUPE:
                continue
            k = self.nest(loop)
            seen.setdefault(k[0], []).append(k[2])
        for key, fcs in seen.items():
            if len(fcs) > 1:
                first = fcs[0]
                self.varying[key] = frozenset(
                    s for j, (s, val) in enumerate(first) if any(f[j][1] != val for f in fcs[1:]))

    def build(self) -> FunctionInfo:
        mg, op = self.mg, self.op
        name = op.attrs["sym_name"]
        fn = ir.Function(mg.m, ir.FunctionType(I32, [PTR, PTR, PTR, PTR]), name)
        for a in fn.args:
            a.add_attribute("noalias")
        self.messages: list = []
        self.dim_names = list(op.attrs.get("dims", ()))
        body = op.regions[0].block
        self.plan_kernels(body)
        self.plan_workspace(body)
        ops = [o for o in body.ops if o.name not in ("mem.alloc", "mem.global", "mem.constant")]
        # (the lowering puts every constant and dim at the top of the entry:
        # made where they are used, they are not host ops a segment runs; a
        # function of 10,000 statements that differ in their constants would
        # otherwise run segments that only pass constants on to later ones)
        rematerialised = ("scalar.const", "loop.dim", "func.return")
        n_host = sum(1 for o in ops if o.name not in rematerialised)
        if n_host <= SEGMENT_MIN:
            g = self.frame(fn, *fn.args)
            for o in ops:
                if o.name == "func.return":
                    g.b.ret(ir.Constant(I32, 0))
                    break
                self.host_op(o)
            g.finish_prologue()
        else:
            self.segments(fn, [o for o in ops if o.name not in rematerialised[:2]])
        self.ws_size_fn(name, body)
        return FunctionInfo(name, op, self.messages)

    def plan_workspace(self, body: Block):
        """The workspace layout: each alloc's piece is at the sum of the (64-byte
        aligned) sizes of the allocs before it, one size per distinct type; its
        pointer is computed where it is used (WorkspaceMap), so that no pointer is
        live across a long entry (the register allocator is quadratic in that)."""
        sizes: dict = {}  # (shape, dtype) -> (index, a type of that shape), in first-seen order
        counts: list = []
        lazy = {}
        self.constants = {}
        self.shared_vars = []  # the entry's mem.global ops (frame loads them)
        for o in body.ops:
            if o.name == "mem.alloc":
                t = o.results[0].type
                key = (tuple(t.shape), dtype_name(t))
                if key not in sizes:
                    sizes[key] = (len(counts), t)
                    counts.append(0)
                lazy[o.results[0]] = tuple(counts)
                counts[sizes[key][0]] += 1
            elif o.name == "mem.constant":
                self.constants[o.results[0]] = self.mg.constant_data(o.attrs["value"])
            elif o.name == "mem.global":
                self.shared_vars.append(o)
        nt = len(counts)  # (each alloc's counts, padded to the number of types)
        lazy = {v: c + (0,) * (nt - len(c)) for v, c in lazy.items()}
        self.ws_layout = (sizes, counts, lazy)

    def frame(self, fn, bufs, dims, ws, ctx, carry=None, base=None, shift=None) -> Gen:
        """The Gen of a function with the entry's parameters (the entry, or one of
        its segments): buffer arguments, shared variables, nthreads and the
        workspace sizes loaded or computed in its prologue. A segment also gets
        `carry` (its carry slots, from its first one), `base` (a pointer to its
        base alloc counts, one per type: its allocs are at ws + the base's
        offset + their counts relative to `shift` = (base counts, first slot)
        of the segment it is generated from)."""
        mg, op = self.mg, self.op
        g = Gen(mg, fn, dims, self.dim_names, self.messages)
        g.host = True
        self.g = g
        body = op.regions[0].block
        pro = g.pro
        nargs = len(body.args)
        for k, a in enumerate(body.args):
            g.vmap[a] = pro.load(pro.gep(bufs, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
        g.nthreads = pro.load(ctx, typ=I64)
        for o in self.shared_vars:
            k = nargs + mg.globals.index(o.attrs["sym"].name)
            g.vmap[o.results[0]] = pro.load(pro.gep(bufs, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
        g.vmap.update(self.constants)
        sizes, _counts, lazy = self.ws_layout
        nbs = []
        for _k, t in sizes.values():
            nbytes = pro.mul(g.numel(t), ir.Constant(I64, SIZE[dtype_name(t)]))
            nbs.append(pro.and_(pro.add(nbytes, ir.Constant(I64, ALIGN - 1)), ir.Constant(I64, -ALIGN)))
        carried = getattr(self, "carried", {})
        if base is not None:
            off = ir.Constant(I64, 0)
            for k, nb in enumerate(nbs):
                n = pro.load(pro.gep(base, [ir.Constant(I64, k)], source_etype=I64), typ=I64)
                off = pro.add(off, pro.mul(n, nb))
            ws = pro.gep(ws, [off], inbounds=True, source_etype=I8)
            lazy, carried = _Shifted(lazy, shift[0]), _Shifted(carried, shift[1])
        g.vmap = WorkspaceMap(g, ws, nbs, lazy, g.vmap, carry, carried)
        return g

    def segments(self, fn, ops):
        """A long entry as a sequence of segment functions of at most SEGMENT_OPS
        host ops each (LLVM's code generation is super-linear in the length of one
        function, even unoptimised): i32 <entry>.<k>.part(bufs, dims, ws, ctx, ptr
        carry, ptr base), called in turn by the entry, which returns the first
        non-zero status. A value one segment computes and a later one reads (a
        reduction's result, a host scalar) goes through an 8-byte slot of `carry`;
        constants, dims and buffers are rebuilt in each segment.

        Segments that differ only in where their allocs are in the workspace and
        in which carry slots they use (segment_key: a long function repeating a
        pattern of statements) share one function, which takes its base alloc
        counts (a constant array, `base`) and its first carry slot (`carry`
        points there). Their length is a multiple of the period of the entry's
        host ops (segment_length), so that the segments of a repeating pattern
        start at the same phase of it."""
        seg_ops = self.segment_length(ops)
        index = {o: k for k, o in enumerate(ops)}

        def segment_of(user):
            """The segment of the host op that holds `user` (None: not a host op's)."""
            while user is not None and user not in index:
                user = user.parent_op()
            return None if user is None else index[user] // seg_ops

        self.carried = {}  # value -> carry slot
        for k, o in enumerate(ops):
            for r in o.results:
                if any(segment_of(u[0]) not in (None, k // seg_ops) for u in r.uses):
                    self.carried[r] = len(self.carried)
        mg = self.mg
        bufs, dims, ws, ctx = fn.args
        eb = ir.IRBuilder(fn.append_basic_block("entry"))
        carry = opaque_alloca(eb, ir.ArrayType(I64, max(1, len(self.carried))))
        name = self.op.attrs["sym_name"]
        lazy = self.ws_layout[2]
        ntypes = len(self.ws_layout[1])
        body = self.op.regions[0].block
        # the values every segment's frame loads (parameters, shared variables, constants)
        self.g_static = {*body.args, *self.constants, *(o.results[0] for o in self.shared_vars)}
        self.fixed_codes = {}  # segment_key's codes of values alike in every segment
        shared: dict = {}  # segment key -> its function
        for s0 in range(0, len(ops), seg_ops):
            part = ops[s0:s0 + seg_ops]
            key, base, cbase, fvals, runs = (self.segment_key(part, lazy) if DEDUPE
                                             else (None, None, None, [], {}))
            base = base or (0,) * ntypes
            cbase = cbase or 0
            sfn = shared.get(key) if key is not None else None
            done = any(o.name == "func.return" for o in part)
            k = s0 // seg_ops
            if sfn is None:
                sfn = self.segment_function(f"{name}.{k}", part, base, cbase, runs)
                if key is not None:
                    shared[key] = sfn
            bconst = ir.Constant(ir.ArrayType(I64, max(1, ntypes)), list(base) or [0])
            bglob = ir.GlobalVariable(mg.m, bconst.type, f"{name}.{k}.base")
            bglob.linkage, bglob.global_constant, bglob.initializer = "private", True, bconst
            fconst = ir.Constant(ir.ArrayType(F64, max(1, len(fvals))),
                                 [float(v.op.attrs["value"]) for v in fvals] or [0.0])
            fglob = ir.GlobalVariable(mg.m, fconst.type, f"{name}.{k}.fparams")
            fglob.linkage, fglob.global_constant, fglob.initializer = "private", True, fconst
            cptr = eb.gep(carry, [ir.Constant(I64, cbase)], inbounds=True, source_etype=I64)
            st = eb.call(sfn, [bufs, dims, ws, ctx, cptr, bglob, fglob])
            ok_bb = fn.append_basic_block("ok")
            err_bb = fn.append_basic_block("err")
            eb.cbranch(eb.icmp_signed("==", st, ir.Constant(I32, 0)), ok_bb, err_bb)
            ir.IRBuilder(err_bb).ret(st)
            eb.position_at_end(ok_bb)
            if done:
                break
        eb.ret(ir.Constant(I32, 0))

    def segment_function(self, sname, part, base, cbase, runs):
        """The function of a segment (see segments), generated from `part` with
        its allocs and carry slots relative to (base, cbase), whose kernels read
        their float parameters from its table (`runs`: their FloatBlocks -> first
        index)."""
        loops = any(o.name == "loop.for" and o.attrs.get("kernel") in ("loop", "gemm")
                    and not _runs_on_one_thread(o) for o in part)
        # glue (optnone, jit.py) unless it runs a host loop itself
        sname += ".partloop" if loops else ".part"
        sfn = ir.Function(self.mg.m, ir.FunctionType(I32, [PTR] * 7), sname)
        sfn.linkage = "internal"
        for a in sfn.args:
            a.add_attribute("noalias")
        g = self.frame(sfn, *sfn.args[:4], carry=sfn.args[4], base=sfn.args[5], shift=(base, cbase))
        g.ftable, g.float_runs = sfn.args[6], runs
        slots = g.vmap.carried
        for o in part:
            if o.name == "func.return":
                break
            self.host_op(o)
            for r in o.results:
                slot = slots.get(r)
                if slot is not None:
                    at = g.b.gep(sfn.args[4], [ir.Constant(I64, slot)], source_etype=I64)
                    g.b.store(g.vmap[r], at)
        g.b.ret(ir.Constant(I32, 0))
        g.finish_prologue()
        return sfn

    def segment_length(self, ops) -> int:
        """SEGMENT_OPS, or the largest multiple of the period of the entry's host
        ops (their names, a nest's structure id) below it when they repeat one: a
        function of 20,000 statements of a few kinds in turn then has segments
        that all start at the same phase of the pattern, and share a function."""
        sig_ids: dict = {}
        sig = np.fromiter(
            (sig_ids.setdefault(self.nest(o)[0] if o.name == "loop.for" else o.name, len(sig_ids))
             for o in ops), dtype=np.int64, count=len(ops))
        n = len(sig)
        # mismatches of the sequence against itself shifted by p: about 0 (but
        # for a prologue and an epilogue of a few statements) at the period and
        # its multiples, about n elsewhere
        lags = range(1, min(SEGMENT_OPS // 2, n // 4) + 1)
        mism = [int(np.count_nonzero(sig[p:] != sig[:-p])) for p in lags]
        if not mism or min(mism) > n // 16:
            return SEGMENT_OPS
        least = min(mism)
        p = next(p for p, m in zip(lags, mism) if m <= least + 2)
        return SEGMENT_OPS // p * p

    def segment_key(self, part, lazy):
        """(key, base counts, first carry slot, float table, runs) of a segment: its
        host ops with every value from outside it as what the segment's code makes
        of it (an alloc by its counts relative to the segment's first alloc, a
        carried value by its slot relative to the first slot it uses, a constant or
        dim by value, a parameter, global or constant buffer by identity, a nest by
        its structure id and its values; the float constants that its kernel takes
        as parameters (plan_kernels), a FloatBlock, by the place of their run in the
        segment's table, `float table`, which the kernel reads (`runs`: block ->
        first index)). Segments with equal keys
        compute the same code from their bases and tables. The key is None for a
        segment generated for itself: it holds a loop.assert (each registers its
        message where it is generated), a host loop or an op with regions that is
        not a nest."""
        local: dict = {}
        parts: list = []
        base = cbase = None
        vmap_items = self.g_static
        # the codes of the values that code the same in every segment (the entry's
        # parameters, shared variables and constant buffers, constants, dims)
        fixed = self.fixed_codes
        fixed_get = fixed.get
        fvals: list = []  # the segment's table: its kernels' float parameters
        runs: dict = {}  # a kernel's FloatBlock -> its first index in fvals

        def ext(v):
            nonlocal base, cbase
            i = local.get(v)
            if i is not None:
                return i
            i = fixed_get(v)
            if i is not None:
                return i
            if v in vmap_items:
                i = fixed[v] = ("x", v)
                return i
            counts = lazy.get(v)
            if counts is not None:
                if base is None:
                    base = counts
                return ("a", *map(sub, counts, base))
            d = v.op if isinstance(v, OpResult) else None
            if d is not None and d.name == "scalar.const":
                i = fixed[v] = ("c", v.type, repr(d.attrs["value"]))
                return i
            if d is not None and d.name == "loop.dim":
                i = fixed[v] = ("d", d.attrs["dim"])
                return i
            if d is not None and d.name == "mem.view":
                return ("v", ext(d.operands[0]), v.type)
            slot = self.carried.get(v)
            if slot is None:
                raise _NoKey
            if cbase is None:
                cbase = slot
            return ("r", slot - cbase)

        def run(block):
            """A kernel's float parameters: a run of the table it reads itself."""
            j = runs.get(block)
            if j is None:
                j = runs[block] = len(fvals)
                fvals.extend(block)
            return j

        carried_get = self.carried.get
        nest = self.nest
        try:
            for o in part:
                name = o.name
                if name == "loop.for":
                    if o.attrs.get("kernel") in ("loop", "gemm") and not _runs_on_one_thread(o):
                        raise _NoKey
                    kid, slots, _fconsts, asserts = nest(o)
                    if asserts:
                        raise _NoKey
                    keyed, params = self.segment_slots(kid, slots)
                    enc = [ext(slots[k]) for k in keyed]
                    if params:  # the kernel's parameters: from the segment's table
                        enc.append(("f", run(FloatBlock([slots[k] for k in params]))))
                    parts.append(("n", kid, tuple(enc)))
                elif name == "func.return":
                    parts.append(("ret",))
                    break
                elif o.regions or name == "loop.assert":
                    raise _NoKey
                else:
                    parts.append((name, _attrs_key(o.attrs), tuple([r.type for r in o.results]),
                                  tuple([ext(v) for v in o.operands])))
                for r in o.results:
                    local[r] = len(local)
                    slot = carried_get(r)
                    if slot is not None:  # (written to its carry slot)
                        if cbase is None:
                            cbase = slot
                        parts.append(("w", slot - cbase))
        except _NoKey:
            return None, base, cbase, [], {}
        finally:
            ext = None  # (it calls itself: a reference cycle holding `lazy`)
        return tuple(parts), base, cbase, fvals, runs

    def segment_slots(self, kid: int, slots: list):
        """(keyed, params) for the nests of key id `kid` in segment_key: the places
        of the slots that a segment key encodes (ext), and of those that are the
        kernel's float parameters (plan_kernels' varying ones), in slot order. A
        loop.dim or a constant that is not a parameter is left out: its value is
        in the nest key (a dim, an integer constant, any constant of a nest that
        reassociates) or is the same in every nest of the key (a float constant
        that does not vary). Which slot is which depends on the key only (each
        slot's kind is in it), so the first nest's slots give every nest's."""
        got = self.seg_slots.get(kid)
        if got is None:
            varying = self.varying.get(kid, ())
            keyed = []
            for k, v in enumerate(slots):
                d = v.op if isinstance(v, OpResult) else None
                if d is None or d.name not in ("loop.dim", "scalar.const"):
                    keyed.append(k)
            got = self.seg_slots[kid] = (keyed, sorted(varying))
        return got

    def host_op(self, o: Op):
        """Render one host-level op as the kernelize pass marked it: a map is an
        outlined kernel split over the threads, a host loop (or a batch of
        products) a loop whose body is rendered the same way, any other loop nest
        a kernel run on this thread; the remaining ops run inline."""
        kind = o.attrs.get("kernel") if o.name == "loop.for" else None
        if kind == "map" and not _small_static(o):
            self.outline(o)
        elif kind == "reduce" and not _small_static(o):
            self.outline_reduce(o)
        elif kind in ("loop", "gemm") and _runs_on_one_thread(o):
            self.serial(o)  # (a scan of small steps: the whole loop is one function)
        elif kind in ("loop", "gemm"):
            emit_loop(self.g, o, self.g.vmap[o.operands[0]], self.g.vmap[o.operands[1]],
                      self.host_block)
        elif o.name == "loop.for":
            # serial loops, small maps and small reductions: a kernel function run
            # on this thread, so the entry stays loop-free (glue, compiled optnone)
            # and no nest is optimised as part of a long entry function
            self.serial(o)
        else:
            self.g.emit_op(o)

    def host_block(self, block: Block):
        for o in block.ops:
            if o.name == "loop.yield":
                return [self.g.vmap[v] for v in o.operands]
            self.host_op(o)
        return []

    def ws_size_fn(self, name, body):
        """i64 @"<name>.ws"(ptr dims): the workspace size in bytes."""
        fn = ir.Function(self.mg.m, ir.FunctionType(I64, [PTR]), ws_symbol(name))
        g = Gen(self.mg, fn, fn.args[0], list(self.op.attrs.get("dims", ())), [])
        total = ir.Constant(I64, 0)
        sizes, counts, _lazy = self.ws_layout
        for k, t in sizes.values():
            nbytes = g.pro.mul(g.numel(t), ir.Constant(I64, SIZE[dtype_name(t)]))
            nbytes = g.pro.and_(g.pro.add(nbytes, ir.Constant(I64, ALIGN - 1)), ir.Constant(I64, -ALIGN))
            total = g.pro.add(total, g.pro.mul(nbytes, ir.Constant(I64, counts[k])))
        g.finish_prologue()
        g.b.ret(total)

    def serial(self, loop: Op):
        """Emit a loop nest as a kernel function called once on this thread:
        i32 k(ptr dims, i64 lo, i64 hi, <free values>..., ptr results), whose loop
        results (a reduction's) are stored in 8-byte slots of `results` and loaded
        back here. The nest runs in iteration order, exactly as it would inline."""
        g = self.g
        b = g.b
        nres = len(loop.results)
        extra = (PTR,) if nres else ()
        kern = self.kernel_function(loop, extra, serial=True)
        free = kern.free
        kg = kern.kg
        if kg is not None:
            kfn = kern.kfn
            kg.bounds[loop] = (kfn.args[1], kfn.args[2])
            h_for(kg, loop)
            if nres:
                out = kfn.args[3 + len(free)]
                for k, r in enumerate(loop.results):
                    kg.b.store(kg.vmap[r], partial_slot(kg.b, out, ir.Constant(I64, k)))
            kg.b.ret(ir.Constant(I32, 0))
            kg.finish_prologue()

        call_args = [g.dims_ptr, g.vmap[loop.operands[0]], g.vmap[loop.operands[1]]]
        call_args += [g.vmap[v] for v in free]
        slots = None
        if nres:
            slots = self.scratch()
            call_args.append(slots)
        st = b.call(kern.kfn, call_args)
        if self.can_fail(loop):
            self.check_status(st)
        for k, r in enumerate(loop.results):
            g.vmap[r] = g.b.load(partial_slot(g.b, slots, ir.Constant(I64, k)),
                                 typ=LLTYPE[r.type.dtype.name])

    def check_status(self, st):
        """Return a kernel's non-zero status (a failed loop.assert) from the entry."""
        g = self.g
        ok = g.b.icmp_signed("==", st, ir.Constant(I32, 0))
        cont = g.fn.append_basic_block("cont")
        err = g.fn.append_basic_block("err")
        g.b.cbranch(ok, cont, err)
        ir.IRBuilder(err).ret(st)
        g.b.position_at_end(cont)

    def can_fail(self, loop: Op) -> bool:
        return self.nest(loop)[3]

    def nest(self, loop: Op):
        """(key id, slots, float constants, whether it asserts) of a nest (nest_key;
        equal keys get one small integer id, which the tables use instead of the
        key)."""
        k = self.keys.get(loop)
        if k is None:
            key, slots, fconsts, asserts = nest_key(loop)
            kid = self.key_ids.setdefault(key, len(self.key_ids))
            k = self.keys[loop] = (kid, slots, fconsts, asserts)
        return k

    def kernel_function(self, loop: Op, extra: tuple = (), serial: bool = False) -> Kernel:
        """The kernel function of a loop nest and its thunk for the pool:
        i32 k(ptr dims, i64 lo, i64 hi, <free values>..., <extra>...), where the
        free values are the buffers and computed scalars the nest uses, and its
        float constants that differ between nests of the same structure (plan_kernels);
        the other constants and the dims are rebuilt inside, so LLVM sees them. A
        `serial` one (f.sN) has no thunk (its thunk, shared and chunk types are None).
        A nest whose kernel (same structure, constants, aliasing and kind) was made
        before reuses it: the Kernel's `kg` is then None, and its `free` are this
        nest's own values for the same parameters."""
        mg, g = self.mg, self.g
        skey, slots, fconsts, _ = self.nest(loop)
        varying = self.varying.get(skey, ())
        free, consts, packed = [], [], []
        for k, v in enumerate(slots):
            d = v.op if isinstance(v, OpResult) else None
            if d is not None and (d.name == "loop.dim" or (d.name == "scalar.const" and k not in varying)):
                consts.append(v)
            elif k in varying:
                packed.append(v)
            else:
                free.append(v)
        written = written_buffers(loop)
        roots = {}
        for v in free:
            if is_buffer(v):
                roots.setdefault(storage_root(v), []).append(v)
        noalias = tuple(is_buffer(v) and (len(roots[storage_root(v)]) == 1 or storage_root(v) not in written)
                        for v in free)
        if packed:  # the varying float constants: one pointer, the last free value
            block = FloatBlock(packed)
            free.append(block)
            noalias += (False,)
            if block not in g.vmap:  # (a launcher has it as its parameter)
                g.vmap[block] = self.float_block(block)
        kkey = (serial, tuple(str(t) for t in extra), skey, noalias,
                tuple(val for k, val in fconsts if k not in varying))
        hit = self.kernels.get(kkey) if DEDUPE else None
        if hit is not None:
            if self.can_fail(loop):  # (the codes of the asserts after it count these)
                g.messages.extend(o.attrs.get("message", "assertion failed")
                                  for o in loop.walk() if o.name == "loop.assert")
            return Kernel(hit.kfn, None, free, hit.ptypes, hit.thunk, hit.shared_ty, hit.chunk_ty, consts)
        # f.kN: a parallel kernel (and its thunk); f.sN: a nest run on the calling thread
        if serial:
            kname = f"{self.op.attrs['sym_name']}.s{mg.serial_count}"
            mg.serial_count += 1
        else:
            kname = f"{self.op.attrs['sym_name']}.k{mg.kernel_count}"
            mg.kernel_count += 1
        ptypes = [PTR, I64, I64]  # dims, lo, hi
        for v in free:
            pointer = type(v) is FloatBlock or is_buffer(v)
            ptypes.append(PTR if pointer else LLTYPE[v.type.dtype.name])
        ptypes += list(extra)
        kfn = ir.Function(mg.m, ir.FunctionType(I32, ptypes), kname)
        kfn.linkage = "internal"
        kfn.attributes.add("noinline")  # one copy, called by the thunk and the one-thread path
        for k, na in enumerate(noalias):
            if na:
                kfn.args[k + 3].add_attribute("noalias")
        kg = Gen(mg, kfn, kfn.args[0], g.dim_names, g.messages)
        for k, v in enumerate(free):
            kg.vmap[v] = kfn.args[k + 3]
        if packed:
            load_floats(kg, kfn.args[2 + len(free)], packed)
        for v in consts:
            if v.op.name == "scalar.const":
                kg.vmap[v] = const_of(v.op.attrs["value"], v.type.dtype)
            else:
                kg.vmap[v] = kg.dim(v.op.attrs["dim"])
        if serial:
            kern = Kernel(kfn, kg, free, ptypes, None, None, None, consts)
            self.kernels[kkey] = kern
            return kern
        # thunk: void* thunk(ptr chunk) with chunk = {ptr shared, i64 lo, i64 hi, i32 status}
        shared_ty = ir.LiteralStructType(ptypes)
        chunk_ty = ir.LiteralStructType([PTR, I64, I64, I32])
        thunk = ir.Function(mg.m, ir.FunctionType(PTR, [PTR]), kname + ".thunk")
        thunk.linkage = "internal"
        tb = ir.IRBuilder(thunk.append_basic_block("e"))
        c = thunk.args[0]
        z = ir.Constant(I32, 0)
        sh = tb.load(tb.gep(c, [z, z], source_etype=chunk_ty), typ=PTR)
        lo = tb.load(tb.gep(c, [z, ir.Constant(I32, 1)], source_etype=chunk_ty), typ=I64)
        hi = tb.load(tb.gep(c, [z, ir.Constant(I32, 2)], source_etype=chunk_ty), typ=I64)
        args = []
        for k, t in enumerate(ptypes):
            args.append(tb.load(tb.gep(sh, [z, ir.Constant(I32, k)], source_etype=shared_ty), typ=t))
        args[1], args[2] = lo, hi
        st = tb.call(kfn, args)
        tb.store(st, tb.gep(c, [z, ir.Constant(I32, 3)], source_etype=chunk_ty))
        tb.ret(ir.Constant(PTR, None))
        kern = Kernel(kfn, kg, free, ptypes, thunk, shared_ty, chunk_ty, consts)
        self.kernels[kkey] = kern
        return kern

    def float_block(self, block: FloatBlock):
        """The pointer that self.g passes for a kernel's FloatBlock: into its
        segment's table when the segment was planned with it (segment_key: the
        functions of segments alike read their own tables), else to a constant
        array of the values."""
        g = self.g
        start = getattr(g, "float_runs", {}).get(block)
        if start is not None:
            return g.b.gep(g.ftable, [ir.Constant(I64, start)], inbounds=True, source_etype=F64)
        return self.mg.float_table(tuple(float(v.op.attrs["value"]) for v in block))

    def outline(self, loop: Op):
        """Emit a map kernel (a loop nest) as a kernel function, called on one
        thread or with the range of its first parallel axis split over
        ctx.nthreads threads of the pool. The choice (a run-time work estimate)
        is made by the kernel's launcher (f.kN.launch, glue shared by every nest
        of the kernel), so the entry holds one call per nest."""
        g = self.g
        split = chain(loop)[loop.attrs["grid"][0]]
        kern = self.kernel_function(loop)
        kfn, kg = kern.kfn, kern.kg
        if kg is not None:
            kg.bounds[split] = (kfn.args[1], kfn.args[2])
            h_for(kg, loop)
            kg.b.ret(ir.Constant(I32, 0))
            kg.finish_prologue()
        fails = self.can_fail(loop)
        lfn = self.launchers.get(kfn.name)
        if lfn is None:
            lfn, lg = self.launcher(kern, [I64])
            entry_g, self.g = self.g, lg
            try:
                nf = len(kern.free)
                st = self.map_launch(loop, kern, split, list(lfn.args[:3 + nf]), lfn.args[1], lfn.args[2],
                                     True)
            finally:
                self.g = entry_g
            lg.b.ret(st)
            lg.finish_prologue()
            self.launchers[kfn.name] = lfn
        st = g.b.call(lfn, [g.dims_ptr, g.vmap[split.operands[0]], g.vmap[split.operands[1]]]
                      + [g.vmap[v] for v in kern.free] + [g.nthreads])
        if fails:
            self.check_status(st)

    def launcher(self, kern: Kernel, extra: list):
        """The launcher of a kernel: i32 <kernel>.launch(<the kernel's parameters
        without its extra ones>..., <extra>...), compiled as glue (jit.py), and its
        Gen, whose values of the nest's free values are its parameters (constants
        and dims rebuilt as in the kernel)."""
        nf = len(kern.free)
        ptypes = kern.ptypes[:3 + nf] + extra
        lfn = ir.Function(self.mg.m, ir.FunctionType(I32, ptypes), kern.kfn.name + ".launch")
        lfn.linkage = "internal"
        lg = Gen(self.mg, lfn, lfn.args[0], self.g.dim_names, self.g.messages)
        for k, v in enumerate(kern.free):
            lg.vmap[v] = lfn.args[k + 3]
        for v in kern.consts:
            if v.op.name == "scalar.const":
                lg.vmap[v] = const_of(v.op.attrs["value"], v.type.dtype)
            else:
                lg.vmap[v] = lg.dim(v.op.attrs["dim"])
        lg.nthreads = lfn.args[3 + nf]
        return lfn, lg

    def map_launch(self, loop, kern, split, call_args, lo_v, hi_v, fails):
        """The call of a map kernel from self.g: on this thread, or its range split
        over the pool when the work estimate is large. Returns the status."""
        g = self.g
        b = g.b
        kfn = kern.kfn
        # A run-time work estimate decides between one thread and several.
        work = nest_work(g, b, loop)
        if work is None:
            return b.call(kfn, call_args)
        n = work.operands[0] if split is loop else b.sub(hi_v, lo_v)
        par = b.and_(b.and_(b.icmp_signed(">", g.nthreads, ir.Constant(I64, 1)),
                            b.icmp_signed(">=", work, ir.Constant(I64, PAR_THRESHOLD))),
                     b.icmp_signed(">=", n, ir.Constant(I64, 2)))
        if split is not loop:
            # an inner axis (a column sum's columns) is split only into whole
            # 64-element pieces: narrower ones would share cache lines that
            # every outer iteration writes, and not vectorise
            wide = b.icmp_signed(">=", n, b.mul(g.nthreads, ir.Constant(I64, 64)))
            par = b.and_(par, wide)
        par_bb = g.fn.append_basic_block("par")
        seq_bb = g.fn.append_basic_block("seq")
        join_bb = g.fn.append_basic_block("joined")
        b.cbranch(par, par_bb, seq_bb)
        b.position_at_end(seq_bb)
        st_seq = b.call(kfn, call_args)
        b.branch(join_bb)
        seq_end = b.block
        b.position_at_end(par_bb)
        st_par = self.parallel_call(kfn, kern.thunk, kern.shared_ty, kern.chunk_ty, kern.ptypes, call_args,
                                    lo_v, hi_v, n)
        par_end = b.block
        b.branch(join_bb)
        b.position_at_end(join_bb)
        st = b.phi(I32)
        st.add_incoming(st_seq, seq_end)
        st.add_incoming(st_par, par_end)
        return st

    def outline_reduce(self, loop: Op):
        """A reduce kernel: when its work is large, the range of its outer loop is
        cut into at most REDUCE_CHUNKS chunks whose length depends on the range
        only; each chunk's partial results start from the combines' identities,
        the chunks run on the pool (or in turn on this thread when ctx.nthreads
        is 1), and the partials are combined with the initial values in chunk
        order. Results depend on the shapes, never on the thread count. Small
        reductions run in order on this thread (serial)."""
        g = self.g
        if not self.work_known(loop):
            self.serial(loop)
            return
        kinds = loop.attrs["combine"]
        levels = reduction_levels(loop)
        inner = levels[-1].regions[0].block
        combiners = [y.op for y in inner.terminator.operands]
        dts = [r.type.dtype for r in loop.results]
        # kernel(dims, c0, c1, free..., partials, lo, hi, per): chunks [c0, c1)
        kern = self.kernel_function(loop, (PTR, I64, I64, I64))
        if kern.kg is not None:
            self.reduce_chunks(loop, kern, kinds, dts)
        lfn = self.launchers.get(kern.kfn.name)
        if lfn is None:
            # i32 f.kN.launch(dims, lo, hi, free..., nthreads, ptr results)
            lfn, lg = self.launcher(kern, [I64, PTR])
            entry_g, self.g = self.g, lg
            try:
                work = nest_work(lg, lg.b, loop)
                self.reduce_call(loop, kern, work, kinds, dts, combiners)
                out = lfn.args[-1]
                for k, r in enumerate(loop.results):
                    lg.b.store(lg.vmap[r], partial_slot(lg.b, out, ir.Constant(I64, k)))
            finally:
                self.g = entry_g
            lg.b.ret(ir.Constant(I32, 0))
            lg.finish_prologue()
            self.launchers[kern.kfn.name] = lfn
        slots = self.scratch()
        st = g.b.call(lfn, [g.dims_ptr, g.vmap[loop.operands[0]], g.vmap[loop.operands[1]]]
                      + [g.vmap[v] for v in kern.free] + [g.nthreads, slots])
        if self.can_fail(loop):
            self.check_status(st)
        for k, r in enumerate(loop.results):
            g.vmap[r] = g.b.load(partial_slot(g.b, slots, ir.Constant(I64, k)),
                                 typ=LLTYPE[r.type.dtype.name])

    def scratch(self):
        """The 8-byte result slots of self.g's calls of serial kernels and reduce
        launchers (one array per function, read right after each call)."""
        g = self.g
        s = getattr(g, "scratch", None)
        if s is None:
            s = g.scratch = opaque_alloca(g.pro, ir.ArrayType(I64, max(1, self.maxres)))
        return s

    def work_known(self, loop: Op) -> bool:
        """Whether nest_work gives an estimate for the nest (its loops' bounds are
        all defined outside it) without emitting anything."""
        key = self.nest(loop)[0]
        known = self.known.get(key)
        if known is None:
            outside = set(self.nest(loop)[1])

            def block_known(block):
                for o in block.ops:
                    if o.name == "loop.for":
                        if not (o.operands[0] in outside and o.operands[1] in outside):
                            return False
                        if not block_known(o.regions[0].block):
                            return False
                    elif o.name == "mem.gemm":
                        return False
                return True

            known = (loop.operands[0] in outside and loop.operands[1] in outside
                     and block_known(loop.regions[0].block))
            block_known = None  # (it calls itself: a reference cycle holding `outside`)
            self.known[key] = known
        return known

    def reduce_chunks(self, loop, kern, kinds, dts):
        """The body of a reduce kernel: chunks [c0, c1) of the range, each from
        the identities, their partials stored in chunk order."""
        kfn, kg, nf = kern.kfn, kern.kg, len(kern.free)
        nc = len(dts)
        parts, lo_all, hi_all, per = kfn.args[3 + nf: 7 + nf]
        kb = kg.b
        pre = kb.block
        c_bb = kg.fn.append_basic_block("chunk")
        done_bb = kg.fn.append_basic_block("chunks_done")
        kb.cbranch(kb.icmp_signed("<", kfn.args[1], kfn.args[2]), c_bb, done_bb)
        kb.position_at_end(c_bb)
        c = kb.phi(I64)
        c.add_incoming(kfn.args[1], pre)
        clo = kb.add(lo_all, kb.mul(c, per))
        chi = kb.add(clo, per)
        chi = kb.select(kb.icmp_signed(">", chi, hi_all), hi_all, chi)
        kg.bounds[loop] = (clo, chi)
        kg.inits[loop] = [reduce_identity(k, dt) for k, dt in zip(kinds, dts)]
        h_for(kg, loop)
        for k, r in enumerate(loop.results):
            kb.store(kg.vmap[r], partial_slot(kb, parts, kb.add(kb.mul(c, ir.Constant(I64, nc)),
                                                               ir.Constant(I64, k))))
        c2 = kb.add(c, ir.Constant(I64, 1))
        c.add_incoming(c2, kb.block)
        kb.cbranch(kb.icmp_signed("<", c2, kfn.args[2]), c_bb, done_bb)
        kb.position_at_end(done_bb)
        kb.ret(ir.Constant(I32, 0))
        kg.finish_prologue()

    def reduce_call(self, loop, kern, work, kinds, dts, combiners):
        """The entry's side of a reduce kernel: in order on this thread when small,
        else its chunks on the pool (or in turn) and their partials combined."""
        g = self.g
        b = g.b
        nc = len(dts)
        kfn, free, thunk, shared_ty, chunk_ty, ptypes = (kern.kfn, kern.free, kern.thunk, kern.shared_ty,
                                                         kern.chunk_ty, kern.ptypes)
        lo_v, hi_v = g.vmap[loop.operands[0]], g.vmap[loop.operands[1]]
        inits = [g.vmap[v] for v in loop.operands[2:]]
        n = work.operands[0]
        big = b.and_(b.icmp_signed(">=", work, ir.Constant(I64, PAR_THRESHOLD)),
                     b.icmp_signed(">=", n, ir.Constant(I64, 2)))
        par_bb = g.fn.append_basic_block("reduce_par")
        seq_bb = g.fn.append_basic_block("reduce_seq")
        join_bb = g.fn.append_basic_block("reduce_joined")
        b.cbranch(big, par_bb, seq_bb)
        # small: in iteration order, on this thread
        b.position_at_end(seq_bb)
        self.serial(loop)
        seq_vals = [g.vmap[r] for r in loop.results]
        seq_end = b.block
        b.branch(join_bb)
        # large: chunks
        b.position_at_end(par_bb)
        chunk = floordiv(b, b.add(n, ir.Constant(I64, REDUCE_CHUNKS - 1)), ir.Constant(I64, REDUCE_CHUNKS))
        nblk = floordiv(b, b.add(n, b.sub(chunk, ir.Constant(I64, 1))), chunk)
        partials = opaque_alloca(g.pro, ir.ArrayType(I64, REDUCE_CHUNKS * nc))
        call_args = [g.dims_ptr, ir.Constant(I64, 0), nblk] + [g.vmap[v] for v in free]
        call_args += [partials, lo_v, hi_v, chunk]
        one_bb = g.fn.append_basic_block("reduce_one")
        pool_bb = g.fn.append_basic_block("reduce_pool")
        comb_bb = g.fn.append_basic_block("reduce_combine")
        b.cbranch(b.icmp_signed(">", g.nthreads, ir.Constant(I64, 1)), pool_bb, one_bb)
        b.position_at_end(one_bb)
        b.call(kfn, call_args)
        b.branch(comb_bb)
        b.position_at_end(pool_bb)
        self.parallel_call(kfn, thunk, shared_ty, chunk_ty, ptypes, call_args,
                           ir.Constant(I64, 0), nblk, nblk)
        b.branch(comb_bb)
        # the initial values and the partials, combined in chunk order (by a
        # function of its own, so the entry has no loop)
        b.position_at_end(comb_bb)
        cfn = self.combine_function(kinds, dts, combiners)
        out = opaque_alloca(g.pro, ir.ArrayType(I64, nc))
        b.call(cfn, [g.dims_ptr, nblk, partials, out] + inits)
        par_vals = [b.load(partial_slot(b, out, ir.Constant(I64, k)), typ=LLTYPE[dt.name])
                    for k, dt in enumerate(dts)]
        par_end = b.block
        b.branch(join_bb)
        b.position_at_end(join_bb)
        for r, sv, pv in zip(loop.results, seq_vals, par_vals):
            phi = b.phi(sv.type)
            phi.add_incoming(sv, seq_end)
            phi.add_incoming(pv, par_end)
            g.vmap[r] = phi

    def combine_function(self, kinds, dts, combiners):
        """i32 f.sN(ptr dims, i64 nblk, ptr partials, ptr out, <inits>...): a reduce
        kernel's initial values combined with its nblk chunks' partials in chunk
        order; the results go to out's 8-byte slots."""
        mg = self.mg
        nc = len(dts)
        ckey = (tuple(kinds), tuple(dt.name for dt in dts), tuple(bool(c.attrs.get("reassoc")) for c in combiners))
        cfn = self.combines.get(ckey)
        if cfn is not None:
            return cfn
        kname = f"{self.op.attrs['sym_name']}.s{mg.serial_count}"
        mg.serial_count += 1
        ptypes = [PTR, I64, PTR, PTR] + [LLTYPE[dt.name] for dt in dts]
        cfn = ir.Function(mg.m, ir.FunctionType(I32, ptypes), kname)
        cfn.linkage = "internal"
        cfn.attributes.add("noinline")
        cg = Gen(mg, cfn, cfn.args[0], self.g.dim_names, self.g.messages)
        b = cg.b
        nblk, partials, out = cfn.args[1:4]
        inits = list(cfn.args[4:])
        head = b.block
        loop_bb = cfn.append_basic_block("reduce_partials")
        done_bb = cfn.append_basic_block("reduce_done")
        b.branch(loop_bb)  # nblk >= 1: the caller's range has at least 2 elements
        b.position_at_end(loop_bb)
        q = b.phi(I64)
        q.add_incoming(ir.Constant(I64, 0), head)
        accs = []
        for v in inits:
            a = b.phi(v.type)
            a.add_incoming(v, head)
            accs.append(a)
        nexts = []
        for k, (a, dt) in enumerate(zip(accs, dts)):
            slot = partial_slot(b, partials, b.add(b.mul(q, ir.Constant(I64, nc)), ir.Constant(I64, k)))
            part = b.load(slot, typ=LLTYPE[dt.name])
            short = "add" if kinds[k] == "add" else ("maximum" if kinds[k] == "max" else "minimum")
            if dt.is_float:
                nexts.append(float_op(cg, b, short, [a, part], dt, combiners[k]))
            else:
                nexts.append(int_op(cg, b, short, [a, part], dt))
        q2 = b.add(q, ir.Constant(I64, 1))
        latch = b.block
        q.add_incoming(q2, latch)
        for a, v in zip(accs, nexts):
            a.add_incoming(v, latch)
        b.cbranch(b.icmp_signed("<", q2, nblk), loop_bb, done_bb)
        b.position_at_end(done_bb)
        for k, v in enumerate(nexts):
            b.store(v, partial_slot(b, out, ir.Constant(I64, k)))
        b.ret(ir.Constant(I32, 0))
        cg.finish_prologue()
        self.combines[ckey] = cfn
        return cfn

    def parallel_call(self, kfn, thunk, shared_ty, chunk_ty, ptypes, call_args, lo, hi, n):
        g = self.g
        b = g.b
        z = ir.Constant(I32, 0)
        shared = opaque_alloca(g.pro, shared_ty)  # in the prologue: one slot per call site
        for k, v in enumerate(call_args):
            b.store(v, b.gep(shared, [z, ir.Constant(I32, k)], source_etype=shared_ty))
        return b.call(parfor_helper(self.mg), [thunk, shared, lo, hi, g.nthreads])



def generate(module: Module, triple: str = "", data_layout: str = ""):
    """(llvmlite ir.Module, {name: FunctionInfo}) for a loop-IR module."""
    mg = ModuleGen(ensure_kernels(module), triple, data_layout)
    m = mg.build()
    return m, mg.functions

"""How a loop-IR function runs on an OpenCL device: the host schedule (which
kernels, in which order, in which host loops) and the kernels themselves.

Which loop nests are which kernels is the kernelize pass's decision
(passes/kernelize.py: the `kernel` marks), the same for every backend; this
module renders each mark as OpenCL kernels and host commands:

  * buffers (mem.alloc / global / constant, and views and subviews of them
    with host-known indices) are device buffers plus an element offset;
  * host values (hostvals.py): dims, constants, host loop indices and pure
    scalar ops of them are computed on the host and passed as kernel arguments;
  * a parallel loop.for nest is one kernel ("map"): its perfectly nested
    parallel loops are the NDRange, the rest of the nest is the body. On a GPU
    every parallel loop is a dimension (innermost = dim 0; more than three are
    flattened into dim 2) with a bounds check `if (i >= N) return;`. On a CPU
    device the two outermost are, the inner one walked in chunks by a loop in
    the kernel that the device compiler vectorises, and the others stay loops;
  * a map whose parallel axes are inner loops of a serial one (a column sum
    `out[j] += x[i, j]`) runs one work-item per column;
  * a serial loop (nest) whose carried scalars are reductions (add with
    reassoc, max, min) is two kernels: work-groups reduce chunks of the
    iterations into partials (a tree in local memory on a GPU), then one
    work-item combines them in order ("reduce", "final");
  * mem.gemm is a library product (kernels.py: local-memory tiles and register
    blocking on a GPU, vector registers on a CPU); a serial loop around one gemm
    whose offsets advance linearly is a single batched launch (NDRange dim 2,
    or products summed into one C when C does not move and beta = 1);
  * mem.copy is a copy kernel;
  * other serial loops that hold kernels (scan loops after unrolling, or
    per-image products) are host loops that enqueue their kernels per
    iteration; carried buffers stay on the device;
  * what remains (top-level scalar code, loops with carries that are no
    reduction, stores and checks) runs on one work-item ("serial"), appended
    to the previous reduce or serial kernel where possible. A device scalar
    used by a later kernel is kept in a scratch slot, or re-computed there when
    it only reads buffers no kernel of the function writes (the learning rate);
    a check of host values only (an index against a named dim) is done by the host.

Commands (commands.py: Launch, GemmLaunch, CopyLaunch, HostLoop, HostCheck) are instantiated per set
of dim values by the backend (backend.py), which sets kernel arguments once
and re-sets only those that change in host loops.

Imports irc.ir, irc.ops, irc.passes.kernelize (the marks), numpy and this package.
"""

from __future__ import annotations

import numpy as np
from irc.passes.kernelize import chain, ensure_kernels, reduction_levels

from irc.ir.core import Op, OpResult, Value
from irc.ir.types import DType
from irc.ops.loop import storage_root, written_buffers

from .codegen import (
    CTYPE,
    I64,
    MEMTYPE,
    SIZE,
    CodegenError,
    KernelWriter,
    kernel_source,
    literal,
)
from .commands import BufRef, CopyLaunch, GemmLaunch, HostCheck, HostLoop, Launch, Root
from .hostvals import (
    hv_add,
    hv_const,
    hv_dim,
    hv_mul,
    hv_op,
    hv_sub,
    hv_var,
    numel_hv,
)

BUFFER_DEFS = ("mem.alloc", "mem.global", "mem.constant")



# -- drafts: serial and reduce kernels still open for more ops ------------------------------------------


class Draft:
    def __init__(self, kind: str, launch: Launch, block, reduce=None):
        self.kind = kind
        self.launch = launch
        self.block = block
        self.ops: list = []
        self.reduce = reduce  # (loop op, levels, kinds)
        self.force: list = []  # values to keep in slots even without a later use seen here


# -- the scheduler -----------------------------------------------------------------------------------

REDUCE_WG = 256  # work-items per group of a reduction on a GPU


class FunctionSchedule:
    """Everything the backend needs to run one entry function."""

    def __init__(self, name, op):
        self.name = name
        self.op = op
        block = op.regions[0].block
        self.n_in = op.attrs["n_inputs"]
        self.n_out = op.attrs["n_outputs"]
        self.dims = list(op.attrs.get("dims", ()))
        types = [a.type for a in block.args]
        self.in_types = types[: self.n_in]
        self.out_types = types[self.n_in :]
        self.in_names = [a.name_hint or f"arg{k}" for k, a in enumerate(block.args[: self.n_in])]
        self.roots: list = []
        self.commands: list = []
        self.kernels: list = []  # kernel sources in program order
        self.launches: list = []  # every generated kernel (Launch), in program order
        self.library: dict = {}  # library kernel name -> source
        self.helpers: set = set()
        self.messages: list = []
        self.n_slots = 0
        self.has_asserts = False
        self.uses_f64 = False

    def describe(self, cmds=None, depth=0) -> list:
        out = []
        for c in self.commands if cmds is None else cmds:
            out.append("  " * depth + c.describe())
            if isinstance(c, HostLoop):
                out += self.describe(c.body, depth + 1)
        return out


class FunctionScheduler:
    def __init__(self, module, func: Op, dev, status_root: Root, cpu: bool | None = None):
        self.module = module
        self.func = func
        self.dev = dev
        self.cpu = dev.is_cpu if cpu is None else cpu
        self.name = func.attrs["sym_name"]
        self.s = FunctionSchedule(self.name, func)
        self._status = status_root
        self._scratch = None
        self._partials = None
        self.refs: dict = {}  # host-level buffer Value -> BufRef
        self.hostvals: dict = {}  # Value -> HostVal
        self.remats: dict = {}  # Value -> defining op (device scalar re-computed per kernel)
        self.slots: dict = {}  # Value -> scratch slot index
        self.draft = None
        self.kcount = 0
        self.host_blocks: set = set()
        self.top_of: dict = {}  # op -> its host-level ancestor (memo)
        self.body = func.regions[0].block
        self.s.has_asserts = any(o.name == "loop.assert" for o in func.walk())
        self.written = written_buffers(self.func)

    # -- the context protocol of KernelWriter --------------------------------------------------------
    def bufref(self, v):
        return self.refs.get(v)

    def hostval(self, v):
        return self.hostvals.get(v)

    def remat(self, v):
        return self.remats.get(v)

    def slot(self, v):
        return self.slots.get(v)

    def status_root(self):
        return self._status

    def scratch_root(self):
        if self._scratch is None:
            self._scratch = self.new_root("scratch", "irc_scr", "i64")
        return self._scratch

    def message_code(self, msg: str) -> int:
        self.s.messages.append(msg)
        return len(self.s.messages)

    # -- roots ---------------------------------------------------------------------------------------
    def new_root(self, kind, cname, dtype, **kw) -> Root:
        r = Root(len(self.s.roots), kind, cname, dtype, **kw)
        self.s.roots.append(r)
        return r

    # -- driver --------------------------------------------------------------------------------------
    def run(self) -> FunctionSchedule:
        s = self.s
        block = self.body
        for k, a in enumerate(block.args):
            if k < s.n_in:
                r = self.new_root(
                    "input",
                    f"a_{a.name_hint}" if a.name_hint else f"a_{k}",
                    a.type.dtype.name,
                    type=a.type,
                    index=k,
                )
            else:
                j = k - s.n_in
                r = self.new_root("output", f"out{j}", a.type.dtype.name, type=a.type, index=j)
            self.refs[a] = BufRef(r, hv_const(0))
        self.host_blocks.add(block)
        s.commands = self.block(block)
        for o in self.func.walk():
            for v in o.results:
                if v.type.dtype.name == "f64":
                    s.uses_f64 = True
        for a in block.args:
            if a.type.dtype.name == "f64":
                s.uses_f64 = True
        s.n_slots = len(self.slots)
        return s

    def block(self, block) -> list:
        cmds: list = []
        outer = self.draft
        self.draft = None
        for op in block.ops:
            if op.name in ("func.return", "loop.yield"):
                break
            self.top_op(op, block, cmds)
        self.close()
        self.draft = outer
        return cmds

    def top_op(self, op: Op, block, cmds: list) -> None:
        name = op.name
        if name in BUFFER_DEFS:
            self.refs[op.results[0]] = BufRef(self.def_root(op), hv_const(0))
        elif name == "mem.view":
            ref = self.refs.get(op.operands[0])
            self.refs[op.results[0]] = BufRef(ref.root, ref.off)
        elif name == "mem.subview":
            ref = self.refs.get(op.operands[0])
            iv = self.hostvals.get(op.operands[1])
            if ref is None or iv is None:
                raise CodegenError("opencl: mem.subview with an index computed on the device")
            b = op.operands[0].type
            self.refs[op.results[0]] = BufRef(
                ref.root, hv_add(ref.off, hv_mul(iv, numel_hv(b.shape[1:])))
            )
        elif name == "loop.dim":
            self.hostvals[op.results[0]] = hv_dim(op.attrs["dim"])
        elif name == "scalar.const":
            r = op.results[0]
            self.hostvals[r] = hv_const(op.attrs["value"], r.type.dtype)
        elif name.startswith("scalar."):
            if all(v in self.hostvals for v in op.operands):
                short = name.split(".", 1)[1]
                at = op.operands[0].type.dtype if op.operands else None
                if short == "select":
                    at = op.results[0].type.dtype
                self.hostvals[op.results[0]] = hv_op(
                    short, op.results[0].type.dtype, [self.hostvals[v] for v in op.operands], at
                )
            elif all(v in self.hostvals or v in self.remats for v in op.operands):
                self.remats[op.results[0]] = op
            else:
                self.serial(op, block, cmds)
        elif name == "mem.load":
            buf, idx = op.operands[0], op.operands[1:]
            ref = self.refs.get(buf)
            if (
                ref is not None
                and storage_root(buf) not in self.written
                and all(v in self.hostvals or v in self.remats for v in idx)
            ):
                self.remats[op.results[0]] = op
            else:
                self.serial(op, block, cmds)
        elif name == "loop.assert" and op.operands[0] in self.hostvals:
            # a check of host values (an index against a named dim): on the host
            cmds.append(
                HostCheck(
                    self.hostvals[op.operands[0]], op.attrs.get("message", "assertion failed")
                )
            )
        elif name in ("mem.store", "loop.assert"):
            self.serial(op, block, cmds)
        elif name == "mem.copy":
            self.copy(op, block, cmds)
        elif name == "mem.gemm":
            self.gemm(op, block, cmds)
        elif name == "loop.for":
            self.loop(op, block, cmds)
        else:
            raise CodegenError(f"opencl: no schedule for a top-level {name}")

    def def_root(self, op: Op) -> Root:
        v = op.results[0]
        t = v.type
        if op.name == "mem.global":
            sym = op.attrs["sym"].name
            for r in self.s.roots:
                if r.kind == "global" and r.sym == sym:
                    return r
            return self.new_root("global", f"g_{sym}", t.dtype.name, type=t, sym=sym)
        if op.name == "mem.constant":
            n = sum(1 for r in self.s.roots if r.kind == "constant")
            return self.new_root(
                "constant",
                f"c{n}",
                t.dtype.name,
                type=t,
                value=np.ascontiguousarray(np.asarray(op.attrs["value"], dtype=t.dtype.np)),
            )
        n = sum(1 for r in self.s.roots if r.kind == "alloc")
        return self.new_root("alloc", f"t{n}", t.dtype.name, type=t)

    # -- placing ops ----------------------------------------------------------------------------------
    def kname(self, kind: str) -> str:
        n = self.kcount
        self.kcount += 1
        return f"{self.name}_k{n}_{kind}"

    def serial(self, op: Op, block, cmds: list) -> None:
        """Append a device op to the open one-work-item code (or open some)."""
        d = self.draft
        if d is None or d.block is not block:
            self.close()
            launch = Launch(self.kname("serial"), "serial")
            cmds.append(launch)
            d = self.draft = Draft("serial", launch, block)
        d.ops.append(op)

    def close(self) -> None:
        d = self.draft
        if d is None:
            return
        self.draft = None
        members = set(d.ops)
        if d.reduce is not None:
            members.add(d.reduce[0])
        exports = []
        for op in ([d.reduce[0]] if d.reduce else []) + d.ops:
            for r in op.results:
                if any(self.host_top(u) not in members for u, _ in r.uses):
                    exports.append(r)
        exports += [v for v in d.force if v not in exports]
        for r in exports:
            if r not in self.slots:
                self.slots[r] = len(self.slots)
        if d.kind == "serial":
            self.render_serial(d, exports)
        else:
            self.render_reduce(d, exports)

    def host_top(self, op: Op) -> Op:
        """The host-level op that contains op (itself if op is host-level)."""
        got = self.top_of.get(op)
        if got is not None:
            return got
        o = op
        while o.parent is not None and o.parent not in self.host_blocks:
            p = o.parent_op()
            if p is None:
                break
            o = p
        self.top_of[op] = o
        return o

    def push(self, cmds: list, cmd) -> None:
        self.close()
        cmds.append(cmd)

    # -- loops -------------------------------------------------------------------------------------
    def loop(self, op: Op, block, cmds: list) -> None:
        """Render the kernel the kernelize pass marked on op."""
        kind = op.attrs.get("kernel", "serial")
        # (the open serial code is closed before another kernel is rendered:
        # values it computes for that kernel get their slots first)
        if kind == "map":
            self.close()
            cmds.append(self.map_kernel(op, *self.nest_plan(op)))
        elif kind == "reduce":
            self.close()
            name = self.kname("reduce")
            launch = Launch(name, "reduce")
            final = Launch(name[: -len("reduce")] + "final", "final")
            launch.final = final
            cmds += [launch, final]
            levels = reduction_levels(op)
            self.draft = Draft("reduce", launch, block, reduce=(op, levels, op.attrs["combine"]))
            self.draft.final = final
        elif kind == "gemm":
            # a batch of products: one launch when its offsets advance linearly
            # and its scale is where the kernel can read it; else one per iteration
            g = self.match_batched_gemm(op)
            self.close()
            if g is not None:
                cmds.append(self.gemm_launch(g[0], g[1], block, cmds, batch=g[2]))
            else:
                cmds.append(self.host_loop(op))
        elif kind == "loop":
            self.close()
            cmds.append(self.host_loop(op))
        else:
            self.serial(op, block, cmds)

    def host_loop(self, op: Op) -> HostLoop:
        body = op.regions[0].block
        var = body.args[0]
        text = f"i{len(self.hostvals)}"
        self.hostvals[var] = hv_var(var, text)
        self.host_blocks.add(body)
        cmds = self.block(body)
        return HostLoop(
            var, self.hostvals[op.operands[0]], self.hostvals[op.operands[1]], cmds, text
        )

    # -- map kernels ----------------------------------------------------------------------------------
    def nest_plan(self, op: Op):
        """(NDRange loops, loops kept in the body, innermost body) of a map kernel."""
        loops = chain(op)
        gids = [loops[d] for d in op.attrs["grid"]]
        inner = [L for L in loops if L not in gids]
        return gids, inner, loops[-1].regions[0].block

    def writer(self, name: str) -> KernelWriter:
        return KernelWriter(self, name)

    def status_head(self, w: KernelWriter) -> list:
        if not self.s.has_asserts:
            return []
        return [f"    if ({w.status()}[0] != 0) return;  // an earlier check of this call failed"]

    def map_kernel(self, op: Op, gids: list, inner: list, body) -> Launch:
        if self.cpu and len(gids) > 2:
            # a CPU device: the two outermost parallel loops are the NDRange (the
            # inner one in chunks), the others loops inside each work-item
            gids = gids[:2]
            inner = [L for L in chain(op) if L not in gids]
        launch = Launch(self.kname("map"), "map", comment=self.where(op))
        w = self.writer(launch.name)
        status = self.status_head(w)
        head = []
        order = list(reversed(gids))  # NDRange dim 0 is the innermost loop
        groups = [[L] for L in order] if len(order) <= 3 else [[order[0]], [order[1]], order[2:]]
        checks, extents = [], []
        chunk_loop = None
        for k, group in enumerate(groups):
            if k == 0 and self.cpu:
                # CPU devices: the innermost loop runs in chunks inside the kernel,
                # a loop that the device compiler vectorises
                L = group[0]
                lo, hi = L.operands[:2]
                c, e, i = w.fresh("c"), w.fresh("e"), w.fresh("i")
                w.names[L.regions[0].block.args[0]] = i
                w.add_param(("chunk",), "chunk", "chunk", 0)
                lo_c, hi_c = w.val(lo), w.val(hi)
                head.append(
                    f"    const long {c} = {'' if zero(lo_c) else lo_c + ' + '}(long)get_global_id(0) * chunk;"
                    f"  // a chunk of the innermost loop"
                )
                head.append(f"    const long {e} = {c} + chunk < {hi_c} ? {c} + chunk : {hi_c};")
                chunk_loop = f"for (long {i} = {c}; {i} < {e}; ++{i}) {{"
                extents.append(hv_sub(self.hostvals[hi], self.hostvals[lo]))
                continue
            if len(group) == 1:
                L = group[0]
                lo, hi = L.operands[:2]
                i = w.fresh("i")
                w.names[L.regions[0].block.args[0]] = i
                lo_c = w.val(lo)
                head.append(
                    f"    const long {i} = {'' if zero(lo_c) else lo_c + ' + '}(long)get_global_id({k});"
                )
                checks.append(f"{i} >= {w.val(hi)}")
                extents.append(hv_sub(self.hostvals[hi], self.hostvals[lo]))
            else:
                f = w.fresh("f")
                q = w.fresh("q")
                head.append(
                    f"    const long {f} = get_global_id({k});  // {len(group)} loops flattened"
                )
                head.append(f"    long {q} = {f};")
                total = hv_const(1)
                sizes = []
                for L in group:
                    lo, hi = L.operands[:2]
                    n = hv_sub(self.hostvals[hi], self.hostvals[lo])
                    sizes.append((L, n, w.val(lo), w.val(hi)))
                    total = hv_mul(total, n)
                p = w.scalar_param(("flat", id(group[0])), total, I64, "n")
                checks.append(f"{f} >= {p}")
                for j, (L, n, lo_c, hi_c) in enumerate(sizes):
                    i = w.fresh("i")
                    w.names[L.regions[0].block.args[0]] = i
                    ext = hi_c if zero(lo_c) else f"({hi_c} - {lo_c})"
                    start = "" if zero(lo_c) else f"{lo_c} + "
                    if j < len(sizes) - 1:
                        head.append(f"    const long {i} = {start}{q} % {ext}; {q} /= {ext};")
                    else:
                        head.append(f"    const long {i} = {start}{q};")
                extents.append(total)
        head = status + head + ([f"    if ({' || '.join(checks)}) return;"] if checks else [])
        # loops kept inside, in nest order
        opened = 0
        if chunk_loop:
            w.line(chunk_loop)
            w.depth += 1
            opened += 1
        for L in inner:
            lo, hi = L.operands[:2]
            i = w.fresh("i")
            w.names[L.regions[0].block.args[0]] = i
            w.line(f"for (long {i} = {w.val(lo)}; {i} < {w.val(hi)}; ++{i}) {{")
            w.depth += 1
            opened += 1
        w.block(body)
        for _ in range(opened):
            w.depth -= 1
            w.line("}")
        launch.grid = extents
        launch.chunked = chunk_loop is not None
        self.finish(launch, w, head)
        return launch

    def where(self, op: Op) -> str:
        loc = getattr(op, "loc", None)
        return f"loop nest from {loc}" if loc is not None else ""

    def finish(self, launch: Launch, w: KernelWriter, head: list, attrs: str = "") -> None:
        launch.params = list(w.params.values())
        launch.source = kernel_source(w, head, w.lines, launch.comment, attrs)
        self.s.kernels.append(launch.source)
        self.s.launches.append(launch)
        self.s.helpers |= w.helpers

    # -- serial and reduce kernels -----------------------------------------------------------------------
    def export(self, w: KernelWriter, exports: list) -> None:
        for r in exports:
            t = MEMTYPE[r.type.dtype.name]
            x = w.val(r)
            if r.type.dtype.is_bool:
                x = f"(uchar){x}"
            w.line(f"IRC_SLOT({t}, {self.slots[r]}) = {x};  // kept for later kernels")
            w.scratch()

    def render_serial(self, d: Draft, exports: list) -> None:
        launch = d.launch
        w = self.writer(launch.name)
        head = self.status_head(w)
        for op in d.ops:
            w.op(op)
        self.export(w, exports)
        launch.grid = None
        launch.comment = "top-level scalar code and serial loops, on one work-item"
        self.finish(launch, w, head, "__attribute__((reqd_work_group_size(1, 1, 1)))")

    def render_reduce(self, d: Draft, exports: list) -> None:
        """Two kernels: `_reduce` combines a chunk of the iterations per
        work-group into a partial (a tree in local memory over the group's
        work-items on a GPU; one work-item walking its chunk in order on a CPU),
        `_final` combines the loop's initial value and the partials in order
        on one work-item and runs the scalar code that follows the loop."""
        op, levels, kinds = d.reduce
        launch, final = d.launch, d.final
        L = 1 if self.cpu else REDUCE_WG
        while L > self.dev.max_wg:
            L //= 2
        launch.local = (L,)
        where = self.where(op) or "a reduction"
        launch.comment = f"{where}: partial results of chunks of the iterations, one per work-group"
        body = levels[-1].regions[0].block
        carried = body.args[1:]
        nc = len(carried)
        part = self.partials_root(nc)
        # -- stage 1 -------------------------------------------------------------------------------
        w = self.writer(launch.name)
        head = self.status_head(w)
        head += ["    const int lid = get_local_id(0);", "    const long g = get_group_id(0);"]
        accs = [w.fresh("acc") for _ in carried]
        if L > 1:
            for k, arg in enumerate(carried):
                head.append(f"    __local {CTYPE[arg.type.dtype.name]} red{k}[{L}];")
        for k, arg in enumerate(carried):
            w.line(
                f"{CTYPE[arg.type.dtype.name]} {accs[k]} = {identity(kinds[k], arg.type.dtype)};"
            )
            w.names[arg] = accs[k]
        total = hv_const(1)
        exts = []
        for lv in levels:
            lo, hi = lv.operands[:2]
            total = hv_mul(total, hv_sub(self.hostvals[hi], self.hostvals[lo]))
            exts.append((lv, w.val(lo), w.val(hi)))
        launch.total = total
        ntot = w.scalar_param(("total", id(op)), total, I64, "n")
        w.add_param(("chunk",), "chunk", "chunk", 0)
        head.append(
            f"    const long end = g * chunk + chunk < {ntot} ? g * chunk + chunk : {ntot};"
        )
        f = w.fresh("f")
        step = f"{f} += {L}" if L > 1 else f"++{f}"
        w.line(f"for (long {f} = g * chunk{' + lid' if L > 1 else ''}; {f} < end; {step}) {{")
        w.depth += 1
        self.unflatten(w, exts, f)
        nexts = w.block(body)
        w.assign_carried(accs, nexts, carried)
        w.depth -= 1
        w.line("}")
        results = accs
        if L > 1:
            for k in range(nc):
                w.line(f"red{k}[lid] = {accs[k]};")
            w.line("barrier(CLK_LOCAL_MEM_FENCE);")
            w.line(f"for (int s = {L // 2}; s > 0; s >>= 1) {{")
            w.line("    if (lid < s) {")
            for k, arg in enumerate(carried):
                c = combine(w, kinds[k], arg.type.dtype, f"red{k}[lid]", f"red{k}[lid + s]")
                w.line(f"        red{k}[lid] = {c};")
            w.line("    }")
            w.line("    barrier(CLK_LOCAL_MEM_FENCE);")
            w.line("}")
            w.line("if (lid != 0) return;")
            results = [f"red{k}[0]" for k in range(nc)]
        pp = w.buf_param(part)
        pp.written = True
        for k, arg in enumerate(carried):
            w.line(f"IRC_PART({MEMTYPE[arg.type.dtype.name]}, g * {nc} + {k}) = {results[k]};")
        w.helpers.add("part")
        self.finish(launch, w, head, f"__attribute__((reqd_work_group_size({L}, 1, 1)))")
        # -- stage 2 -------------------------------------------------------------------------------
        final.comment = (
            f"{where}: the partials combined in order, then the scalar code after the loop"
        )
        w = self.writer(final.name)
        head = self.status_head(w)
        w.add_param(("groups",), "groups", "groups", 0)
        w.buf_param(part)
        w.helpers.add("part")
        for k, (r, init) in enumerate(zip(op.results, op.operands[2:])):
            dt = r.type.dtype
            acc = w.fresh("acc")
            w.line(f"{CTYPE[dt.name]} {acc} = {w.val(init)};")
            part_k = f"IRC_PART({MEMTYPE[dt.name]}, q * {nc} + {k})"
            w.line(
                f"for (long q = 0; q < groups; ++q) {acc} = {combine(w, kinds[k], dt, acc, part_k)};"
            )
            w.names[r] = acc
        for o in d.ops:
            w.op(o)
        self.export(w, exports)
        final.grid = None
        self.finish(final, w, head, "__attribute__((reqd_work_group_size(1, 1, 1)))")

    def unflatten(self, w: KernelWriter, exts: list, f: str) -> None:
        """Indices of nested loops from a flat iteration number f."""
        if len(exts) == 1:
            lv, lo_c, _ = exts[0]
            i = w.fresh("i")
            w.names[lv.regions[0].block.args[0]] = i
            w.line(f"const long {i} = {'' if zero(lo_c) else lo_c + ' + '}{f};")
            return
        q = w.fresh("q")
        w.line(f"long {q} = {f};")
        for j, (lv, lo_c, hi_c) in enumerate(reversed(exts)):
            i = w.fresh("i")
            w.names[lv.regions[0].block.args[0]] = i
            start = "" if zero(lo_c) else f"{lo_c} + "
            ext = hi_c if zero(lo_c) else f"({hi_c} - {lo_c})"
            if j < len(exts) - 1:
                w.line(f"const long {i} = {start}{q} % {ext}; {q} /= {ext};")
            else:
                w.line(f"const long {i} = {start}{q};")

    def partials_root(self, nc: int) -> Root:
        """8-byte slots for the partial results of reductions (groups x carried values)."""
        r = self._partials
        if r is None:
            r = self._partials = self.new_root("partials", "irc_part", "i64")
            r.value = 0
        r.value = max(r.value, nc)
        return r

    # -- gemm and copy -------------------------------------------------------------------------------
    def gemm(self, op: Op, block, cmds: list) -> None:
        sizes = [self.hostvals.get(v) for v in op.operands[3:12]]
        if None in sizes or any(v not in self.refs for v in op.operands[:3]):
            self.serial(op, block, cmds)
            return
        self.close()  # a scale computed by the open serial code gets its slot now
        self.push(cmds, self.gemm_launch(op, sizes, block, cmds))

    def gemm_launch(self, op: Op, sizes: list, block, cmds: list, batch=None) -> GemmLaunch:
        A, B, C = (self.refs[v] for v in op.operands[:3])
        dt = op.operands[2].type.dtype
        alpha = hv_const(float(op.attrs.get("alpha", 1.0)), dt)
        scale = None
        if len(op.operands) > 12:
            s = op.operands[12]
            hs = self.hostvals.get(s)
            if hs is not None:
                alpha = hv_op("mul", dt, [alpha, hs])
            else:
                scale = self.scale_ref(s, block, cmds)
        return GemmLaunch(
            dt.name,
            bool(op.attrs.get("trans_a")),
            bool(op.attrs.get("trans_b")),
            A,
            B,
            C,
            sizes,
            alpha,
            float(op.attrs.get("beta", 0.0)),
            scale,
            batch,
            self.s.has_asserts,
        )

    def scale_ref(self, s: Value, block, cmds: list) -> BufRef:
        """Where the gemm kernel reads a device scale factor: the element a
        re-computable load reads, or a scratch slot."""
        rop = self.remats.get(s)
        if rop is not None and rop.name == "mem.load":
            ref = self.refs[rop.operands[0]]
            idx = [self.hostvals.get(v) for v in rop.operands[1:]]
            if None not in idx:
                lin = hv_const(0)
                for d, i in zip(rop.operands[0].type.shape, idx):
                    lin = hv_add(hv_mul(lin, hv_dim(d)), i)
                return BufRef(ref.root, hv_add(ref.off, lin))
        if s not in self.slots:
            # computed on one work-item and kept in a slot for the product
            launch = Launch(self.kname("serial"), "serial")
            cmds.append(launch)
            d = Draft("serial", launch, block)
            d.force.append(s)
            self.draft = d
            self.close()
        # slots are 8 bytes wide: the kernel reads the scale as its own dtype
        per = 8 // SIZE[s.type.dtype.name]
        return BufRef(self.scratch_root(), hv_const(self.slots[s] * per))

    def match_batched_gemm(self, op: Op):
        """The single batched launch of a loop the kernelize pass marked "gemm" (one
        mem.gemm of host buffers and index arithmetic), when its offsets advance
        linearly with the index and its scale is where the kernel can read it."""
        body = op.regions[0].block
        var = body.args[0]
        g = next(o for o in body.ops if o.name == "mem.gemm")
        if len(g.operands) > 12 and not (
            g.operands[12] in self.hostvals
            or g.operands[12] in self.slots
            or (g.operands[12] in self.remats and self.remats[g.operands[12]].name == "mem.load")
        ):
            return None
        aff = {}

        def affine(v):
            if v in aff:
                return aff[v]
            out = None
            if v is var:
                out = (hv_const(1), hv_const(0))
            elif v in self.hostvals:
                out = (hv_const(0), self.hostvals[v])
            elif isinstance(v, OpResult) and v.op.parent is body and v.type.dtype.name == "i64":
                o = v.op
                if o.name in ("scalar.add", "scalar.sub", "scalar.mul"):
                    a, b = affine(o.operands[0]), affine(o.operands[1])
                    if a is not None and b is not None:
                        if o.name == "scalar.add":
                            out = (hv_add(a[0], b[0]), hv_add(a[1], b[1]))
                        elif o.name == "scalar.sub":
                            out = (hv_sub(a[0], b[0]), hv_sub(a[1], b[1]))
                        elif a[0].const == 0:
                            out = (hv_mul(a[1], b[0]), hv_mul(a[1], b[1]))
                        elif b[0].const == 0:
                            out = (hv_mul(b[1], a[0]), hv_mul(b[1], a[1]))
            aff[v] = out
            return out

        forms = [affine(v) for v in g.operands[3:12]]
        if None in forms or any(f[0].const != 0 for f in forms[:6]):
            return None
        lo, hi = self.hostvals[op.operands[0]], self.hostvals[op.operands[1]]
        count = hv_sub(hi, lo)
        sizes = [f[1] for f in forms[:6]]
        strides = []
        for f in forms[6:]:
            coef, base = f
            sizes.append(hv_add(base, hv_mul(coef, lo)))
            strides.append(coef)
        A, B, C = (self.refs[v] for v in g.operands[:3])
        reduce = strides[2].const == 0
        beta = float(g.attrs.get("beta", 0.0))
        if reduce and beta != 1.0:
            return None
        if not reduce and (A.root is C.root or B.root is C.root):
            return None
        return (g, sizes, (count, strides[0], strides[1], strides[2], reduce))

    def copy(self, op: Op, block, cmds: list) -> None:
        src, dst = (self.refs.get(v) for v in op.operands)
        if src is None or dst is None:
            self.serial(op, block, cmds)
            return
        t = op.operands[0].type
        self.push(
            cmds, CopyLaunch(src, dst, numel_hv(t.shape), SIZE[t.dtype.name], self.s.has_asserts)
        )


# -- analyses ----------------------------------------------------------------------------------------


def zero(expr: str) -> bool:
    return expr in ("0", "0L")


def identity(kind: str, dt: DType) -> str:
    if kind == "add":
        return literal(0, dt)
    if dt.is_float:
        return literal(float("-inf") if kind == "max" else float("inf"), dt)
    info = np.iinfo(dt.np)
    return literal(info.min if kind == "max" else info.max, dt)


def combine(w: KernelWriter, kind: str, dt: DType, a: str, b: str) -> str:
    if kind == "add":
        return f"{a} + {b}"
    if dt.is_int:
        return f"{a} {'>' if kind == 'max' else '<'} {b} ? {a} : {b}"
    return w.call(kind, dt, [a, b])


def schedule_module(module, dev, status_root, cpu: bool | None = None) -> dict:
    """{function name: FunctionSchedule} for every entry function of a loop module.
    cpu: kernel shapes for a CPU device (chunk loops) or a GPU (one work-item per
    element); by default the device's type decides."""
    ensure_kernels(module)
    out = {}
    for op in module.functions():
        sch = FunctionScheduler(module, op, dev, status_root, cpu)
        out[op.attrs["sym_name"]] = sch.run()
    return out

"""OpenCLBackend: the `opencl` backend. Lowers the optimised tg module with
lower-to-loops, schedules each entry function (schedule.py), renders one
OpenCL C program with every generated kernel of the module (codegen.py; kernels
with the same text in several functions are kept once), builds it once
(device.py: per process, and on disk by PoCL's / pyopencl's caches) and runs
calls as sequences of kernel launches on one in-order queue. The library
kernels (kernels.py: matrix products, copies) are a program of their own,
shared by every module on the device.

Kernel shapes follow the device: on a CPU device (PoCL) chunk loops inside
work-items and a vector-register product; on a GPU a work-item per element and
the local-memory tiled product. `style="cpu"` / `"gpu"` forces one (tests run
the GPU shapes on PoCL).

Interface (the same as runtime.interp.InterpBackend and the cpu backend):
    call(fn_name, args: list of arrays, env: dict of named dims) -> list of arrays
    get(name) -> a copy of a shared variable (read back from the device);  set(name, array)
    dump(stage="opencl", fn=None): the program's source ("opencl"), the loop
    IR ("loops") or the host schedule of each function ("schedule").

Device memory. Shared variables live in device buffers for the life of the
backend; calls update them there (in place, after every read of the old
value, as the lowering orders it) and they are read back only by get() (so by
m["W"] and m.save). Arguments are uploaded per call into buffers kept per set
of dim values (a "plan", which also holds the temporaries and the kernel
objects with their arguments already set); results are downloaded when the
call returns. Host loops (scan loops left after unrolling, per-image
products) enqueue their kernels per iteration without reading anything back.

A failed run-time check (loop.assert: an index out of range) sets a status
word on the device; every later kernel of the call returns at once, and the
call raises InterpError with the check's message.

Imports irc.ir, irc.passes (lower-to-loops), irc.runtime.interp (InterpError)
and this package.
"""

from __future__ import annotations

import struct
import threading

import numpy as np
from irc.runtime.base import (
    CompiledBackend,
    PlanCache,
    failure_message,
    initial_values,
    loop_ir,
)
from irc.runtime.binding import CallSpec, make_binder
from irc.runtime.interp import InterpError

from irc.ir.core import Module
from irc.ir.dims import eval_dim
from irc.ir.errors import CallError
from irc.ir.sizes import check_sizes

from . import device as devmod
from .codegen import NPTYPE, helpers_source
from .commands import CopyLaunch, GemmLaunch, HostCheck, HostLoop, Launch, Root
from .hostvals import hv_add, hv_const
from .kernels import CPU_RM, CPU_VEC, TILES, gemm_cpu_name, library_source
from .schedule import schedule_module

MAX_PLANS = 8  # plans (buffers + kernel objects) kept per function, least recently used dropped
_MF = None


def _cl():
    import pyopencl as cl

    return cl


_STRUCT = {np.int64: struct.Struct("<q").pack, np.int32: struct.Struct("<i").pack}


def _bytes(a: np.ndarray) -> np.ndarray:
    """The array as the device stores it: bool as one byte (uchar) per element."""
    return a.view(np.uint8) if a.dtype == np.bool_ else a


def _pack(v, npt) -> bytes:
    """The bytes of a scalar kernel argument (struct for the index types: this
    runs per launch in host loops)."""
    f = _STRUCT.get(npt)
    if f is not None:
        return f(int(v))
    return np.asarray(v, dtype=npt).tobytes()


class _Function:
    """One entry function: its schedule, constants, scratch and plans."""

    def __init__(self, backend, sched):
        self.be = backend
        self.s = sched
        self.name = sched.name
        self.in_np = [t.dtype.np for t in sched.in_types]
        # the call boundary: runtime/binding.py's checks, shared with the cpu backend and irc.api
        self.bind = make_binder(CallSpec(sched.name, sched.in_names, sched.in_types, sched.dims))
        self.out_np = [t.dtype.np for t in sched.out_types]
        cl = _cl()
        ctx = backend.dev.context
        mf = cl.mem_flags
        self.const_bufs = {}
        for r in sched.roots:
            if r.kind == "constant":
                data = r.value if r.value.nbytes else np.zeros(1, np.uint8)
                if r.dtype == "bool":
                    data = data.astype(np.uint8)
                self.const_bufs[r.id] = cl.Buffer(
                    ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=data
                )
        self.scratch = cl.Buffer(ctx, mf.READ_WRITE, max(8, 8 * sched.n_slots))
        nc = max([r.value for r in sched.roots if r.kind == "partials"], default=0)
        self.partials = cl.Buffer(
            ctx, mf.READ_WRITE, max(8, 8 * nc * reduce_groups_max(backend.dev))
        )
        self.plans = PlanCache(MAX_PLANS)

    def plan(self, key):
        p = self.plans.get(key)
        if p is None:
            return self.plans.add(key, _Plan(self, key))
        self.plans.touch(key)
        return p


class _Plan:
    """Buffers, kernel objects and launch sizes of a function for one set of dims."""

    def __init__(self, f: _Function, key):
        cl = _cl()
        be = f.be
        s = f.s
        self.f = f
        self.env = dict(zip(s.dims, key))
        # Exact sizes of every buffer before any is created (int64 kernels).
        # (and the iteration spaces of fused reductions, which no buffer has: sizes.py)
        check_sizes(s.name, [r.type for r in s.roots if getattr(r, "type", None) is not None]
                    + list(s.out_types) + list(s.op.attrs.get("iter_types", ())), self.env)
        ctx = be.dev.context
        self.bufs = {be.status_root.id: be.status}
        for r in s.roots:
            if r.kind == "global":
                self.bufs[r.id] = be.global_bufs[r.sym]
            elif r.kind == "constant":
                self.bufs[r.id] = f.const_bufs[r.id]
            elif r.kind == "scratch":
                self.bufs[r.id] = f.scratch
            elif r.kind == "partials":
                self.bufs[r.id] = f.partials
            elif r.kind == "status":
                self.bufs[r.id] = be.status
            else:
                shape = tuple(eval_dim(d, self.env) for d in r.type.shape)
                n = int(np.prod(shape, dtype=np.int64)) * r.type.dtype.np.itemsize
                try:
                    self.bufs[r.id] = cl.Buffer(ctx, cl.mem_flags.READ_WRITE, max(n, 8))
                except (cl.Error, MemoryError) as e:
                    raise CallError(
                        f"{s.name}(): cannot allocate a {n}-byte device buffer for {r.type} "
                        f"({e.__class__.__name__}: {e})"
                    ) from None
        self.in_bufs = [None] * s.n_in
        self.out_bufs = [None] * s.n_out
        for r in s.roots:
            if r.kind == "input":
                self.in_bufs[r.index] = self.bufs[r.id]
            elif r.kind == "output":
                self.out_bufs[r.index] = self.bufs[r.id]
        self.out_shapes = [tuple(eval_dim(d, self.env) for d in t.shape) for t in s.out_types]
        self.fails = None  # the message of a host check that fails for these dims
        self.groups = {}  # reduce launch -> its number of work-groups (for its final kernel)
        self.cmds = self.instantiate(s.commands)

    # -- instantiation -------------------------------------------------------------------------------
    def instantiate(self, cmds) -> list:
        out = []
        for c in cmds:
            if isinstance(c, Launch):
                out += self.launch(c)
            elif isinstance(c, GemmLaunch):
                out += self.gemm(c)
            elif isinstance(c, CopyLaunch):
                out += self.copy(c)
            elif isinstance(c, HostLoop):
                lo, hi = c.lo.specialize(self.env), c.hi.specialize(self.env)
                out.append((2, c.var, lo, hi, self.instantiate(c.body)))
            elif isinstance(c, HostCheck):
                if c.cond.varies:
                    out.append((3, c.cond.specialize(self.env), c.message))
                elif not c.cond.eval(self.env):
                    self.fails = self.fails or c.message
        return out

    def kernel(self, name: str, args: list, program=None):
        """A kernel object with the fixed arguments set; [(index, HostVal, numpy type)] of the others."""
        cl = _cl()
        k = cl.Kernel(program or self.f.be.program, name)
        varying = []
        for idx, (kind, v, npt) in enumerate(args):
            if kind == "buf":
                k.set_arg(idx, v)
            elif v.varies:
                varying.append((idx, v.specialize(self.env), npt))
            else:
                k._set_arg_buf(idx, _pack(v.eval(self.env), npt))
        return k, varying

    def command(self, k, varying, grid, grid_fn=None):
        if varying or grid_fn is not None:
            return [(1, k, grid[0] if grid else None, grid[1] if grid else None, varying, grid_fn)]
        if grid is None:
            return []
        return [(0, k, grid[0], grid[1])]

    def launch(self, c: Launch) -> list:
        args = []
        chunk_idx = None
        for idx, p in enumerate(c.params):
            if p.kind == "buf":
                args.append(("buf", self.bufs[p.source.id], None))
            elif p.kind == "dim":
                args.append(("val", hv_const(int(self.env[p.source])), np.int64))
            elif p.kind == "chunk":
                chunk_idx = idx
                args.append(("val", hv_const(1), np.int64))  # set with the launch size below
            elif p.kind == "groups":
                args.append(("val", hv_const(self.groups.get(id(c), 1)), np.int64))
            else:
                args.append(("val", p.source, NPTYPE[p.dtype]))
        k, varying = self.kernel(c.name, args)
        dev = self.f.be.dev
        if c.kind == "reduce":
            return self.reduce_launch(c, k, varying, chunk_idx)
        if c.local is not None:
            return self.command(k, varying, (c.local, c.local))
        if not c.grid:
            return self.command(k, varying, ((1,), (1,)))
        static = [None if e.const is None else int(e.const) for e in c.grid]
        if c.chunked:
            local = (1,) + local_size(static[1:], dev, CPU_OUTER)

            def sizes(ext, k=k):
                g = chunked_ndrange(ext, local, dev)
                if g is not None:
                    k._set_arg_buf(chunk_idx, _pack(g[2], np.int64))
                return g and g[:2]
        else:
            local = local_size(static, dev)

            def sizes(ext):
                return ndrange(ext, local)

        if any(e.varies for e in c.grid):
            ext = [e.specialize(self.env) for e in c.grid]
            return self.command(k, varying, None, lambda env: sizes([e.eval(env) for e in ext]))
        return self.command(k, varying, sizes([e.eval(self.env) for e in c.grid]))

    def reduce_launch(self, c: Launch, k, varying, chunk_idx) -> list:
        L = c.local[0]
        dev = self.f.be.dev
        if (
            c.total.varies
        ):  # inside a host loop, its length changing: one group, sized per iteration
            self.groups[id(c.final)] = 1

            total = c.total.specialize(self.env)

            def grid_fn(env):
                k._set_arg_buf(chunk_idx, _pack(max(1, int(total.eval(env))), np.int64))
                return (L,), (L,)

            return self.command(k, varying, None, grid_fn)
        n = max(0, int(c.total.eval(self.env)))
        groups, chunk = reduce_split(n, L, dev)
        self.groups[id(c.final)] = groups
        k._set_arg_buf(chunk_idx, _pack(chunk, np.int64))
        return self.command(k, varying, ((groups * L,), (L,)))

    def gemm(self, c: GemmLaunch) -> list:
        env = self.env
        M, N, K, lda, ldb, ldc, oa, ob, oc = c.sizes
        offA, offB, offC = hv_add(c.A.off, oa), hv_add(c.B.off, ob), hv_add(c.C.off, oc)
        zero = hv_const(0)
        npt = np.float32 if c.dtype == "f32" else np.float64
        if c.batch is None:
            batch = [(zero, zero, zero, hv_const(1), zero, zero, hv_const(1))]
        else:
            count, sa, sb, sc, reduce = c.batch
            if reduce:
                batch = [(zero, zero, zero, count, sa, sb, hv_const(1))]
            elif self.disjoint(c, sc, M, N, ldc):
                batch = [(sa, sb, sc, hv_const(1), zero, zero, count)]
            else:  # C blocks overlap (or unknown until run time): one product at a time, in order
                n = int(count.eval(env))
                batch = [
                    (zero, zero, zero, hv_const(1), zero, zero, hv_const(1), b) for b in range(n)
                ]
        out = []
        for entry in batch:
            sap, sbp, scp, nkb, ska, skb, nz = entry[:7]
            oA, oB, oC = offA, offB, offC
            if len(entry) == 8:
                b = hv_const(entry[7])
                oA = hv_add(offA, _hmul(b, c.batch[1]))
                oB = hv_add(offB, _hmul(b, c.batch[2]))
                oC = hv_add(offC, _hmul(b, c.batch[3]))
            vals = [
                oA,
                lda,
                None,
                oB,
                ldb,
                None,
                oC,
                ldc,
                M,
                N,
                K,
                c.alpha,
                hv_const(c.beta, _f(c.dtype)),
                sap,
                sbp,
                scp,
                nkb,
                ska,
                skb,
            ]
            args = [
                ("buf", self.bufs[c.A.root.id], None),
                ("val", oA, np.int64),
                ("val", lda, np.int64),
                ("buf", self.bufs[c.B.root.id], None),
                ("val", oB, np.int64),
                ("val", ldb, np.int64),
                ("buf", self.bufs[c.C.root.id], None),
                ("val", oC, np.int64),
                ("val", ldc, np.int64),
                ("val", M, np.int64),
                ("val", N, np.int64),
                ("val", K, np.int64),
                ("val", c.alpha, npt),
                ("val", vals[12], npt),
            ]
            args += [("val", v, np.int64) for v in (sap, sbp, scp, nkb, ska, skb)]
            if c.scale is not None:
                args += [("buf", self.bufs[c.scale.root.id], None), ("val", c.scale.off, np.int64)]
            else:
                args += [("buf", self.bufs[c.C.root.id], None), ("val", zero, np.int64)]
            args += [("buf", self.f.be.status, None), ("val", hv_const(c.flags), np.int32)]
            dev = self.f.be.dev
            lib = self.f.be.library(c.dtype)
            sized = tuple(v.specialize(self.env) for v in (M, N, nz))
            if self.f.be.cpu:
                k, varying = self.kernel(gemm_cpu_name(c.dtype), args, lib)
                cols = CPU_RM if c.tb else 2 * CPU_VEC[c.dtype]

                def grid_fn(env, sized=sized, cols=cols):
                    return cpu_gemm_grid(*(int(v.eval(env)) for v in sized), cols)

                if any(v.varies for v in sized):
                    out += self.command(k, varying, None, grid_fn)
                else:
                    out += self.command(k, varying, grid_fn(self.env))
                continue
            if any(v.varies for v in sized):
                tile_name = choose_tile(None, None, dev)
                k, varying = self.kernel(c.kernel(tile_name), args, lib)

                def grid_fn(env, sized=sized, t=TILES[tile_name]):
                    return gemm_grid(
                        int(sized[0].eval(env)), int(sized[1].eval(env)), int(sized[2].eval(env)), t
                    )

                out += self.command(k, varying, None, grid_fn)
            else:
                m, n, z = (int(v.eval(env)) for v in sized)
                tile_name = choose_tile(m, n, dev)
                k, varying = self.kernel(c.kernel(tile_name), args, lib)
                out += self.command(k, varying, gemm_grid(m, n, z, TILES[tile_name]))
        return out

    def disjoint(self, c, sc, M, N, ldc) -> bool:
        if any(v.varies for v in (sc, M, N, ldc)):
            return False
        s, m, n, l = (int(v.eval(self.env)) for v in (sc, M, N, ldc))
        return s >= max(0, (m - 1) * l + n) or m == 0 or n == 0

    def copy(self, c: CopyLaunch) -> list:
        so, do = c.src.off, c.dst.off
        if c.same:
            args = [
                ("buf", self.bufs[c.dst.root.id], None),
                ("val", do, np.int64),
                ("val", so, np.int64),
                ("val", c.n, np.int64),
            ]
        else:
            args = [
                ("buf", self.bufs[c.dst.root.id], None),
                ("val", do, np.int64),
                ("buf", self.bufs[c.src.root.id], None),
                ("val", so, np.int64),
                ("val", c.n, np.int64),
            ]
        args += [("buf", self.f.be.status, None), ("val", hv_const(int(c.check)), np.int32)]
        k, varying = self.kernel(c.kernel, args, self.f.be.library("f32"))
        dev = self.f.be.dev
        if c.same:
            return self.command(k, varying, ((1,), (1,)))
        local = local_size([None], dev)
        if c.n.varies:
            n = c.n.specialize(self.env)
            return self.command(k, varying, None, lambda env: ndrange([n.eval(env)], local))
        return self.command(k, varying, ndrange([c.n.eval(self.env)], local))


def _f(dtype):
    from irc.ir.types import F32, F64

    return F32 if dtype == "f32" else F64


def _hmul(a, b):
    from .hostvals import hv_mul

    return hv_mul(a, b)


# -- launch sizes --------------------------------------------------------------------------------------

CPU_GROUP = 64  # work-items per group on a CPU device (PoCL runs a group as a vectorised loop)
GPU_GROUP = 256


def _pow2_at_least(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


CPU_OUTER = 8  # work-items per group over the outer dims of a chunked kernel
CHUNK_MIN = 256  # shortest chunk worth a work-item of its own
GROUPS_PER_CU = 4  # work-groups per compute unit a chunked launch aims at


def local_size(static, dev, budget=None) -> tuple:
    """Work-group size from the extents known before run time (None: a named
    dim, taken as large). It never depends on dim values, so a kernel is
    compiled for one work-group size (PoCL compiles per size)."""
    if budget is None:
        budget = CPU_GROUP if dev.is_cpu else GPU_GROUP
    budget = min(budget, dev.max_wg)
    local = []
    for k, e in enumerate(static):
        cap = dev.max_sizes[k] if k < len(dev.max_sizes) else 1
        lk = min(budget, cap) if e is None else min(_pow2_at_least(max(1, e)), budget, cap)
        local.append(max(1, lk))
        budget = max(1, budget // lk)
    return tuple(local)


def ndrange(extents, local):
    """(global, local) sizes for NDRange extents (dim 0 first), or None when empty."""
    ext = [int(e) for e in extents]
    if any(e <= 0 for e in ext):
        return None
    return tuple(((e + l - 1) // l) * l for e, l in zip(ext, local)), local


REDUCE_PER_GROUP = 8192  # iterations below which a reduction does not take another work-group


def reduce_groups_max(dev) -> int:
    return 4 * dev.compute_units if dev.is_cpu else 256


def reduce_split(n: int, L: int, dev):
    """(work-groups, iterations per group) of a reduction over n iterations."""
    groups = max(1, min(reduce_groups_max(dev), -(-n // REDUCE_PER_GROUP)))
    chunk = max(1, -(-n // groups))
    return groups, chunk


def chunked_ndrange(extents, local, dev):
    """(global, local, chunk) of a chunked kernel: dim 0 counts chunks of the
    innermost loop, long enough to amortise a work-item, short enough that
    the launch has a few work-groups per compute unit."""
    ext = [int(e) for e in extents]
    if any(e <= 0 for e in ext):
        return None
    outer_groups = 1
    for e, l in zip(ext[1:], local[1:]):
        outer_groups *= (e + l - 1) // l
    want = GROUPS_PER_CU * dev.compute_units
    n = 1 if outer_groups >= want else (want + outer_groups - 1) // outer_groups
    chunk = max((ext[0] + n - 1) // n, CHUNK_MIN)
    chunk = min(ext[0], (chunk + 15) // 16 * 16)
    gs = ((ext[0] + chunk - 1) // chunk,) + tuple(
        ((e + l - 1) // l) * l for e, l in zip(ext[1:], local[1:])
    )
    return gs, local, chunk


def choose_tile(m, n, dev) -> str:
    if m is None:
        return "t32"
    if m >= 64 and n >= 64:
        return "t64"
    if m >= 32 and n >= 32:
        return "t32"
    return "t16"


CPU_GEMM_LOCAL = (1, 1, 1)


def cpu_gemm_grid(m: int, n: int, z: int, cols: int):
    if m <= 0 or n <= 0 or z <= 0:
        return None
    lx, ly, _ = CPU_GEMM_LOCAL
    gx = (n + cols - 1) // cols
    gy = (m + CPU_RM - 1) // CPU_RM
    return ((gx + lx - 1) // lx * lx, (gy + ly - 1) // ly * ly, z), CPU_GEMM_LOCAL


def gemm_grid(m: int, n: int, z: int, t):
    if m <= 0 or n <= 0 or z <= 0:
        return None
    lx, ly = t.local
    return ((n + t.tn - 1) // t.tn * lx, (m + t.tm - 1) // t.tm * ly, z), (lx, ly, 1)


# -- the backend -------------------------------------------------------------------------------------------


class OpenCLBackend(CompiledBackend):
    """The opencl backend. `module` is the optimised tg module (or a loop module);
    device: a name substring (see device.select_device), default IRC_OPENCL_DEVICE
    or the first GPU, else the first device."""

    name = "opencl"

    def __init__(
        self, module: Module, state: dict, device: str | None = None, style: str | None = None
    ):
        cl = _cl()
        self.lock = threading.Lock()
        self.dev = devmod.open_device(device)
        self.loop_module = loop_ir(module)
        self.global_types = {
            op.attrs["sym_name"]: op.attrs["type"]
            for op in self.loop_module.body.ops
            if op.name == "tg.global"
        }
        self.status_root = Root(-1, "status", "irc_status", "i32")
        # kernel shapes: "cpu" (chunk loops) or "gpu" (a work-item per element); the device decides by default
        cpu = None if style is None else style == "cpu"
        self.cpu = self.dev.is_cpu if cpu is None else cpu
        self.schedules = schedule_module(self.loop_module, self.dev, self.status_root, cpu)
        uses_f64 = any(s.uses_f64 for s in self.schedules.values()) or any(
            t.dtype.name == "f64" for t in self.global_types.values()
        )
        if uses_f64 and not self.dev.fp64:
            raise devmod.DeviceError(
                f"the model uses f64 but the OpenCL device {self.dev.name} has no "
                f"cl_khr_fp64 (double precision); use f32 or another device"
            )
        self.uses_f64 = uses_f64
        self.dedupe()
        self.source = self.render()
        self.program = devmod.build_program(self.dev, self.source)
        ctx = self.dev.context
        mf = cl.mem_flags
        self.global_bufs = {}
        self.stats = {"reads": 0, "writes": 0}  # shared-variable transfers (tests check residency)
        for n, arr in initial_values(self.global_types.items(), state).items():
            host = _bytes(arr)
            if host.nbytes:
                self.global_bufs[n] = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=host)
            else:
                self.global_bufs[n] = cl.Buffer(ctx, mf.READ_WRITE, 8)
        self.status = cl.Buffer(
            ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=np.zeros(1, np.int32)
        )
        self._zero = np.zeros(1, np.int32)
        self._status_host = np.zeros(1, np.int32)
        self.functions = {name: _Function(self, s) for name, s in self.schedules.items()}

    # -- the program ---------------------------------------------------------------------------------
    def dedupe(self) -> None:
        """Kernels with the same text in several functions (the forward pass of
        predict and train) are kept once, under the first one's name."""
        seen = {}
        for s in self.schedules.values():
            kept = []
            for launch in s.launches:
                key = "\n".join(
                    line
                    for line in launch.source.replace(launch.name, "@").splitlines()
                    if not line.startswith("//")
                )
                first = seen.get(key)
                if first is None:
                    seen[key] = launch
                    kept.append(launch.source)
                else:
                    launch.name = first.name
                    launch.source = first.source
            s.kernels = kept

    def render(self, only: str | None = None, library: bool = False) -> str:
        """The module's program; for dump, one function's kernels (kernels it
        shares with another function included) and the library kernels it calls."""
        parts = [f"// irc OpenCL program ({self.dev.name})"]
        if self.uses_f64:
            parts.append("#pragma OPENCL EXTENSION cl_khr_fp64 : enable")
        parts.append("#pragma OPENCL FP_CONTRACT OFF  // elementwise code rounds as NumPy does")
        scheds = [s for n, s in self.schedules.items() if only is None or n == only]
        helpers = set()
        for s in scheds:
            helpers |= s.helpers
        if helpers:
            parts.append(helpers_source(helpers))
        for s in scheds:
            sched = "\n".join("//   " + line for line in s.describe()) or "//   (nothing)"
            parts.append(f"// ===== {s.name}: host schedule =====\n{sched}")
            if only is None:
                parts += s.kernels
            else:
                done = set()
                for launch in s.launches:
                    if launch.name not in done:
                        done.add(launch.name)
                        parts.append(launch.source)
        if library:
            used = set()
            for s in scheds:
                used |= self._library(s.commands)
            if used:
                parts.append("// ===== library kernels (a program shared by all modules) =====")
                parts += [library_source(dt) for dt in sorted(used)]
        return "\n\n".join(parts) + "\n"

    def _library(self, cmds) -> set:
        out = set()
        for c in cmds:
            if isinstance(c, GemmLaunch):
                out.add(c.dtype)
            elif isinstance(c, CopyLaunch):
                out.add("f32")
            elif isinstance(c, HostLoop):
                out |= self._library(c.body)
        return out

    def library(self, dtype: str):
        """The shared program of library kernels (gemm tiles, copies) for a dtype."""
        return devmod.build_program(self.dev, library_source(dtype))

    def dump(self, stage: str = "opencl", fn: str | None = None, locs: bool = False) -> str:
        """Text of a stage: "opencl" (the program's source), "loops" (loop IR;
        with `locs`, each op's source location) or "schedule"."""
        self.check_function(fn, self.schedules)
        if stage == "opencl":
            return self.render(fn, library=True)
        if stage == "loops":
            return self.dump_loops(fn, locs)
        if stage == "schedule":
            out = []
            for n, s in self.schedules.items():
                if fn is None or n == fn:
                    out.append(f"{n}:")
                    out += ["  " + line for line in s.describe()]
            return "\n".join(out)
        raise ValueError(f"unknown stage '{stage}' (opencl, loops, schedule)")

    # -- state ---------------------------------------------------------------------------------------
    def read(self, name: str) -> np.ndarray:
        cl = _cl()
        t = self.global_types[name]
        out = np.empty(tuple(t.shape), t.dtype.np)
        if out.nbytes:
            with self.lock:
                cl._cl._enqueue_read_buffer(
                    self.dev.queue, self.global_bufs[name], _bytes(out), 0, None, True
                )
                self.stats["reads"] += 1
        return out

    def write(self, name: str, arr: np.ndarray) -> None:
        cl = _cl()
        if arr.nbytes:
            with self.lock:
                cl._cl._enqueue_write_buffer(
                    self.dev.queue, self.global_bufs[name], _bytes(arr), 0, None, True
                )
                self.stats["writes"] += 1

    # -- calls ---------------------------------------------------------------------------------------
    def run(self, f, args: list, env: dict | None) -> list:
        cl = _cl()
        fn_name = f.name
        arrays, key = f.bind(args, env)
        enqueue = cl._cl.enqueue_nd_range_kernel
        with self.lock:
            plan = f.plan(key)
            if plan.fails:
                raise InterpError(f"{fn_name}: {plan.fails}")
            q = self.dev.queue
            if f.s.has_asserts:
                cl._cl._enqueue_write_buffer(q, self.status, self._zero, 0, None, False)
            for k, a in enumerate(arrays):
                if a.nbytes:
                    cl._cl._enqueue_write_buffer(q, plan.in_bufs[k], _bytes(a), 0, None, False)
            env = dict(plan.env)
            try:
                self._run(plan.cmds, env, q, enqueue)
            except _CheckFailed as e:
                q.finish()
                raise InterpError(f"{fn_name}: {e.args[0]}") from None
            outs = []
            for j, shape in enumerate(plan.out_shapes):
                o = np.empty(shape, f.out_np[j])
                if o.nbytes:
                    cl._cl._enqueue_read_buffer(q, plan.out_bufs[j], _bytes(o), 0, None, False)
                outs.append(o)
            if f.s.has_asserts:
                cl._cl._enqueue_read_buffer(q, self.status, self._status_host, 0, None, False)
            q.finish()
            code = int(self._status_host[0]) if f.s.has_asserts else 0
        if code:
            raise InterpError(failure_message(fn_name, f.s.messages, code))
        return outs

    def _run(self, cmds, env, q, enqueue) -> None:
        for c in cmds:
            t = c[0]
            if t == 0:
                enqueue(q, c[1], c[2], c[3])
            elif t == 1:
                k = c[1]
                for idx, hv, npt in c[4]:
                    k._set_arg_buf(idx, _pack(hv.eval(env), npt))
                gs, ls = c[2], c[3]
                if c[5] is not None:
                    g = c[5](env)
                    if g is None:
                        continue
                    gs, ls = g
                if gs is None:
                    continue  # an empty launch (a zero-size dim), its arguments varying per step
                enqueue(q, k, gs, ls)
            elif t == 2:
                _, var, lo, hi, body = c
                for i in range(int(lo.eval(env)), int(hi.eval(env))):
                    env[var] = i
                    self._run(body, env, q, enqueue)
            elif not c[1].eval(env):
                raise _CheckFailed(c[2])


class _CheckFailed(Exception):
    pass


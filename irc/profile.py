"""The profiler (Theano's profile=True): `irc profile FILE.tg --fn train`, `irc train
--profile`, profile_module(m, fn).

What is measured, on the module's own backend:
  step     the entry function called as a user calls it (median of `steps` calls,
           after a warm-up; shared variables are restored after each call so every
           step sees the same values).
  kernels  each top-level op of the optimised function (a fused elementwise group, a
           matmul, a reduction, a convolution, a scan, ...), compiled as a function of
           its own (one module for all of them, compiled once) and timed in
           isolation on the operand values of a real step (the interpreter computes
           them). On opencl the time includes moving its operands to the device and
           its results back, so small kernels look slower there than they are inside
           a step. `share` is a kernel's part of the sum of kernel times.
  lines    kernel times summed per `.tg` source line (an op's loc: the line of the
           expression that produced it; fused groups take their root op's line).
Achieved rates: FLOPs and bytes from irc/ops/cost.py at the call's dims, divided by
the time, and compared with this machine's peaks measured once per process with
NumPy (a large float32 matrix product for GFLOP/s, a large copy for GB/s).

Owns: Profile (result, table(), to_dict()), profile_module, machine_peaks.
Top of the layering (beside irc.api): may import anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

_PEAKS: dict = {}
SKIP = {"func.return", "tg.read", "tg.update", "tg.constant", "tg.dim"}


def machine_peaks() -> dict:
    """{"gflops": ..., "gbps": ...}: best of a few runs of a 1024^3 float32 matrix
    product and of a 64 MiB copy with NumPy, measured once per process."""
    if not _PEAKS:
        a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - t)
        _PEAKS["gflops"] = 2 * 1024**3 / best / 1e9
        src = np.ones(16 * 1024 * 1024, np.float32)
        dst = np.empty_like(src)
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            np.copyto(dst, src)
            best = min(best, time.perf_counter() - t)
        _PEAKS["gbps"] = 2 * src.nbytes / best / 1e9  # read + write
    return dict(_PEAKS)


@dataclass
class KernelTime:
    index: int
    op: str  # e.g. "tg.fused[exp, mul, add]" or "tg.matmul"
    loc: object
    seconds: float
    flops: int
    bytes: int

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds > 0 else 0.0

    @property
    def gbps(self) -> float:
        return self.bytes / self.seconds / 1e9 if self.seconds > 0 else 0.0


@dataclass
class Profile:
    fn: str
    backend: str
    dims: dict
    step_seconds: float
    kernels: list = field(default_factory=list)
    peaks: dict = field(default_factory=dict)

    @property
    def kernel_seconds(self) -> float:
        return sum(k.seconds for k in self.kernels)

    def lines(self) -> list:
        """[(loc "file:line", seconds, flops, bytes, kernel count)] by time, descending."""
        by = {}
        for k in self.kernels:
            key = f"{k.loc.file}:{k.loc.line}" if k.loc is not None else "(no location)"
            s, f, b, n = by.get(key, (0.0, 0, 0, 0))
            by[key] = (s + k.seconds, f + k.flops, b + k.bytes, n + 1)
        return sorted(((key, *v) for key, v in by.items()), key=lambda r: -r[1])

    def table(self) -> str:
        total = self.kernel_seconds or 1e-30
        pk = self.peaks
        dims = ", ".join(f"{k}={v}" for k, v in self.dims.items())
        out = [
            f"profile of {self.fn}({dims}) on {self.backend}: step {self.step_seconds * 1e3:.3f} ms "
            f"(median); {len(self.kernels)} kernels, {self.kernel_seconds * 1e3:.3f} ms timed "
            "in isolation",
            f"machine peaks (NumPy): {pk.get('gflops', 0):.1f} GFLOP/s, {pk.get('gbps', 0):.1f} GB/s",
            "",
            f"{'kernel':<44} {'time ms':>9} {'share':>6} {'GFLOP/s':>8} {'%peak':>6} "
            f"{'GB/s':>7} {'%peak':>6}  where",
        ]
        for k in sorted(self.kernels, key=lambda k: -k.seconds):
            out.append(
                f"{_short(k.op, 44):<44} {k.seconds * 1e3:>9.4f} {k.seconds / total:>6.1%} "
                f"{k.gflops:>8.2f} {_pct(k.gflops, pk.get('gflops')):>6} {k.gbps:>7.2f} "
                f"{_pct(k.gbps, pk.get('gbps')):>6}  {k.loc or ''}"
            )
        out += ["", f"{'source line':<44} {'time ms':>9} {'share':>6} {'GFLOP/s':>8} {'GB/s':>7}"]
        for key, s, f, b, n in self.lines():
            gf = f / s / 1e9 if s > 0 else 0.0
            gb = b / s / 1e9 if s > 0 else 0.0
            text = _source(key)
            label = f"{key} ({n})" + (f"  {text}" if text else "")
            out.append(
                f"{_short(label, 44):<44} {s * 1e3:>9.4f} {s / total:>6.1%} {gf:>8.2f} {gb:>7.2f}"
            )
        return "\n".join(out)

    def to_dict(self) -> dict:
        total = self.kernel_seconds or 1e-30
        return {
            "fn": self.fn,
            "backend": self.backend,
            "dims": self.dims,
            "step_seconds": self.step_seconds,
            "kernel_seconds": self.kernel_seconds,
            "peaks": self.peaks,
            "kernels": [
                {
                    "index": k.index,
                    "op": k.op,
                    "loc": str(k.loc) if k.loc is not None else None,
                    "seconds": k.seconds,
                    "share": k.seconds / total,
                    "flops": k.flops,
                    "bytes": k.bytes,
                    "gflops": k.gflops,
                    "gbps": k.gbps,
                }
                for k in self.kernels
            ],
            "lines": [
                {
                    "line": key,
                    "seconds": s,
                    "share": s / total,
                    "flops": f,
                    "bytes": b,
                    "kernels": n,
                }
                for key, s, f, b, n in self.lines()
            ],
        }


def _pct(x, peak) -> str:
    return f"{x / peak:.0%}" if peak else "-"


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _source(key: str) -> str:
    from irc.ir.errors import source_line

    file, _, line = key.rpartition(":")
    if not line.isdigit():
        return ""
    text = source_line(file, int(line))
    return text.strip() if text else ""


def _op_label(op) -> str:
    if op.name == "tg.fused":
        body = [o.name.split(".", 1)[1] for o in op.regions[0].block.ops if o.name != "tg.yield"]
        red = op.attrs.get("reduce")
        return f"fused[{', '.join(body)}]" + (f" -> {red}" if red else "")
    return op.name.split(".", 1)[1]


# -- building the kernel module ---------------------------------------------------------------


def _free_values(op) -> list:
    """Operands of `op` and the values its regions use from outside, in first-use order."""
    inside = set()
    for o in op.walk():
        for r in o.regions:
            for b in r.blocks:
                inside.update(b.args)
        inside.update(o.results)
    out = []
    for o in op.walk():
        for v in o.operands:
            if v not in inside and v not in out:
                out.append(v)
    return out


def _kernel_module(opt, fn: str):
    """(module with one public function k<i> per top-level op of `fn`, [(op, free values)])."""
    from irc.ir.core import Block, Module, Op, Region
    from irc.ir.types import F32, TensorType

    F32_SCALAR = TensorType(F32, ())
    func = opt.lookup(fn)
    kmod = Module(attrs=dict(opt.attrs))
    for g in opt.body.ops:
        if g.name == "tg.global":
            kmod.body.append(g.clone({}))
    kernels = []
    for op in func.regions[0].block.ops:
        if op.name in SKIP or not op.results:
            continue
        free = _free_values(op)
        block = Block([v.type for v in free], [f"a{i}" for i in range(len(free))])
        mapping = dict(zip(free, block.args))
        clone = op.clone(mapping)
        block.append(clone)
        block.append(Op("func.return", clone.results))
        k = len(kernels)
        kmod.body.append(
            Op(
                "func.func",
                (),
                (),
                {
                    "sym_name": f"k{k}",
                    "visibility": "public",
                    "res_types": tuple(r.type for r in clone.results),
                },
                [Region([block])],
                op.loc,
            )
        )
        # n<i>: the same arguments, no work: its time is the call's own cost (argument
        # checks, transfers), subtracted from k<i>'s
        nblock = Block([v.type for v in free], [f"a{i}" for i in range(len(free))])
        zero = Op("tg.constant", (), [F32_SCALAR], {"value": np.zeros((), np.float32)})
        nblock.append(zero)
        nblock.append(Op("func.return", zero.results))
        kmod.body.append(
            Op(
                "func.func",
                (),
                (),
                {"sym_name": f"n{k}", "visibility": "public", "res_types": (F32_SCALAR,)},
                [Region([nblock])],
                op.loc,
            )
        )
        kernels.append((op, free))
    return kmod, kernels


def _time(call, budget=0.05, max_reps=200) -> float:
    call()  # warm-up (and first-call allocations)
    times = []
    t_end = time.perf_counter() + budget
    while len(times) < 3 or (time.perf_counter() < t_end and len(times) < max_reps):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def profile_module(m, fn: str, args=None, steps: int = 20, seed: int = 0, dims=None) -> Profile:
    """Profile entry function `fn` of the CompiledModule `m` on its backend. `args`: a
    {name: value} dict or a list (default: random inputs, named dims 32 unless given in
    `dims`)."""
    from irc import api
    from irc.ir.dims import eval_dim
    from irc.ops.cost import op_bytes, op_flops
    from irc.pipeline import run_pipeline
    from irc.runtime.interp import Interpreter

    ef = m._function(fn)
    if args is None:
        args = _random_args(m, fn, seed, dims or {})
    if isinstance(args, dict):
        arrays, env = ef.bind((), args)
    else:
        arrays, env = ef.bind(tuple(args), {})
    saved = {n: m[n] for n in m.shared}

    def step():
        m._backend.call(fn, arrays, env)
        for n, v in saved.items():
            m._backend.set(n, v.copy())

    reps = max(1, steps)
    step()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        m._backend.call(fn, arrays, env)
        times.append(time.perf_counter() - t)
        for n, v in saved.items():
            m._backend.set(n, v.copy())
    step_s = float(np.median(times))

    # the operand values of every top-level op, from the interpreter
    interp = Interpreter(m._opt)
    values: dict = {}
    func = m._opt.lookup(fn)
    interp._run_block(func.regions[0].block, list(arrays), dict(saved), env, {}, values)
    kmod, kernels = _kernel_module(m._opt, fn)
    kopt = run_pipeline(kmod)
    state = {n: v.copy() for n, v in saved.items()}
    kb = api._make_backend(m.backend, kopt, state, getattr(m._backend, "device_name", None))
    prof = Profile(fn, m.backend, dict(env), step_s, peaks=machine_peaks())
    for k, (op, free) in enumerate(kernels):
        kargs = [_as_type(values[v], v.type, env) for v in free]
        secs = _time(lambda: kb.call(f"k{k}", kargs, env))  # noqa: B023
        secs = max(0.0, secs - _time(lambda: kb.call(f"n{k}", kargs, env)))  # noqa: B023
        prof.kernels.append(
            KernelTime(
                k,
                _op_label(op),
                op.loc,
                secs,
                _eval(op_flops(op), env, eval_dim) + _scan_cost(op, env, "flops"),
                _eval(op_bytes(op), env, eval_dim) + _scan_cost(op, env, "bytes"),
            )
        )
    return prof


def _as_type(a, t, env):
    """The interpreter's value as the compiled code wants it: C-contiguous, of the
    declared dtype and shape (the interpreter may keep a size-1 axis on a scalar)."""
    from irc.runtime.interp import eval_shape

    return np.asarray(np.asarray(a, t.dtype.np).reshape(eval_shape(t.shape, env)), order="C")


def _eval(d, env, eval_dim) -> int:
    try:
        return int(eval_dim(d, env))
    except (KeyError, TypeError, ValueError):
        return 0


def _scan_cost(op, env, key) -> int:
    if op.name != "tg.scan":
        return 0
    from irc.ir.dims import eval_dim
    from irc.ops.cost import _block_cost

    c = _block_cost(op.regions[0].block, op.attrs["length"])
    return _eval(c[key], env, eval_dim)


def _random_args(m, fn, seed, dims) -> list:
    from irc.ir.dims import dim_names, eval_dim

    rng = np.random.default_rng(seed)
    sig = m.signature(fn)
    env = {}
    for a in sig.args:
        for d in a.type.shape:
            if isinstance(d, str):
                for n in dim_names(d):
                    env.setdefault(n, int(dims.get(n, 32)))
    out = []
    for a in sig.args:
        t = a.type
        shape = tuple(eval_dim(d, env) for d in t.shape)
        if a.has_default and t.rank == 0:
            out.append(np.asarray(a.default, t.dtype.np))
        elif t.dtype.is_float:
            out.append(rng.uniform(-1, 1, shape).astype(t.dtype.np))
        elif t.dtype.is_int:
            out.append(rng.integers(0, _int_bound(m, fn, a.name, env), shape).astype(t.dtype.np))
        else:
            out.append(rng.random(shape) < 0.5)
    return out


def _int_bound(m, fn, name, env) -> int:
    from irc.gradcheck import _int_bound as bound
    from irc.verify_backends import _inlined

    func = _inlined(m._tg).lookup(fn)
    for a in func.regions[0].block.args:
        if a.name_hint == name:
            return bound(a, env)
    return 2

"""LLVMBackend: the `cpu` backend. Lowers the optimised tg module with
lower-to-loops, generates LLVM IR (codegen.py), optimises it for the host CPU,
JIT-links it with MCJIT and calls it through ctypes.

Interface (the same as runtime.interp.InterpBackend):
    call(fn_name, args: list of arrays, env: dict of named dims) -> list of arrays
    get(name) -> a copy of a shared variable;  set(name, array)
plus dump(stage) with stage "loops" (loop IR), "llvm" (optimised LLVM IR) or
"asm" (assembly), and threads (the thread count of parallel loop nests;
set_threads(1) is the one-thread switch).

The call path: arguments are checked against the function's types (dtype,
rank, static sizes, agreement of named dims); an array of the wrong dtype
that converts same-kind, or a non-contiguous one, is copied, anything else
raises CallError. Pointers go into a preallocated ctypes array (kept for an
argument that is the same object as in the previous call), the named dims into
an int64 array, and the compiled function is called once. Output arrays are
allocated per call, except that the previous call's output is reused when
nobody else holds it any more (same shape). The workspace for intermediates
is one buffer per function, grown when the dims need more.

Shared variables live in NumPy arrays owned by the backend; compiled code
updates them in place (after every read of the old value, see lower-to-loops).
A backend object runs one call at a time (a lock guards it).

Imports irc.ir, irc.ops, irc.passes (lower-to-loops) and runtime modules only.
"""

from __future__ import annotations

import ctypes
import sys
import threading

import numpy as np

from irc.ir.core import Module
from irc.ir.dims import eval_dim
from irc.ir.printer import print_module
from irc.runtime.interp import InterpError

from . import jit
from .blas import bind_symbols
from .codegen import ws_symbol
from .threads import follow, num_threads, pool_address

try:  # the project's CallError, once it lives below irc.api (see the report)
    from irc.ir.errors import CallError  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - until then, an equivalent class

    class CallError(ValueError, TypeError):
        """Wrong arguments at call time: count, names, shapes, dtypes or named dims."""


try:
    from irc import __version__ as IRC_VERSION
except ImportError:  # pragma: no cover
    IRC_VERSION = "0"

_CFUNC = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_WSFUNC = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p)

DEFAULT_THREADS = None


def default_threads() -> int:
    """irc.set_num_threads / IRC_NUM_THREADS / the usable cores (threads.py)."""
    return num_threads()


def _only_functions(text: str, fn: str) -> str:
    """The `define`s of an LLVM IR text that belong to entry function fn (fn, its
    kernels fn.k*, its workspace size fn.ws)."""
    out, keep = [], False
    for line in text.splitlines():
        if line.startswith("define"):
            name = line.split("@", 1)[1].split("(", 1)[0].strip('"')
            keep = name == fn or name.startswith(fn + "__")
        if keep:
            out.append(line)
            if line == "}":
                out.append("")
                keep = False
    return "\n".join(out)


def _ptr(a: np.ndarray) -> int:
    if a.flags.writeable:
        try:
            return ctypes.addressof(ctypes.c_char.from_buffer(a))
        except (TypeError, ValueError):
            pass
    return a.ctypes.data


class _Function:
    """Everything one call of a compiled entry function needs, precomputed."""

    def __init__(self, backend, op, addr, ws_addr, messages):
        self.name = op.attrs["sym_name"]
        block = op.regions[0].block
        self.n_in = op.attrs["n_inputs"]
        self.n_out = op.attrs["n_outputs"]
        self.dims = list(op.attrs.get("dims", ()))
        self.messages = messages
        arg_types = [a.type for a in block.args]
        self.in_types = arg_types[: self.n_in]
        self.out_types = arg_types[self.n_in:]
        self.in_names = [a.name_hint or f"arg{k}" for k, a in enumerate(block.args[: self.n_in])]
        self.in_np = [t.dtype.np for t in self.in_types]
        # per input: tuple of (axis, int size | dim name | None for an expression)
        self.in_spec = []
        for t in self.in_types:
            spec = []
            for ax, d in enumerate(t.shape):
                spec.append((ax, d))
            self.in_spec.append(tuple(spec))
        self.cfunc = _CFUNC(addr)
        self.wsfunc = _WSFUNC(ws_addr)
        nglob = len(backend.global_names)
        self.ptrs = (ctypes.c_void_p * (self.n_in + self.n_out + nglob))()
        for k, name in enumerate(backend.global_names):
            self.ptrs[self.n_in + self.n_out + k] = _ptr(backend.state[name])
        self.ptrs_addr = ctypes.addressof(self.ptrs)
        self.dims_arr = (ctypes.c_int64 * max(1, len(self.dims)))()
        self.dims_addr = ctypes.addressof(self.dims_arr)
        self.last_in = [None] * self.n_in
        self.last_out = [None] * self.n_out
        self.plans: dict = {}
        self.ws = np.zeros(0, np.uint8)
        self.ws_addr = 0

    def plan(self, key):
        """(output shapes, workspace bytes) for a tuple of dim values."""
        p = self.plans.get(key)
        if p is None:
            env = dict(zip(self.dims, key))
            shapes = [tuple(eval_dim(d, env) for d in t.shape) for t in self.out_types]
            for k, v in enumerate(key):
                self.dims_arr[k] = v
            need = int(self.wsfunc(self.dims_addr))
            p = (shapes, need)
            self.plans[key] = p
        return p


class LLVMBackend:
    """The cpu backend. `module` is the optimised tg module (or a loop module)."""

    name = "cpu"

    def __init__(self, module: Module, state: dict, threads: int | None = None, cache: bool = True):
        self.lock = threading.Lock()
        if module.attrs.get("stage") == "loops":
            self.loop_module = module
        else:
            from irc.passes.lower_to_loops import lower_module

            self.loop_module = lower_module(module.clone())
        self.global_names = [op.attrs["sym_name"] for op in self.loop_module.body.ops if op.name == "tg.global"]
        self.global_types = {op.attrs["sym_name"]: op.attrs["type"] for op in self.loop_module.body.ops
                             if op.name == "tg.global"}
        self.state = {}
        for n in self.global_names:
            t = self.global_types[n]
            v = state.get(n)
            arr = np.zeros(tuple(t.shape), t.dtype.np) if v is None else np.array(v, dtype=t.dtype.np, order="C")
            self.state[n] = arr
        self.loop_text = print_module(self.loop_module)
        self.key = jit.cache_key(self.loop_text, IRC_VERSION)
        self._llvm_mod = None
        bind_symbols()
        pool_address()
        obj, meta = self._object(cache)
        self.linked = jit.linked(self.key, obj) if cache else jit.Linked(obj)
        self.functions = {}
        for op in self.loop_module.functions():
            name = op.attrs["sym_name"]
            self.functions[name] = _Function(self, op, self.linked.address(name),
                                             self.linked.address(ws_symbol(name)), meta["messages"][name])
        self.ctx = (ctypes.c_int64 * 4)()
        self.ctx_addr = ctypes.addressof(self.ctx)
        if threads is None:  # follow irc.set_num_threads
            follow(self)
            threads = num_threads()
        self.set_threads(threads)

    # -- compilation ------------------------------------------------------------------------------
    def _object(self, cache: bool):
        if cache:
            eng = jit.cached_engine(self.key)
            if eng is not None:
                return None, self._meta()
            got = jit.cache_read(self.key)
            if got is not None:
                return got
        mod = self._llvm()
        obj = jit.emit_object(mod)
        meta = self._meta()
        if cache:
            jit.cache_write(self.key, obj, meta)
        return obj, meta

    def _meta(self) -> dict:
        msgs = {}
        for op in self.loop_module.functions():
            msgs[op.attrs["sym_name"]] = [o.attrs.get("message", "assertion failed")
                                          for o in op.walk() if o.name == "loop.assert"]
        return {"messages": msgs}

    def llvm_ir(self) -> str:
        """The unoptimised LLVM IR text of the module."""
        from .codegen import generate

        jit.init()
        tm = jit.target_machine()
        m, infos = generate(self.loop_module, jit.llvm.get_process_triple(), str(tm.target_data))
        meta = self._meta()["messages"]
        for name, info in infos.items():
            assert info.messages == meta[name], (info.messages, meta[name])
        return str(m)

    def _llvm(self):
        if self._llvm_mod is None:
            self._llvm_mod = jit.optimize(self.llvm_ir())
        return self._llvm_mod

    def dump(self, stage: str = "loops", fn: str | None = None) -> str:
        """Text of a stage: "loops" (loop IR), "llvm" (optimised LLVM IR), "llvm-raw"
        (LLVM IR before optimisation) or "asm"; with `fn`, only that entry function
        (and, for LLVM stages, its kernels and helpers' definitions it calls)."""
        if fn is not None and fn not in self.functions:
            raise KeyError(f"no entry function '{fn}' (functions: {', '.join(self.functions)})")
        if stage == "loops":
            if fn is not None:
                from irc.ir.printer import print_op

                return print_op(self.loop_module.lookup(fn)) + "\n"
            return self.loop_text
        if stage in ("llvm", "llvm-raw"):
            text = str(self._llvm()) if stage == "llvm" else self.llvm_ir()
            return text if fn is None else _only_functions(text, fn)
        if stage == "asm":
            return jit.emit_assembly(self._llvm())
        raise ValueError(f"unknown stage '{stage}' (loops, llvm, llvm-raw, asm)")

    # -- threads ----------------------------------------------------------------------------------
    def set_threads(self, n: int) -> None:
        """Threads for parallel loop nests and large matrix products (1 switches
        threading off). OpenBLAS itself always runs on one thread."""
        n = max(1, int(n))
        self.threads = n
        self.ctx[0] = n

    # -- state ------------------------------------------------------------------------------------
    def get(self, name: str) -> np.ndarray:
        return self.state[name].copy()

    def set(self, name: str, value) -> None:
        buf = self.state[name]
        arr = np.asarray(value)
        if arr.shape != buf.shape:
            raise CallError(f"shared variable '{name}' is {self.global_types[name]}; got shape {list(arr.shape)}")
        if arr.dtype != buf.dtype and not np.can_cast(arr.dtype, buf.dtype, "same_kind"):
            raise CallError(f"shared variable '{name}' is {self.global_types[name]}; got dtype {arr.dtype}")
        with self.lock:
            np.copyto(buf, arr, casting="unsafe")

    # -- calls ------------------------------------------------------------------------------------
    def call(self, fn_name: str, args: list, env: dict | None = None) -> list:
        f = self.functions.get(fn_name)
        if f is None:
            raise CallError(f"no entry function '{fn_name}'")
        if len(args) != f.n_in:
            raise CallError(f"{fn_name}() takes {f.n_in} argument(s), got {len(args)}")
        bound: dict = {}
        ptrs = f.ptrs
        last = f.last_in
        for k in range(f.n_in):
            a = args[k]
            want = f.in_np[k]
            if not (type(a) is np.ndarray and a.dtype == want and a.flags.c_contiguous):
                a = self._convert(f, k, a)
            shape = a.shape
            spec = f.in_spec[k]
            if len(shape) != len(spec):
                raise CallError(f"{fn_name}(): argument '{f.in_names[k]}' must have rank {len(spec)} "
                                f"({f.in_types[k]}), got shape {list(shape)}")
            for ax, d in spec:
                n = shape[ax]
                if d.__class__ is int:
                    if n != d:
                        raise CallError(f"{fn_name}(): argument '{f.in_names[k]}' must be {f.in_types[k]}, "
                                        f"got shape {list(shape)} (axis {ax} is {n}, expected {d})")
                else:
                    got = bound.get(d)
                    if got is None:
                        bound[d] = n
                    elif got != n:
                        raise CallError(f"{fn_name}(): argument '{f.in_names[k]}': dimension {d} is {got} "
                                        f"but {n} here (shape {list(shape)})")
            if a is not last[k]:
                ptrs[k] = _ptr(a) if a.size else 0
                last[k] = a
        try:
            key = tuple([bound[d] for d in f.dims])
        except KeyError as e:
            if env and all(d in env for d in f.dims):
                key = tuple(int(env[d]) for d in f.dims)
            else:
                raise CallError(f"{fn_name}(): the dim {e.args[0]} is not bound by the arguments") from None
        # dims given as expressions ("T*B" in an argument type) must agree too
        for d, n in bound.items():
            if not d.isidentifier():
                try:
                    if eval_dim(d, dict(zip(f.dims, key))) != n:
                        raise CallError(f"{fn_name}(): dimension {d} does not match the other dims")
                except KeyError:
                    raise CallError(f"{fn_name}(): the dims of {d} are not bound by the arguments") from None
        with self.lock:
            shapes, need = f.plan(key)
            dims_arr = f.dims_arr
            for k, v in enumerate(key):
                dims_arr[k] = v
            if need > f.ws.size:
                f.ws = np.empty(need + 64, np.uint8)
                f.ws_addr = (_ptr(f.ws) + 63) & ~63
            outs = []
            base = f.n_in
            for j, shape in enumerate(shapes):
                prev = f.last_out[j]
                # reuse the previous output when only we hold it (refcount: list + argument)
                if prev is not None and prev.shape == shape and sys.getrefcount(prev) == 3:
                    o = prev
                else:
                    o = np.empty(shape, f.out_types[j].dtype.np)
                    f.last_out[j] = o
                    ptrs[base + j] = _ptr(o) if o.size else 0
                outs.append(o)
            rc = f.cfunc(f.ptrs_addr, f.dims_addr, f.ws_addr, self.ctx_addr)
        if rc:
            msg = f.messages[rc - 1] if 0 < rc <= len(f.messages) else f"error {rc}"
            raise InterpError(f"{fn_name}: {msg}")
        return outs

    def _convert(self, f, k, a):
        want = f.in_np[k]
        name = f.in_names[k]
        if not isinstance(a, np.ndarray):
            try:
                a = np.asarray(a)
            except Exception:
                raise CallError(f"{f.name}(): argument '{name}' cannot be converted to an array") from None
            if a.dtype == object:
                raise CallError(f"{f.name}(): argument '{name}' is not numeric")
            if a.dtype.kind in "biuf" and (a.dtype.kind == "f") <= (want.kind == "f"):
                return np.ascontiguousarray(a, dtype=want) if a.ndim else np.asarray(a, dtype=want)
        if a.dtype != want:
            if a.dtype.kind not in "biuf" or not np.can_cast(a.dtype, want, "same_kind"):
                raise CallError(f"{f.name}(): argument '{name}' must be {f.in_types[k].dtype} "
                                f"({f.in_types[k]}), got an array of {a.dtype}")
        return np.array(a, dtype=want, order="C") if a.ndim else np.asarray(a, dtype=want)

"""LLVMBackend: the `cpu` backend. Lowers the optimised tg module with
lower-to-loops, generates LLVM IR (codegen.py), optimises it for the host CPU,
JIT-links it with MCJIT and calls it through ctypes.

Interface (the same as runtime.interp.InterpBackend):
    call(fn_name, args: list of arrays, env: dict of named dims) -> list of arrays
    get(name) -> a copy of a shared variable;  set(name, array)
plus dump(stage) with stage "loops" (loop IR), "llvm" (optimised LLVM IR) or
"asm" (assembly), and threads (the thread count of parallel loop nests;
set_threads(1) is the one-thread switch).

The call path: one generated Python function per entry function (see
_make_caller): the checks of runtime/binding.py, shared with every backend
(dtype, rank, static sizes, agreement of named dims; an array of the wrong
dtype that converts same-kind, or a non-contiguous one, is copied, anything
else raises CallError), then the marshalling unrolled. irc.api calls the same
generated code with its argument names and defaults (entry()). Pointers go into a preallocated ctypes array (kept for an
argument that is the same object as in the previous call), the named dims into
an int64 array, and the compiled function is called once. Output arrays are
allocated per call, except that the previous call's output is reused when
nobody else holds it any more (same shape). The workspace for intermediates
is one buffer per function, grown when the dims need more.

Shared variables live in NumPy arrays owned by the backend; compiled code
updates them in place (after every read of the old value, see lower-to-loops).
A backend object runs one call at a time (a lock guards it).

A backend is built from the tg module (lower-to-loops, then LLVM or the object
cache), or, by irc.api's whole-module cache, from a cache entry
(cache_entry / from_cache): specs and the object key, no IR at all; the loop
IR is then rebuilt only if an inspection (dump) asks for it.

Imports irc.ir, irc.ops, irc.passes (lower-to-loops) and runtime modules only.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from types import SimpleNamespace

import numpy as np
from irc.runtime.base import (
    CompiledBackend,
    PlanCache,
    failure_message,
    initial_values,
    loop_ir,
)
from irc.runtime.binding import (
    CallSpec,
    bind_names,
    check_source,
    spec_from_json,
    spec_of_loop_function,
    spec_to_json,
)

from irc.ir.core import Module, dismantle
from irc.ir.dims import eval_dim
from irc.ir.errors import CallError, CompileError
from irc.ir.parser import parse_type
from irc.ir.printer import print_module
from irc.ir.sizes import buffer_types, check_sizes

from . import jit
from .blas import bind_blas, bind_process_symbols
from .threads import follow, num_threads, pool_address

try:
    from irc import __version__ as IRC_VERSION
except ImportError:  # pragma: no cover
    IRC_VERSION = "0"

_CFUNC = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_WSFUNC = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p)

DEFAULT_THREADS = None
MAX_PLANS = 64  # dims keys whose output shapes and workspace size are kept per function


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
            keep = name == fn or name.startswith(fn + ".")
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
    """Everything one call of a compiled entry function needs, precomputed: its
    CallSpec (the inputs), output types, assertion messages, the ctypes buffers
    the compiled function reads (pointers, dims, context) and the plan cache
    {dims key: (output shapes, workspace bytes)}."""

    def __init__(self, backend, spec: CallSpec, out_types, messages, addr, ws_addr, buffers):
        self.name = spec.name
        self.spec = spec
        self.n_in = len(spec.in_types)
        self.n_out = len(out_types)
        self.dims = list(spec.dims)
        self.messages = list(messages)
        self.in_types = spec.in_types
        self.out_types = list(out_types)
        self.in_names = spec.in_names
        self.cfunc = _CFUNC(addr)
        self.wsfunc = _WSFUNC(ws_addr)
        nglob = len(backend.global_names)
        self.ptrs = (ctypes.c_void_p * (self.n_in + self.n_out + nglob))()
        for k, name in enumerate(backend.global_names):
            self.ptrs[self.n_in + self.n_out + k] = _ptr(backend.state[name])
        self.ptrs_addr = ctypes.addressof(self.ptrs)
        self.dims_arr = (ctypes.c_int64 * max(1, len(self.dims)))()
        self.dims_addr = ctypes.addressof(self.dims_arr)
        # a ctypes slot per float scalar input (the fast path of a Python or NumPy float)
        self.slots = {k: (ctypes.c_float if t.dtype.name == "f32" else ctypes.c_double)()
                      for k, t in enumerate(self.in_types) if t.rank == 0 and t.dtype.is_float}
        self.last_in = [0] * self.n_in  # 0: never None (None means "in the slot")
        self.last_out = [None] * self.n_out
        self.last_key = [None]
        self.plans = PlanCache(MAX_PLANS)
        self.buffers = list(buffers)  # its tensor types, checked per plan: no int64 overflow
        self.ws = np.zeros(0, np.uint8)
        self.ws_addr = 0
        # what _make_caller takes from the backend (not the backend itself: no cycle)
        self._owner = SimpleNamespace(lock=backend.lock, ctx_addr=backend.ctx_addr)
        self._call = None  # backend.call's generated caller, made on its first use

    @property
    def call(self):
        """call(args, env=None) -> list of arrays (see _make_caller). irc.api calls
        its own generated method (LLVMBackend.entry), so a model used only through
        the API never pays for compiling this one."""
        if self._call is None:
            self._call = _make_caller(self._owner, self)
        return self._call

    def plan(self, key):
        """(output shapes, workspace bytes) for a tuple of dim values; sets dims_arr."""
        env = dict(zip(self.dims, key))
        check_sizes(self.name, self.buffers, env)  # before the int64 workspace function
        shapes = [tuple(eval_dim(d, env) for d in t.shape) for t in self.out_types]
        for k, v in enumerate(key):
            self.dims_arr[k] = v
        self.last_key[0] = key
        need = int(self.wsfunc(self.dims_addr))
        p = (shapes, need)
        return self.plans.add(key, p)

    def grow_workspace(self, need: int) -> int:
        try:
            self.ws = np.empty(need + 64, np.uint8)
        except MemoryError:
            raise CallError(f"{self.name}(): cannot allocate a {need}-byte workspace") from None
        self.ws_addr = (_ptr(self.ws) + 63) & ~63
        return self.ws_addr

    def failed(self, rc: int):
        # imported here: runtime.interp imports every op definition, which a cached load skips
        from irc.runtime.interp import InterpError

        return InterpError(failure_message(self.name, self.messages, rc))


def _empty_result(shape, dtype):
    try:
        return np.empty(shape, dtype)
    except MemoryError:
        raise CallError(f"cannot allocate a result of shape {list(shape)}") from None


def _make_caller(backend, f: _Function, api_spec: CallSpec | None = None):
    """Generate the call of one function: the shared checks (runtime/binding.py),
    then the marshalling, unrolled for this signature. Pointers of arguments
    that are the same objects as in the previous call, and the dims of the same
    key, are not written again; an output array is reused when nobody else
    holds it any more (refcount: last_out + the local name + getrefcount's
    argument). With `api_spec` (names and defaults of irc.api's signature):
    a method `__call__(self, *args, **kwargs)` that returns what irc.api
    returns (a scalar for a 0-d result, a tuple for several, None for none);
    otherwise `call(args, env=None)` -> list of arrays."""
    slots = {k: f"v{k}" for k, t in enumerate(f.in_types) if t.rank == 0 and t.dtype.is_float}
    lines, ns = check_source(f.spec, "args", "    ", slots)
    n_in, n_out = f.n_in, f.n_out
    for k in slots:
        ns[f"slot{k}"] = f.slots[k]
        ns[f"slot_addr{k}"] = ctypes.addressof(f.slots[k])
    ns.update(
        f=f,
        lock=backend.lock,
        plans=f.plans,
        last_in=f.last_in,
        last_out=f.last_out,
        last_key=f.last_key,
        ptrs=f.ptrs,
        dims_arr=f.dims_arr,
        cfunc=f.cfunc,
        ptrs_addr=f.ptrs_addr,
        dims_addr=f.dims_addr,
        ctx_addr=backend.ctx_addr,
        ptr=_ptr,
        getrefcount=sys.getrefcount,
        empty=_empty_result,
        bind_names=bind_names,
        api_spec=api_spec,
    )
    body = []
    if api_spec is not None:
        head = ["def __call__(self, *args, **kwargs):",
                f"    if kwargs or len(args) != {n_in}: args = bind_names(api_spec, args, kwargs)",
                "    env = None"]
    else:
        head = ["def call(args, env=None):"]
    body += lines
    body.append("    with lock:")
    w = "        "
    body.append(w + "p = plans.get(key)")
    body.append(w + "if p is None: p = f.plan(key)")
    if f.dims:
        body.append(w + "elif key != last_key[0]:")
        for k in range(len(f.dims)):
            body.append(w + f"    dims_arr[{k}] = key[{k}]")
        body.append(w + "    last_key[0] = key")
    body.append(w + "shapes, need = p")
    body.append(w + "ws_addr = f.ws_addr if need <= f.ws.size else f.grow_workspace(need)")
    for k in range(n_in):
        body.append(w + f"if a{k} is not last_in[{k}]:")
        if k in slots:  # a{k} None: the value v{k} goes into slot k (a float scalar)
            body.append(w + f"    ptrs[{k}] = slot_addr{k} if a{k} is None else ptr(a{k})")
        else:
            body.append(w + f"    ptrs[{k}] = ptr(a{k}) if a{k}.size else 0")
        body.append(w + f"    last_in[{k}] = a{k}")
        if k in slots:
            body.append(w + f"if a{k} is None: slot{k}.value = v{k}")
    for j in range(n_out):
        ns[f"O{j}"] = f.out_types[j].dtype.np
        body.append(w + f"o{j} = last_out[{j}]")
        body.append(
            w + f"if o{j} is None or o{j}.shape != shapes[{j}] or getrefcount(o{j}) != 3:"
        )
        body.append(w + f"    o{j} = last_out[{j}] = empty(shapes[{j}], O{j})")
        body.append(w + f"    ptrs[{n_in + j}] = ptr(o{j}) if o{j}.size else 0")
    body.append(w + "rc = cfunc(ptrs_addr, dims_addr, ws_addr, ctx_addr)")
    body.append("    if rc: raise f.failed(rc)")
    outs = [f"o{j}" for j in range(n_out)]
    if api_spec is None:
        body.append(f"    return [{', '.join(outs)}]")
    else:
        vals = [f"o{j}[()]" if f.out_types[j].rank == 0 else f"o{j}" for j in range(n_out)]
        if n_out == 0:
            body.append("    return None")
        elif n_out == 1:
            body.append(f"    return {vals[0]}")
        else:
            body.append(f"    return ({', '.join(vals)},)")
    src = "\n".join(head + body)
    exec(compile(src, f"<irc cpu call {f.name}>", "exec"), ns)  # noqa: S102 - our own source
    return ns["__call__" if api_spec is not None else "call"]


class LLVMBackend(CompiledBackend):
    """The cpu backend. `module` is the optimised tg module (or a loop module)."""

    name = "cpu"

    def __init__(self, module: Module, state: dict, threads: int | None = None, cache: bool = True,
                 owned: bool = False, source_key: str | None = None):
        """`owned`: the caller gives `module` and `state` up: the module is lowered
        in place (no copy; a 20,000-statement function's IR is ~350,000 Python
        objects) and the state's arrays are taken as they are where they fit.
        `source_key`: the module comes from `.tg` source that this key names
        (irc.cache.module_key: the text, file name, defines, irc's code, the
        target); the object code is cached under it, so the loop IR is not
        printed to key it (~5 us per loop op: a second for a long function)."""
        self.lock = threading.Lock()
        self.owned = owned
        self._loop_module = loop_ir(module, owned=owned)
        self._loop_thunk = None
        globs = [op for op in self._loop_module.body.ops if op.name == "tg.global"]
        self._init_state([(op.attrs["sym_name"], op.attrs["type"]) for op in globs], state, owned)
        from .codegen import ws_symbol  # (not needed, nor imported, on a module-cache hit)

        if source_key is not None:
            self._loop_text = None  # (printed when a dump asks for it)
            self.key = jit.cache_key("source " + source_key, IRC_VERSION)
        else:
            self._loop_text = print_module(self._loop_module)
            self.key = jit.cache_key(self._loop_text, IRC_VERSION)
        self._llvm_mod = None
        obj, meta = self._object(cache)
        self.linked = self._link(obj, cache)
        specs = []
        for op in self._loop_module.functions():
            spec = spec_of_loop_function(op)
            n_in = op.attrs["n_inputs"]
            outs = [a.type for a in op.regions[0].block.args[n_in:]]
            specs.append(
                (spec, outs, meta["messages"][spec.name], ws_symbol(spec.name), buffer_types(op))
            )
        self._finish(specs, threads)

    def release_ir(self, loop_thunk) -> None:
        """Drop the loop module: `loop_thunk()` rebuilds it when an inspection
        (llvm_ir, a dump) needs it, as after a whole-module cache hit. Held, a long
        function's loop IR would be walked again by every full collection of the
        process (Python's cycle collector)."""
        self._loop_thunk = loop_thunk
        if self.owned:
            dismantle(self._loop_module)
        self._loop_module = None

    @classmethod
    def from_cache(cls, entry: dict, state: dict, loop_thunk, threads: int | None = None):
        """A backend from a whole-module cache entry (see cache_entry) without the
        loop IR: the object code comes from the disk cache by its key. Raises
        CacheMiss when the object is gone or the entry does not fit. `loop_thunk()`
        builds the loop module when an inspection (dump, llvm_ir) needs it."""
        self = cls.__new__(cls)
        self.lock = threading.Lock()
        self._loop_module = None
        self._loop_text = None
        self._loop_thunk = loop_thunk
        self.owned = False
        self.key = entry["key"]
        self._llvm_mod = None
        try:
            self._init_state([(n, parse_type(t)) for n, t in entry["globals"]], state)
            specs = [
                (spec_from_json(e["spec"]), [parse_type(t) for t in e["outs"]],
                 [str(m) for m in e["messages"]], str(e["ws"]),
                 [parse_type(t) for t in e["buffers"]])
                for e in entry["functions"]
            ]
        except (KeyError, TypeError, ValueError, CompileError) as e:
            raise jit.CacheMiss(f"malformed module cache entry: {e!r}") from None
        if jit.cached_engine(self.key) is None:
            got = jit.cache_read(self.key)
            if got is None:
                raise jit.CacheMiss("object code not in the cache")
            obj = got[0]
        else:
            obj = None
        self.linked = self._link(obj, True)
        self._finish(specs, threads)
        return self

    def cache_entry(self) -> dict:
        """What from_cache needs, as JSON-able data."""
        return {
            "key": self.key,
            "globals": [[n, str(self.global_types[n])] for n in self.global_names],
            "functions": [
                {"spec": spec_to_json(f.spec), "outs": [str(t) for t in f.out_types],
                 "messages": f.messages, "ws": f.ws_symbol,
                 "buffers": [str(t) for t in f.buffers]}
                for f in self.functions.values()
            ],
        }

    def _init_state(self, globs, state, owned: bool = False):
        self.global_names = [n for n, _ in globs]
        self.global_types = dict(globs)
        self.state = initial_values(globs, state, owned)

    def _link(self, obj, cache):
        # what the object calls must be bound before MCJIT resolves it; OpenBLAS
        # and the thread pool only when it calls them (a model without a matrix
        # product or a parallel loop pays for neither)
        if obj is not None:
            bind_process_symbols()
            if b"scipy_cblas_" in obj:
                bind_blas()
            if b"irc_pool_run" in obj:
                pool_address()
        return jit.linked(self.key, obj) if cache else jit.Linked(obj)

    def _finish(self, specs, threads):
        self.ctx = (ctypes.c_int64 * 4)()
        self.ctx_addr = ctypes.addressof(self.ctx)
        self.functions = {}
        for spec, outs, messages, ws, buffers in specs:
            name = spec.name
            f = _Function(
                self, spec, outs, messages, self.linked.address(name), self.linked.address(ws), buffers
            )
            f.ws_symbol = ws
            self.functions[name] = f
        if threads is None:  # follow irc.set_num_threads
            follow(self)
            threads = num_threads()
        self.set_threads(threads)

    @property
    def loop_text(self) -> str:
        if self._loop_text is None:
            self._loop_text = print_module(self.loop_module)
        return self._loop_text

    @property
    def loop_module(self) -> Module:
        if self._loop_module is None:
            self._loop_module = self._loop_thunk()
        return self._loop_module

    def entry(self, fn_name: str, api_spec: CallSpec):
        """irc.api's call of fn_name as one generated method (see _make_caller), or
        None when the API's signature does not match the compiled one."""
        f = self.functions[fn_name]
        if [str(t) for t in api_spec.in_types] != [str(t) for t in f.spec.in_types]:
            return None
        return _make_caller(self, f, api_spec)

    # -- compilation ------------------------------------------------------------------------------
    def _object(self, cache: bool):
        """(object code or None when the engine is already linked, metadata). The
        metadata is always recomputed, never taken from the file: from the loop
        IR on a cache hit, from the code generator (which walks it anyway, and
        agrees: llvm_ir checks) when compiling."""
        if cache:
            if jit.cached_engine(self.key) is not None:
                return None, self._meta()
            got = jit.cache_read(self.key)
            if got is not None:
                return got[0], self._meta()
        text, infos = self._generate()
        meta = {"messages": {name: list(info.messages) for name, info in infos.items()}}
        # (not kept for dumps: code generation rewrites the modules it emits, so a
        # dump made from them would differ from one made afresh)
        obj = jit.pack_objects([jit.emit_object(m) for m in jit.optimize_parts(text)])
        if cache:
            jit.cache_write(self.key, obj, meta)
        return obj, meta

    def _meta(self) -> dict:
        msgs = {}
        for op in self.loop_module.functions():
            msgs[op.attrs["sym_name"]] = [o.attrs.get("message", "assertion failed")
                                          for o in op.walk() if o.name == "loop.assert"]
        return {"messages": msgs}

    def _generate(self):
        """(the unoptimised LLVM IR text, {entry name: FunctionInfo})."""
        from .codegen import generate

        jit.init()
        tm = jit.target_machine()
        m, infos = generate(self.loop_module, jit.llvm.get_process_triple(), str(tm.target_data))
        return str(m), infos

    def llvm_ir(self) -> str:
        """The unoptimised LLVM IR text of the module (checked: the code generator's
        assertion messages are the loop IR's, in order)."""
        text, infos = self._generate()
        meta = self._meta()["messages"]
        for name, info in infos.items():
            assert info.messages == meta[name], (info.messages, meta[name])
        return text

    def _llvm(self) -> list:
        """The optimised LLVM modules (jit.optimize_parts: entries and loop nests)."""
        if self._llvm_mod is None:
            self._llvm_mod = jit.optimize_parts(self.llvm_ir())
        return self._llvm_mod

    def dump(self, stage: str = "loops", fn: str | None = None, locs: bool = False) -> str:
        """Text of a stage: "loops" (loop IR; with `locs`, each op's source
        location), "llvm" (optimised LLVM IR), "llvm-raw" (LLVM IR before
        optimisation) or "asm"; with `fn`, only that entry function (and, for
        LLVM stages, its kernels and helpers' definitions it calls)."""
        self.check_function(fn, self.functions)
        if stage == "loops":
            return self.loop_text if fn is None and not locs else self.dump_loops(fn, locs)
        if stage in ("llvm", "llvm-raw"):
            text = "\n".join(map(str, self._llvm())) if stage == "llvm" else self.llvm_ir()
            return text if fn is None else _only_functions(text, fn)
        if stage == "asm":
            return "\n".join(jit.emit_assembly(m) for m in self._llvm())
        raise ValueError(f"unknown stage '{stage}' (loops, llvm, llvm-raw, asm)")

    # -- threads ----------------------------------------------------------------------------------
    def set_threads(self, n: int) -> None:
        """Threads for parallel loop nests and large matrix products (1 switches
        threading off). OpenBLAS itself always runs on one thread."""
        n = max(1, int(n))
        self.threads = n
        self.ctx[0] = n

    # -- state ------------------------------------------------------------------------------------
    def read(self, name: str) -> np.ndarray:
        return self.state[name].copy()

    def write(self, name: str, arr: np.ndarray) -> None:
        # into the array the compiled code points at
        with self.lock:
            np.copyto(self.state[name], arr, casting="unsafe")

    def run(self, f, args: list, env: dict | None) -> list:
        return f.call(args, env)

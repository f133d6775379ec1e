"""The Python API for `.tg` models: irc.load / irc.loads -> CompiledModule.

A CompiledModule holds its source, the backend that runs it and the values
of the shared variables; the IR stages (front end, optimised, loops) are
rebuilt from the source when an inspection asks for them, except the
optimised IR of the interp and opencl backends, which run it. (A cpu load
lowers the optimised module in place and keeps no IR: a long function's IR
is hundreds of thousands of Python objects.) Entry functions are attributes
(`m.train(x, y, lr=0.1)`); shared variables are items (`m["W"]`).

The call boundary checks everything before compiled code runs: argument
count and names, dtypes (a same-kind cast is allowed: float64 data into an
f32 argument, int64 labels into i32), ranks, static sizes and the agreement
of named dims across arguments. A mistake raises CallError naming the
argument and the dim.
"""

from __future__ import annotations

import contextlib
import gc
import os
import tempfile
from dataclasses import dataclass
from typing import Optional

import numpy as np

from irc.ir.core import Module
from irc.ir.errors import CallError, CompileError
from irc.ir.types import TensorType
from irc.runtime.binding import (
    CallSpec,
    bind_names,
    convert,
    make_binder,
    spec_of_tg_function,
    spec_to_json,
)

BACKENDS = ("interp", "cpu", "opencl")
# The backend of irc.load / loads / function and the CLI when none is named.
# tests/conftest.py sets "interp" so the generic tests check the reference.
DEFAULT_BACKEND = "cpu"


def load(
    path,
    backend: Optional[str] = None,
    define: Optional[dict] = None,
    seed: Optional[int] = None,
    device: Optional[str] = None,
    nan_guard: bool = False,
    threads: Optional[int] = None,
):
    """Compile the `.tg` file at `path` for a backend ("cpu" by default,
    "interp" or "opencl"); returns a CompiledModule. `path` is always a path
    (source text goes to irc.loads): a file named `{x}.tg` or `fn 1.tg` is a file.
    `threads`: the cpu backend's thread count for this module (default:
    irc.set_num_threads / IRC_NUM_THREADS / the usable cores)."""
    from irc.ir.errors import read_source

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"irc.load takes a path, got {type(path).__name__}; use irc.loads for text")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    try:
        text = read_source(path)
    except OSError as e:
        raise CompileError(f"cannot read {path}: {e.strerror or e}") from None
    return _build(
        text, path, os.path.dirname(os.path.abspath(path)), backend, define, seed, device, threads,
        nan_guard,
    )


def loads(
    text: str,
    backend: Optional[str] = None,
    define: Optional[dict] = None,
    seed: Optional[int] = None,
    filename: str = "<string>",
    device: Optional[str] = None,
    threads: Optional[int] = None,
    nan_guard: bool = False,
):
    """Compile `.tg` source text (str, or UTF-8 bytes); `load(...)` paths in it
    resolve from the working directory."""
    if isinstance(text, (bytes, bytearray)):
        from irc.ir.errors import decode_source

        text = decode_source(bytes(text), filename)
    if not isinstance(text, str):
        raise TypeError(f"irc.loads takes source text, got {type(text).__name__}")
    return _build(text, filename, os.getcwd(), backend, define, seed, device, threads, nan_guard)


def compile_to_ir(text: str, filename: str, define=None) -> Module:
    """Front end only: the tg IR module (stage `tg`), verified."""
    from irc.frontend import compile_source
    from irc.ir.verifier import verify
    from irc.ops.registry import verify_op

    m = compile_source(text, filename, _check_defines(define))
    verify(m, op_check=verify_op)
    return m


def _check_defines(define):
    if not define:
        return {}
    out = {}
    for k, v in define.items():
        if isinstance(v, str):
            v = parse_define_value(v)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise CompileError(f"define {k}: the value must be a number, got {v!r}")
        out[k] = v
    return out


def parse_define_value(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise CompileError(f"-D: '{text}' is not a number") from None


def _build(text, filename, base_dir, backend, define, seed, device, threads=None, nan_guard=False):
    backend = backend or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    bad_threads = isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    if threads is not None and bad_threads:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    defines = _check_defines(define)
    key = None
    # A guarded module is a different program (every intermediate value checked): never
    # served from, nor written to, the whole-module cache.
    if backend == "cpu" and not nan_guard and os.environ.get("IRC_NO_CACHE") != "1":
        from irc import cache

        key = cache.module_key(text, filename, defines, backend)
        m = _from_cache(key, text, filename, define, base_dir, seed)
        if m is not None:
            _pin_threads(m._backend, threads)
            return m
    from irc.pipeline import run_pipeline
    from irc.runtime.state import initial_values

    with _gc_paused():
        tg = compile_to_ir(text, filename, defines)
        if nan_guard:
            opt = run_pipeline(tg.clone())  # the guard instruments the front end's IR
        else:
            # The pipeline rewrites the front end's IR in place: no copy of a long
            # function's IR is kept for dumps that are rarely asked for. The module
            # rebuilds it from the source when asked (CompiledModule._tg), as after
            # a cache hit.
            opt, tg = run_pipeline(tg), None
        module_seed = opt.attrs.get("seed", 0) if seed is None else seed
        state = initial_values(opt, base_dir, module_seed)
        funcs, globs = _interface(opt)
        m = CompiledModule.__new__(CompiledModule)
        globals_ir = _globals_module(opt) if key is not None else None
        own_seed = opt.attrs.get("seed", 0)
        if nan_guard:  # nothing of this is imported or compiled when the guard is off
            from irc.nanguard import guarded_backend

            be = guarded_backend(tg, backend, state, device, _make_backend)
        else:
            be = _make_backend(backend, opt, state, device, owned=True, source_key=key)
            if getattr(be, "owned", False):
                # the cpu backend lowered `opt` in place (no copy of a long
                # function's IR) and keeps none: the module rebuilds its IR from
                # the source when an inspection needs it, as after a cache hit
                opt = None
                be.release_ir(lambda: m._lower())
    _pin_threads(be, threads)
    m._setup(text, filename, define, tg, opt, be, backend, funcs, globs)
    if key is not None and hasattr(be, "cache_entry"):  # (a stand-in backend has none)
        _to_cache(key, m, module_seed, state, globals_ir, own_seed)
    return m


def _interface(opt: Module):
    """([(CallSpec, result types)] of the public functions, [(name, type)] of the
    shared variables) of an optimised module: what a CompiledModule exposes."""
    funcs = [
        (spec_of_tg_function(op), op.attrs.get("res_types", ()))
        for op in opt.functions()
        if op.attrs.get("visibility") == "public"
    ]
    globs = [(op.attrs["sym_name"], op.attrs["type"])
             for op in opt.body.ops if op.name == "tg.global"]
    return funcs, globs


def _globals_module(opt: Module) -> Module:
    """A module of copies of `opt`'s tg.global ops: what the whole-module cache
    keeps of the IR."""
    globs = Module()
    for op in opt.body.ops:
        if op.name == "tg.global":
            globs.body.append(op.clone())
    return globs


@contextlib.contextmanager
def _gc_paused():
    """Python's cycle collector off while a module compiles: the compiler
    allocates IR objects by the hundred thousand for a long function, and each
    full collection walks all of them again (a third of the compile time of a
    20,000-statement function). IR objects hold reference cycles (an op and its
    results), so whatever a compile drops is collected after it, as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _pin_threads(be, threads) -> None:
    if threads is not None and hasattr(be, "set_threads"):
        from irc.runtime.llvm.threads import pin

        pin(be, threads)  # this module keeps its own count, whatever set_num_threads says


def _to_cache(
    key, m: "CompiledModule", module_seed: int, state: dict, globs: Module, seed
) -> None:
    """Write m's whole-module cache entry; `globs`: _globals_module of its IR,
    `seed`: the module's own seed attribute."""
    from irc import cache
    from irc.ir.printer import print_module

    # the initial values first: an entry without them only costs drawing them again
    inits = [(op.attrs["sym_name"], op.attrs["init"]) for op in globs.body.ops]
    cache.write_values(key, module_seed, inits, state)
    cache.write(
        key,
        {
            "seed": seed,
            "globals_ir": print_module(globs),
            "functions": [
                {"spec": spec_to_json(f.spec), "results": [str(t) for t in f.signature.results]}
                for f in m._functions.values()
            ],
            "backend": m._backend.cache_entry(),
        },
    )


def _from_cache(key, text, filename, define, base_dir, seed):
    """The CompiledModule of a whole-module cache hit (irc/cache.py), or None."""
    from irc import cache
    from irc.runtime.llvm.jit import CacheMiss

    entry = cache.read(key)
    if entry is None:
        return None
    try:
        from irc.ir.parser import parse_module, parse_type
        from irc.runtime.binding import spec_from_json
        from irc.runtime.llvm.backend import LLVMBackend

        globs = parse_module(entry["globals_ir"], "<cache>")
        funcs = [
            (spec_from_json(f["spec"]), [parse_type(t) for t in f["results"]])
            for f in entry["functions"]
        ]
        module_seed = entry["seed"] if seed is None else seed
        if not isinstance(module_seed, int):
            return None
    except (KeyError, TypeError, ValueError, AttributeError, CompileError):
        return None
    # the values kept with the entry (irc/cache.py), else drawn or read as on a cold
    # load; state errors (a load(...) file gone) are the user's: raised as then
    state = cache.read_values(
        key, module_seed,
        [(op.attrs["sym_name"], op.attrs["type"]) for op in globs.body.ops
         if op.name == "tg.global"],
    )
    if state is None:
        from irc.runtime.state import initial_values

        state = initial_values(globs, base_dir, module_seed)
    m = CompiledModule.__new__(CompiledModule)
    try:
        be = LLVMBackend.from_cache(entry["backend"], state, lambda: m._lower())
    except (CacheMiss, KeyError, TypeError, ValueError):
        return None
    m._setup(text, filename, define, None, None, be, "cpu", funcs,
             [(op.attrs["sym_name"], op.attrs["type"]) for op in globs.body.ops
              if op.name == "tg.global"])
    return m


def _make_backend(name, module, state, device, owned=False, source_key=None):
    """The backend `name` of an optimised module; `owned`: the caller gives the
    module and the state up, and the cpu backend lowers the module in place and
    keeps the state's arrays; `source_key`: the module's irc.cache.module_key,
    which keys the cpu backend's object code (LLVMBackend)."""
    if name == "interp":
        from irc.runtime.interp import InterpBackend

        return InterpBackend(module, state)
    if name == "cpu":
        from irc.runtime.llvm.backend import LLVMBackend

        return LLVMBackend(module, state, owned=owned, source_key=source_key)
    if name == "opencl":
        from irc.runtime.opencl.backend import OpenCLBackend

        # device=None: IRC_OPENCL_DEVICE, then the first device (runtime/opencl/device.py)
        return OpenCLBackend(module, state, device=device)
    raise ValueError(f"unknown backend '{name}' (choose from {', '.join(BACKENDS)})")


@dataclass
class ArgInfo:
    name: str
    type: TensorType
    default: object = None
    has_default: bool = False

    def __str__(self):
        s = f"{self.name}: {self.type}"
        return s + (f" = {self.default}" if self.has_default else "")


@dataclass
class Signature:
    name: str
    args: list
    results: list

    def __str__(self):
        res = ", ".join(map(str, self.results))
        if len(self.results) != 1:
            res = f"({res})"
        return f"fn {self.name}({', '.join(map(str, self.args))}) -> {res}"


class EntryFunction:
    """A compiled entry function: call it with NumPy arrays, lists or numbers.

    The checks are runtime/binding.py's, generated for this signature; on the
    cpu backend the whole call (checks, marshalling, the native call) is one
    generated method (LLVMBackend.entry), installed as this object's __call__."""

    def __init__(self, module, spec, results=None):
        """module: a CompiledModule (or anything with `_backend`); spec: a CallSpec
        with the result types, or the tg function op itself."""
        if not isinstance(spec, CallSpec):
            results = spec.attrs.get("res_types", ())
            spec = spec_of_tg_function(spec)
        self._module = module
        self.name = spec.name
        self.spec = spec
        self.signature = Signature(
            self.name,
            [
                ArgInfo(n, t, d, d is not None)
                for n, t, d in zip(spec.in_names, spec.in_types, spec.defaults)
            ],
            list(results),
        )
        self.__doc__ = str(self.signature)
        self._binder = make_binder(spec)
        backend = module._backend
        fast = backend.entry(self.name, spec) if hasattr(backend, "entry") else None
        if fast is not None:
            # a class of its own: Python looks __call__ up on the type
            self.__class__ = type("EntryFunction", (EntryFunction,), {"__call__": fast})

    def __repr__(self):
        return f"<irc function {self.signature}>"

    def bind(self, args, kwargs) -> tuple:
        """Check and convert arguments: (list of arrays, dims env)."""
        if kwargs or len(args) != len(self.spec.in_names):
            args = bind_names(self.spec, args, kwargs)
        arrays, key = self._binder(args)
        env = dict(zip(self.spec.dims, key))
        for a, t in zip(arrays, self.spec.in_types):
            for d, n in zip(t.shape, a.shape):
                if isinstance(d, str) and d not in env:
                    env[d] = n  # a dim expression ("T*B"): its value, checked by the binder
        return arrays, env

    def __call__(self, *args, **kwargs):
        arrays, env = self.bind(args, kwargs)
        results = self._module._backend.call(self.name, arrays, env)
        out = tuple(r[()] if r.ndim == 0 else r for r in results)
        if len(out) == 1:
            return out[0]
        return out if out else None


def check_arg(fn_name, name, t: TensorType, value, env: dict, where: dict) -> np.ndarray:
    """Convert one argument to a contiguous array of type t, binding named dims
    (the rules of runtime/binding.py, for callers that check one value at a time)."""
    arr = convert(CallSpec(fn_name, [name], [t], []), 0, value)
    if arr.ndim != t.rank:
        raise CallError(
            f"{fn_name}(): argument '{name}' must have rank {t.rank} ({t}), got shape {list(arr.shape)}"
        )
    for axis, (d, n) in enumerate(zip(t.shape, arr.shape)):
        if isinstance(d, int):
            if d != n:
                raise CallError(
                    f"{fn_name}(): argument '{name}' must be {t}, got shape {list(arr.shape)} "
                    f"(axis {axis} is {n}, expected {d})"
                )
        elif d in env:
            if env[d] != n:
                raise CallError(
                    f"{fn_name}(): argument '{name}': dimension {d} is {env[d]} "
                    f"(from argument '{where[d]}') but {n} here (shape {list(arr.shape)})"
                )
        else:
            env[d] = n
            where[d] = name
    return arr


def _remove_stale_temporaries(directory: str, prefix: str) -> None:
    """Remove `prefix<pid>-*.npz` files of save() calls whose process is gone
    (killed mid-save); those of live processes may be saves in progress."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".npz")):
            continue
        pid = name[len(prefix) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # alive (or another user's): leave it
        except ProcessLookupError:
            pass
        except OSError:
            continue
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass


class CompiledModule:
    """A `.tg` module compiled for a backend. See the module docstring."""

    def __init__(
        self, text, filename, define, tg_ir: Module, opt_ir: Module, backend, backend_name: str
    ):
        funcs, globs = _interface(opt_ir)
        self._setup(text, filename, define, tg_ir, opt_ir, backend, backend_name, funcs, globs)

    def _setup(self, text, filename, define, tg_ir, opt_ir, backend, backend_name, funcs, globs):
        self._text, self._filename, self._define = text, filename, define
        self._tg_ir = tg_ir
        self._opt_ir = opt_ir
        self._backend = backend
        self.backend = backend_name
        self._functions = {}
        for spec, results in funcs:
            self._functions[spec.name] = ef = EntryFunction(self, spec, results)
            # an instance attribute (no __getattr__ on each access) unless it would
            # hide a method of the class
            if not hasattr(type(self), spec.name) and not spec.name.startswith("_"):
                self.__dict__[spec.name] = ef
        self._globals = dict(globs)

    # the IR: kept from the compile, or rebuilt from the source after a cache hit
    @property
    def _tg(self) -> Module:
        if self._tg_ir is None:
            self._tg_ir = compile_to_ir(self._text, self._filename, self._define)
        return self._tg_ir

    @property
    def _opt(self) -> Module:
        if self._opt_ir is None:
            from irc.pipeline import run_pipeline

            self._opt_ir = run_pipeline(self._tg.clone())
        return self._opt_ir

    def _lower(self) -> Module:
        from irc.runtime.base import loop_ir

        return loop_ir(self._opt)

    def __reduce__(self):
        """Pickled as its source, defines, backend and shared values (irc/pickling.py)."""
        from irc.pickling import reduce_module

        return reduce_module(self)

    # entry functions --------------------------------------------------------------
    def __getattr__(self, name):
        fns = self.__dict__.get("_functions", {})
        if name in fns:
            return fns[name]
        raise AttributeError(
            f"module has no entry function '{name}' (functions: {', '.join(fns) or 'none'})"
        )

    @property
    def functions(self) -> dict:
        return dict(self._functions)

    def signature(self, fn: str) -> Signature:
        return self._function(fn).signature

    def _function(self, fn: str) -> EntryFunction:
        if fn not in self._functions:
            raise KeyError(
                f"no entry function '{fn}' (functions: {', '.join(self._functions) or 'none'})"
            )
        return self._functions[fn]

    # shared variables -------------------------------------------------------------
    @property
    def shared(self) -> dict:
        """{name: TensorType} of the shared variables, in declaration order."""
        return dict(self._globals)

    def __getitem__(self, name) -> np.ndarray:
        self._global(name)
        return self._backend.get(name)

    def __setitem__(self, name, value):
        self._backend.set(name, self._checked_value(name, value))

    def __contains__(self, name):
        return name in self._globals

    def _global(self, name) -> TensorType:
        if name not in self._globals:
            raise KeyError(
                f"no shared variable '{name}' (shared: {', '.join(self._globals) or 'none'})"
            )
        return self._globals[name]

    def save(self, path) -> None:
        """Write every shared variable to an .npz file atomically: a temporary
        file next to it, renamed over it when complete. Temporary files that a
        killed save left behind (their process is gone) are removed."""
        path = os.fspath(path)
        d = os.path.dirname(os.path.abspath(path))
        prefix = f".{os.path.basename(path)}.irc-tmp-"
        _remove_stale_temporaries(d, prefix)
        fd, tmp = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=".npz", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{n: self._backend.get(n) for n in self._globals})
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def restore(self, path) -> None:
        """Load shared variables from an .npz file written by save(). Every
        value is read and checked before any is assigned: a bad checkpoint
        (missing, truncated, not an .npz, a wrong shape or dtype) raises
        CallError and leaves the module as it was. A missing file is
        FileNotFoundError."""
        path = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                if not isinstance(data, np.lib.npyio.NpzFile):
                    raise CallError(f"{path} is not an .npz checkpoint (a single array)")
                missing = [n for n in self._globals if n not in data.files]
                if missing:
                    raise CallError(
                        f"{path} has no value for shared variable(s) {', '.join(missing)}"
                    )
                values = {n: data[n] for n in self._globals}
        except (CallError, FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except Exception as e:  # EOFError (empty), BadZipFile/zlib.error (truncated), ...
            raise CallError(
                f"{path} is not a readable checkpoint ({type(e).__name__}: {e})"
            ) from None
        checked = {}
        for n, v in values.items():
            checked[n] = self._checked_value(n, v, f"{path}: ")
        for n, v in checked.items():
            self._backend.set(n, v)

    def _checked_value(self, name, value, where=""):
        from irc.runtime.base import checked_value

        return checked_value(name, self._global(name), value, where)

    # inspection -------------------------------------------------------------------
    def ir(self, fn: Optional[str] = None, after: Optional[str] = None, stage: str = "opt") -> str:
        """IR text: stage "tg" (front end) or "opt" (after the pipeline), or the
        module right after the pipeline pass `after`; only function `fn` if given."""
        from irc.ir.printer import print_module, print_op
        from irc.pipeline import module_at

        m = module_at(self._tg, self._opt, after, stage)
        if fn is None:
            return print_module(m)
        op = m.lookup(fn)
        if op is None:
            raise KeyError(f"no function '{fn}'")
        return print_op(op)

    def __repr__(self):
        return f"<irc module {self._filename} ({self.backend}): {', '.join(self._functions)}>"

    def __dir__(self):
        return list(super().__dir__()) + list(self._functions)

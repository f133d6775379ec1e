"""The Python API for `.tg` models: irc.load / irc.loads -> CompiledModule.

A CompiledModule holds the optimised IR, the backend that runs it and the
values of the shared variables. Entry functions are attributes
(`m.train(x, y, lr=0.1)`); shared variables are items (`m["W"]`).

The call boundary checks everything before compiled code runs: argument
count and names, dtypes (a same-kind cast is allowed: float64 data into an
f32 argument, int64 labels into i32), ranks, static sizes and the agreement
of named dims across arguments. A mistake raises CallError naming the
argument and the dim.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Optional

import numpy as np

from irc.ir.core import Module
from irc.ir.errors import CallError, CompileError
from irc.ir.types import TensorType

BACKENDS = ("interp", "cpu", "opencl")
# The backend of irc.load / loads / function and the CLI when none is named.
# tests/conftest.py sets "interp" so the generic tests check the reference.
DEFAULT_BACKEND = "cpu"


def _is_source(s: str) -> bool:
    return (
        "\n" in s or "{" in s or s.lstrip().startswith(("shared", "fn ", "def ", "const ", "seed "))
    )


def load(
    path_or_source,
    backend: Optional[str] = None,
    define: Optional[dict] = None,
    seed: Optional[int] = None,
    device: Optional[str] = None,
    threads: Optional[int] = None,
):
    """Compile a `.tg` file (or source text) for a backend ("cpu" by default,
    "interp" or "opencl"); returns a CompiledModule. `threads`: the cpu backend's
    thread count for this module (default: irc.set_num_threads / IRC_NUM_THREADS /
    the usable cores)."""
    if isinstance(path_or_source, os.PathLike) or not _is_source(str(path_or_source)):
        path = os.fspath(path_or_source)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise CompileError(f"cannot read {path}: {e.strerror or e}") from None
        return _build(
            text, path, os.path.dirname(os.path.abspath(path)), backend, define, seed, device,
            threads,
        )
    return loads(
        path_or_source, backend=backend, define=define, seed=seed, device=device, threads=threads
    )


def loads(
    text: str,
    backend: Optional[str] = None,
    define: Optional[dict] = None,
    seed: Optional[int] = None,
    filename: str = "<string>",
    device: Optional[str] = None,
    threads: Optional[int] = None,
):
    """Compile `.tg` source text; `load(...)` paths resolve from the working directory."""
    return _build(text, filename, os.getcwd(), backend, define, seed, device, threads)


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


def _build(text, filename, base_dir, backend, define, seed, device, threads=None):
    backend = backend or DEFAULT_BACKEND
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    bad_threads = isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    if threads is not None and bad_threads:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    from irc.pipeline import run_pipeline
    from irc.runtime.state import initial_values

    tg = compile_to_ir(text, filename, define)
    opt = run_pipeline(tg.clone())
    module_seed = opt.attrs.get("seed", 0) if seed is None else seed
    state = initial_values(opt, base_dir, module_seed)
    be = _make_backend(backend, opt, state, device)
    if threads is not None and hasattr(be, "set_threads"):
        from irc.runtime.llvm.threads import pin

        pin(be, threads)  # this module keeps its own count, whatever set_num_threads says
    return CompiledModule(text, filename, define, tg, opt, be, backend)


def _make_backend(name, module, state, device):
    if name == "interp":
        from irc.runtime.interp import InterpBackend

        return InterpBackend(module, state)
    if name == "cpu":
        from irc.runtime.llvm.backend import LLVMBackend

        return LLVMBackend(module, state)
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
    """A compiled entry function: call it with NumPy arrays, lists or numbers."""

    def __init__(self, module: "CompiledModule", func_op):
        self._module = module
        self.name = func_op.attrs["sym_name"]
        block = func_op.regions[0].block
        defaults = func_op.attrs.get("arg_defaults", (None,) * len(block.args))
        self.signature = Signature(
            self.name,
            [ArgInfo(a.name_hint, a.type, d, d is not None) for a, d in zip(block.args, defaults)],
            list(func_op.attrs.get("res_types", ())),
        )
        self.__doc__ = str(self.signature)

    def __repr__(self):
        return f"<irc function {self.signature}>"

    def bind(self, args, kwargs) -> tuple:
        """Check and convert arguments: (list of arrays, dims env)."""
        params = self.signature.args
        if len(args) > len(params):
            raise CallError(f"{self.name}() takes {len(params)} argument(s), got {len(args)}")
        values = {}
        for p, a in zip(params, args):
            values[p.name] = a
        for k, a in kwargs.items():
            if not any(p.name == k for p in params):
                raise CallError(
                    f"{self.name}() has no argument '{k}' (arguments: "
                    f"{', '.join(p.name for p in params)})"
                )
            if k in values:
                raise CallError(f"{self.name}(): argument '{k}' given twice")
            values[k] = a
        env: dict = {}
        where: dict = {}
        arrays = []
        for p in params:
            if p.name not in values:
                if not p.has_default:
                    raise CallError(f"{self.name}() is missing argument '{p.name}' ({p.type})")
                values[p.name] = p.default
            arrays.append(check_arg(self.name, p.name, p.type, values[p.name], env, where))
        return arrays, env

    def __call__(self, *args, **kwargs):
        arrays, env = self.bind(args, kwargs)
        results = self._module._backend.call(self.name, arrays, env)
        out = tuple(r[()] if r.ndim == 0 else r for r in results)
        if len(out) == 1:
            return out[0]
        return out if out else None


def check_arg(fn_name, name, t: TensorType, value, env: dict, where: dict) -> np.ndarray:
    """Convert one argument to a contiguous array of type t, binding named dims."""
    want = t.dtype.np
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except Exception:
            raise CallError(
                f"{fn_name}(): argument '{name}' cannot be converted to an array"
            ) from None
        if arr.dtype == object:
            raise CallError(f"{fn_name}(): argument '{name}' is not numeric")
        if (
            arr.dtype.kind == "f"
            and t.dtype.is_float
            or arr.dtype.kind in "iu"
            and t.dtype.kind in "if"
        ):
            arr = arr.astype(want)  # Python numbers and lists take the argument's dtype
    if arr.dtype != want:
        if arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, want, "same_kind"):
            raise CallError(
                f"{fn_name}(): argument '{name}' must be {t.dtype} ({t}), got an array of {arr.dtype}"
            )
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
    # np.asarray, not ascontiguousarray: the latter turns a 0-d array into 1-d.
    return np.asarray(arr, dtype=want, order="C")


class CompiledModule:
    """A `.tg` module compiled for a backend. See the module docstring."""

    def __init__(
        self, text, filename, define, tg_ir: Module, opt_ir: Module, backend, backend_name: str
    ):
        self._text, self._filename, self._define = text, filename, define
        self._tg = tg_ir
        self._opt = opt_ir
        self._backend = backend
        self.backend = backend_name
        self._functions = {
            op.attrs["sym_name"]: EntryFunction(self, op)
            for op in opt_ir.functions()
            if op.attrs.get("visibility") == "public"
        }
        self._globals = {
            op.attrs["sym_name"]: op.attrs["type"]
            for op in opt_ir.body.ops
            if op.name == "tg.global"
        }

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
        t = self._global(name)
        arr = np.asarray(value)
        if tuple(arr.shape) != tuple(t.shape):
            raise CallError(f"shared variable '{name}' is {t}; got shape {list(arr.shape)}")
        if arr.dtype != t.dtype.np and not np.can_cast(arr.dtype, t.dtype.np, "same_kind"):
            raise CallError(f"shared variable '{name}' is {t}; got dtype {arr.dtype}")
        self._backend.set(name, np.array(arr, dtype=t.dtype.np, order="C"))

    def __contains__(self, name):
        return name in self._globals

    def _global(self, name) -> TensorType:
        if name not in self._globals:
            raise KeyError(
                f"no shared variable '{name}' (shared: {', '.join(self._globals) or 'none'})"
            )
        return self._globals[name]

    def save(self, path) -> None:
        """Write every shared variable to an .npz file atomically."""
        path = os.fspath(path)
        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".irc-", suffix=".npz", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{n: self._backend.get(n) for n in self._globals})
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def restore(self, path) -> None:
        """Load shared variables from an .npz file written by save()."""
        with np.load(os.fspath(path), allow_pickle=False) as data:
            missing = [n for n in self._globals if n not in data.files]
            if missing:
                raise CallError(f"{path} has no value for shared variable(s) {', '.join(missing)}")
            values = {n: data[n] for n in self._globals}
        for n, v in values.items():
            self[n] = v

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

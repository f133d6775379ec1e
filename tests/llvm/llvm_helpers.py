"""Shared helpers of the cpu-backend tests: build one-op modules, load `.tg`
source on the cpu backend, compare with the interpreter, and load other test
files of the suite by path (to rerun interpreter tests on the cpu backend).

The cpu backend is reached directly (runtime.llvm.backend.LLVMBackend) and by
patching irc.api._make_backend, until irc.api itself knows "cpu".
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np

import irc.ops  # noqa: F401
from irc.ir.core import Block, Module, Op, Region
from irc.ir.types import TensorType
from irc.ops.registry import REGISTRY, OpBuilder
from irc.runtime.interp import InterpBackend

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)


def run_python(code: str, env: dict | None = None) -> str:
    """The standard output of `code` run by a fresh interpreter in the repository
    root, with `env` added to this process's environment; fails the test on a
    non-zero exit, showing the end of its standard error."""
    r = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env=dict(os.environ, **(env or {})),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def load_test_module(relpath: str, name: str):
    """Import a test file of the suite by path under a private name."""
    path = os.path.join(TESTS, relpath)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    import sys

    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def one_op_module(name: str, arg_types: list, attrs: dict) -> Module:
    """module { func @f(args) -> results { %r = name(args) {attrs}; return %r } }"""
    m = Module()
    full = dict(REGISTRY[name].defaults)
    full.update(attrs)
    block = Block(arg_types, [f"a{i}" for i in range(len(arg_types))])
    b = OpBuilder(block)
    op = b.op_full(name, list(block.args), full)
    b.create("func.return", list(op.results), [])
    f = Op("func.func", [], [], {"sym_name": "f", "visibility": "public",
                                 "res_types": tuple(r.type for r in op.results)}, [Region([block])])
    m.body.append(f)
    return m


def cpu_backend(module: Module, state=None, **kw):
    from irc.runtime.llvm.backend import LLVMBackend

    return LLVMBackend(module, state or {}, **kw)


def run_both(module: Module, args: list, env: dict, state=None, **kw):
    interp = InterpBackend(module.clone(), dict(state or {}))
    want = interp.call("f", [np.asarray(a) for a in args], env)
    cpu = cpu_backend(module, state, **kw)
    got = cpu.call("f", [np.asarray(a) for a in args], env)
    return want, got


def tol(dtype):
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return dict(rtol=2e-5, atol=2e-6)
    if dtype == np.float64:
        return dict(rtol=1e-11, atol=1e-12)
    return dict(rtol=0, atol=0)


def assert_close(got, want, dtype=None, **kw):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    t = tol(dtype or want.dtype)
    t.update(kw)
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, equal_nan=True, **t)
    else:
        np.testing.assert_array_equal(got, want)


def patch_api_cpu(monkeypatch, also_interp: bool = True):
    """Make irc.api build cpu backends (for "cpu", and for "interp" if asked)."""
    import irc.api as api

    orig = api._make_backend

    def make(name, module, state, device, **kw):
        if name == "cpu" or (also_interp and name == "interp"):
            from irc.runtime.llvm.backend import LLVMBackend

            return LLVMBackend(module, state, **kw)  # (owned, as irc.api's own)
        return orig(name, module, state, device, **kw)

    monkeypatch.setattr(api, "_make_backend", make)


def loads_cpu(text: str, **kw):
    import irc.api as api
    from irc.runtime.llvm.backend import LLVMBackend

    orig = api._make_backend
    try:
        api._make_backend = lambda name, module, state, device, **k: LLVMBackend(module, state, **k)
        return api.loads(text, **kw)
    finally:
        api._make_backend = orig

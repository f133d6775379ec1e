"""Shared helpers of the OpenCL-backend tests: whether an OpenCL platform is
present, building OpenCL backends directly or through irc.api (patched until
irc.api itself knows "opencl"), and comparing with the interpreter.

The device is the one IRC_OPENCL_DEVICE names, else the first (PoCL in CI).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
from irc.runtime.interp import InterpBackend

import irc.ops  # noqa: F401
from irc.ir.core import Block, Module, Op, Region
from irc.ops.registry import REGISTRY, OpBuilder

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def opencl_available() -> str | None:
    """None when a device can be opened, else the reason."""
    try:
        from irc.runtime.opencl.device import open_device

        open_device()
    except Exception as e:  # noqa: BLE001  (no pyopencl, no platform, no matching device)
        return f"no OpenCL device: {e}"
    return None


def load_test_module(relpath: str, name: str):
    """Import a test file of the suite by path under a private name."""
    path = os.path.join(TESTS, relpath)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def one_op_module(name: str, arg_types: list, attrs: dict, fn: str = "f") -> Module:
    """module { func @fn(args) -> results { %r = name(args) {attrs}; return %r } }"""
    m = Module()
    m.body.append(one_op_func(name, arg_types, attrs, fn))
    return m


def one_op_func(name: str, arg_types: list, attrs: dict, fn: str) -> Op:
    full = dict(REGISTRY[name].defaults)
    full.update(attrs)
    block = Block(arg_types, [f"a{i}" for i in range(len(arg_types))])
    b = OpBuilder(block)
    op = b.op_full(name, list(block.args), full)
    b.create("func.return", list(op.results), [])
    return Op(
        "func.func",
        [],
        [],
        {"sym_name": fn, "visibility": "public", "res_types": tuple(r.type for r in op.results)},
        [Region([block])],
    )


def opencl_backend(module: Module, state=None, **kw):
    from irc.runtime.opencl.backend import OpenCLBackend

    return OpenCLBackend(module, state or {}, **kw)


def run_both(module: Module, args: list, env: dict, state=None, fn="f"):
    interp = InterpBackend(module.clone(), dict(state or {}))
    want = interp.call(fn, [np.asarray(a) for a in args], env)
    be = opencl_backend(module, state)
    got = be.call(fn, [np.asarray(a) for a in args], env)
    return want, got


def tol(dtype):
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return {"rtol": 2e-5, "atol": 2e-6}
    if dtype == np.float64:
        return {"rtol": 1e-11, "atol": 1e-12}
    return {"rtol": 0, "atol": 0}


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


def make_backend(name, module, state, device, **_kw):
    """irc.api._make_backend for the tests: opencl for "opencl" (and "interp"
    when the interpreter's own tests are re-run here)."""
    from irc.runtime.opencl.backend import OpenCLBackend

    return OpenCLBackend(module, state, device)


def patch_api_opencl(monkeypatch, also_interp: bool = True):
    """Make irc.api build opencl backends (for "opencl", and for "interp" if asked)."""
    from irc import api

    orig = api._make_backend

    def make(name, module, state, device, **kw):
        if name == "opencl" or (also_interp and name == "interp"):
            return make_backend(name, module, state, device)
        return orig(name, module, state, device, **kw)

    monkeypatch.setattr(api, "_make_backend", make)


def loads_opencl(text: str, **kw):
    from irc import api

    orig = api._make_backend
    try:
        api._make_backend = make_backend
        return api.loads(text, **kw)
    finally:
        api._make_backend = orig

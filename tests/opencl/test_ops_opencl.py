"""Differential test of every registered tg op on the OpenCL backend: each case
of tests/ops/test_op_shapes.py (non-square shapes, named dims, mixed dtypes)
runs as a one-op function and must agree with the interpreter within float32
tolerance. All cases are compiled as the functions of one module (one program
build, as the kernels of a model are)."""

from __future__ import annotations

import numpy as np
import pytest
from irc.runtime.interp import InterpBackend
from opencl_helpers import assert_close, load_test_module, one_op_func, opencl_backend

from irc.ir.core import Module
from irc.ir.types import DTYPES, TensorType
from irc.ops.registry import REGISTRY

shapes = load_test_module("ops/test_op_shapes.py", "_irc_op_shapes_cases_ocl")
CASES = shapes.CASES


def _ids():
    out = []
    for name, cases in CASES.items():
        if name in REGISTRY:
            out += [(name, i) for i in range(len(cases))]
    return out


IDS = _ids()


def _fn(name, i):
    return f"f_{name.split('.', 1)[1]}_{i}"


@pytest.fixture(scope="module")
def all_ops():
    """One module with a function per case, on the interpreter and on OpenCL."""
    m = Module()
    for name, i in IDS:
        case = CASES[name][i]
        types = [TensorType(DTYPES[s.dtype], s.shape) for s in case.operands]
        m.body.append(one_op_func(name, types, case.attrs, _fn(name, i)))
    return InterpBackend(m.clone(), {}), opencl_backend(m)


@pytest.mark.parametrize("name,i", [pytest.param(n, i, id=f"{n}-{i}") for n, i in IDS])
def test_op_matches_interpreter(name, i, all_ops):
    interp, ocl = all_ops
    case = CASES[name][i]
    d = REGISTRY[name]
    env = dict(case.env)
    rng = np.random.default_rng(100 + i)
    types = [TensorType(DTYPES[s.dtype], s.shape) for s in case.operands]
    args = [shapes._array(s, env, d.domain, rng) for s in case.operands]
    used = {x for t in types for x in t.shape if isinstance(x, str)}
    env = {k: v for k, v in env.items() if k in used} or env
    want = interp.call(_fn(name, i), [np.asarray(a) for a in args], env)
    got = ocl.call(_fn(name, i), [np.asarray(a) for a in args], env)
    assert len(want) == len(got)
    low = np.float32 if any(t.dtype.name == "f32" for t in types) else None
    for w, g in zip(want, got):
        assert_close(g, w, dtype=low if w.dtype.kind == "f" else None)


@pytest.mark.slow
def test_every_op_with_gpu_shaped_kernels():
    """The same cases with the kernels a GPU gets (a work-item per element,
    the local-memory tiled product, work-group reductions), on this device."""
    m = Module()
    for name, i in IDS:
        case = CASES[name][i]
        types = [TensorType(DTYPES[s.dtype], s.shape) for s in case.operands]
        m.body.append(one_op_func(name, types, case.attrs, _fn(name, i)))
    interp, ocl = InterpBackend(m.clone(), {}), opencl_backend(m, style="gpu")
    for name, i in IDS:
        test_op_matches_interpreter(name, i, (interp, ocl))

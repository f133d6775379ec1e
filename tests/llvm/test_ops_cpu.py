"""Differential test of every registered tg op on the cpu backend: each case of
tests/ops/test_op_shapes.py (non-square shapes, named dims, mixed dtypes) is
compiled as a one-op function and must agree with the interpreter within
float32 tolerance. A tg op without a lowering fails test_every_op_lowers."""

from __future__ import annotations

import numpy as np
import pytest

from irc.ir.types import DTYPES, TensorType
from irc.ops.registry import REGISTRY
from llvm_helpers import assert_close, load_test_module, one_op_module, run_both

shapes = load_test_module("ops/test_op_shapes.py", "_irc_op_shapes_cases")
CASES = shapes.CASES


def test_every_op_lowers():
    from irc.ops.lowering import missing_lowerings

    assert not missing_lowerings(), f"tg ops without a loop lowering: {missing_lowerings()}"


def test_every_op_has_a_cpu_case():
    missing = [n for n, d in REGISTRY.items() if n.startswith("tg.") and d.numpy and n not in CASES]
    assert not missing, missing


def _ids():
    out = []
    for name, cases in CASES.items():
        if name in REGISTRY:
            out += [pytest.param(name, i, id=f"{name}-{i}") for i in range(len(cases))]
    return out


@pytest.mark.parametrize("name,i", _ids())
def test_op_matches_interpreter(name, i):
    case = CASES[name][i]
    d = REGISTRY[name]
    env = dict(case.env)
    rng = np.random.default_rng(100 + i)
    types = [TensorType(DTYPES[s.dtype], s.shape) for s in case.operands]
    m = one_op_module(name, types, case.attrs)
    args = [shapes._array(s, env, d.domain, rng) for s in case.operands]
    used = {n for t in types for x in t.shape if isinstance(x, str) for n in [x]}
    env = {k: v for k, v in env.items() if k in used} or env
    want, got = run_both(m, args, env)
    assert len(want) == len(got)
    # a result computed from f32 operands is only as exact as f32 (e.g. f64 = f32 log * f64)
    low = np.float32 if any(t.dtype.name == "f32" for t in types) else None
    for w, g in zip(want, got):
        assert_close(g, w, dtype=low if w.dtype.kind == "f" else None)

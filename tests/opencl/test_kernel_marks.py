"""Both compiled backends render the kernels the kernelize pass marked, so they
agree on what is parallel: every map and reduce mark of a function's loop IR is
one generated OpenCL kernel of that kind (a reduce with its `final`) and one
outlined kernel function of the cpu backend (which splits it over threads when
it is large), a scan loop is a host loop on OpenCL whose body's map is a kernel
on both, and results agree with NumPy on both."""

from __future__ import annotations

import re

import numpy as np
import pytest

import irc

SOURCE = """
fn total(x: f32[N, M]) -> f32 { return sum(x) }
fn rows(x: f32[N, M]) -> f32[N] { return max(x, axis=1) }
fn cols(x: f32[N, M]) -> f32[M] { return sum(x, axis=0) }
fn running(x: f32[T, B], h0: f32[B]) -> f32[T, B] {
    hs = scan (xt in x; h = h0) { h = tanh(h + xt)  yield h }
    return hs
}
"""


def _marks(loop_text: str, fn: str) -> list:
    body = loop_text.split(f"func.func @{fn}(", 1)[1].split("func.func @", 1)[0]
    return re.findall(r'kernel = "(\w+)"', body)


@pytest.fixture(scope="module")
def modules():
    return irc.loads(SOURCE, backend="opencl"), irc.loads(SOURCE, backend="cpu")


@pytest.mark.parametrize("fn", ["total", "rows", "cols", "running"])
def test_each_backend_renders_the_marked_kernels(modules, fn):
    ocl, cpu = modules
    loops = cpu._backend.dump("loops")
    assert loops == ocl._backend.dump("loops")  # one kernelized loop IR
    marks = _marks(loops, fn)
    parallel = [k for k in marks if k in ("map", "reduce")]
    assert parallel, marks
    launches = [c.kind for c in ocl._backend.schedules[fn].launches]
    assert [k for k in launches if k in ("map", "reduce")] == parallel
    assert launches.count("final") == parallel.count("reduce")
    llvm = cpu._backend.dump("llvm-raw", fn=fn)
    kernels = set(re.findall(rf'define internal i32 @"({fn}\.k\d+)"', llvm))
    assert len(kernels) == len(parallel)
    if "loop" in marks:
        assert "host loop" in ocl._backend.dump("schedule", fn=fn)


def test_results_agree(modules):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 257)).astype(np.float32)
    h0 = rng.normal(size=257).astype(np.float32)
    for m in modules:
        np.testing.assert_allclose(m.total(x), x.sum(dtype=np.float64), rtol=1e-4)
        np.testing.assert_array_equal(m.rows(x), x.max(axis=1))
        np.testing.assert_allclose(m.cols(x), x.sum(0, dtype=np.float64), rtol=1e-4, atol=1e-4)
        h, want = h0, []
        for t in range(x.shape[0]):
            h = np.tanh(h + x[t])
            want.append(h)
        np.testing.assert_allclose(m.running(x, h0), np.stack(want), rtol=1e-5, atol=1e-5)

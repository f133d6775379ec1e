"""Issue 15: names the backends generate can never collide with kernel parameters,
entry functions or each other. The masked RNN below (two sequences, a carry, a
gradient through scan) used to fail on PoCL with `redefinition of 'c1'`: a chunk
start and a constant buffer both named c1. On the cpu backend, an entry named
`f__ws` redefined f's workspace-size function."""

import numpy as np
import pytest
from verify_helpers import needs_opencl

import irc

MASKED_RNN = """
shared Wx: f32[4, 6] = normal(0.0, 0.3)
shared Wh: f32[6, 6] = normal(0.0, 0.3)
shared Wo: f32[6, 3] = normal(0.0, 0.3)

fn run(xs: f32[T, B, 4], ms: f32[T, B, 1], h0: f32[B, 6]) -> (f32, f32[6, 6], f32[4, 6], f32[T, B, 6]) {
    hs, os = scan (x in xs, m in ms; h = h0) {
        hn = tanh(x @ Wx + h @ Wh)
        h = m * hn + (1.0 - m) * h
        yield h, h @ Wo
    }
    loss = mean(os * os) + 0.1 * mean(hs[-1])
    gWh, gWx = grad(loss, Wh, Wx)
    return loss, gWh, gWx, hs
}
"""


def _inputs(T=5, B=3, seed=0):
    r = np.random.default_rng(seed)
    xs = r.normal(size=(T, B, 4)).astype(np.float32)
    ms = (r.random((T, B, 1)) > 0.3).astype(np.float32)
    h0 = r.normal(size=(B, 6)).astype(np.float32)
    return xs, ms, h0


@pytest.mark.parametrize("backend", ["cpu", pytest.param("opencl", marks=needs_opencl)])
def test_masked_rnn_matches_interpreter(backend):
    want = irc.loads(MASKED_RNN, backend="interp", seed=1).run(*_inputs())
    got = irc.loads(MASKED_RNN, backend=backend, seed=1).run(*_inputs())
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@needs_opencl
def test_opencl_kernel_names_are_unique():
    """Every kernel's parameter and local names are distinct (the C compiler would
    also say so, but this names the kernel)."""
    import re

    m = irc.loads(MASKED_RNN, backend="opencl", seed=1)
    src = m._backend.dump("opencl")
    for kernel in re.findall(r"__kernel void (\w+)\(([^)]*)\)", src):
        names = [p.split()[-1] for p in kernel[1].split(",")]
        assert len(names) == len(set(names)), kernel


ENTRY_NAMES = """
fn f(x: f32[N]) -> f32[N] { return x + 1.0 }
fn f__ws(x: f32[N]) -> f32[N] { return x * 2.0 }
fn f__k0(x: f32[N]) -> f32[N] { return x * 3.0 }
fn f__k0_thunk(x: f32[N]) -> f32[N] { return x * 4.0 }
fn f_k0_map(x: f32[N]) -> f32[N] { return x * 5.0 }
"""


@pytest.mark.parametrize("backend", ["cpu", pytest.param("opencl", marks=needs_opencl)])
def test_entry_names_like_generated_names(backend):
    m = irc.loads(ENTRY_NAMES, backend=backend)
    x = np.array([1.0, 2.0], np.float32)
    for fn, k in [("f", None), ("f__ws", 2), ("f__k0", 3), ("f__k0_thunk", 4), ("f_k0_map", 5)]:
        want = x + 1 if k is None else x * k
        np.testing.assert_allclose(getattr(m, fn)(x), want)

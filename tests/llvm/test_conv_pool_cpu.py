"""The cpu lowering of convolutions and max pooling (irc/ops/lowering/nn.py) beyond the
per-op cases of test_ops_cpu.py: pooling gradients on data full of ties, NaN and
infinities (the branch-free argmax must pick the interpreter's first maximum), the
unfolded input shared by conv2d and its filter gradient only when the geometry is the
same, each convolution product one gemm for the whole batch, and a LeNet step against
the interpreter at several thread counts.
"""

from __future__ import annotations

import numpy as np
import pytest

from irc.ir.types import F32, F64, TensorType
from llvm_helpers import assert_close, cpu_backend, loads_cpu, one_op_module, run_both


def _awkward(rng, shape, dtype):
    """Small integers (many ties, +-0) with NaN, +inf and -inf sprinkled in."""
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    x[x == 0] = rng.choice(np.array([0.0, -0.0], dtype), size=int((x == 0).sum()))
    flat = x.reshape(-1)
    pick = rng.choice(flat.size, size=flat.size // 4, replace=False)
    third = len(pick) // 3
    flat[pick[:third]] = np.nan
    flat[pick[third : 2 * third]] = np.inf
    flat[pick[2 * third :]] = -np.inf
    return x


POOLS = [
    ((3, 4, 8, 6), (2, 2), None),  # windows tile the input
    ((2, 3, 9, 7), (2, 2), None),  # a row and a column after the last window
    ((2, 2, 9, 9), (3, 3), None),
    ((2, 3, 9, 7), (3, 2), (1, 2)),  # overlapping windows
    ((5, 7), (2, 2), None),  # no leading axes
]


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", range(len(POOLS)))
def test_pool_gradients_pick_the_interpreters_maximum(dtype, case):
    shape, size, stride = POOLS[case]
    rng = np.random.default_rng(case)
    x = _awkward(rng, shape, dtype.np)
    st = stride or size
    pooled = shape[:-2] + tuple((shape[i] - size[j]) // st[j] + 1 for i, j in ((-2, 0), (-1, 1)))
    g = rng.normal(size=pooled).astype(dtype.np)
    g.reshape(-1)[:3] = [np.inf, np.nan, -0.0]
    attrs = {"size": size} if stride is None else {"size": size, "stride": stride}
    m = one_op_module(
        "tg.max_pool2d_grad", [TensorType(dtype, shape), TensorType(dtype, pooled)], attrs
    )
    want, got = run_both(m, [x, g], {})
    assert_close(got[0], want[0])
    u = rng.normal(size=shape).astype(dtype.np)
    m = one_op_module("tg.max_pool2d_select", [TensorType(dtype, shape)] * 2, attrs)
    want, got = run_both(m, [x, u], {})
    np.testing.assert_array_equal(got[0], want[0])


def test_pool_gradient_selects_are_branch_free():
    m = one_op_module(
        "tg.max_pool2d_grad",
        [TensorType(F32, ("N", 2, 8, 8)), TensorType(F32, ("N", 2, 4, 4))],
        {"size": (2, 2)},
    )
    assert "!unpredictable" in cpu_backend(m).dump("llvm")


CONVS = """
fn f(x: f32[N, 2, 9, 8], k: f32[3, 2, 3, 3], u: f32[N, 3, 7, 6], v: f32[N, 3, 9, 8]) {
    a = conv2d(x, k)
    b = conv2d(x, k, padding="same")
    gx, gk = grad(sum(u * a) + sum(v * b), x, k)
    return a, b, gx, gk
}
"""


def test_shared_unfolding_only_for_the_same_geometry():
    """conv2d and the filter gradients of one input with two paddings: the unfolded
    input is reused only where the padding matches, and every result is right."""
    import irc

    rng = np.random.default_rng(0)
    args = [
        rng.normal(size=s).astype(np.float32)
        for s in ((4, 2, 9, 8), (3, 2, 3, 3), (4, 3, 7, 6), (4, 3, 9, 8))
    ]
    want = irc.loads(CONVS, backend="interp").f(*args)
    got = loads_cpu(CONVS).f(*args)
    for w, g in zip(want, got):
        assert_close(g, w, rtol=1e-4, atol=1e-5)


LENET = """
shared K1: f32[4, 1, 5, 5] = glorot_uniform()
shared c1: f32[4] = zeros()
shared K2: f32[6, 4, 3, 3] = glorot_uniform()
shared c2: f32[6] = zeros()
shared W3: f32[24, 10] = glorot_uniform()

fn train(x: f32[N, 1, 16, 16], y: i32[N], lr: f32 = 0.1) -> f32 {
    h1 = relu(max_pool2d(conv2d(x, K1), [2, 2]) + c1[None, :, None, None])
    h2 = relu(max_pool2d(conv2d(h1, K2), [2, 2]) + c2[None, :, None, None])
    loss = mean(categorical_crossentropy(softmax(flatten(h2, 1) @ W3), y))
    gK1, gc1, gK2, gc2, gW3 = grad(loss, K1, c1, K2, c2, W3)
    K1 <- K1 - lr * gK1
    c1 <- c1 - lr * gc1
    K2 <- K2 - lr * gK2
    c2 <- c2 - lr * gc2
    W3 <- W3 - lr * gW3
    return loss
}
"""


def test_convolution_products_are_one_gemm_per_batch():
    """No product of the LeNet step runs in a loop over the images."""
    m = loads_cpu(LENET)
    loops = m._backend.dump("loops")
    depth, in_loop = 0, []
    for line in loops.splitlines():
        s = line.strip()
        if s.startswith("loop.for") or " = loop.for" in s:
            depth += 1
        elif s == "})":
            depth -= 1
        elif "mem.gemm" in s and depth > 0:
            in_loop.append(s)
    assert "mem.gemm" in loops and not in_loop, in_loop


@pytest.mark.parametrize("threads", [1, 2])
def test_lenet_steps_match_the_interpreter(threads):
    import irc

    rng = np.random.default_rng(1)
    x = rng.normal(size=(33, 1, 16, 16)).astype(np.float32)  # an odd batch: uneven chunks
    y = rng.integers(0, 10, 33).astype(np.int32)
    ref = irc.loads(LENET, backend="interp", seed=3)
    m = loads_cpu(LENET, seed=3)
    m._backend.set_threads(threads)
    for _ in range(3):
        assert_close(np.float32(m.train(x, y)), np.float32(ref.train(x, y)), rtol=1e-4)
    for name in ("K1", "c1", "K2", "c2", "W3"):
        assert_close(m[name], ref[name], rtol=1e-4, atol=1e-5)

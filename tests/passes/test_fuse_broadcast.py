"""fuse-elementwise's broadcast rule (a few cheap ops of a smaller shape,
recomputed at each element of the consumer that alone reads them), run on
every backend against NumPy: the recomputed values must be the same as the
materialised ones, for row, column and scalar broadcasts. (On every backend
through tests/conftest.py's ON_EVERY_BACKEND: each test asks for the interpreter.)"""

import numpy as np
import pytest

import irc

PROGRAMS = {
    # the row means scaled inside the subtraction's loop
    "rows": (
        "fn f(x: f32[N, 8]) -> f32[N, 8] { return tanh(x - mean(x, axis=1, keepdims=true) * 0.9) }",
        lambda x: np.tanh(x - x.mean(axis=1, keepdims=True) * np.float32(0.9)),
    ),
    # a [8] vector computed once per column, recomputed per row
    "columns": (
        "fn f(x: f32[N, 8], b: f32[8]) -> f32[N, 8] { return x * (b * 2.0 + 1.0) - b }",
        lambda x, b: x * (b * np.float32(2.0) + np.float32(1.0)) - b,
    ),
    # a scalar from a full reduction, recomputed per element
    "scalar": (
        "fn f(x: f32[N, 8]) -> f32[N, 8] { return x / (1 + sum(x * x) * 0.0001) }",
        lambda x: x / (np.float32(1) + (x * x).sum() * np.float32(0.0001)),
    ),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_broadcast_fusion_matches_numpy(name):
    src, ref = PROGRAMS[name]
    m = irc.loads(src, backend="interp")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 8)).astype(np.float32)
    args = [x] if name != "columns" else [x, rng.standard_normal(8).astype(np.float32)]
    np.testing.assert_allclose(m.f(*args), ref(*args), rtol=1e-5, atol=1e-6)


def test_rows_program_fuses_the_scale():
    """The scale of the means has no loop nest of its own (the rule fires here)."""
    m = irc.loads(PROGRAMS["rows"][0], backend="interp")
    before_fused = m.ir().split("tg.fused")
    assert len(before_fused) == 2 and "tg.mul" not in before_fused[0]

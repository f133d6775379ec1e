"""fuse-elementwise's reductions with other results: a group whose values are
read after its trailing reduction is fused with it, and the reduction's loop
stores those values too (one loop nest instead of a map and a reduction that
reads the map's temporary back), when the reduction is over the innermost axes.
Run on every backend against NumPy (through tests/conftest.py's
ON_EVERY_BACKEND: each test asks for the interpreter), for each kind of
reduction loop: rows (an inner serial loop per row), all axes (a reduce
kernel, chunked over threads when large); and a leading and a middle axis,
where the map keeps a loop nest of its own (it would lose its parallel axes).
"""

import re

import numpy as np
import pytest

import irc

F = np.float32

PROGRAMS = {
    # the row sums of tanh(x), and tanh(x) itself, from one loop over the rows
    "rows": (
        "fn f(x: f32[N, 8]) -> f32[N, 8] {\n"
        "    t = tanh(x)\n"
        "    return t - mean(t, axis=1, keepdims=true)\n}\n",
        lambda x: np.tanh(x) - np.tanh(x).mean(axis=1, keepdims=True),
    ),
    # the map and its sum of squares: a reduce kernel that stores the map
    "all": (
        "fn f(x: f32[N, 8]) -> f32[N, 8] {\n"
        "    h = x * 0.9 + 0.01\n"
        "    return h / (1 + sum(h * h) * 0.0001)\n}\n",
        lambda x: (h := x * F(0.9) + F(0.01)) / (F(1) + (h * h).sum() * F(0.0001)),
    ),
    # a max over rows, as in a softmax
    "max": (
        "fn f(x: f32[N, 8]) -> f32[N, 8] {\n"
        "    t = x * 2.0 - 1.0\n"
        "    return exp(t - max(t, axis=1, keepdims=true))\n}\n",
        lambda x: np.exp((t := x * F(2) - F(1)) - t.max(axis=1, keepdims=True)),
    ),
    # both values returned: the sum and the map
    "returned": (
        "fn f(x: f32[N, 8]) -> (f32[N, 8], f32) {\n"
        "    t = tanh(x) * 2.0\n"
        "    return t, sum(t)\n}\n",
        lambda x: ((t := np.tanh(x) * F(2)), t.sum()),
    ),
}


def _check(src, ref, x, backend="interp"):
    m = irc.loads(src, backend=backend)
    got, want = m.f(x), ref(x)
    if isinstance(want, tuple):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    return m


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_reduction_outputs_match_numpy(name):
    src, ref = PROGRAMS[name]
    x = np.random.default_rng(0).standard_normal((37, 8)).astype(np.float32)
    m = _check(src, ref, x)
    # the rule fired: no reduction of its own, one fused op with a reduction
    # and another result
    ir = m.ir()
    assert "tg.sum %" not in ir and "tg.max %" not in ir
    assert ir.count('reduce = "') == 1
    assert re.search(r'%\w+, %\w+ = tg.fused %x \{shape = [^{]*reduce = "', ir), ir


@pytest.mark.parametrize("name", ["all", "rows"])
def test_large_reduction_outputs_match_numpy(name):
    """Large enough that the cpu backend cuts the loops into chunks over threads."""
    src, ref = PROGRAMS[name]
    x = np.random.default_rng(1).standard_normal((60001, 8)).astype(np.float32)
    _check(src, ref, x * np.float32(0.1))


NOT_FUSED = {
    # column sums: the loop over the rows is serial (one work-item per column)
    "columns": (
        "fn f(x: f32[N, 8]) -> f32[N, 8] {\n"
        "    t = exp(x * 0.5)\n"
        "    return t / sum(t, axis=0, keepdims=true)\n}\n",
        lambda x: (t := np.exp(x * F(0.5))) / t.sum(axis=0, keepdims=True),
        (37, 8),
    ),
    "middle": (
        "fn f(x: f32[N, 4, 6]) -> f32[N, 4, 6] {\n"
        "    t = exp(x * 0.1)\n"
        "    return t / sum(t, axis=1, keepdims=true)\n}\n",
        lambda x: (t := np.exp(x * F(0.1))) / t.sum(axis=1, keepdims=True),
        (5, 4, 6),
    ),
}


@pytest.mark.parametrize("name", sorted(NOT_FUSED))
def test_outer_axis_reduction_leaves_the_map_apart(name):
    """The map keeps its own loop nest, parallel over every element; the sum reads it."""
    src, ref, shape = NOT_FUSED[name]
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    m = _check(src, ref, x)
    assert "tg.sum %" in m.ir()


def test_value_read_before_the_reduction_is_not_fused():
    """A user of a group value placed before the reduction: the fused op, at the
    reduction's place, would come after it; the map and the sum stay apart."""
    src = (
        "fn f(x: f32[4, 4], w: f32[4, 4]) -> (f32[4, 4], f32) {\n"
        "    t = exp(x * 0.5)\n"
        "    m = t @ w\n"
        "    return m, sum(t * t)\n}\n"
    )
    x = np.random.default_rng(3).standard_normal((4, 4)).astype(np.float32)
    w = np.random.default_rng(4).standard_normal((4, 4)).astype(np.float32)
    m = irc.loads(src, backend="interp")
    t = np.exp(x * F(0.5))
    got = m.f(x, w)
    np.testing.assert_allclose(got[0], t @ w, rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], (t * t).sum(), rtol=2e-5)


def test_in_a_scan_body():
    """A scan body's row means and sum of squares, each fused with the map it reads."""
    src = (
        "fn f(xs: f32[T, B, 8], h0: f32[B, 8], W: f32[8, 8]) -> (f32[T, B, 8], f32[T]) {\n"
        "    hs, ns = scan (x in xs; h = h0) {\n"
        "        t = tanh(x + h @ W)\n"
        "        h = t - mean(t, axis=1, keepdims=true)\n"
        "        yield h, sum(h * h)\n"
        "    }\n"
        "    return hs, ns\n}\n"
    )
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((6, 3, 8)).astype(np.float32)
    h = rng.standard_normal((3, 8)).astype(np.float32)
    W = (rng.standard_normal((8, 8)) * 0.3).astype(np.float32)
    m = irc.loads(src, backend="interp")
    got_hs, got_ns = m.f(xs, h, W)
    hs, ns = [], []
    for x in xs:
        t = np.tanh(x + h @ W)
        h = t - t.mean(axis=1, keepdims=True)
        hs.append(h)
        ns.append((h * h).sum())
    np.testing.assert_allclose(got_hs, np.stack(hs), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_ns, np.array(ns, np.float32), rtol=1e-4, atol=1e-5)
    assert m.ir().count('reduce = "sum"') == 2

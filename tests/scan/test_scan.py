"""scan: the seed's vanilla RNN forward and backpropagation through time
against a plain NumPy loop, truncation against a hand-truncated reference,
several sequences and carries, scans without sequences, nested scans, and
unrolling (full and by a factor) against the loop."""

import numpy as np
import pytest

import irc.api as api
from irc.gradcheck import check_module
from irc.ir.printer import print_module
from irc.passes import PassManager, parse_pipeline
from irc.runtime.interp import Interpreter

RNN = """
shared W: f64[5, 5] = normal(0, 0.4)
shared U: f64[3, 5] = normal(0, 0.4)
shared b: f64[5] = normal(0, 0.1)

fn forward(xs: f64[T, B, 3], s0: f64[B, 5]) -> f64[T, B, 5] {
    return scan (x in xs; s = s0) { s = tanh(b + s @ W + x @ U)  yield s }
}

fn grads(xs: f64[T, B, 3], s0: f64[B, 5], c: f64[T, B, 5]) -> (f64[5, 5], f64[3, 5], f64[5], f64[B, 5], f64[T, B, 3]) {
    ss = scan (x in xs; s = s0) { s = tanh(b + s @ W + x @ U)  yield s }
    loss = sum(ss * c)
    return grad(loss, W, U, b, s0, xs)
}

fn grads_truncated(xs: f64[T, B, 3], s0: f64[B, 5], c: f64[T, B, 5]) -> (f64[5, 5], f64[3, 5], f64[B, 5]) {
    ss = scan (x in xs; s = s0; truncate = 3) { s = tanh(b + s @ W + x @ U)  yield s }
    loss = sum(ss * c)
    return grad(loss, W, U, s0, disconnected="zero")
}

fn last_only(xs: f64[T, B, 3], s0: f64[B, 5]) -> f64[5, 5] {
    ss = scan (x in xs; s = s0) { s = tanh(b + s @ W + x @ U)  yield s }
    return grad(sum(ss[-1]), W)
}
"""


def rnn_reference(m, xs, s0, c, truncate=None):
    W, U, b = m["W"], m["U"], m["b"]
    T = xs.shape[0]
    ss, s = [], s0
    for t in range(T):
        s = np.tanh(b + s @ W + xs[t] @ U)
        ss.append(s)
    gW, gU, gb = np.zeros_like(W), np.zeros_like(U), np.zeros_like(b)
    gxs = np.zeros_like(xs)
    gs = np.zeros_like(s0)
    first = 0 if truncate is None else max(T - truncate, 0)
    for t in range(T - 1, first - 1, -1):
        gs = gs + c[t]
        ga = gs * (1 - ss[t] ** 2)
        prev = ss[t - 1] if t > 0 else s0
        gW += prev.T @ ga
        gU += xs[t].T @ ga
        gb += ga.sum(0)
        gxs[t] = ga @ U.T
        gs = ga @ W.T
    if truncate is not None and T > truncate:
        gs = np.zeros_like(s0)
    return np.stack(ss), (gW, gU, gb, gs, gxs)


@pytest.fixture(scope="module")
def rnn():
    return api.loads(RNN, seed=3)


def inputs(T=7, B=2, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(T, B, 3)), rng.normal(size=(B, 5)) * 0.5, rng.normal(size=(T, B, 5)))


def test_rnn_forward_and_bptt_match_numpy_loop(rnn):
    xs, s0, c = inputs()
    ss_ref, grads_ref = rnn_reference(rnn, xs, s0, c)
    np.testing.assert_allclose(rnn.forward(xs, s0), ss_ref, rtol=1e-12, atol=1e-12)
    for got, ref in zip(rnn.grads(xs, s0, c), grads_ref):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_truncation_matches_hand_truncated_reference(rnn):
    xs, s0, c = inputs(T=8)
    _, (gW, gU, _, gs, _) = rnn_reference(rnn, xs, s0, c, truncate=3)
    got = rnn.grads_truncated(xs, s0, c)
    for g, r in zip(got, (gW, gU, gs)):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)
    full = rnn.grads(xs, s0, c)[0]
    assert not np.allclose(full, got[0])  # truncation changes the result
    # No more steps than the truncation: the full gradient.
    xs2, s02, c2 = inputs(T=3)
    np.testing.assert_allclose(
        rnn.grads_truncated(xs2, s02, c2)[0], rnn.grads(xs2, s02, c2)[0], rtol=1e-12
    )


def test_gradient_of_last_step_only(rnn):
    xs, s0, _ = inputs(T=5)
    c = np.zeros((5, 2, 5))
    c[-1] = 1.0
    _, (gW, *_rest) = rnn_reference(rnn, xs, s0, c)
    np.testing.assert_allclose(rnn.last_only(xs, s0), gW, rtol=1e-10, atol=1e-12)


def test_rnn_gradients_pass_finite_differences():
    # A truncated gradient is by design not the derivative: leave it out here.
    records = [r for r in check_module(RNN, "rnn.tg") if r.function != "grads_truncated"]
    assert len(records) == 6
    assert all(r.ok for r in records), "\n".join(map(str, records))


SEVERAL = """
shared A: f32[4, 4] = normal(0, 0.3)
fn f(xs: f32[T, 4], ws: f32[T], h0: f32[4], k0: f32) -> (f32[T, 4], f32[T], f32) {
    hs, ks = scan (x in xs, w in ws; h = h0, k = k0) {
        h = tanh(h @ A + x * w)
        k = k + sum(h) * w
        yield h, k
    }
    return hs, ks, sum(hs) + ks[-1]
}
fn g(xs: f32[T, 4], ws: f32[T], h0: f32[4], k0: f32) -> (f32[4, 4], f32[T, 4], f32[T], f32[4], f32) {
    hs, ks = scan (x in xs, w in ws; h = h0, k = k0) {
        h = tanh(h @ A + x * w)
        k = k + sum(h) * w
        yield h, k
    }
    return grad(sum(hs * hs) + ks[-1] * 0.5, A, xs, ws, h0, k0)
}
fn power(v0: f32[4]) -> f32[6, 4] {
    return scan (; v = v0; steps = 6) { v = v @ A / sqrt(sum(v @ A * (v @ A)))  yield v }
}
fn power_grad(v0: f32[4]) -> f32[4, 4] {
    vs = scan (; v = v0; steps = 6) { v = tanh(v @ A)  yield v }
    return grad(sum(vs[-1]), A)
}
fn nested(xs: f32[T, 3, 4], h0: f32[4]) -> f32[T, 4] {
    return scan (row in xs; h = h0) {
        inner = scan (x in row; g = h) { g = tanh(g @ A + x)  yield g }
        h = inner[-1] * 0.5 + h * 0.5
        yield h
    }
}
fn nested_grad(xs: f32[T, 3, 4], h0: f32[4]) -> (f32[4, 4], f32[T, 3, 4]) {
    hs = scan (row in xs; h = h0) {
        inner = scan (x in row; g = h) { g = tanh(g @ A + x)  yield g }
        h = inner[-1] * 0.5 + h * 0.5
        yield h
    }
    return grad(sum(hs * hs), A, xs)
}
"""


def test_several_sequences_and_carries_forward():
    m = api.loads(SEVERAL)
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(5, 4)).astype(np.float32)
    ws = rng.normal(size=5).astype(np.float32)
    h0 = rng.normal(size=4).astype(np.float32)
    hs, ks, total = m.f(xs, ws, h0, 0.5)
    h, k, rh, rk = h0, np.float32(0.5), [], []
    for t in range(5):
        h = np.tanh(h @ m["A"] + xs[t] * ws[t])
        k = k + h.sum() * ws[t]
        rh.append(h)
        rk.append(k)
    np.testing.assert_allclose(hs, np.stack(rh), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ks, np.array(rk), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(total, np.stack(rh).sum() + rk[-1], rtol=1e-5)
    # Power iteration (no sequences): the normalised vectors.
    out = m.power(h0)
    v = h0
    for t in range(6):
        v = v @ m["A"]
        v = v / np.sqrt((v * v).sum())
        np.testing.assert_allclose(out[t], v, rtol=1e-4, atol=1e-6)


def test_nested_scan_forward():
    m = api.loads(SEVERAL)
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(3, 3, 4)).astype(np.float32)
    h0 = rng.normal(size=4).astype(np.float32)
    A = m["A"]
    h, ref = h0, []
    for t in range(3):
        g = h
        for j in range(3):
            g = np.tanh(g @ A + xs[t, j])
        h = g * 0.5 + h * 0.5
        ref.append(h)
    np.testing.assert_allclose(m.nested(xs, h0), np.stack(ref), rtol=1e-5, atol=1e-6)


def test_several_carries_power_and_nested_gradients_pass_finite_differences():
    records = check_module(SEVERAL, "several.tg")
    names = {(r.function, r.wrt) for r in records}
    assert {
        ("g", "A"),
        ("g", "ws"),
        ("g", "k0"),
        ("power_grad", "A"),
        ("nested_grad", "A"),
        ("nested_grad", "xs"),
    } <= names
    assert all(r.ok for r in records), "\n".join(map(str, records))


@pytest.mark.parametrize(
    "pipeline",
    [
        "scan-unroll{max-steps=16}",
        "scan-unroll{max-steps=2,factor=3}",
        "scan-unroll{max-steps=2,factor=2}",
    ],
)
def test_unrolling_is_numerically_equivalent(rnn, pipeline):
    xs, s0, c = inputs(T=7)
    for T in (7, 6, 1):
        m = api.loads(RNN.replace("T, B", f"{T}, B") if "max-steps=16" in pipeline else RNN, seed=3)
        opt = m._opt.clone()
        PassManager(parse_pipeline(pipeline), verify_each=True).run(opt)
        state = {k: m[k] for k in m.shared}
        args = (xs[:T], s0, c[:T])
        got, _ = Interpreter(opt).run("grads", list(args), state, {"T": T, "B": 2})
        # The reference: the fixture's module, whose scan over a named T is a loop.
        assert "tg.scan" in rnn.ir(fn="grads")
        for g, r in zip(got, rnn.grads(*args)):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)
        if "max-steps=16" in pipeline:
            assert "tg.scan" not in print_module(opt)


def test_static_scans_are_unrolled_by_the_pipeline():
    m = api.loads(SEVERAL)
    text = m.ir(fn="power")
    assert "tg.scan" not in text and text.count("tg.matmul") >= 6

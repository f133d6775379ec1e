"""stabilize, numerically: with logits of size 1e3 the naive forms overflow in
float32, the stabilised ones give finite losses and gradients that match a
float64 reference."""

import numpy as np

import irc.api as api
from irc.api import compile_to_ir
from irc.passes import PassManager, parse_pipeline
from irc.runtime.interp import Interpreter

SRC = """
fn xent(x: f32[N, 5], y: i32[N]) -> (f32, f32[N, 5]) {
    loss = mean(categorical_crossentropy(softmax(x), y))
    return loss, grad(loss, x)
}
fn logsm(x: f32[N, 5]) -> (f32, f32[N, 5]) {
    loss = sum(log(softmax(x)))
    return loss, grad(loss, x)
}
fn logsig(x: f32[N]) -> (f32, f32[N]) {
    loss = sum(log(sigmoid(x)))
    return loss, grad(loss, x)
}
fn log1p_(x: f32[N]) -> f32[N] { return log(1 + x) }
"""


def logits():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(4, 5)) * 1e3).astype(np.float32), rng.integers(0, 5, 4).astype(
        np.int32
    )


def ref_log_softmax(x):
    x = x.astype(np.float64)
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_large_logits_give_finite_losses_and_gradients():
    m = api.loads(SRC)
    x, y = logits()
    loss, g = m.xent(x, y)
    lsm = ref_log_softmax(x)
    np.testing.assert_allclose(loss, -lsm[np.arange(4), y].mean(), rtol=1e-5)
    ref_g = (np.exp(lsm) - np.eye(5)[y]) / 4
    np.testing.assert_allclose(g, ref_g, atol=1e-6)
    loss, g = m.logsm(x)
    assert np.isfinite(loss) and np.all(np.isfinite(g))
    np.testing.assert_allclose(loss, lsm.sum(), rtol=1e-5)
    xs = np.array([-1e3, -50.0, 0.0, 50.0, 1e3], np.float32)
    loss, g = m.logsig(xs)
    ref = -np.logaddexp(0, -xs.astype(np.float64))
    np.testing.assert_allclose(loss, ref.sum(), rtol=1e-6)
    np.testing.assert_allclose(
        g, np.exp(-np.logaddexp(0, xs.astype(np.float64))), atol=1e-6
    )  # sigmoid(-x)
    tiny = np.array([1e-10, 1e-7], np.float32)
    np.testing.assert_allclose(m.log1p_(tiny), np.log1p(tiny.astype(np.float64)), rtol=1e-6)


def test_without_stabilize_the_naive_forms_overflow():
    ir = compile_to_ir(SRC, "s.tg")
    PassManager(parse_pipeline("inline,grad"), verify_each=True).run(ir)
    x, y = logits()
    (loss, g), _ = Interpreter(ir).run("xent", [x, y], {}, {"N": 4})
    assert not (np.isfinite(loss) and np.all(np.isfinite(g)))

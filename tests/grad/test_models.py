"""Gradients of whole `.tg` models against finite differences (irc.gradcheck.
check_module, the engine of `irc check`), second derivatives (Hessian-vector
products) through an MLP, and the checker itself: generated inputs stay in
range and a wrong gradient rule is reported.
"""

from __future__ import annotations

import numpy as np
import pytest

from irc import api
from irc.gradcheck import check_module, verify_grad
from irc.ops.registry import REGISTRY

LOGREG = """
shared W: f32[6, 4] = zeros()
shared b: f32[4]     = zeros()

def probs(x: f32[N, 6]) -> f32[N, 4] {
    return softmax(x @ W + b)
}

fn train(x: f32[N, 6], y: i32[N], lr: f32 = 0.1) -> f32 {
    loss = mean(categorical_crossentropy(probs(x), y))
    gW, gb = grad(loss, W, b)
    W <- W - lr * gW
    b <- b - lr * gb
    return loss
}
"""

MLP = """
shared W1: f32[6, 5] = glorot_uniform()
shared b1: f32[5] = zeros()
shared W2: f32[5, 3] = glorot_uniform()
shared b2: f32[3] = zeros()

def probs(x: f32[N, 6]) -> f32[N, 3] {
    h = tanh(x @ W1 + b1)
    return softmax(h @ W2 + b2)
}

fn train(x: f32[N, 6], y: i32[N], lr: f32 = 0.1) -> f32 {
    loss = mean(categorical_crossentropy(probs(x), y)) + 0.01 * sum(W1 ** 2)
    g1, c1, g2, c2 = grad(loss, W1, b1, W2, b2)
    W1 <- W1 - lr * g1
    b1 <- b1 - lr * c1
    W2 <- W2 - lr * g2
    b2 <- b2 - lr * c2
    return loss
}

fn input_grad(x: f32[N, 6], y: i32[N]) -> f32[N, 6] {
    return grad(sum(log(probs(x)[arange(N), y])), x)
}
"""

CONV_POOL = """
shared K1: f32[3, 2, 3, 3] = normal(0, 0.3)
shared c1: f32[3] = full(0.1)

def conv_pool(x: f32[N, C, H, W], k: f32[F, C, KH, KW], b: f32[F]) {
    return relu(max_pool2d(conv2d(x, k, padding="same"), [2, 2]) + b[None, :, None, None])
}

fn loss(x: f32[N, 2, 6, 7], t: f32[N, 3, 3, 3]) -> f32 {
    l = mean((conv_pool(x, K1, c1) - t) ** 2)
    gK, gc, gx = grad(l, K1, c1, x)
    return l + sum(gK) + sum(gc) + sum(gx)
}
"""

LENET = """
shared K1: f32[4, 1, 3, 3] = normal(0, 0.3)
shared c1: f32[4] = full(0.1)
shared K2: f32[5, 4, 2, 2] = normal(0, 0.3)
shared c2: f32[5] = zeros()
shared W3: f32[20, 6] = glorot_uniform()
shared b3: f32[6] = zeros()
shared W4: f32[6, 10] = glorot_uniform()
shared b4: f32[10] = zeros()

def bias_relu(h: f32[N, F, H, W], b: f32[F]) {
    return relu(h + b[None, :, None, None])
}

def probs(x: f32[N, 1, 10, 10]) -> f32[N, 10] {
    h1 = bias_relu(max_pool2d(conv2d(x, K1), [2, 2], stride=[1, 2]), c1)      # [N, 4, 7, 4]
    h2 = bias_relu(max_pool2d(conv2d(h1, K2, stride=[2, 1]), [2, 2], stride=1), c2)  # [N, 5, 2, 2]
    h3 = tanh(flatten(h2, 1) @ W3 + b3)
    return softmax(h3 @ W4 + b4)
}

fn train(x: f32[N, 1, 10, 10], y: i32[N], lr: f32 = 0.05) -> f32 {
    loss = mean(categorical_crossentropy(probs(x), y))
    gK1, gc1, gK2, gc2, gW3, gb3, gW4, gb4 = grad(loss, K1, c1, K2, c2, W3, b3, W4, b4)
    K1 <- K1 - lr * gK1
    c1 <- c1 - lr * gc1
    K2 <- K2 - lr * gK2
    c2 <- c2 - lr * gc2
    W3 <- W3 - lr * gW3
    b3 <- b3 - lr * gb3
    W4 <- W4 - lr * gW4
    b4 <- b4 - lr * gb4
    return loss
}
"""

RNN = """
shared W: f32[4, 4] = normal(0, 0.5)
shared U: f32[3, 4] = normal(0, 0.5)
shared V: f32[4, 5] = normal(0, 0.5)
shared b: f32[4] = zeros()

fn loss(xs: f32[T, B, 3], ys: i32[T, B], s0: f32[B, 4]) -> f32 {
    ss, ps = scan (x in xs; s = s0) {
        s = tanh(b + s @ W + x @ U)
        yield s, softmax(s @ V)
    }
    l = mean(categorical_crossentropy(reshape(ps, [T * B, 5]), reshape(ys, [T * B])))
    gW, gU, gV, gs0 = grad(l, W, U, V, s0)
    return l + sum(gW) + sum(gU) + sum(gV) + sum(gs0)
}
"""

MISC = """
shared E: f32[7, 3] = normal(0, 1)
shared A: f32[3, 4] = normal(0, 1)

fn loss(i: i32[N], x: f32[N, 3], k: i32, lo: f32 = -0.5) -> f32 {
    e = E[i] * x                          # gather with label-like indices
    h = concat([e, x[:, ::-1]], axis=1) @ concat([A, A[::-1, :]], axis=0)
    z = stack([h, maximum(h, 0.1 * h)], axis=0)
    m = max(clip(z, lo, 1.5), axis=2) + min(abs(h), axis=0, keepdims=true)[0, :1]
    l = sum(m * sigmoid(transpose(z[1])[k])) + mean(where(h > 0, exp(h / 4), softplus(h)))
    gE, gA, gx = grad(l, E, A, x)
    return l + sum(gE) + sum(gA) + sum(gx)
}
"""

MODELS = {
    "logreg": LOGREG,
    "mlp": MLP,
    "conv_pool": CONV_POOL,
    "lenet": LENET,
    "rnn": RNN,
    "misc": MISC,
}


@pytest.mark.parametrize("source", list(MODELS.values()), ids=list(MODELS))
def test_model_gradients_match_finite_differences(source, request):
    name = request.node.callspec.id
    records = check_module(source, f"{name}.tg", size=3, n_dirs=2)
    assert records, "no gradient found"
    bad = [str(r) for r in records if not r.ok]
    assert not bad, "\n".join(bad)


def test_every_wrt_and_every_grad_gets_a_record():
    records = check_module(LENET, "lenet.tg", n_dirs=1)
    assert [r.wrt for r in records] == ["K1", "c1", "K2", "c2", "W3", "b3", "W4", "b4"]
    assert {(r.function, r.grad_index) for r in records} == {("train", 0)}
    line = 1 + LENET.split("\n").index(next(s for s in LENET.split("\n") if "= grad(" in s))
    assert records[0].loc is not None and (records[0].loc.file, records[0].loc.line) == (
        "lenet.tg",
        line,
    )
    two = check_module(MLP, "mlp.tg", n_dirs=1)
    assert [(r.function, r.wrt) for r in two] == [
        ("train", "W1"),
        ("train", "b1"),
        ("train", "W2"),
        ("train", "b2"),
        ("input_grad", "x"),
    ]
    assert "ok" in str(two[0]) and "mlp.tg:" in str(two[0])


def test_a_wrong_gradient_rule_is_reported(monkeypatch):
    d = REGISTRY["tg.tanh"]
    # d tanh = 1 - tanh, a plausible slip (the rule is 1 - tanh**2).
    monkeypatch.setattr(d, "vjp", lambda b, op, g: [b.mul(g, b.sub(b.like(1, g), op.results[0]))])
    records = check_module(MLP, "mlp.tg", n_dirs=1)
    failed = {r.wrt for r in records if not r.ok}
    assert failed == {"W1", "b1", "x"}  # W2, b2 are after the tanh
    assert all(r.error is None for r in records)


def test_generated_labels_index_in_range():
    # y indexes a class axis of 3 (one_hot) and rows of E (7) through a reshape:
    # any value >= 3 would make one_hot a zero row and change nothing, so check
    # the bound the generator picked through the gather bounds on E instead.
    src = """
shared E: f32[2, 3] = normal(0, 1)
fn f(y: i32[N, M], j: i32[N]) -> f32 {
    l = sum(E[reshape(y, [N * M])]) + sum(one_hot(j, 3) * E[0])
    return l + sum(grad(l, E))
}
"""
    records = check_module(src, "idx.tg", size=5)
    assert records and all(r.ok for r in records), records


def test_explicit_arguments_and_shared_values():
    args = {"x": np.linspace(-1, 1, 12).reshape(2, 6), "y": np.array([1, 3])}
    shared = {"W": np.full((6, 4), 0.2), "b": np.arange(4.0)}
    records = verify_grad(LOGREG, "train", args, shared=shared)
    assert [r.wrt for r in records] == ["W", "b"] and all(r.ok for r in records)


# -- second order -------------------------------------------------------------------------

HVP = """
shared W1: f64[3, 5] = normal(0, 0.7)
shared b1: f64[5] = normal(0, 0.1)
shared W2: f64[5, 4] = normal(0, 0.7)

def loss(x: f64[N, 3], y: i32[N]) -> f64 {
    h = tanh(x @ W1 + b1)
    return mean(categorical_crossentropy(softmax(h @ W2), y)) + 0.1 * sum(sigmoid(h) ** 2)
}

fn gradient(x: f64[N, 3], y: i32[N]) -> f64[3, 5] {
    return grad(loss(x, y), W1)
}

fn hvp(x: f64[N, 3], y: i32[N], v: f64[3, 5]) -> (f64[3, 5], f64[5, 4]) {
    g = grad(loss(x, y), W1)
    h1, h2 = grad(sum(g * v), W1, W2)
    return h1, h2
}
"""


def test_hessian_vector_product_matches_differences_of_the_gradient():
    m = api.loads(HVP)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 3))
    y = rng.integers(0, 4, size=6)
    v = rng.normal(size=(3, 5))
    hv, cross = m.hvp(x, y, v)
    W1 = m["W1"]
    h = 1e-5
    m["W1"] = W1 + h * v
    gp = m.gradient(x, y)
    m["W1"] = W1 - h * v
    gm = m.gradient(x, y)
    m["W1"] = W1
    np.testing.assert_allclose(hv, (gp - gm) / (2 * h), rtol=1e-6, atol=1e-9)
    # The mixed block d/dW2 <grad_W1, v>, against differences in W2's direction.
    W2 = m["W2"]
    d = rng.normal(size=W2.shape)
    m["W2"] = W2 + h * d
    gp = m.gradient(x, y)
    m["W2"] = W2 - h * d
    gm = m.gradient(x, y)
    m["W2"] = W2
    np.testing.assert_allclose(np.sum(cross * d), np.sum(v * (gp - gm)) / (2 * h), rtol=1e-6)


def test_hessian_vector_product_through_check_module():
    records = check_module(HVP, "hvp.tg", n_dirs=2)
    assert [(r.function, r.grad_index, r.wrt) for r in records] == [
        ("gradient", 0, "W1"),
        ("hvp", 0, "W1"),
        ("hvp", 1, "W1"),
        ("hvp", 1, "W2"),
    ]
    assert all(r.ok for r in records), [str(r) for r in records]

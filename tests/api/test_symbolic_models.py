"""The seed tutorial's models written with the Python API (irc.symbolic)
against the same models in `.tg`: the IR after the pipeline is the same up to
value names, and training gives the same numbers on the interpreter.

Both sides start from the same shared values: the Python side copies the
`.tg` module's initial state (zeros and seeded glorot_uniform), so every
float is expected to agree exactly.
"""

import re

import numpy as np
import pytest

import irc.api as api
import irc.symbolic as S
from irc.data import load_digits
from irc.ir.printer import print_op

LOGREG = """
shared W: f32[64, 10] = zeros()
shared b: f32[10]     = zeros()

def probs(x: f32[N, 64]) -> f32[N, 10] {
    return softmax(x @ W + b)
}

fn predict(x: f32[N, 64]) -> i32[N] {
    return argmax(probs(x), axis=1)
}

fn train(x: f32[N, 64], y: i32[N], lr: f32 = 0.1) -> f32 {
    loss = mean(categorical_crossentropy(probs(x), y))
    gW, gb = grad(loss, W, b)
    W <- W - lr * gW
    b <- b - lr * gb
    return loss
}
"""

MLP = """
seed 7
shared W1: f32[64, 32] = glorot_uniform()
shared b1: f32[32]     = zeros()
shared W2: f32[32, 10] = glorot_uniform()
shared b2: f32[10]     = zeros()

def probs(x: f32[N, 64]) -> f32[N, 10] {
    h = tanh(x @ W1 + b1)
    return softmax(h @ W2 + b2)
}

fn predict(x: f32[N, 64]) -> i32[N] {
    return argmax(probs(x), axis=1)
}

fn train(x: f32[N, 64], y: i32[N], lr: f32 = 0.1) -> f32 {
    loss = mean(categorical_crossentropy(probs(x), y))
    gW1, gb1, gW2, gb2 = grad(loss, W1, b1, W2, b2)
    W1 <- W1 - lr * gW1
    b1 <- b1 - lr * gb1
    W2 <- W2 - lr * gW2
    b2 <- b2 - lr * gb2
    return loss
}
"""

LENET = """
seed 3
shared K1: f32[20, 1, 3, 3] = glorot_uniform()
shared c1: f32[20]          = zeros()
shared W3: f32[180, 32]     = glorot_uniform()
shared b3: f32[32]          = zeros()
shared W4: f32[32, 10]      = glorot_uniform()
shared b4: f32[10]          = zeros()

def conv_pool(x: f32[N, C, H, W], k: f32[F, C, KH, KW], b: f32[F]) {
    return relu(max_pool2d(conv2d(x, k), [2, 2]) + b[None, :, None, None])
}

def probs(x: f32[N, 1, 8, 8]) -> f32[N, 10] {
    h1 = conv_pool(x, K1, c1)
    h2 = flatten(h1, 1)
    h3 = tanh(h2 @ W3 + b3)
    return softmax(h3 @ W4 + b4)
}

fn predict(x: f32[N, 1, 8, 8]) -> i32[N] {
    return argmax(probs(x), axis=1)
}

fn train(x: f32[N, 1, 8, 8], y: i32[N], lr: f32 = 0.1) -> f32 {
    loss = mean(categorical_crossentropy(probs(x), y))
    gK1, gc1, gW3, gb3, gW4, gb4 = grad(loss, K1, c1, W3, b3, W4, b4)
    K1 <- K1 - lr * gK1
    c1 <- c1 - lr * gc1
    W3 <- W3 - lr * gW3
    b3 <- b3 - lr * gb3
    W4 <- W4 - lr * gW4
    b4 <- b4 - lr * gb4
    return loss
}
"""

RNN = """
seed 5
const D = 7
const H = 16
shared W: f32[H, H] = glorot_uniform()
shared U: f32[D, H] = glorot_uniform()
shared V: f32[H, D] = glorot_uniform()
shared b: f32[H]    = zeros()
shared c: f32[D]    = zeros()

def seq_loss(xs: f32[T, B, D], ys: i32[T, B], s0: f32[B, H]) -> f32 {
    ss, ps = scan (x in xs; s = s0) {
        s = tanh(b + s @ W + x @ U)
        yield s, softmax(c + s @ V)
    }
    return mean(categorical_crossentropy(reshape(ps, [T * B, D]), reshape(ys, [T * B])))
}

fn loss(xs: f32[T, B, D], ys: i32[T, B], s0: f32[B, H]) -> f32 {
    return seq_loss(xs, ys, s0)
}

fn train(xs: f32[T, B, D], ys: i32[T, B], s0: f32[B, H], lr: f32 = 0.1) -> f32 {
    l = seq_loss(xs, ys, s0)
    gW, gU, gV, gb, gc = grad(l, W, U, V, b, c)
    W <- W - lr * gW
    U <- U - lr * gU
    V <- V - lr * gV
    b <- b - lr * gb
    c <- c - lr * gc
    return l
}
"""


def canonical(text: str) -> str:
    """IR text with values renamed %v0, %v1, ... in order of appearance, and
    the tg.read ops at the top of the function sorted by variable. (Reads at
    entry commute. The `.tg` front end orders them by name lookup, which
    depends on how the program is split into defs; Python does not show when
    a name is looked up, so the builder orders them by first use.)"""
    lines = text.splitlines()
    end = 1
    while end < len(lines) and " = tg.read " in lines[end]:
        end += 1
    lines[1:end] = sorted(lines[1:end], key=lambda ln: ln.split("{sym = ", 1)[1])
    text = "\n".join(lines)
    names: dict = {}

    def rename(m):
        return names.setdefault(m.group(0), f"%v{len(names)}")

    return re.sub(r'%(?:"[^"]*"|[A-Za-z0-9_.$]+)', rename, text)


def same_function(tg_module, fn: S.Function, name: str):
    want = canonical(print_op(tg_module._opt.lookup(name)))
    got = canonical(print_op(fn._opt.lookup(fn.name)))
    assert got == want


def shared_from(m, name):
    return S.shared(m[name], name=name)


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d["x_train"][:64], d["y_train"][:64], d["x_test"][:50], d["y_test"][:50]


def dense_model(m, names, body):
    """predict and train for a model `probs = body(x, *params)` over shared `names`."""
    params = [shared_from(m, n) for n in names]
    x = S.matrix("x", dims=("N", 64))
    y = S.vector("y", dtype="int32", dims=("N",))
    lr = S.scalar("lr")
    predict = S.function([x], S.argmax(body(x, *params), axis=1), name="predict")
    loss = S.mean(S.categorical_crossentropy(body(x, *params), y))
    grads = S.grad(loss, params)
    train = S.function(
        [x, y, S.In(lr, value=0.1)],
        loss,
        updates=[(p, p - lr * g) for p, g in zip(params, grads)],
        name="train",
    )
    return params, predict, train


def check_training(m, params, predict, train, xtr, ytr, xte, steps=3, lr=0.1):
    for _ in range(steps):
        np.testing.assert_array_equal(train(xtr, ytr, lr), m.train(xtr, ytr, lr))
    for p in params:
        np.testing.assert_array_equal(p.get_value(), m[p.name])
    np.testing.assert_array_equal(predict(xte), m.predict(xte))


def test_logistic_regression(digits):
    m = api.loads(LOGREG)

    def probs(x, W, b):
        return S.softmax(x @ W + b)

    params, predict, train = dense_model(m, ["W", "b"], probs)
    same_function(m, predict, "predict")
    same_function(m, train, "train")
    check_training(m, params, predict, train, *digits[:3])


def test_mlp(digits):
    m = api.loads(MLP)

    def probs(x, W1, b1, W2, b2):
        h = S.tanh(x @ W1 + b1)
        return S.softmax(h @ W2 + b2)

    params, predict, train = dense_model(m, ["W1", "b1", "W2", "b2"], probs)
    same_function(m, predict, "predict")
    same_function(m, train, "train")
    check_training(m, params, predict, train, *digits[:3])


class ConvPoolLayer:
    """The seed's layer class: a convolution, 2x2 max pooling, a bias, relu."""

    def __init__(self, k, b):
        self.k, self.b = k, b

    def __call__(self, x):
        return S.relu(S.max_pool2d(S.conv2d(x, self.k), [2, 2]) + self.b[None, :, None, None])


def test_lenet(digits):
    m = api.loads(LENET)
    names = ["K1", "c1", "W3", "b3", "W4", "b4"]
    params = [shared_from(m, n) for n in names]
    K1, c1, W3, b3, W4, b4 = params
    layer = ConvPoolLayer(K1, c1)

    def probs(x):
        h1 = layer(x)
        h2 = S.flatten(h1, 1)
        h3 = S.tanh(h2 @ W3 + b3)
        return S.softmax(h3 @ W4 + b4)

    x = S.tensor("x", "float32", ("N", 1, 8, 8))
    y = S.vector("y", dtype="int32", dims=("N",))
    lr = S.scalar("lr")
    predict = S.function([x], S.argmax(probs(x), axis=1), name="predict")
    loss = S.mean(S.categorical_crossentropy(probs(x), y))
    grads = S.grad(loss, params)
    train = S.function(
        [x, y, S.In(lr, value=0.1)],
        loss,
        updates=[(p, p - lr * g) for p, g in zip(params, grads)],
        name="train",
    )
    same_function(m, predict, "predict")
    same_function(m, train, "train")
    xtr, ytr, xte, _ = digits
    check_training(
        m, params, predict, train, xtr.reshape(-1, 1, 8, 8), ytr, xte.reshape(-1, 1, 8, 8), steps=2
    )


def test_rnn_with_scan():
    from irc.data.sequences import reber_batch

    m = api.loads(RNN)
    W, U, V, b, c = params = [shared_from(m, n) for n in ["W", "U", "V", "b", "c"]]
    D = 7
    xs = S.tensor3("xs", dims=("T", "B", D))
    ys = S.matrix("ys", dtype="int32", dims=("T", "B"))
    s0 = S.matrix("s0", dims=("B", 16))
    lr = S.scalar("lr")

    def step(x, s):
        s = S.tanh(b + s @ W + x @ U)
        return s, S.softmax(c + s @ V)

    (ss, ps), updates = S.scan(step, sequences=xs, outputs_info=[s0, None])
    assert updates == {}
    T, B = xs.shape[0], xs.shape[1]
    loss = S.mean(S.categorical_crossentropy(S.reshape(ps, [T * B, D]), S.reshape(ys, [T * B])))
    f_loss = S.function([xs, ys, s0], loss, name="loss")
    grads = S.grad(loss, params)
    train = S.function(
        [xs, ys, s0, S.In(lr, value=0.1)],
        loss,
        updates=[(p, p - lr * g) for p, g in zip(params, grads)],
        name="train",
    )
    same_function(m, f_loss, "loss")
    same_function(m, train, "train")
    data = reber_batch(8, T=20, seed=1)
    h0 = np.zeros((8, 16), np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(
            train(data["xs"], data["ys"], h0), m.train(data["xs"], data["ys"], h0)
        )
    for p in params:
        np.testing.assert_array_equal(p.get_value(), m[p.name])
    np.testing.assert_array_equal(
        f_loss(data["xs"], data["ys"], h0), m.loss(data["xs"], data["ys"], h0)
    )

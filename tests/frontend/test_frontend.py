"""Front end and interpreter: models of LANGUAGE.md (without grad) run on the
interpreter against plain NumPy; update semantics; indexing; defs; consts."""

import numpy as np
import pytest

import irc.api as api
from irc.ir.errors import CompileError

LOGREG_FWD = """
shared W: f32[64, 10] = normal(0, 0.1)
shared b: f32[10]     = zeros()

def probs(x: f32[N, 64]) -> f32[N, 10] {
    return softmax(x @ W + b)
}

fn predict(x: f32[N, 64]) -> i32[N] {
    return argmax(probs(x), axis=1)
}

fn loss(x: f32[N, 64], y: i32[N]) -> f32 {
    return mean(categorical_crossentropy(probs(x), y))
}
"""


def np_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def test_logreg_forward_matches_numpy():
    m = api.loads(LOGREG_FWD)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=7).astype(np.int32)
    W, b = m["W"], m["b"]
    p = np_softmax(x @ W + b)
    np.testing.assert_array_equal(m.predict(x), p.argmax(axis=1))
    ref = -np.log(p[np.arange(7), y]).mean()
    np.testing.assert_allclose(m.loss(x, y), ref, rtol=1e-5)
    assert m.predict(x).dtype == np.int32


MLP = """
seed 7
const H = 16
shared W1: f32[64, H] = glorot_uniform()
shared b1: f32[H] = zeros()
shared W2: f32[H, 10] = glorot_uniform()
shared b2: f32[10] = zeros()

def probs(x: f32[N, 64]) -> f32[N, 10] {
    h = tanh(x @ W1 + b1)
    return softmax(h @ W2 + b2)
}

fn forward(x: f32[N, 64]) -> f32[N, 10] { return probs(x) }
"""


def test_mlp_forward_and_define_override():
    m = api.loads(MLP, define={"H": 8})
    assert m["W1"].shape == (64, 8)
    x = np.random.default_rng(1).normal(size=(5, 64)).astype(np.float32)
    ref = np_softmax(np.tanh(x @ m["W1"] + m["b1"]) @ m["W2"] + m["b2"])
    np.testing.assert_allclose(m.forward(x), ref, rtol=1e-5, atol=1e-6)


def test_seed_makes_initialisers_reproducible():
    a, b = api.loads(MLP), api.loads(MLP)
    np.testing.assert_array_equal(a["W1"], b["W1"])
    c = api.loads(MLP, seed=8)
    assert not np.array_equal(a["W1"], c["W1"])
    limit = np.sqrt(6 / (64 + 16))
    assert np.abs(a["W1"]).max() <= limit


CNN = """
shared K1: f32[4, 1, 3, 3] = normal(0, 0.3)
shared c1: f32[4] = full(0.1)

def conv_pool(x: f32[N, C, H, W], k: f32[F, C, KH, KW], b: f32[F]) {
    return relu(max_pool2d(conv2d(x, k), [2, 2]) + b[None, :, None, None])
}

fn layer(x: f32[N, 1, 8, 8]) -> f32[N, 4, 3, 3] {
    return conv_pool(x, K1, c1)
}

fn flat(x: f32[N, 1, 8, 8]) -> f32[N, 36] {
    return flatten(conv_pool(x, K1, c1), 1)
}
"""


def np_conv_valid(x, k):
    n, c, h, w = x.shape
    f, _, kh, kw = k.shape
    out = np.zeros((n, f, h - kh + 1, w - kw + 1), np.float64)
    for i in range(h - kh + 1):
        for j in range(w - kw + 1):
            out[:, :, i, j] = np.einsum("nchw,fchw->nf", x[:, :, i : i + kh, j : j + kw], k)
    return out


def test_conv_pool_layer_matches_numpy():
    m = api.loads(CNN)
    x = np.random.default_rng(2).normal(size=(3, 1, 8, 8)).astype(np.float32)
    conv = np_conv_valid(x, m["K1"])
    pooled = conv[:, :, :6, :6].reshape(3, 4, 3, 2, 3, 2).max(axis=(3, 5))
    ref = np.maximum(pooled + m["c1"][None, :, None, None], 0)
    np.testing.assert_allclose(m.layer(x), ref, rtol=1e-4, atol=1e-5)
    assert m.flat(x).shape == (3, 36)


UPDATES = """
shared a: f32[3] = ones()
shared b: f32[3] = zeros()

fn step(d: f32) -> (f32[3], f32[3]) {
    a <- a + d
    b <- a * 2          # reads the value of a from before the call
    x = a               # still the old value
    return x, b
}
"""


def test_updates_read_old_values_and_apply_together():
    m = api.loads(UPDATES)
    x, b = m.step(1.0)
    np.testing.assert_array_equal(x, [1, 1, 1])
    np.testing.assert_array_equal(b, [0, 0, 0])  # outputs see the old b
    np.testing.assert_array_equal(m["a"], [2, 2, 2])
    np.testing.assert_array_equal(m["b"], [2, 2, 2])  # 2 * old a


INDEXING = """
const B = 2
shared X: f32[6, 4] = uniform(-1, 1)

fn batch(i: i32) -> f32[B, 4] { return X[i*B:(i+1)*B] }
fn pick(p: f32[N, K], y: i32[N]) -> f32[N] { return p[arange(N), y] }
fn basic(x: f32[N, 5]) -> (f32[N], f32[N, 2], f32[5], f32[1, N, 5], f32[N, 3]) {
    return x[:, 0], x[:, 1:5:2], x[-1], x[None], x[..., ::2]
}
"""


def test_indexing_matches_numpy():
    m = api.loads(INDEXING)
    X = m["X"]
    np.testing.assert_array_equal(m.batch(2), X[4:6])
    p = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.array([0, 2, 1, 1], np.int32)
    np.testing.assert_array_equal(m.pick(p, y), p[np.arange(4), y])
    x = np.arange(15, dtype=np.float32).reshape(3, 5)
    got = m.basic(x)
    for g, r in zip(got, (x[:, 0], x[:, 1:5:2], x[-1], x[None], x[..., ::2])):
        np.testing.assert_array_equal(g, r)


def test_runtime_slice_out_of_range_is_an_error():
    m = api.loads(INDEXING)
    with pytest.raises(Exception) as e:
        m.batch(3)
    assert "range" in str(e.value)


def test_weak_literals_follow_numpy2():
    m = api.loads("""
fn f(x: f32[N], k: i32[N]) -> (f32[N], f32[N], i32[N], f64[N]) {
    return x * 2, x / 3, k + 1, k * 0.5
}
""")
    x = np.array([1, 2], np.float32)
    k = np.array([3, 4], np.int32)
    a, b, c, d = m.f(x, k)
    assert a.dtype == np.float32 and b.dtype == np.float32 and c.dtype == np.int32
    assert d.dtype == np.float64  # as in NumPy 2: int32 array * 0.5 is float64
    np.testing.assert_allclose(d, [1.5, 2.0])


def test_named_dims_from_consts_and_expressions():
    m = api.loads("""
const D = 3
fn f(xs: f32[T, B, D]) -> f32[T*B, D] { return reshape(xs, [T * B, D]) }
fn g(x: f32[N, D]) -> f32 { return sum(x) / N }
""")
    xs = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    np.testing.assert_array_equal(m.f(xs), xs.reshape(8, 3))
    np.testing.assert_allclose(m.g(np.ones((5, 3), np.float32)), 3.0)


def test_scan_forward_matches_numpy_loop():
    m = api.loads("""
shared W: f32[4, 4] = normal(0, 0.5)
shared U: f32[3, 4] = normal(0, 0.5)
fn run(xs: f32[T, B, 3], s0: f32[B, 4]) -> (f32[T, B, 4], f32[T, B]) {
    ss, tot = scan (x in xs; s = s0) {
        s = tanh(s @ W + x @ U)
        yield s, sum(s, axis=1)
    }
    return ss, tot
}
fn power(v0: f32[4]) -> f32[5, 4] {
    return scan (; v = v0; steps = 5) { v = v @ W   yield v }
}
""")
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(6, 2, 3)).astype(np.float32)
    s0 = np.zeros((2, 4), np.float32)
    ss, tot = m.run(xs, s0)
    s, ref = s0, []
    for t in range(6):
        s = np.tanh(s @ m["W"] + xs[t] @ m["U"])
        ref.append(s)
    np.testing.assert_allclose(ss, np.stack(ref), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tot, np.stack(ref).sum(-1), rtol=1e-5, atol=1e-5)
    v0 = np.ones(4, np.float32)
    out = m.power(v0)
    v, ref = v0, []
    for _ in range(5):
        v = v @ m["W"]
        ref.append(v)
    np.testing.assert_allclose(out, np.stack(ref), rtol=1e-4, atol=1e-5)


def test_call_errors_name_the_argument_and_dim():
    m = api.loads(LOGREG_FWD)
    with pytest.raises(api.CallError, match="argument 'y': dimension N is 4"):
        m.loss(np.zeros((4, 64), np.float32), np.zeros(3, np.int32))
    with pytest.raises(api.CallError, match="rank 2"):
        m.loss(np.zeros(64, np.float32), np.zeros(3, np.int32))
    with pytest.raises(api.CallError, match="must be i32"):
        m.loss(np.zeros((4, 64), np.float32), np.zeros(4, np.float32))
    with pytest.raises(api.CallError, match="missing argument 'y'"):
        m.loss(np.zeros((4, 64), np.float32))
    with pytest.raises(TypeError):
        m.loss(1, 2, 3)
    with pytest.raises(ValueError):
        m["W"] = np.zeros((3, 3))


def test_shared_access_save_restore(tmp_path):
    m = api.loads(UPDATES)
    m["a"] = [5, 6, 7]
    np.testing.assert_array_equal(m["a"], [5, 6, 7])
    got = m["a"]
    got[0] = 100  # a copy: the module is unchanged
    assert m["a"][0] == 5
    path = tmp_path / "ck.npz"
    m.save(path)
    m.step(1.0)
    m.restore(path)
    np.testing.assert_array_equal(m["a"], [5, 6, 7])
    assert set(m.shared) == {"a", "b"}
    assert str(m.signature("step")) == "fn step(d: f32) -> (f32[3], f32[3])"


def test_compile_error_is_located():
    with pytest.raises(CompileError) as e:
        api.loads(
            "fn f(x: f32[N, 64], W: f32[100, 10]) -> f32[N, 10] {\n    return x @ W\n}\n",
            filename="m.tg",
        )
    err = e.value
    assert (err.file, err.line, err.column) == ("m.tg", 2, 12)
    assert "inner dimensions differ: f32[N, 64] @ f32[100, 10]" in err.message

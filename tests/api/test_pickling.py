"""pickle round trips of the Python API's objects (irc/pickling.py): every kind of
variable, expressions (kept as tg IR text), scan and grad graphs, compiled functions
and .tg modules; shared variables stay one object within one pickled object graph;
a pickle of another format is a clear error."""

import pickle

import numpy as np
import pytest

import irc
from irc import pickling
from irc.api import CallError

RNG = np.random.default_rng(3)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def roundtrip(obj):
    return pickle.loads(pickle.dumps(obj))


def test_shared_variable_keeps_value_name_dtype_and_shape():
    for value in (
        rand(3, 2),
        np.arange(4, dtype=np.int32),
        np.float64(2.5),
        np.array([True, False]),
    ):
        v = irc.shared(value, name="v")
        w = roundtrip(v)
        assert isinstance(w, irc.SharedVariable) and w.name == "v" and w.type == v.type
        np.testing.assert_array_equal(w.get_value(), v.get_value())


def test_shared_variable_pickles_its_current_value():
    W = irc.shared(np.zeros(3, np.float32), name="W")
    step = irc.function([], [], updates={W: W + 1}, backend="cpu")
    step()
    step()
    np.testing.assert_array_equal(roundtrip(W).get_value(), [2, 2, 2])


@pytest.mark.parametrize(
    "make",
    [
        lambda: irc.scalar("s"),
        lambda: irc.scalar("i", dtype="int64"),
        lambda: irc.vector("v", dtype="int32"),
        lambda: irc.matrix("m", dims=("N", 64)),
        lambda: irc.matrix("u"),
        lambda: irc.tensor3("t", "float64", ("T", None, 7)),
        lambda: irc.tensor4("images"),
        lambda: irc.tensor("b", "bool", (1, None)),
    ],
)
def test_inputs_keep_name_dtype_and_dims(make):
    v = make()
    w = roundtrip(v)
    assert w.kind == "input" and w.name == v.name and w.dtype == v.dtype and w.ndim == v.ndim
    for a, b in zip(v.type.shape, w.type.shape):
        assert isinstance(a, int) == isinstance(b, int)
        if isinstance(a, int) or not a.startswith(v.name):
            assert a == b  # sizes and named dims as they were; unknowns are fresh


def test_unknown_dims_shared_by_variables_stay_one():
    x, y = irc.matrix("x"), irc.vector("y", dtype="int32")
    irc.categorical_crossentropy(irc.softmax(x), y)  # y's length is x's rows
    x2, y2 = roundtrip((x, y))
    assert x2.type.shape[0] == y2.type.shape[0] != x.type.shape[0]
    W = irc.shared(rand(5, 2))
    x2 @ W  # the restored unknowns unify as any others
    assert x2.type.shape[1] == 5


def test_expression_graph_is_tg_ir_and_compiles():
    x, y = irc.matrix("x"), irc.vector("y", dtype="int32")
    W, b = irc.shared(rand(4, 3), name="W"), irc.shared(rand(3), name="b")
    p = irc.softmax(x @ W + b)
    cost = -irc.log(p)[irc.arange(y.shape[0]), y].mean()
    gW, gb = irc.grad(cost, [W, b])
    data = pickle.dumps({"x": x, "y": y, "p": p, "cost": cost, "gW": gW, "params": [W, b]})
    assert b"tg.matmul" in data and b"func.func" in data  # IR text, not Python internals
    o = pickle.loads(data)
    assert o["params"][0].kind == "shared"
    xv, yv = rand(6, 4), RNG.integers(0, 3, 6).astype(np.int32)
    want = irc.function([x, y], [p, cost, gW])(xv, yv)
    got = irc.function([o["x"], o["y"]], [o["p"], o["cost"], o["gW"]])(xv, yv)
    for a, b_ in zip(got, want):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-6)
    assert o["gW"].name == "gW"


class Layer:
    def __init__(self, W, x):
        self.W, self.out = W, x @ W


def test_shared_variables_stay_one_across_objects_of_one_pickle():
    W = irc.shared(np.zeros((2, 2), np.float32), name="W")
    x = irc.matrix("x")
    a, b, c = roundtrip((Layer(W, x), Layer(W, x), [W]))
    assert a.W is b.W is c[0]
    step = irc.function([], [], updates={a.W: a.W + 1})
    step()
    np.testing.assert_array_equal(c[0].get_value(), np.ones((2, 2)))
    f = irc.function([b.out.owner.inputs[0]], b.out)  # b.out reads the same W
    np.testing.assert_array_equal(f(np.eye(2, dtype=np.float32)), np.ones((2, 2)))
    assert roundtrip(W) is not W  # separate pickles make separate variables


def test_scan_graph_round_trip():
    xs, s0 = irc.tensor3("xs"), irc.matrix("s0")
    U = irc.shared(rand(4, 3), name="U")
    ss, _ = irc.scan(lambda x_t, s: irc.tanh(x_t @ U + s), sequences=xs, outputs_info=[s0])
    loss = ss[-1].sum()
    g = irc.grad(loss, U)
    xs2, s02, ss2, g2 = roundtrip((xs, s0, ss, g))
    X, S = rand(3, 2, 4), rand(2, 3)
    for a, b in zip(
        irc.function([xs2, s02], [ss2, g2])(X, S), irc.function([xs, s0], [ss, g])(X, S)
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_dims_and_dim_values_round_trip():
    x = irc.matrix("x", dims=("N", None))
    n, half = roundtrip((x.shape[0], x.shape[0] * 2))
    assert n == irc.Dim("N") and half == irc.Dim("2*N")
    x2, total = roundtrip((x, x.sum() / x.shape[0]))
    np.testing.assert_allclose(irc.function([x2], total)(np.ones((4, 3), np.float32)), 3.0)


@pytest.mark.parametrize("backend", ["interp", "cpu"])
def test_compiled_function_round_trip(backend):
    x = irc.matrix("x")
    W = irc.shared(rand(3, 2), name="W")
    lr = irc.scalar("lr")
    cost = (x @ W).sum()
    train = irc.function(
        [x, irc.In(lr, value=0.1)], cost, updates=[(W, W - lr * irc.grad(cost, W))], backend=backend
    )
    train(rand(2, 3))
    W2, train2 = roundtrip((W, train))
    assert train2.backend == backend and str(train2.signature) == str(train.signature)
    np.testing.assert_array_equal(W2.get_value(), W.get_value())
    xv = rand(2, 3)
    assert np.allclose(train2(xv), train(xv))
    np.testing.assert_allclose(W2.get_value(), W.get_value(), rtol=1e-6)  # updated the same
    with pytest.raises(CallError):
        train2(rand(2, 4))


def test_tg_module_round_trip():
    m = irc.loads("shared s: f32[2] = zeros()\nfn inc(a: f32) -> f32[2] { s <- s + a\n return s }")
    m.inc(2.0)
    m2 = roundtrip(m)
    np.testing.assert_array_equal(m2["s"], [2, 2])
    np.testing.assert_array_equal(m2.inc(1.0), [2, 2])
    np.testing.assert_array_equal(m2["s"], [3, 3])
    assert m2.backend == m.backend


def test_a_scan_argument_alone_is_refused():
    seen = []
    irc.scan(lambda x_t: seen.append(x_t) or x_t * 2, sequences=irc.vector("v"))
    with pytest.raises(pickle.PicklingError, match="scan step argument"):
        pickle.dumps(seen[0])


def test_another_format_is_a_clear_error(monkeypatch):
    x = irc.matrix("x")
    monkeypatch.setattr(pickling, "FORMAT", 99)
    data = pickle.dumps((irc.shared(np.zeros(2)), x, x * 2))
    monkeypatch.setattr(pickling, "FORMAT", 1)
    with pytest.raises(pickling.PickleFormatError) as info:
        pickle.loads(data)
    msg = str(info.value)
    assert "pickle format 99" in msg and "reads format 1" in msg and irc.__version__ in msg

"""irc.theano: Theano's names over irc, each checked against NumPy on the interpreter
(the tutorials of test_theano_tutorials.py run on the compiled backends), and the
Theano features irc does not have raising NotImplementedError that names them."""

import importlib
from collections import OrderedDict

import numpy as np
import pytest

import irc
import irc.theano as theano
import irc.theano.tensor as T
from irc.theano.tensor.nnet import conv2d
from irc.theano.tensor.signal import downsample, pool

RNG = np.random.default_rng(7)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_constructors_and_dtypes():
    assert theano.config.floatX == "float32"
    cases = {
        T.matrix: ("float32", 2), T.vector: ("float32", 1), T.scalar: ("float32", 0),
        T.tensor3: ("float32", 3), T.tensor4: ("float32", 4), T.fmatrix: ("float32", 2),
        T.dmatrix: ("float64", 2), T.ivector: ("int32", 1), T.lvector: ("int64", 1),
        T.iscalar: ("int32", 0), T.lscalar: ("int64", 0), T.row: ("float32", 2),
    }  # fmt: skip
    for make, (dtype, ndim) in cases.items():
        v = make("v")
        assert v.dtype == dtype and v.ndim == ndim, make
        assert isinstance(v.dtype, str)
    assert T.row().type.shape[0] == 1 and T.col().type.shape[1] == 1
    t = T.TensorType("float64", (False, True))("t")
    assert t.dtype == "float64" and t.type.shape[1] == 1
    assert T.matrix(dtype="int32").dtype.startswith("int")


def test_logistic_regression_snippet_agrees_with_numpy():
    x, y = T.matrix("x"), T.ivector("y")
    W = theano.shared(np.zeros((8, 3), dtype=theano.config.floatX), name="W", borrow=True)
    b = theano.shared(np.zeros(3, dtype=theano.config.floatX), name="b")
    p = T.nnet.softmax(T.dot(x, W) + b)
    y_pred = T.argmax(p, axis=1)
    cost = -T.mean(T.log(p)[T.arange(y.shape[0]), y])
    errors = T.mean(T.neq(y_pred, y))
    g_W, g_b = T.grad(cost=cost, wrt=W), T.grad(cost=cost, wrt=b)
    train = theano.function([x, y], cost, updates=[(W, W - 0.5 * g_W), (b, b - 0.5 * g_b)])
    evaluate = theano.function(inputs=[x, y], outputs=[cost, errors])
    xv, yv = rand(12, 8), RNG.integers(0, 3, 12).astype(np.int32)
    Wn, bn = np.zeros((8, 3), np.float32), np.zeros(3, np.float32)
    for _ in range(3):
        pn = np_softmax(xv @ Wn + bn)
        loss = -np.log(pn[np.arange(12), yv]).mean()
        np.testing.assert_allclose(train(xv, yv), loss, rtol=1e-5)
        d = pn.copy()
        d[np.arange(12), yv] -= 1
        Wn, bn = Wn - 0.5 * xv.T @ d / 12, bn - 0.5 * d.sum(0) / 12
    np.testing.assert_allclose(W.get_value(), Wn, rtol=1e-4, atol=1e-6)
    c, e = evaluate(xv, yv)
    pn = np_softmax(xv @ Wn + bn)
    np.testing.assert_allclose(e, (pn.argmax(1) != yv).mean(), rtol=1e-6)
    W.set_value(np.ones((8, 3), np.float32))
    assert W.get_value(borrow=True).sum() == 24


def test_function_updates_as_a_dict_and_givens():
    data = theano.shared(np.arange(20, dtype=np.float32).reshape(10, 2), borrow=True)
    count = theano.shared(np.int32(0), name="count")
    x = T.matrix("x")
    index = T.lscalar()
    batch = 2
    f = theano.function(
        inputs=[index],
        outputs=x.sum(),
        updates=OrderedDict([(count, count + 1)]),
        givens={x: data[index * batch : (index + 1) * batch]},
    )
    assert f(1) == np.arange(20)[4:8].sum() and f(4) == np.arange(20)[16:].sum()
    assert count.get_value() == 2


def test_elementwise_and_reductions():
    x, y = T.matrix("x"), T.matrix("y")
    xv, yv = rand(3, 4), rand(3, 4)
    cases = [
        (T.sqr(x) + T.sqrt(T.abs_(y)), xv**2 + np.sqrt(np.abs(yv))),
        (T.exp(x) * T.tanh(y), np.exp(xv) * np.tanh(yv)),
        (T.nnet.sigmoid(x) + T.nnet.relu(y), 1 / (1 + np.exp(-xv)) + np.maximum(yv, 0)),
        (T.switch(T.lt(x, y), x, y), np.where(xv < yv, xv, yv)),
        (T.cast(T.gt(x, 0), "float32") + T.eq(x, x), (xv > 0) + 1.0),
        (T.concatenate([x, y], axis=1), np.concatenate([xv, yv], 1)),
        (T.zeros_like(x) + T.ones_like(y), np.ones((3, 4))),
        (T.sum(x, axis=0), xv.sum(0)),
        (T.mean(x, axis=1, keepdims=True), xv.mean(1, keepdims=True)),
        (T.max(x, axis=1), xv.max(1)),
        (x.max(), xv.max()),
        (x.T.dot(y), xv.T @ yv),
        (x.reshape((x.shape[1], x.shape[0])).sum(axis=0), xv.reshape(4, 3).sum(0)),
        (x.mean(), xv.mean()),
        (T.arange(x.shape[0]) + 0.5, np.arange(3) + 0.5),
        (x[1 : x.shape[0]], xv[1:]),
        (T.nnet.categorical_crossentropy(T.nnet.softmax(x), T.nnet.softmax(y)),
         -(np_softmax(yv) * np.log(np_softmax(xv))).sum(1)),
    ]  # fmt: skip
    f = theano.function([x, y], [c for c, _ in cases], on_unused_input="ignore")
    for got, (_, want) in zip(f(xv, yv), cases):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_scan_returns_outputs_and_updates():
    xs, s0 = T.tensor3("xs"), T.matrix("s0")
    U = theano.shared(rand(4, 5), name="U")
    ss, updates = theano.scan(lambda x_t, s: T.tanh(T.dot(x_t, U) + s), sequences=xs,
                              outputs_info=[s0])  # fmt: skip
    assert len(updates) == 0
    f = theano.function([xs, s0], ss[-1], updates=updates)
    X, S = rand(3, 2, 4), rand(2, 5)
    s = S
    for t in range(3):
        s = np.tanh(X[t] @ U.get_value() + s)
    np.testing.assert_allclose(f(X, S), s, rtol=1e-5, atol=1e-6)


def np_conv2d(x, w, pad=0, stride=1, flip=True):
    if flip:
        w = w[:, :, ::-1, ::-1]
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, f, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return out


def test_conv2d_and_pooling():
    images = T.tensor4("images")
    Wv = rand(3, 2, 3, 3)
    W = theano.shared(Wv, name="W")
    xv = rand(2, 2, 6, 6)
    out_valid = conv2d(
        input=images, filters=W, filter_shape=(3, 2, 3, 3), input_shape=(None, 2, 6, 6)
    )
    out_half = conv2d(images, W, border_mode="half", subsample=(2, 2))
    out_full = conv2d(images, W, border_mode="full", filter_flip=False)
    pooled = pool.pool_2d(input=out_valid, ws=(2, 2), ignore_border=True)
    old = downsample.max_pool_2d(out_valid, ds=(2, 2), ignore_border=True)
    assert images.type.shape[1:] == (2, 6, 6)
    f = theano.function([images], [out_valid, out_half, out_full, pooled, old])
    v, h, fu, p, o = f(xv)
    np.testing.assert_allclose(v, np_conv2d(xv, Wv), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h, np_conv2d(xv, Wv, pad=1, stride=2), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fu, np_conv2d(xv, Wv, pad=2, flip=False), rtol=1e-4, atol=1e-5)
    want = np_conv2d(xv, Wv).reshape(2, 3, 2, 2, 2, 2).max(axis=(3, 5))
    np.testing.assert_allclose(p, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(o, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(irc.CompileError):
        conv2d(T.tensor4("i2"), W, input_shape=(None, 5, 6, 6))  # 5 channels, filters have 2


@pytest.mark.parametrize(
    "call, feature",
    [
        (lambda: T.nnet.conv3d, "conv3d"),
        (lambda: theano.gpuarray, "gpuarray"),
        (lambda: importlib.import_module("irc.theano.gpuarray"), "gpuarray"),
        (lambda: T.shared_randomstreams, "shared_randomstreams"),
        (lambda: T.bmatrix("b"), "int8"),
        (lambda: T.set_subtensor, "set_subtensor"),
        (lambda: conv2d(T.tensor4(), T.tensor4(), filter_dilation=(2, 2)), "filter_dilation"),
        (lambda: pool.pool_2d(T.tensor4(), ws=(2, 2), mode="average_inc_pad"), "average_inc_pad"),
        (lambda: pool.pool_2d(T.tensor4(), ws=(2, 2), ignore_border=False), "ignore_border"),
        (lambda: theano.function([], [], mode="DebugMode"), "DebugMode"),
        (lambda: T.grad(T.scalar(), T.scalar(), consider_constant=[1]), "consider_constant"),
        (lambda: setattr(theano.config, "device", "cuda"), "cuda"),
    ],
)
def test_missing_features_raise_not_implemented(call, feature):
    with pytest.raises(NotImplementedError, match=feature):
        call()


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError):
        T.no_such_function
    with pytest.raises(AttributeError):
        theano.no_such_thing

"""The Python builder API (irc.symbolic) through the `irc` namespace:
variables and NumPy-like expressions (checked against NumPy on the
interpreter), errors located at the user's line, shared variables,
updates, givens, substitution, grad, scan, the call boundary and the
inspection helpers.
"""

import inspect
import re
import sys

import numpy as np
import pytest

import irc
from irc.api import CallError

CompileError = irc.CompileError


def here(offset=0):
    """The line of the caller (plus offset): where an expression was made."""
    return inspect.currentframe().f_back.f_lineno + offset


def run(outputs, feeds):
    """Compile `outputs` with the inputs of `feeds` ({var: value}) and run them."""
    fn = irc.function(list(feeds), outputs, on_unused_input="ignore")
    return fn(*feeds.values())


# -- variables -----------------------------------------------------------------------------------


def test_variables_and_types():
    assert str(irc.scalar("s").type) == "f32"
    assert str(irc.vector("v", "int32", ("N",)).type) == "i32[N]"
    assert str(irc.matrix("m", dims=("N", 64)).type) == "f32[N, 64]"
    assert str(irc.tensor3("t", "float64", ("T", "B", 7)).type) == "f64[T, B, 7]"
    assert str(irc.tensor4("i", np.float32, ("N", 1, 8, 8)).type) == "f32[N, 1, 8, 8]"
    assert str(irc.tensor("u", "bool", (3,)).type) == "bool[3]"
    assert str(irc.matrix("x", dims=(None, 64)).type) == "f32[x_0, 64]"
    x = irc.matrix("x", dims=("N", 64))
    assert x.ndim == 2 and x.dtype == "float32" and x.dtype == np.float32
    assert x.shape == (irc.Dim("N"), 64)
    assert x.name == "x"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: irc.matrix("x", dims=("N",)), "has 2 dims, got 1"),
        (lambda: irc.vector("x", dims=("T*B",)), "must be integers or names"),
        (lambda: irc.vector("x", dims=(-1,)), "bad dimension"),
    ],
)
def test_variable_errors(make, message):
    with pytest.raises(CompileError, match=re.escape(message)):
        make()


def test_bad_dtype_and_missing_dims():
    with pytest.raises(TypeError, match="unknown dtype"):
        irc.scalar("x", "float16")
    with pytest.raises(TypeError, match="give the dims"):
        irc.tensor("x")


def test_variables_are_hashable_and_have_no_truth_value():
    x = irc.vector("x", dims=("N",))
    d = {x: 1}
    assert d[x] == 1
    with pytest.raises(TypeError, match="no truth value"):
        bool(x > 0)
    with pytest.raises(TypeError, match="cannot be iterated"):
        list(x)
    with pytest.raises(TypeError, match="has no value"):
        np.asarray(x)


# -- expressions against NumPy ----------------------------------------------------------------------

X = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5) / 3
V = np.array([0.5, -1.0, 2.0, 1.5], np.float32)
I = np.array([2, 0, 1], np.int32)  # noqa: E741


def _vars():
    return (
        irc.matrix("x", dims=("N", 4)),
        irc.vector("v", dims=(4,)),
        irc.vector("i", "int32", ("N",)),
    )


CASES = {
    "x + v": (lambda x, v, i: x + v, lambda: X + V),
    "2 * x": (lambda x, v, i: 2 * x, lambda: 2 * X),
    "x / 2": (lambda x, v, i: x / 2, lambda: X / 2),
    "1 - x": (lambda x, v, i: 1 - x, lambda: 1 - X),
    "x ** 2": (lambda x, v, i: x**2, lambda: X**2),
    "2 ** v": (lambda x, v, i: 2**v, lambda: 2**V),
    "-x": (lambda x, v, i: -x, lambda: -X),
    "+x": (lambda x, v, i: +x, lambda: X),
    "abs(x)": (lambda x, v, i: abs(x), lambda: np.abs(X)),
    "x @ v": (lambda x, v, i: x @ v, lambda: X @ V),
    "v @ x.T": (lambda x, v, i: v @ x.T, lambda: V @ X.T),
    "x < 0": (lambda x, v, i: x < 0, lambda: X < 0),
    "x >= v": (lambda x, v, i: x >= v, lambda: X >= V),
    "x == v": (lambda x, v, i: x == v, lambda: X == V),
    "x != 0": (lambda x, v, i: x != 0, lambda: X != 0),
    "(x > 0) & (v > 0)": (lambda x, v, i: (x > 0) & (v > 0), lambda: (X > 0) & (V > 0)),
    "(x > 0) | (v > 0)": (lambda x, v, i: (x > 0) | (v > 0), lambda: (X > 0) | (V > 0)),
    "~(x > 0)": (lambda x, v, i: ~(x > 0), lambda: ~(X > 0)),
    "i + 1.5": (lambda x, v, i: i + 1.5, lambda: I + 1.5),
    "i * 2": (lambda x, v, i: i * 2, lambda: I * 2),
    "i / 2": (lambda x, v, i: i / 2, lambda: I / 2),
    "np.float64(2) * x": (lambda x, v, i: np.float64(2) * x, lambda: np.float64(2) * X),
    "array + x": (lambda x, v, i: np.ones(4, np.float32) + x, lambda: np.ones(4, np.float32) + X),
    "x + [1, 2, 3, 4]": (
        lambda x, v, i: x + [1, 2, 3, 4],
        lambda: X + np.array([1, 2, 3, 4], np.float32),
    ),
    "x[:, 0]": (lambda x, v, i: x[:, 0], lambda: X[:, 0]),
    "x[-1]": (lambda x, v, i: x[-1], lambda: X[-1]),
    "x[1:, ::2]": (lambda x, v, i: x[1:, ::2], lambda: X[1:, ::2]),
    "x[::-1]": (lambda x, v, i: x[::-1], lambda: X[::-1]),
    "x[None, :, None]": (lambda x, v, i: x[None, :, None], lambda: X[None, :, None]),
    "x[..., 1]": (lambda x, v, i: x[..., 1], lambda: X[..., 1]),
    "x[[2, 0]]": (lambda x, v, i: x[[2, 0]], lambda: X[[2, 0]]),
    "x[arange, i]": (lambda x, v, i: x[irc.arange(x.shape[0]), i], lambda: X[np.arange(3), I]),
    "x.sum()": (lambda x, v, i: x.sum(), lambda: X.sum()),
    "x.sum(axis=1)": (lambda x, v, i: x.sum(axis=1), lambda: X.sum(axis=1)),
    "x.mean(0, keepdims)": (
        lambda x, v, i: x.mean(axis=0, keepdims=True),
        lambda: X.mean(axis=0, keepdims=True),
    ),
    "x.max(1)": (lambda x, v, i: x.max(axis=1), lambda: X.max(axis=1)),
    "x.min()": (lambda x, v, i: x.min(), lambda: X.min()),
    "x.argmax(1)": (lambda x, v, i: x.argmax(axis=1), lambda: X.argmax(axis=1).astype(np.int32)),
    "x.argmin()": (lambda x, v, i: x.argmin(), lambda: np.int32(X.argmin())),
    "x.reshape(2, -1)": (lambda x, v, i: x.reshape((x.shape[0] * 2, -1)), lambda: X.reshape(6, -1)),
    "x.reshape(-1)": (lambda x, v, i: x.reshape(-1), lambda: X.reshape(-1)),
    "x.flatten()": (lambda x, v, i: x.flatten(), lambda: X.flatten()),
    "x.T": (lambda x, v, i: x.T, lambda: X.T),
    "x.transpose(1, 0)": (lambda x, v, i: x.transpose(1, 0), lambda: X.transpose(1, 0)),
    "x.astype(int32)": (lambda x, v, i: x.astype("int32"), lambda: X.astype(np.int32)),
    "x.clip(-1, 1)": (lambda x, v, i: x.clip(-1, 1), lambda: X.clip(-1, 1)),
    "x.dot(v)": (lambda x, v, i: x.dot(v), lambda: X.dot(V)),
    "x.sum() / x.shape[0]": (lambda x, v, i: x.sum() / x.shape[0], lambda: X.sum() / np.float32(3)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_operators_and_methods_match_numpy(name):
    build, ref = CASES[name]
    x, v, i = _vars()
    got = run(build(x, v, i), {x: X, v: V, i: I})
    want = ref()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.asarray(got).dtype == np.asarray(want).dtype


def _softmax(a, axis=-1):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


BUILTINS = {
    "exp": (lambda x: irc.exp(x), lambda: np.exp(X)),
    "log": (lambda x: irc.log(abs(x) + 1), lambda: np.log(np.abs(X) + 1)),
    "log1p": (lambda x: irc.log1p(abs(x)), lambda: np.log1p(np.abs(X))),
    "sqrt": (lambda x: irc.sqrt(abs(x)), lambda: np.sqrt(np.abs(X))),
    "tanh": (lambda x: irc.tanh(x), lambda: np.tanh(X)),
    "sigmoid": (lambda x: irc.sigmoid(x), lambda: 1 / (1 + np.exp(-X))),
    "relu": (lambda x: irc.relu(x), lambda: np.maximum(X, 0)),
    "softplus": (lambda x: irc.softplus(x), lambda: np.log1p(np.exp(X))),
    "square": (lambda x: irc.square(x), lambda: X * X),
    "sin": (lambda x: irc.sin(x), lambda: np.sin(X)),
    "cos": (lambda x: irc.cos(x), lambda: np.cos(X)),
    "sign": (lambda x: irc.sign(x), lambda: np.sign(X)),
    "neg": (lambda x: irc.neg(x), lambda: -X),
    "abs": (lambda x: irc.abs(x), lambda: np.abs(X)),
    "maximum": (lambda x: irc.maximum(x, 0.5), lambda: np.maximum(X, 0.5)),
    "minimum": (lambda x: irc.minimum(0.5, x), lambda: np.minimum(0.5, X)),
    "where": (lambda x: irc.where(x > 0, x, 0), lambda: np.where(X > 0, X, np.float32(0))),
    "clip": (lambda x: irc.clip(x, -1, 1), lambda: np.clip(X, -1, 1)),
    "cast": (lambda x: irc.cast(x, "f64"), lambda: X.astype(np.float64)),
    "sum": (lambda x: irc.sum(x, axis=[0, 1]), lambda: X.sum()),
    "mean": (lambda x: irc.mean(x, axis=1), lambda: X.mean(axis=1)),
    "max": (lambda x: irc.max(x, axis=0), lambda: X.max(axis=0)),
    "min": (lambda x: irc.min(x), lambda: X.min()),
    "argmax": (lambda x: irc.argmax(x, axis=0), lambda: X.argmax(axis=0).astype(np.int32)),
    "argmin": (lambda x: irc.argmin(x, axis=1), lambda: X.argmin(axis=1).astype(np.int32)),
    "dot": (lambda x: irc.dot(x, x.T), lambda: X @ X.T),
    "matmul": (lambda x: irc.matmul(x.T, x), lambda: X.T @ X),
    "transpose": (lambda x: irc.transpose(x), lambda: X.T),
    "reshape": (lambda x: irc.reshape(x, [2, x.shape[0] * 2]), lambda: X.reshape(2, 6)),
    "flatten": (lambda x: irc.flatten(x[None], 1), lambda: X.reshape(1, 12)),
    "concat": (
        lambda x: irc.concat([x, x * 2], axis=1),
        lambda: np.concatenate([X, X * 2], axis=1),
    ),
    "stack": (lambda x: irc.stack([x, 1.0 - x]), lambda: np.stack([X, 1 - X])),
    "arange": (lambda x: irc.arange(x.shape[1]), lambda: np.arange(4, dtype=np.int32)),
    "one_hot": (
        lambda x: irc.one_hot(x.argmax(axis=1), 4),
        lambda: np.eye(4, dtype=np.float32)[X.argmax(1)],
    ),
    "zeros": (lambda x: irc.zeros([x.shape[0], 2]), lambda: np.zeros((3, 2), np.float32)),
    "ones": (lambda x: irc.ones([2], "int32"), lambda: np.ones(2, np.int32)),
    "full": (lambda x: irc.full([2, 2], 7.0), lambda: np.full((2, 2), 7, np.float32)),
    "softmax": (lambda x: irc.softmax(x), lambda: _softmax(X)),
    "log_softmax": (lambda x: irc.log_softmax(x, axis=0), lambda: np.log(_softmax(X, 0))),
    "categorical_crossentropy": (
        lambda x: irc.categorical_crossentropy(irc.softmax(x), x.argmin(axis=1)),
        lambda: -np.log(_softmax(X)[np.arange(3), X.argmin(axis=1)]),
    ),
    "conv1d": (
        lambda x: irc.conv1d(x.T[None], np.ones((2, 4, 2), np.float32), padding="same"),
        lambda: _conv1d_ref(X.T[None], np.ones((2, 4, 2), np.float32)),
    ),
    "conv2d": (
        lambda x: irc.conv2d(x[None, None], np.ones((1, 1, 2, 2), np.float32)),
        lambda: (X[:-1, :-1] + X[1:, :-1] + X[:-1, 1:] + X[1:, 1:])[None, None],
    ),
    "max_pool2d": (
        lambda x: irc.max_pool2d(x[None], [1, 2]),
        lambda: X.reshape(1, 3, 2, 2).max(axis=3),
    ),
}


def _conv1d_ref(x, w):
    from irc.ops.nn import _conv1d

    return _conv1d(x, w, padding="same")


@pytest.mark.parametrize("name", list(BUILTINS))
def test_builtins_match_numpy(name):
    build, ref = BUILTINS[name]
    x = irc.matrix("x", dims=("N", 4))
    got = run(build(x), {x: X})
    want = ref()
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    assert np.asarray(got).dtype == np.asarray(want).dtype


def test_numpy_functions_call_the_methods():
    x = irc.matrix("x", dims=("N", 4))
    for build, want in [
        (np.sum(x), X.sum()),
        (np.mean(x, axis=1), X.mean(axis=1)),
        (np.max(x, axis=0), X.max(axis=0)),
        (np.min(x), X.min()),
        (np.argmax(x, axis=1), X.argmax(axis=1).astype(np.int32)),
        (np.reshape(x, (-1,)), X.reshape(-1)),
        (np.transpose(x), X.T),
        (np.clip(x, -1, 1), np.clip(X, -1, 1)),
        (np.sum(x, dtype=np.float64), X.sum(dtype=np.float64)),
    ]:
        got = run(build, {x: X})
        np.testing.assert_allclose(got, want, rtol=1e-6)
        assert np.asarray(got).dtype == np.asarray(want).dtype
    with pytest.raises(CompileError, match="out= is not supported"):
        np.sum(x, out=np.zeros(()))


def test_weak_python_scalars_follow_numpy2():
    x = irc.vector("x", dims=("N",))
    i = irc.vector("i", "int32", ("N",))
    assert (x * 0.5).type.dtype.name == "f32"
    assert (x * np.float64(0.5)).type.dtype.name == "f64"
    assert (i * 2).type.dtype.name == "i32"
    assert (i * 2.0).type.dtype.name == "f64"
    assert (i / 2).type.dtype.name == "f64"


def test_named_dims_fold():
    t = irc.tensor3("t", dims=("T", "B", 7))
    T, B, D = t.shape
    assert D == 7 and isinstance(T, irc.Dim)
    assert T * B == irc.Dim("B*T") and str(T * B - 1) == "B*T-1"
    assert (T * B) // 1 == T * B
    assert t.reshape((T * B, D)).type.shape == ("B*T", 7)
    with pytest.raises(TypeError, match="no value until"):
        int(T)
    got = run(t.sum() / T, {t: np.ones((2, 3, 7), np.float32)})
    assert got == pytest.approx(21.0)


def test_dynamic_index_and_slice():
    data = irc.shared(np.arange(40, dtype=np.float32).reshape(10, 4), name="data")
    i = irc.scalar("i", "int32")
    f = irc.function([i], [data[i], data[i * 3 : i * 3 + 3], data[2 * i + 1 : (i + 1) * 2 + 1, -1]])
    row, block, col = f(2)
    ref = np.arange(40, dtype=np.float32).reshape(10, 4)
    np.testing.assert_array_equal(row, ref[2])
    np.testing.assert_array_equal(block, ref[6:9])
    np.testing.assert_array_equal(col, ref[5:7, -1])


@pytest.mark.parametrize(
    "index, message",
    [
        (lambda x, i: x[0, 0, 0], "too many indices (3)"),
        (lambda x, i: x[:, 7], "out of range for axis 1 of size 4"),
        (lambda x, i: x[True], "boolean indices"),
        (lambda x, i: x[..., ...], "only one '...'"),
        (lambda x, i: x[i : i * 2], "cannot work out the length"),
        (lambda x, i: x[:, 1.5], "cannot index with the number 1.5"),
        (lambda x, i: x[x > 0], "indices must be integers"),
    ],
)
def test_index_errors(index, message):
    x = irc.matrix("x", dims=("N", 4))
    i = irc.scalar("i", "int32")
    with pytest.raises(CompileError, match=re.escape(message)):
        index(x, i)


def test_unsupported_operators():
    x = irc.vector("x", dims=("N",))
    with pytest.raises(CompileError, match="operator '//' is not supported"):
        x // 2
    with pytest.raises(TypeError):
        x + "a"
    with pytest.raises(TypeError, match="immutable"):
        x[0] = 1


# -- locations --------------------------------------------------------------------------------------


def test_shape_error_points_at_the_users_line():
    x = irc.matrix("x", dims=("N", 64))
    w = irc.matrix("w", dims=(100, 10))
    line = here(1)
    with pytest.raises(CompileError) as info:
        y = irc.tanh(x @ w)  # noqa: F841
    e = info.value
    assert e.loc.file == __file__ and e.loc.line == line + 1
    assert e.loc.col == len("        y = irc.tanh(") + 1
    text = e.format()
    assert text.splitlines()[0].endswith(
        "error: `@`: inner dimensions differ: f32[N, 64] @ f32[100, 10]"
    )
    assert "y = irc.tanh(x @ w)" in text and "^" in text


def _layer(x, w):
    return irc.relu(x @ w)  # the line an error inside a helper points at


def test_error_inside_a_helper_points_into_the_helper():
    x = irc.matrix("x", dims=("N", 3))
    with pytest.raises(CompileError) as info:
        _layer(x, irc.matrix("w", dims=(4, 2)))
    assert info.value.loc.line == _layer.__code__.co_firstlineno + 1


def test_unknown_dims_conflict_gets_a_hint():
    x = irc.matrix("x")
    W = irc.shared(np.zeros((64, 10), np.float32), name="W")
    x @ W  # binds x's last dim to 64
    with pytest.raises(CompileError) as info:
        x @ irc.shared(np.zeros((32, 10), np.float32), name="W2")
    assert "inner dimensions differ" in info.value.message
    assert "'x' was made without dims" in info.value.hint
    assert ", 64]" in info.value.hint


def test_pass_errors_point_at_the_grad_call():
    x = irc.vector("x", dims=("N",))
    u = irc.shared(np.zeros(3, np.float32), name="u")
    line = here(1)
    g = irc.grad(x.sum(), u)
    with pytest.raises(CompileError, match="does not depend on 'u'") as info:
        irc.function([x], g)
    assert (info.value.loc.file, info.value.loc.line) == (__file__, line)


def test_ir_locations_are_the_users_lines():
    x = irc.vector("x", dims=("N",))
    line = here(1)
    y = irc.exp(x) * 2
    text = irc.function([x], y).ir(stage="tg", locs=True)
    assert f'tg.exp %x : f32[N] loc("{__file__}":{line}:9)' in text
    assert f'tg.mul %0, %1 : f32[N] loc("{__file__}":{line}:9)' in text


# -- shared variables, updates -------------------------------------------------------------------------


def test_shared_values():
    a = np.arange(3, dtype=np.float32)
    s = irc.shared(a, name="s")
    a[0] = 100
    assert s.get_value()[0] == 0  # copied in
    got = s.get_value()
    got[1] = 100
    assert s.get_value()[1] == 1  # copied out
    assert s.type.shape == (3,) and s.dtype == np.float32
    assert irc.shared(0.5).dtype == np.float32
    assert irc.shared(3).dtype == np.int32
    assert irc.shared([1.0, 2.0]).dtype == np.float32
    assert irc.shared(np.zeros(2)).dtype == np.float64
    assert irc.shared(np.zeros(2, np.int64)).dtype == np.int64
    assert irc.shared(1, dtype="float64").dtype == np.float64
    with pytest.raises(ValueError, match="shape is fixed"):
        s.set_value(np.zeros(4))
    s.set_value([1, 2, 3])
    assert s.get_value().dtype == np.float32
    with pytest.raises(CompileError, match="unsupported dtype"):
        irc.shared(np.zeros(2, np.float16))


def test_updates_read_the_values_before_the_call():
    a = irc.shared(np.float32(1), name="a")
    b = irc.shared(np.float32(2), name="b")
    swap = irc.function([], [a, b], updates=[(a, b), (b, a)])
    assert swap() == [1, 2]
    assert (a.get_value(), b.get_value()) == (2, 1)
    swap_dict = irc.function([], a + b, updates={a: a * 10, b: a})
    assert swap_dict() == 3
    assert (a.get_value(), b.get_value()) == (20, 2)


def test_shared_variables_are_shared_between_functions():
    c = irc.shared(0, name="c")
    inc = irc.function([], c, updates={c: c + 1})
    k = irc.scalar("k", "int32")
    add = irc.function([k], c + k, updates={c: c + k})
    read = irc.function([], c * 1)
    assert inc() == 0 and inc() == 1
    assert add(10) == 12
    assert read() == 12 and c.get_value() == 12
    assert inc() == 12
    assert read() == 13
    c.set_value(100)
    assert read() == 100 and inc() == 100 and add(1) == 102 and inc() == 102
    assert c.get_value() == 103


def test_update_conversions_and_errors():
    u = irc.shared(np.zeros(3, np.float32), name="u")
    irc.function([], updates={u: 1})()  # a number takes u's dtype, broadcasts to its shape
    np.testing.assert_array_equal(u.get_value(), np.ones(3, np.float32))
    with pytest.raises(
        CompileError, match=re.escape("update of 'u' (f32[3]) with a value of type f64[3]")
    ):
        irc.function([], updates={u: u * np.float64(2)})
    with pytest.raises(CompileError, match=re.escape("with a value of type f32[4]")):
        irc.function([], updates={u: irc.ones([4])})
    with pytest.raises(CompileError, match="updated twice"):
        irc.function([], updates=[(u, u), (u, u + 1)])
    x = irc.vector("x", dims=(3,))
    with pytest.raises(CompileError, match="only shared variables can be updated"):
        irc.function([x], updates={x: x + 1})


# -- givens and clone -------------------------------------------------------------------------------------


def test_givens_minibatches():
    data = np.arange(20, dtype=np.float32).reshape(10, 2)
    X = irc.shared(data, name="X")
    x = irc.matrix("x", dims=("N", 2))
    total = irc.shared(np.float32(0), name="total")
    i = irc.scalar("i", "int32")
    f = irc.function(
        [i], x.sum(), updates={total: total + x.sum()}, givens={x: X[i * 3 : (i + 1) * 3]}
    )
    assert f(1) == data[3:6].sum()
    assert f(2) == data[6:9].sum()
    assert total.get_value() == data[3:9].sum()  # givens apply to updates too
    # the original graph is unchanged
    assert irc.function([x], x.sum())(np.ones((4, 2))) == 8


def test_givens_replace_shared_variables_and_check_types():
    W = irc.shared(np.ones(3, np.float32), name="W")
    x = irc.vector("x", dims=(3,))
    y = (x * W).sum()
    f = irc.function([x], y, givens={W: W * 2})
    assert f(np.ones(3)) == 6
    with pytest.raises(CompileError, match="is an input of the function"):
        irc.function([x], y, givens={x: W})
    with pytest.raises(CompileError, match="cannot be replaced by a value of type"):
        irc.function([x], y, givens={W: irc.vector("z", "int32", (3,))})


def test_clone():
    x = irc.scalar("x")
    y = irc.scalar("y")
    e = x * 2 + 1
    e2 = irc.clone(e, replace={x: y**2})
    assert irc.pp(e2) == "y ** 2.0 * 2.0 + 1.0"
    assert irc.pp(e) == "x * 2.0 + 1.0"
    assert irc.function([y], e2)(3.0) == 19
    a, b = irc.clone([e, x], replace=[(x, y)])
    assert irc.pp(a) == "y * 2.0 + 1.0" and b is y
    t = irc.clone((e, e), replace={x: y})
    assert isinstance(t, tuple) and t[0] is t[1]
    # the replacement itself is not substituted again
    assert irc.pp(irc.clone(x + 1, replace={x: x * 3})) == "x * 3.0 + 1.0"
    # a subgraph that does not depend on the replaced variable is shared
    z = irc.exp(y)
    assert irc.clone(z + x, replace={x: y}).owner.inputs[0] is z


def test_clone_through_a_scan_body():
    w = irc.shared(np.float32(0.5), name="w")
    xs = irc.vector("xs", dims=("T",))
    hs, _ = irc.scan(lambda x, h: irc.tanh(h * w + x), sequences=xs, outputs_info=[np.float32(0)])
    hs2 = irc.clone(hs, replace={w: w * 2})
    ys = irc.vector("ys", dims=("U",))
    hs3 = irc.clone(hs, replace={xs: ys[::2]})
    f = irc.function([xs, ys], [hs, hs2, hs3])
    a, b, c = f([1, 2], [1, 0, 2])

    def ref(ws, seq):
        h, out = 0.0, []
        for x in seq:
            h = np.tanh(h * ws + x)
            out.append(h)
        return np.array(out, np.float32)

    np.testing.assert_allclose(a, ref(0.5, [1, 2]), rtol=1e-6)
    np.testing.assert_allclose(b, ref(1.0, [1, 2]), rtol=1e-6)
    np.testing.assert_allclose(c, ref(0.5, [1, 2]), rtol=1e-6)


# -- grad ----------------------------------------------------------------------------------------------


def test_grad_of_a_small_mlp_against_finite_differences():
    rng = np.random.default_rng(0)
    x = irc.matrix("x", "float64", ("N", 3))
    W1 = irc.shared(rng.normal(size=(3, 4)), name="W1")
    W2 = irc.shared(rng.normal(size=(4, 2)), name="W2")
    cost = irc.softmax(irc.tanh(x @ W1) @ W2)[:, 0].sum()
    g1, g2 = irc.grad(cost, [W1, W2])
    gx = irc.grad(cost, x)
    f = irc.function([x], [cost, g1, g2, gx])
    xv = rng.normal(size=(5, 3))
    c0, a1, a2, ax = f(xv)

    def num(param, value):
        out = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            d = np.zeros_like(value)
            d[idx] = 1e-6
            if param is None:
                out[idx] = (f(value + d)[0] - f(value - d)[0]) / 2e-6
            else:
                param.set_value(value + d)
                hi = f(xv)[0]
                param.set_value(value - d)
                lo = f(xv)[0]
                param.set_value(value)
                out[idx] = (hi - lo) / 2e-6
        return out

    np.testing.assert_allclose(a1, num(W1, W1.get_value()), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(a2, num(W2, W2.get_value()), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(ax, num(None, xv), rtol=1e-5, atol=1e-8)


def test_grad_forms():
    x = irc.vector("x", dims=("N",))
    u = irc.shared(np.ones(3, np.float32), name="u")
    g = irc.grad(x.sum(), [u, x], disconnected="zero")
    assert isinstance(g, list) and g[1].name == "gx"
    zu, ox = irc.function([x], g)([1, 2])
    np.testing.assert_array_equal(zu, np.zeros(3))
    np.testing.assert_array_equal(ox, np.ones(2))
    assert irc.grad(x.sum(), []) == []
    with pytest.raises(CompileError, match="the loss must be a scalar"):
        irc.grad(x, x)
    with pytest.raises(
        CompileError, match="cannot differentiate with respect to a value of type i32"
    ):
        irc.grad(x.sum(), irc.vector("i", "int32", ("N",)))
    with pytest.raises(CompileError, match="cannot differentiate with respect to the number 3"):
        irc.grad(x.sum(), 3)


# -- scan ---------------------------------------------------------------------------------------------


def test_scan_forms():
    xs = irc.vector("xs", dims=("T",))
    a = irc.scalar("a")

    def step(x, acc):
        acc = acc + x
        return acc, acc * 2

    (cs, dbl), upd = irc.scan(step, sequences=xs, outputs_info=[np.float32(0), None])
    assert upd == {} and cs.type.shape == ("T",)
    (rb,), _ = irc.scan(
        lambda x, s: s + x,
        sequences=[{"input": xs, "taps": [0]}],
        outputs_info=[{"initial": 0.0, "taps": [-1]}],
        go_backwards=True,
        return_list=True,
    )
    powers, _ = irc.scan(
        lambda p, a: p * a, outputs_info=[irc.ones([])], non_sequences=[a], n_steps=4
    )
    both, _ = irc.scan(lambda x, y: x * y, sequences=[xs, xs[::-1]])
    f = irc.function([xs, a], [cs, dbl, rb, powers, both])
    got = f([1, 2, 3], 2)
    want = [[1, 3, 6], [2, 6, 12], [3, 5, 6], [2, 4, 8, 16], [3, 4, 3]]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, np.array(w, np.float32))


def test_scan_steps_from_a_named_dim_and_several_carries():
    x = irc.matrix("x", dims=("N", 2))

    def fib(a, b):
        return b, a + b

    (fa, fb), _ = irc.scan(fib, outputs_info=[np.float32(0), np.float32(1)], n_steps=x.shape[0])
    got = irc.function([x], fa)(np.zeros((6, 2)))
    np.testing.assert_array_equal(got, [1, 1, 2, 3, 5, 8])


def test_scan_truncated_gradient_is_the_tg_one():
    """truncate_gradient=k gives the IR of `.tg`'s `truncate = k`."""
    import irc.api as api
    from irc.ir.printer import print_op

    src = """
shared w: f32 = full(0.5)
fn f(xs: f32[T]) -> f32 {
    hs = scan (x in xs; h = 0.0; truncate = 2) {
        h = tanh(h * w + x)
        yield h
    }
    return sum(hs)
}
fn g(xs: f32[T]) -> f32 {
    hs = scan (x in xs; h = 0.0; truncate = 2) {
        h = tanh(h * w + x)
        yield h
    }
    return grad(sum(hs), w)
}
"""
    m = api.loads(src)
    w = irc.shared(np.float32(0.5), name="w")
    xs = irc.vector("xs", dims=("T",))
    hs, _ = irc.scan(
        lambda x, h: irc.tanh(h * w + x), sequences=xs, outputs_info=[0.0], truncate_gradient=2
    )
    g = irc.function([xs], irc.grad(irc.sum(hs), w), name="g")
    norm = re.compile(r"%[A-Za-z0-9_.]+")
    want = print_op(m._opt.lookup("g"))
    got = print_op(g._opt.lookup("g"))
    names_w, names_g = {}, {}
    assert norm.sub(
        lambda mt: names_g.setdefault(mt.group(0), f"%{len(names_g)}"), got
    ) == norm.sub(lambda mt: names_w.setdefault(mt.group(0), f"%{len(names_w)}"), want)
    data = np.array([1, -2, 0.5, 3], np.float32)
    assert g(data) == m.g(data)


def test_nested_scan_with_grad():
    X = irc.matrix("X", dims=("R", "C"))
    w = irc.shared(np.float32(1.5), name="w")

    def row(r, tot):
        cs, _ = irc.scan(lambda v, acc: acc + v * w, sequences=r, outputs_info=[np.float32(0)])
        return tot + cs[-1]

    tots, _ = irc.scan(row, sequences=X, outputs_info=[np.float32(0)])
    f = irc.function([X], [tots, irc.grad(tots[-1], w)])
    A = np.arange(6, dtype=np.float32).reshape(2, 3)
    t, g = f(A)
    np.testing.assert_allclose(t, A.sum(1).cumsum() * 1.5)
    assert g == pytest.approx(A.sum())


def test_grad_inside_a_step_function():
    xs = irc.vector("xs", dims=("T",))
    w = irc.shared(np.float32(2), name="w")
    gs, _ = irc.scan(lambda x: irc.grad(irc.tanh(w * x), w), sequences=xs)
    data = np.array([0.5, 1.0], np.float32)
    np.testing.assert_allclose(gs.eval({xs: data}), data * (1 - np.tanh(2 * data) ** 2), rtol=1e-6)


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda xs, ys: irc.scan(
                lambda x, h: h.sum(), sequences=xs, outputs_info=[irc.zeros([2])]
            ),
            "output 0 is carried; it starts as f32[2] (outputs_info) but the step function returns f32",
        ),
        (lambda xs, ys: irc.scan(lambda x: x, outputs_info=[None]), "without sequences, n_steps"),
        (
            lambda xs, ys: irc.scan(lambda x, y: x, sequences=[xs, ys]),
            "sequences have different lengths",
        ),
        (
            lambda xs, ys: irc.scan(lambda x: x, sequences=xs, n_steps=3),
            "n_steps = 3 but the sequences have T",
        ),
        (
            lambda xs, ys: irc.scan(lambda x: [x, x], sequences=xs, outputs_info=[None]),
            "returns 2 output(s) but outputs_info has 1",
        ),
        (
            lambda xs, ys: irc.scan(lambda x: (x, {xs: x}), sequences=xs),
            "updates inside a step function",
        ),
        (lambda xs, ys: irc.scan(lambda x: x, sequences=xs.sum()), "is a scalar"),
        (lambda xs, ys: irc.scan(lambda x: x, sequences=[{"input": xs, "taps": [-1]}]), "taps=[0]"),
        (
            lambda xs, ys: irc.scan(lambda x: x, sequences=xs, truncate_gradient=0),
            "truncate_gradient",
        ),
        (
            lambda xs, ys: irc.scan(lambda x: x, sequences=xs, n_steps=xs.sum()),
            "not a symbolic value",
        ),
    ],
)
def test_scan_errors(build, message):
    xs = irc.vector("xs", dims=("T",))
    ys = irc.vector("ys", dims=("U",))
    with pytest.raises(CompileError, match=re.escape(message)):
        build(xs, ys)


def test_values_from_inside_a_step_function_cannot_leak():
    xs = irc.vector("xs", dims=("T",))
    inside = []

    def step(x, h):
        t = h * 2
        inside.append(t)
        return t + x

    irc.scan(step, sequences=xs, outputs_info=[np.float32(0)])
    with pytest.raises(CompileError, match="computed inside a scan step function"):
        inside[0] + 1
    with pytest.raises(CompileError, match="computed inside a scan step function"):
        irc.function([xs], inside[0])


# -- function and the call boundary ---------------------------------------------------------------------


def test_function_outputs_and_defaults():
    x = irc.vector("x", dims=("N",))
    lr = irc.scalar("lr")
    one = irc.function([x], x.sum())
    assert isinstance(one(np.ones(3)), np.float32)
    several = irc.function([x, irc.In(lr, value=0.5)], [x * lr, x.sum()])
    out = several(np.ones(2))
    assert isinstance(out, list) and out[0].tolist() == [0.5, 0.5]
    assert several(np.ones(2), lr=2)[0].tolist() == [2, 2]
    assert several(x=np.ones(2), lr=3)[0].tolist() == [3, 3]
    assert irc.function([x], [], on_unused_input="ignore")([1]) == []
    assert str(several.signature) == "fn f(x: f32[N], lr: f32 = 0.5) -> (f32[N], f32)"
    same = irc.function([x], [x, x])
    a, b = same([1, 2])
    a[0] = 100
    assert b[0] == 1


def test_call_boundary_checks():
    x = irc.matrix("x", dims=("N", 3))
    y = irc.vector("y", "int32", ("N",))
    f = irc.function([x, y], (x.sum(axis=1) * y).sum(), name="f")
    assert f(np.ones((2, 3)), [1, 2]) == 9
    for args, message in [
        ((np.ones((2, 3)), [1, 2, 3]), "dimension N is 2 (from argument 'x') but 3 here"),
        ((np.ones((2, 4)), [1, 2]), "axis 1 is 4, expected 3"),
        ((np.ones((2, 3)),), "missing argument 'y'"),
        ((np.ones((2, 3)), [1.5, 2]), "argument 'y' must be i32"),
        ((np.ones(3), [1]), "must have rank 2"),
    ]:
        with pytest.raises(CallError, match=re.escape(message)):
            f(*args)


def test_function_input_errors():
    x = irc.vector("x", dims=("N",))
    y = irc.vector("y", dims=("N",))
    y_line = here(-1)
    W = irc.shared(np.ones(2, np.float32), name="W")
    with pytest.raises(CompileError, match="the input 'y', which is not among the inputs") as info:
        irc.function([x], x + y)
    assert info.value.loc.line == y_line
    with pytest.raises(CompileError, match="input 'y' is not used"):
        irc.function([x, y], x * 2)
    with pytest.warns(UserWarning, match="input 'y' is not used"):
        irc.function([x, y], x * 2, on_unused_input="warn")
    with pytest.raises(CompileError, match="shared variable 'W' cannot be an input"):
        irc.function([W], W * 2)
    with pytest.raises(CompileError, match="computed from other variables"):
        irc.function([x * 2], x)
    with pytest.raises(CompileError, match="given twice"):
        irc.function([x, x], x)
    with pytest.raises(CompileError, match="default of input 'x' must be a number"):
        irc.function([irc.In(x, value=1.0)], x)
    with pytest.raises(CompileError, match="'K' is not bound by any input"):
        irc.function([], irc.zeros(["K"]))
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        irc.function([x], x, backend="gpu")


def test_eval():
    x = irc.vector("x", dims=("N",))
    assert (x * 2).eval({x: [1, 2]}).tolist() == [2, 4]
    u = irc.shared(np.ones(2, np.float32), name="u")
    assert (u + 1).eval().tolist() == [2, 2]


# -- inspection --------------------------------------------------------------------------------------------


def test_pp():
    x = irc.matrix("x", dims=("N", 4))
    v = irc.vector("v", dims=(4,))
    i = irc.scalar("i", "int32")
    assert irc.pp(-((x + 1) ** 2)) == "-(x + 1.0) ** 2.0"
    assert irc.pp((x - 1) - (v - 2)) == "x - 1.0 - (v - 2.0)"
    assert irc.pp(x[None, :, 0]) == "x[None, :, 0]"
    assert irc.pp(x.T @ x) == "x.T @ x"
    assert irc.pp(irc.softmax(x, axis=0)) == "softmax(x, axis=0)"
    assert irc.pp(x.sum(axis=1)) == "sum(x, axis=(1,))"
    assert irc.pp(irc.where(x > 0, x, 0.0)) == "where(x > 0.0, x, 0.0)"
    assert irc.pp(x[i]) == "x[i]"
    assert irc.pp(irc.grad((x * v).sum(), [v, x])[1]) == "grad(sum(x * v), [v, x])[1]"
    hs, _ = irc.scan(lambda r, h: h + r, sequences=x, outputs_info=[v])
    assert irc.pp(hs) == "scan(steps=N, sequences=[x], carries=[v])[0]"
    assert str(x + 1) == "x + 1.0"
    assert irc.pp([x, v]) == "[x, v]"


def test_pp_of_a_deep_chain():
    """A chain deeper than Python's recursion limit prints (operands are formatted
    in an explicit post-order, not by recursion)."""
    x = irc.vector("x", dims=(3,))
    y = x
    for _ in range(3000):
        y = irc.tanh(y)
    assert irc.pp(y) == "tanh(" * 3000 + "x" + ")" * 3000
    z = x
    for _ in range(2000):
        z = (z + 1) * 2
    assert irc.pp(z).startswith("(" * 2000 + "x + 1.0) * 2.0 + 1.0) * 2.0")


def test_debugprint_and_ir(capsys):
    x = irc.vector("x", dims=("N",))
    f = irc.function([x], irc.exp(x) * 2, name="double_exp")
    irc.debugprint(f)
    printed = capsys.readouterr().out
    assert printed == f.ir() and "func.func @double_exp" in printed
    assert irc.debugprint(f, file="str") == printed
    tg = f.ir(stage="tg")
    assert "tg.exp %x : f32[N]" in tg
    assert f.ir(after="inline") == tg  # nothing to inline
    assert "loc(" in f.ir(stage="tg", locs=True)
    text = irc.debugprint(irc.exp(x), file="str")
    assert "func.func @expr(%x: f32[N]) -> (f32[N])" in text
    with pytest.raises(ValueError, match="unknown stage"):
        f.ir(stage="llvm")


def test_graph_dot(tmp_path):
    xs = irc.tensor3("xs", dims=("T", "B", 3))
    W = irc.shared(np.ones((4, 4), np.float32), name="W")
    U = irc.shared(np.ones((3, 4), np.float32), name="U")
    hs, _ = irc.scan(
        lambda x, h: irc.tanh(h @ W + x @ U),
        sequences=xs,
        outputs_info=[irc.zeros([xs.shape[1], 4])],
    )
    cost = hs.sum()
    f = irc.function([xs], cost, updates=[(W, W - 0.1 * irc.grad(cost, W))])
    dot = irc.graph(f)
    assert dot.startswith("digraph irc {") and "cluster" in dot and "tg.update @W" in dot
    assert irc.graph(f, tmp_path / "f.dot") == str(tmp_path / "f.dot")
    assert (tmp_path / "f.dot").read_text() == dot
    assert "tg.scan" in irc.graph(hs, stage="tg")


def test_graph_without_graphviz(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz -> ImportError
    x = irc.vector("x", dims=("N",))
    with pytest.raises(
        RuntimeError, match="needs Graphviz, which is not installed: install the `dot` program"
    ):
        irc.graph(x * 2, tmp_path / "g.svg")


@pytest.mark.skipif(
    __import__("shutil").which("dot") is None, reason="Graphviz `dot` not installed"
)
def test_graph_renders_svg(tmp_path):
    x = irc.vector("x", dims=("N",))
    path = irc.graph(irc.function([x], irc.exp(x).sum()), tmp_path / "g.svg")
    assert "<svg" in open(path).read()


# -- other backends (run once irc.api._make_backend provides them) ------------------------------------------


def _backend_or_skip(name):
    x = irc.vector("x", dims=("N",))
    try:
        irc.function([x], x * 2, backend=name)
    except CompileError as e:
        if "not available" in str(e):
            pytest.skip(f"the {name} backend is not available")
        raise


@pytest.mark.parametrize("backend", ["cpu", "opencl"])
def test_other_backends_match_the_interpreter(backend):
    _backend_or_skip(backend)
    from irc.data import load_digits

    d = load_digits()
    xb, yb = d["x_train"][:64], d["y_train"][:64]
    losses = {}
    for name in ("interp", backend):
        x = irc.matrix("x", dims=("N", 64))
        y = irc.vector("y", "int32", ("N",))
        W = irc.shared(np.zeros((64, 10), np.float32), name="W")
        b = irc.shared(np.zeros(10, np.float32), name="b")
        loss = irc.categorical_crossentropy(irc.softmax(x @ W + b), y).mean()
        gW, gb = irc.grad(loss, [W, b])
        train = irc.function(
            [x, y], loss, updates=[(W, W - 0.5 * gW), (b, b - 0.5 * gb)], backend=name
        )
        losses[name] = [train(xb, yb) for _ in range(5)] + [W.get_value()]
    for a, b_ in zip(losses["interp"], losses[backend]):
        np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", ["cpu", "opencl"])
def test_shared_variables_across_backends(backend):
    _backend_or_skip(backend)
    c = irc.shared(np.zeros(3, np.float32), name="c")
    k = irc.scalar("k")
    add_there = irc.function([k], c.sum(), updates={c: c + k}, backend=backend)
    add_here = irc.function([k], c.sum(), updates={c: c * k})
    assert add_there(1) == 0
    assert add_here(3) == 3  # sees the update made on the other backend
    assert add_there(1) == 9
    c.set_value([1, 2, 3])
    assert add_there(0) == 6 and add_here(1) == 6
    np.testing.assert_array_equal(c.get_value(), [1, 2, 3])

"""Inputs made without dims= (Theano's way): their dims are unknowns that unify with
what they meet (irc/ir/dims.py Unifier), and those still unknown when irc.function
is called are bound by the arguments at each call. Results are checked against NumPy
on every backend (tests/conftest.py ON_EVERY_BACKEND)."""

import numpy as np
import pytest

import irc
from irc.api import CallError
from irc.ir.errors import CompileError

RNG = np.random.default_rng(0)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_matmul_binds_the_inner_dim_and_agrees_with_numpy():
    W = irc.shared(rand(8, 3), name="W")
    x = irc.matrix("x")
    p = irc.softmax(x @ W)  # the first line: no CompileError
    assert x.type.shape[1] == 8 and p.type.shape[1] == 3
    assert x.type.shape[0] == p.type.shape[0] and isinstance(x.type.shape[0], str)
    f = irc.function([x], p)
    xv = rand(5, 8)
    np.testing.assert_allclose(f(xv), np_softmax(xv @ W.get_value()), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f(xv[:2]), np_softmax(xv[:2] @ W.get_value()), rtol=1e-5, atol=1e-6)


def test_broadcasting_binds_the_last_dim():
    b = irc.shared(rand(3), name="b")
    x = irc.matrix("x")
    y = x + b
    assert x.type.shape[1] == 3 and y.type.shape[1] == 3
    xv = rand(4, 3)
    np.testing.assert_allclose(irc.function([x], y)(xv), xv + b.get_value(), rtol=1e-6)


def test_two_unknowns_that_meet_become_one():
    x, y = irc.matrix("x"), irc.matrix("y")
    s = x * y
    assert x.type == y.type == s.type
    z = irc.vector("z")
    t = x @ z  # z's dim is x's columns
    assert z.type.shape[0] == x.type.shape[1]
    f = irc.function([x, y, z], [s, t])
    xv, yv, zv = rand(2, 5), rand(2, 5), rand(5)
    got_s, got_t = f(xv, yv, zv)
    np.testing.assert_allclose(got_s, xv * yv, rtol=1e-6)
    np.testing.assert_allclose(got_t, xv @ zv, rtol=1e-5, atol=1e-6)


def test_a_dim_of_one_broadcasts_without_binding():
    row = irc.tensor("row", "float32", (1, None))
    x = irc.matrix("x")
    s = x + row
    assert row.type.shape[0] == 1 and x.type.shape[0] == s.type.shape[0] != 1
    xv, rv = rand(4, 3), rand(1, 3)
    np.testing.assert_allclose(irc.function([x, row], s)(xv, rv), xv + rv, rtol=1e-6)


def test_unknown_dims_still_unknown_are_bound_at_the_call():
    x, y = irc.matrix("x"), irc.vector("y", dtype="int32")
    loss = irc.categorical_crossentropy(irc.softmax(x), y).mean()  # x's rows = y's length
    f = irc.function([x, y], loss)
    xv, yv = rand(6, 4), RNG.integers(0, 4, 6).astype(np.int32)
    want = -np.log(np_softmax(xv)[np.arange(6), yv]).mean()
    np.testing.assert_allclose(f(xv, yv), want, rtol=1e-5)
    with pytest.raises(CallError) as info:
        f(xv, yv[:5])
    msg = str(info.value)
    dim = x.type.shape[0]
    assert f"argument 'y': dimension {dim} is 6 (from argument 'x') but 5 here" in msg


def test_call_error_names_the_argument_and_the_dim():
    W = irc.shared(rand(8, 3), name="W")
    x = irc.matrix("x")
    f = irc.function([x], x @ W)
    with pytest.raises(CallError) as info:
        f(rand(5, 7))
    msg = str(info.value)
    assert "argument 'x'" in msg and "axis 1 is 7, expected 8" in msg


def test_a_genuine_conflict_is_a_located_compile_error():
    x = irc.matrix("x")
    x @ irc.shared(rand(8, 3), name="W")
    with pytest.raises(CompileError) as info:
        x + irc.shared(rand(5), name="c")  # x has 8 columns
    assert info.value.loc.file.endswith("test_unknown_dims.py")
    assert "broadcast" in info.value.message


def test_a_failed_op_binds_nothing():
    x = irc.matrix("x")
    with pytest.raises(CompileError):
        irc.conv2d(irc.tensor4("images"), irc.shared(rand(2, 3, 3, 3)), stride=0)
    before = x.type
    with pytest.raises(CompileError):
        irc.stack([x, irc.shared(rand(2, 2)), irc.shared(rand(3, 3))])
    assert x.type == before


def test_scan_over_unknown_sequences_and_initial_state():
    xs, s0 = irc.tensor3("xs"), irc.matrix("s0")
    U, W = irc.shared(rand(4, 6), name="U"), irc.shared(rand(6, 6) * 0.3, name="W")

    def step(x_t, s_prev):
        return irc.tanh(x_t @ U + s_prev @ W)

    ss, updates = irc.scan(step, sequences=xs, outputs_info=[s0])
    assert updates == {}
    assert s0.type.shape[1] == 6 and xs.type.shape[2] == 4
    assert xs.type.shape[1] == s0.type.shape[0]
    f = irc.function([xs, s0], ss)
    X, S = rand(5, 2, 4), rand(2, 6)
    s, want = S, []
    for t in range(5):
        s = np.tanh(X[t] @ U.get_value() + s @ W.get_value())
        want.append(s)
    np.testing.assert_allclose(f(X, S), np.stack(want), rtol=1e-5, atol=1e-5)
    loss = ss[-1].sum()
    g = irc.function([xs, s0], irc.grad(loss, U))(X, S)
    assert g.shape == (4, 6) and np.isfinite(g).all()


def test_givens_bind_dims_for_that_function_only():
    data = irc.shared(rand(40, 4), name="data")
    x = irc.matrix("x")
    n = irc.arange(x.shape[0])  # a dim attribute of x
    total = (x.sum(axis=1) * n).sum()
    i = irc.scalar("i", dtype="int32")
    f10 = irc.function([i], total, givens={x: data[i * 10 : (i + 1) * 10]})
    f5 = irc.function([i], total, givens={x: data[i * 5 : (i + 1) * 5]})
    d = data.get_value()
    np.testing.assert_allclose(f10(1), (d[10:20].sum(1) * np.arange(10)).sum(), rtol=1e-5)
    np.testing.assert_allclose(f5(3), (d[15:20].sum(1) * np.arange(5)).sum(), rtol=1e-5)
    assert isinstance(x.type.shape[0], str)  # still unknown outside those functions
    g = irc.function([x], total)
    np.testing.assert_allclose(g(d[:7]), (d[:7].sum(1) * np.arange(7)).sum(), rtol=1e-5)


def test_reshape_of_unknowns_is_checked_when_the_dims_are_known():
    x = irc.matrix("x")
    images = x.reshape((4, 1, 2, 2))
    data = irc.shared(rand(8, 4), name="d")
    i = irc.scalar("i", dtype="int32")
    f = irc.function([i], images.sum(axis=(1, 2, 3)), givens={x: data[i * 4 : (i + 1) * 4]})
    np.testing.assert_allclose(f(1), data.get_value()[4:].sum(1), rtol=1e-5)
    with pytest.raises(CompileError) as info:
        irc.function([x], images)  # the rows and columns of x are known only at call time
    assert "reshape" in info.value.message and "known only when the function is called" in (
        info.value.hint
    )
    y = irc.matrix("y")
    flat = y.reshape((y.shape[0], 2, 2))  # y_0*y_1 == y_0*4 binds y_1 = 4
    assert y.type.shape[1] == 4
    np.testing.assert_allclose(irc.function([y], flat)(rand(3, 4)).shape, (3, 2, 2))


def test_dims_given_keep_their_names():
    x = irc.matrix("x", dims=("N", 64))
    u = irc.matrix("u")
    s = x + u
    assert str(u.type) == "f32[N, 64]" and str(s.type) == "f32[N, 64]"


def test_dtype_is_a_string_that_compares_with_numpy():
    y = irc.vector("y", dtype="int32")
    assert y.dtype == "int32" and y.dtype == np.int32 and y.dtype == np.dtype("int32")
    assert y.dtype.startswith("int") and y.dtype.kind == "i" and y.dtype != "float32"
    assert isinstance(y.dtype, str)


def test_dimshuffle_and_flatten_ndim():
    b = irc.shared(rand(3), name="b")
    images = irc.tensor4("images")
    out = images + b.dimshuffle("x", 0, "x", "x")
    assert images.type.shape[1] == 3
    iv = rand(2, 3, 2, 2)
    np.testing.assert_allclose(
        irc.function([images], out)(iv), iv + b.get_value()[None, :, None, None], rtol=1e-6
    )
    m = irc.tensor3("m")
    assert m.flatten(2).ndim == 2 and m.flatten().ndim == 1 and m.flatten(3).ndim == 3
    mv = rand(2, 3, 4)
    np.testing.assert_allclose(irc.function([m], m.flatten(2))(mv), mv.reshape(2, 12))
    t = irc.matrix("t").dimshuffle(1, 0)
    assert t.ndim == 2
    with pytest.raises(CompileError):
        irc.shared(rand(3, 2)).dimshuffle(1)  # axis 0 has length 3, cannot be dropped


def test_clone_maps_the_unknown_dims_of_a_replaced_variable():
    x = irc.matrix("x")
    total = (x.sum(axis=1) * irc.arange(x.shape[0])).sum() + x.shape[0]
    z = irc.matrix("z")
    cloned = irc.clone(total, replace={x: z * 2})
    zv = rand(3, 4)
    want = ((2 * zv).sum(1) * np.arange(3)).sum() + 3
    np.testing.assert_allclose(irc.function([z], cloned)(zv), want, rtol=1e-5)
    assert x.type.shape[0] != z.type.shape[0]  # the original is unchanged

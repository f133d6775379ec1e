"""Reference semantics and error messages of the tg ops: user-facing shape
errors, symbolic slice lengths, dynamic indexing at run time, reshape's -1,
conv1d/conv2d and max_pool2d against loop references, stable softmax and
cross-entropy."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

import irc.ops  # noqa: F401  (registers the ops)
from irc.ir.dims import eval_dim
from irc.ir.types import BOOL, F32, F64, I32, I64, TensorType, TypeError_
from irc.ops.registry import REGISTRY, infer_types
from irc.ops.indexing import slice_length


def T(dtype, *shape):
    return TensorType(dtype, tuple(shape))


def infer(name, *types, **attrs):
    full = dict(REGISTRY[name].defaults)
    full.update(attrs)
    return infer_types(name, list(types), full)


def error(name, *types, **attrs) -> str:
    with pytest.raises(TypeError_) as e:
        infer(name, *types, **attrs)
    return e.value.message


def run(name, *arrays, **attrs):
    full = dict(REGISTRY[name].defaults)
    full.update(attrs)
    return REGISTRY[name].numpy(*arrays, **full)


# -- error messages ------------------------------------------------------------------------


def test_error_messages():
    assert (
        error("tg.matmul", T(F32, "N", 64), T(F32, 100, 10))
        == "`@`: inner dimensions differ: f32[N, 64] @ f32[100, 10]"
    )
    assert (
        error("tg.add", T(F32, "N", 3), T(F32, 4))
        == "`+`: shapes cannot be broadcast: [N, 3] and [4] (dimension 3 vs 4)"
    )
    assert error("tg.mul", T(F32, "N"), T(F32, "M")).startswith("`*`: shapes cannot be broadcast")
    assert (
        error("tg.conv2d", T(F32, "N", 3, 28, 28), T(F32, 20, 1, 5, 5))
        == "`conv2d`: the input has 3 channels but the filters expect 1: "
        "f32[N, 3, 28, 28] and f32[20, 1, 5, 5]"
    )
    assert (
        error("tg.sum", T(F32, "N", 10), axis=(2,))
        == "`sum`: axis 2 is out of range for a tensor of rank 2"
    )
    assert "axis -3 is out of range" in error("tg.softmax", T(F32, 2, 3), axis=-3)
    assert "axis 2 is out of range" in error("tg.argmax", T(F32, 2, 3), axis=2)
    assert error("tg.and", T(F32, 3), T(F32, 3)) == (
        "`&`: not defined for operands of dtype f32, f32"
    )
    assert error("tg.exp", T(BOOL, 3)) == "`exp`: not defined for an operand of dtype bool"
    assert error("tg.sub", T(BOOL, 3), T(BOOL, 3)).startswith("`-`: not defined")
    assert "condition must be bool" in error("tg.where", T(F32, 3), T(F32, 3), T(F32, 3))
    assert "unknown dtype 'f16'" in error("tg.cast", T(F32, 3), dtype="f16")
    assert "filters must have rank 4" in error("tg.conv2d", T(F32, 1, 1, 5, 5), T(F32, 1, 5, 5))
    assert "larger than" in error("tg.conv2d", T(F32, 1, 1, 3, 3), T(F32, 2, 1, 5, 5))
    assert "larger than" in error("tg.max_pool2d", T(F32, 1, 1, 3, 1), size=(2, 2))
    assert "float" in error("tg.softmax", T(I32, 3))
    assert error("tg.concat", T(F32, "N", 3), T(F32, "N", 4), axis=0) == (
        "`concat`: operands differ in dimension 1: f32[N, 3] and f32[N, 4]"
    )
    assert "differ in shape" in error("tg.stack", T(F32, 2, 3), T(F32, 3, 2))
    assert "not a permutation" in error("tg.transpose", T(F32, 2, 3), perm=(0, 0))
    assert "cannot broadcast" in error("tg.broadcast_to", T(F32, 3, 2), shape=(3, 4))
    assert "labels must be integer" in error("tg.one_hot", T(F32, 3), n=4)


def test_crossentropy_shape_errors():
    msg = error("tg.categorical_crossentropy", T(F32, "N", 10), T(I32, "M"))
    assert msg == (
        "`categorical_crossentropy`: integer labels i32[M] do not match predictions "
        "f32[N, 10] (expected labels of shape [N])"
    )
    assert "do not match" in error("tg.crossentropy_logits", T(F32, 4, 10), T(F32, 4, 9))
    assert "float predictions" in error("tg.categorical_crossentropy", T(I32, 4, 3), T(I32, 4))
    assert "must be integer labels" in error(
        "tg.categorical_crossentropy", T(F32, 4, 3), T(BOOL, 4)
    )


def test_reshape():
    assert infer("tg.reshape", T(F32, "T", "B", "D"), shape=("T*B", "D")) == [T(F32, "B*T", "D")]
    assert infer("tg.reshape", T(F32, "T", "B", 4), shape=(-1, 2))[0].shape == ("2*B*T", 2)
    assert infer("tg.reshape", T(F32, "N", 6), shape=(-1, 3))[0].shape == ("2*N", 3)
    assert infer("tg.reshape", T(F32, 2, 6), shape=(3, -1))[0].shape == (3, 4)
    assert error("tg.reshape", T(F32, "N", 6), shape=("M", 3)) == (
        "`reshape`: cannot reshape f32[N, 6] (6*N elements) to [M, 3] (3*M elements)"
    )
    assert "cannot infer the -1" in error("tg.reshape", T(F32, "N", 6), shape=(-1, 4))
    assert "cannot infer the -1" in error("tg.reshape", T(F32, "N", 6), shape=(-1, "M"))
    assert "only one dimension can be -1" in error("tg.reshape", T(F32, 6), shape=(-1, -1))
    assert "cannot reshape" in error("tg.reshape", T(F32, 2, 3), shape=(4,))
    # dims of a -1 result go through quotient atoms too
    x = T(F32, "N", "(H-2)//2", 3)
    assert infer("tg.reshape", x, shape=(-1, "(H-2)//2"))[0].shape == ("3*N", "(H-2)//2")
    assert infer("tg.reshape", x, shape=("N", -1))[0].shape == ("N", "3*((H-2)//2)")
    q = infer("tg.reshape", x, shape=(-1, 3))[0].shape[0]
    assert eval_dim(q, {"N": 4, "H": 9}) == 4 * 3


def test_flatten_and_arange_symbolic():
    assert infer("tg.flatten", T(F32, "N", 20, 3, 3), axis=1)[0].shape == ("N", 180)
    assert infer("tg.flatten", T(F32, "N", "C", 3), axis=0)[0].shape == ("3*C*N",)
    assert infer("tg.arange", n="T*B")[0] == T(I32, "B*T")
    assert infer("tg.concat", T(F32, "N", 2), T(F32, "N", 2), T(F32, 3, 2))[0].shape == (
        "2*N+3",
        2,
    )


# -- indexing --------------------------------------------------------------------------------

BOUNDS = [None, 0, 1, 2, 3, -1, -2, -3]


@pytest.mark.parametrize("step", [1, 2, 3, -1, -2])
def test_symbolic_slice_lengths(step):
    """The symbolic length evaluated at N is NumPy's length wherever the slice is
    not empty (slices of named dims assume the sizes that make them non-empty)."""
    checked = 0
    for start in BOUNDS:
        for stop in BOUNDS:
            try:
                n = slice_length("N", start, stop, step)
            except TypeError_ as e:
                assert "not known at compile time" in e.message
                mixed = (step > 0 and start is not None and start < 0 and stop is not None
                         and stop >= 0) or (step < 0 and start is not None and start >= 0
                                            and stop is not None and stop < 0)  # fmt: skip
                assert mixed, (start, stop, step)
                continue
            for N in range(4, 12):
                want = len(range(N)[slice(start, stop, step)])
                got = eval_dim(n, {"N": N})
                assert got == want or (got < 0 and want == 0 and N < 7), (start, stop, step, N, n)
                assert slice_length(N, start, stop, step) == want
            checked += 1
    assert checked >= 40


def test_slice_lengths_named():
    assert slice_length("N", 1, None, 1) == "N-1"
    assert slice_length("N", None, -1, 1) == "N-1"
    assert slice_length("N", None, None, 2) == "(N+1)//2"
    assert slice_length("N", -3, None, 1) == 3
    assert slice_length("N", None, None, -1) == "N"
    assert slice_length("T*B", 2, None, 1) == "B*T-2"


def test_index_errors_and_values():
    x = T(F32, "N", 3)
    assert "index 3 is out of range for axis 1 of size 3" in error(
        "tg.index", x, items=(("slice", None, None, None), ("int", 3))
    )
    assert "index -4 is out of range" in error("tg.index", T(F32, 3, 4), items=(("int", -4),))
    assert "too many indices" in error("tg.index", x, items=(("int", 0),) * 3)
    assert "single ellipsis" in error("tg.index", x, items=(("ellipsis",), ("ellipsis",)))
    assert "step cannot be zero" in error("tg.index", x, items=(("slice", None, None, 0),))
    assert infer("tg.index", x, items=(("int", 7),))[0] == T(F32, 3)  # named: checked at run time
    # b[None, :, None, None]
    b = infer("tg.index", T(F32, "F"), items=(("none",), ("slice", None, None, None), ("none",),
                                               ("none",)))  # fmt: skip
    assert b[0].shape == (1, "F", 1, 1)
    a = np.arange(24.0).reshape(4, 6)
    got = run("tg.index", a, items=(("slice", -3, None, 1), ("int", -1)))
    np.testing.assert_array_equal(got, a[-3:, -1])


def test_dynamic_slice_and_index():
    x = np.arange(40.0).reshape(5, 8)
    i, j = np.int32(1), np.int64(2)
    got = run("tg.dynamic_slice", x, i, j, axes=(0, 1), sizes=(3, 4))
    np.testing.assert_array_equal(got, x[1:4, 2:6])
    with pytest.raises(IndexError, match="out of range"):
        run("tg.dynamic_slice", x, np.int32(3), axes=(0,), sizes=(3,))
    with pytest.raises(IndexError, match="out of range"):
        run("tg.dynamic_slice", x, np.int32(-1), axes=(0,), sizes=(2,))
    np.testing.assert_array_equal(run("tg.dynamic_index", x, np.int32(-1), axes=(1,)), x[:, -1])
    with pytest.raises(IndexError, match="out of range"):
        run("tg.dynamic_index", x, np.int32(5), axes=(0,))
    assert "integer scalars" in error("tg.dynamic_index", T(F32, 5, 8), T(I32, 2), axes=(0,))
    assert "does not fit" in error("tg.dynamic_slice", T(F32, 5, 8), T(I32), axes=(0,), sizes=(6,))
    assert infer("tg.dynamic_slice", T(F32, "N", 8), T(I32), axes=(0,), sizes=("B",))[0] == T(
        F32, "B", 8
    )


def test_gather():
    p = np.random.default_rng(0).random((5, 4))
    y = np.array([3, 0, 1, 1, 2], dtype=np.int32)
    a = np.arange(5, dtype=np.int32)
    np.testing.assert_array_equal(run("tg.gather", p, a, y, axes=(0, 1)), p[a, y])
    assert infer("tg.gather", T(F32, "N", 10), T(I32, "N"), T(I32, "N"), axes=(0, 1)) == [
        T(F32, "N")
    ]
    assert "must be integer" in error("tg.gather", T(F32, 5, 4), T(F32, 5), axes=(0,))
    assert "consecutive" in error("tg.gather", T(F32, 5, 4, 3), T(I32, 2), T(I32, 2), axes=(0, 2))
    assert "shapes cannot be broadcast" in error(
        "tg.gather", T(F32, 5, 4), T(I32, 2), T(I32, 3), axes=(0, 1)
    )


# -- elementwise reference semantics ------------------------------------------------------------


def test_stable_elementwise():
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            s = run("tg.sigmoid", x)
            sp = run("tg.softplus", x)
    assert s.dtype == np.float32 and sp.dtype == np.float32
    np.testing.assert_allclose(s, [0.0, 1 / (1 + np.exp(30.0)), 0.5, 1 / (1 + np.exp(-30.0)), 1.0])
    np.testing.assert_allclose(sp, [0.0, np.log1p(np.exp(-30.0)), np.log(2.0), 30.0, 1000.0])
    r = run("tg.relu", np.array([-2, 3], dtype=np.int32))
    assert r.dtype == np.int32 and r.tolist() == [0, 3]
    assert run("tg.and", np.array([True, False]), np.array([True, True])).tolist() == [True, False]
    assert run("tg.or", np.array([4, 1], np.int32), np.array([1, 1], np.int32)).tolist() == [5, 1]
    assert run("tg.not", np.array([True, False])).tolist() == [False, True]
    c = run("tg.clip", np.array([-3, 0, 9], np.int32), np.float32(-1.5), np.float64(2.5))
    assert c.dtype == np.int32 and c.tolist() == [-1, 0, 2]
    assert isinstance(run("tg.add", np.float32(1), np.float32(2)), np.ndarray)


def test_argmax_is_i32_and_one_hot():
    x = np.array([[1.0, 3.0, 2.0], [5.0, 4.0, 6.0]], dtype=np.float32)
    am = run("tg.argmax", x, axis=1)
    assert am.dtype == np.int32 and am.tolist() == [1, 2]
    assert run("tg.argmin", x, axis=None).tolist() == 0
    oh = run("tg.one_hot", np.array([2, 0, 5], np.int32), n=3)
    assert oh.dtype == np.float32
    assert oh.tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 0]]


# -- softmax and cross-entropy ------------------------------------------------------------------


def test_softmax_huge_logits():
    x = np.array([[1000.0, 1001.0, -1000.0], [-1e4, -1e4, -1e4], [0.0, 1.0, 2.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            p = run("tg.softmax", x)
            lp = run("tg.log_softmax", x)
            pc = run("tg.softmax", x.T, axis=0)
    assert p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(pc.sum(axis=0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p[0, :2], [1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-6)
    assert np.all(np.isfinite(lp))
    np.testing.assert_allclose(np.exp(lp), p, rtol=1e-5, atol=1e-30)


def test_categorical_crossentropy_label_forms():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    y = np.array([0, 3, 1, 2, 2, 0], dtype=np.int32)
    want = -np.log(p[np.arange(6), y])
    np.testing.assert_allclose(run("tg.categorical_crossentropy", p, y), want, rtol=1e-6)
    onehot = np.eye(4, dtype=np.float32)[y]
    np.testing.assert_allclose(run("tg.categorical_crossentropy", p, onehot), want, rtol=1e-6)
    soft = rng.dirichlet(np.ones(4), size=6).astype(np.float32)
    np.testing.assert_allclose(
        run("tg.categorical_crossentropy", p, soft), -(soft * np.log(p)).sum(-1), rtol=1e-5
    )
    np.testing.assert_allclose(run("tg.crossentropy_logits", logits, y), want, rtol=1e-5)
    np.testing.assert_allclose(run("tg.crossentropy_logits", logits, onehot), want, rtol=1e-5)
    # stable where the probability form underflows
    big = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    with np.errstate(all="raise", under="ignore"):
        ce = run("tg.crossentropy_logits", big, np.array([1], np.int32))
    np.testing.assert_allclose(ce, [1000.0], rtol=1e-6)


# -- convolution and pooling ----------------------------------------------------------------------


def _pads_ref(h, k, s, padding, i):
    if padding == "valid":
        return 0, 0
    if padding == "full":
        return k - 1, k - 1
    if padding == "same":
        out = (h + s - 1) // s
        total = max((out - 1) * s + k - h, 0)
        return total // 2, total - total // 2
    return padding[i], padding[i]


def conv2d_loops(x, w, stride, padding, flip):
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    (pt, pb), (pl, pr) = (
        _pads_ref(h, kh, stride[0], padding, 0),
        _pads_ref(wd, kw, stride[1], padding, 1),
    )
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr), dtype=np.float64)
    xp[:, :, pt : pt + h, pl : pl + wd] = x
    oh = (h + pt + pb - kh) // stride[0] + 1
    ow = (wd + pl + pr - kw) // stride[1] + 1
    out = np.zeros((n, f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for u in range(kh):
                for v in range(kw):
                    wu, wv = (kh - 1 - u, kw - 1 - v) if flip else (u, v)
                    patch = xp[:, :, i * stride[0] + u, j * stride[1] + v]  # [n, c]
                    out[:, :, i, j] += patch @ w[:, :, wu, wv].T
    return out


@pytest.mark.parametrize("padding", ["valid", "same", "full", (1, 2)])
@pytest.mark.parametrize("stride", [(1, 1), (2, 1), (2, 3)])
@pytest.mark.parametrize("flip", [False, True])
def test_conv2d_against_loops(padding, stride, flip):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 7, 6)).astype(np.float32)
    for kshape in [(4, 3, 3, 2), (2, 3, 2, 3)]:
        w = rng.normal(size=kshape).astype(np.float32)
        got = run("tg.conv2d", x, w, stride=stride, padding=padding, flip=flip)
        want = conv2d_loops(x, w, stride, padding, flip)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        t = infer(
            "tg.conv2d",
            T(F32, "N", 3, "H", "W"),
            T(F32, *kshape),
            stride=stride,
            padding=padding,
            flip=flip,
        )[0]
        env = {"N": 2, "H": 7, "W": 6}
        assert tuple(eval_dim(d, env) for d in t.shape) == got.shape


def test_conv2d_same_stride1_keeps_size_and_matches_explicit_padding():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 2, 9, 8))
    w = rng.normal(size=(3, 2, 5, 3))
    assert infer("tg.conv2d", T(F64, "N", 2, "H", "W"), T(F64, 3, 2, 5, 3), padding="same")[
        0
    ].shape == ("N", 3, "H", "W")
    np.testing.assert_allclose(
        run("tg.conv2d", x, w, padding="same"), run("tg.conv2d", x, w, padding=(2, 1))
    )
    # full correlation with a flipped kernel is a true full convolution: check one channel
    x1, w1 = rng.normal(size=(1, 1, 1, 6)), rng.normal(size=(1, 1, 1, 3))
    got = run("tg.conv2d", x1, w1, padding="full", flip=True)[0, 0, 0]
    np.testing.assert_allclose(got, np.convolve(x1[0, 0, 0], w1[0, 0, 0], mode="full"))


@pytest.mark.parametrize("padding", ["valid", "same", "full", 2])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("flip", [False, True])
def test_conv1d_against_2d(padding, stride, flip):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 11))
    w = rng.normal(size=(4, 3, 4))
    got = run("tg.conv1d", x, w, stride=stride, padding=padding, flip=flip)
    # as a conv2d of height 1 (a kernel of height 1 gets no vertical padding in any mode)
    pad2 = padding if isinstance(padding, str) else (0, padding)
    want = conv2d_loops(x[:, :, None, :], w[:, :, None, :], (1, stride), pad2, flip)
    np.testing.assert_allclose(got, want[:, :, 0, :], rtol=1e-10)


def test_conv2d_speed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 1, 28, 28)).astype(np.float32)
    w = rng.normal(size=(20, 1, 5, 5)).astype(np.float32)
    run("tg.conv2d", x, w)
    best = min(_timed(lambda: run("tg.conv2d", x, w)) for _ in range(5))
    assert best < 0.05, f"conv2d took {best * 1000:.1f} ms"


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def max_pool_loops(x, size, stride):
    h, w = x.shape[-2:]
    oh, ow = (h - size[0]) // stride[0] + 1, (w - size[1]) // stride[1] + 1
    out = np.empty(x.shape[:-2] + (oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            r, c = i * stride[0], j * stride[1]
            out[..., i, j] = x[..., r : r + size[0], c : c + size[1]].max(axis=(-2, -1))
    return out


@pytest.mark.parametrize(
    "shape,size,stride",
    [
        ((2, 3, 8, 6), (2, 2), None),
        ((2, 3, 7, 5), (2, 2), None),
        ((2, 3, 7, 5), (3, 2), (1, 2)),
        ((3, 9, 7), (2, 3), (3, 2)),
        ((5, 4), (2, 2), (1, 1)),
    ],
)
def test_max_pool2d_against_loops(shape, size, stride):
    x = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    got = run("tg.max_pool2d", x, size=size, stride=stride)
    np.testing.assert_array_equal(got, max_pool_loops(x, size, stride or size))
    t = infer("tg.max_pool2d", T(F32, *shape[:-2], "H", "W"), size=size, stride=stride)[0]
    assert tuple(eval_dim(d, {"H": shape[-2], "W": shape[-1]}) for d in t.shape) == got.shape


def test_lenet_shapes():
    """Shapes through a LeNet-style layer: 5x5 valid conv, 2x2 pool, flatten."""
    c = infer("tg.conv2d", T(F32, "N", 1, 28, 28), T(F32, 20, 1, 5, 5))[0]
    p = infer("tg.max_pool2d", c, size=(2, 2))[0]
    assert p == T(F32, "N", 20, 12, 12)
    assert infer("tg.flatten", p, axis=1)[0] == T(F32, "N", 2880)
    c = infer("tg.conv2d", T(F32, "N", 1, "H", "H"), T(F32, 20, 1, 5, 5))[0]
    p = infer("tg.max_pool2d", c, size=(2, 2))[0]
    assert [eval_dim(d, {"N": 1, "H": 8}) for d in p.shape] == [1, 20, 2, 2]
    assert infer("tg.matmul", T(F32, "N", 64), T(F32, 64, 10))[0] == T(F32, "N", 10)
    assert infer("tg.sum", T(I32, 3), axis=None)[0] == T(I64)

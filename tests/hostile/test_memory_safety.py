"""Issue 21, items 2 and 5: sizes checked for overflow before any allocation,
and one rule per edge value, the same on every backend (docs/reliability.md):

- a label outside [0, C) is an IndexError (label -1 is not the last class);
- an integer argument converted to a narrower argument dtype must fit: int64
  labels over 2**31 into an i32 argument are a CallError, never wrapped;
- i32 arithmetic wraps modulo 2**32 (NumPy's int32), also when it computes a
  slice start; the slice is then bounds-checked like any other;
- float -> int cast truncates toward zero and saturates: NaN -> 0,
  +inf/too large -> max, -inf/too small -> min;
- zero-size batches go through max_pool2d's gradient and scan, giving empty results.
"""

import numpy as np
import pytest

import irc
from irc.ir.errors import CallError

BIG = "fn f(a: f32[N], b: f32[M], c: f32[K]) -> {ret} {{ return {expr} }}"
OUTER = "exp(a[:, None, None] * b[None, :, None] * c[None, None, :])"


@pytest.mark.parametrize(
    "ret, expr",
    [("f32[N, M, K]", OUTER), ("f32[N, M]", f"sum({OUTER}, axis=2) + 1.0"), ("f32", f"sum({OUTER})")],
)
def test_sizes_that_overflow_are_a_call_error(backend, ret, expr):
    # N*M*K*4 bytes is 2**64 - 2**44: it wrapped and the compiled code wrote past a buffer.
    m = irc.loads(BIG.format(ret=ret, expr=expr), backend=backend)
    N = M = 2**20
    K = 2**22 - 1
    with pytest.raises(CallError) as info:
        m.f(np.zeros(N, np.float32), np.zeros(M, np.float32), np.zeros(K, np.float32))
    assert "f()" in str(info.value)
    # The module still works for sizes that fit.
    small = m.f(np.ones(2, np.float32), np.ones(3, np.float32), np.ones(4, np.float32))
    assert np.all(np.isfinite(small))


def test_size_check_names_the_tensor_and_dims(backend):
    m = irc.loads(BIG.format(ret="f32[N, M, K]", expr=OUTER), backend=backend)
    with pytest.raises(CallError, match=r"f32\[N, M, K\].*K=4194303, M=1048576, N=1048576"):
        m.f(np.zeros(2**20, np.float32), np.zeros(2**20, np.float32), np.zeros(2**22 - 1, np.float32))


CCE = "fn f(p: f32[N, C], y: i32[N]) -> f32 { return sum(categorical_crossentropy(p, y)) }"
CEL = "fn f(x: f32[N, C], y: i32[N]) -> f32 { return sum(crossentropy_logits(x, y)) }"


@pytest.mark.parametrize("src", [CCE, CEL])
@pytest.mark.parametrize("label", [-1, 3])
def test_label_out_of_range_is_an_index_error(backend, src, label):
    m = irc.loads(src, backend=backend)
    p = np.full((2, 3), 1 / 3, np.float32)
    with pytest.raises(IndexError, match=r"label out of range \[0, (C|3)\)"):
        m.f(p, np.array([0, label], np.int32))
    assert np.isclose(m.f(p, np.array([0, 2], np.int32)), 2 * np.log(3)) or src is CEL


def test_int64_labels_beyond_i32_are_a_call_error(backend):
    m = irc.loads(CCE, backend=backend)
    p = np.full((2, 3), 1 / 3, np.float32)
    for y in (np.array([0, 2**32 + 1], np.int64), [0, 2**32 + 1], np.array([0, -(2**31) - 1])):
        with pytest.raises(CallError, match="out of the i32 range"):
            m.f(p, y)
    assert np.isclose(m.f(p, np.array([0, 2], np.int64)), 2 * np.log(3))  # fits: converted


def test_i32_slice_arithmetic_wraps_then_is_checked(backend):
    m = irc.loads(
        "fn f(x: f32[N], i: i32) -> f32[2] { return x[i * 1073741824 : i * 1073741824 + 2] }",
        backend=backend,
    )
    x = np.arange(8, dtype=np.float32)
    assert m.f(x, 4).tolist() == [0, 1]  # 4 * 2**30 wraps to 0 in i32
    with pytest.raises(IndexError):
        m.f(x, 1)  # 2**30: out of range
    m = irc.loads("fn f(i: i32) -> i32 { return i * 65536 + 7 }", backend=backend)
    assert m.f(65536) == 7


def test_cast_of_nan_and_inf_to_int_saturates(backend):
    m = irc.loads(
        "fn f(x: f32[N], y: f64[N]) -> (i32[N], i64[N]) { return cast(x, i32), cast(y, i64) }",
        backend=backend,
    )
    vals = [np.nan, np.inf, -np.inf, 3e9, -3e9, 2.7, -2.7, 1e19, -1e19]
    a, b = m.f(np.array(vals, np.float32), np.array(vals, np.float64))
    i32, i64 = np.iinfo(np.int32), np.iinfo(np.int64)
    assert a.tolist() == [0, i32.max, i32.min, i32.max, i32.min, 2, -2, i32.max, i32.min]
    assert b.tolist() == [0, i64.max, i64.min, 3000000000, -3000000000, 2, -2, i64.max, i64.min]


def test_zero_size_batches(backend):
    m = irc.loads(
        "fn f(x: f32[B, 1, 4, 4]) -> f32[B, 1, 4, 4] { return grad(sum(max_pool2d(x, 2)), x) }",
        backend=backend,
    )
    assert m.f(np.zeros((0, 1, 4, 4), np.float32)).shape == (0, 1, 4, 4)
    scan = "fn f(x: f32[T, B]) -> f32[T, B] { return scan (r in x; s = zeros([B])) { s = s + r yield s } }"
    m = irc.loads(scan, backend=backend)
    assert m.f(np.zeros((3, 0), np.float32)).shape == (3, 0)
    assert m.f(np.zeros((0, 2), np.float32)).shape == (0, 2)
    assert m.f(np.ones((3, 2), np.float32)).tolist() == [[1, 1], [2, 2], [3, 3]]

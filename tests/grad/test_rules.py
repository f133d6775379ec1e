"""The documented conventions of the gradient rules, on exact values where
finite differences say nothing (ties, kinks, boundaries): maximum/minimum and
max/min reductions split ties equally, max_pool2d gives a window's cotangent
to its first maximum, relu'(0) = abs'(0) = 0, clip passes to x on
[lo, hi], casts keep the source dtype, repeated gather indices accumulate,
and no nan leaks from branches a where does not take.
"""

from __future__ import annotations

import numpy as np
from irc.passes import PassManager, parse_pipeline
from irc.runtime.interp import Interpreter

import irc.ops  # noqa: F401  (registers the ops)
from irc.gradcheck import verify_grad
from irc.ir.core import Block, Module, Op, Region
from irc.ir.types import TensorType, dtype_of_numpy
from irc.ir.verifier import verify
from irc.ops.registry import OpBuilder, verify_op


def grads(build, *arrays, cot=None):
    """Gradients of sum(cot * build(b, *xs)) (cot = 1 by default) with respect
    to every float input, through the grad pass and the interpreter."""
    arrays = [np.asarray(a) for a in arrays]
    types = [TensorType(dtype_of_numpy(a.dtype), a.shape) for a in arrays]
    block = Block(types)
    func = Op("func.func", (), (), {"sym_name": "f", "visibility": "public"}, [Region([block])])
    m = Module()
    m.body.append(func)
    b = OpBuilder()
    b.set_insertion_end(block)
    out = build(b, *block.args)
    weighted = out if cot is None else b.mul(b.const(cot, out.type.dtype), out)
    loss = b.sum(weighted)
    xs = [x for x in block.args if x.type.dtype.is_float]
    gop = b.op_full("tg.grad", [loss] + xs, {"disconnected": "zero"})
    b.create("func.return", gop.results, [])
    func.attrs["res_types"] = tuple(r.type for r in gop.results)
    func.attrs["arg_defaults"] = (None,) * len(arrays)
    PassManager(parse_pipeline("grad,dce")).run(m)
    verify(m, op_check=verify_op)
    results, _ = Interpreter(m).run("f", arrays, {}, {})
    return results


def test_maximum_and_minimum_split_ties():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 5.0])
    dx, dy = grads(lambda b, x, y: b.maximum(x, y), x, y)
    np.testing.assert_array_equal(dx, [0.5, 1, 0])
    np.testing.assert_array_equal(dy, [0.5, 0, 1])
    dx, dy = grads(lambda b, x, y: b.minimum(x, y), x, y)
    np.testing.assert_array_equal(dx, [0.5, 0, 1])
    np.testing.assert_array_equal(dy, [0.5, 1, 0])


def test_max_and_min_reductions_split_ties():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    (dx,) = grads(lambda b, x: b.max(x, axis=(1,)), x)
    np.testing.assert_array_equal(dx, [[0, 0.5, 0.5], [1, 0, 0]])
    (dx,) = grads(lambda b, x: b.min(x, axis=None), np.ones((2, 2)))
    np.testing.assert_array_equal(dx, np.full((2, 2), 0.25))
    (dx,) = grads(lambda b, x: b.min(x, axis=(0,), keepdims=True), x, cot=[[1.0, 2.0, 4.0]])
    np.testing.assert_array_equal(dx, [[1, 0, 0], [0, 2, 4]])


def test_max_pool_gives_each_window_to_its_first_maximum():
    (dx,) = grads(
        lambda b, x: b.max_pool2d(x, size=(2, 2)), np.zeros((1, 1, 2, 4)), cot=[[[[3.0, 7.0]]]]
    )
    np.testing.assert_array_equal(dx[0, 0], [[3, 0, 7, 0], [0, 0, 0, 0]])
    # Overlapping windows that share a maximum add up there.
    x = np.array([[1.0, 5.0, 2.0]])
    (dx,) = grads(lambda b, x: b.max_pool2d(x, size=(1, 2), stride=(1, 1)), x)
    np.testing.assert_array_equal(dx, [[0, 2, 0]])


def test_kinks_give_zero():
    x = np.array([-1.0, 0.0, 2.0])
    (dx,) = grads(lambda b, x: b.relu(x), x)
    np.testing.assert_array_equal(dx, [0, 0, 1])
    (dx,) = grads(lambda b, x: b.abs(x), x)
    np.testing.assert_array_equal(dx, [-1, 0, 1])


def test_clip_passes_to_x_on_the_closed_interval():
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0])
    dx, dlo, dhi = grads(lambda b, x, lo, hi: b.clip(x, lo, hi), x, np.float64(0), np.float64(1))
    np.testing.assert_array_equal(dx, [0, 1, 1, 1, 0, 0])
    assert dlo == 1 and dhi == 2
    # lo > hi: the result is hi everywhere, and so is the gradient.
    dx, dlo, dhi = grads(lambda b, x, lo, hi: b.clip(x, lo, hi), x, np.float64(2), np.float64(1))
    assert not dx.any() and dlo == 0 and dhi == 6
    # Integer bounds get nothing; x still does.
    (dx,) = grads(lambda b, x, lo: b.clip(x, lo, b.const(1, lo.type.dtype)), x, np.int32(0))
    np.testing.assert_array_equal(dx, [0, 1, 1, 1, 0, 0])


def test_cast_passes_the_gradient_back_in_the_source_dtype():
    x = np.array([1.0, 2.0], np.float32)
    (dx,) = grads(lambda b, x: b.cast(x, dtype="f64"), x, cot=[0.25, 3.0])
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, [0.25, 3.0])
    # To an integer: a step function, no gradient (disconnected -> zeros here).
    (dx,) = grads(lambda b, x: b.cast(b.cast(x, dtype="i32"), dtype="f32"), x)
    assert not dx.any()


def test_pow_at_zero_and_negative_bases_stays_finite():
    x = np.array([0.0, -1.0, 2.0])
    dx, dy = grads(lambda b, x, y: b.pow(x, y), x, np.float64(2.0))
    np.testing.assert_allclose(dx, [0, -2, 4])
    np.testing.assert_allclose(dy, 4 * np.log(2))


def test_crossentropy_with_zero_probabilities_off_the_label():
    p = np.array([[0.5, 0.0, 0.5]])
    (dp,) = grads(lambda b, p, y: b.categorical_crossentropy(p, y), p, np.array([0], np.int32))
    np.testing.assert_array_equal(dp, [[-2, 0, 0]])


def test_indexing_gradients_scatter():
    x = np.arange(4.0)
    (dx,) = grads(lambda b, x, i: b.dynamic_index(x, i, axes=(0,)), x, np.int32(-1))
    np.testing.assert_array_equal(dx, [0, 0, 0, 1])
    (dx,) = grads(lambda b, x, i: b.gather(x, i, axes=(0,)), x, np.array([0, 0, 3, -1]))
    np.testing.assert_array_equal(dx, [2, 0, 0, 2])
    items = (("slice", None, None, -2), ("none",))
    (dx,) = grads(lambda b, x: b.index(x, items=items), x, cot=[[10.0], [20.0]])
    np.testing.assert_array_equal(dx, [0, 20, 0, 10])


def test_a_disconnected_gradient_is_an_error_record():
    src = """
fn f(x: f32[N], y: f32[N]) -> f32 {
    l = sum(x * x)
    g = grad(l, y)
    return l + sum(g)
}
"""
    (r,) = verify_grad(src, filename="d.tg")
    assert not r.ok and "does not depend on 'y'" in r.error
    assert "ERROR" in str(r) and "d.tg:4:" in str(r)

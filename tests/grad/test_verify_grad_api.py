"""irc.verify_grad: Theano's calling convention with a Python function of
symbolic variables, and with .tg source."""

import numpy as np

import irc


def test_verify_grad_of_a_python_function():
    rng = np.random.default_rng(0)
    records = irc.verify_grad(
        lambda x, w: irc.tanh(x @ w) * irc.sigmoid(x @ w),
        [rng.normal(size=(3, 4)), rng.normal(size=(4, 5))],
    )
    assert [r.wrt for r in records] == ["x0", "x1"]
    assert all(r.ok for r in records), records


def test_verify_grad_of_tg_source():
    src = """
shared W: f32[3, 2] = normal(0, 1)
fn f(x: f32[N, 3]) -> f32[3, 2] { return grad(sum(softmax(x @ W)[:, 0]), W) }
"""
    records = irc.verify_grad(src, "f")
    assert len(records) == 1 and records[0].ok, records

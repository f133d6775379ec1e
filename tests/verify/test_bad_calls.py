"""Bad calls on every backend (badcalls.py): wrong shapes, ranks, dtypes, strides,
zero-size dims, NaN/Inf, out-of-range labels give a clean error where the interpreter
gives one, and the interpreter's values where it computes: 0 crashes, 0 silent wrong
results. The full run over every example is slow; a sample runs by default."""

import numpy as np
import pytest
from badcalls import run_bad_calls
from verify_helpers import OPENCL_REASON

import irc

BACKENDS = ["cpu"] + (["opencl"] if OPENCL_REASON is None else [])
EXAMPLES = ["mlp", "logreg", "lenet", "rnn", "conv1d"]


def _assert_clean(t):
    assert t["crashes"] == 0 and t["silent"] == 0, "\n".join(t["failures"][:20])
    assert t["calls"] == t["clean_errors"] + t["agreed"]


def test_bad_calls_sample():
    _assert_clean(run_bad_calls(["mlp", "rnn"], BACKENDS, limit=12))


@pytest.mark.slow
def test_bad_calls_every_example():
    t = run_bad_calls(EXAMPLES, BACKENDS)
    _assert_clean(t)
    assert t["calls"] >= 700
    print({k: v for k, v in t.items() if k != "failures"})


@pytest.mark.parametrize("backend", ["interp", "cpu"])
def test_label_minus_one_is_out_of_range(backend):
    """Found by the bad calls: NumPy's take_along_axis took label -1 as the last class,
    so the interpreter returned a loss where cpu and opencl raised."""
    src = """fn f(x: f32[N, 3], y: i32[N]) -> f32 {
    return mean(categorical_crossentropy(softmax(x), y)) + mean(crossentropy_logits(x, y))
}"""
    m = irc.loads(src, backend=backend, filename="labels.tg")
    x = np.zeros((2, 3), np.float32)
    assert np.isfinite(m.f(x, np.array([0, 2], np.int32)))
    for bad in ([0, -1], [3, 0]):
        with pytest.raises(IndexError, match="label out of range"):
            m.f(x, np.array(bad, np.int32))

"""The example models (examples/*.tg) and their data (irc/data): each
compiles, predicts with the right shapes and lowers its loss in a few SGD
steps on the interpreter; marked slow, each trains to its target accuracy on
the fixed test split with its default settings (`pytest -m slow`)."""

import io
import os

import numpy as np
import pytest

import irc.api
from irc.data import load_digits
from irc.data.sequences import (
    SYMBOLS,
    embedded_reber_string,
    legal_next,
    reber_accuracy,
    reber_batch,
    signal_batch,
)
from irc.train import bind, builtin_dataset, read_header, take, train

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")

# test accuracy each example must reach with its default settings
TARGETS = {"logreg": 0.94, "mlp": 0.96, "lenet": 0.97, "rnn": 0.95, "conv1d": 0.97}


def example(name):
    return os.path.join(EXAMPLES, name + ".tg")


@pytest.fixture(scope="module")
def datasets():
    return {name: builtin_dataset(name) for name in ("digits", "reber", "signal")}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_example_trains_a_few_steps(name, datasets):
    with open(example(name)) as f:
        header = read_header(f.read())
    assert {"data", "epochs", "batch"} <= set(header)
    m = irc.api.load(example(name))
    assert {"train", "predict"} <= set(m.functions)
    assert str(m.signature("train").results[0]) == "f32"
    ds = datasets[header["data"]]
    batch = take(ds.train, ds.batch_axis, np.arange(header["batch"]))
    kw = bind(m.signature("train"), batch)
    before = {k: m[k] for k in m.shared}
    losses = [float(m.train(**kw)) for _ in range(8)]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert all(not np.array_equal(before[k], m[k]) for k in m.shared)  # every variable learns

    out = m.predict(**bind(m.signature("predict"), batch))
    if header["data"] == "reber":
        T, B, D = batch["xs"].shape
        assert out.shape == (T, B, D) and np.allclose(out.sum(-1), 1, atol=1e-5)
    else:
        assert out.shape == batch["y"].shape and out.dtype == np.int32


def test_lr_default_and_override():
    m = irc.api.load(example("logreg"))
    assert [(a.name, a.default) for a in m.signature("train").args] == [
        ("x", None),
        ("y", None),
        ("lr", 0.1),
    ]
    d = load_digits()
    x, y = d["x_train"][:64], d["y_train"][:64]
    l0 = m.train(x, y, lr=0.0)
    assert np.all(m["W"] == 0)  # lr = 0 changes nothing
    assert np.isclose(l0, np.log(10), rtol=1e-5)


def test_digits_data():
    d = load_digits()
    assert d["x_train"].shape == (1497, 64) and d["x_test"].shape == (300, 64)
    assert d["x_train"].dtype == np.float32 and d["y_train"].dtype == np.int32
    assert 0 <= d["x_train"].min() and d["x_train"].max() <= 1
    assert set(np.unique(d["y_test"])) == set(range(10))


def test_reber_grammar():
    assert legal_next("BTBTXSETE") == [
        {"T", "P"},
        {"B"},
        {"T", "P"},
        {"S", "X"},
        {"X", "S"},
        {"E"},
        {"T"},
        {"E"},
    ]
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = embedded_reber_string(rng)
        assert s[1] == s[-2] and s[0] == s[2] == "B" and s[-1] == "E"
        assert len(legal_next(s)) == len(s) - 1
    for bad in ["BTBTXSEPE", "BTBTXE", "BTBPPVETE", "TBTXSETE"]:
        with pytest.raises(ValueError):
            legal_next(bad)

    d = reber_batch(50, T=20, seed=3)
    assert d["xs"].shape == (20, 50, len(SYMBOLS)) and d["ys"].shape == (20, 50)
    assert np.array_equal(d["mask"].sum(0), [len(s) - 1 for s in d["strings"]])
    assert np.array_equal(d["xs"].sum(-1), d["mask"])  # one-hot on real steps, zero on padding
    # the targets are legal, and an oracle that predicts a legal symbol scores 1
    real = d["mask"] > 0
    assert np.take_along_axis(d["legal"], d["ys"][..., None], -1)[..., 0][real].all()
    assert reber_accuracy(d["legal"].astype(np.float32), d["legal"], d["mask"]) == 1.0
    assert reber_accuracy(np.eye(7)[np.zeros((20, 50), int)], d["legal"], d["mask"]) == 0.0
    assert np.array_equal(reber_batch(50, T=20, seed=3)["xs"], d["xs"])  # seeded


def test_signal_data():
    d = signal_batch(100, seed=0)
    assert d["x"].shape == (100, 32) and d["x"].dtype == np.float32
    assert d["y"].sum() == 50
    assert np.array_equal(signal_batch(100, seed=0)["x"], d["x"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_example_reaches_target(name):
    r = train(example(name), progress=False, out=io.StringIO())
    assert not r["interrupted"]
    assert r["accuracy"] >= TARGETS[name], r["history"]

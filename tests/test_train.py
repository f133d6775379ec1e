"""The training driver (irc/train.py): data binding, defaults from the model's
header, checkpoints, resume, Ctrl-C and plotting.

The model here computes its gradient by hand, so these tests exercise the
driver whatever state the grad pass is in; tests/test_examples.py trains the
real examples.
"""

import io
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from irc.train import TrainError, bind, infer_batch_axes, read_header, train

# Logistic regression on the digits with a hand-written gradient.
MODEL = """\
# data: digits
# train: epochs=2 batch=50
shared W: f32[64, 10] = zeros()
shared b: f32[10]     = zeros()
def probs(x: f32[N, 64]) -> f32[N, 10] {
    return softmax(x @ W + b)
}
fn predict(x: f32[N, 64]) -> i32[N] {
    return argmax(probs(x), axis=1)
}
fn train(x: f32[N, 64], y: i32[N], lr: f32 = 0.5) -> f32 {
    p = probs(x)
    d = (p - one_hot(y, 10)) / N
    W <- W - lr * (transpose(x) @ d)
    b <- b - lr * sum(d, axis=0)
    return mean(categorical_crossentropy(p, y))
}
"""


@pytest.fixture
def model(tmp_path):
    p = tmp_path / "model.tg"
    p.write_text(MODEL)
    return p


def test_header():
    h = read_header("# data: reber\n# train: epochs=7 batch=16 other=1\nshared W: f32 = zeros()\n")
    assert h == {"data": "reber", "epochs": 7, "batch": 16}
    with pytest.raises(TrainError, match="epochs must be an integer"):
        read_header("# train: epochs=many\n")


def test_train_defaults_accuracy_and_history(model):
    out = io.StringIO()
    r = train(model, progress=False, out=out)
    assert r["settings"]["epochs"] == 2 and r["settings"]["batch"] == 50  # from the header
    assert r["settings"]["lr"] == 0.5  # train's default
    assert r["epochs"] == 2 and len(r["history"]) == 2 and not r["interrupted"]
    assert len(r["batch_losses"]) == 2 * (1497 // 50)  # the last partial batch is dropped
    assert r["history"][1]["loss"] < r["history"][0]["loss"]
    assert r["accuracy"] > 0.85
    text = out.getvalue()
    assert "epoch 2/2: loss" in text and "test accuracy" in text and "done in" in text


def test_lr_and_seed(model):
    a = train(model, epochs=1, lr=0.01, seed=3, progress=False, out=io.StringIO())
    b = train(model, epochs=1, lr=0.01, seed=3, progress=False, out=io.StringIO())
    c = train(model, epochs=1, lr=0.5, seed=3, progress=False, out=io.StringIO())
    assert a["settings"]["lr"] == 0.01
    assert a["batch_losses"] == b["batch_losses"]  # reproducible
    assert c["loss"] < a["loss"]  # lr reached the function


def test_checkpoint_and_resume(model, tmp_path):
    import irc.api

    ck = tmp_path / "ck.npz"
    r1 = train(model, epochs=1, save=ck, progress=False, out=io.StringIO())
    assert r1["checkpoint"] == os.fspath(ck)
    m = irc.api.load(model)
    with np.load(ck) as d:
        assert set(d.files) == set(m.shared)
        W = d["W"]
    assert np.abs(W).sum() > 0
    assert not [
        f for f in os.listdir(tmp_path) if f.startswith(".irc-")
    ]  # no temporary left behind

    out = io.StringIO()
    r2 = train(model, epochs=1, resume=ck, progress=False, out=out)
    assert "resumed from" in out.getvalue()
    # the resumed run starts where the first one ended, far below a fresh start
    assert r2["batch_losses"][0] < r1["batch_losses"][0] - 0.5
    assert r2["batch_losses"][0] < r1["history"][0]["loss"]

    with pytest.raises(TrainError, match="no checkpoint"):
        train(model, epochs=1, resume=tmp_path / "missing.npz", progress=False, out=io.StringIO())


def test_npz_data_and_binding_errors(model, tmp_path):
    from irc.data import load_digits

    d = load_digits()
    f = tmp_path / "mine.npz"
    np.savez(
        f,
        x_train=d["x_train"][:200],
        y_train=d["y_train"][:200],
        x_test=d["x_test"][:50],
        y_test=d["y_test"][:50],
    )
    r = train(model, data=f, epochs=1, batch=40, progress=False, out=io.StringIO())
    assert r["settings"]["n_train"] == 200 and len(r["batch_losses"]) == 5
    assert r["accuracy"] is not None

    g = tmp_path / "wrong.npz"
    np.savez(g, inputs_train=d["x_train"][:10], labels_train=d["y_train"][:10])
    with pytest.raises(TrainError, match="nothing binds argument 'x: "):
        train(model, data=g, epochs=1, progress=False, out=io.StringIO())
    with pytest.raises(TrainError, match="unknown data"):
        train(model, data="mnist", epochs=1, progress=False, out=io.StringIO())
    with pytest.raises(TrainError, match="unknown backend"):
        train(model, backend="abacus", epochs=1, progress=False, out=io.StringIO())
    with pytest.raises(TrainError, match="no such file"):
        train(tmp_path / "nothing.tg", epochs=1, progress=False, out=io.StringIO())


def test_shipped_example_by_name():
    r = train("mlp", epochs=1, batch=500, progress=False, out=io.StringIO())
    assert r["settings"]["model"].endswith("mlp.tg") and r["settings"]["data"] == "digits"


def test_initial_states_and_batch_axes(tmp_path):
    import irc.api

    m = irc.api.loads(
        textwrap.dedent("""\
        shared W: f32[4, 3] = zeros()
        fn predict(xs: f32[T, B, 4], s0: f32[B, 3]) -> f32[T, B, 3] {
            ss = scan (x in xs; s = s0) {
                s = tanh(s + x @ W)
                yield s
            }
            return ss
        }
    """)
    )
    sig = m.signature("predict")
    kw = bind(sig, {"xs": np.zeros((5, 2, 4), np.float32)})
    assert kw["s0"].shape == (2, 3) and not kw["s0"].any()
    assert infer_batch_axes({"xs"}, [sig]) == {"xs": 1}
    assert m.predict(**kw).shape == (5, 2, 3)


def test_plot(model, tmp_path):
    png = tmp_path / "curves.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(TrainError, match=r"pip install 'irc-compiler\[plot\]'"):
            train(model, epochs=1, plot=png, progress=False, out=io.StringIO())
        assert not png.exists()
        return
    train(model, epochs=2, plot=png, progress=False, out=io.StringIO())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ctrl_c_keeps_a_checkpoint(model, tmp_path):
    """SIGINT during training: a short message instead of a traceback, exit
    status 0 from the library call, and a complete checkpoint."""
    ck = tmp_path / "ck.npz"
    code = textwrap.dedent(f"""\
        import signal, sys
        # even when started with SIGINT ignored (a background job)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from irc.train import train
        r = train({os.fspath(model)!r}, epochs=100000, save={os.fspath(ck)!r}, progress=False)
        print("RESULT", r["interrupted"], r["epochs"], flush=True)
    """)
    p = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        # wait until an epoch has finished (so training is under way), then interrupt
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("epoch "):
                break
        assert any(line.startswith("epoch ") for line in lines), "".join(lines) + p.stderr.read()
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    stdout = "".join(lines) + stdout
    assert p.returncode == 0, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    assert "interrupted at epoch" in stdout and f"checkpoint written to {ck}" in stdout
    assert "RESULT True" in stdout
    import irc.api

    m = irc.api.load(model)
    with np.load(ck, allow_pickle=False) as d:
        assert set(d.files) == set(m.shared)
    m.restore(ck)
    assert np.abs(m["W"]).sum() > 0

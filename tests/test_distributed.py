"""Data-parallel training on a real local Ray (irc/distributed.py), no mocks: two workers
on a global batch of 64 give the parameters of one process after 5 SGD steps, on the
driver and on every worker; a worker that dies stops the run with the last checkpoint
intact, or, with elastic=True, the run goes on with the same result; the CLI.

One Ray session (2 CPUs, no dashboard) serves the whole module: starting Ray costs ~10 s
on a loaded 2-core machine. Training the examples to their accuracy is marked slow.
The split itself is tested without Ray in tests/passes/test_split_step.py.
"""

import io
import os
import subprocess
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import irc  # noqa: E402
import irc.distributed as dist  # noqa: E402
from irc.train import Dataset, builtin_dataset, label_accuracy  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLP = os.path.join(ROOT, "examples", "mlp.tg")
STEPS, BATCH = 5, 64


@pytest.fixture(scope="module")
def ray_session():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def _digits(n):
    d = builtin_dataset("digits")
    train = {k: v[:n] for k, v in d.train.items()}
    test = {k: v[:100] for k, v in d.test.items()}
    return Dataset("digits", train, test, dict(d.batch_axis), label_accuracy)


def _one_process(seed=0):
    """The parameters after STEPS steps of mlp's train on the same minibatches (the
    driver's order: one permutation of the STEPS * BATCH examples)."""
    ds = _digits(STEPS * BATCH)
    m = irc.load(MLP, backend="cpu")
    perm = np.random.default_rng(seed).permutation(STEPS * BATCH)
    for i in range(STEPS):
        idx = perm[i * BATCH : (i + 1) * BATCH]
        m.train(ds.train["x"][idx], ds.train["y"][idx])
    return {n: m[n] for n in m.shared}


def _assert_same(got, want):
    for n, w in want.items():
        np.testing.assert_allclose(got[n], w, rtol=1e-5, atol=1e-6, err_msg=n)


def test_two_workers_match_one_process_after_five_steps(ray_session):
    out = io.StringIO()
    r = dist.train(
        MLP,
        _digits(STEPS * BATCH),
        workers=2,
        epochs=1,
        batch=BATCH,
        backend="cpu",
        progress=False,
        out=out,
        keep_pool=True,
    )
    pool = r["pool"]
    try:
        assert pool.steps == STEPS and r["workers"] == 2
        want = _one_process()
        m = r["module"]
        _assert_same({n: m[n] for n in m.shared}, want)
        for state in pool.worker_states():  # every replica applied the same updates
            _assert_same(state, want)
    finally:
        pool.shutdown()
    assert "2 Ray workers" in out.getvalue() and "epoch 1/1" in out.getvalue()


def test_resume_starts_every_replica_from_the_checkpoint(ray_session, tmp_path):
    ckpt = str(tmp_path / "start.npz")
    m = irc.load(MLP, seed=7)
    m.save(ckpt)
    r = dist.train(
        MLP, _digits(BATCH), workers=2, epochs=0, resume=ckpt, progress=False,
        out=io.StringIO(), keep_pool=True,
    )  # fmt: skip
    try:
        for state in r["pool"].worker_states():
            _assert_same(state, {n: m[n] for n in m.shared})
    finally:
        r["pool"].shutdown()


def _kill_at(step, box):
    def on_step(n, pool):
        if n == step:
            box["checkpoint"] = _read(box["path"]) if os.path.exists(box["path"]) else None
            pool.actors[1].exit.remote()

    return on_step


def _read(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_a_dead_worker_stops_the_run_and_keeps_the_checkpoint(ray_session, tmp_path):
    ckpt = str(tmp_path / "ckpt.npz")
    box = {"path": ckpt}
    with pytest.raises(dist.WorkerLost) as e:
        dist.train(
            MLP,
            _digits(STEPS * BATCH),
            workers=2,
            epochs=3,
            batch=BATCH,
            save=ckpt,
            progress=False,
            out=io.StringIO(),
            on_step=_kill_at(STEPS + 1, box),  # the first step of epoch 2
        )
    assert "worker 1 (pid" in str(e.value) and "died at step 7" in str(e.value), str(e.value)
    assert box["checkpoint"] is not None  # written after epoch 1
    after = _read(ckpt)
    for k, v in box["checkpoint"].items():
        np.testing.assert_array_equal(after[k], v)


@pytest.mark.slow  # ~8 s more under load; the dead-worker test above covers the detection
def test_elastic_goes_on_with_the_remaining_worker_and_the_same_result(ray_session, tmp_path):
    out = io.StringIO()
    r = dist.train(
        MLP,
        _digits(STEPS * BATCH),
        workers=2,
        elastic=True,
        epochs=1,
        batch=BATCH,
        backend="cpu",
        progress=False,
        out=out,
        on_step=_kill_at(2, {"path": str(tmp_path / "none.npz")}),
    )
    assert r["workers"] == 1 and r["lost_workers"] == 1
    assert "continuing on 1 worker(s)" in out.getvalue()
    m = r["module"]
    _assert_same({n: m[n] for n in m.shared}, _one_process())


def test_cli_train_with_workers(ray_session, capsys):
    from irc.cli import main

    code = main(["train", MLP, "--workers", "2", "--epochs", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 Ray workers" in out and "test accuracy" in out


def test_cli_rejects_ray_options_without_workers(capsys):
    from irc.cli import main

    assert main(["train", MLP, "--elastic"]) == 1
    assert "need --workers" in capsys.readouterr().err


def test_an_update_reading_the_data_is_a_located_error_on_the_command_line(tmp_path, capsys):
    from irc.cli import main

    f = tmp_path / "stat.tg"
    f.write_text(
        "shared W: f32[64, 10] = zeros()\nshared mu: f32[64] = zeros()\n"
        "fn train(x: f32[N, 64], y: i32[N], lr: f32 = 0.1) -> f32 {\n"
        "    loss = mean(categorical_crossentropy(softmax(x @ W), y))\n"
        "    gW = grad(loss, W)\n"
        "    W <- W - lr * gW\n"
        "    mu <- mean(x, axis=0)\n"
        "    return loss\n}\n"
    )
    assert main(["train", str(f), "--workers", "2", "--data", "digits"]) == 1
    err = capsys.readouterr().err
    assert f"{f}:7:5: error: split-step: the update of 'mu'" in err, err


@pytest.mark.slow
@pytest.mark.parametrize("model,target", [("mlp", 0.97), ("lenet", 0.98)])
def test_examples_reach_their_accuracy_on_two_workers(model, target):
    """`irc train examples/MODEL.tg --workers 2` with the model's own settings, its own
    local Ray (a subprocess, as a user runs it)."""
    path = os.path.join(ROOT, "examples", f"{model}.tg")
    proc = subprocess.run(
        [sys.executable, "-m", "irc", "train", path, "--workers", "2", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = [line for line in proc.stdout.splitlines() if line.startswith("done in")][-1]
    acc = float(last.rsplit("test accuracy", 1)[1].split(";")[0])
    print(model, last)
    assert acc >= target, last

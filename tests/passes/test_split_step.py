"""split-step numerically, without Ray: FN_grads on shards of a batch, combined by
irc.distributed.combine, then FN_apply, equals one call of FN on the whole batch; for a
mean loss (mlp), a masked mean over time-major sequences (rnn: weights sum(mask) per
shard), a sum, and a mean plus a weight penalty; with shards of unequal sizes, where an
unweighted average of the shards' gradients would be wrong. And the located errors of
models the split cannot handle (the IR-level checks are tests/passes/split-step.tgir).
"""

import numpy as np
import pytest

import irc
from irc.api import compile_to_ir
from irc.distributed import build, combine, split_info, split_module
from irc.ir.errors import CompileError
from irc.train import bind, builtin_dataset, take


def _split(source_or_path, backend="interp"):
    """(the ordinary module, the split module with the same initial state)."""
    load = irc.loads if "\n" in str(source_or_path) else irc.load
    full = load(source_or_path, backend=backend)
    opt = split_module(full._tg)
    return full, build(opt, backend, {n: full[n] for n in full.shared})


def _step_on_shards(m, arrays, axes, shards, lr=None):
    info = split_info(m)
    g = m.functions[info["grads"]]
    outs = []
    for idx in shards:
        out = g(**bind(g.signature, take(arrays, axes, idx), lr))
        outs.append(out if isinstance(out, tuple) else (out,))
    combined = combine(outs, info["reduce"])
    nres = len(info["shard_results"])
    kw = dict(zip(info["grad_names"], combined[nres:]))
    if lr is not None:
        kw["lr"] = lr
    getattr(m, info["apply"])(**kw)
    return combined[:nres], outs


def _check(full, split, arrays, axes, shards, lr=None, rtol=2e-5, atol=1e-6):
    idx = np.concatenate(shards)
    f = full.functions["train"]
    want_loss = f(**bind(f.signature, take(arrays, axes, idx), lr))
    results, outs = _step_on_shards(split, arrays, axes, shards, lr)
    np.testing.assert_allclose(results[0], want_loss, rtol=rtol, atol=atol)
    for n in full.shared:
        np.testing.assert_allclose(split[n], full[n], rtol=rtol, atol=atol, err_msg=n)
    return outs


def test_mean_loss_unequal_shards_match_the_full_batch():
    full, split = _split("examples/mlp.tg")
    ds = builtin_dataset("digits")
    shards = [np.arange(0, 40), np.arange(40, 64)]
    outs = _check(full, split, ds.train, ds.batch_axis, shards, lr=0.5)
    assert [float(o[-1]) for o in outs] == [40.0, 24.0]  # each shard's weight: its N
    # An unweighted average of the shards' gradients is not the full-batch gradient.
    g_avg = (outs[0][1] + outs[1][1]) / 2
    g_w = (40 * outs[0][1] + 24 * outs[1][1]) / 64
    assert not np.allclose(g_avg, g_w, rtol=1e-4, atol=1e-6)
    # A second step from the updated state, in three shards.
    _check(full, split, ds.train, ds.batch_axis, [np.arange(64, 90), np.arange(90, 97)], lr=0.5)


def test_masked_mean_over_time_major_sequences():
    full, split = _split("examples/rnn.tg")
    ds = builtin_dataset("reber")
    shards = [np.arange(0, 5), np.arange(5, 8)]
    outs = _check(full, split, ds.train, ds.batch_axis, shards)
    mask = ds.train["mask"]
    assert float(outs[0][-1]) == pytest.approx(mask[:, :5].sum())  # weight: sum(mask)


SUM_AND_PENALTY = """
shared W: f32[4, 3] = glorot_uniform()
shared b: f32[3] = zeros()
shared t: f32 = zeros()

fn train(x: f32[N, 4], y: i32[N], lr: f32 = 0.1) -> f32 {
    loss = sum(categorical_crossentropy(softmax(x @ W + b), y))
    gW, gb = grad(loss, W, b)
    W <- W - lr * gW
    b <- b - lr * gb
    t <- t + 1
    return loss
}

fn penalised(x: f32[N, 4], y: i32[N], lr: f32 = 0.1) -> (f32, f32) {
    loss = mean(categorical_crossentropy(softmax(x @ W + b), y)) + 0.01 * sum(W * W)
    gW, gb = grad(loss, W, b)
    W <- W - lr * gW
    b <- b - lr * gb
    return loss, sum(gW * gW)
}
"""


def _toy_data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, 4)).astype(np.float32), "y": rng.integers(0, 3, n)}, {
        "x": 0,
        "y": 0,
    }


def test_sum_loss_adds_the_shards_and_data_free_updates_apply_once():
    full, split = _split(SUM_AND_PENALTY)
    arrays, axes = _toy_data()
    assert split_info(split)["reduce"] == "sum"
    _check(full, split, arrays, axes, [np.arange(0, 7), np.arange(7, 20), np.arange(20, 30)])
    assert float(split["t"]) == 1.0


def test_mean_plus_penalty_and_a_result_from_the_gradients():
    full = irc.loads(SUM_AND_PENALTY, backend="interp")
    split = build(_split_fn(full, "penalised"), "interp", {n: full[n] for n in full.shared})
    arrays, axes = _toy_data()
    info = split_info(split, "penalised")
    assert info["reduce"] == "mean"
    # The loss comes from the shards; |gW|^2 from the combined gradient, in FN_apply.
    assert info["shard_results"] == [0] and info["apply_results"] == [1]
    want = full.penalised(arrays["x"][:30], arrays["y"][:30])
    g = split.functions["penalised_grads"]
    outs = [g(arrays["x"][i], arrays["y"][i]) for i in (slice(0, 11), slice(11, 30))]
    combined = combine(outs, "mean")
    gnorm = split.penalised_apply(gW=combined[1], gb=combined[2])
    np.testing.assert_allclose(combined[0], want[0], rtol=2e-5)
    np.testing.assert_allclose(gnorm, want[1], rtol=2e-5)
    for n in ("W", "b"):
        np.testing.assert_allclose(split[n], full[n], rtol=2e-5, atol=1e-7)


def _split_fn(m, fn):
    from irc.passes import PassManager, parse_pipeline
    from irc.pipeline import run_pipeline

    tg = m._tg.clone()
    PassManager(parse_pipeline(f"inline,split-step{{fn={fn}}}")).run(tg)
    return run_pipeline(tg)


BATCH_STATISTIC = """
shared W: f32[3] = zeros()
shared mu: f32[3] = zeros()
fn train(x: f32[N, 3], lr: f32 = 0.1) -> f32 {
    loss = mean(x @ W)
    gW = grad(loss, W)
    W <- W - lr * gW
    m = mean(x, axis=0)
    mu <- 0.9 * mu + 0.1 * m
    return loss
}
"""


def test_an_update_reading_a_batch_statistic_is_a_located_error():
    tg = compile_to_ir(BATCH_STATISTIC, "stat.tg")
    with pytest.raises(CompileError) as e:
        split_module(tg)
    text = str(e.value)
    assert "stat.tg:9:5" in text, text
    assert "the update of 'mu' reads 'm', computed from the data argument 'x'" in text


def test_a_loss_that_is_not_a_batch_mean_is_a_located_error():
    src = BATCH_STATISTIC.replace("loss = mean(x @ W)", "loss = mean(x @ W) * mean(x @ W)").replace(
        "    mu <- 0.9 * mu + 0.1 * m\n", ""
    )
    with pytest.raises(CompileError) as e:
        split_module(compile_to_ir(src, "prod.tg"))
    assert "prod.tg:5:" in str(e.value) and "multiplies two values computed from the data" in str(
        e.value
    )


MOMENTUM = """
shared W: f32[4, 3] = glorot_uniform()
shared vW: f32[4, 3] = zeros()
shared step: f32 = zeros()

fn train(x: f32[N, 4], y: i32[N], lr: f32 = 0.1, mu: f32 = 0.9) -> f32 {
    loss = mean(categorical_crossentropy(softmax(x @ W), y))
    gW = grad(loss, W)
    vW <- mu * vW - lr * gW
    W <- W + mu * vW - lr * gW
    step <- step + 1
    return loss
}
"""


def test_optimizer_state_is_updated_identically_over_steps():
    full, split = _split(MOMENTUM)
    arrays, axes = _toy_data(n=40, seed=3)
    for lo, hi in ((0, 13), (13, 20)), ((20, 29), (29, 40)):
        _check(full, split, arrays, axes, [np.arange(*lo), np.arange(*hi)])
    assert float(split["step"]) == 2.0

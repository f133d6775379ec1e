"""The NaN guard: irc.load(..., nan_guard=True) and `irc run/train --nan-guard` stop at
the first op that produces a NaN or an Inf, located in the .tg source, on every
backend; updates are not applied; nothing changes when the guard is off."""

import os
import subprocess

import numpy as np
import pytest
from verify_helpers import needs_opencl

import irc

BACKENDS = ["interp", "cpu", pytest.param("opencl", marks=needs_opencl)]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SRC = """shared W: f32[3] = ones()
fn f(x: f32[N]) -> f32 {
    a = x * 2.0
    b = log(a)
    c = sqrt(b + 1.0)
    W <- W + 1.0
    return sum(c)
}
fn big(x: f32[N]) -> f32[N] {
    return exp(x * 100.0) * 0.0
}
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_nan_is_located(backend):
    m = irc.loads(SRC, backend=backend, nan_guard=True, filename="guard.tg")
    plain = irc.loads(SRC, backend=backend, filename="guard.tg")
    x = np.array([1.0, 2.0], np.float32)
    np.testing.assert_allclose(m.f(x), plain.f(x), rtol=1e-6)
    np.testing.assert_array_equal(m["W"], [2, 2, 2])  # updates applied when all is finite
    with pytest.raises(irc.NanGuardError) as e:
        m.f(np.array([1.0, -2.0], np.float32))
    err = e.value
    assert str(err).startswith("guard.tg:4:9: error: tg.log produced NaN"), str(err)
    assert err.op == "tg.log" and err.kind == "NaN" and err.loc.line == 4
    assert "b = log(a)" in err.format() and "^" in err.format()
    np.testing.assert_array_equal(m["W"], [2, 2, 2])  # not updated by the failed call


@pytest.mark.parametrize("backend", BACKENDS)
def test_inf_and_nan_arguments(backend):
    m = irc.loads(SRC, backend=backend, nan_guard=True, filename="guard.tg")
    with pytest.raises(irc.NanGuardError, match=r"guard.tg:10:12: error: tg.exp produced Inf"):
        m.big(np.array([0.0, 10.0], np.float32))
    with pytest.raises(irc.NanGuardError, match="argument 'x' of f\\(\\) holds NaN"):
        m.f(np.array([np.nan, 1.0], np.float32))


def test_off_by_default_changes_nothing():
    """Without the guard the compiled module is the usual one (same IR, same backend
    class) and a NaN flows through as NumPy would give it."""
    m = irc.loads(SRC, backend="cpu")
    g = irc.loads(SRC, backend="cpu", nan_guard=True)
    assert type(m._backend).__name__ == "LLVMBackend"
    assert type(g._backend).__name__ == "NanGuardBackend"
    assert m._backend.dump("llvm") == irc.loads(SRC, backend="cpu")._backend.dump("llvm")
    assert np.isnan(m.f(np.array([1.0, -2.0], np.float32)))


@pytest.mark.parametrize(
    "example",
    ["mlp", "rnn"]
    + [pytest.param(e, marks=pytest.mark.slow) for e in ("lenet", "conv1d", "logreg")],
)
def test_examples_run_guarded(example):
    """Every example trains a step under the guard with the same result as without."""
    path = os.path.join(ROOT, "examples", f"{example}.tg")
    g = irc.load(path, backend="cpu", nan_guard=True)
    p = irc.load(path, backend="cpu")
    from irc.verify_backends import _inlined, random_args

    args, _ = random_args(_inlined(g._tg).lookup("train"), np.random.default_rng(0))
    np.testing.assert_allclose(g.train(*args), p.train(*args), rtol=1e-5)
    for n in g.shared:
        np.testing.assert_allclose(g[n], p[n], rtol=1e-5, atol=1e-7)


def test_cli_run_nan_guard(tmp_path, irc_exe):
    f = tmp_path / "guard.tg"
    f.write_text(SRC)
    r = subprocess.run(
        [irc_exe, "run", str(f), "--fn", "f", "--arg", "x=[1.0, -2.0]", "--nan-guard"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1
    assert f"{f}:4:9: error: tg.log produced NaN" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(
        [irc_exe, "run", str(f), "--fn", "f", "--arg", "x=[1.0, -2.0]"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and "nan" in r.stdout


def test_cli_train_nan_guard(tmp_path, irc_exe):
    """A learning rate that blows the MLP up: the guard names the first op."""
    r = subprocess.run(
        [
            irc_exe,
            "train",
            "mlp",
            "--epochs",
            "1",
            "--lr",
            "1e38",
            "--nan-guard",
            "--no-progress",
            "--backend",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "mlp.tg:" in r.stderr and "produced" in r.stderr and "error:" in r.stderr
    assert "Traceback" not in r.stderr

"""Crash safety of the files irc writes (docs/reliability.md): `kill -9` during
`irc train --save` and during compile-cache writes, 20 trials each, must leave every
checkpoint loadable and every cache entry either valid or ignored; corrupt cache entries
are recompiled; processes compiling the same model at once all succeed.

The kill tests are slow (a process start per trial); the corrupt-entry test is quick.
"""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import irc

TRIALS = 20
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# big enough that compiling it takes a while (many kernels), so kills land mid-compile
# and mid-write
CACHE_MODEL = """shared W: f32[16, 16] = normal(0.0, 0.3)
fn f(x: f32[N, 16]) -> (f32, f32[16, 16]) {{
    h = x
{body}
    loss = mean(h * h) + {salt}.0
    return loss, grad(loss, W)
}}
"""


def cache_model(salt: int, layers: int = 12) -> str:
    body = "\n".join(f"    h = tanh(h @ W + {k}.0 * 0.01) * sigmoid(h)" for k in range(layers))
    return CACHE_MODEL.format(body=body, salt=salt)


def _env(cache):
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(cache)
    return env


def _compile_script(src_path, out_path=None):
    save = f"np.save({str(out_path)!r}, np.asarray(r[0]))" if out_path else ""
    return (
        "import numpy as np, irc\n"
        f"m = irc.load({str(src_path)!r}, backend='cpu')\n"
        "r = m.f(np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16))\n" + save
    )


def _check_cache(cache) -> tuple:
    """(valid entries, rejected entries) of a cache directory; never raises."""
    from irc.runtime.llvm import jit

    d = os.path.join(cache, "irc")
    good = bad = 0
    if not os.path.isdir(d):
        return 0, 0
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    try:
        for name in os.listdir(d):
            if name.endswith(".o") and not name.startswith(".tmp-"):
                if jit.cache_read(name[:-2]) is None:
                    bad += 1
                else:
                    good += 1
    finally:
        if old is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = old
    return good, bad


@pytest.mark.slow
def test_kill_during_train_save(tmp_path, irc_exe):
    """kill -9 at a random moment of `irc train --save`: one-batch epochs write the
    checkpoint many times a second, so kills land during writes; every checkpoint left
    behind loads and restores."""
    rng = random.Random(15)
    ckpt = tmp_path / "ckpt.npz"
    present = 0
    for trial in range(TRIALS):
        p = subprocess.Popen(
            [
                irc_exe,
                "train",
                "mlp",
                "--epochs",
                "100000",
                "--batch",
                "1497",
                "--save",
                str(ckpt),
                "--no-progress",
                "--backend",
                "cpu",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp_path,
        )
        time.sleep(rng.uniform(2.0, 8.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        if ckpt.exists():
            present += 1
            with np.load(ckpt, allow_pickle=False) as data:
                assert set(data.files) == {"W1", "b1", "W2", "b2"}
            m = irc.load(os.path.join(ROOT, "examples", "mlp.tg"), backend="interp")
            m.restore(ckpt)
    stale = len(list(tmp_path.glob(".irc-*")))  # temporary files of interrupted writes
    print(
        f"{TRIALS} kills, checkpoint present after {present}, all loadable; {stale} stale temp files"
    )
    assert present >= TRIALS // 2  # most kills land after the first epoch


@pytest.mark.slow
def test_kill_during_cache_write(tmp_path):
    """kill -9 at a random moment of a compile that writes the cache; afterwards every
    cache entry is valid or rejected (never a crash), and the model loads and gives the
    same result as a clean compile."""
    rng = random.Random(15)
    cache = tmp_path / "cache"
    ref_out = tmp_path / "ref.npy"
    for trial in range(TRIALS):
        src = tmp_path / f"m{trial}.tg"
        src.write_text(cache_model(trial))
        p = subprocess.Popen(
            [sys.executable, "-c", _compile_script(src)],
            env=_env(cache),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.5, 4.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        _check_cache(cache)
        r = subprocess.run(
            [sys.executable, "-c", _compile_script(src, ref_out)],
            env=_env(cache),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stderr
        want = irc.load(str(src), backend="interp").f(
            np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
        )[0]
        np.testing.assert_allclose(np.load(ref_out), want, rtol=1e-4)
    good, bad = _check_cache(cache)
    print(f"{TRIALS} kills; cache entries afterwards: {good} valid, {bad} rejected")
    assert good >= TRIALS and bad == 0


CORRUPTIONS = {
    "empty": lambda b: b"",
    "truncated": lambda b: b[: len(b) // 2],
    "one byte flipped": lambda b: b[:-100] + bytes([b[-100] ^ 0xFF]) + b[-99:],
    "garbage": lambda b: os.urandom(len(b)),
    "header only": lambda b: b[:16],
}


@pytest.mark.parametrize(
    "kind",
    [
        k if k == "one byte flipped" else pytest.param(k, marks=pytest.mark.slow)
        for k in sorted(CORRUPTIONS)
    ],
)
def test_corrupt_cache_entry_is_recompiled(tmp_path, monkeypatch, kind):
    from irc.runtime.llvm import jit

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    src = cache_model(1000 + len(kind), layers=2)
    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
    want = irc.loads(src, backend="interp").f(x)[0]
    irc.loads(src, backend="cpu")
    d = os.path.join(tmp_path, "irc")
    files = [f for f in os.listdir(d) if f.endswith(".o")]
    assert files
    for f in files:
        path = os.path.join(d, f)
        data = open(path, "rb").read()
        with open(path, "wb") as fh:
            fh.write(CORRUPTIONS[kind](data))
    jit._ENGINES.clear() if hasattr(jit, "_ENGINES") else None
    m = irc.loads(src, backend="cpu")
    np.testing.assert_allclose(m.f(x)[0], want, rtol=1e-4)


@pytest.mark.slow
def test_concurrent_compiles_share_the_cache(tmp_path):
    """4 processes compile the same model into an empty cache at once: all succeed with
    the same result, and the cache holds valid entries only."""
    cache = tmp_path / "cache"
    src = tmp_path / "m.tg"
    src.write_text(cache_model(4242))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _compile_script(src, tmp_path / f"out{k}.npy")],
            env=_env(cache),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    outs = [np.load(tmp_path / f"out{k}.npy") for k in range(4)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    good, bad = _check_cache(cache)
    assert good >= 1 and bad == 0

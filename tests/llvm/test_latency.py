"""What a load costs besides compiling (benchmarks/latency.py measures it): no
thread is started that would spin while nothing runs, the cached path imports
no more than it needs, and whatever the cached path skips (values of shared
variables kept in the cache, the cheap code stamp) gives the same results as a
cold load.

Process-wide facts (threads, imported modules) are read in a fresh interpreter."""

from __future__ import annotations

import os

import numpy as np
import pytest
from llvm_helpers import ROOT, run_python

import irc
from irc import api

NO_BLAS_POOL = """
import os
import numpy as np
import irc
from irc.runtime.llvm.blas import blas_threads
before = len(os.listdir('/proc/self/task'))
m = irc.loads('fn f(a: f32[N, K], b: f32[K, M]) -> f32[N, M] { return a @ b }')
a = np.ones((64, 64), np.float32)
assert (m.f(a, a) == 64).all()
print(before, len(os.listdir('/proc/self/task')), blas_threads(),
      os.environ.get('OPENBLAS_NUM_THREADS', '-'))
"""


def test_openblas_starts_no_threads(tmp_path):
    """The cpu backend's OpenBLAS (scipy-openblas32) runs on one thread, and it
    is loaded so that it never starts its pool (whose threads spin ~0.1 s of CPU
    each after they start); the user's OPENBLAS_NUM_THREADS is left as it was."""
    env = {"IRC_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp_path)}
    for setting in ("-", "3"):
        if setting != "-":
            env["OPENBLAS_NUM_THREADS"] = setting
        before, after, blas, seen = run_python(NO_BLAS_POOL, env).split()
        assert after == before and blas == "1" and seen == setting


# -- the values of shared variables kept with a module cache entry ---------------------------------


SRC = """
shared W: f32[30, 20] = glorot_uniform()
shared v: f64[7] = normal(1, 2)
shared u: f32[3] = uniform(-1, 1)
shared z: f32[4] = zeros()
shared c: i32 = full(3)
fn f(x: f32[N, 30]) -> f32[N, 20] { return x @ W + sum(u) + sum(z) }
"""


def _values(m):
    return {n: m[n] for n in ("W", "v", "u", "z", "c")}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k])


def test_cached_values_equal_drawn_ones(cache_home, monkeypatch):
    """A cached load takes the kept values (no initialiser runs), equal to a cold
    load's for the same seed; another seed draws its own, as a cold load does."""
    cold = _values(api.loads(SRC, backend="cpu"))
    cold7 = _values(api.loads(SRC, backend="cpu", seed=7))
    assert len(list(cache_home.glob("*.irv"))) == 1
    from irc.runtime import state

    def boom(*a, **k):
        raise AssertionError("initial values drawn on a cached load")

    with monkeypatch.context() as mp:
        mp.setattr(state, "initial_values", boom)
        m = api.loads(SRC, backend="cpu")
        _same(_values(m), cold)
        x = np.ones((2, 30), np.float32)
        np.testing.assert_array_equal(m.f(x), x @ cold["W"] + cold["u"].sum())
        # the kept arrays are copied: updating the module leaves the next load alone
        m["W"] = np.zeros((30, 20), np.float32)
        _same(_values(api.loads(SRC, backend="cpu")), cold)
    # (the entry keeps the values of the seed it was written with: seed 7 draws)
    _same(_values(api.loads(SRC, backend="cpu", seed=7)), cold7)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[:-1],
        lambda d: d[:40],
        lambda d: b"",
        lambda d: d[:-4] + bytes(4),
        lambda d: d.replace(b'"<f4"', b'"<f8"', 1),
        lambda d: d.replace(b"[30, 20]", b"[20, 30]", 1),
    ],
)
def test_damaged_values_are_drawn_again(cache_home, damage):
    cold = _values(api.loads(SRC, backend="cpu"))
    (path,) = cache_home.glob("*.irv")
    path.write_bytes(damage(path.read_bytes()))
    _same(_values(api.loads(SRC, backend="cpu")), cold)


def test_values_read_from_files_are_not_kept(cache_home, tmp_path):
    """A variable initialised from a file is read again on every load (the file
    may have changed): such a module keeps no values."""
    np.save(tmp_path / "w.npy", np.full((2, 3), 5, np.float32))
    src = (
        f'shared w: f32[2, 3] = load("{tmp_path / "w.npy"}")\nshared b: f32[3] = normal()\n'
        "fn f(x: f32[3]) -> f32[3] { return x + b + sum(w) }"
    )
    assert api.loads(src, backend="cpu")["w"][0, 0] == 5
    assert not list(cache_home.glob("*.irv"))
    np.save(tmp_path / "w.npy", np.full((2, 3), 6, np.float32))
    assert api.loads(src, backend="cpu")["w"][0, 0] == 6


CACHED_IMPORTS = """
import sys
import numpy as np
import irc
m = irc.loads({src!r})
m.f(np.ones((2, 30), np.float32))
print(' '.join(sorted(sys.modules)))
"""


def test_cached_load_imports(tmp_path):
    """A cached load imports neither the front end (nor Lark), nor a pass, nor
    numpy.random, nor code generation (llvmlite.ir is llvmlite.binding's own)."""
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    code = CACHED_IMPORTS.format(src=SRC)
    first = set(run_python(code, env).split())
    assert "irc.passes" in first and "numpy.random" in first  # (the test can fail)
    mods = set(run_python(code, env).split())
    assert "irc.runtime.llvm.backend" in mods
    for bad in (
        "lark",
        "irc.frontend",
        "irc.passes",
        "irc.pipeline",
        "numpy.random",
        "irc.runtime.llvm.codegen",
        "irc.ops",
        "hashlib",
    ):
        assert bad not in mods, bad


def test_cached_values_keep_the_memory_check(cache_home, monkeypatch):
    """A variable over IRC_MAX_SHARED_BYTES is refused on a cached load too (its
    kept value is not used: it is drawn again, which raises as a cold load does)."""
    api.loads(SRC, backend="cpu")
    monkeypatch.setenv("IRC_MAX_SHARED_BYTES", "1000")
    with pytest.raises(irc.CompileError, match="shared variable 'W'.*more than"):
        api.loads(SRC, backend="cpu")


def test_no_builtin_is_named_like_a_submodule():
    """irc.__getattr__ answers a submodule's name without the built-ins' table, so a
    built-in of the same name would be hidden."""
    from irc.frontend.builtins import BUILTINS

    here = os.path.join(ROOT, "irc")
    names = {f.removesuffix(".py") for f in os.listdir(here)}
    assert "api" in names and "tanh" in BUILTINS  # (the test can fail)
    assert not names & set(BUILTINS)
    assert irc.tanh is not None and irc._is_submodule("cache") and not irc._is_submodule("tanh")

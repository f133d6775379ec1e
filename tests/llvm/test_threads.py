"""The cpu backend's thread pool and thread setting (runtime/llvm/threads.py):
an idle pool uses no CPU, tasks handed to blocked workers still run (and give
the same results), and the public setting (irc.load(threads=), irc.set_num_threads,
IRC_NUM_THREADS, irc train --threads) reaches the compiled code.

Process-wide measurements (CPU time, thread counts) run in a fresh interpreter so
that nothing else of the test session is counted."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from irc.runtime.llvm import threads
from llvm_helpers import ROOT, run_python

import irc

MLP = os.path.join(ROOT, "examples", "mlp.tg")

BIG = """
fn f(x: f32[N, M]) -> f32[N, M] { return tanh(x) * 2 + exp(-x * x) }
"""


IDLE = (
    """
import os, resource, time
import numpy as np
import irc

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

m = irc.loads('''%s''', threads=4)
x = np.random.default_rng(0).normal(size=(512, 1024)).astype(np.float32)
for _ in range(20):
    m.f(x)
print(len(os.listdir('/proc/self/task')))
time.sleep(0.05)
c0 = cpu()
time.sleep(1.0)
print(cpu() - c0)
"""
    % BIG
)


def test_idle_pool_uses_no_cpu():
    """After parallel calls the workers exist, and over 1 s of idleness the whole
    process uses (almost) no CPU time: the workers block instead of polling."""
    tasks, idle = run_python(IDLE).split()
    assert int(tasks) >= 4  # the main thread and 3 workers (at least)
    assert float(idle) < 0.02, f"idle process used {float(idle):.3f} s of CPU in 1 s"


def test_blocked_workers_wake_up_and_agree():
    """Calls separated by pauses longer than the spin reach workers that blocked;
    every result equals the one-thread result."""
    m = irc.loads(BIG, threads=4)
    one = irc.loads(BIG, threads=1)
    rng = np.random.default_rng(1)
    for k in range(30):
        x = rng.normal(size=(256 + k, 700)).astype(np.float32)
        np.testing.assert_array_equal(m.f(x), one.f(x))
        time.sleep(0.002 if k % 3 else 0)


REDUCTIONS = """
fn total(x: f32[N, M]) -> f32 { return sum(x * x) }
fn top(x: f32[N]) -> f32 { return max(x) }
fn count(x: i32[N]) -> i64 { return sum(x) }
fn cols(x: f32[N, M]) -> f32[M] { return sum(x, axis=0) }
"""


@pytest.mark.parametrize("n", [3, 5000, 300_001])
def test_reductions_split_over_threads_agree(n):
    """Reduce kernels (a sum over everything, a max) and column sums (a map over
    the inner loop of a serial one) are split over the threads when large: the
    results are NumPy's, and the same bits for 1, 3 and 4 threads."""
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 7)).astype(np.float32)
    v = rng.normal(size=n).astype(np.float32)
    v[n // 2] = 50.0
    xi = rng.integers(-(2**30), 2**30, size=n).astype(np.int32)
    got = []
    for t in (1, 3, 4):
        m = irc.loads(REDUCTIONS, threads=t)
        got.append((m.total(x), m.top(v), m.count(xi), m.cols(x)))
    for total, top, count, cols in got:
        np.testing.assert_allclose(total, np.sum(x.astype(np.float64) ** 2), rtol=1e-4)
        assert top == 50.0 and count == xi.astype(np.int64).sum()
        np.testing.assert_allclose(cols, x.sum(0, dtype=np.float64), rtol=1e-4, atol=1e-3)
        for a, b in zip((total, top, count, cols), got[0]):
            np.testing.assert_array_equal(a, b)
    nan = np.zeros(n, np.float32)
    nan[n - 1] = np.nan
    assert np.isnan(irc.loads(REDUCTIONS, threads=4).top(nan))


def test_set_num_threads_follows_and_explicit_threads_stay(monkeypatch):
    monkeypatch.setattr(threads, "_setting", None)
    monkeypatch.delenv("IRC_NUM_THREADS", raising=False)
    assert irc.get_num_threads() == threads.usable_cores() == len(os.sched_getaffinity(0))
    follower = irc.loads(BIG)
    fixed = irc.loads(BIG, threads=3)
    assert follower._backend.threads == threads.usable_cores()
    assert fixed._backend.threads == 3
    irc.set_num_threads(2)
    assert follower._backend.threads == 2 and fixed._backend.threads == 3
    assert irc.get_num_threads() == 2
    later = irc.loads(BIG)
    assert later._backend.threads == 2
    for bad in (0, -1, 1.5, "two", True):
        with pytest.raises(ValueError, match="positive integer"):
            irc.set_num_threads(bad)
        with pytest.raises(ValueError, match="positive integer"):
            irc.loads(BIG, threads=bad)
    assert irc.get_num_threads() == 2


def test_environment_variable(monkeypatch):
    monkeypatch.setattr(threads, "_setting", None)
    monkeypatch.setenv("IRC_NUM_THREADS", "3")
    assert irc.get_num_threads() == 3
    assert irc.loads(BIG)._backend.threads == 3
    monkeypatch.setenv("IRC_NUM_THREADS", "lots")
    with pytest.raises(ValueError, match="IRC_NUM_THREADS must be a positive integer"):
        irc.loads(BIG)


ONE_THREAD = """
import os
import numpy as np
import irc
from irc.runtime.llvm.blas import blas_threads
m = irc.load('examples/mlp.tg', define={'H': 512})
before = len(os.listdir('/proc/self/task'))
rng = np.random.default_rng(0)
x = rng.normal(size=(2048, 64)).astype(np.float32)
y = rng.integers(0, 10, 2048).astype(np.int32)
for _ in range(5):
    m.train(x, y)
print(before, len(os.listdir('/proc/self/task')), blas_threads(), m._backend.threads)
"""


def test_one_thread_starts_no_threads():
    """IRC_NUM_THREADS=1: big products and loops (an MLP with 512 hidden units,
    batch 2048) start no worker thread, and OpenBLAS runs on one thread."""
    before, after, blas, mine = map(int, run_python(ONE_THREAD, {"IRC_NUM_THREADS": "1"}).split())
    assert after == before and blas == 1 and mine == 1
    # and the same program with 2 threads does start a worker (the test can fail)
    before, after, blas, mine = map(int, run_python(ONE_THREAD, {"IRC_NUM_THREADS": "2"}).split())
    assert after == before + 1 and blas == 1 and mine == 2


def test_cli_train_threads(tmp_path):
    from irc.cli import main

    assert main(["train", MLP, "--epochs", "1", "--threads", "1", "--no-progress"]) == 0
    r = subprocess.run(
        [sys.executable, "-m", "irc", "train", MLP, "--threads", "0"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert r.returncode == 1 and "--threads must be a positive integer" in r.stderr

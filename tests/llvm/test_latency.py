"""What a load costs besides compiling (benchmarks/latency.py measures it): no
thread is started that would spin while nothing runs, the cached path imports
no more than it needs, and whatever the cached path skips (values of shared
variables kept in the cache, the cheap code stamp) gives the same results as a
cold load.

Process-wide facts (threads, imported modules) are read in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python(code: str, env: dict | None = None) -> str:
    r = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env=dict(os.environ, **(env or {})),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


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
        before, after, blas, seen = _python(NO_BLAS_POOL, env).split()
        assert after == before and blas == "1" and seen == setting

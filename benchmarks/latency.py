"""The latency section of benchmarks/run.py: what a user waits for around the
kernels, measured as a new user meets it (issue #14's table).

- cold: a fresh Python process, import included, with an empty irc cache
  (XDG_CACHE_HOME pointed at a new temporary folder), from `import irc` to the
  first result of the MLP 784-500-10 SGD step (B=128); wall time of the process;
- cached: the same again with the cache the cold run left;
- cold in a warm process: in a process that already compiled something (the
  chain), the MLP step compiled with an empty cache, load to first result;
- call overhead: one call of the chain on 10 floats through the API
  (m.chain(x, a, b), checks included), and the same chain in NumPy;
- floors, measured the same way as cold and cached: a fresh process that only
  imports NumPy (no fresh-process figure can be below it), and one that imports
  NumPy and irc (what a cached load costs before it reads its cache entry).

Each figure is wall time and, as `[cpu]`, CPU time (user + system of the
process; for the call, of the calling thread's process): on a shared machine
the CPU figures move less with the load. CPU above wall is other threads:
NumPy's OpenBLAS starts its pool at `import numpy` and its threads spin for a
while (~40 ms of CPU on this 2-core machine); irc's own BLAS starts no pool
and irc's thread pool starts on the first parallel call. Fresh processes get byte-compiled
sources (a pip install compiles them; an editable install with
PYTHONDONTWRITEBYTECODE=1 would not): PYTHONPYCACHEPREFIX points at a folder
of this run, filled by a first, untimed process. Each figure
is the minimum and the median over `reps` runs.

    python benchmarks/latency.py [--reps 5]       # just this section

Imports the standard library (and runs irc in subprocesses).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

TARGETS = {"cold": 0.35, "cold, warm process": 0.2, "cached": 0.12, "call": 3e-6}

_LOAD = """
import sys, time
t0 = time.perf_counter()
import numpy as np
import irc
sys.path.insert(0, {here!r})
from workloads import MLP_TG
m = irc.loads(MLP_TG, backend="cpu")
x = np.random.default_rng(0).normal(size=(128, 784)).astype(np.float32)
y = np.zeros(128, np.int32)
m.train(x, y, 0.1)
print(time.perf_counter() - t0)
"""

_WARM_PROCESS = """
import os, sys, tempfile, time
import numpy as np
import irc
sys.path.insert(0, {here!r})
from workloads import CHAIN_TG, MLP_TG
irc.loads(CHAIN_TG, backend="cpu").chain(np.ones(4, np.float32), 1.0, 0.0)
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp()  # empty again
x = np.random.default_rng(0).normal(size=(128, 784)).astype(np.float32)
y = np.zeros(128, np.int32)
t0, c0 = time.perf_counter(), time.process_time()
m = irc.loads(MLP_TG, backend="cpu")
m.train(x, y, 0.1)
print(time.perf_counter() - t0, time.process_time() - c0)
"""

_IMPORT_NUMPY = "import numpy"
_IMPORT_IRC = "import numpy, irc"

_CALL = """
import sys, time, timeit
import numpy as np
import irc
sys.path.insert(0, {here!r})
from workloads import CHAIN_TG, chain_numpy
m = irc.loads(CHAIN_TG, backend="cpu")
x = np.linspace(-1, 1, 10).astype(np.float32)
a, b = np.float32(1.5), np.float32(-0.25)
f = m.chain
for _ in range(2000):
    f(x, a, b)
n = 5000
figs = []
for timer in (time.perf_counter, time.process_time):
    figs.append(min(timeit.repeat(lambda: f(x, a, b), number=n, repeat=7, timer=timer)) / n)
    g = lambda: chain_numpy(x, a, b)  # noqa: E731
    figs.append(min(timeit.repeat(g, number=n, repeat=7, timer=timer)) / n)
print(*figs)
"""


def _env(extra: dict) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


def _run(python, code, env) -> tuple:
    """(wall seconds of the whole process, its CPU seconds (user + system), its stdout)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, out.stdout


def measure(reps: int = 5, python: str = sys.executable, env_extra: dict | None = None) -> dict:
    """{figure: [seconds per run]} for cold, cached, cold in a warm process, the
    two import floors, call (irc) and call (numpy)."""
    root = tempfile.mkdtemp(prefix="irc-latency-")
    try:
        env = _env(dict(env_extra or {}, PYTHONPYCACHEPREFIX=os.path.join(root, "pyc")))
        load = _LOAD.format(here=HERE)
        first = dict(env, XDG_CACHE_HOME=os.path.join(root, "first"))
        _run(python, load, first)  # byte-compiles the sources, as an install would
        names = ["cold", "cached", "cold, warm process", "floor: import numpy",
                 "floor: import numpy, irc", "call", "call (numpy)"]
        res = {f: [] for k in names for f in (k, f"{k} [cpu]")}
        for r in range(reps):
            e = dict(env, XDG_CACHE_HOME=os.path.join(root, f"cache{r}"))
            for k in ("cold", "cached"):
                wall, cpu, _ = _run(python, load, e)
                res[k].append(wall)
                res[f"{k} [cpu]"].append(cpu)
            wall, cpu = map(float, _run(python, _WARM_PROCESS.format(here=HERE), e)[2].split())
            res["cold, warm process"].append(wall)
            res["cold, warm process [cpu]"].append(cpu)
            for k, code in (("floor: import numpy", _IMPORT_NUMPY),
                            ("floor: import numpy, irc", _IMPORT_IRC)):
                wall, cpu, _ = _run(python, code, e)
                res[k].append(wall)
                res[f"{k} [cpu]"].append(cpu)
        e = dict(env, XDG_CACHE_HOME=os.path.join(root, "calls"))
        for r in range(max(1, reps // 2)):
            figs = list(map(float, _run(python, _CALL.format(here=HERE), e)[2].split()))
            for k, v in zip(["call", "call (numpy)", "call [cpu]", "call (numpy) [cpu]"], figs):
                res[k].append(v)
        return res
    finally:
        shutil.rmtree(root, ignore_errors=True)


def table(res: dict) -> str:
    lines = ["| figure | min | median | target |", "|---|---|---|---|"]
    for k, ts in res.items():
        unit, scale = ("µs", 1e6) if k.startswith("call") else ("s", 1.0)
        tgt = TARGETS.get(k.replace(" [cpu]", ""))
        tcell = ""
        if tgt is not None:
            verdict = (
                "ok"
                if statistics.median(ts) <= tgt
                else "ok (min only)"
                if min(ts) <= tgt
                else "MISSED"
            )
            tcell = f"<= {tgt * scale:g} {unit} {verdict}"
        lines.append(
            f"| {k} | {min(ts) * scale:.3g} {unit} "
            f"| {statistics.median(ts) * scale:.3g} {unit} | {tcell} |"
        )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = ap.parse_args(argv)
    res = measure(args.reps)
    print(json.dumps(res) if args.json else table(res))


if __name__ == "__main__":
    main()

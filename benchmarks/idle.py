"""Does an idle irc tax the rest of the process? (issue #22)

In one process: NumPy's MLP step (784-500-10, batch 20: small products, where
NumPy's own OpenBLAS threads matter most) is timed before irc has run anything,
then irc trains the same MLP at batch 128 on its thread pool (several threads),
and NumPy's step is timed again, right after irc's calls and after pauses. An
irc whose idle workers poll would slow NumPy down; one whose workers block
leaves it alone. Also the process CPU time over 1 s of idleness after irc's
last call (0 when nothing polls).

    python benchmarks/idle.py                 # prints the table
    python benchmarks/idle.py --threads 4     # irc's thread count

Not a test: timings depend on the machine and its load (the load average is
printed). Imports irc's public API and the workloads next to this file.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import workloads as W


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def step_times(fn, seconds: float) -> list:
    """Wall times of fn() repeated for `seconds`."""
    out = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="irc's threads (default: cores)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5, help="NumPy timing per round")
    args = ap.parse_args(argv)

    import irc

    rng = np.random.default_rng(0)
    params = {
        "W1": (rng.normal(size=(784, 500)) * 0.05).astype(np.float32),
        "b1": np.zeros(500, np.float32),
        "W2": (rng.normal(size=(500, 10)) * 0.05).astype(np.float32),
        "b2": np.zeros(10, np.float32),
    }
    net = W.MLPNumpy(params)
    x20 = rng.random((20, 784), dtype=np.float32)
    y20 = rng.integers(0, 10, 20).astype(np.int32)
    x128 = rng.random((128, 784), dtype=np.float32)
    y128 = rng.integers(0, 10, 128).astype(np.int32)

    def numpy_step():
        net.train(x20, y20)

    step_times(numpy_step, 1.0)  # warm up: page faults, NumPy's OpenBLAS threads
    before = []
    for _ in range(args.rounds):
        before += step_times(numpy_step, args.seconds)

    m = irc.loads(W.MLP_TG, threads=args.threads)
    threads = m._backend.threads if hasattr(m, "_backend") else None

    def irc_burst():
        for _ in range(20):
            m.train(x128, y128)

    irc_burst()  # compiles are done; this starts the pool's workers
    after_now, after_pause = [], []
    for _ in range(args.rounds):
        irc_burst()
        after_now += step_times(numpy_step, args.seconds)  # right after irc's calls
        irc_burst()
        time.sleep(0.2)
        after_pause += step_times(numpy_step, args.seconds)  # irc idle for 0.2 s
    irc_burst()
    time.sleep(0.05)
    c0 = cpu_seconds()
    time.sleep(1.0)
    idle_cpu = cpu_seconds() - c0

    # the minimum is what the step costs when the machine lets it run; the median
    # also shows what other processes take (a busy machine moves it by 2x or more)
    phases = (("before", before), ("after", after_now), ("after 0.2 s", after_pause))
    med = {k: statistics.median(v) * 1e3 for k, v in phases}
    low = {k: min(v) * 1e3 for k, v in phases}
    print(
        f"load average {os.getloadavg()[0]:.2f}, {len(os.sched_getaffinity(0))} usable cores, "
        f"irc threads {threads}, NumPy {np.__version__}"
    )
    print("| NumPy MLP step, batch 20 | median ms | vs before | min ms | vs before |")
    print("|---|---|---|---|---|")
    for k in med:
        print(
            f"| {k} irc's calls | {med[k]:.3f} | {med[k] / med['before']:.2f}x | {low[k]:.3f} | "
            f"{low[k] / low['before']:.2f}x |"
        )
    print(f"process CPU time over 1 s idle after irc's last call: {idle_cpu * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

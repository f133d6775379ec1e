"""Data-parallel scaling on Ray (irc.distributed): training steps per second of one
process, 1 Ray worker and 2 Ray workers, for a few models and global batch sizes, and
the terms of the cost model of benchmarks/SCALING.md measured on their own, so the
model's prediction can be set beside the measurement.

    python benchmarks/scaling.py                       # writes benchmarks/RESULTS-scaling.md
    python benchmarks/scaling.py --steps 50 --no-write

Per configuration (model, global batch B, N workers), the best of rounds of `--steps`
steps (after a warm-up), on a local Ray started here with one CPU per worker:

  measured    steps/s of pool.step (scatter indices, N workers' FN_grads, combine on the
              driver, FN_apply on the driver, one object-store put of the gradients)
  t_grads     FN_grads on B/N examples, in this process, one thread
  t_apply     FN_apply, in this process
  t_rt        a round trip to the N workers carrying no data (Ray's task overhead)
  t_bytes     ray.put + N ray.get of the gradients (G bytes) and N gradient returns
  predicted   1 / (t_grads + t_apply + t_rt + t_bytes + t_combine)

Not a test: the numbers depend on the machine and its load (recorded with the table).
Imports irc's public API and irc.distributed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CONFIGS = [  # (label, example, defines, global batches)
    ("mlp 64-64-10", "mlp", {}, [64, 512]),
    ("mlp 64-1024-10", "mlp", {"H": 1024}, [64, 512]),
    ("lenet", "lenet", {}, [64, 512]),
]


def _best_time(fn, steps, rounds):
    """Seconds per call: the best of `rounds` means over `steps` calls. On a shared, loaded
    machine the best round is the estimate least disturbed by other jobs; every figure
    (steps and the model's terms alike) is taken this way, so they compare."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        times.append((time.perf_counter() - t0) / steps)
    return min(times)


def measure(ray, label, example, defines, batch, steps, rounds):
    """Rows for 1 process, 1 worker and 2 workers on one model and global batch: the
    three run in alternating rounds (so a change in the machine's load hits all three),
    then the model's terms are measured for each pool."""
    import irc
    import irc.distributed as dist
    from irc.train import bind, builtin_dataset, take

    path = os.path.join(ROOT, "examples", example + ".tg")
    ds = builtin_dataset("digits")
    idx = np.arange(batch) % ds.n_train

    # One process, no Ray: the ordinary compiled train step (2 threads).
    single = irc.load(path, backend="cpu", define=defines)
    kw = bind(single.train.signature, take(ds.train, ds.batch_axis, idx))
    pools = {}
    try:
        for workers in (1, 2):
            r = dist.train(
                path, ds, workers=workers, epochs=0, batch=batch, backend="cpu",
                define=defines, progress=False, out=open(os.devnull, "w"), keep_pool=True,
            )  # fmt: skip
            pools[workers] = r["pool"]
        runs = {0: lambda: single.train(**kw)}
        for w, pool in pools.items():
            runs[w] = lambda pool=pool: pool.step(idx, "bench")
        for run in runs.values():
            for _ in range(3):
                run()
        times = {w: [] for w in runs}
        for _ in range(rounds):
            for w, run in runs.items():
                times[w].append(_best_time(run, steps, 1))
        rows = []
        for w in runs:
            row = {"model": label, "batch": batch, "workers": w}
            row["step_s"] = min(times[w])
            if w:
                row.update(_terms(ray, dist, pools[w], ds, idx, w, steps, rounds))
            rows.append(row)
        return rows
    finally:
        for pool in pools.values():
            pool.shutdown()


def _terms(ray, dist, pool, ds, idx, workers, steps, rounds) -> dict:
    """The cost model's terms for a pool, each measured on its own."""
    from irc.train import bind, take

    m, info, row = pool.m, pool.info, {}
    if hasattr(m._backend, "set_threads"):
        m._backend.set_threads(1)  # as a worker runs
    g = m.functions[info["grads"]]
    shards = dist.shard_indices(idx, workers)
    kws = [bind(g.signature, take(ds.train, ds.batch_axis, s)) for s in shards]
    outs = [g(**k) for k in kws]
    row["t_grads"] = _best_time(lambda: g(**kws[0]), max(steps // 2, 3), rounds)
    nres = len(info["shard_results"])
    grads = dist.combine(outs, info["reduce"])[nres:]
    gbytes = sum(a.nbytes for a in grads)
    row["grad_bytes"] = gbytes
    row["t_combine"] = _best_time(lambda: dist.combine(outs, info["reduce"]), steps, rounds)
    apply_kw = pool._apply_kwargs(dict(zip(info["grad_names"], grads)))
    state = {n: m[n] for n in m.shared}
    row["t_apply"] = _best_time(lambda: m.functions[info["apply"]](**apply_kw), steps, 1)
    for n, v in state.items():  # undo the applies
        m[n] = v
    # What a step moves besides the indices: the combined gradients (G bytes) down,
    # inside the call or through one put as Pool.step sends them, and each shard's
    # gradients (G bytes) back; measured with actors that only pass the arrays back,
    # minus a round trip carrying nothing.
    echo = ray.remote(num_cpus=0)(Echo)
    actors = [echo.remote() for _ in range(workers)]
    try:
        ray.get([a.back.remote(None) for a in actors])
        row["t_rt"] = _best_time(
            lambda: ray.get([a.back.remote(None) for a in actors]), steps, rounds
        )
        payload = [np.zeros(a.shape, a.dtype) for a in grads]
        small = gbytes < dist.INLINE_BYTES

        def transfer():
            ref = payload if small else ray.put(payload)
            ray.get([a.back.remote(ref) for a in actors])

        row["t_bytes"] = max(_best_time(transfer, steps, rounds) - row["t_rt"], 0.0)
    finally:
        for a in actors:
            ray.kill(a)
    row["predicted_s"] = (
        row["t_grads"] + row["t_apply"] + row["t_rt"] + row["t_bytes"] + row["t_combine"]
    )
    return row


class Echo:
    """Returns a copy of what it is sent (Ray hands an actor read-only arrays)."""

    def back(self, arrays):
        return None if arrays is None else [np.array(a) for a in arrays]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default=None, help="comma-separated model labels' first words")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    load0 = os.getloadavg()[0]
    # 3 CPUs for Ray's accounting: the 1-worker and 2-worker pools are alive together
    # (they run in turns, never at once).
    ray.init(num_cpus=3, include_dashboard=False, configure_logging=False, log_to_driver=False)
    rows = []
    try:
        for label, example, defines, batches in CONFIGS:
            if args.only and label.split()[0] not in args.only.split(","):
                continue
            for batch in batches:
                for row in measure(ray, label, example, defines, batch, args.steps, args.rounds):
                    rows.append(row)
                    print(_fmt_row(row), flush=True)
    finally:
        ray.shutdown()
    load1 = os.getloadavg()[0]
    text = _report(rows, load0, load1, argv)
    print(text)
    if not args.no_write:
        with open(os.path.join(HERE, "RESULTS-scaling.md"), "w") as f:
            f.write(text)
    return 0


def _fmt_row(r) -> str:
    who = "1 process" if r["workers"] == 0 else f"{r['workers']} worker(s)"
    s = f"{r['model']:<16} B={r['batch']:<4} {who:<12} {1 / r['step_s']:8.1f} steps/s"
    if "predicted_s" in r:
        s += (
            f"  (predicted {1 / r['predicted_s']:7.1f}: grads {r['t_grads'] * 1e3:.2f} ms, "
            f"apply {r['t_apply'] * 1e3:.2f}, round trip {r['t_rt'] * 1e3:.2f}, "
            f"bytes {r['grad_bytes'] / 1e3:.0f} KB in {r['t_bytes'] * 1e3:.2f} ms, "
            f"combine {r['t_combine'] * 1e3:.2f})"
        )
    return s


def _report(rows, load0, load1, argv) -> str:
    lines = [
        "# Data-parallel scaling on one machine (benchmarks/scaling.py)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}; load average {load0:.1f} before, {load1:.1f} after "
        "(the machine is shared: compare rows of one run, not runs).",
        f"Command: `python benchmarks/scaling.py {' '.join(argv or sys.argv[1:])}`".rstrip() + "",
        "",
        "Steps per second of one training step on the global batch B: one process (the",
        "ordinary compiled `train`, no Ray, 2 threads), and 1 or 2 Ray workers (one thread",
        "each), measured in alternating rounds (the best round of each). `predicted` is the",
        "cost model of SCALING.md from its terms, each measured alone; times in ms.",
        "",
        "| model | B | run | steps/s | predicted | grads(B/N) | apply | round trip | "
        "gradients | transfer | combine |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        who = "1 process" if r["workers"] == 0 else f"{r['workers']} worker(s)"
        if "predicted_s" not in r:
            lines.append(
                f"| {r['model']} | {r['batch']} | {who} | {1 / r['step_s']:.1f} | | | | | | | |"
            )
            continue
        lines.append(
            f"| {r['model']} | {r['batch']} | {who} | {1 / r['step_s']:.1f} | "
            f"{1 / r['predicted_s']:.1f} | {r['t_grads'] * 1e3:.2f} | {r['t_apply'] * 1e3:.2f} | "
            f"{r['t_rt'] * 1e3:.2f} | {r['grad_bytes'] / 1e3:.0f} KB | "
            f"{r['t_bytes'] * 1e3:.2f} | {r['t_combine'] * 1e3:.2f} |"
        )
    lines += [
        "",
        "Speed-up of 2 workers over 1 (measured; predicted by the model):",
        "",
        "| model | B | measured | predicted |",
        "|---|---|---|---|",
    ]
    by = {(r["model"], r["batch"], r["workers"]): r for r in rows}
    for (model, batch, w), r in by.items():
        one = by.get((model, batch, 1))
        if w == 2 and one is not None:
            lines.append(
                f"| {model} | {batch} | {one['step_s'] / r['step_s']:.2f} | "
                f"{one['predicted_s'] / r['predicted_s']:.2f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

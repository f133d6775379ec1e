"""Pass-time benchmark: the whole pipeline on a generated MLP training step
with L hidden layers, for L and 10*L, to show that pass time grows about
linearly with the size of the graph.

    python benchmarks/pass_time.py [--layers 4] [--repeat 5]

Prints ops before and after the pipeline, the median pass time over
`--repeat` runs, and the ratio of the two sizes' times per op.
"""

from __future__ import annotations

import argparse
import statistics
import time

from irc.api import compile_to_ir
from irc.pipeline import run_pipeline


def mlp_source(layers: int, width: int = 64) -> str:
    lines = [
        f"shared W0: f32[64, {width}] = glorot_uniform()",
        f"shared b0: f32[{width}] = zeros()",
    ]
    for i in range(1, layers):
        lines += [
            f"shared W{i}: f32[{width}, {width}] = glorot_uniform()",
            f"shared b{i}: f32[{width}] = zeros()",
        ]
    lines += [f"shared Wo: f32[{width}, 10] = glorot_uniform()", "shared bo: f32[10] = zeros()"]
    params = [f"W{i}" for i in range(layers)] + [f"b{i}" for i in range(layers)] + ["Wo", "bo"]
    body = ["    h = x"]
    for i in range(layers):
        body.append(f"    h = tanh(h @ W{i} + b{i})")
    body.append("    loss = mean(categorical_crossentropy(softmax(h @ Wo + bo), y))")
    grads = ", ".join("g" + p for p in params)
    body.append(f"    {grads} = grad(loss, {', '.join(params)})")
    for p in params:
        body.append(f"    {p} <- {p} - lr * g{p}")
    body.append("    return loss")
    return (
        "\n".join(lines)
        + "\nfn train(x: f32[N, 64], y: i32[N], lr: f32 = 0.1) -> f32 {\n"
        + "\n".join(body)
        + "\n}\n"
    )


def count_ops(module) -> int:
    return sum(1 for op in module.walk()) - 1


def measure(layers: int, repeat: int):
    src = mlp_source(layers)
    times = []
    for _ in range(repeat):
        m = compile_to_ir(src, f"mlp{layers}.tg")
        before = count_ops(m)
        start = time.perf_counter()
        run_pipeline(m)
        times.append(time.perf_counter() - start)
    return before, count_ops(m), statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for layers in (args.layers, 10 * args.layers):
        before, after, t = measure(layers, args.repeat)
        rows.append((layers, before, after, t))
        print(
            f"{layers:4d} layers: {before:6d} ops in, {after:6d} ops out, pass time {t * 1e3:8.1f} ms "
            f"({t / before * 1e6:.1f} us per input op)"
        )
    (_, b1, _, t1), (_, b2, _, t2) = rows
    print(
        f"graph {b2 / b1:.1f}x larger -> pass time {t2 / t1:.1f}x (per op: {(t2 / b2) / (t1 / b1):.2f}x)"
    )


if __name__ == "__main__":
    main()

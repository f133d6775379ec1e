"""The OpenCL column of the benchmarks (not a test): the workloads of
benchmarks/workloads.py on the opencl backend, side by side with the cpu
backend and NumPy, in one process; medians of repeated calls.

    python tests/opencl/bench_opencl.py [--quick] [--only mlp,cnn] [--device pocl]

Prints a Markdown table (times and the opencl / cpu ratio the issue bounds:
within 3x for the MLP and CNN training steps on PoCL) and the first step's
largest difference from NumPy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "benchmarks"))

import workloads as W


def load(text, backend, device=None):
    from irc import api

    orig = api._make_backend

    def make(name, module, state, dev, **kw):
        if backend == "opencl":
            from irc.runtime.opencl.backend import OpenCLBackend

            return OpenCLBackend(module, state, device)
        try:
            return orig("cpu", module, state, dev, **kw)
        except Exception:  # noqa: BLE001  (irc.api without the cpu backend yet)
            from irc.runtime.llvm.backend import LLVMBackend

            return LLVMBackend(module, state)

    api._make_backend = make
    try:
        return api.loads(text)
    finally:
        api._make_backend = orig


def median_time(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _params(m, names):
    return {k: m[k] for k in names}


def bench(name, args_fn, text, ref_cls, names, repeat, backends, device):
    row, err = {}, {}
    for b in backends:
        try:
            m = load(text, b, device)
        except Exception as e:  # noqa: BLE001  (a backend that is not there (yet))
            print(
                f"{name}: {b} backend unavailable: {type(e).__name__}: {str(e)[:200]}",
                file=sys.stderr,
            )
            continue
        args = args_fn()
        if ref_cls is not None:
            ref = ref_cls(_params(m, names))
            l_irc = m._backend.call("train", list(args), {})[0]
            l_np = ref.train(*args)
            err[b] = max(
                abs(float(l_irc) - float(l_np)),
                max(float(np.max(np.abs(m[k] - getattr(ref, k)))) for k in names),
            )
        else:
            got = m._backend.call("chain", list(args), {})[0]
            with np.errstate(all="ignore"):
                want = W.chain_numpy(*args)
            err[b] = float(np.max(np.abs(got - want) / (1 + np.abs(want))))
        be = m._backend
        fn = "train" if ref_cls is not None else "chain"
        row[b] = median_time(lambda be=be, fn=fn, args=args: be.call(fn, list(args), {}), repeat)
    if ref_cls is not None:
        ref = ref_cls(_params(m, names))
        args = args_fn()
        row["numpy"] = median_time(lambda: ref.train(*args), repeat)
    else:
        args = args_fn()
        with np.errstate(all="ignore"):
            row["numpy"] = median_time(lambda: W.chain_numpy(*args), repeat)
    return row, err


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--device", default=None)
    ap.add_argument("--backends", default="opencl,cpu")
    a = ap.parse_args(argv)
    only = set(filter(None, a.only.split(","))) or {"chain", "mlp", "cnn", "rnn"}
    rep = 5 if a.quick else 20
    backends = a.backends.split(",")
    rng = np.random.default_rng(0)
    rows = []
    if "chain" in only:
        x = rng.normal(size=10**6).astype(np.float32)
        rows.append(
            ("chain 1e6",)
            + bench(
                "chain",
                lambda: (x, np.float32(1.5), np.float32(-0.25)),
                W.CHAIN_TG,
                None,
                (),
                rep,
                backends,
                a.device,
            )
        )
    if "mlp" in only:
        for n in (128, 20):
            x = rng.normal(size=(n, 784)).astype(np.float32)
            y = rng.integers(0, 10, n).astype(np.int32)
            rows.append(
                (f"mlp b{n}",)
                + bench(
                    "mlp",
                    lambda x=x, y=y: (x, y, np.float32(0.1)),
                    W.MLP_TG,
                    W.MLPNumpy,
                    ("W1", "b1", "W2", "b2"),
                    rep * 2,
                    backends,
                    a.device,
                )
            )
    if "cnn" in only:
        x = rng.normal(size=(64, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, 64).astype(np.int32)
        rows.append(
            ("cnn b64",)
            + bench(
                "cnn",
                lambda: (x, y, np.float32(0.05)),
                W.CNN_TG,
                W.CNNNumpy,
                W.CNNNumpy.NAMES,
                max(3, rep // 2),
                backends,
                a.device,
            )
        )
    if "rnn" in only:
        xs = rng.normal(size=(50, 32, 64)).astype(np.float32)
        ys = rng.integers(0, 64, (50, 32)).astype(np.int32)
        s0 = np.zeros((32, 128), np.float32)
        rows.append(
            ("rnn T50 B32",)
            + bench(
                "rnn",
                lambda: (xs, ys, s0, np.float32(0.05)),
                W.RNN_TG,
                W.RNNNumpy,
                W.RNNNumpy.NAMES,
                rep,
                backends,
                a.device,
            )
        )
    cols = backends + ["numpy"]
    print("| workload | " + " | ".join(cols) + " | opencl / cpu | max diff (opencl) |")
    print("|---" * (len(cols) + 3) + "|")
    for label, r, err in rows:
        cells = [f"{r[c] * 1e3:.3f} ms" if c in r else "n/a" for c in cols]
        ratio = f"{r['opencl'] / r['cpu']:.2f}x" if "opencl" in r and "cpu" in r else ""
        print(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {ratio} | {err.get('opencl', float('nan')):.1e} |"
        )


if __name__ == "__main__":
    main()

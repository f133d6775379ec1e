"""Bad calls against compiled models: wrong shapes, ranks, dtypes, strides, zero-size
dims, NaN/Inf values and out-of-range labels, on every backend.

The rule (docs/reliability.md): a backend's outcome must match the interpreter's.
Either both raise a clean error (irc.CallError for the call boundary, IndexError for a
run-time check of the model), or both return and the results and shared-variable
updates agree (irc.verify_backends.compare). Anything else is counted:
  crash   any other exception (a traceback the user should never see), or the
          interpreter itself raising something other than those two
  silent  a backend returns where the interpreter raises, or returns different values

run_bad_calls(...) returns the tally {calls, clean_errors, agreed, crashes, silent,
failures}; tests/verify/test_bad_calls.py asserts crashes == silent == 0.
"""

from __future__ import annotations

import os

import numpy as np

import irc
from irc.verify_backends import _inlined, compare, random_args

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLEAN = (irc.CallError, IndexError)


def mutations(sig, args, rng):
    """(label, argument list) pairs of bad or unusual calls derived from a valid one."""
    out = []
    for k, (a, x) in enumerate(zip(sig.args, args)):
        x = np.asarray(x)

        def put(v, k=k):
            new = list(args)
            new[k] = v
            return new

        name = a.name
        if x.ndim >= 1:
            out.append((f"{name}: one more element on axis 0", put(np.concatenate([x, x[:1]]))))
            out.append((f"{name}: rank + 1", put(x[None])))
            out.append((f"{name}: rank - 1", put(x[0])))
            out.append((f"{name}: zero-size axis 0", put(x[:0])))
            wide = np.repeat(x, 2, axis=-1)
            out.append((f"{name}: strided view (step 2 on the last axis)", put(wide[..., ::2])))
            out.append((f"{name}: Fortran order", put(np.asfortranarray(x))))
            if x.ndim >= 2:
                out.append(
                    (
                        f"{name}: one more element on the last axis",
                        put(np.concatenate([x, x[..., :1]], axis=-1)),
                    )
                )
                out.append(
                    (
                        f"{name}: transposed view",
                        put(np.ascontiguousarray(x.swapaxes(0, 1)).swapaxes(0, 1)),
                    )
                )
        else:
            out.append((f"{name}: array where a scalar is expected", put(np.stack([x, x]))))
        out.append((f"{name}: complex dtype", put(x.astype(np.complex64))))
        out.append((f"{name}: string", put(np.full(x.shape, "a"))))
        out.append(
            (f"{name}: object", put(np.array(x.tolist() if x.ndim else x.item(), dtype=object)))
        )
        out.append((f"{name}: None", put(None)))
        if x.dtype.kind == "f":
            out.append((f"{name}: float64 data", put(x.astype(np.float64))))
            out.append((f"{name}: int data", put(np.round(x * 3).astype(np.int64))))
            out.append((f"{name}: bool data", put(x > 0)))
            for bad in (np.nan, np.inf, -np.inf):
                y = x.copy()
                y.reshape(-1)[: max(1, y.size // 3)] = bad
                out.append((f"{name}: {bad} values", put(y)))
        elif x.dtype.kind in "iu":
            out.append((f"{name}: float labels", put(x.astype(np.float32))))
            out.append((f"{name}: int64 labels", put(x.astype(np.int64))))
            big = x.copy()
            big.reshape(-1)[:1] = 1_000_000
            out.append((f"{name}: out-of-range label (10^6)", put(big)))
            neg = x.copy()
            neg.reshape(-1)[:1] = -1
            out.append((f"{name}: label -1", put(neg)))
            huge = x.astype(np.int64)
            huge.reshape(-1)[:1] = 2**40
            out.append((f"{name}: int64 label 2^40", put(huge)))
    out.append(("one argument too many", list(args) + [np.float32(1.0)]))
    if args:
        out.append(
            (
                "one argument missing",
                list(args)[:-1] if not sig.args[-1].has_default else list(args)[:-2],
            )
        )
    return out


def _call(m, fn, args, state):
    for n, v in state.items():
        m[n] = v
    out = getattr(m, fn)(*args)
    res = out if isinstance(out, tuple) else (() if out is None else (out,))
    return [np.asarray(r) for r in res] + [m[n] for n in state]


def run_bad_calls(examples, backends, seed=0, limit=None) -> dict:
    tally = {"calls": 0, "clean_errors": 0, "agreed": 0, "crashes": 0, "silent": 0, "failures": []}
    rng = np.random.default_rng(seed)
    for ex in examples:
        path = os.path.join(ROOT, "examples", f"{ex}.tg")
        mods = {b: irc.load(path, backend=b) for b in ["interp", *backends]}
        ref = mods["interp"]
        inl = _inlined(ref._tg)
        for fn in ref.functions:
            args, _ = random_args(inl.lookup(fn), rng)
            state = {n: ref[n] for n in ref.shared}
            cases = mutations(ref.signature(fn), args, rng)
            if limit:
                cases = [cases[i] for i in rng.permutation(len(cases))[:limit]]
            for label, bad in cases:
                what = f"{ex}.{fn}: {label}"
                try:
                    want = _call(ref, fn, bad, state)
                    ref_err = None
                except CLEAN as e:
                    want, ref_err = None, e
                except Exception as e:  # noqa: BLE001
                    tally["crashes"] += 1
                    tally["failures"].append(f"{what}: interp crashed: {type(e).__name__}: {e}")
                    continue
                for b in backends:
                    tally["calls"] += 1
                    try:
                        got = _call(mods[b], fn, bad, state)
                    except CLEAN as e:
                        if ref_err is None:
                            tally["crashes"] += 1  # a clean error where interp computes
                            tally["failures"].append(f"{what} [{b}]: raised {e!r}, interp returned")
                        else:
                            tally["clean_errors"] += 1
                        continue
                    except Exception as e:  # noqa: BLE001
                        tally["crashes"] += 1
                        tally["failures"].append(f"{what} [{b}]: {type(e).__name__}: {e}")
                        continue
                    if ref_err is not None:
                        tally["silent"] += 1
                        tally["failures"].append(
                            f"{what} [{b}]: returned, interp raised {ref_err!r}"
                        )
                        continue
                    whys = [w for w in (compare(g, r) for g, r in zip(got, want)) if w]
                    if whys or len(got) != len(want):
                        tally["silent"] += 1
                        tally["failures"].append(f"{what} [{b}]: {whys[:1]}")
                    else:
                        tally["agreed"] += 1
    return tally

"""Accuracy of the vectorised f32 elementary functions (runtime/llvm/
transcendentals.py) against NumPy over the whole float32 range: every binade
from the smallest denormal to the largest float, both signs, plus 0, -0,
+-inf and NaN. Errors are measured in ulp of the NumPy result; specials must
match exactly (same NaN-ness, same infinities, same zeros up to sign)."""

from __future__ import annotations

import numpy as np
import pytest

from irc.ir.types import F32, TensorType
from llvm_helpers import cpu_backend, one_op_module

SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-45, -1e-45, 1.1754942e-38,
                     1.1754944e-38, 3.4028235e38, -3.4028235e38, 88.72283, 88.72284, -87.33654,
                     -103.97208, -104.0, 0.5, 2.0, 1e-8, -1e-8, 0.625, -0.625, 9.0, -9.0, 20.0, -20.0],
                    dtype=np.float32)


def full_range(n_per_binade=64, seed=0):
    """Values spread over every float32 binade, both signs, plus the specials."""
    rng = np.random.default_rng(seed)
    exps = np.arange(-149, 128)
    mant = rng.random((len(exps), n_per_binade))
    vals = np.ldexp(1.0 + mant, exps[:, None]).astype(np.float32).ravel()
    vals = vals[np.isfinite(vals)]
    return np.concatenate([vals, -vals, SPECIALS])


def ulp_error(got, want):
    """|got - want| in units of the spacing of float32 at want (0 where both agree)."""
    got = got.astype(np.float64)
    want64 = want.astype(np.float64)
    with np.errstate(over="ignore"):
        spacing = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    spacing = np.maximum(spacing, np.float64(np.finfo(np.float32).smallest_subnormal))
    err = np.abs(got - want64) / spacing
    same = (got == want64) | (np.isnan(got) & np.isnan(want64))
    return np.where(same, 0.0, err)


def run_unary(name, x):
    m = one_op_module(name, [TensorType(F32, ("N",))], {})
    be = cpu_backend(m)
    return be.call("f", [x], {})[0]


def check(got, want, max_ulp, abs_tol=0.0):
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    err = ulp_error(got[fin], want[fin])
    close = np.abs(got[fin].astype(np.float64) - want[fin].astype(np.float64)) <= abs_tol
    bad = (err > max_ulp) & ~close
    if bad.any():
        x = np.flatnonzero(bad)[:5]
        raise AssertionError(f"{bad.sum()} values beyond {max_ulp} ulp, worst {err.max():.1f} ulp; "
                             f"got {got[fin][x]}, want {want[fin][x]}")


REF = {
    "tg.exp": (np.exp, 2, 0.0),
    "tg.log": (np.log, 2, 0.0),
    "tg.log1p": (np.log1p, 2, 0.0),
    "tg.tanh": (np.tanh, 4, 0.0),
    "tg.sigmoid": (None, 4, 1e-7),
    "tg.softplus": (lambda x: np.logaddexp(np.float32(0), x), 4, 0.0),
}


@pytest.mark.parametrize("name", list(REF))
def test_unary_full_range(name):
    from irc.ops.registry import REGISTRY

    x = full_range()
    fn, max_ulp, abs_tol = REF[name]
    with np.errstate(all="ignore"):
        want = (fn or REGISTRY[name].numpy)(x).astype(np.float32)
    got = run_unary(name, x)
    check(got, want, max_ulp, abs_tol)


def test_pow_full_range():
    rng = np.random.default_rng(1)
    base = full_range(8, seed=2)
    x = np.concatenate([base, base, np.array([-2.0, -2.0, -0.0, -0.0, 0.0, -1.0, -1.0, 1.0, np.nan, 2.0],
                                             np.float32)])
    y = np.concatenate([rng.uniform(-4, 4, base.size), rng.integers(-5, 6, base.size),
                        np.array([3.0, 0.5, -3.0, 3.0, -1.0, np.inf, -np.inf, np.nan, 0.0, 130.0])]).astype(np.float32)
    m = one_op_module("tg.pow", [TensorType(F32, ("N",)), TensorType(F32, ("N",))], {})
    got = cpu_backend(m).call("f", [x, y], {})[0]
    with np.errstate(all="ignore"):
        want = np.power(x, y)
    check(got, want, 1)


def test_vector_and_scalar_paths_agree():
    """The same inputs at every offset of a vector: the vector body and the
    remainder loop give bit-identical results."""
    x = full_range(4)[:1000]
    got = run_unary("tg.tanh", x)
    for k in (1, 3, 7):
        np.testing.assert_array_equal(run_unary("tg.tanh", x[k:]), got[k:])

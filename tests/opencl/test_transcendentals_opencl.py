"""Accuracy of the f32 elementary functions the OpenCL kernels use (the irc_*
helpers of runtime/opencl/codegen.py: arithmetic only, so CPU devices
vectorise them) against NumPy over the whole float32 range: every binade from
the smallest denormal to the largest float, both signs, plus 0, -0, +-inf and
NaN, with the bounds of the cpu backend's functions (same algorithms)."""

from __future__ import annotations

import numpy as np
import pytest
from opencl_helpers import one_op_func, opencl_backend

from irc.ir.core import Module
from irc.ir.types import F32, TensorType
from irc.ops.registry import REGISTRY

SPECIALS = np.array(
    [
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        np.nan,
        1.0,
        -1.0,
        1e-45,
        -1e-45,
        1.1754942e-38,
        1.1754944e-38,
        3.4028235e38,
        -3.4028235e38,
        88.72283,
        88.72284,
        -87.33654,
        -103.97208,
        -104.0,
        0.5,
        2.0,
        1e-8,
        -1e-8,
        0.625,
        -0.625,
        9.0,
        -9.0,
        20.0,
        -20.0,
    ],
    dtype=np.float32,
)


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


def check(got, want, max_ulp, abs_tol=0.0):
    """Specials exactly (NaN-ness, infinities), finite values within max_ulp (or abs_tol)."""
    assert got.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    fin = np.isfinite(want)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)])
    err = ulp_error(got[fin], want[fin])
    close = np.abs(got[fin].astype(np.float64) - want[fin].astype(np.float64)) <= abs_tol
    bad = (err > max_ulp) & ~close
    if bad.any():
        x = np.flatnonzero(bad)[:5]
        raise AssertionError(
            f"{bad.sum()} values beyond {max_ulp} ulp, worst {err.max():.1f} ulp; "
            f"got {got[fin][x]}, want {want[fin][x]}"
        )


# op: (reference, ulp bound, absolute tolerance), the cpu backend's bounds
REF = {
    "tg.exp": (np.exp, 2, 0.0),
    "tg.log": (np.log, 2, 0.0),
    "tg.log1p": (np.log1p, 2, 0.0),
    "tg.tanh": (np.tanh, 4, 0.0),
    "tg.sigmoid": (None, 4, 1e-7),
    "tg.softplus": (lambda x: np.logaddexp(np.float32(0), x), 4, 0.0),
    "tg.abs": (np.abs, 0, 0.0),
}


def _denormals_kept(be) -> bool:
    import pyopencl as cl

    return bool(be.dev.device.single_fp_config & cl.device_fp_config.DENORM)


@pytest.fixture(scope="module")
def unary():
    m = Module()
    for name in REF:
        m.body.append(one_op_func(name, [TensorType(F32, ("N",))], {}, "f_" + name[3:]))
    m.body.append(
        one_op_func("tg.pow", [TensorType(F32, ("N",)), TensorType(F32, ("N",))], {}, "f_pow")
    )
    return opencl_backend(m)


@pytest.mark.parametrize("name", list(REF))
def test_unary_full_range(name, unary):
    x = full_range()
    if not _denormals_kept(unary):
        tiny = np.abs(x) < np.finfo(np.float32).tiny
        x = x[~tiny]
    fn, max_ulp, abs_tol = REF[name]
    with np.errstate(all="ignore"):
        want = (fn or REGISTRY[name].numpy)(x).astype(np.float32)
    got = unary.call("f_" + name[3:], [x], {})[0]
    if not _denormals_kept(unary):  # a device that flushes denormal results to zero
        keep = ~(np.abs(want) < np.finfo(np.float32).tiny)
        got, want = got[keep], want[keep]
    check(got, want, max_ulp, abs_tol)


def test_pow(unary):
    """pow is the device's builtin (OpenCL allows 16 ulp; PoCL is within a few)."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0.01, 100, 5000).astype(np.float32)
    y = rng.uniform(-8, 8, 5000).astype(np.float32)
    x = np.concatenate([x, np.array([-2.0, -2.0, 0.0, -1.0, 1.0, np.nan, 2.0, 4.0], np.float32)])
    y = np.concatenate([y, np.array([3.0, 0.5, -1.0, np.inf, np.nan, 0.0, 130.0, 0.5], np.float32)])
    with np.errstate(all="ignore"):
        want = np.power(x, y)
    check(unary.call("f_pow", [x, y], {})[0], want, 16)


def test_chunk_boundaries_do_not_change_results(unary):
    """The same inputs at every offset: vectorised chunk bodies and their
    remainders give identical results."""
    x = full_range(4)[:3000]
    got = unary.call("f_tanh", [x], {})[0]
    for k in (1, 3, 7, 13):
        np.testing.assert_array_equal(unary.call("f_tanh", [x[k:]], {})[0], got[k:])

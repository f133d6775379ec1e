"""One function of thousands of statements (issue 20): every phase stays
near-linear, fused loop bodies stay bounded, and the results are right.

Timings are process CPU time (the machine is shared), compared as a ratio of
two sizes in the default suite (a super-linear pass shows as a ratio far above
the size ratio); the 20,000-statement programs run in the slow suite."""

import time

import irc.passes.fuse_elementwise as fuse_mod
import irc.passes.lower_to_loops as lower_mod
import numpy as np
import pytest
from long_programs import chain, independent, mixed, reference, scalar, shared_updates

import irc
import irc.ops.fused as fused_mod
from irc.ops.fused import MAX_FUSED_OPS, body_size


@pytest.fixture(autouse=True)
def _as_users_compile(monkeypatch):
    """Timed as a user's compile: no whole-module cache, and no IR verification
    after every pass (the suite's conftest turns it on; it triples the time)."""
    import irc.pipeline

    monkeypatch.setenv("IRC_NO_CACHE", "1")
    monkeypatch.setattr(irc.pipeline, "VERIFY_EACH", False)


def _cpu_seconds(src: str, backend: str = "interp") -> float:
    t = time.process_time()
    irc.loads(src, backend=backend)
    return time.process_time() - t


def _linear(make, small_n, monkeypatch):
    monkeypatch.setenv("IRC_NO_CACHE", "1")
    small, big = make(small_n), make(4 * small_n)
    _cpu_seconds(small)  # warm: imports, grammar, op registry
    t_small = min(_cpu_seconds(small) for _ in range(2))
    t_big = _cpu_seconds(big)
    assert t_big < 8 * t_small + 0.2, (t_small, t_big)


@pytest.mark.parametrize("make", [chain, shared_updates])
def test_compile_time_grows_linearly(make, monkeypatch):
    """4x the statements costs about 4x (allowed: 8x) through parse, irgen and
    every pass, on the interpreter (no LLVM time in it)."""
    _linear(make, 300, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("make", [independent, mixed])
def test_compile_time_grows_linearly_more_shapes(make, monkeypatch):
    _linear(make, 1000, monkeypatch)


def test_fused_bodies_are_bounded():
    """fuse-elementwise stops a group at MAX_FUSED_OPS ops and lower-to-loops
    does not merge the pieces back into one loop body."""
    m = irc.loads(chain(2 * MAX_FUSED_OPS + 100), backend="interp")
    fused = [op for op in m._opt.walk() if op.name == "tg.fused"]
    assert len(fused) >= 3
    assert all(body_size(op) <= MAX_FUSED_OPS for op in fused)
    from irc.passes.lower_to_loops import lower_module

    loops = lower_module(m._opt.clone())
    for op in loops.walk():
        if op.name == "loop.for":
            n = sum(
                1 for o in op.walk() if o.name.startswith("scalar.") and o.name != "scalar.const"
            )
            assert n <= MAX_FUSED_OPS + 8, n  # (+ index arithmetic)


@pytest.mark.parametrize("backend", ["interp", "cpu"])
def test_split_groups_compute_the_same(backend, monkeypatch):
    """With a small bound the chain is split into many loops: same results."""
    monkeypatch.setattr(fuse_mod, "MAX_FUSED_OPS", 7)
    monkeypatch.setattr(lower_mod, "MAX_FUSED_OPS", 7)
    monkeypatch.setenv("IRC_NO_CACHE", "1")
    x = np.linspace(-2, 2, 37).astype(np.float32)
    m = irc.loads(chain(60), backend=backend)
    np.testing.assert_allclose(m.f(x), reference("chain", 60, [x]), rtol=1e-5, atol=1e-6)
    fused = [op for op in m._opt.walk() if op.name == "tg.fused"]
    assert len(fused) > 5 and all(body_size(op) <= 7 for op in fused)
    assert fused_mod.MAX_FUSED_OPS == MAX_FUSED_OPS  # (the bound itself is not patched)


# -- the size: 20,000 statements ----------------------------------------------------------

# CPU seconds of this process, with headroom over what was measured on the
# shared 2-core machine (figures vary by a third there; the target is
# 5 s through LLVM): chain 4.3-5.4 s, shared updates 4.2-6.5 s, independent
# (40,000 statements: 20,000 terms and the running sum) 11.7-13.7 s, mixed
# 8.0-11.6 s. A super-linear pass takes minutes here (fusing `independent`
# alone was quadratic: 7.6 s of 28).
BOUND_S = {"chain": 8.0, "shared_updates": 10.0, "independent": 24.0, "mixed": 18.0}


@pytest.mark.slow
@pytest.mark.parametrize("make", [chain, shared_updates, independent, mixed])
def test_20k_statements_interp(make, monkeypatch):
    monkeypatch.setenv("IRC_NO_CACHE", "1")
    irc.loads(make(10), backend="interp")
    src = make(20000)
    t = _cpu_seconds(src)
    assert t < BOUND_S[make.__name__], f"{make.__name__}: {t:.1f} s CPU"
    _check_20k(make, irc.loads(src, backend="interp"))


def _check_20k(make, m):
    """m (make(20000) compiled) computes what NumPy computes."""
    if make is chain:
        x = np.linspace(-1, 1, 5).astype(np.float32)
        np.testing.assert_allclose(m.f(x), reference("chain", 20000, [x]), rtol=1e-4)
    elif make is independent:
        x = np.linspace(-1, 1, 5).astype(np.float32)
        np.testing.assert_allclose(m.f(x), reference("independent", 20000, [x]), rtol=1e-5)
    elif make is mixed:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((3, 8)).astype(np.float32)
        w = (rng.standard_normal((8, 8)) * 0.5).astype(np.float32)
        np.testing.assert_allclose(m.f(x, w), reference("mixed", 20000, [x, w]), rtol=1e-4)
    elif make is scalar:
        want = reference("scalar", 20000, [0.3])
        np.testing.assert_allclose(m.f(np.float32(0.3)), want, rtol=1e-4)
    else:
        x = np.full(4, 0.1, np.float32)
        np.testing.assert_allclose(m.f(x), reference("shared", 20000, [x]), rtol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("make", [chain, shared_updates, mixed, scalar])
def test_20k_statements_cpu(make, monkeypatch, tmp_path):
    """The cpu backend: structurally identical loop nests compile to one kernel
    and segments of the entry alike to one function (runtime/llvm/codegen.py),
    so LLVM's share hardly grows with the number of statements. Measured on the
    2-core machine, quiet (CPU seconds, empty cache; benchmarks/long_functions.py
    measures nine shapes): chain 3.5 s, shared updates 3.2 s, the scalar chain
    2.5 s, mixed 12.1 s, front end and passes included. The bound catches
    super-linear growth, not the 5 s target."""
    monkeypatch.setenv("IRC_NO_CACHE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # (no object-cache hit)
    irc.loads(make(10), backend="cpu")
    src = make(20000)
    t = time.process_time()
    m = irc.loads(src, backend="cpu")
    t = time.process_time() - t
    assert t < 30, f"{make.__name__}: {t:.1f} s CPU"
    _check_20k(make, m)


@pytest.mark.parametrize("make", [mixed, independent])
def test_a_compile_leaves_little_for_the_cycle_collector(make, monkeypatch, tmp_path):
    """The IR a cpu compile drops (the front end's syntax tree, the ops the
    passes erase, the lowered function's old body, the loop module, the code
    generator's tables) is freed by reference counting, not left in reference
    cycles for Python's cycle collector: each object of those walks it again
    (~190 objects per statement of mixed once, over a second of collection
    after 20,000 statements). What is left grows by a few objects per
    statement at most (llvmlite's IR objects of the LLVM module); the
    constants cse merges and the means decompose rewrites, in cycles with
    their results, were ten per statement of mixed."""
    import gc

    from irc.runtime.llvm import jit

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    left = {}
    for n in (500, 2000):
        monkeypatch.setattr(jit, "_ENGINES", {})
        src = make(n)
        gc.collect()
        was = gc.isenabled()
        gc.disable()
        try:
            m = irc.loads(src, backend="cpu")
            left[n] = gc.collect()
        finally:
            if was:
                gc.enable()
        assert m.f is not None
    per_statement = (left[2000] - left[500]) / 1500
    assert left[2000] < 20 * 2000 and per_statement < 5, left

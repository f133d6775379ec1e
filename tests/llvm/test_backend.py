"""The cpu backend itself: golden LLVM IR of tiny kernels, dump stages,
thread-count independence, the call boundary (CallError, never a crash),
run-time index errors, shared-variable semantics and the compile cache.

Golden files (tests/llvm/golden/*.ll) are the unoptimised LLVM IR that codegen
emits; refresh them with IRC_UPDATE_GOLDEN=1 after an intended change."""

from __future__ import annotations

import os

import numpy as np
import pytest
from llvm_helpers import cpu_backend, loads_cpu, one_op_module

from irc.ir.types import F32, I32, TensorType

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def _loop_module(name, types, attrs):
    from irc.passes.lower_to_loops import lower_module

    return lower_module(one_op_module(name, types, attrs))


@pytest.mark.parametrize("case", ["exp", "sum_rows"])
def test_golden_llvm_ir(case):
    from irc.runtime.llvm.codegen import generate

    if case == "exp":
        m = _loop_module("tg.exp", [TensorType(F32, ("N",))], {})
    else:
        m = _loop_module("tg.sum", [TensorType(F32, ("N", 3))], {"axis": (1,)})
    text, _ = generate(m)
    text = str(text)
    path = os.path.join(GOLDEN, case + ".ll")
    if os.environ.get("IRC_UPDATE_GOLDEN") == "1" or not os.path.exists(path):
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        assert text == f.read(), f"{path} differs (IRC_UPDATE_GOLDEN=1 refreshes it)"


CHAIN = """
fn chain(x: f32[N], a: f32, b: f32) -> f32[N] {
    return tanh(a * x + b) * sigmoid(x) + 0.5 * x * x
}
fn stats(x: f32[N, K]) -> (f32[N], f32[K], f32[N, K]) {
    return sum(x * x, axis=1), max(x, axis=0), softmax(x, axis=1)
}
fn mm(a: f32[N, 300], b: f32[300, M]) -> (f32[N, M], f32[M, M]) {
    return tanh(a @ b), transpose(b) @ b
}
"""


def test_dump_stages():
    m = loads_cpu(CHAIN)
    loops = m._backend.dump("loops")
    assert "loop.for" in loops and "scalar.tanh" in loops
    ll = m._backend.dump("llvm")
    assert "define" in ll and "<8 x float>" in ll or "<16 x float>" in ll  # vectorised
    asm = m._backend.dump("asm")
    assert "ymm" in asm or "zmm" in asm
    with pytest.raises(ValueError):
        m._backend.dump("nope")
    only = m._backend.dump("loops", fn="chain")
    assert "func.func @chain" in only and "@stats" not in only
    assert "define" in m._backend.dump("llvm", fn="stats") and "@chain(" not in m._backend.dump("llvm", fn="stats")
    with pytest.raises(KeyError):
        m._backend.dump("loops", fn="nope")


def test_a_cold_load_keeps_no_ir_and_inspections_rebuild_it(monkeypatch, tmp_path):
    """irc.loads on cpu lowers the optimised module in place and drops the loop IR
    once compiled; dumps rebuild the same IR from the source."""
    import irc
    from irc.ir.printer import print_module

    monkeypatch.setenv("IRC_NO_CACHE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    m = irc.loads(CHAIN, backend="cpu")
    assert m._opt_ir is None and m._backend._loop_module is None
    loops = m._backend.dump("loops")
    assert print_module(m._backend.loop_module) == loops  # the rebuilt IR is what was compiled
    assert "func.func @chain" in m.ir(stage="opt")  # the optimised IR, rebuilt
    x = np.linspace(-1, 1, 7, dtype=np.float32)
    ref = irc.loads(CHAIN, backend="interp")
    np.testing.assert_allclose(m.chain(x, 1.5, -0.25), ref.chain(x, 1.5, -0.25), rtol=1e-5, atol=1e-6)


def test_a_source_module_keys_its_object_code_by_the_source(cache_home, monkeypatch):
    """With the module cache on, a cold cpu load keys its object code by the
    source (irc.cache.module_key) and prints no loop IR; a later load of the
    same source whose whole-module entry is gone still finds the object code."""
    from irc.runtime.llvm import backend, jit

    import irc
    from irc import cache

    printed = []
    real = backend.print_module
    monkeypatch.setattr(backend, "print_module", lambda m, **k: printed.append(1) or real(m, **k))
    m = irc.loads(CHAIN, backend="cpu")
    assert printed == []
    key = cache.module_key(CHAIN, "<string>", {}, "cpu")
    assert m._backend.key == jit.cache_key("source " + key, irc.__version__)
    assert "loop.for" in m._backend.dump("loops") and printed == [1]  # (printed when asked)
    for f in (cache_home).rglob("*.irm"):
        f.unlink()  # the whole-module entry: gone
    monkeypatch.setattr(jit, "_ENGINES", {})
    compiled = []
    monkeypatch.setattr(jit, "emit_object", lambda mod: compiled.append(1))
    again = irc.loads(CHAIN, backend="cpu")
    assert compiled == []  # the object code came from the cache
    x = np.linspace(-1, 1, 9, dtype=np.float32)
    np.testing.assert_array_equal(again.chain(x, 1.5, -0.25), m.chain(x, 1.5, -0.25))


def test_thread_count_does_not_change_results():
    m = loads_cpu(CHAIN)
    be = m._backend
    rng = np.random.default_rng(0)
    x = rng.normal(size=300_001).astype(np.float32)
    x2 = rng.normal(size=(4099, 70)).astype(np.float32)
    a = rng.normal(size=(257, 300)).astype(np.float32)  # products big enough to be split
    bm = rng.normal(size=(300, 203)).astype(np.float32)
    outs = []
    for t in (1, 2, 3, 4):
        be.set_threads(t)
        outs.append([be.call("chain", [x, np.float32(1.5), np.float32(-0.25)], {})[0].copy()]
                    + [o.copy() for o in be.call("stats", [x2], {})]
                    + [o.copy() for o in be.call("mm", [a, bm], {})])
    be.set_threads(2)
    for o in outs[1:]:
        for a, b in zip(outs[0], o):
            np.testing.assert_array_equal(a, b)
    ref = np.tanh(1.5 * x - 0.25) / (1 + np.exp(-x)) + 0.5 * x * x
    np.testing.assert_allclose(outs[0][0], ref, rtol=1e-5, atol=1e-6)


def test_call_boundary_errors():
    from irc.runtime.llvm.backend import CallError

    m = _loop_module("tg.add", [TensorType(F32, ("N", 3)), TensorType(I32, ("N", 1))], {})
    be = cpu_backend(m)
    x = np.ones((4, 3), np.float32)
    y = np.ones((4, 1), np.int32)
    (r,) = be.call("f", [x, y], {})
    assert r.dtype == np.float64 and r.shape == (4, 3)
    bad = [
        [x],  # count
        [x, y, y],
        [np.ones((4, 2), np.float32), y],  # static size
        [np.ones((4,), np.float32), y],  # rank
        [x, np.ones((5, 1), np.int32)],  # named dim disagrees
        [x, np.ones((4, 1), np.float32)],  # float into an integer argument
        [np.array([["a"] * 3] * 4), y],
        [object(), y],
        [x, None],
    ]
    for args in bad:
        with pytest.raises(CallError):
            be.call("f", args, {})
    with pytest.raises(CallError):
        be.call("nope", [x, y], {})
    # copies, not errors: non-contiguous, other same-kind dtypes, lists
    xf = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3))
    np.testing.assert_array_equal(be.call("f", [xf, y], {})[0], xf + 1)
    np.testing.assert_array_equal(be.call("f", [xf[::1, ::-1], y.astype(np.int64)], {})[0], xf[:, ::-1] + 1)
    np.testing.assert_array_equal(be.call("f", [[[1, 2, 3]], [[1]]], {})[0], [[2, 3, 4]])
    # zero-sized dims are fine
    assert be.call("f", [np.ones((0, 3), np.float32), np.ones((0, 1), np.int32)], {})[0].shape == (0, 3)


def test_runtime_index_errors_raise():
    from irc.runtime.interp import InterpError

    m = loads_cpu("""
fn pick(p: f32[N, K], y: i32[N]) -> f32[N] { return p[arange(N), y] }
fn ce(p: f32[N, K], y: i32[N]) -> f32[N] { return categorical_crossentropy(p, y) }
""")
    p = np.full((3, 4), 0.25, np.float32)
    with pytest.raises(InterpError, match="range"):
        m.pick(p, np.array([0, 4, 1], np.int32))
    with pytest.raises(InterpError, match="range"):
        m.ce(p, np.array([0, -1, 1], np.int32))
    np.testing.assert_array_equal(m.pick(p, np.array([0, -1, 1], np.int32)), [0.25] * 3)


def test_outputs_are_fresh_unless_unused():
    m = loads_cpu(CHAIN)
    x = np.ones(10, np.float32)
    a = m.chain(x, 1.0, 0.0)
    b = m.chain(x, 2.0, 0.0)
    assert a is not b and not np.array_equal(a, b)  # a kept: b is a new array
    del a
    c = m.chain(x, 1.0, 0.0)
    np.testing.assert_allclose(c, np.tanh(1.0) / (1 + np.exp(-1.0)) + 0.5, rtol=1e-6)


def test_shared_updates_see_old_values():
    m = loads_cpu("""
shared W: f32[3, 3] = ones()
shared v: f32[3] = full(2.0)
fn step(x: f32[3]) -> (f32[3], f32[3, 3]) {
    W <- W * 2.0 + transpose(W)
    v <- v + W[0]
    return W[1] + v, W
}
""")
    W0, v0 = m["W"], m["v"]
    W0[0, 1] = 5.0
    m["W"] = W0
    out, Wret = m.step(np.zeros(3, np.float32))
    np.testing.assert_array_equal(out, W0[1] + v0)
    np.testing.assert_array_equal(Wret, W0)
    np.testing.assert_array_equal(m["W"], W0 * 2 + W0.T)
    np.testing.assert_array_equal(m["v"], v0 + W0[0])
    got = m["W"]
    got[:] = 0  # a copy
    assert m["W"][0, 0] == 3.0


def test_compile_cache_skips_llvm(tmp_path, monkeypatch):
    import irc.runtime.llvm.jit as jit

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(jit, "_ENGINES", {})
    m1 = loads_cpu(CHAIN)
    files = list((tmp_path / "irc").glob("*.o"))
    assert len(files) == 1
    monkeypatch.setattr(jit, "_ENGINES", {})

    def boom(*a, **k):
        raise AssertionError("LLVM work on a cached load")

    monkeypatch.setattr(jit, "optimize", boom)
    monkeypatch.setattr(jit, "emit_object", boom)
    m2 = loads_cpu(CHAIN)
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    np.testing.assert_array_equal(m1.chain(x, 1.0, 0.5), m2.chain(x, 1.0, 0.5))
    # a corrupt cache file is recompiled, not trusted
    files[0].write_bytes(b"garbage")
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(jit, "_ENGINES", {})
    m3 = loads_cpu(CHAIN)
    np.testing.assert_array_equal(m3.chain(x, 1.0, 0.5), m2.chain(x, 1.0, 0.5))


def test_scan_rewrites_keep_results():
    """Hoisting out of scans, accumulations sunk after the loop, a value yielded
    twice: the RNN step of the benchmarks against the interpreter."""
    from irc.runtime.interp import Interpreter
    from irc.runtime.state import initial_values
    from llvm_helpers import cpu_backend

    import irc.api as api
    from irc.pipeline import run_pipeline

    src = """
shared W: f32[16, 16] = normal(0, 0.2)
shared U: f32[8, 16] = normal(0, 0.3)
shared V: f32[16, 8] = normal(0, 0.3)
fn train(xs: f32[T, B, 8], ys: i32[T, B], s0: f32[B, 16]) -> (f32, f32[16, 16], f32[8, 16], f32[16, 8]) {
    ss, ps, tw = scan (x in xs; s = s0) {
        s = tanh(s @ W + x @ U)
        yield s, softmax(s @ V), s
    }
    loss = mean(categorical_crossentropy(reshape(ps, [T * B, 8]), reshape(ys, [T * B]))) + sum(tw) * 0.01
    gW, gU, gV = grad(loss, W, U, V)
    return loss, gW, gU, gV
}
"""
    opt = run_pipeline(api.compile_to_ir(src, "rnn.tg"))
    state = initial_values(opt, ".", 0)
    rng = np.random.default_rng(0)
    args = [rng.normal(size=(7, 3, 8)).astype(np.float32), rng.integers(0, 8, (7, 3)).astype(np.int32),
            rng.normal(size=(3, 16)).astype(np.float32)]
    want, _ = Interpreter(opt).run("train", args, state, {"T": 7, "B": 3})
    got = cpu_backend(opt, state).call("train", args, {})
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5)


def test_loop_ir_round_trips_and_verifies():
    """Loop IR prints, parses back to the same text, and passes the verifier
    (registry checks of the loop, mem and scalar ops included)."""
    from irc.passes.lower_to_loops import lower_module

    import irc.api as api
    from irc.ir.parser import parse_module
    from irc.ir.printer import print_module
    from irc.ir.verifier import verify
    from irc.ops.registry import verify_op
    from irc.pipeline import run_pipeline

    for src in (CHAIN, """
shared W: f32[6, 4] = normal(0, 0.3)
fn step(xs: f32[T, B, 6], s0: f32[B, 4]) -> f32 {
    ss = scan (x in xs; s = s0) { s = tanh(s + x @ W)  yield s }
    loss = sum(ss * ss)
    W <- W - 0.1 * grad(loss, W)
    return loss
}
"""):
        m = lower_module(run_pipeline(api.compile_to_ir(src, "t.tg")))
        verify(m, op_check=verify_op)
        text = print_module(m)
        again = parse_module(text)
        verify(again, op_check=verify_op)
        assert print_module(again) == text


def test_an_owned_state_is_taken_as_it_is():
    """initial_values(owned=True) keeps an array that is writable, C-contiguous
    and of the variable's dtype (a variable of gigabytes is not copied), and
    copies any other; without owned, it always copies."""
    from irc.runtime.base import initial_values

    from irc.ir.types import F32, TensorType

    t = TensorType(F32, (4, 2))
    fits = np.zeros((4, 2), np.float32)
    read_only = np.zeros((4, 2), np.float32)
    read_only.flags.writeable = False
    other_dtype = np.zeros((4, 2), np.float64)
    globs = [("a", t), ("b", t), ("c", t)]
    got = initial_values(globs, {"a": fits, "b": read_only, "c": other_dtype}, owned=True)
    assert got["a"] is fits
    assert got["b"] is not read_only and got["b"].flags.writeable
    assert got["c"].dtype == np.float32
    assert initial_values(globs, {"a": fits}, owned=False)["a"] is not fits


def test_values_over_the_cache_limit_are_not_serialised(monkeypatch, tmp_path):
    """The module cache keeps initial values up to VALUES_LIMIT bytes; a bigger
    variable is skipped before it is copied to bytes."""
    from irc import cache

    class NoBytes(np.ndarray):
        def tobytes(self, *a, **k):
            raise AssertionError("serialised a value over the limit")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(cache, "VALUES_LIMIT", 1000)
    big = np.zeros(1000, np.float32).view(NoBytes)
    cache.write_values("k" * 64, 0, [("W", "zeros")], {"W": big})
    assert not list(tmp_path.rglob("*.irv"))


def test_the_llvm_dump_of_a_compile_is_the_dump_of_a_cached_load(cache_home, monkeypatch):
    """dump("llvm") shows the optimised IR, not the modules after code generation
    rewrote them while emitting the object code (a cold compile's dump differed
    from a cached load's)."""
    from irc.runtime.llvm import jit

    import irc

    cold = irc.loads(CHAIN, backend="cpu")
    monkeypatch.setattr(jit, "_ENGINES", {})
    cached = irc.loads(CHAIN, backend="cpu")
    assert cold._backend.dump("llvm") == cached._backend.dump("llvm")
    assert cold._backend.dump("asm") == cached._backend.dump("asm")

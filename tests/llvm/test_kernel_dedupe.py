"""Kernel dedupe of the cpu backend (runtime/llvm/codegen.py): loop nests of an
entry that have the same structure compile to one kernel function (and one
launcher), float constants that differ between them become its parameters, and
the results are bit-identical to one kernel per nest."""

from __future__ import annotations

import re
import time

import irc.passes.fuse_elementwise as fuse_mod
import irc.passes.lower_to_loops as lower_mod
import long_programs
import numpy as np
import pytest
from irc.runtime.llvm import codegen, jit

import irc


def independent(n: int) -> str:
    """n statements of x that differ only in their constants, then their sum."""
    return long_programs.independent(n, step=1e-3)


def independent_numpy(n: int, x):
    return long_programs.reference("independent", n, [x], step=1e-3)


def mixed(n: int) -> str:
    """Products, keepdims means, sums and elementwise statements (with offsets
    that differ) in turn."""
    return long_programs.mixed(n, varying=True)


def mixed_numpy(n: int, x, W):
    return long_programs.reference("mixed", n, [x, W], varying=True)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A load that compiles: no module cache, an empty object cache, no engines."""
    monkeypatch.setenv("IRC_NO_CACHE", "1")
    count = [0]

    def load(src):
        count[0] += 1
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / str(count[0])))
        monkeypatch.setattr(jit, "_ENGINES", {})
        return irc.loads(src, backend="cpu")

    return load


@pytest.fixture
def small_groups(monkeypatch):
    """Fused groups of at most 3 ops: every statement is a loop nest of its own."""
    monkeypatch.setattr(fuse_mod, "MAX_FUSED_OPS", 3)
    monkeypatch.setattr(lower_mod, "MAX_FUSED_OPS", 3)


def _kernels(m) -> list:
    """Names of the kernel functions (f.kN, f.sN) defined in the LLVM module."""
    return re.findall(r'^define internal i32 @"(f\.[ks]\d+)"\(', m._backend.llvm_ir(), re.M)


def _map_nests(m) -> int:
    return sum(1 for op in m._backend.loop_module.walk()
               if op.name == "loop.for" and op.attrs.get("kernel") == "map")


def test_identical_nests_compile_once(fresh, small_groups):
    n = 40
    m = fresh(independent(n))
    nests, kernels = _map_nests(m), _kernels(m)
    assert nests >= n  # (one per statement, one per sum)
    # one kernel for the 40 statements y_i (their constants are parameters), one
    # for the running sum's steps, and the first ones of either
    assert len(kernels) <= 4, kernels
    assert len(re.findall(r'^define internal i32 @"f\.k\d+\.launch"', m._backend.llvm_ir(), re.M)) <= 4
    x = np.linspace(-3, 3, 1000).astype(np.float32)
    np.testing.assert_allclose(m.f(x), independent_numpy(n, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("src_of", [lambda: independent(30), lambda: mixed(23)], ids=["independent", "mixed"])
def test_results_bit_identical_without_dedupe(fresh, small_groups, monkeypatch, src_of):
    src = src_of()
    rng = np.random.default_rng(0)
    if "W:" in src:
        # a large N: the reductions and maps also take their threaded paths
        args = [rng.normal(size=(20000, 8)).astype(np.float32),
                (rng.normal(size=(8, 8)) * 0.3).astype(np.float32)]
    else:
        args = [np.linspace(-3, 3, 70001).astype(np.float32)]
    m = fresh(src)
    shared = m.f(*args)
    kernels = _kernels(m)
    monkeypatch.setattr(codegen, "DEDUPE", False)
    m1 = fresh(src)
    alone = m1.f(*args)
    assert len(_kernels(m1)) > len(kernels)
    assert np.asarray(shared).tobytes() == np.asarray(alone).tobytes()
    for threads in (1, 2):
        m.set_threads(threads) if hasattr(m, "set_threads") else m._backend.set_threads(threads)
        assert np.asarray(m.f(*args)).tobytes() == np.asarray(shared).tobytes()


@pytest.mark.parametrize("segments", [False, True])
def test_differing_constants_reach_a_kernel_as_one_pointer(fresh, monkeypatch, segments):
    """independent's statements in fused groups of 40, each with its own
    constants: the kernel of a group takes the constants that differ between
    groups as one pointer to an f64 array (a constant array, or a run of its
    segment's table), not as dozens of float parameters; a segmented entry
    carries no constants from one segment to the next; the same bits as one
    kernel per nest with its constants inline (dedupe off), and NumPy's
    results."""
    n = 400
    if segments:
        monkeypatch.setattr(codegen, "SEGMENT_MIN", 0)
        monkeypatch.setattr(codegen, "SEGMENT_OPS", 4)
    src = independent(n)
    x = np.linspace(-3, 3, 5001).astype(np.float32)
    m = fresh(src)
    text = m._backend.llvm_ir()
    heads = re.findall(r'^define internal i32 @"f\.k\d+"\((.*)\)', text, re.M)
    assert heads and not any("float" in h for h in heads), heads
    assert max(h.count(",") for h in heads) < 10
    calls = re.findall(r"call i32 @\"f\.k\d+\.launch\"\((.*)\)", text)
    assert calls and not any("float" in c for c in calls)
    if segments:
        assert _segments(m)[1] >= 3
        carry = re.search(r"alloca \[(\d+) x i64\]", text)
        assert carry is not None and int(carry.group(1)) < 50  # (not one slot per constant)
    got = m.f(x)
    np.testing.assert_allclose(got, independent_numpy(n, x), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(codegen, "DEDUPE", False)
    assert np.asarray(fresh(src).f(x)).tobytes() == np.asarray(got).tobytes()


def test_mixed_matches_numpy(fresh):
    n = 41
    m = fresh(mixed(n))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    W = (rng.normal(size=(8, 8)) * 0.3).astype(np.float32)
    np.testing.assert_allclose(m.f(x, W), mixed_numpy(n, x, W), rtol=1e-4)
    # the statements of each kind share their kernels
    assert len(_kernels(m)) <= 16, _kernels(m)


def test_nests_with_different_integer_shapes_stay_apart(fresh, small_groups):
    """Static shapes and integer constants are part of the structure: nests over
    f32[3] and f32[5] get kernels of their own, and both compute right."""
    src = (
        "fn f(a: f32[3], b: f32[5]) -> f32 {\n"
        "    p = tanh(a * 1.5) + 0.5\n"
        "    q = tanh(b * 1.5) + 0.5\n"
        "    return sum(p) + sum(q)\n"
        "}\n"
    )
    m = fresh(src)
    a = np.linspace(-1, 1, 3).astype(np.float32)
    b = np.linspace(-2, 2, 5).astype(np.float32)
    f32 = np.float32
    ref = (np.tanh(a * f32(1.5)) + f32(0.5)).sum() + (np.tanh(b * f32(1.5)) + f32(0.5)).sum()
    np.testing.assert_allclose(m.f(a, b), ref, rtol=1e-5)


def _cpu_seconds(load, src) -> float:
    t = time.process_time()
    load(src)
    return time.process_time() - t


@pytest.mark.parametrize("make", [independent, mixed])
def test_cpu_compile_time_grows_linearly(fresh, make):
    """4x the statements costs about 4x (allowed: 8x) on the cpu backend: nests of
    one structure compile once, and the entry is one call per nest."""
    small, big = make(50), make(200)
    _cpu_seconds(fresh, make(10))  # warm: imports, LLVM
    t_small = min(_cpu_seconds(fresh, small) for _ in range(2))
    t_big = _cpu_seconds(fresh, big)
    assert t_big < 8 * t_small + 0.3, (t_small, t_big)


GATHERS = """
fn g(p: f32[N, K], y: i32[N], z: i32[N]) -> f32[N] {
    a = p[arange(N), y] * 1.5
    b = p[arange(N), z] * 2.5
    return a + b
}
"""


@pytest.mark.parametrize("segments", [False, True])
def test_asserting_nests_deduped_and_segmented(fresh, monkeypatch, segments):
    """Two gathers with bounds checks share a kernel; an index out of range in
    either raises with its message, also when the entry is cut into segments of
    one host op (FunctionGen.segments)."""
    from irc.runtime.interp import InterpError

    if segments:
        monkeypatch.setattr(codegen, "SEGMENT_MIN", 0)
        monkeypatch.setattr(codegen, "SEGMENT_OPS", 1)
    m = fresh(GATHERS)
    if segments:
        assert ".0.part" in m._backend.llvm_ir()
    p = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.array([0, 3, 1], np.int32)
    z = np.array([2, 2, -1], np.int32)
    ref = p[np.arange(3), y] * np.float32(1.5) + p[np.arange(3), z] * np.float32(2.5)
    np.testing.assert_array_equal(m.g(p, y, z), ref)
    with pytest.raises(InterpError, match="range"):
        m.g(p, y, np.array([0, 4, 1], np.int32))
    with pytest.raises(InterpError, match="range"):
        m.g(p, np.array([0, 4, 1], np.int32), z)


def test_segmented_entry_bit_identical(fresh, monkeypatch):
    """An entry cut into segments (values crossing them through carry slots)
    computes exactly what the one-function entry computes."""
    src = mixed(23) + "\n" + """
shared W2: f32[4] = zeros()
fn upd(x: f32[4]) -> f32 {
    a0 = W2 + x
    a1 = a0 * 0.999 + x
    a2 = a1 * 0.998 + x
    W2 <- a2
    return sum(a2) + sum(a1)
}
"""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20000, 8)).astype(np.float32)
    W = (rng.normal(size=(8, 8)) * 0.3).astype(np.float32)
    v = np.arange(4, dtype=np.float32)
    m = fresh(src)
    want = [m.f(x, W), m.upd(v), m.upd(v)]
    for ops in (1, 3):
        monkeypatch.setattr(codegen, "SEGMENT_MIN", 0)
        monkeypatch.setattr(codegen, "SEGMENT_OPS", ops)
        s = fresh(src)
        assert ".1.part" in s._backend.llvm_ir()
        got = [s.f(x, W), s.upd(v), s.upd(v)]
        assert all(np.asarray(a).tobytes() == np.asarray(b).tobytes() for a, b in zip(want, got))


# -- host scalar code: transcendentals out of line ------------------------------------------------


def scalar_chain(n: int) -> str:
    """n scalar statements (no loop nest at all): tanh and an affine step in turn."""
    return long_programs.scalar(n)


def test_host_scalar_transcendentals_are_one_function(monkeypatch):
    """An entry's scalar tanh/exp/log/log1p/pow call one function each per module
    (__irc_scalar_*), not an inlined polynomial per statement: a 400-statement
    scalar function has one tanh body, and its result is NumPy's within the
    polynomials' accuracy."""
    monkeypatch.setenv("IRC_NO_CACHE", "1")
    m = irc.loads(scalar_chain(400), backend="cpu")
    text = m._backend.llvm_ir()
    assert len(re.findall(r'^define .*@"?__irc_scalar_tanh_float"?\(', text, re.M)) == 1
    assert len(re.findall(r'call float @"?__irc_scalar_tanh_float"?\(', text)) == 199  # (i even)
    y = long_programs.reference("scalar", 400, [np.float32(0.3)])
    np.testing.assert_allclose(m.f(np.float32(0.3)), y, rtol=1e-5)


def test_host_and_kernel_transcendentals_give_the_same_bits():
    """The out-of-line function is the inline polynomial: a scalar (host) result
    equals the vectorised kernel's, bit for bit, over a sweep of each function."""
    src = """
fn s(x: f32) -> f32 { return tanh(x) + exp(x) * 1e-9 + log1p(x + 1.5) + log(x + 3.0) + (x + 3.0) ** 1.3 }
fn v(x: f32[N]) -> f32[N] { return tanh(x) + exp(x) * 1e-9 + log1p(x + 1.5) + log(x + 3.0) + (x + 3.0) ** 1.3 }
"""
    m = irc.loads(src, backend="cpu")
    assert "__irc_scalar_tanh_float" in m._backend.llvm_ir()
    xs = np.linspace(-1.4, 20, 777).astype(np.float32)
    host = np.array([m.s(x) for x in xs], np.float32)
    np.testing.assert_array_equal(host.view(np.uint32), m.v(xs).view(np.uint32))


# -- long entries: segments alike share one function ----------------------------------------------


def _segments(m) -> tuple:
    """(segment functions defined, segment calls) in the LLVM module."""
    text = m._backend.llvm_ir()
    defined = re.findall(r'^define internal i32 @"f\.\d+\.part"\(', text, re.M)
    return len(defined), len(re.findall(r'call i32 @"f\.\d+\.part"\(', text))


@pytest.mark.parametrize("kind", ["mixed", "mixed-varying", "independent", "scalar"])
def test_repeating_segments_share_a_function(fresh, monkeypatch, kind):
    """A long entry that repeats a pattern of host ops is cut at a multiple of
    its period, and its segments (alike but for where their allocs are, which
    carry slots they use and the values of their float constants) call one
    function: the same bits as one function per segment (DEDUPE off), and
    NumPy's results."""
    rng = np.random.default_rng(5)
    if kind.startswith("mixed"):
        monkeypatch.setattr(codegen, "SEGMENT_MIN", 0)
        monkeypatch.setattr(codegen, "SEGMENT_OPS", 25)
        # 5 host ops per 4 statements (a product, three loop nests, the store of a
        # sum): segments of 25. Offsets 0.01 ... 0.05 in turn when varying: those
        # of the map nests are read from the segments' tables; those in a sum's
        # nest (which reassociates) are in its kernel's key, so the pattern is 20
        # statements, 25 host ops, long
        n = 241
        varying = kind == "mixed-varying"
        src = long_programs.mixed(n, varying=varying)
        args = [rng.normal(size=(300, 8)).astype(np.float32),
                (rng.normal(size=(8, 8)) * 0.3).astype(np.float32)]
        want = long_programs.reference("mixed", n, args, varying=varying)
    elif kind == "independent":
        # every statement its own constants: kernel parameters, from the tables
        monkeypatch.setattr(codegen, "SEGMENT_MIN", 0)
        monkeypatch.setattr(codegen, "SEGMENT_OPS", 16)
        monkeypatch.setattr(fuse_mod, "MAX_FUSED_OPS", 3)
        monkeypatch.setattr(lower_mod, "MAX_FUSED_OPS", 3)
        n = 120
        src = long_programs.independent(n, step=1e-3)
        args = [np.linspace(-3, 3, 1001).astype(np.float32)]
        want = long_programs.reference("independent", n, args, step=1e-3)
    else:
        # 1.5 host ops per statement, and a store and a load of the value every
        # 120 ops (lower-to-loops' bound): a period of 123, segments of 246
        n = 1500
        src = scalar_chain(n)
        args = [np.float32(0.3)]
        want = long_programs.reference("scalar", n, args)
    m = fresh(src)
    defined, calls = _segments(m)
    # the first and the last segment, and the middle ones (the workspace plan may
    # alternate buffers: two kinds); independent's two halves (the statements,
    # then their running sum) and the seams between them a few more
    assert calls >= 9 and defined <= (8 if kind == "independent" else 4), (defined, calls)
    got = m.f(*args)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)
    monkeypatch.setattr(codegen, "DEDUPE", False)
    alone = fresh(src)
    assert _segments(alone)[0] == _segments(alone)[1] == calls
    assert np.asarray(alone.f(*args)).tobytes() == np.asarray(got).tobytes()


def test_segment_length_follows_the_period():
    """segment_length: the largest multiple of the host ops' period up to
    SEGMENT_OPS, or SEGMENT_OPS when they do not repeat."""
    fg = codegen.FunctionGen.__new__(codegen.FunctionGen)

    class FakeOp:
        def __init__(self, name):
            self.name = name

    def length(names):
        return fg.segment_length([FakeOp(s) for s in names])

    pattern = ["scalar.add", "scalar.mul", "scalar.tanh", "mem.load", "mem.store"]
    assert length(["mem.load"] * 3 + pattern * 400 + ["mem.store"]) == 255  # 5 * 51
    assert length(["scalar.add"] * 2000) == 256
    rng = np.random.default_rng(0)
    assert length([pattern[k] for k in rng.integers(0, 5, 2000)]) == codegen.SEGMENT_OPS


def test_float_parameter_arrays_are_shared_by_their_bits():
    """One constant array per distinct set of a kernel's float parameters, told
    apart by their bits: -0.0 is not 0.0 (1 / (x * -0.0) is -inf)."""
    from irc.ir.core import Module

    mg = codegen.ModuleGen(Module())
    assert mg.float_table((0.0, 1.5)) is mg.float_table((0.0, 1.5))
    assert mg.float_table((-0.0, 1.5)) is not mg.float_table((0.0, 1.5))


def _nest_keys(src: str) -> list:
    """nest_key's key of each loop nest of f's entry, in order."""
    from irc.api import compile_to_ir
    from irc.pipeline import run_pipeline
    from irc.runtime.base import loop_ir

    module = loop_ir(run_pipeline(compile_to_ir(src, "<test>")), owned=True)
    (f,) = [op for op in module.body.ops if op.name == "func.func"]
    return [codegen.nest_key(loop)[0] for loop in codegen._host_nests(f.regions[0].block, [])]


@pytest.mark.parametrize("y, y_column", [
    ("f64[4, 8]", "f64[4]"),  # a dtype
    ("f32[4, 9]", "f32[4]"),  # an integer dim of a shape that no loop runs over
    ("f32[4, M]", "f32[4]"),  # a named one
])
def test_nest_keys_tell_types_apart(y, y_column):
    """nest_key writes a type as its dtype's name and its shape: the nests that
    read a column of x and of y get one key when x and y have one type, and
    different keys when the types differ in either (here the column's stride)."""
    def keys(ty, ty_column):
        # two nests per column: the column read, then tanh(column) * 2.0
        keys = _nest_keys(f"fn f(x: f32[4, 8], y: {ty}) -> (f32[4], {ty_column}) {{\n"
                          "    return tanh(x[:, 0]) * 2.0, tanh(y[:, 0]) * 2.0\n}\n")
        assert len(keys) == 4
        return keys

    same = keys("f32[4, 8]", "f32[4]")
    assert same[0] == same[2] and same[1] == same[3]
    other = keys(y, y_column)
    assert other[0] != other[2]

"""Per-function optimisation tiers of the cpu backend (runtime/llvm/jit.py): glue
is compiled `optnone`, loop nests keep the O3 pipeline and stay vectorised, and
results do not change."""

from __future__ import annotations

import re

import numpy as np
from irc.runtime.llvm import jit
from llvm_helpers import loads_cpu

GLUE_AND_LOOPS = """
define i32 @"entry"(ptr %".1") {
e:
  %".2" = call i32 @"entry.k0"(ptr %".1")
  ret i32 %".2"
}

define internal i32 @"entry.k0"(ptr %".1") noinline
{
prologue:
  br label %"loop"
loop:
  %".3" = phi i64 [0, %"prologue"], [%".4", %"loop"]
  %".4" = add i64 %".3", 1
  %".5" = icmp slt i64 %".4", 10
  br i1 %".5", label %"loop", label %"done"
done:
  ret i32 0
}

define internal ptr @"entry.k0.thunk"(ptr %".1")
{
e:
  ret ptr null
}

define i64 @"entry.ws"(ptr %".1")
{
e:
  ret i64 0
}

define internal i32 @"__irc_ipow_i32"(i32 %".1", i32 %".2")
{
e:
  ret i32 1
}

define i32 @"looping"(ptr %".1") {
e:
  br label %"a"
a:
  %".2" = phi i64 [0, %"e"], [%".3", %"b"]
  br label %"b"
b:
  %".3" = add i64 %".2", 1
  %".4" = icmp slt i64 %".3", 10
  br i1 %".4", label %"a", label %"c"
c:
  ret i32 0
}
"""


def test_glue_functions_are_the_loop_free_entries_and_generated_helpers():
    glue = jit.glue_functions(GLUE_AND_LOOPS)
    # an entry that only calls kernels, a thread-pool thunk, a workspace size
    assert {"entry", "entry.k0.thunk", "entry.ws"} <= glue
    # a kernel, an entry with a loop of its own (a cycle through two blocks), and an
    # internal helper that an optimised loop may call or inline keep the O3 pipeline
    assert not glue & {"entry.k0", "looping", "__irc_ipow_i32"}


def test_tiered_marks_glue_optnone_and_still_parses():
    text = jit.tiered(GLUE_AND_LOOPS)
    heads = {
        ln.split("@", 1)[1].split("(", 1)[0].strip('"'): ln
        for ln in text.splitlines()
        if ln.startswith("define")
    }
    for name in ("entry", "entry.k0.thunk", "entry.ws"):
        assert heads[name].split(")")[-1].replace("{", "").split() == ["noinline", "optnone"]
    assert "optnone" not in heads["entry.k0"] and "optnone" not in heads["looping"]
    assert heads["entry.k0"].rstrip().endswith("noinline")  # not repeated
    jit.optimize(GLUE_AND_LOOPS)  # verifies and optimises


SRC = """
fn step(x: f32[N, 300], w: f32[300, 40], b: f32[40]) -> (f32[N, 40], f32) {
    h = tanh(x @ w + b)
    return softmax(h, axis=1), sum(h * h)
}
"""


def test_tiered_module_keeps_vectorised_kernels_and_results():
    m = loads_cpu(SRC)
    ll = m._backend.dump("llvm")
    heads = [ln for ln in ll.splitlines() if ln.startswith("define")]
    kernels = [h for h in heads if ".k" in h and ".thunk" not in h]
    assert kernels and not any("optnone" in h for h in kernels)
    # the thunks and the workspace function are glue (attribute groups print as #N)
    assert "optnone" in ll
    assert "<8 x float>" in ll or "<16 x float>" in ll
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 300)).astype(np.float32)
    w = rng.normal(size=(300, 40)).astype(np.float32) * 0.05
    b = rng.normal(size=40).astype(np.float32)
    p, s = m.step(x, w, b)
    h = np.tanh(x.astype(np.float64) @ w + b)
    e = np.exp(h - h.max(axis=1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(axis=1, keepdims=True), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(s, (h * h).sum(), rtol=1e-4)


def test_split_module_puts_kernels_and_entries_in_two_modules():
    text = jit.tiered(GLUE_AND_LOOPS)
    entries, loops = jit.split_module(text)
    defined = lambda t: {
        ln.split("@", 1)[1].split("(", 1)[0].strip('"')
        for ln in t.splitlines()
        if ln.startswith("define")
    }
    declared = lambda t: {
        ln.split("@", 1)[1].split("(", 1)[0].strip('"')
        for ln in t.splitlines()
        if ln.startswith("declare")
    }
    # the kernel lives in the loop nests' module, declared (and called) in the other
    assert "entry.k0" in defined(loops) and "entry.k0" in declared(entries)
    assert {"entry", "looping", "entry.k0.thunk", "entry.ws"} <= defined(entries)
    assert "entry" in declared(loops) and "entry" not in defined(loops)
    # an inlinable helper is copied into both; nothing crossing modules stays internal
    assert "__irc_ipow_i32" in defined(entries) & defined(loops)
    assert 'define internal i32 @"entry.k0"' not in loops
    # both parse, optimise, and link into one engine that finds every entry point
    objs = [
        jit.emit_object(jit._run_pipeline(jit.llvm.parse_assembly(t))) for t in (entries, loops)
    ]
    packed = jit.pack_objects(objs)
    assert jit.unpack_objects(packed) == objs
    linked = jit.Linked(packed)
    assert linked.address("entry") and linked.address("entry.k0") and linked.address("looping")


def test_no_split_without_an_entry_that_loops():
    only_glue = GLUE_AND_LOOPS.split('define i32 @"looping"')[0]
    assert jit.split_module(jit.tiered(only_glue)) is None  # (one module, entry optnone)


def test_damaged_object_container_is_a_cache_miss():
    import pytest

    objs = jit.pack_objects([b"\x7fELF-one", b"\x7fELF-two"])
    for bad in (objs[:12], objs[:-1], objs + b"x"):
        with pytest.raises(jit.CacheMiss):
            jit.unpack_objects(bad)
    assert jit.unpack_objects(b"\x7fELF-plain") == [b"\x7fELF-plain"]


LOOPING_ENTRY = """
fn f(x: f32[N, 64], w: f32[64, 64]) -> (f32[N, 64], f32) {
    h = tanh(x @ w)
    return h, mean(sum(h * h, axis=1))
}
"""


def test_split_model_matches_numpy_and_dumps_both_parts():
    m = loads_cpu(LOOPING_ENTRY)
    ll = m._backend.dump("llvm")
    assert "define i32 @f(" in ll and ll.count("ModuleID") == len(m._backend._llvm())
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 64)).astype(np.float32)
    w = (rng.normal(size=(64, 64)) * 0.1).astype(np.float32)
    h, s = m.f(x, w)
    ref = np.tanh(x.astype(np.float64) @ w)
    np.testing.assert_allclose(h, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s, (ref * ref).sum(axis=1).mean(), rtol=1e-4)
    assert "ymm" in m._backend.dump("asm")


def test_a_cached_object_with_a_damaged_container_is_recompiled(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    key = "0" * 64
    bad = jit.pack_objects([b"\x7fELF-one", b"\x7fELF-two"])[:-3]  # truncated, hash matches
    jit.cache_write(key, bad, {"messages": {}})
    assert jit.cache_read(key) is None
    m = loads_cpu(LOOPING_ENTRY)  # and a real model still loads and runs from a fresh cache
    x = np.ones((3, 64), np.float32)
    h, _ = m.f(x, np.zeros((64, 64), np.float32))
    assert np.array_equal(h, np.zeros((3, 64), np.float32))


SERIAL_AND_SMALL = """
fn f(x: f32[T], h0: f32, y: f32[4, 8], z: f32[N, 8]) -> (f32[T], f32, f32[N, 8]) {
    hs = scan (xt in x; h = h0) { h = h * 0.5 + xt  yield h }
    return hs, sum(y), tanh(z) * 2.0
}
"""


def test_every_loop_nest_is_a_function_so_the_entry_is_glue():
    """A serial scan and a small reduction are kernel functions (f.sN) called once,
    like the map kernel (f.kN): the entry has no loop of its own and is compiled
    optnone, and the results are NumPy's."""
    m = loads_cpu(SERIAL_AND_SMALL)
    raw = m._backend.dump("llvm-raw", fn="f")
    entry = raw.split('define i32 @"f"(', 1)[1].split("\n}\n", 1)[0]
    assert not jit._has_cycle(entry.splitlines()[1:])
    assert "f" in jit.glue_functions(raw)
    assert re.search(r'define internal i32 @"f\.s\d+"', raw)
    assert re.search(r'define internal i32 @"f\.k\d+"', raw)
    assert "optnone" in m._backend.dump("llvm")
    # the calling thread's nests keep the entries' pipeline (the one they had inline)
    entries, loops = jit.split_module(jit.tiered(raw))
    assert re.search(r'define i32 @"f\.s\d+"', entries)
    assert not re.search(r'define i32 @"f\.s\d+"', loops)
    assert re.search(r'define i32 @"f\.k\d+"', loops)
    rng = np.random.default_rng(2)
    x = rng.normal(size=37).astype(np.float32)
    y = rng.normal(size=(4, 8)).astype(np.float32)
    z = rng.normal(size=(300, 8)).astype(np.float32)
    hs, s, t = m.f(x, np.float32(0.25), y, z)
    h, want = np.float32(0.25), []
    for v in x:
        h = np.float32(h * np.float32(0.5) + v)
        want.append(h)
    np.testing.assert_allclose(hs, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s, y.astype(np.float64).sum(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t, np.tanh(z) * 2, rtol=1e-5, atol=1e-6)


def test_glue_gets_a_module_of_its_own_for_the_fast_code_generator():
    """The entries' module splits again: the optnone glue (the loop-free entry, the
    thunk, the workspace size) into a module whose code the level-0 code
    generator emits, the entry with a loop into another; the helper is copied,
    and the three objects link into one engine that finds every function."""
    entries, loops = jit.split_module(jit.tiered(GLUE_AND_LOOPS))
    glue, rest = jit.split_glue(entries)
    defined = lambda t: {jit._define_name(ln) for ln in t.splitlines() if ln.startswith("define")}
    assert defined(glue) == {"entry", "entry.k0.thunk", "entry.ws", "__irc_ipow_i32"}
    assert defined(rest) == {"looping", "__irc_ipow_i32"}
    assert 'declare i32 @"looping"' in glue and 'declare i32 @"entry"' in rest
    # a module without glue, or with nothing but glue, stays whole
    assert jit.split_glue(rest) is None and jit.split_glue(loops) is None
    mods = jit.optimize_parts(GLUE_AND_LOOPS)
    assert [m.name == jit.GLUE_MODULE for m in mods] == [True, False, False]
    assert jit._tm_for(mods[0]) is not jit.target_machine()
    assert jit._tm_for(mods[1]) is jit.target_machine()
    linked = jit.Linked(jit.pack_objects([jit.emit_object(m) for m in mods]))
    for name in ("entry", "entry.k0", "entry.k0.thunk", "entry.ws", "looping"):
        assert linked.address(name)

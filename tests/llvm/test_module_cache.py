"""The whole-module cache of irc.load (irc/cache.py) and the generated call path
(runtime/binding.py, LLVMBackend.entry): a cached load runs no front end, no
pass and no LLVM work; damaged or crafted entries are misses, never errors;
every argument check still raises irc.CallError on the fast path."""

import json

import numpy as np
import pytest

import irc
import irc.api as api

SRC = """
shared W: f32[3, 4] = normal(0, 1)
shared c: f32 = full(2)
fn step(x: f32[N, 3], k: i32[N], lr: f32 = 0.5) -> (f32[N, 4], f32) {
    y = x @ W
    W <- W - lr * 0.01
    return y, sum(y) + c
}
fn chain(x: f32[N], a: f32, b: f32) -> f32[N] {
    return tanh(a * x + b) * sigmoid(x) + 0.5 * x * x
}
"""


def _run(m):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y, s = m.step(x, np.array([1, 2], np.int32))
    return (
        y.copy(),
        float(s),
        m["W"].copy(),
        m.chain(np.linspace(-2, 2, 5, dtype=np.float32), 1.5, -0.25),
    )


def _no_compiling(monkeypatch):
    import irc.pipeline
    import irc.runtime.llvm.jit as jit

    def boom(*a, **k):
        raise AssertionError("compiler work on a cached load")

    monkeypatch.setattr(api, "compile_to_ir", boom)
    monkeypatch.setattr(irc.pipeline, "run_pipeline", boom)
    monkeypatch.setattr(jit, "optimize", boom)
    monkeypatch.setattr(jit, "emit_object", boom)
    monkeypatch.setattr(jit, "_ENGINES", {})


OUTER = """
fn f(a: f32[N], b: f32[M], c: f32[K]) -> f32[N, M, K] {
    return exp(a[:, None, None] * b[None, :, None] * c[None, None, :])
}
"""


def test_cached_load_keeps_the_size_check(cache_home, monkeypatch):
    """The tensor types the overflow check needs travel in the cache entry: a module
    served from the cache refuses sizes that overflow, as a compiled one does."""
    big = (np.zeros(2**20, np.float32), np.zeros(2**20, np.float32), np.zeros(2**22 - 1, np.float32))
    with pytest.raises(irc.CallError, match=r"f32\[N, M, K\].*over the limit"):
        api.loads(OUTER, backend="cpu").f(*big)
    with monkeypatch.context() as mp:
        _no_compiling(mp)
        m = api.loads(OUTER, backend="cpu")
        assert m._backend._loop_module is None  # served from the cache
        with pytest.raises(irc.CallError, match=r"f32\[N, M, K\].*over the limit"):
            m.f(*big)


def test_cached_load_skips_front_end_and_passes(cache_home, monkeypatch):
    want = _run(api.loads(SRC, backend="cpu"))
    assert len(list(cache_home.glob("*.irm"))) == 1
    with monkeypatch.context() as mp:
        _no_compiling(mp)
        m = api.loads(SRC, backend="cpu")
        got = _run(m)
        assert m._backend._loop_module is None  # no IR was built
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    # inspection rebuilds the IR from the source on demand
    assert "tg.global" in m.ir()
    assert "loop." in m._backend.dump("loops")
    assert (
        str(m.step.signature)
        == "fn step(x: f32[N, 3], k: i32[N], lr: f32 = 0.5) -> (f32[N, 4], f32)"
    )


def test_key_covers_source_defines_and_seed(cache_home):
    m1 = api.loads(SRC, backend="cpu")
    m2 = api.loads(SRC, backend="cpu", seed=7)  # same entry, other initial values
    assert not np.array_equal(m1["W"], m2["W"])
    np.testing.assert_array_equal(m2["W"], api.loads(SRC, backend="cpu", seed=7)["W"])
    src = "const K = 2\nfn f(x: f32[N]) -> f32[N] { return x * K }"
    x = np.ones(3, np.float32)
    assert api.loads(src, backend="cpu").f(x)[0] == 2
    assert api.loads(src, backend="cpu", define={"K": 5}).f(x)[0] == 5
    assert api.loads(src, backend="cpu").f(x)[0] == 2


@pytest.mark.parametrize(
    "damage",
    [
        lambda e: b"not json",
        lambda e: b"",
        lambda e: json.dumps(
            dict(e, backend={k: v for k, v in e["backend"].items() if k != "key"})
        ).encode(),
        lambda e: json.dumps({k: v for k, v in e.items() if k != "functions"}).encode(),
        lambda e: json.dumps(dict(e, functions=[{"spec": {"name": "step"}}])).encode(),
        lambda e: json.dumps(dict(e, globals_ir="tg.bogus {")).encode(),
        lambda e: json.dumps(dict(e, seed="x")).encode(),
        lambda e: json.dumps([1, 2]).encode(),
        lambda e: json.dumps(dict(e, backend=dict(e["backend"], key="0" * 64))).encode(),
    ],
)
def test_malformed_module_entry_is_a_miss(cache_home, damage):
    want = _run(api.loads(SRC, backend="cpu"))
    (path,) = cache_home.glob("*.irm")
    entry = json.loads(path.read_text())
    path.write_bytes(damage(entry))
    import irc.runtime.llvm.jit as jit

    jit._ENGINES.clear()
    got = _run(api.loads(SRC, backend="cpu"))
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    # the entry was rewritten: the next load is a hit again
    assert json.loads(path.read_text())["functions"][0]["spec"]["name"] == "step"


def test_object_entry_without_metadata_is_a_miss(cache_home):
    """A crafted .o entry whose metadata lacks its keys (issue 21): recompiled or
    relinked, never a KeyError."""
    import hashlib
    import struct

    import irc.runtime.llvm.jit as jit

    want = _run(api.loads(SRC, backend="cpu"))
    for p in cache_home.glob("*.irm"):
        p.unlink()
    (obj_path,) = cache_home.glob("*.o")
    data = obj_path.read_bytes()
    (n,) = struct.unpack("<Q", data[len(jit._MAGIC) : len(jit._MAGIC) + 8])
    obj = data[len(jit._MAGIC) + 8 + n :]
    head = json.dumps({"sha256": hashlib.sha256(obj).hexdigest()}).encode()
    obj_path.write_bytes(jit._MAGIC + struct.pack("<Q", len(head)) + head + obj)
    jit._ENGINES.clear()
    got = _run(api.loads(SRC, backend="cpu"))
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


def test_cache_off_switch(cache_home, monkeypatch):
    monkeypatch.setenv("IRC_NO_CACHE", "1")
    api.loads(SRC, backend="cpu")
    assert not list(cache_home.glob("*.irm"))


# -- the generated call path -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mod():
    return api.loads(SRC, backend="cpu")


def test_fast_call_accepts_what_the_api_accepts(mod):
    x = np.linspace(-2, 2, 5, dtype=np.float32)
    want = mod.chain(x, 1.5, -0.25)
    np.testing.assert_array_equal(mod.chain(x.astype(np.float64), 1.5, -0.25), want)
    np.testing.assert_array_equal(mod.chain(list(x), np.float32(1.5), np.float64(-0.25)), want)
    np.testing.assert_array_equal(mod.chain(b=-0.25, a=1.5, x=x), want)
    xs = np.zeros(10, np.float32)
    xs[::2] = x
    np.testing.assert_array_equal(mod.chain(xs[::2], 1.5, -0.25), want)  # strided: copied
    # the previous result is not overwritten while the caller holds it
    r1 = mod.chain(x, 1.5, -0.25)
    r2 = mod.chain(x * 2, 1.5, -0.25)
    np.testing.assert_array_equal(r1, want)
    assert r1 is not r2
    y, s = mod.step(np.ones((2, 3)), [0, 1])  # float64 data, a list of ints
    assert y.shape == (2, 4) and isinstance(s, np.floating)


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda m: m.chain(np.ones((2, 2), np.float32), 1.0, 1.0), "rank 1"),
        (lambda m: m.chain(np.ones(3, np.int32), 1.0, 1.0), None),  # int data into f32: allowed
        (lambda m: m.chain(np.ones(3, np.complex64), 1.0, 1.0), "must be f32"),
        (lambda m: m.chain(np.ones(3, np.float32), np.ones(2, np.float32), 1.0), "rank 0"),
        (lambda m: m.chain(np.ones(3, np.float32), 1.0), "missing argument 'b'"),
        (lambda m: m.chain(np.ones(3, np.float32), 1.0, 2.0, 3.0), "takes 3 argument"),
        (lambda m: m.chain(np.ones(3, np.float32), 1.0, b=2.0, c=1), "no argument 'c'"),
        (lambda m: m.chain(np.ones(3, np.float32), 1.0, 2.0, a=1), "given twice"),
        (lambda m: m.chain(["a"], 1.0, 2.0), "must be f32"),
        (lambda m: m.chain([object()], 1.0, 2.0), "not numeric"),
        (lambda m: m.step(np.ones((2, 4), np.float32), [0, 1]), "axis 1 is 4, expected 3"),
        (lambda m: m.step(np.ones((2, 3), np.float32), [0, 1, 2]), "dimension N is 2"),
        (lambda m: m.step(np.ones((2, 3), np.float32), np.ones(2, np.float32)), "must be i32"),
    ],
)
def test_fast_call_keeps_every_check(mod, call, msg):
    if msg is None:
        call(mod)
        return
    with pytest.raises(irc.CallError, match=msg):
        call(mod)
    # and the module still works afterwards
    assert mod.chain(np.zeros(2, np.float32), 1.0, 0.0).shape == (2,)


def test_backend_call_shares_the_checks(mod):
    be = mod._backend
    with pytest.raises(irc.CallError, match="dimension N is 2"):
        be.call("step", [np.ones((2, 3), np.float32), np.zeros(3, np.int32), np.float32(1)])
    with pytest.raises(irc.CallError, match="no entry function"):
        be.call("nope", [])


def test_scalar_fast_path_values_and_threads(mod):
    """Float scalars go through a ctypes slot written under the call's lock: the
    same rounding as NumPy's cast, and concurrent calls never see each other's."""
    import threading

    x = np.linspace(-2, 2, 64, dtype=np.float32)
    for a in (1.1, np.float64(1.1), np.float32(1.1), 1, np.int32(1), True, np.array(1.1)):
        want = mod.chain(x, np.asarray(a).astype(np.float32), np.float32(0.3))
        np.testing.assert_array_equal(mod.chain(x, a, 0.3), want)
    errors = []

    def worker(a):
        want = mod.chain(x, np.float32(a), np.float32(-a))
        for _ in range(300):
            got = mod.chain(x, a, -a)
            if not np.array_equal(got, want):
                errors.append(a)
                return

    ts = [threading.Thread(target=worker, args=(0.5 + k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors

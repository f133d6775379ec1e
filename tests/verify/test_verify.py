"""irc verify / irc.verify: every example agrees on every backend; a backend that
computes one op wrongly is caught, and the first differing value is reported at its
.tg line; the CLI's report and exit status."""

import contextlib
import glob
import os
import subprocess

import numpy as np
import pytest

import irc
from irc.verify_backends import compare, verify

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.tg")))

BUGGY = """shared W: f32[3, 4] = normal(0.0, 0.5)

fn f(x: f32[N, 3]) -> f32 {
    h = x @ W
    a = tanh(h)
    W <- W - 0.1 * grad(sum(a * a), W)
    return sum(a)
}
"""


@contextlib.contextmanager
def broken_tanh(monkeypatch, backend="cpu"):
    """The `backend` backend is the interpreter with tanh off by 0.01 (a stand-in for a
    backend bug: the reference stays right)."""
    from irc.runtime.interp import InterpBackend

    from irc import api
    from irc.ops.registry import REGISTRY

    orig_make = api._make_backend
    d = REGISTRY["tg.tanh"]
    good = d.numpy

    class Broken(InterpBackend):
        def call(self, fn, args, env):
            d.numpy = lambda x, **kw: good(x, **kw) + np.asarray(0.01, x.dtype)
            try:
                return super().call(fn, args, env)
            finally:
                d.numpy = good

    def make(name, module, state, device, **kw):
        if name == backend:
            return Broken(module, state)
        return orig_make(name, module, state, device, **kw)

    monkeypatch.setattr(api, "_make_backend", make)
    monkeypatch.setenv("IRC_NO_CACHE", "1")  # a cached cpu module would skip the stand-in
    yield


def test_compare_tolerances():
    a = np.array([1.0, 2.0, np.nan, np.inf], np.float32)
    assert compare(a, a.copy()) is None
    assert compare(a + np.float32(1e-5), a) is None  # within f32 tolerance
    assert "max abs error" in compare(a + np.float32(0.1), a)
    b = a.copy()
    b[2] = 0.0
    assert "NaN" in compare(b, a)
    assert compare(np.array([1, 2]), np.array([1, 3])).startswith("1 of 2")
    assert "dtype" in compare(np.zeros(2, np.float64), np.zeros(2, np.float32))
    assert compare(np.float64(1.0 + 1e-7), np.float64(1.0)) is not None  # f64 is strict


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_examples_agree_on_every_backend(path):
    report = verify(path, backends=["interp", "cpu", "opencl"])
    assert report.ok, str(report)


def test_masked_rnn_program_agrees():
    from test_backend_names import MASKED_RNN

    report = verify(MASKED_RNN)
    assert report.ok, str(report)


def test_first_differing_value_is_located(monkeypatch):
    with broken_tanh(monkeypatch):
        report = verify(BUGGY, backends=["interp", "cpu"], filename="buggy.tg")
    assert not report.ok
    text = str(report)
    cpu = report.functions[0].backends[1]
    assert not cpu.ok
    assert any(d.startswith("result 0") for d in cpu.differences), text
    assert any(d.startswith("shared W") for d in cpu.differences), text
    # h = x @ W is right; a = tanh(h) is the first value that differs
    assert cpu.first.startswith("buggy.tg:5:9: tg.tanh"), text
    assert "a = tanh(h)" in cpu.first_detail
    assert "FAILED: 1 of 1" in text


def test_unknown_backend_and_function():
    with pytest.raises(ValueError, match="unknown backend"):
        verify(BUGGY, backends=["gpu"])
    with pytest.raises(ValueError, match="no entry function 'g'"):
        verify(BUGGY, fn="g")


def test_integer_inputs_index_in_range():
    src = """
fn pick(x: f32[N, K], y: i32[N], i: i32) -> (f32, f32[K]) {
    return mean(categorical_crossentropy(softmax(x), y)), x[i]
}
"""
    report = verify(src, backends=["interp", "cpu"])
    assert report.ok, str(report)
    assert report.functions[0].dims["N"] % 2 == 1 and report.functions[0].dims["K"] % 2 == 1


def test_cli_exit_status(tmp_path, irc_exe):
    good = tmp_path / "good.tg"
    good.write_text(BUGGY)
    r = subprocess.run(
        [irc_exe, "verify", str(good), "--backends", "interp,cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok: 1 function(s) agree" in r.stdout
    r = subprocess.run(
        [irc_exe, "verify", str(good), "--backends", "interp,tpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1 and "unknown backend 'tpu'" in r.stderr
    assert "Traceback" not in r.stderr


SCALAR_SHARED = """shared state: f32 = zeros()
fn accumulate(inc: f32) -> f32 {
    state <- state + inc
    return state
}
"""


@pytest.mark.parametrize("backend", ["interp", "cpu", pytest.param("opencl", marks=pytest.mark.opencl)])
def test_scalar_shared_variable_set_and_verified(backend):
    """A rank-0 shared variable set through the API (checked by the API, then by the
    backend: the value kept its shape between the two) and compared by irc verify,
    which sets every backend's variables from the interpreter's (README's example)."""
    m = irc.loads(SCALAR_SHARED, backend=backend)
    m["state"] = -1.0
    assert m.accumulate(1.0) == -1.0 and m.accumulate(10.0) == 0.0
    assert m["state"].shape == () and m["state"] == 10.0
    if backend != "interp":
        report = verify(SCALAR_SHARED, backends=["interp", backend])
        assert report.ok, str(report)


def test_api_name():
    assert irc.verify is verify


def test_runtime_error_on_every_backend_is_agreement():
    """The interpreter raises (a pool window larger than the input); so do cpu and
    opencl: that is agreement, reported as such."""
    from test_backend_names import POOL

    report = verify(POOL, backends=["interp", "cpu", "opencl"])  # H drawn 3: 1 row left
    text = str(report)
    if report.functions[0].error is None:
        pytest.skip("the drawn H leaves the pool a window")  # pragma: no cover
    assert report.ok, text
    assert "raises too" in text


def _doc_programs():
    import re

    out = []
    for path in [os.path.join(ROOT, "README.md")] + sorted(
        glob.glob(os.path.join(ROOT, "docs", "*.md"))
    ):
        with open(path, encoding="utf-8") as f:
            for i, block in enumerate(re.findall(r"```tg\n(.*?)```", f.read(), re.DOTALL)):
                out.append(pytest.param(block, id=f"{os.path.basename(path)}#{i}"))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("src", _doc_programs())
def test_documentation_programs_agree_on_every_backend(src):
    report = verify(src, backends=["interp", "cpu", "opencl"])
    assert report.ok, str(report)


def test_difference_inside_a_scan_is_located_at_the_scan(monkeypatch):
    src = """shared U: f32[4, 4] = normal(0.0, 0.3)
fn f(xs: f32[T, N, 4], h0: f32[N, 4]) -> f32 {
    hs = scan (x in xs; h = h0) {
        h = tanh(x + h @ U)
        yield h
    }
    return sum(hs)
}
"""
    with broken_tanh(monkeypatch):
        report = verify(src, backends=["interp", "cpu"], filename="scan.tg")
    cpu = report.functions[0].backends[1]
    assert not cpu.ok
    assert cpu.first.startswith("scan.tg:3:10: tg.scan"), cpu.first
    assert "inside its body, lines 4-5" in cpu.first

"""The OpenCL backend itself: golden OpenCL C of tiny kernels, dump stages,
device selection and its errors, f64 without cl_khr_fp64, shared variables
resident on the device (read back only when asked), scan loops as host loops
without read-backs, the call boundary, run-time index errors, the program
cache, and the GPU-shaped kernels (one work-item per element, the
local-memory tiled product) checked on the CPU device too.

Golden files (tests/opencl/golden/*.cl) are the generated kernels for the CPU
shapes; refresh them with IRC_UPDATE_GOLDEN=1 after an intended change."""

from __future__ import annotations

import os

import numpy as np
import pytest
from opencl_helpers import assert_close, loads_opencl, one_op_module, opencl_backend, run_both

from irc.ir.types import F32, F64, I32, TensorType

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def _loop_module(name, types, attrs):
    from irc.passes.lower_to_loops import lower_module

    return lower_module(one_op_module(name, types, attrs))


def _program_text(be, fn="f"):
    # the first line names the device: not part of the golden text
    return "\n".join(be.dump("opencl", fn=fn).splitlines()[1:]) + "\n"


@pytest.mark.parametrize("case", ["exp", "sum_rows", "matmul"])
def test_golden_opencl_c(case):
    if case == "exp":
        m = _loop_module("tg.exp", [TensorType(F32, ("N",))], {})
    elif case == "sum_rows":
        m = _loop_module("tg.sum", [TensorType(F32, ("N", 3))], {"axis": (1,)})
    else:
        m = _loop_module("tg.matmul", [TensorType(F32, ("N", 5)), TensorType(F32, (5, 3))], {})
    text = _program_text(opencl_backend(m, style="cpu"))
    if case == "matmul":  # the library kernels are long: only the schedule and generated code
        text = text.split("// ===== library kernels")[0]
    path = os.path.join(GOLDEN, case + ".cl")
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
"""


def test_dump_stages():
    m = loads_opencl(CHAIN)
    be = m._backend
    cl_text = be.dump("opencl")
    assert "__kernel void chain_k0_map(" in cl_text and "irc_tanh_f32" in cl_text
    only = be.dump("opencl", fn="stats")
    assert "stats_k" in only and "chain_k0_map" not in only
    assert "// ===== stats: host schedule =====" in only
    assert "loop.for" in be.dump("loops") and "func.func @stats" in be.dump("loops", fn="stats")
    assert "stats:" in be.dump("schedule")
    with pytest.raises(ValueError):
        be.dump("nope")
    with pytest.raises(KeyError):
        be.dump("opencl", fn="nope")


def test_kernels_are_readable():
    """Named parameters, bounds from named dims, one kernel per fused group."""
    src = loads_opencl(CHAIN)._backend.dump("opencl", fn="chain")
    assert src.count("__kernel") == 1
    for part in (
        "const long d_N",
        "__global const float* restrict a_x",
        "__global float* restrict out0",
        "< d_N ?",
    ):
        assert part in src, part


MLP = """
shared W: f32[4, 3] = glorot_uniform()
shared b: f32[3] = zeros()
fn train(x: f32[N, 4], y: i32[N], lr: f32 = 0.5) -> f32 {
    loss = mean(categorical_crossentropy(softmax(x @ W + b), y))
    gW, gb = grad(loss, W, b)
    W <- W - lr * gW
    b <- b - lr * gb
    return loss
}
"""


def interp_twin(m):
    """The interpreter on the same optimised module and current shared values."""
    from irc.runtime.interp import InterpBackend

    return InterpBackend(m._opt.clone(), {k: m[k] for k in m.shared})


def test_shared_variables_stay_on_the_device():
    m = loads_opencl(MLP, seed=3)
    ref = interp_twin(m)
    be = m._backend
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 3, 16).astype(np.int32)
    lr = np.float32(0.5)
    reads0, writes0 = be.stats["reads"], be.stats["writes"]
    losses = [float(m.train(x, y)) for _ in range(5)]
    want = [float(ref.call("train", [x, y, lr], {"N": 16})[0]) for _ in range(5)]
    assert (
        be.stats["reads"] == reads0 and be.stats["writes"] == writes0
    )  # no shared-variable traffic
    np.testing.assert_allclose(losses, want, rtol=1e-5)
    W = m["W"]
    assert be.stats["reads"] == reads0 + 1  # read back only when asked
    np.testing.assert_allclose(W, ref.get("W"), rtol=1e-5, atol=1e-6)
    W[:] = 0  # a copy
    assert not np.array_equal(m["W"], W)
    m["W"] = np.ones((4, 3), np.float32)
    assert be.stats["writes"] == writes0 + 1
    np.testing.assert_array_equal(m["W"], np.ones((4, 3), np.float32))


def test_save_reads_back(tmp_path):
    m = loads_opencl(MLP, seed=1)
    m.train(np.ones((2, 4), np.float32), np.array([0, 1], np.int32))
    m.save(tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz") as d:
        np.testing.assert_array_equal(d["W"], m["W"])


SCAN = """
shared W: f32[3, 3] = glorot_uniform()
fn run(xs: f32[T, 2, 3], s0: f32[2, 3]) -> (f32[T, 2, 3], f32[2, 3]) {
    ss = scan (x in xs; s = s0) { s = tanh(s @ W + x)  yield s }
    return ss, sum(ss, axis=0)
}
"""


def test_scan_is_a_host_loop_without_read_backs(monkeypatch):
    import pyopencl as cl

    m = loads_opencl(SCAN)
    be = m._backend
    assert "host loop" in be.dump("schedule")
    ref = interp_twin(m)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(40, 2, 3)).astype(np.float32)
    s0 = rng.normal(size=(2, 3)).astype(np.float32)
    reads = []
    orig = cl._cl._enqueue_read_buffer
    monkeypatch.setattr(cl._cl, "_enqueue_read_buffer", lambda *a: reads.append(1) or orig(*a))
    got = be.call("run", [xs, s0], {})
    assert len(reads) == 2  # the two results, nothing inside the loop
    want = ref.call("run", [xs, s0], {"T": 40})
    for g, w in zip(got, want):
        assert_close(g, w)


def test_device_selection(monkeypatch):
    from irc.runtime.opencl import device as dv

    devices = dv.list_devices()
    p, d = devices[0]
    assert dv.select_device(d.name[:6].lower())[1].int_ptr == d.int_ptr
    assert dv.select_device(f"{p.name[:4]}:{d.name[:4]}")[1].int_ptr == d.int_ptr
    if "pocl" in p.version.lower():  # PoCL's platform name does not say "pocl"
        assert dv.select_device("pocl")[1].int_ptr == d.int_ptr
    kind = dv._type_name(d).lower()
    assert dv.select_device(kind)[1].int_ptr in [x.int_ptr for _, x in devices]
    with pytest.raises(dv.DeviceError) as e:
        dv.select_device("no-such-device-xyz")
    msg = str(e.value)
    assert "no-such-device-xyz" in msg and d.name.strip() in msg  # lists what is there
    monkeypatch.setenv(dv.ENV_VAR, "no-such-device-xyz")
    with pytest.raises(dv.DeviceError):
        loads_opencl(CHAIN)
    monkeypatch.setenv(dv.ENV_VAR, d.name[:6])
    assert loads_opencl(CHAIN)._backend.dev.device.int_ptr == d.int_ptr
    # device= wins over the environment
    monkeypatch.setenv(dv.ENV_VAR, "no-such-device-xyz")
    from irc.passes.lower_to_loops import lower_module
    from irc.runtime.opencl.backend import OpenCLBackend

    OpenCLBackend(
        lower_module(one_op_module("tg.exp", [TensorType(F32, ("N",))], {})), {}, device=d.name[:6]
    )


def test_no_platform_error_names_the_pip_package(monkeypatch):
    from irc.runtime.opencl import device as dv

    from irc.ir.errors import CompileError

    monkeypatch.setattr(dv, "list_devices", list)
    with pytest.raises(dv.DeviceError) as e:
        dv.select_device(None)
    assert "pip install pocl-binary-distribution" in str(e.value)
    assert isinstance(e.value, CompileError)  # the CLI prints it as an error, not a crash


def test_f64_without_fp64_is_a_clear_error(monkeypatch):
    import dataclasses

    from irc.runtime.opencl import backend as bk
    from irc.runtime.opencl import device as dv

    real = dv.open_device()
    monkeypatch.setattr(
        bk.devmod, "open_device", lambda spec=None: dataclasses.replace(real, fp64=False)
    )
    with pytest.raises(dv.DeviceError, match="cl_khr_fp64"):
        opencl_backend(_loop_module("tg.exp", [TensorType(F64, ("N",))], {}))
    opencl_backend(_loop_module("tg.exp", [TensorType(F32, ("N",))], {}))  # f32 is fine


def test_call_boundary_errors():
    from irc.runtime.opencl.backend import CallError

    be = opencl_backend(
        _loop_module("tg.add", [TensorType(F32, ("N", 3)), TensorType(I32, ("N", 1))], {})
    )
    x = np.ones((4, 3), np.float32)
    y = np.ones((4, 1), np.int32)
    (r,) = be.call("f", [x, y], {})
    assert r.dtype == np.float64 and r.shape == (4, 3)
    for args in (
        [x],
        [x, y, y],
        [np.ones((4, 2), np.float32), y],
        [np.ones((4,), np.float32), y],
        [x, np.ones((5, 1), np.int32)],
        [x, np.ones((4, 1), np.float32)],
        [np.array([["a"] * 3] * 4), y],
        [object(), y],
        [x, None],
    ):
        with pytest.raises(CallError):
            be.call("f", args, {})
    with pytest.raises(CallError):
        be.call("nope", [x, y], {})
    xf = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(4, 3))
    np.testing.assert_array_equal(be.call("f", [xf, y], {})[0], xf + 1)
    np.testing.assert_array_equal(be.call("f", [[[1, 2, 3]], [[1]]], {})[0], [[2, 3, 4]])
    assert be.call("f", [np.ones((0, 3), np.float32), np.ones((0, 1), np.int32)], {})[0].shape == (
        0,
        3,
    )


def test_runtime_index_errors_raise_and_change_nothing():
    from irc.runtime.interp import InterpError

    m = loads_opencl("""
shared acc: f32[4] = zeros()
fn pick(p: f32[N, K], y: i32[N]) -> f32[N] { return p[arange(N), y] }
fn ce(p: f32[N, K], y: i32[N]) -> f32 {
    l = sum(categorical_crossentropy(p, y))
    acc <- acc + l
    return l
}
""")
    p = np.full((3, 4), 0.25, np.float32)
    with pytest.raises(InterpError, match="range"):
        m.pick(p, np.array([0, 4, 1], np.int32))
    with pytest.raises(InterpError, match="range"):
        m.ce(p, np.array([0, -1, 1], np.int32))
    np.testing.assert_array_equal(
        m["acc"], np.zeros(4, np.float32)
    )  # the failed call updated nothing
    np.testing.assert_array_equal(m.pick(p, np.array([0, -1, 1], np.int32)), [0.25] * 3)
    assert float(m.ce(p, np.array([0, 1, 2], np.int32))) == pytest.approx(3 * np.log(4), rel=1e-6)
    np.testing.assert_allclose(m["acc"], np.full(4, 3 * np.log(4)), rtol=1e-6)


def test_programs_are_built_once(monkeypatch):
    from irc.runtime.opencl import device as dv

    loads_opencl(CHAIN)
    built = []
    import pyopencl as cl

    orig = cl.Program.build
    monkeypatch.setattr(
        cl.Program, "build", lambda self, *a, **k: built.append(1) or orig(self, *a, **k)
    )
    m = loads_opencl(CHAIN)
    assert built == []  # the same source on the same device: the process's program
    x = np.linspace(-2, 2, 9, dtype=np.float32)
    np.testing.assert_allclose(
        m.chain(x, 1.0, 0.5),
        np.tanh(x + 0.5) / (1 + np.exp(-x)) + 0.5 * x * x,
        rtol=1e-5,
        atol=1e-6,
    )
    assert dv.open_device() is m._backend.dev


GPU_CASES = [
    ("tg.matmul", [TensorType(F32, ("N", 70)), TensorType(F32, (70, 33))], {}),
    ("tg.sum", [TensorType(F32, ("N", 3, 4))], {"axis": None}),
    ("tg.softmax", [TensorType(F32, ("N", 7))], {"axis": 1}),
    (
        "tg.conv2d",
        [TensorType(F32, ("N", 2, 9, 8)), TensorType(F32, (4, 2, 3, 2))],
        {"padding": "same"},
    ),
    ("tg.max_pool2d", [TensorType(F32, ("N", 2, 8, 6))], {"size": (2, 2)}),
]


@pytest.mark.parametrize("style", ["gpu", "cpu"])
@pytest.mark.parametrize("case", range(len(GPU_CASES)), ids=[c[0] for c in GPU_CASES])
def test_kernel_shapes_agree(style, case):
    """GPU-shaped kernels (a work-item per element, the local-memory tiled
    product, bounds checks) run on the CPU device too and agree."""
    from irc.runtime.interp import InterpBackend
    from irc.runtime.opencl.backend import OpenCLBackend

    name, types, attrs = GPU_CASES[case]
    m = one_op_module(name, types, attrs)
    rng = np.random.default_rng(case)
    args = [
        rng.normal(size=[5 if d == "N" else d for d in t.shape]).astype(np.float32) for t in types
    ]
    want = InterpBackend(m.clone(), {}).call("f", args, {"N": 5})
    be = OpenCLBackend(m, {}, style=style)
    for w, g in zip(want, be.call("f", args, {})):
        assert_close(g, w)
    if style == "gpu" and name == "tg.matmul":
        assert "get_global_id(1)" in be.dump("opencl") or "irc_gemm" in be.dump("opencl")


def test_batched_products_and_host_loops_agree():
    """Products in a loop become one batched launch (a batched matmul); the
    filter gradient is one product over the whole batch (the lowering unfolds
    every image into one matrix), with no host loop."""
    from irc.runtime.interp import InterpBackend

    for name, types, attrs in (
        (
            "tg.conv2d_filter_grad",
            [TensorType(F32, ("N", 2, 7, 6)), TensorType(F32, ("N", 3, 5, 4))],
            {"shape": (3, 3)},
        ),
        ("tg.matmul", [TensorType(F32, (2, 3, 4, 5)), TensorType(F32, (3, 5, 6))], {}),
    ):
        m = one_op_module(name, types, attrs)
        be = opencl_backend(m)
        if name == "tg.conv2d_filter_grad":
            sched = be.dump("schedule")
            assert "gemm out0" in sched and "x mul(20, N)]" in sched and "loop" not in sched
        rng = np.random.default_rng(0)
        args = [
            rng.normal(size=[4 if d == "N" else d for d in t.shape]).astype(np.float32)
            for t in types
        ]
        want = InterpBackend(m.clone(), {}).call("f", args, {"N": 4})
        for w, g in zip(want, be.call("f", args, {})):
            assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_run_both_helper_zero_sized():
    m = one_op_module("tg.sum", [TensorType(F32, ("N", 3))], {"axis": (0,)})
    want, got = run_both(m, [np.zeros((0, 3), np.float32)], {"N": 0})
    assert_close(got[0], want[0])

"""docs/adding-an-op.md, executed: a new elementwise op is one OpDef entry. The test
registers `tg.softsign` (x / (1 + |x|)) at run time with nothing but its entry (type
rule, NumPy reference, gradient, scalar rule, cost) and runs it, alone and fused into a
chain, on every backend: the interpreter, cpu (LLVM) and opencl (PoCL in CI), against
NumPy; its gradient goes through the grad pass like any op's. The op is removed again
afterwards, so the registry's completeness tests never see it."""

import numpy as np
import pytest

import irc.ops  # noqa: F401  (registers every op)
from irc.ir.parser import parse_module
from irc.ops.common import arrayed, elementwise_infer, named_infer, scalar_expr
from irc.ops.cost import per_result_element
from irc.ops.lowering import missing_lowerings
from irc.ops.registry import ELEMENTWISE_PURE, REGISTRY, OpDef, defop
from irc.pipeline import run_pipeline
from irc.runtime.interp import InterpBackend


def _softsign(x):
    return x / (1 + np.abs(x))


def _scalar_softsign(emit, x):
    one = emit.const(1, x.type.dtype)
    return emit.scalar("div", x, emit.scalar("add", one, emit.scalar("abs", x)))


def _vjp_softsign(b, op, g):
    x = op.operands[0]
    d = b.add(b.like(1, x), b.abs(x))
    return [b.div(g, b.mul(d, d))]


@pytest.fixture
def softsign():
    d = defop(
        OpDef(
            "tg.softsign",
            infer=named_infer("softsign", elementwise_infer(_softsign)),
            numpy=arrayed(_softsign),
            vjp=_vjp_softsign,
            scalar=scalar_expr(_scalar_softsign),
            cost=per_result_element,
            traits=ELEMENTWISE_PURE,
            arity=1,
            domain=(-2.0, 2.0),
            doc="x / (1 + |x|)",
        )
    )
    yield d
    del REGISTRY["tg.softsign"]


SOURCE = """
module {
  func.func @alone(%x: f32[N, 3]) -> (f32[N, 3]) attributes {visibility = "public"} {
    %y = tg.softsign %x : f32[N, 3]
    func.return %y
  }
  func.func @chain(%x: f32[N, 3], %b: f32[3]) -> (f32[N, 3], f32) attributes {visibility = "public"} {
    %a = tg.add %x, %b : f32[N, 3]
    %s = tg.softsign %a : f32[N, 3]
    %y = tg.tanh %s : f32[N, 3]
    %t = tg.sum %y {axis = none, keepdims = false} : f32
    func.return %y, %t
  }
  func.func @grad(%x: f64[5]) -> (f64[5]) attributes {visibility = "public"} {
    %s = tg.softsign %x : f64[5]
    %t = tg.sum %s {axis = none, keepdims = false} : f64
    %g = tg.grad %t, %x {disconnected = "raise"} : f64[5]
    func.return %g
  }
}
"""


def test_a_new_elementwise_op_runs_on_every_backend(softsign, backend_under_test):
    # backend_under_test (tests/conftest.py, ON_EVERY_BACKEND): interp, cpu, opencl
    backend = backend_under_test
    assert "tg.softsign" not in missing_lowerings()
    module = run_pipeline(parse_module(SOURCE))
    assert any(op.name == "tg.fused" for op in module.walk())  # it fused into the chain
    if backend == "interp":
        be = InterpBackend(module, {})
    elif backend == "cpu":
        from irc.runtime.llvm.backend import LLVMBackend

        be = LLVMBackend(module, {}, cache=False)
    else:
        from irc.runtime.opencl.backend import OpenCLBackend

        be = OpenCLBackend(module, {})
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (7, 3)).astype(np.float32)
    b = rng.uniform(-1, 1, 3).astype(np.float32)
    (y,) = be.call("alone", [x], {"N": 7})
    np.testing.assert_allclose(y, _softsign(x), rtol=1e-6, atol=1e-7)
    y, t = be.call("chain", [x, b], {"N": 7})
    want = np.tanh(_softsign(x + b))
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t, want.sum(), rtol=1e-4)
    x64 = rng.uniform(-3, 3, 5)
    (g,) = be.call("grad", [x64], {})
    np.testing.assert_allclose(g, 1 / (1 + np.abs(x64)) ** 2, rtol=1e-12)

"""irc/ops/cost.py: every op states its FLOPs on its OpDef (`cost`), and an op
without a rule is an error rather than a silent 0."""

import pytest

import irc.ops  # noqa: F401  (registers every op)
from irc.ir.parser import parse_module
from irc.ops.cost import func_cost, op_flops
from irc.ops.registry import REGISTRY


def test_every_tg_op_has_a_cost_rule():
    missing = [
        name
        for name, d in REGISTRY.items()
        if (name.startswith("tg.") or name in ("func.return", "func.call")) and d.cost is None
    ]
    assert not missing, f"ops without OpDef.cost: {missing}"


def test_flops_of_a_small_model():
    m = parse_module("""
    module {
      func.func @f(%x: f32[N, 4], %w: f32[4, 3]) -> (f32[N, 3]) attributes {visibility = "public"} {
        %y = tg.matmul %x, %w : f32[N, 3]
        %t = tg.tanh %y : f32[N, 3]
        func.return %t
      }
    }
    """)
    f = next(iter(m.functions()))
    cost = func_cost(f)
    # 2*N*3*4 for the product, N*3 for tanh
    assert str(cost["flops"]).replace(" ", "") in ("27*N", "N*27")
    assert cost["kernels"] == 2


def test_an_op_without_a_cost_rule_is_an_error():
    m = parse_module("""
    module {
      func.func @f(%x: f32[4]) -> (f32[4]) attributes {visibility = "public"} {
        %t = tg.tanh %x : f32[4]
        func.return %t
      }
    }
    """)
    op = next(o for o in m.walk() if o.name == "tg.tanh")
    d = REGISTRY["tg.tanh"]
    saved, d.cost = d.cost, None
    try:
        with pytest.raises(KeyError, match="tg.tanh has no cost rule"):
            op_flops(op)
    finally:
        d.cost = saved

"""irc.ir.sizes.buffer_types: the distinct tensor types of rank > 0 of a function's
values, in the order a pre-order walk of its ops meets them (each op's regions'
block arguments, then its results), against that walk written out."""

import pytest

from irc.api import compile_to_ir
from irc.ir.sizes import buffer_types
from irc.ir.types import TensorType
from irc.pipeline import run_backend_pipeline, run_pipeline

# (the scan's body argument x: f32[3] and its result: f32[T, 5] are types met
# first at the scan, so the order of the two is seen)
SCAN = """
fn f(xs: f32[T, 3], h0: f32[5], W: f32[3, 5]) -> (f32[T, 5], f32[3, 5]) {
    hs = scan (x in xs; h = h0) { h = tanh(x @ W + h)  yield h }
    return hs, grad(sum(hs * hs), W)
}
"""

MIXED = """
fn f(x: f32[N, 8], W: f32[8, 8], b: f32[8]) -> f32 {
    h = tanh(x @ W + b)
    m = h - mean(h, axis=1, keepdims=true)
    return sum(m * m)
}
"""


def _walk_types(func) -> list:
    seen = {}
    for op in func.walk():
        for r in op.regions:
            for b in r.blocks:
                for a in b.args:
                    if isinstance(a.type, TensorType) and a.type.shape:
                        seen.setdefault(a.type, None)
        for v in op.results:
            if isinstance(v.type, TensorType) and v.type.shape:
                seen.setdefault(v.type, None)
    return list(seen)


@pytest.mark.parametrize("src", [SCAN, MIXED], ids=["scan", "mixed"])
@pytest.mark.parametrize("stage", ["opt", "loops"])
def test_buffer_types_in_walk_order(src, stage):
    m = compile_to_ir(src, "<test>")
    run_pipeline(m)
    if stage == "loops":
        run_backend_pipeline(m)
    funcs = [op for op in m.body.ops if op.name == "func.func"]
    assert funcs
    for func in funcs:
        got = buffer_types(func)
        assert got == _walk_types(func)
        assert [str(t) for t in got] == [str(t) for t in _walk_types(func)]
        assert got and all(t.shape for t in got)


def test_region_arguments_come_before_the_results_of_their_op():
    # Built by hand: an op whose region argument and result are both types met
    # first there (the front end's programs meet their types at the arguments).
    from irc.ir.core import Block, Op, Region
    from irc.ir.parser import parse_type

    a, b, c, d = (parse_type(t) for t in ("f32[4]", "f32[2, 3]", "f32[7]", "f32[5]"))
    scalar = parse_type("f32")
    inner = Block([c, scalar])
    inner.append(Op("test.leaf", [], [d]))
    body = Block([a])
    body.append(Op("test.outer", [], [b], regions=[Region([inner])]))
    func = Op("func.func", [], [], {"sym_name": "f"}, regions=[Region([body])])
    assert [str(t) for t in buffer_types(func)] == ["f32[4]", "f32[7]", "f32[2, 3]", "f32[5]"]
    assert buffer_types(func) == _walk_types(func)

"""fuse-elementwise: the scalar constants a group uses are copied into its body
as the constants they are (value, dtype, name, location), one copy per body;
the constants outside stay for their other users."""

import numpy as np

from irc.ir.parser import parse_module
from irc.ir.printer import print_module
from irc.passes import PassManager, parse_pipeline

SRC = """
module {
  func.func @f(%x: f32[N], %y: f32[N]) -> (f32[N], f32[N], f32) {
    %c = tg.constant {value = dense<f32, 0.5>} : f32 loc("a.tg":2:5)
    %d = tg.constant {value = dense<f32, -0.0>} : f32 loc("a.tg":3:5)
    %a = tg.mul %x, %c : f32[N] loc("a.tg":4:5)
    %b = tg.add %a, %d : f32[N] loc("a.tg":5:5)
    %e = tg.mul %y, %c : f32[N] loc("a.tg":6:5)
    %g = tg.tanh %e : f32[N] loc("a.tg":7:5)
    func.return %b, %g, %c
  }
}
"""


def test_constants_are_copied_into_each_body():
    m = parse_module(SRC, "a.tgir")
    PassManager(parse_pipeline("fuse-elementwise"), verify_each=True).run(m)
    func = m.body.ops[0]
    fused = [op for op in func.regions[0].block.ops if op.name == "tg.fused"]
    assert len(fused) == 2
    copies = []
    for f in fused:
        body = f.regions[0].block
        consts = [op for op in body.ops if op.name == "tg.constant"]
        copies += consts
        for op in consts:
            assert op.parent is body and not op.operands and op.regions == ()
            assert [u.parent for u, _ in op.results[0].uses] == [body] * len(op.results[0].uses)
            assert op.results[0].uses
    hints = [(c.results[0].name_hint, str(c.loc)) for c in copies]
    assert hints == [("c", "a.tg:2:5"), ("d", "a.tg:3:5"), ("c", "a.tg:2:5")]
    # -0.0 stays -0.0 (the value array, shared read-only or copied, never recomputed)
    assert np.signbit(copies[1].attrs["value"])
    assert copies[0].attrs["value"].dtype == np.float32 and not copies[0].attrs["value"].flags.writeable
    # the outside constant keeps its outside use (the return) only
    outer = func.regions[0].block.ops[0]
    assert outer.name == "tg.constant" and [u.name for u, _ in outer.results[0].uses] == ["func.return"]
    text = print_module(m, locs=True)
    assert text.count("tg.constant") == 5

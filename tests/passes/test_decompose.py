"""decompose: every decomposition gives the composite's values, stably
(logits of size 1e3), on the interpreter."""

import numpy as np

from irc.api import compile_to_ir
from irc.ir.printer import print_module
from irc.passes import PassManager, parse_pipeline
from irc.runtime.interp import Interpreter

SRC = """
fn f(x: f32[N, 5], y: i32[N], q: f32[N, 5]) -> (f32[N, 5], f32[N, 5], f32[N], f32[N], f32, f32[5], f32[N, 1]) {
    return softmax(x), log_softmax(x, axis=0), crossentropy_logits(x, y), crossentropy_logits(x, q), mean(x),
           mean(x, axis=0), mean(x, axis=1, keepdims=true)
}
"""


def run(pipeline):
    m = compile_to_ir(SRC, "d.tg")
    PassManager(parse_pipeline(pipeline), verify_each=True).run(m)
    return m


def test_decompositions_match_the_composites():
    ref_ir, dec_ir = run("inline"), run("inline,decompose{all=true}")
    text = print_module(dec_ir)
    for name in ("tg.softmax", "tg.log_softmax", "tg.crossentropy_logits", "tg.mean"):
        assert name not in text
    rng = np.random.default_rng(0)
    for scale in (1.0, 1e3):
        x = (rng.normal(size=(4, 5)) * scale).astype(np.float32)
        y = rng.integers(0, 5, size=4).astype(np.int32)
        q = rng.dirichlet(np.ones(5), size=4).astype(np.float32)
        env = {"N": 4}
        ref, _ = Interpreter(ref_ir).run("f", [x, y, q], {}, env)
        got, _ = Interpreter(dec_ir).run("f", [x, y, q], {}, env)
        for r, g in zip(ref, got):
            assert np.all(np.isfinite(g))
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * scale)


def test_default_decomposes_only_mean():
    text = print_module(run("inline,decompose"))
    assert "tg.mean" not in text and "tg.softmax" in text and "tg.crossentropy_logits" in text


REPEATED = """
fn f(x: f32[N, 5], y: f32[N, 5]) -> (f32[N], f32[N], f32[N, 5], f32[N, 5]) {
    a = mean(x, axis=1)
    b = mean(y, axis=1)
    s = softmax(x)
    t = softmax(y * 2.0)
    return a, b, s, t
}
"""


def test_equal_composites_decompose_each_on_its_own_operands_and_line():
    # The second of two equal composites gets copies of the first one's ops:
    # they must read its own operands and carry its own location.
    ref = compile_to_ir(REPEATED, "r.tg")
    dec = compile_to_ir(REPEATED, "r.tg")
    PassManager(parse_pipeline("decompose{all=true}"), verify_each=True).run(dec)
    fn = dec.lookup("f")
    sums = [op for op in fn.walk() if op.name == "tg.sum"]
    assert [op.loc.line for op in sums] == [3, 4, 5, 6]
    assert sums[0].operands[0].name_hint == "x" and sums[1].operands[0].name_hint == "y"
    for op in fn.walk():
        if op.name in ("tg.max", "tg.sub", "tg.exp", "tg.div", "tg.mul", "tg.constant"):
            assert op.loc.line in (3, 4, 5, 6), print_module(dec, locs=True)
    rng = np.random.default_rng(1)
    x, y = (rng.normal(size=(3, 5)).astype(np.float32) for _ in range(2))
    want, _ = Interpreter(ref).run("f", [x, y], {}, {"N": 3})
    got, _ = Interpreter(dec).run("f", [x, y], {}, {"N": 3})
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)

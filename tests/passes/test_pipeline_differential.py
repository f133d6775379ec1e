"""Differential property: random small models give the same results on the
interpreter straight after the front end + `grad` and after the whole
optimising pipeline (canonicalize, CSE, DCE, scan-unroll, fusion, ...)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from irc.api import compile_to_ir
from irc.passes import PassManager, parse_pipeline
from irc.pipeline import run_pipeline
from irc.runtime.interp import Interpreter

UNARY = [
    "exp({})",
    "tanh({})",
    "sigmoid({})",
    "relu({})",
    "log(abs({}) + 1.0)",
    "-{}",
    "({} * 2.0)",
    "({} + 1.0)",
    "softplus({})",
    "({} * {} )",
    "sqrt(abs({}) + 0.5)",
]
BINARY = [
    "({} + {})",
    "({} - {})",
    "({} * {})",
    "maximum({}, {})",
    "where({} > {}, {}, {})",
    "({} / (abs({}) + 1.0))",
]
REDUCE = [
    "sum({}, axis=1, keepdims=true)",
    "mean({}, axis=0, keepdims=true)",
    "max({}, axis=1, keepdims=true)",
]
OTHER = [
    "softmax({})",
    "({} @ W)",
    "transpose(transpose({}))",
    "reshape(reshape({}, [N * 4]), [N, 4])",
]


@st.composite
def programs(draw):
    values = ["x", "y"]
    lines = []
    for i in range(draw(st.integers(2, 8))):
        kind = draw(st.sampled_from(["u", "b", "r", "o"]))
        pick = lambda: draw(st.sampled_from(values))  # noqa: E731
        if kind == "u":
            tmpl = draw(st.sampled_from(UNARY))
            a = pick()
            expr = tmpl.format(*([a] * tmpl.count("{}")))
        elif kind == "b":
            tmpl = draw(st.sampled_from(BINARY))
            a, b = pick(), pick()
            expr = tmpl.format(a, b, a, b) if tmpl.count("{}") == 4 else tmpl.format(a, b)
        elif kind == "r":
            expr = draw(st.sampled_from(REDUCE)).format(pick()) + " + " + pick()
        else:
            expr = draw(st.sampled_from(OTHER)).format(pick())
        lines.append(f"    v{i} = {expr}")
        values.append(f"v{i}")
    out = values[-1]
    body = "\n".join(lines)
    return f"""
shared W: f64[4, 4] = normal(0, 0.5)
fn f(x: f64[N, 4], y: f64[N, 4]) -> (f64[N, 4], f64[4, 4]) {{
{body}
    loss = sum({out} * {out})
    return {out}, grad(loss, W, disconnected="zero")
}}
"""


@settings(max_examples=60, deadline=None)
@given(programs(), st.integers(1, 5))
def test_pipeline_preserves_results(src, n):
    ref_ir = compile_to_ir(src, "rand.tg")
    PassManager(parse_pipeline("inline,grad"), verify_each=True).run(ref_ir)
    opt_ir = run_pipeline(compile_to_ir(src, "rand.tg"), verify_each=True)
    rng = np.random.default_rng(n)
    args = [rng.normal(size=(n, 4)), rng.normal(size=(n, 4))]
    state = {"W": rng.normal(size=(4, 4)) * 0.5}
    ref, _ = Interpreter(ref_ir).run("f", args, state, {"N": n})
    got, _ = Interpreter(opt_ir).run("f", args, state, {"N": n})
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-9, err_msg=src)

"""Differential property: random small models (the generator of
tests/passes/test_pipeline_differential.py, in f64, gradients included) give
the same results on the interpreter and on the cpu backend, after the whole
pipeline. Compiled modules are cached, so reruns are cheap."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from irc.api import compile_to_ir
from irc.pipeline import run_pipeline
from irc.runtime.interp import Interpreter
from llvm_helpers import cpu_backend, load_test_module

programs = load_test_module("passes/test_pipeline_differential.py", "_cpu_diff_programs").programs


@settings(max_examples=25, deadline=None)
@given(programs(), st.integers(1, 70))
def test_cpu_matches_interpreter(src, n):
    opt = run_pipeline(compile_to_ir(src, "rand.tg"))
    rng = np.random.default_rng(n)
    args = [rng.normal(size=(n, 4)), rng.normal(size=(n, 4))]
    state = {"W": rng.normal(size=(4, 4)) * 0.5}
    want, _ = Interpreter(opt).run("f", args, dict(state), {"N": n})
    got = cpu_backend(opt, dict(state)).call("f", args, {"N": n})
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9, err_msg=src)

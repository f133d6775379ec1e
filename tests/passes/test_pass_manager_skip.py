"""The pass manager skips a pass that left the IR at its fixed point (canonicalize)
while only passes that report their changes, and changed nothing, ran since; the
IR is the same as when every pass runs."""

import pytest
from irc.passes import PassManager, parse_pipeline
from irc.passes.canonicalize import Canonicalize

from irc.frontend import compile_source
from irc.ir.printer import print_module

# nothing for stabilize to do; `x * 1.0` for canonicalize
PLAIN = """
fn f(x: f32[N]) -> f32[N] {
    return tanh(x * 1.0) + 0.5
}
"""

# log(softmax(x)) for stabilize, which leaves new work for canonicalize
STABLE = """
fn f(x: f32[N, 4]) -> f32[N, 4] {
    return log(softmax(x, axis=1)) * 1.0
}
"""


def _run(source: str, pipeline: str, monkeypatch=None, counted=Canonicalize) -> tuple:
    """(IR text after the pipeline, how many times the pass class `counted` ran)"""
    runs = []
    if monkeypatch is not None:
        orig = counted.run

        def run(self, module):
            runs.append(1)
            return orig(self, module)

        monkeypatch.setattr(counted, "run", run)
    m = compile_source(source, "<t>", {})
    PassManager(parse_pipeline(pipeline)).run(m)
    return print_module(m), len(runs)


def _one_by_one(source: str, pipeline: str) -> str:
    """The same passes, each by a pass manager of its own (nothing skipped)."""
    m = compile_source(source, "<t>", {})
    for p in pipeline.split(","):
        PassManager(parse_pipeline(p)).run(m)
    return print_module(m)


@pytest.mark.parametrize(
    "source, pipeline, expected_runs",
    [
        # stabilize changes nothing: the second canonicalize is skipped
        (PLAIN, "canonicalize,stabilize,canonicalize", 1),
        (PLAIN, "canonicalize,canonicalize,grad,canonicalize", 1),
        # stabilize rewrites: the second one runs
        (STABLE, "canonicalize,stabilize,canonicalize", 2),
        # fuse-elementwise does not promise to report its changes: runs again
        (PLAIN, "canonicalize,fuse-elementwise,canonicalize", 2),
        # other options: another pass
        (PLAIN, "canonicalize,canonicalize{max-iterations=5}", 2),
    ],
)
def test_skip(monkeypatch, source, pipeline, expected_runs):
    text, runs = _run(source, pipeline, monkeypatch)
    assert runs == expected_runs
    assert text == _one_by_one(source, pipeline)


def test_max_iterations_reached_is_not_a_fixed_point(monkeypatch):
    # one sweep folds `x * 1.0` and stops there (max-iterations=1): not known to
    # be a fixed point, so the next canonicalize runs
    pipeline = "canonicalize{max-iterations=1},stabilize,canonicalize{max-iterations=1}"
    text, runs = _run(PLAIN, pipeline, monkeypatch)
    assert runs == 2
    assert text == _one_by_one(PLAIN, pipeline)


CSE_SOURCE = """
fn f(x: f32[N]) -> f32[N] {
    a = tanh(x) + 0.5
    b = tanh(x) + 0.5
    return a * b + tanh(a) * tanh(b)
}
"""


@pytest.mark.parametrize(
    "pipeline, expected_runs",
    [("cse,scan-unroll,decompose,canonicalize,cse", 1), ("cse,fuse-elementwise,cse", 2)],
)
def test_cse_skip(monkeypatch, pipeline, expected_runs):
    from irc.passes.cse import CSE

    text, runs = _run(CSE_SOURCE, pipeline, monkeypatch, counted=CSE)
    assert runs == expected_runs
    assert text == _one_by_one(CSE_SOURCE, pipeline)
    assert text.count("tg.tanh") <= 2  # tanh(a) and tanh(b) merged in one run

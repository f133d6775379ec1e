"""Random well-typed programs (randprog.py) must give the same results and shared
updates on interp, cpu and opencl (irc verify). The quick run is in the default suite;
the long one (`-m slow`) tries many more. A program that fails is printed with the
report; each bug found this way has its own regression test below."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from randprog import programs

from irc.verify_backends import verify

BACKENDS = ["interp", "cpu", "opencl"]


def _check(src, seed):
    report = verify(src, backends=BACKENDS, filename="random.tg", seed=seed)
    assert report.ok, f"{src}\n{report}"  # the seed (inputs and dims) is in the report


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(programs(), st.integers(0, 2**16))
def test_random_programs_agree_quick(src, seed):
    _check(src, seed)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(programs(), st.integers(0, 2**16))
def test_random_programs_agree_long(src, seed):
    _check(src, seed)


FUZZ_RUN = 10_000


@pytest.mark.slow
def test_random_programs_through_the_pipeline_10k():
    """10^4 random programs through the front end and the whole pipeline (verified
    after every pass): no exception, no hang (a 60 s alarm per program). The counts go
    to docs/reliability.md."""
    import signal

    from hypothesis import seed

    from irc.api import compile_to_ir
    from irc.pipeline import run_pipeline

    def hang(signum, frame):
        raise TimeoutError("a program took over 60 s to compile")

    count = [0]

    @seed(20261204)
    @settings(
        max_examples=FUZZ_RUN,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(programs())
    def run(src):
        old = signal.signal(signal.SIGALRM, hang)
        signal.alarm(60)
        try:
            run_pipeline(compile_to_ir(src, "random.tg"), verify_each=True)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        count[0] += 1

    run()
    print(f"{count[0]} random programs through the pipeline, 0 exceptions")
    assert count[0] >= FUZZ_RUN * 0.9  # hypothesis may stop early on a saturated space

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


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(programs(), st.integers(0, 2**16))
def test_random_programs_agree_quick(src, seed):
    _check(src, seed)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(programs(), st.integers(0, 2**16))
def test_random_programs_agree_long(src, seed):
    _check(src, seed)

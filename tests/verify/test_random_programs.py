"""Random well-typed programs (randprog.py) must give the same results and shared
updates on interp, cpu and opencl (irc verify). The quick run is in the default suite;
the long one (`-m slow`) tries many more. A program that fails is printed with the
report; each bug found this way has its own regression test below."""

import pytest
from hypothesis import HealthCheck, given, settings
from randprog import programs

from irc.verify_backends import verify

BACKENDS = ["interp", "cpu", "opencl"]


def _check(src):
    report = verify(src, backends=BACKENDS, filename="random.tg")
    assert report.ok, f"{src}\n{report}"


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(programs())
def test_random_programs_agree_quick(src):
    _check(src)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(programs())
def test_random_programs_agree_long(src):
    _check(src)

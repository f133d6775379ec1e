"""Fixtures of the differential tests (irc verify, random programs, NaN guard,
profiler): `opencl_reason` says why OpenCL tests must be skipped (None when a
device opens), so a machine without one still runs everything else."""

import pytest
from verify_helpers import OPENCL_REASON


@pytest.fixture
def opencl_reason():
    return OPENCL_REASON

"""Fixtures of the differential tests (irc verify, random programs, NaN guard,
profiler): `opencl_reason` says why OpenCL tests must be skipped (None when a
device opens), so a machine without one still runs everything else."""

import pytest


def _opencl_reason():
    try:
        from irc.runtime.opencl.device import open_device

        open_device()
    except Exception as e:  # noqa: BLE001  (no pyopencl, no platform, no matching device)
        return f"no OpenCL device: {e}"
    return None


OPENCL_REASON = _opencl_reason()
needs_opencl = pytest.mark.skipif(OPENCL_REASON is not None, reason=OPENCL_REASON or "")


@pytest.fixture
def opencl_reason():
    return OPENCL_REASON

"""Shared by the differential tests (irc verify, random programs, NaN guard, profiler):
`needs_opencl` skips a test when no OpenCL device opens, saying why. A module of its own
(not conftest.py) because several test folders have a conftest and `from conftest import`
would pick whichever was imported first."""

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

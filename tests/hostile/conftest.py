"""Backends for the hostile-input tests: every test taking `backend` runs on the
interpreter, cpu and (where an OpenCL device opens, PoCL in CI) opencl."""

import pytest


def _opencl_reason():
    try:
        from irc.runtime.opencl.device import open_device

        open_device()
    except Exception as e:  # noqa: BLE001  (no pyopencl, no platform, no device)
        return f"no OpenCL device: {e}"
    return None


@pytest.fixture(
    params=["interp", "cpu", pytest.param("opencl", marks=pytest.mark.opencl)], scope="module"
)
def backend(request):
    if request.param == "opencl":
        reason = _opencl_reason()
        if reason:
            pytest.skip(reason)
    return request.param

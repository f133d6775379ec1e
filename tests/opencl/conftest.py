"""Every test under tests/opencl needs an OpenCL device (PoCL in CI) and is
marked `opencl`; without one they are skipped with the reason. irc.api builds
opencl backends for backend="opencl", and for backend="interp" too. (The
interpreter's own tests run on OpenCL through tests/conftest.py's
ON_EVERY_BACKEND.)"""

import pytest
from opencl_helpers import opencl_available, patch_api_opencl

_REASON = opencl_available()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/tests/opencl/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.opencl)
            if _REASON:
                item.add_marker(pytest.mark.skip(reason=_REASON))


@pytest.fixture(autouse=True)
def _api_on_opencl(monkeypatch):
    patch_api_opencl(monkeypatch, also_interp=True)

"""Every test under tests/llvm runs with irc.api building cpu backends: for
backend="cpu", and for backend="interp" too. (The interpreter's own tests run
on the cpu backend through tests/conftest.py's ON_EVERY_BACKEND.)"""

import pytest

from llvm_helpers import patch_api_cpu


@pytest.fixture(autouse=True)
def _api_on_cpu(monkeypatch):
    patch_api_cpu(monkeypatch, also_interp=True)

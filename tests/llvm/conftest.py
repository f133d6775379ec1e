"""Every test under tests/llvm runs with irc.api building cpu backends: for
backend="cpu", and for backend="interp" too, so that the interpreter tests
re-exported here (test_cpu_*.py) run unchanged on the cpu backend."""

import pytest

from llvm_helpers import patch_api_cpu


@pytest.fixture(autouse=True)
def _api_on_cpu(monkeypatch):
    patch_api_cpu(monkeypatch, also_interp=True)

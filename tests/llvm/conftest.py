"""Every test under tests/llvm runs with irc.api building cpu backends: for
backend="cpu", and for backend="interp" too. (The interpreter's own tests run
on the cpu backend through tests/conftest.py's ON_EVERY_BACKEND.)"""

import pytest

from llvm_helpers import patch_api_cpu


@pytest.fixture(autouse=True)
def _api_on_cpu(monkeypatch):
    patch_api_cpu(monkeypatch, also_interp=True)


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """irc's cache folder in an empty XDG_CACHE_HOME, with no engine kept from
    earlier loads: what a user's first load on a new machine sees."""
    from irc.runtime.llvm import jit

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(jit, "_ENGINES", {})
    return tmp_path / "irc"

"""Suite-wide pytest set-up: the tools next to the running Python (`irc`, `filecheck`,
`lit` of the active venv) come first on PATH for subprocesses, hypothesis has no
per-example deadline (CI machines are slower and the first example pays for imports
and JIT warm-up), the report header says which irc is under test, and the
interpreter tests of ON_EVERY_BACKEND run on every backend (the `backend_under_test`
fixture).

Imports nothing of the project at module level, so collection works (and says what is
wrong) even when irc is not installed.
"""

import os
import sys

import pytest

BIN_DIR = os.path.dirname(sys.executable)
os.environ["PATH"] = os.pathsep.join([BIN_DIR, os.environ.get("PATH", "")])

try:
    from hypothesis import settings

    settings.register_profile("irc", deadline=None)
    settings.load_profile("irc")
except ImportError:  # hypothesis is in the test extra; tests that need it import it
    pass


def pytest_report_header(config):
    try:
        import irc
        import irc.passes

        where = os.path.dirname(irc.__file__)
        return f"irc {irc.__version__} from {where}, irc.passes from {irc.passes.__path__[0]}"
    except ImportError as e:
        return f"irc is not installed ({e}): run pip install -e '.[test]'"


@pytest.fixture(scope="session")
def irc_exe():
    """Path of the `irc` console script of the environment under test."""
    path = os.path.join(BIN_DIR, "irc")
    if not os.path.exists(path):
        pytest.fail(f"no `irc` script next to {sys.executable}: run pip install -e '.[test]'")
    return path


# Interpreter test files whose every test also runs, unchanged, on the compiled backends:
# the test is parametrised over these backends and, for the compiled ones, irc.api builds
# that backend wherever the test asks for the interpreter (the tests' default backend).
ALL_BACKENDS = ("interp", "cpu", "opencl")
ON_EVERY_BACKEND = {
    "frontend/test_frontend.py": ALL_BACKENDS,
    "test_examples.py": ALL_BACKENDS,
    "grad/test_models.py": ALL_BACKENDS,
    "scan/test_scan.py": ALL_BACKENDS,
    "api/test_symbolic_models.py": ALL_BACKENDS,
    "test_train.py": ALL_BACKENDS,
    "ops/test_add_an_op.py": ALL_BACKENDS,
    "api/test_symbolic_api.py": ("interp", "cpu"),
    "api/test_symbolic_docs.py": ("interp", "cpu"),
    "api/test_unknown_dims.py": ALL_BACKENDS,
    "passes/test_fuse_broadcast.py": ALL_BACKENDS,
    "passes/test_fuse_reduce_outputs.py": ALL_BACKENDS,
    "test_readme.py": ALL_BACKENDS,  # (users run the README on cpu, the default)
}
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def pytest_generate_tests(metafunc):
    rel = os.path.relpath(metafunc.module.__file__, TESTS_DIR).replace(os.sep, "/")
    backends = ON_EVERY_BACKEND.get(rel)
    if backends and "backend_under_test" in metafunc.fixturenames:
        params = [
            pytest.param(b, marks=pytest.mark.opencl) if b == "opencl" else b for b in backends
        ]
        metafunc.parametrize("backend_under_test", params, indirect=True)


_OPENCL_MISSING = []  # [reason or None], filled on first use


def opencl_missing():
    """None when an OpenCL device can be opened (PoCL in CI), else the reason."""
    if not _OPENCL_MISSING:
        try:
            from irc.runtime.opencl.device import open_device

            open_device()
            _OPENCL_MISSING.append(None)
        except Exception as e:  # noqa: BLE001  (no pyopencl, no platform, no device)
            _OPENCL_MISSING.append(f"no OpenCL device: {e}")
    return _OPENCL_MISSING[0]


@pytest.fixture(autouse=True)
def backend_under_test(request, monkeypatch):
    """The backend this test runs on: "interp" unless the test's file is in
    ON_EVERY_BACKEND, where it is each of that entry's backends in turn."""
    backend = getattr(request, "param", "interp")
    if backend == "opencl" and opencl_missing():
        pytest.skip(opencl_missing())
    if backend != "interp":
        import irc.api as api

        make = api._make_backend

        def make_on_backend(name, module, state, device, **kw):
            return make(backend if name == "interp" else name, module, state, device, **kw)

        monkeypatch.setattr(api, "_make_backend", make_on_backend)
    return backend


def pytest_configure(config):
    # The pass manager verifies the IR after every pipeline pass in the tests
    # (irc/pipeline.py: VERIFY_EACH), so a pass that breaks the IR fails loudly.
    # Tests that do not name a backend check the reference interpreter; those of
    # ON_EVERY_BACKEND run on the compiled backends too, and the compiled backends
    # have their own folders (tests/llvm, tests/opencl) for what is theirs alone.
    try:
        import irc.api
        import irc.pipeline
    except ImportError:
        return
    irc.pipeline.VERIFY_EACH = True
    # IRC_TEST_DEFAULT_BACKEND=cpu runs the tests that name no backend on cpu (the
    # users' default) instead: a search for what only the interpreter is tested on.
    irc.api.DEFAULT_BACKEND = os.environ.get("IRC_TEST_DEFAULT_BACKEND", "interp")

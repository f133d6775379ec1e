"""Suite-wide pytest set-up: the tools next to the running Python (`irc`, `filecheck`,
`lit` of the active venv) come first on PATH for subprocesses, hypothesis has no
per-example deadline (CI machines are slower and the first example pays for imports
and JIT warm-up), and the report header says which irc is under test.

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


def pytest_configure(config):
    # The pass manager verifies the IR after every pipeline pass in the tests
    # (irc/pipeline.py: VERIFY_EACH), so a pass that breaks the IR fails loudly.
    # Tests that do not name a backend check the reference interpreter; the
    # compiled backends have their own folders (tests/llvm, tests/opencl) that
    # rerun the interpreter tests on them.
    try:
        import irc.api
        import irc.pipeline
    except ImportError:
        return
    irc.pipeline.VERIFY_EACH = True
    irc.api.DEFAULT_BACKEND = "interp"

"""Tests of irc.ir (core, types, dims, printer, parser, verifier).

Makes the working tree importable when irc is not installed (pytest's default
import mode puts only the folder above this package on sys.path). Harmless once
`pip install -e .` or `[tool.pytest.ini_options] pythonpath` provides it.
"""

import os
import sys

try:
    import irc  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

"""irc.runtime: the NumPy reference interpreter and the LLVM and OpenCL backends.

Installed as irc.runtime (pyproject package-dir mapping). Must not import
irc.frontend, irc.pipeline, irc.api or irc.cli (tests/test_layering.py)."""

"""lit configuration of irc's FileCheck tests: every `*.tgir` file under tests/ is a test
whose `// RUN:` lines call `irc` and `filecheck` (the PyPI port; no LLVM install needed).

Run them with `python -m lit -v tests` or through pytest (tests/test_lit.py). Files that
are inputs of other tests, not lit tests, go in a folder named `Inputs` (skipped).
`irc` and `filecheck` are found next to the running Python (the active venv) first.
Imports nothing of the project.
"""

import os
import sys
import tempfile

import lit.formats

config.name = "irc"  # noqa: F821 (lit provides `config`)
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".tgir"]
config.excludes = ["Inputs", "Output", "__pycache__"]
config.test_source_root = os.path.dirname(os.path.abspath(__file__))
# Keep lit's Output/ folders and timing file out of the source tree.
config.test_exec_root = os.path.join(tempfile.gettempdir(), f"irc-lit-{os.getuid()}")

bin_dir = os.path.dirname(sys.executable)
config.environment["PATH"] = os.pathsep.join([bin_dir, config.environment.get("PATH", "")])
# lit passes few variables through; IRC_DEBUG=1 gives tracebacks in failing tests' output.
if "IRC_DEBUG" in os.environ:
    config.environment["IRC_DEBUG"] = os.environ["IRC_DEBUG"]

"""lit configuration of irc's FileCheck tests: every `*.tgir` file under tests/ is a test
whose `// RUN:` lines call `irc` and `filecheck` (the PyPI port; no LLVM install needed).

Run them with `python -m lit -v tests` or through pytest (tests/test_lit.py). Files that
are inputs of other tests, not lit tests, go in a folder named `Inputs` (skipped).
`irc` and `filecheck` are found next to the running Python (the active venv) first.
Imports nothing of the project.
"""
# ruff: noqa: F821  (lit defines `config` and `lit_config` before running this file)

import os
import sys
import tempfile

import lit.formats

config.name = "irc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".tgir"]
config.excludes = ["Inputs", "Output", "__pycache__"]
config.test_source_root = os.path.dirname(os.path.abspath(__file__))
# Output/ folders (%t files) and lit's timing file go outside the source tree, in a folder
# of this run alone: several runs of the suite may share a machine. tests/test_lit.py
# passes `--param exec_root=DIR`; a bare `lit tests` run gets a fresh temporary folder.
config.test_exec_root = lit_config.params.get("exec_root") or tempfile.mkdtemp(prefix="irc-lit-")

bin_dir = os.path.dirname(sys.executable)
config.environment["PATH"] = os.pathsep.join([bin_dir, config.environment.get("PATH", "")])
# lit passes few variables through; IRC_DEBUG=1 gives tracebacks in failing tests' output.
if "IRC_DEBUG" in os.environ:
    config.environment["IRC_DEBUG"] = os.environ["IRC_DEBUG"]

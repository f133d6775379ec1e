"""A program the hand-written fast path takes compiles without importing Lark
(irc/frontend/parse.py imports irc/frontend/lark_parse.py only on a fallback):
Lark's import is 25-45 ms of a cold load in a fresh process."""

import subprocess
import sys

PROBE = """
import sys, irc
m = irc.loads("fn f(x: f32[N]) -> f32[N] {{ return tanh(x) * 2 }}", backend="interp")
print("lark" in sys.modules, end=" ")
try:
    irc.loads({bad!r}, backend="interp")
except irc.CompileError as e:
    print("lark" in sys.modules, e.loc.line, e.loc.col)
"""


def test_fast_path_never_imports_lark_and_errors_still_do():
    code = PROBE.format(bad="fn f(x: f32[N]) -> f32[N] {\n  retrun x\n}\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "2", "10"], out.stdout + out.stderr

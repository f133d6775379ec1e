"""`irc opt` end to end: a round trip, the README's command, errors as located text with
exit status 1 and no traceback, internal errors as one line with exit status 2, and
--verify-diagnostics reporting a mismatch. The passes' own behaviour is tested by the lit
files in tests/passes/.

In-process calls of irc.cli.main where the output is all that matters; subprocesses
where the exit status and the absence of a traceback are the point. Imports irc.cli, the
IR printer and parser, and irc.passes (to plant a crashing pass).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from irc.cli import main
from irc.ir.parser import parse_module
from irc.ir.printer import print_module
from irc.passes import Pass, pass_manager

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello.tgir"

BAD = """\
module {
  func.func @f(%x: f32[N]) -> (f32[N]) {
    %a = tg.exp %y : f32[N]
    func.return %a
  }
}
"""


def run_irc(*args, stdin=None):
    env = {k: v for k, v in os.environ.items() if k != "IRC_DEBUG"}  # no tracebacks wanted
    return subprocess.run(
        [sys.executable, "-m", "irc", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_round_trip(capsys):
    text = HELLO.read_text()
    assert main(["opt", str(HELLO)]) == 0
    out = capsys.readouterr().out
    assert out == print_module(parse_module(text, str(HELLO)))
    # The printed module is a fixed point.
    assert print_module(parse_module(out, "out.tgir")) == out


def test_readme_command_works(irc_exe):
    # The README's first command block ends with the main job; it must keep working.
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", readme, re.S).group(1)
    command = first_block.strip().split("&&")[-1].split()
    assert command[0] == "irc"
    proc = subprocess.run([irc_exe, *command[1:]], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # The main job trains the MLP and ends with its test accuracy.
    final = proc.stdout.strip().splitlines()[-1]
    assert "test accuracy" in final
    assert float(final.rsplit("test accuracy", 1)[1].split()[0]) >= 0.96


def test_pipeline_output(capsys):
    assert main(["opt", str(HELLO), "-p", "cse,dce"]) == 0
    out = capsys.readouterr().out
    assert "%z2" not in out and "%unused" not in out
    assert "tg.add %z, %b" in out


def test_error_is_located_text_without_traceback(tmp_path):
    bad = tmp_path / "bad.tgir"
    bad.write_text(BAD)
    proc = run_irc("opt", str(bad))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"{bad}:3:17: error: use of undefined value %y",
        "      %a = tg.exp %y : f32[N]",
        "                  ^",
    ]
    assert "Traceback" not in proc.stderr


def test_error_from_stdin_shows_the_line():
    proc = run_irc("opt", "-", stdin=BAD)
    assert proc.returncode == 1
    assert proc.stderr.startswith("<stdin>:3:17: error: use of undefined value %y\n")
    assert "      %a = tg.exp %y : f32[N]\n" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "cse,nosuch"], "irc: error: unknown pass 'nosuch'"),
        (["-p", "cse{nosuch=1}"], "irc: error: pass 'cse' has no option 'nosuch'"),
        (["-p", "cse{"], "irc: error: unbalanced '{'"),
        (["--print-ir-after", "nosuch"], "irc: error: unknown pass 'nosuch'"),
    ],
)
def test_bad_pipeline(capsys, args, message):
    assert main(["opt", str(HELLO), *args]) == 1
    assert capsys.readouterr().err.startswith(message)


def test_missing_file(capsys, tmp_path):
    assert main(["opt", str(tmp_path / "nope.tgir")]) == 1
    assert "irc: error: cannot read" in capsys.readouterr().err


class Crash(Pass):
    name = "crash"

    def run(self, module):
        raise ValueError("boom")


def test_internal_error_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(pass_manager._REGISTRY, "crash", Crash)
    monkeypatch.delenv("IRC_DEBUG", raising=False)
    assert main(["opt", str(HELLO), "-p", "crash"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "internal compiler error in pass 'crash': ValueError: boom"
    assert "please report it" in err and "Traceback" not in err


def test_internal_error_traceback_with_irc_debug(capsys, monkeypatch):
    monkeypatch.setitem(pass_manager._REGISTRY, "crash", Crash)
    monkeypatch.setenv("IRC_DEBUG", "1")
    assert main(["opt", str(HELLO), "-p", "crash"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_verify_each_names_the_pass(capsys, monkeypatch):
    class Breaker(Pass):
        """Leaves a result type that disagrees with inference."""

        name = "breaker"

        def run(self, module):
            for op in module.walk():
                if op.name == "tg.exp":
                    from irc.ir.types import F64

                    op.results[0].type = op.results[0].type.with_dtype(F64)
            return True

    monkeypatch.setitem(pass_manager._REGISTRY, "breaker", Breaker)
    assert main(["opt", str(HELLO), "-p", "breaker"]) == 1
    err = capsys.readouterr().err
    assert "error: the IR is invalid after pass 'breaker'" in err
    # --no-verify-each lets the broken IR through to the printer.
    assert main(["opt", str(HELLO), "-p", "breaker", "--no-verify-each"]) == 0


def test_verify_diagnostics_reports_a_mismatch(tmp_path, capsys):
    f = tmp_path / "d.tgir"
    f.write_text(
        BAD.replace("%a = tg.exp %y", "%a = tg.exp %y  // expected-error {{no such text}}")
    )
    assert main(["opt", "--verify-diagnostics", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"{f}:3:" in err and 'expected error "no such text" was not produced' in err
    assert "unexpected error: use of undefined value %y" in err


def test_split_input_file_keeps_line_numbers(tmp_path, capsys):
    f = tmp_path / "s.tgir"
    f.write_text("module {\n}\n// -----\n" + BAD)
    assert main(["opt", "--split-input-file", str(f)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"{f}:6:17: error: use of undefined value %y")
    assert captured.out == "module {\n}\n"


def test_version_and_help():
    proc = run_irc("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("irc ")
    proc = run_irc("opt", "--help")
    assert proc.returncode == 0 and "--print-ir-after-change" in proc.stdout

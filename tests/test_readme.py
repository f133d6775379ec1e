"""The README's tutorial runs: every ```tg block compiles (and its entry
functions build on the interpreter), and the ```python blocks run in order
as one program from the repository root."""

import os
import re

import pytest

import irc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("src", [b for kind, b in BLOCKS if kind == "tg"])
def test_tg_blocks_compile(src):
    m = irc.loads(src, filename="README.md")
    assert m.functions


def test_python_blocks_run(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code = "\n".join(b for kind, b in BLOCKS if kind == "python")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "accuracy" in out
    acc = float(out.split("accuracy")[-1].split()[0])
    assert acc > 0.85


def test_the_readme_opens_with_the_two_commands():
    head = README.split("## What irc is")[0]
    cmds = [b for kind, b in BLOCKS if kind == "sh"][:2]
    assert "irc train examples/mlp.tg" in cmds[0] and "pip install -e ." in cmds[0]
    assert "python -m pytest -q" in cmds[1] and "'.[test]'" in cmds[1]
    assert all(c in head for c in cmds)

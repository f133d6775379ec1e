"""Runs the lit/FileCheck suite (every *.tgir under tests/, see tests/lit.cfg.py) from
pytest, so `python -m pytest` runs everything: lit runs once, in parallel, and each test
file becomes one pytest item that fails with lit's output for that file.

Imports nothing of the project (the tests call the `irc` script).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
LIT_FILES = sorted(
    p.relative_to(TESTS).as_posix()
    for p in TESTS.rglob("*.tgir")
    if not {"Inputs", "Output"} & set(p.relative_to(TESTS).parts)
)


@pytest.fixture(scope="session")
def lit_results(tmp_path_factory, irc_exe):
    work = tmp_path_factory.mktemp("lit")
    out = work / "results.json"
    cmd = [sys.executable, "-c", "import sys; from lit.main import main; sys.exit(main())"]
    cmd += ["-q", "-o", str(out), "--param", f"exec_root={work / 'exec'}", str(TESTS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if not out.exists():
        pytest.fail(f"lit did not run (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(out.read_text())
    # lit names tests "SUITE :: path/relative/to/the/suite".
    return {t["name"].split(" :: ", 1)[1]: t for t in data["tests"]}


@pytest.mark.parametrize("name", LIT_FILES)
def test_lit(name, lit_results):
    result = lit_results.get(name)
    assert result is not None, f"lit did not run {name} (is it excluded in lit.cfg.py?)"
    if result["code"] not in ("PASS", "XFAIL", "UNSUPPORTED"):
        hint = ""
        if result["code"] == "UNRESOLVED":
            hint = "\n(an input of another test, not a lit test? put it in an Inputs/ folder)"
        pytest.fail(f"{name}: {result['code']}\n{result.get('output', '')}{hint}", pytrace=False)


def test_lit_suite_is_not_empty():
    assert "passes/cse.tgir" in LIT_FILES and "passes/dce.tgir" in LIT_FILES

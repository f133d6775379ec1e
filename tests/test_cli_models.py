"""The model subcommands of `irc`: compile, run, dump, inspect, check, and
their errors (FILE:LINE:COL with a caret, exit 1, never a traceback)."""

import os
import subprocess

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLP = os.path.join(ROOT, "examples", "mlp.tg")


def irc(exe, *args, cwd=None):
    p = subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def test_compile_run_inspect(irc_exe, tmp_path):
    p = irc(irc_exe, "compile", MLP)
    assert p.returncode == 0 and "predict" in p.stdout and "train" in p.stdout
    x = np.random.default_rng(0).random((3, 64), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    p = irc(
        irc_exe,
        "run",
        MLP,
        "--fn",
        "predict",
        "--arg",
        f"x={tmp_path / 'x.npy'}",
        "--out",
        str(out),
    )
    assert p.returncode == 0, p.stderr
    assert "result 0: int32[3]" in p.stdout
    assert np.load(out)["result0"].shape == (3,)
    p = irc(irc_exe, "inspect", MLP, "--dim", "N=128")
    assert p.returncode == 0 and "parameters: 4,810" in p.stdout and "fused" in p.stdout
    assert "at N=128" in p.stdout


def test_dump_stages(irc_exe):
    p = irc(irc_exe, "dump", MLP, "--stage", "ast")
    assert p.returncode == 0 and p.stdout.startswith("Program")
    p = irc(irc_exe, "dump", MLP, "--stage", "tg")
    assert "func.call" in p.stdout and "tg.grad" in p.stdout
    p = irc(irc_exe, "dump", MLP, "--print-ir-after", "grad", "--fn", "train")
    assert (
        "// ----- IR dump after grad -----" in p.stdout
        and "tg.grad" not in p.stdout.split("dump after grad")[1]
    )
    p = irc(irc_exe, "dump", MLP, "--time-passes", "--fn", "train")
    assert "pass execution times" in p.stdout and "total" in p.stdout
    p = irc(irc_exe, "dump", MLP, "--print-ir-after", "nope")
    assert p.returncode == 1 and "not a pass of the pipeline" in p.stderr


def test_dump_loops_prints_locations_when_asked(irc_exe):
    p = irc(irc_exe, "dump", MLP, "--stage", "loops", "--print-locs", "--fn", "predict")
    assert p.returncode == 0, p.stderr
    assert "loop.for" in p.stdout and f'loc("{MLP}":' in p.stdout
    p = irc(irc_exe, "dump", MLP, "--stage", "loops", "--fn", "predict")
    assert p.returncode == 0 and "loop.for" in p.stdout and "loc(" not in p.stdout
    p = irc(irc_exe, "dump", MLP, "--stage", "llvm", "--print-locs")
    assert p.returncode == 1 and "--print-locs applies to" in p.stderr


def test_check_passes_and_reports(irc_exe):
    p = irc(irc_exe, "check", os.path.join(ROOT, "examples", "logreg.tg"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "2 of 2 gradient checks passed" in p.stdout


def test_errors_are_located(irc_exe, tmp_path):
    bad = tmp_path / "bad.tg"
    bad.write_text("fn f(x: f32[N, 64], W: f32[100, 10]) -> f32[N, 10] {\n    return x @ W\n}\n")
    for cmd in (["compile"], ["dump"], ["inspect"], ["run", "--fn", "f"]):
        p = irc(irc_exe, cmd[0], str(bad), *cmd[1:])
        assert p.returncode == 1
        assert f"{bad}:2:12: error: `@`: inner dimensions differ" in p.stderr
        assert "           ^" in p.stderr
    p = irc(irc_exe, "run", MLP, "--fn", "predict", "--arg", "x=[1, 2]")
    assert p.returncode == 1 and "argument 'x'" in p.stderr
    p = irc(irc_exe, "compile", str(tmp_path / "missing.tg"))
    assert p.returncode == 1 and "cannot read" in p.stderr
    p = irc(irc_exe, "compile", MLP, "-D", "Q=3")
    assert p.returncode == 1 and "no const named 'Q'" in p.stderr

"""Issue 21, items 3, 4 and 6: dims never evaluated by Python, atomic restore
and clear checkpoint errors, diagnostics that show only the compiled file,
and irc.load for paths / irc.loads for text."""

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import irc
from irc.ir.dims import dim_tree, eval_dim
from irc.ir.errors import CallError, CompileError

ODD_DIMS = """
fn f(x: f32[True, class], y: f32[False]) -> f32[True] { return sum(x, axis=1) * 2.0 + sum(y) }
fn g(x: f32[print]) -> f32[print - 1] { return x[1:] - x[:-1] }
fn h(x: f32[None_, def_]) -> f32[None_ * def_] { return reshape(x, [None_ * def_]) }
"""


def test_dim_names_that_are_python_words(backend):
    # A dim named True was taken as 1 by codegen (Python's parser); `class` was a SyntaxError.
    m = irc.loads(ODD_DIMS, backend=backend)
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    r = m.f(x, np.ones(5, np.float32))
    assert r.shape == (3,) and np.allclose(r, x.sum(1) * 2 + 5)
    assert np.allclose(m.g(np.arange(6, dtype=np.float32) ** 2), [1, 3, 5, 7, 9])
    assert m.h(np.ones((2, 3), np.float32)).shape == (6,)


def test_dims_are_evaluated_by_irc_not_python():
    assert dim_tree("True*2") == ("*", ("name", "True"), ("int", 2))
    assert eval_dim("True*2", {"True": 5}) == 10
    assert eval_dim("(class-2)//2", {"class": 9}) == 3
    with pytest.raises(KeyError):
        eval_dim("__import__", {})
    with pytest.raises(ValueError):
        dim_tree("N.__class__")
    for path in ("irc", "runtime", "passes"):
        root = os.path.join(os.path.dirname(irc.__file__), "..", path)
        for dirpath, _, files in os.walk(root):
            for name in files:
                if name.endswith(".py"):
                    with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                        text = f.read()
                    assert not re.search(r"(?<![\w.])eval\(", text.replace("def eval(", "")), name
                    assert "ast.parse(" not in text, name


SHARED = """
shared A: f32[2] = zeros()
shared B: f32[3] = zeros()
fn bump() -> f32 { A <- A + 1.0  B <- B + 1.0  return sum(A) }
"""


def test_restore_is_atomic(tmp_path):
    m = irc.loads(SHARED, backend="interp")
    m.bump()
    bad = tmp_path / "bad.npz"
    np.savez(bad, A=np.full(2, 7, np.float32), B=np.zeros(4, np.float32))  # B has a wrong shape
    with pytest.raises(CallError, match="'B'"):
        m.restore(bad)
    assert m["A"].tolist() == [1, 1] and m["B"].tolist() == [1, 1, 1]  # A was not overwritten
    np.savez(bad, A=np.full(2, 7, np.float32), B=np.array(["a", "b", "c"]))
    with pytest.raises(CallError, match="dtype"):
        m.restore(bad)
    assert m["A"].tolist() == [1, 1]


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"not a zip at all"])
def test_restore_of_empty_or_truncated_checkpoint_is_a_clear_error(tmp_path, content):
    m = irc.loads(SHARED, backend="interp")
    good = tmp_path / "good.npz"
    m.save(good)
    path = tmp_path / "ck.npz"
    path.write_bytes(content or b"")
    with pytest.raises(CallError, match="not a readable checkpoint"):
        m.restore(path)
    truncated = tmp_path / "trunc.npz"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(CallError):
        m.restore(truncated)


def test_resume_from_an_empty_checkpoint_is_a_clear_cli_error(tmp_path, irc_exe):
    model = tmp_path / "m.tg"
    model.write_text(
        "# data: digits\nshared W: f32[64, 10] = zeros()\n"
        "fn train(x: f32[N, 64], y: i32[N], lr: f32 = 0.1) -> f32 {\n"
        "    loss = mean(categorical_crossentropy(softmax(x @ W), y))\n"
        "    W <- W - lr * grad(loss, W)\n    return loss\n}\n"
    )
    ck = tmp_path / "ck.npz"
    ck.write_bytes(b"")
    r = subprocess.run(
        [irc_exe, "train", str(model), "--epochs", "1", "--resume", str(ck), "--backend", "interp"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "not a readable checkpoint" in r.stderr, r.stderr


def test_save_cleans_temporaries_of_a_killed_save(tmp_path):
    # A child process killed (SIGKILL) in the middle of a save leaves its temporary.
    target = tmp_path / "ck.npz"
    child = textwrap.dedent(
        f"""
        import os, signal, numpy as np, irc
        m = irc.loads('shared A: f32[1000000] = ones()\\nfn f() -> f32 {{ return sum(A) }}',
                      backend="interp")
        def die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)
        np.savez = die
        m.save({str(target)!r})
        """
    )
    subprocess.run([sys.executable, "-c", child], timeout=300)
    left = [n for n in os.listdir(tmp_path) if n != "ck.npz"]
    assert left, "the killed save should have left its temporary file"
    m = irc.loads(SHARED, backend="interp")
    m.save(target)
    assert os.listdir(tmp_path) == ["ck.npz"]
    m.restore(target)


def test_ir_locations_never_show_other_files(tmp_path, irc_exe):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-LINE\n")
    ir = tmp_path / "m.tgir"
    ir.write_text(
        f'func.func @f(%x: f32) -> (f32) {{\n  %y = tg.exp %x, %x : f32 loc("{secret}":1:1)\n'
        "  func.return %y\n}\n"
    )
    r = subprocess.run([irc_exe, "opt", str(ir)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and f"{secret}:1:1" in r.stderr, r.stderr
    assert "TOP-SECRET-LINE" not in r.stderr
    # The file being compiled does show its lines.
    ir.write_text("func.func @f(%x: f32) -> (f32) {\n  func.return %nope\n}\n")
    r = subprocess.run([irc_exe, "opt", str(ir)], capture_output=True, text=True, timeout=120)
    assert "func.return %nope" in r.stderr, r.stderr


def test_load_takes_paths_and_loads_takes_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("{x}.tg", "fn a.tg", "shared.tg"):
        (tmp_path / name).write_text("fn f(x: f32) -> f32 { return x + 1.0 }")
        assert irc.load(name, backend="interp").f(1.0) == 2.0
    with pytest.raises(CompileError, match="cannot read"):
        irc.load("fn f(x: f32) -> f32 { return x }", backend="interp")
    with pytest.raises(CompileError, match="cannot read"):
        irc.load("fn f(x: f32) -> f32 {\n return x }", backend="interp")
    assert irc.loads("fn f(x: f32) -> f32 { return x }", backend="interp").f(3.0) == 3.0
    with pytest.raises(TypeError):
        irc.loads(None)

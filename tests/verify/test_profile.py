"""The profiler: irc profile FILE.tg --fn train and irc train --profile give a time per
kernel and per source line, shares that add up, FLOP/byte rates from the cost model,
and the machine's peaks; --json has the same content."""

import json
import os
import subprocess

import pytest
from verify_helpers import needs_opencl

import irc
from irc.profile import machine_peaks, profile_module

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _example(name):
    return os.path.join(ROOT, "examples", f"{name}.tg")


@pytest.mark.parametrize(
    "example,backend",
    [
        ("mlp", "cpu"),
        pytest.param("lenet", "cpu", marks=pytest.mark.slow),
        pytest.param("rnn", "cpu", marks=pytest.mark.slow),
        pytest.param("conv1d", "interp", marks=pytest.mark.slow),
        pytest.param("logreg", "opencl", marks=needs_opencl),
    ],
)
def test_profile_examples(example, backend):
    m = irc.load(_example(example), backend=backend)
    p = profile_module(m, "train", steps=3, dims={"N": 16, "B": 4, "T": 6})
    assert p.step_seconds > 0 and p.kernels
    shares = [k["share"] for k in p.to_dict()["kernels"]]
    assert abs(sum(shares) - 1.0) < 1e-6
    lines = p.to_dict()["lines"]
    assert abs(sum(line["share"] for line in lines) - 1.0) < 1e-6
    assert all(line["line"].startswith(_example(example)) for line in lines)
    # the cost model counts the matmuls / convolutions of every example
    assert sum(k.flops for k in p.kernels) > 0
    table = p.table()
    assert "GFLOP/s" in table and "source line" in table and "machine peaks" in table


def test_profile_finds_the_expensive_line():
    """A 256x256 matmul against a cheap add: the matmul's line takes most of the time."""
    src = """shared W: f32[256, 256] = normal(0.0, 0.1)
fn train(x: f32[N, 256]) -> f32 {
    h = x @ W @ W @ W
    c = x + 1.0
    return sum(h) + sum(c)
}
"""
    m = irc.loads(src, backend="cpu", filename="hot.tg")
    p = profile_module(m, "train", steps=3, dims={"N": 256})
    top = p.lines()[0]
    assert top[0] == "hot.tg:3", p.table()
    mm = [k for k in p.kernels if k.op == "matmul"]
    assert len(mm) == 3 and all(k.flops == 2 * 256**3 for k in mm)


def test_machine_peaks_are_positive():
    pk = machine_peaks()
    assert pk["gflops"] > 0.1 and pk["gbps"] > 0.1


def test_cli_profile_json(irc_exe):
    r = subprocess.run(
        [irc_exe, "profile", _example("mlp"), "--fn", "train", "--steps", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["fn"] == "train" and d["kernels"] and d["lines"] and d["peaks"]["gflops"] > 0
    r = subprocess.run(
        [irc_exe, "profile", _example("mlp"), "--fn", "nope"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1 and "no entry function 'nope'" in r.stderr


@pytest.mark.slow
def test_cli_profile_table(irc_exe):
    r = subprocess.run(
        [irc_exe, "profile", _example("mlp"), "--fn", "train", "--steps", "3", "--dim", "N=8"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "profile of train(N=8)" in r.stdout and "mlp.tg:14" in r.stdout


@pytest.mark.slow
def test_cli_train_profile(irc_exe):
    r = subprocess.run(
        [irc_exe, "train", "mlp", "--epochs", "1", "--profile", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "profile of train(N=32)" in r.stdout and "source line" in r.stdout

"""Packaging: pyproject lists every package, and a real `pip install` of the project, normal
and editable, gives irc.passes, irc.runtime, the grammar as package data and a working
`irc` script.

Each install goes into a fresh venv made without pip (fast, offline): pip of the running
environment installs into it with `--python`, `--no-deps --no-index` and, when this
environment's setuptools can build the project, without build isolation. The new venv
reaches the runtime dependencies (numpy, lark, ...) through a .pth file listing this
environment's site-packages: its own site-packages comes first, so `irc` itself can only
come from the install under test, and the test checks where it came from.

Imports nothing of the project.
"""

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Source folder of each package outside irc/ (pyproject's package-dir mapping).
MAPPED = {
    "grammar": "irc.grammar",
    "passes": "irc.passes",
    "runtime": "irc.runtime",
    "examples": "irc.examples",
}
PROBE = "zz_packaging_probe.lark"  # planted in the copy: the grammar data must ship any *.lark


def pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_is_listed():
    tool = pyproject()["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "irc").rglob("__init__.py")
    }
    for folder, package in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            found.add(".".join([package, *init.parent.relative_to(ROOT / folder).parts]))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "pyproject.toml lists packages without an __init__.py"
    for folder, package in MAPPED.items():
        assert tool["package-dir"][package] == folder


def test_distribution_metadata():
    project = pyproject()["project"]
    assert project["name"] == "irc-compiler"
    assert project["scripts"]["irc"] == "irc.cli:main"
    for dep in ("llvmlite", "numpy", "pyopencl", "lark", "tqdm"):
        assert any(d.startswith(dep) for d in project["dependencies"]), dep


def copy_tree(dest: Path) -> Path:
    """The project's files, as a clean clone would have them (no venvs, builds, caches)."""
    ignore = shutil.ignore_patterns(
        ".git",
        ".venv",
        "venv",
        "build",
        "dist",
        "*.egg-info",
        "__pycache__",
        ".pytest_cache",
        ".hypothesis",
        "Output",
        ".lit_test_times.txt",
    )
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    (dest / "grammar" / PROBE).write_text("// probe\n")
    return dest


def can_build_offline() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1)  # older ones also need `wheel` to build


PROBE_SCRIPT = """
import json, sys, importlib.resources as r
import irc, irc.passes, irc.runtime
wanted = json.loads(sys.argv[1])  # package -> data file names
print(json.dumps({
    "irc": irc.__file__,
    "passes": irc.passes.__file__,
    "runtime": irc.runtime.__file__,
    "missing_data": [f"{pkg}/{name}" for pkg, names in wanted.items() for name in names
                     if not r.files(pkg).joinpath(name).is_file()],
    "pass_names": irc.passes.available_passes(),
}))
"""


def package_data_files(src: Path) -> dict:
    """package -> names of the files in `src` that pyproject's package-data ships."""
    tool = pyproject()["tool"]["setuptools"]
    out = {}
    for package, patterns in tool["package-data"].items():
        folder = src / tool["package-dir"].get(package, package.replace(".", "/"))
        out[package] = sorted({p.name for pat in patterns for p in folder.glob(pat)})
    return out


@pytest.mark.parametrize("mode", ["normal", "editable"])
def test_pip_install(tmp_path, mode):
    src = copy_tree(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    Path(purelib, "_irc_test_deps.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")

    cmd = [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q"]
    if can_build_offline():
        cmd += ["--no-build-isolation", "--no-index"]
    cmd += ["-e", str(src)] if mode == "editable" else [str(src)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    wanted = package_data_files(src)
    assert PROBE in wanted["irc.grammar"]
    proc = subprocess.run(
        [str(py), "-c", PROBE_SCRIPT, json.dumps(wanted)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    if mode == "normal":
        home = Path(purelib, "irc")
        assert Path(info["irc"]) == home / "__init__.py"
        assert Path(info["passes"]) == home / "passes" / "__init__.py"
        assert Path(info["runtime"]) == home / "runtime" / "__init__.py"
        # No generic top-level names in site-packages.
        for name in ("passes", "runtime", "grammar", "examples"):
            assert not Path(purelib, name).exists(), name
    else:
        assert Path(info["irc"]) == src / "irc" / "__init__.py"
        assert Path(info["passes"]) == src / "passes" / "__init__.py"
        assert Path(info["runtime"]) == src / "runtime" / "__init__.py"
    assert info["missing_data"] == [], "package data missing from the install"
    assert {"cse", "dce"} <= set(info["pass_names"])

    # The console script works from anywhere and finds the bundled example's passes.
    proc = subprocess.run(
        [str(venv / "bin" / "irc"), "opt", str(src / "examples" / "hello.tgir"), "-p", "cse,dce"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("module {")

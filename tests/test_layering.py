"""The dependency direction of ARCHITECTURE.md, checked on the source files' imports:

    irc.ir <- irc.ops <- {irc.frontend, irc.passes, irc.runtime}
           <- irc.pipeline <- irc.api <- irc.cli

Every import counts, including those inside functions (a lazy import is still a
dependency). Files are read with `ast`, never imported. Imports nothing of the project.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Source folder -> the package it installs as (pyproject's package-dir mapping).
SOURCES = {"irc": "irc", "passes": "irc.passes", "runtime": "irc.runtime"}

# layer -> (allowed project prefixes, or None for "anything not forbidden"; forbidden prefixes)
RULES = {
    "irc.ir": (["irc.ir"], []),
    "irc.ops": (["irc.ir", "irc.ops"], []),
    "irc.passes": (None, ["irc.frontend", "irc.runtime", "irc.pipeline", "irc.api", "irc.cli"]),
    "irc.runtime": (None, ["irc.frontend", "irc.pipeline", "irc.api", "irc.cli"]),
    "irc.frontend": (None, ["irc.passes", "irc.runtime", "irc.pipeline", "irc.api", "irc.cli"]),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    parts[0:1] = SOURCES[parts[0]].split(".")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files():
    for folder in SOURCES:
        yield from sorted((ROOT / folder).rglob("*.py"))


def project_imports(path: Path):
    """(line, imported module) for each import of a project module in `path`."""
    mod = module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_package else mod.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                # `from irc import ir` imports irc.ir; `from irc.ir.core import Op` irc.ir.core.
                yield node.lineno, f"{target}.{alias.name}" if target == "irc" else target


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(mod: str):
    for layer in RULES:
        if within(mod, layer):
            return layer
    return None


def violations():
    found = []
    for path in source_files():
        layer = layer_of(module_name(path))
        if layer is None:
            continue
        allowed, forbidden = RULES[layer]
        for line, imported in project_imports(path):
            if not within(imported, "irc"):
                continue  # standard library or third party
            bad = any(within(imported, f) for f in forbidden)
            if allowed is not None:
                bad = bad or not any(within(imported, a) for a in allowed)
            if bad:
                found.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {imported}")
    return found


def test_source_tree_is_found():
    names = {module_name(p) for p in source_files()}
    assert {"irc.ir.core", "irc.ops.registry", "irc.passes.pass_manager"} <= names


def test_dependencies_point_one_way():
    found = violations()
    assert not found, "imports against the layering of ARCHITECTURE.md:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "layer, source, bad",
    [
        ("irc.ir", "from irc.ops.registry import PURE", True),
        ("irc.ir", "import irc", True),
        ("irc.ir", "from irc import diagnostics", True),
        ("irc.ir", "from irc.ir.core import Op", False),
        ("irc.ops", "from irc.frontend import parse", True),
        ("irc.passes", "def f():\n    from irc.runtime import interp", True),
        ("irc.passes", "from irc.ops import registry", False),
        ("irc.frontend", "from irc.passes import cse", True),
    ],
)
def test_checker_catches(tmp_path, monkeypatch, layer, source, bad):
    # The checker itself: a file planted in a temporary tree under each layer.
    folder = {"irc.passes": "passes"}.get(layer, layer.replace(".", "/"))
    path = tmp_path / folder / "probe.py"
    path.parent.mkdir(parents=True)
    path.write_text(source + "\n")
    for top in SOURCES:
        (tmp_path / top).mkdir(exist_ok=True)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert bool(violations()) is bad

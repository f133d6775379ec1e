"""docs/theano.md runs (its python blocks in order, each `text` block the output of
the block before, as tests/api/test_symbolic_docs.py does for docs/python-api.md),
and its porting table is true: every **yes** or **partly** name exists in irc.theano,
every **no** name raises NotImplementedError."""

import importlib.util
import re
from pathlib import Path

import pytest

import irc
import irc.theano as theano

ROOT = Path(__file__).resolve().parent.parent.parent
DOC = ROOT / "docs" / "theano.md"
NAME = "docs/theano.md"


def _docs_runner():
    spec = importlib.util.spec_from_file_location(
        "_symbolic_docs_runner", ROOT / "tests" / "api" / "test_symbolic_docs.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_theano_doc_runs(monkeypatch):
    monkeypatch.setattr(theano.config, "backend", "cpu", raising=False)
    results = _docs_runner().run(DOC.read_text(encoding="utf-8"), NAME)
    assert len(results) >= 2
    for (_, _, first, _, _), expected, out in results:
        if expected is not None:
            assert out.rstrip("\n") == expected[4].rstrip("\n"), f"output at {NAME}:{first}"


PREFIXES = {
    "theano": "irc.theano",
    "T": "irc.theano.tensor",
    "pool": "irc.theano.tensor.signal.pool",
    "downsample": "irc.theano.tensor.signal.downsample",
}


def table_rows():
    rows = []
    for line in DOC.read_text(encoding="utf-8").split("\n"):
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 4 and cells[2] in ("yes", "partly", "no"):
            names = re.findall(r"`([^`]+)`", cells[0])
            rows.extend((n, cells[2]) for n in names if n.split(".")[0] in (*PREFIXES, "x"))
    return rows


def lookup(name):
    head, *rest = name.split(".")
    if head == "x":
        obj = irc.Variable
    else:
        obj = importlib.import_module(PREFIXES[head])
    for part in rest:
        obj = getattr(obj, part)
    return obj


def test_the_table_covers_the_issue_names():
    names = {n for n, _ in table_rows()}
    for want in ("theano.shared", "theano.function", "theano.scan", "T.matrix", "T.fmatrix",
                 "T.lscalar", "T.TensorType", "T.dot", "T.grad", "T.nnet.conv2d",
                 "pool.pool_2d", "downsample.max_pool_2d", "T.nnet.conv3d",
                 "theano.gpuarray", "x.dimshuffle", "T.switch"):  # fmt: skip
        assert want in names, want


@pytest.mark.parametrize("name, status", [r for r in table_rows() if not r[0].startswith("x[")])
def test_table_row_is_true(name, status):
    if status == "no":
        if name.startswith("T.") and re.fullmatch(r"T\.[bwcz](matrix|vector|scalar)", name):
            with pytest.raises(NotImplementedError):
                lookup(name)("v")
            return
        with pytest.raises(NotImplementedError):
            lookup(name)
    else:
        assert lookup(name) is not None

"""The three Theano-style tutorial programs of examples/theano (logistic regression
with SGD, the MLP, LeNet with a minibatch index and givens) run through irc.theano
with Theano's imports only, and train to the accuracies the `.tg` examples reach
(tests/test_examples.py TARGETS). Each runs on the cpu backend in a few seconds;
the interpreter and OpenCL runs are marked slow."""

import ast
import importlib
import sys
from pathlib import Path

import pytest

import irc.theano as theano
from irc.data import load_digits

ROOT = Path(__file__).resolve().parent.parent.parent
TUTORIALS = ROOT / "examples" / "theano"
# the .tg examples' target test accuracies (tests/test_examples.py)
TARGETS = {"logreg": 0.94, "mlp": 0.96, "lenet": 0.97}
PROGRAMS = {"logreg": "logistic_sgd", "mlp": "mlp", "lenet": "convolutional_mlp"}
# what the programs may import besides themselves: Theano's names, NumPy, the data
ALLOWED = {"irc.theano", "irc.theano.tensor", "irc.theano.tensor.nnet",
           "irc.theano.tensor.signal", "irc.data", "numpy", "sys", "os", "timeit",
           "__future__", "logistic_sgd", "mlp"}  # fmt: skip


def tutorial(module):
    if str(TUTORIALS) not in sys.path:
        sys.path.insert(0, str(TUTORIALS))
    return importlib.import_module(module)


@pytest.fixture
def backend():
    def use(name):
        theano.config.backend = name

    yield use
    theano.config.backend = None


def train(name):
    if name == "logreg":
        classifier, valid, test = tutorial("logistic_sgd").sgd_optimization_digits(verbose=False)
        digits = load_digits()
        labels = tutorial("logistic_sgd").predict(classifier, digits["x_test"])
        assert ((labels == digits["y_test"]).mean() - (1 - test)) < 1e-9
        return 1 - test
    if name == "mlp":
        return 1 - tutorial("mlp").test_mlp(verbose=False)[2]
    return 1 - tutorial("convolutional_mlp").evaluate_lenet5(verbose=False)[2]


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_tutorial_uses_theano_imports_only(name):
    tree = ast.parse((TUTORIALS / f"{PROGRAMS[name]}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mods = [node.module]
        else:
            continue
        for m in mods:
            assert m in ALLOWED, f"{PROGRAMS[name]}.py imports {m}"


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_tutorial_reaches_the_tg_accuracy(name, backend):
    backend("cpu")
    accuracy = train(name)
    assert accuracy >= TARGETS[name], accuracy


@pytest.mark.slow
@pytest.mark.parametrize("where", ["interp", "opencl"])
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_tutorial_on_other_backends(name, where, backend):
    if where == "opencl":
        sys.path.insert(0, str(ROOT / "tests" / "opencl"))
        from opencl_helpers import opencl_available

        if opencl_available():
            pytest.skip(opencl_available())
    backend(where)
    assert train(name) >= TARGETS[name]


def test_targets_are_the_tg_examples():
    tree = ast.parse((ROOT / "tests" / "test_examples.py").read_text())
    (tg_targets,) = [
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "TARGETS"
    ]
    assert {k: tg_targets[k] for k in TARGETS} == TARGETS

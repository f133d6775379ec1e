"""The three Theano-style tutorial programs of examples/theano (logistic regression
with SGD, the MLP, LeNet with a minibatch index and givens) run through irc.theano
with Theano's imports only, and train to the accuracies the `.tg` examples reach
(tests/test_examples.py TARGETS). Each saves its best model with pickle.dump, and a
fresh Python process loads it and predicts the same labels. Each runs on the cpu
backend in a few seconds; the interpreter and OpenCL runs are marked slow."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
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
           "pickle", "__future__", "logistic_sgd", "mlp"}  # fmt: skip


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


def train(name, best_model=None):
    """(test accuracy, the trained model's labels for the test images)."""
    mod = tutorial(PROGRAMS[name])
    run = {"logreg": "sgd_optimization_digits", "mlp": "test_mlp", "lenet": "evaluate_lenet5"}
    model, _, test = getattr(mod, run[name])(verbose=False, best_model=best_model)
    digits = load_digits()
    labels = mod.predict(model, digits["x_test"])
    assert abs((labels == digits["y_test"]).mean() - (1 - test)) < 1e-9
    return 1 - test, labels


def predict_in_a_fresh_process(name, best_model, tmp_path):
    out = tmp_path / "labels.npy"
    code = (
        f"import sys; sys.path.insert(0, {str(TUTORIALS)!r})\n"
        "import numpy, irc.theano as theano\n"
        "theano.config.backend = 'cpu'\n"
        f"import {PROGRAMS[name]} as tutorial\n"
        "from irc.data import load_digits\n"
        f"labels = tutorial.predict_from({str(best_model)!r}, load_digits()['x_test'])\n"
        f"numpy.save({str(out)!r}, labels)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return np.load(out)


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
def test_tutorial_reaches_the_tg_accuracy_and_pickles(name, backend, tmp_path):
    backend("cpu")
    best_model = tmp_path / "best_model.pkl"
    accuracy, labels = train(name, best_model)
    assert accuracy >= TARGETS[name], accuracy
    np.testing.assert_array_equal(predict_in_a_fresh_process(name, best_model, tmp_path), labels)


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
    assert train(name)[0] >= TARGETS[name]


def test_targets_are_the_tg_examples():
    tree = ast.parse((ROOT / "tests" / "test_examples.py").read_text())
    (tg_targets,) = [
        ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "TARGETS"
    ]
    assert {k: tg_targets[k] for k in TARGETS} == TARGETS

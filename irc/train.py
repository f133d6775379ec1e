"""The training driver behind `irc train`, as a library (no argparse here).

    from irc.train import train
    result = train("examples/mlp.tg", epochs=20, batch=32, save="mlp.npz")

A model is a `.tg` file with an entry function `train(...) -> f32` that takes
a minibatch, updates the shared variables and returns the loss, and
optionally `predict(...)`, evaluated on the test split after every epoch.

Data. `data=` names a built-in data set or an `.npz` file:
  digits   the 8x8 handwritten digits (irc/data/digits.npz): x f32[N, 64], y i32[N]
  reber    embedded Reber strings (irc/data/sequences.py), time-major:
           xs f32[T, B, 7], ys i32[T, B], mask f32[T, B]
  signal   noisy 1-D signals with or without a hidden pattern: x f32[N, 32], y i32[N]
  FILE.npz arrays NAME_train and NAME_test bind to the arguments called NAME
None takes the model's `# data: NAME` comment, else guesses from the
arguments of `train` (xs/ys: reber, x/y: digits).

Binding. Every argument of `train` (and `predict`) named like a data array
gets a minibatch of it. The batch axis of an array is the position, in its
argument's type, of the batch dim: `N` or `B` if the data arguments use one,
else the first named dim of the first data argument. Arguments named like
initial states (`s0`, `h0`, `c0`: a name, then 0) without a default are
zeros of their declared shape. `lr` is passed only when given. Minibatches
are drawn from a fresh permutation every epoch; the last partial batch is
dropped (named dims take any size, but equal batches keep the loss curve
comparable).

Defaults. The model's comment lines `# train: epochs=20 batch=32` give the
epochs and batch size when the caller gives none (else 10 and 32); the
learning rate is the default of train's `lr` argument unless lr= is given.

Accuracy: the fraction of test labels (`y`, or `ys` on the masked steps)
equal to predict's output (its argmax over the last axis when it returns
probabilities). For reber: the fraction of test strings whose every
predicted next symbol (the argmax) is one the grammar allows there.

Checkpoints are `.npz` files of every shared variable (CompiledModule.save,
atomic), written after each epoch when save= is given and on Ctrl-C, which
stops training cleanly: the result has interrupted=True. resume= restores one
before training (the epochs then run on top of it).

The loop is shared with the data-parallel driver (irc/distributed.py): prepare()
settles the request into a Plan, run_loop() runs the epochs around a step function.

Sits above irc.api in the layering (next to irc.cli); imports irc.api,
irc.ir.dims and irc.data, and tqdm; matplotlib only when plotting.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

DEFAULT_EPOCHS = 10
DEFAULT_BATCH = 32
DATASETS = ("digits", "reber", "signal")
PLOT_HINT = "plotting needs matplotlib: pip install 'irc-compiler[plot]'"

# Sizes of the generated data sets. The data seeds are fixed, so the test
# split is the same whatever seed= the training run uses.
REBER_T = 20
REBER_TRAIN, REBER_TEST = 1000, 200
SIGNAL_TRAIN, SIGNAL_TEST = 2000, 500
TRAIN_DATA_SEED, TEST_DATA_SEED = 1, 2


class TrainError(Exception):
    """A mistake in what was asked for (unknown data, an argument the data
    cannot bind, ...): the CLI prints the message, never a traceback."""


# -- data -------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """Arrays by argument name, for the train and test splits; the batch axis
    of each (None: not split into batches); an accuracy function
    metric(predict_output, test_arrays) -> float, or None."""

    name: str
    train: dict
    test: dict
    batch_axis: dict
    metric: Callable | None = None
    notes: dict = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return _batch_size(self.train, self.batch_axis)

    @property
    def n_test(self) -> int:
        return _batch_size(self.test, self.batch_axis)


def _batch_size(arrays: dict, axes: dict) -> int:
    sizes = {a.shape[axes[k]] for k, a in arrays.items() if axes.get(k) is not None}
    if len(sizes) > 1:
        raise TrainError(f"the data arrays disagree on the number of examples: {sorted(sizes)}")
    return sizes.pop() if sizes else 0


def label_accuracy(out, test: dict) -> float | None:
    """Accuracy of predict's output against the labels `y` (or `ys`, on the
    steps where `mask` is 1). Probabilities are turned into labels by argmax."""
    key = "y" if "y" in test else "ys" if "ys" in test else None
    if key is None:
        return None
    labels = test[key]
    pred = out[0] if isinstance(out, tuple) else out
    pred = np.asarray(pred)
    if pred.ndim == labels.ndim + 1:
        pred = np.argmax(pred, axis=-1)
    if pred.shape != labels.shape:
        raise TrainError(
            f"predict returned shape {list(pred.shape)}; the labels '{key}' have "
            f"shape {list(labels.shape)}"
        )
    hit = pred == labels
    if key == "ys" and "mask" in test:
        m = test["mask"] > 0
        return float(np.sum(hit & m) / max(np.sum(m), 1))
    return float(np.mean(hit))


def _reber_metric(out, test: dict) -> float:
    from irc.data.sequences import reber_accuracy

    probs = out[0] if isinstance(out, tuple) else out
    return reber_accuracy(np.asarray(probs), test["legal"], test["mask"])


def builtin_dataset(name: str) -> Dataset:
    if name == "digits":
        from irc.data import load_digits

        d = load_digits()
        return Dataset(
            "digits",
            {"x": d["x_train"], "y": d["y_train"]},
            {"x": d["x_test"], "y": d["y_test"]},
            {"x": 0, "y": 0},
            label_accuracy,
        )
    if name == "reber":
        from irc.data.sequences import reber_batch

        tr = reber_batch(REBER_TRAIN, T=REBER_T, seed=TRAIN_DATA_SEED)
        te = reber_batch(REBER_TEST, T=REBER_T, seed=TEST_DATA_SEED)
        keys = ("xs", "ys", "mask")
        return Dataset(
            "reber",
            {k: tr[k] for k in keys},
            {k: te[k] for k in keys + ("legal",)},
            {"xs": 1, "ys": 1, "mask": 1, "legal": 1},
            _reber_metric,
        )
    if name == "signal":
        from irc.data.sequences import signal_batch

        tr = signal_batch(SIGNAL_TRAIN, seed=TRAIN_DATA_SEED)
        te = signal_batch(SIGNAL_TEST, seed=TEST_DATA_SEED)
        return Dataset("signal", tr, te, {"x": 0, "y": 0}, label_accuracy)
    raise TrainError(
        f"unknown data set '{name}' (choose from {', '.join(DATASETS)}, or give an .npz file)"
    )


def npz_dataset(path: str, signatures: list) -> Dataset:
    """NAME_train / NAME_test arrays of an .npz file; batch axes from the
    signatures of the functions that take them."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise TrainError(f"cannot read data file {path}: {e}") from None
    train, test = {}, {}
    for k, a in arrays.items():
        if k.endswith("_train"):
            train[k[: -len("_train")]] = a
        elif k.endswith("_test"):
            test[k[: -len("_test")]] = a
    if not train:
        raise TrainError(
            f"{path} has no NAME_train arrays (it has: {', '.join(arrays) or 'nothing'}); "
            "name them after the arguments of train, e.g. x_train, y_train, x_test, y_test"
        )
    axes = infer_batch_axes(set(train) | set(test), signatures)
    return Dataset(os.path.basename(path), train, test, axes, label_accuracy)


def infer_batch_axes(names, signatures) -> dict:
    """{array name: batch axis} from the argument types (see the module docstring)."""
    types = {}
    for sig in signatures:
        for a in sig.args:
            if a.name in names and a.name not in types:
                types[a.name] = a.type
    named = [d for t in types.values() for d in t.shape if isinstance(d, str)]
    batch = next((d for d in ("N", "B") if d in named), named[0] if named else None)
    axes = {}
    for n in names:
        t = types.get(n)
        axes[n] = list(t.shape).index(batch) if t is not None and batch in t.shape else 0
    return axes


# -- the model's header -------------------------------------------------------------------------

_DATA_RE = re.compile(r"^\s*#\s*data:\s*(\S+)", re.MULTILINE)
_TRAIN_RE = re.compile(r"^\s*#\s*train:(.*)$", re.MULTILINE)
SETTINGS = {"epochs": int, "batch": int}


def read_header(text: str) -> dict:
    """The `# data: NAME` and `# train: epochs=E batch=B` comment lines of a model."""
    out = {}
    m = _DATA_RE.search(text)
    if m:
        out["data"] = m.group(1)
    for m in _TRAIN_RE.finditer(text):
        for item in m.group(1).split():
            key, _, value = item.partition("=")
            if key in SETTINGS:
                try:
                    out[key] = SETTINGS[key](value)
                except ValueError:
                    raise TrainError(f"'# train: {item}': {key} must be an integer") from None
    return out


def resolve_model(path) -> str:
    """A path, or the name of a shipped example (`mlp` -> irc/examples/mlp.tg)."""
    path = os.fspath(path)
    if os.path.exists(path):
        return path
    name = os.path.basename(path)
    if os.sep not in path and "/" not in path:
        import irc.examples

        cand = os.path.join(
            os.path.dirname(irc.examples.__file__), name if name.endswith(".tg") else name + ".tg"
        )
        if os.path.exists(cand):
            return cand
    raise TrainError(f"cannot read {path}: no such file")


def guess_data(signature) -> str | None:
    names = {a.name for a in signature.args}
    if {"xs", "ys"} <= names:
        return "reber"
    if {"x", "y"} <= names:
        return "digits"
    return None


# -- binding ------------------------------------------------------------------------------------

_STATE_RE = re.compile(r"^[A-Za-z_]+0$")


def _dims_env(signature, arrays: dict) -> dict:
    env = {}
    for a in signature.args:
        if a.name in arrays:
            for d, n in zip(a.type.shape, np.shape(arrays[a.name])):
                if isinstance(d, str) and re.fullmatch(r"[A-Za-z_]\w*", d):
                    env.setdefault(d, n)
    return env


def bind(signature, arrays: dict, lr=None) -> dict:
    """Keyword arguments for one call: data arrays by name, zero initial
    states, lr when given. Raises TrainError for an argument nothing binds."""
    from irc.ir.dims import eval_dim

    kwargs = {}
    env = None
    for a in signature.args:
        if a.name in arrays:
            kwargs[a.name] = arrays[a.name]
        elif a.name == "lr" and lr is not None:
            kwargs["lr"] = lr
        elif a.has_default:
            continue
        elif _STATE_RE.match(a.name) and a.type.dtype.is_float:
            if env is None:
                env = _dims_env(signature, arrays)
            try:
                shape = tuple(eval_dim(d, env) for d in a.type.shape)
            except (KeyError, ValueError, TypeError):
                raise TrainError(
                    f"{signature.name}(): cannot size the initial state '{a.name}: {a.type}' "
                    "from the data arguments"
                ) from None
            kwargs[a.name] = np.zeros(shape, a.type.dtype.np)
        else:
            raise TrainError(
                f"{signature.name}(): nothing binds argument '{a.name}: {a.type}' "
                f"(the data has: {', '.join(sorted(arrays)) or 'nothing'})"
            )
    if lr is not None and not any(a.name == "lr" for a in signature.args):
        raise TrainError(f"{signature.name}() has no argument 'lr'; cannot set the learning rate")
    return kwargs


def take(arrays: dict, axes: dict, idx) -> dict:
    return {
        k: (np.take(a, idx, axis=axes[k]) if axes.get(k) is not None else a)
        for k, a in arrays.items()
    }


# -- the loop -----------------------------------------------------------------------------------


def _print(out, text):
    print(text, file=out)
    try:
        out.flush()
    except (AttributeError, ValueError):
        pass


def _check_plot_available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise TrainError(PLOT_HINT) from None


@dataclass
class Plan:
    """What a training driver settles before its loop (irc.train.train and
    irc.distributed.train share it): the model, the data, the sizes, and
    `step_fn`, the function whose signature binds a minibatch."""

    path: str
    module: object  # the CompiledModule that evaluates (predict), saves and restores
    step_fn: object  # train (one process) or train_grads (irc/distributed.py)
    predict_fn: object
    ds: Dataset
    epochs: int
    batch: int
    lr: float | None
    settings: dict
    can_eval: bool

    @property
    def n_batches(self) -> int:
        return self.ds.n_train // self.batch

    def evaluate(self):
        if not self.can_eval:
            return None
        p = self.predict_fn
        return self.ds.metric(p(**bind(p.signature, self.ds.test)), self.ds.test)

    def minibatch(self, idx) -> dict:
        """Keyword arguments of step_fn for the examples `idx` of the training split."""
        return bind(self.step_fn.signature, take(self.ds.train, self.ds.batch_axis, idx), self.lr)


def load_model(path, backend, define, seed, device, threads=None, nan_guard=False):
    """irc.api.load, with an unknown backend name as a TrainError."""
    import irc.api

    try:
        return irc.api.load(
            path,
            backend=backend,
            define=define,
            seed=seed,
            device=device,
            threads=threads,
            nan_guard=nan_guard,
        )
    except ValueError as e:
        if type(e) is ValueError:  # an unknown backend name
            raise TrainError(str(e)) from None
        raise


def prepare(
    path: str,
    header: dict,
    m,
    data=None,
    epochs=None,
    batch=None,
    lr=None,
    backend: str = "",
    seed=None,
    resume=None,
    step_name: str = "train",
) -> Plan:
    """Check the request against the compiled module `m` (entry function `train`, whose
    arguments `step_name` shares), load the data, restore `resume`: a Plan, or TrainError."""
    if "train" not in m.functions and step_name not in m.functions:
        raise TrainError(
            f"{path} has no entry function 'train' (functions: {', '.join(m.functions) or 'none'})"
        )
    train_fn = m.functions[step_name]
    predict_fn = m.functions.get("predict")
    sigs = [train_fn.signature] + ([predict_fn.signature] if predict_fn else [])

    if data is None:
        data = header.get("data") or guess_data(train_fn.signature)
        if data is None:
            raise TrainError(
                f"{path}: no data given; add a '# data: NAME' line or pass data= "
                f"({', '.join(DATASETS)} or an .npz file)"
            )
    if isinstance(data, Dataset):
        ds = data
    elif str(data) in DATASETS:
        ds = builtin_dataset(str(data))
    elif str(data).endswith(".npz"):
        ds = npz_dataset(os.fspath(data), sigs)
    else:
        raise TrainError(
            f"unknown data '{data}' (choose from {', '.join(DATASETS)}, or give an .npz file)"
        )

    epochs = header.get("epochs", DEFAULT_EPOCHS) if epochs is None else int(epochs)
    batch = header.get("batch", DEFAULT_BATCH) if batch is None else int(batch)
    if epochs < 0 or batch <= 0:
        raise TrainError(f"epochs must be >= 0 and batch > 0 (got epochs={epochs}, batch={batch})")
    lr_default = next((a.default for a in train_fn.signature.args if a.name == "lr"), None)
    n = ds.n_train
    if n == 0:
        raise TrainError(f"the data set '{ds.name}' has no training examples")
    batch = min(batch, n)
    # Fail on a binding mistake now, not after the first epoch.
    bind(train_fn.signature, take(ds.train, ds.batch_axis, np.arange(batch)), lr)
    can_eval = bool(predict_fn is not None and ds.test and ds.metric is not None)
    if can_eval:
        bind(predict_fn.signature, ds.test)

    if resume is not None:
        try:
            m.restore(resume)
        except FileNotFoundError:
            raise TrainError(f"cannot resume: no checkpoint {resume}") from None
        except (OSError, ValueError) as e:
            raise TrainError(f"cannot resume from {resume}: {e}") from None

    settings = {
        "model": path,
        "data": ds.name,
        "epochs": epochs,
        "batch": batch,
        "lr": lr if lr is not None else lr_default,
        "backend": backend,
        "seed": seed,
        "n_train": n,
        "n_test": ds.n_test,
        "resume": os.fspath(resume) if resume is not None else None,
    }
    return Plan(path, m, train_fn, predict_fn, ds, epochs, batch, lr, settings, can_eval)


def run_loop(
    plan: Plan,
    step: Callable,
    seed=None,
    save=None,
    plot=None,
    progress: bool = True,
    out=None,
    note: str = "",
) -> dict:
    """The epochs: shuffling, `step(idx) -> loss` per minibatch, the progress bar, test
    accuracy and a checkpoint after every epoch, Ctrl-C (see the module docstring).
    `note` is added to the first line. Returns train()'s result."""
    out = sys.stdout if out is None else out
    m, ds, s = plan.module, plan.ds, plan.settings
    epochs, batch, n, n_batches = plan.epochs, plan.batch, ds.n_train, plan.n_batches
    _print(
        out,
        f"training {os.path.basename(plan.path)} on {ds.name} ({n} examples, {ds.n_test} test): "
        f"{epochs} epochs, batch {batch}, lr {s['lr']}, {s['backend']} backend{note}"
        + (f", resumed from {s['resume']}" if s.get("resume") is not None else ""),
    )

    rng = np.random.default_rng(0 if seed is None else seed)
    history, batch_losses = [], []
    interrupted = False
    where = ""
    seen = 0
    t_start = time.perf_counter()
    bar = None
    try:
        from tqdm import tqdm

        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            perm = rng.permutation(n)
            losses = []
            bar = tqdm(
                total=n_batches * batch,
                desc=f"epoch {epoch}/{epochs}",
                unit="ex",
                file=out,
                disable=None if progress else True,
                leave=False,
                dynamic_ncols=True,
            )
            for i in range(n_batches):
                where = f"epoch {epoch}, batch {i + 1}/{n_batches}"
                idx = perm[i * batch : (i + 1) * batch]
                loss = float(step(idx))
                if not math.isfinite(loss):
                    raise TrainError(
                        f"the loss became {loss} at {where}; try a smaller learning rate (--lr)"
                    )
                losses.append(loss)
                batch_losses.append(loss)
                seen += len(idx)
                bar.set_postfix(loss=f"{np.mean(losses):.4f}", refresh=False)
                bar.update(len(idx))
            bar.close()
            bar = None
            train_s = time.perf_counter() - t0
            where = f"epoch {epoch} (evaluating)"
            acc = plan.evaluate()
            if save is not None:
                where = f"epoch {epoch} (saving)"
                m.save(save)
            rec = {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "accuracy": acc,
                "seconds": time.perf_counter() - t0,
            }
            history.append(rec)
            acc_s = f"  test accuracy {acc:.4f}" if acc is not None else ""
            _print(
                out,
                f"epoch {epoch}/{epochs}: loss {rec['loss']:.4f}{acc_s}  "
                f"({rec['seconds']:.1f} s, {n_batches * batch / max(train_s, 1e-9):.0f} ex/s)",
            )
    except KeyboardInterrupt:
        interrupted = True
        if bar is not None:
            bar.close()
        msg = f"interrupted at {where or 'the start'}"
        if save is not None:
            m.save(save)
            msg += f"; checkpoint written to {save}"
        _print(out, msg)
    except BaseException:
        if bar is not None:
            bar.close()
        raise
    seconds = time.perf_counter() - t_start

    result = {
        "loss": history[-1]["loss"] if history else (batch_losses[-1] if batch_losses else None),
        "accuracy": history[-1]["accuracy"] if history else None,
        "history": history,
        "batch_losses": batch_losses,
        "epochs": len(history),
        "interrupted": interrupted,
        "seconds": seconds,
        "examples_per_second": seen / seconds if seconds > 0 else 0.0,
        "settings": s,
        "checkpoint": os.fspath(save) if save is not None else None,
    }
    if not interrupted:
        acc_s = (
            f", test accuracy {result['accuracy']:.4f}" if result["accuracy"] is not None else ""
        )
        loss_s = (
            f"final loss {result['loss']:.4f}" if result["loss"] is not None else "no epochs run"
        )
        _print(
            out,
            f"done in {seconds:.1f} s: {loss_s}{acc_s}"
            + (f"; checkpoint {save}" if save is not None else ""),
        )
    if plot is not None and history:
        plot_history(result, plot, title=f"{os.path.basename(plan.path)} on {ds.name}")
        _print(out, f"curves written to {plot}")
    return result


def train(
    path,
    data=None,
    epochs: int | None = None,
    batch: int | None = None,
    lr: float | None = None,
    backend: str | None = "interp",
    seed: int | None = None,
    save=None,
    resume=None,
    plot=None,
    progress: bool = True,
    out=None,
    define: dict | None = None,
    device: str | None = None,
    threads: int | None = None,
    nan_guard: bool = False,
    profile: bool = False,
) -> dict:
    """Train the model in `path` (see the module docstring). Returns
    {loss, accuracy, history: [{epoch, loss, accuracy, seconds}], batch_losses,
    epochs (completed), interrupted, seconds, examples_per_second, settings}.
    Raises TrainError for a mistake in the request, CompileError for one in the model.
    backend=None takes irc.api's default; define, device, threads and nan_guard go to
    irc.api.load (a NaN then raises irc.NanGuardError at its op). profile=True
    profiles one training step on a batch after training (irc/profile.py), printed
    and returned as result["profile"]."""
    import irc.api

    backend = backend or irc.api.DEFAULT_BACKEND
    out = sys.stdout if out is None else out
    path = resolve_model(path)
    header = read_model_header(path)
    if plot is not None:
        _check_plot_available()  # before training, not after it
    m = load_model(path, backend, define, seed, device, threads, nan_guard)
    plan = prepare(path, header, m, data, epochs, batch, lr, backend, seed, resume)
    train_fn = plan.step_fn

    def step(idx):
        return train_fn(**plan.minibatch(idx))

    result = run_loop(plan, step, seed=seed, save=save, plot=plot, progress=progress, out=out)
    if profile:  # irc train --profile: one step on a real batch, after training
        from irc.profile import profile_module

        prof = profile_module(m, "train", args=plan.minibatch(np.arange(plan.batch)))
        result["profile"] = prof.to_dict()
        _print(out, prof.table())
    return result


def read_model_header(path) -> dict:
    """The `# key: value` header of the model file (decoded as irc.load decodes it)."""
    from irc.ir.errors import read_source

    try:
        return read_header(read_source(path))
    except OSError as e:
        raise TrainError(f"cannot read {path}: {e.strerror or e}") from None


def plot_history(result: dict, path, title: str = "") -> None:
    """Loss (per batch and per epoch) and test accuracy curves, as a PNG (atomic)."""
    _check_plot_available()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    hist = result["history"]
    epochs = [h["epoch"] for h in hist]
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    bl = result.get("batch_losses") or []
    if bl and epochs:
        per = len(bl) / max(len(epochs), 1)
        ax1.plot(np.arange(1, len(bl) + 1) / per, bl, lw=0.5, alpha=0.4, label="batch")
    ax1.plot(epochs, [h["loss"] for h in hist], "o-", label="epoch mean")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax1.set_yscale("log")
    ax1.legend()
    accs = [(h["epoch"], h["accuracy"]) for h in hist if h["accuracy"] is not None]
    if accs:
        ax2.plot(*zip(*accs), "o-", color="C2")
        ax2.set_ylim(min(a for _, a in accs) - 0.02, 1.0)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("test accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(
        prefix=".irc-", suffix=".png", dir=os.path.dirname(os.path.abspath(path))
    )
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

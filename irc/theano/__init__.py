"""Theano's names over irc: `import irc.theano as theano` runs Theano programs with
only their imports changed (`import irc.theano.tensor as T`,
`from irc.theano.tensor.nnet import conv2d`, `from irc.theano.tensor.signal import pool`).

Owns the Theano spellings and nothing else: every name here is a thin call of the
Python API (irc/symbolic.py), which builds irc's own ops; no op is implemented twice.
What Theano has and irc deliberately does not raises NotImplementedError naming the
feature (the table is docs/theano.md). Imports irc.symbolic and irc.api; nothing
below irc.api imports this package.
"""

from __future__ import annotations

import numpy as np

from irc import symbolic as _S
from irc.theano._compat import missing_attributes as _missing_attributes
from irc.theano._compat import unsupported as _unsupported

__all__ = [
    "config",
    "shared",
    "function",
    "scan",
    "grad",
    "clone",
    "In",
    "Param",
    "pp",
    "tensor",
    "printing",
    "SharedVariable",
    "Variable",
]

Variable = _S.Variable
SharedVariable = _S.SharedVariable
In = _S.In
Param = _S.In  # Theano's older name
clone = _S.clone
pp = _S.pp


class _Config:
    """theano.config: floatX (the dtype of T.matrix() and friends, "float32" unless
    set), and `backend`, irc's own setting: the backend theano.function compiles for
    ("interp", "cpu" or "opencl"; None: irc's default). The other Theano settings
    are accepted where they change nothing here."""

    _DEVICES = ("cpu",)

    def __init__(self):
        object.__setattr__(self, "floatX", "float32")
        object.__setattr__(self, "device", "cpu")
        object.__setattr__(self, "mode", "FAST_RUN")
        object.__setattr__(self, "backend", None)

    def __setattr__(self, name, value):
        if name == "floatX" and value not in ("float32", "float64"):
            raise ValueError(f"config.floatX must be 'float32' or 'float64', got {value!r}")
        if name == "device" and value not in self._DEVICES:
            _unsupported(
                f"config.device = {value!r} (Theano's GPU back end; use "
                "config.backend = 'opencl' for irc's OpenCL backend)"
            )
        if name == "backend" and value is not None:
            from irc.api import BACKENDS

            if value not in BACKENDS:
                raise ValueError(f"unknown backend {value!r} (choose from {', '.join(BACKENDS)})")
        object.__setattr__(self, name, value)


config = _Config()


def _float_x(dtype):
    return config.floatX if dtype is None else dtype


def shared(value, name=None, strict=False, allow_downcast=None, borrow=False, broadcastable=None):
    """theano.shared: a shared variable holding `value` (NumPy arrays keep their
    dtype; Python floats are floatX, as Theano's tutorials make them)."""
    if isinstance(value, float):
        value = np.asarray(value, dtype=config.floatX)
    v = _S.shared(value, name=name, borrow=borrow)
    if broadcastable is not None:
        if len(broadcastable) != v.ndim or any(
            b and d != 1 for b, d in zip(broadcastable, v.type.shape)
        ):
            raise ValueError(f"shared: broadcastable={broadcastable!r} does not fit {v.type}")
    return v


_MODES = (None, "FAST_RUN", "FAST_COMPILE")


def function(
    inputs,
    outputs=None,
    mode=None,
    updates=None,
    givens=None,
    no_default_updates=False,
    accept_inplace=False,
    name=None,
    rebuild_strict=True,
    allow_input_downcast=None,
    profile=None,
    on_unused_input=None,
    backend=None,
):
    """theano.function over irc.function: updates (pairs or a dict) and givens as in
    Theano. The backend is `backend=`, else config.backend, else irc's default."""
    if mode not in _MODES and not (isinstance(mode, str) and mode.upper() in _MODES[1:]):
        _unsupported(
            f"theano.function(mode={mode!r}) (irc compiles one way; "
            "use backend= to choose interp, cpu or opencl)"
        )
    if profile:
        _unsupported("theano.function(profile=...) (use Python's profilers on the call)")
    return _S.function(
        inputs,
        [] if outputs is None else outputs,
        updates=updates,
        givens=givens,
        backend=backend or config.backend,
        name=name,
        on_unused_input=on_unused_input or "raise",
    )


def scan(fn, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
         truncate_gradient=-1, go_backwards=False, mode=None, name=None, profile=False,
         allow_gc=None, strict=False, return_list=False):  # fmt: skip
    """theano.scan over irc.scan: returns (outputs, updates). mode, profile, allow_gc
    and strict tune Theano's own loop; irc compiles one."""
    args = dict(locals())
    for knob in ("mode", "profile", "allow_gc", "strict"):
        del args[knob]
    return _S.scan(**args)


def grad(cost, wrt, consider_constant=None, disconnected_inputs="raise", known_grads=None,
         return_disconnected="zero", null_gradients="raise"):  # fmt: skip
    """theano.grad (also T.grad): the gradient of a scalar cost."""
    if consider_constant:
        _unsupported("grad(consider_constant=...) (irc has no gradient-stopping op)")
    if known_grads:
        _unsupported("grad(known_grads=...)")
    return _S.grad(cost, wrt, disconnected=disconnected_inputs)


_MISSING = {
    "gpuarray": "theano.gpuarray (Theano's CUDA back end; irc runs on CPUs, and on GPUs "
    "through config.backend = 'opencl')",
    "sandbox": "theano.sandbox (Theano's experimental modules)",
    "ifelse": "theano.ifelse (lazy conditionals; use T.switch, which computes both branches)",
    "OpFromGraph": "theano.OpFromGraph (write a Python function that builds the graph)",
    "d3viz": "theano.d3viz (use irc.graph for a drawing of the graph)",
    "sparse": "theano.sparse (sparse tensors)",
    "typed_list": "theano.typed_list",
    "compile": "theano.compile (its modes and ops; theano.function covers the tutorials)",
    "gof": "theano.gof (Theano's graph internals; irc's IR is irc.ir)",
}


__getattr__ = _missing_attributes("irc.theano", _MISSING)


from irc.theano import printing, tensor  # noqa: E402  (they use config and grad above)

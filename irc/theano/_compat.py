"""Helpers of irc.theano: the NotImplementedError for Theano features irc does not
have (by name, or as a module's missing attribute), Theano's dtype names, and
Theano's int-or-pair arguments. Imports irc.symbolic only."""

from __future__ import annotations


def unsupported(feature: str):
    """Raise the NotImplementedError for a Theano feature irc does not have."""
    raise NotImplementedError(
        f"{feature} is not supported by irc.theano (see docs/theano.md for what is)"
    )


def missing_attributes(module: str, missing: dict):
    """A module __getattr__: Theano names irc does not have (`missing`: name -> what
    to say) raise NotImplementedError, other names AttributeError."""

    def __getattr__(name):
        if name in missing:
            unsupported(missing[name])
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


def pair(v, fname: str, what: str) -> tuple:
    """An int (both axes) or a pair, as Theano's conv and pool arguments are."""
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) != 2:
        raise ValueError(f"{fname}: {what} must be an int or a pair, got {v!r}")
    return v


# Theano's dtype names irc has; the others (int8, uint8, complex64, ...) are refused.
DTYPES = {"float32", "float64", "int32", "int64", "bool"}


def check_dtype(dtype) -> str:
    import numpy as np

    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        unsupported(f"the dtype {name} (irc has {', '.join(sorted(DTYPES))})")
    return name

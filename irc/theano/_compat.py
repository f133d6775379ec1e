"""Helpers of irc.theano: the NotImplementedError for Theano features irc does not
have, and Theano's dtype names. Imports irc.symbolic only."""

from __future__ import annotations


def unsupported(feature: str):
    """Raise the NotImplementedError for a Theano feature irc does not have."""
    raise NotImplementedError(
        f"{feature} is not supported by irc.theano (see docs/theano.md for what is)"
    )


# Theano's dtype names irc has; the others (int8, uint8, complex64, ...) are refused.
DTYPES = {"float32", "float64", "int32", "int64", "bool"}


def check_dtype(dtype) -> str:
    import numpy as np

    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in DTYPES:
        unsupported(f"the dtype {name} (irc has {', '.join(sorted(DTYPES))})")
    return name
